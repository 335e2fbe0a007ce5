/* plugin.c - a sink implemented by a shared object (include/fetchd/sink.h).
 *
 * The host side of the ABI: builds the borrowed struct fetchd_record view of
 * each queued record and maps the plugin's answers onto the queue:
 * FETCHD_SINK_OK = delivered, FETCHD_SINK_RETRY = stays queued and is
 * offered again after a backoff, a negative errno = lost (counted failed).
 * Delivery: what the plugin promises; the host's part is at most once up to
 * the queue's bound, counted.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "plugin.h"
#include "record.h"
#include "sink.h"

enum { PLUGIN_OPT_PATH };

static const struct opt_def plugin_options[] = {
    [PLUGIN_OPT_PATH] = {"path", OPT_STRING, true,
                         "the plugin's .so file, or a bare name looked up in the plugin directory",
                         NULL},
    {0},
};

/* at most this many records per deliver call (the loop must go on) */
#define PLUGIN_BATCH 256

struct plugin_sink {
    struct fetchd_sink_host host;
    const struct fetchd_sink_def *def;
    void *ctx;
    struct sink *s;
    /* Copies of the sink's name and options: the plugin may keep the
     * strings host->name and option() gave it until close(), and a reload
     * that keeps this instance frees the configuration it was opened with. */
    char *name;
    char **opts; /* key, value, key, value... */
    size_t n_opts;
};

static void plugin_sink_free(struct plugin_sink *p)
{
    if (!p) {
        return;
    }
    for (size_t i = 0; i < 2 * p->n_opts; i++) {
        free(p->opts[i]);
    }
    free(p->opts);
    free(p->name);
    free(p);
}

static void plugin_host_log(const struct fetchd_sink_host *host, int priority, const char *fmt,
                            ...)
{
    const struct plugin_sink *p = host->host_private;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (priority < LOG_ERR) {
        priority = LOG_ERR;
    } else if (priority > LOG_DEBUG) {
        priority = LOG_DEBUG;
    }
    log_sink(priority, p->s->name, "%s", msg);
}

static const char *plugin_host_option(const struct fetchd_sink_host *host, const char *key)
{
    const struct plugin_sink *p = host->host_private;
    for (size_t i = 0; key && i < p->n_opts; i++) {
        if (strcmp(p->opts[2 * i], key) == 0) {
            return p->opts[2 * i + 1];
        }
    }
    return NULL;
}

static int plugin_open(struct sink *s, char *err, size_t errlen)
{
    const struct plugin *pl = s->cfg->plugin;
    if (!pl) {
        snprintf(err, errlen, "the plugin is not loaded");
        return -ENOENT;
    }
    struct plugin_sink *p = calloc(1, sizeof(*p));
    if (!p) {
        return -ENOMEM;
    }
    p->s = s;
    p->def = pl->def;
    const struct sink_cfg *c = s->cfg;
    p->name = strdup(s->name);
    p->opts = calloc(2 * c->n_plugin_opts + 1, sizeof(char *));
    if (!p->name || !p->opts) {
        plugin_sink_free(p);
        return -ENOMEM;
    }
    for (; p->n_opts < c->n_plugin_opts; p->n_opts++) {
        size_t i = p->n_opts;
        p->opts[2 * i] = strdup(c->plugin_opts[2 * i]);
        p->opts[2 * i + 1] = strdup(c->plugin_opts[2 * i + 1]);
        if (!p->opts[2 * i] || !p->opts[2 * i + 1]) {
            p->n_opts++;
            plugin_sink_free(p);
            return -ENOMEM;
        }
    }
    p->host.size = sizeof(p->host);
    p->host.abi = FETCHD_SINK_ABI;
    p->host.name = p->name;
    p->host.state_dir = s->state_dir;
    p->host.log = plugin_host_log;
    p->host.option = plugin_host_option;
    p->host.host_private = p;
    s->priv = p;
    int r = p->def->init(&p->host, &p->ctx);
    if (r < 0) {
        snprintf(err, errlen, "plugin \"%s\" failed to initialise: %s", pl->path, strerror(-r));
        s->priv = NULL;
        plugin_sink_free(p);
        return r;
    }
    return 0;
}

static int plugin_deliver_one(struct plugin_sink *p, const struct sink_rec *r)
{
    struct fetchd_record v = {
        .size = sizeof(v),
        .endpoint = r->endpoint,
        .ok = r->error == REC_OK,
        .error_kind = r->error == REC_OK ? NULL : record_error_kind((enum record_error)r->error),
        .http_status = r->http_status,
        .fetched_at_usec = (int64_t)r->fetched_at,
        .json = r->line,
        .json_len = r->len ? r->len - 1 : 0,
        .data = r->data_len ? r->line + r->data_off : NULL,
        .data_len = r->data_len,
    };
    return p->def->deliver(p->ctx, &v);
}

static void plugin_deliver(struct sink *s)
{
    struct plugin_sink *p = s->priv;
    for (int i = 0; i < PLUGIN_BATCH && s->state == SINK_READY; i++) {
        struct sink_rec *r = sink_head(s);
        if (!r) {
            return;
        }
        int k = plugin_deliver_one(p, r);
        if (k == FETCHD_SINK_OK) {
            sink_ack(s, 1);
        } else if (k == FETCHD_SINK_RETRY) {
            sink_retry(s, 0, 0, "the plugin asked to retry later");
        } else if (k < 0) {
            sink_fail(s, 1, k, "the plugin rejected a record");
        } else {
            sink_fail(s, 1, -EPROTO, "the plugin returned an unknown result");
        }
    }
}

static int plugin_sync(struct sink *s)
{
    struct plugin_sink *p = s->priv;
    if (!p->def->flush) {
        return 0;
    }
    int r = p->def->flush(p->ctx);
    if (r < 0) {
        log_sink(LOG_ERR, s->name, "the plugin's flush failed: %s", strerror(-r));
    }
    return r < 0 ? r : 0;
}

static int plugin_reopen(struct sink *s)
{
    struct plugin_sink *p = s->priv;
    if (!p->def->reopen) {
        return 0;
    }
    int r = p->def->reopen(p->ctx);
    if (r < 0) {
        log_sink(LOG_ERR, s->name, "the plugin's reopen failed: %s", strerror(-r));
    }
    return r < 0 ? r : 0;
}

static void plugin_finish(struct sink *s, usec_t deadline)
{
    while (sink_head(s) && now_usec(CLOCK_MONOTONIC) < deadline) {
        uint64_t before = s->queued;
        s->state = SINK_READY;
        plugin_deliver(s);
        ev_timer_stop(s->loop, &s->retry_timer);
        if (s->queued == before) {
            break;
        }
    }
}

static void plugin_close(struct sink *s)
{
    struct plugin_sink *p = s->priv;
    if (!p) {
        return;
    }
    if (p->def->close) {
        p->def->close(p->ctx);
    }
    plugin_sink_free(p);
    s->priv = NULL;
}

const struct sink_type sink_type_plugin = {
    .name = "plugin",
    .description = "a sink loaded from a shared object (fetchd-sink(3))",
    .guarantee = "the plugin's; the host queues at most once up to the bound, counted",
    .options = plugin_options,
    .open = plugin_open,
    .deliver = plugin_deliver,
    .sync = plugin_sync,
    .reopen = plugin_reopen,
    .finish = plugin_finish,
    .close = plugin_close,
};
