/* testutil.c - process, file and server helpers for fetchd's tests. */
#define _GNU_SOURCE
#include "testutil.h"

#include <curl/curl.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double tu_slack(void)
{
    return getenv("FETCHD_WRAPPER") ? 20.0 : 1.0;
}

char *tu_fmt(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0) {
        s = NULL;
    }
    va_end(ap);
    if (!s) {
        abort();
    }
    return s;
}

static void append(char **buf, size_t *len, const char *data, size_t n)
{
    char *nb = realloc(*buf, *len + n + 1);
    if (!nb) {
        abort();
    }
    memcpy(nb + *len, data, n);
    *len += n;
    nb[*len] = '\0';
    *buf = nb;
}

/* FETCHD_WRAPPER="valgrind --error-exitcode=3 ..." runs the fetchd binary
 * under a wrapper (the valgrind test setup uses it). Returns argv or a new
 * vector (leaked on purpose in the child only). */
static const char *const *wrap(const char *const argv[])
{
    const char *w = getenv("FETCHD_WRAPPER");
    if (!w || !*w || strcmp(argv[0], tu_fetchd()) != 0) {
        return argv;
    }
    size_t n = 0;
    while (argv[n]) {
        n++;
    }
    char *copy = strdup(w);
    const char **v = calloc(n + 64, sizeof(char *));
    size_t k = 0;
    for (char *tok = strtok(copy, " "); tok && k < 60; tok = strtok(NULL, " ")) {
        v[k++] = tok;
    }
    for (size_t i = 0; i < n; i++) {
        v[k++] = argv[i];
    }
    v[k] = NULL;
    return v;
}

static void exec_wrapped(const char *const argv[])
{
    const char *const *v = wrap(argv);
    if (v[0][0] == '/' || strchr(v[0], '/')) {
        execv(v[0], (char *const *)v);
    } else {
        execvp(v[0], (char *const *)v);
    }
    _exit(127);
}

static int decode_status(int ws)
{
    if (WIFEXITED(ws)) {
        return WEXITSTATUS(ws);
    }
    if (WIFSIGNALED(ws)) {
        return 128 + WTERMSIG(ws);
    }
    return -1;
}

void tu_run(const char *const argv[], double timeout_s, struct tu_result *res)
{
    int po[2], pe[2];
    memset(res, 0, sizeof(*res));
    res->out = strdup("");
    res->err = strdup("");
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        abort();
    }
    double t0 = tu_now();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        exec_wrapped(argv);
    }
    close(po[1]);
    close(pe[1]);
    size_t olen = 0, elen = 0;
    struct pollfd pf[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    int open_fds = 2;
    bool killed = false;
    while (open_fds > 0) {
        double left = timeout_s - (tu_now() - t0);
        if (left <= 0 && !killed) {
            kill(pid, SIGKILL);
            killed = true;
        }
        int r = poll(pf, 2, left > 0 ? (int)(left * 1000) + 1 : 100);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd >= 0 && (pf[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                char tmp[65536];
                ssize_t n = read(pf[i].fd, tmp, sizeof(tmp));
                if (n <= 0) {
                    close(pf[i].fd);
                    pf[i].fd = -1;
                    open_fds--;
                } else if (i == 0) {
                    append(&res->out, &olen, tmp, (size_t)n);
                } else {
                    append(&res->err, &elen, tmp, (size_t)n);
                }
            }
        }
    }
    int ws;
    waitpid(pid, &ws, 0);
    res->seconds = tu_now() - t0;
    res->status = killed ? -1 : decode_status(ws);
}

void tu_result_done(struct tu_result *res)
{
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
}

pid_t tu_spawn(const char *const argv[], const char *out_path, const char *err_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err_path ? err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int i = open("/dev/null", O_RDONLY);
        dup2(i, 0);
        dup2(o, 1);
        dup2(e, 2);
        exec_wrapped(argv);
    }
    return pid;
}

int tu_wait(pid_t pid, double timeout_s)
{
    double t0 = tu_now();
    int ws;
    for (;;) {
        pid_t r = waitpid(pid, &ws, WNOHANG);
        if (r == pid) {
            return decode_status(ws);
        }
        if (tu_now() - t0 > timeout_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            return -1;
        }
        usleep(5000);
    }
}

const char *tu_fetchd(void)
{
    const char *p = getenv("FETCHD_BIN");
    return p ? p : "./src/fetchd";
}

pid_t tu_httpd_start(int *port)
{
    const char *bin = getenv("FETCHD_HTTPD");
    if (!bin) {
        bin = "./tests/httpd";
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        abort();
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char buf[64] = "";
    size_t len = 0;
    double t0 = tu_now();
    while (len < sizeof(buf) - 1 && !strchr(buf, '\n') && tu_now() - t0 < 10) {
        struct pollfd pf = {p[0], POLLIN, 0};
        if (poll(&pf, 1, 100) > 0) {
            ssize_t n = read(p[0], buf + len, sizeof(buf) - 1 - len);
            if (n <= 0) {
                break;
            }
            len += (size_t)n;
            buf[len] = '\0';
        }
    }
    close(p[0]);
    if (sscanf(buf, "PORT=%d", port) != 1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fprintf(stderr, "test httpd did not start (%s)\n", bin);
        abort();
    }
    return pid;
}

void tu_httpd_stop(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGTERM);
        if (tu_wait(pid, 5) < 0) {
            fprintf(stderr, "test httpd did not stop on SIGTERM\n");
        }
    }
}

static size_t tu_collect(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct {
        char *buf;
        size_t len;
    } *b = ud;
    size_t n = size * nmemb;
    append(&b->buf, &b->len, ptr, n);
    return n;
}

long tu_httpd_requests(int port)
{
    CURL *c = curl_easy_init();
    if (!c) {
        return -1;
    }
    struct {
        char *buf;
        size_t len;
    } b = {NULL, 0};
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/__stats", port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tu_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    long n = -1;
    if (curl_easy_perform(c) == CURLE_OK && b.buf) {
        const char *p = strstr(b.buf, "\"requests\":");
        if (p) {
            n = strtol(p + 11, NULL, 10);
        }
    }
    free(b.buf);
    curl_easy_cleanup(c);
    return n;
}

bool tu_httpd_wait_requests(int port, long n, double timeout_s)
{
    double t0 = tu_now();
    while (tu_now() - t0 < timeout_s) {
        if (tu_httpd_requests(port) >= n) {
            return true;
        }
        usleep(10000);
    }
    return false;
}

char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *t = tu_fmt("%s/fetchd-test-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(t)) {
        abort();
    }
    return t;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tu_rmdir(const char *dir)
{
    if (dir) {
        nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    }
}

char *tu_write(const char *dir, const char *name, const char *content)
{
    char *path = tu_fmt("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        abort();
    }
    fputs(content, f);
    fclose(f);
    return path;
}

char *tu_read(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0;
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        append(&buf, &len, tmp, n);
    }
    fclose(f);
    return buf ? buf : strdup("");
}

size_t tu_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++) {
        n += *s == '\n';
    }
    return n;
}
