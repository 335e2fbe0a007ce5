/* fuzz-jptr.c - JSON Pointer: jptr_parse() and jptr_eval() (src/jptr.h) on
 * documents validated and minified by json_minify(), as select and paginate
 * use them.
 *
 * Input: the pointer, then '\n' or a NUL, then the JSON document.
 * Properties:
 *  - jptr_parse() accepts exactly "" and strings starting with '/' whose
 *    '~' escapes are ~0 or ~1; src round-trips; one token per '/';
 *  - on a valid document jptr_eval() returns 0 or -ENOENT; a selected value
 *    lies inside the document and is itself one valid minified JSON value;
 *    -ENOENT names a token index < n;
 *  - it selects the same value as an independent evaluation on a cJSON
 *    tree of the document (first member of a duplicated key, RFC 6901
 *    array indexes), or fails at the same token.
 */
#include <cJSON.h>
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "jptr.h"
#include "json.h"

static bool model_index(const char *t, int *ret)
{
    if (!*t || (t[0] == '0' && t[1])) {
        return false;
    }
    long v = 0;
    for (; *t; t++) {
        if (*t < '0' || *t > '9' || v > 100000000) {
            return false;
        }
        v = v * 10 + (*t - '0');
    }
    *ret = (int)v;
    return true;
}

/* RFC 6901 on a cJSON tree; returns the node or NULL with *failed set. */
static const cJSON *model_eval(const cJSON *root, const struct jptr *p, size_t *failed)
{
    const cJSON *n = root;
    for (size_t i = 0; i < p->n; i++) {
        const cJSON *next = NULL;
        if (cJSON_IsObject(n)) {
            for (const cJSON *c = n->child; c; c = c->next) {
                if (strcmp(c->string, p->tokens[i]) == 0) {
                    next = c;
                    break;
                }
            }
        } else if (cJSON_IsArray(n)) {
            int idx;
            if (model_index(p->tokens[i], &idx)) {
                next = cJSON_GetArrayItem(n, idx);
            }
        }
        if (!next) {
            *failed = i;
            return NULL;
        }
        n = next;
    }
    return n;
}

static void check_parse(const char *s, const struct jptr *p, int r)
{
    bool want_ok = *s == '\0' || *s == '/';
    size_t slashes = 0;
    for (const char *c = s; *c; c++) {
        slashes += *c == '/';
        if (*c == '~' && c[1] != '0' && c[1] != '1') {
            want_ok = false;
        }
    }
    FUZZ_CHECK((r == 0) == want_ok);
    if (r == 0) {
        FUZZ_CHECK(strcmp(p->src, s) == 0);
        FUZZ_CHECK(p->n == slashes);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) {
        return 0;
    }
    size_t cut = 0;
    while (cut < size && data[cut] != '\n' && data[cut] != '\0') {
        cut++;
    }
    char *ptr = fuzz_cstr(data, cut);
    const char *doc = (const char *)data + (cut < size ? cut + 1 : size);
    size_t dlen = cut < size ? size - cut - 1 : 0;
    if (!ptr) {
        return 0;
    }
    struct jptr *p = NULL;
    const char *msg = NULL;
    int r = jptr_parse(ptr, &p, &msg);
    FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
    FUZZ_CHECK(r != -EINVAL || (msg && *msg));
    if (r != -ENOMEM) {
        check_parse(ptr, p, r);
    }
    if (r < 0) {
        free(ptr);
        return 0;
    }

    struct buf min = {0};
    struct json_error je;
    if (json_minify(doc, dlen, JSON_MAX_DEPTH, &min, &je) == 0) {
        size_t off = 0, len = 0, failed = (size_t)-1;
        r = jptr_eval(p, min.data, min.len, &off, &len, &failed);
        FUZZ_CHECK(r == 0 || r == -ENOENT);
        if (r == 0) {
            FUZZ_CHECK(off <= min.len && len <= min.len - off && len > 0);
            struct buf again = {0};
            FUZZ_CHECK(json_minify(min.data + off, len, JSON_MAX_DEPTH, &again, &je) == 0);
            FUZZ_CHECK(again.len == len && memcmp(again.data, min.data + off, len) == 0);
            buf_done(&again);
        } else {
            FUZZ_CHECK(failed < p->n);
        }
        /* the model; cJSON cuts strings at "\u0000", where the two
         * legitimately differ, so such documents are left out */
        cJSON *root = strstr(min.data, "\\u0000") ? NULL : cJSON_ParseWithLength(min.data, min.len);
        if (root) {
            size_t mfailed = (size_t)-1;
            const cJSON *want = model_eval(root, p, &mfailed);
            FUZZ_CHECK((r == 0) == (want != NULL));
            if (want) {
                cJSON *got = cJSON_ParseWithLength(min.data + off, len);
                char *a = cJSON_PrintUnformatted(want),
                     *b = got ? cJSON_PrintUnformatted(got) : NULL;
                if (a && b) {
                    FUZZ_CHECK(strcmp(a, b) == 0);
                }
                free(a);
                free(b);
                cJSON_Delete(got);
            } else {
                FUZZ_CHECK(failed == mfailed);
            }
            cJSON_Delete(root);
        }
    }
    buf_done(&min);
    jptr_free(p);
    free(ptr);
    return 0;
}
