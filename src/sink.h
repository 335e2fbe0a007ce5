/* sink.h - sink types, sink instances and record dispatch (internal).
 *
 * A sink type is a const table of callbacks plus the options it accepts;
 * adding a sink is adding a file under sinks/ and one line in sink.c's
 * registry. The public, versioned plugin ABI is a separate header.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/time.h"

struct ev_loop;
struct record;

enum opt_type {
    OPT_STRING,
    OPT_PATH,
    OPT_BOOL,
    OPT_SIZE,
    OPT_DURATION,
    OPT_UINT,
};

struct opt_def {
    const char *key;
    enum opt_type type;
    bool required;
    const char *help; /* one line, for --check-config and errors */
};

struct opt_value {
    bool set;
    const char *s; /* OPT_STRING, OPT_PATH (owned by the config arena) */
    uint64_t u;    /* OPT_SIZE, OPT_UINT; usec for OPT_DURATION */
    bool b;
};

struct sink_cfg;
struct sink;

struct sink_type {
    const char *name;
    const char *description;
    const struct opt_def *options; /* terminated by {0} */
    /* Extra load-time validation (e.g. the directory exists). Writes a reason
     * into err and returns -errno on failure. Optional. */
    int (*check)(const struct sink_cfg *cfg, char *err, size_t errlen);
    /* Opens the sink; s->priv is the sink's own. Returns 0 or -errno and a
     * reason in err. */
    int (*open)(struct sink *s, char *err, size_t errlen);
    /* Takes one serialised record (a whole line ending in '\n'). May buffer.
     * Returns 0, or -errno when the record was not accepted (counted as
     * dropped by the caller). */
    int (*write)(struct sink *s, const char *line, size_t len);
    /* Pushes buffered data out; called once per loop iteration and at stop.
     * With block=true it may block (used only at exit). Returns 0 or -errno. */
    int (*flush)(struct sink *s, bool block);
    /* Reopens files (log rotation). Optional. */
    int (*reopen)(struct sink *s);
    void (*close)(struct sink *s);
};

struct sink_cfg {
    const char *name;                   /* arena */
    const struct sink_type *type;       /* static */
    struct opt_value *values;           /* arena; one per type->options row */
    bool implicit;                      /* the built-in "stdout" nobody defined */
    bool used;                          /* referenced by an endpoint */
};

struct sink {
    const struct sink_cfg *cfg; /* borrowed from the config that opened it */
    const char *name;           /* == cfg->name */
    struct ev_loop *loop;       /* borrowed */
    void *priv;                 /* owned by the sink type */
    uint64_t records;           /* records accepted */
    uint64_t dropped;           /* records lost (write errors, overflow) */
    uint64_t errors;            /* write/flush errors */
    int last_error;             /* -errno of the last error, 0 if none */
};

const struct sink_type *sink_type_find(const char *name);
/* Comma-separated list of sink type names, for error messages. */
const char *sink_type_names(void);

struct sinkset {
    struct sink **sinks; /* owned; parallel to config->sinks, NULL if unused */
    size_t n;
    uint64_t dropped_closed; /* drops of sinks a reload closed: still counted */
};

struct config;
struct endpoint_cfg;

/* Opens every sink some endpoint uses. On failure logs which sink failed and
 * why, closes what was opened and returns -errno. */
int sinkset_open(struct sinkset *set, const struct config *cfg, struct ev_loop *loop);
/* Hands a serialised record to each sink of the endpoint. Returns the number
 * of sinks that did not accept it (0 = all fine). */
unsigned sinkset_dispatch(struct sinkset *set, const struct endpoint_cfg *ep, const char *line,
                          size_t len);
/* Hands a record to the sink at index i (if open). Returns 0 or -errno. */
int sinkset_write(struct sinkset *set, size_t i, const char *line, size_t len);
/* Opens the sinks of cfg that some selected endpoint uses into a new set,
 * taking over instances from old (which may be NULL) whose definition is
 * unchanged (file sinks reopen their path: log rotation with "create").
 * On success the instances left in old are flushed and closed, and old is
 * emptied. On failure nothing changes and -errno is returned (logged). */
int sinkset_reopen(struct sinkset *set, const struct config *cfg, struct sinkset *old,
                   const struct config *old_cfg, struct ev_loop *loop);
/* Flushes all sinks. Returns the number of sinks that failed. */
unsigned sinkset_flush(struct sinkset *set, bool block);
void sinkset_close(struct sinkset *set);
uint64_t sinkset_dropped(const struct sinkset *set);

extern const struct sink_type sink_type_stdout;
extern const struct sink_type sink_type_file;
