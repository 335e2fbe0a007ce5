/* fuzz-template.c - request templates: tpl_parse() and tpl_render()
 * (src/template.h) in every context.
 *
 * Input: the first byte picks the context (and, by its high bits, UTC or a
 * zone), the rest is the template text. Rendered with fixed times, a
 * checkpoint and a credential that come from the input; a credential named
 * "e..." cannot be read.
 * Properties:
 *  - tpl_parse() returns 0, -EINVAL or -ENOMEM; text without "${" parses
 *    to NULL; an error is one printable line of bounded length;
 *  - tpl_render() succeeds, except -EINVAL for a header value with a line
 *    break or NUL, a credential that cannot be read, and a strftime result
 *    over the cap; on error out keeps its previous contents;
 *  - an error never holds a credential's value, and TZ is left as it was;
 *  - the same text in the raw context is the reference: a header renders
 *    the same bytes (or refuses a CR, LF or NUL that is there); URL and
 *    form output holds only unreserved bytes, %XX, '+' (form) and bytes
 *    of the template, and percent-decodes to the reference when the
 *    template has no '%' or '+' of its own; JSON output inside quotes is
 *    a valid JSON string when the template inside quotes is one, and
 *    unescapes to the reference when the template has no '\' either.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "json.h"
#include "template.h"

#define SECRET "s3cr3t-VALUE:"

struct cred_ctx {
    const uint8_t *data;
    size_t size;
    char value[64];
};

static int cred(void *ctx, const char *name, const char **value, char *err, size_t errlen)
{
    struct cred_ctx *c = ctx;
    if (name[0] == 'e') {
        snprintf(err, errlen, "cannot read credential file %s: No such file", name);
        return -ENOENT;
    }
    /* a marker, then input bytes up to a NUL (values are C strings) */
    size_t n = strlen(SECRET);
    memcpy(c->value, SECRET, n);
    for (size_t i = 0; i < c->size && n < sizeof(c->value) - 1 && c->data[i]; i++) {
        c->value[n++] = (char)c->data[i];
    }
    c->value[n] = '\0';
    *value = c->value;
    return 0;
}

static bool contains(const char *s, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(s + i, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

/* An error is one printable line: a parse error of at most about 200
 * characters, a render error at most that plus the credential callback's
 * reason. */
static void check_err(const char *err, const char *text, size_t tlen, size_t max)
{
    size_t n = strlen(err);
    FUZZ_CHECK(n > 0 && n <= max);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(err[i] >= 0x20 && err[i] < 0x7f);
    }
    /* the value's marker can only come from the template text itself */
    FUZZ_CHECK(!strstr(err, SECRET) || contains(text, tlen, SECRET));
}

static bool has_bad_header_byte(const char *s, size_t len)
{
    return memchr(s, '\r', len) || memchr(s, '\n', len) || memchr(s, '\0', len);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* URL and form output: every byte is unreserved, part of an upper-case %XX,
 * a '+' (form) or one of the template's bytes; when the template has no
 * '%' or '+', decoding gives the reference. */
static void check_percent(const char *o, size_t olen, const char *text, size_t tlen, bool form,
                          const struct buf *ref)
{
    bool plain = !memchr(text, '%', tlen) && !memchr(text, '+', tlen);
    const char *rd = ref->data ? ref->data : "";
    struct buf dec = {0};
    for (size_t i = 0; i < olen; i++) {
        unsigned char c = (unsigned char)o[i];
        bool unres = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~';
        if (c == '%' && i + 2 < olen && hexval(o[i + 1]) >= 0 && hexval(o[i + 2]) >= 0) {
            FUZZ_CHECK(buf_putc(&dec, (char)(hexval(o[i + 1]) << 4 | hexval(o[i + 2]))) == 0);
            i += 2;
            continue;
        }
        FUZZ_CHECK(unres || (form && c == '+') || memchr(text, c, tlen));
        FUZZ_CHECK(buf_putc(&dec, form && c == '+' ? ' ' : (char)c) == 0);
    }
    if (plain) {
        FUZZ_CHECK(dec.len == ref->len && memcmp(dec.data ? dec.data : "", rd, ref->len) == 0);
    }
    buf_done(&dec);
}

static void check_json(const char *o, size_t olen, const char *text, size_t tlen,
                       const struct buf *ref)
{
    struct buf q = {0}, min = {0}, un = {0};
    struct json_error je;
    const char *rd = ref->data ? ref->data : "";
    FUZZ_CHECK(buf_putc(&q, '"') == 0 && buf_append(&q, text, tlen) == 0 && buf_putc(&q, '"') == 0);
    bool text_ok = json_minify(q.data, q.len, 4, &min, &je) == 0;
    buf_reset(&q);
    buf_reset(&min);
    FUZZ_CHECK(buf_putc(&q, '"') == 0 && buf_append(&q, o, olen) == 0 && buf_putc(&q, '"') == 0);
    if (text_ok) {
        FUZZ_CHECK(json_minify(q.data, q.len, 4, &min, &je) == 0);
        /* values go in escaped; invalid UTF-8 in a value becomes U+FFFD,
         * so the round trip holds for valid UTF-8 without NUL */
        bool ref_plain = !memchr(rd, '\0', ref->len);
        for (size_t i = 0; i < ref->len && ref_plain;) {
            size_t n = json_utf8_len((const unsigned char *)rd + i, ref->len - i);
            ref_plain = n > 0;
            i += n;
        }
        if (!memchr(text, '\\', tlen) && ref_plain) {
            FUZZ_CHECK(json_unescape(q.data, q.len, &un) == 0);
            FUZZ_CHECK(un.len == ref->len && memcmp(un.data, rd, ref->len) == 0);
        }
    }
    buf_done(&q);
    buf_done(&min);
    buf_done(&un);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        /* values with everything that needs escaping somewhere */
        setenv("FUZZ_ENV", "a b&c/d%e\"f\\g\nh\xc3\xa9i\xffj+k", 1);
        setenv("FUZZ_EMPTY", "", 1);
        setenv("TZ", "Asia/Tokyo", 1);
        init = true;
    }
    if (size < 1 || size > 4096) {
        return 0;
    }
    enum tpl_ctx ctx = (enum tpl_ctx)(data[0] % 5);
    const char *text = (const char *)data + 1;
    size_t tlen = size - 1;

    char err[512] = "";
    struct tpl *t = (struct tpl *)0x1;
    int r = tpl_parse(text, tlen, ctx, &t, err, sizeof(err));
    FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
    bool any = false;
    for (size_t i = 0; i + 1 < tlen; i++) {
        any = any || (text[i] == '$' && text[i + 1] == '{');
    }
    if (r == -EINVAL) {
        check_err(err, text, tlen, 220);
        FUZZ_CHECK(t == (struct tpl *)0x1);
    }
    if (r < 0) {
        return 0;
    }
    FUZZ_CHECK((t != NULL) == any);
    if (!t) {
        return 0;
    }
    unsigned uses = tpl_uses(t);
    size_t ncred;
    const char *const *creds = tpl_credentials(t, &ncred);
    FUZZ_CHECK((ncred > 0) == !!(uses & 1u << TPL_CREDENTIAL));
    for (size_t i = 0; i < ncred; i++) {
        FUZZ_CHECK(creds[i][0] != '\0');
        for (size_t j = 0; j < i; j++) {
            FUZZ_CHECK(strcmp(creds[i], creds[j]) != 0);
        }
    }

    struct cred_ctx cc = {.data = data + 1, .size = tlen};
    struct tpl_values v = {
        .now = UINT64_C(1795329000123456),            /* 2026-11-22T06:30:00.123456Z */
        .interval_start = UINT64_C(1795325400000000), /* an hour before */
        .interval_end = UINT64_C(1795329000000000),
        .last_success = (data[0] & 0x20) ? 0 : UINT64_C(1795300000999999),
        .tz_env = (data[0] & 0x40) ? ":/usr/share/zoneinfo/America/St_Johns" : NULL,
        .checkpoint = text,
        .checkpoint_len = tlen,
        .credential = (data[0] & 0x80) ? NULL : cred,
        .ctx = &cc,
    };

    /* the reference: the same text, raw */
    struct tpl *rt = NULL;
    struct buf ref = {0};
    int rr = tpl_parse(text, tlen, TPL_CTX_RAW, &rt, err, sizeof(err));
    FUZZ_CHECK(rr == 0 || rr == -ENOMEM);
    if (rr == 0) {
        err[0] = '\0';
        rr = tpl_render(rt, &v, &ref, err, sizeof(err));
        FUZZ_CHECK(rr == 0 || rr == -EINVAL || rr == -ENOMEM);
    }

    struct buf out = {0};
    FUZZ_CHECK(buf_puts(&out, "prefix") == 0);
    err[0] = '\0';
    r = tpl_render(t, &v, &out, err, sizeof(err));
    FUZZ_CHECK(strcmp(getenv("TZ"), "Asia/Tokyo") == 0);
    FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
    if (r < 0) {
        FUZZ_CHECK(out.len == 6 && strcmp(out.data, "prefix") == 0);
    }
    if (r == -EINVAL) {
        check_err(err, text, tlen, 220 + 256);
        FUZZ_CHECK(ctx == TPL_CTX_HEADER || (uses & 1u << TPL_CREDENTIAL) ||
                   strstr(err, "strftime"));
        /* the raw render fails the same way, except for a header's refusal */
        FUZZ_CHECK(rr != 0 || (ctx == TPL_CTX_HEADER && has_bad_header_byte(ref.data, ref.len)));
    }
    if (r == 0 && rr == 0) {
        const char *o = out.data + 6;
        size_t olen = out.len - 6;
        switch (ctx) {
        case TPL_CTX_RAW:
        case TPL_CTX_HEADER:
            FUZZ_CHECK(olen == ref.len && memcmp(o, ref.data ? ref.data : "", olen) == 0);
            break;
        case TPL_CTX_URL:
        case TPL_CTX_FORM:
            check_percent(o, olen, text, tlen, ctx == TPL_CTX_FORM, &ref);
            break;
        case TPL_CTX_JSON:
            check_json(o, olen, text, tlen, &ref);
            break;
        }
    }
    if (r == 0 && rr == -EINVAL) {
        /* only a header can fail where raw succeeds, not the other way */
        FUZZ_CHECK(false);
    }
    buf_done(&out);
    buf_done(&ref);
    tpl_free(rt);
    tpl_free(t);
    return 0;
}
