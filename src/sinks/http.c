/* http.c - batches of records POSTed to a URL (the "http" sink).
 *
 * Records are sent in batches through fetchd's one curl multi handle (the
 * host's s->http): at most one request per sink is in flight, so batches
 * arrive in queue order. A batch is formed from the head of the queue when
 * batch_max_records or batch_max_bytes is reached, when its oldest record
 * has waited batch_max_age, or when the queue is half full; the records of a
 * batch are locked in the queue while the request runs (drop_oldest skips
 * them) and leave it only when the receiver answers:
 *
 *   2xx                     delivered (sink_ack)
 *   408, 429, 5xx, transport
 *   errors and timeouts     kept, retried after Retry-After (capped at
 *                           retry_max_backoff) or the sink's backoff
 *   other 3xx and 4xx       rejected: dropped and counted (sink_fail); the
 *                           status and the start of the body are logged.
 *                           Redirects are never followed.
 *
 * Every batch carries a random 128-bit key in idempotency_header, the same
 * on every retry of that batch (the same records, byte for byte), so a
 * receiver can drop the duplicate that a lost response causes. Delivery is
 * at least once up to the queue's bound.
 *
 * Batching without a busy loop: while a partial batch waits for more
 * records the sink is in sink_wait() with nothing locked; an ev_timer ends
 * the wait at batch_max_age, and a high-priority ev_prepare watcher (it runs
 * before the engine's flush in the same loop iteration) ends it as soon as
 * new records were queued, so a batch that fills up goes out at once.
 *
 * The optional spool (spool: true) is a file in the state directory,
 * <state_dir>/spool-<sink>.jsonl. Records that do not fit the memory queue
 * are appended to it (the type's overflow hook; they count as held), and it
 * refills the queue in order when the queue has room again; at exit the
 * memory queue is written ahead of what the spool holds, so the order is
 * kept, and the next start (with the same state directory) sends it all.
 * One line per record:
 *
 *   {"v":1,"ep":"NAME","err":E,"st":S,"t":T,"do":O,"dl":L,"r":RECORD}
 *
 * (endpoint, error kind, HTTP status, fetched_at usec, offset and length of
 * "data" in RECORD, and the record itself). A truncated last line (a crash
 * in the middle of a write) is cut off with a warning; a damaged line is
 * skipped with a warning. Records moved from the spool to the queue are
 * removed from the file at the next compaction or at exit; after a crash
 * they are sent again (duplicates, never a loss).
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fetchd-build.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "sink.h"
#include "units.h"
#include "url.h"
#include "util/buf.h"
#include "xfer.h"

enum {
    H_URL,
    H_FORMAT,
    H_BATCH_RECORDS,
    H_BATCH_BYTES,
    H_BATCH_AGE,
    H_TIMEOUT,
    H_HEADERS,
    H_IDEMPOTENCY,
    H_TLS_VERIFY,
    H_CA_FILE,
    H_SPOOL,
    H_SPOOL_MAX,
};

static const char *const format_values[] = {"jsonl", "array", NULL};

static const struct opt_def http_options[] = {
    [H_URL] = {"url", OPT_STRING, true, "the http:// or https:// URL batches are POSTed to", NULL},
    [H_FORMAT] = {"format", OPT_STRING, false,
                  "request body: jsonl (default; application/x-ndjson) or array "
                  "(application/json)",
                  format_values},
    [H_BATCH_RECORDS] = {"batch_max_records", OPT_UINT, false,
                         "most records in one request (default 500)", NULL},
    [H_BATCH_BYTES] = {"batch_max_bytes", OPT_SIZE, false,
                       "largest request body (default 1MiB; a larger record goes alone)", NULL},
    [H_BATCH_AGE] = {"batch_max_age", OPT_DURATION, false,
                     "longest a partial batch waits for more records (default 1s)", NULL},
    [H_TIMEOUT] = {"timeout", OPT_DURATION, false,
                   "longest one request may take, slow receivers included (default 30s)", NULL},
    [H_HEADERS] = {"headers", OPT_STRINGS, false,
                   "extra request headers, \"Name: value\" each (values are never logged)", NULL},
    [H_IDEMPOTENCY] = {"idempotency_header", OPT_STRING, false,
                       "header with each batch's key, the same on every retry (default "
                       "Idempotency-Key; \"\" sends none)",
                       NULL},
    [H_TLS_VERIFY] = {"tls_verify", OPT_BOOL, false,
                      "verify the receiver's certificate and host name (default true)", NULL},
    [H_CA_FILE] = {"ca_file", OPT_PATH, false, "PEM file of CA certificates for the receiver",
                   NULL},
    [H_SPOOL] = {"spool", OPT_BOOL, false,
                 "keep records the queue cannot hold, and those queued at exit, in a file in "
                 "the state directory (default false)",
                 NULL},
    [H_SPOOL_MAX] = {"spool_max_bytes", OPT_SIZE, false, "largest spool (default 64MiB)", NULL},
    {0},
};

#define DEFAULT_BATCH_RECORDS 500
#define DEFAULT_BATCH_BYTES (1024 * 1024)
#define DEFAULT_BATCH_AGE USEC_PER_SEC
#define DEFAULT_TIMEOUT (30 * USEC_PER_SEC)
#define DEFAULT_IDEMPOTENCY "Idempotency-Key"
#define DEFAULT_SPOOL_MAX (64u * 1024 * 1024)

#define RESP_KEEP 512                  /* response body bytes kept for the log */
#define EXCERPT_MAX 160                /* of which logged */
#define REJECT_LOG_EVERY (10 * USEC_PER_SEC)
#define SPOOL_SYNC_AFTER 1.0           /* s: fdatasync after the first unsynced append */
#define SPOOL_READ_CHUNK (64 * 1024)
#define SPOOL_COMPACT_MIN (1024 * 1024) /* consumed bytes before a compaction */
#define REC_COST_OVERHEAD (sizeof(struct sink_rec) + 16) /* as sink.c counts a record */

struct http_sink;

/* The spool file (see the top of the file). */
struct spool {
    char *path;             /* owned */
    int fd;                 /* O_APPEND; -1 when closed or not loaded */
    uint64_t end;           /* bytes in the file (whole lines) */
    uint64_t rd;            /* first byte not yet moved to the queue */
    struct buf rbuf;        /* file bytes from rbuf_off (read cache) */
    uint64_t rbuf_off;
    struct buf line;        /* one record being moved to the queue */
    struct buf frame;       /* one record being appended */
    bool dirty;             /* appended since the last fdatasync */
    bool full_logged;       /* "spool full" said since it last had room */
    bool err_logged;        /* a write/read error said since the last success */
    bool pending;           /* waits for the previous instance to close (reload) */
    ev_timer sync_timer;
    struct http_sink *successor;   /* a reload's new instance waiting for the file */
    struct http_sink *predecessor; /* the instance this one waits for */
    struct http_sink *reg_next;    /* registry of instances with a spool */
};

struct http_sink {
    struct sink *s;                 /* borrowed: the instance this belongs to */
    /* settings */
    const char *url;                /* borrowed from the config */
    char *url_log;                  /* owned: url with secrets redacted */
    bool array;
    uint64_t max_records, max_bytes;
    usec_t max_age, timeout;
    const char *const *headers;     /* borrowed; NULL-terminated */
    bool user_ctype;                /* headers has a Content-Type */
    const char *idem;               /* NULL: no key header */
    bool use_spool;
    uint64_t spool_max;
    /* the transfer */
    CURL *easy;                     /* owned, one per sink, reused */
    struct curl_slist *hdrs;        /* owned: this batch's headers */
    struct buf body;                /* the batch being sent / to be retried */
    struct buf scratch;             /* a retry's rebuilt body, for comparison */
    size_t batch_n;                 /* records in body; 0: no batch formed */
    char key[33];                   /* the batch's idempotency key */
    bool in_flight;
    usec_t sent_at;                 /* CLOCK_MONOTONIC */
    struct buf resp;                /* start of the response body */
    char errbuf[CURL_ERROR_SIZE];
    /* batching */
    usec_t opened_at;               /* CLOCK_MONOTONIC: the oldest unsent record was seen */
    uint64_t seen_queued;           /* s->queued when the age wait began */
    ev_timer age_timer;
    ev_prepare fill_check;
    /* permanent rejections */
    usec_t reject_log_at;
    uint64_t rejects_unlogged;
    /* the spool */
    struct spool sp;
};

static struct http_sink *spool_registry;

/* ---- settings and validation --------------------------------------------- */

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_tchar((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

static bool header_is(const char *h, size_t nlen, const char *name)
{
    return strlen(name) == nlen && strncasecmp(h, name, nlen) == 0;
}

/* Validates the options (load time). Never echoes a header's value nor the
 * URL (it may hold credentials). */
static int http_check(const struct sink_cfg *cfg, char *err, size_t errlen)
{
    const struct opt_value *v = cfg->values;
    const char *url = v[H_URL].s;
    const char *sep = strstr(url, "://");
    size_t sl = sep ? (size_t)(sep - url) : 0;
    bool well_formed = sl > 0 && sl <= 16; /* else it may be a user:password, never echoed */
    for (size_t i = 0; well_formed && i < sl; i++) {
        char c = url[i];
        well_formed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (i && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
    }
    if (well_formed && !(url_scheme_of(url) & (URL_HTTP | URL_HTTPS))) {
        snprintf(err, errlen, "\"url\": scheme \"%.*s\" is not supported; use http:// or https://",
                 (int)sl, url);
        return -EINVAL;
    }
    char why[256];
    if (url_validate(url, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "\"url\": %s", why);
        return -EINVAL;
    }
    if (v[H_BATCH_RECORDS].set && v[H_BATCH_RECORDS].u == 0) {
        snprintf(err, errlen, "\"batch_max_records\" must be at least 1");
        return -EINVAL;
    }
    if (v[H_BATCH_BYTES].set && v[H_BATCH_BYTES].u == 0) {
        snprintf(err, errlen, "\"batch_max_bytes\" must be at least 1 byte");
        return -EINVAL;
    }
    if (v[H_TIMEOUT].set && v[H_TIMEOUT].u < USEC_PER_MSEC) {
        snprintf(err, errlen, "\"timeout\" must be at least 1ms");
        return -EINVAL;
    }
    if (v[H_SPOOL_MAX].set && v[H_SPOOL_MAX].u == 0) {
        snprintf(err, errlen, "\"spool_max_bytes\" must be more than 0");
        return -EINVAL;
    }
    const char *idem = v[H_IDEMPOTENCY].set ? v[H_IDEMPOTENCY].s : DEFAULT_IDEMPOTENCY;
    if (*idem && !is_token(idem, strlen(idem))) {
        snprintf(err, errlen, "\"idempotency_header\" must be a header name (letters, digits, -)");
        return -EINVAL;
    }
    for (size_t i = 0; v[H_HEADERS].set && i < v[H_HEADERS].u; i++) {
        const char *h = v[H_HEADERS].list[i];
        const char *colon = strchr(h, ':');
        size_t nlen = colon ? (size_t)(colon - h) : 0;
        if (!colon || !is_token(h, nlen)) {
            snprintf(err, errlen, "\"headers\" element %zu: expected \"Name: value\" with a valid "
                     "header name", i);
            return -EINVAL;
        }
        if (strpbrk(colon, "\r\n")) {
            snprintf(err, errlen, "\"headers\" element %zu (%.*s): the value contains CR or LF", i,
                     (int)nlen, h);
            return -EINVAL;
        }
        static const char *const reserved[] = {"Content-Length", "Transfer-Encoding", "Host",
                                               "Expect", "Connection"};
        for (size_t k = 0; k < sizeof(reserved) / sizeof(reserved[0]); k++) {
            if (header_is(h, nlen, reserved[k])) {
                snprintf(err, errlen, "\"headers\" element %zu: %s is set by fetchd", i,
                         reserved[k]);
                return -EINVAL;
            }
        }
        if (*idem && header_is(h, nlen, idem)) {
            snprintf(err, errlen, "\"headers\" element %zu: %s is the idempotency_header, which "
                     "fetchd sets per batch", i, idem);
            return -EINVAL;
        }
    }
    if (v[H_CA_FILE].set && access(v[H_CA_FILE].s, R_OK) < 0) {
        snprintf(err, errlen, "\"ca_file\" \"%s\" cannot be read: %s", v[H_CA_FILE].s,
                 strerror(errno));
        return -errno;
    }
    return 0;
}

static void http_settings(struct http_sink *h, const struct sink_cfg *c)
{
    const struct opt_value *v = c->values;
    h->url = v[H_URL].s;
    h->array = v[H_FORMAT].set && strcmp(v[H_FORMAT].s, "array") == 0;
    h->max_records = v[H_BATCH_RECORDS].set ? v[H_BATCH_RECORDS].u : DEFAULT_BATCH_RECORDS;
    h->max_bytes = v[H_BATCH_BYTES].set ? v[H_BATCH_BYTES].u : DEFAULT_BATCH_BYTES;
    h->max_age = v[H_BATCH_AGE].set ? v[H_BATCH_AGE].u : DEFAULT_BATCH_AGE;
    h->timeout = v[H_TIMEOUT].set ? v[H_TIMEOUT].u : DEFAULT_TIMEOUT;
    h->headers = v[H_HEADERS].set ? v[H_HEADERS].list : NULL;
    h->user_ctype = false;
    for (size_t i = 0; h->headers && h->headers[i]; i++) {
        h->user_ctype |= header_is(h->headers[i], strcspn(h->headers[i], ":"), "Content-Type");
    }
    const char *idem = v[H_IDEMPOTENCY].set ? v[H_IDEMPOTENCY].s : DEFAULT_IDEMPOTENCY;
    h->idem = *idem ? idem : NULL;
    h->use_spool = v[H_SPOOL].set && v[H_SPOOL].b;
    h->spool_max = v[H_SPOOL_MAX].set ? v[H_SPOOL_MAX].u : DEFAULT_SPOOL_MAX;
}

/* ---- small helpers --------------------------------------------------------- */

/* A fresh random 128-bit key as 32 hex digits. */
static void new_key(char out[33])
{
    static uint64_t fallback;
    unsigned char b[16];
    if (getrandom(b, sizeof(b), GRND_NONBLOCK) != (ssize_t)sizeof(b)) {
        /* no entropy yet (early boot): unique in this process is enough */
        if (!fallback) {
            fallback = now_usec(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32);
        }
        for (size_t i = 0; i < sizeof(b); i += 8) {
            fallback ^= fallback << 13;
            fallback ^= fallback >> 7;
            fallback ^= fallback << 17;
            memcpy(b + i, &fallback, 8);
        }
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(b); i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[32] = '\0';
}

/* The start of the response body, printable ASCII only, for a log line. */
static void resp_excerpt(const struct http_sink *h, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < h->resp.len && o + 4 < len && i < EXCERPT_MAX; i++) {
        unsigned char c = (unsigned char)h->resp.data[i];
        bool space = c == '\n' || c == '\r' || c == '\t';
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : space ? ' ' : '?';
    }
    if (h->resp.len > EXCERPT_MAX && o + 4 <= len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    if (!o) {
        snprintf(out, len, "(empty)");
    }
}

/* CURLOPT_WRITEFUNCTION: keeps the start of the response, discards the rest. */
static size_t resp_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct http_sink *h = userdata;
    size_t n = size * nmemb;
    if (h->resp.len < RESP_KEEP) {
        size_t take = RESP_KEEP - h->resp.len < n ? RESP_KEEP - h->resp.len : n;
        (void)buf_append(&h->resp, ptr, take);
    }
    return n;
}

static size_t rec_cost(size_t len, const char *endpoint)
{
    return REC_COST_OVERHEAD + len + strlen(endpoint);
}

/* ---- the spool ------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy) {
        return;
    }
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(copy);
}

/* Appends one spool line for the record to b. */
static int spool_frame(struct buf *b, const char *line, size_t len, const char *endpoint,
                       unsigned error, long status, usec_t fetched_at, size_t data_off,
                       size_t data_len)
{
    if (len && line[len - 1] == '\n') {
        len--;
    }
    int r = buf_printf(b, "{\"v\":1,\"ep\":\"%s\",\"err\":%u,\"st\":%ld,\"t\":%llu,\"do\":%zu,"
                          "\"dl\":%zu,\"r\":",
                       endpoint, error, status, (unsigned long long)fetched_at,
                       data_len ? data_off : 0, data_len);
    if (r == 0) {
        r = buf_append(b, line, len);
    }
    if (r == 0) {
        r = buf_puts(b, "}\n");
    }
    return r;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.' || c == ':' || c == '@';
}

static bool expect(const char **p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0) {
        return false;
    }
    *p += n;
    return true;
}

static bool number(const char **p, const char *end, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    const char *s = *p;
    while (*p < end && **p >= '0' && **p <= '9' && *p - s < 20) {
        uint64_t d = (uint64_t)(**p - '0');
        if (v > (max - d) / 10) {
            return false;
        }
        v = v * 10 + d;
        (*p)++;
    }
    *out = v;
    return *p > s;
}

/* Parses one spool line t[0..len) (without its '\n') into it; the line
 * (with a '\n') goes to line, the endpoint name to ep. False if damaged. */
static bool spool_parse(const char *t, size_t len, struct buf *line, struct buf *scratch,
                        char ep[], size_t eplen, struct sink_item *it)
{
    const char *p = t, *end = t + len;
    uint64_t err, st, ts, doff, dlen;
    if (!expect(&p, end, "{\"v\":1,\"ep\":\"")) {
        return false;
    }
    size_t n = 0;
    while (p < end && *p != '"' && n + 1 < eplen) {
        if (!name_char(*p)) {
            return false;
        }
        ep[n++] = *p++;
    }
    ep[n] = '\0';
    if (n == 0 || !expect(&p, end, "\",\"err\":") || !number(&p, end, 255, &err) ||
        !expect(&p, end, ",\"st\":") || !number(&p, end, 999, &st) ||
        !expect(&p, end, ",\"t\":") || !number(&p, end, UINT64_MAX, &ts) ||
        !expect(&p, end, ",\"do\":") || !number(&p, end, UINT32_MAX, &doff) ||
        !expect(&p, end, ",\"dl\":") || !number(&p, end, UINT32_MAX, &dlen) ||
        !expect(&p, end, ",\"r\":")) {
        return false;
    }
    if (end - p < 3 || end[-1] != '}' || *p != '{') {
        return false;
    }
    size_t rlen = (size_t)(end - 1 - p);
    if (doff + dlen > rlen) {
        return false;
    }
    /* the record must still be valid JSON (a damaged sector, a partial
     * overwrite); its "data" may be nested as deep as a response may be */
    struct json_error je;
    buf_reset(scratch);
    if (json_minify(p, rlen, JSON_MAX_DEPTH + 16, scratch, &je) < 0) {
        return false;
    }
    buf_reset(line);
    if (buf_append(line, p, rlen) < 0 || buf_putc(line, '\n') < 0) {
        return false;
    }
    memset(it, 0, sizeof(*it));
    it->line = line->data;
    it->len = line->len;
    it->endpoint = ep;
    it->error = (enum record_error)err;
    it->http_status = (long)st;
    it->fetched_at = ts;
    it->data_off = dlen ? doff : 0;
    it->data_len = dlen;
    return true;
}

/* Makes sure the read cache holds a whole line at sp->rd. Returns the
 * line's length (without '\n'), -ENODATA at the end of the file, or -errno. */
static ssize_t spool_line_at(struct spool *sp, const char **text)
{
    for (;;) {
        if (sp->rd >= sp->end) {
            return -ENODATA;
        }
        if (sp->rd >= sp->rbuf_off && sp->rd < sp->rbuf_off + sp->rbuf.len) {
            const char *start = sp->rbuf.data + (sp->rd - sp->rbuf_off);
            size_t avail = sp->rbuf.len - (size_t)(sp->rd - sp->rbuf_off);
            const char *nl = memchr(start, '\n', avail);
            if (nl) {
                *text = start;
                return nl - start;
            }
        }
        /* drop what was consumed, read on */
        if (sp->rd < sp->rbuf_off || sp->rd > sp->rbuf_off + sp->rbuf.len) {
            buf_reset(&sp->rbuf);
            sp->rbuf_off = sp->rd;
        } else {
            buf_consume(&sp->rbuf, (size_t)(sp->rd - sp->rbuf_off));
            sp->rbuf_off = sp->rd;
        }
        uint64_t at = sp->rbuf_off + sp->rbuf.len;
        if (at >= sp->end) {
            return -ENODATA; /* no '\n' before the end: cannot happen, lines are whole */
        }
        size_t want = SPOOL_READ_CHUNK;
        if (buf_reserve(&sp->rbuf, want) < 0) {
            return -ENOMEM;
        }
        ssize_t got = pread(sp->fd, sp->rbuf.data + sp->rbuf.len, want, (off_t)at);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (got == 0) {
            return -ENODATA;
        }
        sp->rbuf.len += (size_t)got;
        sp->rbuf.data[sp->rbuf.len] = '\0';
    }
}

static void spool_sync(struct http_sink *h)
{
    struct spool *sp = &h->sp;
    ev_timer_stop(h->s->loop, &sp->sync_timer);
    if (sp->fd >= 0 && sp->dirty) {
        if (fdatasync(sp->fd) < 0) {
            h->s->c.sync_errors++;
            log_sink(LOG_ERR, h->s->name, "fdatasync of the spool \"%s\" failed: %s", sp->path,
                     strerror(errno));
        }
        sp->dirty = false;
    }
}

static void spool_sync_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    spool_sync(w->data);
}

/* Records held in the spool that cannot be read back any more (the file
 * was damaged or shortened underneath): counted lost, so that
 * delivered + dropped + queued == produced still holds. */
static void spool_lose_held(struct http_sink *h, const char *why)
{
    struct sink *s = h->s;
    if (!s->held) {
        return;
    }
    log_sink(LOG_ERR, s->name, "%llu record%s in the spool \"%s\" %s lost: %s",
             (unsigned long long)s->held, s->held == 1 ? "" : "s", h->sp.path,
             s->held == 1 ? "is" : "are", why);
    s->c.dropped += s->held;
    s->c.failed += s->held;
    s->held = 0;
}

/* Writes a new spool file: the records of the memory queue (with_queue)
 * followed by the unread part of the old one, then replaces the old file.
 * Returns 0 once the new file is in place (sp->rd is then 0; if it cannot
 * be opened again for appending, sp->fd is -1 and the spool is off until
 * the next start), or -errno (nothing changed). */
static int spool_rewrite(struct http_sink *h, bool with_queue)
{
    struct spool *sp = &h->sp;
    struct sink *s = h->s;
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp", sp->path) < 0) {
        return -ENOMEM;
    }
    int r = 0;
    uint64_t size = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    struct buf b = {0};
    for (struct sink_rec *q = with_queue ? s->head : NULL; q && r == 0; q = q->next) {
        r = spool_frame(&b, q->line, q->len, q->endpoint, q->error, q->http_status,
                        q->fetched_at, q->data_off, q->data_len);
        if (r == 0 && (b.len >= SPOOL_READ_CHUNK || !q->next)) {
            r = write_all(fd, b.data, b.len);
            size += b.len;
            buf_reset(&b);
        }
    }
    buf_done(&b);
    for (uint64_t at = sp->rd; r == 0 && at < sp->end;) {
        char chunk[16384];
        size_t want = sp->end - at < sizeof(chunk) ? (size_t)(sp->end - at) : sizeof(chunk);
        ssize_t got = pread(sp->fd, chunk, want, (off_t)at);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            r = got < 0 ? -errno : -EIO;
            break;
        }
        r = write_all(fd, chunk, (size_t)got);
        at += (size_t)got;
        size += (size_t)got;
    }
    if (r == 0 && fsync(fd) < 0) {
        r = -errno;
    }
    if (close(fd) < 0 && r == 0) {
        r = -errno;
    }
    if (r == 0 && rename(tmp, sp->path) < 0) {
        r = -errno;
    }
    if (r < 0) {
        (void)unlink(tmp);
        goto out;
    }
    fsync_dir_of(sp->path);
    int nfd = open(sp->path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOCTTY);
    if (nfd < 0) {
        log_sink(LOG_ERR, s->name, "cannot open the new spool \"%s\": %s; the spool is off "
                 "until the next start", sp->path, strerror(errno));
    }
    close(sp->fd);
    sp->fd = nfd;
    sp->end = size;
    sp->rd = 0;
    sp->dirty = false;
    buf_reset(&sp->rbuf);
    sp->rbuf_off = 0;
out:
    free(tmp);
    return r;
}

/* Moves records from the spool to the tail of the queue while it has room
 * (only once it is below half its bounds: the file is read in runs, not a
 * record per ack). Keeps the file small: emptied once drained, compacted
 * when most of it was consumed. */
static void spool_refill(struct http_sink *h)
{
    struct spool *sp = &h->sp;
    struct sink *s = h->s;
    if (sp->fd < 0 || !s->held || s->queued > s->cfg->max_records / 2 ||
        s->queued_bytes > s->cfg->max_bytes / 2) {
        return;
    }
    char ep[160];
    while (s->held) {
        const char *text;
        ssize_t n = spool_line_at(sp, &text);
        if (n < 0) {
            if (n == -ENODATA) {
                spool_lose_held(h, "the spool file ended early");
            } else if (!sp->err_logged) {
                log_sink(LOG_ERR, s->name, "reading the spool \"%s\" failed: %s; trying again "
                         "later", sp->path, strerror((int)-n));
                sp->err_logged = true;
            }
            break;
        }
        struct sink_item it;
        if (!spool_parse(text, (size_t)n, &sp->line, &sp->frame, ep, sizeof(ep), &it)) {
            log_sink(LOG_WARNING, s->name, "skipping a damaged record in the spool \"%s\" "
                     "(offset %llu)", sp->path, (unsigned long long)sp->rd);
            sp->rd += (uint64_t)n + 1;
            continue;
        }
        if (s->head && (s->queued + 1 > s->cfg->max_records ||
                        s->queued_bytes + rec_cost(it.len, ep) > s->cfg->max_bytes)) {
            break; /* full: the rest stays in the file (an empty queue takes
                    * any record, so a smaller bound after a restart cannot
                    * block the spool) */
        }
        sp->rd += (uint64_t)n + 1;
        (void)sink_unhold(s, &it);
    }
    if (!s->held && sp->rd >= sp->end && sp->end > 0) {
        /* drained: start the file over */
        if (ftruncate(sp->fd, 0) == 0) {
            sp->end = sp->rd = 0;
            buf_reset(&sp->rbuf);
            sp->rbuf_off = 0;
            sp->full_logged = false;
        }
    } else if (sp->rd >= SPOOL_COMPACT_MIN && sp->rd >= sp->end - sp->rd) {
        int r = spool_rewrite(h, false);
        if (r < 0 && !sp->err_logged) {
            log_sink(LOG_ERR, s->name, "compacting the spool \"%s\" failed: %s", sp->path,
                     strerror(-r));
            sp->err_logged = true;
        }
    }
}

/* Opens the spool file and counts what an earlier run left in it (cutting
 * off a truncated last line); the records enter as produced and held, and
 * the queue is filled from them. */
static int spool_load(struct http_sink *h, char *err, size_t errlen)
{
    struct spool *sp = &h->sp;
    struct sink *s = h->s;
    sp->pending = false;
    sp->fd = open(sp->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (sp->fd < 0) {
        int r = -errno;
        snprintf(err, errlen, "cannot open the spool \"%s\": %s", sp->path, strerror(errno));
        return r;
    }
    struct stat st;
    if (fstat(sp->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "the spool \"%s\" is not a regular file", sp->path);
        close(sp->fd);
        sp->fd = -1;
        return -EINVAL;
    }
    sp->end = (uint64_t)st.st_size;
    sp->rd = 0;
    uint64_t good = 0, bad = 0, whole = 0;
    char ep[160];
    for (;;) {
        const char *text;
        ssize_t n = spool_line_at(sp, &text);
        if (n == -ENODATA) {
            break;
        }
        if (n < 0) {
            snprintf(err, errlen, "cannot read the spool \"%s\": %s", sp->path,
                     strerror((int)-n));
            close(sp->fd);
            sp->fd = -1;
            return (int)n;
        }
        struct sink_item it;
        if (spool_parse(text, (size_t)n, &sp->line, &sp->frame, ep, sizeof(ep), &it)) {
            good++;
        } else {
            bad++;
        }
        sp->rd += (uint64_t)n + 1;
        whole = sp->rd;
    }
    if (whole < sp->end) {
        log_sink(LOG_WARNING, s->name, "the spool \"%s\" ends in a truncated record (%llu "
                 "bytes, an earlier run stopped while writing it): skipped",
                 sp->path, (unsigned long long)(sp->end - whole));
        if (ftruncate(sp->fd, (off_t)whole) < 0) {
            snprintf(err, errlen, "cannot truncate the spool \"%s\": %s", sp->path,
                     strerror(errno));
            close(sp->fd);
            sp->fd = -1;
            return -EIO;
        }
        sp->end = whole;
    }
    if (bad) {
        log_sink(LOG_WARNING, s->name, "the spool \"%s\" has %llu damaged record%s: skipped",
                 sp->path, (unsigned long long)bad, bad == 1 ? "" : "s");
    }
    sp->rd = 0;
    buf_reset(&sp->rbuf);
    sp->rbuf_off = 0;
    if (good) {
        sink_restored(s, good);
        log_sink(LOG_NOTICE, s->name, "restored %llu record%s from the spool \"%s\"",
                 (unsigned long long)good, good == 1 ? "" : "s", sp->path);
    } else if (sp->end) {
        (void)ftruncate(sp->fd, 0); /* nothing usable in it */
        sp->end = 0;
    }
    spool_refill(h);
    return 0;
}

/* The type's overflow hook: the queue is full (or records are already
 * held, which must stay in order): append the record to the spool. */
static int http_overflow(struct sink *s, const struct sink_item *it)
{
    struct http_sink *h = s->priv;
    struct spool *sp = &h->sp;
    if (!h->use_spool || sp->fd < 0 || rec_cost(it->len, it->endpoint) > s->cfg->max_bytes) {
        return -ENOBUFS; /* the host drops a record larger than the queue */
    }
    buf_reset(&sp->frame);
    if (spool_frame(&sp->frame, it->line, it->len, it->endpoint, (unsigned)it->error,
                    it->http_status, it->fetched_at, it->data_off, it->data_len) < 0) {
        return -ENOBUFS;
    }
    if (sp->end - sp->rd + sp->frame.len > h->spool_max) {
        if (!sp->full_logged) {
            char b[32];
            log_sink(LOG_WARNING, s->name, "the spool is full (spool_max_bytes %s); the queue's "
                     "overflow policy applies until it drains",
                     units_format_size(h->spool_max, b, sizeof(b)));
            sp->full_logged = true;
        }
        return -ENOBUFS;
    }
    int r = write_all(sp->fd, sp->frame.data, sp->frame.len);
    if (r < 0) {
        (void)ftruncate(sp->fd, (off_t)sp->end); /* no partial line */
        if (!sp->err_logged) {
            log_sink(LOG_ERR, s->name, "cannot append to the spool \"%s\": %s", sp->path,
                     strerror(-r));
            sp->err_logged = true;
        }
        return -ENOBUFS;
    }
    sp->err_logged = false;
    sp->end += sp->frame.len;
    s->held++;
    sp->dirty = true;
    if (!ev_is_active(&sp->sync_timer)) {
        ev_timer_set(&sp->sync_timer, SPOOL_SYNC_AFTER, 0.);
        ev_timer_start(s->loop, &sp->sync_timer);
    }
    if (!s->head) {
        spool_refill(h); /* nothing queued ahead of it: take it back at once */
    }
    return 0;
}

static void spool_register(struct http_sink *h)
{
    h->sp.reg_next = spool_registry;
    spool_registry = h;
}

static void spool_unregister(struct http_sink *h)
{
    for (struct http_sink **pp = &spool_registry; *pp; pp = &(*pp)->sp.reg_next) {
        if (*pp == h) {
            *pp = h->sp.reg_next;
            break;
        }
    }
}

/* Sets up the spool at open: loads the file now, or, when a previous
 * instance (a reload replacing this sink's definition) still has it, when
 * that instance closes. */
static int spool_open(struct http_sink *h, char *err, size_t errlen)
{
    struct sink *s = h->s;
    struct spool *sp = &h->sp;
    if (asprintf(&sp->path, "%s/spool-%s.jsonl", s->state_dir, s->name) < 0) {
        sp->path = NULL;
        return -ENOMEM;
    }
    for (struct http_sink *o = spool_registry; o; o = o->sp.reg_next) {
        if (strcmp(o->sp.path, sp->path) == 0 && !o->sp.successor) {
            o->sp.successor = h;
            sp->predecessor = o;
            sp->pending = true;
            spool_register(h);
            return 0;
        }
    }
    int r = spool_load(h, err, errlen);
    if (r == 0) {
        spool_register(h);
    }
    return r;
}

/* At close: drops the consumed part of the file, syncs it and hands it to
 * a waiting successor. */
static void spool_close(struct http_sink *h)
{
    struct spool *sp = &h->sp;
    struct sink *s = h->s;
    if (!sp->path) {
        return;
    }
    ev_timer_stop(s->loop, &sp->sync_timer);
    if (sp->fd >= 0) {
        if (sp->rd > 0 && sp->rd >= sp->end) {
            if (ftruncate(sp->fd, 0) == 0) {
                sp->end = sp->rd = 0;
                sp->dirty = true;
            }
        } else if (sp->rd > 0) {
            int r = spool_rewrite(h, false);
            if (r < 0) {
                log_sink(LOG_ERR, s->name, "cannot compact the spool \"%s\": %s; records moved "
                         "to the queue may be sent again at the next start", sp->path,
                         strerror(-r));
            }
        }
        spool_sync(h);
        close(sp->fd);
        sp->fd = -1;
    }
    spool_unregister(h);
    if (sp->predecessor) {
        sp->predecessor->sp.successor = NULL;
    }
    if (s->held) {
        /* they stay in the file: a successor (a reload) or the next start
         * restores them and counts them as its own */
        if (!sp->successor) {
            log_sink(LOG_NOTICE, s->name, "%llu record%s stay in the spool \"%s\" for the next "
                     "start", (unsigned long long)s->held, s->held == 1 ? "" : "s", sp->path);
        }
        s->c.produced -= s->held;
        s->held = 0;
    }
    struct http_sink *next = sp->successor;
    if (next) {
        next->sp.predecessor = NULL;
        char err[512] = "";
        if (spool_load(next, err, sizeof(err)) < 0) {
            log_sink(LOG_ERR, next->s->name, "%s; the spool is off until the next start", err);
        }
    }
    buf_done(&sp->rbuf);
    buf_done(&sp->line);
    buf_done(&sp->frame);
    free(sp->path);
    sp->path = NULL;
}

/* ---- batches ----------------------------------------------------------------- */

/* Whether the head of the queue makes a full batch already. */
static bool batch_full(struct sink *s, struct http_sink *h)
{
    if (s->queued >= h->max_records) {
        return true;
    }
    if (s->queued_bytes < h->max_bytes) {
        return false; /* queued_bytes counts more than the body would */
    }
    size_t bytes = h->array ? 2 : 0;
    size_t n = 0;
    for (const struct sink_rec *r = s->head; r; r = r->next, n++) {
        bytes += h->array ? r->len - 1 + (n ? 1 : 0) : r->len;
        if (bytes >= h->max_bytes) {
            return true;
        }
    }
    return false;
}

/* Builds into b the body of the first records (at most max_n, within
 * batch_max_bytes, at least one). Returns how many, or 0 on allocation
 * failure. */
static size_t batch_build(struct sink *s, struct http_sink *h, struct buf *b, size_t max_n)
{
    buf_reset(b);
    size_t n = 0;
    if (h->array && buf_putc(b, '[') < 0) {
        return 0;
    }
    for (const struct sink_rec *r = s->head; r && n < max_n; r = r->next) {
        size_t add = h->array ? r->len - 1 + (n ? 1 : 0) : r->len;
        if (n && b->len + add + (h->array ? 1 : 0) > h->max_bytes) {
            break;
        }
        int e = h->array ? (n ? buf_putc(b, ',') : 0) : 0;
        if (e == 0) {
            e = buf_append(b, r->line, h->array ? r->len - 1 : r->len);
        }
        if (e < 0) {
            return 0;
        }
        n++;
    }
    if (h->array && buf_putc(b, ']') < 0) {
        return 0;
    }
    return n;
}

static void batch_wait_stop(struct http_sink *h)
{
    ev_timer_stop(h->s->loop, &h->age_timer);
    ev_prepare_stop(h->s->loop, &h->fill_check);
}

/* batch_max_age of the oldest unsent record is over. */
static void age_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct http_sink *h = w->data;
    (void)loop;
    (void)revents;
    batch_wait_stop(h);
    sink_ready(h->s);
}

/* Before the loop blocks (and before the engine's flush, by priority): new
 * records end the wait, deliver() decides again. */
static void fill_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct http_sink *h = w->data;
    (void)loop;
    (void)revents;
    if (h->s->queued != h->seen_queued) {
        batch_wait_stop(h);
        sink_ready(h->s);
    }
}

/* Starts the request for the batch in h->body. */
static void batch_send(struct sink *s, struct http_sink *h)
{
    curl_slist_free_all(h->hdrs);
    h->hdrs = NULL;
    struct curl_slist *l = NULL;
    bool ok = true;
    if (!h->user_ctype) {
        ok = (l = curl_slist_append(l, h->array ? "Content-Type: application/json"
                                                : "Content-Type: application/x-ndjson")) != NULL;
    }
    for (size_t i = 0; ok && h->headers && h->headers[i]; i++) {
        struct curl_slist *n = curl_slist_append(l, h->headers[i]);
        ok = n != NULL;
        l = n ? n : l;
    }
    if (ok && h->idem) {
        char kh[200];
        snprintf(kh, sizeof(kh), "%s: %s", h->idem, h->key);
        struct curl_slist *n = curl_slist_append(l, kh);
        ok = n != NULL;
        l = n ? n : l;
    }
    if (ok) {
        struct curl_slist *n = curl_slist_append(l, "Expect:"); /* no 100-continue round trip */
        ok = n != NULL;
        l = n ? n : l;
    }
    h->hdrs = l;
    if (!ok) {
        sink_retry(s, 0, -ENOMEM, "cannot set up the request");
        return;
    }
    CURLcode cc = curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, h->hdrs);
    if (cc == CURLE_OK) {
        cc = curl_easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)h->body.len);
    }
    if (cc == CURLE_OK) {
        cc = curl_easy_setopt(h->easy, CURLOPT_POSTFIELDS, h->body.data);
    }
    if (cc != CURLE_OK) {
        sink_retry(s, 0, -ENOMEM, "cannot set up the request");
        return;
    }
    buf_reset(&h->resp);
    h->errbuf[0] = '\0';
    int r = http_easy_renew(&h->easy); /* see http_easy_reusable() */
    if (r < 0) {
        sink_retry(s, 0, r, "cannot set up the request");
        return;
    }
    r = http_add(s->http, h->easy);
    if (r < 0) {
        sink_retry(s, 0, r, "cannot start the request");
        return;
    }
    h->in_flight = true;
    h->sent_at = now_usec(CLOCK_MONOTONIC);
    sink_wait(s, (uint32_t)h->batch_n);
}

/* fetchd is stopping: a partial batch goes out now. */
static void http_drain(struct sink *s)
{
    struct http_sink *h = s->priv;
    if (!h->in_flight && (ev_is_active(&h->age_timer) || ev_is_active(&h->fill_check))) {
        batch_wait_stop(h);
        sink_ready(s);
    }
}

static void http_deliver(struct sink *s)
{
    struct http_sink *h = s->priv;
    if (h->in_flight) {
        sink_wait(s, (uint32_t)h->batch_n);
        return;
    }
    spool_refill(h);
    if (!s->head) {
        return;
    }
    batch_wait_stop(h);
    usec_t now = now_usec(CLOCK_MONOTONIC);
    bool now_or_never = false;
    if (h->batch_n) {
        /* a retry: the same records (byte for byte) keep their key; the
         * queue may have lost some of them to drop_oldest meanwhile */
        size_t n = batch_build(s, h, &h->scratch, h->batch_n);
        if (n == h->batch_n && h->scratch.len == h->body.len &&
            memcmp(h->scratch.data, h->body.data, h->body.len) == 0) {
            batch_send(s, h);
            return;
        }
        h->batch_n = 0;
        now_or_never = true; /* these records waited long enough */
    }
    if (!now_or_never && h->max_age && !s->draining && !batch_full(s, h) && !s->paused &&
        s->queued * 2 < s->cfg->max_records && s->queued_bytes * 2 < s->cfg->max_bytes) {
        if (!h->opened_at) {
            h->opened_at = now;
        }
        if (now < h->opened_at + h->max_age) {
            /* a partial batch: wait for more records or for its age */
            h->seen_queued = s->queued;
            ev_timer_set(&h->age_timer, usec_to_ev(h->opened_at + h->max_age - now), 0.);
            ev_timer_start(s->loop, &h->age_timer);
            ev_prepare_start(s->loop, &h->fill_check);
            sink_wait(s, 0);
            return;
        }
    }
    size_t n = batch_build(s, h, &h->body, h->max_records);
    if (!n) {
        sink_retry(s, 0, -ENOMEM, "cannot build the request body");
        return;
    }
    h->batch_n = n;
    new_key(h->key);
    /* records left behind were seen no later than this batch's first */
    h->opened_at = s->queued > n ? (h->opened_at ? h->opened_at : now) : 0;
    batch_send(s, h);
}

static int curl_errno(CURLcode c)
{
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
        return -ECONNRESET;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
        return -EPROTO;
    default:
        return -EIO;
    }
}

/* The transfer of this sink finished: decide what became of the batch. */
static bool http_xfer_done(struct sink *s, void *easy, int curl_code)
{
    struct http_sink *h = s->priv;
    if (!h || easy != h->easy || !h->in_flight) {
        return false;
    }
    h->in_flight = false;
    size_t n = h->batch_n;
    long status = 0;
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
    char why[400];
    if (curl_code != CURLE_OK) {
        log_debug("sink '%s': POST of %zu records to %s failed: %s (%s)", s->name, n, h->url_log,
                  curl_easy_strerror((CURLcode)curl_code), h->errbuf);
        snprintf(why, sizeof(why), "POST to %s: %s", h->url_log,
                 curl_easy_strerror((CURLcode)curl_code));
        sink_retry(s, 0, curl_errno((CURLcode)curl_code), why);
    } else if (status >= 200 && status <= 299) {
        h->batch_n = 0;
        sink_ack(s, n);
        if (!h->opened_at && s->queued) {
            h->opened_at = h->sent_at; /* queued while this batch was on its way */
        }
        sink_ready(s);
        spool_refill(h);
    } else if (status == 408 || status == 429 || (status >= 500 && status <= 599)) {
        usec_t delay = 0;
        struct curl_header *ra;
        if (curl_easy_header(h->easy, "Retry-After", 0, CURLH_HEADER, -1, &ra) == CURLHE_OK) {
            int64_t d = http_retry_after_parse(ra->value, time(NULL));
            if (d > 0) {
                delay = (usec_t)d < s->cfg->max_backoff ? (usec_t)d : s->cfg->max_backoff;
            }
        }
        char ex[EXCERPT_MAX + 8];
        resp_excerpt(h, ex, sizeof(ex));
        snprintf(why, sizeof(why), "receiver answered HTTP %ld (%s)", status, ex);
        sink_retry(s, delay, 0, why);
    } else {
        char ex[EXCERPT_MAX + 8];
        resp_excerpt(h, ex, sizeof(ex));
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (now >= h->reject_log_at) {
            log_sink(LOG_ERR, s->name,
                     "receiver rejected a batch of %zu record%s with HTTP %ld%s; response: %s "
                     "(the batch is dropped%s)",
                     n, n == 1 ? "" : "s", status,
                     status >= 300 && status <= 399 ? " (redirects are not followed)" : "", ex,
                     h->rejects_unlogged ? "; more rejections since the last message" : "");
            h->reject_log_at = now + REJECT_LOG_EVERY;
            h->rejects_unlogged = 0;
        } else {
            h->rejects_unlogged++;
        }
        snprintf(why, sizeof(why), "receiver rejected the batch with HTTP %ld", status);
        h->batch_n = 0;
        sink_fail(s, n, -EPROTO, why);
        sink_ready(s);
        spool_refill(h);
    }
    return true;
}

/* ---- lifecycle ----------------------------------------------------------------- */

static int http_easy_setup(struct http_sink *h, const struct sink_cfg *c)
{
    const struct opt_value *v = c->values;
    CURL *e = h->easy;
    CURLcode cc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, h->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_WRITEFUNCTION, resp_cb);
    SET(CURLOPT_WRITEDATA, h);
    SET(CURLOPT_ERRORBUFFER, h->errbuf);
    SET(CURLOPT_USERAGENT, "fetchd/" FETCHD_VERSION);
    SET(CURLOPT_TIMEOUT_MS, usec_to_ms_long(h->timeout));
    /* a receiver that takes the body at a trickle (or not at all) is cut
     * off after the same time as one that never answers */
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, (long)((h->timeout + USEC_PER_SEC - 1) / USEC_PER_SEC));
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    bool verify = !v[H_TLS_VERIFY].set || v[H_TLS_VERIFY].b;
    SET(CURLOPT_SSL_VERIFYPEER, verify ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    if (v[H_CA_FILE].set) {
        SET(CURLOPT_CAINFO, v[H_CA_FILE].s);
    }
    SET(CURLOPT_PRIVATE, h);
#undef SET
    return cc == CURLE_OK ? 0 : cc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
}

static void http_close(struct sink *s);

static int http_open(struct sink *s, char *err, size_t errlen)
{
    if (!s->http) {
        snprintf(err, errlen, "no HTTP client to send with");
        return -EINVAL;
    }
    struct http_sink *h = calloc(1, sizeof(*h));
    if (!h) {
        return -ENOMEM;
    }
    h->s = s;
    h->sp.fd = -1;
    http_settings(h, s->cfg);
    s->priv = h;
    ev_timer_init(&h->age_timer, age_cb, 0., 0.);
    h->age_timer.data = h;
    ev_prepare_init(&h->fill_check, fill_cb);
    ev_set_priority(&h->fill_check, EV_MAXPRI);
    h->fill_check.data = h;
    ev_timer_init(&h->sp.sync_timer, spool_sync_cb, 0., 0.);
    h->sp.sync_timer.data = h;
    h->url_log = url_redact(h->url);
    h->easy = curl_easy_init();
    int r = h->url_log && h->easy ? http_easy_setup(h, s->cfg) : -ENOMEM;
    if (r < 0) {
        snprintf(err, errlen, "cannot set up the HTTP client: %s", strerror(-r));
        http_close(s);
        return r;
    }
    if (h->use_spool) {
        if (!s->state_dir) {
            snprintf(err, errlen, "\"spool\" needs a state directory: start fetchd with "
                     "--state-dir DIR (or STATE_DIRECTORY set, as systemd's StateDirectory= "
                     "does)");
            http_close(s);
            return -EINVAL;
        }
        r = spool_open(h, err, errlen);
        if (r < 0) {
            http_close(s);
            return r;
        }
    } else if (s->state_dir) {
        char *path = NULL;
        struct stat st;
        if (asprintf(&path, "%s/spool-%s.jsonl", s->state_dir, s->name) >= 0 &&
            stat(path, &st) == 0 && st.st_size > 0) {
            log_sink(LOG_WARNING, s->name, "\"%s\" holds records of an earlier run, but "
                     "\"spool\" is off: they are not sent", path);
        }
        free(path);
    }
    return 0;
}

/* At exit (the loop has stopped): nothing can be sent any more. With the
 * spool the queue goes to the file ahead of what it holds, and counts as
 * held; without, the host counts it as lost. */
static void http_finish(struct sink *s, usec_t deadline)
{
    struct http_sink *h = s->priv;
    (void)deadline;
    batch_wait_stop(h);
    if (!h->use_spool || h->sp.fd < 0 || !s->head) {
        return;
    }
    if (h->in_flight) {
        /* the receiver may have it already: sent again at the next start */
        http_remove(s->http, h->easy);
        h->in_flight = false;
    }
    h->batch_n = 0;
    uint64_t n = s->queued;
    int r = spool_rewrite(h, true);
    if (r < 0) {
        log_sink(LOG_ERR, s->name, "cannot write the queue to the spool \"%s\": %s", h->sp.path,
                 strerror(-r));
        return;
    }
    sink_hold(s, n);
    log_sink(LOG_NOTICE, s->name, "%llu queued record%s written to the spool \"%s\" for the "
             "next start (%llu in the spool)",
             (unsigned long long)n, n == 1 ? "" : "s", h->sp.path,
             (unsigned long long)s->held);
}

static void http_close(struct sink *s)
{
    struct http_sink *h = s->priv;
    if (!h) {
        return;
    }
    if (h->in_flight) {
        http_remove(s->http, h->easy);
        h->in_flight = false;
    }
    batch_wait_stop(h);
    spool_close(h);
    if (h->easy) {
        curl_easy_cleanup(h->easy);
    }
    curl_slist_free_all(h->hdrs);
    buf_done(&h->body);
    buf_done(&h->scratch);
    buf_done(&h->resp);
    free(h->url_log);
    free(h);
    s->priv = NULL;
}

const struct sink_type sink_type_http = {
    .name = "http",
    .description = "batches of records POSTed to an HTTP(S) receiver",
    .guarantee = "at least once up to the queue's bound (and the spool's): a batch leaves the "
                 "queue only on a 2xx answer; after a lost response it is sent again with the "
                 "same idempotency key",
    .options = http_options,
    .check = http_check,
    .open = http_open,
    .deliver = http_deliver,
    .drain = http_drain,
    .finish = http_finish,
    .overflow = http_overflow,
    .xfer_done = http_xfer_done,
    .close = http_close,
};
