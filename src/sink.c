/* sink.c - the registry of sink types, the per-sink queues, and dispatch.
 *
 * The queue of a sink is a singly linked FIFO of struct sink_rec (one
 * allocation per record: line, then the endpoint's name). Its bounds are
 * records and bytes (a record costs its line plus its header). Overflow:
 *   drop_oldest  the oldest record the sink does not hold yet is dropped
 *   drop_newest  the new record is dropped
 *   pause        the record is queued; the endpoints routed to the sink are
 *                not started until the queue is below half its bounds again
 *                (records of fetches already running may take the queue to
 *                twice its bounds; beyond that they are dropped as newest)
 * Every drop is counted; delivered + dropped + queued == produced.
 */
#include "sink.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "units.h"

/* Built-in sink types. Adding one: a file in sinks/ and a line here. */
static const struct sink_type *const sink_types[] = {
    &sink_type_stdout, &sink_type_file, &sink_type_journal,
    &sink_type_exec,   &sink_type_http, &sink_type_plugin,
};

#define N_TYPES (sizeof(sink_types) / sizeof(sink_types[0]))

static const char *const take_values[] = {"all", "ok", "errors", NULL};
static const char *const overflow_values[] = {"drop_oldest", "drop_newest", "pause", NULL};

const struct opt_def sink_common_options[] = {
    [SINK_OPT_RECORDS] = {"records", OPT_STRING, false,
                          "which records the sink takes: all, ok or errors", take_values},
    [SINK_OPT_QUEUE_RECORDS] = {"queue_max_records", OPT_UINT, false,
                                "records queued before the overflow policy applies", NULL},
    [SINK_OPT_QUEUE_BYTES] = {"queue_max_bytes", OPT_SIZE, false,
                              "bytes queued before the overflow policy applies", NULL},
    [SINK_OPT_OVERFLOW] = {"overflow", OPT_STRING, false,
                           "when the queue is full: drop_oldest, drop_newest or pause",
                           overflow_values},
    [SINK_OPT_BACKOFF] = {"retry_backoff", OPT_DURATION, false,
                          "first delay before a failed delivery is retried", NULL},
    [SINK_OPT_MAX_BACKOFF] = {"retry_max_backoff", OPT_DURATION, false,
                              "longest delay between retries", NULL},
    {0},
};

const struct sink_type *sink_type_find(const char *name)
{
    for (size_t i = 0; i < N_TYPES; i++) {
        if (strcmp(sink_types[i]->name, name) == 0) {
            return sink_types[i];
        }
    }
    return NULL;
}

const char *sink_type_names(void)
{
    return "stdout, file, journal, exec, http, plugin";
}

/* ---- records --------------------------------------------------------------- */

#define REC_OVERHEAD (sizeof(struct sink_rec) + 16)

static size_t rec_cost(const struct sink_rec *r)
{
    return REC_OVERHEAD + r->len + strlen(r->endpoint);
}

void sink_ticket_put(struct sink_ticket *t, bool ok)
{
    if (!t) {
        return;
    }
    if (!ok) {
        t->failed = true;
    }
    if (--t->refs == 0) {
        t->done(t, !t->failed);
    }
}

/* A copy of it that never made it into a queue. */
static void item_lost(const struct sink_item *it)
{
    if (it->ticket) {
        it->ticket->failed = true;
    }
}

static struct sink_rec *rec_new(const struct sink_item *it)
{
    size_t el = strlen(it->endpoint);
    if (it->len > UINT32_MAX / 2) {
        return NULL;
    }
    struct sink_rec *r = malloc(sizeof(*r) + it->len + el + 1);
    if (!r) {
        return NULL;
    }
    r->next = NULL;
    r->ticket = it->ticket;
    if (r->ticket) {
        r->ticket->refs++;
    }
    r->len = (uint32_t)it->len;
    r->data_off = it->data_len ? (uint32_t)it->data_off : 0;
    r->data_len = (uint32_t)it->data_len;
    r->error = (uint8_t)it->error;
    r->http_status = it->http_status;
    r->fetched_at = it->fetched_at;
    memcpy(r->line, it->line, it->len);
    char *ep = r->line + it->len;
    memcpy(ep, it->endpoint, el + 1);
    r->endpoint = ep;
    return r;
}

/* ---- logging --------------------------------------------------------------- */

#define DROP_LOG_EVERY (60 * USEC_PER_SEC)

/* Drops are logged at most once a minute per sink, with the count since the
 * last message. */
static void sink_log_drops(struct sink *s, const char *why)
{
    usec_t now = now_usec(CLOCK_MONOTONIC);
    if (now < s->drop_log_at) {
        return;
    }
    uint64_t n = s->c.dropped - s->drops_logged;
    s->drops_logged = s->c.dropped;
    s->drop_log_at = now + DROP_LOG_EVERY;
    log_sink(LOG_WARNING, s->name,
             "%llu record%s dropped: %s (%llu dropped in total; further drops are reported "
             "at most once a minute)",
             (unsigned long long)n, n == 1 ? "" : "s", why, (unsigned long long)s->c.dropped);
}

/* ---- the queue ------------------------------------------------------------- */

static void q_push(struct sink *s, struct sink_rec *r)
{
    if (s->tail) {
        s->tail->next = r;
    } else {
        s->head = r;
    }
    s->tail = r;
    s->queued++;
    s->queued_bytes += rec_cost(r);
}

/* Removes the head record; delivered says what became of it (its ticket). */
static void q_pop(struct sink *s, bool delivered)
{
    struct sink_rec *r = s->head;
    s->head = r->next;
    if (!s->head) {
        s->tail = NULL;
    }
    s->queued--;
    s->queued_bytes -= rec_cost(r);
    struct sink_ticket *t = r->ticket;
    free(r);
    sink_ticket_put(t, delivered);
}

static bool q_full(const struct sink *s, uint64_t extra_bytes, unsigned factor)
{
    const struct sink_cfg *c = s->cfg;
    return s->queued + 1 > c->max_records * factor ||
           s->queued_bytes + extra_bytes > c->max_bytes * factor;
}

static void q_check_unpause(struct sink *s)
{
    if (s->paused && s->queued <= s->cfg->max_records / 2 &&
        s->queued_bytes <= s->cfg->max_bytes / 2) {
        s->paused = false;
        s->unpaused = true;
        log_sink(LOG_NOTICE, s->name, "queue below half its bounds again, endpoints resume");
    }
}

static bool q_drop_oldest(struct sink *s);

/* Moves the records from does not hold to the tail of to's queue (a reload
 * that changed a sink's definition); the counters move with them. */
static void q_move(struct sink *from, struct sink *to)
{
    struct sink_rec **pp = &from->head, *last = NULL;
    for (uint32_t i = 0; i < from->locked && *pp; i++) {
        last = *pp;
        pp = &(*pp)->next;
    }
    uint64_t n = 0;
    while (*pp) {
        struct sink_rec *r = *pp;
        *pp = r->next;
        from->queued--;
        from->queued_bytes -= rec_cost(r);
        r->next = NULL;
        q_push(to, r);
        n++;
    }
    from->tail = last;
    from->c.produced -= n;
    to->c.produced += n;
    /* the new bounds apply: pause, or drop the oldest (counted) */
    unsigned factor = to->cfg->overflow == SINK_PAUSE ? 2 : 1;
    while (to->queued > to->cfg->max_records * factor ||
           to->queued_bytes > to->cfg->max_bytes * factor) {
        if (!q_drop_oldest(to)) {
            break;
        }
    }
    if (to->cfg->overflow == SINK_PAUSE && !to->paused && q_full(to, 0, 1)) {
        to->paused = true;
    }
    if (n) {
        log_sink(LOG_INFO, to->name, "took over %llu queued record%s from the old definition",
                 (unsigned long long)n, n == 1 ? "" : "s");
    }
}

/* Drops the oldest record the sink does not hold. False if it holds all. */
static bool q_drop_oldest(struct sink *s)
{
    struct sink_rec **pp = &s->head;
    for (uint32_t i = 0; i < s->locked && *pp; i++) {
        pp = &(*pp)->next;
    }
    struct sink_rec *r = *pp;
    if (!r) {
        return false;
    }
    *pp = r->next;
    if (s->tail == r) {
        /* the previous element is the new tail */
        struct sink_rec *t = s->head;
        while (t && t->next) {
            t = t->next;
        }
        s->tail = t;
    }
    s->queued--;
    s->queued_bytes -= rec_cost(r);
    struct sink_ticket *t = r->ticket;
    free(r);
    sink_ticket_put(t, false);
    s->c.dropped++;
    s->c.overflow++;
    return true;
}

/* Before the overflow policy drops a record: a response that splits into
 * more records than the queue holds fills it within one loop iteration,
 * before the sink had a turn. A sink that can take records now (it never
 * blocks) gets them first; true if the new record fits afterwards. */
static bool q_make_room(struct sink *s, uint64_t cost, unsigned factor)
{
    if (s->state != SINK_READY || s->delivering || !s->head) {
        return false;
    }
    s->delivering = true;
    s->cfg->type->deliver(s);
    s->delivering = false;
    return !q_full(s, cost, factor);
}

/* Queues one record; returns 0 or -ENOBUFS/-ENOMEM (dropped, counted). */
static int sink_enqueue(struct sink *s, const struct sink_item *it)
{
    s->c.produced++;
    uint64_t cost = REC_OVERHEAD + it->len + strlen(it->endpoint);
    if (s->cfg->type->overflow && (s->held || q_full(s, cost, 1)) &&
        s->cfg->type->overflow(s, it) == 0) {
        item_lost(it); /* kept by the sink (spool): not delivered by this process */
        return 0;      /* counted in s->held */
    }
    if (cost > s->cfg->max_bytes) {
        s->c.dropped++;
        s->c.overflow++;
        sink_log_drops(s, "a record larger than queue_max_bytes");
        item_lost(it);
        return -ENOBUFS;
    }
    enum sink_overflow policy = s->cfg->overflow;
    if (s->once && !s->cfg->overflow_set) {
        /* an ad hoc run waits for a slow reader rather than drop records */
        policy = SINK_PAUSE;
    }
    switch (policy) {
    case SINK_DROP_OLDEST:
        while (q_full(s, cost, 1) && !q_make_room(s, cost, 1)) {
            if (!q_drop_oldest(s)) {
                s->c.dropped++;
                s->c.overflow++;
                sink_log_drops(s, "queue full (overflow drop_oldest)");
                item_lost(it);
                return -ENOBUFS;
            }
            sink_log_drops(s, "queue full (overflow drop_oldest)");
        }
        break;
    case SINK_DROP_NEWEST:
        if (q_full(s, cost, 1) && !q_make_room(s, cost, 1)) {
            s->c.dropped++;
            s->c.overflow++;
            sink_log_drops(s, "queue full (overflow drop_newest)");
            item_lost(it);
            return -ENOBUFS;
        }
        break;
    case SINK_PAUSE:
        if (q_full(s, cost, 2) && !q_make_room(s, cost, 2)) {
            s->c.dropped++;
            s->c.overflow++;
            sink_log_drops(s, "queue at twice its bounds although its endpoints are paused");
            item_lost(it);
            return -ENOBUFS;
        }
        if (!s->paused && q_full(s, cost, 1)) {
            s->paused = true;
            log_sink(LOG_WARNING, s->name,
                     "queue full (%llu records, %llu bytes), pausing its endpoints until it "
                     "drains",
                     (unsigned long long)s->queued, (unsigned long long)s->queued_bytes);
        }
        break;
    }
    struct sink_rec *r = rec_new(it);
    if (!r) {
        s->c.dropped++;
        s->c.failed++;
        sink_log_drops(s, "out of memory");
        item_lost(it);
        return -ENOMEM;
    }
    q_push(s, r);
    return 0;
}

/* ---- for sink types -------------------------------------------------------- */

void sink_recovered(struct sink *s)
{
    if (s->problem[0]) {
        double secs = (double)(now_usec(CLOCK_MONOTONIC) - s->problem_since) / 1e6;
        log_sink(LOG_NOTICE, s->name, "delivering again after %.1f s (%s)", secs, s->problem);
        s->problem[0] = '\0';
        s->last_error = 0;
        s->problem_logged = false;
    }
    s->backoff_step = 0;
}

void sink_ack(struct sink *s, size_t n)
{
    for (size_t i = 0; i < n && s->head; i++) {
        q_pop(s, true);
        s->c.delivered++;
    }
    s->locked = n >= s->locked ? 0 : s->locked - (uint32_t)n;
    if (n) {
        sink_recovered(s);
    }
    q_check_unpause(s);
}

void sink_fail(struct sink *s, size_t n, int err, const char *why)
{
    for (size_t i = 0; i < n && s->head; i++) {
        q_pop(s, false);
        s->c.dropped++;
        s->c.failed++;
    }
    s->locked = n >= s->locked ? 0 : s->locked - (uint32_t)n;
    char msg[300];
    snprintf(msg, sizeof(msg), "%s%s%s", why ? why : "delivery failed", err ? ": " : "",
             err ? strerror(-err) : "");
    sink_log_drops(s, msg);
    q_check_unpause(s);
}

static uint64_t sink_rand(void)
{
    /* jitter only; a per-process xorshift seeded from the clock */
    static uint64_t x;
    if (!x) {
        x = now_usec(CLOCK_MONOTONIC) | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

static void sink_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sink *s = w->data;
    (void)loop;
    (void)revents;
    s->state = SINK_READY; /* deliver() runs before the loop blocks again */
}

void sink_retry(struct sink *s, usec_t delay, int err, const char *why)
{
    s->c.retried++;
    s->locked = 0;
    if (!delay) {
        usec_t d = s->cfg->backoff;
        for (unsigned i = 0; i < s->backoff_step && d < s->cfg->max_backoff; i++) {
            d *= 2;
        }
        if (d > s->cfg->max_backoff) {
            d = s->cfg->max_backoff;
        }
        if (s->backoff_step < 64) {
            s->backoff_step++;
        }
        /* equal jitter: [d/2, d] */
        delay = d / 2 + (d / 2 ? sink_rand() % (d / 2 + 1) : 0);
    }
    if (!s->problem[0]) {
        s->problem_since = now_usec(CLOCK_MONOTONIC);
    }
    if (why) {
        snprintf(s->problem, sizeof(s->problem), "%s%s%s", why, err ? ": " : "",
                 err ? strerror(-err) : "");
    } else if (!s->problem[0]) {
        snprintf(s->problem, sizeof(s->problem), "%s", err ? strerror(-err) : "delivery failed");
    }
    if (!s->problem_logged || s->last_error != err) {
        char d[32];
        log_sink(LOG_ERR, s->name,
                 "cannot deliver: %s; %llu record%s queued, retrying in %s (further retries are "
                 "not logged until it recovers)",
                 s->problem, (unsigned long long)s->queued, s->queued == 1 ? "" : "s",
                 units_format_duration(delay, d, sizeof(d)));
        s->problem_logged = true;
    }
    s->last_error = err;
    s->state = SINK_BACKOFF;
    ev_timer_stop(s->loop, &s->retry_timer);
    ev_timer_set(&s->retry_timer, usec_to_ev(delay), 0.);
    ev_timer_start(s->loop, &s->retry_timer);
}

void sink_hold(struct sink *s, size_t n)
{
    for (size_t i = 0; i < n && s->head; i++) {
        q_pop(s, false); /* in the spool: a later run delivers it */
        s->held++;
    }
    s->locked = n >= s->locked ? 0 : s->locked - (uint32_t)n;
    q_check_unpause(s);
}

int sink_unhold(struct sink *s, const struct sink_item *it)
{
    if (s->held) {
        s->held--;
    }
    struct sink_rec *r = rec_new(it);
    if (!r) {
        s->c.dropped++;
        s->c.failed++;
        sink_log_drops(s, "out of memory");
        return -ENOMEM;
    }
    q_push(s, r);
    return 0;
}

void sink_restored(struct sink *s, uint64_t n)
{
    s->c.produced += n;
    s->held += n;
}

void sink_wait(struct sink *s, uint32_t locked)
{
    s->state = SINK_WAITING;
    s->locked = locked;
}

void sink_ready(struct sink *s)
{
    if (s->state == SINK_WAITING) {
        s->state = SINK_READY;
    }
}

/* ---- the set --------------------------------------------------------------- */

void sinkset_init(struct sinkset *set, struct ev_loop *loop, struct http *http,
                  const char *state_dir)
{
    memset(set, 0, sizeof(*set));
    set->loop = loop;
    set->http = http;
    set->state_dir = state_dir;
}

int sinkset_open(struct sinkset *set, const struct config *cfg)
{
    return sinkset_reopen(set, cfg, NULL, NULL);
}

static bool sink_takes(const struct sink *s, const struct sink_item *it)
{
    switch (s->cfg->take) {
    case SINK_TAKE_OK:
        return it->error == REC_OK;
    case SINK_TAKE_ERRORS:
        return it->error != REC_OK;
    case SINK_TAKE_ALL:
        break;
    }
    return true;
}

int sinkset_write(struct sinkset *set, size_t i, const struct sink_item *it)
{
    struct sink *s = i < set->n ? set->sinks[i] : NULL;
    if (!s) {
        return -ENOENT;
    }
    if (!sink_takes(s, it)) {
        return 0;
    }
    return sink_enqueue(s, it) < 0 ? -ENOBUFS : 0;
}

unsigned sinkset_dispatch(struct sinkset *set, const struct endpoint_cfg *ep,
                          const struct sink_item *it)
{
    unsigned failed = 0;
    for (uint32_t j = 0; j < ep->n_sinks; j++) {
        struct sink *s = set->sinks[ep->sinks[j]];
        if (s && sink_takes(s, it) && sink_enqueue(s, it) < 0) {
            failed++;
        }
    }
    return failed;
}

bool sinkset_take_unpaused(struct sinkset *set)
{
    bool any = false;
    for (size_t i = 0; i < set->n; i++) {
        struct sink *s = set->sinks[i];
        if (s && s->unpaused) {
            s->unpaused = false;
            any = true;
        }
    }
    return any;
}

bool sinkset_paused(const struct sinkset *set, const struct endpoint_cfg *ep)
{
    for (uint32_t j = 0; j < ep->n_sinks; j++) {
        const struct sink *s = ep->sinks[j] < set->n ? set->sinks[ep->sinks[j]] : NULL;
        if (s && s->paused) {
            return true;
        }
    }
    return false;
}

static void counters_add(struct sink_counters *a, const struct sink_counters *b)
{
    a->produced += b->produced;
    a->delivered += b->delivered;
    a->dropped += b->dropped;
    a->failed += b->failed;
    a->overflow += b->overflow;
    a->abandoned += b->abandoned;
    a->retried += b->retried;
    a->sync_errors += b->sync_errors;
}

/* Closes one instance: its queue must be empty or is counted abandoned. */
static void sink_destroy(struct sinkset *set, struct sink *s)
{
    if (!s) {
        return;
    }
    ev_timer_stop(s->loop, &s->retry_timer);
    if (s->cfg->type->close) {
        s->cfg->type->close(s);
    }
    while (s->head) {
        q_pop(s, false);
        s->c.dropped++;
        s->c.abandoned++;
    }
    counters_add(&set->closed, &s->c);
    free(s);
}

static struct sink *sink_new(struct sinkset *set, const struct sink_cfg *sc)
{
    struct sink *s = calloc(1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    s->cfg = sc;
    s->name = sc->name;
    s->loop = set->loop;
    s->http = set->http;
    s->once = set->once;
    s->state_dir = set->state_dir;
    s->state = SINK_READY;
    ev_timer_init(&s->retry_timer, sink_retry_cb, 0., 0.);
    s->retry_timer.data = s;
    return s;
}

int sinkset_reopen(struct sinkset *set, const struct config *cfg, struct sinkset *old,
                   const struct config *old_cfg)
{
    struct sinkset n = *set;
    n.n = cfg->n_sinks;
    n.sinks = calloc(n.n ? n.n : 1, sizeof(struct sink *));
    bool *taken = old ? calloc(old->n ? old->n : 1, sizeof(bool)) : NULL;
    if (!n.sinks || (old && !taken)) {
        free(n.sinks);
        free(taken);
        return -ENOMEM;
    }
    if (old) {
        n.loop = old->loop;
        n.http = old->http;
        n.state_dir = old->state_dir;
        n.once = old->once;
        n.closed = old->closed;
        n.summary_at = old->summary_at;
        n.summary_sig = old->summary_sig;
    }
    int r = 0;
    for (size_t i = 0; i < cfg->n_sinks && r == 0; i++) {
        const struct sink_cfg *sc = &cfg->sinks[i];
        if (!sc->used) {
            continue;
        }
        int oi = old_cfg ? config_sink_index(old_cfg, sc->name) : -1;
        if (oi >= 0 && old->sinks[oi] && config_sink_equal(&old_cfg->sinks[oi], sc)) {
            /* same definition: keep the instance and its queue */
            n.sinks[i] = old->sinks[oi];
            taken[oi] = true;
            continue;
        }
        struct sink *s = sink_new(&n, sc);
        if (!s) {
            r = -ENOMEM;
            break;
        }
        char err[512] = "";
        r = sc->type->open(s, err, sizeof(err));
        if (r < 0) {
            log_sink(LOG_ERR, sc->name, "(%s) %s", sc->type->name, *err ? err : strerror(-r));
            free(s);
            break;
        }
        n.sinks[i] = s;
    }
    if (r < 0) {
        /* undo: close what was opened, leave the taken-over ones alone */
        struct sink_counters keep = set->closed;
        for (size_t i = 0; i < n.n; i++) {
            int oi = old_cfg && n.sinks[i] ? config_sink_index(old_cfg, cfg->sinks[i].name) : -1;
            if (n.sinks[i] && !(oi >= 0 && taken[oi] && old->sinks[oi] == n.sinks[i])) {
                struct sinkset scratch = n;
                sink_destroy(&scratch, n.sinks[i]);
            }
        }
        set->closed = keep;
        free(n.sinks);
        free(taken);
        return r;
    }
    /* commit: taken-over instances now belong to the new config */
    for (size_t i = 0; i < n.n; i++) {
        struct sink *s = n.sinks[i];
        int oi = old_cfg && s ? config_sink_index(old_cfg, cfg->sinks[i].name) : -1;
        if (s && oi >= 0 && taken[oi] && old->sinks[oi] == s) {
            s->cfg = &cfg->sinks[i];
            s->name = cfg->sinks[i].name;
            old->sinks[oi] = NULL;
            if (s->cfg->type->sync) {
                (void)s->cfg->type->sync(s);
            }
            if (s->cfg->type->reopen) {
                (void)s->cfg->type->reopen(s);
            }
        }
    }
    /* a sink whose definition changed takes over the records its old
     * instance still queues (not those in the old one's hands) */
    for (size_t i = 0; old && i < n.n; i++) {
        struct sink *s = n.sinks[i];
        int oi = s ? config_sink_index(old_cfg, cfg->sinks[i].name) : -1;
        if (oi >= 0 && !taken[oi] && old->sinks[oi]) {
            q_move(old->sinks[oi], s);
        }
    }
    free(taken);
    if (old) {
        /* the sinks the new config does not keep: a last delivery, then
         * whatever they still hold is counted (and logged) as lost */
        sinkset_finish(old, now_usec(CLOCK_MONOTONIC) + USEC_PER_SEC / 5);
        n.closed = old->closed;
        for (size_t i = 0; i < old->n; i++) {
            struct sink *s = old->sinks[i];
            if (s) {
                sink_destroy(&n, s);
                old->sinks[i] = NULL;
            }
        }
        free(old->sinks);
        old->sinks = NULL;
        old->n = 0;
    }
    *set = n;
    return 0;
}

#define DELIVER_ROUNDS 64

bool sinkset_deliver(struct sinkset *set)
{
    bool more = false;
    for (size_t i = 0; i < set->n; i++) {
        struct sink *s = set->sinks[i];
        if (!s) {
            continue;
        }
        for (int round = 0; round < DELIVER_ROUNDS && s->state == SINK_READY && s->head;
             round++) {
            uint64_t before = s->queued;
            s->cfg->type->deliver(s);
            if (s->queued == before && s->state == SINK_READY) {
                break; /* took nothing and asked for nothing: try next time */
            }
        }
        more |= s->state == SINK_READY && s->head;
    }
    return more;
}

void sinkset_rotate(struct sinkset *set)
{
    for (size_t i = 0; i < set->n; i++) {
        struct sink *s = set->sinks[i];
        if (s && s->cfg->type->reopen) {
            (void)s->cfg->type->reopen(s);
        }
    }
}

void sinkset_drain(struct sinkset *set)
{
    for (size_t i = 0; i < set->n; i++) {
        struct sink *s = set->sinks[i];
        if (s && !s->draining) {
            s->draining = true;
            if (s->cfg->type->drain) {
                s->cfg->type->drain(s);
            }
        }
    }
}

void sinkset_sync(struct sinkset *set)
{
    for (size_t i = 0; i < set->n; i++) {
        struct sink *s = set->sinks[i];
        if (s && s->cfg->type->sync) {
            (void)s->cfg->type->sync(s);
        }
    }
}

void sinkset_finish(struct sinkset *set, usec_t deadline)
{
    for (size_t i = 0; i < set->n; i++) {
        struct sink *s = set->sinks[i];
        if (!s) {
            continue;
        }
        ev_timer_stop(s->loop, &s->retry_timer);
        if (s->head && s->cfg->type->finish) {
            s->cfg->type->finish(s, deadline);
        }
        if (s->cfg->type->sync) {
            (void)s->cfg->type->sync(s);
        }
        uint64_t n = 0;
        while (s->head) {
            q_pop(s, false);
            s->c.dropped++;
            s->c.abandoned++;
            n++;
        }
        s->locked = 0;
        if (n) {
            log_sink(LOG_ERR, s->name, "%llu record%s still queued when the sink closed %s lost%s%s%s",
                     (unsigned long long)n, n == 1 ? "" : "s", n == 1 ? "is" : "are",
                     s->problem[0] ? " (" : "", s->problem, s->problem[0] ? ")" : "");
        }
    }
}

bool sinkset_xfer_done(struct sinkset *set, void *easy, int curl_code)
{
    for (size_t i = 0; i < set->n; i++) {
        struct sink *s = set->sinks[i];
        if (s && s->cfg->type->xfer_done && s->cfg->type->xfer_done(s, easy, curl_code)) {
            return true;
        }
    }
    return false;
}

void sinkset_close(struct sinkset *set)
{
    for (size_t i = 0; i < set->n; i++) {
        sink_destroy(set, set->sinks ? set->sinks[i] : NULL);
    }
    free(set->sinks);
    set->sinks = NULL;
    set->n = 0;
}

void sinkset_totals(const struct sinkset *set, struct sink_counters *c, uint64_t *queued)
{
    *c = set->closed;
    uint64_t q = 0;
    for (size_t i = 0; i < set->n; i++) {
        const struct sink *s = set->sinks[i];
        if (s) {
            counters_add(c, &s->c);
            q += s->queued + s->held;
        }
    }
    if (queued) {
        *queued = q;
    }
}

const struct sink *sinkset_problem(const struct sinkset *set)
{
    for (size_t i = 0; i < set->n; i++) {
        const struct sink *s = set->sinks[i];
        if (s && s->problem[0]) {
            return s;
        }
    }
    return NULL;
}

void sinkset_summary(struct sinkset *set, usec_t now, usec_t interval, bool force)
{
    if (!force && !set->summary_at) {
        set->summary_at = now + interval; /* the first one after an interval */
        return;
    }
    if (!force && (!interval || now < set->summary_at)) {
        return;
    }
    set->summary_at = now + interval;
    struct sink_counters t;
    uint64_t q;
    sinkset_totals(set, &t, &q);
    uint64_t sig = t.produced * 31 + t.delivered * 7 + t.dropped * 3 + q + t.retried;
    if (!force && sig == set->summary_sig) {
        return; /* nothing happened since the last summary */
    }
    set->summary_sig = sig;
    for (size_t i = 0; i < set->n; i++) {
        const struct sink *s = set->sinks[i];
        if (!s) {
            continue;
        }
        log_sink(LOG_INFO, s->name,
                 "produced %llu, delivered %llu, queued %llu, dropped %llu (overflow %llu, "
                 "failed %llu, abandoned %llu), retried %llu%s%s",
                 (unsigned long long)s->c.produced, (unsigned long long)s->c.delivered,
                 (unsigned long long)s->queued, (unsigned long long)s->c.dropped,
                 (unsigned long long)s->c.overflow, (unsigned long long)s->c.failed,
                 (unsigned long long)s->c.abandoned, (unsigned long long)s->c.retried,
                 s->problem[0] ? "; problem: " : "", s->problem);
    }
}
