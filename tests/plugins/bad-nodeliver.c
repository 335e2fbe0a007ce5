/* bad-nodeliver.c - a sink of the right ABI without a deliver callback:
 * the loader must refuse it. */
#include <fetchd/sink.h>

#include <errno.h>

static int bad_init(const struct fetchd_sink_host *host, void **ret_ctx)
{
    (void)host;
    (void)ret_ctx;
    return -ENOSYS;
}

FETCHD_SINK_EXPORT const struct fetchd_sink_def fetchd_sink_definition = {
    .abi = FETCHD_SINK_ABI,
    .size = sizeof(struct fetchd_sink_def),
    .name = "incomplete",
    .init = bad_init,
};
