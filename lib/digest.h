/* digest — the order-independent fingerprint of a set of delivered emails.
 *
 * Each message is hashed on its exact bytes as the workload rendered them
 * (headers, blank line, body, ending in CRLF): that is also what the server
 * holds after undoing dot-stuffing, without the final ".\r\n".  The digest of
 * a set of messages is the sum of their hashes modulo 2^64, so client and
 * server can agree on it whatever the order of delivery, and a lost, extra or
 * altered message changes it.  Printed as 16 lowercase hex digits (JSON
 * numbers lose precision above 2^53). */
#ifndef MAILBENCH_DIGEST_H
#define MAILBENCH_DIGEST_H

#include <stddef.h>
#include <stdint.h>

/* 64-bit hash of one message (FNV-1a over the bytes, then a 64-bit
 * finaliser so that sums of hashes do not cancel in low bits). */
uint64_t digest_hash(const void *data, size_t len);

/* Incremental form, for a message that arrives in pieces. */
typedef struct { uint64_t h; } digest_ctx;
void digest_init(digest_ctx *c);
void digest_update(digest_ctx *c, const void *data, size_t len);
uint64_t digest_final(const digest_ctx *c);

/* Writes 16 hex digits and a NUL into out[17]; returns out. */
char *digest_hex(uint64_t d, char out[17]);

/* Parses 16 hex digits; 0 on success, -1 otherwise. */
int digest_parse_hex(const char *s, uint64_t *out);

#endif
