/* test-template.c - unit tests for src/template.h: parsing (every
 * placeholder and argument, "$${", every error message with its byte
 * position), escaping in every context (values with spaces, '&', '/', '%',
 * '"', '\', line breaks, UTF-8 and invalid UTF-8), header refusals, out
 * restored on error, times in UTC and real zones (instants checked with
 * `TZ=<zone> date -d @<seconds>`), the process's TZ being left alone, and
 * credentials through the callback. */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* 2026-11-22T06:30:00.123456Z */
#define T_NOW (UINT64_C(1795329000) * USEC_PER_SEC + 123456)
/* 2026-11-22T05:30:00Z, an hour before */
#define T_START (UINT64_C(1795325400) * USEC_PER_SEC)
#define T_END (UINT64_C(1795329000) * USEC_PER_SEC)
/* 2026-11-21T06:30:00.999Z */
#define T_LAST (UINT64_C(1795242600) * USEC_PER_SEC + 999000)
/* 2026-07-01T12:00:00Z, summer time in Berlin */
#define T_SUMMER (UINT64_C(1782907200) * USEC_PER_SEC)

#define BERLIN ":/usr/share/zoneinfo/Europe/Berlin"
#define ST_JOHNS ":/usr/share/zoneinfo/America/St_Johns"

/* a value with everything some context has to escape */
#define NASTY "a b&c/d%e\"f\\g\nh\xc3\xa9i\xffj+k~_.-"

static int cred_calls;

/* credentials: "api_key" and "nl" have values, anything else is missing */
static int cred(void *ctx, const char *name, const char **value, char *err, size_t errlen)
{
    cred_calls++;
    ck_assert_ptr_eq(ctx, &cred_calls);
    if (strcmp(name, "api_key") == 0) {
        *value = "k3y/with space&more";
        return 0;
    }
    if (strcmp(name, "nl") == 0) {
        *value = "line1\r\nline2";
        return 0;
    }
    if (strcmp(name, "oom") == 0) {
        return -ENOMEM;
    }
    snprintf(err, errlen, "cannot read /run/credentials/fetchd/%s: No such file or directory",
             name);
    return -ENOENT;
}

static struct tpl_values values(void)
{
    return (struct tpl_values){
        .now = T_NOW,
        .interval_start = T_START,
        .interval_end = T_END,
        .last_success = T_LAST,
        .tz_env = NULL,
        .checkpoint = "cp",
        .checkpoint_len = 2,
        .credential = cred,
        .ctx = &cred_calls,
    };
}

static struct tpl *parse_ok(const char *text, enum tpl_ctx ctx)
{
    char err[256] = "";
    struct tpl *t = (struct tpl *)0x1;
    int r = tpl_parse(text, strlen(text), ctx, &t, err, sizeof(err));
    ck_assert_msg(r == 0, "\"%s\": expected 0, got %d: %s", text, r, err);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_ne(t, (struct tpl *)0x1);
    return t;
}

/* Renders text in ctx with v and checks the exact result. */
static void expect_v(const char *text, enum tpl_ctx ctx, const struct tpl_values *v,
                     const char *want, size_t want_len)
{
    struct tpl *t = parse_ok(text, ctx);
    struct buf out = {0};
    char err[256] = "";
    int r = tpl_render(t, v, &out, err, sizeof(err));
    ck_assert_msg(r == 0, "\"%s\" (ctx %d): render failed %d: %s", text, ctx, r, err);
    ck_assert_msg(out.len == want_len && memcmp(out.data, want, want_len) == 0,
                  "\"%s\" (ctx %d): expected \"%s\", got \"%s\"", text, ctx, want,
                  out.data ? out.data : "");
    buf_done(&out);
    tpl_free(t);
}

static void expect(const char *text, enum tpl_ctx ctx, const char *want)
{
    struct tpl_values v = values();
    expect_v(text, ctx, &v, want, strlen(want));
}

static void expect_parse_err(const char *text, size_t len, enum tpl_ctx ctx, const char *want)
{
    char err[512] = "";
    struct tpl *t = (struct tpl *)0x1;
    int r = tpl_parse(text, len, ctx, &t, err, sizeof(err));
    ck_assert_msg(r == -EINVAL, "\"%s\": expected -EINVAL, got %d", text, r);
    ck_assert_ptr_eq(t, (struct tpl *)0x1);
    ck_assert_str_eq(err, want);
    for (const char *c = err; *c; c++) {
        ck_assert_msg(*c >= 0x20 && *c < 0x7f, "unprintable byte in \"%s\"", err);
    }
    ck_assert_uint_le(strlen(err), 220);
}

/* ---- parsing ------------------------------------------------------------- */

START_TEST(parse_plain_is_null)
{
    static const char *const plain[] = {"",    "abc",     "$",   "$$",   "a$b",
                                        "{x}", "$ {now}", "$}{", "100$", "$\n{"};
    for (size_t i = 0; i < N_ELEMS(plain); i++) {
        char err[64] = "";
        struct tpl *t = (struct tpl *)0x1;
        ck_assert_int_eq(tpl_parse(plain[i], strlen(plain[i]), TPL_CTX_URL, &t, err, sizeof(err)),
                         0);
        ck_assert_msg(t == NULL, "\"%s\": expected NULL", plain[i]);
    }
    /* NULL is a valid template for the rest of the API */
    ck_assert_uint_eq(tpl_uses(NULL), 0);
    size_t n = 9;
    ck_assert_ptr_null(tpl_credentials(NULL, &n));
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(tpl_free(NULL));
}
END_TEST

START_TEST(parse_literal_dollar)
{
    /* "$${" is a template (it must be turned into "${") */
    expect("$${now}", TPL_CTX_URL, "${now}");
    expect("a$${b}c", TPL_CTX_RAW, "a${b}c");
    expect("$${", TPL_CTX_RAW, "${");
    expect("$$${now:unix}", TPL_CTX_RAW, "$${now:unix}"); /* leftmost "$${" wins */
    expect("$$${now:unix}$", TPL_CTX_RAW, "$${now:unix}$");
    expect("x$${now}${now:unix}$${y}", TPL_CTX_RAW, "x${now}1795329000${y}");
    expect("$$ $x ${now:unix}$", TPL_CTX_RAW, "$$ $x 1795329000$");
    /* literals are copied as they are, in every context */
    expect("a b%20/&\"\n$${ ${now:unix}", TPL_CTX_URL, "a b%20/&\"\n${ 1795329000");
    expect("a b%20/&\"\n$${ ${now:unix}", TPL_CTX_JSON, "a b%20/&\"\n${ 1795329000");
    struct tpl *t = parse_ok("$${x}", TPL_CTX_RAW);
    ck_assert_uint_eq(tpl_uses(t), 0);
    tpl_free(t);
}
END_TEST

START_TEST(parse_uses)
{
    setenv("TPL_TEST_ENV", "v", 1);
    struct tpl *t = parse_ok("${now}${checkpoint}${env:TPL_TEST_ENV}${credential:a}"
                             "${credential:b}${credential:a}${last_success:unix}",
                             TPL_CTX_RAW);
    ck_assert_uint_eq(tpl_uses(t), 1u << TPL_NOW | 1u << TPL_CHECKPOINT | 1u << TPL_ENV |
                                       1u << TPL_CREDENTIAL | 1u << TPL_LAST_SUCCESS);
    size_t n = 0;
    const char *const *c = tpl_credentials(t, &n);
    ck_assert_uint_eq(n, 2); /* distinct names */
    ck_assert_str_eq(c[0], "a");
    ck_assert_str_eq(c[1], "b");
    tpl_free(t);

    t = parse_ok("${interval_start}-${interval_end}", TPL_CTX_URL);
    ck_assert_uint_eq(tpl_uses(t), 1u << TPL_INTERVAL_START | 1u << TPL_INTERVAL_END);
    c = tpl_credentials(t, &n);
    ck_assert_uint_eq(n, 0);
    tpl_free(t);
}
END_TEST

static const struct {
    const char *text;
    enum tpl_ctx ctx;
    const char *err;
} parse_errors[] = {
    {"${nwo}", TPL_CTX_URL,
     "at byte 1: unknown placeholder \"${nwo}\" (known: now, interval_start, interval_end, "
     "last_success, checkpoint, env:NAME, credential:NAME; write $${ for a literal ${)"},
    {"/api?from=${start}", TPL_CTX_URL,
     "at byte 11: unknown placeholder \"${start}\" (known: now, interval_start, interval_end, "
     "last_success, checkpoint, env:NAME, credential:NAME; write $${ for a literal ${)"},
    {"${}", TPL_CTX_RAW,
     "at byte 1: unknown placeholder \"${}\" (known: now, interval_start, interval_end, "
     "last_success, checkpoint, env:NAME, credential:NAME; write $${ for a literal ${)"},
    {"${NOW}", TPL_CTX_RAW,
     "at byte 1: unknown placeholder \"${NOW}\" (known: now, interval_start, interval_end, "
     "last_success, checkpoint, env:NAME, credential:NAME; write $${ for a literal ${)"},
    /* control characters escaped, long text cut */
    {"ab${n\tw\x01\xff}", TPL_CTX_RAW,
     "at byte 3: unknown placeholder \"${n\\x09w\\x01\\xff}\" (known: now, interval_start, "
     "interval_end, last_success, checkpoint, env:NAME, credential:NAME; write $${ for a "
     "literal ${)"},
    {"${0123456789012345678901234567890123456789}", TPL_CTX_RAW,
     "at byte 1: unknown placeholder \"${01234567890123456789012345678901234567...\" (known: now, "
     "interval_start, interval_end, last_success, checkpoint, env:NAME, credential:NAME; write "
     "$${ for a literal ${)"},
    {"a ${now", TPL_CTX_URL,
     "at byte 3: unterminated placeholder \"${now\" (no closing \"}\"; write $${ for a literal "
     "${)"},
    {"${now} ${", TPL_CTX_URL,
     "at byte 8: unterminated placeholder \"${\" (no closing \"}\"; write $${ for a literal ${)"},
    {"${env}", TPL_CTX_RAW,
     "at byte 1: \"${env}\": write ${env:NAME}, NAME made of letters, digits and '_', not "
     "starting with a digit"},
    {"${env:}", TPL_CTX_RAW,
     "at byte 1: \"${env:}\": write ${env:NAME}, NAME made of letters, digits and '_', not "
     "starting with a digit"},
    {"x${env:1ABC}", TPL_CTX_RAW,
     "at byte 2: \"${env:1ABC}\": write ${env:NAME}, NAME made of letters, digits and '_', not "
     "starting with a digit"},
    {"${env:A-B}", TPL_CTX_RAW,
     "at byte 1: \"${env:A-B}\": write ${env:NAME}, NAME made of letters, digits and '_', not "
     "starting with a digit"},
    {"${env:TPL_TEST_UNSET}", TPL_CTX_RAW,
     "at byte 1: \"${env:TPL_TEST_UNSET}\": environment variable TPL_TEST_UNSET is not set"},
    {"${credential}", TPL_CTX_HEADER,
     "at byte 1: \"${credential}\": write ${credential:NAME}, NAME 1 to 255 of A-Z a-z 0-9 . _ - "
     "(not \".\" or \"..\")"},
    {"${credential:}", TPL_CTX_HEADER,
     "at byte 1: \"${credential:}\": write ${credential:NAME}, NAME 1 to 255 of A-Z a-z 0-9 . _ - "
     "(not \".\" or \"..\")"},
    {"${credential:..}", TPL_CTX_HEADER,
     "at byte 1: \"${credential:..}\": write ${credential:NAME}, NAME 1 to 255 of A-Z a-z 0-9 . _ "
     "- (not \".\" or \"..\")"},
    {"${credential:.}", TPL_CTX_HEADER,
     "at byte 1: \"${credential:.}\": write ${credential:NAME}, NAME 1 to 255 of A-Z a-z 0-9 . _ "
     "- (not \".\" or \"..\")"},
    {"Bearer ${credential:a/b}", TPL_CTX_HEADER,
     "at byte 8: \"${credential:a/b}\": write ${credential:NAME}, NAME 1 to 255 of A-Z a-z 0-9 . _ "
     "- (not \".\" or \"..\")"},
    {"${checkpoint:x}", TPL_CTX_RAW,
     "at byte 1: \"${checkpoint:x}\": checkpoint takes no argument"},
    {"${checkpoint:}", TPL_CTX_RAW, "at byte 1: \"${checkpoint:}\": checkpoint takes no argument"},
    {"${now:YYYY}", TPL_CTX_URL,
     "at byte 1: \"${now:YYYY}\": the argument is rfc3339, rfc3339_ms, unix, unix_ms or a "
     "strftime format with a % conversion (%Y-%m-%d)"},
    {"${now:}", TPL_CTX_URL,
     "at byte 1: \"${now:}\": the argument is rfc3339, rfc3339_ms, unix, unix_ms or a strftime "
     "format with a % conversion (%Y-%m-%d)"},
    {"${interval_start:RFC3339}", TPL_CTX_URL,
     "at byte 1: \"${interval_start:RFC3339}\": the argument is rfc3339, rfc3339_ms, unix, "
     "unix_ms or a strftime format with a % conversion (%Y-%m-%d)"},
    {"${now:100%%}", TPL_CTX_URL,
     "at byte 1: \"${now:100%%}\": the argument is rfc3339, rfc3339_ms, unix, unix_ms or a "
     "strftime format with a % conversion (%Y-%m-%d)"},
    {"${last_success:%Y%}", TPL_CTX_URL,
     "at byte 1: \"${last_success:%Y%}\": the format ends inside a % conversion; the argument is "
     "rfc3339, rfc3339_ms, unix, unix_ms or a strftime format with a % conversion (%Y-%m-%d)"},
    {"${now:%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c}", TPL_CTX_RAW,
     "at byte 1: \"${now:%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c%c...\": the format gives more than "
     "256 bytes"},
    /* JSON string syntax inside a placeholder */
    {"${now:%Y\\n}", TPL_CTX_JSON,
     "at byte 1: \"${now:%Y\\\\n}\": a '\"' or '\\' inside a placeholder in a JSON string would "
     "be JSON string syntax, not part of the placeholder"},
    {"x ${now:\"%Y}", TPL_CTX_JSON,
     "at byte 3: \"${now:\\\"%Y}\": a '\"' or '\\' inside a placeholder in a JSON string would "
     "be JSON string syntax, not part of the placeholder"},
    /* the first error wins */
    {"${now:unix} ${bad} ${", TPL_CTX_RAW,
     "at byte 13: unknown placeholder \"${bad}\" (known: now, interval_start, interval_end, "
     "last_success, checkpoint, env:NAME, credential:NAME; write $${ for a literal ${)"},
};

START_TEST(parse_error)
{
    unsetenv("TPL_TEST_UNSET");
    expect_parse_err(parse_errors[_i].text, strlen(parse_errors[_i].text), parse_errors[_i].ctx,
                     parse_errors[_i].err);
}
END_TEST

START_TEST(parse_error_nul)
{
    /* a NUL inside a placeholder is quoted, not a cut string */
    expect_parse_err("${no\0w}", 7, TPL_CTX_RAW,
                     "at byte 1: unknown placeholder \"${no\\x00w}\" (known: now, interval_start, "
                     "interval_end, last_success, checkpoint, env:NAME, credential:NAME; write $${ "
                     "for a literal ${)");
    expect_parse_err("${now:%Y\0}", 10, TPL_CTX_RAW,
                     "at byte 1: \"${now:%Y\\x00}\": the format holds a NUL byte; the argument is "
                     "rfc3339, rfc3339_ms, unix, unix_ms or a strftime format with a % conversion "
                     "(%Y-%m-%d)");
    /* escapes count against the quote's length: the message stays short */
    char many[64] = "${";
    size_t n = 2 + 40;
    many[n++] = '}';
    expect_parse_err(many, n, TPL_CTX_RAW,
                     "at byte 1: unknown placeholder \"${\\x00\\x00\\x00\\x00\\x00\\x00"
                     "\\x00\\x00\\x00...\" (known: now, interval_start, interval_end, "
                     "last_success, checkpoint, env:NAME, credential:NAME; write $${ for a literal "
                     "${)");
    /* the same placeholder in other contexts is fine */
    struct tpl *t = parse_ok("${now:%Y\\n}", TPL_CTX_RAW);
    tpl_free(t);
}
END_TEST

START_TEST(parse_credential_names)
{
    char name[300];
    memset(name, 'a', sizeof(name));
    /* 255 characters: fine; 256: not */
    char text[320];
    snprintf(text, sizeof(text), "${credential:%.255s}", name);
    struct tpl *t = parse_ok(text, TPL_CTX_HEADER);
    size_t n;
    ck_assert_uint_eq(strlen(tpl_credentials(t, &n)[0]), 255);
    tpl_free(t);
    snprintf(text, sizeof(text), "${credential:%.256s}", name);
    char err[256];
    ck_assert_int_eq(tpl_parse(text, strlen(text), TPL_CTX_HEADER, &t, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "NAME 1 to 255"));

    t = parse_ok("${credential:A.b-c_9}${credential:...}${credential:.x}", TPL_CTX_URL);
    const char *const *c = tpl_credentials(t, &n);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(c[0], "A.b-c_9");
    ck_assert_str_eq(c[1], "...");
    ck_assert_str_eq(c[2], ".x");
    tpl_free(t);
}
END_TEST

START_TEST(parse_env_at_parse_time)
{
    setenv("TPL_TEST_ENV", "before", 1);
    struct tpl *t = parse_ok("<${env:TPL_TEST_ENV}>", TPL_CTX_RAW);
    /* the value was copied: a later change or unset does not reach it */
    setenv("TPL_TEST_ENV", "after", 1);
    unsetenv("TPL_TEST_ENV");
    struct buf out = {0};
    struct tpl_values v = values();
    ck_assert_int_eq(tpl_render(t, &v, &out, NULL, 0), 0);
    ck_assert_str_eq(out.data, "<before>");
    buf_done(&out);
    tpl_free(t);

    setenv("TPL_TEST_ENV", "", 1);
    expect("<${env:TPL_TEST_ENV}>", TPL_CTX_URL, "<>");
    setenv("_x9", "y", 1);
    expect("${env:_x9}", TPL_CTX_URL, "y");

    /* a header learns about a line break when the configuration loads */
    setenv("TPL_TEST_ENV", "a\nb", 1);
    expect_parse_err("X ${env:TPL_TEST_ENV}", 21, TPL_CTX_HEADER,
                     "at byte 3: \"${env:TPL_TEST_ENV}\": the environment variable has a line "
                     "break, which cannot go into a header");
    expect("${env:TPL_TEST_ENV}", TPL_CTX_RAW, "a\nb");
    unsetenv("TPL_TEST_ENV");
}
END_TEST

/* ---- escaping ------------------------------------------------------------ */

START_TEST(escape_url)
{
    setenv("TPL_TEST_ENV", NASTY, 1);
    expect("q=${env:TPL_TEST_ENV}&x", TPL_CTX_URL,
           "q=a%20b%26c%2Fd%25e%22f%5Cg%0Ah%C3%A9i%FFj%2Bk~_.-&x");
    expect("q=${env:TPL_TEST_ENV}&x", TPL_CTX_FORM,
           "q=a+b%26c%2Fd%25e%22f%5Cg%0Ah%C3%A9i%FFj%2Bk~_.-&x");
    /* every byte value */
    char all[256];
    for (int i = 0; i < 256; i++) {
        all[i] = (char)(i + 1); /* 1..255, then 0 as the C string's end */
    }
    all[255] = '\0';
    setenv("TPL_TEST_ENV", all, 1);
    struct tpl *t = parse_ok("${env:TPL_TEST_ENV}", TPL_CTX_URL);
    struct buf out = {0};
    struct tpl_values v = values();
    ck_assert_int_eq(tpl_render(t, &v, &out, NULL, 0), 0);
    char want[1024];
    size_t w = 0;
    for (int c = 1; c < 256; c++) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            want[w++] = (char)c;
        } else {
            w += (size_t)sprintf(want + w, "%%%02X", c);
        }
    }
    want[w] = '\0';
    ck_assert_str_eq(out.data, want);
    buf_done(&out);
    tpl_free(t);
    unsetenv("TPL_TEST_ENV");
}
END_TEST

START_TEST(escape_json)
{
    setenv("TPL_TEST_ENV", NASTY "\x01\t\r\b\f\x7f", 1);
    expect("{${env:TPL_TEST_ENV}}", TPL_CTX_JSON,
           "{a b&c/d%e\\\"f\\\\g\\nh\xc3\xa9i\xef\xbf\xbdj+k~_.-\\u0001\\t\\r\\b\\f\x7f}");
    setenv("TPL_TEST_ENV", "\xe2\x82\xac \xf0\x9f\x98\x80 \xc3 \xed\xa0\x80", 1);
    /* valid UTF-8 passes; a cut sequence and a surrogate become U+FFFD each byte */
    expect("${env:TPL_TEST_ENV}", TPL_CTX_JSON,
           "\xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    unsetenv("TPL_TEST_ENV");
}
END_TEST

START_TEST(escape_raw_header)
{
    setenv("TPL_TEST_ENV", "a b&c/d%e\"f\\g\xc3\xa9i\xffj", 1);
    expect("X: ${env:TPL_TEST_ENV}", TPL_CTX_HEADER, "X: a b&c/d%e\"f\\g\xc3\xa9i\xffj");
    setenv("TPL_TEST_ENV", NASTY, 1);
    expect("${env:TPL_TEST_ENV}", TPL_CTX_RAW, NASTY);
    unsetenv("TPL_TEST_ENV");
}
END_TEST

START_TEST(escape_checkpoint)
{
    struct tpl_values v = values();
    static const char cp[] = "a \"b\"\n\0c&d";
    v.checkpoint = cp;
    v.checkpoint_len = sizeof(cp) - 1;
    expect_v("[${checkpoint}]", TPL_CTX_URL, &v, "[a%20%22b%22%0A%00c%26d]", 24);
    expect_v("[${checkpoint}]", TPL_CTX_FORM, &v, "[a+%22b%22%0A%00c%26d]", 22);
    const char *w = "[a \\\"b\\\"\\n\\u0000c&d]";
    expect_v("[${checkpoint}]", TPL_CTX_JSON, &v, w, strlen(w));
    expect_v("[${checkpoint}]", TPL_CTX_RAW, &v, "[a \"b\"\n\0c&d]", 12);
    /* none yet: empty */
    v.checkpoint = NULL;
    v.checkpoint_len = 5;
    expect_v("[${checkpoint}]", TPL_CTX_URL, &v, "[]", 2);
    expect_v("[${checkpoint}]", TPL_CTX_HEADER, &v, "[]", 2);
}
END_TEST

/* ---- times --------------------------------------------------------------- */

static const struct {
    const char *text;
    const char *want;
} times_utc[] = {
    {"${now}", "2026-11-22T06:30:00Z"},
    {"${now:rfc3339}", "2026-11-22T06:30:00Z"},
    {"${now:rfc3339_ms}", "2026-11-22T06:30:00.123Z"},
    {"${now:unix}", "1795329000"},
    {"${now:unix_ms}", "1795329000123"},
    {"${interval_start}", "2026-11-22T05:30:00Z"},
    {"${interval_start:rfc3339_ms}", "2026-11-22T05:30:00.000Z"},
    {"${interval_end:unix}", "1795329000"},
    {"${last_success}", "2026-11-21T06:30:00Z"},
    {"${last_success:unix_ms}", "1795242600999"},
    {"${last_success:rfc3339_ms}", "2026-11-21T06:30:00.999Z"},
    {"${now:%Y-%m-%d %H:%M:%S}", "2026-11-22 06:30:00"},
    {"${now:%d/%m/%Y}", "22/11/2026"},
    {"${now:%s}", "1795329000"},
    {"${now:%%s=%s}", "%s=1795329000"},
    {"${now:%z %Z}", "+0000 UTC"},
    {"${now:%A %B %j}", "Sunday November 326"},
    {"${now:100%% %Y}", "100% 2026"},
    {"${now:%-d.%-m.}", "22.11."},
    {"${now:%Ey}", "26"},
    {"${interval_start:%H}-${interval_end:%H}", "05-06"},
};

START_TEST(time_utc)
{
    expect(times_utc[_i].text, TPL_CTX_RAW, times_utc[_i].want);
}
END_TEST

START_TEST(time_escaped)
{
    expect("from=${now}", TPL_CTX_URL, "from=2026-11-22T06%3A30%3A00Z");
    expect("from=${now:%Y-%m-%d %H:%M}", TPL_CTX_FORM, "from=2026-11-22+06%3A30");
    struct tpl_values v = values();
    v.tz_env = BERLIN;
    const char *w = "from=2026-11-22T07%3A30%3A00%2B01%3A00";
    expect_v("from=${now}", TPL_CTX_URL, &v, w, strlen(w));
    /* a header refuses a line break from strftime ("%n") */
    struct tpl *t = parse_ok("X ${now:%Y%n}", TPL_CTX_HEADER);
    struct buf out = {0};
    char err[256];
    ck_assert_int_eq(tpl_render(t, &v, &out, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "placeholder \"${now:%Y%n}\" at byte 3: the value has a line break or "
                          "NUL, which cannot go into a header");
    buf_done(&out);
    tpl_free(t);
    expect("${now:%Y%t%n}", TPL_CTX_JSON, "2026\\t\\n");
}
END_TEST

START_TEST(time_last_success_fallback)
{
    struct tpl_values v = values();
    v.last_success = 0;
    const char *w = "2026-11-22T05:30:00Z 1795325400";
    expect_v("${last_success} ${last_success:unix}", TPL_CTX_RAW, &v, w, strlen(w));
}
END_TEST

static const struct {
    const char *tz;
    usec_t t;
    const char *arg;
    const char *want;
} times_zoned[] = {
    {BERLIN, T_NOW, NULL, "2026-11-22T07:30:00+01:00"},
    {BERLIN, T_NOW, "rfc3339", "2026-11-22T07:30:00+01:00"},
    {BERLIN, T_NOW, "rfc3339_ms", "2026-11-22T07:30:00.123+01:00"},
    {BERLIN, T_NOW, "%H:%M %Z %z", "07:30 CET +0100"},
    {BERLIN, T_SUMMER, NULL, "2026-07-01T14:00:00+02:00"},
    {BERLIN, T_SUMMER, "%H:%M %Z %z", "14:00 CEST +0200"},
    /* zones do not change seconds since the epoch */
    {BERLIN, T_SUMMER, "unix", "1782907200"},
    {BERLIN, T_SUMMER, "%s", "1782907200"},
    {BERLIN, T_NOW, "unix_ms", "1795329000123"},
    {ST_JOHNS, T_NOW, NULL, "2026-11-22T03:00:00-03:30"},
    {ST_JOHNS, T_NOW, "rfc3339_ms", "2026-11-22T03:00:00.123-03:30"},
    {ST_JOHNS, T_SUMMER, NULL, "2026-07-01T09:30:00-02:30"},
    {ST_JOHNS, T_NOW, "%Y-%m-%d %H:%M %Z", "2026-11-22 03:00 NST"},
    {ST_JOHNS, T_NOW, "%s", "1795329000"},
    /* a zone at offset 0 is not "Z": the offset says which zone */
    {":/usr/share/zoneinfo/UTC", T_NOW, NULL, "2026-11-22T06:30:00+00:00"},
    {":/usr/share/zoneinfo/Europe/London", T_NOW, NULL, "2026-11-22T06:30:00+00:00"},
    {":/usr/share/zoneinfo/Europe/London", T_SUMMER, NULL, "2026-07-01T13:00:00+01:00"},
    {NULL, T_SUMMER, NULL, "2026-07-01T12:00:00Z"},
    {NULL, T_SUMMER, "%s %Z", "1782907200 UTC"},
    {NULL, 0, NULL, "1970-01-01T00:00:00Z"},
    {NULL, 999, "rfc3339_ms", "1970-01-01T00:00:00.000Z"},
    {NULL, 1999999, "unix", "1"}, /* floor, not rounded */
    {NULL, 1999999, "unix_ms", "1999"},
};

START_TEST(time_zoned)
{
    /* the process has a zone of its own, which must be left alone */
    setenv("TZ", "Asia/Tokyo", 1);
    tzset();
    struct buf out = {0};
    ck_assert_int_eq(buf_puts(&out, ">"), 0);
    int r = tpl_format_time(times_zoned[_i].t, times_zoned[_i].arg, times_zoned[_i].tz, &out);
    ck_assert_int_eq(r, 0);
    ck_assert_str_eq(out.data + 1, times_zoned[_i].want);
    ck_assert_str_eq(getenv("TZ"), "Asia/Tokyo");
    buf_done(&out);

    /* the same through a template */
    char text[64];
    snprintf(text, sizeof(text), "${now%s%s}", times_zoned[_i].arg ? ":" : "",
             times_zoned[_i].arg ? times_zoned[_i].arg : "");
    struct tpl_values v = values();
    v.now = times_zoned[_i].t;
    v.tz_env = times_zoned[_i].tz;
    expect_v(text, TPL_CTX_RAW, &v, times_zoned[_i].want, strlen(times_zoned[_i].want));
    ck_assert_str_eq(getenv("TZ"), "Asia/Tokyo");
    /* and tzset() state too: localtime is Tokyo's again */
    time_t tt = 1795329000;
    struct tm tm;
    localtime_r(&tt, &tm);
    ck_assert_int_eq(tm.tm_gmtoff, 9 * 3600);
    ck_assert_int_eq(tm.tm_hour, 15);
}
END_TEST

START_TEST(time_tz_unset_restored)
{
    unsetenv("TZ");
    tzset();
    struct tpl_values v = values();
    v.tz_env = BERLIN;
    const char *w = "07:30 2026-11-22T06:30:00Z";
    expect_v("${now:%H:%M} ", TPL_CTX_RAW, &v, "07:30 ", 6);
    ck_assert_ptr_null(getenv("TZ"));
    v.tz_env = NULL;
    expect_v("07:30 ${now}", TPL_CTX_RAW, &v, w, strlen(w));
    ck_assert_ptr_null(getenv("TZ"));
}
END_TEST

START_TEST(time_format_errors)
{
    struct buf out = {0};
    ck_assert_int_eq(buf_puts(&out, "keep"), 0);
    ck_assert_int_eq(tpl_format_time(T_NOW, "unix_s", NULL, &out), -EINVAL);
    ck_assert_int_eq(tpl_format_time(T_NOW, "", NULL, &out), -EINVAL);
    ck_assert_int_eq(tpl_format_time(T_NOW, "%", NULL, &out), -EINVAL);
    ck_assert_int_eq(tpl_format_time(T_NOW, "%%", NULL, &out), -EINVAL);
    /* 300 bytes: over the cap */
    char f[301];
    memset(f, 'x', 299);
    f[0] = '%';
    f[1] = 'Y';
    f[299] = '\0';
    ck_assert_int_eq(tpl_format_time(T_NOW, f, NULL, &out), -EINVAL);
    ck_assert_str_eq(out.data, "keep");
    ck_assert_uint_eq(out.len, 4);
    /* exactly 256 is fine */
    f[256 - 2] = '\0';
    ck_assert_int_eq(tpl_format_time(T_NOW, f, NULL, &out), 0);
    ck_assert_uint_eq(out.len, 4 + 256);
    buf_done(&out);
}
END_TEST

/* ---- rendering ----------------------------------------------------------- */

START_TEST(render_credentials)
{
    cred_calls = 0;
    expect("Bearer ${credential:api_key}", TPL_CTX_HEADER, "Bearer k3y/with space&more");
    expect("k=${credential:api_key}", TPL_CTX_URL, "k=k3y%2Fwith%20space%26more");
    expect("k=${credential:api_key}", TPL_CTX_FORM, "k=k3y%2Fwith+space%26more");
    expect("${credential:nl}", TPL_CTX_JSON, "line1\\r\\nline2");
    ck_assert_int_eq(cred_calls, 4);

    struct tpl_values v = values();
    struct buf out = {0};
    char err[256];
    ck_assert_int_eq(buf_puts(&out, "keep"), 0);
    struct tpl *t = parse_ok("Bearer ${credential:nl}", TPL_CTX_HEADER);
    ck_assert_int_eq(tpl_render(t, &v, &out, err, sizeof(err)), -EINVAL);
    /* names the placeholder, never the value */
    ck_assert_str_eq(err, "placeholder \"${credential:nl}\" at byte 8: the value has a line break "
                          "or NUL, which cannot go into a header");
    ck_assert_str_eq(out.data, "keep");
    tpl_free(t);

    t = parse_ok("a ${now} ${credential:missing}", TPL_CTX_URL);
    ck_assert_int_eq(tpl_render(t, &v, &out, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "placeholder \"${credential:missing}\" at byte 10: cannot read "
                          "/run/credentials/fetchd/missing: No such file or directory");
    ck_assert_str_eq(out.data, "keep");
    ck_assert_uint_eq(out.len, 4);

    v.credential = NULL;
    ck_assert_int_eq(tpl_render(t, &v, &out, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "placeholder \"${credential:missing}\" at byte 10: no credentials here");
    ck_assert_str_eq(out.data, "keep");
    tpl_free(t);

    v = values();
    t = parse_ok("x${credential:oom}", TPL_CTX_URL);
    ck_assert_int_eq(tpl_render(t, &v, &out, err, sizeof(err)), -ENOMEM);
    ck_assert_str_eq(out.data, "keep");
    tpl_free(t);
    buf_done(&out);
}
END_TEST

START_TEST(render_appends_and_caps)
{
    struct tpl *t = parse_ok("${now:unix}-${checkpoint}", TPL_CTX_URL);
    struct tpl_values v = values();
    struct buf out = {0};
    ck_assert_int_eq(buf_puts(&out, "pre:"), 0);
    ck_assert_int_eq(tpl_render(t, &v, &out, NULL, 0), 0);
    ck_assert_str_eq(out.data, "pre:1795329000-cp");
    ck_assert_int_eq(tpl_render(t, &v, &out, NULL, 0), 0);
    ck_assert_str_eq(out.data, "pre:1795329000-cp1795329000-cp");
    buf_done(&out);

    /* out's cap: exactly enough works, one less is -E2BIG and out is as it was */
    out.max = 4 + 13;
    ck_assert_int_eq(buf_puts(&out, "pre:"), 0);
    ck_assert_int_eq(tpl_render(t, &v, &out, NULL, 0), 0);
    ck_assert_str_eq(out.data, "pre:1795329000-cp");
    buf_done(&out);
    out.max = 4 + 12;
    ck_assert_int_eq(buf_puts(&out, "pre:"), 0);
    ck_assert_int_eq(tpl_render(t, &v, &out, NULL, 0), -E2BIG);
    ck_assert_str_eq(out.data, "pre:");
    ck_assert_uint_eq(out.len, 4);
    buf_done(&out);
    tpl_free(t);

    /* JSON: the cap counts the escaped value, not json_escape()'s worst case */
    t = parse_ok("${checkpoint}", TPL_CTX_JSON);
    v.checkpoint = "abcdefgh";
    v.checkpoint_len = 8;
    out.max = 8;
    ck_assert_int_eq(tpl_render(t, &v, &out, NULL, 0), 0);
    ck_assert_str_eq(out.data, "abcdefgh");
    buf_done(&out);
    tpl_free(t);

    /* NULL template: nothing */
    ck_assert_int_eq(tpl_render(NULL, &v, &out, NULL, 0), 0);
    ck_assert_uint_eq(out.len, 0);
}
END_TEST

START_TEST(render_every_placeholder)
{
    setenv("TPL_TEST_ENV", "e v", 1);
    expect("${now:unix}|${interval_start:unix}|${interval_end:unix}|${last_success:unix}|"
           "${env:TPL_TEST_ENV}|${credential:api_key}|${checkpoint}|$${now}",
           TPL_CTX_FORM,
           "1795329000|1795325400|1795329000|1795242600|e+v|k3y%2Fwith+space%26more|cp|${now}");
    unsetenv("TPL_TEST_ENV");
}
END_TEST

static Suite *template_suite(void)
{
    Suite *s = suite_create("template");
    TCase *tc;

    tc = tcase_create("parse");
    tcase_add_test(tc, parse_plain_is_null);
    tcase_add_test(tc, parse_literal_dollar);
    tcase_add_test(tc, parse_uses);
    tcase_add_loop_test(tc, parse_error, 0, N_ELEMS(parse_errors));
    tcase_add_test(tc, parse_error_nul);
    tcase_add_test(tc, parse_credential_names);
    tcase_add_test(tc, parse_env_at_parse_time);
    suite_add_tcase(s, tc);

    tc = tcase_create("escape");
    tcase_add_test(tc, escape_url);
    tcase_add_test(tc, escape_json);
    tcase_add_test(tc, escape_raw_header);
    tcase_add_test(tc, escape_checkpoint);
    suite_add_tcase(s, tc);

    tc = tcase_create("time");
    tcase_add_loop_test(tc, time_utc, 0, N_ELEMS(times_utc));
    tcase_add_test(tc, time_escaped);
    tcase_add_test(tc, time_last_success_fallback);
    tcase_add_loop_test(tc, time_zoned, 0, N_ELEMS(times_zoned));
    tcase_add_test(tc, time_tz_unset_restored);
    tcase_add_test(tc, time_format_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("render");
    tcase_add_test(tc, render_credentials);
    tcase_add_test(tc, render_appends_and_caps);
    tcase_add_test(tc, render_every_placeholder);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(template_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
