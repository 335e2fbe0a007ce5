/* units.h - durations ("250ms", "30s", "1h30m") and sizes ("512KiB", "8MiB").
 *
 * Non-logging: parsers return 0, -EINVAL (syntax) or -ERANGE (overflow).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "util/time.h"

/* A duration is one or more <number><unit> groups, unit one of us, ms, s, m,
 * h, d; the number may have a fraction ("1.5s"). No sign, no spaces. */
int units_parse_duration(const char *s, usec_t *ret);
/* A size is <integer>[<unit>] with unit B, KB, MB, GB (powers of 1000) or
 * KiB, MiB, GiB, TiB (powers of 1024); "k" is accepted for "K". */
int units_parse_size(const char *s, uint64_t *ret);

/* Shortest exact form: "250ms", "30s", "1h30m", "0s". */
char *units_format_duration(usec_t u, char *buf, size_t len);
/* "8MiB", "1500B", "1.5KiB" is never produced: inexact sizes print in bytes. */
char *units_format_size(uint64_t n, char *buf, size_t len);
