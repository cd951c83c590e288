/* Unit tests for workloads/mock_fault: the fault draw (stall added without
 * changing the sequence of the other faults), the stage names (body). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mock_fault.h"

/* With stall = 0, the draw is the one smtp-mock made before --stall existed:
 * DROP below drop, TEMPFAIL below drop + tempfail, PERMFAIL below the sum. */
static void test_draw_without_stall_unchanged(void **state)
{
    (void)state;
    struct mock_fault_config c = { .tempfail = 0.2, .permfail = 0.1, .drop = 0.15 };
    struct mock_prng a, b;
    mock_prng_seed(&a, 9);
    mock_prng_seed(&b, 9);
    for (int i = 0; i < 10000; i++) {
        double u = mock_prng_unit(&b);
        enum mock_outcome want = u < 0.15 ? MOCK_DROP : u < 0.35 ? MOCK_TEMPFAIL
                          : u < 0.45 ? MOCK_PERMFAIL : MOCK_ACCEPT;
        assert_int_equal(want, mock_fault_draw(&c, &a));
    }
}

static void test_draw_stall_share(void **state)
{
    (void)state;
    struct mock_fault_config c = { .stall = 0.25, .drop = 0.25 };
    struct mock_prng r;
    mock_prng_seed(&r, 1);
    int n[5] = { 0 };
    for (int i = 0; i < 40000; i++)
        n[mock_fault_draw(&c, &r)]++;
    assert_in_range(n[MOCK_STALL], 9500, 10500);
    assert_in_range(n[MOCK_DROP], 9500, 10500);
    assert_int_equal(0, n[MOCK_TEMPFAIL] + n[MOCK_PERMFAIL]);
    /* Nothing configured: no draw at all (the PRNG is not advanced). */
    struct mock_fault_config none = { 0 };
    struct mock_prng x = r;
    assert_int_equal(MOCK_ACCEPT, mock_fault_draw(&none, &r));
    assert_true(x.state == r.state);
}

/* Uniform jitter up to the latency: never below 0, the mean is the latency
 * (smtp-mock refuses a larger jitter, whose cut draws would move it up). */
static void test_uniform_mean(void **state)
{
    (void)state;
    struct mock_fault_config c = { .latency = 0.010, .jitter = 0.010, .dist = MOCK_DIST_UNIFORM };
    struct mock_prng r;
    mock_prng_seed(&r, 3);
    double sum = 0, lo = 1, hi = 0;
    for (int i = 0; i < 200000; i++) {
        double d = mock_fault_latency(&c, &r);
        sum += d;
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo >= 0 && hi <= 0.020);
    double mean = sum / 200000;
    if (mean < 0.00995 || mean > 0.01005)
        fail_msg("mean %.6f, want 0.010000", mean);
}

static void test_stage_names(void **state)
{
    (void)state;
    const char *names[] = { "greeting", "mail", "rcpt", "data", "body" };
    for (int i = 0; i < 5; i++) {
        enum smtp_server_stage st;
        assert_int_equal(0, mock_fault_parse_stage(names[i], &st));
        assert_string_equal(names[i], mock_fault_stage_name(st));
    }
    enum smtp_server_stage st;
    assert_int_equal(MOCK_STAGE_BODY, (mock_fault_parse_stage("body", &st), st));
    assert_int_equal(-1, mock_fault_parse_stage("helo", &st));
    assert_int_equal(-1, mock_fault_parse_stage("", &st));
    /* Body is the core's own stage (asked before the first byte of text,
     * even in the read that carried DATA): no other stage matches it. */
    struct mock_fault_config c = { .stage = MOCK_STAGE_BODY };
    struct smtp_server_message m = { 0 };
    for (int s = SMTP_SERVER_STAGE_GREETING; s <= SMTP_SERVER_STAGE_DATA; s++)
        assert_false(mock_fault_applies(&c, (enum smtp_server_stage)s, &m));
    assert_true(mock_fault_applies(&c, SMTP_SERVER_STAGE_BODY, &m));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_draw_without_stall_unchanged),
        cmocka_unit_test(test_draw_stall_share),
        cmocka_unit_test(test_uniform_mean),
        cmocka_unit_test(test_stage_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
