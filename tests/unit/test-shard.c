/* test-shard.c - rendezvous hashing of endpoint names over N instances:
 * "K/N" parsing, every name owned by exactly one instance, balance, and
 * that adding or removing an instance moves only about 1/N of the names
 * (and only to or from that instance). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "shard.h"

#define NAMES 8000

static const char *name_of(unsigned i)
{
    static char buf[NAMES][24];
    snprintf(buf[i], sizeof(buf[i]), "endpoint-%u", i);
    return buf[i];
}

START_TEST(test_parse)
{
    struct shard s;
    ck_assert_int_eq(shard_parse("1/1", &s), 0);
    ck_assert_uint_eq(s.k, 1);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_int_eq(shard_parse("3/7", &s), 0);
    ck_assert_uint_eq(s.k, 3);
    ck_assert_uint_eq(s.n, 7);
    ck_assert_int_eq(shard_parse("1024/1024", &s), 0);
    const char *bad[] = {"", "1", "/", "0/3", "4/3", "1/0", "1/1025", "-1/3", "1/3x", "a/3",
                         "1//3", " 1/3", "1/ 3", "99999/99999", "1/3/5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(shard_parse(bad[i], &s) < 0, "\"%s\" was accepted", bad[i]);
    }
}
END_TEST

START_TEST(test_exactly_one_owner_and_balance)
{
    for (unsigned n = 1; n <= 16; n++) {
        unsigned count[17] = {0};
        for (unsigned i = 0; i < NAMES; i++) {
            if (n <= 6) { /* each instance asks for itself: O(n^2) per name */
                unsigned owners = 0;
                for (unsigned k = 1; k <= n; k++) {
                    struct shard sh = {k, n};
                    owners += shard_owns(&sh, name_of(i));
                }
                ck_assert_msg(owners == 1, "%s has %u owners of %u", name_of(i), owners, n);
            }
            unsigned o = shard_owner(name_of(i), n);
            ck_assert(o >= 1 && o <= n);
            count[o]++;
        }
        double fair = (double)NAMES / n;
        for (unsigned k = 1; k <= n; k++) {
            ck_assert_msg(count[k] > fair * 0.85 && count[k] < fair * 1.15,
                          "instance %u of %u owns %u names (fair share %.0f)", k, n, count[k],
                          fair);
        }
    }
}
END_TEST

START_TEST(test_adding_an_instance_moves_few)
{
    for (unsigned n = 1; n <= 15; n++) {
        unsigned moved = 0;
        for (unsigned i = 0; i < NAMES; i++) {
            unsigned before = shard_owner(name_of(i), n), after = shard_owner(name_of(i), n + 1);
            if (before != after) {
                /* only to the new instance: nothing moves between old ones */
                ck_assert_msg(after == n + 1, "%s moved from %u to %u going to %u instances",
                              name_of(i), before, after, n + 1);
                moved++;
            }
        }
        double expect = (double)NAMES / (n + 1);
        ck_assert_msg(moved > expect * 0.85 && moved < expect * 1.15,
                      "%u -> %u instances moved %u names (expected about %.0f)", n, n + 1, moved,
                      expect);
    }
}
END_TEST

START_TEST(test_no_sharding)
{
    struct shard none = {0, 0};
    ck_assert(shard_owns(&none, "x"));
    ck_assert(shard_owns(NULL, "x"));
    ck_assert_uint_eq(shard_owner("x", 1), 1);
    ck_assert_uint_eq(shard_owner("", 0), 1);
    /* the owner depends on the name only: stable across calls and runs */
    ck_assert_uint_eq(shard_owner("billing", 5), shard_owner("billing", 5));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shard");
    TCase *tc = tcase_create("all");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_parse);
    tcase_add_test(tc, test_exactly_one_owner_and_balance);
    tcase_add_test(tc, test_adding_an_instance_moves_few);
    tcase_add_test(tc, test_no_sharding);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
