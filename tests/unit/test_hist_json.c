/* Unit tests for hist_fprint_json (lib/hist.c): the histogram's buckets
 * in the run JSON, which scripts/merge-runs merges.
 *
 * With MAILBENCH_HIST_DUMP=DIR set it also writes, per case, the JSON of
 * three histograms of random samples (DIR/CASE-1.json .. -3.json, each as
 * {"latency_hist": ...}) and what the C code reports for their union
 * (hist_merge, then hist_percentile / mean / share_above:
 * DIR/CASE-union.txt), so tests/integration/test_merge_runs.sh can check
 * that merge-runs recomputes exactly the same figures from the buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retry.h"
#include "hist.h"

/* Shapes: 0 below 256 us (exact buckets), 1 log-uniform 1 us .. 2^34 us
 * (overflow included), 2 ~2 ms with a 1% tail to 10 s, 3 a few values. */
static uint64_t sample(int shape, uint64_t *rng)
{
    uint64_t r = retry_rand64(rng);
    switch (shape) {
    case 0: return r % 256;
    case 1: return (uint64_t)exp((double)(r % 1000000) / 1000000.0 * log(17179869184.0));
    case 2: return r % 100 == 0 ? 100000 + (r >> 20) % 10000000 : 1500 + (r >> 20) % 1000;
    default: return 4000 + (r >> 20) % 3;
    }
}

static void fill(struct hist *h, int shape, int n, uint64_t *rng)
{
    hist_init(h);
    for (int i = 0; i < n; i++)
        hist_record(h, sample(shape, rng));
}

static char jsbuf[1 << 16];    /* HIST_BUCKETS pairs of short numbers fit */

static const char *to_json(const struct hist *h)
{
    FILE *f = fmemopen(jsbuf, sizeof jsbuf, "w");
    assert_non_null(f);
    hist_fprint_json(f, h);
    assert_false(ferror(f));
    fclose(f);
    return jsbuf;
}

/* Parses the "buckets" list back: the same counts, index order, none empty. */
static void test_buckets_round_trip(void **state)
{
    (void)state;
    uint64_t rng = 7;
    static struct hist h;
    for (int shape = 0; shape < 4; shape++) {
        fill(&h, shape, 5000, &rng);
        const char *js = to_json(&h);
        assert_non_null(strstr(js, "\"scheme\":\"mb-loglinear/1\",\"linear\":256,\"sub\":128"));
        char want[128];
        snprintf(want, sizeof want, "\"count\":%llu,\"sum\":%llu,\"min\":%llu,\"max\":%llu",
                 (unsigned long long)h.count, (unsigned long long)h.sum,
                 (unsigned long long)h.min, (unsigned long long)h.max);
        assert_non_null(strstr(js, want));
        const char *p = strstr(js, "\"buckets\":[");
        assert_non_null(p);
        p += strlen("\"buckets\":[");
        static uint64_t back[HIST_BUCKETS];
        memset(back, 0, sizeof back);
        int last = -1, n;
        unsigned long long c;
        int i;
        while (sscanf(p, "[%d,%llu]%n", &i, &c, &n) == 2) {
            assert_true(i > last && i < HIST_BUCKETS);
            assert_true(c > 0);
            back[i] = c;
            last = i;
            p += n;
            if (*p == ',')
                p++;
        }
        assert_string_equal(p, "]}");
        assert_memory_equal(back, h.bucket, sizeof back);
    }
    hist_init(&h);
    const char *js = to_json(&h);
    assert_string_equal(js, "{\"scheme\":\"mb-loglinear/1\",\"linear\":256,\"sub\":128,\"count\":0,"
                        "\"sum\":0,\"min\":0,\"max\":0,\"overflow\":0,\"buckets\":[]}");
}

static void dump(const char *dir)
{
    static const int sizes[][3] = { { 1000, 1000, 1000 }, { 1, 0, 7 }, { 10000, 3, 250 } };
    static struct hist part[3], all;
    uint64_t rng = 20261130;
    int ncase = 0;
    for (int shape = 0; shape < 5; shape++)
        for (int s = 0; s < 3; s++) {
            hist_init(&all);
            char path[1024];
            for (int k = 0; k < 3; k++) {
                /* shape 4: each part its own shape, so the parts do not overlap */
                fill(&part[k], shape < 4 ? shape : k + 1, sizes[s][k], &rng);
                hist_merge(&all, &part[k]);
                snprintf(path, sizeof path, "%s/case%d-%d.json", dir, ncase, k + 1);
                FILE *f = fopen(path, "w");
                assert_non_null(f);
                fputs("{\"latency_hist\":", f);
                hist_fprint_json(f, &part[k]);
                fputs("}\n", f);
                fclose(f);
            }
            snprintf(path, sizeof path, "%s/case%d-union.txt", dir, ncase);
            FILE *f = fopen(path, "w");
            assert_non_null(f);
            static const double qs[] = { 0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100 };
            for (size_t q = 0; q < sizeof qs / sizeof qs[0]; q++)
                fprintf(f, "p%g %llu\n", qs[q], (unsigned long long)hist_percentile(&all, qs[q]));
            fprintf(f, "mean %.1f\n", hist_mean(&all));
            fprintf(f, "share10x %.6f\n", hist_share_above(&all, 10 * hist_percentile(&all, 50)));
            fprintf(f, "count %llu\n", (unsigned long long)all.count);
            fclose(f);
            ncase++;
        }
}

static void test_dump(void **state)
{
    (void)state;
    const char *dir = getenv("MAILBENCH_HIST_DUMP");
    if (dir == NULL || *dir == '\0')
        skip();
    dump(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_round_trip),
        cmocka_unit_test(test_dump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
