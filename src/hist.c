/* hist.c - log-linear histogram. */
#include "hist.h"

static unsigned hist_index(uint64_t v)
{
    if (v < 8) {
        return (unsigned)v;
    }
    unsigned lz = (unsigned)__builtin_clzll(v);
    unsigned msb = 63 - lz;                         /* >= 3 */
    unsigned sub = (unsigned)(v >> (msb - 3)) & 7u; /* 3 bits below the msb */
    unsigned idx = (msb - 2) * 8 + sub;
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* Largest value that falls in bucket idx. */
static uint64_t hist_upper(unsigned idx)
{
    if (idx < 8) {
        return idx;
    }
    unsigned msb = idx / 8 + 2;
    uint64_t sub = idx % 8;
    uint64_t lo = ((uint64_t)8 + sub) << (msb - 3);
    return lo + ((uint64_t)1 << (msb - 3)) - 1;
}

void hist_add(struct hist *h, uint64_t v)
{
    h->buckets[hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max) {
        h->max = v;
    }
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->count == 0) {
        return 0;
    }
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count) {
        rank = h->count - 1;
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen > rank) {
            uint64_t u = hist_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}
