/* hist — the log-linear latency histogram; see hist.h. */
#include "hist.h"

#include <math.h>
#include <string.h>

static int hist_index(uint64_t v)
{
    if (v < HIST_LINEAR)
        return (int)v;
    if (v > HIST_MAX_US)
        return HIST_BUCKETS - 1;
    int e = 63 - __builtin_clzll(v);            /* 8 .. 31 */
    int sub = (int)((v >> (e - 7)) & (HIST_SUB - 1));
    return HIST_LINEAR + (e - 8) * HIST_SUB + sub;
}

/* Lowest value and width of bucket i. */
static void hist_bucket(int i, uint64_t *low, uint64_t *width)
{
    if (i < HIST_LINEAR) {
        *low = (uint64_t)i;
        *width = 1;
        return;
    }
    int e = 8 + (i - HIST_LINEAR) / HIST_SUB, sub = (i - HIST_LINEAR) % HIST_SUB;
    *low = (uint64_t)(HIST_SUB + sub) << (e - 7);
    *width = 1ULL << (e - 7);
}

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof *h);
}

void hist_record(struct hist *h, uint64_t us)
{
    h->bucket[hist_index(us)]++;
    if (h->count == 0 || us < h->min)
        h->min = us;
    if (us > h->max)
        h->max = us;
    h->overflow += us > HIST_MAX_US;
    h->count++;
    h->sum += us;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    if (src->count == 0)
        return;
    for (int i = 0; i < HIST_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
    dst->overflow += src->overflow;
}

uint64_t hist_percentile(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q >= 100.0)
        return h->max;
    double r = ceil(q / 100.0 * (double)h->count);
    uint64_t rank = r < 1.0 ? 1 : (uint64_t)r, seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t low, width;
            hist_bucket(i, &low, &width);
            uint64_t mid = low + (width - 1) / 2;
            return mid < h->min ? h->min : mid > h->max ? h->max : mid;
        }
    }
    return h->max;
}

double hist_share_above(const struct hist *h, uint64_t us)
{
    if (h->count == 0)
        return 0.0;
    uint64_t above = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        uint64_t low, width;
        hist_bucket(i, &low, &width);
        if (low > us)
            above += h->bucket[i];
    }
    return (double)above / (double)h->count;
}

void hist_fprint_json(FILE *f, const struct hist *h)
{
    fprintf(f, "{\"scheme\":\"mb-loglinear/1\",\"linear\":%d,\"sub\":%d,\"count\":%llu,"
            "\"sum\":%llu,\"min\":%llu,\"max\":%llu,\"overflow\":%llu,\"buckets\":[",
            HIST_LINEAR, HIST_SUB, (unsigned long long)h->count, (unsigned long long)h->sum,
            (unsigned long long)h->min, (unsigned long long)h->max, (unsigned long long)h->overflow);
    const char *sep = "";
    for (int i = 0; i < HIST_BUCKETS; i++)
        if (h->bucket[i]) {
            fprintf(f, "%s[%d,%llu]", sep, i, (unsigned long long)h->bucket[i]);
            sep = ",";
        }
    fputs("]}", f);
}

double hist_mean(const struct hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
