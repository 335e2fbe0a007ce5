/* testutil.h - helpers for tests that run real processes: the fetchd binary
 * and the test HTTP server (tests/helpers/httpd.c), both found through the
 * FETCHD_BIN and FETCHD_HTTPD environment variables that meson sets. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct tu_result {
    int status;     /* exit status, or 128+signal, or -1 on timeout */
    char *out;      /* captured stdout (NUL-terminated, owned) */
    char *err;      /* captured stderr (owned) */
    double seconds; /* wall time */
};

/* Runs argv (argv[0] is a path) to completion, capturing output. Kills it
 * after timeout_s. */
void tu_run(const char *const argv[], double timeout_s, struct tu_result *res);
/* Starts argv in the background with stdout/stderr to the given files
 * (NULL: /dev/null). */
pid_t tu_spawn(const char *const argv[], const char *out_path, const char *err_path);
/* Waits for pid up to timeout_s; returns status like tu_run (kills on timeout). */
int tu_wait(pid_t pid, double timeout_s);
void tu_result_done(struct tu_result *res);

const char *tu_fetchd(void);
/* Starts the test HTTP server on 127.0.0.1:0; returns its pid, stores port. */
pid_t tu_httpd_start(int *port);
void tu_httpd_stop(pid_t pid);
/* Requests the test server has answered or is answering (from /__stats:
 * "requests"), -1 on error. */
long tu_httpd_requests(int port);
/* Waits until the server has seen at least n requests; false on timeout. */
bool tu_httpd_wait_requests(int port, long n, double timeout_s);

/* A fresh temporary directory (owned string); tu_rmdir removes it. */
char *tu_tmpdir(void);
void tu_rmdir(const char *dir);
/* Writes content to dir/name (creating subdirectories is the caller's job);
 * returns the malloc'd path. */
char *tu_write(const char *dir, const char *name, const char *content);
char *tu_read(const char *path); /* whole file, NULL if missing */
/* printf into a malloc'd string */
char *tu_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Number of lines (records) in s. */
size_t tu_lines(const char *s);
double tu_now(void);
/* How much longer waits may take: 20 when fetchd runs under a wrapper
 * (FETCHD_WRAPPER, the valgrind test setup), else 1. */
double tu_slack(void);
