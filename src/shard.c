/* shard.c - rendezvous hashing of endpoint names over N instances. */
#include "shard.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SHARD_MAX 1024

static uint64_t shard_mix(uint64_t x)
{
    /* the splitmix64 finaliser: every input bit affects every output bit */
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

static uint64_t shard_name_hash(const char *name)
{
    uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a 64 */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h = (h ^ *p) * UINT64_C(1099511628211);
    }
    return h;
}

unsigned shard_owner(const char *name, unsigned n)
{
    if (n <= 1) {
        return 1;
    }
    uint64_t h = shard_name_hash(name);
    unsigned best = 1;
    uint64_t best_w = 0;
    for (unsigned k = 1; k <= n; k++) {
        /* the weight of (name, k): independent across k through the mixer */
        uint64_t w = shard_mix(h ^ shard_mix(UINT64_C(0x9e3779b97f4a7c15) * k));
        if (k == 1 || w > best_w) {
            best_w = w;
            best = k;
        }
    }
    return best;
}

bool shard_owns(const struct shard *sh, const char *name)
{
    return !sh || sh->n <= 1 || shard_owner(name, sh->n) == sh->k;
}

static int shard_number(const char *s, size_t len, unsigned *ret)
{
    if (len == 0 || len > 4) {
        return -EINVAL;
    }
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -EINVAL;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *ret = v;
    return 0;
}

int shard_parse(const char *s, struct shard *ret)
{
    const char *slash = strchr(s, '/');
    struct shard sh;
    if (!slash || shard_number(s, (size_t)(slash - s), &sh.k) < 0 ||
        shard_number(slash + 1, strlen(slash + 1), &sh.n) < 0 || sh.n < 1 || sh.n > SHARD_MAX ||
        sh.k < 1 || sh.k > sh.n) {
        return -EINVAL;
    }
    *ret = sh;
    return 0;
}
