/* log.c - leveled, structured logging to stderr or natively to journald. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fetchd-build.h"


static int log_level = LOG_NOTICE;
static bool log_journal_stream; /* stderr is connected to journald */
static enum log_target log_target_eff = LOG_TARGET_STDERR;
static void (*log_before_write)(void);

/* flood control for endpoint messages */
static usec_t log_window_start;
static unsigned log_window_count;
static uint64_t log_window_suppressed;

static const char *const level_names[8] = {"emerg", "alert", "crit",  "error",
                                           "warning", "notice", "info", "debug"};

static const struct {
    const char *name;
    const char *id;
} events[_LOG_EV_MAX] = {
    [LOG_EV_NONE] = {NULL, NULL},
    [LOG_EV_STARTED] = {"started", "1efad1d5ad1c41fd8f4e1b6223b483e4"},
    [LOG_EV_RELOADED] = {"reloaded", "cf641d767ea44b71bf69768be35392d7"},
    [LOG_EV_RELOAD_FAILED] = {"reload_failed", "e9bd5833240942bfb8864ac25c117c3f"},
    [LOG_EV_STOPPING] = {"stopping", "a01bbae177914dacb6c05469c4492916"},
    [LOG_EV_STOPPED] = {"stopped", "1255c8d0dffc4b4188bd4e878cf7b346"},
    [LOG_EV_ENDPOINT_DOWN] = {"endpoint_down", "1ebc66253f7f4dd59f876e02db082fb9"},
    [LOG_EV_ENDPOINT_RECOVERED] = {"endpoint_recovered", "5f01ea18f5d0478cb3590ecab95f0704"},
    [LOG_EV_ENDPOINT_STILL_FAILING] = {"endpoint_still_failing",
                                       "a6094aadcecf4e618106e6bc54ed9f72"},
    [LOG_EV_FETCH_FAILED] = {"fetch_failed", "5e547f9af9de4439acc8da1b112b81a9"},
    [LOG_EV_LOG_SUPPRESSED] = {"log_suppressed", "2d309dde79fa4265b21457171f5e40b0"},
    [LOG_EV_SINK_ERROR] = {"sink_error", "3bb113c52e064df2a37faa0b31eeaad6"},
    [LOG_EV_ENDPOINT_BACKOFF] = {"endpoint_backoff", "d0f21eaecd854d59a8434adb9c3b7a8f"},
};

const char *log_event_name(enum log_event e)
{
    return e > 0 && e < _LOG_EV_MAX ? events[e].name : NULL;
}

const char *log_event_message_id(enum log_event e)
{
    return e > 0 && e < _LOG_EV_MAX ? events[e].id : NULL;
}

static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long long dev, ino;
    return js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
           (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_setup(enum log_target target)
{
    log_journal_stream = stderr_is_journal();
    switch (target) {
    case LOG_TARGET_JOURNAL:
        log_target_eff = HAVE_SYSTEMD ? LOG_TARGET_JOURNAL : LOG_TARGET_STDERR;
        break;
    case LOG_TARGET_STDERR:
        log_target_eff = LOG_TARGET_STDERR;
        break;
    case LOG_TARGET_AUTO:
    default:
        log_target_eff = (HAVE_SYSTEMD && log_journal_stream) ? LOG_TARGET_JOURNAL
                                                               : LOG_TARGET_STDERR;
        break;
    }
}

int log_parse_target(const char *s)
{
    if (strcmp(s, "auto") == 0) {
        return LOG_TARGET_AUTO;
    }
    if (strcmp(s, "journal") == 0) {
        return LOG_TARGET_JOURNAL;
    }
    if (strcmp(s, "stderr") == 0) {
        return LOG_TARGET_STDERR;
    }
    return -EINVAL;
}

void log_set_level(int level)
{
    log_level = level;
}

int log_get_level(void)
{
    return log_level;
}

const char *log_level_name(int level)
{
    return level >= 0 && level < 8 ? level_names[level] : "?";
}

int log_parse_level(const char *s)
{
    for (int i = 0; i < 8; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            return i;
        }
    }
    if (strcasecmp(s, "err") == 0) {
        return LOG_ERR;
    }
    if (strcasecmp(s, "warn") == 0) {
        return LOG_WARNING;
    }
    if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0') {
        return s[0] - '0';
    }
    return -EINVAL;
}

void log_set_before_write(void (*fn)(void))
{
    log_before_write = fn;
}

static bool is_endpoint_event(enum log_event e)
{
    return e == LOG_EV_ENDPOINT_DOWN || e == LOG_EV_ENDPOINT_RECOVERED ||
           e == LOG_EV_ENDPOINT_STILL_FAILING || e == LOG_EV_FETCH_FAILED ||
           e == LOG_EV_ENDPOINT_BACKOFF;
}

/* Returns false when this message must be suppressed. */
static bool log_budget(const struct log_fields *f)
{
    if (!f || !is_endpoint_event(f->event)) {
        return true;
    }
    usec_t now = now_usec(CLOCK_MONOTONIC);
    if (log_window_start == 0 || now - log_window_start >= LOG_WINDOW) {
        log_tick(false);
        log_window_start = now;
        log_window_count = 0;
    }
    if (log_window_count >= LOG_ENDPOINT_BURST) {
        log_window_suppressed++;
        return false;
    }
    log_window_count++;
    return true;
}

void log_tick(bool force)
{
    if (log_window_suppressed == 0) {
        return;
    }
    usec_t now = now_usec(CLOCK_MONOTONIC);
    if (!force && now - log_window_start < LOG_WINDOW) {
        return;
    }
    uint64_t n = log_window_suppressed;
    log_window_suppressed = 0;
    log_window_start = now;
    log_window_count = 0;
    struct log_fields lf = LOG_FIELDS_INIT;
    lf.event = LOG_EV_LOG_SUPPRESSED;
    log_full(LOG_WARNING, &lf,
             "%llu messages about endpoints were suppressed (more than %d per %llu s); every "
             "fetch is still in the records, and the counts are in the status line",
             (unsigned long long)n, LOG_ENDPOINT_BURST,
             (unsigned long long)(LOG_WINDOW / USEC_PER_SEC));
}

static void log_stderr(int prio, const char *msg)
{
    char line[4200];
    int n;
    if (log_journal_stream) {
        n = snprintf(line, sizeof(line), "<%d>%s", prio, msg);
    } else {
        n = snprintf(line, sizeof(line), "fetchd: %s: %s", log_level_name(prio), msg);
    }
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2;
    }
    line[len++] = '\n';
    if (log_before_write) {
        log_before_write();
    }
    /* stderr may share its open file description with a stdout that a
     * stdout sink made non-blocking: wait a little rather than lose it */
    /* once a line was lost that way the reader has stopped: no waiting
     * again until a line goes through (waiting per line would stall the
     * loop) */
    static bool stuck;
    size_t off = 0;
    int waits = 0, saved_errno = errno;
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w > 0) {
            off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !stuck &&
                   waits++ < 10) {
            struct pollfd pfd = {.fd = STDERR_FILENO, .events = POLLOUT};
            (void)poll(&pfd, 1, 10);
        } else {
            stuck = w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
            break;
        }
    }
    if (off == len) {
        stuck = false;
    }
    errno = saved_errno;
}

#if HAVE_SYSTEMD
/* fetchd's own client of journald's native protocol, like the journal
 * sink's: a non-blocking datagram socket. sd_journal_sendv() uses a
 * blocking one, so a stalled journald would stall the loop in a log call.
 * A message that does not fit now is dropped and counted, and the count
 * is logged with the next message that goes through. */
#define LOG_JOURNAL_SOCKET "/run/systemd/journal/socket"
static int log_journal_fd = -1;
static uint64_t log_journal_dropped;

static int log_journal_connect(void)
{
    if (log_journal_fd >= 0) {
        return 0;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -errno;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = LOG_JOURNAL_SOCKET};
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    /* room for a burst (journald's own clients ask for 8 MiB; the kernel
     * caps it at wmem_max) */
    int sz = 8 * 1024 * 1024;
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    log_journal_fd = fd;
    return 0;
}

/* Sends "KEY=value" fields (no newline in any value) as one entry. */
static int log_journal_send(struct iovec *fields, int n)
{
    struct iovec iov[2 * 20];
    int k = 0;
    for (int i = 0; i < n && k + 2 <= (int)(sizeof(iov) / sizeof(iov[0])); i++) {
        iov[k++] = fields[i];
        iov[k++] = (struct iovec){.iov_base = (char *)"\n", .iov_len = 1};
    }
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)k};
    ssize_t w;
    do {
        w = sendmsg(log_journal_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (w < 0 && errno == EINTR);
    return w < 0 ? -errno : 0;
}

static int log_journal(int prio, const struct log_fields *f, const char *file, int line,
                       const char *func, const char *msg)
{
    int r = log_journal_connect();
    if (r < 0) {
        return r; /* no journald: stderr */
    }
    char b[16][320];
    struct iovec iov[17];
    int n = 0;
#define ADD(...)                                                                                   \
    do {                                                                                           \
        int _l = snprintf(b[n], sizeof(b[n]), __VA_ARGS__);                                        \
        iov[n].iov_base = b[n];                                                                    \
        iov[n].iov_len = _l < 0 ? 0 : ((size_t)_l < sizeof(b[n]) ? (size_t)_l : sizeof(b[n]) - 1); \
        n++;                                                                                       \
    } while (0)
    /* MESSAGE may be long: the key and the text as two pieces of one field
     * would need a writev per field; one buffer is simpler */
    char mbuf[sizeof("MESSAGE=") + 4096];
    int ml = snprintf(mbuf, sizeof(mbuf), "MESSAGE=%s", msg);
    iov[n].iov_base = mbuf;
    iov[n].iov_len = ml < 0 ? 0 : ((size_t)ml < sizeof(mbuf) ? (size_t)ml : sizeof(mbuf) - 1);
    n++;
    ADD("PRIORITY=%d", prio);
    ADD("SYSLOG_IDENTIFIER=fetchd");
    ADD("CODE_FILE=%s", file);
    ADD("CODE_LINE=%d", line);
    ADD("CODE_FUNC=%s", func);
    if (f) {
        if (f->event) {
            ADD("FETCHD_EVENT=%s", log_event_name(f->event));
            ADD("MESSAGE_ID=%s", log_event_message_id(f->event));
        }
        if (f->endpoint) {
            ADD("FETCHD_ENDPOINT=%s", f->endpoint);
        }
        if (f->url) {
            ADD("FETCHD_URL=%s", f->url);
        }
        if (f->sink) {
            ADD("FETCHD_SINK=%s", f->sink);
        }
        if (f->error_kind) {
            ADD("FETCHD_ERROR_KIND=%s", f->error_kind);
        }
        if (f->http_status > 0) {
            ADD("FETCHD_HTTP_STATUS=%ld", f->http_status);
        }
        if (f->curl_code) {
            ADD("FETCHD_CURL_CODE=%d", f->curl_code);
        }
        if (f->duration_us >= 0) {
            ADD("FETCHD_DURATION_MS=%lld.%03lld", (long long)(f->duration_us / 1000),
                (long long)(f->duration_us % 1000));
        }
        if (f->bytes >= 0) {
            ADD("FETCHD_BYTES=%lld", (long long)f->bytes);
        }
    }
    /* values must not contain newlines in this simple form: MESSAGE was
     * flattened by the caller, the fields are fetchd's own or validated */
    r = log_journal_send(iov, n);
    if (r == -EAGAIN || r == -EWOULDBLOCK || r == -ENOBUFS) {
        log_journal_dropped++; /* journald is behind: never wait for it */
        return 0;
    }
    if (r < 0) {
        close(log_journal_fd); /* gone (restarted?): reconnect next time */
        log_journal_fd = -1;
        return r;
    }
    if (log_journal_dropped) {
        n = 0;
        ADD("MESSAGE=%llu log message%s dropped: journald did not take them in time",
            (unsigned long long)log_journal_dropped, log_journal_dropped == 1 ? " was" : "s were");
        ADD("PRIORITY=%d", LOG_WARNING);
        ADD("SYSLOG_IDENTIFIER=fetchd");
        if (log_journal_send(iov, n) == 0) {
            log_journal_dropped = 0;
        }
    }
#undef ADD
    return 0;
}
#endif

void log_done(void)
{
#if HAVE_SYSTEMD
    if (log_journal_fd < 0) {
        return;
    }
    if (log_journal_dropped) {
        /* the last chance to tell: wait a little for journald */
        int fl = fcntl(log_journal_fd, F_GETFL);
        struct timeval tv = {.tv_sec = 0, .tv_usec = 500000};
        if (fl >= 0 && fcntl(log_journal_fd, F_SETFL, fl & ~O_NONBLOCK) == 0 &&
            setsockopt(log_journal_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0) {
            char m[160];
            snprintf(m, sizeof(m),
                     "MESSAGE=%llu log message%s dropped: journald did not take them in time",
                     (unsigned long long)log_journal_dropped,
                     log_journal_dropped == 1 ? " was" : "s were");
            struct iovec iov[3] = {
                {.iov_base = m, .iov_len = strlen(m)},
                {.iov_base = (char *)"PRIORITY=4", .iov_len = 10},
                {.iov_base = (char *)"SYSLOG_IDENTIFIER=fetchd", .iov_len = 24},
            };
            struct iovec lines[6];
            for (int i = 0; i < 3; i++) {
                lines[2 * i] = iov[i];
                lines[2 * i + 1] = (struct iovec){.iov_base = (char *)"\n", .iov_len = 1};
            }
            struct msghdr mh = {.msg_iov = lines, .msg_iovlen = 6};
            ssize_t w;
            do {
                w = sendmsg(log_journal_fd, &mh, MSG_NOSIGNAL);
            } while (w < 0 && errno == EINTR);
            if (w >= 0) {
                log_journal_dropped = 0;
            }
        }
    }
    close(log_journal_fd);
    log_journal_fd = -1;
#endif
}

void log_internalv(int prio, const struct log_fields *f, const char *file, int line,
                   const char *func, const char *fmt, va_list ap)
{
    if (prio > log_level) {
        return;
    }
    if (!log_budget(f)) {
        return;
    }
    int saved = errno;
    char msg[4096];
    int off = 0;
    if (f && f->endpoint) {
        off = snprintf(msg, sizeof(msg), "endpoint '%.256s': ", f->endpoint);
    } else if (f && f->sink) {
        off = snprintf(msg, sizeof(msg), "sink '%.256s': ", f->sink);
    }
    if (off < 0) {
        off = 0;
    }
    vsnprintf(msg + off, sizeof(msg) - (size_t)off, fmt, ap);
    /* one line without control bytes: a message may carry what a server
     * sent (a Content-Type, say); a newline would split the line, and an
     * escape sequence would reach a terminal or the journal as is */
    char safe[sizeof(msg)];
    size_t o = 0;
    for (const unsigned char *c = (const unsigned char *)msg; *c && o + 5 < sizeof(safe); c++) {
        if (*c == '\n' || *c == '\r') {
            safe[o++] = ' ';
        } else if ((*c < 0x20 && *c != '\t') || *c == 0x7f) {
            o += (size_t)snprintf(safe + o, sizeof(safe) - o, "\\x%02x", *c);
        } else {
            safe[o++] = (char)*c;
        }
    }
    safe[o] = '\0';
#if HAVE_SYSTEMD
    if (log_target_eff == LOG_TARGET_JOURNAL && log_journal(prio, f, file, line, func, safe) >= 0) {
        errno = saved;
        return;
    }
    /* no journald to talk to: say it on stderr rather than lose it */
#else
    (void)file;
    (void)line;
    (void)func;
#endif
    log_stderr(prio, safe);
    errno = saved;
}

void log_internal(int prio, const struct log_fields *f, const char *file, int line,
                  const char *func, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_internalv(prio, f, file, line, func, fmt, ap);
    va_end(ap);
}
