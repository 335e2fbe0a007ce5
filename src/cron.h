/* cron.h - calendar schedules: five-field cron expressions in a time zone.
 *
 * Non-logging: cron_parse() returns 0, -EINVAL (with a message in err) or
 * -ENOMEM; cron_next() returns 0, -ERANGE or -ENOMEM.
 *
 * (In these comments "* /n" stands for a star followed by "/n", which would
 * end the comment.)
 *
 * Syntax: "MIN HOUR DOM MON DOW", fields separated by blanks. Each field is a
 * comma-separated list of
 *     *        every value            a-b      a range (a <= b)
 *     a        one value              a-b/n    every n-th value from a to b
 *     * /n     every n-th value       a/n      every n-th value from a to the
 *                                               field's maximum
 * with MIN 0-59, HOUR 0-23, DOM 1-31, MON 1-12 or jan..dec, DOW 0-7 or
 * sun..sat (0 and 7 are Sunday). Names are case-insensitive; the step n is
 * 1 up to the field's maximum. "* /n" in DOW steps through 0-6. The macros
 * @hourly ("0 * * * *"), @daily and @midnight ("0 0 * * *"), @weekly
 * ("0 0 * * 0"), @monthly ("0 0 1 * *"), @yearly and @annually
 * ("0 0 1 1 *") stand alone. @reboot is not a calendar schedule and is
 * rejected.
 *
 * Day of month and day of week (the Vixie cron rule): when both fields are
 * restricted, a day matches if EITHER matches ("0 0 13 * fri" runs on every
 * 13th and on every Friday). A field whose text starts with "*" ("*" or
 * "* /n") counts as unrestricted; then a day must match BOTH fields, so with
 * a plain "*" only the other field restricts ("0 0 * /2 * mon" runs on the
 * odd days of the month that are Mondays, as in Vixie cron and cronie).
 *
 * Time zones: the schedule is computed on the wall clock of its zone (an
 * IANA name from /usr/share/zoneinfo) or of the process's local zone.
 * Around daylight-saving changes:
 *   - A wall time that does not exist (spring forward, e.g. 02:30 in
 *     Europe/Berlin on 2026-03-29): a schedule with restricted hours runs
 *     once at the first instant after the gap (03:00) instead; if several
 *     skipped times match, or 03:00 matches too, that is still one run.
 *     A schedule whose hour field covers all 24 hours ("* /15 * * * *",
 *     "30 * * * *") skips the missing times instead: its next run comes at
 *     the next matching wall time after the gap, which keeps it periodic in
 *     real time ("5 * * * *" runs at 01:05 and 03:05, not also at 03:00).
 *   - A wall time that occurs twice (fall back, e.g. 02:30 in Europe/Berlin
 *     on 2026-10-25): a schedule with restricted hours runs once, at the
 *     first occurrence; a schedule whose hour field covers all 24 hours runs
 *     in both passes, so "* /15 * * * *" keeps firing every 15 minutes of
 *     real time.
 * This follows Vixie cron's "wildcard" and "fixed-time" jobs, except that
 * only the hour field decides here (Vixie also counts a "*" minute), so
 * "* /15 2 * * *" is fixed-time. Changes of any size are handled the same
 * way (30 minutes on Lord Howe Island, a whole skipped day in Samoa in 2011).
 *
 * Threads: cron_next() with a zone other than the local one sets the TZ
 * environment variable around its computation (glibc has no per-call zone)
 * and restores it before it returns. That is only safe while no other thread
 * reads the environment or the local time zone; fetchd is single-threaded
 * (libcurl's resolver threads read neither).
 */
#pragma once

#include <stddef.h>
#include <time.h>

struct cron;

/* Parses expr; tz is a zone name such as "Europe/Berlin" or "UTC" (it must
 * name a TZif file under /usr/share/zoneinfo; "..", a leading "/" and
 * characters outside [A-Za-z0-9._+-/] are rejected) or NULL for the
 * process's local zone at the time of each cron_next() call (as of the last
 * tzset(), as with localtime_r(): a change of TZ needs a tzset()). On
 * success stores a new schedule in *ret; on failure leaves *ret alone and,
 * when err is not NULL, writes a message such as "field 2 (hour): 24 is out
 * of range 0-23" into err (errlen bytes, truncated). */
int cron_parse(const char *expr, const char *tz, struct cron **ret, char *err, size_t errlen);

/* Checks that tz names a zone as cron_parse() does and stores ":<path of its
 * TZif file>", a value for the TZ variable, in *ret_env (malloc'd). Returns 0,
 * -EINVAL (reason in err) or -ENOMEM. */
int cron_zone_env(const char *tz, char **ret_env, char *err, size_t errlen);

/* Frees c (NULL is fine); returns NULL. */
struct cron *cron_free(struct cron *c);

/* Stores in *ret the first instant strictly after `after` at which the
 * schedule fires. Returns 0, -ERANGE when it does not fire within 1830 days
 * (about five years) after `after` ("0 0 30 2 *") or `after` is outside
 * the years 1 to 9989, -EINVAL for NULL arguments, or -ENOMEM (copying
 * TZ); *ret is only written on success.
 *
 * Not const: a schedule with a zone caches that zone's UTC offsets about
 * nine weeks ahead, so that most calls touch neither TZ nor the zone file
 * (a tzdata update reaches a running schedule when its cache runs out). A
 * call takes about 0.1 us with a warm cache, about 1 us for the local zone,
 * and a few tens of us when it has to read the zone file. */
int cron_next(struct cron *c, time_t after, time_t *ret);
