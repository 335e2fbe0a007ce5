/* journal.c - one native systemd journal entry per record.
 *
 * A small client of journald's native protocol (systemd's "Native Journal
 * Protocol"), not sd_journal_send(): libsystemd's journal socket is blocking
 * with a large send buffer, so a stalled journald would stall the event
 * loop. Here the socket is non-blocking and connected (a connected AF_UNIX
 * datagram socket polls writable only when the receiver's queue has room, so
 * EV_WRITE does not spin while journald does not read):
 *
 * - each record is one datagram with one entry: fields "NAME=value\n", or
 *   for values holding '\n' or NUL "NAME\n" + 64-bit little-endian length +
 *   value + "\n";
 * - a datagram too large for the socket (EMSGSIZE, and ENOBUFS as systemd's
 *   journal_send treats it) is written to a sealed memfd, and the fd is sent
 *   alone in an empty datagram (SCM_RIGHTS);
 * - EAGAIN (journald's queue or our send buffer is full): the sink waits for
 *   EV_WRITE, records stay queued;
 * - no journald (ENOENT, ECONNREFUSED, or the connection broke because
 *   journald restarted): one immediate reconnect, then retries with the
 *   sink's backoff; the records stay queued and the queue's bound and
 *   overflow policy decide what is dropped (counted).
 *
 * Fields: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, FETCHD_ENDPOINT, FETCHD_SINK,
 * FETCHD_URL, FETCHD_HTTP_STATUS (a response), FETCHD_ERROR_KIND (errors),
 * FETCHD_FETCHED_AT, FETCHD_RECORD (the record's JSON line), and with
 * data_fields the top-level members of "data" as FETCHD_DATA_<NAME> (names
 * by jfield.h, duplicates numbered _2, _3...). journald drops a whole entry
 * of more than 1024 fields (ENTRY_FIELD_COUNT_MAX); an entry here has at
 * most JOURNAL_FIELDS_MAX, which leaves room for the ~40 trusted fields
 * journald adds, so that journal-remote (which counts them too) accepts it.
 * Members beyond that are left out and counted in
 * FETCHD_OMITTED_DATA_FIELDS (logged once per sink).
 *
 * Delivery: at most once; a record counts as delivered when journald's
 * socket accepted its datagram (journald may still discard it: rate limits,
 * a full disk).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "jfield.h"
#include "json.h"
#include "log.h"
#include "sink.h"
#include "util/buf.h"

enum { J_OPT_SOCKET, J_OPT_PRIO_OK, J_OPT_PRIO_ERROR, J_OPT_IDENTIFIER, J_OPT_DATA_FIELDS };

static const struct opt_def journal_options[] = {
    [J_OPT_SOCKET] = {"socket", OPT_PATH, false,
                      "journald's native socket (default /run/systemd/journal/socket)", NULL},
    [J_OPT_PRIO_OK] = {"priority_ok", OPT_UINT, false,
                       "PRIORITY of successful fetches, 0..7 (default 6, info)", NULL},
    [J_OPT_PRIO_ERROR] = {"priority_error", OPT_UINT, false,
                          "PRIORITY of error records, 0..7 (default 4, warning)", NULL},
    [J_OPT_IDENTIFIER] = {"identifier", OPT_STRING, false,
                          "SYSLOG_IDENTIFIER of the entries (default \"fetchd\")", NULL},
    [J_OPT_DATA_FIELDS] = {"data_fields", OPT_BOOL, false,
                           "also send the top-level members of \"data\" as FETCHD_DATA_* fields",
                           NULL},
    {0},
};

#define JOURNAL_DEFAULT_SOCKET "/run/systemd/journal/socket"
#define JOURNAL_DEFAULT_PRIO_OK 6    /* LOG_INFO */
#define JOURNAL_DEFAULT_PRIO_ERROR 4 /* LOG_WARNING */
#define JOURNAL_DEFAULT_IDENTIFIER "fetchd"
#define JOURNAL_DATA_PREFIX "FETCHD_DATA_"
/* Fields of one entry, at most: journald's ENTRY_FIELD_COUNT_MAX (1024) less
 * room for the trusted fields it adds. */
#define JOURNAL_FIELDS_MAX (1024 - 64)
/* Records sent per deliver() call (the host calls it up to 64 times per
 * loop iteration). */
#define JOURNAL_BATCH 8
/* A payload buffer larger than this is freed after use. */
#define JOURNAL_KEEP_BUF (256u * 1024)
/* Open addressing for the data field names of one entry: a power of two
 * above twice JOURNAL_FIELDS_MAX. */
#define NAMESET_SLOTS 2048

struct nameset {
    char (*names)[JFIELD_NAME_MAX + 1]; /* owned; JOURNAL_FIELDS_MAX of them */
    uint16_t slot[NAMESET_SLOTS];       /* 0: empty, else index + 1 */
    size_t n;
};

struct journal_sink {
    int fd;                 /* connected datagram socket, -1 if none */
    const char *path;       /* borrowed from the config */
    unsigned prio_ok, prio_error;
    const char *identifier; /* borrowed */
    bool data_fields;
    ev_io io;               /* EV_WRITE while the socket is full */
    struct buf payload;     /* the entry being sent */
    struct buf msg;         /* MESSAGE */
    struct buf tmp;         /* unescaped strings */
    struct nameset *names;  /* with data_fields */
    size_t fields;          /* fields in payload */
    bool cut_logged;        /* data fields were left out (logged once) */
};

static int journal_check(const struct sink_cfg *cfg, char *err, size_t errlen)
{
    const struct opt_value *v = cfg->values;
    static const char *const keys[] = {[J_OPT_PRIO_OK] = "priority_ok",
                                       [J_OPT_PRIO_ERROR] = "priority_error"};
    for (int i = J_OPT_PRIO_OK; i <= J_OPT_PRIO_ERROR; i++) {
        if (v[i].set && v[i].u > 7) {
            snprintf(err, errlen,
                     "\"%s\" must be a syslog priority from 0 (emerg) to 7 (debug), got %llu",
                     keys[i], (unsigned long long)v[i].u);
            return -EINVAL;
        }
    }
    if (v[J_OPT_IDENTIFIER].set && !v[J_OPT_IDENTIFIER].s[0]) {
        snprintf(err, errlen, "\"identifier\" must not be empty");
        return -EINVAL;
    }
    const char *path = v[J_OPT_SOCKET].set ? v[J_OPT_SOCKET].s : JOURNAL_DEFAULT_SOCKET;
    struct sockaddr_un sa;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "\"socket\" is longer than a socket path may be (%zu bytes)",
                 sizeof(sa.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    return 0;
}

/* ---- the record's JSON ------------------------------------------------------ */

/* fetchd wrote the line and validated "data", so this is valid JSON; the
 * scanner still never reads past the end. */

struct span {
    const char *p;
    size_t n;
};

static bool span_is(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const char *t, size_t len, size_t i)
{
    while (i < len && is_ws(t[i])) {
        i++;
    }
    return i;
}

/* t[i] is '"': the index just after the closing quote. */
static size_t str_end(const char *t, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (t[i] == '\\') {
            i++;
        } else if (t[i] == '"') {
            return i + 1;
        }
    }
    return len;
}

/* The index just after the value that starts at t[i]. */
static size_t value_end(const char *t, size_t len, size_t i)
{
    if (i >= len) {
        return len;
    }
    if (t[i] == '"') {
        return str_end(t, len, i);
    }
    if (t[i] == '{' || t[i] == '[') {
        size_t depth = 0;
        while (i < len) {
            char c = t[i];
            if (c == '"') {
                i = str_end(t, len, i);
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if ((c == '}' || c == ']') && --depth == 0) {
                return i + 1;
            }
            i++;
        }
        return len;
    }
    while (i < len && t[i] != ',' && t[i] != '}' && t[i] != ']' && !is_ws(t[i])) {
        i++;
    }
    return i;
}

/* The next member of the object t[0..len) (t[0] == '{'): its key (the
 * string literal, quotes included) and its value's JSON text. Start with
 * *pos = 0. */
static bool obj_next(const char *t, size_t len, size_t *pos, struct span *key,
                     struct span *val)
{
    size_t i = skip_ws(t, len, *pos ? *pos : 1);
    if (i < len && t[i] == ',') {
        i = skip_ws(t, len, i + 1);
    }
    if (i >= len || t[i] != '"') {
        return false;
    }
    size_t ke = str_end(t, len, i);
    *key = (struct span){t + i, ke - i};
    i = skip_ws(t, len, ke);
    if (i >= len || t[i] != ':') {
        return false;
    }
    i = skip_ws(t, len, i + 1);
    size_t ve = value_end(t, len, i);
    if (ve <= i) {
        return false;
    }
    *val = (struct span){t + i, ve - i};
    *pos = ve;
    return true;
}

/* The value of the string literal s (quotes included) into out (reset
 * first). "\u0000" becomes a NUL byte: field values are binary-safe. The
 * record's JSON was validated (no lone surrogates). Returns 0, -EINVAL or
 * -ENOMEM. */
static int unescape(struct span s, struct buf *out)
{
    buf_reset(out);
    return json_unescape_flags(s.p, s.n, out, JSON_UNESCAPE_NUL);
}

/* ---- building the entry ----------------------------------------------------- */

#define TRY(x)                                                                                     \
    do {                                                                                           \
        int _r = (x);                                                                              \
        if (_r < 0)                                                                                \
            return _r;                                                                             \
    } while (0)

/* Appends one field: "NAME=value\n", or the binary form when the value holds
 * a newline (which would end it) or a NUL. */
static int put_field(struct journal_sink *j, const char *name, const char *v, size_t n)
{
    struct buf *b = &j->payload;
    size_t nl = strlen(name);
    bool binary = memchr(v, '\n', n) || memchr(v, '\0', n);
    TRY(buf_reserve(b, nl + n + 10));
    TRY(buf_append(b, name, nl));
    if (binary) {
        unsigned char le[8];
        uint64_t len = n;
        for (int i = 0; i < 8; i++) {
            le[i] = (unsigned char)(len >> (8 * i));
        }
        TRY(buf_putc(b, '\n'));
        TRY(buf_append(b, le, sizeof(le)));
    } else {
        TRY(buf_putc(b, '='));
    }
    TRY(buf_append(b, v, n));
    TRY(buf_putc(b, '\n'));
    j->fields++;
    return 0;
}

static int put_str(struct journal_sink *j, const char *name, const char *v)
{
    return put_field(j, name, v, strlen(v));
}

/* True if name was not in the set yet (and is now). */
static bool nameset_add(struct nameset *ns, const char *name, size_t len)
{
    uint32_t h = jfield_fnv1a(JFIELD_FNV_INIT, name, len);
    for (size_t k = 0; k < NAMESET_SLOTS; k++) {
        uint16_t *sl = &ns->slot[(h + k) & (NAMESET_SLOTS - 1)];
        if (!*sl) {
            if (ns->n >= JOURNAL_FIELDS_MAX) {
                return true; /* cannot happen: at most room names per entry */
            }
            memcpy(ns->names[ns->n], name, len + 1);
            *sl = (uint16_t)(++ns->n);
            return true;
        }
        if (strcmp(ns->names[*sl - 1], name) == 0) {
            return false;
        }
    }
    return false;
}

/* FETCHD_DATA_* from the top-level members of the object d (at most room
 * of them). Returns the number of members left out, or -errno. */
static long put_data_fields(struct journal_sink *j, struct span d, size_t room)
{
    struct nameset *ns = j->names;
    memset(ns->slot, 0, sizeof(ns->slot));
    ns->n = 0;
    size_t pos = 0, members = 0, sent = 0;
    struct span k, v;
    while (obj_next(d.p, d.n, &pos, &k, &v)) {
        members++;
        if (sent >= room) {
            continue; /* only counted */
        }
        char base[JFIELD_NAME_MAX + 1], name[JFIELD_NAME_MAX + 1];
        if (unescape(k, &j->tmp) == 0) {
            jfield_make(JOURNAL_DATA_PREFIX, j->tmp.data, j->tmp.len, base);
        } else {
            jfield_make(JOURNAL_DATA_PREFIX, k.p, k.n, base);
        }
        size_t blen = strlen(base);
        memcpy(name, base, blen + 1);
        for (unsigned nr = 2; !nameset_add(ns, name, strlen(name)); nr++) {
            memcpy(name, base, blen + 1);
            jfield_number(name, blen, nr);
        }
        if (v.p[0] == '"') {
            int r = unescape(v, &j->tmp);
            if (r == -ENOMEM) {
                return r;
            }
            if (r == 0) {
                TRY(put_field(j, name, j->tmp.data, j->tmp.len));
            } else {
                TRY(put_field(j, name, v.p, v.n));
            }
        } else {
            TRY(put_field(j, name, v.p, v.n));
        }
        sent++;
    }
    return (long)(members - sent);
}

/* What MESSAGE needs from the record line. */
struct rec_info {
    struct span url, bytes, page, index, message;
    bool unchanged;
};

static void rec_scan(const struct sink_rec *r, size_t linelen, struct rec_info *ri)
{
    memset(ri, 0, sizeof(*ri));
    if (!linelen || r->line[0] != '{') {
        return;
    }
    size_t pos = 0;
    struct span k, v;
    while (obj_next(r->line, linelen, &pos, &k, &v)) {
        if (span_is(k, "\"url\"")) {
            ri->url = v;
        } else if (span_is(k, "\"bytes\"")) {
            ri->bytes = v;
        } else if (span_is(k, "\"page\"")) {
            ri->page = v;
        } else if (span_is(k, "\"index\"")) {
            ri->index = v;
        } else if (span_is(k, "\"unchanged\"")) {
            ri->unchanged = span_is(v, "true");
        } else if (span_is(k, "\"error\"") && v.p[0] == '{') {
            size_t epos = 0;
            struct span ek, ev;
            while (obj_next(v.p, v.n, &epos, &ek, &ev)) {
                if (span_is(ek, "\"message\"")) {
                    ri->message = ev;
                }
            }
        }
    }
}

/* MESSAGE: "weather: ok, HTTP 200, 512 bytes" or
 * "weather: timeout: Operation timed out after 5000 ms". */
static int build_message(struct journal_sink *j, const struct sink_rec *r,
                         const struct rec_info *ri)
{
    struct buf *m = &j->msg;
    buf_reset(m);
    TRY(buf_puts(m, r->endpoint));
    if (r->error != REC_OK) {
        TRY(buf_printf(m, ": %s", record_error_kind((enum record_error)r->error)));
        if (ri->message.n && unescape(ri->message, &j->tmp) == 0 && j->tmp.len) {
            TRY(buf_puts(m, ": "));
            TRY(buf_append(m, j->tmp.data, j->tmp.len));
        }
        return 0;
    }
    TRY(buf_puts(m, ri->unchanged ? ": unchanged" : ": ok"));
    if (r->http_status > 0) {
        TRY(buf_printf(m, ", HTTP %ld", r->http_status));
    }
    if (ri->bytes.n && !ri->unchanged) {
        bool one = span_is(ri->bytes, "1");
        TRY(buf_printf(m, ", %.*s byte%s", (int)ri->bytes.n, ri->bytes.p, one ? "" : "s"));
    }
    if (ri->page.n) {
        TRY(buf_printf(m, ", page %.*s", (int)ri->page.n, ri->page.p));
    }
    if (ri->index.n) {
        TRY(buf_printf(m, ", index %.*s", (int)ri->index.n, ri->index.p));
    }
    return 0;
}

/* The whole entry of record r into j->payload. Returns 0 or -ENOMEM. */
static int journal_build(struct sink *s, struct journal_sink *j, const struct sink_rec *r)
{
    buf_reset(&j->payload);
    j->fields = 0;
    size_t linelen = r->len && r->line[r->len - 1] == '\n' ? r->len - 1 : r->len;
    struct rec_info ri;
    rec_scan(r, linelen, &ri);
    TRY(build_message(j, r, &ri));
    char num[32];
    TRY(put_field(j, "MESSAGE", j->msg.data, j->msg.len));
    snprintf(num, sizeof(num), "%u", r->error == REC_OK ? j->prio_ok : j->prio_error);
    TRY(put_str(j, "PRIORITY", num));
    TRY(put_str(j, "SYSLOG_IDENTIFIER", j->identifier));
    TRY(put_str(j, "FETCHD_ENDPOINT", r->endpoint));
    TRY(put_str(j, "FETCHD_SINK", s->name));
    if (ri.url.n && unescape(ri.url, &j->tmp) == 0) {
        TRY(put_field(j, "FETCHD_URL", j->tmp.data, j->tmp.len));
    }
    if (r->http_status > 0) {
        snprintf(num, sizeof(num), "%ld", r->http_status);
        TRY(put_str(j, "FETCHD_HTTP_STATUS", num));
    }
    if (r->error != REC_OK) {
        TRY(put_str(j, "FETCHD_ERROR_KIND", record_error_kind((enum record_error)r->error)));
    }
    if (r->fetched_at) {
        time_format_rfc3339_ms(r->fetched_at, num);
        TRY(put_str(j, "FETCHD_FETCHED_AT", num));
    }
    TRY(put_field(j, "FETCHD_RECORD", r->line, linelen));
    if (j->data_fields && r->data_len >= 2 && r->line[r->data_off] == '{' &&
        (size_t)r->data_off + r->data_len <= linelen) {
        /* one field is kept for FETCHD_OMITTED_DATA_FIELDS */
        size_t room = JOURNAL_FIELDS_MAX - 1 - j->fields;
        long left = put_data_fields(j, (struct span){r->line + r->data_off, r->data_len}, room);
        if (left < 0) {
            return (int)left;
        }
        if (left > 0) {
            snprintf(num, sizeof(num), "%ld", left);
            TRY(put_str(j, "FETCHD_OMITTED_DATA_FIELDS", num));
            if (!j->cut_logged) {
                j->cut_logged = true;
                log_sink(LOG_WARNING, s->name,
                         "a record of endpoint '%s' has %zu top-level members in \"data\"; only "
                         "the first %zu are sent as " JOURNAL_DATA_PREFIX "* fields (journald "
                         "drops an entry of more than 1024 fields), the count left out is in "
                         "FETCHD_OMITTED_DATA_FIELDS (logged once)",
                         r->endpoint, room + (size_t)left, room);
            }
        }
    }
    return 0;
}

#undef TRY

/* ---- the socket --------------------------------------------------------------- */

static void journal_disconnect(struct sink *s, struct journal_sink *j)
{
    if (j->fd >= 0) {
        ev_io_stop(s->loop, &j->io);
        close(j->fd);
        j->fd = -1;
    }
}

static int journal_connect(struct journal_sink *j)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -errno;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(j->path); /* fits: journal_check */
    memcpy(sa.sun_path, j->path, n + 1);
    if (connect(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                                                        n + 1)) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    j->fd = fd;
    ev_io_set(&j->io, fd, EV_WRITE);
    return 0;
}

/* The payload in a sealed memfd, the fd alone in an empty datagram (the
 * form journald takes for entries larger than a datagram). */
static int journal_send_memfd(struct journal_sink *j, const char *p, size_t n)
{
    int mfd = memfd_create("fetchd-journal", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mfd < 0) {
        return -errno;
    }
    int r = 0;
    size_t off = 0;
    while (off < n) {
        ssize_t k = write(mfd, p + off, n - off);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            r = k < 0 ? -errno : -EIO;
            goto out;
        }
        off += (size_t)k;
    }
    if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
        r = -errno;
        goto out;
    }
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct msghdr mh = {.msg_control = &ctl, .msg_controllen = sizeof(ctl)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &mfd, sizeof(int));
    mh.msg_controllen = c->cmsg_len;
    ssize_t k;
    do {
        k = sendmsg(j->fd, &mh, MSG_NOSIGNAL);
    } while (k < 0 && errno == EINTR);
    r = k < 0 ? -errno : 0;
out:
    close(mfd);
    return r;
}

static int journal_send(struct journal_sink *j)
{
    const char *p = j->payload.data;
    size_t n = j->payload.len;
    ssize_t k;
    do {
        k = send(j->fd, p, n, MSG_NOSIGNAL);
    } while (k < 0 && errno == EINTR);
    if (k >= 0) {
        return 0;
    }
    int e = errno;
    if (e != EMSGSIZE && e != ENOBUFS) {
        return -e;
    }
    return journal_send_memfd(j, p, n);
}

static bool journal_gone(int r)
{
    return r == -ENOENT || r == -ECONNREFUSED || r == -ENOTCONN || r == -ECONNRESET ||
           r == -EPIPE;
}

/* Buffers that grew for a large record are not kept. */
static void journal_trim(struct journal_sink *j)
{
    struct buf *bufs[] = {&j->payload, &j->msg, &j->tmp};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (bufs[i]->cap > JOURNAL_KEEP_BUF) {
            buf_done(bufs[i]);
        }
    }
}

static void journal_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct sink *s = io->data;
    (void)revents;
    ev_io_stop(loop, io);
    sink_ready(s);
}

/* ---- the sink type ------------------------------------------------------------ */

static int journal_open(struct sink *s, char *err, size_t errlen)
{
    const struct opt_value *v = s->cfg->values;
    struct journal_sink *j = calloc(1, sizeof(*j));
    if (!j) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    j->fd = -1;
    j->path = v[J_OPT_SOCKET].set ? v[J_OPT_SOCKET].s : JOURNAL_DEFAULT_SOCKET;
    j->prio_ok = v[J_OPT_PRIO_OK].set ? (unsigned)v[J_OPT_PRIO_OK].u : JOURNAL_DEFAULT_PRIO_OK;
    j->prio_error =
        v[J_OPT_PRIO_ERROR].set ? (unsigned)v[J_OPT_PRIO_ERROR].u : JOURNAL_DEFAULT_PRIO_ERROR;
    j->identifier = v[J_OPT_IDENTIFIER].set ? v[J_OPT_IDENTIFIER].s : JOURNAL_DEFAULT_IDENTIFIER;
    j->data_fields = v[J_OPT_DATA_FIELDS].set && v[J_OPT_DATA_FIELDS].b;
    if (j->data_fields) {
        j->names = calloc(1, sizeof(*j->names));
        if (j->names) {
            j->names->names = calloc(JOURNAL_FIELDS_MAX, sizeof(*j->names->names));
        }
        if (!j->names || !j->names->names) {
            free(j->names);
            free(j);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
    }
    ev_io_init(&j->io, journal_io_cb, -1, EV_WRITE);
    j->io.data = s;
    s->priv = j;
    /* journald may come later: a failure here is only retried in deliver */
    (void)journal_connect(j);
    return 0;
}

static void journal_retry(struct sink *s, struct journal_sink *j, int r, bool connecting)
{
    char why[128];
    if (journal_gone(r)) {
        snprintf(why, sizeof(why), "journald is not listening on \"%s\"", j->path);
    } else {
        snprintf(why, sizeof(why), "cannot %s journald's socket \"%s\"",
                 connecting ? "connect to" : "send to", j->path);
    }
    sink_retry(s, 0, r, why);
}

static void journal_deliver(struct sink *s)
{
    struct journal_sink *j = s->priv;
    bool reconnected = false;
    for (int n = 0; n < JOURNAL_BATCH && sink_head(s);) {
        if (j->fd < 0) {
            int r = journal_connect(j);
            if (r < 0) {
                journal_retry(s, j, r, true);
                return;
            }
            reconnected = true;
        }
        int r = journal_build(s, j, sink_head(s));
        if (r < 0) {
            sink_retry(s, 0, r, "cannot build a journal entry");
            return;
        }
        r = journal_send(j);
        journal_trim(j);
        if (r == 0) {
            sink_ack(s, 1);
            n++;
            continue;
        }
        if (r == -EAGAIN || r == -EWOULDBLOCK) {
            sink_wait(s, 0);
            ev_io_start(s->loop, &j->io);
            return;
        }
        if (journal_gone(r)) {
            /* journald restarted (the peer is gone): once more with a new
             * connection, then back off */
            journal_disconnect(s, j);
            if (!reconnected) {
                continue;
            }
        }
        journal_retry(s, j, r, false);
        return;
    }
}

/* At exit: sends what journald takes before the deadline, waiting for a
 * full socket to drain; no point waiting when journald is not there. */
static void journal_finish(struct sink *s, usec_t deadline)
{
    struct journal_sink *j = s->priv;
    ev_io_stop(s->loop, &j->io);
    while (sink_head(s)) {
        uint64_t before = s->queued;
        s->state = SINK_READY;
        journal_deliver(s);
        ev_io_stop(s->loop, &j->io);
        ev_timer_stop(s->loop, &s->retry_timer);
        if (s->queued != before) {
            continue;
        }
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (s->state != SINK_WAITING || j->fd < 0 || now >= deadline) {
            break;
        }
        struct pollfd pfd = {.fd = j->fd, .events = POLLOUT};
        int ms = (int)((deadline - now) / 1000) + 1;
        if (poll(&pfd, 1, ms) <= 0 || (pfd.revents & (POLLERR | POLLHUP))) {
            break;
        }
    }
}

static void journal_close(struct sink *s)
{
    struct journal_sink *j = s->priv;
    if (!j) {
        return;
    }
    journal_disconnect(s, j);
    buf_done(&j->payload);
    buf_done(&j->msg);
    buf_done(&j->tmp);
    if (j->names) {
        free(j->names->names);
        free(j->names);
    }
    free(j);
    s->priv = NULL;
}

const struct sink_type sink_type_journal = {
    .name = "journal",
    .description = "one native systemd journal entry per record",
    .guarantee = "at most once, counted; delivered = accepted by journald's socket",
    .options = journal_options,
    .check = journal_check,
    .open = journal_open,
    .deliver = journal_deliver,
    .finish = journal_finish,
    .close = journal_close,
};
