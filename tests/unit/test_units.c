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
    assert_int_equal(units_parse_hostport("127.0.0.1:0", host, &port), 0);   /* listen: any port */
    assert_int_equal(port, 0);
    assert_int_equal(units_parse_hostport("localhost:25", host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(units_parse_hostport("127.0.0.1", host, &port), -1);
    assert_int_equal(units_parse_hostport("127.0.0.1:70000", host, &port), -1);
    assert_int_equal(units_parse_hostport("300.0.0.1:25", host, &port), -1);
    assert_int_equal(units_parse_hostport("example.org:25", host, &port), -1);
}

/* Issue 11 #13: an address is read the way inet_pton reads it, never the way
 * getaddrinfo/inet_aton would ("0127.0.0.1" is octal there: 87.0.0.1), and a
 * port is plain decimal; anything else is refused, *host and *port untouched. */
static void test_hostport_strict(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "0127.0.0.1:25", "127.0.0.01:25", "127.000.0.1:25", "+127.0.0.1:25", " 127.0.0.1:25",
        "127.0.0.1 :25", "127.1:25", "0x7f.0.0.1:25", "0x7f000001:25", "2130706433:25",
        "1.2.3.4.5:25", "1.2.3.:25", ":25", ":0", "[::1]:25", "::1:25", "example.org:25",
        "127.0.0.1:+25", "127.0.0.1:025", "127.0.0.1:00", "127.0.0.1: 25", "127.0.0.1:25 ",
        "127.0.0.1:25x", "127.0.0.1:1k", "127.0.0.1:-0", "127.0.0.1:65536", "127.0.0.1:",
        "127.0.0.1:99999999999999999999", "127.0.0.1", "", NULL,
    };
    for (int i = 0; bad[i]; i++) {
        char host[64] = "untouched";
        int port = -7;
        if (units_parse_hostport(bad[i], host, &port) != -1 || port != -7 ||
            strcmp(host, "untouched") != 0)
            fail_msg("'%s' accepted: host '%s' port %d", bad[i], host, port);
    }
    char host[64];
    int port;
    assert_int_equal(units_parse_hostport("10.0.0.255:65535", host, &port), 0);
    assert_string_equal(host, "10.0.0.255");
    assert_int_equal(port, 65535);
    assert_int_equal(units_parse_hostport("0.0.0.0:1", host, &port), 0);
    assert_string_equal(host, "0.0.0.0");
}

/* units_parse_server: the same addresses and ports (1..65535), and RFC 1123
 * host names that no resolver could take for a number. */
static void test_server_names(void **state)
{
    (void)state;
    static const char *const good[][2] = {
        { "127.0.0.1:2525", "127.0.0.1" }, { "localhost:25", "127.0.0.1" },
        { "mail.example.org:25", "mail.example.org" }, { "MX-1.Example.COM:25", "MX-1.Example.COM" },
        { "1password.com:25", "1password.com" }, { "a:1", "a" }, { "x1:65535", "x1" },
        { "xn--bcher-kva.example:25", "xn--bcher-kva.example" }, { "a.b2c:25", "a.b2c" },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char host[UNITS_HOST_MAX];
        int port = -1;
        if (units_parse_server(good[i][0], host, &port) != 0 || strcmp(host, good[i][1]) != 0)
            fail_msg("'%s' refused or read as '%s'", good[i][0], host);
        assert_true(port >= 1 && port <= 65535);
    }
    static const char *const bad[] = {
        "127.0.0.1:0", ":25", "0127.0.0.1:25", "127.1:25", "0x7f000001:25", "0x7f.1:25",
        "017700000001:25", "2130706433:25", "1.2.3.04:25", "a.1:25", "bad_name:25",
        "-lead:25", "trail-:25", "a..b:25", ".a:25", "a.:25", "exa mple:25", "host:25:25",
        "[::1]:25", "::1:25", "h\xc3\xa9te:25", "a:025", "a:+25", "a:25x", "a:65536", "a:",
        "a", NULL,
    };
    for (int i = 0; bad[i]; i++) {
        char host[UNITS_HOST_MAX] = "untouched";
        int port = -7;
        if (units_parse_server(bad[i], host, &port) != -1 || port != -7 ||
            strcmp(host, "untouched") != 0)
            fail_msg("'%s' accepted: host '%s' port %d", bad[i], host, port);
    }
    char name[300], host[UNITS_HOST_MAX];        /* lengths: label 63, name 253 */
    int port;
    memset(name, 'a', 63);
    strcpy(name + 63, ":25");
    assert_int_equal(units_parse_server(name, host, &port), 0);
    memset(name, 'a', 64);
    strcpy(name + 64, ":25");
    assert_int_equal(units_parse_server(name, host, &port), -1);
    memset(name, 'a', 253);
    for (int i = 63; i < 253; i += 64)
        name[i] = '.';
    strcpy(name + 253, ":25");
    assert_int_equal(units_parse_server(name, host, &port), 0);
    assert_int_equal(strlen(host), 253);
    memset(name, 'a', 254);
    for (int i = 63; i < 254; i += 64)
        name[i] = '.';
    strcpy(name + 254, ":25");
    assert_int_equal(units_parse_server(name, host, &port), -1);
    assert_int_equal(units_is_ipv4("192.168.0.1"), 1);
    assert_int_equal(units_is_ipv4("192.168.0.01"), 0);
    assert_int_equal(units_is_ipv4("localhost"), 0);
}

static void test_digest(void **state)
{
    (void)state;
    const char *a = "Subject: a\r\n\r\nbody a\r\n", *b = "Subject: b\r\n\r\nbody b\r\n";
    uint64_t ha = digest_hash(a, strlen(a)), hb = digest_hash(b, strlen(b));
    assert_true(ha != hb);
    /* XXH3-64 with seed 0: the values python3-xxhash's xxh3_64_intdigest gives */
    assert_true(ha == 0xbe5190cf22d9d3a0ULL);
    assert_true(digest_hash("", 0) == 0x2d06800538d394c2ULL);
    assert_true(digest_hash(NULL, 0) == 0x2d06800538d394c2ULL);
    static unsigned char big[5000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)((i * 131 + i / 7) & 0xff);
    assert_true(digest_hash(big, sizeof big) == 0xe2a14a0ccc42f4f0ULL);
    /* streaming over many pieces (XXH3's internal 256-byte stripes crossed) */
    for (size_t step = 1; step < 700; step += 37) {
        struct digest_ctx c;
        digest_init(&c);
        for (size_t off = 0; off < sizeof big; off += step)
            digest_update(&c, big + off, off + step <= sizeof big ? step : sizeof big - off);
        assert_true(digest_final(&c) == 0xe2a14a0ccc42f4f0ULL);
    }
    /* incremental == one-shot, whatever the split */
    for (size_t cut = 0; cut <= strlen(a); cut++) {
        struct digest_ctx c;
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
        cmocka_unit_test(test_hostport_strict),
        cmocka_unit_test(test_server_names),
        cmocka_unit_test(test_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
