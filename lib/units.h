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

/* "ADDR:PORT", an address given by number (smtp-mock's --listen):
 *   ADDR  a dotted IPv4 address as inet_pton(3) reads it: four decimal numbers
 *         0..255, no leading zero, sign or space ("0127.0.0.1", which
 *         getaddrinfo and inet_aton read as octal 87.0.0.1, is refused, as are
 *         "127.1" and "0x7f.0.0.1"), or "localhost", stored as 127.0.0.1.
 *         It may not be empty: the host must be named.
 *   PORT  plain decimal 0..65535: digits only, no sign, suffix, space or
 *         leading zero ("025": octal or decimal?).
 * host must have room for 64 bytes. */
int units_parse_hostport(const char *s, char host[64], int *port);

/* Longest host name units_parse_server accepts, with its NUL (RFC 1035: 253). */
#define UNITS_HOST_MAX 254

/* "HOST:PORT", a server to connect to (the models' --server):
 *   HOST  an address as for units_parse_hostport, or a host name (RFC 1123:
 *         labels of 1..63 letters, digits and hyphens, neither first nor last
 *         a hyphen, joined by single dots, 253 bytes at most, no final dot),
 *         stored as typed ("localhost" as 127.0.0.1).  A name a resolver
 *         would read as a number is refused: one whose last label is all
 *         digits ("1.2.3.04", "2130706433") or that inet_aton(3) accepts
 *         ("0x7f000001").  IPv6 ("[::1]") is refused: the models connect
 *         over IPv4 only.
 *   PORT  as for units_parse_hostport, but 1..65535.
 * units_is_ipv4(host) tells an address from a name (which the caller must
 * resolve: see lib/cli.c). */
int units_parse_server(const char *s, char host[UNITS_HOST_MAX], int *port);

/* 1 if s is a dotted IPv4 address in the strict form above, else 0. */
int units_is_ipv4(const char *s);

/* Format a duration in seconds as the shortest readable form ("250us",
 * "10ms", "1.5s") into buf; returns buf. */
char *units_format_duration(double seconds, char *buf, size_t len);

#endif
