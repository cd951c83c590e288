/* Unit tests for lib/deferred, with no reactor: one test per case of the
 * conformance checklist (shared/spec/deferred.md §8), named test_cNN_..., each
 * asserting the observable result the checklist gives, then stress tests.
 * The checklist's other cases live beside the code they test: 50-51 (Failure)
 * in test_failure.c, 54 and 60 (the reactor) in test_reactor.c, 55
 * (deferToThread) in test_threadpool.c.
 *
 * Cases left out, and why:
 *   52     inlineCallbacks / coroutines: Python generators, no C counterpart
 *          (the C design chains explicit callbacks).
 *   56-59  twisted.mail.smtp sendmail() behaviour: they belong to the SMTP
 *          client and the async model, not to the Deferred library.
 * Cases with a C form that differs from Python's:
 *   6      errback() without a Failure does not exist in C (no "current
 *          exception"); the C test checks that an invalid firing (with a
 *          Deferred) is refused and leaves the Deferred unfired.
 *   25     returning the Deferred itself becomes a FAILURE_SELF_RETURN Failure
 *          (the spec's recommended divergence) instead of a silent wedge.
 *   30     unpause() without pause() aborts (checked in a child process).
 *
 * MAILBENCH_STRESS_N scales the stress sizes (default: the full 1,000,000). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deferred.h"
#include "failure.h"

/* Test exception family: LookupError <- KeyError, and ValueError. */
static FAILURE_TYPE_DEFINE(VALUE_ERROR, "builtins.ValueError", &FAILURE_ERROR);
static FAILURE_TYPE_DEFINE(LOOKUP_ERROR, "builtins.LookupError", &FAILURE_ERROR);
static FAILURE_TYPE_DEFINE(KEY_ERROR, "builtins.KeyError", &LOOKUP_ERROR);

#define V(x) ((void *)(intptr_t)(x))
#define I(p) ((intptr_t)(p))

/* ---- helpers ---------------------------------------------------------------- */

/* Unhandled-error reports, counted through the hook. */
static int unhandled;
static const struct failure_type *unhandled_type;

static void count_unhandled(const struct failure *f, void *arg)
{
    (void)arg;
    unhandled++;
    unhandled_type = f->type;
}

static int setup(void **state)
{
    (void)state;
    unhandled = 0;
    unhandled_type = NULL;
    deferred_set_unhandled_hook(count_unhandled, NULL);
    return 0;
}

/* A trace of calls: which function ran, in order, with what. */
struct trace {
    int n;                          /* entries used */
    char tag[32];                   /* one letter per call */
    struct deferred_result seen[32]; /* the result each received */
    void *arg[32];                  /* the extra argument each received */
    /* A received Failure may be freed once the chain moves on: keep what the
     * assertions need. */
    const struct failure_type *ftype[32];   /* its type */
    const struct failure_type *fcause[32];  /* its cause's type */
    int fcode[32];                          /* its code */
};

static void trace_add(struct trace *t, char tag, struct deferred_result r, void *arg)
{
    assert_true(t->n < 31);
    t->tag[t->n] = tag;
    t->seen[t->n] = r;
    t->arg[t->n] = arg;
    if (r.kind == DEFERRED_FAILURE) {
        t->ftype[t->n] = r.failure->type;
        t->fcause[t->n] = r.failure->cause ? r.failure->cause->type : NULL;
        t->fcode[t->n] = r.failure->code;
    }
    t->n++;
    t->tag[t->n] = 0;
}

/* Every helper takes a `struct probe *` as its argument. */
struct probe {
    struct trace *t;                /* where to record */
    char tag;                       /* this function's letter */
    struct deferred_result ret;     /* what to return (kind DEFERRED_VALUE with .value) */
    bool pass;                      /* return the received result instead of ret */
};

static struct deferred_result rec(struct deferred_result r, void *arg)
{
    struct probe *p = arg;
    trace_add(p->t, p->tag, r, arg);
    if (p->pass)
        return r;
    if (p->ret.kind == DEFERRED_FAILURE)
        failure_ref(p->ret.failure);      /* each return hands over one reference */
    if (p->ret.kind == DEFERRED_DEFERRED)
        deferred_ref(p->ret.deferred);
    return p->ret;
}

#define PROBE(tr, letter) (&(struct probe){ (tr), (letter), deferred_ok(NULL), true })
#define PROBE_RET(tr, letter, res) (&(struct probe){ (tr), (letter), (res), false })

static struct deferred_result add1(struct deferred_result r, void *arg)
{
    (void)arg;
    return deferred_ok(V(I(r.value) + 1));
}

static struct deferred_result times2(struct deferred_result r, void *arg)
{
    (void)arg;
    return deferred_ok(V(I(r.value) * 2));
}

/* An errback that swallows any Failure (returns NULL). */
static struct deferred_result swallow(struct deferred_result r, void *arg)
{
    (void)r;
    (void)arg;
    return deferred_ok(NULL);
}

static struct failure *ferr(const struct failure_type *t, const char *msg)
{
    return failure_new(t, 0, "%s", msg);
}

/* Release a Deferred expected to hold a handled result. */
static void drop(struct deferred *d)
{
    deferred_unref(d);
}

/* ---- state machine (1-17) ---------------------------------------------------- */

static void test_c01_new_deferred_queues(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *d = deferred_new();
    assert_ptr_equal(deferred_add_callback(d, rec, PROBE(&t, 'f')), d);
    assert_false(deferred_called(d));
    assert_int_equal(deferred_paused(d), 0);
    assert_int_equal(t.n, 0);
    deferred_callback(d, NULL);
    drop(d);
}

static struct deferred_result g_times10(struct deferred_result r, void *arg)
{
    struct trace *t = arg;
    trace_add(t, 'g', r, arg);
    return deferred_ok(V(I(r.value) * 10));
}

static void test_c02_callback_args_and_result(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *d = deferred_new();
    deferred_add_callback(d, add1, NULL);
    deferred_add_callback(d, g_times10, &t);
    deferred_callback(d, V(1));
    assert_int_equal(t.n, 1);
    assert_int_equal(I(t.seen[0].value), 2);
    assert_ptr_equal(t.arg[0], &t);       /* the extra argument arrives */
    assert_int_equal(I(deferred_current_result(d).value), 20);
    drop(d);
}

static void test_c03_succeed_runs_at_once(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *d = deferred_succeed(V(5));
    deferred_add_callback(d, rec, PROBE_RET(&t, 'f', deferred_ok(V(6))));
    assert_int_equal(t.n, 1);             /* ran before add_callback returned */
    assert_int_equal(I(t.seen[0].value), 5);
    assert_int_equal(I(deferred_current_result(d).value), 6);
    drop(d);
}

static void test_c04_fire_twice(void **state)
{
    (void)state;
    for (int combo = 0; combo < 4; combo++) {
        struct trace t = { 0 };
        struct deferred *d = deferred_new();
        deferred_add_callbacks(d, rec, PROBE(&t, 'c'), swallow, NULL);
        if (combo & 2)
            assert_int_equal(deferred_errback(d, ferr(&VALUE_ERROR, "x")), 0);
        else
            assert_int_equal(deferred_callback(d, V(1)), 0);
        struct deferred_result before = deferred_current_result(d);
        int rc = (combo & 1) ? deferred_errback(d, ferr(&VALUE_ERROR, "y"))
                             : deferred_callback(d, V(2));
        assert_int_equal(rc, DEFERRED_E_ALREADY_CALLED);
        assert_int_equal(t.n, (combo & 2) ? 0 : 1);
        assert_int_equal(deferred_current_result(d).kind, before.kind);
        assert_ptr_equal(deferred_current_result(d).value, before.value);
        drop(d);
    }
    assert_int_equal(unhandled, 0);
}

static void test_c05_errback_failure_identity(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *d = deferred_new();
    deferred_add_errback(d, rec, PROBE_RET(&t, 'e', deferred_ok(NULL)));
    struct failure *f = ferr(&VALUE_ERROR, "x");
    deferred_errback(d, f);
    assert_int_equal(t.n, 1);
    assert_int_equal(t.seen[0].kind, DEFERRED_FAILURE);
    assert_ptr_equal(t.seen[0].failure, f);
    assert_ptr_equal(t.ftype[0], &VALUE_ERROR);
    assert_int_equal(deferred_current_result(d).kind, DEFERRED_VALUE);
    assert_null(deferred_current_result(d).value);
    drop(d);
    assert_int_equal(unhandled, 0);
}

static void test_c06_invalid_firing_leaves_unfired(void **state)
{
    (void)state;
    /* C has no "current exception": the only invalid firing is with a Deferred. */
    struct deferred *d = deferred_new(), *other = deferred_new();
    assert_int_equal(deferred_fire(d, deferred_wait(other)), DEFERRED_E_INVALID);
    assert_false(deferred_called(d));
    drop(d);
    drop(other);
}

static void test_c07_callback_with_failure_takes_error_path(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *d = deferred_new();
    deferred_add_callbacks(d, rec, PROBE(&t, 'c'), rec, PROBE_RET(&t, 'e', deferred_ok(NULL)));
    deferred_fire(d, deferred_err(ferr(&KEY_ERROR, "k")));
    assert_string_equal(t.tag, "e");
    drop(d);
}

static void test_c08_raise_skips_callback_only_pairs(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct failure *f = ferr(&VALUE_ERROR, "raised");
    struct deferred *d = deferred_new();
    deferred_add_callback(d, rec, PROBE_RET(&t, 'r', deferred_err(f)));
    deferred_add_callback(d, rec, PROBE(&t, 's'));
    deferred_add_errback(d, rec, PROBE_RET(&t, 'e', deferred_ok(NULL)));
    deferred_callback(d, V(1));
    assert_string_equal(t.tag, "re");
    assert_ptr_equal(t.seen[1].failure, f);
    failure_unref(f);
    drop(d);
}

static void test_c09_returned_failure_identity(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct failure *f = ferr(&VALUE_ERROR, "F");
    struct deferred *d = deferred_new();
    deferred_add_callback(d, rec, PROBE_RET(&t, 'c', deferred_err(f)));
    deferred_add_errback(d, rec, PROBE_RET(&t, 'e', deferred_ok(NULL)));
    deferred_callback(d, NULL);
    assert_ptr_equal(t.seen[1].failure, f);
    failure_unref(f);
    drop(d);
}

static void test_c10_errback_recovers(void **state)
{
    (void)state;
    for (int k = 0; k < 2; k++) {
        struct trace t = { 0 };
        void *rv = k ? NULL : (void *)"recovered";
        struct deferred *d = deferred_new();
        deferred_add_errback(d, rec, PROBE_RET(&t, 'e', deferred_ok(rv)));
        deferred_add_callback(d, rec, PROBE(&t, 'c'));
        deferred_errback(d, ferr(&VALUE_ERROR, "x"));
        assert_string_equal(t.tag, "ec");
        assert_int_equal(t.seen[1].kind, DEFERRED_VALUE);
        assert_ptr_equal(t.seen[1].value, rv);
        drop(d);
    }
    assert_int_equal(unhandled, 0);
}

static void test_c11_errback_raises_new_error(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct failure *k = ferr(&KEY_ERROR, "k");
    struct deferred *d = deferred_new();
    deferred_add_errback(d, rec, PROBE_RET(&t, 'e', deferred_err(k)));
    deferred_add_errback(d, rec, PROBE_RET(&t, 'f', deferred_ok(NULL)));
    deferred_errback(d, ferr(&VALUE_ERROR, "v"));
    assert_ptr_equal(t.ftype[0], &VALUE_ERROR);
    assert_ptr_equal(t.ftype[1], &KEY_ERROR);
    failure_unref(k);
    drop(d);
}

static void test_c12_one_side_per_pair(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct failure *f = ferr(&VALUE_ERROR, "x");
    struct deferred *d = deferred_new();
    deferred_add_callbacks(d, rec, PROBE_RET(&t, 'c', deferred_err(f)), rec, PROBE(&t, '1'));
    deferred_add_callbacks(d, rec, PROBE(&t, '2'), rec, PROBE_RET(&t, 'E', deferred_ok(NULL)));
    deferred_callback(d, NULL);
    assert_string_equal(t.tag, "cE");
    failure_unref(f);
    drop(d);
}

static void test_c13_passthrough_same_object(void **state)
{
    (void)state;
    struct trace t = { 0 };
    static int v;
    struct deferred *d = deferred_succeed(&v);
    deferred_add_errback(d, rec, PROBE(&t, 'x'));
    assert_ptr_equal(deferred_current_result(d).value, &v);
    drop(d);
    struct failure *f = ferr(&VALUE_ERROR, "F");
    d = deferred_fail(failure_ref(f));
    deferred_add_callback(d, rec, PROBE(&t, 'x'));
    assert_int_equal(deferred_current_result(d).kind, DEFERRED_FAILURE);
    assert_ptr_equal(deferred_current_result(d).failure, f);
    assert_int_equal(t.n, 0);
    deferred_add_errback(d, swallow, NULL);
    drop(d);
    failure_unref(f);
    assert_int_equal(unhandled, 0);
}

static void test_c14_add_both(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *d = deferred_succeed(V(3));
    deferred_add_both(d, rec, PROBE(&t, 'b'));
    drop(d);
    d = deferred_fail(ferr(&VALUE_ERROR, "x"));
    deferred_add_both(d, rec, PROBE_RET(&t, 'b', deferred_ok(NULL)));
    drop(d);
    assert_string_equal(t.tag, "bb");
    assert_int_equal(t.seen[0].kind, DEFERRED_VALUE);
    assert_int_equal(I(t.seen[0].value), 3);
    assert_int_equal(t.seen[1].kind, DEFERRED_FAILURE);
}

/* cb1 appends cb3 to its own Deferred. */
struct c15_ctx { struct deferred *d; struct trace t; };

static struct deferred_result c15_cb3(struct deferred_result r, void *arg)
{
    struct c15_ctx *c = arg;
    trace_add(&c->t, '3', r, arg);
    return r;
}

static struct deferred_result c15_cb1(struct deferred_result r, void *arg)
{
    struct c15_ctx *c = arg;
    deferred_add_callback(c->d, c15_cb3, c);
    trace_add(&c->t, '1', r, arg);        /* cb3 has not run yet: we finish first */
    return r;
}

static struct deferred_result c15_cb2(struct deferred_result r, void *arg)
{
    struct c15_ctx *c = arg;
    trace_add(&c->t, '2', r, arg);
    return r;
}

static void test_c15_callback_adds_to_own_deferred(void **state)
{
    (void)state;
    struct c15_ctx c = { deferred_new(), { 0 } };
    deferred_add_callback(c.d, c15_cb1, &c);
    deferred_add_callback(c.d, c15_cb2, &c);
    deferred_callback(c.d, NULL);
    assert_string_equal(c.t.tag, "123");
    drop(c.d);
}

static void test_c16_unhandled_reported_once(void **state)
{
    (void)state;
    struct deferred *d = deferred_new();
    deferred_errback(d, ferr(&VALUE_ERROR, "lost"));
    assert_int_equal(unhandled, 0);       /* nothing while alive */
    drop(d);
    assert_int_equal(unhandled, 1);
    assert_ptr_equal(unhandled_type, &VALUE_ERROR);
}

static void test_c17_handled_not_reported(void **state)
{
    (void)state;
    struct deferred *d = deferred_new();
    deferred_add_errback(d, swallow, NULL);
    deferred_errback(d, ferr(&VALUE_ERROR, "x"));
    drop(d);
    d = deferred_fail(ferr(&VALUE_ERROR, "later"));
    deferred_add_errback(d, swallow, NULL);   /* handled after a delay, before release */
    drop(d);
    assert_int_equal(unhandled, 0);
}

/* ---- chaining (18-27) ------------------------------------------------------- */

static void test_c18_outer_waits_on_unfired_inner(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *outer = deferred_new(), *inner = deferred_new();
    deferred_add_callback(outer, rec, PROBE_RET(&t, 'a', deferred_wait(inner)));
    deferred_add_callback(outer, rec, PROBE(&t, 'b'));
    deferred_callback(outer, NULL);
    assert_int_equal(deferred_paused(outer), 1);
    assert_string_equal(t.tag, "a");
    deferred_callback(inner, "i");
    assert_string_equal(t.tag, "ab");
    assert_string_equal(t.seen[1].value, "i");
    assert_int_equal(deferred_paused(outer), 0);
    drop(inner);
    drop(outer);
}

static void test_c19_inner_left_with_none(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *outer = deferred_new(), *inner = deferred_new();
    deferred_add_callback(outer, rec, PROBE_RET(&t, 'a', deferred_wait(inner)));
    deferred_add_callback(outer, rec, PROBE(&t, 'b'));
    deferred_callback(outer, NULL);
    deferred_callback(inner, "i");
    deferred_add_callback(inner, rec, PROBE(&t, 'l'));    /* added after the link */
    assert_string_equal(t.tag, "abl");
    assert_null(t.seen[2].value);
    assert_null(deferred_current_result(inner).value);
    assert_string_equal(deferred_current_result(outer).value, "i");
    drop(inner);
    drop(outer);
}

static void test_c20_inner_already_fired(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *outer = deferred_new(), *inner = deferred_succeed("ready");
    deferred_add_callback(outer, rec, PROBE_RET(&t, 'a', deferred_wait(inner)));
    deferred_callback(outer, NULL);
    assert_string_equal(deferred_current_result(outer).value, "ready");
    assert_int_equal(deferred_current_result(inner).kind, DEFERRED_VALUE);
    assert_null(deferred_current_result(inner).value);
    drop(inner);
    drop(outer);
}

static void test_c21_inner_failure_moves_to_outer(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *outer = deferred_new(), *inner = deferred_new();
    deferred_add_callback(outer, rec, PROBE_RET(&t, 'a', deferred_wait(inner)));
    deferred_add_errback(outer, rec, PROBE_RET(&t, 'e', deferred_ok(NULL)));
    deferred_callback(outer, NULL);
    deferred_errback(inner, ferr(&VALUE_ERROR, "v"));
    assert_string_equal(t.tag, "ae");
    assert_ptr_equal(t.ftype[1], &VALUE_ERROR);
    assert_null(deferred_current_result(inner).value);
    drop(inner);
    drop(outer);
    assert_int_equal(unhandled, 0);
}

static void test_c22_inner_callbacks_run_first(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *outer = deferred_new(), *inner = deferred_new();
    deferred_add_callback(inner, times2, NULL);
    deferred_add_callback(outer, rec, PROBE_RET(&t, 'a', deferred_wait(inner)));
    deferred_add_callback(outer, rec, PROBE(&t, 'b'));
    deferred_callback(outer, NULL);
    deferred_callback(inner, V(21));
    assert_int_equal(I(t.seen[1].value), 42);
    drop(inner);
    drop(outer);
}

static void test_c23_transitive_chain(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *a = deferred_new(), *b = deferred_new(), *c = deferred_new();
    deferred_add_callback(a, rec, PROBE_RET(&t, 'x', deferred_wait(b)));
    deferred_add_callback(a, rec, PROBE(&t, 'A'));
    deferred_add_callback(b, rec, PROBE_RET(&t, 'y', deferred_wait(c)));
    deferred_add_callback(b, rec, PROBE_RET(&t, 'B', deferred_ok("b-value")));
    deferred_callback(a, NULL);
    deferred_callback(b, NULL);
    deferred_callback(c, "c");
    assert_string_equal(t.tag, "xyBA");
    assert_string_equal(t.seen[2].value, "c");
    assert_string_equal(t.seen[3].value, "b-value");
    drop(a);
    drop(b);
    drop(c);
}

static void test_c24_errback_returns_deferred(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *d = deferred_new(), *rescue = deferred_new();
    deferred_add_errback(d, rec, PROBE_RET(&t, 'e', deferred_wait(rescue)));
    deferred_add_callback(d, rec, PROBE(&t, 'c'));
    deferred_errback(d, ferr(&VALUE_ERROR, "x"));
    deferred_callback(rescue, "rescued");
    assert_string_equal(t.tag, "ec");
    assert_string_equal(t.seen[1].value, "rescued");
    drop(rescue);
    drop(d);
    assert_int_equal(unhandled, 0);
}

static struct deferred_result return_self(struct deferred_result r, void *arg)
{
    (void)r;
    return deferred_wait(deferred_ref(arg));
}

static void test_c25_return_self_is_failure(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *d = deferred_new();
    deferred_add_callback(d, return_self, d);
    deferred_add_callback(d, rec, PROBE(&t, 'c'));
    deferred_add_errback(d, rec, PROBE_RET(&t, 'e', deferred_ok(NULL)));
    deferred_callback(d, NULL);
    assert_int_equal(deferred_paused(d), 0);   /* divergence: no wedge */
    assert_string_equal(t.tag, "e");
    assert_ptr_equal(t.ftype[0], &FAILURE_SELF_RETURN);
    drop(d);
}

static void test_c26_paused_inner(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *outer = deferred_new(), *inner = deferred_new();
    deferred_pause(inner);
    deferred_callback(inner, "iv");
    deferred_add_callback(outer, rec, PROBE_RET(&t, 'a', deferred_wait(inner)));
    deferred_add_callback(outer, rec, PROBE(&t, 'b'));
    deferred_callback(outer, NULL);
    assert_string_equal(t.tag, "a");
    assert_int_equal(deferred_paused(outer), 1);
    deferred_unpause(inner);
    assert_string_equal(t.tag, "ab");
    assert_string_equal(t.seen[1].value, "iv");
    drop(inner);
    drop(outer);
}

static void test_c27_chain_deferred(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *d1 = deferred_new(), *d2 = deferred_new();
    deferred_add_callbacks(d1, deferred_chain_cb, d2, deferred_chain_cb, d2);
    deferred_add_callback(d2, rec, PROBE(&t, 'c'));
    deferred_callback(d1, "v");
    assert_string_equal(t.seen[0].value, "v");
    assert_null(deferred_current_result(d1).value);
    drop(d1);
    drop(d2);
}

/* ---- pause (28-30) -------------------------------------------------------- */

static void test_c28_pause_then_fire(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *d = deferred_new();
    deferred_add_callback(d, rec, PROBE(&t, 'c'));
    deferred_pause(d);
    deferred_callback(d, V(1));
    assert_true(deferred_called(d));
    assert_int_equal(t.n, 0);
    deferred_unpause(d);
    assert_int_equal(t.n, 1);
    assert_int_equal(I(t.seen[0].value), 1);
    drop(d);
}

static void test_c29_nested_pause(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *d = deferred_succeed(V(1));
    deferred_pause(d);
    deferred_pause(d);
    deferred_add_callback(d, rec, PROBE(&t, 'f'));
    deferred_unpause(d);
    assert_int_equal(t.n, 0);
    deferred_unpause(d);
    assert_int_equal(t.n, 1);
    assert_int_equal(I(t.seen[0].value), 1);
    drop(d);
}

static void test_c30_pause_unpause_before_fire(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *d = deferred_new();
    deferred_pause(d);
    deferred_unpause(d);
    deferred_add_callback(d, rec, PROBE(&t, 'c'));
    deferred_callback(d, V(1));
    assert_int_equal(t.n, 1);
    drop(d);
    /* Unbalanced unpause: Twisted goes to -1 and wedges; C aborts. */
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(2);
        deferred_unpause(deferred_new());
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

/* ---- cancel (31-36) ---------------------------------------------------------- */

static struct trace cancel_trace;

static struct failure *canceller_noop(struct deferred *d, void *arg)
{
    trace_add(&cancel_trace, 'k', deferred_ok(d), arg);
    return NULL;
}

static struct failure *canceller_value(struct deferred *d, void *arg)
{
    deferred_callback(d, arg);
    return NULL;
}

static struct failure *canceller_keyerror(struct deferred *d, void *arg)
{
    (void)arg;
    deferred_errback(d, ferr(&KEY_ERROR, "from canceller"));
    return NULL;
}

static struct failure *canceller_raises(struct deferred *d, void *arg)
{
    (void)d;
    (void)arg;
    return ferr(&KEY_ERROR, "canceller raised");
}

static void test_c31_cancel_without_canceller(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *d = deferred_new();
    deferred_add_errback(d, rec, PROBE_RET(&t, 'e', deferred_ok(NULL)));
    assert_null(deferred_cancel(d));
    assert_ptr_equal(t.ftype[0], &FAILURE_CANCELLED);
    assert_int_equal(deferred_callback(d, "late"), 0);     /* silently ignored */
    assert_null(deferred_current_result(d).value);
    assert_int_equal(deferred_callback(d, "later"), DEFERRED_E_ALREADY_CALLED);
    drop(d);
}

static void test_c32_canceller_does_nothing(void **state)
{
    (void)state;
    struct trace t = { 0 };
    memset(&cancel_trace, 0, sizeof cancel_trace);
    struct deferred *d = deferred_new_cancellable(canceller_noop, NULL);
    deferred_add_errback(d, rec, PROBE_RET(&t, 'e', deferred_ok(NULL)));
    assert_null(deferred_cancel(d));
    assert_int_equal(cancel_trace.n, 1);
    assert_ptr_equal(cancel_trace.seen[0].value, d);
    assert_ptr_equal(t.ftype[0], &FAILURE_CANCELLED);
    assert_int_equal(deferred_callback(d, "late"), DEFERRED_E_ALREADY_CALLED);
    drop(d);
}

static void test_c33_canceller_fires(void **state)
{
    (void)state;
    struct deferred *d = deferred_new_cancellable(canceller_value, "cancel-value");
    assert_null(deferred_cancel(d));
    assert_string_equal(deferred_current_result(d).value, "cancel-value");
    drop(d);
    struct trace t = { 0 };
    d = deferred_new_cancellable(canceller_keyerror, NULL);
    deferred_add_errback(d, rec, PROBE_RET(&t, 'e', deferred_ok(NULL)));
    deferred_cancel(d);
    assert_ptr_equal(t.ftype[0], &KEY_ERROR);
    drop(d);
}

static void test_c34_cancel_after_fire_and_twice(void **state)
{
    (void)state;
    memset(&cancel_trace, 0, sizeof cancel_trace);
    struct deferred *d = deferred_new_cancellable(canceller_noop, NULL);
    deferred_callback(d, "v");
    assert_null(deferred_cancel(d));
    assert_int_equal(cancel_trace.n, 0);
    assert_string_equal(deferred_current_result(d).value, "v");
    drop(d);
    d = deferred_new_cancellable(canceller_noop, NULL);
    deferred_add_errback(d, swallow, NULL);
    assert_null(deferred_cancel(d));
    assert_null(deferred_cancel(d));
    assert_int_equal(cancel_trace.n, 1);
    drop(d);
}

static void test_c35_canceller_raises_and_paused(void **state)
{
    (void)state;
    struct deferred *d = deferred_new_cancellable(canceller_raises, NULL);
    struct failure *err = deferred_cancel(d);
    assert_non_null(err);
    assert_ptr_equal(err->type, &KEY_ERROR);
    assert_false(deferred_called(d));
    failure_unref(err);
    drop(d);
    memset(&cancel_trace, 0, sizeof cancel_trace);
    d = deferred_new_cancellable(canceller_noop, NULL);
    deferred_callback(d, "v");
    deferred_pause(d);
    assert_null(deferred_cancel(d));
    assert_int_equal(cancel_trace.n, 0);
    assert_string_equal(deferred_current_result(d).value, "v");
    deferred_unpause(d);
    drop(d);
}

static void test_c36_cancel_forwards_to_inner(void **state)
{
    (void)state;
    struct trace t = { 0 };
    memset(&cancel_trace, 0, sizeof cancel_trace);
    struct deferred *outer = deferred_new_cancellable(canceller_noop, "outer");
    struct deferred *inner = deferred_new_cancellable(canceller_noop, "inner");
    deferred_add_callback(outer, rec, PROBE_RET(&t, 'a', deferred_wait(inner)));
    deferred_add_errback(outer, rec, PROBE_RET(&t, 'e', deferred_ok(NULL)));
    deferred_callback(outer, NULL);
    deferred_cancel(outer);
    assert_int_equal(cancel_trace.n, 1);
    assert_string_equal(cancel_trace.arg[0], "inner");
    assert_ptr_equal(t.ftype[1], &FAILURE_CANCELLED);
    drop(inner);
    drop(outer);
}

/* ---- addTimeout (37-41) ------------------------------------------------------ */

static void test_c37_timeout_fires(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred_clock *clock = deferred_fake_clock_new();
    struct deferred *d = deferred_new();
    deferred_add_timeout(d, 10, clock);
    deferred_add_errback(d, rec, PROBE(&t, 'e'));
    deferred_fake_clock_advance(clock, 9.999);
    assert_false(deferred_called(d));
    deferred_fake_clock_advance(clock, 0.001);
    assert_true(deferred_called(d));
    assert_ptr_equal(t.ftype[0], &FAILURE_TIMEOUT);
    const char *msg = deferred_current_result(d).failure->message; /* (10, 'Deferred') */
    assert_non_null(strstr(msg, "10"));
    assert_non_null(strstr(msg, "Deferred"));
    assert_int_equal(deferred_fake_clock_pending(clock), 0);
    deferred_add_errback(d, swallow, NULL);
    drop(d);
    deferred_fake_clock_free(clock);
}

static void test_c38_timeout_cancelled_by_result(void **state)
{
    (void)state;
    struct deferred_clock *clock = deferred_fake_clock_new();
    struct deferred *d = deferred_new();
    deferred_add_timeout(d, 10, clock);
    deferred_callback(d, "ok");
    assert_int_equal(deferred_fake_clock_pending(clock), 0);
    deferred_fake_clock_advance(clock, 100);
    assert_string_equal(deferred_current_result(d).value, "ok");
    drop(d);
    deferred_fake_clock_free(clock);
}

static struct deferred_result trap_cancelled(struct deferred_result r, void *arg)
{
    (void)arg;
    if (!failure_trap(r.failure, &FAILURE_CANCELLED))
        return r;
    return deferred_ok("swallowed");
}

static void test_c39_before_sees_cancel_after_sees_timeout(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred_clock *clock = deferred_fake_clock_new();
    struct deferred *d = deferred_new();
    deferred_add_errback(d, rec, PROBE(&t, 'b'));
    deferred_add_timeout(d, 5, clock);
    deferred_add_errback(d, rec, PROBE_RET(&t, 'a', deferred_ok(NULL)));
    deferred_fake_clock_advance(clock, 5);
    assert_string_equal(t.tag, "ba");
    assert_ptr_equal(t.ftype[0], &FAILURE_CANCELLED);
    assert_ptr_equal(t.ftype[1], &FAILURE_TIMEOUT);
    drop(d);
    d = deferred_new();
    deferred_add_errback(d, trap_cancelled, NULL);
    deferred_add_timeout(d, 5, clock);
    deferred_fake_clock_advance(clock, 5);
    assert_int_equal(deferred_current_result(d).kind, DEFERRED_VALUE);
    assert_string_equal(deferred_current_result(d).value, "swallowed");
    drop(d);
    deferred_fake_clock_free(clock);
}

static void test_c40_timeout_canceller_value(void **state)
{
    (void)state;
    struct deferred_clock *clock = deferred_fake_clock_new();
    struct deferred *d = deferred_new_cancellable(canceller_value, "from-canceller");
    deferred_add_timeout(d, 1, clock);
    deferred_fake_clock_advance(clock, 1);
    assert_int_equal(deferred_current_result(d).kind, DEFERRED_VALUE);
    assert_string_equal(deferred_current_result(d).value, "from-canceller");
    drop(d);
    deferred_fake_clock_free(clock);
}

static void test_c41_manual_cancel_is_not_timeout(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred_clock *clock = deferred_fake_clock_new();
    struct deferred *d = deferred_new();
    deferred_add_timeout(d, 10, clock);
    deferred_add_errback(d, rec, PROBE_RET(&t, 'e', deferred_ok(NULL)));
    deferred_cancel(d);
    assert_ptr_equal(t.ftype[0], &FAILURE_CANCELLED);
    assert_int_equal(deferred_fake_clock_pending(clock), 0);
    drop(d);
    deferred_fake_clock_free(clock);
}

/* ---- DeferredList and helpers (42-49) -------------------------------------- */

static void test_c42_list_input_order(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *m[3] = { deferred_new(), deferred_new(), deferred_new() };
    struct deferred *dl = deferred_list_new(m, 3, DEFERRED_LIST_CONSUME_ERRORS);
    deferred_add_callback(dl, rec, PROBE(&t, 'L'));
    deferred_callback(m[2], "C");
    deferred_errback(m[1], ferr(&VALUE_ERROR, "b"));
    assert_false(deferred_called(dl));
    deferred_callback(m[0], "A");
    assert_int_equal(t.n, 1);
    struct deferred_list_results *res = t.seen[0].value;
    assert_int_equal(res->n, 3);
    assert_true(res->items[0].success);
    assert_string_equal(res->items[0].result.value, "A");
    assert_false(res->items[1].success);
    assert_ptr_equal(res->items[1].result.failure->type, &VALUE_ERROR);
    assert_true(res->items[2].success);
    assert_string_equal(res->items[2].result.value, "C");
    for (int i = 0; i < 3; i++)
        drop(m[i]);
    drop(dl);
    assert_int_equal(unhandled, 0);
}

static void test_c43_list_empty_and_prefired(void **state)
{
    (void)state;
    struct deferred *dl = deferred_list_new(NULL, 0, 0);
    assert_true(deferred_called(dl));
    assert_int_equal(((struct deferred_list_results *)deferred_current_result(dl).value)->n, 0);
    drop(dl);
    struct deferred *m[2] = { deferred_succeed(V(1)), deferred_succeed(V(2)) };
    dl = deferred_list_new(m, 2, 0);
    assert_true(deferred_called(dl));
    struct deferred_list_results *res = deferred_current_result(dl).value;
    assert_true(res->items[0].success && I(res->items[0].result.value) == 1);
    assert_true(res->items[1].success && I(res->items[1].result.value) == 2);
    drop(dl);
    drop(m[0]);
    drop(m[1]);
    dl = deferred_list_new(NULL, 0, DEFERRED_LIST_FIRE_ON_ONE_CALLBACK);
    assert_false(deferred_called(dl));
    drop(dl);
}

static void test_c44_fire_on_one_callback(void **state)
{
    (void)state;
    struct deferred *m[2] = { deferred_new(), deferred_new() };
    struct deferred *dl = deferred_list_new(m, 2, DEFERRED_LIST_FIRE_ON_ONE_CALLBACK);
    deferred_callback(m[1], "B");
    struct deferred_list_first *first = deferred_current_result(dl).value;
    assert_string_equal(first->value, "B");
    assert_int_equal(first->index, 1);
    deferred_callback(m[0], "A");         /* ignored by the list */
    assert_ptr_equal(deferred_current_result(dl).value, first);
    drop(dl);
    drop(m[0]);
    drop(m[1]);
    /* All fail: success with the full list. */
    struct deferred *n[2] = { deferred_new(), deferred_new() };
    dl = deferred_list_new(n, 2, DEFERRED_LIST_FIRE_ON_ONE_CALLBACK | DEFERRED_LIST_CONSUME_ERRORS);
    deferred_errback(n[0], ferr(&VALUE_ERROR, "a"));
    deferred_errback(n[1], ferr(&VALUE_ERROR, "b"));
    assert_int_equal(deferred_current_result(dl).kind, DEFERRED_VALUE);
    struct deferred_list_results *res = deferred_current_result(dl).value;
    assert_int_equal(res->n, 2);
    assert_false(res->items[0].success || res->items[1].success);
    drop(dl);
    drop(n[0]);
    drop(n[1]);
    assert_int_equal(unhandled, 0);
}

static void test_c45_fire_on_one_errback(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred *m[2] = { deferred_new(), deferred_new() };
    struct deferred *dl = deferred_list_new(m, 2, DEFERRED_LIST_FIRE_ON_ONE_ERRBACK
                                                  | DEFERRED_LIST_CONSUME_ERRORS);
    deferred_add_errback(dl, rec, PROBE_RET(&t, 'e', deferred_ok(NULL)));
    deferred_errback(m[1], ferr(&KEY_ERROR, "k"));
    assert_ptr_equal(t.ftype[0], &FAILURE_FIRST_ERROR);
    assert_int_equal(t.fcode[0], 1);
    assert_ptr_equal(t.fcause[0], &KEY_ERROR);
    deferred_callback(m[0], NULL);
    drop(dl);
    drop(m[0]);
    drop(m[1]);
    assert_int_equal(unhandled, 0);
}

static void test_c46_list_consume_errors(void **state)
{
    (void)state;
    struct deferred *a = deferred_new();
    struct deferred *dl = deferred_list_new(&a, 1, 0);
    deferred_errback(a, ferr(&VALUE_ERROR, "x"));
    drop(dl);
    drop(a);
    assert_int_equal(unhandled, 1);
    a = deferred_new();
    dl = deferred_list_new(&a, 1, DEFERRED_LIST_CONSUME_ERRORS);
    deferred_errback(a, ferr(&VALUE_ERROR, "x"));
    assert_int_equal(deferred_current_result(a).kind, DEFERRED_VALUE);
    assert_null(deferred_current_result(a).value);
    drop(dl);
    drop(a);
    assert_int_equal(unhandled, 1);
}

static void test_c47_list_cancel(void **state)
{
    (void)state;
    struct deferred *m[2] = { deferred_new(), deferred_new() };
    struct deferred *dl = deferred_list_new(m, 2, DEFERRED_LIST_CONSUME_ERRORS);
    deferred_cancel(dl);
    struct deferred_list_results *res = deferred_current_result(dl).value;
    for (int i = 0; i < 2; i++) {
        assert_false(res->items[i].success);
        assert_ptr_equal(res->items[i].result.failure->type, &FAILURE_CANCELLED);
    }
    drop(dl);
    drop(m[0]);
    drop(m[1]);
}

static void test_c48_gather_results(void **state)
{
    (void)state;
    struct deferred *m[2] = { deferred_new(), deferred_new() };
    struct deferred *g = deferred_gather_results(m, 2, false);
    deferred_callback(m[1], V(2));
    deferred_callback(m[0], V(1));
    void **values = deferred_current_result(g).value;
    assert_int_equal(I(values[0]), 1);
    assert_int_equal(I(values[1]), 2);
    drop(g);
    drop(m[0]);
    drop(m[1]);

    struct trace t = { 0 };
    struct deferred *n[2] = { deferred_new(), deferred_new() };
    g = deferred_gather_results(n, 2, true);
    deferred_add_errback(g, rec, PROBE_RET(&t, 'e', deferred_ok(NULL)));
    deferred_errback(n[1], ferr(&KEY_ERROR, "k"));
    assert_ptr_equal(t.ftype[0], &FAILURE_FIRST_ERROR);
    assert_int_equal(t.fcode[0], 1);
    assert_ptr_equal(t.fcause[0], &KEY_ERROR);
    deferred_callback(n[0], NULL);
    drop(g);
    drop(n[0]);
    drop(n[1]);

    struct trace t2 = { 0 };
    struct deferred *p[2] = { deferred_new(), deferred_new() };
    g = deferred_gather_results(p, 2, true);
    deferred_add_errback(g, rec, PROBE_RET(&t2, 'e', deferred_ok(NULL)));
    deferred_cancel(g);
    assert_int_equal(t2.fcode[0], 0);
    assert_ptr_equal(t2.fcause[0], &FAILURE_CANCELLED);
    assert_true(deferred_called(p[1]));
    drop(g);
    drop(p[0]);
    drop(p[1]);
    assert_int_equal(unhandled, 0);
}

static struct deferred_result maybe_value(void *arg) { (void)arg; return deferred_ok(V(7)); }
static struct deferred_result maybe_fail(void *arg) { (void)arg; return deferred_err(ferr(&KEY_ERROR, "k")); }
static struct deferred_result maybe_deferred(void *arg) { return deferred_wait(deferred_ref(arg)); }

static void test_c49_maybe_deferred_succeed_fail(void **state)
{
    (void)state;
    struct deferred *d = deferred_maybe(maybe_value, NULL);
    assert_true(deferred_called(d));
    assert_int_equal(I(deferred_current_result(d).value), 7);
    drop(d);
    d = deferred_maybe(maybe_fail, NULL);
    assert_int_equal(deferred_current_result(d).kind, DEFERRED_FAILURE);
    assert_ptr_equal(deferred_current_result(d).failure->type, &KEY_ERROR);
    deferred_add_errback(d, swallow, NULL);
    drop(d);
    struct deferred *d0 = deferred_new();
    d = deferred_maybe(maybe_deferred, d0);
    assert_ptr_equal(d, d0);
    drop(d);
    deferred_callback(d0, NULL);
    drop(d0);
    d = deferred_succeed(V(3));
    assert_true(deferred_called(d));
    drop(d);
    d = deferred_fail(ferr(&VALUE_ERROR, "e"));
    assert_true(deferred_called(d));
    deferred_add_errback(d, swallow, NULL);
    drop(d);
    assert_int_equal(unhandled, 0);
}

/* 52: inlineCallbacks / coroutines — no C counterpart (see the header). */

/* ---- timers (53) ----------------------------------------------------------- */

struct c53_ctx { struct deferred_call *call; double ran_at; bool active_inside; struct deferred_clock *clock; };

static void c53_fn(void *arg)
{
    struct c53_ctx *c = arg;
    c->ran_at = deferred_clock_now(c->clock);
    c->active_inside = deferred_call_active(c->call);
}

static void test_c53_call_later_reset_cancel(void **state)
{
    (void)state;
    struct deferred_clock *clock = deferred_fake_clock_new();
    struct c53_ctx c = { NULL, -1, true, clock };
    c.call = deferred_call_later(clock, 5, c53_fn, &c);
    assert_int_equal(deferred_call_reset(c.call, 10), 0);
    deferred_fake_clock_advance(clock, 5);
    assert_true(c.ran_at < 0);
    deferred_fake_clock_advance(clock, 5);
    assert_true(c.ran_at == 10.0);
    assert_false(c.active_inside);
    assert_int_equal(deferred_call_cancel(c.call), DEFERRED_CALL_E_CALLED);
    deferred_call_unref(c.call);
    struct deferred_call *x = deferred_call_later(clock, 1, c53_fn, &c);
    assert_int_equal(deferred_call_cancel(x), 0);
    assert_int_equal(deferred_call_cancel(x), DEFERRED_CALL_E_CANCELLED);
    deferred_call_unref(x);
    deferred_fake_clock_free(clock);
}

/* ---- DeferredSemaphore ---------------------------------------------------- */

static void test_semaphore(void **state)
{
    (void)state;
    struct trace t = { 0 };
    struct deferred_semaphore *s = deferred_semaphore_new(2);
    struct deferred *a = deferred_semaphore_acquire(s), *b = deferred_semaphore_acquire(s);
    assert_true(deferred_called(a) && deferred_called(b));
    assert_int_equal(deferred_semaphore_tokens(s), 0);
    struct deferred *c = deferred_semaphore_acquire(s), *d = deferred_semaphore_acquire(s);
    struct deferred *e = deferred_semaphore_acquire(s);
    deferred_add_callback(c, rec, PROBE(&t, 'c'));
    deferred_add_callback(d, rec, PROBE(&t, 'd'));
    deferred_add_errback(e, rec, PROBE_RET(&t, 'x', deferred_ok(NULL)));
    assert_false(deferred_called(c));
    deferred_cancel(e);                   /* leaves the queue */
    deferred_semaphore_release(s);        /* to c, synchronously */
    assert_string_equal(t.tag, "xc");
    assert_ptr_equal(t.seen[1].value, s);
    deferred_semaphore_release(s);        /* to d */
    assert_string_equal(t.tag, "xcd");
    deferred_semaphore_release(s);
    deferred_semaphore_release(s);
    assert_int_equal(deferred_semaphore_tokens(s), 2);
    struct deferred *f = deferred_semaphore_acquire(s), *g = deferred_semaphore_acquire(s);
    struct deferred *h = deferred_semaphore_acquire(s);
    deferred_add_errback(h, swallow, NULL);
    deferred_semaphore_free(s);           /* h fails with CancelledError */
    assert_true(deferred_called(h));
    struct deferred *all[] = { a, b, c, d, e, f, g, h };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        drop(all[i]);
    assert_int_equal(unhandled, 0);
}

/* ---- stress --------------------------------------------------------------- */

static long stress_n(long full)
{
    const char *s = getenv("MAILBENCH_STRESS_N");
    long n = s ? atol(s) : full;
    return n > 0 && n < full ? n : full;
}

static struct deferred_result inc(struct deferred_result r, void *arg)
{
    (void)arg;
    return deferred_ok(V(I(r.value) + 1));
}

static void test_stress_long_chain(void **state)
{
    (void)state;
    long n = stress_n(1000000);
    struct deferred *d = deferred_new();
    for (long i = 0; i < n; i++)
        deferred_add_callback(d, inc, NULL);
    deferred_callback(d, V(0));
    assert_int_equal(I(deferred_current_result(d).value), n);
    /* And callbacks added after firing run at once, one by one. */
    for (long i = 0; i < n; i++)
        deferred_add_callback(d, inc, NULL);
    assert_int_equal(I(deferred_current_result(d).value), 2 * n);
    drop(d);
}

static struct deferred_result return_next(struct deferred_result r, void *arg)
{
    (void)r;
    return deferred_wait(deferred_ref(arg));
}

static void test_stress_deep_nesting(void **state)
{
    (void)state;
    long n = stress_n(100000);
    struct deferred **ds = malloc((size_t)n * sizeof *ds);
    for (long i = 0; i < n; i++)
        ds[i] = deferred_new();
    for (long i = 0; i + 1 < n; i++)
        deferred_add_callback(ds[i], return_next, ds[i + 1]);
    deferred_add_callback(ds[0], inc, NULL);
    /* d0 waits on d1, which waits on d2, ... then the innermost fires. */
    for (long i = 0; i + 1 < n; i++)
        deferred_callback(ds[i], NULL);
    for (long i = 0; i + 1 < n; i++)
        assert_true(deferred_waiting(ds[i]));
    deferred_callback(ds[n - 1], V(41));
    assert_int_equal(I(deferred_current_result(ds[0]).value), 42);
    for (long i = 0; i < n; i++)
        deferred_unref(ds[i]);
    free(ds);
    assert_int_equal(unhandled, 0);
}

static void test_stress_create_fire_free(void **state)
{
    (void)state;
    long n = stress_n(1000000);
    long sum = 0;
    for (long i = 0; i < n; i++) {
        struct deferred *d = deferred_new();
        deferred_add_callback(d, inc, NULL);
        if (i % 2)
            deferred_add_errback(d, swallow, NULL);
        if (i % 2)
            deferred_errback(d, ferr(&VALUE_ERROR, "x"));
        else
            deferred_callback(d, V(i));
        sum += I(deferred_current_result(d).value) != 0;
        deferred_unref(d);
    }
    assert_int_equal(sum, (n + 1) / 2);   /* even i: i + 1; odd i: recovered to NULL */
    assert_int_equal(unhandled, 0);
}

/* deferred_set_run_hook (--trace): before/after around each function a chain
 * calls, in order, with its input and output; a NULL token skips after;
 * pass-through sides (NULL) are not calls. */
static char hook_log[256];
static void *hook_before(deferred_fn fn, void *arg, struct deferred_result in)
{
    (void)fn;
    size_t n = strlen(hook_log);
    snprintf(hook_log + n, sizeof hook_log - n, "<%s:%s", (const char *)arg,
             deferred_is_failure(in) ? "F" : "V");
    return strcmp(arg, "skip") == 0 ? NULL : arg;
}
static void hook_after(void *token, struct deferred_result out)
{
    size_t n = strlen(hook_log);
    snprintf(hook_log + n, sizeof hook_log - n, "%s:%s>", (const char *)token,
             deferred_is_failure(out) ? "F" : "V");
}
static struct deferred_result to_fail(struct deferred_result r, void *arg)
{
    (void)r; (void)arg;
    return deferred_err(failure_new(&VALUE_ERROR, 0, "x"));
}
static struct deferred_result recover(struct deferred_result r, void *arg)
{
    (void)r; (void)arg;
    return deferred_ok(NULL);
}

static void test_run_hook(void **state)
{
    (void)state;
    hook_log[0] = '\0';
    deferred_set_run_hook(hook_before, hook_after);
    struct deferred *d = deferred_new();
    deferred_add_callback(d, to_fail, "a");
    deferred_add_callback(d, recover, "never");       /* skipped: a Failure */
    deferred_add_callback(d, recover, "skip");
    deferred_add_errback(d, recover, "b");
    deferred_add_both(d, recover, "skip");
    deferred_callback(d, NULL);
    deferred_set_run_hook(NULL, NULL);
    deferred_add_callback(d, recover, "c");           /* no hook any more */
    assert_string_equal(hook_log, "<a:Va:F><b:Fb:V><skip:V");
    deferred_unref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup(f, setup)
        T(test_c01_new_deferred_queues), T(test_c02_callback_args_and_result),
        T(test_c03_succeed_runs_at_once), T(test_c04_fire_twice),
        T(test_c05_errback_failure_identity), T(test_c06_invalid_firing_leaves_unfired),
        T(test_c07_callback_with_failure_takes_error_path), T(test_c08_raise_skips_callback_only_pairs),
        T(test_c09_returned_failure_identity), T(test_c10_errback_recovers),
        T(test_c11_errback_raises_new_error), T(test_c12_one_side_per_pair),
        T(test_c13_passthrough_same_object), T(test_c14_add_both),
        T(test_c15_callback_adds_to_own_deferred), T(test_c16_unhandled_reported_once),
        T(test_c17_handled_not_reported), T(test_c18_outer_waits_on_unfired_inner),
        T(test_c19_inner_left_with_none), T(test_c20_inner_already_fired),
        T(test_c21_inner_failure_moves_to_outer), T(test_c22_inner_callbacks_run_first),
        T(test_c23_transitive_chain), T(test_c24_errback_returns_deferred),
        T(test_c25_return_self_is_failure), T(test_c26_paused_inner),
        T(test_c27_chain_deferred), T(test_c28_pause_then_fire),
        T(test_c29_nested_pause), T(test_c30_pause_unpause_before_fire),
        T(test_c31_cancel_without_canceller), T(test_c32_canceller_does_nothing),
        T(test_c33_canceller_fires), T(test_c34_cancel_after_fire_and_twice),
        T(test_c35_canceller_raises_and_paused), T(test_c36_cancel_forwards_to_inner),
        T(test_c37_timeout_fires), T(test_c38_timeout_cancelled_by_result),
        T(test_c39_before_sees_cancel_after_sees_timeout), T(test_c40_timeout_canceller_value),
        T(test_c41_manual_cancel_is_not_timeout), T(test_c42_list_input_order),
        T(test_c43_list_empty_and_prefired), T(test_c44_fire_on_one_callback),
        T(test_c45_fire_on_one_errback), T(test_c46_list_consume_errors),
        T(test_c47_list_cancel), T(test_c48_gather_results),
        T(test_c49_maybe_deferred_succeed_fail),
        T(test_c53_call_later_reset_cancel), T(test_semaphore), T(test_stress_long_chain), T(test_stress_deep_nesting),
        T(test_stress_create_fire_free), T(test_run_hook),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
