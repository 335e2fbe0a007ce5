/* ctl.c - "fetchd status|fetch|pause|resume|metrics": one request on the
 * control socket, the answer printed for people or (--json) for scripts. */
#include "ctl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fetchd/exit-status.h>

#include "fetchd-build.h"
#include "util/buf.h"
#include "util/time.h"

#define CTL_TIMEOUT_MS 30000

static const char *const commands[] = {"status", "fetch", "pause", "resume", "metrics"};

bool ctl_is_command(const char *arg)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(arg, commands[i]) == 0) {
            return true;
        }
    }
    return false;
}

const char *ctl_default_path(char *buf, unsigned len)
{
    const char *rd = getenv("RUNTIME_DIRECTORY");
    if (!rd || !*rd) {
        return NULL;
    }
    int n = snprintf(buf, len, "%.*s/control", (int)strcspn(rd, ":"), rd);
    return n > 0 && (unsigned)n < len ? buf : NULL;
}

static void ctl_usage(FILE *f)
{
    fprintf(f,
            "Usage: fetchd status [--json] [--control PATH]\n"
            "       fetchd fetch|pause|resume NAME [--control PATH]\n"
            "       fetchd metrics [--control PATH]\n"
            "Talks to a running fetchd on its control socket (default $RUNTIME_DIRECTORY/control,\n"
            "else %s).\n",
            FETCHD_CONTROL_DEFAULT);
}

/* Sends the request line and reads the answer line. Returns 0, or an exit
 * status after printing why. */
static int ctl_request(const char *path, const char *req, struct buf *ans)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "fetchd: control socket path too long: %s\n", path);
        return FETCHD_EXIT_USAGE;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        fprintf(stderr,
                "fetchd: cannot reach fetchd at %s: %s\n"
                "(is it running? the daemon listens there under systemd, or with --control "
                "PATH; give this command the same --control PATH)\n",
                path, strerror(e));
        if (fd >= 0) {
            close(fd);
        }
        return e == EACCES ? FETCHD_EXIT_OSERR : FETCHD_EXIT_UNAVAILABLE;
    }
    size_t off = 0, len = strlen(req);
    while (off < len) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            fprintf(stderr, "fetchd: control socket %s: %s\n", path, strerror(errno));
            close(fd);
            return FETCHD_EXIT_UNAVAILABLE;
        }
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR); /* one request: the daemon closes after answering */
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, CTL_TIMEOUT_MS);
        if (pr < 0 && errno == EINTR) {
            continue;
        }
        if (pr == 0) {
            fprintf(stderr, "fetchd: no answer on %s within %d s\n", path, CTL_TIMEOUT_MS / 1000);
            close(fd);
            return FETCHD_EXIT_UNAVAILABLE;
        }
        if (buf_reserve(ans, 65536) < 0) {
            close(fd);
            fprintf(stderr, "fetchd: out of memory\n");
            return FETCHD_EXIT_SOFTWARE;
        }
        ssize_t n = recv(fd, ans->data + ans->len, ans->cap - ans->len - 1, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        ans->len += (size_t)n;
        ans->data[ans->len] = '\0';
    }
    close(fd);
    if (!ans->len || ans->data[ans->len - 1] != '\n') {
        fprintf(stderr, "fetchd: the answer on %s was cut short\n", path);
        return FETCHD_EXIT_UNAVAILABLE;
    }
    return 0;
}

static const char *str_or(const cJSON *o, const char *k, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double num_or(const cJSON *o, const char *k, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static void fmt_secs(double s, char *out, size_t len)
{
    if (s < 0) {
        snprintf(out, len, "-");
    } else if (s < 1) {
        snprintf(out, len, "%.1fms", s * 1e3);
    } else if (s < 120) {
        snprintf(out, len, "%.1fs", s);
    } else if (s < 7200) {
        snprintf(out, len, "%.0fm", s / 60);
    } else {
        snprintf(out, len, "%.0fh", s / 3600);
    }
}

static void print_status(const cJSON *a)
{
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(a, "endpoints");
    int w = 8;
    const cJSON *ep;
    cJSON_ArrayForEach(ep, eps)
    {
        int l = (int)strlen(str_or(ep, "name", ""));
        w = l > w ? l : w;
    }
    printf("%-*s  %-11s %4s %9s %7s %5s %8s %8s  %s\n", w, "ENDPOINT", "STATE", "LAST",
           "DURATION", "NEXT", "FAILS", "FETCHES", "RECORDS", "ERROR");
    cJSON_ArrayForEach(ep, eps)
    {
        char dur[16], next[16], last[8];
        double ms = num_or(ep, "last_duration_ms", -1);
        fmt_secs(ms < 0 ? -1 : ms / 1e3, dur, sizeof(dur));
        fmt_secs(num_or(ep, "next_in_s", -1), next, sizeof(next));
        double st = num_or(ep, "last_status", 0);
        snprintf(last, sizeof(last), st > 0 ? "%.0f" : "-", st);
        const char *err = str_or(ep, "last_error", NULL);
        const char *msg = str_or(ep, "last_message", NULL);
        const cJSON *running = cJSON_GetObjectItemCaseSensitive(ep, "running");
        char state[24];
        snprintf(state, sizeof(state), "%s%s", str_or(ep, "state", "?"),
                 cJSON_IsTrue(running) ? "*" : "");
        printf("%-*s  %-11s %4s %9s %7s %5.0f %8.0f %8.0f  %s%s%s\n", w, str_or(ep, "name", "?"),
               state, last, dur, next, num_or(ep, "consecutive_failures", 0),
               num_or(ep, "fetches", 0), num_or(ep, "records", 0), err ? err : "-",
               msg ? ": " : "", msg ? msg : "");
    }
    const cJSON *sinks = cJSON_GetObjectItemCaseSensitive(a, "sinks");
    if (cJSON_GetArraySize(sinks) > 0) {
        printf("\n%-*s  %-8s %10s %10s %8s %8s  %s\n", w, "SINK", "TYPE", "PRODUCED", "DELIVERED",
               "QUEUED", "DROPPED", "PROBLEM");
        const cJSON *s;
        cJSON_ArrayForEach(s, sinks)
        {
            printf("%-*s  %-8s %10.0f %10.0f %8.0f %8.0f  %s\n", w, str_or(s, "name", "?"),
                   str_or(s, "type", "?"), num_or(s, "produced", 0), num_or(s, "delivered", 0),
                   num_or(s, "queued", 0), num_or(s, "dropped", 0), str_or(s, "problem", "-"));
        }
    }
    printf("\n%s\n(* = fetching now)\n", str_or(a, "status", ""));
}

int ctl_main(int argc, char **argv)
{
    const char *cmd = argv[1];
    const char *path = NULL;
    bool json = false;
    static const struct option opts[] = {
        {"control", required_argument, NULL, 'C'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 2;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'C':
            path = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            ctl_usage(stdout);
            return FETCHD_EXIT_OK;
        default:
            ctl_usage(stderr);
            return FETCHD_EXIT_USAGE;
        }
    }
    bool wants_name = strcmp(cmd, "fetch") == 0 || strcmp(cmd, "pause") == 0 ||
                      strcmp(cmd, "resume") == 0;
    int rest = argc - optind;
    if ((wants_name && rest != 1) || (!wants_name && rest != 0) ||
        (json && strcmp(cmd, "status") != 0)) {
        fprintf(stderr, "fetchd %s: %s\n", cmd,
                wants_name ? "expected one endpoint name" : "unexpected arguments");
        ctl_usage(stderr);
        return FETCHD_EXIT_USAGE;
    }
    char dflt[4096];
    if (!path) {
        path = ctl_default_path(dflt, sizeof(dflt));
    }
    if (!path) {
        path = FETCHD_CONTROL_DEFAULT;
    }
    /* the request, built with cJSON so a name is always escaped right */
    cJSON *req = cJSON_CreateObject();
    if (!req || !cJSON_AddStringToObject(req, "cmd", cmd) ||
        (wants_name && !cJSON_AddStringToObject(req, "endpoint", argv[optind]))) {
        cJSON_Delete(req);
        fprintf(stderr, "fetchd: out of memory\n");
        return FETCHD_EXIT_SOFTWARE;
    }
    char *text = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    struct buf line = {0};
    if (!text || buf_printf(&line, "%s\n", text) < 0) {
        free(text);
        buf_done(&line);
        fprintf(stderr, "fetchd: out of memory\n");
        return FETCHD_EXIT_SOFTWARE;
    }
    free(text);
    struct buf ans = {0};
    int r = ctl_request(path, line.data, &ans);
    buf_done(&line);
    if (r) {
        buf_done(&ans);
        return r;
    }
    cJSON *a = cJSON_ParseWithLength(ans.data, ans.len);
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(a, "ok");
    int status = FETCHD_EXIT_OK;
    if (!cJSON_IsBool(ok)) {
        fprintf(stderr, "fetchd: a malformed answer on %s\n", path);
        status = FETCHD_EXIT_SOFTWARE;
    } else if (!cJSON_IsTrue(ok)) {
        fprintf(stderr, "fetchd %s: %s\n", cmd, str_or(a, "error", "failed"));
        status = FETCHD_EXIT_FETCH_FAILED;
    } else if (json) {
        fwrite(ans.data, 1, ans.len, stdout);
    } else if (strcmp(cmd, "status") == 0) {
        print_status(a);
    } else if (strcmp(cmd, "metrics") == 0) {
        fputs(str_or(a, "text", ""), stdout);
    } else {
        printf("%s: %s\n", argv[optind],
               cmd[0] == 'f' ? "fetching now" : cmd[0] == 'p' ? "paused" : "resumed");
    }
    cJSON_Delete(a);
    buf_done(&ans);
    return status;
}
