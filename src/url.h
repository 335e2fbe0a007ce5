/* url.h - URL validation and redaction of credentials. Non-logging. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define URL_MAX_LEN 8192

/* Checks that url is an absolute http:// or https:// URL with a host that
 * libcurl parses the same way, at most URL_MAX_LEN bytes, without spaces or
 * control characters. On failure returns -EINVAL and writes a one-line
 * reason (never the URL's credentials) into err. */
int url_validate(const char *url, char *err, size_t errlen);

/* Schemes an endpoint may allow (the "schemes" option). */
enum {
    URL_HTTP = 1u << 0,
    URL_HTTPS = 1u << 1,
    URL_FILE = 1u << 2,
    URL_FTP = 1u << 3,
    URL_FTPS = 1u << 4,
};
#define URL_SCHEMES_DEFAULT (URL_HTTP | URL_HTTPS)

/* url_validate() with another set of allowed schemes (file URLs need no
 * host). */
int url_validate_schemes(const char *url, unsigned schemes, char *err, size_t errlen);
/* The URL_* bit of a scheme name (case-insensitive), 0 if unknown. */
unsigned url_scheme_bit(const char *name, size_t len);
/* The URL_* bit of an absolute URL's scheme, 0 if none/unknown. */
unsigned url_scheme_of(const char *url);
/* True if both absolute URLs have the same scheme, host and port (default
 * ports filled in). False if either does not parse. */
bool url_same_origin(const char *a, const char *b);
/* Resolves ref (absolute or relative) against base. Returns a malloc'd
 * absolute URL or NULL (does not parse, out of memory). */
char *url_resolve(const char *base, const char *ref);
/* Returns a malloc'd copy of url with "name=value" (value URL-encoded)
 * appended to the query, or NULL. */
char *url_add_query(const char *url, const char *name, const char *value);

/* Returns a malloc'd copy with the userinfo password (or a user-only token)
 * and the values of secret-looking query parameters (names containing key,
 * token, secret, pass, auth, sig, session, credential; case-insensitive)
 * replaced by "***". Returns NULL on allocation failure. */
char *url_redact(const char *url);

/* True if url_redact would change url. */
bool url_has_secrets(const char *url);
