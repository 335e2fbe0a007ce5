/* test-sink-edge.c - edge cases of the stdout and file sinks found by a
 * review, each with the real fetchd binary and the test HTTP server:
 *
 *   stdout_file_hole     stdout redirected to a regular file opened without
 *                        O_APPEND, on a tmpfs that fills up mid-record: the
 *                        repair of the short write must move the offset back
 *                        (no NUL hole), whole JSON lines only
 *   fifo_reload_partial  a file sink on a FIFO, the reader stops with half a
 *                        record in the pipe, SIGHUP (same FIFO, or a new
 *                        one): delivery goes on, every delivered record is
 *                        a whole line, at most the cut one is lost
 *   fifo_no_reader       a file sink on a FIFO whose reader went away, SIGHUP,
 *                        SIGTERM: fetchd exits in time (open() must not block);
 *                        and a FIFO without a reader at start-up
 *   pause_retry_reload   overflow "pause", endpoints in the middle of their
 *                        retries, SIGHUP while paused: they are fetched again
 *                        once the sink drains
 *   two_stdout           two used stdout sinks are a configuration error
 *                        (exit 78, both named), also checked with config_load
 *   once_slow_reader     --once, a slow but steady reader: shutdown_grace is
 *                        not a hard deadline, every record arrives
 *   once_reader_gone     --once, the reader of stdout closes after one line:
 *                        fetchd exits at once with 74
 *   shared_stderr        stdout and stderr on one pipe (2>&1), slow reader:
 *                        no log line is lost although stdout is non-blocking
 *   shared_stderr_stuck  the same pipe, nobody reads: waiting for room for
 *                        log lines must not stall the loop line after line
 *
 * Counters come from the per-sink summary "produced N, delivered N, queued
 * N, dropped N (overflow N, failed N, abandoned N), retried N" that fetchd
 * logs every limits.stats_interval and at exit; every test compares them
 * with the bytes that arrived.
 *
 * Readers of pipes run in a thread of the test process (struct reader),
 * at a set pace. The mount test runs in a private mount namespace (see
 * test-sink-file.c) and prints "SKIP: ..." without root.
 *
 * In fork mode (Check's default) a failed check exits the test process at
 * once, without the teardown: ensure() cleans up first. */
#define _GNU_SOURCE
#include <cJSON.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "testutil.h"

static pid_t httpd_pid, httpd2_pid, httpd3_pid;
static int port, port2, port3;
static char *dir;
static pid_t child; /* the fetchd under test; 0 when none runs */
static char *cfg_path, *err_path;

/* mounts to undo and fds to close, in cleanup() */
static char *mounts[4];
static size_t n_mounts;
static int fds[8];
static size_t n_fds;

/* memory a failing check would leak in CK_FORK=no mode (valgrind) */
static void *gc_list[128];
static size_t gc_n;
static char *fail_msg;

static void reader_stop_all(void);

static void *gc(void *p)
{
    if (gc_n < sizeof(gc_list) / sizeof(gc_list[0])) {
        gc_list[gc_n++] = p;
    } else {
        abort(); /* a test must not need this many */
    }
    return p;
}

/* fd is closed by cleanup() (unless forget_fd() took it back). */
static int keep_fd(int fd)
{
    if (fd >= 0 && n_fds < sizeof(fds) / sizeof(fds[0])) {
        fds[n_fds++] = fd;
    }
    return fd;
}

/* Takes fd off cleanup()'s list (someone else closes it now). */
static void forget_fd(int fd)
{
    for (size_t i = 0; i < n_fds; i++) {
        if (fds[i] == fd) {
            fds[i] = fds[--n_fds];
            break;
        }
    }
}

/* Closes fd now and takes it off cleanup()'s list. */
static void close_fd(int fd)
{
    forget_fd(fd);
    close(fd);
}

/* Kills what runs, stops the readers, undoes the mounts, removes the temp
 * dir. Safe to call twice (ensure() calls it before failing; the teardown
 * again). */
static void cleanup(void)
{
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        child = 0;
    }
    reader_stop_all();
    if (httpd_pid > 0) {
        tu_httpd_stop(httpd_pid);
        httpd_pid = 0;
    }
    if (httpd2_pid > 0) {
        tu_httpd_stop(httpd2_pid);
        httpd2_pid = 0;
    }
    if (httpd3_pid > 0) {
        tu_httpd_stop(httpd3_pid);
        httpd3_pid = 0;
    }
    while (n_fds) {
        close(fds[--n_fds]);
    }
    while (n_mounts) {
        n_mounts--;
        if (umount2(mounts[n_mounts], MNT_DETACH) < 0) {
            fprintf(stderr, "umount %s: %s\n", mounts[n_mounts], strerror(errno));
        }
        free(mounts[n_mounts]);
        mounts[n_mounts] = NULL;
    }
    if (dir) {
        tu_rmdir(dir);
        free(dir);
        dir = NULL;
    }
    for (size_t i = 0; i < gc_n; i++) {
        free(gc_list[i]);
    }
    gc_n = 0;
    free(cfg_path);
    free(err_path);
    cfg_path = err_path = NULL;
}

/* fetchd's stderr (its last 2000 bytes), for failure messages */
static char *diag(void)
{
    char *err = err_path ? tu_read(err_path) : NULL;
    const char *e = err ? err : "";
    size_t el = strlen(e);
    if (el > 2000) {
        e += el - 2000;
    }
    char *s = tu_fmt("\n--- fetchd stderr (end) ---\n%s", e);
    free(err);
    return gc(s);
}

#define ensure(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            free(fail_msg);                                                                        \
            fail_msg = tu_fmt(__VA_ARGS__);                                                        \
            if (strlen(fail_msg) > 3000) {                                                         \
                memmove(fail_msg + 1000, fail_msg + strlen(fail_msg) - 2000, 2001);                \
                memcpy(fail_msg + 995, "[...]", 5); /* Check's messages are bounded */             \
            }                                                                                      \
            cleanup();                                                                             \
            ck_abort_msg("%s: %s", #cond, fail_msg);                                               \
        }                                                                                          \
    } while (0)

static void setup(void)
{
    dir = tu_tmpdir();
    httpd_pid = tu_httpd_start(&port);
    cfg_path = tu_fmt("%s/fetchd.json", dir);
    err_path = tu_fmt("%s/err", dir);
    /* fetchd must not talk to a systemd the test may run under */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

static void teardown(void)
{
    cleanup();
    free(fail_msg);
    fail_msg = NULL;
}

#define SKIP_UNLESS(cond, why)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s: SKIP: %s\n", __func__, (why));                                    \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* ---- mounts (as in test-sink-file.c) -------------------------------------------- */

static bool ns_private;
static char ns_why[256];

/* A private mount namespace for this process (and so for fetchd). */
static bool private_mounts(void)
{
    if (ns_private) {
        return true;
    }
    if (geteuid() != 0) {
        snprintf(ns_why, sizeof(ns_why), "needs root for mount(2) (euid %d)", (int)geteuid());
        return false;
    }
    if (unshare(CLONE_NEWNS) < 0) {
        snprintf(ns_why, sizeof(ns_why), "unshare(CLONE_NEWNS): %s", strerror(errno));
        return false;
    }
    if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0) {
        snprintf(ns_why, sizeof(ns_why), "making / private: %s", strerror(errno));
        return false;
    }
    ns_private = true;
    return true;
}

/* Mounts a tmpfs at dir/name with the given options; returns the path
 * (gc'd) or NULL with the reason in ns_why. */
static char *mount_tmpfs(const char *name, const char *opts)
{
    if (!private_mounts()) {
        return NULL;
    }
    char *path = gc(tu_fmt("%s/%s", dir, name));
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        snprintf(ns_why, sizeof(ns_why), "mkdir %s: %s", path, strerror(errno));
        return NULL;
    }
    if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) {
        snprintf(ns_why, sizeof(ns_why), "mount -t tmpfs -o %s: %s", opts, strerror(errno));
        return NULL;
    }
    ck_assert(n_mounts < sizeof(mounts) / sizeof(mounts[0]));
    mounts[n_mounts++] = strdup(path);
    return path;
}

/* Writes up to max bytes to path, stopping at ENOSPC; returns the bytes
 * written. */
static size_t fill(const char *path, size_t max)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ensure(fd >= 0, "open %s: %s", path, strerror(errno));
    static const char buf[4096] = {'f'};
    size_t done = 0;
    while (done < max) {
        size_t n = max - done < sizeof(buf) ? max - done : sizeof(buf);
        ssize_t k = write(fd, buf, n);
        if (k <= 0) {
            ensure(k < 0 && (errno == ENOSPC || errno == EINTR), "filling %s: %s", path,
                   k < 0 ? strerror(errno) : "wrote 0");
            if (errno == ENOSPC) {
                break;
            }
            continue;
        }
        done += (size_t)k;
    }
    close(fd);
    return done;
}

/* ---- fetchd ---------------------------------------------------------------- */

/* Starts fetchd (under FETCHD_WRAPPER, the valgrind setup's, if set) with
 * -c cfg_path --log-level info --log-target stderr and the NULL-terminated
 * extra arguments; stdout goes to out_fd (-1: /dev/null), stderr to err_fd
 * (-1: err_path). fetchd dies with the test process (PR_SET_PDEATHSIG). */
static pid_t spawn_fetchd(const char *const *extra, int out_fd, int err_fd)
{
    const char *v[80];
    size_t k = 0;
    const char *w = getenv("FETCHD_WRAPPER");
    char *copy = w && *w ? strdup(w) : NULL;
    for (char *tok = copy ? strtok(copy, " ") : NULL; tok && k < 60; tok = strtok(NULL, " ")) {
        v[k++] = tok;
    }
    v[k++] = tu_fetchd();
    v[k++] = "-c";
    v[k++] = cfg_path;
    v[k++] = "--log-level";
    v[k++] = "info";
    v[k++] = "--log-target";
    v[k++] = "stderr";
    for (size_t i = 0; extra && extra[i] && k < 78; i++) {
        v[k++] = extra[i];
    }
    v[k] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int in = open("/dev/null", O_RDONLY);
        int out = out_fd >= 0 ? out_fd : open("/dev/null", O_WRONLY);
        int err = err_fd >= 0 ? err_fd : open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0) {
            _exit(126);
        }
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execvp(v[0], (char *const *)v);
        _exit(127);
    }
    free(copy);
    ck_assert_int_gt(pid, 0);
    return pid;
}

static void write_cfg(const char *text)
{
    free(tu_write(dir, "fetchd.json", text));
}

/* Daemon mode with this config; stdout to out_fd (-1: /dev/null). */
static void start_fetchd(const char *cfg_text, int out_fd)
{
    write_cfg(cfg_text);
    child = spawn_fetchd(NULL, out_fd, -1);
}

/* Waits for the child up to timeout_s; its exit status, or -1 if it had to
 * be killed. *secs gets the time it took. */
static int wait_child(double timeout_s, double *secs)
{
    double t0 = tu_now();
    int st = tu_wait(child, timeout_s);
    child = 0;
    if (secs) {
        *secs = tu_now() - t0;
    }
    return st;
}

/* SIGTERM, then waits up to timeout_s; see wait_child. */
static int stop_fetchd(double timeout_s, double *secs)
{
    ensure(child > 0 && kill(child, SIGTERM) == 0, "kill: %s%s", strerror(errno), diag());
    return wait_child(timeout_s, secs);
}

static bool alive(void)
{
    int ws;
    if (child <= 0) {
        return false;
    }
    if (waitpid(child, &ws, WNOHANG) == child) {
        child = 0;
        return false;
    }
    return true;
}

/* ---- the log ------------------------------------------------------------------ */

static size_t count_in(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay ? strstr(hay, needle) : NULL; p; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

/* Occurrences of needle in fetchd's stderr. */
static size_t log_count(const char *needle)
{
    char *log = tu_read(err_path);
    size_t n = count_in(log, needle);
    free(log);
    return n;
}

/* Waits until needle occurs at least n times in fetchd's stderr. */
static bool wait_log(const char *needle, size_t n, double timeout_s)
{
    double end = tu_now() + timeout_s;
    while (log_count(needle) < n) {
        if (tu_now() > end || !alive()) {
            return log_count(needle) >= n;
        }
        usleep(20000);
    }
    return true;
}

/* One per-sink summary line. */
struct sum {
    unsigned long long produced, delivered, queued, dropped, overflow, failed, abandoned, retried;
    char problem[400]; /* after "; problem: ", "" if none */
};

#define SUM_FMT                                                                                    \
    "produced %llu, delivered %llu, queued %llu, dropped %llu (overflow %llu, failed %llu, "       \
    "abandoned %llu), retried %llu%n"

/* Parses the summary lines of sink `name` in log (NULL: fetchd's stderr).
 * Returns how many there are; *last gets the last one; if pred is given,
 * *matched says whether one satisfies it and *match gets the first that
 * does. */
static size_t summaries_in(const char *log, const char *name, struct sum *last,
                           bool (*pred)(const struct sum *), struct sum *match, bool *matched)
{
    char *own = log ? NULL : tu_read(err_path);
    const char *text = log ? log : own;
    char *prefix = tu_fmt("sink '%s': produced ", name);
    size_t n = 0;
    if (matched) {
        *matched = false;
    }
    for (const char *p = text ? strstr(text, prefix) : NULL; p; p = strstr(p + 1, prefix)) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            break; /* being written */
        }
        struct sum s;
        memset(&s, 0, sizeof(s));
        int used = 0;
        const char *at = p + strlen(prefix) - strlen("produced ");
        if (sscanf(at, SUM_FMT, &s.produced, &s.delivered, &s.queued, &s.dropped, &s.overflow,
                   &s.failed, &s.abandoned, &s.retried, &used) != 8 ||
            used <= 0) {
            char *line = gc(strndup(p, (size_t)(nl - p)));
            free(prefix);
            free(own);
            ensure(false, "summary line not in the documented format: %s", line);
        }
        const char *rest = at + used;
        if (strncmp(rest, "; problem: ", 11) == 0) {
            size_t l = (size_t)(nl - (rest + 11));
            snprintf(s.problem, sizeof(s.problem), "%.*s", (int)l, rest + 11);
        }
        if (pred && matched && !*matched && pred(&s)) {
            *match = s;
            *matched = true;
        }
        if (last) {
            *last = s;
        }
        n++;
    }
    free(prefix);
    free(own);
    return n;
}

/* Waits for a summary of sink `name` (in fetchd's stderr) that satisfies
 * pred. */
static bool wait_summary(const char *name, bool (*pred)(const struct sum *), double timeout_s,
                         struct sum *out)
{
    double end = tu_now() + timeout_s;
    for (;;) {
        bool ok = false;
        summaries_in(NULL, name, NULL, pred, out, &ok);
        if (ok) {
            return true;
        }
        if (tu_now() > end || !alive()) {
            summaries_in(NULL, name, NULL, pred, out, &ok);
            return ok;
        }
        usleep(50000);
    }
}

/* The last summary of sink `name` in log (NULL: fetchd's stderr), after
 * fetchd exited; checks the invariants produced == delivered + dropped +
 * queued, dropped == overflow + failed + abandoned, and queued == 0. */
static struct sum final_summary_in(const char *log, const char *name)
{
    struct sum s;
    memset(&s, 0, sizeof(s));
    size_t n = summaries_in(log, name, &s, NULL, NULL, NULL);
    ensure(n >= 1, "no summary line for sink '%s' at exit%s", name, diag());
    ensure(s.produced == s.delivered + s.dropped + s.queued,
           "sink '%s': produced %llu != delivered %llu + dropped %llu + queued %llu%s", name,
           s.produced, s.delivered, s.dropped, s.queued, diag());
    ensure(s.dropped == s.overflow + s.failed + s.abandoned,
           "sink '%s': dropped %llu != overflow %llu + failed %llu + abandoned %llu%s", name,
           s.dropped, s.overflow, s.failed, s.abandoned, diag());
    ensure(s.queued == 0, "sink '%s': %llu still queued at exit%s", name, s.queued, diag());
    return s;
}

static bool sum_nospace(const struct sum *s)
{
    return s->retried > 0 && strstr(s->problem, "No space left on device") != NULL;
}

/* ---- records ------------------------------------------------------------------ */

/* What JSON Lines data holds: lines that are whole records (a JSON object
 * with a string "endpoint" and a boolean "ok"), and lines that are not. */
struct lines {
    size_t whole;
    size_t broken;
    size_t nul_at;       /* offset of the first NUL byte + 1, 0 if none */
    bool torn_end;       /* the data does not end with '\n' */
    char first_bad[300]; /* the first broken line (its start) */
};

/* Calls fn for each whole record (may be NULL). */
static void scan_lines(const char *b, size_t len, struct lines *out,
                       void (*fn)(const cJSON *rec, void *arg), void *arg)
{
    memset(out, 0, sizeof(*out));
    const char *nul = memchr(b, '\0', len);
    if (nul) {
        out->nul_at = (size_t)(nul - b) + 1;
    }
    const char *p = b;
    while (p < b + len) {
        const char *nl = memchr(p, '\n', (size_t)(b + len - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(b + len - p);
        cJSON *j = nl ? cJSON_ParseWithLength(p, l) : NULL;
        cJSON *ep = j ? cJSON_GetObjectItemCaseSensitive(j, "endpoint") : NULL;
        cJSON *ok = j ? cJSON_GetObjectItemCaseSensitive(j, "ok") : NULL;
        if (cJSON_IsObject(j) && cJSON_IsString(ep) && cJSON_IsBool(ok)) {
            out->whole++;
            if (fn) {
                fn(j, arg);
            }
        } else if (nl) {
            if (!out->broken) {
                snprintf(out->first_bad, sizeof(out->first_bad), "%.*s", (int)(l < 200 ? l : 200),
                         p);
            }
            out->broken++;
        } else {
            out->torn_end = true;
        }
        cJSON_Delete(j);
        if (!nl) {
            break;
        }
        p = nl + 1;
    }
}

/* Reads a whole file; *len gets its length (it may hold NUL bytes). */
static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    size_t cap = 65536, l = 0;
    char *b = malloc(cap + 1);
    ensure(b, "out of memory");
    for (;;) {
        if (l == cap) {
            cap *= 2;
            b = realloc(b, cap + 1);
            ensure(b, "out of memory");
        }
        ssize_t k = read(fd, b + l, cap - l);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            break;
        }
        l += (size_t)k;
    }
    close(fd);
    b[l] = '\0';
    *len = l;
    return b;
}

/* Whole records in the file (0 if it does not exist); counts only
 * complete lines. */
static size_t lines_in(const char *path)
{
    size_t len = 0;
    char *b = slurp(path, &len);
    if (!b) {
        return 0;
    }
    struct lines l;
    scan_lines(b, len, &l, NULL, NULL);
    free(b);
    return l.whole;
}

static bool wait_lines(const char *path, size_t n, double timeout_s)
{
    double end = tu_now() + timeout_s;
    while (lines_in(path) < n) {
        if (tu_now() > end || !alive()) {
            return lines_in(path) >= n;
        }
        usleep(20000);
    }
    return true;
}

/* ---- readers of pipes ----------------------------------------------------------- */

/* A thread that reads a pipe or FIFO into memory at a set pace: at most
 * `chunk` bytes per read, then a pause of pause_us. */
struct reader {
    int fd; /* owned: closed by reader_stop */
    size_t chunk;
    unsigned pause_us;
    bool fifo;       /* read() == 0 before any data: no writer yet */
    bool first_line; /* close fd after the first line (like head -1) */
    pthread_t th;
    bool running;
    atomic_bool stop;
    atomic_int hold; /* 1: stop reading in the middle of a record; 2: stopped */
    atomic_bool eof;
    pthread_mutex_t mu;
    char *buf; /* what was read (mu) */
    size_t len, cap;
    size_t lines; /* '\n' read so far (mu) */
    size_t tail;  /* bytes after the last '\n' (mu) */
};

static struct reader *readers[2];

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    char *tmp = malloc(r->chunk);
    if (!tmp) {
        abort();
    }
    while (!atomic_load(&r->stop)) {
        int h = atomic_load(&r->hold);
        if (h == 1) {
            /* stop within a record, some way into it: the writer cannot
             * have finished it (records are much longer than the pipe) */
            pthread_mutex_lock(&r->mu);
            bool mid = r->tail > 0 && r->tail <= 2 * r->chunk;
            pthread_mutex_unlock(&r->mu);
            if (mid) {
                atomic_store(&r->hold, 2);
                continue;
            }
        } else if (h == 2) {
            usleep(2000);
            continue;
        }
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0) {
            continue;
        }
        ssize_t k = read(r->fd, tmp, r->chunk);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        if (k == 0 && r->fifo && r->len == 0) {
            usleep(5000); /* no writer opened it yet */
            continue;
        }
        if (k <= 0) {
            break;
        }
        pthread_mutex_lock(&r->mu);
        if (r->len + (size_t)k + 1 > r->cap) {
            size_t nc = r->cap ? r->cap * 2 : 1 << 20;
            while (nc < r->len + (size_t)k + 1) {
                nc *= 2;
            }
            char *nb = realloc(r->buf, nc);
            if (!nb) {
                abort();
            }
            r->buf = nb;
            r->cap = nc;
        }
        memcpy(r->buf + r->len, tmp, (size_t)k);
        r->len += (size_t)k;
        r->buf[r->len] = '\0';
        for (ssize_t i = 0; i < k; i++) {
            if (tmp[i] == '\n') {
                r->lines++;
                r->tail = (size_t)(k - i - 1);
            } else {
                r->tail++;
            }
        }
        bool done = r->first_line && r->lines > 0;
        pthread_mutex_unlock(&r->mu);
        if (done) {
            break;
        }
        if (r->pause_us) {
            usleep(r->pause_us);
        }
    }
    if (r->first_line) {
        close(r->fd); /* the reader is gone */
        r->fd = -1;
    }
    atomic_store(&r->eof, true);
    free(tmp);
    return NULL;
}

/* Starts a reader of fd (which it then owns). */
static struct reader *reader_start(int fd, size_t chunk, unsigned pause_us, bool fifo,
                                   bool first_line)
{
    struct reader *r = calloc(1, sizeof(*r));
    ensure(r, "out of memory");
    r->fd = fd;
    r->chunk = chunk;
    r->pause_us = pause_us;
    r->fifo = fifo;
    r->first_line = first_line;
    pthread_mutex_init(&r->mu, NULL);
    size_t slot = 0;
    while (slot < 2 && readers[slot]) {
        slot++;
    }
    ck_assert(slot < 2);
    readers[slot] = r;
    ensure(pthread_create(&r->th, NULL, reader_main, r) == 0, "pthread_create");
    r->running = true;
    return r;
}

/* Waits for the reader to reach the end of the data (EOF); false on
 * timeout. */
static bool reader_wait_eof(struct reader *r, double timeout_s)
{
    double end = tu_now() + timeout_s;
    while (!atomic_load(&r->eof)) {
        if (tu_now() > end) {
            return false;
        }
        usleep(10000);
    }
    return true;
}

static size_t reader_lines(struct reader *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->lines;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static bool reader_wait_lines(struct reader *r, size_t n, double timeout_s)
{
    double end = tu_now() + timeout_s;
    while (reader_lines(r) < n) {
        if (tu_now() > end || atomic_load(&r->eof)) {
            return reader_lines(r) >= n;
        }
        usleep(10000);
    }
    return true;
}

/* A copy of what the reader read so far (the caller frees it); *len its
 * length. */
static char *reader_copy(struct reader *r, size_t *len)
{
    pthread_mutex_lock(&r->mu);
    char *c = malloc(r->len + 1);
    if (!c) {
        abort();
    }
    if (r->len) {
        memcpy(c, r->buf, r->len);
    }
    c[r->len] = '\0';
    *len = r->len;
    pthread_mutex_unlock(&r->mu);
    return c;
}

/* reader_copy, freed by cleanup() */
static char *reader_data(struct reader *r, size_t *len)
{
    return gc(reader_copy(r, len));
}

/* Stops the thread, closes the fd, frees the reader. */
static void reader_stop(struct reader *r)
{
    if (!r) {
        return;
    }
    atomic_store(&r->stop, true);
    if (r->running) {
        pthread_join(r->th, NULL);
    }
    if (r->fd >= 0) {
        close(r->fd);
    }
    pthread_mutex_destroy(&r->mu);
    free(r->buf);
    for (size_t i = 0; i < 2; i++) {
        if (readers[i] == r) {
            readers[i] = NULL;
        }
    }
    free(r);
}

static void reader_stop_all(void)
{
    for (size_t i = 0; i < 2; i++) {
        reader_stop(readers[i]);
    }
}

/* A pipe for fetchd's stdout: the read end (O_CLOEXEC, so fetchd does not
 * hold it: the last reader going away must be seen) in p[0]. */
static void make_pipe(int p[2])
{
    ensure(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
}

/* The current time as fetchd writes "fetched_at" (UTC, milliseconds), so
 * the two compare as strings. */
static void iso_now(char *buf, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char s[32];
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%.20s.%03dZ", s, (int)(ts.tv_nsec / 1000000));
}

/* ---- 1: stdout redirected to a file that fills up ------------------------------- */

/* `fetchd >out` with out on a 64 KiB tmpfs half taken by a filler: stdout
 * is a regular file opened without O_APPEND (O_WRONLY|O_CREAT|O_TRUNC, as a
 * shell does), so the file offset is the fd's own. Three endpoints write
 * records of about 3.2 KiB ten times a second each; the file system fills
 * within a second with a record straddling the limit (a short write, which
 * the sink cuts back). When the filler goes, writing resumes: the next
 * record must start where the cut one started. A repair that truncates the
 * file but leaves the offset at the old end makes the next write leave a
 * hole of NUL bytes. At stop: no NUL, only whole lines, lines ==
 * delivered. */
START_TEST(test_stdout_file_hole)
{
    char *m = mount_tmpfs("m", "size=64k");
    SKIP_UNLESS(m, ns_why);
    char *filler = gc(tu_fmt("%s/filler", m));
    char *out = gc(tu_fmt("%s/out.jsonl", m));
    ensure(fill(filler, 32768) == 32768, "filler");
    int ofd = keep_fd(open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ensure(ofd >= 0, "open %s: %s", out, strerror(errno));
    char *cfg =
        gc(tu_fmt("{\"limits\": {\"stats_interval\": \"1s\", \"shutdown_grace\": \"1s\"},"
                  " \"sinks\": {\"stdout\": {\"type\": \"stdout\", \"queue_max_records\": 4,"
                  " \"retry_backoff\": \"50ms\", \"retry_max_backoff\": \"200ms\"}},"
                  " \"defaults\": {\"interval\": \"100ms\"},"
                  " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a?size=3000\"},"
                  " \"b\": {\"url\": \"http://127.0.0.1:%d/b?size=3000\"},"
                  " \"c\": {\"url\": \"http://127.0.0.1:%d/c?size=3000\"}}}",
                  port, port, port));
    start_fetchd(cfg, ofd);
    close_fd(ofd);

    struct sum s;
    ensure(wait_summary("stdout", sum_nospace, 20 * tu_slack(), &s),
           "the full disk never showed as \"No space left on device\"%s", diag());
    size_t full = lines_in(out);
    ensure(full >= 5, "only %zu records before the disk was full%s", full, diag());
    ensure(unlink(filler) == 0, "unlink: %s", strerror(errno));
    ensure(wait_lines(out, full + 5, 10 * tu_slack()),
           "writing did not resume after space returned (%zu lines, still %zu)%s", full,
           lines_in(out), diag());

    int st = stop_fetchd(60 * tu_slack(), NULL);
    ensure(st == 74, "exit status %d, want 74 (records were dropped)%s", st, diag());
    s = final_summary_in(NULL, "stdout");
    size_t len = 0;
    char *b = gc(slurp(out, &len));
    ensure(b, "read %s: %s", out, strerror(errno));
    struct lines l;
    scan_lines(b, len, &l, NULL, NULL);
    ensure(!l.nul_at,
           "NUL byte at offset %zu of %zu: the offset was not moved back after the "
           "short write was cut (a hole)%s",
           l.nul_at - 1, len, diag());
    ensure(!l.broken && !l.torn_end, "%zu broken lines (first: %s), torn end %d%s", l.broken,
           l.first_bad, l.torn_end, diag());
    ensure(l.whole == s.delivered, "%zu lines in the file but delivered %llu%s", l.whole,
           s.delivered, diag());
    long served = tu_httpd_requests(port);
    ensure((unsigned long long)served == s.produced, "%ld fetches but %llu records produced%s",
           served, s.produced, diag());
}
END_TEST

/* ---- 2: a FIFO reopened with half a record in it ------------------------------ */

/* Makes a FIFO at dir/name and opens it for reading (non-blocking, so that
 * fetchd's open for writing finds a reader); returns the read fd. */
static int make_fifo(const char *name, char **path)
{
    *path = gc(tu_fmt("%s/%s", dir, name));
    ensure(mkfifo(*path, 0644) == 0, "mkfifo: %s", strerror(errno));
    int fd = open(*path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    ensure(fd >= 0, "open fifo: %s", strerror(errno));
    return fd;
}

/* Stops reader r inside a record (see reader_main). */
static void reader_hold(struct reader *r)
{
    atomic_store(&r->hold, 1);
    double end = tu_now() + 10 * tu_slack();
    while (atomic_load(&r->hold) != 2 && tu_now() < end) {
        usleep(5000);
    }
    ensure(atomic_load(&r->hold) == 2, "the reader did not stop inside a record");
}

/* Waits until the pipe of `size` bytes that fd reads is (about) full, so
 * that its writer waits: the buffers are pages, and the one the reader is
 * in and the one where a record started may not be full. */
static bool wait_pipe_full(int fd, int size, double timeout_s)
{
    double end = tu_now() + timeout_s;
    int n = 0;
    while ((ioctl(fd, FIONREAD, &n) < 0 || n < size - 8192) && tu_now() < end) {
        usleep(5000);
    }
    return n >= size - 8192;
}

/* A file sink whose path is a FIFO; records of about 200 KB, longer than
 * the pipe (64 KiB), so the sink nearly always waits with part of one
 * written. The test's reader stops a few KiB into a record (the writer
 * cannot have finished it: at most 64 KiB more fit) and the sink waits
 * for the fd with half the record in the pipe. Then SIGHUP with the same
 * config reopens the path, and the reader goes on: records must keep
 * arriving (the sink must not stay waiting for the watcher of the fd it
 * closed).
 * _i == 0: the path still names the same FIFO, so the reader of the pipe
 * gets everything: every delivered record is a whole line of its own. The
 * record the reopen cut may be lost (counted failed, and then the only
 * line that is not a record: it must end with its own newline so that the
 * next record is not glued to it), or written on (nothing lost).
 * _i == 1: the FIFO was replaced (rm; mkfifo) before the SIGHUP: the new
 * FIFO's reader gets whole records only; the old pipe's reader got whole
 * records, and at the end either the rest of the record or the cut part
 * (counted failed); lines of both == delivered. */
START_TEST(test_fifo_reload_partial)
{
    char *fifo;
    int rfd = make_fifo("fifo", &fifo);
    int psize = fcntl(rfd, F_SETPIPE_SZ, 65536);
    ensure(psize >= 65536, "F_SETPIPE_SZ: %s", strerror(errno));
    /* (shutdown_grace: the queue drains whatever the pace under valgrind) */
    char *cfg =
        gc(tu_fmt("{\"limits\": {\"stats_interval\": \"1s\", \"shutdown_grace\": \"60s\"},"
                  " \"sinks\": {\"f\": {\"type\": \"file\", \"path\": \"%s\","
                  " \"queue_max_bytes\": \"256MiB\"}},"
                  " \"defaults\": {\"interval\": \"100ms\", \"sinks\": [\"f\"]},"
                  " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a?size=200000\"}}}",
                  fifo, port));
    start_fetchd(cfg, -1);
    /* about 2 MB/s: no faster than the 200 KB records come, ten a second */
    struct reader *r = reader_start(rfd, 4096, 2000, true, false);
    ensure(reader_wait_lines(r, 3, 20 * tu_slack()), "no records through the FIFO%s", diag());
    reader_hold(r);
    /* the sink fills the pipe and waits with part of the record written */
    ensure(wait_pipe_full(rfd, psize, 10 * tu_slack()), "the pipe did not fill%s", diag());
    usleep((useconds_t)(100000 * tu_slack()));
    struct reader *r2 = NULL;
    if (_i == 1) {
        ensure(unlink(fifo) == 0, "unlink: %s", strerror(errno));
        int rfd2 = make_fifo("fifo", &fifo);
        r2 = reader_start(rfd2, 65536, 0, true, false);
    }
    ensure(kill(child, SIGHUP) == 0, "kill: %s", strerror(errno));
    ensure(wait_log("configuration reloaded", 1, 10 * tu_slack()), "no reload%s", diag());
    size_t at_reload = reader_lines(r);
    atomic_store(&r->hold, 0);
    struct reader *now = r2 ? r2 : r;
    ensure(reader_wait_lines(now, at_reload * !r2 + 5, 15 * tu_slack()),
           "delivery stopped after the reload: %zu lines, still %zu%s", at_reload * !r2,
           reader_lines(now), diag());

    int st = stop_fetchd(60 * tu_slack(), NULL);
    ensure(reader_wait_eof(r, 30 * tu_slack()), "the old FIFO was not closed");
    ensure(!r2 || reader_wait_eof(r2, 30 * tu_slack()), "the FIFO was not closed");
    struct sum s = final_summary_in(NULL, "f");
    ensure(s.abandoned == 0 && s.overflow == 0 && s.failed <= 1,
           "failed %llu, abandoned %llu, overflow %llu: at most the record cut by the reopen "
           "may be lost%s",
           s.failed, s.abandoned, s.overflow, diag());
    ensure(st == (s.failed ? 74 : 0), "exit status %d with %llu failed%s", st, s.failed, diag());
    ensure(log_count("a record was cut off by a reopen") == s.failed,
           "%zu cuts logged, %llu failed%s", log_count("a record was cut off by a reopen"),
           s.failed, diag());
    size_t len = 0;
    char *b = reader_data(r, &len);
    struct lines l;
    scan_lines(b, len, &l, NULL, NULL);
    ensure(!l.nul_at, "NUL at %zu", l.nul_at - 1);
    if (_i == 0) {
        ensure(!l.torn_end, "the pipe ends in a partial record");
        ensure(l.whole == s.delivered && l.broken == s.failed,
               "the reader got %zu whole records and %zu broken lines (first: %.120s...); "
               "delivered %llu, failed %llu: a delivered record was glued to the cut one (the "
               "newline that ends the cut record was not written)%s",
               l.whole, l.broken, l.first_bad, s.delivered, s.failed, diag());
        return;
    }
    /* the old pipe got the rest of the record, or ends with the cut one (a
     * line of its own, or torn) */
    ensure(l.broken + l.torn_end == s.failed,
           "failed %llu; the old FIFO's reader got %zu broken lines, torn end %d%s", s.failed,
           l.broken, l.torn_end, diag());
    size_t len2 = 0;
    char *b2 = reader_data(r2, &len2);
    struct lines l2;
    scan_lines(b2, len2, &l2, NULL, NULL);
    ensure(!l2.nul_at && !l2.broken && !l2.torn_end,
           "the new FIFO: NUL at %zu, %zu broken lines (first: %.120s), torn end %d", l2.nul_at,
           l2.broken, l2.first_bad, l2.torn_end);
    ensure(l.whole + l2.whole == s.delivered, "%zu + %zu records read, delivered %llu%s", l.whole,
           l2.whole, s.delivered, diag());
}
END_TEST

/* ---- 3: a FIFO without a reader ----------------------------------------------- */

/* _i == 0: the FIFO's reader reads a few records and goes away; the sink
 * gets EPIPE and retries. SIGHUP reopens the path: opening a FIFO that
 * nobody reads must not block (the loop would hang: no reload, no stop).
 * Then SIGTERM: fetchd exits within shutdown_grace (1 s) + the 2 s of the
 * last delivery + a margin, with 74 (the queued records are lost).
 * _i == 1: the same, but the FIFO is replaced (rm; mkfifo) before the
 * SIGHUP, so the reopen must open the new one, which has no reader: it
 * fails (logged) instead of blocking.
 * _i == 2: the FIFO has no reader at start-up: fetchd says so and exits
 * instead of hanging in open(). */
START_TEST(test_fifo_no_reader)
{
    char *fifo;
    int rfd = make_fifo("fifo", &fifo);
    char *cfg = gc(tu_fmt(
        "{\"limits\": {\"stats_interval\": \"1s\", \"shutdown_grace\": \"1s\"},"
        " \"sinks\": {\"f\": {\"type\": \"file\", \"path\": \"%s\", \"queue_max_records\": 5,"
        " \"retry_backoff\": \"50ms\", \"retry_max_backoff\": \"200ms\"}},"
        " \"defaults\": {\"interval\": \"100ms\", \"sinks\": [\"f\"]},"
        " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\"}}}",
        fifo, port));
    if (_i == 2) {
        close(rfd);
        start_fetchd(cfg, -1);
        double secs;
        int st = wait_child(10 * tu_slack(), &secs);
        ensure(st != -1, "fetchd hung opening a FIFO without a reader%s", diag());
        ensure(st != 0, "exit status 0 without a reader%s", diag());
        ensure(log_count("it is a FIFO with no reader") == 1, "the reason was not logged%s",
               diag());
        return;
    }
    start_fetchd(cfg, -1);
    struct reader *r = reader_start(rfd, 65536, 0, true, false);
    ensure(reader_wait_lines(r, 3, 20 * tu_slack()), "no records through the FIFO%s", diag());
    reader_stop(r); /* closes the only read end */
    ensure(wait_log("Broken pipe", 1, 10 * tu_slack()), "EPIPE not logged%s", diag());
    if (_i == 1) {
        ensure(unlink(fifo) == 0, "unlink: %s", strerror(errno));
        ensure(mkfifo(fifo, 0644) == 0, "mkfifo: %s", strerror(errno));
    }
    ensure(kill(child, SIGHUP) == 0, "kill: %s", strerror(errno));
    bool reloaded = wait_log("configuration reloaded", 1, 10 * tu_slack());
    double secs;
    int st = stop_fetchd(1 + 2 + 5 * tu_slack(), &secs);
    ensure(st != -1,
           "fetchd did not exit within %.0f s of SIGTERM (blocked in open() of the "
           "FIFO?)%s",
           1 + 2 + 5 * tu_slack(), diag());
    ensure(reloaded, "no reload%s", diag());
    if (_i == 1) {
        ensure(log_count("cannot reopen") == 1, "the failed reopen was not logged%s", diag());
    }
    ensure(st == 74, "exit status %d, want 74 (queued records lost)%s", st, diag());
    struct sum s = final_summary_in(NULL, "f");
    ensure(s.delivered >= 3 && s.dropped > 0, "delivered %llu, dropped %llu%s", s.delivered,
           s.dropped, diag());
}
END_TEST

/* ---- 4: overflow pause, retries, reload ---------------------------------------- */

struct ep_seen {
    const char *since; /* ISO time */
    unsigned fresh[3]; /* records of r0..r2 fetched at or after since */
    unsigned all[3];
};

static void count_fresh(const cJSON *rec, void *arg)
{
    struct ep_seen *e = arg;
    const char *ep = cJSON_GetObjectItemCaseSensitive(rec, "endpoint")->valuestring;
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(rec, "fetched_at");
    if (ep[0] == 'r' && ep[1] >= '0' && ep[1] <= '2' && !ep[2]) {
        int i = ep[1] - '0';
        e->all[i]++;
        if (cJSON_IsString(at) && strcmp(at->valuestring, e->since) >= 0) {
            e->fresh[i]++;
        }
    }
}

/* Sink "out" (stdout, a 256 KiB pipe the test does not read at first) has
 * queue_max_records 5 and overflow "pause". Endpoint f (3 KB records, 50 a
 * second) fills the pipe and the queue, and the sink pauses its endpoints.
 * Endpoints r0..r2 (on a second server) always fail, with 10 attempts and
 * up to 200 ms between them, every second: nearly all the time they are in
 * the middle of a run, waiting for a retry (the first attempts of f keep
 * the retry budget large). While the sink is paused, SIGHUP (same config). Then the test
 * reads the pipe: the sink drains, and every r endpoint must be fetched
 * again and its records arrive (records fetched after the drain began).
 * A retry held back by the paused sink and then forgotten by the reload
 * would leave an endpoint "running" for ever. */
START_TEST(test_pause_retry_reload)
{
    httpd2_pid = tu_httpd_start(&port2);
    int p[2];
    make_pipe(p);
    keep_fd(p[0]);
    /* the pipe fills in about 1.7 s: every r endpoint has started by then */
    ensure(fcntl(p[0], F_SETPIPE_SZ, 256 * 1024) >= 0, "F_SETPIPE_SZ: %s", strerror(errno));
    char eps[2048];
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        off += (size_t)snprintf(eps + off, sizeof(eps) - off,
                                ", \"r%d\": {\"url\": \"http://127.0.0.1:%d/r%d?fail=1000000000\","
                                " \"interval\": \"1s\", \"breaker\": false,"
                                " \"retry\": {\"attempts\": 10, \"backoff\": \"200ms\","
                                " \"max_backoff\": \"200ms\"}}",
                                i, port2, i);
    }
    char *cfg = gc(tu_fmt("{\"limits\": {\"stats_interval\": \"1s\", \"shutdown_grace\": \"2s\","
                          " \"retry_budget\": 1},"
                          " \"sinks\": {\"out\": {\"type\": \"stdout\", \"queue_max_records\": 5,"
                          " \"overflow\": \"pause\"}},"
                          " \"defaults\": {\"sinks\": [\"out\"]},"
                          " \"endpoints\": {\"f\": {\"url\": \"http://127.0.0.1:%d/f?size=3000\","
                          " \"interval\": \"20ms\"}%s}}",
                          port, eps));
    start_fetchd(cfg, p[1]);
    close(p[1]);
    ensure(wait_log("pausing its endpoints", 1, 20 * tu_slack()), "the sink never paused%s",
           diag());
    /* every r endpoint's retry comes due while the sink is paused */
    usleep((useconds_t)(1500000 * tu_slack()));
    ensure(kill(child, SIGHUP) == 0, "kill: %s", strerror(errno));
    ensure(wait_log("configuration reloaded", 1, 10 * tu_slack()), "no reload%s", diag());
    struct ep_seen seen = {0};
    char since[40];
    iso_now(since, sizeof(since));
    seen.since = since;
    long r0 = tu_httpd_requests(port2);
    forget_fd(p[0]); /* the reader owns it now */
    struct reader *r = reader_start(p[0], 65536, 0, false, false);
    double end = tu_now() + 20 * tu_slack();
    for (;;) {
        size_t len = 0;
        char *b = reader_copy(r, &len);
        struct lines l;
        memset(seen.fresh, 0, sizeof(seen.fresh));
        memset(seen.all, 0, sizeof(seen.all));
        scan_lines(b, len, &l, count_fresh, &seen);
        free(b);
        if ((seen.fresh[0] && seen.fresh[1] && seen.fresh[2]) || tu_now() > end || !alive()) {
            break;
        }
        usleep(100000);
    }
    long r1 = tu_httpd_requests(port2);
    ensure(seen.fresh[0] && seen.fresh[1] && seen.fresh[2],
           "after the reload and the drain, records fetched since %s: r0 %u, r1 %u, r2 %u "
           "(before: %u, %u, %u); the second server saw %ld requests, then %ld: an endpoint "
           "stopped being fetched%s",
           since, seen.fresh[0], seen.fresh[1], seen.fresh[2], seen.all[0] - seen.fresh[0],
           seen.all[1] - seen.fresh[1], seen.all[2] - seen.fresh[2], r0, r1, diag());
    ensure(log_count("queue below half its bounds again, endpoints resume") >= 1,
           "the sink did not resume%s", diag());

    int st = stop_fetchd(60 * tu_slack(), NULL);
    ensure(st == 0 || st == 74, "exit status %d%s", st, diag());
    ensure(reader_wait_eof(r, 10 * tu_slack()), "stdout was not closed");
    struct sum s = final_summary_in(NULL, "out");
    size_t len = 0;
    char *b = reader_data(r, &len);
    struct lines l;
    scan_lines(b, len, &l, NULL, NULL);
    ensure(!l.broken && !l.torn_end && !l.nul_at, "%zu broken lines (%s)", l.broken, l.first_bad);
    ensure(l.whole == s.delivered, "%zu records read, delivered %llu%s", l.whole, s.delivered,
           diag());
    ensure(s.abandoned == 0 && s.failed == 0, "failed %llu, abandoned %llu%s", s.failed,
           s.abandoned, diag());
}
END_TEST

/* ---- 5: two stdout sinks --------------------------------------------------------- */

/* Loads text with config_load; returns its result and the joined error
 * messages (gc'd). */
static int load_cfg(const char *text, char **errtext)
{
    write_cfg(text);
    struct config_errors errs = {0};
    struct config *c = NULL;
    int r = config_load(cfg_path, &c, &errs);
    char *all = gc(strdup(""));
    for (size_t i = 0; i < errs.n; i++) {
        char *n = gc(tu_fmt("%s%s\n", all, errs.msgs[i]));
        all = n;
    }
    config_errors_done(&errs);
    config_free(c);
    *errtext = all;
    return r;
}

/* Two sinks of type stdout that endpoints use would mix their records on
 * one stream: the configuration is refused (exit 78) with a message that
 * names both; nothing is fetched. Unit level (config_load): the same
 * error; the implicit "stdout" used together with a defined stdout sink is
 * caught too; a stdout sink nobody uses is fine. */
START_TEST(test_two_stdout)
{
    char *cfg = gc(
        tu_fmt("{\"sinks\": {\"one\": {\"type\": \"stdout\"}, \"two\": {\"type\": \"stdout\"}},"
               " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\", \"sinks\": [\"one\"]},"
               " \"b\": {\"url\": \"http://127.0.0.1:%d/b\", \"sinks\": [\"two\"]}}}",
               port, port));
    write_cfg(cfg);
    int ofd =
        keep_fd(open(gc(tu_fmt("%s/out", dir)), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ensure(ofd >= 0, "open: %s", strerror(errno));
    static const char *const once[] = {"--once", NULL};
    child = spawn_fetchd(once, ofd, -1);
    int st = wait_child(30 * tu_slack(), NULL);
    char *out = gc(tu_read(gc(tu_fmt("%s/out", dir))));
    ensure(st == 78, "exit status %d, want 78 (configuration error); stdout:\n%.500s%s", st,
           out ? out : "", diag());
    ensure(log_count("sinks 'one' and 'two' both write to standard output") == 1,
           "the error does not name both sinks%s", diag());
    ensure(out && !*out, "records were written: %.300s", out ? out : "");
    ensure(tu_httpd_requests(port) == 0, "%ld fetches", tu_httpd_requests(port));

    char *err;
    ensure(load_cfg(cfg, &err) < 0 && strstr(err, "sinks 'one' and 'two' both write to "
                                                  "standard output"),
           "config_load: %s", err);
    /* the implicit "stdout" (endpoint a has no sinks) and "two" */
    char *implicit =
        gc(tu_fmt("{\"sinks\": {\"two\": {\"type\": \"stdout\"}},"
                  " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                  " \"b\": {\"url\": \"http://127.0.0.1:%d/b\", \"sinks\": [\"two\"]}}}",
                  port, port));
    ensure(load_cfg(implicit, &err) < 0 && strstr(err, "both write to standard output") &&
               strstr(err, "'stdout'") && strstr(err, "'two'"),
           "implicit stdout + a stdout sink: %s", err);
    /* one of them unused: fine */
    char *unused = gc(tu_fmt(
        "{\"sinks\": {\"one\": {\"type\": \"stdout\"}, \"two\": {\"type\": \"stdout\"}},"
        " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\", \"sinks\": [\"one\"]}}}",
        port));
    ensure(load_cfg(unused, &err) == 0 && !*err, "an unused second stdout sink: %s", err);
}
END_TEST

/* ---- 6: --once, a slow but steady reader ------------------------------------------ */

/* The stdout sink of the --once tests: no "overflow" (so --once pauses),
 * and a queue that holds every record: the responses of all endpoints
 * may arrive before the reader took much, and the records of fetches
 * already running are dropped beyond twice the bound. */
#define ONCE_SINK "\"sinks\": {\"stdout\": {\"type\": \"stdout\", \"queue_max_records\": 100000}},"

struct once_seen {
    unsigned char *seen; /* [endpoint * per + index] */
    unsigned eps, per;
    size_t dups, bad;
};

static void note_record(const cJSON *rec, void *arg)
{
    struct once_seen *o = arg;
    const char *ep = cJSON_GetObjectItemCaseSensitive(rec, "endpoint")->valuestring;
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(rec, "index");
    unsigned e;
    if (sscanf(ep, "e%u", &e) != 1 || e >= o->eps || !cJSON_IsNumber(idx) || idx->valuedouble < 0 ||
        idx->valuedouble >= o->per) {
        o->bad++;
        return;
    }
    unsigned char *slot = &o->seen[e * o->per + (unsigned)idx->valuedouble];
    o->dups += *slot;
    *slot = 1;
}

/* fetchd --once, 8 endpoints of 1500 NDJSON lines each: 12000 records,
 * about 2.3 MB on a stdout pipe that the test reads at about 400 KB/s, so
 * the sink drains for about 6 s after the last fetch, with shutdown_grace
 * "1s". The grace period guards against a sink that stalls, not one that
 * is slow: every record must arrive, once, and the exit status is 0. */
START_TEST(test_once_slow_reader)
{
    enum { EPS = 8, PER = 1500 };
    int p[2];
    make_pipe(p);
    char eps[4096];
    size_t off = 0;
    for (int i = 0; i < EPS; i++) {
        off += (size_t)snprintf(eps + off, sizeof(eps) - off,
                                "%s\"e%d\": {\"url\": \"http://127.0.0.1:%d/e%d?ndjson=%d\","
                                " \"format\": \"ndjson\"}",
                                i ? ", " : "", i, port, i, PER);
    }
    write_cfg(gc(tu_fmt("{\"limits\": {\"shutdown_grace\": \"1s\"}, %s \"endpoints\": {%s}}",
                        ONCE_SINK, eps)));
    static const char *const once[] = {"--once", NULL};
    child = spawn_fetchd(once, p[1], -1);
    close(p[1]);
    struct reader *r = reader_start(p[0], 4096, 10000, false, false);
    double secs;
    int st = wait_child(120 * tu_slack(), &secs);
    ensure(reader_wait_eof(r, 30 * tu_slack()), "stdout was not closed");
    size_t len = 0;
    char *b = reader_data(r, &len);
    struct once_seen o = {.eps = EPS, .per = PER};
    o.seen = gc(calloc(EPS * PER, 1));
    struct lines l;
    scan_lines(b, len, &l, note_record, &o);
    size_t missing = 0;
    for (size_t i = 0; i < EPS * PER; i++) {
        missing += !o.seen[i];
    }
    ensure(st == 0, "exit status %d after %.1f s, want 0 (%zu of %d records missing)%s", st, secs,
           missing, EPS * PER, diag());
    ensure(missing == 0 && o.dups == 0 && o.bad == 0 && l.whole == EPS * PER,
           "%zu records read, %zu missing, %zu twice, %zu unexpected%s", l.whole, missing, o.dups,
           o.bad, diag());
    ensure(!l.broken && !l.torn_end && !l.nul_at, "%zu broken lines (%s)", l.broken, l.first_bad);
    ensure(log_count("records lost") == 0 && log_count("still queued") == 0, "a loss was logged%s",
           diag());
}
END_TEST

/* ---- 7: --once, the reader goes away ---------------------------------------------- */

/* fetchd --once | head -1: the reader of stdout closes after the first
 * line. The reader cannot come back, so waiting for it is pointless:
 * fetchd must fail the queued records at once and exit with 74, saying why,
 * long before shutdown_grace (30 s). */
START_TEST(test_once_reader_gone)
{
    int p[2];
    make_pipe(p);
    char eps[2048];
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        off += (size_t)snprintf(eps + off, sizeof(eps) - off,
                                "%s\"e%d\": {\"url\": \"http://127.0.0.1:%d/e%d?ndjson=5000\","
                                " \"format\": \"ndjson\"}",
                                i ? ", " : "", i, port, i);
    }
    write_cfg(gc(tu_fmt("{\"limits\": {\"shutdown_grace\": \"30s\"}, %s \"endpoints\": {%s}}",
                        ONCE_SINK, eps)));
    static const char *const once[] = {"--once", NULL};
    child = spawn_fetchd(once, p[1], -1);
    close(p[1]);
    struct reader *r = reader_start(p[0], 4096, 0, false, true);
    double secs;
    int st = wait_child(60 * tu_slack(), &secs);
    ensure(reader_wait_eof(r, 10 * tu_slack()), "the reader did not finish");
    double bound = 10 * tu_slack();
    ensure(st != -1 && secs < bound,
           "fetchd took %.1f s (status %d) after its reader went away; bound %.0f s "
           "(shutdown_grace 30 s)%s",
           secs, st, bound, diag());
    ensure(st == 74, "exit status %d, want 74%s", st, diag());
    ensure(log_count("the reader of standard output is gone") >= 1, "no reason logged%s", diag());
    struct sum s = final_summary_in(NULL, "stdout");
    ensure(s.produced == 20000 && s.failed > 0 && s.delivered + s.failed == s.produced,
           "produced %llu, delivered %llu, failed %llu, abandoned %llu%s", s.produced, s.delivered,
           s.failed, s.abandoned, diag());
}
END_TEST

/* ---- 8: stdout and stderr on one pipe --------------------------------------------- */

/* fetchd --once 2>&1 | slow reader: the stdout sink makes the pipe's open
 * file description non-blocking, and stderr shares it. 4 endpoints of 5000
 * NDJSON lines keep the pipe full while 60 failing endpoints (HTTP 500,
 * answered over 3 seconds) log one warning each: all 60 must arrive, once,
 * besides every record. */
START_TEST(test_shared_stderr)
{
    enum { BIG = 4, PER = 5000, BAD = 60 };
    int p[2];
    make_pipe(p);
    size_t cap = 16384, off = 0;
    char *eps = gc(malloc(cap));
    for (int i = 0; i < BIG; i++) {
        off += (size_t)snprintf(eps + off, cap - off,
                                "%s\"e%d\": {\"url\": \"http://127.0.0.1:%d/e%d?ndjson=%d\","
                                " \"format\": \"ndjson\"}",
                                i ? ", " : "", i, port, i, PER);
    }
    for (int i = 0; i < BAD; i++) {
        off += (size_t)snprintf(eps + off, cap - off,
                                ", \"bad%02d\": {\"url\": \"http://127.0.0.1:%d/bad%d?status=500"
                                "&delay=%d\", \"retry\": false}",
                                i, port, i, 300 + 50 * i);
    }
    ensure(off < cap - 1, "config too long");
    write_cfg(gc(tu_fmt("{\"limits\": {\"shutdown_grace\": \"10s\"}, %s \"endpoints\": {%s}}",
                        ONCE_SINK, eps)));
    static const char *const once[] = {"--once", NULL};
    child = spawn_fetchd(once, p[1], p[1]);
    close(p[1]);
    /* about 800 KB/s, 4 KiB every 5 ms: never 100 ms without room */
    struct reader *r = reader_start(p[0], 4096, 5000, false, false);
    double secs;
    int st = wait_child(120 * tu_slack(), &secs);
    ensure(reader_wait_eof(r, 30 * tu_slack()), "the pipe was not closed");
    size_t len = 0;
    char *b = reader_data(r, &len);
    /* the log lines are the lines that do not start with '{' */
    size_t got = 0, twice = 0;
    for (int i = 0; i < BAD; i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "endpoint 'bad%02d': fetch failed", i);
        size_t n = count_in(b, needle);
        got += n > 0;
        twice += n > 1;
    }
    size_t records = 0, other = 0;
    char first_other[200] = "";
    for (const char *q = b; q < b + len;) {
        const char *nl = memchr(q, '\n', (size_t)(b + len - q));
        size_t l = nl ? (size_t)(nl - q) : (size_t)(b + len - q);
        if (l && q[0] == '{') {
            cJSON *j = cJSON_ParseWithLength(q, l);
            if (cJSON_IsObject(j)) {
                records++;
            } else if (!other++) {
                snprintf(first_other, sizeof(first_other), "%.*s", (int)(l < 150 ? l : 150), q);
            }
            cJSON_Delete(j);
        }
        q = nl ? nl + 1 : b + len;
    }
    char *tail = gc(strdup(len > 1500 ? b + len - 1500 : b));
    ensure(st == 1, "exit status %d, want 1 (endpoints failed); the pipe ends with:\n%s", st, tail);
    ensure(got == BAD && twice == 0,
           "%zu of the %d \"fetch failed\" warnings arrived (%zu twice): log lines were lost on "
           "the shared non-blocking pipe; the pipe ends with:\n%s",
           got, BAD, twice, tail);
    ensure(records == BIG * PER + BAD && other == 0,
           "%zu records, want %d; %zu lines starting with '{' that are not records (first: "
           "%s)",
           records, BIG * PER + BAD, other, first_other);
}
END_TEST

/* The same pipe (2>&1), but nobody reads it: a log line that finds it
 * full may wait a little for room, but a reader that stopped must not
 * stall the loop for every line. Endpoint big fills the pipe at once; 300
 * failing endpoints (their server answers after a second) log a warning
 * each (lost: nobody reads); endpoint tick (every 100 ms, on a server of
 * its own) must go on being fetched meanwhile: until the last failing
 * endpoint was fetched, at least half as often as its interval says
 * (waiting 100 ms per warning leaves a few runs in 30 s). */
START_TEST(test_shared_stderr_stuck)
{
    enum { BAD = 300 };
    httpd2_pid = tu_httpd_start(&port2);
    httpd3_pid = tu_httpd_start(&port3);
    int p[2];
    make_pipe(p);
    keep_fd(p[0]);
    size_t cap = 65536, off = 0;
    char *eps = gc(malloc(cap));
    off += (size_t)snprintf(eps + off, cap - off,
                            "\"big\": {\"url\": \"http://127.0.0.1:%d/big?size=20000\"},"
                            " \"tick\": {\"url\": \"http://127.0.0.1:%d/tick\"}",
                            port3, port2);
    for (int i = 0; i < BAD; i++) {
        off += (size_t)snprintf(eps + off, cap - off,
                                ", \"bad%03d\": {\"url\": \"http://127.0.0.1:%d/bad%d?status=500"
                                "&delay=1000\", \"retry\": false, \"interval\": \"5s\"}",
                                i, port, i);
    }
    ensure(off < cap - 1, "config too long");
    write_cfg(gc(tu_fmt("{\"limits\": {\"shutdown_grace\": \"1s\"},"
                        " \"defaults\": {\"interval\": \"100ms\"}, \"endpoints\": {%s}}",
                        eps)));
    child = spawn_fetchd(NULL, p[1], p[1]);
    close(p[1]);
    double t0 = tu_now();
    /* every failing endpoint answered (and so logged), plus a second */
    bool all = tu_httpd_wait_requests(port, BAD, 60 * tu_slack());
    double secs = tu_now() - t0 + 1;
    usleep(1000000);
    long ticks = tu_httpd_requests(port2);
    long bad = tu_httpd_requests(port);
    double dsecs;
    int st = stop_fetchd(1 + 2 + 10 * tu_slack(), &dsecs);
    long want = (long)(secs * 10 / 2 / tu_slack());
    ensure(ticks >= want,
           "endpoint tick (every 100 ms) was fetched %ld times in %.1f s (want %ld) while %ld "
           "warnings went to a full stderr: the loop waited for the pipe for every log line",
           ticks, secs, want, bad);
    ensure(all, "only %ld requests to the failing endpoints' server", bad);
    ensure(st == 74,
           "exit status %d after %.1f s, want 74 (records queued for a pipe nobody "
           "reads)",
           st, dsecs);
}
END_TEST

static Suite *sink_edge_suite(void)
{
    Suite *s = suite_create("sink-edge");
    TCase *tc = tcase_create("files");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_stdout_file_hole);
    tcase_add_loop_test(tc, test_fifo_reload_partial, 0, 2);
    tcase_add_loop_test(tc, test_fifo_no_reader, 0, 3);
    suite_add_tcase(s, tc);

    tc = tcase_create("queues");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_pause_retry_reload);
    tcase_add_test(tc, test_two_stdout);
    suite_add_tcase(s, tc);

    tc = tcase_create("stdout");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_once_slow_reader);
    tcase_add_test(tc, test_once_reader_gone);
    tcase_add_test(tc, test_shared_stderr);
    tcase_add_test(tc, test_shared_stderr_stuck);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sink_edge_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
