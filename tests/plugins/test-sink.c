/* test-sink.c - a configurable sink plugin for the loader and host tests
 * (tests/integration/test-sink-plugin.c). Built, like an external plugin,
 * against <fetchd/sink.h> only.
 *
 * Options:
 *   mode     ok (default): take every record
 *            retry: answer FETCHD_SINK_RETRY to the first "retries" calls
 *                   of deliver (over the sink's life), then take records
 *            reject: answer -EINVAL to every record
 *            badresult: answer 7, which is not a result of the ABI
 *            initfail: init logs an error and fails with -EIO
 *   retries  how many deliver calls answer RETRY in mode retry (default 2)
 *   report   a file that gets one line per call (appended), so that a test
 *            can check the exact call sequence and what each record looked
 *            like from the plugin's side:
 *              init sink=NAME abi=N host_size=ok|short state_dir=set|none
 *                   mode=M retries=TEXT flag=TEXT
 *              deliver ENDPOINT ok=0|1 kind=KIND|- status=N view=ok|bad
 *                   data=DATA|- -> ok|retry|reject|badresult
 *              flush | reopen | close
 *            view=ok means: record->size covers the ABI 1 struct, json is
 *            one JSON object of json_len bytes without a newline or NUL
 *            (it is not NUL-terminated), data (if any) lies inside json,
 *            error_kind is set exactly when !ok.
 *   flag     any value; echoed in the init line (how numbers and booleans
 *            reach a plugin)
 */
#define _POSIX_C_SOURCE 200809L

#include <fetchd/sink.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tsink {
    const struct fetchd_sink_host *host;
    const char *report; /* the host's string, valid until close */
    enum { M_OK, M_RETRY, M_REJECT, M_BADRESULT } mode;
    long retries_left;
};

/* Appends one line to the report file (if any). Blocking, but tiny: this is
 * a test plugin. */
static void report(const struct tsink *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void report(const struct tsink *t, const char *fmt, ...)
{
    if (!t->report) {
        return;
    }
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n > sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    line[n++] = '\n';
    int fd = open(t->report, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) != n) {
            t->host->log(t->host, FETCHD_LOG_ERR, "cannot write the report");
        }
        close(fd);
    }
}

static void tsink_close(void *ctx)
{
    struct tsink *t = ctx;
    if (!t) {
        return;
    }
    report(t, "close");
    free(t);
}

static int tsink_init(const struct fetchd_sink_host *host, void **ret_ctx)
{
    const char *mode = host->option(host, "mode");
    const char *retries = host->option(host, "retries");
    const char *flag = host->option(host, "flag");
    struct tsink *t = calloc(1, sizeof(*t));
    if (!t) {
        return -ENOMEM;
    }
    t->host = host;
    t->report = host->option(host, "report");
    t->retries_left = retries ? strtol(retries, NULL, 10) : 2;
    report(t, "init sink=%s abi=%u host_size=%s state_dir=%s mode=%s retries=%s flag=%s",
           host->name, host->abi, host->size >= sizeof(*host) ? "ok" : "short",
           host->state_dir ? "set" : "none", mode ? mode : "-", retries ? retries : "-",
           flag ? flag : "-");
    if (!mode || strcmp(mode, "ok") == 0) {
        t->mode = M_OK;
    } else if (strcmp(mode, "retry") == 0) {
        t->mode = M_RETRY;
    } else if (strcmp(mode, "reject") == 0) {
        t->mode = M_REJECT;
    } else if (strcmp(mode, "badresult") == 0) {
        t->mode = M_BADRESULT;
    } else if (strcmp(mode, "initfail") == 0) {
        host->log(host, FETCHD_LOG_ERR, "test-sink: init fails on purpose (mode %s)", mode);
        free(t);
        return -EIO;
    } else {
        host->log(host, FETCHD_LOG_ERR, "test-sink: unknown mode \"%s\"", mode);
        free(t);
        return -EINVAL;
    }
    *ret_ctx = t;
    return 0;
}

/* Whether the record looks as the ABI promises. */
static int view_ok(const struct fetchd_record *r)
{
    if (r->size < sizeof(struct fetchd_record) || !r->endpoint || !r->json) {
        return 0;
    }
    /* json_len bytes, not NUL-terminated (the host's buffer goes on) */
    if (r->json_len < 2 || r->json[0] != '{' || r->json[r->json_len - 1] != '}' ||
        memchr(r->json, '\n', r->json_len) || memchr(r->json, '\0', r->json_len)) {
        return 0;
    }
    if (r->data && (r->data < r->json || r->data + r->data_len > r->json + r->json_len ||
                    r->data_len == 0)) {
        return 0;
    }
    if (!r->data && r->data_len) {
        return 0;
    }
    return (r->ok != 0) == (r->error_kind == NULL);
}

static int tsink_deliver(void *ctx, const struct fetchd_record *r)
{
    struct tsink *t = ctx;
    int res = FETCHD_SINK_OK;
    const char *what = "ok";
    if (t->mode == M_RETRY && t->retries_left > 0) {
        t->retries_left--;
        res = FETCHD_SINK_RETRY;
        what = "retry";
    } else if (t->mode == M_REJECT) {
        res = -EINVAL;
        what = "reject";
    } else if (t->mode == M_BADRESULT) {
        res = 7;
        what = "badresult";
    }
    report(t, "deliver %s ok=%d kind=%s status=%ld view=%s data=%.*s -> %s", r->endpoint, r->ok,
           r->error_kind ? r->error_kind : "-", r->http_status, view_ok(r) ? "ok" : "bad",
           r->data ? (int)r->data_len : 1, r->data ? r->data : "-", what);
    return res;
}

static int tsink_flush(void *ctx)
{
    report(ctx, "flush");
    return 0;
}

static int tsink_reopen(void *ctx)
{
    report(ctx, "reopen");
    return 0;
}

static const struct fetchd_sink_option tsink_options[] = {
    {"mode", "ok, retry, reject, badresult or initfail", 0},
    {"retries", "deliver calls that answer RETRY in mode retry (default 2)", 0},
    {"report", "a file that gets one line per call", 0},
    {"flag", "any value, echoed in the report", 0},
    {NULL, NULL, 0},
};

FETCHD_SINK_EXPORT const struct fetchd_sink_def fetchd_sink_definition = {
    .abi = FETCHD_SINK_ABI,
    .size = sizeof(struct fetchd_sink_def),
    .name = "test-sink",
    .description = "a configurable sink for fetchd's tests",
    .options = tsink_options,
    .init = tsink_init,
    .deliver = tsink_deliver,
    .flush = tsink_flush,
    .reopen = tsink_reopen,
    .close = tsink_close,
};
