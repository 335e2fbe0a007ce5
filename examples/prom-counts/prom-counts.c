/* prom-counts.c - an example fetchd sink plugin: per-endpoint record counts
 * as a Prometheus textfile-collector file.
 *
 * Written only against <fetchd/sink.h> and the C library, as an external
 * plugin would be. For every endpoint it keeps the number of ok and failed
 * records, the HTTP status of the last record and when it was fetched, and
 * writes them in the Prometheus text format to the file named by the option
 * "path", for node_exporter's textfile collector:
 *
 *   fetchd_sink_records_total{endpoint="weather",result="ok"} 12
 *   fetchd_sink_records_total{endpoint="weather",result="failed"} 1
 *   fetchd_sink_last_http_status{endpoint="weather"} 200
 *   fetchd_sink_last_fetch_timestamp_seconds{endpoint="weather"} 1767225600.123
 *
 * The file is replaced atomically (a temporary file in the same directory,
 * fsync, rename): at the first record, then at most every "interval"
 * seconds while records arrive, and at every flush (fetchd stops or
 * reloads) and at close when something changed. The temporary file starts
 * with a dot and does not end in ".prom", so the collector never reads a
 * half-written file.
 *
 * Options (under "options" in the sink's definition):
 *   path      required: the .prom file; its directory must exist
 *   interval  seconds between writes while records arrive (default 15;
 *             0: after every record)
 *   label     NAME=VALUE: one constant label added to every series
 *
 * Build:  cc -shared -fPIC -O2 -Wall -o prom-counts.so prom-counts.c
 * (with -I DIR when <fetchd/sink.h> is not installed in a standard place).
 *
 * Delivery: every record the host hands over is counted in memory at once
 * (deliver never asks for a retry); the counts reach the file at the next
 * write, so the file lags by at most "interval" seconds, and the counts of a
 * fetchd that is killed since the last write are lost. A write that fails
 * is logged (once until one succeeds again) and tried again at the first
 * record after the interval, or at the next flush; counters restart at 0
 * when fetchd restarts, as Prometheus counters may.
 *
 * Threading: every callback runs on fetchd's event loop and must not block
 * for long; writing and fsyncing a small file on a local disk every few
 * seconds is the one short stall this sink allows itself.
 */
#define _POSIX_C_SOURCE 200809L

#include <fetchd/sink.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_INTERVAL "15"

struct endpoint {
    char *name;                 /* copied: records are borrowed */
    unsigned long long ok;      /* records with ok == 1 */
    unsigned long long failed;  /* error records */
    long http_status;           /* of the last record, 0: no response */
    int64_t fetched_at_usec;    /* of the last record */
};

struct prom {
    const struct fetchd_sink_host *host;
    char *path;                 /* the .prom file */
    char *tmpl;                 /* DIR/.BASE.XXXXXX, the temporary file's template */
    char *dir;                  /* the directory, fsynced after the rename */
    char *label;                /* ",NAME=\"VALUE\"" (escaped), or "" */
    int64_t interval_usec;
    int64_t next_write;         /* CLOCK_MONOTONIC usec; 0: write at the next record */
    int dirty;                  /* counts changed since the last write */
    int failing;                /* the last write failed (and was logged) */
    struct endpoint *eps;       /* sorted by name */
    size_t n_eps, cap_eps;
};

/* A growing text buffer; oom is sticky. */
struct text {
    char *p;
    size_t len, cap;
    int oom;
};

static void text_add(struct text *t, const char *s, size_t n)
{
    if (t->oom) {
        return;
    }
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (t->len + n + 1 > cap) {
            cap *= 2;
        }
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void text_puts(struct text *t, const char *s)
{
    text_add(t, s, strlen(s));
}

static void text_printf(struct text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void text_printf(struct text *t, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        t->oom = 1; /* only short numeric pieces go through here */
        return;
    }
    text_add(t, buf, (size_t)n);
}

/* A label value in the Prometheus text format: backslash, double quote and
 * line feed are escaped as \\, \" and \n; everything else is copied (the
 * format is UTF-8, and fetchd's names are ASCII anyway). */
static void text_label_value(struct text *t, const char *v)
{
    for (; *v; v++) {
        switch (*v) {
        case '\\':
            text_puts(t, "\\\\");
            break;
        case '"':
            text_puts(t, "\\\"");
            break;
        case '\n':
            text_puts(t, "\\n");
            break;
        default:
            text_add(t, v, 1);
        }
    }
}

static int64_t mono_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Renders the whole file: HELP and TYPE lines, then one series per endpoint
 * and metric, endpoints in name order (a stable file is easier to diff). */
static void render(const struct prom *p, struct text *t)
{
    text_puts(t, "# HELP fetchd_sink_records_total Records fetchd handed to this sink, "
                 "by endpoint and result.\n"
                 "# TYPE fetchd_sink_records_total counter\n");
    for (size_t i = 0; i < p->n_eps; i++) {
        const struct endpoint *e = &p->eps[i];
        for (int ok = 1; ok >= 0; ok--) {
            text_puts(t, "fetchd_sink_records_total{endpoint=\"");
            text_label_value(t, e->name);
            text_puts(t, ok ? "\",result=\"ok\"" : "\",result=\"failed\"");
            text_puts(t, p->label);
            text_printf(t, "} %llu\n", ok ? e->ok : e->failed);
        }
    }
    text_puts(t, "# HELP fetchd_sink_last_http_status HTTP status of the endpoint's last "
                 "record (0: no response).\n"
                 "# TYPE fetchd_sink_last_http_status gauge\n");
    for (size_t i = 0; i < p->n_eps; i++) {
        text_puts(t, "fetchd_sink_last_http_status{endpoint=\"");
        text_label_value(t, p->eps[i].name);
        text_puts(t, "\"");
        text_puts(t, p->label);
        text_printf(t, "} %ld\n", p->eps[i].http_status);
    }
    text_puts(t, "# HELP fetchd_sink_last_fetch_timestamp_seconds When the endpoint's last "
                 "record was fetched, in seconds since the epoch.\n"
                 "# TYPE fetchd_sink_last_fetch_timestamp_seconds gauge\n");
    for (size_t i = 0; i < p->n_eps; i++) {
        int64_t us = p->eps[i].fetched_at_usec;
        if (us < 0) {
            us = 0;
        }
        text_puts(t, "fetchd_sink_last_fetch_timestamp_seconds{endpoint=\"");
        text_label_value(t, p->eps[i].name);
        text_puts(t, "\"");
        text_puts(t, p->label);
        text_printf(t, "} %lld.%03lld\n", (long long)(us / 1000000),
                    (long long)(us % 1000000 / 1000));
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
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

/* Creates the temporary file (DIR/.BASE.XXXXXX, mode 0600); returns the fd
 * and the malloc'd name in *ret_name, or -errno. */
static int temp_create(const struct prom *p, char **ret_name)
{
    size_t n = strlen(p->tmpl) + 1;
    char *tmp = malloc(n);
    if (!tmp) {
        return -ENOMEM;
    }
    memcpy(tmp, p->tmpl, n);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int r = -errno;
        free(tmp);
        return r;
    }
    *ret_name = tmp;
    return fd;
}

/* Replaces the file atomically: the text goes to a temporary file in the
 * same directory, which is fsynced, made readable (node_exporter usually
 * runs as another user) and renamed over the old file; then the directory
 * is fsynced so that the rename survives a crash. A reader sees the old
 * file or the new one, never a part. Returns 0 or -errno. */
static int write_file(struct prom *p)
{
    struct text t = {0};
    render(p, &t);
    if (t.oom) {
        free(t.p);
        return -ENOMEM;
    }
    char *tmp = NULL;
    int fd = temp_create(p, &tmp);
    if (fd < 0) {
        free(t.p);
        return fd;
    }
    int r = write_all(fd, t.p, t.len);
    if (r == 0 && fchmod(fd, 0644) < 0) {
        r = -errno;
    }
    if (r == 0 && fsync(fd) < 0) {
        r = -errno;
    }
    if (close(fd) < 0 && r == 0) {
        r = -errno;
    }
    if (r == 0 && rename(tmp, p->path) < 0) {
        r = -errno;
    }
    if (r < 0) {
        unlink(tmp);
    } else {
        int dfd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd); /* the rename is done; this only makes it durable */
            close(dfd);
        }
    }
    free(tmp);
    free(t.p);
    return r;
}

/* Writes the file now and reports a failure once until a write succeeds
 * again (a full disk must not flood the journal). */
static int write_now(struct prom *p)
{
    int r = write_file(p);
    /* a failed write is tried again after the interval too (or at a flush):
     * a full disk must not cost a temporary file per record */
    p->next_write = mono_usec() + p->interval_usec;
    if (r < 0) {
        if (!p->failing) {
            p->host->log(p->host, FETCHD_LOG_ERR, "cannot write %s: %s (trying again later)",
                         p->path, strerror(-r));
        }
        p->failing = 1;
        return r;
    }
    if (p->failing) {
        p->host->log(p->host, FETCHD_LOG_NOTICE, "%s written again", p->path);
    }
    p->failing = 0;
    p->dirty = 0;
    return 0;
}

/* The endpoint's slot, inserted in name order if new; NULL if out of memory. */
static struct endpoint *endpoint_get(struct prom *p, const char *name)
{
    size_t lo = 0, hi = p->n_eps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(p->eps[mid].name, name);
        if (c == 0) {
            return &p->eps[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (p->n_eps == p->cap_eps) {
        size_t cap = p->cap_eps ? 2 * p->cap_eps : 16;
        struct endpoint *v = realloc(p->eps, cap * sizeof(*v));
        if (!v) {
            return NULL;
        }
        p->eps = v;
        p->cap_eps = cap;
    }
    size_t n = strlen(name) + 1;
    char *copy = malloc(n);
    if (!copy) {
        return NULL;
    }
    memcpy(copy, name, n);
    memmove(&p->eps[lo + 1], &p->eps[lo], (p->n_eps - lo) * sizeof(p->eps[0]));
    memset(&p->eps[lo], 0, sizeof(p->eps[lo]));
    p->eps[lo].name = copy;
    p->n_eps++;
    return &p->eps[lo];
}

static void prom_close(void *ctx)
{
    struct prom *p = ctx;
    if (!p) {
        return;
    }
    if (p->dirty) {
        (void)write_now(p);
    }
    for (size_t i = 0; i < p->n_eps; i++) {
        free(p->eps[i].name);
    }
    free(p->eps);
    free(p->path);
    free(p->tmpl);
    free(p->dir);
    free(p->label);
    free(p);
}

/* "interval": a non-negative number of seconds ("15", "0.5", 15). */
static int parse_interval(const char *s, int64_t *ret)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno || end == s || *end || !(d >= 0 && d <= 86400.0 * 365)) {
        return -EINVAL;
    }
    *ret = (int64_t)(d * 1e6);
    return 0;
}

/* "label": NAME=VALUE, NAME a Prometheus label name not reserved (no "__"
 * prefix) and not one of ours. Sets p->label to ",NAME=\"VALUE\"". */
static int parse_label(struct prom *p, const char *s)
{
    const char *eq = strchr(s, '=');
    size_t n = eq ? (size_t)(eq - s) : 0;
    int ok = n > 0 && !(s[0] >= '0' && s[0] <= '9') && !(n >= 2 && s[0] == '_' && s[1] == '_');
    for (size_t i = 0; ok && i < n; i++) {
        char c = s[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_';
    }
    if (ok && ((n == 8 && strncmp(s, "endpoint", n) == 0) ||
               (n == 6 && strncmp(s, "result", n) == 0))) {
        ok = 0;
    }
    if (!ok) {
        p->host->log(p->host, FETCHD_LOG_ERR,
                     "option \"label\": expected NAME=VALUE with NAME made of letters, digits "
                     "and _ (not starting with a digit or __, not endpoint or result), got \"%s\"",
                     s);
        return -EINVAL;
    }
    struct text t = {0};
    text_puts(&t, ",");
    text_add(&t, s, n);
    text_puts(&t, "=\"");
    text_label_value(&t, eq + 1);
    text_puts(&t, "\"");
    if (t.oom) {
        free(t.p);
        return -ENOMEM;
    }
    p->label = t.p;
    return 0;
}

/* Splits path into the directory and the temporary file's template. */
static int set_path(struct prom *p, const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    if (!*base) {
        p->host->log(p->host, FETCHD_LOG_ERR, "option \"path\": \"%s\" names a directory", path);
        return -EINVAL;
    }
    p->path = strdup(path);
    p->dir = slash ? strndup(path, dlen ? dlen : 1) : strdup(".");
    size_t tlen = strlen(p->dir ? p->dir : "") + strlen(base) + 10;
    p->tmpl = malloc(tlen);
    if (!p->path || !p->dir || !p->tmpl) {
        return -ENOMEM;
    }
    snprintf(p->tmpl, tlen, "%s/.%s.XXXXXX", p->dir, base);
    return 0;
}

/* Reads the options and creates (and removes) a temporary file in the
 * file's directory, so that a directory that does not exist or is not
 * writable stops fetchd at start (or fails a reload) instead of losing
 * counts later. The file itself is first written at the first record or
 * flush: a new instance at a reload does not overwrite the counts of the
 * one it replaces until it has counts of its own. */
static int prom_init(const struct fetchd_sink_host *host, void **ret_ctx)
{
    struct prom *p = calloc(1, sizeof(*p));
    if (!p) {
        return -ENOMEM;
    }
    p->host = host;
    const char *path = host->option(host, "path");
    const char *interval = host->option(host, "interval");
    const char *label = host->option(host, "label");
    char *probe = NULL;
    int fd, r;
    if (!path || !*path) {
        host->log(host, FETCHD_LOG_ERR, "option \"path\" must name the .prom file to write");
        r = -EINVAL;
        goto fail;
    }
    r = set_path(p, path);
    if (r < 0) {
        goto fail;
    }
    if (parse_interval(interval ? interval : DEFAULT_INTERVAL, &p->interval_usec) < 0) {
        host->log(host, FETCHD_LOG_ERR,
                  "option \"interval\": expected a number of seconds (0 or more), got \"%s\"",
                  interval);
        r = -EINVAL;
        goto fail;
    }
    if (label) {
        r = parse_label(p, label);
    } else {
        p->label = strdup("");
        r = p->label ? 0 : -ENOMEM;
    }
    if (r < 0) {
        goto fail;
    }
    fd = temp_create(p, &probe);
    if (fd < 0) {
        r = fd;
        host->log(host, FETCHD_LOG_ERR, "cannot create files in %s (for %s): %s", p->dir, p->path,
                  strerror(-r));
        goto fail;
    }
    close(fd);
    unlink(probe);
    free(probe);
    *ret_ctx = p;
    return 0;
fail:
    prom_close(p);
    return r;
}

/* Counts the record; writes the file when the interval has passed. Never
 * asks for a retry: the record is counted once it is here. */
static int prom_deliver(void *ctx, const struct fetchd_record *rec)
{
    struct prom *p = ctx;
    struct endpoint *e = endpoint_get(p, rec->endpoint);
    if (!e) {
        return FETCHD_SINK_RETRY; /* out of memory: nothing counted, try later */
    }
    if (rec->ok) {
        e->ok++;
    } else {
        e->failed++;
    }
    e->http_status = rec->http_status;
    e->fetched_at_usec = rec->fetched_at_usec;
    p->dirty = 1;
    if (mono_usec() >= p->next_write) {
        (void)write_now(p); /* a failure is logged and tried again after the interval */
    }
    return FETCHD_SINK_OK;
}

static int prom_flush(void *ctx)
{
    struct prom *p = ctx;
    return p->dirty || p->failing ? write_now(p) : 0;
}

/* SIGHUP: nothing is kept open; write the file again in case it was removed. */
static int prom_reopen(void *ctx)
{
    return write_now(ctx);
}

static const struct fetchd_sink_option prom_options[] = {
    {"path", "the .prom file to write; its directory must exist", 1},
    {"interval", "seconds between writes while records arrive, default " DEFAULT_INTERVAL, 0},
    {"label", "NAME=VALUE: a constant label added to every series", 0},
    {NULL, NULL, 0},
};

FETCHD_SINK_EXPORT const struct fetchd_sink_def fetchd_sink_definition = {
    .abi = FETCHD_SINK_ABI,
    .size = sizeof(struct fetchd_sink_def),
    .name = "prom-counts",
    .description = "per-endpoint record counts as a Prometheus textfile-collector file",
    .options = prom_options,
    .init = prom_init,
    .deliver = prom_deliver,
    .flush = prom_flush,
    .reopen = prom_reopen,
    .close = prom_close,
};
