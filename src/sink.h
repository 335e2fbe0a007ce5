/* sink.h - sink types, sink instances, their queues and record dispatch
 * (internal; the public plugin ABI is include/fetchd/sink.h).
 *
 * Every sink instance has a bounded FIFO queue owned by the host (sink.c).
 * dispatch appends a record to the queue of each sink of the endpoint that
 * takes it (overflow policy applied); once per loop iteration the host calls
 * the type's deliver(), which takes records from the head and reports what
 * became of them with sink_ack() (delivered), sink_fail() (lost, counted) or
 * sink_retry() (stay queued, try again after a backoff), or sink_wait() (an
 * fd or a transfer is pending; the sink calls sink_ready() later). So for
 * every sink, always:
 *
 *     delivered + dropped + queued == produced
 *
 * Adding a sink type is adding a file under sinks/ and one line in sink.c's
 * registry.
 */
#pragma once

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"
#include "util/time.h"

struct ev_loop;
struct http;
struct plugin;

enum opt_type {
    OPT_STRING,
    OPT_PATH,
    OPT_BOOL,
    OPT_SIZE,
    OPT_DURATION,
    OPT_UINT,
    OPT_STRINGS, /* an array of strings; values->list, values->u = count */
};

struct opt_def {
    const char *key;
    enum opt_type type;
    bool required;
    const char *help;       /* one line, for --check-config and errors */
    const char *const *one_of; /* OPT_STRING: the allowed values, NULL-terminated */
};

struct opt_value {
    bool set;
    const char *s;          /* OPT_STRING, OPT_PATH (owned by the config arena) */
    uint64_t u;             /* OPT_SIZE, OPT_UINT; usec for OPT_DURATION */
    bool b;
    const char *const *list; /* OPT_STRINGS (arena) */
};

/* Which records a sink takes. */
enum sink_take { SINK_TAKE_ALL, SINK_TAKE_OK, SINK_TAKE_ERRORS };
/* What a full queue does with a new record. */
enum sink_overflow { SINK_DROP_OLDEST, SINK_DROP_NEWEST, SINK_PAUSE };

#define SINK_DEFAULT_QUEUE_RECORDS 10000
#define SINK_DEFAULT_QUEUE_BYTES (16u * 1024 * 1024)
#define SINK_DEFAULT_BACKOFF (1 * USEC_PER_SEC)
#define SINK_DEFAULT_MAX_BACKOFF (60 * USEC_PER_SEC)

struct sink_cfg;
struct sink;
struct sink_item;

struct sink_type {
    const char *name;
    const char *description;
    const char *guarantee;          /* one line: the delivery guarantee */
    const struct opt_def *options;  /* terminated by {0} */
    /* Extra load-time validation (e.g. the directory exists). Writes a reason
     * into err and returns -errno on failure. Optional. */
    int (*check)(const struct sink_cfg *cfg, char *err, size_t errlen);
    /* Opens the sink; s->priv is the sink's own. Returns 0 or -errno and a
     * reason in err. */
    int (*open)(struct sink *s, char *err, size_t errlen);
    /* Takes records from the head of the queue (sink_head) and reports them
     * with sink_ack / sink_fail / sink_retry / sink_wait. Called when the
     * queue is not empty and the sink is neither waiting nor backing off. */
    void (*deliver)(struct sink *s);
    /* A durability point (fsync for files): at stop, at a reload, and every
     * flush_interval while records flow. Optional. Returns 0 or -errno. */
    int (*sync)(struct sink *s);
    /* s->draining was just set: stop waiting for a fuller batch. Optional. */
    void (*drain)(struct sink *s);
    /* SIGHUP: reopen files (log rotation). Optional. */
    int (*reopen)(struct sink *s);
    /* At exit, after the loop stopped: deliver what can be delivered before
     * deadline (CLOCK_MONOTONIC) without the loop; may block until then.
     * Whatever is still queued afterwards is counted as lost. Optional. */
    void (*finish)(struct sink *s, usec_t deadline);
    /* The queue is full: the sink may keep the record elsewhere (the http
     * sink's spool) and return 0, counting it in s->held; or return -ENOBUFS
     * and the overflow policy applies. Optional. */
    int (*overflow)(struct sink *s, const struct sink_item *it);
    /* The http sink: a transfer of the shared multi handle finished. Returns
     * false if easy is not this sink's. Optional. */
    bool (*xfer_done)(struct sink *s, void *easy, int curl_code);
    void (*close)(struct sink *s);
};

struct sink_cfg {
    const char *name;                   /* arena */
    const struct sink_type *type;       /* static */
    struct opt_value *values;           /* arena; one per type->options row */
    enum sink_take take;
    enum sink_overflow overflow;
    bool overflow_set;                  /* "overflow" was given */
    uint64_t max_records, max_bytes;    /* the queue's bounds */
    usec_t backoff, max_backoff;        /* retry delays (full jitter) */
    /* "plugin" sinks */
    const struct plugin *plugin;        /* process-wide, see plugin.h */
    const char **plugin_opts;           /* arena; key, value, key, value... */
    size_t n_plugin_opts;               /* pairs */
    const char *canon;                  /* arena; the definition's JSON, for reload */
    bool implicit;                      /* the built-in "stdout" nobody defined */
    bool used;                          /* referenced by an endpoint */
};

/* A delivery ticket: tells its issuer (the engine, for an endpoint with a
 * checkpoint) when every copy of a set of records has left every sink's
 * queue, and whether every copy was delivered. Each queued copy holds a
 * reference, the issuer one more until it has dispatched the last record.
 * A copy that is dropped (overflow, failure, out of memory), abandoned at
 * exit, or handed to a spool (not delivered by this process) marks the
 * ticket failed. */
struct sink_ticket {
    uint32_t refs;
    bool failed;
    /* refs reached 0. Runs inside sink code (an ack, a drop): it may only
     * record state. */
    void (*done)(struct sink_ticket *t, bool delivered);
};

/* Drops one reference; ok false marks the ticket failed. */
void sink_ticket_put(struct sink_ticket *t, bool ok);

/* One queued record: the serialised line and what a sink may want to know
 * without parsing it. */
struct sink_rec {
    struct sink_rec *next;
    struct sink_ticket *ticket; /* or NULL */
    uint32_t len;           /* line bytes, including the '\n' */
    uint32_t data_off;      /* the "data" member's value inside line */
    uint32_t data_len;      /* 0: none */
    uint8_t error;          /* enum record_error */
    long http_status;
    usec_t fetched_at;      /* CLOCK_REALTIME */
    const char *endpoint;   /* points behind line (copied) */
    char line[];
};

/* The fields of a record that dispatch copies into the queue. */
struct sink_item {
    const char *line;
    size_t len;
    const char *endpoint;
    enum record_error error;
    long http_status;
    usec_t fetched_at;
    size_t data_off, data_len; /* data_len 0: none */
    struct sink_ticket *ticket; /* or NULL */
};

enum sink_state {
    SINK_READY,   /* deliver() is called when records are queued */
    SINK_WAITING, /* the sink waits for an fd or a transfer */
    SINK_BACKOFF, /* the retry timer runs */
};

struct sink_counters {
    uint64_t produced;  /* records routed to the sink */
    uint64_t delivered; /* taken by the sink (written, acknowledged) */
    uint64_t dropped;   /* lost for any reason: overflow + failed + abandoned */
    uint64_t failed;    /* of dropped: rejected or failed permanently */
    uint64_t overflow;  /* of dropped: the queue was full */
    uint64_t abandoned; /* of dropped: still queued when fetchd exited */
    uint64_t retried;   /* delivery attempts that will be retried */
    uint64_t sync_errors; /* failed durability points (fsync): possible loss */
};

struct sink {
    const struct sink_cfg *cfg; /* borrowed from the config that opened it */
    const char *name;           /* == cfg->name */
    struct ev_loop *loop;       /* borrowed */
    struct http *http;          /* borrowed: the shared multi handle */
    const char *state_dir;      /* borrowed, or NULL */
    void *priv;                 /* owned by the sink type */
    /* the queue */
    struct sink_rec *head, *tail;
    uint64_t queued, queued_bytes;
    uint32_t locked;            /* head records in the sink's hands */
    uint64_t held;              /* records the sink keeps outside the queue
                                 * (spool); they count as queued */
    struct sink_counters c;
    enum sink_state state;
    bool paused;                /* overflow "pause" and full */
    unsigned backoff_step;
    ev_timer retry_timer;
    int last_error;             /* -errno of the current problem, 0 if none */
    char problem[160];          /* what is wrong right now, "" if nothing */
    usec_t problem_since;       /* CLOCK_MONOTONIC */
    bool problem_logged;
    uint64_t drops_logged;      /* s->c.dropped at the last drop message */
    usec_t drop_log_at;         /* CLOCK_MONOTONIC: next drop message */
    bool unpaused;              /* left "paused" since the engine last looked */
    bool once;                  /* fetchd --once */
    bool draining;              /* fetchd is stopping (or --once is done
                                 * fetching): no waiting for fuller batches */
    bool delivering;            /* inside the type's deliver() from sink_enqueue */
};

const struct sink_type *sink_type_find(const char *name);
/* Comma-separated list of sink type names, for error messages. */
const char *sink_type_names(void);

/* ---- for sink types -------------------------------------------------------- */

static inline struct sink_rec *sink_head(struct sink *s)
{
    return s->head;
}
/* The first n head records were delivered. */
void sink_ack(struct sink *s, size_t n);
/* The first n head records are lost (permanent failure, counted); err is
 * -errno or 0, why says what happened (logged, rate-limited). */
void sink_fail(struct sink *s, size_t n, int err, const char *why);
/* Delivery failed for now: keep everything, try again after delay (0: the
 * sink's exponential backoff). err and why describe the problem (logged once
 * until it clears, shown in STATUS). */
void sink_retry(struct sink *s, usec_t delay, int err, const char *why);
/* The sink waits for an fd or a transfer; the first locked head records are
 * in its hands (drop_oldest skips them). */
void sink_wait(struct sink *s, uint32_t locked);
/* Moves the first n head records out of the queue into the sink's own
 * keeping (s->held grows by n; e.g. written to a spool at exit). */
void sink_hold(struct sink *s, size_t n);
/* Puts a record the sink held back at the tail of the queue (s->held
 * shrinks by one; no bound is checked: the sink refills only when there is
 * room). Returns 0 or -ENOMEM (the record is then counted lost). */
int sink_unhold(struct sink *s, const struct sink_item *it);
/* Records restored from a previous run (the spool) enter as produced and
 * held. */
void sink_restored(struct sink *s, uint64_t n);
/* The wait is over: deliver() runs again on the next loop iteration. */
void sink_ready(struct sink *s);
/* A problem that did not stop delivery cleared (e.g. the disk has space
 * again): logs the recovery once. Called by sink_ack too. */
void sink_recovered(struct sink *s);

/* ---- the set of open sinks --------------------------------------------------- */

struct sinkset {
    struct sink **sinks;        /* owned; parallel to config->sinks, NULL if unused */
    size_t n;
    struct sink_counters closed; /* counters of sinks a reload closed */
    struct ev_loop *loop;
    struct http *http;          /* borrowed */
    const char *state_dir;      /* borrowed */
    bool once;                  /* fetchd --once: default overflow is pause */
    usec_t summary_at;          /* CLOCK_MONOTONIC: next periodic summary */
    uint64_t summary_sig;       /* counters at the last summary */
};

struct config;
struct endpoint_cfg;

/* Prepares an empty set (borrowed http and state_dir may be NULL). */
void sinkset_init(struct sinkset *set, struct ev_loop *loop, struct http *http,
                  const char *state_dir);
/* Opens every sink some endpoint uses. On failure logs which sink failed and
 * why, closes what was opened and returns -errno. */
int sinkset_open(struct sinkset *set, const struct config *cfg);
/* Queues a record for each sink of the endpoint that takes it. Returns the
 * number of sinks that dropped it (0 = all queued). */
unsigned sinkset_dispatch(struct sinkset *set, const struct endpoint_cfg *ep,
                          const struct sink_item *it);
/* Queues a record for the sink at index i (if open). Returns 0, -ENOENT (no
 * such sink) or -ENOBUFS (dropped). */
int sinkset_write(struct sinkset *set, size_t i, const struct sink_item *it);
/* True if a paused sink accepts records again since the last call. */
bool sinkset_take_unpaused(struct sinkset *set);
/* True if a sink of ep is paused (overflow "pause" and its queue is full). */
bool sinkset_paused(const struct sinkset *set, const struct endpoint_cfg *ep);
/* Opens the sinks of cfg that some selected endpoint uses into a new set,
 * taking over instances from old whose definition is unchanged (with their
 * queues; file sinks reopen their path). On success the instances left in
 * old are drained as far as possible and closed, and old is emptied. On
 * failure nothing changes and -errno is returned (logged). */
int sinkset_reopen(struct sinkset *set, const struct config *cfg, struct sinkset *old,
                   const struct config *old_cfg);
/* Runs deliver() of every ready sink with queued records; called once per
 * loop iteration. Returns true if a ready sink still has records (the loop
 * must not block: more on the next iteration). */
bool sinkset_deliver(struct sinkset *set);
/* SIGHUP without a config change: every sink reopens (log rotation). */
void sinkset_rotate(struct sinkset *set);
/* fetchd is stopping, or --once has nothing left to fetch: sinks send what
 * they hold without waiting to batch more, and the sinks that are waiting
 * for a batch to fill are woken. */
void sinkset_drain(struct sinkset *set);
/* Durability point for every sink (sync). */
void sinkset_sync(struct sinkset *set);
/* Last delivery at exit (see sink_type.finish), then counts what is still
 * queued as abandoned and logs it. */
void sinkset_finish(struct sinkset *set, usec_t deadline);
/* The http sink's transfers: true if a sink took the finished transfer. */
bool sinkset_xfer_done(struct sinkset *set, void *easy, int curl_code);
void sinkset_close(struct sinkset *set);
/* Sums of all sinks' counters (closed ones included). */
void sinkset_totals(const struct sinkset *set, struct sink_counters *c, uint64_t *queued);
/* The first sink with a current problem, or NULL. */
const struct sink *sinkset_problem(const struct sinkset *set);
/* Logs one line per sink whose counters changed, at most every interval. */
void sinkset_summary(struct sinkset *set, usec_t now, usec_t interval, bool force);

/* Common option keys of every sink (parsed by config.c). */
extern const struct opt_def sink_common_options[];
enum {
    SINK_OPT_RECORDS,
    SINK_OPT_QUEUE_RECORDS,
    SINK_OPT_QUEUE_BYTES,
    SINK_OPT_OVERFLOW,
    SINK_OPT_BACKOFF,
    SINK_OPT_MAX_BACKOFF,
    _SINK_OPT_MAX,
};

extern const struct sink_type sink_type_stdout;
extern const struct sink_type sink_type_file;
extern const struct sink_type sink_type_journal;
extern const struct sink_type sink_type_exec;
extern const struct sink_type sink_type_http;
extern const struct sink_type sink_type_plugin;
