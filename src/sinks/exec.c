/* exec.c - JSON Lines fed to a long-running command on its standard input.
 *
 * The command ("command": argv) is started (fork + execve, see exec_child)
 * when the sink opens. Its standard input is the read end of a pipe whose
 * write end fetchd keeps non-blocking and writes with the shared writer
 * (writer.h): whole records, a full pipe waits for EV_WRITE, a record taken
 * in part is completed before the next one. Its standard output and
 * standard error are fetchd's (the journal under systemd).
 *
 * Child hygiene: a clean environment (PATH, HOME, LANG, LANGUAGE, LC_*, TZ
 * from fetchd's, PATH defaulting to EXEC_DEFAULT_PATH, plus FETCHD_SINK=<the
 * sink's name> and the "environment" entries, which win), so NOTIFY_SOCKET,
 * WATCHDOG_*, LISTEN_*, CREDENTIALS_DIRECTORY and any secret fetchd got
 * through its environment never reach it; only fds 0-2 open (every fd of
 * fetchd is O_CLOEXEC, and the child closes fds >= 3 on top of that);
 * default dispositions for every signal (fetchd ignores SIGPIPE; glibc's
 * internal 32 and 33 included) and an empty signal mask (fetchd blocks
 * SIGTERM/SIGINT/SIGHUP while it starts);
 * its own process group, so a Ctrl-C at a terminal reaches fetchd only and
 * fetchd's stop signals reach the helpers of a shell wrapper too.
 *
 * argv[0] is either an absolute path or a bare name looked up in the PATH of
 * the child's environment; check() resolves it at load time, so a missing
 * command is a configuration error.
 *
 * While fetchd runs, the command is reaped by an ev_child watcher. When it
 * exits, or the pipe gives EPIPE: a record it got in part is counted lost
 * (sink_fail), queued records stay queued, the exit is logged (at most once
 * a minute, with the count of exits in between), and the command is started
 * again when records are waiting, after the sink's retry backoff
 * (retry_backoff doubling up to retry_max_backoff while nothing could be
 * written). A command that closed its standard input but keeps running is
 * told to stop (SIGTERM, SIGKILL after stop_timeout) before a new one
 * starts.
 *
 * Stop (close(), after finish() wrote what it could before the deadline):
 * the pipe is closed (EOF), the command gets stop_timeout to exit, then
 * SIGTERM, stop_timeout again, then SIGKILL; it is always reaped. This
 * blocks, which is fine at exit (the loop has stopped); at a reload that
 * changes the sink's definition it blocks the loop for at most twice
 * stop_timeout (a command that exits on EOF takes milliseconds).
 *
 * Delivery: at most once; a record counts as delivered once it is written
 * to the pipe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "sink.h"
#include "sinks/writer.h"
#include "units.h"

enum { EXEC_OPT_COMMAND, EXEC_OPT_ENVIRONMENT, EXEC_OPT_STOP_TIMEOUT };

static const struct opt_def exec_options[] = {
    [EXEC_OPT_COMMAND] = {"command", OPT_STRINGS, true,
                          "the command and its arguments, e.g. [\"/usr/bin/logger\", \"-t\", "
                          "\"fetchd\"]; the program is an absolute path or a name looked up "
                          "in PATH",
                          NULL},
    [EXEC_OPT_ENVIRONMENT] = {"environment", OPT_STRINGS, false,
                              "\"NAME=value\" entries added to the command's clean environment",
                              NULL},
    [EXEC_OPT_STOP_TIMEOUT] = {"stop_timeout", OPT_DURATION, false,
                               "how long the command may take to exit after EOF, and after "
                               "SIGTERM (default 5s)",
                               NULL},
    {0},
};

#define EXEC_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define EXEC_DEFAULT_STOP_TIMEOUT (5 * USEC_PER_SEC)
#define EXEC_EXIT_LOG_EVERY (60 * USEC_PER_SEC)
/* after SIGKILL: how long to wait for the kernel before giving up (a
 * process stuck in uninterruptible sleep); libev or init reaps it later */
#define EXEC_KILL_WAIT (5 * USEC_PER_SEC)
#define EXEC_POLL_USEC (5 * USEC_PER_MSEC)

struct exec_sink {
    struct writer w;       /* valid while fd >= 0 */
    int fd;                /* the pipe's write end (owned), -1: none */
    pid_t pid;             /* the command, 0: none running (reaped) */
    usec_t started;        /* CLOCK_MONOTONIC: when pid was spawned */
    ev_child child;        /* reaps pid while the loop runs */
    ev_timer kill_timer;   /* restart path: SIGKILL after SIGTERM */
    bool terminating;      /* restart path: SIGTERM sent to pid */
    bool backoff_due;      /* the command ended: back off before the next */
    char why[160];         /* how the last command ended, for sink_retry */
    uint64_t exits;        /* unexpected exits */
    uint64_t exits_logged; /* exits up to the last message */
    usec_t exit_log_at;    /* CLOCK_MONOTONIC: next exit message */
};

/* ---- the environment ------------------------------------------------------- */

static bool env_allowed(const char *entry)
{
    static const char *const names[] = {"PATH", "HOME", "LANG", "LANGUAGE", "TZ"};
    const char *eq = strchr(entry, '=');
    if (!eq) {
        return false;
    }
    size_t len = (size_t)(eq - entry);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i]) == len && memcmp(entry, names[i], len) == 0) {
            return true;
        }
    }
    return len > 3 && memcmp(entry, "LC_", 3) == 0;
}

/* A valid variable name: [A-Za-z_][A-Za-z0-9_]*, up to '=' or the end. */
static bool env_name_ok(const char *s, size_t len)
{
    if (!len || (s[0] >= '0' && s[0] <= '9')) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_')) {
            return false;
        }
    }
    return true;
}

struct env {
    char **v; /* NULL-terminated, entries malloc'd */
    size_t n, cap;
};

static void env_free(struct env *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->v[i]);
    }
    free(e->v);
    memset(e, 0, sizeof(*e));
}

/* Sets "NAME=value" (replacing an entry of that name). 0 or -ENOMEM. */
static int env_put(struct env *e, const char *entry)
{
    size_t nl = (size_t)(strchr(entry, '=') - entry);
    char *copy = strdup(entry);
    if (!copy) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < e->n; i++) {
        if (strncmp(e->v[i], entry, nl + 1) == 0) {
            free(e->v[i]);
            e->v[i] = copy;
            return 0;
        }
    }
    if (e->n + 2 > e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        char **v = realloc(e->v, cap * sizeof(char *));
        if (!v) {
            free(copy);
            return -ENOMEM;
        }
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = copy;
    e->v[e->n] = NULL;
    return 0;
}

static const char *env_get(const struct env *e, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < e->n; i++) {
        if (strncmp(e->v[i], name, nl) == 0 && e->v[i][nl] == '=') {
            return e->v[i] + nl + 1;
        }
    }
    return NULL;
}

/* The command's environment: the allowlisted variables of fetchd's, a
 * default PATH, FETCHD_SINK, then the "environment" entries (validated by
 * exec_check). 0 or -ENOMEM. */
static int env_build(const struct sink_cfg *c, struct env *e)
{
    memset(e, 0, sizeof(*e));
    int r = env_put(e, "PATH=" EXEC_DEFAULT_PATH);
    for (char **p = environ; r == 0 && p && *p; p++) {
        if (env_allowed(*p)) {
            r = env_put(e, *p);
        }
    }
    char *sn = NULL;
    if (r == 0) {
        r = asprintf(&sn, "FETCHD_SINK=%s", c->name) < 0 ? -ENOMEM : env_put(e, sn);
        free(sn);
    }
    const struct opt_value *ev = &c->values[EXEC_OPT_ENVIRONMENT];
    for (size_t i = 0; r == 0 && ev->set && i < ev->u; i++) {
        r = env_put(e, ev->list[i]);
    }
    if (r < 0) {
        env_free(e);
    }
    return r;
}

/* ---- the program ----------------------------------------------------------- */

static int exec_usable(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        return -errno;
    }
    if (!S_ISREG(st.st_mode)) {
        return -EACCES;
    }
    return access(path, X_OK) < 0 ? -errno : 0;
}

/* The file argv[0] names: an absolute path as it is, a bare name searched
 * in path_env (relative and empty entries are skipped: they would depend on
 * fetchd's working directory). Writes it into out, or a reason into err;
 * returns 0 or -errno. */
static int exec_resolve(const char *name, const char *path_env, char *out, size_t outlen, char *err,
                        size_t errlen)
{
    if (!*name) {
        snprintf(err, errlen, "command: the program (element 0) is empty");
        return -EINVAL;
    }
    if (strchr(name, '/')) {
        if (name[0] != '/') {
            snprintf(err, errlen,
                     "command: the program \"%s\" must be an absolute path or a bare name looked "
                     "up in PATH",
                     name);
            return -EINVAL;
        }
        int r = exec_usable(name);
        if (r < 0) {
            snprintf(err, errlen, "command: cannot execute \"%s\": %s", name,
                     r == -EACCES ? "not an executable regular file" : strerror(-r));
            return r;
        }
        if ((size_t)snprintf(out, outlen, "%s", name) >= outlen) {
            snprintf(err, errlen, "command: the program's path is too long");
            return -ENAMETOOLONG;
        }
        return 0;
    }
    const char *p = path_env ? path_env : "";
    while (*p) {
        const char *colon = strchr(p, ':');
        size_t dl = colon ? (size_t)(colon - p) : strlen(p);
        if (dl && p[0] == '/' && dl + 1 + strlen(name) < outlen) {
            snprintf(out, outlen, "%.*s/%s", (int)dl, p, name);
            if (exec_usable(out) == 0) {
                return 0;
            }
        }
        p += dl + (colon ? 1 : 0);
    }
    snprintf(err, errlen, "command: \"%s\" not found (as an executable file) in PATH \"%s\"", name,
             path_env ? path_env : "");
    return -ENOENT;
}

/* Moves an fd to a number >= 3 (close-on-exec), so that fetchd's own 0-2
 * are never a pipe end and the child's dup2 onto 0 is a real one. Returns
 * the fd or -1 (errno set; fd closed). */
static int fd_above_stdio(int fd)
{
    if (fd > 2) {
        return fd;
    }
    int n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int e = errno;
    close(fd);
    errno = e;
    return n;
}

/* A pipe with both ends >= 3, close-on-exec. 0 or -errno. */
static int pipe_above_stdio(int p[2])
{
    if (pipe2(p, O_CLOEXEC) < 0) {
        return -errno;
    }
    p[0] = fd_above_stdio(p[0]);
    if (p[0] < 0) {
        int r = -errno;
        close(p[1]);
        return r;
    }
    p[1] = fd_above_stdio(p[1]);
    if (p[1] < 0) {
        int r = -errno;
        close(p[0]);
        return r;
    }
    return 0;
}

static usec_t exec_stop_timeout(const struct sink *s)
{
    const struct opt_value *v = &s->cfg->values[EXEC_OPT_STOP_TIMEOUT];
    return v->set ? v->u : EXEC_DEFAULT_STOP_TIMEOUT;
}

/* The forked child, up to execve: async-signal-safe calls only (fetchd may
 * have other threads: curl's resolver). Every signal's disposition goes
 * back to SIG_DFL through the raw system call, because glibc's sigaction
 * refuses its internal signals 32 and 33 and its posix_spawn leaves them
 * ignored; an all-zero kernel sigaction is SIG_DFL, no flags, an empty
 * mask on every architecture. Then the mask is emptied (the parent blocked
 * everything around fork). An error is written to errfd as an int. */
static void __attribute__((noreturn))
exec_child(int in, int errfd, const char *path, char *const argv[], char *const envp[])
{
    int e;
    if (dup2(in, STDIN_FILENO) < 0 || setpgid(0, 0) < 0) {
        goto fail;
    }
    /* all fds but 0-2 and errfd, which must close when execve works (a
     * command holding it would keep fetchd waiting in exec_spawn) */
    if (fcntl(errfd, F_SETFD, FD_CLOEXEC) < 0) {
        goto fail;
    }
    if ((errfd > 3 && close_range(3, (unsigned)errfd - 1, 0) < 0) ||
        close_range((unsigned)errfd + 1, ~0U, 0) < 0) {
        for (int fd = 3; fd < 65536; fd++) {
            if (fd != errfd) {
                (void)close(fd);
            }
        }
    }
    unsigned long ksa[16] = {0};
    for (int sig = 1; sig < _NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) {
            (void)syscall(SYS_rt_sigaction, sig, ksa, NULL, (size_t)(_NSIG - 1) / 8);
        }
    }
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0) {
        goto fail;
    }
    execve(path, argv, envp);
fail:
    e = errno;
    while (write(errfd, &e, sizeof(e)) < 0 && errno == EINTR) {
    }
    _exit(127);
}

/* Starts the command with its stdin on a new pipe; the write end becomes
 * x->fd (non-blocking, through the writer) and an ev_child watches pid.
 * fork+exec rather than posix_spawn: see exec_child. All signals are
 * blocked around fork so that no handler of fetchd's (libev's) runs in the
 * child; a second close-on-exec pipe brings back the errno of a failed
 * execve, so a command that cannot run is known at once. Returns 0 or
 * -errno with a reason in err. */
static int exec_spawn(struct sink *s, struct exec_sink *x, char *err, size_t errlen)
{
    char *const *argv = (char *const *)s->cfg->values[EXEC_OPT_COMMAND].list;
    struct env env;
    char path[PATH_MAX];
    int r = env_build(s->cfg, &env);
    if (r < 0) {
        snprintf(err, errlen, "out of memory");
        return r;
    }
    r = exec_resolve(argv[0], env_get(&env, "PATH"), path, sizeof(path), err, errlen);
    if (r < 0) {
        env_free(&env);
        return r;
    }
    int p[2], e[2];
    r = pipe_above_stdio(p);
    if (r == 0) {
        r = pipe_above_stdio(e);
        if (r < 0) {
            close(p[0]);
            close(p[1]);
        }
    }
    if (r < 0) {
        snprintf(err, errlen, "cannot create a pipe for \"%s\": %s", path, strerror(-r));
        env_free(&env);
        return r;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        exec_child(p[0], e[1], path, argv, env.v);
    }
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(p[0]);
    close(e[1]);
    env_free(&env);
    if (pid < 0) {
        close(p[1]);
        close(e[0]);
        snprintf(err, errlen, "cannot start \"%s\": fork: %s", path, strerror(fork_errno));
        return -fork_errno;
    }
    int child_errno = 0;
    ssize_t n;
    while ((n = read(e[0], &child_errno, sizeof(child_errno))) < 0 && errno == EINTR) {
    }
    close(e[0]);
    if (n == (ssize_t)sizeof(child_errno)) {
        /* it did not get to execve: reap it now (it has exited or is
         * about to) */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        close(p[1]);
        snprintf(err, errlen, "cannot start \"%s\": %s", path, strerror(child_errno));
        return child_errno > 0 ? -child_errno : -EIO;
    }
    x->fd = p[1];
    x->pid = pid;
    x->started = now_usec(CLOCK_MONOTONIC);
    x->terminating = false;
    writer_init(&x->w, s, x->fd);
    ev_child_set(&x->child, pid, 0);
    x->child.rpid = 0;
    ev_child_start(s->loop, &x->child);
    log_sink(LOG_INFO, s->name, "started \"%s\" (pid %d)", path, (int)pid);
    return 0;
}

/* ---- the running command ----------------------------------------------------- */

/* "exited with status 3", "was killed by signal 9 (Killed)". */
static void status_text(int ws, char *buf, size_t len)
{
    if (ws == -1) {
        snprintf(buf, len, "ended (its status was collected elsewhere)");
    } else if (WIFEXITED(ws)) {
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(ws));
    } else if (WIFSIGNALED(ws)) {
        snprintf(buf, len, "was killed by signal %d (%s)%s", WTERMSIG(ws), strsignal(WTERMSIG(ws)),
                 WCOREDUMP(ws) ? ", core dumped" : "");
    } else {
        snprintf(buf, len, "ended (wait status %#x)", (unsigned)ws);
    }
}

/* Signals the command's process group (the command itself if that fails). */
static void exec_signal(struct exec_sink *x, int sig)
{
    if (x->pid > 0 && kill(-x->pid, sig) < 0) {
        (void)kill(x->pid, sig);
    }
}

/* Closes the write end (the command sees EOF). A record it got in part is
 * counted lost. */
static void exec_pipe_close(struct sink *s, struct exec_sink *x, const char *why)
{
    if (x->fd < 0) {
        return;
    }
    writer_done(&x->w);
    if (x->w.off) {
        x->w.off = 0;
        sink_fail(s, 1, 0, why);
    }
    if (close(x->fd) < 0 && errno != EINTR) {
        log_sink(LOG_ERR, s->name, "closing the command's pipe failed: %s", strerror(errno));
    }
    x->fd = -1;
}

/* Logs an exit fetchd did not ask for: at most once a minute, with the
 * number of exits since the last message. */
static void exec_log_exit(struct sink *s, struct exec_sink *x, pid_t pid, const char *st)
{
    usec_t now = now_usec(CLOCK_MONOTONIC);
    x->exits++;
    if (now < x->exit_log_at) {
        return;
    }
    uint64_t more = x->exits - x->exits_logged - 1;
    x->exits_logged = x->exits;
    x->exit_log_at = now + EXEC_EXIT_LOG_EVERY;
    char d[32], more_s[96] = "";
    if (more) {
        snprintf(more_s, sizeof(more_s), " (%llu more exit%s since the last message)",
                 (unsigned long long)more, more == 1 ? "" : "s");
    }
    log_sink(LOG_WARNING, s->name,
             "the command (pid %d) %s after running %s%s; it is started again after the retry "
             "backoff when records are waiting (exits are reported at most once a minute)",
             (int)pid, st, units_format_duration(now - x->started, d, sizeof(d)), more_s);
}

/* ev_child: the command ended while the loop runs. */
static void exec_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    struct sink *s = w->data;
    struct exec_sink *x = s->priv;
    (void)revents;
    ev_child_stop(loop, w);
    ev_timer_stop(loop, &x->kill_timer);
    pid_t pid = x->pid;
    bool asked = x->terminating;
    x->pid = 0;
    x->terminating = false;
    exec_pipe_close(s, x, "a record was cut off: the command exited");
    char st[96];
    status_text(w->rstatus, st, sizeof(st));
    snprintf(x->why, sizeof(x->why), "the command %s", st);
    if (asked) {
        log_sink(LOG_NOTICE, s->name, "the command (pid %d) %s", (int)pid, st);
    } else {
        exec_log_exit(s, x, pid, st);
    }
    /* a sink waiting for the pipe (or for this exit) goes on; one already
     * backing off (EPIPE) does not back off twice, nor after a stop fetchd
     * asked for after a backoff */
    bool backing_off = s->state == SINK_BACKOFF;
    sink_ready(s);
    x->backoff_due = !asked && !backing_off;
}

/* Restart path: SIGTERM did not do it within stop_timeout. */
static void exec_kill_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sink *s = w->data;
    struct exec_sink *x = s->priv;
    (void)loop;
    (void)revents;
    if (x->pid) {
        char d[32];
        log_sink(LOG_WARNING, s->name,
                 "the command (pid %d) did not exit within %s of SIGTERM, "
                 "sending SIGKILL",
                 (int)x->pid, units_format_duration(exec_stop_timeout(s), d, sizeof(d)));
        exec_signal(x, SIGKILL);
    }
}

/* The command closed its standard input but runs on: it cannot take more
 * records, so it is stopped (reaped by exec_child_cb) before a new one
 * starts. */
static void exec_terminate(struct sink *s, struct exec_sink *x)
{
    if (x->terminating) {
        return;
    }
    char d[32];
    usec_t t = exec_stop_timeout(s);
    log_sink(LOG_WARNING, s->name,
             "the command (pid %d) closed its standard input but is still running; sending "
             "SIGTERM (SIGKILL after %s)",
             (int)x->pid, units_format_duration(t, d, sizeof(d)));
    x->terminating = true;
    exec_signal(x, SIGTERM);
    ev_timer_set(&x->kill_timer, usec_to_ev(t), 0.);
    ev_timer_start(s->loop, &x->kill_timer);
}

/* ---- the sink type ------------------------------------------------------------- */

static int exec_check(const struct sink_cfg *cfg, char *err, size_t errlen)
{
    const struct opt_value *ev = &cfg->values[EXEC_OPT_ENVIRONMENT];
    for (size_t i = 0; ev->set && i < ev->u; i++) {
        const char *e = ev->list[i];
        const char *eq = strchr(e, '=');
        if (!eq || !env_name_ok(e, (size_t)(eq - e))) {
            snprintf(err, errlen,
                     "environment: element %zu \"%.64s\" is not NAME=value (NAME: letters, "
                     "digits and '_', not starting with a digit)",
                     i, e);
            return -EINVAL;
        }
    }
    const char *const *argv = cfg->values[EXEC_OPT_COMMAND].list;
    if (!argv || !argv[0]) {
        snprintf(err, errlen, "command: missing");
        return -EINVAL;
    }
    struct env env;
    if (env_build(cfg, &env) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    char path[PATH_MAX];
    int r = exec_resolve(argv[0], env_get(&env, "PATH"), path, sizeof(path), err, errlen);
    env_free(&env);
    return r;
}

static int exec_open(struct sink *s, char *err, size_t errlen)
{
    struct exec_sink *x = calloc(1, sizeof(*x));
    if (!x) {
        return -ENOMEM;
    }
    x->fd = -1;
    ev_child_init(&x->child, exec_child_cb, 0, 0);
    x->child.data = s;
    ev_timer_init(&x->kill_timer, exec_kill_cb, 0., 0.);
    x->kill_timer.data = s;
    s->priv = x;
    int r = exec_spawn(s, x, err, errlen);
    if (r < 0) {
        s->priv = NULL;
        free(x);
    }
    return r;
}

static void exec_deliver(struct sink *s)
{
    struct exec_sink *x = s->priv;
    if (x->pid && x->fd < 0) {
        exec_terminate(s, x);
        sink_wait(s, 0); /* exec_child_cb: sink_ready */
        return;
    }
    if (!x->pid) {
        if (x->backoff_due) {
            x->backoff_due = false;
            sink_retry(s, 0, 0, x->why);
            return;
        }
        char err[512];
        int r = exec_spawn(s, x, err, sizeof(err));
        if (r < 0) {
            sink_retry(s, 0, 0, err);
            return;
        }
    }
    if (writer_deliver(&x->w, true, NULL) < 0) {
        /* EPIPE: the command closed its stdin or exited (exec_child_cb
         * reaps it). The writer counted a torn record and backs off. */
        exec_pipe_close(s, x, "a record was cut off by a write error");
    }
}

static void exec_finish(struct sink *s, usec_t deadline)
{
    struct exec_sink *x = s->priv;
    if (x->fd >= 0) {
        writer_finish(&x->w, deadline);
    }
}

/* Collects the command's exit status for up to timeout (blocking, polls).
 * True when it is gone (*ws: its status, -1 if libev collected it first and
 * lost it). */
static bool exec_wait(struct sink *s, struct exec_sink *x, usec_t timeout, int *ws)
{
    usec_t end = now_usec(CLOCK_MONOTONIC) + timeout;
    for (;;) {
        if (x->child.rpid == x->pid) {
            *ws = x->child.rstatus; /* libev's SIGCHLD handler was first */
            break;
        }
        pid_t r = waitpid(x->pid, ws, WNOHANG);
        if (r == x->pid) {
            break;
        }
        if (r < 0 && errno == ECHILD) {
            *ws = -1;
            break;
        }
        usec_t now = now_usec(CLOCK_MONOTONIC);
        if (now >= end) {
            return false;
        }
        usleep((useconds_t)(end - now < EXEC_POLL_USEC ? end - now : EXEC_POLL_USEC));
    }
    x->pid = 0;
    ev_child_stop(s->loop, &x->child);
    return true;
}

/* EOF, stop_timeout, SIGTERM, stop_timeout, SIGKILL; always reaps. */
static void exec_stop(struct sink *s, struct exec_sink *x)
{
    bool had_pipe = x->fd >= 0;
    exec_pipe_close(s, x, "a record was cut off at exit");
    if (!x->pid) {
        return;
    }
    pid_t pid = x->pid;
    usec_t t = exec_stop_timeout(s);
    char d[32], st[96];
    int ws;
    const char *after = had_pipe ? "EOF" : "its standard input closed";
    units_format_duration(t, d, sizeof(d));
    if (exec_wait(s, x, t, &ws)) {
        status_text(ws, st, sizeof(st));
        log_sink(ws == 0 ? LOG_INFO : LOG_WARNING, s->name, "the command (pid %d) %s after %s",
                 (int)pid, st, after);
        return;
    }
    log_sink(LOG_WARNING, s->name,
             "the command (pid %d) did not exit within %s of %s, sent "
             "SIGTERM",
             (int)pid, d, after);
    exec_signal(x, SIGTERM);
    if (exec_wait(s, x, t, &ws)) {
        status_text(ws, st, sizeof(st));
        log_sink(LOG_NOTICE, s->name, "the command (pid %d) %s after SIGTERM", (int)pid, st);
        return;
    }
    log_sink(LOG_WARNING, s->name,
             "the command (pid %d) did not exit within %s of SIGTERM, "
             "sent SIGKILL",
             (int)pid, d);
    exec_signal(x, SIGKILL);
    if (exec_wait(s, x, EXEC_KILL_WAIT, &ws)) {
        status_text(ws, st, sizeof(st));
        log_sink(LOG_NOTICE, s->name, "the command (pid %d) %s", (int)pid, st);
        return;
    }
    log_sink(LOG_ERR, s->name,
             "the command (pid %d) did not end within %s of SIGKILL; leaving "
             "it behind",
             (int)pid, units_format_duration(EXEC_KILL_WAIT, d, sizeof(d)));
    x->pid = 0;
    ev_child_stop(s->loop, &x->child);
}

static void exec_close(struct sink *s)
{
    struct exec_sink *x = s->priv;
    if (!x) {
        return;
    }
    ev_timer_stop(s->loop, &x->kill_timer);
    exec_stop(s, x);
    ev_child_stop(s->loop, &x->child);
    free(x);
    s->priv = NULL;
}

const struct sink_type sink_type_exec = {
    .name = "exec",
    .description = "JSON Lines on the standard input of a long-running command",
    .guarantee = "at most once; a record counts as delivered once written to the command's "
                 "pipe; a record cut off by the command's exit is counted lost",
    .options = exec_options,
    .check = exec_check,
    .open = exec_open,
    .deliver = exec_deliver,
    .finish = exec_finish,
    .close = exec_close,
};
