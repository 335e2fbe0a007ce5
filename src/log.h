/* log.h - fetchd's logging: priorities as in syslog(3).
 *
 * Output goes to stderr as one write() per line. When stderr is connected to
 * the journal (JOURNAL_STREAM names stderr's device:inode, as systemd sets it
 * for services), each line starts with an sd-daemon "<N>" priority prefix so
 * journald stores the real priority; otherwise lines read
 * "fetchd: warning: ...".
 */
#pragma once

#include <stdarg.h>
#include <syslog.h>

void log_setup(void);
void log_set_level(int level);
int log_get_level(void);
/* Parses error|warning|notice|info|debug (or 3..7); returns -EINVAL. */
int log_parse_level(const char *s);
const char *log_level_name(int level);

void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(int prio, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Same, but about one endpoint: "endpoint 'NAME': ...". */
void log_endpoint(int prio, const char *endpoint, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Called before every log line (the --once progress line uses it to clear
 * itself). NULL to remove. */
void log_set_before_write(void (*fn)(void));

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

static inline int log_enabled(int prio)
{
    return prio <= log_get_level();
}
