/* control.h - the control socket of a running fetchd: a Unix stream socket
 * speaking JSON lines, one request per line, one response line each.
 *
 *   {"cmd":"status"}                       endpoints, sinks, STATUS line
 *   {"cmd":"fetch","endpoint":"NAME"}      run an endpoint now
 *   {"cmd":"pause","endpoint":"NAME"}      skip its scheduled runs
 *   {"cmd":"resume","endpoint":"NAME"}
 *   {"cmd":"metrics"}                      {"ok":true,"text":"<Prometheus text>"}
 *
 * Every response has "ok"; a failed one has "error". The socket is created
 * with mode 0600 and peers are checked with SO_PEERCRED: only root and
 * fetchd's own user may use it. Everything runs on the loop, non-blocking;
 * at most CONTROL_MAX_CLIENTS connections, a request line is at most 64 KiB.
 */
#pragma once

#include <stddef.h>

struct engine;
struct control;

#define CONTROL_MAX_CLIENTS 16

/* Listens on path (a stale socket file of a fetchd that is gone is
 * replaced; a live one is an error). Returns 0 or -errno with a message. */
int control_open(struct control **ret, struct engine *e, const char *path, char *err,
                 size_t errlen);
/* Closes every connection and removes the socket file. Takes NULL. */
struct control *control_close(struct control *c);

/* The response to one request line (without its newline), appended to out
 * with a trailing newline. Exposed for tests. Returns 0 or -ENOMEM. */
struct buf;
int control_handle(struct engine *e, const char *line, size_t len, struct buf *out);
