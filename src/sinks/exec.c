/* exec.c - placeholder, being written. */
#include <errno.h>
#include <stdio.h>

#include "sink.h"

static const struct opt_def exec_options[] = {
    {0},
};

static int exec_open(struct sink *s, char *err, size_t errlen)
{
    (void)s;
    snprintf(err, errlen, "the exec sink is not available yet");
    return -ENOTSUP;
}

static void exec_deliver(struct sink *s)
{
    (void)s;
}

const struct sink_type sink_type_exec = {
    .name = "exec",
    .description = "exec",
    .guarantee = "none",
    .options = exec_options,
    .open = exec_open,
    .deliver = exec_deliver,
};
