/* cron.c - cron expressions and the next instant they fire in a time zone.
 *
 * The search walks the calendar of the schedule's zone one day at a time
 * (skipping whole months that do not match), and evaluates only the days
 * whose date matches. For such a day it takes the zone's UTC offsets over a
 * window around that day, which splits the day into segments of constant
 * offset (one, unless the offset changes that day), and finds the first
 * matching hour and minute of each segment with bit operations. Offsets come
 * from localtime_r() with TZ pointing at the zone; a schedule keeps the
 * offset changes it found for the next weeks (struct cron_zone), so a warm
 * call reads neither TZ nor the zone file.
 *
 * (In these comments "* /n" stands for a star followed by "/n".)
 */
#include "cron.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CRON_ZONEINFO "/usr/share/zoneinfo"
#define CRON_ZONE_NAME_MAX 200

#define CRON_DAY INT64_C(86400)
/* UTC offsets in tzdata lie between -12:00 and +15:13:42 (Asia/Manila's
 * LMT), so the instants of one local day lie within this margin of the same
 * day in UTC. */
#define CRON_MARGIN (18 * INT64_C(3600))
/* Offset changes are sampled at this interval and located by bisection.
 * Successive changes of one zone are at least 95 hours apart in tzdata
 * 2025b (1850-2100), so no change hides between two samples. */
#define CRON_CHUNK (12 * INT64_C(3600))
/* A schedule with a zone caches the zone's offsets this far ahead. */
#define CRON_CACHE_AHEAD (62 * CRON_DAY)
/* cron_next() gives up after this many days. */
#define CRON_SEARCH_DAYS 1830
/* cron_next() accepts `after` from 0001-01-01 to 9990-01-01 (UTC). */
#define CRON_AFTER_MIN INT64_C(-62135596800)
#define CRON_AFTER_MAX INT64_C(253086768000)

/* From instant `at` on, the zone's UTC offset is `off` seconds. */
struct cron_change {
    int64_t at;
    long off;
};

#define CRON_ZONE_MAX 32

/* The UTC offsets of a zone for the instants [lo, hi]: off_lo at lo, then
 * the changes in ch[] (ascending, lo < at <= hi). */
struct cron_zone {
    bool valid;
    int64_t lo, hi;
    long off_lo;
    size_t n;
    struct cron_change ch[CRON_ZONE_MAX];
};

struct cron {
    uint64_t minutes; /* bits 0-59 */
    uint32_t hours;   /* bits 0-23 */
    uint32_t mdays;   /* bits 1-31 */
    uint32_t months;  /* bits 1-12 */
    uint32_t wdays;   /* bits 0-6, 0 = Sunday */
    bool dom_star;    /* day-of-month field starts with "*" */
    bool dow_star;    /* day-of-week field starts with "*" */
    bool hour_wild;   /* all 24 hours: runs in both passes of a repeated hour */
    char *tzenv;      /* ":/usr/share/zoneinfo/NAME", NULL for the local zone */
    struct cron_zone cache;
};

/* ---- errors -------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int cron_error(char *err, size_t errlen,
                                                            const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* Copies s[0..len) for an error message: at most 40 bytes, non-printable
 * bytes as '?', "..." when cut. */
static const char *cron_quote(const char *s, size_t len, char out[48])
{
    size_t n = len > 40 ? 40 : len;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    if (n < len) {
        memcpy(out + n, "...", 4);
    } else {
        out[n] = '\0';
    }
    return out;
}

/* ---- parsing ------------------------------------------------------------- */

struct cron_field {
    const char *name;
    unsigned min, max;
    const char *const *names; /* names[i] is the value min + i */
    size_t n_names;
};

static const char *const cron_month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                               "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const cron_wday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

enum { CRON_MIN, CRON_HOUR, CRON_DOM, CRON_MON, CRON_DOW, CRON_NFIELDS };

static const struct cron_field cron_fields[CRON_NFIELDS] = {
    {"minute", 0, 59, NULL, 0},
    {"hour", 0, 23, NULL, 0},
    {"day of month", 1, 31, NULL, 0},
    {"month", 1, 12, cron_month_names, 12},
    {"day of week", 0, 7, cron_wday_names, 7},
};

static const struct {
    const char *name;
    const char *expr;
} cron_macros[] = {
    {"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},   {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
};

static bool cron_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* One value of field f: digits or (month, weekday) a three-letter name. */
static int cron_value(int fi, const char *s, size_t len, unsigned *ret, char *err, size_t errlen)
{
    const struct cron_field *f = &cron_fields[fi];
    char q[48];
    if (len == 0) {
        return cron_error(err, errlen, "field %d (%s): missing value", fi + 1, f->name);
    }
    if (s[0] >= '0' && s[0] <= '9') {
        unsigned v = 0;
        for (size_t i = 0; i < len; i++) {
            if (s[i] < '0' || s[i] > '9') {
                return cron_error(err, errlen, "field %d (%s): invalid value \"%s\"", fi + 1,
                                  f->name, cron_quote(s, len, q));
            }
            if (v < 1000) {
                v = v * 10 + (unsigned)(s[i] - '0');
            }
        }
        if (v < f->min || v > f->max) {
            return cron_error(err, errlen, "field %d (%s): %s is out of range %u-%u", fi + 1,
                              f->name, cron_quote(s, len, q), f->min, f->max);
        }
        *ret = v;
        return 0;
    }
    for (size_t i = 0; i < f->n_names; i++) {
        if (len == 3 && strncasecmp(s, f->names[i], 3) == 0) {
            *ret = f->min + (unsigned)i;
            return 0;
        }
    }
    return cron_error(err, errlen, "field %d (%s): invalid value \"%s\"", fi + 1, f->name,
                      cron_quote(s, len, q));
}

/* One list element: "*", "a", "a-b", each optionally followed by "/n". */
static int cron_element(int fi, const char *s, size_t len, uint64_t *bits, char *err, size_t errlen)
{
    const struct cron_field *f = &cron_fields[fi];
    /* "*" and "a/n" in day of week cover 0-6: 7 is only another Sunday */
    unsigned top = fi == CRON_DOW ? 6 : f->max;
    char q[48];
    int r;

    if (len == 0) {
        return cron_error(err, errlen, "field %d (%s): empty list element", fi + 1, f->name);
    }
    const char *slash = memchr(s, '/', len);
    size_t blen = slash ? (size_t)(slash - s) : len;
    unsigned step = 1;
    if (slash) {
        const char *st = slash + 1;
        size_t slen = len - blen - 1;
        unsigned v = 0;
        if (slen == 0) {
            return cron_error(err, errlen, "field %d (%s): missing step after \"/\"", fi + 1,
                              f->name);
        }
        for (size_t i = 0; i < slen; i++) {
            if (st[i] < '0' || st[i] > '9') {
                return cron_error(err, errlen, "field %d (%s): invalid step \"%s\"", fi + 1,
                                  f->name, cron_quote(st, slen, q));
            }
            if (v < 1000) {
                v = v * 10 + (unsigned)(st[i] - '0');
            }
        }
        if (v < 1 || v > f->max) {
            return cron_error(err, errlen, "field %d (%s): step %s is out of range 1-%u", fi + 1,
                              f->name, cron_quote(st, slen, q), f->max);
        }
        step = v;
    }

    unsigned lo, hi;
    const char *dash = memchr(s, '-', blen);
    if (blen == 1 && s[0] == '*') {
        lo = f->min;
        hi = top;
    } else if (dash) {
        size_t alen = (size_t)(dash - s);
        r = cron_value(fi, s, alen, &lo, err, errlen);
        if (r < 0) {
            return r;
        }
        r = cron_value(fi, dash + 1, blen - alen - 1, &hi, err, errlen);
        if (r < 0) {
            return r;
        }
        if (lo > hi) {
            return cron_error(err, errlen, "field %d (%s): range %s runs backwards", fi + 1,
                              f->name, cron_quote(s, blen, q));
        }
    } else {
        r = cron_value(fi, s, blen, &lo, err, errlen);
        if (r < 0) {
            return r;
        }
        hi = slash ? (lo > top ? lo : top) : lo;
    }
    for (unsigned v = lo; v <= hi; v += step) {
        *bits |= UINT64_C(1) << (fi == CRON_DOW && v == 7 ? 0 : v);
    }
    return 0;
}

/* A comma-separated list of elements. */
static int cron_list(int fi, const char *s, size_t len, uint64_t *bits, char *err, size_t errlen)
{
    const char *end = s + len;
    for (;;) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *e = comma ? comma : end;
        int r = cron_element(fi, s, (size_t)(e - s), bits, err, errlen);
        if (r < 0) {
            return r;
        }
        if (!comma) {
            return 0;
        }
        s = comma + 1;
    }
}

static int cron_fields_parse(struct cron *c, const char *expr, char *err, size_t errlen)
{
    const char *start[CRON_NFIELDS + 1];
    size_t len[CRON_NFIELDS + 1];
    int n = 0;
    const char *p = expr;
    char q[48];

    for (;;) {
        while (cron_blank(*p)) {
            p++;
        }
        if (!*p) {
            break;
        }
        const char *b = p;
        while (*p && !cron_blank(*p)) {
            p++;
        }
        if (n <= CRON_NFIELDS) {
            start[n] = b;
            len[n] = (size_t)(p - b);
        }
        n++;
    }

    if (n >= 1 && start[0][0] == '@') {
        for (size_t i = 0; i < sizeof(cron_macros) / sizeof(cron_macros[0]); i++) {
            if (strlen(cron_macros[i].name) == len[0] &&
                strncasecmp(start[0], cron_macros[i].name, len[0]) == 0) {
                if (n > 1) {
                    return cron_error(err, errlen, "unexpected \"%s\" after %s",
                                      cron_quote(start[1], len[1], q), cron_macros[i].name);
                }
                return cron_fields_parse(c, cron_macros[i].expr, err, errlen);
            }
        }
        return cron_error(err, errlen, "unknown macro \"%s\"", cron_quote(start[0], len[0], q));
    }
    if (n != CRON_NFIELDS) {
        return cron_error(err, errlen, "expected 5 fields, got %d", n);
    }

    uint64_t bits[CRON_NFIELDS] = {0};
    for (int i = 0; i < CRON_NFIELDS; i++) {
        int r = cron_list(i, start[i], len[i], &bits[i], err, errlen);
        if (r < 0) {
            return r;
        }
    }
    c->minutes = bits[CRON_MIN];
    c->hours = (uint32_t)bits[CRON_HOUR];
    c->mdays = (uint32_t)bits[CRON_DOM];
    c->months = (uint32_t)bits[CRON_MON];
    c->wdays = (uint32_t)bits[CRON_DOW];
    c->dom_star = start[CRON_DOM][0] == '*';
    c->dow_star = start[CRON_DOW][0] == '*';
    c->hour_wild = c->hours == (UINT32_C(1) << 24) - 1;
    return 0;
}

/* ---- time zone names ----------------------------------------------------- */

static bool cron_zone_name_ok(const char *tz)
{
    size_t len = strlen(tz);
    if (len == 0 || len > CRON_ZONE_NAME_MAX) {
        return false;
    }
    const char *comp = tz;
    for (const char *p = tz;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t clen = (size_t)(p - comp);
            /* no empty component (leading, trailing or double "/"), no "." or ".." */
            if (clen == 0 || (clen == 1 && comp[0] == '.') ||
                (clen == 2 && comp[0] == '.' && comp[1] == '.')) {
                return false;
            }
            if (*p == '\0') {
                return true;
            }
            comp = p + 1;
            continue;
        }
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '+' || ch == '.')) {
            return false;
        }
    }
}

int cron_zone_env(const char *tz, char **ret_env, char *err, size_t errlen)
{
    char q[48];
    if (!cron_zone_name_ok(tz)) {
        return cron_error(err, errlen, "invalid time zone name \"%s\"",
                          cron_quote(tz, strlen(tz), q));
    }
    size_t n = 1 + strlen(CRON_ZONEINFO) + 1 + strlen(tz) + 1;
    char *env = malloc(n);
    if (!env) {
        return -ENOMEM;
    }
    snprintf(env, n, ":%s/%s", CRON_ZONEINFO, tz);

    int fd = open(env + 1, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        free(env);
        if (e == ENOENT || e == ENOTDIR || e == ELOOP || e == ENAMETOOLONG) {
            return cron_error(err, errlen, "unknown time zone \"%s\"", tz);
        }
        return cron_error(err, errlen, "time zone \"%s\": %s", tz, strerror(e));
    }
    struct stat st;
    char magic[4];
    ssize_t got = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        do {
            got = read(fd, magic, sizeof(magic));
        } while (got < 0 && errno == EINTR);
    }
    close(fd);
    if (got != (ssize_t)sizeof(magic) || memcmp(magic, "TZif", 4) != 0) {
        free(env);
        return cron_error(err, errlen, "unknown time zone \"%s\"", tz);
    }
    *ret_env = env;
    return 0;
}

int cron_parse(const char *expr, const char *tz, struct cron **ret, char *err, size_t errlen)
{
    if (!expr) {
        return cron_error(err, errlen, "no expression");
    }
    if (!ret) {
        return -EINVAL;
    }
    struct cron *c = calloc(1, sizeof(*c));
    if (!c) {
        return -ENOMEM;
    }
    int r = cron_fields_parse(c, expr, err, errlen);
    if (r == 0 && tz) {
        r = cron_zone_env(tz, &c->tzenv, err, errlen);
    }
    if (r < 0) {
        cron_free(c);
        return r;
    }
    *ret = c;
    return 0;
}

struct cron *cron_free(struct cron *c)
{
    if (c) {
        free(c->tzenv);
        free(c);
    }
    return NULL;
}

/* ---- UTC offsets --------------------------------------------------------- */

/* One cron_next() call: the zone being read and, while TZ is switched to the
 * schedule's zone, the value to put back. */
struct cron_ctx {
    const struct cron *c;
    struct cron_zone *z;
    int64_t ahead;
    bool switched;
    char *saved_tz; /* NULL when TZ was unset */
};

/* Points TZ at the schedule's zone (once per call). glibc has no per-call
 * time zone; this relies on fetchd being single-threaded. */
static int cron_tz_enter(struct cron_ctx *x)
{
    const char *old = getenv("TZ");
    /* setenv() may free the string getenv() returned: copy it first */
    if (old) {
        x->saved_tz = strdup(old);
        if (!x->saved_tz) {
            return -ENOMEM;
        }
    }
    if (setenv("TZ", x->c->tzenv, 1) < 0) {
        int r = -errno;
        free(x->saved_tz);
        x->saved_tz = NULL;
        return r;
    }
    tzset();
    x->switched = true;
    return 0;
}

static void cron_tz_leave(struct cron_ctx *x)
{
    if (!x->switched) {
        return;
    }
    if (x->saved_tz) {
        (void)setenv("TZ", x->saved_tz, 1);
    } else {
        (void)unsetenv("TZ");
    }
    tzset();
    free(x->saved_tz);
    x->saved_tz = NULL;
    x->switched = false;
}

static int cron_offset_at(struct cron_ctx *x, int64_t t, long *ret)
{
    if (x->c->tzenv && !x->switched) {
        int r = cron_tz_enter(x);
        if (r < 0) {
            return r;
        }
    }
    time_t tt = (time_t)t;
    struct tm tm;
    if ((int64_t)tt != t || !localtime_r(&tt, &tm)) {
        return -ERANGE;
    }
    *ret = tm.tm_gmtoff;
    return 0;
}

static int cron_zone_add(struct cron_zone *z, int64_t keep_from, int64_t at, long off)
{
    if (z->n == CRON_ZONE_MAX) {
        /* forget the changes at or before keep_from */
        size_t k = 0;
        while (k < z->n && z->ch[k].at <= keep_from) {
            k++;
        }
        if (k == 0) {
            return -ERANGE;
        }
        z->off_lo = z->ch[k - 1].off;
        z->lo = keep_from;
        memmove(z->ch, z->ch + k, (z->n - k) * sizeof(z->ch[0]));
        z->n -= k;
    }
    z->ch[z->n].at = at;
    z->ch[z->n].off = off;
    z->n++;
    return 0;
}

/* Makes x->z cover the instants [a, b] (and x->ahead more, if it has to read
 * the zone anyway). */
static int cron_zone_cover(struct cron_ctx *x, int64_t a, int64_t b)
{
    struct cron_zone *z = x->z;
    int r;
    if (z->valid && a >= z->lo && b <= z->hi) {
        return 0;
    }
    if (!z->valid || a < z->lo || a > z->hi) {
        long off;
        z->valid = false;
        r = cron_offset_at(x, a, &off);
        if (r < 0) {
            return r;
        }
        z->valid = true;
        z->lo = z->hi = a;
        z->off_lo = off;
        z->n = 0;
    }
    int64_t end = b + x->ahead;
    long off = z->n ? z->ch[z->n - 1].off : z->off_lo;
    while (z->hi < end) {
        int64_t t = z->hi;
        int64_t u = end - t > CRON_CHUNK ? t + CRON_CHUNK : end;
        long ou;
        r = cron_offset_at(x, u, &ou);
        if (r < 0) {
            return r;
        }
        /* bisect (t, u] for the first instant whose offset is not `off` */
        while (ou != off) {
            int64_t lo = t, hi = u;
            long ohi = ou;
            while (hi - lo > 1) {
                int64_t mid = lo + (hi - lo) / 2;
                long om;
                r = cron_offset_at(x, mid, &om);
                if (r < 0) {
                    return r;
                }
                if (om == off) {
                    lo = mid;
                } else {
                    hi = mid;
                    ohi = om;
                }
            }
            if (z->n == CRON_ZONE_MAX && hi > b && z->hi >= b) {
                return 0; /* full, but [a, b] is covered */
            }
            r = cron_zone_add(z, a, hi, ohi);
            if (r < 0) {
                return r;
            }
            z->hi = hi;
            t = hi;
            off = ohi;
        }
        z->hi = u;
    }
    return 0;
}

/* ---- the search ---------------------------------------------------------- */

static int cron_next_bit(uint64_t set, unsigned from)
{
    if (from >= 64) {
        return -1;
    }
    uint64_t m = set & (~UINT64_C(0) << from);
    return m ? __builtin_ctzll(m) : -1;
}

/* The first wall time (seconds, as if the zone were UTC) in [lo, hi) on the
 * day that starts at w0 whose hour and minute match. */
static bool cron_first_wall(const struct cron *c, int64_t w0, int64_t lo, int64_t hi, int64_t *ret)
{
    if (lo < w0) {
        lo = w0;
    }
    if (hi > w0 + CRON_DAY) {
        hi = w0 + CRON_DAY;
    }
    if (lo >= hi) {
        return false;
    }
    int64_t mins = (lo - w0 + 59) / 60; /* minutes since midnight, rounded up */
    int h = (int)(mins / 60), m = (int)(mins % 60);
    while (h < 24) {
        if (c->hours & (UINT32_C(1) << h)) {
            int mm = cron_next_bit(c->minutes, (unsigned)m);
            if (mm >= 0) {
                int64_t w = w0 + h * INT64_C(3600) + mm * INT64_C(60);
                if (w >= hi) {
                    return false;
                }
                *ret = w;
                return true;
            }
        }
        h = cron_next_bit(c->hours, (unsigned)h + 1);
        if (h < 0) {
            return false;
        }
        m = 0;
    }
    return false;
}

struct cron_segment {
    int64_t start; /* first instant */
    long off;
};

/* The first instant > after at which the schedule fires on the local day
 * starting at wall time w0 (the date itself matches). Returns 1 and sets
 * *ret, 0 if none, or a negative errno. *multi tells whether the offset
 * changes near that day. */
static int cron_day(struct cron_ctx *x, int64_t w0, int64_t after, int64_t *ret, bool *multi)
{
    const struct cron *c = x->c;
    int64_t a = w0 - CRON_MARGIN, b = w0 + CRON_DAY + CRON_MARGIN;
    int r = cron_zone_cover(x, a, b);
    if (r < 0) {
        return r;
    }

    /* the segments of constant offset over [a, b] */
    const struct cron_zone *z = x->z;
    struct cron_segment seg[CRON_ZONE_MAX + 1];
    size_t n = 1;
    seg[0].start = a;
    seg[0].off = z->off_lo;
    for (size_t i = 0; i < z->n && z->ch[i].at <= b; i++) {
        if (z->ch[i].at <= a) {
            seg[0].off = z->ch[i].off;
        } else {
            seg[n].start = z->ch[i].at;
            seg[n].off = z->ch[i].off;
            n++;
        }
    }
    *multi = n > 1;

    int64_t seen = INT64_MIN; /* wall times before this passed in an earlier segment */
    for (size_t k = 0; k < n; k++) {
        int64_t start = seg[k].start;
        int64_t end = k + 1 < n ? seg[k + 1].start : b + 1;
        long off = seg[k].off;
        int64_t w;
        /* Spring forward: the wall times [start + previous offset, start +
         * off) do not exist. A fixed-hour schedule that matches one of them
         * runs at the first instant after the gap instead. */
        if (k > 0 && off > seg[k - 1].off && !c->hour_wild && start > after &&
            cron_first_wall(c, w0, start + seg[k - 1].off, start + off, &w)) {
            *ret = start;
            return 1;
        }
        int64_t lo = start + off;
        if (after + 1 + off > lo) {
            lo = after + 1 + off;
        }
        /* Fall back: a fixed-hour schedule runs only in the first pass. */
        if (!c->hour_wild && seen > lo) {
            lo = seen;
        }
        if (cron_first_wall(c, w0, lo, end + off, &w)) {
            *ret = w - off;
            return 1;
        }
        if (end + off > seen) {
            seen = end + off;
        }
    }
    return 0;
}

/* A local date, walked forward from the start of the search. */
struct cron_date {
    int64_t day; /* days since 1970-01-01 */
    int year, mon, mday, wday;
};

static int cron_days_in_month(int year, int mon)
{
    static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mon == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0)) {
        return 29;
    }
    return dim[mon - 1];
}

static int cron_date_init(struct cron_date *d, int64_t day)
{
    time_t t = (time_t)(day * CRON_DAY);
    struct tm tm;
    if ((int64_t)t != day * CRON_DAY || !gmtime_r(&t, &tm)) {
        return -ERANGE;
    }
    d->day = day;
    d->year = tm.tm_year + 1900;
    d->mon = tm.tm_mon + 1;
    d->mday = tm.tm_mday;
    d->wday = tm.tm_wday;
    return 0;
}

static void cron_date_add(struct cron_date *d, int days)
{
    d->day += days;
    d->wday = (d->wday + days) % 7;
    d->mday += days;
    while (d->mday > cron_days_in_month(d->year, d->mon)) {
        d->mday -= cron_days_in_month(d->year, d->mon);
        if (++d->mon > 12) {
            d->mon = 1;
            d->year++;
        }
    }
}

static bool cron_date_matches(const struct cron *c, const struct cron_date *d)
{
    bool dom = c->mdays & (UINT32_C(1) << d->mday);
    bool dow = c->wdays & (UINT32_C(1) << d->wday);
    if (c->dom_star || c->dow_star) {
        return dom && dow;
    }
    return dom || dow;
}

static int64_t cron_floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static int cron_search(struct cron_ctx *x, int64_t after, int64_t *ret)
{
    const struct cron *c = x->c;
    struct cron_date d;
    /* Offsets are >= -12 h, so this date is at least 6 hours of wall time
     * before `after`'s: it includes the day before when an hour repeated
     * around midnight can put instants later than `after` on it. */
    int r = cron_date_init(&d, cron_floor_div(after - CRON_MARGIN, CRON_DAY));
    if (r < 0) {
        return r;
    }
    int64_t last = cron_floor_div(after, CRON_DAY) + CRON_SEARCH_DAYS;

    while (d.day <= last) {
        if (!(c->months & (UINT32_C(1) << d.mon))) {
            cron_date_add(&d, cron_days_in_month(d.year, d.mon) - d.mday + 1);
            continue;
        }
        if (cron_date_matches(c, &d)) {
            int64_t t;
            bool multi;
            r = cron_day(x, d.day * CRON_DAY, after, &t, &multi);
            if (r < 0) {
                return r;
            }
            if (r > 0) {
                /* An offset change near this day can give the next day an
                 * earlier instant (a repeated hour around midnight). */
                struct cron_date e = d;
                cron_date_add(&e, 1);
                if (multi && (c->months & (UINT32_C(1) << e.mon)) && cron_date_matches(c, &e)) {
                    int64_t t2;
                    bool multi2;
                    r = cron_day(x, e.day * CRON_DAY, after, &t2, &multi2);
                    if (r < 0) {
                        return r;
                    }
                    if (r > 0 && t2 < t) {
                        t = t2;
                    }
                }
                *ret = t;
                return 0;
            }
        }
        cron_date_add(&d, 1);
    }
    return -ERANGE;
}

int cron_next(struct cron *c, time_t after, time_t *ret)
{
    if (!c || !ret) {
        return -EINVAL;
    }
    if ((int64_t)after < CRON_AFTER_MIN || (int64_t)after > CRON_AFTER_MAX) {
        return -ERANGE;
    }
    struct cron_zone local;
    struct cron_ctx x = {.c = c};
    if (c->tzenv) {
        x.z = &c->cache;
        x.ahead = CRON_CACHE_AHEAD;
    } else {
        /* No tzset() here: like localtime_r(), use the zone of the last
         * tzset() (with TZ unset, glibc's tzset() stats /etc/localtime,
         * which would be most of the cost of a call). */
        local.valid = false;
        x.z = &local;
        x.ahead = 0;
    }
    int64_t t = 0;
    int r = cron_search(&x, (int64_t)after, &t);
    cron_tz_leave(&x);
    if (r < 0) {
        if (x.z == &c->cache && r != -ERANGE) {
            c->cache.valid = false;
        }
        return r;
    }
    if ((int64_t)(time_t)t != t) {
        return -ERANGE;
    }
    *ret = (time_t)t;
    return 0;
}
