/* http.c - placeholder, being written. */
#include <errno.h>
#include <stdio.h>

#include "sink.h"

static const struct opt_def http_options[] = {
    {0},
};

static int http_open(struct sink *s, char *err, size_t errlen)
{
    (void)s;
    snprintf(err, errlen, "the http sink is not available yet");
    return -ENOTSUP;
}

static void http_deliver(struct sink *s)
{
    (void)s;
}

const struct sink_type sink_type_http = {
    .name = "http",
    .description = "http",
    .guarantee = "none",
    .options = http_options,
    .open = http_open,
    .deliver = http_deliver,
};
