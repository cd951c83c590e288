/* fuzz_units — libFuzzer harness for the lib/units parsers.
 *
 * The input (NUL-terminated copy) goes to every parser.  Checked (units.h):
 *   - a failed parse leaves *out untouched;
 *   - duration: >= 0, finite, at most a year; units_format_duration() of it
 *     parses back to within 0.05% (4 significant digits) or 0.5 us;
 *   - size: at most 2^62, and its decimal form parses back to itself;
 *   - count: inside [min, max], and its decimal form parses back to itself;
 *   - prob: inside [0, 1];
 *   - host:port: host is a NUL-terminated dotted IPv4 address, port in
 *     0..65535, and "host:port" parses back to the same.
 * Also units_format_duration() into buffers of every small length.
 * Seed corpus: tests/fuzz/corpus/fuzz_units/ (values from the profiles,
 * the README and tests/unit/test_units.c). */
#include "units.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_duration(const char *s)
{
    double d = -7.0;
    if (units_parse_duration(s, &d) != 0) {
        if (d != -7.0)
            abort();
        return;
    }
    if (!(d >= 0.0 && d <= 86400.0 * 365))
        abort();
    char buf[64], *f = units_format_duration(d, buf, sizeof buf);
    double back;
    if (units_parse_duration(f, &back) != 0) {
        fprintf(stderr, "duration '%s' = %g formats as '%s', which does not parse\n", s, d, f);
        abort();
    }
    if (fabs(back - d) > 5e-4 * d + 0.5e-6) {
        fprintf(stderr, "duration '%s' = %.9g -> '%s' -> %.9g\n", s, d, f, back);
        abort();
    }
}

static void check_size(const char *s)
{
    uint64_t v = 7, back;
    if (units_parse_size(s, &v) != 0) {
        if (v != 7)
            abort();
        return;
    }
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    if (v > (1ULL << 62) || units_parse_size(buf, &back) != 0 || back != v)
        abort();
}

static void check_count(const char *s, long long min, long long max)
{
    long long v = 7, back;
    if (units_parse_count(s, min, max, &v) != 0) {
        if (v != 7)
            abort();
        return;
    }
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    if (v < min || v > max || units_parse_count(buf, min, max, &back) != 0 || back != v)
        abort();
}

static void check_prob(const char *s)
{
    double p = -7.0;
    if (units_parse_prob(s, &p) != 0) {
        if (p != -7.0)
            abort();
        return;
    }
    if (!(p >= 0.0 && p <= 1.0))
        abort();
}

static void check_hostport(const char *s)
{
    char host[64], host2[64];
    int port = -7, port2;
    memset(host, 'x', sizeof host);
    if (units_parse_hostport(s, host, &port) != 0) {
        if (port != -7 || host[0] != 'x')
            abort();
        return;
    }
    if (memchr(host, '\0', sizeof host) == NULL || port < 0 || port > 65535)
        abort();
    unsigned a, b, c, d;
    char junk;
    if (sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &junk) != 4)
        abort();
    char buf[96];
    snprintf(buf, sizeof buf, "%s:%d", host, port);
    if (units_parse_hostport(buf, host2, &port2) != 0 || strcmp(host, host2) != 0 ||
        port2 != port)
        abort();
}

/* Formatting an arbitrary double must not overrun a short buffer. */
static void check_format(const uint8_t *data, size_t size)
{
    double x;
    if (size < sizeof x + 1)
        return;
    memcpy(&x, data, sizeof x);
    if (!isfinite(x) || x < 0)
        return;
    size_t len = 1 + data[sizeof x] % 24;
    char *buf = malloc(len);           /* exact size: ASan sees any overrun */
    if (buf == NULL)
        return;
    if (units_format_duration(x, buf, len) != buf || memchr(buf, '\0', len) == NULL)
        abort();
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);        /* exact size: ASan sees reads past the NUL */
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_duration(s);
    check_size(s);
    check_count(s, 0, LLONG_MAX);
    check_count(s, LLONG_MIN, LLONG_MAX);
    check_count(s, -5, 100000);
    check_prob(s);
    check_hostport(s);
    check_format(data, size);
    free(s);
    return 0;
}
