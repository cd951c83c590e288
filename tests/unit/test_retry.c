/* Unit tests for lib/retry: bounds, growth, cap, jitter spread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "retry.h"

static void test_backoff_bounds_and_growth(void **state)
{
    (void)state;
    struct retry_policy p = RETRY_POLICY_DEFAULT;
    uint64_t rng = 42;
    for (int a = 0; a < 12; a++) {
        double d = p.base_s;
        for (int i = 0; i < a; i++) d *= 2;
        if (d > p.cap_s) d = p.cap_s;
        double lo = 1e9, hi = 0;
        for (int k = 0; k < 2000; k++) {
            double w = retry_backoff(&p, a, &rng);
            assert_true(w >= d / 2 && w <= d);
            if (w < lo) lo = w;
            if (w > hi) hi = w;
        }
        /* jitter really spreads the waits over most of [d/2, d] */
        assert_true(hi - lo > 0.4 * d);
    }
}

static void test_rng_deterministic(void **state)
{
    (void)state;
    uint64_t a = 7, b = 7, c = 8;
    for (int i = 0; i < 100; i++) {
        uint64_t x = retry_rand64(&a);
        assert_true(x == retry_rand64(&b));
        assert_true(x != retry_rand64(&c));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_bounds_and_growth),
        cmocka_unit_test(test_rng_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
