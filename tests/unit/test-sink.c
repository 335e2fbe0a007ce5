/* test-sink.c - unit tests for the sink host (src/sink.c): the bounded
 * queue, the overflow policies, routing by record kind, the counters'
 * invariant delivered + dropped + queued == produced, and the
 * ack/fail/retry/hold protocol, driven through a scripted in-memory sink
 * type. */
#include <check.h>
#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "sink.h"

/* ---- a scripted sink type ------------------------------------------------ */

/* MEM_HOLD: takes nothing now (a consumer that is not reading) */
enum mem_mode { MEM_ACK, MEM_FAIL, MEM_RETRY, MEM_WAIT, MEM_ACK_ONE, MEM_HOLD };

static enum mem_mode mem_mode;
static char mem_out[65536];
static size_t mem_out_len;
static unsigned mem_calls;

static int mem_open(struct sink *s, char *err, size_t errlen)
{
    (void)s;
    (void)err;
    (void)errlen;
    return 0;
}

static void mem_deliver(struct sink *s)
{
    mem_calls++;
    size_t n = 0;
    switch (mem_mode) {
    case MEM_ACK:
    case MEM_ACK_ONE:
        for (struct sink_rec *r = sink_head(s); r; r = r->next) {
            if (mem_out_len + r->len < sizeof(mem_out)) {
                memcpy(mem_out + mem_out_len, r->line, r->len);
                mem_out_len += r->len;
            }
            n++;
            if (mem_mode == MEM_ACK_ONE) {
                break;
            }
        }
        sink_ack(s, n);
        break;
    case MEM_FAIL:
        sink_fail(s, 1, -EIO, "scripted failure");
        break;
    case MEM_RETRY:
        sink_retry(s, 3600 * USEC_PER_SEC, -EAGAIN, "scripted retry");
        break;
    case MEM_WAIT:
        sink_wait(s, 2);
        break;
    case MEM_HOLD:
        break;
    }
}

static const struct opt_def mem_options[] = {{0}};

static const struct sink_type mem_type = {
    .name = "mem",
    .description = "test",
    .guarantee = "test",
    .options = mem_options,
    .open = mem_open,
    .deliver = mem_deliver,
};

/* ---- fixture --------------------------------------------------------------- */

static struct config cfg;
static struct sink_cfg scfg[2];
static struct opt_value vals[2][2];
static uint32_t ep_sinks[2] = {0, 1};
static struct endpoint_cfg ep;
static struct sinkset set;
static struct ev_loop *loop;

static void setup_sinks(enum sink_overflow ovf, uint64_t max_records, uint64_t max_bytes,
                        enum sink_take take1)
{
    memset(&cfg, 0, sizeof(cfg));
    memset(scfg, 0, sizeof(scfg));
    memset(&ep, 0, sizeof(ep));
    for (int i = 0; i < 2; i++) {
        scfg[i].name = i ? "b" : "a";
        scfg[i].type = &mem_type;
        scfg[i].values = vals[i];
        scfg[i].overflow = ovf;
        scfg[i].overflow_set = true;
        scfg[i].max_records = max_records;
        scfg[i].max_bytes = max_bytes;
        scfg[i].backoff = USEC_PER_SEC;
        scfg[i].max_backoff = 2 * USEC_PER_SEC;
        scfg[i].canon = "{}";
        scfg[i].used = true;
    }
    scfg[1].take = take1;
    cfg.sinks = scfg;
    cfg.n_sinks = 2;
    ep.name = "ep";
    ep.sinks = ep_sinks;
    ep.n_sinks = 2;
    loop = ev_default_loop(0);
    sinkset_init(&set, loop, NULL, NULL);
    ck_assert_int_eq(sinkset_open(&set, &cfg), 0);
    mem_mode = MEM_ACK;
    mem_out_len = 0;
    mem_calls = 0;
}

static void teardown_sinks(void)
{
    sinkset_close(&set);
}

static void put(unsigned i, enum record_error err)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "{\"n\":%u}\n", i);
    struct sink_item it = {
        .line = line,
        .len = (size_t)n,
        .endpoint = "ep",
        .error = err,
    };
    sinkset_dispatch(&set, &ep, &it);
}

static void check_invariant(const struct sink *s)
{
    ck_assert_uint_eq(s->c.delivered + s->c.dropped + s->queued + s->held, s->c.produced);
    ck_assert_uint_eq(s->c.dropped, s->c.overflow + s->c.failed + s->c.abandoned);
}

/* ---- tests ------------------------------------------------------------------ */

START_TEST(test_deliver_in_order)
{
    setup_sinks(SINK_DROP_OLDEST, 100, 1 << 20, SINK_TAKE_ALL);
    for (unsigned i = 0; i < 5; i++) {
        put(i, REC_OK);
    }
    ck_assert_uint_eq(set.sinks[0]->queued, 5);
    sinkset_deliver(&set);
    /* both sinks wrote into mem_out: 5 lines each, in order */
    ck_assert_uint_eq(set.sinks[0]->c.delivered, 5);
    ck_assert_uint_eq(set.sinks[1]->c.delivered, 5);
    ck_assert(strncmp(mem_out, "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n", 40) == 0);
    check_invariant(set.sinks[0]);
    check_invariant(set.sinks[1]);
    teardown_sinks();
}
END_TEST

START_TEST(test_drop_newest)
{
    setup_sinks(SINK_DROP_NEWEST, 3, 1 << 20, SINK_TAKE_ALL);
    mem_mode = MEM_HOLD; /* else a full queue first lets the sink take records */
    for (unsigned i = 0; i < 10; i++) {
        put(i, REC_OK);
    }
    struct sink *s = set.sinks[0];
    ck_assert_uint_eq(s->queued, 3);
    ck_assert_uint_eq(s->c.overflow, 7);
    ck_assert_str_eq(s->head->line[5] == '0' ? "0" : "x", "0"); /* the oldest survive */
    check_invariant(s);
    teardown_sinks();
}
END_TEST

/* A response split into more records than the queue holds fills it within
 * one loop iteration: a sink that can take records now gets them before
 * the overflow policy drops any (here every policy). */
START_TEST(test_full_queue_delivers_first)
{
    enum sink_overflow pol[] = {SINK_DROP_OLDEST, SINK_DROP_NEWEST, SINK_PAUSE};
    for (size_t p = 0; p < 3; p++) {
        setup_sinks(pol[p], 3, 1 << 20, SINK_TAKE_ALL);
        for (unsigned i = 0; i < 50; i++) {
            put(i, REC_OK);
        }
        struct sink *s = set.sinks[0];
        ck_assert_uint_eq(s->c.dropped, 0);
        ck_assert_uint_eq(s->c.produced, 50);
        ck_assert_uint_ge(s->c.delivered, 47);
        check_invariant(s);
        sinkset_deliver(&set);
        ck_assert_uint_eq(s->c.delivered, 50);
        teardown_sinks();
    }
}
END_TEST

START_TEST(test_drop_oldest_skips_locked)
{
    setup_sinks(SINK_DROP_OLDEST, 3, 1 << 20, SINK_TAKE_ALL);
    put(0, REC_OK);
    put(1, REC_OK);
    put(2, REC_OK);
    mem_mode = MEM_WAIT; /* the sink holds the first two */
    sinkset_deliver(&set);
    struct sink *s = set.sinks[0];
    ck_assert_int_eq(s->state, SINK_WAITING);
    ck_assert_uint_eq(s->locked, 2);
    for (unsigned i = 3; i < 8; i++) {
        put(i, REC_OK);
    }
    /* 0 and 1 are in the sink's hands; the newest survives behind them */
    ck_assert_uint_eq(s->queued, 3);
    ck_assert(strncmp(s->head->line, "{\"n\":0}", 7) == 0);
    ck_assert(strncmp(s->head->next->line, "{\"n\":1}", 7) == 0);
    ck_assert(strncmp(s->head->next->next->line, "{\"n\":7}", 7) == 0);
    ck_assert_uint_eq(s->c.overflow, 5);
    check_invariant(s);
    /* the wait ends: everything goes out */
    mem_mode = MEM_ACK;
    sink_ready(s);
    sinkset_deliver(&set);
    ck_assert_uint_eq(s->queued, 0);
    ck_assert_uint_eq(s->c.delivered, 3);
    check_invariant(s);
    teardown_sinks();
}
END_TEST

START_TEST(test_bytes_bound)
{
    /* every record costs its line plus a header: a small byte bound holds
     * fewer records than the record bound */
    setup_sinks(SINK_DROP_NEWEST, 1000, 4096, SINK_TAKE_ALL);
    for (unsigned i = 0; i < 1000; i++) {
        put(i, REC_OK);
    }
    struct sink *s = set.sinks[0];
    ck_assert_uint_lt(s->queued, 1000);
    ck_assert_uint_gt(s->queued, 10);
    ck_assert_uint_le(s->queued_bytes, 4096);
    check_invariant(s);
    teardown_sinks();
}
END_TEST

START_TEST(test_pause)
{
    setup_sinks(SINK_PAUSE, 4, 1 << 20, SINK_TAKE_ALL);
    mem_mode = MEM_HOLD;
    for (unsigned i = 0; i < 4; i++) {
        put(i, REC_OK);
    }
    ck_assert(!sinkset_paused(&set, &ep));
    put(4, REC_OK); /* over the bound: paused, still queued */
    ck_assert(sinkset_paused(&set, &ep));
    struct sink *s = set.sinks[0];
    ck_assert_uint_eq(s->queued, 5);
    for (unsigned i = 5; i < 20; i++) {
        put(i, REC_OK); /* records of fetches in flight: up to twice the bound */
    }
    ck_assert_uint_eq(s->queued, 8);
    ck_assert_uint_eq(s->c.overflow, 12);
    ck_assert(!sinkset_take_unpaused(&set));
    mem_mode = MEM_ACK;
    sinkset_deliver(&set);
    ck_assert(!sinkset_paused(&set, &ep));
    ck_assert(sinkset_take_unpaused(&set));
    ck_assert(!sinkset_take_unpaused(&set));
    check_invariant(s);
    teardown_sinks();
}
END_TEST

START_TEST(test_routing)
{
    setup_sinks(SINK_DROP_OLDEST, 100, 1 << 20, SINK_TAKE_ERRORS);
    put(0, REC_OK);
    put(1, REC_ERR_TIMEOUT);
    put(2, REC_OK);
    ck_assert_uint_eq(set.sinks[0]->c.produced, 3);
    ck_assert_uint_eq(set.sinks[1]->c.produced, 1);
    ck_assert(strncmp(set.sinks[1]->head->line, "{\"n\":1}", 7) == 0);
    ck_assert_uint_eq(set.sinks[1]->head->error, REC_ERR_TIMEOUT);
    teardown_sinks();
    setup_sinks(SINK_DROP_OLDEST, 100, 1 << 20, SINK_TAKE_OK);
    put(0, REC_OK);
    put(1, REC_ERR_TIMEOUT);
    ck_assert_uint_eq(set.sinks[1]->c.produced, 1);
    ck_assert(strncmp(set.sinks[1]->head->line, "{\"n\":0}", 7) == 0);
    teardown_sinks();
}
END_TEST

START_TEST(test_fail_and_retry)
{
    setup_sinks(SINK_DROP_OLDEST, 100, 1 << 20, SINK_TAKE_ALL);
    put(0, REC_OK);
    put(1, REC_OK);
    struct sink *s = set.sinks[0];
    mem_mode = MEM_FAIL;
    sinkset_deliver(&set);
    /* each deliver round fails one record: both are lost, counted */
    ck_assert_uint_eq(s->c.failed, 2);
    ck_assert_uint_eq(s->queued, 0);
    check_invariant(s);
    put(2, REC_OK);
    mem_mode = MEM_RETRY;
    unsigned before = mem_calls;
    sinkset_deliver(&set);
    ck_assert_int_eq(s->state, SINK_BACKOFF);
    ck_assert_uint_eq(s->c.retried, 1);
    ck_assert_ptr_nonnull(strstr(s->problem, "scripted retry"));
    ck_assert_uint_eq(s->queued, 1);
    /* backing off: not called again */
    unsigned calls = mem_calls;
    sinkset_deliver(&set);
    ck_assert_uint_eq(mem_calls, calls);
    ck_assert_uint_gt(calls, before);
    ck_assert_ptr_eq(sinkset_problem(&set), s);
    /* the timer fires: delivered, the problem clears */
    mem_mode = MEM_ACK;
    ev_invoke(loop, &s->retry_timer, EV_TIMER);
    sinkset_deliver(&set);
    ck_assert_uint_eq(s->queued, 0);
    ck_assert_str_eq(s->problem, "");
    check_invariant(s);
    teardown_sinks();
}
END_TEST

START_TEST(test_finish_counts_abandoned)
{
    setup_sinks(SINK_DROP_OLDEST, 100, 1 << 20, SINK_TAKE_ALL);
    for (unsigned i = 0; i < 7; i++) {
        put(i, REC_OK);
    }
    mem_mode = MEM_ACK_ONE;
    sinkset_deliver(&set); /* several rounds of one record each */
    struct sink *s = set.sinks[0];
    uint64_t delivered = s->c.delivered;
    ck_assert_uint_ge(delivered, 1);
    mem_mode = MEM_RETRY;
    sinkset_deliver(&set);
    sinkset_finish(&set, 0);
    ck_assert_uint_eq(s->queued, 0);
    ck_assert_uint_eq(s->c.abandoned, 7 - delivered);
    check_invariant(s);
    struct sink_counters t;
    uint64_t q;
    sinkset_totals(&set, &t, &q);
    ck_assert_uint_eq(q, 0);
    ck_assert_uint_eq(t.produced, t.delivered + t.dropped);
    teardown_sinks();
}
END_TEST

START_TEST(test_hold_unhold)
{
    setup_sinks(SINK_DROP_OLDEST, 100, 1 << 20, SINK_TAKE_ALL);
    put(0, REC_OK);
    put(1, REC_OK);
    struct sink *s = set.sinks[0];
    sink_hold(s, 2); /* e.g. written to a spool */
    ck_assert_uint_eq(s->queued, 0);
    ck_assert_uint_eq(s->held, 2);
    check_invariant(s);
    struct sink_counters t;
    uint64_t q;
    sinkset_totals(&set, &t, &q);
    ck_assert_uint_eq(q, 2 + 2); /* a: 2 held (count as queued), b: 2 queued */
    struct sink_item it = {.line = "{\"n\":0}\n", .len = 8, .endpoint = "ep"};
    ck_assert_int_eq(sink_unhold(s, &it), 0);
    ck_assert_uint_eq(s->held, 1);
    ck_assert_uint_eq(s->queued, 1);
    check_invariant(s);
    sink_restored(s, 5);
    ck_assert_uint_eq(s->held, 6);
    check_invariant(s);
    teardown_sinks();
}
END_TEST

START_TEST(test_once_defaults_to_pause)
{
    setup_sinks(SINK_DROP_OLDEST, 2, 1 << 20, SINK_TAKE_ALL);
    teardown_sinks();
    /* the same, with --once and no explicit "overflow" */
    setup_sinks(SINK_DROP_OLDEST, 2, 1 << 20, SINK_TAKE_ALL);
    sinkset_close(&set);
    scfg[0].overflow_set = false;
    sinkset_init(&set, loop, NULL, NULL);
    set.once = true;
    ck_assert_int_eq(sinkset_open(&set, &cfg), 0);
    mem_mode = MEM_HOLD;
    for (unsigned i = 0; i < 3; i++) {
        put(i, REC_OK);
    }
    ck_assert(set.sinks[0]->paused);
    ck_assert_uint_eq(set.sinks[0]->c.dropped, 0);
    /* sink b was given "overflow" explicitly: it drops */
    ck_assert(!set.sinks[1]->paused);
    ck_assert_uint_eq(set.sinks[1]->c.dropped, 1);
    teardown_sinks();
}
END_TEST

START_TEST(test_reload_moves_queue)
{
    setup_sinks(SINK_DROP_OLDEST, 100, 1 << 20, SINK_TAKE_ALL);
    for (unsigned i = 0; i < 5; i++) {
        put(i, REC_OK);
    }
    mem_mode = MEM_WAIT; /* each sink holds its first two records */
    sinkset_deliver(&set);
    struct sink *old_b = set.sinks[1];
    /* a new config: "a" changed, "b" unchanged */
    static struct sink_cfg scfg2[2];
    static struct config cfg2;
    memcpy(scfg2, scfg, sizeof(scfg2));
    scfg2[0].canon = "{\"changed\":true}";
    cfg2 = cfg;
    cfg2.sinks = scfg2;
    struct sinkset nset = {0};
    ck_assert_int_eq(sinkset_reopen(&nset, &cfg2, &set, &cfg), 0);
    ck_assert_uint_eq(set.n, 0);
    /* "b" kept its instance and all five records */
    ck_assert_ptr_eq(nset.sinks[1], old_b);
    ck_assert_uint_eq(nset.sinks[1]->queued, 5);
    /* the new "a" took over the three records the old one did not hold */
    struct sink *a = nset.sinks[0];
    ck_assert_uint_eq(a->queued, 3);
    ck_assert(strncmp(a->head->line, "{\"n\":2}", 7) == 0);
    ck_assert(strncmp(a->tail->line, "{\"n\":4}", 7) == 0);
    ck_assert_uint_eq(a->c.produced, 3);
    check_invariant(a);
    /* the two it held were lost with the old instance, and counted */
    struct sink_counters t;
    uint64_t q;
    sinkset_totals(&nset, &t, &q);
    ck_assert_uint_eq(t.produced, 10);
    ck_assert_uint_eq(t.abandoned, 2);
    ck_assert_uint_eq(q, 8);
    ck_assert_uint_eq(t.delivered + t.dropped + q, t.produced);
    set = nset;
    teardown_sinks();
}
END_TEST

/* ---- delivery tickets --------------------------------------------------- */

static int ticket_done_calls;
static bool ticket_delivered;

static void ticket_done(struct sink_ticket *t, bool delivered)
{
    (void)t;
    ticket_done_calls++;
    ticket_delivered = delivered;
}

static struct sink_ticket ticket;

static void ticket_start(void)
{
    ticket = (struct sink_ticket){.refs = 1, .done = ticket_done};
    ticket_done_calls = 0;
    ticket_delivered = false;
}

static void put_ticket(unsigned i, enum record_error err)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "{\"n\":%u}\n", i);
    struct sink_item it = {
        .line = line, .len = (size_t)n, .endpoint = "ep", .error = err, .ticket = &ticket};
    sinkset_dispatch(&set, &ep, &it);
}

/* Every copy in both sinks delivered: done once, delivered, and only after
 * the issuer let go of its reference. */
START_TEST(test_ticket_delivered)
{
    setup_sinks(SINK_DROP_OLDEST, 100, 1 << 20, SINK_TAKE_ALL);
    ticket_start();
    mem_mode = MEM_HOLD;
    for (unsigned i = 0; i < 3; i++) {
        put_ticket(i, REC_OK);
    }
    ck_assert_uint_eq(ticket.refs, 1 + 6);
    mem_mode = MEM_ACK;
    sinkset_deliver(&set);
    ck_assert_int_eq(ticket_done_calls, 0); /* the issuer still holds it */
    ck_assert_uint_eq(ticket.refs, 1);
    sink_ticket_put(&ticket, true);
    ck_assert_int_eq(ticket_done_calls, 1);
    ck_assert(ticket_delivered);
    teardown_sinks();
}
END_TEST

/* The issuer lets go first; the last ack calls done. */
START_TEST(test_ticket_done_on_last_ack)
{
    setup_sinks(SINK_DROP_OLDEST, 100, 1 << 20, SINK_TAKE_ALL);
    ticket_start();
    mem_mode = MEM_HOLD;
    put_ticket(0, REC_OK);
    sink_ticket_put(&ticket, true);
    ck_assert_int_eq(ticket_done_calls, 0);
    mem_mode = MEM_ACK;
    sinkset_deliver(&set);
    ck_assert_int_eq(ticket_done_calls, 1);
    ck_assert(ticket_delivered);
    teardown_sinks();
}
END_TEST

/* Each way a copy can be lost fails the ticket: loop 0 a failed delivery,
 * 1 drop_newest, 2 drop_oldest, 3 abandoned at close, 4 held (spool), 5 a
 * record larger than the queue's bytes. */
START_TEST(test_ticket_lost)
{
    enum sink_overflow ovf = _i == 2 ? SINK_DROP_OLDEST : SINK_DROP_NEWEST;
    setup_sinks(ovf, _i == 1 || _i == 2 ? 1 : 100, _i == 5 ? 40 : 1 << 20, SINK_TAKE_ALL);
    ticket_start();
    mem_mode = MEM_HOLD;
    put_ticket(0, REC_OK);
    if (_i == 1 || _i == 2) {
        put_ticket(1, REC_OK); /* the queue holds one */
    }
    if (_i == 5) {
        char big[128];
        memset(big, 'x', sizeof(big));
        struct sink_item it = {.line = big, .len = sizeof(big), .endpoint = "ep",
                               .ticket = &ticket};
        sinkset_dispatch(&set, &ep, &it);
    }
    sink_ticket_put(&ticket, true);
    switch (_i) {
    case 0:
        mem_mode = MEM_FAIL;
        while (set.sinks[0]->queued || set.sinks[1]->queued) {
            sinkset_deliver(&set);
        }
        break;
    case 3:
        break; /* teardown closes with records queued */
    case 4:
        sink_hold(set.sinks[0], 1);
        mem_mode = MEM_ACK;
        sinkset_deliver(&set);
        break;
    default:
        mem_mode = MEM_ACK;
        sinkset_deliver(&set);
        break;
    }
    teardown_sinks();
    ck_assert_int_eq(ticket_done_calls, 1);
    ck_assert_msg(!ticket_delivered, "case %d: a lost copy left the ticket delivered", _i);
}
END_TEST

/* A sink that does not take the record (records: "errors") holds no
 * reference: the ticket completes with the other sink. */
START_TEST(test_ticket_routing)
{
    setup_sinks(SINK_DROP_OLDEST, 100, 1 << 20, SINK_TAKE_ERRORS);
    ticket_start();
    put_ticket(0, REC_OK);
    ck_assert_uint_eq(ticket.refs, 2);
    sink_ticket_put(&ticket, true);
    sinkset_deliver(&set);
    ck_assert_int_eq(ticket_done_calls, 1);
    ck_assert(ticket_delivered);
    teardown_sinks();
}
END_TEST

static Suite *sink_suite(void)
{
    Suite *s = suite_create("sink");
    TCase *tc = tcase_create("queue");
    tcase_add_test(tc, test_deliver_in_order);
    tcase_add_test(tc, test_drop_newest);
    tcase_add_test(tc, test_full_queue_delivers_first);
    tcase_add_test(tc, test_drop_oldest_skips_locked);
    tcase_add_test(tc, test_bytes_bound);
    tcase_add_test(tc, test_pause);
    tcase_add_test(tc, test_routing);
    tcase_add_test(tc, test_fail_and_retry);
    tcase_add_test(tc, test_finish_counts_abandoned);
    tcase_add_test(tc, test_hold_unhold);
    tcase_add_test(tc, test_once_defaults_to_pause);
    tcase_add_test(tc, test_reload_moves_queue);
    tcase_add_test(tc, test_ticket_delivered);
    tcase_add_test(tc, test_ticket_done_on_last_ack);
    tcase_add_loop_test(tc, test_ticket_lost, 0, 6);
    tcase_add_test(tc, test_ticket_routing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sink_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
