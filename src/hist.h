/* hist.h - a small log-linear histogram of microsecond values.
 *
 * 8 sub-buckets per power of two (worst-case error 12.5%), fixed size, no
 * allocation: cheap enough to record every loop iteration and timer firing.
 */
#pragma once

#include <stdint.h>

#define HIST_BUCKETS (64 * 8)

struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t sum;
    uint32_t buckets[HIST_BUCKETS];
};

void hist_add(struct hist *h, uint64_t v);
/* The value at quantile q (0..1): an upper bound of the bucket it falls in,
 * never above the maximum seen. 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);
