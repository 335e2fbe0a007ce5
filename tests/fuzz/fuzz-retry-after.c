/* fuzz-retry-after.c - http_retry_after_parse() (src/xfer.h), the Retry-After
 * header value: delta-seconds or an HTTP-date (RFC 9110 10.2.3).
 *
 * Input: the header value (cut at the first NUL, as a C string from libcurl
 * would be). "now" is fixed so that a failure reproduces.
 * Properties (from the header comments of http_retry_after_parse() and
 * xfer_retry_after()):
 *  - the result is -1 (not valid) or a delay >= 0 ("clamped at 0"), never
 *    another negative value;
 *  - it is a whole number of seconds, in microseconds;
 *  - delta-seconds (digits with optional blanks around) are clamped at one
 *    year; anything else after the digits is invalid;
 *  - a date in the past gives 0; a "now" one day earlier gives a delay one
 *    day longer (unless a cap is reached), never a shorter one. A date far
 *    in the future must not overflow (UBSan reports it in fuzzing builds;
 *    elsewhere the wrapped result is negative).
 */
#include <time.h>

#include "fuzz.h"
#include "xfer.h"

#define NOW ((time_t)1767225600) /* 2026-01-01T00:00:00Z */
#define DAY_USEC ((int64_t)86400 * 1000000)
#define YEAR_USEC (366 * DAY_USEC)

static bool only_digits_and_blanks(const char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    if (!(*s >= '0' && *s <= '9')) {
        return false;
    }
    while (*s >= '0' && *s <= '9') {
        s++;
    }
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    return *s == '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1024) {
        return 0;
    }
    char *v = fuzz_cstr(data, size);
    if (!v) {
        return 0;
    }
    int64_t r = http_retry_after_parse(v, NOW);
    FUZZ_CHECK(r == -1 || r >= 0);
    if (r >= 0) {
        FUZZ_CHECK(r % 1000000 == 0);
    }
    const char *p = v;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (*p >= '0' && *p <= '9') {
        /* delta-seconds: does not depend on now, clamped at a year */
        FUZZ_CHECK((r >= 0) == only_digits_and_blanks(v));
        FUZZ_CHECK(r <= YEAR_USEC);
        FUZZ_CHECK(http_retry_after_parse(v, NOW + 1000) == r);
    } else if (r >= 0) {
        /* an HTTP-date: a day earlier "now" waits a day longer, unless the
         * date was already in the past */
        int64_t earlier = http_retry_after_parse(v, NOW - 86400);
        FUZZ_CHECK(earlier >= r && earlier - r <= DAY_USEC);
        if (r > 0 && earlier != r + DAY_USEC) {
            /* only where a cap is reached: a "now" further back changes
             * nothing any more */
            FUZZ_CHECK(http_retry_after_parse(v, NOW - 2 * 86400) == earlier);
        }
        /* far in the future the delay only shrinks to 0 */
        FUZZ_CHECK(http_retry_after_parse(v, (time_t)4102444800) <= r); /* 2100 */
    } else {
        FUZZ_CHECK(http_retry_after_parse(v, NOW - 86400) == -1);
    }
    free(v);
    return 0;
}
