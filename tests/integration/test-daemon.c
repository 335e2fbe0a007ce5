/* test-daemon.c - the real fetchd binary in daemon mode (no --once) against
 * the test HTTP server and a fake systemd notify socket: READY/STATUS,
 * the watchdog, SIGHUP reloads (good, broken, a storm of them), SIGTERM with
 * a transfer in flight, and file sinks reopened on reload.
 *
 * The notify socket is an AF_UNIX datagram socket bound in the test's temp
 * dir; NOTIFY_SOCKET points at it. A reader thread drains it continuously
 * (the kernel queues only a handful of datagrams) and keeps every datagram
 * with its arrival time (CLOCK_MONOTONIC, like tu_now()). Every wait has a
 * deadline. A failed check kills fetchd and the server before failing the
 * test (ensure()), since Check's fork mode skips the teardown on failure. */
#define _GNU_SOURCE
#include <cJSON.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static pid_t httpd_pid;
static int port;
static char *dir;
static pid_t child; /* the fetchd under test; 0 when none is running */
static char *cfg_path, *rec_path, *out_path, *err_path;

static bool under_valgrind(void)
{
    return tu_slack() > 1;
}

/* ---- fake notify socket ------------------------------------------------- */

#define NT_MAX 65536

struct nmsg {
    double t;   /* arrival, tu_now() */
    char *text; /* the datagram, NUL-terminated */
};

static struct {
    int fd;
    char *path;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu;
    struct nmsg *v;
    size_t n, cap;
    double t0; /* when the socket was bound, for diagnostics */
} nt = {.fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

static void *nt_main(void *arg)
{
    (void)arg;
    char *buf = malloc(NT_MAX + 1);
    if (!buf) {
        abort();
    }
    while (!atomic_load(&nt.stop)) {
        struct pollfd pf = {nt.fd, POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0) {
            continue;
        }
        for (;;) {
            ssize_t k = recv(nt.fd, buf, NT_MAX, MSG_DONTWAIT);
            if (k < 0) {
                break;
            }
            double t = tu_now();
            char *text = malloc((size_t)k + 1);
            if (!text) {
                abort();
            }
            memcpy(text, buf, (size_t)k);
            text[k] = '\0';
            pthread_mutex_lock(&nt.mu);
            if (nt.n == nt.cap) {
                nt.cap = nt.cap ? nt.cap * 2 : 256;
                nt.v = realloc(nt.v, nt.cap * sizeof(*nt.v));
                if (!nt.v) {
                    abort();
                }
            }
            nt.v[nt.n].t = t;
            nt.v[nt.n].text = text;
            nt.n++;
            pthread_mutex_unlock(&nt.mu);
        }
    }
    free(buf);
    return NULL;
}

/* Binds dir/notify.sock, exports NOTIFY_SOCKET and starts the reader. */
static void nt_start(void)
{
    nt.path = tu_fmt("%s/notify.sock", dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    ck_assert_msg(strlen(nt.path) < sizeof(sa.sun_path), "socket path too long: %s", nt.path);
    strcpy(sa.sun_path, nt.path);
    nt.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(nt.fd, 0);
    ck_assert_msg(bind(nt.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind %s: %s", nt.path,
                  strerror(errno));
    int big = 4 << 20;
    setsockopt(nt.fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    setenv("NOTIFY_SOCKET", nt.path, 1);
    nt.n = 0;
    nt.t0 = tu_now();
    atomic_store(&nt.stop, false);
    ck_assert_int_eq(pthread_create(&nt.thread, NULL, nt_main, NULL), 0);
    nt.started = true;
}

static void nt_stop(void)
{
    if (nt.started) {
        atomic_store(&nt.stop, true);
        pthread_join(nt.thread, NULL);
        nt.started = false;
    }
    if (nt.fd >= 0) {
        close(nt.fd);
        nt.fd = -1;
    }
    for (size_t i = 0; i < nt.n; i++) {
        free(nt.v[i].text);
    }
    free(nt.v);
    nt.v = NULL;
    nt.n = nt.cap = 0;
    free(nt.path);
    nt.path = NULL;
    unsetenv("NOTIFY_SOCKET");
}

static size_t nt_count(void)
{
    pthread_mutex_lock(&nt.mu);
    size_t n = nt.n;
    pthread_mutex_unlock(&nt.mu);
    return n;
}

/* Datagram i (i < nt_count()); the text stays valid until nt_stop(). */
static const char *nt_msg(size_t i, double *t)
{
    pthread_mutex_lock(&nt.mu);
    const char *text = nt.v[i].text;
    if (t) {
        *t = nt.v[i].t;
    }
    pthread_mutex_unlock(&nt.mu);
    return text;
}

/* Whether a datagram holds the line `line`: "READY=1" exactly that line;
 * "STATUS=" or "STATUS=reload failed: *" (a trailing '*' is dropped) a line
 * starting with it. */
static bool msg_has(const char *text, const char *line)
{
    size_t len = strlen(line);
    bool prefix = len && (line[len - 1] == '=' || line[len - 1] == '*');
    if (len && line[len - 1] == '*') {
        len--;
    }
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (prefix ? (l >= len && memcmp(p, line, len) == 0)
                   : (l == len && memcmp(p, line, len) == 0)) {
            return true;
        }
        if (!nl) {
            break;
        }
        p = nl + 1;
    }
    return false;
}

/* The value of the first "KEY=value" line (key given with its '='),
 * malloc'd, or NULL. */
static char *msg_value(const char *text, const char *key)
{
    size_t len = strlen(key);
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (l >= len && memcmp(p, key, len) == 0) {
            return strndup(p + len, l - len);
        }
        if (!nl) {
            break;
        }
        p = nl + 1;
    }
    return NULL;
}

/* Index of the first datagram at or after `from` holding `line` (see
 * msg_has); -1 if none arrives within timeout_s. */
static long nt_find(size_t from, const char *line, double timeout_s)
{
    double end = tu_now() + timeout_s;
    size_t i = from;
    for (;;) {
        size_t n = nt_count();
        for (; i < n; i++) {
            if (msg_has(nt_msg(i, NULL), line)) {
                return (long)i;
            }
        }
        if (tu_now() >= end) {
            return -1;
        }
        usleep(5000);
    }
}

/* Datagrams in [from, to) holding `line`. */
static size_t nt_count_line(size_t from, size_t to, const char *line)
{
    size_t c = 0;
    for (size_t i = from; i < to; i++) {
        c += msg_has(nt_msg(i, NULL), line);
    }
    return c;
}

/* ---- diagnostics and cleanup -------------------------------------------- */

/* Memory a failing check would leak in CK_FORK=no mode (the valgrind setup):
 * gc(p) frees p in cleanup(), after the test, whether it passed or not. */
static void *gc_list[64];
static size_t gc_n;
static char *fail_msg;

static void *gc(void *p)
{
    if (gc_n < sizeof(gc_list) / sizeof(gc_list[0])) {
        gc_list[gc_n++] = p;
    }
    return p;
}

/* fetchd's stderr (the end of it) and the datagrams received so far, for
 * failure messages (freed by cleanup()). */
static char *diag(void)
{
    char *err = err_path ? tu_read(err_path) : NULL;
    const char *e = err ? err : "";
    size_t el = strlen(e);
    if (el > 3000) {
        e += el - 3000;
    }
    size_t n = nt.started ? nt_count() : 0;
    size_t first = n > 60 ? n - 60 : 0;
    /* each datagram takes at most 40 + 400 + 1 bytes below */
    size_t cap = strlen(e) + 512 + (n - first) * 512;
    char *s = malloc(cap);
    if (!s) {
        abort();
    }
    size_t len = (size_t)snprintf(s, cap, "\n--- fetchd stderr (end) ---\n%s\n--- %zu notify datagrams%s ---\n",
                                  e, n, first ? ", the last 60" : "");
    for (size_t i = first; i < n; i++) {
        double t;
        const char *m = nt_msg(i, &t);
        len += (size_t)snprintf(s + len, cap - len, "[%zu] +%.3fs ", i, t - nt.t0);
        for (const char *p = m; *p && p - m < 400; p++) {
            s[len++] = *p == '\n' ? '|' : *p;
        }
        s[len++] = '\n';
    }
    s[len] = '\0';
    free(err);
    return gc(s);
}

static void cleanup(void)
{
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        child = 0;
    }
    if (httpd_pid > 0) {
        tu_httpd_stop(httpd_pid);
        httpd_pid = 0;
    }
    nt_stop();
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    if (dir) {
        tu_rmdir(dir);
        free(dir);
        dir = NULL;
    }
    for (size_t i = 0; i < gc_n; i++) {
        free(gc_list[i]);
    }
    gc_n = 0;
    free(cfg_path);
    free(rec_path);
    free(out_path);
    free(err_path);
    cfg_path = rec_path = out_path = err_path = NULL;
}

/* ck_assert_msg that first kills fetchd and the server and removes the temp
 * dir (in fork mode a failed check exits the test process at once, without
 * the teardown). The message is formatted before the cleanup. */
#define ensure(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            free(fail_msg);                                                                        \
            fail_msg = tu_fmt(__VA_ARGS__);                                                        \
            cleanup();                                                                             \
            ck_abort_msg("%s: %s", #cond, fail_msg);                                               \
        }                                                                                          \
    } while (0)

static void setup(void)
{
    dir = tu_tmpdir();
    httpd_pid = tu_httpd_start(&port);
    /* the test itself may run under systemd: only what each test sets */
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    cfg_path = tu_fmt("%s/fetchd.json", dir);
    rec_path = tu_fmt("%s/records.jsonl", dir);
    out_path = tu_fmt("%s/out", dir);
    err_path = tu_fmt("%s/err", dir);
    nt_start();
}

static void teardown(void)
{
    cleanup();
    free(fail_msg);
    fail_msg = NULL;
}

/* ---- fetchd ------------------------------------------------------------- */

static void write_cfg(const char *text)
{
    free(tu_write(dir, "fetchd.json", text));
}

/* A config whose endpoints (the inside of "endpoints") all write to the file
 * sink at rec_path, every 200 ms unless they say otherwise. */
static char *cfg_with(const char *endpoints)
{
    return tu_fmt("{\"defaults\": {\"interval\": \"200ms\", \"sinks\": [\"out\"]},"
                  " \"sinks\": {\"out\": {\"type\": \"file\", \"path\": \"%s\"}},"
                  " \"endpoints\": {%s}}",
                  rec_path, endpoints);
}

/* Writes the config and starts fetchd in daemon mode. */
static void start_fetchd(const char *cfg_text)
{
    write_cfg(cfg_text);
    const char *argv[] = {tu_fetchd(), "-c", cfg_path, NULL};
    child = tu_spawn(argv, out_path, err_path);
    ck_assert_int_gt(child, 0);
}

/* The first READY=1 (index). */
static long wait_ready(void)
{
    long r = nt_find(0, "READY=1", 20 * tu_slack());
    ensure(r >= 0, "no READY=1 from fetchd: %s", diag());
    return r;
}

/* Running (not a zombie either: kill(pid, 0) alone succeeds on those). */
static bool alive(void)
{
    if (child <= 0) {
        return false;
    }
    int ws;
    if (waitpid(child, &ws, WNOHANG) == child) {
        child = 0;
        return false;
    }
    return kill(child, 0) == 0;
}

/* SIGTERM, then waits for the exit; returns the status like tu_wait. */
static int stop_fetchd(void)
{
    ensure(kill(child, SIGTERM) == 0, "kill: %s", strerror(errno));
    int st = tu_wait(child, 20 * tu_slack());
    child = 0;
    return st;
}

static bool all_digits(const char *s)
{
    if (!s || !*s) {
        return false;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
    }
    return true;
}

/* Checks a RELOADING=1 datagram: MONOTONIC_USEC=<digits> in it, a
 * CLOCK_MONOTONIC time close to ours. */
static void check_monotonic(long idx)
{
    double t;
    const char *m = nt_msg((size_t)idx, &t);
    char *v = msg_value(m, "MONOTONIC_USEC=");
    ensure(all_digits(v), "RELOADING=1 without MONOTONIC_USEC=<digits> in the same datagram: [%s]%s",
           m, diag());
    double usec = strtod(v, NULL);
    ensure(usec <= t * 1e6 + 1e6 && usec >= t * 1e6 - 30e6 * tu_slack(),
           "MONOTONIC_USEC=%s is not CLOCK_MONOTONIC now (%.0f)", v, t * 1e6);
    free(v);
}

/* SIGHUP; waits for RELOADING=1 (returned through *reloading) and the
 * READY=1 after it (returned). */
static long reload(long *reloading)
{
    size_t from = nt_count();
    ensure(kill(child, SIGHUP) == 0, "kill: %s", strerror(errno));
    long r = nt_find(from, "RELOADING=1", 10 * tu_slack());
    ensure(r >= 0, "no RELOADING=1 after SIGHUP: %s", diag());
    check_monotonic(r);
    long ready = nt_find((size_t)r + 1, "READY=1", 10 * tu_slack());
    ensure(ready >= 0, "no READY=1 after RELOADING=1: %s", diag());
    if (reloading) {
        *reloading = r;
    }
    return ready;
}

/* ---- STATUS= -------------------------------------------------------------- */

#define STATUS_FMT                                                                                 \
    "%lu endpoints: %lu ok, %lu failing; last 60s: %lu fetches, %lu errors; in flight %lu; "       \
    "sinks: %lu queued, %lu dropped"

struct status {
    unsigned long n, ok, failing, fetches, errors, inflight, queued, drops;
    unsigned long backing; /* " (N backing off)" after "failing", only when N > 0 */
};

/* Parses a STATUS= value; true only if it is exactly in the documented
 * format (printed back byte for byte). */
static bool status_exact(const char *v, struct status *s)
{
    memset(s, 0, sizeof(*s));
    if (!v || sscanf(v, STATUS_FMT, &s->n, &s->ok, &s->failing, &s->fetches, &s->errors,
                     &s->inflight, &s->queued, &s->drops) != 8) {
        return false;
    }
    char *canon = tu_fmt(STATUS_FMT, s->n, s->ok, s->failing, s->fetches, s->errors, s->inflight,
                         s->queued, s->drops);
    /* an optional "; sink 'NAME': problem" follows (fetchd(8)) */
    size_t cl = strlen(canon);
    bool same = strncmp(canon, v, cl) == 0 && (v[cl] == '\0' || strncmp(v + cl, "; sink '", 8) == 0);
    free(canon);
    return same;
}

/* Like status_exact, but also takes the singulars "1 endpoint:",
 * "1 fetch," and "1 error;" that fetchd writes for a count of one
 * (checked exactly by test_status_counts_of_one). */
static bool parse_status(const char *v, struct status *s)
{
    if (!v) {
        memset(s, 0, sizeof(*s));
        return false;
    }
    static const char *const fix[][2] = {
        {" endpoint: ", " endpoints: "},
        {" fetch, ", " fetches, "},
        {" error; ", " errors; "},
    };
    char *w = strdup(v);
    for (size_t i = 0; i < 3 && w; i++) {
        char *at = strstr(w, fix[i][0]);
        if (at && at > w && at[-1] == '1' && (at - w == 1 || at[-2] == ' ')) {
            *at = '\0';
            char *nw = tu_fmt("%s%s%s", w, fix[i][1], at + strlen(fix[i][0]));
            free(w);
            w = nw;
        }
    }
    unsigned long backing = 0;
    char *bo = w ? strstr(w, " failing (") : NULL;
    if (bo) {
        char *open = bo + strlen(" failing");
        int used = 0;
        if (sscanf(open, " (%lu backing off)%n", &backing, &used) == 1 && used > 0 &&
            backing > 0) {
            memmove(open, open + used, strlen(open + used) + 1);
        } else {
            free(w);
            return false;
        }
    }
    bool ok = status_exact(w, s);
    s->backing = backing;
    ok = ok && s->backing <= s->failing;
    free(w);
    return ok;
}

/* ---- records -------------------------------------------------------------- */

/* fetched_at ("2026-01-02T03:04:05.678Z") in ms since the epoch, -1 if not
 * that format. */
static long long ts_ms(const char *s)
{
    struct tm tm;
    int ms, end = 0;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &end) != 7 ||
        end != 24) {
        return -1;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (long long)timegm(&tm) * 1000 + ms;
}

/* Records of endpoint `name` (NULL: all) in the JSON Lines file at path (0
 * if it does not exist). Every complete line must be a whole JSON record;
 * with `final` the file must also end in a newline (while fetchd runs a
 * read may catch a write halfway: an unterminated last line is ignored).
 * Stores up to max fetched_at values (ms since the epoch) in times. */
static size_t records_in(const char *path, const char *name, bool final, long long *times,
                         size_t max)
{
    char *content = tu_read(path);
    if (!content) {
        return 0;
    }
    size_t n = 0;
    const char *p = content;
    while (*p) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            ensure(!final, "%s ends in a partial record: %s", path, p);
            break;
        }
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        ensure(j, "%s: line is not a whole JSON record: %.*s", path, (int)(nl - p), p);
        cJSON *ep = cJSON_GetObjectItemCaseSensitive(j, "endpoint");
        cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "fetched_at");
        ensure(cJSON_IsString(ep) && cJSON_IsString(at), "%s: not a record: %.*s", path,
               (int)(nl - p), p);
        if (!name || strcmp(ep->valuestring, name) == 0) {
            if (times && n < max) {
                times[n] = ts_ms(at->valuestring);
                ensure(times[n] >= 0, "bad fetched_at %s", at->valuestring);
            }
            n++;
        }
        cJSON_Delete(j);
        p = nl + 1;
    }
    free(content);
    return n;
}

static size_t records(const char *name)
{
    return records_in(rec_path, name, false, NULL, 0);
}

/* Waits until endpoint `name` (NULL: any) has at least n records. */
static bool wait_records(const char *name, size_t n, double timeout_s)
{
    double end = tu_now() + timeout_s;
    while (records(name) < n) {
        if (tu_now() > end) {
            return false;
        }
        usleep(20000);
    }
    return true;
}

/* ---- /proc -------------------------------------------------------------- */

static int fd_count(pid_t pid)
{
    char *path = tu_fmt("/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    free(path);
    if (!d) {
        return -1;
    }
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        n += de->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

static long rss_kib(pid_t pid)
{
    char *path = tu_fmt("/proc/%d/status", (int)pid);
    char *s = tu_read(path);
    free(path);
    const char *p = s ? strstr(s, "\nVmRSS:") : NULL;
    long kib = p ? strtol(p + 7, NULL, 10) : -1;
    free(s);
    return kib;
}

/* ---- tests ---------------------------------------------------------------- */

START_TEST(test_ready_status_stopping)
{
    char *eps = tu_fmt("\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                       " \"b\": {\"url\": \"http://127.0.0.1:%d/b\"}",
                       port, port);
    char *cfg = cfg_with(eps);
    start_fetchd(cfg);
    free(cfg);
    free(eps);

    long r = wait_ready();
    const char *m = nt_msg((size_t)r, NULL);
    char *sv = msg_value(m, "STATUS=");
    ensure(sv, "READY=1 without a STATUS= line in the same datagram: [%s]", m);
    struct status s;
    ensure(status_exact(sv, &s), "STATUS= not in the documented format: \"%s\"", sv);
    ensure(s.n == 2 && s.ok + s.failing <= 2 && s.drops == 0, "STATUS=%s", sv);
    free(sv);
    /* READY=1 means the sinks are open: the file sink has created its file */
    struct stat st;
    ensure(stat(rec_path, &st) == 0, "READY=1 before the file sink was opened: %s", diag());

    /* it runs, and READY=1 is not repeated */
    ensure(wait_records(NULL, 4, 10 * tu_slack()), "no records: %s", diag());
    usleep(500000);
    size_t n = nt_count();
    ensure(nt_count_line(0, n, "READY=1") == 1, "READY=1 sent more than once: %s", diag());
    ensure(nt_count_line(0, n, "RELOADING=1") == 0, "RELOADING=1 without SIGHUP: %s", diag());
    ensure(nt_count_line(0, n, "STOPPING=1") == 0, "STOPPING=1 before SIGTERM: %s", diag());

    int status = stop_fetchd();
    ensure(status == 0, "exit status %d after SIGTERM: %s", status, diag());
    ensure(nt_find(n, "STOPPING=1", 2) >= 0, "no STOPPING=1 on SIGTERM: %s", diag());
    ensure(records_in(rec_path, NULL, true, NULL, 0) >= 4, "records lost");
}
END_TEST

START_TEST(test_config_error_no_ready)
{
    char *cfg;
    if (_i == 0) {
        cfg = tu_fmt("{\n  \"endpoints\": {\n    \"a\": {\"url\": \"http://127.0.0.1:%d/a\","
                     " \"interval\": -5}\n  }\n}\n",
                     port);
    } else {
        /* valid JSON, but the sink cannot be opened */
        cfg = tu_fmt("{\"sinks\": {\"f\": {\"type\": \"file\", \"path\": \"%s/no/such/dir/x.jsonl\"}},"
                     " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\", \"sinks\": [\"f\"]}}}",
                     dir, port);
    }
    start_fetchd(cfg);
    free(cfg);
    int st = tu_wait(child, 30 * tu_slack());
    child = 0;
    ensure(st == 78, "exit status %d, want 78: %s", st, diag());
    usleep(200000); /* let the reader pick up anything still queued */
    ensure(nt_count_line(0, nt_count(), "READY=1") == 0, "READY=1 despite a config error: %s",
           diag());
}
END_TEST

START_TEST(test_status_line)
{
    /* one endpoint ok, one failing, one hanging until its 2.5 s timeout */
    char *eps = tu_fmt("\"ok\": {\"url\": \"http://127.0.0.1:%d/ok\"},"
                       " \"bad\": {\"url\": \"http://127.0.0.1:%d/bad?status=500\"},"
                       " \"hang\": {\"url\": \"http://127.0.0.1:%d/hang?hang=1\", \"timeout\": \"2500ms\"}",
                       port, port, port);
    char *cfg = cfg_with(eps);
    start_fetchd(cfg);
    free(cfg);
    free(eps);
    long r = wait_ready();

    /* wait for a STATUS showing the hanging endpoint's timeout as a failure */
    bool seen_final = false, seen_inflight = false;
    double end = tu_now() + 10 * tu_slack();
    size_t i = (size_t)r;
    while (!seen_final && tu_now() < end) {
        size_t n = nt_count();
        for (; i < n; i++) {
            char *v = msg_value(nt_msg(i, NULL), "STATUS=");
            if (!v) {
                continue;
            }
            struct status s;
            ensure(parse_status(v, &s), "STATUS= not in the documented format: \"%s\"", v);
            ensure(s.n == 3 && s.ok + s.failing <= 3 && s.errors <= s.fetches && s.inflight <= 3 &&
                       s.drops == 0,
                   "inconsistent STATUS=%s", v);
            seen_inflight |= s.inflight >= 1;
            seen_final |= s.ok == 1 && s.failing == 2 && s.fetches >= 3 && s.errors >= 2;
            free(v);
        }
        usleep(20000);
    }
    ensure(seen_final, "no STATUS=3 endpoints: 1 ok, 2 failing ... within 10 s: %s", diag());
    ensure(seen_inflight, "no STATUS with a transfer in flight: %s", diag());

    /* at most once per second, and only when it changed */
    size_t n = nt_count(), sent = 0;
    double prev_t = 0;
    char *prev = NULL;
    for (i = 0; i < n; i++) {
        double t;
        char *v = msg_value(nt_msg(i, &t), "STATUS=");
        if (!v) {
            continue;
        }
        if (prev) {
            ensure(t - prev_t >= 0.75, "two STATUS= %.3f s apart: \"%s\" then \"%s\"%s", t - prev_t,
                   prev, v, diag());
            ensure(strcmp(prev, v) != 0, "STATUS= repeated unchanged: \"%s\"%s", v, diag());
        }
        free(prev);
        prev = v;
        prev_t = t;
        sent++;
    }
    free(prev);
    ensure(sent >= 3, "only %zu STATUS= while the counts changed: %s", sent, diag());
    int st = stop_fetchd(); /* waits out the hanging transfer (<= 2.5 s) */
    ensure(st == 0, "exit status %d: %s", st, diag());
}
END_TEST

START_TEST(test_status_counts_of_one)
{
    /* one endpoint whose first fetch times out after 1.5 s, the next one
     * starting right after: the STATUS at about 2 s counts exactly one
     * endpoint, one fetch and one error, written in the singular */
    char *eps = tu_fmt("\"h\": {\"url\": \"http://127.0.0.1:%d/h?hang=1\", \"timeout\": \"1500ms\"}",
                       port);
    char *cfg = cfg_with(eps);
    start_fetchd(cfg);
    free(cfg);
    free(eps);
    long r = wait_ready();
    char *found = NULL;
    double end = tu_now() + 10 * tu_slack();
    size_t i = (size_t)r;
    while (!found && tu_now() < end) {
        for (size_t n = nt_count(); i < n && !found; i++) {
            char *v = msg_value(nt_msg(i, NULL), "STATUS=");
            struct status s;
            if (v && parse_status(v, &s) && s.n == 1 && s.fetches == 1 && s.errors == 1) {
                found = v;
            } else {
                free(v);
            }
        }
        usleep(20000);
    }
    ensure(found, "no STATUS= with 1 endpoint, 1 fetch, 1 error: %s", diag());
    gc(found);
    struct status s;
    parse_status(found, &s);
    /* fetchd(8): "A count of one is written in the singular" */
    char *want = gc(tu_fmt("1 endpoint: 0 ok, 1 failing; last 60s: 1 fetch, 1 error; in flight %lu; "
                           "sinks: 0 queued, 0 dropped",
                           (unsigned long)s.inflight));
    ensure(strcmp(found, want) == 0, "STATUS=%s, want \"%s\"", found, want);
    int st = stop_fetchd(); /* waits out the hanging transfer (<= 1.5 s) */
    ensure(st == 0, "exit status %d: %s", st, diag());
}
END_TEST

START_TEST(test_status_quiet_when_unchanged)
{
    /* nothing runs within the test (first runs somewhere in 30 days) */
    char *cfg = tu_fmt("{\"defaults\": {\"interval\": \"30d\"}, \"endpoints\": {"
                       "\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                       " \"b\": {\"url\": \"http://127.0.0.1:%d/b\"}}}",
                       port, port);
    start_fetchd(cfg);
    free(cfg);
    long r = wait_ready();
    usleep(3000000);
    size_t n = nt_count();
    ensure(nt_count_line((size_t)r + 1, n, "STATUS=") == 0,
           "STATUS= sent again although nothing changed: %s", diag());
    int st = stop_fetchd();
    ensure(st == 0, "exit status %d: %s", st, diag());
}
END_TEST

START_TEST(test_status_sink_drops)
{
    char *cfg = tu_fmt("{\"defaults\": {\"interval\": \"200ms\", \"sinks\": [\"full\"]},"
                       " \"sinks\": {\"full\": {\"type\": \"file\", \"path\": \"/dev/full\","
                       " \"queue_max_records\": 2, \"retry_backoff\": \"50ms\"}},"
                       " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                       " \"b\": {\"url\": \"http://127.0.0.1:%d/b\"}}}",
                       port, port);
    start_fetchd(cfg);
    free(cfg);
    long r = wait_ready();
    bool seen = false;
    double end = tu_now() + 8 * tu_slack();
    size_t i = (size_t)r;
    while (!seen && tu_now() < end) {
        for (size_t n = nt_count(); i < n && !seen; i++) {
            char *v = msg_value(nt_msg(i, NULL), "STATUS=");
            struct status s;
            if (v) {
                ensure(parse_status(v, &s), "STATUS= not in the documented format: \"%s\"", v);
                seen = s.drops >= 1 && s.n == 2;
            }
            free(v);
        }
        usleep(20000);
    }
    ensure(seen, "no STATUS= with sink drops >= 1 while every write fails: %s", diag());
    ensure(alive(), "fetchd died on sink write errors: %s", diag());
    int st = stop_fetchd();
    ensure(st >= 0, "did not stop on SIGTERM: %s", diag());
}
END_TEST

struct wd_case {
    const char *usec; /* WATCHDOG_USEC, NULL: unset */
    const char *pid;  /* WATCHDOG_PID, NULL: unset */
    size_t min, max;  /* WATCHDOG=1 datagrams in 2 s */
};

static const struct wd_case wd_cases[] = {
    {"400000", NULL, 6, 14},
    {"400000", "1", 0, 0}, /* the watchdog is some other process's */
    {NULL, NULL, 0, 0},
};

START_TEST(test_watchdog)
{
    const struct wd_case *c = &wd_cases[_i];
    if (c->usec) {
        setenv("WATCHDOG_USEC", c->usec, 1);
    }
    if (c->pid) {
        setenv("WATCHDOG_PID", c->pid, 1);
    }
    char *eps = tu_fmt("\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                       " \"b\": {\"url\": \"http://127.0.0.1:%d/b\"}",
                       port, port);
    char *cfg = cfg_with(eps);
    start_fetchd(cfg);
    free(cfg);
    free(eps);
    long r = wait_ready();
    double t_ready;
    nt_msg((size_t)r, &t_ready);
    usleep(2300000);
    size_t n = nt_count(), pings = 0;
    for (size_t i = 0; i < n; i++) {
        double t;
        const char *m = nt_msg(i, &t);
        pings += t >= t_ready && t < t_ready + 2.0 && msg_has(m, "WATCHDOG=1");
    }
    size_t lo = under_valgrind() && c->min ? 1 : c->min;
    ensure(pings >= lo && pings <= c->max,
           "WATCHDOG_USEC=%s WATCHDOG_PID=%s: %zu WATCHDOG=1 in 2 s, want %zu..%zu: %s",
           c->usec ? c->usec : "(unset)", c->pid ? c->pid : "(unset)", pings, lo, c->max, diag());
    if (!c->min) {
        ensure(nt_count_line(0, n, "WATCHDOG=1") == 0, "WATCHDOG=1 sent: %s", diag());
    }
    int st = stop_fetchd();
    ensure(st == 0, "exit status %d: %s", st, diag());
}
END_TEST

START_TEST(test_reload_notify_and_failed_status)
{
    char *eps = tu_fmt("\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                       " \"b\": {\"url\": \"http://127.0.0.1:%d/b\"}",
                       port, port);
    char *good = cfg_with(eps);
    free(eps);
    start_fetchd(good);
    wait_ready();

    /* a good reload */
    long rl = 0;
    long ready = reload(&rl);

    /* a broken one: still RELOADING=1 ... READY=1, and the STATUS says why */
    char *bad = tu_fmt("{\n  \"endpoints\": {\n    \"a\": {\"url\": \"http://127.0.0.1:%d/a\","
                       " \"interval\": -5}\n  }\n}\n",
                       port);
    write_cfg(bad);
    free(bad);
    long rl_bad = 0;
    long ready_bad = reload(&rl_bad);
    ensure(ready_bad > ready, "no READY=1 after the failed reload: %s", diag());
    long st_idx = nt_find((size_t)rl_bad, "STATUS=reload failed: *", 3 * tu_slack());
    ensure(st_idx >= 0, "no STATUS=reload failed: ... after a failed reload: %s", diag());
    char *v = msg_value(nt_msg((size_t)st_idx, NULL), "STATUS=");
    const char *loc = strstr(v, "fetchd.json:3:");
    ensure(loc && loc[14] >= '1' && loc[14] <= '9',
           "the STATUS does not name the file and line:column of the first error: \"%s\"", v);
    const char *after = loc + 14;
    while (*after >= '0' && *after <= '9') {
        after++;
    }
    ensure(*after == ':', "no line:column in \"%s\"", v);
    free(v);
    ensure(alive(), "fetchd exited on a broken config at reload: %s", diag());
    /* the old config goes on; the status keeps saying the reload failed */
    size_t before = records(NULL);
    ensure(wait_records(NULL, before + 4, 10 * tu_slack()), "records stopped after a failed reload: %s",
           diag());
    usleep(1500000);

    /* fixed again */
    write_cfg(good);
    long rl_fixed = 0;
    long ready_fixed = reload(&rl_fixed);
    for (size_t i = (size_t)ready_bad; i < (size_t)rl_fixed; i++) {
        char *sv = msg_value(nt_msg(i, NULL), "STATUS=");
        ensure(!sv || strncmp(sv, "reload failed: ", 15) == 0,
               "STATUS= between the failed reload and the next good one: \"%s\"", sv);
        free(sv);
    }
    /* the status is back to normal within the next second or so */
    ensure(wait_records(NULL, records(NULL) + 6, 10 * tu_slack()), "no records after reload: %s",
           diag());
    usleep(1200000);
    size_t n = nt_count(), normal = 0;
    for (size_t i = (size_t)ready_fixed; i < n; i++) {
        char *sv = msg_value(nt_msg(i, NULL), "STATUS=");
        struct status s;
        if (sv) {
            ensure(strncmp(sv, "reload failed: ", 15) != 0,
                   "STATUS still says the reload failed after a good reload: \"%s\"", sv);
            ensure(parse_status(sv, &s), "STATUS= not in the documented format: \"%s\"", sv);
            normal++;
        }
        free(sv);
    }
    ensure(normal >= 1, "no STATUS= after the good reload (it changed): %s", diag());
    free(good);
    int st = stop_fetchd();
    ensure(st == 0, "exit status %d: %s", st, diag());
}
END_TEST

START_TEST(test_reload_broken_keeps_old)
{
    char *eps = tu_fmt("\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                       " \"b\": {\"url\": \"http://127.0.0.1:%d/b\"}",
                       port, port);
    char *good = cfg_with(eps);
    free(eps);
    start_fetchd(good);
    free(good);
    wait_ready();
    ensure(wait_records("a", 2, 10 * tu_slack()), "no records: %s", diag());

    const char *what;
    if (_i == 0) {
        what = "truncated JSON";
        write_cfg("{\"endpoints\": {\"a\": {\"url\": ");
    } else if (_i == 1) {
        /* valid JSON; had it been applied, "c" would write to rec_path */
        what = "a file sink in a missing directory";
        char *cfg = tu_fmt("{\"sinks\": {\"out\": {\"type\": \"file\", \"path\": \"%s\"},"
                           " \"f\": {\"type\": \"file\", \"path\": \"%s/no/such/dir/x.jsonl\"}},"
                           " \"endpoints\": {\"c\": {\"url\": \"http://127.0.0.1:%d/c\","
                           " \"sinks\": [\"out\", \"f\"]}}}",
                           rec_path, dir, port);
        write_cfg(cfg);
        free(cfg);
    } else {
        what = "the config file removed";
        ensure(unlink(cfg_path) == 0, "unlink: %s", strerror(errno));
    }
    long rl = 0;
    long ready = reload(&rl);
    ensure(ready > rl, "%s", what);
    ensure(nt_find((size_t)rl, "STATUS=reload failed: *", 3 * tu_slack()) >= 0,
           "%s: no STATUS=reload failed: ...: %s", what, diag());
    size_t a0 = records("a"), b0 = records("b");
    ensure(wait_records("a", a0 + 3, 10 * tu_slack()) && wait_records("b", b0 + 3, 10 * tu_slack()),
           "%s: the old endpoints stopped after the failed reload: %s", what, diag());
    ensure(records("c") == 0, "%s: the broken config's endpoint ran", what);
    ensure(alive(), "%s: fetchd died: %s", what, diag());
    int st = stop_fetchd();
    ensure(st == 0, "%s: exit status %d: %s", what, st, diag());
    ensure(records_in(rec_path, NULL, true, NULL, 0) >= a0 + b0 + 6, "records lost");
}
END_TEST

/* Distance of two times from the same point of a `period` grid, in ms. */
static long long phase_diff(long long a, long long b, long long period)
{
    long long d = ((a - b) % period + period) % period;
    return d > period / 2 ? period - d : d;
}

START_TEST(test_reload_applies)
{
    char *keep = tu_fmt("\"keep1\": {\"url\": \"http://127.0.0.1:%d/k1\", \"interval\": \"500ms\"},"
                        " \"keep2\": {\"url\": \"http://127.0.0.1:%d/k2\", \"interval\": \"500ms\"}",
                        port, port);
    char *eps = tu_fmt("%s, \"gone\": {\"url\": \"http://127.0.0.1:%d/gone\"}", keep, port);
    char *cfg = cfg_with(eps);
    start_fetchd(cfg);
    free(cfg);
    free(eps);
    long r = wait_ready();
    double t_ready;
    nt_msg((size_t)r, &t_ready);
    ensure(wait_records("keep1", 3, 10 * tu_slack()) && wait_records("keep2", 3, 10 * tu_slack()) &&
               wait_records("gone", 3, 10 * tu_slack()),
           "no records: %s", diag());

    /* reload half an interval off the schedule's grid (the schedule was
     * armed just before READY=1): restarting the timers at the reload would
     * shift their phase by about 250 ms */
    double now = tu_now();
    double k = (double)(long)((now - t_ready - 0.25) / 0.5) + 1;
    double target = t_ready + 0.25 + k * 0.5;
    if (target > now) {
        usleep((useconds_t)((target - now) * 1e6));
    }
    size_t k1_before = records("keep1"), k2_before = records("keep2");
    eps = tu_fmt("%s, \"added\": {\"url\": \"http://127.0.0.1:%d/added\"}", keep, port);
    cfg = cfg_with(eps);
    write_cfg(cfg);
    free(cfg);
    free(eps);
    free(keep);
    reload(NULL);
    size_t gone0 = records("gone");

    ensure(wait_records("added", 3, 10 * tu_slack()), "the endpoint added by the reload never ran: %s",
           diag());
    ensure(wait_records("keep1", k1_before + 4, 10 * tu_slack()) &&
               wait_records("keep2", k2_before + 4, 10 * tu_slack()),
           "unchanged endpoints stopped after the reload: %s", diag());
    size_t gone1 = records("gone");
    ensure(gone1 <= gone0 + 1, "the removed endpoint still runs: %zu records at READY=1, %zu later",
           gone0, gone1);
    int st = stop_fetchd();
    ensure(st == 0, "exit status %d: %s", st, diag());

    if (!under_valgrind()) { /* too slow there for a 100 ms bound */
        const char *names[] = {"keep1", "keep2"};
        for (size_t e = 0; e < 2; e++) {
            long long t[256];
            size_t n = records_in(rec_path, names[e], true, t, 256);
            ensure(n >= 6 && n <= 256, "%zu records of %s", n, names[e]);
            for (size_t j = 1; j < n; j++) {
                ensure(phase_diff(t[j], t[0], 500) <= 100,
                       "%s: record %zu of %zu at %lld ms off the 500 ms grid of the first "
                       "(the reload came after record %zu): schedule phase not kept",
                       names[e], j + 1, n, phase_diff(t[j], t[0], 500),
                       e ? k2_before : k1_before);
            }
        }
    }
}
END_TEST

START_TEST(test_sigterm_in_flight)
{
    char *eps = tu_fmt("\"slow\": {\"url\": \"http://127.0.0.1:%d/slow?delay=800\"}", port);
    char *cfg = cfg_with(eps);
    start_fetchd(cfg);
    free(cfg);
    free(eps);
    wait_ready();
    /* the server has the request: the transfer is in flight for 800 ms */
    ensure(tu_httpd_wait_requests(port, 1, 10 * tu_slack()), "no request: %s", diag());
    size_t from = nt_count();
    int st = stop_fetchd();
    ensure(st == 0, "exit status %d: %s", st, diag());
    ensure(nt_find(from, "STOPPING=1", 2) >= 0, "no STOPPING=1 on SIGTERM: %s", diag());
    long served = tu_httpd_requests(port);
    long long t[16];
    size_t n = records_in(rec_path, NULL, true, t, 16);
    ensure(served >= 1 && n == (size_t)served,
           "%zu records for %ld requests: the transfer in flight was not recorded", n, served);
    char *content = tu_read(rec_path);
    /* the last record is the one in flight, whole and successful */
    size_t len = strlen(content);
    const char *last = content;
    for (size_t j = 0; j + 1 < len; j++) {
        if (content[j] == '\n') {
            last = content + j + 1;
        }
    }
    cJSON *j = cJSON_Parse(last);
    ensure(j, "last record not JSON: %s", last);
    ensure(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ok")) &&
               cJSON_GetObjectItemCaseSensitive(j, "duration_ms")->valuedouble >= 700,
           "last record is not the completed slow transfer: %s", last);
    cJSON_Delete(j);
    free(content);
}
END_TEST

struct seq {
    size_t reloads, readies;
    bool pending;  /* RELOADING=1 not yet followed by READY=1 */
    long bad;      /* index of a RELOADING=1 before the previous one's READY=1 */
    long no_mono;  /* index of a RELOADING=1 without MONOTONIC_USEC= */
    double last_t; /* arrival of the last RELOADING=1 or READY=1 */
};

static void analyze(size_t from, size_t to, struct seq *q)
{
    memset(q, 0, sizeof(*q));
    q->bad = q->no_mono = -1;
    for (size_t i = from; i < to; i++) {
        double t;
        const char *m = nt_msg(i, &t);
        bool rl = msg_has(m, "RELOADING=1"), rd = msg_has(m, "READY=1");
        if (rl) {
            if ((q->pending || rd) && q->bad < 0) {
                q->bad = (long)i;
            }
            if (!msg_has(m, "MONOTONIC_USEC=") && q->no_mono < 0) {
                q->no_mono = (long)i;
            }
            q->pending = true;
            q->reloads++;
            q->last_t = t;
        }
        if (rd && !rl) {
            q->pending = false;
            q->readies++;
            q->last_t = t;
        }
    }
}

START_TEST(test_sighup_storm)
{
    char *eps = tu_fmt("\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                       " \"b\": {\"url\": \"http://127.0.0.1:%d/b\"}",
                       port, port);
    char *cfg = cfg_with(eps);
    start_fetchd(cfg);
    free(cfg);
    free(eps);
    long r = wait_ready();
    ensure(wait_records(NULL, 6, 10 * tu_slack()), "no records: %s", diag());

    /* a steady state: the same fd count twice in a row */
    int fds0 = -1;
    for (int tries = 0; tries < 20; tries++) {
        int a = fd_count(child);
        usleep(200000);
        int b = fd_count(child);
        if (a == b && a > 0) {
            fds0 = a;
            break;
        }
    }
    ensure(fds0 > 0, "open fds never steady");
    long rss0 = rss_kib(child);
    ensure(rss0 > 0, "no VmRSS");

    /* 0: as fast as possible (the pending signal coalesces: few reloads);
     * 1: 1 ms apart, so that hundreds of reloads really run */
    pid_t pid = child;
    for (int i = 0; i < 1000; i++) {
        ensure(kill(pid, SIGHUP) == 0, "SIGHUP %d: %s: %s", i, strerror(errno), diag());
        if (_i == 1) {
            usleep(1000);
        }
    }
    ensure(alive(), "fetchd died in a SIGHUP storm: %s", diag());

    /* wait until the reloads are over: nothing pending, quiet for 1 s */
    double end = tu_now() + 60 * tu_slack();
    struct seq q;
    for (;;) {
        analyze((size_t)r + 1, nt_count(), &q);
        ensure(q.bad < 0, "RELOADING=1 at [%ld] before the previous one's READY=1: %s", q.bad,
               diag());
        if (q.reloads >= 1 && !q.pending && tu_now() - q.last_t > 1.0) {
            break;
        }
        ensure(tu_now() < end, "reloads never settled (%zu RELOADING=1, %zu READY=1): %s",
               q.reloads, q.readies, diag());
        ensure(alive(), "fetchd died after a SIGHUP storm: %s", diag());
        usleep(50000);
    }
    ensure(kill(pid, 0) == 0 && alive(), "fetchd died after a SIGHUP storm: %s", diag());
    ensure(q.no_mono < 0, "RELOADING=1 without MONOTONIC_USEC= at [%ld]: %s", q.no_mono, diag());
    ensure(q.reloads == q.readies && q.reloads >= 1,
           "%zu RELOADING=1 but %zu READY=1 after the first READY=1: %s", q.reloads, q.readies,
           diag());

    /* still fetching */
    size_t n0 = records(NULL);
    ensure(wait_records(NULL, n0 + 4, 10 * tu_slack()), "no records after the storm: %s", diag());

    /* no leaked fds: a leak per reload would show hundreds; libcurl's
     * connection cache may hold one more idle connection to the test
     * server than before (each transfer has a fresh easy handle with this
     * libcurl), so one or two more sockets are not a leak */
    int fds1 = -1;
    end = tu_now() + 5 * tu_slack();
    do {
        fds1 = fd_count(pid);
        if (fds1 <= fds0) {
            break;
        }
        usleep(100000);
    } while (tu_now() < end);
    ensure(fds1 <= fds0 + 2, "%d open fds before 1000 SIGHUPs, %d after", fds0, fds1);
    /* RSS says nothing under valgrind or ASan (its quarantine keeps freed
     * memory resident by design; LeakSanitizer checks leaks there) */
    if (!under_valgrind() && !SANITIZED) {
        long rss1 = rss_kib(pid);
        ensure(rss1 > 0 && rss1 <= rss0 + 2048, "VmRSS %ld kB before 1000 SIGHUPs, %ld kB after",
               rss0, rss1);
    }
    int st = stop_fetchd();
    ensure(st == 0, "exit status %d after the storm: %s", st, diag());
    analyze((size_t)r + 1, nt_count(), &q);
    ensure(q.bad < 0 && !q.pending && q.reloads == q.readies,
           "RELOADING=1/READY=1 out of step: %s", diag());
}
END_TEST

START_TEST(test_reload_reopens_file_sink)
{
    char *eps = tu_fmt("\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                       " \"b\": {\"url\": \"http://127.0.0.1:%d/b\"}",
                       port, port);
    char *cfg = cfg_with(eps);
    start_fetchd(cfg);
    free(cfg);
    free(eps);
    wait_ready();
    ensure(wait_records(NULL, 4, 10 * tu_slack()), "no records: %s", diag());

    /* logrotate, "create" mode */
    char *rotated = tu_fmt("%s.1", rec_path);
    ensure(rename(rec_path, rotated) == 0, "rename: %s", strerror(errno));
    reload(NULL);
    size_t old_at_ready = records_in(rotated, NULL, false, NULL, 0);
    ensure(wait_records(NULL, 4, 10 * tu_slack()), "no records in a new %s after the reload: %s",
           rec_path, diag());
    int st = stop_fetchd();
    ensure(st == 0, "exit status %d: %s", st, diag());

    size_t old_n = records_in(rotated, NULL, true, NULL, 0);
    size_t new_n = records_in(rec_path, NULL, true, NULL, 0);
    long served = tu_httpd_requests(port);
    ensure(old_n >= 4 && new_n >= 4, "%zu + %zu records", old_n, new_n);
    ensure(old_n == old_at_ready, "records still went to the rotated file after READY=1 (%zu, then %zu)",
           old_at_ready, old_n);
    ensure((long)(old_n + new_n) == served,
           "%zu records in the rotated file + %zu in the new one, but %ld fetches: records lost",
           old_n, new_n, served);
    free(rotated);
}
END_TEST

static Suite *daemon_suite(void)
{
    Suite *s = suite_create("daemon");
    TCase *tc = tcase_create("notify");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_ready_status_stopping);
    tcase_add_loop_test(tc, test_config_error_no_ready, 0, 2);
    tcase_add_test(tc, test_status_line);
    tcase_add_test(tc, test_status_counts_of_one);
    tcase_add_test(tc, test_status_quiet_when_unchanged);
    tcase_add_test(tc, test_status_sink_drops);
    tcase_add_loop_test(tc, test_watchdog, 0, (int)(sizeof(wd_cases) / sizeof(wd_cases[0])));
    suite_add_tcase(s, tc);

    tc = tcase_create("reload");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_reload_notify_and_failed_status);
    tcase_add_loop_test(tc, test_reload_broken_keeps_old, 0, 3);
    tcase_add_test(tc, test_reload_applies);
    tcase_add_loop_test(tc, test_sighup_storm, 0, 2);
    tcase_add_test(tc, test_reload_reopens_file_sink);
    suite_add_tcase(s, tc);

    tc = tcase_create("stop");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sigterm_in_flight);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(daemon_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
