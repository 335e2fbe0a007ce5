/* test-http.c - the HTTP client features of the real fetchd binary against
 * the real test HTTP server (tests/helpers/httpd.c) on 127.0.0.1: auth
 * (basic, bearer, OAuth2 client credentials, secret files and systemd
 * credentials, rotation without reload, token revocation), TLS (CA file,
 * verify off, client certificates, minimum version, self-signed), proxies,
 * unix sockets, compression (and a decompression bomb), redirects (secrets
 * never cross origins, loops, schemes, 303 after POST), schemes (file://)
 * and timings.
 *
 * Every test checks both sides: what fetchd reported (records, stderr, exit
 * status) and what the server received (its /__requests log, /__stats).
 *
 * A failed check stops every process the test started (servers, a fetchd
 * daemon) before failing (ENSURE), since Check's fork mode skips the
 * teardown of a failed test. Memory the tests allocate is kept in a list
 * freed by the teardown (the valgrind setup runs this binary under valgrind
 * too, with leaks as errors). */
#define _GNU_SOURCE
#include <cJSON.h>
#include <check.h>
#include <curl/curl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "tlsutil.h"

/* ---- state, cleanup, ENSURE ---------------------------------------------- */

#define MAX_SERVERS 8

static pid_t servers[MAX_SERVERS];
static size_t n_servers;
static pid_t daemon_pid;    /* a fetchd running without --once, 0 if none */
static char *d_out, *d_err; /* its stdout and stderr files */
static int port;            /* the plain-http test server every test gets */
static char *dir;           /* per-test temporary directory */
static char *certs;         /* tls tests: certificates, minted once per run */
static char *fail_msg;

/* allocations freed at cleanup: plain memory or cJSON trees */
struct kept {
    void *p;
    bool json;
};
static struct kept *kept;
static size_t n_kept, cap_kept;

/* environment variables changed by a test, restored at cleanup */
struct saved_env {
    char *name;
    char *value; /* NULL: was unset */
};
static struct saved_env saved_env[8];
static size_t n_saved_env;

static void *keep_(void *p, bool json)
{
    if (!p) {
        return NULL;
    }
    if (n_kept == cap_kept) {
        cap_kept = cap_kept ? cap_kept * 2 : 64;
        kept = realloc(kept, cap_kept * sizeof(*kept));
        if (!kept) {
            abort();
        }
    }
    kept[n_kept++] = (struct kept){p, json};
    return p;
}
#define K(p) ((char *)keep_((p), false))
#define KJ(p) ((cJSON *)keep_((p), true))

static void env_save(const char *name)
{
    for (size_t i = 0; i < n_saved_env; i++) {
        if (strcmp(saved_env[i].name, name) == 0) {
            return;
        }
    }
    if (n_saved_env == sizeof(saved_env) / sizeof(saved_env[0])) {
        abort();
    }
    const char *v = getenv(name);
    saved_env[n_saved_env++] = (struct saved_env){strdup(name), v ? strdup(v) : NULL};
}

/* Sets (value) or unsets (NULL) a variable of this process's environment,
 * which tu_run/tu_spawn pass on to fetchd. */
static void env_set(const char *name, const char *value)
{
    env_save(name);
    if (value) {
        setenv(name, value, 1);
    } else {
        unsetenv(name);
    }
}

static void env_restore(void)
{
    for (size_t i = 0; i < n_saved_env; i++) {
        if (saved_env[i].value) {
            setenv(saved_env[i].name, saved_env[i].value, 1);
        } else {
            unsetenv(saved_env[i].name);
        }
        free(saved_env[i].name);
        free(saved_env[i].value);
    }
    n_saved_env = 0;
}

static void cleanup(void)
{
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGKILL);
        tu_wait(daemon_pid, 10);
        daemon_pid = 0;
    }
    for (size_t i = 0; i < n_servers; i++) {
        tu_httpd_stop(servers[i]);
    }
    n_servers = 0;
    env_restore();
    if (dir) {
        tu_rmdir(dir);
        free(dir);
        dir = NULL;
    }
    for (size_t i = 0; i < n_kept; i++) {
        if (kept[i].json) {
            cJSON_Delete(kept[i].p);
        } else {
            free(kept[i].p);
        }
    }
    free(kept);
    kept = NULL;
    n_kept = cap_kept = 0;
    d_out = d_err = NULL;
}

#define ENSURE(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            free(fail_msg);                                                                        \
            fail_msg = tu_fmt(__VA_ARGS__);                                                        \
            cleanup();                                                                             \
            ck_abort_msg("%s: %s", #cond, fail_msg);                                               \
        }                                                                                          \
    } while (0)

/* printf into memory kept until cleanup */
#define F(...) K(tu_fmt(__VA_ARGS__))

static pid_t start_server(int *p, const char *const *args)
{
    ENSURE(n_servers < MAX_SERVERS, "too many servers");
    pid_t pid = tu_httpd_start_args(p, args);
    ENSURE(pid > 0, "the test server did not start");
    servers[n_servers++] = pid;
    return pid;
}

static void setup(void)
{
    dir = tu_tmpdir();
    /* tests that need it set CREDENTIALS_DIRECTORY themselves */
    env_set("CREDENTIALS_DIRECTORY", NULL);
    start_server(&port, NULL);
}

static void teardown(void)
{
    cleanup();
}

/* ---- small string helpers ------------------------------------------------ */

static bool streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static bool has(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

/* every byte as %XX: the server decodes it, fetchd's output shows only the
 * escapes (so a secret the server checks never appears in a record's url) */
static char *enc_all(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(3 * n + 1);
    for (size_t i = 0; i < n; i++) {
        snprintf(o + 3 * i, 4, "%%%02X", (unsigned char)s[i]);
    }
    o[3 * n] = '\0';
    return K(o);
}

/* a query parameter value: everything but RFC 3986 unreserved escaped */
static char *enc(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(3 * n + 1), *q = o;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            *q++ = (char)c;
        } else {
            q += sprintf(q, "%%%02X", c);
        }
    }
    *q = '\0';
    return K(o);
}

static char *b64(const char *s)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s);
    char *o = malloc(4 * ((n + 2) / 3) + 1), *q = o;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)u[i] << 16 | (i + 1 < n ? (unsigned)u[i + 1] << 8 : 0) |
                     (i + 2 < n ? u[i + 2] : 0);
        *q++ = t[v >> 18 & 63];
        *q++ = t[v >> 12 & 63];
        *q++ = i + 1 < n ? t[v >> 6 & 63] : '=';
        *q++ = i + 2 < n ? t[v & 63] : '=';
    }
    *q = '\0';
    return K(o);
}

static char *base_url(int p)
{
    return F("http://127.0.0.1:%d", p);
}

/* ---- running fetchd -------------------------------------------------------- */

static struct tu_result run_argv(const char *const *argv)
{
    struct tu_result r;
    tu_run(argv, 60 * tu_slack(), &r);
    K(r.out);
    K(r.err);
    return r;
}

static char *write_cfg(const char *cfg)
{
    return K(tu_write(dir, "fetchd.json", cfg));
}

/* fetchd --once -c CONFIG */
static struct tu_result run_once(const char *cfg)
{
    char *path = write_cfg(cfg);
    const char *argv[] = {tu_fetchd(), "--once", "-c", path, NULL};
    return run_argv(argv);
}

static struct tu_result check_config(const char *cfg)
{
    char *path = write_cfg(cfg);
    const char *argv[] = {tu_fetchd(), "--check-config", "-c", path, NULL};
    return run_argv(argv);
}

/* fetchd -c CONFIG in the background (daemon mode) */
static void daemon_start(const char *cfg)
{
    char *path = write_cfg(cfg);
    d_out = F("%s/daemon.out", dir);
    d_err = F("%s/daemon.err", dir);
    const char *argv[] = {tu_fetchd(), "-c", path, NULL};
    daemon_pid = tu_spawn(argv, d_out, d_err);
    ENSURE(daemon_pid > 0, "cannot start fetchd");
}

static char *read_or_empty(const char *path)
{
    char *s = tu_read(path);
    return s ? s : strdup("");
}

static int daemon_stop(void)
{
    kill(daemon_pid, SIGTERM);
    int st = tu_wait(daemon_pid, 20 * tu_slack());
    daemon_pid = 0;
    return st;
}

/* ---- records --------------------------------------------------------------- */

static cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = get(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = get(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static bool rec_ok(const cJSON *rec)
{
    return cJSON_IsTrue(get(rec, "ok"));
}

static const char *kind(const cJSON *rec)
{
    const char *k = str(get(rec, "error"), "kind");
    return k ? k : "(none)";
}

static const char *errmsg(const cJSON *rec)
{
    const char *m = str(get(rec, "error"), "message");
    return m ? m : "";
}

/* The nth (0-based) record of endpoint name in JSON Lines output, or NULL.
 * Every complete line must be a JSON object. */
static cJSON *record_n(const char *out, const char *name, int nth)
{
    const char *p = out;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            break; /* a daemon may be writing this line right now */
        }
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        ENSURE(j, "a line is not JSON: %.*s", (int)(nl - p), p);
        const char *ep = str(j, "endpoint");
        if (ep && strcmp(ep, name) == 0 && nth-- == 0) {
            return KJ(j);
        }
        cJSON_Delete(j);
        p = nl + 1;
    }
    return NULL;
}

static cJSON *record_of(const char *out, const char *name)
{
    cJSON *r = record_n(out, name, 0);
    ENSURE(r, "no record for endpoint %s in:\n%s", name, out);
    return r;
}

static int count_records(const char *out, const char *name)
{
    int n = 0;
    const char *p = out;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            break;
        }
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        const char *ep = str(j, "endpoint");
        n += ep && strcmp(ep, name) == 0;
        cJSON_Delete(j);
        p = nl + 1;
    }
    return n;
}

#define ENSURE_OK(res, rec, name)                                                                  \
    ENSURE(rec_ok(rec), "%s: not ok: %s\nstderr: %s", name, cJSON_PrintUnformatted(rec), (res).err)

/* ---- talking to the test server ------------------------------------------ */

struct body {
    char *p;
    size_t n;
};

static size_t collect(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct body *b = ud;
    size_t n = size * nmemb;
    char *np = realloc(b->p, b->n + n + 1);
    if (!np) {
        return 0;
    }
    memcpy(np + b->n, ptr, n);
    b->n += n;
    np[b->n] = '\0';
    b->p = np;
    return n;
}

/* GET url (over unix_path if given); https without verification, with the
 * test client certificate when there is one. The body, or NULL. */
static char *http_get(const char *url, const char *unix_path)
{
    CURL *c = curl_easy_init();
    ENSURE(c, "curl_easy_init");
    struct body b = {NULL, 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    char *cert = NULL, *key = NULL;
    if (certs && strncmp(url, "https:", 6) == 0) {
        cert = tu_fmt("%s/client.pem", certs);
        key = tu_fmt("%s/client.key", certs);
        curl_easy_setopt(c, CURLOPT_SSLCERT, cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, key);
    }
    if (unix_path) {
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_path);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    free(cert);
    free(key);
    if (rc != CURLE_OK) {
        free(b.p);
        return NULL;
    }
    return K(b.p ? b.p : strdup(""));
}

static cJSON *http_get_json(const char *url, const char *unix_path)
{
    char *body = http_get(url, unix_path);
    ENSURE(body, "GET %s failed", url);
    cJSON *j = KJ(cJSON_Parse(body));
    ENSURE(j, "GET %s: not JSON: %s", url, body);
    return j;
}

/* The server's request log (an array, oldest first). */
static cJSON *requests_at(const char *base, const char *unix_path)
{
    cJSON *j = http_get_json(F("%s/__requests", base), unix_path);
    cJSON *a = get(j, "requests");
    ENSURE(cJSON_IsArray(a), "no requests array from %s", base);
    return a;
}

static cJSON *requests(int p)
{
    return requests_at(base_url(p), NULL);
}

static double stat_at(int p, const char *key)
{
    return num(http_get_json(F("%s/__stats", base_url(p)), NULL), key);
}

static const char *target(const cJSON *req)
{
    const char *t = str(req, "target");
    return t ? t : "";
}

/* A request header by name (case-insensitive), or NULL. */
static const char *req_header(const cJSON *req, const char *name)
{
    const cJSON *h;
    cJSON_ArrayForEach(h, get(req, "headers"))
    {
        if (strcasecmp(h->string, name) == 0 && cJSON_IsString(h)) {
            return h->valuestring;
        }
    }
    return NULL;
}

/* The nth (0-based) logged request whose target starts with prefix. */
static cJSON *find_request(const cJSON *reqs, const char *prefix, int nth)
{
    cJSON *r;
    cJSON_ArrayForEach(r, reqs)
    {
        if (strncmp(target(r), prefix, strlen(prefix)) == 0 && nth-- == 0) {
            return r;
        }
    }
    return NULL;
}

static int count_requests(const cJSON *reqs, const char *prefix)
{
    int n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, reqs)
    {
        n += strncmp(target(r), prefix, strlen(prefix)) == 0;
    }
    return n;
}

static cJSON *request_of(const cJSON *reqs, const char *prefix)
{
    cJSON *r = find_request(reqs, prefix, 0);
    ENSURE(r, "the server got no request for %s: %s", prefix, cJSON_PrintUnformatted(reqs));
    return r;
}

static char *print(const cJSON *j)
{
    return K(cJSON_PrintUnformatted(j));
}

/* ---- 1. basic auth --------------------------------------------------------- */

START_TEST(test_auth_basic_password_file)
{
    char *pw = K(tu_write(dir, "password", "s3cr3t-pw\n"));
    char *bad = K(tu_write(dir, "bad-password", "wrong-pw\n"));
    const char *need = enc_all("alice:s3cr3t-pw");
    char *cfg =
        F("{\"endpoints\": {"
          "\"good\": {\"url\": \"http://127.0.0.1:%d/basic?need_basic=%s\","
          " \"auth\": {\"type\": \"basic\", \"user\": \"alice\", \"password_file\": \"%s\"}},"
          "\"bad\": {\"url\": \"http://127.0.0.1:%d/basic-bad?need_basic=%s\","
          " \"auth\": {\"type\": \"basic\", \"user\": \"alice\", \"password_file\": \"%s\"}}}}",
          port, need, pw, port, need, bad);
    struct tu_result res = run_once(cfg);
    ENSURE(res.status == 1, "status %d: %s", res.status, res.err);
    cJSON *good = record_of(res.out, "good");
    ENSURE_OK(res, good, "good");
    ENSURE(num(good, "status") == 200, "%s", print(good));
    cJSON *b = record_of(res.out, "bad");
    ENSURE(strcmp(kind(b), "http_status") == 0, "%s", print(b));
    ENSURE(num(get(b, "error"), "http_status") == 401, "%s", print(b));

    cJSON *reqs = requests(port);
    const char *a = req_header(request_of(reqs, "/basic?"), "Authorization");
    ENSURE(a && strcmp(a, F("Basic %s", b64("alice:s3cr3t-pw"))) == 0, "Authorization %s", a);
    a = req_header(request_of(reqs, "/basic-bad?"), "Authorization");
    ENSURE(a && strcmp(a, F("Basic %s", b64("alice:wrong-pw"))) == 0, "Authorization %s", a);

    /* the secrets are nowhere in fetchd's output, nor in --check-config */
    const char *secrets[] = {"s3cr3t-pw", "wrong-pw", b64("alice:s3cr3t-pw"),
                             b64("alice:wrong-pw")};
    for (size_t i = 0; i < 4; i++) {
        ENSURE(!has(res.out, secrets[i]) && !has(res.err, secrets[i]), "%s leaked:\n%s\n%s",
               secrets[i], res.out, res.err);
    }
    struct tu_result cc = check_config(cfg);
    ENSURE(cc.status == 0, "check-config %d: %s", cc.status, cc.err);
    ENSURE(!has(cc.out, "s3cr3t-pw") && !has(cc.err, "s3cr3t-pw"), "%s", cc.out);
}
END_TEST

/* ---- 2. bearer token file, rotation without reload ------------------------- */

START_TEST(test_auth_bearer_token_file)
{
    char *tok = K(tu_write(dir, "token", "tok-one-abc\n"));
    char *cfg = F("{\"endpoints\": {\"b\": {\"url\": \"http://127.0.0.1:%d/bearer?need_bearer=%s\","
                  " \"auth\": {\"type\": \"bearer\", \"token_file\": \"%s\"}}}}",
                  port, enc_all("tok-one-abc"), tok);
    struct tu_result res = run_once(cfg);
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    ENSURE_OK(res, record_of(res.out, "b"), "b");
    const char *a = req_header(request_of(requests(port), "/bearer?"), "Authorization");
    ENSURE(a && strcmp(a, "Bearer tok-one-abc") == 0, "Authorization %s", a);
    ENSURE(!has(res.out, "tok-one-abc") && !has(res.err, "tok-one-abc"), "%s\n%s", res.out,
           res.err);
}
END_TEST

/* The Authorization of every /rot request: counts of the old token, the new
 * one and anything else; *old_after_new: the old one came after a new one */
static void rot_scan(const cJSON *reqs, int *n_old, int *n_new, int *n_other, bool *old_after_new)
{
    *n_old = *n_new = *n_other = 0;
    *old_after_new = false;
    const cJSON *r;
    cJSON_ArrayForEach(r, reqs)
    {
        if (strncmp(target(r), "/rot", 4) != 0) {
            continue;
        }
        const char *a = req_header(r, "Authorization");
        if (a && strcmp(a, "Bearer rot-token-1") == 0) {
            ++*n_old;
            *old_after_new |= *n_new > 0;
        } else if (a && strcmp(a, "Bearer rot-token-2-new") == 0) {
            ++*n_new;
        } else {
            ++*n_other;
        }
    }
}

START_TEST(test_auth_bearer_rotation_without_reload)
{
    char *tok = K(tu_write(dir, "token", "rot-token-1\n"));
    char *cfg =
        F("{\"endpoints\": {\"r\": {\"url\": \"http://127.0.0.1:%d/rot\", \"interval\": \"200ms\","
          " \"auth\": {\"type\": \"bearer\", \"token_file\": \"%s\"}}}}",
          port, tok);
    daemon_start(cfg);
    double deadline = tu_now() + 15 * tu_slack();
    int n_old = 0, n_new = 0, n_other = 0;
    bool bad_order = false;
    while (n_old < 2 && tu_now() < deadline) {
        usleep(50000);
        rot_scan(requests(port), &n_old, &n_new, &n_other, &bad_order);
    }
    ENSURE(n_old >= 2, "fewer than 2 requests with the first token (%d)", n_old);
    /* rotate the way tools do it: a new file renamed over the old one */
    char *tmp = K(tu_write(dir, "token.tmp", "rot-token-2-new\n"));
    ENSURE(rename(tmp, tok) == 0, "rename");
    /* a later request carries the new token (re-read within ~1 s + interval) */
    deadline = tu_now() + 15 * tu_slack();
    while (n_new < 2 && tu_now() < deadline) {
        usleep(50000);
        rot_scan(requests(port), &n_old, &n_new, &n_other, &bad_order);
    }
    int st = daemon_stop();
    char *out = K(read_or_empty(d_out)), *err = K(read_or_empty(d_err));
    ENSURE(n_new >= 2, "no request with the rotated token (old %d, new %d): %s", n_old, n_new, err);
    ENSURE(n_other == 0, "%d requests without either token", n_other);
    ENSURE(!bad_order, "the old token was sent again after the new one");
    ENSURE(st == 0, "status %d: %s", st, err);
    ENSURE(count_records(out, "r") >= 4, "%s", out);
    ENSURE(!has(out, "\"ok\":false"), "%s", out);
    ENSURE(!has(out, "rot-token") && !has(err, "rot-token"), "%s\n%s", out, err);
}
END_TEST

/* ---- 3. systemd credentials -------------------------------------------------- */

START_TEST(test_auth_bearer_credential)
{
    char *creds = F("%s/creds", dir);
    ENSURE(mkdir(creds, 0700) == 0, "mkdir");
    K(tu_write(creds, "api-token", "cred-tok-9\n"));
    char *cfg = F("{\"endpoints\": {\"c\": {\"url\": \"http://127.0.0.1:%d/cred?need_bearer=%s\","
                  " \"auth\": {\"type\": \"bearer\", \"token_credential\": \"api-token\"}}}}",
                  port, enc_all("cred-tok-9"));
    env_set("CREDENTIALS_DIRECTORY", creds);
    struct tu_result res = run_once(cfg);
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    ENSURE_OK(res, record_of(res.out, "c"), "c");
    const char *a = req_header(request_of(requests(port), "/cred?"), "Authorization");
    ENSURE(a && strcmp(a, "Bearer cred-tok-9") == 0, "Authorization %s", a);
    ENSURE(!has(res.out, "cred-tok-9") && !has(res.err, "cred-tok-9"), "%s\n%s", res.out, res.err);

    /* without $CREDENTIALS_DIRECTORY: a config error naming it, no request */
    env_set("CREDENTIALS_DIRECTORY", NULL);
    res = run_once(cfg);
    ENSURE(res.status == 78, "status %d: %s", res.status, res.err);
    ENSURE(has(res.err, "CREDENTIALS_DIRECTORY"), "%s", res.err);
    ENSURE(strcmp(res.out, "") == 0, "%s", res.out);
    ENSURE(count_requests(requests(port), "/cred") == 1, "a request was made");
}
END_TEST

/* ---- 4. bad secret files --------------------------------------------------------- */

START_TEST(test_secret_file_missing)
{
    char *missing = F("%s/no-such-secret", dir);
    struct tu_result res = run_once(
        F("{\"endpoints\": {\"m\": {\"url\": \"http://127.0.0.1:%d/m\","
          " \"auth\": {\"type\": \"basic\", \"user\": \"u\", \"password_file\": \"%s\"}}}}",
          port, missing));
    ENSURE(res.status == 78, "status %d: %s", res.status, res.err);
    ENSURE(has(res.err, missing), "%s", res.err);
    ENSURE(strcmp(res.out, "") == 0, "%s", res.out);
    ENSURE(stat_at(port, "requests") == 0, "a request was made");
}
END_TEST

START_TEST(test_secret_file_two_lines)
{
    char *path = K(tu_write(dir, "two-lines", "first-line-secret\nsecond-line-secret\n"));
    struct tu_result res =
        run_once(F("{\"endpoints\": {\"t\": {\"url\": \"http://127.0.0.1:%d/t\","
                   " \"auth\": {\"type\": \"bearer\", \"token_file\": \"%s\"}}}}",
                   port, path));
    ENSURE(res.status == 78, "status %d: %s", res.status, res.err);
    ENSURE(has(res.err, path), "%s", res.err);
    ENSURE(!has(res.err, "line-secret") && !has(res.out, "line-secret"), "echoed: %s", res.err);
    ENSURE(stat_at(port, "requests") == 0, "a request was made");
}
END_TEST

/* ---- 5. OAuth2 client credentials ------------------------------------------- */

/* The token URL for the test server's /token with its expected client.
 * fetchd refuses a token URL whose query has a secret-looking parameter
 * name ("the token URL must not carry credentials"), so the name
 * client_secret is sent as client_%73ecret, which the server decodes; the
 * value is escaped byte by byte so it never shows in fetchd's output. */
static char *token_url(int p, const char *id, const char *secret)
{
    return F("http://127.0.0.1:%d/token?client_id=%s&client_%%73ecret=%s&expires_in=3600", p, id,
             enc_all(secret));
}

START_TEST(test_oauth2_shared_token)
{
    char *sec = K(tu_write(dir, "client-secret", "cs-42-shh\n"));
    char *eps = K(strdup(""));
    for (int i = 0; i < 5; i++) {
        eps = F("%s%s\"o%d\": {\"url\": \"http://127.0.0.1:%d/o%d?need_token=1\"}", eps,
                i ? "," : "", i, port, i);
    }
    /* auth in defaults: shared by the five */
    char *cfg = F("{\"defaults\": {\"auth\": {\"type\": \"oauth2\", \"token_url\": \"%s\","
                  " \"client_id\": \"app1\", \"client_secret_file\": \"%s\"}},"
                  " \"endpoints\": {%s}}",
                  token_url(port, "app1", "cs-42-shh"), sec, eps);
    struct tu_result res = run_once(cfg);
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    for (int i = 0; i < 5; i++) {
        cJSON *r = record_of(res.out, F("o%d", i));
        ENSURE_OK(res, r, "o");
        ENSURE(num(r, "attempts") == 1, "%s", print(r));
    }
    ENSURE(stat_at(port, "tokens_issued") == 1, "tokens issued: %g",
           stat_at(port, "tokens_issued"));
    cJSON *reqs = requests(port);
    ENSURE(count_requests(reqs, "/token") == 1, "%s", print(reqs));
    cJSON *t = request_of(reqs, "/token");
    ENSURE(streq(str(t, "method"), "POST"), "%s", print(t));
    const char *a = req_header(t, "Authorization");
    ENSURE(a && strcmp(a, F("Basic %s", b64("app1:cs-42-shh"))) == 0, "token request: %s",
           print(t));
    const char *ct = req_header(t, "Content-Type");
    ENSURE(ct && has(ct, "application/x-www-form-urlencoded"), "%s", print(t));
    ENSURE(streq(str(t, "body"), "grant_type=client_credentials"), "%s", print(t));
    for (int i = 0; i < 5; i++) {
        cJSON *r = request_of(reqs, F("/o%d?", i));
        a = req_header(r, "Authorization");
        ENSURE(a && strcmp(a, "Bearer tok-1") == 0, "%s", print(r));
    }
    const char *secrets[] = {"cs-42-shh", b64("app1:cs-42-shh"), "tok-1"};
    for (size_t i = 0; i < 3; i++) {
        ENSURE(!has(res.out, secrets[i]) && !has(res.err, secrets[i]), "%s leaked:\n%s\n%s",
               secrets[i], res.out, res.err);
    }
}
END_TEST

START_TEST(test_oauth2_client_auth_body)
{
    char *sec = K(tu_write(dir, "client-secret", "body-secret-5\n"));
    char *cfg = F(
        "{\"endpoints\": {\"b\": {\"url\": \"http://127.0.0.1:%d/ob?need_token=1\","
        " \"auth\": {\"type\": \"oauth2\", \"token_url\": \"%s\", \"client_id\": \"app1\","
        " \"client_secret_file\": \"%s\", \"client_auth\": \"body\", \"scope\": \"read write\"}}}}",
        port, token_url(port, "app1", "body-secret-5"), sec);
    struct tu_result res = run_once(cfg);
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    ENSURE_OK(res, record_of(res.out, "b"), "b");
    cJSON *t = request_of(requests(port), "/token");
    ENSURE(req_header(t, "Authorization") == NULL, "Authorization on /token: %s", print(t));
    const char *body = str(t, "body");
    ENSURE(has(body, "grant_type=client_credentials") && has(body, "client_id=app1") &&
               has(body, "client_secret=body-secret-5") &&
               (has(body, "scope=read%20write") || has(body, "scope=read+write")),
           "token request body: %s", body);
    ENSURE(stat_at(port, "tokens_issued") == 1, "tokens");
    ENSURE(!has(res.out, "body-secret-5") && !has(res.err, "body-secret-5"), "%s\n%s", res.out,
           res.err);
}
END_TEST

START_TEST(test_oauth2_wrong_secret)
{
    char *sec = K(tu_write(dir, "client-secret", "not-the-secret-77\n"));
    char *turl = token_url(port, "app1", "cs-42");
    char *cfg = F("{\"defaults\": {\"auth\": {\"type\": \"oauth2\", \"token_url\": \"%s\","
                  " \"client_id\": \"app1\", \"client_secret_file\": \"%s\"}},"
                  " \"endpoints\": {\"w0\": {\"url\": \"http://127.0.0.1:%d/w0?need_token=1\"},"
                  " \"w1\": {\"url\": \"http://127.0.0.1:%d/w1?need_token=1\"}}}",
                  turl, sec, port, port);
    struct tu_result res = run_once(cfg);
    ENSURE(res.status == 1, "status %d: %s\n%s", res.status, res.err, res.out);
    const char *names[] = {"w0", "w1"};
    char *url_prefix = F("http://127.0.0.1:%d/token", port);
    for (int i = 0; i < 2; i++) {
        cJSON *r = record_of(res.out, names[i]);
        ENSURE(strcmp(kind(r), "auth") == 0, "%s", print(r));
        ENSURE(has(errmsg(r), url_prefix), "message without the token URL: %s", print(r));
    }
    cJSON *reqs = requests(port);
    /* one token request for both (they wait on the same one), no endpoint
     * request without a token */
    ENSURE(count_requests(reqs, "/token") == 1, "%s", print(reqs));
    ENSURE(count_requests(reqs, "/w") == 0, "%s", print(reqs));
    ENSURE(stat_at(port, "tokens_issued") == 0, "tokens");
    ENSURE(!has(res.out, "not-the-secret") && !has(res.err, "not-the-secret"), "%s\n%s", res.out,
           res.err);
    ENSURE(!has(res.out, b64("app1:not-the-secret-77")) &&
               !has(res.err, b64("app1:not-the-secret-77")),
           "%s", res.err);
}
END_TEST

/* index in reqs of a request, -1 if absent */
static int req_index(const cJSON *reqs, const cJSON *req)
{
    int i = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, reqs)
    {
        if (r == req) {
            return i;
        }
        i++;
    }
    return -1;
}

/* number of records of r that are ok with the given attempts (0: any) */
static int ok_records(const char *out, const char *name, int attempts, bool *any_failed)
{
    int n = 0;
    *any_failed = false;
    for (int i = 0;; i++) {
        cJSON *r = record_n(out, name, i);
        if (!r) {
            break;
        }
        if (!rec_ok(r)) {
            *any_failed = true;
        } else if (!attempts || num(r, "attempts") == attempts) {
            n++;
        }
    }
    return n;
}

START_TEST(test_oauth2_revoked_token_refetched_once)
{
    char *sec = K(tu_write(dir, "client-secret", "cs-rev\n"));
    char *cfg =
        F("{\"endpoints\": {\"r\": {\"url\": \"http://127.0.0.1:%d/rv?need_token=1\","
          " \"interval\": \"200ms\","
          " \"auth\": {\"type\": \"oauth2\", \"token_url\": \"%s\", \"client_id\": \"app1\","
          " \"client_secret_file\": \"%s\"}}}}",
          port, token_url(port, "app1", "cs-rev"), sec);
    daemon_start(cfg);
    double deadline = tu_now() + 15 * tu_slack();
    bool failed = false;
    char *out = NULL;
    while (tu_now() < deadline) {
        usleep(50000);
        free(out);
        out = read_or_empty(d_out);
        if (ok_records(out, "r", 1, &failed) >= 2) {
            break;
        }
    }
    free(out);
    out = K(read_or_empty(d_out));
    ENSURE(ok_records(out, "r", 1, &failed) >= 2, "no two fetches with a token: %s", out);
    cJSON *rv = http_get_json(F("%s/__revoke", base_url(port)), NULL);
    ENSURE(num(rv, "revoked") == 1, "%s", print(rv));
    /* the next fetch gets 401, fetchd gets a new token and tries again */
    deadline = tu_now() + 15 * tu_slack();
    out = NULL;
    while (tu_now() < deadline) {
        usleep(50000);
        free(out);
        out = read_or_empty(d_out);
        if (ok_records(out, "r", 2, &failed) >= 1 && ok_records(out, "r", 1, &failed) >= 3) {
            break; /* one more plain fetch after the recovery too */
        }
    }
    free(out);
    int st = daemon_stop();
    out = K(read_or_empty(d_out));
    char *err = K(read_or_empty(d_err));
    ENSURE(st == 0, "status %d: %s", st, err);
    ENSURE(ok_records(out, "r", 2, &failed) == 1,
           "no (or more than one) recovery with attempts 2:\n%s\n%s", out, err);
    ENSURE(!failed, "a failed record: %s\n%s", out, err);
    ENSURE(stat_at(port, "tokens_issued") == 2, "tokens issued: %g",
           stat_at(port, "tokens_issued"));
    cJSON *reqs = requests(port);
    ENSURE(count_requests(reqs, "/token") == 2, "%s", print(reqs));
    /* order: ... /rv with tok-1 (the 401), /token, /rv with tok-2 ... */
    int last_tok1 = -1, first_tok2 = -1;
    const cJSON *r;
    int i = 0;
    cJSON_ArrayForEach(r, reqs)
    {
        const char *a = req_header(r, "Authorization");
        if (strncmp(target(r), "/rv", 3) == 0 && a && strcmp(a, "Bearer tok-1") == 0) {
            last_tok1 = i;
        }
        if (strncmp(target(r), "/rv", 3) == 0 && a && strcmp(a, "Bearer tok-2") == 0 &&
            first_tok2 < 0) {
            first_tok2 = i;
        }
        i++;
    }
    int second_token = req_index(reqs, find_request(reqs, "/token", 1));
    ENSURE(last_tok1 >= 0 && last_tok1 < second_token && second_token < first_tok2,
           "order: last tok-1 %d, second /token %d, first tok-2 %d", last_tok1, second_token,
           first_tok2);
    ENSURE(!has(err, "cs-rev") && !has(out, "cs-rev") && !has(err, "tok-1") && !has(err, "tok-2"),
           "%s", err);
}
END_TEST

/* ---- 6. TLS ---------------------------------------------------------------------- */

static void mint(void)
{
    certs = tu_tmpdir();
    ck_assert_msg(tu_mint_certs(certs) == 0, "cannot mint certificates (openssl)");
}

static void unmint(void)
{
    tu_rmdir(certs);
    free(certs);
    certs = NULL;
}

static char *cert(const char *name)
{
    return F("%s/%s", certs, name);
}

/* A TLS test server with the given certificate and extra arguments. */
static int tls_server(const char *crt, const char *key, const char *a1, const char *a2)
{
    int p;
    const char *args[] = {"--tls-cert", cert(crt), "--tls-key", cert(key), a1, a2, NULL};
    start_server(&p, args);
    return p;
}

static char *https_base(int p)
{
    return F("https://127.0.0.1:%d", p);
}

START_TEST(test_tls_default_verification_fails)
{
    int tp = tls_server("server.pem", "server.key", NULL, NULL);
    struct tu_result res =
        run_once(F("{\"endpoints\": {\"v\": {\"url\": \"https://127.0.0.1:%d/v\"}}}", tp));
    ENSURE(res.status == 1, "status %d: %s\n%s", res.status, res.err, res.out);
    cJSON *r = record_of(res.out, "v");
    ENSURE(strcmp(kind(r), "tls") == 0, "%s", print(r));
    double vr = num(get(r, "error"), "verify_result");
    ENSURE(!isnan(vr) && vr != 0, "verify_result: %s", print(r));
    ENSURE(has(errmsg(r), "certificate"), "%s", print(r));
    ENSURE(count_requests(requests_at(https_base(tp), NULL), "/v") == 0, "a request got through");
}
END_TEST

START_TEST(test_tls_ca_file)
{
    int tp = tls_server("server.pem", "server.key", NULL, NULL);
    struct tu_result res =
        run_once(F("{\"endpoints\": {\"v\": {\"url\": \"https://127.0.0.1:%d/v\", \"tls\": "
                   "{\"ca_file\": \"%s\"}}}}",
                   tp, cert("ca.pem")));
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    cJSON *r = record_of(res.out, "v");
    ENSURE_OK(res, r, "v");
    ENSURE(streq(str(get(r, "data"), "path"), "/v"), "%s", print(r));
    ENSURE(count_requests(requests_at(https_base(tp), NULL), "/v") == 1, "request count");
}
END_TEST

START_TEST(test_tls_verify_off_warns)
{
    int tp = tls_server("server.pem", "server.key", NULL, NULL);
    struct tu_result res = run_once(
        F("{\"endpoints\": {\"insecure\": {\"url\": \"https://127.0.0.1:%d/i\", \"tls\": "
          "{\"verify\": false}},"
          " \"checked\": {\"url\": \"https://127.0.0.1:%d/c\", \"tls\": {\"ca_file\": \"%s\"}}}}",
          tp, tp, cert("ca.pem")));
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    ENSURE_OK(res, record_of(res.out, "insecure"), "insecure");
    ENSURE_OK(res, record_of(res.out, "checked"), "checked");
    /* one warning, on the line naming the endpoint; none for the other */
    const char *line = strstr(res.err, "TLS verification is off");
    ENSURE(line, "no warning: %s", res.err);
    const char *bol = line;
    while (bol > res.err && bol[-1] != '\n') {
        bol--;
    }
    char *warning = F("%.*s", (int)strcspn(bol, "\n"), bol);
    ENSURE(has(warning, "'insecure'"), "the warning does not name the endpoint: %s", res.err);
    ENSURE(!strstr(line + 1, "TLS verification is off"), "warned twice: %s", res.err);
    cJSON *reqs = requests_at(https_base(tp), NULL);
    ENSURE(count_requests(reqs, "/i") == 1 && count_requests(reqs, "/c") == 1, "%s", print(reqs));
}
END_TEST

START_TEST(test_tls_client_certificate)
{
    int tp = tls_server("server.pem", "server.key", "--tls-client-ca", cert("ca.pem"));
    char *ca = cert("ca.pem");
    struct tu_result res = run_once(
        F("{\"endpoints\": {"
          "\"nocert\": {\"url\": \"https://127.0.0.1:%d/nocert\", \"tls\": {\"ca_file\": \"%s\"}},"
          "\"cert\": {\"url\": \"https://127.0.0.1:%d/cert\", \"tls\": {\"ca_file\": \"%s\","
          " \"client_cert\": \"%s\", \"client_key\": \"%s\"}},"
          "\"other\": {\"url\": \"https://127.0.0.1:%d/other\", \"tls\": {\"ca_file\": \"%s\","
          " \"client_cert\": \"%s\", \"client_key\": \"%s\"}}}}",
          tp, ca, tp, ca, cert("client.pem"), cert("client.key"), tp, ca, cert("other-client.pem"),
          cert("other-client.key")));
    ENSURE(res.status == 1, "status %d: %s\n%s", res.status, res.err, res.out);
    ENSURE_OK(res, record_of(res.out, "cert"), "cert");
    const char *bad[] = {"nocert", "other"};
    for (int i = 0; i < 2; i++) {
        cJSON *r = record_of(res.out, bad[i]);
        ENSURE(strcmp(kind(r), "tls") == 0 || strcmp(kind(r), "network") == 0, "%s", print(r));
    }
    cJSON *reqs = requests_at(https_base(tp), NULL);
    ENSURE(count_requests(reqs, "/cert") == 1, "%s", print(reqs));
    ENSURE(count_requests(reqs, "/nocert") == 0 && count_requests(reqs, "/other") == 0, "%s",
           print(reqs));
}
END_TEST

START_TEST(test_tls_min_version)
{
    int tp = tls_server("server.pem", "server.key", "--tls-max-version", "1.2");
    char *ca = cert("ca.pem");
    struct tu_result res = run_once(F("{\"endpoints\": {"
                                      "\"v13\": {\"url\": \"https://127.0.0.1:%d/v13\", \"tls\": "
                                      "{\"ca_file\": \"%s\", \"min_version\": \"1.3\"}},"
                                      "\"v12\": {\"url\": \"https://127.0.0.1:%d/v12\", \"tls\": "
                                      "{\"ca_file\": \"%s\", \"min_version\": \"1.2\"}}}}",
                                      tp, ca, tp, ca));
    ENSURE(res.status == 1, "status %d: %s\n%s", res.status, res.err, res.out);
    ENSURE_OK(res, record_of(res.out, "v12"), "v12");
    cJSON *r = record_of(res.out, "v13");
    ENSURE(strcmp(kind(r), "tls") == 0, "%s", print(r));
    cJSON *reqs = requests_at(https_base(tp), NULL);
    ENSURE(count_requests(reqs, "/v12") == 1 && count_requests(reqs, "/v13") == 0, "%s",
           print(reqs));
}
END_TEST

START_TEST(test_tls_self_signed_other_ca)
{
    int tp = tls_server("self.pem", "self.key", NULL, NULL);
    struct tu_result res =
        run_once(F("{\"endpoints\": {\"s\": {\"url\": \"https://127.0.0.1:%d/s\", \"tls\": "
                   "{\"ca_file\": \"%s\"}}}}",
                   tp, cert("other-ca.pem")));
    ENSURE(res.status == 1, "status %d: %s\n%s", res.status, res.err, res.out);
    cJSON *r = record_of(res.out, "s");
    ENSURE(strcmp(kind(r), "tls") == 0, "%s", print(r));
    double vr = num(get(r, "error"), "verify_result");
    ENSURE(!isnan(vr) && vr != 0, "verify_result: %s", print(r));
    ENSURE(has(errmsg(r), "certificate"), "%s", print(r));
    ENSURE(count_requests(requests_at(https_base(tp), NULL), "/s") == 0, "a request got through");
}
END_TEST

START_TEST(test_tls_missing_files_are_config_errors)
{
    char *missing = cert("no-such-ca.pem");
    struct tu_result res =
        run_once(F("{\"endpoints\": {\"m\": {\"url\": \"https://127.0.0.1:%d/m\", \"tls\": "
                   "{\"ca_file\": \"%s\"}}}}",
                   port, missing));
    ENSURE(res.status == 78, "status %d: %s", res.status, res.err);
    ENSURE(has(res.err, missing), "%s", res.err);
    ENSURE(strcmp(res.out, "") == 0, "%s", res.out);
    /* a key without its certificate */
    res = run_once(F("{\"endpoints\": {\"k\": {\"url\": \"https://127.0.0.1:%d/k\", \"tls\": "
                     "{\"client_key\": \"%s\"}}}}",
                     port, cert("client.key")));
    ENSURE(res.status == 78, "status %d: %s", res.status, res.err);
    ENSURE(has(res.err, "client_cert"), "%s", res.err);
}
END_TEST

/* ---- 7. proxies -------------------------------------------------------------------- */

START_TEST(test_proxy_explicit)
{
    /* example.invalid is never resolved: the proxy (the test server) gets
     * the absolute-form target; the environment's no_proxy=* (set by the
     * meson test env) does not apply to an explicit proxy */
    struct tu_result res =
        run_once(F("{\"endpoints\": {\"p\": {\"url\": \"http://example.invalid/x?status=200\","
                   " \"proxy\": \"http://127.0.0.1:%d\"}}}",
                   port));
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    cJSON *r = record_of(res.out, "p");
    ENSURE_OK(res, r, "p");
    ENSURE(streq(str(get(r, "data"), "path"), "/x"), "%s", print(r));
    cJSON *reqs = requests(port);
    cJSON *q = request_of(reqs, "http://example.invalid/x?status=200");
    ENSURE(strcmp(target(q), "http://example.invalid/x?status=200") == 0, "%s", print(q));
    ENSURE(has(req_header(q, "Host"), "example.invalid"), "%s", print(q));
    ENSURE(cJSON_GetArraySize(reqs) == 1, "%s", print(reqs));
}
END_TEST

START_TEST(test_proxy_empty_means_none)
{
    /* a proxy in the environment (the second server), no_proxy cleared:
     * endpoints without "proxy" use it, "proxy": "" goes direct */
    int pp;
    start_server(&pp, NULL);
    env_set("http_proxy", F("http://127.0.0.1:%d", pp));
    env_set("no_proxy", "");
    env_set("NO_PROXY", "");
    struct tu_result res = run_once(
        F("{\"endpoints\": {"
          "\"env\": {\"url\": \"http://127.0.0.1:%d/env?status=200\"},"
          "\"none\": {\"url\": \"http://127.0.0.1:%d/none?status=200\", \"proxy\": \"\"}}}",
          port, port));
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    ENSURE_OK(res, record_of(res.out, "env"), "env");
    ENSURE_OK(res, record_of(res.out, "none"), "none");
    cJSON *direct = requests(port), *proxied = requests(pp);
    ENSURE(count_requests(direct, "/none?status=200") == 1, "direct: %s", print(direct));
    ENSURE(count_requests(proxied, "/none") == 0 &&
               count_requests(proxied, "http://127.0.0.1") == 1,
           "proxy: %s", print(proxied));
    ENSURE(count_requests(proxied, F("http://127.0.0.1:%d/env?status=200", port)) == 1, "proxy: %s",
           print(proxied));
    ENSURE(count_requests(direct, "/env") == 0, "direct: %s", print(direct));
}
END_TEST

/* ---- 8. unix sockets ----------------------------------------------------------------- */

START_TEST(test_unix_socket)
{
    char *sock = F("%s/httpd.sock", dir);
    int up;
    const char *args[] = {"--unix", sock, NULL};
    start_server(&up, args);
    struct tu_result res =
        run_once(F("{\"endpoints\": {\"u\": {\"url\": \"http://localhost/u?status=200\", "
                   "\"unix_socket\": \"%s\"}}}",
                   sock));
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    cJSON *r = record_of(res.out, "u");
    ENSURE_OK(res, r, "u");
    ENSURE(streq(str(get(r, "data"), "path"), "/u"), "%s", print(r));
    cJSON *reqs = requests_at("http://localhost", sock);
    cJSON *q = request_of(reqs, "/u?status=200");
    ENSURE(has(req_header(q, "Host"), "localhost"), "%s", print(q));
    ENSURE(count_requests(requests(port), "/u") == 0, "went to the TCP server");
}
END_TEST

/* ---- 9. compression ------------------------------------------------------------------- */

START_TEST(test_compression)
{
    struct tu_result res = run_once(F(
        "{\"endpoints\": {"
        "\"gz\": {\"url\": \"http://127.0.0.1:%d/gz?gzip=1\", \"compression\": true},"
        "\"gz2\": {\"url\": \"http://127.0.0.1:%d/gz2?encoding=gzip,gzip\", \"compression\": true},"
        "\"df\": {\"url\": \"http://127.0.0.1:%d/df?encoding=deflate\", \"compression\": "
        "[\"deflate\"]}}}",
        port, port, port));
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    const char *names[] = {"gz", "gz2", "df"};
    for (int i = 0; i < 3; i++) {
        cJSON *r = record_of(res.out, names[i]);
        ENSURE_OK(res, r, names[i]);
        cJSON *d = get(r, "data");
        ENSURE(streq(str(d, "path"), F("/%s", names[i])), "%s", print(r));
        ENSURE(cJSON_GetArraySize(get(d, "items")) == 3, "%s", print(r));
        ENSURE(streq(str(get(d, "nested"), "a"), "b"), "%s", print(r));
    }
    cJSON *reqs = requests(port);
    const char *ae = req_header(request_of(reqs, "/gz?"), "Accept-Encoding");
    ENSURE(has(ae, "gzip"), "Accept-Encoding: %s", ae);
    ae = req_header(request_of(reqs, "/gz2?"), "Accept-Encoding");
    ENSURE(has(ae, "gzip"), "Accept-Encoding: %s", ae);
    ae = req_header(request_of(reqs, "/df?"), "Accept-Encoding");
    ENSURE(has(ae, "deflate") && !has(ae, "gzip"), "Accept-Encoding: %s", ae);
}
END_TEST

START_TEST(test_compression_bomb)
{
    /* 100 MB decoded from ~100 KB on the wire: stopped at 1 MiB, quickly */
    struct tu_result res =
        run_once(F("{\"endpoints\": {\"bomb\": {\"url\": \"http://127.0.0.1:%d/b?bomb=100000000\","
                   " \"compression\": true, \"max_body_size\": \"1MiB\"}}}",
                   port));
    ENSURE(res.status == 1, "status %d: %s\n%s", res.status, res.err, res.out);
    cJSON *r = record_of(res.out, "bomb");
    ENSURE(strcmp(kind(r), "too_large") == 0, "%s", print(r));
    ENSURE(has(errmsg(r), "decompression"), "%s", print(r));
    ENSURE(num(r, "bytes") <= 1024 * 1024, "%s", print(r));
    ENSURE(res.seconds < 3 * tu_slack(), "took %.2f s", res.seconds);
    ENSURE(has(req_header(request_of(requests(port), "/b?"), "Accept-Encoding"), "gzip"), "AE");
}
END_TEST

START_TEST(test_gzip_body_without_compression)
{
    /* Without "compression" fetchd sends no Accept-Encoding and decodes
     * nothing; a server that gzips anyway (gzip=1 ignores the request's
     * Accept-Encoding) delivers compressed bytes labelled application/json:
     * observed (and expected): invalid_json at byte 0. */
    struct tu_result res = run_once(
        F("{\"endpoints\": {\"ng\": {\"url\": \"http://127.0.0.1:%d/ng?gzip=1\"}}}", port));
    ENSURE(res.status == 1, "status %d: %s\n%s", res.status, res.err, res.out);
    cJSON *r = record_of(res.out, "ng");
    ENSURE(strcmp(kind(r), "invalid_json") == 0, "%s", print(r));
    ENSURE(num(get(r, "error"), "offset") == 0, "%s", print(r));
    cJSON *q = request_of(requests(port), "/ng?");
    ENSURE(req_header(q, "Accept-Encoding") == NULL, "%s", print(q));
}
END_TEST

/* ---- 10. redirects -------------------------------------------------------------------- */

/* the headers and auth of the redirect tests */
static char *redirect_endpoint(const char *name, const char *url, const char *tokfile)
{
    return F("\"%s\": {\"url\": \"%s\", \"follow_redirects\": true,"
             " \"headers\": {\"X-Api-Key\": \"secret123\", \"Accept\": \"application/json\","
             " \"X-Tenant\": \"acme\", \"X-Plain\": \"plain\"},"
             " \"secret_headers\": [\"X-Tenant\"],"
             " \"auth\": {\"type\": \"bearer\", \"token_file\": \"%s\"}}",
             name, url, tokfile);
}

static void ensure_secrets_sent(const cJSON *q, bool sent)
{
    const char *key = req_header(q, "X-Api-Key"), *auth = req_header(q, "Authorization"),
               *tenant = req_header(q, "X-Tenant");
    if (sent) {
        ENSURE(key && strcmp(key, "secret123") == 0, "%s", print(q));
        ENSURE(auth && strcmp(auth, "Bearer redir-bearer-1") == 0, "%s", print(q));
        ENSURE(tenant && strcmp(tenant, "acme") == 0, "%s", print(q));
    } else {
        ENSURE(!key && !auth && !tenant, "a secret crossed origins: %s", print(q));
    }
    /* the others always go */
    const char *accept = req_header(q, "Accept"), *plain = req_header(q, "X-Plain");
    ENSURE(accept && strcmp(accept, "application/json") == 0, "%s", print(q));
    ENSURE(plain && strcmp(plain, "plain") == 0, "%s", print(q));
}

START_TEST(test_redirect_cross_origin_drops_secrets)
{
    int op;
    start_server(&op, NULL);
    char *tok = K(tu_write(dir, "token", "redir-bearer-1\n"));
    char *to = F("http://127.0.0.1:%d/landed?status=200", op);
    struct tu_result res = run_once(
        F("{\"endpoints\": {%s}}",
          redirect_endpoint("x", F("http://127.0.0.1:%d/start?redirect=%s", port, enc(to)), tok)));
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    cJSON *r = record_of(res.out, "x");
    ENSURE_OK(res, r, "x");
    ENSURE(streq(str(get(r, "data"), "path"), "/landed"), "%s", print(r));
    ensure_secrets_sent(request_of(requests(port), "/start?"), true);
    cJSON *other = requests(op);
    ENSURE(cJSON_GetArraySize(other) == 1, "%s", print(other));
    ensure_secrets_sent(request_of(other, "/landed?"), false);
    ENSURE(!has(res.err, "redir-bearer-1") && !has(res.out, "redir-bearer-1"), "%s", res.err);
    /* nor does --check-config show secret header values */
    struct tu_result cc = check_config(
        F("{\"endpoints\": {%s}}", redirect_endpoint("x", F("http://127.0.0.1:%d/", port), tok)));
    ENSURE(cc.status == 0, "check-config %d: %s", cc.status, cc.err);
    ENSURE(!has(cc.out, "secret123") && !has(cc.out, "acme") && !has(cc.out, "redir-bearer-1"),
           "%s", cc.out);
}
END_TEST

START_TEST(test_redirect_same_origin_keeps_secrets)
{
    char *tok = K(tu_write(dir, "token", "redir-bearer-1\n"));
    char *abs = F("http://127.0.0.1:%d/landed-abs?status=200", port);
    struct tu_result res = run_once(F(
        "{\"endpoints\": {%s, %s}}",
        redirect_endpoint(
            "rel", F("http://127.0.0.1:%d/s-rel?redirect=%s", port, enc("/landed-rel?status=200")),
            tok),
        redirect_endpoint("abs", F("http://127.0.0.1:%d/s-abs?redirect=%s", port, enc(abs)), tok)));
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    ENSURE_OK(res, record_of(res.out, "rel"), "rel");
    ENSURE_OK(res, record_of(res.out, "abs"), "abs");
    cJSON *reqs = requests(port);
    ensure_secrets_sent(request_of(reqs, "/s-rel?"), true);
    ensure_secrets_sent(request_of(reqs, "/landed-rel?"), true);
    ensure_secrets_sent(request_of(reqs, "/s-abs?"), true);
    ensure_secrets_sent(request_of(reqs, "/landed-abs?"), true);
}
END_TEST

START_TEST(test_redirect_loop)
{
    struct tu_result res =
        run_once(F("{\"endpoints\": {\"loop\": {\"url\": \"http://127.0.0.1:%d/loop?loop=1\","
                   " \"follow_redirects\": true, \"max_redirects\": 3}}}",
                   port));
    ENSURE(res.status == 1, "status %d: %s\n%s", res.status, res.err, res.out);
    cJSON *r = record_of(res.out, "loop");
    ENSURE(strcmp(kind(r), "redirect") == 0, "%s", print(r));
    ENSURE(has(errmsg(r), "max_redirects"), "%s", print(r));
    /* the first request and 3 redirects followed */
    cJSON *reqs = requests(port);
    ENSURE(count_requests(reqs, "/loop?loop=1") == 4 && cJSON_GetArraySize(reqs) == 4, "%s",
           print(reqs));
}
END_TEST

START_TEST(test_redirect_to_disallowed_scheme)
{
    struct tu_result res =
        run_once(F("{\"endpoints\": {\"f\": {\"url\": \"http://127.0.0.1:%d/f?redirect=%s\","
                   " \"follow_redirects\": true}}}",
                   port, enc("file:///etc/passwd")));
    ENSURE(res.status == 1, "status %d: %s\n%s", res.status, res.err, res.out);
    cJSON *r = record_of(res.out, "f");
    ENSURE(strcmp(kind(r), "protocol") == 0, "%s", print(r));
    /* fetchd's own check of the hop (libcurl's protocol list would also
     * refuse it, with another message) */
    ENSURE(has(errmsg(r), "scheme"), "%s", print(r));
    ENSURE(!has(res.out, "root:"), "the file was read: %s", res.out);
    ENSURE(cJSON_GetArraySize(requests(port)) == 1, "requests");
}
END_TEST

START_TEST(test_redirect_method_changes)
{
    const char *const cases[][2] = {{"p303", "303"}, {"p302", "302"}, {"p307", "307"}};
    char *eps = K(strdup(""));
    for (int i = 0; i < 3; i++) {
        eps = F("%s%s\"%s\": {\"url\": \"http://127.0.0.1:%d/%s?redirect=%s&redirect_status=%s\","
                " \"method\": \"POST\", \"body\": {\"a\": 1}, \"follow_redirects\": true}",
                eps, i ? "," : "", cases[i][0], port, cases[i][0], enc(F("/after-%s", cases[i][0])),
                cases[i][1]);
    }
    struct tu_result res = run_once(F("{\"endpoints\": {%s}}", eps));
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    cJSON *reqs = requests(port);
    for (int i = 0; i < 3; i++) {
        ENSURE_OK(res, record_of(res.out, cases[i][0]), cases[i][0]);
        cJSON *first = request_of(reqs, F("/%s?", cases[i][0]));
        ENSURE(streq(str(first, "method"), "POST") && streq(str(first, "body"), "{\"a\":1}"), "%s",
               print(first));
        cJSON *next = request_of(reqs, F("/after-%s", cases[i][0]));
        if (i < 2) {
            /* 303 (any method), 301/302 after POST: a GET without a body */
            ENSURE(streq(str(next, "method"), "GET"), "%s", print(next));
            ENSURE(streq(str(next, "body"), ""), "%s", print(next));
            ENSURE(!req_header(next, "Content-Type"), "%s", print(next));
            const char *cl = req_header(next, "Content-Length");
            ENSURE(!cl || strcmp(cl, "0") == 0, "%s", print(next));
        } else {
            /* 307 keeps both */
            ENSURE(streq(str(next, "method"), "POST") && streq(str(next, "body"), "{\"a\":1}"),
                   "%s", print(next));
            ENSURE(has(req_header(next, "Content-Type"), "application/json"), "%s", print(next));
        }
    }
}
END_TEST

START_TEST(test_redirect_not_followed_by_default)
{
    struct tu_result res =
        run_once(F("{\"endpoints\": {\"r\": {\"url\": \"http://127.0.0.1:%d/r?redirect=%s\"}}}",
                   port, enc("/elsewhere")));
    ENSURE(res.status == 1, "status %d: %s\n%s", res.status, res.err, res.out);
    cJSON *r = record_of(res.out, "r");
    ENSURE(strcmp(kind(r), "http_status") == 0, "%s", print(r));
    ENSURE(num(r, "status") == 302, "%s", print(r));
    ENSURE(has(errmsg(r), "follow_redirects"), "%s", print(r));
    cJSON *reqs = requests(port);
    ENSURE(cJSON_GetArraySize(reqs) == 1 && count_requests(reqs, "/elsewhere") == 0, "%s",
           print(reqs));
}
END_TEST

/* ---- 11. schemes ---------------------------------------------------------------------- */

START_TEST(test_file_scheme)
{
    char *data = K(tu_write(dir, "data.json", "{\"from\": \"file\", \"n\": [1, 2]}\n"));
    struct tu_result res = run_once(F("{\"endpoints\": {\"f\": {\"url\": \"file://%s\"}}}", data));
    ENSURE(res.status == 78, "status %d: %s\n%s", res.status, res.err, res.out);
    ENSURE(has(res.err, "schemes") && has(res.err, "file"), "%s", res.err);
    ENSURE(strcmp(res.out, "") == 0, "%s", res.out);

    res = run_once(
        F("{\"endpoints\": {\"f\": {\"url\": \"file://%s\", \"schemes\": [\"file\"]}}}", data));
    cJSON *r = record_of(res.out, "f");
    ENSURE(rec_ok(r), "a file:// URL with schemes [\"file\"]: %s\nstderr: %s", print(r), res.err);
    ENSURE(res.status == 0, "status %d: %s", res.status, res.err);
    cJSON *d = get(r, "data");
    ENSURE(streq(str(d, "from"), "file") && cJSON_GetArraySize(get(d, "n")) == 2, "%s", print(r));
}
END_TEST

/* ---- 12. timings ------------------------------------------------------------------------ */

/* Checks a timings record; returns the timings object. */
static cJSON *ensure_timings(const char *line_out, const char *name, bool tls)
{
    cJSON *r = record_of(line_out, name);
    ENSURE(rec_ok(r), "%s", print(r));
    ENSURE(str(r, "http_version") && streq(str(r, "http_version"), "1.1"), "%s", print(r));
    cJSON *t = get(r, "timings");
    ENSURE(cJSON_IsObject(t) && cJSON_GetArraySize(t) == 5, "%s", print(r));
    static const char *const k[5] = {"dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "total_ms"};
    double v[5];
    for (int i = 0; i < 5; i++) {
        v[i] = num(t, k[i]);
        ENSURE(!isnan(v[i]) && v[i] >= 0, "%s: %s", k[i], print(r));
    }
    ENSURE(v[0] <= v[1] && v[1] <= v[3] && v[3] <= v[4], "not cumulative: %s", print(r));
    ENSURE(v[4] > 0, "%s", print(r));
    if (tls) {
        ENSURE(v[2] > 0 && v[1] <= v[2] && v[2] <= v[3], "tls_ms: %s", print(r));
    } else {
        ENSURE(v[2] == 0 || (v[1] <= v[2] && v[2] <= v[3]), "tls_ms: %s", print(r));
    }
    return r;
}

START_TEST(test_timings_http)
{
    struct tu_result res = run_once(F(
        "{\"endpoints\": {\"t\": {\"url\": \"http://127.0.0.1:%d/t?delay=20\", \"timings\": true},"
        " \"plain\": {\"url\": \"http://127.0.0.1:%d/p\"}}}",
        port, port));
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    cJSON *r = ensure_timings(res.out, "t", false);
    /* the server waited 20 ms before answering */
    ENSURE(num(get(r, "timings"), "ttfb_ms") >= 19, "%s", print(r));
    /* field order: attempts, http_version, timings, data */
    const char *line = strstr(res.out, "\"endpoint\":\"t\"");
    const char *a = strstr(line, "\"attempts\""), *hv = strstr(line, "\"http_version\""),
               *tm = strstr(line, "\"timings\""), *d = strstr(line, "\"data\"");
    ENSURE(a && hv && tm && d && a < hv && hv < tm && tm < d, "order: %.300s", line);
    cJSON *p = record_of(res.out, "plain");
    ENSURE(!get(p, "timings") && !get(p, "http_version"), "%s", print(p));
}
END_TEST

START_TEST(test_http_version_1_0)
{
    /* (h2c needs an HTTP/2 server, which the test server is not.) The test
     * server answers every request with an HTTP/1.1 status line, so the
     * record's http_version (the response's) is "1.1"; an HTTP/1.0 request
     * shows in the connections: the server closes each HTTP/1.0 connection
     * after its response (keep-alive is opt-in for 1.0), so three fetches
     * one after the other take three connections, where 1.1 reuses one. */
    const char *versions[] = {"1.0", "1.1"};
    double conns[2];
    for (int v = 0; v < 2; v++) {
        char *eps = K(strdup(""));
        for (int i = 0; i < 3; i++) {
            eps = F("%s%s\"v%d\": {\"url\": \"http://127.0.0.1:%d/v%d\", \"http_version\": \"%s\","
                    " \"timings\": true}",
                    eps, i ? "," : "", i, port, i, versions[v]);
        }
        double before = stat_at(port, "connections");
        struct tu_result res =
            run_once(F("{\"limits\": {\"max_concurrent\": 1}, \"endpoints\": {%s}}", eps));
        ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
        cJSON *r = record_of(res.out, "v0");
        ENSURE(streq(str(r, "http_version"), "1.1"), "%s", print(r));
        /* minus the connection of the /__stats request itself */
        conns[v] = stat_at(port, "connections") - before - 1;
    }
    ENSURE(conns[0] == 3 && conns[1] == 1, "connections: HTTP/1.0 %g, HTTP/1.1 %g", conns[0],
           conns[1]);
}
END_TEST

START_TEST(test_timings_https)
{
    int tp = tls_server("server.pem", "server.key", NULL, NULL);
    struct tu_result res = run_once(
        F("{\"endpoints\": {\"t\": {\"url\": \"https://127.0.0.1:%d/t\", \"timings\": true,"
          " \"tls\": {\"ca_file\": \"%s\"}}}}",
          tp, cert("ca.pem")));
    ENSURE(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    ensure_timings(res.out, "t", true);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------------ */

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("plain");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_auth_basic_password_file);
    tcase_add_test(tc, test_auth_bearer_token_file);
    tcase_add_test(tc, test_auth_bearer_rotation_without_reload);
    tcase_add_test(tc, test_auth_bearer_credential);
    tcase_add_test(tc, test_secret_file_missing);
    tcase_add_test(tc, test_secret_file_two_lines);
    tcase_add_test(tc, test_oauth2_shared_token);
    tcase_add_test(tc, test_oauth2_client_auth_body);
    tcase_add_test(tc, test_oauth2_wrong_secret);
    tcase_add_test(tc, test_oauth2_revoked_token_refetched_once);
    tcase_add_test(tc, test_proxy_explicit);
    tcase_add_test(tc, test_proxy_empty_means_none);
    tcase_add_test(tc, test_unix_socket);
    tcase_add_test(tc, test_compression);
    tcase_add_test(tc, test_compression_bomb);
    tcase_add_test(tc, test_gzip_body_without_compression);
    tcase_add_test(tc, test_redirect_cross_origin_drops_secrets);
    tcase_add_test(tc, test_redirect_same_origin_keeps_secrets);
    tcase_add_test(tc, test_redirect_loop);
    tcase_add_test(tc, test_redirect_to_disallowed_scheme);
    tcase_add_test(tc, test_redirect_method_changes);
    tcase_add_test(tc, test_redirect_not_followed_by_default);
    tcase_add_test(tc, test_file_scheme);
    tcase_add_test(tc, test_timings_http);
    tcase_add_test(tc, test_http_version_1_0);
    suite_add_tcase(s, tc);

    TCase *tls = tcase_create("tls");
    tcase_add_unchecked_fixture(tls, mint, unmint);
    tcase_add_checked_fixture(tls, setup, teardown);
    tcase_set_timeout(tls, 120);
    tcase_add_test(tls, test_tls_default_verification_fails);
    tcase_add_test(tls, test_tls_ca_file);
    tcase_add_test(tls, test_tls_verify_off_warns);
    tcase_add_test(tls, test_tls_client_certificate);
    tcase_add_test(tls, test_tls_min_version);
    tcase_add_test(tls, test_tls_self_signed_other_ca);
    tcase_add_test(tls, test_tls_missing_files_are_config_errors);
    tcase_add_test(tls, test_timings_https);
    suite_add_tcase(s, tls);
    return s;
}

int main(void)
{
    /* http_get (and libcurl in general) wants this before any thread */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    SRunner *sr = srunner_create(http_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free(fail_msg);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
