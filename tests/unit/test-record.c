/* test-record.c - unit tests for src/record.h: record_serialize (checked by
 * parsing the line back with cJSON and with the strict json_minify) and
 * record_error_kind. */
#include <cJSON.h>
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "record.h"
#include "util/buf.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* 2023-11-14T22:13:20.123456Z */
#define T0 UINT64_C(1700000000123456)

/* Serialises r into a fresh buffer, checks the JSON Lines framing and strict
 * validity, and returns the parsed object (caller frees both). */
static cJSON *serialize_parse(const struct record *r, struct buf *out)
{
    *out = (struct buf){0};
    ck_assert_int_eq(record_serialize(r, out), 0);
    ck_assert_ptr_nonnull(out->data);
    ck_assert_uint_gt(out->len, 2);
    ck_assert_int_eq(out->data[out->len - 1], '\n');
    ck_assert_int_eq(out->data[out->len], '\0');
    /* exactly one line: no raw newline before the terminating one */
    ck_assert_ptr_eq(memchr(out->data, '\n', out->len), out->data + out->len - 1);
    ck_assert_int_eq(out->data[0], '{');

    /* strictly valid JSON, and already minified */
    struct buf v = {0};
    struct json_error err = {0, NULL};
    int rc = json_minify(out->data, out->len - 1, JSON_MAX_DEPTH, &v, &err);
    ck_assert_msg(rc == 0, "record is not valid JSON: %s at %zu: %s", err.msg ? err.msg : "-",
                  err.offset, out->data);
    ck_assert_uint_eq(v.len, out->len - 1);
    ck_assert_mem_eq(v.data, out->data, v.len);
    buf_done(&v);

    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(out->data, out->len - 1, &end, 0);
    ck_assert_msg(j != NULL, "cJSON cannot parse: %s", out->data);
    ck_assert_ptr_eq(end, out->data + out->len - 1);
    ck_assert(cJSON_IsObject(j));
    return j;
}

static const char *get_str(const cJSON *o, const char *k)
{
    const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, k);
    ck_assert_msg(cJSON_IsString(i), "member \"%s\" is not a string", k);
    return i->valuestring;
}

static double get_num(const cJSON *o, const char *k)
{
    const cJSON *i = cJSON_GetObjectItemCaseSensitive(o, k);
    ck_assert_msg(cJSON_IsNumber(i), "member \"%s\" is not a number", k);
    return i->valuedouble;
}

static void assert_member_order(const cJSON *o, const char *const *names, size_t n)
{
    const cJSON *c = o->child;
    for (size_t i = 0; i < n; i++, c = c->next) {
        ck_assert_msg(c != NULL, "missing member %zu (\"%s\")", i, names[i]);
        ck_assert_str_eq(c->string, names[i]);
    }
    ck_assert_msg(c == NULL, "unexpected member \"%s\"", c ? c->string : "");
}

/* ---- successful records -------------------------------------------------- */

START_TEST(ok_record)
{
    static const char data[] = "{\"t\":21.5,\"big\":12345678901234567890123,\"x\":1e400}";
    struct record r = {
        .endpoint = "weather",
        .url = "https://api.example.com/v1?city=Oslo&api_key=***",
        .http_status = 200,
        .fetched_at = T0,
        .duration = 212418,
        .bytes = 344,
        .data = data,
        .data_len = strlen(data),
    };
    struct buf out;
    cJSON *j = serialize_parse(&r, &out);

    static const char *const order[] = {"endpoint",   "url",         "ok",    "status",
                                        "fetched_at", "duration_ms", "bytes", "attempts", "data"};
    assert_member_order(j, order, N_ELEMS(order));
    ck_assert_str_eq(get_str(j, "endpoint"), "weather");
    ck_assert_str_eq(get_str(j, "url"), "https://api.example.com/v1?city=Oslo&api_key=***");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ok")));
    ck_assert(get_num(j, "status") == 200);
    ck_assert_str_eq(get_str(j, "fetched_at"), "2023-11-14T22:13:20.123Z");
    ck_assert(fabs(get_num(j, "duration_ms") - 212.418) < 1e-9);
    ck_assert(get_num(j, "bytes") == 344);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(j, "error"));
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
    ck_assert(cJSON_IsObject(d));
    ck_assert(get_num(d, "t") == 21.5);

    /* the data is carried byte for byte (cJSON would lose these digits) */
    ck_assert_ptr_nonnull(strstr(out.data, ",\"data\":{\"t\":21.5,\"big\":12345678901234567890123,"
                                           "\"x\":1e400}}\n"));
    ck_assert_ptr_nonnull(strstr(out.data, "\"duration_ms\":212.418,"));
    cJSON_Delete(j);
    buf_done(&out);
}
END_TEST

START_TEST(ok_record_null_data)
{
    struct record r = {
        .endpoint = "e",
        .url = "http://x/",
        .http_status = 204,
        .fetched_at = 0,
        .duration = 0,
    };
    struct buf out;
    cJSON *j = serialize_parse(&r, &out);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "data")));
    ck_assert(get_num(j, "status") == 204);
    ck_assert(get_num(j, "bytes") == 0);
    ck_assert_str_eq(get_str(j, "fetched_at"), "1970-01-01T00:00:00.000Z");
    ck_assert_ptr_nonnull(strstr(out.data, "\"duration_ms\":0.000,"));
    cJSON_Delete(j);
    buf_done(&out);

    /* a data pointer with zero length is also null */
    r.data = "ignored";
    r.data_len = 0;
    j = serialize_parse(&r, &out);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "data")));
    cJSON_Delete(j);
    buf_done(&out);

    /* a data pointer into a larger buffer: only data_len bytes are used */
    static const char big[] = "[1,2,3]TRAILING";
    r.data = big;
    r.data_len = 7;
    j = serialize_parse(&r, &out);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
    ck_assert(cJSON_IsArray(d));
    ck_assert_int_eq(cJSON_GetArraySize(d), 3);
    ck_assert_ptr_null(strstr(out.data, "TRAILING"));
    cJSON_Delete(j);
    buf_done(&out);
}
END_TEST

static const struct {
    usec_t duration;
    const char *text;
} durations[] = {
    {0, "0.000"},
    {1, "0.001"},
    {999, "0.999"},
    {1000, "1.000"},
    {1001, "1.001"},
    {12345, "12.345"},
    {60000000, "60000.000"},
    {UINT64_C(86400000000), "86400000.000"},
};

START_TEST(duration_ms_format)
{
    struct record r = {.endpoint = "e", .url = "http://x/", .duration = durations[_i].duration};
    struct buf out;
    cJSON *j = serialize_parse(&r, &out);
    char want[64];
    snprintf(want, sizeof(want), "\"duration_ms\":%s,", durations[_i].text);
    ck_assert_msg(strstr(out.data, want) != NULL, "expected %s in %s", want, out.data);
    ck_assert(fabs(get_num(j, "duration_ms") - (double)durations[_i].duration / 1000.0) < 1e-6);
    cJSON_Delete(j);
    buf_done(&out);
}
END_TEST

/* Arbitrary bytes in the borrowed strings still give valid JSON that decodes
 * back to the same text (for valid UTF-8). */
START_TEST(strings_are_escaped)
{
    struct record r = {
        .endpoint = "we\"ird\\name\n\t\x01",
        .url = "https://example.com/?q=\"</script>\"&x=\xc3\xa9",
        .http_status = 0,
        .error = REC_ERR_NETWORK,
        .message = "line1\nline2\r\n\"quoted\" \\ \x7f \xf0\x9f\x98\x80",
    };
    struct buf out;
    cJSON *j = serialize_parse(&r, &out);
    ck_assert_str_eq(get_str(j, "endpoint"), r.endpoint);
    ck_assert_str_eq(get_str(j, "url"), r.url);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    ck_assert_str_eq(get_str(e, "message"), r.message);
    cJSON_Delete(j);
    buf_done(&out);

    /* invalid UTF-8 becomes U+FFFD */
    r.endpoint = "bad\xff";
    r.message = "\xc0\xaf";
    j = serialize_parse(&r, &out);
    ck_assert_str_eq(get_str(j, "endpoint"), "bad\xef\xbf\xbd");
    e = cJSON_GetObjectItemCaseSensitive(j, "error");
    ck_assert_str_eq(get_str(e, "message"), "\xef\xbf\xbd\xef\xbf\xbd");
    cJSON_Delete(j);
    buf_done(&out);
}
END_TEST

/* ---- failed records ------------------------------------------------------ */

START_TEST(error_record_full)
{
    static const char body[] = "<html>Service Unavailable</html>";
    struct record r = {
        .endpoint = "weather",
        .url = "https://api.example.com/v1/now?city=Oslo&api_key=***",
        .http_status = 503,
        .fetched_at = T0,
        .duration = 48201,
        .bytes = 32,
        .data = "{\"must\":\"not appear\"}",
        .data_len = 21,
        .error = REC_ERR_HTTP_STATUS,
        .message = "HTTP status 503 (expected 2xx)",
        .excerpt = body,
        .excerpt_len = strlen(body),
    };
    struct buf out;
    cJSON *j = serialize_parse(&r, &out);
    static const char *const order[] = {"endpoint",   "url",         "ok",    "status",
                                        "fetched_at", "duration_ms", "bytes", "attempts", "error"};
    assert_member_order(j, order, N_ELEMS(order));
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "ok")));
    ck_assert(get_num(j, "status") == 503);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(j, "data"));
    ck_assert_ptr_null(strstr(out.data, "not appear"));

    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    ck_assert(cJSON_IsObject(e));
    static const char *const eorder[] = {"kind", "message", "http_status", "excerpt"};
    assert_member_order(e, eorder, N_ELEMS(eorder));
    ck_assert_str_eq(get_str(e, "kind"), "http_status");
    ck_assert_str_eq(get_str(e, "message"), "HTTP status 503 (expected 2xx)");
    ck_assert(get_num(e, "http_status") == 503);
    ck_assert_str_eq(get_str(e, "excerpt"), body);
    cJSON_Delete(j);
    buf_done(&out);
}
END_TEST

START_TEST(error_record_optional_members)
{
    /* no status, no curl code, no offset, no excerpt, no message */
    struct record r = {
        .endpoint = "e",
        .url = "http://x/",
        .error = REC_ERR_CANCELLED,
    };
    struct buf out;
    cJSON *j = serialize_parse(&r, &out);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "status")));
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    static const char *const eorder[] = {"kind", "message"};
    assert_member_order(e, eorder, N_ELEMS(eorder));
    ck_assert_str_eq(get_str(e, "kind"), "cancelled");
    ck_assert_str_eq(get_str(e, "message"), "");
    cJSON_Delete(j);
    buf_done(&out);

    /* curl code and offset (0 is a valid offset when has_offset is set) */
    r.error = REC_ERR_INVALID_JSON;
    r.message = "invalid JSON at byte 0";
    r.curl_code = 28;
    r.has_offset = true;
    r.offset = 0;
    r.excerpt = "x";
    r.excerpt_len = 0; /* empty excerpt is left out */
    j = serialize_parse(&r, &out);
    e = cJSON_GetObjectItemCaseSensitive(j, "error");
    static const char *const eorder2[] = {"kind", "message", "curl_code", "offset"};
    assert_member_order(e, eorder2, N_ELEMS(eorder2));
    ck_assert(get_num(e, "curl_code") == 28);
    ck_assert(get_num(e, "offset") == 0);
    cJSON_Delete(j);
    buf_done(&out);

    /* a negative http_status is treated as none */
    r.http_status = -1;
    j = serialize_parse(&r, &out);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "status")));
    e = cJSON_GetObjectItemCaseSensitive(j, "error");
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(e, "http_status"));
    cJSON_Delete(j);
    buf_done(&out);
}
END_TEST

START_TEST(error_record_invalid_json_excerpt)
{
    /* 300 bytes of body with control characters and invalid UTF-8: the
     * excerpt keeps the first RECORD_EXCERPT_MAX bytes, escaped */
    char body[300];
    for (size_t i = 0; i < sizeof(body); i++) {
        body[i] = (char)('a' + i % 26);
    }
    body[0] = '\n';
    body[1] = '\0';
    body[2] = '"';
    body[3] = '\xff';
    struct record r = {
        .endpoint = "e",
        .url = "http://x/",
        .http_status = 200,
        .bytes = sizeof(body),
        .error = REC_ERR_INVALID_JSON,
        .message = "invalid JSON at byte 0 (line 1, column 1): unexpected character",
        .has_offset = true,
        .offset = 1234567,
        .excerpt = body,
        .excerpt_len = sizeof(body),
    };
    struct buf out;
    cJSON *j = serialize_parse(&r, &out);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    ck_assert_str_eq(get_str(e, "kind"), "invalid_json");
    ck_assert(get_num(e, "offset") == 1234567);
    ck_assert(get_num(e, "http_status") == 200);
    ck_assert_ptr_nonnull(strstr(out.data, "\"excerpt\":\"\\n\\u0000\\\"\xef\xbf\xbd"));
    /* cJSON stops its string at the decoded NUL; compare the raw JSON text
     * instead: the escaped excerpt covers exactly bytes 4..255 after the
     * four special ones */
    const char *ex = strstr(out.data, "\"excerpt\":\"");
    ck_assert_ptr_nonnull(ex);
    ex += strlen("\"excerpt\":\"") + strlen("\\n\\u0000\\\"\xef\xbf\xbd");
    ck_assert_mem_eq(ex, body + 4, RECORD_EXCERPT_MAX - 4);
    ck_assert_int_eq(ex[RECORD_EXCERPT_MAX - 4], '"');
    cJSON_Delete(j);
    buf_done(&out);

    /* a multi-byte character cut by the limit becomes U+FFFD */
    char cut[RECORD_EXCERPT_MAX + 4];
    memset(cut, 'x', sizeof(cut));
    memcpy(cut + RECORD_EXCERPT_MAX - 1, "\xe2\x82\xac", 3); /* euro sign across the limit */
    r.excerpt = cut;
    r.excerpt_len = sizeof(cut);
    j = serialize_parse(&r, &out);
    e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const char *s = get_str(e, "excerpt");
    ck_assert_uint_eq(strlen(s), RECORD_EXCERPT_MAX - 1 + 3);
    ck_assert_str_eq(s + RECORD_EXCERPT_MAX - 1, "\xef\xbf\xbd");
    cJSON_Delete(j);
    buf_done(&out);
}
END_TEST

/* ---- buffer handling ----------------------------------------------------- */

START_TEST(serialize_appends)
{
    struct buf out = {0};
    struct record a = {
        .endpoint = "a", .url = "http://a/", .http_status = 200, .data = "1", .data_len = 1};
    struct record b = {.endpoint = "b",
                       .url = "http://b/",
                       .error = REC_ERR_DNS,
                       .message = "Could not resolve host: b",
                       .curl_code = 6};
    ck_assert_int_eq(buf_puts(&out, "PREFIX\n"), 0);
    ck_assert_int_eq(record_serialize(&a, &out), 0);
    ck_assert_int_eq(record_serialize(&b, &out), 0);
    ck_assert_int_eq(strncmp(out.data, "PREFIX\n", 7), 0);

    const char *l1 = out.data + 7;
    const char *nl = strchr(l1, '\n');
    ck_assert_ptr_nonnull(nl);
    cJSON *j1 = cJSON_ParseWithLength(l1, (size_t)(nl - l1));
    ck_assert_ptr_nonnull(j1);
    ck_assert_str_eq(get_str(j1, "endpoint"), "a");
    ck_assert(get_num(j1, "data") == 1);

    const char *l2 = nl + 1;
    const char *nl2 = strchr(l2, '\n');
    ck_assert_ptr_nonnull(nl2);
    ck_assert_ptr_eq(nl2, out.data + out.len - 1);
    cJSON *j2 = cJSON_ParseWithLength(l2, (size_t)(nl2 - l2));
    ck_assert_ptr_nonnull(j2);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j2, "error");
    ck_assert_str_eq(get_str(e, "kind"), "dns");
    ck_assert(get_num(e, "curl_code") == 6);
    cJSON_Delete(j1);
    cJSON_Delete(j2);
    buf_done(&out);
}
END_TEST

/* When the buffer's cap is hit the buffer is left as it was. */
START_TEST(serialize_failure_restores)
{
    struct record r = {
        .endpoint = "endpoint-with-a-long-name",
        .url = "https://example.com/a/fairly/long/path?and=query",
        .http_status = 500,
        .error = REC_ERR_HTTP_STATUS,
        .message = "HTTP status 500 (expected 2xx)",
        .excerpt = "internal server error",
        .excerpt_len = 21,
    };
    struct buf full = {0};
    ck_assert_int_eq(record_serialize(&r, &full), 0);
    size_t need = full.len;
    buf_done(&full);

    /* every cap below the needed size fails somewhere in the middle */
    for (size_t cap = 4; cap < 4 + need; cap++) {
        struct buf out = {.max = cap};
        ck_assert_int_eq(buf_puts(&out, "keep"), 0);
        int rc = record_serialize(&r, &out);
        ck_assert_msg(rc < 0, "cap %zu: expected an error", cap);
        ck_assert_uint_eq(out.len, 4);
        ck_assert_str_eq(out.data, "keep");
        buf_done(&out);
    }
    /* a roomy cap works */
    struct buf out = {.max = 4096};
    ck_assert_int_eq(buf_puts(&out, "keep"), 0);
    ck_assert_int_eq(record_serialize(&r, &out), 0);
    ck_assert_uint_eq(out.len, 4 + need);
    ck_assert_int_eq(strncmp(out.data, "keep{", 5), 0);
    buf_done(&out);
}
END_TEST

/* ---- record_error_kind --------------------------------------------------- */

static const struct {
    enum record_error e;
    const char *kind;
} kinds[] = {
    {REC_OK, "ok"},
    {REC_ERR_DNS, "dns"},
    {REC_ERR_CONNECT, "connect"},
    {REC_ERR_TLS, "tls"},
    {REC_ERR_TIMEOUT, "timeout"},
    {REC_ERR_NETWORK, "network"},
    {REC_ERR_PARTIAL_BODY, "partial_body"},
    {REC_ERR_BAD_RESPONSE, "bad_response"},
    {REC_ERR_PROTOCOL, "protocol"},
    {REC_ERR_REDIRECT, "redirect"},
    {REC_ERR_TOO_LARGE, "too_large"},
    {REC_ERR_HTTP_STATUS, "http_status"},
    {REC_ERR_EMPTY_BODY, "empty_body"},
    {REC_ERR_INVALID_JSON, "invalid_json"},
    {REC_ERR_SELECT_MISSING, "select_missing"},
    {REC_ERR_CANCELLED, "cancelled"},
    {REC_ERR_INTERNAL, "internal"},
    {REC_ERR_TRANSFER, "transfer"},
    {REC_ERR_CONTENT_TYPE, "unexpected_content_type"},
    {REC_ERR_AUTH, "auth"},
    {REC_ERR_NOT_ARRAY, "not_array"},
    {REC_ERR_TEMPLATE, "template"},
};

START_TEST(error_kind_names)
{
    ck_assert_int_eq((int)N_ELEMS(kinds), (int)_REC_ERR_MAX);
    ck_assert_str_eq(record_error_kind(kinds[_i].e), kinds[_i].kind);
    /* and the serialised record carries the same kind */
    if (kinds[_i].e != REC_OK) {
        struct record r = {
            .endpoint = "e", .url = "http://x/", .error = kinds[_i].e, .message = "m"};
        struct buf out;
        cJSON *j = serialize_parse(&r, &out);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        ck_assert_str_eq(get_str(e, "kind"), kinds[_i].kind);
        ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "ok")));
        cJSON_Delete(j);
        buf_done(&out);
    }
}
END_TEST

START_TEST(error_kind_distinct_and_out_of_range)
{
    for (int a = 0; a < _REC_ERR_MAX; a++) {
        const char *ka = record_error_kind((enum record_error)a);
        ck_assert_ptr_nonnull(ka);
        for (int b = a + 1; b < _REC_ERR_MAX; b++) {
            ck_assert_str_ne(ka, record_error_kind((enum record_error)b));
        }
    }
    ck_assert_str_eq(record_error_kind(_REC_ERR_MAX), "internal");
    ck_assert_str_eq(record_error_kind((enum record_error)(_REC_ERR_MAX + 100)), "internal");
}
END_TEST

static Suite *record_suite(void)
{
    Suite *s = suite_create("record");
    TCase *tc;

    tc = tcase_create("serialize");
    tcase_add_test(tc, ok_record);
    tcase_add_test(tc, ok_record_null_data);
    tcase_add_loop_test(tc, duration_ms_format, 0, N_ELEMS(durations));
    tcase_add_test(tc, strings_are_escaped);
    tcase_add_test(tc, error_record_full);
    tcase_add_test(tc, error_record_optional_members);
    tcase_add_test(tc, error_record_invalid_json_excerpt);
    tcase_add_test(tc, serialize_appends);
    tcase_add_test(tc, serialize_failure_restores);
    suite_add_tcase(s, tc);

    tc = tcase_create("kinds");
    tcase_add_loop_test(tc, error_kind_names, 0, N_ELEMS(kinds));
    tcase_add_test(tc, error_kind_distinct_and_out_of_range);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(record_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
