/* test-config.c - config loading: every validation error names the file,
 * line:column and key path; defaults, drop-ins and merging behave. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "jptr.h"
#include "testutil.h"

static char *dir;

static void setup(void)
{
    dir = tu_tmpdir();
}

static void teardown(void)
{
    tu_rmdir(dir);
    free(dir);
}

/* Loads text as dir/fetchd.json; returns r and the joined error text. */
static int load(const char *text, struct config **cfg, char **errtext)
{
    char *path = tu_write(dir, "fetchd.json", text);
    struct config_errors errs = {0};
    *cfg = NULL;
    int r = config_load(path, cfg, &errs);
    size_t len = 0;
    char *all = calloc(1, 1);
    for (size_t i = 0; i < errs.n; i++) {
        size_t l = strlen(errs.msgs[i]);
        all = realloc(all, len + l + 2);
        memcpy(all + len, errs.msgs[i], l);
        len += l;
        all[len++] = '\n';
        all[len] = '\0';
    }
    config_errors_done(&errs);
    free(path);
    *errtext = all;
    return r;
}

struct bad_case {
    const char *name;
    const char *text;
    const char *want; /* substring expected in the errors (after "fetchd.json:") */
};

static const struct bad_case bad_cases[] = {
    {"not an object", "[]", "1:1: the top-level value must be a JSON object"},
    {"empty file", "", "invalid JSON: empty body"},
    {"truncated", "{\"endpoints\": {", "invalid JSON: unexpected end of input"},
    {"trailing garbage", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\"}}} x",
     "1:44: invalid JSON: trailing data"},
    {"no endpoints", "{}", "endpoints: no endpoints configured"},
    {"unknown top key", "{\"endpoint\": {}}", "unknown key \"endpoint\"; did you mean \"endpoints\"?"},
    {"wrong case key", "{\"endpoints\": {\"a\": {\"URL\": \"http://x/\"}}}",
     "endpoints.a: unknown key \"URL\"; did you mean \"url\"?"},
    {"missing url", "{\"endpoints\": {\"a\": {}}}", "endpoints.a: missing \"url\""},
    {"url not string", "{\"endpoints\": {\"a\": {\"url\": 42}}}",
     "1:29: endpoints.a.url: expected a string, got 42"},
    {"file scheme", "{\"endpoints\": {\"a\": {\"url\": \"file:///etc/passwd\"}}}",
     "endpoints.a.url: scheme \"file\" is not allowed (allowed: http, https; others need \"schemes\")"},
    {"gopher scheme", "{\"endpoints\": {\"a\": {\"url\": \"gopher://127.0.0.1/\"}}}",
     "scheme \"gopher\" is not allowed"},
    {"no scheme", "{\"endpoints\": {\"a\": {\"url\": \"example.com/x\"}}}", "the URL has no scheme"},
    {"space in url", "{\"endpoints\": {\"a\": {\"url\": \"http://x/a b\"}}}",
     "space or control character"},
    {"negative interval",
     "{\n  \"endpoints\": {\n    \"weather\": {\n      \"url\": \"http://x/\",\n      \"interval\": -5\n    }\n  }\n}",
     "5:19: endpoints.weather.interval: expected a duration such as \"30s\""},
    {"interval number", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"interval\": 30}}}",
     "got 30"},
    {"interval too small", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"interval\": \"1ms\"}}}",
     "1ms is out of range"},
    {"bad duration unit", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"timeout\": \"5 s\"}}}",
     "endpoints.a.timeout: expected a duration"},
    {"inf size", "{\"limits\": {\"max_body_size\": 1e400}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "limits.max_body_size: expected a size"},
    {"fraction concurrency", "{\"limits\": {\"max_concurrent\": 1.5}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "limits.max_concurrent: expected a whole number, got 1.5"},
    {"huge concurrency", "{\"limits\": {\"max_concurrent\": 1e12}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "limits.max_concurrent: 1000000000000 is out of range"},
    {"endpoint body size above limit",
     "{\"limits\": {\"max_body_size\": \"1MiB\"}, \"endpoints\": {\"a\": {\"url\": \"http://x/\", \"max_body_size\": \"2MiB\"}}}",
     "larger than limits.max_body_size (1MiB)"},
    {"unknown sink", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"sinks\": [\"out\"]}}}",
     "endpoints.a.sinks: unknown sink \"out\" (defined sinks: stdout)"},
    {"empty sinks", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"sinks\": []}}}",
     "expected a non-empty array of sink names"},
    {"sink listed twice", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"sinks\": [\"stdout\", \"stdout\"]}}}",
     "sink \"stdout\" listed twice"},
    {"unknown sink type", "{\"sinks\": {\"o\": {\"type\": \"kafka\"}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "sinks.o: unknown sink type \"kafka\" (known: stdout, file)"},
    {"file sink without path", "{\"sinks\": {\"o\": {\"type\": \"file\"}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "sinks.o: missing \"path\""},
    {"file sink unknown option", "{\"sinks\": {\"o\": {\"type\": \"file\", \"path\": \"/tmp/x\", \"fsync\": true}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "unknown key \"fsync\""},
    {"file sink missing dir", "{\"sinks\": {\"o\": {\"type\": \"file\", \"path\": \"/nonexistent/dir/x.jsonl\"}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "directory \"/nonexistent/dir\" of \"path\" does not exist"},
    {"duplicate endpoint", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\"},\n \"a\": {\"url\": \"http://y/\"}}}",
     "2:2: endpoints: duplicate key \"a\" (first defined at line 1:16)"},
    {"duplicate key in endpoint", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"url\": \"http://y/\"}}}",
     "duplicate key \"url\""},
    {"bad name", "{\"endpoints\": {\"a b\": {\"url\": \"http://x/\"}}}", "invalid name \"a b\""},
    {"header CRLF", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"headers\": {\"X-A\": \"v\\r\\nX-B: w\"}}}}",
     "endpoints.a.headers.X-A: the value contains a control character"},
    {"header bad name", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"headers\": {\"X A\": \"v\"}}}}",
     "invalid header name"},
    {"header not string", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"headers\": {\"X-A\": 1}}}}",
     "expected a string value"},
    {"headers case dup in defaults", "{\"defaults\": {\"headers\": {\"Accept\": \"a\", \"accept\": \"b\"}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "header given twice"},
    {"headers case dup in endpoint", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"headers\": {\"X-A\": \"a\", \"x-a\": \"b\"}}}}",
     "endpoints.a.headers.x-a: header given twice"},
    {"bad method", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"method\": \"GET /\"}}}",
     "invalid method"},
    {"bad select", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"select\": \"data\"}}}",
     "invalid JSON Pointer \"data\""},
    {"bad select escape", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"select\": \"/a~2\"}}}",
     "'~' in a JSON Pointer"},
    {"url default", "{\"defaults\": {\"url\": \"http://x/\"}, \"endpoints\": {\"a\": {}}}",
     "\"url\" cannot have a default"},
    {"too many endpoints", "{\"limits\": {\"max_endpoints\": 1}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}, \"b\": {\"url\": \"http://y/\"}}}",
     "2 endpoints configured, but limits.max_endpoints is 1"},
    {"nul escape", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\\u0000\"}}}", "\"\\u0000\" is not allowed"},
    {"invalid utf8", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\xff\"}}}", "invalid UTF-8"},
    {"bool wrong type", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"enabled\": \"yes\"}}}",
     "endpoints.a.enabled: expected true or false, got \"yes\""},
    {"jitter above half the interval", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"interval\": \"10s\", \"jitter\": \"6s\"}}}",
     "endpoints.a.jitter: 6s is more than half of the interval (10s)"},
    {"offset without align", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"offset\": \"5s\"}}}",
     "endpoints.a.offset: \"offset\" needs \"align\": true"},
    {"offset beyond interval", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"interval\": \"10s\", \"align\": true, \"offset\": \"10s\"}}}",
     "must be smaller than the interval"},
    {"align not bool", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"align\": 1}}}",
     "endpoints.a.align: expected true or false"},
    {"HEAD with a body", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"method\": \"HEAD\", \"body\": \"x\"}}}",
     "endpoints.a.body: a HEAD request cannot carry a body"},
    {"redirects out of range", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"max_redirects\": 51}}}",
     "endpoints.a.max_redirects: 51 is out of range"},
};

START_TEST(test_bad)
{
    const struct bad_case *c = &bad_cases[_i];
    struct config *cfg;
    char *errtext;
    int r = load(c->text, &cfg, &errtext);
    ck_assert_msg(r == -EINVAL, "%s: expected -EINVAL, got %d", c->name, r);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(errtext, c->want), "%s: wanted \"%s\" in:\n%s", c->name, c->want, errtext);
    ck_assert_msg(strstr(errtext, "fetchd.json:"), "%s: no file name in: %s", c->name, errtext);
    free(errtext);
}
END_TEST

START_TEST(test_secret_not_echoed)
{
    struct config *cfg;
    char *errtext;
    int r = load("{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"headers\": "
                 "{\"Authorization\": \"Bearer s3cr3t\\n\"}}}}",
                 &cfg, &errtext);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_ptr_nonnull(strstr(errtext, "Authorization"));
    ck_assert_ptr_null(strstr(errtext, "s3cr3t"));
    free(errtext);
}
END_TEST

START_TEST(test_bad_default_reported_once)
{
    struct config *cfg;
    char *errtext;
    int r = load("{\"defaults\": {\"timeout\": \"soon\", \"headers\": {\"X\": \"a\\nb\"}},"
                 " \"endpoints\": {\"a\": {\"url\": \"http://x/\"}, \"b\": {\"url\": \"http://y/\"},"
                 " \"c\": {\"url\": \"http://z/\"}}}",
                 &cfg, &errtext);
    ck_assert_int_eq(r, -EINVAL);
    const char *p = strstr(errtext, "defaults.timeout: expected a duration");
    ck_assert_msg(p, "%s", errtext);
    ck_assert_ptr_null(strstr(p + 1, "defaults.timeout"));
    ck_assert_ptr_null(strstr(errtext, "endpoints.b.timeout"));
    p = strstr(errtext, "defaults.headers.X: the value contains a control character");
    ck_assert_msg(p, "%s", errtext);
    ck_assert_ptr_null(strstr(p + 1, "defaults.headers.X"));
    free(errtext);
}
END_TEST

START_TEST(test_all_errors_reported)
{
    struct config *cfg;
    char *errtext;
    int r = load("{\"endpoints\": {\"a\": {\"url\": \"ftp://x/\"}, \"b\": {\"url\": \"http://x/\", "
                 "\"timeout\": \"x\"}, \"c\": {\"uri\": \"http://x/\"}}}",
                 &cfg, &errtext);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_ptr_nonnull(strstr(errtext, "endpoints.a.url"));
    ck_assert_ptr_nonnull(strstr(errtext, "endpoints.b.timeout"));
    ck_assert_ptr_nonnull(strstr(errtext, "endpoints.c: unknown key \"uri\"; did you mean \"url\"?"));
    free(errtext);
}
END_TEST

START_TEST(test_missing_file)
{
    struct config *cfg = NULL;
    struct config_errors errs = {0};
    char *path = tu_fmt("%s/nope.json", dir);
    ck_assert_int_eq(config_load(path, &cfg, &errs), -EINVAL);
    ck_assert_uint_eq(errs.n, 1);
    ck_assert_ptr_nonnull(strstr(errs.msgs[0], "nope.json: cannot open: No such file or directory"));
    config_errors_done(&errs);
    ck_assert_int_eq(config_load(dir, &cfg, &errs), -EINVAL);
    ck_assert_ptr_nonnull(strstr(errs.msgs[0], "is a directory"));
    config_errors_done(&errs);
    free(path);
}
END_TEST

START_TEST(test_too_big)
{
    char *path = tu_fmt("%s/big.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, CONFIG_MAX_FILE_BYTES + 10, SEEK_SET), 0);
    fputc(' ', f);
    fclose(f);
    struct config *cfg = NULL;
    struct config_errors errs = {0};
    ck_assert_int_eq(config_load(path, &cfg, &errs), -EINVAL);
    ck_assert_ptr_nonnull(strstr(errs.msgs[0], "larger than 64 MiB"));
    config_errors_done(&errs);
    free(path);
}
END_TEST

START_TEST(test_defaults_applied)
{
    struct config *cfg;
    char *errtext;
    int r = load("{\n"
                 "  \"defaults\": {\"interval\": \"30s\", \"timeout\": \"5s\", \"headers\": {\"Accept\": \"application/json\", \"X-Drop\": \"1\"}},\n"
                 "  \"limits\": {\"max_concurrent\": 8, \"max_per_host\": 2, \"max_body_size\": \"1MiB\", \"shutdown_grace\": \"3s\"},\n"
                 "  \"endpoints\": {\n"
                 "    \"a\": {\"url\": \"https://user:pw@api.example.com/v1?api_key=k&x=1\"},\n"
                 "    \"b\": {\"url\": \"http://x/\", \"interval\": \"1h30m\", \"headers\": {\"accept\": \"text/plain\", \"X-Drop\": null, \"X-Empty\": \"\"},\n"
                 "           \"method\": \"POST\", \"body\": {\"q\": [1, 2]}, \"select\": \"/data/0\", \"enabled\": false}\n"
                 "  }\n"
                 "}\n",
                 &cfg, &errtext);
    ck_assert_msg(r == 0, "load failed: %s", errtext);
    free(errtext);
    ck_assert_uint_eq(cfg->n_endpoints, 2);
    ck_assert_uint_eq(cfg->limits.max_concurrent, 8);
    ck_assert_uint_eq(cfg->limits.max_per_host, 2);
    ck_assert_uint_eq(cfg->limits.max_body_size, 1024 * 1024);
    ck_assert_uint_eq(cfg->limits.shutdown_grace, 3 * USEC_PER_SEC);

    const struct endpoint_cfg *a = config_find_endpoint(cfg, "a");
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(a->interval, 30 * USEC_PER_SEC);
    ck_assert_uint_eq(a->timeout, 5 * USEC_PER_SEC);
    ck_assert_uint_eq(a->max_body_size, 1024 * 1024);
    ck_assert_str_eq(a->method, "GET");
    ck_assert_uint_eq(a->n_headers, 2);
    ck_assert_str_eq(a->headers[0], "Accept: application/json");
    ck_assert_str_eq(a->url_redacted, "https://user:***@api.example.com/v1?api_key=***&x=1");
    ck_assert(a->enabled);
    ck_assert_uint_eq(a->n_sinks, 1);
    ck_assert_str_eq(cfg->sinks[a->sinks[0]].name, "stdout");
    ck_assert(cfg->sinks[a->sinks[0]].implicit);

    const struct endpoint_cfg *b = config_find_endpoint(cfg, "b");
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(b->interval, 90 * 60 * USEC_PER_SEC);
    ck_assert(!b->enabled);
    ck_assert_str_eq(b->method, "POST");
    ck_assert_str_eq(b->body, "{\"q\":[1,2]}");
    ck_assert(b->body_is_json);
    ck_assert_ptr_nonnull(b->select);
    ck_assert_str_eq(b->select->src, "/data/0");
    /* endpoint header replaces the default of the same name (case-insensitive),
     * null removes one, an empty value is sent empty; JSON body adds a type */
    ck_assert_uint_eq(b->n_headers, 3);
    ck_assert_str_eq(b->headers[0], "accept: text/plain");
    ck_assert_str_eq(b->headers[1], "X-Empty;");
    ck_assert_str_eq(b->headers[2], "Content-Type: application/json");
    ck_assert_ptr_null(config_find_endpoint(cfg, "c"));
    ck_assert_ptr_null(a->body);
    config_free(cfg);
}
END_TEST

START_TEST(test_builtin_defaults)
{
    struct config *cfg;
    char *errtext;
    ck_assert_int_eq(load("{\"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}", &cfg, &errtext), 0);
    free(errtext);
    const struct endpoint_cfg *a = &cfg->endpoints[0];
    ck_assert_uint_eq(a->interval, 60 * USEC_PER_SEC);
    ck_assert_uint_eq(a->timeout, 30 * USEC_PER_SEC);
    ck_assert_uint_eq(a->connect_timeout, 10 * USEC_PER_SEC);
    ck_assert_uint_eq(a->max_body_size, 8 * 1024 * 1024);
    ck_assert(!a->follow_redirects);
    ck_assert_uint_eq(a->max_redirects, 5);
    ck_assert_uint_eq(cfg->limits.max_concurrent, 64);
    ck_assert_uint_eq(cfg->limits.max_per_host, 0);
    ck_assert_ptr_eq(a->url_redacted, a->url);
    config_free(cfg);
}
END_TEST

START_TEST(test_dropins)
{
    char *d = tu_fmt("%s/fetchd.d", dir);
    ck_assert_int_eq(mkdir(d, 0755), 0);
    char *f1 = tu_write(d, "20-b.json",
                        "{\"endpoints\": {\"a\": {\"url\": \"http://b/\"}, \"new\": {\"url\": \"http://n/\"}}}");
    char *f2 = tu_write(d, "10-a.json",
                        "{\"defaults\": {\"timeout\": \"2s\"}, \"endpoints\": {\"a\": {\"url\": \"http://a/\"}}}");
    char *f3 = tu_write(d, "ignored.txt", "not json");
    char *f4 = tu_write(d, ".hidden.json", "not json");
    struct config *cfg;
    char *errtext;
    int r = load("{\"defaults\": {\"timeout\": \"9s\"}, \"endpoints\": {\"a\": {\"url\": \"http://main/\"}, "
                 "\"z\": {\"url\": \"http://z/\"}}}",
                 &cfg, &errtext);
    ck_assert_msg(r == 0, "%s", errtext);
    free(errtext);
    ck_assert_uint_eq(cfg->n_dropins, 2);
    ck_assert_ptr_nonnull(strstr(cfg->dropins[0], "10-a.json"));
    ck_assert_ptr_nonnull(strstr(cfg->dropins[1], "20-b.json"));
    ck_assert_uint_eq(cfg->n_endpoints, 3);
    /* later files replace same-named endpoints but keep their position */
    ck_assert_str_eq(cfg->endpoints[0].name, "a");
    ck_assert_str_eq(cfg->endpoints[0].url, "http://b/");
    ck_assert_str_eq(cfg->endpoints[1].name, "z");
    ck_assert_str_eq(cfg->endpoints[2].name, "new");
    ck_assert_uint_eq(cfg->endpoints[1].timeout, 2 * USEC_PER_SEC);
    config_free(cfg);

    /* an error inside a drop-in names the drop-in */
    char *f5 = tu_write(d, "30-bad.json", "{\"endpoints\": {\"x\": {\"url\": \"ftp://x/\"}}}");
    r = load("{\"endpoints\": {\"a\": {\"url\": \"http://main/\"}}}", &cfg, &errtext);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_msg(strstr(errtext, "30-bad.json:1:29: endpoints.x.url"), "%s", errtext);
    free(errtext);
    free(f1);
    free(f2);
    free(f3);
    free(f4);
    free(f5);
    free(d);
}
END_TEST

START_TEST(test_file_sink_and_summary)
{
    struct config *cfg;
    char *errtext;
    char *text = tu_fmt("{\"defaults\": {\"sinks\": [\"out\", \"stdout\"]},"
                        " \"sinks\": {\"out\": {\"type\": \"file\", \"path\": \"%s/out.jsonl\"}},"
                        " \"endpoints\": {\"a\": {\"url\": \"http://x/?token=abc\"}, \"b\": {\"url\": \"http://y/\", \"sinks\": [\"out\"]}}}",
                        dir);
    int r = load(text, &cfg, &errtext);
    ck_assert_msg(r == 0, "%s", errtext);
    free(errtext);
    free(text);
    ck_assert_uint_eq(cfg->endpoints[0].n_sinks, 2);
    ck_assert_uint_eq(cfg->endpoints[1].n_sinks, 1);
    ck_assert_str_eq(cfg->sinks[cfg->endpoints[1].sinks[0]].name, "out");
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    config_print_summary(cfg, f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(out, "endpoints (2, 2 enabled)"));
    ck_assert_ptr_nonnull(strstr(out, "out.jsonl"));
    ck_assert_ptr_nonnull(strstr(out, "token=***"));
    ck_assert_ptr_null(strstr(out, "abc"));
    free(out);
    config_free(cfg);
}
END_TEST

START_TEST(test_many_endpoints)
{
    /* 20 000 endpoints load, and lookups work */
    size_t n = 20000;
    size_t cap = n * 64 + 64;
    char *text = malloc(cap);
    size_t len = (size_t)snprintf(text, cap, "{\"endpoints\": {");
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(text + len, cap - len, "%s\"e%zu\": {\"url\": \"http://h/%zu\"}",
                                i ? "," : "", i, i);
    }
    snprintf(text + len, cap - len, "}}");
    struct config *cfg;
    char *errtext;
    ck_assert_int_eq(load(text, &cfg, &errtext), 0);
    free(errtext);
    free(text);
    ck_assert_uint_eq(cfg->n_endpoints, n);
    ck_assert_str_eq(config_find_endpoint(cfg, "e12345")->url, "http://h/12345");
    config_free(cfg);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("load");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_bad, 0, (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(tc, test_secret_not_echoed);
    tcase_add_test(tc, test_bad_default_reported_once);
    tcase_add_test(tc, test_all_errors_reported);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_too_big);
    tcase_add_test(tc, test_defaults_applied);
    tcase_add_test(tc, test_builtin_defaults);
    tcase_add_test(tc, test_dropins);
    tcase_add_test(tc, test_file_sink_and_summary);
    tcase_add_test(tc, test_many_endpoints);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
