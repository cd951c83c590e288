/* stats — what every model measures, and the one JSON result it writes.
 *
 * Pieces:
 *  - mb_hist: a log-linear latency histogram of microseconds (HdrHistogram's
 *    idea, ours): exact below 256 us, then 128 buckets per power of two, so
 *    any percentile is within 0.4% of the true sample value; 1 us .. 2^32 us
 *    (71 minutes; larger values count in the last bucket, max stays exact).
 *    Fixed size (26 KB), no allocation, no locks: give each thread its own
 *    and merge them after join.
 *  - mb_run_stats: a run's counters + histogram + failure reasons; per
 *    thread too (mb_run_merge), then mb_run_finish() adds wall time, CPU
 *    time, peak RSS, context switches (getrusage RUSAGE_SELF) and threads.
 *  - mb_run_write_json(): the "mailbench.run/1" object (the schema is in
 *    README.md, "The run JSON"), written atomically (temp + rename),
 *    "-" = stdout.  mb_run_print_summary(): two human lines for stderr.
 *  - mb_progress: "delivered x/N, y/s" on stderr at most once a second.
 *
 * Latency definition (the models must follow it): closed loop (--rate 0),
 * from when the model starts working on the email (before the workload's
 * CPU work) to the 250 reply to its final "."; open loop (--rate R), from
 * the email's intended start time, start + index / R, as wrk2 does, so a
 * stalled sender cannot hide its queueing delay.  Retries are inside the
 * latency of the email they retry.
 *
 * Threads peak: the highest value of "Threads:" in /proc/self/status seen by
 * mb_stats_sample_threads(), which mb_run_init and mb_run_finish call, and
 * which a model that starts threads must call once they are all running
 * (the progress tick calls it too); a model may also report a count it
 * knows with mb_run_note_threads(). */
#ifndef MAILBENCH_STATS_H
#define MAILBENCH_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"

/* ---------------------------------------------------------------- histogram */

#define MB_HIST_LINEAR 256      /* values below this have a bucket each */
#define MB_HIST_SUB    128      /* buckets per power of two above it */
#define MB_HIST_MAX_US 0xffffffffULL    /* largest value with its own bucket */
#define MB_HIST_BUCKETS (MB_HIST_LINEAR + (32 - 8) * MB_HIST_SUB)

struct mb_hist {
    uint64_t count;     /* samples recorded */
    uint64_t sum;       /* their sum, us (for an exact mean) */
    uint64_t min, max;  /* exact smallest and largest sample, us (0 when empty) */
    uint64_t overflow;  /* samples above MB_HIST_MAX_US (counted in the last bucket) */
    uint64_t bucket[MB_HIST_BUCKETS];   /* samples per bucket */
};

void mb_hist_init(struct mb_hist *h);
void mb_hist_record(struct mb_hist *h, uint64_t us);
/* dst += src; the result is the histogram of both sample sets. */
void mb_hist_merge(struct mb_hist *dst, const struct mb_hist *src);
/* The q-th percentile (0 < q <= 100) by nearest rank: a value within 0.4%
 * of the smallest sample with at least q% of the samples <= it (the middle
 * of its bucket, clamped to [min, max]); 0 when empty.  q = 100 is max. */
uint64_t mb_hist_percentile(const struct mb_hist *h, double q);
double mb_hist_mean(const struct mb_hist *h);
/* The share of samples in buckets wholly above `us` (fairness: the emails
 * slower than 10 x the median; bucket resolution, 0.4%). */
double mb_hist_share_above(const struct mb_hist *h, uint64_t us);   /* exact; 0 when empty */
/* The histogram as a JSON object, everything a merge needs to recompute the
 * percentiles above exactly (scripts/merge-runs): {"scheme":"mb-loglinear/1",
 * "linear":256,"sub":128,"count","sum","min","max","overflow",
 * "buckets":[[index,count],...]} with the non-empty buckets in index order. */
void mb_hist_fprint_json(FILE *f, const struct mb_hist *h);

/* ---------------------------------------------------------------- run */

#define MB_MAX_REASONS 32       /* distinct failure reasons kept; more go to "other" */
#define MB_REASON_LEN  80       /* longest reason text kept (truncated) */
#define MB_MAX_MAYBE   64       /* maybe-delivered hashes listed (all are counted) */

struct mb_reason {
    char text[MB_REASON_LEN];   /* "<code> <text>", e.g. "451 4.3.0 try later", "drop", "timeout" */
    uint64_t count;             /* emails that failed for good with it */
};

struct mb_run_stats {
    uint64_t emails;        /* emails the run was to send (mb_run_init) */
    uint64_t delivered;     /* emails accepted by the server (250 after "."), each counted once */
    uint64_t failed;        /* emails given up: permanent failure or retries exhausted */
    uint64_t retries;       /* attempts after the first, over all emails */
    uint64_t connections;   /* TCP connections opened */
    uint64_t digest;        /* sum mod 2^64 of the delivered emails' hashes (lib/digest.h) */
    struct mb_hist latency; /* per delivered email, us (see the definition above); open loop:
                             * from its intended start (coordinated omission corrected) */
    struct mb_hist service; /* the same emails from their actual start, us */
    struct mb_hist lateness;/* open loop: actual start - intended start, us, in the window */
    uint64_t behind;        /* open loop: emails started more than 1 ms after they were due (all) */
    /* Open loop (struct arrivals_counts, filled by the model at the end): */
    long long scheduled, shed, pending, peak_queue;
    int nreasons;           /* entries used in reason[] */
    struct mb_reason reason[MB_MAX_REASONS];    /* failures by reason; mb_run_failed() */
    /* Failed emails of which some attempt was lost after the whole body had
     * been sent and before the reply: the server may hold them.  Counted in
     * `failed` too; the verifier needs them to tell such an email from a
     * lost one (mb_run_failed_maybe). */
    uint64_t maybe_delivered;   /* how many */
    uint64_t maybe_digest;      /* sum of their hashes, mod 2^64 */
    int nmaybe;                 /* hashes listed in maybe_hash[] (<= MB_MAX_MAYBE) */
    uint64_t maybe_hash[MB_MAX_MAYBE];
    /* The steady-state window (mb_window_start): only emails that end inside
     * it count in the latency histogram, the rate and the marginal CPU. */
    uint64_t window_delivered;  /* delivered inside the window */
    uint64_t window_failed;     /* given up inside the window */
    double window_s;            /* its length as run (mb_run_finish) */
    double window_first, window_last;   /* mb_now() of the first and last delivery in it (0: none) */
    double cpu_window_s;        /* process CPU (user + sys) spent over the window */
    double start_s;         /* mb_now() at mb_run_init */
    double wall_s;          /* seconds from mb_run_init to mb_run_finish */
    long threads_peak;      /* most threads seen in this process */
    /* Filled by mb_run_finish (whole process, RUSAGE_SELF): */
    double cpu_user_s, cpu_sys_s;   /* CPU time */
    long max_rss_kb;        /* peak resident set, KB */
    long ctx_voluntary;     /* voluntary context switches (waits) */
    long ctx_involuntary;   /* involuntary ones (preemption) */
};

/* Monotonic clock, seconds. */
double mb_now(void);

/* Zeroes *s, records the start time, the planned email count and the
 * current thread count.  Per-thread copies: mb_run_init(&t, 0) each. */
void mb_run_init(struct mb_run_stats *s, uint64_t emails);

/* An email delivered: counts it, adds its hash to the digest, records its
 * latency in microseconds. */
void mb_run_delivered(struct mb_run_stats *s, uint64_t hash, uint64_t latency_us);

/* The same email's latency from its actual start (equal to the above in a
 * closed loop), recorded when the email ends in the window. */
void mb_run_service(struct mb_run_stats *s, uint64_t service_us);
/* Open loop: an email started at `actual`, due at `intended`. */
void mb_run_started(struct mb_run_stats *s, double intended, double actual);

/* An email given up for good, with its reason ("550 5.7.1 rejected",
 * "drop", "timeout", ...): counted by reason text. */
void mb_run_failed(struct mb_run_stats *s, const char *reason);
/* The same for an email that may have reached the server (see maybe_delivered). */
void mb_run_failed_maybe(struct mb_run_stats *s, const char *reason, uint64_t hash);

/* dst += src: counters (the open loop's too), digest, histograms bucket by
 * bucket, reasons; threads_peak = max.
 * Leaves dst's emails, start and rusage fields alone. */
void mb_run_merge(struct mb_run_stats *dst, const struct mb_run_stats *src);

/* Reads Threads: from /proc/self/status, raises s->threads_peak; returns the
 * current count (or -1 if unreadable).  ~10 us: call it now and then (after
 * starting a pool, from a periodic timer), not per email. */
long mb_stats_sample_threads(struct mb_run_stats *s);
void mb_run_note_threads(struct mb_run_stats *s, long threads);

/* ---- the steady-state window (--warmup, --duration) ----
 * One per process.  The model calls mb_window_start(o, t) when its emails
 * start (the threads model: once every thread is up): the window opens at
 * t + warmup and closes at t + warmup + duration (never, with no duration).
 * Emails that end inside it make the figures; every email still counts for
 * the verification (delivered, digest).  The process's CPU time is read
 * when the window opens and closes (the first mb_window_poll at or after
 * each instant; the reactor models poll from timers at those instants), so
 * start-up and the drain after the window are not in the CPU per email. */
void mb_window_start(const struct mb_options *o, double start);
/* May another email start?  False once the window has closed (duration mode). */
bool mb_window_may_start(void);
/* Read the CPU clock if the window has just opened or closed; cheap otherwise. */
void mb_window_poll(void);
/* When the window closes (INFINITY: never, the run is sized by --emails). */
double mb_window_close_at(void);
/* The next instant mb_window_poll has work to do, or INFINITY. */
double mb_window_next(void);

/* Ends the run: wall time, getrusage(RUSAGE_SELF), a last thread sample,
 * the window's length and CPU (closing it now if it is still open). */
void mb_run_finish(struct mb_run_stats *s);

/* Peak resident set of this process image, KB: VmHWM from /proc/self/status
 * (getrusage's ru_maxrss as a fallback).  Not ru_maxrss first: Linux carries
 * the high-water mark of the process that exec'ed us into it, so a program
 * started by a 15 MB Python script would report at least 15 MB. */
long mb_peak_rss_kb(void);

/* Writes the "mailbench.run/1" JSON object for the run to `path` ("-" =
 * stdout; NULL or "" = nothing), atomically through PATH.tmp.PID + rename.
 * `o->threads` should hold the value the model used.  Returns 0, or -1
 * after printing why on stderr. */
int mb_run_write_json(const struct mb_options *o, const char *model,
                      const struct mb_run_stats *s, const char *path);

/* The same object into a stream (tests, and stdout). */
void mb_run_fprint_json(FILE *f, const struct mb_options *o, const char *model,
                        const struct mb_run_stats *s);

/* Two lines for humans, e.g.
 *   summary-async: 1000/1000 delivered, 0 failed, 3 retries, 1.02s, 980.4 emails/s
 *   summary-async: latency p50 1.2ms p99 4.1ms max 9.8ms (closed loop); cpu 0.31s user 0.09s sys; 6.2 MB RSS */
void mb_run_print_summary(FILE *f, const char *model, const struct mb_options *o,
                          const struct mb_run_stats *s);

/* The end of every model's run: end the progress line, mb_run_finish, the
 * summary on stderr, the JSON to o->json.  Returns the exit status: 0 all
 * delivered, 3 some failed, 1 the JSON could not be written. */
struct mb_progress;
int mb_run_end(const struct mb_options *o, const char *model, struct mb_run_stats *s,
               struct mb_progress *p);

/* ---------------------------------------------------------------- progress */

struct mb_progress {
    int enabled;        /* o->progress, or stderr is a TTY */
    const char *model;  /* for the line's prefix */
    uint64_t total;     /* emails in the run */
    double start, last; /* mb_now() at init and at the last line printed */
    int printed;        /* something was printed (mb_progress_done ends the line) */
};

void mb_progress_init(struct mb_progress *p, const struct mb_options *o, const char *model);
/* Call as often as you like with the emails done so far (delivered + failed)
 * from one thread; prints "\rsummary-MODEL: delivered x/N, y/s" at most once
 * a second, and samples the thread count into s (may be NULL). */
void mb_progress_tick(struct mb_progress *p, uint64_t done, struct mb_run_stats *s);
void mb_progress_done(struct mb_progress *p);

#endif
