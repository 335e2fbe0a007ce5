/* plugin.c - the dlopen() loader of external sinks (see plugin.h). */
#include "plugin.h"

#include "fetchd-build.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef FETCHD_PLUGIN_DIR
#define FETCHD_PLUGIN_DIR "/usr/local/lib/fetchd/sinks"
#endif

/* process-wide, like the registry of built-in types */
static struct plugin *plugins;

const char *plugin_dir(void)
{
    const char *d = getenv("FETCHD_PLUGIN_DIR");
    return d && *d ? d : FETCHD_PLUGIN_DIR;
}

static char *plugin_resolve(const char *spec)
{
    if (strchr(spec, '/')) {
        return strdup(spec);
    }
    size_t n = strlen(spec);
    bool has_so = n > 3 && strcmp(spec + n - 3, ".so") == 0;
    const char *dir = plugin_dir();
    size_t len = strlen(dir) + 1 + n + 4;
    char *p = malloc(len);
    if (p) {
        snprintf(p, len, "%s/%s%s", dir, spec, has_so ? "" : ".so");
    }
    return p;
}

const struct plugin *plugin_load(const char *spec, char *err, size_t errlen)
{
    char *path = plugin_resolve(spec);
    if (!path) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (struct plugin *p = plugins; p; p = p->next) {
        if (strcmp(p->path, path) == 0) {
            free(path);
            return p;
        }
    }
    struct stat st;
    if (stat(path, &st) < 0) {
        snprintf(err, errlen, "plugin \"%s\" cannot be found (%s)%s", path, strerror(errno),
                 strchr(spec, '/') ? "" : "; set \"path\" to the .so file, or put it in the "
                                          "plugin directory ($FETCHD_PLUGIN_DIR)");
        free(path);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "plugin \"%s\" is not a regular file", path);
        free(path);
        return NULL;
    }
    if (st.st_mode & S_IWOTH) {
        snprintf(err, errlen,
                 "plugin \"%s\" is writable by every user, refusing to load it (chmod o-w)",
                 path);
        free(path);
        return NULL;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(err, errlen, "plugin \"%s\" cannot be loaded: %s", path, e ? e : "dlopen failed");
        free(path);
        return NULL;
    }
    (void)dlerror();
    const struct fetchd_sink_def *def = dlsym(h, FETCHD_SINK_SYMBOL);
    const char *why = NULL;
    char buf[200];
    if (!def) {
        why = "it does not export the symbol " FETCHD_SINK_SYMBOL
              " (is it a fetchd sink? see fetchd-sink(3))";
    } else if (def->abi != FETCHD_SINK_ABI) {
        snprintf(buf, sizeof(buf),
                 "it was built for sink ABI %u, this fetchd speaks ABI %u; rebuild it against "
                 "this fetchd's <fetchd/sink.h>",
                 def->abi, (unsigned)FETCHD_SINK_ABI);
        why = buf;
    } else if (def->size < offsetof(struct fetchd_sink_def, close) + sizeof(def->close)) {
        snprintf(buf, sizeof(buf),
                 "its definition's size is %zu, smaller than ABI %u's %zu (set .size = "
                 "sizeof(struct fetchd_sink_def))",
                 def->size, (unsigned)FETCHD_SINK_ABI,
                 offsetof(struct fetchd_sink_def, close) + sizeof(def->close));
        why = buf;
    } else if (!def->init || !def->deliver) {
        why = "its definition has no init or no deliver callback";
    }
    if (why) {
        snprintf(err, errlen, "plugin \"%s\": %s", path, why);
        dlclose(h);
        free(path);
        return NULL;
    }
    struct plugin *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        dlclose(h);
        free(path);
        return NULL;
    }
    p->path = path;
    p->handle = h;
    p->def = def;
    p->next = plugins;
    plugins = p;
    return p;
}

void plugin_unload_all(void)
{
    while (plugins) {
        struct plugin *p = plugins;
        plugins = p->next;
        dlclose(p->handle);
        free(p->path);
        free(p);
    }
}
