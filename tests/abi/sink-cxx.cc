/* sink-cxx.cc - <fetchd/sink.h> from C++.
 *
 * Compiled as C++11 with -pedantic -Wall -Wextra -Werror (tests/abi/
 * meson.build) when a C++ compiler is found, as a shared module with
 * hidden symbols: FETCHD_SINK_EXPORT must give the definition C linkage
 * (no mangled name) and default visibility. The integration test
 * (test-sink-plugin.c) loads it into fetchd: it counts the records it
 * takes and logs the count when it is closed.
 *
 * C++ before C++20 has no designated initialisers, so the definition is
 * initialised in the field order of the header.
 */
#include <fetchd/sink.h>

#include <cerrno>
#include <new>

namespace {

struct counter {
    const fetchd_sink_host *host;
    unsigned long records;
    unsigned long bytes;
};

} // namespace

/* The callbacks have C language linkage, as the header's function pointer
 * types do, and internal linkage: only the definition is exported. */
extern "C" {

static int cxx_init(const fetchd_sink_host *host, void **ret_ctx)
{
    counter *c = new (std::nothrow) counter();
    if (!c) {
        return -ENOMEM;
    }
    c->host = host;
    *ret_ctx = c;
    return 0;
}

static int cxx_deliver(void *ctx, const fetchd_record *record)
{
    counter *c = static_cast<counter *>(ctx);
    c->records++;
    c->bytes += record->json_len;
    return FETCHD_SINK_OK;
}

static void cxx_close(void *ctx)
{
    counter *c = static_cast<counter *>(ctx);
    if (!c) {
        return;
    }
    c->host->log(c->host, FETCHD_LOG_NOTICE, "cxx-sink: took %lu records", c->records);
    delete c;
}

} // extern "C"

static const fetchd_sink_option cxx_options[] = {
    {"comment", "ignored", 0},
    {nullptr, nullptr, 0},
};

FETCHD_SINK_EXPORT const fetchd_sink_def fetchd_sink_definition = {
    FETCHD_SINK_ABI,
    sizeof(fetchd_sink_def),
    "cxx-sink",
    "a sink written in C++",
    cxx_options,
    cxx_init,
    cxx_deliver,
    nullptr,
    nullptr,
    cxx_close,
};
