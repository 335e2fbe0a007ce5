/* log.h - fetchd's logging: syslog priorities, structured fields, journald.
 *
 * Targets (--log-target): "journal" sends native journal entries
 * (sd_journal_sendv) with MESSAGE_ID and FETCHD_* fields; "stderr" writes one
 * line per message ("fetchd: warning: ..."), with an sd-daemon "<N>" prefix
 * when stderr is the journal stream; "auto" (default) picks journal when
 * stderr is connected to the journal (JOURNAL_STREAM names stderr's
 * device:inode, as systemd sets it for services) and stderr otherwise.
 *
 * Journal fields (documented in fetchd(8)): FETCHD_EVENT, FETCHD_ENDPOINT,
 * FETCHD_URL (credentials redacted), FETCHD_HTTP_STATUS, FETCHD_CURL_CODE,
 * FETCHD_ERROR_KIND, FETCHD_DURATION_MS, FETCHD_BYTES, FETCHD_SINK, plus
 * MESSAGE_ID (one per event, explained by systemd/fetchd.catalog),
 * PRIORITY, SYSLOG_IDENTIFIER=fetchd and CODE_FILE/CODE_LINE/CODE_FUNC.
 *
 * Flood control: messages about endpoints (down, still failing, recovered,
 * fetch failed) share a budget of LOG_ENDPOINT_BURST per LOG_WINDOW; beyond
 * it they are counted, and log_tick() reports the count once per window.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include "util/time.h"

#define LOG_WINDOW (30 * USEC_PER_SEC)
#define LOG_ENDPOINT_BURST 100

enum log_target {
    LOG_TARGET_AUTO,
    LOG_TARGET_JOURNAL,
    LOG_TARGET_STDERR,
};

enum log_event {
    LOG_EV_NONE,
    LOG_EV_STARTED,
    LOG_EV_RELOADED,
    LOG_EV_RELOAD_FAILED,
    LOG_EV_STOPPING,
    LOG_EV_STOPPED,
    LOG_EV_ENDPOINT_DOWN,
    LOG_EV_ENDPOINT_RECOVERED,
    LOG_EV_ENDPOINT_STILL_FAILING,
    LOG_EV_FETCH_FAILED,
    LOG_EV_LOG_SUPPRESSED,
    LOG_EV_SINK_ERROR,
    LOG_EV_ENDPOINT_BACKOFF,
    _LOG_EV_MAX,
};

/* Optional structured fields; 0 / NULL / -1 mean "absent". */
struct log_fields {
    enum log_event event;
    const char *endpoint;
    const char *url;
    const char *sink;
    const char *error_kind;
    long http_status;
    int curl_code;
    int64_t duration_us;
    int64_t bytes;
};

#define LOG_FIELDS_INIT {.duration_us = -1, .bytes = -1}

void log_setup(enum log_target target);
int log_parse_target(const char *s); /* -EINVAL if unknown */
void log_set_level(int level);
int log_get_level(void);
/* Parses error|warning|notice|info|debug (or 3..7); returns -EINVAL. */
int log_parse_level(const char *s);
const char *log_level_name(int level);
const char *log_event_name(enum log_event e);
const char *log_event_message_id(enum log_event e);

void log_internal(int prio, const struct log_fields *f, const char *file, int line,
                  const char *func, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void log_internalv(int prio, const struct log_fields *f, const char *file, int line,
                   const char *func, const char *fmt, va_list ap)
    __attribute__((format(printf, 6, 0)));

#define log_full(prio, fields, ...)                                                                \
    log_internal((prio), (fields), __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_msg(prio, ...) log_full((prio), NULL, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
/* About one endpoint: "endpoint 'NAME': ..." with FETCHD_ENDPOINT. */
#define log_endpoint(prio, name, ...)                                                              \
    do {                                                                                           \
        struct log_fields _lf = LOG_FIELDS_INIT;                                                   \
        _lf.endpoint = (name);                                                                     \
        log_full((prio), &_lf, __VA_ARGS__);                                                       \
    } while (0)

/* About one sink: "sink 'NAME': ..." with FETCHD_SINK, event sink_error. */
#define log_sink(prio, name, ...)                                                                  \
    do {                                                                                           \
        struct log_fields _lf = LOG_FIELDS_INIT;                                                   \
        _lf.sink = (name);                                                                         \
        _lf.event = LOG_EV_SINK_ERROR;                                                             \
        log_full((prio), &_lf, __VA_ARGS__);                                                       \
    } while (0)

/* Called about once a second: reports suppressed messages when a window
 * ends (force: now, e.g. at exit). */
void log_tick(bool force);

/* At exit: reports own journal messages that were dropped because journald
 * was behind and no later message carried the count, waiting up to half a
 * second for journald. Closes the journal socket. */
void log_done(void);

/* Called before every stderr line (the --once progress line clears itself).
 * NULL to remove. */
void log_set_before_write(void (*fn)(void));
