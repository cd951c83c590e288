/* async_reactors — see async_reactors.h. */
#include "async_reactors.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "retry.h"

#define PROGRESS_EVERY_S 0.25

/* The part of `total` that goes to k of n (0 <= k < n): as equal as can be. */
static long long part(long long total, int n, int k)
{
    return total / n + (k < total % n);
}

/* Where part k starts. */
static long long part_start(long long total, int n, int k)
{
    long long q = total / n, r = total % n;
    return (long long)k * q + (k < r ? k : r);
}

int async_reactors_count(const struct cli_options *o)
{
    long long unit = mailer_unit(o), n = o->reactors, nchains = (o->emails + unit - 1) / unit;
    if (n > o->concurrency)
        n = o->concurrency;
    if (n > nchains)
        n = nchains;
    if (o->rate > 0 && n > o->rate)
        n = o->rate;
    if (o->max_queue > 0 && n > o->max_queue)
        n = o->max_queue;
    return n < 1 ? 1 : (int)n;
}

void async_reactors_share(const struct cli_options *o, int n, int k, struct async_share *s)
{
    long long unit = mailer_unit(o), nchains = (o->emails + unit - 1) / unit;
    long long c0 = part_start(nchains, n, k), c1 = c0 + part(nchains, n, k);
    s->first = c0 * unit;
    s->emails = (c1 * unit < o->emails ? c1 * unit : o->emails) - s->first;
    s->concurrency = part(o->concurrency, n, k);
    s->rate = o->rate > 0 ? part(o->rate, n, k) : 0;
    s->max_queue = o->max_queue > 0 ? part(o->max_queue, n, k) : 0;
}

/* One reactor thread: its options, reactor, mailer and statistics. */
struct reactor_thread {
    pthread_t tid;
    struct cli_options o;
    struct reactor *r;
    struct async_mailer m;
    struct stats_run stats;
    struct stats_progress progress; /* disabled: the main thread reports */
    struct run_end *end;
};

/* The main thread waits here for the last reactor to finish. */
struct run_end {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int running;
};

static void *reactor_main(void *arg)
{
    struct reactor_thread *t = arg;
    async_mailer_start(&t->m);
    reactor_run(t->r);          /* returns when its last email has ended */
    async_mailer_free(&t->m);
    pthread_mutex_lock(&t->end->lock);
    if (--t->end->running == 0)
        pthread_cond_signal(&t->end->cond);
    pthread_mutex_unlock(&t->end->lock);
    return NULL;
}

int async_reactors_run(struct cli_options *o, async_build_step build, void *build_arg)
{
    int n = async_reactors_count(o);
    if (n < o->reactors)
        fprintf(stderr, "summary-%s: --reactors %lld: running %d (no more than the emails in "
                "flight, the chains, the rate or the queue bound allow)\n", o->model, o->reactors, n);
    o->reactors = n;
    int prc = mailer_prepare(o);
    if (prc != 0)
        return prc;
    struct stats_run stats;
    struct stats_progress progress;
    stats_run_init(&stats, (uint64_t)o->emails);
    stats_progress_init(&progress, o, o->model);

    struct reactor_thread *t = calloc((size_t)n, sizeof *t);
    struct run_end end = { .running = n };
    if (t == NULL) {
        fprintf(stderr, "summary-%s: out of memory for %d reactors\n", o->model, n);
        return 1;
    }
    pthread_mutex_init(&end.lock, NULL);
    pthread_cond_init(&end.cond, NULL);
    _Atomic long long done = 0;
    uint64_t seeder = o->seed;
    for (int k = 0; k < n; k++) {
        struct async_share sh;
        async_reactors_share(o, n, k, &sh);
        t[k].o = *o;
        t[k].o.emails = sh.emails;
        t[k].o.concurrency = sh.concurrency;
        t[k].o.rate = sh.rate;
        t[k].o.max_queue = sh.max_queue;
        t[k].o.json[0] = '\0';
        t[k].o.progress = 0;
        t[k].end = &end;
        t[k].r = reactor_new();
        if (t[k].r == NULL) {
            fprintf(stderr, "summary-%s: cannot create the libev loop of reactor %d\n", o->model, k);
            return 1;
        }
        stats_run_init(&t[k].stats, 0);
        memset(&t[k].progress, 0, sizeof t[k].progress);
        async_mailer_init(&t[k].m, &t[k].o, t[k].r, &t[k].stats, &t[k].progress, build, build_arg);
        t[k].m.first = sh.first;
        t[k].m.window_shared = true;
        t[k].m.done_shared = &done;
        if (k > 0) {            /* its own retry jitter and Poisson schedule */
            uint64_t s = retry_rand64(&seeder);
            t[k].m.rng = retry_rand64(&s);
            t[k].m.arrivals_seed = s;
        }
        if (o->rate > 0 && strcmp(o->arrivals, "poisson") != 0)
            t[k].m.arrivals_phase = (double)k * (double)o->chain / (double)o->rate;
    }

    /* One clock and one window for all: every reactor starts now. */
    stats.start_s = stats_now();
    for (int k = 0; k < n; k++)
        t[k].stats.start_s = stats.start_s;
    stats_window_start(o, stats.start_s);
    int started = 0;
    for (; started < n; started++) {
        int err = pthread_create(&t[started].tid, NULL, reactor_main, &t[started]);
        if (err != 0) {
            fprintf(stderr, "summary-%s: cannot start reactor thread %d: %s\n", o->model, started,
                    strerror(err));
            abort();            /* its share of the emails would never be sent */
        }
    }
    stats_sample_threads(&stats);

    /* The main thread only reports progress until the last reactor is done. */
    pthread_mutex_lock(&end.lock);
    while (end.running > 0) {
        pthread_mutex_unlock(&end.lock);
        stats_progress_tick(&progress, (uint64_t)atomic_load(&done), &stats);
        pthread_mutex_lock(&end.lock);
        if (end.running == 0)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long long ns = until.tv_nsec + (long long)(PROGRESS_EVERY_S * 1e9);
        until.tv_sec += ns / 1000000000;
        until.tv_nsec = ns % 1000000000;
        int rc = pthread_cond_timedwait(&end.cond, &end.lock, &until);
        if (rc != 0 && rc != ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&end.lock);
    for (int k = 0; k < n; k++) {
        pthread_join(t[k].tid, NULL);
        stats_run_merge(&stats, &t[k].stats);
        reactor_free(t[k].r);
    }
    free(t);
    pthread_cond_destroy(&end.cond);
    pthread_mutex_destroy(&end.lock);
    stats_run_note_threads(&stats, n + 1);  /* the reactors + main */
    return stats_run_end(o, o->model, &stats, &progress);
}
