/* test-jfield.c - unit tests for src/jfield.h: journald field names from
 * arbitrary bytes. The validity rules are checked against the test's own
 * copy of systemd's journal_field_valid() (allow_protected=false), over the
 * table below and over many generated inputs. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jfield.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* systemd's rules, written out independently of src/jfield.c */
static bool valid_name(const char *p, size_t l)
{
    if (l == 0 || l > 64) {
        return false;
    }
    if (p[0] == '_' || (p[0] >= '0' && p[0] <= '9')) {
        return false;
    }
    for (size_t i = 0; i < l; i++) {
        if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_')) {
            return false;
        }
    }
    return true;
}

static uint32_t fnv(const char *a, size_t na, const char *b, size_t nb)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < na; i++) {
        h = (h ^ (unsigned char)a[i]) * 16777619u;
    }
    for (size_t i = 0; i < nb; i++) {
        h = (h ^ (unsigned char)b[i]) * 16777619u;
    }
    return h;
}

/* ---- jfield_make: the table ----------------------------------------------- */

static const struct {
    const char *prefix;
    const char *name;
    size_t len; /* 0: strlen(name) */
    const char *want;
} make_cases[] = {
    /* lower case */
    {"", "abc", 0, "ABC"},
    {"", "Temp", 0, "TEMP"},
    {"FETCHD_DATA_", "temp", 0, "FETCHD_DATA_TEMP"},
    {"FETCHD_DATA_", "temp-c", 0, "FETCHD_DATA_TEMP_C"},
    {"FETCHD_DATA_", "temp_c", 0, "FETCHD_DATA_TEMP_C"},
    {"", "camelCaseName", 0, "CAMELCASENAME"},
    /* digits first: an 'X' in front unless a prefix comes first */
    {"", "2x", 0, "X2X"},
    {"", "123", 0, "X123"},
    {"FETCHD_DATA_", "2x", 0, "FETCHD_DATA_2X"},
    {"1", "a", 0, "X1A"},
    /* leading underscore */
    {"", "_x", 0, "X_X"},
    {"", "__x", 0, "X__X"},
    {"FETCHD_DATA_", "_x", 0, "FETCHD_DATA__X"},
    {"_P_", "x", 0, "X_P_X"},
    /* non-ASCII UTF-8: each run of such bytes is one '_' */
    {"", "\xc3\x84\xc3\x96", 0, "X_"},                 /* ÄÖ */
    {"FETCHD_DATA_", "\xc3\x84\xc3\x96", 0, "FETCHD_DATA__"},
    {"", "na\xc3\xafve", 0, "NA_VE"},                  /* naïve */
    {"", "a\xe2\x82\xac" "b", 0, "A_B"},               /* a€b */
    {"", "\xf0\x9f\x98\x80smile", 0, "X_SMILE"},       /* U+1F600 */
    {"", "\xff\xfe", 0, "X_"},                         /* not UTF-8 at all */
    /* empty name */
    {"", "", 0, "X"},
    {NULL, "", 0, "X"},
    {NULL, NULL, 0, "X"},
    {"FETCHD_DATA_", "", 0, "FETCHD_DATA_"},
    /* nothing valid at all */
    {"", "-- ..", 0, "X_"},
    {"", "\0\0\0", 3, "X_"},
    {"", "\n", 0, "X_"},
    {"", "=", 0, "X_"},
    {"FETCHD_DATA_", "a=b\nc", 0, "FETCHD_DATA_A_B_C"},
    /* runs collapse, real underscores stay */
    {"", "a--b", 0, "A_B"},
    {"", "a-_-b", 0, "A___B"},
    {"", "a.b.c", 0, "A_B_C"},
    {"", "a b", 0, "A_B"},
    {"", "x-", 0, "X_"},
    {"", "a\0b", 3, "A_B"},
    /* the prefix is sanitised like the name, and the run continues over
     * the boundary */
    {"fetchd-", "x", 0, "FETCHD_X"},
    {"P-", "-x", 0, "P_X"},
    /* already valid names stay as they are */
    {"", "MESSAGE", 0, "MESSAGE"},
    {"", "A_1", 0, "A_1"},
    {"", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0,
     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
};

START_TEST(make_table)
{
    const char *name = make_cases[_i].name;
    size_t len = make_cases[_i].len ? make_cases[_i].len : (name ? strlen(name) : 0);
    char out[JFIELD_NAME_MAX + 1];
    memset(out, '#', sizeof(out));
    size_t n = jfield_make(make_cases[_i].prefix, name, len, out);
    ck_assert_msg(strcmp(out, make_cases[_i].want) == 0, "case %d: got \"%s\", want \"%s\"", _i,
                  out, make_cases[_i].want);
    ck_assert_uint_eq(n, strlen(out));
    ck_assert(valid_name(out, n));
    ck_assert(jfield_valid(out, n));
}
END_TEST

/* ---- too long: 55 characters, '_' and 8 hex digits of the input's hash ----- */

static void check_long(const char *prefix, const char *name, size_t len, const char *sanitised)
{
    char out[JFIELD_NAME_MAX + 1];
    size_t n = jfield_make(prefix, name, len, out);
    ck_assert_uint_eq(n, 64);
    ck_assert_uint_eq(strlen(out), 64);
    ck_assert(valid_name(out, n));
    ck_assert_msg(memcmp(out, sanitised, JFIELD_KEEP) == 0, "got %s", out);
    char tail[16];
    snprintf(tail, sizeof(tail), "_%08X", fnv(prefix, strlen(prefix), name, len));
    ck_assert_str_eq(out + JFIELD_KEEP, tail);
}

START_TEST(make_long)
{
    char name[201], want[201];
    memset(name, 'a', 200);
    name[200] = '\0';
    memset(want, 'A', 200);
    want[200] = '\0';
    check_long("", name, 200, want);

    /* 65 characters: one too many */
    check_long("", name, 65, want);

    /* with the prefix */
    char pw[256];
    snprintf(pw, sizeof(pw), "FETCHD_DATA_%s", want);
    check_long("FETCHD_DATA_", name, 200, pw);

    /* exactly 64 after the prefix: kept whole */
    char out[JFIELD_NAME_MAX + 1];
    ck_assert_uint_eq(jfield_make("FETCHD_DATA_", name, 52, out), 64);
    ck_assert_uint_eq(strspn(out + 12, "A"), 52);

    /* two long names that differ only after the cut stay apart */
    char other[201];
    memcpy(other, name, sizeof(name));
    other[199] = 'b';
    char a[JFIELD_NAME_MAX + 1], b[JFIELD_NAME_MAX + 1];
    jfield_make("FETCHD_DATA_", name, 200, a);
    jfield_make("FETCHD_DATA_", other, 200, b);
    ck_assert_str_ne(a, b);
    ck_assert_int_eq(memcmp(a, b, JFIELD_KEEP), 0);

    /* 200 bytes of UTF-8 that collapse to a short name are not long */
    char u[201];
    for (int i = 0; i < 200; i += 2) {
        u[i] = '\xc3';
        u[i + 1] = '\xa4';
    }
    ck_assert_uint_eq(jfield_make("", u, 200, out), 2);
    ck_assert_str_eq(out, "X_");

    /* a name that is long only because of an 'X' in front */
    char d[65];
    memset(d, '7', 64);
    d[64] = '\0';
    char dw[66] = "X";
    strcat(dw, d);
    check_long("", d, 64, dw);

    /* a long prefix alone */
    check_long(want, "", 0, want);
}
END_TEST

/* ---- jfield_number ------------------------------------------------------- */

START_TEST(number)
{
    char out[JFIELD_NAME_MAX + 1] = "FETCHD_DATA_TEMP_C";
    ck_assert_uint_eq(jfield_number(out, strlen(out), 2), 20);
    ck_assert_str_eq(out, "FETCHD_DATA_TEMP_C_2");

    /* always from the base: the caller passes the base length */
    strcpy(out, "A");
    ck_assert_uint_eq(jfield_number(out, 1, 10), 4);
    ck_assert_str_eq(out, "A_10");

    /* a full-length name is cut to make room */
    memset(out, 'B', 64);
    out[64] = '\0';
    ck_assert_uint_eq(jfield_number(out, 64, 2), 64);
    ck_assert_uint_eq(strspn(out, "B"), 62);
    ck_assert_str_eq(out + 62, "_2");

    memset(out, 'B', 64);
    out[64] = '\0';
    ck_assert_uint_eq(jfield_number(out, 64, 4294967295u), 64);
    ck_assert_str_eq(out + 53, "_4294967295");
    ck_assert(valid_name(out, 64));

    /* 63 characters + "_3" is 65: cut by one */
    memset(out, 'C', 63);
    out[63] = '\0';
    ck_assert_uint_eq(jfield_number(out, 63, 3), 64);
    ck_assert_str_eq(out + 62, "_3");
}
END_TEST

/* ---- jfield_valid --------------------------------------------------------- */

static const struct {
    const char *s;
    size_t len; /* 0: strlen */
    bool ok;
} valid_cases[] = {
    {"A", 0, true},
    {"MESSAGE", 0, true},
    {"A_1", 0, true},
    {"X_", 0, true},
    {"", 0, false},
    {"_A", 0, false},
    {"1A", 0, false},
    {"a", 0, false},
    {"A-B", 0, false},
    {"A B", 0, false},
    {"A\0B", 3, false},
    {"A=", 0, false},
    {"\xc3\x84", 0, false},
    {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0, true},
    {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0, false},
};

START_TEST(valid_table)
{
    const char *s = valid_cases[_i].s;
    size_t len = valid_cases[_i].len ? valid_cases[_i].len : strlen(s);
    ck_assert_msg(jfield_valid(s, len) == valid_cases[_i].ok, "case %d", _i);
    ck_assert(valid_name(s, len) == valid_cases[_i].ok);
}
END_TEST

/* ---- generated inputs ----------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Bytes biased towards the interesting classes. */
static char rand_byte(void)
{
    static const char pool[] = "aZ09_-. =\n";
    uint64_t r = next_rand();
    switch (r % 4) {
    case 0: return pool[(r >> 8) % (sizeof(pool) - 1)];
    case 1: return (char)('a' + (r >> 8) % 26);
    case 2: return (char)(0x80 + (r >> 8) % 128);
    default: return (char)((r >> 8) & 0xff);
    }
}

START_TEST(generated_always_valid)
{
    static const char *const prefixes[] = {"", NULL, "FETCHD_DATA_", "x", "9", "_", "-",
                                           "\xc3\x84", "fetchd data "};
    char name[300], out[JFIELD_NAME_MAX + 1];
    for (int iter = 0; iter < 50000; iter++) {
        size_t len = (size_t)(next_rand() % 300);
        for (size_t i = 0; i < len; i++) {
            name[i] = rand_byte();
        }
        const char *prefix = prefixes[next_rand() % N_ELEMS(prefixes)];
        memset(out, '#', sizeof(out));
        size_t n = jfield_make(prefix, name, len, out);
        ck_assert_msg(n >= 1 && n <= 64 && strlen(out) == n, "iteration %d: length %zu", iter, n);
        ck_assert_msg(valid_name(out, n), "iteration %d: invalid \"%s\"", iter, out);
        ck_assert(jfield_valid(out, n));
        /* sanitising a valid name changes nothing */
        char again[JFIELD_NAME_MAX + 1];
        ck_assert_uint_eq(jfield_make("", out, n, again), n);
        ck_assert_str_eq(again, out);
        /* numbering keeps it valid */
        unsigned nr = 2 + (unsigned)(next_rand() % 100000);
        size_t m = jfield_number(out, n, nr);
        ck_assert(valid_name(out, m) && strlen(out) == m);
    }
    /* jfield_valid agrees with the reference on random short strings */
    for (int iter = 0; iter < 50000; iter++) {
        size_t len = (size_t)(next_rand() % 70);
        for (size_t i = 0; i < len; i++) {
            uint64_t r = next_rand();
            name[i] = r % 3 ? (char)("AZ09_a-"[(r >> 8) % 7]) : (char)(r >> 16);
        }
        ck_assert(jfield_valid(name, len) == valid_name(name, len));
    }
}
END_TEST

static Suite *jfield_suite(void)
{
    Suite *s = suite_create("jfield");
    TCase *tc = tcase_create("make");
    tcase_add_loop_test(tc, make_table, 0, N_ELEMS(make_cases));
    tcase_add_test(tc, make_long);
    tcase_add_test(tc, number);
    tcase_add_loop_test(tc, valid_table, 0, N_ELEMS(valid_cases));
    suite_add_tcase(s, tc);
    tc = tcase_create("generated");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, generated_always_valid);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(jfield_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
