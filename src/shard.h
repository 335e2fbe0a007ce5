/* shard.h - which of N fetchd instances runs an endpoint: rendezvous
 * (highest random weight) hashing of the endpoint's name.
 *
 * Every instance computes the same owner from the name alone, so instances
 * sharing one config split the endpoints without talking to each other;
 * going from N to N+1 instances moves about 1/(N+1) of the endpoints (only
 * those the new instance wins), and removing one moves only its own. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct shard {
    unsigned k; /* this instance, 1..n */
    unsigned n; /* instances; 0 = no sharding */
};

/* "K/N" with 1 <= K <= N <= 1024. Returns 0 or -EINVAL. */
int shard_parse(const char *s, struct shard *ret);
/* The instance (1..n) that owns name; 1 when n <= 1. */
unsigned shard_owner(const char *name, unsigned n);
/* Whether instance sh runs name (always true without sharding). */
bool shard_owns(const struct shard *sh, const char *name);
