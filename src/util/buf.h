/* buf.h - growable byte buffer with an optional hard cap.
 *
 * A buf always keeps a NUL after its contents (so data can be used as a C
 * string when it holds text). Functions return 0 or a negative errno:
 * -ENOMEM on allocation failure, -E2BIG when the cap would be exceeded (the
 * buffer is then unchanged).
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;  /* owned; NULL until the first append */
    size_t len;  /* bytes used, excluding the trailing NUL */
    size_t cap;  /* bytes allocated */
    size_t max;  /* hard cap on len, 0 = unlimited */
};

int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_putc(struct buf *b, char c);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void buf_consume(struct buf *b, size_t n);  /* drop n bytes from the front */
void buf_reset(struct buf *b);              /* len = 0, keep memory */
void buf_shrink(struct buf *b, size_t keep); /* free memory if cap > keep */
void buf_done(struct buf *b);               /* free contents; b reusable */
char *buf_steal(struct buf *b);             /* hand out data (never NULL on success) */
