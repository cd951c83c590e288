/* hist — a log-linear latency histogram of microseconds (HdrHistogram's
 * idea, ours): exact below 256 us, then 128 buckets per power of two, so
 * any percentile is within 0.4% of the true sample value; 1 us .. 2^32 us
 * (71 minutes; larger values count in the last bucket, max stays exact).
 * Fixed size (26 KB), no allocation, no locks: give each thread its own
 * and merge them after join.  Pure: standard headers only, no run record,
 * no options (lib/stats.h builds the run record on it). */
#ifndef MAILBENCH_HIST_H
#define MAILBENCH_HIST_H

#include <stdint.h>
#include <stdio.h>

#define HIST_LINEAR 256      /* values below this have a bucket each */
#define HIST_SUB    128      /* buckets per power of two above it */
#define HIST_MAX_US 0xffffffffULL    /* largest value with its own bucket */
#define HIST_BUCKETS (HIST_LINEAR + (32 - 8) * HIST_SUB)

struct hist {
    uint64_t count;     /* samples recorded */
    uint64_t sum;       /* their sum, us (for an exact mean) */
    uint64_t min, max;  /* exact smallest and largest sample, us (0 when empty) */
    uint64_t overflow;  /* samples above HIST_MAX_US (counted in the last bucket) */
    uint64_t bucket[HIST_BUCKETS];   /* samples per bucket */
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t us);
/* dst += src; the result is the histogram of both sample sets. */
void hist_merge(struct hist *dst, const struct hist *src);
/* The q-th percentile (0 < q <= 100) by nearest rank: a value within 0.4%
 * of the smallest sample with at least q% of the samples <= it (the middle
 * of its bucket, clamped to [min, max]); 0 when empty.  q = 100 is max. */
uint64_t hist_percentile(const struct hist *h, double q);
double hist_mean(const struct hist *h);
/* The share of samples in buckets wholly above `us` (fairness: the emails
 * slower than 10 x the median; bucket resolution, 0.4%). */
double hist_share_above(const struct hist *h, uint64_t us);   /* exact; 0 when empty */
/* The histogram as a JSON object, everything a merge needs to recompute the
 * percentiles above exactly (scripts/merge-runs): {"scheme":"mb-loglinear/1",
 * "linear":256,"sub":128,"count","sum","min","max","overflow",
 * "buckets":[[index,count],...]} with the non-empty buckets in index order. */
void hist_fprint_json(FILE *f, const struct hist *h);

#endif
