/* config.h - the loaded, validated, immutable configuration.
 *
 * config_load() reads FILE and the drop-ins in FILE.d/ (FILE without ".json",
 * so /etc/fetchd/fetchd.json reads /etc/fetchd/fetchd.d/ *.json in lexical
 * order), merges them, validates everything and builds a struct config, or
 * returns every problem found as "file:line:col: key.path: message" lines.
 * Non-logging. A loaded config is never modified: reload builds a new one.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shard.h"
#include "sink.h"
#include "util/arena.h"
#include "util/strmap.h"
#include "util/time.h"

#define CONFIG_MAX_FILE_BYTES (64u * 1024 * 1024)
#define CONFIG_MAX_NAME 128
#define CONFIG_MAX_ERRORS 30

struct jptr;

enum auth_type { AUTH_NONE, AUTH_BASIC, AUTH_BEARER, AUTH_OAUTH2 };

struct auth_cfg {
    enum auth_type type;
    const char *user;        /* basic */
    const char *secret_path; /* password, token or client secret file (a
                              * credential is resolved to its path) */
    const char *token_url;   /* oauth2 */
    const char *client_id;
    const char *scope;       /* or NULL */
    bool client_auth_body;   /* client id and secret in the form body, not Basic */
};

struct tls_cfg {
    bool insecure;           /* verify: false */
    const char *ca_file, *ca_path, *client_cert, *client_key;
    long min_version;        /* CURL_SSLVERSION_*, 0 = libcurl's default */
};

/* A set of HTTP status codes 100..599. */
struct status_set {
    uint8_t bits[64];
};

static inline bool status_set_has(const struct status_set *s, long code)
{
    return code >= 100 && code <= 599 && (s->bits[(code - 100) / 8] >> ((code - 100) % 8)) & 1;
}

struct retry_cfg {
    uint32_t attempts;       /* total per cycle, 1 = no retries */
    usec_t backoff, max_backoff, max_retry_after;
    bool on_network, on_timeout, non_idempotent;
    struct status_set on_status;
};

enum ctype_mode { CTYPE_JSON, CTYPE_STRICT, CTYPE_ANY };
enum page_mode { PAGE_NONE, PAGE_LINK, PAGE_NEXT_URL, PAGE_CURSOR };

/* The less common per-endpoint options. Endpoints that set none of them
 * share one instance built from "defaults", so 100 000 plain endpoints do
 * not pay for them. */
struct endpoint_ext {
    const char *canon;       /* the options' source JSON, for reload equality */
    struct auth_cfg auth;
    struct tls_cfg tls;
    const char *proxy;       /* NULL = environment, "" = none */
    const char *unix_socket;
    long http_version;       /* CURL_HTTP_VERSION_* */
    const char *accept_encoding; /* NULL = no compression */
    const char *protocols;   /* "http,https" */
    unsigned scheme_mask;    /* URL_* bits */
    const char **secret_headers; /* lowercase extra secret header names */
    size_t n_secret_headers;
    struct status_set success;
    struct retry_cfg retry;
    uint32_t breaker_after;  /* 0 = no circuit breaker */
    usec_t breaker_max;
    bool conditional, unchanged_record, ndjson, split, timings;
    enum ctype_mode content_type;
    const char **resp_headers; /* as configured */
    size_t n_resp_headers;
    enum page_mode page_mode;
    struct jptr *page_ptr;   /* next_url / cursor pointer */
    const char *page_param;  /* cursor: query parameter name */
    uint32_t max_pages;
};

struct tpl;

/* Request templating (template.h): the endpoint's URL, header values or
 * body hold placeholders. Owned by the config. */
struct ep_tpl {
    struct tpl *url;            /* or NULL: the URL is plain */
    struct tpl **headers;       /* parallel to endpoint_cfg.headers (the value
                                 * after "Name: "), NULL entries for plain
                                 * headers; NULL when none is templated */
    bool *header_secret;        /* parallel: the value holds a credential */
    struct tpl *body;           /* or NULL */
    const char *tz_env;         /* TZ value for time placeholders, NULL: UTC */
    const char **cred_names;    /* credentials used, and their files */
    const char **cred_paths;
    size_t n_creds;
    unsigned uses;              /* 1u << TPL_x over all templates */
};

/* "checkpoint": a JSON Pointer into each record's data. */
struct ckpt_cfg {
    const char *pointer;        /* arena: the pointer's text */
    struct jptr *ptr;           /* owned by the config (jptrs) */
    bool keep_max;              /* "keep": "max" (default) or "last" */
};

struct endpoint_cfg {
    const char *name;         /* arena */
    const char *url;          /* arena */
    const char *url_redacted; /* arena; == url when nothing to hide */
    const char *method;       /* arena; "GET" by default */
    const char **headers;     /* arena; "Name: value", n_headers entries */
    size_t n_headers;
    const char *body;         /* arena or NULL */
    size_t body_len;
    bool body_is_json;        /* body was given as a JSON value */
    usec_t interval;
    struct cron *cron;        /* "schedule" instead of interval: owned by the config */
    const char *schedule;     /* arena: the expression, or NULL */
    const char *timezone;     /* arena: "timezone" (schedule and time
                               * placeholders), or NULL */
    usec_t timeout;
    usec_t connect_timeout;
    usec_t low_speed_time;
    uint64_t low_speed_limit; /* bytes per second */
    uint64_t max_body_size;
    struct jptr *select;      /* owned by the config (freed in config_free) or NULL */
    const uint32_t *sinks;    /* arena; indices into config->sinks */
    uint32_t n_sinks;
    uint32_t max_redirects;
    bool follow_redirects;
    bool enabled;
    usec_t jitter;            /* each run moves by a uniform offset in [-jitter, +jitter] */
    bool align;               /* runs at wall-clock multiples of interval (+ offset) */
    usec_t offset;            /* with align: shift from the multiple */
    const struct endpoint_ext *x; /* arena, possibly shared; never NULL */
    const struct ep_tpl *tpl;     /* placeholders, or NULL */
    const struct ckpt_cfg *ckpt;  /* "checkpoint", or NULL */
};

struct limits {
    uint32_t max_concurrent; /* transfers in flight at once */
    uint32_t max_per_host;   /* connections per host, 0 = no extra limit */
    uint32_t max_endpoints;
    uint64_t max_body_size;  /* ceiling for every endpoint's max_body_size */
    usec_t shutdown_grace;   /* how long a stop waits for in-flight transfers */
    double retry_budget;     /* retries per first attempt over 10 s (plus 10) */
    usec_t stats_interval;   /* periodic sink counter summary, 0 = off */
    const char *metrics_textfile; /* Prometheus textfile written periodically, or NULL */
    usec_t metrics_interval;      /* how often */
};

struct config {
    struct arena arena;
    char *path;                   /* arena */
    const char **dropins;         /* arena; drop-in files read, in order */
    size_t n_dropins;
    struct limits limits;
    struct shard shard;           /* "shard": "K/N"; n == 0 without */
    struct endpoint_cfg *endpoints; /* malloc'd array, in definition order */
    size_t n_endpoints;
    struct sink_cfg *sinks;       /* malloc'd array */
    size_t n_sinks;
    struct strmap by_name;        /* endpoint name -> struct endpoint_cfg * */
    struct cron **crons;          /* owned schedules (endpoints borrow them) */
    size_t n_crons;
    struct jptr **jptrs;          /* owned pointers of the ext options */
    size_t n_jptrs;
    struct tpl **tpls;            /* owned templates (endpoints borrow them) */
    size_t n_tpls;
};

struct config_errors {
    char **msgs; /* owned */
    size_t n;
    size_t dropped; /* errors beyond CONFIG_MAX_ERRORS */
};

/* Returns 0 and *ret, or -EINVAL (errors in *errs), -ENOMEM. */
int config_load(const char *path, struct config **ret, struct config_errors *errs);
struct config *config_free(struct config *cfg);
void config_errors_done(struct config_errors *errs);

const struct endpoint_cfg *config_find_endpoint(const struct config *cfg, const char *name);
/* True if two endpoints (of possibly different configs) fetch and route the
 * same way: a reload keeps such an endpoint's schedule and state. */
bool config_endpoint_equal(const struct config *ca, const struct endpoint_cfg *a,
                           const struct config *cb, const struct endpoint_cfg *b);
/* True if two sink definitions are the same (a reload keeps the instance). */
bool config_sink_equal(const struct sink_cfg *a, const struct sink_cfg *b);
/* Index of the sink named name in cfg->sinks, or -1. */
int config_sink_index(const struct config *cfg, const char *name);
/* True if a request header of this name carries a secret (never sent to
 * another origin, never shown): Authorization, Cookie, names with "token",
 * "key", "secret"... and the endpoint's secret_headers. */
bool config_header_is_secret(const struct endpoint_ext *x, const char *name, size_t len);
/* Writes the --check-config summary (one screen) to f. */
void config_print_summary(const struct config *cfg, FILE *f);
