/* stats — what every model measures, and the one JSON result it writes.
 *
 * Pieces:
 *  - the latency histograms are struct hist (lib/hist.h: log-linear, 0.4%,
 *    no allocation, no locks).
 *  - stats_run: a run's counters + histogram + failure reasons; per
 *    thread too (stats_run_merge), then stats_run_finish() adds wall time, CPU
 *    time, peak RSS, context switches (getrusage RUSAGE_SELF) and threads.
 *  - stats_run_write_json(): the "mailbench.run/1" object (the schema is in
 *    README.md, "The run JSON"), written atomically (temp + rename),
 *    "-" = stdout.  stats_run_print_summary(): two human lines for stderr.
 *  - stats_progress: "delivered x/N, y/s" on stderr at most once a second.
 *
 * Latency definition (the models must follow it): closed loop (--rate 0),
 * from when the model starts working on the email (before the workload's
 * CPU work) to the 250 reply to its final "."; open loop (--rate R), from
 * the email's intended start time, start + index / R, as wrk2 does, so a
 * stalled sender cannot hide its queueing delay.  Retries are inside the
 * latency of the email they retry.
 *
 * Threads peak: the highest value of "Threads:" in /proc/self/status seen by
 * stats_sample_threads(), which stats_run_init and stats_run_finish call, and
 * which a model that starts threads must call once they are all running
 * (the progress tick calls it too); a model may also report a count it
 * knows with stats_run_note_threads(). */
#ifndef MAILBENCH_STATS_H
#define MAILBENCH_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "hist.h"

/* ---------------------------------------------------------------- run */

#define STATS_MAX_REASONS 32    /* distinct failure reasons kept; more go to "other" */
#define STATS_REASON_LEN  80    /* longest reason text kept (truncated) */
#define STATS_MAX_MAYBE   64    /* maybe-delivered hashes listed (all are counted) */

struct stats_reason {
    char text[STATS_REASON_LEN]; /* "<code> <text>", e.g. "451 4.3.0 try later", "drop", "timeout" */
    uint64_t count;             /* emails that failed for good with it */
};

struct stats_run {
    uint64_t emails;        /* emails the run was to send (stats_run_init) */
    uint64_t delivered;     /* emails accepted by the server (250 after "."), each counted once */
    uint64_t failed;        /* emails given up: permanent failure or retries exhausted */
    uint64_t retries;       /* attempts after the first, over all emails */
    uint64_t connections;   /* TCP connections opened */
    uint64_t digest;        /* sum mod 2^64 of the delivered emails' hashes (lib/digest.h) */
    struct hist latency;    /* per delivered email, us (see the definition above); open loop:
                             * from its intended start (coordinated omission corrected) */
    struct hist service;    /* the same emails from their actual start, us */
    struct hist lateness;   /* open loop: actual start - intended start, us, in the window */
    uint64_t behind;        /* open loop: emails started more than 1 ms after they were due (all) */
    /* Open loop (struct arrivals_counts, filled by the model at the end): */
    long long scheduled, shed, pending, peak_queue;
    int nreasons;           /* entries used in reason[] */
    struct stats_reason reason[STATS_MAX_REASONS]; /* failures by reason; stats_run_failed() */
    /* Failed emails of which some attempt was lost after the whole body had
     * been sent and before the reply: the server may hold them.  Counted in
     * `failed` too; the verifier needs them to tell such an email from a
     * lost one (stats_run_failed_maybe). */
    uint64_t maybe_delivered;   /* how many */
    uint64_t maybe_digest;      /* sum of their hashes, mod 2^64 */
    int nmaybe;                 /* hashes listed in maybe_hash[] (<= STATS_MAX_MAYBE) */
    uint64_t maybe_hash[STATS_MAX_MAYBE];
    /* The steady-state window (stats_window_start): only emails that end inside
     * it count in the latency histogram, the rate and the marginal CPU. */
    uint64_t window_delivered;  /* delivered inside the window */
    uint64_t window_failed;     /* given up inside the window */
    double window_s;            /* its length as run (stats_run_finish) */
    double window_first, window_last;   /* stats_now() of the first and last delivery in it (0: none) */
    double cpu_window_s;        /* process CPU (user + sys) spent over the window */
    double start_s;         /* stats_now() at stats_run_init */
    double wall_s;          /* seconds from stats_run_init to stats_run_finish */
    long threads_peak;      /* most threads seen in this process */
    /* Filled by stats_run_finish (whole process, RUSAGE_SELF): */
    double cpu_user_s, cpu_sys_s;   /* CPU time */
    long max_rss_kb;        /* peak resident set, KB */
    long ctx_voluntary;     /* voluntary context switches (waits) */
    long ctx_involuntary;   /* involuntary ones (preemption) */
};

/* Monotonic clock, seconds. */
double stats_now(void);

/* Zeroes *s, records the start time, the planned email count and the
 * current thread count.  Per-thread copies: stats_run_init(&t, 0) each. */
void stats_run_init(struct stats_run *s, uint64_t emails);

/* An email delivered: counts it, adds its hash to the digest, records its
 * latency in microseconds. */
void stats_run_delivered(struct stats_run *s, uint64_t hash, uint64_t latency_us);

/* The same email's latency from its actual start (equal to the above in a
 * closed loop), recorded when the email ends in the window. */
void stats_run_service(struct stats_run *s, uint64_t service_us);
/* Open loop: an email started at `actual`, due at `intended`. */
void stats_run_started(struct stats_run *s, double intended, double actual);

/* An email given up for good, with its reason ("550 5.7.1 rejected",
 * "drop", "timeout", ...): counted by reason text. */
void stats_run_failed(struct stats_run *s, const char *reason);
/* The same for an email that may have reached the server (see maybe_delivered). */
void stats_run_failed_maybe(struct stats_run *s, const char *reason, uint64_t hash);

/* dst += src: counters (the open loop's too), digest, histograms bucket by
 * bucket, reasons; threads_peak = max.
 * Leaves dst's emails, start and rusage fields alone. */
void stats_run_merge(struct stats_run *dst, const struct stats_run *src);

/* Reads Threads: from /proc/self/status, raises s->threads_peak; returns the
 * current count (or -1 if unreadable).  ~10 us: call it now and then (after
 * starting a pool, from a periodic timer), not per email. */
long stats_sample_threads(struct stats_run *s);
void stats_run_note_threads(struct stats_run *s, long threads);

/* ---- the steady-state window (--warmup, --duration) ----
 * One per process.  The model calls stats_window_start(o, t) when its emails
 * start (the threads model: once every thread is up): the window opens at
 * t + warmup and closes at t + warmup + duration (never, with no duration).
 * Emails that end inside it make the figures; every email still counts for
 * the verification (delivered, digest).  The process's CPU time is read
 * when the window opens and closes (the first stats_window_poll at or after
 * each instant; the reactor models poll from timers at those instants), so
 * start-up and the drain after the window are not in the CPU per email. */
void stats_window_start(const struct cli_options *o, double start);
/* May another email start?  False once the window has closed (duration mode). */
bool stats_window_may_start(void);
/* Read the CPU clock if the window has just opened or closed; cheap otherwise. */
void stats_window_poll(void);
/* When the window closes (INFINITY: never, the run is sized by --emails). */
double stats_window_close_at(void);
/* The next instant stats_window_poll has work to do, or INFINITY. */
double stats_window_next(void);

/* Ends the run: wall time, getrusage(RUSAGE_SELF), a last thread sample,
 * the window's length and CPU (closing it now if it is still open). */
void stats_run_finish(struct stats_run *s);

/* Peak resident set of this process image, KB: VmHWM from /proc/self/status
 * (getrusage's ru_maxrss as a fallback).  Not ru_maxrss first: Linux carries
 * the high-water mark of the process that exec'ed us into it, so a program
 * started by a 15 MB Python script would report at least 15 MB. */
long stats_peak_rss_kb(void);

/* Writes the "mailbench.run/1" JSON object for the run to `path` ("-" =
 * stdout; NULL or "" = nothing), atomically through PATH.tmp.PID + rename.
 * `o->threads` should hold the value the model used.  Returns 0, or -1
 * after printing why on stderr. */
int stats_run_write_json(const struct cli_options *o, const char *model,
                         const struct stats_run *s, const char *path);

/* The same object into a stream (tests, and stdout). */
void stats_run_fprint_json(FILE *f, const struct cli_options *o, const char *model,
                           const struct stats_run *s);

/* Two lines for humans, e.g.
 *   summary-async: 1000/1000 delivered, 0 failed, 3 retries, 1.02s, 980.4 emails/s
 *   summary-async: latency p50 1.2ms p99 4.1ms max 9.8ms (closed loop); cpu 0.31s user 0.09s sys; 6.2 MB RSS */
void stats_run_print_summary(FILE *f, const char *model, const struct cli_options *o,
                             const struct stats_run *s);

/* The end of every model's run: end the progress line, stats_run_finish, the
 * summary on stderr, the JSON to o->json.  Returns the exit status: 0 all
 * delivered, 3 some failed, 1 the JSON could not be written. */
struct stats_progress;
int stats_run_end(const struct cli_options *o, const char *model, struct stats_run *s,
                  struct stats_progress *p);

/* ---------------------------------------------------------------- progress */

struct stats_progress {
    int enabled;        /* o->progress, or stderr is a TTY */
    const char *model;  /* for the line's prefix */
    uint64_t total;     /* emails in the run */
    double start, last; /* stats_now() at init and at the last line printed */
    int printed;        /* something was printed (stats_progress_done ends the line) */
};

void stats_progress_init(struct stats_progress *p, const struct cli_options *o, const char *model);
/* Call as often as you like with the emails done so far (delivered + failed)
 * from one thread; prints "\rsummary-MODEL: delivered x/N, y/s" at most once
 * a second, and samples the thread count into s (may be NULL). */
void stats_progress_tick(struct stats_progress *p, uint64_t done, struct stats_run *s);
void stats_progress_done(struct stats_progress *p);

#endif
