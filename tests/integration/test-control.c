/* test-control.c - the control socket of the real daemon and the real
 * "fetchd status|fetch|pause|resume|metrics" client: what status shows,
 * pause/resume/fetch seen at the test servers, the Prometheus exposition
 * and the textfile, permissions, a stale or a live socket at start, and a
 * protocol abuser (garbage, a huge line, a client that never reads). */
#define _GNU_SOURCE
#include <cJSON.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static pid_t good_pid, bad_pid, fetchd_pid;
static int good_port, bad_port;
static char *dir, *sock, *prom, *err_path;
static char *client; /* the fetchd binary by another name: not run under valgrind */

/* For sleeps that only let time pass (waits for a condition use
 * tu_slack()): longer under valgrind, but not 20 times. */
static double nap_slack(void)
{
    return tu_slack() > 1 ? 4 : 1;
}

static bool wait_file(const char *path, double timeout_s)
{
    double end = tu_now() + timeout_s;
    struct stat st;
    while (stat(path, &st) < 0) {
        if (tu_now() > end) {
            return false;
        }
        usleep(20000);
    }
    return true;
}

static void start_daemon(const char *extra_limits)
{
    char *cfg = tu_fmt(
        "{\"limits\": {\"metrics_textfile\": \"%s\", \"metrics_interval\": \"1s\"%s},"
        " \"defaults\": {\"interval\": \"200ms\"},"
        " \"endpoints\": {\"good\": {\"url\": \"http://127.0.0.1:%d/good?after=${checkpoint}\","
        " \"checkpoint\": \"/n\"},"
        " \"bad\": {\"url\": \"http://127.0.0.1:%d/bad?status=503\"}}}",
        prom, extra_limits, good_port, bad_port);
    char *path = tu_write(dir, "fetchd.json", cfg);
    const char *argv[] = {tu_fetchd(), "-c", path, "--control", sock, NULL};
    fetchd_pid = tu_spawn(argv, NULL, err_path);
    free(cfg);
    free(path);
    /* listening (a stale socket file may be there before fetchd replaces it) */
    double end = tu_now() + 20 * tu_slack();
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        int c = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        close(fd);
        if (c == 0) {
            break;
        }
        ck_assert_msg(tu_now() < end, "nothing listens at %s", sock);
        usleep(20000);
    }
}

static void setup(void)
{
    dir = tu_tmpdir();
    good_pid = tu_httpd_start(&good_port);
    bad_pid = tu_httpd_start(&bad_port);
    sock = tu_fmt("%s/control", dir);
    prom = tu_fmt("%s/fetchd.prom", dir);
    err_path = tu_fmt("%s/err", dir);
    client = tu_fmt("%s/fetchd-client", dir);
    ck_assert_int_eq(symlink(tu_fetchd(), client), 0);
    fetchd_pid = 0;
}

static void teardown(void)
{
    if (fetchd_pid > 0) {
        kill(fetchd_pid, SIGKILL);
        tu_wait(fetchd_pid, 10);
    }
    tu_httpd_stop(good_pid);
    tu_httpd_stop(bad_pid);
    tu_rmdir(dir);
    free(dir);
    free(sock);
    free(prom);
    free(err_path);
    free(client);
}

/* Runs "fetchd ARGS... --control sock" (the client; under valgrind in the
 * valgrind setup only in test_status, where tu_fetchd() runs it). */
static void ctl_bin(const char *bin, struct tu_result *res, const char *a1, const char *a2,
                    const char *a3)
{
    const char *argv[] = {bin, a1, "--control", sock, a2, a3, NULL};
    tu_run(argv, 30 * tu_slack(), res);
}

static void ctl(struct tu_result *res, const char *a1, const char *a2, const char *a3)
{
    const char *argv[] = {client, a1, "--control", sock, a2, a3, NULL};
    tu_run(argv, 30 * tu_slack(), res);
}

static cJSON *status_json(void)
{
    struct tu_result res;
    ctl(&res, "status", "--json", NULL);
    ck_assert_msg(res.status == 0, "fetchd status --json: exit %d: %s", res.status, res.err);
    cJSON *j = cJSON_Parse(res.out);
    ck_assert_msg(j, "fetchd status --json printed no JSON: %s", res.out);
    tu_result_done(&res);
    return j;
}

static cJSON *endpoint_of(cJSON *st, const char *name)
{
    cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(st, "endpoints"))
    {
        cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) {
            return e;
        }
    }
    ck_abort_msg("no endpoint %s in status", name);
    return NULL;
}

static double num(cJSON *o, const char *k)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    ck_assert_msg(cJSON_IsNumber(v), "\"%s\" is not a number", k);
    return v->valuedouble;
}

static const char *str(cJSON *o, const char *k)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

START_TEST(test_status)
{
    start_daemon("");
    ck_assert(tu_httpd_wait_requests(good_port, 3, 10 * tu_slack()));
    ck_assert(tu_httpd_wait_requests(bad_port, 3, 10 * tu_slack()));
    cJSON *st = status_json();
    cJSON *g = endpoint_of(st, "good"), *b = endpoint_of(st, "bad");
    ck_assert_str_eq(str(g, "state"), "ok");
    ck_assert_double_eq(num(g, "last_status"), 200);
    ck_assert_ptr_null(str(g, "last_error"));
    ck_assert(num(g, "fetches") >= 2 && num(g, "records") >= 2);
    ck_assert_ptr_nonnull(str(g, "last_ok"));
    /* the checkpoint: the server's request counter "n" of a delivered
     * record; none for an endpoint without one */
    ck_assert(num(g, "checkpoint") >= 1);
    ck_assert_ptr_nonnull(str(g, "last_success"));
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(b, "checkpoint"));
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(b, "last_success"));
    ck_assert(num(g, "next_in_s") >= 0 && num(g, "next_in_s") <= 0.3);
    ck_assert(num(g, "last_duration_ms") >= 0);
    /* (under valgrind it may already be backing off) */
    ck_assert_msg(strcmp(str(b, "state"), "failing") == 0 ||
                      strcmp(str(b, "state"), "backing off") == 0,
                  "bad is %s", str(b, "state"));
    ck_assert_double_eq(num(b, "last_status"), 503);
    ck_assert_str_eq(str(b, "last_error"), "http_status");
    ck_assert(num(b, "consecutive_failures") >= 2);
    ck_assert_ptr_null(str(b, "last_ok"));
    cJSON *sinks = cJSON_GetObjectItemCaseSensitive(st, "sinks");
    ck_assert_int_eq(cJSON_GetArraySize(sinks), 1);
    cJSON *s0 = cJSON_GetArrayItem(sinks, 0);
    ck_assert_str_eq(str(s0, "name"), "stdout");
    ck_assert(num(s0, "produced") >= 4);
    ck_assert(num(s0, "produced") ==
              num(s0, "delivered") + num(s0, "queued") + num(s0, "dropped"));
    ck_assert_ptr_nonnull(strstr(str(st, "status"), "2 endpoints: 1 ok, 1 failing"));
    cJSON_Delete(st);

    /* the table for people (the client under valgrind too) */
    struct tu_result res;
    ctl_bin(tu_fetchd(), &res, "status", NULL, NULL);
    ck_assert_int_eq(res.status, 0);
    ck_assert_ptr_nonnull(strstr(res.out, "ENDPOINT"));
    ck_assert_ptr_nonnull(strstr(res.out, "http_status: HTTP status 503"));
    ck_assert_ptr_nonnull(strstr(res.out, "stdout"));
    tu_result_done(&res);

    /* the socket is srw------- */
    struct stat sb;
    ck_assert_int_eq(stat(sock, &sb), 0);
    ck_assert(S_ISSOCK(sb.st_mode));
    ck_assert_int_eq(sb.st_mode & 0777, 0600);

    kill(fetchd_pid, SIGTERM);
    ck_assert_int_eq(tu_wait(fetchd_pid, 30 * tu_slack()), 0);
    fetchd_pid = 0;
    ck_assert_msg(access(sock, F_OK) < 0, "the control socket is left behind");
    ctl(&res, "status", NULL, NULL);
    ck_assert_int_eq(res.status, 69);
    ck_assert_ptr_nonnull(strstr(res.err, "cannot reach fetchd"));
    tu_result_done(&res);
}
END_TEST

START_TEST(test_pause_resume_fetch)
{
    start_daemon("");
    ck_assert(tu_httpd_wait_requests(good_port, 2, 10 * tu_slack()));
    struct tu_result res;
    ctl(&res, "pause", "good", NULL);
    ck_assert_msg(res.status == 0, "pause: %d %s", res.status, res.err);
    ck_assert_ptr_nonnull(strstr(res.out, "good: paused"));
    tu_result_done(&res);
    usleep((useconds_t)(400000 * nap_slack())); /* a fetch under way ends */
    long g0 = tu_httpd_requests(good_port), b0 = tu_httpd_requests(bad_port);
    usleep((useconds_t)(1000000 * nap_slack()));
    long g1 = tu_httpd_requests(good_port), b1 = tu_httpd_requests(bad_port);
    ck_assert_msg(g1 == g0, "a paused endpoint was fetched: %ld -> %ld", g0, g1);
    /* (the failing one backs off, but is still fetched) */
    ck_assert_msg(b1 > b0, "the other endpoint stopped too: %ld -> %ld", b0, b1);
    cJSON *st = status_json();
    ck_assert_str_eq(str(endpoint_of(st, "good"), "state"), "paused");
    cJSON_Delete(st);

    ctl(&res, "pause", "good", NULL);
    ck_assert_int_eq(res.status, 1);
    ck_assert_ptr_nonnull(strstr(res.err, "already paused"));
    tu_result_done(&res);

    /* fetch runs a paused endpoint once, now */
    ctl(&res, "fetch", "good", NULL);
    ck_assert_msg(res.status == 0, "fetch: %d %s", res.status, res.err);
    tu_result_done(&res);
    ck_assert(tu_httpd_wait_requests(good_port, g1 + 1, 5 * tu_slack()));
    usleep((useconds_t)(500000 * nap_slack()));
    ck_assert_int_eq(tu_httpd_requests(good_port), g1 + 1);

    ctl(&res, "resume", "good", NULL);
    ck_assert_int_eq(res.status, 0);
    tu_result_done(&res);
    ck_assert(tu_httpd_wait_requests(good_port, g1 + 4, 5 * tu_slack()));
    ctl(&res, "resume", "good", NULL);
    ck_assert_int_eq(res.status, 1);
    ck_assert_ptr_nonnull(strstr(res.err, "not paused"));
    tu_result_done(&res);

    ctl(&res, "fetch", "nope", NULL);
    ck_assert_int_eq(res.status, 1);
    ck_assert_ptr_nonnull(strstr(res.err, "no endpoint 'nope'"));
    tu_result_done(&res);
    ctl(&res, "fetch", NULL, NULL); /* no name */
    ck_assert_int_eq(res.status, 64);
    tu_result_done(&res);
    ctl(&res, "metrics", "--json", NULL);
    ck_assert_int_eq(res.status, 64);
    tu_result_done(&res);
}
END_TEST

/* "name{labels} value" lines: returns the value of the first line that
 * starts with prefix, or -1. */
static double metric(const char *text, const char *prefix)
{
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, prefix, strlen(prefix)) == 0 && p[strlen(prefix)] == ' ') {
            return strtod(p + strlen(prefix) + 1, NULL);
        }
    }
    return -1;
}

static void check_exposition(const char *t)
{
    /* every line a comment or "name[{...}] value" */
    for (const char *p = t; *p;) {
        const char *nl = strchr(p, '\n');
        ck_assert_msg(nl, "no newline at the end of the exposition");
        if (*p != '#') {
            const char *sp = memrchr(p, ' ', (size_t)(nl - p));
            ck_assert_msg(sp && sp > p, "a sample without a value: %.*s", (int)(nl - p), p);
            char *end;
            strtod(sp + 1, &end);
            ck_assert_msg(end == nl, "a sample with a bad value: %.*s", (int)(nl - p), p);
        }
        p = nl + 1;
    }
    double gf = metric(t, "fetchd_endpoint_fetches_total{endpoint=\"good\"}");
    double bf = metric(t, "fetchd_endpoint_failures_total{endpoint=\"bad\"}");
    double bfe = metric(t, "fetchd_endpoint_fetches_total{endpoint=\"bad\"}");
    ck_assert(gf >= 2 && bf >= 2 && bfe >= bf);
    ck_assert_double_eq(metric(t, "fetchd_endpoint_up{endpoint=\"good\"}"), 1);
    ck_assert_double_eq(metric(t, "fetchd_endpoint_up{endpoint=\"bad\"}"), 0);
    double count = metric(t, "fetchd_fetch_duration_seconds_count");
    double inf = metric(t, "fetchd_fetch_duration_seconds_bucket{le=\"+Inf\"}");
    ck_assert(count >= gf + bfe - 2 && count == inf); /* between two renders: +-1 each */
    ck_assert(metric(t, "fetchd_sink_records_produced_total{sink=\"stdout\"}") >= gf);
    ck_assert(metric(t, "fetchd_sink_records_dropped_total{sink=\"stdout\",reason=\"overflow\"}") ==
              0);
    ck_assert_ptr_nonnull(strstr(t, "# TYPE fetchd_fetch_duration_seconds histogram"));
}

START_TEST(test_metrics_and_textfile)
{
    start_daemon("");
    ck_assert(tu_httpd_wait_requests(good_port, 3, 10 * tu_slack()));
    ck_assert(tu_httpd_wait_requests(bad_port, 3, 10 * tu_slack()));
    struct tu_result res;
    ctl(&res, "metrics", NULL, NULL);
    ck_assert_int_eq(res.status, 0);
    check_exposition(res.out);
    tu_result_done(&res);
    /* the textfile is there (written at start and every second), whole */
    ck_assert(wait_file(prom, 5 * tu_slack()));
    usleep((useconds_t)(1200000 * nap_slack()));
    char *t = tu_read(prom);
    ck_assert_ptr_nonnull(t);
    check_exposition(t);
    free(t);
    kill(fetchd_pid, SIGTERM);
    ck_assert_int_eq(tu_wait(fetchd_pid, 30 * tu_slack()), 0);
    fetchd_pid = 0;
    t = tu_read(prom); /* the final counters stay */
    ck_assert_ptr_nonnull(t);
    check_exposition(t);
    free(t);
    /* no temporary file is left */
    char *tmpglob = tu_fmt("ls %s | grep -c tmp", dir);
    FILE *p = popen(tmpglob, "r");
    int n = -1;
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    free(tmpglob);
    ck_assert_int_eq(n, 0);
}
END_TEST

/* Another user may not use it: the socket's mode, and SO_PEERCRED. */
START_TEST(test_permissions)
{
    if (geteuid() != 0) {
        return; /* needs root to become another user */
    }
    start_daemon("");
    ck_assert_int_eq(chmod(dir, 0755), 0); /* the directory is not what stops them */
    char *eout = tu_fmt("%s/other.err", dir);
    fflush(NULL);
    pid_t c = fork();
    if (c == 0) {
        /* exec at once: nothing of this (possibly valgrind-run) test runs
         * as the other user */
        int fd = open(eout, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (fd < 0 || dup2(fd, 2) < 0 || setgid(65534) < 0 || setuid(65534) < 0) {
            _exit(2);
        }
        execl(tu_fetchd(), tu_fetchd(), "status", "--control", sock, (char *)NULL);
        _exit(127);
    }
    int ws;
    ck_assert_int_eq(waitpid(c, &ws, 0), c);
    char *e = tu_read(eout);
    ck_assert_msg(WIFEXITED(ws) && WEXITSTATUS(ws) == 71 && e && strstr(e, "Permission denied"),
                  "another user: exit %d, stderr: %s", WEXITSTATUS(ws), e ? e : "");
    free(e);
    free(eout);
}
END_TEST

START_TEST(test_stale_and_live_socket)
{
    /* a socket file left by a fetchd that was killed */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    start_daemon("");
    cJSON *st = status_json();
    cJSON_Delete(st);
    /* a second fetchd on the same socket: refused, the first one goes on */
    char *cfg = tu_fmt("{\"endpoints\": {\"x\": {\"url\": \"http://127.0.0.1:%d/x\"}}}",
                       good_port);
    char *path = tu_write(dir, "second.json", cfg);
    const char *argv[] = {tu_fetchd(), "-c", path, "--control", sock, NULL};
    struct tu_result res;
    tu_run(argv, 30 * tu_slack(), &res);
    ck_assert_int_eq(res.status, 71);
    ck_assert_ptr_nonnull(strstr(res.err, "another fetchd is listening there"));
    tu_result_done(&res);
    free(cfg);
    free(path);
    st = status_json();
    cJSON_Delete(st);
}
END_TEST

static int raw_connect(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static char *raw_read_all(int fd)
{
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    for (;;) {
        if (len + 4096 > cap) {
            cap *= 2;
            b = realloc(b, cap);
        }
        ssize_t n = read(fd, b + len, cap - len - 1);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    b[len] = '\0';
    return b;
}

START_TEST(test_protocol_abuse)
{
    start_daemon("");
    /* garbage, an unknown command, two good requests on one connection */
    int fd = raw_connect();
    const char req[] = "hello\n{\"cmd\":\"reboot\"}\n{\"cmd\":\"status\"}\n{\"cmd\":\"pause\"}\n";
    ck_assert_int_eq(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    shutdown(fd, SHUT_WR);
    char *ans = raw_read_all(fd);
    close(fd);
    ck_assert_uint_eq(tu_lines(ans), 4);
    ck_assert_ptr_nonnull(strstr(ans, "expected a JSON object with \\\"cmd\\\""));
    ck_assert_ptr_nonnull(strstr(ans, "unknown command \\\"reboot\\\""));
    ck_assert_ptr_nonnull(strstr(ans, "\"endpoints\":["));
    ck_assert_ptr_nonnull(strstr(ans, "needs \\\"endpoint\\\""));
    free(ans);

    /* a line longer than 64 KiB: an error, then the connection closes */
    fd = raw_connect();
    char *big = malloc(100000);
    memset(big, 'x', 100000);
    ssize_t w = write(fd, big, 100000);
    ck_assert(w > 0);
    free(big);
    ans = raw_read_all(fd);
    close(fd);
    ck_assert_ptr_nonnull(strstr(ans, "longer than 64 KiB"));
    free(ans);

    /* a client that asks a lot and never reads, then another 20 that
     * connect and hold: fetchd goes on answering others */
    fd = raw_connect();
    for (int i = 0; i < 300; i++) {
        const char s[] = "{\"cmd\":\"status\"}\n";
        if (send(fd, s, sizeof(s) - 1, MSG_DONTWAIT) < 0) {
            break;
        }
    }
    int hold[20];
    for (int i = 0; i < 20; i++) {
        hold[i] = raw_connect(); /* beyond 16 they wait in the backlog */
    }
    for (int i = 0; i < 15; i++) {
        close(hold[i]); /* make room */
    }
    long g0 = tu_httpd_requests(good_port);
    ck_assert(tu_httpd_wait_requests(good_port, g0 + 3, 5 * tu_slack())); /* still fetching */
    cJSON *st = status_json();
    cJSON_Delete(st);
    close(fd);
    for (int i = 15; i < 20; i++) {
        close(hold[i]);
    }
    kill(fetchd_pid, SIGTERM);
    ck_assert_int_eq(tu_wait(fetchd_pid, 30 * tu_slack()), 0);
    fetchd_pid = 0;
}
END_TEST

int main(void)
{
    Suite *s = suite_create("control");
    TCase *tc = tcase_create("all");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_status);
    tcase_add_test(tc, test_pause_resume_fetch);
    tcase_add_test(tc, test_metrics_and_textfile);
    tcase_add_test(tc, test_permissions);
    tcase_add_test(tc, test_stale_and_live_socket);
    tcase_add_test(tc, test_protocol_abuse);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
