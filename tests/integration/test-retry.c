/* test-retry.c - the real fetchd binary against the test HTTP server on
 * 127.0.0.1: retries (attempts, "on", non-idempotent methods, Retry-After,
 * the process-wide retry budget), the circuit breaker, conditional requests
 * (in memory and in --state-dir), content_type, ndjson, split,
 * response_headers, pagination, success_status, and SIGTERM during a retry
 * wait.
 *
 * Every test checks both sides: what fetchd wrote (records, exit status,
 * log) and what the server received (/__requests). A failed check kills
 * fetchd and the server first (ensure()): in Check's fork mode a failing
 * test exits at once, without the teardown. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <cJSON.h>
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static pid_t httpd_pid;
static int port;
static char *dir;
static pid_t child; /* a fetchd started with daemon_start() / spawn_once() */
static char *cfg_path, *out_path, *err_path;
static char *fail_msg;

static bool under_valgrind(void)
{
    return tu_slack() > 1;
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
    if (dir) {
        tu_rmdir(dir);
        free(dir);
        dir = NULL;
    }
    free(cfg_path);
    free(out_path);
    free(err_path);
    cfg_path = out_path = err_path = NULL;
}

/* ck_assert_msg that first stops fetchd and the server and removes the
 * temp dir. The message is formatted before the cleanup (and cut to 3000
 * bytes: longer ones make Check itself fail). */
#define ensure(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            free(fail_msg);                                                                        \
            fail_msg = tu_fmt(__VA_ARGS__);                                                        \
            if (strlen(fail_msg) > 3000) { /* Check's messages are limited */                      \
                strcpy(fail_msg + 2980, " ...(truncated)");                                        \
            }                                                                                      \
            cleanup();                                                                             \
            ck_abort_msg("%s: %s", #cond, fail_msg);                                               \
        }                                                                                          \
    } while (0)

static void setup(void)
{
    unsetenv("STATE_DIRECTORY"); /* only --state-dir where a test says so */
    dir = tu_tmpdir();
    httpd_pid = tu_httpd_start(&port);
    cfg_path = tu_fmt("%s/fetchd.json", dir);
    out_path = tu_fmt("%s/out", dir);
    err_path = tu_fmt("%s/err", dir);
}

static void teardown(void)
{
    cleanup();
    free(fail_msg);
    fail_msg = NULL;
}

/* ---- the test server ---------------------------------------------------- */

struct body {
    char *buf;
    size_t len;
};

static size_t collect(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct body *b = ud;
    size_t n = size * nmemb;
    char *nb = realloc(b->buf, b->len + n + 1);
    if (!nb) {
        abort();
    }
    memcpy(nb + b->len, ptr, n);
    b->len += n;
    nb[b->len] = '\0';
    b->buf = nb;
    return n;
}

/* GET http://127.0.0.1:port<target>; the body (malloc'd) or NULL. */
static char *http_get(const char *target)
{
    CURL *c = curl_easy_init();
    if (!c) {
        return NULL;
    }
    struct body b = {NULL, 0};
    char *url = tu_fmt("http://127.0.0.1:%d%s", port, target);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(5000 * tu_slack()));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    free(url);
    if (rc != CURLE_OK) {
        free(b.buf);
        return NULL;
    }
    return b.buf ? b.buf : strdup("");
}

/* The server's request log: the "requests" array of /__requests, inside
 * its parsed document (*root, the caller deletes it). */
static const cJSON *server_log(cJSON **root)
{
    char *text = http_get("/__requests");
    ensure(text, "GET /__requests failed");
    *root = cJSON_Parse(text);
    free(text);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(*root, "requests");
    ensure(cJSON_IsArray(a), "/__requests is not {\"requests\": [...]}");
    return a;
}

/* Whether a request target's path is exactly path. */
static bool path_is(const char *target, const char *path)
{
    size_t n = strlen(path);
    return strncmp(target, path, n) == 0 && (target[n] == '?' || target[n] == '\0');
}

static const char *req_target(const cJSON *req)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, "target");
    return cJSON_IsString(t) ? t->valuestring : "";
}

/* Request k (0-based) of the log for path, or NULL. */
static const cJSON *req_nth(const cJSON *log, const char *path, size_t k)
{
    const cJSON *r;
    cJSON_ArrayForEach(r, log)
    {
        if (path_is(req_target(r), path) && k-- == 0) {
            return r;
        }
    }
    return NULL;
}

static size_t req_count(const cJSON *log, const char *path)
{
    size_t n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, log)
    {
        n += path_is(req_target(r), path);
    }
    return n;
}

/* Requests for path seen by the server so far. */
static size_t nreq(const char *path)
{
    cJSON *root;
    size_t n = req_count(server_log(&root), path);
    cJSON_Delete(root);
    return n;
}

/* Whether the log holds a request with exactly this target. */
static bool req_target_seen(const cJSON *log, const char *target)
{
    const cJSON *r;
    cJSON_ArrayForEach(r, log)
    {
        if (strcmp(req_target(r), target) == 0) {
            return true;
        }
    }
    return false;
}

/* A request header's value (name compared case-insensitively), or NULL. */
static const char *req_header(const cJSON *req, const char *name)
{
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(req, "headers");
    const cJSON *v;
    cJSON_ArrayForEach(v, h)
    {
        if (v->string && strcasecmp(v->string, name) == 0 && cJSON_IsString(v)) {
            return v->valuestring;
        }
    }
    return NULL;
}

static const char *req_method(const cJSON *req)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(req, "method");
    return cJSON_IsString(m) ? m->valuestring : "";
}

/* A TCP port on 127.0.0.1 that nobody listens on. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ensure(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    ensure(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
               getsockname(fd, (struct sockaddr *)&sa, &len) == 0,
           "bind: %s", strerror(errno));
    close(fd);
    return ntohs(sa.sin_port);
}

/* ---- records ------------------------------------------------------------ */

struct recs {
    cJSON **v;
    size_t n;
};

/* Parses JSON Lines output: every line must be a whole JSON record. */
static void recs_parse(struct recs *r, const char *text)
{
    r->v = NULL;
    r->n = 0;
    size_t cap = 0;
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        ensure(nl, "output ends in a partial record: %.500s", p);
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        ensure(cJSON_IsObject(j), "line is not a JSON record: %.*s", (int)(nl - p), p);
        ensure(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "endpoint")),
               "record without an endpoint: %.*s", (int)(nl - p), p);
        if (r->n == cap) {
            cap = cap ? cap * 2 : 64;
            r->v = realloc(r->v, cap * sizeof(*r->v));
            if (!r->v) {
                abort();
            }
        }
        r->v[r->n++] = j;
        p = nl + 1;
    }
}

static void recs_free(struct recs *r)
{
    for (size_t i = 0; i < r->n; i++) {
        cJSON_Delete(r->v[i]);
    }
    free(r->v);
    r->v = NULL;
    r->n = 0;
}

static bool rec_is(const cJSON *rec, const char *name)
{
    return strcmp(cJSON_GetObjectItemCaseSensitive(rec, "endpoint")->valuestring, name) == 0;
}

static size_t recs_count(const struct recs *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) {
        n += rec_is(r->v[i], name);
    }
    return n;
}

/* Record k (0-based, in output order) of endpoint name, or NULL. */
static const cJSON *rec_nth(const struct recs *r, const char *name, size_t k)
{
    for (size_t i = 0; i < r->n; i++) {
        if (rec_is(r->v[i], name) && k-- == 0) {
            return r->v[i];
        }
    }
    return NULL;
}

static const cJSON *jget(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* A number member as long; LONG_MIN when missing or not a number. */
static long jnum(const cJSON *o, const char *k)
{
    const cJSON *v = jget(o, k);
    return cJSON_IsNumber(v) ? (long)v->valuedouble : LONG_MIN;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = jget(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static bool rec_ok(const cJSON *rec)
{
    return cJSON_IsTrue(jget(rec, "ok"));
}

static const char *kind_of(const cJSON *rec)
{
    const char *k = jstr(jget(rec, "error"), "kind");
    return k ? k : "(none)";
}

/* Lines of text that contain all of a and b (b may be NULL). */
static size_t lines_with(const char *text, const char *a, const char *b)
{
    size_t n = 0;
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *line = strndup(p, len);
        n += strstr(line, a) && (!b || strstr(line, b));
        free(line);
        p = nl ? nl + 1 : p + len;
    }
    return n;
}

/* ---- running fetchd ------------------------------------------------------ */

static void write_cfg(const char *text)
{
    FILE *f = fopen(cfg_path, "w");
    ensure(f, "%s: %s", cfg_path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

/* fetchd --once -c CONFIG [extra args, NULL-terminated] to completion. */
static void run_once(struct tu_result *res, const char *cfg, ...)
{
    write_cfg(cfg);
    const char *argv[20] = {tu_fetchd(), "--once", "-c", cfg_path};
    size_t n = 4;
    va_list ap;
    va_start(ap, cfg);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 19) {
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    tu_run(argv, 60 * tu_slack(), res);
}

/* Starts fetchd with the config and extra args (NULL-terminated) in the
 * background, stdout to out_path and stderr to err_path. */
static void spawn_fetchd(const char *cfg, ...)
{
    write_cfg(cfg);
    const char *argv[20] = {tu_fetchd(), "-c", cfg_path};
    size_t n = 3;
    va_list ap;
    va_start(ap, cfg);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 19) {
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    child = tu_spawn(argv, out_path, err_path);
    ensure(child > 0, "could not start fetchd");
}

/* Daemon mode, logging at info to stderr. */
static void daemon_start(const char *cfg)
{
    spawn_fetchd(cfg, "--log-target", "stderr", "--log-level", "info", NULL);
}

/* SIGTERM, then waits; returns the exit status (like tu_wait) and the time
 * the exit took through *secs. */
static int daemon_stop(double *secs)
{
    ensure(child > 0, "fetchd is not running");
    double t0 = tu_now();
    ensure(kill(child, SIGTERM) == 0, "kill: %s", strerror(errno));
    int st = tu_wait(child, 30 * tu_slack());
    child = 0;
    if (secs) {
        *secs = tu_now() - t0;
    }
    return st;
}

/* Waits until the server has seen at least n requests for path. */
static bool wait_nreq(const char *path, size_t n, double timeout_s)
{
    double end = tu_now() + timeout_s;
    while (nreq(path) < n) {
        if (tu_now() > end) {
            return false;
        }
        usleep(10000);
    }
    return true;
}

/* Reads a whole file (malloc'd, "" when missing). */
static char *slurp(const char *path)
{
    char *s = tu_read(path);
    return s ? s : strdup("");
}

/* ---- 1. attempts ---------------------------------------------------------- */

START_TEST(test_retry_attempts)
{
    /* fail=2: the first two requests of each target get 503, then 200 */
    char *cfg = tu_fmt("{\"endpoints\": {"
                       "\"r3\": {\"url\": \"http://127.0.0.1:%d/r3?fail=2\","
                       " \"retry\": {\"attempts\": 3, \"backoff\": \"20ms\"}},"
                       "\"r2\": {\"url\": \"http://127.0.0.1:%d/r2?fail=2\","
                       " \"retry\": {\"attempts\": 2, \"backoff\": \"20ms\"}},"
                       "\"r1\": {\"url\": \"http://127.0.0.1:%d/r1?fail=2\"}}}",
                       port, port, port);
    struct tu_result res;
    run_once(&res, cfg, "--log-level", "debug", NULL);
    free(cfg);
    ensure(res.status == 1, "exit %d: %s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    ensure(r.n == 3, "%zu records (one per endpoint and cycle): %s", r.n, res.out);

    const cJSON *a = rec_nth(&r, "r3", 0);
    ensure(a && rec_ok(a) && jnum(a, "status") == 200 && jnum(a, "attempts") == 3,
           "r3: want ok after 3 attempts: %s", res.out);
    const cJSON *b = rec_nth(&r, "r2", 0);
    ensure(b && !rec_ok(b) && strcmp(kind_of(b), "http_status") == 0 &&
               jnum(jget(b, "error"), "http_status") == 503 && jnum(b, "attempts") == 2,
           "r2: want http_status 503 after 2 attempts: %s", res.out);
    const cJSON *c = rec_nth(&r, "r1", 0);
    ensure(c && !rec_ok(c) && jnum(c, "attempts") == 1 && jnum(c, "status") == 503,
           "r1 (no retry key): want one attempt: %s", res.out);

    cJSON *root;
    const cJSON *log = server_log(&root);
    ensure(req_count(log, "/r3") == 3, "/r3: %zu requests, want 3", req_count(log, "/r3"));
    ensure(req_count(log, "/r2") == 2, "/r2: %zu requests, want 2", req_count(log, "/r2"));
    ensure(req_count(log, "/r1") == 1, "/r1: %zu requests, want 1", req_count(log, "/r1"));
    /* the record's data is the third response (body=json's "n" is the
     * server's request counter) */
    long n3 = jnum(req_nth(log, "/r3", 2), "n");
    ensure(n3 > 0 && jnum(jget(a, "data"), "n") == n3, "r3: the data is not from request n=%ld: %s",
           n3, res.out);
    cJSON_Delete(root);

    /* each retry is logged at debug; no retry for r1 */
    ensure(lines_with(res.err, "endpoint 'r3': attempt 1 failed (http_status); retrying in",
                      NULL) == 1 &&
               lines_with(res.err, "endpoint 'r3': attempt 2 failed (http_status); retrying in",
                          NULL) == 1,
           "r3: want two retry lines: %s", res.err);
    ensure(lines_with(res.err, "endpoint 'r1': attempt", "retrying") == 0, "r1 retried: %s",
           res.err);
    recs_free(&r);
    tu_result_done(&res);
}
END_TEST

/* ---- 2. what is retried ("on"), connect errors, timeouts ------------------ */

START_TEST(test_retry_on)
{
    int closed = closed_port();
    char *cfg = tu_fmt(
        "{\"defaults\": {\"retry\": {\"attempts\": 3, \"backoff\": \"10ms\"}}, \"endpoints\": {"
        "\"d5xx\": {\"url\": \"http://127.0.0.1:%d/d5xx?status=500\"},"
        "\"only429\": {\"url\": \"http://127.0.0.1:%d/only429?status=500\","
        " \"retry\": {\"attempts\": 3, \"backoff\": \"10ms\", \"on\": [\"429\"]}},"
        "\"num500\": {\"url\": \"http://127.0.0.1:%d/num500?status=500\","
        " \"retry\": {\"attempts\": 3, \"backoff\": \"10ms\", \"on\": [500]}},"
        "\"is429\": {\"url\": \"http://127.0.0.1:%d/is429?status=429\","
        " \"retry\": {\"attempts\": 3, \"backoff\": \"10ms\", \"on\": [\"429\"]}},"
        "\"refused\": {\"url\": \"http://127.0.0.1:%d/refused\"},"
        "\"slow\": {\"url\": \"http://127.0.0.1:%d/slow?delay=2000\", \"timeout\": \"200ms\","
        " \"retry\": {\"attempts\": 2, \"backoff\": \"10ms\"}},"
        "\"slow_no\": {\"url\": \"http://127.0.0.1:%d/slow_no?delay=2000\", \"timeout\": \"200ms\","
        " \"retry\": {\"attempts\": 2, \"backoff\": \"10ms\", \"on\": [\"network\", \"5xx\"]}}}}",
        port, port, port, port, closed, port, port);
    struct tu_result res;
    run_once(&res, cfg, "--log-level", "debug", NULL);
    free(cfg);
    ensure(res.status == 1, "exit %d: %s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    ensure(r.n == 7, "%zu records, want 7: %s", r.n, res.out);

    static const struct {
        const char *name, *kind;
        long attempts;
        size_t requests; /* at the test server; (size_t)-1: not ours */
    } want[] = {
        {"d5xx", "http_status", 3, 3},    /* 5xx is in the default list */
        {"only429", "http_status", 1, 1}, /* 500 is not in ["429"] */
        {"num500", "http_status", 3, 3},  /* a status as a number */
        {"is429", "http_status", 3, 3},   /* 429 as a string */
        {"refused", "connect", 3, (size_t)-1},
        {"slow", "timeout", 2, 2},    /* "timeout" is in the default list */
        {"slow_no", "timeout", 1, 1}, /* but not in this one */
    };
    cJSON *root;
    const cJSON *log = server_log(&root);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        ensure(recs_count(&r, want[i].name) == 1, "%s: %zu records", want[i].name,
               recs_count(&r, want[i].name));
        const cJSON *x = rec_nth(&r, want[i].name, 0);
        ensure(!rec_ok(x) && strcmp(kind_of(x), want[i].kind) == 0 &&
                   jnum(x, "attempts") == want[i].attempts,
               "%s: want %s after %ld attempts: %s", want[i].name, want[i].kind, want[i].attempts,
               res.out);
        if (want[i].requests != (size_t)-1) {
            char *path = tu_fmt("/%s", want[i].name);
            size_t got = req_count(log, path);
            free(path);
            ensure(got == want[i].requests, "%s: the server saw %zu requests, want %zu",
                   want[i].name, got, want[i].requests);
        }
    }
    cJSON_Delete(root);
    /* the connect failures were retried (logged at debug) */
    ensure(lines_with(res.err, "endpoint 'refused': attempt", "failed (connect); retrying") == 2,
           "refused: want 2 retries: %s", res.err);
    ensure(jnum(jget(rec_nth(&r, "refused", 0), "error"), "curl_code") == 7, "refused: %s",
           res.out);
    recs_free(&r);
    tu_result_done(&res);
}
END_TEST

/* ---- 3. non-idempotent methods ------------------------------------------- */

START_TEST(test_retry_non_idempotent)
{
    int closed = closed_port();
    char *cfg = tu_fmt(
        "{\"defaults\": {\"retry\": {\"attempts\": 3, \"backoff\": \"10ms\"}}, \"endpoints\": {"
        "\"post\": {\"url\": \"http://127.0.0.1:%d/post?fail=1\", \"method\": \"POST\", \"body\": "
        "{\"a\": 1}},"
        "\"post_ni\": {\"url\": \"http://127.0.0.1:%d/post_ni?fail=1\", \"method\": \"POST\","
        " \"body\": {\"a\": 1}, \"retry\": {\"attempts\": 3, \"backoff\": \"10ms\", "
        "\"non_idempotent\": true}},"
        "\"patch\": {\"url\": \"http://127.0.0.1:%d/patch?fail=1\", \"method\": \"PATCH\", "
        "\"body\": \"x\"},"
        "\"put\": {\"url\": \"http://127.0.0.1:%d/put?fail=1\", \"method\": \"PUT\", \"body\": "
        "\"x\"},"
        "\"post_refused\": {\"url\": \"http://127.0.0.1:%d/x\", \"method\": \"POST\", \"body\": "
        "\"x\"}}}",
        port, port, port, port, closed);
    struct tu_result res;
    run_once(&res, cfg, NULL);
    free(cfg);
    ensure(res.status == 1, "exit %d: %s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    ensure(r.n == 5, "%zu records: %s", r.n, res.out);

    const cJSON *x = rec_nth(&r, "post", 0);
    ensure(x && !rec_ok(x) && jnum(x, "attempts") == 1 && jnum(x, "status") == 503,
           "POST was retried without non_idempotent: %s", res.out);
    x = rec_nth(&r, "patch", 0);
    ensure(x && !rec_ok(x) && jnum(x, "attempts") == 1, "PATCH was retried: %s", res.out);
    x = rec_nth(&r, "post_ni", 0);
    ensure(x && rec_ok(x) && jnum(x, "attempts") == 2,
           "POST with non_idempotent: want ok after 2 attempts: %s", res.out);
    x = rec_nth(&r, "put", 0);
    ensure(x && rec_ok(x) && jnum(x, "attempts") == 2, "PUT (idempotent) was not retried: %s",
           res.out);
    /* nothing was sent: a POST whose connect failed is retried */
    x = rec_nth(&r, "post_refused", 0);
    ensure(x && strcmp(kind_of(x), "connect") == 0 && jnum(x, "attempts") == 3,
           "POST to a closed port: want connect after 3 attempts: %s", res.out);

    cJSON *root;
    const cJSON *log = server_log(&root);
    ensure(req_count(log, "/post") == 1, "/post: %zu requests", req_count(log, "/post"));
    ensure(req_count(log, "/patch") == 1, "/patch: %zu requests", req_count(log, "/patch"));
    ensure(req_count(log, "/post_ni") == 2, "/post_ni: %zu requests", req_count(log, "/post_ni"));
    ensure(req_count(log, "/put") == 2, "/put: %zu requests", req_count(log, "/put"));
    for (size_t k = 0; k < 2; k++) {
        const cJSON *q = req_nth(log, "/post_ni", k);
        ensure(strcmp(req_method(q), "POST") == 0, "retry %zu of /post_ni is a %s", k,
               req_method(q));
        const cJSON *bd = jget(q, "body");
        ensure(cJSON_IsString(bd) && strcmp(bd->valuestring, "{\"a\":1}") == 0,
               "retry %zu of /post_ni lost its body", k);
    }
    cJSON_Delete(root);
    recs_free(&r);
    tu_result_done(&res);
}
END_TEST

/* ---- 4. Retry-After -------------------------------------------------------- */

START_TEST(test_retry_after)
{
    /* a 503 with Retry-After: 1 replaces the 10 ms backoff by 1 s */
    char *cfg =
        tu_fmt("{\"endpoints\": {\"ra\": {\"url\": \"http://127.0.0.1:%d/ra?fail=1&retry_after=1\","
               " \"retry\": {\"attempts\": 2, \"backoff\": \"10ms\"}}}}",
               port);
    double t0 = tu_now();
    spawn_fetchd(cfg, "--once", NULL);
    free(cfg);
    ensure(wait_nreq("/ra", 1, 30 * tu_slack()), "no first request");
    double t1 = tu_now();
    ensure(wait_nreq("/ra", 2, 10 * tu_slack()), "no second request");
    double t2 = tu_now();
    int st = tu_wait(child, 30 * tu_slack());
    child = 0;
    double total = tu_now() - t0;
    char *out = slurp(out_path), *err = slurp(err_path);
    ensure(st == 0, "exit %d: %s", st, err);
    double gap = t2 - t1;
    ensure(gap >= (under_valgrind() ? 0.8 : 0.9) && gap < 1.0 + 1.5 * tu_slack(),
           "second request %.3f s after the first; Retry-After: 1 asks for 1 s", gap);
    ensure(total >= 1.0, "the run took only %.3f s", total);
    struct recs r;
    recs_parse(&r, out);
    const cJSON *x = rec_nth(&r, "ra", 0);
    ensure(r.n == 1 && x && rec_ok(x) && jnum(x, "attempts") == 2,
           "want one ok record after 2 "
           "attempts: %s",
           out);
    recs_free(&r);
    free(out);
    free(err);
    ensure(nreq("/ra") == 2, "/ra: %zu requests", nreq("/ra"));

    /* Retry-After above max_retry_after: no retry in this cycle */
    cfg = tu_fmt(
        "{\"endpoints\": {\"far\": {\"url\": \"http://127.0.0.1:%d/far?fail=1&retry_after=120\","
        " \"retry\": {\"attempts\": 2, \"backoff\": \"10ms\", \"max_retry_after\": \"5s\"}}}}",
        port);
    struct tu_result res;
    run_once(&res, cfg, "--log-level", "info", NULL);
    free(cfg);
    ensure(res.status == 1, "exit %d: %s", res.status, res.err);
    ensure(res.seconds < 5 * tu_slack(), "took %.2f s: it waited for Retry-After", res.seconds);
    recs_parse(&r, res.out);
    x = rec_nth(&r, "far", 0);
    ensure(r.n == 1 && x && !rec_ok(x) && jnum(x, "attempts") == 1 &&
               jnum(jget(x, "error"), "http_status") == 503,
           "want one 503 error record after 1 attempt: %s", res.out);
    ensure(lines_with(res.err, "endpoint 'far'", "Retry-After") >= 1,
           "no log line saying why it was not retried: %s", res.err);
    ensure(nreq("/far") == 1, "/far: %zu requests", nreq("/far"));
    recs_free(&r);
    tu_result_done(&res);
}
END_TEST

/* ---- 5. the retry budget ------------------------------------------------- */

/* n endpoints /s0../s<n-1> answering 500, attempts 3, backoff 10 ms. */
static char *storm_cfg(int n, double budget)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ensure(f, "open_memstream");
    fprintf(f,
            "{\"limits\": {\"retry_budget\": %g}, \"defaults\": {\"retry\": {\"attempts\": 3,"
            " \"backoff\": \"10ms\"}}, \"endpoints\": {",
            budget);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s\"s%d\": {\"url\": \"http://127.0.0.1:%d/s%d?status=500\"}", i ? "," : "", i,
                port, i);
    }
    fputs("}}", f);
    fclose(f);
    return buf;
}

/* Runs a storm; checks one error record per endpoint and that the records'
 * attempts add up to the requests the server saw; returns that number. */
static long storm(int n, double budget)
{
    char *reset = http_get("/__reset");
    ensure(reset, "/__reset failed");
    free(reset);
    char *cfg = storm_cfg(n, budget);
    struct tu_result res;
    run_once(&res, cfg, NULL);
    free(cfg);
    ensure(res.status == 1, "exit %d: %.2000s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    ensure(r.n == (size_t)n, "%zu records for %d endpoints", r.n, n);
    long sum = 0;
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%d", i);
        ensure(recs_count(&r, name) == 1, "%s: %zu records", name, recs_count(&r, name));
        const cJSON *x = rec_nth(&r, name, 0);
        long a = jnum(x, "attempts");
        ensure(a >= 1 && a <= 3 && strcmp(kind_of(x), "http_status") == 0, "%s: attempts %ld: %s",
               name, a, res.out);
        sum += a;
    }
    long seen = tu_httpd_requests(port);
    ensure(seen == sum, "the server saw %ld requests; the records say %ld attempts", seen, sum);
    recs_free(&r);
    tu_result_done(&res);
    return seen;
}

START_TEST(test_retry_budget)
{
    /* 200 x 3 attempts would be 600 requests; the budget allows
     * 10 + 0.2 x 200 = 50 retries */
    long n = storm(200, 0.2);
    ensure(n >= 210 && n <= 250,
           "200 failing endpoints with retry_budget 0.2: %ld requests "
           "(want 200 first attempts + 10..50 retries)",
           n);

    /* budget 1.0, 10 endpoints: 10 + 1.0 x 10 = 20 retries, all of them */
    n = storm(10, 1.0);
    ensure(n == 30, "10 endpoints, retry_budget 1.0: %ld requests, want 30 (3 attempts each)", n);

    /* budget 1.0, 20 endpoints: 40 retries wanted, 10 + 20 = 30 allowed */
    n = storm(20, 1.0);
    ensure(n == 50, "20 endpoints, retry_budget 1.0: %ld requests, want 20 + 30", n);
}
END_TEST

/* ---- 6. circuit breaker --------------------------------------------------- */

START_TEST(test_breaker)
{
    char *cfg = tu_fmt("{\"defaults\": {\"interval\": \"100ms\","
                       " \"breaker\": {\"after\": 3, \"max_backoff\": \"1s\"}}, \"endpoints\": {"
                       "\"down\": {\"url\": \"http://127.0.0.1:%d/down?status=500\"},"
                       "\"flaky\": {\"url\": \"http://127.0.0.1:%d/flaky?fail=3\"}}}",
                       port, port);
    daemon_start(cfg);
    free(cfg);
    ensure(wait_nreq("/down", 1, 30 * tu_slack()), "no request");
    usleep(3000000);
    size_t down = nreq("/down"), flaky = nreq("/flaky");
    double secs;
    int st = daemon_stop(&secs);
    char *out = slurp(out_path), *err = slurp(err_path);
    ensure(st == 0, "exit %d: %s", st, err);
    /* 3 failures, then probes after 200, 400, 800, 1000, 1000 ms: about 7;
     * without the breaker 30 */
    ensure(down >= 4 && down < 15, "status=500 every 100 ms for 3 s with the breaker: %zu requests",
           down);
    ensure(lines_with(err, "warning: endpoint 'down': backing off", NULL) == 1,
           "want exactly one \"backing off\" warning for 'down':\n%s", err);
    ensure(lines_with(err, "endpoint 'down': probe failed", NULL) >= 1,
           "no failed probe logged:\n%s", err);
    ensure(lines_with(err, "endpoint 'down': recovered", NULL) == 0, "%s", err);

    /* fail=3: three failed cycles open the breaker, the probe succeeds */
    ensure(lines_with(err, "endpoint 'flaky': recovered", NULL) == 1,
           "no \"recovered\" line for 'flaky':\n%s", err);
    ensure(lines_with(err, "warning: endpoint 'flaky': backing off", NULL) == 1,
           "want one \"backing off\" warning for 'flaky':\n%s", err);
    struct recs r;
    recs_parse(&r, out);
    size_t ok = 0, bad = 0;
    for (size_t i = 0; i < recs_count(&r, "flaky"); i++) {
        const cJSON *x = rec_nth(&r, "flaky", i);
        if (rec_ok(x)) {
            ok++;
        } else {
            ensure(ok == 0, "'flaky' failed after it recovered: %s", out);
            bad++;
        }
    }
    ensure(bad == 3, "'flaky': %zu failed records, want 3", bad);
    size_t want_ok = under_valgrind() ? 5 : 15;
    ensure(ok >= want_ok,
           "'flaky' is not fetched every 100 ms after recovering: %zu ok records "
           "(%zu requests)",
           ok, flaky);
    ensure(flaky >= ok + bad - 1, "'flaky': %zu requests for %zu records", flaky, ok + bad);
    ensure(recs_count(&r, "down") >= 4, "'down': %zu records", recs_count(&r, "down"));
    recs_free(&r);
    free(out);
    free(err);

    /* the same without the breaker: every run goes out */
    char *reset = http_get("/__reset");
    free(reset);
    cfg = tu_fmt("{\"endpoints\": {\"nob\": {\"url\": \"http://127.0.0.1:%d/nob?status=500\","
                 " \"interval\": \"100ms\", \"breaker\": false}}}",
                 port);
    daemon_start(cfg);
    free(cfg);
    ensure(wait_nreq("/nob", 1, 30 * tu_slack()), "no request");
    usleep(3000000);
    size_t nob = nreq("/nob");
    st = daemon_stop(&secs);
    err = slurp(err_path);
    ensure(st == 0, "exit %d: %s", st, err);
    ensure(nob >= (under_valgrind() ? 10u : 20u) && nob <= 32,
           "breaker false: %zu requests in 3 s at 100 ms", nob);
    ensure(lines_with(err, "backing off", NULL) == 0, "breaker false but: %s", err);
    free(err);
}
END_TEST

/* ---- 7. conditional requests --------------------------------------------- */

#define LASTMOD "Wed, 21 Oct 2015 07:28:00 GMT"
#define LASTMOD_Q "Wed,%2021%20Oct%202015%2007:28:00%20GMT"

START_TEST(test_conditional_daemon)
{
    char *cfg = tu_fmt(
        "{\"defaults\": {\"interval\": \"200ms\", \"conditional\": true},"
        " \"endpoints\": {"
        "\"et\": {\"url\": \"http://127.0.0.1:%d/et?etag=abc\"},"
        "\"etu\": {\"url\": \"http://127.0.0.1:%d/etu?etag=abc\", \"unchanged_record\": true},"
        "\"lm\": {\"url\": \"http://127.0.0.1:%d/lm?lastmod=%s\"}}}",
        port, port, port, LASTMOD_Q);
    daemon_start(cfg);
    free(cfg);
    ensure(wait_nreq("/et", 1, 30 * tu_slack()) && wait_nreq("/etu", 1, 5 * tu_slack()) &&
               wait_nreq("/lm", 1, 5 * tu_slack()),
           "no requests");
    usleep(1500000);
    int st = daemon_stop(NULL);
    char *out = slurp(out_path), *err = slurp(err_path);
    ensure(st == 0, "exit %d: %s", st, err);
    struct recs r;
    recs_parse(&r, out);
    cJSON *root;
    const cJSON *log = server_log(&root);

    /* ETag: one record (the 200); every later request asks If-None-Match */
    size_t n = req_count(log, "/et");
    ensure(n >= 4, "/et: only %zu requests in 1.5 s at 200 ms", n);
    ensure(recs_count(&r, "et") == 1, "'et': %zu records, want 1 (304s write none): %s",
           recs_count(&r, "et"), out);
    const cJSON *x = rec_nth(&r, "et", 0);
    ensure(rec_ok(x) && jnum(x, "status") == 200 && !jget(x, "unchanged"), "'et': %s", out);
    ensure(!req_header(req_nth(log, "/et", 0), "If-None-Match"),
           "the first request already had If-None-Match");
    for (size_t k = 1; k < n; k++) {
        const char *v = req_header(req_nth(log, "/et", k), "If-None-Match");
        ensure(v && strcmp(v, "\"abc\"") == 0, "/et request %zu: If-None-Match %s", k,
               v ? v : "(none)");
    }

    /* unchanged_record: every 304 is a record */
    n = req_count(log, "/etu");
    ensure(n >= 4, "/etu: only %zu requests", n);
    ensure(recs_count(&r, "etu") == n, "'etu': %zu records for %zu requests", recs_count(&r, "etu"),
           n);
    x = rec_nth(&r, "etu", 0);
    ensure(rec_ok(x) && jnum(x, "status") == 200 && !jget(x, "unchanged") &&
               cJSON_IsObject(jget(x, "data")),
           "'etu' first record: %s", out);
    for (size_t k = 1; k < n; k++) {
        x = rec_nth(&r, "etu", k);
        ensure(rec_ok(x) && jnum(x, "status") == 304 && cJSON_IsTrue(jget(x, "unchanged")) &&
                   cJSON_IsNull(jget(x, "data")) && !jget(x, "error"),
               "'etu' record %zu is not an unchanged marker: %s", k, out);
        const char *v = req_header(req_nth(log, "/etu", k), "If-None-Match");
        ensure(v && strcmp(v, "\"abc\"") == 0, "/etu request %zu: If-None-Match %s", k,
               v ? v : "(none)");
    }

    /* Last-Modified: If-Modified-Since */
    n = req_count(log, "/lm");
    ensure(n >= 4, "/lm: only %zu requests", n);
    ensure(recs_count(&r, "lm") == 1, "'lm': %zu records, want 1", recs_count(&r, "lm"));
    ensure(!req_header(req_nth(log, "/lm", 0), "If-Modified-Since"), "first /lm request");
    for (size_t k = 1; k < n; k++) {
        const cJSON *q = req_nth(log, "/lm", k);
        const char *v = req_header(q, "If-Modified-Since");
        ensure(v && strcmp(v, LASTMOD) == 0, "/lm request %zu: If-Modified-Since %s", k,
               v ? v : "(none)");
        ensure(!req_header(q, "If-None-Match"), "/lm request %zu has If-None-Match", k);
    }
    ensure(lines_with(err, "fetch failed", NULL) == 0, "a 304 counted as a failure: %s", err);
    cJSON_Delete(root);
    recs_free(&r);
    free(out);
    free(err);
}
END_TEST

START_TEST(test_conditional_state_dir)
{
    char *state = tu_fmt("%s/state", dir);
    ensure(mkdir(state, 0700) == 0, "mkdir: %s", strerror(errno));
    char *cfg = tu_fmt("{\"endpoints\": {\"sd\": {\"url\": \"http://127.0.0.1:%d/sd?etag=abc\","
                       " \"conditional\": true}}}",
                       port);
    struct tu_result res;
    run_once(&res, cfg, "--state-dir", state, NULL);
    ensure(res.status == 0, "run 1: exit %d: %s", res.status, res.err);
    ensure(tu_lines(res.out) == 1 && strstr(res.out, "\"status\":200"), "run 1: %s", res.out);
    tu_result_done(&res);
    char *file = tu_fmt("%s/conditional.json", state);
    char *saved = tu_read(file);
    ensure(saved, "%s was not written", file);
    cJSON *j = cJSON_Parse(saved);
    ensure(cJSON_IsObject(j) && strstr(saved, "sd") && strstr(saved, "abc"),
           "%s is not JSON with the validator: %s", file, saved);
    cJSON_Delete(j);
    free(saved);

    /* run 2: the saved ETag is sent, the 304 writes nothing */
    run_once(&res, cfg, "--state-dir", state, NULL);
    free(cfg);
    cJSON *root;
    const cJSON *log = server_log(&root);
    ensure(req_count(log, "/sd") == 2, "/sd: %zu requests", req_count(log, "/sd"));
    ensure(!req_header(req_nth(log, "/sd", 0), "If-None-Match"), "run 1 sent If-None-Match");
    const char *v = req_header(req_nth(log, "/sd", 1), "If-None-Match");
    ensure(v && strcmp(v, "\"abc\"") == 0,
           "run 2 did not send the ETag saved by run 1 (If-None-Match: %s); run 2 wrote: %s",
           v ? v : "(none)", res.out);
    cJSON_Delete(root);
    ensure(res.status == 0, "run 2: exit %d: %s", res.status, res.err);
    ensure(res.out[0] == '\0', "run 2 wrote a record for a 304: %s", res.out);
    tu_result_done(&res);
    saved = tu_read(file);
    j = saved ? cJSON_Parse(saved) : NULL;
    ensure(cJSON_IsObject(j), "%s after run 2: %s", file, saved ? saved : "(missing)");
    cJSON_Delete(j);
    free(saved);

    /* another URL: the saved validator is for a different request */
    cfg = tu_fmt("{\"endpoints\": {\"sd\": {\"url\": \"http://127.0.0.1:%d/sd?etag=abc&v=2\","
                 " \"conditional\": true}}}",
                 port);
    run_once(&res, cfg, "--state-dir", state, NULL);
    free(cfg);
    ensure(res.status == 0, "run 3: exit %d: %s", res.status, res.err);
    ensure(tu_lines(res.out) == 1 && strstr(res.out, "\"status\":200"),
           "run 3 (changed URL): want a 200 record: %s", res.out);
    tu_result_done(&res);
    log = server_log(&root);
    const cJSON *q = req_nth(log, "/sd", 2);
    ensure(q && strcmp(req_target(q), "/sd?etag=abc&v=2") == 0, "run 3's request");
    ensure(!req_header(q, "If-None-Match"), "run 3 sent a validator saved for another URL");
    cJSON_Delete(root);
    free(file);
    free(state);
}
END_TEST

START_TEST(test_unchanged_record_needs_conditional)
{
    char *cfg = tu_fmt("{\"endpoints\": {\"u\": {\"url\": \"http://127.0.0.1:%d/u?etag=abc\","
                       " \"unchanged_record\": true}}}",
                       port);
    struct tu_result res;
    run_once(&res, cfg, NULL);
    free(cfg);
    ensure(res.status == 78, "exit %d: %s", res.status, res.err);
    ensure(strstr(res.err, "unchanged_record"), "the error does not name the key: %s", res.err);
    ensure(res.out[0] == '\0', "records: %s", res.out);
    ensure(tu_httpd_requests(port) == 0, "a config error fetched something");
    tu_result_done(&res);
}
END_TEST

/* ---- 8. content_type ------------------------------------------------------ */

START_TEST(test_content_type)
{
    char *cfg =
        tu_fmt("{\"endpoints\": {"
               "\"html\": {\"url\": \"http://127.0.0.1:%d/html?body=html\"},"
               "\"html_any\": {\"url\": \"http://127.0.0.1:%d/html_any?body=html\", "
               "\"content_type\": \"any\"},"
               "\"plain_strict\": {\"url\": \"http://127.0.0.1:%d/plain_strict?ctype=text/plain\","
               " \"content_type\": \"strict\"},"
               "\"plain\": {\"url\": \"http://127.0.0.1:%d/plain?ctype=text/plain\"},"
               "\"xml\": {\"url\": \"http://127.0.0.1:%d/xml?ctype=application/atom%%2Bxml\"},"
               "\"ndj_strict\": {\"url\": "
               "\"http://127.0.0.1:%d/ndj_strict?ctype=application/problem%%2Bjson\","
               " \"content_type\": \"strict\"}}}",
               port, port, port, port, port, port);
    struct tu_result res;
    run_once(&res, cfg, NULL);
    free(cfg);
    ensure(res.status == 1, "exit %d: %s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    ensure(r.n == 6, "%zu records: %s", r.n, res.out);
    const cJSON *x = rec_nth(&r, "html", 0);
    ensure(strcmp(kind_of(x), "unexpected_content_type") == 0, "body=html: %s", res.out);
    const char *ex = jstr(jget(x, "error"), "excerpt");
    ensure(ex && strstr(ex, "<html><body>error</body></html>"), "body=html: no excerpt: %s",
           res.out);
    ensure(jnum(x, "status") == 200, "%s", res.out);
    x = rec_nth(&r, "html_any", 0);
    ensure(strcmp(kind_of(x), "invalid_json") == 0, "content_type any: %s", res.out);
    x = rec_nth(&r, "plain_strict", 0);
    ensure(strcmp(kind_of(x), "unexpected_content_type") == 0, "text/plain with strict: %s",
           res.out);
    x = rec_nth(&r, "plain", 0);
    ensure(rec_ok(x) && streq(jstr(jget(x, "data"), "path"), "/plain"),
           "text/plain JSON with the default: %s", res.out);
    x = rec_nth(&r, "xml", 0);
    ensure(strcmp(kind_of(x), "unexpected_content_type") == 0, "+xml: %s", res.out);
    x = rec_nth(&r, "ndj_strict", 0);
    ensure(rec_ok(x), "application/problem+json with strict: %s", res.out);

    cJSON *root;
    const cJSON *log = server_log(&root);
    const char *paths[] = {"/html", "/html_any", "/plain_strict", "/plain", "/xml", "/ndj_strict"};
    for (size_t i = 0; i < 6; i++) {
        ensure(req_count(log, paths[i]) == 1, "%s: %zu requests", paths[i],
               req_count(log, paths[i]));
    }
    cJSON_Delete(root);
    recs_free(&r);
    tu_result_done(&res);
}
END_TEST

/* ---- 9. ndjson ------------------------------------------------------------ */

START_TEST(test_ndjson)
{
    char *cfg = tu_fmt("{\"defaults\": {\"format\": \"ndjson\"}, \"endpoints\": {"
                       "\"nd\": {\"url\": \"http://127.0.0.1:%d/nd?ndjson=5\"},"
                       "\"ndb\": {\"url\": \"http://127.0.0.1:%d/ndb?ndjson=5&ndjson_bad=2\"}}}",
                       port, port);
    struct tu_result res;
    run_once(&res, cfg, NULL);
    free(cfg);
    ensure(res.status == 1, "exit %d: %s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    ensure(recs_count(&r, "nd") == 5, "ndjson=5: %zu records: %s", recs_count(&r, "nd"), res.out);
    for (size_t k = 0; k < 5; k++) {
        const cJSON *x = rec_nth(&r, "nd", k);
        const cJSON *d = jget(x, "data");
        ensure(rec_ok(x) && jnum(x, "index") == (long)k && cJSON_IsObject(d) &&
                   cJSON_GetArraySize(d) == 1 && jnum(d, "i") == (long)k,
               "ndjson record %zu: %s", k, res.out);
    }
    ensure(recs_count(&r, "ndb") == 5, "ndjson_bad=2: %zu records: %s", recs_count(&r, "ndb"),
           res.out);
    size_t ok = 0;
    for (size_t k = 0; k < 5; k++) {
        const cJSON *x = rec_nth(&r, "ndb", k);
        if (k == 2) {
            const char *msg = jstr(jget(x, "error"), "message");
            ensure(!rec_ok(x) && strcmp(kind_of(x), "invalid_json") == 0 && jnum(x, "index") == 2 &&
                       msg && strstr(msg, "line 3"),
                   "bad line: %s", res.out);
        } else {
            ensure(rec_ok(x) && jnum(x, "index") == (long)k &&
                       jnum(jget(x, "data"), "i") == (long)k,
                   "ndjson_bad record %zu: %s", k, res.out);
            ok++;
        }
    }
    ensure(ok == 4, "%zu ok records", ok);
    cJSON *root;
    const cJSON *log = server_log(&root);
    ensure(req_count(log, "/nd") == 1 && req_count(log, "/ndb") == 1, "one request each");
    cJSON_Delete(root);
    recs_free(&r);
    tu_result_done(&res);
}
END_TEST

/* ---- 10. split ------------------------------------------------------------ */

START_TEST(test_split)
{
    char *cfg =
        tu_fmt("{\"defaults\": {\"split\": true}, \"endpoints\": {"
               "\"arr\": {\"url\": \"http://127.0.0.1:%d/arr?body=array\"},"
               "\"items\": {\"url\": \"http://127.0.0.1:%d/items\", \"select\": \"/items\"},"
               "\"obj\": {\"url\": \"http://127.0.0.1:%d/obj\"}}}",
               port, port, port);
    struct tu_result res;
    run_once(&res, cfg, NULL);
    free(cfg);
    ensure(res.status == 1, "exit %d: %s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    ensure(recs_count(&r, "arr") == 3, "body=array: %zu records: %s", recs_count(&r, "arr"),
           res.out);
    ensure(recs_count(&r, "items") == 3, "select /items: %zu records: %s", recs_count(&r, "items"),
           res.out);
    for (size_t k = 0; k < 3; k++) {
        const cJSON *x = rec_nth(&r, "arr", k);
        ensure(rec_ok(x) && jnum(x, "index") == (long)k &&
                   jnum(jget(x, "data"), "id") == (long)k + 1,
               "arr record %zu: %s", k, res.out);
        x = rec_nth(&r, "items", k);
        const cJSON *d = jget(x, "data");
        ensure(rec_ok(x) && jnum(x, "index") == (long)k && cJSON_IsNumber(d) &&
                   d->valueint == (int)k + 1,
               "items record %zu: %s", k, res.out);
    }
    ensure(recs_count(&r, "obj") == 1, "object: %zu records", recs_count(&r, "obj"));
    const cJSON *x = rec_nth(&r, "obj", 0);
    ensure(!rec_ok(x) && strcmp(kind_of(x), "not_array") == 0, "split on an object: %s", res.out);
    cJSON *root;
    const cJSON *log = server_log(&root);
    ensure(req_count(log, "/arr") == 1 && req_count(log, "/items") == 1 &&
               req_count(log, "/obj") == 1,
           "one request each");
    cJSON_Delete(root);
    recs_free(&r);
    tu_result_done(&res);
}
END_TEST

/* ---- 11. response_headers -------------------------------------------------- */

START_TEST(test_response_headers)
{
    char *cfg = tu_fmt(
        "{\"endpoints\": {"
        "\"rh\": {\"url\": \"http://127.0.0.1:%d/rh?etag=xyz&header=X-Rate:1&header=X-Rate:2\","
        " \"response_headers\": [\"ETag\", \"X-Nope\", \"x-rate\"]},"
        "\"plain\": {\"url\": \"http://127.0.0.1:%d/plain?etag=xyz\"}}}",
        port, port);
    struct tu_result res;
    run_once(&res, cfg, NULL);
    free(cfg);
    ensure(res.status == 0, "exit %d: %s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    const cJSON *x = rec_nth(&r, "rh", 0);
    const cJSON *h = jget(x, "headers");
    ensure(cJSON_IsObject(h), "no headers: %s", res.out);
    ensure(streq(jstr(h, "etag"), "\"xyz\""), "etag: %s", res.out);
    ensure(!jget(h, "x-nope") && !jget(h, "X-Nope"), "an absent header is listed: %s", res.out);
    ensure(streq(jstr(h, "x-rate"), "1, 2"), "repeated header not joined with \", \": %s", res.out);
    ensure(cJSON_GetArraySize(h) == 2, "headers: %s", res.out);
    ensure(rec_ok(x) && cJSON_IsObject(jget(x, "data")), "%s", res.out);
    x = rec_nth(&r, "plain", 0);
    ensure(x && !jget(x, "headers"), "headers without response_headers: %s", res.out);
    ensure(nreq("/rh") == 1, "/rh requests");
    recs_free(&r);
    tu_result_done(&res);
}
END_TEST

/* ---- 12. pagination -------------------------------------------------------- */

START_TEST(test_paginate)
{
    char *cfg = tu_fmt(
        "{\"endpoints\": {"
        "\"lk\": {\"url\": \"http://127.0.0.1:%d/lk?pages=3\", \"paginate\": {\"link\": true}},"
        "\"lmax\": {\"url\": \"http://127.0.0.1:%d/lmax?pages=3\","
        " \"paginate\": {\"link\": true, \"max_pages\": 2}},"
        "\"nu\": {\"url\": \"http://127.0.0.1:%d/nu?pages=3\", \"paginate\": {\"next_url\": "
        "\"/next\"}},"
        "\"cu\": {\"url\": \"http://127.0.0.1:%d/cu?pages=3&cursorpages=1\","
        " \"paginate\": {\"cursor\": \"/meta/next_cursor\", \"param\": \"cursor\"}}}}",
        port, port, port, port);
    struct tu_result res;
    run_once(&res, cfg, NULL);
    free(cfg);
    ensure(res.status == 0, "exit %d: %s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    static const struct {
        const char *name;
        size_t pages;
    } want[] = {{"lk", 3}, {"lmax", 2}, {"nu", 3}, {"cu", 3}};
    for (size_t i = 0; i < 4; i++) {
        ensure(recs_count(&r, want[i].name) == want[i].pages, "%s: %zu records, want %zu: %s",
               want[i].name, recs_count(&r, want[i].name), want[i].pages, res.out);
        for (size_t k = 0; k < want[i].pages; k++) {
            const cJSON *x = rec_nth(&r, want[i].name, k);
            const cJSON *d = jget(x, "data");
            const cJSON *items = jget(d, "items");
            ensure(rec_ok(x) && jnum(x, "page") == (long)k + 1 && jnum(x, "attempts") == 1 &&
                       cJSON_IsArray(items) &&
                       cJSON_GetArrayItem(items, 0)->valueint == (int)(k + 1) * 10 + 1,
                   "%s record %zu: %s", want[i].name, k, res.out);
            if (strcmp(want[i].name, "cu") != 0) {
                ensure(jnum(d, "page") == (long)k + 1, "%s record %zu: %s", want[i].name, k,
                       res.out);
            }
        }
    }
    ensure(lines_with(res.err, "endpoint 'lmax'", "max_pages") == 1,
           "no warning about max_pages for 'lmax': %s", res.err);
    ensure(lines_with(res.err, "endpoint 'lk'", NULL) == 0, "%s", res.err);

    cJSON *root;
    const cJSON *log = server_log(&root);
    ensure(req_count(log, "/lk") == 3, "/lk: %zu requests", req_count(log, "/lk"));
    ensure(req_target_seen(log, "/lk?pages=3") && req_target_seen(log, "/lk?pages=3&page=2") &&
               req_target_seen(log, "/lk?pages=3&page=3"),
           "the Link URLs were not followed as given");
    ensure(req_count(log, "/lmax") == 2, "/lmax: %zu requests", req_count(log, "/lmax"));
    ensure(req_count(log, "/nu") == 3, "/nu: %zu requests", req_count(log, "/nu"));
    ensure(req_count(log, "/cu") == 3, "/cu: %zu requests", req_count(log, "/cu"));
    ensure(req_target_seen(log, "/cu?pages=3&cursorpages=1&cursor=2") &&
               req_target_seen(log, "/cu?pages=3&cursorpages=1&cursor=3"),
           "the cursor requests are not the endpoint URL + cursor=2 / cursor=3: %s, %s",
           req_target(req_nth(log, "/cu", 1)), req_target(req_nth(log, "/cu", 2)));
    cJSON_Delete(root);
    recs_free(&r);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_paginate_failing_page)
{
    /* fail=1 counts per target: the test takes page 1's failure itself, so
     * fetchd's page 1 succeeds and its page 2 (another target) fails once */
    const char *firsts[] = {"/fp?pages=3&fail=1", "/fpr?pages=3&fail=1"};
    for (size_t i = 0; i < 2; i++) {
        char *b = http_get(firsts[i]);
        ensure(b && strstr(b, "injected failure"), "priming %s: %s", firsts[i], b ? b : "(failed)");
        free(b);
    }
    char *cfg = tu_fmt("{\"defaults\": {\"paginate\": {\"link\": true}}, \"endpoints\": {"
                       "\"fp\": {\"url\": \"http://127.0.0.1:%d/fp?pages=3&fail=1\"},"
                       "\"fpr\": {\"url\": \"http://127.0.0.1:%d/fpr?pages=3&fail=1\","
                       " \"retry\": {\"attempts\": 2, \"backoff\": \"10ms\"}}}}",
                       port, port);
    struct tu_result res;
    run_once(&res, cfg, NULL);
    free(cfg);
    ensure(res.status == 1, "exit %d: %s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    ensure(recs_count(&r, "fp") == 2, "fp: %zu records, want page 1 and the error of page 2: %s",
           recs_count(&r, "fp"), res.out);
    const cJSON *x = rec_nth(&r, "fp", 0);
    ensure(rec_ok(x) && jnum(x, "page") == 1, "fp page 1: %s", res.out);
    x = rec_nth(&r, "fp", 1);
    ensure(!rec_ok(x) && jnum(x, "page") == 2 && strcmp(kind_of(x), "http_status") == 0 &&
               jnum(jget(x, "error"), "http_status") == 503,
           "fp page 2: %s", res.out);
    ensure(lines_with(res.err, "fp: http_status", NULL) == 1, "%s", res.err);

    /* with a retry, page 2 is fetched again and the cycle goes on; page 3
     * (another target) fails once too: attempts count per page, so it
     * still has its retry (attempts 2) */
    ensure(recs_count(&r, "fpr") == 3, "fpr: %zu records: %s", recs_count(&r, "fpr"), res.out);
    for (size_t k = 0; k < 3; k++) {
        x = rec_nth(&r, "fpr", k);
        ensure(rec_ok(x) && jnum(x, "page") == (long)k + 1 &&
                   jnum(x, "attempts") == (k == 0 ? 1 : 2),
               "fpr page %zu: %s", k + 1, res.out);
    }
    cJSON *root;
    const cJSON *log = server_log(&root);
    /* priming + page 1 + page 2; page 3 never asked for */
    ensure(req_count(log, "/fp") == 3, "/fp: %zu requests", req_count(log, "/fp"));
    ensure(!req_target_seen(log, "/fp?pages=3&fail=1&page=3"),
           "page 3 fetched after page 2 failed");
    ensure(req_count(log, "/fpr") == 6, "/fpr: %zu requests (priming, 1, 2, 2 again, 3, 3 again)",
           req_count(log, "/fpr"));
    static const char *const fpr_targets[] = {
        "/fpr?pages=3&fail=1",        "/fpr?pages=3&fail=1",        "/fpr?pages=3&fail=1&page=2",
        "/fpr?pages=3&fail=1&page=2", "/fpr?pages=3&fail=1&page=3", "/fpr?pages=3&fail=1&page=3"};
    for (size_t k = 0; k < 6; k++) {
        const char *t = req_target(req_nth(log, "/fpr", k));
        ensure(strcmp(t, fpr_targets[k]) == 0, "/fpr request %zu: %s, want %s", k, t,
               fpr_targets[k]);
    }
    cJSON_Delete(root);
    recs_free(&r);
    tu_result_done(&res);
}
END_TEST

/* ---- 13. success_status ---------------------------------------------------- */

START_TEST(test_success_status)
{
    char *cfg = tu_fmt(
        "{\"endpoints\": {"
        "\"s404\": {\"url\": \"http://127.0.0.1:%d/s404?status=404\", \"success_status\": [200, "
        "404]},"
        "\"class\": {\"url\": \"http://127.0.0.1:%d/class?status=404\", \"success_status\": "
        "[\"4xx\"]},"
        "\"not200\": {\"url\": \"http://127.0.0.1:%d/not200\", \"success_status\": [\"4xx\"]},"
        "\"dflt\": {\"url\": \"http://127.0.0.1:%d/dflt?status=404\"}}}",
        port, port, port, port);
    struct tu_result res;
    run_once(&res, cfg, NULL);
    free(cfg);
    ensure(res.status == 1, "exit %d: %s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    ensure(r.n == 4, "%zu records", r.n);
    const cJSON *x = rec_nth(&r, "s404", 0);
    ensure(rec_ok(x) && jnum(x, "status") == 404 && streq(jstr(jget(x, "data"), "path"), "/s404"),
           "404 in success_status: %s", res.out);
    x = rec_nth(&r, "class", 0);
    ensure(rec_ok(x) && jnum(x, "status") == 404, "\"4xx\": %s", res.out);
    x = rec_nth(&r, "not200", 0);
    ensure(!rec_ok(x) && strcmp(kind_of(x), "http_status") == 0 && jnum(x, "status") == 200,
           "200 with success_status [\"4xx\"]: %s", res.out);
    x = rec_nth(&r, "dflt", 0);
    ensure(!rec_ok(x) && strcmp(kind_of(x), "http_status") == 0 &&
               jnum(jget(x, "error"), "http_status") == 404,
           "404 by default: %s", res.out);
    ensure(tu_httpd_requests(port) == 4, "%ld requests", tu_httpd_requests(port));
    recs_free(&r);
    tu_result_done(&res);
}
END_TEST

/* ---- 14. SIGTERM during a retry wait -------------------------------------- */

START_TEST(test_stop_during_retry_wait)
{
    /* interval 60 s: the first run is placed with align + offset a moment
     * from now (the name-derived splay could be up to a minute) */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long now_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    long long lead_ms = under_valgrind() ? 10000 : 1000;
    long long off_ms = (now_ms + lead_ms) % 60000;
    char *cfg = tu_fmt("{\"endpoints\": {\"w\": {\"url\": \"http://127.0.0.1:%d/w?fail=100\","
                       " \"interval\": \"60s\", \"align\": true, \"offset\": \"%lldms\","
                       " \"retry\": {\"attempts\": 5, \"backoff\": \"5s\"}}}}",
                       port, off_ms);
    spawn_fetchd(cfg, "--log-target", "stderr", "--log-level", "debug", NULL);
    free(cfg);
    ensure(wait_nreq("/w", 1, 40 * tu_slack()), "no request");
    /* let the 503 come back: fetchd now waits up to 5 s for attempt 2 */
    usleep(200000 * (useconds_t)tu_slack());
    double secs;
    int st = daemon_stop(&secs);
    char *out = slurp(out_path), *err = slurp(err_path);
    ensure(st == 0, "exit %d: %s", st, err);
    ensure(secs < 2.0 * tu_slack(), "took %.2f s to stop during a retry wait", secs);
    ensure(lines_with(err, "endpoint 'w': attempt 1 failed", "retrying in") == 1,
           "the first attempt did not schedule a retry: %s", err);
    size_t n = nreq("/w");
    struct recs r;
    recs_parse(&r, out);
    ensure(r.n == 1, "%zu records: want the last attempt's error record: %s", r.n, out);
    const cJSON *x = rec_nth(&r, "w", 0);
    ensure(!rec_ok(x) && strcmp(kind_of(x), "http_status") == 0 &&
               jnum(jget(x, "error"), "http_status") == 503 && jnum(x, "attempts") == (long)n,
           "want the 503 of attempt %zu: %s", n, out);
    recs_free(&r);
    free(out);
    free(err);
}
END_TEST

static Suite *retry_suite(void)
{
    Suite *s = suite_create("retry");
    TCase *tc = tcase_create("retry");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_retry_attempts);
    tcase_add_test(tc, test_retry_on);
    tcase_add_test(tc, test_retry_non_idempotent);
    tcase_add_test(tc, test_retry_after);
    tcase_add_test(tc, test_retry_budget);
    tcase_add_test(tc, test_stop_during_retry_wait);
    suite_add_tcase(s, tc);

    tc = tcase_create("breaker");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_breaker);
    suite_add_tcase(s, tc);

    tc = tcase_create("conditional");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_conditional_daemon);
    tcase_add_test(tc, test_conditional_state_dir);
    tcase_add_test(tc, test_unchanged_record_needs_conditional);
    suite_add_tcase(s, tc);

    tc = tcase_create("response");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_content_type);
    tcase_add_test(tc, test_ndjson);
    tcase_add_test(tc, test_split);
    tcase_add_test(tc, test_response_headers);
    tcase_add_test(tc, test_paginate);
    tcase_add_test(tc, test_paginate_failing_page);
    tcase_add_test(tc, test_success_status);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    SRunner *sr = srunner_create(retry_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
