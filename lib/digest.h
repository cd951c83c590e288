/* digest — the order-independent fingerprint of a set of delivered emails.
 *
 * Each message is hashed on its exact bytes as the workload rendered them:
 * headers, blank line, body, ending in CRLF — that is the DATA text after
 * the server undoes dot-stuffing, without the final ".\r\n" (the stuffing
 * dots are not hashed, the CRLF before the terminator is).  The hash of one
 * message is XXH3-64 of those bytes with seed 0 (xxHash's XXH3_64bits, from
 * Debian's libxxhash-dev; Python: xxhash.xxh3_64_intdigest(data) from
 * python3-xxhash).  The digest of a set of messages is the sum of their
 * hashes modulo 2^64, so client and server can agree on it whatever the
 * order of delivery, and a lost, extra or altered message changes it.
 * Printed as 16 lowercase hex digits (JSON numbers lose precision above
 * 2^53).  Until issue 16 the per-message hash was FNV-1a 64 with splitmix64's
 * finaliser: digests from older results folders differ. */
#ifndef MAILBENCH_DIGEST_H
#define MAILBENCH_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define XXH_STATIC_LINKING_ONLY   /* XXH3_state_t, to embed it */
#include <xxhash.h>

/* XXH3-64 (seed 0) of one message's bytes. */
uint64_t digest_hash(const void *data, size_t len);

/* Incremental form, for a message that arrives in pieces: any split of the
 * same bytes gives digest_hash() of them.  The state is XXH3's (576 bytes,
 * 64-byte aligned: as a member of a heap object, allocate that object with
 * aligned_alloc(64, ...) — smtp_server does). */
struct digest_ctx { XXH3_state_t st; };
void digest_init(struct digest_ctx *c);
void digest_update(struct digest_ctx *c, const void *data, size_t len);
uint64_t digest_final(const struct digest_ctx *c);

/* Writes 16 hex digits and a NUL into out[17]; returns out. */
char *digest_hex(uint64_t d, char out[17]);

/* Parses 16 hex digits; 0 on success, -1 otherwise. */
int digest_parse_hex(const char *s, uint64_t *out);

#endif
