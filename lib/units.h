/* units — parse and format the values users type: durations ("250us",
 * "10ms", "1.5s"), sizes ("512", "1K", "100KB", "2M"), counts, probabilities
 * and HOST:PORT.  Pure functions, no printing: each returns 0 on success and
 * -1 when the text is not a valid value, leaving *out untouched. */
#ifndef MAILBENCH_UNITS_H
#define MAILBENCH_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* A duration: a non-negative decimal number followed by "us", "ms" or "s".
 * A bare "0" is accepted; any other number needs its unit. */
int units_parse_duration(const char *s, double *out_seconds);

/* A size in bytes: a non-negative integer, optionally followed by K/KB, M/MB,
 * G/GB (powers of 1024) or B.  Rejects overflow beyond 2^62. */
int units_parse_size(const char *s, uint64_t *out_bytes);

/* A whole number in [min, max], decimal, with an optional k (x1000) suffix
 * ("10k" = 10000).  Rejects trailing junk and overflow. */
int units_parse_count(const char *s, long long min, long long max, long long *out);

/* A probability in [0, 1]: "0.05", or a percentage "5%". */
int units_parse_prob(const char *s, double *out);

/* "HOST:PORT" with PORT in 0..65535; HOST may be empty (means 127.0.0.1),
 * a dotted IPv4 address or "localhost". host must have room for 64 bytes. */
int units_parse_hostport(const char *s, char host[64], int *port);

/* Format a duration in seconds as the shortest readable form ("250us",
 * "10ms", "1.5s") into buf; returns buf. */
char *units_format_duration(double seconds, char *buf, size_t len);

#endif
