/* template.h - request templating: placeholders in an endpoint's URL, header
 * values and body, substituted for every fetch cycle.
 *
 * Syntax: "${NAME}" or "${NAME:ARG}"; ARG runs to the first "}". "$${" is a
 * literal "${"; any other "$" is literal. Names:
 *
 *   now                 the time the cycle starts (wall clock)
 *   interval_start      the start of the cycle's interval: its scheduled
 *   interval_end        time minus the interval (a schedule: the previous
 *                       time it fired), and the scheduled time itself
 *   last_success        the start of the endpoint's last successful cycle
 *                       (interval_start until there is one)
 *     ARG of the four time placeholders: none or "rfc3339" for
 *     2026-11-22T06:30:00Z (in a zone other than UTC: +01:00), "rfc3339_ms"
 *     (milliseconds), "unix" (seconds since the epoch), "unix_ms", or a
 *     strftime(3) format holding at least one "%" conversion (its result
 *     at most 256 bytes; "%s" is seconds since the epoch in any zone, "%Z"
 *     without a zone "UTC"). Times are on the wall clock of the endpoint's
 *     "timezone", UTC without one.
 *   env:NAME            the environment variable NAME, read once when the
 *                       configuration loads (unset, or a line break in a
 *                       header: a config error)
 *   credential:NAME     the systemd credential NAME ($CREDENTIALS_DIRECTORY/
 *                       NAME), read when it changes; a secret: never logged
 *   checkpoint          the endpoint's checkpoint (see fetchd.json(5)): a
 *                       JSON string's contents, other JSON values as text
 *
 * Escaping, by where the template is (enum tpl_ctx): in a URL every byte of
 * a value other than A-Z a-z 0-9 - . _ ~ is percent-encoded; in a JSON body
 * the template is the text of a JSON string literal (between its quotes)
 * and values are escaped as JSON string contents (a '"' inside a
 * placeholder is an error there: it would end the string); in a form body
 * (application/x-www-form-urlencoded) values are percent-encoded as in a
 * URL, a space as "+"; in a header value and a plain body values go in as
 * they are, except that a header value refuses CR, LF and NUL.
 *
 * Non-logging. Errors come back as text in err; they never contain a
 * credential's value.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"
#include "util/time.h"

enum tpl_ctx {
    TPL_CTX_URL,    /* percent-encoding */
    TPL_CTX_HEADER, /* as is; CR, LF and NUL refused */
    TPL_CTX_JSON,   /* JSON string contents (the template is inside quotes) */
    TPL_CTX_FORM,   /* application/x-www-form-urlencoded */
    TPL_CTX_RAW,    /* as is */
};

enum tpl_var {
    TPL_NOW,
    TPL_INTERVAL_START,
    TPL_INTERVAL_END,
    TPL_LAST_SUCCESS,
    TPL_ENV,
    TPL_CREDENTIAL,
    TPL_CHECKPOINT,
    _TPL_VAR_MAX,
};

struct tpl;

/* Parses text[0..len) for ctx. On success *ret is a new template, or NULL
 * when the text holds no placeholder and no "$${" (use the text as it is).
 * Returns 0, -EINVAL with a one-line message in err that names the problem
 * and its byte position, counted from 1 as in url.c and config.c ("at byte
 * 12: unknown placeholder \"${nwo}\" (known: ..."), or -ENOMEM; on error
 * *ret is left alone. Environment variables are looked up here. */
int tpl_parse(const char *text, size_t len, enum tpl_ctx ctx, struct tpl **ret, char *err,
              size_t errlen);
/* NULL is fine; returns NULL. */
struct tpl *tpl_free(struct tpl *t);

/* Bit (1u << TPL_x) for every kind of placeholder t uses (0 for NULL). */
unsigned tpl_uses(const struct tpl *t);
/* The names of the credentials t uses: *n distinct ones, in the order of
 * their first use (borrowed from t; NULL and 0 for NULL). */
const char *const *tpl_credentials(const struct tpl *t, size_t *n);

/* What the placeholders stand for in one cycle. */
struct tpl_values {
    usec_t now;             /* CLOCK_REALTIME microseconds */
    usec_t interval_start;
    usec_t interval_end;
    usec_t last_success;    /* 0: none yet (interval_start is used) */
    const char *tz_env;     /* a TZ value (":/usr/share/zoneinfo/Europe/Berlin"
                             * from cron_zone_env), or NULL for UTC */
    const char *checkpoint; /* text form, or NULL: none (renders as "") */
    size_t checkpoint_len;
    /* Looks up a credential by name: 0 and *value (valid until the next
     * call), or -errno and a reason in err (naming the file, not the
     * value). */
    int (*credential)(void *ctx, const char *name, const char **value, char *err,
                      size_t errlen);
    void *ctx;
};

/* Appends the rendered template to out (nothing for NULL). Returns 0,
 * -EINVAL (a value that cannot go there, e.g. a line break into a header, a
 * credential that cannot be read, a strftime result over 256 bytes: reason
 * in err, without the value), -E2BIG (out's cap) or -ENOMEM. On error out
 * keeps its previous length. With a tz_env, TZ is switched once per call
 * and restored (tzset() included) before it returns. */
int tpl_render(const struct tpl *t, const struct tpl_values *v, struct buf *out, char *err,
               size_t errlen);

/* Formats a time as a time placeholder with argument arg (NULL: rfc3339)
 * would; for --check-config and tests. Returns 0, -EINVAL (a bad arg, a
 * result over the cap) or -ENOMEM; out is only appended to on success. */
int tpl_format_time(usec_t t, const char *arg, const char *tz_env, struct buf *out);
