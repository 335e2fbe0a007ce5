/* cli.c - getopt_long parsing of fetchd's command line. */
#include "cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetchd-build.h"
#include "log.h"

enum {
    OPT_ONCE = 0x100,
    OPT_CHECK_CONFIG,
    OPT_LOG_LEVEL,
    OPT_NO_PROGRESS,
    OPT_LOG_TARGET,
    OPT_STATE_DIR,
    OPT_SHARD,
    OPT_CONTROL,
};

void cli_print_help(const char *argv0)
{
    printf("Usage: %s [OPTIONS]\n"
           "Fetch JSON HTTP APIs concurrently on a schedule and write one JSON record per fetch.\n"
           "\n"
           "  -c, --config FILE     configuration file (default %s);\n"
           "                        drop-ins are read from FILE.d/*.json (FILE without .json)\n"
           "      --once            fetch every endpoint once, concurrently, then exit\n"
           "  -e, --endpoint NAME   only this endpoint (repeatable)\n"
           "      --check-config    validate the configuration, print a summary, exit\n"
           "      --log-level LEVEL error, warning, notice (default), info or debug\n"
           "      --log-target T    auto (default: the journal under systemd), journal, stderr\n"
           "      --no-progress     no progress line on a terminal with --once\n"
           "      --state-dir DIR   keep ETags, checkpoints and last successes across restarts in DIR\n"
           "                        (default $STATE_DIRECTORY, set by systemd's StateDirectory=)\n"
           "      --shard K/N       only the endpoints of instance K of N (see fetchd(8))\n"
           "      --control PATH    control socket (default $RUNTIME_DIRECTORY/control)\n"
           "  -h, --help            show this help\n"
           "  -V, --version         show the version\n"
           "A running fetchd: fetchd status [--json] | fetch|pause|resume NAME | metrics\n"
           "\n"
           "Exit status: 0 all ok; 1 some endpoint failed (--once); 64 usage error;\n"
           "74 a sink lost records; 78 configuration error; 70/71 internal/system error.\n"
           "See fetchd(8) and fetchd.json(5).\n",
           argv0, FETCHD_DEFAULT_CONFIG);
}

void cli_print_version(void)
{
    const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
    printf("fetchd %s (libcurl %s, %s)\n", FETCHD_VERSION, vi->version,
           vi->ssl_version ? vi->ssl_version : "no TLS");
}

int cli_parse(int argc, char **argv, struct cli_args *args, char *err, size_t errlen)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"once", no_argument, NULL, OPT_ONCE},
        {"endpoint", required_argument, NULL, 'e'},
        {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
        {"log-target", required_argument, NULL, OPT_LOG_TARGET},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"shard", required_argument, NULL, OPT_SHARD},
        {"control", required_argument, NULL, OPT_CONTROL},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0},
    };
    memset(args, 0, sizeof(*args));
    args->config = FETCHD_DEFAULT_CONFIG;
    args->log_level = LOG_NOTICE;
    args->log_target = LOG_TARGET_AUTO;
    args->progress = true;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":c:e:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            args->config = optarg;
            break;
        case OPT_ONCE:
            args->once = true;
            break;
        case 'e': {
            const char **n = realloc(args->only, (args->n_only + 1) * sizeof(char *));
            if (!n) {
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
            }
            args->only = n;
            args->only[args->n_only++] = optarg;
            break;
        }
        case OPT_CHECK_CONFIG:
            args->check_config = true;
            break;
        case OPT_LOG_LEVEL: {
            int l = log_parse_level(optarg);
            if (l < 0) {
                snprintf(err, errlen,
                         "--log-level: unknown level \"%s\" (use error, warning, notice, info or debug)",
                         optarg);
                return -EINVAL;
            }
            args->log_level = l;
            break;
        }
        case OPT_NO_PROGRESS:
            args->progress = false;
            break;
        case OPT_LOG_TARGET: {
            int t = log_parse_target(optarg);
            if (t < 0) {
                snprintf(err, errlen, "--log-target: unknown target \"%s\" (use auto, journal or stderr)",
                         optarg);
                return -EINVAL;
            }
            args->log_target = t;
            break;
        }
        case OPT_STATE_DIR:
            if (!*optarg) {
                snprintf(err, errlen, "--state-dir: the directory is empty");
                return -EINVAL;
            }
            args->state_dir = optarg;
            break;
        case OPT_CONTROL:
            if (!*optarg) {
                snprintf(err, errlen, "--control: the path is empty");
                return -EINVAL;
            }
            args->control = optarg;
            break;
        case OPT_SHARD:
            if (shard_parse(optarg, &args->shard) < 0) {
                snprintf(err, errlen,
                         "--shard: expected K/N (instance K of N, 1 <= K <= N <= 1024), got \"%s\"",
                         optarg);
                return -EINVAL;
            }
            break;
        case 'h':
            args->help = true;
            break;
        case 'V':
            args->version = true;
            break;
        case ':':
            snprintf(err, errlen, "option %s needs an argument", argv[optind - 1]);
            return -EINVAL;
        default:
            if (optopt) {
                snprintf(err, errlen, "unknown option -%c (try --help)", optopt);
            } else {
                snprintf(err, errlen, "unknown option %s (try --help)", argv[optind - 1]);
            }
            return -EINVAL;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument \"%s\" (try --help)", argv[optind]);
        return -EINVAL;
    }
    const char *env = getenv("STATE_DIRECTORY");
    if (!args->state_dir && env && *env) {
        /* systemd: several directories are separated by ':' */
        args->state_dir_env = strndup(env, strcspn(env, ":"));
        if (!args->state_dir_env) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        args->state_dir = args->state_dir_env;
    }
    return 0;
}

void cli_args_done(struct cli_args *args)
{
    free(args->only);
    args->only = NULL;
    free(args->state_dir_env);
    args->state_dir_env = NULL;
    args->n_only = 0;
}
