/* tlsutil.h - TLS test fixtures (certificates minted with the openssl CLI)
 * and a variant of tu_httpd_start that passes extra arguments to the test
 * HTTP server (tests/helpers/httpd.c: --tls-cert, --unix, ...). */
#pragma once

#include <sys/types.h>

/*
 * Creates, in the existing directory dir, with the `openssl` command-line
 * tool (found on PATH; run directly, no shell), PEM files:
 *   ca.pem, ca.key            a test CA ("fetchd test CA")
 *   server.pem, server.key    server certificate signed by ca, CN 127.0.0.1,
 *                             subjectAltName IP:127.0.0.1, DNS:localhost,
 *                             extendedKeyUsage serverAuth
 *   client.pem, client.key    client certificate signed by ca, CN
 *                             "fetchd test client", extendedKeyUsage
 *                             clientAuth
 *   other-ca.pem, other-ca.key
 *                             an unrelated CA ("fetchd other CA")
 *   other-client.pem, other-client.key
 *                             a client certificate signed by other-ca
 *                             (rejected by a server trusting only ca.pem)
 *   self.pem, self.key        a self-signed server certificate, CN and
 *                             subjectAltName as server.pem
 * Keys are EC P-256 (PKCS#8, unencrypted), certificates are valid from
 * now for 10 years.  Intermediate files are removed.  Returns 0, or -1
 * after printing the failing command and openssl's output on stderr.
 */
int tu_mint_certs(const char *dir);

/*
 * Starts the test HTTP server like tu_httpd_start (binary from
 * FETCHD_HTTPD, default ./tests/httpd; stdout read up to "PORT=<n>"),
 * with extra_args (NULL-terminated, may be NULL) appended to its command
 * line, e.g. {"--tls-cert", cert, "--tls-key", key, NULL}.  Stores the port
 * (0 with --unix) in *port and returns the pid; stop it with
 * tu_httpd_stop.  Unlike tu_httpd_start it does not abort when the server
 * fails to start (bad arguments, unreadable certificate): it returns -1
 * (the server's stderr goes to the test's stderr).
 */
pid_t tu_httpd_start_args(int *port, const char *const *extra_args);
