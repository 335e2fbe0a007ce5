/* engine.c - schedules, the transfer queue and pool, completion handling,
 * reload, stop, and the systemd lifecycle.
 *
 * Memory model: an idle configured endpoint costs one struct ep_state (an
 * ev_timer plus counters); easy handles live in a pool of limits.max_concurrent
 * entries and are lent out for one transfer each. Due endpoints wait in a
 * FIFO queue (intrusive, so queueing never allocates) until a pool entry is
 * free.
 *
 * Generations: a loaded config and its endpoint states form a generation.
 * Reload builds a new one next to the current one, carries the state of
 * endpoints that still exist over, and retires the old generation; a retired
 * generation lives until the last transfer that belongs to it has completed
 * and delivered its record, so removed endpoints finish their fetch.
 *
 * Start bursts: at most ENGINE_STARTS_PER_TICK transfers are added to curl
 * per loop iteration (a 0 s "kick" timer continues on the next iteration),
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
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "fetchd-build.h"
#include "hist.h"
#include "http.h"
#include "log.h"
#include "notify.h"
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
#define ENGINE_REMINDER_FIRST (60 * USEC_PER_SEC)
#define ENGINE_REMINDER_MAX (3600 * USEC_PER_SEC)
#define ENGINE_RING 60 /* seconds of fetch/error counts for STATUS */

struct gen;

struct ep_state {
    const struct endpoint_cfg *cfg; /* borrowed from gen->cfg */
    struct gen *gen;
    ev_timer timer;                 /* daemon mode schedule */
    struct ep_state *qnext;         /* FIFO of due endpoints */
    struct xfer *xfer;              /* the transfer in flight, or NULL */
    bool queued;
    bool selected;
    enum record_error last_error;
    usec_t base;                    /* CLOCK_MONOTONIC schedule point, before jitter */
    usec_t due;                     /* the next run: base + jitter */
    usec_t queued_due;              /* the due time of the run now queued */
    usec_t last_fire;               /* CLOCK_MONOTONIC when the timer last ran */
    uint32_t consecutive_failures;
    usec_t down_since;              /* CLOCK_REALTIME of the first failure in a row */
    usec_t next_reminder;           /* CLOCK_MONOTONIC of the next "still failing" */
    uint32_t reminder_step_s;       /* seconds to the reminder after that */
    uint32_t fetches;
    uint32_t failures;
    uint32_t skipped;
};

struct gen {
    struct engine *engine;
    struct config *cfg;  /* owned */
    struct ep_state *eps; /* owned, parallel to cfg->endpoints */
    size_t n_eps;
    unsigned refs;       /* transfers in flight whose endpoint lives here */
    struct gen *next;    /* retired list */
};

struct engine {
    struct ev_loop *loop;       /* the default loop (signals) */
    struct gen *cur;            /* owned */
    struct gen *retired;        /* owned list */
    struct engine_options opt;
    struct http http;
    bool http_ready;
    struct sinkset sinks;       /* parallel to cur->cfg->sinks */
    struct ep_state *qhead, *qtail;
    size_t queued;
    struct xfer *pool;          /* owned, limits.max_concurrent entries of the first config */
    size_t pool_n;
    uint32_t max_per_host;      /* in effect (set at start) */
    struct xfer *free_xfers;
    unsigned in_flight;
    ev_timer kick;
    ev_prepare flush;
    ev_check iter_begin;        /* loop instrumentation */
    ev_timer grace;
    ev_timer progress;
    ev_timer status_timer;
    ev_timer watchdog;
    ev_signal sigterm, sigint, sighup;
    bool stopping;
    usec_t iter_started;
    unsigned started_this_iter;
    struct hist busy;           /* time spent per loop iteration, usec */
    struct hist lateness;       /* daemon timers: firing time - due time, usec */
    struct hist start_lateness; /* due time -> transfer handed to curl, usec */
    struct buf line;            /* serialised record scratch */
    struct buf data;            /* minified document scratch */
    char user_agent[64];
    struct engine_stats st;
    usec_t started;
    uint64_t rng;
    uint32_t ring_fetches[ENGINE_RING];
    uint32_t ring_errors[ENGINE_RING];
    uint64_t ring_sec;
    char status[512];
    char reload_error[300];
    usec_t boot_gap;            /* CLOCK_BOOTTIME - CLOCK_MONOTONIC: grows in suspend */
    bool boot_gap_valid;
    usec_t last_check;          /* CLOCK_MONOTONIC of the previous resume check */
    bool progress_shown;
};

static struct engine *progress_engine; /* for the log hook */

static void engine_start_some(struct engine *e);
static void ep_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void ep_arm(struct engine *e, struct ep_state *s, usec_t base, usec_t now);

/* ---- small helpers ------------------------------------------------------ */

static uint64_t engine_random(struct engine *e)
{
    /* xorshift64*: plenty for jitter */
    uint64_t x = e->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    e->rng = x;
    return x * UINT64_C(2685821657736338717);
}

static void engine_enqueue(struct engine *e, struct ep_state *s, usec_t due, bool start)
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
    if (!start) {
        return;
    }
    if (e->free_xfers && e->started_this_iter < ENGINE_STARTS_PER_TICK) {
        /* a free slot and budget left in this iteration: start now */
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

/* 60 one-second buckets of fetches and errors, for "last 60s" in STATUS. */
static void ring_advance(struct engine *e, usec_t now)
{
    uint64_t sec = now / USEC_PER_SEC;
    if (e->ring_sec == 0) {
        e->ring_sec = sec;
    }
    for (uint64_t s = e->ring_sec + 1; s <= sec && s <= e->ring_sec + ENGINE_RING; s++) {
        e->ring_fetches[s % ENGINE_RING] = 0;
        e->ring_errors[s % ENGINE_RING] = 0;
    }
    e->ring_sec = sec;
}

/* ---- the status line (STATUS=, systemctl status) ----------------------- */

static void engine_status_line(struct engine *e, char *buf, size_t len)
{
    size_t n = 0, failing = 0;
    for (size_t i = 0; i < e->cur->n_eps; i++) {
        const struct ep_state *s = &e->cur->eps[i];
        if (s->selected) {
            n++;
            failing += s->consecutive_failures > 0;
        }
    }
    ring_advance(e, now_usec(CLOCK_MONOTONIC));
    uint64_t f = 0, err = 0;
    for (int i = 0; i < ENGINE_RING; i++) {
        f += e->ring_fetches[i];
        err += e->ring_errors[i];
    }
    int off = 0;
    if (e->reload_error[0]) {
        off = snprintf(buf, len, "reload failed: %s; ", e->reload_error);
        if (off < 0 || (size_t)off >= len) {
            off = 0;
        }
    }
    snprintf(buf + off, len - (size_t)off,
             "%zu endpoint%s: %zu ok, %zu failing; last 60s: %llu fetch%s, %llu error%s; in "
             "flight %u; sink drops %llu",
             n, n == 1 ? "" : "s", n - failing, failing, (unsigned long long)f, f == 1 ? "" : "es",
             (unsigned long long)err, err == 1 ? "" : "s", e->in_flight,
             (unsigned long long)sinkset_dropped(&e->sinks));
}

/* CLOCK_MONOTONIC (and so libev's timers) stands still while the machine is
 * suspended; CLOCK_BOOTTIME does not. When their difference grows, the
 * machine was asleep: every endpoint whose run fell into the sleep runs
 * once now (one catch-up, not a burst of the missed ones), and the grid of
 * every schedule moves by the slept time so it stays on wall-clock time. */
static void engine_check_resume(struct engine *e)
{
    usec_t mono = now_usec(CLOCK_MONOTONIC);
    usec_t gap = now_usec(CLOCK_BOOTTIME) - mono;
    usec_t prev_check = e->last_check;
    e->last_check = mono;
    if (!e->boot_gap_valid || gap < e->boot_gap) {
        e->boot_gap = gap;
        e->boot_gap_valid = true;
        return;
    }
    usec_t slept = gap - e->boot_gap;
    if (slept < USEC_PER_SEC) {
        return;
    }
    e->boot_gap = gap;
    log_notice("the machine was suspended for %.1f s; endpoints that were due run once now",
               (double)slept / 1e6);
    if (e->opt.once || e->stopping) {
        return;
    }
    for (size_t i = 0; i < e->cur->n_eps; i++) {
        struct ep_state *s = &e->cur->eps[i];
        if (!s->selected) {
            continue;
        }
        /* due during the sleep, unless its own timer already ran it since
         * the machine woke up */
        bool due = s->due <= mono + slept && s->last_fire <= prev_check;
        usec_t base = s->base > slept ? s->base - slept : 0;
        usec_t iv = s->cfg->interval;
        usec_t k = mono > base ? (mono - base) / iv + 1 : 0;
        ep_arm(e, s, base + k * iv, mono);
        if (due && !s->xfer && !s->queued) {
            engine_enqueue(e, s, mono, true);
        }
    }
}

static void status_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct engine *e = w->data;
    char line[sizeof(e->status)];
    (void)loop;
    (void)revents;
    engine_check_resume(e);
    engine_status_line(e, line, sizeof(line));
    if (strcmp(line, e->status) != 0) {
        memcpy(e->status, line, sizeof(line));
        notify_status(e->status);
    }
    log_tick(false);
}

/* The watchdog ping comes from the loop itself: a stuck loop stops pinging
 * and systemd restarts the service. */
static void watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    notify_watchdog();
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

/* Hands a serialised record to the endpoint's sinks. A record of an
 * endpoint from a retired generation goes to the current sinks of the same
 * names; a sink that no longer exists counts it as lost. */
static void engine_dispatch(struct engine *e, struct gen *g, const struct endpoint_cfg *ep,
                            const char *line, size_t len)
{
    if (g == e->cur) {
        sinkset_dispatch(&e->sinks, ep, line, len);
        return;
    }
    for (uint32_t j = 0; j < ep->n_sinks; j++) {
        const char *name = g->cfg->sinks[ep->sinks[j]].name;
        int i = config_sink_index(e->cur->cfg, name);
        if (i < 0 || sinkset_write(&e->sinks, (size_t)i, line, len) == -ENOENT) {
            e->st.records_lost++;
            log_sink(LOG_WARNING, name,
                     "removed by a reload while endpoint '%s' was fetching: its record is lost",
                     ep->name);
        }
    }
}

/* The record goes to the sinks of the endpoint's current definition (a
 * transfer carried over by a reload delivers to the new sinks). */
static void engine_emit(struct engine *e, struct ep_state *s, const struct record *rec)
{
    buf_reset(&e->line);
    if (record_serialize(rec, &e->line) < 0) {
        log_endpoint(LOG_ERR, rec->endpoint, "out of memory serialising a record; record lost");
        e->st.records_lost++;
        return;
    }
    engine_dispatch(e, s->gen, s->cfg, e->line.data, e->line.len);
    buf_shrink(&e->line, 1024 * 1024);
}

/* Counts a completed fetch and logs state transitions: the first failure
 * ("down", warning), "still failing" reminders at growing intervals (1 min,
 * 2, 4, ... up to 1 h), and recovery (notice). Individual failures in
 * between are info-level, so a failing endpoint never floods the journal. */
static void engine_account(struct engine *e, struct ep_state *s, const struct record *rec)
{
    usec_t now = now_usec(CLOCK_MONOTONIC);
    ring_advance(e, now);
    e->ring_fetches[e->ring_sec % ENGINE_RING]++;
    e->st.fetches++;
    s->fetches++;
    s->last_error = rec->error;
    struct log_fields lf = LOG_FIELDS_INIT;
    lf.endpoint = rec->endpoint;
    lf.url = rec->url;
    lf.http_status = rec->http_status;
    lf.duration_us = (int64_t)rec->duration;
    lf.bytes = (int64_t)rec->bytes;
    if (rec->error == REC_OK) {
        e->st.ok++;
        if (s->consecutive_failures) {
            char since[32];
            time_format_rfc3339_ms(s->down_since, since);
            lf.event = LOG_EV_ENDPOINT_RECOVERED;
            log_full(LOG_NOTICE, &lf, "recovered after %u failed fetch%s (down since %s)",
                     s->consecutive_failures, s->consecutive_failures == 1 ? "" : "es", since);
        }
        s->consecutive_failures = 0;
        return;
    }
    e->ring_errors[e->ring_sec % ENGINE_RING]++;
    e->st.failed++;
    s->failures++;
    s->consecutive_failures++;
    lf.error_kind = record_error_kind(rec->error);
    lf.curl_code = rec->curl_code;
    if (s->consecutive_failures == 1) {
        s->down_since = rec->fetched_at;
        s->reminder_step_s = (uint32_t)(ENGINE_REMINDER_FIRST / USEC_PER_SEC);
        s->next_reminder = now + ENGINE_REMINDER_FIRST;
        lf.event = LOG_EV_ENDPOINT_DOWN;
        log_full(LOG_WARNING, &lf, "fetch failed: %s: %s", lf.error_kind,
                 rec->message ? rec->message : "");
        return;
    }
    if (now >= s->next_reminder) {
        char since[32];
        time_format_rfc3339_ms(s->down_since, since);
        lf.event = LOG_EV_ENDPOINT_STILL_FAILING;
        log_full(LOG_WARNING, &lf, "still failing since %s (%u failed fetches in a row); last: "
                 "%s: %s",
                 since, s->consecutive_failures, lf.error_kind, rec->message ? rec->message : "");
        usec_t step = (usec_t)s->reminder_step_s * 2 * USEC_PER_SEC;
        step = step > ENGINE_REMINDER_MAX ? ENGINE_REMINDER_MAX : step;
        s->reminder_step_s = (uint32_t)(step / USEC_PER_SEC);
        s->next_reminder = now + step;
        return;
    }
    lf.event = LOG_EV_FETCH_FAILED;
    log_full(LOG_INFO, &lf, "fetch failed: %s: %s", lf.error_kind, rec->message ? rec->message : "");
}

static void gen_free(struct gen *g)
{
    if (!g) {
        return;
    }
    free(g->eps);
    config_free(g->cfg);
    free(g);
}

/* Drops a transfer's reference to its generation; frees a retired one that
 * is no longer needed. */
static void engine_gen_unref(struct engine *e, struct gen *g)
{
    if (--g->refs > 0 || g == e->cur) {
        return;
    }
    for (struct gen **p = &e->retired; *p; p = &(*p)->next) {
        if (*p == g) {
            *p = g->next;
            gen_free(g);
            return;
        }
    }
}

/* A transfer holds two references: on x->gen, whose config its request
 * was built from (libcurl reads the body from that config's arena), and on
 * its owner's generation, whose ep_state it updates when it completes. A
 * reload that carries the endpoint over moves the second one. */
static void engine_release_xfer(struct engine *e, struct xfer *x)
{
    struct ep_state *s = x->owner;
    struct gen *def = x->gen;
    struct gen *own = s->gen;
    s->xfer = NULL;
    xfer_release(x);
    x->next_free = e->free_xfers;
    e->free_xfers = x;
    e->in_flight--;
    engine_gen_unref(e, def);
    engine_gen_unref(e, own);
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
    engine_release_xfer(e, x);
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
            x->gen = s->gen;
            r = http_add(&e->http, x->easy);
        }
        if (r < 0) {
            xfer_release(x);
            x->next_free = e->free_xfers;
            e->free_xfers = x;
            engine_fail_start(e, s, r);
            continue;
        }
        s->xfer = x;
        s->gen->refs += 2; /* definition and owner, see engine_release_xfer */
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

/* Arms the endpoint's timer for base plus a symmetric jitter: the mean
 * interval stays the interval (a one-sided jitter would lengthen it). */
static void ep_arm(struct engine *e, struct ep_state *s, usec_t base, usec_t now)
{
    usec_t j = s->cfg->jitter;
    s->base = base;
    s->due = base;
    if (j) {
        uint64_t r = engine_random(e) % (2 * j + 1);
        s->due = r >= j ? base + (r - j) : (base > j - r ? base - (j - r) : 0);
    }
    if (s->due < now) {
        s->due = now;
    }
    ev_timer_stop(e->loop, &s->timer);
    ev_timer_set(&s->timer, usec_to_ev(s->due - now), 0.);
    ev_timer_start(e->loop, &s->timer);
}

/* First run: at a wall-clock multiple of the interval (+ offset) with
 * align, else at the deterministic splay. From then on the schedule runs
 * on the monotonic clock: wall-clock jumps do not change the cadence. */
static void ep_schedule_first(struct engine *e, struct ep_state *s, usec_t now)
{
    usec_t iv = s->cfg->interval;
    usec_t first;
    if (s->cfg->align) {
        usec_t wall = now_usec(CLOCK_REALTIME);
        usec_t k = (wall >= s->cfg->offset ? (wall - s->cfg->offset) / iv : 0) + 1;
        usec_t next = k * iv + s->cfg->offset;
        first = now + (next > wall ? next - wall : 0);
    } else {
        first = now + engine_splay(s->cfg->name, iv);
    }
    ev_timer_init(&s->timer, ep_timer_cb, 0., 0.);
    s->timer.data = s;
    ep_arm(e, s, first, now);
}

static void ep_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct ep_state *s = w->data;
    struct engine *e = s->gen->engine;
    (void)loop;
    (void)revents;
    if (e->stopping) {
        return;
    }
    usec_t now = now_usec(CLOCK_MONOTONIC);
    usec_t due = s->due;
    s->last_fire = now;
    hist_add(&e->lateness, now > due ? now - due : 0);
    /* Next run: the next point of the grid after now. After a SIGSTOP or a
     * suspend this run is the one catch-up, not a burst of missed ticks. */
    usec_t iv = s->cfg->interval;
    usec_t k = now > s->base ? (now - s->base) / iv + 1 : 1;
    ep_arm(e, s, s->base + k * iv, now);
    if (s->xfer || s->queued) {
        /* never two fetches of one endpoint at once: skip this run */
        s->skipped++;
        e->st.skipped++;
        log_endpoint(LOG_DEBUG, s->cfg->name, "previous fetch still running, skipping this run");
        return;
    }
    engine_enqueue(e, s, due, true);
}

/* ---- generations and reload --------------------------------------------- */

static struct gen *gen_new(struct engine *e, struct config *cfg)
{
    struct gen *g = calloc(1, sizeof(*g));
    if (!g) {
        config_free(cfg);
        return NULL;
    }
    g->engine = e;
    g->cfg = cfg;
    g->n_eps = cfg->n_endpoints;
    g->eps = calloc(g->n_eps ? g->n_eps : 1, sizeof(*g->eps));
    if (!g->eps) {
        gen_free(g);
        return NULL;
    }
    for (size_t i = 0; i < g->n_eps; i++) {
        struct ep_state *s = &g->eps[i];
        s->cfg = &cfg->endpoints[i];
        s->gen = g;
        s->selected = e->opt.n_only == 0 && s->cfg->enabled;
        ev_timer_init(&s->timer, ep_timer_cb, 0., 0.);
        s->timer.data = s;
    }
    for (size_t i = 0; i < e->opt.n_only; i++) {
        const struct endpoint_cfg *ep = config_find_endpoint(cfg, e->opt.only[i]);
        if (ep) {
            g->eps[ep - cfg->endpoints].selected = true;
        }
    }
    /* only the sinks of selected endpoints are opened */
    for (size_t i = 0; i < cfg->n_sinks; i++) {
        cfg->sinks[i].used = false;
    }
    for (size_t i = 0; i < g->n_eps; i++) {
        if (g->eps[i].selected) {
            for (uint32_t j = 0; j < g->eps[i].cfg->n_sinks; j++) {
                cfg->sinks[g->eps[i].cfg->sinks[j]].used = true;
            }
        }
    }
    return g;
}

static void engine_reload_failed(struct engine *e, const char *why)
{
    snprintf(e->reload_error, sizeof(e->reload_error), "%s", why);
    struct log_fields lf = LOG_FIELDS_INIT;
    lf.event = LOG_EV_RELOAD_FAILED;
    log_full(LOG_ERR, &lf, "reload failed, keeping the running configuration: %s", why);
}

/* SIGHUP: read and validate the whole new config; on any error keep the
 * running one. On success swap: unchanged endpoints keep their schedule
 * phase and state, changed ones are rescheduled (their failure state is
 * kept), removed ones finish their fetch in flight, new ones start at their
 * splay. Sinks with an unchanged definition keep their instance and files
 * are reopened by path (logrotate's "create" mode). READY=1 on every path. */
static void engine_reload(struct engine *e)
{
    notify_reloading();
    struct config *ncfg = NULL;
    struct config_errors errs = {0};
    const char *path = e->cur->cfg->path;
    log_notice("reloading the configuration from %s", path);
    int r = config_load(path, &ncfg, &errs);
    if (r < 0) {
        for (size_t i = 0; i < errs.n; i++) {
            struct log_fields lf = LOG_FIELDS_INIT;
            lf.event = LOG_EV_RELOAD_FAILED;
            log_full(LOG_ERR, &lf, "%s", errs.msgs[i]);
        }
        engine_reload_failed(e, errs.n ? errs.msgs[0] : strerror(-r));
        config_errors_done(&errs);
        goto out;
    }
    struct gen *ng = gen_new(e, ncfg);
    if (!ng) {
        engine_reload_failed(e, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < e->opt.n_only; i++) {
        if (!config_find_endpoint(ncfg, e->opt.only[i])) {
            log_warning("--endpoint '%s' is no longer in the configuration", e->opt.only[i]);
        }
    }
    /* a removed endpoint still fetching delivers to the sinks of the same
     * names in the new config: keep those open */
    for (size_t i = 0; i < e->pool_n; i++) {
        struct ep_state *os = e->pool[i].owner;
        if (!os) {
            continue;
        }
        const struct endpoint_cfg *nep = config_find_endpoint(ncfg, os->cfg->name);
        if (nep && ng->eps[nep - ncfg->endpoints].selected) {
            continue; /* carried over: the new definition's sinks are open */
        }
        for (uint32_t j = 0; j < os->cfg->n_sinks; j++) {
            int si = config_sink_index(ncfg, os->gen->cfg->sinks[os->cfg->sinks[j]].name);
            if (si >= 0) {
                ncfg->sinks[si].used = true;
            }
        }
    }
    struct sinkset nsinks = {0};
    r = sinkset_reopen(&nsinks, ncfg, &e->sinks, e->cur->cfg, e->loop);
    if (r < 0) {
        engine_reload_failed(e, "a sink could not be opened (see the previous message)");
        gen_free(ng);
        goto out;
    }
    e->sinks = nsinks;

    struct gen *old = e->cur;
    ev_now_update(e->loop); /* timers below are relative to the loop's clock */
    usec_t now = now_usec(CLOCK_MONOTONIC);
    if (ncfg->limits.max_concurrent != e->pool_n ||
        ncfg->limits.max_per_host != e->max_per_host) {
        log_warning("limits.max_concurrent and limits.max_per_host keep their values (%zu, %u) "
                    "until fetchd restarts",
                    e->pool_n, e->max_per_host);
    }
    unsigned added = 0, changed = 0, kept = 0, removed = 0;
    for (size_t i = 0; i < ng->n_eps; i++) {
        struct ep_state *ns = &ng->eps[i];
        if (!ns->selected) {
            continue;
        }
        const struct endpoint_cfg *oep = config_find_endpoint(old->cfg, ns->cfg->name);
        struct ep_state *os = oep ? &old->eps[oep - old->cfg->endpoints] : NULL;
        if (!os || !os->selected) {
            added++;
            ep_schedule_first(e, ns, now);
            continue;
        }
        ns->consecutive_failures = os->consecutive_failures;
        ns->down_since = os->down_since;
        ns->next_reminder = os->next_reminder;
        ns->reminder_step_s = os->reminder_step_s;
        ns->fetches = os->fetches;
        ns->failures = os->failures;
        ns->skipped = os->skipped;
        ns->last_error = os->last_error;
        if (os->xfer) {
            /* the transfer completes for the new state; its endpoint
             * definition stays in its own generation until then */
            ns->xfer = os->xfer;
            ns->xfer->owner = ns;
            os->xfer = NULL;
            ng->refs++;
            engine_gen_unref(e, old); /* cannot free it: x->gen still counts */
        }
        if (config_endpoint_equal(old->cfg, os->cfg, ng->cfg, ns->cfg)) {
            kept++;
            ns->base = os->base;
            ns->due = os->due;
            ev_timer_set(&ns->timer, usec_to_ev(ns->due > now ? ns->due - now : 0), 0.);
            ev_timer_start(e->loop, &ns->timer);
        } else {
            changed++;
            ep_schedule_first(e, ns, now);
        }
    }
    for (size_t i = 0; i < old->n_eps; i++) {
        struct ep_state *os = &old->eps[i];
        ev_timer_stop(e->loop, &os->timer);
        if (os->selected && (!config_find_endpoint(ng->cfg, os->cfg->name) ||
                             !ng->eps[config_find_endpoint(ng->cfg, os->cfg->name) -
                                      ng->cfg->endpoints].selected)) {
            removed++;
        }
    }
    /* the queue: keep the order, move waiting runs to the new states */
    struct ep_state *q = e->qhead;
    e->qhead = e->qtail = NULL;
    e->queued = 0;
    while (q) {
        struct ep_state *next = q->qnext;
        q->queued = false;
        q->qnext = NULL;
        const struct endpoint_cfg *nep = config_find_endpoint(ng->cfg, q->cfg->name);
        struct ep_state *ns = nep ? &ng->eps[nep - ng->cfg->endpoints] : NULL;
        if (ns && ns->selected && !ns->xfer && !ns->queued) {
            engine_enqueue(e, ns, q->queued_due, false);
        }
        q = next;
    }
    e->cur = ng;
    if (old->refs > 0) {
        old->next = e->retired;
        e->retired = old;
    } else {
        gen_free(old);
    }
    e->reload_error[0] = '\0';
    e->st.selected = 0;
    for (size_t i = 0; i < ng->n_eps; i++) {
        e->st.selected += ng->eps[i].selected;
    }
    struct log_fields lf = LOG_FIELDS_INIT;
    lf.event = LOG_EV_RELOADED;
    log_full(LOG_NOTICE, &lf,
             "configuration reloaded: %llu endpoints (%u unchanged, %u changed, %u added, %u "
             "removed)",
             (unsigned long long)e->st.selected, kept, changed, added, removed);
    if (e->qhead && e->free_xfers) {
        engine_start_some(e);
    }
out:
    engine_status_line(e, e->status, sizeof(e->status));
    notify_ready(e->status);
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
        engine_release_xfer(e, x);
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
    if (w->signum == SIGHUP) {
        if (e->opt.once) {
            log_notice("SIGHUP ignored with --once");
            return;
        }
        if (e->stopping) {
            return;
        }
        engine_reload(e);
        return;
    }
    e->st.interrupted = true;
    if (!e->stopping) {
        e->stopping = true;
        notify_stopping();
        for (size_t i = 0; i < e->cur->n_eps; i++) {
            ev_timer_stop(loop, &e->cur->eps[i].timer);
        }
        ev_timer_stop(loop, &e->kick);
        struct log_fields lf = LOG_FIELDS_INIT;
        lf.event = LOG_EV_STOPPING;
        if (e->in_flight == 0) {
            log_full(LOG_NOTICE, &lf, "received %s, stopping", strsignal(w->signum));
            ev_break(loop, EVBREAK_ALL);
            return;
        }
        char g[32];
        log_full(LOG_NOTICE, &lf,
                 "received %s, finishing %u transfer%s in flight (up to %s; again to stop now)",
                 strsignal(w->signum), e->in_flight, e->in_flight == 1 ? "" : "s",
                 units_format_duration(e->cur->cfg->limits.shutdown_grace, g, sizeof(g)));
        /* keep systemd's stop timeout from cutting the drain short */
        notify_extend_timeout(e->cur->cfg->limits.shutdown_grace + 5 * USEC_PER_SEC);
        ev_timer_set(&e->grace, usec_to_ev(e->cur->cfg->limits.shutdown_grace), 0.);
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
    e->opt = *opt;
    int r;
    if (getrandom(&e->rng, sizeof(e->rng), GRND_NONBLOCK) != sizeof(e->rng) || e->rng == 0) {
        e->rng = now_usec(CLOCK_REALTIME) | 1;
    }
    e->cur = gen_new(e, cfg);
    if (!e->cur) {
        free(e);
        return -ENOMEM;
    }

    e->loop = ev_default_loop(EVFLAG_AUTO);
    if (!e->loop) {
        log_error("cannot create the event loop (bad LIBEV_FLAGS?)");
        r = -EIO;
        goto fail;
    }
    engine_raise_nofile(cfg->limits.max_concurrent);

    /* the pool is sized once: a reload changing max_concurrent takes effect
     * at the next start (the reload says so) */
    e->pool = calloc(cfg->limits.max_concurrent, sizeof(*e->pool));
    if (!e->pool) {
        r = -ENOMEM;
        goto fail;
    }
    e->pool_n = cfg->limits.max_concurrent;
    e->max_per_host = cfg->limits.max_per_host;
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
    ev_timer_init(&e->status_timer, status_cb, 1., 1.);
    e->status_timer.data = e;
    ev_timer_init(&e->watchdog, watchdog_cb, 0., 0.);
    ev_signal_init(&e->sigterm, signal_cb, SIGTERM);
    e->sigterm.data = e;
    ev_signal_init(&e->sigint, signal_cb, SIGINT);
    e->sigint.data = e;
    ev_signal_init(&e->sighup, signal_cb, SIGHUP);
    e->sighup.data = e;

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

/* main() blocks TERM, INT and HUP until the loop can take them (a reload
 * during start-up must not kill the process). libev 4.33 installs
 * sigaction handlers and leaves the mask alone, so unblock them here; a
 * signal that arrived meanwhile is delivered now. A libev that reads
 * signals from a signalfd needs them blocked and installs no handler:
 * those stay blocked. */
static void engine_unblock_signals(void)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        struct sigaction sa;
        if (sigaction(sigs[i], NULL, &sa) == 0 && sa.sa_handler != SIG_DFL &&
            sa.sa_handler != SIG_IGN) {
            sigaddset(&set, sigs[i]);
        }
    }
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

int engine_run(struct engine *e)
{
    e->started = now_usec(CLOCK_MONOTONIC);
    ev_signal_start(e->loop, &e->sigterm);
    ev_signal_start(e->loop, &e->sigint);
    ev_signal_start(e->loop, &e->sighup);
    engine_unblock_signals();
    /* "weak" watchers (ev_unref): they must not keep ev_run() alive on
     * their own; engine_free refs the loop again before stopping them */
    ev_prepare_start(e->loop, &e->flush);
    ev_unref(e->loop);
    ev_check_start(e->loop, &e->iter_begin);
    ev_unref(e->loop);

    usec_t start = now_usec(CLOCK_MONOTONIC);
    for (size_t i = 0; i < e->cur->n_eps; i++) {
        struct ep_state *s = &e->cur->eps[i];
        if (!s->selected) {
            continue;
        }
        e->st.selected++;
        if (e->opt.once) {
            engine_enqueue(e, s, start, true);
        } else {
            ep_schedule_first(e, s, start);
        }
    }
    if (e->opt.once && e->opt.progress && e->st.selected > 1) {
        progress_engine = e;
        log_set_before_write(progress_clear);
        ev_timer_start(e->loop, &e->progress);
        ev_unref(e->loop);
    }
    if (!e->opt.once) {
        ev_timer_start(e->loop, &e->status_timer);
        ev_unref(e->loop);
        usec_t wd = notify_watchdog_usec();
        if (wd) {
            ev_timer_set(&e->watchdog, usec_to_ev(wd / 2), usec_to_ev(wd / 2));
            ev_timer_start(e->loop, &e->watchdog);
            ev_unref(e->loop);
            notify_watchdog();
        }
        struct log_fields lf = LOG_FIELDS_INIT;
        lf.event = LOG_EV_STARTED;
        log_full(LOG_NOTICE, &lf, "started: %llu endpoint%s, max %u concurrent transfers%s",
                 (unsigned long long)e->st.selected, e->st.selected == 1 ? "" : "s",
                 e->cur->cfg->limits.max_concurrent,
                 wd ? ", watchdog on" : "");
        /* config loaded, sinks open, schedules armed */
        engine_status_line(e, e->status, sizeof(e->status));
        notify_ready(e->status);
    }

    /* with --once everything may already be done (every transfer failed
     * to start): an ev_break before ev_run would be forgotten */
    if (!e->opt.once || !engine_finished(e)) {
        ev_run(e->loop, 0);
    }

    if (ev_is_active(&e->progress)) {
        ev_ref(e->loop); /* it was started weak */
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
    for (size_t i = 0; i < e->cur->n_eps; i++) {
        const struct ep_state *s = &e->cur->eps[i];
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
        /* weak watchers hold an unref'd count: ref before stopping */
        ev_timer *weak_timers[] = {&e->progress, &e->status_timer, &e->watchdog};
        for (size_t i = 0; i < sizeof(weak_timers) / sizeof(weak_timers[0]); i++) {
            if (ev_is_active(weak_timers[i])) {
                ev_ref(e->loop);
                ev_timer_stop(e->loop, weak_timers[i]);
            }
        }
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
        ev_signal_stop(e->loop, &e->sighup);
        for (size_t i = 0; e->cur && i < e->cur->n_eps; i++) {
            ev_timer_stop(e->loop, &e->cur->eps[i].timer);
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
    while (e->retired) {
        struct gen *g = e->retired;
        e->retired = g->next;
        gen_free(g);
    }
    gen_free(e->cur);
    buf_done(&e->line);
    buf_done(&e->data);
    if (e->loop) {
        ev_loop_destroy(e->loop);
    }
    free(e);
    return NULL;
}
