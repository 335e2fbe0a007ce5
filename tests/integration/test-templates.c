/* test-templates.c - request templates and checkpoints, through the real
 * fetchd binary against the test HTTP server on 127.0.0.1:
 *
 * - what the placeholders turn into on the wire (body=echo): URL, JSON and
 *   form escaping, header values, $${, the time formats, "timezone", the
 *   interval of a --once run;
 * - records and the log keep the URL as configured: no value of an
 *   environment variable or a credential leaks;
 * - configuration errors (exit 78, file:line and key path, nothing run);
 * - checkpoints in --state-dir across processes (body=feed), keep "max"
 *   and "last", no advance when a sink loses a record or the cycle has an
 *   error record (and the window a sink lost is fetched again);
 * - daemon mode: interval windows tile (over skipped runs too), aligned
 *   ones sit on the grid; ${last_success} and the window survive a
 *   restart;
 * - a value that cannot go into a header: a config error (environment) or
 *   an error record of kind "template" (credential), nothing sent.
 *
 * A failed check kills fetchd and the server and removes the temp dir
 * first (ensure()): in Check's fork mode a failing test exits at once,
 * without the teardown. */
#define _GNU_SOURCE
#include <cJSON.h>
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static pid_t httpd_pid;
static int port;
static char *dir;
static pid_t child; /* a fetchd in daemon mode, 0 when none runs */
static char *cfg_path, *out_path, *err_path, *state_dir;
static char *fail_msg;

/* environment variables a test may set (unset again for CK_FORK=no) */
static const char *const test_vars[] = {
    "TT_URL", "TT_JSON",      "TT_FORM",
    "TT_HDR", "TT_SECRET",    "TT_HOST",
    "TT_NL",  "TT_UNSET_VAR", "CREDENTIALS_DIRECTORY",
    "TZ",     NULL,
};

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
    for (size_t i = 0; test_vars[i]; i++) {
        unsetenv(test_vars[i]);
    }
    tzset();
    free(cfg_path);
    free(out_path);
    free(err_path);
    free(state_dir);
    cfg_path = out_path = err_path = state_dir = NULL;
}

/* ck_assert_msg that first stops fetchd and the server and removes the
 * temp dir. The message is formatted before the cleanup (and cut: longer
 * ones make Check itself fail). */
#define ensure(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            free(fail_msg);                                                                        \
            fail_msg = tu_fmt(__VA_ARGS__);                                                        \
            if (strlen(fail_msg) > 3000) {                                                         \
                strcpy(fail_msg + 2980, " ...(truncated)");                                        \
            }                                                                                      \
            cleanup();                                                                             \
            ck_abort_msg("%s: %s", #cond, fail_msg);                                               \
        }                                                                                          \
    } while (0)

static void setup(void)
{
    unsetenv("STATE_DIRECTORY"); /* only --state-dir where a test says so */
    for (size_t i = 0; test_vars[i]; i++) {
        unsetenv(test_vars[i]);
    }
    dir = tu_tmpdir();
    httpd_pid = tu_httpd_start(&port);
    cfg_path = tu_fmt("%s/fetchd.json", dir);
    out_path = tu_fmt("%s/out", dir);
    err_path = tu_fmt("%s/err", dir);
    state_dir = tu_fmt("%s/state", dir);
    ck_assert_int_eq(mkdir(state_dir, 0700), 0);
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

static const char *req_target(const cJSON *req)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, "target");
    return cJSON_IsString(t) ? t->valuestring : "";
}

/* Whether a request target's path is exactly path. */
static bool path_is(const char *target, const char *path)
{
    size_t n = strlen(path);
    return strncmp(target, path, n) == 0 && (target[n] == '?' || target[n] == '\0');
}

/* The targets of the requests for path, oldest first, each followed by
 * "\n" (malloc'd). */
static char *targets_of(const char *path)
{
    cJSON *root;
    const cJSON *log = server_log(&root);
    char *s = strdup("");
    const cJSON *r;
    cJSON_ArrayForEach(r, log)
    {
        if (path_is(req_target(r), path)) {
            char *n = tu_fmt("%s%s\n", s, req_target(r));
            free(s);
            s = n;
        }
    }
    cJSON_Delete(root);
    return s;
}

/* The first request for path in the log (a detached copy the caller
 * deletes), or NULL. */
static cJSON *first_req(const char *path)
{
    cJSON *root;
    const cJSON *log = server_log(&root);
    const cJSON *r;
    cJSON *found = NULL;
    cJSON_ArrayForEach(r, log)
    {
        if (path_is(req_target(r), path)) {
            found = cJSON_Duplicate(r, true);
            break;
        }
    }
    cJSON_Delete(root);
    return found;
}

/* ---- JSON helpers ------------------------------------------------------- */

static const cJSON *jget(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = jget(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static long jnum(const cJSON *o, const char *k)
{
    const cJSON *v = jget(o, k);
    return cJSON_IsNumber(v) ? (long)v->valuedouble : LONG_MIN;
}

static bool streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* A header of an echo document or a logged request (name compared
 * case-insensitively), or NULL. */
static const char *hdr(const cJSON *o, const char *name)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, jget(o, "headers"))
    {
        if (v->string && strcasecmp(v->string, name) == 0 && cJSON_IsString(v)) {
            return v->valuestring;
        }
    }
    return NULL;
}

/* The raw value of query parameter name in query (malloc'd), or NULL. */
static char *qparam(const char *query, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > n && strncmp(p, name, n) == 0 && p[n] == '=') {
            return strndup(p + n + 1, len - n - 1);
        }
        p = amp ? amp + 1 : p + len;
    }
    return NULL;
}

/* A query parameter as a number (all digits), or -1. */
static long long qnum(const char *query, const char *name)
{
    char *v = qparam(query, name);
    long long r = -1;
    if (v && *v && strspn(v, "0123456789") == strlen(v)) {
        r = strtoll(v, NULL, 10);
    }
    free(v);
    return r;
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
        ensure(jstr(j, "endpoint"), "record without an endpoint: %.*s", (int)(nl - p), p);
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

/* Record k (0-based, in output order) of endpoint name, or NULL. */
static const cJSON *rec_nth(const struct recs *r, const char *name, size_t k)
{
    for (size_t i = 0; i < r->n; i++) {
        if (streq(jstr(r->v[i], "endpoint"), name) && k-- == 0) {
            return r->v[i];
        }
    }
    return NULL;
}

static size_t recs_count(const struct recs *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) {
        n += streq(jstr(r->v[i], "endpoint"), name);
    }
    return n;
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

/* The ids of the records of endpoint name ("1,2,"), malloc'd. */
static char *ids_of(const struct recs *r, const char *name)
{
    char *s = strdup("");
    for (size_t i = 0; i < r->n; i++) {
        if (streq(jstr(r->v[i], "endpoint"), name)) {
            long id = jnum(jget(r->v[i], "data"), "id");
            char *n = tu_fmt("%s%ld,", s, id);
            free(s);
            s = n;
        }
    }
    return s;
}

/* A record's fetched_at ("2026-01-01T00:00:00.123Z") in ms since the
 * epoch, or -1. */
static long long fetched_at_ms(const cJSON *rec)
{
    const char *s = jstr(rec, "fetched_at");
    struct tm tm = {0};
    int ms = 0;
    const char *rest = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!rest || sscanf(rest, ".%3dZ", &ms) != 1) {
        return -1;
    }
    return (long long)timegm(&tm) * 1000 + ms;
}

/* ---- running fetchd ----------------------------------------------------- */

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

/* Starts fetchd in daemon mode with the config and extra args
 * (NULL-terminated), stdout to out_path and stderr to err_path. */
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

/* SIGTERM, then waits; returns the exit status (like tu_wait). */
static int daemon_stop(void)
{
    ensure(child > 0, "fetchd is not running");
    ensure(kill(child, SIGTERM) == 0, "kill: %s", strerror(errno));
    int st = tu_wait(child, 30 * tu_slack());
    child = 0;
    return st;
}

/* Reads a whole file (malloc'd, "" when missing). */
static char *slurp(const char *path)
{
    char *s = tu_read(path);
    return s ? s : strdup("");
}

/* Lines in path that contain needle. */
static size_t lines_in(const char *path, const char *needle)
{
    char *s = slurp(path);
    size_t n = 0;
    for (const char *p = s; *p;) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            break; /* a partial line is not counted */
        }
        char *line = strndup(p, (size_t)(nl - p));
        n += strstr(line, needle) != NULL;
        free(line);
        p = nl + 1;
    }
    free(s);
    return n;
}

/* Waits until path has at least n whole lines containing needle. */
static bool wait_lines(const char *path, const char *needle, size_t n, double timeout_s)
{
    double end = tu_now() + timeout_s;
    while (lines_in(path, needle) < n) {
        if (tu_now() > end) {
            return false;
        }
        usleep(20000);
    }
    return true;
}

/* STATE_DIR/checkpoints.json parsed (the caller deletes it), or NULL when
 * the file does not exist. */
static cJSON *ckpt_file(void)
{
    char *p = tu_fmt("%s/checkpoints.json", state_dir);
    char *text = tu_read(p);
    free(p);
    if (!text) {
        return NULL;
    }
    cJSON *j = cJSON_Parse(text);
    ensure(j, "checkpoints.json is not JSON: %s", text);
    free(text);
    return j;
}

/* The "value_json" saved for an endpoint (malloc'd), or NULL (no file, no
 * entry, no value). */
static char *ckpt_value(const char *ep)
{
    cJSON *j = ckpt_file();
    const char *v = jstr(jget(jget(j, "endpoints"), ep), "value_json");
    char *r = v ? strdup(v) : NULL;
    cJSON_Delete(j);
    return r;
}

/* ---- 1. what the placeholders turn into ---------------------------------- */

/* "2026-11-22T06:30:00" and its UTC offset as rfc3339 wants it ("Z" or
 * "+01:00") for t in zone (NULL: UTC), with ".mmm" when ms >= 0. */
static char *rfc3339(time_t t, int ms, const char *zone)
{
    struct tm tm;
    if (zone) {
        setenv("TZ", zone, 1);
        tzset();
        localtime_r(&t, &tm);
        unsetenv("TZ");
        tzset();
    } else {
        gmtime_r(&t, &tm);
    }
    char base[64], frac[8] = "", off[48] = "Z";
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    if (ms >= 0) {
        snprintf(frac, sizeof(frac), ".%03d", ms);
    }
    if (zone && tm.tm_gmtoff != 0) {
        long o = tm.tm_gmtoff;
        snprintf(off, sizeof(off), "%c%02ld:%02ld", o < 0 ? '-' : '+', labs(o) / 3600,
                 labs(o) % 3600 / 60);
    }
    return tu_fmt("%s%s%s", base, frac, off);
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static char *strftime_in(time_t t, const char *fmt, const char *zone)
{
    struct tm tm;
    if (zone) {
        setenv("TZ", zone, 1);
        tzset();
        localtime_r(&t, &tm);
        unsetenv("TZ");
        tzset();
    } else {
        gmtime_r(&t, &tm);
    }
    char buf[128];
    strftime(buf, sizeof(buf), fmt, &tm);
    return strdup(buf);
}
#pragma GCC diagnostic pop

START_TEST(test_values_once)
{
    setenv("TT_URL", "a b&c%d\xc3\xa9/~-._", 1);
    setenv("TT_JSON", "q\"b\\s\nt", 1);
    setenv("TT_FORM", "a b&c=d+\xc3\xa9", 1);
    setenv("TT_HDR", "hello world; a=b", 1);
    char *url_u = tu_fmt("http://127.0.0.1:%d/u?body=echo&q=${env:TT_URL}&lit=$${x}"
                         "&s=${interval_start:unix_ms}&e=${interval_end:unix_ms}",
                         port);
    char *cfg = tu_fmt(
        "{\"endpoints\": {\n"
        "\"u\": {\"url\": \"%s\", \"interval\": \"30s\",\n"
        "  \"headers\": {\"X-Env\": \"v=${env:TT_HDR}\", \"X-T\": \"${now:unix}\",\n"
        "    \"X-TM\": \"${now:unix_ms}\", \"X-R\": \"${now}\", \"X-R3\": \"${now:rfc3339}\",\n"
        "    \"X-RM\": \"${now:rfc3339_ms}\", \"X-F\": \"${now:%%Y-%%m-%%d %%H:%%M:%%S}\"}},\n"
        "\"j\": {\"url\": \"http://127.0.0.1:%d/j?body=echo\", \"method\": \"POST\",\n"
        "  \"body\": {\"a\": \"${env:TT_JSON}\", \"lit\": \"$${x}\", \"n\": 1}},\n"
        "\"form\": {\"url\": \"http://127.0.0.1:%d/form?body=echo\", \"method\": \"POST\",\n"
        "  \"headers\": {\"Content-Type\": \"application/x-www-form-urlencoded\"},\n"
        "  \"body\": \"q=${env:TT_FORM}&x=1\"},\n"
        "\"berlin\": {\"url\": \"http://127.0.0.1:%d/berlin?body=echo\", \"timezone\": "
        "\"Europe/Berlin\",\n"
        "  \"headers\": {\"X-T\": \"${now:unix}\", \"X-R\": \"${now}\", \"X-RM\": "
        "\"${now:rfc3339_ms}\", \"X-TM\": \"${now:unix_ms}\", \"X-F\": \"${now:%%H:%%M %%z}\"}}\n"
        "}}\n",
        url_u, port, port, port);
    struct tu_result res;
    run_once(&res, cfg, NULL);
    free(cfg);
    ensure(res.status == 0, "exit %d: %s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    ensure(r.n == 4, "%zu records: %s", r.n, res.out);

    /* URL: percent-encoding of everything but unreserved bytes, $${ */
    const cJSON *u = rec_nth(&r, "u", 0);
    ensure(u && rec_ok(u), "u: %s", res.out);
    ensure(streq(jstr(u, "url"), url_u), "u: the record's url is not the configured one: %s",
           jstr(u, "url"));
    const cJSON *d = jget(u, "data");
    const char *q = jstr(d, "query");
    char *qv = qparam(q, "q"), *lit = qparam(q, "lit");
    ensure(streq(qv, "a%20b%26c%25d%C3%A9%2F~-._"), "q=%s (query %s)", qv, q);
    ensure(streq(lit, "${x}"), "lit=%s (query %s)", lit, q);
    free(qv);
    free(lit);
    ensure(streq(hdr(d, "X-Env"), "v=hello world; a=b"), "X-Env: %s", hdr(d, "X-Env"));
    /* the times: one "now" in every format; interval_end is now in --once */
    long long t = strtoll(hdr(d, "X-T") ? hdr(d, "X-T") : "-1", NULL, 10);
    long long tm = strtoll(hdr(d, "X-TM") ? hdr(d, "X-TM") : "-1", NULL, 10);
    ensure(t > 1000000000 && tm / 1000 == t, "X-T %s X-TM %s", hdr(d, "X-T"), hdr(d, "X-TM"));
    long long fa = fetched_at_ms(u);
    ensure(fa > 0 && llabs(fa - tm) < 5000, "now %lld ms, fetched_at %s", tm,
           jstr(u, "fetched_at"));
    char *want = rfc3339((time_t)t, -1, NULL);
    ensure(streq(hdr(d, "X-R"), want) && streq(hdr(d, "X-R3"), want), "X-R %s X-R3 %s, want %s",
           hdr(d, "X-R"), hdr(d, "X-R3"), want);
    free(want);
    want = rfc3339((time_t)t, (int)(tm % 1000), NULL);
    ensure(streq(hdr(d, "X-RM"), want), "X-RM %s, want %s", hdr(d, "X-RM"), want);
    free(want);
    want = strftime_in((time_t)t, "%Y-%m-%d %H:%M:%S", NULL);
    ensure(streq(hdr(d, "X-F"), want), "X-F %s, want %s", hdr(d, "X-F"), want);
    free(want);
    long long s = qnum(q, "s"), e = qnum(q, "e");
    ensure(e == tm && s == e - 30000, "interval_start %lld, interval_end %lld, now %lld (%s)", s, e,
           tm, q);

    /* JSON body: JSON string escaping */
    const cJSON *j = rec_nth(&r, "j", 0);
    ensure(j && rec_ok(j), "j: %s", res.out);
    const char *jb = jstr(jget(j, "data"), "body");
    ensure(streq(jb, "{\"a\":\"q\\\"b\\\\s\\nt\",\"lit\":\"${x}\",\"n\":1}"), "j: body %s", jb);
    ensure(streq(hdr(jget(j, "data"), "Content-Type"), "application/json"), "j: Content-Type %s",
           hdr(jget(j, "data"), "Content-Type"));
    cJSON *parsed = cJSON_Parse(jb);
    ensure(streq(jstr(parsed, "a"), "q\"b\\s\nt"), "j: the value does not round-trip: %s", jb);
    cJSON_Delete(parsed);

    /* form body: percent-encoding, space as + */
    const cJSON *f = rec_nth(&r, "form", 0);
    ensure(f && rec_ok(f), "form: %s", res.out);
    ensure(streq(jstr(jget(f, "data"), "body"), "q=a+b%26c%3Dd%2B%C3%A9&x=1"), "form: body %s",
           jstr(jget(f, "data"), "body"));

    /* timezone: Europe/Berlin's offset on that date */
    const cJSON *b = rec_nth(&r, "berlin", 0);
    ensure(b && rec_ok(b), "berlin: %s", res.out);
    d = jget(b, "data");
    t = strtoll(hdr(d, "X-T") ? hdr(d, "X-T") : "-1", NULL, 10);
    tm = strtoll(hdr(d, "X-TM") ? hdr(d, "X-TM") : "-1", NULL, 10);
    ensure(t > 1000000000 && tm / 1000 == t, "berlin: X-T %s X-TM %s", hdr(d, "X-T"),
           hdr(d, "X-TM"));
    want = rfc3339((time_t)t, -1, "Europe/Berlin");
    size_t wl = strlen(want);
    ensure(wl > 6 && (strcmp(want + wl - 6, "+01:00") == 0 || strcmp(want + wl - 6, "+02:00") == 0),
           "the C library's Europe/Berlin: %s", want);
    ensure(streq(hdr(d, "X-R"), want), "berlin: X-R %s, want %s", hdr(d, "X-R"), want);
    free(want);
    want = rfc3339((time_t)t, (int)(tm % 1000), "Europe/Berlin");
    ensure(streq(hdr(d, "X-RM"), want), "berlin: X-RM %s, want %s", hdr(d, "X-RM"), want);
    free(want);
    want = strftime_in((time_t)t, "%H:%M %z", "Europe/Berlin");
    ensure(streq(hdr(d, "X-F"), want), "berlin: X-F %s, want %s", hdr(d, "X-F"), want);
    free(want);

    recs_free(&r);
    tu_result_done(&res);
    free(url_u);
}
END_TEST

/* ---- 2. no value in records or the log ------------------------------------ */

START_TEST(test_no_leak)
{
    static const char cred[] = "s3cr3t-cred-v4lue";
    static const char envv[] = "env-s3cr3t-v4lue";
    char *cdir = tu_fmt("%s/creds", dir);
    ensure(mkdir(cdir, 0700) == 0, "mkdir: %s", strerror(errno));
    free(tu_write(cdir, "tok", cred));
    setenv("CREDENTIALS_DIRECTORY", cdir, 1);
    setenv("TT_SECRET", envv, 1);
    char *url_k = tu_fmt("http://127.0.0.1:%d/k?c=${credential:tok}&e=${env:TT_SECRET}", port);
    char *url_b =
        tu_fmt("http://127.0.0.1:%d/b?status=503&c=${credential:tok}&e=${env:TT_SECRET}", port);
    char *url_i = tu_fmt("http://127.0.0.1:%d/i?body=invalid&c=${credential:tok}", port);
    char *url_c = tu_fmt("http://127.0.0.1:1/c?c=${credential:tok}&e=${env:TT_SECRET}");
    char *cfg =
        tu_fmt("{\"endpoints\": {\n"
               "\"k\": {\"url\": \"%s\", \"method\": \"POST\",\n"
               "  \"headers\": {\"Authorization\": \"Bearer ${credential:tok}\", \"X-E\": "
               "\"${env:TT_SECRET}\",\n"
               "    \"Content-Type\": \"text/plain\"}, \"body\": \"t=${credential:tok}\"},\n"
               "\"b\": {\"url\": \"%s\", \"retry\": {\"attempts\": 2, \"backoff\": \"10ms\"}},\n"
               "\"i\": {\"url\": \"%s\"},\n"
               "\"c\": {\"url\": \"%s\"}\n"
               "}}\n",
               url_k, url_b, url_i, url_c);
    struct tu_result res;
    run_once(&res, cfg, "--log-level", "debug", NULL);
    free(cfg);
    ensure(res.status == 1, "exit %d: %s", res.status, res.err);
    ensure(!strstr(res.out, cred) && !strstr(res.out, envv), "a value in the records: %s", res.out);
    ensure(!strstr(res.err, cred) && !strstr(res.err, envv), "a value in the log: %s", res.err);
    struct recs r;
    recs_parse(&r, res.out);
    ensure(r.n == 4, "%zu records: %s", r.n, res.out);
    static const char *const names[] = {"k", "b", "i", "c"};
    const char *urls[] = {url_k, url_b, url_i, url_c};
    for (size_t i = 0; i < 4; i++) {
        const cJSON *rec = rec_nth(&r, names[i], 0);
        ensure(rec && streq(jstr(rec, "url"), urls[i]), "%s: url %s, want %s", names[i],
               rec ? jstr(rec, "url") : "(no record)", urls[i]);
    }
    ensure(rec_ok(rec_nth(&r, "k", 0)), "k: %s", res.out);
    ensure(streq(kind_of(rec_nth(&r, "b", 0)), "http_status") &&
               jnum(rec_nth(&r, "b", 0), "attempts") == 2,
           "b: %s", res.out);
    ensure(streq(kind_of(rec_nth(&r, "i", 0)), "invalid_json"), "i: %s", res.out);
    ensure(streq(kind_of(rec_nth(&r, "c", 0)), "connect"), "c: %s", res.out);
    recs_free(&r);

    /* the values did go out */
    cJSON *k = first_req("/k");
    char *want = tu_fmt("/k?c=%s&e=%s", cred, envv);
    ensure(k && streq(req_target(k), want), "/k: target %s, want %s", k ? req_target(k) : "-",
           want);
    free(want);
    want = tu_fmt("Bearer %s", cred);
    ensure(streq(hdr(k, "Authorization"), want) && streq(hdr(k, "X-E"), envv),
           "/k: Authorization %s, X-E %s", hdr(k, "Authorization"), hdr(k, "X-E"));
    free(want);
    want = tu_fmt("t=%s", cred);
    ensure(streq(jstr(k, "body"), want), "/k: body %s", jstr(k, "body"));
    free(want);
    cJSON_Delete(k);
    char *tb = targets_of("/b");
    want = tu_fmt("/b?status=503&c=%s&e=%s\n/b?status=503&c=%s&e=%s\n", cred, envv, cred, envv);
    ensure(streq(tb, want), "/b: %s", tb);
    free(want);
    free(tb);

    tu_result_done(&res);
    free(url_k);
    free(url_b);
    free(url_i);
    free(url_c);
    free(cdir);
}
END_TEST

/* ---- 3. configuration errors ---------------------------------------------- */

struct cfg_err {
    const char *url_tail; /* after http://127.0.0.1:PORT (NULL: url_full) */
    const char *url_full; /* a whole URL */
    const char *extra;    /* line 5: another key of the endpoint */
    const char *where;    /* "fetchd.json:LINE:" prefix... */
    const char *path;     /* ...then the key path */
    const char *what;     /* the problem */
    const char *what2;    /* and more of it (or NULL) */
};

static const struct cfg_err cfg_errs[] = {
    {"/x?t=${nwo}", NULL, "\"interval\": \"1m\"",
     "fetchd.json:4:", "endpoints.a.url: ", "unknown placeholder \"${nwo}\"", NULL},
    {"/x?t=${now", NULL, "\"interval\": \"1m\"",
     "fetchd.json:4:", "endpoints.a.url: ", "unterminated placeholder \"${now\"", NULL},
    {"/x?t=${env:TT_UNSET_VAR}", NULL, "\"interval\": \"1m\"",
     "fetchd.json:4:", "endpoints.a.url: ", "environment variable TT_UNSET_VAR is not set", NULL},
    {NULL, "http://${env:TT_HOST}/x", "\"interval\": \"1m\"", "fetchd.json:4:", "endpoints.a.url: ",
     "a placeholder in the scheme, host or port", "path and the query"},
    {"/x?since=${checkpoint}", NULL, "\"interval\": \"1m\"", "fetchd.json:3:", "endpoints.a: ",
     "${checkpoint} is used but endpoint \"a\" has no \"checkpoint\"", NULL},
    {"/x", NULL, "\"checkpoint\": \"/id\"",
     "fetchd.json:5:", "endpoints.a.checkpoint: ", "keeps a checkpoint but no ${checkpoint}", NULL},
    {"/x", NULL, "\"timezone\": \"Europe/Berlin\"", "fetchd.json:5:", "endpoints.a.timezone: ",
     "\"timezone\" applies to \"schedule\" and to the time placeholders", NULL},
    {"/x?s=${checkpoint}", NULL, "\"checkpoint\": {\"pointer\": \"/id\", \"keep\": \"first\"}",
     "fetchd.json:5:", "endpoints.a.checkpoint.keep: ", "expected \"max\"", "or \"last\""},
    /* one error, not also its knock-on effect on the checks across keys */
    {"/x?s=${checkpoint}", NULL, "\"checkpoint\": \"id\"", "fetchd.json:5:",
     "endpoints.a.checkpoint: ", "invalid JSON Pointer \"id\"", NULL},
    {"/x?t=${nwo}", NULL, "\"checkpoint\": \"/id\"", "fetchd.json:4:", "endpoints.a.url: ",
     "unknown placeholder \"${nwo}\"", NULL},
};

START_TEST(test_config_errors)
{
    const struct cfg_err *c = &cfg_errs[_i];
    setenv("TT_HOST", "127.0.0.1", 1);
    unsetenv("TT_UNSET_VAR");
    char *url =
        c->url_tail ? tu_fmt("http://127.0.0.1:%d%s", port, c->url_tail) : strdup(c->url_full);
    char *cfg = tu_fmt("{\n"
                       "  \"endpoints\": {\n"
                       "    \"a\": {\n"
                       "      \"url\": \"%s\",\n"
                       "      %s\n"
                       "    }\n"
                       "  }\n"
                       "}\n",
                       url, c->extra);
    free(url);
    struct tu_result res;
    run_once(&res, cfg, NULL);
    free(cfg);
    ensure(res.status == 78, "case %d: exit %d: %s", _i, res.status, res.err);
    ensure(streq(res.out, ""), "case %d: output: %s", _i, res.out);
    /* one line names the file, the line, the key path and the problem */
    bool found = false;
    for (const char *p = res.err; *p && !found;) {
        const char *nl = strchr(p, '\n');
        char *line = strndup(p, nl ? (size_t)(nl - p) : strlen(p));
        const char *w = strstr(line, c->where);
        const char *k = w ? strchr(w + strlen(c->where), ' ') : NULL; /* after the column */
        found = w && k && strncmp(k + 1, c->path, strlen(c->path)) == 0 && strstr(k, c->what) &&
                (!c->what2 || strstr(k, c->what2));
        free(line);
        p = nl ? nl + 1 : p + strlen(p);
    }
    ensure(found, "case %d: want a line with %s<col>: %s...%s: %s", _i, c->where, c->path, c->what,
           res.err);
    /* and no knock-on errors of the checks across keys */
    size_t n_err = 0;
    for (const char *p = res.err; (p = strstr(p, "fetchd.json:")); p++) {
        n_err++;
    }
    ensure(n_err == 1, "case %d: %zu errors, want 1: %s", _i, n_err, res.err);
    ensure(strstr(res.err, "configuration invalid, nothing was run"), "case %d: %s", _i, res.err);
    ensure(tu_httpd_requests(port) == 0, "case %d: the server got %ld requests", _i,
           tu_httpd_requests(port));
    tu_result_done(&res);
}
END_TEST

/* ---- 4. checkpoints across processes -------------------------------------- */

START_TEST(test_checkpoint_restart)
{
    char *cfg = tu_fmt("{\"endpoints\": {\"f\": {\"url\": "
                       "\"http://127.0.0.1:%d/f?body=feed&since=${checkpoint}&batch=2&upto=5\","
                       " \"checkpoint\": \"/id\", \"split\": true}}}",
                       port);
    static const char *const want_ids[] = {"1,2,", "3,4,", "5,", ""};
    static const char *const want_ckpt[] = {"2", "4", "5", "5"};
    char *want_targets = strdup("");
    long long prev_ls = 0;
    for (int run = 0; run < 4; run++) {
        struct tu_result res;
        run_once(&res, cfg, "--state-dir", state_dir, NULL);
        ensure(res.status == 0, "run %d: exit %d: %s", run + 1, res.status, res.err);
        struct recs r;
        recs_parse(&r, res.out);
        char *ids = ids_of(&r, "f");
        ensure(streq(ids, want_ids[run]) && r.n == recs_count(&r, "f"), "run %d: ids %s: %s",
               run + 1, ids, res.out);
        free(ids);
        recs_free(&r);
        tu_result_done(&res);

        /* what was asked for: the committed checkpoint of the run before */
        static const char *const since[] = {"", "2", "4", "5"};
        char *n = tu_fmt("%s/f?body=feed&since=%s&batch=2&upto=5\n", want_targets, since[run]);
        free(want_targets);
        want_targets = n;
        char *got = targets_of("/f");
        ensure(streq(got, want_targets), "run %d: requests\n%swant\n%s", run + 1, got,
               want_targets);
        free(got);

        cJSON *j = ckpt_file();
        const cJSON *en = jget(jget(j, "endpoints"), "f");
        ensure(streq(jstr(en, "pointer"), "/id") && streq(jstr(en, "value_json"), want_ckpt[run]),
               "run %d: checkpoints.json: pointer %s value_json %s, want /id %s", run + 1,
               jstr(en, "pointer"), jstr(en, "value_json"), want_ckpt[run]);
        /* the last success moves on with every run, records or not */
        const cJSON *ls = jget(en, "last_success_us");
        ensure(cJSON_IsNumber(ls) && ls->valuedouble > (double)prev_ls, "run %d: last_success_us",
               run + 1);
        prev_ls = (long long)ls->valuedouble;
        cJSON_Delete(j);
    }
    free(want_targets);
    free(cfg);
}
END_TEST

/* keep "max" (numbers by value: 10 > 9) and "last" with a newest-first
 * feed. */
START_TEST(test_checkpoint_keep)
{
    char *cfg = tu_fmt(
        "{\"endpoints\": {"
        "\"fmax\": {\"url\": \"http://127.0.0.1:%d/max?body=feed&since=${checkpoint}&batch=10"
        "&upto=10&order=desc\", \"checkpoint\": {\"pointer\": \"/id\"}, \"split\": true},"
        "\"flast\": {\"url\": \"http://127.0.0.1:%d/last?body=feed&since=${checkpoint}&batch=10"
        "&upto=10&order=desc\", \"checkpoint\": {\"pointer\": \"/id\", \"keep\": \"last\"}, "
        "\"split\": true}}}",
        port, port);
    struct tu_result res;
    run_once(&res, cfg, "--state-dir", state_dir, NULL);
    ensure(res.status == 0, "run 1: exit %d: %s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    char *ids = ids_of(&r, "flast");
    ensure(streq(ids, "10,9,8,7,6,5,4,3,2,1,"), "run 1: flast ids %s", ids);
    free(ids);
    recs_free(&r);
    tu_result_done(&res);
    char *vmax = ckpt_value("fmax"), *vlast = ckpt_value("flast");
    ensure(streq(vmax, "10") && streq(vlast, "1"), "run 1: fmax %s (want 10), flast %s (want 1)",
           vmax, vlast);
    free(vmax);
    free(vlast);

    run_once(&res, cfg, "--state-dir", state_dir, NULL);
    ensure(res.status == 0, "run 2: exit %d: %s", res.status, res.err);
    recs_parse(&r, res.out);
    ensure(recs_count(&r, "fmax") == 0, "run 2: fmax got records: %s", res.out);
    ids = ids_of(&r, "flast");
    ensure(streq(ids, "10,9,8,7,6,5,4,3,2,"), "run 2: flast ids %s", ids);
    free(ids);
    recs_free(&r);
    tu_result_done(&res);
    char *tm = targets_of("/max"), *tl = targets_of("/last");
    ensure(streq(tm, "/max?body=feed&since=&batch=10&upto=10&order=desc\n"
                     "/max?body=feed&since=10&batch=10&upto=10&order=desc\n"),
           "fmax requests:\n%s", tm);
    ensure(streq(tl, "/last?body=feed&since=&batch=10&upto=10&order=desc\n"
                     "/last?body=feed&since=1&batch=10&upto=10&order=desc\n"),
           "flast requests:\n%s", tl);
    free(tm);
    free(tl);
    vmax = ckpt_value("fmax");
    vlast = ckpt_value("flast");
    ensure(streq(vmax, "10") && streq(vlast, "2"), "run 2: fmax %s (want 10), flast %s (want 2)",
           vmax, vlast);
    free(vmax);
    free(vlast);
    free(cfg);
}
END_TEST

/* ---- 5. no advance when a record is lost or the cycle failed -------------- */

START_TEST(test_checkpoint_sink_failure)
{
    const char *plugin = getenv("FETCHD_TEST_SINK");
    ensure(plugin && *plugin, "FETCHD_TEST_SINK is not set (run through meson test)");
    /* the test plugin in mode "reject" loses every record it gets */
    static const char *const mode[] = {"reject", "reject", "ok", "reject", "ok"};
    static const char *const since[] = {"", "", "", "2", "2"};
    static const char *const ids[] = {"1,2,", "1,2,", "1,2,", "3,4,", "3,4,"};
    static const char *const ckpt[] = {NULL, NULL, "2", "2", "4"};
    char *want_targets = strdup("");
    for (int run = 0; run < 5; run++) {
        char *cfg = tu_fmt("{\"sinks\": {\"m\": {\"type\": \"plugin\", \"path\": \"%s\","
                           " \"options\": {\"mode\": \"%s\"}}},"
                           " \"endpoints\": {\"f\": {\"url\": \"http://127.0.0.1:%d/f?body=feed"
                           "&since=${checkpoint}&batch=2&upto=5\", \"checkpoint\": \"/id\","
                           " \"split\": true, \"sinks\": [\"stdout\", \"m\"]}}}",
                           plugin, mode[run], port);
        struct tu_result res;
        run_once(&res, cfg, "--state-dir", state_dir, NULL);
        free(cfg);
        bool lossy = strcmp(mode[run], "reject") == 0;
        ensure(res.status == (lossy ? 74 : 0), "run %d (%s): exit %d: %s", run + 1, mode[run],
               res.status, res.err);
        struct recs r;
        recs_parse(&r, res.out);
        char *got = ids_of(&r, "f");
        ensure(streq(got, ids[run]), "run %d: stdout got ids %s, want %s", run + 1, got, ids[run]);
        free(got);
        recs_free(&r);
        tu_result_done(&res);
        char *n = tu_fmt("%s/f?body=feed&since=%s&batch=2&upto=5\n", want_targets, since[run]);
        free(want_targets);
        want_targets = n;
        got = targets_of("/f");
        ensure(streq(got, want_targets), "run %d: requests\n%swant\n%s", run + 1, got,
               want_targets);
        free(got);
        char *v = ckpt_value("f");
        ensure(ckpt[run] ? streq(v, ckpt[run]) : v == NULL, "run %d (%s): checkpoint %s, want %s",
               run + 1, mode[run], v ? v : "(none)", ckpt[run] ? ckpt[run] : "(none)");
        free(v);
    }
    free(want_targets);

    /* an error record in the cycle (line 2 of 4 is not JSON): the other
     * records went out, the checkpoint stays */
    char *sd2 = tu_fmt("%s/state2", dir);
    ensure(mkdir(sd2, 0700) == 0, "mkdir: %s", strerror(errno));
    for (int run = 0; run < 3; run++) {
        char *cfg = tu_fmt("{\"endpoints\": {\"n\": {\"url\": \"http://127.0.0.1:%d/n?ndjson=4"
                           "&ndjson_bad=%d&c=${checkpoint}\", \"format\": \"ndjson\","
                           " \"checkpoint\": \"/i\"}}}",
                           port, run == 0 ? 2 : 9);
        struct tu_result res;
        run_once(&res, cfg, "--state-dir", sd2, NULL);
        free(cfg);
        ensure(res.status == (run == 0 ? 1 : 0), "ndjson run %d: exit %d: %s", run + 1, res.status,
               res.err);
        struct recs r;
        recs_parse(&r, res.out);
        ensure(r.n == 4, "ndjson run %d: %zu records: %s", run + 1, r.n, res.out);
        if (run == 0) {
            ensure(streq(kind_of(r.v[2]), "invalid_json") && rec_ok(r.v[3]),
                   "ndjson run 1: want line 2 invalid_json: %s", res.out);
        }
        recs_free(&r);
        tu_result_done(&res);
        char *p = tu_fmt("%s/checkpoints.json", sd2);
        char *text = tu_read(p);
        free(p);
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        const char *v = jstr(jget(jget(j, "endpoints"), "n"), "value_json");
        ensure(run == 0 ? v == NULL : streq(v, "3"), "ndjson run %d: checkpoint %s (file %s)",
               run + 1, v ? v : "(none)", text ? text : "(none)");
        cJSON_Delete(j);
        free(text);
    }
    char *tn = targets_of("/n");
    ensure(streq(tn, "/n?ndjson=4&ndjson_bad=2&c=\n/n?ndjson=4&ndjson_bad=9&c=\n"
                     "/n?ndjson=4&ndjson_bad=9&c=3\n"),
           "ndjson requests:\n%s", tn);
    free(tn);
    free(sd2);

    /* the interval windows: a window a sink lost is fetched again */
    char *sd3 = tu_fmt("%s/state3", dir);
    ensure(mkdir(sd3, 0700) == 0, "mkdir: %s", strerror(errno));
    static const char *const wmode[] = {"ok", "reject", "ok", "ok"};
    long long ws[4], we[4];
    for (int run = 0; run < 4; run++) {
        char *cfg = tu_fmt("{\"sinks\": {\"m\": {\"type\": \"plugin\", \"path\": \"%s\","
                           " \"options\": {\"mode\": \"%s\"}}},"
                           " \"endpoints\": {\"w\": {\"url\": \"http://127.0.0.1:%d/w?body=echo"
                           "&s=${interval_start:unix_ms}&e=${interval_end:unix_ms}\","
                           " \"interval\": \"1h\", \"sinks\": [\"stdout\", \"m\"]}}}",
                           plugin, wmode[run], port);
        struct tu_result res;
        run_once(&res, cfg, "--state-dir", sd3, NULL);
        free(cfg);
        bool lossy = strcmp(wmode[run], "reject") == 0;
        ensure(res.status == (lossy ? 74 : 0), "window run %d (%s): exit %d: %s", run + 1,
               wmode[run], res.status, res.err);
        struct recs r;
        recs_parse(&r, res.out);
        ensure(r.n == 1 && rec_ok(r.v[0]), "window run %d: %s", run + 1, res.out);
        const char *q = jstr(jget(r.v[0], "data"), "query");
        ws[run] = qnum(q, "s");
        we[run] = qnum(q, "e");
        ensure(ws[run] > 0 && we[run] > ws[run], "window run %d: %s", run + 1, q);
        recs_free(&r);
        tu_result_done(&res);
    }
    ensure(we[0] - ws[0] == 3600000, "window run 1: %lld..%lld is not the interval", ws[0], we[0]);
    ensure(ws[1] == we[0], "window run 2 starts at %lld, run 1 ended at %lld", ws[1], we[0]);
    ensure(ws[2] == we[0],
           "window run 3 starts at %lld, not at the end %lld of the last delivered "
           "window (run 2's %lld..%lld was lost)",
           ws[2], we[0], ws[1], we[1]);
    ensure(ws[3] == we[2], "window run 4 starts at %lld, run 3 ended at %lld", ws[3], we[2]);
    free(sd3);
}
END_TEST

/* ---- 6. daemon mode: windows ----------------------------------------------- */

/* The (s, e) windows of the records of endpoint name in path, in order. */
static size_t windows_of(const char *path, const char *name, long long *s, long long *e, size_t max)
{
    char *text = slurp(path);
    /* a record being written at the stop is whole: the file sink writes
     * whole lines */
    struct recs r;
    recs_parse(&r, text);
    free(text);
    size_t n = 0;
    for (size_t i = 0; i < r.n && n < max; i++) {
        if (!streq(jstr(r.v[i], "endpoint"), name)) {
            continue;
        }
        ensure(rec_ok(r.v[i]), "%s: a failed record: %s", name,
               jstr(jget(r.v[i], "error"), "message"));
        const char *q = jstr(jget(r.v[i], "data"), "query");
        s[n] = qnum(q, "s");
        e[n] = qnum(q, "e");
        ensure(s[n] > 0 && e[n] > 0, "%s: query %s", name, q);
        n++;
    }
    recs_free(&r);
    return n;
}

/* The windows of an endpoint with interval 200 ms, in order: the first is
 * one interval; each later one starts where the one before ended and lasts
 * min_iv or more intervals. Under valgrind a run may start before the
 * previous one was delivered (committed): it starts at an earlier end then,
 * never later (duplicates, no gap), and the wall-clock reads may be late. */
static void check_windows(const char *name, const long long *s, const long long *e, size_t n,
                          size_t min_n, long long min_iv, bool aligned)
{
    bool slow = tu_slack() > 1;
    long long tol = slow ? 25 : 2;
    ensure(n >= min_n, "%s: %zu records", name, n);
    ensure(e[0] - s[0] == 200, "%s: first window %lld..%lld is not the interval", name, s[0], e[0]);
    for (size_t k = 0; k < n; k++) {
        ensure(!aligned || (e[k] % 200 == 0 && s[k] % 200 == 0),
               "%s: window %zu %lld..%lld is off the grid", name, k, s[k], e[k]);
        if (k == 0) {
            continue;
        }
        bool joins = false;
        for (size_t j = 0; j < k; j++) {
            joins = joins || s[k] == e[j];
        }
        ensure(slow ? joins && s[k] <= e[k - 1] : s[k] == e[k - 1],
               "%s: window %zu starts at %lld, window %zu ended at %lld", name, k, s[k], k - 1,
               e[k - 1]);
        long long len = e[k] - s[k];
        long long m = (len + 100) / 200;
        ensure(m >= min_iv && llabs(len - m * 200) <= tol, "%s: window %zu is %lld ms", name, k,
               len);
    }
}

START_TEST(test_daemon_windows)
{
    char *recs = tu_fmt("%s/records.jsonl", dir);
    char *cfg = tu_fmt(
        "{\"sinks\": {\"f\": {\"type\": \"file\", \"path\": \"%s\"}},"
        " \"defaults\": {\"sinks\": [\"f\"]},"
        " \"endpoints\": {"
        "\"w\": {\"url\": \"http://127.0.0.1:%d/w?body=echo&s=${interval_start:unix_ms}"
        "&e=${interval_end:unix_ms}\", \"interval\": \"200ms\"},"
        "\"a\": {\"url\": \"http://127.0.0.1:%d/a?body=echo&s=${interval_start:unix_ms}"
        "&e=${interval_end:unix_ms}\", \"interval\": \"200ms\", \"align\": true},"
        "\"slow\": {\"url\": \"http://127.0.0.1:%d/slow?body=echo&delay=300"
        "&s=${interval_start:unix_ms}&e=${interval_end:unix_ms}\", \"interval\": \"200ms\"}}}",
        recs, port, port, port);
    spawn_fetchd(cfg, NULL);
    free(cfg);
    double wait = 15 * tu_slack();
    bool ok = wait_lines(recs, "\"endpoint\":\"w\"", 4, wait) &&
              wait_lines(recs, "\"endpoint\":\"a\"", 4, wait) &&
              wait_lines(recs, "\"endpoint\":\"slow\"", 3, wait);
    int st = daemon_stop();
    char *err = slurp(err_path);
    ensure(ok, "fewer than 4 records each after %.0f s: %s", wait, err);
    ensure(st == 0, "exit %d: %s", st, err);
    free(err);

    long long s[64], e[64];
    size_t n = windows_of(recs, "w", s, e, 64);
    check_windows("w", s, e, n, 4, 1, false);
    n = windows_of(recs, "a", s, e, 64);
    check_windows("a", s, e, n, 4, 1, true);
    /* each fetch takes 300 ms: the run in between is skipped, and the next
     * window starts where the last fetched one ended (two intervals) */
    n = windows_of(recs, "slow", s, e, 64);
    check_windows("slow", s, e, n, 3, 2, false);
    free(recs);
}
END_TEST

/* ---- 7. ${last_success} across a restart ---------------------------------- */

struct ls_rec {
    long long l, s, e, n;
};

static size_t ls_records(struct ls_rec *v, size_t max)
{
    char *text = slurp(out_path);
    struct recs r;
    recs_parse(&r, text);
    free(text);
    size_t n = 0;
    for (size_t i = 0; i < r.n && n < max; i++) {
        ensure(rec_ok(r.v[i]), "a failed record: %s", jstr(jget(r.v[i], "error"), "message"));
        const char *q = jstr(jget(r.v[i], "data"), "query");
        v[n].l = qnum(q, "l");
        v[n].s = qnum(q, "s");
        v[n].e = qnum(q, "e");
        v[n].n = qnum(q, "n");
        ensure(v[n].l > 0 && v[n].s > 0 && v[n].e > 0 && v[n].n > 0, "query %s", q);
        n++;
    }
    recs_free(&r);
    return n;
}

START_TEST(test_last_success_restart)
{
    char *cfg = tu_fmt("{\"endpoints\": {\"ls\": {\"url\": \"http://127.0.0.1:%d/ls?body=echo"
                       "&l=${last_success:unix_ms}&s=${interval_start:unix_ms}"
                       "&e=${interval_end:unix_ms}&n=${now:unix_ms}\", \"interval\": \"200ms\"}}}",
                       port);
    double wait = 15 * tu_slack();
    spawn_fetchd(cfg, "--state-dir", state_dir, NULL);
    bool ok = wait_lines(out_path, "\"endpoint\":\"ls\"", 3, wait);
    int st = daemon_stop();
    char *err = slurp(err_path);
    ensure(ok && st == 0, "first run: %s, exit %d: %s", ok ? "records" : "no records", st, err);
    free(err);
    struct ls_rec v[64];
    size_t n = ls_records(v, 64);
    ensure(n >= 3, "%zu records", n);
    /* no success yet: interval_start; then a success of this process. (The
     * start fetchd keeps as the last success is its own read of the clock,
     * a little before the cycle's ${now}: tol) */
    long long tol = tu_slack() > 1 ? 50 : 2;
    ensure(v[0].l == v[0].s, "first cycle: last_success %lld, interval_start %lld", v[0].l, v[0].s);
    for (size_t k = 1; k < n; k++) {
        bool earlier = false;
        for (size_t j = 0; j < k; j++) {
            earlier = earlier || (v[k].l <= v[j].n && v[j].n - v[k].l <= tol);
        }
        ensure(earlier && v[k].l >= v[k - 1].l && v[k].l > v[0].s,
               "cycle %zu: last_success %lld is not the start of an earlier cycle", k, v[k].l);
    }
    cJSON *j = ckpt_file();
    const cJSON *ls = jget(jget(jget(j, "endpoints"), "ls"), "last_success_us");
    const cJSON *we = jget(jget(jget(j, "endpoints"), "ls"), "window_end_us");
    ensure(cJSON_IsNumber(ls) && cJSON_IsNumber(we),
           "checkpoints.json has no last_success_us / window_end_us for ls");
    long long saved_ms = (long long)(ls->valuedouble / 1000);
    long long saved_end = (long long)(we->valuedouble / 1000);
    cJSON_Delete(j);
    /* the last cycle succeeded and was saved at exit */
    ensure(saved_ms <= v[n - 1].n && v[n - 1].n - saved_ms <= tol && saved_end == v[n - 1].e,
           "saved last success %lld ms, window end %lld; the last cycle started %lld, its window "
           "ended %lld",
           saved_ms, saved_end, v[n - 1].n, v[n - 1].e);

    /* a new process: its first request carries the saved time (the old
     * output goes first: a signal before the exec would hit the copy of
     * this process) */
    ensure(unlink(out_path) == 0, "unlink: %s", strerror(errno));
    usleep(300000); /* more than an interval: a window joins the saved one */
    spawn_fetchd(cfg, "--state-dir", state_dir, NULL);
    ok = wait_lines(out_path, "\"endpoint\":\"ls\"", 1, wait);
    st = daemon_stop();
    err = slurp(err_path);
    ensure(ok && st == 0, "second run: %s, exit %d: %s", ok ? "records" : "no records", st, err);
    free(err);
    n = ls_records(v, 64);
    ensure(n >= 1, "second run: no record");
    ensure(v[0].l == saved_ms, "second run: first last_success %lld, want the saved %lld", v[0].l,
           saved_ms);
    /* and the window starts where the saved one ended */
    ensure(v[0].s == saved_end && v[0].e - v[0].s > 300,
           "second run: first window %lld..%lld, want it to start at the saved end %lld", v[0].s,
           v[0].e, saved_end);
    free(cfg);
}
END_TEST

/* ---- 8. a line break into a header ---------------------------------------- */

START_TEST(test_header_line_break)
{
    /* an environment variable is read when the configuration loads: its
     * line break is a configuration error */
    setenv("TT_NL", "line1\nline2", 1);
    char *cfg =
        tu_fmt("{\n\"endpoints\": {\n\"h\": {\"url\": \"http://127.0.0.1:%d/h?body=echo\",\n"
               "  \"headers\": {\"X-A\": \"${env:TT_NL}\"}}}}\n",
               port);
    struct tu_result res;
    run_once(&res, cfg, NULL);
    free(cfg);
    ensure(res.status == 78, "env: exit %d: %s", res.status, res.err);
    ensure(strstr(res.err, "fetchd.json:4:") &&
               strstr(res.err, "endpoints.h.headers: header X-A: ") &&
               strstr(res.err, "line break"),
           "env: %s", res.err);
    ensure(!strstr(res.err, "line1") && streq(res.out, ""), "env: %s%s", res.out, res.err);
    ensure(tu_httpd_requests(port) == 0, "env: the server got a request");
    tu_result_done(&res);

    /* a credential is read for every cycle: an error record of kind
     * "template", exit 1, and nothing sent */
    char *cdir = tu_fmt("%s/creds", dir);
    ensure(mkdir(cdir, 0700) == 0, "mkdir: %s", strerror(errno));
    free(tu_write(cdir, "nl", "secret1\nsecret2"));
    setenv("CREDENTIALS_DIRECTORY", cdir, 1);
    char *url = tu_fmt("http://127.0.0.1:%d/h?body=echo", port);
    cfg = tu_fmt("{\"endpoints\": {\"h\": {\"url\": \"%s\","
                 " \"headers\": {\"X-A\": \"Bearer ${credential:nl}\"}}}}",
                 url);
    run_once(&res, cfg, "--log-level", "debug", NULL);
    free(cfg);
    ensure(res.status == 1, "credential: exit %d: %s", res.status, res.err);
    struct recs r;
    recs_parse(&r, res.out);
    ensure(r.n == 1 && !rec_ok(r.v[0]) && streq(kind_of(r.v[0]), "template") &&
               streq(jstr(r.v[0], "url"), url),
           "credential: %s", res.out);
    recs_free(&r);
    ensure(!strstr(res.out, "secret1") && !strstr(res.err, "secret1") &&
               !strstr(res.out, "secret2") && !strstr(res.err, "secret2"),
           "credential: the value leaked: %s%s", res.out, res.err);
    ensure(strstr(res.err, "h: template"), "credential: %s", res.err);
    ensure(tu_httpd_requests(port) == 0, "credential: the server got a request");
    tu_result_done(&res);
    free(url);
    free(cdir);
}
END_TEST

static Suite *templates_suite(void)
{
    Suite *s = suite_create("templates");
    TCase *tc = tcase_create("render");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_values_once);
    tcase_add_test(tc, test_no_leak);
    tcase_add_loop_test(tc, test_config_errors, 0, (int)(sizeof(cfg_errs) / sizeof(cfg_errs[0])));
    tcase_add_test(tc, test_header_line_break);
    suite_add_tcase(s, tc);

    tc = tcase_create("checkpoint");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_checkpoint_restart);
    tcase_add_test(tc, test_checkpoint_keep);
    tcase_add_test(tc, test_checkpoint_sink_failure);
    suite_add_tcase(s, tc);

    tc = tcase_create("daemon");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_daemon_windows);
    tcase_add_test(tc, test_last_success_restart);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    SRunner *sr = srunner_create(templates_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
