/* test-url.c - unit tests for src/url.h: url_validate, url_redact and
 * url_has_secrets; url_validate_schemes, url_scheme_bit/of, url_same_origin,
 * url_resolve and url_add_query. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- url_validate: accepted --------------------------------------------- */

static const char *const valid_urls[] = {
    "http://example.com",
    "https://example.com",
    "http://example.com/",
    "https://example.com/path/to?q=1&r=two#frag",
    "HTTP://EXAMPLE.COM/",
    "HTTPS://example.com/",
    "HtTpS://example.com/x",
    "hTTp://example.com/x",
    "http://localhost:8080/x",
    "http://127.0.0.1/",
    "http://[::1]:8080/metrics",
    "https://user:pass@example.com/",
    "https://token@example.com/",
    "http://example.com:80",
    "https://api.example.com/v1/items?api_key=abc%20def",
    "http://a",
};

START_TEST(validate_ok)
{
    char err[256];
    strcpy(err, "untouched");
    int r = url_validate(valid_urls[_i], err, sizeof(err));
    ck_assert_msg(r == 0, "\"%s\": expected 0, got %d (%s)", valid_urls[_i], r, err);
}
END_TEST

START_TEST(validate_max_len)
{
    static const char prefix[] = "http://example.com/";
    char *u = malloc(URL_MAX_LEN + 2);
    ck_assert_ptr_nonnull(u);
    memcpy(u, prefix, strlen(prefix));
    memset(u + strlen(prefix), 'a', URL_MAX_LEN + 1 - strlen(prefix));
    char err[256];

    u[URL_MAX_LEN] = '\0'; /* exactly URL_MAX_LEN bytes: accepted */
    ck_assert_uint_eq(strlen(u), URL_MAX_LEN);
    ck_assert_int_eq(url_validate(u, err, sizeof(err)), 0);

    u[URL_MAX_LEN] = 'a'; /* one more: rejected */
    u[URL_MAX_LEN + 1] = '\0';
    ck_assert_int_eq(url_validate(u, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "8192"));
    ck_assert_ptr_null(strstr(err, "aaaa")); /* the URL itself is not echoed */
    free(u);

    /* much longer */
    size_t big = 100000;
    u = malloc(big + 1);
    ck_assert_ptr_nonnull(u);
    memcpy(u, prefix, strlen(prefix));
    memset(u + strlen(prefix), 'b', big - strlen(prefix));
    u[big] = '\0';
    ck_assert_int_eq(url_validate(u, err, sizeof(err)), -EINVAL);
    ck_assert_uint_lt(strlen(err), sizeof(err));
    free(u);
}
END_TEST

/* ---- url_validate: rejected --------------------------------------------- */

static const struct {
    const char *url;
    const char *msg; /* expected substring of the error, or NULL */
} invalid_urls[] = {
    {"", "empty"},
    {"file:///etc/passwd", "file"},
    {"FILE:///etc/passwd", "FILE"},
    {"ftp://example.com/", "ftp"},
    {"gopher://example.com/", "gopher"},
    {"ws://example.com/", "ws"},
    {"ldap://example.com/", "ldap"},
    {"javascript://example.com/%0aalert(1)", "javascript"},
    {"httpx://example.com/", "httpx"},
    {"xhttp://example.com/", "xhttp"},
    {"http+unix://example.com/", NULL},
    {"://example.com/", NULL},
    {"example.com", "scheme"},
    {"example.com/path", "scheme"},
    {"//example.com/", "scheme"},
    {"http:example.com", "scheme"},
    {"http:/example.com", "scheme"},
    {"mailto:user@example.com", "scheme"},
    {"http://exa mple.com/", "byte 11"},
    {"http://example.com/a b", "byte 21"},
    {" http://example.com/", "byte 1"},
    {"http://example.com/ ", NULL},
    {"http://example.com/\r\nHost: evil", NULL},
    {"http://example.com/\n", NULL},
    {"http://example.com/\r", NULL},
    {"http://example.com/\t", NULL},
    {"\thttp://example.com/", NULL},
    {"http://exa\x01mple.com/", NULL},
    {"http://example.com/\x7f", NULL},
    {"http://", "host"},
    {"https://:80/", "host"},
    {"http://user:pass@/", "host"},
    {"http://user@:80/", "host"},
    {"https:///?a=1", NULL},
    {"http://example.com:99999/", NULL},
    {"http://[::1/", NULL},
    {"http://exa%20mple.com/", NULL},
};

START_TEST(validate_rejects)
{
    char err[512];
    memset(err, 0, sizeof(err));
    int r = url_validate(invalid_urls[_i].url, err, sizeof(err));
    ck_assert_msg(r == -EINVAL, "\"%s\": expected -EINVAL, got %d", invalid_urls[_i].url, r);
    ck_assert_uint_gt(strlen(err), 0);
    ck_assert_msg(strchr(err, '\n') == NULL && strchr(err, '\r') == NULL,
                  "error is not one line: %s", err);
    if (invalid_urls[_i].msg) {
        ck_assert_msg(strstr(err, invalid_urls[_i].msg) != NULL,
                      "\"%s\": error \"%s\" does not mention \"%s\"", invalid_urls[_i].url, err,
                      invalid_urls[_i].msg);
    }
}
END_TEST

/* BUG: "http:///path" (empty authority) is accepted: libcurl's lenient parser
 * skips the third slash and takes "path" as the host, so the URL as written
 * (no host) and the URL libcurl fetches (http://path/) differ. */
START_TEST(validate_rejects_empty_authority)
{
    char err[256] = "";
    int r = url_validate("http:///path", err, sizeof(err));
    ck_assert_msg(r == -EINVAL, "\"http:///path\" has an empty host but was accepted (%d)", r);
}
END_TEST

START_TEST(validate_small_err_buffer)
{
    char err[8];
    memset(err, 'Z', sizeof(err));
    ck_assert_int_eq(url_validate("ftp://example.com/", err, sizeof(err)), -EINVAL);
    ck_assert_uint_eq(strlen(err), sizeof(err) - 1); /* truncated, terminated */
    char one[1] = {'Z'};
    ck_assert_int_eq(url_validate("", one, sizeof(one)), -EINVAL);
    ck_assert_int_eq(one[0], '\0');
}
END_TEST

/* ---- url_validate: the error never contains the password ----------------- */

static const char *const secret_urls[] = {
    "ftp://alice:hunter2@example.com/",
    "gopher://alice:hunter2@example.com/",
    "file://alice:hunter2@localhost/etc/passwd",
    "http://alice:hunter2@/",
    "http://alice:hunter2@exa mple.com/",
    "http://alice:hunter2@example.com:99999/",
    "http://alice:hunter2@[::1/",
    "http://alice:hunter2@example.com/\r\n",
    "alice:hunter2@example.com/",
    /* BUG: with no scheme but a "://" later in the URL (a query parameter
     * holding a URL, or the typo "https//"), everything before that "://"
     * is echoed as the "scheme", up to 16 bytes, including the password. */
    "alice:hunter2@example.com/cb?next=https://x",
    "https//a:hunter2@example.com/?r=http://y",
};

START_TEST(validate_no_password_in_error)
{
    char err[512] = "";
    int r = url_validate(secret_urls[_i], err, sizeof(err));
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_msg(strstr(err, "hunter2") == NULL, "\"%s\": the error leaks the password: %s",
                  secret_urls[_i], err);
}
END_TEST

/* ---- url_redact / url_has_secrets --------------------------------------- */

static const struct {
    const char *in;
    const char *want; /* NULL: unchanged */
} redact_cases[] = {
    {"https://example.com/path", NULL},
    {"https://example.com", NULL},
    {"", NULL},
    {"https://user:pass@example.com/p", "https://user:***@example.com/p"},
    {"https://token@example.com/", "https://***@example.com/"},
    {"https://ghp_abcdef123@example.com", "https://***@example.com"},
    {"http://user:pw@host:8080/x", "http://user:***@host:8080/x"},
    {"http://user:pw@host", "http://user:***@host"},
    {"http://user:pw@host?x=1", "http://user:***@host?x=1"},
    {"http://user:pw@host#f", "http://user:***@host#f"},
    {"https://user:p@ss@example.com/", "https://user:***@example.com/"},
    {"https://user:pa:ss@example.com/", "https://user:***@example.com/"},
    {"https://user:@example.com/", "https://user:***@example.com/"},
    {"HTTPS://U:P@H/", "HTTPS://U:***@H/"},
    /* '@' outside the authority is not userinfo */
    {"https://example.com/a@b", NULL},
    {"https://example.com/?email=a@b.c", NULL},
    {"https://example.com/#a@b", NULL},
    /* query parameters */
    {"https://example.com/?api_key=abc123&page=2", "https://example.com/?api_key=***&page=2"},
    {"https://example.com/?page=2&api_key=abc123", "https://example.com/?page=2&api_key=***"},
    {"https://example.com/?access_token=xyz", "https://example.com/?access_token=***"},
    {"https://example.com/?password=secret", "https://example.com/?password=***"},
    {"https://example.com/?PASSWORD=secret", "https://example.com/?PASSWORD=***"},
    {"https://example.com/?passwd=secret", "https://example.com/?passwd=***"},
    {"https://example.com/?client_secret=s", "https://example.com/?client_secret=***"},
    {"https://example.com/?session_id=1", "https://example.com/?session_id=***"},
    {"https://example.com/?auth=1", "https://example.com/?auth=***"},
    {"https://example.com/?Authorization=Bearer%20x", "https://example.com/?Authorization=***"},
    {"https://example.com/?apiKey=K", "https://example.com/?apiKey=***"},
    {"https://example.com/?Key=K", "https://example.com/?Key=***"},
    {"https://example.com/?credentials=c", "https://example.com/?credentials=***"},
    {"https://b.s3.amazonaws.com/o?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F"
     "20240101&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-Security-Token=tok&"
     "X-Amz-Signature=abcdef",
     "https://b.s3.amazonaws.com/o?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***&"
     "X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-Security-Token=***&"
     "X-Amz-Signature=***"},
    {"https://example.com/?Signature=abc&Expires=1",
     "https://example.com/?Signature=***&Expires=1"},
    {"https://example.com/?sig=abc", "https://example.com/?sig=***"},
    /* ordinary parameters are left alone */
    {"https://example.com/?page=2&limit=10&q=hello&sort=asc&format=json&lang=en", NULL},
    {"https://example.com/search?q=weather+berlin&units=metric&cnt=5", NULL},
    {"https://example.com/?id=42&from=2024-01-01&to=2024-12-31", NULL},
    /* fragments are preserved */
    {"https://example.com/p?token=abc#section-2", "https://example.com/p?token=***#section-2"},
    {"https://example.com/p#frag", NULL},
    {"https://example.com/p?a=1#frag", NULL},
    {"https://u:p@example.com/p?q=1&key=v#f", "https://u:***@example.com/p?q=1&key=***#f"},
    {"https://example.com/?a=1&api_key=k#frag&token=zz",
     "https://example.com/?a=1&api_key=***#frag&token=***"},
    /* empty values and parameters without '=' have nothing to hide */
    {"https://example.com/?token=", NULL},
    {"https://example.com/?token", NULL},
    {"https://example.com/?token&page=1", NULL},
    {"https://example.com/?token=&page=1", NULL},
    {"https://example.com/?", NULL},
    /* several secrets, separators kept */
    {"https://example.com/?key=a&key=b", "https://example.com/?key=***&key=***"},
    {"https://example.com/?&&token=x&", "https://example.com/?&&token=***&"},
    {"https://example.com/?token=a=b&x=1", "https://example.com/?token=***&x=1"},
    {"https://u:p@example.com/?token=t", "https://u:***@example.com/?token=***"},
};

START_TEST(redact)
{
    const char *in = redact_cases[_i].in;
    const char *want = redact_cases[_i].want ? redact_cases[_i].want : in;
    char *got = url_redact(in);
    ck_assert_ptr_nonnull(got);
    ck_assert_ptr_ne(got, in);
    ck_assert_msg(strcmp(got, want) == 0, "\"%s\": expected \"%s\", got \"%s\"", in, want, got);
    ck_assert_msg(url_has_secrets(in) == (redact_cases[_i].want != NULL),
                  "\"%s\": url_has_secrets() is %d", in, url_has_secrets(in));
    /* redaction is idempotent and leaves nothing to redact */
    char *again = url_redact(got);
    ck_assert_ptr_nonnull(again);
    ck_assert_str_eq(again, got);
    free(again);
    free(got);
}
END_TEST

/* Redacting a validated URL with credentials keeps it a valid URL without
 * the secret. */
START_TEST(redact_keeps_valid)
{
    static const char *const in[] = {
        "https://alice:hunter2@example.com/v1?api_key=hunter2&page=1#top",
        "http://hunter2@example.com:8080/",
        "https://example.com/?access_token=hunter2",
    };
    for (size_t i = 0; i < N_ELEMS(in); i++) {
        char err[256];
        ck_assert_int_eq(url_validate(in[i], err, sizeof(err)), 0);
        ck_assert(url_has_secrets(in[i]));
        char *r = url_redact(in[i]);
        ck_assert_ptr_nonnull(r);
        ck_assert_ptr_null(strstr(r, "hunter2"));
        ck_assert_ptr_nonnull(strstr(r, "***"));
        ck_assert_msg(url_validate(r, err, sizeof(err)) == 0, "\"%s\": %s", r, err);
        free(r);
    }
}
END_TEST

/* ---- url_validate_schemes ------------------------------------------------ */

static const struct {
    const char *url;
    unsigned schemes;
    const char *msg; /* NULL: accepted, else a substring of the error */
} scheme_cases[] = {
    {"http://example.com/", URL_SCHEMES_DEFAULT, NULL},
    {"https://example.com/", URL_SCHEMES_DEFAULT, NULL},
    {"https://example.com/", URL_HTTPS, NULL},
    {"http://example.com/", URL_HTTPS, "scheme \"http\" is not allowed (allowed: https)"},
    {"HTTP://example.com/", URL_HTTPS, "scheme \"HTTP\" is not allowed (allowed: https)"},
    {"https://example.com/", URL_HTTP, "scheme \"https\" is not allowed (allowed: http)"},
    /* the default set points at the option; other sets do not */
    {"ftp://example.com/", URL_SCHEMES_DEFAULT,
     "scheme \"ftp\" is not allowed (allowed: http, https; others need \"schemes\")"},
    {"ftps://example.com/", URL_HTTP | URL_FTP,
     "scheme \"ftps\" is not allowed (allowed: http, ftp)"},
    {"ftp://example.com/pub/x.json", URL_FTP, NULL},
    {"ftps://example.com/pub/x.json", URL_FTPS, NULL},
    {"FtP://example.com/x", URL_FTP, NULL},
    {"gopher://example.com/", URL_HTTP | URL_HTTPS | URL_FILE | URL_FTP | URL_FTPS,
     "scheme \"gopher\" is not allowed (allowed: http, https, file, ftp, ftps)"},
    /* file URLs need no host but an absolute path */
    {"file:///etc/fetchd/data.json", URL_FILE, NULL},
    {"FILE:///x", URL_FILE, NULL},
    {"file:///etc/passwd", URL_SCHEMES_DEFAULT, "scheme \"file\" is not allowed"},
    {"file://etc/passwd", URL_FILE, "a file URL must be file:///ABSOLUTE/PATH"},
    {"file://localhost/etc/passwd", URL_FILE, "a file URL must be file:///ABSOLUTE/PATH"},
    {"file:/etc/passwd", URL_FILE, "no scheme"},
    /* the other checks still apply */
    {"ftp://", URL_FTP, "no host"},
    {"ftp://example.com/a b", URL_FTP, "byte 20"},
    {"file:///a b", URL_FILE, "byte 10"},
    {"", URL_FILE, "empty"},
};

START_TEST(validate_schemes)
{
    char err[256] = "";
    int r = url_validate_schemes(scheme_cases[_i].url, scheme_cases[_i].schemes, err, sizeof(err));
    if (!scheme_cases[_i].msg) {
        ck_assert_msg(r == 0, "\"%s\" (0x%x): expected 0, got %d (%s)", scheme_cases[_i].url,
                      scheme_cases[_i].schemes, r, err);
    } else {
        ck_assert_msg(r == -EINVAL, "\"%s\" (0x%x): expected -EINVAL, got %d", scheme_cases[_i].url,
                      scheme_cases[_i].schemes, r);
        ck_assert_msg(strstr(err, scheme_cases[_i].msg) != NULL,
                      "\"%s\": error \"%s\" does not contain \"%s\"", scheme_cases[_i].url, err,
                      scheme_cases[_i].msg);
    }
}
END_TEST

START_TEST(validate_is_default_schemes)
{
    char err[256];
    ck_assert_int_eq(url_validate("ftp://example.com/", err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(url_validate("file:///x", err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(url_validate("https://example.com/", err, sizeof(err)), 0);
}
END_TEST

/* ---- url_scheme_bit / url_scheme_of -------------------------------------- */

START_TEST(scheme_bits)
{
    ck_assert_uint_eq(url_scheme_bit("http", 4), URL_HTTP);
    ck_assert_uint_eq(url_scheme_bit("HTTPS", 5), URL_HTTPS);
    ck_assert_uint_eq(url_scheme_bit("File", 4), URL_FILE);
    ck_assert_uint_eq(url_scheme_bit("ftp", 3), URL_FTP);
    ck_assert_uint_eq(url_scheme_bit("ftps", 4), URL_FTPS);
    /* the length counts, not the NUL */
    ck_assert_uint_eq(url_scheme_bit("https", 4), URL_HTTP);
    ck_assert_uint_eq(url_scheme_bit("ftpsx", 4), URL_FTPS);
    ck_assert_uint_eq(url_scheme_bit("http", 3), 0);
    ck_assert_uint_eq(url_scheme_bit("gopher", 6), 0);
    ck_assert_uint_eq(url_scheme_bit("", 0), 0);
    ck_assert_uint_eq(URL_SCHEMES_DEFAULT, URL_HTTP | URL_HTTPS);

    ck_assert_uint_eq(url_scheme_of("http://a/"), URL_HTTP);
    ck_assert_uint_eq(url_scheme_of("HTTPS://a/"), URL_HTTPS);
    ck_assert_uint_eq(url_scheme_of("file:///etc/x"), URL_FILE);
    ck_assert_uint_eq(url_scheme_of("Ftp://a/"), URL_FTP);
    ck_assert_uint_eq(url_scheme_of("ftps://a/"), URL_FTPS);
    ck_assert_uint_eq(url_scheme_of("gopher://a/"), 0);
    ck_assert_uint_eq(url_scheme_of("xhttp://a/"), 0);
    ck_assert_uint_eq(url_scheme_of("httpx://a/"), 0);
    ck_assert_uint_eq(url_scheme_of("http:/a"), 0);
    ck_assert_uint_eq(url_scheme_of("/relative/path"), 0);
    ck_assert_uint_eq(url_scheme_of(""), 0);
}
END_TEST

/* ---- url_same_origin ----------------------------------------------------- */

static const struct {
    const char *a, *b;
    bool same;
} origin_cases[] = {
    {"http://a.example/", "http://a.example/", true},
    {"http://a.example/x?y=1", "http://a.example/other#f", true},
    /* default ports filled in */
    {"http://a.example/", "http://a.example:80/", true},
    {"https://a.example/", "https://a.example:443/z", true},
    {"http://a.example/", "http://a.example:0080/", true},
    {"http://[::1]:80/", "http://[::1]/", true},
    /* the scheme counts, even when the port is the same */
    {"https://a.example/", "http://a.example/", false},
    {"http://a.example:443/", "https://a.example/", false},
    {"https://a.example:8443/", "http://a.example:8443/", false},
    /* host and scheme are case-insensitive */
    {"http://API.Example.COM/", "http://api.example.com/", true},
    {"HTTP://a.example/", "http://a.example/", true},
    /* other host or port */
    {"http://a.example/", "http://b.example/", false},
    {"http://a.example/", "http://a.example.evil/", false},
    {"http://a.example:8080/", "http://a.example/", false},
    {"http://a.example:8080/", "http://a.example:8081/", false},
    {"https://a.example/", "https://a.example:8443/", false},
    /* userinfo is not part of the origin */
    {"http://u:p@a.example/", "http://a.example/", true},
    /* not parsable: never the same */
    {"nope", "http://a.example/", false},
    {"http://a.example/", "", false},
    {"/relative", "/relative", false},
};

START_TEST(same_origin)
{
    bool got = url_same_origin(origin_cases[_i].a, origin_cases[_i].b);
    ck_assert_msg(got == origin_cases[_i].same, "\"%s\" vs \"%s\": expected %d, got %d",
                  origin_cases[_i].a, origin_cases[_i].b, origin_cases[_i].same, got);
    /* symmetric */
    got = url_same_origin(origin_cases[_i].b, origin_cases[_i].a);
    ck_assert_msg(got == origin_cases[_i].same, "\"%s\" vs \"%s\" (swapped): expected %d, got %d",
                  origin_cases[_i].b, origin_cases[_i].a, origin_cases[_i].same, got);
}
END_TEST

/* ---- url_resolve --------------------------------------------------------- */

static const struct {
    const char *base, *ref;
    const char *want; /* NULL: fails */
} resolve_cases[] = {
    /* relative paths */
    {"http://a.example/b/c?x=1", "d", "http://a.example/b/d"},
    {"http://a.example/b/c/", "d?y=2", "http://a.example/b/c/d?y=2"},
    {"http://a.example/b/c", "../d", "http://a.example/d"},
    {"http://a.example/b/c", "./d/./e/../f", "http://a.example/b/d/f"},
    {"https://a.example:8443/b/c", "page/2", "https://a.example:8443/b/page/2"},
    /* absolute path keeps scheme, host and port */
    {"https://a.example:8443/b/c?x=1", "/abs?p=2", "https://a.example:8443/abs?p=2"},
    /* absolute URL replaces everything */
    {"http://a.example/b/c", "https://z.example/y?q=1", "https://z.example/y?q=1"},
    {"http://a.example/b/c", "ftp://f.example/x", "ftp://f.example/x"},
    /* protocol-relative: the base's scheme, another host */
    {"http://a.example/b/c?x=1", "//other.example/x", "http://other.example/x"},
    {"https://a.example:8443/b/c", "//o.example:9/x?y", "https://o.example:9/x?y"},
    /* query only: same path, new query */
    {"http://a.example/b/c?x=1", "?q=2", "http://a.example/b/c?q=2"},
    {"http://a.example/b/c", "?cursor=abc&n=5", "http://a.example/b/c?cursor=abc&n=5"},
    /* percent-encoding in the base survives */
    {"http://a.example/%7Euser/x", "y", "http://a.example/%7Euser/y"},
    /* RFC 3986 5.4.1 examples */
    {"http://a/b/c/d;p?q", "g", "http://a/b/c/g"},
    {"http://a/b/c/d;p?q", "g/", "http://a/b/c/g/"},
    {"http://a/b/c/d;p?q", "?y", "http://a/b/c/d;p?y"},
    {"http://a/b/c/d;p?q", "g?y#s", "http://a/b/c/g?y#s"},
    {"http://a/b/c/d;p?q", ";x", "http://a/b/c/;x"},
    {"http://a/b/c/d;p?q", "..", "http://a/b/"},
    {"http://a/b/c/d;p?q", "../../../g", "http://a/g"},
    {"http://a/b/c/d;p?q", "g;x=1/../y", "http://a/b/c/y"},
    /* failures */
    {"http://a.example/b", "", NULL},
    {"", "x", NULL},
    {"not a url", "x", NULL},
    {"http://a.example/b", "http://", NULL},
};

START_TEST(resolve)
{
    char *got = url_resolve(resolve_cases[_i].base, resolve_cases[_i].ref);
    const char *want = resolve_cases[_i].want;
    if (!want) {
        ck_assert_msg(got == NULL, "\"%s\" + \"%s\": expected NULL, got \"%s\"",
                      resolve_cases[_i].base, resolve_cases[_i].ref, got);
    } else {
        ck_assert_msg(got && strcmp(got, want) == 0, "\"%s\" + \"%s\": expected \"%s\", got \"%s\"",
                      resolve_cases[_i].base, resolve_cases[_i].ref, want, got ? got : "(null)");
    }
    free(got);
}
END_TEST

START_TEST(resolve_too_long)
{
    char *ref = malloc(URL_MAX_LEN + 2);
    ck_assert_ptr_nonnull(ref);
    memset(ref, 'a', URL_MAX_LEN + 1);
    ref[URL_MAX_LEN + 1] = '\0';
    ck_assert_ptr_null(url_resolve("http://a.example/", ref));
    ref[100] = '\0';
    char *got = url_resolve("http://a.example/", ref);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(strlen(got), strlen("http://a.example/") + 100);
    free(got);
    free(ref);
}
END_TEST

/* Regression test (was a bug): a fragment-only reference drops the last path segment and the query
 * of the base (libcurl 7.88's relative-URL handling); RFC 3986 5.4.1:
 *   input:    url_resolve("http://a/b/c/d;p?q", "#s")
 *   expected: "http://a/b/c/d;p?q#s"
 *   actual:   "http://a/b/c/#s"
 * so a Link/next_url of "#..." would fetch another resource. */
START_TEST(resolve_fragment_only)
{
    char *got = url_resolve("http://a/b/c/d;p?q", "#s");
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, "http://a/b/c/d;p?q#s");
    free(got);
}
END_TEST

/* ---- url_add_query ------------------------------------------------------- */

static const struct {
    const char *url, *name, *value;
    const char *want; /* NULL: fails */
} addq_cases[] = {
    {"http://a.example/b", "cursor", "abc", "http://a.example/b?cursor=abc"},
    /* appended to an existing query */
    {"http://a.example/b?x=1", "cursor", "v", "http://a.example/b?x=1&cursor=v"},
    {"http://a.example/b?x=1&y=2", "page", "3", "http://a.example/b?x=1&y=2&page=3"},
    /* space, '&', '=', '#', '?', '+', '/', '%' and UTF-8 in the value are encoded */
    {"http://a.example/b", "cursor", "a b&c", "http://a.example/b?cursor=a+b%26c"},
    {"http://a.example/b", "c", "ab==", "http://a.example/b?c=ab%3d%3d"},
    {"http://a.example/b", "c", "x#y?z", "http://a.example/b?c=x%23y%3fz"},
    {"http://a.example/b", "c", "a+b/\xc3\xa9", "http://a.example/b?c=a%2bb%2f%c3%a9"},
    {"http://a.example/b", "c", "%41", "http://a.example/b?c=%2541"},
    {"http://a.example/b", "c", "", "http://a.example/b?c="},
    {"http://a.example/b", "c", "12345", "http://a.example/b?c=12345"},
    /* the fragment stays at the end */
    {"http://a.example/b?x=1#f", "p", "1", "http://a.example/b?x=1&p=1#f"},
    {"http://a.example/b#frag", "p", "1", "http://a.example/b?p=1#frag"},
    /* failures */
    {"not a url", "p", "1", NULL},
};

START_TEST(add_query)
{
    char *got = url_add_query(addq_cases[_i].url, addq_cases[_i].name, addq_cases[_i].value);
    const char *want = addq_cases[_i].want;
    if (!want) {
        ck_assert_msg(got == NULL, "\"%s\": expected NULL, got \"%s\"", addq_cases[_i].url, got);
    } else {
        ck_assert_msg(got && strcmp(got, want) == 0, "\"%s\" + %s=%s: expected \"%s\", got \"%s\"",
                      addq_cases[_i].url, addq_cases[_i].name, addq_cases[_i].value, want,
                      got ? got : "(null)");
    }
    free(got);
}
END_TEST

static Suite *url_suite(void)
{
    Suite *s = suite_create("url");
    TCase *tc;

    tc = tcase_create("validate");
    tcase_add_loop_test(tc, validate_ok, 0, N_ELEMS(valid_urls));
    tcase_add_test(tc, validate_max_len);
    tcase_add_loop_test(tc, validate_rejects, 0, N_ELEMS(invalid_urls));
    tcase_add_test(tc, validate_rejects_empty_authority);
    tcase_add_test(tc, validate_small_err_buffer);
    tcase_add_loop_test(tc, validate_no_password_in_error, 0, N_ELEMS(secret_urls));
    suite_add_tcase(s, tc);

    tc = tcase_create("redact");
    tcase_add_loop_test(tc, redact, 0, N_ELEMS(redact_cases));
    tcase_add_test(tc, redact_keeps_valid);
    suite_add_tcase(s, tc);

    tc = tcase_create("schemes");
    tcase_add_loop_test(tc, validate_schemes, 0, N_ELEMS(scheme_cases));
    tcase_add_test(tc, validate_is_default_schemes);
    tcase_add_test(tc, scheme_bits);
    suite_add_tcase(s, tc);

    tc = tcase_create("resolve");
    tcase_add_loop_test(tc, same_origin, 0, N_ELEMS(origin_cases));
    tcase_add_loop_test(tc, resolve, 0, N_ELEMS(resolve_cases));
    tcase_add_test(tc, resolve_too_long);
    tcase_add_test(tc, resolve_fragment_only);
    tcase_add_loop_test(tc, add_query, 0, N_ELEMS(addq_cases));
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(url_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
