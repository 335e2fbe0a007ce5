/* fuzz.h - what every fuzz target shares: the libFuzzer entry point and a
 * property check that stays on in every build type.
 *
 * A target is one LLVMFuzzerTestOneInput(); it links either libFuzzer
 * (-Dfuzzing=true) or standalone.c, which replays files (the committed
 * corpus) through it as a plain test.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken property is a crash: libFuzzer saves the input, the standalone
 * driver names the file. (Not assert(): NDEBUG must not turn it off.) */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* data[0..size) as a malloc'd C string (cut at the first NUL), or NULL. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = '\0';
    }
    return s;
}
