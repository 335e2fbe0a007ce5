/* file.c - JSON Lines appended to a file.
 *
 * Opened with O_APPEND (so logrotate's copytruncate leaves no hole and
 * concurrent appenders never overwrite each other), created 0640 if missing.
 * Records are written whole (see writer.h): a short write at a full disk is
 * truncated back to the last whole record, and write errors (ENOSPC, EROFS,
 * EIO...) keep the records queued and retry with backoff; the queue's bound
 * and overflow policy decide what is dropped, counted.
 *
 * The file is reopened on SIGHUP (logrotate's "create"), and by itself when
 * the path no longer names the open file (renamed or deleted underneath:
 * checked at most once a second while records flow).
 *
 * fsync: "never"; "interval" (default: at most every fsync_interval while
 * records were written, and at stop and reload); "always" (a record counts
 * as delivered only after the fsync that covers it succeeded). An fsync
 * error is reported as possible data loss and never retried as success:
 * after a failed fsync Linux may have dropped the dirty pages and a second
 * fsync would succeed without them (PostgreSQL's "fsyncgate").
 * Delivery: at most once, counted.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "sink.h"
#include "sinks/writer.h"

enum { FILE_OPT_PATH, FILE_OPT_FSYNC, FILE_OPT_FSYNC_INTERVAL };

static const char *const fsync_values[] = {"never", "interval", "always", NULL};

static const struct opt_def file_options[] = {
    [FILE_OPT_PATH] = {"path", OPT_PATH, true, "the file to append JSON Lines to", NULL},
    [FILE_OPT_FSYNC] = {"fsync", OPT_STRING, false,
                        "when to fsync: never, interval (default) or always", fsync_values},
    [FILE_OPT_FSYNC_INTERVAL] = {"fsync_interval", OPT_DURATION, false,
                                 "with fsync \"interval\": the longest time between fsyncs "
                                 "(default 1s)", NULL},
    {0},
};

enum file_fsync { FSYNC_NEVER, FSYNC_INTERVAL, FSYNC_ALWAYS };

#define FILE_CHECK_EVERY USEC_PER_SEC

struct file_sink {
    struct writer w;
    int fd;                 /* owned */
    bool is_reg;            /* fsync and rename checks apply */
    const char *path;       /* borrowed from the config */
    enum file_fsync policy;
    usec_t interval;
    ev_timer sync_timer;
    uint64_t unsynced;      /* records written since the last good fsync */
    usec_t check_at;        /* CLOCK_MONOTONIC: next check of the path */
    dev_t dev;
    ino_t ino;
    bool reopen_pending;    /* a reopen waits for a partial record */
    int fsync_err;          /* the last fsync error, 0 after a success */
    usec_t fsync_log_at;    /* CLOCK_MONOTONIC: next time it may be logged */
};

static int file_check(const struct sink_cfg *cfg, char *err, size_t errlen)
{
    const char *path = cfg->values[FILE_OPT_PATH].s;
    char *copy = strdup(path);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    const char *dir = dirname(copy);
    struct stat st;
    int r = 0;
    if (stat(dir, &st) < 0) {
        snprintf(err, errlen, "directory \"%s\" of \"path\" does not exist (%s); create it or fix the path",
                 dir, strerror(errno));
        r = -ENOENT;
    } else if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "\"%s\" in \"path\" is not a directory", dir);
        r = -ENOTDIR;
    } else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "\"path\" \"%s\" is a directory; name a file in it", path);
        r = -EISDIR;
    }
    free(copy);
    return r;
}

static int file_open_fd(const char *path, char *err, size_t errlen)
{
    /* O_NONBLOCK: opening a FIFO nobody reads must not block the loop
     * (ENXIO instead); it is cleared again for anything but a FIFO */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0640);
    if (fd < 0) {
        int r = -errno;
        if (errno == ENXIO) {
            snprintf(err, errlen, "cannot open \"%s\": it is a FIFO with no reader", path);
        } else {
            snprintf(err, errlen, "cannot open \"%s\" for appending: %s", path,
                     strerror(errno));
        }
        return r;
    }
    struct stat fst;
    if (fstat(fd, &fst) == 0 && !S_ISFIFO(fst.st_mode)) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0) {
            (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
        }
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "\"%s\" is a directory", path);
        return -EISDIR;
    }
    return fd;
}

static void file_settings(struct file_sink *f, const struct sink_cfg *c)
{
    f->path = c->values[FILE_OPT_PATH].s;
    f->policy = FSYNC_INTERVAL;
    if (c->values[FILE_OPT_FSYNC].set) {
        for (int i = 0; fsync_values[i]; i++) {
            if (strcmp(c->values[FILE_OPT_FSYNC].s, fsync_values[i]) == 0) {
                f->policy = (enum file_fsync)i;
            }
        }
    }
    f->interval = c->values[FILE_OPT_FSYNC_INTERVAL].set ? c->values[FILE_OPT_FSYNC_INTERVAL].u
                                                         : USEC_PER_SEC;
}

static void file_adopt(struct sink *s, struct file_sink *f, int fd)
{
    f->fd = fd;
    struct stat st;
    f->is_reg = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    f->dev = f->is_reg ? st.st_dev : 0;
    f->ino = f->is_reg ? st.st_ino : 0;
    writer_init(&f->w, s, fd);
}

/* fsync of what was written; an error means those records may be lost. */
static int file_fsync(struct sink *s, struct file_sink *f, uint64_t records)
{
    if (!f->is_reg || !records) {
        return 0;
    }
    if (fsync(f->fd) == 0) {
        f->fsync_err = 0;
        return 0;
    }
    int r = -errno;
    s->c.sync_errors++;
    usec_t now = now_usec(CLOCK_MONOTONIC);
    if (r == f->fsync_err && now < f->fsync_log_at) {
        return r; /* counted; logged at most once a minute while it repeats */
    }
    f->fsync_err = r;
    f->fsync_log_at = now + 60 * USEC_PER_SEC;
    log_sink(LOG_ERR, s->name,
             "fsync of \"%s\" failed: %s; the %llu record%s written since the last successful "
             "fsync may not be on disk (possible data loss; not retried)",
             f->path, strerror(-r), (unsigned long long)records, records == 1 ? "" : "s");
    return r;
}

static int file_sync(struct sink *s)
{
    struct file_sink *f = s->priv;
    f->unsynced += f->w.written;
    f->w.written = 0;
    uint64_t n = f->unsynced;
    f->unsynced = 0;
    ev_timer_stop(s->loop, &f->sync_timer);
    if (f->policy == FSYNC_NEVER) {
        return 0;
    }
    return file_fsync(s, f, n);
}

static void file_sync_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    (void)file_sync(w->data);
}

/* Reopens the path; the old file is synced (by policy) and closed. */
static int file_switch(struct sink *s, struct file_sink *f, const char *why)
{
    char err[512];
    int fd = file_open_fd(f->path, err, sizeof(err));
    if (fd < 0) {
        return fd;
    }
    (void)file_sync(s);
    if (f->w.off) {
        /* half a record is in the old pipe: end that line there, count the
         * record as lost, and start the new file at a record boundary */
        f->w.off = 0;
        ssize_t k = write(f->fd, "\n", 1);
        (void)k;
        sink_fail(s, 1, 0, "a record was cut off by a reopen");
    }
    writer_done(&f->w);
    if (close(f->fd) < 0) {
        log_sink(LOG_ERR, s->name, "closing the old \"%s\" failed: %s", f->path, strerror(errno));
    }
    file_adopt(s, f, fd);
    s->locked = 0;
    sink_ready(s); /* it may have waited for the old pipe's watcher */
    if (why) {
        log_sink(LOG_NOTICE, s->name, "\"%s\" %s; writing to a new file by that name", f->path,
                 why);
    }
    return 0;
}

/* Renamed or deleted underneath (writes into an unlinked file succeed and
 * go nowhere): reopen by path. Returns 0, or -errno when the path cannot be
 * opened (the records stay queued). */
static int file_check_path(struct sink *s, struct file_sink *f)
{
    usec_t now = now_usec(CLOCK_MONOTONIC);
    if (!f->is_reg || now < f->check_at) {
        return 0;
    }
    f->check_at = now + FILE_CHECK_EVERY;
    struct stat st;
    const char *why = NULL;
    if (stat(f->path, &st) < 0) {
        why = "was deleted or renamed";
    } else if (st.st_dev != f->dev || st.st_ino != f->ino) {
        why = "was replaced (renamed or rotated)";
    } else {
        return 0;
    }
    int r = file_switch(s, f, why);
    if (r < 0) {
        f->check_at = 0; /* again at the next attempt */
        char msg[300];
        snprintf(msg, sizeof(msg), "\"%s\" %s and cannot be created again", f->path, why);
        sink_retry(s, 0, r, msg);
    }
    return r;
}

static int file_open(struct sink *s, char *err, size_t errlen)
{
    struct file_sink *f = calloc(1, sizeof(*f));
    if (!f) {
        return -ENOMEM;
    }
    file_settings(f, s->cfg);
    int fd = file_open_fd(f->path, err, errlen);
    if (fd < 0) {
        free(f);
        return fd;
    }
    file_adopt(s, f, fd);
    f->check_at = now_usec(CLOCK_MONOTONIC) + FILE_CHECK_EVERY;
    ev_timer_init(&f->sync_timer, file_sync_cb, 0., 0.);
    f->sync_timer.data = s;
    s->priv = f;
    return 0;
}

static int file_reopen(struct sink *s);

static void file_deliver(struct sink *s)
{
    struct file_sink *f = s->priv;
    if (file_check_path(s, f) < 0) {
        return;
    }
    size_t unacked = 0;
    bool always = f->policy == FSYNC_ALWAYS && f->is_reg;
    (void)writer_deliver(&f->w, !always, &unacked);
    if (f->reopen_pending && !f->w.off) {
        (void)file_reopen(s); /* the partial record is complete now */
    }
    if (always) {
        f->w.written = 0;
        if (unacked) {
            int r = file_fsync(s, f, unacked);
            if (r == 0) {
                sink_ack(s, unacked);
            } else {
                sink_fail(s, unacked, r, "fsync failed, the records may not be on disk");
            }
        }
        return;
    }
    if (f->policy == FSYNC_INTERVAL && f->w.written && !ev_is_active(&f->sync_timer)) {
        ev_timer_set(&f->sync_timer, usec_to_ev(f->interval), 0.);
        ev_timer_start(s->loop, &f->sync_timer);
    }
}

static void file_finish(struct sink *s, usec_t deadline)
{
    struct file_sink *f = s->priv;
    f->check_at = 0;
    s->state = SINK_READY;
    if (file_check_path(s, f) < 0) {
        ev_timer_stop(s->loop, &s->retry_timer);
        return;
    }
    if (f->policy == FSYNC_ALWAYS && f->is_reg) {
        while (sink_head(s)) {
            uint64_t before = s->queued;
            s->state = SINK_READY;
            file_deliver(s);
            ev_timer_stop(s->loop, &s->retry_timer);
            if (s->queued == before) {
                break;
            }
        }
        return;
    }
    writer_finish(&f->w, deadline);
}

static int file_reopen(struct sink *s)
{
    struct file_sink *f = s->priv;
    file_settings(f, s->cfg); /* the config may be a new one */
    if (f->w.off) {
        /* a FIFO holds part of a record: the reader gets the rest first,
         * then the reopen happens (file_deliver) */
        f->reopen_pending = true;
        return 0;
    }
    f->reopen_pending = false;
    int r = file_switch(s, f, NULL);
    if (r < 0) {
        log_sink(LOG_ERR, s->name, "cannot reopen \"%s\": %s; still writing to the old file",
                 f->path, strerror(-r));
    }
    return r;
}

static void file_close(struct sink *s)
{
    struct file_sink *f = s->priv;
    if (!f) {
        return;
    }
    (void)file_sync(s);
    writer_done(&f->w);
    if (close(f->fd) < 0) {
        log_sink(LOG_ERR, s->name, "closing \"%s\" failed: %s", f->path, strerror(errno));
    }
    free(f);
    s->priv = NULL;
}

const struct sink_type sink_type_file = {
    .name = "file",
    .description = "JSON Lines appended to a file",
    .guarantee = "at most once, counted; with fsync \"always\" a delivered record is on disk",
    .options = file_options,
    .check = file_check,
    .open = file_open,
    .deliver = file_deliver,
    .sync = file_sync,
    .reopen = file_reopen,
    .finish = file_finish,
    .close = file_close,
};
