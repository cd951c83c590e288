/* mailer — what the two ways of sending share (blocking_mailer.c for sync
 * and threads, async_mailer.c for async and hybrid): the step from the
 * models' options (lib/cli.h) to the workload's parameters
 * (workloads/summary.h).  It lives here, in models/, because it is the one
 * place that knows both: lib/ never includes a workload header. */
#ifndef MAILBENCH_MAILER_H
#define MAILBENCH_MAILER_H

#include <stdbool.h>

#include "arrivals.h"
#include "cli.h"
#include "stats.h"
#include "summary.h"

/* The workload parameters the options describe. */
void mailer_workload_params(const struct cli_options *o, struct workload_params *wp);

/* The build step every model runs: workload_build, or with --prebuild the
 * email built before the run's clock started (its ownership moves to e; an
 * index past the prebuilt ones is built now). */
int mailer_build(const struct workload_params *wp, uint64_t index, struct workload_email *e);
/* The same in two steps, for a model that renders an email only when a
 * session is ready to send it (the async chain): the summary (the CPU work;
 * with --prebuild, the prebuilt email's), and later the message from it (the
 * prebuilt one if it has not been taken, else rendered: the same bytes, so
 * a retry renders it again).  Each returns 0, or -1 out of memory. */
int mailer_summarize(const struct workload_params *wp, uint64_t index, struct workload_summary *s);
int mailer_render(const struct workload_params *wp, const struct workload_summary *s,
                  struct workload_email *e);
/* --prebuild: build emails 0 .. o->emails - 1 now, before the clock starts,
 * so that what is timed is the SMTP machinery alone (section 9 compares it
 * with smtp-source, which renders nothing).  Returns 0, or -1 out of memory. */
int mailer_prebuild(const struct cli_options *o, const struct workload_params *wp);
/* What every model calls before its clock starts: --cpu-per-email, if given
 * (mailer_calibrate), --trace (opens the trace, written out when the process
 * exits), --prebuild, if given, then the wait for --start-at, if given
 * (cli_wait_start).  Returns 0, or the exit status after printing
 * why: 2 for a --cpu-per-email that cannot be had or a --trace file that
 * cannot be written, 1 when --prebuild runs out of memory; the model exits
 * with it before anything is sent. */
int mailer_prepare(struct cli_options *o);

/* --cpu-per-email T: picks the events per email whose build (workload_build:
 * generate, summarise, render, hash) takes T of CPU on this machine, by
 * timing builds (CLOCK_THREAD_CPUTIME_ID) of emails outside the run's
 * numbering, in the main thread for sync and async and in a thread of its
 * own for threads and hybrid (where the builds run): once at 0 events (the
 * base: rendering), then at a guess, then refining the count by the ratio of
 * asked to measured time (the cost is O(E log E), nearly linear) until a
 * measurement is within 3% or after 6 rounds; then the least of 5
 * measurements at that count (contention only adds CPU time) sets the final
 * count by the same ratio.  Sets
 * o->events and o->calib (the run's JSON records it under
 * params.calibration).  Returns 0, or -1 after printing why (T beyond what
 * --events' bound allows, or below the base cost). */
int mailer_calibrate(struct cli_options *o);

/* Open loop (--rate R): the schedule is one of chains (--chain K; 1 by
 * default, so one of emails): chain c arrives at its intended start, from
 * lib/arrivals.h (constant spacing K / R, or Poisson of mean rate R / K),
 * waits in the queue for a slot (--max-queue bounds it: more are shed) and
 * then sends its emails in order, email k of it not before its intended
 * start, chain's + k / R.  Latency is measured from the intended start. */
struct arrivals *mailer_arrivals(const struct cli_options *o, double start);
/* The same with the Poisson schedule's seed given (one per reactor of the
 * async model; mailer_arrivals uses o->seed). */
struct arrivals *mailer_arrivals_seeded(const struct cli_options *o, double start, uint64_t seed);
double mailer_email_due(struct arrivals *a, const struct cli_options *o, long long index);
/* The emails a concurrency slot takes at once in the closed loop: --chain,
 * or with independent emails --per-session, so that each connection carries
 * exactly --per-session emails in every model (the threads model's unit,
 * and the reactor models': a slot owns its session as a thread owns its
 * connection).  The open loop (--rate) and --join take --chain. */
long long mailer_unit(const struct cli_options *o);
/* At the end of an open-loop run: scheduled, shed, pending (still waiting
 * when the window closed) and the peak queue into the run's statistics, in
 * emails (a chain counts its emails). */
void mailer_arrivals_end(struct arrivals *a, const struct cli_options *o, struct stats_run *s);

/* --join N (blocking models): is email `index` a summary (index % (N+1) == N)?
 * A member reports its end with mailer_join_ended; a summary waits in
 * mailer_join_wait until the N members before it have ended (a condition
 * variable): 1 when they were all delivered, 0 when one failed, -1 when the
 * steady-state window closed before they all ended (a member was never sent:
 * the summary is not sent either, and not counted). */
bool mailer_join_is_summary(const struct cli_options *o, long long index);
void mailer_join_ended(const struct cli_options *o, long long index, bool delivered);
int mailer_join_wait(const struct cli_options *o, long long index);

#endif
