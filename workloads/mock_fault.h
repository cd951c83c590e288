/* mock_fault — smtp-mock's seeded randomness: the PRNG (splitmix64), the
 * per-message fault draw (tempfail / permfail / drop / stall) and the reply latency
 * draw (fixed, uniform jitter, or exponential).  Pure functions of the
 * PRNG state: the same seed and the same sequence of calls give the same
 * faults and delays. */
#ifndef MAILBENCH_MOCK_FAULT_H
#define MAILBENCH_MOCK_FAULT_H

#include <stdint.h>

#include "smtp_server.h"

/* splitmix64: tiny, fast, and good enough for fault injection. */
struct mock_prng { uint64_t state; };

void mock_prng_seed(struct mock_prng *r, uint64_t seed);
uint64_t mock_prng_next(struct mock_prng *r);
double mock_prng_unit(struct mock_prng *r);   /* uniform in [0, 1) */

/* How the reply latency is distributed. */
enum mock_dist {
    MOCK_DIST_FIXED,        /* exactly latency */
    MOCK_DIST_UNIFORM,      /* uniform in [latency - jitter, latency + jitter]:
                               the mean is latency only if jitter <= latency
                               (smtp-mock refuses a larger one) */
    MOCK_DIST_EXP           /* exponential with mean latency */
};

/* Mid-DATA: after the 354 when message text arrives and before the final
 * ".": the core's SMTP_SERVER_STAGE_BODY ("body" on the command line). */
#define MOCK_STAGE_BODY SMTP_SERVER_STAGE_BODY

/* What a draw decides: the core's verdicts, plus STALL (stop answering). */
enum mock_outcome {
    MOCK_ACCEPT = SMTP_SERVER_VERDICT_ACCEPT,
    MOCK_TEMPFAIL = SMTP_SERVER_VERDICT_TEMPFAIL,
    MOCK_PERMFAIL = SMTP_SERVER_VERDICT_PERMFAIL,
    MOCK_DROP = SMTP_SERVER_VERDICT_DROP,
    MOCK_STALL                  /* keep the connection open, never reply again */
};

struct mock_fault_config {
    double tempfail;        /* probability of a 4xx per message */
    double permfail;        /* probability of a 5xx per message */
    double drop;            /* probability of a dropped connection per message */
    double stall;           /* probability per message of never answering again */
    enum smtp_server_stage stage;/* where the faults strike (or MOCK_STAGE_BODY) */
    double latency;         /* seconds before every reply */
    double jitter;          /* seconds, for MOCK_DIST_UNIFORM */
    enum mock_dist dist;    /* latency distribution */
};

/* One draw: DROP with probability drop, else STALL with stall, else
 * TEMPFAIL with tempfail, else PERMFAIL with permfail, else ACCEPT.  Draws
 * nothing when all are 0.  With stall = 0 the sequence is the one of the
 * versions before --stall existed (same seed, same faults). */
enum mock_outcome mock_fault_draw(const struct mock_fault_config *c, struct mock_prng *r);

/* Whether a decision at this stage is a fault opportunity: the configured
 * stage, and for RCPT only the first recipient (one draw per message). */
int mock_fault_applies(const struct mock_fault_config *c, enum smtp_server_stage st,
                       const struct smtp_server_message *m);

/* The delay before the next reply, in seconds (>= 0: a draw below 0 is 0). */
double mock_fault_latency(const struct mock_fault_config *c, struct mock_prng *r);

/* "greeting", "mail", "rcpt", "data", "body" -> stage; 0 on success, -1 otherwise. */
int mock_fault_parse_stage(const char *s, enum smtp_server_stage *out);
const char *mock_fault_stage_name(enum smtp_server_stage st);

/* "fixed", "uniform", "exp" -> distribution; 0 on success, -1 otherwise. */
int mock_fault_parse_dist(const char *s, enum mock_dist *out);
const char *mock_fault_dist_name(enum mock_dist d);

#endif
