/* checkpoint.c - see checkpoint.h. */
#define _GNU_SOURCE
#include "checkpoint.h"

#include <cJSON.h>
#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jptr.h"
#include "json.h"
#include "log.h"
#include "sink.h"
#include "util/buf.h"
#include "util/file.h"
#include "util/strmap.h"

#define CKPT_SAVE_DELAY 1.0 /* seconds: advances are written at most this often */
#define CKPT_FILE_MAX (64u * 1024 * 1024)

struct ckpt_entry {
    char *name;        /* owned; the key in st->by_name */
    char *pointer;     /* owned; the pointer the value belongs to, or NULL */
    char *json;        /* owned; the committed value's JSON text, or NULL */
    char *text;        /* owned; its template form */
    size_t text_len;
    usec_t last_success;
    usec_t window_end;
    uint64_t seq_next;      /* cycles begun */
    uint64_t seq_committed; /* the newest cycle committed */
    struct ckpt_store *store;
    struct ckpt_entry *next; /* all entries, for saving and freeing */
};

struct ckpt_store {
    struct ev_loop *loop;
    char *path; /* STATE_DIR/checkpoints.json, or NULL */
    struct strmap by_name;
    struct ckpt_entry *list;
    bool dirty;
    int last_error; /* of the last save, to log a change once */
    ev_timer save_timer;
};

struct ckpt_cycle {
    struct sink_ticket ticket; /* first: the ticket's done() finds the cycle */
    struct ckpt_entry *en;
    struct jptr *ptr; /* owned */
    bool keep_max;
    bool ok;
    uint64_t seq;
    usec_t started, window_end;
    char *cand; /* candidate value (JSON text), owned */
    size_t cand_len;
    size_t records, unresolved;
};

/* ---- values ----------------------------------------------------------------- */

enum vkind { V_OTHER, V_NUMBER, V_STRING };

static enum vkind vkind_of(const char *v)
{
    if (*v == '"') {
        return V_STRING;
    }
    if (*v == '-' || (*v >= '0' && *v <= '9')) {
        return V_NUMBER;
    }
    return V_OTHER;
}

/* An integer without fraction or exponent ("-12", "340282366920938463463"). */
static bool is_integer(const char *v, size_t len)
{
    size_t i = v[0] == '-';
    if (i == len) {
        return false;
    }
    for (; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return false;
        }
    }
    return true;
}

/* Compares two JSON numbers: integers of any size exactly (ids beyond 2^53
 * are common), others as doubles. */
static int cmp_numbers(const char *a, size_t alen, const char *b, size_t blen)
{
    if (is_integer(a, alen) && is_integer(b, blen)) {
        bool na = a[0] == '-', nb = b[0] == '-';
        if (na != nb) {
            return na ? -1 : 1;
        }
        /* minified JSON has no leading zeros, so the longer is larger */
        int c = alen != blen ? (alen < blen ? -1 : 1) : memcmp(a, b, alen);
        c = c < 0 ? -1 : c > 0;
        return na ? -c : c;
    }
    char *ea = strndup(a, alen), *eb = strndup(b, blen);
    double da = ea ? strtod(ea, NULL) : 0, db = eb ? strtod(eb, NULL) : 0;
    free(ea);
    free(eb);
    return da < db ? -1 : da > db;
}

/* Compares two strings by their unescaped bytes (ISO 8601 timestamps in
 * one format sort in time order). */
static int cmp_strings(const char *a, size_t alen, const char *b, size_t blen)
{
    struct buf ua = {0}, ub = {0};
    int c = 0;
    if (json_unescape_flags(a, alen, &ua, JSON_UNESCAPE_NUL) == 0 &&
        json_unescape_flags(b, blen, &ub, JSON_UNESCAPE_NUL) == 0) {
        size_t n = ua.len < ub.len ? ua.len : ub.len;
        c = n ? memcmp(ua.data, ub.data, n) : 0;
        c = c ? c : ua.len < ub.len ? -1 : ua.len > ub.len;
    } else {
        size_t n = alen < blen ? alen : blen;
        c = memcmp(a, b, n);
        c = c ? c : alen < blen ? -1 : alen > blen;
    }
    buf_done(&ua);
    buf_done(&ub);
    return c;
}

/* Whether b should replace a as the highest value: only values of the same
 * kind compare; one of another kind never replaces (a checkpoint never
 * moves back; a changed pointer starts over). */
static bool higher(const char *a, size_t alen, const char *b, size_t blen)
{
    enum vkind ka = vkind_of(a), kb = vkind_of(b);
    if (ka != kb) {
        return false;
    }
    return ka == V_NUMBER ? cmp_numbers(a, alen, b, blen) < 0 : cmp_strings(a, alen, b, blen) < 0;
}

/* Sets the committed value (JSON text) and its template text. */
static int entry_set(struct ckpt_entry *en, const char *json, size_t len)
{
    char *j = strndup(json, len);
    struct buf t = {0};
    int r = j ? 0 : -ENOMEM;
    if (r == 0 && vkind_of(j) == V_STRING) {
        r = json_unescape_flags(j, len, &t, JSON_UNESCAPE_NUL);
        if (r == 0 && !t.data) {
            r = buf_puts(&t, ""); /* "" */
        }
    } else if (r == 0) {
        r = buf_append(&t, j, len);
    }
    if (r < 0) {
        free(j);
        buf_done(&t);
        return r;
    }
    free(en->json);
    free(en->text);
    en->json = j;
    en->text_len = t.len;
    en->text = buf_steal(&t);
    return 0;
}

/* ---- the store -------------------------------------------------------------- */

static void store_save_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ckpt_store_flush(w->data);
}

static void store_changed(struct ckpt_store *st)
{
    st->dirty = true;
    if (st->path && st->loop && !ev_is_active(&st->save_timer)) {
        ev_timer_set(&st->save_timer, CKPT_SAVE_DELAY, 0.);
        ev_timer_start(st->loop, &st->save_timer);
    }
}

static struct ckpt_entry *entry_new(struct ckpt_store *st, const char *name)
{
    struct ckpt_entry *en = calloc(1, sizeof(*en));
    if (!en || !(en->name = strdup(name))) {
        free(en);
        return NULL;
    }
    if (strmap_put(&st->by_name, en->name, en, NULL) < 0) {
        free(en->name);
        free(en);
        return NULL;
    }
    en->store = st;
    en->next = st->list;
    st->list = en;
    return en;
}

static void store_load(struct ckpt_store *st)
{
    struct buf b = {0};
    int r = file_read(st->path, CKPT_FILE_MAX, &b);
    if (r == -ENOENT) {
        buf_done(&b);
        return;
    }
    if (r < 0) {
        log_warning("cannot read %s: %s; checkpoints start over (the file is rewritten with the "
                    "next advance)",
                    st->path, strerror(-r));
        buf_done(&b);
        return;
    }
    cJSON *root = b.data ? cJSON_ParseWithLength(b.data, b.len) : NULL;
    buf_done(&b);
    cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "endpoints");
    if (!cJSON_IsObject(eps)) {
        log_warning("%s is not a checkpoint file fetchd wrote (ignored; checkpoints start over)",
                    st->path);
        cJSON_Delete(root);
        return;
    }
    for (const cJSON *o = eps->child; o; o = o->next) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pointer");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "value_json");
        const cJSON *ls = cJSON_GetObjectItemCaseSensitive(o, "last_success_us");
        const cJSON *we = cJSON_GetObjectItemCaseSensitive(o, "window_end_us");
        if (!cJSON_IsObject(o) || !o->string || strmap_get(&st->by_name, o->string)) {
            continue;
        }
        struct ckpt_entry *en = entry_new(st, o->string);
        if (!en) {
            break;
        }
        if (cJSON_IsString(p)) {
            en->pointer = strdup(p->valuestring);
        }
        /* the value: JSON text that fetchd wrote, checked again */
        struct buf m = {0};
        struct json_error je;
        if (cJSON_IsString(v) && strlen(v->valuestring) <= CKPT_MAX_VALUE &&
            json_minify(v->valuestring, strlen(v->valuestring), 64, &m, &je) == 0 && m.len) {
            (void)entry_set(en, m.data, m.len);
        }
        buf_done(&m);
        if (cJSON_IsNumber(ls) && ls->valuedouble > 0 && ls->valuedouble < 1e17) {
            en->last_success = (usec_t)ls->valuedouble;
        }
        if (cJSON_IsNumber(we) && we->valuedouble > 0 && we->valuedouble < 1e17) {
            en->window_end = (usec_t)we->valuedouble;
        }
    }
    cJSON_Delete(root);
}

struct ckpt_store *ckpt_store_new(struct ev_loop *loop, const char *state_dir)
{
    struct ckpt_store *st = calloc(1, sizeof(*st));
    if (!st) {
        return NULL;
    }
    st->loop = loop;
    ev_timer_init(&st->save_timer, store_save_cb, 0., 0.);
    st->save_timer.data = st;
    if (state_dir && asprintf(&st->path, "%s/%s", state_dir, CKPT_FILE) < 0) {
        free(st);
        return NULL;
    }
    if (st->path) {
        store_load(st);
    }
    return st;
}

void ckpt_store_flush(struct ckpt_store *st)
{
    if (!st || !st->dirty || !st->path) {
        return;
    }
    if (st->loop) {
        ev_timer_stop(st->loop, &st->save_timer);
    }
    struct buf b = {0};
    int r = buf_puts(&b, "{\"version\":1,\"endpoints\":{");
    bool first = true;
    for (const struct ckpt_entry *en = st->list; en && r == 0; en = en->next) {
        if (!en->json && !en->last_success && !en->window_end) {
            continue;
        }
        r = buf_puts(&b, first ? "\n" : ",\n");
        first = false;
        r = r < 0 ? r : json_escape_str(&b, en->name);
        r = r < 0 ? r : buf_putc(&b, ':');
        r = r < 0 ? r : buf_putc(&b, '{');
        if (en->pointer) {
            r = r < 0 ? r : buf_puts(&b, "\"pointer\":");
            r = r < 0 ? r : json_escape_str(&b, en->pointer);
            r = r < 0 ? r : buf_putc(&b, ',');
        }
        if (en->json) {
            /* as a string: a reader (cJSON) would round integers above 2^53 */
            r = r < 0 ? r : buf_puts(&b, "\"value_json\":");
            r = r < 0 ? r : json_escape_str(&b, en->json);
            r = r < 0 ? r : buf_putc(&b, ',');
        }
        char ts[32], we[32];
        time_format_rfc3339_ms(en->last_success, ts);
        time_format_rfc3339_ms(en->window_end, we);
        r = r < 0 ? r
                  : buf_printf(&b,
                               "\"last_success_us\":%" PRIu64 ",\"last_success\":\"%s\","
                               "\"window_end_us\":%" PRIu64 ",\"window_end\":\"%s\"}",
                               (uint64_t)en->last_success, en->last_success ? ts : "",
                               (uint64_t)en->window_end, en->window_end ? we : "");
    }
    r = r < 0 ? r : buf_puts(&b, "}}\n");
    if (r == 0) {
        r = file_replace(st->path, b.data, b.len, 0600, true);
    }
    buf_done(&b);
    if (r < 0) {
        if (r != st->last_error) {
            log_error("cannot save checkpoints to %s: %s (kept in memory; trying again)",
                      st->path, strerror(-r));
        }
        st->last_error = r;
        if (st->loop) {
            ev_timer_set(&st->save_timer, 10.0, 0.);
            ev_timer_start(st->loop, &st->save_timer);
        }
        return;
    }
    if (st->last_error) {
        log_notice("checkpoints are saved to %s again", st->path);
    }
    st->last_error = 0;
    st->dirty = false;
}

struct ckpt_store *ckpt_store_free(struct ckpt_store *st)
{
    if (!st) {
        return NULL;
    }
    if (st->loop) {
        ev_timer_stop(st->loop, &st->save_timer);
    }
    st->loop = NULL; /* no timer for a retry any more */
    ckpt_store_flush(st);
    for (struct ckpt_entry *en = st->list, *nx; en; en = nx) {
        nx = en->next;
        free(en->name);
        free(en->pointer);
        free(en->json);
        free(en->text);
        free(en);
    }
    strmap_done(&st->by_name);
    free(st->path);
    free(st);
    return NULL;
}

struct ckpt_entry *ckpt_entry_get(struct ckpt_store *st, const char *name, const char *pointer)
{
    struct ckpt_entry *en = strmap_get(&st->by_name, name);
    if (!en) {
        en = entry_new(st, name);
        if (!en) {
            return NULL;
        }
    }
    bool same = (!pointer && !en->pointer) ||
                (pointer && en->pointer && strcmp(pointer, en->pointer) == 0);
    if (!same) {
        if (en->json && pointer) {
            log_endpoint(LOG_NOTICE, name,
                         "the checkpoint pointer changed (was %s, now %s): the checkpoint starts "
                         "over",
                         en->pointer ? en->pointer : "none", pointer);
        }
        char *np = pointer ? strdup(pointer) : NULL;
        if (pointer && !np) {
            return NULL;
        }
        free(en->pointer);
        en->pointer = np;
        if (en->json) {
            free(en->json);
            free(en->text);
            en->json = en->text = NULL;
            en->text_len = 0;
            store_changed(st);
        }
        en->seq_committed = en->seq_next; /* cycles begun before do not commit */
    }
    return en;
}

struct ckpt_entry *ckpt_entry_find(const struct ckpt_store *st, const char *name)
{
    return st ? strmap_get(&st->by_name, name) : NULL;
}

const char *ckpt_text(const struct ckpt_entry *en, size_t *len)
{
    if (!en || !en->text) {
        return NULL;
    }
    *len = en->text_len;
    return en->text;
}

const char *ckpt_json(const struct ckpt_entry *en)
{
    return en ? en->json : NULL;
}

usec_t ckpt_last_success(const struct ckpt_entry *en)
{
    return en ? en->last_success : 0;
}

usec_t ckpt_window_end(const struct ckpt_entry *en)
{
    return en ? en->window_end : 0;
}

/* ---- cycles ----------------------------------------------------------------- */

static void cycle_free(struct ckpt_cycle *c)
{
    jptr_free(c->ptr);
    free(c->cand);
    free(c);
}

/* Every copy of every record left the sinks. */
static void cycle_done(struct sink_ticket *t, bool delivered)
{
    struct ckpt_cycle *c = (struct ckpt_cycle *)t;
    struct ckpt_entry *en = c->en;
    if (!delivered || !c->ok || c->seq <= en->seq_committed) {
        if (!delivered && c->ok) {
            log_endpoint(LOG_INFO, en->name,
                         "a record of the fetch did not reach every sink: the checkpoint stays "
                         "where it was (the next fetch asks for the same data again)");
        }
        cycle_free(c);
        return;
    }
    en->seq_committed = c->seq;
    en->last_success = c->started;
    if (c->window_end > en->window_end) {
        en->window_end = c->window_end;
    }
    if (c->cand && (!en->json || !c->keep_max ||
                    higher(en->json, strlen(en->json), c->cand, c->cand_len))) {
        if (entry_set(en, c->cand, c->cand_len) < 0) {
            log_endpoint(LOG_ERR, en->name, "out of memory: the checkpoint did not advance");
        }
    }
    store_changed(en->store);
    cycle_free(c);
}

struct ckpt_cycle *ckpt_cycle_begin(struct ckpt_entry *en, const char *pointer, bool keep_max,
                                    usec_t started, usec_t window_end)
{
    struct ckpt_cycle *c = calloc(1, sizeof(*c));
    if (!c) {
        return NULL;
    }
    const char *msg;
    if (pointer && jptr_parse(pointer, &c->ptr, &msg) < 0) {
        free(c);
        return NULL; /* out of memory (the config checked it) */
    }
    c->ticket.refs = 1; /* the issuer's, until ckpt_cycle_end */
    c->ticket.done = cycle_done;
    c->en = en;
    c->keep_max = keep_max;
    c->ok = true;
    c->seq = ++en->seq_next;
    c->started = started;
    c->window_end = window_end;
    return c;
}

struct sink_ticket *ckpt_cycle_ticket(struct ckpt_cycle *c)
{
    return c ? &c->ticket : NULL;
}

void ckpt_cycle_record(struct ckpt_cycle *c, bool ok, const char *data, size_t len)
{
    if (!c) {
        return;
    }
    if (!ok) {
        c->ok = false;
        return;
    }
    if (!c->ptr) {
        return;
    }
    c->records++;
    size_t off, vlen;
    if (!data || !len || jptr_eval(c->ptr, data, len, &off, &vlen, NULL) < 0 ||
        vlen > CKPT_MAX_VALUE) {
        c->unresolved++;
        return;
    }
    const char *v = data + off;
    if ((c->keep_max && vkind_of(v) == V_OTHER) || (vlen == 4 && memcmp(v, "null", 4) == 0)) {
        c->unresolved++; /* null, true, an object: nothing to order (null: no value) */
        return;
    }
    if (c->keep_max && !c->cand && c->en->json && vkind_of(v) != vkind_of(c->en->json)) {
        c->unresolved++; /* another kind than the checkpoint's: never moves it back */
        return;
    }
    if (c->cand && c->keep_max && !higher(c->cand, c->cand_len, v, vlen)) {
        return;
    }
    char *n = strndup(v, vlen);
    if (!n) {
        c->ok = false; /* out of memory: do not advance past this record */
        return;
    }
    free(c->cand);
    c->cand = n;
    c->cand_len = vlen;
}

size_t ckpt_cycle_end(struct ckpt_cycle *c, bool ok, size_t *ret_records)
{
    if (!c) {
        if (ret_records) {
            *ret_records = 0;
        }
        return 0;
    }
    size_t unresolved = c->unresolved;
    if (ret_records) {
        *ret_records = c->records;
    }
    if (!ok) {
        c->ok = false;
    }
    sink_ticket_put(&c->ticket, true); /* may free c */
    return unresolved;
}
