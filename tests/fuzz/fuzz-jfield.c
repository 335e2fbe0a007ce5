/* fuzz-jfield.c - journald field names: jfield_make(), jfield_number(),
 * jfield_valid() (src/jfield.h).
 *
 * Input: [1 byte: prefix length p][p bytes: prefix][rest: name, any bytes].
 * The prefix is cut at a NUL (it is a C string); the name is not.
 * Properties:
 *  - every name jfield_make() produces satisfies jfield_valid() (journald's
 *    rules) and is 1..64 characters, NUL-terminated at the returned length;
 *  - it is exactly what the rules in jfield.h describe, computed here by a
 *    separate model (upper-case, one '_' per run of other bytes, an 'X' in
 *    front of an empty name or one starting with a digit or '_', 55
 *    characters + '_' + 8 hex digits of FNV-1a for long ones);
 *  - jfield_number() keeps a valid name valid, ends it with "_<n>", keeps
 *    the longest prefix that fits and stays within 64 characters;
 *  - jfield_valid() agrees with a model of the rules on the raw input.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "jfield.h"

static bool model_valid(const uint8_t *s, size_t len)
{
    if (len < 1 || len > 64 || s[0] == '_' || (s[0] >= '0' && s[0] <= '9')) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) {
            return false;
        }
    }
    return true;
}

/* The documented rules, on the concatenation of prefix and name. */
static size_t model_make(const uint8_t *in, size_t len, char *out, size_t outlen)
{
    size_t n = 0;
    bool run = false;
    for (size_t i = 0; i < len && n + 2 < outlen; i++) {
        uint8_t c = in[i];
        if (c >= 'a' && c <= 'z') {
            out[n++] = (char)(c - 'a' + 'A');
            run = false;
        } else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_') {
            out[n++] = (char)c;
            run = false;
        } else if (!run) {
            out[n++] = '_';
            run = true;
        }
    }
    if (n == 0 || out[0] == '_' || (out[0] >= '0' && out[0] <= '9')) {
        memmove(out + 1, out, n);
        out[0] = 'X';
        n++;
    }
    if (n > JFIELD_NAME_MAX) {
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < len; i++) {
            h = (h ^ in[i]) * 16777619u;
        }
        snprintf(out + 55, outlen - 55, "_%08X", (unsigned)h);
        n = 64;
    }
    out[n] = '\0';
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192) {
        return 0;
    }
    size_t plen = data[0];
    if (plen > size - 1) {
        plen = size - 1;
    }
    char *prefix = fuzz_cstr(data + 1, plen);
    const uint8_t *name = data + 1 + plen;
    size_t nlen = size - 1 - plen;
    if (!prefix) {
        return 0;
    }
    size_t pl = strlen(prefix);

    /* jfield_valid on the raw bytes */
    FUZZ_CHECK(jfield_valid((const char *)name, nlen) == model_valid(name, nlen));

    char out[JFIELD_NAME_MAX + 1];
    memset(out, 0x55, sizeof(out));
    size_t n =
        jfield_make(prefix[0] || (data[0] & 1) ? prefix : NULL, (const char *)name, nlen, out);
    FUZZ_CHECK(n >= 1 && n <= JFIELD_NAME_MAX);
    FUZZ_CHECK(out[n] == '\0' && strlen(out) == n);
    FUZZ_CHECK(jfield_valid(out, n));

    /* the model */
    size_t all = pl + nlen;
    uint8_t *cat = malloc(all ? all : 1);
    char *want = malloc(all + 16 > 80 ? all + 16 : 80);
    if (cat && want) {
        memcpy(cat, prefix, pl);
        memcpy(cat + pl, name, nlen);
        size_t wn = model_make(cat, all, want, all + 16 > 80 ? all + 16 : 80);
        if (wn != n || memcmp(want, out, n) != 0) {
            fprintf(stderr, "jfield_make: got \"%s\", the rules give \"%s\"\n", out, want);
            FUZZ_CHECK(!"jfield_make follows its documented rules");
        }
    }
    free(cat);
    free(want);

    /* the n-th variants */
    unsigned variants[3] = {2, 10, 4294967295u};
    if (nlen >= 4) {
        memcpy(&variants[0], name, 4);
        variants[0] = variants[0] < 2 ? variants[0] + 2 : variants[0];
    }
    for (int i = 0; i < 3; i++) {
        char v[JFIELD_NAME_MAX + 1];
        memcpy(v, out, n + 1);
        size_t vn = jfield_number(v, n, variants[i]);
        char suffix[16];
        int sl = snprintf(suffix, sizeof(suffix), "_%u", variants[i]);
        FUZZ_CHECK(vn <= JFIELD_NAME_MAX && v[vn] == '\0' && strlen(v) == vn);
        FUZZ_CHECK(jfield_valid(v, vn));
        FUZZ_CHECK(vn >= (size_t)sl && memcmp(v + vn - (size_t)sl, suffix, (size_t)sl) == 0);
        size_t keep = vn - (size_t)sl;
        FUZZ_CHECK(keep == (n < JFIELD_NAME_MAX - (size_t)sl ? n : JFIELD_NAME_MAX - (size_t)sl));
        FUZZ_CHECK(memcmp(v, out, keep) == 0);
    }
    free(prefix);
    return 0;
}
