/* metrics.c - Prometheus text exposition and the node_exporter textfile. */
#define _GNU_SOURCE
#include "metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "engine.h"
#include "log.h"
#include "sink.h"
#include "util/file.h"

/* Label values: endpoint and sink names are restricted by the config, but
 * escape as the format says anyway (backslash, quote, newline). */
static int put_label(struct buf *out, const char *v)
{
    for (const char *p = v; *p; p++) {
        int r = *p == '\\' ? buf_puts(out, "\\\\")
                : *p == '"' ? buf_puts(out, "\\\"")
                : *p == '\n' ? buf_puts(out, "\\n")
                : buf_putc(out, *p);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

/* Integers (counters) exactly, other values with 9 significant digits. */
static int put_value(struct buf *out, double v)
{
    if (v == (double)(uint64_t)v && v < 9007199254740992.0) {
        return buf_printf(out, "%llu\n", (unsigned long long)v);
    }
    return buf_printf(out, "%.9g\n", v);
}

static int help(struct buf *out, const char *name, const char *type, const char *text)
{
    return buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* One sample per selected endpoint: value(info) */
static int per_endpoint(struct engine *e, struct buf *out, const char *name, const char *type,
                        const char *text, double (*value)(const struct engine_ep_info *))
{
    int r = help(out, name, type, text);
    size_t n = engine_n_endpoints(e);
    for (size_t i = 0; i < n && r >= 0; i++) {
        struct engine_ep_info in;
        if (!engine_endpoint_info(e, i, &in)) {
            continue;
        }
        r = buf_printf(out, "%s{endpoint=\"", name);
        r = r < 0 ? r : put_label(out, in.name);
        r = r < 0 ? r : buf_puts(out, "\"} ");
        r = r < 0 ? r : put_value(out, value(&in));
    }
    return r;
}

static double v_fetches(const struct engine_ep_info *in)
{
    return (double)in->fetches;
}

static double v_failures(const struct engine_ep_info *in)
{
    return (double)in->failures;
}

static double v_records(const struct engine_ep_info *in)
{
    return (double)in->records;
}

static double v_skipped(const struct engine_ep_info *in)
{
    return (double)in->skipped;
}

static double v_up(const struct engine_ep_info *in)
{
    return in->fetches && in->consecutive_failures == 0 ? 1 : 0;
}

static double v_consecutive(const struct engine_ep_info *in)
{
    return in->consecutive_failures;
}

static double v_last_ok(const struct engine_ep_info *in)
{
    return (double)in->last_ok / 1e6;
}

static double v_last_duration(const struct engine_ep_info *in)
{
    return (double)in->last_duration / 1e6;
}

static double v_paused(const struct engine_ep_info *in)
{
    return strcmp(in->state, "paused") == 0;
}

static int per_sink(struct engine *e, struct buf *out, const char *name, const char *type,
                    const char *text, const char *extra_label, int field)
{
    int r = help(out, name, type, text);
    const struct sinkset *set = engine_sinks(e);
    for (size_t i = 0; i < set->n && r >= 0; i++) {
        const struct sink *s = set->sinks[i];
        if (!s) {
            continue;
        }
        const struct sink_counters *c = &s->c;
        struct {
            const char *label;
            uint64_t v;
        } rows[3];
        size_t nr = 0;
        switch (field) {
        case 0:
            rows[nr++].v = c->produced;
            break;
        case 1:
            rows[nr++].v = c->delivered;
            break;
        case 2:
            rows[0].label = "overflow";
            rows[0].v = c->overflow;
            rows[1].label = "failed";
            rows[1].v = c->failed;
            rows[2].label = "abandoned";
            rows[2].v = c->abandoned;
            nr = 3;
            break;
        case 3:
            rows[nr++].v = s->queued;
            break;
        case 4:
            rows[nr++].v = c->retried;
            break;
        default:
            rows[nr++].v = c->sync_errors;
            break;
        }
        for (size_t k = 0; k < nr && r >= 0; k++) {
            r = buf_printf(out, "%s{sink=\"", name);
            r = r < 0 ? r : put_label(out, s->name);
            if (r >= 0 && extra_label) {
                r = buf_printf(out, "\",%s=\"%s", extra_label, rows[k].label);
            }
            r = r < 0 ? r : buf_printf(out, "\"} %llu\n", (unsigned long long)rows[k].v);
        }
    }
    return r;
}

int metrics_render(struct engine *e, struct buf *out)
{
    int r = help(out, "fetchd_uptime_seconds", "gauge", "Seconds since fetchd started.");
    r = r < 0 ? r : buf_printf(out, "fetchd_uptime_seconds %.3f\n", engine_uptime(e) / 1e6);
    r = r < 0 ? r
              : per_endpoint(e, out, "fetchd_endpoint_fetches_total", "counter",
                             "Completed fetches (each retry of a run is not counted again).",
                             v_fetches);
    r = r < 0 ? r
              : per_endpoint(e, out, "fetchd_endpoint_failures_total", "counter",
                             "Fetches that ended with an error record.", v_failures);
    r = r < 0 ? r
              : per_endpoint(e, out, "fetchd_endpoint_records_total", "counter",
                             "Records produced (a split response gives several).", v_records);
    r = r < 0 ? r
              : per_endpoint(e, out, "fetchd_endpoint_skipped_total", "counter",
                             "Scheduled runs skipped: still running, backing off or paused.",
                             v_skipped);
    r = r < 0 ? r
              : per_endpoint(e, out, "fetchd_endpoint_up", "gauge",
                             "1 if the last fetch succeeded.", v_up);
    r = r < 0 ? r
              : per_endpoint(e, out, "fetchd_endpoint_consecutive_failures", "gauge",
                             "Failed fetches in a row.", v_consecutive);
    r = r < 0 ? r
              : per_endpoint(e, out, "fetchd_endpoint_last_success_timestamp_seconds", "gauge",
                             "When the last successful fetch started (0: never).", v_last_ok);
    r = r < 0 ? r
              : per_endpoint(e, out, "fetchd_endpoint_last_duration_seconds", "gauge",
                             "Duration of the last fetch.", v_last_duration);
    r = r < 0 ? r
              : per_endpoint(e, out, "fetchd_endpoint_paused", "gauge",
                             "1 while paused with \"fetchd pause\".", v_paused);

    uint64_t sum;
    const uint64_t *lat = engine_latency(e, &sum);
    r = r < 0 ? r
              : help(out, "fetchd_fetch_duration_seconds", "histogram",
                     "Duration of fetches, all endpoints.");
    uint64_t cum = 0;
    for (size_t b = 0; b < ENGINE_LAT_BUCKETS && r >= 0; b++) {
        cum += lat[b];
        r = buf_printf(out, "fetchd_fetch_duration_seconds_bucket{le=\"%g\"} %llu\n",
                       engine_lat_bounds[b], (unsigned long long)cum);
    }
    cum += lat[ENGINE_LAT_BUCKETS];
    r = r < 0 ? r
              : buf_printf(out,
                           "fetchd_fetch_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                           "fetchd_fetch_duration_seconds_sum %.6f\n"
                           "fetchd_fetch_duration_seconds_count %llu\n",
                           (unsigned long long)cum, sum / 1e6, (unsigned long long)cum);

    r = r < 0 ? r
              : per_sink(e, out, "fetchd_sink_records_produced_total", "counter",
                         "Records routed to the sink.", NULL, 0);
    r = r < 0 ? r
              : per_sink(e, out, "fetchd_sink_records_delivered_total", "counter",
                         "Records the sink took (written, acknowledged).", NULL, 1);
    r = r < 0 ? r
              : per_sink(e, out, "fetchd_sink_records_dropped_total", "counter",
                         "Records lost, by reason.", "reason", 2);
    r = r < 0 ? r
              : per_sink(e, out, "fetchd_sink_records_queued", "gauge",
                         "Records waiting in the sink's queue.", NULL, 3);
    r = r < 0 ? r
              : per_sink(e, out, "fetchd_sink_retries_total", "counter",
                         "Delivery attempts that were retried.", NULL, 4);
    r = r < 0 ? r
              : per_sink(e, out, "fetchd_sink_sync_errors_total", "counter",
                         "Failed fsyncs: records may have been lost.", NULL, 5);
    return r < 0 ? -ENOMEM : 0;
}

int metrics_write_textfile(struct engine *e, const char *path)
{
    struct buf b = {0};
    if (metrics_render(e, &b) < 0) {
        buf_done(&b);
        return -ENOMEM;
    }
    /* node_exporter reads *.prom only: the temporary "PATH.PID.tmp" is
     * ignored; no fsync: the next interval rewrites it anyway */
    int r = file_replace(path, b.data, b.len, 0644, false);
    buf_done(&b);
    return r;
}

static void writer_tick(struct metrics_writer *w)
{
    const struct config *cfg = engine_config(w->engine);
    const char *path = cfg->limits.metrics_textfile;
    if (w->last_path && (!path || strcmp(path, w->last_path) != 0)) {
        unlink(w->last_path); /* turned off or moved by a reload: no stale file */
        free(w->last_path);
        w->last_path = NULL;
    }
    if (path) {
        int r = metrics_write_textfile(w->engine, path);
        if (r < 0 && r != w->last_error) {
            log_error("cannot write the metrics textfile %s: %s", path, strerror(-r));
        } else if (r == 0 && w->last_error) {
            log_notice("the metrics textfile %s is written again", path);
        }
        w->last_error = r;
        if (r == 0 && !w->last_path) {
            w->last_path = strdup(path); /* out of memory: not removed at stop */
        }
    }
    double iv = (double)cfg->limits.metrics_interval / 1e6;
    ev_timer_set(&w->timer, iv, 0.);
    ev_timer_start(engine_loop(w->engine), &w->timer);
}

static void writer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    writer_tick(t->data);
}

void metrics_writer_start(struct metrics_writer *w, struct engine *e)
{
    memset(w, 0, sizeof(*w));
    w->engine = e;
    ev_timer_init(&w->timer, writer_cb, 0., 0.);
    w->timer.data = w;
    writer_tick(w);
    ev_unref(engine_loop(e)); /* it alone does not keep the loop running */
}

void metrics_writer_stop(struct metrics_writer *w)
{
    if (!w->engine) {
        return;
    }
    if (ev_is_active(&w->timer)) {
        ev_ref(engine_loop(w->engine));
        ev_timer_stop(engine_loop(w->engine), &w->timer);
    }
    const char *path = engine_config(w->engine)->limits.metrics_textfile;
    if (path) {
        (void)metrics_write_textfile(w->engine, path); /* the final counters stay */
    }
    free(w->last_path);
    w->last_path = NULL;
    w->engine = NULL;
}
