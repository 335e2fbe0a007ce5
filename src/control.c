/* control.c - the control socket: JSON lines over a Unix stream socket,
 * served on the event loop without blocking it. */
#define _GNU_SOURCE
#include "control.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <ev.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "sink.h"
#include "util/buf.h"
#include "util/time.h"

#define CONTROL_MAX_LINE (64 * 1024)
#define CONTROL_MAX_OUT (256u * 1024 * 1024) /* a status of 10^6 endpoints fits */

struct client {
    struct control *ctl;
    int fd;
    ev_io rio, wio;
    struct buf in, out;
    bool closing; /* close once out is written */
    struct client *next;
};

struct control {
    struct engine *engine;
    struct ev_loop *loop;
    int fd;
    ev_io accept_io;
    ev_timer accept_pause; /* out of fds: accept again later */
    char *path;
    struct client *clients;
    unsigned n_clients;
};

/* ---- requests ----------------------------------------------------------- */

static int put_kv_str(struct buf *o, const char *k, const char *v, bool comma)
{
    int r = buf_printf(o, "%s\"%s\":", comma ? "," : "", k);
    return r < 0 ? r : v ? json_escape_str(o, v) : buf_puts(o, "null");
}

static int put_time(struct buf *o, const char *k, uint64_t realtime)
{
    if (!realtime) {
        return buf_printf(o, ",\"%s\":null", k);
    }
    char t[32];
    time_format_rfc3339_ms(realtime, t);
    return buf_printf(o, ",\"%s\":\"%s\"", k, t);
}

static int status_json(struct engine *e, struct buf *o)
{
    int r = buf_puts(o, "{\"ok\":true");
    r = r < 0 ? r : put_kv_str(o, "status", engine_status(e), true);
    r = r < 0 ? r : buf_printf(o, ",\"uptime_s\":%.3f,\"endpoints\":[", engine_uptime(e) / 1e6);
    size_t n = engine_n_endpoints(e);
    bool first = true;
    for (size_t i = 0; i < n && r >= 0; i++) {
        struct engine_ep_info in;
        if (!engine_endpoint_info(e, i, &in)) {
            continue;
        }
        r = buf_puts(o, first ? "{" : ",{");
        first = false;
        r = r < 0 ? r : put_kv_str(o, "name", in.name, false);
        r = r < 0 ? r : put_kv_str(o, "state", in.state, true);
        r = r < 0 ? r : buf_printf(o, ",\"running\":%s", in.running ? "true" : "false");
        if (r >= 0 && in.last_status) {
            r = buf_printf(o, ",\"last_status\":%ld", in.last_status);
        } else if (r >= 0) {
            r = buf_puts(o, ",\"last_status\":null");
        }
        r = r < 0 ? r : put_kv_str(o, "last_error", in.last_error, true);
        r = r < 0 ? r
                  : put_kv_str(o, "last_message", in.last_message[0] ? in.last_message : NULL,
                               true);
        if (r >= 0 && in.last_fetch) {
            r = buf_printf(o, ",\"last_duration_ms\":%.3f", in.last_duration / 1e3);
        } else if (r >= 0) {
            r = buf_puts(o, ",\"last_duration_ms\":null");
        }
        r = r < 0 ? r : put_time(o, "last_fetch", in.last_fetch);
        r = r < 0 ? r : put_time(o, "last_ok", in.last_ok);
        if (r >= 0 && in.next_in >= 0) {
            r = buf_printf(o, ",\"next_in_s\":%.3f", (double)in.next_in / 1e6);
        } else if (r >= 0) {
            r = buf_puts(o, ",\"next_in_s\":null");
        }
        if (r >= 0 && in.checkpoint) {
            r = buf_printf(o, ",\"checkpoint\":%s", in.checkpoint); /* JSON text */
        }
        r = r < 0 ? r : in.last_success ? put_time(o, "last_success", in.last_success) : 0;
        r = r < 0 ? r
                  : buf_printf(o,
                               ",\"consecutive_failures\":%u,\"fetches\":%llu,\"failures\":%llu,"
                               "\"skipped\":%llu,\"records\":%llu}",
                               in.consecutive_failures, (unsigned long long)in.fetches,
                               (unsigned long long)in.failures, (unsigned long long)in.skipped,
                               (unsigned long long)in.records);
    }
    r = r < 0 ? r : buf_puts(o, "],\"sinks\":[");
    const struct sinkset *set = engine_sinks(e);
    first = true;
    for (size_t i = 0; i < set->n && r >= 0; i++) {
        const struct sink *s = set->sinks[i];
        if (!s) {
            continue;
        }
        const struct sink_counters *c = &s->c;
        r = buf_puts(o, first ? "{" : ",{");
        first = false;
        r = r < 0 ? r : put_kv_str(o, "name", s->name, false);
        r = r < 0 ? r : put_kv_str(o, "type", s->cfg->type->name, true);
        r = r < 0 ? r
                  : buf_printf(o,
                               ",\"produced\":%llu,\"delivered\":%llu,\"queued\":%llu,"
                               "\"dropped\":%llu,\"overflow\":%llu,\"failed\":%llu,"
                               "\"abandoned\":%llu,\"retried\":%llu,\"sync_errors\":%llu",
                               (unsigned long long)c->produced, (unsigned long long)c->delivered,
                               (unsigned long long)s->queued, (unsigned long long)c->dropped,
                               (unsigned long long)c->overflow, (unsigned long long)c->failed,
                               (unsigned long long)c->abandoned, (unsigned long long)c->retried,
                               (unsigned long long)c->sync_errors);
        r = r < 0 ? r : put_kv_str(o, "problem", s->problem[0] ? s->problem : NULL, true);
        r = r < 0 ? r : buf_putc(o, '}');
    }
    return r < 0 ? r : buf_puts(o, "]}\n");
}

__attribute__((format(printf, 2, 3))) static int error_json(struct buf *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int r = buf_puts(o, "{\"ok\":false,\"error\":");
    r = r < 0 ? r : json_escape_str(o, msg);
    return r < 0 ? r : buf_puts(o, "}\n");
}

int control_handle(struct engine *e, const char *line, size_t len, struct buf *out)
{
    size_t before = out->len;
    cJSON *req = cJSON_ParseWithLength(line, len);
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(req, "endpoint");
    int r;
    if (!cJSON_IsObject(req) || !cJSON_IsString(cmd)) {
        r = error_json(out, "%s", "expected a JSON object with \"cmd\" on one line, e.g. "
                                  "{\"cmd\":\"status\"}");
    } else if (strcmp(cmd->valuestring, "status") == 0) {
        r = status_json(e, out);
    } else if (strcmp(cmd->valuestring, "metrics") == 0) {
        struct buf text = {0};
        r = metrics_render(e, &text);
        r = r < 0 ? r : buf_puts(out, "{\"ok\":true,\"text\":");
        r = r < 0 ? r : json_escape(out, text.data ? text.data : "", text.len);
        r = r < 0 ? r : buf_puts(out, "}\n");
        buf_done(&text);
    } else if (strcmp(cmd->valuestring, "fetch") == 0 || strcmp(cmd->valuestring, "pause") == 0 ||
               strcmp(cmd->valuestring, "resume") == 0) {
        enum engine_ctl op = cmd->valuestring[0] == 'f'   ? ENGINE_CTL_FETCH
                             : cmd->valuestring[0] == 'p' ? ENGINE_CTL_PAUSE
                                                          : ENGINE_CTL_RESUME;
        if (!cJSON_IsString(ep)) {
            r = error_json(out, "\"%s\" needs \"endpoint\": the name of an endpoint",
                           cmd->valuestring);
        } else {
            int c = engine_control(e, ep->valuestring, op);
            switch (c) {
            case 0:
                r = buf_puts(out, "{\"ok\":true}\n");
                break;
            case -ENOENT:
                r = error_json(out, "no endpoint '%s' is run by this fetchd (see fetchd status)",
                               ep->valuestring);
                break;
            case -EBUSY:
                r = error_json(out, "endpoint '%s' is being fetched right now", ep->valuestring);
                break;
            case -EALREADY:
                r = error_json(out, "endpoint '%s' is %s", ep->valuestring,
                               op == ENGINE_CTL_PAUSE ? "already paused" : "not paused");
                break;
            default:
                r = error_json(out, "%s", "fetchd is stopping");
                break;
            }
        }
    } else {
        r = error_json(out, "unknown command \"%.64s\" (status, fetch, pause, resume, metrics)",
                       cmd->valuestring);
    }
    cJSON_Delete(req);
    if (r < 0) {
        out->len = before;
        r = buf_puts(out, "{\"ok\":false,\"error\":\"out of memory\"}\n");
    }
    return r < 0 ? -ENOMEM : 0;
}

/* ---- connections -------------------------------------------------------- */

static void client_free(struct client *c)
{
    struct control *ctl = c->ctl;
    for (struct client **p = &ctl->clients; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    ctl->n_clients--;
    ev_io_stop(ctl->loop, &c->rio);
    ev_io_stop(ctl->loop, &c->wio);
    close(c->fd);
    buf_done(&c->in);
    buf_done(&c->out);
    free(c);
    if (ctl->n_clients < CONTROL_MAX_CLIENTS && !ev_is_active(&ctl->accept_io) &&
        !ev_is_active(&ctl->accept_pause)) {
        ev_io_start(ctl->loop, &ctl->accept_io);
    }
}

/* Writes what it can; false if the client is gone (freed). */
static bool client_flush(struct client *c)
{
    while (c->out.len) {
        ssize_t w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (w > 0) {
            buf_consume(&c->out, (size_t)w);
            continue;
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->ctl->loop, &c->wio);
            ev_io_stop(c->ctl->loop, &c->rio); /* no new requests until it reads */
            return true;
        }
        client_free(c); /* EPIPE and the like: the peer left */
        return false;
    }
    buf_shrink(&c->out, 64 * 1024);
    ev_io_stop(c->ctl->loop, &c->wio);
    if (c->closing) {
        client_free(c);
        return false;
    }
    ev_io_start(c->ctl->loop, &c->rio);
    return true;
}

static void client_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    client_flush(w->data);
}

static void client_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct client *c = w->data;
    (void)loop;
    (void)revents;
    if (buf_reserve(&c->in, 4096) < 0) {
        client_free(c);
        return;
    }
    ssize_t n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        /* the peer is done sending: answer what is left, then close */
        c->closing = true;
        ev_io_stop(c->ctl->loop, &c->rio);
        client_flush(c);
        return;
    }
    c->in.len += (size_t)n;
    size_t start = 0;
    char *nl;
    while ((nl = memchr(c->in.data + start, '\n', c->in.len - start))) {
        size_t l = (size_t)(nl - (c->in.data + start));
        if (c->out.len < CONTROL_MAX_OUT) {
            (void)control_handle(c->ctl->engine, c->in.data + start, l, &c->out);
        }
        start += l + 1;
    }
    buf_consume(&c->in, start);
    if (c->in.len > CONTROL_MAX_LINE) {
        (void)error_json(&c->out, "%s", "request line longer than 64 KiB");
        c->closing = true;
        ev_io_stop(c->ctl->loop, &c->rio);
    }
    if (c->out.len) {
        client_flush(c);
    }
}

static bool peer_allowed(int fd)
{
    struct ucred cr;
    socklen_t l = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0) {
        return false;
    }
    return cr.uid == 0 || cr.uid == geteuid();
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct control *ctl = w->data;
    (void)revents;
    for (;;) {
        if (ctl->n_clients >= CONTROL_MAX_CLIENTS) {
            ev_io_stop(loop, &ctl->accept_io); /* until one leaves */
            return;
        }
        int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* the pending connection would make this callback spin */
                log_warning("control socket: cannot accept: %s; trying again in 1 s",
                            strerror(errno));
                ev_io_stop(loop, &ctl->accept_io);
                ev_timer_set(&ctl->accept_pause, 1., 0.);
                ev_timer_start(loop, &ctl->accept_pause);
            }
            return; /* EAGAIN, ECONNABORTED, EINTR: later */
        }
        if (!peer_allowed(fd)) {
            static const char no[] =
                "{\"ok\":false,\"error\":\"permission denied: only root and fetchd's user\"}\n";
            (void)!send(fd, no, sizeof(no) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
            continue;
        }
        struct client *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->ctl = ctl;
        c->fd = fd;
        c->in.max = CONTROL_MAX_LINE + 4096;
        ev_io_init(&c->rio, client_read_cb, fd, EV_READ);
        ev_io_init(&c->wio, client_write_cb, fd, EV_WRITE);
        c->rio.data = c->wio.data = c;
        c->next = ctl->clients;
        ctl->clients = c;
        ctl->n_clients++;
        ev_io_start(loop, &c->rio);
    }
}

static void accept_pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct control *ctl = w->data;
    (void)revents;
    if (ctl->n_clients < CONTROL_MAX_CLIENTS) {
        ev_io_start(loop, &ctl->accept_io);
    }
}

/* ---- the socket --------------------------------------------------------- */

int control_open(struct control **ret, struct engine *e, const char *path, char *err,
                 size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "control socket path too long (at most %zu bytes): %s",
                 sizeof(sa.sun_path) - 1, path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int r = -errno;
        snprintf(err, errlen, "control socket: %s", strerror(errno));
        return r;
    }
    /* a socket file left by a fetchd that is gone is replaced; one that
     * answers belongs to a running fetchd */
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "control socket %s: exists and is not a socket", path);
            close(fd);
            return -EEXIST;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        if (probe >= 0) {
            close(probe);
        }
        if (live) {
            snprintf(err, errlen, "control socket %s: another fetchd is listening there", path);
            close(fd);
            return -EADDRINUSE;
        }
        unlink(path);
    }
    mode_t old = umask(0177); /* srw------- */
    int b = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (b < 0 || listen(fd, CONTROL_MAX_CLIENTS) < 0) {
        int r = -errno;
        snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
        close(fd);
        return r;
    }
    struct control *ctl = calloc(1, sizeof(*ctl));
    char *p = strdup(path);
    if (!ctl || !p) {
        free(ctl);
        free(p);
        close(fd);
        unlink(path);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ctl->engine = e;
    ctl->loop = engine_loop(e);
    ctl->fd = fd;
    ctl->path = p;
    ev_io_init(&ctl->accept_io, accept_cb, fd, EV_READ);
    ctl->accept_io.data = ctl;
    ev_timer_init(&ctl->accept_pause, accept_pause_cb, 0., 0.);
    ctl->accept_pause.data = ctl;
    ev_io_start(ctl->loop, &ctl->accept_io);
    *ret = ctl;
    return 0;
}

struct control *control_close(struct control *ctl)
{
    if (!ctl) {
        return NULL;
    }
    while (ctl->clients) {
        client_free(ctl->clients);
    }
    ev_io_stop(ctl->loop, &ctl->accept_io);
    ev_timer_stop(ctl->loop, &ctl->accept_pause);
    close(ctl->fd);
    unlink(ctl->path);
    free(ctl->path);
    free(ctl);
    return NULL;
}
