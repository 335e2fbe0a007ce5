/* ctl.h - the client side of the control socket: "fetchd status",
 * "fetchd fetch NAME", "fetchd pause NAME", "fetchd resume NAME",
 * "fetchd metrics". */
#pragma once

#include <stdbool.h>

/* Whether argv[1] is one of the commands above. */
bool ctl_is_command(const char *arg);
/* Runs the command; returns the exit status: 0, 1 (the daemon refused:
 * unknown endpoint, already paused...), 64 (usage), 69 (no fetchd listens
 * at the control socket), 70 (out of memory, a malformed answer). */
int ctl_main(int argc, char **argv);

/* The control socket when none is given: $RUNTIME_DIRECTORY/control
 * (systemd's RuntimeDirectory=, first entry) into buf, or NULL. */
const char *ctl_default_path(char *buf, unsigned len);
