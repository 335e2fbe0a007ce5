/* writer.h - whole-line output of a sink's queue to a file descriptor.
 *
 * Shared by the stdout, file and exec sinks. Each deliver writes as many
 * queued records as one writev() takes (up to WRITER_IOV records) and
 * acknowledges the ones that were written completely:
 *
 * - a regular file is written with blocking writes (O_APPEND); a short
 *   write (the disk filled up in the middle of a record) is truncated back
 *   to the last whole record, and errors (ENOSPC, EROFS, EIO...) keep the
 *   records queued and retry with backoff;
 * - a pipe or socket is non-blocking; when it is full the sink waits for
 *   EV_WRITE, and a record written in part is completed first (the reader
 *   never sees two records interleaved).
 */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/time.h"

struct sink;

#define WRITER_IOV 512

struct writer {
    struct sink *s;      /* borrowed: the sink whose queue is written */
    int fd;              /* not owned */
    bool regular;        /* regular file (blocking writes, truncate on error) */
    bool nonblock;       /* we set O_NONBLOCK and must restore it */
    bool counted;        /* counted as a user of a shared fd (stdout) */
    size_t off;          /* bytes of the head record already written (pipes) */
    ev_io io;            /* EV_WRITE watcher while a pipe/socket is full */
    uint64_t written;    /* records written since the last writer_take_written() */
    bool broken;         /* stdout's reader is gone (EPIPE): records fail */
};

/* Takes fd (not owned: the caller closes it). */
void writer_init(struct writer *w, struct sink *s, int fd);
/* Writes queued records and reports them to the sink (sink_ack, sink_wait,
 * sink_retry). With ack=false, records written to a regular file are not
 * acknowledged (the caller syncs first) and their count is returned in
 * *unacked. Returns 0 or the -errno of a write error. */
int writer_deliver(struct writer *w, bool ack, size_t *unacked);
/* At exit: writes what it can until deadline (CLOCK_MONOTONIC), waiting for
 * a pipe to drain. */
void writer_finish(struct writer *w, usec_t deadline);
void writer_done(struct writer *w);
