/* Unit tests for the Deferred's queue of pairs (issue 16): a few pairs live
 * inline in the Deferred, a longer queue spills into linked heap segments of
 * growing size (8 ... 256 pairs, the largest cached per thread) and goes back
 * inline once empty.  Each test runs chains whose lengths cross those
 * boundaries and checks what Twisted does whatever the storage: pairs run in
 * the order added, pairs added while running go to the end of the same pass,
 * the callback and errback paths, pause, waiting on an inner Deferred, and
 * a queue dropped unfired (under ASan: no leak, no use after free). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "deferred.h"
#include "failure.h"
#include "unit_support.h"

static FAILURE_TYPE_DEFINE(VALUE_ERROR, "builtins.ValueError", &FAILURE_ERROR);

/* Chain lengths around every boundary: inline (4), the first segment (8, one
 * slot a link), the next ones, the largest (256) and several of those. */
static const long LENGTHS[] = { 0, 1, 3, 4, 5, 7, 8, 9, 11, 12, 20, 100, 255, 256, 257, 600, 2000 };
#define N_LENGTHS (sizeof LENGTHS / sizeof LENGTHS[0])
#define LOG_MAX 5000

struct log {
    long seen[LOG_MAX];           /* the pair ids, in the order they ran */
    bool failed[LOG_MAX];         /* did that pair get a Failure? */
    long n;                       /* entries */
    struct deferred *d;           /* the Deferred under test (for adds from inside) */
    long add_below;               /* a pair with id < this adds pair id + offset */
    long offset;
    long pause_at, wait_at;       /* the pair that pauses d / returns `inner` (-1: none) */
    long fail_at, recover_at;     /* the pair that returns a Failure / recovers one */
    struct deferred *inner;
};

struct step {
    struct log *log;
    long id;
};

static struct step steps[LOG_MAX];

static struct deferred_result step_fn(struct deferred_result r, void *arg)
{
    struct step *s = arg;
    struct log *l = s->log;
    assert_true(l->n < LOG_MAX);
    l->seen[l->n] = s->id;
    l->failed[l->n] = deferred_is_failure(r);
    l->n++;
    if (s->id < l->add_below) {
        struct step *t = &steps[s->id + l->offset];
        *t = (struct step){ l, s->id + l->offset };
        deferred_add_both(l->d, step_fn, t);
    }
    if (s->id == l->pause_at)
        deferred_pause(l->d);
    if (s->id == l->wait_at)
        return deferred_wait(deferred_ref(l->inner));
    if (s->id == l->fail_at)
        return deferred_err(failure_new(&VALUE_ERROR, 0, "pair %ld", s->id));
    if (deferred_is_failure(r))
        return s->id == l->recover_at ? deferred_ok((void *)(intptr_t)1000) : r;
    return deferred_ok((void *)((intptr_t)r.value + 1));
}

static struct log *log_new(struct deferred *d)
{
    static struct log l;
    memset(&l, 0, sizeof l);
    l.d = d;
    l.pause_at = l.wait_at = l.fail_at = l.recover_at = -1;
    return &l;
}

static void add_steps(struct log *l, long from, long to)
{
    for (long i = from; i < to; i++) {
        steps[i] = (struct step){ l, i };
        deferred_add_both(l->d, step_fn, &steps[i]);
    }
}

static void assert_order(const struct log *l, long n)
{
    assert_int_equal(l->n, n);
    for (long i = 0; i < n; i++)
        assert_int_equal(l->seen[i], i);
}

/* Pairs run in the order added, each getting the one before's value, at any
 * length; once the queue is empty, a pair added later runs at once with the
 * final result (the queue went back inline), and a second spill works. */
static void test_long_chain_order(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_LENGTHS; k++) {
        long n = LENGTHS[k];
        struct deferred *d = deferred_new();
        struct log *l = log_new(d);
        add_steps(l, 0, n);
        assert_int_equal(l->n, 0);
        assert_int_equal(deferred_callback(d, (void *)(intptr_t)0), 0);
        assert_order(l, n);
        assert_int_equal((intptr_t)deferred_current_result(d).value, n);
        add_steps(l, n, n + 1);                    /* runs at once */
        assert_order(l, n + 1);
        assert_int_equal((intptr_t)deferred_current_result(d).value, n + 1);
        deferred_pause(d);                         /* queue again, past the inline array */
        add_steps(l, n + 1, n + 1 + 300);
        assert_int_equal(l->n, n + 1);
        deferred_unpause(d);
        assert_order(l, n + 301);
        assert_int_equal((intptr_t)deferred_current_result(d).value, n + 301);
        deferred_unref(d);
    }
    assert_int_equal(unhandled, 0);
}

/* A pair that adds a pair to its own Deferred while running: the new pair
 * goes to the end of the queue and runs in the same pass (§1.3, case 15),
 * also when the queue grows into new segments meanwhile. */
static void test_add_while_running(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_LENGTHS; k++) {
        long n = LENGTHS[k];
        if (2 * n >= LOG_MAX)
            continue;
        struct deferred *d = deferred_new();
        struct log *l = log_new(d);
        l->add_below = n;                          /* pair i adds pair n + i */
        l->offset = n;
        add_steps(l, 0, n);
        deferred_callback(d, (void *)(intptr_t)0);
        assert_order(l, 2 * n);
        assert_int_equal((intptr_t)deferred_current_result(d).value, 2 * n);
        deferred_unref(d);
    }
}

/* A Failure from pair f takes the errback side until pair r recovers, across
 * segment boundaries; the chain ends in a value (nothing unhandled). */
static void test_failure_path(void **state)
{
    (void)state;
    struct deferred *d = deferred_new();
    struct log *l = log_new(d);
    l->fail_at = 100;
    l->recover_at = 530;
    add_steps(l, 0, 1200);
    deferred_callback(d, (void *)(intptr_t)0);
    assert_order(l, 1200);
    for (long i = 0; i < 1200; i++)
        assert_int_equal(l->failed[i], i > 100 && i <= 530);
    assert_false(deferred_is_failure(deferred_current_result(d)));
    assert_int_equal((intptr_t)deferred_current_result(d).value, 1000 + 1200 - 531);
    deferred_unref(d);
    assert_int_equal(unhandled, 0);

    /* A chain of 700 that ends in the Failure reports it once, when freed. */
    d = deferred_new();
    l = log_new(d);
    l->fail_at = 650;
    add_steps(l, 0, 700);
    deferred_callback(d, NULL);
    assert_order(l, 700);
    assert_true(deferred_is_failure(deferred_current_result(d)));
    deferred_unref(d);
    assert_int_equal(unhandled, 1);
}

/* pause() from pair 250 of 600: as in Twisted, the pass goes on to the end
 * of the queue (a pause from inside a callback stops only what comes
 * later); pairs added while paused queue up, across segments, and unpause()
 * runs them in order. */
static void test_pause_in_long_chain(void **state)
{
    (void)state;
    struct deferred *d = deferred_new();
    struct log *l = log_new(d);
    l->pause_at = 250;
    add_steps(l, 0, 600);
    deferred_callback(d, (void *)(intptr_t)0);
    assert_order(l, 600);
    assert_int_equal(deferred_paused(d), 1);
    add_steps(l, 600, 1000);
    assert_int_equal(l->n, 600);
    deferred_unpause(d);
    assert_order(l, 1000);
    assert_int_equal((intptr_t)deferred_current_result(d).value, 1000);
    deferred_unref(d);
}

/* Pair 130 of 900 returns an unfired inner Deferred that has 700 pairs of
 * its own: the outer waits; when the inner fires, its pairs run first, then
 * (the continuation is queued after them, §2.2) the outer goes on with the
 * inner's processed result, in order. */
static void test_wait_in_long_chain(void **state)
{
    (void)state;
    struct deferred *outer = deferred_new(), *inner = deferred_new();
    struct log *l = log_new(outer);
    l->wait_at = 130;
    l->inner = inner;
    for (long i = 900; i < 1600; i++) {            /* the inner's pairs, ids 900..1599 */
        steps[i] = (struct step){ l, i };
        deferred_add_callback(inner, step_fn, &steps[i]);
    }
    add_steps(l, 0, 900);
    deferred_callback(outer, (void *)(intptr_t)0);
    assert_order(l, 131);
    assert_true(deferred_waiting(outer));
    deferred_unref(outer);                         /* the inner's continuation keeps it */
    assert_int_equal(deferred_callback(inner, (void *)(intptr_t)5), 0);
    assert_int_equal(l->n, 131 + 700 + 769);
    for (long i = 0; i < 700; i++)
        assert_int_equal(l->seen[131 + i], 900 + i);
    for (long i = 0; i < 769; i++)
        assert_int_equal(l->seen[831 + i], 131 + i);
    deferred_unref(inner);
    assert_int_equal(unhandled, 0);
}

/* A Deferred dropped unfired with a long queue frees its segments, and a
 * continuation still queued gives back its reference on the waiter. */
static void test_drop_unfired_long_queue(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_LENGTHS; k++) {
        struct deferred *d = deferred_new();
        struct log *l = log_new(d);
        add_steps(l, 0, LENGTHS[k]);
        deferred_unref(d);
        assert_int_equal(l->n, 0);
    }
    /* outer waits on inner (600 pairs queued before the continuation); the
     * inner is cancelled: its errbacks run, then the outer gets the Failure */
    struct deferred *outer = deferred_new(), *inner = deferred_new();
    struct log *l = log_new(inner);
    add_steps(l, 0, 600);
    l->d = outer;
    l->wait_at = 600;
    l->inner = inner;
    steps[600] = (struct step){ l, 600 };
    deferred_add_callback(outer, step_fn, &steps[600]);
    deferred_callback(outer, NULL);
    assert_true(deferred_waiting(outer));
    assert_null(deferred_cancel(outer));           /* cancels the inner */
    assert_int_equal(l->n, 601);
    for (long i = 1; i < 601; i++) {
        assert_int_equal(l->seen[i], i - 1);
        assert_true(l->failed[i]);
    }
    assert_true(deferred_is_failure(deferred_current_result(outer)));
    assert_true(failure_is(deferred_current_result(outer).failure, &FAILURE_CANCELLED));
    deferred_unref(inner);
    deferred_unref(outer);
    assert_int_equal(unhandled, 1);                /* the outer's CancelledError, once */
    deferred_pool_trim();                          /* gives the cached segments back */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup(f, unhandled_setup)
        T(test_long_chain_order), T(test_add_while_running), T(test_failure_path),
        T(test_pause_in_long_chain), T(test_wait_in_long_chain), T(test_drop_unfired_long_queue),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
