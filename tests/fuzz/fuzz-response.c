/* fuzz-response.c - one HTTP response through fetchd's transfer pipeline:
 * a real libcurl easy handle set up by xfer_setup(), then xfer_result(),
 * xfer_parse() and record_serialize(), in the order engine.c uses them when
 * a transfer completes (engine_xfer_done: result -> redirect / not modified
 * / parse and emit -> next page; Retry-After on 429 and 503).
 *
 * Input: [1 byte: endpoint][the bytes a server sends: status line, headers,
 * body]. No network: the open-socket callback hands libcurl an AF_UNIX
 * socket and points it at a listening socket of this process (abstract
 * name); when the connection is up (CURLOPT_PREREQFUNCTION) the target
 * accepts it, writes the input and shuts its side down for writing, so the
 * response ends at the end of the input. (curl-fuzzer instead returns a
 * connected socketpair and CURL_SOCKOPT_ALREADY_CONNECTED, but libcurl
 * 7.88 ignores that answer and calls connect() anyway: curl issue #10626,
 * fixed in 8.0.0.) Keep -max_len below the socket buffer (about 200 KiB);
 * longer inputs are cut there.
 *
 * The endpoints (a fixed configuration, loaded once) cover select + split +
 * compression + response_headers + timings + redirects + conditional
 * requests + Link pagination; ndjson with a strict Content-Type and a small
 * body cap; a POST with a cursor; a next_url pointer; a HEAD.
 *
 * The engine reuses its easy handles; so does this target, except with
 * libcurl 7.83.0 to 8.0.1: there a reused handle keeps a pointer to the
 * previous response's last header, and a folded header line right after
 * the next status line is appended to that freed header (use after free,
 * curl issue #11101, fixed in 8.1.0). Debian 12's 7.88.1 has it, so there
 * each input gets a new handle (FUZZ_REUSE_EASY=1 reuses it anyway, to
 * reproduce: corpus/response/fold-after-status-line after any other input).
 *
 * Properties, for every record the pipeline emits:
 *  - record_serialize() succeeds and gives exactly one line of valid JSON
 *    that is already minified;
 *  - an ok record's data is valid minified JSON and is the end of the line
 *    (the engine hands sinks "data" by offset: line.len - 2 - data_len);
 *  - error records carry a message; Retry-After is -1 or a delay >= 0;
 *  - a redirect has a non-empty absolute location.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "jptr.h"
#include "json.h"
#include "record.h"
#include "url.h"
#include "xfer.h"

/* Port 9 (discard) on loopback: never connected to, the socket is ours. A
 * literal address, so there is no name resolution either. */
static const char config_text[] =
    "{\n"
    "  \"defaults\": {\"proxy\": \"\", \"timeout\": \"2s\"},\n"
    "  \"endpoints\": {\n"
    "    \"items\": {\n"
    "      \"url\": \"http://127.0.0.1:9/v1/items?page=1\",\n"
    "      \"select\": \"/data/items\", \"split\": true,\n"
    "      \"compression\": true, \"timings\": true,\n"
    "      \"response_headers\": [\"Content-Type\", \"ETag\", \"Link\", \"X-Request-Id\"],\n"
    "      \"follow_redirects\": true, \"conditional\": true,\n"
    "      \"max_body_size\": \"64KiB\",\n"
    "      \"paginate\": {\"link\": true}\n"
    "    },\n"
    "    \"lines\": {\n"
    "      \"url\": \"http://127.0.0.1:9/v1/events.ndjson\",\n"
    "      \"format\": \"ndjson\", \"content_type\": \"strict\",\n"
    "      \"select\": \"/v\", \"success_status\": [\"2xx\", 404],\n"
    "      \"max_body_size\": \"4KiB\"\n"
    "    },\n"
    "    \"search\": {\n"
    "      \"url\": \"http://127.0.0.1:9/search\",\n"
    "      \"method\": \"POST\", \"body\": {\"q\": \"status\"},\n"
    "      \"headers\": {\"Content-Type\": \"application/json\"},\n"
    "      \"content_type\": \"any\", \"split\": true,\n"
    "      \"paginate\": {\"cursor\": \"/meta/next\", \"param\": \"cursor\"}\n"
    "    },\n"
    "    \"feed\": {\n"
    "      \"url\": \"http://127.0.0.1:9/feed\",\n"
    "      \"paginate\": {\"next_url\": \"/links/next\"}\n"
    "    },\n"
    "    \"probe\": {\n"
    "      \"url\": \"http://127.0.0.1:9/health\", \"method\": \"HEAD\"\n"
    "    }\n"
    "  }\n"
    "}\n";

static struct config *cfg;
static bool verbose;    /* FUZZ_VERBOSE=1: print every record line */
static bool fresh_easy; /* a new easy handle per input (see above) */
static struct xfer x;
static struct buf data; /* the engine's e->data */

/* The fake server: a listening socket, the connection of the current
 * transfer and the bytes it answers with. */
static struct {
    int listen_fd;
    struct sockaddr_un addr;
    socklen_t addrlen;
    int fd; /* accepted for this transfer, or -1 */
    const uint8_t *reply;
    size_t reply_len;
} srv = {.listen_fd = -1, .fd = -1};

/* CURLOPT_OPENSOCKETFUNCTION: any address becomes the fake server's. */
static curl_socket_t fuzz_opensocket_cb(void *clientp, curlsocktype purpose,
                                        struct curl_sockaddr *addr)
{
    (void)clientp;
    if (purpose != CURLSOCKTYPE_IPCXN) {
        return CURL_SOCKET_BAD;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return CURL_SOCKET_BAD;
    }
    addr->family = AF_UNIX;
    addr->socktype = SOCK_STREAM;
    addr->protocol = 0;
    addr->addrlen = (unsigned)srv.addrlen;
    memcpy(&addr->addr, &srv.addr, srv.addrlen);
    return fd;
}

/* Writes as much of the reply as the socket takes, then EOF. */
static void srv_answer(int fd)
{
    int sz = 1 << 20;
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    const uint8_t *p = srv.reply;
    size_t n = srv.reply_len;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            break; /* full: the response is cut here */
        }
        p += w;
        n -= (size_t)w;
    }
    (void)shutdown(fd, SHUT_WR);
}

/* CURLOPT_PREREQFUNCTION: connected, the request is next. */
static int fuzz_prereq_cb(void *clientp, char *conn_primary_ip, char *conn_local_ip,
                          int conn_primary_port, int conn_local_port)
{
    (void)clientp;
    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    if (srv.fd < 0) {
        srv.fd = accept4(srv.listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (srv.fd >= 0) {
            srv_answer(srv.fd);
        }
    }
    return CURL_PREREQFUNC_OK;
}

/* Ends the transfer's connection and any that was never accepted. */
static void srv_reset(void)
{
    if (srv.fd >= 0) {
        close(srv.fd);
        srv.fd = -1;
    }
    int fd;
    while ((fd = accept4(srv.listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        close(fd);
    }
}

static void srv_init(void)
{
    srv.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    FUZZ_CHECK(srv.listen_fd >= 0);
    srv.addr.sun_family = AF_UNIX;
    /* abstract namespace: no file, gone with the process */
    int n = snprintf(srv.addr.sun_path + 1, sizeof(srv.addr.sun_path) - 1, "fetchd-fuzz-%ld",
                     (long)getpid());
    srv.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    FUZZ_CHECK(bind(srv.listen_fd, (struct sockaddr *)&srv.addr, srv.addrlen) == 0);
    FUZZ_CHECK(listen(srv.listen_fd, 8) == 0);
}

static void fuzz_cleanup(void)
{
    xfer_done(&x);
    buf_done(&data);
    config_free(cfg);
    curl_global_cleanup();
    if (srv.listen_fd >= 0) {
        close(srv.listen_fd);
    }
}

static void fuzz_init(void)
{
    FUZZ_CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK);
    srv_init();
    int fd = memfd_create("fuzz-response", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, config_text, sizeof(config_text) - 1) == sizeof(config_text) - 1);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    struct config_errors errs = {0};
    int r = config_load(path, &cfg, &errs);
    for (size_t i = 0; i < errs.n; i++) {
        fprintf(stderr, "fuzz-response: built-in config: %s\n", errs.msgs[i]);
    }
    config_errors_done(&errs);
    close(fd);
    FUZZ_CHECK(r == 0);
    const char *v = getenv("FUZZ_VERBOSE");
    verbose = v && *v && strcmp(v, "0") != 0;
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    const char *reuse = getenv("FUZZ_REUSE_EASY");
    fresh_easy = cv->version_num >= 0x075300 && cv->version_num < 0x080100 &&
                 !(reuse && *reuse && strcmp(reuse, "0") != 0);
    atexit(fuzz_cleanup);
}

static void check_value(const char *v, size_t len)
{
    struct buf m = {0};
    struct json_error je;
    FUZZ_CHECK(json_minify(v, len, JSON_MAX_DEPTH, &m, &je) == 0);
    FUZZ_CHECK(m.len == len && memcmp(m.data, v, len) == 0);
    buf_done(&m);
}

static void check_record(const struct record *rec)
{
    struct buf line = {0};
    FUZZ_CHECK(record_serialize(rec, &line) == 0);
    FUZZ_CHECK(line.len >= 2 && line.data[line.len - 1] == '\n');
    FUZZ_CHECK(memchr(line.data, '\n', line.len - 1) == NULL);
    if (verbose) {
        fputs(line.data, stderr);
    }
    /* valid and minified; "data" may be JSON_MAX_DEPTH deep on its own */
    struct buf m = {0};
    struct json_error je;
    int r = json_minify(line.data, line.len - 1, JSON_MAX_DEPTH + 1, &m, &je);
    if (r != 0) {
        fprintf(stderr, "record line invalid at %zu (%s): %s", je.offset, je.msg, line.data);
    }
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(m.len == line.len - 1 && memcmp(m.data, line.data, m.len) == 0);
    buf_done(&m);
    if (rec->error == REC_OK && rec->data && rec->data_len) {
        check_value(rec->data, rec->data_len);
        FUZZ_CHECK(line.len >= rec->data_len + 2);
        FUZZ_CHECK(memcmp(line.data + line.len - 2 - rec->data_len, rec->data, rec->data_len) == 0);
    }
    if (rec->error != REC_OK) {
        FUZZ_CHECK(rec->message && rec->message[0]);
    }
    buf_done(&line);
}

struct emitted {
    size_t records, errors;
};

/* xfer_emit_fn */
static void fuzz_emit_cb(void *ctx, const struct record *rec)
{
    struct emitted *em = ctx;
    check_record(rec);
    em->records++;
    em->errors += rec->error != REC_OK;
}

/* The next page's URL, as engine_next_page() finds it. */
static char *next_page(const struct endpoint_cfg *ep, size_t doc_len)
{
    const struct endpoint_ext *ext = ep->x;
    if (ext->page_mode == PAGE_LINK) {
        return xfer_link_next(&x);
    }
    if (!doc_len || !ext->page_ptr) {
        return NULL;
    }
    size_t off, len;
    if (jptr_eval(ext->page_ptr, data.data, doc_len, &off, &len, NULL) < 0) {
        return NULL;
    }
    const char *v = data.data + off;
    struct buf val = {0};
    if (v[0] == '"') {
        if (json_unescape(v, len, &val) < 0 || val.len == 0) {
            buf_done(&val);
            return NULL;
        }
    } else if ((v[0] >= '0' && v[0] <= '9') || v[0] == '-') {
        buf_append(&val, v, len);
    } else {
        return NULL;
    }
    char *next = NULL;
    if (val.data) {
        next = ext->page_mode == PAGE_NEXT_URL ? url_resolve(x.url, val.data)
                                               : url_add_query(ep->url, ext->page_param, val.data);
    }
    buf_done(&val);
    return next;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    if (!cfg) {
        fuzz_init();
    }
    if (size < 1) {
        return 0;
    }
    const struct endpoint_cfg *ep = &cfg->endpoints[in[0] % cfg->n_endpoints];
    in++;
    size--;

    srv.reply = in;
    srv.reply_len = size;

    /* a conditional endpoint sends its validators, as after a first 200 */
    struct xfer_req rq = {0};
    if (ep->x->conditional) {
        rq.etag = "\"v1\"";
        rq.last_modified = "Thu, 01 Jan 2026 00:00:00 GMT";
    }
    if (fresh_easy && x.easy) {
        curl_easy_cleanup(x.easy);
        x.easy = NULL;
    }
    FUZZ_CHECK(xfer_setup(&x, ep, &rq, "fetchd-fuzz/1") == 0);
    CURL *c = x.easy;
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, fuzz_opensocket_cb);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, NULL);
    curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, fuzz_prereq_cb);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 0L);  /* not a TCP socket */
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L); /* nothing carries over */
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
    CURLcode res = curl_easy_perform(c);
    if (verbose) {
        fprintf(stderr, "endpoint %s: curl %d (%s)\n", ep->name, (int)res, x.errbuf);
    }

    srv_reset();

    struct record rec;
    char msg[CURL_ERROR_SIZE + 256];
    char *loc = NULL;
    enum xfer_outcome o = xfer_result(&x, res, &rec, msg, sizeof(msg), &loc);
    rec.attempts = 1;
    rec.page = ep->x->page_mode ? 1 : 0;
    if (o == XFER_REDIRECT) {
        /* libcurl resolves Location; for garbage such as "https:\xaf/x" the
         * result need not contain "://": the engine checks its scheme and
         * origin before following (engine_follow) */
        FUZZ_CHECK(loc != NULL);
        (void)url_scheme_of(loc);
        (void)url_same_origin(x.url, loc);
        free(loc);
    } else if (o == XFER_NOT_MODIFIED) {
        FUZZ_CHECK(!loc);
        rec.unchanged = true;
        rec.data = NULL;
        check_record(&rec);
    } else if (rec.error == REC_OK) {
        FUZZ_CHECK(!loc);
        struct emitted em = {0};
        size_t doc_len = 0;
        char pmsg[CURL_ERROR_SIZE + 256];
        size_t errors =
            xfer_parse(&x, &rec, &data, &doc_len, fuzz_emit_cb, &em, pmsg, sizeof(pmsg));
        FUZZ_CHECK(errors == em.errors);
        FUZZ_CHECK(doc_len <= data.len);
        if (ep->x->conditional && rec.http_status == 200) {
            free(xfer_header(&x, "ETag"));
            free(xfer_header(&x, "Last-Modified"));
        }
        if (!em.errors) {
            free(next_page(ep, doc_len));
        }
    } else {
        FUZZ_CHECK(!loc);
        if (rec.http_status == 429 || rec.http_status == 503) {
            int64_t ra = xfer_retry_after(&x);
            FUZZ_CHECK(ra == -1 || ra >= 0);
        }
        check_record(&rec);
    }
    buf_shrink(&data, 1024 * 1024);
    xfer_release(&x);
    return 0;
}
