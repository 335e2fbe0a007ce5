/* tlsutil.c - certificate minting with the openssl CLI, and starting the
 * test HTTP server with extra arguments. */
#define _GNU_SOURCE
#include "tlsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* openssl configuration: the extensions of each kind of certificate. */
static const char tu_openssl_cnf[] =
    "[req]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "[dn]\n"
    "CN = fetchd test\n"
    "[v3_ca]\n"
    "basicConstraints = critical, CA:TRUE\n"
    "keyUsage = critical, keyCertSign, cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[v3_server]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature, keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid\n"
    "[v3_client]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature\n"
    "extendedKeyUsage = clientAuth\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid\n"
    "[v3_self]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature, keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
    "subjectKeyIdentifier = hash\n";

static char *tu_path(const char *dir, const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0) {
        abort();
    }
    return p;
}

/* Prints a file's contents on stderr (best effort). */
static void tu_dump(const char *path)
{
    FILE *f = fopen(path, "r");
    char buf[4096];
    size_t n;

    if (!f) {
        return;
    }
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        fwrite(buf, 1, n, stderr);
    }
    fclose(f);
}

/*
 * Runs argv (argv[0] looked up on PATH) in directory dir with stdin from
 * /dev/null and stdout+stderr into log; 0 if it exited with status 0.
 */
static int tu_exec(const char *dir, const char *log, const char *const argv[])
{
    pid_t pid = fork();
    int ws;

    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0 || chdir(dir) < 0) {
            _exit(126);
        }
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    while (waitpid(pid, &ws, 0) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) {
        return 0;
    }
    fprintf(stderr, "tu_mint_certs: command failed (status 0x%x):", ws);
    for (size_t i = 0; argv[i]; i++) {
        fprintf(stderr, " %s", argv[i]);
    }
    fprintf(stderr, "\n");
    tu_dump(log);
    return -1;
}

#define RUN(...)                                                                                  \
    do {                                                                                          \
        const char *const argv_[] = {__VA_ARGS__, NULL};                                         \
        if (tu_exec(dir, log, argv_) != 0) {                                                     \
            goto out;                                                                             \
        }                                                                                         \
    } while (0)

int tu_mint_certs(const char *dir)
{
    /* every command runs in dir, so file names are relative */
    char *log = tu_path(dir, ".openssl.log");
    char *cnf = tu_path(dir, ".openssl.cnf");
    static const char *const temps[] = {".openssl.cnf", "server.csr", "client.csr",
                                        "other-client.csr"};
    int rc = -1;
    FILE *f = fopen(cnf, "w");

    if (!f) {
        fprintf(stderr, "tu_mint_certs: %s: %s\n", cnf, strerror(errno));
        goto out;
    }
    if (fputs(tu_openssl_cnf, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "tu_mint_certs: cannot write %s\n", cnf);
        goto out;
    }

#define GENKEY(file) \
    RUN("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file)

    /* the CAs */
    GENKEY("ca.key");
    RUN("openssl", "req", "-config", ".openssl.cnf", "-new", "-x509", "-key", "ca.key", "-subj",
        "/CN=fetchd test CA", "-days", "3650", "-extensions", "v3_ca", "-set_serial", "1", "-out",
        "ca.pem");
    GENKEY("other-ca.key");
    RUN("openssl", "req", "-config", ".openssl.cnf", "-new", "-x509", "-key", "other-ca.key",
        "-subj", "/CN=fetchd other CA", "-days", "3650", "-extensions", "v3_ca", "-set_serial",
        "1", "-out", "other-ca.pem");

    /* server and clients, signed by a CA */
    GENKEY("server.key");
    RUN("openssl", "req", "-config", ".openssl.cnf", "-new", "-key", "server.key", "-subj",
        "/CN=127.0.0.1", "-out", "server.csr");
    RUN("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-set_serial", "2", "-days", "3650", "-extfile", ".openssl.cnf", "-extensions",
        "v3_server", "-out", "server.pem");
    GENKEY("client.key");
    RUN("openssl", "req", "-config", ".openssl.cnf", "-new", "-key", "client.key", "-subj",
        "/CN=fetchd test client", "-out", "client.csr");
    RUN("openssl", "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-set_serial", "3", "-days", "3650", "-extfile", ".openssl.cnf", "-extensions",
        "v3_client", "-out", "client.pem");
    GENKEY("other-client.key");
    RUN("openssl", "req", "-config", ".openssl.cnf", "-new", "-key", "other-client.key", "-subj",
        "/CN=fetchd other client", "-out", "other-client.csr");
    RUN("openssl", "x509", "-req", "-in", "other-client.csr", "-CA", "other-ca.pem", "-CAkey",
        "other-ca.key", "-set_serial", "2", "-days", "3650", "-extfile", ".openssl.cnf",
        "-extensions", "v3_client", "-out", "other-client.pem");

    /* self-signed server certificate */
    GENKEY("self.key");
    RUN("openssl", "req", "-config", ".openssl.cnf", "-new", "-x509", "-key", "self.key", "-subj",
        "/CN=127.0.0.1", "-days", "3650", "-extensions", "v3_self", "-set_serial", "4", "-out",
        "self.pem");
#undef GENKEY
    rc = 0;

out:
    for (size_t i = 0; i < sizeof temps / sizeof temps[0]; i++) {
        char *t = tu_path(dir, temps[i]);
        unlink(t);
        free(t);
    }
    unlink(log);
    free(log);
    free(cnf);
    return rc;
}

static double tu_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

pid_t tu_httpd_start_args(int *port, const char *const *extra_args)
{
    const char *bin = getenv("FETCHD_HTTPD");
    size_t n = 0;
    int p[2];

    if (!bin) {
        bin = "./tests/httpd";
    }
    while (extra_args && extra_args[n]) {
        n++;
    }
    const char **argv = calloc(n + 2, sizeof *argv);
    if (!argv || pipe2(p, O_CLOEXEC) < 0) {
        abort();
    }
    argv[0] = bin;
    for (size_t i = 0; i < n; i++) {
        argv[i + 1] = extra_args[i];
    }
    pid_t pid = fork();
    if (pid < 0) {
        abort();
    }
    if (pid == 0) {
        dup2(p[1], 1);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    free(argv);
    close(p[1]);
    char buf[64] = "";
    size_t len = 0;
    double t0 = tu_mono();
    while (len < sizeof buf - 1 && !strchr(buf, '\n') && tu_mono() - t0 < 10) {
        struct pollfd pf = {p[0], POLLIN, 0};
        if (poll(&pf, 1, 100) > 0) {
            ssize_t r = read(p[0], buf + len, sizeof buf - 1 - len);
            if (r <= 0) {
                break; /* exited (bad arguments...) */
            }
            len += (size_t)r;
            buf[len] = '\0';
        }
    }
    close(p[0]);
    if (sscanf(buf, "PORT=%d", port) != 1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fprintf(stderr, "test httpd did not start (%s)\n", bin);
        return -1;
    }
    return pid;
}
