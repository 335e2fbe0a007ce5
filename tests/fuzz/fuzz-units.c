/* fuzz-units.c - durations and sizes: units_parse_duration(),
 * units_parse_size() and the format functions.
 *
 * Input: the whole input as one string for both parsers; its first 8 bytes
 * also as a number for the formatters.
 * Properties:
 *  - a parser returns 0, -EINVAL or -ERANGE, and leaves *ret alone on error;
 *  - a parsed duration is below USEC_INFINITY (the parser's documented
 *    maximum is USEC_INFINITY - 1);
 *  - format(parse(s)) parses back to the same value, and so does
 *    format(n) for any n the parser can return;
 *  - formatted text is short, plain ASCII, and has no sign or spaces.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "units.h"

/* Big enough for every value: "213503982334d..." is < 64 bytes. */
#define FMT_LEN 128

static void check_text(const char *t)
{
    FUZZ_CHECK(t[0] != '\0');
    for (const char *c = t; *c; c++) {
        FUZZ_CHECK((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
                   (*c >= 'A' && *c <= 'Z'));
    }
    FUZZ_CHECK(strlen(t) < 64);
}

static void duration_round_trip(usec_t u)
{
    char buf[FMT_LEN];
    units_format_duration(u, buf, sizeof(buf));
    check_text(buf);
    usec_t back = 42;
    int r = units_parse_duration(buf, &back);
    if (u == USEC_INFINITY) {
        /* not a value the parser returns: "infinity" has no text form */
        FUZZ_CHECK(r == -ERANGE && back == 42);
        return;
    }
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(back == u);
}

static void size_round_trip(uint64_t n)
{
    char buf[FMT_LEN];
    units_format_size(n, buf, sizeof(buf));
    check_text(buf);
    uint64_t back = 42;
    FUZZ_CHECK(units_parse_size(buf, &back) == 0);
    FUZZ_CHECK(back == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) {
        return 0;
    }
    char *s = fuzz_cstr(data, size);
    if (!s) {
        return 0;
    }

    usec_t u = 7;
    int r = units_parse_duration(s, &u);
    FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
    if (r == 0) {
        FUZZ_CHECK(u != USEC_INFINITY);
        FUZZ_CHECK(*s != '\0');
        duration_round_trip(u);
    } else {
        FUZZ_CHECK(u == 7);
    }

    uint64_t n = 7;
    r = units_parse_size(s, &n);
    FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
    if (r == 0) {
        size_round_trip(n);
    } else {
        FUZZ_CHECK(n == 7);
    }

    if (size >= 8) {
        uint64_t v;
        memcpy(&v, data, sizeof(v));
        duration_round_trip(v);
        size_round_trip(v);
        /* small values are where the unit choice happens */
        duration_round_trip(v % (3 * 86400 * USEC_PER_SEC));
        size_round_trip(v % (UINT64_C(1) << 42));
    }
    free(s);
    return 0;
}
