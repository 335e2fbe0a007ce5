/* units.c - duration and size parsing/formatting. */
#include "units.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct unit {
    const char *name;
    uint64_t mult;
};

static const struct unit duration_units[] = {
    {"us", 1},
    {"ms", USEC_PER_MSEC},
    {"s", USEC_PER_SEC},
    {"m", 60 * USEC_PER_SEC},
    {"h", 3600 * USEC_PER_SEC},
    {"d", 86400 * USEC_PER_SEC},
};

static const struct unit size_units[] = {
    {"B", 1},
    {"KB", 1000},
    {"kB", 1000},
    {"MB", 1000 * 1000},
    {"GB", 1000 * 1000 * 1000},
    {"KiB", 1024},
    {"kiB", 1024},
    {"MiB", 1024 * 1024},
    {"GiB", UINT64_C(1024) * 1024 * 1024},
    {"TiB", UINT64_C(1024) * 1024 * 1024 * 1024},
};

/* Reads digits [. digits] at *p into an integer part and a fraction scaled to
 * 1e9. Returns -EINVAL when there are no digits. */
static int units_number(const char **p, uint64_t *ret_int, uint64_t *ret_frac_e9, int allow_frac)
{
    const char *s = *p;
    uint64_t v = 0;
    int digits = 0;
    while (*s >= '0' && *s <= '9') {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -ERANGE;
        }
        v = v * 10 + d;
        s++;
        digits++;
    }
    uint64_t frac = 0;
    if (*s == '.' && allow_frac) {
        s++;
        uint64_t scale = 100000000;
        int fdigits = 0;
        while (*s >= '0' && *s <= '9') {
            frac += (uint64_t)(*s - '0') * scale;
            scale /= 10;
            s++;
            fdigits++;
        }
        if (fdigits == 0) {
            return -EINVAL;
        }
    }
    if (digits == 0) {
        return -EINVAL;
    }
    *ret_int = v;
    *ret_frac_e9 = frac;
    *p = s;
    return 0;
}

static const struct unit *units_match(const char **p, const struct unit *tab, size_t n)
{
    const struct unit *best = NULL;
    size_t bestlen = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(tab[i].name);
        if (l > bestlen && strncmp(*p, tab[i].name, l) == 0) {
            best = &tab[i];
            bestlen = l;
        }
    }
    if (best) {
        *p += bestlen;
    }
    return best;
}

int units_parse_duration(const char *s, usec_t *ret)
{
    if (!s || !*s) {
        return -EINVAL;
    }
    usec_t total = 0;
    const char *p = s;
    while (*p) {
        uint64_t v, frac;
        int r = units_number(&p, &v, &frac, 1);
        if (r < 0) {
            return r;
        }
        const struct unit *u =
            units_match(&p, duration_units, sizeof(duration_units) / sizeof(duration_units[0]));
        if (!u) {
            return -EINVAL;
        }
        if (v > UINT64_MAX / u->mult) {
            return -ERANGE;
        }
        uint64_t whole = v * u->mult;
        uint64_t fpart = (uint64_t)((double)frac * (double)u->mult / 1e9 + 0.5);
        if (fpart > UINT64_MAX - whole) {
            return -ERANGE;
        }
        uint64_t part = whole + fpart;
        if (part > UINT64_MAX - total - 1) {
            return -ERANGE;
        }
        total += part;
    }
    *ret = total;
    return 0;
}

int units_parse_size(const char *s, uint64_t *ret)
{
    if (!s || !*s) {
        return -EINVAL;
    }
    const char *p = s;
    uint64_t v, frac;
    int r = units_number(&p, &v, &frac, 0);
    if (r < 0) {
        return r;
    }
    uint64_t mult = 1;
    if (*p) {
        const struct unit *u =
            units_match(&p, size_units, sizeof(size_units) / sizeof(size_units[0]));
        if (!u || *p) {
            return -EINVAL;
        }
        mult = u->mult;
    }
    if (v > UINT64_MAX / mult) {
        return -ERANGE;
    }
    *ret = v * mult;
    return 0;
}

char *units_format_duration(usec_t u, char *buf, size_t len)
{
    if (u == 0) {
        snprintf(buf, len, "0s");
        return buf;
    }
    size_t off = 0;
    buf[0] = '\0';
    for (int i = (int)(sizeof(duration_units) / sizeof(duration_units[0])) - 1; i >= 0 && u; i--) {
        uint64_t m = duration_units[i].mult;
        if (u >= m) {
            int n = snprintf(buf + off, off < len ? len - off : 0, "%llu%s",
                             (unsigned long long)(u / m), duration_units[i].name);
            if (n > 0) {
                off += (size_t)n;
            }
            u %= m;
        }
    }
    return buf;
}

char *units_format_size(uint64_t n, char *buf, size_t len)
{
    static const char *names[] = {"TiB", "GiB", "MiB", "KiB"};
    static const uint64_t mults[] = {UINT64_C(1) << 40, UINT64_C(1) << 30, UINT64_C(1) << 20,
                                     UINT64_C(1) << 10};
    for (size_t i = 0; i < 4; i++) {
        if (n >= mults[i] && n % mults[i] == 0) {
            snprintf(buf, len, "%llu%s", (unsigned long long)(n / mults[i]), names[i]);
            return buf;
        }
    }
    snprintf(buf, len, "%lluB", (unsigned long long)n);
    return buf;
}
