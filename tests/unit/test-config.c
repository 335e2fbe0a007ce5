/* test-config.c - config loading: every validation error names the file,
 * line:column and key path; defaults, drop-ins and merging behave. */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "template.h"
#include "jptr.h"
#include "testutil.h"
#include "url.h"
#include "util/buf.h"

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
     "sinks.o: unknown sink type \"kafka\" (known: stdout, file, journal, exec, http, plugin)"},
    {"file sink without path", "{\"sinks\": {\"o\": {\"type\": \"file\"}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "sinks.o: missing \"path\""},
    {"file sink unknown option", "{\"sinks\": {\"o\": {\"type\": \"file\", \"path\": \"/tmp/x\", \"rotate\": true}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "unknown key \"rotate\""},
    {"file sink fsync value", "{\"sinks\": {\"o\": {\"type\": \"file\", \"path\": \"/tmp/x\", \"fsync\": \"sometimes\"}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "sinks.o.fsync: must be one of: never, interval, always (got \"sometimes\")"},
    {"sink records value", "{\"sinks\": {\"o\": {\"type\": \"stdout\", \"records\": \"failures\"}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\", \"sinks\": [\"o\"]}}}",
     "sinks.o.records: must be one of: all, ok, errors (got \"failures\")"},
    {"sink overflow value", "{\"sinks\": {\"o\": {\"type\": \"stdout\", \"overflow\": \"block\"}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\", \"sinks\": [\"o\"]}}}",
     "sinks.o.overflow: must be one of: drop_oldest, drop_newest, pause (got \"block\")"},
    {"sink queue zero", "{\"sinks\": {\"o\": {\"type\": \"stdout\", \"queue_max_records\": 0}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\", \"sinks\": [\"o\"]}}}",
     "sinks.o: \"queue_max_records\" must be at least 1"},
    {"sink queue bytes small", "{\"sinks\": {\"o\": {\"type\": \"stdout\", \"queue_max_bytes\": \"1KiB\"}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\", \"sinks\": [\"o\"]}}}",
     "sinks.o: \"queue_max_bytes\" must be at least 4KiB"},
    {"sink backoff order", "{\"sinks\": {\"o\": {\"type\": \"stdout\", \"retry_backoff\": \"10s\", \"retry_max_backoff\": \"1s\"}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\", \"sinks\": [\"o\"]}}}",
     "sinks.o: \"retry_max_backoff\" must not be below \"retry_backoff\""},
    {"two stdout sinks", "{\"sinks\": {\"a\": {\"type\": \"stdout\"}, \"b\": {\"type\": \"stdout\", \"records\": \"errors\"}}, \"endpoints\": {\"x\": {\"url\": \"http://x/\", \"sinks\": [\"a\", \"b\"]}}}",
     "sinks.b: sinks 'a' and 'b' both write to standard output"},
    {"plugin missing file", "{\"sinks\": {\"o\": {\"type\": \"plugin\", \"path\": \"/nonexistent/x.so\"}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\", \"sinks\": [\"o\"]}}}",
     "sinks.o.path: plugin \"/nonexistent/x.so\" cannot be found (No such file or directory)"},
    {"plugin not a shared object", "{\"sinks\": {\"o\": {\"type\": \"plugin\", \"path\": \"/etc/hostname\"}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\", \"sinks\": [\"o\"]}}}",
     "sinks.o.path: plugin \"/etc/hostname\" cannot be loaded: "},
    {"plugin options not object", "{\"sinks\": {\"o\": {\"type\": \"stdout\", \"options\": {}}}, \"endpoints\": {\"a\": {\"url\": \"http://x/\", \"sinks\": [\"o\"]}}}",
     "unknown key \"options\""},
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
    /* request templates and checkpoints */
    {"unknown placeholder", "{\"endpoints\": {\"a\": {\"url\": \"http://x/?t=${nwo}\"}}}",
     "1:29: endpoints.a.url: at byte 13: unknown placeholder \"${nwo}\""},
    {"placeholder in the host", "{\"endpoints\": {\"a\": {\"url\": \"http://${env:HOME}/\"}}}",
     "endpoints.a.url: a placeholder in the scheme, host or port (at byte 8)"},
    {"unset variable", "{\"endpoints\": {\"a\": {\"url\": \"http://x/?k=${env:FETCHD_TEST_UNSET_VAR}\"}}}",
     "FETCHD_TEST_UNSET_VAR is not set"},
    {"header placeholder", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"headers\": {\"X-T\": \"${now:bad}\"}}}}",
     "endpoints.a.headers: header X-T: at byte 1"},
    {"body placeholder", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"method\": \"POST\", \"body\": {\"q\": \"${oops}\"}}}}",
     "endpoints.a.body: at byte"},
    {"checkpoint placeholder without checkpoint", "{\"endpoints\": {\"a\": {\"url\": \"http://x/?since=${checkpoint}\"}}}",
     "endpoints.a: ${checkpoint} is used but endpoint \"a\" has no \"checkpoint\""},
    {"checkpoint without placeholder", "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"checkpoint\": \"/id\"}}}",
     "endpoints.a.checkpoint: endpoint \"a\" keeps a checkpoint but no ${checkpoint}"},
    {"checkpoint bad pointer", "{\"endpoints\": {\"a\": {\"url\": \"http://x/?s=${checkpoint}\", \"checkpoint\": \"id\"}}}",
     "endpoints.a.checkpoint: invalid JSON Pointer \"id\""},
    {"checkpoint bad keep", "{\"endpoints\": {\"a\": {\"url\": \"http://x/?s=${checkpoint}\", \"checkpoint\": {\"pointer\": \"/id\", \"keep\": \"min\"}}}}",
     "endpoints.a.checkpoint.keep: expected \"max\""},
    {"checkpoint unknown key", "{\"endpoints\": {\"a\": {\"url\": \"http://x/?s=${checkpoint}\", \"checkpoint\": {\"ptr\": \"/id\"}}}}",
     "unknown key \"ptr\""},
    {"timezone unused", "{\"endpoints\": {\"a\": {\"url\": \"http://x/?e=${env:HOME}\", \"timezone\": \"UTC\"}}}",
     "endpoints.a.timezone: \"timezone\" applies to \"schedule\" and to the time placeholders"},
    {"default timezone unknown", "{\"defaults\": {\"timezone\": \"Europe/Berln\"}, \"endpoints\": {\"a\": {\"url\": \"http://x/?t=${now}\"}}}",
     "defaults.timezone: unknown time zone \"Europe/Berln\""},
    {"timezone unknown", "{\"endpoints\": {\"a\": {\"url\": \"http://x/?t=${now}\", \"timezone\": \"Mars/Base\"}}}",
     "endpoints.a.timezone: unknown time zone"},
    {"credential without directory", "{\"endpoints\": {\"a\": {\"url\": \"http://x/?k=${credential:k}\"}}}",
     "${credential:k}: "},
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

/* ---- the endpoint_ext options ------------------------------------------- */

/* One endpoint "a" with extra keys; the prefix is 41 bytes, so the first
 * extra key starts at column 42. */
#define EPX(keys) "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", " keys "}}}"

/* Replaces every "@D@" in s by the test directory (malloc'd). */
static char *subst_dir(const char *s)
{
    size_t dl = strlen(dir), n = 1;
    for (const char *p = s; (p = strstr(p, "@D@")); p += 3) {
        n += dl;
    }
    char *out = malloc(strlen(s) + n);
    ck_assert_ptr_nonnull(out);
    char *o = out;
    while (*s) {
        if (strncmp(s, "@D@", 3) == 0) {
            memcpy(o, dir, dl);
            o += dl;
            s += 3;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

/* Secret and TLS files the configs below refer to (as @D@/NAME). */
static void write_fixtures(void)
{
    static const char *const files[][2] = {
        {"tok", "t0k3n\n"},      {"pw", "hunter2\r\n"},
        {"cs", "client-s3cret"}, {"ca.pem", "not checked"},
        {"c.pem", "cert"},       {"k.pem", "key"},
        {"empty", ""},           {"newline", "\n\n"},
        {"two", "s3cr3t\nmore"}, {"two_cr", "s3cr3t\rmore\n"},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        free(tu_write(dir, files[i][0], files[i][1]));
    }
}

static int load_subst(const char *text, struct config **cfg, char **errtext)
{
    char *t = subst_dir(text);
    int r = load(t, cfg, errtext);
    free(t);
    return r;
}

static const struct bad_case ext_bad_cases[] = {
    /* auth */
    {"auth not object", EPX("\"auth\": \"x\""),
     "1:50: endpoints.a.auth: expected an object such as {\"type\": \"bearer\", \"token_file\": "
     "\"/etc/fetchd/token\"}, got \"x\""},
    {"auth no type", EPX("\"auth\": {\"user\": \"a\"}"),
     "endpoints.a.auth.type: \"type\" must be \"basic\", \"bearer\" or \"oauth2\""},
    {"auth type not string", EPX("\"auth\": {\"type\": 1}"),
     "endpoints.a.auth.type: \"type\" must be \"basic\", \"bearer\" or \"oauth2\""},
    {"auth unknown type", EPX("\"auth\": {\"type\": \"digest\"}"),
     "endpoints.a.auth.type: unknown auth type \"digest\"; use \"basic\", \"bearer\" or "
     "\"oauth2\""},
    {"auth unknown key",
     EPX("\"auth\": {\"type\": \"bearer\", \"token_file\": \"@D@/tok\", \"tokenfile\": 1}"),
     "endpoints.a.auth: unknown key \"tokenfile\"; did you mean \"token_file\"?"},
    {"auth duplicate key",
     EPX("\"auth\": {\"type\": \"bearer\", \"token_file\": \"@D@/tok\", \"token_file\": "
         "\"@D@/tok\"}"),
     "endpoints.a.auth: duplicate key \"token_file\""},
    {"basic without user", EPX("\"auth\": {\"type\": \"basic\", \"password_file\": \"@D@/pw\"}"),
     "endpoints.a.auth: basic auth needs \"user\""},
    {"basic user with colon",
     EPX("\"auth\": {\"type\": \"basic\", \"user\": \"a:b\", \"password_file\": \"@D@/pw\"}"),
     "endpoints.a.auth.user: the user name must not contain ':', CR or LF"},
    {"basic user not string",
     EPX("\"auth\": {\"type\": \"basic\", \"user\": 7, \"password_file\": \"@D@/pw\"}"),
     "endpoints.a.auth.user: expected a string, got 7"},
    {"basic without password", EPX("\"auth\": {\"type\": \"basic\", \"user\": \"a\"}"),
     "endpoints.a.auth: set exactly one of \"password_file\" (a file holding the password) and "
     "\"password_credential\" (a systemd credential name)"},
    {"basic with both password sources",
     EPX("\"auth\": {\"type\": \"basic\", \"user\": \"a\", \"password_file\": \"@D@/pw\", "
         "\"password_credential\": \"pw\"}"),
     "endpoints.a.auth: set exactly one of \"password_file\""},
    {"basic with a bearer key",
     EPX("\"auth\": {\"type\": \"basic\", \"user\": \"a\", \"password_file\": \"@D@/pw\", "
         "\"token_file\": \"@D@/tok\"}"),
     "endpoints.a.auth.token_file: \"token_file\" does not apply to auth type \"basic\""},
    {"bearer with user",
     EPX("\"auth\": {\"type\": \"bearer\", \"user\": \"a\", \"token_file\": \"@D@/tok\"}"),
     "endpoints.a.auth.user: \"user\" does not apply to auth type \"bearer\""},
    {"bearer token_file not string", EPX("\"auth\": {\"type\": \"bearer\", \"token_file\": 5}"),
     "endpoints.a.auth.token_file: expected a string, got 5"},
    {"bearer token_file empty path", EPX("\"auth\": {\"type\": \"bearer\", \"token_file\": \"\"}"),
     "endpoints.a.auth.token_file: the path is empty"},
    {"bearer bad credential name",
     EPX("\"auth\": {\"type\": \"bearer\", \"token_credential\": \"a/b\"}"),
     "endpoints.a.auth.token_credential: invalid credential name \"a/b\" (a file name, no '/')"},
    {"bearer credential dotdot",
     EPX("\"auth\": {\"type\": \"bearer\", \"token_credential\": \"..\"}"),
     "endpoints.a.auth.token_credential: invalid credential name \"..\""},
    {"oauth2 without token_url",
     EPX("\"auth\": {\"type\": \"oauth2\", \"client_id\": \"c\", \"client_secret_file\": "
         "\"@D@/cs\"}"),
     "endpoints.a.auth: oauth2 needs \"token_url\""},
    {"oauth2 without client_id",
     EPX("\"auth\": {\"type\": \"oauth2\", \"token_url\": \"https://idp/t\", "
         "\"client_secret_file\": \"@D@/cs\"}"),
     "endpoints.a.auth: oauth2 needs \"client_id\""},
    {"oauth2 without secret",
     EPX("\"auth\": {\"type\": \"oauth2\", \"token_url\": \"https://idp/t\", \"client_id\": "
         "\"c\"}"),
     "endpoints.a.auth: set exactly one of \"client_secret_file\" (a file holding the "
     "client_secret) and "
     "\"client_secret_credential\""},
    {"oauth2 ftp token_url",
     EPX("\"auth\": {\"type\": \"oauth2\", \"token_url\": \"ftp://idp/t\", \"client_id\": \"c\", "
         "\"client_secret_file\": \"@D@/cs\"}"),
     "endpoints.a.auth.token_url: scheme \"ftp\" is not allowed"},
    {"oauth2 bad client_auth",
     EPX("\"auth\": {\"type\": \"oauth2\", \"token_url\": \"https://idp/t\", \"client_id\": \"c\", "
         "\"client_secret_file\": \"@D@/cs\", \"client_auth\": \"post\"}"),
     "endpoints.a.auth.client_auth: expected \"basic\" or \"body\""},
    {"oauth2 scope not string",
     EPX("\"auth\": {\"type\": \"oauth2\", \"token_url\": \"https://idp/t\", \"client_id\": \"c\", "
         "\"client_secret_file\": \"@D@/cs\", \"scope\": [\"a\"]}"),
     "endpoints.a.auth.scope: expected a string, got an array"},
    {"oauth2 with a basic key",
     EPX("\"auth\": {\"type\": \"oauth2\", \"token_url\": \"https://idp/t\", \"client_id\": \"c\", "
         "\"client_secret_file\": \"@D@/cs\", \"password_file\": \"@D@/pw\"}"),
     "endpoints.a.auth.password_file: \"password_file\" does not apply to auth type \"oauth2\""},
    /* tls */
    {"tls not object", EPX("\"tls\": true"),
     "1:49: endpoints.a.tls: expected an object such as {\"ca_file\": \"/etc/fetchd/ca.pem\"}, got "
     "true"},
    {"tls verify not bool", EPX("\"tls\": {\"verify\": \"no\"}"),
     "1:60: endpoints.a.tls.verify: expected true or false, got \"no\""},
    {"tls bad min_version", EPX("\"tls\": {\"min_version\": \"1.4\"}"),
     "endpoints.a.tls.min_version: expected \"1.0\", \"1.1\", \"1.2\" or \"1.3\""},
    {"tls min_version number", EPX("\"tls\": {\"min_version\": 1.2}"),
     "endpoints.a.tls.min_version: expected a string, got 1.2"},
    {"tls missing ca_file", EPX("\"tls\": {\"ca_file\": \"@D@/missing.pem\"}"),
     "endpoints.a.tls.ca_file: cannot open @D@/missing.pem: No such file or directory"},
    {"tls ca_path is a file", EPX("\"tls\": {\"ca_path\": \"@D@/ca.pem\"}"),
     "endpoints.a.tls.ca_path: cannot open @D@/ca.pem: Not a directory"},
    {"tls missing client_cert",
     EPX("\"tls\": {\"client_cert\": \"@D@/nope.pem\", \"client_key\": \"@D@/k.pem\"}"),
     "endpoints.a.tls.client_cert: cannot open @D@/nope.pem"},
    {"tls empty ca_file", EPX("\"tls\": {\"ca_file\": \"\"}"),
     "endpoints.a.tls.ca_file: the path is empty"},
    {"tls key without cert", EPX("\"tls\": {\"client_key\": \"@D@/k.pem\"}"),
     "endpoints.a.tls: \"client_key\" needs \"client_cert\""},
    {"tls unknown key", EPX("\"tls\": {\"verfy\": false}"),
     "endpoints.a.tls: unknown key \"verfy\"; did you mean \"verify\"?"},
    /* proxy, unix_socket */
    {"proxy ftp", EPX("\"proxy\": \"ftp://p:21\""),
     "1:51: endpoints.a.proxy: expected a proxy URL (http://, https://, socks4://, socks4a://, "
     "socks5:// "
     "or socks5h://) or \"\" for no proxy"},
    {"proxy without scheme", EPX("\"proxy\": \"proxy.example:3128\""),
     "endpoints.a.proxy: expected a proxy URL"},
    {"proxy with space", EPX("\"proxy\": \"http://p :3128\""),
     "endpoints.a.proxy: expected a proxy URL"},
    {"proxy number", EPX("\"proxy\": 3128"), "endpoints.a.proxy: expected a string, got 3128"},
    {"proxy and unix_socket", EPX("\"proxy\": \"http://p:3128\", \"unix_socket\": \"/run/a.sock\""),
     "endpoints.a.proxy: \"proxy\" and \"unix_socket\" cannot be combined"},
    {"unix_socket relative", EPX("\"unix_socket\": \"run/a.sock\""),
     "1:57: endpoints.a.unix_socket: expected an absolute socket path shorter than 108 bytes"},
    {"unix_socket too long",
     EPX("\"unix_socket\": "
         "\"/"
         "sssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss"
         "sssssssssssssssssssss\""),
     "endpoints.a.unix_socket: expected an absolute socket path shorter than 108 bytes"},
    /* http_version */
    {"http_version 3", EPX("\"http_version\": \"3\""),
     "1:58: endpoints.a.http_version: expected \"auto\", \"1.0\", \"1.1\", \"2\" or \"h2c\", got "
     "\"3\""},
    {"http_version number", EPX("\"http_version\": 2"),
     "endpoints.a.http_version: expected a string, got 2"},
    {"http_version case", EPX("\"http_version\": \"H2C\""), "got \"H2C\""},
    /* compression */
    {"compression string", EPX("\"compression\": \"gzip\""),
     "endpoints.a.compression: expected true, false or an array such as [\"gzip\", \"zstd\"], got "
     "\"gzip\""},
    {"compression empty array", EPX("\"compression\": []"),
     "endpoints.a.compression: expected true, false or an array such as [\"gzip\", \"zstd\"], got "
     "an array"},
    {"compression unknown coding", EPX("\"compression\": [\"gzip\", \"lz4\"]"),
     "1:66: endpoints.a.compression: expected \"gzip\", \"deflate\", \"br\" or \"zstd\", got "
     "\"lz4\""},
    /* schemes */
    {"schemes empty", EPX("\"schemes\": []"),
     "endpoints.a.schemes: expected a non-empty array such as [\"https\"]"},
    {"schemes string", EPX("\"schemes\": \"https\""),
     "endpoints.a.schemes: expected a non-empty array"},
    {"schemes unknown", EPX("\"schemes\": [\"https\", \"gopher\"]"),
     "1:63: endpoints.a.schemes: expected \"http\", \"https\", \"file\", \"ftp\" or \"ftps\", got "
     "\"gopher\""},
    {"schemes exclude the url's", EPX("\"schemes\": [\"https\"]"),
     "1:29: endpoints.a.url: scheme \"http\" is not allowed (allowed: https)"},
    {"schemes in defaults exclude the url's",
     "{\"defaults\": {\"schemes\": [\"https\"]}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "endpoints.a.url: scheme \"http\" is not allowed (allowed: https)"},
    {"file url needs schemes", "{\"endpoints\": {\"a\": {\"url\": \"file:///etc/x.json\"}}}",
     "endpoints.a.url: scheme \"file\" is not allowed (allowed: http, https; others need "
     "\"schemes\")"},
    /* secret_headers, response_headers */
    {"secret_headers not array", EPX("\"secret_headers\": \"X-A\""),
     "endpoints.a.secret_headers: expected an array of header names, such as [\"ETag\"]"},
    {"secret_headers bad name", EPX("\"secret_headers\": [\"X-A\", \"X B\"]"),
     "1:68: endpoints.a.secret_headers: expected a header name, got \"X B\""},
    {"secret_headers number", EPX("\"secret_headers\": [1]"),
     "endpoints.a.secret_headers: expected a header name, got 1"},
    {"response_headers not array", EPX("\"response_headers\": {\"ETag\": true}"),
     "endpoints.a.response_headers: expected an array of header names, such as [\"ETag\"]"},
    {"response_headers bad name", EPX("\"response_headers\": [\"ETag\", \"X:Y\"]"),
     "endpoints.a.response_headers: expected a header name, got \"X:Y\""},
    {"response_headers empty name", EPX("\"response_headers\": [\"\"]"),
     "endpoints.a.response_headers: expected a header name, got \"\""},
    /* success_status */
    {"success_status empty", EPX("\"success_status\": []"),
     "endpoints.a.success_status: expected a non-empty array such as [\"2xx\", 404]"},
    {"success_status string", EPX("\"success_status\": \"2xx\""),
     "endpoints.a.success_status: expected a non-empty array"},
    {"success_status 600", EPX("\"success_status\": [\"2xx\", 600]"),
     "1:68: endpoints.a.success_status: expected a status from 100 to 599 or a class such as "
     "\"2xx\", got 600"},
    {"success_status 99", EPX("\"success_status\": [99]"), "got 99"},
    {"success_status fraction", EPX("\"success_status\": [200.5]"), "got 200.5"},
    {"success_status 6xx", EPX("\"success_status\": [\"6xx\"]"), "got \"6xx\""},
    {"success_status 20x", EPX("\"success_status\": [\"20x\"]"), "got \"20x\""},
    {"success_status 2xxx", EPX("\"success_status\": [\"2xxx\"]"), "got \"2xxx\""},
    {"success_status 099", EPX("\"success_status\": [\"099\"]"), "got \"099\""},
    /* retry */
    {"retry true", EPX("\"retry\": true"),
     "1:51: endpoints.a.retry: expected an object such as {\"attempts\": 3, \"backoff\": \"1s\"}, "
     "got true"},
    {"retry attempts 0", EPX("\"retry\": {\"attempts\": 0}"),
     "1:64: endpoints.a.retry.attempts: 0 is out of range; use a number from 1 to 10"},
    {"retry attempts 11", EPX("\"retry\": {\"attempts\": 11}"),
     "endpoints.a.retry.attempts: 11 is out of range; use a number from 1 to 10"},
    {"retry attempts fraction", EPX("\"retry\": {\"attempts\": 2.5}"),
     "endpoints.a.retry.attempts: expected a whole number, got 2.5"},
    {"retry backoff", EPX("\"retry\": {\"backoff\": \"fast\"}"),
     "endpoints.a.retry.backoff: expected a duration such as \"30s\""},
    {"retry backoff 0", EPX("\"retry\": {\"backoff\": \"0s\"}"),
     "endpoints.a.retry.backoff: 0s is out of range"},
    {"retry max_backoff below backoff",
     EPX("\"retry\": {\"backoff\": \"10s\", \"max_backoff\": \"5s\"}"),
     "1:51: endpoints.a.retry: \"max_backoff\" is smaller than \"backoff\""},
    {"retry backoff above default max", EPX("\"retry\": {\"backoff\": \"40s\"}"),
     "endpoints.a.retry: \"max_backoff\" is smaller than \"backoff\""},
    {"retry max_retry_after", EPX("\"retry\": {\"max_retry_after\": \"2d\"}"),
     "endpoints.a.retry.max_retry_after: 2d is out of range"},
    {"retry on not array", EPX("\"retry\": {\"on\": \"5xx\"}"),
     "endpoints.a.retry.on: expected an array such as [\"network\", \"timeout\", \"429\", "
     "\"5xx\"]"},
    {"retry on unknown", EPX("\"retry\": {\"on\": [\"network\", \"flaky\"]}"),
     "endpoints.a.retry.on: expected \"network\", \"timeout\", a status such as 503 or \"429\", or "
     "a class such "
     "as \"5xx\"; got \"flaky\""},
    {"retry on 99", EPX("\"retry\": {\"on\": [99]}"), "endpoints.a.retry.on: expected \"network\""},
    {"retry on upper-case", EPX("\"retry\": {\"on\": [\"Network\"]}"), "got \"Network\""},
    {"retry non_idempotent", EPX("\"retry\": {\"non_idempotent\": \"yes\"}"),
     "endpoints.a.retry.non_idempotent: expected true or false, got \"yes\""},
    {"retry unknown key", EPX("\"retry\": {\"attempt\": 3}"),
     "endpoints.a.retry: unknown key \"attempt\"; did you mean \"attempts\"?"},
    /* breaker */
    {"breaker true", EPX("\"breaker\": true"),
     "endpoints.a.breaker: expected an object such as {\"after\": 5, \"max_backoff\": \"10m\"}, "
     "got true"},
    {"breaker after 0", EPX("\"breaker\": {\"after\": 0}"),
     "1:63: endpoints.a.breaker.after: 0 is out of range; use a number from 1 to 1000"},
    {"breaker after 1001", EPX("\"breaker\": {\"after\": 1001}"),
     "endpoints.a.breaker.after: 1001 is out of range"},
    {"breaker max_backoff small", EPX("\"breaker\": {\"max_backoff\": \"1ms\"}"),
     "endpoints.a.breaker.max_backoff: 1ms is out of range"},
    {"breaker max_backoff large", EPX("\"breaker\": {\"max_backoff\": \"8d\"}"),
     "endpoints.a.breaker.max_backoff: 8d is out of range"},
    {"breaker unknown key", EPX("\"breaker\": {\"afterr\": 3}"),
     "endpoints.a.breaker: unknown key \"afterr\"; did you mean \"after\"?"},
    /* booleans */
    {"conditional string", EPX("\"conditional\": \"yes\""),
     "1:57: endpoints.a.conditional: expected true or false, got \"yes\""},
    {"unchanged_record number", EPX("\"conditional\": true, \"unchanged_record\": 1"),
     "endpoints.a.unchanged_record: expected true or false, got 1"},
    {"unchanged_record without conditional", EPX("\"unchanged_record\": true"),
     "1:62: endpoints.a.unchanged_record: \"unchanged_record\" needs \"conditional\": true"},
    {"unchanged_record with conditional false",
     EPX("\"conditional\": false, \"unchanged_record\": true"),
     "endpoints.a.unchanged_record: \"unchanged_record\" needs \"conditional\": true"},
    {"split string", EPX("\"split\": \"true\""),
     "endpoints.a.split: expected true or false, got \"true\""},
    {"timings null", EPX("\"timings\": null"),
     "endpoints.a.timings: expected true or false, got null"},
    /* content_type, format */
    {"content_type xml", EPX("\"content_type\": \"xml\""),
     "1:58: endpoints.a.content_type: expected \"json\", \"strict\" or \"any\", got \"xml\""},
    {"content_type case", EPX("\"content_type\": \"JSON\""), "got \"JSON\""},
    {"content_type bool", EPX("\"content_type\": false"),
     "endpoints.a.content_type: expected a string, got false"},
    {"format csv", EPX("\"format\": \"csv\""),
     "1:52: endpoints.a.format: expected \"json\" or \"ndjson\", got \"csv\""},
    {"format jsonl", EPX("\"format\": \"jsonl\""), "got \"jsonl\""},
    {"ndjson with next_url", EPX("\"format\": \"ndjson\", \"paginate\": {\"next_url\": \"/next\"}"),
     "endpoints.a.paginate: with \"format\": \"ndjson\" only \"link\" pagination works"},
    {"ndjson with cursor",
     EPX("\"format\": \"ndjson\", \"paginate\": {\"cursor\": \"/c\", \"param\": \"c\"}"),
     "endpoints.a.paginate: with \"format\": \"ndjson\" only \"link\" pagination works"},
    /* paginate */
    {"paginate true", EPX("\"paginate\": true"),
     "1:54: endpoints.a.paginate: expected an object such as {\"link\": true, \"max_pages\": 10}, "
     "got true"},
    {"paginate empty", EPX("\"paginate\": {}"),
     "endpoints.a.paginate: set exactly one of \"link\": true, \"next_url\": POINTER and "
     "\"cursor\": POINTER"},
    {"paginate two modes", EPX("\"paginate\": {\"link\": true, \"next_url\": \"/n\"}"),
     "endpoints.a.paginate: set exactly one of"},
    {"paginate max_pages only", EPX("\"paginate\": {\"max_pages\": 3}"),
     "endpoints.a.paginate: set exactly one of"},
    {"paginate link false", EPX("\"paginate\": {\"link\": false}"),
     "1:63: endpoints.a.paginate.link: \"link\": false does nothing; remove \"paginate\" instead"},
    {"paginate link string", EPX("\"paginate\": {\"link\": \"yes\"}"),
     "endpoints.a.paginate.link: expected true or false, got \"yes\""},
    {"paginate max_pages 0", EPX("\"paginate\": {\"link\": true, \"max_pages\": 0}"),
     "endpoints.a.paginate.max_pages: 0 is out of range; use a number from 1 to 1000"},
    {"paginate max_pages 1001", EPX("\"paginate\": {\"link\": true, \"max_pages\": 1001}"),
     "endpoints.a.paginate.max_pages: 1001 is out of range"},
    {"paginate bad next_url pointer", EPX("\"paginate\": {\"next_url\": \"links/next\"}"),
     "endpoints.a.paginate.next_url: invalid JSON Pointer \"links/next\""},
    {"paginate next_url number", EPX("\"paginate\": {\"next_url\": 5}"),
     "endpoints.a.paginate.next_url: expected a string, got 5"},
    {"paginate bad cursor pointer", EPX("\"paginate\": {\"cursor\": \"/a~9\", \"param\": \"c\"}"),
     "endpoints.a.paginate.cursor: invalid JSON Pointer \"/a~9\""},
    {"paginate cursor without param", EPX("\"paginate\": {\"cursor\": \"/meta/next\"}"),
     "endpoints.a.paginate: a cursor needs \"param\": the query parameter to set"},
    {"paginate param with =", EPX("\"paginate\": {\"cursor\": \"/c\", \"param\": \"a=b\"}"),
     "endpoints.a.paginate.param: expected a query parameter name (no = & # ? or space)"},
    {"paginate param empty", EPX("\"paginate\": {\"cursor\": \"/c\", \"param\": \"\"}"),
     "endpoints.a.paginate.param: expected a query parameter name"},
    {"paginate param with space", EPX("\"paginate\": {\"cursor\": \"/c\", \"param\": \"a b\"}"),
     "endpoints.a.paginate.param: expected a query parameter name"},
    {"paginate param for link", EPX("\"paginate\": {\"link\": true, \"param\": \"p\"}"),
     "1:69: endpoints.a.paginate.param: \"param\" only applies to \"cursor\""},
    {"paginate unknown key", EPX("\"paginate\": {\"link\": true, \"max_page\": 3}"),
     "1:69: endpoints.a.paginate: unknown key \"max_page\"; did you mean \"max_pages\"?"},
    /* limits.retry_budget */
    {"retry_budget above 1",
     "{\"limits\": {\"retry_budget\": 1.5}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "1:29: limits.retry_budget: expected a number from 0 to 1 (retries per first attempt), got "
     "1.5"},
    {"retry_budget negative",
     "{\"limits\": {\"retry_budget\": -0.5}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "limits.retry_budget: expected a number from 0 to 1 (retries per first attempt), got -0.5"},
    {"retry_budget string",
     "{\"limits\": {\"retry_budget\": \"0.5\"}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "limits.retry_budget: expected a number from 0 to 1 (retries per first attempt), got \"0.5\""},
    {"retry_budget unknown limit",
     "{\"limits\": {\"retry_bugdet\": 0.5}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
     "limits: unknown key \"retry_bugdet\"; did you mean \"retry_budget\"?"},
    /* multi-line: line and column of the value */
    {"retry attempts multi-line",
     "{\n  \"endpoints\": {\n    \"a\": {\n      \"url\": \"http://x/\",\n      \"retry\": "
     "{\"attempts\": 11}\n    }\n  }\n}",
     "5:29: endpoints.a.retry.attempts: 11 is out of range; use a number from 1 to 10"},
    {"bad default ext key",
     "{\"defaults\": {\"breaker\": {\"after\": -1}}, \"endpoints\": {\"a\": {\"url\": "
     "\"http://x/\"}}}",
     "1:36: defaults.breaker.after: -1 is out of range"},
};

START_TEST(test_bad_ext)
{
    const struct bad_case *c = &ext_bad_cases[_i];
    write_fixtures();
    struct config *cfg;
    char *errtext;
    int r = load_subst(c->text, &cfg, &errtext);
    char *want = subst_dir(c->want);
    ck_assert_msg(r == -EINVAL, "%s: expected -EINVAL, got %d", c->name, r);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(errtext, want), "%s: wanted \"%s\" in:\n%s", c->name, want, errtext);
    ck_assert_msg(strstr(errtext, "fetchd.json:"), "%s: no file name in: %s", c->name, errtext);
    /* no secret file's content is ever shown */
    ck_assert_msg(!strstr(errtext, "t0k3n") && !strstr(errtext, "hunter2") &&
                      !strstr(errtext, "client-s3cret") && !strstr(errtext, "s3cr3t"),
                  "%s: a secret in: %s", c->name, errtext);
    free(want);
    free(errtext);
}
END_TEST

/* A status set holds exactly the codes in [lo, hi] ranges given as pairs
 * (terminated by 0). */
static void assert_status_set(const struct status_set *set, const long *ranges, const char *what)
{
    for (long code = 0; code <= 700; code++) {
        bool want = false;
        for (size_t i = 0; ranges[i]; i += 2) {
            want = want || (code >= ranges[i] && code <= ranges[i + 1]);
        }
        ck_assert_msg(status_set_has(set, code) == want, "%s: status %ld: expected %d", what, code,
                      want);
    }
}

static const char ext_ok_text[] =
    "{\n"
    "  \"limits\": {\"retry_budget\": 0.5},\n"
    "  \"endpoints\": {\n"
    "    \"plain\": {\"url\": \"http://x/\"},\n"
    "    \"basic\": {\"url\": \"https://x/\", \"auth\": {\"type\": \"basic\", \"user\": \"alice\", "
    "\"password_file\": \"@D@/pw\"}},\n"
    "    \"bearer\": {\"url\": \"https://x/\", \"auth\": {\"type\": \"bearer\", \"token_file\": "
    "\"@D@/tok\"}},\n"
    "    \"oauth\": {\"url\": \"https://x/\", \"auth\": {\"type\": \"oauth2\", \"token_url\": "
    "\"https://idp.example/token\",\n"
    "               \"client_id\": \"cid\", \"client_secret_file\": \"@D@/cs\", \"scope\": \"read "
    "write\", \"client_auth\": \"body\"}},\n"
    "    \"oauth_basic\": {\"url\": \"https://x/\", \"auth\": {\"type\": \"oauth2\", "
    "\"token_url\": \"https://idp.example/token?tenant=t1&api_key=k\",\n"
    "               \"client_id\": \"cid\", \"client_secret_file\": \"@D@/cs\", \"client_auth\": "
    "\"basic\"}},\n"
    "    \"noauth\": {\"url\": \"https://x/\", \"auth\": null},\n"
    "    \"tls\": {\"url\": \"https://x/\", \"tls\": {\"verify\": false, \"ca_file\": "
    "\"@D@/ca.pem\", \"ca_path\": \"@D@\",\n"
    "             \"client_cert\": \"@D@/c.pem\", \"client_key\": \"@D@/k.pem\", \"min_version\": "
    "\"1.2\"}},\n"
    "    \"tls10\": {\"url\": \"https://x/\", \"tls\": {\"verify\": true, \"min_version\": "
    "\"1.0\"}},\n"
    "    \"tls11\": {\"url\": \"https://x/\", \"tls\": {\"min_version\": \"1.1\"}},\n"
    "    \"tls13\": {\"url\": \"https://x/\", \"tls\": {\"min_version\": \"1.3\", \"client_cert\": "
    "\"@D@/c.pem\"}},\n"
    "    \"proxy\": {\"url\": \"http://x/\", \"proxy\": \"socks5h://127.0.0.1:1080\", "
    "\"http_version\": \"1.1\", \"compression\": true},\n"
    "    \"proxy_http\": {\"url\": \"http://x/\", \"proxy\": \"HTTP://proxy.example:3128\"},\n"
    "    \"noproxy\": {\"url\": \"http://x/\", \"proxy\": \"\", \"unix_socket\": "
    "\"/run/api.sock\", \"http_version\": \"h2c\",\n"
    "                 \"compression\": [\"gzip\", \"zstd\"]},\n"
    "    \"h10\": {\"url\": \"http://x/\", \"http_version\": \"1.0\", \"compression\": false},\n"
    "    \"h2\": {\"url\": \"http://x/\", \"http_version\": \"2\", \"compression\": [\"br\", "
    "\"deflate\"]},\n"
    "    \"auto\": {\"url\": \"http://x/\", \"http_version\": \"auto\"},\n"
    "    \"ftp\": {\"url\": \"ftp://f.example/x.json\", \"schemes\": [\"HTTPS\", \"ftp\", "
    "\"https\"]},\n"
    "    \"file\": {\"url\": \"file:///etc/x.json\", \"schemes\": [\"file\"]},\n"
    "    \"status\": {\"url\": \"http://x/\", \"success_status\": [\"2xx\", 404, \"304\", "
    "\"1XX\"],\n"
    "                \"secret_headers\": [\"X-Custom\", \"x-other\"]},\n"
    "    \"retry\": {\"url\": \"http://x/\", \"retry\": {\"attempts\": 4, \"backoff\": \"2s\", "
    "\"max_backoff\": \"10s\",\n"
    "               \"on\": [\"timeout\", 503, \"429\", \"4xx\"], \"max_retry_after\": \"5m\", "
    "\"non_idempotent\": true}},\n"
    "    \"retry_def\": {\"url\": \"http://x/\", \"retry\": {}},\n"
    "    \"retry_on_none\": {\"url\": \"http://x/\", \"retry\": {\"attempts\": 10, \"on\": []}},\n"
    "    \"retry_off\": {\"url\": \"http://x/\", \"retry\": false},\n"
    "    \"breaker\": {\"url\": \"http://x/\", \"breaker\": {\"after\": 3, \"max_backoff\": "
    "\"1h\"}},\n"
    "    \"breaker_max\": {\"url\": \"http://x/\", \"breaker\": {\"max_backoff\": \"7d\"}},\n"
    "    \"breaker_off\": {\"url\": \"http://x/\", \"breaker\": false},\n"
    "    \"cond\": {\"url\": \"http://x/\", \"conditional\": true, \"unchanged_record\": true, "
    "\"content_type\": \"strict\",\n"
    "              \"format\": \"ndjson\", \"split\": true, \"timings\": true,\n"
    "              \"response_headers\": [\"ETag\", \"X-RateLimit-Remaining\"], \"paginate\": "
    "{\"link\": true, \"max_pages\": 5}},\n"
    "    \"next\": {\"url\": \"http://x/\", \"content_type\": \"any\", \"format\": \"json\", "
    "\"split\": false,\n"
    "              \"paginate\": {\"next_url\": \"/links/next\"}},\n"
    "    \"cursor\": {\"url\": \"http://x/\", \"content_type\": \"json\", \"paginate\": "
    "{\"cursor\": \"/meta/next_cursor\",\n"
    "                \"param\": \"cursor\", \"max_pages\": 1000}}\n"
    "  }\n"
    "}\n";

static const struct endpoint_ext *ext_of(const struct config *cfg, const char *name)
{
    const struct endpoint_cfg *ep = config_find_endpoint(cfg, name);
    ck_assert_msg(ep != NULL, "no endpoint %s", name);
    ck_assert_ptr_nonnull(ep->x);
    return ep->x;
}

START_TEST(test_ext_parsed)
{
    write_fixtures();
    struct config *cfg;
    char *errtext;
    int r = load_subst(ext_ok_text, &cfg, &errtext);
    ck_assert_msg(r == 0, "load failed: %s", errtext);
    free(errtext);
    ck_assert_double_eq(cfg->limits.retry_budget, 0.5);
    char *path;

    /* built-in values */
    const struct endpoint_ext *x = ext_of(cfg, "plain");
    ck_assert_str_eq(x->canon, "{}");
    ck_assert_int_eq(x->auth.type, AUTH_NONE);
    ck_assert_ptr_null(x->auth.secret_path);
    ck_assert(!x->tls.insecure);
    ck_assert_ptr_null(x->tls.ca_file);
    ck_assert_ptr_null(x->tls.ca_path);
    ck_assert_ptr_null(x->tls.client_cert);
    ck_assert_ptr_null(x->tls.client_key);
    ck_assert_int_eq(x->tls.min_version, 0);
    ck_assert_ptr_null(x->proxy);
    ck_assert_ptr_null(x->unix_socket);
    ck_assert_int_eq(x->http_version, CURL_HTTP_VERSION_2TLS);
    ck_assert_ptr_null(x->accept_encoding);
    ck_assert_str_eq(x->protocols, "http,https");
    ck_assert_uint_eq(x->scheme_mask, URL_HTTP | URL_HTTPS);
    ck_assert_uint_eq(x->n_secret_headers, 0);
    assert_status_set(&x->success, (const long[]){200, 299, 0}, "plain success");
    ck_assert_uint_eq(x->retry.attempts, 1);
    ck_assert_uint_eq(x->breaker_after, 5);
    ck_assert_uint_eq(x->breaker_max, 600 * USEC_PER_SEC);
    ck_assert(!x->conditional && !x->unchanged_record && !x->ndjson && !x->split && !x->timings);
    ck_assert_int_eq(x->content_type, CTYPE_JSON);
    ck_assert_uint_eq(x->n_resp_headers, 0);
    ck_assert_int_eq(x->page_mode, PAGE_NONE);
    ck_assert_ptr_null(x->page_ptr);
    ck_assert_ptr_null(x->page_param);

    /* auth */
    x = ext_of(cfg, "basic");
    ck_assert_int_eq(x->auth.type, AUTH_BASIC);
    ck_assert_str_eq(x->auth.user, "alice");
    path = tu_fmt("%s/pw", dir);
    ck_assert_str_eq(x->auth.secret_path, path);
    free(path);
    ck_assert_ptr_null(x->auth.token_url);
    x = ext_of(cfg, "bearer");
    ck_assert_int_eq(x->auth.type, AUTH_BEARER);
    ck_assert_ptr_null(x->auth.user);
    path = tu_fmt("%s/tok", dir);
    ck_assert_str_eq(x->auth.secret_path, path);
    free(path);
    x = ext_of(cfg, "oauth");
    ck_assert_int_eq(x->auth.type, AUTH_OAUTH2);
    ck_assert_str_eq(x->auth.token_url, "https://idp.example/token");
    ck_assert_str_eq(x->auth.client_id, "cid");
    ck_assert_str_eq(x->auth.scope, "read write");
    ck_assert(x->auth.client_auth_body);
    path = tu_fmt("%s/cs", dir);
    ck_assert_str_eq(x->auth.secret_path, path);
    free(path);
    x = ext_of(cfg, "oauth_basic");
    ck_assert_int_eq(x->auth.type, AUTH_OAUTH2);
    /* a token URL may carry query parameters (kept as written) */
    ck_assert_str_eq(x->auth.token_url, "https://idp.example/token?tenant=t1&api_key=k");
    ck_assert_ptr_null(x->auth.scope);
    ck_assert(!x->auth.client_auth_body);
    x = ext_of(cfg, "noauth");
    ck_assert_int_eq(x->auth.type, AUTH_NONE);
    ck_assert_ptr_null(x->auth.secret_path);
    /* the secrets themselves are not kept in the config */
    ck_assert_ptr_null(strstr(ext_of(cfg, "bearer")->canon, "t0k3n"));

    /* tls */
    x = ext_of(cfg, "tls");
    ck_assert(x->tls.insecure);
    path = tu_fmt("%s/ca.pem", dir);
    ck_assert_str_eq(x->tls.ca_file, path);
    free(path);
    ck_assert_str_eq(x->tls.ca_path, dir);
    path = tu_fmt("%s/c.pem", dir);
    ck_assert_str_eq(x->tls.client_cert, path);
    free(path);
    path = tu_fmt("%s/k.pem", dir);
    ck_assert_str_eq(x->tls.client_key, path);
    free(path);
    ck_assert_int_eq(x->tls.min_version, CURL_SSLVERSION_TLSv1_2);
    x = ext_of(cfg, "tls10");
    ck_assert(!x->tls.insecure);
    ck_assert_int_eq(x->tls.min_version, CURL_SSLVERSION_TLSv1_0);
    ck_assert_int_eq(ext_of(cfg, "tls11")->tls.min_version, CURL_SSLVERSION_TLSv1_1);
    x = ext_of(cfg, "tls13");
    ck_assert_int_eq(x->tls.min_version, CURL_SSLVERSION_TLSv1_3);
    ck_assert_ptr_nonnull(x->tls.client_cert);
    ck_assert_ptr_null(x->tls.client_key);

    /* proxy, unix_socket, http_version, compression */
    x = ext_of(cfg, "proxy");
    ck_assert_str_eq(x->proxy, "socks5h://127.0.0.1:1080");
    ck_assert_int_eq(x->http_version, CURL_HTTP_VERSION_1_1);
    ck_assert_str_eq(x->accept_encoding, "gzip, deflate, br, zstd");
    ck_assert_str_eq(ext_of(cfg, "proxy_http")->proxy, "HTTP://proxy.example:3128");
    x = ext_of(cfg, "noproxy");
    ck_assert_ptr_nonnull(x->proxy);
    ck_assert_str_eq(x->proxy, "");
    ck_assert_str_eq(x->unix_socket, "/run/api.sock");
    ck_assert_int_eq(x->http_version, CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    ck_assert_str_eq(x->accept_encoding, "gzip, zstd");
    x = ext_of(cfg, "h10");
    ck_assert_int_eq(x->http_version, CURL_HTTP_VERSION_1_0);
    ck_assert_ptr_null(x->accept_encoding);
    x = ext_of(cfg, "h2");
    ck_assert_int_eq(x->http_version, CURL_HTTP_VERSION_2_0);
    ck_assert_str_eq(x->accept_encoding, "br, deflate");
    ck_assert_int_eq(ext_of(cfg, "auto")->http_version, CURL_HTTP_VERSION_2TLS);

    /* schemes: case-insensitive, deduplicated, lowercased for libcurl */
    x = ext_of(cfg, "ftp");
    ck_assert_uint_eq(x->scheme_mask, URL_HTTPS | URL_FTP);
    ck_assert_str_eq(x->protocols, "https,ftp");
    ck_assert_str_eq(config_find_endpoint(cfg, "ftp")->url, "ftp://f.example/x.json");
    x = ext_of(cfg, "file");
    ck_assert_uint_eq(x->scheme_mask, URL_FILE);
    ck_assert_str_eq(x->protocols, "file");

    /* success_status, secret_headers (lowercased) */
    x = ext_of(cfg, "status");
    assert_status_set(&x->success, (const long[]){100, 199, 200, 299, 304, 304, 404, 404, 0},
                      "status success");
    ck_assert_uint_eq(x->n_secret_headers, 2);
    ck_assert_str_eq(x->secret_headers[0], "x-custom");
    ck_assert_str_eq(x->secret_headers[1], "x-other");

    /* retry */
    x = ext_of(cfg, "retry");
    ck_assert_uint_eq(x->retry.attempts, 4);
    ck_assert_uint_eq(x->retry.backoff, 2 * USEC_PER_SEC);
    ck_assert_uint_eq(x->retry.max_backoff, 10 * USEC_PER_SEC);
    ck_assert_uint_eq(x->retry.max_retry_after, 300 * USEC_PER_SEC);
    ck_assert(!x->retry.on_network);
    ck_assert(x->retry.on_timeout);
    ck_assert(x->retry.non_idempotent);
    assert_status_set(&x->retry.on_status, (const long[]){400, 499, 503, 503, 0}, "retry on");
    x = ext_of(cfg, "retry_def");
    ck_assert_uint_eq(x->retry.attempts, 3);
    ck_assert_uint_eq(x->retry.backoff, USEC_PER_SEC);
    ck_assert_uint_eq(x->retry.max_backoff, 30 * USEC_PER_SEC);
    ck_assert_uint_eq(x->retry.max_retry_after, 60 * USEC_PER_SEC);
    ck_assert(x->retry.on_network);
    ck_assert(x->retry.on_timeout);
    ck_assert(!x->retry.non_idempotent);
    assert_status_set(&x->retry.on_status, (const long[]){408, 408, 429, 429, 500, 599, 0},
                      "retry_def on");
    x = ext_of(cfg, "retry_on_none");
    ck_assert_uint_eq(x->retry.attempts, 10);
    ck_assert(!x->retry.on_network);
    ck_assert(!x->retry.on_timeout);
    assert_status_set(&x->retry.on_status, (const long[]){0}, "retry_on_none on");
    ck_assert_uint_eq(ext_of(cfg, "retry_off")->retry.attempts, 1);

    /* breaker */
    x = ext_of(cfg, "breaker");
    ck_assert_uint_eq(x->breaker_after, 3);
    ck_assert_uint_eq(x->breaker_max, 3600 * USEC_PER_SEC);
    x = ext_of(cfg, "breaker_max");
    ck_assert_uint_eq(x->breaker_after, 5);
    ck_assert_uint_eq(x->breaker_max, 7 * 86400 * USEC_PER_SEC);
    ck_assert_uint_eq(ext_of(cfg, "breaker_off")->breaker_after, 0);

    /* flags, content_type, format, response_headers, paginate */
    x = ext_of(cfg, "cond");
    ck_assert(x->conditional);
    ck_assert(x->unchanged_record);
    ck_assert(x->ndjson);
    ck_assert(x->split);
    ck_assert(x->timings);
    ck_assert_int_eq(x->content_type, CTYPE_STRICT);
    ck_assert_uint_eq(x->n_resp_headers, 2);
    ck_assert_str_eq(x->resp_headers[0], "ETag");
    ck_assert_str_eq(x->resp_headers[1], "X-RateLimit-Remaining");
    ck_assert_int_eq(x->page_mode, PAGE_LINK);
    ck_assert_uint_eq(x->max_pages, 5);
    ck_assert_ptr_null(x->page_ptr);
    x = ext_of(cfg, "next");
    ck_assert_int_eq(x->content_type, CTYPE_ANY);
    ck_assert(!x->ndjson);
    ck_assert(!x->split);
    ck_assert_int_eq(x->page_mode, PAGE_NEXT_URL);
    ck_assert_ptr_nonnull(x->page_ptr);
    ck_assert_str_eq(x->page_ptr->src, "/links/next");
    ck_assert_uint_eq(x->max_pages, 10);
    ck_assert_ptr_null(x->page_param);
    x = ext_of(cfg, "cursor");
    ck_assert_int_eq(x->content_type, CTYPE_JSON);
    ck_assert_int_eq(x->page_mode, PAGE_CURSOR);
    ck_assert_str_eq(x->page_ptr->src, "/meta/next_cursor");
    ck_assert_str_eq(x->page_param, "cursor");
    ck_assert_uint_eq(x->max_pages, 1000);

    /* canon: the options as given, for reload equality */
    ck_assert_str_eq(ext_of(cfg, "breaker")->canon,
                     "{\"breaker\":{\"after\":3,\"max_backoff\":\"1h\"}}");
    config_free(cfg);
}
END_TEST

START_TEST(test_ext_limits_default)
{
    struct config *cfg;
    char *errtext;
    ck_assert_int_eq(load("{\"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}", &cfg, &errtext), 0);
    free(errtext);
    ck_assert_double_eq(cfg->limits.retry_budget, 0.2);
    config_free(cfg);
    ck_assert_int_eq(
        load(
            "{\"limits\": {\"retry_budget\": 0}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
            &cfg, &errtext),
        0);
    free(errtext);
    ck_assert_double_eq(cfg->limits.retry_budget, 0);
    config_free(cfg);
    ck_assert_int_eq(
        load(
            "{\"limits\": {\"retry_budget\": 1}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
            &cfg, &errtext),
        0);
    free(errtext);
    ck_assert_double_eq(cfg->limits.retry_budget, 1);
    config_free(cfg);
}
END_TEST

/* Header-name lists have a size limit. */
START_TEST(test_ext_header_list_limits)
{
    static const struct {
        const char *key;
        size_t max;
    } lists[] = {{"secret_headers", 64}, {"response_headers", 32}};
    for (size_t l = 0; l < 2; l++) {
        for (size_t n = lists[l].max; n <= lists[l].max + 1; n++) {
            struct buf b = {0};
            buf_printf(&b, "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"%s\": [",
                       lists[l].key);
            for (size_t i = 0; i < n; i++) {
                buf_printf(&b, "%s\"X-H%zu\"", i ? ", " : "", i);
            }
            buf_puts(&b, "]}}}");
            struct config *cfg;
            char *errtext;
            int r = load(b.data, &cfg, &errtext);
            buf_done(&b);
            if (n == lists[l].max) {
                ck_assert_msg(r == 0, "%s with %zu: %s", lists[l].key, n, errtext);
                const struct endpoint_ext *x = cfg->endpoints[0].x;
                size_t got = l == 0 ? x->n_secret_headers : x->n_resp_headers;
                ck_assert_uint_eq(got, n);
                config_free(cfg);
            } else {
                ck_assert_int_eq(r, -EINVAL);
                char *want =
                    tu_fmt("endpoints.a.%s: at most %zu header names", lists[l].key, lists[l].max);
                ck_assert_msg(strstr(errtext, want), "wanted \"%s\" in %s", want, errtext);
                free(want);
            }
            free(errtext);
        }
    }
}
END_TEST

/* Endpoints that set no ext option share one instance (built from
 * "defaults"); one with its own options gets its own, still inheriting the
 * other defaults. */
START_TEST(test_ext_shared)
{
    struct config *cfg;
    char *errtext;
    int r = load(
        "{\"defaults\": {\"retry\": {\"attempts\": 2}, \"timings\": true, \"interval\": \"5m\"},\n"
        " \"endpoints\": {\"a\": {\"url\": \"http://x/\"}, \"b\": {\"url\": \"http://y/\", "
        "\"timeout\": \"3s\"},\n"
        "  \"c\": {\"url\": \"http://z/\", \"conditional\": true},\n"
        "  \"d\": {\"url\": \"http://w/\", \"timings\": false},\n"
        "  \"e\": {\"url\": \"http://v/\"}}}",
        &cfg, &errtext);
    ck_assert_msg(r == 0, "%s", errtext);
    free(errtext);
    const struct endpoint_cfg *a = config_find_endpoint(cfg, "a"),
                              *b = config_find_endpoint(cfg, "b"),
                              *c = config_find_endpoint(cfg, "c"),
                              *d = config_find_endpoint(cfg, "d"),
                              *e = config_find_endpoint(cfg, "e");
    ck_assert_ptr_eq(a->x, b->x);
    ck_assert_ptr_eq(a->x, e->x);
    ck_assert_ptr_ne(a->x, c->x);
    ck_assert_ptr_ne(a->x, d->x);
    ck_assert_ptr_ne(c->x, d->x);
    ck_assert_uint_eq(a->x->retry.attempts, 2);
    ck_assert(a->x->timings);
    ck_assert(!a->x->conditional);
    ck_assert_uint_eq(c->x->retry.attempts, 2);
    ck_assert(c->x->timings);
    ck_assert(c->x->conditional);
    ck_assert_uint_eq(d->x->retry.attempts, 2);
    ck_assert(!d->x->timings);
    ck_assert_str_eq(a->x->canon, "{\"retry\":{\"attempts\":2},\"timings\":true}");
    config_free(cfg);

    /* without defaults: all plain endpoints share the built-in instance */
    r = load("{\"endpoints\": {\"a\": {\"url\": \"http://x/\"}, \"b\": {\"url\": \"http://y/\"},"
             " \"c\": {\"url\": \"http://z/\", \"retry\": false}}}",
             &cfg, &errtext);
    ck_assert_msg(r == 0, "%s", errtext);
    free(errtext);
    ck_assert_ptr_eq(cfg->endpoints[0].x, cfg->endpoints[1].x);
    ck_assert_ptr_ne(cfg->endpoints[0].x, cfg->endpoints[2].x);
    ck_assert_str_eq(cfg->endpoints[0].x->canon, "{}");
    ck_assert_str_eq(cfg->endpoints[2].x->canon, "{\"retry\":false}");
    config_free(cfg);
}
END_TEST

/* A bad default ext option is reported once, as defaults.KEY, however many
 * endpoints (with or without their own ext options) inherit it. */
START_TEST(test_ext_bad_default_once)
{
    struct config *cfg;
    char *errtext;
    int r =
        load("{\"defaults\": {\"retry\": {\"attempts\": 20}, \"content_type\": \"xml\"},"
             " \"endpoints\": {\"a\": {\"url\": \"http://x/\"}, \"b\": {\"url\": \"http://y/\", "
             "\"timings\": true},"
             " \"c\": {\"url\": \"http://z/\", \"split\": true}, \"d\": {\"url\": \"http://w/\"}}}",
             &cfg, &errtext);
    ck_assert_int_eq(r, -EINVAL);
    const char *p = strstr(errtext, "defaults.retry.attempts: 20 is out of range");
    ck_assert_msg(p, "%s", errtext);
    ck_assert_ptr_null(strstr(p + 1, "defaults.retry.attempts"));
    p = strstr(errtext,
               "defaults.content_type: expected \"json\", \"strict\" or \"any\", got \"xml\"");
    ck_assert_msg(p, "%s", errtext);
    ck_assert_ptr_null(strstr(p + 1, "defaults.content_type"));
    ck_assert_ptr_null(strstr(errtext, "endpoints.b.retry"));
    ck_assert_ptr_null(strstr(errtext, "endpoints.b.content_type"));
    ck_assert_ptr_null(strstr(errtext, "endpoints.c.content_type"));
    free(errtext);
}
END_TEST

/* Regression test (was a bug): the cross-key checks of a "defaults"-only ext instance name a path
 * that does not exist in the file:
 *   input:    {"defaults": {"unchanged_record": true}, "endpoints": {"a": {"url": "http://x/"}}}
 *   expected: "...: defaults.unchanged_record: \"unchanged_record\" needs \"conditional\": true"
 *   actual:   "...: endpoints.(defaults).unchanged_record: ..."
 * (the same for "endpoints.(defaults).paginate" and ".proxy"). And unlike the
 * per-key checks these are not reported once: each endpoint with its own ext
 * options repeats the error under its own name (endpoints.b.unchanged_record)
 * although the key is only in "defaults". */
START_TEST(test_ext_default_cross_key_path)
{
    struct config *cfg;
    char *errtext;
    int r = load("{\"defaults\": {\"unchanged_record\": true}, \"endpoints\": {\"a\": {\"url\": \"http://x/\"},"
                 " \"b\": {\"url\": \"http://y/\", \"timings\": true}}}",
                 &cfg, &errtext);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_msg(strstr(errtext, "defaults.unchanged_record: \"unchanged_record\" needs \"conditional\": true"),
                  "%s", errtext);
    ck_assert_msg(!strstr(errtext, "(defaults)"), "%s", errtext);
    ck_assert_msg(!strstr(errtext, "endpoints.b.unchanged_record"), "%s", errtext);
    free(errtext);
}
END_TEST

/* Secret files: missing, empty or with more than one line is a config error
 * that names the file but never shows its content. */
START_TEST(test_ext_secret_files)
{
    write_fixtures();
    static const struct {
        const char *file;
        const char *want;
    } cases[] = {
        {"none", "endpoints.a.auth.token_file: cannot open @D@/none: No such file or directory"},
        {"empty", "endpoints.a.auth.token_file: @D@/empty is empty"},
        {"newline", "endpoints.a.auth.token_file: @D@/newline is empty"},
        {"two",
         "endpoints.a.auth.token_file: @D@/two holds more than one line (or a NUL byte); it must "
         "hold the secret alone"},
        {"two_cr", "endpoints.a.auth.token_file: @D@/two_cr holds more than one line"},
        {"", "endpoints.a.auth.token_file: @D@/ is not a regular file"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *text = tu_fmt(EPX("\"auth\": {\"type\": \"bearer\", \"token_file\": \"@D@/%s\"}"),
                            cases[i].file);
        struct config *cfg;
        char *errtext;
        int r = load_subst(text, &cfg, &errtext);
        free(text);
        ck_assert_msg(r == -EINVAL, "%s: %d", cases[i].file, r);
        char *want = subst_dir(cases[i].want);
        ck_assert_msg(strstr(errtext, want), "%s: wanted \"%s\" in:\n%s", cases[i].file, want,
                      errtext);
        free(want);
        ck_assert_msg(!strstr(errtext, "s3cr3t"), "secret shown: %s", errtext);
        free(errtext);
    }
    /* the same for basic and oauth2 secrets */
    struct config *cfg;
    char *errtext;
    int r = load_subst(
        EPX("\"auth\": {\"type\": \"basic\", \"user\": \"u\", \"password_file\": \"@D@/two\"}"),
        &cfg, &errtext);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_msg(strstr(errtext, "endpoints.a.auth.password_file: "), "%s", errtext);
    ck_assert_msg(!strstr(errtext, "s3cr3t"), "%s", errtext);
    free(errtext);
    r = load_subst(EPX("\"auth\": {\"type\": \"oauth2\", \"token_url\": \"https://idp/t\", "
                       "\"client_id\": \"c\","
                       " \"client_secret_file\": \"@D@/two\"}"),
                   &cfg, &errtext);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_msg(strstr(errtext, "endpoints.a.auth.client_secret_file: "), "%s", errtext);
    ck_assert_msg(!strstr(errtext, "s3cr3t"), "%s", errtext);
    free(errtext);
    /* trailing newlines (LF and CRLF) are fine */
    r = load_subst(
        EPX("\"auth\": {\"type\": \"basic\", \"user\": \"u\", \"password_file\": \"@D@/pw\"}"),
        &cfg, &errtext);
    ck_assert_msg(r == 0, "%s", errtext);
    free(errtext);
    config_free(cfg);
}
END_TEST

/* Placeholders: which parts are templated, the credential header marked
 * secret, the checkpoint's defaults, a time zone without a schedule, and
 * reload equality seeing the checkpoint. */
START_TEST(test_templates_parsed)
{
    char *creds = tu_fmt("%s/creds", dir);
    ck_assert_int_eq(mkdir(creds, 0700), 0);
    free(tu_write(creds, "k", "s3cr3t\n"));
    ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", creds, 1), 0);
    struct config *cfg;
    char *errtext;
    int r = load("{\"endpoints\": {\"a\": {\"url\": \"http://x/p?since=${checkpoint}&t=${now:unix}\","
                 " \"headers\": {\"X-Key\": \"${credential:k}\", \"X-Plain\": \"v\","
                 " \"X-Lit\": \"$${x}\"}, \"method\": \"POST\","
                 " \"body\": {\"from\": \"${interval_start}\"}, \"timezone\": \"Europe/Berlin\","
                 " \"checkpoint\": \"/id\"},"
                 " \"b\": {\"url\": \"http://x/?s=${checkpoint}\","
                 " \"checkpoint\": {\"pointer\": \"/seq\", \"keep\": \"last\"}},"
                 " \"c\": {\"url\": \"http://x/plain\"}}}",
                 &cfg, &errtext);
    ck_assert_msg(r == 0, "%s", errtext);
    free(errtext);
    const struct endpoint_cfg *a = config_find_endpoint(cfg, "a");
    ck_assert_ptr_nonnull(a->tpl);
    ck_assert_ptr_nonnull(a->tpl->url);
    ck_assert_ptr_nonnull(a->tpl->body);
    ck_assert_uint_eq(a->tpl->uses, 1u << TPL_CHECKPOINT | 1u << TPL_NOW |
                                        1u << TPL_CREDENTIAL | 1u << TPL_INTERVAL_START);
    size_t nsec = 0, ntpl = 0;
    for (size_t i = 0; i < a->n_headers; i++) {
        ntpl += a->tpl->headers[i] != NULL;
        nsec += a->tpl->header_secret[i];
        if (a->tpl->header_secret[i]) {
            ck_assert(strncmp(a->headers[i], "X-Key:", 6) == 0);
        }
    }
    ck_assert_uint_eq(ntpl, 2); /* X-Key and X-Lit ("$${" is a template too) */
    ck_assert_uint_eq(nsec, 1);
    ck_assert_uint_eq(a->tpl->n_creds, 1);
    char *want = tu_fmt("%s/k", creds);
    ck_assert_str_eq(a->tpl->cred_paths[0], want);
    free(want);
    ck_assert_str_eq(a->tpl->tz_env, ":/usr/share/zoneinfo/Europe/Berlin");
    ck_assert_str_eq(a->timezone, "Europe/Berlin");
    ck_assert_ptr_null(a->cron);
    ck_assert_str_eq(a->ckpt->pointer, "/id");
    ck_assert(a->ckpt->keep_max);
    const struct endpoint_cfg *b = config_find_endpoint(cfg, "b");
    ck_assert_str_eq(b->ckpt->pointer, "/seq");
    ck_assert(!b->ckpt->keep_max);
    ck_assert_ptr_null(b->tpl->tz_env);
    ck_assert_ptr_null(config_find_endpoint(cfg, "c")->tpl);
    ck_assert_ptr_null(config_find_endpoint(cfg, "c")->ckpt);

    struct config *cfg2;
    r = load("{\"endpoints\": {\"b\": {\"url\": \"http://x/?s=${checkpoint}\","
             " \"checkpoint\": {\"pointer\": \"/seq\"}}}}",
             &cfg2, &errtext);
    ck_assert_msg(r == 0, "%s", errtext);
    free(errtext);
    ck_assert(!config_endpoint_equal(cfg, b, cfg2, config_find_endpoint(cfg2, "b")));
    ck_assert(config_endpoint_equal(cfg, b, cfg, b));
    config_free(cfg2);
    config_free(cfg);
    unsetenv("CREDENTIALS_DIRECTORY");
    free(creds);
}
END_TEST

/* *_credential NAME reads $CREDENTIALS_DIRECTORY/NAME. */
START_TEST(test_ext_credentials)
{
    static const char text[] =
        EPX("\"auth\": {\"type\": \"bearer\", \"token_credential\": \"api-token\"}");
    struct config *cfg;
    char *errtext;

    unsetenv("CREDENTIALS_DIRECTORY");
    int r = load(text, &cfg, &errtext);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_msg(strstr(errtext,
                         "endpoints.a.auth.token_credential: credential \"api-token\" needs "
                         "$CREDENTIALS_DIRECTORY"),
                  "%s", errtext);
    free(errtext);

    ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", "", 1), 0);
    r = load(text, &cfg, &errtext);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_msg(strstr(errtext, "CREDENTIALS_DIRECTORY"), "%s", errtext);
    free(errtext);

    char *creds = tu_fmt("%s/creds", dir);
    ck_assert_int_eq(mkdir(creds, 0700), 0);
    free(tu_write(creds, "api-token", "s3cr3t\n"));
    free(tu_write(creds, "bad", "s3cr3t\nmore\n"));
    free(tu_write(creds, "pw", "pw"));
    free(tu_write(creds, "cs", "cs"));
    ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", creds, 1), 0);

    r = load(text, &cfg, &errtext);
    ck_assert_msg(r == 0, "%s", errtext);
    free(errtext);
    char *want = tu_fmt("%s/api-token", creds);
    ck_assert_int_eq(cfg->endpoints[0].x->auth.type, AUTH_BEARER);
    ck_assert_str_eq(cfg->endpoints[0].x->auth.secret_path, want);
    free(want);
    config_free(cfg);

    r = load("{\"endpoints\": {\"b\": {\"url\": \"http://x/\", \"auth\": {\"type\": \"basic\", "
             "\"user\": \"u\","
             " \"password_credential\": \"pw\"}}, \"o\": {\"url\": \"http://x/\", \"auth\": "
             "{\"type\": \"oauth2\","
             " \"token_url\": \"https://idp/t\", \"client_id\": \"c\", "
             "\"client_secret_credential\": \"cs\"}}}}",
             &cfg, &errtext);
    ck_assert_msg(r == 0, "%s", errtext);
    free(errtext);
    want = tu_fmt("%s/pw", creds);
    ck_assert_str_eq(config_find_endpoint(cfg, "b")->x->auth.secret_path, want);
    free(want);
    want = tu_fmt("%s/cs", creds);
    ck_assert_str_eq(config_find_endpoint(cfg, "o")->x->auth.secret_path, want);
    free(want);
    config_free(cfg);

    /* a missing or bad credential file is an error naming the path only */
    r = load(EPX("\"auth\": {\"type\": \"bearer\", \"token_credential\": \"nope\"}"), &cfg,
             &errtext);
    ck_assert_int_eq(r, -EINVAL);
    want = tu_fmt(
        "endpoints.a.auth.token_credential: cannot open %s/nope: No such file or directory", creds);
    ck_assert_msg(strstr(errtext, want), "%s", errtext);
    free(want);
    free(errtext);
    r = load(EPX("\"auth\": {\"type\": \"bearer\", \"token_credential\": \"bad\"}"), &cfg,
             &errtext);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_msg(strstr(errtext, "holds more than one line"), "%s", errtext);
    ck_assert_msg(!strstr(errtext, "s3cr3t"), "%s", errtext);
    free(errtext);

    unsetenv("CREDENTIALS_DIRECTORY");
    free(creds);
}
END_TEST

START_TEST(test_header_is_secret)
{
    struct config *cfg;
    char *errtext;
    int r =
        load("{\"endpoints\": {\"a\": {\"url\": \"http://x/\"},"
             " \"b\": {\"url\": \"http://x/\", \"secret_headers\": [\"X-Custom\", \"X-Tenant\"]}}}",
             &cfg, &errtext);
    ck_assert_msg(r == 0, "%s", errtext);
    free(errtext);
    const struct endpoint_ext *plain = config_find_endpoint(cfg, "a")->x;
    const struct endpoint_ext *own = config_find_endpoint(cfg, "b")->x;
    static const struct {
        const char *name;
        bool secret; /* for every endpoint */
    } names[] = {
        {"Authorization", true},   {"authorization", true},
        {"AUTHORIZATION", true},   {"Proxy-Authorization", true},
        {"Cookie", true},          {"X-Api-Key", true},
        {"X-Session-Id", true},    {"X-Auth-Token", true},
        {"X-Client-Secret", true}, {"X-Password", true},
        {"X-Passwd", true},        {"Api-Signature", true},
        {"X-Credential", true},    {"x-amz-security-token", true},
        {"Accept", false},         {"Content-Type", false},
        {"User-Agent", false},     {"If-None-Match", false},
        {"X-Request-Id", false},   {"Accept-Language", false},
        {"X-Customer", false},     {"Proxy", false},
        {"Cook", false},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t len = strlen(names[i].name);
        ck_assert_msg(config_header_is_secret(plain, names[i].name, len) == names[i].secret,
                      "%s: expected %d", names[i].name, names[i].secret);
        ck_assert_msg(config_header_is_secret(own, names[i].name, len) == names[i].secret,
                      "%s (own ext): expected %d", names[i].name, names[i].secret);
        ck_assert_msg(config_header_is_secret(NULL, names[i].name, len) == names[i].secret,
                      "%s (no ext): expected %d", names[i].name, names[i].secret);
    }
    /* secret_headers: only for that endpoint, case-insensitive, whole name */
    ck_assert(config_header_is_secret(own, "X-Custom", 8));
    ck_assert(config_header_is_secret(own, "x-custom", 8));
    ck_assert(config_header_is_secret(own, "X-TENANT", 8));
    ck_assert(!config_header_is_secret(plain, "X-Custom", 8));
    ck_assert(!config_header_is_secret(NULL, "X-Custom", 8));
    ck_assert(!config_header_is_secret(own, "X-Custom2", 9));
    ck_assert(!config_header_is_secret(own, "X-Cust", 6));
    /* only name[0..len) counts ("Name: value" lines) */
    ck_assert(config_header_is_secret(plain, "Authorization: Bearer x", 13));
    ck_assert(!config_header_is_secret(plain, "Accept: token", 6));
    ck_assert(config_header_is_secret(own, "X-Custom: v", 8));
    ck_assert(!config_header_is_secret(plain, "X-Custom: secret", 8));
    config_free(cfg);
}
END_TEST

/* config_endpoint_equal compares the ext options too (their canon). */
START_TEST(test_endpoint_equal_ext)
{
    static const char *const texts[] = {
        /* 0 */ "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"retry\": {\"attempts\": 3}}}}",
        /* 1 */ "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"retry\": {\"attempts\": 3}}}}",
        /* 2 */ "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"retry\": {\"attempts\": 4}}}}",
        /* 3 */ "{\"endpoints\": {\"a\": {\"url\": \"http://x/\"}}}",
        /* 4 */
        "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"retry\": {\"attempts\": 3}, "
        "\"timings\": true}}}",
        /* 5 */
        "{\"defaults\": {\"retry\": {\"attempts\": 3}}, \"endpoints\": {\"a\": {\"url\": "
        "\"http://x/\"}}}",
        /* 6 */
        "{\"defaults\": {\"retry\": {\"attempts\": 5}}, \"endpoints\": {\"a\": {\"url\": "
        "\"http://x/\"}}}",
        /* 7 */
        "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"paginate\": {\"cursor\": \"/c\", "
        "\"param\": \"p\"}}}}",
        /* 8 */
        "{\"endpoints\": {\"a\": {\"url\": \"http://x/\", \"paginate\": {\"cursor\": \"/c\", "
        "\"param\": \"q\"}}}}",
    };
    struct config *cfgs[9];
    for (size_t i = 0; i < 9; i++) {
        char *errtext;
        int r = load(texts[i], &cfgs[i], &errtext);
        ck_assert_msg(r == 0, "%zu: %s", i, errtext);
        free(errtext);
    }
#define EQ(i, j)                                                                                   \
    config_endpoint_equal(cfgs[i], &cfgs[i]->endpoints[0], cfgs[j], &cfgs[j]->endpoints[0])
    ck_assert(EQ(0, 0));
    ck_assert(EQ(0, 1));
    ck_assert(EQ(1, 0));
    ck_assert(!EQ(0, 2)); /* only retry.attempts differs */
    ck_assert(!EQ(2, 0));
    ck_assert(!EQ(0, 3));
    ck_assert(!EQ(3, 0));
    ck_assert(!EQ(0, 4));
    ck_assert(EQ(5, 5));
    ck_assert(!EQ(5, 6)); /* an inherited option changed */
    ck_assert(!EQ(3, 5));
    ck_assert(EQ(7, 7));
    ck_assert(!EQ(7, 8));
#undef EQ
    for (size_t i = 0; i < 9; i++) {
        config_free(cfgs[i]);
    }
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

    tc = tcase_create("ext");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_bad_ext, 0,
                        (int)(sizeof(ext_bad_cases) / sizeof(ext_bad_cases[0])));
    tcase_add_test(tc, test_ext_parsed);
    tcase_add_test(tc, test_ext_limits_default);
    tcase_add_test(tc, test_ext_header_list_limits);
    tcase_add_test(tc, test_ext_shared);
    tcase_add_test(tc, test_ext_bad_default_once);
    tcase_add_test(tc, test_ext_default_cross_key_path);
    tcase_add_test(tc, test_ext_secret_files);
    tcase_add_test(tc, test_ext_credentials);
    tcase_add_test(tc, test_templates_parsed);
    tcase_add_test(tc, test_header_is_secret);
    tcase_add_test(tc, test_endpoint_equal_ext);
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
