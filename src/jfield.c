/* jfield.c - journald field names from arbitrary bytes (see jfield.h). */
#include "jfield.h"

#include <stdio.h>
#include <string.h>

static bool jf_upper_or_digit(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool jfield_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > JFIELD_NAME_MAX) {
        return false;
    }
    unsigned char c0 = (unsigned char)name[0];
    if (c0 == '_' || (c0 >= '0' && c0 <= '9')) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!jf_upper_or_digit(c) && c != '_') {
            return false;
        }
    }
    return true;
}

uint32_t jfield_fnv1a(uint32_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT32_C(16777619);
    }
    return h;
}

/* The name being built: the first JFIELD_NAME_MAX characters are kept, the
 * length it would have is counted. */
struct jf_out {
    char *out;
    size_t total;
    bool in_run; /* the last input byte was one that maps to '_' */
};

static void jf_put(struct jf_out *o, char c)
{
    if (o->total == 0 && (c == '_' || (c >= '0' && c <= '9'))) {
        jf_put(o, 'X'); /* a name must start with a letter */
    }
    if (o->total < JFIELD_NAME_MAX) {
        o->out[o->total] = c;
    }
    o->total++;
}

static void jf_feed(struct jf_out *o, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'a' && c <= 'z') {
            jf_put(o, (char)(c - 'a' + 'A'));
            o->in_run = false;
        } else if (jf_upper_or_digit(c) || c == '_') {
            jf_put(o, (char)c);
            o->in_run = false;
        } else {
            if (!o->in_run) {
                jf_put(o, '_');
            }
            o->in_run = true;
        }
    }
}

size_t jfield_make(const char *prefix, const char *name, size_t len,
                   char out[JFIELD_NAME_MAX + 1])
{
    struct jf_out o = {.out = out};
    size_t plen = prefix ? strlen(prefix) : 0;
    if (!name) {
        len = 0;
    }
    jf_feed(&o, prefix, plen);
    jf_feed(&o, name, len);
    if (o.total == 0) {
        jf_put(&o, 'X');
    }
    if (o.total <= JFIELD_NAME_MAX) {
        out[o.total] = '\0';
        return o.total;
    }
    uint32_t h = jfield_fnv1a(JFIELD_FNV_INIT, prefix, plen);
    h = jfield_fnv1a(h, name, len);
    static const char hex[] = "0123456789ABCDEF";
    char *p = out + JFIELD_KEEP;
    *p++ = '_';
    for (int shift = 28; shift >= 0; shift -= 4) {
        *p++ = hex[(h >> shift) & 0xf];
    }
    *p = '\0';
    return JFIELD_NAME_MAX;
}

size_t jfield_number(char out[JFIELD_NAME_MAX + 1], size_t len, unsigned n)
{
    char suffix[16];
    int k = snprintf(suffix, sizeof(suffix), "_%u", n);
    size_t slen = k > 0 ? (size_t)k : 0;
    if (len > JFIELD_NAME_MAX - slen) {
        len = JFIELD_NAME_MAX - slen;
    }
    memcpy(out + len, suffix, slen + 1);
    return len + slen;
}
