/* http.c - curl multi_socket <-> libev glue.
 *
 * Pitfalls handled here (conventions.md, section d):
 *  - every CURL_POLL_* change is ev_io_stop + ev_io_set + ev_io_start, and a
 *    REMOVE frees the watcher at once, because the kernel reuses fd numbers;
 *  - socket state is keyed on curl's socketp, never on the easy handle;
 *  - the io callback reads what it needs before curl_multi_socket_action(),
 *    which may free the watcher (REMOVE), and touches only struct http after;
 *  - timeout 0 is an ev_timer of 0 s (fires on the next iteration, never
 *    from inside curl), -1 stops the timer, ms are converted with / 1000.0;
 *  - completions are drained after every socket_action, from both paths;
 *  - callbacks never return -1 (that would abort every transfer); EV_ERROR
 *    on a watcher is passed to curl as CURL_CSELECT_ERR.
 */
#include "http.h"

#include <errno.h>
#include <stdlib.h>

#include "log.h"

struct http_sock {
    ev_io io; /* first member: the io callback casts back */
    curl_socket_t fd;
    struct http *h;
};

static void http_drain(struct http *h)
{
    CURLMsg *msg;
    int left;
    /* A done callback may add handles, which can produce new messages; the
     * loop simply picks them up. */
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        CURL *easy = msg->easy_handle;
        CURLcode res = msg->data.result;
        /* msg is invalid after remove_handle: copied above */
        curl_multi_remove_handle(h->multi, easy);
        h->added--;
        h->done(h->userdata, easy, res);
    }
}

static void http_action(struct http *h, curl_socket_t fd, int action)
{
    CURLMcode mc = curl_multi_socket_action(h->multi, fd, action, &h->running);
    if (mc == CURLM_BAD_SOCKET) {
        log_debug("curl: socket %d is gone (CURLM_BAD_SOCKET), ignoring", (int)fd);
    } else if (mc != CURLM_OK) {
        log_error("curl_multi_socket_action: %s", curl_multi_strerror(mc));
    }
    http_drain(h);
}

/* libev io callback for a socket curl asked us to watch. */
static void http_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct http_sock *hs = (struct http_sock *)w;
    struct http *h = hs->h;        /* read before socket_action: it may free hs */
    curl_socket_t fd = hs->fd;
    int action = 0;
    (void)loop;
    if (revents & EV_ERROR) {
        action = CURL_CSELECT_ERR; /* libev already stopped the watcher */
    } else {
        action = ((revents & EV_READ) ? CURL_CSELECT_IN : 0) |
                 ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    }
    http_action(h, fd, action);
}

/* libev timer callback: curl's timeout expired. */
static void http_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct http *h = w->data;
    (void)loop;
    (void)revents;
    http_action(h, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_SOCKETFUNCTION */
static int http_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct http *h = userp;
    struct http_sock *hs = socketp;
    (void)easy; /* may be an internal handle: never use it */

    if (what == CURL_POLL_REMOVE) {
        if (hs) {
            ev_io_stop(h->loop, &hs->io);
            free(hs);
        }
        return 0;
    }
    if (!hs) {
        hs = calloc(1, sizeof(*hs));
        if (!hs) {
            /* not -1 (that fails every transfer): this one ends at its
             * timeout, which every transfer has */
            log_error("out of memory watching socket %d; its transfer will time out", (int)s);
            return 0;
        }
        hs->fd = s;
        hs->h = h;
        curl_multi_assign(h->multi, s, hs);
    } else {
        ev_io_stop(h->loop, &hs->io);
    }
    int events = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    ev_io_init(&hs->io, http_io_cb, s, events);
    ev_io_start(h->loop, &hs->io);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION */
static int http_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct http *h = userp;
    (void)multi;
    ev_timer_stop(h->loop, &h->timer);
    if (timeout_ms >= 0) {
        ev_timer_set(&h->timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(h->loop, &h->timer);
    }
    return 0;
}

int http_init(struct http *h, struct ev_loop *loop, http_done_fn done, void *userdata,
              long max_total_connections, long max_host_connections)
{
    h->loop = loop;
    h->done = done;
    h->userdata = userdata;
    h->running = 0;
    h->added = 0;
    h->multi = curl_multi_init();
    if (!h->multi) {
        return -ENOMEM;
    }
    ev_timer_init(&h->timer, http_timeout_cb, 0., 0.);
    h->timer.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_total_connections);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, max_total_connections);
    if (max_host_connections > 0) {
        curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_connections);
    }
    return 0;
}

int http_add(struct http *h, CURL *easy)
{
    CURLMcode mc = curl_multi_add_handle(h->multi, easy);
    if (mc != CURLM_OK) {
        log_error("curl_multi_add_handle: %s", curl_multi_strerror(mc));
        return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
    }
    h->added++;
    return 0;
}

void http_remove(struct http *h, CURL *easy)
{
    if (curl_multi_remove_handle(h->multi, easy) == CURLM_OK) {
        h->added--;
    }
}

void http_done(struct http *h)
{
    if (!h->multi) {
        return;
    }
    /* may call http_socket_cb with REMOVE: the loop must still exist */
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    ev_timer_stop(h->loop, &h->timer);
}

bool http_easy_reusable(void)
{
    static int reusable = -1;
    if (reusable < 0) {
        unsigned v = curl_version_info(CURLVERSION_NOW)->version_num;
        reusable = v < 0x075300 || v >= 0x080100;
    }
    return reusable;
}

int http_easy_renew(CURL **easy)
{
    if (!*easy || http_easy_reusable()) {
        return 0;
    }
    CURL *n = curl_easy_duphandle(*easy);
    if (!n) {
        return -ENOMEM;
    }
    curl_easy_cleanup(*easy);
    *easy = n;
    return 0;
}
