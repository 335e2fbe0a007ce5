/* bad-nosymbol.c - a shared object that is not a fetchd sink: it exports
 * no fetchd_sink_definition (the loader must say so). */
#include <fetchd/sink.h>

FETCHD_SINK_EXPORT const struct fetchd_sink_def fetchd_sink_definitio = {
    .abi = FETCHD_SINK_ABI,
    .size = sizeof(struct fetchd_sink_def),
    .name = "misspelt",
};
