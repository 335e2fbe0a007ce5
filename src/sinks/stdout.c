/* stdout.c - JSON Lines to standard output.
 *
 * Delivery: at-most-once. A reader that stops reading fills the sink's
 * queue (bounded: queue_max_records / queue_max_bytes), then the overflow
 * policy drops records, counted; the loop never blocks on a pipe.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "sink.h"
#include "sinks/writer.h"

static const struct opt_def stdout_options[] = {
    {0},
};

static int stdout_open(struct sink *s, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct writer *w = calloc(1, sizeof(*w));
    if (!w) {
        return -ENOMEM;
    }
    writer_init(w, s, STDOUT_FILENO);
    s->priv = w;
    return 0;
}

static void stdout_deliver(struct sink *s)
{
    (void)writer_deliver(s->priv, true, NULL);
}

static void stdout_finish(struct sink *s, usec_t deadline)
{
    writer_finish(s->priv, deadline);
}

static void stdout_close(struct sink *s)
{
    struct writer *w = s->priv;
    if (!w) {
        return;
    }
    writer_done(w);
    free(w);
    s->priv = NULL;
}

const struct sink_type sink_type_stdout = {
    .name = "stdout",
    .description = "JSON Lines on standard output",
    .guarantee = "at most once; a reader that does not keep up loses records to the overflow "
                 "policy, counted",
    .options = stdout_options,
    .open = stdout_open,
    .deliver = stdout_deliver,
    .finish = stdout_finish,
    .close = stdout_close,
};
