/* strmap.c - open-addressing (linear probing) string map. */
#include "util/strmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct strmap_slot {
    const char *key;
    void *value;
    uint64_t hash;
};

uint64_t strmap_hash(const char *s)
{
    /* FNV-1a, 64 bit: simple, stable across runs and machines (the
     * scheduler's deterministic splay relies on that). */
    uint64_t h = UINT64_C(14695981039346656037);
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static struct strmap_slot *strmap_find(const struct strmap *m, const char *key, uint64_t h)
{
    size_t mask = m->nslots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct strmap_slot *s = &m->slots[i];
        if (!s->key || (s->hash == h && strcmp(s->key, key) == 0)) {
            return s;
        }
    }
}

static int strmap_grow(struct strmap *m)
{
    size_t n = m->nslots ? m->nslots * 2 : 16;
    struct strmap_slot *slots = calloc(n, sizeof(*slots));
    if (!slots) {
        return -ENOMEM;
    }
    struct strmap old = *m;
    m->slots = slots;
    m->nslots = n;
    for (size_t i = 0; i < old.nslots; i++) {
        if (old.slots[i].key) {
            *strmap_find(m, old.slots[i].key, old.slots[i].hash) = old.slots[i];
        }
    }
    free(old.slots);
    return 0;
}

int strmap_put(struct strmap *m, const char *key, void *value, void **ret_old)
{
    if ((m->count + 1) * 4 > m->nslots * 3) {
        int r = strmap_grow(m);
        if (r < 0) {
            return r;
        }
    }
    uint64_t h = strmap_hash(key);
    struct strmap_slot *s = strmap_find(m, key, h);
    if (s->key) {
        if (ret_old) {
            *ret_old = s->value;
        }
        return 1;
    }
    s->key = key;
    s->value = value;
    s->hash = h;
    m->count++;
    return 0;
}

int strmap_set(struct strmap *m, const char *key, void *value)
{
    if ((m->count + 1) * 4 > m->nslots * 3) {
        int r = strmap_grow(m);
        if (r < 0) {
            return r;
        }
    }
    uint64_t h = strmap_hash(key);
    struct strmap_slot *s = strmap_find(m, key, h);
    if (!s->key) {
        m->count++;
    }
    s->key = key;
    s->value = value;
    s->hash = h;
    return 0;
}

void *strmap_get(const struct strmap *m, const char *key)
{
    if (!m->nslots) {
        return NULL;
    }
    struct strmap_slot *s = strmap_find(m, key, strmap_hash(key));
    return s->key ? s->value : NULL;
}

void strmap_done(struct strmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->nslots = m->count = 0;
}
