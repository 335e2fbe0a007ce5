/* metrics.h - fetchd's counters in the Prometheus text exposition format
 * (0.0.4): per endpoint, per sink, and a histogram of fetch durations; and
 * a textfile for node_exporter's textfile collector, replaced atomically.
 */
#pragma once

#include <ev.h>

#include "util/buf.h"

struct engine;

/* Appends the exposition of the engine's current state to out. Returns 0
 * or -ENOMEM. */
int metrics_render(struct engine *e, struct buf *out);

/* Writes the exposition to path through a temporary file in the same
 * directory and rename(2), so a reader never sees half of it. Returns 0 or
 * -errno. */
int metrics_write_textfile(struct engine *e, const char *path);

/* Writes limits.metrics_textfile (of the current configuration, so a reload
 * can turn it on, off or move it) every limits.metrics_interval. */
struct metrics_writer {
    struct engine *engine;
    ev_timer timer;
    char *last_path;   /* owned: the file last written, removed at stop */
    int last_error;    /* logged once per distinct error */
};
void metrics_writer_start(struct metrics_writer *w, struct engine *e);
/* Writes once more (the final counters) and stops. */
void metrics_writer_stop(struct metrics_writer *w);
