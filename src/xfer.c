/* xfer.c - easy handle setup, capped body capture, result classification. */
#include "xfer.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "jptr.h"
#include "json.h"
#include "units.h"
#include "url.h"

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

/* CURLOPT_HEADERFUNCTION, with response_headers only: keeps the values of
 * the configured headers of the last response as they arrive, in one pass
 * (curl_easy_header() and curl_easy_nextheader() count every header on
 * each call: quadratic in a response with tens of thousands of them, which
 * libcurl allows within its 300 KB). */
static size_t xfer_header_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    size_t n = size * nmemb;
    const struct endpoint_ext *ext = x->ep->x;
    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
        buf_reset(&x->rhdr); /* a new response: an interim one came before */
        return n;
    }
    const char *colon = memchr(ptr, ':', n);
    if (!colon) {
        return n;
    }
    size_t name_len = (size_t)(colon - ptr);
    for (size_t i = 0; i < ext->n_resp_headers; i++) {
        const char *want = ext->resp_headers[i];
        if (strlen(want) != name_len || strncasecmp(want, ptr, name_len) != 0) {
            continue;
        }
        const char *v = colon + 1, *e = ptr + n;
        while (v < e && (*v == ' ' || *v == '\t')) {
            v++;
        }
        while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }
        unsigned char idx = (unsigned char)i;
        if (buf_reserve(&x->rhdr, (size_t)(e - v) + 2) == 0) { /* else over the cap: dropped */
            (void)buf_append(&x->rhdr, &idx, 1);
            (void)buf_append(&x->rhdr, v, (size_t)(e - v));
            (void)buf_append(&x->rhdr, "", 1);
        }
        break;
    }
    return n;
}

/* CURLOPT_OPENSOCKETFUNCTION: the socket is made here so that running out
 * of file descriptors is visible (libcurl turns it into "couldn't connect"
 * with CURLINFO_OS_ERRNO 0); the engine then defers the transfer. */
static curl_socket_t xfer_opensocket_cb(void *clientp, curlsocktype purpose,
                                        struct curl_sockaddr *addr)
{
    struct xfer *x = clientp;
    (void)purpose;
    int fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd < 0) {
        x->sock_errno = errno;
        return CURL_SOCKET_BAD;
    }
    x->sock_errno = 0; /* an earlier address's failure is not this one's */
    return fd;
}

/* CURLOPT_RESOLVER_START_FUNCTION: libcurl's threaded resolver needs a
 * socketpair and getaddrinfo() opens files; without free descriptors both
 * fail as "could not resolve". A few spare descriptors, or EMFILE now. */
static int xfer_resolver_start_cb(void *resolver_state, void *reserved, void *userdata)
{
    struct xfer *x = userdata;
    (void)resolver_state;
    (void)reserved;
    int fds[4], n = 0, err = 0;
    for (; n < 4; n++) {
        fds[n] = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 0);
        if (fds[n] < 0) {
            err = errno;
            break;
        }
    }
    while (n > 0) {
        close(fds[--n]);
    }
    if (err == EMFILE || err == ENFILE) {
        x->sock_errno = err;
        return 1;
    }
    return 0;
}

/* libcurl's built-in CA locations, captured once: every transfer sets
 * CAINFO/CAPATH (no curl_easy_reset() between transfers), and NULL would
 * mean "none", not "the default". */
static char *default_cainfo, *default_capath;
static bool defaults_captured;

static void capture_defaults(CURL *c)
{
    if (defaults_captured) {
        return;
    }
    char *p = NULL;
    bool ok = true;
    if (curl_easy_getinfo(c, CURLINFO_CAINFO, &p) == CURLE_OK && p) {
        ok = (default_cainfo = strdup(p)) != NULL;
    }
    p = NULL;
    if (curl_easy_getinfo(c, CURLINFO_CAPATH, &p) == CURLE_OK && p && ok) {
        ok = (default_capath = strdup(p)) != NULL;
    }
    if (!ok) { /* out of memory: try again with the next handle */
        free(default_cainfo);
        default_cainfo = NULL;
        return;
    }
    defaults_captured = true;
}

static bool header_name_is(const char *hdr, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(hdr, name, n) == 0 && (hdr[n] == ':' || hdr[n] == ';');
}

static int add_header(struct xfer *x, const char *h)
{
    struct curl_slist *n = curl_slist_append(x->headers, h);
    if (!n) {
        return -ENOMEM;
    }
    x->headers = n;
    return 0;
}

int xfer_setup(struct xfer *x, const struct endpoint_cfg *ep, const struct xfer_req *rq,
               const char *user_agent)
{
    /* No curl_easy_reset() between transfers: it frees and rebuilds most of
     * the handle's state and was the largest single cost per fetch in a
     * profile. Every option any transfer sets is set on every transfer
     * below (to its value or its default), so nothing leaks from the
     * previous endpoint. */
    static const struct xfer_req none = {0};
    if (!rq) {
        rq = &none;
    }
    if (x->easy && !http_easy_reusable()) {
        /* every option is set below anyway: a new handle, not a copy */
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
    if (!x->easy) {
        x->easy = curl_easy_init();
        if (!x->easy) {
            return -ENOMEM;
        }
    }
    capture_defaults(x->easy); /* once; again after an allocation failure */
    if (!defaults_captured) {
        return -ENOMEM; /* https without the default CAs would fail anyway */
    }
    CURL *c = x->easy;
    const struct endpoint_ext *ext = ep->x;
    x->ep = ep;
    x->too_large = false;
    x->oom = false;
    x->sock_errno = 0;
    x->errbuf[0] = '\0';
    x->http_version[0] = '\0';
    x->url = rq->url ? rq->url : ep->url;
    buf_reset(&x->body);
    buf_reset(&x->meta);
    buf_reset(&x->rhdr);
    x->rhdr.max = 1024 * 1024;
    x->body.max = ep->max_body_size;
    curl_slist_free_all(x->headers);
    x->headers = NULL;

    const char *const *hdrs = rq->headers ? rq->headers : ep->headers;
    size_t n_hdrs = rq->headers ? rq->n_headers : ep->n_headers;
    for (size_t i = 0; i < n_hdrs; i++) {
        const char *h = hdrs[i];
        if (rq->as_get && header_name_is(h, "Content-Type")) {
            continue; /* no body any more */
        }
        if (rq->cross_origin && (config_header_is_secret(ext, h, strcspn(h, ":;")) ||
                                 (rq->header_secret && rq->header_secret[i]))) {
            continue;
        }
        if (add_header(x, h) < 0) {
            return -ENOMEM;
        }
    }
    char hv[1200];
    if (rq->etag && strlen(rq->etag) < 1000) {
        snprintf(hv, sizeof(hv), "If-None-Match: %s", rq->etag);
        if (add_header(x, hv) < 0) {
            return -ENOMEM;
        }
    }
    if (rq->last_modified && strlen(rq->last_modified) < 1000) {
        snprintf(hv, sizeof(hv), "If-Modified-Since: %s", rq->last_modified);
        if (add_header(x, hv) < 0) {
            return -ENOMEM;
        }
    }

    const char *method = rq->as_get ? "GET" : ep->method;
    const char *body = rq->body ? rq->body : ep->body;
    size_t body_len = rq->body ? rq->body_len : ep->body_len;
    bool with_body = body && !rq->as_get;
    x->is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ||
                strcmp(method, "PUT") == 0 || strcmp(method, "DELETE") == 0 ||
                strcmp(method, "OPTIONS") == 0 || strcmp(method, "TRACE") == 0;

    CURLcode cc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, x->url);
    SET(CURLOPT_PROTOCOLS_STR, ext->protocols);
    SET(CURLOPT_REDIR_PROTOCOLS_STR, ext->protocols);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PRIVATE, x);
    SET(CURLOPT_WRITEFUNCTION, xfer_write_cb);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_HEADERFUNCTION, ext->n_resp_headers ? xfer_header_cb : NULL);
    SET(CURLOPT_HEADERDATA, ext->n_resp_headers ? (void *)x : NULL);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_OPENSOCKETFUNCTION, xfer_opensocket_cb);
    SET(CURLOPT_OPENSOCKETDATA, x);
    SET(CURLOPT_RESOLVER_START_FUNCTION, xfer_resolver_start_cb);
    /* idle connections in libcurl's cache hold descriptors: when they ran
     * out, this transfer's connect prunes the idle ones (default 118 s) */
    SET(CURLOPT_MAXAGE_CONN, rq->fd_short ? 0L : 118L);
    SET(CURLOPT_RESOLVER_START_DATA, x);
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
     * that host: never for http (unless HTTP/2 is known: h2c). */
    SET(CURLOPT_PIPEWAIT,
        strncasecmp(x->url, "https:", 6) == 0 ||
                ext->http_version == CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
            ? 1L
            : 0L);
    SET(CURLOPT_HTTP_VERSION, ext->http_version);
    /* fetchd follows redirects itself (engine.c): each hop is checked
     * against "schemes" and loses secrets when it leaves the origin */
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_HTTPHEADER, x->headers); /* NULL clears the previous list */
    SET(CURLOPT_ACCEPT_ENCODING, ext->accept_encoding);
    /* TLS */
    SET(CURLOPT_SSL_VERIFYPEER, ext->tls.insecure ? 0L : 1L);
    SET(CURLOPT_SSL_VERIFYHOST, ext->tls.insecure ? 0L : 2L);
    SET(CURLOPT_CAINFO, ext->tls.ca_file ? ext->tls.ca_file : default_cainfo);
    SET(CURLOPT_CAPATH, ext->tls.ca_path ? ext->tls.ca_path
                        : ext->tls.ca_file ? NULL : default_capath);
    SET(CURLOPT_SSLCERT, ext->tls.client_cert);
    SET(CURLOPT_SSLKEY, ext->tls.client_key);
    SET(CURLOPT_SSLVERSION, ext->tls.min_version ? ext->tls.min_version
                                                 : (long)CURL_SSLVERSION_DEFAULT);
    /* proxy: NULL = the environment; set = only that, whatever no_proxy says */
    SET(CURLOPT_PROXY, ext->proxy);
    SET(CURLOPT_NOPROXY, ext->proxy ? "" : NULL);
    SET(CURLOPT_UNIX_SOCKET_PATH, ext->unix_socket);
    /* auth, never after a hop to another origin */
    const struct auth_cfg *a = &ext->auth;
    bool send_auth = !rq->cross_origin;
    SET(CURLOPT_USERNAME, send_auth && a->type == AUTH_BASIC ? a->user : NULL);
    SET(CURLOPT_PASSWORD, send_auth && a->type == AUTH_BASIC ? rq->password : NULL);
    SET(CURLOPT_XOAUTH2_BEARER, send_auth && rq->bearer ? rq->bearer : NULL);
    SET(CURLOPT_HTTPAUTH, send_auth && rq->bearer ? CURLAUTH_BEARER : CURLAUTH_BASIC);
    /* method and body: start from a plain GET without a body (setting
     * POSTFIELDS also switches to POST, so HTTPGET comes after it), then
     * set what differs */
    SET(CURLOPT_POSTFIELDS, (char *)NULL);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_CUSTOMREQUEST, (char *)NULL);
    if (strcmp(method, "GET") == 0) {
        if (with_body) {
            /* POSTFIELDS alone would turn this into a POST */
            SET(CURLOPT_CUSTOMREQUEST, "GET");
        }
    } else if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "POST") == 0) {
        SET(CURLOPT_POST, 1L);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, method);
    }
    if (with_body) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        SET(CURLOPT_POSTFIELDS, body);
    } else if (strcmp(method, "POST") == 0) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        SET(CURLOPT_POSTFIELDS, "");
    }
#undef SET
    if (cc != CURLE_OK) {
        return cc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
    }
    if (!rq->hop) {
        x->started_mono = now_usec(CLOCK_MONOTONIC);
        x->started_real = now_usec(CLOCK_REALTIME);
    }
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

/* The "headers" object of records: the configured response headers that
 * are present, names lowercased, repeated ones joined with ", ". */
static void collect_headers(struct xfer *x)
{
    const struct endpoint_ext *ext = x->ep->x;
    struct buf *m = &x->meta;
    int r = buf_putc(m, '{');
    bool first = true;
    for (size_t i = 0; i < ext->n_resp_headers && r >= 0; i++) {
        struct buf v = {.max = 64 * 1024};
        bool found = false, full = false;
        for (size_t off = 0; off < x->rhdr.len;) {
            unsigned char idx = (unsigned char)x->rhdr.data[off];
            const char *val = x->rhdr.data + off + 1;
            off += 1 + strlen(val) + 1;
            if (idx != i || full) {
                continue;
            }
            if (buf_printf(&v, "%s%s", found ? ", " : "", val) < 0) {
                full = true; /* over 64 KiB: keep what fits */
            }
            found = true;
        }
        if (!found) {
            buf_done(&v);
            continue;
        }
        char lower[128];
        snprintf(lower, sizeof(lower), "%s", ext->resp_headers[i]);
        for (char *p = lower; *p; p++) {
            *p = (char)tolower((unsigned char)*p);
        }
        r = buf_puts(m, first ? "" : ",");
        first = false;
        if (r >= 0) {
            r = json_escape_str(m, lower);
        }
        if (r >= 0) {
            r = buf_putc(m, ':');
        }
        if (r >= 0) {
            r = json_escape(m, v.data ? v.data : "", v.len);
        }
        buf_done(&v);
    }
    if (r >= 0) {
        r = buf_putc(m, '}');
    }
    if (r < 0) {
        buf_reset(m);
    }
}

static void collect_meta(struct xfer *x, struct record *rec)
{
    const struct endpoint_ext *ext = x->ep->x;
    if (ext->timings) {
        curl_off_t v[5] = {0};
        static const CURLINFO info[5] = {CURLINFO_NAMELOOKUP_TIME_T, CURLINFO_CONNECT_TIME_T,
                                         CURLINFO_APPCONNECT_TIME_T,
                                         CURLINFO_STARTTRANSFER_TIME_T, CURLINFO_TOTAL_TIME_T};
        for (int i = 0; i < 5; i++) {
            if (curl_easy_getinfo(x->easy, info[i], &v[i]) != CURLE_OK || v[i] < 0) {
                v[i] = 0;
            }
        }
        x->timings = (struct record_timings){(usec_t)v[0], (usec_t)v[1], (usec_t)v[2],
                                             (usec_t)v[3], (usec_t)v[4]};
        rec->timings = &x->timings;
        long hv = 0;
        curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &hv);
        const char *name = hv == CURL_HTTP_VERSION_1_0   ? "1.0"
                           : hv == CURL_HTTP_VERSION_1_1 ? "1.1"
                           : hv == CURL_HTTP_VERSION_2_0 ? "2"
                           : hv == CURL_HTTP_VERSION_3   ? "3"
                                                         : NULL;
        if (name) {
            snprintf(x->http_version, sizeof(x->http_version), "%s", name);
            rec->http_version = x->http_version;
        }
    }
    if (ext->n_resp_headers && rec->http_status > 0) {
        collect_headers(x);
        rec->headers = x->meta.data;
        rec->headers_len = x->meta.len;
    }
}

bool http_content_type_ok(const char *ctype, int mode)
{
    if (!ctype || mode == CTYPE_ANY) {
        return true;
    }
    char t[128];
    size_t n = strcspn(ctype, ";");
    while (n && (ctype[n - 1] == ' ' || ctype[n - 1] == '\t')) {
        n--;
    }
    while (n && (*ctype == ' ' || *ctype == '\t')) {
        ctype++;
        n--;
    }
    if (n == 0) {
        return true;
    }
    if (n >= sizeof(t)) {
        return mode != CTYPE_STRICT;
    }
    for (size_t i = 0; i < n; i++) {
        t[i] = (char)tolower((unsigned char)ctype[i]);
    }
    t[n] = '\0';
    bool suffix_xml = n > 4 && strcmp(t + n - 4, "+xml") == 0;
    if (mode == CTYPE_JSON) {
        return !(strcmp(t, "text/html") == 0 || strcmp(t, "text/xml") == 0 ||
                 strcmp(t, "application/xml") == 0 || suffix_xml);
    }
    static const char *const ok[] = {"application/json", "application/x-ndjson",
                                     "application/ndjson", "application/jsonl",
                                     "application/x-jsonlines", "application/json-seq"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strcmp(t, ok[i]) == 0) {
            return true;
        }
    }
    return strncmp(t, "application/", 12) == 0 && n > 5 && strcmp(t + n - 5, "+json") == 0;
}

static void status_expectation(const struct status_set *s, char *out, size_t len)
{
    /* "2xx" for the default, else a generic phrase */
    bool only_2xx = true;
    for (long c = 100; c <= 599 && only_2xx; c++) {
        only_2xx = status_set_has(s, c) == (c >= 200 && c <= 299);
    }
    snprintf(out, len, "%s", only_2xx ? "expected 2xx" : "not in success_status");
}

enum xfer_outcome xfer_result(struct xfer *x, CURLcode res, struct record *rec, char *msgbuf,
                              size_t msglen, char **location)
{
    const struct endpoint_cfg *ep = x->ep;
    const struct endpoint_ext *ext = ep->x;
    long status = 0;
    char sz[32];
    memset(rec, 0, sizeof(*rec));
    *location = NULL;
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
    collect_meta(x, rec);

    if (res != CURLE_OK) {
        rec->curl_code = (int)res;
        if (x->too_large || res == CURLE_FILESIZE_EXCEEDED) {
            rec->error = REC_ERR_TOO_LARGE;
            snprintf(msgbuf, msglen, "response body larger than max_body_size (%s%s)",
                     units_format_size(ep->max_body_size, sz, sizeof(sz)),
                     ext->accept_encoding ? ", counted after decompression" : "");
            return XFER_RECORD;
        }
        if (x->oom) {
            rec->error = REC_ERR_INTERNAL;
            snprintf(msgbuf, msglen, "out of memory while receiving the body");
            return XFER_RECORD;
        }
        if (xfer_out_of_fds(x, res)) {
            rec->error = REC_ERR_CONNECT; /* when the engine cannot defer it */
            snprintf(msgbuf, msglen, "out of file descriptors: socket(): %s",
                     strerror(x->sock_errno ? x->sock_errno : EMFILE));
            return XFER_RECORD;
        }
        rec->error = xfer_classify_curl(res);
        if (res == CURLE_UNSUPPORTED_PROTOCOL && strstr(x->errbuf, "HTTP/0.9")) {
            /* a reply without a status line, not a refused scheme */
            rec->error = REC_ERR_BAD_RESPONSE;
        }
        if (res == CURLE_RECV_ERROR && strncmp(x->errbuf, "Too large response headers", 26) == 0) {
            /* 7.88.1 with the CVE-2023-38039 fix: more than 300 KB of
             * headers in all (later libcurl: CURLE_TOO_LARGE) */
            rec->error = REC_ERR_TOO_LARGE;
        }
        if (rec->error == REC_ERR_TLS) {
            long vr = 0;
            if (curl_easy_getinfo(x->easy, CURLINFO_SSL_VERIFYRESULT, &vr) == CURLE_OK) {
                rec->verify_result = vr;
            }
        }
        snprintf(msgbuf, msglen, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(res));
        /* curl's messages end with a newline sometimes */
        size_t l = strlen(msgbuf);
        while (l && (msgbuf[l - 1] == '\n' || msgbuf[l - 1] == '\r')) {
            msgbuf[--l] = '\0';
        }
        if (rec->error == REC_ERR_TLS && ext->tls.insecure == false && rec->verify_result) {
            size_t used = strlen(msgbuf);
            snprintf(msgbuf + used, msglen - used,
                     " (set tls.ca_file to the issuing CA to trust it)");
        }
        return XFER_RECORD;
    }
    if (!(url_scheme_of(x->url) & (URL_HTTP | URL_HTTPS))) {
        /* file, ftp, ftps (opted in by "schemes"): no HTTP status, no
         * Content-Type; the transfer's success is the success */
        rec->http_status = 0;
        if (x->body.len == 0) {
            rec->error = REC_ERR_EMPTY_BODY;
            snprintf(msgbuf, msglen, "the resource is empty (expected JSON)");
            return XFER_RECORD;
        }
        rec->data = x->body.data;
        return XFER_RECORD;
    }
    if (ep->follow_redirects && (status == 301 || status == 302 || status == 303 ||
                                 status == 307 || status == 308)) {
        char *loc = NULL;
        if (curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc) {
            *location = strdup(loc);
            if (*location) {
                return XFER_REDIRECT;
            }
            rec->error = REC_ERR_INTERNAL;
            snprintf(msgbuf, msglen, "out of memory following a redirect");
            return XFER_RECORD;
        }
    }
    if (status == 304 && ext->conditional) {
        return XFER_NOT_MODIFIED;
    }
    if (!status_set_has(&ext->success, status)) {
        char want[32];
        status_expectation(&ext->success, want, sizeof(want));
        rec->error = REC_ERR_HTTP_STATUS;
        snprintf(msgbuf, msglen, "HTTP status %ld (%s)", status, want);
        if (status >= 300 && status <= 399 && !ep->follow_redirects) {
            size_t used = strlen(msgbuf);
            snprintf(msgbuf + used, msglen - used, "; a redirect: set follow_redirects to follow it");
        }
        rec->excerpt = x->body.data;
        rec->excerpt_len = x->body.len;
        return XFER_RECORD;
    }
    if (status == 204 || strcmp(ep->method, "HEAD") == 0) {
        return XFER_RECORD; /* ok, "data": null */
    }
    char *ctype = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ctype);
    if (!http_content_type_ok(ctype, (int)ext->content_type)) {
        rec->error = REC_ERR_CONTENT_TYPE;
        snprintf(msgbuf, msglen, "Content-Type \"%.100s\" is not JSON%s", ctype,
                 ext->content_type == CTYPE_STRICT
                     ? " (content_type is \"strict\"; \"json\" only rejects HTML and XML)"
                     : " (an error page? set content_type to \"any\" to parse it anyway)");
        rec->excerpt = x->body.data;
        rec->excerpt_len = x->body.len;
        return XFER_RECORD;
    }
    if (x->body.len == 0) {
        rec->error = REC_ERR_EMPTY_BODY;
        snprintf(msgbuf, msglen, "HTTP %ld with an empty body (expected JSON)", status);
        return XFER_RECORD;
    }
    rec->data = x->body.data; /* marks "a body to parse" for xfer_parse */
    return XFER_RECORD;
}

/* select and split on one minified document doc[0..len); emits its records.
 * Returns the number of error records. */
static size_t emit_doc(struct xfer *x, const struct record *base, const char *doc, size_t len,
                       bool has_index, size_t index, xfer_emit_fn emit, void *ctx,
                       char *msgbuf, size_t msglen)
{
    const struct endpoint_cfg *ep = x->ep;
    struct record r = *base;
    r.message = msgbuf;
    size_t off = 0, n = len, failed = 0;
    if (ep->select && ep->select->n) {
        if (jptr_eval(ep->select, doc, len, &off, &n, &failed) < 0) {
            r.error = REC_ERR_SELECT_MISSING;
            r.data = NULL;
            r.has_index = has_index;
            r.index = index;
            snprintf(msgbuf, msglen, "select \"%.200s\": \"%.100s\" not found in the response",
                     ep->select->src, ep->select->tokens[failed]);
            emit(ctx, &r);
            return 1;
        }
    }
    if (!ep->x->split) {
        r.data = doc + off;
        r.data_len = n;
        r.has_index = has_index;
        r.index = index;
        emit(ctx, &r);
        return 0;
    }
    if (doc[off] != '[') {
        r.error = REC_ERR_NOT_ARRAY;
        r.data = NULL;
        r.has_index = has_index;
        r.index = index;
        snprintf(msgbuf, msglen, "split: expected an array%s, got %s",
                 ep->select ? " at select" : "",
                 doc[off] == '{' ? "an object" : doc[off] == '"' ? "a string" : "a scalar");
        emit(ctx, &r);
        return 1;
    }
    size_t pos = 0, eo, el, i = 0;
    while (json_array_next(doc + off, n, &pos, &eo, &el)) {
        r.data = doc + off + eo;
        r.data_len = el;
        r.has_index = true;
        r.index = has_index ? index : i; /* ndjson lines keep their line index */
        emit(ctx, &r);
        i++;
    }
    return 0;
}

size_t xfer_parse(struct xfer *x, const struct record *rec, struct buf *data, size_t *doc_len,
                  xfer_emit_fn emit, void *ctx, char *msgbuf, size_t msglen)
{
    *doc_len = 0;
    buf_reset(data);
    data->max = 0;
    if (rec->error != REC_OK || !rec->data) {
        emit(ctx, rec);
        return rec->error != REC_OK;
    }
    const char *body = x->body.data;
    size_t blen = x->body.len;
    struct json_error je;
    struct record er = *rec;
    er.data = NULL;
    er.message = msgbuf;
    if (!x->ep->x->ndjson) {
        int r = json_minify(body, blen, JSON_MAX_DEPTH, data, &je);
        if (r == -EINVAL) {
            unsigned line, col;
            json_line_col(body, blen, je.offset, &line, &col);
            er.error = REC_ERR_INVALID_JSON;
            er.has_offset = true;
            er.offset = je.offset;
            snprintf(msgbuf, msglen, "invalid JSON at byte %zu (line %u, column %u): %s",
                     je.offset, line, col, je.msg);
            er.excerpt = body;
            er.excerpt_len = blen;
            emit(ctx, &er);
            return 1;
        }
        if (r < 0) {
            er.error = REC_ERR_INTERNAL;
            snprintf(msgbuf, msglen, "out of memory while parsing the body");
            emit(ctx, &er);
            return 1;
        }
        *doc_len = data->len;
        return emit_doc(x, rec, data->data, data->len, false, 0, emit, ctx, msgbuf, msglen);
    }
    /* ndjson: one document per non-blank line */
    size_t errors = 0, lineno = 0;
    for (size_t p = 0; p < blen; lineno++) {
        const char *nl = memchr(body + p, '\n', blen - p);
        size_t end = nl ? (size_t)(nl - body) : blen;
        size_t s = p, e = end;
        p = nl ? end + 1 : blen;
        while (s < e && (body[s] == ' ' || body[s] == '\t' || body[s] == '\r')) {
            s++;
        }
        while (e > s && (body[e - 1] == ' ' || body[e - 1] == '\t' || body[e - 1] == '\r')) {
            e--;
        }
        if (s == e) {
            continue;
        }
        buf_reset(data);
        int r = json_minify(body + s, e - s, JSON_MAX_DEPTH, data, &je);
        if (r < 0) {
            er.error = r == -EINVAL ? REC_ERR_INVALID_JSON : REC_ERR_INTERNAL;
            er.has_offset = r == -EINVAL;
            er.offset = s + je.offset;
            er.has_index = true;
            er.index = lineno;
            if (r == -EINVAL) {
                snprintf(msgbuf, msglen, "invalid JSON on line %zu at byte %zu: %s", lineno + 1,
                         s + je.offset, je.msg);
            } else {
                snprintf(msgbuf, msglen, "out of memory while parsing line %zu", lineno + 1);
            }
            er.excerpt = body + s;
            er.excerpt_len = e - s;
            emit(ctx, &er);
            errors++;
            continue;
        }
        errors += emit_doc(x, rec, data->data, data->len, true, lineno, emit, ctx, msgbuf, msglen);
    }
    return errors;
}

char *xfer_header(struct xfer *x, const char *name)
{
    struct curl_header *h;
    if (curl_easy_header(x->easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h->value) {
        return NULL;
    }
    return strdup(h->value);
}

/* RFC 8288: link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param ),
 * link-values separated by commas; rel holds space-separated types. */
char *http_link_next(const char *v)
{
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        if (*p != '<') {
            /* not a link-value: skip to the next comma outside quotes */
            bool q = false;
            while (*p && (q || *p != ',')) {
                if (*p == '"') {
                    q = !q;
                } else if (*p == '\\' && q && p[1]) {
                    p++;
                }
                p++;
            }
            continue;
        }
        const char *us = ++p;
        while (*p && *p != '>') {
            p++;
        }
        if (!*p) {
            return NULL;
        }
        const char *ue = p++;
        bool next = false;
        /* params until the next comma outside quotes */
        while (*p && *p != ',') {
            while (*p == ' ' || *p == '\t' || *p == ';') {
                p++;
            }
            const char *ns = p;
            while (*p && *p != '=' && *p != ';' && *p != ',' && *p != ' ' && *p != '\t') {
                p++;
            }
            size_t nlen = (size_t)(p - ns);
            while (*p == ' ' || *p == '\t') {
                p++;
            }
            const char *vs = p, *ve = p; /* the value, without quotes */
            if (*p == '=') {
                p++;
                while (*p == ' ' || *p == '\t') {
                    p++;
                }
                if (*p == '"') {
                    vs = ++p;
                    for (; *p && *p != '"'; p++) {
                        if (*p == '\\' && p[1]) {
                            p++;
                        }
                    }
                    ve = p;
                    if (*p == '"') {
                        p++;
                    }
                } else {
                    vs = p;
                    while (*p && *p != ';' && *p != ',' && *p != ' ' && *p != '\t') {
                        p++;
                    }
                    ve = p;
                }
            }
            if (nlen == 3 && strncasecmp(ns, "rel", 3) == 0) {
                /* space-separated relation types, any length */
                for (const char *t = vs; t < ve;) {
                    while (t < ve && (*t == ' ' || *t == '\t')) {
                        t++;
                    }
                    const char *te = t;
                    while (te < ve && *te != ' ' && *te != '\t') {
                        te++;
                    }
                    if (te - t == 4 && strncasecmp(t, "next", 4) == 0) {
                        next = true;
                    }
                    t = te;
                }
            }
            while (*p && *p != ';' && *p != ',') {
                p++; /* junk after a value */
            }
            if (nlen == 0 && *p != ';') {
                break;
            }
        }
        if (next) {
            size_t n = (size_t)(ue - us);
            char *out = malloc(n + 1);
            if (out) {
                memcpy(out, us, n);
                out[n] = '\0';
            }
            return out;
        }
    }
    return NULL;
}

char *xfer_link_next(struct xfer *x)
{
    struct curl_header *h;
    for (size_t i = 0;; i++) {
        if (curl_easy_header(x->easy, "Link", i, CURLH_HEADER, -1, &h) != CURLHE_OK) {
            return NULL;
        }
        char *ref = http_link_next(h->value);
        if (ref) {
            char *abs = url_resolve(x->url, ref);
            free(ref);
            return abs;
        }
        if (i + 1 >= h->amount) {
            return NULL;
        }
    }
}

int64_t http_retry_after_parse(const char *v, time_t now_real)
{
    /* clamp: a year is "not soon" enough (and keeps the microseconds of
     * a date far in the future from overflowing) */
    const uint64_t max_s = 366ull * 86400;
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    if (*v >= '0' && *v <= '9') {
        uint64_t s = 0;
        for (; *v >= '0' && *v <= '9'; v++) {
            s = s * 10 + (uint64_t)(*v - '0');
            if (s > max_s) {
                s = max_s;
            }
        }
        while (*v == ' ' || *v == '\t') {
            v++;
        }
        return *v ? -1 : (int64_t)(s * USEC_PER_SEC);
    }
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1) {
        return -1;
    }
    if (t <= now_real) {
        return 0;
    }
    uint64_t s = (uint64_t)t - (uint64_t)now_real;
    return (int64_t)((s > max_s ? max_s : s) * USEC_PER_SEC);
}

int64_t xfer_retry_after(struct xfer *x)
{
    struct curl_header *h;
    if (curl_easy_header(x->easy, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK) {
        return -1;
    }
    return http_retry_after_parse(h->value, time(NULL));
}

void xfer_release(struct xfer *x)
{
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    x->ep = NULL;
    x->owner = NULL;
    x->gen = NULL;
    buf_reset(&x->body);
    buf_reset(&x->meta);
    buf_reset(&x->rhdr);
    /* one huge response must not pin megabytes per pooled handle */
    buf_shrink(&x->body, 256 * 1024);
    buf_shrink(&x->meta, 16 * 1024);
    buf_shrink(&x->rhdr, 16 * 1024);
}

void xfer_done(struct xfer *x)
{
    xfer_release(x);
    if (x->easy) {
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
    buf_done(&x->body);
    buf_done(&x->meta);
    buf_done(&x->rhdr);
}
