/* arena.h - bump allocator for objects that die together (a loaded config).
 *
 * 100 000 endpoints mean several hundred thousand small strings; one arena
 * saves malloc's per-allocation overhead and makes freeing a config O(blocks).
 */
#pragma once

#include <stddef.h>

struct arena {
    struct arena_block *head; /* owned */
    size_t used;              /* bytes used in head */
    size_t total;             /* bytes allocated in all blocks */
};

void *arena_alloc(struct arena *a, size_t size); /* 8-byte aligned, zeroed; NULL on OOM */
char *arena_strdup(struct arena *a, const char *s);
char *arena_strndup(struct arena *a, const char *s, size_t n);
void *arena_memdup(struct arena *a, const void *p, size_t n);
void arena_done(struct arena *a);
