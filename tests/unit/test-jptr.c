/* test-jptr.c - unit tests for src/jptr.h: RFC 6901 JSON Pointer parsing
 * and evaluation on minified JSON text. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jptr.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- jptr_parse ---------------------------------------------------------- */

static const struct {
    const char *in;
    size_t n;
    const char *tokens[4];
} parse_ok[] = {
    {"", 0, {NULL}},
    {"/", 1, {""}},
    {"//", 2, {"", ""}},
    {"/a", 1, {"a"}},
    {"/a/b/c", 3, {"a", "b", "c"}},
    {"/a/", 2, {"a", ""}},
    {"/a~1b", 1, {"a/b"}},
    {"/m~0n", 1, {"m~n"}},
    {"/~01", 1, {"~1"}}, /* RFC 6901: "~01" is "~1", not "/" */
    {"/~10", 1, {"/0"}},
    {"/~0~0/~1~1", 2, {"~~", "//"}},
    {"/0", 1, {"0"}},
    {"/01", 1, {"01"}},
    {"/-", 1, {"-"}},
    {"/ a b ", 1, {" a b "}},
    {"/\xc3\xa9/%25", 2, {"\xc3\xa9", "%25"}},
    {"/a\\b/c\"d", 2, {"a\\b", "c\"d"}},
};

START_TEST(parse_valid)
{
    struct jptr *p = NULL;
    const char *msg = NULL;
    int r = jptr_parse(parse_ok[_i].in, &p, &msg);
    ck_assert_msg(r == 0, "\"%s\": expected 0, got %d (%s)", parse_ok[_i].in, r, msg ? msg : "-");
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(p->src, parse_ok[_i].in);
    ck_assert_ptr_ne(p->src, parse_ok[_i].in); /* owned copy */
    ck_assert_uint_eq(p->n, parse_ok[_i].n);
    for (size_t i = 0; i < p->n; i++) {
        ck_assert_str_eq(p->tokens[i], parse_ok[_i].tokens[i]);
    }
    ck_assert_ptr_null(jptr_free(p));
}
END_TEST

static const char *const parse_bad[] = {
    "a", "a/b", " /a", "#/a", "~0", "/~2", "/~", "/a~", "/~a", "/a/~x", "/~~", "/ok/~3/x", "/~/",
};

START_TEST(parse_invalid)
{
    struct jptr *p = (struct jptr *)0x1;
    const char *msg = NULL;
    int r = jptr_parse(parse_bad[_i], &p, &msg);
    ck_assert_msg(r == -EINVAL, "\"%s\": expected -EINVAL, got %d", parse_bad[_i], r);
    ck_assert_ptr_nonnull(msg);
    ck_assert_uint_gt(strlen(msg), 0);
    ck_assert_ptr_eq(p, (struct jptr *)0x1); /* *ret untouched */
}
END_TEST

START_TEST(parse_messages)
{
    struct jptr *p = NULL;
    const char *msg = NULL;
    ck_assert_int_eq(jptr_parse("a", &p, &msg), -EINVAL);
    ck_assert_ptr_nonnull(strstr(msg, "'/'"));
    msg = NULL;
    ck_assert_int_eq(jptr_parse("/~2", &p, &msg), -EINVAL);
    ck_assert_ptr_nonnull(strstr(msg, "~"));
    ck_assert_ptr_null(p);
    ck_assert_ptr_null(jptr_free(NULL));
}
END_TEST

/* ---- jptr_eval ----------------------------------------------------------- */

static const struct {
    const char *doc; /* minified JSON */
    const char *ptr;
    const char *want; /* selected text, or NULL for -ENOENT */
    size_t failed;    /* expected failed-token index for -ENOENT */
} eval_cases[] = {
    /* the whole document */
    {"{\"a\":1}", "", "{\"a\":1}", 0},
    {"[1,2]", "", "[1,2]", 0},
    {"\"str\"", "", "\"str\"", 0},
    {"123", "", "123", 0},
    {"-1.5e3", "", "-1.5e3", 0},
    {"true", "", "true", 0},
    {"null", "", "null", 0},
    /* "/" is the empty key */
    {"{\"\":5,\"a\":1}", "/", "5", 0},
    {"{\"a\":1,\"\":5}", "/", "5", 0},
    {"{\"a\":1}", "/", NULL, 0},
    {"{\"\":{\"\":7}}", "//", "7", 0},
    /* escapes in the pointer */
    {"{\"a/b\":1,\"a\":{\"b\":2}}", "/a~1b", "1", 0},
    {"{\"a/b\":1,\"a\":{\"b\":2}}", "/a/b", "2", 0},
    {"{\"m~n\":7}", "/m~0n", "7", 0},
    {"{\"~1\":8,\"/\":9}", "/~01", "8", 0},
    {"{\"~1\":8,\"/\":9}", "/~1", "9", 0},
    /* arrays */
    {"[10,20,30]", "/0", "10", 0},
    {"[10,20,30]", "/1", "20", 0},
    {"[10,20,30]", "/2", "30", 0},
    {"[10,20,30]", "/3", NULL, 0},
    {"[10,20,30]", "/01", NULL, 0}, /* leading zero: never an index */
    {"[10,20,30]", "/00", NULL, 0},
    {"[10,20,30]", "/-", NULL, 0},
    {"[10,20,30]", "/-1", NULL, 0},
    {"[10,20,30]", "/+1", NULL, 0},
    {"[10,20,30]", "/1a", NULL, 0},
    {"[10,20,30]", "/ 1", NULL, 0},
    {"[10,20,30]", "/", NULL, 0},
    {"[10,20,30]", "/99999999999999999999999999", NULL, 0},
    {"[]", "/0", NULL, 0},
    {"[[]]", "/0", "[]", 0},
    {"[[]]", "/0/0", NULL, 1},
    /* numeric-looking keys on objects are keys */
    {"{\"0\":\"zero\"}", "/0", "\"zero\"", 0},
    {"{\"01\":\"x\",\"1\":\"y\"}", "/01", "\"x\"", 0},
    {"{\"-\":\"dash\"}", "/-", "\"dash\"", 0},
    /* escaped keys in the document */
    {"{\"\\u0041\":1}", "/A", "1", 0},
    {"{\"\\u0041x\":1}", "/Ax", "1", 0},
    {"{\"\\u0041\":1}", "/\\u0041", NULL, 0},
    {"{\"\\u00e9\":2}", "/\xc3\xa9", "2", 0},
    {"{\"\\u00E9\":2}", "/\xc3\xa9", "2", 0},
    {"{\"\xc3\xa9\":2}", "/\xc3\xa9", "2", 0},
    {"{\"\\u20ac\":3}", "/\xe2\x82\xac", "3", 0},
    {"{\"\\ud83d\\ude00\":4}", "/\xf0\x9f\x98\x80", "4", 0},
    {"{\"\\uD83D\\uDE00\":4}", "/\xf0\x9f\x98\x80", "4", 0},
    {"{\"a\\nb\":5}", "/a\nb", "5", 0},
    {"{\"a\\tb\\r\\b\\f\":5}", "/a\tb\r\b\f", "5", 0},
    {"{\"q\\\"\":6}", "/q\"", "6", 0},
    {"{\"a\\\\b\":7}", "/a\\b", "7", 0},
    {"{\"\\/\":8}", "/~1", "8", 0},
    {"{\"\\u002f\":8}", "/~1", "8", 0},
    {"{\"\\u007e\":9}", "/~0", "9", 0},
    {"{\"a\\u0000\":1}", "/a", NULL, 0},
    {"{\"\\u0000\":1}", "/", NULL, 0},
    {"{\"a\\u0000b\":1}", "/a", NULL, 0},
    /* duplicate keys: the first wins */
    {"{\"dup\":1,\"dup\":2}", "/dup", "1", 0},
    {"{\"A\":1,\"\\u0041\":2}", "/A", "1", 0},
    {"{\"\\u0041\":1,\"A\":2}", "/A", "1", 0},
    /* prefixes are not matches */
    {"{\"ab\":1,\"a\":2}", "/a", "2", 0},
    {"{\"a\":1}", "/ab", NULL, 0},
    {"{\"ab\":1}", "/a", NULL, 0},
    {"{\"A\":1}", "/a", NULL, 0},
    /* nesting */
    {"{\"a\":{\"b\":[10,20,{\"c\":\"deep\"}]}}", "/a/b/2/c", "\"deep\"", 0},
    {"{\"a\":{\"b\":[10,20,{\"c\":\"deep\"}]}}", "/a/b", "[10,20,{\"c\":\"deep\"}]", 0},
    {"{\"a\":{\"b\":[10,20,{\"c\":\"deep\"}]}}", "/a/b/1", "20", 0},
    {"{\"a\":{\"b\":[10,20,{\"c\":\"deep\"}]}}", "/a", "{\"b\":[10,20,{\"c\":\"deep\"}]}", 0},
    {"{\"a\":{\"b\":[10,20,{\"c\":\"deep\"}]}}", "/x/y/z", NULL, 0},
    {"{\"a\":{\"b\":[10,20,{\"c\":\"deep\"}]}}", "/a/x", NULL, 1},
    {"{\"a\":{\"b\":[10,20,{\"c\":\"deep\"}]}}", "/a/b/5", NULL, 2},
    {"{\"a\":{\"b\":[10,20,{\"c\":\"deep\"}]}}", "/a/b/2/x", NULL, 3},
    {"{\"a\":{\"b\":[10,20,{\"c\":\"deep\"}]}}", "/a/b/2/c/d", NULL, 4},
    {"{\"a\":{\"b\":[10,20,{\"c\":\"deep\"}]}}", "/a/b/0/x", NULL, 3},
    {"[[1,[2,3]],{\"k\":[4]}]", "/0/1/1", "3", 0},
    {"[[1,[2,3]],{\"k\":[4]}]", "/0/1", "[2,3]", 0},
    {"[[1,[2,3]],{\"k\":[4]}]", "/1", "{\"k\":[4]}", 0},
    {"[[1,[2,3]],{\"k\":[4]}]", "/1/k", "[4]", 0},
    {"[[1,[2,3]],{\"k\":[4]}]", "/1/k/0", "4", 0},
    {"[[1,[2,3]],{\"k\":[4]}]", "/1/0", NULL, 1},
    {"[[1,[2,3]],{\"k\":[4]}]", "/0/k", NULL, 1},
    /* a key of an inner object is not a key of the outer one */
    {"{\"a\":{\"b\":1},\"b\":2}", "/b", "2", 0},
    {"{\"a\":[{\"b\":1}],\"b\":2}", "/b", "2", 0},
    {"{\"a\":{\"b\":1}}", "/b", NULL, 0},
    /* strings containing brackets, quotes, commas, colons, backslashes */
    {"{\"a\":\"x]}\\\"{[\",\"b\":2}", "/b", "2", 0},
    {"{\"a\":\"x]}\\\"{[\",\"b\":2}", "/a", "\"x]}\\\"{[\"", 0},
    {"[\" ] \",{\"a\":\"}\"},\"last\"]", "/2", "\"last\"", 0},
    {"[\" ] \",{\"a\":\"}\"},\"last\"]", "/1/a", "\"}\"", 0},
    {"[\" ] \",{\"a\":\"}\"},\"last\"]", "/0", "\" ] \"", 0},
    {"{\"a\":\"\\\\\",\"b\":3}", "/b", "3", 0},
    {"{\"a\":\"\\\\\",\"b\":3}", "/a", "\"\\\\\"", 0},
    {"{\"a\":\"\\\\\\\"\",\"b\":3}", "/b", "3", 0},
    {"{\"x\":\"\\\"b\\\":1\",\"b\":2}", "/b", "2", 0},
    {"{\"x\":\",\\\"b\\\":1,\",\"b\":2}", "/b", "2", 0},
    {"[\"a,b\",\"c\"]", "/1", "\"c\"", 0},
    {"{\"k\":{\"s\":\"]]]}}}\"},\"z\":0}", "/z", "0", 0},
    {"{\"a]\":1,\"b\":2}", "/a]", "1", 0},
    {"{\"{\":1,\"b\":2}", "/b", "2", 0},
    /* scalars and empty containers */
    {"{\"e\":[],\"o\":{}}", "/e", "[]", 0},
    {"{\"e\":[],\"o\":{}}", "/o", "{}", 0},
    {"{\"e\":[],\"o\":{}}", "/e/0", NULL, 1},
    {"{\"e\":[],\"o\":{}}", "/o/x", NULL, 1},
    {"{}", "/a", NULL, 0},
    {"{\"n\":null,\"t\":true,\"f\":false,\"num\":-1.5e3}", "/n", "null", 0},
    {"{\"n\":null,\"t\":true,\"f\":false,\"num\":-1.5e3}", "/t", "true", 0},
    {"{\"n\":null,\"t\":true,\"f\":false,\"num\":-1.5e3}", "/f", "false", 0},
    {"{\"n\":null,\"t\":true,\"f\":false,\"num\":-1.5e3}", "/num", "-1.5e3", 0},
    {"{\"n\":null}", "/n/0", NULL, 1},
    {"5", "/a", NULL, 0},
    {"\"s\"", "/0", NULL, 0},
    {"true", "/0", NULL, 0},
    /* numbers are selected byte for byte */
    {"[12345678901234567890123,1e400]", "/0", "12345678901234567890123", 0},
    {"[12345678901234567890123,1e400]", "/1", "1e400", 0},
    {"{\"big\":-0.000000000000000000001}", "/big", "-0.000000000000000000001", 0},
};

START_TEST(eval)
{
    struct jptr *p = NULL;
    const char *msg = NULL;
    const char *doc = eval_cases[_i].doc;
    size_t len = strlen(doc);
    ck_assert_int_eq(jptr_parse(eval_cases[_i].ptr, &p, &msg), 0);

    /* evaluate on a heap copy without a terminating NUL, so ASan catches any
     * read past the end of the document */
    char *copy = malloc(len);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, doc, len);

    size_t off = (size_t)-1, vlen = (size_t)-1, failed = (size_t)-1;
    int r = jptr_eval(p, copy, len, &off, &vlen, &failed);
    if (eval_cases[_i].want) {
        ck_assert_msg(r == 0, "%s on %s: expected 0, got %d (failed token %zu)", eval_cases[_i].ptr,
                      doc, r, failed);
        ck_assert_uint_le(off + vlen, len);
        ck_assert_msg(vlen == strlen(eval_cases[_i].want) &&
                          memcmp(copy + off, eval_cases[_i].want, vlen) == 0,
                      "%s on %s: expected %s, got %.*s", eval_cases[_i].ptr, doc,
                      eval_cases[_i].want, (int)vlen, copy + off);
        ck_assert_uint_eq(failed, (size_t)-1); /* untouched on success */
    } else {
        ck_assert_msg(r == -ENOENT, "%s on %s: expected -ENOENT, got %d (%.*s)", eval_cases[_i].ptr,
                      doc, r, r == 0 ? (int)vlen : 0, r == 0 ? copy + off : "");
        ck_assert_msg(failed == eval_cases[_i].failed, "%s on %s: expected failed %zu, got %zu",
                      eval_cases[_i].ptr, doc, eval_cases[_i].failed, failed);
        ck_assert_uint_lt(failed, p->n);
        /* ret_failed may be NULL */
        ck_assert_int_eq(jptr_eval(p, copy, len, &off, &vlen, NULL), -ENOENT);
    }
    free(copy);
    jptr_free(p);
}
END_TEST

/* A pointer can be evaluated many times and on different documents. */
START_TEST(eval_reuse)
{
    struct jptr *p = NULL;
    const char *msg = NULL;
    ck_assert_int_eq(jptr_parse("/data/0/v", &p, &msg), 0);
    static const char *const docs[] = {
        "{\"data\":[{\"v\":1}]}",
        "{\"x\":0,\"data\":[{\"w\":2,\"v\":\"two\"},3]}",
        "{\"data\":[[],{\"v\":1}]}",
    };
    static const char *const want[] = {"1", "\"two\"", NULL};
    for (size_t i = 0; i < N_ELEMS(docs); i++) {
        size_t off = 0, len = 0, failed = 99;
        int r = jptr_eval(p, docs[i], strlen(docs[i]), &off, &len, &failed);
        if (want[i]) {
            ck_assert_int_eq(r, 0);
            ck_assert_uint_eq(len, strlen(want[i]));
            ck_assert_mem_eq(docs[i] + off, want[i], len);
        } else {
            ck_assert_int_eq(r, -ENOENT);
            ck_assert_uint_eq(failed, 2);
        }
    }
    jptr_free(p);
}
END_TEST

/* A large array: the last element is found and one past it is not. */
START_TEST(eval_large_array)
{
    const size_t n = 5000;
    char *doc = malloc(n * 8 + 3);
    ck_assert_ptr_nonnull(doc);
    size_t len = 0;
    doc[len++] = '[';
    for (size_t i = 0; i < n; i++) {
        len += (size_t)sprintf(doc + len, "%s%zu", i ? "," : "", i * 3);
    }
    doc[len++] = ']';
    doc[len] = '\0';

    struct jptr *p = NULL;
    const char *msg;
    size_t off, vlen, failed = 99;
    ck_assert_int_eq(jptr_parse("/4999", &p, &msg), 0);
    ck_assert_int_eq(jptr_eval(p, doc, len, &off, &vlen, &failed), 0);
    ck_assert_uint_eq(vlen, 5);
    ck_assert_mem_eq(doc + off, "14997", 5);
    jptr_free(p);
    ck_assert_int_eq(jptr_parse("/5000", &p, &msg), 0);
    ck_assert_int_eq(jptr_eval(p, doc, len, &off, &vlen, &failed), -ENOENT);
    ck_assert_uint_eq(failed, 0);
    jptr_free(p);
    free(doc);
}
END_TEST

static Suite *jptr_suite(void)
{
    Suite *s = suite_create("jptr");
    TCase *tc;

    tc = tcase_create("parse");
    tcase_add_loop_test(tc, parse_valid, 0, N_ELEMS(parse_ok));
    tcase_add_loop_test(tc, parse_invalid, 0, N_ELEMS(parse_bad));
    tcase_add_test(tc, parse_messages);
    suite_add_tcase(s, tc);

    tc = tcase_create("eval");
    tcase_add_loop_test(tc, eval, 0, N_ELEMS(eval_cases));
    tcase_add_test(tc, eval_reuse);
    tcase_add_test(tc, eval_large_array);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(jptr_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
