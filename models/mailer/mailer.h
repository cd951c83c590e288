/* mailer — what the two ways of sending share (blocking_mailer.c for sync
 * and threads, async_mailer.c for async and hybrid): the step from the
 * models' options (lib/cli.h) to the workload's parameters
 * (workloads/summary.h).  It lives here, in models/, because it is the one
 * place that knows both: lib/ never includes a workload header. */
#ifndef MAILBENCH_MAILER_H
#define MAILBENCH_MAILER_H

#include "cli.h"
#include "summary.h"

/* The workload parameters the options describe. */
void mailer_workload_params(const struct mb_options *o, struct workload_params *wp);

/* Open loop (--rate R): email i is due at start + i / R, whatever happened
 * before it (the intended start its latency is measured from). */
static inline double mailer_due(double start, long long i, long long rate)
{
    return start + (double)i / (double)rate;
}

#endif
