/* plugin.h - the dlopen() loader of external sinks (include/fetchd/sink.h).
 *
 * A plugin is loaded once per process, when a configuration first names it,
 * and stays loaded until plugin_unload_all() at exit (a reload may name it
 * again; its code must not go away under an instance that is still open).
 * Non-logging: errors go to the caller's buffer.
 */
#pragma once

#include <stddef.h>

#include "fetchd/sink.h"

struct plugin {
    char *path;                       /* owned; as resolved */
    void *handle;                     /* dlopen() handle */
    const struct fetchd_sink_def *def; /* inside the plugin */
    struct plugin *next;
};

/* The directory bare plugin names are looked up in: $FETCHD_PLUGIN_DIR or
 * the compiled-in default (LIBDIR/fetchd/sinks). */
const char *plugin_dir(void);
/* Loads the plugin named by spec: a path (containing '/'), or a bare name
 * looked up as DIR/NAME.so. Checks the file (exists, regular, not writable
 * by everyone), the symbol fetchd_sink_definition, the ABI number and the
 * callbacks. Returns the plugin, or NULL with a reason in err. */
const struct plugin *plugin_load(const char *spec, char *err, size_t errlen);
/* Unloads every plugin (at exit, after every sink closed). */
void plugin_unload_all(void);
