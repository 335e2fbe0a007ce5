/* sink.c - the registry of sink types, and record dispatch. */
#include "sink.h"

#include <errno.h>
#include <stdbool.h>
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

int sinkset_open(struct sinkset *set, const struct config *cfg, struct ev_loop *loop)
{
    return sinkset_reopen(set, cfg, NULL, NULL, loop);
}

int sinkset_write(struct sinkset *set, size_t i, const char *line, size_t len)
{
    struct sink *s = i < set->n ? set->sinks[i] : NULL;
    if (!s) {
        return -ENOENT;
    }
    int r = s->cfg->type->write(s, line, len);
    if (r < 0) {
        s->last_error = r;
    } else {
        s->records++;
    }
    return r;
}

int sinkset_reopen(struct sinkset *set, const struct config *cfg, struct sinkset *old,
                   const struct config *old_cfg, struct ev_loop *loop)
{
    struct sinkset n = {.n = cfg->n_sinks};
    n.sinks = calloc(n.n ? n.n : 1, sizeof(struct sink *));
    bool *taken = old ? calloc(old->n ? old->n : 1, sizeof(bool)) : NULL;
    if (!n.sinks || (old && !taken)) {
        free(n.sinks);
        free(taken);
        return -ENOMEM;
    }
    int r = 0;
    for (size_t i = 0; i < cfg->n_sinks && r == 0; i++) {
        const struct sink_cfg *sc = &cfg->sinks[i];
        if (!sc->used) {
            continue;
        }
        int oi = old_cfg ? config_sink_index(old_cfg, sc->name) : -1;
        if (oi >= 0 && old->sinks[oi] && config_sink_equal(&old_cfg->sinks[oi], sc)) {
            /* same definition: keep the instance (no lost buffer, no
             * reopen of stdout), files are reopened by path */
            n.sinks[i] = old->sinks[oi];
            taken[oi] = true;
            continue;
        }
        struct sink *s = calloc(1, sizeof(*s));
        if (!s) {
            r = -ENOMEM;
            break;
        }
        s->cfg = sc;
        s->name = sc->name;
        s->loop = loop;
        char err[512] = "";
        r = sc->type->open(s, err, sizeof(err));
        if (r < 0) {
            log_sink(LOG_ERR, sc->name, "(%s) %s", sc->type->name, *err ? err : strerror(-r));
            free(s);
            break;
        }
        n.sinks[i] = s;
    }
    if (r < 0) {
        /* undo: close what was opened, leave the taken-over ones alone */
        for (size_t i = 0; i < n.n; i++) {
            int oi = old_cfg && n.sinks[i] ? config_sink_index(old_cfg, cfg->sinks[i].name) : -1;
            if (n.sinks[i] && !(oi >= 0 && taken[oi] && old->sinks[oi] == n.sinks[i])) {
                n.sinks[i]->cfg->type->close(n.sinks[i]);
                free(n.sinks[i]);
            }
        }
        free(n.sinks);
        free(taken);
        return r;
    }
    /* commit: taken-over instances now belong to the new config */
    for (size_t i = 0; i < n.n; i++) {
        struct sink *s = n.sinks[i];
        int oi = old_cfg && s ? config_sink_index(old_cfg, cfg->sinks[i].name) : -1;
        if (s && oi >= 0 && taken[oi] && old->sinks[oi] == s) {
            s->cfg = &cfg->sinks[i];
            s->name = cfg->sinks[i].name;
            old->sinks[oi] = NULL;
            if (s->cfg->type->reopen) {
                (void)s->cfg->type->reopen(s);
            }
        }
    }
    if (old) {
        (void)sinkset_flush(old, true);
        n.dropped_closed = sinkset_dropped(old);
        sinkset_close(old);
    }
    free(taken);
    *set = n;
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
    uint64_t d = set->dropped_closed;
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
