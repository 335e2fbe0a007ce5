/* writer.h - buffered, whole-line output to a file descriptor.
 *
 * Shared by the stdout and file sinks. Records are appended to a bounded
 * buffer and written out once per loop iteration (one write() carries every
 * whole line that completed in that iteration). A write never leaves a torn
 * line behind: on a regular file a failed partial write is truncated back to
 * the last complete line; on a pipe or socket (non-blocking) the unwritten
 * rest stays buffered and is sent when the fd is writable again. When the
 * buffer is full, new records are dropped and counted, never half-written.
 */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define WRITER_FLUSH_AT (64 * 1024)          /* write early when this much is pending */
#define WRITER_MAX_PENDING (16 * 1024 * 1024) /* then drop new records */

struct writer {
    int fd;
    bool regular;        /* regular file (blocking writes, truncate on error) */
    bool nonblock;       /* we set O_NONBLOCK and must restore it */
    bool counted;        /* counted as a user of a shared fd (stdout) */
    struct buf pending;  /* whole lines not yet written */
    ev_io io;            /* EV_WRITE watcher while a pipe/socket is full */
    struct ev_loop *loop;
    const char *const *name; /* the sink's name (a reload may repoint it) */
    uint64_t *dropped;   /* records lost: the owning sink's counter */
    int last_error;      /* -errno */
    bool error_logged;
};

/* Takes fd (not owned: the caller closes it). Lost records are added to
 * *dropped. */
void writer_init(struct writer *w, struct ev_loop *loop, int fd, const char *const *name,
                 uint64_t *dropped);
/* Appends one whole line. Returns 0 or -ENOBUFS (dropped, counted). */
int writer_append(struct writer *w, const char *line, size_t len);
/* Writes what is pending. block: wait for pipes to drain (exit path only).
 * Returns 0 or -errno (the failed records are dropped and counted). */
int writer_flush(struct writer *w, bool block);
void writer_done(struct writer *w);
