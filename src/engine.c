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

#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <ev.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "checkpoint.h"
#include "cron.h"
#include "fetchd-build.h"
#include "hist.h"
#include "http.h"
#include "log.h"
#include "jptr.h"
#include "json.h"
#include "notify.h"
#include "oauth.h"
#include "record.h"
#include "secret.h"
#include "template.h"
#include "url.h"
#include "sink.h"
#include "units.h"
#include "util/file.h"
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
#define ENGINE_BUDGET_WINDOW 10 /* seconds over which the retry budget is counted */
#define ENGINE_BUDGET_MIN 10    /* retries always allowed per window */
#define ENGINE_COND_SAVE_DELAY 5.0 /* seconds between saves of conditional.json */
#define ENGINE_TRIM_EVERY 60       /* status ticks (seconds) between malloc_trim() calls */

struct gen;
struct ep_state;

/* A fetch cycle that goes beyond one plain request: retries, redirects,
 * pages, or a wait for an OAuth2 token. Allocated when first needed, freed
 * when the cycle ends; holds a reference on its owner's generation. */
struct cycle {
    struct ep_state *owner;
    unsigned attempt;       /* attempts made for the current page, >= 1 */
    unsigned page;          /* 1-based */
    unsigned redirects;     /* hops followed for the current request */
    bool cross_origin;      /* secrets stripped for the current request */
    bool page_cross_origin; /* ... and for the current page's own URL */
    bool as_get;
    bool token_retried;     /* a 401 already fetched a fresh token */
    bool errors;            /* an error record was emitted in this cycle */
    char *url;              /* the next request's URL, NULL = the endpoint's */
    char *page_url;         /* the current page's URL (retries start there) */
    char *pending;          /* the failed attempt's record line while waiting */
    size_t pending_len;
    enum record_error pend_kind;
    long pend_status;
    int pend_curl;
    char pend_msg[200];
    usec_t wake;            /* retry at (CLOCK_MONOTONIC) */
    usec_t fd_since;        /* deferred for lack of fds since, or 0 */
    size_t heap_idx;        /* position in the retry heap, SIZE_MAX if not there */
    struct oauth_waiter waiter;
    /* request templates: this cycle's rendered request (owned) */
    char *tpl_url;          /* the URL (page 1, retries of it, cursor pages) */
    char **tpl_headers;     /* parallel to the endpoint's headers (NULL-terminated) */
    bool *tpl_header_secret; /* parallel: never sent to another origin */
    size_t tpl_n_headers;
    char *tpl_body;
    size_t tpl_body_len;
    bool tpl_body_secret;   /* the body holds a credential */
    usec_t tpl_end;         /* interval_end of this cycle (wall clock) */
    struct ckpt_cycle *trk; /* checkpoint / last success tracking, or NULL */
};

struct ep_state {
    const struct endpoint_cfg *cfg; /* borrowed from gen->cfg */
    struct gen *gen;
    ev_timer timer;                 /* daemon mode schedule */
    struct ep_state *qnext;         /* FIFO of due endpoints */
    struct xfer *xfer;              /* the transfer in flight, or NULL */
    bool queued;
    bool selected;
    bool owed;                      /* a run waits for a paused sink */
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
    uint32_t backed_off;            /* runs skipped by the breaker or a Retry-After */
    struct cycle *cyc;              /* or NULL */
    struct cond *cond;              /* conditional validators, or NULL */
    uint8_t breaker_level;          /* 0: closed */
    bool paused;                    /* by "fetchd pause": scheduled runs are skipped */
    int64_t cron_at;                /* "schedule": the planned run, wall-clock seconds */
    usec_t hold_until;              /* CLOCK_MONOTONIC: no new cycle before */
    struct ep_stats *stats;         /* for status and metrics; after the first fetch */
    usec_t sched_real;              /* CLOCK_REALTIME of the scheduled run now queued,
                                     * 0: not a scheduled run (now) */
};

/* What "fetchd status" and the metrics show of an endpoint; allocated at
 * its first completed fetch, so 100 000 idle endpoints cost nothing. */
struct ep_stats {
    uint64_t records;
    usec_t last_fetch, last_ok;      /* CLOCK_REALTIME */
    usec_t last_duration;
    long last_status;
    char last_message[160];
};

const double engine_lat_bounds[ENGINE_LAT_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                      0.5,   1,    2.5,   5,    10,  30};

static struct ep_stats *ep_stats(struct ep_state *s)
{
    if (!s->stats) {
        s->stats = calloc(1, sizeof(*s->stats)); /* out of memory: no stats */
    }
    return s->stats;
}

/* ETag / Last-Modified of an endpoint with "conditional". */
struct cond {
    uint64_t fp;                    /* request fingerprint (url, method, body) */
    char *etag;
    char *last_modified;
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
    size_t owed;                    /* endpoints with a run owed (paused sinks) */
    uint64_t sink_progress;         /* --once: delivered + dropped, last seen */
    struct xfer *pool;          /* owned, limits.max_concurrent entries of the first config */
    size_t pool_n;
    uint32_t max_per_host;      /* in effect (set at start) */
    struct xfer *free_xfers;
    unsigned in_flight;
    /* out of file descriptors: at most fd_cap transfers (0: no cap), none
     * started before fd_until, see engine_fd_defer */
    unsigned fd_cap;
    usec_t fd_until, fd_backoff;
    usec_t fd_logged;
    uint64_t fd_unlogged;
    ev_timer kick;
    ev_prepare flush;
    ev_idle more;                   /* sinks have more to deliver right away */
    ev_check iter_begin;        /* loop instrumentation */
    ev_timer grace;
    ev_timer progress;
    ev_timer status_timer;
    ev_timer watchdog;
    ev_signal sigterm, sigint, sighup;
    bool stopping;
    bool stop_now;              /* a second SIGTERM/SIGINT: no last delivery attempt */
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
    char ctl_status[512];       /* engine_status(): not the last one sent */
    uint64_t lat[ENGINE_LAT_BUCKETS + 1]; /* fetch durations; the last bucket is +Inf */
    uint64_t lat_sum;           /* usec */
    char reload_error[300];
    usec_t boot_gap;            /* CLOCK_BOOTTIME - CLOCK_MONOTONIC: grows in suspend */
    bool boot_gap_valid;
    usec_t last_check;          /* CLOCK_MONOTONIC of the previous resume check */
    bool progress_shown;
    /* retries */
    struct ep_state **heap;     /* cycles waiting to retry, by wake time */
    size_t heap_n, heap_cap;
    ev_timer retry_timer;
    unsigned waiting;           /* cycles in the heap or waiting for a token */
    uint32_t budget_first[ENGINE_BUDGET_WINDOW];
    uint32_t budget_retry[ENGINE_BUDGET_WINDOW];
    uint64_t budget_sec;
    uint64_t retries_denied;
    /* auth */
    struct secrets secrets;
    struct oauth oauth;
    /* conditional requests */
    char *state_file;           /* STATE_DIR/conditional.json, or NULL */
    cJSON *saved_cond;          /* loaded at start, consumed by endpoints */
    bool cond_dirty;
    struct ckpt_store *ckpt;    /* checkpoints and last-success times */
    unsigned trim_ticks;
    usec_t trim_max;            /* the longest malloc_trim() */
    ev_timer cond_timer;
};

static struct engine *progress_engine; /* for the log hook */

static void engine_start_some(struct engine *e);
static bool engine_fd_defer(struct engine *e, struct ep_state *s, const struct xfer *x);
static void engine_fd_recover(struct engine *e);
static void cond_free(struct cond *c);
static void cycle_destroy(struct cycle *c);
static int engine_render(struct engine *e, struct ep_state *s, struct cycle *c,
                         const struct ckpt_entry *en, usec_t now_real, usec_t *ret_end);
static void ep_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void ep_cron_arm(struct engine *e, struct ep_state *s, int64_t after, usec_t now);
static void ep_cron_sleep(struct engine *e, struct ep_state *s, usec_t now);
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

/* No fetch is running or will start (with --once or when stopping). */
static bool engine_finished(const struct engine *e)
{
    return e->in_flight == 0 && e->waiting == 0 &&
           ((e->queued == 0 && e->owed == 0) || e->stopping);
}

static uint64_t engine_sink_queued(const struct engine *e)
{
    struct sink_counters c;
    uint64_t q;
    sinkset_totals(&e->sinks, &c, &q);
    return q;
}

/* With --once or when stopping: ends the loop once every fetch finished and
 * every sink delivered its queue; sinks that still hold records get up to
 * shutdown_grace (the grace timer), then what is left is counted lost. */
static void engine_check_done(struct engine *e)
{
    if (!(e->opt.once || e->stopping) || e->in_flight || e->waiting ||
        (e->queued && !e->stopping)) {
        return;
    }
    uint64_t q = engine_sink_queued(e);
    if (q == 0 && (e->owed == 0 || e->stopping)) {
        ev_break(e->loop, EVBREAK_ALL);
        return;
    }
    sinkset_drain(&e->sinks);
    if (!ev_is_active(&e->grace)) {
        /* a sink that does not drain (or keeps endpoints paused) must not
         * keep --once or a stop waiting for ever */
        char g[32];
        log_info("waiting up to %s for sinks to deliver %llu queued record%s",
                   units_format_duration(e->cur->cfg->limits.shutdown_grace, g, sizeof(g)),
                   (unsigned long long)q, q == 1 ? "" : "s");
        ev_timer_set(&e->grace, usec_to_ev(e->cur->cfg->limits.shutdown_grace), 0.);
        ev_timer_start(e->loop, &e->grace);
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
    size_t n = 0, failing = 0, backing = 0;
    for (size_t i = 0; i < e->cur->n_eps; i++) {
        const struct ep_state *s = &e->cur->eps[i];
        if (s->selected) {
            n++;
            failing += s->consecutive_failures > 0;
            backing += s->breaker_level > 0;
        }
    }
    char bo[48] = "";
    if (backing) {
        snprintf(bo, sizeof(bo), " (%zu backing off)", backing);
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
    struct sink_counters sc;
    uint64_t sq;
    sinkset_totals(&e->sinks, &sc, &sq);
    const struct sink *ps = sinkset_problem(&e->sinks);
    int k = snprintf(buf + off, len - (size_t)off,
                     "%zu endpoint%s: %zu ok, %zu failing%s; last 60s: %llu fetch%s, %llu error%s; "
                     "in flight %u; sinks: %llu queued, %llu dropped",
                     n, n == 1 ? "" : "s", n - failing, failing, bo, (unsigned long long)f,
                     f == 1 ? "" : "es", (unsigned long long)err, err == 1 ? "" : "s",
                     e->in_flight, (unsigned long long)sq, (unsigned long long)sc.dropped);
    if (ps && k > 0 && (size_t)(off + k) < len) {
        snprintf(buf + off + k, len - (size_t)(off + k), "; sink '%s': %s", ps->name, ps->problem);
    }
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
        if (s->cfg->cron) {
            int64_t real = (int64_t)(now_usec(CLOCK_REALTIME) / USEC_PER_SEC);
            due = s->cron_at > 0 && s->cron_at <= real;
            if (due) {
                ep_cron_arm(e, s, real, mono);
            }
            if (due && !s->xfer && !s->queued && !s->cyc && mono >= s->hold_until && !s->paused) {
                engine_enqueue(e, s, mono, true);
            }
            continue;
        }
        usec_t base = s->base > slept ? s->base - slept : 0;
        usec_t iv = s->cfg->interval;
        usec_t k = mono > base ? (mono - base) / iv + 1 : 0;
        ep_arm(e, s, base + k * iv, mono);
        if (due && !s->xfer && !s->queued && !s->cyc && mono >= s->hold_until) {
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
    sinkset_summary(&e->sinks, now_usec(CLOCK_MONOTONIC), e->cur->cfg->limits.stats_interval,
                    false);
    engine_status_line(e, line, sizeof(line));
    if (strcmp(line, e->status) != 0) {
        memcpy(e->status, line, sizeof(line));
        notify_status(e->status);
    }
    log_tick(false);
    if (++e->trim_ticks >= ENGINE_TRIM_EVERY) {
        /* Free heap pages go back to the kernel: RSS follows what fetchd
         * uses, not the high-water mark of a burst, nor pages that freed
         * chunks scattered over the heap touch one by one over hours (about
         * 1 MiB in 10 minutes at 10,000 fetches/s, bench/soak.sh). The
         * stop log gives the longest one. */
        e->trim_ticks = 0;
        usec_t t0 = now_usec(CLOCK_MONOTONIC);
        (void)malloc_trim(0);
        usec_t took = now_usec(CLOCK_MONOTONIC) - t0;
        if (took > e->trim_max) {
            e->trim_max = took;
        }
    }
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
                            const struct sink_item *it)
{
    if (g == e->cur) {
        sinkset_dispatch(&e->sinks, ep, it);
        return;
    }
    for (uint32_t j = 0; j < ep->n_sinks; j++) {
        const char *name = g->cfg->sinks[ep->sinks[j]].name;
        int i = config_sink_index(e->cur->cfg, name);
        if (i < 0 || sinkset_write(&e->sinks, (size_t)i, it) == -ENOENT) {
            if (it->ticket) {
                it->ticket->failed = true;
            }
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
        ckpt_cycle_record(s->cyc ? s->cyc->trk : NULL, false, NULL, 0);
        return;
    }
    struct sink_item it = {
        .line = e->line.data,
        .len = e->line.len,
        .endpoint = s->cfg->name,
        .error = rec->error,
        .http_status = rec->http_status,
        .fetched_at = rec->fetched_at,
    };
    if (rec->error == REC_OK && rec->data && rec->data_len && e->line.len >= rec->data_len + 2) {
        /* "data" is the last member: ...,"data":<data>}\n */
        it.data_off = e->line.len - 2 - rec->data_len;
        it.data_len = rec->data_len;
    }
    if (s->cyc && s->cyc->trk) {
        ckpt_cycle_record(s->cyc->trk, rec->error == REC_OK, rec->data, rec->data_len);
        it.ticket = ckpt_cycle_ticket(s->cyc->trk);
    }
    engine_dispatch(e, s->gen, s->cfg, &it);
    buf_shrink(&e->line, 1024 * 1024);
    struct ep_stats *es = ep_stats(s);
    if (es) {
        es->records++;
    }
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
    size_t b = 0;
    while (b < ENGINE_LAT_BUCKETS && (double)rec->duration / 1e6 > engine_lat_bounds[b]) {
        b++;
    }
    e->lat[b]++;
    e->lat_sum += rec->duration;
    struct ep_stats *es = ep_stats(s);
    if (es) {
        es->last_fetch = rec->fetched_at;
        es->last_duration = rec->duration;
        es->last_status = rec->http_status;
        snprintf(es->last_message, sizeof(es->last_message), "%s",
                 rec->error != REC_OK && rec->message ? rec->message : "");
        if (rec->error == REC_OK) {
            es->last_ok = rec->fetched_at;
        }
    }
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
    for (size_t i = 0; g->eps && i < g->n_eps; i++) {
        cycle_destroy(g->eps[i].cyc); /* only at exit: a live cycle holds a reference */
        cond_free(g->eps[i].cond);
        free(g->eps[i].stats);
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

/* ---- cycles: retries, redirects, pages ---------------------------------- */

static void cycle_destroy(struct cycle *c)
{
    if (c) {
        /* a cycle that never ended (the generation went away): it advances
         * nothing */
        ckpt_cycle_end(c->trk, false, NULL);
        free(c->url);
        free(c->page_url);
        free(c->pending);
        free(c->tpl_url);
        if (c->tpl_headers) {
            for (size_t i = 0; c->tpl_headers[i]; i++) {
                free(c->tpl_headers[i]);
            }
            free(c->tpl_headers);
        }
        free(c->tpl_header_secret);
        free(c->tpl_body);
        free(c);
    }
}

static struct cycle *cycle_get(struct engine *e, struct ep_state *s)
{
    (void)e;
    if (s->cyc) {
        return s->cyc;
    }
    struct cycle *c = calloc(1, sizeof(*c));
    if (!c) {
        return NULL;
    }
    c->owner = s;
    c->attempt = 1;
    c->page = 1;
    c->heap_idx = SIZE_MAX;
    s->cyc = c;
    s->gen->refs++; /* see struct cycle */
    return c;
}

static void cycle_free(struct engine *e, struct ep_state *s)
{
    struct cycle *c = s->cyc;
    if (!c) {
        return;
    }
    oauth_cancel(&e->oauth, &c->waiter);
    s->cyc = NULL;
    cycle_destroy(c);
    engine_gen_unref(e, s->gen);
}

/* the retry heap: a binary min-heap on cycle->wake */
static bool heap_less(struct ep_state *a, struct ep_state *b)
{
    return a->cyc->wake < b->cyc->wake;
}

static void heap_swap(struct engine *e, size_t i, size_t j)
{
    struct ep_state *t = e->heap[i];
    e->heap[i] = e->heap[j];
    e->heap[j] = t;
    e->heap[i]->cyc->heap_idx = i;
    e->heap[j]->cyc->heap_idx = j;
}

static void heap_up(struct engine *e, size_t i)
{
    while (i > 0 && heap_less(e->heap[i], e->heap[(i - 1) / 2])) {
        heap_swap(e, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(struct engine *e, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->heap_n && heap_less(e->heap[l], e->heap[m])) {
            m = l;
        }
        if (r < e->heap_n && heap_less(e->heap[r], e->heap[m])) {
            m = r;
        }
        if (m == i) {
            return;
        }
        heap_swap(e, i, m);
        i = m;
    }
}

static void retry_timer_arm(struct engine *e)
{
    ev_timer_stop(e->loop, &e->retry_timer);
    if (e->heap_n == 0) {
        return;
    }
    usec_t now = now_usec(CLOCK_MONOTONIC);
    usec_t wake = e->heap[0]->cyc->wake;
    ev_timer_set(&e->retry_timer, usec_to_ev(wake > now ? wake - now : 0), 0.);
    ev_timer_start(e->loop, &e->retry_timer);
}

static int heap_push(struct engine *e, struct ep_state *s)
{
    if (e->heap_n == e->heap_cap) {
        size_t nc = e->heap_cap ? e->heap_cap * 2 : 64;
        struct ep_state **nh = realloc(e->heap, nc * sizeof(*nh));
        if (!nh) {
            return -ENOMEM;
        }
        e->heap = nh;
        e->heap_cap = nc;
    }
    e->heap[e->heap_n] = s;
    s->cyc->heap_idx = e->heap_n++;
    heap_up(e, e->heap_n - 1);
    e->waiting++;
    retry_timer_arm(e);
    return 0;
}

static void heap_remove(struct engine *e, struct ep_state *s)
{
    size_t i = s->cyc->heap_idx;
    if (i == SIZE_MAX) {
        return;
    }
    s->cyc->heap_idx = SIZE_MAX;
    e->heap_n--;
    e->waiting--;
    if (i != e->heap_n) {
        e->heap[i] = e->heap[e->heap_n];
        e->heap[i]->cyc->heap_idx = i;
        heap_down(e, i);
        heap_up(e, i);
    }
    retry_timer_arm(e);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct engine *e = w->data;
    (void)loop;
    (void)revents;
    usec_t now = now_usec(CLOCK_MONOTONIC);
    while (e->heap_n && e->heap[0]->cyc->wake <= now + USEC_PER_MSEC && !e->stopping) {
        struct ep_state *s = e->heap[0];
        heap_remove(e, s);
        engine_enqueue(e, s, now, true);
    }
    retry_timer_arm(e);
}

/* The retry budget: over the last ENGINE_BUDGET_WINDOW seconds, retries may
 * be at most ENGINE_BUDGET_MIN + retry_budget x first attempts, so a storm
 * of failures does not multiply the load on a struggling service. */
static void budget_advance(struct engine *e, usec_t now)
{
    uint64_t sec = now / USEC_PER_SEC;
    for (uint64_t t = e->budget_sec + 1; t <= sec && t <= e->budget_sec + ENGINE_BUDGET_WINDOW;
         t++) {
        e->budget_first[t % ENGINE_BUDGET_WINDOW] = 0;
        e->budget_retry[t % ENGINE_BUDGET_WINDOW] = 0;
    }
    e->budget_sec = sec;
}

static void budget_count_first(struct engine *e)
{
    budget_advance(e, now_usec(CLOCK_MONOTONIC));
    e->budget_first[e->budget_sec % ENGINE_BUDGET_WINDOW]++;
}

static bool budget_take_retry(struct engine *e)
{
    budget_advance(e, now_usec(CLOCK_MONOTONIC));
    uint64_t first = 0, retries = 0;
    for (int i = 0; i < ENGINE_BUDGET_WINDOW; i++) {
        first += e->budget_first[i];
        retries += e->budget_retry[i];
    }
    if ((double)retries >= ENGINE_BUDGET_MIN + e->cur->cfg->limits.retry_budget * (double)first) {
        e->retries_denied++;
        return false;
    }
    e->budget_retry[e->budget_sec % ENGINE_BUDGET_WINDOW]++;
    return true;
}

/* ---- conditional requests ----------------------------------------------- */

static uint64_t cond_fingerprint(const struct endpoint_cfg *ep)
{
    uint64_t h = UINT64_C(14695981039346656037);
    const char *parts[3] = {ep->url, ep->method, ep->body ? ep->body : ""};
    size_t lens[3] = {strlen(ep->url), strlen(ep->method), ep->body ? ep->body_len : 0};
    for (int p = 0; p < 3; p++) {
        for (size_t i = 0; i < lens[p]; i++) {
            h = (h ^ (unsigned char)parts[p][i]) * UINT64_C(1099511628211);
        }
        h = (h ^ 0xff) * UINT64_C(1099511628211);
    }
    return h;
}

static void cond_free(struct cond *c)
{
    if (c) {
        free(c->etag);
        free(c->last_modified);
        free(c);
    }
}

/* Validators from the state file for a (new) endpoint, if they were saved
 * for the same request. */
static void cond_restore(struct engine *e, struct ep_state *s)
{
    if (!e->saved_cond || !s->cfg->x->conditional || s->cond) {
        return;
    }
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(e->saved_cond, "endpoints"), s->cfg->name);
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(o, "fp");
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(o, "etag");
    const cJSON *lm = cJSON_GetObjectItemCaseSensitive(o, "last_modified");
    char want[32];
    snprintf(want, sizeof(want), "%016llx", (unsigned long long)cond_fingerprint(s->cfg));
    if (!cJSON_IsString(fp) || strcmp(fp->valuestring, want) != 0) {
        return;
    }
    struct cond *c = calloc(1, sizeof(*c));
    if (!c) {
        return;
    }
    c->fp = cond_fingerprint(s->cfg);
    /* a header value: never with control characters, whatever the file says */
    bool et_ok = cJSON_IsString(et) && !strpbrk(et->valuestring, "\r\n");
    bool lm_ok = cJSON_IsString(lm) && !strpbrk(lm->valuestring, "\r\n");
    c->etag = et_ok ? strdup(et->valuestring) : NULL;
    c->last_modified = lm_ok ? strdup(lm->valuestring) : NULL;
    s->cond = c;
}

/* Writes STATE_DIR/conditional.json atomically: a temporary file, fsync,
 * rename, fsync of the directory. Small (one line per conditional
 * endpoint), so it is written from the loop. */
static void cond_save(struct engine *e)
{
    if (!e->state_file || !e->cond_dirty) {
        return;
    }
    e->cond_dirty = false;
    struct buf b = {0};
    int r = buf_puts(&b, "{\"version\":1,\"endpoints\":{");
    bool first = true;
    for (size_t i = 0; i < e->cur->n_eps && r >= 0; i++) {
        const struct ep_state *s = &e->cur->eps[i];
        if (!s->cond || (!s->cond->etag && !s->cond->last_modified)) {
            continue;
        }
        r = buf_puts(&b, first ? "\n" : ",\n");
        first = false;
        r = r < 0 ? r : json_escape_str(&b, s->cfg->name);
        r = r < 0 ? r : buf_printf(&b, ":{\"fp\":\"%016llx\"", (unsigned long long)s->cond->fp);
        if (s->cond->etag) {
            r = r < 0 ? r : buf_puts(&b, ",\"etag\":");
            r = r < 0 ? r : json_escape_str(&b, s->cond->etag);
        }
        if (s->cond->last_modified) {
            r = r < 0 ? r : buf_puts(&b, ",\"last_modified\":");
            r = r < 0 ? r : json_escape_str(&b, s->cond->last_modified);
        }
        r = r < 0 ? r : buf_putc(&b, '}');
    }
    r = r < 0 ? r : buf_puts(&b, "}}\n");
    if (r < 0) {
        log_error("out of memory saving %s", e->state_file);
        buf_done(&b);
        e->cond_dirty = true;
        return;
    }
    r = file_replace(e->state_file, b.data, b.len, 0600, true);
    if (r < 0) {
        log_warning("cannot save conditional request state to %s: %s (it is kept in memory)",
                    e->state_file, strerror(-r));
        e->cond_dirty = true;
    }
    buf_done(&b);
}

static void cond_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    cond_save(w->data);
}

static void cond_update(struct engine *e, struct ep_state *s, struct xfer *x)
{
    char *etag = xfer_header(x, "ETag");
    char *lm = xfer_header(x, "Last-Modified");
    if (!etag && !lm && !s->cond) {
        return;
    }
    if (!s->cond) {
        s->cond = calloc(1, sizeof(*s->cond));
        if (!s->cond) {
            free(etag);
            free(lm);
            return;
        }
    }
    struct cond *c = s->cond;
    uint64_t fp = cond_fingerprint(s->cfg);
    bool same = ((!etag && !c->etag) || (etag && c->etag && strcmp(etag, c->etag) == 0)) &&
                ((!lm && !c->last_modified) ||
                 (lm && c->last_modified && strcmp(lm, c->last_modified) == 0)) &&
                c->fp == fp;
    free(c->etag);
    free(c->last_modified);
    c->etag = etag;
    c->last_modified = lm;
    c->fp = fp;
    if (!same && e->state_file) {
        e->cond_dirty = true;
        if (!ev_is_active(&e->cond_timer)) {
            ev_timer_set(&e->cond_timer, ENGINE_COND_SAVE_DELAY, 0.);
            ev_timer_start(e->loop, &e->cond_timer);
        }
    }
}

/* ---- records of a cycle ------------------------------------------------- */

struct emit_ctx {
    struct engine *e;
    struct ep_state *s;
    size_t records;
    struct record first_err; /* message copied below */
    char first_msg[300];
    bool has_err;
};

static void emit_cb(void *ctx, const struct record *rec)
{
    struct emit_ctx *ec = ctx;
    engine_emit(ec->e, ec->s, rec);
    ec->records++;
    if (rec->error != REC_OK && !ec->has_err) {
        ec->has_err = true;
        ec->first_err = *rec;
        snprintf(ec->first_msg, sizeof(ec->first_msg), "%s", rec->message ? rec->message : "");
        ec->first_err.message = ec->first_msg;
        ec->first_err.excerpt = NULL;
        ec->first_err.data = NULL;
        ec->first_err.headers = NULL;
        ec->first_err.timings = NULL;
    }
}

/* Breaker bookkeeping after a completed cycle (daemon mode). */
static void engine_breaker(struct engine *e, struct ep_state *s, const struct record *rec)
{
    const struct endpoint_ext *x = s->cfg->x;
    if (e->opt.once) {
        return;
    }
    if (rec->error == REC_OK) {
        s->breaker_level = 0;
        return;
    }
    if (!x->breaker_after || s->consecutive_failures < x->breaker_after) {
        return;
    }
    usec_t iv = s->cfg->interval;
    usec_t cap = x->breaker_max > iv ? x->breaker_max : iv;
    if (s->breaker_level < 40) {
        s->breaker_level++;
    }
    usec_t wait = iv;
    for (unsigned i = 0; i < s->breaker_level && wait < cap; i++) {
        wait *= 2;
    }
    wait = wait > cap ? cap : wait;
    usec_t now = now_usec(CLOCK_MONOTONIC);
    if (now + wait > s->hold_until) {
        s->hold_until = now + wait;
    }
    char w[32];
    units_format_duration(wait, w, sizeof(w));
    struct log_fields lf = LOG_FIELDS_INIT;
    lf.endpoint = s->cfg->name;
    lf.url = s->cfg->url_redacted;
    lf.error_kind = record_error_kind(rec->error);
    lf.http_status = rec->http_status;
    lf.event = LOG_EV_ENDPOINT_BACKOFF;
    if (s->breaker_level == 1) {
        log_full(LOG_WARNING, &lf,
                 "backing off: %u failed cycles in a row; next probe in %s (doubling up to %s "
                 "while it fails)",
                 s->consecutive_failures, w, units_format_duration(cap, (char[32]){0}, 32));
    } else {
        log_full(LOG_INFO, &lf, "probe failed (%s); backing off for %s", lf.error_kind, w);
    }
}

/* Ends the endpoint's cycle: accounting, breaker, cleanup. rec is the
 * cycle's outcome (the first error record, or an ok record). */
static void engine_cycle_end(struct engine *e, struct ep_state *s, const struct record *rec)
{
    struct cycle *c = s->cyc;
    if (c && c->trk) {
        size_t n;
        size_t missing = ckpt_cycle_end(c->trk, rec->error == REC_OK, &n);
        c->trk = NULL;
        if (n && missing == n) {
            log_endpoint(LOG_WARNING, s->cfg->name,
                         "the checkpoint pointer %s found no value to keep in any of the %zu "
                         "record%s: the checkpoint stays where it was",
                         s->cfg->ckpt ? s->cfg->ckpt->pointer : "(removed)", n,
                         n == 1 ? "" : "s");
        }
    }
    engine_account(e, s, rec);
    engine_breaker(e, s, rec);
    cycle_free(e, s);
}

/* A cycle that cannot go on (stop, endpoint removed): the record of its
 * last failed attempt goes out now. */
static void engine_cycle_abandon(struct engine *e, struct ep_state *s, const char *why)
{
    struct cycle *c = s->cyc;
    if (!c) {
        return;
    }
    if (c->heap_idx != SIZE_MAX) {
        heap_remove(e, s);
    }
    if (c->waiter.tok) {
        oauth_cancel(&e->oauth, &c->waiter);
        e->waiting--;
    }
    struct record rec = {
        .endpoint = s->cfg->name,
        .url = s->cfg->url_redacted,
        .fetched_at = now_usec(CLOCK_REALTIME),
        .error = c->pending ? c->pend_kind : REC_ERR_CANCELLED,
        .http_status = c->pend_status,
        .curl_code = c->pend_curl,
        .message = c->pending ? c->pend_msg : why,
        .attempts = c->attempt,
    };
    if (c->pending) {
        struct sink_item it = {
            .line = c->pending,
            .len = c->pending_len,
            .endpoint = s->cfg->name,
            .error = c->pend_kind,
            .http_status = c->pend_status,
            .fetched_at = rec.fetched_at,
            .ticket = ckpt_cycle_ticket(c->trk),
        };
        ckpt_cycle_record(c->trk, false, NULL, 0);
        engine_dispatch(e, s->gen, s->cfg, &it);
    } else {
        engine_emit(e, s, &rec);
    }
    engine_cycle_end(e, s, &rec);
}

/* ---- starting attempts -------------------------------------------------- */

static void engine_token_cb(struct oauth_waiter *w, const char *token, const char *err);

/* Emits an error record for a cycle that fails before any request. */
static void engine_fail_cycle(struct engine *e, struct ep_state *s, enum record_error kind,
                              const char *msg)
{
    struct record rec = {
        .endpoint = s->cfg->name,
        .url = s->cfg->url_redacted,
        .fetched_at = now_usec(CLOCK_REALTIME),
        .error = kind,
        .message = msg,
        .attempts = s->cyc ? s->cyc->attempt : 1,
        .page = s->cfg->x->page_mode ? (s->cyc ? s->cyc->page : 1) : 0,
    };
    engine_emit(e, s, &rec);
    engine_cycle_end(e, s, &rec);
}

/* Fills the request of the endpoint's next attempt. Returns 0, -EAGAIN
 * (waits for a token; the cycle is parked), or -EACCES after emitting an
 * auth error record (the cycle is over). */
static int engine_prepare(struct engine *e, struct ep_state *s, struct xfer_req *rq)
{
    const struct endpoint_ext *x = s->cfg->x;
    struct cycle *c = s->cyc;
    memset(rq, 0, sizeof(*rq));
    if (c) {
        rq->url = c->url;
        rq->as_get = c->as_get;
        rq->cross_origin = c->cross_origin;
        if (s->cfg->tpl && !c->tpl_end) {
            /* a cycle of a definition without placeholders that a reload
             * carried over to one with them */
            usec_t end;
            if (engine_render(e, s, c, ckpt_entry_find(e->ckpt, s->cfg->name),
                              now_usec(CLOCK_REALTIME), &end) < 0) {
                return -EACCES;
            }
        }
        if (c->tpl_headers) {
            rq->headers = (const char *const *)c->tpl_headers;
            rq->n_headers = c->tpl_n_headers;
            rq->header_secret = c->tpl_header_secret;
        }
        if (c->tpl_body) {
            rq->body = c->tpl_body;
            rq->body_len = c->tpl_body_len;
            if (c->tpl_body_secret && c->cross_origin && !c->as_get) {
                engine_fail_cycle(e, s, REC_ERR_REDIRECT,
                                  "a redirect to another origin would send the request body, "
                                  "which holds a credential, there: not followed");
                return -EACCES;
            }
        }
    }
    /* s->cond always belongs to this definition: a reload keeps it only
     * for the same request (fingerprint), cond_restore() checks it too */
    if (x->conditional && s->cond && (!c || (c->page == 1 && !c->url))) {
        rq->etag = s->cond->etag;
        rq->last_modified = s->cond->last_modified;
    }
    if (x->auth.type == AUTH_NONE || rq->cross_origin) {
        return 0;
    }
    char err[512];
    usec_t now = now_usec(CLOCK_MONOTONIC);
    if (x->auth.type == AUTH_OAUTH2) {
        c = cycle_get(e, s);
        if (!c) {
            engine_fail_cycle(e, s, REC_ERR_INTERNAL, "out of memory");
            return -EACCES;
        }
        c->waiter.cb = engine_token_cb;
        int r = oauth_get(&e->oauth, x, now, &c->waiter, &rq->bearer, err, sizeof(err));
        if (r == -EAGAIN) {
            e->waiting++;
            return -EAGAIN;
        }
        if (r < 0) {
            engine_fail_cycle(e, s, REC_ERR_AUTH, err);
            return -EACCES;
        }
        return 0;
    }
    const char *secret = NULL;
    bool warn = false;
    int r = secrets_get(&e->secrets, x->auth.secret_path, now, &secret, err, sizeof(err), &warn);
    if (warn) {
        log_endpoint(LOG_WARNING, s->cfg->name, "%s; still using the previous secret", err);
    }
    if (r < 0) {
        engine_fail_cycle(e, s, REC_ERR_AUTH, err);
        return -EACCES;
    }
    if (x->auth.type == AUTH_BASIC) {
        rq->password = secret;
    } else {
        rq->bearer = secret;
    }
    return 0;
}

/* A token request finished for a parked cycle: queue it (or fail it). */
static void engine_token_cb(struct oauth_waiter *w, const char *token, const char *err)
{
    struct cycle *c = (struct cycle *)((char *)w - offsetof(struct cycle, waiter));
    struct ep_state *s = c->owner;
    struct engine *e = s->gen->engine;
    e->waiting--;
    if (!token) {
        char msg[600];
        snprintf(msg, sizeof(msg), "%s", err ? err : "the token request failed");
        engine_fail_cycle(e, s, REC_ERR_AUTH, msg);
        engine_check_done(e);
        return;
    }
    if (e->stopping) {
        engine_cycle_abandon(e, s, "fetchd was stopped while the endpoint waited for a token");
        engine_check_done(e);
        return;
    }
    engine_enqueue(e, s, now_usec(CLOCK_MONOTONIC), true);
}

/* Re-issues a request on the transfer it came from (redirect, next page).
 * Returns true if it is on its way, false after ending the cycle. */
static bool engine_continue(struct engine *e, struct xfer *x, struct ep_state *s, bool hop)
{
    struct xfer_req rq;
    int r = engine_prepare(e, s, &rq);
    if (r < 0) {
        return false; /* parked or failed: the transfer is released */
    }
    rq.hop = hop;
    if (x->gen != s->gen) {
        /* carried over by a reload: the request now comes from the new
         * definition */
        struct gen *old = x->gen;
        s->gen->refs++;
        x->gen = s->gen;
        engine_gen_unref(e, old);
    }
    r = xfer_setup(x, s->cfg, &rq, e->user_agent);
    if (r == 0) {
        r = http_add(&e->http, x->easy);
    }
    if (r < 0) {
        engine_fail_cycle(e, s, REC_ERR_INTERNAL, "could not start the transfer");
        return false;
    }
    return true;
}

/* ---- completion of an attempt ------------------------------------------- */

static bool retryable(const struct endpoint_ext *x, const struct record *rec, bool idempotent)
{
    const struct retry_cfg *rc = &x->retry;
    switch (rec->error) {
    case REC_ERR_DNS:
    case REC_ERR_CONNECT:
        return rc->on_network; /* nothing was sent: safe for any method */
    case REC_ERR_NETWORK:
    case REC_ERR_PARTIAL_BODY:
    case REC_ERR_BAD_RESPONSE:
        return rc->on_network && (idempotent || rc->non_idempotent);
    case REC_ERR_TLS:
        /* a handshake that broke, not a certificate that does not verify */
        return rc->on_network && rec->verify_result == 0 &&
               rec->curl_code == CURLE_SSL_CONNECT_ERROR && (idempotent || rc->non_idempotent);
    case REC_ERR_TIMEOUT:
        return rc->on_timeout && (idempotent || rc->non_idempotent);
    case REC_ERR_HTTP_STATUS:
        return status_set_has(&rc->on_status, rec->http_status) &&
               (idempotent || rc->non_idempotent);
    default:
        return false;
    }
}

/* An attempt failed: retry it (true: the cycle goes on) or not. */
static bool engine_maybe_retry(struct engine *e, struct xfer *x, struct ep_state *s,
                               const struct record *rec)
{
    const struct endpoint_ext *ext = s->cfg->x;
    usec_t now = now_usec(CLOCK_MONOTONIC);
    /* Retry-After means "come back later" on 429 and 503 (RFC 9110 10.2.3;
     * on a 3xx it is a redirect delay) */
    int64_t ra = rec->http_status == 429 || rec->http_status == 503 ? xfer_retry_after(x) : -1;
    if (ra >= 0) {
        /* the server asked for a pause: the next cycle honours it too */
        usec_t hold = (usec_t)ra > 86400 * USEC_PER_SEC ? 86400 * USEC_PER_SEC : (usec_t)ra;
        if (!e->opt.once && now + hold > s->hold_until) {
            s->hold_until = now + hold;
        }
    }
    unsigned attempt = s->cyc ? s->cyc->attempt : 1;
    if (e->stopping || s->gen != e->cur || attempt >= ext->retry.attempts ||
        !retryable(ext, rec, x->is_get)) {
        /* (an endpoint removed by a reload finishes its transfer, no more) */
        return false;
    }
    usec_t delay;
    if (ra >= 0) {
        if ((usec_t)ra > ext->retry.max_retry_after) {
            log_endpoint(LOG_INFO, s->cfg->name,
                         "not retrying: Retry-After (%llu s) is above retry.max_retry_after",
                         (unsigned long long)((usec_t)ra / USEC_PER_SEC));
            return false;
        }
        delay = (usec_t)ra;
    } else {
        usec_t cap = ext->retry.backoff;
        for (unsigned i = 1; i < attempt && cap < ext->retry.max_backoff; i++) {
            cap *= 2;
        }
        cap = cap > ext->retry.max_backoff ? ext->retry.max_backoff : cap;
        delay = engine_random(e) % (cap + 1); /* full jitter */
    }
    if (!e->opt.once && now + delay >= s->due) {
        log_endpoint(LOG_DEBUG, s->cfg->name, "not retrying: the next run is due first");
        return false;
    }
    if (!budget_take_retry(e)) {
        log_endpoint(LOG_DEBUG, s->cfg->name, "not retrying: the retry budget is used up");
        return false;
    }
    struct cycle *c = cycle_get(e, s);
    if (!c) {
        return false;
    }
    /* keep the failed attempt's record: it goes out if the retry never runs */
    buf_reset(&e->line);
    if (record_serialize(rec, &e->line) == 0) {
        char *p = malloc(e->line.len);
        if (p) {
            memcpy(p, e->line.data, e->line.len);
            free(c->pending);
            c->pending = p;
            c->pending_len = e->line.len;
        }
    }
    c->pend_kind = rec->error;
    c->pend_status = rec->http_status;
    c->pend_curl = rec->curl_code;
    snprintf(c->pend_msg, sizeof(c->pend_msg), "%s", rec->message ? rec->message : "");
    c->attempt++;
    c->redirects = 0;
    c->as_get = false;
    c->cross_origin = c->page_cross_origin;
    free(c->url);
    c->url = c->page_url ? strdup(c->page_url) : NULL;
    c->wake = now + delay;
    if (heap_push(e, s) < 0) {
        free(c->pending);
        c->pending = NULL;
        c->attempt--;
        return false;
    }
    struct log_fields lf = LOG_FIELDS_INIT;
    lf.endpoint = s->cfg->name;
    lf.error_kind = record_error_kind(rec->error);
    lf.http_status = rec->http_status;
    log_full(LOG_DEBUG, &lf, "attempt %u failed (%s); retrying in %llu ms", attempt,
             lf.error_kind, (unsigned long long)(delay / USEC_PER_MSEC));
    return true;
}

/* A redirect: follow it on the same transfer (true), or not: then
 * rec->error says why, or is REC_OK when the cycle is parked for a token
 * or already ended. Takes loc. */
static bool engine_follow(struct engine *e, struct xfer *x, struct ep_state *s,
                          struct record *rec, char *loc, char *msg, size_t msglen)
{
    const struct endpoint_cfg *ep = s->cfg;
    struct cycle *c = cycle_get(e, s);
    if (!c) {
        free(loc);
        rec->error = REC_ERR_INTERNAL;
        snprintf(msg, msglen, "out of memory following a redirect");
        return false;
    }
    if (c->redirects >= ep->max_redirects) {
        free(loc);
        rec->error = REC_ERR_REDIRECT;
        snprintf(msg, msglen, "more than %u redirects (max_redirects)", ep->max_redirects);
        return false;
    }
    if (!(url_scheme_of(loc) & ep->x->scheme_mask)) {
        free(loc);
        rec->error = REC_ERR_PROTOCOL;
        snprintf(msg, msglen, "redirect to a scheme that is not allowed (schemes: %s)",
                 ep->x->protocols);
        return false;
    }
    if (!c->cross_origin && !url_same_origin(x->url, loc)) {
        c->cross_origin = true;
        log_endpoint(LOG_DEBUG, ep->name,
                     "redirected to another origin: auth and secret headers are not sent there");
    }
    long st = rec->http_status;
    if ((st == 303 && strcmp(ep->method, "HEAD") != 0) ||
        ((st == 301 || st == 302) && strcmp(ep->method, "POST") == 0)) {
        c->as_get = true;
    }
    c->redirects++;
    free(c->url);
    c->url = loc;
    return engine_continue(e, x, s, true);
}

/* The next page's URL of a page that produced records, or NULL. */
static char *engine_next_page(struct engine *e, struct xfer *x, struct ep_state *s,
                              size_t doc_len)
{
    const struct endpoint_ext *ext = s->cfg->x;
    if (ext->page_mode == PAGE_LINK) {
        return xfer_link_next(x);
    }
    if (!doc_len || !ext->page_ptr) {
        return NULL;
    }
    size_t off, len;
    if (jptr_eval(ext->page_ptr, e->data.data, doc_len, &off, &len, NULL) < 0) {
        return NULL;
    }
    const char *v = e->data.data + off;
    struct buf val = {0};
    if (v[0] == '"') {
        if (json_unescape(v, len, &val) < 0 || val.len == 0) {
            buf_done(&val);
            return NULL;
        }
    } else if ((v[0] >= '0' && v[0] <= '9') || v[0] == '-') {
        buf_append(&val, v, len);
    } else {
        return NULL; /* null, false, an object: the last page */
    }
    char *next = NULL;
    if (val.data) {
        next = ext->page_mode == PAGE_NEXT_URL ? url_resolve(x->url, val.data)
                                               : url_add_query(s->cyc && s->cyc->tpl_url
                                                                   ? s->cyc->tpl_url
                                                                   : s->cfg->url,
                                                               ext->page_param,
                                                               val.data);
    }
    buf_done(&val);
    return next;
}

/* A page's records went out; go on with the next page or end the cycle. */
static bool engine_next_or_end(struct engine *e, struct xfer *x, struct ep_state *s,
                               size_t doc_len, const struct record *base,
                               const struct emit_ctx *ec)
{
    const struct endpoint_ext *ext = s->cfg->x;
    unsigned page = s->cyc ? s->cyc->page : 1;
    char *next = ext->page_mode != PAGE_NONE && !ec->has_err && s->gen == e->cur
                     ? engine_next_page(e, x, s, doc_len)
                     : NULL;
    if (next && page >= ext->max_pages) {
        log_endpoint(LOG_WARNING, s->cfg->name,
                     "stopped after %u pages (paginate.max_pages); the rest waits for the next "
                     "run",
                     page);
        free(next);
        next = NULL;
    }
    if (next && !(url_scheme_of(next) & ext->scheme_mask)) {
        log_endpoint(LOG_WARNING, s->cfg->name,
                     "the next page's URL has a scheme that is not allowed; stopping at page %u",
                     page);
        free(next);
        next = NULL;
    }
    if (next) {
        struct cycle *c = cycle_get(e, s);
        if (c) {
            if (!c->page_cross_origin &&
                !url_same_origin(c->tpl_url ? c->tpl_url : s->cfg->url, next)) {
                c->page_cross_origin = true;
            }
            c->cross_origin = c->page_cross_origin;
            c->page++;
            c->attempt = 1;
            c->redirects = 0;
            c->as_get = false;
            c->token_retried = false;
            free(c->url);
            free(c->page_url);
            c->url = next;
            c->page_url = strdup(next);
            budget_count_first(e);
            return engine_continue(e, x, s, false);
        }
        free(next);
    }
    engine_cycle_end(e, s, ec->has_err ? &ec->first_err : base);
    return false;
}

/* http_done_fn: a transfer finished (easy already removed from multi). */
static void engine_xfer_done(void *userdata, CURL *easy, CURLcode res)
{
    struct engine *e = userdata;
    if (sinkset_xfer_done(&e->sinks, easy, (int)res)) {
        engine_check_done(e);
        return;
    }
    if (oauth_xfer_done(&e->oauth, easy, res)) {
        engine_check_done(e);
        return;
    }
    struct xfer *x = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    struct ep_state *s = x->owner;
    struct record rec;
    char msg[CURL_ERROR_SIZE + 256];
    char *loc = NULL;
    bool going_on = false;

    if (xfer_out_of_fds(x, res)) {
        if (engine_fd_defer(e, s, x)) {
            engine_release_xfer(e, x);
            engine_check_done(e);
            return;
        }
    } else {
        engine_fd_recover(e);
    }
    if (s->cyc) {
        s->cyc->fd_since = 0;
        free(s->cyc->pending); /* this attempt produces the record */
        s->cyc->pending = NULL;
    }
    enum xfer_outcome o = xfer_result(x, res, &rec, msg, sizeof(msg), &loc);
    rec.attempts = s->cyc ? s->cyc->attempt : 1;
    rec.page = s->cfg->x->page_mode ? (s->cyc ? s->cyc->page : 1) : 0;
    if (o == XFER_REDIRECT) {
        going_on = engine_follow(e, x, s, &rec, loc, msg, sizeof(msg));
        if (!going_on && rec.error != REC_OK) {
            engine_emit(e, s, &rec);
            engine_cycle_end(e, s, &rec);
        } /* else on its way, parked for a token, or failed and recorded */
    } else if (o == XFER_NOT_MODIFIED) {
        rec.unchanged = true;
        rec.data = NULL;
        if (s->cfg->x->unchanged_record) {
            engine_emit(e, s, &rec);
        }
        engine_cycle_end(e, s, &rec);
    } else if (rec.error == REC_OK) {
        struct emit_ctx ec = {.e = e, .s = s};
        size_t doc_len = 0;
        char pmsg[CURL_ERROR_SIZE + 256];
        xfer_parse(x, &rec, &e->data, &doc_len, emit_cb, &ec, pmsg, sizeof(pmsg));
        if (s->cfg->x->conditional && rec.http_status == 200 && rec.page <= 1 &&
            !(s->cyc && s->cyc->url)) {
            cond_update(e, s, x);
        }
        rec.data = NULL;
        going_on = engine_next_or_end(e, x, s, doc_len, &rec, &ec);
    } else if (s->cfg->x->auth.type == AUTH_OAUTH2 && rec.http_status == 401 &&
               !(s->cyc && s->cyc->cross_origin) && !(s->cyc && s->cyc->token_retried) &&
               !e->stopping && cycle_get(e, s)) {
        /* the token may have been revoked: once per cycle, fetch a new one */
        s->cyc->token_retried = true;
        s->cyc->attempt++;
        oauth_invalidate(&e->oauth, s->cfg->x, NULL);
        going_on = engine_continue(e, x, s, false);
    } else if (engine_maybe_retry(e, x, s, &rec)) {
        /* waits in the retry heap without a transfer */
    } else {
        engine_emit(e, s, &rec);
        engine_cycle_end(e, s, &rec);
    }
    buf_shrink(&e->data, 1024 * 1024);
    if (!going_on) {
        engine_release_xfer(e, x);
    }
    if (e->qhead && !e->stopping) {
        engine_start_some(e);
    }
    engine_check_done(e);
}

/* ---- running out of file descriptors ------------------------------------ */

/* A socket() that failed with EMFILE/ENFILE defers the transfer instead of
 * failing it (nothing was sent): the cycle waits in the retry heap without
 * counting an attempt, at most as many transfers as were still running may
 * run, and none starts for a backoff (50 ms, doubling to 2 s while nothing
 * else completes). Each transfer that completes raises the cap by one, so
 * fetchd settles just under the limit instead of failing fetches. */
#define ENGINE_FD_BACKOFF_MIN (50 * USEC_PER_MSEC)
#define ENGINE_FD_BACKOFF_MAX (2 * USEC_PER_SEC)
#define ENGINE_FD_LOG_EVERY (10 * USEC_PER_SEC)

static bool engine_fd_defer(struct engine *e, struct ep_state *s, const struct xfer *x)
{
    if (e->stopping || s->gen != e->cur) {
        return false; /* an error record instead */
    }
    struct cycle *c = cycle_get(e, s);
    if (!c) {
        return false;
    }
    usec_t now = now_usec(CLOCK_MONOTONIC);
    if (!c->fd_since) {
        c->fd_since = now;
    } else if (now - c->fd_since >= s->cfg->timeout) {
        return false; /* waited its timeout for a descriptor: the record says why */
    }
    if (now >= e->fd_until) { /* one doubling per backoff, not per failure */
        e->fd_backoff = e->fd_backoff ? e->fd_backoff * 2 : ENGINE_FD_BACKOFF_MIN;
        if (e->fd_backoff > ENGINE_FD_BACKOFF_MAX) {
            e->fd_backoff = ENGINE_FD_BACKOFF_MAX;
        }
        e->fd_until = now + e->fd_backoff;
    }
    unsigned others = e->in_flight - 1; /* this one is ending */
    e->fd_cap = others ? others : 1;
    c->wake = e->fd_until;
    if (heap_push(e, s) < 0) {
        return false;
    }
    e->st.fd_deferred++;
    e->fd_unlogged++;
    if (!e->fd_logged || now - e->fd_logged >= ENGINE_FD_LOG_EVERY) {
        struct rlimit rl = {0};
        (void)getrlimit(RLIMIT_NOFILE, &rl);
        log_warning("out of file descriptors (socket(): %s; RLIMIT_NOFILE %llu): %llu "
                    "transfer%s deferred, running at most %u at once; raise LimitNOFILE= "
                    "(ulimit -n) or lower limits.max_concurrent",
                    strerror(x->sock_errno ? x->sock_errno : EMFILE), (unsigned long long)rl.rlim_cur,
                    (unsigned long long)e->fd_unlogged, e->fd_unlogged == 1 ? "" : "s",
                    e->fd_cap);
        e->fd_logged = now;
        e->fd_unlogged = 0;
    }
    return true;
}

/* A transfer ended having had its socket: the cap grows back. */
static void engine_fd_recover(struct engine *e)
{
    e->fd_backoff = 0;
    if (e->fd_cap && ++e->fd_cap >= e->pool_n) {
        e->fd_cap = 0;
        log_info("file descriptors suffice again: back to limits.max_concurrent (%zu)",
                 e->pool_n);
    }
}

/* Whether another transfer may start now; when not, *wait is how long
 * (0: until a running transfer ends). */
static bool engine_fd_may_start(struct engine *e, usec_t *wait)
{
    *wait = 0;
    if (!e->fd_cap) {
        return true;
    }
    usec_t now = now_usec(CLOCK_MONOTONIC);
    if (now < e->fd_until) {
        *wait = e->fd_until - now;
        return false;
    }
    return e->in_flight < e->fd_cap;
}

/* A transfer that could not even start still produces a record. */
static void engine_fail_start(struct engine *e, struct ep_state *s, int err)
{
    engine_fail_cycle(e, s, REC_ERR_INTERNAL,
                      err == -ENOMEM ? "out of memory starting the transfer"
                                     : "could not start the transfer");
}

/* ---- request templates ---------------------------------------------------- */

/* The last time a schedule fired before t (wall-clock seconds), or t minus
 * a day when it finds none within about five years. */
static int64_t cron_prev(struct cron *cr, int64_t t)
{
    for (int64_t w = 60; w < INT64_C(1900) * 86400; w *= 4) {
        time_t cur;
        if (cron_next(cr, (time_t)(t - w - 1), &cur) < 0 || cur >= t) {
            continue; /* nothing in [t - w, t): look further back */
        }
        for (;;) {
            time_t n;
            if (cron_next(cr, cur, &n) < 0 || n >= t) {
                return cur;
            }
            cur = n;
        }
    }
    return t - 86400;
}

struct tpl_cred_ctx {
    struct engine *e;
    const struct endpoint_cfg *ep;
};

static int engine_tpl_credential(void *ctx, const char *name, const char **value, char *err,
                                 size_t errlen)
{
    struct tpl_cred_ctx *cc = ctx;
    const struct ep_tpl *et = cc->ep->tpl;
    for (size_t i = 0; i < et->n_creds; i++) {
        if (strcmp(et->cred_names[i], name) == 0) {
            bool warn = false;
            int r = secrets_get(&cc->e->secrets, et->cred_paths[i], now_usec(CLOCK_MONOTONIC),
                                value, err, errlen, &warn);
            if (warn) {
                log_endpoint(LOG_WARNING, cc->ep->name, "%s; still using the previous value",
                             err);
            }
            return r;
        }
    }
    snprintf(err, errlen, "credential %s is not known", name);
    return -ENOENT;
}

/* interval_end of a cycle: the scheduled run's wall-clock time (a calendar
 * schedule's exact time; aligned endpoints on their grid; others to the
 * millisecond), or now for a run that was not scheduled (--once, "fetchd
 * fetch", a retry budget...). */
static usec_t engine_interval_end(const struct ep_state *s, usec_t now_real)
{
    usec_t t = s->sched_real ? s->sched_real : now_real;
    const struct endpoint_cfg *ep = s->cfg;
    if (s->sched_real && ep->align && !ep->cron && ep->interval) {
        usec_t iv = ep->interval;
        usec_t rel = t >= ep->offset ? t - ep->offset : 0;
        usec_t k = (rel + iv / 2) / iv;
        usec_t grid = k * iv + ep->offset;
        usec_t d = grid > t ? grid - t : t - grid;
        if (d < USEC_PER_SEC && d < iv / 4) {
            return grid;
        }
    }
    return t / USEC_PER_MSEC * USEC_PER_MSEC;
}

/* Renders one template into a malloc'd string; *len its length. Returns
 * NULL with a reason in err (or "out of memory"). */
static char *tpl_string(const struct tpl *t, const struct tpl_values *v, const char *prefix,
                        size_t *len, char *err, size_t errlen)
{
    struct buf b = {0};
    int r = prefix ? buf_puts(&b, prefix) : 0;
    r = r < 0 ? r : tpl_render(t, v, &b, err, errlen);
    if (r == 0 && !b.data) {
        r = buf_puts(&b, "");
    }
    if (r < 0) {
        if (r != -EINVAL) {
            snprintf(err, errlen, "out of memory rendering the request");
        }
        buf_done(&b);
        return NULL;
    }
    if (len) {
        *len = b.len;
    }
    return buf_steal(&b);
}

/* Renders the request of s's definition into cycle c (its own copies of
 * everything a later attempt needs: a reload may free the definition while
 * the cycle goes on). en is the endpoint's checkpoint entry or NULL; *ret_end
 * the interval's end. Returns 0, or -1 after an error record (the cycle is
 * over). */
static int engine_render(struct engine *e, struct ep_state *s, struct cycle *c,
                         const struct ckpt_entry *en, usec_t now_real, usec_t *ret_end)
{
    const struct endpoint_cfg *ep = s->cfg;
    const struct ep_tpl *et = ep->tpl;
    usec_t end = engine_interval_end(s, now_real);
    if (end > now_real) {
        end = now_real; /* a run that jitter made early: never a window in the future */
    }
    s->sched_real = 0;
    usec_t start, prev = ckpt_window_end(en);
    if (prev && prev < end) {
        start = prev; /* where the last delivered interval ended */
    } else if (ep->cron) {
        start = (usec_t)cron_prev(ep->cron, (int64_t)((end + USEC_PER_SEC - 1) / USEC_PER_SEC)) *
                USEC_PER_SEC;
    } else {
        start = end > ep->interval ? end - ep->interval : 0;
    }
    size_t cp_len = 0;
    const char *cp = ckpt_text(en, &cp_len);
    struct tpl_cred_ctx cc = {e, ep};
    struct tpl_values v = {
        .now = now_real,
        .interval_start = start,
        .interval_end = end,
        .last_success = ckpt_last_success(en),
        .tz_env = et->tz_env,
        .checkpoint = cp,
        .checkpoint_len = cp_len,
        .credential = engine_tpl_credential,
        .ctx = &cc,
    };
    char err[400] = "";
    bool ok = true;
    if (et->url) {
        c->tpl_url = tpl_string(et->url, &v, NULL, NULL, err, sizeof(err));
        free(c->url);
        free(c->page_url);
        c->url = c->tpl_url ? strdup(c->tpl_url) : NULL;
        c->page_url = c->tpl_url ? strdup(c->tpl_url) : NULL;
        ok = c->url && c->page_url;
        if (ok && !(url_scheme_of(c->url) & ep->x->scheme_mask)) {
            snprintf(err, sizeof(err), "the rendered URL has a scheme that is not allowed");
            ok = false;
        }
    }
    if (ok && et->headers) {
        /* NULL-terminated; the secret flags copied with them */
        c->tpl_headers = calloc(ep->n_headers + 1, sizeof(char *));
        c->tpl_header_secret = calloc(ep->n_headers + 1, sizeof(bool));
        ok = c->tpl_headers && c->tpl_header_secret;
        for (size_t i = 0; ok && i < ep->n_headers; i++) {
            const char *h = ep->headers[i];
            c->tpl_header_secret[i] = et->header_secret[i];
            if (!et->headers[i]) {
                ok = (c->tpl_headers[i] = strdup(h)) != NULL;
                continue;
            }
            size_t nl = strcspn(h, ":");
            struct buf name = {0};
            if (buf_printf(&name, "%.*s: ", (int)nl, h) < 0) {
                ok = false;
                break;
            }
            size_t len;
            char *hv = tpl_string(et->headers[i], &v, name.data, &len, err, sizeof(err));
            if (hv && len == nl + 2) {
                hv[nl] = ';'; /* empty: "Name;" (libcurl drops "Name:") */
                hv[nl + 1] = '\0';
            }
            buf_done(&name);
            ok = (c->tpl_headers[i] = hv) != NULL;
        }
        c->tpl_n_headers = ep->n_headers;
    }
    if (ok && et->body) {
        c->tpl_body = tpl_string(et->body, &v, NULL, &c->tpl_body_len, err, sizeof(err));
        c->tpl_body_secret = (tpl_uses(et->body) & 1u << TPL_CREDENTIAL) != 0;
        ok = c->tpl_body != NULL;
    }
    if (!ok) {
        engine_fail_cycle(e, s, err[0] ? REC_ERR_TEMPLATE : REC_ERR_INTERNAL,
                          err[0] ? err : "out of memory rendering the request");
        return -1;
    }
    c->tpl_end = end;
    *ret_end = end;
    return 0;
}

/* A new cycle of an endpoint with placeholders: renders its request and
 * starts tracking its checkpoint, last success and interval. Returns 0, or
 * -1 after an error record (the cycle is over). */
static int engine_cycle_begin(struct engine *e, struct ep_state *s)
{
    const struct endpoint_cfg *ep = s->cfg;
    unsigned uses = ep->tpl->uses;
    bool tracked = ep->ckpt || (uses & (1u << TPL_LAST_SUCCESS | 1u << TPL_INTERVAL_START));
    struct ckpt_entry *en = NULL;
    if (tracked && !(en = ckpt_entry_get(e->ckpt, ep->name,
                                         ep->ckpt ? ep->ckpt->pointer : NULL))) {
        engine_fail_cycle(e, s, REC_ERR_INTERNAL, "out of memory");
        return -1;
    }
    struct cycle *c = cycle_get(e, s);
    if (!c) {
        engine_fail_cycle(e, s, REC_ERR_INTERNAL, "out of memory");
        return -1;
    }
    usec_t started = now_usec(CLOCK_REALTIME), end; /* ${now} == the next ${last_success} */
    if (engine_render(e, s, c, en, started, &end) < 0) {
        return -1;
    }
    if (tracked) {
        c->trk = ckpt_cycle_begin(en, ep->ckpt ? ep->ckpt->pointer : NULL,
                                  ep->ckpt ? ep->ckpt->keep_max : true, started,
                                  (uses & 1u << TPL_INTERVAL_START) ? end : 0);
    }
    return 0;
}

static void engine_start_some(struct engine *e)
{
    usec_t fd_wait = 0;
    while (!e->stopping && e->free_xfers && e->started_this_iter < ENGINE_STARTS_PER_TICK &&
           engine_fd_may_start(e, &fd_wait) && e->qhead) {
        struct ep_state *s = engine_dequeue(e);
        struct xfer_req rq;
        if (s->gen == e->cur && !s->cyc && sinkset_paused(&e->sinks, s->cfg)) {
            /* (a retry, redirect or page of a fetch already running goes on:
             * its records may take the queue to twice its bounds) */
            /* a sink of the endpoint is full with overflow "pause" */
            if (!s->owed) {
                s->owed = true;
                e->owed++;
            }
            continue;
        }
        if (!s->cyc) {
            budget_count_first(e); /* a new cycle */
            if (s->cfg->tpl && engine_cycle_begin(e, s) < 0) {
                continue; /* recorded */
            }
        }
        if (engine_prepare(e, s, &rq) < 0) {
            continue; /* waits for a token, or failed (recorded) */
        }
        rq.fd_short = e->fd_cap != 0;
        struct xfer *x = e->free_xfers;
        e->free_xfers = x->next_free;
        x->next_free = NULL;
        int r = xfer_setup(x, s->cfg, &rq, e->user_agent);
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
    if (!e->stopping && e->free_xfers && e->qhead && !ev_is_active(&e->kick) &&
        engine_fd_may_start(e, &fd_wait)) {
        ev_timer_set(&e->kick, 0., 0.); /* the rest on the next iteration */
        ev_timer_start(e->loop, &e->kick);
    } else if (!e->stopping && e->qhead && fd_wait && !ev_is_active(&e->kick)) {
        ev_timer_set(&e->kick, usec_to_ev(fd_wait), 0.); /* after the fd backoff */
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

/* ev_idle: nothing to do; its being active keeps the loop from blocking
 * while a sink has records to take (flush_cb delivers them). */
static void more_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

/* A paused sink drains: the runs it held back start now. */
static void engine_resume_owed(struct engine *e)
{
    usec_t now = now_usec(CLOCK_MONOTONIC);
    if (e->opt.once && !e->stopping && ev_is_active(&e->grace)) {
        ev_timer_stop(e->loop, &e->grace); /* fetching goes on */
    }
    for (size_t i = 0; i < e->cur->n_eps && e->owed; i++) {
        struct ep_state *s = &e->cur->eps[i];
        if (s->owed && !sinkset_paused(&e->sinks, s->cfg)) {
            s->owed = false;
            e->owed--;
            if (!s->queued && !s->xfer && !e->stopping) {
                engine_enqueue(e, s, now, true);
            }
        }
    }
}

/* ev_prepare: runs before the loop blocks; hands this iteration's records
 * to the sinks. */
static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct engine *e = w->data;
    (void)loop;
    (void)revents;
    if (sinkset_deliver(&e->sinks)) {
        /* a sink took its share of this iteration and has more: do not
         * block in poll, come back at once */
        if (!ev_is_active(&e->more)) {
            ev_idle_start(loop, &e->more);
        }
    } else if (ev_is_active(&e->more)) {
        ev_idle_stop(loop, &e->more);
    }
    if (e->opt.once && !e->stopping && ev_is_active(&e->grace)) {
        /* --once: the grace period guards against a sink that stalls, not
         * one that is slow; it starts again whenever the sinks progress */
        struct sink_counters c;
        sinkset_totals(&e->sinks, &c, NULL);
        if (c.delivered + c.dropped != e->sink_progress) {
            e->sink_progress = c.delivered + c.dropped;
            ev_timer_stop(loop, &e->grace);
            ev_timer_set(&e->grace, usec_to_ev(e->cur->cfg->limits.shutdown_grace), 0.);
            ev_timer_start(loop, &e->grace);
        }
    }
    if (e->owed && sinkset_take_unpaused(&e->sinks)) {
        engine_resume_owed(e);
    }
    if (e->opt.once || e->stopping) {
        engine_check_done(e);
    }
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

/* ---- calendar schedules ("schedule") ------------------------------------
 * The planned run is a wall-clock time (cron_at). The timer sleeps towards
 * it at most a minute at a time, so a change of the wall clock (NTP, DST is
 * in cron_next) moves the run with it; an early wake-up sleeps again. */
#define ENGINE_CRON_MAX_SLEEP (60 * USEC_PER_SEC)

static void ep_cron_sleep(struct engine *e, struct ep_state *s, usec_t now)
{
    usec_t real = now_usec(CLOCK_REALTIME);
    usec_t at = (usec_t)s->cron_at * USEC_PER_SEC;
    usec_t left = at > real ? at - real : 0;
    s->base = s->due = now + left;
    ev_timer_stop(e->loop, &s->timer);
    if (!s->cron_at) {
        return; /* never runs */
    }
    ev_timer_set(&s->timer, usec_to_ev(left > ENGINE_CRON_MAX_SLEEP ? ENGINE_CRON_MAX_SLEEP : left),
                 0.);
    ev_timer_start(e->loop, &s->timer);
}

/* Plans the first run after `after` (wall-clock seconds). */
static void ep_cron_arm(struct engine *e, struct ep_state *s, int64_t after, usec_t now)
{
    time_t next;
    if (cron_next(s->cfg->cron, (time_t)after, &next) < 0) {
        if (s->cron_at) {
            log_endpoint(LOG_WARNING, s->cfg->name,
                         "schedule \"%s\" has no run within 5 years: the endpoint stops",
                         s->cfg->schedule);
        }
        s->cron_at = 0;
    } else {
        s->cron_at = next;
    }
    ep_cron_sleep(e, s, now);
}

/* First run: at a wall-clock multiple of the interval (+ offset) with
 * align, else at the deterministic splay. From then on the schedule runs
 * on the monotonic clock: wall-clock jumps do not change the cadence. */
static void ep_schedule_first(struct engine *e, struct ep_state *s, usec_t now)
{
    if (s->cfg->cron) {
        ev_timer_init(&s->timer, ep_timer_cb, 0., 0.);
        s->timer.data = s;
        s->cron_at = -1; /* (not 0: a schedule without a run is reported) */
        ep_cron_arm(e, s, (int64_t)(now_usec(CLOCK_REALTIME) / USEC_PER_SEC), now);
        return;
    }
    usec_t iv = s->cfg->interval;
    usec_t first;
    if (s->cfg->align) {
        /* both clocks read together (now may be from before a long loop
         * over many endpoints) */
        usec_t wall = now_usec(CLOCK_REALTIME), mono = now_usec(CLOCK_MONOTONIC);
        usec_t k = (wall >= s->cfg->offset ? (wall - s->cfg->offset) / iv : 0) + 1;
        usec_t next = k * iv + s->cfg->offset;
        first = mono + (next > wall ? next - wall : 0);
        now = mono;
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
    usec_t sched = 0; /* the run's wall-clock time */
    if (s->cfg->cron) {
        usec_t real = now_usec(CLOCK_REALTIME);
        usec_t at = (usec_t)s->cron_at * USEC_PER_SEC;
        if (real < at) {
            /* a capped sleep, the clock went back, or the monotonic timer
             * ran a little ahead of the wall clock: never early */
            ep_cron_sleep(e, s, now);
            return;
        }
        s->last_fire = now;
        hist_add(&e->lateness, real - at);
        /* the next run after this one, or after now when this one is late
         * (one catch-up, not one run per missed time) */
        int64_t after = (int64_t)(real / USEC_PER_SEC);
        sched = at;
        ep_cron_arm(e, s, after > s->cron_at ? after : s->cron_at, now);
        due = now;
    } else {
        if (now < due) {
            /* never early: libev's clock may lag behind ours (a long
             * iteration), and an aligned run must not start before its
             * point on the wall clock */
            ev_timer_set(&s->timer, usec_to_ev(due - now), 0.);
            ev_timer_start(e->loop, &s->timer);
            return;
        }
        s->last_fire = now;
        hist_add(&e->lateness, now - due);
        /* the wall-clock time of the run (before jitter) for templates */
        usec_t real = now_usec(CLOCK_REALTIME);
        sched = now > s->base ? real - (now - s->base) : real + (s->base - now);
        /* Next run: the next point of the grid after now. After a SIGSTOP or
         * a suspend this run is the one catch-up, not a burst of missed
         * ticks. */
        usec_t iv = s->cfg->interval;
        usec_t k = now > s->base ? (now - s->base) / iv + 1 : 1;
        ep_arm(e, s, s->base + k * iv, now);
    }
    if (!e->opt.once && now < s->hold_until) {
        /* circuit breaker open, or the server asked for a pause */
        s->backed_off++;
        log_endpoint(LOG_DEBUG, s->cfg->name, "backing off, skipping this run");
        return;
    }
    if (s->paused) {
        log_endpoint(LOG_DEBUG, s->cfg->name, "paused, skipping this run");
        return;
    }
    if (s->xfer || s->queued || s->cyc) {
        /* never two fetches of one endpoint at once: skip this run */
        s->skipped++;
        e->st.skipped++;
        log_endpoint(LOG_DEBUG, s->cfg->name, "previous fetch still running, skipping this run");
        return;
    }
    s->sched_real = sched;
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
        /* sharding: this instance's endpoints only (an explicit
         * --endpoint runs whatever it names) */
        const struct shard *sh = e->opt.shard.n ? &e->opt.shard : &cfg->shard;
        s->selected = e->opt.n_only == 0 && s->cfg->enabled && shard_owns(sh, s->cfg->name);
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

/* TLS verification off is logged at every (re)load. */
static void engine_warn_insecure(struct engine *e)
{
    size_t n = 0;
    for (size_t i = 0; i < e->cur->n_eps; i++) {
        const struct ep_state *s = &e->cur->eps[i];
        if (!s->selected || !s->cfg->x->tls.insecure) {
            continue;
        }
        if (n++ < 10) {
            log_endpoint(LOG_WARNING, s->cfg->name,
                         "TLS verification is off (tls.verify: false): anyone on the path can "
                         "read and change its traffic");
        }
    }
    if (n > 10) {
        log_warning("TLS verification is off for %zu more endpoints", n - 10);
    }
}

static void engine_reload_failed(struct engine *e, const char *why)
{
    snprintf(e->reload_error, sizeof(e->reload_error), "%s", why);
    struct log_fields lf = LOG_FIELDS_INIT;
    lf.event = LOG_EV_RELOAD_FAILED;
    log_full(LOG_ERR, &lf, "reload failed, keeping the running configuration: %s", why);
    /* SIGHUP still means "reopen your files" to logrotate */
    sinkset_rotate(&e->sinks);
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
    r = sinkset_reopen(&nsinks, ncfg, &e->sinks, e->cur->cfg);
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
            cond_restore(e, ns);
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
        ns->backed_off = os->backed_off;
        ns->breaker_level = os->breaker_level;
        ns->hold_until = os->hold_until;
        ns->paused = os->paused;
        ns->stats = os->stats;
        os->stats = NULL;
        if (os->cond && ns->cfg->x->conditional && os->cond->fp == cond_fingerprint(ns->cfg)) {
            ns->cond = os->cond;
            os->cond = NULL;
        }
        if (os->cyc) {
            /* a cycle (retry wait, token wait, pages) goes on for the new
             * state; its reference moves with it */
            ns->cyc = os->cyc;
            os->cyc = NULL;
            ns->cyc->owner = ns;
            if (ns->cyc->heap_idx != SIZE_MAX) {
                e->heap[ns->cyc->heap_idx] = ns;
            }
            ng->refs++;
            engine_gen_unref(e, old);
        }
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
            ns->cron_at = os->cron_at;
            if (ns->cfg->cron) {
                ep_cron_sleep(e, ns, now);
            } else {
                ev_timer_set(&ns->timer, usec_to_ev(ns->due > now ? ns->due - now : 0), 0.);
                ev_timer_start(e->loop, &ns->timer);
            }
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
    struct ep_state *orphans = NULL; /* queued cycles not carried over */
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
        if (q->cyc && q->gen != old) {
            /* a cycle of an older, retired generation (the old
             * generation's own are handled below) */
            q->qnext = orphans;
            orphans = q;
        }
        q = next;
    }
    for (size_t i = 0; i < old->n_eps; i++) {
        if (old->eps[i].owed) {
            /* the new generation schedules it afresh */
            old->eps[i].owed = false;
            e->owed--;
        }
    }
    old->refs++; /* kept for the loop below */
    e->cur = ng;
    if (old->refs > 0) {
        old->next = e->retired;
        e->retired = old;
    } else {
        gen_free(old);
    }
    /* cycles of removed endpoints that wait (to retry, for a token, or in
     * the queue) end now, with the record of their last attempt */
    for (size_t i = 0; i < old->n_eps; i++) {
        struct ep_state *os = &old->eps[i];
        if (os->cyc && !os->xfer) {
            engine_cycle_abandon(e, os, "the endpoint was removed by a reload");
        }
    }
    engine_gen_unref(e, old);
    while (orphans) {
        struct ep_state *o = orphans;
        orphans = o->qnext;
        o->qnext = NULL;
        engine_cycle_abandon(e, o, "the endpoint was removed by a reload");
    }
    engine_warn_insecure(e);
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

/* At stop: cycles that wait to retry, for a token, or in the queue will not
 * run again; each delivers the record of its last attempt now. */
static void engine_abandon_waiting(struct engine *e)
{
    while (e->heap_n) {
        engine_cycle_abandon(e, e->heap[0], "stopped");
    }
    /* queued runs do not start any more; queued retries end now (a state
     * may belong to a generation that its cycle alone kept alive, so it
     * leaves the queue first) */
    struct ep_state *keep = NULL, **tail = &keep;
    size_t kept = 0;
    struct ep_state *q;
    while ((q = engine_dequeue(e))) {
        if (q->cyc) {
            engine_cycle_abandon(e, q, "fetchd was stopped before the next request of this run");
        } else {
            *tail = q;
            tail = &q->qnext;
            kept++;
        }
    }
    for (q = keep; q; q = q->qnext) {
        q->queued = true;
    }
    e->qhead = keep;
    e->qtail = kept ? (struct ep_state *)((char *)tail - offsetof(struct ep_state, qnext)) : NULL;
    e->queued = kept;
    /* token waiters, in every generation (a cycle keeps a retired one
     * alive, so take the next one before abandoning) */
    struct gen *g = e->cur;
    struct gen *next_retired = e->retired;
    while (g) {
        struct gen *after = next_retired;
        next_retired = after ? after->next : NULL;
        g->refs++;
        for (size_t i = 0; i < g->n_eps; i++) {
            struct ep_state *s = &g->eps[i];
            if (s->cyc && s->cyc->waiter.tok) {
                engine_cycle_abandon(e, s,
                                     "fetchd was stopped while the endpoint waited for a token");
            }
        }
        engine_gen_unref(e, g);
        g = after;
    }
}

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
        char *loc = NULL;
        xfer_result(x, CURLE_ABORTED_BY_CALLBACK, &rec, msg, sizeof(msg), &loc);
        free(loc);
        rec.error = REC_ERR_CANCELLED;
        rec.curl_code = 0; /* libcurl reported nothing: we stopped it */
        rec.excerpt = NULL;
        rec.attempts = s->cyc ? s->cyc->attempt : 1;
        rec.page = s->cfg->x->page_mode ? (s->cyc ? s->cyc->page : 1) : 0;
        snprintf(msg, sizeof(msg), "fetchd was stopped before the transfer completed");
        engine_emit(e, s, &rec);
        engine_cycle_end(e, s, &rec);
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
        engine_abandon_waiting(e);
        struct log_fields lf = LOG_FIELDS_INIT;
        lf.event = LOG_EV_STOPPING;
        sinkset_drain(&e->sinks);
        uint64_t q = engine_sink_queued(e);
        if (e->in_flight == 0 && q == 0) {
            log_full(LOG_NOTICE, &lf, "received %s, stopping", strsignal(w->signum));
            ev_break(loop, EVBREAK_ALL);
            return;
        }
        char g[32];
        log_full(LOG_NOTICE, &lf,
                 "received %s, finishing %u transfer%s in flight and delivering %llu queued "
                 "record%s (up to %s; again to stop now)",
                 strsignal(w->signum), e->in_flight, e->in_flight == 1 ? "" : "s",
                 (unsigned long long)q, q == 1 ? "" : "s",
                 units_format_duration(e->cur->cfg->limits.shutdown_grace, g, sizeof(g)));
        /* keep systemd's stop timeout from cutting the drain short */
        notify_extend_timeout(e->cur->cfg->limits.shutdown_grace + 5 * USEC_PER_SEC);
        ev_timer_stop(loop, &e->grace); /* --once may have started it */
        ev_timer_set(&e->grace, usec_to_ev(e->cur->cfg->limits.shutdown_grace), 0.);
        ev_timer_start(loop, &e->grace);
        return;
    }
    log_notice("received %s again, stopping now", strsignal(w->signum));
    e->stop_now = true;
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

/* Conditional-request state from an earlier run (--state-dir). */
static void engine_load_state(struct engine *e)
{
    bool any = false;
    for (size_t i = 0; i < e->cur->n_eps && !any; i++) {
        any = e->cur->eps[i].selected && e->cur->eps[i].cfg->x->conditional;
    }
    if (!e->opt.state_dir || !any) {
        if (any) {
            log_info("no state directory (--state-dir or $STATE_DIRECTORY): ETag and "
                     "Last-Modified are kept in memory only");
        }
        return;
    }
    struct buf p = {0};
    if (buf_printf(&p, "%s/conditional.json", e->opt.state_dir) < 0) {
        buf_done(&p);
        return;
    }
    e->state_file = buf_steal(&p);
    struct buf t = {0};
    int rr = file_read(e->state_file, 64 * 1024 * 1024, &t);
    if (rr < 0) {
        if (rr != -ENOENT) {
            log_warning("cannot read %s: %s; conditional requests start without validators",
                        e->state_file, strerror(-rr));
        }
        buf_done(&t);
        return;
    }
    cJSON *root = t.data ? cJSON_ParseWithLength(t.data, t.len) : NULL;
    buf_done(&t);
    cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "endpoints");
    if (!cJSON_IsObject(eps)) {
        log_warning("%s is not valid state (ignored; it is rewritten on the next change)",
                    e->state_file);
        cJSON_Delete(root);
        return;
    }
    e->saved_cond = root;
    for (size_t i = 0; i < e->cur->n_eps; i++) {
        if (e->cur->eps[i].selected) {
            cond_restore(e, &e->cur->eps[i]);
        }
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

    sinkset_init(&e->sinks, e->loop, &e->http, e->opt.state_dir);
    e->sinks.once = e->opt.once;
    r = sinkset_open(&e->sinks, cfg);
    if (r < 0) {
        goto fail;
    }

    e->ckpt = ckpt_store_new(e->loop, e->opt.state_dir);
    if (!e->ckpt) {
        r = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_endpoints; i++) {
        const struct endpoint_cfg *ep = &cfg->endpoints[i];
        if (!e->opt.state_dir && ep->tpl &&
            (ep->ckpt || (ep->tpl->uses & 1u << TPL_LAST_SUCCESS))) {
            log_info("no state directory (--state-dir or $STATE_DIRECTORY): checkpoints and "
                     "last-success times are kept in memory only, a restart starts over");
            break;
        }
    }
    snprintf(e->user_agent, sizeof(e->user_agent), "fetchd/%s", FETCHD_VERSION);
    oauth_init(&e->oauth, &e->http, &e->secrets, e->user_agent);
    ev_timer_init(&e->retry_timer, retry_cb, 0., 0.);
    e->retry_timer.data = e;
    ev_timer_init(&e->cond_timer, cond_timer_cb, 0., 0.);
    e->cond_timer.data = e;
    engine_load_state(e);
    ev_timer_init(&e->kick, kick_cb, 0., 0.);
    e->kick.data = e;
    ev_prepare_init(&e->flush, flush_cb);
    e->flush.data = e;
    ev_idle_init(&e->more, more_cb);
    e->more.data = e;
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
    engine_warn_insecure(e);
    e->started = now_usec(CLOCK_MONOTONIC);
    ev_signal_start(e->loop, &e->sigterm);
    ev_signal_start(e->loop, &e->sigint);
    ev_signal_start(e->loop, &e->sighup);
    /* A SIGTERM or SIGINT that came while the configuration loaded (they
     * are blocked from main() until now) stops fetchd before any fetch
     * starts: enqueued runs stay queued (not run), no READY=1. */
    sigset_t pending;
    bool stop_early = sigpending(&pending) == 0 &&
                      (sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1);
    if (stop_early) {
        e->stopping = true;
        e->st.interrupted = true;
        struct log_fields lf = LOG_FIELDS_INIT;
        lf.event = LOG_EV_STOPPING;
        log_full(LOG_NOTICE, &lf, "received %s while starting, stopping before the first fetch",
                 sigismember(&pending, SIGTERM) == 1 ? strsignal(SIGTERM) : strsignal(SIGINT));
        if (!e->opt.once) {
            notify_stopping();
        }
    }
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
    if (!e->opt.once && !stop_early) {
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
        const struct shard *sh = e->opt.shard.n ? &e->opt.shard : &e->cur->cfg->shard;
        char shs[64] = "";
        if (sh->n) {
            snprintf(shs, sizeof(shs), " (shard %u/%u of %zu)", sh->k, sh->n, e->cur->n_eps);
        }
        log_full(LOG_NOTICE, &lf, "started: %llu endpoint%s%s, max %u concurrent transfers%s",
                 (unsigned long long)e->st.selected, e->st.selected == 1 ? "" : "s", shs,
                 e->cur->cfg->limits.max_concurrent,
                 wd ? ", watchdog on" : "");
        /* config loaded, sinks open, schedules armed */
        engine_status_line(e, e->status, sizeof(e->status));
        notify_ready(e->status);
    }

    /* with --once everything may already be done (every transfer failed
     * to start): an ev_break before ev_run would be forgotten */
    if (!stop_early && (!e->opt.once || !engine_finished(e))) {
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
    e->st.not_run = e->queued + e->owed;
    /* the records of the aborted transfers, and whatever the sinks still
     * hold: one last delivery without the loop, then counted */
    (void)sinkset_deliver(&e->sinks);
    /* after a second signal the operator wants out: what the sinks take
     * at once is delivered, the rest is counted as abandoned */
    sinkset_finish(&e->sinks, now_usec(CLOCK_MONOTONIC) + (e->stop_now ? 0 : 2 * USEC_PER_SEC));
    struct sink_counters sc;
    sinkset_totals(&e->sinks, &sc, NULL);
    e->st.records_lost += sc.dropped;
    e->st.sinks = sc;
    if (!e->opt.once || sc.dropped) {
        sinkset_summary(&e->sinks, now_usec(CLOCK_MONOTONIC), 0, true);
    }
    return 0;
}

/* ---- introspection and control ------------------------------------------ */

size_t engine_n_endpoints(const struct engine *e)
{
    return e->cur->n_eps;
}

bool engine_endpoint_info(const struct engine *e, size_t i, struct engine_ep_info *ret)
{
    if (i >= e->cur->n_eps || !e->cur->eps[i].selected) {
        return false;
    }
    const struct ep_state *s = &e->cur->eps[i];
    usec_t now = now_usec(CLOCK_MONOTONIC);
    memset(ret, 0, sizeof(*ret));
    ret->name = s->cfg->name;
    ret->running = s->xfer || s->queued || s->cyc;
    if (s->paused) {
        ret->state = "paused";
    } else if (!e->opt.once && now < s->hold_until) {
        ret->state = "backing off";
    } else if (s->consecutive_failures) {
        ret->state = "failing";
    } else {
        ret->state = s->fetches ? "ok" : "new";
    }
    ret->last_error = s->fetches && s->last_error != REC_OK ? record_error_kind(s->last_error)
                                                            : NULL;
    ret->last_message = "";
    ret->next_in = -1;
    if (!e->opt.once && !e->stopping && ev_is_active(&s->timer)) {
        ret->next_in = s->due > now ? (int64_t)(s->due - now) : 0;
    }
    ret->consecutive_failures = s->consecutive_failures;
    ret->fetches = s->fetches;
    ret->failures = s->failures;
    ret->skipped = s->skipped + s->backed_off;
    const struct ep_stats *es = s->stats;
    if (es) {
        ret->last_status = es->last_status;
        ret->last_message = es->last_message;
        ret->last_duration = es->last_duration;
        ret->last_fetch = es->last_fetch;
        ret->last_ok = es->last_ok;
        ret->records = es->records;
    }
    const struct ckpt_entry *en = ckpt_entry_find(e->ckpt, s->cfg->name);
    ret->checkpoint = s->cfg->ckpt ? ckpt_json(en) : NULL;
    ret->last_success = ckpt_last_success(en);
    return true;
}

const uint64_t *engine_latency(const struct engine *e, uint64_t *sum_usec)
{
    *sum_usec = e->lat_sum;
    return e->lat;
}

int engine_control(struct engine *e, const char *name, enum engine_ctl op)
{
    const struct endpoint_cfg *ep = config_find_endpoint(e->cur->cfg, name);
    if (!ep || !e->cur->eps[ep - e->cur->cfg->endpoints].selected) {
        return -ENOENT;
    }
    struct ep_state *s = &e->cur->eps[ep - e->cur->cfg->endpoints];
    if (e->stopping) {
        return -ESHUTDOWN;
    }
    switch (op) {
    case ENGINE_CTL_FETCH:
        if (s->xfer || s->queued || s->cyc) {
            return -EBUSY;
        }
        log_endpoint(LOG_NOTICE, s->cfg->name, "fetching now, as asked on the control socket");
        engine_enqueue(e, s, now_usec(CLOCK_MONOTONIC), true);
        return 0;
    case ENGINE_CTL_PAUSE:
    case ENGINE_CTL_RESUME:
        if (s->paused == (op == ENGINE_CTL_PAUSE)) {
            return -EALREADY;
        }
        s->paused = op == ENGINE_CTL_PAUSE;
        log_endpoint(LOG_NOTICE, s->cfg->name, "%s, as asked on the control socket",
                     s->paused ? "paused: scheduled runs are skipped until resumed" : "resumed");
        return 0;
    }
    return -EINVAL;
}

const char *engine_status(struct engine *e)
{
    engine_status_line(e, e->ctl_status, sizeof(e->ctl_status));
    return e->ctl_status;
}

const struct config *engine_config(const struct engine *e)
{
    return e->cur->cfg;
}

const struct sinkset *engine_sinks(const struct engine *e)
{
    return &e->sinks;
}

struct ev_loop *engine_loop(const struct engine *e)
{
    return e->loop;
}

usec_t engine_uptime(const struct engine *e)
{
    usec_t now = now_usec(CLOCK_MONOTONIC);
    return now > e->started ? now - e->started : 0;
}

void engine_get_stats(const struct engine *e, struct engine_stats *st)
{
    *st = e->st;
    st->iterations = e->busy.count;
    st->busy_p99 = hist_quantile(&e->busy, 0.99);
    st->busy_max = e->busy.max;
    st->trim_max = e->trim_max;
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
        ev_idle_stop(e->loop, &e->more);
        ev_timer_stop(e->loop, &e->grace);
        ev_timer_stop(e->loop, &e->retry_timer);
        ev_timer_stop(e->loop, &e->cond_timer);
        ev_signal_stop(e->loop, &e->sigterm);
        ev_signal_stop(e->loop, &e->sigint);
        ev_signal_stop(e->loop, &e->sighup);
        for (size_t i = 0; e->cur && i < e->cur->n_eps; i++) {
            ev_timer_stop(e->loop, &e->cur->eps[i].timer);
        }
    }
    if (e->cur) {
        cond_save(e); /* validators learnt since the last save */
    }
    /* order: easy handles out of the multi, then the multi (which may still
     * call the socket callback), then the loop */
    for (size_t i = 0; i < e->pool_n; i++) {
        if (e->pool[i].owner && e->http_ready) {
            http_remove(&e->http, e->pool[i].easy);
        }
        xfer_done(&e->pool[i]);
    }
    sinkset_close(&e->sinks); /* the http sink's transfers leave the multi handle */
    if (e->http_ready) {
        oauth_done(&e->oauth);
        http_done(&e->http);
    }
    secrets_done(&e->secrets);
    free(e->heap);
    free(e->state_file);
    cJSON_Delete(e->saved_cond);
    free(e->pool);
    while (e->retired) {
        struct gen *g = e->retired;
        e->retired = g->next;
        gen_free(g);
    }
    gen_free(e->cur);
    /* after the sinks (their records hold tickets) and the cycles */
    e->ckpt = ckpt_store_free(e->ckpt);
    buf_done(&e->line);
    buf_done(&e->data);
    if (e->loop) {
        ev_loop_destroy(e->loop);
    }
    free(e);
    return NULL;
}
