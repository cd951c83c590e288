/* async_reactors — the async model on every core: --reactors N runs N
 * threads, each a whole async model (its own libev reactor, its own
 * Deferreds, semaphore, sessions and statistics: models/mailer/async_mailer.c
 * unchanged) over its own share of the run, the way event-driven servers
 * scale (a Twisted process per core, nginx workers, Seastar shards).  No
 * Deferred, connection or counter is shared between reactors while they
 * run; the one process-wide thing is the steady-state window (lib/stats.h),
 * which is thread-safe and started once, here, for the whole run.
 *
 * The shares (async_reactors_share): of the chains of mailer_unit() emails
 * (--per-session emails in the closed loop by default, --chain otherwise) in
 * order, reactor k takes a contiguous block, so every reactor's connections
 * carry --per-session emails as one reactor's would; the
 * blocks as equal as they can be (sizes differ by at most one) and summing
 * to the total; the same for --concurrency, --rate and --max-queue.  So the
 * emails sent are exactly 0 .. emails-1, and the digest of their hashes
 * (a sum mod 2^64) is the same whatever the number of reactors.  No share
 * may be 0 (a reactor with no slot, no rate or a queue of 0 = unbounded):
 * the run uses fewer reactors than asked when the totals are smaller, and
 * the JSON records the number it ran.
 *
 * Open loop: reactor k's schedule has rate R_k and, with constant spacing,
 * starts k chain-spacings of the total rate later, so that equal shares
 * interleave into the one schedule of rate R; Poisson arrivals of rate R_k
 * with a seed of its own per reactor (reactor 0 keeps --seed) merge into a
 * Poisson process of rate R.
 *
 * After the threads are joined: the statistics merged (stats_run_merge: the
 * counters and the digest summed, the latency histograms merged bucket by
 * bucket, so the percentiles are those of all the emails); CPU, RSS and the
 * window's CPU are process-wide, as for the other models. */
#ifndef MAILBENCH_ASYNC_REACTORS_H
#define MAILBENCH_ASYNC_REACTORS_H

#include "async_mailer.h"
#include "cli.h"

/* One reactor's part of the run. */
struct async_share {
    long long first;        /* its first email's index */
    long long emails;       /* how many, from first on */
    long long concurrency;  /* its emails in flight */
    long long rate;         /* open loop: its emails/s (0: closed loop) */
    long long max_queue;    /* open loop: its queue bound (0: unbounded) */
};

/* How many reactors the run can use: --reactors, but no more than the
 * emails in flight, the chains, the rate (open loop) or the queue bound. */
int async_reactors_count(const struct cli_options *o);

/* Reactor k's share when the run uses n (= async_reactors_count) reactors. */
void async_reactors_share(const struct cli_options *o, int n, int k, struct async_share *s);

/* The whole run with n reactors (the JSON records o->reactors = n); the
 * build step runs in each reactor's thread.  Returns the exit status, as
 * async_mailer_run. */
int async_reactors_run(struct cli_options *o, async_build_step build, void *build_arg);

#endif
