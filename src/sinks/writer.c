/* writer.c - whole-line output of a sink's queue (see writer.h). */
#include "sinks/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "sink.h"

/* ev_io callback: the pipe/socket is writable again. */
static void writer_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct writer *w = io->data;
    (void)revents;
    ev_io_stop(loop, io);
    sink_ready(w->s);
}

/* fds shared by several writers (stdout, when a reload replaces a stdout
 * sink: the new one opens before the old one closes): O_NONBLOCK is set by
 * the first and cleared by the last */
#define WRITER_SHARED_FDS 3
static unsigned shared_users[WRITER_SHARED_FDS];
static bool shared_we_set[WRITER_SHARED_FDS];

void writer_init(struct writer *w, struct sink *s, int fd)
{
    memset(w, 0, sizeof(*w));
    w->s = s;
    w->fd = fd;
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

/* After a short write to a regular file: cut the partial record that
 * reached the file, so the file ends with a whole record. */
static void writer_repair(struct writer *w, size_t partial)
{
    struct stat st;
    /* the offset is just past our partial bytes (with or without O_APPEND) */
    off_t end = lseek(w->fd, 0, SEEK_CUR);
    if (!partial || end < (off_t)partial || fstat(w->fd, &st) < 0) {
        return;
    }
    if (st.st_size != end) {
        /* another process appended after our partial record: cutting
         * would cut its data */
        log_sink(LOG_ERR, w->s->name,
                 "cannot remove a partial record: the file grew after it (another writer?)");
        return;
    }
    if (ftruncate(w->fd, end - (off_t)partial) < 0) {
        log_sink(LOG_ERR, w->s->name, "cannot remove a partial record after a short write: %s",
                 strerror(errno));
        return;
    }
    /* without O_APPEND (stdout redirected to a file) the next write must
     * not leave a hole */
    (void)lseek(w->fd, end - (off_t)partial, SEEK_SET);
}

/* One writev() of the queue's head. Returns bytes written or -errno. */
static ssize_t writer_writev(struct writer *w, size_t *nrec)
{
    struct iovec iov[WRITER_IOV];
    int n = 0;
    size_t off = w->off, total = 0;
    for (struct sink_rec *r = sink_head(w->s); r && n < WRITER_IOV; r = r->next) {
        size_t len = r->len - off;
        /* a pipe takes a write of at most PIPE_BUF bytes whole or not at
         * all (pipe(7)); a longer one may end anywhere when the pipe fills.
         * Whole records up to PIPE_BUF per write, so that a reader that
         * stops reading never holds part of one (only a record longer than
         * PIPE_BUF, written alone, can be cut) */
        if (!w->regular && n > 0 && total + len > PIPE_BUF) {
            break;
        }
        iov[n].iov_base = r->line + off;
        iov[n].iov_len = len;
        total += len;
        off = 0;
        n++;
    }
    *nrec = (size_t)n;
    if (!n) {
        return 0;
    }
    for (;;) {
        ssize_t k = writev(w->fd, iov, n);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        return k < 0 ? -errno : k;
    }
}

int writer_deliver(struct writer *w, bool ack, size_t *unacked)
{
    struct sink *s = w->s;
    size_t nrec;
    if (unacked) {
        *unacked = 0;
    }
    ssize_t k = w->broken ? -EPIPE : writer_writev(w, &nrec);
    if (k == -EAGAIN || k == -EWOULDBLOCK) {
        sink_wait(s, w->off ? 1 : 0);
        ev_io_start(s->loop, &w->io);
        return 0;
    }
    if (k == -EPIPE && w->fd == STDOUT_FILENO) {
        /* the reader of standard output is gone and cannot come back */
        w->broken = true;
    }
    if (w->broken) {
        w->off = 0;
        sink_fail(s, s->queued, -EPIPE, "the reader of standard output is gone");
        return -EPIPE;
    }
    if (k < 0) {
        if (w->off) {
            /* a record already partly in the pipe cannot be recalled */
            w->off = 0;
            sink_fail(s, 1, (int)k, "a record was cut off by a write error");
        }
        sink_retry(s, 0, (int)k, "write failed");
        return (int)k;
    }
    /* count the records written completely */
    size_t done = 0, bytes = (size_t)k;
    struct sink_rec *r = sink_head(s);
    size_t off = w->off;
    while (r && bytes >= r->len - off) {
        bytes -= r->len - off;
        off = 0;
        done++;
        r = r->next;
    }
    int short_err = 0;
    if (bytes && w->regular) {
        /* short write: the file system filled up in the middle of a record.
         * Writing the rest of it tells why (ENOSPC, EDQUOT, EFBIG); then the
         * part that reached the file is cut, so that it ends with a whole
         * record */
        ssize_t k2;
        do {
            k2 = write(w->fd, r->line + bytes, r->len - bytes);
        } while (k2 < 0 && errno == EINTR);
        short_err = k2 < 0 ? -errno : -ENOSPC;
        writer_repair(w, bytes + (k2 > 0 ? (size_t)k2 : 0));
        w->off = 0;
    } else {
        w->off = done ? bytes : w->off + bytes;
    }
    w->written += done;
    if (ack || !w->regular) {
        sink_ack(s, done);
    } else if (unacked) {
        *unacked = done;
    }
    if (short_err && !done) {
        /* nothing whole went out: back off like any write error */
        sink_retry(s, 0, short_err, "write failed");
        return short_err;
    }
    if (done < nrec && bytes && !w->regular) {
        /* the pipe took part of a record: wait until it takes more */
        sink_wait(s, 1);
        ev_io_start(s->loop, &w->io);
    }
    return 0;
}

void writer_finish(struct writer *w, usec_t deadline)
{
    struct sink *s = w->s;
    ev_io_stop(s->loop, &w->io);
    while (sink_head(s)) {
        uint64_t before = s->queued;
        s->state = SINK_READY;
        (void)writer_deliver(w, true, NULL);
        ev_io_stop(s->loop, &w->io);
        ev_timer_stop(s->loop, &s->retry_timer);
        if (s->queued == before) {
            usec_t now = now_usec(CLOCK_MONOTONIC);
            if (now >= deadline || w->regular) {
                break; /* a regular file that fails now fails again */
            }
            struct pollfd pfd = {.fd = w->fd, .events = POLLOUT};
            int ms = (int)((deadline - now) / 1000) + 1;
            if (poll(&pfd, 1, ms) <= 0 || (pfd.revents & (POLLERR | POLLHUP))) {
                break;
            }
        }
    }
    if (w->off) {
        /* the reader got half a record; it is counted lost, and a newline
         * ends the torn line so the next reader sees whole lines */
        w->off = 0;
        sink_fail(s, 1, 0, "a record was cut off at exit");
        ssize_t k = write(w->fd, "\n", 1);
        (void)k;
    }
}

void writer_done(struct writer *w)
{
    if (w->s && w->s->loop) {
        ev_io_stop(w->s->loop, &w->io);
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
}
