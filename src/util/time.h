/* time.h - the one place where time units are converted.
 *
 * All durations inside fetchd are usec_t (microseconds), as in systemd. libev
 * wants seconds as double (ev_tstamp), libcurl wants milliseconds (long).
 */
#pragma once

#include <stdint.h>
#include <time.h>

typedef uint64_t usec_t;

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_INFINITY UINT64_MAX

static inline usec_t now_usec(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (usec_t)ts.tv_sec * USEC_PER_SEC + (usec_t)ts.tv_nsec / 1000;
}

static inline double usec_to_ev(usec_t u)
{
    return (double)u / 1e6;
}

static inline long usec_to_ms_long(usec_t u)
{
    usec_t ms = u / USEC_PER_MSEC + (u % USEC_PER_MSEC != 0); /* round up, no overflow */
    return ms > (usec_t)0x7fffffff ? 0x7fffffff : (long)ms;
}

/* Writes "2026-11-21T20:41:29.123Z" (24 chars + NUL) into out[32]. */
void time_format_rfc3339_ms(usec_t realtime, char out[32]);
