/* http.h - one curl multi handle driven by one libev loop.
 *
 * Knows curl and libev, nothing about JSON, endpoints or sinks. libcurl asks
 * for socket watches (CURLMOPT_SOCKETFUNCTION) and a single timeout
 * (CURLMOPT_TIMERFUNCTION); both callbacks only (re)arm libev watchers. All
 * real work (curl_multi_socket_action, draining completions) happens in the
 * libev callbacks, never inside a libcurl callback.
 */
#pragma once

#include <curl/curl.h>
#include <ev.h>
#include <stdbool.h>

/* Called once per finished transfer, after the easy handle was removed from
 * the multi handle. May call http_add() for new transfers. */
typedef void (*http_done_fn)(void *userdata, CURL *easy, CURLcode result);

struct http {
    struct ev_loop *loop; /* borrowed */
    CURLM *multi;         /* owned */
    ev_timer timer;       /* curl's one timeout */
    int running;          /* transfers curl reports as running */
    unsigned added;       /* easy handles currently added */
    http_done_fn done;
    void *userdata;
    bool draining;
};

int http_init(struct http *h, struct ev_loop *loop, http_done_fn done, void *userdata,
              long max_total_connections, long max_host_connections);
/* Adds a configured easy handle; its transfer starts from the loop. */
int http_add(struct http *h, CURL *easy);
/* Removes an unfinished transfer (no done callback for it). */
void http_remove(struct http *h, CURL *easy);
/* Removes nothing: the caller must have removed every easy handle. */
void http_done(struct http *h);

/* Whether an easy handle may be used for another transfer. Not with libcurl
 * 7.83.0 to 8.0.1 (Debian 12 has 7.88.1): a reused handle keeps a pointer
 * to the previous response's last header, and a folded header line right
 * after the next status line is appended to that freed header, a use after
 * free any server can trigger (curl issue #11101, fixed in 8.1.0; found by
 * tests/fuzz/fuzz-response). */
bool http_easy_reusable(void);
/* Before the next transfer of *easy (not in a multi handle): with such a
 * libcurl, replaces it by a copy with the same options and fresh state
 * (curl_easy_duphandle). Returns 0, or -ENOMEM (*easy unchanged). */
int http_easy_renew(CURL **easy);
