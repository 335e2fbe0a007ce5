/* cleanup.h - scope-bound cleanup for locals (GNU C cleanup attribute).
 *
 * _cleanup_free_ char *s = strdup(x);   freed when s goes out of scope
 * return TAKE_PTR(s);                    hands ownership out, NULLs the local
 */
#pragma once

#include <stdlib.h>

static inline void freep(void *p)
{
    free(*(void **)p);
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)

#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _tp_ = (p);                                                                  \
        (p) = NULL;                                                                                \
        _tp_;                                                                                      \
    })

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
