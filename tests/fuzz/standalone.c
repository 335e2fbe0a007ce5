/* standalone.c - a main() for the fuzz targets without libFuzzer.
 *
 * Runs LLVMFuzzerTestOneInput() once on every file named on the command
 * line; a directory stands for the regular files in it (not recursive,
 * sorted, dot files skipped). This is how the committed corpora run as
 * regression tests in every build (gcc, ASan, valgrind). Arguments starting
 * with '-' are libFuzzer flags and are ignored. Each file is announced on
 * stderr before it runs (as libFuzzer does), so a crash or a failed property
 * is followed back to its input in the test log. Exits 1 if nothing was run:
 * a missing corpus must not pass silently.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -errno;
    }
    size_t cap = 4096, len = 0;
    uint8_t *data = malloc(cap);
    for (;;) {
        if (!data) {
            fclose(f);
            fprintf(stderr, "%s: out of memory\n", path);
            return -ENOMEM;
        }
        len += fread(data + len, 1, cap - len, f);
        if (len < cap) {
            break;
        }
        uint8_t *n = realloc(data, cap * 2);
        if (!n) {
            free(data);
        }
        data = n;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(data);
        fprintf(stderr, "%s: read error\n", path);
        return -EIO;
    }
    /* an exact-size copy, so that a read past the end is caught (ASan,
     * valgrind) as it would be under libFuzzer */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(data);
        return -ENOMEM;
    }
    memcpy(exact, data, len);
    free(data);
    fprintf(stderr, "Running: %s\n", path);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs the regular files of dir in name order; returns how many or -errno. */
static int run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: %s\n", dir, strerror(errno));
        return -errno;
    }
    char **names = NULL;
    size_t n = 0;
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') {
            continue;
        }
        char **nn = realloc(names, (n + 1) * sizeof(*names));
        size_t l = strlen(dir) + 1 + strlen(de->d_name) + 1;
        char *p = nn ? malloc(l) : NULL;
        if (!p) {
            names = nn ? nn : names;
            r = -ENOMEM;
            break;
        }
        names = nn;
        snprintf(p, l, "%s/%s", dir, de->d_name);
        names[n++] = p;
    }
    closedir(d);
    if (n) {
        qsort(names, n, sizeof(*names), cmp_str);
    }
    int ran = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (r == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            r = run_file(names[i]);
            ran += r == 0;
        }
        free(names[i]);
    }
    free(names);
    return r < 0 ? r : ran;
}

int main(int argc, char **argv)
{
    int total = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            continue;
        }
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        int r;
        if (S_ISDIR(st.st_mode)) {
            r = run_dir(argv[i]);
        } else {
            r = run_file(argv[i]);
            r = r < 0 ? r : 1;
        }
        if (r < 0) {
            return 1;
        }
        total += r;
    }
    if (total == 0) {
        fprintf(stderr, "standalone: no input files (give files or directories)\n");
        return 1;
    }
    fprintf(stderr, "standalone: %d inputs ran\n", total);
    return 0;
}
