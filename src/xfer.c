/* xfer.c - easy handle setup, capped body capture, result classification. */
#include "xfer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "jptr.h"
#include "json.h"
#include "units.h"

/* CURLOPT_WRITEFUNCTION: counts decoded bytes against the cap (libcurl's
 * MAXFILESIZE only checks a declared Content-Length) and aborts the transfer
 * with a short count when it is exceeded. */
static size_t xfer_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    size_t n = size * nmemb;
    int r = buf_append(&x->body, ptr, n);
    if (r == -E2BIG) {
        x->too_large = true;
        return 0;
    }
    if (r < 0) {
        x->oom = true;
        return 0;
    }
    return n;
}

int xfer_setup(struct xfer *x, const struct endpoint_cfg *ep, const char *user_agent)
{
    /* No curl_easy_reset() between transfers: it frees and rebuilds most of
     * the handle's state and was the largest single cost per fetch in a
     * profile. Every option any transfer sets is set on every transfer
     * below (to its value or its default), so nothing leaks from the
     * previous endpoint. */
    if (!x->easy) {
        x->easy = curl_easy_init();
        if (!x->easy) {
            return -ENOMEM;
        }
    }
    CURL *c = x->easy;
    x->ep = ep;
    x->too_large = false;
    x->oom = false;
    x->errbuf[0] = '\0';
    buf_reset(&x->body);
    x->body.max = ep->max_body_size;

    for (size_t i = 0; i < ep->n_headers; i++) {
        struct curl_slist *n = curl_slist_append(x->headers, ep->headers[i]);
        if (!n) {
            return -ENOMEM;
        }
        x->headers = n;
    }

    CURLcode cc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, ep->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PRIVATE, x);
    SET(CURLOPT_WRITEFUNCTION, xfer_write_cb);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_USERAGENT, user_agent);
    SET(CURLOPT_TIMEOUT_MS, usec_to_ms_long(ep->timeout));
    SET(CURLOPT_CONNECTTIMEOUT_MS,
        usec_to_ms_long(ep->connect_timeout < ep->timeout ? ep->connect_timeout : ep->timeout));
    SET(CURLOPT_LOW_SPEED_LIMIT, (long)(ep->low_speed_limit > 0x7fffffff ? 0x7fffffff
                                                                          : ep->low_speed_limit));
    SET(CURLOPT_LOW_SPEED_TIME, (long)(ep->low_speed_time / USEC_PER_SEC));
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ep->max_body_size);
    /* PIPEWAIT makes a new transfer wait for a connection to the same host
     * that is still being set up, so it can multiplex over HTTP/2. Over
     * https the answer comes with the TLS handshake (ALPN). Over plain http
     * libcurl learns that HTTP/1.1 cannot multiplex only from the first
     * response, so one slow endpoint would hold back every other transfer to
     * that host: never for http. */
    SET(CURLOPT_PIPEWAIT, strncasecmp(ep->url, "https:", 6) == 0 ? 1L : 0L);
    SET(CURLOPT_FOLLOWLOCATION, ep->follow_redirects ? 1L : 0L);
    SET(CURLOPT_MAXREDIRS, (long)ep->max_redirects);
    SET(CURLOPT_HTTPHEADER, x->headers); /* NULL clears the previous list */
    /* method and body: start from a plain GET without a body (setting
     * POSTFIELDS also switches to POST, so HTTPGET comes after it), then
     * set what differs */
    SET(CURLOPT_POSTFIELDS, (char *)NULL);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_CUSTOMREQUEST, (char *)NULL);
    if (strcmp(ep->method, "GET") == 0) {
        if (ep->body) {
            /* POSTFIELDS alone would turn this into a POST */
            SET(CURLOPT_CUSTOMREQUEST, "GET");
        }
    } else if (strcmp(ep->method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(ep->method, "POST") == 0) {
        SET(CURLOPT_POST, 1L);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, ep->method);
    }
    if (ep->body) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)ep->body_len);
        SET(CURLOPT_POSTFIELDS, ep->body);
    } else if (strcmp(ep->method, "POST") == 0) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        SET(CURLOPT_POSTFIELDS, "");
    }
#undef SET
    if (cc != CURLE_OK) {
        return cc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
    }
    x->started_mono = now_usec(CLOCK_MONOTONIC);
    x->started_real = now_usec(CLOCK_REALTIME);
    return 0;
}

enum record_error xfer_classify_curl(CURLcode res)
{
    switch (res) {
    case CURLE_OK:
        return REC_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return REC_ERR_DNS;
    case CURLE_COULDNT_CONNECT:
        return REC_ERR_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return REC_ERR_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
        return REC_ERR_TLS;
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return REC_ERR_NETWORK;
    case CURLE_PARTIAL_FILE:
        return REC_ERR_PARTIAL_BODY;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
        return REC_ERR_BAD_RESPONSE;
    case CURLE_UNSUPPORTED_PROTOCOL:
        return REC_ERR_PROTOCOL;
    case CURLE_TOO_MANY_REDIRECTS:
        return REC_ERR_REDIRECT;
    case CURLE_FILESIZE_EXCEEDED:
    case CURLE_OUT_OF_MEMORY: /* 7.88: also "response header too large" */
        return REC_ERR_TOO_LARGE;
    case CURLE_ABORTED_BY_CALLBACK:
        return REC_ERR_CANCELLED;
    default:
        return REC_ERR_TRANSFER;
    }
}

void xfer_result(struct xfer *x, CURLcode res, struct record *rec, struct buf *data,
                 char *msgbuf, size_t msglen)
{
    const struct endpoint_cfg *ep = x->ep;
    long status = 0;
    char sz[32];
    memset(rec, 0, sizeof(*rec));
    rec->endpoint = ep->name;
    rec->url = ep->url_redacted;
    rec->fetched_at = x->started_real;
    usec_t now = now_usec(CLOCK_MONOTONIC);
    rec->duration = now > x->started_mono ? now - x->started_mono : 0;
    rec->bytes = x->body.len;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    rec->http_status = status;
    rec->message = msgbuf;
    msgbuf[0] = '\0';

    if (res != CURLE_OK) {
        rec->curl_code = (int)res;
        if (x->too_large || res == CURLE_FILESIZE_EXCEEDED) {
            rec->error = REC_ERR_TOO_LARGE;
            snprintf(msgbuf, msglen, "response body larger than max_body_size (%s)",
                     units_format_size(ep->max_body_size, sz, sizeof(sz)));
            return;
        }
        if (x->oom) {
            rec->error = REC_ERR_INTERNAL;
            snprintf(msgbuf, msglen, "out of memory while receiving the body");
            return;
        }
        rec->error = xfer_classify_curl(res);
        if (res == CURLE_UNSUPPORTED_PROTOCOL && strstr(x->errbuf, "HTTP/0.9")) {
            /* a reply without a status line, not a refused scheme */
            rec->error = REC_ERR_BAD_RESPONSE;
        }
        snprintf(msgbuf, msglen, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(res));
        /* curl's messages end with a newline sometimes */
        size_t l = strlen(msgbuf);
        while (l && (msgbuf[l - 1] == '\n' || msgbuf[l - 1] == '\r')) {
            msgbuf[--l] = '\0';
        }
        return;
    }
    if (status < 200 || status > 299) {
        rec->error = REC_ERR_HTTP_STATUS;
        snprintf(msgbuf, msglen, "HTTP status %ld (expected 2xx)", status);
        rec->excerpt = x->body.data;
        rec->excerpt_len = x->body.len;
        return;
    }
    if (status == 204 || strcmp(ep->method, "HEAD") == 0) {
        return; /* ok, "data": null */
    }
    if (x->body.len == 0) {
        rec->error = REC_ERR_EMPTY_BODY;
        snprintf(msgbuf, msglen, "HTTP %ld with an empty body (expected JSON)", status);
        return;
    }
    struct json_error je;
    buf_reset(data);
    data->max = 0;
    int r = json_minify(x->body.data, x->body.len, JSON_MAX_DEPTH, data, &je);
    if (r == -EINVAL) {
        unsigned line, col;
        json_line_col(x->body.data, x->body.len, je.offset, &line, &col);
        rec->error = REC_ERR_INVALID_JSON;
        rec->has_offset = true;
        rec->offset = je.offset;
        snprintf(msgbuf, msglen, "invalid JSON at byte %zu (line %u, column %u): %s", je.offset,
                 line, col, je.msg);
        rec->excerpt = x->body.data;
        rec->excerpt_len = x->body.len;
        return;
    }
    if (r < 0) {
        rec->error = REC_ERR_INTERNAL;
        snprintf(msgbuf, msglen, "out of memory while parsing the body");
        return;
    }
    size_t off = 0, len = data->len, failed = 0;
    if (ep->select && ep->select->n) {
        if (jptr_eval(ep->select, data->data, data->len, &off, &len, &failed) < 0) {
            rec->error = REC_ERR_SELECT_MISSING;
            snprintf(msgbuf, msglen, "select \"%.200s\": \"%.100s\" not found in the response",
                     ep->select->src, ep->select->tokens[failed]);
            return;
        }
    }
    rec->data = data->data + off;
    rec->data_len = len;
}

void xfer_release(struct xfer *x)
{
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    x->ep = NULL;
    x->owner = NULL;
    x->gen = NULL;
    buf_reset(&x->body);
    /* one huge response must not pin megabytes per pooled handle */
    buf_shrink(&x->body, 256 * 1024);
}

void xfer_done(struct xfer *x)
{
    xfer_release(x);
    if (x->easy) {
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
    buf_done(&x->body);
}
