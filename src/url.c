/* url.c - URL validation (through libcurl's own parser) and redaction. */
#include "url.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/buf.h"

unsigned url_scheme_bit(const char *name, size_t len)
{
    static const struct {
        const char *name;
        unsigned bit;
    } schemes[] = {{"http", URL_HTTP}, {"https", URL_HTTPS}, {"file", URL_FILE},
                   {"ftp", URL_FTP},   {"ftps", URL_FTPS}};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strlen(schemes[i].name) == len && strncasecmp(name, schemes[i].name, len) == 0) {
            return schemes[i].bit;
        }
    }
    return 0;
}

unsigned url_scheme_of(const char *url)
{
    const char *c = strstr(url, "://");
    return c ? url_scheme_bit(url, (size_t)(c - url)) : 0;
}

static void scheme_list(unsigned schemes, char *out, size_t len)
{
    static const char *const names[] = {"http", "https", "file", "ftp", "ftps"};
    size_t off = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < 5; i++) {
        if (schemes & (1u << i)) {
            int n = snprintf(out + off, len - off, "%s%s", off ? ", " : "", names[i]);
            if (n < 0 || (size_t)n >= len - off) {
                break;
            }
            off += (size_t)n;
        }
    }
}

int url_validate(const char *url, char *err, size_t errlen)
{
    return url_validate_schemes(url, URL_SCHEMES_DEFAULT, err, errlen);
}

int url_validate_schemes(const char *url, unsigned schemes, char *err, size_t errlen)
{
    size_t len = strlen(url);
    if (len == 0) {
        snprintf(err, errlen, "the URL is empty");
        return -EINVAL;
    }
    if (len > URL_MAX_LEN) {
        snprintf(err, errlen, "the URL is %zu bytes long, the limit is %d", len, URL_MAX_LEN);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c == 0x7f) {
            snprintf(err, errlen,
                     "the URL contains a space or control character at byte %zu; "
                     "percent-encode it (space is %%20)",
                     i + 1);
            return -EINVAL;
        }
    }
    const char *colon = strstr(url, "://");
    if (!colon) {
        snprintf(err, errlen, "the URL has no scheme; write it as http://HOST/PATH or https://HOST/PATH");
        return -EINVAL;
    }
    size_t slen = (size_t)(colon - url);
    /* Only echo the text before "://" when it is a well-formed scheme
     * (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )): anything else
     * may be a user:password that merely precedes a "://" further on. */
    bool scheme_ok = slen > 0 && slen <= 16 &&
                     ((url[0] >= 'a' && url[0] <= 'z') || (url[0] >= 'A' && url[0] <= 'Z'));
    for (size_t i = 1; scheme_ok && i < slen; i++) {
        char c = url[i];
        scheme_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '+' || c == '-' || c == '.';
    }
    if (!scheme_ok) {
        snprintf(err, errlen,
                 "the URL has no valid scheme; write it as http://HOST/PATH or https://HOST/PATH");
        return -EINVAL;
    }
    unsigned bit = url_scheme_bit(url, slen);
    if (!(bit & schemes)) {
        char allowed[64];
        scheme_list(schemes, allowed, sizeof(allowed));
        snprintf(err, errlen, "scheme \"%.*s\" is not allowed (allowed: %s%s)", (int)slen, url,
                 allowed, schemes == URL_SCHEMES_DEFAULT ? "; others need \"schemes\"" : "");
        return -EINVAL;
    }
    if (bit == URL_FILE) {
        if (strncmp(colon + 3, "/", 1) != 0) {
            snprintf(err, errlen, "a file URL must be file:///ABSOLUTE/PATH");
            return -EINVAL;
        }
        return 0;
    }
    const char *auth = colon + 3;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *q = auth; q < auth + alen; q++) {
        if (*q == '@') {
            at = q;
        }
    }
    const char *hstart = at ? at + 1 : auth;
    if (hstart >= auth + alen || *hstart == ':') {
        /* "http:///path": libcurl would take "path" as the host */
        snprintf(err, errlen, "the URL has no host (nothing between \"://\" and the path)");
        return -EINVAL;
    }
    CURLU *u = curl_url();
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc == CURLUE_OUT_OF_MEMORY) {
        snprintf(err, errlen, "out of memory");
        curl_url_cleanup(u);
        return -ENOMEM;
    }
    if (uc != CURLUE_OK) {
        snprintf(err, errlen, "the URL does not parse: %s", curl_url_strerror(uc));
        curl_url_cleanup(u);
        return -EINVAL;
    }
    char *host = NULL;
    uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (uc == CURLUE_OUT_OF_MEMORY) {
        snprintf(err, errlen, "out of memory");
        curl_url_cleanup(u);
        return -ENOMEM;
    }
    if (uc != CURLUE_OK || !host || !*host) {
        snprintf(err, errlen, "the URL has no host");
        curl_free(host);
        curl_url_cleanup(u);
        return -EINVAL;
    }
    curl_free(host);
    curl_url_cleanup(u);
    return 0;
}

static bool secret_param(const char *name, size_t len)
{
    static const char *words[] = {"key", "token", "secret", "pass", "auth",
                                  "sig", "session", "credential"};
    for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= len; i++) {
            if (strncasecmp(name + i, words[w], wl) == 0) {
                return true;
            }
        }
    }
    return false;
}

/* Calls back for each redaction range; returns whether any exists. Writes
 * the redacted URL into out when out is non-NULL. */
static int url_redact_into(const char *url, struct buf *out, bool *ret_changed)
{
    bool changed = false;
    const char *p = url;
    const char *sep = strstr(url, "://");
    int r = 0;
#define EMIT(s, n)                                                                                 \
    do {                                                                                           \
        if (out && (r = buf_append(out, (s), (n))) < 0)                                            \
            return r;                                                                              \
    } while (0)
    if (sep) {
        const char *auth = sep + 3;
        size_t alen = strcspn(auth, "/?#");
        const char *at = memchr(auth, '@', alen);
        /* the last '@' in the authority ends the userinfo */
        for (const char *q = auth; q < auth + alen; q++) {
            if (*q == '@') {
                at = q;
            }
        }
        EMIT(url, (size_t)(auth - url));
        if (at) {
            const char *colon = memchr(auth, ':', (size_t)(at - auth));
            if (colon) {
                EMIT(auth, (size_t)(colon - auth) + 1);
                EMIT("***", 3);
            } else {
                EMIT("***", 3);
            }
            changed = true;
            p = at;
        } else {
            p = auth;
        }
    }
    /* the query ends at '#'; the fragment is redacted the same way (OAuth's
     * implicit flow puts access_token=... there) */
    const char *hash = strchr(p, '#');
    const char *q = strchr(p, '?');
    if (q && hash && q > hash) {
        q = NULL;
    }
    if (!q && !hash) {
        EMIT(p, strlen(p));
        *ret_changed = changed;
        return 0;
    }
    const char *start = q ? q : hash;
    EMIT(p, (size_t)(start - p) + 1);
    p = start + 1;
    while (*p) {
        if (*p == '#') {
            EMIT("#", 1);
            p++;
            continue;
        }
        size_t plen = strcspn(p, "&#");
        const char *eq = memchr(p, '=', plen);
        if (eq && secret_param(p, (size_t)(eq - p)) && eq + 1 < p + plen) {
            EMIT(p, (size_t)(eq - p) + 1);
            EMIT("***", 3);
            changed = true;
        } else {
            EMIT(p, plen);
        }
        p += plen;
        if (*p == '&') {
            EMIT("&", 1);
            p++;
        }
    }
    EMIT(p, strlen(p));
#undef EMIT
    *ret_changed = changed;
    return 0;
}

bool url_has_secrets(const char *url)
{
    bool changed = false;
    (void)url_redact_into(url, NULL, &changed);
    return changed;
}

char *url_redact(const char *url)
{
    struct buf b = {0};
    bool changed;
    if (url_redact_into(url, &b, &changed) < 0) {
        buf_done(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* scheme, host and port of an absolute URL */
static int url_origin(const char *url, char **scheme, char **host, char **port)
{
    *scheme = *host = *port = NULL;
    CURLU *u = curl_url();
    if (!u) {
        return -ENOMEM;
    }
    int r = -EINVAL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        if (curl_url_get(u, CURLUPART_HOST, host, 0) != CURLUE_OK) {
            *host = NULL; /* file: no host */
        }
        r = 0;
    }
    curl_url_cleanup(u);
    return r;
}

static bool str_ieq(const char *a, const char *b)
{
    return a == b || (a && b && strcasecmp(a, b) == 0);
}

bool url_same_origin(const char *a, const char *b)
{
    char *s1, *h1, *p1, *s2, *h2, *p2;
    int r1 = url_origin(a, &s1, &h1, &p1);
    int r2 = url_origin(b, &s2, &h2, &p2);
    bool same = r1 == 0 && r2 == 0 && str_ieq(s1, s2) && str_ieq(h1, h2) && str_ieq(p1, p2);
    curl_free(s1);
    curl_free(h1);
    curl_free(p1);
    curl_free(s2);
    curl_free(h2);
    curl_free(p2);
    return same;
}

static char *dup_curl(char *s)
{
    char *d = s ? strdup(s) : NULL;
    curl_free(s);
    return d;
}

char *url_resolve(const char *base, const char *ref)
{
    if (!*ref || strlen(ref) > URL_MAX_LEN) {
        return NULL;
    }
    if (ref[0] == '#') {
        /* RFC 3986 5.2.2: the base without its fragment, plus ref
         * (libcurl 7.88 drops the last path segment instead) */
        size_t bl = strcspn(base, "#");
        char *out = malloc(bl + strlen(ref) + 1);
        if (out) {
            memcpy(out, base, bl);
            strcpy(out + bl, ref);
        }
        return out;
    }
    CURLU *u = curl_url();
    if (!u) {
        return NULL;
    }
    char *out = NULL;
    /* setting a relative URL on a handle holding the base resolves it */
    if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_URL, ref, 0) == CURLUE_OK) {
        char *s = NULL;
        if (curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK) {
            out = dup_curl(s);
        } else {
            curl_free(s);
        }
    }
    curl_url_cleanup(u);
    return out;
}

char *url_add_query(const char *url, const char *name, const char *value)
{
    struct buf q = {0};
    if (buf_printf(&q, "%s=%s", name, value) < 0) {
        buf_done(&q);
        return NULL;
    }
    CURLU *u = curl_url();
    char *out = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_QUERY, q.data, CURLU_APPENDQUERY | CURLU_URLENCODE) ==
            CURLUE_OK) {
        char *s = NULL;
        if (curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK) {
            out = dup_curl(s);
        } else {
            curl_free(s);
        }
    }
    curl_url_cleanup(u);
    buf_done(&q);
    return out;
}
