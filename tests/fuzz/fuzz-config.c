/* fuzz-config.c - the configuration loader, config_load() (src/config.h).
 *
 * Input: the text of fetchd.json. It is written to a memfd and loaded as
 * /proc/self/fd/N (no drop-in directory can exist for that name).
 *
 * config_load() checks the files a configuration names: TLS files and
 * secrets are opened for reading (O_NONBLOCK), sink paths and programs are
 * stat()ed, and a "plugin" sink is dlopen()ed. It writes nothing. To keep
 * the target harmless it skips, before loading, any input whose JSON
 * contains a string "plugin" (no code from arbitrary paths runs) or a
 * string mentioning dev, proc or sys (no open() of a device such as a
 * watchdog, relative paths included).
 *
 * Properties:
 *  - 0 with a config and no errors, or -EINVAL with 1..CONFIG_MAX_ERRORS
 *    messages (plus a dropped count), each "path:line:col: ..." or
 *    "path: ..." for this file, one line without control characters (they
 *    reach terminals, the journal and sd_notify STATUS= after a reload);
 *  - a loaded config is consistent: every endpoint is found by its name,
 *    its sink indices are in range, every endpoint and sink is equal to
 *    itself (config_endpoint_equal / config_sink_equal: what a reload uses
 *    to keep state) and to the same entry of a second load of the same
 *    text (an unchanged file must keep everything on reload);
 *  - config_print_summary() works on it.
 */
#define _GNU_SOURCE
#include <cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

static int memfd = -1;
static char path[64];
static FILE *devnull;

static bool unsafe_string(const char *s)
{
    return strcmp(s, "plugin") == 0 || strstr(s, "dev") || strstr(s, "proc") || strstr(s, "sys");
}

/* True if any string (value or key) in the tree is one the target avoids. */
static bool unsafe_tree(const cJSON *n)
{
    for (; n; n = n->next) {
        if ((n->string && unsafe_string(n->string)) ||
            (cJSON_IsString(n) && n->valuestring && unsafe_string(n->valuestring))) {
            return true;
        }
        if (n->child && unsafe_tree(n->child)) {
            return true;
        }
    }
    return false;
}

static void check_errors(const struct config_errors *errs)
{
    FUZZ_CHECK(errs->n >= 1 && errs->n <= CONFIG_MAX_ERRORS);
    size_t pl = strlen(path);
    for (size_t i = 0; i < errs->n; i++) {
        const char *m = errs->msgs[i];
        FUZZ_CHECK(m && strncmp(m, path, pl) == 0 && m[pl] == ':' && m[pl + 1]);
        /* one line, no control characters (terminals, journal, STATUS=) */
        for (const char *c = m; *c; c++) {
            FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
        }
    }
}

static void check_config(const struct config *cfg, const struct config *again)
{
    FUZZ_CHECK(cfg->n_endpoints >= 1);
    FUZZ_CHECK(again->n_endpoints == cfg->n_endpoints && again->n_sinks == cfg->n_sinks);
    for (size_t i = 0; i < cfg->n_endpoints; i++) {
        const struct endpoint_cfg *ep = &cfg->endpoints[i];
        FUZZ_CHECK(ep->name && ep->url && ep->url_redacted && ep->method && ep->x);
        FUZZ_CHECK(config_find_endpoint(cfg, ep->name) == ep);
        for (uint32_t j = 0; j < ep->n_sinks; j++) {
            FUZZ_CHECK(ep->sinks[j] < cfg->n_sinks);
        }
        FUZZ_CHECK(config_endpoint_equal(cfg, ep, cfg, ep));
        FUZZ_CHECK(config_endpoint_equal(cfg, ep, again, &again->endpoints[i]));
    }
    for (size_t i = 0; i < cfg->n_sinks; i++) {
        FUZZ_CHECK(config_sink_index(cfg, cfg->sinks[i].name) == (int)i);
        FUZZ_CHECK(config_sink_equal(&cfg->sinks[i], &cfg->sinks[i]));
        FUZZ_CHECK(config_sink_equal(&cfg->sinks[i], &again->sinks[i]));
    }
    if (devnull) {
        config_print_summary(cfg, devnull);
    }
}

static int load(struct config **cfg, struct config_errors *errs)
{
    *errs = (struct config_errors){0};
    *cfg = NULL;
    int r = config_load(path, cfg, errs);
    FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
    if (r == 0) {
        FUZZ_CHECK(*cfg && errs->n == 0 && errs->dropped == 0);
    } else {
        FUZZ_CHECK(*cfg == NULL);
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024) {
        return 0;
    }
    cJSON *root = cJSON_ParseWithLength((const char *)data, size);
    bool unsafe = root && unsafe_tree(root);
    cJSON_Delete(root);
    if (unsafe) {
        return 0;
    }
    if (memfd < 0) {
        memfd = memfd_create("fuzz-config", MFD_CLOEXEC);
        FUZZ_CHECK(memfd >= 0);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
        devnull = fopen("/dev/null", "we");
        /* no credentials, no plugin directory from the caller's environment */
        unsetenv("CREDENTIALS_DIRECTORY");
        setenv("FETCHD_PLUGIN_DIR", "/nonexistent", 1);
    }
    FUZZ_CHECK(ftruncate(memfd, 0) == 0);
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(memfd, data + done, size - done, (off_t)done);
        FUZZ_CHECK(n > 0);
        done += (size_t)n;
    }

    struct config *cfg, *again;
    struct config_errors errs, errs2;
    int r = load(&cfg, &errs);
    if (r == -EINVAL) {
        check_errors(&errs);
    }
    if (r == 0) {
        int r2 = load(&again, &errs2);
        if (r2 == 0) {
            check_config(cfg, again);
        }
        FUZZ_CHECK(r2 == 0 || r2 == -ENOMEM);
        config_free(again);
        config_errors_done(&errs2);
    }
    config_free(cfg);
    config_errors_done(&errs);
    return 0;
}
