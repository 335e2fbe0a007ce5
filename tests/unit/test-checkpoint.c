/* test-checkpoint.c - unit tests for src/checkpoint.c: which value a cycle
 * keeps (max of numbers of any size, of strings, or the last one), that a
 * cycle advances only when it was ok and every record was delivered, that
 * an older cycle never overwrites a newer one, the template text of a
 * value, and the state file: written atomically, read back by a new store,
 * a changed pointer starting over, a damaged file ignored. */
#define _GNU_SOURCE
#include <check.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "jptr.h"
#include "sink.h"

static char dir[] = "/tmp/fetchd-test-ckpt-XXXXXX";
static char path[256];
static struct jptr *ptr_id;

static void setup(void)
{
    strcpy(dir, "/tmp/fetchd-test-ckpt-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/%s", dir, CKPT_FILE);
    const char *msg;
    ck_assert_int_eq(jptr_parse("/id", &ptr_id, &msg), 0);
}

static void teardown(void)
{
    unlink(path);
    rmdir(dir);
    ptr_id = jptr_free(ptr_id);
}

static char *slurp(const char *p)
{
    FILE *f = fopen(p, "r");
    if (!f) {
        return NULL;
    }
    char *b = calloc(1, 65536);
    size_t n = fread(b, 1, 65535, f);
    b[n] = '\0';
    fclose(f);
    return b;
}

/* One cycle over records {"id":<v>} with every copy delivered (deliver) or
 * one copy lost; ok is the cycle's own outcome. */
static void cycle(struct ckpt_entry *en, bool keep_max, const char *const *ids, size_t n,
                  bool ok, bool deliver, usec_t started)
{
    struct ckpt_cycle *c = ckpt_cycle_begin(en, "/id", keep_max, started, started + 1000);
    ck_assert_ptr_nonnull(c);
    struct sink_ticket *t = ckpt_cycle_ticket(c);
    for (size_t i = 0; i < n; i++) {
        char rec[128];
        int len = snprintf(rec, sizeof(rec), "{\"id\":%s}", ids[i]);
        ckpt_cycle_record(c, true, rec, (size_t)len);
        t->refs++; /* a queued copy */
    }
    ckpt_cycle_end(c, ok, NULL);
    for (size_t i = 0; i < n; i++) {
        sink_ticket_put(t, deliver || i + 1 < n);
    }
}

static const char *json_of(const struct ckpt_entry *en)
{
    const char *j = ckpt_json(en);
    return j ? j : "(none)";
}

START_TEST(test_max_numbers)
{
    struct ckpt_store *st = ckpt_store_new(NULL, NULL);
    struct ckpt_entry *en = ckpt_entry_get(st, "e", "/id");
    const char *a[] = {"5", "17", "3"};
    cycle(en, true, a, 3, true, true, 100);
    ck_assert_str_eq(json_of(en), "17");
    ck_assert_uint_eq(ckpt_last_success(en), 100);
    /* beyond 2^53, exactly; a smaller value later never moves it back */
    const char *b[] = {"12345678901234567890123", "9007199254740993"};
    cycle(en, true, b, 2, true, true, 200);
    ck_assert_str_eq(json_of(en), "12345678901234567890123");
    const char *c[] = {"12345678901234567890122"};
    cycle(en, true, c, 1, true, true, 300);
    ck_assert_str_eq(json_of(en), "12345678901234567890123");
    ck_assert_uint_eq(ckpt_last_success(en), 300);
    const char *d[] = {"-1", "2.5e1", "25.5"};
    struct ckpt_entry *en2 = ckpt_entry_get(st, "f", "/id");
    cycle(en2, true, d, 3, true, true, 1);
    ck_assert_str_eq(json_of(en2), "25.5");
    ckpt_store_free(st);
}
END_TEST

START_TEST(test_max_strings_and_last)
{
    struct ckpt_store *st = ckpt_store_new(NULL, NULL);
    struct ckpt_entry *en = ckpt_entry_get(st, "e", "/id");
    const char *a[] = {"\"2026-11-21T10:00:00Z\"", "\"2026-11-22T09:00:00Z\"",
                       "\"2026-11-22T08:59:59Z\""};
    cycle(en, true, a, 3, true, true, 1);
    ck_assert_str_eq(json_of(en), "\"2026-11-22T09:00:00Z\"");
    size_t len;
    const char *text = ckpt_text(en, &len);
    ck_assert_str_eq(text, "2026-11-22T09:00:00Z"); /* a string's contents */
    ck_assert_uint_eq(len, 20);
    /* keep "last": the last record's value, even if lower (newest first) */
    struct ckpt_entry *l = ckpt_entry_get(st, "l", "/id");
    const char *b[] = {"9", "8", "7"};
    cycle(l, false, b, 3, true, true, 1);
    ck_assert_str_eq(json_of(l), "7");
    /* values that cannot be ordered, or of another kind than the
     * checkpoint's, are skipped by max; last skips null only */
    const char *c[] = {"null", "{\"a\":1}", "99"};
    cycle(en, true, c, 3, true, true, 2);
    ck_assert_str_eq(json_of(en), "\"2026-11-22T09:00:00Z\"");
    const char *c2[] = {"{\"a\":1}", "null"};
    cycle(l, false, c2, 2, true, true, 2);
    ck_assert_str_eq(json_of(l), "{\"a\":1}");
    ck_assert_str_eq(ckpt_text(l, &len), "{\"a\":1}");
    ckpt_store_free(st);
}
END_TEST

/* Not advanced: a failed cycle, a lost copy, no resolving record (the
 * value stays, the last success moves). */
START_TEST(test_not_advanced)
{
    struct ckpt_store *st = ckpt_store_new(NULL, NULL);
    struct ckpt_entry *en = ckpt_entry_get(st, "e", "/id");
    const char *a[] = {"1"};
    cycle(en, true, a, 1, true, true, 10);
    const char *b[] = {"2"};
    cycle(en, true, b, 1, false, true, 20); /* an error record in the cycle */
    ck_assert_str_eq(json_of(en), "1");
    ck_assert_uint_eq(ckpt_last_success(en), 10);
    cycle(en, true, b, 1, true, false, 30); /* a sink lost a copy */
    ck_assert_str_eq(json_of(en), "1");
    ck_assert_uint_eq(ckpt_last_success(en), 10);
    ck_assert_uint_eq(ckpt_window_end(en), 1010); /* the first cycle's */
    /* an error record reported through ckpt_cycle_record */
    struct ckpt_cycle *c = ckpt_cycle_begin(en, "/id", true, 40, 0);
    ckpt_cycle_record(c, true, "{\"id\":3}", 8);
    ckpt_cycle_record(c, false, NULL, 0);
    size_t n;
    ck_assert_uint_eq(ckpt_cycle_end(c, true, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(json_of(en), "1");
    /* records without the pointer: counted, the last success moves */
    c = ckpt_cycle_begin(en, "/id", true, 50, 0);
    ckpt_cycle_record(c, true, "{\"x\":3}", 7);
    ckpt_cycle_record(c, true, "[]", 2);
    ck_assert_uint_eq(ckpt_cycle_end(c, true, &n), 2);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(json_of(en), "1");
    ck_assert_uint_eq(ckpt_last_success(en), 50);
    ckpt_store_free(st);
}
END_TEST

/* Two cycles in flight (a slow sink): the newer one completes first; the
 * older one completing later must not move the checkpoint back. */
START_TEST(test_out_of_order)
{
    struct ckpt_store *st = ckpt_store_new(NULL, NULL);
    struct ckpt_entry *en = ckpt_entry_get(st, "e", "/id");
    struct ckpt_cycle *c1 = ckpt_cycle_begin(en, "/id", false, 1, 0);
    struct ckpt_cycle *c2 = ckpt_cycle_begin(en, "/id", false, 2, 0);
    struct sink_ticket *t1 = ckpt_cycle_ticket(c1);
    ckpt_cycle_record(c1, true, "{\"id\":1}", 8);
    t1->refs++;
    ckpt_cycle_end(c1, true, NULL);
    ckpt_cycle_record(c2, true, "{\"id\":2}", 8);
    ckpt_cycle_end(c2, true, NULL); /* no copies queued: commits now */
    ck_assert_str_eq(json_of(en), "2");
    sink_ticket_put(t1, true);
    ck_assert_str_eq(json_of(en), "2");
    ck_assert_uint_eq(ckpt_last_success(en), 2);
    ckpt_store_free(st);
}
END_TEST

START_TEST(test_file_round_trip)
{
    struct ckpt_store *st = ckpt_store_new(NULL, dir);
    struct ckpt_entry *en = ckpt_entry_get(st, "billing \"eu\"", "/id");
    const char *a[] = {"12345678901234567890123"};
    cycle(en, true, a, 1, true, true, 1795330080371582);
    struct ckpt_entry *ls = ckpt_entry_get(st, "plain", NULL);
    struct ckpt_cycle *c = ckpt_cycle_begin(ls, NULL, true, 42, 7000000);
    ckpt_cycle_end(c, true, NULL);
    ckpt_store_flush(st);
    char *f = slurp(path);
    ck_assert_ptr_nonnull(f);
    ck_assert_msg(strstr(f, "\"value_json\":\"12345678901234567890123\""), "%s", f);
    ck_assert_msg(strstr(f, "\"last_success\":\"2026-11-22T06:48:00.371Z\""), "%s", f);
    free(f);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    ckpt_store_free(st);

    st = ckpt_store_new(NULL, dir);
    en = ckpt_entry_get(st, "billing \"eu\"", "/id");
    ck_assert_str_eq(json_of(en), "12345678901234567890123");
    ck_assert_uint_eq(ckpt_last_success(en), 1795330080371582);
    ck_assert_uint_eq(ckpt_last_success(ckpt_entry_get(st, "plain", NULL)), 42);
    ck_assert_uint_eq(ckpt_window_end(ckpt_entry_get(st, "plain", NULL)), 7000000);
    ck_assert_uint_eq(ckpt_window_end(en), 1795330080371582 + 1000);
    /* another pointer: the value starts over, the last success stays */
    en = ckpt_entry_get(st, "billing \"eu\"", "/seq");
    ck_assert_ptr_null(ckpt_json(en));
    ck_assert_uint_eq(ckpt_last_success(en), 1795330080371582);
    ckpt_store_free(st); /* saves the change */
    st = ckpt_store_new(NULL, dir);
    en = ckpt_entry_get(st, "billing \"eu\"", "/seq");
    ck_assert_ptr_null(ckpt_json(en));
    ckpt_store_free(st);
}
END_TEST

START_TEST(test_damaged_file)
{
    static const char *const bad[] = {
        "{\"endpoints\": ", "[]", "{\"endpoints\": {\"e\": {\"value_json\": \"{\\\"a\\\":\"}}}",
        "{\"endpoints\": {\"e\": {\"value_json\": 5, \"last_success_us\": -1}}}",
    };
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(bad[_i], f);
    fclose(f);
    struct ckpt_store *st = ckpt_store_new(NULL, dir);
    ck_assert_ptr_nonnull(st);
    struct ckpt_entry *en = ckpt_entry_get(st, "e", "/id");
    ck_assert_ptr_null(ckpt_json(en));
    ck_assert_uint_eq(ckpt_last_success(en), 0);
    ckpt_store_free(st);
}
END_TEST

static Suite *ckpt_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_max_numbers);
    tcase_add_test(tc, test_max_strings_and_last);
    tcase_add_test(tc, test_not_advanced);
    tcase_add_test(tc, test_out_of_order);
    tcase_add_test(tc, test_file_round_trip);
    tcase_add_loop_test(tc, test_damaged_file, 0, 4);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ckpt_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
