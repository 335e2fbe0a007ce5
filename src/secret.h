/* secret.h - secrets read from files (passwords, bearer tokens, OAuth2
 * client secrets), re-read when the file changes.
 *
 * A secret file holds one line; trailing CR/LF are dropped; a secret with
 * CR, LF or NUL inside is refused (it would split an HTTP header). Values
 * are wiped from memory when dropped. Nothing here ever prints a value.
 * Non-logging: callers get an error text that names the file only.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/time.h"

#define SECRET_MAX_BYTES 16384
#define SECRET_RECHECK_USEC USEC_PER_SEC

/* Reads and checks a secret file. Returns 0 and a malloc'd NUL-terminated
 * value (free with secret_free), or -errno with a reason in err. */
int secret_read(const char *path, char **ret, size_t *ret_len, char *err, size_t errlen);
/* Wipes and frees a value from secret_read. */
void secret_free(char *value);
/* "$CREDENTIALS_DIRECTORY/NAME" as a malloc'd path, or NULL with a reason
 * in err (variable unset, bad name). */
char *secret_credential_path(const char *name, char *err, size_t errlen);

struct secret_entry;

/* A cache of secret files by path, shared by all endpoints. */
struct secrets {
    struct secret_entry *list; /* a handful of files: a list is enough */
};

/* The current value of the secret at path: re-read when its identity
 * (inode, size, mtime) changed, checked at most once per
 * SECRET_RECHECK_USEC. When a re-read fails, the last good value stays in
 * use and *changed_err is set to the reason (once per failure). Returns 0 and
 * *value (owned by the cache, valid until the next call for that path), or
 * -errno with the reason in err when there is no good value at all. */
int secrets_get(struct secrets *s, const char *path, usec_t now, const char **value,
                char *err, size_t errlen, bool *warn);
void secrets_done(struct secrets *s);
