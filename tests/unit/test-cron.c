/* test-cron.c - unit tests for src/cron.h: parsing (valid forms, every error
 * message, zone names), field semantics in UTC, macros, the day-of-month /
 * day-of-week rule, month ends and leap years, unsatisfiable schedules,
 * daylight-saving changes in real zones (instants computed independently
 * with `TZ=<zone> date -d '<local time>' +%s`), the process's TZ being left
 * alone, and a cross-check of random expressions against a minute-by-minute
 * reference around real offset changes.
 *
 * (In comments "* /n" stands for a star followed by "/n".) */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cron.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ck_assert_*() records every passing check (a write per call in Check
 * 0.15); loops of thousands of calls use this instead */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ck_abort_msg(__VA_ARGS__);                                                             \
        }                                                                                          \
    } while (0)

/* "YYYY-MM-DD HH:MM[:SS]" in UTC, converted with timegm() */
static time_t utc(const char *s)
{
    struct tm tm = {0};
    int n = sscanf(s, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                   &tm.tm_min, &tm.tm_sec);
    ck_assert_msg(n >= 5, "bad test time \"%s\"", s);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

static char *fmt_utc(time_t t, char buf[40])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 40, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return buf;
}

static struct cron *parse_ok(const char *expr, const char *tz)
{
    char err[256] = "";
    struct cron *c = NULL;
    int r = cron_parse(expr, tz, &c, err, sizeof(err));
    ck_assert_msg(r == 0, "\"%s\" (%s): expected 0, got %d: %s", expr, tz ? tz : "local", r, err);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* cron_next must give want[0], want[1], ... starting after `after` */
static void expect_seq(const char *expr, const char *tz, time_t after, const time_t *want, size_t n)
{
    struct cron *c = parse_ok(expr, tz);
    time_t t = after;
    for (size_t i = 0; i < n; i++) {
        time_t next = 0;
        char b1[40], b2[40], b3[40];
        int r = cron_next(c, t, &next);
        ck_assert_msg(r == 0, "\"%s\" (%s) after %s: expected %s, got error %d", expr,
                      tz ? tz : "local", fmt_utc(t, b1), fmt_utc(want[i], b2), r);
        ck_assert_msg(next == want[i],
                      "\"%s\" (%s) #%zu after %s: expected %s (%lld), got %s (%lld)", expr,
                      tz ? tz : "local", i, fmt_utc(t, b1), fmt_utc(want[i], b2),
                      (long long)want[i], fmt_utc(next, b3), (long long)next);
        t = next;
    }
    cron_free(c);
}

/* ---- parsing: valid ------------------------------------------------------ */

static const char *const valid_exprs[] = {
    "* * * * *",
    "0 0 1 1 0",
    "59 23 31 12 7",
    "  */15\t* *  * *  ",
    "0,15,30,45 * * * *",
    "1-5 * * * *",
    "1-59/2 * * * *",
    "5/15 * * * *",
    "0 */2 * * *",
    "0 9-17 * * mon-fri",
    "0 0 * JAN-Mar SUN",
    "0 0 * jan,Feb,MAR,apr,may,jun,jul,aug,sep,oct,nov,dec *",
    "0 0 * * sun,mon,tue,wed,thu,fri,sat",
    "0 0 * * 0-7",
    "0 0 * * 7",
    "0 0 * * 7/1",
    "0 0 * * */7",
    "0 0 1-31/31 * *",
    "0 0 31 12 *",
    "0 0 30 2 *", /* valid, never fires */
    "00 000 01 01 00",
    "0-59 0-23 1-31 1-12 0-7",
    "*/59 */23 */31 */12 */7",
    "0 0 */2 * mon",
    "0 0 1,15 * 1-5/2",
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
    "@DAILY",
    "  @Weekly  ",
};

START_TEST(parse_valid)
{
    struct cron *c = parse_ok(valid_exprs[_i], NULL);
    ck_assert_ptr_null(cron_free(c));
}
END_TEST

/* ---- parsing: errors ----------------------------------------------------- */

static const struct {
    const char *expr;
    const char *tz;
    const char *msg;
} invalid[] = {
    {"", NULL, "expected 5 fields, got 0"},
    {" \t ", NULL, "expected 5 fields, got 0"},
    {"* * * *", NULL, "expected 5 fields, got 4"},
    {"* * * * * *", NULL, "expected 5 fields, got 6"},
    {"0 0 1 1 0 2026 x", NULL, "expected 5 fields, got 7"},
    {"60 * * * *", NULL, "field 1 (minute): 60 is out of range 0-59"},
    {"* 24 * * *", NULL, "field 2 (hour): 24 is out of range 0-23"},
    {"* * 0 * *", NULL, "field 3 (day of month): 0 is out of range 1-31"},
    {"* * 32 * *", NULL, "field 3 (day of month): 32 is out of range 1-31"},
    {"* * * 0 *", NULL, "field 4 (month): 0 is out of range 1-12"},
    {"* * * 13 *", NULL, "field 4 (month): 13 is out of range 1-12"},
    {"* * * * 8", NULL, "field 5 (day of week): 8 is out of range 0-7"},
    {"1,2,99 * * * *", NULL, "field 1 (minute): 99 is out of range 0-59"},
    {"0-60 * * * *", NULL, "field 1 (minute): 60 is out of range 0-59"},
    {"* 024 * * *", NULL, "field 2 (hour): 024 is out of range 0-23"},
    {"99999999999999999999 * * * *", NULL,
     "field 1 (minute): 99999999999999999999 is out of range 0-59"},
    {"x * * * *", NULL, "field 1 (minute): invalid value \"x\""},
    {"5x * * * *", NULL, "field 1 (minute): invalid value \"5x\""},
    {"** * * * *", NULL, "field 1 (minute): invalid value \"**\""},
    {"*-5 * * * *", NULL, "field 1 (minute): invalid value \"*\""},
    {"1-2-3 * * * *", NULL, "field 1 (minute): invalid value \"2-3\""},
    {"-5 * * * *", NULL, "field 1 (minute): missing value"},
    {"5- * * * *", NULL, "field 1 (minute): missing value"},
    {"5-3 * * * *", NULL, "field 1 (minute): range 5-3 runs backwards"},
    {"* * * dec-jan *", NULL, "field 4 (month): range dec-jan runs backwards"},
    {"* * * * sat-sun", NULL, "field 5 (day of week): range sat-sun runs backwards"},
    {"*/0 * * * *", NULL, "field 1 (minute): step 0 is out of range 1-59"},
    {"*/60 * * * *", NULL, "field 1 (minute): step 60 is out of range 1-59"},
    {"* */24 * * *", NULL, "field 2 (hour): step 24 is out of range 1-23"},
    {"* * 1-31/32 * *", NULL, "field 3 (day of month): step 32 is out of range 1-31"},
    {"* * * */13 *", NULL, "field 4 (month): step 13 is out of range 1-12"},
    {"* * * * */8", NULL, "field 5 (day of week): step 8 is out of range 1-7"},
    {"*/ * * * *", NULL, "field 1 (minute): missing step after \"/\""},
    {"*/x * * * *", NULL, "field 1 (minute): invalid step \"x\""},
    {"*/1/2 * * * *", NULL, "field 1 (minute): invalid step \"1/2\""},
    {"1,,2 * * * *", NULL, "field 1 (minute): empty list element"},
    {"1, * * * *", NULL, "field 1 (minute): empty list element"},
    {",1 * * * *", NULL, "field 1 (minute): empty list element"},
    {"jan * * * *", NULL, "field 1 (minute): invalid value \"jan\""},
    {"* * jan * *", NULL, "field 3 (day of month): invalid value \"jan\""},
    {"* * * mon *", NULL, "field 4 (month): invalid value \"mon\""},
    {"* * * janu *", NULL, "field 4 (month): invalid value \"janu\""},
    {"* * * * sunday", NULL, "field 5 (day of week): invalid value \"sunday\""},
    {"* * * * mon-fr", NULL, "field 5 (day of week): invalid value \"fr\""},
    {"* * * * *\n", NULL, "field 5 (day of week): invalid value \"*?\""},
    {"* * * * 1\xc3\xa9", NULL, "field 5 (day of week): invalid value \"1??\""},
    {"* * * * xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", NULL,
     "field 5 (day of week): invalid value \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\""},
    {"@reboot", NULL, "unknown macro \"@reboot\""},
    {"@", NULL, "unknown macro \"@\""},
    {"@dail", NULL, "unknown macro \"@dail\""},
    {"@daily 5", NULL, "unexpected \"5\" after @daily"},
    {"@hourly * * * *", NULL, "unexpected \"*\" after @hourly"},
    /* time zones: the expression is checked first */
    {"* 24 * * *", "Mars/Base", "field 2 (hour): 24 is out of range 0-23"},
    {"* * * * *", "Mars/Base", "unknown time zone \"Mars/Base\""},
    {"* * * * *", "Europe", "unknown time zone \"Europe\""},     /* a directory */
    {"* * * * *", "zone.tab", "unknown time zone \"zone.tab\""}, /* not TZif */
    {"* * * * *", "Europe/Berlin/x", "unknown time zone \"Europe/Berlin/x\""},
    {"* * * * *", "europe/berlin", "unknown time zone \"europe/berlin\""},
    {"* * * * *", "", "invalid time zone name \"\""},
    {"* * * * *", "/etc/localtime", "invalid time zone name \"/etc/localtime\""},
    {"* * * * *", "../etc/passwd", "invalid time zone name \"../etc/passwd\""},
    {"* * * * *", "Europe/../UTC", "invalid time zone name \"Europe/../UTC\""},
    {"* * * * *", "./UTC", "invalid time zone name \"./UTC\""},
    {"* * * * *", "Europe//Berlin", "invalid time zone name \"Europe//Berlin\""},
    {"* * * * *", "Europe/", "invalid time zone name \"Europe/\""},
    {"* * * * *", "..", "invalid time zone name \"..\""},
    {"* * * * *", "Europe/Berlin ", "invalid time zone name \"Europe/Berlin \""},
    {"* * * * *", "UTC\n", "invalid time zone name \"UTC?\""},
    {"* * * * *", "Europe\\Berlin", "invalid time zone name \"Europe\\Berlin\""},
    {"* * * * *", "Europe/Berlin;rm", "invalid time zone name \"Europe/Berlin;rm\""},
};

START_TEST(parse_invalid)
{
    char err[256];
    struct cron *c = (struct cron *)0x1;
    memset(err, 'X', sizeof(err));
    err[sizeof(err) - 1] = '\0';
    int r = cron_parse(invalid[_i].expr, invalid[_i].tz, &c, err, sizeof(err));
    ck_assert_msg(r == -EINVAL, "\"%s\" (%s): expected -EINVAL, got %d", invalid[_i].expr,
                  invalid[_i].tz ? invalid[_i].tz : "local", r);
    ck_assert_msg(c == (struct cron *)0x1, "\"%s\": *ret written on error", invalid[_i].expr);
    ck_assert_str_eq(err, invalid[_i].msg);
}
END_TEST

START_TEST(parse_long_zone_name)
{
    char tz[400], err[256];
    memset(tz, 'A', sizeof(tz) - 1);
    tz[sizeof(tz) - 1] = '\0';
    struct cron *c = NULL;
    ck_assert_int_eq(cron_parse("* * * * *", tz, &c, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_str_eq(err, "invalid time zone name \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA...\"");
    /* long but valid-looking: the file does not exist */
    memset(tz, 'A', 150);
    tz[150] = '\0';
    ck_assert_int_eq(cron_parse("* * * * *", tz, &c, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(strncmp(err, "unknown time zone \"AAAA", 23), 0);
}
END_TEST

START_TEST(parse_error_buffer)
{
    struct cron *c = NULL;
    /* no buffer */
    ck_assert_int_eq(cron_parse("60 * * * *", NULL, &c, NULL, 0), -EINVAL);
    ck_assert_int_eq(cron_parse("* * * * *", "Mars/Base", &c, NULL, 0), -EINVAL);
    char err[16];
    memset(err, 'X', sizeof(err));
    ck_assert_int_eq(cron_parse("60 * * * *", NULL, &c, err, 0), -EINVAL);
    ck_assert_int_eq(err[0], 'X');
    /* truncated, still terminated */
    ck_assert_int_eq(cron_parse("60 * * * *", NULL, &c, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "field 1 (minute");
    ck_assert_ptr_null(c);
    /* NULL arguments */
    ck_assert_int_eq(cron_parse(NULL, NULL, &c, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(cron_parse("* * * * *", NULL, NULL, err, sizeof(err)), -EINVAL);
    time_t t = 5;
    ck_assert_int_eq(cron_next(NULL, 0, &t), -EINVAL);
    ck_assert_int_eq(t, 5);
    ck_assert_ptr_null(cron_free(NULL));
}
END_TEST

static const char *const valid_zones[] = {
    "UTC",
    "Etc/UTC",
    "GMT0",
    "Europe/Berlin",
    "America/New_York",
    "America/Argentina/Buenos_Aires",
    "America/Port-au-Prince",
    "Etc/GMT+5",
    "Etc/GMT-14",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
};

START_TEST(parse_zone_valid)
{
    struct cron *c = parse_ok("0 0 * * *", valid_zones[_i]);
    time_t t = 0;
    ck_assert_int_eq(cron_next(c, utc("2026-01-01 12:00"), &t), 0);
    ck_assert_int_gt(t, utc("2026-01-01 12:00"));
    ck_assert_int_le(t, utc("2026-01-03 00:00"));
    cron_free(c);
}
END_TEST

/* ---- field semantics (UTC) ----------------------------------------------- */

#define MAXSEQ 8

static const struct {
    const char *expr;
    const char *after;
    const char *want[MAXSEQ];
} utc_cases[] = {
    {"* * * * *", "2026-01-01 00:00", {"2026-01-01 00:01", "2026-01-01 00:02"}},
    {"*/15 * * * *",
     "2026-01-01 00:00",
     {"2026-01-01 00:15", "2026-01-01 00:30", "2026-01-01 00:45", "2026-01-01 01:00"}},
    {"*/15 * * * *", "2026-01-01 00:14:59", {"2026-01-01 00:15"}},
    {"*/15 * * * *", "2026-01-01 00:15:00", {"2026-01-01 00:30"}},
    {"*/15 * * * *", "2026-01-01 00:15:01", {"2026-01-01 00:30"}},
    {"5-10/2 * * * *",
     "2026-01-01 00:00",
     {"2026-01-01 00:05", "2026-01-01 00:07", "2026-01-01 00:09", "2026-01-01 01:05"}},
    {"30/10 * * * *",
     "2026-01-01 00:00",
     {"2026-01-01 00:30", "2026-01-01 00:40", "2026-01-01 00:50", "2026-01-01 01:30"}},
    {"1,2,3-5,58 0 * * *",
     "2026-01-01 00:00",
     {"2026-01-01 00:01", "2026-01-01 00:02", "2026-01-01 00:03", "2026-01-01 00:04",
      "2026-01-01 00:05", "2026-01-01 00:58", "2026-01-02 00:01"}},
    {"0 9-17/4 * * *",
     "2026-01-01 00:00",
     {"2026-01-01 09:00", "2026-01-01 13:00", "2026-01-01 17:00", "2026-01-02 09:00"}},
    {"0 */6 * * *",
     "2026-01-01 00:00",
     {"2026-01-01 06:00", "2026-01-01 12:00", "2026-01-01 18:00", "2026-01-02 00:00"}},
    {"59 23 31 12 *", "2026-01-01 00:00", {"2026-12-31 23:59", "2027-12-31 23:59"}},
    {"0 0 1-31/10 * *",
     "2026-01-01 00:00",
     {"2026-01-11 00:00", "2026-01-21 00:00", "2026-01-31 00:00", "2026-02-01 00:00"}},
    /* 2026-01-01 is a Thursday */
    {"0 12 * * mon-fri",
     "2026-01-01 00:00",
     {"2026-01-01 12:00", "2026-01-02 12:00", "2026-01-05 12:00", "2026-01-06 12:00"}},
    {"0 0 * * sat,sun",
     "2026-01-01 00:00",
     {"2026-01-03 00:00", "2026-01-04 00:00", "2026-01-10 00:00", "2026-01-11 00:00"}},
    {"0 0 * * 6,7",
     "2026-01-01 00:00",
     {"2026-01-03 00:00", "2026-01-04 00:00", "2026-01-10 00:00", "2026-01-11 00:00"}},
    {"0 0 * * 5-7",
     "2026-01-01 00:00",
     {"2026-01-02 00:00", "2026-01-03 00:00", "2026-01-04 00:00", "2026-01-09 00:00"}},
    {"0 0 * * 5/1", /* 5-6 */
     "2026-01-01 00:00",
     {"2026-01-02 00:00", "2026-01-03 00:00", "2026-01-09 00:00"}},
    {"0 0 * * */3", /* 0, 3, 6 */
     "2026-01-01 00:00",
     {"2026-01-03 00:00", "2026-01-04 00:00", "2026-01-07 00:00", "2026-01-10 00:00"}},
    {"0 0 * * 0-7", "2026-01-01 00:00", {"2026-01-02 00:00", "2026-01-03 00:00"}},
    {"0 0 1 jan,jul *",
     "2026-01-01 00:00",
     {"2026-07-01 00:00", "2027-01-01 00:00", "2027-07-01 00:00"}},
    {"0 0 1 */3 *",
     "2026-01-01 00:00",
     {"2026-04-01 00:00", "2026-07-01 00:00", "2026-10-01 00:00", "2027-01-01 00:00"}},
    {"0 0 1 feb/5 *", /* 2, 7, 12 */
     "2026-01-01 00:00",
     {"2026-02-01 00:00", "2026-07-01 00:00", "2026-12-01 00:00", "2027-02-01 00:00"}},
    {"0 0 * * *", "2026-01-01 23:59:59", {"2026-01-02 00:00"}},
    {"0 0 * * *", "2026-12-31 12:00", {"2027-01-01 00:00"}},
    {"30 * * * *", "1969-12-31 23:00", {"1969-12-31 23:30", "1970-01-01 00:30"}},
    {"0 0 1 1 *", "1900-06-01 00:00", {"1901-01-01 00:00"}},
    /* day of month and day of week: both restricted, either matches */
    {"0 0 13 * fri",
     "2026-01-01 00:00",
     {"2026-01-02 00:00", "2026-01-09 00:00", "2026-01-13 00:00", "2026-01-16 00:00",
      "2026-01-23 00:00", "2026-01-30 00:00", "2026-02-06 00:00", "2026-02-13 00:00"}},
    {"0 0 1 * mon",
     "2026-01-01 00:00",
     {"2026-01-05 00:00", "2026-01-12 00:00", "2026-01-19 00:00", "2026-01-26 00:00",
      "2026-02-01 00:00", "2026-02-02 00:00"}},
    {"0 0 1-31 * mon", "2026-01-01 00:00", {"2026-01-02 00:00", "2026-01-03 00:00"}},
    /* one of them "*": only the other restricts */
    {"0 0 13 * *", "2026-01-01 00:00", {"2026-01-13 00:00", "2026-02-13 00:00"}},
    {"0 0 * * fri", "2026-01-01 00:00", {"2026-01-02 00:00", "2026-01-09 00:00"}},
    /* "* /2" counts as "*" (Vixie): odd days that are Mondays */
    {"0 0 */2 * mon",
     "2026-01-01 00:00",
     {"2026-01-05 00:00", "2026-01-19 00:00", "2026-02-09 00:00", "2026-02-23 00:00"}},
    {"0 0 1 * */2", /* the 1st, if it is Sun, Tue, Thu or Sat */
     "2025-12-31 00:00",
     {"2026-01-01 00:00", "2026-02-01 00:00", "2026-03-01 00:00", "2026-08-01 00:00"}},
    /* month ends */
    {"0 0 31 * *",
     "2026-01-31 00:00",
     {"2026-03-31 00:00", "2026-05-31 00:00", "2026-07-31 00:00", "2026-08-31 00:00",
      "2026-10-31 00:00", "2026-12-31 00:00", "2027-01-31 00:00"}},
    {"0 0 30 * *", "2026-01-30 00:00", {"2026-03-30 00:00", "2026-04-30 00:00"}},
    {"0 0 29 * *", "2026-01-29 00:00", {"2026-03-29 00:00"}},
    {"0 0 29 * *", "2028-01-29 00:00", {"2028-02-29 00:00", "2028-03-29 00:00"}},
    {"0 0 29 2 *",
     "2026-01-01 00:00",
     {"2028-02-29 00:00", "2032-02-29 00:00", "2036-02-29 00:00"}},
    /* 2100 is not a leap year; 2104-02-29 is 1734 days after 2099-06-01 */
    {"0 0 29 2 *", "2099-06-01 00:00", {"2104-02-29 00:00"}},
    {"0 0 29 2 *", "2000-01-01 00:00", {"2000-02-29 00:00", "2004-02-29 00:00"}},
    {"0 0 28-31 2 *",
     "2027-01-01 00:00",
     {"2027-02-28 00:00", "2028-02-28 00:00", "2028-02-29 00:00", "2029-02-28 00:00"}},
    {"0 0 31 2 mon", /* no Feb 31, but Mondays in February */
     "2026-01-01 00:00",
     {"2026-02-02 00:00", "2026-02-09 00:00"}},
};

START_TEST(utc_semantics)
{
    time_t want[MAXSEQ];
    size_t n = 0;
    while (n < MAXSEQ && utc_cases[_i].want[n]) {
        want[n] = utc(utc_cases[_i].want[n]);
        n++;
    }
    expect_seq(utc_cases[_i].expr, "UTC", utc(utc_cases[_i].after), want, n);
}
END_TEST

/* two expressions that must fire at the same instants */
static void expect_same(const char *a, const char *b, const char *tz, time_t from, int n)
{
    struct cron *ca = parse_ok(a, tz), *cb = parse_ok(b, tz);
    time_t ta = from, tb = from;
    for (int i = 0; i < n; i++) {
        CHECK(cron_next(ca, ta, &ta) == 0, "\"%s\" failed", a);
        CHECK(cron_next(cb, tb, &tb) == 0, "\"%s\" failed", b);
        CHECK(ta == tb, "\"%s\" vs \"%s\" #%d: %lld != %lld", a, b, i, (long long)ta,
              (long long)tb);
    }
    cron_free(ca);
    cron_free(cb);
}

static const struct {
    const char *a, *b;
} same_cases[] = {
    {"@hourly", "0 * * * *"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},
    {"@monthly", "0 0 1 * *"},
    {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
    {"@ANNUALLY", "@yearly"},
    {"0 0 * * 7", "0 0 * * 0"},
    {"0 0 * * sun", "0 0 * * 7"},
    {"0 0 * * SUN", "0 0 * * Sun"},
    {"0 0 * * 0-6", "0 0 * * *"},
    {"0 0 * * 1-7", "0 0 * * *"},
    {"0 0 * JAN-Mar Mon-FRI", "0 0 * 1-3 1-5"},
    {"0 0 * dec *", "0 0 * 12 *"},
    {"*/1 * * * *", "* * * * *"},
    {"0-59 0-23 * * *", "* * * * *"},
    {"0/20 * * * *", "0,20,40 * * * *"},
    {"0 0 */10 * *", "0 0 1,11,21,31 * *"},
    {"0 0 1 */5 *", "0 0 1 1,6,11 *"},
    {"0 0 * * 1-7/2", "0 0 * * 1,3,5,0"},
    {"0 0 * * 7-7", "0 0 * * 0"},
};

START_TEST(same_schedules)
{
    expect_same(same_cases[_i].a, same_cases[_i].b, "UTC", utc("2026-01-01 00:00"), 60);
    expect_same(same_cases[_i].a, same_cases[_i].b, "Europe/Berlin", utc("2026-03-20 00:00"), 60);
}
END_TEST

/* cron_next(t - 1) == t for every firing instant t, cron_next(t) > t */
START_TEST(next_after_firing)
{
    static const char *const exprs[] = {"*/7 * * * *", "0 */5 * * *", "30 2 * * *", "0 0 13 * fri",
                                        "15 */4 * * 1-5"};
    static const char *const zones[] = {"UTC", "Europe/Berlin", "America/New_York"};
    for (size_t z = 0; z < N_ELEMS(zones); z++) {
        for (size_t e = 0; e < N_ELEMS(exprs); e++) {
            struct cron *c = parse_ok(exprs[e], zones[z]);
            time_t t = utc("2026-03-01 00:00");
            for (int i = 0; i < 200; i++) {
                time_t next, again;
                CHECK(cron_next(c, t, &next) == 0, "%s (%s) after %lld", exprs[e], zones[z],
                      (long long)t);
                CHECK(next > t, "%s (%s): %lld after %lld", exprs[e], zones[z], (long long)next,
                      (long long)t);
                CHECK(cron_next(c, next - 1, &again) == 0 && again == next,
                      "%s (%s): %lld after %lld, expected %lld", exprs[e], zones[z],
                      (long long)again, (long long)next - 1, (long long)next);
                t = next;
            }
            cron_free(c);
        }
    }
}
END_TEST

/* ---- no firing ----------------------------------------------------------- */

static const struct {
    const char *expr;
    const char *after;
} erange_cases[] = {
    {"0 0 30 2 *", "2026-01-01 00:00"},
    {"0 0 31 2 *", "2026-01-01 00:00"},
    {"0 0 31 4,6,9,11 *", "2026-01-01 00:00"},
    {"* * 30,31 feb *", "2026-01-01 00:00"},
    /* the next Feb 29 is 2104-02-29, more than 1830 days later */
    {"0 0 29 2 *", "2096-03-01 00:00"},
    {"0 0 29 2 *", "2097-01-01 00:00"},
};

START_TEST(unsatisfiable)
{
    struct cron *c = parse_ok(erange_cases[_i].expr, "UTC");
    time_t t = 77;
    ck_assert_int_eq(cron_next(c, utc(erange_cases[_i].after), &t), -ERANGE);
    ck_assert_int_eq(t, 77);
    cron_free(c);
    c = parse_ok(erange_cases[_i].expr, NULL);
    ck_assert_int_eq(cron_next(c, utc(erange_cases[_i].after), &t), -ERANGE);
    ck_assert_int_eq(t, 77);
    cron_free(c);
}
END_TEST

START_TEST(after_out_of_range)
{
    struct cron *c = parse_ok("* * * * *", "UTC");
    time_t t = 77;
    ck_assert_int_eq(cron_next(c, utc("9999-01-01 00:00"), &t), -ERANGE);
    ck_assert_int_eq(cron_next(c, (time_t)INT64_MAX, &t), -ERANGE);
    ck_assert_int_eq(cron_next(c, (time_t)INT64_MIN, &t), -ERANGE);
    ck_assert_int_eq(t, 77);
    ck_assert_int_eq(cron_next(c, utc("9989-12-31 23:59"), &t), 0);
    ck_assert_int_eq(t, utc("9990-01-01 00:00"));
    cron_free(c);
}
END_TEST

/* ---- daylight-saving changes --------------------------------------------- */

/* Expected instants from `TZ=<zone> date -d '<local time>' +%s`. */
static const struct {
    const char *zone;
    const char *expr;
    time_t after;
    time_t want[MAXSEQ];
} dst_cases[] = {
    /* Europe/Berlin, spring forward 2026-03-29 02:00 CET -> 03:00 CEST */
    {"Europe/Berlin",
     "30 2 * * *",
     1774699200 /* 2026-03-28 12:00 UTC */,
     {1774746000 /* 03-29 03:00 CEST: the first instant after the gap */,
      1774830600 /* 03-30 02:30 CEST */}},
    {"Europe/Berlin",
     "0 2 * * *",
     1774699200,
     {1774746000 /* 03-29 03:00 CEST */, 1774828800 /* 03-30 02:00 CEST */}},
    {"Europe/Berlin",
     "*/30 2-3 * * *",
     1774738800 /* 03-29 00:00 CET */,
     {1774746000 /* 03:00 CEST, once for 02:00, 02:30 and 03:00 */, 1774747800 /* 03:30 CEST */,
      1774828800 /* 03-30 02:00 CEST */}},
    {"Europe/Berlin",
     "0,30 2 * * *",
     1774738800,
     {1774746000 /* 03-29 03:00 CEST */, 1774828800 /* 03-30 02:00 */,
      1774830600 /* 03-30 02:30 */}},
    /* a schedule that covers all hours skips the missing times */
    {"Europe/Berlin",
     "*/15 * * * *",
     1774745100 /* 01:45 CET */,
     {1774746000 /* 03:00 CEST */, 1774746900 /* 03:15 CEST */}},
    {"Europe/Berlin",
     "5 * * * *",
     1774742700 /* 01:05 CET */,
     {1774746300 /* 03:05 CEST, no run at 03:00 */}},
    {"Europe/Berlin", "30 * * * *", 1774744200 /* 01:30 CET */, {1774747800 /* 03:30 CEST */}},
    /* Europe/Berlin, fall back 2026-10-25 03:00 CEST -> 02:00 CET */
    {"Europe/Berlin",
     "30 2 * * *",
     1792843200 /* 2026-10-24 12:00 UTC */,
     {1792888200 /* 10-25 02:30 CEST, only the first pass */, 1792978200 /* 10-26 02:30 CET */}},
    {"Europe/Berlin",
     "30 2 * * *",
     1792888200 /* exactly the first 02:30 */,
     {1792978200 /* not 1792891800, the second 02:30 */}},
    {"Europe/Berlin",
     "*/20 2 * * *",
     1792885500 /* 10-25 01:45 CEST */,
     {1792886400 /* 02:00 CEST */, 1792887600 /* 02:20 CEST */, 1792888800 /* 02:40 CEST */,
      1792976400 /* 10-26 02:00 CET */}},
    {"Europe/Berlin",
     "*/15 * * * *",
     1792885500 /* 10-25 01:45 CEST */,
     {1792886400 /* 02:00 CEST */, 1792887300, 1792888200, 1792889100 /* 02:45 CEST */,
      1792890000 /* 02:00 CET */, 1792890900, 1792891800 /* 02:30 CET */,
      1792892700 /* 02:45 CET */}},
    {"Europe/Berlin",
     "30 * * * *",
     1792885500,
     {1792888200 /* 02:30 CEST */, 1792891800 /* 02:30 CET */, 1792895400 /* 03:30 CET */}},
    /* America/New_York, spring forward 2026-03-08 02:00 EST -> 03:00 EDT */
    {"America/New_York",
     "30 2 * * *",
     1772884800 /* 2026-03-07 12:00 UTC */,
     {1772953200 /* 03-08 03:00 EDT */, 1773037800 /* 03-09 02:30 EDT */}},
    {"America/New_York",
     "*/10 * * * *",
     1772952600 /* 03-08 01:50 EST */,
     {1772953200 /* 03:00 EDT */, 1772953800 /* 03:10 EDT */}},
    /* America/New_York, fall back 2026-11-01 02:00 EDT -> 01:00 EST */
    {"America/New_York",
     "30 1 * * *",
     1793448000 /* 2026-10-31 12:00 UTC */,
     {1793511000 /* 11-01 01:30 EDT */, 1793601000 /* 11-02 01:30 EST */}},
    {"America/New_York",
     "*/20 * * * *",
     1793508000 /* 11-01 00:40 EDT */,
     {1793509200 /* 01:00 EDT */, 1793510400 /* 01:20 EDT */, 1793511600 /* 01:40 EDT */,
      1793512800 /* 01:00 EST */, 1793514000 /* 01:20 EST */, 1793515200 /* 01:40 EST */,
      1793516400 /* 02:00 EST */}},
    {"America/New_York", "0 2 * * *", 1793448000, {1793516400 /* 11-01 02:00 EST, exists once */}},
    /* Australia/Lord_Howe: 30-minute shifts. Fall back 2026-04-05 02:00
     * +11 -> 01:30 +1030; spring forward 2026-10-04 02:00 -> 02:30 +11. */
    {"Australia/Lord_Howe",
     "45 1 * * *",
     1775260800 /* 2026-04-04 00:00 UTC */,
     {1775313900 /* 04-05 01:45 +11 */, 1775402100 /* 04-06 01:45 +1030 */}},
    {"Australia/Lord_Howe",
     "*/15 * * * *",
     1775312100 /* 04-05 01:15 +11 */,
     {1775313000 /* 01:30 +11 */, 1775313900 /* 01:45 +11 */, 1775314800 /* 01:30 +1030 */,
      1775315700 /* 01:45 +1030 */, 1775316600 /* 02:00 +1030 */}},
    {"Australia/Lord_Howe",
     "15 2 * * *",
     1790985600 /* 2026-10-03 00:00 UTC */,
     {1791041400 /* 10-04 02:30 +11 */, 1791126900 /* 10-05 02:15 +11 */}},
    {"Australia/Lord_Howe",
     "*/10 * * * *",
     1791040800 /* 10-04 01:50 +1030 */,
     {1791041400 /* 02:30 +11 */, 1791042000 /* 02:40 +11 */}},
    /* Asia/Kolkata: +05:30 all year */
    {"Asia/Kolkata",
     "30 9 * * *",
     1780272000 /* 2026-06-01 00:00 UTC */,
     {1780286400 /* 06-01 09:30 IST = 04:00 UTC */, 1780372800 /* 06-02 09:30 IST */}},
    {"Asia/Kolkata",
     "0 0 1 1 *",
     1767225600 /* 2026-01-01 00:00 UTC */,
     {1798741800 /* 2027-01-01 00:00 IST = 2026-12-31 18:30 UTC */}},
    /* America/Santiago: fall back at 24:00 to Saturday 23:00 (2026-04-04),
     * spring forward at 24:00 to Sunday 01:00 (2026-09-06) */
    {"America/Santiago",
     "30 23 * * *",
     1775304000 /* 2026-04-04 12:00 UTC */,
     {1775356200 /* 04-04 23:30 -03 */, 1775446200 /* 04-05 23:30 -04 */}},
    {"America/Santiago",
     "30 0 * * *",
     1788609600 /* 2026-09-05 12:00 UTC */,
     {1788667200 /* 09-06 01:00 -03 */, 1788751800 /* 09-07 00:30 -03 */}},
    /* America/Havana: midnight gap (2026-03-08) and fold (2026-11-01) */
    {"America/Havana",
     "0 0 * * *",
     1772884800 /* 2026-03-07 12:00 UTC */,
     {1772946000 /* 03-08 01:00 CDT */, 1773028800 /* 03-09 00:00 CDT */}},
    {"America/Havana",
     "30 0 * * *",
     1793448000 /* 2026-10-31 12:00 UTC */,
     {1793507400 /* 11-01 00:30 CDT */, 1793597400 /* 11-02 00:30 CST */}},
    /* Pacific/Apia skipped 2011-12-30 entirely (-10 -> +14) */
    {"Pacific/Apia",
     "0 12 * * *",
     1325109600 /* 2011-12-28 22:00 UTC */,
     {1325196000 /* 12-29 12:00 -10 */, 1325239200 /* 12-31 00:00 +14 for 12-30 12:00 */,
      1325282400 /* 12-31 12:00 +14 */}},
    {"Pacific/Apia", "0 12 * * *", 1325239200, {1325282400}},
    {"Pacific/Apia",
     "0 12 30 12 *",
     1325109600,
     {1325239200, 1356818400 /* 2012-12-30 12:00 +14 */}},
    {"Pacific/Apia",
     "0 */6 * * *",
     1325217600 /* 12-29 18:00 -10 */,
     {1325239200 /* 12-31 00:00 +14 */, 1325260800 /* 12-31 06:00 */}},
};

START_TEST(dst)
{
    size_t n = 0;
    while (n < MAXSEQ && dst_cases[_i].want[n]) {
        n++;
    }
    expect_seq(dst_cases[_i].expr, dst_cases[_i].zone, dst_cases[_i].after, dst_cases[_i].want, n);
    /* the same with the process in that zone and no zone in the schedule */
    char *old = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
    ck_assert_int_eq(setenv("TZ", dst_cases[_i].zone, 1), 0);
    tzset();
    expect_seq(dst_cases[_i].expr, NULL, dst_cases[_i].after, dst_cases[_i].want, n);
    if (old) {
        setenv("TZ", old, 1);
    } else {
        unsetenv("TZ");
    }
    tzset();
    free(old);
}
END_TEST

/* A whole year in Berlin: "* /30 * * * *" is every 30 minutes of real time
 * (17520 runs), "0 2 * * *" once a day (365 runs, at 03:00 on 2026-03-29). */
START_TEST(dst_year)
{
    time_t start = 1767222000; /* 2026-01-01 00:00 CET */
    time_t end = 1798758000;   /* 2027-01-01 00:00 CET */
    struct cron *c = parse_ok("*/30 * * * *", "Europe/Berlin");
    time_t t = start - 1, prev = 0;
    int n = 0;
    for (;;) {
        CHECK(cron_next(c, t, &t) == 0, "after %lld", (long long)t);
        if (t >= end) {
            break;
        }
        CHECK(n == 0 || t - prev == 1800, "%lld after %lld", (long long)t, (long long)prev);
        prev = t;
        n++;
    }
    ck_assert_int_eq(n, 17520);
    cron_free(c);

    c = parse_ok("0 2 * * *", "Europe/Berlin");
    t = start;
    n = 0;
    char *old = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
    for (;;) {
        CHECK(cron_next(c, t, &t) == 0, "after %lld", (long long)t);
        if (t >= end) {
            break;
        }
        setenv("TZ", "Europe/Berlin", 1);
        tzset();
        struct tm tm;
        localtime_r(&t, &tm);
        CHECK(tm.tm_hour == (t == 1774746000 ? 3 : 2) && tm.tm_min == 0 && tm.tm_yday == n,
              "run %d at %lld: day %d %02d:%02d", n, (long long)t, tm.tm_yday, tm.tm_hour,
              tm.tm_min);
        n++;
    }
    ck_assert_int_eq(n, 365);
    cron_free(c);
    if (old) {
        setenv("TZ", old, 1);
    } else {
        unsetenv("TZ");
    }
    tzset();
    free(old);
}
END_TEST

/* ---- the process's TZ ---------------------------------------------------- */

START_TEST(tz_restored)
{
    time_t summer = utc("2026-07-01 12:00"), t;
    struct tm tm;
    struct cron *c = parse_ok("30 2 * * *", "Europe/Berlin");

    /* TZ set */
    ck_assert_int_eq(setenv("TZ", "America/New_York", 1), 0);
    tzset();
    ck_assert_int_eq(cron_next(c, summer, &t), 0);
    ck_assert_int_eq(t, utc("2026-07-02 00:30"));
    ck_assert_str_eq(getenv("TZ"), "America/New_York");
    localtime_r(&summer, &tm);
    ck_assert_int_eq(tm.tm_gmtoff, -4 * 3600);
    ck_assert_int_eq(mktime(&tm), summer);

    /* again, with the zone cached in c and far from the cached weeks */
    ck_assert_int_eq(cron_next(c, utc("2030-01-01 12:00"), &t), 0);
    ck_assert_int_eq(t, utc("2030-01-02 01:30"));
    ck_assert_str_eq(getenv("TZ"), "America/New_York");
    localtime_r(&summer, &tm);
    ck_assert_int_eq(tm.tm_gmtoff, -4 * 3600);

    /* TZ a POSIX rule string */
    ck_assert_int_eq(setenv("TZ", "XXX-3YYY,M3.5.0,M10.5.0/3", 1), 0);
    tzset();
    ck_assert_int_eq(cron_next(c, utc("2035-07-01 12:00"), &t), 0);
    ck_assert_int_eq(t, utc("2035-07-02 00:30"));
    ck_assert_str_eq(getenv("TZ"), "XXX-3YYY,M3.5.0,M10.5.0/3");
    localtime_r(&summer, &tm);
    ck_assert_int_eq(tm.tm_gmtoff, 4 * 3600);

    /* TZ unset */
    unsetenv("TZ");
    tzset();
    localtime_r(&summer, &tm);
    long before = tm.tm_gmtoff;
    ck_assert_int_eq(cron_next(c, utc("2040-07-01 12:00"), &t), 0);
    ck_assert_int_eq(t, utc("2040-07-02 00:30"));
    ck_assert_ptr_null(getenv("TZ"));
    localtime_r(&summer, &tm);
    ck_assert_int_eq(tm.tm_gmtoff, before);
    cron_free(c);
}
END_TEST

/* Without a zone the schedule follows the process's zone (as of the last
 * tzset()) at each call. */
START_TEST(tz_local)
{
    struct cron *c = parse_ok("30 9 * * *", NULL);
    time_t t;
    ck_assert_int_eq(setenv("TZ", "Asia/Kolkata", 1), 0);
    tzset();
    ck_assert_int_eq(cron_next(c, utc("2026-06-01 00:00"), &t), 0);
    ck_assert_int_eq(t, utc("2026-06-01 04:00"));
    ck_assert_int_eq(setenv("TZ", "UTC", 1), 0);
    tzset();
    ck_assert_int_eq(cron_next(c, utc("2026-06-01 00:00"), &t), 0);
    ck_assert_int_eq(t, utc("2026-06-01 09:30"));
    ck_assert_int_eq(setenv("TZ", "America/New_York", 1), 0);
    tzset();
    ck_assert_int_eq(cron_next(c, utc("2026-06-01 00:00"), &t), 0);
    ck_assert_int_eq(t, utc("2026-06-01 13:30"));
    ck_assert_str_eq(getenv("TZ"), "America/New_York");
    cron_free(c);
    unsetenv("TZ");
    tzset();
}
END_TEST

/* ---- cross-check against a minute-by-minute reference -------------------- */

/* The reference knows the documented rules and nothing of cron.c's method:
 * it walks every minute of a window with localtime_r() in the zone. A
 * schedule fires at minute t when
 *   - t's wall time matches and either all 24 hours are selected or the
 *     same wall time did not occur in the two hours before t, or
 *   - the offset rises at t (spring forward), the hours are restricted and
 *     a wall time skipped by the change matches. */

struct spec {
    uint64_t min;
    uint32_t hour, dom, mon, dow;
    bool dom_star, dow_star;
};

struct wall {
    time_t t;
    long off;
    int year, mon, mday, wday, hour, min;
};

static bool ref_match(const struct spec *s, int mon, int mday, int wday, int hour, int min)
{
    if (!(s->min >> min & 1) || !(s->hour >> hour & 1) || !(s->mon >> mon & 1)) {
        return false;
    }
    bool dom = s->dom >> mday & 1, dow = s->dow >> wday & 1;
    return s->dom_star || s->dow_star ? dom && dow : dom || dow;
}

#define REF_PAD 120 /* minutes of history before the window */

static bool ref_fires(const struct spec *s, const struct wall *w, size_t i)
{
    bool wild = s->hour == 0xffffff;
    if (!wild && w[i - 1].off < w[i].off) {
        for (time_t x = w[i].t + w[i - 1].off; x < w[i].t + w[i].off; x += 60) {
            struct tm tm;
            gmtime_r(&x, &tm);
            if (ref_match(s, tm.tm_mon + 1, tm.tm_mday, tm.tm_wday, tm.tm_hour, tm.tm_min)) {
                return true;
            }
        }
    }
    if (!ref_match(s, w[i].mon, w[i].mday, w[i].wday, w[i].hour, w[i].min)) {
        return false;
    }
    if (wild) {
        return true;
    }
    for (size_t d = 30; d <= REF_PAD; d += 30) {
        const struct wall *e = &w[i - d];
        if (e->year == w[i].year && e->mon == w[i].mon && e->mday == w[i].mday &&
            e->hour == w[i].hour && e->min == w[i].min) {
            return false;
        }
    }
    return true;
}

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static unsigned rng_in(uint64_t *x, unsigned lo, unsigned hi)
{
    return lo + (unsigned)(rng_next(x) % (hi - lo + 1));
}

/* Appends a random field to buf and sets its bits (day of week 7 -> 0). */
static void gen_field(uint64_t *rng, int fi, char *buf, size_t len, uint64_t *bits, bool *star)
{
    static const unsigned fmin[] = {0, 0, 1, 1, 0}, fmax[] = {59, 23, 31, 12, 7};
    static const char *const mon[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                      "jul", "aug", "sep", "oct", "nov", "DEC"};
    static const char *const dow[] = {"sun", "Mon", "tue", "wed", "thu", "fri", "SAT"};
    unsigned lo = fmin[fi], hi = fmax[fi], top = fi == 4 ? 6 : hi;
    char out[96] = "";
    size_t o = 0;
    *bits = 0;
    /* months and days mostly "*", so that most schedules fire in a window */
    unsigned kind = rng_in(rng, 0, fi >= 2 ? 14 : 8);
    if (kind > 8) {
        kind = 0;
    }
    int elems = kind == 8 ? (int)rng_in(rng, 2, 3) : 1;
    for (int e = 0; e < elems; e++) {
        unsigned k = kind == 8 ? rng_in(rng, 1, 4) : kind;
        unsigned a = rng_in(rng, lo, hi), b = rng_in(rng, lo, hi), step = 1, from, to;
        if (a > b) {
            unsigned x = a;
            a = b;
            b = x;
        }
        char va[8], vb[8];
        bool names = rng_in(rng, 0, 2) == 0;
        if (fi == 3 && names) {
            snprintf(va, sizeof(va), "%s", mon[a - 1]);
            snprintf(vb, sizeof(vb), "%s", mon[b - 1]);
        } else if (fi == 4 && names && b < 7) {
            snprintf(va, sizeof(va), "%s", dow[a]);
            snprintf(vb, sizeof(vb), "%s", dow[b]);
        } else {
            snprintf(va, sizeof(va), "%u", a);
            snprintf(vb, sizeof(vb), "%u", b);
        }
        if (e > 0) {
            out[o++] = ',';
        }
        switch (k) {
        case 0:
        case 1:
        case 2:
            o += (size_t)snprintf(out + o, sizeof(out) - o, "*");
            from = lo;
            to = top;
            break;
        case 3:
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%s", va);
            from = to = a;
            break;
        case 4:
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%s-%s", va, vb);
            from = a;
            to = b;
            break;
        case 5:
            step = rng_in(rng, 1, hi / 2 + 1);
            o += (size_t)snprintf(out + o, sizeof(out) - o, "*/%u", step);
            from = lo;
            to = top;
            break;
        case 6:
            step = rng_in(rng, 1, hi);
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%s-%s/%u", va, vb, step);
            from = a;
            to = b;
            break;
        default:
            step = rng_in(rng, 1, hi);
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%s/%u", va, step);
            from = a;
            to = a > top ? a : top;
            break;
        }
        for (unsigned v = from; v <= to; v += step) {
            *bits |= UINT64_C(1) << (fi == 4 && v == 7 ? 0 : v);
        }
    }
    *star = out[0] == '*';
    snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", fi ? " " : "", out);
}

static void gen_expr(uint64_t *rng, char *buf, size_t len, struct spec *s)
{
    uint64_t bits[5];
    bool star[5];
    buf[0] = '\0';
    for (int fi = 0; fi < 5; fi++) {
        gen_field(rng, fi, buf, len, &bits[fi], &star[fi]);
    }
    s->min = bits[0];
    s->hour = (uint32_t)bits[1];
    s->dom = (uint32_t)bits[2];
    s->mon = (uint32_t)bits[3];
    s->dow = (uint32_t)bits[4];
    s->dom_star = star[2];
    s->dow_star = star[4];
}

struct xzone {
    const char *zone; /* for cron_parse; NULL: only the process zone */
    const char *tzenv;
    const char *windows[3][2];
};

static const struct xzone xzones[] = {
    {"Europe/Berlin",
     "Europe/Berlin",
     {{"2026-03-28 00:00", "2026-03-30 12:00"}, {"2026-10-24 00:00", "2026-10-26 12:00"}}},
    {"America/New_York",
     "America/New_York",
     {{"2026-03-07 12:00", "2026-03-09 12:00"}, {"2026-10-31 12:00", "2026-11-02 12:00"}}},
    {"Australia/Lord_Howe",
     "Australia/Lord_Howe",
     {{"2026-04-03 12:00", "2026-04-05 12:00"}, {"2026-10-02 12:00", "2026-10-04 12:00"}}},
    {"America/Santiago",
     "America/Santiago",
     {{"2026-04-04 00:00", "2026-04-06 00:00"}, {"2026-09-05 00:00", "2026-09-07 00:00"}}},
    {"America/Havana",
     "America/Havana",
     {{"2026-03-07 00:00", "2026-03-09 00:00"}, {"2026-10-31 00:00", "2026-11-02 00:00"}}},
    {"Pacific/Apia", "Pacific/Apia", {{"2011-12-29 00:00", "2011-12-31 23:00"}}},
    {"Asia/Kolkata", "Asia/Kolkata", {{"2026-02-27 00:00", "2026-03-01 12:00"}}},
    {"UTC",
     "UTC",
     {{"2028-02-27 00:00", "2028-03-01 12:00"}, {"2026-12-30 00:00", "2027-01-02 00:00"}}},
    /* POSIX rules: DST ends at 00:30 to 23:30 of the day before (a repeated
     * hour across midnight), starts at 23:30 to 00:30 (a gap across it) */
    {NULL,
     "AAA4BBB,M9.1.6/23:30,M4.1.0/0:30",
     {{"2026-04-03 12:00", "2026-04-06 12:00"}, {"2026-09-04 12:00", "2026-09-07 12:00"}}},
};

struct xwindow {
    time_t from, to;
    size_t n;
    struct wall *w;
};

static void crosscheck_one(struct cron *c, const char *expr, const char *what, const struct spec *s,
                           const struct xwindow *win, uint64_t *rng)
{
    time_t *fires = calloc(win->n, sizeof(*fires));
    size_t nf = 0;
    ck_assert_ptr_nonnull(fires);
    for (size_t i = REF_PAD; i < win->n; i++) {
        if (ref_fires(s, win->w, i)) {
            fires[nf++] = win->w[i].t;
        }
    }
    char b1[40], b2[40], b3[40];
    /* the chain from the window's start */
    time_t t = win->from - 1;
    for (size_t k = 0;; k++) {
        time_t next = 0;
        int r = cron_next(c, t, &next);
        if (k < nf) {
            CHECK(r == 0 && next == fires[k], "\"%s\" (%s) after %s: expected %s, got %s (r=%d)",
                  expr, what, fmt_utc(t, b1), fmt_utc(fires[k], b2), fmt_utc(next, b3), r);
            t = next;
        } else {
            CHECK(r == -ERANGE || (r == 0 && next > win->to),
                  "\"%s\" (%s) after %s: expected nothing before %s, got %s (r=%d)", expr, what,
                  fmt_utc(t, b1), fmt_utc(win->to, b2), fmt_utc(next, b3), r);
            break;
        }
    }
    /* random starting points, seconds included, in ascending order (going
     * back in time empties the zone cache, which is slow under valgrind) */
    time_t probes[20];
    for (size_t p = 0; p < N_ELEMS(probes); p++) {
        time_t after = win->from + (time_t)(rng_next(rng) % (uint64_t)(win->to - win->from));
        size_t q = p;
        while (q > 0 && probes[q - 1] > after) {
            probes[q] = probes[q - 1];
            q--;
        }
        probes[q] = after;
    }
    for (size_t p = 0; p < N_ELEMS(probes); p++) {
        time_t after = probes[p];
        size_t k = 0;
        while (k < nf && fires[k] <= after) {
            k++;
        }
        time_t next = 0;
        int r = cron_next(c, after, &next);
        if (k < nf) {
            CHECK(r == 0 && next == fires[k], "\"%s\" (%s) after %s: expected %s, got %s (r=%d)",
                  expr, what, fmt_utc(after, b1), fmt_utc(fires[k], b2), fmt_utc(next, b3), r);
        } else {
            CHECK(r == -ERANGE || (r == 0 && next > win->to),
                  "\"%s\" (%s) after %s: expected nothing before %s, got %s (r=%d)", expr, what,
                  fmt_utc(after, b1), fmt_utc(win->to, b2), fmt_utc(next, b3), r);
        }
    }
    free(fires);
}

START_TEST(crosscheck)
{
    const struct xzone *xz = &xzones[_i];
    char *old = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
    ck_assert_int_eq(setenv("TZ", xz->tzenv, 1), 0);
    tzset();

    struct xwindow win[3];
    size_t nwin = 0;
    for (; nwin < 3 && xz->windows[nwin][0]; nwin++) {
        struct xwindow *x = &win[nwin];
        x->from = utc(xz->windows[nwin][0]);
        x->to = utc(xz->windows[nwin][1]);
        x->n = (size_t)(x->to - x->from) / 60 + 1 + REF_PAD;
        x->w = calloc(x->n, sizeof(x->w[0]));
        ck_assert_ptr_nonnull(x->w);
        for (size_t i = 0; i < x->n; i++) {
            struct wall *w = &x->w[i];
            struct tm tm;
            w->t = x->from + ((time_t)i - REF_PAD) * 60;
            localtime_r(&w->t, &tm);
            w->off = tm.tm_gmtoff;
            w->year = tm.tm_year + 1900;
            w->mon = tm.tm_mon + 1;
            w->mday = tm.tm_mday;
            w->wday = tm.tm_wday;
            w->hour = tm.tm_hour;
            w->min = tm.tm_min;
        }
    }

    uint64_t rng = UINT64_C(0x9e3779b97f4a7c15) + (uint64_t)_i * 7919;
    static const char *const fixed[] = {"* * * * *",      "*/15 * * * *",      "30 * * * *",
                                        "*/30 0-3 * * *", "0,30 0,2,23 * * *", "45 1 * * *",
                                        "0 12 * * *",     "0 0 * * *",         "30 23 * * *"};
    for (int e = 0; e < 40; e++) {
        char expr[512];
        struct spec s;
        if (e < (int)N_ELEMS(fixed)) {
            snprintf(expr, sizeof(expr), "%s", fixed[e]);
            /* the same spec, built by hand */
            s = (struct spec){0};
            s.dom = 0xfffffffe;
            s.mon = 0x1ffe;
            s.dow = 0x7f;
            s.dom_star = s.dow_star = true;
            switch (e) {
            case 0:
                s.min = (UINT64_C(1) << 60) - 1;
                s.hour = 0xffffff;
                break;
            case 1:
                s.min = 1 | 1 << 15 | UINT64_C(1) << 30 | UINT64_C(1) << 45;
                s.hour = 0xffffff;
                break;
            case 2:
                s.min = UINT64_C(1) << 30;
                s.hour = 0xffffff;
                break;
            case 3:
                s.min = 1 | UINT64_C(1) << 30;
                s.hour = 0xf;
                break;
            case 4:
                s.min = 1 | UINT64_C(1) << 30;
                s.hour = 1 | 1 << 2 | 1 << 23;
                break;
            case 5:
                s.min = UINT64_C(1) << 45;
                s.hour = 1 << 1;
                break;
            case 6:
                s.min = 1;
                s.hour = 1 << 12;
                break;
            case 7:
                s.min = 1;
                s.hour = 1;
                break;
            default:
                s.min = UINT64_C(1) << 30;
                s.hour = 1 << 23;
                break;
            }
        } else {
            gen_expr(&rng, expr, sizeof(expr), &s);
        }
        struct cron *cz = xz->zone ? parse_ok(expr, xz->zone) : NULL;
        /* the process's zone: the same computation without the cache, so
         * a sample is enough (it reads the zone afresh on every call) */
        struct cron *cl = !cz || e % 4 == 0 ? parse_ok(expr, NULL) : NULL;
        /* windows in order, then backwards (the zone cache moves both ways) */
        for (size_t k = 0; k < 2 * nwin; k++) {
            const struct xwindow *x = &win[k < nwin ? k : 2 * nwin - 1 - k];
            if (cz) {
                crosscheck_one(cz, expr, xz->zone, &s, x, &rng);
                CHECK(strcmp(getenv("TZ"), xz->tzenv) == 0, "TZ changed to \"%s\"", getenv("TZ"));
            }
            if (cl) {
                crosscheck_one(cl, expr, "local", &s, x, &rng);
            }
        }
        cron_free(cz);
        cron_free(cl);
    }
    for (size_t k = 0; k < nwin; k++) {
        free(win[k].w);
    }
    if (old) {
        setenv("TZ", old, 1);
    } else {
        unsetenv("TZ");
    }
    tzset();
    free(old);
}
END_TEST

static Suite *cron_suite(void)
{
    Suite *s = suite_create("cron");
    TCase *tc;

    tc = tcase_create("parse");
    tcase_add_loop_test(tc, parse_valid, 0, N_ELEMS(valid_exprs));
    tcase_add_loop_test(tc, parse_invalid, 0, N_ELEMS(invalid));
    tcase_add_test(tc, parse_long_zone_name);
    tcase_add_test(tc, parse_error_buffer);
    tcase_add_loop_test(tc, parse_zone_valid, 0, N_ELEMS(valid_zones));
    suite_add_tcase(s, tc);

    tc = tcase_create("semantics");
    tcase_add_loop_test(tc, utc_semantics, 0, N_ELEMS(utc_cases));
    tcase_add_loop_test(tc, same_schedules, 0, N_ELEMS(same_cases));
    tcase_add_test(tc, next_after_firing);
    tcase_add_loop_test(tc, unsatisfiable, 0, N_ELEMS(erange_cases));
    tcase_add_test(tc, after_out_of_range);
    suite_add_tcase(s, tc);

    tc = tcase_create("zones");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, dst, 0, N_ELEMS(dst_cases));
    tcase_add_test(tc, dst_year);
    tcase_add_test(tc, tz_restored);
    tcase_add_test(tc, tz_local);
    tcase_add_loop_test(tc, crosscheck, 0, N_ELEMS(xzones));
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cron_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
