/* blocking_mailer — sends one email at a time over a blocking SMTP
 * connection: the code the sync and threads models share, so that the two
 * differ only in how many of these run at once.
 *
 * One email, in protocol order:
 *   [--blocking call] -> workload_build (the CPU work) -> connect if no open
 *   connection -> EHLO -> MAIL/RCPT/DATA/"." -> record delivered or failed
 * A temporary failure (4xx, connection lost, timeout, refused connect) closes
 * the connection and is retried after retry_backoff() (a real sleep: this
 * thread waits), at most --retries times; a permanent one (5xx) is recorded
 * with its reason at once.  A connection carries --per-session emails, then
 * QUIT.  Every wait is bounded by --timeout (lib/smtp_blocking).
 *
 * Not thread-safe: each thread owns its own mailer and its own stats, merged
 * after join. */
#ifndef MAILBENCH_BLOCKING_MAILER_H
#define MAILBENCH_BLOCKING_MAILER_H

#include <stdbool.h>
#include <stdint.h>

#include "cli.h"
#include "mailer.h"
#include "smtp_client.h"
#include "stats.h"
#include "summary.h"

struct blocking_mailer {
    const struct cli_options *o;    /* the run's options (borrowed) */
    struct workload_params wp;      /* what each email is made of */
    struct smtp_client_config cfg;  /* how the client core talks */
    struct stats_run *stats;        /* where results go (this thread's) */
    uint64_t rng;                   /* retry-jitter PRNG state */
    int fd;                         /* open connection, or -1 */
    struct smtp_client *c;          /* its client core, or NULL */
    long long on_conn;              /* emails sent on this connection so far */
    long long traced;               /* --trace: the email being sent, if traced; else -1 */
};

void blocking_mailer_init(struct blocking_mailer *m, const struct cli_options *o,
                          struct stats_run *stats, uint64_t rng_seed);

/* Sends email `index` to the end: delivered or failed for good, recorded in
 * m->stats with its latency measured from t0 (stats_now() seconds: when the
 * email started, or its intended start in open loop).  Returns true if it
 * was delivered. */
bool blocking_mailer_send(struct blocking_mailer *m, uint64_t index, double t0);

/* Open loop: sends chain c (popped from the schedule's queue), each email
 * not before its intended start (mailer_email_due), its lateness recorded.
 * Stops early if the steady-state window closes.  Returns emails sent. */
long long blocking_mailer_send_chain(struct blocking_mailer *m, struct arrivals *a, long long c);

/* QUIT and close the connection, if one is open. */
void blocking_mailer_finish(struct blocking_mailer *m);

/* Sleeps until stats_now() >= t (open-loop pacing); returns at once if past. */
void blocking_sleep_until(double t);

#endif
