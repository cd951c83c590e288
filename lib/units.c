/* units — parsers for what users type; see units.h for the contract. */
#include "units.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* strtod, but refuse leading space, signs, hex, inf and nan: only digits and
 * one optional fraction, so that "-1ms", " 5s" and "nan" are all errors. */
static int parse_decimal(const char *s, double *out, const char **end)
{
    const char *p = s;
    int digits = 0;
    while (isdigit((unsigned char)*p)) { p++; digits++; }
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) { p++; digits++; }
    }
    if (digits == 0)
        return -1;
    errno = 0;
    char *e;
    double v = strtod(s, &e);
    if (errno != 0 || e != p || !isfinite(v))
        return -1;
    *out = v;
    *end = p;
    return 0;
}

int units_parse_duration(const char *s, double *out_seconds)
{
    double v;
    const char *unit;
    if (s == NULL || parse_decimal(s, &v, &unit) != 0)
        return -1;
    double scale;
    if (strcmp(unit, "us") == 0)
        scale = 1e-6;
    else if (strcmp(unit, "ms") == 0)
        scale = 1e-3;
    else if (strcmp(unit, "s") == 0)
        scale = 1.0;
    else if (*unit == '\0' && v == 0.0)
        scale = 1.0;
    else
        return -1;
    if (v * scale > 86400.0 * 365)      /* a year: surely a typo */
        return -1;
    *out_seconds = v * scale;
    return 0;
}

int units_parse_size(const char *s, uint64_t *out_bytes)
{
    if (s == NULL || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *e;
    unsigned long long v = strtoull(s, &e, 10);
    if (errno != 0)
        return -1;
    unsigned shift;
    if (*e == '\0' || strcasecmp(e, "b") == 0)
        shift = 0;
    else if (strcasecmp(e, "k") == 0 || strcasecmp(e, "kb") == 0)
        shift = 10;
    else if (strcasecmp(e, "m") == 0 || strcasecmp(e, "mb") == 0)
        shift = 20;
    else if (strcasecmp(e, "g") == 0 || strcasecmp(e, "gb") == 0)
        shift = 30;
    else
        return -1;
    if (v > (1ULL << (62 - shift)))
        return -1;
    *out_bytes = (uint64_t)v << shift;
    return 0;
}

int units_parse_count(const char *s, long long min, long long max, long long *out)
{
    if (s == NULL || !(isdigit((unsigned char)*s) || (*s == '-' && isdigit((unsigned char)s[1]))))
        return -1;
    errno = 0;
    char *e;
    long long v = strtoll(s, &e, 10);
    if (errno != 0)
        return -1;
    if ((*e == 'k' || *e == 'K') && e[1] == '\0') {
        if (v > LLONG_MAX / 1000 || v < LLONG_MIN / 1000)
            return -1;
        v *= 1000;
    } else if (*e != '\0') {
        return -1;
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int units_parse_prob(const char *s, double *out)
{
    double v;
    const char *end;
    if (s == NULL || parse_decimal(s, &v, &end) != 0)
        return -1;
    if (*end == '%' && end[1] == '\0')
        v /= 100.0;
    else if (*end != '\0')
        return -1;
    if (v < 0.0 || v > 1.0)
        return -1;
    *out = v;
    return 0;
}

int units_is_ipv4(const char *s)
{
    struct in_addr a;
    return inet_pton(AF_INET, s, &a) == 1;      /* glibc: no leading zeros */
}

/* An RFC 1123 host name that no resolver would take for a number. */
static int is_hostname(const char *s, size_t n)
{
    if (n == 0 || n >= UNITS_HOST_MAX)
        return 0;
    size_t label = 0;           /* length of the current label */
    int all_digits = 1;         /* the current label is digits only */
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? s[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return 0;
            if (i == n && all_digits)   /* RFC 1123 2.1, RFC 3696 2: a numeric TLD */
                return 0;
            label = 0;
            all_digits = 1;
        } else if (isalnum((unsigned char)c) && (unsigned char)c < 128) {
            label++;
            all_digits &= isdigit((unsigned char)c) != 0;
        } else if (c == '-' && label > 0) {
            label++;
            all_digits = 0;
        } else {
            return 0;
        }
    }
    char name[UNITS_HOST_MAX];
    struct in_addr a;
    memcpy(name, s, n);
    name[n] = '\0';
    return inet_aton(name, &a) == 0;    /* "0x7f000001": getaddrinfo's numbers */
}

/* PORT in [min, 65535]: digits only, no leading zero. */
static int parse_port(const char *s, int min, int *port)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (s[0] == '0' && n > 1) || strspn(s, "0123456789") != n)
        return -1;
    int p = atoi(s);
    if (p < min || p > 65535)
        return -1;
    *port = p;
    return 0;
}

/* Splits "HOST:PORT" at its last colon; host is copied (if it fits in hostlen). */
static int split_hostport(const char *s, char *host, size_t hostlen, int min, int *port)
{
    if (s == NULL)
        return -1;
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= hostlen || parse_port(colon + 1, min, port) != 0)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    return 0;
}

int units_parse_hostport(const char *s, char host[64], int *port)
{
    char h[64];
    int p;
    if (split_hostport(s, h, sizeof h, 0, &p) != 0)
        return -1;
    if (strcmp(h, "localhost") == 0)
        strcpy(h, "127.0.0.1");
    else if (!units_is_ipv4(h))
        return -1;
    strcpy(host, h);
    *port = p;
    return 0;
}

int units_parse_server(const char *s, char host[UNITS_HOST_MAX], int *port)
{
    char h[UNITS_HOST_MAX];
    int p;
    if (split_hostport(s, h, sizeof h, 1, &p) != 0)
        return -1;
    if (strcmp(h, "localhost") == 0)
        strcpy(h, "127.0.0.1");
    else if (!units_is_ipv4(h) && !is_hostname(h, strlen(h)))
        return -1;
    strcpy(host, h);
    *port = p;
    return 0;
}

char *units_format_duration(double seconds, char *buf, size_t len)
{
    if (seconds == 0.0)
        snprintf(buf, len, "0");
    else if (seconds < 1e-3)
        snprintf(buf, len, "%.0fus", seconds * 1e6);
    else if (seconds < 1.0)
        snprintf(buf, len, "%.4gms", seconds * 1e3);
    else if (seconds < 9999.5)   /* what %.4g rounds below 10000 */
        snprintf(buf, len, "%.4gs", seconds);
    else                /* %g would switch to "1.2e+04s", which does not parse */
        snprintf(buf, len, "%.0fs", seconds);
    return buf;
}
