/* notify.c - sd_notify wrappers. */
#include "notify.h"

#include <stdio.h>

#include "fetchd-build.h"

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

void notify_ready(const char *status)
{
    (void)sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void notify_reloading(void)
{
    /* MONOTONIC_USEC is what Type=notify-reload (systemd >= 253) waits for;
     * systemd 252 ignores the unknown assignment */
    (void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
                     (unsigned long long)now_usec(CLOCK_MONOTONIC));
}

void notify_stopping(void)
{
    (void)sd_notify(0, "STOPPING=1");
}

void notify_status(const char *status)
{
    (void)sd_notifyf(0, "STATUS=%s", status);
}

void notify_watchdog(void)
{
    (void)sd_notify(0, "WATCHDOG=1");
}

void notify_extend_timeout(usec_t usec)
{
    (void)sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
}

usec_t notify_watchdog_usec(void)
{
    uint64_t u = 0;
    /* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID is unset or ours */
    if (sd_watchdog_enabled(0, &u) > 0) {
        return u;
    }
    return 0;
}

#else

void notify_ready(const char *status)
{
    (void)status;
}
void notify_reloading(void)
{
}
void notify_stopping(void)
{
}
void notify_status(const char *status)
{
    (void)status;
}
void notify_watchdog(void)
{
}
void notify_extend_timeout(usec_t usec)
{
    (void)usec;
}
usec_t notify_watchdog_usec(void)
{
    return 0;
}

#endif
