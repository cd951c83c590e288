/* Unit tests for lib/threadpool: deferToThread (the Deferred checklist's
 * case 55, shared/spec/deferred.md §8) and the pool under load — results
 * delivered in the reactor thread, work run off it, a cancelled job's late
 * result swallowed.  Every wait is bounded by a guard timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "deferred.h"
#include "failure.h"
#include "reactor.h"
#include "unit_support.h"
#include "threadpool.h"

static FAILURE_TYPE_DEFINE(KEY_ERROR, "builtins.KeyError", &FAILURE_ERROR);

#define V(x) ((void *)(intptr_t)(x))
#define I(p) ((intptr_t)(p))

static struct failure *ferr(const struct failure_type *t, const char *msg)
{
    return failure_new(t, 0, "%s", msg);
}


/* 55: the work runs in a worker thread, its result (or its Failure) comes
 * back in the reactor thread, and never before the loop runs. */
struct c55_ctx { struct reactor *r; pthread_t main; bool worker_off_main; int delivered; bool in_main[2];
                 struct deferred_result res[2]; };

static struct c55_ctx *c55;

static struct deferred_result c55_work(void *arg)
{
    c55->worker_off_main = !pthread_equal(pthread_self(), c55->main);
    return deferred_ok(V(I(arg) * 2));
}

static struct deferred_result c55_raise(void *arg)
{
    (void)arg;
    return deferred_err(ferr(&KEY_ERROR, "in thread"));
}

static struct deferred_result c55_done(struct deferred_result r, void *arg)
{
    int i = (int)I(arg);
    c55->in_main[i] = pthread_equal(pthread_self(), c55->main);
    c55->res[i] = r;
    if (r.kind == DEFERRED_FAILURE)
        c55->res[i].failure = c55->res[i].failure->type == &KEY_ERROR ? (void *)&KEY_ERROR : NULL;
    if (++c55->delivered == 2)
        reactor_stop(c55->r);
    return deferred_ok(NULL);
}

static void test_c55_defer_to_thread(void **state)
{
    (void)state;
    struct c55_ctx c = { reactor_new(), pthread_self(), false, 0, { false, false }, { { 0 } } };
    c55 = &c;
    struct threadpool *p = threadpool_new(c.r, 2);
    assert_non_null(p);
    struct deferred *d1 = threadpool_defer_to_thread(p, c55_work, V(21));
    struct deferred *d2 = threadpool_defer_to_thread(p, c55_raise, NULL);
    assert_false(deferred_called(d1));      /* never fires before the loop runs */
    deferred_add_both(d1, c55_done, V(0));
    deferred_add_both(d2, c55_done, V(1));
    run_bounded(c.r, 5.0);
    assert_int_equal(c.delivered, 2);
    assert_true(c.worker_off_main);
    assert_true(c.in_main[0] && c.in_main[1]);
    assert_int_equal(c.res[0].kind, DEFERRED_VALUE);
    assert_int_equal(I(c.res[0].value), 42);
    assert_int_equal(c.res[1].kind, DEFERRED_FAILURE);
    assert_ptr_equal(c.res[1].failure, (void *)&KEY_ERROR);
    deferred_unref(d1);
    deferred_unref(d2);
    threadpool_free(p);
    reactor_free(c.r);
}

/* The type of a cancelled job's result. */
static const struct failure_type *cancelled_type;

static struct deferred_result record_type(struct deferred_result r, void *arg)
{
    (void)arg;
    cancelled_type = r.kind == DEFERRED_FAILURE ? r.failure->type : NULL;
    return deferred_ok(NULL);
}

/* Thread pool: many jobs, FIFO per worker, results in the reactor thread;
 * a cancelled job's late result is swallowed. */
static struct deferred_result square(void *arg)
{
    intptr_t v = (intptr_t)arg;
    return deferred_ok((void *)(v * v));
}

static struct deferred_result slow(void *arg)
{
    poll(NULL, 0, 20);
    return deferred_ok(arg);
}

struct pool_ctx { long sum; int left; struct reactor *r; };

static struct deferred_result add_result(struct deferred_result r, void *arg)
{
    struct pool_ctx *p = arg;
    p->sum += (intptr_t)r.value;
    if (--p->left == 0)
        reactor_stop(p->r);
    return deferred_ok(NULL);
}

static struct deferred_result swallow(struct deferred_result r, void *arg)
{
    (void)r;
    (void)arg;
    return deferred_ok(NULL);
}

static void test_threadpool(void **state)
{
    (void)state;
    struct reactor *r = reactor_new();
    struct threadpool *pool = threadpool_new(r, 3);
    enum { N = 200 };
    struct pool_ctx p = { 0, N, r };
    long want = 0;
    for (intptr_t i = 0; i < N; i++) {
        struct deferred *d = threadpool_defer_to_thread(pool, square, (void *)i);
        deferred_add_callback(d, add_result, &p);
        deferred_unref(d);
        want += (long)(i * i);
    }
    run_bounded(r, 5.0);
    assert_int_equal(p.left, 0);
    assert_int_equal(p.sum, want);

    struct deferred *d = threadpool_defer_to_thread(pool, slow, (void *)7);
    deferred_add_both(d, record_type, NULL);
    deferred_cancel(d);
    assert_ptr_equal(cancelled_type, &FAILURE_CANCELLED);
    reactor_run(r);                      /* returns once the job is delivered (swallowed) */
    deferred_add_errback(d, swallow, NULL);
    deferred_unref(d);
    threadpool_free(pool);
    reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_c55_defer_to_thread),
        cmocka_unit_test(test_threadpool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
