/* Unit tests for lib/timerq: entries run once, in deadline order (FIFO
 * among equal ones), never before their deadline, with or without a spin;
 * ev_run returns once the queue is empty (no watcher left active, the spin's
 * polling watchers included); removing and re-adding work from callbacks.
 * Times are not asserted from above: a loaded machine may run them late. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>

#include "timerq.h"

struct item {
    struct timerq_entry e;     /* first: the callback casts back */
    int id;                    /* which one */
    double ran_at;             /* timerq_now() when it ran, 0 = not yet */
};

static struct timerq *cur;     /* the queue under test, for callbacks */
static int order[16], norder;  /* ids in the order they ran */

static void item_cb(struct timerq_entry *e)
{
    struct item *it = (struct item *)e;
    it->ran_at = timerq_now();
    order[norder++] = it->id;
}

/* A queue on a new loop, with the given spin, as the one under test. */
static struct ev_loop *open_queue(struct timerq *q, double spin)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(loop);
    assert_int_equal(timerq_init(q, loop), 0);
    timerq_set_spin(q, spin);
    cur = q;
    norder = 0;
    return loop;
}

static void close_queue(struct timerq *q, struct ev_loop *loop)
{
    timerq_destroy(q);
    ev_loop_destroy(loop);
}

/* Runs items at the given delays (seconds from now) with the given spin;
 * checks each ran once, not early, and the order against want. */
static void run_items(double spin, const double *delay, int n, const int *want)
{
    struct timerq q;
    struct ev_loop *loop = open_queue(&q, spin);
    struct item it[16];
    double t0 = timerq_now();
    for (int i = 0; i < n; i++) {
        it[i] = (struct item){ .id = i };
        timerq_entry_init(&it[i].e, item_cb);
        timerq_add(&q, &it[i].e, t0 + delay[i]);
    }
    assert_int_equal(timerq_count(&q), n);
    ev_run(loop, 0);           /* returns when the queue is empty */
    assert_int_equal(norder, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(order[i], want[i]);
        if (it[i].ran_at < t0 + delay[i])
            fail_msg("item %d ran %.1f us early", i, (t0 + delay[i] - it[i].ran_at) * 1e6);
        assert_false(timerq_pending(&it[i].e));
    }
    assert_null(timerq_first(&q));
    close_queue(&q, loop);
}

static void test_order(void **state)
{
    (void)state;
    static const double delay[] = { 0.003, 0.001, 0.002, 0.001, 0.0 };
    static const int want[] = { 4, 1, 3, 2, 0 };   /* equal deadlines: added first runs first */
    run_items(0, delay, 5, want);
}

/* A spin longer than every delay: the loop polls from the start. */
static void test_spin_polls(void **state)
{
    (void)state;
    static const double delay[] = { 0.003, 0.001, 0.002, 0.001, 0.0 };
    static const int want[] = { 4, 1, 3, 2, 0 };
    run_items(0.010, delay, 5, want);
}

/* A spin shorter than the delays: the timerfd wakes the loop first. */
static void test_spin_after_sleep(void **state)
{
    (void)state;
    static const double delay[] = { 0.004, 0.002 };
    static const int want[] = { 1, 0 };
    run_items(0.0005, delay, 2, want);
}

/* Removing the last pending entry while polling stops the polling: ev_run
 * returns (it would spin forever otherwise). */
static struct item victim;
static void remover_cb(struct timerq_entry *e)
{
    (void)e;
    timerq_remove(cur, &victim.e);
    order[norder++] = 99;
}

static void test_remove_while_polling(void **state)
{
    (void)state;
    struct timerq q;
    struct ev_loop *loop = open_queue(&q, 1.0);
    struct item remover = { .id = 1 };
    victim = (struct item){ .id = 2 };
    timerq_entry_init(&remover.e, remover_cb);
    timerq_entry_init(&victim.e, item_cb);
    timerq_add(&q, &remover.e, timerq_now() + 0.001);
    timerq_add(&q, &victim.e, timerq_now() + 0.5);
    ev_run(loop, 0);
    assert_int_equal(norder, 1);
    assert_int_equal(order[0], 99);
    assert_int_equal(timerq_count(&q), 0);
    close_queue(&q, loop);
}

/* Turning the spin on while an entry is pending brings its wake-up forward
 * and it still runs on time (not early). */
static void test_spin_set_while_pending(void **state)
{
    (void)state;
    struct timerq q;
    struct ev_loop *loop = open_queue(&q, 0);
    struct item it = { .id = 0 };
    timerq_entry_init(&it.e, item_cb);
    double due = timerq_now() + 0.002;
    timerq_add(&q, &it.e, due);
    timerq_set_spin(&q, 0.001);
    ev_run(loop, 0);
    assert_int_equal(norder, 1);
    assert_true(it.ran_at >= due);
    timerq_set_spin(&q, 0);
    close_queue(&q, loop);
}

/* An entry whose callback keeps adding it back at a time already past (a
 * poll for something not there yet) runs once per pass and does not stand
 * in front of another entry that falls due meanwhile: that one runs after a
 * few passes, not after the other has given up.  (Before, the re-added
 * entry sorted first forever: the other waited all of its 2,000 passes.) */
static struct item poller, waiter;
static int polls;
static void poller_cb(struct timerq_entry *e)
{
    polls++;
    if (waiter.ran_at == 0 && polls < 2000)
        timerq_add(cur, e, e->when);     /* the same deadline, long past */
}

static void test_past_readd_does_not_starve(void **state)
{
    (void)state;
    struct timerq q;
    struct ev_loop *loop = open_queue(&q, 0);
    polls = 0;
    poller = (struct item){ .id = 1 };
    waiter = (struct item){ .id = 2 };
    timerq_entry_init(&poller.e, poller_cb);
    timerq_entry_init(&waiter.e, item_cb);
    double t0 = timerq_now();
    timerq_add(&q, &poller.e, t0 - 1.0);
    timerq_add(&q, &waiter.e, t0 + 0.002);
    ev_run(loop, 0);
    assert_int_equal(norder, 1);
    assert_true(waiter.ran_at >= t0 + 0.002);
    if (polls >= 2000)
        fail_msg("the due entry waited for all %d passes of the re-added one", polls);
    assert_int_equal(timerq_count(&q), 0);
    close_queue(&q, loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_spin_polls),
        cmocka_unit_test(test_spin_after_sleep),
        cmocka_unit_test(test_remove_while_polling),
        cmocka_unit_test(test_spin_set_while_pending),
        cmocka_unit_test(test_past_readd_does_not_starve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
