/* bad-abi.c - a sink built for an ABI this fetchd does not speak (999): the
 * loader must refuse it and name both numbers. */
#include <fetchd/sink.h>

#include <errno.h>

static int bad_init(const struct fetchd_sink_host *host, void **ret_ctx)
{
    (void)host;
    (void)ret_ctx;
    return -ENOSYS;
}

static int bad_deliver(void *ctx, const struct fetchd_record *record)
{
    (void)ctx;
    (void)record;
    return -ENOSYS;
}

FETCHD_SINK_EXPORT const struct fetchd_sink_def fetchd_sink_definition = {
    .abi = 999,
    .size = sizeof(struct fetchd_sink_def),
    .name = "from-the-future",
    .init = bad_init,
    .deliver = bad_deliver,
};
