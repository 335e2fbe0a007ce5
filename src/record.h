/* record.h - the result of one fetch, and its JSON Lines serialisation.
 *
 * A record is built once per completed transfer, serialised once, and the
 * same line is handed to every sink of the endpoint.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/time.h"

/* Stable error kinds (documented in fetchd.json(5) and fetchd(8)). */
enum record_error {
    REC_OK = 0,
    REC_ERR_DNS,          /* name resolution failed */
    REC_ERR_CONNECT,      /* TCP connection refused/unreachable */
    REC_ERR_TLS,          /* TLS handshake or certificate verification */
    REC_ERR_TIMEOUT,      /* total timeout, connect timeout or too slow */
    REC_ERR_NETWORK,      /* connection reset or closed mid-transfer, send/recv error */
    REC_ERR_PARTIAL_BODY, /* fewer body bytes than Content-Length */
    REC_ERR_BAD_RESPONSE, /* not valid HTTP (bad status line, bad encoding) */
    REC_ERR_PROTOCOL,     /* scheme not allowed (e.g. a redirect to file://) */
    REC_ERR_REDIRECT,     /* too many redirects */
    REC_ERR_TOO_LARGE,    /* body above max_body_size, or headers too large */
    REC_ERR_HTTP_STATUS,  /* HTTP status outside 2xx */
    REC_ERR_EMPTY_BODY,   /* 2xx other than 204 with no body */
    REC_ERR_INVALID_JSON, /* body is not valid JSON */
    REC_ERR_SELECT_MISSING, /* the select pointer does not resolve */
    REC_ERR_CANCELLED,    /* stopped before completion (shutdown) */
    REC_ERR_INTERNAL,     /* out of memory or another local failure */
    REC_ERR_TRANSFER,     /* any other libcurl failure */
    REC_ERR_CONTENT_TYPE, /* a Content-Type that is not JSON (text/html...) */
    REC_ERR_AUTH,         /* a secret could not be read, a token request failed */
    REC_ERR_NOT_ARRAY,    /* split: the document (after select) is not an array */
    REC_ERR_TEMPLATE,     /* a placeholder's value cannot go into the request */
    _REC_ERR_MAX,
};

const char *record_error_kind(enum record_error e);

struct record_timings {
    usec_t dns, connect, tls, ttfb, total; /* cumulative from the attempt's start */
};

struct record {
    const char *endpoint;  /* borrowed */
    const char *url;       /* borrowed; credentials already redacted */
    long http_status;      /* 0 if no response */
    usec_t fetched_at;     /* CLOCK_REALTIME at the start of the transfer */
    usec_t duration;       /* from start to completion */
    uint64_t bytes;        /* body bytes received (after any decoding) */
    const char *data;      /* minified JSON (ok records), or NULL for "null" */
    size_t data_len;
    unsigned attempts;     /* attempts made in the cycle (0 is written as 1) */
    unsigned page;         /* 0: not paginated, else 1-based */
    bool has_index;
    size_t index;          /* split / ndjson: element or line, 0-based */
    bool unchanged;        /* a 304 "unchanged" marker */
    const char *http_version;             /* "1.1", "2"... or NULL */
    const struct record_timings *timings; /* or NULL */
    const char *headers;   /* a JSON object (response_headers), or NULL */
    size_t headers_len;

    enum record_error error;
    const char *message;   /* human message for errors, borrowed */
    int curl_code;         /* CURLcode, 0 if none */
    long verify_result;    /* tls: X.509 verify result, 0 if none */
    bool has_offset;
    size_t offset;         /* invalid_json: byte offset of the problem */
    const char *excerpt;   /* start of the response body for errors, or NULL */
    size_t excerpt_len;
};

#define RECORD_EXCERPT_MAX 256

/* Appends r as one JSON object and a '\n' to out. Returns 0 or -ENOMEM. */
int record_serialize(const struct record *r, struct buf *out);
