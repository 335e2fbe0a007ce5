/* oauth.c - OAuth2 client-credentials tokens (RFC 6749, section 4.4). */
#include "oauth.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "secret.h"
#include "url.h"
#include "util/buf.h"

#define OAUTH_BACKOFF_FIRST USEC_PER_SEC
#define OAUTH_BACKOFF_MAX (300 * USEC_PER_SEC)
#define OAUTH_DEFAULT_LIFETIME (3600 * USEC_PER_SEC)
#define OAUTH_MAX_RESPONSE (64 * 1024)

struct oauth_token {
    struct oauth_token *next;
    char *token_url, *client_id, *scope; /* the key (scope may be NULL) */
    char *shown_url;                     /* token_url with secrets redacted, for messages */
    char *access;                        /* the current token, or NULL */
    usec_t refresh_at, expires_at;       /* CLOCK_MONOTONIC */
    usec_t fail_until, backoff;
    char last_err[400];
    CURL *easy;                          /* owned, reused */
    struct curl_slist *hdrs;
    struct buf resp;
    bool in_flight;
    struct oauth_waiter *waiters;
    char errbuf[CURL_ERROR_SIZE];
};

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void oauth_init(struct oauth *o, struct http *http, struct secrets *secrets,
                const char *user_agent)
{
    o->http = http;
    o->secrets = secrets;
    o->user_agent = user_agent;
    o->list = NULL;
}

static struct oauth_token *find(struct oauth *o, const struct auth_cfg *a, bool create)
{
    for (struct oauth_token *t = o->list; t; t = t->next) {
        if (str_eq(t->token_url, a->token_url) && str_eq(t->client_id, a->client_id) &&
            str_eq(t->scope, a->scope)) {
            return t;
        }
    }
    if (!create) {
        return NULL;
    }
    struct oauth_token *t = calloc(1, sizeof(*t));
    if (!t) {
        return NULL;
    }
    t->token_url = strdup(a->token_url);
    t->client_id = strdup(a->client_id);
    t->scope = a->scope ? strdup(a->scope) : NULL;
    t->shown_url = url_redact(a->token_url);
    t->resp.max = OAUTH_MAX_RESPONSE;
    if (!t->token_url || !t->client_id || (a->scope && !t->scope) || !t->shown_url) {
        free(t->shown_url);
        free(t->token_url);
        free(t->client_id);
        free(t->scope);
        free(t);
        return NULL;
    }
    t->next = o->list;
    o->list = t;
    return t;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct oauth_token *t = userdata;
    return buf_append(&t->resp, ptr, size * nmemb) < 0 ? 0 : size * nmemb;
}

static int form_add(struct buf *f, CURL *c, const char *key, const char *value)
{
    char *v = curl_easy_escape(c, value, 0);
    if (!v) {
        return -ENOMEM;
    }
    int r = buf_printf(f, "%s%s=%s", f->len ? "&" : "", key, v);
    explicit_bzero(v, strlen(v));
    curl_free(v);
    return r;
}

/* Starts the token request. Returns 0 or -errno with err. */
static int start(struct oauth *o, struct oauth_token *t, const struct endpoint_ext *x, usec_t now,
                 char *err, size_t errlen)
{
    const struct auth_cfg *a = &x->auth;
    const char *secret = NULL;
    bool warn = false;
    int r = secrets_get(o->secrets, a->secret_path, now, &secret, err, errlen, &warn);
    if (warn) {
        log_warning("%s; still using the previous client secret", err);
    }
    if (r < 0) {
        return r;
    }
    if (t->easy && !http_easy_reusable()) {
        curl_easy_cleanup(t->easy); /* see http_easy_reusable() */
        t->easy = NULL;
    }
    if (!t->easy && !(t->easy = curl_easy_init())) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    CURL *c = t->easy;
    struct buf form = {0};
    r = form_add(&form, c, "grant_type", "client_credentials");
    if (r >= 0 && t->scope) {
        r = form_add(&form, c, "scope", t->scope);
    }
    if (r >= 0 && a->client_auth_body) {
        r = form_add(&form, c, "client_id", a->client_id);
        if (r >= 0) {
            r = form_add(&form, c, "client_secret", secret);
        }
    }
    curl_slist_free_all(t->hdrs);
    t->hdrs = NULL;
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    t->hdrs = h;
    if (r < 0 || !h) {
        if (form.data) {
            explicit_bzero(form.data, form.len);
        }
        buf_done(&form);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    buf_reset(&t->resp);
    t->errbuf[0] = '\0';
    curl_easy_reset(c); /* rare: a clean handle every time */
    CURLcode cc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, t->token_url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PRIVATE, t);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, t);
    SET(CURLOPT_ERRORBUFFER, t->errbuf);
    SET(CURLOPT_USERAGENT, o->user_agent);
    SET(CURLOPT_TIMEOUT_MS, 30000L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    SET(CURLOPT_HTTPHEADER, t->hdrs);
    SET(CURLOPT_COPYPOSTFIELDS, form.data); /* sets POST */
    if (!a->client_auth_body) {
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SET(CURLOPT_USERNAME, a->client_id);
        SET(CURLOPT_PASSWORD, secret);
    }
    if (x->tls.insecure) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (x->tls.ca_file) {
        SET(CURLOPT_CAINFO, x->tls.ca_file);
    }
    if (x->tls.ca_path) {
        SET(CURLOPT_CAPATH, x->tls.ca_path);
    }
    if (x->tls.client_cert) {
        SET(CURLOPT_SSLCERT, x->tls.client_cert);
    }
    if (x->tls.client_key) {
        SET(CURLOPT_SSLKEY, x->tls.client_key);
    }
    if (x->tls.min_version) {
        SET(CURLOPT_SSLVERSION, x->tls.min_version);
    }
    if (x->proxy) {
        SET(CURLOPT_PROXY, x->proxy);
        SET(CURLOPT_NOPROXY, "");
    }
#undef SET
    explicit_bzero(form.data, form.len);
    buf_done(&form);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "cannot set up the token request: %s", curl_easy_strerror(cc));
        return -EINVAL;
    }
    r = http_add(o->http, c);
    if (r < 0) {
        snprintf(err, errlen, "cannot start the token request");
        return r;
    }
    t->in_flight = true;
    return 0;
}

int oauth_get(struct oauth *o, const struct endpoint_ext *x, usec_t now, struct oauth_waiter *w,
              const char **token, char *err, size_t errlen)
{
    struct oauth_token *t = find(o, &x->auth, true);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (t->access && now < t->expires_at) {
        if (now >= t->refresh_at && !t->in_flight && now >= t->fail_until) {
            char e2[300];
            if (start(o, t, x, now, e2, sizeof(e2)) < 0) {
                log_warning("OAuth2 token refresh from %s: %s", t->shown_url, e2);
            }
        }
        *token = t->access;
        return 0;
    }
    if (!t->in_flight && now < t->fail_until) {
        snprintf(err, errlen, "%s (next token request in %llu s)", t->last_err,
                 (unsigned long long)((t->fail_until - now) / USEC_PER_SEC + 1));
        return -EIO;
    }
    if (!t->in_flight) {
        int r = start(o, t, x, now, err, errlen);
        if (r < 0) {
            return r;
        }
    }
    w->tok = t;
    w->next = t->waiters;
    t->waiters = w;
    return -EAGAIN;
}

void oauth_invalidate(struct oauth *o, const struct endpoint_ext *x, const char *token)
{
    struct oauth_token *t = find(o, &x->auth, false);
    if (t && t->access && (!token || strcmp(token, t->access) == 0)) {
        wipe_free(t->access);
        t->access = NULL;
    }
}

void oauth_cancel(struct oauth *o, struct oauth_waiter *w)
{
    (void)o;
    if (!w->tok) {
        return;
    }
    for (struct oauth_waiter **p = &w->tok->waiters; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    w->tok = NULL;
    w->next = NULL;
}

/* The token from a 200 response, or NULL with err. */
static char *parse_token(struct oauth_token *t, usec_t *lifetime, char *err, size_t errlen)
{
    cJSON *root = t->resp.data ? cJSON_ParseWithLength(t->resp.data, t->resp.len) : NULL;
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(root, "access_token");
    const cJSON *ei = cJSON_GetObjectItemCaseSensitive(root, "expires_in");
    char *tok = NULL;
    if (!cJSON_IsString(at) || !*at->valuestring || strpbrk(at->valuestring, "\r\n")) {
        snprintf(err, errlen, "the response has no usable \"access_token\"");
    } else {
        tok = strdup(at->valuestring);
        explicit_bzero(at->valuestring, strlen(at->valuestring));
        *lifetime = OAUTH_DEFAULT_LIFETIME;
        if (cJSON_IsNumber(ei) && ei->valuedouble >= 1 && ei->valuedouble < 1e9) {
            *lifetime = (usec_t)ei->valuedouble * USEC_PER_SEC;
        }
        if (!tok) {
            snprintf(err, errlen, "out of memory");
        }
    }
    cJSON_Delete(root);
    return tok;
}

bool oauth_xfer_done(struct oauth *o, CURL *easy, CURLcode res)
{
    struct oauth_token *t = o->list;
    while (t && !(t->in_flight && t->easy == easy)) {
        t = t->next;
    }
    if (!t) {
        return false;
    }
    t->in_flight = false;
    usec_t now = now_usec(CLOCK_MONOTONIC);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    char err[300] = "";
    char *tok = NULL;
    usec_t lifetime = 0;
    if (res != CURLE_OK) {
        snprintf(err, sizeof(err), "%s", t->errbuf[0] ? t->errbuf : curl_easy_strerror(res));
    } else if (status != 200) {
        /* RFC 6749 5.2: {"error": "invalid_client", ...} */
        cJSON *root = t->resp.data ? cJSON_ParseWithLength(t->resp.data, t->resp.len) : NULL;
        const cJSON *ec = cJSON_GetObjectItemCaseSensitive(root, "error");
        snprintf(err, sizeof(err), "HTTP status %ld%s%.60s%s", status,
                 cJSON_IsString(ec) ? " (" : "", cJSON_IsString(ec) ? ec->valuestring : "",
                 cJSON_IsString(ec) ? ")" : "");
        cJSON_Delete(root);
    } else {
        tok = parse_token(t, &lifetime, err, sizeof(err));
    }
    if (t->resp.data) {
        explicit_bzero(t->resp.data, t->resp.len);
    }
    buf_reset(&t->resp);
    if (tok) {
        wipe_free(t->access);
        t->access = tok;
        t->expires_at = now + lifetime;
        usec_t early = lifetime / 10 < 60 * USEC_PER_SEC ? lifetime / 10 : 60 * USEC_PER_SEC;
        t->refresh_at = t->expires_at - early;
        t->backoff = 0;
        t->fail_until = 0;
        log_debug("OAuth2 token from %s, valid for %llu s", t->shown_url,
                  (unsigned long long)(lifetime / USEC_PER_SEC));
    } else {
        snprintf(t->last_err, sizeof(t->last_err), "OAuth2 token request to %s failed: %s",
                 t->shown_url, err);
        t->backoff = t->backoff ? t->backoff * 2 : OAUTH_BACKOFF_FIRST;
        t->backoff = t->backoff > OAUTH_BACKOFF_MAX ? OAUTH_BACKOFF_MAX : t->backoff;
        t->fail_until = now + t->backoff;
        log_warning("%s", t->last_err);
    }
    /* callbacks may ask for the token again: detach the list first */
    struct oauth_waiter *w = t->waiters;
    t->waiters = NULL;
    while (w) {
        struct oauth_waiter *next = w->next;
        w->tok = NULL;
        w->next = NULL;
        w->cb(w, tok ? t->access : NULL, tok ? NULL : t->last_err);
        w = next;
    }
    return true;
}

void oauth_done(struct oauth *o)
{
    while (o->list) {
        struct oauth_token *t = o->list;
        o->list = t->next;
        if (t->in_flight) {
            http_remove(o->http, t->easy);
        }
        if (t->easy) {
            curl_easy_cleanup(t->easy);
        }
        curl_slist_free_all(t->hdrs);
        for (struct oauth_waiter *w = t->waiters; w; w = w->next) {
            w->tok = NULL;
        }
        wipe_free(t->access);
        buf_done(&t->resp);
        free(t->token_url);
        free(t->shown_url);
        free(t->client_id);
        free(t->scope);
        free(t);
    }
}
