/* main.c - parse arguments, load the config, run the engine, map the result
 * to an exit status. Everything else lives in the fetchd-core library. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <fetchd/exit-status.h>

#include "cli.h"
#include "config.h"
#include "control.h"
#include "ctl.h"
#include "engine.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"

static int run(const struct cli_args *args)
{
    struct config *cfg = NULL;
    struct config_errors errs = {0};
    int r = config_load(args->config, &cfg, &errs);
    if (r < 0) {
        /* through the logger: under systemd these are journal entries at
         * priority err, so journalctl -p err shows why a start failed */
        for (size_t i = 0; i < errs.n; i++) {
            log_error("%s", errs.msgs[i]);
        }
        if (errs.dropped) {
            log_error("... and %zu more errors", errs.dropped);
        }
        config_errors_done(&errs);
        if (r == -ENOMEM) {
            log_error("out of memory loading %s", args->config);
            return FETCHD_EXIT_SOFTWARE;
        }
        log_error("configuration invalid, nothing was run (exit status 78)");
        return FETCHD_EXIT_CONFIG;
    }
    for (size_t i = 0; i < args->n_only; i++) {
        if (!config_find_endpoint(cfg, args->only[i])) {
            log_error("--endpoint '%s': no such endpoint in %s", args->only[i], args->config);
            config_free(cfg);
            return FETCHD_EXIT_USAGE;
        }
    }
    if (args->check_config) {
        config_print_summary(cfg, stdout);
        config_free(cfg);
        return FETCHD_EXIT_OK;
    }

    struct engine_options opt = {
        .once = args->once,
        .only = args->only,
        .n_only = args->n_only,
        .progress = args->progress && isatty(STDERR_FILENO),
        .state_dir = args->state_dir,
        .shard = args->shard,
    };
    struct engine *e = NULL;
    r = engine_new(&e, cfg, &opt);
    if (r < 0) {
        log_error("cannot start: %s", r == -ENOMEM ? "out of memory" : strerror(-r));
        return r == -ENOMEM ? FETCHD_EXIT_SOFTWARE : FETCHD_EXIT_OSERR;
    }
    /* the control socket (daemon mode): --control, or the runtime directory
     * systemd made; and the metrics textfile, if configured */
    struct control *ctl = NULL;
    char cpath[4096];
    const char *control = args->control;
    if (!control && !args->once) {
        control = ctl_default_path(cpath, sizeof(cpath));
    }
    if (control) {
        char err[512];
        r = control_open(&ctl, e, control, err, sizeof(err));
        if (r < 0) {
            log_error("%s", err);
            engine_free(e);
            return r == -ENOMEM ? FETCHD_EXIT_SOFTWARE : FETCHD_EXIT_OSERR;
        }
    }
    struct metrics_writer mw;
    metrics_writer_start(&mw, e);
    r = engine_run(e);
    metrics_writer_stop(&mw);
    ctl = control_close(ctl);
    struct engine_stats st;
    engine_get_stats(e, &st);
    int status = FETCHD_EXIT_OK;
    if (r < 0) {
        log_error("stopped: %s", strerror(-r));
        status = FETCHD_EXIT_SOFTWARE;
    } else if (st.records_lost || st.sinks.sync_errors) {
        if (st.records_lost) {
            log_error("%llu record%s could not be written to a sink",
                      (unsigned long long)st.records_lost, st.records_lost == 1 ? "" : "s");
        }
        if (st.sinks.sync_errors) {
            log_error("%llu fsync%s failed: records may have been lost",
                      (unsigned long long)st.sinks.sync_errors,
                      st.sinks.sync_errors == 1 ? "" : "s");
        }
        status = FETCHD_EXIT_IOERR;
    } else if (args->once && (st.failed || st.not_run)) {
        status = FETCHD_EXIT_FETCH_FAILED;
    }
    log_tick(true);
    if (!args->once) {
        struct log_fields lf = LOG_FIELDS_INIT;
        lf.event = LOG_EV_STOPPED;
        log_full(LOG_NOTICE, &lf,
                 "stopped: %llu fetches, %llu failed, %llu skipped (previous fetch still running)",
                 (unsigned long long)st.fetches, (unsigned long long)st.failed,
                 (unsigned long long)st.skipped);
        log_info("timer lateness over %llu runs: p50 %.3f ms, p99 %.3f ms, max %.3f ms",
                 (unsigned long long)st.timer_runs, st.lateness_p50 / 1e3, st.lateness_p99 / 1e3,
                 st.lateness_max / 1e3);
        log_info("start lateness (due to started): p50 %.3f ms, p99 %.3f ms, max %.3f ms",
                 st.start_lateness_p50 / 1e3, st.start_lateness_p99 / 1e3,
                 st.start_lateness_max / 1e3);
    }
    if (st.fd_deferred) {
        log_notice("transfers were deferred %llu time%s for lack of a file descriptor (see the "
                   "file descriptor limit above)",
                   (unsigned long long)st.fd_deferred, st.fd_deferred == 1 ? "" : "s");
    }
    log_info("loop: %llu iterations, busy p99 %.3f ms, max %.3f ms; heap trim max %.3f ms",
             (unsigned long long)st.iterations, st.busy_p99 / 1e3, st.busy_max / 1e3,
             st.trim_max / 1e3);
    if (args->once) {
        if (st.failed) {
            fprintf(stderr, "fetchd: %llu of %llu endpoint%s failed:\n",
                    (unsigned long long)st.failed, (unsigned long long)st.selected,
                    st.selected == 1 ? "" : "s");
            engine_print_failures(e, stderr, 20);
        }
        if (st.not_run) {
            fprintf(stderr, "fetchd: interrupted: %llu endpoint%s not fetched\n",
                    (unsigned long long)st.not_run, st.not_run == 1 ? "" : "s");
        }
    }
    engine_free(e);
    return status;
}

/* fds 0-2 closed at start-up would be reused by the event loop or a sink
 * (records written into epoll's fd): they get /dev/null. */
static void main_fill_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
            if (n >= 0 && n != fd) {
                (void)dup2(n, fd);
                close(n);
            }
        }
    }
}

/* Defined only in the test build tests/fetchd-failalloc (allocation
 * failure injection, tests/helpers/failalloc.c); NULL here. */
extern void main_test_setup(void) __attribute__((weak));

int main(int argc, char **argv)
{
    if (main_test_setup) {
        main_test_setup();
    }
    main_fill_std_fds();
    if (argc > 1 && ctl_is_command(argv[1])) {
        return ctl_main(argc, argv); /* a client of a running fetchd */
    }
    struct cli_args args;
    char err[512];
    /* a closed pipe must be an EPIPE on that write, never a dead daemon */
    signal(SIGPIPE, SIG_IGN);
    /* A SIGHUP (reload) or SIGTERM arriving while the config loads must
     * wait for the loop, not kill the process with the default action:
     * block them now; the engine unblocks them once its watchers run, and
     * a signal that arrived meanwhile is then delivered. */
    sigset_t early;
    sigemptyset(&early);
    sigaddset(&early, SIGHUP);
    sigaddset(&early, SIGTERM);
    sigaddset(&early, SIGINT);
    sigprocmask(SIG_BLOCK, &early, NULL);
    log_setup(LOG_TARGET_AUTO);
    if (cli_parse(argc, argv, &args, err, sizeof(err)) < 0) {
        log_error("%s", err);
        cli_args_done(&args);
        return FETCHD_EXIT_USAGE;
    }
    if (args.help || args.version) {
        if (args.help) {
            cli_print_help(argv[0]);
        } else {
            cli_print_version();
        }
        cli_args_done(&args);
        return FETCHD_EXIT_OK;
    }
    log_setup(args.log_target);
    log_set_level(args.log_level);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "fetchd: libcurl initialisation failed\n");
        cli_args_done(&args);
        return FETCHD_EXIT_SOFTWARE;
    }
    int status = run(&args);
    log_done();
    plugin_unload_all(); /* after every sink closed */
    curl_global_cleanup();
    cli_args_done(&args);
    return status;
}
