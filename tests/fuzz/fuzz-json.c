/* fuzz-json.c - the strict JSON validator/minifier and the string helpers
 * (src/json.h): json_minify(), json_array_next(), json_escape(),
 * json_unescape_flags(), json_line_col().
 *
 * Input: any bytes, used three ways: as a JSON document, as a string to
 * escape, and (when it is one) as a JSON string literal to unescape.
 * Properties:
 *  - json_minify() returns 0 or -EINVAL; on -EINVAL the error offset is
 *    within the input, the message is set and the output is unchanged;
 *  - minified text is no longer than the input, is accepted again and
 *    minifies to itself; it has no whitespace outside strings;
 *  - a valid document is accepted by cJSON too (json.h: "a later cJSON
 *    parse of validated text cannot fail for syntax");
 *  - json_array_next() on a minified array yields valid minified elements
 *    that, joined with ',', rebuild the array;
 *  - json_escape() always yields one valid JSON string; unescaping it
 *    (JSON_UNESCAPE_NUL) gives back the input when the input is valid UTF-8;
 *  - json_unescape_flags() of any valid string literal succeeds with
 *    JSON_UNESCAPE_NUL, and without it fails only for a "\u0000".
 */
#include <cJSON.h>
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "json.h"

static bool valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t l = json_utf8_len(s + i, n - i);
        if (l == 0) {
            return false;
        }
        i += l;
    }
    return true;
}

static void check_minified(const char *t, size_t len)
{
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = t[i];
        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = false;
            }
            continue;
        }
        FUZZ_CHECK(c != ' ' && c != '\t' && c != '\n' && c != '\r');
        in_str = c == '"';
    }
    FUZZ_CHECK(!in_str);
}

static void check_array(const char *t, size_t len)
{
    struct buf rebuilt = {0};
    struct buf el = {0};
    struct json_error je;
    size_t pos = 0, off, n, count = 0;
    buf_putc(&rebuilt, '[');
    while (json_array_next(t, len, &pos, &off, &n)) {
        FUZZ_CHECK(off < len && n <= len - off && n > 0);
        buf_reset(&el);
        FUZZ_CHECK(json_minify(t + off, n, JSON_MAX_DEPTH, &el, &je) == 0);
        FUZZ_CHECK(el.len == n && memcmp(el.data, t + off, n) == 0);
        if (count++) {
            buf_putc(&rebuilt, ',');
        }
        buf_append(&rebuilt, t + off, n);
        FUZZ_CHECK(count <= len);
    }
    buf_putc(&rebuilt, ']');
    FUZZ_CHECK(rebuilt.len == len && memcmp(rebuilt.data, t, len) == 0);
    buf_done(&rebuilt);
    buf_done(&el);
}

static void check_unescape(const char *t, size_t len)
{
    struct buf out = {0};
    int r = json_unescape_flags(t, len, &out, JSON_UNESCAPE_NUL);
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(out.data && out.data[out.len] == '\0');
    FUZZ_CHECK(valid_utf8((const uint8_t *)out.data, out.len));
    /* escaping the value gives an equivalent literal */
    struct buf esc = {0}, back = {0};
    FUZZ_CHECK(json_escape(&esc, out.data, out.len) == 0);
    FUZZ_CHECK(json_unescape_flags(esc.data, esc.len, &back, JSON_UNESCAPE_NUL) == 0);
    FUZZ_CHECK(back.len == out.len && memcmp(back.data, out.data, out.len) == 0);
    buf_done(&esc);
    buf_done(&back);

    struct buf plain = {0};
    r = json_unescape_flags(t, len, &plain, 0);
    bool has_nul = memchr(out.data, '\0', out.len) != NULL;
    FUZZ_CHECK(has_nul ? r == -EINVAL : r == 0);
    if (r == 0) {
        FUZZ_CHECK(plain.len == out.len && memcmp(plain.data, out.data, out.len) == 0);
    }
    buf_done(&plain);
    buf_done(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 262144) {
        return 0;
    }
    const char *in = (const char *)data;
    struct buf out = {0};
    struct json_error je = {0};

    /* a prefix that must survive a failed call */
    buf_puts(&out, "prefix");
    unsigned depth = size && data[0] == ' ' ? 3 : JSON_MAX_DEPTH;
    int r = json_minify(in, size, depth, &out, &je);
    FUZZ_CHECK(r == 0 || r == -EINVAL);
    FUZZ_CHECK(out.len >= 6 && memcmp(out.data, "prefix", 6) == 0);
    if (r < 0) {
        FUZZ_CHECK(out.len == 6 && out.data[6] == '\0');
        FUZZ_CHECK(je.offset <= size && je.msg && *je.msg);
        unsigned line = 0, col = 0;
        json_line_col(in, size, je.offset, &line, &col);
        FUZZ_CHECK(line >= 1 && col >= 1 && col <= je.offset + 1);
    } else {
        const char *m = out.data + 6;
        size_t mlen = out.len - 6;
        FUZZ_CHECK(mlen > 0 && mlen <= size && m[mlen] == '\0');
        check_minified(m, mlen);
        struct buf again = {0};
        FUZZ_CHECK(json_minify(m, mlen, depth, &again, &je) == 0);
        FUZZ_CHECK(again.len == mlen && memcmp(again.data, m, mlen) == 0);
        buf_done(&again);
        cJSON *root = cJSON_ParseWithLength(m, mlen);
        FUZZ_CHECK(root != NULL);
        cJSON_Delete(root);
        if (m[0] == '[') {
            check_array(m, mlen);
        }
        if (m[0] == '"') {
            check_unescape(m, mlen);
        }
    }
    buf_done(&out);

    /* any bytes escape to a valid string literal */
    struct buf esc = {0};
    FUZZ_CHECK(json_escape(&esc, in, size) == 0);
    struct buf v = {0};
    FUZZ_CHECK(json_minify(esc.data, esc.len, 1, &v, &je) == 0);
    FUZZ_CHECK(v.len == esc.len);
    struct buf back = {0};
    FUZZ_CHECK(json_unescape_flags(esc.data, esc.len, &back, JSON_UNESCAPE_NUL) == 0);
    if (valid_utf8(data, size)) {
        FUZZ_CHECK(back.len == size && memcmp(back.data, data, size) == 0);
    }
    buf_done(&esc);
    buf_done(&v);
    buf_done(&back);
    return 0;
}
