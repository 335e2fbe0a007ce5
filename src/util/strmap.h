/* strmap.h - open-addressing hash map from borrowed C strings to pointers.
 *
 * Keys are not copied: they must outlive the map (they normally live in the
 * object the value points to). Used for endpoint and sink names, duplicate
 * detection while loading config, and per-host counters.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct strmap {
    struct strmap_slot *slots; /* owned */
    size_t nslots;             /* power of two, or 0 */
    size_t count;
};

uint64_t strmap_hash(const char *s);

/* Insert key -> value. If the key exists, returns 1 and stores the existing
 * value in *ret_old (when non-NULL) without changing the map; returns 0 when
 * inserted, -ENOMEM on allocation failure. */
int strmap_put(struct strmap *m, const char *key, void *value, void **ret_old);
/* Insert or replace. Returns 0 or -ENOMEM. */
int strmap_set(struct strmap *m, const char *key, void *value);
void *strmap_get(const struct strmap *m, const char *key);
void strmap_done(struct strmap *m);
