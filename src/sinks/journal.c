/* journal.c - placeholder, being written. */
#include <errno.h>
#include <stdio.h>

#include "sink.h"

static const struct opt_def journal_options[] = {
    {0},
};

static int journal_open(struct sink *s, char *err, size_t errlen)
{
    (void)s;
    snprintf(err, errlen, "the journal sink is not available yet");
    return -ENOTSUP;
}

static void journal_deliver(struct sink *s)
{
    (void)s;
}

const struct sink_type sink_type_journal = {
    .name = "journal",
    .description = "journal",
    .guarantee = "none",
    .options = journal_options,
    .open = journal_open,
    .deliver = journal_deliver,
};
