/* cli.h - command line parsing. Non-logging: errors are printed by main. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "shard.h"

struct cli_args {
    const char *config;   /* -c; default FETCHD_DEFAULT_CONFIG */
    bool once;
    bool check_config;
    bool progress;        /* --no-progress clears it */
    int log_level;        /* syslog priority */
    int log_target;       /* enum log_target */
    const char *state_dir; /* --state-dir, else $STATE_DIRECTORY (first entry), or NULL */
    const char **only;    /* owned array (strings borrowed from argv) */
    size_t n_only;
    struct shard shard;   /* --shard K/N; n == 0 without */
    const char *control;  /* --control PATH, or NULL */
    bool help;
    bool version;
    char *state_dir_env;  /* owned copy of $STATE_DIRECTORY's first entry */
};

/* Returns 0, or -EINVAL with a message in err (exit 64). */
int cli_parse(int argc, char **argv, struct cli_args *args, char *err, size_t errlen);
void cli_args_done(struct cli_args *args);
void cli_print_help(const char *argv0);
void cli_print_version(void);
