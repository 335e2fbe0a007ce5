/* xfer.h - one HTTP transfer: easy handle setup, body capture with a cap,
 * and turning the outcome into records.
 *
 * Knows libcurl but not the loop (http.c) or scheduling (engine.c), so it can
 * be tested with a plain curl_easy_perform(). Redirects, retries and pages
 * are the engine's: each hop is one transfer set up from a struct xfer_req.
 */
#pragma once

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "record.h"
#include "util/buf.h"
#include "util/time.h"

struct endpoint_cfg;

/* How one request differs from the endpoint's definition. */
struct xfer_req {
    const char *url;           /* NULL = the endpoint's url */
    bool as_get;               /* a 301/302/303 turned it into a GET without a body */
    bool cross_origin;         /* a hop left the origin: no auth, no secret headers */
    const char *etag;          /* conditional validators, or NULL */
    const char *last_modified;
    const char *password;      /* basic auth (user from the config) */
    const char *bearer;        /* bearer or OAuth2 access token */
    const char *const *headers; /* the cycle's rendered headers ("Name: value"), used
                                 * instead of the endpoint's when not NULL */
    size_t n_headers;
    const bool *header_secret;  /* parallel: never sent to another origin */
    const char *body;           /* the cycle's rendered body, or NULL: the endpoint's */
    size_t body_len;
    bool hop;                  /* a redirect hop: the record's times start at the first request */
    bool fd_short;             /* out of descriptors: idle connections are not kept */
};

struct xfer {
    CURL *easy;                       /* owned, reused across transfers */
    struct curl_slist *headers;       /* owned, per transfer */
    const struct endpoint_cfg *ep;    /* borrowed while in flight */
    void *owner;                      /* the engine's endpoint state */
    void *gen;                        /* the engine's config generation ep belongs to */
    struct buf body;                  /* response body, capped at max_body_size */
    struct buf meta;                  /* the "headers" object of records */
    struct buf rhdr;                  /* response_headers values as they arrive:
                                       * index byte, value, NUL; per response */
    struct record_timings timings;
    usec_t started_mono;
    usec_t started_real;
    const char *url;                  /* the URL requested (ep's or the req's) */
    bool is_get;                      /* idempotent method for retries */
    bool too_large;
    bool oom;
    int sock_errno;                   /* errno of a failed socket(), e.g. EMFILE */
    char http_version[4];
    struct xfer *next_free;
    char errbuf[CURL_ERROR_SIZE];
};

/* Configures x (creating its easy handle once) for one transfer of ep.
 * rq may be NULL. Returns 0 or -ENOMEM/-EINVAL. */
int xfer_setup(struct xfer *x, const struct endpoint_cfg *ep, const struct xfer_req *rq,
               const char *user_agent);

enum xfer_outcome {
    XFER_RECORD,       /* *rec is this attempt's result: an error, or ok with a body to parse */
    XFER_REDIRECT,     /* a redirect to follow: *location (malloc'd, absolute) */
    XFER_NOT_MODIFIED, /* 304 to a conditional request */
};

/* Classifies the finished transfer and fills *rec (without parsing the
 * body). Strings in rec point into x, ep or msgbuf. */
enum xfer_outcome xfer_result(struct xfer *x, CURLcode res, struct record *rec, char *msgbuf,
                              size_t msglen, char **location);

/* Called for each record of a response. */
typedef void (*xfer_emit_fn)(void *ctx, const struct record *rec);

/* Parses the body of an ok result (rec from xfer_result) into records:
 * format, select and split. data receives the minified documents; for the
 * json format the whole page document (before select) stays at data[0,
 * *doc_len) for pagination, else *doc_len = 0. Returns the number of error
 * records emitted. */
size_t xfer_parse(struct xfer *x, const struct record *rec, struct buf *data, size_t *doc_len,
                  xfer_emit_fn emit, void *ctx, char *msgbuf, size_t msglen);

/* Response header helpers (the last response of the transfer). Return a
 * malloc'd copy or NULL. */
char *xfer_header(struct xfer *x, const char *name);
/* The rel="next" target of the Link headers, resolved against the request
 * URL (malloc'd), or NULL. */
char *xfer_link_next(struct xfer *x);
/* Retry-After in microseconds (delta-seconds or HTTP-date, clamped at
 * 0), or -1 when absent or unparsable. */
int64_t xfer_retry_after(struct xfer *x);

/* Ends a transfer: frees per-transfer state, keeps the easy handle. */
void xfer_release(struct xfer *x);
void xfer_done(struct xfer *x); /* frees everything */

enum record_error xfer_classify_curl(CURLcode res);

/* Whether the transfer failed only because no socket could be made for
 * lack of file descriptors (EMFILE/ENFILE): nothing was sent. */
static inline bool xfer_out_of_fds(const struct xfer *x, CURLcode res)
{
    if (res == CURLE_COULDNT_RESOLVE_HOST &&
        strcmp(x->errbuf, "getaddrinfo() thread failed to start") == 0) {
        return true; /* libcurl's socketpair/thread for the resolver */
    }
    return (res == CURLE_COULDNT_CONNECT || res == CURLE_COULDNT_RESOLVE_HOST) &&
           (x->sock_errno == EMFILE || x->sock_errno == ENFILE);
}

/* Parsers, exposed for tests and fuzzing. */
/* The first rel="next" URI reference in a Link header value (RFC 8288), as
 * a malloc'd string, or NULL. */
char *http_link_next(const char *value);
/* Retry-After value -> microseconds from now (now_real: CLOCK_REALTIME
 * seconds), 0 for a date in the past, at most 366 days for either form;
 * -1 if not valid. */
int64_t http_retry_after_parse(const char *value, time_t now_real);
/* Whether a Content-Type is acceptable for a JSON endpoint in mode
 * (enum ctype_mode); NULL (no header) is acceptable. */
bool http_content_type_ok(const char *ctype, int mode);
