/* test-http.c - unit tests for the HTTP header parsers of src/xfer.h:
 * http_link_next (RFC 8288 Link), http_retry_after_parse (RFC 9110
 * Retry-After) and http_content_type_ok (the content_type option). */
#include <check.h>
#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "xfer.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- http_link_next ----------------------------------------------------- */

struct link_case {
    const char *value;
    const char *want; /* NULL: no next link */
};

static const struct link_case link_cases[] = {
    /* the simplest form */
    {"<https://api.example.com/items?page=2>; rel=\"next\"",
     "https://api.example.com/items?page=2"},
    /* several links, next in the middle (GitHub style) */
    {"<https://a.example/p?page=1>; rel=\"prev\", <https://a.example/p?page=3>; rel=\"next\", "
     "<https://a.example/p?page=9>; rel=\"last\", <https://a.example/p?page=1>; rel=\"first\"",
     "https://a.example/p?page=3"},
    /* next as the last of several links */
    {"<https://a.example/1>; rel=\"first\", <https://a.example/4>; rel=\"next\"",
     "https://a.example/4"},
    /* a rel list: several space-separated relation types */
    {"<https://a.example/x>; rel=\"prev next\"", "https://a.example/x"},
    {"<https://a.example/x>; rel=\"next   last\"", "https://a.example/x"},
    {"<https://a.example/x>; rel=\"next\tlast\"", "https://a.example/x"},
    /* unquoted rel token */
    {"<https://a.example/u>; rel=next", "https://a.example/u"},
    {"<https://a.example/u>;rel=next;title=x", "https://a.example/u"},
    {"<https://a.example/u> ; rel = next", "https://a.example/u"},
    /* other params before rel */
    {"<https://a.example/v>; type=\"application/json\"; title=\"page 2\"; rel=\"next\"",
     "https://a.example/v"},
    /* commas and semicolons (and a fake rel) inside quoted params do not
     * split link-values */
    {"<https://a.example/p>; title=\"a, b; rel=next\"; rel=\"prev\", <https://a.example/n>; "
     "type=\"x,y\"; rel=\"next\"",
     "https://a.example/n"},
    /* an escaped quote inside a quoted param */
    {"<https://a.example/p>; title=\"say \\\"hi\\\", then\"; rel=prev, <https://a.example/q>; "
     "rel=next",
     "https://a.example/q"},
    /* commas inside the URI reference */
    {"<https://a.example/x?ids=1,2,3>; rel=\"next\"", "https://a.example/x?ids=1,2,3"},
    /* case-insensitive parameter name and relation type */
    {"<https://a.example/c>; REL=\"NEXT\"", "https://a.example/c"},
    {"<https://a.example/c>; Rel=Next", "https://a.example/c"},
    /* a relative reference is returned as is (the caller resolves it) */
    {"</items?cursor=abc>; rel=\"next\"", "/items?cursor=abc"},
    /* the first of two next links */
    {"<https://a.example/1>; rel=next, <https://a.example/2>; rel=next", "https://a.example/1"},
    /* a value that is not a link-value is skipped up to the next comma */
    {"garbage, <https://a.example/g>; rel=next", "https://a.example/g"},
    {"garbage \"with, comma\", <https://a.example/g2>; rel=next", "https://a.example/g2"},
    /* ... and a quoted string in it may hold a whole fake link-value */
    {"garbage \"x, <https://evil.example/>; rel=next \", <https://a.example/g3>; rel=next",
     "https://a.example/g3"},
    {"garbage \"a\\\", <https://evil.example/>; rel=next \", <https://a.example/g4>; rel=next",
     "https://a.example/g4"},
    /* no next */
    {"<https://a.example/1>; rel=\"prev\", <https://a.example/9>; rel=\"last\"", NULL},
    {"<https://a.example/1>", NULL},
    {"<https://a.example/1>; title=\"next\"", NULL},
    {"<https://a.example/1>; rev=\"next\"", NULL},
    {"<https://a.example/1>; relx=next", NULL},
    {"<https://a.example/1>; rel=\"nextpage\"", NULL},
    {"<https://a.example/1>; rel=\"prev-next\"", NULL},
    {"<https://a.example/1>; rel=\"nex\"", NULL},
    /* a next rel that belongs to another link-value is not borrowed */
    {"<https://a.example/1>; rel=prev, rel=next", NULL},
    /* garbage */
    {"", NULL},
    {"garbage", NULL},
    {"rel=\"next\"", NULL},
    {",,,", NULL},
    {"<https://a.example/unterminated; rel=\"next\"", NULL},
    {"<", NULL},
};

START_TEST(link_next)
{
    const struct link_case *c = &link_cases[_i];
    char *got = http_link_next(c->value);
    if (!c->want) {
        ck_assert_msg(got == NULL, "[%s]: expected NULL, got \"%s\"", c->value, got);
    } else {
        ck_assert_msg(got != NULL, "[%s]: expected \"%s\", got NULL", c->value, c->want);
        ck_assert_msg(strcmp(got, c->want) == 0, "[%s]: expected \"%s\", got \"%s\"", c->value,
                      c->want, got);
    }
    free(got);
}
END_TEST

/* the result is a fresh copy, not a pointer into the header value */
START_TEST(link_next_is_a_copy)
{
    char v[] = "<https://a.example/z>; rel=next";
    char *got = http_link_next(v);
    ck_assert_ptr_nonnull(got);
    ck_assert(got < v || got >= v + sizeof(v));
    memset(v, 'x', sizeof(v) - 1);
    ck_assert_str_eq(got, "https://a.example/z");
    free(got);
}
END_TEST

/* an unterminated '<' ends the parse at the NUL: nothing after it is read */
START_TEST(link_next_stops_at_nul)
{
    static const char v[] = "<https://a.example/x\0>; rel=next";
    ck_assert_uint_eq(strlen(v), 20);
    char *got = http_link_next(v);
    ck_assert_msg(got == NULL, "got \"%s\"", got);
    free(got);
    static const char w[] = "<https://a.example/y>; rel=prev\0, <https://a.example/z>; rel=next";
    got = http_link_next(w);
    ck_assert_msg(got == NULL, "got \"%s\"", got);
    free(got);
}
END_TEST

/* Regression test (was a bug): http_link_next copies a link-param value into a 256-byte buffer and
 * silently truncates it, so a rel list whose registered "next" comes after a
 * long extension relation type (RFC 8288 3.3 allows URIs as relation types)
 * is missed:
 *   input:    <https://a.example/n>; rel="http://example.com/rels/<300 x 'a'> next"
 *   expected: "https://a.example/n"
 *   actual:   NULL
 * The same truncation also invents a "next":
 *   input:    <https://a.example/m>; rel="x<249 x 'b'> nextpage"
 *   expected: NULL
 *   actual:   "https://a.example/m" ("nextpage" is cut to "next" at byte 255) */
START_TEST(link_next_long_rel)
{
    char v[512];
    char pad[301];
    memset(pad, 'a', 300);
    pad[300] = '\0';
    snprintf(v, sizeof(v), "<https://a.example/n>; rel=\"http://example.com/rels/%s next\"", pad);
    char *got = http_link_next(v);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, "https://a.example/n");
    free(got);
}
END_TEST

START_TEST(link_next_long_rel_no_false_next)
{
    /* "nextpage" must not become "next" by truncation: with 250 bytes before
     * it, the 255 kept bytes end in " next" (actual: "https://a.example/m") */
    char v[512];
    char pad2[256];
    size_t plen = 249;
    memset(pad2, 'b', plen);
    pad2[plen] = '\0';
    snprintf(v, sizeof(v), "<https://a.example/m>; rel=\"x%s nextpage\"", pad2);
    char *got = http_link_next(v);
    ck_assert_ptr_null(got);
    free(got);
}
END_TEST

/* ---- http_retry_after_parse --------------------------------------------- */

#define SEC INT64_C(1000000)
#define DAY366 (INT64_C(366) * 86400 * SEC)

struct ra_case {
    const char *value;
    int64_t want; /* microseconds, -1: invalid */
};

static const struct ra_case ra_cases[] = {
    {"0", 0},
    {"1", 1 * SEC},
    {"120", 120 * SEC},
    {"007", 7 * SEC},
    {"  120", 120 * SEC},
    {"120  ", 120 * SEC},
    {"\t30\t", 30 * SEC},
    {"86400", 86400 * SEC},
    /* clamped at 366 days */
    {"31622399", 31622399 * SEC},
    {"31622400", DAY366},
    {"31622401", DAY366},
    {"99999999999999999999999999999999999999", DAY366},
    {"18446744073709551616", DAY366}, /* 2^64: no wrap-around */
    /* not delta-seconds and not a date */
    {"", -1},
    {"   ", -1},
    {"-5", -1},
    {"-1", -1},
    {"+5", -1},
    {"1.5", -1},
    {"12abc", -1},
    {"12 34", -1},
    {"soon", -1},
    {"0x10", -1},
};

/* Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example date) */
#define EXAMPLE_NOW ((time_t)784111777)

START_TEST(retry_after)
{
    const struct ra_case *c = &ra_cases[_i];
    int64_t got = http_retry_after_parse(c->value, EXAMPLE_NOW);
    ck_assert_msg(got == c->want, "[%s]: expected %lld, got %lld", c->value, (long long)c->want,
                  (long long)got);
}
END_TEST

START_TEST(retry_after_date)
{
    time_t now = curl_getdate("Sun, 06 Nov 1994 08:49:37 GMT", NULL);
    ck_assert_int_eq((long long)now, (long long)EXAMPLE_NOW);
    /* 10 s later in the three HTTP-date formats */
    ck_assert_int_eq(http_retry_after_parse("Sun, 06 Nov 1994 08:49:47 GMT", now), 10 * SEC);
    ck_assert_int_eq(http_retry_after_parse("Sunday, 06-Nov-94 08:49:47 GMT", now), 10 * SEC);
    ck_assert_int_eq(http_retry_after_parse("Sun Nov  6 08:49:47 1994", now), 10 * SEC);
    /* a day later */
    ck_assert_int_eq(http_retry_after_parse("Mon, 07 Nov 1994 08:49:37 GMT", now), 86400 * SEC);
    /* exactly now and in the past: 0 (retry at once), never negative */
    ck_assert_int_eq(http_retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", now), 0);
    ck_assert_int_eq(http_retry_after_parse("Sun, 06 Nov 1994 08:49:27 GMT", now), 0);
    ck_assert_int_eq(http_retry_after_parse("Thu, 01 Jan 1970 00:00:01 GMT", now), 0);
    /* the same date against another clock */
    ck_assert_int_eq(http_retry_after_parse("Sun, 06 Nov 1994 08:49:47 GMT", now - 50), 60 * SEC);
    ck_assert_int_eq(http_retry_after_parse("Sun, 06 Nov 1994 08:49:47 GMT", now + 50), 0);
    /* leading spaces before a date */
    ck_assert_int_eq(http_retry_after_parse("  Sun, 06 Nov 1994 08:49:47 GMT", now), 10 * SEC);
}
END_TEST

/* ---- http_content_type_ok ----------------------------------------------- */

struct ct_case {
    const char *ctype;
    bool json, strict; /* expected in CTYPE_JSON and CTYPE_STRICT */
};

static const struct ct_case ct_cases[] = {
    {"application/json", true, true},
    {"application/json; charset=utf-8", true, true},
    {"application/json;charset=UTF-8", true, true},
    {"  application/json ; charset=utf-8", true, true},
    {"APPLICATION/JSON", true, true},
    {"Application/Json; Charset=UTF-8", true, true},
    {"application/problem+json", true, true},
    {"application/vnd.api+json", true, true},
    {"application/hal+json;profile=\"x\"", true, true},
    {"APPLICATION/PROBLEM+JSON", true, true},
    {"application/x-ndjson", true, true},
    {"application/jsonl", true, true},
    {"application/json-seq", true, true},
    /* not JSON types: fine for json mode, refused by strict */
    {"text/plain", true, false},
    {"text/plain; charset=utf-8", true, false},
    {"text/json", true, false},
    {"application/octet-stream", true, false},
    {"text/x-json+json", true, false}, /* +json only counts under application/ */
    {"application/jsonx", true, false},
    /* HTML and XML: refused by both */
    {"text/html", false, false},
    {"text/html; charset=utf-8", false, false},
    {"TEXT/HTML; charset=UTF-8", false, false},
    {"text/xml", false, false},
    {"application/xml", false, false},
    {"application/xhtml+xml", false, false},
    {"application/atom+xml", false, false},
    {"image/svg+xml", false, false},
    {"application/rss+XML; charset=utf-8", false, false},
    /* an empty type counts as missing */
    {"", true, true},
};

START_TEST(content_type)
{
    const struct ct_case *c = &ct_cases[_i];
    bool j = http_content_type_ok(c->ctype, CTYPE_JSON);
    bool s = http_content_type_ok(c->ctype, CTYPE_STRICT);
    bool a = http_content_type_ok(c->ctype, CTYPE_ANY);
    ck_assert_msg(j == c->json, "[%s] json mode: expected %d, got %d", c->ctype, c->json, j);
    ck_assert_msg(s == c->strict, "[%s] strict mode: expected %d, got %d", c->ctype, c->strict, s);
    ck_assert_msg(a, "[%s] any mode: expected accepted", c->ctype);
}
END_TEST

START_TEST(content_type_missing)
{
    ck_assert(http_content_type_ok(NULL, CTYPE_JSON));
    ck_assert(http_content_type_ok(NULL, CTYPE_STRICT));
    ck_assert(http_content_type_ok(NULL, CTYPE_ANY));
}
END_TEST

START_TEST(content_type_long)
{
    /* a type longer than the internal buffer: not HTML, so json mode lets it
     * through, strict mode does not */
    char t[400];
    memset(t, 'a', sizeof(t) - 1);
    t[sizeof(t) - 1] = '\0';
    memcpy(t, "application/", 12);
    ck_assert(http_content_type_ok(t, CTYPE_JSON));
    ck_assert(!http_content_type_ok(t, CTYPE_STRICT));
    ck_assert(http_content_type_ok(t, CTYPE_ANY));
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc;

    tc = tcase_create("link");
    tcase_add_loop_test(tc, link_next, 0, N_ELEMS(link_cases));
    tcase_add_test(tc, link_next_is_a_copy);
    tcase_add_test(tc, link_next_stops_at_nul);
    tcase_add_test(tc, link_next_long_rel);
    tcase_add_test(tc, link_next_long_rel_no_false_next);
    suite_add_tcase(s, tc);

    tc = tcase_create("retry_after");
    tcase_add_loop_test(tc, retry_after, 0, N_ELEMS(ra_cases));
    tcase_add_test(tc, retry_after_date);
    suite_add_tcase(s, tc);

    tc = tcase_create("content_type");
    tcase_add_loop_test(tc, content_type, 0, N_ELEMS(ct_cases));
    tcase_add_test(tc, content_type_missing);
    tcase_add_test(tc, content_type_long);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(http_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
