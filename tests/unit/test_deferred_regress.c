/* Regression tests for defects found in lib/deferred and lib/reactor after
 * the conformance suite passed (issue 11).  Each test failed before its fix:
 * the memory-safety ones under `make asan` (and most also by their reference
 * counts in the plain build), the others by their assertions.  The expected
 * behaviour is Twisted 22.4's, checked with /usr/bin/python3 and twisted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "deferred.h"
#include "failure.h"
#include "reactor.h"
#include "unit_support.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#if !defined(HAVE_ASAN) && defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#endif
#ifdef HAVE_ASAN
#include <sanitizer/asan_interface.h>
#endif

static FAILURE_TYPE_DEFINE(VALUE_ERROR, "builtins.ValueError", &FAILURE_ERROR);


/* ---- 1. a callback of d1 fires d2, and d2 takes d1's Failure over ----------- */

struct takeover {
    struct deferred *d1, *d2;     /* d2's callback returns d1; d1's errback fires d2 */
    bool recover;                 /* d1's errback returns a value instead of the Failure */
    const struct failure_type *d2_saw;   /* what d2's errback received */
    char d2_msg[32];                     /* and its message */
};

static struct deferred_result return_d1(struct deferred_result r, void *arg)
{
    struct takeover *t = arg;
    (void)r;
    return deferred_wait(deferred_ref(t->d1));
}

static struct deferred_result d2_errback(struct deferred_result r, void *arg)
{
    struct takeover *t = arg;
    t->d2_saw = r.failure->type;
    snprintf(t->d2_msg, sizeof t->d2_msg, "%s", failure_message(r.failure));
    return deferred_ok("rec2");
}

static struct deferred_result d1_errback_fires_d2(struct deferred_result r, void *arg)
{
    struct takeover *t = arg;
    assert_int_equal(deferred_callback(t->d2, NULL), 0);   /* d2 now takes d1's result */
    return t->recover ? deferred_ok("ok") : r;
}

static void test_takeover_errback_recovers(void **state)
{
    (void)state;
    struct takeover t = { .recover = true };
    t.d1 = deferred_new();
    t.d2 = deferred_new();
    deferred_add_callback(t.d2, return_d1, &t);
    deferred_add_errback(t.d2, d2_errback, &t);
    deferred_add_errback(t.d1, d1_errback_fires_d2, &t);
    struct failure *f = failure_new(&VALUE_ERROR, 0, "boom");
    failure_ref(f);                       /* ours, to watch its count */
    deferred_errback(t.d1, f);
    /* Twisted: d2's errback gets the error, d1 goes on with "ok". */
    assert_ptr_equal(t.d2_saw, &VALUE_ERROR);
    assert_string_equal(t.d2_msg, "boom");
    assert_string_equal(deferred_current_result(t.d1).value, "ok");
    assert_string_equal(deferred_current_result(t.d2).value, "rec2");
    assert_int_equal(f->refs, 1);         /* only ours is left */
    failure_unref(f);
    deferred_unref(t.d1);
    deferred_unref(t.d2);
    assert_int_equal(unhandled, 0);
}

static void test_takeover_errback_returns_failure(void **state)
{
    (void)state;
    struct takeover t = { .recover = false };
    t.d1 = deferred_new();
    t.d2 = deferred_new();
    deferred_add_callback(t.d2, return_d1, &t);
    deferred_add_errback(t.d1, d1_errback_fires_d2, &t);
    struct failure *f = failure_new(&VALUE_ERROR, 0, "boom2");
    failure_ref(f);
    deferred_errback(t.d1, f);
    /* Twisted: both hold the same Failure, and each reports it once. */
    assert_true(deferred_is_failure(deferred_current_result(t.d1)));
    assert_true(deferred_is_failure(deferred_current_result(t.d2)));
    assert_ptr_equal(deferred_current_result(t.d1).failure, f);
    assert_ptr_equal(deferred_current_result(t.d2).failure, f);
    assert_int_equal(f->refs, 3);         /* d1, d2, ours */
    deferred_unref(t.d2);
    deferred_unref(t.d1);
    assert_int_equal(unhandled, 2);
    assert_int_equal(f->refs, 1);
    failure_unref(f);
}

/* ---- 2. chainDeferred into a Deferred that has already fired ---------------- */

static void test_chain_into_fired(void **state)
{
    (void)state;
    struct deferred *d1 = deferred_new();
    struct deferred *d2 = deferred_succeed("first");
    deferred_chain(d1, d2);
    deferred_unref(d2);                   /* deferred_chain keeps its own */
    deferred_callback(d1, "second");
    struct deferred_result r = deferred_current_result(d1);
    assert_true(deferred_is_failure(r));
    assert_ptr_equal(r.failure->type, &FAILURE_ALREADY_CALLED);
    deferred_add_errback(d1, NULL, NULL);
    deferred_unref(d1);
    assert_int_equal(unhandled, 1);       /* d1's AlreadyCalledError, never handled */

    /* The bare pair function gives the same. */
    unhandled = 0;
    d1 = deferred_new();
    d2 = deferred_succeed("first");
    deferred_add_callbacks(d1, deferred_chain_cb, d2, deferred_chain_cb, d2);
    deferred_errback(d1, failure_new(&VALUE_ERROR, 0, "x"));
    assert_ptr_equal(deferred_current_result(d1).failure->type, &FAILURE_ALREADY_CALLED);
    assert_string_equal(deferred_current_result(d2).value, "first");
    deferred_unref(d1);
    deferred_unref(d2);
    assert_int_equal(unhandled, 1);
}

static void test_chain_passes_result(void **state)
{
    (void)state;
    struct deferred *d1 = deferred_new();
    struct deferred *d2 = deferred_new();
    deferred_chain(d1, d2);
    deferred_callback(d1, "v");
    assert_string_equal(deferred_current_result(d2).value, "v");
    assert_null(deferred_current_result(d1).value);
    deferred_unref(d1);
    deferred_unref(d2);
}

/* ---- 3. firing or returning an error without a Failure ---------------------- */

static struct deferred_result return_err_null(struct deferred_result r, void *arg)
{
    (void)r;
    (void)arg;
    return deferred_err(NULL);
}

static struct deferred_result return_wait_null(struct deferred_result r, void *arg)
{
    (void)r;
    (void)arg;
    return deferred_wait(NULL);
}

static struct deferred_result record_type(struct deferred_result r, void *arg)
{
    *(const struct failure_type **)arg = r.failure->type;
    return deferred_ok(NULL);
}

static void test_errback_null_refused(void **state)
{
    (void)state;
    struct deferred *d = deferred_new();
    assert_int_equal(deferred_errback(d, NULL), DEFERRED_E_INVALID);
    assert_false(deferred_called(d));
    assert_int_equal(deferred_fire(d, deferred_err(NULL)), DEFERRED_E_INVALID);
    assert_false(deferred_called(d));
    assert_int_equal(deferred_callback(d, "fine"), 0);   /* still usable */
    assert_string_equal(deferred_current_result(d).value, "fine");
    deferred_unref(d);
    assert_int_equal(unhandled, 0);
}

static void test_callback_returns_null_error(void **state)
{
    (void)state;
    const struct failure_type *seen = NULL;
    struct deferred *d = deferred_new();
    deferred_add_callback(d, return_err_null, NULL);
    deferred_add_errback(d, record_type, &seen);
    deferred_callback(d, NULL);
    assert_ptr_equal(seen, &FAILURE_NO_CURRENT_EXCEPTION);
    deferred_unref(d);

    seen = NULL;
    d = deferred_new();
    deferred_add_callback(d, return_wait_null, NULL);
    deferred_add_errback(d, record_type, &seen);
    deferred_callback(d, NULL);
    assert_ptr_equal(seen, &FAILURE_NO_CURRENT_EXCEPTION);
    deferred_unref(d);

    d = deferred_fail(NULL);
    seen = NULL;
    deferred_add_errback(d, record_type, &seen);
    assert_ptr_equal(seen, &FAILURE_NO_CURRENT_EXCEPTION);
    deferred_unref(d);
    assert_int_equal(unhandled, 0);
}

/* ---- 4. calls due at the same time run in task.Clock's / the reactor's order -- */

struct order {
    char s[2048];                 /* one letter per call, in the order they ran */
    size_t n;                     /* letters */
};

struct tagged {
    struct order *o;              /* where to append */
    char tag;                     /* the letter */
};

static void append_tag(void *arg)
{
    struct tagged *t = arg;
    t->o->s[t->o->n++] = t->tag;
    t->o->s[t->o->n] = 0;
}

static void reset_case(double da, double db, char which, double reset_to, const char *expect)
{
    struct deferred_clock *c = deferred_fake_clock_new();
    struct order o = { .n = 0 };
    struct tagged ta = { &o, 'A' }, tb = { &o, 'B' };
    struct deferred_call *a = deferred_call_later(c, da, append_tag, &ta);
    struct deferred_call *b = deferred_call_later(c, db, append_tag, &tb);
    assert_int_equal(deferred_call_reset(which == 'A' ? a : b, reset_to), 0);
    deferred_fake_clock_advance(c, 10);
    assert_string_equal(o.s, expect);
    deferred_call_unref(a);
    deferred_call_unref(b);
    deferred_fake_clock_free(c);
}

static void test_fake_clock_reset_order(void **state)
{
    (void)state;
    /* Each expectation is what twisted.internet.task.Clock does. */
    reset_case(1, 2, 'A', 2, "AB");       /* reset later onto B's deadline */
    reset_case(2, 1, 'B', 2, "BA");       /* ditto, B scheduled second */
    reset_case(1, 2, 'B', 1, "AB");       /* reset earlier onto A's */
    reset_case(2, 1, 'A', 1, "BA");
    reset_case(1, 1, 'A', 1, "AB");       /* same deadline: no move */
}

static void stop_reactor(void *arg)
{
    reactor_stop(arg);
}

static void test_reactor_same_deadline_fifo(void **state)
{
    (void)state;
    struct reactor *r = reactor_new();
    assert_non_null(r);
    struct order o = { .n = 0 };
    static struct tagged tags[1000];
    char expect[1001];
    for (int i = 0; i < 1000; i++) {
        tags[i] = (struct tagged){ &o, (char)('!' + i % 90) };
        expect[i] = tags[i].tag;
        deferred_call_unref(reactor_call_later(r, 0, append_tag, &tags[i]));
    }
    expect[1000] = 0;
    deferred_call_unref(reactor_call_later(r, 0.01, stop_reactor, r));
    reactor_run(r);
    assert_int_equal(o.n, 1000);
    assert_string_equal(o.s, expect);

    /* Later deadlines still run later, whatever the order of scheduling. */
    o.n = 0;
    struct tagged ta = { &o, 'a' }, tb = { &o, 'b' }, tc = { &o, 'c' };
    deferred_call_unref(reactor_call_later(r, 0.003, append_tag, &tc));
    deferred_call_unref(reactor_call_later(r, 0.001, append_tag, &ta));
    deferred_call_unref(reactor_call_later(r, 0.002, append_tag, &tb));
    deferred_call_unref(reactor_call_later(r, 0.02, stop_reactor, r));
    reactor_run(r);
    assert_string_equal(o.s, "abc");
    reactor_free(r);
}

/* ---- 5. handles and timeouts that outlive their clock ---------------------- */

static void never(void *arg)
{
    (void)arg;
    fail_msg("a call of a freed clock ran");
}

static void test_timeout_outlives_fake_clock(void **state)
{
    (void)state;
    struct deferred_clock *c = deferred_fake_clock_new();
    struct deferred *d = deferred_new();
    deferred_add_timeout(d, 5, c);
    struct deferred_call *h = deferred_call_later(c, 1, never, NULL);
    deferred_fake_clock_free(c);
    assert_false(deferred_call_active(h));
    assert_int_equal(deferred_call_cancel(h), DEFERRED_CALL_E_CANCELLED);
    assert_int_equal(deferred_call_reset(h, 1), DEFERRED_CALL_E_CANCELLED);
    deferred_call_unref(h);
    assert_int_equal(deferred_callback(d, "late"), 0);
    assert_string_equal(deferred_current_result(d).value, "late");
    deferred_unref(d);
}

static void test_timeout_outlives_reactor(void **state)
{
    (void)state;
    struct reactor *r = reactor_new();
    struct deferred *d = deferred_new();
    deferred_add_timeout(d, 5, reactor_clock(r));
    struct deferred_call *h = reactor_call_later(r, 1, never, NULL);
    reactor_free(r);
    assert_int_equal(deferred_call_cancel(h), DEFERRED_CALL_E_CANCELLED);
    deferred_call_unref(h);
    assert_int_equal(deferred_callback(d, "late"), 0);
    deferred_unref(d);
}

/* ---- the reactor connects only to the address it was given ------------- */

static void test_connect_numeric_only(void **state)
{
    (void)state;
    struct reactor *r = reactor_new();
    /* getaddrinfo reads these as 87.0.0.1, 127.0.0.1 and 127.0.0.1. */
    const char *bad[] = { "0127.0.0.1", "127.1", "0x7f000001", " 127.0.0.1", "localhost", "" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct deferred *d = reactor_connect_tcp(r, bad[i], 2525, 1.0);
        assert_true(deferred_called(d));
        struct deferred_result res = deferred_current_result(d);
        assert_true(deferred_is_failure(res));
        assert_ptr_equal(res.failure->type, &FAILURE_CONNECT_ERROR);
        assert_non_null(strstr(failure_message(res.failure), "not a numeric address"));
        deferred_add_errback(d, NULL, NULL);
        deferred_cancel(d);
        deferred_unref(d);
    }
    assert_int_equal(unhandled, (int)(sizeof bad / sizeof *bad));
    reactor_free(r);
}

/* ---- 6. the free list must not hide a use after free from ASan ------------ */

static void test_freed_deferred_is_poisoned(void **state)
{
    (void)state;
#ifdef HAVE_ASAN
    struct deferred *d = deferred_new();
    deferred_unref(d);
    assert_true(__asan_address_is_poisoned(d));
#else
    skip();
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup(f, unhandled_setup)
        T(test_takeover_errback_recovers), T(test_takeover_errback_returns_failure),
        T(test_chain_into_fired), T(test_chain_passes_result),
        T(test_errback_null_refused), T(test_callback_returns_null_error),
        T(test_fake_clock_reset_order), T(test_reactor_same_deadline_fifo),
        T(test_timeout_outlives_fake_clock), T(test_timeout_outlives_reactor),
        T(test_connect_numeric_only), T(test_freed_deferred_is_poisoned),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
