/* template.c - request templating: "${NAME:ARG}" placeholders, parsed once
 * when the configuration loads and rendered for every fetch cycle. */
#include "template.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "util/cleanup.h"

/* The longest strftime() result; a longer one is an error, not a cut value. */
#define TPL_STRFTIME_MAX 256
/* A time value: the strftime cap plus the leading space of the empty-result
 * trick (format_time), or an rfc3339_ms stamp of a 6-digit year. */
#define TPL_TIME_BUF (TPL_STRFTIME_MAX + 2)
/* Characters of (escaped) template text quoted in an error message: keeps a
 * message on one line of about 200 characters. */
#define TPL_QUOTE_MAX 40
#define TPL_QUOTE_BUF (TPL_QUOTE_MAX + 6)

#define TPL_TIME_VARS                                                                              \
    (1u << TPL_NOW | 1u << TPL_INTERVAL_START | 1u << TPL_INTERVAL_END | 1u << TPL_LAST_SUCCESS)

enum {
    PIECE_LITERAL = _TPL_VAR_MAX,
};

/* tpl_render() indexes its times by kind - TPL_NOW */
_Static_assert(TPL_INTERVAL_START == TPL_NOW + 1 && TPL_INTERVAL_END == TPL_NOW + 2 &&
                   TPL_LAST_SUCCESS == TPL_NOW + 3,
               "the four time placeholders come first, in this order");

enum tfmt {
    TFMT_RFC3339,
    TFMT_RFC3339_MS,
    TFMT_UNIX,
    TFMT_UNIX_MS,
    TFMT_STRFTIME,
};

struct piece {
    unsigned char kind; /* enum tpl_var, or PIECE_LITERAL */
    unsigned char tfmt; /* time placeholders: enum tfmt */
    size_t off, len;    /* literal: its bytes in text; placeholder: its "${...}" */
    size_t arg_off;     /* TFMT_STRFTIME: the format is text[arg_off..off + len - 1) */
    char *arg;          /* TPL_ENV: the value; TPL_CREDENTIAL: the name (owned) */
};

struct tpl {
    enum tpl_ctx ctx;
    unsigned uses;
    char *text; /* owned copy of the template, NUL-terminated */
    size_t len;
    struct piece *pieces;
    size_t n;
    const char **creds; /* distinct credential names, borrowed from pieces */
    size_t n_creds;
};

/* ---- errors -------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int tpl_error(char *err, size_t errlen,
                                                           const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* Copies s[0..len) for an error message, inside double quotes: '"' and '\'
 * escaped, other bytes outside printable ASCII as \xHH (so a message stays
 * one printable line whatever the config holds), cut with "..." after
 * TPL_QUOTE_MAX characters of output. */
static const char *tpl_quote(const char *s, size_t len, char out[TPL_QUOTE_BUF])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i = 0;
    out[o++] = '"';
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t w = (c == '"' || c == '\\') ? 2 : (c < 0x20 || c >= 0x7f) ? 4 : 1;
        if (o - 1 + w > TPL_QUOTE_MAX) {
            break;
        }
        if (w == 2) {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (w == 4) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    if (i < len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

/* ---- times --------------------------------------------------------------- */

/* Walks one strftime conversion at s[0] == '%' (flags, width, E/O modifier
 * and the conversion character, as glibc reads them); returns its length
 * (0: the format ends inside it) and the conversion character. */
static size_t strftime_spec(const char *s, size_t len, char *ret_conv)
{
    size_t i = 1;
    while (i < len && s[i] && strchr("_-0^#", s[i])) {
        i++;
    }
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        i++;
    }
    if (i < len && (s[i] == 'E' || s[i] == 'O')) {
        i++;
    }
    if (i >= len || s[i] == '\0') {
        return 0;
    }
    *ret_conv = s[i];
    return i + 1;
}

/* Checks a strftime format: no NUL, no '%' left open at the end, and at
 * least one conversion other than "%%" (without one the "format" is most
 * likely a misspelt keyword such as "rfc3399"). Returns a reason or NULL. */
static const char *strftime_check(const char *s, size_t len)
{
    bool conv = false;
    if (memchr(s, '\0', len)) {
        return "the format holds a NUL byte";
    }
    for (size_t i = 0; i < len;) {
        if (s[i] != '%') {
            i++;
            continue;
        }
        char c;
        size_t n = strftime_spec(s + i, len - i, &c);
        if (n == 0) {
            return "the format ends inside a % conversion";
        }
        conv = conv || c != '%';
        i += n;
    }
    return conv ? NULL : "";
}

static bool tfmt_parse(const char *arg, size_t len, enum tfmt *ret)
{
    static const struct {
        const char *name;
        enum tfmt f;
    } kw[] = {
        {"rfc3339", TFMT_RFC3339},
        {"rfc3339_ms", TFMT_RFC3339_MS},
        {"unix", TFMT_UNIX},
        {"unix_ms", TFMT_UNIX_MS},
    };
    for (size_t i = 0; i < ELEMENTSOF(kw); i++) {
        if (strlen(kw[i].name) == len && memcmp(kw[i].name, arg, len) == 0) {
            *ret = kw[i].f;
            return true;
        }
    }
    if (strftime_check(arg, len)) {
        return false;
    }
    *ret = TFMT_STRFTIME;
    return true;
}

/* Breaks ts[0..n) down on the wall clock of tz_env (a TZ value), or of UTC
 * for NULL. A zone means switching the process's TZ: once for all n times,
 * restored before returning (the rest of fetchd, and cron, rely on it). */
static int break_down(const usec_t *ts, size_t n, const char *tz_env, struct tm *tms)
{
    if (!tz_env) {
        for (size_t i = 0; i < n; i++) {
            time_t tt = (time_t)(ts[i] / USEC_PER_SEC);
            if (!gmtime_r(&tt, &tms[i])) {
                return -EINVAL;
            }
            /* glibc says "GMT"; the placeholders document UTC */
            tms[i].tm_zone = "UTC";
        }
        return 0;
    }
    _cleanup_free_ char *saved = NULL;
    const char *old = getenv("TZ");
    /* setenv() may free the string getenv() returned: copy it first */
    if (old) {
        saved = strdup(old);
        if (!saved) {
            return -ENOMEM;
        }
    }
    if (setenv("TZ", tz_env, 1) < 0) {
        return -errno;
    }
    tzset();
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        time_t tt = (time_t)(ts[i] / USEC_PER_SEC);
        if (!localtime_r(&tt, &tms[i])) {
            r = -EINVAL;
        }
    }
    if (saved) {
        (void)setenv("TZ", saved, 1);
    } else {
        (void)unsetenv("TZ");
    }
    tzset();
    return r;
}

/* Formats t (broken down in tm) into out[TPL_TIME_BUF]; *ret_len is its
 * length. scratch holds the rewritten strftime format. Returns 0, -EINVAL
 * (the strftime result is longer than TPL_STRFTIME_MAX) or -ENOMEM. */
static int format_time(usec_t t, const struct tm *tm, bool utc, enum tfmt f, const char *sf,
                       size_t sflen, struct buf *scratch, char *out, size_t *ret_len)
{
    int n;
    switch (f) {
    case TFMT_RFC3339:
    case TFMT_RFC3339_MS: {
        n = snprintf(out, TPL_TIME_BUF, "%04ld-%02d-%02dT%02d:%02d:%02d", tm->tm_year + 1900L,
                     tm->tm_mon + 1, tm->tm_mday, tm->tm_hour, tm->tm_min, tm->tm_sec);
        if (f == TFMT_RFC3339_MS) {
            n += snprintf(out + n, TPL_TIME_BUF - (size_t)n, ".%03u",
                          (unsigned)(t / USEC_PER_MSEC % 1000));
        }
        if (utc) {
            n += snprintf(out + n, TPL_TIME_BUF - (size_t)n, "Z");
        } else {
            /* RFC 3339 has no seconds in an offset: the local mean times
             * of the 19th century lose theirs */
            long off = tm->tm_gmtoff, a = off < 0 ? -off : off;
            n += snprintf(out + n, TPL_TIME_BUF - (size_t)n, "%c%02ld:%02ld", off < 0 ? '-' : '+',
                          a / 3600, a / 60 % 60);
        }
        break;
    }
    case TFMT_UNIX:
        n = snprintf(out, TPL_TIME_BUF, "%llu", (unsigned long long)(t / USEC_PER_SEC));
        break;
    case TFMT_UNIX_MS:
        n = snprintf(out, TPL_TIME_BUF, "%llu", (unsigned long long)(t / USEC_PER_MSEC));
        break;
    default: {
        /* A leading space: strftime() returns 0 both for "too long" and for
         * an empty result ("%p" in some locales); with it, 0 only means too
         * long. "%s" is replaced here: glibc computes it with mktime() in
         * the process's zone, which is not the zone tm was broken down in. */
        buf_reset(scratch);
        int r = buf_putc(scratch, ' ');
        for (size_t i = 0; i < sflen && r == 0;) {
            char c = 0;
            size_t k = sf[i] == '%' ? strftime_spec(sf + i, sflen - i, &c) : 0;
            if (c == 's') {
                r = buf_printf(scratch, "%llu", (unsigned long long)(t / USEC_PER_SEC));
            } else {
                k = k ? k : 1;
                r = buf_append(scratch, sf + i, k);
            }
            i += k;
        }
        if (r < 0) {
            return r;
        }
        /* the format is the configuration's, checked by strftime_check() */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        size_t m = strftime(out, TPL_STRFTIME_MAX + 2, scratch->data, tm);
#pragma GCC diagnostic pop
        if (m == 0) {
            return -EINVAL;
        }
        memmove(out, out + 1, m);
        n = (int)m - 1;
        break;
    }
    }
    *ret_len = (size_t)n;
    return 0;
}

int tpl_format_time(usec_t t, const char *arg, const char *tz_env, struct buf *out)
{
    enum tfmt f = TFMT_RFC3339;
    size_t alen = arg ? strlen(arg) : 0;
    if (arg && !tfmt_parse(arg, alen, &f)) {
        return -EINVAL;
    }
    struct tm tm;
    int r = break_down(&t, 1, tz_env, &tm);
    if (r < 0) {
        return r;
    }
    struct buf scratch = {0};
    char v[TPL_TIME_BUF];
    size_t vlen;
    r = format_time(t, &tm, !tz_env, f, arg, alen, &scratch, v, &vlen);
    buf_done(&scratch);
    return r < 0 ? r : buf_append(out, v, vlen);
}

/* ---- parsing ------------------------------------------------------------- */

struct tpl *tpl_free(struct tpl *t)
{
    if (!t) {
        return NULL;
    }
    for (size_t i = 0; i < t->n; i++) {
        free(t->pieces[i].arg);
    }
    free(t->pieces);
    free(t->creds);
    free(t->text);
    free(t);
    return NULL;
}

static bool is_alpha_(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool env_name_ok(const char *s, size_t len)
{
    if (len == 0 || !is_alpha_(s[0])) {
        return false;
    }
    for (size_t i = 1; i < len; i++) {
        if (!is_alpha_(s[i]) && !is_digit(s[i])) {
            return false;
        }
    }
    return true;
}

/* The rule systemd applies to credential names (credential_name_valid()):
 * a plain file name in $CREDENTIALS_DIRECTORY; here narrowed to a safe set
 * of characters. */
static bool credential_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > 255 || (len == 1 && s[0] == '.') ||
        (len == 2 && s[0] == '.' && s[1] == '.')) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_alpha_(s[i]) && !is_digit(s[i]) && s[i] != '.' && s[i] != '-') {
            return false;
        }
    }
    return true;
}

static bool header_value_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') {
            return false;
        }
    }
    return true;
}

/* Parses the placeholder text[p->off..p->off + p->len) ("${...}") into p. */
static int parse_placeholder(struct tpl *t, struct piece *p, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        enum tpl_var var;
    } names[] = {
        {"now", TPL_NOW},
        {"interval_start", TPL_INTERVAL_START},
        {"interval_end", TPL_INTERVAL_END},
        {"last_success", TPL_LAST_SUCCESS},
        {"checkpoint", TPL_CHECKPOINT},
        {"env", TPL_ENV},
        {"credential", TPL_CREDENTIAL},
    };
    const char *s = t->text + p->off + 2;
    size_t len = p->len - 3;
    const char *colon = memchr(s, ':', len);
    size_t nlen = colon ? (size_t)(colon - s) : len;
    const char *arg = colon ? colon + 1 : NULL;
    size_t alen = colon ? len - nlen - 1 : 0;
    char q[TPL_QUOTE_BUF];
    size_t at = p->off + 1;

    size_t k = 0;
    while (k < ELEMENTSOF(names) &&
           !(strlen(names[k].name) == nlen && memcmp(names[k].name, s, nlen) == 0)) {
        k++;
    }
    if (k == ELEMENTSOF(names)) {
        return tpl_error(err, errlen,
                         "at byte %zu: unknown placeholder %s (known: now, interval_start, "
                         "interval_end, last_success, checkpoint, env:NAME, credential:NAME; "
                         "write $${ for a literal ${)",
                         at, tpl_quote(t->text + p->off, p->len, q));
    }
    p->kind = (unsigned char)names[k].var;
    tpl_quote(t->text + p->off, p->len, q);

    switch (p->kind) {
    case TPL_CHECKPOINT:
        if (arg) {
            return tpl_error(err, errlen, "at byte %zu: %s: checkpoint takes no argument", at, q);
        }
        break;
    case TPL_ENV: {
        if (!arg || !env_name_ok(arg, alen)) {
            return tpl_error(err, errlen,
                             "at byte %zu: %s: write ${env:NAME}, NAME made of letters, digits "
                             "and '_', not starting with a digit",
                             at, q);
        }
        p->arg = strndup(arg, alen);
        if (!p->arg) {
            return -ENOMEM;
        }
        const char *v = getenv(p->arg);
        if (!v) {
            /* a name made of [A-Za-z0-9_]: printable, but not short */
            return tpl_error(err, errlen,
                             "at byte %zu: %s: environment variable %.64s%s is not set", at, q,
                             p->arg, alen > 64 ? "..." : "");
        }
        if (t->ctx == TPL_CTX_HEADER && !header_value_ok(v, strlen(v))) {
            return tpl_error(err, errlen,
                             "at byte %zu: %s: the environment variable has a line break, "
                             "which cannot go into a header",
                             at, q);
        }
        free(p->arg);
        p->arg = strdup(v);
        if (!p->arg) {
            return -ENOMEM;
        }
        break;
    }
    case TPL_CREDENTIAL:
        if (!arg || !credential_name_ok(arg, alen)) {
            return tpl_error(err, errlen,
                             "at byte %zu: %s: write ${credential:NAME}, NAME 1 to 255 of "
                             "A-Z a-z 0-9 . _ - (not \".\" or \"..\")",
                             at, q);
        }
        p->arg = strndup(arg, alen);
        if (!p->arg) {
            return -ENOMEM;
        }
        break;
    default: {
        /* a time */
        enum tfmt f = TFMT_RFC3339;
        if (arg && !tfmt_parse(arg, alen, &f)) {
            const char *why = strftime_check(arg, alen);
            return tpl_error(err, errlen,
                             "at byte %zu: %s: %s%sthe argument is rfc3339, rfc3339_ms, unix, "
                             "unix_ms or a strftime format with a %% conversion (%%Y-%%m-%%d)",
                             at, q, why, *why ? "; " : "");
        }
        p->tfmt = (unsigned char)f;
        if (f == TFMT_STRFTIME) {
            p->arg_off = (size_t)(arg - t->text);
            /* try it on a long date (month and weekday names at their
             * longest in English) so that most formats too long for
             * TPL_STRFTIME_MAX fail here, not at every fetch */
            const usec_t probe = UINT64_C(1790812799) * USEC_PER_SEC; /* 2026-09-30T23:59:59Z */
            struct tm tm;
            struct buf scratch = {0};
            char v[TPL_TIME_BUF];
            size_t vlen;
            int r = break_down(&probe, 1, NULL, &tm);
            if (r == 0) {
                r = format_time(probe, &tm, true, f, arg, alen, &scratch, v, &vlen);
            }
            buf_done(&scratch);
            if (r == -EINVAL) {
                return tpl_error(err, errlen,
                                 "at byte %zu: %s: the format gives more than %d bytes", at, q,
                                 TPL_STRFTIME_MAX);
            }
            if (r < 0) {
                return r;
            }
        }
        break;
    }
    }
    t->uses |= 1u << p->kind;
    return 0;
}

static int collect_credentials(struct tpl *t)
{
    if (!(t->uses & 1u << TPL_CREDENTIAL)) {
        return 0;
    }
    t->creds = calloc(t->n, sizeof(*t->creds));
    if (!t->creds) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < t->n; i++) {
        if (t->pieces[i].kind != TPL_CREDENTIAL) {
            continue;
        }
        size_t j = 0;
        while (j < t->n_creds && strcmp(t->creds[j], t->pieces[i].arg) != 0) {
            j++;
        }
        if (j == t->n_creds) {
            t->creds[t->n_creds++] = t->pieces[i].arg;
        }
    }
    return 0;
}

int tpl_parse(const char *text, size_t len, enum tpl_ctx ctx, struct tpl **ret, char *err,
              size_t errlen)
{
    /* no "${" means no placeholder and no "$${" either */
    size_t dollars = 0;
    bool any = false;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '$') {
            dollars++;
            any = any || (i + 1 < len && text[i + 1] == '{');
        }
    }
    if (!any) {
        *ret = NULL;
        return 0;
    }
    struct tpl *t = calloc(1, sizeof(*t));
    if (!t) {
        return -ENOMEM;
    }
    t->ctx = ctx;
    t->len = len;
    t->text = malloc(len + 1);
    /* every "${" or "$${" ends a literal and starts at most one more piece */
    t->pieces = calloc(2 * dollars + 1, sizeof(*t->pieces));
    if (!t->text || !t->pieces) {
        tpl_free(t);
        return -ENOMEM;
    }
    memcpy(t->text, text, len);
    t->text[len] = '\0';

    const char *s = t->text;
    size_t lit = 0; /* start of the literal being collected */
    int r = 0;
    for (size_t i = 0; i < len && r == 0;) {
        bool escape = s[i] == '$' && i + 2 < len && s[i + 1] == '$' && s[i + 2] == '{';
        bool open = s[i] == '$' && i + 1 < len && s[i + 1] == '{';
        if (!escape && !open) {
            i++;
            continue;
        }
        if (i > lit) {
            t->pieces[t->n++] = (struct piece){.kind = PIECE_LITERAL, .off = lit, .len = i - lit};
        }
        if (escape) {
            /* the literal goes on from the second '$' */
            lit = i + 1;
            i += 3;
            continue;
        }
        char q[TPL_QUOTE_BUF];
        const char *close = memchr(s + i + 2, '}', len - i - 2);
        if (!close) {
            r = tpl_error(err, errlen,
                          "at byte %zu: unterminated placeholder %s (no closing \"}\"; write "
                          "$${ for a literal ${)",
                          i + 1, tpl_quote(s + i, len - i, q));
            break;
        }
        struct piece *p = &t->pieces[t->n++];
        *p = (struct piece){.off = i, .len = (size_t)(close - s) + 1 - i};
        if (ctx == TPL_CTX_JSON && (memchr(s + i, '"', p->len) || memchr(s + i, '\\', p->len))) {
            r = tpl_error(err, errlen,
                          "at byte %zu: %s: a '\"' or '\\' inside a placeholder in a JSON "
                          "string would be JSON string syntax, not part of the placeholder",
                          i + 1, tpl_quote(s + i, p->len, q));
            break;
        }
        r = parse_placeholder(t, p, err, errlen);
        i += p->len;
        lit = i;
    }
    if (r == 0 && lit < len) {
        t->pieces[t->n++] = (struct piece){.kind = PIECE_LITERAL, .off = lit, .len = len - lit};
    }
    if (r == 0) {
        r = collect_credentials(t);
    }
    if (r < 0) {
        tpl_free(t);
        return r;
    }
    *ret = t;
    return 0;
}

unsigned tpl_uses(const struct tpl *t)
{
    return t ? t->uses : 0;
}

const char *const *tpl_credentials(const struct tpl *t, size_t *n)
{
    *n = t ? t->n_creds : 0;
    return t ? (const char *const *)t->creds : NULL;
}

/* ---- rendering ----------------------------------------------------------- */

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static int percent_encode(struct buf *out, const char *s, size_t len, bool form)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && unreserved((unsigned char)s[j])) {
            j++;
        }
        int r = buf_append(out, s + i, j - i);
        if (r < 0 || j == len) {
            return r;
        }
        unsigned char c = (unsigned char)s[j];
        if (form && c == ' ') {
            r = buf_putc(out, '+');
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            r = buf_append(out, e, 3);
        }
        if (r < 0) {
            return r;
        }
        i = j + 1;
    }
    return 0;
}

/* Appends a value, escaped for ctx (a header's CR/LF/NUL check is the
 * caller's: it knows what to say). */
static int emit(struct buf *out, enum tpl_ctx ctx, const char *s, size_t len, struct buf *scratch)
{
    switch (ctx) {
    case TPL_CTX_URL:
        return percent_encode(out, s, len, false);
    case TPL_CTX_FORM:
        return percent_encode(out, s, len, true);
    case TPL_CTX_JSON: {
        /* through scratch, not straight into out: json_escape() reserves
         * its worst case (6 bytes a byte), which out's cap could refuse
         * for a value that fits */
        buf_reset(scratch);
        int r = json_escape(scratch, s, len);
        return r < 0 ? r : buf_append(out, scratch->data + 1, scratch->len - 2);
    }
    default:
        return buf_append(out, s, len);
    }
}

static usec_t time_of(const struct tpl_values *v, unsigned kind)
{
    switch (kind) {
    case TPL_NOW:
        return v->now;
    case TPL_INTERVAL_START:
        return v->interval_start;
    case TPL_INTERVAL_END:
        return v->interval_end;
    default:
        return v->last_success ? v->last_success : v->interval_start;
    }
}

int tpl_render(const struct tpl *t, const struct tpl_values *v, struct buf *out, char *err,
               size_t errlen)
{
    if (!t) {
        return 0;
    }
    size_t len0 = out->len;
    struct buf scratch = {0};
    char q[TPL_QUOTE_BUF];
    int r = 0;

    /* all four times broken down at once: one TZ switch per render */
    usec_t ts[4];
    struct tm tms[4];
    if (t->uses & TPL_TIME_VARS) {
        for (unsigned k = 0; k < 4; k++) {
            ts[k] = time_of(v, TPL_NOW + k);
        }
        r = break_down(ts, 4, v->tz_env, tms);
        if (r == -EINVAL) {
            tpl_error(err, errlen, "a time cannot be broken down");
        }
    }

    for (size_t i = 0; i < t->n && r == 0; i++) {
        const struct piece *p = &t->pieces[i];
        size_t at = p->off + 1;
        const char *val = NULL;
        size_t vlen = 0;
        char tb[TPL_TIME_BUF];
        switch (p->kind) {
        case PIECE_LITERAL:
            r = buf_append(out, t->text + p->off, p->len);
            continue;
        case TPL_ENV:
            val = p->arg;
            vlen = strlen(val);
            break;
        case TPL_CHECKPOINT:
            val = v->checkpoint ? v->checkpoint : "";
            vlen = v->checkpoint ? v->checkpoint_len : 0;
            break;
        case TPL_CREDENTIAL: {
            if (!v->credential) {
                r = tpl_error(err, errlen, "placeholder %s at byte %zu: no credentials here",
                              tpl_quote(t->text + p->off, p->len, q), at);
                break;
            }
            char cerr[256] = "";
            r = v->credential(v->ctx, p->arg, &val, cerr, sizeof(cerr));
            if (r == -ENOMEM) {
                break;
            }
            if (r < 0) {
                r = tpl_error(err, errlen, "placeholder %s at byte %zu: %s",
                              tpl_quote(t->text + p->off, p->len, q), at,
                              *cerr ? cerr : "the credential cannot be read");
                break;
            }
            val = val ? val : "";
            vlen = strlen(val);
            break;
        }
        default: {
            unsigned k = p->kind - TPL_NOW;
            r = format_time(ts[k], &tms[k], !v->tz_env, p->tfmt, t->text + p->arg_off,
                            p->off + p->len - 1 - p->arg_off, &scratch, tb, &vlen);
            if (r == -EINVAL) {
                tpl_error(err, errlen,
                          "placeholder %s at byte %zu: the strftime result is "
                          "longer than %d bytes",
                          tpl_quote(t->text + p->off, p->len, q), at, TPL_STRFTIME_MAX);
            }
            val = tb;
            break;
        }
        }
        if (r < 0) {
            break;
        }
        if (t->ctx == TPL_CTX_HEADER && !header_value_ok(val, vlen)) {
            /* never the value itself: it may be a secret */
            r = tpl_error(err, errlen,
                          "placeholder %s at byte %zu: the value has a line break or NUL, "
                          "which cannot go into a header",
                          tpl_quote(t->text + p->off, p->len, q), at);
            break;
        }
        r = emit(out, t->ctx, val, vlen, &scratch);
    }
    buf_done(&scratch);
    if (r < 0) {
        out->len = len0;
        if (out->data) {
            out->data[len0] = '\0';
        }
    }
    return r;
}
