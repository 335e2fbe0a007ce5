/* json.h - strict RFC 8259 validation, minification and string escaping.
 *
 * Why not only cJSON: cJSON accepts trailing garbage, leading zeros ("01"),
 * "1." and invalid UTF-8, and re-printing a cJSON tree changes data (1e400
 * prints as null, integers above 2^53 lose digits). fetchd validates every
 * response with json_minify(), which rejects all of that with a byte offset,
 * and emits the document byte-for-byte minus insignificant whitespace. A
 * cJSON tree is built only where one is needed (config, sinks that ask).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "util/buf.h"

#define JSON_MAX_DEPTH 1000 /* the same limit as Debian's cJSON (CJSON_NESTING_LIMIT) */

struct json_error {
    size_t offset;   /* byte offset of the problem in the input */
    const char *msg; /* static string */
};

/* Validates in[0..len) as exactly one JSON value (surrounded by optional
 * whitespace and an optional leading UTF-8 BOM) and appends its minified form
 * to out. Returns 0, -EINVAL (invalid JSON; *err filled), -ENOMEM or -E2BIG
 * (out's cap). On error out is restored to its previous length. */
int json_minify(const char *in, size_t len, unsigned max_depth, struct buf *out,
                struct json_error *err);

/* Appends s[0..len) as a JSON string literal with quotes. Control characters
 * are escaped; invalid UTF-8 sequences become U+FFFD, so the output is always
 * valid JSON. */
int json_escape(struct buf *out, const char *s, size_t len);
static inline int json_escape_str(struct buf *out, const char *s)
{
    return json_escape(out, s, strlen(s));
}

/* 1-based line and column (in bytes) of offset in text. */
void json_line_col(const char *text, size_t len, size_t offset, unsigned *ret_line,
                   unsigned *ret_col);

/* Iterates the elements of a minified JSON array t[0..len) (t[0] == '[').
 * Start with *pos = 0; each call stores the next element's offset and length
 * and returns true, false at the end. */
bool json_array_next(const char *t, size_t len, size_t *pos, size_t *ret_off, size_t *ret_len);

/* Appends the value of a valid JSON string literal t[0..len) (with its
 * quotes) to out, unescaped, NUL-terminated. Returns 0, -EINVAL (not a
 * string, or it holds a NUL) or -ENOMEM. */
int json_unescape(const char *t, size_t len, struct buf *out);
/* The same; with JSON_UNESCAPE_NUL a "\u0000" becomes a NUL byte in out
 * (for binary-safe consumers, which use out->len) instead of -EINVAL. */
#define JSON_UNESCAPE_NUL 1u
int json_unescape_flags(const char *t, size_t len, struct buf *out, unsigned flags);

/* Length of a valid UTF-8 sequence starting at s (at most n bytes), or 0. */
size_t json_utf8_len(const unsigned char *s, size_t n);
