/* arena.c - bump allocator in 64 KiB blocks (bigger requests get their own). */
#include "util/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK (64 * 1024)

struct arena_block {
    struct arena_block *next;
    size_t size;
    max_align_t data[];
};

void *arena_alloc(struct arena *a, size_t size)
{
    if (size > SIZE_MAX / 2) {
        return NULL; /* also keeps the rounding and the block header from wrapping */
    }
    size = (size + 7) & ~(size_t)7;
    if (!a->head || a->head->size - a->used < size) {
        size_t bs = size > ARENA_BLOCK / 4 ? size : ARENA_BLOCK;
        struct arena_block *b = malloc(sizeof(*b) + bs);
        if (!b) {
            return NULL;
        }
        b->size = bs;
        a->total += bs;
        if (a->head && bs != ARENA_BLOCK) {
            /* a big one-off block: keep filling the current head */
            b->next = a->head->next;
            a->head->next = b;
            memset(b->data, 0, size);
            return b->data;
        }
        b->next = a->head;
        a->head = b;
        a->used = 0;
    }
    void *p = (char *)a->head->data + a->used;
    a->used += size;
    memset(p, 0, size);
    return p;
}

void *arena_memdup(struct arena *a, const void *p, size_t n)
{
    void *d = arena_alloc(a, n ? n : 1);
    if (d && n) {
        memcpy(d, p, n);
    }
    return d;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

void arena_done(struct arena *a)
{
    struct arena_block *b = a->head;
    while (b) {
        struct arena_block *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->used = a->total = 0;
}
