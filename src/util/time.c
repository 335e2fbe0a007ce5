/* time.c - time formatting. */
#include "util/time.h"

#include <stdio.h>

void time_format_rfc3339_ms(usec_t realtime, char out[32])
{
    time_t sec = (time_t)(realtime / USEC_PER_SEC);
    unsigned ms = (unsigned)((realtime % USEC_PER_SEC) / USEC_PER_MSEC);
    struct tm tm;
    if (!gmtime_r(&sec, &tm)) {
        snprintf(out, 32, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
             (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u,
             ms % 1000u);
}
