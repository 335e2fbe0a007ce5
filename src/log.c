/* log.c - leveled logging to stderr with sd-daemon priority prefixes. */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static int log_level = LOG_NOTICE;
static bool log_journal_stream;
static void (*log_before_write)(void); /* e.g. clears a progress line */

static const char *const level_names[8] = {"emerg", "alert", "crit",  "error",
                                           "warning", "notice", "info", "debug"};

void log_setup(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long long dev, ino;
    log_journal_stream = false;
    if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
        (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino) {
        log_journal_stream = true;
    }
}

void log_set_level(int level)
{
    log_level = level;
}

int log_get_level(void)
{
    return log_level;
}

const char *log_level_name(int level)
{
    return level >= 0 && level < 8 ? level_names[level] : "?";
}

int log_parse_level(const char *s)
{
    for (int i = 0; i < 8; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            return i;
        }
    }
    if (strcasecmp(s, "err") == 0) {
        return LOG_ERR;
    }
    if (strcasecmp(s, "warn") == 0) {
        return LOG_WARNING;
    }
    if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0') {
        return s[0] - '0';
    }
    return -EINVAL;
}

static void log_write(int prio, const char *prefix, const char *fmt, va_list ap)
{
    char line[4096];
    int n;
    int saved = errno;
    if (log_journal_stream) {
        n = snprintf(line, sizeof(line), "<%d>%s", prio, prefix);
    } else {
        n = snprintf(line, sizeof(line), "fetchd: %s: %s", log_level_name(prio), prefix);
    }
    if (n < 0 || (size_t)n >= sizeof(line)) {
        n = 0;
    }
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2; /* truncated */
    }
    /* one line: newlines inside a message would split it in the journal */
    for (size_t i = 0; i < len; i++) {
        if (line[i] == '\n' || line[i] == '\r') {
            line[i] = ' ';
        }
    }
    line[len++] = '\n';
    if (log_before_write) {
        log_before_write();
    }
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
    errno = saved;
}

void log_vmsg(int prio, const char *fmt, va_list ap)
{
    if (prio > log_level) {
        return;
    }
    log_write(prio, "", fmt, ap);
}

void log_msg(int prio, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(prio, fmt, ap);
    va_end(ap);
}

void log_endpoint(int prio, const char *endpoint, const char *fmt, ...)
{
    if (prio > log_level) {
        return;
    }
    char prefix[300];
    snprintf(prefix, sizeof(prefix), "endpoint '%.256s': ", endpoint);
    va_list ap;
    va_start(ap, fmt);
    log_write(prio, prefix, fmt, ap);
    va_end(ap);
}

void log_set_before_write(void (*fn)(void))
{
    log_before_write = fn;
}
