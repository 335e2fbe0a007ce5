/* sink-pedantic.c - <fetchd/sink.h> is plain C99 and its ABI is frozen.
 *
 * Compiled as part of the build with -std=c99 -pedantic -Wall -Wextra
 * -Werror (tests/abi/meson.build), so that a header change that needs a GNU
 * extension, a later C standard or another header first breaks the build.
 * The header is the first include: it must compile alone. It is included
 * twice: the include guard must work.
 *
 * It also keeps a frozen copy of the ABI 1 structures and checks at compile
 * time that every field is still where plugins built against ABI 1 expect
 * it: a change that moves a field, changes a type's size or a constant
 * without raising FETCHD_SINK_ABI fails here. Fields may be added at the
 * end of struct fetchd_record and struct fetchd_sink_host (they carry a
 * size), so those two may grow; the others must not change at all.
 */
#include <fetchd/sink.h>
#include <fetchd/sink.h>

#include <stddef.h>
#include <stdint.h>

/* C99 has no _Static_assert: a negative array size is the error */
#define ABI_CHECK(name, cond) typedef char abi_check_##name[(cond) ? 1 : -1]

#if FETCHD_SINK_ABI != 1
#error "FETCHD_SINK_ABI changed: update the frozen copy below (and fetchd-sink(3))"
#endif

ABI_CHECK(ok, FETCHD_SINK_OK == 0);
ABI_CHECK(retry, FETCHD_SINK_RETRY == 1);
ABI_CHECK(log_err, FETCHD_LOG_ERR == 3);
ABI_CHECK(log_warning, FETCHD_LOG_WARNING == 4);
ABI_CHECK(log_notice, FETCHD_LOG_NOTICE == 5);
ABI_CHECK(log_info, FETCHD_LOG_INFO == 6);
ABI_CHECK(log_debug, FETCHD_LOG_DEBUG == 7);
ABI_CHECK(symbol, sizeof(FETCHD_SINK_SYMBOL) == sizeof("fetchd_sink_definition"));

/* ---- ABI 1 as released: never edit, only add a copy for ABI 2 ---------- */

struct abi1_record {
    size_t size;
    const char *endpoint;
    int ok;
    const char *error_kind;
    long http_status;
    int64_t fetched_at_usec;
    const char *json;
    size_t json_len;
    const char *data;
    size_t data_len;
};

struct abi1_option {
    const char *key;
    const char *help;
    int required;
};

struct abi1_host {
    size_t size;
    unsigned abi;
    const char *name;
    const char *state_dir;
    void (*log)(const struct abi1_host *host, int priority, const char *fmt, ...);
    const char *(*option)(const struct abi1_host *host, const char *key);
    void *host_private;
};

struct abi1_def {
    unsigned abi;
    size_t size;
    const char *name;
    const char *description;
    const struct abi1_option *options;
    int (*init)(const struct abi1_host *host, void **ret_ctx);
    int (*deliver)(void *ctx, const struct abi1_record *record);
    int (*flush)(void *ctx);
    int (*reopen)(void *ctx);
    void (*close)(void *ctx);
};

#define SAME_FIELD(a, b, f)                                                                     \
    ABI_CHECK(b##_##f, offsetof(struct a, f) == offsetof(struct b, f) &&                        \
                           sizeof(((struct a *)0)->f) == sizeof(((struct b *)0)->f))

SAME_FIELD(abi1_record, fetchd_record, size);
SAME_FIELD(abi1_record, fetchd_record, endpoint);
SAME_FIELD(abi1_record, fetchd_record, ok);
SAME_FIELD(abi1_record, fetchd_record, error_kind);
SAME_FIELD(abi1_record, fetchd_record, http_status);
SAME_FIELD(abi1_record, fetchd_record, fetched_at_usec);
SAME_FIELD(abi1_record, fetchd_record, json);
SAME_FIELD(abi1_record, fetchd_record, json_len);
SAME_FIELD(abi1_record, fetchd_record, data);
SAME_FIELD(abi1_record, fetchd_record, data_len);
ABI_CHECK(record_grows_only, sizeof(struct fetchd_record) >= sizeof(struct abi1_record));

SAME_FIELD(abi1_option, fetchd_sink_option, key);
SAME_FIELD(abi1_option, fetchd_sink_option, help);
SAME_FIELD(abi1_option, fetchd_sink_option, required);
ABI_CHECK(option_size, sizeof(struct fetchd_sink_option) == sizeof(struct abi1_option));

SAME_FIELD(abi1_host, fetchd_sink_host, size);
SAME_FIELD(abi1_host, fetchd_sink_host, abi);
SAME_FIELD(abi1_host, fetchd_sink_host, name);
SAME_FIELD(abi1_host, fetchd_sink_host, state_dir);
SAME_FIELD(abi1_host, fetchd_sink_host, log);
SAME_FIELD(abi1_host, fetchd_sink_host, option);
SAME_FIELD(abi1_host, fetchd_sink_host, host_private);
ABI_CHECK(host_grows_only, sizeof(struct fetchd_sink_host) >= sizeof(struct abi1_host));

SAME_FIELD(abi1_def, fetchd_sink_def, abi);
SAME_FIELD(abi1_def, fetchd_sink_def, size);
SAME_FIELD(abi1_def, fetchd_sink_def, name);
SAME_FIELD(abi1_def, fetchd_sink_def, description);
SAME_FIELD(abi1_def, fetchd_sink_def, options);
SAME_FIELD(abi1_def, fetchd_sink_def, init);
SAME_FIELD(abi1_def, fetchd_sink_def, deliver);
SAME_FIELD(abi1_def, fetchd_sink_def, flush);
SAME_FIELD(abi1_def, fetchd_sink_def, reopen);
SAME_FIELD(abi1_def, fetchd_sink_def, close);
ABI_CHECK(def_size, sizeof(struct fetchd_sink_def) == sizeof(struct abi1_def));

/* ---- a dummy sink: the callbacks' types must match the header's -------- */

static int dummy_init(const struct fetchd_sink_host *host, void **ret_ctx)
{
    const char *v = host->option(host, "greeting");
    /* the printf attribute must reach host->log: -Wformat checks this call */
    host->log(host, FETCHD_LOG_INFO, "%s %u %s", host->name, host->abi, v ? v : "(none)");
    *ret_ctx = NULL;
    return 0;
}

static int dummy_deliver(void *ctx, const struct fetchd_record *record)
{
    (void)ctx;
    if (record->size < offsetof(struct fetchd_record, data_len) + sizeof(record->data_len)) {
        return -22;
    }
    return record->ok ? FETCHD_SINK_OK : FETCHD_SINK_RETRY;
}

static int dummy_flush(void *ctx)
{
    (void)ctx;
    return 0;
}

static void dummy_close(void *ctx)
{
    (void)ctx;
}

static const struct fetchd_sink_option dummy_options[] = {
    {"greeting", "a word", 0},
    {NULL, NULL, 0},
};

FETCHD_SINK_EXPORT const struct fetchd_sink_def fetchd_sink_definition = {
    FETCHD_SINK_ABI,
    sizeof(struct fetchd_sink_def),
    "dummy",
    "a sink that compiles",
    dummy_options,
    dummy_init,
    dummy_deliver,
    dummy_flush,
    NULL,
    dummy_close,
};
