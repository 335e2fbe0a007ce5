/* test-once.c - the real fetchd binary against the real test HTTP server on
 * 127.0.0.1: records, every failure kind, exit statuses, concurrency, sinks,
 * config errors, CLI, and a clean stop in daemon mode. */
#include <cJSON.h>
#include <check.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* Writes config text to dir/fetchd.json and runs fetchd with extra args. */
static void run_cfg(const char *cfg, const char *a1, const char *a2, struct tu_result *res)
{
    char *path = tu_write(dir, "fetchd.json", cfg);
    const char *argv[8] = {tu_fetchd(), "--once", "-c", path, a1, a2, NULL};
    tu_run(argv, 60 * tu_slack(), res);
    free(path);
}

/* Finds the record of an endpoint in JSON Lines output; returns a parsed
 * object (caller deletes) or fails the test. */
static cJSON *record_of(const char *out, const char *name)
{
    const char *p = out;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        ck_assert_msg(nl, "record without a trailing newline: %s", p);
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        ck_assert_msg(j, "line is not JSON: %.*s", (int)(nl - p), p);
        cJSON *ep = cJSON_GetObjectItemCaseSensitive(j, "endpoint");
        if (cJSON_IsString(ep) && strcmp(ep->valuestring, name) == 0) {
            return j;
        }
        cJSON_Delete(j);
        p = nl + 1;
    }
    ck_abort_msg("no record for endpoint %s in:\n%s", name, out);
    return NULL;
}

static const char *error_kind(cJSON *rec)
{
    cJSON *err = cJSON_GetObjectItemCaseSensitive(rec, "error");
    cJSON *k = cJSON_GetObjectItemCaseSensitive(err, "kind");
    return cJSON_IsString(k) ? k->valuestring : "(none)";
}

START_TEST(test_ok_record)
{
    char *url = tu_fmt("http://127.0.0.1:%d/things", port);
    char *cfg = tu_fmt("{\"endpoints\": {\"one\": {\"url\": \"%s\"}}}", url);
    struct tu_result res;
    run_cfg(cfg, NULL, NULL, &res);
    ck_assert_msg(res.status == 0, "status %d, stderr: %s", res.status, res.err);
    ck_assert_uint_eq(tu_lines(res.out), 1);
    cJSON *r = record_of(res.out, "one");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok")));
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r, "status")->valueint, 200);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(r, "url")->valuestring, url);
    const char *ts = cJSON_GetObjectItemCaseSensitive(r, "fetched_at")->valuestring;
    ck_assert_uint_eq(strlen(ts), 24);
    ck_assert_int_eq(ts[10], 'T');
    ck_assert_int_eq(ts[23], 'Z');
    ck_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(r, "duration_ms")));
    ck_assert(cJSON_GetObjectItemCaseSensitive(r, "bytes")->valuedouble > 0);
    cJSON *data = cJSON_GetObjectItemCaseSensitive(r, "data");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(data, "path")->valuestring, "/things");
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(r, "error"));
    /* no progress line when stderr is not a terminal */
    ck_assert_ptr_null(strchr(res.err, '\r'));
    cJSON_Delete(r);
    free(cfg);
    free(url);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_select_and_fidelity)
{
    char *cfg = tu_fmt("{\"endpoints\": {"
                       "\"sel\": {\"url\": \"http://127.0.0.1:%d/a\", \"select\": \"/nested/a\"},"
                       "\"arr\": {\"url\": \"http://127.0.0.1:%d/b?body=array\", \"select\": \"/1\"},"
                       "\"big\": {\"url\": \"http://127.0.0.1:%d/c?body=bignum\"},"
                       "\"scalar\": {\"url\": \"http://127.0.0.1:%d/d?body=scalar\"},"
                       "\"nocontent\": {\"url\": \"http://127.0.0.1:%d/e?status=204&body=empty\"},"
                       "\"missing\": {\"url\": \"http://127.0.0.1:%d/f\", \"select\": \"/nested/zz\"}}}",
                       port, port, port, port, port, port);
    struct tu_result res;
    run_cfg(cfg, NULL, NULL, &res);
    ck_assert_int_eq(res.status, 1);
    ck_assert_uint_eq(tu_lines(res.out), 6);
    ck_assert_ptr_nonnull(strstr(res.out, "\"endpoint\":\"sel\",") );
    ck_assert_ptr_nonnull(strstr(res.out, "\"data\":\"b\"}"));
    ck_assert_ptr_nonnull(strstr(res.out, "\"data\":{\"id\":2}}"));
    /* numbers pass through byte for byte (cJSON would print 1e400 as null) */
    ck_assert_ptr_nonnull(strstr(res.out, "\"data\":{\"id\":12345678901234567890123,\"f\":1e400}}"));
    ck_assert_ptr_nonnull(strstr(res.out, "\"data\":42}"));
    cJSON *r = record_of(res.out, "nocontent");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "data")));
    cJSON_Delete(r);
    r = record_of(res.out, "missing");
    ck_assert_str_eq(error_kind(r), "select_missing");
    cJSON_Delete(r);
    ck_assert_ptr_nonnull(strstr(res.err, "1 of 6 endpoints failed"));
    ck_assert_ptr_nonnull(strstr(res.err, "missing: select_missing"));
    free(cfg);
    tu_result_done(&res);
}
END_TEST

struct fail_case {
    const char *query;
    const char *kind;
    const char *extra; /* endpoint keys */
};

static const struct fail_case fail_cases[] = {
    {"status=503", "http_status", ""},
    {"status=404&body=html", "http_status", ""},
    {"body=invalid", "invalid_json", ""},
    {"body=garbage", "invalid_json", ""},
    {"body=deep", "invalid_json", ""},
    {"body=badutf8", "invalid_json", ""},
    {"body=empty", "empty_body", ""},
    {"delay=3000", "timeout", ", \"timeout\": \"300ms\""},
    {"size=100000", "too_large", ", \"max_body_size\": \"10KiB\""},
    {"size=100000&chunked=1", "too_large", ", \"max_body_size\": \"10KiB\""},
    {"stream=1", "too_large", ", \"max_body_size\": \"64KiB\""},
    {"short=1", "partial_body", ""},
    {"reset=1&size=50000", "network", ""},
    {"close=1", "network", ""},
    {"badstatus=1", "bad_response", ""},
    {"hang=1", "timeout", ", \"timeout\": \"300ms\""},
    {"drip=400&size=200", "timeout", ", \"timeout\": \"500ms\""},
};

START_TEST(test_failure_kinds)
{
    const struct fail_case *c = &fail_cases[_i];
    char *cfg = tu_fmt("{\"endpoints\": {\"x\": {\"url\": \"http://127.0.0.1:%d/p?%s\"%s}}}", port,
                       c->query, c->extra);
    struct tu_result res;
    run_cfg(cfg, NULL, NULL, &res);
    ck_assert_msg(res.status == 1, "%s: status %d, stderr: %s", c->query, res.status, res.err);
    ck_assert_uint_eq(tu_lines(res.out), 1);
    cJSON *r = record_of(res.out, "x");
    ck_assert_msg(strcmp(error_kind(r), c->kind) == 0, "%s: kind %s, want %s: %s", c->query,
                  error_kind(r), c->kind, res.out);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "ok")));
    cJSON *msg = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "error"),
                                                  "message");
    ck_assert(cJSON_IsString(msg) && msg->valuestring[0]);
    /* one log line saying which endpoint and why */
    ck_assert_msg(strstr(res.err, "endpoint 'x': fetch failed:"), "%s", res.err);
    ck_assert_ptr_nonnull(strstr(res.err, "1 of 1 endpoint failed"));
    cJSON_Delete(r);
    free(cfg);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_invalid_json_offset)
{
    char *cfg = tu_fmt("{\"endpoints\": {\"x\": {\"url\": \"http://127.0.0.1:%d/p?body=garbage\"}}}", port);
    struct tu_result res;
    run_cfg(cfg, NULL, NULL, &res);
    cJSON *r = record_of(res.out, "x");
    cJSON *err = cJSON_GetObjectItemCaseSensitive(r, "error");
    /* {"a":1} trailing : the garbage starts at byte 8 */
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(err, "offset")->valueint, 8);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(err, "excerpt")->valuestring, "{\"a\":1} trailing");
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItemCaseSensitive(err, "message")->valuestring,
                                 "trailing data"));
    cJSON_Delete(r);
    free(cfg);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_connect_refused)
{
    /* a port nobody listens on: bind, read the port, close */
    char *cfg = tu_fmt("{\"endpoints\": {\"x\": {\"url\": \"http://127.0.0.1:1/\"}, "
                       "\"ok\": {\"url\": \"http://127.0.0.1:%d/\"}}}",
                       port);
    struct tu_result res;
    run_cfg(cfg, NULL, NULL, &res);
    ck_assert_int_eq(res.status, 1);
    cJSON *r = record_of(res.out, "x");
    ck_assert_str_eq(error_kind(r), "connect");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "error"),
                                                      "curl_code")->valueint, 7);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "status")));
    cJSON_Delete(r);
    r = record_of(res.out, "ok");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok")));
    cJSON_Delete(r);
    free(cfg);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_concurrency)
{
    /* 200 endpoints, each answered after 200 ms: sequentially 40 s. */
    size_t cap = 200 * 128 + 256;
    char *cfg = malloc(cap);
    size_t len = (size_t)snprintf(cfg, cap, "{\"limits\": {\"max_concurrent\": 256}, \"endpoints\": {");
    for (int i = 0; i < 200; i++) {
        len += (size_t)snprintf(cfg + len, cap - len,
                                "%s\"e%d\": {\"url\": \"http://127.0.0.1:%d/e%d?delay=200\"}",
                                i ? "," : "", i, port, i);
    }
    snprintf(cfg + len, cap - len, "}}");
    struct tu_result res;
    run_cfg(cfg, NULL, NULL, &res);
    ck_assert_msg(res.status == 0, "status %d: %s", res.status, res.err);
    ck_assert_uint_eq(tu_lines(res.out), 200);
    ck_assert_msg(res.seconds < 2.0 * tu_slack(), "took %.2f s", res.seconds);
    free(cfg);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_slow_endpoint_does_not_hold_others)
{
    /* one endpoint answers after 3 s; the others on the same host must not
     * wait for it (regression: CURLOPT_PIPEWAIT on plain http did that) */
    char *cfg = tu_fmt("{\"endpoints\": {"
                       "\"slow\": {\"url\": \"http://127.0.0.1:%d/s?delay=3000\", \"timeout\": \"10s\"},"
                       "\"a\": {\"url\": \"http://127.0.0.1:%d/a\", \"timeout\": \"1500ms\"},"
                       "\"b\": {\"url\": \"http://127.0.0.1:%d/b\", \"timeout\": \"1500ms\"},"
                       "\"c\": {\"url\": \"http://127.0.0.1:%d/c\", \"timeout\": \"1500ms\"}}}",
                       port, port, port, port);
    struct tu_result res;
    run_cfg(cfg, NULL, NULL, &res);
    ck_assert_msg(res.status == 0, "status %d: %s\n%s", res.status, res.err, res.out);
    ck_assert_uint_eq(tu_lines(res.out), 4);
    free(cfg);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_queue_bound)
{
    /* 40 endpoints of 100 ms with max_concurrent 4: all complete, through the
     * queue, so at least 10 rounds of 100 ms are needed. */
    size_t cap = 40 * 128 + 256;
    char *cfg = malloc(cap);
    size_t len = (size_t)snprintf(cfg, cap, "{\"limits\": {\"max_concurrent\": 4}, \"endpoints\": {");
    for (int i = 0; i < 40; i++) {
        len += (size_t)snprintf(cfg + len, cap - len,
                                "%s\"q%d\": {\"url\": \"http://127.0.0.1:%d/q%d?delay=100\"}",
                                i ? "," : "", i, port, i);
    }
    snprintf(cfg + len, cap - len, "}}");
    struct tu_result res;
    run_cfg(cfg, NULL, NULL, &res);
    ck_assert_msg(res.status == 0, "status %d: %s", res.status, res.err);
    ck_assert_uint_eq(tu_lines(res.out), 40);
    ck_assert_msg(res.seconds >= 0.95, "40 x 100 ms at 4 concurrent took only %.2f s", res.seconds);
    free(cfg);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_request_sent)
{
    char *cfg = tu_fmt("{\"defaults\": {\"headers\": {\"X-Default\": \"d\", \"X-Gone\": \"g\"}},"
                       " \"endpoints\": {\"p\": {\"url\": \"http://127.0.0.1:%d/echo?body=echo\","
                       " \"method\": \"POST\", \"body\": {\"q\": [1, 2]},"
                       " \"headers\": {\"X-Test\": \"yes\", \"X-Gone\": null}}}}",
                       port);
    struct tu_result res;
    run_cfg(cfg, NULL, NULL, &res);
    ck_assert_msg(res.status == 0, "%s", res.err);
    cJSON *r = record_of(res.out, "p");
    cJSON *d = cJSON_GetObjectItemCaseSensitive(r, "data");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(d, "method")->valuestring, "POST");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(d, "body")->valuestring, "{\"q\":[1,2]}");
    cJSON *h = cJSON_GetObjectItemCaseSensitive(d, "headers");
    ck_assert_str_eq(cJSON_GetObjectItem(h, "x-test")->valuestring, "yes");
    ck_assert_str_eq(cJSON_GetObjectItem(h, "x-default")->valuestring, "d");
    ck_assert_ptr_null(cJSON_GetObjectItem(h, "x-gone"));
    ck_assert_str_eq(cJSON_GetObjectItem(h, "content-type")->valuestring, "application/json");
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(h, "user-agent")->valuestring, "fetchd/"));
    cJSON_Delete(r);
    free(cfg);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_handle_reuse_resets_request)
{
    /* one pooled easy handle serves every endpoint in turn: a POST with a
     * body, a HEAD and a PUT must leave nothing behind for the GETs */
    char *cfg = tu_fmt("{\"limits\": {\"max_concurrent\": 1}, \"endpoints\": {"
                       "\"p\": {\"url\": \"http://127.0.0.1:%d/p?body=echo\", \"method\": \"POST\", \"body\": \"x=1\","
                       " \"headers\": {\"X-Only-P\": \"1\"}},"
                       "\"g1\": {\"url\": \"http://127.0.0.1:%d/g1?body=echo\"},"
                       "\"h\": {\"url\": \"http://127.0.0.1:%d/h\", \"method\": \"HEAD\"},"
                       "\"g2\": {\"url\": \"http://127.0.0.1:%d/g2?body=echo\"},"
                       "\"u\": {\"url\": \"http://127.0.0.1:%d/u?body=echo\", \"method\": \"PUT\", \"body\": {\"a\": 1}},"
                       "\"g3\": {\"url\": \"http://127.0.0.1:%d/g3?body=echo\"},"
                       "\"gb\": {\"url\": \"http://127.0.0.1:%d/gb?body=echo\", \"body\": \"q\"}}}",
                       port, port, port, port, port, port, port);
    struct tu_result res;
    run_cfg(cfg, NULL, NULL, &res);
    ck_assert_msg(res.status == 0, "%s", res.err);
    const char *gets[] = {"g1", "g2", "g3"};
    for (size_t i = 0; i < 3; i++) {
        cJSON *r = record_of(res.out, gets[i]);
        cJSON *d = cJSON_GetObjectItemCaseSensitive(r, "data");
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(d, "method")->valuestring, "GET");
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(d, "body")->valuestring, "");
        cJSON *h = cJSON_GetObjectItemCaseSensitive(d, "headers");
        ck_assert_ptr_null(cJSON_GetObjectItem(h, "x-only-p"));
        ck_assert_ptr_null(cJSON_GetObjectItem(h, "content-type"));
        cJSON_Delete(r);
    }
    cJSON *r = record_of(res.out, "u");
    cJSON *d = cJSON_GetObjectItemCaseSensitive(r, "data");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(d, "method")->valuestring, "PUT");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(d, "body")->valuestring, "{\"a\":1}");
    cJSON_Delete(r);
    r = record_of(res.out, "gb"); /* GET with a body stays a GET */
    d = cJSON_GetObjectItemCaseSensitive(r, "data");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(d, "method")->valuestring, "GET");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(d, "body")->valuestring, "q");
    cJSON_Delete(r);
    r = record_of(res.out, "h");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "data")));
    cJSON_Delete(r);
    free(cfg);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_redaction)
{
    char *cfg = tu_fmt("{\"endpoints\": {\"s\": {\"url\": "
                       "\"http://bob:hunter2@127.0.0.1:%d/x?api_key=k3y&page=2\"},"
                       " \"f\": {\"url\": \"http://bob:hunter2@127.0.0.1:1/?token=t0k\"}}}",
                       port);
    struct tu_result res;
    run_cfg(cfg, NULL, NULL, &res);
    ck_assert_ptr_null(strstr(res.out, "hunter2"));
    ck_assert_ptr_null(strstr(res.out, "k3y"));
    ck_assert_ptr_null(strstr(res.out, "t0k"));
    ck_assert_ptr_null(strstr(res.err, "hunter2"));
    ck_assert_ptr_null(strstr(res.err, "t0k"));
    ck_assert_ptr_nonnull(strstr(res.out, "http://bob:***@127.0.0.1:"));
    ck_assert_ptr_nonnull(strstr(res.out, "api_key=***&page=2"));
    free(cfg);
    tu_result_done(&res);

    char *path = tu_write(dir, "fetchd.json", "{\"endpoints\": {\"s\": {\"url\": \"http://u:pw1@h/?secret=zz\"}}}");
    const char *argv[] = {tu_fetchd(), "--check-config", "-c", path, NULL};
    tu_run(argv, 30, &res);
    ck_assert_int_eq(res.status, 0);
    ck_assert_ptr_null(strstr(res.out, "pw1"));
    ck_assert_ptr_null(strstr(res.out, "zz"));
    free(path);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_file_sink)
{
    char *out = tu_fmt("%s/records.jsonl", dir);
    char *cfg = tu_fmt("{\"sinks\": {\"f\": {\"type\": \"file\", \"path\": \"%s\"}},"
                       " \"defaults\": {\"sinks\": [\"f\"]},"
                       " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                       " \"b\": {\"url\": \"http://127.0.0.1:%d/b?size=20000\"},"
                       " \"both\": {\"url\": \"http://127.0.0.1:%d/c\", \"sinks\": [\"f\", \"stdout\"]}}}",
                       out, port, port, port);
    struct tu_result res;
    for (int round = 0; round < 2; round++) {
        run_cfg(cfg, NULL, NULL, &res);
        ck_assert_msg(res.status == 0, "%s", res.err);
        ck_assert_uint_eq(tu_lines(res.out), 1); /* only "both" goes to stdout */
        tu_result_done(&res);
    }
    char *content = tu_read(out);
    ck_assert_ptr_nonnull(content);
    /* appended, two runs of three whole records */
    ck_assert_uint_eq(tu_lines(content), 6);
    ck_assert_int_eq(content[strlen(content) - 1], '\n');
    struct stat st;
    ck_assert_int_eq(stat(out, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);
    free(content);
    free(cfg);

    /* a sink whose directory is missing is a config error, before any fetch */
    cfg = tu_fmt("{\"sinks\": {\"f\": {\"type\": \"file\", \"path\": \"%s/no/such/dir/x.jsonl\"}},"
                 " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\", \"sinks\": [\"f\"]}}}",
                 dir, port);
    run_cfg(cfg, NULL, NULL, &res);
    ck_assert_int_eq(res.status, 78);
    ck_assert_ptr_nonnull(strstr(res.err, "fetchd.json:1:"));
    ck_assert_ptr_nonnull(strstr(res.err, "sinks.f: directory"));
    ck_assert_str_eq(res.out, "");
    free(cfg);
    free(out);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_sink_write_error)
{
    /* /dev/full: every write fails with ENOSPC -> retried until the grace
     * period ends, then lost, exit 74 */
    char *cfg = tu_fmt("{\"limits\": {\"shutdown_grace\": \"1s\"},"
                       " \"sinks\": {\"full\": {\"type\": \"file\", \"path\": \"/dev/full\","
                       " \"retry_backoff\": \"100ms\"}},"
                       " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\", \"sinks\": [\"full\"]}}}",
                       port);
    struct tu_result res;
    run_cfg(cfg, NULL, NULL, &res);
    ck_assert_msg(res.status == 74, "status %d: %s", res.status, res.err);
    ck_assert_ptr_nonnull(strstr(res.err, "sink 'full': cannot deliver: write failed: No space left on device"));
    ck_assert_ptr_nonnull(strstr(res.err, "sink 'full': 1 record still queued when the sink closed is lost"));
    ck_assert_ptr_nonnull(strstr(res.err, "1 record could not be written"));
    free(cfg);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_config_error_exit)
{
    struct tu_result res;
    run_cfg("{\n  \"endpoints\": {\n    \"weather\": {\"url\": \"http://x/\", \"interval\": -5}\n  }\n}\n",
            NULL, NULL, &res);
    ck_assert_int_eq(res.status, 78);
    ck_assert_msg(strstr(res.err, "fetchd.json:3:49: endpoints.weather.interval: expected a duration "
                                  "such as \"30s\""),
                  "%s", res.err);
    ck_assert_str_eq(res.out, "");
    tu_result_done(&res);

    const char *argv[] = {tu_fetchd(), "--once", "-c", "/nonexistent/fetchd.json", NULL};
    tu_run(argv, 30, &res);
    ck_assert_int_eq(res.status, 78);
    ck_assert_ptr_nonnull(strstr(res.err, "/nonexistent/fetchd.json: cannot open: No such file"));
    tu_result_done(&res);
}
END_TEST

START_TEST(test_cli)
{
    struct tu_result res;
    const char *help[] = {tu_fetchd(), "--help", NULL};
    tu_run(help, 30, &res);
    ck_assert_int_eq(res.status, 0);
    ck_assert_ptr_nonnull(strstr(res.out, "--once"));
    ck_assert_uint_le(tu_lines(res.out), 24); /* one screen */
    tu_result_done(&res);

    const char *ver[] = {tu_fetchd(), "--version", NULL};
    tu_run(ver, 30, &res);
    ck_assert_int_eq(res.status, 0);
    ck_assert_ptr_nonnull(strstr(res.out, "fetchd "));
    tu_result_done(&res);

    const char *bad[] = {tu_fetchd(), "--bogus", NULL};
    tu_run(bad, 30, &res);
    ck_assert_int_eq(res.status, 64);
    ck_assert_ptr_nonnull(strstr(res.err, "unknown option --bogus"));
    tu_result_done(&res);

    const char *lvl[] = {tu_fetchd(), "--log-level", "loud", NULL};
    tu_run(lvl, 30, &res);
    ck_assert_int_eq(res.status, 64);
    tu_result_done(&res);

    const char *extra[] = {tu_fetchd(), "stray", NULL};
    tu_run(extra, 30, &res);
    ck_assert_int_eq(res.status, 64);
    tu_result_done(&res);
}
END_TEST

START_TEST(test_endpoint_selection)
{
    char *cfg = tu_fmt("{\"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                       " \"b\": {\"url\": \"http://127.0.0.1:%d/b?status=500\"},"
                       " \"off\": {\"url\": \"http://127.0.0.1:%d/c\", \"enabled\": false}}}",
                       port, port, port);
    struct tu_result res;
    run_cfg(cfg, "--endpoint", "a", &res);
    ck_assert_int_eq(res.status, 0);
    ck_assert_uint_eq(tu_lines(res.out), 1);
    tu_result_done(&res);

    run_cfg(cfg, "-e", "off", &res); /* named explicitly: runs although disabled */
    ck_assert_int_eq(res.status, 0);
    ck_assert_ptr_nonnull(strstr(res.out, "\"endpoint\":\"off\""));
    tu_result_done(&res);

    run_cfg(cfg, NULL, NULL, &res); /* all enabled: a ok, b fails, off skipped */
    ck_assert_int_eq(res.status, 1);
    ck_assert_uint_eq(tu_lines(res.out), 2);
    ck_assert_ptr_null(strstr(res.out, "\"endpoint\":\"off\""));
    ck_assert_ptr_nonnull(strstr(res.err, "b: http_status"));
    tu_result_done(&res);

    run_cfg(cfg, "-e", "nope", &res);
    ck_assert_int_eq(res.status, 64);
    ck_assert_str_eq(res.out, "");
    tu_result_done(&res);
    run_cfg(cfg, "--check-config", "-e", &res); /* "-e" without a name */
    ck_assert_int_eq(res.status, 64);
    tu_result_done(&res);
    run_cfg(cfg, "-e", "nope", &res);
    ck_assert_int_eq(res.status, 64);
    ck_assert_ptr_nonnull(strstr(res.err, "--endpoint 'nope': no such endpoint"));
    ck_assert_str_eq(res.out, "");
    tu_result_done(&res);
    free(cfg);
}
END_TEST

/* --shard K/N: three instances sharing one config fetch every endpoint
 * exactly once between them; "shard" in a drop-in does the same and the
 * command line overrides it; a bad value is a usage or config error. */
static void shard_names(const char *out, bool seen[30], int *n)
{
    for (const char *p = out; (p = strstr(p, "\"endpoint\":\"s")); p++) {
        int i = atoi(p + strlen("\"endpoint\":\"s"));
        ck_assert_msg(i >= 0 && i < 30 && !seen[i], "endpoint s%d fetched twice", i);
        seen[i] = true;
        (*n)++;
    }
}

START_TEST(test_shard)
{
    char *cfg = tu_fmt("{\"endpoints\": {");
    for (int i = 0; i < 30; i++) {
        char *n = tu_fmt("%s%s\"s%d\": {\"url\": \"http://127.0.0.1:%d/json?i=%d\"}", cfg,
                         i ? ", " : "", i, port, i);
        free(cfg);
        cfg = n;
    }
    char *full = tu_fmt("%s}}", cfg);
    free(cfg);
    bool seen[30] = {false};
    int total = 0;
    for (int k = 1; k <= 3; k++) {
        struct tu_result res;
        char *sh = tu_fmt("%d/3", k);
        run_cfg(full, "--shard", sh, &res);
        ck_assert_msg(res.status == 0, "shard %s: exit %d: %s", sh, res.status, res.err);
        int n = 0;
        shard_names(res.out, seen, &n);
        ck_assert_msg(n >= 4 && n <= 16, "shard %s ran %d of 30 endpoints", sh, n);
        total += n;
        free(sh);
        tu_result_done(&res);
    }
    ck_assert_int_eq(total, 30);

    /* "shard" in a drop-in (per machine), overridden by --shard */
    char *d = tu_fmt("%s/fetchd.d", dir);
    ck_assert_int_eq(mkdir(d, 0755), 0);
    free(tu_write(d, "shard.json", "{\"shard\": \"2/3\"}"));
    struct tu_result a, b;
    run_cfg(full, NULL, NULL, &a);
    run_cfg(full, "--shard", "2/3", &b);
    ck_assert_int_eq(a.status, 0);
    ck_assert_int_eq(b.status, 0);
    bool sa[30] = {false}, sb[30] = {false};
    int na = 0, nb = 0;
    shard_names(a.out, sa, &na);
    shard_names(b.out, sb, &nb);
    ck_assert_int_eq(na, nb);
    ck_assert_msg(memcmp(sa, sb, sizeof(sa)) == 0, "the drop-in's shard 2/3 ran other endpoints");
    tu_result_done(&b);
    run_cfg(full, "--shard", "1/1", &b); /* the command line wins: all */
    ck_assert_int_eq(b.status, 0);
    ck_assert_uint_eq(tu_lines(b.out), 30);
    ck_assert_uint_lt(tu_lines(a.out), 30);
    tu_result_done(&a);
    tu_result_done(&b);

    free(tu_write(d, "shard.json", "{\"shard\": \"4/3\"}"));
    run_cfg(full, NULL, NULL, &a);
    ck_assert_int_eq(a.status, 78);
    ck_assert_ptr_nonnull(strstr(a.err, "shard: expected \"K/N\""));
    tu_result_done(&a);
    run_cfg(full, "--shard", "0/3", &a);
    ck_assert_int_eq(a.status, 64);
    tu_result_done(&a);
    free(full);
    free(d);
}
END_TEST

START_TEST(test_check_config)
{
    char *path = tu_write(dir, "fetchd.json",
                          "{\"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:1/a\", \"interval\": \"30s\"}}}");
    const char *argv[] = {tu_fetchd(), "--check-config", "-c", path, NULL};
    struct tu_result res;
    tu_run(argv, 30, &res);
    ck_assert_int_eq(res.status, 0);
    ck_assert_ptr_nonnull(strstr(res.out, ": OK"));
    ck_assert_ptr_nonnull(strstr(res.out, "endpoints (1, 1 enabled)"));
    ck_assert_ptr_nonnull(strstr(res.out, "every 30s"));
    tu_result_done(&res);
    free(path);
}
END_TEST

START_TEST(test_daemon_stop_finishes_in_flight)
{
    /* daemon mode: the first fetch starts within the first interval (splay
     * < 100 ms) and takes 500 ms; SIGTERM during it lets it finish and
     * deliver its record (later runs are skipped while it runs), exit 0 */
    char *text = tu_fmt("{\"endpoints\": {\"slow\": {\"url\": \"http://127.0.0.1:%d/s?delay=500\","
                        " \"interval\": \"100ms\"}}}", port);
    char *path = tu_write(dir, "fetchd.json", text);
    free(text);
    char *outp = tu_fmt("%s/out", dir), *errp = tu_fmt("%s/err", dir);
    const char *argv[] = {tu_fetchd(), "-c", path, NULL};
    pid_t pid = tu_spawn(argv, outp, errp);
    /* signal only once the server has the request: the fetch is in flight */
    ck_assert(tu_httpd_wait_requests(port, 1, 30));
    kill(pid, SIGTERM);
    int st = tu_wait(pid, 10 * tu_slack());
    char *out = tu_read(outp), *err = tu_read(errp);
    ck_assert_msg(st == 0, "status %d: %s", st, err);
    ck_assert_uint_eq(tu_lines(out), 1);
    ck_assert_ptr_nonnull(strstr(out, "\"ok\":true"));
    free(out);
    free(err);

    /* a hanging transfer: a second SIGTERM cancels it, still a whole record */
    free(path);
    text = tu_fmt("{\"endpoints\": {\"hang\": {\"url\": \"http://127.0.0.1:%d/s?hang=1\","
                  " \"interval\": \"100ms\"}}}", port);
    path = tu_write(dir, "fetchd.json", text);
    free(text);
    argv[2] = path;
    long before = tu_httpd_requests(port);
    pid = tu_spawn(argv, outp, errp);
    ck_assert(tu_httpd_wait_requests(port, before + 1, 30));
    kill(pid, SIGTERM);
    usleep(100000);
    kill(pid, SIGTERM);
    st = tu_wait(pid, 10 * tu_slack());
    out = tu_read(outp);
    err = tu_read(errp);
    ck_assert_msg(st == 0, "status %d: %s", st, err);
    ck_assert_uint_eq(tu_lines(out), 1);
    ck_assert_ptr_nonnull(strstr(out, "\"kind\":\"cancelled\""));
    ck_assert_ptr_nonnull(strstr(err, "again, stopping now"));
    free(out);
    free(err);
    free(outp);
    free(errp);
    free(path);
}
END_TEST

START_TEST(test_daemon_interval_and_skip)
{
    /* interval 200 ms, each fetch 300 ms: runs overlap -> skipped, never two
     * at once; after ~1.1 s there are a few records, all ok */
    char *text = tu_fmt("{\"endpoints\": {\"t\": {\"url\": \"http://127.0.0.1:%d/t?delay=300\","
                        " \"interval\": \"200ms\"}}}", port);
    char *path = tu_write(dir, "fetchd.json", text);
    free(text);
    char *outp = tu_fmt("%s/out", dir), *errp = tu_fmt("%s/err", dir);
    const char *argv[] = {tu_fetchd(), "-c", path, "--log-level", "debug", NULL};
    pid_t pid = tu_spawn(argv, outp, errp);
    bool slow = tu_slack() > 1; /* under valgrind startup alone takes a second */
    usleep(slow ? 4000000 : 1100000);
    kill(pid, SIGTERM);
    int st = tu_wait(pid, 10 * tu_slack());
    char *out = tu_read(outp), *err = tu_read(errp);
    ck_assert_msg(st == 0, "status %d: %s", st, err);
    size_t n = tu_lines(out);
    ck_assert_msg(n >= 2 && n <= (slow ? 14u : 5u), "%zu records", n);
    ck_assert_ptr_nonnull(strstr(err, "skipped (previous fetch still running)"));
    ck_assert_ptr_null(strstr(out, "\"ok\":false"));
    ck_assert_ptr_nonnull(strstr(err, "previous fetch still running, skipping this run"));
    free(out);
    free(err);
    free(outp);
    free(errp);
    free(path);
}
END_TEST

static Suite *once_suite(void)
{
    Suite *s = suite_create("once");
    TCase *tc = tcase_create("binary");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_ok_record);
    tcase_add_test(tc, test_select_and_fidelity);
    tcase_add_loop_test(tc, test_failure_kinds, 0, (int)(sizeof(fail_cases) / sizeof(fail_cases[0])));
    tcase_add_test(tc, test_invalid_json_offset);
    tcase_add_test(tc, test_connect_refused);
    tcase_add_test(tc, test_concurrency);
    tcase_add_test(tc, test_slow_endpoint_does_not_hold_others);
    tcase_add_test(tc, test_queue_bound);
    tcase_add_test(tc, test_request_sent);
    tcase_add_test(tc, test_handle_reuse_resets_request);
    tcase_add_test(tc, test_redaction);
    tcase_add_test(tc, test_file_sink);
    tcase_add_test(tc, test_sink_write_error);
    tcase_add_test(tc, test_config_error_exit);
    tcase_add_test(tc, test_cli);
    tcase_add_test(tc, test_endpoint_selection);
    tcase_add_test(tc, test_shard);
    tcase_add_test(tc, test_check_config);
    tcase_add_test(tc, test_daemon_stop_finishes_in_flight);
    tcase_add_test(tc, test_daemon_interval_and_skip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(once_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
