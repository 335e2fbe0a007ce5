/* jptr.h - JSON Pointer (RFC 6901), evaluated on minified JSON text.
 *
 * Evaluating on the text (rather than a cJSON tree) lets a record carry the
 * selected part byte-for-byte, without building a tree at all.
 */
#pragma once

#include <stddef.h>

struct jptr {
    char *src;     /* owned: the pointer as written */
    char **tokens; /* owned: unescaped reference tokens */
    size_t n;
};

/* Parses "" (the whole document) or "/a/b~1c/0". Returns 0, -EINVAL with
 * *ret_msg set (a static string), or -ENOMEM. */
int jptr_parse(const char *s, struct jptr **ret, const char **ret_msg);
struct jptr *jptr_free(struct jptr *p);

/* Evaluates p on valid, minified JSON json[0..len) (as produced by
 * json_minify). On success stores the selected value's offset and length and
 * returns 0. If a token does not resolve returns -ENOENT and stores the index
 * of the first unresolved token in *ret_failed (when non-NULL). */
int jptr_eval(const struct jptr *p, const char *json, size_t len, size_t *ret_off,
              size_t *ret_len, size_t *ret_failed);
