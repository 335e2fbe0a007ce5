/* test-util.c - unit tests for src/util: buf, strmap, arena and
 * time_format_rfc3339_ms (plus the inline time helpers). */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/arena.h"
#include "util/buf.h"
#include "util/strmap.h"
#include "util/time.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static void assert_buf(const struct buf *b, const char *want)
{
    size_t n = strlen(want);
    ck_assert_uint_eq(b->len, n);
    ck_assert_ptr_nonnull(b->data);
    ck_assert_mem_eq(b->data, want, n);
    ck_assert_int_eq(b->data[n], '\0');
    ck_assert_uint_gt(b->cap, b->len);
}

/* ---- buf ----------------------------------------------------------------- */

START_TEST(buf_basic)
{
    struct buf b = {0};
    ck_assert_ptr_null(b.data);
    ck_assert_int_eq(buf_append(&b, "abc", 3), 0);
    assert_buf(&b, "abc");
    ck_assert_int_eq(buf_putc(&b, 'd'), 0);
    assert_buf(&b, "abcd");
    ck_assert_int_eq(buf_puts(&b, "ef"), 0);
    assert_buf(&b, "abcdef");
    ck_assert_int_eq(buf_puts(&b, ""), 0);
    ck_assert_int_eq(buf_append(&b, "zzz", 0), 0);
    assert_buf(&b, "abcdef");
    ck_assert_int_eq(buf_printf(&b, "-%d-%s-%05.1f", 42, "x", 3.14159), 0);
    assert_buf(&b, "abcdef-42-x-003.1");
    /* binary data with NULs */
    ck_assert_int_eq(buf_append(&b, "\0\1\0", 3), 0);
    ck_assert_uint_eq(b.len, 20);
    ck_assert_mem_eq(b.data + 17, "\0\1\0", 4);
    buf_done(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);
    /* reusable after buf_done */
    ck_assert_int_eq(buf_puts(&b, "again"), 0);
    assert_buf(&b, "again");
    buf_done(&b);
    buf_done(&b); /* twice is harmless */
}
END_TEST

START_TEST(buf_growth)
{
    struct buf b = {0};
    /* many small appends: contents intact across reallocations */
    for (int i = 0; i < 10000; i++) {
        ck_assert_int_eq(buf_putc(&b, (char)('a' + i % 26)), 0);
    }
    ck_assert_uint_eq(b.len, 10000);
    ck_assert_int_eq(b.data[b.len], '\0');
    for (int i = 0; i < 10000; i++) {
        ck_assert_int_eq(b.data[i], 'a' + i % 26);
    }
    /* one big append */
    char *big = malloc(100000);
    ck_assert_ptr_nonnull(big);
    memset(big, 'Q', 100000);
    ck_assert_int_eq(buf_append(&b, big, 100000), 0);
    ck_assert_uint_eq(b.len, 110000);
    ck_assert_int_eq(b.data[109999], 'Q');
    ck_assert_int_eq(b.data[110000], '\0');
    free(big);
    buf_done(&b);
}
END_TEST

START_TEST(buf_reserve_semantics)
{
    struct buf b = {0};
    ck_assert_int_eq(buf_reserve(&b, 0), 0);
    ck_assert_ptr_nonnull(b.data);
    ck_assert_uint_ge(b.cap, 1);
    ck_assert_int_eq(buf_reserve(&b, 1000), 0);
    ck_assert_uint_ge(b.cap, 1001); /* room for the NUL too */
    ck_assert_uint_eq(b.len, 0);
    char *before = b.data;
    /* appending within the reservation does not reallocate */
    char chunk[1000];
    memset(chunk, 'r', sizeof(chunk));
    ck_assert_int_eq(buf_append(&b, chunk, sizeof(chunk)), 0);
    ck_assert_ptr_eq(b.data, before);
    /* impossible sizes fail cleanly */
    ck_assert_int_eq(buf_reserve(&b, SIZE_MAX), -ENOMEM);
    ck_assert_int_eq(buf_reserve(&b, SIZE_MAX - b.len), -ENOMEM);
    ck_assert_uint_eq(b.len, 1000);
    ck_assert_ptr_eq(b.data, before);
    buf_done(&b);
}
END_TEST

START_TEST(buf_cap)
{
    struct buf b = {.max = 5};
    ck_assert_int_eq(buf_append(&b, "abc", 3), 0);
    ck_assert_int_eq(buf_append(&b, "def", 3), -E2BIG);
    assert_buf(&b, "abc");
    ck_assert_int_eq(buf_puts(&b, "xyz"), -E2BIG);
    assert_buf(&b, "abc");
    ck_assert_int_eq(buf_append(&b, "de", 2), 0); /* exactly the cap */
    assert_buf(&b, "abcde");
    ck_assert_int_eq(buf_putc(&b, 'f'), -E2BIG);
    assert_buf(&b, "abcde");
    ck_assert_int_eq(buf_append(&b, "", 0), 0);
    ck_assert_int_eq(buf_printf(&b, "%s", ""), 0);
    assert_buf(&b, "abcde");
    ck_assert_int_eq(buf_printf(&b, "%d", 1), -E2BIG);
    assert_buf(&b, "abcde");
    ck_assert_int_eq(buf_reserve(&b, 1), -E2BIG);
    buf_reset(&b);
    ck_assert_int_eq(buf_puts(&b, "12345"), 0);
    buf_done(&b);

    /* buf_putc up to the cap one byte at a time, with a roomy allocation */
    struct buf c = {.max = 3};
    ck_assert_int_eq(buf_reserve(&c, 3), 0);
    ck_assert_int_eq(buf_putc(&c, 'x'), 0);
    ck_assert_int_eq(buf_putc(&c, 'y'), 0);
    ck_assert_int_eq(buf_putc(&c, 'z'), 0);
    ck_assert_int_eq(buf_putc(&c, 'w'), -E2BIG);
    assert_buf(&c, "xyz");
    buf_done(&c);

    /* printf over the cap in the fast path (enough memory allocated) */
    struct buf d = {0};
    ck_assert_int_eq(buf_reserve(&d, 100), 0);
    d.max = 6;
    ck_assert_int_eq(buf_puts(&d, "ab"), 0);
    ck_assert_int_eq(buf_printf(&d, "%s", "cdefg"), -E2BIG);
    assert_buf(&d, "ab");
    ck_assert_int_eq(buf_printf(&d, "%s", "cdef"), 0);
    assert_buf(&d, "abcdef");
    buf_done(&d);

    /* printf over the cap in the slow path (needs to grow) */
    struct buf e = {.max = 300};
    char fill[250];
    memset(fill, 'f', sizeof(fill));
    ck_assert_int_eq(buf_append(&e, fill, sizeof(fill)), 0);
    ck_assert_int_eq(buf_printf(&e, "%060d", 7), -E2BIG);
    ck_assert_uint_eq(e.len, 250);
    ck_assert_int_eq(e.data[250], '\0');
    ck_assert_int_eq(buf_printf(&e, "%050d", 7), 0);
    ck_assert_uint_eq(e.len, 300);
    ck_assert_int_eq(e.data[299], '7');
    ck_assert_int_eq(e.data[300], '\0');
    buf_done(&e);
}
END_TEST

START_TEST(buf_printf_growth)
{
    struct buf b = {0};
    /* empty buffer: nothing allocated before the first printf */
    ck_assert_int_eq(buf_printf(&b, "%s", ""), 0);
    assert_buf(&b, "");
    /* a long formatted string that needs a reallocation */
    ck_assert_int_eq(buf_printf(&b, "%0500d|%s", 5, "end"), 0);
    ck_assert_uint_eq(b.len, 504);
    ck_assert_int_eq(b.data[499], '5');
    ck_assert_str_eq(b.data + 500, "|end");
    /* output that exactly fills the remaining space */
    struct buf c = {0};
    ck_assert_int_eq(buf_reserve(&c, 9), 0);
    size_t room = c.cap - 1;
    ck_assert_int_eq(buf_printf(&c, "%0*d", (int)room, 1), 0);
    ck_assert_uint_eq(c.len, room);
    ck_assert_int_eq(c.data[room - 1], '1');
    ck_assert_int_eq(c.data[room], '\0');
    ck_assert_int_eq(buf_printf(&c, "%d", 2), 0);
    ck_assert_uint_eq(c.len, room + 1);
    ck_assert_int_eq(c.data[room], '2');
    buf_done(&c);
    buf_done(&b);
}
END_TEST

START_TEST(buf_consume_reset_shrink)
{
    struct buf b = {0};
    ck_assert_int_eq(buf_puts(&b, "hello world"), 0);
    buf_consume(&b, 0);
    assert_buf(&b, "hello world");
    buf_consume(&b, 6);
    assert_buf(&b, "world");
    buf_consume(&b, 4);
    assert_buf(&b, "d");
    buf_consume(&b, 1);
    assert_buf(&b, "");
    ck_assert_int_eq(buf_puts(&b, "xy"), 0);
    buf_consume(&b, 100); /* more than len */
    assert_buf(&b, "");

    ck_assert_int_eq(buf_puts(&b, "abc"), 0);
    size_t cap = b.cap;
    buf_reset(&b);
    assert_buf(&b, "");
    ck_assert_uint_eq(b.cap, cap); /* memory kept */

    /* buf_shrink frees only an empty buffer above the threshold */
    ck_assert_int_eq(buf_puts(&b, "data"), 0);
    buf_shrink(&b, 0);
    assert_buf(&b, "data"); /* not empty: kept */
    buf_reset(&b);
    buf_shrink(&b, b.cap); /* not above keep: kept */
    ck_assert_ptr_nonnull(b.data);
    buf_shrink(&b, b.cap - 1);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.cap, 0);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(buf_puts(&b, "reuse"), 0);
    assert_buf(&b, "reuse");
    buf_done(&b);

    struct buf empty = {0};
    buf_reset(&empty); /* no data yet: fine */
    buf_consume(&empty, 3);
    buf_shrink(&empty, 0);
    ck_assert_ptr_null(empty.data);
}
END_TEST

START_TEST(buf_steal_test)
{
    struct buf b = {0};
    ck_assert_int_eq(buf_puts(&b, "stolen"), 0);
    char *s = buf_steal(&b);
    ck_assert_str_eq(s, "stolen");
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);
    free(s);

    /* never NULL on success, even for a buffer that never held data */
    struct buf e = {0};
    s = buf_steal(&e);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "");
    free(s);
    ck_assert_ptr_null(e.data);

    /* the buffer is reusable after buf_steal */
    ck_assert_int_eq(buf_puts(&b, "x"), 0);
    assert_buf(&b, "x");
    buf_done(&b);
}
END_TEST

/* ---- strmap -------------------------------------------------------------- */

START_TEST(strmap_hash_fnv1a)
{
    ck_assert_uint_eq(strmap_hash(""), UINT64_C(0xcbf29ce484222325));
    ck_assert_uint_eq(strmap_hash("a"), UINT64_C(0xaf63dc4c8601ec8c));
    ck_assert_uint_eq(strmap_hash("foobar"), UINT64_C(0x85944171f73967e8));
    ck_assert_uint_eq(strmap_hash("fetchd"), UINT64_C(0x1dfb505caf973225));
    /* bytes above 0x7f hash as unsigned */
    ck_assert_uint_ne(strmap_hash("\xff"), strmap_hash("\x7f"));
}
END_TEST

START_TEST(strmap_basic)
{
    struct strmap m = {0};
    int v1 = 1, v2 = 2, v3 = 3;
    ck_assert_ptr_null(strmap_get(&m, "missing")); /* empty map */
    ck_assert_int_eq(strmap_put(&m, "one", &v1, NULL), 0);
    ck_assert_int_eq(strmap_put(&m, "two", &v2, NULL), 0);
    ck_assert_uint_eq(m.count, 2);
    ck_assert_ptr_eq(strmap_get(&m, "one"), &v1);
    ck_assert_ptr_eq(strmap_get(&m, "two"), &v2);
    ck_assert_ptr_null(strmap_get(&m, "three"));
    ck_assert_ptr_null(strmap_get(&m, ""));
    ck_assert_ptr_null(strmap_get(&m, "On"));

    /* put on an existing key: returns 1, reports the old value, no change */
    void *old = NULL;
    char key_copy[] = "one"; /* equal content, different pointer */
    ck_assert_int_eq(strmap_put(&m, key_copy, &v3, &old), 1);
    ck_assert_ptr_eq(old, &v1);
    ck_assert_ptr_eq(strmap_get(&m, "one"), &v1);
    ck_assert_uint_eq(m.count, 2);
    ck_assert_int_eq(strmap_put(&m, "one", &v3, NULL), 1);

    /* set replaces, and inserts */
    ck_assert_int_eq(strmap_set(&m, "one", &v3), 0);
    ck_assert_ptr_eq(strmap_get(&m, "one"), &v3);
    ck_assert_uint_eq(m.count, 2);
    ck_assert_int_eq(strmap_set(&m, "three", &v3), 0);
    ck_assert_uint_eq(m.count, 3);
    ck_assert_ptr_eq(strmap_get(&m, "three"), &v3);

    /* the empty string is a key like any other */
    ck_assert_int_eq(strmap_put(&m, "", &v2, NULL), 0);
    ck_assert_ptr_eq(strmap_get(&m, ""), &v2);

    strmap_done(&m);
    ck_assert_ptr_null(m.slots);
    ck_assert_uint_eq(m.count, 0);
    ck_assert_uint_eq(m.nslots, 0);
    ck_assert_ptr_null(strmap_get(&m, "one"));
    /* reusable */
    ck_assert_int_eq(strmap_put(&m, "one", &v1, NULL), 0);
    ck_assert_ptr_eq(strmap_get(&m, "one"), &v1);
    strmap_done(&m);
}
END_TEST

START_TEST(strmap_many)
{
    enum { N = 20000 };
    struct arena a = {0};
    char **keys = calloc(N, sizeof(char *));
    ck_assert_ptr_nonnull(keys);
    struct strmap m = {0};
    for (size_t i = 0; i < N; i++) {
        char tmp[32];
        snprintf(tmp, sizeof(tmp), "endpoint-%zu", i);
        keys[i] = arena_strdup(&a, tmp);
        ck_assert_ptr_nonnull(keys[i]);
        ck_assert_int_eq(strmap_put(&m, keys[i], &keys[i], NULL), 0);
        ck_assert_uint_eq(m.count, i + 1);
        /* power of two, load factor at most 3/4 */
        ck_assert_uint_eq(m.nslots & (m.nslots - 1), 0);
        ck_assert_uint_le(m.count * 4, m.nslots * 3);
    }
    for (size_t i = 0; i < N; i++) {
        char tmp[32];
        snprintf(tmp, sizeof(tmp), "endpoint-%zu", i);
        ck_assert_ptr_eq(strmap_get(&m, tmp), &keys[i]);
        void *old = NULL;
        ck_assert_int_eq(strmap_put(&m, tmp, NULL, &old), 1);
        ck_assert_ptr_eq(old, &keys[i]);
    }
    ck_assert_ptr_null(strmap_get(&m, "endpoint-20000"));
    ck_assert_ptr_null(strmap_get(&m, "endpoint-"));
    ck_assert_uint_eq(m.count, N);
    /* replace every other value */
    for (size_t i = 0; i < N; i += 2) {
        ck_assert_int_eq(strmap_set(&m, keys[i], NULL), 0);
    }
    ck_assert_uint_eq(m.count, N);
    for (size_t i = 0; i < N; i++) {
        ck_assert_ptr_eq(strmap_get(&m, keys[i]), i % 2 ? (void *)&keys[i] : NULL);
    }
    strmap_done(&m);
    free(keys);
    arena_done(&a);
}
END_TEST

/* ---- arena --------------------------------------------------------------- */

START_TEST(arena_basic)
{
    struct arena a = {0};
    char *s = arena_strdup(&a, "hello");
    ck_assert_str_eq(s, "hello");
    char *t = arena_strndup(&a, "world!!", 5);
    ck_assert_str_eq(t, "world");
    char *e = arena_strdup(&a, "");
    ck_assert_str_eq(e, "");
    int src[4] = {1, 2, 3, 4};
    int *d = arena_memdup(&a, src, sizeof(src));
    ck_assert_ptr_nonnull(d);
    ck_assert_mem_eq(d, src, sizeof(src));
    ck_assert_ptr_ne(d, src);
    ck_assert_ptr_nonnull(arena_memdup(&a, src, 0));
    /* allocations do not overlap */
    ck_assert_str_eq(s, "hello");
    ck_assert_str_eq(t, "world");
    ck_assert_uint_eq(a.total, 64 * 1024);
    arena_done(&a);
    ck_assert_ptr_null(a.head);
    ck_assert_uint_eq(a.used, 0);
    ck_assert_uint_eq(a.total, 0);
    /* reusable */
    ck_assert_str_eq(arena_strdup(&a, "again"), "again");
    arena_done(&a);
    arena_done(&a);
}
END_TEST

START_TEST(arena_alignment_and_zeroing)
{
    struct arena a = {0};
    for (size_t size = 0; size < 200; size++) {
        unsigned char *p = arena_alloc(&a, size);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % 8, 0);
        for (size_t i = 0; i < size; i++) {
            ck_assert_int_eq(p[i], 0);
        }
        memset(p, 0xAB, size); /* dirty it: the next allocations must be zeroed anyway */
    }
    arena_done(&a);
}
END_TEST

START_TEST(arena_many_blocks)
{
    struct arena a = {0};
    enum { N = 30000 };
    char **ptrs = malloc(N * sizeof(char *));
    ck_assert_ptr_nonnull(ptrs);
    for (size_t i = 0; i < N; i++) {
        char tmp[32];
        snprintf(tmp, sizeof(tmp), "string number %zu", i);
        ptrs[i] = arena_strdup(&a, tmp);
        ck_assert_ptr_nonnull(ptrs[i]);
    }
    ck_assert_uint_gt(a.total, 64 * 1024); /* more than one block */
    for (size_t i = 0; i < N; i++) {
        char tmp[32];
        snprintf(tmp, sizeof(tmp), "string number %zu", i);
        ck_assert_str_eq(ptrs[i], tmp);
    }
    free(ptrs);
    arena_done(&a);
}
END_TEST

START_TEST(arena_big_allocations)
{
    struct arena a = {0};
    /* a big first allocation */
    size_t big = 100 * 1024;
    unsigned char *p = arena_alloc(&a, big);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < big; i += 997) {
        ck_assert_int_eq(p[i], 0);
    }
    memset(p, 1, big);
    char *s = arena_strdup(&a, "small");
    ck_assert_str_eq(s, "small");

    /* a big request that does not fit in the current block gets a block of
     * its own, and small ones keep filling the current block */
    char *s2 = arena_strdup(&a, "before");
    unsigned char *filler = arena_alloc(&a, 50000);
    ck_assert_ptr_eq(filler, (unsigned char *)s2 + 8);
    size_t used = a.used;
    size_t total = a.total;
    unsigned char *q = arena_alloc(&a, 20000);
    ck_assert_ptr_nonnull(q);
    memset(q, 2, 20000);
    ck_assert_uint_eq(a.used, used); /* the head block was not used */
    ck_assert_uint_eq(a.total, total + 20000);
    char *s3 = arena_strdup(&a, "after");
    ck_assert_ptr_eq(s3, (char *)filler + 50000); /* continues in the same block */
    ck_assert_str_eq(s2, "before");
    ck_assert_str_eq(s3, "after");
    ck_assert_int_eq(p[big - 1], 1);
    ck_assert_int_eq(q[19999], 2);

    /* several big ones */
    for (int i = 0; i < 5; i++) {
        unsigned char *r = arena_alloc(&a, 70000 + (size_t)i);
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(r[0], 0);
        ck_assert_int_eq(r[69999], 0);
        memset(r, 3, 70000);
    }
    ck_assert_str_eq(s3, "after");

    /* arena_strndup/memdup of a large string */
    char *large = malloc(50000);
    ck_assert_ptr_nonnull(large);
    memset(large, 'L', 50000);
    char *ls = arena_strndup(&a, large, 49999);
    ck_assert_uint_eq(strlen(ls), 49999);
    free(large);
    arena_done(&a);
}
END_TEST

/* BUG: the size is rounded up to a multiple of 8 without an overflow check:
 * for SIZE_MAX - 6 .. SIZE_MAX, (size + 7) & ~7 wraps to 0, so
 * arena_alloc(a, SIZE_MAX) returns a valid-looking pointer to 0 usable bytes
 * instead of NULL. (For SIZE_MAX - 22 .. SIZE_MAX - 7, sizeof(block) + size
 * wraps in malloc's argument instead, and the following memset writes far
 * past a 0- or 8-byte block; not exercised here because it corrupts the
 * heap.) */
START_TEST(arena_huge_request)
{
    struct arena a = {0};
    void *p = arena_alloc(&a, SIZE_MAX);
    arena_done(&a); /* before asserting, so a failure leaks nothing */
    ck_assert_msg(p == NULL, "arena_alloc(SIZE_MAX) returned %p, not NULL", p);
}
END_TEST

/* ---- time ---------------------------------------------------------------- */

static const struct {
    usec_t t;
    const char *want;
} rfc3339_cases[] = {
    {0, "1970-01-01T00:00:00.000Z"},
    {999, "1970-01-01T00:00:00.000Z"}, /* truncated, not rounded */
    {1000, "1970-01-01T00:00:00.001Z"},
    {999999, "1970-01-01T00:00:00.999Z"},
    {1000000, "1970-01-01T00:00:01.000Z"},
    {UINT64_C(1700000000123456), "2023-11-14T22:13:20.123Z"},
    {UINT64_C(1709208000000000), "2024-02-29T12:00:00.000Z"},
    {UINT64_C(951825600000000), "2000-02-29T12:00:00.000Z"},
    {UINT64_C(946684799999000), "1999-12-31T23:59:59.999Z"},
    {UINT64_C(946684800000000), "2000-01-01T00:00:00.000Z"},
    {UINT64_C(2147483648000000), "2038-01-19T03:14:08.000Z"},
    {UINT64_C(4102444800000000), "2100-01-01T00:00:00.000Z"},
    {UINT64_C(253402300799999000), "9999-12-31T23:59:59.999Z"},
};

START_TEST(time_rfc3339)
{
    char out[32];
    memset(out, 'X', sizeof(out));
    time_format_rfc3339_ms(rfc3339_cases[_i].t, out);
    ck_assert_str_eq(out, rfc3339_cases[_i].want);
    ck_assert_uint_eq(strlen(out), 24);
}
END_TEST

START_TEST(time_rfc3339_extremes)
{
    /* far-future values never overflow the 32-byte buffer */
    static const usec_t t[] = {UINT64_C(253402300800000000), UINT64_MAX, UINT64_MAX / 2,
                               (usec_t)INT64_MAX};
    for (size_t i = 0; i < N_ELEMS(t); i++) {
        char out[32];
        memset(out, 'X', sizeof(out));
        time_format_rfc3339_ms(t[i], out);
        ck_assert_ptr_nonnull(memchr(out, '\0', sizeof(out)));
        ck_assert_uint_eq(strlen(out), 24);
        ck_assert_int_eq(out[23], 'Z');
    }
}
END_TEST

START_TEST(time_helpers)
{
    ck_assert_int_eq(usec_to_ms_long(0), 0);
    ck_assert_int_eq(usec_to_ms_long(1), 1); /* rounds up: never 0 for a positive timeout */
    ck_assert_int_eq(usec_to_ms_long(999), 1);
    ck_assert_int_eq(usec_to_ms_long(1000), 1);
    ck_assert_int_eq(usec_to_ms_long(1001), 2);
    ck_assert_int_eq(usec_to_ms_long(30 * USEC_PER_SEC), 30000);
    ck_assert_int_eq(usec_to_ms_long(UINT64_C(0x7fffffff) * 1000), 0x7fffffff);
    ck_assert_int_eq(usec_to_ms_long(UINT64_C(0x80000000) * 1000), 0x7fffffff);
    ck_assert(usec_to_ev(0) == 0.0);
    ck_assert(usec_to_ev(1500000) == 1.5);
    ck_assert(usec_to_ev(250) == 0.00025);

    usec_t a = now_usec(CLOCK_MONOTONIC);
    usec_t b = now_usec(CLOCK_MONOTONIC);
    ck_assert_uint_ge(b, a);
    ck_assert_uint_gt(now_usec(CLOCK_REALTIME), UINT64_C(1600000000) * USEC_PER_SEC);
}
END_TEST

/* BUG (latent: timeouts are capped at one day by the config loader):
 * usec_to_ms_long() rounds up with u + 999 before clamping, which wraps for
 * u > UINT64_MAX - 999, so USEC_INFINITY becomes 0 ms instead of the clamp
 * value 0x7fffffff. For CURLOPT_TIMEOUT_MS 0 means "no timeout" and for
 * CURLOPT_CONNECTTIMEOUT_MS the 300 s default. */
START_TEST(time_ms_long_infinity)
{
    ck_assert_int_eq(usec_to_ms_long(USEC_INFINITY), 0x7fffffff);
    ck_assert_int_eq(usec_to_ms_long(USEC_INFINITY - 500), 0x7fffffff);
}
END_TEST

static Suite *util_suite(void)
{
    Suite *s = suite_create("util");
    TCase *tc;

    tc = tcase_create("buf");
    tcase_add_test(tc, buf_basic);
    tcase_add_test(tc, buf_growth);
    tcase_add_test(tc, buf_reserve_semantics);
    tcase_add_test(tc, buf_cap);
    tcase_add_test(tc, buf_printf_growth);
    tcase_add_test(tc, buf_consume_reset_shrink);
    tcase_add_test(tc, buf_steal_test);
    suite_add_tcase(s, tc);

    tc = tcase_create("strmap");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, strmap_hash_fnv1a);
    tcase_add_test(tc, strmap_basic);
    tcase_add_test(tc, strmap_many);
    suite_add_tcase(s, tc);

    tc = tcase_create("arena");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, arena_basic);
    tcase_add_test(tc, arena_alignment_and_zeroing);
    tcase_add_test(tc, arena_many_blocks);
    tcase_add_test(tc, arena_big_allocations);
    tcase_add_test(tc, arena_huge_request);
    suite_add_tcase(s, tc);

    tc = tcase_create("time");
    tcase_add_loop_test(tc, time_rfc3339, 0, N_ELEMS(rfc3339_cases));
    tcase_add_test(tc, time_rfc3339_extremes);
    tcase_add_test(tc, time_helpers);
    tcase_add_test(tc, time_ms_long_infinity);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(util_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
