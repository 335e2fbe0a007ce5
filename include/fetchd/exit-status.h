/* fetchd/exit-status.h - exit statuses of fetchd(8), for programs that run it.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef FETCHD_EXIT_STATUS_H
#define FETCHD_EXIT_STATUS_H

#define FETCHD_EXIT_OK 0           /* every fetch succeeded (--once), or a clean stop */
#define FETCHD_EXIT_FETCH_FAILED 1 /* --once: at least one endpoint failed */
#define FETCHD_EXIT_USAGE 64       /* bad command line (EX_USAGE) */
#define FETCHD_EXIT_UNAVAILABLE 69 /* fetchd status etc.: no fetchd answers (EX_UNAVAILABLE) */
#define FETCHD_EXIT_SOFTWARE 70    /* internal error, e.g. out of memory (EX_SOFTWARE) */
#define FETCHD_EXIT_OSERR 71       /* the system refused a resource (EX_OSERR) */
#define FETCHD_EXIT_IOERR 74       /* a sink lost records (EX_IOERR) */
#define FETCHD_EXIT_CONFIG 78      /* configuration error; nothing ran (EX_CONFIG) */

#endif
