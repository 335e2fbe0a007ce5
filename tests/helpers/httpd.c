/*
 * httpd.c - small, fast, scriptable HTTP/1.1 server for fetchd's integration
 * tests and benchmarks.
 *
 * Single thread, one libev default loop, non-blocking sockets, HTTP/1.1
 * keep-alive.  What a response looks like is chosen per request by query
 * parameters, so one server instance can serve every test case.
 *
 * Build (standalone):
 *   gcc -std=gnu11 -Wall -Wextra -O2 -o httpd tests/helpers/httpd.c -lev
 *
 * Usage:
 *   httpd [--port N] [--bind ADDR] [--port-file PATH]
 *
 *   --port N          TCP port to listen on (default 0: the kernel picks one).
 *   --bind ADDR       address to listen on (default 127.0.0.1; IPv6 such as
 *                     ::1 works too).
 *   --port-file PATH  also write the port number (followed by a newline) to
 *                     PATH, atomically (written to PATH.tmp.<pid>, renamed).
 *
 *   Once listening it prints exactly "PORT=<n>\n" on stdout and flushes.
 *   (The port is ready for connections by then.)
 *   It runs until SIGTERM or SIGINT, then closes every connection, frees all
 *   memory and exits 0.  SIGPIPE is ignored.  The soft RLIMIT_NOFILE is raised
 *   (up to 65536, within the hard limit) so thousands of clients fit.
 *
 * Requests:
 *   Any method, any path.  The request body is read by Content-Length (at
 *   most 1 MiB, else 413).  A request with Transfer-Encoding gets 411; a
 *   request line + headers larger than 64 KiB gets 431; malformed requests
 *   get 400; HTTP versions other than 1.0 and 1.1 get 505.  These error
 *   responses carry {"error":"..."} and close the connection.
 *   Keep-alive is the default for HTTP/1.1 ("Connection: close" turns it
 *   off) and opt-in for HTTP/1.0 ("Connection: keep-alive").
 *   "Expect: 100-continue" is answered with an interim "100 Continue".
 *   HEAD gets the same headers as GET would, without a body.
 *   Chunked responses (chunked=1, stream=1) are sent as such even to
 *   HTTP/1.0 clients.  If the client closes while a delay= is pending, the
 *   connection is released when the delay expires.
 *   Pipelined requests are answered one after the other.
 *
 * Special path:
 *   /__stats   {"requests":N,"connections":M,"active":K}: requests served
 *              (not counting /__stats itself nor rejected requests),
 *              connections accepted, connections open right now (including
 *              the one asking).  Query parameters are ignored.
 *
 * Query parameters (on any path).  Keys and values are URL-decoded (%XX and
 * '+').  Unknown parameters are ignored; a bad value for a known parameter
 * gets 400.  Flags (chunked, drip's siblings...) are on for any value except
 * "0", "false", "no" and "off", so a bare "hang" works too.
 *
 *   status=N       response status, 100..999 (default 200), with a reason
 *                  phrase for common codes ("Unknown" otherwise).  1xx, 204
 *                  and 304 responses have no body and no Content-Length.
 *   delay=MS       wait MS milliseconds before sending anything (applies to
 *                  every mode but hang; with close=1 the close is delayed).
 *   size=N         with body=json (the default) and N >= 16, the body is
 *                  {"pad":"xxx..."} of exactly N bytes (N <= 256 MiB);
 *                  for N < 16 the default json body is sent.
 *   body=KIND      json     (default) {"path":"<path without query>","ok":true,
 *                           "n":<request counter>,"items":[1,2,3],
 *                           "nested":{"a":"b"}}
 *                  invalid  {"a":1,
 *                  garbage  {"a":1} trailing
 *                  empty    zero-length body (Content-Length: 0)
 *                  html     <html><body>error</body></html> (text/html)
 *                  deep     '[' x 5000 followed by ']' x 5000
 *                  badutf8  {"s":"<raw bytes 0xff 0xfe>"}
 *                  array    [{"id":1},{"id":2},{"id":3}]
 *                  scalar   42
 *                  bignum   {"id":12345678901234567890123,"f":1e400}
 *                  echo     {"method":..,"path":..,"query":..,"headers":
 *                           {"<name as received>":"<value>",...},
 *                           "body":"<request body>"}; path and query are
 *                           raw (not decoded), query is "" when absent,
 *                           repeated headers repeat their key, strings are
 *                           JSON-escaped and invalid UTF-8 bytes become
 *                           \ufffd so the result is always valid JSON.
 *   ctype=TYPE     Content-Type (default application/json, text/html for
 *                  body=html).  An empty value omits the header.
 *   chunked=1      send the body with Transfer-Encoding: chunked, in chunks
 *                  of at most 1000 bytes.
 *   drip=MS        send the body (with Content-Length) one byte every MS ms.
 *   reset=1        send status line, headers with a Content-Length larger
 *                  than what is sent and half the body, wait until the
 *                  client has received (ACKed) that, then reset the
 *                  connection (SO_LINGER {1,0} + close).
 *   short=1        Content-Length is body length + 100; the body is sent,
 *                  then the connection is closed normally.
 *   close=1        close the connection right after reading the request,
 *                  sending nothing.
 *   hang=1         read the request and never answer; the connection stays
 *                  open until the client goes away.
 *   stream=1       chunked response that never ends: a "[" chunk, then
 *                  16 KiB chunks of "0,0,0,...", refilled only when the
 *                  previous data has been handed to the kernel.
 *   badstatus=1    reply "garbage\r\n\r\n" and close.
 *   header=N:V     add the response header "N: V" (may repeat; the name must
 *                  be an HTTP token, the value must not contain CR/LF).
 *   bigheader=N    add a response header "X-Big:" with N bytes of 'a'
 *                  (N <= 64 MiB).
 *
 *   When several modes are given, the first in this list wins:
 *     badstatus, close, hang, stream, reset, short, drip, chunked.
 *   status, delay, body, size, ctype, header and bigheader combine with all
 *   modes that send a response.  Responses always carry Content-Length
 *   unless chunked/stream (or bodiless per status), and Content-Type unless
 *   ctype= is empty.  Responses with reset/short/badstatus close the
 *   connection and say "Connection: close".
 */
#define _GNU_SOURCE

#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <limits.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_HEAD_BYTES (64 * 1024)            /* request line + headers */
#define MAX_REQ_BODY (1024 * 1024)            /* request body */
#define IN_LIMIT (MAX_HEAD_BYTES + 16 * 1024) /* input buffer cap */
#define IN_MIN_READ 4096                      /* free space wanted per read() */
#define MAX_SIZE_PARAM (256ULL * 1024 * 1024) /* size= */
#define MAX_BIGHEADER (64ULL * 1024 * 1024)   /* bigheader= */
#define MAX_MS (24ULL * 3600 * 1000)          /* delay= and drip= */
#define CHUNK_MAX 1000                        /* chunked=1 chunk size */
#define STREAM_CHUNK (16 * 1024)              /* stream=1 chunk size */
#define STREAM_REFILLS 8                      /* stream chunks per wakeup */
#define LISTEN_BACKLOG 4096
#define ACCEPT_RETRY_SEC 0.1     /* pause accepting after EMFILE */
#define LINGER_SEC 2.0           /* drain time after an error response */
#define RESET_POLL_SEC 0.005     /* reset=1: poll for ACKed data */
#define OUT_KEEP_CAP (64 * 1024) /* larger buffers are freed when idle */
#define SCRATCH_KEEP_CAP (1024 * 1024)
#define FD_LIMIT_WANTED 65536

/* Growable byte buffer; aborts on out-of-memory (this is a test tool). */
struct sbuf {
    char *data;
    size_t len;
    size_t cap;
};

/* What a connection is doing right now. */
enum conn_state {
    ST_READ_HEAD,  /* waiting for request line + headers */
    ST_READ_BODY,  /* reading a Content-Length request body */
    ST_DELAY,      /* response built, waiting for delay= to expire */
    ST_SEND,       /* writing a complete response */
    ST_DRIP,       /* writing the body one byte per timer tick */
    ST_STREAM,     /* writing an endless chunked response */
    ST_HANG,       /* never answering */
    ST_RESET_WAIT, /* partial response written, waiting for the ACK */
    ST_LINGER,     /* error sent, write side shut, draining input */
};

/* How the response that was built is delivered. */
enum resp_mode {
    MODE_SEND,   /* out holds the whole response */
    MODE_DRIP,   /* out holds the head, pending holds the body */
    MODE_STREAM, /* out holds the head, chunks are generated forever */
    MODE_RESET,  /* out holds a partial response, then RST */
    MODE_CLOSE,  /* close without sending anything */
    MODE_HANG,   /* send nothing, keep the connection */
    MODE_ERROR,  /* out holds an error response, then lingering close */
};

/* Response body kinds selectable with body=. */
enum body_kind {
    BODY_JSON,
    BODY_INVALID,
    BODY_GARBAGE,
    BODY_EMPTY,
    BODY_HTML,
    BODY_DEEP,
    BODY_BADUTF8,
    BODY_ARRAY,
    BODY_SCALAR,
    BODY_BIGNUM,
    BODY_ECHO,
};

/* body= values. */
static const struct {
    const char *name;
    enum body_kind kind;
} body_kinds[] = {
    {"json", BODY_JSON},     {"invalid", BODY_INVALID}, {"garbage", BODY_GARBAGE},
    {"empty", BODY_EMPTY},   {"html", BODY_HTML},       {"deep", BODY_DEEP},
    {"badutf8", BODY_BADUTF8}, {"array", BODY_ARRAY},   {"scalar", BODY_SCALAR},
    {"bignum", BODY_BIGNUM}, {"echo", BODY_ECHO},
};

/*
 * The request being read.  method/path/query/headers point into the
 * connection's input buffer and are only valid until the response has been
 * built (the buffer is not reallocated in between: while a body is read
 * it goes to body_buf).
 */
struct request {
    const char *method;
    size_t method_len;
    const char *path; /* without query */
    size_t path_len;
    const char *query; /* NULL when the target has no '?' */
    size_t query_len;
    const char *headers; /* header lines, each ending in CRLF */
    size_t headers_len;
    size_t head_len;   /* bytes of request line + headers + final CRLF */
    size_t body_len;   /* Content-Length */
    size_t body_got;   /* bytes of body_buf filled so far */
    char *body_buf;    /* body storage when it did not fit in the input */
    bool http10;
    bool is_head;
    bool expect_continue;
};

/* Response options parsed from the query string. */
struct plan {
    int status;
    unsigned long long delay_ms;
    unsigned long long drip_ms;
    unsigned long long size;
    unsigned long long bigheader;
    enum body_kind kind;
    bool chunked;
    bool reset;
    bool short_body;
    bool close_now;
    bool hang;
    bool stream;
    bool badstatus;
    char *ctype;       /* NULL: default Content-Type */
    struct sbuf extra; /* header=... lines, "Name: value\r\n" each */
    char err[96];      /* message for a 400 */
};

struct server;

/* One client connection. */
struct conn {
    struct server *srv;
    struct conn *prev;
    struct conn *next;
    int fd;
    ev_io rio;
    ev_io wio;
    ev_timer timer; /* delay, drip, reset poll, linger */
    enum conn_state state;
    enum resp_mode mode;
    bool keep_alive; /* may the connection be reused after this response */
    bool peer_eof;   /* the client shut down its sending side */
    struct sbuf in;  /* received, not yet consumed bytes */
    size_t scanned;  /* bytes of in already searched for the end of head */
    struct sbuf out; /* bytes to send */
    size_t out_off;  /* bytes of out already sent */
    struct sbuf pending; /* drip=: body still to be dripped */
    size_t pending_off;
    double drip_sec;
    struct request req;
};

/* The whole server. */
struct server {
    struct ev_loop *loop;
    int listen_fd;
    ev_io accept_io;
    ev_timer accept_retry;
    ev_signal sigterm;
    ev_signal sigint;
    struct conn *conns; /* list of open connections */
    unsigned long long requests;
    unsigned long long connections;
    unsigned long long active;
    bool emfile_warned;
    struct sbuf scratch;      /* response body under construction */
    struct sbuf stream_chunk; /* one ready-made stream=1 chunk */
};


/* ------------------------------------------------------------------------ */
/* Memory and buffers                                                        */
/* ------------------------------------------------------------------------ */

/* realloc that never fails (aborts instead). */
static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "httpd: out of memory\n");
        abort();
    }
    return q;
}

/* Make room for at least extra more bytes. */
static void sbuf_reserve(struct sbuf *b, size_t extra)
{
    if (b->cap - b->len >= extra) {
        return;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        cap *= 2;
    }
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

static void sbuf_append(struct sbuf *b, const void *p, size_t n)
{
    if (n == 0) {
        return;
    }
    sbuf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void sbuf_puts(struct sbuf *b, const char *s)
{
    sbuf_append(b, s, strlen(s));
}

/* Append n copies of the byte ch. */
static void sbuf_fill(struct sbuf *b, char ch, size_t n)
{
    sbuf_reserve(b, n);
    memset(b->data + b->len, ch, n);
    b->len += n;
}

/* printf-style append. */
__attribute__((format(printf, 2, 3))) static void sbuf_printf(struct sbuf *b, const char *fmt,
                                                               ...)
{
    va_list ap;
    sbuf_reserve(b, 128);
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n >= b->cap - b->len) {
        sbuf_reserve(b, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

static void sbuf_free(struct sbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* ------------------------------------------------------------------------ */
/* Small parsing and encoding helpers                                        */
/* ------------------------------------------------------------------------ */

/*
 * Length of the valid UTF-8 sequence (2..4 bytes) starting at s, or 0 if the
 * bytes there are not valid UTF-8 (overlongs and surrogates are invalid).
 */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    size_t len;

    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        if (s[0] == 0xE0) {
            lo = 0xA0;
        } else if (s[0] == 0xED) {
            hi = 0x9F;
        }
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        if (s[0] == 0xF0) {
            lo = 0x90;
        } else if (s[0] == 0xF4) {
            hi = 0x8F;
        }
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return len;
}

/*
 * Append str (n bytes) as a quoted JSON string.  Quotes, backslashes and
 * control characters are escaped; invalid UTF-8 bytes become \ufffd.
 */
static void json_string(struct sbuf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    sbuf_reserve(b, n + 2);
    sbuf_append(b, "\"", 1);
    while (i < n) {
        size_t run = i;
        while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\') {
            run++;
        }
        sbuf_append(b, s + i, run - i);
        i = run;
        if (i >= n) {
            break;
        }
        unsigned char ch = s[i];
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            sbuf_append(b, esc, 2);
            i++;
        } else if (ch < 0x20) {
            switch (ch) {
            case '\n':
                sbuf_puts(b, "\\n");
                break;
            case '\r':
                sbuf_puts(b, "\\r");
                break;
            case '\t':
                sbuf_puts(b, "\\t");
                break;
            case '\b':
                sbuf_puts(b, "\\b");
                break;
            case '\f':
                sbuf_puts(b, "\\f");
                break;
            default:
                sbuf_printf(b, "\\u%04x", ch);
                break;
            }
            i++;
        } else {
            size_t len = utf8_seq_len(s + i, n - i);
            if (len) {
                sbuf_append(b, s + i, len);
                i += len;
            } else {
                sbuf_puts(b, "\\ufffd");
                i++;
            }
        }
    }
    sbuf_append(b, "\"", 1);
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

/*
 * URL-decode n bytes at s ("%XX" and '+'); malformed escapes are kept
 * literally.  Returns a malloc'ed NUL-terminated string, its length (which
 * may include decoded NUL bytes) in *out_len.
 */
static char *url_decode(const char *s, size_t n, size_t *out_len)
{
    char *out = xrealloc(NULL, n + 1);
    size_t j = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[j++] = ' ';
        } else if (s[i] == '%' && i + 2 < n && hex_value(s[i + 1]) >= 0 &&
                   hex_value(s[i + 2]) >= 0) {
            out[j++] = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    *out_len = j;
    return out;
}

/* Parse a plain decimal number (digits only, no sign) no larger than max. */
static bool parse_number(const char *s, size_t n, unsigned long long max, unsigned long long *out)
{
    unsigned long long v = 0;

    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        unsigned long long d = (unsigned long long)(s[i] - '0');
        if (v > (max - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Number of leading decimal digits in s (n bytes). */
static size_t count_digits(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
    }
    return i;
}

/* A flag is on unless its value is 0, false, no or off. */
static bool parse_flag(const char *v)
{
    return !(strcmp(v, "0") == 0 || strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0 ||
             strcasecmp(v, "off") == 0);
}

/* RFC 9110 token character. */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
        return true;
    }
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool is_token(const char *s, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_tchar((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* Does the comma-separated header value v contain tok (case-insensitive)? */
static bool has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;

    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
            i++;
        }
        size_t start = i;
        while (i < n && v[i] != ',') {
            i++;
        }
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) {
            end--;
        }
        if (end - start == tl && strncasecmp(v + start, tok, tl) == 0) {
            return true;
        }
    }
    return false;
}

static bool name_is(const char *name, size_t n, const char *want)
{
    return n == strlen(want) && strncasecmp(name, want, n) == 0;
}

/* Reason phrases for common status codes. */
static const struct {
    int status;
    const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {418, "I'm a teapot"},
    {422, "Unprocessable Content"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

static const char *reason_phrase(int status)
{
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        if (reasons[i].status == status) {
            return reasons[i].reason;
        }
    }
    return "Unknown";
}

/* ------------------------------------------------------------------------ */
/* Request parsing                                                           */
/* ------------------------------------------------------------------------ */

/*
 * Split off the header line starting at *pos; the block of header lines
 * ends at lim and every line ends in CRLF.  Returns 1 and fills name/value
 * (value without surrounding whitespace), 0 at the end of the block, -1 if
 * the line is malformed.
 */
static int next_header(const char **pos, const char *lim, const char **name, size_t *name_len,
                       const char **value, size_t *value_len)
{
    const char *p = *pos;

    if (!p || p >= lim) {
        return 0;
    }
    const char *eol = memmem(p, (size_t)(lim - p), "\r\n", 2);
    if (!eol) {
        return -1;
    }
    *pos = eol + 2;
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (!colon || !is_token(p, (size_t)(colon - p))) {
        return -1; /* also rejects obsolete line folding */
    }
    const char *v = colon + 1;
    const char *ve = eol;
    while (v < ve && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
        ve--;
    }
    for (const char *q = v; q < ve; q++) {
        unsigned char ch = (unsigned char)*q;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            return -1;
        }
    }
    *name = p;
    *name_len = (size_t)(colon - p);
    *value = v;
    *value_len = (size_t)(ve - v);
    return 1;
}

/* Parse "METHOD SP target SP HTTP/x.y" into r; returns 0 or an HTTP status. */
static int parse_request_line(struct request *r, const char *p, const char *eol)
{
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    if (!sp1 || !is_token(p, (size_t)(sp1 - p))) {
        return 400;
    }
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(eol - target));
    if (!sp2 || sp2 == target) {
        return 400;
    }
    for (const char *q = target; q < sp2; q++) {
        unsigned char ch = (unsigned char)*q;
        if (ch <= 0x20 || ch == 0x7f) {
            return 400;
        }
    }
    const char *ver = sp2 + 1;
    if (eol - ver != 8 || memcmp(ver, "HTTP/", 5) != 0 || ver[5] < '0' || ver[5] > '9' ||
        ver[6] != '.' || ver[7] < '0' || ver[7] > '9') {
        return 400;
    }
    if (ver[5] != '1' || (ver[7] != '0' && ver[7] != '1')) {
        return 505;
    }
    r->http10 = ver[7] == '0';
    r->method = p;
    r->method_len = (size_t)(sp1 - p);
    r->is_head = name_is(p, r->method_len, "HEAD");

    /* absolute-form ("http://host/path"): keep only the path */
    size_t tlen = (size_t)(sp2 - target);
    if ((tlen > 7 && strncasecmp(target, "http://", 7) == 0) ||
        (tlen > 8 && strncasecmp(target, "https://", 8) == 0)) {
        const char *auth = memchr(target, '/', tlen) + 2;
        const char *slash = memchr(auth, '/', (size_t)(sp2 - auth));
        target = slash ? slash : sp2;
    } else if (*target != '/') {
        return 400;
    }
    const char *qm = memchr(target, '?', (size_t)(sp2 - target));
    r->path = target == sp2 ? "/" : target;
    r->path_len = target == sp2 ? 1 : (size_t)((qm ? qm : sp2) - target);
    if (qm) {
        r->query = qm + 1;
        r->query_len = (size_t)(sp2 - qm - 1);
    }
    return 0;
}

/*
 * Try to parse the request head at the start of c->in.  Returns 1 when a
 * complete head was parsed (c->req and c->keep_alive filled in), 0 when more
 * bytes are needed, or an HTTP error status for a bad request.
 */
static int parse_head(struct conn *c)
{
    struct request *r = &c->req;
    size_t from = c->scanned > 3 ? c->scanned - 3 : 0;
    const char *end = memmem(c->in.data + from, c->in.len - from, "\r\n\r\n", 4);

    if (!end) {
        c->scanned = c->in.len;
        return c->in.len > MAX_HEAD_BYTES ? 431 : 0;
    }
    size_t head_len = (size_t)(end - c->in.data) + 4;
    if (head_len > MAX_HEAD_BYTES) {
        return 431;
    }

    memset(r, 0, sizeof *r);
    r->head_len = head_len;
    const char *p = c->in.data;
    const char *lim = c->in.data + head_len - 2; /* the final empty line */
    const char *eol = memmem(p, head_len, "\r\n", 2);
    int status = parse_request_line(r, p, eol);
    if (status) {
        return status;
    }
    r->headers = eol + 2;
    r->headers_len = (size_t)(lim - r->headers);

    bool have_length = false;
    bool want_close = false;
    bool want_keep = false;
    const char *pos = r->headers;
    const char *name;
    const char *value;
    size_t nlen;
    size_t vlen;
    int rc;
    while ((rc = next_header(&pos, lim, &name, &nlen, &value, &vlen)) > 0) {
        if (name_is(name, nlen, "Content-Length")) {
            unsigned long long len;
            if (vlen == 0 || vlen != count_digits(value, vlen)) {
                return 400;
            }
            if (!parse_number(value, vlen, MAX_REQ_BODY, &len)) {
                return 413;
            }
            if (have_length && len != r->body_len) {
                return 400;
            }
            have_length = true;
            r->body_len = (size_t)len;
        } else if (name_is(name, nlen, "Transfer-Encoding")) {
            return 411;
        } else if (name_is(name, nlen, "Connection")) {
            want_close = want_close || has_token(value, vlen, "close");
            want_keep = want_keep || has_token(value, vlen, "keep-alive");
        } else if (name_is(name, nlen, "Expect")) {
            r->expect_continue = has_token(value, vlen, "100-continue");
        }
    }
    if (rc < 0) {
        return 400;
    }
    c->keep_alive = r->http10 ? (want_keep && !want_close) : !want_close;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Query parameters                                                          */
/* ------------------------------------------------------------------------ */

static void plan_init(struct plan *p)
{
    memset(p, 0, sizeof *p);
    p->status = 200;
    p->kind = BODY_JSON;
}

static void plan_free(struct plan *p)
{
    free(p->ctype);
    sbuf_free(&p->extra);
}

/* Record a bad-value error for query parameter key; returns false. */
static bool plan_error(struct plan *p, const char *key)
{
    snprintf(p->err, sizeof p->err, "bad value for query parameter %s", key);
    return false;
}

/* Is v (n bytes) safe inside a response header value? */
static bool header_value_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            return false;
        }
    }
    return true;
}

/* Apply one decoded key=value pair to the plan; false (with p->err) on a bad value. */
static bool apply_param(struct plan *p, const char *key, const char *val, size_t vlen)
{
    unsigned long long v;

    if (strcmp(key, "status") == 0) {
        if (!parse_number(val, vlen, 999, &v) || v < 100) {
            return plan_error(p, key);
        }
        p->status = (int)v;
    } else if (strcmp(key, "delay") == 0) {
        if (!parse_number(val, vlen, MAX_MS, &p->delay_ms)) {
            return plan_error(p, key);
        }
    } else if (strcmp(key, "drip") == 0) {
        if (!parse_number(val, vlen, MAX_MS, &p->drip_ms)) {
            return plan_error(p, key);
        }
    } else if (strcmp(key, "size") == 0) {
        if (!parse_number(val, vlen, MAX_SIZE_PARAM, &p->size)) {
            return plan_error(p, key);
        }
    } else if (strcmp(key, "bigheader") == 0) {
        if (!parse_number(val, vlen, MAX_BIGHEADER, &p->bigheader)) {
            return plan_error(p, key);
        }
    } else if (strcmp(key, "body") == 0) {
        size_t i;
        for (i = 0; i < sizeof body_kinds / sizeof body_kinds[0]; i++) {
            if (strcmp(val, body_kinds[i].name) == 0) {
                break;
            }
        }
        if (i == sizeof body_kinds / sizeof body_kinds[0]) {
            return plan_error(p, key);
        }
        p->kind = body_kinds[i].kind;
    } else if (strcmp(key, "ctype") == 0) {
        if (!header_value_ok(val, vlen)) {
            return plan_error(p, key);
        }
        free(p->ctype);
        p->ctype = strdup(val);
        if (!p->ctype) {
            abort();
        }
    } else if (strcmp(key, "header") == 0) {
        const char *colon = memchr(val, ':', vlen);
        if (!colon || !is_token(val, (size_t)(colon - val))) {
            return plan_error(p, key);
        }
        const char *hv = colon + 1;
        while (*hv == ' ' || *hv == '\t') {
            hv++;
        }
        size_t hvlen = vlen - (size_t)(hv - val);
        if (!header_value_ok(hv, hvlen)) {
            return plan_error(p, key);
        }
        sbuf_append(&p->extra, val, (size_t)(colon - val));
        sbuf_puts(&p->extra, ": ");
        sbuf_append(&p->extra, hv, hvlen);
        sbuf_puts(&p->extra, "\r\n");
    } else if (strcmp(key, "chunked") == 0) {
        p->chunked = parse_flag(val);
    } else if (strcmp(key, "reset") == 0) {
        p->reset = parse_flag(val);
    } else if (strcmp(key, "short") == 0) {
        p->short_body = parse_flag(val);
    } else if (strcmp(key, "close") == 0) {
        p->close_now = parse_flag(val);
    } else if (strcmp(key, "hang") == 0) {
        p->hang = parse_flag(val);
    } else if (strcmp(key, "stream") == 0) {
        p->stream = parse_flag(val);
    } else if (strcmp(key, "badstatus") == 0) {
        p->badstatus = parse_flag(val);
    }
    /* anything else is ignored */
    return true;
}

/* Parse the raw query string (may be NULL) into p; false on a bad value. */
static bool parse_query(struct plan *p, const char *q, size_t n)
{
    const char *end = q + n;
    bool ok = true;

    if (!q) {
        return true;
    }
    while (ok && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        if (!amp) {
            amp = end;
        }
        const char *eq = memchr(q, '=', (size_t)(amp - q));
        const char *kend = eq ? eq : amp;
        const char *vstart = eq ? eq + 1 : amp;
        if (kend > q) {
            size_t klen;
            size_t vlen;
            char *key = url_decode(q, (size_t)(kend - q), &klen);
            char *val = url_decode(vstart, (size_t)(amp - vstart), &vlen);
            ok = apply_param(p, key, val, vlen);
            free(key);
            free(val);
        }
        q = amp + 1;
    }
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Response building                                                         */
/* ------------------------------------------------------------------------ */

/* Append the body=echo document describing request r (body: its body). */
static void build_echo(struct sbuf *b, const struct request *r, const char *body)
{
    const char *pos = r->headers;
    const char *lim = r->headers + r->headers_len;
    const char *name;
    const char *value;
    size_t nlen;
    size_t vlen;
    bool first = true;

    sbuf_puts(b, "{\"method\":");
    json_string(b, r->method, r->method_len);
    sbuf_puts(b, ",\"path\":");
    json_string(b, r->path, r->path_len);
    sbuf_puts(b, ",\"query\":");
    json_string(b, r->query ? r->query : "", r->query_len);
    sbuf_puts(b, ",\"headers\":{");
    while (next_header(&pos, lim, &name, &nlen, &value, &vlen) > 0) {
        if (!first) {
            sbuf_puts(b, ",");
        }
        first = false;
        json_string(b, name, nlen);
        sbuf_puts(b, ":");
        json_string(b, value, vlen);
    }
    sbuf_puts(b, "},\"body\":");
    json_string(b, body, r->body_len);
    sbuf_puts(b, "}");
}

/* Append the response body selected by the plan; n is the request counter. */
static void build_body(struct sbuf *b, const struct plan *p, const struct request *r,
                       const char *req_body, unsigned long long n)
{
    switch (p->kind) {
    case BODY_JSON:
        if (p->size >= 16) {
            sbuf_puts(b, "{\"pad\":\"");
            sbuf_fill(b, 'x', (size_t)p->size - 10);
            sbuf_puts(b, "\"}");
        } else {
            sbuf_puts(b, "{\"path\":");
            json_string(b, r->path, r->path_len);
            sbuf_printf(b, ",\"ok\":true,\"n\":%llu,\"items\":[1,2,3],\"nested\":{\"a\":\"b\"}}",
                        n);
        }
        break;
    case BODY_INVALID:
        sbuf_puts(b, "{\"a\":1,");
        break;
    case BODY_GARBAGE:
        sbuf_puts(b, "{\"a\":1} trailing");
        break;
    case BODY_EMPTY:
        break;
    case BODY_HTML:
        sbuf_puts(b, "<html><body>error</body></html>");
        break;
    case BODY_DEEP:
        sbuf_fill(b, '[', 5000);
        sbuf_fill(b, ']', 5000);
        break;
    case BODY_BADUTF8:
        sbuf_puts(b, "{\"s\":\"\xff\xfe\"}");
        break;
    case BODY_ARRAY:
        sbuf_puts(b, "[{\"id\":1},{\"id\":2},{\"id\":3}]");
        break;
    case BODY_SCALAR:
        sbuf_puts(b, "42");
        break;
    case BODY_BIGNUM:
        sbuf_puts(b, "{\"id\":12345678901234567890123,\"f\":1e400}");
        break;
    case BODY_ECHO:
        build_echo(b, r, req_body);
        break;
    }
}

/* Append data as chunked transfer coding (chunks <= CHUNK_MAX) plus the last chunk. */
static void append_chunked(struct sbuf *out, const char *data, size_t n)
{
    for (size_t off = 0; off < n; off += CHUNK_MAX) {
        size_t len = n - off < CHUNK_MAX ? n - off : CHUNK_MAX;
        sbuf_printf(out, "%zx\r\n", len);
        sbuf_append(out, data + off, len);
        sbuf_puts(out, "\r\n");
    }
    sbuf_puts(out, "0\r\n\r\n");
}

/* Append the Connection header matching c->keep_alive and the HTTP version. */
static void append_connection(struct conn *c)
{
    if (!c->keep_alive) {
        sbuf_puts(&c->out, "Connection: close\r\n");
    } else if (c->req.http10) {
        sbuf_puts(&c->out, "Connection: keep-alive\r\n");
    }
}

/*
 * Build the response described by the plan into c->out (and c->pending
 * for drip) and set c->mode / c->keep_alive accordingly.  n is the request
 * counter reported by body=json.
 */
static void build_response(struct conn *c, const struct plan *p, const char *req_body,
                           unsigned long long n)
{
    struct request *r = &c->req;
    struct sbuf *body = &c->srv->scratch;
    bool bodiless = p->status < 200 || p->status == 204 || p->status == 304;
    bool send_body = !bodiless && !r->is_head;
    bool chunked = false;

    if (p->badstatus) {
        sbuf_puts(&c->out, "garbage\r\n\r\n");
        c->mode = MODE_SEND;
        c->keep_alive = false;
        return;
    }
    if (p->close_now) {
        c->mode = MODE_CLOSE;
        return;
    }
    if (p->hang) {
        c->mode = MODE_HANG;
        return;
    }

    body->len = 0;
    if (!bodiless && !p->stream) {
        build_body(body, p, r, req_body, n);
    }

    if (p->stream) {
        c->mode = send_body ? MODE_STREAM : MODE_SEND;
        chunked = true;
    } else if (p->reset) {
        c->mode = MODE_RESET;
        c->keep_alive = false;
    } else if (p->short_body) {
        c->mode = MODE_SEND;
        c->keep_alive = false;
    } else if (p->drip_ms > 0) {
        c->mode = MODE_DRIP;
        c->drip_sec = (double)p->drip_ms / 1000.0;
    } else {
        c->mode = MODE_SEND;
        chunked = p->chunked;
    }

    /* head */
    sbuf_printf(&c->out, "HTTP/1.1 %d %s\r\n", p->status, reason_phrase(p->status));
    const char *ctype = p->ctype ? p->ctype
                                 : (p->kind == BODY_HTML ? "text/html" : "application/json");
    if (*ctype) {
        sbuf_printf(&c->out, "Content-Type: %s\r\n", ctype);
    }
    if (!bodiless) {
        if (chunked) {
            sbuf_puts(&c->out, "Transfer-Encoding: chunked\r\n");
        } else if (c->mode == MODE_RESET) {
            /* must exceed the half that is actually sent, even for empty bodies */
            sbuf_printf(&c->out, "Content-Length: %zu\r\n", body->len ? body->len : 1);
        } else if (p->short_body) {
            sbuf_printf(&c->out, "Content-Length: %zu\r\n", body->len + 100);
        } else {
            sbuf_printf(&c->out, "Content-Length: %zu\r\n", body->len);
        }
    }
    append_connection(c);
    if (p->bigheader > 0) {
        sbuf_puts(&c->out, "X-Big: ");
        sbuf_fill(&c->out, 'a', (size_t)p->bigheader);
        sbuf_puts(&c->out, "\r\n");
    }
    sbuf_append(&c->out, p->extra.data, p->extra.len);
    sbuf_puts(&c->out, "\r\n");

    /* body */
    if (send_body) {
        switch (c->mode) {
        case MODE_STREAM:
            sbuf_puts(&c->out, "1\r\n[\r\n");
            break;
        case MODE_RESET:
            sbuf_append(&c->out, body->data, body->len / 2);
            break;
        case MODE_DRIP: {
            struct sbuf tmp = c->pending; /* hand the body over without copying */
            c->pending = *body;
            *body = tmp;
            c->pending_off = 0;
            break;
        }
        default:
            if (chunked) {
                append_chunked(&c->out, body->data, body->len);
            } else {
                sbuf_append(&c->out, body->data, body->len);
            }
            break;
        }
    }
    if (body->cap > SCRATCH_KEEP_CAP) {
        sbuf_free(body);
    }
}

/* Build the /__stats response. */
static void build_stats(struct conn *c)
{
    struct server *s = c->srv;
    char body[160];
    int n = snprintf(body, sizeof body, "{\"requests\":%llu,\"connections\":%llu,\"active\":%llu}",
                     s->requests, s->connections, s->active);

    sbuf_printf(&c->out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", n);
    append_connection(c);
    sbuf_puts(&c->out, "\r\n");
    if (!c->req.is_head) {
        sbuf_append(&c->out, body, (size_t)n);
    }
    c->mode = MODE_SEND;
}

/* ------------------------------------------------------------------------ */
/* Connection state machine                                                  */
/* ------------------------------------------------------------------------ */

/* Stop all watchers, close the socket, free everything about c. */
static void conn_close(struct conn *c)
{
    struct server *s = c->srv;

    ev_io_stop(s->loop, &c->rio);
    ev_io_stop(s->loop, &c->wio);
    ev_timer_stop(s->loop, &c->timer);
    close(c->fd);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    s->active--;
    sbuf_free(&c->in);
    sbuf_free(&c->out);
    sbuf_free(&c->pending);
    free(c->req.body_buf);
    free(c);
}

/* Abort the connection with a TCP RST. */
static void conn_reset(struct conn *c)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    conn_close(c);
}

/* (Re)arm c->timer; a repeat of 0 makes it one-shot. */
static void conn_timer_arm(struct conn *c, double after, double repeat)
{
    ev_timer_stop(c->srv->loop, &c->timer);
    ev_timer_set(&c->timer, after, repeat);
    ev_timer_start(c->srv->loop, &c->timer);
}

/*
 * reset=1: once everything written has been ACKed by the client (so it
 * really received the partial response), reset the connection; until then
 * poll with the timer.  If the connection is no longer established (the
 * client went away) there is nothing to wait for.  Returns false if the
 * connection was closed.
 */
static bool reset_check(struct conn *c)
{
    struct tcp_info ti;
    socklen_t tilen = sizeof ti;
    int unacked = 0;

    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &tilen) < 0 ||
        (ti.tcpi_state != TCP_ESTABLISHED && ti.tcpi_state != TCP_CLOSE_WAIT) ||
        ioctl(c->fd, SIOCOUTQ, &unacked) < 0 || unacked <= 0) {
        conn_reset(c);
        return false;
    }
    if (!ev_is_active(&c->timer)) {
        conn_timer_arm(c, RESET_POLL_SEC, RESET_POLL_SEC);
    }
    return true;
}

/*
 * After an error response: shut down our side and discard input until the
 * client closes (or LINGER_SEC passes), so that the client reads the error
 * instead of getting a RST for unread data.  Returns false if closed.
 */
static bool begin_linger(struct conn *c)
{
    if (c->peer_eof) {
        conn_close(c);
        return false;
    }
    shutdown(c->fd, SHUT_WR);
    c->state = ST_LINGER;
    c->in.len = 0;
    ev_io_start(c->srv->loop, &c->rio);
    conn_timer_arm(c, LINGER_SEC, 0.);
    return true;
}

/*
 * Get ready for the next request on a kept-alive connection.  Bytes the
 * client already sent are processed on the next loop iteration (fed event)
 * so that pipelined requests do not recurse.
 */
static bool next_request(struct conn *c)
{
    struct ev_loop *loop = c->srv->loop;

    c->state = ST_READ_HEAD;
    c->mode = MODE_SEND;
    ev_timer_stop(loop, &c->timer);
    sbuf_free(&c->pending);
    c->pending_off = 0;
    if (c->out.cap > OUT_KEEP_CAP) {
        sbuf_free(&c->out);
    }
    ev_io_start(loop, &c->rio);
    if (c->in.len > 0) {
        ev_feed_event(loop, &c->rio, EV_READ);
    }
    return true;
}

/* The whole response has been written.  Returns false if c was closed. */
static bool response_done(struct conn *c)
{
    if (c->mode == MODE_RESET) {
        c->state = ST_RESET_WAIT;
        return reset_check(c);
    }
    if (c->mode == MODE_ERROR) {
        return begin_linger(c);
    }
    if (!c->keep_alive || c->peer_eof) {
        conn_close(c);
        return false;
    }
    return next_request(c);
}

/* Everything in c->out has been handed to the kernel. */
static bool output_drained(struct conn *c)
{
    switch (c->state) {
    case ST_SEND:
        return response_done(c);
    case ST_DRIP:
        if (c->pending_off >= c->pending.len) {
            return response_done(c);
        }
        return true;
    default:
        return true;
    }
}

/*
 * Write as much of c->out as the socket takes; wait for EV_WRITE if it is
 * full.  A stream=1 response is refilled (one chunk at a time, a few per
 * wakeup) only when the buffer has drained, so memory stays bounded.
 * Returns false if the connection was closed.
 */
static bool conn_flush(struct conn *c)
{
    struct ev_loop *loop = c->srv->loop;
    int refills = 0;

    for (;;) {
        while (c->out_off < c->out.len) {
            ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
                             MSG_NOSIGNAL);
            if (n > 0) {
                c->out_off += (size_t)n;
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                ev_io_start(loop, &c->wio);
                return true;
            } else {
                conn_close(c);
                return false;
            }
        }
        c->out.len = 0;
        c->out_off = 0;
        if (c->state != ST_STREAM) {
            break;
        }
        if (refills == STREAM_REFILLS) {
            ev_io_start(loop, &c->wio); /* give other connections a turn */
            return true;
        }
        sbuf_append(&c->out, c->srv->stream_chunk.data, c->srv->stream_chunk.len);
        refills++;
    }
    ev_io_stop(loop, &c->wio);
    return output_drained(c);
}

/* Start delivering the response built earlier (after any delay). */
static bool start_response(struct conn *c)
{
    switch (c->mode) {
    case MODE_CLOSE:
        conn_close(c);
        return false;
    case MODE_HANG:
        c->state = ST_HANG;
        return true;
    case MODE_DRIP:
        c->state = ST_DRIP;
        if (c->pending.len > 0) {
            conn_timer_arm(c, c->drip_sec, c->drip_sec);
        }
        return conn_flush(c);
    case MODE_STREAM:
        c->state = ST_STREAM;
        return conn_flush(c);
    default:
        c->state = ST_SEND;
        return conn_flush(c);
    }
}

/* drip=: move the next body byte to the output. */
static bool drip_tick(struct conn *c)
{
    if (c->pending_off < c->pending.len) {
        sbuf_append(&c->out, c->pending.data + c->pending_off, 1);
        c->pending_off++;
    }
    if (c->pending_off >= c->pending.len) {
        ev_timer_stop(c->srv->loop, &c->timer);
    }
    return conn_flush(c);
}

/* Send a protocol error response; the connection is closed afterwards. */
static bool send_error(struct conn *c, int status, const char *msg)
{
    struct sbuf body = {0};

    sbuf_puts(&body, "{\"error\":");
    json_string(&body, msg, strlen(msg));
    sbuf_puts(&body, "}");
    sbuf_printf(&c->out,
                "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                "Connection: close\r\n\r\n",
                status, reason_phrase(status), body.len);
    sbuf_append(&c->out, body.data, body.len);
    sbuf_free(&body);
    c->mode = MODE_ERROR;
    c->keep_alive = false;
    c->state = ST_SEND;
    ev_timer_stop(c->srv->loop, &c->timer);
    return conn_flush(c);
}

/* Drop the current request's bytes from the input buffer. */
static void request_consume(struct conn *c)
{
    struct request *r = &c->req;
    size_t used = r->head_len + (r->body_buf ? 0 : r->body_len);

    if (used > c->in.len) {
        used = c->in.len;
    }
    memmove(c->in.data, c->in.data + used, c->in.len - used);
    c->in.len -= used;
    c->scanned = 0;
    free(r->body_buf);
    memset(r, 0, sizeof *r);
}

/*
 * A complete request (head + body) is available: build the response and
 * start sending it, or arm the delay timer.  Returns false if c was closed.
 */
static bool handle_request(struct conn *c)
{
    struct server *s = c->srv;
    struct request *r = &c->req;
    const char *req_body = r->body_buf ? r->body_buf : c->in.data + r->head_len;
    struct plan p;
    bool ok = true;

    plan_init(&p);
    if (c->peer_eof) {
        c->keep_alive = false;
    }
    if (r->path_len == 8 && memcmp(r->path, "/__stats", 8) == 0) {
        build_stats(c);
    } else {
        ok = parse_query(&p, r->query, r->query_len);
        if (ok) {
            s->requests++;
            build_response(c, &p, req_body, s->requests);
        }
    }
    request_consume(c);
    if (!ok) {
        bool alive = send_error(c, 400, p.err);
        plan_free(&p);
        return alive;
    }
    if (p.delay_ms > 0 && c->mode != MODE_HANG) {
        plan_free(&p);
        c->state = ST_DELAY;
        conn_timer_arm(c, (double)p.delay_ms / 1000.0, 0.);
        return true;
    }
    plan_free(&p);
    return start_response(c);
}

/*
 * Try to make progress on the request being read: parse the head, set up
 * the body buffer, dispatch when complete.  Returns false if c was closed.
 */
static bool process_input(struct conn *c)
{
    struct request *r = &c->req;

    if (c->state == ST_READ_BODY) {
        return r->body_got < r->body_len ? true : handle_request(c);
    }
    if (c->state != ST_READ_HEAD) {
        return true;
    }

    /* tolerate stray CRLFs between requests */
    size_t skip = 0;
    while (skip + 1 < c->in.len && c->in.data[skip] == '\r' && c->in.data[skip + 1] == '\n') {
        skip += 2;
    }
    if (skip) {
        memmove(c->in.data, c->in.data + skip, c->in.len - skip);
        c->in.len -= skip;
        c->scanned = 0;
    }
    if (c->in.len == 0) {
        return true;
    }

    int rc = parse_head(c);
    if (rc == 0) {
        return true;
    }
    if (rc != 1) {
        const char *msg = rc == 431   ? "request head too large"
                          : rc == 413 ? "request body too large"
                          : rc == 411 ? "only Content-Length request bodies are supported"
                          : rc == 505 ? "unsupported HTTP version"
                                      : "malformed request";
        return send_error(c, rc, msg);
    }

    size_t avail = c->in.len - r->head_len;
    if (avail >= r->body_len) {
        return handle_request(c);
    }
    /* the body continues in later reads: give it its own buffer */
    r->body_buf = xrealloc(NULL, r->body_len);
    memcpy(r->body_buf, c->in.data + r->head_len, avail);
    r->body_got = avail;
    c->in.len = r->head_len;
    c->state = ST_READ_BODY;
    if (r->expect_continue && !r->http10) {
        sbuf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        return conn_flush(c);
    }
    return true;
}

/* The client shut down its side of the connection. */
static void handle_eof(struct conn *c)
{
    switch (c->state) {
    case ST_DELAY:
    case ST_SEND:
    case ST_DRIP:
        /* finish the response (the client may have half-closed), then close */
        c->peer_eof = true;
        c->keep_alive = false;
        ev_io_stop(c->srv->loop, &c->rio);
        break;
    default:
        conn_close(c);
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* libev callbacks                                                           */
/* ------------------------------------------------------------------------ */

/*
 * Socket readable (or a fed event after a kept-alive response).  Reads into
 * the input buffer, the body buffer or a discard buffer depending on state.
 * The input buffer is capped; when full outside of head parsing, reading
 * stops until the current response is done (backpressure).
 */
static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    char discard[4096];
    char *dst;
    size_t room;
    (void)revents;

    switch (c->state) {
    case ST_READ_BODY:
        dst = c->req.body_buf + c->req.body_got;
        room = c->req.body_len - c->req.body_got;
        break;
    case ST_HANG:
    case ST_LINGER:
        dst = discard;
        room = sizeof discard;
        break;
    default:
        if (c->in.len >= IN_LIMIT) {
            if (c->state == ST_READ_HEAD) {
                process_input(c);
            } else {
                ev_io_stop(loop, w);
            }
            return;
        }
        sbuf_reserve(&c->in, IN_MIN_READ);
        dst = c->in.data + c->in.len;
        room = c->in.cap - c->in.len;
        if (room > IN_LIMIT - c->in.len) {
            room = IN_LIMIT - c->in.len;
        }
        break;
    }

    ssize_t n = recv(c->fd, dst, room, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_close(c);
            return;
        }
        n = -1; /* nothing new (e.g. fed event): still process buffered input */
    } else if (n > 0) {
        if (c->state == ST_READ_BODY) {
            c->req.body_got += (size_t)n;
        } else if (dst != discard) {
            c->in.len += (size_t)n;
        }
    }
    if (!process_input(c)) {
        return;
    }
    if (n == 0) {
        handle_eof(c);
    }
}

/* Socket writable again. */
static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    (void)revents;

    if (c->state == ST_DELAY) {
        ev_io_stop(loop, w); /* leftover "100 Continue": sent after the delay */
        return;
    }
    conn_flush(c);
}

/* The connection's timer: delay expiry, drip tick, reset poll or linger timeout. */
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct conn *c = w->data;
    (void)revents;

    switch (c->state) {
    case ST_DELAY:
        start_response(c);
        break;
    case ST_DRIP:
        drip_tick(c);
        break;
    case ST_RESET_WAIT:
        reset_check(c);
        break;
    case ST_LINGER:
        conn_close(c);
        break;
    default:
        ev_timer_stop(loop, w);
        break;
    }
}

/* Set up a connection for an accepted socket. */
static void conn_new(struct server *s, int fd)
{
    struct conn *c = xrealloc(NULL, sizeof *c);
    int one = 1;

    memset(c, 0, sizeof *c);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->srv = s;
    c->fd = fd;
    c->state = ST_READ_HEAD;
    c->keep_alive = true;
    ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
    ev_init(&c->timer, conn_timer_cb);
    c->rio.data = c;
    c->wio.data = c;
    c->timer.data = c;
    c->next = s->conns;
    if (s->conns) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->connections++;
    s->active++;
    ev_io_start(s->loop, &c->rio);
}

/*
 * Listening socket readable: accept until EAGAIN.  When out of file
 * descriptors (or memory), stop accepting for ACCEPT_RETRY_SEC instead of
 * spinning on the still-readable socket.
 */
static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct server *s = w->data;
    (void)revents;

    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_new(s, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) {
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            if (!s->emfile_warned) {
                fprintf(stderr, "httpd: accept: %s (pausing accepts for %g s)\n",
                        strerror(errno), ACCEPT_RETRY_SEC);
                s->emfile_warned = true;
            }
            ev_io_stop(loop, w);
            ev_timer_set(&s->accept_retry, ACCEPT_RETRY_SEC, 0.);
            ev_timer_start(loop, &s->accept_retry);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            fprintf(stderr, "httpd: accept: %s\n", strerror(errno));
        }
        return;
    }
}

/* The EMFILE pause is over: accept again. */
static void accept_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct server *s = w->data;
    (void)revents;

    ev_io_start(loop, &s->accept_io);
}

/* SIGTERM/SIGINT: leave ev_run so main() can clean up. */
static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* ------------------------------------------------------------------------ */
/* Startup                                                                   */
/* ------------------------------------------------------------------------ */

/* Create the non-blocking listening socket; returns the fd and the bound port. */
static int open_listener(const char *addr, const char *port, int *bound_port)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    int one = 1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(addr, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "httpd: bad address %s: %s\n", addr, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("httpd: socket");
        freeaddrinfo(res);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
        fprintf(stderr, "httpd: cannot listen on %s port %s: %s\n", addr, port, strerror(errno));
        close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    if (ss.ss_family == AF_INET6) {
        *bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        *bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    return fd;
}

/* Write "<port>\n" to path atomically: write a temporary file, then rename. */
static int write_port_file(const char *path, int port)
{
    size_t len = strlen(path) + 32;
    char *tmp = xrealloc(NULL, len);
    int ok;

    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "httpd: %s: %s\n", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    ok = fprintf(f, "%d\n", port) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) < 0) {
        fprintf(stderr, "httpd: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

/* Raise the soft fd limit (within the hard limit) so many clients fit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return;
    }
    rlim_t want = rl.rlim_max < FD_LIMIT_WANTED ? rl.rlim_max : FD_LIMIT_WANTED;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        setrlimit(RLIMIT_NOFILE, &rl); /* best effort */
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: httpd [--port N] [--bind ADDR] [--port-file PATH]\n"
               "Scriptable HTTP/1.1 test server; see the comment at the top of httpd.c.\n");
}

/* Parse the CLI, listen, announce the port, run until a signal, free everything. */
int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"bind", required_argument, NULL, 'b'},
        {"port-file", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct server srv;
    struct server *s = &srv;
    const char *bind_addr = "127.0.0.1";
    const char *port = "0";
    const char *port_file = NULL;
    unsigned long long v;
    int bound_port = 0;
    int opt;

    while ((opt = getopt_long(argc, argv, "p:b:f:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'p':
            if (!parse_number(optarg, strlen(optarg), 65535, &v)) {
                fprintf(stderr, "httpd: bad port: %s\n", optarg);
                return 2;
            }
            port = optarg;
            break;
        case 'b':
            bind_addr = optarg;
            break;
        case 'f':
            port_file = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    s->listen_fd = open_listener(bind_addr, port, &bound_port);
    if (s->listen_fd < 0) {
        return 1;
    }
    printf("PORT=%d\n", bound_port);
    fflush(stdout);
    if (port_file && write_port_file(port_file, bound_port) < 0) {
        close(s->listen_fd);
        return 1;
    }

    /* one ready-made stream=1 chunk: "4000\r\n" "0,0,...,0," "\r\n" */
    sbuf_printf(&s->stream_chunk, "%x\r\n", STREAM_CHUNK);
    for (int i = 0; i < STREAM_CHUNK / 2; i++) {
        sbuf_append(&s->stream_chunk, "0,", 2);
    }
    sbuf_puts(&s->stream_chunk, "\r\n");

    s->loop = EV_DEFAULT;
    ev_io_init(&s->accept_io, accept_cb, s->listen_fd, EV_READ);
    s->accept_io.data = s;
    ev_init(&s->accept_retry, accept_retry_cb);
    s->accept_retry.data = s;
    ev_signal_init(&s->sigterm, signal_cb, SIGTERM);
    ev_signal_init(&s->sigint, signal_cb, SIGINT);
    ev_io_start(s->loop, &s->accept_io);
    ev_signal_start(s->loop, &s->sigterm);
    ev_signal_start(s->loop, &s->sigint);

    ev_run(s->loop, 0);

    /* shutdown: close every connection and free everything */
    while (s->conns) {
        conn_close(s->conns);
    }
    ev_io_stop(s->loop, &s->accept_io);
    ev_timer_stop(s->loop, &s->accept_retry);
    ev_signal_stop(s->loop, &s->sigterm);
    ev_signal_stop(s->loop, &s->sigint);
    close(s->listen_fd);
    sbuf_free(&s->scratch);
    sbuf_free(&s->stream_chunk);
    ev_loop_destroy(s->loop);
    return 0;
}
