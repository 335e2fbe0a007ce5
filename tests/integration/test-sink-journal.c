/* test-sink-journal.c - the journal sink of the real fetchd binary against a
 * FAKE journald: an AF_UNIX datagram socket bound in the test's temp dir,
 * named by the sink's "socket" option.
 *
 * A reader thread drains the socket continuously (the kernel queues only
 * net.unix.max_dgram_qlen datagrams, often 10) and parses every datagram as
 * journald does: "NAME=value\n" and the binary form "NAME\n" + le64 length +
 * value + "\n"; an empty datagram carrying one fd (SCM_RIGHTS) is an entry in
 * a memfd, which must be sealed. Every field name must be valid by
 * journald's rules (journald would drop it silently otherwise), and each
 * datagram must hold exactly one entry.
 *
 * Records come from tests/helpers/httpd (ok, errors, a record larger than a
 * datagram) and from file:// documents written by the test (documents with
 * keys no HTTP test server serves: "temp-c", "ÄÖ", 2000 members...). The
 * same records also go to the stdout sink, so FETCHD_RECORD is compared with
 * the exact JSON line. */
#define _GNU_SOURCE
#include <cJSON.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "testutil.h"

static pid_t httpd_pid;
static int port;
static char *dir;

/* ---- entries ------------------------------------------------------------ */

struct field {
    char *name;
    char *val; /* NUL-terminated copy; len may include NULs */
    size_t len;
    bool binary;
};

struct entry {
    struct field *f;
    size_t n;
    bool via_fd;   /* came in a memfd */
    bool sealed;   /* the memfd had write/grow/shrink seals */
    size_t bytes;  /* payload size */
};

static bool valid_name(const char *p, size_t l)
{
    if (l == 0 || l > 64 || p[0] == '_' || (p[0] >= '0' && p[0] <= '9')) {
        return false;
    }
    for (size_t i = 0; i < l; i++) {
        if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_')) {
            return false;
        }
    }
    return true;
}

static char *memdup0(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s) {
        abort();
    }
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void entry_free(struct entry *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->f[i].name);
        free(e->f[i].val);
    }
    free(e->f);
    memset(e, 0, sizeof(*e));
}

/* Parses one datagram payload; returns NULL or what is wrong (static). */
static const char *entry_parse(const char *p, size_t rem, struct entry *e)
{
    memset(e, 0, sizeof(*e));
    e->bytes = rem;
    if (!rem) {
        return "empty payload";
    }
    while (rem) {
        const char *nl = memchr(p, '\n', rem);
        if (!nl) {
            return "trailing bytes without a newline";
        }
        if (nl == p) {
            return "an empty line (a second entry, or a separator) in the datagram";
        }
        struct field f = {0};
        const char *eq = memchr(p, '=', (size_t)(nl - p));
        size_t namelen = eq ? (size_t)(eq - p) : (size_t)(nl - p);
        bool ok = valid_name(p, namelen);
        if (eq) {
            f.name = memdup0(p, (size_t)(eq - p));
            f.val = memdup0(eq + 1, (size_t)(nl - eq - 1));
            f.len = (size_t)(nl - eq - 1);
            rem -= (size_t)(nl - p) + 1;
            p = nl + 1;
        } else {
            size_t hdr = (size_t)(nl - p) + 1;
            if (rem < hdr + 8 + 1) {
                return "binary field without its length";
            }
            uint64_t l = 0;
            for (int i = 7; i >= 0; i--) {
                l = l << 8 | (unsigned char)nl[1 + i];
            }
            if (l > rem - hdr - 8 - 1 || nl[1 + 8 + l] != '\n') {
                return "binary field with a bad length or no newline after it";
            }
            f.name = memdup0(p, (size_t)(nl - p));
            f.val = memdup0(nl + 9, (size_t)l);
            f.len = (size_t)l;
            f.binary = true;
            rem -= hdr + 8 + (size_t)l + 1;
            p = nl + 9 + l + 1;
        }
        e->f = realloc(e->f, (e->n + 1) * sizeof(*e->f));
        e->f[e->n++] = f;
        if (!ok) {
            return "a field name journald would reject";
        }
    }
    return NULL;
}

static const struct field *field_of(const struct entry *e, const char *name)
{
    for (size_t i = 0; i < e->n; i++) {
        if (strcmp(e->f[i].name, name) == 0) {
            return &e->f[i];
        }
    }
    return NULL;
}

static const struct field *must_field(const struct entry *e, const char *name)
{
    const struct field *f = field_of(e, name);
    ck_assert_msg(f, "no field %s", name);
    return f;
}

static double json_num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    ck_assert_msg(cJSON_IsNumber(v), "no number %s", k);
    return v ? v->valuedouble : 0;
}

static const char *val_of(const struct entry *e, const char *name)
{
    const struct field *f = field_of(e, name);
    return f ? f->val : NULL;
}

static size_t count_of(const struct entry *e, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < e->n; i++) {
        n += strcmp(e->f[i].name, name) == 0;
    }
    return n;
}

/* ---- the fake journald --------------------------------------------------- */

#define FJ_BUF (8u * 1024 * 1024)

static struct {
    int fd;
    char *path;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    atomic_bool draining;
    pthread_mutex_t mu;
    struct entry *v;
    size_t n, cap;
    char problem[512]; /* first protocol error */
} fj = {.fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

static int fj_bind(const char *path, int rcvbuf)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    if (rcvbuf) {
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
    strcpy(sa.sun_path, path);
    unlink(path);
    ck_assert_msg(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind %s: %s", path,
                  strerror(errno));
    return fd;
}

static void fj_problem(const char *what, const char *detail)
{
    pthread_mutex_lock(&fj.mu);
    if (!fj.problem[0]) {
        snprintf(fj.problem, sizeof(fj.problem), "%s%s", what, detail);
    }
    pthread_mutex_unlock(&fj.mu);
}

/* Receives one datagram from fd into e (blocking or not as fd is); returns
 * 1 (got one), 0 (nothing), -1 (error, recorded). */
static int fj_recv(int fd, char *buf, struct entry *e, int flags)
{
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int) * 8)];
    } ctl;
    struct iovec iov = {buf, FJ_BUF};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
                        .msg_controllen = sizeof(ctl)};
    ssize_t k = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | flags);
    if (k < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            return 0;
        }
        fj_problem("recvmsg: ", strerror(errno));
        return -1;
    }
    if (k == 0 && mh.msg_controllen == 0 && atomic_load(&fj.draining)) {
        return 0; /* the end after shutdown(SHUT_RD) */
    }
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        fj_problem("", "a truncated datagram");
        return -1;
    }
    int fds[8], nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            memcpy(fds, CMSG_DATA(c), (size_t)nfds * sizeof(int));
        }
    }
    const char *err;
    if (nfds == 0) {
        err = entry_parse(buf, (size_t)k, e);
    } else if (nfds == 1 && k == 0) {
        /* an entry too large for a datagram: in a sealed memfd */
        struct stat st;
        int seals = fcntl(fds[0], F_GET_SEALS);
        size_t want = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK;
        if (fstat(fds[0], &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > FJ_BUF) {
            close(fds[0]);
            fj_problem("", "the fd passed is not a regular file of sane size");
            return -1;
        }
        ssize_t r = pread(fds[0], buf, (size_t)st.st_size, 0);
        close(fds[0]);
        if (r != st.st_size) {
            fj_problem("", "short read of the memfd");
            return -1;
        }
        err = entry_parse(buf, (size_t)r, e);
        e->via_fd = true;
        e->sealed = seals >= 0 && ((size_t)seals & want) == want;
    } else {
        for (int i = 0; i < nfds; i++) {
            close(fds[i]);
        }
        fj_problem("", "a datagram with both data and fds, or several fds");
        return -1;
    }
    if (err) {
        fj_problem("unparsable datagram: ", err);
        entry_free(e);
        return -1;
    }
    return 1;
}

static void fj_add(struct entry *e)
{
    pthread_mutex_lock(&fj.mu);
    if (fj.n == fj.cap) {
        fj.cap = fj.cap ? fj.cap * 2 : 16;
        fj.v = realloc(fj.v, fj.cap * sizeof(*fj.v));
    }
    fj.v[fj.n++] = *e;
    pthread_mutex_unlock(&fj.mu);
}

static void *fj_main(void *arg)
{
    (void)arg;
    char *buf = malloc(FJ_BUF);
    while (!atomic_load(&fj.stop)) {
        struct pollfd pfd = {.fd = fj.fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0) {
            continue;
        }
        struct entry e;
        if (fj_recv(fj.fd, buf, &e, MSG_DONTWAIT) == 1) {
            fj_add(&e);
        }
    }
    free(buf);
    return NULL;
}

/* Binds the fake journald at dir/name and starts the reader. */
static void fj_start(const char *name)
{
    free(fj.path);
    fj.path = tu_fmt("%s/%s", dir, name);
    fj.fd = fj_bind(fj.path, 0);
    atomic_store(&fj.stop, false);
    ck_assert_int_eq(pthread_create(&fj.thread, NULL, fj_main, NULL), 0);
    fj.started = true;
}

/* Stops the reader, closes and removes the socket (the entries stay).
 * After shutdown(SHUT_RD) a sender gets EPIPE, so every datagram that was
 * accepted is still received here: none is lost in the close. */
static void fj_stop(void)
{
    if (fj.started) {
        atomic_store(&fj.stop, true);
        pthread_join(fj.thread, NULL);
        fj.started = false;
    }
    if (fj.fd >= 0) {
        ck_assert_int_eq(shutdown(fj.fd, SHUT_RD), 0);
        atomic_store(&fj.draining, true);
        char *buf = malloc(FJ_BUF);
        struct entry e;
        while (fj_recv(fj.fd, buf, &e, MSG_DONTWAIT) == 1) {
            fj_add(&e);
        }
        free(buf);
        atomic_store(&fj.draining, false);
        close(fj.fd);
        fj.fd = -1;
        unlink(fj.path);
    }
}

static size_t fj_count(void)
{
    pthread_mutex_lock(&fj.mu);
    size_t n = fj.n;
    pthread_mutex_unlock(&fj.mu);
    return n;
}

static bool fj_wait(size_t n, double timeout_s)
{
    double t0 = tu_now();
    while (fj_count() < n) {
        if (tu_now() - t0 > timeout_s) {
            return false;
        }
        usleep(10000);
    }
    return true;
}

static void fj_clear(void)
{
    for (size_t i = 0; i < fj.n; i++) {
        entry_free(&fj.v[i]);
    }
    free(fj.v);
    fj.v = NULL;
    fj.n = fj.cap = 0;
    fj.problem[0] = '\0';
}

/* The entry of sink and endpoint (exactly one), or a failure. */
static const struct entry *fj_entry(const char *sink, const char *endpoint)
{
    const struct entry *found = NULL;
    for (size_t i = 0; i < fj.n; i++) {
        const char *s = val_of(&fj.v[i], "FETCHD_SINK");
        const char *ep = val_of(&fj.v[i], "FETCHD_ENDPOINT");
        if (s && ep && strcmp(s, sink) == 0 && strcmp(ep, endpoint) == 0) {
            ck_assert_msg(!found, "two entries of sink %s for endpoint %s", sink, endpoint);
            found = &fj.v[i];
        }
    }
    ck_assert_msg(found, "no entry of sink %s for endpoint %s (%zu entries)", sink, endpoint,
                  fj.n);
    return found;
}

/* ---- fixtures ----------------------------------------------------------- */

static void setup(void)
{
    dir = tu_tmpdir();
    httpd_pid = tu_httpd_start(&port);
}

static void teardown(void)
{
    fj_stop();
    fj_clear();
    free(fj.path);
    fj.path = NULL;
    tu_httpd_stop(httpd_pid);
    tu_rmdir(dir);
    free(dir);
}

static void run_once(const char *cfg, struct tu_result *res)
{
    char *path = tu_write(dir, "fetchd.json", cfg);
    const char *argv[] = {tu_fetchd(), "--once", "-c", path, "--log-level", "info", NULL};
    tu_run(argv, 60 * tu_slack(), res);
    free(path);
}

/* The stdout line (without '\n') of an endpoint's record; owned. */
static char *line_of(const char *out, const char *endpoint)
{
    char *key = tu_fmt("{\"endpoint\":\"%s\",", endpoint);
    const char *p = strstr(out, key);
    free(key);
    ck_assert_msg(p && (p == out || p[-1] == '\n'), "no record of %s in:\n%s", endpoint, out);
    const char *nl = strchr(p, '\n');
    ck_assert(nl);
    return memdup0(p, (size_t)(nl - p));
}

static char *json_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    ck_assert_msg(cJSON_IsString(v), "no string %s", k);
    return v ? v->valuestring : NULL;
}

/* Checks the fields every entry has, against the record line; returns the
 * parsed record (caller deletes). */
static cJSON *check_common(const struct entry *e, const char *sink, const char *line,
                           const char *prio, const char *ident)
{
    ck_assert_str_eq(val_of(e, "FETCHD_RECORD"), line);
    ck_assert(!must_field(e, "FETCHD_RECORD")->binary);
    ck_assert_str_eq(val_of(e, "PRIORITY"), prio);
    ck_assert_str_eq(val_of(e, "SYSLOG_IDENTIFIER"), ident);
    ck_assert_str_eq(val_of(e, "FETCHD_SINK"), sink);
    cJSON *rec = cJSON_Parse(line);
    ck_assert(rec);
    ck_assert_str_eq(val_of(e, "FETCHD_ENDPOINT"), json_str(rec, "endpoint"));
    ck_assert_str_eq(val_of(e, "FETCHD_URL"), json_str(rec, "url"));
    ck_assert_str_eq(val_of(e, "FETCHD_FETCHED_AT"), json_str(rec, "fetched_at"));
    for (size_t i = 0; i < e->n; i++) {
        ck_assert_msg(count_of(e, e->f[i].name) == 1, "field %s twice", e->f[i].name);
    }
    ck_assert(!e->via_fd);
    return rec;
}

/* ---- tests -------------------------------------------------------------- */

/* Ok and error records: exact fields, MESSAGE, PRIORITY per outcome, custom
 * priorities and identifier, "records": "errors", one entry per record. */
START_TEST(test_entries)
{
    fj_start("journal.sock");
    char *cfg = tu_fmt(
        "{\"sinks\": {"
        "  \"j\": {\"type\": \"journal\", \"socket\": \"%s\"},"
        "  \"alerts\": {\"type\": \"journal\", \"socket\": \"%s\", \"records\": \"errors\","
        "             \"priority_ok\": 7, \"priority_error\": 2, \"identifier\": \"api-alerts\"}},"
        " \"defaults\": {\"sinks\": [\"j\", \"alerts\", \"stdout\"]},"
        " \"endpoints\": {"
        "  \"weather\": {\"url\": \"http://127.0.0.1:%d/w\"},"
        "  \"down\": {\"url\": \"http://127.0.0.1:%d/x?status=503\"},"
        "  \"slow\": {\"url\": \"http://127.0.0.1:%d/s?delay=3000\", \"timeout\": \"300ms\"}}}",
        fj.path, fj.path, port, port, port);
    struct tu_result res;
    run_once(cfg, &res);
    ck_assert_msg(res.status == 1, "status %d: %s", res.status, res.err);
    ck_assert_uint_eq(tu_lines(res.out), 3);
    /* delivered before exit; the reader may still be receiving */
    ck_assert_msg(fj_wait(5, 5 * tu_slack()), "entries: %zu", fj_count());
    usleep(200000);
    fj_stop();
    ck_assert_msg(!fj.problem[0], "%s", fj.problem);
    ck_assert_uint_eq(fj.n, 5);

    /* ok */
    char *line = line_of(res.out, "weather");
    const struct entry *e = fj_entry("j", "weather");
    cJSON *rec = check_common(e, "j", line, "6", "fetchd");
    char *msg = tu_fmt("weather: ok, HTTP 200, %.0f bytes",
                       json_num(rec, "bytes"));
    ck_assert_str_eq(val_of(e, "MESSAGE"), msg);
    ck_assert_str_eq(val_of(e, "FETCHD_HTTP_STATUS"), "200");
    ck_assert_ptr_null(field_of(e, "FETCHD_ERROR_KIND"));
    ck_assert_uint_eq(e->n, 9); /* and no FETCHD_DATA_* without data_fields */
    free(msg);
    cJSON_Delete(rec);
    free(line);

    /* an HTTP error, in both sinks */
    line = line_of(res.out, "down");
    const char *sinks[] = {"j", "alerts"}, *prios[] = {"4", "2"}, *ids[] = {"fetchd", "api-alerts"};
    for (int i = 0; i < 2; i++) {
        e = fj_entry(sinks[i], "down");
        rec = check_common(e, sinks[i], line, prios[i], ids[i]);
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(rec, "error");
        msg = tu_fmt("down: http_status: %s", json_str(err, "message"));
        ck_assert_str_eq(val_of(e, "MESSAGE"), msg);
        ck_assert_str_eq(val_of(e, "FETCHD_HTTP_STATUS"), "503");
        ck_assert_str_eq(val_of(e, "FETCHD_ERROR_KIND"), "http_status");
        ck_assert_uint_eq(e->n, 10);
        free(msg);
        cJSON_Delete(rec);
    }
    free(line);

    /* a timeout: no status */
    line = line_of(res.out, "slow");
    for (int i = 0; i < 2; i++) {
        e = fj_entry(sinks[i], "slow");
        rec = check_common(e, sinks[i], line, prios[i], ids[i]);
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(rec, "error");
        msg = tu_fmt("slow: timeout: %s", json_str(err, "message"));
        ck_assert_str_eq(val_of(e, "MESSAGE"), msg);
        ck_assert_ptr_null(field_of(e, "FETCHD_HTTP_STATUS"));
        ck_assert_str_eq(val_of(e, "FETCHD_ERROR_KIND"), "timeout");
        ck_assert_uint_eq(e->n, 9);
        free(msg);
        cJSON_Delete(rec);
    }
    free(line);
    /* the ok record did not go to the errors-only sink */
    for (size_t i = 0; i < fj.n; i++) {
        ck_assert(!(strcmp(val_of(&fj.v[i], "FETCHD_SINK"), "alerts") == 0 &&
                    strcmp(val_of(&fj.v[i], "FETCHD_ENDPOINT"), "weather") == 0));
    }
    ck_assert_ptr_null(strstr(res.err, "dropped"));
    free(cfg);
    tu_result_done(&res);
}
END_TEST

static uint32_t fnv(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h;
}

/* data_fields: sanitised names, values as text (strings raw, others as
 * their JSON), duplicates numbered, binary form for newlines and NULs. */
START_TEST(test_data_fields)
{
    char key100[101];
    memset(key100, 'a', 100);
    key100[100] = '\0';
    char *doc = tu_fmt("{\"temp-c\": 21.5, \"temp_c\": \"dup\", \"2x\": \"two\", \"_x\": true,"
                       " \"\xc3\x84\xc3\x96\": \"umlaut\", \"%s\": 1, \"nl\": \"line1\\nline2\","
                       " \"nested\": {\"a\": [1, 2], \"b\": null},"
                       " \"big\": 12345678901234567890123,"
                       " \"nul\": \"a\\u0000b\", \"empty\": \"\", \"esc\": \"t\\t\\\"q\\\" \\u00e9"
                       " \\ud83d\\ude00\", \"nothing\": null, \"Temp-C\": 3, \"\": \"no name\"}",
                       key100);
    char *docpath = tu_write(dir, "doc.json", doc);
    char *arrpath = tu_write(dir, "arr.json", "[1, {\"a\": 2}]");
    fj_start("journal.sock");
    char *cfg = tu_fmt(
        "{\"sinks\": {\"j\": {\"type\": \"journal\", \"socket\": \"%s\", \"data_fields\": true}},"
        " \"defaults\": {\"sinks\": [\"j\", \"stdout\"], \"schemes\": [\"file\"]},"
        " \"endpoints\": {\"doc\": {\"url\": \"file://%s\"}, \"arr\": {\"url\": \"file://%s\"}}}",
        fj.path, docpath, arrpath);
    struct tu_result res;
    run_once(cfg, &res);
    ck_assert_msg(res.status == 0, "status %d: %s", res.status, res.err);
    ck_assert_msg(fj_wait(2, 5 * tu_slack()), "entries: %zu", fj_count());
    usleep(200000);
    fj_stop();
    ck_assert_msg(!fj.problem[0], "%s", fj.problem);
    ck_assert_uint_eq(fj.n, 2);

    char *line = line_of(res.out, "doc");
    const struct entry *e = fj_entry("j", "doc");
    cJSON *rec = check_common(e, "j", line, "6", "fetchd");
    char *msg = tu_fmt("doc: ok, %.0f bytes",
                       json_num(rec, "bytes"));
    ck_assert_str_eq(val_of(e, "MESSAGE"), msg);
    free(msg);
    char *raw = tu_fmt("FETCHD_DATA_%s", key100);
    char *longname = tu_fmt("FETCHD_DATA_%.43s_%08X",
                            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", fnv(raw));
    free(raw);
    static const struct {
        const char *name, *val;
        size_t len;
        bool binary;
    } want[] = {
        {"FETCHD_DATA_TEMP_C", "21.5", 4, false},
        {"FETCHD_DATA_TEMP_C_2", "dup", 3, false},
        {"FETCHD_DATA_2X", "two", 3, false},
        {"FETCHD_DATA__X", "true", 4, false},
        {"FETCHD_DATA__", "umlaut", 6, false},
        {NULL, "1", 1, false}, /* the 100-character key */
        {"FETCHD_DATA_NL", "line1\nline2", 11, true},
        {"FETCHD_DATA_NESTED", "{\"a\":[1,2],\"b\":null}", 20, false},
        {"FETCHD_DATA_BIG", "12345678901234567890123", 23, false},
        {"FETCHD_DATA_NUL", "a\0b", 3, true},
        {"FETCHD_DATA_EMPTY", "", 0, false},
        {"FETCHD_DATA_ESC", "t\t\"q\" \xc3\xa9 \xf0\x9f\x98\x80", 13, false},
        {"FETCHD_DATA_NOTHING", "null", 4, false},
        {"FETCHD_DATA_TEMP_C_3", "3", 1, false},
        {"FETCHD_DATA_", "no name", 7, false},
    };
    /* the fixed fields, then the data fields in document order */
    ck_assert_uint_eq(e->n, 8 + sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct field *f = &e->f[8 + i];
        const char *name = want[i].name ? want[i].name : longname;
        ck_assert_msg(strcmp(f->name, name) == 0, "field %zu: %s, want %s", i, f->name, name);
        ck_assert_uint_eq(strlen(f->name), want[i].name ? strlen(want[i].name) : 64);
        ck_assert_msg(f->len == want[i].len && memcmp(f->val, want[i].val, f->len) == 0,
                      "%s: \"%s\" (%zu bytes)", name, f->val, f->len);
        ck_assert_msg(f->binary == want[i].binary, "%s: binary %d", name, f->binary);
    }
    free(longname);
    cJSON_Delete(rec);
    free(line);

    /* "data" that is not an object: no data fields */
    line = line_of(res.out, "arr");
    e = fj_entry("j", "arr");
    rec = check_common(e, "j", line, "6", "fetchd");
    ck_assert_uint_eq(e->n, 8);
    for (size_t i = 0; i < e->n; i++) {
        ck_assert(strncmp(e->f[i].name, "FETCHD_DATA_", 12) != 0);
    }
    cJSON_Delete(rec);
    free(line);
    free(cfg);
    free(docpath);
    free(arrpath);
    free(doc);
    tu_result_done(&res);
}
END_TEST

/* The datagram limit of an AF_UNIX socket is about its send buffer
 * (net.core.wmem_default unless the sender raises it). */
static long dgram_limit(void)
{
    long v = 212992;
    FILE *f = fopen("/proc/sys/net/core/wmem_default", "r");
    if (f) {
        if (fscanf(f, "%ld", &v) != 1) {
            v = 212992;
        }
        fclose(f);
    }
    return v;
}

/* A record larger than a datagram goes in a sealed memfd; a small one in
 * the same run still goes as a datagram. */
START_TEST(test_large_record_memfd)
{
    long size = dgram_limit() + 100 * 1024;
    if (size < 300 * 1024) {
        size = 300 * 1024;
    }
    fj_start("journal.sock");
    char *cfg = tu_fmt(
        "{\"limits\": {\"max_body_size\": \"64MiB\"},"
        " \"sinks\": {\"j\": {\"type\": \"journal\", \"socket\": \"%s\", \"data_fields\": true}},"
        " \"defaults\": {\"sinks\": [\"j\", \"stdout\"], \"max_body_size\": \"64MiB\"},"
        " \"endpoints\": {\"big\": {\"url\": \"http://127.0.0.1:%d/big?size=%ld\"},"
        "               \"small\": {\"url\": \"http://127.0.0.1:%d/small\"}}}",
        fj.path, port, size, port);
    struct tu_result res;
    run_once(cfg, &res);
    ck_assert_msg(res.status == 0, "status %d: %s", res.status, res.err);
    ck_assert_msg(fj_wait(2, 5 * tu_slack()), "entries: %zu", fj_count());
    usleep(200000);
    fj_stop();
    ck_assert_msg(!fj.problem[0], "%s", fj.problem);
    ck_assert_uint_eq(fj.n, 2);

    char *line = line_of(res.out, "big");
    ck_assert_uint_gt(strlen(line), (size_t)size);
    const struct entry *e = fj_entry("j", "big");
    ck_assert(e->via_fd);
    ck_assert(e->sealed);
    ck_assert_uint_gt(e->bytes, (size_t)dgram_limit());
    ck_assert_str_eq(val_of(e, "FETCHD_RECORD"), line);
    const struct field *pad = must_field(e, "FETCHD_DATA_PAD");
    ck_assert_uint_eq(pad->len, (size_t)size - 10); /* {"pad":"..."} */
    ck_assert_uint_eq(strspn(pad->val, "x"), pad->len);
    char *msg = tu_fmt("big: ok, HTTP 200, %ld bytes", size);
    ck_assert_str_eq(val_of(e, "MESSAGE"), msg);
    free(msg);
    free(line);

    e = fj_entry("j", "small");
    ck_assert(!e->via_fd);
    free(cfg);
    tu_result_done(&res);
}
END_TEST

/* 2000 top-level members: the entry stays below journald's 1024 fields,
 * what is left out is counted, and that is logged once per sink. */
START_TEST(test_many_members)
{
    char *doc = malloc(2000 * 24 + 16);
    size_t off = 0;
    doc[off++] = '{';
    for (int i = 0; i < 2000; i++) {
        off += (size_t)sprintf(doc + off, "%s\"k%d\":%d", i ? "," : "", i, i);
    }
    strcpy(doc + off, "}");
    char *docpath = tu_write(dir, "doc.json", doc);
    fj_start("journal.sock");
    char *cfg = tu_fmt(
        "{\"sinks\": {\"j\": {\"type\": \"journal\", \"socket\": \"%s\", \"data_fields\": true}},"
        " \"defaults\": {\"sinks\": [\"j\"], \"schemes\": [\"file\"]},"
        " \"endpoints\": {\"m1\": {\"url\": \"file://%s\"}, \"m2\": {\"url\": \"file://%s\"}}}",
        fj.path, docpath, docpath);
    struct tu_result res;
    run_once(cfg, &res);
    ck_assert_msg(res.status == 0, "status %d: %s", res.status, res.err);
    ck_assert_msg(fj_wait(2, 5 * tu_slack()), "entries: %zu", fj_count());
    usleep(200000);
    fj_stop();
    ck_assert_msg(!fj.problem[0], "%s", fj.problem);
    ck_assert_uint_eq(fj.n, 2);
    for (size_t k = 0; k < 2; k++) {
        const struct entry *e = &fj.v[k];
        ck_assert_uint_lt(e->n, 1024);
        ck_assert_uint_ge(e->n, 900);
        /* FETCHD_DATA_K0 .. K<n-1> in order, then the count of the rest */
        size_t first = 0;
        while (first < e->n && strncmp(e->f[first].name, "FETCHD_DATA_", 12) != 0) {
            first++;
        }
        size_t n = 0;
        for (size_t i = first; i < e->n && strncmp(e->f[i].name, "FETCHD_DATA_", 12) == 0; i++) {
            char want[32];
            snprintf(want, sizeof(want), "FETCHD_DATA_K%zu", n);
            ck_assert_str_eq(e->f[i].name, want);
            snprintf(want, sizeof(want), "%zu", n);
            ck_assert_str_eq(e->f[i].val, want);
            n++;
        }
        ck_assert_uint_eq(first + n + 1, e->n);
        ck_assert_str_eq(e->f[e->n - 1].name, "FETCHD_OMITTED_DATA_FIELDS");
        char left[32];
        snprintf(left, sizeof(left), "%zu", 2000 - n);
        ck_assert_str_eq(e->f[e->n - 1].val, left);
    }
    /* logged once for the sink, not once per record */
    const char *p = strstr(res.err, "top-level members in \"data\"");
    ck_assert_msg(p, "%s", res.err);
    ck_assert_ptr_null(strstr(p + 1, "top-level members in \"data\""));
    ck_assert_ptr_nonnull(strstr(res.err, "sink 'j': a record of endpoint 'm"));
    free(cfg);
    free(docpath);
    free(doc);
    tu_result_done(&res);
}
END_TEST

/* No journald: the socket does not exist (ENOENT), or exists with nobody
 * bound to it (ECONNREFUSED). --once ends within shutdown_grace, the record
 * is counted lost, exit 74, and the log says why. */
START_TEST(test_journald_absent)
{
    char *sock = tu_fmt("%s/journal.sock", dir);
    const char *errtext = "No such file or directory";
    if (_i == 1) {
        int fd = fj_bind(sock, 0);
        close(fd); /* the file stays, nobody listens */
        errtext = "Connection refused";
    }
    char *cfg = tu_fmt(
        "{\"limits\": {\"shutdown_grace\": \"1s\"},"
        " \"sinks\": {\"j\": {\"type\": \"journal\", \"socket\": \"%s\"}},"
        " \"endpoints\": {\"one\": {\"url\": \"http://127.0.0.1:%d/one\", \"sinks\": [\"j\"]}}}",
        sock, port);
    struct tu_result res;
    run_once(cfg, &res);
    ck_assert_msg(res.status == 74, "status %d: %s", res.status, res.err);
    ck_assert_msg(res.seconds < 1 + 3 * tu_slack(), "took %.2f s", res.seconds);
    char *want = tu_fmt("sink 'j': cannot deliver: journald is not listening on \"%s\": %s; 1 "
                        "record queued",
                        sock, errtext);
    ck_assert_msg(strstr(res.err, want), "no \"%s\" in:\n%s", want, res.err);
    free(want);
    ck_assert_msg(strstr(res.err, "sink 'j': 1 record still queued when the sink closed is lost"),
                  "%s", res.err);
    ck_assert_msg(strstr(res.err, "sink 'j': produced 1, delivered 0, queued 0, dropped 1 "
                                  "(overflow 0, failed 0, abandoned 1)"),
                  "%s", res.err);
    free(cfg);
    free(sock);
    tu_result_done(&res);
}
END_TEST

/* Parses the last summary line of sink name in log text. */
static bool summary_of(const char *log, const char *name, unsigned long long v[4])
{
    char *key = tu_fmt("sink '%s': produced ", name);
    const char *p = NULL;
    for (const char *q = strstr(log, key); q; q = strstr(q + 1, key)) {
        p = q;
    }
    bool ok = p && sscanf(p + strlen(key) - strlen("produced "),
                          "produced %llu, delivered %llu, queued %llu, dropped %llu", &v[0], &v[1],
                          &v[2], &v[3]) == 4;
    free(key);
    return ok;
}

/* A journald that never reads: fetchd does not stall. Fetching goes on,
 * the small queue overflows (counted), SIGTERM stops it promptly, and
 * exactly the records counted delivered are waiting in the socket. */
START_TEST(test_journald_stalled)
{
    char *sock = tu_fmt("%s/journal.sock", dir);
    int fd = fj_bind(sock, 4096);
    char *cfg = tu_fmt(
        "{\"limits\": {\"shutdown_grace\": \"1s\"},"
        " \"sinks\": {\"j\": {\"type\": \"journal\", \"socket\": \"%s\","
        "                   \"queue_max_records\": 3}},"
        " \"endpoints\": {\"e\": {\"url\": \"http://127.0.0.1:%d/e?size=30000\","
        "                       \"interval\": \"50ms\", \"sinks\": [\"j\"]}}}",
        sock, port);
    char *path = tu_write(dir, "fetchd.json", cfg);
    char *errpath = tu_fmt("%s/err.log", dir);
    const char *argv[] = {tu_fetchd(), "-c", path, "--log-level", "info", NULL};
    pid_t pid = tu_spawn(argv, NULL, errpath);
    ck_assert_int_gt(pid, 0);
    /* wait for the first drop */
    double t0 = tu_now();
    char *log = NULL;
    for (;;) {
        free(log);
        log = tu_read(errpath);
        if (log && strstr(log, "dropped: queue full")) {
            break;
        }
        if (tu_now() - t0 > 20 * tu_slack()) {
            kill(pid, SIGKILL);
            tu_wait(pid, 5);
            ck_abort_msg("no drop within %.0f s:\n%s", 20 * tu_slack(), log ? log : "");
        }
        usleep(50000);
    }
    /* the loop is alive: fetches go on while journald does not read */
    long before = tu_httpd_requests(port);
    bool more = tu_httpd_wait_requests(port, before + 3, 10 * tu_slack());
    double ts = tu_now();
    kill(pid, SIGTERM);
    int status = tu_wait(pid, 30 * tu_slack());
    double took = tu_now() - ts;
    ck_assert_msg(more, "fetching stalled at %ld requests", before);
    ck_assert_msg(status == 74, "status %d", status);
    /* grace 1s, then at most 2s of a last attempt */
    ck_assert_msg(took < 3 + 2 * tu_slack(), "stopping took %.2f s", took);
    free(log);
    log = tu_read(errpath);
    unsigned long long v[4];
    ck_assert_msg(summary_of(log, "j", v), "no summary in:\n%s", log);
    ck_assert_uint_eq(v[2], 0);
    ck_assert_uint_eq(v[1] + v[3], v[0]);
    ck_assert_uint_gt(v[3], 0);
    ck_assert_uint_gt(v[1], 0);
    /* exactly the delivered records wait in the socket, whole */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    char *buf = malloc(FJ_BUF);
    unsigned long long got = 0;
    struct entry e;
    int r;
    while ((r = fj_recv(fd, buf, &e, MSG_DONTWAIT)) == 1) {
        ck_assert_str_eq(val_of(&e, "FETCHD_ENDPOINT"), "e");
        ck_assert_uint_gt(strlen(val_of(&e, "FETCHD_RECORD")), 30000);
        entry_free(&e);
        got++;
    }
    ck_assert_msg(r == 0 && !fj.problem[0], "%s", fj.problem);
    ck_assert_uint_eq(got, v[1]);
    free(buf);
    close(fd);
    free(log);
    free(errpath);
    free(path);
    free(cfg);
    free(sock);
}
END_TEST

/* journald restarts (its socket goes away and comes back): fetchd
 * reconnects and goes on, nothing lost. */
START_TEST(test_journald_restart)
{
    fj_start("journal.sock");
    char *cfg = tu_fmt(
        "{\"limits\": {\"shutdown_grace\": \"5s\"},"
        " \"sinks\": {\"j\": {\"type\": \"journal\", \"socket\": \"%s\","
        "                   \"retry_backoff\": \"100ms\", \"retry_max_backoff\": \"200ms\"}},"
        " \"endpoints\": {\"e\": {\"url\": \"http://127.0.0.1:%d/e\", \"interval\": \"100ms\","
        "                       \"sinks\": [\"j\"]}}}",
        fj.path, port);
    char *path = tu_write(dir, "fetchd.json", cfg);
    char *errpath = tu_fmt("%s/err.log", dir);
    const char *argv[] = {tu_fetchd(), "-c", path, "--log-level", "info", NULL};
    pid_t pid = tu_spawn(argv, NULL, errpath);
    bool first = fj_wait(3, 20 * tu_slack());
    /* journald goes away for a while, then a new one binds the path */
    fj_stop();
    size_t n1 = fj.n;
    usleep(500000);
    fj_start("journal.sock");
    bool second = fj_wait(n1 + 3, 20 * tu_slack());
    kill(pid, SIGTERM);
    int status = tu_wait(pid, 30 * tu_slack());
    usleep(200000);
    fj_stop();
    char *log = tu_read(errpath);
    ck_assert_msg(first && second, "entries %zu then %zu:\n%s", n1, fj.n, log);
    ck_assert_msg(status == 0, "status %d:\n%s", status, log);
    ck_assert_msg(!fj.problem[0], "%s", fj.problem);
    unsigned long long v[4];
    ck_assert_msg(summary_of(log, "j", v), "no summary in:\n%s", log);
    ck_assert_uint_eq(v[3], 0);
    ck_assert_uint_eq(v[1], v[0]);
    ck_assert_uint_eq(v[1], fj.n);
    ck_assert_msg(strstr(log, "sink 'j': delivering again after"), "%s", log);
    free(log);
    free(errpath);
    free(path);
    free(cfg);
}
END_TEST

/* Bad options are configuration errors. */
START_TEST(test_bad_options)
{
    static const char *const bad[] = {
        "\"priority_ok\": 8", "\"priority_error\": 9", "\"identifier\": \"\"",
        "\"socket\": \"/tmp/" /* too long for sun_path */
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
    };
    static const char *const why[] = {"priority_ok", "priority_error", "identifier", "socket"};
    char *cfg = tu_fmt("{\"sinks\": {\"j\": {\"type\": \"journal\", %s}},"
                       " \"endpoints\": {\"e\": {\"url\": \"http://127.0.0.1:%d/e\","
                       " \"sinks\": [\"j\"]}}}",
                       bad[_i], port);
    struct tu_result res;
    run_once(cfg, &res);
    ck_assert_msg(res.status == 78, "status %d: %s", res.status, res.err);
    ck_assert_msg(strstr(res.err, why[_i]), "%s", res.err);
    ck_assert_uint_eq(tu_httpd_requests(port), 0);
    free(cfg);
    tu_result_done(&res);
}
END_TEST

/* ---- fetchd's own log lines ----------------------------------------------- */

/* fetchd logs to journald's fixed socket, /run/systemd/journal/socket: the
 * test runs in a child with its own mount namespace and a tmpfs on /run,
 * where it binds the fake journald. The child reports by exit status:
 * 0 good, 10 no namespace (skip), else the failed step (message on stderr). */
static int own_log_child(const char *cfg_path)
{
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", "/run", "tmpfs", 0, "size=1m") < 0) {
        fprintf(stderr, "no private mount namespace: %s\n", strerror(errno));
        return 10;
    }
    if (mkdir("/run/systemd", 0755) < 0 || mkdir("/run/systemd/journal", 0755) < 0) {
        return 11;
    }
    /* a journald that does not read: the socket fills at once */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int small = 4096;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "/run/systemd/journal/socket"};
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        return 12;
    }
    char *out = tu_fmt("%s/own.out", dir), *err = tu_fmt("%s/own.err", dir);
    const char *argv[] = {tu_fetchd(), "-c", cfg_path, "--log-target", "journal",
                          "--log-level", "debug", NULL};
    pid_t pid = tu_spawn(argv, out, err);
    /* stalled for 2 s while 40 endpoints fail every 50 ms: hundreds of log
     * lines that cannot go anywhere; fetchd must go on */
    usleep((useconds_t)(500000 * tu_slack()));
    long r0 = tu_httpd_requests(port);
    usleep((useconds_t)(1500000 * tu_slack()));
    long r1 = tu_httpd_requests(port);
    if (kill(pid, 0) < 0) {
        fprintf(stderr, "fetchd died while journald stalled\n");
        return 13;
    }
    if (r1 - r0 < 100) { /* 40 endpoints every 50 ms: ~1200 */
        fprintf(stderr, "fetching stalled with journald: %ld requests in 1.5 s\n", r1 - r0);
        return 17;
    }
    /* journald catches up: read everything; the next message after the
     * backlog (a reload's) must come with the count of the dropped ones */
    char *buf = malloc(FJ_BUF);
    size_t got = 0;
    bool dropped_msg = false, endpoint_field = false, prio_field = false, hupped = false;
    double end = tu_now() + 10 * tu_slack();
    while (tu_now() < end && !dropped_msg) {
        struct entry e = {0};
        int r = fj_recv(fd, buf, &e, MSG_DONTWAIT);
        if (r < 0) {
            fprintf(stderr, "bad datagram: %s\n", fj.problem);
            return 14;
        }
        if (r == 0) {
            if (!hupped) {
                kill(pid, SIGHUP);
                hupped = true;
            }
            usleep(10000);
            continue;
        }
        got++;
        const char *m = val_of(&e, "MESSAGE");
        dropped_msg |= m && strstr(m, "log messages were dropped: journald did not take them");
        endpoint_field |= val_of(&e, "FETCHD_ENDPOINT") != NULL;
        prio_field |= val_of(&e, "PRIORITY") != NULL && val_of(&e, "CODE_FUNC") != NULL;
        entry_free(&e);
    }
    /* stalled again, then stopped: the messages of the stop are dropped too,
     * and the count must still arrive, from log_done() at exit, which waits
     * up to 0.5 s for journald (that reads again 0.2 s after the SIGTERM) */
    bool exit_count = !dropped_msg; /* (no phase 2 after a failed phase 1) */
    if (dropped_msg) {
        /* (per-endpoint messages are rate-limited by now: reloads log two
         * notices each, more than the socket's queue holds) */
        for (int i = 0; i < 20; i++) {
            kill(pid, SIGHUP);
            usleep((useconds_t)(50000 * tu_slack()));
        }
        kill(pid, SIGTERM);
        usleep(200000);
        end = tu_now() + 5 * tu_slack();
        while (tu_now() < end && !exit_count) {
            struct entry e = {0};
            int r = fj_recv(fd, buf, &e, MSG_DONTWAIT);
            if (r < 0) {
                fprintf(stderr, "bad datagram: %s\n", fj.problem);
                return 14;
            }
            if (r == 0) {
                usleep(10000);
                continue;
            }
            const char *m = val_of(&e, "MESSAGE");
            exit_count |= m && strstr(m, "dropped: journald did not take them");
            entry_free(&e);
        }
    }
    free(buf);
    if (!dropped_msg) {
        kill(pid, SIGTERM); /* (else stopped in phase 2: a second one could
                             * find it past its handlers, in its last 0.5 s) */
    }
    int st = tu_wait(pid, 30 * tu_slack());
    char *errtext = tu_read(err);
    if (!exit_count) {
        fprintf(stderr, "no count of the messages dropped during the stop\n");
        return 18;
    }
    if (!dropped_msg || !endpoint_field || !prio_field) {
        fprintf(stderr,
                "%zu entries; dropped-count message %d, FETCHD_ENDPOINT %d, PRIORITY %d\n"
                "stderr: %s\n",
                got, dropped_msg, endpoint_field, prio_field, errtext ? errtext : "");
        return 15;
    }
    if (st != 0) {
        fprintf(stderr, "fetchd exited with %d after SIGTERM; stderr: %s\n", st,
                errtext ? errtext : "");
        return 16;
    }
    free(errtext);
    free(out);
    free(err);
    return 0;
}

START_TEST(test_own_log_journald_stalled)
{
    char *cfg = tu_fmt("{\"defaults\": {\"interval\": \"50ms\", \"breaker\": false},"
                       " \"endpoints\": {");
    for (int i = 0; i < 40; i++) {
        char *n = tu_fmt("%s%s\"down%02d\": {\"url\": \"http://127.0.0.1:%d/x?status=500\"}", cfg,
                         i ? ", " : "", i, port);
        free(cfg);
        cfg = n;
    }
    char *full = tu_fmt("%s}}", cfg);
    char *path = tu_write(dir, "own.json", full);
    free(cfg);
    free(full);
    fflush(NULL);
    pid_t c = fork();
    ck_assert_int_ge(c, 0);
    if (c == 0) {
        /* exit through an exec: under the valgrind setup this test process
         * is valgrind's, and the child's exit would be judged by its leak
         * check (Check's own allocations) instead of by the code */
        char code[16];
        snprintf(code, sizeof(code), "%d", own_log_child(path));
        execl("/bin/sh", "sh", "-c", "exit \"$0\"", code, (char *)NULL);
        _exit(127);
    }
    int ws = 0;
    ck_assert_int_eq(waitpid(c, &ws, 0), c);
    free(path);
    ck_assert_msg(WIFEXITED(ws), "the namespace child died");
    if (WEXITSTATUS(ws) == 10) {
        return; /* no private mount namespace (not root): nothing to test */
    }
    ck_assert_msg(WEXITSTATUS(ws) == 0,
                  "fetchd's own logging with a stalled journald: step %d failed (see stderr)",
                  WEXITSTATUS(ws));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sink-journal");
    TCase *tc = tcase_create("all");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_entries);
    tcase_add_test(tc, test_data_fields);
    tcase_add_test(tc, test_large_record_memfd);
    tcase_add_test(tc, test_many_members);
    tcase_add_loop_test(tc, test_journald_absent, 0, 2);
    tcase_add_test(tc, test_journald_stalled);
    tcase_add_test(tc, test_journald_restart);
    tcase_add_test(tc, test_own_log_journald_stalled);
    tcase_add_loop_test(tc, test_bad_options, 0, 4);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
