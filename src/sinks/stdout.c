/* stdout.c - JSON Lines to standard output.
 *
 * Delivery: at-most-once. A reader that stops reading fills a bounded buffer
 * (16 MiB), then records are dropped and counted; the loop never blocks on a
 * pipe.
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
    struct writer *w = calloc(1, sizeof(*w));
    if (!w) {
        return -ENOMEM;
    }
    writer_init(w, s->loop, STDOUT_FILENO, &s->name, &s->dropped);
    s->priv = w;
    return 0;
}

static int stdout_write(struct sink *s, const char *line, size_t len)
{
    return writer_append(s->priv, line, len);
}

static int stdout_flush(struct sink *s, bool block)
{
    struct writer *w = s->priv;
    if (!block && ev_is_active(&w->io)) {
        return 0; /* waiting for the reader */
    }
    return writer_flush(w, block);
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
    .options = stdout_options,
    .open = stdout_open,
    .write = stdout_write,
    .flush = stdout_flush,
    .close = stdout_close,
};
