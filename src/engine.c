/* engine.c - scheduling, the transfer queue and pool, completion handling.
 *
 * Memory model: an idle configured endpoint costs one struct ep_state (an
 * ev_timer plus counters); easy handles live in a pool of limits.max_concurrent
 * entries and are lent out for one transfer each. Due endpoints wait in a
 * FIFO queue (intrusive, so queueing never allocates) until a pool entry is
 * free.
 *
 * Start bursts: at most ENGINE_STARTS_PER_TICK transfers are added to curl
 * per loop iteration (a 0 s "kick" timer re-arms itself while work remains),
 * so 1000 endpoints due at once do not stall the loop for tens of
 * milliseconds (reliability.md a.7 measured 55 ms unspread).
 *
 * Sinks are flushed from an ev_prepare watcher: every record that completed
 * in one loop iteration goes out in one write() per sink.
 */
#include "engine.h"

#include <curl/curl.h>
#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "fetchd-build.h"
#include "hist.h"
#include "http.h"
#include "log.h"
#include "record.h"
#include "sink.h"
#include "units.h"
#include "util/strmap.h"
#include "xfer.h"

/* Transfers handed to curl per loop iteration. Adding is cheap, but on the
 * next iteration curl connects every new transfer at once, and connection
 * setup costs ~30-150 us each (kernel time, more on loopback where the
 * handshake runs synchronously). Measured with 1000 endpoints due at once:
 * 256 per iteration kept the loop busy 31 ms, 64 about 10 ms, 16 about
 * 2.5 ms, with the same total time. */
#define ENGINE_STARTS_PER_TICK 16
#define ENGINE_LOG_WINDOW (10 * USEC_PER_SEC)
#define ENGINE_LOG_BURST 20

struct ep_state {
    const struct endpoint_cfg *cfg; /* borrowed from e->cfg */
    struct engine *engine;
    ev_timer timer;                 /* daemon mode schedule */
    struct ep_state *qnext;         /* FIFO of due endpoints */
    bool queued;
    bool in_flight;
    bool selected;
    enum record_error last_error;
    usec_t due;                     /* CLOCK_MONOTONIC of the next scheduled run */
    usec_t queued_due;              /* the due time of the run now queued */
    uint32_t consecutive_failures;
    uint64_t fetches;
    uint64_t failures;
    uint64_t skipped;
};

struct engine {
    struct ev_loop *loop;       /* the default loop (signals) */
    struct config *cfg;         /* owned */
    struct engine_options opt;
    struct http http;
    bool http_ready;
    struct sinkset sinks;
    struct ep_state *eps;       /* owned, parallel to cfg->endpoints */
    size_t n_eps;
    struct ep_state *qhead, *qtail;
    size_t queued;
    struct xfer *pool;          /* owned, limits.max_concurrent entries */
    size_t pool_n;
    struct xfer *free_xfers;
    unsigned in_flight;
    ev_timer kick;
    ev_prepare flush;
    ev_check iter_begin;        /* loop instrumentation */
    usec_t iter_started;
    unsigned started_this_iter; /* transfers started in this loop iteration */
    struct hist busy;           /* time spent per loop iteration, usec */
    struct hist lateness;       /* daemon timers: firing time - due time, usec */
    struct hist start_lateness; /* due time -> transfer handed to curl, usec */
    ev_timer grace;
    ev_timer progress;
    ev_signal sigterm, sigint;
    bool stopping;
    bool aborting;
    int signals;
    struct buf line;            /* serialised record scratch */
    struct buf data;            /* minified document scratch */
    char user_agent[64];
    struct engine_stats st;
    usec_t started;
    /* failure log limiter */
    usec_t log_window_start;
    unsigned log_count;
    uint64_t log_suppressed;
    bool progress_shown;
};

static struct engine *progress_engine; /* for the log hook */

static void engine_start_some(struct engine *e);

/* ---- small helpers ------------------------------------------------------ */

static void engine_enqueue(struct engine *e, struct ep_state *s, usec_t due)
{
    s->queued = true;
    s->queued_due = due;
    s->qnext = NULL;
    if (e->qtail) {
        e->qtail->qnext = s;
    } else {
        e->qhead = s;
    }
    e->qtail = s;
    e->queued++;
    if (e->free_xfers && e->started_this_iter < ENGINE_STARTS_PER_TICK) {
        /* a free slot and budget left in this iteration: start now, saving
         * the loop iteration a deferred start would cost */
        engine_start_some(e);
    } else if (!ev_is_active(&e->kick) && e->free_xfers) {
        ev_timer_set(&e->kick, 0., 0.);
        ev_timer_start(e->loop, &e->kick);
    }
}

static struct ep_state *engine_dequeue(struct engine *e)
{
    struct ep_state *s = e->qhead;
    if (!s) {
        return NULL;
    }
    e->qhead = s->qnext;
    if (!e->qhead) {
        e->qtail = NULL;
    }
    s->qnext = NULL;
    s->queued = false;
    e->queued--;
    return s;
}

static bool engine_finished(const struct engine *e)
{
    return e->in_flight == 0 && (e->queued == 0 || e->stopping);
}

static void engine_check_done(struct engine *e)
{
    if ((e->opt.once || e->stopping) && engine_finished(e)) {
        ev_break(e->loop, EVBREAK_ALL);
    }
}

/* Rate-limited per-failure warning (collectd's c_complain idea, simplified):
 * at most ENGINE_LOG_BURST lines per window, then one summary. */
static void engine_log_failure(struct engine *e, const struct record *r)
{
    usec_t now = now_usec(CLOCK_MONOTONIC);
    if (now - e->log_window_start >= ENGINE_LOG_WINDOW) {
        if (e->log_suppressed) {
            log_warning("%llu more fetch failures were not logged individually",
                        (unsigned long long)e->log_suppressed);
        }
        e->log_window_start = now;
        e->log_count = 0;
        e->log_suppressed = 0;
    }
    if (e->log_count >= ENGINE_LOG_BURST) {
        e->log_suppressed++;
        return;
    }
    e->log_count++;
    log_endpoint(LOG_WARNING, r->endpoint, "fetch failed: %s: %s", record_error_kind(r->error),
                 r->message ? r->message : "");
}

/* ---- progress line (--once on a terminal) -------------------------------- */

static void progress_clear(void)
{
    struct engine *e = progress_engine;
    if (e && e->progress_shown) {
        static const char clr[] = "\r\033[K";
        ssize_t w = write(STDERR_FILENO, clr, sizeof(clr) - 1);
        (void)w;
        e->progress_shown = false;
    }
}

static void progress_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct engine *e = w->data;
    (void)loop;
    (void)revents;
    char line[160];
    double secs = (double)(now_usec(CLOCK_MONOTONIC) - e->started) / 1e6;
    double rate = secs > 0 ? (double)e->st.fetches / secs : 0;
    int n = snprintf(line, sizeof(line), "\r\033[Kfetchd: %llu/%llu done, %llu failed, %.0f/s",
                     (unsigned long long)e->st.fetches, (unsigned long long)e->st.selected,
                     (unsigned long long)e->st.failed, rate);
    if (n > 0) {
        ssize_t wr = write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
        (void)wr;
        e->progress_shown = true;
    }
}

/* ---- completion --------------------------------------------------------- */

static void engine_emit(struct engine *e, struct ep_state *s, const struct record *rec)
{
    buf_reset(&e->line);
    if (record_serialize(rec, &e->line) < 0) {
        log_endpoint(LOG_ERR, rec->endpoint, "out of memory serialising a record; record lost");
        e->st.records_lost++;
        return;
    }
    sinkset_dispatch(&e->sinks, s->cfg, e->line.data, e->line.len);
    buf_shrink(&e->line, 1024 * 1024);
}

static void engine_account(struct engine *e, struct ep_state *s, const struct record *rec)
{
    e->st.fetches++;
    s->fetches++;
    s->last_error = rec->error;
    if (rec->error == REC_OK) {
        e->st.ok++;
        if (s->consecutive_failures) {
            log_endpoint(LOG_NOTICE, rec->endpoint, "recovered after %u failed fetch%s",
                         s->consecutive_failures, s->consecutive_failures == 1 ? "" : "es");
        }
        s->consecutive_failures = 0;
    } else {
        e->st.failed++;
        s->failures++;
        s->consecutive_failures++;
        engine_log_failure(e, rec);
    }
}

/* http_done_fn: a transfer finished (easy already removed from multi). */
static void engine_xfer_done(void *userdata, CURL *easy, CURLcode res)
{
    struct engine *e = userdata;
    struct xfer *x = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    struct ep_state *s = x->owner;
    struct record rec;
    char msg[CURL_ERROR_SIZE + 256];

    xfer_result(x, res, &rec, &e->data, msg, sizeof(msg));
    engine_account(e, s, &rec);
    engine_emit(e, s, &rec);
    buf_shrink(&e->data, 1024 * 1024);

    s->in_flight = false;
    xfer_release(x);
    x->next_free = e->free_xfers;
    e->free_xfers = x;
    e->in_flight--;
    if (e->qhead && !e->stopping) {
        engine_start_some(e);
    }
    engine_check_done(e);
}

/* A transfer that could not even start still produces a record. */
static void engine_fail_start(struct engine *e, struct ep_state *s, int err)
{
    struct record rec = {
        .endpoint = s->cfg->name,
        .url = s->cfg->url_redacted,
        .fetched_at = now_usec(CLOCK_REALTIME),
        .error = REC_ERR_INTERNAL,
        .message = err == -ENOMEM ? "out of memory starting the transfer"
                                  : "could not start the transfer",
    };
    engine_account(e, s, &rec);
    engine_emit(e, s, &rec);
}

static void engine_start_some(struct engine *e)
{
    while (!e->stopping && e->free_xfers && e->qhead &&
           e->started_this_iter < ENGINE_STARTS_PER_TICK) {
        struct ep_state *s = engine_dequeue(e);
        struct xfer *x = e->free_xfers;
        e->free_xfers = x->next_free;
        x->next_free = NULL;
        int r = xfer_setup(x, s->cfg, e->user_agent);
        if (r == 0) {
            x->owner = s;
            r = http_add(&e->http, x->easy);
        }
        if (r < 0) {
            xfer_release(x);
            x->next_free = e->free_xfers;
            e->free_xfers = x;
            engine_fail_start(e, s, r);
            continue;
        }
        s->in_flight = true;
        e->in_flight++;
        e->started_this_iter++;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        hist_add(&e->start_lateness, now > s->queued_due ? now - s->queued_due : 0);
    }
    if (!e->stopping && e->free_xfers && e->qhead && !ev_is_active(&e->kick)) {
        ev_timer_set(&e->kick, 0., 0.); /* the rest on the next iteration */
        ev_timer_start(e->loop, &e->kick);
    }
    engine_check_done(e);
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    engine_start_some(w->data);
}

/* ev_prepare: runs before the loop blocks; pushes out this iteration's records. */
static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct engine *e = w->data;
    (void)loop;
    (void)revents;
    sinkset_flush(&e->sinks, false);
    if (e->iter_started) {
        /* how long this iteration kept the loop from polling */
        hist_add(&e->busy, now_usec(CLOCK_MONOTONIC) - e->iter_started);
        e->iter_started = 0;
    }
}

/* ev_check: runs right after the loop returns from polling. */
static void iter_begin_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    struct engine *e = w->data;
    (void)loop;
    (void)revents;
    e->iter_started = now_usec(CLOCK_MONOTONIC);
    e->started_this_iter = 0;
}

/* ---- schedule (daemon mode) --------------------------------------------- */

static void ep_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct ep_state *s = w->data;
    struct engine *e = s->engine;
    (void)loop;
    (void)revents;
    if (e->stopping) {
        return;
    }
    usec_t now = now_usec(CLOCK_MONOTONIC);
    usec_t due = s->due;
    hist_add(&e->lateness, now > due ? now - due : 0);
    /* libev schedules a repeating timer at due + interval, or now if that
     * has passed (after a stop or suspend: one catch-up run, not a burst) */
    s->due += s->cfg->interval;
    if (s->due < now) {
        s->due = now;
    }
    if (s->in_flight || s->queued) {
        /* never two fetches of one endpoint at once: skip this tick */
        s->skipped++;
        e->st.skipped++;
        log_endpoint(LOG_DEBUG, s->cfg->name, "previous fetch still running, skipping this run");
        return;
    }
    engine_enqueue(e, s, due);
}

/* The first run's offset within the interval: a hash of the endpoint name,
 * so it is the same on every start and on every machine. */
static usec_t engine_splay(const char *name, usec_t interval)
{
    uint64_t h = strmap_hash(name);
    h ^= h >> 33; /* FNV-1a's low bits are weak for similar names: mix */
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    return interval ? h % interval : 0;
}

/* ---- stop --------------------------------------------------------------- */

static void engine_abort_in_flight(struct engine *e)
{
    /* Transfers still running become "cancelled" records: a stop never
     * loses a fetch silently. */
    for (size_t i = 0; i < e->pool_n; i++) {
        struct xfer *x = &e->pool[i];
        if (!x->owner) {
            continue;
        }
        struct ep_state *s = x->owner;
        http_remove(&e->http, x->easy);
        struct record rec;
        char msg[CURL_ERROR_SIZE + 256];
        xfer_result(x, CURLE_ABORTED_BY_CALLBACK, &rec, &e->data, msg, sizeof(msg));
        rec.error = REC_ERR_CANCELLED;
        rec.curl_code = 0; /* libcurl reported nothing: we stopped it */
        rec.excerpt = NULL;
        snprintf(msg, sizeof(msg), "fetchd was stopped before the transfer completed");
        engine_account(e, s, &rec);
        engine_emit(e, s, &rec);
        s->in_flight = false;
        xfer_release(x);
        x->next_free = e->free_xfers;
        e->free_xfers = x;
        e->in_flight--;
    }
}

static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct engine *e = w->data;
    (void)revents;
    if (e->in_flight) {
        log_warning("shutdown grace period over, cancelling %u transfer%s", e->in_flight,
                    e->in_flight == 1 ? "" : "s");
        engine_abort_in_flight(e);
    }
    ev_break(loop, EVBREAK_ALL);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct engine *e = w->data;
    (void)revents;
    e->signals++;
    e->st.interrupted = true;
    if (!e->stopping) {
        e->stopping = true;
        for (size_t i = 0; i < e->n_eps; i++) {
            ev_timer_stop(loop, &e->eps[i].timer);
        }
        ev_timer_stop(loop, &e->kick);
        if (e->in_flight == 0) {
            ev_break(loop, EVBREAK_ALL);
            return;
        }
        char g[32];
        log_notice("received %s, finishing %u transfer%s in flight (up to %s; again to stop now)",
                   strsignal(w->signum), e->in_flight, e->in_flight == 1 ? "" : "s",
                   units_format_duration(e->cfg->limits.shutdown_grace, g, sizeof(g)));
        ev_timer_set(&e->grace, usec_to_ev(e->cfg->limits.shutdown_grace), 0.);
        ev_timer_start(loop, &e->grace);
        return;
    }
    log_notice("received %s again, stopping now", strsignal(w->signum));
    engine_abort_in_flight(e);
    ev_break(loop, EVBREAK_ALL);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void engine_raise_nofile(unsigned need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        return;
    }
    if (rl.rlim_cur < need + 64 && rl.rlim_cur < rl.rlim_max) {
        rlim_t want = need + 256;
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < need + 64) {
        log_warning("the file descriptor limit (%llu) is low for max_concurrent %u; raise "
                    "LimitNOFILE= or ulimit -n",
                    (unsigned long long)rl.rlim_cur, need);
    }
}

int engine_new(struct engine **ret, struct config *cfg, const struct engine_options *opt)
{
    struct engine *e = calloc(1, sizeof(*e));
    if (!e) {
        config_free(cfg);
        return -ENOMEM;
    }
    e->cfg = cfg;
    e->opt = *opt;
    int r;

    e->n_eps = cfg->n_endpoints;
    e->eps = calloc(e->n_eps ? e->n_eps : 1, sizeof(*e->eps));
    if (!e->eps) {
        r = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < e->n_eps; i++) {
        e->eps[i].cfg = &cfg->endpoints[i];
        e->eps[i].engine = e;
        e->eps[i].selected = opt->n_only == 0 && cfg->endpoints[i].enabled;
    }
    for (size_t i = 0; i < opt->n_only; i++) {
        const struct endpoint_cfg *ep = config_find_endpoint(cfg, opt->only[i]);
        if (!ep) {
            log_error("--endpoint '%s': no such endpoint in %s", opt->only[i], cfg->path);
            r = -EINVAL;
            goto fail;
        }
        e->eps[ep - cfg->endpoints].selected = true;
    }

    e->loop = ev_default_loop(EVFLAG_AUTO);
    if (!e->loop) {
        log_error("cannot create the event loop (bad LIBEV_FLAGS?)");
        r = -EIO;
        goto fail;
    }
    engine_raise_nofile(cfg->limits.max_concurrent);

    e->pool_n = cfg->limits.max_concurrent;
    e->pool = calloc(e->pool_n, sizeof(*e->pool));
    if (!e->pool) {
        r = -ENOMEM;
        goto fail;
    }
    for (size_t i = e->pool_n; i-- > 0;) {
        e->pool[i].next_free = e->free_xfers;
        e->free_xfers = &e->pool[i];
    }
    r = http_init(&e->http, e->loop, engine_xfer_done, e, (long)cfg->limits.max_concurrent,
                  (long)cfg->limits.max_per_host);
    if (r < 0) {
        goto fail;
    }
    e->http_ready = true;

    /* only the sinks of selected endpoints need to be open */
    for (size_t i = 0; i < cfg->n_sinks; i++) {
        cfg->sinks[i].used = false;
    }
    for (size_t i = 0; i < e->n_eps; i++) {
        if (e->eps[i].selected) {
            for (uint32_t j = 0; j < e->eps[i].cfg->n_sinks; j++) {
                cfg->sinks[e->eps[i].cfg->sinks[j]].used = true;
            }
        }
    }
    r = sinkset_open(&e->sinks, cfg, e->loop);
    if (r < 0) {
        goto fail;
    }

    snprintf(e->user_agent, sizeof(e->user_agent), "fetchd/%s", FETCHD_VERSION);
    ev_timer_init(&e->kick, kick_cb, 0., 0.);
    e->kick.data = e;
    ev_prepare_init(&e->flush, flush_cb);
    e->flush.data = e;
    ev_check_init(&e->iter_begin, iter_begin_cb);
    e->iter_begin.data = e;
    ev_timer_init(&e->grace, grace_cb, 0., 0.);
    e->grace.data = e;
    ev_timer_init(&e->progress, progress_cb, 0.25, 0.25);
    e->progress.data = e;
    ev_signal_init(&e->sigterm, signal_cb, SIGTERM);
    e->sigterm.data = e;
    ev_signal_init(&e->sigint, signal_cb, SIGINT);
    e->sigint.data = e;

    const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
    if (!(vi->features & CURL_VERSION_ASYNCHDNS)) {
        log_warning("libcurl %s has no asynchronous resolver: DNS lookups will block the loop",
                    vi->version);
    }
    *ret = e;
    return 0;
fail:
    engine_free(e);
    return r;
}

int engine_run(struct engine *e)
{
    e->started = now_usec(CLOCK_MONOTONIC);
    ev_signal_start(e->loop, &e->sigterm);
    ev_signal_start(e->loop, &e->sigint);
    ev_prepare_start(e->loop, &e->flush);
    ev_unref(e->loop); /* the prepare watcher alone must not keep the loop alive */
    ev_check_start(e->loop, &e->iter_begin);
    ev_unref(e->loop);

    usec_t start = now_usec(CLOCK_MONOTONIC);
    for (size_t i = 0; i < e->n_eps; i++) {
        struct ep_state *s = &e->eps[i];
        if (!s->selected) {
            continue;
        }
        e->st.selected++;
        if (e->opt.once) {
            engine_enqueue(e, s, start);
        } else {
            /* First run at a deterministic splay within the interval, then
             * every interval: 10 000 endpoints at 1 s become 10 per ms, not a
             * burst of 10 000 every second, and restarts or several
             * instances do not stampede an API at the same instant. */
            usec_t splay = engine_splay(s->cfg->name, s->cfg->interval);
            ev_timer_init(&s->timer, ep_timer_cb, usec_to_ev(splay), usec_to_ev(s->cfg->interval));
            s->timer.data = s;
            s->due = start + splay;
            ev_timer_start(e->loop, &s->timer);
        }
    }
    if (e->opt.once && e->opt.progress && e->st.selected > 1) {
        progress_engine = e;
        log_set_before_write(progress_clear);
        ev_timer_start(e->loop, &e->progress);
        ev_unref(e->loop);
    }
    log_info("%llu endpoint%s selected, max %u concurrent transfers",
             (unsigned long long)e->st.selected, e->st.selected == 1 ? "" : "s",
             e->cfg->limits.max_concurrent);

    if (e->st.selected > 0) {
        ev_run(e->loop, 0);
    }

    if (ev_is_active(&e->progress)) {
        ev_ref(e->loop);
        ev_timer_stop(e->loop, &e->progress);
    }
    progress_clear();
    log_set_before_write(NULL);
    progress_engine = NULL;

    if (e->in_flight) {
        engine_abort_in_flight(e);
    }
    e->st.not_run = e->queued;
    sinkset_flush(&e->sinks, true);
    e->st.records_lost += sinkset_dropped(&e->sinks);
    return 0;
}

void engine_get_stats(const struct engine *e, struct engine_stats *st)
{
    *st = e->st;
    st->iterations = e->busy.count;
    st->busy_p99 = hist_quantile(&e->busy, 0.99);
    st->busy_max = e->busy.max;
    st->timer_runs = e->lateness.count;
    st->lateness_p50 = hist_quantile(&e->lateness, 0.50);
    st->lateness_p99 = hist_quantile(&e->lateness, 0.99);
    st->lateness_max = e->lateness.max;
    st->start_lateness_p50 = hist_quantile(&e->start_lateness, 0.50);
    st->start_lateness_p99 = hist_quantile(&e->start_lateness, 0.99);
    st->start_lateness_max = e->start_lateness.max;
}

void engine_print_failures(const struct engine *e, FILE *f, size_t max)
{
    size_t shown = 0, total = 0;
    for (size_t i = 0; i < e->n_eps; i++) {
        const struct ep_state *s = &e->eps[i];
        if (s->fetches && s->last_error != REC_OK) {
            total++;
            if (shown < max) {
                fprintf(f, "  %s: %s\n", s->cfg->name, record_error_kind(s->last_error));
                shown++;
            }
        }
    }
    if (total > shown) {
        fprintf(f, "  ... and %zu more\n", total - shown);
    }
}

struct engine *engine_free(struct engine *e)
{
    if (!e) {
        return NULL;
    }
    if (e->loop) {
        if (ev_is_active(&e->flush)) {
            ev_ref(e->loop);
            ev_prepare_stop(e->loop, &e->flush);
        }
        if (ev_is_active(&e->iter_begin)) {
            ev_ref(e->loop);
            ev_check_stop(e->loop, &e->iter_begin);
        }
        ev_timer_stop(e->loop, &e->kick);
        ev_timer_stop(e->loop, &e->grace);
        ev_signal_stop(e->loop, &e->sigterm);
        ev_signal_stop(e->loop, &e->sigint);
        for (size_t i = 0; i < e->n_eps; i++) {
            ev_timer_stop(e->loop, &e->eps[i].timer);
        }
    }
    /* order: easy handles out of the multi, then the multi (which may still
     * call the socket callback), then the loop */
    for (size_t i = 0; i < e->pool_n; i++) {
        if (e->pool[i].owner && e->http_ready) {
            http_remove(&e->http, e->pool[i].easy);
        }
        xfer_done(&e->pool[i]);
    }
    if (e->http_ready) {
        http_done(&e->http);
    }
    sinkset_close(&e->sinks);
    free(e->pool);
    free(e->eps);
    buf_done(&e->line);
    buf_done(&e->data);
    config_free(e->cfg);
    if (e->loop) {
        ev_loop_destroy(e->loop);
    }
    free(e);
    return NULL;
}
