/* Unit tests for lib/units and lib/digest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "digest.h"
#include "units.h"

static void test_duration(void **state)
{
    (void)state;
    double v = -1;
    assert_int_equal(units_parse_duration("10ms", &v), 0);
    assert_true(v > 0.00999 && v < 0.01001);
    assert_int_equal(units_parse_duration("250us", &v), 0);
    assert_true(v > 0.000249 && v < 0.000251);
    assert_int_equal(units_parse_duration("1.5s", &v), 0);
    assert_true(v == 1.5);
    assert_int_equal(units_parse_duration("0", &v), 0);
    assert_true(v == 0.0);
    const char *bad[] = { "", "10", "-1ms", "1 ms", "ms", "10mss", "nan", "inf",
                          "1e3ms", "10h", "99999999999s", " 5s", NULL };
    for (int i = 0; bad[i]; i++) {
        v = 42;
        assert_int_equal(units_parse_duration(bad[i], &v), -1);
        assert_true(v == 42);
    }
}

static void test_size(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(units_parse_size("512", &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(units_parse_size("1K", &v), 0);
    assert_int_equal(v, 1024);
    assert_int_equal(units_parse_size("100KB", &v), 0);
    assert_int_equal(v, 102400);
    assert_int_equal(units_parse_size("2m", &v), 0);
    assert_int_equal(v, 2u << 20);
    const char *bad[] = { "", "-1", "1T", "K", "1.5K", "99999999999999999999", "5000000000G", NULL };
    for (int i = 0; bad[i]; i++)
        assert_int_equal(units_parse_size(bad[i], &v), -1);
}

static void test_count_prob_hostport(void **state)
{
    (void)state;
    long long n;
    assert_int_equal(units_parse_count("10k", 1, 100000, &n), 0);
    assert_int_equal(n, 10000);
    assert_int_equal(units_parse_count("0", 1, 10, &n), -1);
    assert_int_equal(units_parse_count("11", 1, 10, &n), -1);
    assert_int_equal(units_parse_count("3x", 1, 10, &n), -1);
    assert_int_equal(units_parse_count("99999999999999999999", 1, 10, &n), -1);
    double p;
    assert_int_equal(units_parse_prob("0.25", &p), 0);
    assert_true(p == 0.25);
    assert_int_equal(units_parse_prob("5%", &p), 0);
    assert_true(p > 0.0499 && p < 0.0501);
    assert_int_equal(units_parse_prob("1.5", &p), -1);
    assert_int_equal(units_parse_prob("-0.1", &p), -1);
    char host[64];
    int port;
    assert_int_equal(units_parse_hostport("127.0.0.1:2525", host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 2525);
    assert_int_equal(units_parse_hostport(":0", host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 0);
    assert_int_equal(units_parse_hostport("localhost:25", host, &port), 0);
    assert_int_equal(units_parse_hostport("127.0.0.1", host, &port), -1);
    assert_int_equal(units_parse_hostport("127.0.0.1:70000", host, &port), -1);
    assert_int_equal(units_parse_hostport("300.0.0.1:25", host, &port), -1);
    assert_int_equal(units_parse_hostport("example.org:25", host, &port), -1);
}

static void test_digest(void **state)
{
    (void)state;
    const char *a = "Subject: a\r\n\r\nbody a\r\n", *b = "Subject: b\r\n\r\nbody b\r\n";
    uint64_t ha = digest_hash(a, strlen(a)), hb = digest_hash(b, strlen(b));
    assert_true(ha != hb);
    /* incremental == one-shot, whatever the split */
    for (size_t cut = 0; cut <= strlen(a); cut++) {
        digest_ctx c;
        digest_init(&c);
        digest_update(&c, a, cut);
        digest_update(&c, a + cut, strlen(a) - cut);
        assert_true(digest_final(&c) == ha);
    }
    /* order independence of the sum, and one changed byte changes it */
    assert_true(ha + hb == hb + ha);
    char hex[17];
    uint64_t back;
    assert_int_equal(digest_parse_hex(digest_hex(ha, hex), &back), 0);
    assert_true(back == ha);
    assert_int_equal(strlen(hex), 16);
    assert_int_equal(digest_parse_hex("xyz", &back), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_count_prob_hostport),
        cmocka_unit_test(test_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
