/* buf.c - growable byte buffer with an optional hard cap. */
#include "util/buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int buf_reserve(struct buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1) {
        return -ENOMEM;
    }
    size_t need = b->len + extra + 1;
    if (b->max && b->len + extra > b->max) {
        return -E2BIG;
    }
    if (need <= b->cap) {
        return 0;
    }
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need) {
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    }
    char *n = realloc(b->data, ncap);
    if (!n) {
        return -ENOMEM;
    }
    b->data = n;
    b->cap = ncap;
    return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
    int r = buf_reserve(b, len);
    if (r < 0) {
        return r;
    }
    if (len) {
        memcpy(b->data + b->len, data, len);
    }
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int buf_putc(struct buf *b, char c)
{
    if (b->len + 1 < b->cap && (!b->max || b->len < b->max)) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
        return 0;
    }
    return buf_append(b, &c, 1);
}

int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    size_t avail = b->cap > b->len ? b->cap - b->len : 0;
    int n = vsnprintf(avail ? b->data + b->len : NULL, avail, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return -EINVAL;
    }
    if ((size_t)n < avail) {
        if (b->max && b->len + (size_t)n > b->max) {
            b->data[b->len] = '\0';
            return -E2BIG;
        }
        b->len += (size_t)n;
        return 0;
    }
    int r = buf_reserve(b, (size_t)n);
    if (r < 0) {
        if (b->data) {
            b->data[b->len] = '\0';
        }
        return r;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data) {
        b->data[0] = '\0';
    }
}

void buf_shrink(struct buf *b, size_t keep)
{
    if (b->cap > keep && b->len == 0) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
}

void buf_done(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *buf_steal(struct buf *b)
{
    if (!b->data && buf_reserve(b, 0) < 0) {
        return NULL;
    }
    if (!b->data) {
        return NULL;
    }
    b->data[b->len] = '\0';
    char *d = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}
