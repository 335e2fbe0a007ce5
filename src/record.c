/* record.c - record serialisation to one JSON line. */
#include "record.h"

#include <errno.h>
#include <stdio.h>

#include "json.h"

static const char *const error_kinds[_REC_ERR_MAX] = {
    [REC_OK] = "ok",
    [REC_ERR_DNS] = "dns",
    [REC_ERR_CONNECT] = "connect",
    [REC_ERR_TLS] = "tls",
    [REC_ERR_TIMEOUT] = "timeout",
    [REC_ERR_NETWORK] = "network",
    [REC_ERR_PARTIAL_BODY] = "partial_body",
    [REC_ERR_BAD_RESPONSE] = "bad_response",
    [REC_ERR_PROTOCOL] = "protocol",
    [REC_ERR_REDIRECT] = "redirect",
    [REC_ERR_TOO_LARGE] = "too_large",
    [REC_ERR_HTTP_STATUS] = "http_status",
    [REC_ERR_EMPTY_BODY] = "empty_body",
    [REC_ERR_INVALID_JSON] = "invalid_json",
    [REC_ERR_SELECT_MISSING] = "select_missing",
    [REC_ERR_CANCELLED] = "cancelled",
    [REC_ERR_INTERNAL] = "internal",
    [REC_ERR_TRANSFER] = "transfer",
    [REC_ERR_CONTENT_TYPE] = "unexpected_content_type",
    [REC_ERR_AUTH] = "auth",
    [REC_ERR_NOT_ARRAY] = "not_array",
    [REC_ERR_TEMPLATE] = "template",
};

const char *record_error_kind(enum record_error e)
{
    return e >= 0 && e < _REC_ERR_MAX ? error_kinds[e] : "internal";
}

int record_serialize(const struct record *r, struct buf *out)
{
    size_t start = out->len;
    char ts[32];
    int rc = 0;
    time_format_rfc3339_ms(r->fetched_at, ts);

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((rc = (x)) < 0)                                                                        \
            goto fail;                                                                             \
    } while (0)

    TRY(buf_puts(out, "{\"endpoint\":"));
    TRY(json_escape_str(out, r->endpoint));
    TRY(buf_puts(out, ",\"url\":"));
    TRY(json_escape_str(out, r->url));
    TRY(buf_printf(out, ",\"ok\":%s", r->error == REC_OK ? "true" : "false"));
    if (r->http_status > 0) {
        TRY(buf_printf(out, ",\"status\":%ld", r->http_status));
    } else {
        TRY(buf_puts(out, ",\"status\":null"));
    }
    TRY(buf_printf(out, ",\"fetched_at\":\"%s\",\"duration_ms\":%llu.%03u,\"bytes\":%llu", ts,
                   (unsigned long long)(r->duration / 1000), (unsigned)(r->duration % 1000),
                   (unsigned long long)r->bytes));
    TRY(buf_printf(out, ",\"attempts\":%u", r->attempts ? r->attempts : 1));
    if (r->page) {
        TRY(buf_printf(out, ",\"page\":%u", r->page));
    }
    if (r->has_index) {
        TRY(buf_printf(out, ",\"index\":%zu", r->index));
    }
    if (r->unchanged) {
        TRY(buf_puts(out, ",\"unchanged\":true"));
    }
    if (r->http_version) {
        TRY(buf_puts(out, ",\"http_version\":"));
        TRY(json_escape_str(out, r->http_version));
    }
    if (r->timings) {
        const struct record_timings *t = r->timings;
        const usec_t v[5] = {t->dns, t->connect, t->tls, t->ttfb, t->total};
        static const char *const k[5] = {"dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "total_ms"};
        TRY(buf_puts(out, ",\"timings\":{"));
        for (int i = 0; i < 5; i++) {
            TRY(buf_printf(out, "%s\"%s\":%llu.%03u", i ? "," : "", k[i],
                           (unsigned long long)(v[i] / 1000), (unsigned)(v[i] % 1000)));
        }
        TRY(buf_putc(out, '}'));
    }
    if (r->headers && r->headers_len) {
        TRY(buf_puts(out, ",\"headers\":"));
        TRY(buf_append(out, r->headers, r->headers_len));
    }
    if (r->error == REC_OK) {
        TRY(buf_puts(out, ",\"data\":"));
        if (r->data && r->data_len) {
            TRY(buf_append(out, r->data, r->data_len));
        } else {
            TRY(buf_puts(out, "null"));
        }
    } else {
        TRY(buf_puts(out, ",\"error\":{\"kind\":"));
        TRY(json_escape_str(out, record_error_kind(r->error)));
        TRY(buf_puts(out, ",\"message\":"));
        TRY(json_escape_str(out, r->message ? r->message : ""));
        if (r->curl_code) {
            TRY(buf_printf(out, ",\"curl_code\":%d", r->curl_code));
        }
        if (r->http_status > 0) {
            TRY(buf_printf(out, ",\"http_status\":%ld", r->http_status));
        }
        if (r->verify_result) {
            TRY(buf_printf(out, ",\"verify_result\":%ld", r->verify_result));
        }
        if (r->has_offset) {
            TRY(buf_printf(out, ",\"offset\":%zu", r->offset));
        }
        if (r->excerpt && r->excerpt_len) {
            TRY(buf_puts(out, ",\"excerpt\":"));
            TRY(json_escape(out, r->excerpt,
                            r->excerpt_len > RECORD_EXCERPT_MAX ? RECORD_EXCERPT_MAX
                                                                : r->excerpt_len));
        }
        TRY(buf_putc(out, '}'));
    }
    TRY(buf_puts(out, "}\n"));
    return 0;
#undef TRY
fail:
    out->len = start;
    if (out->data) {
        out->data[start] = '\0';
    }
    return rc;
}
