/* engine.h - owns the loop, the config, the sinks, the transfer pool and the
 * per-endpoint runtime state; runs fetches on schedule or once.
 */
#pragma once

#include "shard.h"
#include "sink.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config;
struct engine;

struct engine_options {
    bool once;                /* fetch each selected endpoint once, then stop */
    const char *const *only;  /* endpoint names to run (NULL = all enabled) */
    size_t n_only;
    bool progress;            /* --once progress line on stderr */
    const char *state_dir;    /* conditional-request state, or NULL */
    struct shard shard;       /* --shard: overrides the config's "shard" (n == 0: none) */
};

struct engine_stats {
    uint64_t selected;   /* endpoints selected to run */
    uint64_t fetches;    /* completed fetches */
    uint64_t ok;
    uint64_t failed;
    uint64_t skipped;    /* due while the previous fetch still ran */
    uint64_t not_run;    /* --once: never started (interrupted) */
    uint64_t records_lost; /* records sinks could not deliver */
    struct sink_counters sinks; /* all sinks, at exit */
    bool interrupted;    /* stopped by a signal */
    uint64_t fd_deferred; /* transfers deferred for lack of file descriptors */
    /* loop health, in microseconds */
    uint64_t iterations;   /* loop iterations */
    uint64_t busy_p99;     /* time one iteration kept the loop from polling */
    uint64_t busy_max;
    uint64_t trim_max;          /* longest malloc_trim(), usec */
    uint64_t timer_runs;   /* daemon schedule timers fired */
    uint64_t lateness_p50; /* timer firing time minus its due time */
    uint64_t lateness_p99;
    uint64_t lateness_max;
    uint64_t start_lateness_p50; /* due time -> transfer started (queueing included) */
    uint64_t start_lateness_p99;
    uint64_t start_lateness_max;
};

/* ---- introspection and control (the control socket, metrics) ----------- */

#define ENGINE_LAT_BUCKETS 12
/* Upper bounds (seconds) of the fetch duration histogram buckets. */
extern const double engine_lat_bounds[ENGINE_LAT_BUCKETS];

struct engine_ep_info {
    const char *name;
    const char *state;        /* "ok", "failing", "backing off", "paused", "new" */
    bool running;             /* a fetch (or its retry wait) is under way */
    long last_status;         /* HTTP status of the last fetch, 0 if none */
    const char *last_error;   /* error kind of the last fetch, NULL if ok or none */
    const char *last_message; /* "" if none */
    uint64_t last_duration;   /* usec */
    uint64_t last_fetch;      /* CLOCK_REALTIME usec of the last fetch, 0 if none */
    uint64_t last_ok;         /* ... of the last successful one */
    int64_t next_in;          /* usec until the next scheduled run, -1 if none */
    uint32_t consecutive_failures;
    uint64_t fetches, failures, skipped, records;
    const char *checkpoint;   /* committed checkpoint (JSON text), NULL if none */
    uint64_t last_success;    /* CLOCK_REALTIME usec of the last delivered run
                               * (endpoints with a checkpoint or ${last_success}) */
};

/* Fetch durations of all endpoints: ENGINE_LAT_BUCKETS + 1 counts (per
 * bucket, not cumulative; the last is +Inf), and their sum in usec. */
const uint64_t *engine_latency(const struct engine *e, uint64_t *sum_usec);

/* Endpoints of the current configuration (selected or not). */
size_t engine_n_endpoints(const struct engine *e);
/* Fills *ret for endpoint i; false if i is not run by this instance (not
 * selected: disabled, another shard, not named by --endpoint). */
bool engine_endpoint_info(const struct engine *e, size_t i, struct engine_ep_info *ret);
enum engine_ctl { ENGINE_CTL_FETCH, ENGINE_CTL_PAUSE, ENGINE_CTL_RESUME };
/* Runs name now / pauses / resumes its schedule. Returns 0 or -ENOENT,
 * -EBUSY (fetch: already running), -EALREADY, -ESHUTDOWN (stopping). */
int engine_control(struct engine *e, const char *name, enum engine_ctl op);
/* The current STATUS= line. */
const char *engine_status(struct engine *e);
const struct sinkset *engine_sinks(const struct engine *e);
const struct config *engine_config(const struct engine *e); /* the current one */
struct ev_loop *engine_loop(const struct engine *e);
usec_t engine_uptime(const struct engine *e);

/* Takes ownership of cfg (also on failure). Returns 0 or -errno (logged);
 * the caller has checked that every --endpoint name exists. */
int engine_new(struct engine **ret, struct config *cfg, const struct engine_options *opt);
/* Runs until --once completes or a stop signal; returns 0 or -errno. */
int engine_run(struct engine *e);
void engine_get_stats(const struct engine *e, struct engine_stats *st);
/* Prints "  name: kind" for each endpoint whose last fetch failed
 * (at most max lines). */
void engine_print_failures(const struct engine *e, FILE *f, size_t max);
struct engine *engine_free(struct engine *e);
