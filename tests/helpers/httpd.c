/*
 * httpd.c - small, fast, scriptable HTTP/1.1 server for fetchd's integration
 * tests and benchmarks.
 *
 * Single thread, one libev default loop, non-blocking sockets, HTTP/1.1
 * keep-alive.  What a response looks like is chosen per request by query
 * parameters, so one server instance can serve every test case.
 *
 * Build (standalone):
 *   gcc -std=gnu11 -Wall -Wextra -O2 -o httpd tests/helpers/httpd.c \
 *       -lev -lz -lssl -lcrypto
 *
 * Usage:
 *   httpd [--port N] [--bind ADDR] [--port-file PATH] [--unix PATH]
 *         [--tls-cert PATH --tls-key PATH [--tls-client-ca PATH]
 *          [--tls-min-version V] [--tls-max-version V]]
 *
 *   --port N          TCP port to listen on (default 0: the kernel picks one).
 *   --bind ADDR       address to listen on (default 127.0.0.1; IPv6 such as
 *                     ::1 works too).
 *   --port-file PATH  also write the port number (followed by a newline) to
 *                     PATH, atomically (written to PATH.tmp.<pid>, renamed).
 *   --unix PATH       listen on an AF_UNIX stream socket at PATH instead of
 *                     TCP (--port and --bind are then ignored).  A stale
 *                     socket file at PATH is replaced (any other existing
 *                     file is an error); PATH is removed on exit.  The port
 *                     reported ("PORT=0", --port-file) is 0.  reset=1 cannot
 *                     send a RST on such a socket: it just closes once the
 *                     partial response is written.
 *   --tls-cert PATH   speak TLS on the listening socket, for every request
 *   --tls-key PATH    and special path (no plain HTTP on that port).  PATH
 *                     are a PEM certificate (chain, leaf first) and its PEM
 *                     private key; give both or neither.  ALPN: only
 *                     "http/1.1" is offered; a client offering h2 and
 *                     http/1.1 gets http/1.1, a client offering nothing
 *                     usable gets no ALPN answer (not a failure).  The
 *                     handshake and all I/O are non-blocking; a failed
 *                     handshake closes the connection and prints one
 *                     "httpd: TLS handshake failed: ..." line on stderr
 *                     (nothing for a client that just disconnects).
 *                     Responses that close the connection send a TLS
 *                     close_notify first, except reset=1.  TLS renegotiation
 *                     is refused.
 *   --tls-client-ca PATH
 *                     require a client certificate and verify it against
 *                     the CA certificate(s) in PATH (PEM); the handshake
 *                     fails without one or with one that does not verify
 *                     (with TLS 1.3 the client may only see the failure
 *                     when it first reads, after sending its request).
 *   --tls-min-version V, --tls-max-version V
 *                     lowest / highest TLS version the server accepts, V one
 *                     of 1.2 and 1.3 (default: whatever OpenSSL allows,
 *                     normally 1.2 .. 1.3).  "--tls-max-version 1.2" makes a
 *                     client that requires TLS 1.3 fail the handshake.
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
 *   The request target may be in origin-form ("/path?query") or in
 *   absolute-form ("http://host:port/path?query" or https://..., as sent to
 *   a forward proxy): absolute-form is served exactly as if only its path
 *   and query had been given (a missing path is "/"), whatever the host, so
 *   the server doubles as an HTTP forward proxy for tests (curl -x
 *   http://127.0.0.1:PORT http://example.invalid/x?status=201).  CONNECT is
 *   not supported (it is answered like any other method).  The request log
 *   (/__requests) keeps the raw target, so a test can tell that a proxy was
 *   used.
 *
 * Special paths (matched exactly, any method, query parameters ignored;
 * requests for them are neither counted in "requests" nor logged):
 *   /__stats     {"requests":N,"connections":M,"active":K,"tokens_issued":T}:
 *                requests served (not counting the special paths nor
 *                rejected requests), connections accepted, connections open
 *                right now (including the one asking), access tokens issued
 *                by /token since the start.
 *   /__requests  {"requests":[{"n":N,"method":"GET","target":"/x?y=1",
 *                "headers":{"Host":"127.0.0.1:8080",...},"body":"..."},...]}:
 *                the last 1000 requests counted in "requests", oldest first.
 *                n is the request counter value the request got (what
 *                body=json reports as "n"); target is the raw request target
 *                as received (absolute-form stays absolute-form); headers
 *                has the header names as received, in order; a header that
 *                was received several times (names compared
 *                case-insensitively) appears once, under its first spelling,
 *                with the values joined by ", " in the order received (as
 *                RFC 9110 combines field lines); body is the request body
 *                (at most its first 64 KiB).  Strings are escaped as for
 *                body=echo, so the document is always valid JSON.
 *   /__reset     empties the /__requests log, sets the request counter
 *                ("requests", body=json's "n") back to 0 and forgets every
 *                fail= counter, and resets the ingest receiver (its
 *                counters, records, log, script= counters and mode).
 *                Answers {"ok":true}.  Issued tokens, "connections" and
 *                "tokens_issued" are not touched.
 *   /__ingest    what the ingest receiver (see below) got, as JSON:
 *                {"requests":N,"accepted":A,"records":R,"distinct":D,
 *                "dup_same_key":S,"dup_other_key":O,"keyless":K,"keys":Y,
 *                "bad":B,"mode":"STEP","log":[{"n":1,"result":500,
 *                "key":"...","records":10,"bytes":1234,"ms":12.3,
 *                "ctype":"application/x-ndjson"},...]}.
 *                requests: ingest requests seen (every outcome, "down"
 *                ones included); accepted: those whose records were taken
 *                (a 2xx answer, or "reset"); records: records taken
 *                (duplicates included); distinct: different records;
 *                dup_same_key / dup_other_key: records taken again in a
 *                request with the same Idempotency-Key as the first time
 *                / with another key (or none); keyless: accepted requests
 *                without an Idempotency-Key; keys: distinct keys of
 *                accepted requests; bad: records that are not a JSON
 *                object (or bodies that do not split into records).  log
 *                has one entry per ingest request, oldest first (at most
 *                100000): result is the status answered, or -1 (down),
 *                -2 (reset), -3 (the client went away during slow); ms is
 *                the time since the server started.  With ?records=1 the
 *                document also has "distinct_records":["<record>",...]
 *                (each record as a JSON string, in order of arrival).
 *   /__ingest_mode?step=STEP
 *                sets what every ingest request gets from now on (STEP as
 *                in script= below, e.g. step=down, step=503, step=slow:ms=
 *                200); step=ok (or 200) returns to normal.  A mode other
 *                than ok wins over script=.  Answers {"ok":true}; a bad
 *                STEP gets 400.
 *   /__revoke    revokes every access token issued so far: need_token=1
 *                answers 401 until the client fetches a new token.  Answers
 *                {"revoked":N}, N being the number of tokens that were still
 *                valid (issued, not expired, not yet revoked).
 *   Any other path, including other /__ paths, is an ordinary path.
 *
 * Ingest receiver (path /ingest, any method, counted and logged like any
 * other path unless it answers "down"):
 *   Takes batches of records the way a log collector would, for fetchd's
 *   http sink.  The body is split into records: a Content-Type starting
 *   with application/json means a JSON array of records, anything else
 *   JSON Lines (empty lines are ignored).  Records are compared byte for
 *   byte (an array element and the same JSON line compare equal) and kept,
 *   with the Idempotency-Key of the request that brought them first, for
 *   /__ingest.  What a request gets is its step: the mode set with
 *   /__ingest_mode if not "ok", else the next step of its script=, else
 *   200.  A step is WORD[:OPTION]..., WORD one of
 *     N        (100..999) answer status N with {"ok":true,"records":R}
 *              (2xx: the records are taken) or {"error":"scripted",
 *              "status":N}; option retry-after=V adds "Retry-After: V"
 *              (V is the rest of the step; inside script= it ends at the
 *              next comma, so an HTTP-date needs /__ingest_mode)
 *     ok       the same as 200
 *     down     as soon as the request head has arrived, reset the
 *              connection (RST) without reading the body or answering:
 *              nothing is taken and the request is not counted in
 *              "requests" nor logged in /__requests
 *     reset    read the whole request, take its records, then close the
 *              connection without answering (ack-then-reset: the client
 *              never learns that it was delivered)
 *     slow     read the body one byte every MS milliseconds (option
 *              ms=MS, default 100; bytes that came with the head count
 *              too), then take it and answer 200; a client that goes
 *              away first gets nothing taken (log result -3)
 *   script=LIST  comma-separated steps for the successive requests to the
 *              same target (path + query, as for fail=): the first request
 *              gets the first step, and so on; after the last step
 *              requests get 200.  Example:
 *              /ingest?script=500,429:retry-after=1,down,200
 *   Other query parameters (delay=, header=, ...) apply as on any path.
 *
 * Token endpoint (path /token, counted and logged like any other path):
 *   An OAuth 2.0 token endpoint for the client credentials grant.  Its
 *   configuration comes from its own query string (so the token_url given
 *   to the client carries it): client_id=ID, client_secret=SECRET,
 *   expires_in=S (seconds, default 3600, 0..1000000000), token_fail=1.
 *   The request must be a POST (else 405 {"error":"invalid_request"} with
 *   "Allow: POST"); its body is parsed as application/x-www-form-urlencoded
 *   whatever its Content-Type.  The client authenticates either with HTTP
 *   Basic (Authorization: Basic base64(id:secret); id and secret are
 *   compared as sent and, failing that, URL-decoded as RFC 6749 2.3.1
 *   wants) or with client_id=..&client_secret=.. in the body; Basic wins
 *   when both are present (a Basic header that is not valid base64 is
 *   ignored).  Each of client_id/client_secret given on the
 *   token URL must match; one not given is not checked (a token URL
 *   without both accepts any client).  Checks in this order:
 *     token_fail=1                   500 {"error":"server_error"}
 *     credentials do not match       401 {"error":"invalid_client"} with
 *                                    WWW-Authenticate: Basic realm="t"
 *     no grant_type in the body      400 {"error":"invalid_request"}
 *     grant_type not client_credentials
 *                                    400 {"error":"unsupported_grant_type"}
 *     otherwise                      200 {"access_token":"tok-<n>",
 *                                    "token_type":"Bearer","expires_in":S}
 *   with Cache-Control: no-store.  n counts tokens from 1 and is never
 *   reused (not even after /__reset).  The server remembers every token
 *   with its expiry (now + S seconds, monotonic clock; S=0 gives a token
 *   that is already expired) for need_token=1.  scope= and other body
 *   fields are accepted and ignored (see /__requests for what was sent).
 *   delay=, fail=/fail_status=/retry_after= and the delivery modes (close,
 *   hang, ...), header=, bigheader=, ctype=, gzip=/encoding= apply to
 *   /token as to any path; status=, body=, size=, the other body sources,
 *   redirect=/loop=, etag=/lastmod= and the need_* checks do not.
 *
 * Query parameters (on any path).  Keys and values are URL-decoded (%XX and
 * '+').  Unknown parameters are ignored; a bad value for a known parameter
 * gets 400.  Flags (chunked, drip's siblings...) are on for any value except
 * "0", "false", "no" and "off", so a bare "hang" works too.  When a
 * parameter is repeated, the last one wins (except header=, which adds).
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
 *                  feed     an incremental feed, for checkpoint tests: the
 *                           JSON array [{"id":S+1},{"id":S+2},...] of the
 *                           ids after since= up to min(S+B, U) (batch=,
 *                           upto=), [] when S >= U; newest first with
 *                           order=desc.
 *   since=S        with body=feed: the last id the client has, a decimal
 *                  number (empty or absent: 0).
 *   batch=B        with body=feed: at most B ids per response (default 2,
 *                  0 <= B <= 1000000).
 *   upto=U         with body=feed: the highest id there is (default 10).
 *   order=O        with body=feed: asc (default) or desc (newest first).
 *   ctype=TYPE     Content-Type (default application/json, text/html for
 *                  body=html, application/x-ndjson for ndjson=).  An empty
 *                  value omits the header.
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
 *   manyheaders=N  add N response headers "X-Many: <i>", i = 0..N-1
 *                  (N <= 1000000), after X-Big.
 *   ctype_raw=V    like ctype=, but the (URL-decoded) value may hold any
 *                  byte but CR, LF and NUL: ESC, BEL, backspace, invalid
 *                  UTF-8 (to test how clients log what servers send).
 *
 *   Content codings:
 *   gzip=1         shorthand for encoding=gzip (gzip=0: no coding).
 *   encoding=LIST  comma-separated list of "gzip" (RFC 1952) and "deflate"
 *                  (the zlib format, RFC 1950), at most 8, e.g.
 *                  encoding=gzip,gzip: the body is encoded with each in
 *                  order and "Content-Encoding: gzip, gzip" names them in
 *                  the same order.  An empty list means no coding.  Applies
 *                  to every response that has a body (generated ones
 *                  included, not stream=1), whatever the request's
 *                  Accept-Encoding; Content-Length (and drip/reset/short)
 *                  use the encoded bytes.  The last of gzip=/encoding= wins.
 *   bomb=N         the body is a gzip stream that decodes to exactly N bytes
 *                  of {"pad":"000...0"} (10 <= N <= 1 GiB), sent with
 *                  "Content-Encoding: gzip" (gzip=/encoding= are ignored).
 *                  About N/1000 bytes go over the wire.  The stream is
 *                  built without ever holding N decoded bytes (one 1 MiB
 *                  segment is deflated and repeated) and the last 4 values
 *                  of N are cached.
 *
 *   Other body sources (precedence: bomb, ndjson, pages, then body/size):
 *   ndjson=N       the body is N lines {"i":0}\n{"i":1}\n ... {"i":N-1}\n
 *                  (0 <= N <= 10000000; 0 is an empty body), with
 *                  Content-Type application/x-ndjson unless ctype= is given.
 *   ndjson_bad=K   with ndjson=: line K (0-based) is "{bad" instead (still
 *                  followed by \n); K >= N changes nothing.
 *   pages=N        a paginated collection of N pages (1 <= N <= 1000000).
 *   page=K         the page to serve, 1 <= K (default 1; only looked at,
 *                  and only validated, when pages= is given).  The body is
 *                  {"page":K,"items":[K*10+1,K*10+2],"next":<URL or null>}
 *                  where the URL (a JSON string) is the request's path and
 *                  query with the first page= replaced by page=K+1 (any
 *                  later page= dropped; appended at the end when there was
 *                  none), every other parameter kept raw and in order;
 *                  null on the last page.  On every page but the last the
 *                  response has the header
 *                    Link: </path?...&page=K+1...>; rel="next"
 *                  and on every page but the first a second link in the
 *                  same header value:
 *                    Link: </path?...page=K+1...>; rel="next",
 *                          </path?...page=K-1...>; rel="prev"
 *                  (on one line; the last page has only rel="prev").  The
 *                  URLs are path-absolute references (no scheme/host).
 *                  K = 0 or K > N gets 404 {"error":"no such page"}; K not
 *                  a number gets 400.
 *   cursorpages=1  with pages=N: cursor pagination instead.  No Link
 *                  header; the page is the value of cursor= and the body is
 *                  {"items":[K*10+1,K*10+2],"meta":{"next_cursor":"<K+1>"}}
 *                  with "next_cursor":null on the last page.
 *   cursor=C       the cursor: the page number as a decimal string (absent
 *                  or empty: page 1; not a number: 400; 0 or > N: 404
 *                  {"error":"no such page"}).  As with every parameter
 *                  the last one wins, so a client can walk the pages either
 *                  by appending "&cursor=<next_cursor>" to the original URL
 *                  or by appending it to the URL it fetched last.
 *
 *   Conditional requests:
 *   etag=V         send "ETag: "V"" (V must not contain CR/LF or '"').  If
 *                  the request has If-None-Match listing "V" or W/"V" or *,
 *                  the answer is 304 with the ETag and no body.
 *   lastmod=DATE   send "Last-Modified: DATE" (DATE raw).  If the request
 *                  has If-Modified-Since byte-for-byte equal to DATE (and
 *                  no If-None-Match together with etag=, which takes
 *                  precedence), the answer is 304 with Last-Modified (and
 *                  ETag when etag= is given) and no body.
 *                  Any method can get the 304.
 *
 *   Redirects:
 *   redirect=URL   answer 302 (or redirect_status) with "Location: URL" (the
 *                  URL-decoded value, sent as is, so it may be relative or
 *                  point to another server) and the body
 *                  {"location":"URL"}.
 *   redirect_status=N
 *                  status for redirect= and loop=, 300..399 (default 302;
 *                  meant for 301, 302, 303, 307, 308).
 *   loop=1         redirect to the request's own target (Location: the raw
 *                  target as received), so a client following redirects
 *                  loops forever.  redirect= wins over loop=.
 *
 *   Failures and throttling:
 *   fail=N         the first N requests whose target (path + query, exactly
 *                  as received, after the absolute-form prefix is stripped;
 *                  any method) passes the need_* checks are answered with
 *                  fail_status and the body
 *                  {"error":"injected failure","attempt":A,"of":N} (A =
 *                  1..N); request N+1 and later get the normal response.
 *                  The counters are per target string (so fail=2&x=1 and
 *                  fail=2&x=2 count separately) and are cleared by /__reset.
 *                  0 <= N <= 1000000000 (0: never fail).
 *   fail_status=N  status of the failing responses, 100..999 (default 503).
 *   retry_after=V  add "Retry-After: V"; V is sent raw (a number, an
 *                  HTTP-date or garbage; must not contain CR/LF).  With
 *                  fail= only the failing responses carry it, otherwise
 *                  every response does (use with status=429 or 503).
 *
 *   Authentication checks (not applied to /token):
 *   need_basic=USER:PASS
 *                  401 with "WWW-Authenticate: Basic realm="t"" and
 *                  {"error":"unauthorized"} unless the request's (first)
 *                  Authorization header is "Basic " followed by exactly
 *                  base64(USER:PASS) (the scheme name is case-insensitive,
 *                  the credentials are compared exactly).
 *   need_bearer=TOKEN
 *                  401 with "WWW-Authenticate: Bearer realm="t"" and
 *                  {"error":"unauthorized"} unless Authorization is
 *                  "Bearer TOKEN" (scheme case-insensitive, TOKEN exact).
 *   need_token=1   401 with "WWW-Authenticate: Bearer realm="t",
 *                  error="invalid_token"" and {"error":"invalid_token"}
 *                  unless Authorization is "Bearer tok-<n>" for a token
 *                  /token issued that has not expired and has not been
 *                  revoked by /__revoke.
 *                  Several need_* may be combined; all must pass (one
 *                  Authorization header can only satisfy one scheme).
 *
 *   Order of evaluation.  A request for a special path is answered
 *   directly.  Any other request's query is parsed (a bad value: 400, not
 *   counted), the request is counted and logged, and the first that
 *   applies of these decides the response:
 *     1. a need_* check fails (not on /token)       401
 *     2. fail=N and this target failed < N times     fail_status
 *     3. the path is /token                          token endpoint
 *     4. redirect= or loop=                          redirect_status
 *     5. etag=/lastmod= validators match             304
 *     6. the normal response: status=, the body from bomb=, ndjson=, pages=
 *        (or its 404) or body=/size=, with ETag/Last-Modified.
 *   Generated responses (1-5 and the pages= 404) have their own status and
 *   JSON body; delay=, the delivery modes below, ctype=, header=,
 *   bigheader= and gzip=/encoding= apply to them all.  Retry-After: see
 *   retry_after=.  Content-Encoding follows Content-Type; the other
 *   generated headers (WWW-Authenticate, Location, ETag, Last-Modified,
 *   Link, Retry-After, Cache-Control, Allow; their relative order is not
 *   guaranteed) follow Connection/X-Big and precede the header= ones.
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
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <zlib.h>

#define MAX_HEAD_BYTES (64 * 1024)            /* request line + headers */
#define MAX_REQ_BODY (1024 * 1024)            /* request body */
#define IN_LIMIT (MAX_HEAD_BYTES + 16 * 1024) /* input buffer cap */
#define IN_MIN_READ 4096                      /* free space wanted per read() */
#define MAX_SIZE_PARAM (256ULL * 1024 * 1024) /* size= */
#define MAX_BIGHEADER (64ULL * 1024 * 1024)   /* bigheader= */
#define MAX_MANYHEADERS 1000000ULL            /* manyheaders= */
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
#define LOG_MAX 1000                          /* /__requests entries */
#define LOG_BODY_MAX (64 * 1024)              /* request body bytes logged */
#define MAX_ENC 8                             /* encoding= list length */
#define MAX_BOMB (1024ULL * 1024 * 1024)      /* bomb= */
#define BOMB_SEG (1024 * 1024)                /* bomb=: repeated segment */
#define BOMB_CACHE 4                          /* bomb=: cached streams */
#define MAX_NDJSON 10000000ULL                /* ndjson= */
#define MAX_PAGES 1000000ULL                  /* pages= */
#define MAX_COUNT 1000000000ULL               /* fail=, expires_in=, page= */
#define MAX_FEED_BATCH 1000000ULL             /* batch= */
#define DEFAULT_EXPIRES_IN 3600

/* Growable byte buffer; aborts on out-of-memory (this is a test tool). */
struct sbuf {
    char *data;
    size_t len;
    size_t cap;
};

/* What a connection is doing right now. */
enum conn_state {
    ST_HANDSHAKE,  /* TLS handshake in progress */
    ST_READ_HEAD,  /* waiting for request line + headers */
    ST_READ_BODY,  /* reading a Content-Length request body */
    ST_DELAY,      /* response built, waiting for delay= to expire */
    ST_SEND,       /* writing a complete response */
    ST_DRIP,       /* writing the body one byte per timer tick */
    ST_STREAM,     /* writing an endless chunked response */
    ST_HANG,       /* never answering */
    ST_RESET_WAIT, /* partial response written, waiting for the ACK */
    ST_LINGER,     /* error sent, write side shut, draining input */
    ST_SLOW_BODY,  /* ingest "slow": reading the body a byte per tick */
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
    BODY_FEED,
    /* not selectable with body=: chosen by other parameters */
    BODY_GEN,    /* plan.gen (generated responses) */
    BODY_NDJSON, /* ndjson= */
    BODY_PAGES,  /* pages= */
    BODY_BOMB,   /* bomb= (already gzip-encoded) */
};

/* encoding= values. */
enum enc_kind {
    ENC_GZIP,
    ENC_DEFLATE,
};

/* body= values. */
static const struct {
    const char *name;
    enum body_kind kind;
} body_kinds[] = {
    {"json", BODY_JSON},     {"invalid", BODY_INVALID}, {"garbage", BODY_GARBAGE},
    {"empty", BODY_EMPTY},   {"html", BODY_HTML},       {"deep", BODY_DEEP},
    {"badutf8", BODY_BADUTF8}, {"array", BODY_ARRAY},   {"scalar", BODY_SCALAR},
    {"bignum", BODY_BIGNUM}, {"echo", BODY_ECHO},       {"feed", BODY_FEED},
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
    const char *target; /* raw request target (absolute-form kept) */
    size_t target_len;
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
    unsigned long long manyheaders;
    enum body_kind kind;
    bool chunked;
    bool reset;
    bool short_body;
    bool close_now;
    bool hang;
    bool stream;
    bool badstatus;
    /* body=feed */
    unsigned long long feed_since;
    unsigned long long feed_batch;
    unsigned long long feed_upto;
    bool feed_desc;
    char *ctype;       /* NULL: default Content-Type */
    struct sbuf extra; /* header=... lines, "Name: value\r\n" each */
    char err[96];      /* message for a 400 */
    /* content codings */
    unsigned char enc[MAX_ENC]; /* enum enc_kind, in order */
    size_t n_enc;
    unsigned long long bomb; /* 0: off */
    /* other body sources */
    bool ndjson_on;
    unsigned long long ndjson;
    bool ndjson_bad_on;
    unsigned long long ndjson_bad;
    unsigned long long pages; /* 0: off */
    char *page;               /* raw decoded page= (NULL: absent) */
    bool cursorpages;
    char *cursor; /* raw decoded cursor= (NULL: absent) */
    /* conditional requests, redirects */
    char *etag;
    char *lastmod;
    char *redirect;
    int redirect_status;
    bool loop;
    /* failures */
    unsigned long long fail;
    int fail_status;
    char *retry_after;
    /* authentication checks */
    char *need_basic;
    char *need_bearer;
    bool need_token;
    /* token endpoint */
    char *client_id;
    char *client_secret;
    unsigned long long expires_in;
    bool token_fail;
    /* filled in while routing the request */
    struct sbuf hdrs;          /* generated header lines */
    struct sbuf gen;           /* BODY_GEN body */
    struct sbuf next_url;      /* pages=: URL of page K+1 ("" on the last page) */
    struct sbuf prev_url;      /* pages=: URL of page K-1 ("" on the first page) */
    unsigned long long cur_page;  /* pages=: the page served */
    const char *def_ctype;     /* NULL: application/json */
    const struct sbuf *bomb_data; /* BODY_BOMB: the cached stream */
};

struct server;

/* What an ingest request gets (see "Ingest receiver" above). */
enum step_kind {
    STEP_STATUS,
    STEP_DOWN,
    STEP_RESET,
    STEP_SLOW,
};

struct ingest_step {
    enum step_kind kind;
    int status;            /* STEP_STATUS */
    char retry_after[64];  /* "" = none */
    unsigned long long ms; /* STEP_SLOW: per byte */
};

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
    SSL *ssl;                  /* NULL: plain TCP */
    bool tls_read_wants_write; /* SSL_read needs the socket writable */
    bool tls_write_wants_read; /* SSL_write needs the socket readable */
    bool tls_no_shutdown;      /* do not send close_notify (error, RST, done) */
    bool ingest;               /* the current request is for /ingest */
    struct ingest_step istep;  /* what it gets */
    size_t slow_have;          /* ST_SLOW_BODY: body bytes received (body_got: consumed) */
};

/* One /__requests log entry: method, target, header block and body in data. */
struct log_entry {
    unsigned long long n;
    size_t method_len;
    size_t target_len;
    size_t headers_len;
    size_t body_len;
    struct sbuf data;
};

/* fail=: how often one target has failed. */
struct fail_counter {
    struct fail_counter *next;
    unsigned long long count;
    size_t len;
    char key[];
};

/* A set of byte strings (ingest records, keys), chained hash table. */
struct iset_entry {
    struct iset_entry *next;
    unsigned long long hash;
    size_t len;
    char *tag; /* records: the key of the request that brought it first ("" none) */
    char data[];
};

struct iset {
    struct iset_entry **b;
    size_t nb; /* buckets, a power of two */
    size_t n;
};

/* One /__ingest log entry. */
struct ingest_entry {
    unsigned long long n;
    int result;
    char key[72];
    size_t records;
    size_t bytes;
    double ms;
    char ctype[48];
};

/* bomb=: a cached gzip stream. */
struct bomb_entry {
    unsigned long long n; /* 0: unused slot */
    unsigned long long used;
    struct sbuf data;
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
    struct sbuf scratch2;     /* encoding= output */
    struct sbuf stream_chunk; /* one ready-made stream=1 chunk */
    SSL_CTX *tls;             /* NULL: plain HTTP */
    struct log_entry *log;    /* LOG_MAX entries, allocated on first use */
    size_t log_first;         /* index of the oldest entry */
    size_t log_len;
    struct fail_counter *fails;
    struct bomb_entry bombs[BOMB_CACHE];
    unsigned long long bomb_clock;
    double *tokens; /* expiry (monotonic seconds) of token tok-<i+1> */
    size_t tokens_len;
    size_t tokens_cap;
    unsigned long long tokens_revoked; /* tokens 1..this are revoked */
    /* the ingest receiver */
    double t0;                      /* start, monotonic seconds */
    struct ingest_step imode;       /* /__ingest_mode */
    bool imode_set;                 /* imode is not "ok" */
    struct iset irecs;              /* distinct records */
    struct iset ikeys;              /* distinct keys of accepted requests */
    struct iset_entry **iorder;     /* irecs in order of arrival */
    size_t iorder_cap;
    struct ingest_entry *ilog;
    size_t ilog_len, ilog_cap;
    unsigned long long i_requests, i_accepted, i_records, i_dup_same, i_dup_other, i_keyless,
        i_bad;
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

    r->target = target;
    r->target_len = (size_t)(sp2 - target);

    /* absolute-form ("http://host/path?q"): keep only the path and query */
    size_t tlen = (size_t)(sp2 - target);
    bool no_path = false;
    if ((tlen > 7 && strncasecmp(target, "http://", 7) == 0) ||
        (tlen > 8 && strncasecmp(target, "https://", 8) == 0)) {
        const char *auth = (const char *)memchr(target, '/', tlen) + 2;
        const char *q = auth;
        while (q < sp2 && *q != '/' && *q != '?') {
            q++;
        }
        target = q;
        no_path = q == sp2 || *q == '?';
    } else if (*target != '/') {
        return 400;
    }
    const char *qm = memchr(target, '?', (size_t)(sp2 - target));
    r->path = no_path ? "/" : target;
    r->path_len = no_path ? 1 : (size_t)((qm ? qm : sp2) - target);
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
    p->redirect_status = 302;
    p->fail_status = 503;
    p->expires_in = DEFAULT_EXPIRES_IN;
    p->feed_batch = 2;
    p->feed_upto = 10;
}

static void plan_free(struct plan *p)
{
    free(p->ctype);
    sbuf_free(&p->extra);
    free(p->page);
    free(p->cursor);
    free(p->etag);
    free(p->lastmod);
    free(p->redirect);
    free(p->retry_after);
    free(p->need_basic);
    free(p->need_bearer);
    free(p->client_id);
    free(p->client_secret);
    sbuf_free(&p->hdrs);
    sbuf_free(&p->gen);
    sbuf_free(&p->next_url);
    sbuf_free(&p->prev_url);
}

/* Replace the string *dst with a copy of val. */
static void set_string(char **dst, const char *val)
{
    free(*dst);
    *dst = strdup(val);
    if (!*dst) {
        abort();
    }
}

/* Parse encoding=: a comma list of gzip and deflate (blanks around items allowed). */
static bool parse_encodings(struct plan *p, const char *v)
{
    size_t n = 0;

    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',') {
            v++;
        }
        if (!*v) {
            break;
        }
        const char *start = v;
        while (*v && *v != ',') {
            v++;
        }
        const char *end = v;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }
        size_t len = (size_t)(end - start);
        if (n == MAX_ENC) {
            return false;
        }
        if (len == 4 && strncasecmp(start, "gzip", 4) == 0) {
            p->enc[n++] = ENC_GZIP;
        } else if (len == 7 && strncasecmp(start, "deflate", 7) == 0) {
            p->enc[n++] = ENC_DEFLATE;
        } else {
            return false;
        }
    }
    p->n_enc = n;
    return true;
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
    } else if (strcmp(key, "manyheaders") == 0) {
        if (!parse_number(val, vlen, MAX_MANYHEADERS, &p->manyheaders)) {
            return plan_error(p, key);
        }
    } else if (strcmp(key, "ctype_raw") == 0) {
        if (strlen(val) != vlen || memchr(val, '\r', vlen) || memchr(val, '\n', vlen)) {
            return plan_error(p, key);
        }
        free(p->ctype);
        p->ctype = strdup(val);
        if (!p->ctype) {
            abort();
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
    } else if (strcmp(key, "since") == 0) {
        p->feed_since = 0;
        if (vlen > 0 && !parse_number(val, vlen, MAX_COUNT, &p->feed_since)) {
            return plan_error(p, key);
        }
    } else if (strcmp(key, "batch") == 0) {
        if (!parse_number(val, vlen, MAX_FEED_BATCH, &p->feed_batch)) {
            return plan_error(p, key);
        }
    } else if (strcmp(key, "upto") == 0) {
        if (!parse_number(val, vlen, MAX_COUNT, &p->feed_upto)) {
            return plan_error(p, key);
        }
    } else if (strcmp(key, "order") == 0) {
        if (strcmp(val, "asc") == 0) {
            p->feed_desc = false;
        } else if (strcmp(val, "desc") == 0) {
            p->feed_desc = true;
        } else {
            return plan_error(p, key);
        }
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
    } else if (strcmp(key, "gzip") == 0) {
        p->n_enc = 0;
        if (parse_flag(val)) {
            p->enc[p->n_enc++] = ENC_GZIP;
        }
    } else if (strcmp(key, "encoding") == 0) {
        if (!parse_encodings(p, val)) {
            return plan_error(p, key);
        }
    } else if (strcmp(key, "bomb") == 0) {
        if (!parse_number(val, vlen, MAX_BOMB, &p->bomb) || p->bomb < 10) {
            return plan_error(p, key);
        }
    } else if (strcmp(key, "ndjson") == 0) {
        if (!parse_number(val, vlen, MAX_NDJSON, &p->ndjson)) {
            return plan_error(p, key);
        }
        p->ndjson_on = true;
    } else if (strcmp(key, "ndjson_bad") == 0) {
        if (!parse_number(val, vlen, ULLONG_MAX, &p->ndjson_bad)) {
            return plan_error(p, key);
        }
        p->ndjson_bad_on = true;
    } else if (strcmp(key, "pages") == 0) {
        if (!parse_number(val, vlen, MAX_PAGES, &p->pages) || p->pages < 1) {
            return plan_error(p, key);
        }
    } else if (strcmp(key, "page") == 0) {
        set_string(&p->page, val); /* validated with pages= (parse_query) */
    } else if (strcmp(key, "cursorpages") == 0) {
        p->cursorpages = parse_flag(val);
    } else if (strcmp(key, "cursor") == 0) {
        set_string(&p->cursor, val);
    } else if (strcmp(key, "etag") == 0) {
        if (!header_value_ok(val, vlen) || memchr(val, '"', vlen)) {
            return plan_error(p, key);
        }
        set_string(&p->etag, val);
    } else if (strcmp(key, "lastmod") == 0) {
        if (!header_value_ok(val, vlen)) {
            return plan_error(p, key);
        }
        set_string(&p->lastmod, val);
    } else if (strcmp(key, "redirect") == 0) {
        if (!header_value_ok(val, vlen)) {
            return plan_error(p, key);
        }
        set_string(&p->redirect, val);
    } else if (strcmp(key, "redirect_status") == 0) {
        if (!parse_number(val, vlen, 399, &v) || v < 300) {
            return plan_error(p, key);
        }
        p->redirect_status = (int)v;
    } else if (strcmp(key, "loop") == 0) {
        p->loop = parse_flag(val);
    } else if (strcmp(key, "fail") == 0) {
        if (!parse_number(val, vlen, MAX_COUNT, &p->fail)) {
            return plan_error(p, key);
        }
    } else if (strcmp(key, "fail_status") == 0) {
        if (!parse_number(val, vlen, 999, &v) || v < 100) {
            return plan_error(p, key);
        }
        p->fail_status = (int)v;
    } else if (strcmp(key, "retry_after") == 0) {
        if (!header_value_ok(val, vlen)) {
            return plan_error(p, key);
        }
        set_string(&p->retry_after, val);
    } else if (strcmp(key, "need_basic") == 0) {
        set_string(&p->need_basic, val);
    } else if (strcmp(key, "need_bearer") == 0) {
        set_string(&p->need_bearer, val);
    } else if (strcmp(key, "need_token") == 0) {
        p->need_token = parse_flag(val);
    } else if (strcmp(key, "client_id") == 0) {
        set_string(&p->client_id, val);
    } else if (strcmp(key, "client_secret") == 0) {
        set_string(&p->client_secret, val);
    } else if (strcmp(key, "expires_in") == 0) {
        if (!parse_number(val, vlen, MAX_COUNT, &p->expires_in)) {
            return plan_error(p, key);
        }
    } else if (strcmp(key, "token_fail") == 0) {
        p->token_fail = parse_flag(val);
    }
    /* anything else is ignored */
    return true;
}

/*
 * Checks that need the whole query: page= and cursor= are validated only
 * when pages= is given; cur_page gets the page asked for (0: out of range).
 */
static bool plan_check(struct plan *p)
{
    unsigned long long v = 1;

    if (p->pages == 0) {
        return true;
    }
    if (p->cursorpages) {
        if (p->cursor && *p->cursor &&
            !parse_number(p->cursor, strlen(p->cursor), MAX_COUNT, &v)) {
            return plan_error(p, "cursor");
        }
    } else if (p->page && !parse_number(p->page, strlen(p->page), MAX_COUNT, &v)) {
        return plan_error(p, "page");
    }
    p->cur_page = v <= p->pages ? v : 0;
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
    return ok && plan_check(p);
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
    case BODY_FEED: {
        /* ids since+1 .. min(since + batch, upto); none when since >= upto */
        unsigned long long lo = p->feed_since + 1;
        unsigned long long hi = p->feed_since + p->feed_batch;
        if (hi > p->feed_upto) {
            hi = p->feed_upto;
        }
        sbuf_puts(b, "[");
        for (unsigned long long i = 0; lo + i <= hi; i++) {
            sbuf_printf(b, "%s{\"id\":%llu}", i ? "," : "", p->feed_desc ? hi - i : lo + i);
        }
        sbuf_puts(b, "]");
        break;
    }
    case BODY_GEN:
        sbuf_append(b, p->gen.data, p->gen.len);
        break;
    case BODY_NDJSON:
        for (unsigned long long i = 0; i < p->ndjson; i++) {
            if (p->ndjson_bad_on && i == p->ndjson_bad) {
                sbuf_puts(b, "{bad\n");
            } else {
                sbuf_printf(b, "{\"i\":%llu}\n", i);
            }
        }
        break;
    case BODY_PAGES: {
        unsigned long long k = p->cur_page;
        if (p->cursorpages) {
            sbuf_printf(b, "{\"items\":[%llu,%llu],\"meta\":{\"next_cursor\":", k * 10 + 1,
                        k * 10 + 2);
            if (k < p->pages) {
                sbuf_printf(b, "\"%llu\"}}", k + 1);
            } else {
                sbuf_puts(b, "null}}");
            }
        } else {
            sbuf_printf(b, "{\"page\":%llu,\"items\":[%llu,%llu],\"next\":", k, k * 10 + 1,
                        k * 10 + 2);
            if (p->next_url.len > 0) {
                json_string(b, p->next_url.data, p->next_url.len);
            } else {
                sbuf_puts(b, "null");
            }
            sbuf_puts(b, "}");
        }
        break;
    }
    case BODY_BOMB:
        sbuf_append(b, p->bomb_data->data, p->bomb_data->len);
        break;
    }
}

/*
 * Compress n bytes at in into out (replacing its contents) with zlib;
 * window_bits 31 gives the gzip format, 15 the zlib format.
 */
static void z_encode(struct sbuf *out, const char *in, size_t n, int window_bits)
{
    z_stream z;
    size_t off = 0;
    int flush;
    int rc;

    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        fprintf(stderr, "httpd: deflateInit2 failed\n");
        abort();
    }
    out->len = 0;
    do {
        size_t piece = n - off > (1U << 30) ? (1U << 30) : n - off;
        z.next_in = (Bytef *)(uintptr_t)(in + off);
        z.avail_in = (uInt)piece;
        off += piece;
        flush = off == n ? Z_FINISH : Z_NO_FLUSH;
        do {
            sbuf_reserve(out, 64 * 1024);
            size_t room = out->cap - out->len;
            if (room > (1U << 30)) {
                room = 1U << 30;
            }
            z.next_out = (Bytef *)(out->data + out->len);
            z.avail_out = (uInt)room;
            rc = deflate(&z, flush);
            if (rc == Z_STREAM_ERROR) {
                abort();
            }
            out->len += room - z.avail_out;
        } while (z.avail_out == 0);
    } while (flush != Z_FINISH);
    if (rc != Z_STREAM_END) {
        abort();
    }
    deflateEnd(&z);
}

/* Run n bytes at in through the deflater z with the given flush mode, appending to out. */
static void z_feed(z_stream *z, struct sbuf *out, const char *in, size_t n, int flush)
{
    z->next_in = (Bytef *)(uintptr_t)in;
    z->avail_in = (uInt)n;
    do {
        sbuf_reserve(out, 64 * 1024);
        size_t room = out->cap - out->len;
        if (room > (1U << 30)) {
            room = 1U << 30;
        }
        z->next_out = (Bytef *)(out->data + out->len);
        z->avail_out = (uInt)room;
        if (deflate(z, flush) == Z_STREAM_ERROR) {
            abort();
        }
        out->len += room - z->avail_out;
    } while (z->avail_out == 0);
}

static void put_le32(struct sbuf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    sbuf_append(b, x, 4);
}

/*
 * bomb=N: a gzip stream of {"pad":"000...0"} (N bytes decoded) without ever
 * holding N bytes: a raw deflate stream is cut with Z_FULL_FLUSH (which
 * byte-aligns the output and stops back-references across the cut) around
 * one BOMB_SEG segment of '0's, whose compressed form is then repeated;
 * the gzip header and trailer (CRC-32 via crc32_combine, size) are written
 * by hand.
 */
static void bomb_build(struct sbuf *out, unsigned long long n)
{
    static const char prefix[] = "{\"pad\":\"";
    static const char suffix[] = "\"}";
    static const unsigned char gzip_head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    unsigned long long zeros = n - (sizeof prefix - 1) - (sizeof suffix - 1);
    unsigned long long segs = zeros / BOMB_SEG;
    size_t rest = (size_t)(zeros % BOMB_SEG);
    char *seg = xrealloc(NULL, BOMB_SEG);
    z_stream z;

    memset(seg, '0', BOMB_SEG);
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
        abort();
    }
    out->len = 0;
    sbuf_append(out, gzip_head, sizeof gzip_head);
    z_feed(&z, out, prefix, sizeof prefix - 1, Z_FULL_FLUSH);
    uLong crc = crc32(0L, (const Bytef *)prefix, sizeof prefix - 1);
    if (segs > 0) {
        size_t start = out->len;
        z_feed(&z, out, seg, BOMB_SEG, Z_FULL_FLUSH);
        size_t seg_len = out->len - start;
        sbuf_reserve(out, seg_len * (size_t)(segs - 1));
        for (unsigned long long i = 1; i < segs; i++) {
            memcpy(out->data + out->len, out->data + start, seg_len);
            out->len += seg_len;
        }
        uLong seg_crc = crc32(0L, (const Bytef *)seg, BOMB_SEG);
        for (unsigned long long i = 0; i < segs; i++) {
            crc = crc32_combine(crc, seg_crc, BOMB_SEG);
        }
    }
    z_feed(&z, out, seg, rest, Z_NO_FLUSH);
    z_feed(&z, out, suffix, sizeof suffix - 1, Z_FINISH);
    crc = crc32(crc, (const Bytef *)seg, (uInt)rest);
    crc = crc32(crc, (const Bytef *)suffix, sizeof suffix - 1);
    deflateEnd(&z);
    put_le32(out, (uint32_t)crc);
    put_le32(out, (uint32_t)n);
    free(seg);
}

/* The bomb=n stream from the cache, built (evicting the least recently used) if needed. */
static const struct sbuf *bomb_get(struct server *s, unsigned long long n)
{
    struct bomb_entry *victim = &s->bombs[0];

    s->bomb_clock++;
    for (size_t i = 0; i < BOMB_CACHE; i++) {
        struct bomb_entry *e = &s->bombs[i];
        if (e->n == n) {
            e->used = s->bomb_clock;
            return &e->data;
        }
        if (e->used < victim->used) {
            victim = e;
        }
    }
    bomb_build(&victim->data, n);
    victim->n = n;
    victim->used = s->bomb_clock;
    return &victim->data;
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
        if (p->kind != BODY_BOMB) {
            for (size_t i = 0; i < p->n_enc; i++) {
                struct sbuf *enc = &c->srv->scratch2;
                struct sbuf tmp;
                z_encode(enc, body->data, body->len, p->enc[i] == ENC_GZIP ? 31 : 15);
                tmp = *enc; /* swap: the encoded bytes become the body */
                *enc = *body;
                *body = tmp;
            }
        }
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
    const char *ctype = p->ctype       ? p->ctype
                        : p->def_ctype ? p->def_ctype
                                       : (p->kind == BODY_HTML ? "text/html" : "application/json");
    if (*ctype) {
        sbuf_printf(&c->out, "Content-Type: %s\r\n", ctype);
    }
    if (!bodiless && !p->stream) {
        if (p->kind == BODY_BOMB) {
            sbuf_puts(&c->out, "Content-Encoding: gzip\r\n");
        } else if (p->n_enc > 0) {
            sbuf_puts(&c->out, "Content-Encoding: ");
            for (size_t i = 0; i < p->n_enc; i++) {
                sbuf_puts(&c->out, i ? ", " : "");
                sbuf_puts(&c->out, p->enc[i] == ENC_GZIP ? "gzip" : "deflate");
            }
            sbuf_puts(&c->out, "\r\n");
        }
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
    for (unsigned long long i = 0; i < p->manyheaders; i++) {
        sbuf_printf(&c->out, "X-Many: %llu\r\n", i);
    }
    sbuf_append(&c->out, p->hdrs.data, p->hdrs.len);
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
    if (c->srv->scratch2.cap > SCRATCH_KEEP_CAP) {
        sbuf_free(&c->srv->scratch2);
    }
}

/* ------------------------------------------------------------------------ */
/* Special paths, request log, tokens                                        */
/* ------------------------------------------------------------------------ */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* First header of request r named want (case-insensitive); false if absent. */
static bool find_header(const struct request *r, const char *want, const char **value,
                        size_t *value_len)
{
    const char *pos = r->headers;
    const char *lim = r->headers + r->headers_len;
    const char *name;
    size_t nlen;

    while (next_header(&pos, lim, &name, &nlen, value, value_len) > 0) {
        if (name_is(name, nlen, want)) {
            return true;
        }
    }
    return false;
}

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Append the standard base64 encoding (with padding) of n bytes at data. */
static void base64_encode(struct sbuf *b, const char *data, size_t n)
{
    const unsigned char *s = (const unsigned char *)data;

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        if (i + 1 < n) {
            v |= (unsigned)s[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= s[i + 2];
        }
        char out[4] = {b64_chars[(v >> 18) & 63], b64_chars[(v >> 12) & 63],
                       i + 1 < n ? b64_chars[(v >> 6) & 63] : '=',
                       i + 2 < n ? b64_chars[v & 63] : '='};
        sbuf_append(b, out, 4);
    }
}

/* Decode standard base64 (padding optional) into b; false if malformed. */
static bool base64_decode(struct sbuf *b, const char *s, size_t n)
{
    unsigned v = 0;
    int bits = 0;
    size_t i = 0;

    for (; i < n && s[i] != '='; i++) {
        const char *q = s[i] ? strchr(b64_chars, s[i]) : NULL;
        if (!q) {
            return false;
        }
        v = (v << 6) | (unsigned)(q - b64_chars);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char ch = (char)((v >> bits) & 0xff);
            sbuf_append(b, &ch, 1);
        }
    }
    for (; i < n; i++) {
        if (s[i] != '=') {
            return false;
        }
    }
    return true;
}

/*
 * If the Authorization value v is "<scheme> <credentials>" (scheme
 * case-insensitive, one or more spaces), point cred at the credentials.
 */
static bool auth_scheme(const char *v, size_t n, const char *scheme, const char **cred,
                        size_t *cred_len)
{
    size_t sl = strlen(scheme);

    if (n <= sl || strncasecmp(v, scheme, sl) != 0 || v[sl] != ' ') {
        return false;
    }
    size_t i = sl;
    while (i < n && v[i] == ' ') {
        i++;
    }
    *cred = v + i;
    *cred_len = n - i;
    return true;
}

/* A 200 JSON response for a special path (honours HEAD and keep-alive). */
static void build_simple(struct conn *c, const char *body, size_t n)
{
    sbuf_printf(&c->out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n", n);
    append_connection(c);
    sbuf_puts(&c->out, "\r\n");
    if (!c->req.is_head) {
        sbuf_append(&c->out, body, n);
    }
    c->mode = MODE_SEND;
}

/* Build the /__stats response. */
static void build_stats(struct conn *c)
{
    struct server *s = c->srv;
    char body[200];
    int n = snprintf(body, sizeof body,
                     "{\"requests\":%llu,\"connections\":%llu,\"active\":%llu,"
                     "\"tokens_issued\":%zu}",
                     s->requests, s->connections, s->active, s->tokens_len);

    build_simple(c, body, (size_t)n);
}

/* Remember request r (counter value n, body req_body) in the /__requests log. */
static void log_request(struct server *s, const struct request *r, const char *req_body,
                        unsigned long long n)
{
    struct log_entry *e;

    if (!s->log) {
        s->log = xrealloc(NULL, LOG_MAX * sizeof *s->log);
        memset(s->log, 0, LOG_MAX * sizeof *s->log);
    }
    if (s->log_len < LOG_MAX) {
        e = &s->log[(s->log_first + s->log_len) % LOG_MAX];
        s->log_len++;
    } else {
        e = &s->log[s->log_first];
        s->log_first = (s->log_first + 1) % LOG_MAX;
    }
    e->n = n;
    e->method_len = r->method_len;
    e->target_len = r->target_len;
    e->headers_len = r->headers_len;
    e->body_len = r->body_len < LOG_BODY_MAX ? r->body_len : LOG_BODY_MAX;
    if (e->data.cap > OUT_KEEP_CAP) {
        sbuf_free(&e->data);
    }
    e->data.len = 0;
    sbuf_append(&e->data, r->method, r->method_len);
    sbuf_append(&e->data, r->target, r->target_len);
    sbuf_append(&e->data, r->headers, r->headers_len);
    sbuf_append(&e->data, req_body, e->body_len);
}

/*
 * Append a header block (CRLF-terminated lines) as a JSON object; repeated
 * names (case-insensitive) are combined under the first spelling, values
 * joined by ", ".
 */
static void json_headers_combined(struct sbuf *b, const char *hdrs, size_t len)
{
    const char *lim = hdrs + len;
    const char *pos = hdrs;
    const char *name;
    const char *value;
    size_t nlen;
    size_t vlen;
    struct sbuf joined = {0};
    bool first = true;

    sbuf_puts(b, "{");
    for (;;) {
        const char *here = pos;
        if (next_header(&pos, lim, &name, &nlen, &value, &vlen) <= 0) {
            break;
        }
        /* seen before? */
        const char *p2 = hdrs;
        const char *n2;
        const char *v2;
        size_t n2len;
        size_t v2len;
        bool seen = false;
        while (p2 < here && next_header(&p2, here, &n2, &n2len, &v2, &v2len) > 0) {
            if (n2len == nlen && strncasecmp(n2, name, nlen) == 0) {
                seen = true;
                break;
            }
        }
        if (seen) {
            continue;
        }
        joined.len = 0;
        sbuf_append(&joined, value, vlen);
        p2 = pos;
        while (next_header(&p2, lim, &n2, &n2len, &v2, &v2len) > 0) {
            if (n2len == nlen && strncasecmp(n2, name, nlen) == 0) {
                sbuf_puts(&joined, ", ");
                sbuf_append(&joined, v2, v2len);
            }
        }
        sbuf_puts(b, first ? "" : ",");
        first = false;
        json_string(b, name, nlen);
        sbuf_puts(b, ":");
        json_string(b, joined.data ? joined.data : "", joined.len);
    }
    sbuf_puts(b, "}");
    sbuf_free(&joined);
}

/* Build the /__requests response. */
static void build_requests(struct conn *c)
{
    struct server *s = c->srv;
    struct sbuf *b = &s->scratch;

    b->len = 0;
    sbuf_puts(b, "{\"requests\":[");
    for (size_t i = 0; i < s->log_len; i++) {
        const struct log_entry *e = &s->log[(s->log_first + i) % LOG_MAX];
        const char *d = e->data.data;
        sbuf_printf(b, "%s{\"n\":%llu,\"method\":", i ? "," : "", e->n);
        json_string(b, d, e->method_len);
        d += e->method_len;
        sbuf_puts(b, ",\"target\":");
        json_string(b, d, e->target_len);
        d += e->target_len;
        sbuf_puts(b, ",\"headers\":");
        json_headers_combined(b, d, e->headers_len);
        d += e->headers_len;
        sbuf_puts(b, ",\"body\":");
        json_string(b, d, e->body_len);
        sbuf_puts(b, "}");
    }
    sbuf_puts(b, "]}");
    build_simple(c, b->data, b->len);
    if (b->cap > SCRATCH_KEEP_CAP) {
        sbuf_free(b);
    }
}

static void free_fail_counters(struct server *s)
{
    while (s->fails) {
        struct fail_counter *f = s->fails;
        s->fails = f->next;
        free(f);
    }
}

static void ingest_reset(struct server *s);

/* /__reset: empty the log, zero the request counter, forget fail= counters
 * and what the ingest receiver got. */
static void server_reset(struct server *s)
{
    s->log_first = 0;
    s->log_len = 0;
    s->requests = 0;
    free_fail_counters(s);
    ingest_reset(s);
}

/* Is token tok-<i> (1-based) issued, unexpired and not revoked? */
static bool token_index_valid(const struct server *s, unsigned long long i, double now)
{
    return i >= 1 && i <= s->tokens_len && i > s->tokens_revoked && now < s->tokens[i - 1];
}

/* /__revoke: returns how many tokens were still valid. */
static unsigned long long revoke_tokens(struct server *s)
{
    double now = mono_now();
    unsigned long long n = 0;

    for (size_t i = 1; i <= s->tokens_len; i++) {
        n += token_index_valid(s, i, now);
    }
    s->tokens_revoked = s->tokens_len;
    return n;
}

/* Is "tok-<n>" (len bytes) a valid access token? */
static bool token_valid(const struct server *s, const char *tok, size_t len)
{
    unsigned long long i;

    return len > 4 && memcmp(tok, "tok-", 4) == 0 && parse_number(tok + 4, len - 4, MAX_COUNT, &i) &&
           token_index_valid(s, i, mono_now());
}

/* Issue a new token valid for secs seconds; returns its number. */
static size_t token_issue(struct server *s, unsigned long long secs)
{
    if (s->tokens_len == s->tokens_cap) {
        s->tokens_cap = s->tokens_cap ? s->tokens_cap * 2 : 16;
        s->tokens = xrealloc(s->tokens, s->tokens_cap * sizeof *s->tokens);
    }
    s->tokens[s->tokens_len++] = mono_now() + (double)secs;
    return s->tokens_len;
}

/* The fail= counter of the target key (len bytes), created at 0. */
static unsigned long long *fail_counter(struct server *s, const char *key, size_t len)
{
    struct fail_counter *f;

    for (f = s->fails; f; f = f->next) {
        if (f->len == len && memcmp(f->key, key, len) == 0) {
            return &f->count;
        }
    }
    f = xrealloc(NULL, sizeof *f + len + 1);
    f->count = 0;
    f->len = len;
    memcpy(f->key, key, len);
    f->key[len] = '\0';
    f->next = s->fails;
    s->fails = f;
    return &f->count;
}

/* Make the plan a generated response: status and a fixed body. */
__attribute__((format(printf, 3, 4))) static void plan_generate(struct plan *p, int status,
                                                                 const char *fmt, ...)
{
    va_list ap;
    char small[256];

    p->status = status;
    p->kind = BODY_GEN;
    p->def_ctype = NULL;
    p->gen.len = 0;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n > 0) {
        sbuf_append(&p->gen, small, (size_t)n < sizeof small ? (size_t)n : sizeof small - 1);
    }
}

/*
 * The need_* checks; returns true when they pass, else turns the plan
 * into the 401 response.
 */
static bool check_auth(struct conn *c, struct plan *p)
{
    const struct request *r = &c->req;
    const char *v = NULL;
    size_t vlen = 0;
    const char *cred;
    size_t clen;

    if (!p->need_basic && !p->need_bearer && !p->need_token) {
        return true;
    }
    bool have = find_header(r, "Authorization", &v, &vlen);

    if (p->need_basic) {
        struct sbuf want = {0};
        base64_encode(&want, p->need_basic, strlen(p->need_basic));
        bool ok = have && auth_scheme(v, vlen, "Basic", &cred, &clen) && clen == want.len &&
                  memcmp(cred, want.data, clen) == 0;
        sbuf_free(&want);
        if (!ok) {
            plan_generate(p, 401, "{\"error\":\"unauthorized\"}");
            sbuf_puts(&p->hdrs, "WWW-Authenticate: Basic realm=\"t\"\r\n");
            return false;
        }
    }
    if (p->need_bearer) {
        size_t tl = strlen(p->need_bearer);
        if (!(have && auth_scheme(v, vlen, "Bearer", &cred, &clen) && clen == tl &&
              memcmp(cred, p->need_bearer, tl) == 0)) {
            plan_generate(p, 401, "{\"error\":\"unauthorized\"}");
            sbuf_puts(&p->hdrs, "WWW-Authenticate: Bearer realm=\"t\"\r\n");
            return false;
        }
    }
    if (p->need_token) {
        if (!(have && auth_scheme(v, vlen, "Bearer", &cred, &clen) &&
              token_valid(c->srv, cred, clen))) {
            plan_generate(p, 401, "{\"error\":\"invalid_token\"}");
            sbuf_puts(&p->hdrs,
                      "WWW-Authenticate: Bearer realm=\"t\", error=\"invalid_token\"\r\n");
            return false;
        }
    }
    return true;
}

/* Does the If-None-Match value v (n bytes) list "etag", W/"etag" or *? */
static bool etag_matches(const char *v, size_t n, const char *etag)
{
    size_t el = strlen(etag);
    size_t i = 0;

    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
            i++;
        }
        if (i >= n) {
            break;
        }
        if (v[i] == '*') {
            return true;
        }
        if (i + 1 < n && v[i] == 'W' && v[i + 1] == '/') {
            i += 2;
        }
        if (i < n && v[i] == '"') {
            const char *close = memchr(v + i + 1, '"', n - i - 1);
            if (!close) {
                return false;
            }
            size_t tl = (size_t)(close - (v + i + 1));
            if (tl == el && memcmp(v + i + 1, etag, el) == 0) {
                return true;
            }
            i = (size_t)(close - v) + 1;
        }
        while (i < n && v[i] != ',') {
            i++;
        }
    }
    return false;
}

/*
 * pages=: the URL of page k: the request's path and raw query with the
 * first page= replaced by page=k (later ones dropped; appended if absent).
 */
static void page_url(struct sbuf *out, const struct request *r, unsigned long long k)
{
    const char *q = r->query;
    const char *end = q ? q + r->query_len : NULL;
    bool done = false;
    bool first = true;

    sbuf_append(out, r->path, r->path_len);
    sbuf_puts(out, "?");
    while (q && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        if (!amp) {
            amp = end;
        }
        const char *eq = memchr(q, '=', (size_t)(amp - q));
        size_t klen;
        char *key = url_decode(q, (size_t)((eq ? eq : amp) - q), &klen);
        if (amp > q) {
            if (strcmp(key, "page") != 0) {
                sbuf_puts(out, first ? "" : "&");
                sbuf_append(out, q, (size_t)(amp - q));
                first = false;
            } else if (!done) {
                sbuf_printf(out, "%spage=%llu", first ? "" : "&", k);
                first = false;
                done = true;
            }
        }
        free(key);
        q = amp + 1;
    }
    if (!done) {
        sbuf_printf(out, "%spage=%llu", first ? "" : "&", k);
    }
}

/* Value of the form field want in the urlencoded body (malloc'ed), or NULL. */
static char *form_field(const char *body, size_t n, const char *want)
{
    const char *q = body;
    const char *end = body + n;
    char *found = NULL;

    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        if (!amp) {
            amp = end;
        }
        const char *eq = memchr(q, '=', (size_t)(amp - q));
        const char *kend = eq ? eq : amp;
        const char *vstart = eq ? eq + 1 : amp;
        size_t klen;
        size_t vlen;
        char *key = url_decode(q, (size_t)(kend - q), &klen);
        if (strcmp(key, want) == 0) {
            free(found);
            found = url_decode(vstart, (size_t)(amp - vstart), &vlen);
        }
        free(key);
        q = amp + 1;
    }
    return found;
}

/* Does the presented credential (n bytes, maybe URL-encoded) equal want? */
static bool cred_matches(const char *got, size_t n, const char *want)
{
    size_t dl;
    bool ok = strlen(want) == n && memcmp(got, want, n) == 0;

    if (!ok) {
        char *dec = url_decode(got, n, &dl);
        ok = strlen(want) == dl && memcmp(dec, want, dl) == 0;
        free(dec);
    }
    return ok;
}

/* The /token endpoint (see the header comment); turns the plan into its response. */
static void token_endpoint(struct conn *c, struct plan *p, const char *req_body)
{
    const struct request *r = &c->req;
    const char *v;
    size_t vlen;
    const char *cred;
    size_t clen;
    struct sbuf basic = {0};
    char *id = NULL;
    char *secret = NULL;
    bool id_ok;
    bool secret_ok;

    if (!name_is(r->method, r->method_len, "POST")) {
        plan_generate(p, 405, "{\"error\":\"invalid_request\"}");
        sbuf_puts(&p->hdrs, "Allow: POST\r\n");
        return;
    }
    if (p->token_fail) {
        plan_generate(p, 500, "{\"error\":\"server_error\"}");
        return;
    }
    if (find_header(r, "Authorization", &v, &vlen) &&
        auth_scheme(v, vlen, "Basic", &cred, &clen) && base64_decode(&basic, cred, clen)) {
        const char *colon = basic.data ? memchr(basic.data, ':', basic.len) : NULL;
        size_t il = colon ? (size_t)(colon - basic.data) : basic.len;
        id_ok = !p->client_id || cred_matches(basic.data ? basic.data : "", il, p->client_id);
        secret_ok = !p->client_secret ||
                    (colon && cred_matches(colon + 1, basic.len - il - 1, p->client_secret));
    } else {
        id = form_field(req_body, r->body_len, "client_id");
        secret = form_field(req_body, r->body_len, "client_secret");
        id_ok = !p->client_id || (id && strcmp(id, p->client_id) == 0);
        secret_ok = !p->client_secret || (secret && strcmp(secret, p->client_secret) == 0);
    }
    sbuf_free(&basic);
    free(id);
    free(secret);
    if (!id_ok || !secret_ok) {
        plan_generate(p, 401, "{\"error\":\"invalid_client\"}");
        sbuf_puts(&p->hdrs, "WWW-Authenticate: Basic realm=\"t\"\r\n");
        return;
    }
    char *grant = form_field(req_body, r->body_len, "grant_type");
    if (!grant) {
        plan_generate(p, 400, "{\"error\":\"invalid_request\"}");
    } else if (strcmp(grant, "client_credentials") != 0) {
        plan_generate(p, 400, "{\"error\":\"unsupported_grant_type\"}");
    } else {
        size_t n = token_issue(c->srv, p->expires_in);
        plan_generate(p, 200,
                      "{\"access_token\":\"tok-%zu\",\"token_type\":\"Bearer\",\"expires_in\":%llu}",
                      n, p->expires_in);
        sbuf_puts(&p->hdrs, "Cache-Control: no-store\r\n");
    }
    free(grant);
}

/*
 * Decide the response of a counted request (see "Order of evaluation" in
 * the header comment): fills the plan's status, body kind and generated
 * headers.
 */
static void route_request(struct conn *c, struct plan *p, const char *req_body)
{
    struct server *s = c->srv;
    const struct request *r = &c->req;
    bool is_token = r->path_len == 6 && memcmp(r->path, "/token", 6) == 0;
    const char *v;
    size_t vlen;

    if (p->retry_after && p->fail == 0) {
        sbuf_printf(&p->hdrs, "Retry-After: %s\r\n", p->retry_after);
    }
    if (!is_token && !check_auth(c, p)) {
        return;
    }
    if (p->fail > 0) {
        /* the target without an absolute-form prefix: path ["?" query] */
        struct sbuf key = {0};
        sbuf_append(&key, r->path, r->path_len);
        if (r->query) {
            sbuf_puts(&key, "?");
            sbuf_append(&key, r->query, r->query_len);
        }
        unsigned long long *cnt = fail_counter(s, key.data, key.len);
        sbuf_free(&key);
        if (*cnt < p->fail) {
            (*cnt)++;
            plan_generate(p, p->fail_status,
                          "{\"error\":\"injected failure\",\"attempt\":%llu,\"of\":%llu}", *cnt,
                          p->fail);
            if (p->retry_after) {
                sbuf_printf(&p->hdrs, "Retry-After: %s\r\n", p->retry_after);
            }
            return;
        }
    }
    if (is_token) {
        token_endpoint(c, p, req_body);
        return;
    }
    if (p->redirect || p->loop) {
        p->status = p->redirect_status;
        p->kind = BODY_GEN;
        sbuf_puts(&p->hdrs, "Location: ");
        if (p->redirect) {
            sbuf_puts(&p->hdrs, p->redirect);
        } else {
            sbuf_append(&p->hdrs, r->target, r->target_len);
        }
        sbuf_puts(&p->hdrs, "\r\n");
        sbuf_puts(&p->gen, "{\"location\":");
        if (p->redirect) {
            json_string(&p->gen, p->redirect, strlen(p->redirect));
        } else {
            json_string(&p->gen, r->target, r->target_len);
        }
        sbuf_puts(&p->gen, "}");
        return;
    }

    /* conditional requests */
    if (p->etag) {
        sbuf_printf(&p->hdrs, "ETag: \"%s\"\r\n", p->etag);
    }
    if (p->lastmod) {
        sbuf_printf(&p->hdrs, "Last-Modified: %s\r\n", p->lastmod);
    }
    if (p->etag && find_header(r, "If-None-Match", &v, &vlen)) {
        if (etag_matches(v, vlen, p->etag)) {
            p->status = 304;
            p->kind = BODY_EMPTY;
            return;
        }
    } else if (p->lastmod && find_header(r, "If-Modified-Since", &v, &vlen)) {
        if (vlen == strlen(p->lastmod) && memcmp(v, p->lastmod, vlen) == 0) {
            p->status = 304;
            p->kind = BODY_EMPTY;
            return;
        }
    }

    /* the normal response: body sources */
    if (p->bomb) {
        p->kind = BODY_BOMB;
        p->bomb_data = bomb_get(s, p->bomb);
    } else if (p->ndjson_on) {
        p->kind = BODY_NDJSON;
        p->def_ctype = "application/x-ndjson";
    } else if (p->pages) {
        unsigned long long k = p->cur_page;
        if (k == 0) {
            plan_generate(p, 404, "{\"error\":\"no such page\"}");
            return;
        }
        p->kind = BODY_PAGES;
        if (!p->cursorpages) {
            if (k < p->pages) {
                page_url(&p->next_url, r, k + 1);
            }
            if (k > 1) {
                page_url(&p->prev_url, r, k - 1);
            }
            if (p->next_url.len || p->prev_url.len) {
                sbuf_puts(&p->hdrs, "Link: ");
                if (p->next_url.len) {
                    sbuf_puts(&p->hdrs, "<");
                    sbuf_append(&p->hdrs, p->next_url.data, p->next_url.len);
                    sbuf_puts(&p->hdrs, ">; rel=\"next\"");
                }
                if (p->prev_url.len) {
                    sbuf_puts(&p->hdrs, p->next_url.len ? ", <" : "<");
                    sbuf_append(&p->hdrs, p->prev_url.data, p->prev_url.len);
                    sbuf_puts(&p->hdrs, ">; rel=\"prev\"");
                }
                sbuf_puts(&p->hdrs, "\r\n");
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Connection state machine                                                  */
/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* Socket I/O, plain or TLS                                                  */
/* ------------------------------------------------------------------------ */

/*
 * recv() or SSL_read(): > 0 bytes read, 0 at EOF (TLS: close_notify or a
 * plain EOF), -1 with errno EAGAIN when nothing is available yet (TLS: also
 * when SSL_read needs the socket writable first: then wio is started and
 * conn_write_cb retries the read) or another errno on failure.
 */
static ssize_t conn_recv(struct conn *c, void *buf, size_t n)
{
    if (!c->ssl) {
        return recv(c->fd, buf, n, 0);
    }
    if (n > INT_MAX) {
        n = INT_MAX;
    }
    c->tls_read_wants_write = false;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_read(c->ssl, buf, (int)n);
    if (rc > 0) {
        return rc;
    }
    int saved = errno;
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        c->tls_read_wants_write = true;
        ev_io_start(c->srv->loop, &c->wio);
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (saved == 0 && ERR_peek_error() == 0) {
            return 0; /* EOF without close_notify */
        }
        c->tls_no_shutdown = true;
        errno = saved ? saved : ECONNRESET;
        return -1;
    default:
        c->tls_no_shutdown = true;
        ERR_clear_error();
        errno = ECONNRESET;
        return -1;
    }
}

/*
 * send() or SSL_write() (partial writes enabled, the buffer may move
 * between retries): > 0 bytes written, -1 with errno EAGAIN when the
 * socket is full (TLS: also when SSL_write needs to read first, flagged in
 * tls_write_wants_read) or another errno on failure.
 */
static ssize_t conn_send(struct conn *c, const void *buf, size_t n)
{
    if (!c->ssl) {
        return send(c->fd, buf, n, MSG_NOSIGNAL);
    }
    if (n > INT_MAX) {
        n = INT_MAX;
    }
    c->tls_write_wants_read = false;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_write(c->ssl, buf, (int)n);
    if (rc > 0) {
        return rc;
    }
    int saved = errno;
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_READ:
        c->tls_write_wants_read = true;
        errno = EAGAIN;
        return -1;
    default:
        c->tls_no_shutdown = true;
        ERR_clear_error();
        errno = saved && saved != EAGAIN ? saved : EPIPE;
        return -1;
    }
}

/* Stop all watchers, close the socket, free everything about c. */
static void conn_close(struct conn *c)
{
    struct server *s = c->srv;

    ev_io_stop(s->loop, &c->rio);
    ev_io_stop(s->loop, &c->wio);
    ev_timer_stop(s->loop, &c->timer);
    if (c->ssl) {
        if (!c->tls_no_shutdown && SSL_is_init_finished(c->ssl)) {
            SSL_shutdown(c->ssl); /* best effort close_notify */
        }
        SSL_free(c->ssl);
        ERR_clear_error();
    }
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
    c->tls_no_shutdown = true;
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
    if (c->ssl && !c->tls_no_shutdown) {
        SSL_shutdown(c->ssl); /* close_notify before the FIN */
        ERR_clear_error();
        c->tls_no_shutdown = true;
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
    if (c->in.len > 0 || (c->ssl && SSL_pending(c->ssl) > 0)) {
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
            ssize_t n = conn_send(c, c->out.data + c->out_off, c->out.len - c->out_off);
            if (n > 0) {
                c->out_off += (size_t)n;
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (c->tls_write_wants_read) {
                    ev_io_start(loop, &c->rio); /* retried from conn_read_cb */
                } else {
                    ev_io_start(loop, &c->wio);
                }
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
    if (!c->tls_read_wants_write) {
        ev_io_stop(loop, &c->wio);
    }
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

static bool path_is(const struct request *r, const char *want)
{
    size_t n = strlen(want);
    return r->path_len == n && memcmp(r->path, want, n) == 0;
}

/* ------------------------------------------------------------------------ */
/* Ingest receiver                                                           */
/* ------------------------------------------------------------------------ */

#define ILOG_MAX 100000    /* /__ingest log entries */
#define SLOW_DEFAULT_MS 100 /* slow: ms per body byte */

static bool handle_request(struct conn *c);

static unsigned long long fnv1a(const char *d, size_t n)
{
    unsigned long long h = 1469598103934665603ULL;

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)d[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static struct iset_entry *iset_find(const struct iset *st, const char *d, size_t n,
                                    unsigned long long h)
{
    if (!st->nb) {
        return NULL;
    }
    for (struct iset_entry *e = st->b[h & (st->nb - 1)]; e; e = e->next) {
        if (e->hash == h && e->len == n && memcmp(e->data, d, n) == 0) {
            return e;
        }
    }
    return NULL;
}

/* Adds d (not in the set yet) with a copy of tag. */
static struct iset_entry *iset_add(struct iset *st, const char *d, size_t n, unsigned long long h,
                                   const char *tag)
{
    if (st->n >= st->nb) {
        size_t nb = st->nb ? st->nb * 2 : 1024;
        struct iset_entry **b = xrealloc(NULL, nb * sizeof *b);
        memset(b, 0, nb * sizeof *b);
        for (size_t i = 0; i < st->nb; i++) {
            struct iset_entry *e = st->b[i];
            while (e) {
                struct iset_entry *next = e->next;
                e->next = b[e->hash & (nb - 1)];
                b[e->hash & (nb - 1)] = e;
                e = next;
            }
        }
        free(st->b);
        st->b = b;
        st->nb = nb;
    }
    struct iset_entry *e = xrealloc(NULL, sizeof *e + n + 1);
    e->hash = h;
    e->len = n;
    memcpy(e->data, d, n);
    e->data[n] = '\0';
    size_t tl = tag ? strlen(tag) : 0;
    e->tag = xrealloc(NULL, tl + 1);
    memcpy(e->tag, tag ? tag : "", tl + 1);
    e->next = st->b[h & (st->nb - 1)];
    st->b[h & (st->nb - 1)] = e;
    st->n++;
    return e;
}

static void iset_free(struct iset *st)
{
    for (size_t i = 0; i < st->nb; i++) {
        while (st->b[i]) {
            struct iset_entry *e = st->b[i];
            st->b[i] = e->next;
            free(e->tag);
            free(e);
        }
    }
    free(st->b);
    memset(st, 0, sizeof *st);
}

/* Forget everything the ingest receiver got, and its mode. */
static void ingest_reset(struct server *s)
{
    iset_free(&s->irecs);
    iset_free(&s->ikeys);
    free(s->iorder);
    s->iorder = NULL;
    s->iorder_cap = 0;
    free(s->ilog);
    s->ilog = NULL;
    s->ilog_len = s->ilog_cap = 0;
    s->i_requests = s->i_accepted = s->i_records = s->i_dup_same = s->i_dup_other = 0;
    s->i_keyless = s->i_bad = 0;
    memset(&s->imode, 0, sizeof s->imode);
    s->imode_set = false;
}

static bool has_prefix(const char *s, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(end - s) >= n && memcmp(s, lit, n) == 0;
}

/*
 * Parse one step s[0..n): WORD[:OPTION]... (see "Ingest receiver").
 * retry-after= takes the rest of the step (an HTTP-date has colons).
 */
static bool step_parse(const char *s, size_t n, struct ingest_step *st)
{
    const char *end = s + n;
    const char *colon = memchr(s, ':', n);
    const char *wend = colon ? colon : end;
    size_t wl = (size_t)(wend - s);
    unsigned long long v;

    memset(st, 0, sizeof *st);
    st->kind = STEP_STATUS;
    st->status = 200;
    st->ms = SLOW_DEFAULT_MS;
    if (wl == 2 && memcmp(s, "ok", 2) == 0) {
        /* 200 */
    } else if (wl == 4 && memcmp(s, "down", 4) == 0) {
        st->kind = STEP_DOWN;
    } else if (wl == 5 && memcmp(s, "reset", 5) == 0) {
        st->kind = STEP_RESET;
    } else if (wl == 4 && memcmp(s, "slow", 4) == 0) {
        st->kind = STEP_SLOW;
    } else if (wl == 3 && parse_number(s, wl, 999, &v) && v >= 100) {
        st->status = (int)v;
    } else {
        return false;
    }
    for (const char *o = colon; o && o < end;) {
        o++;
        const char *oe = memchr(o, ':', (size_t)(end - o));
        if (!oe) {
            oe = end;
        }
        if (has_prefix(o, end, "retry-after=")) {
            const char *val = o + 12;
            size_t vl = (size_t)(end - val);
            if (vl == 0 || vl >= sizeof st->retry_after || !header_value_ok(val, vl)) {
                return false;
            }
            memcpy(st->retry_after, val, vl);
            st->retry_after[vl] = '\0';
            break;
        }
        if (has_prefix(o, oe, "ms=") && parse_number(o + 3, (size_t)(oe - o - 3), MAX_MS, &v) &&
            v > 0) {
            st->ms = v;
        } else {
            return false;
        }
        o = oe;
    }
    return true;
}

/* The step as text, for /__ingest's "mode". */
static void step_format(struct sbuf *b, const struct ingest_step *st)
{
    switch (st->kind) {
    case STEP_DOWN:
        sbuf_puts(b, "down");
        return;
    case STEP_RESET:
        sbuf_puts(b, "reset");
        return;
    case STEP_SLOW:
        sbuf_printf(b, "slow:ms=%llu", st->ms);
        return;
    case STEP_STATUS:
        sbuf_printf(b, "%d", st->status);
        if (st->retry_after[0]) {
            sbuf_printf(b, ":retry-after=%s", st->retry_after);
        }
        return;
    }
}

/* The URL-decoded value of the first query parameter named key
 * (malloc'd, length in *vlen), or NULL. */
static char *query_param(const char *q, size_t n, const char *key, size_t *vlen)
{
    const char *end = q + n;
    size_t kl = strlen(key);

    while (q && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        if (!amp) {
            amp = end;
        }
        const char *eq = memchr(q, '=', (size_t)(amp - q));
        if (eq && (size_t)(eq - q) == kl && memcmp(q, key, kl) == 0) {
            return url_decode(eq + 1, (size_t)(amp - eq - 1), vlen);
        }
        q = amp + 1;
    }
    return NULL;
}

/* What the current /ingest request gets: the mode, else its script's
 * next step, else 200; a bad script gets 400. */
static void ingest_decide(struct conn *c)
{
    struct server *s = c->srv;
    const struct request *r = &c->req;
    struct ingest_step *st = &c->istep;
    size_t vlen = 0;

    step_parse("200", 3, st);
    if (s->imode_set) {
        *st = s->imode;
        return;
    }
    char *script = r->query ? query_param(r->query, r->query_len, "script", &vlen) : NULL;
    if (!script) {
        return;
    }
    struct sbuf key = {0};
    sbuf_puts(&key, "\001script:");
    sbuf_append(&key, r->path, r->path_len);
    sbuf_puts(&key, "?");
    sbuf_append(&key, r->query, r->query_len);
    unsigned long long *cnt = fail_counter(s, key.data, key.len);
    sbuf_free(&key);
    unsigned long long k = (*cnt)++;
    const char *p = script;
    const char *end = script + vlen;
    for (unsigned long long i = 0; p <= end; i++) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *se = comma ? comma : end;
        if (!step_parse(p, (size_t)(se - p), i == k ? st : &(struct ingest_step){0})) {
            step_parse("400", 3, st);
            break;
        }
        if (i == k || !comma) {
            break;
        }
        p = comma + 1;
    }
    free(script);
}

/* Copy the first value of header name into out (at most outlen - 1 bytes). */
static void header_copy(const struct request *r, const char *name, char *out, size_t outlen)
{
    const char *v;
    size_t vl;

    out[0] = '\0';
    if (find_header(r, name, &v, &vl)) {
        if (vl >= outlen) {
            vl = outlen - 1;
        }
        memcpy(out, v, vl);
        out[vl] = '\0';
    }
}

static void ingest_log(struct server *s, const struct request *r, int result, size_t records,
                       size_t bytes)
{
    if (s->ilog_len >= ILOG_MAX) {
        return;
    }
    if (s->ilog_len == s->ilog_cap) {
        s->ilog_cap = s->ilog_cap ? s->ilog_cap * 2 : 256;
        s->ilog = xrealloc(s->ilog, s->ilog_cap * sizeof *s->ilog);
    }
    struct ingest_entry *e = &s->ilog[s->ilog_len++];
    e->n = s->i_requests;
    e->result = result;
    header_copy(r, "Idempotency-Key", e->key, sizeof e->key);
    header_copy(r, "Content-Type", e->ctype, sizeof e->ctype);
    e->records = records;
    e->bytes = bytes;
    e->ms = (mono_now() - s->t0) * 1000.0;
}

/* One record of an accepted request. */
static void ingest_record(struct server *s, const char *d, size_t n, const char *key)
{
    s->i_records++;
    if (n < 2 || d[0] != '{' || d[n - 1] != '}') {
        s->i_bad++;
    }
    unsigned long long h = fnv1a(d, n);
    struct iset_entry *e = iset_find(&s->irecs, d, n, h);
    if (!e) {
        e = iset_add(&s->irecs, d, n, h, key);
        if (s->irecs.n > s->iorder_cap) {
            s->iorder_cap = s->iorder_cap ? s->iorder_cap * 2 : 1024;
            s->iorder = xrealloc(s->iorder, s->iorder_cap * sizeof *s->iorder);
        }
        s->iorder[s->irecs.n - 1] = e;
    } else if (*key && strcmp(e->tag, key) == 0) {
        s->i_dup_same++;
    } else {
        s->i_dup_other++;
    }
}

static bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Take the records of an accepted request; returns how many. */
static size_t ingest_take(struct server *s, const struct request *r, const char *body, size_t len)
{
    char key[72];
    char ctype[64];
    size_t n = 0;

    header_copy(r, "Idempotency-Key", key, sizeof key);
    header_copy(r, "Content-Type", ctype, sizeof ctype);
    s->i_accepted++;
    if (!key[0]) {
        s->i_keyless++;
    } else if (!iset_find(&s->ikeys, key, strlen(key), fnv1a(key, strlen(key)))) {
        iset_add(&s->ikeys, key, strlen(key), fnv1a(key, strlen(key)), NULL);
    }
    if (strncasecmp(ctype, "application/json", 16) != 0) {
        /* JSON Lines */
        for (size_t i = 0; i < len;) {
            const char *nl = memchr(body + i, '\n', len - i);
            size_t e = nl ? (size_t)(nl - body) : len;
            size_t l = e - i;
            if (l && body[i + l - 1] == '\r') {
                l--;
            }
            if (l) {
                ingest_record(s, body + i, l, key);
                n++;
            }
            i = e + 1;
        }
        return n;
    }
    /* a JSON array: split its top-level elements */
    size_t i = 0;
    while (i < len && is_ws(body[i])) {
        i++;
    }
    if (i >= len || body[i] != '[') {
        s->i_bad++;
        return 0;
    }
    i++;
    while (i < len && is_ws(body[i])) {
        i++;
    }
    if (i < len && body[i] == ']') {
        return 0;
    }
    for (;;) {
        size_t start = i;
        int depth = 0;
        bool in_str = false;
        for (; i < len; i++) {
            char ch = body[i];
            if (in_str) {
                if (ch == '\\') {
                    i++;
                } else if (ch == '"') {
                    in_str = false;
                }
                continue;
            }
            if (ch == '"') {
                in_str = true;
            } else if (ch == '{' || ch == '[') {
                depth++;
            } else if (ch == '}' || ch == ']') {
                if (depth == 0) {
                    break;
                }
                depth--;
            } else if (ch == ',' && depth == 0) {
                break;
            }
        }
        if (i >= len) {
            s->i_bad++;
            return n;
        }
        size_t e = i;
        while (start < e && is_ws(body[start])) {
            start++;
        }
        while (e > start && is_ws(body[e - 1])) {
            e--;
        }
        ingest_record(s, body + start, e - start, key);
        n++;
        if (body[i] == ']') {
            return n;
        }
        i++;
    }
}

/*
 * The head of an /ingest request arrived: decide its step.  "down" resets
 * the connection at once.  Returns false if c was closed.
 */
static bool ingest_begin(struct conn *c)
{
    struct server *s = c->srv;

    c->ingest = true;
    ingest_decide(c);
    if (c->istep.kind == STEP_DOWN) {
        s->i_requests++;
        ingest_log(s, &c->req, -1, 0, 0);
        conn_reset(c);
        return false;
    }
    return true;
}

/* The complete /ingest request: take it (or not) and plan the answer. */
static void ingest_route(struct conn *c, struct plan *p, const char *req_body)
{
    struct server *s = c->srv;
    const struct request *r = &c->req;
    const struct ingest_step *st = &c->istep;

    s->i_requests++;
    if (st->kind == STEP_RESET) {
        size_t n = ingest_take(s, r, req_body, r->body_len);
        ingest_log(s, r, -2, n, r->body_len);
        p->close_now = true;
        return;
    }
    int status = st->kind == STEP_SLOW ? 200 : st->status;
    if (status >= 200 && status <= 299) {
        size_t n = ingest_take(s, r, req_body, r->body_len);
        ingest_log(s, r, status, n, r->body_len);
        plan_generate(p, status, "{\"ok\":true,\"records\":%zu}", n);
    } else {
        ingest_log(s, r, status, 0, r->body_len);
        plan_generate(p, status, "{\"error\":\"scripted\",\"status\":%d}", status);
    }
    if (st->retry_after[0]) {
        sbuf_printf(&p->hdrs, "Retry-After: %s\r\n", st->retry_after);
    }
}

/* slow: the client went away before the body was read. */
static void slow_gone(struct conn *c)
{
    struct server *s = c->srv;

    s->i_requests++;
    ingest_log(s, &c->req, -3, 0, c->req.body_len);
    conn_close(c);
}

/*
 * slow: start reading the body one byte per tick (bytes that came with the
 * head are "read" one per tick too).  Returns false if c was closed.
 */
static bool slow_begin(struct conn *c)
{
    struct request *r = &c->req;
    size_t avail = c->in.len - r->head_len;

    if (avail > r->body_len) {
        avail = r->body_len; /* pipelined bytes after the body are dropped */
    }
    r->body_buf = xrealloc(NULL, r->body_len ? r->body_len : 1);
    memcpy(r->body_buf, c->in.data + r->head_len, avail);
    c->slow_have = avail;
    r->body_got = 0;
    c->in.len = r->head_len;
    if (r->body_len == 0) {
        return handle_request(c);
    }
    c->state = ST_SLOW_BODY;
    ev_io_stop(c->srv->loop, &c->rio);
    double sec = (double)c->istep.ms / 1000.0;
    conn_timer_arm(c, sec, sec);
    if (r->expect_continue && !r->http10) {
        sbuf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        return conn_flush(c);
    }
    return true;
}

/* slow: one byte further. */
static void slow_tick(struct conn *c)
{
    struct request *r = &c->req;

    if (r->body_got < c->slow_have) {
        r->body_got++;
    } else {
        ssize_t n = conn_recv(c, r->body_buf + r->body_got, 1);
        if (n == 1) {
            r->body_got++;
            c->slow_have++;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            slow_gone(c);
            return;
        }
    }
    if (r->body_got < r->body_len && c->slow_have == r->body_len && !c->ssl) {
        /* everything is buffered: notice a client that gave up */
        char b;
        ssize_t k = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            slow_gone(c);
            return;
        }
    }
    if (r->body_got >= r->body_len) {
        ev_timer_stop(c->srv->loop, &c->timer);
        handle_request(c);
    }
}

/* Build the /__ingest response. */
static void build_ingest(struct conn *c)
{
    struct server *s = c->srv;
    const struct request *r = &c->req;
    struct sbuf *b = &s->scratch;
    size_t vlen = 0;
    char *want = r->query ? query_param(r->query, r->query_len, "records", &vlen) : NULL;
    bool with_records = want && parse_flag(want);

    free(want);
    b->len = 0;
    sbuf_printf(b,
                "{\"requests\":%llu,\"accepted\":%llu,\"records\":%llu,\"distinct\":%zu,"
                "\"dup_same_key\":%llu,\"dup_other_key\":%llu,\"keyless\":%llu,\"keys\":%zu,"
                "\"bad\":%llu,\"mode\":",
                s->i_requests, s->i_accepted, s->i_records, s->irecs.n, s->i_dup_same,
                s->i_dup_other, s->i_keyless, s->ikeys.n, s->i_bad);
    struct sbuf mode = {0};
    if (s->imode_set) {
        step_format(&mode, &s->imode);
    } else {
        sbuf_puts(&mode, "ok");
    }
    json_string(b, mode.data, mode.len);
    sbuf_free(&mode);
    sbuf_puts(b, ",\"log\":[");
    for (size_t i = 0; i < s->ilog_len; i++) {
        const struct ingest_entry *e = &s->ilog[i];
        sbuf_printf(b, "%s{\"n\":%llu,\"result\":%d,\"key\":", i ? "," : "", e->n, e->result);
        json_string(b, e->key, strlen(e->key));
        sbuf_printf(b, ",\"records\":%zu,\"bytes\":%zu,\"ms\":%.1f,\"ctype\":", e->records,
                    e->bytes, e->ms);
        json_string(b, e->ctype, strlen(e->ctype));
        sbuf_puts(b, "}");
    }
    sbuf_puts(b, "]");
    if (with_records) {
        sbuf_puts(b, ",\"distinct_records\":[");
        for (size_t i = 0; i < s->irecs.n; i++) {
            sbuf_puts(b, i ? "," : "");
            json_string(b, s->iorder[i]->data, s->iorder[i]->len);
        }
        sbuf_puts(b, "]");
    }
    sbuf_puts(b, "}");
    build_simple(c, b->data, b->len);
    if (b->cap > SCRATCH_KEEP_CAP) {
        sbuf_free(b);
    }
}

/* /__ingest_mode?step=STEP; false (with p->err) if STEP is bad. */
static bool ingest_set_mode(struct conn *c, struct plan *p)
{
    struct server *s = c->srv;
    const struct request *r = &c->req;
    size_t vlen = 0;
    char *v = r->query ? query_param(r->query, r->query_len, "step", &vlen) : NULL;
    struct ingest_step st;

    if (!v || !step_parse(v, vlen, &st)) {
        free(v);
        snprintf(p->err, sizeof p->err, "bad or missing step= for /__ingest_mode");
        return false;
    }
    free(v);
    s->imode = st;
    s->imode_set = !(st.kind == STEP_STATUS && st.status == 200 && !st.retry_after[0]);
    build_simple(c, "{\"ok\":true}", 11);
    return true;
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
    if (path_is(r, "/__stats")) {
        build_stats(c);
    } else if (path_is(r, "/__requests")) {
        build_requests(c);
    } else if (path_is(r, "/__reset")) {
        server_reset(s);
        build_simple(c, "{\"ok\":true}", 11);
    } else if (path_is(r, "/__revoke")) {
        char body[64];
        int n = snprintf(body, sizeof body, "{\"revoked\":%llu}", revoke_tokens(s));
        build_simple(c, body, (size_t)n);
    } else if (path_is(r, "/__ingest")) {
        build_ingest(c);
    } else if (path_is(r, "/__ingest_mode")) {
        ok = ingest_set_mode(c, &p);
    } else if (c->ingest) {
        ok = parse_query(&p, r->query, r->query_len);
        if (ok) {
            s->requests++;
            log_request(s, r, req_body, s->requests);
            ingest_route(c, &p, req_body);
            build_response(c, &p, req_body, s->requests);
        }
    } else {
        ok = parse_query(&p, r->query, r->query_len);
        if (ok) {
            s->requests++;
            log_request(s, r, req_body, s->requests);
            route_request(c, &p, req_body);
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

    c->ingest = false;
    if (path_is(r, "/ingest")) {
        if (!ingest_begin(c)) {
            return false;
        }
        if (c->istep.kind == STEP_SLOW) {
            return slow_begin(c);
        }
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

/*
 * Drive the non-blocking TLS handshake: wait for whichever direction
 * OpenSSL needs, switch to reading requests once it is done.  Returns
 * false if c was closed (handshake failure).
 */
static bool tls_handshake(struct conn *c)
{
    struct ev_loop *loop = c->srv->loop;

    ERR_clear_error();
    errno = 0;
    int rc = SSL_accept(c->ssl);
    if (rc == 1) {
        c->state = ST_READ_HEAD;
        ev_io_stop(loop, &c->wio);
        ev_io_start(loop, &c->rio);
        if (SSL_pending(c->ssl) > 0) {
            ev_feed_event(loop, &c->rio, EV_READ);
        }
        return true;
    }
    int saved = errno;
    int err = SSL_get_error(c->ssl, rc);
    if (err == SSL_ERROR_WANT_READ) {
        ev_io_stop(loop, &c->wio);
        ev_io_start(loop, &c->rio);
        return true;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        ev_io_stop(loop, &c->rio);
        ev_io_start(loop, &c->wio);
        return true;
    }
    unsigned long e = ERR_get_error();
    if (e != 0) {
        char msg[256];
        ERR_error_string_n(e, msg, sizeof msg);
        fprintf(stderr, "httpd: TLS handshake failed: %s\n", msg);
    } else if (saved != 0 && saved != ECONNRESET && saved != EPIPE) {
        fprintf(stderr, "httpd: TLS handshake failed: %s\n", strerror(saved));
    }
    ERR_clear_error();
    c->tls_no_shutdown = true;
    conn_close(c);
    return false;
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

    if (c->state == ST_HANDSHAKE) {
        tls_handshake(c);
        return;
    }
    if (c->state == ST_SLOW_BODY) {
        ev_io_stop(loop, w); /* the body is read by the timer */
        return;
    }
    if (c->tls_write_wants_read) {
        /* an SSL_write waits for input: retry it first */
        c->tls_write_wants_read = false;
        if (!conn_flush(c) || c->tls_write_wants_read) {
            return;
        }
    }
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

    /* TLS: what is discarded (hang, linger) is not worth decrypting */
    ssize_t n = dst == discard ? recv(c->fd, dst, room, 0) : conn_recv(c, dst, room);
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
    } else if (n > 0 && c->ssl && dst != discard && SSL_pending(c->ssl) > 0) {
        /* decrypted bytes wait inside OpenSSL: the socket will not say so */
        ev_feed_event(loop, &c->rio, EV_READ);
    }
}

/* Socket writable again. */
static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    (void)revents;

    if (c->state == ST_HANDSHAKE) {
        tls_handshake(c);
        return;
    }
    if (c->tls_read_wants_write) {
        /* an SSL_read waited for the socket to be writable: retry it */
        c->tls_read_wants_write = false;
        ev_feed_event(loop, &c->rio, EV_READ);
    }
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
    case ST_SLOW_BODY:
        slow_tick(c);
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
    if (s->tls) {
        c->ssl = SSL_new(s->tls);
        if (!c->ssl || !SSL_set_fd(c->ssl, fd)) {
            fprintf(stderr, "httpd: SSL_new failed\n");
            ERR_clear_error();
            SSL_free(c->ssl);
            close(fd);
            free(c);
            return;
        }
        SSL_set_accept_state(c->ssl);
        c->state = ST_HANDSHAKE;
    }
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

/* Create the non-blocking AF_UNIX listening socket at path; returns the fd. */
static int open_unix_listener(const char *path)
{
    struct sockaddr_un sa;
    struct stat st;

    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "httpd: unix socket path too long: %s\n", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            fprintf(stderr, "httpd: %s exists and is not a socket\n", path);
            return -1;
        }
        unlink(path); /* a stale socket */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("httpd: socket");
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        fprintf(stderr, "httpd: cannot listen on %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* ALPN: select http/1.1 if the client offers it, else answer without ALPN. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    (void)ssl;
    (void)arg;

    if (SSL_select_next_proto(&sel, &sel_len, ours, sizeof ours - 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        *outlen = sel_len;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* "1.2" / "1.3" to an OpenSSL protocol version, 0 if unknown. */
static int tls_version(const char *v)
{
    if (strcmp(v, "1.2") == 0) {
        return TLS1_2_VERSION;
    }
    if (strcmp(v, "1.3") == 0) {
        return TLS1_3_VERSION;
    }
    return 0;
}

/* The server's TLS context; NULL (after printing why) on failure. */
static SSL_CTX *tls_context(const char *cert, const char *key, const char *client_ca,
                            int min_version, int max_version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (!ctx) {
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
                                 | SSL_OP_IGNORE_UNEXPECTED_EOF
#endif
    );
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if ((min_version && !SSL_CTX_set_min_proto_version(ctx, min_version)) ||
        (max_version && !SSL_CTX_set_max_proto_version(ctx, max_version))) {
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        fprintf(stderr, "httpd: cannot load certificate %s\n", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(stderr, "httpd: cannot load private key %s (or it does not match)\n", key);
        goto fail;
    }
    if (client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
        if (!names || SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
            fprintf(stderr, "httpd: cannot load client CA %s\n", client_ca);
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    static const unsigned char sid_ctx[] = "fetchd-test-httpd";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
    return ctx;

fail:
    ERR_print_errors_fp(stderr);
    SSL_CTX_free(ctx);
    return NULL;
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
    fprintf(f, "usage: httpd [--port N] [--bind ADDR] [--port-file PATH] [--unix PATH]\n"
               "             [--tls-cert PATH --tls-key PATH [--tls-client-ca PATH]\n"
               "              [--tls-min-version 1.2|1.3] [--tls-max-version 1.2|1.3]]\n"
               "Scriptable HTTP/1.1 test server; see the comment at the top of httpd.c.\n");
}

/* Parse the CLI, listen, announce the port, run until a signal, free everything. */
int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"bind", required_argument, NULL, 'b'},
        {"port-file", required_argument, NULL, 'f'},
        {"unix", required_argument, NULL, 'u'},
        {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'},
        {"tls-client-ca", required_argument, NULL, 'A'},
        {"tls-min-version", required_argument, NULL, 'm'},
        {"tls-max-version", required_argument, NULL, 'M'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct server srv;
    struct server *s = &srv;
    const char *bind_addr = "127.0.0.1";
    const char *port = "0";
    const char *port_file = NULL;
    const char *unix_path = NULL;
    const char *tls_cert = NULL;
    const char *tls_key = NULL;
    const char *tls_client_ca = NULL;
    int tls_min = 0;
    int tls_max = 0;
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
        case 'u':
            unix_path = optarg;
            break;
        case 'C':
            tls_cert = optarg;
            break;
        case 'K':
            tls_key = optarg;
            break;
        case 'A':
            tls_client_ca = optarg;
            break;
        case 'm':
        case 'M':
            if (!tls_version(optarg)) {
                fprintf(stderr, "httpd: bad TLS version %s (1.2 or 1.3)\n", optarg);
                return 2;
            }
            *(opt == 'm' ? &tls_min : &tls_max) = tls_version(optarg);
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
    if (!tls_cert != !tls_key || ((tls_client_ca || tls_min || tls_max) && !tls_cert)) {
        fprintf(stderr, "httpd: --tls-cert and --tls-key go together, and the other --tls-* "
                        "options need them\n");
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    if (tls_cert) {
        s->tls = tls_context(tls_cert, tls_key, tls_client_ca, tls_min, tls_max);
        if (!s->tls) {
            return 1;
        }
    }
    if (unix_path) {
        s->listen_fd = open_unix_listener(unix_path);
    } else {
        s->listen_fd = open_listener(bind_addr, port, &bound_port);
    }
    if (s->listen_fd < 0) {
        SSL_CTX_free(s->tls);
        return 1;
    }
    printf("PORT=%d\n", bound_port);
    fflush(stdout);
    if (port_file && write_port_file(port_file, bound_port) < 0) {
        close(s->listen_fd);
        if (unix_path) {
            unlink(unix_path);
        }
        SSL_CTX_free(s->tls);
        return 1;
    }

    /* one ready-made stream=1 chunk: "4000\r\n" "0,0,...,0," "\r\n" */
    sbuf_printf(&s->stream_chunk, "%x\r\n", STREAM_CHUNK);
    for (int i = 0; i < STREAM_CHUNK / 2; i++) {
        sbuf_append(&s->stream_chunk, "0,", 2);
    }
    sbuf_puts(&s->stream_chunk, "\r\n");

    s->loop = EV_DEFAULT;
    s->t0 = mono_now();
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
    if (unix_path) {
        unlink(unix_path);
    }
    sbuf_free(&s->scratch);
    sbuf_free(&s->scratch2);
    sbuf_free(&s->stream_chunk);
    if (s->log) {
        for (size_t i = 0; i < LOG_MAX; i++) {
            sbuf_free(&s->log[i].data);
        }
        free(s->log);
    }
    free_fail_counters(s);
    ingest_reset(s);
    for (size_t i = 0; i < BOMB_CACHE; i++) {
        sbuf_free(&s->bombs[i].data);
    }
    free(s->tokens);
    SSL_CTX_free(s->tls);
    ev_loop_destroy(s->loop);
    return 0;
}
