/* test-sink-http.c - the http sink: the real fetchd binary POSTs batches to
 * the test server's ingest receiver (tests/helpers/httpd.c, POST /ingest,
 * read back with GET /__ingest and /__requests) on 127.0.0.1.
 *
 * Covered: batching by records, bytes and age, both body formats, headers
 * and idempotency keys; a rejected batch (400: dropped, counted, exit 74);
 * a 500 retried with the same key; 429 with Retry-After; a receiver that
 * refuses connections for a while (S12: nothing is lost uncounted); a
 * receiver that takes a batch and resets without answering (S14: duplicates
 * only under the same key); a receiver that reads a byte at a time (S15:
 * the request times out, fetching goes on); the spool across a stop and a
 * start (with a truncated last line); configuration errors.
 *
 * Every wait has a deadline scaled by tu_slack(). A failed check kills
 * fetchd and the servers first (ensure()): in fork mode a failed check
 * ends the test process without the teardown. */
#define _GNU_SOURCE
#include <cJSON.h>
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
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
#include <unistd.h>

#include "testutil.h"
#include "tlsutil.h"

static pid_t httpd_pid;  /* the test server */
static int port;
static pid_t httpd2_pid; /* a second server (S12, S14) */
static int rx_port;      /* the receiver's: port, or the second server's */
static char *rx_ca;      /* the receiver speaks TLS: the CA to check it with */
static pid_t child;      /* fetchd in daemon mode; 0 when none runs */
static char *dir;
static char *err_path;
static char *fail_msg;

/* ---- notify socket (STATUS=) ------------------------------------------- */

/* A reader thread drains NOTIFY_SOCKET and keeps every STATUS= value with
 * its arrival time. */
#define NT_MAX_MSGS 4096

static struct {
    int fd;
    char *path;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu;
    char *status[NT_MAX_MSGS];
    double t[NT_MAX_MSGS];
    size_t n;
} nt = {.fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

static void *nt_main(void *arg)
{
    (void)arg;
    static char buf[65536];
    while (!atomic_load(&nt.stop)) {
        struct pollfd pf = {nt.fd, POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0) {
            continue;
        }
        ssize_t k;
        while ((k = recv(nt.fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) > 0) {
            buf[k] = '\0';
            for (char *line = buf; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl) {
                    *nl = '\0';
                }
                if (strncmp(line, "STATUS=", 7) == 0) {
                    pthread_mutex_lock(&nt.mu);
                    if (nt.n < NT_MAX_MSGS) {
                        nt.status[nt.n] = strdup(line + 7);
                        nt.t[nt.n] = tu_now();
                        nt.n++;
                    }
                    pthread_mutex_unlock(&nt.mu);
                }
                line = nl ? nl + 1 : NULL;
            }
        }
    }
    return NULL;
}

static void nt_start(void)
{
    nt.path = tu_fmt("%s/notify.sock", dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    ck_assert(strlen(nt.path) < sizeof(sa.sun_path));
    strcpy(sa.sun_path, nt.path);
    nt.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(nt.fd, 0);
    ck_assert_int_eq(bind(nt.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    int big = 4 << 20;
    setsockopt(nt.fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    setenv("NOTIFY_SOCKET", nt.path, 1);
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
        free(nt.status[i]);
    }
    nt.n = 0;
    free(nt.path);
    nt.path = NULL;
    unsetenv("NOTIFY_SOCKET");
}

/* The last STATUS= (a copy) and its time, or NULL. */
static char *nt_last(double *t)
{
    pthread_mutex_lock(&nt.mu);
    char *s = nt.n ? strdup(nt.status[nt.n - 1]) : NULL;
    if (t && nt.n) {
        *t = nt.t[nt.n - 1];
    }
    pthread_mutex_unlock(&nt.mu);
    return s;
}

/* ---- cleanup and checks --------------------------------------------------- */

static void **gc_list;
static size_t gc_n, gc_cap;

/* Frees p in cleanup() (a failed check must not leak in CK_FORK=no mode). */
static void *gc(void *p)
{
    if (gc_n == gc_cap) {
        gc_cap = gc_cap ? 2 * gc_cap : 64;
        gc_list = realloc(gc_list, gc_cap * sizeof(void *));
        if (!gc_list) {
            abort();
        }
    }
    gc_list[gc_n++] = p;
    return p;
}

/* cJSON trees cannot go through gc(): keep them here instead. */
static cJSON **trees;
static size_t n_trees, trees_cap;

static cJSON *keep(cJSON *j)
{
    if (n_trees == trees_cap) {
        trees_cap = trees_cap ? 2 * trees_cap : 32;
        trees = realloc(trees, trees_cap * sizeof(cJSON *));
        if (!trees) {
            abort();
        }
    }
    trees[n_trees++] = j;
    return j;
}

static void trees_free(void)
{
    for (size_t i = 0; i < n_trees; i++) {
        cJSON_Delete(trees[i]);
    }
    free(trees);
    trees = NULL;
    n_trees = trees_cap = 0;
}

static void cleanup(void)
{
    trees_free();
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        child = 0;
    }
    if (httpd_pid > 0) {
        tu_httpd_stop(httpd_pid);
        httpd_pid = 0;
    }
    if (httpd2_pid > 0) {
        tu_httpd_stop(httpd2_pid);
        httpd2_pid = 0;
    }
    nt_stop();
    if (dir) {
        tu_rmdir(dir);
        free(dir);
        dir = NULL;
    }
    free(err_path);
    err_path = NULL;
    free(rx_ca);
    rx_ca = NULL;
    for (size_t i = 0; i < gc_n; i++) {
        free(gc_list[i]);
    }
    free(gc_list);
    gc_list = NULL;
    gc_n = gc_cap = 0;
}

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
    unsetenv("STATE_DIRECTORY");
    dir = tu_tmpdir();
    httpd_pid = tu_httpd_start(&port);
    rx_port = port;
    err_path = tu_fmt("%s/err", dir);
}

static void teardown(void)
{
    cleanup();
    free(fail_msg);
    fail_msg = NULL;
}

/* ---- the receiver ------------------------------------------------------------ */

struct collect {
    char *buf;
    size_t len;
};

static size_t collect_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    struct collect *c = ud;
    size_t n = size * nmemb;
    char *nb = realloc(c->buf, c->len + n + 1);
    if (!nb) {
        abort();
    }
    memcpy(nb + c->len, p, n);
    c->len += n;
    nb[c->len] = '\0';
    c->buf = nb;
    return n;
}

/* GET http://127.0.0.1:p<path>; the body (malloc'd) or NULL. */
static char *http_get(int p, const char *path)
{
    CURL *c = curl_easy_init();
    struct collect b = {NULL, 0};
    bool tls = rx_ca && p == rx_port;
    char *url = tu_fmt("%s://127.0.0.1:%d%s", tls ? "https" : "http", p, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (tls) {
        curl_easy_setopt(c, CURLOPT_CAINFO, rx_ca);
    }
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    long status = 0;
    if (curl_easy_perform(c) != CURLE_OK ||
        (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status), status != 200)) {
        free(b.buf);
        b.buf = NULL;
    }
    curl_easy_cleanup(c);
    free(url);
    return b.buf;
}

static cJSON *ingest_doc(bool records)
{
    char *body = http_get(rx_port, records ? "/__ingest?records=1" : "/__ingest");
    ensure(body, "GET /__ingest failed");
    cJSON *j = cJSON_Parse(body);
    free(body);
    ensure(j, "/__ingest is not JSON");
    return keep(j);
}

static long jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void ingest_mode(const char *step)
{
    char *path = tu_fmt("/__ingest_mode?step=%s", step);
    char *r = http_get(rx_port, path);
    free(path);
    ensure(r, "setting the ingest mode %s failed", step);
    free(r);
}

/* Waits until the receiver's "key" is at least n; the last document. */
static cJSON *wait_ingest(const char *key, long n, double timeout_s)
{
    double end = tu_now() + timeout_s * tu_slack();
    for (;;) {
        char *body = http_get(rx_port, "/__ingest");
        cJSON *j = body ? cJSON_Parse(body) : NULL;
        free(body);
        if ((j && jnum(j, key) >= n) || tu_now() > end) {
            return j ? keep(j) : ingest_doc(false);
        }
        cJSON_Delete(j);
        usleep(20000);
    }
}

/* The POST /ingest requests in /__requests, parsed (kept). */
static cJSON *ingest_requests(void)
{
    char *body = http_get(rx_port, "/__requests");
    ensure(body, "GET /__requests failed");
    cJSON *all = keep(cJSON_Parse(body));
    free(body);
    ensure(all, "/__requests is not JSON");
    cJSON *out = keep(cJSON_CreateArray());
    cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(all, "requests"))
    {
        if (strncmp(jstr(r, "target"), "/ingest", 7) == 0) {
            cJSON_AddItemReferenceToArray(out, r);
        }
    }
    return out;
}

static bool is_key(const char *k)
{
    if (strlen(k) != 32) {
        return false;
    }
    for (; *k; k++) {
        if (!((*k >= '0' && *k <= '9') || (*k >= 'a' && *k <= 'f'))) {
            return false;
        }
    }
    return true;
}

/* ---- fetchd -------------------------------------------------------------------- */

/* A config: n endpoints e0..e<n-1> (GET /data/<i>, every `interval` or
 * the default), all routed to the http sink "rx" whose other options are
 * sink_opts (JSON members); limits are JSON members too. */
static char *cfg_make(int n, const char *interval, const char *limits, const char *sink_opts)
{
    size_t cap = (size_t)n * 128 + 64;
    char *eps = calloc(1, cap);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(eps + len, cap - len,
                                "%s\"e%d\": {\"url\": \"http://127.0.0.1:%d/data/%d\"}",
                                i ? ", " : "", i, port, i);
    }
    char *cfg = tu_fmt("{\"limits\": {%s}, \"sinks\": {\"rx\": {\"type\": \"http\", %s}},"
                       " \"defaults\": {\"sinks\": [\"rx\"]%s%s%s},"
                       " \"endpoints\": {%s}}",
                       limits ? limits : "", sink_opts, interval ? ", \"interval\": \"" : "",
                       interval ? interval : "", interval ? "\"" : "", eps);
    free(eps);
    return gc(cfg);
}

/* "\"url\": \"http://127.0.0.1:PORT/ingest<suffix>\"" */
static char *sink_url(const char *suffix)
{
    return gc(tu_fmt("\"url\": \"http://127.0.0.1:%d/ingest%s\"", rx_port, suffix ? suffix : ""));
}

/* fetchd --once with cfg (and up to two more args); res must be freed. */
static void run_once(const char *cfg, const char *a1, const char *a2, struct tu_result *res)
{
    char *path = tu_write(dir, "fetchd.json", cfg);
    const char *argv[10] = {tu_fetchd(), "--once", "--log-level", "info", "-c", path, a1, a2, NULL};
    tu_run(argv, 90 * tu_slack(), res);
    free(path);
}

static void start_daemon(const char *cfg, const char *a1, const char *a2)
{
    char *path = tu_write(dir, "fetchd.json", cfg);
    const char *argv[10] = {tu_fetchd(), "--log-level", "info", "-c", path, a1, a2, NULL};
    child = tu_spawn(argv, NULL, err_path);
    free(path);
    ensure(child > 0, "cannot start fetchd");
}

static char *daemon_err(void)
{
    char *e = tu_read(err_path);
    return gc(e ? e : strdup(""));
}

static int stop_daemon(void)
{
    ensure(kill(child, SIGTERM) == 0, "kill: %s", strerror(errno));
    int st = tu_wait(child, 60 * tu_slack());
    child = 0;
    return st;
}

/* The counters of the last "sink 'rx': produced ..." line in err. */
struct summary {
    unsigned long long produced, delivered, queued, dropped, overflow, failed, abandoned, retried;
};

static bool summary_of(const char *err, struct summary *s)
{
    const char *p = NULL;
    for (const char *q = err; (q = strstr(q, "sink 'rx': produced ")); q++) {
        p = q;
    }
    memset(s, 0, sizeof(*s));
    return p && sscanf(p, "sink 'rx': produced %llu, delivered %llu, queued %llu, dropped %llu "
                          "(overflow %llu, failed %llu, abandoned %llu), retried %llu",
                       &s->produced, &s->delivered, &s->queued, &s->dropped, &s->overflow,
                       &s->failed, &s->abandoned, &s->retried) == 8;
}

static size_t count_str(const char *s, const char *what)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, what)); p++) {
        n++;
    }
    return n;
}

/* ---- (1) batching --------------------------------------------------------------- */

START_TEST(test_batching_jsonl)
{
    /* 30 records, batches of 10: whatever the order of the fetches, the
     * batches fill up (batch_max_age is long), so exactly 3 requests */
    const char *cfg = cfg_make(30, NULL, NULL,
                               gc(tu_fmt("%s, \"batch_max_records\": 10,"
                                         " \"batch_max_age\": \"60s\","
                                         " \"headers\": [\"Authorization: Bearer s3cr3t-t0ken\","
                                         " \"X-Team: data\"]",
                                         sink_url(NULL))));
    struct tu_result res;
    run_once(cfg, NULL, NULL, &res);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 0, "exit %d: %s", res.status, res.err);
    ensure(!strstr(res.err, "s3cr3t"), "a header value was logged: %s", res.err);
    cJSON *in = ingest_doc(false);
    ensure(jnum(in, "requests") == 3 && jnum(in, "accepted") == 3, "requests %ld accepted %ld",
           jnum(in, "requests"), jnum(in, "accepted"));
    ensure(jnum(in, "records") == 30 && jnum(in, "distinct") == 30, "records %ld distinct %ld",
           jnum(in, "records"), jnum(in, "distinct"));
    ensure(jnum(in, "keys") == 3 && jnum(in, "keyless") == 0 && jnum(in, "bad") == 0,
           "keys %ld keyless %ld bad %ld", jnum(in, "keys"), jnum(in, "keyless"),
           jnum(in, "bad"));
    cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(in, "log"))
    {
        ensure(jnum(e, "result") == 200 && jnum(e, "records") == 10, "log entry: result %ld, "
               "records %ld", jnum(e, "result"), jnum(e, "records"));
        ensure(strcmp(jstr(e, "ctype"), "application/x-ndjson") == 0, "ctype %s",
               jstr(e, "ctype"));
        ensure(is_key(jstr(e, "key")), "key %s", jstr(e, "key"));
    }
    /* the bodies: 10 JSON Lines each, every endpoint exactly once */
    bool seen[30] = {false};
    cJSON *reqs = ingest_requests();
    ensure(cJSON_GetArraySize(reqs) == 3, "%d POSTs", cJSON_GetArraySize(reqs));
    cJSON *r;
    cJSON_ArrayForEach(r, reqs)
    {
        cJSON *h = cJSON_GetObjectItemCaseSensitive(r, "headers");
        ensure(strcmp(jstr(r, "method"), "POST") == 0, "method %s", jstr(r, "method"));
        ensure(strcmp(jstr(h, "Authorization"), "Bearer s3cr3t-t0ken") == 0 &&
                   strcmp(jstr(h, "X-Team"), "data") == 0,
               "configured headers not sent");
        ensure(strncmp(jstr(h, "User-Agent"), "fetchd/", 7) == 0, "User-Agent %s",
               jstr(h, "User-Agent"));
        ensure(!cJSON_GetObjectItemCaseSensitive(h, "Expect"), "Expect sent");
        const char *body = jstr(r, "body");
        ensure(tu_lines(body) == 10 && body[strlen(body) - 1] == '\n', "body: %s", body);
        for (const char *p = body; *p;) {
            const char *nl = strchr(p, '\n');
            cJSON *rec = cJSON_ParseWithLength(p, (size_t)(nl - p));
            ensure(rec, "not a JSON line: %.*s", (int)(nl - p), p);
            int i = -1;
            ensure(sscanf(jstr(rec, "endpoint"), "e%d", &i) == 1 && i >= 0 && i < 30 && !seen[i],
                   "endpoint %s", jstr(rec, "endpoint"));
            seen[i] = true;
            cJSON_Delete(rec);
            p = nl + 1;
        }
    }
    trees_free();
    cleanup();
}
END_TEST

START_TEST(test_partial_batch_at_end)
{
    /* 7 records, batches of 100 that may wait an hour to fill: at the end
     * of --once the sink stops waiting and sends the partial batch */
    const char *cfg = cfg_make(7, NULL, NULL,
                               gc(tu_fmt("%s, \"batch_max_records\": 100,"
                                         " \"batch_max_age\": \"1h\"",
                                         sink_url(NULL))));
    struct tu_result res;
    run_once(cfg, NULL, NULL, &res);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 0, "exit %d: %s", res.status, res.err);
    ensure(res.seconds < 60 * tu_slack(), "took %.1f s", res.seconds);
    cJSON *in = ingest_doc(false);
    ensure(jnum(in, "requests") == 1 && jnum(in, "records") == 7 && jnum(in, "distinct") == 7,
           "requests %ld records %ld distinct %ld", jnum(in, "requests"), jnum(in, "records"),
           jnum(in, "distinct"));
    trees_free();
    cleanup();
}
END_TEST

START_TEST(test_check_config_hides_secrets)
{
    const char *cfg = cfg_make(1, NULL, NULL,
                               gc(tu_fmt("\"url\": \"http://user:pa55word@127.0.0.1:%d/ingest\","
                                         " \"headers\": [\"Authorization: Bearer s3cr3t-t0ken\"]",
                                         rx_port)));
    struct tu_result res;
    run_once(cfg, "--check-config", NULL, &res);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 0, "exit %d: %s", res.status, res.err);
    ensure(strstr(res.out, "Authorization: (secret)"), "headers not listed: %s", res.out);
    ensure(!strstr(res.out, "s3cr3t") && !strstr(res.err, "s3cr3t"), "header value shown: %s",
           res.out);
    ensure(!strstr(res.out, "pa55word") && !strstr(res.err, "pa55word"), "URL password shown: %s",
           res.out);
    cleanup();
}
END_TEST

START_TEST(test_batching_array_bytes_age)
{
    /* 12 records of about 230 bytes into requests of at most 1000 bytes,
     * as JSON arrays; a partial batch goes out after batch_max_age */
    const char *cfg = cfg_make(12, NULL, NULL,
                               gc(tu_fmt("%s, \"format\": \"array\", \"batch_max_bytes\": 1000,"
                                         " \"batch_max_age\": \"100ms\", \"idempotency_header\": "
                                         "\"X-Batch\"",
                                         sink_url(NULL))));
    struct tu_result res;
    run_once(cfg, NULL, NULL, &res);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 0, "exit %d: %s", res.status, res.err);
    cJSON *in = ingest_doc(false);
    ensure(jnum(in, "records") == 12 && jnum(in, "distinct") == 12 && jnum(in, "bad") == 0,
           "records %ld distinct %ld bad %ld", jnum(in, "records"), jnum(in, "distinct"),
           jnum(in, "bad"));
    /* the receiver counts Idempotency-Key: this sink sends X-Batch */
    ensure(jnum(in, "keyless") == jnum(in, "accepted"), "Idempotency-Key sent");
    cJSON *reqs = ingest_requests();
    int total = 0;
    cJSON *r;
    cJSON_ArrayForEach(r, reqs)
    {
        cJSON *h = cJSON_GetObjectItemCaseSensitive(r, "headers");
        ensure(strcmp(jstr(h, "Content-Type"), "application/json") == 0, "ctype %s",
               jstr(h, "Content-Type"));
        ensure(is_key(jstr(h, "X-Batch")), "X-Batch: %s", jstr(h, "X-Batch"));
        const char *body = jstr(r, "body");
        ensure(strlen(body) <= 1000, "a body of %zu bytes", strlen(body));
        cJSON *a = cJSON_Parse(body);
        ensure(cJSON_IsArray(a) && cJSON_GetArraySize(a) >= 1, "not a JSON array: %s", body);
        cJSON *rec;
        cJSON_ArrayForEach(rec, a)
        {
            ensure(cJSON_IsObject(rec) && jstr(rec, "endpoint")[0] == 'e', "element");
            total++;
        }
        cJSON_Delete(a);
    }
    ensure(total == 12 && cJSON_GetArraySize(reqs) >= 3, "%d records in %d requests", total,
           cJSON_GetArraySize(reqs));
    trees_free();
    cleanup();
}
END_TEST

/* ---- (2) S13: the receiver's answers -------------------------------------------- */

START_TEST(test_rejected_400)
{
    ingest_mode("400");
    const char *cfg = cfg_make(5, NULL, NULL,
                               gc(tu_fmt("%s, \"batch_max_age\": \"50ms\"", sink_url(NULL))));
    struct tu_result res;
    run_once(cfg, NULL, NULL, &res);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 74, "exit %d: %s", res.status, res.err);
    ensure(strstr(res.err, "with HTTP 400; response: {\"error\":\"scripted\",\"status\":400}"),
           "no rejection message: %s", res.err);
    ensure(strstr(res.err, "receiver rejected the batch with HTTP 400"), "%s", res.err);
    struct summary s;
    ensure(summary_of(res.err, &s), "no summary: %s", res.err);
    ensure(s.produced == 5 && s.delivered == 0 && s.dropped == 5 && s.failed == 5 &&
               s.queued == 0 && s.retried == 0,
           "produced %llu delivered %llu dropped %llu failed %llu retried %llu", s.produced,
           s.delivered, s.dropped, s.failed, s.retried);
    cJSON *in = ingest_doc(false);
    ensure(jnum(in, "accepted") == 0 && jnum(in, "requests") >= 1, "accepted %ld",
           jnum(in, "accepted"));
    trees_free();
    cleanup();
}
END_TEST

START_TEST(test_retry_500_same_key)
{
    /* daemon mode (the stop prints the counters); the first request gets
     * 500, its retry and everything after 200: the retry carries the
     * first request's key, the counters say 1 retry and nothing lost */
    const char *cfg = cfg_make(5, "100ms", NULL,
                               gc(tu_fmt("%s, \"batch_max_records\": 5,"
                                         " \"batch_max_age\": \"200ms\","
                                         " \"retry_backoff\": \"50ms\"",
                                         sink_url("?script=500"))));
    start_daemon(cfg, NULL, NULL);
    cJSON *in = wait_ingest("accepted", 2, 20);
    ensure(jnum(in, "accepted") >= 2, "nothing accepted: %s", daemon_err());
    int st = stop_daemon();
    char *err = daemon_err();
    ensure(st == 0, "exit %d: %s", st, err);
    in = ingest_doc(false);
    cJSON *log = cJSON_GetObjectItemCaseSensitive(in, "log");
    cJSON *a = cJSON_GetArrayItem(log, 0), *b = cJSON_GetArrayItem(log, 1);
    ensure(jnum(a, "result") == 500 && jnum(b, "result") == 200 &&
               jnum(a, "bytes") == jnum(b, "bytes") && jnum(b, "records") >= 1,
           "results %ld, %ld", jnum(a, "result"), jnum(b, "result"));
    ensure(is_key(jstr(a, "key")) && strcmp(jstr(a, "key"), jstr(b, "key")) == 0,
           "the retry has another key: %s, %s", jstr(a, "key"), jstr(b, "key"));
    for (int i = 2; i < cJSON_GetArraySize(log); i++) {
        ensure(jnum(cJSON_GetArrayItem(log, i), "result") == 200, "request %d", i);
    }
    struct summary s;
    ensure(summary_of(err, &s), "no summary: %s", err);
    ensure(s.produced == s.delivered && s.dropped == 0 && s.queued == 0 && s.retried == 1,
           "produced %llu delivered %llu dropped %llu retried %llu", s.produced, s.delivered,
           s.dropped, s.retried);
    ensure((unsigned long long)jnum(in, "distinct") == s.delivered &&
               jnum(in, "records") == jnum(in, "distinct"),
           "receiver %ld, delivered %llu", jnum(in, "distinct"), s.delivered);
    ensure(strstr(err, "cannot deliver: receiver answered HTTP 500"), "%s", err);
    ensure(strstr(err, "delivering again after"), "%s", err);
    trees_free();
    cleanup();
}
END_TEST

START_TEST(test_429_retry_after)
{
    /* Retry-After: 1 wins over retry_backoff (50ms) */
    const char *cfg = cfg_make(3, NULL, NULL,
                               gc(tu_fmt("%s, \"batch_max_records\": 3, \"batch_max_age\": \"60s\","
                                         " \"retry_backoff\": \"50ms\"",
                                         sink_url("?script=429:retry-after=1"))));
    struct tu_result res;
    run_once(cfg, NULL, NULL, &res);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 0, "exit %d: %s", res.status, res.err);
    ensure(strstr(res.err, "receiver answered HTTP 429") && strstr(res.err, "retrying in 1s"),
           "%s", res.err);
    cJSON *in = ingest_doc(false);
    cJSON *log = cJSON_GetObjectItemCaseSensitive(in, "log");
    ensure(cJSON_GetArraySize(log) == 2, "%d requests", cJSON_GetArraySize(log));
    cJSON *a = cJSON_GetArrayItem(log, 0), *b = cJSON_GetArrayItem(log, 1);
    double gap = cJSON_GetObjectItemCaseSensitive(b, "ms")->valuedouble -
                 cJSON_GetObjectItemCaseSensitive(a, "ms")->valuedouble;
    ensure(jnum(a, "result") == 429 && jnum(b, "result") == 200, "results");
    ensure(gap >= 900, "retried %.0f ms after the 429 with Retry-After: 1", gap);
    ensure(strcmp(jstr(a, "key"), jstr(b, "key")) == 0, "keys differ");
    ensure(jnum(in, "distinct") == 3, "distinct %ld", jnum(in, "distinct"));
    trees_free();
    cleanup();
}
END_TEST

/* ---- (3) S12: the receiver refuses connections for a while ------------------------ */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        abort();
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* Starts a second test server on port p (nothing listens there before). */
static void httpd2_start(int p)
{
    const char *bin = getenv("FETCHD_HTTPD");
    char *ps = gc(tu_fmt("%d", p));
    char *out = gc(tu_fmt("%s/httpd2.out", dir));
    const char *argv[] = {bin ? bin : "./tests/httpd", "--port", ps, NULL};
    httpd2_pid = tu_spawn(argv, out, NULL);
    double end = tu_now() + 10;
    for (;;) {
        char *o = tu_read(out);
        bool up = o && strstr(o, "PORT=");
        free(o);
        if (up) {
            return;
        }
        ensure(tu_now() < end, "second test server did not start on port %d", p);
        usleep(10000);
    }
}

START_TEST(test_receiver_down_then_up)
{
    /* nothing listens on p2 at first (connection refused); fast endpoints
     * and a small queue, so records overflow meanwhile: afterwards every
     * record is either at the receiver (exactly once) or counted dropped */
    int p2 = free_port();
    const char *cfg = cfg_make(3, "100ms", NULL,
                               gc(tu_fmt("\"url\": \"http://127.0.0.1:%d/ingest\", "
                                         "\"batch_max_records\": 4, \"batch_max_age\": \"100ms\","
                                         " \"queue_max_records\": 10, \"retry_backoff\": \"50ms\","
                                         " \"retry_max_backoff\": \"500ms\"",
                                         p2)));
    start_daemon(cfg, NULL, NULL);
    double end = tu_now() + 20 * tu_slack();
    while (count_str(daemon_err(), "Connection refused") == 0) {
        ensure(tu_now() < end, "no refused delivery: %s", daemon_err());
        usleep(20000);
    }
    usleep((useconds_t)(1.5e6 * tu_slack()));
    httpd2_start(p2);
    /* wait until records flow again, then some more */
    end = tu_now() + 20 * tu_slack();
    long got = 0;
    for (;;) {
        char *doc = http_get(p2, "/__ingest");
        cJSON *j = doc ? cJSON_Parse(doc) : NULL;
        got = j ? jnum(j, "distinct") : 0;
        cJSON_Delete(j);
        free(doc);
        if (got >= 10) {
            break;
        }
        ensure(tu_now() < end, "the receiver got %ld records: %s", got, daemon_err());
        usleep(20000);
    }
    usleep(500000);
    int st = stop_daemon();
    char *err = daemon_err();
    ensure(st == 0 || st == 74, "exit %d: %s", st, err);
    ensure(strstr(err, "cannot deliver: POST to http://127.0.0.1:") &&
               strstr(err, "Couldn't connect to server: Connection refused"),
           "%s", err);
    ensure(strstr(err, "delivering again after"), "%s", err);
    struct summary s;
    ensure(summary_of(err, &s), "no summary: %s", err);
    char *doc = gc(http_get(p2, "/__ingest"));
    cJSON *in = keep(cJSON_Parse(doc));
    ensure(in, "/__ingest");
    ensure(s.queued == 0 && s.abandoned == 0 && s.failed == 0,
           "queued %llu abandoned %llu failed %llu", s.queued, s.abandoned, s.failed);
    ensure(s.delivered + s.dropped == s.produced && s.dropped == s.overflow,
           "produced %llu != delivered %llu + dropped %llu", s.produced, s.delivered,
           s.dropped);
    ensure((unsigned long long)jnum(in, "distinct") == s.delivered,
           "the receiver has %ld records, fetchd delivered %llu", jnum(in, "distinct"),
           s.delivered);
    ensure(jnum(in, "dup_other_key") == 0 && jnum(in, "dup_same_key") == 0, "duplicates");
    ensure(st == (s.dropped ? 74 : 0), "exit %d with %llu dropped", st, s.dropped);
    /* produced is every fetch: one record per request the endpoints' server served */
    ensure(tu_httpd_requests(port) == (long)s.produced, "%ld fetches, %llu produced",
           tu_httpd_requests(port), s.produced);
    trees_free();
    cleanup();
}
END_TEST

/* ---- (4) S14: taken, then the connection resets without an answer ---------------- */

START_TEST(test_ack_then_reset)
{
    /* 6 records in 2 batches of 3; the receiver takes the first batch
     * twice without answering, then answers: duplicates, all under the
     * same key, nothing lost. The receiver is a server of its own: libcurl
     * silently resends a request once a reused connection (one left by the
     * fetches) dies without an answer, and this test wants the sink to see
     * the failure. */
    httpd2_pid = tu_httpd_start(&rx_port);
    const char *cfg = cfg_make(6, NULL, NULL,
                               gc(tu_fmt("%s, \"batch_max_records\": 3, \"batch_max_age\": \"60s\","
                                         " \"retry_backoff\": \"50ms\"",
                                         sink_url("?script=reset,reset"))));
    struct tu_result res;
    run_once(cfg, NULL, NULL, &res);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 0, "exit %d: %s", res.status, res.err);
    ensure(strstr(res.err, "Server returned nothing"), "%s", res.err);
    cJSON *in = ingest_doc(false);
    ensure(jnum(in, "distinct") == 6 && jnum(in, "records") == 12, "distinct %ld records %ld",
           jnum(in, "distinct"), jnum(in, "records"));
    ensure(jnum(in, "dup_same_key") == 6 && jnum(in, "dup_other_key") == 0,
           "dup_same_key %ld dup_other_key %ld", jnum(in, "dup_same_key"),
           jnum(in, "dup_other_key"));
    ensure(jnum(in, "keys") == 2, "keys %ld", jnum(in, "keys"));
    cJSON *log = cJSON_GetObjectItemCaseSensitive(in, "log");
    ensure(cJSON_GetArraySize(log) == 4, "%d requests", cJSON_GetArraySize(log));
    const char *k0 = jstr(cJSON_GetArrayItem(log, 0), "key");
    for (int i = 0; i < 3; i++) {
        ensure(strcmp(jstr(cJSON_GetArrayItem(log, i), "key"), k0) == 0, "retry %d: new key", i);
    }
    ensure(jnum(cJSON_GetArrayItem(log, 0), "result") == -2 &&
               jnum(cJSON_GetArrayItem(log, 2), "result") == 200,
           "results");
    trees_free();
    cleanup();
}
END_TEST

/* ---- (5) S15: a receiver that reads a byte at a time ----------------------------- */

static unsigned long status_fetches(const char *st)
{
    const char *p = st ? strstr(st, "last 60s: ") : NULL;
    return p ? strtoul(p + 10, NULL, 10) : 0;
}

START_TEST(test_slow_reader)
{
    nt_start();
    /* a batch of about 1 KB takes the receiver over 3 minutes; the sink
     * gives up after timeout (longer under valgrind, where a normal
     * request may take that long too) */
    ingest_mode("slow:ms=200");
    const char *cfg = cfg_make(2, "100ms", NULL,
                               gc(tu_fmt("%s, \"batch_max_records\": 5,"
                                         " \"batch_max_age\": \"50ms\", \"timeout\": \"%dms\","
                                         " \"retry_backoff\": \"50ms\","
                                         " \"retry_max_backoff\": \"200ms\"",
                                         sink_url(NULL), (int)(300 * tu_slack()))));
    start_daemon(cfg, NULL, NULL);
    /* the sink times out (shown in STATUS) while the fetch count grows */
    double end = tu_now() + 30 * tu_slack();
    double t1 = 0;
    char *s1 = NULL;
    for (;;) {
        free(s1);
        s1 = nt_last(&t1);
        if (s1 && strstr(s1, "; sink 'rx': POST to http://127.0.0.1:") &&
            strstr(s1, "Timeout was reached")) {
            break;
        }
        ensure(tu_now() < end, "no STATUS with the sink's timeout: %s / %s", s1 ? s1 : "(none)",
               daemon_err());
        usleep(20000);
    }
    gc(s1);
    double t2 = 0;
    char *s2 = NULL;
    for (;;) {
        free(s2);
        s2 = nt_last(&t2);
        if (t2 > t1 + 1 && status_fetches(s2) > status_fetches(s1)) {
            break;
        }
        ensure(tu_now() < end, "fetching stopped: \"%s\" then \"%s\"", s1, s2 ? s2 : "");
        usleep(50000);
    }
    gc(s2);
    cJSON *in = ingest_doc(false);
    ensure(jnum(in, "accepted") == 0 && jnum(in, "requests") >= 1,
           "accepted %ld requests %ld", jnum(in, "accepted"), jnum(in, "requests"));
    /* the receiver reads normally again: everything arrives */
    ingest_mode("ok");
    in = wait_ingest("accepted", 1, 20);
    ensure(jnum(in, "accepted") >= 1, "nothing accepted after the receiver recovered");
    int st = stop_daemon();
    char *err = daemon_err();
    ensure(st == 0 || st == 74, "exit %d: %s", st, err);
    ensure(strstr(err, "Timeout was reached: Connection timed out"), "%s", err);
    struct summary s;
    ensure(summary_of(err, &s), "no summary: %s", err);
    in = ingest_doc(false);
    ensure(s.delivered + s.dropped == s.produced && s.queued == 0, "produced %llu delivered "
           "%llu dropped %llu", s.produced, s.delivered, s.dropped);
    ensure((unsigned long long)jnum(in, "distinct") == s.delivered && s.delivered > 0,
           "receiver %ld, delivered %llu", jnum(in, "distinct"), s.delivered);
    trees_free();
    cleanup();
}
END_TEST

/* ---- (6) the spool ---------------------------------------------------------------- */

START_TEST(test_spool_across_restart)
{
    char *state = gc(tu_fmt("%s/state", dir));
    ensure(mkdir(state, 0700) == 0, "mkdir");
    char *spool = gc(tu_fmt("%s/spool-rx.jsonl", state));
    /* the receiver is down: the queue (5) overflows into the spool, and at
     * the stop the queue goes there too */
    ingest_mode("down");
    const char *cfg = cfg_make(3, "100ms", "\"shutdown_grace\": \"300ms\"",
                               gc(tu_fmt("%s, \"spool\": true, \"queue_max_records\": 5,"
                                         " \"batch_max_records\": 3, \"batch_max_age\": \"50ms\","
                                         " \"retry_backoff\": \"50ms\", \"retry_max_backoff\": "
                                         "\"200ms\"",
                                         sink_url(NULL))));
    start_daemon(cfg, "--state-dir", state);
    cJSON *in = wait_ingest("requests", 3, 20);
    ensure(jnum(in, "requests") >= 3, "the sink did not try: %s", daemon_err());
    usleep(1000000);
    int st = stop_daemon();
    char *err = daemon_err();
    ensure(st == 0, "exit %d: %s", st, err);
    struct summary s;
    ensure(summary_of(err, &s), "no summary: %s", err);
    ensure(s.delivered == 0 && s.dropped == 0 && s.queued == 0 && s.produced > 5,
           "produced %llu delivered %llu dropped %llu queued %llu", s.produced, s.delivered,
           s.dropped, s.queued);
    ensure(strstr(err, "written to the spool"), "%s", err);
    /* the spool holds every record, in order, one framed line each */
    char *content = gc(tu_read(spool));
    ensure(content && tu_lines(content) == s.produced, "%zu lines in the spool, %llu produced",
           content ? tu_lines(content) : 0, s.produced);
    size_t n_sp = tu_lines(content);
    char **spooled = gc(calloc(n_sp, sizeof(char *)));
    size_t k = 0;
    for (const char *p = content; *p; k++) {
        const char *nl = strchr(p, '\n');
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        ensure(j, "spool line %zu is not JSON: %.*s", k, (int)(nl - p), p);
        cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "r");
        ensure(cJSON_IsObject(r) && strcmp(jstr(r, "endpoint"), jstr(j, "ep")) == 0,
               "spool line %zu", k);
        /* the record as fetchd serialised it: the text behind "r": */
        const char *rs = strstr(p, ",\"r\":") + 5;
        spooled[k] = gc(strndup(rs, (size_t)(nl - 1 - rs)));
        cJSON_Delete(j);
        p = nl + 1;
    }
    /* a crash in the middle of a write leaves a partial line */
    FILE *f = fopen(spool, "a");
    fputs("{\"v\":1,\"ep\":\"e1\",\"err\":0,\"st\":200,\"t\":17", f);
    fclose(f);

    /* receiver up, fetchd --once with the same state: the spooled records
     * first, in order, then the 3 new ones */
    ingest_mode("ok");
    cfg = cfg_make(3, "100ms", "\"shutdown_grace\": \"60s\"",
                   gc(tu_fmt("%s, \"spool\": true, \"queue_max_records\": 5,"
                             " \"batch_max_records\": 3, \"batch_max_age\": \"50ms\"",
                             sink_url(NULL))));
    struct tu_result res;
    run_once(cfg, "--state-dir", state, &res);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 0, "exit %d: %s", res.status, res.err);
    char *want = gc(tu_fmt("sink 'rx': restored %zu records from the spool", n_sp));
    ensure(strstr(res.err, want), "no \"%s\": %s", want, res.err);
    ensure(strstr(res.err, "ends in a truncated record"), "%s", res.err);
    in = ingest_doc(true);
    ensure((size_t)jnum(in, "distinct") == n_sp + 3 && jnum(in, "dup_other_key") == 0 &&
               jnum(in, "dup_same_key") == 0,
           "distinct %ld, %zu spooled", jnum(in, "distinct"), n_sp);
    cJSON *recs = cJSON_GetObjectItemCaseSensitive(in, "distinct_records");
    for (size_t i = 0; i < n_sp; i++) {
        const char *got = cJSON_GetArrayItem(recs, (int)i)->valuestring;
        ensure(strcmp(got, spooled[i]) == 0, "record %zu out of order:\n%s\nwant\n%s", i, got,
               spooled[i]);
    }
    struct stat sst;
    ensure(stat(spool, &sst) == 0 && sst.st_size == 0, "the spool is not empty after delivery");
    trees_free();
    cleanup();
}
END_TEST

START_TEST(test_spool_needs_state_dir)
{
    const char *cfg = cfg_make(1, NULL, NULL, gc(tu_fmt("%s, \"spool\": true", sink_url(NULL))));
    struct tu_result res;
    run_once(cfg, NULL, NULL, &res);
    gc(res.out);
    gc(res.err);
    ensure(res.status != 0 && res.status != 78, "exit %d: %s", res.status, res.err);
    ensure(strstr(res.err, "sink 'rx': (http) \"spool\" needs a state directory"), "%s", res.err);
    cleanup();
}
END_TEST

/* ---- TLS -------------------------------------------------------------------------- */

START_TEST(test_tls_receiver)
{
    /* https with the test CA in ca_file: delivered; with the system CAs:
     * every attempt fails verification (retried, then abandoned at exit);
     * with tls_verify false: delivered */
    ensure(tu_mint_certs(dir) == 0, "cannot mint test certificates");
    char *crt = gc(tu_fmt("%s/server.pem", dir)), *key = gc(tu_fmt("%s/server.key", dir));
    const char *args[] = {"--tls-cert", crt, "--tls-key", key, NULL};
    httpd2_pid = tu_httpd_start_args(&rx_port, args);
    ensure(httpd2_pid > 0, "no TLS server");
    rx_ca = tu_fmt("%s/ca.pem", dir);
    char *url = gc(tu_fmt("\"url\": \"https://127.0.0.1:%d/ingest\", \"batch_max_age\": \"50ms\"",
                          rx_port));
    struct tu_result res;
    run_once(cfg_make(3, NULL, NULL, gc(tu_fmt("%s, \"ca_file\": \"%s/ca.pem\"", url, dir))),
             NULL, NULL, &res);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 0, "ca_file: exit %d: %s", res.status, res.err);
    ensure(jnum(ingest_doc(false), "distinct") == 3, "ca_file: not delivered");

    run_once(cfg_make(3, NULL, "\"shutdown_grace\": \"1s\"",
                      gc(tu_fmt("%s, \"retry_backoff\": \"100ms\"", url))),
             NULL, NULL, &res);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 74, "system CAs: exit %d: %s", res.status, res.err);
    ensure(strstr(res.err, "cannot deliver: POST to https://127.0.0.1:"), "%s", res.err);
    struct summary s;
    ensure(summary_of(res.err, &s) && s.abandoned == 3 && s.delivered == 0,
           "abandoned %llu: %s", s.abandoned, res.err);
    ensure(jnum(ingest_doc(false), "distinct") == 3, "unverified receiver got records");

    run_once(cfg_make(4, NULL, NULL, gc(tu_fmt("%s, \"tls_verify\": false", url))), NULL, NULL,
             &res);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 0, "tls_verify false: exit %d: %s", res.status, res.err);
    ensure(jnum(ingest_doc(false), "distinct") == 3 + 4, "tls_verify false: not delivered");
    trees_free();
    cleanup();
}
END_TEST

/* ---- (7) configuration errors ------------------------------------------------------ */

START_TEST(test_config_errors)
{
    static const struct {
        const char *opts;
        const char *want;
    } cases[] = {
        {"\"format\": \"jsonl\"", "sinks.rx: missing \"url\""},
        {"\"url\": \"ftp://127.0.0.1/x\"",
         "sinks.rx: \"url\": scheme \"ftp\" is not supported; use http:// or https://"},
        {"\"url\": \"http://127.0.0.1/x\", \"format\": \"xml\"",
         "sinks.rx.format: must be one of: jsonl, array (got \"xml\")"},
        {"\"url\": \"http://127.0.0.1/x\", \"headers\": [\"SecretWithoutColon\"]",
         "sinks.rx: \"headers\" element 0: expected \"Name: value\""},
        {"\"url\": \"http://127.0.0.1/x\", \"batch_max_records\": 0",
         "sinks.rx: \"batch_max_records\" must be at least 1"},
        {"\"url\": \"http://127.0.0.1/x\", \"timeout\": \"0s\"",
         "sinks.rx: \"timeout\" must be at least 1ms"},
        {"\"url\": \"http://127.0.0.1/x\", \"ca_file\": \"/nonexistent/ca.pem\"",
         "sinks.rx: \"ca_file\" \"/nonexistent/ca.pem\" cannot be read: No such file"},
        {"\"url\": \"http://127.0.0.1/x\", \"headers\": [\"Content-Length: 5\"]",
         "sinks.rx: \"headers\" element 0: Content-Length is set by fetchd"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *cfg = cfg_make(1, NULL, NULL, cases[i].opts);
        struct tu_result res;
        run_once(cfg, NULL, NULL, &res);
        gc(res.out);
        gc(res.err);
        ensure(res.status == 78, "case %zu: exit %d: %s", i, res.status, res.err);
        ensure(strstr(res.err, cases[i].want), "case %zu: no \"%s\" in: %s", i, cases[i].want,
               res.err);
        ensure(!strstr(res.err, "SecretWithoutColon"), "a header was echoed: %s", res.err);
    }
    cleanup();
}
END_TEST

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("sink-http");
    TCase *tc = tcase_create("all");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_batching_jsonl);
    tcase_add_test(tc, test_partial_batch_at_end);
    tcase_add_test(tc, test_check_config_hides_secrets);
    tcase_add_test(tc, test_batching_array_bytes_age);
    tcase_add_test(tc, test_rejected_400);
    tcase_add_test(tc, test_retry_500_same_key);
    tcase_add_test(tc, test_429_retry_after);
    tcase_add_test(tc, test_receiver_down_then_up);
    tcase_add_test(tc, test_ack_then_reset);
    tcase_add_test(tc, test_slow_reader);
    tcase_add_test(tc, test_spool_across_restart);
    tcase_add_test(tc, test_spool_needs_state_dir);
    tcase_add_test(tc, test_tls_receiver);
    tcase_add_test(tc, test_config_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
