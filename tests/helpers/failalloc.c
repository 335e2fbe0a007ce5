/* failalloc.c - allocation failure injection for the allocation-failure
 * sweep (tests/integration/test-failalloc.c).
 *
 * Linked into tests/fetchd-failalloc: src/main.c and fetchd-core linked with
 * -Wl,--wrap for malloc, calloc, realloc, strdup, strndup, asprintf and
 * vasprintf, so every allocation fetchd's own code makes comes here; cJSON's
 * come through cJSON_InitHooks and libcurl's through curl_global_init_mem.
 * libev's are not failed: ev_set_allocator documents that libev may abort
 * when its allocator fails. The installed fetchd has none of this.
 *
 * Environment:
 *   FETCHD_FAIL_ALLOC=N         the N-th counted allocation fails (once);
 *                               unset or 0: none fails
 *   FETCHD_FAIL_ALLOC_REPORT=F  lines appended to F: "failed" (or "failed
 *                               in libcurl's multi") when the N-th
 *                               allocation fails, "count C" at exit: how
 *                               many allocations were counted
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <signal.h>
#include <fcntl.h>
#include <unistd.h>
#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_vasprintf(char **ret, const char *fmt, va_list ap);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_asprintf(char **ret, const char *fmt, ...);
int __wrap_vasprintf(char **ret, const char *fmt, va_list ap);
void main_test_setup(void);

static int in_multi; /* inside curl_multi_socket_action, see below */
static unsigned long fail_at;
static unsigned long counted; /* atomically: libcurl's resolver threads allocate too */
static const char *report_path;

static void report_line(const char *line);

/* Appends a line to the report (no allocation). */
static void report_line(const char *line)
{
    if (!report_path) {
        return;
    }
    int fd = open(report_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        (void)!write(fd, line, strlen(line));
        close(fd);
    }
}

/* Whether this allocation is the one to fail. */
static int fail_now(void)
{
    unsigned long n = __atomic_add_fetch(&counted, 1, __ATOMIC_RELAXED);
    if (fail_at && n == fail_at) {
        /* written now: the process may not live to exit */
        report_line(in_multi ? "failed in libcurl's multi\n" : "failed\n");
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return fail_now() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return fail_now() ? NULL : __real_strndup(s, n);
}

int __wrap_vasprintf(char **ret, const char *fmt, va_list ap)
{
    if (fail_now()) {
        *ret = NULL;
        return -1;
    }
    return __real_vasprintf(ret, fmt, ap);
}

int __wrap_asprintf(char **ret, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = __wrap_vasprintf(ret, fmt, ap);
    va_end(ap);
    return r;
}

/* curl_multi_socket_action is wrapped to know whether a failed allocation
 * was libcurl's own business inside it: libcurl 7.88.1 has a known defect
 * there (a failed allocation for a new socket's hash entry leads to a
 * division by zero, SIGFPE, later in the same call); the sweep tells those
 * apart from fetchd's failures by the "multi" mark in the report. */
CURLMcode __real_curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev, int *running);
CURLMcode __wrap_curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev, int *running);

CURLMcode __wrap_curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev, int *running)
{
    in_multi++;
    CURLMcode r = __real_curl_multi_socket_action(m, s, ev, running);
    in_multi--;
    return r;
}

/* libcurl's and cJSON's allocators */
static void *hook_malloc(size_t n)
{
    return __wrap_malloc(n);
}

static void hook_free(void *p)
{
    free(p);
}

static void *hook_realloc(void *p, size_t n)
{
    return __wrap_realloc(p, n);
}

static char *hook_strdup(const char *s)
{
    return __wrap_strdup(s);
}

static void *hook_calloc(size_t n, size_t size)
{
    return __wrap_calloc(n, size);
}

static void report(void)
{
    char line[64];
    snprintf(line, sizeof(line), "count %lu\n", __atomic_load_n(&counted, __ATOMIC_RELAXED));
    report_line(line);
}

/* A SIGFPE is marked in the report when the faulting instruction is in
 * libcurl (the known defect above), then kills the process as usual. */
static void on_sigfpe(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    Dl_info di;
    if (dladdr(si->si_addr, &di) && di.dli_fname && strstr(di.dli_fname, "libcurl")) {
        report_line("SIGFPE in libcurl\n");
    }
    signal(sig, SIG_DFL); /* the instruction faults again: default action */
}

/* Called first thing by main() (a weak reference there). */
void main_test_setup(void)
{
    struct sigaction sa = {.sa_sigaction = on_sigfpe, .sa_flags = SA_SIGINFO};
    sigaction(SIGFPE, &sa, NULL);
    const char *at = getenv("FETCHD_FAIL_ALLOC");
    fail_at = at ? strtoul(at, NULL, 10) : 0;
    report_path = getenv("FETCHD_FAIL_ALLOC_REPORT");
    if (report_path) {
        atexit(report);
    }
    cJSON_Hooks hooks = {.malloc_fn = hook_malloc, .free_fn = hook_free};
    cJSON_InitHooks(&hooks);
    /* the first init wins; main()'s curl_global_init() then only counts */
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, hook_malloc, hook_free, hook_realloc,
                             hook_strdup, hook_calloc) != CURLE_OK) {
        fprintf(stderr, "failalloc: curl_global_init_mem failed\n");
    }
}
