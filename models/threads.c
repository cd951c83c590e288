/* summary-threads — the threaded model: a pool of pthreads, each running the
 * same blocking code as the sync model (models/mailer/blocking_mailer.c).  While one
 * thread waits for the server, the kernel runs another.
 *
 * The unit of work is a chain of --chain emails (1 by default): a thread
 * takes the next chain from a shared atomic counter and sends its emails in
 * order, so an email never starts before the one it depends on has ended.
 * Each thread has its own mailer, connection and statistics (no lock on the
 * hot path); the statistics are merged after join.
 *
 * Steady state: every thread is created first and waits behind a barrier;
 * the run's clock starts when the last one is up, so the server sees all of
 * them at once (created serially, 10,000 threads took most of a 7 s run and
 * the server never saw more than ~3,000).  The peak thread count is tracked
 * as threads start and end, not sampled. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "blocking_mailer.h"
#include "cli.h"
#include "retry.h"
#include "stats.h"

/* Small stacks so that 10,000 threads fit in the address space; the
 * workload's buffers are on the heap. */
#define WORKER_STACK (256 * 1024)

struct run {
    const struct cli_options *o;
    pthread_mutex_t lock;       /* guards go */
    pthread_cond_t opened;      /* signalled when go is set */
    bool go;                    /* the gate is open: the run has started */
    double start;               /* stats_now() when the gate opened (set before go) */
    struct arrivals *arr;       /* open loop: the shared schedule and queue (set before go) */
    atomic_long live, peak;     /* workers running now, and the most at once */
    long long unit;             /* emails a thread takes at once: --chain, or with independent
                                 * emails --per-session, so that each connection carries
                                 * exactly --per-session emails, as in the other models */
    long long nchains;          /* ceil(emails / unit) */
    atomic_llong next_chain;    /* the next chain nobody has taken */
    atomic_llong done;          /* emails ended (delivered or failed) */
};

struct worker {
    pthread_t tid;
    struct run *run;
    struct stats_run stats;     /* this thread's results */
    uint64_t seed;              /* its retry-jitter seed */
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    const struct cli_options *o = r->o;
    struct blocking_mailer m;
    blocking_mailer_init(&m, o, &w->stats, w->seed);
    long now_live = atomic_fetch_add(&r->live, 1) + 1;
    long peak = atomic_load(&r->peak);
    while (now_live > peak && !atomic_compare_exchange_weak(&r->peak, &peak, now_live)) {}
    pthread_mutex_lock(&r->lock);       /* the gate: wait for every thread */
    while (!r->go)
        pthread_cond_wait(&r->opened, &r->lock);
    pthread_mutex_unlock(&r->lock);
    while (stats_window_may_start()) {
        if (r->arr) {               /* open loop: the oldest waiting chain, when due */
            long long c;
            double next;
            if (arrivals_next(r->arr, stats_now(), &c, &next))
                atomic_fetch_add(&r->done, blocking_mailer_send_chain(&m, r->arr, c));
            else if (next == INFINITY)
                break;
            else
                blocking_sleep_until(next);
            continue;
        }
        long long c = atomic_fetch_add(&r->next_chain, 1);
        if (c >= r->nchains)
            break;
        long long end = (c + 1) * r->unit < o->emails ? (c + 1) * r->unit : o->emails;
        for (long long i = c * r->unit; i < end && stats_window_may_start(); i++) {
            blocking_mailer_send(&m, (uint64_t)i, stats_now());
            atomic_fetch_add(&r->done, 1);
        }
    }
    blocking_mailer_finish(&m);
    atomic_fetch_sub(&r->live, 1);
    return NULL;
}

int main(int argc, char **argv)
{
    struct cli_options o;
    int rc = cli_parse(argc, argv, "threads", &o);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    if (o.threads == 0)
        o.threads = o.concurrency;
    o.concurrency = o.threads;      /* one email in flight per thread */

    if ((rc = mailer_prepare(&o)) != 0)
        return rc;
    struct stats_run stats;
    struct stats_progress progress;
    stats_run_init(&stats, (uint64_t)o.emails);
    stats_progress_init(&progress, &o, "threads");
    struct run run = { .o = &o, .start = stats.start_s,
                       .unit = o.chain > 1 ? o.chain : o.per_session };
    run.nchains = (o.emails + run.unit - 1) / run.unit;

    long long n = o.threads;
    struct worker *w = calloc((size_t)n, sizeof *w);
    pthread_attr_t attr;
    if (w == NULL || pthread_attr_init(&attr) != 0) {
        fprintf(stderr, "summary-threads: out of memory for %lld threads\n", n);
        return 1;
    }
    pthread_mutex_init(&run.lock, NULL);
    pthread_cond_init(&run.opened, NULL);
    pthread_attr_setstacksize(&attr, WORKER_STACK);
    uint64_t seeder = o.seed;
    long long started = 0;
    for (; started < n; started++) {
        w[started].run = &run;
        w[started].seed = retry_rand64(&seeder);
        stats_run_init(&w[started].stats, 0);
        int err = pthread_create(&w[started].tid, &attr, worker_main, &w[started]);
        if (err != 0) {     /* run with the threads we got, and say so */
            fprintf(stderr, "summary-threads: pthread_create #%lld of %lld: %s; going on with "
                    "%lld threads (raise ulimit -u / kernel.threads-max / vm.max_map_count)\n",
                    started + 1, n, strerror(err), started);
            break;
        }
    }
    pthread_attr_destroy(&attr);
    if (started == 0)
        return 1;
    o.threads = o.concurrency = started;
    pthread_mutex_lock(&run.lock);      /* every worker is up: open the gate */
    stats.start_s = run.start = stats_now();
    stats_window_start(&o, run.start);
    if (o.rate > 0)
        run.arr = mailer_arrivals(&o, run.start);
    run.go = true;
    pthread_cond_broadcast(&run.opened);
    pthread_mutex_unlock(&run.lock);

    /* The main thread only reports progress, and reads the CPU clock when
     * the steady-state window opens and closes, until every worker is done. */
    while (atomic_load(&run.live) > 0) {
        stats_window_poll();
        stats_progress_tick(&progress, (uint64_t)atomic_load(&run.done), &stats);
        double next = stats_now() + 0.05, edge = stats_window_next();
        blocking_sleep_until(edge < next ? edge : next);
    }
    for (long long i = 0; i < started; i++) {
        pthread_join(w[i].tid, NULL);
        stats_run_merge(&stats, &w[i].stats);
    }
    free(w);
    if (run.arr) {
        mailer_arrivals_end(run.arr, &o, &stats);
        arrivals_free(run.arr);
    }
    pthread_cond_destroy(&run.opened);
    pthread_mutex_destroy(&run.lock);
    stats_run_note_threads(&stats, atomic_load(&run.peak) + 1); /* + main */

    return stats_run_end(&o, "threads", &stats, &progress);
}
