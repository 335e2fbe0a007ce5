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

/* Returns a malloc'd copy with the userinfo password (or a user-only token)
 * and the values of secret-looking query parameters (names containing key,
 * token, secret, pass, auth, sig, session, credential; case-insensitive)
 * replaced by "***". Returns NULL on allocation failure. */
char *url_redact(const char *url);

/* True if url_redact would change url. */
bool url_has_secrets(const char *url);
