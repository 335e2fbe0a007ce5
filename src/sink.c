/* sink.c - the registry of sink types, and record dispatch. */
#include "sink.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

/* Built-in sink types. Adding one: a file in sinks/ and a line here. */
static const struct sink_type *const sink_types[] = {
    &sink_type_stdout,
    &sink_type_file,
};

const struct sink_type *sink_type_find(const char *name)
{
    for (size_t i = 0; i < sizeof(sink_types) / sizeof(sink_types[0]); i++) {
        if (strcmp(sink_types[i]->name, name) == 0) {
            return sink_types[i];
        }
    }
    return NULL;
}

const char *sink_type_names(void)
{
    return "stdout, file";
}

const struct opt_value *sink_opt(const struct sink *s, const char *key)
{
    for (size_t i = 0; s->cfg->type->options[i].key; i++) {
        if (strcmp(s->cfg->type->options[i].key, key) == 0) {
            return &s->cfg->values[i];
        }
    }
    return NULL;
}

int sinkset_open(struct sinkset *set, const struct config *cfg, struct ev_loop *loop)
{
    set->n = cfg->n_sinks;
    set->sinks = calloc(set->n ? set->n : 1, sizeof(struct sink *));
    if (!set->sinks) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < cfg->n_sinks; i++) {
        const struct sink_cfg *sc = &cfg->sinks[i];
        if (!sc->used) {
            continue;
        }
        struct sink *s = calloc(1, sizeof(*s));
        if (!s) {
            sinkset_close(set);
            return -ENOMEM;
        }
        s->cfg = sc;
        s->name = sc->name;
        s->loop = loop;
        char err[512] = "";
        int r = sc->type->open(s, err, sizeof(err));
        if (r < 0) {
            log_error("sink '%s' (%s): %s", sc->name, sc->type->name, *err ? err : strerror(-r));
            free(s);
            sinkset_close(set);
            return r;
        }
        set->sinks[i] = s;
    }
    return 0;
}

unsigned sinkset_dispatch(struct sinkset *set, const struct endpoint_cfg *ep, const char *line,
                          size_t len)
{
    unsigned failed = 0;
    for (uint32_t j = 0; j < ep->n_sinks; j++) {
        struct sink *s = set->sinks[ep->sinks[j]];
        if (!s) {
            continue;
        }
        int r = s->cfg->type->write(s, line, len);
        if (r < 0) {
            /* the sink counted the drop itself */
            s->last_error = r;
            failed++;
        } else {
            s->records++;
        }
    }
    return failed;
}

unsigned sinkset_flush(struct sinkset *set, bool block)
{
    unsigned failed = 0;
    for (size_t i = 0; i < set->n; i++) {
        struct sink *s = set->sinks[i];
        if (s && s->cfg->type->flush && s->cfg->type->flush(s, block) < 0) {
            s->errors++;
            failed++;
        }
    }
    return failed;
}

uint64_t sinkset_dropped(const struct sinkset *set)
{
    uint64_t d = 0;
    for (size_t i = 0; i < set->n; i++) {
        if (set->sinks[i]) {
            d += set->sinks[i]->dropped;
        }
    }
    return d;
}

void sinkset_close(struct sinkset *set)
{
    for (size_t i = 0; i < set->n; i++) {
        struct sink *s = set->sinks ? set->sinks[i] : NULL;
        if (s) {
            s->cfg->type->close(s);
            free(s);
        }
    }
    free(set->sinks);
    set->sinks = NULL;
    set->n = 0;
}
