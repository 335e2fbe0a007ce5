/* writer.c - buffered whole-line output (see writer.h). */
#include "sinks/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* ev_io callback: the pipe/socket is writable again. */
static void writer_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct writer *w = io->data;
    (void)revents;
    ev_io_stop(loop, io);
    (void)writer_flush(w, false);
}

/* fds shared by several writers (stdout, when a reload replaces a stdout
 * sink: the new one opens before the old one closes): O_NONBLOCK is set by
 * the first and cleared by the last */
#define WRITER_SHARED_FDS 3
static unsigned shared_users[WRITER_SHARED_FDS];
static bool shared_we_set[WRITER_SHARED_FDS];

void writer_init(struct writer *w, struct ev_loop *loop, int fd, const char *const *name,
                 uint64_t *dropped)
{
    memset(w, 0, sizeof(*w));
    w->dropped = dropped;
    w->fd = fd;
    w->loop = loop;
    w->name = name;
    w->pending.max = WRITER_MAX_PENDING;
    struct stat st;
    if (fstat(fd, &st) == 0) {
        w->regular = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
        if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
            /* A slow reader must not stall the loop: make the fd
             * non-blocking (restored in writer_done). */
            bool shared = fd >= 0 && fd < WRITER_SHARED_FDS;
            if (shared && shared_users[fd]++ > 0) {
                w->nonblock = shared_we_set[fd];
            } else {
                int fl = fcntl(fd, F_GETFL);
                if (fl >= 0 && !(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0) {
                    w->nonblock = true;
                }
                if (shared) {
                    shared_we_set[fd] = w->nonblock;
                }
            }
            w->counted = shared;
        }
    }
    ev_io_init(&w->io, writer_io_cb, fd, EV_WRITE);
    w->io.data = w;
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t c = 0;
    const char *end = p + n;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p)))) {
        c++;
        p++;
    }
    return c;
}

int writer_append(struct writer *w, const char *line, size_t len)
{
    int r = buf_append(&w->pending, line, len);
    if (r < 0) {
        (*w->dropped)++;
        if (!w->error_logged) {
            log_sink(LOG_WARNING, *w->name,
                     "output is not keeping up (%zu bytes pending), dropping records",
                     w->pending.len);
            w->error_logged = true;
        }
        return -ENOBUFS;
    }
    if (w->pending.len >= WRITER_FLUSH_AT && !ev_is_active(&w->io)) {
        (void)writer_flush(w, false);
    }
    return 0;
}

/* After a failed write on a regular file: remove a partial last line that
 * reached the file, so the file ends with a whole record. */
static void writer_repair(struct writer *w, size_t written)
{
    const char *p = w->pending.data;
    size_t whole = written;
    while (whole > 0 && p[whole - 1] != '\n') {
        whole--;
    }
    if (whole == written) {
        return;
    }
    struct stat st;
    if (fstat(w->fd, &st) == 0 && (size_t)st.st_size >= written - whole) {
        if (ftruncate(w->fd, st.st_size - (off_t)(written - whole)) < 0) {
            log_sink(LOG_ERR, *w->name, "cannot remove a partial record after a write error: %s",
                     strerror(errno));
        }
    }
}

int writer_flush(struct writer *w, bool block)
{
    size_t off = 0;
    int r = 0;
    while (off < w->pending.len) {
        ssize_t n = write(w->fd, w->pending.data + off, w->pending.len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (block) {
                struct pollfd pfd = {.fd = w->fd, .events = POLLOUT};
                if (poll(&pfd, 1, 5000) > 0) {
                    continue;
                }
                r = -ETIMEDOUT;
                break;
            }
            /* keep the rest (starts at a line boundary only if off is
             * one: a partial line stays pending and is completed later) */
            buf_consume(&w->pending, off);
            if (w->loop) {
                ev_io_start(w->loop, &w->io);
            }
            return 0;
        }
        r = n < 0 ? -errno : -EIO;
        break;
    }
    if (r < 0) {
        /* records not fully written are lost: count and report them */
        if (w->regular) {
            writer_repair(w, off);
        }
        /* on a pipe a partial line that already went out cannot be
         * recalled; it is counted as lost like the rest */
        size_t from = off;
        while (from > 0 && w->pending.data[from - 1] != '\n') {
            from--;
        }
        uint64_t lost = count_lines(w->pending.data + from, w->pending.len - from);
        *w->dropped += lost;
        if (w->last_error != r) {
            /* once per kind of failure; the count keeps going in STATUS */
            log_sink(LOG_ERR, *w->name, "write failed: %s; %llu record%s lost (further losses "
                     "are counted, not logged, until a write succeeds)",
                     strerror(-r), (unsigned long long)lost, lost == 1 ? "" : "s");
        }
        w->last_error = r;
        buf_reset(&w->pending);
        return r;
    }
    buf_reset(&w->pending);
    buf_shrink(&w->pending, 1024 * 1024);
    if (w->last_error && off > 0) {
        log_sink(LOG_NOTICE, *w->name, "writing again");
        w->last_error = 0;
    }
    w->error_logged = false;
    return 0;
}

void writer_done(struct writer *w)
{
    if (w->loop) {
        ev_io_stop(w->loop, &w->io);
    }
    bool last = true;
    if (w->counted) {
        last = --shared_users[w->fd] == 0;
    }
    if (w->nonblock && last) {
        int fl = fcntl(w->fd, F_GETFL);
        if (fl >= 0) {
            (void)fcntl(w->fd, F_SETFL, fl & ~O_NONBLOCK);
        }
    }
    buf_done(&w->pending);
}
