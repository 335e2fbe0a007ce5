/* xfer.h - one HTTP transfer: easy handle setup, body capture with a cap,
 * and turning the outcome into a record.
 *
 * Knows libcurl but not the loop (http.c) or scheduling (engine.c), so it can
 * be tested with a plain curl_easy_perform().
 */
#pragma once

#include <curl/curl.h>
#include <stdbool.h>

#include "record.h"
#include "util/buf.h"
#include "util/time.h"

struct endpoint_cfg;

struct xfer {
    CURL *easy;                       /* owned, reused across transfers */
    struct curl_slist *headers;       /* owned, per transfer */
    const struct endpoint_cfg *ep;    /* borrowed while in flight */
    void *owner;                      /* the engine's endpoint state */
    void *gen;                        /* the engine's config generation ep belongs to */
    struct buf body;                  /* response body, capped at max_body_size */
    usec_t started_mono;
    usec_t started_real;
    bool too_large;
    bool oom;
    struct xfer *next_free;
    char errbuf[CURL_ERROR_SIZE];
};

/* Configures x (creating or resetting its easy handle) for one transfer of
 * ep. Returns 0, -ENOMEM, or -EINVAL with a reason in err. */
int xfer_setup(struct xfer *x, const struct endpoint_cfg *ep, const char *user_agent);

/* Classifies the finished transfer and fills *rec. Strings in rec point into
 * x, ep, msgbuf (a caller buffer for messages) or data (which receives the
 * minified, selected document). */
void xfer_result(struct xfer *x, CURLcode res, struct record *rec, struct buf *data,
                 char *msgbuf, size_t msglen);

/* Ends a transfer: frees per-transfer state, keeps the easy handle. */
void xfer_release(struct xfer *x);
void xfer_done(struct xfer *x); /* frees everything */

enum record_error xfer_classify_curl(CURLcode res);
