/* mailer — what the two ways of sending share (blocking_mailer.c for sync
 * and threads, async_mailer.c for async and hybrid): the step from the
 * models' options (lib/cli.h) to the workload's parameters
 * (workloads/summary.h).  It lives here, in models/, because it is the one
 * place that knows both: lib/ never includes a workload header. */
#ifndef MAILBENCH_MAILER_H
#define MAILBENCH_MAILER_H

#include "arrivals.h"
#include "cli.h"
#include "stats.h"
#include "summary.h"

/* The workload parameters the options describe. */
void mailer_workload_params(const struct mb_options *o, struct workload_params *wp);

/* Open loop (--rate R): the schedule is one of chains (--chain K; 1 by
 * default, so one of emails): chain c arrives at its intended start, from
 * lib/arrivals.h (constant spacing K / R, or Poisson of mean rate R / K),
 * waits in the queue for a slot (--max-queue bounds it: more are shed) and
 * then sends its emails in order, email k of it not before its intended
 * start, chain's + k / R.  Latency is measured from the intended start. */
struct arrivals *mailer_arrivals(const struct mb_options *o, double start);
double mailer_email_due(struct arrivals *a, const struct mb_options *o, long long index);
/* At the end of an open-loop run: scheduled, shed, pending (still waiting
 * when the window closed) and the peak queue into the run's statistics, in
 * emails (a chain counts its emails). */
void mailer_arrivals_end(struct arrivals *a, const struct mb_options *o, struct mb_run_stats *s);

#endif
