/* checkpoint.h - incremental checkpoints and last-success times.
 *
 * An endpoint with "checkpoint" names a JSON Pointer; its value in the
 * records of a fetch cycle (the highest, or the last one) becomes the
 * endpoint's checkpoint, which the next request can carry (${checkpoint}).
 * The time a cycle started becomes its last success (${last_success}),
 * and the end of its interval where the next interval starts
 * (${interval_start}).
 *
 * Both advance only when the cycle produced no error record AND every sink
 * delivered every one of its records (a sink_ticket per cycle): a record
 * that was dropped, failed, spooled or abandoned at exit keeps the old
 * values, so after a crash or a lost record fetchd fetches the same data
 * again rather than skipping it. Advances are written to
 * STATE_DIR/checkpoints.json atomically (temporary file, fsync, rename),
 * at most once a second and at exit.
 *
 * The request uses the committed value only, so when a sink is slow the
 * next cycle may fetch records again that are still queued: duplicates,
 * never gaps.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "util/time.h"

struct ev_loop;
struct jptr;
struct sink_ticket;

struct ckpt_store;
struct ckpt_entry;
struct ckpt_cycle;

#define CKPT_FILE "checkpoints.json"
#define CKPT_MAX_VALUE 4096 /* bytes of a checkpoint's JSON text */

/* A store for the endpoints of a process; loads STATE_DIR/checkpoints.json
 * when state_dir is set (a damaged file is logged and ignored), else keeps
 * everything in memory. NULL on out of memory. */
struct ckpt_store *ckpt_store_new(struct ev_loop *loop, const char *state_dir);
/* Saves what changed and frees the store (NULL is fine); returns NULL. Free
 * it after the sinks are closed: their tickets point into it. */
struct ckpt_store *ckpt_store_free(struct ckpt_store *st);
/* Writes the file now if something changed. */
void ckpt_store_flush(struct ckpt_store *st);

/* The entry of endpoint name (created on first use; NULL on out of
 * memory). pointer is the endpoint's "checkpoint" pointer text, or NULL
 * when it has none (a last-success time only): an entry saved with another
 * pointer loses its value (logged), its last success stays. */
struct ckpt_entry *ckpt_entry_get(struct ckpt_store *st, const char *name, const char *pointer);
/* The entry of endpoint name, or NULL if it has none (never creates one). */
struct ckpt_entry *ckpt_entry_find(const struct ckpt_store *st, const char *name);
/* The committed checkpoint for a template: a JSON string's contents, other
 * values as their JSON text; NULL when there is none. */
const char *ckpt_text(const struct ckpt_entry *en, size_t *len);
/* The committed checkpoint as JSON text, or NULL. */
const char *ckpt_json(const struct ckpt_entry *en);
/* CLOCK_REALTIME start of the last committed cycle, 0 if none. */
usec_t ckpt_last_success(const struct ckpt_entry *en);
/* The end of the last committed cycle's interval (CLOCK_REALTIME), 0 if
 * none. */
usec_t ckpt_window_end(const struct ckpt_entry *en);

/* Starts tracking a fetch cycle that started at started (CLOCK_REALTIME)
 * for the interval ending at window_end (0: none). pointer is the
 * checkpoint's JSON Pointer text or NULL (the cycle keeps its own parsed
 * copy: a reload may free the configuration first); keep_max picks the
 * highest value (numbers by value, strings by bytes; a value of another
 * kind than the current one is skipped) instead of the last one (null is
 * skipped). NULL on out of memory: the cycle then advances nothing. */
struct ckpt_cycle *ckpt_cycle_begin(struct ckpt_entry *en, const char *pointer, bool keep_max,
                                    usec_t started, usec_t window_end);
/* The ticket to attach to the cycle's records (sink_item.ticket). */
struct sink_ticket *ckpt_cycle_ticket(struct ckpt_cycle *c);
/* One record of the cycle: ok records offer their data (minified JSON). */
void ckpt_cycle_record(struct ckpt_cycle *c, bool ok, const char *data, size_t len);
/* The cycle produced its last record; ok false if it failed (an error
 * record, a page missing). Returns how many ok records did not hold the
 * pointer (or held a value that cannot be a checkpoint), for a warning.
 * The cycle is freed when the last record left the sinks. */
size_t ckpt_cycle_end(struct ckpt_cycle *c, bool ok, size_t *ret_records);
