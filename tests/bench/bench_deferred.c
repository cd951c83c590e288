/* bench_deferred — nanoseconds per operation of lib/deferred, the same three
 * figures scripts/bench_deferred_twisted.py measures for Twisted:
 *   callback  one callback added to a chain and run (chains of 1000)
 *   deferred  one Deferred created, fired (with one callback) and freed
 *   chained   one returned Deferred: a callback returns an unfired inner
 *             Deferred, the inner fires, the outer resumes (2 Deferreds)
 *   lengthN   the callback figure for chains of N = 10, 100, 1000, 10000
 *             callbacks (the same number of callbacks in all): flat in N
 *             means growing the queue costs nothing per callback
 * Prints "name ns_per_op" lines, best of several rounds (least noise).
 * Usage: bench_deferred [scale]   (scale multiplies the iteration counts) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "deferred.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static volatile intptr_t sink;

static struct deferred_result inc(struct deferred_result r, void *arg)
{
    (void)arg;
    return deferred_ok((void *)((intptr_t)r.value + 1));
}

static struct deferred_result store(struct deferred_result r, void *arg)
{
    (void)arg;
    sink = (intptr_t)r.value;
    return r;
}

static struct deferred_result return_inner(struct deferred_result r, void *inner)
{
    (void)r;
    return deferred_wait(deferred_ref(inner));
}

/* One round of each benchmark; returns ns per operation. */
static long chain_len = 1000;   /* callbacks per chain in bench_callbacks */

static double bench_callbacks(long chains)
{
    const long K = chain_len;
    double t0 = now_s();
    for (long c = 0; c < chains; c++) {
        struct deferred *d = deferred_new();
        for (long i = 0; i < K; i++)
            deferred_add_callback(d, inc, NULL);
        deferred_callback(d, NULL);
        sink = (intptr_t)deferred_current_result(d).value;
        deferred_unref(d);
    }
    return (now_s() - t0) * 1e9 / ((double)chains * K);
}

static double bench_deferreds(long n)
{
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        struct deferred *d = deferred_new();
        deferred_add_callback(d, store, NULL);
        deferred_callback(d, (void *)i);
        deferred_unref(d);
    }
    return (now_s() - t0) * 1e9 / (double)n;
}

static double bench_chained(long n)
{
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        struct deferred *outer = deferred_new(), *inner = deferred_new();
        deferred_add_callback(outer, return_inner, inner);
        deferred_add_callback(outer, store, NULL);
        deferred_callback(outer, NULL);
        deferred_callback(inner, (void *)i);
        deferred_unref(inner);
        deferred_unref(outer);
    }
    return (now_s() - t0) * 1e9 / (double)n;
}

static double best(double (*fn)(long), long n, int rounds)
{
    double b = 1e300;
    for (int r = 0; r < rounds; r++) {
        double v = fn(n);
        if (v < b)
            b = v;
    }
    return b;
}

int main(int argc, char **argv)
{
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    if (!(scale > 0)) {
        fprintf(stderr, "bench_deferred: bad scale '%s' (want a positive number)\n", argv[1]);
        return 2;
    }
    printf("callback %.2f\n", best(bench_callbacks, (long)(2000 * scale), 5));
    printf("deferred %.2f\n", best(bench_deferreds, (long)(2000000 * scale), 5));
    printf("chained %.2f\n", best(bench_chained, (long)(1000000 * scale), 5));
    for (chain_len = 10; chain_len <= 10000; chain_len *= 10)
        printf("length%ld %.2f\n", chain_len,
               best(bench_callbacks, (long)(2000000 * scale) / chain_len + 1, 5));
    return 0;
}
