/* notify.h - the systemd notification protocol (sd_notify(3)).
 *
 * Every function is a no-op outside systemd (no $NOTIFY_SOCKET) and when
 * fetchd is built without libsystemd. Return values are ignored on purpose,
 * as sd_notify(3) recommends.
 */
#pragma once

#include <stdint.h>

#include "util/time.h"

void notify_ready(const char *status);
void notify_reloading(void);    /* RELOADING=1 + MONOTONIC_USEC= */
void notify_stopping(void);
void notify_status(const char *status);
void notify_watchdog(void);
void notify_extend_timeout(usec_t usec);
/* The watchdog interval systemd asked for (sd_watchdog_enabled), 0 if none. */
usec_t notify_watchdog_usec(void);
