/* Unit tests for lib/failure, the Deferred checklist's cases 50-51
 * (shared/spec/deferred.md §8): trap() and check() against a small exception
 * family, LookupError <- KeyError and ValueError, and wrapping a cause. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "deferred.h"
#include "failure.h"
#include "unit_support.h"

static FAILURE_TYPE_DEFINE(VALUE_ERROR, "builtins.ValueError", &FAILURE_ERROR);
static FAILURE_TYPE_DEFINE(LOOKUP_ERROR, "builtins.LookupError", &FAILURE_ERROR);
static FAILURE_TYPE_DEFINE(KEY_ERROR, "builtins.KeyError", &LOOKUP_ERROR);


static const struct failure_type *trapped;
static const struct failure *seen;   /* what the next errback received */

static struct deferred_result trap_value_lookup(struct deferred_result r, void *arg)
{
    (void)arg;
    trapped = failure_trap(r.failure, &VALUE_ERROR, &LOOKUP_ERROR);
    return trapped ? deferred_ok(NULL) : r;
}

static struct deferred_result trap_value_only(struct deferred_result r, void *arg)
{
    (void)arg;
    if (!failure_trap(r.failure, &VALUE_ERROR))
        return r;                         /* no match: "re-raise" */
    return deferred_ok(NULL);
}

static struct deferred_result note_and_recover(struct deferred_result r, void *arg)
{
    (void)arg;
    seen = r.kind == DEFERRED_FAILURE ? r.failure : NULL;
    return deferred_ok(NULL);
}

/* 50: trap() returns the matching type (the first listed that the failure
 * is, by inheritance), and a trap that does not match passes the very same
 * Failure on to the next errback. */
static void test_c50_trap(void **state)
{
    (void)state;
    struct deferred *d = deferred_new();
    deferred_add_errback(d, trap_value_lookup, NULL);
    deferred_errback(d, failure_new(&KEY_ERROR, 0, "k"));
    assert_ptr_equal(trapped, &LOOKUP_ERROR);
    deferred_unref(d);

    struct failure *k = failure_new(&KEY_ERROR, 0, "k");
    d = deferred_new();
    deferred_add_errback(d, trap_value_only, NULL);
    deferred_add_errback(d, note_and_recover, NULL);
    deferred_errback(d, failure_ref(k));
    assert_ptr_equal(seen, k);
    failure_unref(k);
    deferred_unref(d);
    assert_int_equal(unhandled, 0);
}

/* 51: check() finds the first listed type the failure is, by inheritance
 * or by name; the message and the wrapped cause are kept. */
static void test_c51_check(void **state)
{
    (void)state;
    struct failure *f = failure_new(&KEY_ERROR, 0, "'k'");
    assert_ptr_equal(failure_check(f, &VALUE_ERROR, &LOOKUP_ERROR, &KEY_ERROR), &LOOKUP_ERROR);
    assert_string_equal(failure_check_name(f, "builtins.KeyError"), "builtins.KeyError");
    assert_null(failure_check(f, &VALUE_ERROR));
    assert_string_equal(failure_message(f), "'k'");
    struct failure *w = failure_wrap(&VALUE_ERROR, 3, f, "wrapped %d", 1);
    failure_unref(f);
    assert_ptr_equal(w->cause, f);
    assert_int_equal(w->code, 3);
    assert_string_equal(failure_message(w), "wrapped 1");
    assert_ptr_equal(failure_check(w, &LOOKUP_ERROR, &VALUE_ERROR), &VALUE_ERROR);
    failure_unref(w);
}

/* An unhandled Failure is reported once, when its Deferred is released. */
static void test_unhandled_reported_on_release(void **state)
{
    (void)state;
    struct deferred *d = deferred_new();
    deferred_errback(d, failure_new(&VALUE_ERROR, 0, "nobody handles this"));
    assert_int_equal(unhandled, 0);
    deferred_unref(d);
    assert_int_equal(unhandled, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_c50_trap, unhandled_setup),
        cmocka_unit_test_setup(test_c51_check, unhandled_setup),
        cmocka_unit_test_setup(test_unhandled_reported_on_release, unhandled_setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
