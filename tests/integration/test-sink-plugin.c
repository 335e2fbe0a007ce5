/* test-sink-plugin.c - sinks loaded from shared objects (include/fetchd/
 * sink.h), through the real fetchd binary against the test HTTP server:
 *
 * - the example sink (examples/prom-counts) writes the exact textfile;
 * - every loader error is a configuration error (exit 78) that names the
 *   file and the problem, also under --check-config;
 * - bare names are looked up in $FETCHD_PLUGIN_DIR;
 * - the host's side of the ABI: the record view, the call sequence (init,
 *   deliver..., flush, reopen, close), RETRY with backoff (counted retried),
 *   rejections and unknown results (counted failed, exit 74), a plugin that
 *   asks to retry forever (abandoned at exit), an init failure (fetchd does
 *   not start), a failed reload that keeps the running plugin;
 * - a sink written in C++ (tests/abi/sink-cxx.cc), when one was built.
 *
 * The plugins come from tests/plugins/ and examples/ through environment
 * variables that meson sets (FETCHD_TEST_SINK, FETCHD_EXAMPLE_SINK,
 * FETCHD_BAD_SINK_*, FETCHD_CXX_SINK). The test plugin appends one line per
 * call to a "report" file, which is what most checks read.
 *
 * A failed check kills the fetchd under test and the server first
 * (ensure()), since Check's fork mode skips the teardown on failure. */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static pid_t httpd_pid;
static int port;
static char *dir;
static pid_t child; /* a fetchd in daemon mode, 0 when none runs */

static void cleanup(void)
{
    if (child > 0) {
        kill(child, SIGKILL);
        tu_wait(child, 10);
        child = 0;
    }
    if (httpd_pid > 0) {
        tu_httpd_stop(httpd_pid);
        httpd_pid = 0;
    }
    if (dir) {
        tu_rmdir(dir);
        free(dir);
        dir = NULL;
    }
}

#define ensure(cond, ...)                                                                       \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            cleanup();                                                                          \
            ck_abort_msg(__VA_ARGS__);                                                          \
        }                                                                                       \
    } while (0)

static void setup(void)
{
    dir = tu_tmpdir();
    httpd_pid = tu_httpd_start(&port);
    child = 0;
}

static void teardown(void)
{
    cleanup();
}

/* A plugin built by meson; the variable must be set (tests/meson.build). */
static const char *plugin(const char *var)
{
    const char *p = getenv(var);
    ensure(p && *p, "%s is not set: run the test through meson", var);
    return p;
}

/* Writes cfg to dir/fetchd.json and runs fetchd with it and the extra
 * arguments (NULL-terminated after a1/a2/a3). */
static void run_cfg(const char *cfg, const char *a1, const char *a2, const char *a3,
                    struct tu_result *res)
{
    char *path = tu_write(dir, "fetchd.json", cfg);
    const char *argv[10] = {tu_fetchd(), "-c", path, a1, a2, a3, NULL};
    tu_run(argv, 60 * tu_slack(), res);
    free(path);
}

static void run_once(const char *cfg, struct tu_result *res)
{
    run_cfg(cfg, "--once", "--log-level", "info", res);
}

/* Copies a file (a plugin) to dst with the given mode (set with chmod, so
 * the umask does not matter). */
static void copy_file(const char *src, const char *dst, mode_t mode)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    ensure(in >= 0, "open %s: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ensure(out >= 0, "open %s: %s", dst, strerror(errno));
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        ensure(write(out, buf, (size_t)n) == n, "write %s", dst);
    }
    close(in);
    close(out);
    ensure(chmod(dst, mode) == 0, "chmod %s: %s", dst, strerror(errno));
}

/* The lines of text that start with prefix, in order, joined by '\n'
 * (owned; "" when none). */
static char *lines_with(const char *text, const char *prefix)
{
    char *out = strdup("");
    size_t plen = strlen(prefix);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len >= plen && strncmp(p, prefix, plen) == 0) {
            char *n = tu_fmt("%s%.*s\n", out, (int)len, p);
            free(out);
            out = n;
        }
        p = nl ? nl + 1 : NULL;
    }
    return out;
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle)) {
        n++;
    }
    return n;
}

/* tmpl with every "@D" replaced by val (owned). */
static char *subst(const char *tmpl, const char *val)
{
    char *out = strdup("");
    for (const char *p = tmpl; *p;) {
        const char *at = strstr(p, "@D");
        size_t n = at ? (size_t)(at - p) : strlen(p);
        char *next = tu_fmt("%s%.*s%s", out, (int)n, p, at ? val : "");
        free(out);
        out = next;
        p = at ? at + 2 : p + n;
    }
    return out;
}

static double realtime_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the example sink: prom-counts ---------------------------------------- */

/* The file the example must write for the endpoints of test_prom_counts,
 * with "T" where a timestamp goes. */
static const char *const prom_expected[] = {
    "# HELP fetchd_sink_records_total Records fetchd handed to this sink, by endpoint and result.",
    "# TYPE fetchd_sink_records_total counter",
    "fetchd_sink_records_total{endpoint=\"a\",result=\"ok\",site=\"q\\\"b\\\\s\\nn\"} 3",
    "fetchd_sink_records_total{endpoint=\"a\",result=\"failed\",site=\"q\\\"b\\\\s\\nn\"} 0",
    "fetchd_sink_records_total{endpoint=\"b\",result=\"ok\",site=\"q\\\"b\\\\s\\nn\"} 3",
    "fetchd_sink_records_total{endpoint=\"b\",result=\"failed\",site=\"q\\\"b\\\\s\\nn\"} 1",
    "fetchd_sink_records_total{endpoint=\"c\",result=\"ok\",site=\"q\\\"b\\\\s\\nn\"} 0",
    "fetchd_sink_records_total{endpoint=\"c\",result=\"failed\",site=\"q\\\"b\\\\s\\nn\"} 1",
    "fetchd_sink_records_total{endpoint=\"d.x@y\",result=\"ok\",site=\"q\\\"b\\\\s\\nn\"} 0",
    "fetchd_sink_records_total{endpoint=\"d.x@y\",result=\"failed\",site=\"q\\\"b\\\\s\\nn\"} 1",
    "# HELP fetchd_sink_last_http_status HTTP status of the endpoint's last record (0: no response).",
    "# TYPE fetchd_sink_last_http_status gauge",
    "fetchd_sink_last_http_status{endpoint=\"a\",site=\"q\\\"b\\\\s\\nn\"} 200",
    "fetchd_sink_last_http_status{endpoint=\"b\",site=\"q\\\"b\\\\s\\nn\"} 200",
    "fetchd_sink_last_http_status{endpoint=\"c\",site=\"q\\\"b\\\\s\\nn\"} 503",
    "fetchd_sink_last_http_status{endpoint=\"d.x@y\",site=\"q\\\"b\\\\s\\nn\"} 0",
    "# HELP fetchd_sink_last_fetch_timestamp_seconds When the endpoint's last record was "
    "fetched, in seconds since the epoch.",
    "# TYPE fetchd_sink_last_fetch_timestamp_seconds gauge",
    "fetchd_sink_last_fetch_timestamp_seconds{endpoint=\"a\",site=\"q\\\"b\\\\s\\nn\"} T",
    "fetchd_sink_last_fetch_timestamp_seconds{endpoint=\"b\",site=\"q\\\"b\\\\s\\nn\"} T",
    "fetchd_sink_last_fetch_timestamp_seconds{endpoint=\"c\",site=\"q\\\"b\\\\s\\nn\"} T",
    "fetchd_sink_last_fetch_timestamp_seconds{endpoint=\"d.x@y\",site=\"q\\\"b\\\\s\\nn\"} T",
    NULL,
};

/* Compares the file line by line with prom_expected; a "T" value must be a
 * timestamp with three decimals between t0 and t1. */
static void check_prom(const char *got, double t0, double t1)
{
    const char *p = got;
    size_t i;
    for (i = 0; prom_expected[i]; i++) {
        const char *want = prom_expected[i];
        const char *nl = strchr(p, '\n');
        ensure(nl, "line %zu missing or unterminated; want %s; file:\n%s", i + 1, want, got);
        size_t len = (size_t)(nl - p);
        size_t wl = strlen(want);
        if (want[wl - 1] == 'T' && want[wl - 2] == ' ') {
            ensure(len > wl - 1 && strncmp(p, want, wl - 1) == 0, "line %zu: %.*s\nwant %s",
                   i + 1, (int)len, p, want);
            const char *v = p + wl - 1;
            char *end;
            double ts = strtod(v, &end);
            ensure(end == nl && nl - v > 4 && nl[-4] == '.', "line %zu: bad timestamp %.*s",
                   i + 1, (int)(nl - v), v);
            ensure(ts >= t0 - 0.001 && ts <= t1 + 0.001, "line %zu: timestamp %.3f not in "
                   "[%.3f, %.3f]", i + 1, ts, t0, t1);
        } else {
            ensure(len == wl && strncmp(p, want, wl) == 0, "line %zu: %.*s\nwant %s", i + 1,
                   (int)len, p, want);
        }
        p = nl + 1;
    }
    ensure(*p == '\0', "extra lines after line %zu: %s", i, p);
}

/* The example, by absolute path, counts ok and failed records per endpoint
 * (ndjson gives several records per fetch; a bad line, an HTTP error and a
 * network error give error records) and writes them with escaped labels. */
START_TEST(test_prom_counts)
{
    char *prom = tu_fmt("%s/metrics/fetchd.prom", dir);
    char *mdir = tu_fmt("%s/metrics", dir);
    ensure(mkdir(mdir, 0755) == 0, "mkdir");
    /* the label value holds a quote, a backslash and a newline */
    char *cfg = tu_fmt(
        "{\"sinks\": {\"m\": {\"type\": \"plugin\", \"path\": \"%s\", \"options\": "
        "{\"path\": \"%s\", \"label\": \"site=q\\\"b\\\\s\\nn\"}}},"
        " \"endpoints\": {"
        "\"a\": {\"url\": \"http://127.0.0.1:%d/a?ndjson=3\", \"format\": \"ndjson\", "
        "\"sinks\": [\"m\"]},"
        "\"b\": {\"url\": \"http://127.0.0.1:%d/b?ndjson=4&ndjson_bad=1\", \"format\": \"ndjson\", "
        "\"sinks\": [\"m\"]},"
        "\"c\": {\"url\": \"http://127.0.0.1:%d/c?status=503\", \"sinks\": [\"m\"]},"
        "\"d.x@y\": {\"url\": \"http://127.0.0.1:%d/d?close=1\", \"sinks\": [\"m\"]}}}",
        plugin("FETCHD_EXAMPLE_SINK"), prom, port, port, port, port);
    double t0 = realtime_now();
    struct tu_result res;
    run_once(cfg, &res);
    double t1 = realtime_now();
    ensure(res.status == 1, "status %d (fetch failures expected), stderr: %s", res.status,
           res.err);
    ensure(!strstr(res.err, "dropped"), "%s", res.err);
    char *got = tu_read(prom);
    ensure(got, "no %s; stderr: %s", prom, res.err);
    check_prom(got, t0, t1);
    struct stat st;
    ensure(stat(prom, &st) == 0 && (st.st_mode & 07777) == 0644, "mode %o", st.st_mode);
    /* the temporary files were renamed or removed */
    DIR *d = opendir(mdir);
    ensure(d, "opendir");
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            ensure(strcmp(de->d_name, "fetchd.prom") == 0, "stray file %s", de->d_name);
            n++;
        }
    }
    closedir(d);
    ensure(n == 1, "%d files", n);
    free(got);
    tu_result_done(&res);
    free(cfg);
    free(mdir);
    free(prom);
}
END_TEST

/* Two sinks from one plugin are independent instances, each with its own
 * options and counts; the one plugin is loaded once. */
START_TEST(test_prom_counts_two_instances)
{
    char *p1 = tu_fmt("%s/one.prom", dir);
    char *p2 = tu_fmt("%s/two.prom", dir);
    const char *so = plugin("FETCHD_EXAMPLE_SINK");
    char *cfg = tu_fmt(
        "{\"sinks\": {"
        "\"one\": {\"type\": \"plugin\", \"path\": \"%s\", \"options\": {\"path\": \"%s\", "
        "\"interval\": 0}},"
        "\"two\": {\"type\": \"plugin\", \"path\": \"%s\", \"options\": {\"path\": \"%s\", "
        "\"interval\": \"0.5\"}}},"
        " \"endpoints\": {"
        "\"a\": {\"url\": \"http://127.0.0.1:%d/a?ndjson=2\", \"format\": \"ndjson\", "
        "\"sinks\": [\"one\", \"two\"]},"
        "\"b\": {\"url\": \"http://127.0.0.1:%d/b\", \"sinks\": [\"two\"]}}}",
        so, p1, so, p2, port, port);
    struct tu_result res;
    run_once(cfg, &res);
    ensure(res.status == 0, "status %d, stderr: %s", res.status, res.err);
    char *one = tu_read(p1);
    char *two = tu_read(p2);
    ensure(one && two, "files missing: %s", res.err);
    ensure(strstr(one, "\nfetchd_sink_records_total{endpoint=\"a\",result=\"ok\"} 2\n"), "%s", one);
    ensure(!strstr(one, "endpoint=\"b\""), "%s", one);
    ensure(strstr(two, "\nfetchd_sink_records_total{endpoint=\"a\",result=\"ok\"} 2\n"), "%s", two);
    ensure(strstr(two, "\nfetchd_sink_records_total{endpoint=\"b\",result=\"ok\"} 1\n"), "%s", two);
    ensure(strstr(two, "\nfetchd_sink_last_http_status{endpoint=\"b\"} 200\n"), "%s", two);
    /* the summary at --log-level info names both */
    ensure(!strstr(res.err, "error"), "%s", res.err);
    free(one);
    free(two);
    tu_result_done(&res);
    free(cfg);
    free(p1);
    free(p2);
}
END_TEST

struct init_case {
    const char *options; /* the "options" object */
    const char *want;    /* in stderr */
};

static const struct init_case prom_init_cases[] = {
    {"{\"path\": \"@D/no-such-dir/x.prom\"}",
     "cannot create files in @D/no-such-dir (for @D/no-such-dir/x.prom): No such file or "
     "directory"},
    {"{\"path\": \"@D/x.prom\", \"interval\": \"soon\"}",
     "option \"interval\": expected a number of seconds (0 or more), got \"soon\""},
    {"{\"path\": \"@D/x.prom\", \"interval\": -1}",
     "option \"interval\": expected a number of seconds (0 or more), got \"-1\""},
    {"{\"path\": \"@D/x.prom\", \"label\": \"endpoint=x\"}",
     "option \"label\": expected NAME=VALUE"},
    {"{\"path\": \"@D/x.prom\", \"label\": \"novalue\"}", "option \"label\": expected NAME=VALUE"},
    {"{\"path\": \"@D/\"}", "option \"path\": \"@D/\" names a directory"},
};

/* Values the example cannot use fail its init: fetchd does not start
 * (exit 71), with the plugin's message and the host's. */
START_TEST(test_prom_counts_init_errors)
{
    const struct init_case *c = &prom_init_cases[_i];
    char *opts = subst(c->options, dir);
    char *want = subst(c->want, dir);
    char *cfg = tu_fmt("{\"sinks\": {\"m\": {\"type\": \"plugin\", \"path\": \"%s\", "
                       "\"options\": %s}},"
                       " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\", "
                       "\"sinks\": [\"m\"]}}}",
                       plugin("FETCHD_EXAMPLE_SINK"), opts, port);
    struct tu_result res;
    run_once(cfg, &res);
    ensure(res.status == 71, "%s: status %d, stderr: %s", opts, res.status, res.err);
    ensure(strstr(res.err, want), "%s: want \"%s\" in: %s", opts, want, res.err);
    ensure(strstr(res.err, "failed to initialise"), "%s", res.err);
    ensure(strstr(res.err, "cannot start"), "%s", res.err);
    ensure(tu_lines(res.out) == 0, "%s", res.out);
    tu_result_done(&res);
    free(cfg);
    free(want);
    free(opts);
}
END_TEST

/* The number after "result=\"ok\"} " for endpoint a in a prom file, -1 if
 * none. */
static long prom_ok_count(const char *prom)
{
    char *s = tu_read(prom);
    const char *key = "fetchd_sink_records_total{endpoint=\"a\",result=\"ok\"} ";
    const char *p = s ? strstr(s, key) : NULL;
    long n = p ? strtol(p + strlen(key), NULL, 10) : -1;
    free(s);
    return n;
}

static bool wait_report(const char *report, const char *needle, size_t n, double timeout_s);

/* In daemon mode the file is written at the first record, then not again
 * within "interval" (an hour here), at a reload's flush, and at the stop,
 * when it holds exactly what a second sink on the same endpoint took. */
START_TEST(test_prom_counts_interval_daemon)
{
    char *prom = tu_fmt("%s/fetchd.prom", dir);
    char *report = tu_fmt("%s/report", dir);
    char *cfg = tu_fmt(
        "{\"sinks\": {"
        "\"m\": {\"type\": \"plugin\", \"path\": \"%s\", \"options\": {\"path\": \"%s\", "
        "\"interval\": 3600}},"
        "\"t\": {\"type\": \"plugin\", \"path\": \"%s\", \"options\": {\"report\": \"%s\"}}},"
        " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a?ndjson=2\", "
        "\"format\": \"ndjson\", \"interval\": \"500ms\", \"sinks\": [\"m\", \"t\"]}}}",
        plugin("FETCHD_EXAMPLE_SINK"), prom, plugin("FETCHD_TEST_SINK"), report, port);
    char *path = tu_write(dir, "fetchd.json", cfg);
    char *err_path = tu_fmt("%s/stderr", dir);
    const char *argv[] = {tu_fetchd(), "-c", path, NULL};
    child = tu_spawn(argv, NULL, err_path);
    double slack = tu_slack();
    ensure(wait_report(report, "-> ok", 4, 30 * slack), "records not delivered");
    /* the first record was written at once, the others wait for the interval */
    long n = prom_ok_count(prom);
    ensure(n == 1, "count %ld, want 1", n);
    char *rep = tu_read(report);
    long before = (long)count_of(rep, "-> ok");
    free(rep);
    kill(child, SIGHUP); /* same definition: the instance stays, flush */
    double t0 = tu_now();
    while ((n = prom_ok_count(prom)) < before && tu_now() - t0 < 30 * slack) {
        usleep(20000);
    }
    ensure(n >= before, "count %ld after the reload, want >= %ld", n, before);
    kill(child, SIGTERM);
    int st = tu_wait(child, 60 * slack);
    child = 0;
    char *err = tu_read(err_path);
    ensure(st == 0, "status %d, stderr: %s", st, err);
    rep = tu_read(report);
    long took = (long)count_of(rep, "-> ok");
    n = prom_ok_count(prom);
    ensure(n == took, "count %ld, the other sink took %ld", n, took);
    char *s = tu_read(prom);
    ensure(strstr(s, "\nfetchd_sink_records_total{endpoint=\"a\",result=\"failed\"} 0\n") &&
               strstr(s, "\nfetchd_sink_last_http_status{endpoint=\"a\"} 200\n"),
           "%s", s);
    free(s);
    free(rep);
    free(err);
    free(err_path);
    free(path);
    free(cfg);
    free(report);
    free(prom);
}
END_TEST

static bool wait_file_has(const char *path, const char *needle, double timeout_s);

/* A write that fails (the file's name is taken by a directory) is logged
 * once, the records are still taken (nothing dropped), and the file is
 * written again once the name is free, which is logged too. */
START_TEST(test_prom_counts_write_failure)
{
    char *prom = tu_fmt("%s/fetchd.prom", dir);
    char *cfg = tu_fmt(
        "{\"sinks\": {\"m\": {\"type\": \"plugin\", \"path\": \"%s\", \"options\": "
        "{\"path\": \"%s\", \"interval\": 0}}},"
        " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\", \"interval\": \"200ms\", "
        "\"sinks\": [\"m\"]}}}",
        plugin("FETCHD_EXAMPLE_SINK"), prom, port);
    char *path = tu_write(dir, "fetchd.json", cfg);
    char *err_path = tu_fmt("%s/stderr", dir);
    const char *argv[] = {tu_fetchd(), "-c", path, NULL};
    child = tu_spawn(argv, NULL, err_path);
    double slack = tu_slack();
    ensure(wait_file_has(prom, "result=\"ok\"} ", 30 * slack), "no file");
    /* the sink may write the file again between the two calls: try again */
    bool replaced = false;
    for (int i = 0; i < 100 && !replaced; i++) {
        (void)unlink(prom);
        replaced = mkdir(prom, 0755) == 0;
    }
    ensure(replaced, "cannot replace the file by a directory: %s", strerror(errno));
    char *failed = tu_fmt("sink 'm': cannot write %s: Is a directory (trying again later)", prom);
    ensure(wait_file_has(err_path, failed, 30 * slack), "no error logged");
    ensure(rmdir(prom) == 0, "rmdir");
    char *again = tu_fmt("sink 'm': %s written again", prom);
    ensure(wait_file_has(err_path, again, 30 * slack), "no recovery logged");
    ensure(wait_file_has(prom, "result=\"ok\"} ", 30 * slack), "no file after the recovery");
    kill(child, SIGTERM);
    int st = tu_wait(child, 60 * slack);
    child = 0;
    char *err = tu_read(err_path);
    ensure(st == 0, "status %d, stderr: %s", st, err);
    ensure(count_of(err, "cannot write") == 1, "%s", err);
    free(err);
    free(again);
    free(failed);
    free(err_path);
    free(path);
    free(cfg);
    free(prom);
}
END_TEST

/* ---- loader errors: configuration errors ------------------------------------ */

struct load_case {
    const char *spec;    /* the "path": an env var name (FETCHD_...), a file in the
                          * temp dir (@name), or a literal */
    const char *options; /* the rest of the sink object, or "" */
    const char *want1, *want2; /* in stderr; @D: the path as given */
};

static const struct load_case load_cases[] = {
    /* missing file */
    {"/nonexistent-fetchd-dir/none.so", "",
     "sinks.m.path: plugin \"@D\" cannot be found (No such file or directory)", NULL},
    /* a bare name not in the plugin directory */
    {"no-such-plugin", "", "no-such-plugin.so\" cannot be found", "$FETCHD_PLUGIN_DIR"},
    /* a text file */
    {"@text.so", "", "sinks.m.path: plugin \"@D\" cannot be loaded: ", "invalid ELF header"},
    /* a directory */
    {"@subdir", "", "sinks.m.path: plugin \"@D\" is not a regular file", NULL},
    /* world-writable */
    {"@writable.so", "", "sinks.m.path: plugin \"@D\" is writable by every user, refusing to "
                         "load it", NULL},
    /* not a sink */
    {"FETCHD_BAD_SINK_NOSYMBOL", "",
     "sinks.m.path: plugin \"@D\": it does not export the symbol fetchd_sink_definition", NULL},
    /* another ABI: both numbers */
    {"FETCHD_BAD_SINK_ABI", "",
     "sinks.m.path: plugin \"@D\": it was built for sink ABI 999, this fetchd speaks ABI 1", NULL},
    /* .size not set */
    {"FETCHD_BAD_SINK_SIZE", "",
     "sinks.m.path: plugin \"@D\": its definition's size is 0, smaller than ABI 1's ", NULL},
    {"FETCHD_BAD_SINK_NODELIVER", "",
     "sinks.m.path: plugin \"@D\": its definition has no init or no deliver callback", NULL},
    /* options: unknown (the known keys are listed), missing required */
    {"FETCHD_EXAMPLE_SINK", ", \"options\": {\"path\": \"/x.prom\", \"colour\": \"red\"}",
     "sinks.m.options: unknown key \"colour\" (known keys: path, interval, label)", NULL},
    {"FETCHD_EXAMPLE_SINK", ", \"options\": {\"pat\": \"/x.prom\"}",
     "unknown key \"pat\"; did you mean \"path\"?", "missing \"path\""},
    {"FETCHD_EXAMPLE_SINK", ", \"options\": {}",
     "sinks.m.options: missing \"path\" (the .prom file to write; its directory must exist)",
     NULL},
    {"FETCHD_EXAMPLE_SINK", "", "sinks.m.options: missing \"path\"", NULL},
    {"FETCHD_TEST_SINK", ", \"options\": {\"mode\": [\"ok\"]}",
     "sinks.m.options: \"mode\": expected a string, number or boolean, got an array", NULL},
    {"FETCHD_TEST_SINK", ", \"options\": \"mode=ok\"", "sinks.m.options: expected an object",
     NULL},
    {"FETCHD_TEST_SINK", ", \"options\": {\"mode\": \"ok\", \"mode\": \"reject\"}", "mode",
     "duplicate"},
    /* "options" belongs to plugins only; plugin options are not sink options */
    {"FETCHD_TEST_SINK", ", \"mode\": \"ok\"", "unknown key \"mode\"", NULL},
};

/* Each loader problem stops fetchd before anything runs (exit 78), names
 * the file and says what is wrong; --check-config finds it too. */
START_TEST(test_load_errors)
{
    const struct load_case *c = &load_cases[_i];
    char *spec;
    if (strncmp(c->spec, "FETCHD_", 7) == 0) {
        spec = strdup(plugin(c->spec));
    } else if (c->spec[0] == '@') {
        spec = tu_fmt("%s/%s", dir, c->spec + 1);
        if (strcmp(c->spec, "@text.so") == 0) {
            char *junk = calloc(1, 4097);
            memset(junk, 'x', 4096);
            free(tu_write(dir, "text.so", junk));
            free(junk);
        } else if (strcmp(c->spec, "@subdir") == 0) {
            ensure(mkdir(spec, 0755) == 0, "mkdir");
        } else {
            copy_file(plugin("FETCHD_TEST_SINK"), spec, 0666);
        }
    } else {
        spec = strdup(c->spec);
    }
    char *cfg = tu_fmt("{\"sinks\": {\"m\": {\"type\": \"plugin\", \"path\": \"%s\"%s}},"
                       " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\", "
                       "\"sinks\": [\"m\"]}}}",
                       spec, c->options, port);
    char *want1 = subst(c->want1, spec);
    for (int check = 0; check < 2; check++) {
        struct tu_result res;
        if (check) {
            run_cfg(cfg, "--check-config", NULL, NULL, &res);
        } else {
            run_once(cfg, &res);
        }
        ensure(res.status == 78, "%s%s: status %d, stderr: %s", spec, c->options, res.status,
               res.err);
        ensure(strstr(res.err, want1), "%s%s: want \"%s\" in:\n%s", spec, c->options, want1,
               res.err);
        ensure(!c->want2 || strstr(res.err, c->want2), "want \"%s\" in:\n%s", c->want2, res.err);
        ensure(strstr(res.err, "fetchd.json:1:"), "no location: %s", res.err);
        ensure(tu_lines(res.out) == 0, "records: %s", res.out);
        tu_result_done(&res);
    }
    free(want1);
    free(cfg);
    free(spec);
}
END_TEST

/* A bare name is DIR/NAME.so (or DIR/NAME when it ends in .so) with DIR from
 * $FETCHD_PLUGIN_DIR; --check-config shows the plugin's own name. */
START_TEST(test_plugin_dir)
{
    char *pdir = tu_fmt("%s/plugins", dir);
    ensure(mkdir(pdir, 0755) == 0, "mkdir");
    char *so = tu_fmt("%s/probe.so", pdir);
    copy_file(plugin("FETCHD_TEST_SINK"), so, 0644);
    char *report = tu_fmt("%s/report", dir);
    ensure(setenv("FETCHD_PLUGIN_DIR", pdir, 1) == 0, "setenv");
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "probe.so" : "probe";
        char *cfg = tu_fmt("{\"sinks\": {\"m\": {\"type\": \"plugin\", \"path\": \"%s\", "
                           "\"options\": {\"report\": \"%s\"}}},"
                           " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\", "
                           "\"sinks\": [\"m\"]}}}",
                           name, report, port);
        struct tu_result res;
        run_cfg(cfg, "--check-config", NULL, NULL, &res);
        ensure(res.status == 0, "%s: status %d, stderr: %s", name, res.status, res.err);
        ensure(strstr(res.out, "path=probe") && strstr(res.out, "(test-sink)"), "%s", res.out);
        tu_result_done(&res);
        unlink(report);
        run_once(cfg, &res);
        ensure(res.status == 0, "%s: status %d, stderr: %s", name, res.status, res.err);
        char *rep = tu_read(report);
        ensure(rep && strstr(rep, "deliver a ok=1 kind=- status=200 view=ok "), "%s: %s", name,
               rep ? rep : "(no report)");
        free(rep);
        tu_result_done(&res);
        free(cfg);
    }
    unsetenv("FETCHD_PLUGIN_DIR");
    free(report);
    free(so);
    free(pdir);
}
END_TEST

/* ---- the host's side of the ABI ---------------------------------------------- */

/* A config with one sink "m" of the test plugin (options: report + extra)
 * and endpoints (a JSON fragment); common sink options in sink_extra. */
static char *test_cfg(const char *opts_extra, const char *sink_extra, const char *endpoints,
                      const char *report)
{
    return tu_fmt("{\"limits\": {\"shutdown_grace\": \"%s\"},"
                  " \"sinks\": {\"m\": {\"type\": \"plugin\", \"path\": \"%s\", "
                  "\"options\": {\"report\": \"%s\"%s}%s}},"
                  " \"endpoints\": {%s}}",
                  tu_slack() > 1 ? "20s" : "5s", plugin("FETCHD_TEST_SINK"), report, opts_extra,
                  sink_extra, endpoints);
}

/* What the plugin sees: each record's endpoint, ok, error kind, HTTP status,
 * JSON and data, in order per endpoint; option values as text (numbers and
 * booleans in their JSON spelling); the host's size and ABI; the call
 * sequence init, deliver..., flush, close. */
START_TEST(test_record_view)
{
    char *report = tu_fmt("%s/report", dir);
    char *eps = tu_fmt("\"a\": {\"url\": \"http://127.0.0.1:%d/a?ndjson=2\", \"format\": "
                       "\"ndjson\", \"sinks\": [\"m\"]},"
                       "\"c\": {\"url\": \"http://127.0.0.1:%d/c?status=503\", \"sinks\": [\"m\"]},"
                       "\"d\": {\"url\": \"http://127.0.0.1:%d/d?close=1\", \"sinks\": [\"m\"]},"
                       "\"e\": {\"url\": \"http://127.0.0.1:%d/e?status=204&body=empty\", "
                       "\"sinks\": [\"m\"]}",
                       port, port, port, port);
    char *cfg = test_cfg(", \"retries\": 3, \"flag\": true", "", eps, report);
    char *sdir = tu_fmt("%s/state", dir);
    ensure(mkdir(sdir, 0700) == 0, "mkdir");
    struct tu_result res;
    run_cfg(cfg, "--once", "--state-dir", sdir, &res);
    ensure(res.status == 1, "status %d, stderr: %s", res.status, res.err);
    char *rep = tu_read(report);
    ensure(rep, "no report; stderr: %s", res.err);
    const char *init = "init sink=m abi=1 host_size=ok state_dir=set mode=- retries=3 flag=true\n";
    ensure(strncmp(rep, init, strlen(init)) == 0, "%s", rep);
    size_t len = strlen(rep);
    ensure(len > 12 && strcmp(rep + len - 12, "flush\nclose\n") == 0, "%s", rep);
    ensure(count_of(rep, "deliver ") == 5 && count_of(rep, "init ") == 1 &&
               count_of(rep, "flush") == 1 && count_of(rep, "close") == 1, "%s", rep);
    char *a = lines_with(rep, "deliver a ");
    ensure(strcmp(a, "deliver a ok=1 kind=- status=200 view=ok data={\"i\":0} -> ok\n"
                     "deliver a ok=1 kind=- status=200 view=ok data={\"i\":1} -> ok\n") == 0,
           "%s", a);
    char *c = lines_with(rep, "deliver c ");
    ensure(strcmp(c, "deliver c ok=0 kind=http_status status=503 view=ok data=- -> ok\n") == 0,
           "%s", c);
    char *d = lines_with(rep, "deliver d ");
    ensure(strcmp(d, "deliver d ok=0 kind=network status=0 view=ok data=- -> ok\n") == 0, "%s",
           d);
    /* 204: ok, and "data": null gives no data (NULL) */
    char *e = lines_with(rep, "deliver e ");
    ensure(strcmp(e, "deliver e ok=1 kind=- status=204 view=ok data=- -> ok\n") == 0, "%s", e);
    free(a);
    free(c);
    free(d);
    free(e);
    free(rep);
    tu_result_done(&res);
    free(sdir);
    free(cfg);
    free(eps);
    free(report);
}
END_TEST

/* RETRY keeps the record at the head of the queue and offers it again after
 * the sink's backoff; nothing is lost or reordered, the exit status is 0. */
START_TEST(test_retry)
{
    char *report = tu_fmt("%s/report", dir);
    char *eps = tu_fmt("\"a\": {\"url\": \"http://127.0.0.1:%d/a?ndjson=3\", \"format\": "
                       "\"ndjson\", \"sinks\": [\"m\"]}",
                       port);
    char *cfg = test_cfg(", \"mode\": \"retry\", \"retries\": 2",
                         ", \"retry_backoff\": \"20ms\", \"retry_max_backoff\": \"50ms\"", eps,
                         report);
    struct tu_result res;
    run_once(cfg, &res);
    ensure(res.status == 0, "status %d, stderr: %s", res.status, res.err);
    char *rep = tu_read(report);
    ensure(rep, "no report");
    char *dl = lines_with(rep, "deliver ");
    ensure(strcmp(dl, "deliver a ok=1 kind=- status=200 view=ok data={\"i\":0} -> retry\n"
                      "deliver a ok=1 kind=- status=200 view=ok data={\"i\":0} -> retry\n"
                      "deliver a ok=1 kind=- status=200 view=ok data={\"i\":0} -> ok\n"
                      "deliver a ok=1 kind=- status=200 view=ok data={\"i\":1} -> ok\n"
                      "deliver a ok=1 kind=- status=200 view=ok data={\"i\":2} -> ok\n") == 0,
           "%s", dl);
    ensure(strstr(res.err, "sink 'm': cannot deliver: the plugin asked to retry later"), "%s",
           res.err);
    ensure(strstr(res.err, "sink 'm': delivering again after"), "%s", res.err);
    ensure(!strstr(res.err, "dropped") && !strstr(res.err, "lost"), "%s", res.err);
    free(dl);
    free(rep);
    tu_result_done(&res);
    free(cfg);
    free(eps);
    free(report);
}
END_TEST

/* Waits until the report has at least n occurrences of needle. */
static bool wait_report(const char *report, const char *needle, size_t n, double timeout_s)
{
    double t0 = tu_now();
    while (tu_now() - t0 < timeout_s) {
        char *rep = tu_read(report);
        size_t k = count_of(rep, needle);
        free(rep);
        if (k >= n) {
            return true;
        }
        usleep(20000);
    }
    return false;
}

static bool wait_file_has(const char *path, const char *needle, double timeout_s)
{
    double t0 = tu_now();
    while (tu_now() - t0 < timeout_s) {
        char *s = tu_read(path);
        bool found = s && strstr(s, needle);
        free(s);
        if (found) {
            return true;
        }
        usleep(20000);
    }
    return false;
}

/* In daemon mode: the retries are counted ("retried 2" in the summary at
 * stop, and produced == delivered == what the plugin took), a reload that
 * keeps the sink calls flush then reopen, a reload whose new config names
 * a plugin of another ABI fails and keeps the running plugin (SIGHUP still
 * means reopen), and the stop calls flush then close. The endpoint runs
 * every second, so the exact number of records is not known in advance. */
START_TEST(test_daemon_retried_reload)
{
    char *report = tu_fmt("%s/report", dir);
    char *eps = tu_fmt("\"a\": {\"url\": \"http://127.0.0.1:%d/a?ndjson=3\", \"format\": "
                       "\"ndjson\", \"interval\": \"1s\", \"sinks\": [\"m\"]}",
                       port);
    char *cfg = test_cfg(", \"mode\": \"retry\", \"retries\": 2",
                         ", \"retry_backoff\": \"20ms\", \"retry_max_backoff\": \"50ms\"", eps,
                         report);
    char *path = tu_write(dir, "fetchd.json", cfg);
    char *err_path = tu_fmt("%s/stderr", dir);
    const char *argv[] = {tu_fetchd(), "-c", path, "--log-level", "info", NULL};
    child = tu_spawn(argv, NULL, err_path);
    double slack = tu_slack();
    ensure(wait_report(report, "-> ok", 3, 30 * slack), "records not delivered");
    /* a reload with the same sink keeps the instance: flush, then reopen */
    kill(child, SIGHUP);
    ensure(wait_report(report, "reopen", 1, 30 * slack), "no reopen after SIGHUP");
    /* a reload that names a plugin of another ABI fails; the sink stays */
    char *bad = tu_fmt("{\"sinks\": {\"m\": {\"type\": \"plugin\", \"path\": \"%s\"}},"
                       " \"endpoints\": {%s}}",
                       plugin("FETCHD_BAD_SINK_ABI"), eps);
    free(tu_write(dir, "fetchd.json", bad));
    kill(child, SIGHUP);
    ensure(wait_file_has(err_path, "reload failed", 30 * slack), "no failed reload");
    ensure(wait_report(report, "reopen", 2, 30 * slack), "no reopen after a failed reload");
    kill(child, SIGTERM);
    int st = tu_wait(child, 60 * slack);
    child = 0;
    char *err = tu_read(err_path);
    ensure(st == 0, "status %d, stderr: %s", st, err);
    ensure(strstr(err, "built for sink ABI 999, this fetchd speaks ABI 1"), "%s", err);
    const char *sum = strstr(err, "sink 'm': produced ");
    ensure(sum, "no summary: %s", err);
    unsigned long long produced = 0, delivered = 0;
    char rest[200] = "";
    ensure(sscanf(sum, "sink 'm': produced %llu, delivered %llu, %199[^\n]", &produced,
                  &delivered, rest) == 3,
           "%s", sum);
    ensure(strcmp(rest, "queued 0, dropped 0 (overflow 0, failed 0, abandoned 0), retried 2") == 0,
           "%s", sum);
    char *rep = tu_read(report);
    ensure(produced >= 3 && delivered == produced && count_of(rep, "-> ok") == produced,
           "produced %llu, delivered %llu; report:\n%s", produced, delivered, rep);
    ensure(count_of(rep, "-> retry") == 2, "%s", rep);
    ensure(count_of(rep, "init ") == 1 && count_of(rep, "close") == 1, "%s", rep);
    ensure(strstr(rep, "-> ok\nflush\nreopen\n"), "no flush+reopen after the deliveries: %s",
           rep);
    size_t len = strlen(rep);
    ensure(len > 12 && strcmp(rep + len - 12, "flush\nclose\n") == 0, "%s", rep);
    free(rep);
    free(err);
    free(bad);
    free(err_path);
    free(path);
    free(cfg);
    free(eps);
    free(report);
}
END_TEST

/* A negative errno loses the record: counted failed and dropped, logged,
 * and --once exits 74; an answer outside the ABI counts the same
 * (EPROTO). */
START_TEST(test_reject)
{
    static const char *const modes[] = {"reject", "badresult"};
    static const char *const whys[] = {
        "the plugin rejected a record: Invalid argument",
        "the plugin returned an unknown result: Protocol error",
    };
    char *report = tu_fmt("%s/report", dir);
    char *eps = tu_fmt("\"a\": {\"url\": \"http://127.0.0.1:%d/a?ndjson=3\", \"format\": "
                       "\"ndjson\", \"sinks\": [\"m\"]},"
                       "\"c\": {\"url\": \"http://127.0.0.1:%d/c?status=503\", \"sinks\": [\"m\"]}",
                       port, port);
    char *opt = tu_fmt(", \"mode\": \"%s\"", modes[_i]);
    char *cfg = test_cfg(opt, "", eps, report);
    struct tu_result res;
    run_once(cfg, &res);
    ensure(res.status == 74, "status %d, stderr: %s", res.status, res.err);
    ensure(strstr(res.err, "4 records could not be written to a sink"), "%s", res.err);
    ensure(strstr(res.err, whys[_i]), "%s", res.err);
    ensure(strstr(res.err, "sink 'm': produced 4, delivered 0, queued 0, dropped 4 (overflow 0, "
                           "failed 4, abandoned 0), retried 0"),
           "%s", res.err);
    char *rep = tu_read(report);
    ensure(rep && count_of(rep, "deliver ") == 4, "%s", rep ? rep : "(none)");
    char *arrow = tu_fmt("-> %s\n", modes[_i]);
    ensure(count_of(rep, arrow) == 4, "%s", rep);
    free(arrow);
    free(rep);
    tu_result_done(&res);
    free(cfg);
    free(opt);
    free(eps);
    free(report);
}
END_TEST

/* A plugin that never takes a record: --once waits up to shutdown_grace,
 * then the queued records are abandoned (counted, logged) and the exit
 * status is 74. */
START_TEST(test_retry_forever_abandoned)
{
    char *report = tu_fmt("%s/report", dir);
    char *eps = tu_fmt("\"a\": {\"url\": \"http://127.0.0.1:%d/a?ndjson=3\", \"format\": "
                       "\"ndjson\", \"sinks\": [\"m\"]}",
                       port);
    char *cfg = tu_fmt("{\"limits\": {\"shutdown_grace\": \"300ms\"},"
                       " \"sinks\": {\"m\": {\"type\": \"plugin\", \"path\": \"%s\", "
                       "\"options\": {\"report\": \"%s\", \"mode\": \"retry\", "
                       "\"retries\": 1000000000}, \"retry_backoff\": \"10ms\", "
                       "\"retry_max_backoff\": \"20ms\"}},"
                       " \"endpoints\": {%s}}",
                       plugin("FETCHD_TEST_SINK"), report, eps);
    struct tu_result res;
    run_once(cfg, &res);
    ensure(res.status == 74, "status %d, stderr: %s", res.status, res.err);
    ensure(strstr(res.err, "sink 'm': 3 records still queued when the sink closed are lost (the "
                           "plugin asked to retry later)"),
           "%s", res.err);
    ensure(strstr(res.err, "sink 'm': produced 3, delivered 0, queued 0, dropped 3 (overflow 0, "
                           "failed 0, abandoned 3)"),
           "%s", res.err);
    char *rep = tu_read(report);
    ensure(rep && !strstr(rep, "-> ok") && count_of(rep, "-> retry") >= 2, "%s",
           rep ? rep : "(none)");
    /* only the head record was ever offered */
    ensure(!strstr(rep, "{\"i\":1}"), "%s", rep);
    ensure(strcmp(rep + strlen(rep) - 12, "flush\nclose\n") == 0, "%s", rep);
    free(rep);
    tu_result_done(&res);
    free(cfg);
    free(eps);
    free(report);
}
END_TEST

/* An init failure stops fetchd at start with the plugin's message and the
 * host's; close is not called for a sink that did not open; nothing is
 * fetched. */
START_TEST(test_init_failure)
{
    char *report = tu_fmt("%s/report", dir);
    char *eps = tu_fmt("\"a\": {\"url\": \"http://127.0.0.1:%d/a\", \"sinks\": [\"m\"]}", port);
    char *cfg = test_cfg(", \"mode\": \"initfail\"", "", eps, report);
    struct tu_result res;
    run_once(cfg, &res);
    ensure(res.status == 71, "status %d, stderr: %s", res.status, res.err);
    ensure(strstr(res.err, "sink 'm': test-sink: init fails on purpose (mode initfail)"), "%s",
           res.err);
    char *want = tu_fmt("sink 'm': (plugin) plugin \"%s\" failed to initialise: Input/output "
                        "error",
                        plugin("FETCHD_TEST_SINK"));
    ensure(strstr(res.err, want), "%s", res.err);
    ensure(strstr(res.err, "cannot start"), "%s", res.err);
    char *rep = tu_read(report);
    ensure(rep && strncmp(rep, "init ", 5) == 0 && count_of(rep, "\n") == 1, "%s",
           rep ? rep : "(none)");
    ensure(tu_httpd_requests(port) <= 1, "fetched anyway"); /* 1: this /__stats */
    free(rep);
    free(want);
    tu_result_done(&res);
    free(cfg);
    free(eps);
    free(report);
}
END_TEST

/* A sink written in C++ (tests/abi/sink-cxx.cc) loads and runs. */
START_TEST(test_cxx_plugin)
{
    const char *so = getenv("FETCHD_CXX_SINK");
    if (!so || !*so) {
        fprintf(stderr, "test_cxx_plugin: no C++ compiler, nothing to test\n");
        return;
    }
    char *cfg = tu_fmt("{\"sinks\": {\"x\": {\"type\": \"plugin\", \"path\": \"%s\", "
                       "\"options\": {\"comment\": 1}}},"
                       " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a?ndjson=3\", "
                       "\"format\": \"ndjson\", \"sinks\": [\"x\"]}}}",
                       so, port);
    struct tu_result res;
    run_once(cfg, &res);
    ensure(res.status == 0, "status %d, stderr: %s", res.status, res.err);
    ensure(strstr(res.err, "sink 'x': cxx-sink: took 3 records"), "%s", res.err);
    tu_result_done(&res);
    free(cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sink-plugin");
    TCase *tc = tcase_create("all");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120 * tu_slack());
    tcase_add_test(tc, test_prom_counts);
    tcase_add_test(tc, test_prom_counts_two_instances);
    tcase_add_test(tc, test_prom_counts_interval_daemon);
    tcase_add_test(tc, test_prom_counts_write_failure);
    tcase_add_loop_test(tc, test_prom_counts_init_errors, 0,
                        (int)(sizeof(prom_init_cases) / sizeof(prom_init_cases[0])));
    tcase_add_loop_test(tc, test_load_errors, 0,
                        (int)(sizeof(load_cases) / sizeof(load_cases[0])));
    tcase_add_test(tc, test_plugin_dir);
    tcase_add_test(tc, test_record_view);
    tcase_add_test(tc, test_retry);
    tcase_add_test(tc, test_daemon_retried_reload);
    tcase_add_loop_test(tc, test_reject, 0, 2);
    tcase_add_test(tc, test_retry_forever_abandoned);
    tcase_add_test(tc, test_init_failure);
    tcase_add_test(tc, test_cxx_plugin);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
