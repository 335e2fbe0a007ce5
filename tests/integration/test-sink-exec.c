/* test-sink-exec.c - the exec sink with the real fetchd binary against the
 * test HTTP server: records reach the command whole (also records larger
 * than the pipe), the command's hygiene (S11: environment, fds, signals),
 * a command that never reads (S8: drops counted, loop alive, killed at
 * stop), a command that crashes (S9: restarted with backoff, reaped), a
 * command that ignores SIGTERM (S10: SIGKILL after stop_timeout), one that
 * closes its input but runs on (replaced: SIGTERM, SIGKILL), reloads
 * that keep or replace the command, and configuration errors.
 *
 * The test process makes itself a child subreaper: a process fetchd left
 * behind (running or unreaped) becomes the test's child when fetchd exits,
 * where /proc shows it. A failed check kills fetchd and the server first
 * (ensure(): in Check's fork mode a failed check skips the teardown). */
#define _GNU_SOURCE
#include <cJSON.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static pid_t httpd_pid;
static int port;
static char *dir;
static pid_t child; /* fetchd in daemon mode; 0 when none runs */
static char *cfg_path, *err_path;
static char *fail_msg;

/* ---- memory freed after the test, pass or fail (CK_FORK=no) ----------- */

static void *gc_list[128];
static size_t gc_n;

static void *gc(void *p)
{
    if (gc_n < sizeof(gc_list) / sizeof(gc_list[0])) {
        gc_list[gc_n++] = p;
    }
    return p;
}

/* ---- fake notify socket: keeps READY=1 and the last STATUS= ------------- */

static struct {
    int fd;
    char *path;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu;
    unsigned long ready;    /* READY=1 datagrams */
    unsigned long statuses; /* STATUS= lines */
    char status[1024];      /* the last STATUS= value */
} nt = {.fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

static void nt_take(const char *m)
{
    pthread_mutex_lock(&nt.mu);
    for (const char *p = m; *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (l == 7 && memcmp(p, "READY=1", 7) == 0) {
            nt.ready++;
        } else if (l >= 7 && memcmp(p, "STATUS=", 7) == 0) {
            snprintf(nt.status, sizeof(nt.status), "%.*s", (int)(l - 7), p + 7);
            nt.statuses++;
        }
        p += l + (nl ? 1 : 0);
    }
    pthread_mutex_unlock(&nt.mu);
}

static void *nt_main(void *arg)
{
    (void)arg;
    char buf[4096];
    while (!atomic_load(&nt.stop)) {
        struct pollfd pf = {nt.fd, POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0) {
            continue;
        }
        ssize_t k;
        while ((k = recv(nt.fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) >= 0) {
            buf[k] = '\0';
            nt_take(buf);
        }
    }
    return NULL;
}

static void nt_start(void)
{
    nt.path = tu_fmt("%s/notify.sock", dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    ck_assert_msg(strlen(nt.path) < sizeof(sa.sun_path), "socket path too long: %s", nt.path);
    strcpy(sa.sun_path, nt.path);
    nt.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(nt.fd, 0);
    ck_assert_msg(bind(nt.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind: %s",
                  strerror(errno));
    setenv("NOTIFY_SOCKET", nt.path, 1);
    nt.ready = nt.statuses = 0;
    nt.status[0] = '\0';
    atomic_store(&nt.stop, false);
    ck_assert_int_eq(pthread_create(&nt.thread, NULL, nt_main, NULL), 0);
    nt.started = true;
}

static void nt_stop(void)
{
    if (nt.started) {
        atomic_store(&nt.stop, true);
        pthread_join(nt.thread, NULL);
        nt.started = false;
    }
    if (nt.fd >= 0) {
        close(nt.fd);
        nt.fd = -1;
    }
    free(nt.path);
    nt.path = NULL;
    unsetenv("NOTIFY_SOCKET");
}

/* The last STATUS= (malloc'd, gc'd) and how many were received. */
static const char *nt_status(unsigned long *count)
{
    pthread_mutex_lock(&nt.mu);
    char *s = strdup(nt.status);
    if (count) {
        *count = nt.statuses;
    }
    pthread_mutex_unlock(&nt.mu);
    return gc(s);
}

static unsigned long nt_ready(void)
{
    pthread_mutex_lock(&nt.mu);
    unsigned long n = nt.ready;
    pthread_mutex_unlock(&nt.mu);
    return n;
}

/* ---- cleanup and checks ---------------------------------------------------- */

static void cleanup(void)
{
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        child = 0;
    }
    if (httpd_pid > 0) {
        tu_httpd_stop(httpd_pid);
        httpd_pid = 0;
    }
    nt_stop();
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

/* The end of fetchd's stderr, for failure messages. */
static const char *diag(void)
{
    char *e = err_path ? tu_read(err_path) : NULL;
    if (!e) {
        return "(no stderr)";
    }
    size_t l = strlen(e);
    char *s = tu_fmt("\n--- fetchd stderr ---\n%s", l > 4000 ? e + l - 4000 : e);
    free(e);
    return gc(s);
}

#define ensure(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            free(fail_msg);                                                                        \
            fail_msg = tu_fmt(__VA_ARGS__);                                                        \
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
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    /* orphans of fetchd come to the test (see the top comment) */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

static void teardown(void)
{
    cleanup();
    free(fail_msg);
    fail_msg = NULL;
}

/* ---- running fetchd ---------------------------------------------------------- */

static const char *path_in(const char *name)
{
    return gc(tu_fmt("%s/%s", dir, name));
}

/* --once with the config text; stderr also goes to err_path (diag). */
static void run_once(const char *cfg, struct tu_result *res)
{
    free(tu_write(dir, "fetchd.json", cfg));
    const char *argv[] = {tu_fetchd(), "--once", "--log-level", "info", "-c", cfg_path, NULL};
    tu_run(argv, 60 * tu_slack(), res);
    free(tu_write(dir, "err", res->err));
}

static void start_daemon(const char *cfg)
{
    free(tu_write(dir, "fetchd.json", cfg));
    const char *argv[] = {tu_fetchd(), "--log-level", "info", "-c", cfg_path, NULL};
    child = tu_spawn(argv, NULL, err_path);
    ck_assert_int_gt(child, 0);
}

static void wait_ready(unsigned long n)
{
    double end = tu_now() + 20 * tu_slack();
    while (nt_ready() < n && tu_now() < end) {
        usleep(10000);
    }
    ensure(nt_ready() >= n, "no READY=1 (#%lu) from fetchd: %s", n, diag());
}

/* SIGTERM; the exit status (like tu_wait) and the time it took. */
static int stop_daemon(double *secs)
{
    double t0 = tu_now();
    ensure(kill(child, SIGTERM) == 0, "kill: %s", strerror(errno));
    int st = tu_wait(child, 60 * tu_slack());
    child = 0;
    if (secs) {
        *secs = tu_now() - t0;
    }
    return st;
}

/* "sinks: Q queued, D dropped" of a STATUS= value; false if absent. */
static bool status_sinks(const char *st, unsigned long *queued, unsigned long *dropped)
{
    const char *p = st ? strstr(st, "; sinks: ") : NULL;
    return p && sscanf(p, "; sinks: %lu queued, %lu dropped", queued, dropped) == 2;
}

/* ---- /proc ------------------------------------------------------------------ */

/* State letter and parent of pid from /proc/PID/stat; false if it is gone. */
static bool proc_state(pid_t pid, char *state, pid_t *ppid)
{
    char *path = tu_fmt("/proc/%d/stat", (int)pid);
    char *s = tu_read(path);
    free(path);
    if (!s) {
        return false;
    }
    const char *rp = strrchr(s, ')'); /* comm may hold spaces and parens */
    char st = '?';
    int pp = 0;
    bool ok = rp && sscanf(rp + 1, " %c %d", &st, &pp) == 2;
    free(s);
    if (state) {
        *state = st;
    }
    if (ppid) {
        *ppid = pp;
    }
    return ok;
}

static char *proc_comm(pid_t pid)
{
    char *path = tu_fmt("/proc/%d/comm", (int)pid);
    char *s = tu_read(path);
    free(path);
    if (s) {
        s[strcspn(s, "\n")] = '\0';
    }
    return s;
}

/* Children of parent (up to max), and how many of them are zombies. */
static size_t children_of(pid_t parent, pid_t *pids, size_t max, size_t *zombies)
{
    DIR *d = opendir("/proc");
    size_t n = 0, z = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        char st;
        pid_t pp;
        if (*end || pid <= 0 || !proc_state((pid_t)pid, &st, &pp) || pp != parent) {
            continue;
        }
        if (n < max) {
            pids[n] = (pid_t)pid;
        }
        n++;
        z += st == 'Z';
    }
    if (d) {
        closedir(d);
    }
    if (zombies) {
        *zombies = z;
    }
    return n;
}

/* The child of parent named comm (waits for it up to timeout_s), or 0. */
static pid_t child_named(pid_t parent, const char *comm, double timeout_s)
{
    double end = tu_now() + timeout_s;
    do {
        pid_t pids[64];
        size_t n = children_of(parent, pids, 64, NULL);
        for (size_t i = 0; i < n && i < 64; i++) {
            char *c = proc_comm(pids[i]);
            bool match = c && strcmp(c, comm) == 0;
            free(c);
            if (match) {
                return pids[i];
            }
        }
        usleep(10000);
    } while (tu_now() < end);
    return 0;
}

/* No child of parent stays a zombie: zombies seen in a first look must be
 * gone (reaped) in a second one a moment later (an exit and its reaping are
 * not one instant). */
static void check_no_lingering_zombie(pid_t parent)
{
    pid_t a[64], b[64];
    size_t za, zb;
    size_t na = children_of(parent, a, 64, &za);
    if (!za) {
        return;
    }
    usleep((useconds_t)(300000 * tu_slack()));
    size_t nb = children_of(parent, b, 64, &zb);
    for (size_t i = 0; i < na && i < 64; i++) {
        char sa;
        if (!proc_state(a[i], &sa, NULL) || sa != 'Z') {
            continue;
        }
        for (size_t j = 0; j < nb && j < 64; j++) {
            ensure(a[i] != b[j], "pid %d stays an unreaped zombie child of fetchd: %s", (int)a[i],
                   diag());
        }
    }
}

/* pid must not exist any more: fetchd reaped it. With the subreaper, one it
 * left running or unreaped would be the test's child now. */
static void check_gone(pid_t pid, const char *what)
{
    char st = '?';
    pid_t pp = 0;
    bool exists = proc_state(pid, &st, &pp);
    ensure(!exists || (pp != getpid() && st != 'Z'),
           "%s (pid %d) outlived fetchd (state %c, parent %d): %s", what, (int)pid, st, (int)pp,
           diag());
}

/* ---- records ------------------------------------------------------------------- */

static size_t count_str(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle)) {
        n++;
    }
    return n;
}

/* Checks the JSON Lines file at path: every line a whole record ('{' ...
 * '}' that parses, with an "endpoint"), the file ending in a newline.
 * Returns the number of records; the endpoints' names, each followed by
 * '\n', are appended to *names if names is not NULL. */
static size_t check_records(const char *path, char **names)
{
    char *content = tu_read(path);
    ensure(content, "%s was not written: %s", path, diag());
    gc(content);
    size_t n = 0;
    for (const char *p = content; *p;) {
        const char *nl = strchr(p, '\n');
        ensure(nl, "%s ends in a partial record (%zu bytes): %.80s", path, strlen(p), p);
        size_t l = (size_t)(nl - p);
        ensure(l >= 2 && p[0] == '{' && p[l - 1] == '}',
               "%s: line %zu is not a whole record: %.80s", path, n + 1, p);
        cJSON *j = cJSON_ParseWithLength(p, l);
        ensure(j, "%s: line %zu is not JSON: %.80s", path, n + 1, p);
        cJSON *ep = cJSON_GetObjectItemCaseSensitive(j, "endpoint");
        ensure(cJSON_IsString(ep), "%s: line %zu has no endpoint", path, n + 1);
        if (names) {
            char *nn = tu_fmt("%s%s\n", *names ? *names : "", ep->valuestring);
            free(*names);
            *names = nn;
        }
        cJSON_Delete(j);
        n++;
        p = nl + 1;
    }
    return n;
}

static size_t file_lines(const char *path)
{
    char *s = tu_read(path);
    size_t n = tu_lines(s);
    free(s);
    return n;
}

static bool wait_lines(const char *path, size_t n, double timeout_s)
{
    double end = tu_now() + timeout_s;
    while (file_lines(path) < n) {
        if (tu_now() > end) {
            return false;
        }
        usleep(20000);
    }
    return true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The lines of s, sorted and joined again with '\n' (gc'd). */
static const char *sorted_lines(const char *s)
{
    char *copy = gc(strdup(s ? s : ""));
    const char *v[256];
    size_t n = 0;
    for (char *tok = strtok(copy, "\n"); tok && n < 256; tok = strtok(NULL, "\n")) {
        v[n++] = tok;
    }
    qsort(v, n, sizeof(v[0]), cmp_str);
    char *out = strdup("");
    for (size_t i = 0; i < n; i++) {
        char *o = tu_fmt("%s%s\n", out, v[i]);
        free(out);
        out = o;
    }
    return gc(out);
}

/* ---- tests ----------------------------------------------------------------------- */

/* --once: every record reaches the command whole, exactly once, also
 * records several times larger than the pipe's 64 KiB (written in parts as
 * the command reads); the command gets EOF and exits 0. */
START_TEST(test_once_delivers_whole_records)
{
    const char *out = path_in("out.jsonl");
    char *cfg = tu_fmt(
        "{\"defaults\": {\"sinks\": [\"x\"]},"
        " \"sinks\": {\"x\": {\"type\": \"exec\", \"command\": [\"sh\", \"-c\", \"cat > '%s'\"]}},"
        " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
        " \"b\": {\"url\": \"http://127.0.0.1:%d/b\"},"
        " \"c\": {\"url\": \"http://127.0.0.1:%d/c?status=500\"},"
        " \"d\": {\"url\": \"http://127.0.0.1:%d/d?size=300000\"},"
        " \"e\": {\"url\": \"http://127.0.0.1:%d/e?size=250000\"}}}",
        out, port, port, port, port, port);
    struct tu_result res;
    run_once(cfg, &res);
    free(cfg);
    gc(res.out);
    gc(res.err);
    /* c fails (HTTP 500): exit status 1, but its error record is delivered */
    ensure(res.status == 1, "exit status %d: %s", res.status, diag());
    char *names = NULL;
    size_t n = check_records(out, &names);
    gc(names);
    ensure(n == 5, "%zu records, want 5: %s", n, diag());
    ensure(strcmp(sorted_lines(names), "a\nb\nc\nd\ne\n") == 0, "endpoints: %s", names);
    char *content = gc(tu_read(out));
    ensure(strlen(content) > 550000, "the large records are short: %zu bytes", strlen(content));
    ensure(strstr(res.err, "exited with status 0 after EOF"), "no clean exit logged: %s", diag());
    ensure(count_str(res.err, "started \"") == 1, "started more than once: %s", diag());
}
END_TEST

/* S11: the command's environment is exactly the allowlisted variables,
 * FETCHD_SINK and "environment"; only fds 0-2 are open; no signal blocked
 * or ignored. fetchd runs with systemd's and secret-looking variables. */
START_TEST(test_child_hygiene)
{
    /* a known environment for fetchd: the allowlisted names fixed, other
     * locale variables removed */
    for (bool again = true; again;) {
        again = false;
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "LC_", 3) == 0 || strncmp(*e, "LANGUAGE=", 9) == 0) {
                char *name = strndup(*e, strcspn(*e, "="));
                unsetenv(name);
                free(name);
                again = true;
                break;
            }
        }
    }
    setenv("LANG", "C", 1);
    setenv("LC_TIME", "C", 1);
    setenv("TZ", "UTC", 1);
    setenv("HOME", "/nonexistent", 1);
    setenv("NOTIFY_SOCKET", path_in("no-notify.sock"), 1);
    setenv("WATCHDOG_USEC", "30000000", 1);
    setenv("WATCHDOG_PID", "1", 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_PID", "1", 1);
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    setenv("FETCHD_TEST_API_TOKEN", "hunter2", 1);
    setenv("DB_PASSWORD", "s3cr3t", 1);
    const char *path = getenv("PATH");

    char *cfg =
        tu_fmt("{\"defaults\": {\"sinks\": [\"hyg\"]},"
               " \"sinks\": {\"hyg\": {\"type\": \"exec\", \"command\": [\"sh\", \"-c\","
               " \"tr '\\\\000' '\\\\n' < /proc/$$/environ > '%s'; ls -l /proc/self/fd > '%s';"
               " grep -E 'Sig(Blk|Ign)' /proc/self/status > '%s'; cat > '%s'\"],"
               " \"environment\": [\"FOO=bar baz\", \"TZ=Europe/Berlin\", \"EMPTY=\"]}},"
               " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\"}}}",
               path_in("E"), path_in("F"), path_in("S"), path_in("out"), port);
    struct tu_result res;
    run_once(cfg, &res);
    free(cfg);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 0, "exit status %d: %s", res.status, diag());
    ensure(check_records(path_in("out"), NULL) == 1, "the record did not arrive: %s", diag());

    char *env = gc(tu_read(path_in("E")));
    const char *want = sorted_lines(gc(tu_fmt("PATH=%s\nHOME=/nonexistent\nLANG=C\nLC_TIME=C\n"
                                              "TZ=Europe/Berlin\nFETCHD_SINK=hyg\nFOO=bar baz\n"
                                              "EMPTY=\n",
                                              path ? path : "/usr/local/bin:/usr/bin:/bin")));
    ensure(env && strcmp(sorted_lines(env), want) == 0, "environment:\n%s\nwant:\n%s", env, want);
    /* ls inherits the shell's fds, which are the command's (dash keeps
     * the ones it saves close-on-exec), and opens one for /proc/self/fd */
    char *fds = gc(tu_read(path_in("F")));
    ensure(fds, "no fd list");
    char *copy = gc(strdup(fds));
    const char *seen_fds = "";
    for (char *ln = strtok(copy, "\n"); ln; ln = strtok(NULL, "\n")) {
        char *arrow = strstr(ln, " -> ");
        if (!arrow) {
            continue; /* "total 0" */
        }
        char *sp = arrow;
        while (sp > ln && sp[-1] != ' ') {
            sp--;
        }
        int fd = atoi(sp);
        const char *target = arrow + 4;
        size_t tl = strlen(target);
        bool ls_dir = fd == 3 && strncmp(target, "/proc/", 6) == 0 && tl > 3 &&
                      strcmp(target + tl - 3, "/fd") == 0;
        if (!ls_dir) {
            seen_fds = gc(tu_fmt("%s%d ", seen_fds, fd));
        }
    }
    ensure(strcmp(seen_fds, "0 1 2 ") == 0, "open fds of the command: %s\n%s", seen_fds, fds);
    char *sig = gc(tu_read(path_in("S")));
    ensure(sig && strcmp(sig, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n") == 0,
           "signals of the command:\n%s", sig);
}
END_TEST

/* S8: a command that never reads. The pipe fills, the queue (50 records)
 * overflows and drops are counted in STATUS=, fetching goes on and STATUS=
 * keeps changing; at SIGTERM the command gets EOF, then SIGTERM after
 * stop_timeout, and is reaped; fetchd exits 74 (records were lost). */
START_TEST(test_never_reads)
{
    nt_start();
    char *eps = strdup("");
    for (int i = 0; i < 5; i++) {
        char *n = tu_fmt("%s%s\"e%d\": {\"url\": \"http://127.0.0.1:%d/e%d?size=4000\"}", eps,
                         i ? ", " : "", i, port, i);
        free(eps);
        eps = n;
    }
    char *cfg = tu_fmt("{\"limits\": {\"shutdown_grace\": \"300ms\"},"
                       " \"defaults\": {\"interval\": \"100ms\", \"sinks\": [\"x\"]},"
                       " \"sinks\": {\"x\": {\"type\": \"exec\", \"command\": [\"sleep\", \"600\"],"
                       " \"queue_max_records\": 50, \"stop_timeout\": \"300ms\"}},"
                       " \"endpoints\": {%s}}",
                       eps);
    free(eps);
    start_daemon(cfg);
    free(cfg);
    wait_ready(1);
    pid_t sl = child_named(child, "sleep", 10 * tu_slack());
    ensure(sl > 0, "no sleep child of fetchd: %s", diag());

    /* drops show up in STATUS= */
    unsigned long q = 0, d = 0, seen = 0;
    double end = tu_now() + 30 * tu_slack();
    while (tu_now() < end) {
        if (status_sinks(nt_status(&seen), &q, &d) && d > 0) {
            break;
        }
        usleep(50000);
    }
    ensure(d > 0, "no drops in STATUS= (last: %s): %s", nt_status(NULL), diag());
    ensure(q >= 1 && q <= 50, "queued %lu with queue_max_records 50", q);

    /* the loop goes on: fetches continue and STATUS= changes */
    long r0 = tu_httpd_requests(port);
    const char *s0 = nt_status(&seen);
    unsigned long seen0 = seen;
    const char *s1 = s0;
    end = tu_now() + 10 * tu_slack();
    while (tu_now() < end && (seen == seen0 || strcmp(s1, s0) == 0)) {
        usleep(50000);
        s1 = nt_status(&seen);
    }
    ensure(seen > seen0 && strcmp(s1, s0) != 0, "STATUS= stopped changing (last: %s): %s", s0,
           diag());
    ensure(tu_httpd_wait_requests(port, r0 + 5, 10 * tu_slack()),
           "fetching stopped while the command does not read: %s", diag());
    char st;
    ensure(proc_state(sl, &st, NULL) && st != 'Z', "the command is not running (%c)", st);
    check_no_lingering_zombie(child);

    double secs;
    pid_t fetchd_pid = child;
    int status = stop_daemon(&secs);
    (void)fetchd_pid;
    ensure(status == 74, "exit status %d, want 74 (records dropped): %s", status, diag());
    /* grace 0.3 s + finish up to 2 s + 0.3 s after EOF + SIGTERM */
    ensure(secs < 10 * tu_slack(), "stopping took %.1f s: %s", secs, diag());
    check_gone(sl, "the command");
    char *err = gc(tu_read(err_path));
    ensure(strstr(err, "did not exit within 300ms of EOF, sent SIGTERM"),
           "no SIGTERM after stop_timeout logged: %s", diag());
    ensure(strstr(err, "was killed by signal 15"), "no exit by SIGTERM logged: %s", diag());
    ensure(!strstr(err, "sent SIGKILL"), "sleep needed SIGKILL: %s", diag());
}
END_TEST

/* S9: a command that takes one record and exits 3. fetchd survives, starts
 * it again after the backoff (200-400 ms: no tight loop), reaps every
 * incarnation, and logs the exits once (at most once a minute). */
START_TEST(test_crashing_command_restarted)
{
    const char *pids = path_in("pids");
    char *cfg = tu_fmt("{\"defaults\": {\"interval\": \"100ms\", \"sinks\": [\"x\"]},"
                       " \"sinks\": {\"x\": {\"type\": \"exec\", \"command\": [\"sh\", \"-c\","
                       " \"echo $$ >> '%s'; read x; exit 3\"],"
                       " \"retry_backoff\": \"400ms\", \"retry_max_backoff\": \"400ms\"}},"
                       " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                       " \"b\": {\"url\": \"http://127.0.0.1:%d/b\"}}}",
                       pids, port, port);
    start_daemon(cfg);
    free(cfg);
    ensure(wait_lines(pids, 2, 20 * tu_slack()), "the command was not restarted: %s", diag());
    double t0 = tu_now();
    size_t n0 = file_lines(pids);
    usleep(3000000);
    double span = tu_now() - t0;
    size_t n1 = file_lines(pids);
    /* a restart every 200-400 ms after an exit (plus the start itself) */
    size_t most = (size_t)(span / 0.2) + 1;
    ensure(n1 - n0 <= most, "%zu restarts in %.1f s: a tight loop: %s", n1 - n0, span, diag());
    ensure(n1 - n0 >= (tu_slack() > 1 ? 1u : 3u), "only %zu restarts in %.1f s: %s", n1 - n0, span,
           diag());
    ensure(kill(child, 0) == 0, "fetchd died: %s", diag());
    check_no_lingering_zombie(child);
    char *err = gc(tu_read(err_path));
    const char *exit_msg = "exited with status 3 after running";
    ensure(count_str(err, exit_msg) == 1, "exits not logged exactly once (%zu times): %s",
           count_str(err, exit_msg), diag());

    int status = stop_daemon(NULL);
    ensure(status == 0 || status == 74, "exit status %d: %s", status, diag());
    /* every incarnation is gone */
    char *list = gc(tu_read(pids));
    for (char *p = list; p && *p;) {
        pid_t pid = (pid_t)strtol(p, &p, 10);
        check_gone(pid, "an incarnation of the command");
        p += *p == '\n';
    }
}
END_TEST

/* A command that closes its standard input but runs on (ignoring SIGTERM):
 * the write fails with EPIPE, and before a new command starts the old one
 * gets SIGTERM, then SIGKILL after stop_timeout, and is reaped. */
START_TEST(test_closed_stdin_replaced)
{
    const char *pids = path_in("pids");
    char *cfg = tu_fmt("{\"defaults\": {\"interval\": \"100ms\", \"sinks\": [\"x\"]},"
                       " \"sinks\": {\"x\": {\"type\": \"exec\", \"command\": [\"sh\", \"-c\","
                       " \"trap '' TERM; exec 0<&-; echo $$ >> '%s'; exec sleep 600\"],"
                       " \"retry_backoff\": \"100ms\", \"retry_max_backoff\": \"200ms\","
                       " \"stop_timeout\": \"300ms\"}},"
                       " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\"}}}",
                       pids, port);
    start_daemon(cfg);
    free(cfg);
    ensure(wait_lines(pids, 3, 20 * tu_slack()), "the command was not replaced: %s", diag());
    ensure(kill(child, 0) == 0, "fetchd died: %s", diag());
    char *err = gc(tu_read(err_path));
    ensure(strstr(err, "closed its standard input but is still running; sending SIGTERM (SIGKILL "
                       "after 300ms)"),
           "no SIGTERM for a command that closed its input: %s", diag());
    ensure(strstr(err, "did not exit within 300ms of SIGTERM, sending SIGKILL"),
           "no SIGKILL after stop_timeout: %s", diag());
    ensure(strstr(err, "was killed by signal 9"), "no exit by SIGKILL logged: %s", diag());
    /* the first incarnation is gone, not a zombie of fetchd */
    char *list = gc(tu_read(pids));
    pid_t first = (pid_t)atoi(list);
    char st = '?';
    pid_t pp = 0;
    ensure(!proc_state(first, &st, &pp) || pp != child, "pid %d is still fetchd's (state %c)",
           (int)first, st);
    check_no_lingering_zombie(child);

    int status = stop_daemon(NULL);
    ensure(status == 0 || status == 74, "exit status %d: %s", status, diag());
    list = gc(tu_read(pids));
    for (char *p = list; p && *p;) {
        pid_t pid = (pid_t)strtol(p, &p, 10);
        check_gone(pid, "an incarnation of the command");
        p += *p == '\n';
    }
}
END_TEST

/* S10: a command that ignores SIGTERM (and stays after EOF) is killed with
 * SIGKILL stop_timeout after SIGTERM; every record reached it first. */
START_TEST(test_ignores_sigterm_killed)
{
    const char *pidf = path_in("pid");
    const char *out = path_in("out");
    char *cfg = tu_fmt("{\"defaults\": {\"sinks\": [\"x\"]},"
                       " \"sinks\": {\"x\": {\"type\": \"exec\", \"command\": [\"sh\", \"-c\","
                       " \"trap '' TERM; echo $$ > '%s'; cat > '%s'; exec sleep 600\"],"
                       " \"stop_timeout\": \"300ms\"}},"
                       " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\"},"
                       " \"b\": {\"url\": \"http://127.0.0.1:%d/b\"}}}",
                       pidf, out, port, port);
    struct tu_result res;
    run_once(cfg, &res);
    free(cfg);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 0, "exit status %d: %s", res.status, diag());
    ensure(check_records(out, NULL) == 2, "records missing: %s", diag());
    ensure(res.seconds >= 0.6, "fetchd did not wait 2 x stop_timeout (%.2f s)", res.seconds);
    ensure(res.seconds < 6 * tu_slack(), "fetchd took %.1f s: %s", res.seconds, diag());
    ensure(strstr(res.err, "did not exit within 300ms of EOF, sent SIGTERM"), "%s", diag());
    ensure(strstr(res.err, "did not exit within 300ms of SIGTERM, sent SIGKILL"), "%s", diag());
    ensure(strstr(res.err, "was killed by signal 9"), "no exit by SIGKILL logged: %s", diag());
    char *p = gc(tu_read(pidf));
    ensure(p && atoi(p) > 0, "no pid written");
    check_gone((pid_t)atoi(p), "the command");
}
END_TEST

/* Each incarnation of the command appends its pid to dir/pids and writes
 * the records to dir/out.PID. */
static char *reload_cfg(const char *stop_timeout)
{
    return tu_fmt("{\"defaults\": {\"interval\": \"100ms\", \"sinks\": [\"x\"]},"
                  " \"sinks\": {\"x\": {\"type\": \"exec\", \"command\": [\"sh\", \"-c\","
                  " \"echo $$ >> '%s/pids'; exec cat > '%s'/out.$$\"],"
                  " \"stop_timeout\": \"%s\"}},"
                  " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\"}}}",
                  dir, dir, stop_timeout, port);
}

/* A reload that keeps the sink's definition keeps the command; one that
 * changes it stops the old command (EOF: it exits by itself) and starts a
 * new one. Every incarnation writes whole records to its own file. */
START_TEST(test_reload_keeps_or_replaces)
{
    nt_start();
    char *cfg = reload_cfg("2s");
    start_daemon(cfg);
    wait_ready(1);
    const char *pids = path_in("pids");
    ensure(wait_lines(pids, 1, 10 * tu_slack()), "not started: %s", diag());
    char *p1 = gc(tu_read(pids));
    pid_t first = (pid_t)atoi(p1);
    const char *out1 = path_in(gc(tu_fmt("out.%d", (int)first)));
    ensure(wait_lines(out1, 2, 10 * tu_slack()), "no records in %s (pids: %s): %s", out1, p1,
           diag());

    /* same definition: same command */
    ensure(kill(child, SIGHUP) == 0, "kill");
    wait_ready(2);
    size_t before = file_lines(out1);
    ensure(wait_lines(out1, before + 2, 10 * tu_slack()), "records stopped: %s", diag());
    ensure(file_lines(pids) == 1, "the command was restarted by a reload that kept it: %s", diag());
    char st;
    ensure(proc_state(first, &st, NULL) && st != 'Z', "the command is gone");

    /* a changed definition: the old command gets EOF and exits */
    free(cfg);
    cfg = reload_cfg("3s");
    free(tu_write(dir, "fetchd.json", cfg));
    free(cfg);
    ensure(kill(child, SIGHUP) == 0, "kill");
    wait_ready(3);
    ensure(wait_lines(pids, 2, 10 * tu_slack()), "no new command: %s", diag());
    double end = tu_now() + 5 * tu_slack();
    while (proc_state(first, &st, NULL) && tu_now() < end) {
        usleep(10000);
    }
    check_gone(first, "the replaced command");
    pid_t second = (pid_t)atoi(strchr(gc(tu_read(pids)), '\n') + 1);
    ensure(second > 0 && second != first, "second pid %d", (int)second);
    const char *out2 = path_in(gc(tu_fmt("out.%d", (int)second)));
    ensure(wait_lines(out2, 2, 10 * tu_slack()), "no records for the new command: %s", diag());

    int status = stop_daemon(NULL);
    ensure(status == 0, "exit status %d: %s", status, diag());
    check_gone(second, "the command");
    size_t n1 = check_records(out1, NULL), n2 = check_records(out2, NULL);
    ensure(n1 >= 4 && n2 >= 2, "records %zu + %zu", n1, n2);
    char *err = gc(tu_read(err_path));
    ensure(count_str(err, "exited with status 0 after EOF") == 2, "clean exits: %s", diag());
}
END_TEST

struct cfg_case {
    const char *sink; /* the inside of the sink object after "type" */
    const char *path; /* in the message */
    const char *msg;  /* in the message too */
};

static const struct cfg_case cfg_cases[] = {
    {"", "sinks.x", "missing \"command\""},
    {", \"command\": []", "sinks.x.command", "expected a non-empty array of strings"},
    {", \"command\": \"/bin/cat\"", "sinks.x.command", "expected a non-empty array of strings"},
    {", \"command\": [\"/bin/cat\", 5]", "sinks.x.command", "element 1: expected a string"},
    {", \"command\": [\"/bin/cat\"], \"environment\": [\"FOO\"]", "sinks.x",
     "environment: element 0 \"FOO\" is not NAME=value"},
    {", \"command\": [\"/bin/cat\"], \"environment\": [\"A=1\", \"1X=y\"]", "sinks.x",
     "environment: element 1 \"1X=y\" is not NAME=value"},
    {", \"command\": [\"/bin/cat\"], \"environment\": [\"=y\"]", "sinks.x",
     "environment: element 0 \"=y\" is not NAME=value"},
    {", \"command\": [\"bin/cat\"]", "sinks.x",
     "command: the program \"bin/cat\" must be an absolute path or a bare name"},
    {", \"command\": [\"\"]", "sinks.x", "command: the program (element 0) is empty"},
    {", \"command\": [\"no-such-command-fetchd-test\"]", "sinks.x",
     "command: \"no-such-command-fetchd-test\" not found"},
    {", \"command\": [\"/nonexistent/fetchd-test\"]", "sinks.x",
     "command: cannot execute \"/nonexistent/fetchd-test\": No such file or directory"},
    {", \"command\": [\"/etc\"]", "sinks.x",
     "command: cannot execute \"/etc\": not an executable regular file"},
    {", \"command\": [\"/bin/cat\"], \"stop_timeout\": \"soon\"", "sinks.x.stop_timeout", ""},
    {", \"command\": [\"/bin/cat\"], \"comand\": 1", "sinks.x",
     "unknown key \"comand\"; did you mean \"command\"?"},
};

/* Configuration errors: exit 78, the key path and the reason in the
 * message, and nothing started. */
START_TEST(test_config_errors)
{
    const struct cfg_case *c = &cfg_cases[_i];
    char *cfg = tu_fmt("{\"sinks\": {\"x\": {\"type\": \"exec\"%s}},"
                       " \"endpoints\": {\"a\": {\"url\": \"http://127.0.0.1:%d/a\","
                       " \"sinks\": [\"x\"]}}}",
                       c->sink, port);
    struct tu_result res;
    run_once(cfg, &res);
    free(cfg);
    gc(res.out);
    gc(res.err);
    ensure(res.status == 78, "case %d: exit status %d: %s", _i, res.status, diag());
    char *full = gc(tu_fmt("%s: %s", c->path, c->msg));
    ensure(strstr(res.err, *c->msg ? full : c->path), "case %d: no \"%s\" in: %s", _i,
           *c->msg ? full : c->path, res.err);
    ensure(!strstr(res.err, "started"), "case %d: something started: %s", _i, res.err);
    ensure(tu_httpd_requests(port) == 0, "case %d: fetched", _i);
}
END_TEST

static Suite *exec_suite(void)
{
    Suite *s = suite_create("sink-exec");
    TCase *tc = tcase_create("exec");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_once_delivers_whole_records);
    tcase_add_test(tc, test_child_hygiene);
    tcase_add_test(tc, test_never_reads);
    tcase_add_test(tc, test_crashing_command_restarted);
    tcase_add_test(tc, test_closed_stdin_replaced);
    tcase_add_test(tc, test_ignores_sigterm_killed);
    tcase_add_test(tc, test_reload_keeps_or_replaces);
    tcase_add_loop_test(tc, test_config_errors, 0, (int)(sizeof(cfg_cases) / sizeof(cfg_cases[0])));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(exec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
