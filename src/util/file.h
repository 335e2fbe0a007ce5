/* file.h - small whole-file helpers for state files: an atomic, durable
 * replace and a bounded read. Non-logging; negative errno returns. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/buf.h"

/* Replaces path with data[0..len) atomically: a temporary file next to it
 * ("path.PID.tmp"), written, fsync'ed when durable, renamed over path, and
 * the directory fsync'ed when durable. A crash leaves the old file or the
 * new one, never a mix. Returns 0 or -errno (the temporary file is
 * removed). */
int file_replace(const char *path, const void *data, size_t len, mode_t mode, bool durable);

/* Reads a regular file of at most max bytes into out (appended, NUL
 * terminated). Returns 0, -ENOENT, -EFBIG (larger than max), -EINVAL (not
 * a regular file: never blocks on a FIFO) or another -errno. */
int file_read(const char *path, size_t max, struct buf *out);
