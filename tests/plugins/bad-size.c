/* bad-size.c - a sink whose definition does not say its size (.size left
 * 0, as a plugin written before the field existed would): the loader must
 * refuse it and say how to fix it. */
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
    .abi = FETCHD_SINK_ABI,
    .name = "sizeless",
    .init = bad_init,
    .deliver = bad_deliver,
};
