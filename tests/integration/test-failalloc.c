/* test-failalloc.c - the allocation-failure sweep: `fetchd --once` over 20
 * endpoints of the test server, run once for every N with the N-th
 * allocation failing (tests/fetchd-failalloc, see tests/helpers/failalloc.c:
 * fetchd's own allocations, cJSON's and libcurl's).
 *
 * Every run must end with a documented exit status and a consistent output:
 *   0   every endpoint has an ok record (the failure was absorbed)
 *   1   every endpoint has exactly one whole record; the failed ones say why
 *   70  out of memory before anything ran ("out of memory" is logged)
 *   74  a record could not be handed to a sink, counted and logged
 * Never another status, a signal, a sanitizer report or a leak (the ASan
 * build checks leaks in every run; the valgrind setup runs a sample of N
 * under valgrind).
 *
 * One known libcurl 7.88.1 defect is told apart, not hidden: a failed
 * allocation inside curl_multi_socket_action() for a new socket's hash
 * entry ends in a division by zero inside libcurl (SIGFPE). Such runs are
 * counted and printed; they must carry the "failed in libcurl's multi" mark
 * of the allocator and the "SIGFPE in libcurl" mark of its signal handler
 * (the faulting instruction lies in libcurl; under valgrind, valgrind's
 * report shows it), and die of SIGFPE. */
#define _GNU_SOURCE
#include <check.h>
#include <cJSON.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define N_ENDPOINTS 20

static pid_t httpd_pid;
static int port;
static char *dir;
static char *cfg_path;

static void setup(void)
{
    dir = tu_tmpdir();
    httpd_pid = tu_httpd_start(&port);
    char *cfg = tu_fmt("{\"endpoints\": {");
    for (int i = 0; i < N_ENDPOINTS; i++) {
        char *next = tu_fmt("%s%s\"e%02d\": {\"url\": \"http://127.0.0.1:%d/json?n=%d\"}", cfg,
                            i ? ", " : "", i, port, i);
        free(cfg);
        cfg = next;
    }
    char *full = tu_fmt("%s}}", cfg);
    free(cfg);
    cfg_path = tu_write(dir, "fetchd.json", full);
    free(full);
}

static void teardown(void)
{
    tu_httpd_stop(httpd_pid);
    tu_rmdir(dir);
    free(dir);
    free(cfg_path);
}

static const char *failalloc_bin(void)
{
    const char *b = getenv("FETCHD_FAILALLOC_BIN");
    ck_assert_msg(b && *b, "FETCHD_FAILALLOC_BIN is not set (run through meson test)");
    return b;
}

struct run {
    unsigned long n;
    pid_t pid;
    char *out, *err, *rep;
};

static void run_start(struct run *r, unsigned long n, bool under_valgrind)
{
    r->n = n;
    r->out = tu_fmt("%s/out.%lu", dir, n);
    r->err = tu_fmt("%s/err.%lu", dir, n);
    r->rep = tu_fmt("%s/rep.%lu", dir, n);
    char nbuf[32];
    snprintf(nbuf, sizeof(nbuf), "%lu", n);
    setenv("FETCHD_FAIL_ALLOC", nbuf, 1);
    setenv("FETCHD_FAIL_ALLOC_REPORT", r->rep, 1);
    const char *plain[] = {failalloc_bin(), "--once", "-c", cfg_path, NULL};
    const char *vg[] = {"valgrind", "--quiet", "--leak-check=full",
                        "--errors-for-leak-kinds=definite,indirect,possible",
                        "--error-exitcode=3", failalloc_bin(), "--once", "-c", cfg_path, NULL};
    r->pid = tu_spawn(under_valgrind ? vg : plain, r->out, r->err);
    unsetenv("FETCHD_FAIL_ALLOC");
    unsetenv("FETCHD_FAIL_ALLOC_REPORT");
}

static void run_free(struct run *r)
{
    unlink(r->out);
    unlink(r->err);
    unlink(r->rep);
    free(r->out);
    free(r->err);
    free(r->rep);
}

/* Checks one line-per-record output: whole JSON objects, one per endpoint.
 * Returns the number of ok records, or -1 with why set. */
static int check_records(const char *out, char *why, size_t len)
{
    bool seen[N_ENDPOINTS] = {false};
    int ok = 0, n = 0;
    for (const char *p = out; p && *p;) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            snprintf(why, len, "a partial line at the end: %.80s", p);
            return -1;
        }
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        if (!cJSON_IsObject(j)) {
            snprintf(why, len, "a line is not a JSON object: %.80s", p);
            cJSON_Delete(j);
            return -1;
        }
        cJSON *ep = cJSON_GetObjectItemCaseSensitive(j, "endpoint");
        int idx = cJSON_IsString(ep) && ep->valuestring[0] == 'e' ? atoi(ep->valuestring + 1) : -1;
        if (idx < 0 || idx >= N_ENDPOINTS || seen[idx]) {
            snprintf(why, len, "unknown or repeated endpoint in: %.80s", p);
            cJSON_Delete(j);
            return -1;
        }
        seen[idx] = true;
        cJSON *okj = cJSON_GetObjectItemCaseSensitive(j, "ok");
        ok += cJSON_IsTrue(okj);
        if (!cJSON_IsTrue(okj) && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "error"))) {
            snprintf(why, len, "a failed record without an error object: %.80s", p);
            cJSON_Delete(j);
            return -1;
        }
        cJSON_Delete(j);
        n++;
        p = nl + 1;
    }
    if (n != N_ENDPOINTS) {
        snprintf(why, len, "%d records for %d endpoints", n, N_ENDPOINTS);
        return -1;
    }
    return ok;
}

struct tally {
    unsigned long runs, reached, st[256], curl_fpe;
};

/* Judges one finished run; returns false with why set when it broke a rule. */
static bool judge(struct run *r, int status, struct tally *t, char *why, size_t len)
{
    char *out = tu_read(r->out);
    char *err = tu_read(r->err);
    char *rep = tu_read(r->rep);
    bool failed = rep && strstr(rep, "failed");
    /* the faulting instruction in libcurl: marked by fetchd-failalloc's
     * handler, or, under valgrind (which runs libcurl as translated code,
     * so the handler cannot tell), the first frame of valgrind's report */
    const char *vg = err ? strstr(err, "Integer divide by zero") : NULL;
    const char *vg_at = vg ? strstr(vg, " at 0x") : NULL;
    const char *vg_eol = vg_at ? strchr(vg_at, '\n') : NULL;
    bool vg_fpe = vg_at && vg_eol && strstr(err, "(SIGFPE)") &&
                  memmem(vg_at, (size_t)(vg_eol - vg_at), "libcurl.so", 10) &&
                  strstr(vg, "curl_multi_socket_action");
    bool in_multi = rep && strstr(rep, "failed in libcurl's multi") &&
                    (strstr(rep, "SIGFPE in libcurl") || vg_fpe);
    bool sanitizer = err && (strstr(err, "Sanitizer") || strstr(err, "runtime error:"));
    bool asan_fpe = err && strstr(err, "AddressSanitizer: FPE");
    bool good = true;
    why[0] = '\0';
    t->runs++;
    t->reached += failed;
    if ((status == 128 + SIGFPE || (asan_fpe && status != 0)) && in_multi) {
        t->curl_fpe++; /* the known libcurl defect, see the top */
        goto out;
    }
    if (sanitizer) {
        snprintf(why, len, "a sanitizer report (exit %d)", status);
        good = false;
        goto out;
    }
    if (status >= 0 && status < 256) {
        t->st[status]++;
    }
    int ok;
    switch (status) {
    case 0:
        ok = check_records(out, why, len);
        if (ok != N_ENDPOINTS) {
            if (ok >= 0) {
                snprintf(why, len, "exit 0 with %d ok records of %d", ok, N_ENDPOINTS);
            }
            good = false;
        }
        break;
    case 1:
        good = check_records(out, why, len) >= 0;
        break;
    case 70:
        good = err && strstr(err, "out of memory");
        if (!good) {
            snprintf(why, len, "exit 70 without \"out of memory\" in the log");
        }
        break;
    case 74:
        good = err && strstr(err, "could not be written to a sink");
        if (!good) {
            snprintf(why, len, "exit 74 without the count of lost records in the log");
        }
        break;
    default:
        snprintf(why, len, "exit status %d%s", status,
                 status > 128 ? " (killed by a signal)" : "");
        good = false;
    }
out:
    if (!good) {
        fprintf(stderr, "--- N=%lu: %s\n--- stderr:\n%s\n--- allocator: %s\n", r->n, why,
                err ? err : "", rep ? rep : "");
    }
    free(out);
    free(err);
    free(rep);
    return good;
}

START_TEST(test_every_allocation_fails_once)
{
    bool vg = getenv("FETCHD_WRAPPER") != NULL;
    /* a clean run first: how many allocations there are */
    struct run r0;
    run_start(&r0, 0, false);
    int st0 = tu_wait(r0.pid, 60);
    char *out0 = tu_read(r0.out);
    char *rep0 = tu_read(r0.rep);
    char why[256];
    int ok0 = check_records(out0, why, sizeof(why));
    ck_assert_msg(st0 == 0 && ok0 == N_ENDPOINTS, "the run without failures: exit %d, %d ok (%s)",
                  st0, ok0, why);
    unsigned long count = 0;
    ck_assert_msg(rep0 && sscanf(strstr(rep0, "count ") ? strstr(rep0, "count ") : "", "count %lu",
                                 &count) == 1 && count > 100,
                  "no allocation count from the run without failures: %s", rep0 ? rep0 : "(none)");
    free(out0);
    free(rep0);
    run_free(&r0);

    /* every N (a sample of 20 under valgrind), two runs at a time, and some
     * past the end: a run may allocate a little more than the clean one */
    unsigned long last = count + count / 10;
    unsigned long step = vg ? last / 20 + 1 : 1;
    const char *s = getenv("FETCHD_FAILALLOC_STEP");
    if (s && atol(s) > 0) {
        step = (unsigned long)atol(s);
    }
    struct tally t = {0};
    unsigned long bad = 0;
    struct run slot[2];
    bool busy[2] = {false, false};
    unsigned long next = 1;
    double t0 = tu_now();
    while (next <= last || busy[0] || busy[1]) {
        for (int i = 0; i < 2; i++) {
            if (!busy[i] && next <= last) {
                run_start(&slot[i], next, vg);
                busy[i] = true;
                next += step;
            }
        }
        for (int i = 0; i < 2; i++) {
            if (!busy[i]) {
                continue;
            }
            int st = tu_wait(slot[i].pid, 120);
            if (!judge(&slot[i], st, &t, why, sizeof(why))) {
                bad++;
            }
            run_free(&slot[i]);
            busy[i] = false;
        }
    }
    fprintf(stderr,
            "allocation-failure sweep: %lu allocations in a clean run; %lu runs (N = 1..%lu, "
            "step %lu) in %.1f s; the failure was reached in %lu; exit 0: %lu, 1: %lu, 70: %lu, "
            "74: %lu; libcurl SIGFPE (known 7.88.1 defect): %lu; broken: %lu\n",
            count, t.runs, last, step, tu_now() - t0, t.reached, t.st[0], t.st[1], t.st[70],
            t.st[74], t.curl_fpe, bad);
    ck_assert_msg(bad == 0, "%lu of %lu runs broke the rules (see stderr)", bad, t.runs);
    ck_assert_msg(t.reached * 10 >= t.runs * 8,
                  "only %lu of %lu runs reached their failing allocation", t.reached, t.runs);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("failalloc");
    TCase *tc = tcase_create("sweep");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 1800);
    tcase_add_test(tc, test_every_allocation_fails_once);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
