/* jptr.c - JSON Pointer parsing and evaluation on minified JSON. */
#include "jptr.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

struct jptr *jptr_free(struct jptr *p)
{
    if (!p) {
        return NULL;
    }
    for (size_t i = 0; i < p->n; i++) {
        free(p->tokens[i]);
    }
    free(p->tokens);
    free(p->src);
    free(p);
    return NULL;
}

int jptr_parse(const char *s, struct jptr **ret, const char **ret_msg)
{
    if (*s && *s != '/') {
        *ret_msg = "a JSON Pointer must be empty or start with '/'";
        return -EINVAL;
    }
    struct jptr *p = calloc(1, sizeof(*p));
    if (!p) {
        return -ENOMEM;
    }
    p->src = strdup(s);
    if (!p->src) {
        jptr_free(p);
        return -ENOMEM;
    }
    size_t n = 0;
    for (const char *c = s; *c; c++) {
        n += *c == '/';
    }
    if (n) {
        p->tokens = calloc(n, sizeof(char *));
        if (!p->tokens) {
            jptr_free(p);
            return -ENOMEM;
        }
    }
    const char *c = s;
    while (*c == '/') {
        c++;
        const char *e = strchr(c, '/');
        size_t l = e ? (size_t)(e - c) : strlen(c);
        char *t = malloc(l + 1);
        if (!t) {
            jptr_free(p);
            return -ENOMEM;
        }
        size_t o = 0;
        for (size_t i = 0; i < l; i++) {
            if (c[i] == '~') {
                if (i + 1 < l && (c[i + 1] == '0' || c[i + 1] == '1')) {
                    t[o++] = c[i + 1] == '0' ? '~' : '/';
                    i++;
                } else {
                    free(t);
                    jptr_free(p);
                    *ret_msg = "'~' in a JSON Pointer must be followed by 0 or 1 (~0 is '~', ~1 is '/')";
                    return -EINVAL;
                }
            } else {
                t[o++] = c[i];
            }
        }
        t[o] = '\0';
        p->tokens[p->n++] = t;
        c += l;
    }
    *ret = p;
    return 0;
}

/* Returns the end of the string token starting at the quote at s. */
static const char *skip_string(const char *s, const char *end)
{
    s++;
    while (s < end) {
        if (*s == '\\') {
            s += 2;
        } else if (*s == '"') {
            return s + 1;
        } else {
            s++;
        }
    }
    return end;
}

/* Returns the end of the value starting at s (minified, valid JSON). */
static const char *skip_value(const char *s, const char *end)
{
    if (*s == '"') {
        return skip_string(s, end);
    }
    if (*s == '{' || *s == '[') {
        size_t depth = 0;
        while (s < end) {
            if (*s == '"') {
                s = skip_string(s, end);
                continue;
            }
            if (*s == '{' || *s == '[') {
                depth++;
            } else if (*s == '}' || *s == ']') {
                if (--depth == 0) {
                    return s + 1;
                }
            }
            s++;
        }
        return end;
    }
    while (s < end && *s != ',' && *s != '}' && *s != ']') {
        s++;
    }
    return s;
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c |= 0x20;
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : 0;
}

static unsigned hex4(const char *p)
{
    return (unsigned)(hexv(p[0]) << 12 | hexv(p[1]) << 8 | hexv(p[2]) << 4 | hexv(p[3]));
}

/* Compares the JSON string token at s (escaped) with the plain token t. */
static bool key_equals(const char *s, const char *end, const char *t)
{
    s++;
    while (s < end && *s != '"') {
        char tmp[4];
        size_t n;
        if (*s == '\\') {
            char e = s[1];
            s += 2;
            switch (e) {
            case 'b':
                tmp[0] = '\b';
                n = 1;
                break;
            case 'f':
                tmp[0] = '\f';
                n = 1;
                break;
            case 'n':
                tmp[0] = '\n';
                n = 1;
                break;
            case 'r':
                tmp[0] = '\r';
                n = 1;
                break;
            case 't':
                tmp[0] = '\t';
                n = 1;
                break;
            case 'u': {
                uint32_t cp = hex4(s);
                s += 4;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    uint32_t lo = hex4(s + 2);
                    s += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                if (cp < 0x80) {
                    tmp[0] = (char)cp;
                    n = 1;
                } else if (cp < 0x800) {
                    tmp[0] = (char)(0xc0 | (cp >> 6));
                    tmp[1] = (char)(0x80 | (cp & 0x3f));
                    n = 2;
                } else if (cp < 0x10000) {
                    tmp[0] = (char)(0xe0 | (cp >> 12));
                    tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    tmp[2] = (char)(0x80 | (cp & 0x3f));
                    n = 3;
                } else {
                    tmp[0] = (char)(0xf0 | (cp >> 18));
                    tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
                    tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    tmp[3] = (char)(0x80 | (cp & 0x3f));
                    n = 4;
                }
                break;
            }
            default: /* " \ / */
                tmp[0] = e;
                n = 1;
            }
            /* A decoded NUL can never match a C-string token. */
            for (size_t i = 0; i < n; i++) {
                if (*t == '\0' || *t != tmp[i]) {
                    return false;
                }
                t++;
            }
            continue;
        }
        if (*t == '\0' || *t != *s) {
            return false;
        }
        t++;
        s++;
    }
    return *t == '\0';
}

/* RFC 6901 array index: "0" or [1-9][0-9]*; "-" (past the end) never
 * resolves when reading. */
static bool parse_index(const char *t, size_t *ret)
{
    if (!*t || (t[0] == '0' && t[1]) ) {
        return false;
    }
    size_t v = 0;
    for (; *t; t++) {
        if (*t < '0' || *t > '9' || v > (SIZE_MAX - 9) / 10) {
            return false;
        }
        v = v * 10 + (size_t)(*t - '0');
    }
    *ret = v;
    return true;
}

int jptr_eval(const struct jptr *p, const char *json, size_t len, size_t *ret_off,
              size_t *ret_len, size_t *ret_failed)
{
    const char *s = json, *end = json + len;
    const char *vend = skip_value(s, end);
    for (size_t i = 0; i < p->n; i++) {
        const char *t = p->tokens[i];
        const char *found = NULL;
        if (*s == '{') {
            const char *c = s + 1;
            while (c < end && *c != '}') {
                const char *k = c;
                const char *kend = skip_string(c, end);
                const char *v = kend + 1; /* skip ':' */
                const char *ve = skip_value(v, end);
                if (key_equals(k, kend, t)) {
                    found = v;
                    vend = ve;
                    break;
                }
                c = ve;
                if (c < end && *c == ',') {
                    c++;
                }
            }
        } else if (*s == '[') {
            size_t idx;
            if (parse_index(t, &idx)) {
                const char *c = s + 1;
                size_t k = 0;
                while (c < end && *c != ']') {
                    const char *ve = skip_value(c, end);
                    if (k == idx) {
                        found = c;
                        vend = ve;
                        break;
                    }
                    k++;
                    c = ve;
                    if (c < end && *c == ',') {
                        c++;
                    }
                }
            }
        }
        if (!found) {
            if (ret_failed) {
                *ret_failed = i;
            }
            return -ENOENT;
        }
        s = found;
    }
    *ret_off = (size_t)(s - json);
    *ret_len = (size_t)(vend - s);
    return 0;
}
