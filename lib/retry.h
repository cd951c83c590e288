/* retry — the one backoff policy every model uses for temporary failures
 * (4xx replies, dropped connections, timeouts): bounded exponential backoff
 * with "equal jitter".  Attempt a (0-based) waits a uniformly random time in
 * [d/2, d] where d = min(cap, base * 2^a), so simultaneous failures spread
 * out instead of retrying in lock-step.  Pure: the caller owns the PRNG state,
 * so threads never share it. */
#ifndef MAILBENCH_RETRY_H
#define MAILBENCH_RETRY_H

#include <stdint.h>

struct retry_policy {
    int max_retries;    /* retries after the first attempt; 0 = never retry */
    double base_s;      /* delay scale of the first retry, seconds */
    double cap_s;       /* no single wait is longer than this, seconds */
};

/* The defaults: 5 retries, 10 ms base, 1 s cap. */
#define RETRY_POLICY_DEFAULT { 5, 0.010, 1.0 }

/* Seconds to wait before retry number `attempt` (0 = first retry). */
double retry_backoff(const struct retry_policy *p, int attempt, uint64_t *rng);

/* splitmix64: a tiny, good 64-bit PRNG step; also usable as a seed mixer. */
uint64_t retry_rand64(uint64_t *state);

#endif
