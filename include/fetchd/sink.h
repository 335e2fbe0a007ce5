/* fetchd/sink.h - the fetchd sink plugin ABI.
 *
 * A sink plugin is a shared object that exports one symbol,
 * fetchd_sink_definition, a struct fetchd_sink_def. fetchd dlopen()s it when
 * a configuration names it ({"type": "plugin", "path": "..."}), checks the
 * ABI number and the options, and then drives it from its event loop:
 *
 *   init(host, &ctx)       once, when the sink is opened
 *   deliver(ctx, record)   once per record, in order; returns
 *                          FETCHD_SINK_OK (taken), FETCHD_SINK_RETRY (keep
 *                          it queued and call again after a backoff) or a
 *                          negative errno (the record is lost: counted)
 *   flush(ctx)             when fetchd stops (before close) and at a reload
 *                          that keeps the sink; optional
 *   reopen(ctx)            on SIGHUP (log rotation), after that flush;
 *                          optional
 *   close(ctx)             once, last; must accept NULL; not called after
 *                          a failed init
 *
 * Every call happens on fetchd's single event-loop thread and must not block:
 * while a callback runs nothing is fetched. A sink that cannot take a record
 * now returns FETCHD_SINK_RETRY. The host keeps a bounded queue in front of
 * the sink and counts every record (delivered + dropped + queued ==
 * produced). Records are borrowed: a sink that keeps one copies it.
 *
 * Compatibility: FETCHD_SINK_ABI changes when a struct below changes in an
 * incompatible way; fetchd refuses a plugin built for another number.
 * Fields may be added at the end of struct fetchd_record,
 * struct fetchd_sink_host and struct fetchd_sink_def without a new number:
 * a plugin checks record->size and host->size before reading a field added
 * later, and sets def->size so that the host does the same.
 *
 * This header is C99 and C++ clean and needs nothing but the C library.
 * See fetchd-sink(3).
 */
#ifndef FETCHD_SINK_H
#define FETCHD_SINK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FETCHD_SINK_ABI 1

/* The symbol a plugin exports. */
#define FETCHD_SINK_SYMBOL "fetchd_sink_definition"

/* deliver() results; any negative errno is a permanent failure. */
#define FETCHD_SINK_OK 0
#define FETCHD_SINK_RETRY 1

/* Log priorities (syslog's). */
#define FETCHD_LOG_ERR 3
#define FETCHD_LOG_WARNING 4
#define FETCHD_LOG_NOTICE 5
#define FETCHD_LOG_INFO 6
#define FETCHD_LOG_DEBUG 7

#if defined(__GNUC__) || defined(__clang__)
#define FETCHD_SINK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define FETCHD_SINK_VISIBLE __attribute__((visibility("default")))
#else
#define FETCHD_SINK_PRINTF(a, b)
#define FETCHD_SINK_VISIBLE
#endif

/* Put this before the definition in a plugin:
 *   FETCHD_SINK_EXPORT const struct fetchd_sink_def fetchd_sink_definition = {...};
 */
#ifdef __cplusplus
#define FETCHD_SINK_EXPORT extern "C" FETCHD_SINK_VISIBLE
#else
#define FETCHD_SINK_EXPORT FETCHD_SINK_VISIBLE
#endif

/* One record, borrowed for the duration of deliver(). */
struct fetchd_record {
    size_t size;            /* sizeof(struct fetchd_record) in the host */
    const char *endpoint;   /* the endpoint's name */
    int ok;                 /* 1: the fetch succeeded, 0: an error record */
    const char *error_kind; /* NULL if ok, else "timeout", "http_status"... */
    long http_status;       /* 0 if there was no response */
    int64_t fetched_at_usec;/* CLOCK_REALTIME, microseconds */
    const char *json;       /* the whole record: one JSON object, no newline;
                             * json_len bytes, NOT NUL-terminated */
    size_t json_len;
    const char *data;       /* the document inside json (minified, not
                             * NUL-terminated), or NULL if there is none
                             * (error records, "data": null) */
    size_t data_len;
};

/* An option a plugin accepts under "options" in its sink definition.
 * The table ends with a row whose key is NULL. Unknown keys and missing
 * required ones are configuration errors, reported before anything runs. */
struct fetchd_sink_option {
    const char *key;
    const char *help;       /* one line, shown in errors */
    int required;
};

/* Services of the host, valid from init() to close(), with every string in
 * it and every string option() returns. */
struct fetchd_sink_host {
    size_t size;            /* sizeof(struct fetchd_sink_host) in the host */
    unsigned abi;           /* FETCHD_SINK_ABI of the host */
    const char *name;       /* this sink's name in the configuration */
    const char *state_dir;  /* fetchd's state directory, or NULL */
    /* Logs a message tagged with the sink's name (journal field FETCHD_SINK). */
    void (*log)(const struct fetchd_sink_host *host, int priority, const char *fmt, ...)
        FETCHD_SINK_PRINTF(3, 4);
    /* The value of an option as text (strings as they are, numbers and
     * booleans in their JSON spelling), or NULL if it was not set. */
    const char *(*option)(const struct fetchd_sink_host *host, const char *key);
    void *host_private;     /* fetchd's; do not touch */
};

struct fetchd_sink_def {
    unsigned abi;           /* FETCHD_SINK_ABI */
    size_t size;            /* sizeof(struct fetchd_sink_def): callbacks
                             * added later at the end count as NULL for
                             * a plugin built with a smaller struct */
    const char *name;       /* a short name, for messages */
    const char *description;
    const struct fetchd_sink_option *options; /* or NULL: no options */
    /* Returns 0 and sets *ret_ctx, or a negative errno (the sink does not
     * open: at start fetchd exits, at a reload the reload fails). */
    int (*init)(const struct fetchd_sink_host *host, void **ret_ctx);
    int (*deliver)(void *ctx, const struct fetchd_record *record);
    int (*flush)(void *ctx);
    int (*reopen)(void *ctx);
    void (*close)(void *ctx);
};

#ifdef __cplusplus
}
#endif

#endif /* FETCHD_SINK_H */
