/* test-schedule.c - daemon-mode schedules with the real binary: one
 * catch-up run after SIGSTOP (not a burst), symmetric jitter, wall-clock
 * alignment, and log flood control when many endpoints fail at once. */
#include <cJSON.h>
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static pid_t httpd_pid;
static int port;
static char *dir;

static void setup(void)
{
    dir = tu_tmpdir();
    httpd_pid = tu_httpd_start(&port);
}

static void teardown(void)
{
    tu_httpd_stop(httpd_pid);
    tu_rmdir(dir);
    free(dir);
}


/* Parses "2026-11-21T20:54:00.577Z" to seconds since the epoch. */
static double parse_ts(const char *s)
{
    struct tm tm = {0};
    int ms = 0;
    sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
           &tm.tm_min, &tm.tm_sec, &ms);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) + ms / 1000.0;
}

/* fetched_at of every record of endpoint name in a JSON Lines file. */
static size_t times_of(const char *content, const char *name, double *out, size_t max)
{
    size_t n = 0;
    const char *p = content;
    while (p && *p && n < max) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            break;
        }
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        ck_assert_msg(j, "not JSON: %.*s", (int)(nl - p), p);
        cJSON *ep = cJSON_GetObjectItemCaseSensitive(j, "endpoint");
        if (cJSON_IsString(ep) && strcmp(ep->valuestring, name) == 0) {
            out[n++] = parse_ts(cJSON_GetObjectItemCaseSensitive(j, "fetched_at")->valuestring);
        }
        cJSON_Delete(j);
        p = nl + 1;
    }
    return n;
}

static pid_t start_daemon(const char *cfg_text, char **outp, char **errp)
{
    char *path = tu_write(dir, "fetchd.json", cfg_text);
    *outp = tu_fmt("%s/out", dir);
    *errp = tu_fmt("%s/err", dir);
    const char *argv[] = {tu_fetchd(), "-c", path, NULL};
    pid_t pid = tu_spawn(argv, *outp, *errp);
    free(path);
    return pid;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

START_TEST(test_catch_up_once_after_sigstop)
{
    /* 5 endpoints every 200 ms; stopped for 1.5 s (7 missed runs each);
     * after SIGCONT each endpoint runs once right away, then on its grid.
     * In the first 250 ms that is the catch-up plus at most two grid
     * points (the next one may come just after the catch-up); a burst of
     * the missed runs would be 7 or more */
    char *rec = tu_fmt("%s/records.jsonl", dir);
    char *cfg = tu_fmt("{\"defaults\": {\"interval\": \"200ms\", \"sinks\": [\"out\"]},"
                       " \"sinks\": {\"out\": {\"type\": \"file\", \"path\": \"%s\"}},"
                       " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                       " \"b\": {\"url\": \"http://127.0.0.1:%d/b\"}, \"c\": {\"url\": \"http://127.0.0.1:%d/c\"},"
                       " \"d\": {\"url\": \"http://127.0.0.1:%d/d\"}, \"e\": {\"url\": \"http://127.0.0.1:%d/e\"}}}",
                       rec, port, port, port, port, port);
    char *outp, *errp;
    pid_t pid = start_daemon(cfg, &outp, &errp);
    ck_assert(tu_httpd_wait_requests(port, 5, 30));
    usleep(300000);
    kill(pid, SIGSTOP);
    usleep(1500000);
    double cont = wall_now();
    kill(pid, SIGCONT);
    usleep(1000000);
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait(pid, 10 * tu_slack()), 0);
    char *content = tu_read(rec);
    const char *names[] = {"a", "b", "c", "d", "e"};
    for (size_t i = 0; i < 5; i++) {
        double t[256];
        size_t n = times_of(content, names[i], t, 256);
        size_t burst = 0;
        for (size_t k = 0; k < n; k++) {
            burst += t[k] >= cont - 0.01 && t[k] < cont + 0.25;
        }
        ck_assert_msg(burst >= 1 && burst <= 3, "endpoint %s ran %zu times right after SIGCONT",
                      names[i], burst);
    }
    free(content);
    free(cfg);
    free(rec);
    free(outp);
    free(errp);
}
END_TEST

START_TEST(test_jitter_is_symmetric)
{
    /* interval 100 ms, jitter 40 ms: gaps vary, their mean stays ~100 ms */
    char *rec = tu_fmt("%s/records.jsonl", dir);
    char *cfg = tu_fmt("{\"sinks\": {\"out\": {\"type\": \"file\", \"path\": \"%s\"}},"
                       " \"endpoints\": {\"j\": {\"url\": \"http://127.0.0.1:%d/j\", \"interval\": \"100ms\","
                       " \"jitter\": \"40ms\", \"sinks\": [\"out\"]}}}",
                       rec, port);
    char *outp, *errp;
    pid_t pid = start_daemon(cfg, &outp, &errp);
    usleep(4000000);
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait(pid, 10 * tu_slack()), 0);
    char *content = tu_read(rec);
    double t[512];
    size_t n = times_of(content, "j", t, 512);
    ck_assert_msg(n >= 25, "only %zu runs", n);
    double sum = 0, mn = 1e9, mx = 0;
    for (size_t k = 1; k < n; k++) {
        double g = t[k] - t[k - 1];
        sum += g;
        mn = g < mn ? g : mn;
        mx = g > mx ? g : mx;
    }
    double mean = sum / (double)(n - 1);
    /* the mean over ~38 gaps of a +-40 ms uniform jitter: well within 85..115 ms */
    ck_assert_msg(mean > 0.085 && mean < 0.115, "mean gap %.1f ms", mean * 1e3);
    ck_assert_msg(mx - mn > 0.02, "gaps do not vary: %.1f..%.1f ms", mn * 1e3, mx * 1e3);
    free(content);
    free(cfg);
    free(rec);
    free(outp);
    free(errp);
}
END_TEST

START_TEST(test_align_to_wall_clock)
{
    /* interval 500 ms, align, offset 200 ms: runs at .200 and .700 */
    char *rec = tu_fmt("%s/records.jsonl", dir);
    char *cfg = tu_fmt("{\"sinks\": {\"out\": {\"type\": \"file\", \"path\": \"%s\"}},"
                       " \"endpoints\": {\"al\": {\"url\": \"http://127.0.0.1:%d/al\", \"interval\": \"500ms\","
                       " \"align\": true, \"offset\": \"200ms\", \"sinks\": [\"out\"]}}}",
                       rec, port);
    char *outp, *errp;
    pid_t pid = start_daemon(cfg, &outp, &errp);
    usleep(2600000);
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait(pid, 10 * tu_slack()), 0);
    char *content = tu_read(rec);
    double t[64];
    size_t n = times_of(content, "al", t, 64);
    ck_assert_msg(n >= 3, "only %zu runs", n);
    for (size_t k = 0; k < n; k++) {
        double phase = fmod(t[k] - 0.2, 0.5); /* 0 when on the grid */
        if (phase > 0.25) {
            phase -= 0.5;
        }
        ck_assert_msg(fabs(phase) < 0.06 * tu_slack(), "run %zu is %.0f ms off the .200/.700 grid", k,
                      phase * 1e3);
    }
    free(content);
    free(cfg);
    free(rec);
    free(outp);
    free(errp);
}
END_TEST

START_TEST(test_failure_flood_is_bounded)
{
    /* 300 endpoints fail at once (closed port), every 200 ms for 2 s: each
     * goes down once (a warning), later failures are info-level; the down
     * warnings share a budget of 100 per 30 s, the rest is one summary */
    size_t cap = 300 * 96 + 256;
    char *cfg = malloc(cap);
    size_t len = (size_t)snprintf(cfg, cap, "{\"defaults\": {\"interval\": \"200ms\"}, \"endpoints\": {");
    for (int i = 0; i < 300; i++) {
        len += (size_t)snprintf(cfg + len, cap - len, "%s\"f%d\": {\"url\": \"http://127.0.0.1:1/%d\"}",
                                i ? "," : "", i, i);
    }
    snprintf(cfg + len, cap - len, "}}");
    char *outp, *errp;
    pid_t pid = start_daemon(cfg, &outp, &errp);
    usleep(2000000);
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait(pid, 10 * tu_slack()), 0);
    char *err = tu_read(errp);
    char *out = tu_read(outp);
    size_t warnings = 0;
    for (const char *p = err; (p = strstr(p, "fetchd: warning:")); p++) {
        warnings++;
    }
    ck_assert_msg(warnings <= 101 + 1, "%zu warning lines", warnings);
    ck_assert_msg(strstr(err, "messages about endpoints were suppressed"), "%s", err);
    /* every failure is still a record (about 10 runs each in 2 s; under
     * valgrind at least every endpoint's first) */
    ck_assert_uint_ge(tu_lines(out), tu_slack() > 1 ? 300 : 300 * 5);
    free(err);
    free(out);
    free(cfg);
    free(outp);
    free(errp);
}
END_TEST

/* Rewrites the config and sends SIGHUP, then waits until the reload is
 * logged (the Nth "configuration reloaded" line). */
static void reload_to(pid_t pid, const char *errp, const char *text, int nth)
{
    char *path = tu_write(dir, "fetchd.json", text);
    free(path);
    kill(pid, SIGHUP);
    double end = tu_now() + 10 * tu_slack();
    for (;;) {
        char *err = tu_read(errp);
        int n = 0;
        for (const char *p = err; p && (p = strstr(p, "configuration reloaded")); p++) {
            n++;
        }
        free(err);
        if (n >= nth) {
            return;
        }
        ck_assert_msg(tu_now() < end, "reload %d not applied", nth);
        usleep(20000);
    }
}

START_TEST(test_reload_twice_with_transfer_in_flight)
{
    /* A's fetch takes 1.5 s. Reload 1 keeps A (its transfer moves to the
     * new generation), reload 2 removes A while it is still in flight:
     * the transfer must complete into a live state and deliver its record
     * (a use-after-free before the owner held its own reference) */
    char *rec = tu_fmt("%s/records.jsonl", dir);
    char *v1 = tu_fmt("{\"defaults\": {\"interval\": \"10s\", \"sinks\": [\"out\"]},"
                      " \"sinks\": {\"out\": {\"type\": \"file\", \"path\": \"%s\"}},"
                      " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a?delay=1500\", \"interval\": \"100ms\"}}}",
                      rec, port);
    char *v2 = tu_fmt("{\"defaults\": {\"interval\": \"10s\", \"sinks\": [\"out\"]},"
                      " \"sinks\": {\"out\": {\"type\": \"file\", \"path\": \"%s\"}},"
                      " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a?delay=1500\", \"interval\": \"100ms\"},"
                      " \"b\": {\"url\": \"http://127.0.0.1:%d/b\"}}}",
                      rec, port, port);
    char *v3 = tu_fmt("{\"defaults\": {\"interval\": \"10s\", \"sinks\": [\"out\"]},"
                      " \"sinks\": {\"out\": {\"type\": \"file\", \"path\": \"%s\"}},"
                      " \"endpoints\": {\"b\": {\"url\": \"http://127.0.0.1:%d/b\"}}}",
                      rec, port);
    char *outp, *errp;
    long before = tu_httpd_requests(port);
    pid_t pid = start_daemon(v1, &outp, &errp);
    ck_assert(tu_httpd_wait_requests(port, before + 1, 30)); /* a is in flight */
    reload_to(pid, errp, v2, 1);
    reload_to(pid, errp, v3, 2);
    usleep(2000000); /* a completes */
    kill(pid, SIGTERM);
    int st = tu_wait(pid, 10 * tu_slack());
    char *err = tu_read(errp);
    ck_assert_msg(st == 0, "status %d: %s", st, err);
    char *content = tu_read(rec);
    double t[16];
    ck_assert_uint_eq(times_of(content, "a", t, 16), 1);
    ck_assert_ptr_null(strstr(content, "\"kind\":\"cancelled\""));
    free(content);
    free(err);
    free(v1);
    free(v2);
    free(v3);
    free(rec);
    free(outp);
    free(errp);
}
END_TEST

START_TEST(test_reload_in_flight_record_goes_to_the_right_sink)
{
    /* x uses sink "a" (the only defined one, index 0) and is in flight; the
     * new config defines "b" before "a": x's record must land in a's file,
     * not in b's (it was dispatched by the old index before) */
    char *fa = tu_fmt("%s/a.jsonl", dir), *fb = tu_fmt("%s/b.jsonl", dir);
    char *v1 = tu_fmt("{\"sinks\": {\"a\": {\"type\": \"file\", \"path\": \"%s\"}},"
                      " \"endpoints\": {\"x\": {\"url\": \"http://127.0.0.1:%d/x?delay=1000\","
                      " \"interval\": \"10s\", \"sinks\": [\"a\"]}}}",
                      fa, port);
    char *v2 = tu_fmt("{\"sinks\": {\"b\": {\"type\": \"file\", \"path\": \"%s\"},"
                      " \"a\": {\"type\": \"file\", \"path\": \"%s\"}},"
                      " \"endpoints\": {\"x\": {\"url\": \"http://127.0.0.1:%d/x?delay=1000\","
                      " \"interval\": \"10s\", \"sinks\": [\"a\"]},"
                      " \"y\": {\"url\": \"http://127.0.0.1:%d/y\", \"interval\": \"10s\", \"sinks\": [\"b\"]}}}",
                      fb, fa, port, port);
    char *outp, *errp;
    long before = tu_httpd_requests(port);
    pid_t pid = start_daemon(v1, &outp, &errp);
    ck_assert(tu_httpd_wait_requests(port, before + 1, 30));
    reload_to(pid, errp, v2, 1);
    usleep(1500000);
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait(pid, 10 * tu_slack()), 0);
    char *ca = tu_read(fa), *cb = tu_read(fb);
    double t[16];
    ck_assert_uint_eq(times_of(ca, "x", t, 16), 1);
    ck_assert_uint_eq(times_of(cb ? cb : "", "x", t, 16), 0);
    free(ca);
    free(cb);
    free(v1);
    free(v2);
    free(fa);
    free(fb);
    free(outp);
    free(errp);
}
END_TEST

/* ---- calendar schedules ------------------------------------------------ */

/* libfaketime (Debian package faketime) moves the wall clock to a chosen
 * instant, here right before DST transitions; the monotonic clock stays
 * real, so a schedule due 3 s after the fake start runs 3 real seconds
 * later. Returns the records fetchd wrote in `secs` seconds, or NULL when
 * libfaketime is not installed. */
#define FAKETIME_LIB "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

static char *run_faked(const char *start, const char *endpoints, double secs)
{
    if (access(FAKETIME_LIB, R_OK) != 0) {
        return NULL;
    }
    char *cfg = tu_fmt("{\"endpoints\": {%s}}", endpoints);
    char *path = tu_write(dir, "cron.json", cfg);
    char *out = tu_fmt("%s/cron.out", dir);
    char *ft = tu_fmt("@%s", start);
    setenv("FAKETIME", ft, 1);
    setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1", 1);
    setenv("LD_PRELOAD", FAKETIME_LIB, 1);
    /* AddressSanitizer wants to come first among the libraries */
    const char *asan = getenv("ASAN_OPTIONS");
    char *saved = asan ? strdup(asan) : NULL;
    char *asan2 = tu_fmt("%s%sverify_asan_link_order=0", asan ? asan : "", asan ? ":" : "");
    setenv("ASAN_OPTIONS", asan2, 1);
    const char *argv[] = {tu_fetchd(), "-c", path, NULL};
    pid_t pid = tu_spawn(argv, out, NULL);
    if (saved) {
        setenv("ASAN_OPTIONS", saved, 1);
    } else {
        unsetenv("ASAN_OPTIONS");
    }
    free(saved);
    free(asan2);
    unsetenv("LD_PRELOAD");
    unsetenv("FAKETIME");
    unsetenv("FAKETIME_DONT_FAKE_MONOTONIC");
    usleep((useconds_t)(secs * 1e6 * (tu_slack() > 1 ? 3 : 1)));
    kill(pid, SIGTERM);
    ck_assert_int_eq(tu_wait(pid, 30 * tu_slack()), 0);
    char *text = tu_read(out);
    free(cfg);
    free(path);
    free(out);
    free(ft);
    return text ? text : strdup("");
}

static bool has_run_at(const char *text, const char *name, const char *utc_prefix)
{
    double t[16];
    size_t n = times_of(text, name, t, 16);
    for (size_t i = 0; i < n; i++) {
        char buf[32];
        time_t s = (time_t)t[i];
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", gmtime(&s));
        if (strncmp(buf, utc_prefix, strlen(utc_prefix)) == 0) {
            return true;
        }
    }
    return false;
}

START_TEST(test_cron_dst)
{
    /* spring forward in Berlin, 2026-03-29 01:00 UTC: 02:00-03:00 local does
     * not exist. "30 2 * * *" runs once, at 03:00 local (01:00:00 UTC);
     * "* * * * *" at the same instant (the minute boundary). */
    char *eps = tu_fmt("\"gap\": {\"url\": \"http://127.0.0.1:%d/a\", \"schedule\": \"30 2 * * *\","
                       " \"timezone\": \"Europe/Berlin\"},"
                       " \"minute\": {\"url\": \"http://127.0.0.1:%d/b\", \"schedule\": \"* * * * *\"}",
                       port, port);
    char *text = run_faked("2026-03-29 00:59:57", eps, 5);
    free(eps);
    if (!text) {
        return; /* no libfaketime here (CI installs it) */
    }
    double t[8];
    ck_assert_msg(times_of(text, "gap", t, 8) == 1, "the 02:30 run in the gap: %s", text);
    ck_assert_msg(has_run_at(text, "gap", "2026-03-29T01:00:0"), "not right after the gap: %s",
                  text);
    ck_assert_msg(has_run_at(text, "minute", "2026-03-29T01:00:0"), "%s", text);
    free(text);

    /* fall back, 2026-10-25 01:00 UTC: 02:00-03:00 local comes twice. A
     * fixed-hour schedule ran in the first pass (00:00 UTC) and does not
     * run again; an all-hours one runs in the second pass too. */
    eps = tu_fmt("\"fixed\": {\"url\": \"http://127.0.0.1:%d/a\", \"schedule\": \"0 2 * * *\","
                 " \"timezone\": \"Europe/Berlin\"},"
                 " \"hourly\": {\"url\": \"http://127.0.0.1:%d/b\", \"schedule\": \"0 * * * *\","
                 " \"timezone\": \"Europe/Berlin\"}",
                 port, port);
    text = run_faked("2026-10-25 00:59:57", eps, 5);
    free(eps);
    ck_assert_msg(times_of(text, "fixed", t, 8) == 0, "02:00 ran twice: %s", text);
    ck_assert_msg(has_run_at(text, "hourly", "2026-10-25T01:00:0"), "%s", text);
    free(text);
}
END_TEST

static void check_config_error(const char *eps, const char *want)
{
    char *cfg = tu_fmt("{\"endpoints\": {%s}}", eps);
    char *path = tu_write(dir, "bad.json", cfg);
    const char *argv[] = {tu_fetchd(), "--check-config", "-c", path, NULL};
    struct tu_result res;
    tu_run(argv, 30 * tu_slack(), &res);
    ck_assert_msg(res.status == 78, "exit %d for %s", res.status, cfg);
    ck_assert_msg(strstr(res.err, want), "want \"%s\" in: %s", want, res.err);
    tu_result_done(&res);
    free(cfg);
    free(path);
}

START_TEST(test_cron_config_errors)
{
    check_config_error("\"a\": {\"url\": \"http://x/\", \"schedule\": \"61 * * * *\"}",
                       "endpoints.a.schedule: field 1 (minute): 61 is out of range");
    check_config_error("\"a\": {\"url\": \"http://x/\", \"schedule\": \"* * * *\"}",
                       "expected 5 fields");
    check_config_error("\"a\": {\"url\": \"http://x/\", \"schedule\": \"0 3 * * *\","
                       " \"timezone\": \"Mars/Base\"}",
                       "endpoints.a.timezone: unknown time zone");
    check_config_error("\"a\": {\"url\": \"http://x/\", \"schedule\": \"0 3 * * *\","
                       " \"interval\": \"1m\"}",
                       "both \"schedule\" and \"interval\"");
    check_config_error("\"a\": {\"url\": \"http://x/\", \"timezone\": \"UTC\"}",
                       "\"timezone\" applies to \"schedule\" and to the time placeholders");
}
END_TEST

static Suite *schedule_suite(void)
{
    Suite *s = suite_create("schedule");
    TCase *tc = tcase_create("daemon");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_catch_up_once_after_sigstop);
    tcase_add_test(tc, test_jitter_is_symmetric);
    tcase_add_test(tc, test_align_to_wall_clock);
    tcase_add_test(tc, test_failure_flood_is_bounded);
    tcase_add_test(tc, test_reload_twice_with_transfer_in_flight);
    tcase_add_test(tc, test_reload_in_flight_record_goes_to_the_right_sink);
    tcase_add_test(tc, test_cron_dst);
    tcase_add_test(tc, test_cron_config_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(schedule_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
