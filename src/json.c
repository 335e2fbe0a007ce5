/* json.c - strict single-pass JSON validator/minifier and string escaper.
 *
 * The validator is iterative (an explicit stack of container kinds), so a
 * 100 000-deep "[[[[" costs nothing but the depth check. Grammar is RFC 8259
 * exactly; strings must be valid UTF-8 and escapes must not produce lone
 * surrogates (cJSON rejects those too, so a later cJSON parse of validated
 * text cannot fail for syntax).
 */
#include "json.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t json_utf8_len(const unsigned char *s, size_t n)
{
    if (n == 0) {
        return 0;
    }
    unsigned char c = s[0];
    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        return (n >= 2 && (s[1] & 0xc0) == 0x80) ? 2 : 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) {
            return 0;
        }
        if (c == 0xe0 && s[1] < 0xa0) {
            return 0; /* overlong */
        }
        if (c == 0xed && s[1] >= 0xa0) {
            return 0; /* UTF-16 surrogate */
        }
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80) {
            return 0;
        }
        if (c == 0xf0 && s[1] < 0x90) {
            return 0; /* overlong */
        }
        if (c == 0xf4 && s[1] >= 0x90) {
            return 0; /* above U+10FFFF */
        }
        return 4;
    }
    return 0;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c |= 0x20;
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *ret)
{
    if (end - p < 4) {
        return -1;
    }
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) {
            return -1;
        }
        v = (v << 4) | (unsigned)h;
    }
    *ret = v;
    return 0;
}

#define IS_WS(c) ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')

struct jv {
    const unsigned char *p;
    const unsigned char *end;
    unsigned char *o;
    const char *msg;
};

/* Copies a string token starting at the opening quote. */
static int jv_string(struct jv *v)
{
    const unsigned char *p = v->p + 1;
    unsigned char *o = v->o;
    *o++ = '"';
    for (;;) {
        /* Fast path: plain printable ASCII. */
        const unsigned char *start = p;
        while (p < v->end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
            p++;
        }
        memcpy(o, start, (size_t)(p - start));
        o += p - start;
        if (p >= v->end) {
            v->msg = "unterminated string";
            v->p = p;
            return -1;
        }
        unsigned char c = *p;
        if (c == '"') {
            *o++ = '"';
            v->p = p + 1;
            v->o = o;
            return 0;
        }
        if (c < 0x20) {
            v->msg = "control character in string (must be escaped)";
            v->p = p;
            return -1;
        }
        if (c == '\\') {
            if (p + 1 >= v->end) {
                v->msg = "unterminated string";
                v->p = p;
                return -1;
            }
            unsigned char e = p[1];
            if (e == 'u') {
                unsigned cp;
                if (hex4(p + 2, v->end, &cp) < 0) {
                    v->msg = "invalid \\u escape";
                    v->p = p;
                    return -1;
                }
                size_t n = 6;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    unsigned lo;
                    if (v->end - p < 12 || p[6] != '\\' || p[7] != 'u' ||
                        hex4(p + 8, v->end, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff) {
                        v->msg = "lone UTF-16 surrogate in \\u escape";
                        v->p = p;
                        return -1;
                    }
                    n = 12;
                } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                    v->msg = "lone UTF-16 surrogate in \\u escape";
                    v->p = p;
                    return -1;
                }
                memcpy(o, p, n);
                o += n;
                p += n;
                continue;
            }
            if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                e == 'r' || e == 't') {
                *o++ = '\\';
                *o++ = e;
                p += 2;
                continue;
            }
            v->msg = "invalid escape in string";
            v->p = p;
            return -1;
        }
        size_t n = json_utf8_len(p, (size_t)(v->end - p));
        if (n == 0) {
            v->msg = "invalid UTF-8 in string";
            v->p = p;
            return -1;
        }
        memcpy(o, p, n);
        o += n;
        p += n;
    }
}

static int jv_number(struct jv *v)
{
    const unsigned char *p = v->p;
    const unsigned char *start = p;
    if (*p == '-') {
        p++;
    }
    if (p >= v->end) {
        goto bad;
    }
    if (*p == '0') {
        p++;
        if (p < v->end && *p >= '0' && *p <= '9') {
            v->msg = "leading zero in number";
            v->p = p;
            return -1;
        }
    } else if (*p >= '1' && *p <= '9') {
        while (p < v->end && *p >= '0' && *p <= '9') {
            p++;
        }
    } else {
        goto bad;
    }
    if (p < v->end && *p == '.') {
        p++;
        if (p >= v->end || *p < '0' || *p > '9') {
            goto bad;
        }
        while (p < v->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }
    if (p < v->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < v->end && (*p == '+' || *p == '-')) {
            p++;
        }
        if (p >= v->end || *p < '0' || *p > '9') {
            goto bad;
        }
        while (p < v->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }
    memcpy(v->o, start, (size_t)(p - start));
    v->o += p - start;
    v->p = p;
    return 0;
bad:
    v->msg = "invalid number";
    v->p = p;
    return -1;
}

static int jv_literal(struct jv *v, const char *lit, size_t n)
{
    if ((size_t)(v->end - v->p) < n || memcmp(v->p, lit, n) != 0) {
        v->msg = "invalid literal (expected true, false or null)";
        return -1;
    }
    memcpy(v->o, lit, n);
    v->o += n;
    v->p += n;
    return 0;
}

static void jv_ws(struct jv *v)
{
    while (v->p < v->end && IS_WS(*v->p)) {
        v->p++;
    }
}

int json_minify(const char *in, size_t len, unsigned max_depth, struct buf *out,
                struct json_error *err)
{
    /* The minified form is never longer than the input. */
    int r = buf_reserve(out, len);
    if (r < 0) {
        return r;
    }
    unsigned char stackbuf[64];
    unsigned char *stack = stackbuf;
    if (max_depth > sizeof(stackbuf)) {
        stack = NULL; /* allocated on first need below */
    }
    unsigned depth = 0;
    struct jv v = {
        .p = (const unsigned char *)in,
        .end = (const unsigned char *)in + len,
        .o = (unsigned char *)out->data + out->len,
    };
    unsigned char *ostart = v.o;
    int rc = -EINVAL;

    if (len >= 3 && memcmp(in, "\xef\xbb\xbf", 3) == 0) {
        v.p += 3;
    }
    jv_ws(&v);
    if (v.p >= v.end) {
        v.msg = len ? "no JSON value (only whitespace)" : "empty body";
        goto fail;
    }

value:
    jv_ws(&v);
    if (v.p >= v.end) {
        v.msg = "unexpected end of input (expected a value)";
        goto fail;
    }
    switch (*v.p) {
    case '{':
    case '[':
        if (depth >= max_depth) {
            v.msg = "nesting too deep";
            goto fail;
        }
        if (!stack) {
            stack = malloc(max_depth);
            if (!stack) {
                rc = -ENOMEM;
                goto fail;
            }
        }
        stack[depth++] = *v.p;
        *v.o++ = *v.p++;
        jv_ws(&v);
        if (v.p < v.end && (*v.p == '}' || *v.p == ']') && *v.p == (stack[depth - 1] == '{' ? '}' : ']')) {
            depth--;
            *v.o++ = *v.p++;
            goto after;
        }
        if (stack[depth - 1] == '{') {
            goto key;
        }
        goto value;
    case '"':
        if (jv_string(&v) < 0) {
            goto fail;
        }
        goto after;
    case 't':
        if (jv_literal(&v, "true", 4) < 0) {
            goto fail;
        }
        goto after;
    case 'f':
        if (jv_literal(&v, "false", 5) < 0) {
            goto fail;
        }
        goto after;
    case 'n':
        if (jv_literal(&v, "null", 4) < 0) {
            goto fail;
        }
        goto after;
    default:
        if (*v.p == '-' || (*v.p >= '0' && *v.p <= '9')) {
            if (jv_number(&v) < 0) {
                goto fail;
            }
            goto after;
        }
        v.msg = *v.p == '\0' ? "NUL byte in input" : "unexpected character (expected a value)";
        goto fail;
    }

key:
    jv_ws(&v);
    if (v.p >= v.end || *v.p != '"') {
        v.msg = v.p >= v.end ? "unexpected end of input (expected a key)"
                             : "expected a string key";
        goto fail;
    }
    if (jv_string(&v) < 0) {
        goto fail;
    }
    jv_ws(&v);
    if (v.p >= v.end || *v.p != ':') {
        v.msg = "expected ':' after key";
        goto fail;
    }
    *v.o++ = ':';
    v.p++;
    goto value;

after:
    jv_ws(&v);
    if (depth == 0) {
        if (v.p != v.end) {
            v.msg = "trailing data after the JSON value";
            goto fail;
        }
        out->len += (size_t)(v.o - ostart);
        out->data[out->len] = '\0';
        if (stack != stackbuf) {
            free(stack);
        }
        return 0;
    }
    if (v.p >= v.end) {
        v.msg = stack[depth - 1] == '{' ? "unexpected end of input (expected ',' or '}')"
                                        : "unexpected end of input (expected ',' or ']')";
        goto fail;
    }
    if (*v.p == ',') {
        *v.o++ = ',';
        v.p++;
        if (stack[depth - 1] == '{') {
            goto key;
        }
        goto value;
    }
    if (*v.p == (stack[depth - 1] == '{' ? '}' : ']')) {
        depth--;
        *v.o++ = *v.p++;
        goto after;
    }
    v.msg = stack[depth - 1] == '{' ? "expected ',' or '}'" : "expected ',' or ']'";

fail:
    if (stack != stackbuf) {
        free(stack);
    }
    if (out->data) {
        out->data[out->len] = '\0';
    }
    if (err) {
        err->offset = (size_t)(v.p - (const unsigned char *)in);
        err->msg = v.msg ? v.msg : "out of memory";
    }
    return rc;
}

int json_escape(struct buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case: every byte becomes \u00XX (6) or U+FFFD (3 bytes). */
    if (len > (SIZE_MAX - 2) / 6) {
        return -ENOMEM;
    }
    int r = buf_reserve(out, len * 6 + 2);
    if (r < 0) {
        return r;
    }
    char *o = out->data + out->len;
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    *o++ = '"';
    while (p < end) {
        unsigned char c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)c;
            p++;
            continue;
        }
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
            p++;
            continue;
        }
        if (c < 0x20) {
            *o++ = '\\';
            switch (c) {
            case '\n':
                *o++ = 'n';
                break;
            case '\r':
                *o++ = 'r';
                break;
            case '\t':
                *o++ = 't';
                break;
            case '\b':
                *o++ = 'b';
                break;
            case '\f':
                *o++ = 'f';
                break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            }
            p++;
            continue;
        }
        size_t n = json_utf8_len(p, (size_t)(end - p));
        if (n == 0) {
            memcpy(o, "\xef\xbf\xbd", 3); /* U+FFFD */
            o += 3;
            p++;
            continue;
        }
        memcpy(o, p, n);
        o += n;
        p += n;
    }
    *o++ = '"';
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
    return 0;
}

void json_line_col(const char *text, size_t len, size_t offset, unsigned *ret_line,
                   unsigned *ret_col)
{
    unsigned line = 1;
    size_t line_start = 0;
    if (offset > len) {
        offset = len;
    }
    for (size_t i = 0; i < offset; i++) {
        if (text[i] == '\n') {
            line++;
            line_start = i + 1;
        }
    }
    *ret_line = line;
    *ret_col = (unsigned)(offset - line_start + 1);
}

bool json_array_next(const char *t, size_t len, size_t *pos, size_t *ret_off, size_t *ret_len)
{
    size_t i = *pos ? *pos : 1; /* after '[' or after the previous element */
    if (i >= len || t[i] == ']') {
        return false;
    }
    if (t[i] == ',') {
        i++;
    }
    size_t start = i;
    int depth = 0;
    bool in_str = false;
    for (; i < len; i++) {
        char c = t[i];
        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = false;
            }
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            depth++;
        } else if (c == ']' || c == '}') {
            if (depth == 0) {
                break;
            }
            depth--;
        } else if (c == ',' && depth == 0) {
            break;
        }
    }
    if (i == start) {
        return false;
    }
    *ret_off = start;
    *ret_len = i - start;
    *pos = i;
    return true;
}

int json_unescape(const char *t, size_t len, struct buf *out)
{
    return json_unescape_flags(t, len, out, 0);
}

int json_unescape_flags(const char *t, size_t len, struct buf *out, unsigned flags)
{
    if (len < 2 || t[0] != '"' || t[len - 1] != '"') {
        return -EINVAL;
    }
    for (size_t i = 1; i + 1 < len; i++) {
        char c = t[i];
        int r;
        if (c != '\\') {
            r = buf_putc(out, c);
        } else {
            c = t[++i];
            switch (c) {
            case 'b': r = buf_putc(out, '\b'); break;
            case 'f': r = buf_putc(out, '\f'); break;
            case 'n': r = buf_putc(out, '\n'); break;
            case 'r': r = buf_putc(out, '\r'); break;
            case 't': r = buf_putc(out, '\t'); break;
            case 'u': {
                unsigned cp;
                if (hex4((const unsigned char *)t + i + 1, (const unsigned char *)t + len, &cp) < 0) {
                    return -EINVAL;
                }
                i += 4;
                if (cp >= 0xd800 && cp <= 0xdbff && i + 6 < len && t[i + 1] == '\\' &&
                    t[i + 2] == 'u') {
                    unsigned lo;
                    if (hex4((const unsigned char *)t + i + 3, (const unsigned char *)t + len,
                             &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        i += 6;
                    }
                }
                if (cp == 0 && !(flags & JSON_UNESCAPE_NUL)) {
                    return -EINVAL;
                }
                char u[4];
                size_t n;
                if (cp < 0x80) {
                    u[0] = (char)cp;
                    n = 1;
                } else if (cp < 0x800) {
                    u[0] = (char)(0xc0 | (cp >> 6));
                    u[1] = (char)(0x80 | (cp & 0x3f));
                    n = 2;
                } else if (cp < 0x10000) {
                    u[0] = (char)(0xe0 | (cp >> 12));
                    u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    u[2] = (char)(0x80 | (cp & 0x3f));
                    n = 3;
                } else {
                    u[0] = (char)(0xf0 | (cp >> 18));
                    u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
                    u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    u[3] = (char)(0x80 | (cp & 0x3f));
                    n = 4;
                }
                r = buf_append(out, u, n);
                break;
            }
            default: r = buf_putc(out, c); break; /* " \ / */
            }
        }
        if (r < 0) {
            return r;
        }
    }
    return out->data ? 0 : buf_puts(out, "");
}
