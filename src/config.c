/* config.c - JSON config loading, drop-in merging and strict validation.
 *
 * How positions work: cJSON keeps no source positions, but a pre-order walk
 * of its tree visits values in exactly the order they start in the text. So
 * when (and only when) an error is reported, the node's pre-order index is
 * found by walking the tree, and a small lexer finds the index-th value
 * start in the text. The success path pays nothing for good error messages.
 *
 * Rules from reliability.md: only case-sensitive lookups (we iterate members
 * and strcmp), duplicate keys are errors, numbers are validated from
 * valuedouble (finite, integral, in range), trailing garbage and invalid
 * UTF-8 are rejected by json_minify() before cJSON sees the text, "\u0000"
 * (which cJSON silently truncates at) is refused, and files are size-capped.
 */
#include "config.h"
#include "cron.h"

#include <cJSON.h>
#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jptr.h"
#include "plugin.h"
#include "json.h"
#include "secret.h"
#include "template.h"
#include "units.h"
#include "url.h"
#include "util/buf.h"
#include "util/cleanup.h"

/* ---- key tables --------------------------------------------------------- */

enum ep_key {
    EK_URL,
    EK_METHOD,
    EK_HEADERS,
    EK_BODY,
    EK_INTERVAL,
    EK_TIMEOUT,
    EK_CONNECT_TIMEOUT,
    EK_LOW_SPEED_LIMIT,
    EK_LOW_SPEED_TIME,
    EK_MAX_BODY_SIZE,
    EK_SELECT,
    EK_SINKS,
    EK_FOLLOW_REDIRECTS,
    EK_MAX_REDIRECTS,
    EK_ENABLED,
    EK_JITTER,
    EK_ALIGN,
    EK_OFFSET,
    EK_SCHEDULE,
    EK_TIMEZONE,
    EK_CHECKPOINT,
    /* the options of struct endpoint_ext, from here to the end */
    EK_AUTH,
    EK_TLS,
    EK_PROXY,
    EK_UNIX_SOCKET,
    EK_HTTP_VERSION,
    EK_COMPRESSION,
    EK_SCHEMES,
    EK_SECRET_HEADERS,
    EK_SUCCESS_STATUS,
    EK_RETRY,
    EK_BREAKER,
    EK_CONDITIONAL,
    EK_UNCHANGED_RECORD,
    EK_CONTENT_TYPE,
    EK_FORMAT,
    EK_SPLIT,
    EK_TIMINGS,
    EK_RESPONSE_HEADERS,
    EK_PAGINATE,
    _EK_MAX,
};
#define EK_EXT_FIRST EK_AUTH

static const char *const ep_keys[_EK_MAX] = {
    [EK_URL] = "url",
    [EK_METHOD] = "method",
    [EK_HEADERS] = "headers",
    [EK_BODY] = "body",
    [EK_INTERVAL] = "interval",
    [EK_TIMEOUT] = "timeout",
    [EK_CONNECT_TIMEOUT] = "connect_timeout",
    [EK_LOW_SPEED_LIMIT] = "low_speed_limit",
    [EK_LOW_SPEED_TIME] = "low_speed_time",
    [EK_MAX_BODY_SIZE] = "max_body_size",
    [EK_SELECT] = "select",
    [EK_SINKS] = "sinks",
    [EK_FOLLOW_REDIRECTS] = "follow_redirects",
    [EK_MAX_REDIRECTS] = "max_redirects",
    [EK_ENABLED] = "enabled",
    [EK_JITTER] = "jitter",
    [EK_ALIGN] = "align",
    [EK_OFFSET] = "offset",
    [EK_SCHEDULE] = "schedule",
    [EK_TIMEZONE] = "timezone",
    [EK_CHECKPOINT] = "checkpoint",
    [EK_AUTH] = "auth",
    [EK_TLS] = "tls",
    [EK_PROXY] = "proxy",
    [EK_UNIX_SOCKET] = "unix_socket",
    [EK_HTTP_VERSION] = "http_version",
    [EK_COMPRESSION] = "compression",
    [EK_SCHEMES] = "schemes",
    [EK_SECRET_HEADERS] = "secret_headers",
    [EK_SUCCESS_STATUS] = "success_status",
    [EK_RETRY] = "retry",
    [EK_BREAKER] = "breaker",
    [EK_CONDITIONAL] = "conditional",
    [EK_UNCHANGED_RECORD] = "unchanged_record",
    [EK_CONTENT_TYPE] = "content_type",
    [EK_FORMAT] = "format",
    [EK_SPLIT] = "split",
    [EK_TIMINGS] = "timings",
    [EK_RESPONSE_HEADERS] = "response_headers",
    [EK_PAGINATE] = "paginate",
};

enum limit_key {
    LK_MAX_CONCURRENT,
    LK_MAX_PER_HOST,
    LK_MAX_BODY_SIZE,
    LK_MAX_ENDPOINTS,
    LK_SHUTDOWN_GRACE,
    LK_RETRY_BUDGET,
    LK_STATS_INTERVAL,
    LK_METRICS_TEXTFILE,
    LK_METRICS_INTERVAL,
    _LK_MAX,
};

static const char *const limit_keys[_LK_MAX] = {
    [LK_MAX_CONCURRENT] = "max_concurrent",
    [LK_MAX_PER_HOST] = "max_per_host",
    [LK_MAX_BODY_SIZE] = "max_body_size",
    [LK_MAX_ENDPOINTS] = "max_endpoints",
    [LK_SHUTDOWN_GRACE] = "shutdown_grace",
    [LK_RETRY_BUDGET] = "retry_budget",
    [LK_STATS_INTERVAL] = "stats_interval",
    [LK_METRICS_TEXTFILE] = "metrics_textfile",
    [LK_METRICS_INTERVAL] = "metrics_interval",
};

static const char *const top_keys[] = {"defaults", "limits", "sinks", "endpoints", "shard"};

/* Defaults, documented in fetchd.json(5). */
#define DEF_INTERVAL (60 * USEC_PER_SEC)
#define DEF_TIMEOUT (30 * USEC_PER_SEC)
#define DEF_CONNECT_TIMEOUT (10 * USEC_PER_SEC)
#define DEF_LOW_SPEED_LIMIT 1
#define DEF_LOW_SPEED_TIME (30 * USEC_PER_SEC)
#define DEF_MAX_REDIRECTS 5
#define DEF_MAX_CONCURRENT 64
#define DEF_MAX_BODY_SIZE (8u * 1024 * 1024)
#define DEF_MAX_ENDPOINTS 200000
#define DEF_SHUTDOWN_GRACE (10 * USEC_PER_SEC)
#define DEF_RETRY_BUDGET 0.2
#define DEF_RETRY_ATTEMPTS 3
#define DEF_RETRY_BACKOFF USEC_PER_SEC
#define DEF_RETRY_MAX_BACKOFF (30 * USEC_PER_SEC)
#define DEF_RETRY_MAX_AFTER (60 * USEC_PER_SEC)
#define DEF_BREAKER_AFTER 5
#define DEF_BREAKER_MAX (600 * USEC_PER_SEC)
#define DEF_MAX_PAGES 10

/* ---- loader state ------------------------------------------------------- */

struct cfile {
    char *path;  /* owned */
    char *text;  /* owned */
    size_t len;
    cJSON *root; /* owned */
};

struct src {          /* a node and the file it came from */
    const cJSON *node;
    unsigned file;
};

struct named {
    const char *name; /* borrowed from the cJSON node */
    struct src src;
};

struct namedvec {
    struct named *v;
    size_t n, cap;
    struct strmap idx; /* name -> index + 1 */
};

struct loader {
    struct config *cfg;
    struct config_errors *errs;
    struct cfile *files;
    size_t n_files;
    struct src limits[_LK_MAX];
    struct src shard; /* the last file's "shard" */
    struct src defaults[_EK_MAX];
    struct namedvec sinks;
    struct namedvec endpoints;
    bool oom;
    bool mute;                  /* drop errors (already reported once) */
    bool def_seen[_EK_MAX];     /* a default was validated with an endpoint */
    struct endpoint_ext *def_ext; /* shared by endpoints without own ext options */
    bool cross_seen[_EK_MAX];   /* a cross-key error at a default was reported */
    bool def_ext_built;
    struct cron *def_cron; /* "schedule" of "defaults", shared */
    const char *def_schedule, *def_timezone;
    bool def_tz_checked;     /* defaults.timezone checked for endpoints without a schedule */
    bool def_cron_built;
};

/* ---- error reporting ---------------------------------------------------- */

static bool preorder_index(const cJSON *cur, const cJSON *target, size_t *idx)
{
    if (cur == target) {
        return true;
    }
    (*idx)++;
    for (const cJSON *c = cur->child; c; c = c->next) {
        if (preorder_index(c, target, idx)) {
            return true;
        }
    }
    return false;
}

static size_t skip_str(const char *t, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (t[i] == '\\') {
            i++;
        } else if (t[i] == '"') {
            return i + 1;
        }
    }
    return len;
}

/* Offset of the k-th value (pre-order) in valid JSON text, and of the key
 * before it when it is an object member (else == value offset). */
static void nth_value(const char *t, size_t len, size_t k, size_t *ret_val, size_t *ret_key)
{
    unsigned char stack[JSON_MAX_DEPTH + 1];
    int depth = 0;
    bool expect_key = false;
    size_t count = 0, key = SIZE_MAX;
    size_t i = (len >= 3 && memcmp(t, "\xef\xbb\xbf", 3) == 0) ? 3 : 0;
    while (i < len) {
        char c = t[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == ':') {
            i++;
            continue;
        }
        if (c == ',') {
            expect_key = depth > 0 && stack[depth - 1] == '{';
            key = SIZE_MAX;
            i++;
            continue;
        }
        if (c == '}' || c == ']') {
            depth = depth > 0 ? depth - 1 : 0;
            i++;
            continue;
        }
        if (c == '"' && expect_key) {
            key = i;
            i = skip_str(t, len, i);
            expect_key = false;
            continue;
        }
        if (count == k) {
            *ret_val = i;
            *ret_key = key == SIZE_MAX ? i : key;
            return;
        }
        count++;
        key = SIZE_MAX;
        if (c == '{' || c == '[') {
            if (depth < JSON_MAX_DEPTH) {
                stack[depth++] = (unsigned char)c;
            }
            expect_key = c == '{';
            i++;
        } else if (c == '"') {
            i = skip_str(t, len, i);
        } else {
            while (i < len && !strchr(" \t\r\n,]}", t[i])) {
                i++;
            }
        }
    }
    *ret_val = *ret_key = len;
}

/* An error is one line of text: control characters that come from the
 * file (a key "a\nb", an ESC in a value shown after "got") are written as
 * \xHH. The messages go to terminals, to the journal and, after a failed
 * reload, into sd_notify's STATUS=, where a newline would start another
 * assignment. Takes msg; returns it or a new string, NULL if out of memory. */
static char *errs_escape(char *msg)
{
    size_t n = 0, len = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++, len++) {
        n += *p < 0x20 || *p == 0x7f;
    }
    if (n == 0) {
        return msg;
    }
    char *out = malloc(len + 3 * n + 1);
    if (out) {
        char *o = out;
        for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
            if (*p < 0x20 || *p == 0x7f) {
                o += sprintf(o, "\\x%02x", *p);
            } else {
                *o++ = (char)*p;
            }
        }
        *o = '\0';
    }
    free(msg);
    return out;
}

static void errs_add(struct loader *L, char *msg)
{
    struct config_errors *e = L->errs;
    if (msg) {
        msg = errs_escape(msg);
    }
    if (!msg) {
        L->oom = true;
        return;
    }
    if (e->n >= CONFIG_MAX_ERRORS) {
        e->dropped++;
        free(msg);
        return;
    }
    char **n = realloc(e->msgs, (e->n + 1) * sizeof(char *));
    if (!n) {
        free(msg);
        L->oom = true;
        return;
    }
    e->msgs = n;
    e->msgs[e->n++] = msg;
}

/* Reports an error at a node (at_key: point at the member's key rather than
 * its value). path may be NULL for file-level errors. */
static void lerr(struct loader *L, struct src at, bool at_key, const char *path, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));
static void lerr(struct loader *L, struct src at, bool at_key, const char *path, const char *fmt,
                 ...)
{
    if (L->mute) {
        return;
    }
    struct cfile *f = &L->files[at.file];
    struct buf b = {0};
    unsigned line = 0, col = 0;
    if (at.node && f->root) {
        size_t idx = 0, voff, koff;
        if (preorder_index(f->root, at.node, &idx)) {
            nth_value(f->text, f->len, idx, &voff, &koff);
            json_line_col(f->text, f->len, at_key ? koff : voff, &line, &col);
        }
    }
    if (line) {
        buf_printf(&b, "%s:%u:%u: ", f->path, line, col);
    } else {
        buf_printf(&b, "%s: ", f->path);
    }
    if (path) {
        buf_printf(&b, "%s: ", path);
    }
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    errs_add(L, b.data ? buf_steal(&b) : NULL);
}

/* Short rendering of a value for "got ..." (never used for secrets). */
static const char *got(const cJSON *n, char out[64])
{
    if (!n) {
        snprintf(out, 64, "nothing");
        return out;
    }
    if (cJSON_IsString(n)) {
        size_t l = strlen(n->valuestring);
        snprintf(out, 64, "\"%.40s%s\"", n->valuestring, l > 40 ? "..." : "");
        return out;
    }
    if (cJSON_IsNumber(n)) {
        if (!isfinite(n->valuedouble)) {
            snprintf(out, 64, "a number out of range");
        } else {
            snprintf(out, 64, "%.17g", n->valuedouble);
        }
        return out;
    }
    snprintf(out, 64, "%s",
             cJSON_IsBool(n)     ? (cJSON_IsTrue(n) ? "true" : "false")
             : cJSON_IsNull(n)   ? "null"
             : cJSON_IsArray(n)  ? "an array"
             : cJSON_IsObject(n) ? "an object"
                                 : "an invalid value");
    return out;
}

/* Appends a user-supplied key to a path, with control characters and
 * non-ASCII bytes shown as \xNN so a message stays one readable line. */
static void path_part(struct buf *p, const char *s)
{
    buf_putc(p, '.');
    for (size_t n = 0; *s && n < 128; s++, n++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch >= 0x7f) {
            buf_printf(p, "\\x%02x", ch);
        } else {
            buf_putc(p, (char)ch);
        }
    }
}

static char *mkpath(const char *a, const char *b, const char *c)
{
    struct buf p = {0};
    buf_puts(&p, a);
    if (b) {
        path_part(&p, b);
    }
    if (c) {
        path_part(&p, c);
    }
    return buf_steal(&p);
}

static unsigned edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40) {
        return 99;
    }
    unsigned d[41][41];
    for (size_t i = 0; i <= la; i++) {
        d[i][0] = (unsigned)i;
    }
    for (size_t j = 0; j <= lb; j++) {
        d[0][j] = (unsigned)j;
    }
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            unsigned cost = a[i - 1] == b[j - 1] ? 0 : 1;
            unsigned m = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < m) {
                m = d[i][j - 1] + 1;
            }
            if (d[i - 1][j - 1] + cost < m) {
                m = d[i - 1][j - 1] + cost;
            }
            d[i][j] = m;
        }
    }
    return d[la][lb];
}

static void unknown_key(struct loader *L, struct src at, const char *path, const char *key,
                        const char *const *known, size_t n)
{
    const char *best = NULL;
    unsigned bestd = 3;
    for (size_t i = 0; i < n; i++) {
        if (!known[i]) {
            continue;
        }
        unsigned d = strcasecmp(key, known[i]) == 0 ? 0 : edit_distance(key, known[i]);
        if (d < bestd) {
            bestd = d;
            best = known[i];
        }
    }
    struct buf list = {0};
    for (size_t i = 0; i < n; i++) {
        if (known[i]) {
            buf_printf(&list, "%s%s", list.len ? ", " : "", known[i]);
        }
    }
    if (best) {
        lerr(L, at, true, path, "unknown key \"%s\"; did you mean \"%s\"? (keys are case-sensitive)",
             key, best);
    } else {
        lerr(L, at, true, path, "unknown key \"%s\" (known keys: %s)", key,
             list.data ? list.data : "");
    }
    buf_done(&list);
}

/* Reports duplicate member names of an object. */
static void check_dups(struct loader *L, const cJSON *obj, unsigned file, const char *path)
{
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) {
        n++;
    }
    if (n < 2) {
        return;
    }
    struct strmap seen = {0};
    for (const cJSON *c = obj->child; c; c = c->next) {
        void *old = NULL;
        int r = strmap_put(&seen, c->string, (void *)c, &old);
        if (r < 0) {
            L->oom = true;
            break;
        }
        if (r == 1) {
            char first[32] = "";
            size_t idx = 0, voff, koff;
            unsigned line, col;
            if (preorder_index(L->files[file].root, old, &idx)) {
                nth_value(L->files[file].text, L->files[file].len, idx, &voff, &koff);
                json_line_col(L->files[file].text, L->files[file].len, koff, &line, &col);
                snprintf(first, sizeof(first), "%u:%u", line, col);
            }
            lerr(L, (struct src){c, file}, true, path,
                 "duplicate key \"%s\" (first defined at line %s); remove one of them", c->string,
                 first);
        }
    }
    strmap_done(&seen);
}

/* ---- typed getters ------------------------------------------------------ */

static int get_duration(struct loader *L, struct src s, const char *path, usec_t min, usec_t max,
                        usec_t *ret)
{
    char g[64];
    usec_t v;
    if (!cJSON_IsString(s.node) || units_parse_duration(s.node->valuestring, &v) < 0) {
        lerr(L, s, false, path,
             "expected a duration such as \"30s\" (units: us, ms, s, m, h, d), got %s",
             got(s.node, g));
        return -EINVAL;
    }
    if (v < min || v > max) {
        char a[32], b[32];
        lerr(L, s, false, path, "%s is out of range; use a duration from %s to %s",
             s.node->valuestring, units_format_duration(min, a, sizeof(a)),
             units_format_duration(max, b, sizeof(b)));
        return -ERANGE;
    }
    *ret = v;
    return 0;
}

static int get_size(struct loader *L, struct src s, const char *path, uint64_t min, uint64_t max,
                    uint64_t *ret)
{
    char g[64];
    uint64_t v;
    if (cJSON_IsNumber(s.node)) {
        double d = s.node->valuedouble;
        if (!isfinite(d) || d < 0 || d != floor(d) || d > 9007199254740992.0) {
            lerr(L, s, false, path, "expected a size such as \"512KiB\" or a whole number of bytes, got %s",
                 got(s.node, g));
            return -EINVAL;
        }
        v = (uint64_t)d;
    } else if (!cJSON_IsString(s.node) || units_parse_size(s.node->valuestring, &v) < 0) {
        lerr(L, s, false, path,
             "expected a size such as \"512KiB\" or \"8MiB\" (units: B, kB, MB, GB, KiB, MiB, GiB, TiB), got %s",
             got(s.node, g));
        return -EINVAL;
    }
    if (v < min || v > max) {
        char a[32], b[32];
        lerr(L, s, false, path, "%s is out of range; use a size from %s to %s", got(s.node, g),
             units_format_size(min, a, sizeof(a)), units_format_size(max, b, sizeof(b)));
        return -ERANGE;
    }
    *ret = v;
    return 0;
}

static int get_uint(struct loader *L, struct src s, const char *path, uint64_t min, uint64_t max,
                    uint64_t *ret)
{
    char g[64];
    if (!cJSON_IsNumber(s.node) || !isfinite(s.node->valuedouble) ||
        s.node->valuedouble != floor(s.node->valuedouble)) {
        lerr(L, s, false, path, "expected a whole number, got %s", got(s.node, g));
        return -EINVAL;
    }
    double d = s.node->valuedouble;
    if (d < (double)min || d > (double)max) {
        lerr(L, s, false, path, "%s is out of range; use a number from %llu to %llu",
             got(s.node, g), (unsigned long long)min, (unsigned long long)max);
        return -ERANGE;
    }
    *ret = (uint64_t)d;
    return 0;
}

static int get_bool(struct loader *L, struct src s, const char *path, bool *ret)
{
    char g[64];
    if (!cJSON_IsBool(s.node)) {
        lerr(L, s, false, path, "expected true or false, got %s", got(s.node, g));
        return -EINVAL;
    }
    *ret = cJSON_IsTrue(s.node);
    return 0;
}

static int get_string(struct loader *L, struct src s, const char *path, const char **ret)
{
    char g[64];
    if (!cJSON_IsString(s.node)) {
        lerr(L, s, false, path, "expected a string, got %s", got(s.node, g));
        return -EINVAL;
    }
    *ret = s.node->valuestring;
    return 0;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONFIG_MAX_NAME) {
        return false;
    }
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == ':' || c == '@')) {
            return false;
        }
    }
    return true;
}

/* RFC 9110 token (header names, methods). */
static bool is_token(const char *s)
{
    if (!*s) {
        return false;
    }
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c))) {
            return false;
        }
    }
    return true;
}

/* ---- reading files ------------------------------------------------------ */

static int read_file(const char *path, char **ret, size_t *ret_len, char *err, size_t errlen)
{
    /* O_NONBLOCK: opening a FIFO without a writer would block for ever
     * (with SIGTERM blocked at start-up, and the event loop stuck at a
     * reload); a device that has nothing to read fails instead of hanging */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return -errno;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int r = -errno;
        snprintf(err, errlen, "cannot stat: %s", strerror(errno));
        close(fd);
        return r;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "is a directory, expected a JSON file");
        close(fd);
        return -EISDIR;
    }
    if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "is a %s, expected a JSON file",
                 S_ISFIFO(st.st_mode) ? "FIFO (named pipe)" : "socket");
        close(fd);
        return -EINVAL;
    }
    /* Read it whole (a file replaced during a reload is read as one
     * consistent version) with a hard cap checked while reading. */
    struct buf b = {.max = CONFIG_MAX_FILE_BYTES};
    for (;;) {
        int r = buf_reserve(&b, 65536);
        if (r == -E2BIG) {
            r = buf_reserve(&b, CONFIG_MAX_FILE_BYTES - b.len);
            if (r < 0 || b.len >= CONFIG_MAX_FILE_BYTES) {
                snprintf(err, errlen, "larger than %u MiB; split it or use fewer endpoints",
                         CONFIG_MAX_FILE_BYTES >> 20);
                buf_done(&b);
                close(fd);
                return -EFBIG;
            }
        } else if (r < 0) {
            buf_done(&b);
            close(fd);
            snprintf(err, errlen, "out of memory");
            return r;
        }
        size_t room = b.cap - b.len - 1;
        if (b.max && room > b.max - b.len) {
            room = b.max - b.len;
        }
        if (room == 0) {
            snprintf(err, errlen, "larger than %u MiB; split it or use fewer endpoints",
                     CONFIG_MAX_FILE_BYTES >> 20);
            buf_done(&b);
            close(fd);
            return -EFBIG;
        }
        ssize_t n = read(fd, b.data + b.len, room);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int r2 = -errno;
            snprintf(err, errlen, "read error: %s", strerror(errno));
            buf_done(&b);
            close(fd);
            return r2;
        }
        if (n == 0) {
            break;
        }
        b.len += (size_t)n;
        b.data[b.len] = '\0';
    }
    close(fd);
    *ret_len = b.len;
    *ret = buf_steal(&b);
    return *ret ? 0 : -ENOMEM;
}

static int load_file(struct loader *L, const char *path)
{
    struct cfile *nf = realloc(L->files, (L->n_files + 1) * sizeof(*nf));
    if (!nf) {
        L->oom = true;
        return -ENOMEM;
    }
    L->files = nf;
    struct cfile *f = &L->files[L->n_files];
    memset(f, 0, sizeof(*f));
    f->path = strdup(path);
    if (!f->path) {
        L->oom = true;
        return -ENOMEM;
    }
    unsigned idx = (unsigned)L->n_files++;
    char err[256];
    int r = read_file(path, &f->text, &f->len, err, sizeof(err));
    if (r == -ENOMEM) {
        L->oom = true;
        return r;
    }
    if (r < 0) {
        lerr(L, (struct src){NULL, idx}, false, NULL, "%s", err);
        return r;
    }
    /* Strict syntax first: precise reason and position for any error. */
    struct buf scratch = {0};
    struct json_error je;
    r = json_minify(f->text, f->len, JSON_MAX_DEPTH, &scratch, &je);
    buf_done(&scratch);
    if (r == -EINVAL) {
        unsigned line, col;
        json_line_col(f->text, f->len, je.offset, &line, &col);
        errs_add(L, ({
                     struct buf m = {0};
                     buf_printf(&m, "%s:%u:%u: invalid JSON: %s", path, line, col, je.msg);
                     buf_steal(&m);
                 }));
        return r;
    }
    if (r < 0) {
        L->oom = true;
        return r;
    }
    const char *nul = strstr(f->text, "\\u0000");
    if (nul) {
        unsigned line, col;
        json_line_col(f->text, f->len, (size_t)(nul - f->text), &line, &col);
        errs_add(L, ({
                     struct buf m = {0};
                     buf_printf(&m, "%s:%u:%u: \"\\u0000\" is not allowed in the configuration",
                                path, line, col);
                     buf_steal(&m);
                 }));
        return -EINVAL;
    }
    f->root = cJSON_ParseWithLength(f->text, f->len);
    if (!f->root) {
        L->oom = true; /* the text is valid JSON: only allocation can fail */
        return -ENOMEM;
    }
    if (!cJSON_IsObject(f->root)) {
        lerr(L, (struct src){f->root, idx}, false, NULL,
             "the top-level value must be a JSON object with \"endpoints\" (and optionally "
             "\"defaults\", \"limits\", \"sinks\")");
        return -EINVAL;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* FILE.json -> FILE.d; other names -> NAME.d */
static char *dropin_dir(const char *path)
{
    size_t l = strlen(path);
    if (l > 5 && strcmp(path + l - 5, ".json") == 0) {
        l -= 5;
    }
    char *d = malloc(l + 3);
    if (d) {
        memcpy(d, path, l);
        memcpy(d + l, ".d", 3);
    }
    return d;
}

static int list_dropins(struct loader *L, const char *dir, char ***ret, size_t *ret_n)
{
    *ret = NULL;
    *ret_n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR) {
            return 0;
        }
        struct buf m = {0};
        buf_printf(&m, "%s: cannot read the drop-in directory: %s", dir, strerror(errno));
        errs_add(L, buf_steal(&m));
        return -errno;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".json") != 0) {
            continue;
        }
        char **nn = realloc(names, (n + 1) * sizeof(char *));
        if (!nn) {
            break;
        }
        names = nn;
        struct buf p = {0};
        buf_printf(&p, "%s/%s", dir, de->d_name);
        names[n] = buf_steal(&p);
        if (names[n]) {
            n++;
        }
    }
    closedir(d);
    qsort(names, n, sizeof(char *), cmp_str);
    *ret = names;
    *ret_n = n;
    return 0;
}

/* ---- merging ------------------------------------------------------------ */

static void named_put(struct loader *L, struct namedvec *v, const char *name, struct src s)
{
    void *old = strmap_get(&v->idx, name);
    if (old) {
        /* a later file replaces the earlier definition, keeping its place */
        v->v[(uintptr_t)old - 1].src = s;
        v->v[(uintptr_t)old - 1].name = name;
        strmap_set(&v->idx, name, old);
        return;
    }
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 16;
        struct named *nv = realloc(v->v, nc * sizeof(*nv));
        if (!nv) {
            L->oom = true;
            return;
        }
        v->v = nv;
        v->cap = nc;
    }
    v->v[v->n] = (struct named){name, s};
    v->n++;
    if (strmap_put(&v->idx, name, (void *)(uintptr_t)v->n, NULL) < 0) {
        L->oom = true;
    }
}

static void merge_file(struct loader *L, unsigned fi)
{
    const cJSON *root = L->files[fi].root;
    check_dups(L, root, fi, "(top level)");
    for (const cJSON *m = root->child; m; m = m->next) {
        struct src s = {m, fi};
        if (strcmp(m->string, "limits") == 0) {
            if (!cJSON_IsObject(m)) {
                lerr(L, s, false, "limits", "expected an object");
                continue;
            }
            check_dups(L, m, fi, "limits");
            for (const cJSON *k = m->child; k; k = k->next) {
                size_t i;
                for (i = 0; i < _LK_MAX && strcmp(k->string, limit_keys[i]) != 0; i++) {
                }
                if (i == _LK_MAX) {
                    unknown_key(L, (struct src){k, fi}, "limits", k->string, limit_keys, _LK_MAX);
                    continue;
                }
                L->limits[i] = (struct src){k, fi};
            }
        } else if (strcmp(m->string, "defaults") == 0) {
            if (!cJSON_IsObject(m)) {
                lerr(L, s, false, "defaults", "expected an object");
                continue;
            }
            check_dups(L, m, fi, "defaults");
            for (const cJSON *k = m->child; k; k = k->next) {
                size_t i;
                for (i = 0; i < _EK_MAX && strcmp(k->string, ep_keys[i]) != 0; i++) {
                }
                if (i == _EK_MAX) {
                    unknown_key(L, (struct src){k, fi}, "defaults", k->string, ep_keys, _EK_MAX);
                    continue;
                }
                if (i == EK_URL) {
                    lerr(L, (struct src){k, fi}, true, "defaults.url",
                         "\"url\" cannot have a default; set it on each endpoint");
                    continue;
                }
                L->defaults[i] = (struct src){k, fi};
            }
        } else if (strcmp(m->string, "sinks") == 0 || strcmp(m->string, "endpoints") == 0) {
            bool is_sinks = m->string[0] == 's';
            if (!cJSON_IsObject(m)) {
                lerr(L, s, false, m->string,
                     "expected an object of NAME: {...} (for example {\"%s\": {...}})",
                     is_sinks ? "out" : "weather");
                continue;
            }
            check_dups(L, m, fi, m->string);
            for (const cJSON *k = m->child; k; k = k->next) {
                if (!valid_name(k->string)) {
                    lerr(L, (struct src){k, fi}, true, m->string,
                         "invalid name \"%.64s\": use 1 to %d letters, digits and _ - . : @",
                         k->string, CONFIG_MAX_NAME);
                    continue;
                }
                named_put(L, is_sinks ? &L->sinks : &L->endpoints, k->string,
                          (struct src){k, fi});
            }
        } else if (strcmp(m->string, "shard") == 0) {
            L->shard = s; /* a drop-in may set it per machine */
        } else {
            unknown_key(L, s, "(top level)", m->string, top_keys, ELEMENTSOF(top_keys));
        }
    }
}

/* ---- building ----------------------------------------------------------- */

static void build_shard(struct loader *L)
{
    const char *str;
    if (!L->shard.node || get_string(L, L->shard, "shard", &str) < 0) {
        return;
    }
    if (shard_parse(str, &L->cfg->shard) < 0) {
        lerr(L, L->shard, false, "shard",
             "expected \"K/N\" (this instance K of N, 1 <= K <= N <= 1024), got \"%.32s\"",
             str);
    }
}

static void build_limits(struct loader *L)
{
    struct limits *lim = &L->cfg->limits;
    lim->max_concurrent = DEF_MAX_CONCURRENT;
    lim->max_per_host = 0;
    lim->max_body_size = DEF_MAX_BODY_SIZE;
    lim->max_endpoints = DEF_MAX_ENDPOINTS;
    lim->shutdown_grace = DEF_SHUTDOWN_GRACE;
    lim->retry_budget = DEF_RETRY_BUDGET;
    lim->stats_interval = 5 * 60 * USEC_PER_SEC;
    lim->metrics_interval = 15 * USEC_PER_SEC;
    uint64_t u;
    const char *str;
    for (int i = 0; i < _LK_MAX; i++) {
        struct src s = L->limits[i];
        if (!s.node) {
            continue;
        }
        _cleanup_free_ char *path = mkpath("limits", limit_keys[i], NULL);
        switch (i) {
        case LK_MAX_CONCURRENT:
            if (get_uint(L, s, path, 1, 100000, &u) == 0) {
                lim->max_concurrent = (uint32_t)u;
            }
            break;
        case LK_MAX_PER_HOST:
            if (get_uint(L, s, path, 0, 100000, &u) == 0) {
                lim->max_per_host = (uint32_t)u;
            }
            break;
        case LK_MAX_BODY_SIZE:
            if (get_size(L, s, path, 1, UINT64_C(1) << 30, &u) == 0) {
                lim->max_body_size = u;
            }
            break;
        case LK_MAX_ENDPOINTS:
            if (get_uint(L, s, path, 1, 10000000, &u) == 0) {
                lim->max_endpoints = (uint32_t)u;
            }
            break;
        case LK_SHUTDOWN_GRACE:
            get_duration(L, s, path, 0, 3600 * USEC_PER_SEC, &lim->shutdown_grace);
            break;
        case LK_STATS_INTERVAL:
            get_duration(L, s, path, 0, 86400 * USEC_PER_SEC, &lim->stats_interval);
            break;
        case LK_METRICS_INTERVAL:
            get_duration(L, s, path, USEC_PER_SEC, 86400 * USEC_PER_SEC, &lim->metrics_interval);
            break;
        case LK_METRICS_TEXTFILE:
            if (get_string(L, s, path, &str) == 0) {
                const char *slash = strrchr(str, '/');
                if (str[0] != '/' || !slash[1] || strlen(str) > 4000) {
                    lerr(L, s, false, path,
                         "expected an absolute file path such as "
                         "\"/var/lib/prometheus/node-exporter/fetchd.prom\"");
                } else {
                    lim->metrics_textfile = arena_strdup(&L->cfg->arena, str);
                    if (!lim->metrics_textfile) {
                        L->oom = true;
                    }
                }
            }
            break;
        case LK_RETRY_BUDGET:
            if (!cJSON_IsNumber(s.node) || !isfinite(s.node->valuedouble) ||
                s.node->valuedouble < 0 || s.node->valuedouble > 1) {
                char g[64];
                lerr(L, s, false, path,
                     "expected a number from 0 to 1 (retries per first attempt), got %s",
                     got(s.node, g));
            } else {
                lim->retry_budget = s.node->valuedouble;
            }
            break;
        }
    }
}

/* One sink option (a type's own or a common one) into v. */
static int parse_opt(struct loader *L, struct src ks, const char *kp, const struct opt_def *od,
                     struct opt_value *v)
{
    struct config *cfg = L->cfg;
    int r = 0;
    const char *str;
    switch (od->type) {
    case OPT_STRING:
    case OPT_PATH:
        r = get_string(L, ks, kp, &str);
        if (r == 0 && od->type == OPT_PATH && !*str) {
            lerr(L, ks, false, kp, "the path is empty");
            r = -EINVAL;
        }
        if (r == 0 && od->one_of) {
            bool found = false;
            struct buf list = {0};
            for (size_t i = 0; od->one_of[i]; i++) {
                found |= strcmp(str, od->one_of[i]) == 0;
                buf_printf(&list, "%s%s", i ? ", " : "", od->one_of[i]);
            }
            if (!found) {
                char g[64];
                lerr(L, ks, false, kp, "must be one of: %s (got %s)", list.data ? list.data : "",
                     got(ks.node, g));
                r = -EINVAL;
            }
            buf_done(&list);
        }
        if (r == 0 && !(v->s = arena_strdup(&cfg->arena, str))) {
            L->oom = true;
            r = -ENOMEM;
        }
        break;
    case OPT_BOOL:
        r = get_bool(L, ks, kp, &v->b);
        break;
    case OPT_SIZE:
        r = get_size(L, ks, kp, 0, UINT64_MAX / 2, &v->u);
        break;
    case OPT_DURATION:
        r = get_duration(L, ks, kp, 0, 86400 * USEC_PER_SEC, &v->u);
        break;
    case OPT_UINT:
        r = get_uint(L, ks, kp, 0, UINT32_MAX, &v->u);
        break;
    case OPT_STRINGS: {
        const cJSON *a = ks.node;
        size_t n = cJSON_IsArray(a) ? (size_t)cJSON_GetArraySize(a) : 0;
        if (!n) {
            char g[64];
            lerr(L, ks, false, kp, "expected a non-empty array of strings, got %s", got(a, g));
            return -EINVAL;
        }
        const char **list = arena_alloc(&cfg->arena, (n + 1) * sizeof(char *));
        if (!list) {
            L->oom = true;
            return -ENOMEM;
        }
        size_t i = 0;
        for (const cJSON *c = a->child; c; c = c->next, i++) {
            if (!cJSON_IsString(c)) {
                char g[64];
                lerr(L, (struct src){c, ks.file}, false, kp,
                     "element %zu: expected a string, got %s", i, got(c, g));
                return -EINVAL;
            }
            if (!(list[i] = arena_strdup(&cfg->arena, c->valuestring))) {
                L->oom = true;
                return -ENOMEM;
            }
        }
        list[n] = NULL;
        v->list = list;
        v->u = n;
        break;
    }
    }
    if (r == 0) {
        v->set = true;
    }
    return r;
}

/* The common sink options into sc (with their defaults). */
static void sink_common(struct loader *L, struct sink_cfg *sc, const struct opt_value *c,
                        struct src at, const char *path)
{
    sc->take = SINK_TAKE_ALL;
    if (c[SINK_OPT_RECORDS].set) {
        const char *v = c[SINK_OPT_RECORDS].s;
        sc->take = strcmp(v, "ok") == 0 ? SINK_TAKE_OK
                   : strcmp(v, "errors") == 0 ? SINK_TAKE_ERRORS : SINK_TAKE_ALL;
    }
    sc->overflow = SINK_DROP_OLDEST;
    sc->overflow_set = c[SINK_OPT_OVERFLOW].set;
    if (c[SINK_OPT_OVERFLOW].set) {
        const char *v = c[SINK_OPT_OVERFLOW].s;
        sc->overflow = strcmp(v, "drop_newest") == 0 ? SINK_DROP_NEWEST
                       : strcmp(v, "pause") == 0     ? SINK_PAUSE : SINK_DROP_OLDEST;
    }
    sc->max_records = c[SINK_OPT_QUEUE_RECORDS].set ? c[SINK_OPT_QUEUE_RECORDS].u
                                                    : SINK_DEFAULT_QUEUE_RECORDS;
    sc->max_bytes = c[SINK_OPT_QUEUE_BYTES].set ? c[SINK_OPT_QUEUE_BYTES].u
                                                : SINK_DEFAULT_QUEUE_BYTES;
    sc->backoff = c[SINK_OPT_BACKOFF].set ? c[SINK_OPT_BACKOFF].u : SINK_DEFAULT_BACKOFF;
    sc->max_backoff = c[SINK_OPT_MAX_BACKOFF].set ? c[SINK_OPT_MAX_BACKOFF].u
                                                  : SINK_DEFAULT_MAX_BACKOFF;
    if (sc->max_records < 1) {
        lerr(L, at, false, path, "\"queue_max_records\" must be at least 1");
    }
    if (sc->max_bytes < 4096) {
        lerr(L, at, false, path, "\"queue_max_bytes\" must be at least 4KiB");
    }
    if (sc->backoff < USEC_PER_MSEC) {
        sc->backoff = USEC_PER_MSEC;
    }
    if (sc->max_backoff < sc->backoff) {
        lerr(L, at, false, path, "\"retry_max_backoff\" must not be below \"retry_backoff\"");
    }
}

/* A "plugin" sink: load the shared object (now, so that a missing file, a
 * missing symbol or a wrong ABI is a configuration error) and check
 * "options" against the plugin's option table. */
static int sink_plugin(struct loader *L, struct sink_cfg *sc, const cJSON *obj,
                       const cJSON *popts, unsigned fi, const char *name)
{
    struct config *cfg = L->cfg;
    _cleanup_free_ char *pp = mkpath("sinks", name, "path");
    const char *spec = sc->values[0].s;
    char err[600];
    const struct plugin *pl = plugin_load(spec, err, sizeof(err));
    struct src at = {cJSON_GetObjectItemCaseSensitive(obj, "path"), fi};
    if (!pl) {
        lerr(L, at, false, pp, "%s", err);
        return -EINVAL;
    }
    sc->plugin = pl;
    const struct fetchd_sink_option *opts = pl->def->options;
    _cleanup_free_ char *op = mkpath("sinks", name, "options");
    size_t n = 0;
    if (popts && !cJSON_IsObject(popts)) {
        char g[64];
        lerr(L, (struct src){popts, fi}, false, op, "expected an object, got %s", got(popts, g));
        return -EINVAL;
    }
    if (popts) {
        check_dups(L, popts, fi, op);
        n = (size_t)cJSON_GetArraySize(popts);
    }
    sc->plugin_opts = arena_alloc(&cfg->arena, (2 * n + 1) * sizeof(char *));
    if (!sc->plugin_opts) {
        L->oom = true;
        return -ENOMEM;
    }
    int r = 0;
    size_t i = 0;
    for (const cJSON *k = popts ? popts->child : NULL; k; k = k->next) {
        struct src ks = {k, fi};
        _cleanup_free_ char *kp = mkpath("sinks", name, "options");
        bool known = false;
        for (size_t j = 0; opts && opts[j].key; j++) {
            known |= strcmp(opts[j].key, k->string) == 0;
        }
        if (!known) {
            const char *names[32];
            size_t nk = 0;
            for (size_t j = 0; opts && opts[j].key && nk < 32; j++) {
                names[nk++] = opts[j].key;
            }
            if (nk) {
                unknown_key(L, ks, kp, k->string, names, nk);
            } else {
                lerr(L, ks, true, kp, "unknown key \"%s\": plugin \"%s\" takes no options",
                     k->string, pl->path);
            }
            r = -EINVAL;
            continue;
        }
        char *text = NULL;
        if (cJSON_IsString(k)) {
            text = strdup(k->valuestring);
        } else if (cJSON_IsNumber(k) || cJSON_IsBool(k)) {
            text = cJSON_PrintUnformatted(k);
        } else {
            char g[64];
            lerr(L, ks, false, kp, "\"%s\": expected a string, number or boolean, got %s",
                 k->string, got(k, g));
            r = -EINVAL;
            continue;
        }
        sc->plugin_opts[2 * i] = arena_strdup(&cfg->arena, k->string);
        sc->plugin_opts[2 * i + 1] = text ? arena_strdup(&cfg->arena, text) : NULL;
        free(text);
        if (!sc->plugin_opts[2 * i] || !sc->plugin_opts[2 * i + 1]) {
            L->oom = true;
            return -ENOMEM;
        }
        i++;
    }
    sc->n_plugin_opts = i;
    for (size_t j = 0; opts && opts[j].key; j++) {
        bool have = false;
        for (size_t m = 0; m < i; m++) {
            have |= strcmp(sc->plugin_opts[2 * m], opts[j].key) == 0;
        }
        if (opts[j].required && !have) {
            lerr(L, popts ? (struct src){popts, fi} : (struct src){obj, fi}, false, op, "missing \"%s\" (%s)",
                 opts[j].key, opts[j].help ? opts[j].help : "required by the plugin");
            r = -EINVAL;
        }
    }
    return r;
}

static void build_sinks(struct loader *L)
{
    struct config *cfg = L->cfg;
    bool have_stdout = strmap_get(&L->sinks.idx, "stdout") != NULL;
    size_t n = L->sinks.n + (have_stdout ? 0 : 1);
    cfg->sinks = calloc(n, sizeof(*cfg->sinks));
    if (!cfg->sinks) {
        L->oom = true;
        return;
    }
    for (size_t i = 0; i < L->sinks.n; i++) {
        struct named *nm = &L->sinks.v[i];
        struct sink_cfg *sc = &cfg->sinks[cfg->n_sinks];
        const cJSON *obj = nm->src.node;
        unsigned fi = nm->src.file;
        _cleanup_free_ char *path = mkpath("sinks", nm->name, NULL);
        if (!cJSON_IsObject(obj)) {
            lerr(L, nm->src, false, path,
                 "expected an object such as {\"type\": \"file\", \"path\": \"/var/lib/fetchd/out.jsonl\"}");
            continue;
        }
        check_dups(L, obj, fi, path);
        const cJSON *type = NULL;
        for (const cJSON *k = obj->child; k; k = k->next) {
            if (strcmp(k->string, "type") == 0) {
                type = k;
            }
        }
        if (!type || !cJSON_IsString(type)) {
            char g[64];
            lerr(L, type ? (struct src){type, fi} : nm->src, false, path,
                 "\"type\" must be one of: %s (got %s)", sink_type_names(), got(type, g));
            continue;
        }
        sc->type = sink_type_find(type->valuestring);
        if (!sc->type) {
            lerr(L, (struct src){type, fi}, false, path, "unknown sink type \"%s\" (known: %s)",
                 type->valuestring, sink_type_names());
            continue;
        }
        sc->name = arena_strdup(&cfg->arena, nm->name);
        size_t nopts = 0;
        while (sc->type->options[nopts].key) {
            nopts++;
        }
        sc->values = arena_alloc(&cfg->arena, (nopts + 1) * sizeof(struct opt_value));
        struct opt_value common[_SINK_OPT_MAX + 1];
        memset(common, 0, sizeof(common));
        char *canon = cJSON_PrintUnformatted(obj);
        sc->canon = canon ? arena_strdup(&cfg->arena, canon) : NULL;
        free(canon);
        if (!sc->name || !sc->values || !sc->canon) {
            L->oom = true;
            return;
        }
        bool ok = true;
        bool is_plugin = sc->type == &sink_type_plugin;
        const cJSON *popts = NULL;
        for (const cJSON *k = obj->child; k; k = k->next) {
            if (k == type) {
                continue;
            }
            if (is_plugin && strcmp(k->string, "options") == 0) {
                popts = k;
                continue;
            }
            const struct opt_def *od = NULL;
            struct opt_value *v = NULL;
            for (size_t oi = 0; oi < nopts; oi++) {
                if (strcmp(k->string, sc->type->options[oi].key) == 0) {
                    od = &sc->type->options[oi];
                    v = &sc->values[oi];
                }
            }
            for (size_t oi = 0; !od && oi < _SINK_OPT_MAX; oi++) {
                if (strcmp(k->string, sink_common_options[oi].key) == 0) {
                    od = &sink_common_options[oi];
                    v = &common[oi];
                }
            }
            struct src ks = {k, fi};
            _cleanup_free_ char *kp = mkpath("sinks", nm->name, k->string);
            if (!od) {
                const char *known[32] = {"type"};
                size_t nk = 1;
                for (size_t j = 0; j < nopts && nk < 31; j++) {
                    known[nk++] = sc->type->options[j].key;
                }
                for (size_t j = 0; j < _SINK_OPT_MAX && nk < 31; j++) {
                    known[nk++] = sink_common_options[j].key;
                }
                if (is_plugin) {
                    known[nk++] = "options";
                }
                unknown_key(L, ks, path, k->string, known, nk);
                ok = false;
                continue;
            }
            if (parse_opt(L, ks, kp, od, v) < 0) {
                ok = false;
            }
        }
        for (size_t oi = 0; oi < nopts; oi++) {
            if (sc->type->options[oi].required && !sc->values[oi].set) {
                lerr(L, nm->src, false, path, "missing \"%s\" (%s)", sc->type->options[oi].key,
                     sc->type->options[oi].help);
                ok = false;
            }
        }
        sink_common(L, sc, common, nm->src, path);
        if (ok && is_plugin) {
            ok = sink_plugin(L, sc, obj, popts, fi, nm->name) == 0;
        } else if (popts) {
            ok = false;
        }
        if (ok && sc->type->check) {
            char err[512];
            if (sc->type->check(sc, err, sizeof(err)) < 0) {
                lerr(L, nm->src, false, path, "%s", err);
                ok = false;
            }
        }
        (void)ok;
        cfg->n_sinks++;
    }
    if (!have_stdout) {
        struct sink_cfg *sc = &cfg->sinks[cfg->n_sinks++];
        sc->name = "stdout";
        sc->type = &sink_type_stdout;
        sc->values = arena_alloc(&cfg->arena, sizeof(struct opt_value) * 4);
        sc->implicit = true;
        sc->canon = "{\"type\":\"stdout\"}";
        sc->max_records = SINK_DEFAULT_QUEUE_RECORDS;
        sc->max_bytes = SINK_DEFAULT_QUEUE_BYTES;
        sc->backoff = SINK_DEFAULT_BACKOFF;
        sc->max_backoff = SINK_DEFAULT_MAX_BACKOFF;
        if (!sc->values) {
            L->oom = true;
        }
    }
}

static int sink_index(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_sinks; i++) {
        if (cfg->sinks[i].name && strcmp(cfg->sinks[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Resolves one endpoint key: the endpoint's own value or the default. */
static struct src pick(const struct src *own, const struct loader *L, enum ep_key k)
{
    return own[k].node ? own[k] : L->defaults[k];
}

/* "schedule" (a cron expression) and "timezone": instead of "interval".
 * A schedule from "defaults" is parsed once and shared. */
static void build_schedule(struct loader *L, struct endpoint_cfg *ep, const struct src *own,
                           const char *epname)
{
    struct src ss = pick(own, L, EK_SCHEDULE), tz = pick(own, L, EK_TIMEZONE);
    bool inherited = !own[EK_SCHEDULE].node && !own[EK_TIMEZONE].node;
    _cleanup_free_ char *sp = inherited ? mkpath("defaults", "schedule", NULL)
                                        : mkpath("endpoints", epname, "schedule");
    _cleanup_free_ char *tp = own[EK_TIMEZONE].node ? mkpath("endpoints", epname, "timezone")
                                                    : mkpath("defaults", "timezone", NULL);
    if (!own[EK_SCHEDULE].node && own[EK_INTERVAL].node) {
        ss.node = NULL; /* its own interval wins over a default schedule */
    }
    if (!ss.node) {
        /* the zone of time placeholders (build_templates checks its use) */
        const char *zone;
        bool was_mute = L->mute;
        if (!own[EK_TIMEZONE].node) { /* a bad default is reported once */
            L->mute = was_mute || L->def_tz_checked;
            L->def_tz_checked = true;
        }
        if (tz.node && get_string(L, tz, tp, &zone) == 0) {
            char err[256];
            char *env = NULL;
            int r = cron_zone_env(zone, &env, err, sizeof(err));
            free(env);
            if (r == -ENOMEM) {
                L->oom = true;
            } else if (r < 0) {
                lerr(L, tz, false, tp, "%s", err);
            } else if (!(ep->timezone = arena_strdup(&L->cfg->arena, zone))) {
                L->oom = true;
            }
        }
        L->mute = was_mute;
        return;
    }
    if (own[EK_SCHEDULE].node &&
        (own[EK_INTERVAL].node || own[EK_ALIGN].node || own[EK_JITTER].node)) {
        lerr(L, own[EK_SCHEDULE], true, sp,
             "endpoint \"%s\" has both \"schedule\" and \"%s\"; a calendar schedule "
             "replaces interval, align and jitter: keep one",
             epname, own[EK_INTERVAL].node ? "interval" : own[EK_ALIGN].node ? "align" : "jitter");
        return;
    }
    if (inherited && L->def_cron_built) { /* (NULL after an error reported once) */
        ep->cron = L->def_cron;
        ep->schedule = L->def_schedule;
        ep->timezone = L->def_timezone;
        return;
    }
    if (inherited) {
        L->def_cron_built = true; /* errors of "defaults" are reported once */
    }
    const char *expr, *zone = NULL;
    if (get_string(L, ss, sp, &expr) < 0 || (tz.node && get_string(L, tz, tp, &zone) < 0)) {
        return;
    }
    char err[256];
    struct cron *c = NULL;
    int r = cron_parse(expr, zone, &c, err, sizeof(err));
    if (r == -ENOMEM) {
        L->oom = true;
        return;
    }
    if (r < 0) {
        bool bad_zone = strstr(err, "time zone") != NULL;
        lerr(L, bad_zone && tz.node ? tz : ss, false, bad_zone && tz.node ? tp : sp,
             "%s (a schedule is \"MIN HOUR DAY MONTH WEEKDAY\", e.g. \"*/15 * * * *\" or "
             "\"0 6 * * mon-fri\")",
             err);
        return;
    }
    struct cron **nc = realloc(L->cfg->crons, (L->cfg->n_crons + 1) * sizeof(*nc));
    if (!nc) {
        cron_free(c);
        L->oom = true;
        return;
    }
    L->cfg->crons = nc;
    nc[L->cfg->n_crons++] = c;
    ep->cron = c;
    ep->schedule = arena_strdup(&L->cfg->arena, expr);
    ep->timezone = zone ? arena_strdup(&L->cfg->arena, zone) : NULL;
    if (!ep->schedule || (zone && !ep->timezone)) {
        L->oom = true;
    }
    if (inherited) {
        L->def_cron = c;
        L->def_schedule = ep->schedule;
        L->def_timezone = ep->timezone;
    }
}

static void build_headers(struct loader *L, struct endpoint_cfg *ep, struct src own_h,
                          struct src def_h, const char *epname, bool *has_ctype)
{
    struct config *cfg = L->cfg;
    /* defaults first, then the endpoint's (same name, case-insensitive:
     * endpoint wins; null removes a default header) */
    const struct src layers[2] = {def_h, own_h};
    const cJSON *names[256];
    const cJSON *vals[256];
    int layer[256];
    size_t n = 0;
    bool was_mute = L->mute;
    for (int li = 0; li < 2; li++) {
        struct src s = layers[li];
        /* the defaults' problems are reported once, not per endpoint */
        L->mute = was_mute || (li == 0 && L->def_seen[EK_HEADERS]);
        if (!s.node) {
            continue;
        }
        _cleanup_free_ char *path = mkpath(li == 0 ? "defaults" : "endpoints",
                                           li == 0 ? NULL : epname, "headers");
        if (!cJSON_IsObject(s.node)) {
            lerr(L, s, false, path, "expected an object of header names to string values, such as {\"Accept\": \"application/json\"}");
            continue;
        }
        check_dups(L, s.node, s.file, path);
        for (const cJSON *h = s.node->child; h; h = h->next) {
            _cleanup_free_ char *hp = mkpath(path, h->string, NULL);
            struct src hs = {h, s.file};
            if (!is_token(h->string)) {
                lerr(L, hs, true, hp,
                     "invalid header name: use letters, digits and !#$%%&'*+-.^_`|~ only (RFC 9110)");
                continue;
            }
            size_t j;
            for (j = 0; j < n && strcasecmp(names[j]->string, h->string) != 0; j++) {
            }
            if (cJSON_IsNull(h)) {
                if (j < n) {
                    vals[j] = NULL;
                    layer[j] = li;
                }
                continue;
            }
            if (!cJSON_IsString(h)) {
                lerr(L, hs, false, hp, "expected a string value (or null to remove a default header)");
                continue;
            }
            for (const char *c = h->valuestring; *c; c++) {
                unsigned char ch = (unsigned char)*c;
                if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                    /* never echo the value: it may be a secret */
                    lerr(L, hs, false, hp,
                         "the value contains a control character (CR, LF or similar) at byte %zu; "
                         "header values must be one line",
                         (size_t)(c - h->valuestring) + 1);
                    goto next;
                }
            }
            if (j < n) {
                if (layer[j] == li) {
                    lerr(L, hs, true, hp, "header given twice (names are case-insensitive)");
                    continue;
                }
                names[j] = h;
                vals[j] = h;
                layer[j] = li;
            } else if (n < ELEMENTSOF(names)) {
                names[n] = h;
                vals[n] = h;
                layer[n] = li;
                n++;
            } else {
                lerr(L, hs, true, hp, "too many headers (at most %zu)", ELEMENTSOF(names));
            }
        next:;
        }
    }
    L->mute = was_mute;
    L->def_seen[EK_HEADERS] = true;
    size_t cnt = 0;
    for (size_t j = 0; j < n; j++) {
        cnt += vals[j] != NULL;
    }
    ep->headers = cnt ? arena_alloc(&cfg->arena, cnt * sizeof(char *)) : NULL;
    if (cnt && !ep->headers) {
        L->oom = true;
        return;
    }
    for (size_t j = 0; j < n; j++) {
        if (!vals[j]) {
            continue;
        }
        const char *name = vals[j]->string, *value = vals[j]->valuestring;
        if (strcasecmp(name, "Content-Type") == 0) {
            *has_ctype = true;
        }
        struct buf hb = {0};
        /* curl: "Name:" would remove the header, "Name;" sends it empty */
        if (*value) {
            buf_printf(&hb, "%s: %s", name, value);
        } else {
            buf_printf(&hb, "%s;", name);
        }
        char *hdr = hb.data ? arena_strndup(&cfg->arena, hb.data, hb.len) : NULL;
        buf_done(&hb);
        if (!hdr) {
            L->oom = true;
            return;
        }
        ep->headers[ep->n_headers++] = hdr;
    }
}

/* ---- the less common endpoint options (struct endpoint_ext) ------------- */

/* Checks an option object's member names against known (NULL-terminated);
 * reports unknown and duplicate keys. Returns false when it is not an
 * object. */
static bool sub_object(struct loader *L, struct src s, const char *path, const char *const *known,
                       const char *example)
{
    if (!cJSON_IsObject(s.node)) {
        char g[64];
        lerr(L, s, false, path, "expected an object such as %s, got %s", example, got(s.node, g));
        return false;
    }
    check_dups(L, s.node, s.file, path);
    size_t n = 0;
    while (known[n]) {
        n++;
    }
    for (const cJSON *k = s.node->child; k; k = k->next) {
        size_t i;
        for (i = 0; i < n && strcmp(k->string, known[i]) != 0; i++) {
        }
        if (i == n) {
            unknown_key(L, (struct src){k, s.file}, path, k->string, known, n);
        }
    }
    return true;
}

static struct src member(struct src s, const char *key)
{
    for (const cJSON *k = s.node ? s.node->child : NULL; k; k = k->next) {
        if (strcmp(k->string, key) == 0) {
            return (struct src){k, s.file};
        }
    }
    return (struct src){NULL, s.file};
}

/* A readable regular file (TLS material); the error names the path only. */
static void check_readable(struct loader *L, struct src s, const char *path, const char *file,
                           bool dir)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (dir ? O_DIRECTORY : 0));
    if (fd < 0) {
        lerr(L, s, false, path, "cannot open %s: %s", file, strerror(errno));
        return;
    }
    close(fd);
}

static const char *arena_str(struct loader *L, const char *s)
{
    const char *d = arena_strdup(&L->cfg->arena, s);
    if (!d) {
        L->oom = true;
    }
    return d;
}

/* A secret given as NAME_file or NAME_credential: resolves the path,
 * checks that the file holds a usable secret (then forgets the value). */
static const char *secret_source(struct loader *L, struct src obj, const char *path,
                                 const char *name)
{
    char kf[64], kc[64];
    snprintf(kf, sizeof(kf), "%s_file", name);
    snprintf(kc, sizeof(kc), "%s_credential", name);
    struct src f = member(obj, kf), c = member(obj, kc);
    if (!!f.node == !!c.node) {
        lerr(L, obj, false, path, "set exactly one of \"%s\" (a file holding the %s) and \"%s\" "
             "(a systemd credential name)", kf, name, kc);
        return NULL;
    }
    struct src which = f.node ? f : c;
    _cleanup_free_ char *kp = mkpath(path, f.node ? kf : kc, NULL);
    const char *str;
    if (get_string(L, which, kp, &str) < 0) {
        return NULL;
    }
    char err[400];
    _cleanup_free_ char *p = f.node ? strdup(str) : secret_credential_path(str, err, sizeof(err));
    if (!p) {
        if (f.node) {
            L->oom = true;
        } else {
            lerr(L, which, false, kp, "%s", err);
        }
        return NULL;
    }
    if (!*p) {
        lerr(L, which, false, kp, "the path is empty");
        return NULL;
    }
    char *val = NULL;
    size_t len;
    if (secret_read(p, &val, &len, err, sizeof(err)) < 0) {
        lerr(L, which, false, kp, "%s", err);
        return NULL;
    }
    secret_free(val);
    return arena_str(L, p);
}

static void build_auth(struct loader *L, struct src s, const char *path, struct auth_cfg *a)
{
    static const char *const known[] = {
        "type",      "user",           "password_file",      "password_credential",
        "token_file", "token_credential", "token_url",        "client_id",
        "client_secret_file", "client_secret_credential", "scope", "client_auth", NULL};
    if (cJSON_IsNull(s.node)) {
        return;
    }
    if (!sub_object(L, s, path, known,
                    "{\"type\": \"bearer\", \"token_file\": \"/etc/fetchd/token\"}")) {
        return;
    }
    struct src t = member(s, "type");
    _cleanup_free_ char *tp = mkpath(path, "type", NULL);
    const char *type = NULL;
    if (!t.node || !cJSON_IsString(t.node)) {
        lerr(L, t.node ? t : s, false, tp, "\"type\" must be \"basic\", \"bearer\" or \"oauth2\"");
        return;
    }
    type = t.node->valuestring;
    /* keys that belong to each type */
    static const char *const basic[] = {"user", "password_file", "password_credential", NULL};
    static const char *const bearer[] = {"token_file", "token_credential", NULL};
    static const char *const oauth[] = {"token_url", "client_id", "client_secret_file",
                                        "client_secret_credential", "scope", "client_auth", NULL};
    const char *const *own;
    if (strcmp(type, "basic") == 0) {
        a->type = AUTH_BASIC;
        own = basic;
    } else if (strcmp(type, "bearer") == 0) {
        a->type = AUTH_BEARER;
        own = bearer;
    } else if (strcmp(type, "oauth2") == 0) {
        a->type = AUTH_OAUTH2;
        own = oauth;
    } else {
        lerr(L, t, false, tp, "unknown auth type \"%.40s\"; use \"basic\", \"bearer\" or \"oauth2\"",
             type);
        return;
    }
    for (const cJSON *k = s.node->child; k; k = k->next) {
        bool ok = strcmp(k->string, "type") == 0;
        for (size_t i = 0; own[i] && !ok; i++) {
            ok = strcmp(k->string, own[i]) == 0;
        }
        bool known_key = false;
        for (size_t i = 0; known[i] && !known_key; i++) {
            known_key = strcmp(k->string, known[i]) == 0;
        }
        if (!ok && known_key) {
            _cleanup_free_ char *kp = mkpath(path, k->string, NULL);
            lerr(L, (struct src){k, s.file}, true, kp, "\"%s\" does not apply to auth type \"%s\"",
                 k->string, type);
        }
    }
    const char *str;
    if (a->type == AUTH_BASIC) {
        struct src u = member(s, "user");
        _cleanup_free_ char *up = mkpath(path, "user", NULL);
        if (!u.node) {
            lerr(L, s, false, path, "basic auth needs \"user\"");
        } else if (get_string(L, u, up, &str) == 0) {
            if (strchr(str, ':') || strpbrk(str, "\r\n")) {
                lerr(L, u, false, up, "the user name must not contain ':', CR or LF");
            } else {
                a->user = arena_str(L, str);
            }
        }
        a->secret_path = secret_source(L, s, path, "password");
    } else if (a->type == AUTH_BEARER) {
        a->secret_path = secret_source(L, s, path, "token");
    } else {
        struct src tu = member(s, "token_url"), ci = member(s, "client_id"),
                   sc = member(s, "scope"), ca = member(s, "client_auth");
        char err[300];
        _cleanup_free_ char *p1 = mkpath(path, "token_url", NULL);
        _cleanup_free_ char *p2 = mkpath(path, "client_id", NULL);
        if (!tu.node) {
            lerr(L, s, false, path, "oauth2 needs \"token_url\"");
        } else if (get_string(L, tu, p1, &str) == 0) {
            int ur = url_validate(str, err, sizeof(err));
            if (ur == -ENOMEM) {
                L->oom = true;
            } else if (ur < 0) {
                lerr(L, tu, false, p1, "%s", err);
            } else {
                a->token_url = arena_str(L, str);
            }
        }
        if (!ci.node) {
            lerr(L, s, false, path, "oauth2 needs \"client_id\"");
        } else if (get_string(L, ci, p2, &str) == 0) {
            a->client_id = arena_str(L, str);
        }
        if (sc.node) {
            _cleanup_free_ char *p3 = mkpath(path, "scope", NULL);
            if (get_string(L, sc, p3, &str) == 0) {
                a->scope = arena_str(L, str);
            }
        }
        if (ca.node) {
            _cleanup_free_ char *p4 = mkpath(path, "client_auth", NULL);
            if (get_string(L, ca, p4, &str) == 0) {
                if (strcmp(str, "body") == 0) {
                    a->client_auth_body = true;
                } else if (strcmp(str, "basic") != 0) {
                    lerr(L, ca, false, p4, "expected \"basic\" or \"body\"");
                }
            }
        }
        a->secret_path = secret_source(L, s, path, "client_secret");
    }
}

static void build_tls(struct loader *L, struct src s, const char *path, struct tls_cfg *t)
{
    static const char *const known[] = {"verify",      "ca_file",    "ca_path",
                                        "client_cert", "client_key", "min_version", NULL};
    if (!sub_object(L, s, path, known, "{\"ca_file\": \"/etc/fetchd/ca.pem\"}")) {
        return;
    }
    for (const cJSON *k = s.node->child; k; k = k->next) {
        struct src ks = {k, s.file};
        _cleanup_free_ char *kp = mkpath(path, k->string, NULL);
        const char *str;
        bool b;
        if (strcmp(k->string, "verify") == 0) {
            if (get_bool(L, ks, kp, &b) == 0) {
                t->insecure = !b;
            }
        } else if (strcmp(k->string, "min_version") == 0) {
            if (get_string(L, ks, kp, &str) == 0) {
                if (strcmp(str, "1.0") == 0) {
                    t->min_version = CURL_SSLVERSION_TLSv1_0;
                } else if (strcmp(str, "1.1") == 0) {
                    t->min_version = CURL_SSLVERSION_TLSv1_1;
                } else if (strcmp(str, "1.2") == 0) {
                    t->min_version = CURL_SSLVERSION_TLSv1_2;
                } else if (strcmp(str, "1.3") == 0) {
                    t->min_version = CURL_SSLVERSION_TLSv1_3;
                } else {
                    lerr(L, ks, false, kp, "expected \"1.0\", \"1.1\", \"1.2\" or \"1.3\"");
                }
            }
        } else if (get_string(L, ks, kp, &str) == 0) {
            if (!*str) {
                lerr(L, ks, false, kp, "the path is empty");
                continue;
            }
            bool dir = strcmp(k->string, "ca_path") == 0;
            check_readable(L, ks, kp, str, dir);
            const char *v = arena_str(L, str);
            if (dir) {
                t->ca_path = v;
            } else if (strcmp(k->string, "ca_file") == 0) {
                t->ca_file = v;
            } else if (strcmp(k->string, "client_cert") == 0) {
                t->client_cert = v;
            } else if (strcmp(k->string, "client_key") == 0) {
                t->client_key = v;
            }
        }
    }
    if (t->client_key && !t->client_cert) {
        lerr(L, s, false, path, "\"client_key\" needs \"client_cert\"");
    }
}

/* Parses "404", 404 or "5xx" into a status set. */
static bool add_status(struct status_set *set, const cJSON *c)
{
    long lo, hi;
    if (cJSON_IsNumber(c)) {
        if (c->valuedouble != floor(c->valuedouble) || c->valuedouble < 100 ||
            c->valuedouble > 599) {
            return false;
        }
        lo = hi = (long)c->valuedouble;
    } else if (cJSON_IsString(c)) {
        const char *v = c->valuestring;
        if (strlen(v) == 3 && v[0] >= '1' && v[0] <= '5' && (v[1] == 'x' || v[1] == 'X') &&
            (v[2] == 'x' || v[2] == 'X')) {
            lo = (v[0] - '0') * 100;
            hi = lo + 99;
        } else if (strlen(v) == 3 && v[0] >= '1' && v[0] <= '5' && v[1] >= '0' && v[1] <= '9' &&
                   v[2] >= '0' && v[2] <= '9') {
            lo = hi = strtol(v, NULL, 10);
        } else {
            return false;
        }
    } else {
        return false;
    }
    for (long code = lo; code <= hi; code++) {
        set->bits[(code - 100) / 8] |= (uint8_t)(1u << ((code - 100) % 8));
    }
    return true;
}

static void build_retry(struct loader *L, struct src s, const char *path, struct retry_cfg *r)
{
    static const char *const known[] = {"attempts",        "backoff",        "max_backoff", "on",
                                        "max_retry_after", "non_idempotent", NULL};
    if (cJSON_IsFalse(s.node)) {
        return; /* attempts stays 1 */
    }
    if (!sub_object(L, s, path, known, "{\"attempts\": 3, \"backoff\": \"1s\"}")) {
        return;
    }
    r->attempts = DEF_RETRY_ATTEMPTS;
    uint64_t u;
    for (const cJSON *k = s.node->child; k; k = k->next) {
        struct src ks = {k, s.file};
        _cleanup_free_ char *kp = mkpath(path, k->string, NULL);
        if (strcmp(k->string, "attempts") == 0) {
            if (get_uint(L, ks, kp, 1, 10, &u) == 0) {
                r->attempts = (uint32_t)u;
            }
        } else if (strcmp(k->string, "backoff") == 0) {
            get_duration(L, ks, kp, USEC_PER_MSEC, 3600 * USEC_PER_SEC, &r->backoff);
        } else if (strcmp(k->string, "max_backoff") == 0) {
            get_duration(L, ks, kp, USEC_PER_MSEC, 3600 * USEC_PER_SEC, &r->max_backoff);
        } else if (strcmp(k->string, "max_retry_after") == 0) {
            get_duration(L, ks, kp, 0, 86400 * USEC_PER_SEC, &r->max_retry_after);
        } else if (strcmp(k->string, "non_idempotent") == 0) {
            get_bool(L, ks, kp, &r->non_idempotent);
        } else if (strcmp(k->string, "on") == 0) {
            if (!cJSON_IsArray(k)) {
                lerr(L, ks, false, kp, "expected an array such as [\"network\", \"timeout\", "
                     "\"429\", \"5xx\"]");
                continue;
            }
            r->on_network = r->on_timeout = false;
            memset(&r->on_status, 0, sizeof(r->on_status));
            for (const cJSON *c = k->child; c; c = c->next) {
                if (cJSON_IsString(c) && strcmp(c->valuestring, "network") == 0) {
                    r->on_network = true;
                } else if (cJSON_IsString(c) && strcmp(c->valuestring, "timeout") == 0) {
                    r->on_timeout = true;
                } else if (!add_status(&r->on_status, c)) {
                    char g[64];
                    lerr(L, (struct src){c, s.file}, false, kp,
                         "expected \"network\", \"timeout\", a status such as 503 or \"429\", "
                         "or a class such as \"5xx\"; got %s",
                         got(c, g));
                }
            }
        }
    }
    if (r->max_backoff < r->backoff) {
        lerr(L, s, false, path, "\"max_backoff\" is smaller than \"backoff\"");
    }
}

static void build_breaker(struct loader *L, struct src s, const char *path,
                          struct endpoint_ext *x)
{
    static const char *const known[] = {"after", "max_backoff", NULL};
    if (cJSON_IsFalse(s.node)) {
        x->breaker_after = 0;
        return;
    }
    if (!sub_object(L, s, path, known, "{\"after\": 5, \"max_backoff\": \"10m\"}")) {
        return;
    }
    uint64_t u;
    struct src a = member(s, "after"), m = member(s, "max_backoff");
    if (a.node) {
        _cleanup_free_ char *kp = mkpath(path, "after", NULL);
        if (get_uint(L, a, kp, 1, 1000, &u) == 0) {
            x->breaker_after = (uint32_t)u;
        }
    }
    if (m.node) {
        _cleanup_free_ char *kp = mkpath(path, "max_backoff", NULL);
        get_duration(L, m, kp, USEC_PER_SEC, 7 * 86400 * USEC_PER_SEC, &x->breaker_max);
    }
}

/* An array of header names (RFC 9110 tokens), lowercased when lower. */
static const char **header_list(struct loader *L, struct src s, const char *path, size_t max,
                                bool lower, size_t *ret_n)
{
    *ret_n = 0;
    if (!cJSON_IsArray(s.node)) {
        lerr(L, s, false, path, "expected an array of header names, such as [\"ETag\"]");
        return NULL;
    }
    size_t n = (size_t)cJSON_GetArraySize(s.node);
    if (n > max) {
        lerr(L, s, false, path, "at most %zu header names", max);
        return NULL;
    }
    const char **v = n ? arena_alloc(&L->cfg->arena, n * sizeof(char *)) : NULL;
    if (n && !v) {
        L->oom = true;
        return NULL;
    }
    for (const cJSON *c = s.node->child; c; c = c->next) {
        if (!cJSON_IsString(c) || !is_token(c->valuestring)) {
            char g[64];
            lerr(L, (struct src){c, s.file}, false, path, "expected a header name, got %s",
                 got(c, g));
            continue;
        }
        char *d = arena_strdup(&L->cfg->arena, c->valuestring);
        if (!d) {
            L->oom = true;
            return NULL;
        }
        for (char *p = d; lower && *p; p++) {
            *p = (char)tolower((unsigned char)*p);
        }
        v[(*ret_n)++] = d;
    }
    return v;
}

/* A JSON Pointer option: parsed and owned by the config (cfg->jptrs), or
 * NULL after reporting why. */
static struct jptr *owned_pointer(struct loader *L, struct src s, const char *kp, const char *str)
{
    const char *msg = NULL;
    struct jptr *jp = NULL;
    int r = jptr_parse(str, &jp, &msg);
    if (r == -ENOMEM) {
        L->oom = true;
        return NULL;
    }
    if (r < 0) {
        lerr(L, s, false, kp, "invalid JSON Pointer \"%.60s\": %s", str, msg);
        return NULL;
    }
    struct jptr **nj = realloc(L->cfg->jptrs, (L->cfg->n_jptrs + 1) * sizeof(*nj));
    if (!nj) {
        jptr_free(jp);
        L->oom = true;
        return NULL;
    }
    L->cfg->jptrs = nj;
    nj[L->cfg->n_jptrs++] = jp;
    return jp;
}

static void build_paginate(struct loader *L, struct src s, const char *path,
                           struct endpoint_ext *x)
{
    static const char *const known[] = {"link", "next_url", "cursor", "param", "max_pages", NULL};
    if (!sub_object(L, s, path, known, "{\"link\": true, \"max_pages\": 10}")) {
        return;
    }
    struct src lk = member(s, "link"), nu = member(s, "next_url"), cu = member(s, "cursor"),
               pa = member(s, "param"), mp = member(s, "max_pages");
    if ((lk.node != NULL) + (nu.node != NULL) + (cu.node != NULL) != 1) {
        lerr(L, s, false, path,
             "set exactly one of \"link\": true, \"next_url\": POINTER and \"cursor\": POINTER");
        return;
    }
    x->max_pages = DEF_MAX_PAGES;
    if (mp.node) {
        uint64_t u;
        _cleanup_free_ char *kp = mkpath(path, "max_pages", NULL);
        if (get_uint(L, mp, kp, 1, 1000, &u) == 0) {
            x->max_pages = (uint32_t)u;
        }
    }
    if (lk.node) {
        bool b = false;
        _cleanup_free_ char *kp = mkpath(path, "link", NULL);
        if (get_bool(L, lk, kp, &b) == 0 && !b) {
            lerr(L, lk, false, kp, "\"link\": false does nothing; remove \"paginate\" instead");
        }
        x->page_mode = PAGE_LINK;
    } else {
        struct src ps = nu.node ? nu : cu;
        _cleanup_free_ char *kp = mkpath(path, nu.node ? "next_url" : "cursor", NULL);
        const char *str;
        if (get_string(L, ps, kp, &str) == 0) {
            x->page_ptr = owned_pointer(L, ps, kp, str);
        }
        x->page_mode = nu.node ? PAGE_NEXT_URL : PAGE_CURSOR;
    }
    if (x->page_mode == PAGE_CURSOR) {
        _cleanup_free_ char *kp = mkpath(path, "param", NULL);
        const char *str;
        if (!pa.node) {
            lerr(L, s, false, path, "a cursor needs \"param\": the query parameter to set");
        } else if (get_string(L, pa, kp, &str) == 0) {
            if (!*str || strpbrk(str, "=&#? ")) {
                lerr(L, pa, false, kp, "expected a query parameter name (no = & # ? or space)");
            } else {
                x->page_param = arena_str(L, str);
            }
        }
    } else if (pa.node) {
        _cleanup_free_ char *kp = mkpath(path, "param", NULL);
        lerr(L, pa, true, kp, "\"param\" only applies to \"cursor\"");
    }
}

/* An error found across options, reported at key k: at the endpoint's
 * own key, or once at the default it inherits. */
static void cross_err(struct loader *L, const struct src *own, const char *epname, enum ep_key k,
                      const char *msg)
{
    bool inherited = !own[k].node;
    if (inherited) {
        if (L->cross_seen[k]) {
            return;
        }
        L->cross_seen[k] = true;
    }
    _cleanup_free_ char *kp = inherited ? mkpath("defaults", ep_keys[k], NULL)
                                        : mkpath("endpoints", epname, ep_keys[k]);
    lerr(L, inherited ? L->defaults[k] : own[k], false, kp, "%s", msg);
}

/* Builds the ext options of one endpoint (own: its keys; unset ones come
 * from "defaults"). epname NULL builds the shared defaults-only instance. */
static struct endpoint_ext *build_ext(struct loader *L, const struct src *own, const char *epname)
{
    struct config *cfg = L->cfg;
    struct endpoint_ext *x = arena_alloc(&cfg->arena, sizeof(*x));
    cJSON *canon = cJSON_CreateObject();
    if (!x || !canon) {
        cJSON_Delete(canon);
        L->oom = true;
        return NULL;
    }
    x->http_version = CURL_HTTP_VERSION_2TLS;
    x->protocols = "http,https";
    x->scheme_mask = URL_SCHEMES_DEFAULT;
    x->retry.attempts = 1;
    x->retry.backoff = DEF_RETRY_BACKOFF;
    x->retry.max_backoff = DEF_RETRY_MAX_BACKOFF;
    x->retry.max_retry_after = DEF_RETRY_MAX_AFTER;
    x->retry.on_network = x->retry.on_timeout = true;
    const cJSON on_def[] = {{.type = cJSON_String, .valuestring = "408"},
                            {.type = cJSON_String, .valuestring = "429"},
                            {.type = cJSON_String, .valuestring = "5xx"},
                            {.type = cJSON_String, .valuestring = "2xx"}};
    for (int i = 0; i < 3; i++) {
        add_status(&x->retry.on_status, &on_def[i]);
    }
    add_status(&x->success, &on_def[3]);
    x->breaker_after = DEF_BREAKER_AFTER;
    x->breaker_max = DEF_BREAKER_MAX;
    x->content_type = CTYPE_JSON;

    for (int k = EK_EXT_FIRST; k < _EK_MAX; k++) {
        struct src s = pick(own, L, (enum ep_key)k);
        if (!s.node) {
            continue;
        }
        bool inherited = !own[k].node;
        _cleanup_free_ char *kp = inherited ? mkpath("defaults", ep_keys[k], NULL)
                                            : mkpath("endpoints", epname, ep_keys[k]);
        bool was_mute = L->mute;
        if (inherited) {
            L->mute = was_mute || L->def_seen[k];
            L->def_seen[k] = true;
        }
        if (!cJSON_AddItemReferenceToObject(canon, ep_keys[k], (cJSON *)s.node)) {
            L->oom = true;
        }
        const char *str;
        char g[64];
        switch ((enum ep_key)k) {
        case EK_AUTH:
            build_auth(L, s, kp, &x->auth);
            break;
        case EK_TLS:
            build_tls(L, s, kp, &x->tls);
            break;
        case EK_PROXY:
            if (get_string(L, s, kp, &str) == 0) {
                static const char *const ok[] = {"http://",   "https://",  "socks4://",
                                                 "socks4a://", "socks5://", "socks5h://"};
                bool good = !*str;
                for (size_t i = 0; i < ELEMENTSOF(ok) && !good; i++) {
                    good = strncasecmp(str, ok[i], strlen(ok[i])) == 0;
                }
                if (!good || strpbrk(str, " \t\r\n")) {
                    lerr(L, s, false, kp, "expected a proxy URL (http://, https://, socks4://, "
                         "socks4a://, socks5:// or socks5h://) or \"\" for no proxy");
                } else {
                    x->proxy = arena_str(L, str);
                }
            }
            break;
        case EK_UNIX_SOCKET:
            if (get_string(L, s, kp, &str) == 0) {
                if (str[0] != '/' || strlen(str) >= 108) {
                    lerr(L, s, false, kp, "expected an absolute socket path shorter than 108 bytes");
                } else {
                    x->unix_socket = arena_str(L, str);
                }
            }
            break;
        case EK_HTTP_VERSION:
            if (get_string(L, s, kp, &str) == 0) {
                if (strcmp(str, "auto") == 0) {
                    x->http_version = CURL_HTTP_VERSION_2TLS;
                } else if (strcmp(str, "1.0") == 0) {
                    x->http_version = CURL_HTTP_VERSION_1_0;
                } else if (strcmp(str, "1.1") == 0) {
                    x->http_version = CURL_HTTP_VERSION_1_1;
                } else if (strcmp(str, "2") == 0) {
                    x->http_version = CURL_HTTP_VERSION_2_0;
                } else if (strcmp(str, "h2c") == 0) {
                    x->http_version = CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
                } else {
                    lerr(L, s, false, kp,
                         "expected \"auto\", \"1.0\", \"1.1\", \"2\" or \"h2c\", got %s",
                         got(s.node, g));
                }
            }
            break;
        case EK_COMPRESSION:
            if (cJSON_IsBool(s.node)) {
                x->accept_encoding = cJSON_IsTrue(s.node) ? "gzip, deflate, br, zstd" : NULL;
            } else if (cJSON_IsArray(s.node) && s.node->child) {
                struct buf b = {0};
                for (const cJSON *c = s.node->child; c; c = c->next) {
                    if (!cJSON_IsString(c) || (strcmp(c->valuestring, "gzip") != 0 &&
                                               strcmp(c->valuestring, "deflate") != 0 &&
                                               strcmp(c->valuestring, "br") != 0 &&
                                               strcmp(c->valuestring, "zstd") != 0)) {
                        lerr(L, (struct src){c, s.file}, false, kp,
                             "expected \"gzip\", \"deflate\", \"br\" or \"zstd\", got %s",
                             got(c, g));
                        continue;
                    }
                    buf_printf(&b, "%s%s", b.len ? ", " : "", c->valuestring);
                }
                x->accept_encoding = b.data ? arena_str(L, b.data) : NULL;
                buf_done(&b);
            } else {
                lerr(L, s, false, kp, "expected true, false or an array such as [\"gzip\", "
                     "\"zstd\"], got %s", got(s.node, g));
            }
            break;
        case EK_SCHEMES: {
            if (!cJSON_IsArray(s.node) || !s.node->child) {
                lerr(L, s, false, kp, "expected a non-empty array such as [\"https\"]");
                break;
            }
            unsigned mask = 0;
            struct buf b = {0};
            for (const cJSON *c = s.node->child; c; c = c->next) {
                unsigned bit = cJSON_IsString(c)
                                   ? url_scheme_bit(c->valuestring, strlen(c->valuestring))
                                   : 0;
                if (!bit) {
                    lerr(L, (struct src){c, s.file}, false, kp,
                         "expected \"http\", \"https\", \"file\", \"ftp\" or \"ftps\", got %s",
                         got(c, g));
                    continue;
                }
                if (!(mask & bit)) {
                    buf_printf(&b, "%s%s", b.len ? "," : "", c->valuestring);
                    for (size_t i = b.len - strlen(c->valuestring); i < b.len; i++) {
                        b.data[i] = (char)tolower((unsigned char)b.data[i]);
                    }
                }
                mask |= bit;
            }
            x->scheme_mask = mask;
            x->protocols = b.data ? arena_str(L, b.data) : x->protocols;
            buf_done(&b);
            break;
        }
        case EK_SECRET_HEADERS:
            x->secret_headers = header_list(L, s, kp, 64, true, &x->n_secret_headers);
            break;
        case EK_SUCCESS_STATUS:
            if (!cJSON_IsArray(s.node) || !s.node->child) {
                lerr(L, s, false, kp, "expected a non-empty array such as [\"2xx\", 404]");
                break;
            }
            memset(&x->success, 0, sizeof(x->success));
            for (const cJSON *c = s.node->child; c; c = c->next) {
                if (!add_status(&x->success, c)) {
                    lerr(L, (struct src){c, s.file}, false, kp,
                         "expected a status from 100 to 599 or a class such as \"2xx\", got %s",
                         got(c, g));
                }
            }
            break;
        case EK_RETRY:
            build_retry(L, s, kp, &x->retry);
            break;
        case EK_BREAKER:
            build_breaker(L, s, kp, x);
            break;
        case EK_CONDITIONAL:
            get_bool(L, s, kp, &x->conditional);
            break;
        case EK_UNCHANGED_RECORD:
            get_bool(L, s, kp, &x->unchanged_record);
            break;
        case EK_SPLIT:
            get_bool(L, s, kp, &x->split);
            break;
        case EK_TIMINGS:
            get_bool(L, s, kp, &x->timings);
            break;
        case EK_CONTENT_TYPE:
            if (get_string(L, s, kp, &str) == 0) {
                if (strcmp(str, "json") == 0) {
                    x->content_type = CTYPE_JSON;
                } else if (strcmp(str, "strict") == 0) {
                    x->content_type = CTYPE_STRICT;
                } else if (strcmp(str, "any") == 0) {
                    x->content_type = CTYPE_ANY;
                } else {
                    lerr(L, s, false, kp, "expected \"json\", \"strict\" or \"any\", got %s",
                         got(s.node, g));
                }
            }
            break;
        case EK_FORMAT:
            if (get_string(L, s, kp, &str) == 0) {
                if (strcmp(str, "ndjson") == 0) {
                    x->ndjson = true;
                } else if (strcmp(str, "json") != 0) {
                    lerr(L, s, false, kp, "expected \"json\" or \"ndjson\", got %s",
                         got(s.node, g));
                }
            }
            break;
        case EK_RESPONSE_HEADERS:
            x->resp_headers = header_list(L, s, kp, 32, false, &x->n_resp_headers);
            break;
        case EK_PAGINATE:
            build_paginate(L, s, kp, x);
            break;
        default:
            break;
        }
        L->mute = was_mute;
    }
    /* checks across keys, reported at the key to change (once for a key
     * that comes from "defaults") */
    if (x->unchanged_record && !x->conditional) {
        cross_err(L, own, epname, EK_UNCHANGED_RECORD,
                  "\"unchanged_record\" needs \"conditional\": true");
    }
    if (x->ndjson && (x->page_mode == PAGE_NEXT_URL || x->page_mode == PAGE_CURSOR)) {
        cross_err(L, own, epname, EK_PAGINATE,
                  "with \"format\": \"ndjson\" only \"link\" pagination works (next_url and "
                  "cursor read a JSON body)");
    }
    if (x->unix_socket && x->proxy && *x->proxy) {
        cross_err(L, own, epname, EK_PROXY, "\"proxy\" and \"unix_socket\" cannot be combined");
    }
    char *txt = cJSON_PrintUnformatted(canon);
    cJSON_Delete(canon);
    x->canon = txt ? arena_str(L, txt) : NULL;
    if (!txt) {
        L->oom = true;
    }
    cJSON_free(txt);
    return x;
}

bool config_header_is_secret(const struct endpoint_ext *x, const char *name, size_t len)
{
    static const char *const exact[] = {"authorization", "proxy-authorization", "cookie"};
    static const char *const words[] = {"token", "key",    "secret",    "passw",     "auth",
                                        "session", "cookie", "signature", "credential"};
    for (size_t i = 0; i < ELEMENTSOF(exact); i++) {
        if (strlen(exact[i]) == len && strncasecmp(name, exact[i], len) == 0) {
            return true;
        }
    }
    for (size_t w = 0; w < ELEMENTSOF(words); w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= len; i++) {
            if (strncasecmp(name + i, words[w], wl) == 0) {
                return true;
            }
        }
    }
    for (size_t i = 0; x && i < x->n_secret_headers; i++) {
        if (strlen(x->secret_headers[i]) == len &&
            strncasecmp(name, x->secret_headers[i], len) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- request templates and checkpoints ---------------------------------- */

static int keep_tpl(struct loader *L, struct tpl *t)
{
    struct tpl **n = realloc(L->cfg->tpls, (L->cfg->n_tpls + 1) * sizeof(*n));
    if (!n) {
        tpl_free(t);
        return -ENOMEM;
    }
    L->cfg->tpls = n;
    n[L->cfg->n_tpls++] = t;
    return 0;
}

static int sample_credential(void *ctx, const char *name, const char **value, char *err,
                             size_t errlen)
{
    (void)ctx;
    (void)name;
    (void)err;
    (void)errlen;
    *value = "x";
    return 0;
}

/* The origin (scheme://host:port) ends at the first "/", "?" or "#" after
 * "://". */
static size_t url_origin_len(const char *url)
{
    const char *p = strstr(url, "://");
    if (!p) {
        return 0;
    }
    p += 3;
    return (size_t)(p - url) + strcspn(p, "/?#");
}

/* A URL with placeholders: parses them (kept in cfg->tpls, *ret set) and
 * renders a sample to validate instead of the text. Placeholders stay out
 * of the origin: where a request goes, and whether credentials go with a
 * redirect or a next page, must not depend on a value. */
static int url_template(struct loader *L, const char *url, struct tpl **ret, char **ret_sample,
                        char *err, size_t errlen)
{
    const char *first = strstr(url, "${");
    if (!first) {
        return 0;
    }
    struct tpl *t = NULL;
    int r = tpl_parse(url, strlen(url), TPL_CTX_URL, &t, err, errlen);
    if (r < 0) {
        return r;
    }
    if (!t) {
        return 0;
    }
    if (keep_tpl(L, t) < 0) {
        return -ENOMEM;
    }
    if ((size_t)(first - url) < url_origin_len(url)) {
        snprintf(err, errlen, "a placeholder in the scheme, host or port (at byte %zu): "
                 "placeholders may only be used in the path and the query",
                 (size_t)(first - url) + 1);
        return -EINVAL;
    }
    struct tpl_values v = {
        .now = UINT64_C(1767225600) * USEC_PER_SEC, /* 2026-01-01 */
        .interval_start = UINT64_C(1767225600) * USEC_PER_SEC,
        .interval_end = UINT64_C(1767225600) * USEC_PER_SEC,
        .checkpoint = "0",
        .checkpoint_len = 1,
        .credential = sample_credential,
    };
    struct buf b = {0};
    r = tpl_render(t, &v, &b, err, errlen);
    if (r < 0) {
        buf_done(&b);
        return r;
    }
    *ret = t;
    *ret_sample = buf_steal(&b);
    return *ret_sample ? 0 : -ENOMEM;
}

/* "checkpoint": "/pointer" or {"pointer": "/pointer", "keep": "max"|"last"}. */
static void build_checkpoint(struct loader *L, struct endpoint_cfg *ep, struct src s,
                             const char *kp)
{
    static const char *const known[] = {"pointer", "keep", NULL};
    const char *ptr = NULL, *keep = "max";
    if (cJSON_IsNull(s.node)) {
        return; /* removes one set in defaults */
    }
    if (cJSON_IsString(s.node)) {
        ptr = s.node->valuestring;
    } else if (sub_object(L, s, kp, known, "{\"pointer\": \"/items/0/id\", \"keep\": \"max\"}")) {
        struct src ps = member(s, "pointer"), ks = member(s, "keep");
        _cleanup_free_ char *pp = mkpath(kp, "pointer", NULL);
        _cleanup_free_ char *kk = mkpath(kp, "keep", NULL);
        if (!ps.node) {
            lerr(L, s, false, kp, "missing \"pointer\", the JSON Pointer of the value in each "
                 "record, e.g. \"/id\"");
            return;
        }
        if (get_string(L, ps, pp, &ptr) < 0 || (ks.node && get_string(L, ks, kk, &keep) < 0)) {
            return;
        }
        if (strcmp(keep, "max") != 0 && strcmp(keep, "last") != 0) {
            lerr(L, ks, false, kk, "expected \"max\" (the highest value of a fetch) or \"last\" "
                 "(the value in its last record)");
            return;
        }
    } else {
        return; /* sub_object reported it */
    }
    struct jptr *jp = owned_pointer(L, s, kp, ptr);
    if (!jp) {
        return;
    }
    struct ckpt_cfg *c = arena_alloc(&L->cfg->arena, sizeof(*c));
    if (!c || !(c->pointer = arena_strdup(&L->cfg->arena, ptr))) {
        L->oom = true;
        return;
    }
    c->ptr = jp;
    c->keep_max = strcmp(keep, "max") == 0;
    ep->ckpt = c;
}

/* Adds the credentials a template uses to the list (names and files). */
static bool add_creds(struct loader *L, const struct tpl *t, struct ep_tpl *et, struct src at,
                      const char *path)
{
    size_t n;
    const char *const *names = tpl_credentials(t, &n);
    for (size_t i = 0; i < n; i++) {
        size_t j;
        for (j = 0; j < et->n_creds && strcmp(et->cred_names[j], names[i]) != 0; j++) {
        }
        if (j < et->n_creds) {
            continue;
        }
        char err[400];
        _cleanup_free_ char *p = secret_credential_path(names[i], err, sizeof(err));
        if (!p) {
            lerr(L, at, false, path, "${credential:%s}: %s", names[i], err);
            return false;
        }
        const char **nn = arena_alloc(&L->cfg->arena, (et->n_creds + 1) * sizeof(char *));
        const char **np = arena_alloc(&L->cfg->arena, (et->n_creds + 1) * sizeof(char *));
        if (!nn || !np) {
            L->oom = true;
            return false;
        }
        if (et->n_creds) {
            memcpy(nn, et->cred_names, et->n_creds * sizeof(char *));
            memcpy(np, et->cred_paths, et->n_creds * sizeof(char *));
        }
        nn[et->n_creds] = arena_str(L, names[i]);
        np[et->n_creds] = arena_str(L, p);
        if (!nn[et->n_creds] || !np[et->n_creds]) {
            return false;
        }
        et->cred_names = nn;
        et->cred_paths = np;
        et->n_creds++;
    }
    return true;
}

static bool contains_ci(const char *h, const char *needle)
{
    size_t n = strlen(needle);
    for (; *h; h++) {
        if (strncasecmp(h, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

#define TPL_TIME_USES                                                                              \
    (1u << TPL_NOW | 1u << TPL_INTERVAL_START | 1u << TPL_INTERVAL_END | 1u << TPL_LAST_SUCCESS)

/* Placeholders in header values and the body, and the checks across keys:
 * ${checkpoint} needs "checkpoint" and the other way round; "timezone"
 * without "schedule" needs a time placeholder; credentials resolve. */
static void build_templates(struct loader *L, struct endpoint_cfg *ep, const struct src *own,
                            struct src ep_src, const char *epname, struct tpl *url_tpl,
                            size_t nerr0)
{
    struct config *cfg = L->cfg;
    struct ep_tpl et = {.url = url_tpl};
    unsigned uses = tpl_uses(url_tpl);
    char err[400];
    struct src hs = pick(own, L, EK_HEADERS);
    _cleanup_free_ char *hp = mkpath("endpoints", epname, "headers");
    _cleanup_free_ char *up = mkpath("endpoints", epname, "url");
    _cleanup_free_ char *bp = mkpath("endpoints", epname, "body");
    bool bad = false;
    if (url_tpl && !add_creds(L, url_tpl, &et, pick(own, L, EK_URL), up)) {
        bad = true;
    }
    for (size_t i = 0; i < ep->n_headers && !bad; i++) {
        const char *h = ep->headers[i];
        const char *colon = strchr(h, ':');
        if (!colon || !strstr(colon, "${")) {
            continue; /* "Name;" (empty) or plain */
        }
        const char *val = colon + 1 + (colon[1] == ' ');
        struct tpl *t = NULL;
        int r = tpl_parse(val, strlen(val), TPL_CTX_HEADER, &t, err, sizeof(err));
        if (r == -ENOMEM || (t && keep_tpl(L, t) < 0)) {
            L->oom = true;
            return;
        }
        if (r < 0) {
            lerr(L, hs, false, hp, "header %.*s: %s", (int)(colon - h), h, err);
            bad = true;
            break;
        }
        if (!t) {
            continue;
        }
        if (!et.headers) {
            et.headers = arena_alloc(&cfg->arena, ep->n_headers * sizeof(*et.headers));
            et.header_secret = arena_alloc(&cfg->arena, ep->n_headers * sizeof(bool));
            if (!et.headers || !et.header_secret) {
                L->oom = true;
                return;
            }
            memset(et.headers, 0, ep->n_headers * sizeof(*et.headers));
            memset(et.header_secret, 0, ep->n_headers * sizeof(bool));
        }
        et.headers[i] = t;
        et.header_secret[i] = (tpl_uses(t) & 1u << TPL_CREDENTIAL) != 0;
        uses |= tpl_uses(t);
        if (!add_creds(L, t, &et, hs, hp)) {
            bad = true;
        }
    }
    if (ep->body && !bad && strstr(ep->body, "${")) { /* (a body holds no NUL) */
        /* without a Content-Type libcurl sends a string body as
         * application/x-www-form-urlencoded: escape for that */
        enum tpl_ctx ctx = TPL_CTX_FORM;
        for (size_t i = 0; i < ep->n_headers; i++) {
            const char *h = ep->headers[i];
            if (strncasecmp(h, "Content-Type:", 13) == 0) {
                ctx = contains_ci(h, "x-www-form-urlencoded") ? TPL_CTX_FORM
                      : contains_ci(h, "json")                ? TPL_CTX_JSON
                                                              : TPL_CTX_RAW;
            }
        }
        if (ep->body_is_json) {
            ctx = TPL_CTX_JSON;
        }
        struct tpl *t = NULL;
        int r = tpl_parse(ep->body, ep->body_len, ctx, &t, err, sizeof(err));
        if (r == -ENOMEM || (t && keep_tpl(L, t) < 0)) {
            L->oom = true;
            return;
        }
        if (r < 0) {
            lerr(L, pick(own, L, EK_BODY), false, bp, "%s", err);
            bad = true;
        } else if (t) {
            et.body = t;
            uses |= tpl_uses(t);
            if (!add_creds(L, t, &et, pick(own, L, EK_BODY), bp)) {
                bad = true;
            }
        }
    }
    if (bad || L->errs->n + L->errs->dropped != nerr0) {
        return; /* the checks across keys would only repeat an error */
    }
    _cleanup_free_ char *path = mkpath("endpoints", epname, NULL);
    if ((uses & 1u << TPL_CHECKPOINT) && !ep->ckpt) {
        lerr(L, ep_src, false, path,
             "${checkpoint} is used but endpoint \"%s\" has no \"checkpoint\"; add e.g. "
             "\"checkpoint\": \"/0/id\" (the JSON Pointer of the value in each record)",
             epname);
    }
    if (ep->ckpt && !(uses & 1u << TPL_CHECKPOINT)) {
        _cleanup_free_ char *cp = mkpath("endpoints", epname, "checkpoint");
        lerr(L, pick(own, L, EK_CHECKPOINT), false, cp,
             "endpoint \"%s\" keeps a checkpoint but no ${checkpoint} in its url, headers or body "
             "uses it (every fetch would ask for everything)",
             epname);
    }
    if (own[EK_TIMEZONE].node && !ep->cron && !(uses & TPL_TIME_USES)) {
        _cleanup_free_ char *tp = mkpath("endpoints", epname, "timezone");
        lerr(L, own[EK_TIMEZONE], true, tp,
             "\"timezone\" applies to \"schedule\" and to the time placeholders of a template "
             "(${now:...}); endpoint \"%s\" has neither",
             epname);
    }
    if (!uses) {
        return;
    }
    if (ep->timezone && (uses & TPL_TIME_USES)) {
        char *env = NULL;
        int r = cron_zone_env(ep->timezone, &env, err, sizeof(err));
        if (r < 0) {
            L->oom = L->oom || r == -ENOMEM;
            free(env);
            return; /* (checked when "timezone" was read) */
        }
        et.tz_env = arena_str(L, env);
        free(env);
    }
    et.uses = uses;
    struct ep_tpl *copy = arena_alloc(&cfg->arena, sizeof(*copy));
    if (!copy) {
        L->oom = true;
        return;
    }
    *copy = et;
    ep->tpl = copy;
}

static void build_endpoint(struct loader *L, struct named *nm, const uint32_t *def_sinks,
                           uint32_t n_def_sinks)
{
    struct config *cfg = L->cfg;
    struct endpoint_cfg *ep = &cfg->endpoints[cfg->n_endpoints];
    const cJSON *obj = nm->src.node;
    unsigned fi = nm->src.file;
    _cleanup_free_ char *path = mkpath("endpoints", nm->name, NULL);
    size_t nerr0 = L->errs->n + L->errs->dropped;

    if (!cJSON_IsObject(obj)) {
        lerr(L, nm->src, false, path,
             "expected an object such as {\"url\": \"https://api.example.com/v1/status\"}");
        return;
    }
    check_dups(L, obj, fi, path);
    struct src own[_EK_MAX] = {0};
    struct tpl *url_tpl = NULL; /* kept in cfg->tpls */
    for (const cJSON *k = obj->child; k; k = k->next) {
        size_t i;
        for (i = 0; i < _EK_MAX && strcmp(k->string, ep_keys[i]) != 0; i++) {
        }
        if (i == _EK_MAX) {
            unknown_key(L, (struct src){k, fi}, path, k->string, ep_keys, _EK_MAX);
            continue;
        }
        own[i] = (struct src){k, fi};
    }

    memset(ep, 0, sizeof(*ep));
    ep->name = arena_strdup(&cfg->arena, nm->name);
    ep->method = "GET";
    ep->interval = DEF_INTERVAL;
    ep->timeout = DEF_TIMEOUT;
    ep->connect_timeout = DEF_CONNECT_TIMEOUT;
    ep->low_speed_limit = DEF_LOW_SPEED_LIMIT;
    ep->low_speed_time = DEF_LOW_SPEED_TIME;
    ep->max_body_size = cfg->limits.max_body_size;
    ep->max_redirects = DEF_MAX_REDIRECTS;
    ep->enabled = true;
    ep->sinks = def_sinks;
    ep->n_sinks = n_def_sinks;
    if (!ep->name) {
        L->oom = true;
        return;
    }

    bool own_ext = false;
    for (int k = EK_EXT_FIRST; k < _EK_MAX; k++) {
        own_ext = own_ext || own[k].node;
    }
    if (own_ext) {
        ep->x = build_ext(L, own, nm->name);
    } else {
        if (!L->def_ext_built) {
            L->def_ext = build_ext(L, own, NULL);
            L->def_ext_built = true;
        }
        ep->x = L->def_ext;
    }
    if (!ep->x) {
        return;
    }
    for (int k = 0; k < EK_EXT_FIRST; k++) {
        struct src s = pick(own, L, (enum ep_key)k);
        if (!s.node || k == EK_HEADERS) {
            continue;
        }
        bool inherited = !own[k].node;
        _cleanup_free_ char *kp = inherited ? mkpath("defaults", ep_keys[k], NULL)
                                            : mkpath("endpoints", nm->name, ep_keys[k]);
        bool was_mute = L->mute;
        if (inherited) {
            /* a bad default is reported once, not once per endpoint */
            L->mute = was_mute || L->def_seen[k];
            L->def_seen[k] = true;
        }
        const char *str;
        uint64_t u;
        char err[300];
        switch ((enum ep_key)k) {
        case EK_URL:
            if (get_string(L, s, kp, &str) == 0) {
                _cleanup_free_ char *sample = NULL;
                int tr = url_template(L, str, &url_tpl, &sample, err, sizeof(err));
                if (tr == -ENOMEM) {
                    L->oom = true;
                    break;
                }
                if (tr < 0) {
                    lerr(L, s, false, kp, "%s", err);
                    break;
                }
                int ur = url_validate_schemes(sample ? sample : str, ep->x->scheme_mask, err,
                                              sizeof(err));
                if (ur == -ENOMEM) {
                    L->oom = true;
                    break;
                }
                if (ur < 0) {
                    lerr(L, s, false, kp, "%s", err);
                    break;
                }
                ep->url = arena_strdup(&cfg->arena, str);
                if (url_has_secrets(str)) {
                    char *red = url_redact(str);
                    ep->url_redacted = red ? arena_strdup(&cfg->arena, red) : NULL;
                    free(red);
                } else {
                    ep->url_redacted = ep->url;
                }
                if (!ep->url || !ep->url_redacted) {
                    L->oom = true;
                }
            }
            break;
        case EK_METHOD:
            if (get_string(L, s, kp, &str) == 0) {
                if (!is_token(str) || strlen(str) > 32) {
                    lerr(L, s, false, kp, "invalid method \"%.40s\"; use GET, POST, PUT, ...", str);
                    break;
                }
                ep->method = arena_strdup(&cfg->arena, str);
            }
            break;
        case EK_BODY:
            if (cJSON_IsNull(s.node)) {
                break; /* no body (removes one set in defaults) */
            }
            if (cJSON_IsString(s.node)) {
                ep->body = arena_strdup(&cfg->arena, s.node->valuestring);
                ep->body_len = strlen(s.node->valuestring);
            } else {
                char *txt = cJSON_PrintUnformatted(s.node);
                if (!txt) {
                    L->oom = true;
                    break;
                }
                ep->body = arena_strdup(&cfg->arena, txt);
                ep->body_len = strlen(txt);
                ep->body_is_json = true;
                cJSON_free(txt);
            }
            break;
        case EK_INTERVAL:
            get_duration(L, s, kp, 10 * USEC_PER_MSEC, 30 * 86400 * USEC_PER_SEC, &ep->interval);
            break;
        case EK_TIMEOUT:
            get_duration(L, s, kp, USEC_PER_MSEC, 86400 * USEC_PER_SEC, &ep->timeout);
            break;
        case EK_CONNECT_TIMEOUT:
            get_duration(L, s, kp, USEC_PER_MSEC, 3600 * USEC_PER_SEC, &ep->connect_timeout);
            break;
        case EK_LOW_SPEED_LIMIT:
            get_size(L, s, kp, 0, UINT64_C(1) << 40, &ep->low_speed_limit);
            break;
        case EK_LOW_SPEED_TIME:
            get_duration(L, s, kp, USEC_PER_SEC, 86400 * USEC_PER_SEC, &ep->low_speed_time);
            break;
        case EK_MAX_BODY_SIZE:
            if (get_size(L, s, kp, 1, UINT64_C(1) << 30, &u) == 0) {
                if (u > cfg->limits.max_body_size) {
                    char a[32];
                    lerr(L, s, false, kp,
                         "larger than limits.max_body_size (%s); raise that limit first",
                         units_format_size(cfg->limits.max_body_size, a, sizeof(a)));
                    break;
                }
                ep->max_body_size = u;
            }
            break;
        case EK_SELECT:
            if (get_string(L, s, kp, &str) == 0) {
                const char *msg = NULL;
                struct jptr *jp = NULL;
                int r = jptr_parse(str, &jp, &msg);
                if (r == -ENOMEM) {
                    L->oom = true;
                } else if (r < 0) {
                    lerr(L, s, false, kp, "invalid JSON Pointer \"%.60s\": %s", str, msg);
                } else {
                    ep->select = jp;
                }
            }
            break;
        case EK_SINKS: {
            if (!cJSON_IsArray(s.node) || !s.node->child) {
                lerr(L, s, false, kp,
                     "expected a non-empty array of sink names, such as [\"stdout\"]");
                break;
            }
            if (s.node == L->defaults[EK_SINKS].node) {
                break; /* resolved (or reported) once in build_endpoints, shared */
            }
            uint32_t cnt = 0;
            for (const cJSON *c = s.node->child; c; c = c->next) {
                cnt++;
            }
            uint32_t *idx = arena_alloc(&cfg->arena, cnt * sizeof(uint32_t));
            if (!idx) {
                L->oom = true;
                break;
            }
            uint32_t got_n = 0;
            bool bad = false;
            for (const cJSON *c = s.node->child; c; c = c->next) {
                struct src cs = {c, s.file};
                int si = cJSON_IsString(c) ? sink_index(cfg, c->valuestring) : -1;
                if (si < 0) {
                    struct buf known = {0};
                    for (size_t j = 0; j < cfg->n_sinks; j++) {
                        if (cfg->sinks[j].name) {
                            buf_printf(&known, "%s%s", known.len ? ", " : "", cfg->sinks[j].name);
                        }
                    }
                    char g[64];
                    lerr(L, cs, false, kp, "unknown sink %s (defined sinks: %s)", got(c, g),
                         known.data ? known.data : "none");
                    buf_done(&known);
                    bad = true;
                    continue;
                }
                for (uint32_t j = 0; j < got_n; j++) {
                    if (idx[j] == (uint32_t)si) {
                        lerr(L, cs, false, kp, "sink \"%s\" listed twice", c->valuestring);
                        bad = true;
                    }
                }
                idx[got_n++] = (uint32_t)si;
            }
            if (!bad) {
                ep->sinks = idx;
                ep->n_sinks = got_n;
            }
            break;
        }
        case EK_FOLLOW_REDIRECTS:
            get_bool(L, s, kp, &ep->follow_redirects);
            break;
        case EK_MAX_REDIRECTS:
            if (get_uint(L, s, kp, 0, 50, &u) == 0) {
                ep->max_redirects = (uint32_t)u;
            }
            break;
        case EK_ENABLED:
            get_bool(L, s, kp, &ep->enabled);
            break;
        case EK_JITTER:
            get_duration(L, s, kp, 0, 86400 * USEC_PER_SEC, &ep->jitter);
            break;
        case EK_ALIGN:
            get_bool(L, s, kp, &ep->align);
            break;
        case EK_CHECKPOINT:
            build_checkpoint(L, ep, s, kp);
            break;
        case EK_OFFSET:
            get_duration(L, s, kp, 0, 30 * 86400 * USEC_PER_SEC, &ep->offset);
            break;
        default: /* headers: below; ext options: build_ext() */
            break;
        }
        L->mute = was_mute;
    }
    /* checks across keys, reported at the key that has to change */
    if (ep->body && strcmp(ep->method, "HEAD") == 0) {
        _cleanup_free_ char *bp = mkpath("endpoints", nm->name, "body");
        lerr(L, pick(own, L, EK_BODY), false, bp,
             "a HEAD request cannot carry a body; remove \"body\" or use another method");
    }
    if (ep->jitter && ep->jitter > ep->interval / 2) {
        struct src js = pick(own, L, EK_JITTER);
        char a[32], b[32], c[32];
        _cleanup_free_ char *jp = mkpath("endpoints", nm->name, "jitter");
        lerr(L, js, false, jp,
             "%s is more than half of the interval (%s) for endpoint \"%s\"; use at most %s",
             units_format_duration(ep->jitter, a, sizeof(a)),
             units_format_duration(ep->interval, b, sizeof(b)), nm->name,
             units_format_duration(ep->interval / 2, c, sizeof(c)));
    }
    build_schedule(L, ep, own, nm->name);
    if (ep->offset && (!ep->align || ep->offset >= ep->interval)) {
        struct src os = pick(own, L, EK_OFFSET);
        _cleanup_free_ char *op = mkpath("endpoints", nm->name, "offset");
        lerr(L, os, false, op,
             "\"offset\" needs \"align\": true and must be smaller than the interval "
             "(endpoint \"%s\")",
             nm->name);
    }
    if (!own[EK_URL].node) {
        lerr(L, nm->src, false, path,
             "missing \"url\"; add for example \"url\": \"https://api.example.com/v1/status\"");
    }
    bool has_ctype = false;
    build_headers(L, ep, own[EK_HEADERS], L->defaults[EK_HEADERS], nm->name, &has_ctype);
    if (ep->body_is_json && !has_ctype) {
        const char **nh = arena_alloc(&cfg->arena, (ep->n_headers + 1) * sizeof(char *));
        if (!nh) {
            L->oom = true;
            return;
        }
        if (ep->n_headers) {
            memcpy(nh, ep->headers, ep->n_headers * sizeof(char *));
        }
        nh[ep->n_headers++] = "Content-Type: application/json";
        ep->headers = nh;
    }
    build_templates(L, ep, own, nm->src, nm->name, url_tpl, nerr0);
    if (L->errs->n + L->errs->dropped != nerr0 || !ep->url) {
        jptr_free(ep->select);
        ep->select = NULL;
        return; /* not added */
    }
    cfg->n_endpoints++;
}

static void build_endpoints(struct loader *L)
{
    struct config *cfg = L->cfg;
    if (L->endpoints.n > cfg->limits.max_endpoints) {
        lerr(L, (struct src){NULL, 0}, false, "endpoints",
             "%zu endpoints configured, but limits.max_endpoints is %u; raise the limit or "
             "split the endpoints over several instances",
             L->endpoints.n, cfg->limits.max_endpoints);
        return;
    }
    cfg->endpoints = calloc(L->endpoints.n ? L->endpoints.n : 1, sizeof(*cfg->endpoints));
    if (!cfg->endpoints) {
        L->oom = true;
        return;
    }
    /* the default sink list, resolved once and shared by reference */
    uint32_t *def = NULL;
    uint32_t ndef = 0;
    struct src ds = L->defaults[EK_SINKS];
    if (ds.node && cJSON_IsArray(ds.node) && ds.node->child) {
        /* validated (with positions) by the first endpoint that uses it;
         * here only resolved when it is entirely valid */
        for (const cJSON *c = ds.node->child; c; c = c->next) {
            ndef++;
        }
        def = arena_alloc(&cfg->arena, ndef * sizeof(uint32_t));
        if (!def) {
            L->oom = true;
            return;
        }
        uint32_t k = 0;
        for (const cJSON *c = ds.node->child; c; c = c->next) {
            int si = cJSON_IsString(c) ? sink_index(cfg, c->valuestring) : -1;
            for (uint32_t j = 0; si >= 0 && j < k; j++) {
                if (def[j] == (uint32_t)si) {
                    si = -1;
                }
            }
            if (si < 0) {
                def = NULL;
                break;
            }
            def[k++] = (uint32_t)si;
        }
        if (!def) {
            ndef = 0;
            /* report once, with positions */
            _cleanup_free_ char *kp = mkpath("defaults", "sinks", NULL);
            for (const cJSON *c = ds.node->child; c; c = c->next) {
                if (!cJSON_IsString(c) || sink_index(cfg, c->valuestring) < 0) {
                    char g[64];
                    lerr(L, (struct src){c, ds.file}, false, kp, "unknown sink %s", got(c, g));
                }
            }
        }
    } else if (ds.node) {
        _cleanup_free_ char *kp = mkpath("defaults", "sinks", NULL);
        lerr(L, ds, false, kp, "expected a non-empty array of sink names, such as [\"stdout\"]");
    }
    if (!ds.node) {
        int si = sink_index(cfg, "stdout");
        def = arena_alloc(&cfg->arena, sizeof(uint32_t));
        if (!def) {
            L->oom = true;
            return;
        }
        def[0] = (uint32_t)si;
        ndef = 1;
    }
    for (size_t i = 0; i < L->endpoints.n && !L->oom; i++) {
        build_endpoint(L, &L->endpoints.v[i], def, ndef);
    }
    for (size_t i = 0; i < cfg->n_endpoints; i++) {
        struct endpoint_cfg *ep = &cfg->endpoints[i];
        for (uint32_t j = 0; j < ep->n_sinks; j++) {
            cfg->sinks[ep->sinks[j]].used = true;
        }
        if (strmap_put(&cfg->by_name, ep->name, ep, NULL) < 0) {
            L->oom = true;
        }
    }
    /* two stdout sinks would interleave their records on one pipe */
    const struct sink_cfg *first = NULL;
    for (size_t i = 0; i < cfg->n_sinks; i++) {
        const struct sink_cfg *sc = &cfg->sinks[i];
        if (sc->used && sc->type == &sink_type_stdout) {
            if (first) {
                _cleanup_free_ char *kp = mkpath("sinks", sc->name, NULL);
                lerr(L, (struct src){NULL, 0}, false, kp,
                     "sinks '%s' and '%s' both write to standard output; use one stdout sink "
                     "(records of both would mix on one stream)",
                     first->name, sc->name);
                break;
            }
            first = sc;
        }
    }
}

void config_errors_done(struct config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++) {
        free(errs->msgs[i]);
    }
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = errs->dropped = 0;
}

struct config *config_free(struct config *cfg)
{
    if (!cfg) {
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_endpoints; i++) {
        jptr_free(cfg->endpoints[i].select);
    }
    for (size_t i = 0; i < cfg->n_jptrs; i++) {
        jptr_free(cfg->jptrs[i]);
    }
    for (size_t i = 0; i < cfg->n_crons; i++) {
        cron_free(cfg->crons[i]);
    }
    for (size_t i = 0; i < cfg->n_tpls; i++) {
        tpl_free(cfg->tpls[i]);
    }
    free(cfg->tpls);
    free(cfg->crons);
    free(cfg->jptrs);
    free(cfg->endpoints);
    free(cfg->sinks);
    strmap_done(&cfg->by_name);
    arena_done(&cfg->arena);
    free(cfg);
    return NULL;
}

int config_load(const char *path, struct config **ret, struct config_errors *errs)
{
    struct config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        return -ENOMEM;
    }
    struct loader L = {.cfg = cfg, .errs = errs};
    int r = 0;
    cfg->path = arena_strdup(&cfg->arena, path);

    if (load_file(&L, path) == 0) {
        _cleanup_free_ char *dir = dropin_dir(path);
        char **names = NULL;
        size_t nn = 0;
        if (dir && list_dropins(&L, dir, &names, &nn) == 0 && nn) {
            cfg->dropins = arena_alloc(&cfg->arena, nn * sizeof(char *));
        }
        for (size_t i = 0; i < nn; i++) {
            if (load_file(&L, names[i]) == 0 && cfg->dropins) {
                cfg->dropins[cfg->n_dropins++] = arena_strdup(&cfg->arena, names[i]);
            }
            free(names[i]);
        }
        free(names);
    }
    /* Syntax errors stop here (there is no tree); everything after reports
     * all the problems it finds in one go. */
    bool parsed = errs->n == 0 && !L.oom;
    if (parsed) {
        for (unsigned i = 0; i < L.n_files; i++) {
            merge_file(&L, i);
        }
    }
    if (parsed && !L.oom) {
        build_limits(&L);
        build_shard(&L);
        build_sinks(&L);
    }
    if (parsed && !L.oom) {
        if (L.endpoints.n == 0) {
            lerr(&L, (struct src){L.files[0].root, 0}, false, "endpoints",
                 "no endpoints configured; add for example "
                 "\"endpoints\": {\"status\": {\"url\": \"https://api.example.com/v1/status\"}}");
        } else {
            build_endpoints(&L);
        }
    }

    for (size_t i = 0; i < L.n_files; i++) {
        free(L.files[i].path);
        free(L.files[i].text);
        cJSON_Delete(L.files[i].root);
    }
    free(L.files);
    free(L.sinks.v);
    strmap_done(&L.sinks.idx);
    free(L.endpoints.v);
    strmap_done(&L.endpoints.idx);

    if (L.oom) {
        r = -ENOMEM;
    } else if (errs->n || errs->dropped) {
        r = -EINVAL;
    }
    if (r < 0) {
        config_free(cfg);
    } else {
        *ret = cfg;
    }
    /* The parse trees are ~8x the size of the text (a 13 MB config with
     * 100 000 endpoints peaks near 80 MiB) and glibc keeps freed pages
     * mapped: hand them back, or a daemon carries its load peak forever. */
    malloc_trim(0);
    return r;
}

const struct endpoint_cfg *config_find_endpoint(const struct config *cfg, const char *name)
{
    return strmap_get(&cfg->by_name, name);
}

int config_sink_index(const struct config *cfg, const char *name)
{
    return sink_index(cfg, name);
}

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

bool config_endpoint_equal(const struct config *ca, const struct endpoint_cfg *a,
                           const struct config *cb, const struct endpoint_cfg *b)
{
    if (!str_eq(a->name, b->name) || !str_eq(a->url, b->url) || !str_eq(a->method, b->method) ||
        a->n_headers != b->n_headers || a->body_len != b->body_len ||
        (a->body == NULL) != (b->body == NULL) ||
        (a->body_len && memcmp(a->body, b->body, a->body_len) != 0) ||
        a->interval != b->interval || a->timeout != b->timeout ||
        a->connect_timeout != b->connect_timeout || a->low_speed_time != b->low_speed_time ||
        a->low_speed_limit != b->low_speed_limit || a->max_body_size != b->max_body_size ||
        !str_eq(a->select ? a->select->src : NULL, b->select ? b->select->src : NULL) ||
        a->n_sinks != b->n_sinks || a->max_redirects != b->max_redirects ||
        a->follow_redirects != b->follow_redirects || a->enabled != b->enabled ||
        a->jitter != b->jitter || a->align != b->align || a->offset != b->offset ||
        !str_eq(a->schedule, b->schedule) || !str_eq(a->timezone, b->timezone) ||
        !str_eq(a->x->canon, b->x->canon) || !a->ckpt != !b->ckpt ||
        (a->ckpt && (strcmp(a->ckpt->pointer, b->ckpt->pointer) != 0 ||
                     a->ckpt->keep_max != b->ckpt->keep_max))) {
        return false;
    }
    for (size_t i = 0; i < a->n_headers; i++) {
        if (strcmp(a->headers[i], b->headers[i]) != 0) {
            return false;
        }
    }
    for (uint32_t i = 0; i < a->n_sinks; i++) {
        if (strcmp(ca->sinks[a->sinks[i]].name, cb->sinks[b->sinks[i]].name) != 0) {
            return false;
        }
    }
    return true;
}

bool config_sink_equal(const struct sink_cfg *a, const struct sink_cfg *b)
{
    return a->type == b->type && a->plugin == b->plugin && str_eq(a->name, b->name) &&
           str_eq(a->canon, b->canon);
}

/* One indented line with the endpoint's less common options, if any
 * (never a secret: auth shows its type and where the secret comes from). */
static void print_ext(const struct endpoint_ext *x, FILE *f)
{
    static const char *const auth[] = {"", "basic", "bearer", "oauth2"};
    struct buf b = {0};
    if (x->auth.type != AUTH_NONE) {
        buf_printf(&b, ", auth %s (secret from %s)", auth[x->auth.type], x->auth.secret_path);
    }
    if (x->tls.insecure) {
        buf_puts(&b, ", TLS NOT VERIFIED");
    } else if (x->tls.ca_file || x->tls.ca_path) {
        buf_printf(&b, ", CA %s", x->tls.ca_file ? x->tls.ca_file : x->tls.ca_path);
    }
    if (x->tls.client_cert) {
        buf_printf(&b, ", client certificate %s", x->tls.client_cert);
    }
    if (x->proxy) {
        char *red = *x->proxy ? url_redact(x->proxy) : NULL;
        buf_printf(&b, ", proxy %s", *x->proxy ? (red ? red : "(set)") : "none");
        free(red);
    }
    if (x->unix_socket) {
        buf_printf(&b, ", unix socket %s", x->unix_socket);
    }
    if (x->retry.attempts > 1) {
        buf_printf(&b, ", up to %u attempts", x->retry.attempts);
    }
    if (!x->breaker_after) {
        buf_puts(&b, ", no circuit breaker");
    }
    if (x->conditional) {
        buf_puts(&b, ", conditional");
    }
    if (x->accept_encoding) {
        buf_printf(&b, ", compression %s", x->accept_encoding);
    }
    if (x->ndjson) {
        buf_puts(&b, ", ndjson");
    }
    if (x->split) {
        buf_puts(&b, ", split");
    }
    if (x->page_mode != PAGE_NONE) {
        buf_printf(&b, ", paginate %s (max %u pages)",
                   x->page_mode == PAGE_LINK ? "by Link" : x->page_mode == PAGE_CURSOR ? "by cursor"
                                                                                       : "by next URL",
                   x->max_pages);
    }
    if (b.len) {
        fprintf(f, "                   %s\n", b.data + 2);
    }
    buf_done(&b);
}

void config_print_summary(const struct config *cfg, FILE *f)
{
    char a[32], b[32], c[32];
    fprintf(f, "config: %s", cfg->path);
    if (cfg->n_dropins) {
        fprintf(f, " + %zu drop-in%s", cfg->n_dropins, cfg->n_dropins == 1 ? "" : "s");
    }
    fprintf(f, ": OK\n");
    for (size_t i = 0; i < cfg->n_dropins; i++) {
        fprintf(f, "  drop-in: %s\n", cfg->dropins[i]);
    }
    const struct limits *l = &cfg->limits;
    fprintf(f, "limits: max_concurrent %u, max_per_host %s%s, max_body_size %s, shutdown_grace %s\n",
            l->max_concurrent, l->max_per_host ? "" : "unlimited",
            l->max_per_host ? (snprintf(c, sizeof(c), "%u", l->max_per_host), c) : "",
            units_format_size(l->max_body_size, a, sizeof(a)),
            units_format_duration(l->shutdown_grace, b, sizeof(b)));
    size_t used = 0;
    for (size_t i = 0; i < cfg->n_sinks; i++) {
        used += cfg->sinks[i].used;
    }
    fprintf(f, "sinks (%zu used):\n", used);
    for (size_t i = 0; i < cfg->n_sinks; i++) {
        const struct sink_cfg *s = &cfg->sinks[i];
        if (s->implicit && !s->used) {
            continue;
        }
        fprintf(f, "  %-16s %-8s", s->name, s->type->name);
        for (size_t k = 0; s->type->options[k].key; k++) {
            const char *key = s->type->options[k].key;
            if (s->values[k].set && s->values[k].s) {
                /* a URL's credentials are never shown */
                char *red = url_has_secrets(s->values[k].s) ? url_redact(s->values[k].s) : NULL;
                fprintf(f, " %s=%s", key, red ? red : s->values[k].s);
                free(red);
            } else if (s->values[k].set && s->values[k].list) {
                /* header values may be secrets: "Name: (secret)" */
                bool headers = strcmp(key, "headers") == 0;
                fprintf(f, " %s=[", key);
                for (size_t j = 0; s->values[k].list[j]; j++) {
                    const char *v = s->values[k].list[j];
                    if (headers) {
                        fprintf(f, "%s%.*s: (secret)", j ? " " : "", (int)strcspn(v, ":"), v);
                    } else {
                        fprintf(f, "%s%s", j ? " " : "", v);
                    }
                }
                fputc(']', f);
            }
        }
        if (s->plugin) {
            fprintf(f, " (%s)", s->plugin->def->name ? s->plugin->def->name : "plugin");
        }
        static const char *const take[] = {"all", "ok", "errors"};
        static const char *const ovf[] = {"drop_oldest", "drop_newest", "pause"};
        char qb[32];
        fprintf(f, " records=%s queue=%llu/%s overflow=%s", take[s->take],
                (unsigned long long)s->max_records,
                units_format_size(s->max_bytes, qb, sizeof(qb)), ovf[s->overflow]);
        fprintf(f, "%s\n", s->used ? "" : "  (unused)");
    }
    size_t enabled = 0;
    for (size_t i = 0; i < cfg->n_endpoints; i++) {
        enabled += cfg->endpoints[i].enabled;
    }
    fprintf(f, "endpoints (%zu, %zu enabled):\n", cfg->n_endpoints, enabled);
    size_t shown = cfg->n_endpoints > 20 ? 15 : cfg->n_endpoints;
    for (size_t i = 0; i < shown; i++) {
        const struct endpoint_cfg *e = &cfg->endpoints[i];
        char when[160];
        if (e->cron) {
            snprintf(when, sizeof(when), "schedule \"%s\"%s%s", e->schedule,
                     e->timezone ? " " : "", e->timezone ? e->timezone : "");
        } else {
            snprintf(when, sizeof(when), "every %s",
                     units_format_duration(e->interval, a, sizeof(a)));
        }
        fprintf(f, "  %-16s %-6s %s  %s, timeout %s%s%s ->", e->name, e->method, e->url_redacted,
                when,
                units_format_duration(e->timeout, b, sizeof(b)), e->select ? ", select " : "",
                e->select ? e->select->src : "");
        for (uint32_t j = 0; j < e->n_sinks; j++) {
            fprintf(f, " %s", cfg->sinks[e->sinks[j]].name);
        }
        fprintf(f, "%s\n", e->enabled ? "" : "  (disabled)");
        print_ext(e->x, f);
        for (size_t h = 0; h < e->n_headers; h++) {
            const char *hd = e->headers[h];
            size_t nl = strcspn(hd, ":;");
            bool secret = config_header_is_secret(e->x, hd, nl);
            fprintf(f, "%s%.*s: %s", h ? ", " : "                   headers: ", (int)nl, hd,
                    secret ? "(secret)" : hd[nl] == ':' ? hd + nl + 2 : "");
        }
        if (e->n_headers) {
            fputc('\n', f);
        }
        if (e->tpl || e->ckpt) {
            fprintf(f, "                   templated:%s%s%s%s%s%s%s%s\n", e->tpl && e->tpl->url ? " url" : "",
                    e->tpl && e->tpl->headers ? " headers" : "", e->tpl && e->tpl->body ? " body" : "",
                    e->tpl && e->tpl->tz_env ? ", times in " : "",
                    e->tpl && e->tpl->tz_env ? e->timezone : "", e->ckpt ? ", checkpoint " : "",
                    e->ckpt ? e->ckpt->pointer : "",
                    e->ckpt ? (e->ckpt->keep_max ? " (max)" : " (last)") : "");
        }
    }
    if (shown < cfg->n_endpoints) {
        fprintf(f, "  ... and %zu more\n", cfg->n_endpoints - shown);
    }
}
