/* mailer — see mailer.h. */
#include "mailer.h"

#include <math.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trace.h"

/* lib/cli.h bounds the options without including the workload's header:
 * the two sets of limits must be the same numbers. */
_Static_assert(CLI_MAX_EVENTS == WORKLOAD_MAX_EVENTS, "--events bound differs from the workload's");
_Static_assert(CLI_MAX_RECIPIENTS == WORKLOAD_MAX_RECIPIENTS, "--recipients bound differs");
_Static_assert(CLI_MAX_BODY_BYTES == WORKLOAD_MAX_BODY_BYTES, "--body-bytes bound differs");

struct arrivals *mailer_arrivals(const struct cli_options *o, double start)
{
    return mailer_arrivals_seeded(o, start, o->seed);
}

struct arrivals *mailer_arrivals_seeded(const struct cli_options *o, double start, uint64_t seed)
{
    long long nchains = (o->emails + o->chain - 1) / o->chain;
    struct arrivals *a = arrivals_new(start, (double)o->rate / (double)o->chain,
                                      strcmp(o->arrivals, "poisson") == 0, seed, o->max_queue,
                                      stats_window_close_at(), nchains);
    if (a == NULL) {
        fprintf(stderr, "summary-%s: out of memory for the schedule\n", o->model);
        abort();
    }
    return a;
}

long long mailer_unit(const struct cli_options *o)
{
    return o->chain > 1 || o->rate > 0 || o->join > 0 ? o->chain : o->per_session;
}

double mailer_email_due(struct arrivals *a, const struct cli_options *o, long long index)
{
    long long c = index / o->chain, k = index % o->chain;
    return arrivals_due(a, c) + (double)k / (double)o->rate;
}

void mailer_arrivals_end(struct arrivals *a, const struct cli_options *o, struct stats_run *s)
{
    struct arrivals_counts c;
    arrivals_counts(a, &c);
    long long k = o->chain;
    s->scheduled = c.scheduled * k < o->emails ? c.scheduled * k : o->emails;
    s->shed = c.shed * k;
    s->pending = c.waiting * k;
    s->peak_queue = c.peak_queue;
}

/* The prebuilt emails, process-wide (each index is taken once, by the one
 * thread that sends it: no lock). */
static struct workload_email *prebuilt;
static unsigned char *prebuilt_taken;
static long long nprebuilt;

int mailer_prebuild(const struct cli_options *o, const struct workload_params *wp)
{
    prebuilt = calloc((size_t)o->emails, sizeof *prebuilt);
    prebuilt_taken = calloc((size_t)o->emails, 1);
    if (prebuilt == NULL || prebuilt_taken == NULL)
        return -1;
    for (nprebuilt = 0; nprebuilt < o->emails; nprebuilt++)
        if (workload_build(wp, (uint64_t)nprebuilt, &prebuilt[nprebuilt]) != 0)
            return -1;
    return 0;
}

/* Thread CPU time, seconds. */
static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The CPU of one build at `events`, seconds: the mean over at least `min_builds`
 * builds and at least 30 ms (emails numbered from 1.5e9, never the run's). */
static double time_build(const struct workload_params *base, long long events, int min_builds,
                         uint64_t *next_index)
{
    struct workload_params wp = *base;
    wp.events = events;
    wp.chain = 1;
    int n = 0;
    double t0 = thread_cpu(), t = t0;
    while (n < min_builds || t - t0 < 0.03) {
        struct workload_email e;
        if (workload_build(&wp, (*next_index)++, &e) != 0) {
            fprintf(stderr, "mailer: out of memory while calibrating --cpu-per-email\n");
            exit(1);
        }
        workload_email_free(&e);
        n++;
        t = thread_cpu();
    }
    return (t - t0) / n;
}

static int calibrate_here(struct cli_options *o);

struct calib_job { struct cli_options *o; int rc; };

static void *calibrate_thread(void *arg)
{
    struct calib_job *j = arg;
    j->rc = calibrate_here(j->o);
    return NULL;
}

/* The threads and hybrid models build their emails in threads of their own
 * (malloc's per-thread arenas): they are calibrated in such a thread too, so
 * that each model is calibrated where it builds.  (Before fix_allocator an
 * email cost up to ~15% less CPU there than in the main thread, whose arena
 * trimmed and regrew its heap with brk at every build of this size.) */
int mailer_calibrate(struct cli_options *o)
{
    if (strcmp(o->model, "threads") != 0 && strcmp(o->model, "hybrid") != 0)
        return calibrate_here(o);
    struct calib_job j = { o, -1 };
    pthread_t t;
    if (pthread_create(&t, NULL, calibrate_thread, &j) != 0)
        return calibrate_here(o);
    pthread_join(t, NULL);
    return j.rc;
}

static int calibrate_here(struct cli_options *o)
{
    struct workload_params wp;
    double target = o->cpu_per_email_s, start = thread_cpu();
    uint64_t index = 1500000000;     /* past any run's emails (--emails <= 1e9) */
    memset(&o->calib, 0, sizeof o->calib);
    if (target <= 0) {
        o->events = 0;
        return 0;
    }
    mailer_workload_params(o, &wp);
    int few = target > 0.05 ? 1 : 3;           /* long builds: fewer of each */
    time_build(&wp, 1000, 1, &index);          /* warm the caches and the allocator */
    double base = time_build(&wp, 0, 5, &index);
    long long events = 10000;
    double t = time_build(&wp, events, few, &index);
    int rounds = 2;
    if (target <= base) {
        fprintf(stderr, "summary-%s: --cpu-per-email %gus is below the cost of an email with no "
                "events here (%.1fus): ask for more, or use --events 0\n", o->model, target * 1e6,
                base * 1e6);
        return -1;
    }
    for (; rounds < 8; rounds++) {
        double work = t - base;
        double next = work > 0 ? (double)events * (target - base) / work : (double)events * 10;
        if (next > (double)CLI_MAX_EVENTS) {
            if (events == CLI_MAX_EVENTS) {
                fprintf(stderr, "summary-%s: --cpu-per-email %gms needs more than --events %lld "
                        "here (%lld events take %.3fms): ask for less\n", o->model,
                        target * 1e3, CLI_MAX_EVENTS, events, t * 1e3);
                return -1;
            }
            next = (double)CLI_MAX_EVENTS;
        }
        long long n = llround(next) > 0 ? llround(next) : 1;
        if (rounds > 2 && fabs(t - target) <= 0.03 * target)
            break;
        events = n;
        t = time_build(&wp, events, few, &index);
    }
    /* The last step on the median of 9 measurements (~0.3 s).  On a shared
     * VM a build's cost swings by ~25% between phases that last longer than
     * one measurement (the host's other guests: measured here, the same
     * process building at 135 ns an event, later at 170); the least of a
     * few picked the fast phase, and the runs, which see both, then cost
     * ~10% more than asked.  The median is the typical phase. */
    enum { NM = 9 };
    double m[NM];
    for (int i = 0; i < NM; i++) {
        m[i] = time_build(&wp, events, few, &index);
        for (int j = i; j > 0 && m[j] < m[j - 1]; j--) {
            double tmp = m[j];
            m[j] = m[j - 1];
            m[j - 1] = tmp;
        }
    }
    t = m[NM / 2];
    if (t > base && fabs(t - target) > 0.01 * target) {
        double next = (double)events * (target - base) / (t - base);
        long long n = llround(next < (double)CLI_MAX_EVENTS ? next : (double)CLI_MAX_EVENTS);
        t = base + (t - base) * (double)n / (double)events;    /* the measured cost, scaled */
        events = n > 0 ? n : 1;
    }
    rounds += NM;
    o->events = events;
    o->calib.events = events;
    o->calib.measured_s = t;
    o->calib.base_s = base;
    o->calib.ns_per_event = events > 0 ? (t - base) / (double)events * 1e9 : 0;
    o->calib.rounds = rounds;
    o->calib.took_s = thread_cpu() - start;
    return 0;
}

static const char *trace_model;

static void trace_at_exit(void)
{
    if (trace_close() != 0)
        fprintf(stderr, "summary-%s: --trace: write error\n", trace_model);
}

/* One allocator behaviour in every model.  glibc's main arena (where the
 * sync and async models build their emails) gives the top of its heap back
 * with brk whenever a free leaves more than 128 KB there, and takes it
 * back at the next build: at 16,000 events an email, ~110 page faults per
 * email in sync and async against ~1.5 in threads and hybrid, whose
 * threads' arenas do not (measured with /usr/bin/time's minor faults:
 * 44,170 against 593 for 400 emails).  Its mmap threshold also moves with
 * the frees.  Fixed thresholds: no model pays for the allocator's trimming
 * (a message up to 32 MB comes from the heap, whose pages stay).  Under a
 * sanitizer, whose allocator has no such thresholds, mallopt returns 0 and
 * there is nothing to fix: its result is not an error. */
static void fix_allocator(void)
{
    (void)mallopt(M_TRIM_THRESHOLD, 256 << 20);
    (void)mallopt(M_MMAP_THRESHOLD, 32 << 20);
}

int mailer_prepare(struct cli_options *o)
{
    fix_allocator();
    if (o->cpu_per_email_set && mailer_calibrate(o) != 0)
        return 2;               /* the time asked cannot be had: a usage error */
    if (o->trace[0] && trace_open(o->trace, o->trace_emails) != 0) {
        fprintf(stderr, "summary-%s: cannot write --trace '%s': %s\n", o->model, o->trace,
                strerror(errno));
        return 2;
    }
    if (o->trace[0]) {
        trace_model = o->model;
        atexit(trace_at_exit);      /* the lines are written when the model exits */
    }
    if (o->prebuild) {
        struct workload_params wp;
        mailer_workload_params(o, &wp);
        if (mailer_prebuild(o, &wp) != 0) {
            fprintf(stderr, "summary-%s: --prebuild: out of memory for %lld emails\n", o->model, o->emails);
            return 1;
        }
    }
    cli_wait_start(o);              /* --start-at: the load generators' barrier */
    return 0;
}

int mailer_build(const struct workload_params *wp, uint64_t index, struct workload_email *e)
{
    if ((long long)index < nprebuilt && !prebuilt_taken[index]) {
        prebuilt_taken[index] = 1;
        *e = prebuilt[index];
        return 0;
    }
    return workload_build(wp, index, e);
}

int mailer_summarize(const struct workload_params *wp, uint64_t index, struct workload_summary *s)
{
    if ((long long)index < nprebuilt && !prebuilt_taken[index]) {
        *s = prebuilt[index].summary;       /* built already: nothing to compute */
        return 0;
    }
    return workload_summarize(wp, index, s);
}

int mailer_render(const struct workload_params *wp, const struct workload_summary *s,
                  struct workload_email *e)
{
    uint64_t index = s->index;
    if ((long long)index < nprebuilt && !prebuilt_taken[index]) {
        prebuilt_taken[index] = 1;
        *e = prebuilt[index];
        return 0;
    }
    return workload_render(wp, s, e);
}

void mailer_workload_params(const struct cli_options *o, struct workload_params *wp)
{
    wp->seed = o->seed;
    wp->events = o->events;
    wp->recipients = (int)o->recipients;
    wp->body_bytes = o->body_bytes;
    wp->chain = o->chain;
}

/* --join: per group of N + 1 emails, how many of its N members have ended and
 * how many of them failed (process-wide: the threads model's workers share it). */
static pthread_mutex_t join_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t join_cond = PTHREAD_COND_INITIALIZER;
static struct join_group { long long ended, failed; } *groups;
static long long ngroups;

static struct join_group *join_group_of(const struct cli_options *o, long long index)
{
    long long g = index / (o->join + 1);
    if (g >= ngroups) {
        long long n = ngroups ? ngroups : 64;
        while (n <= g)
            n *= 2;
        struct join_group *p = realloc(groups, (size_t)n * sizeof *p);
        if (p == NULL) {
            fprintf(stderr, "summary-%s: out of memory for --join\n", o->model);
            abort();
        }
        memset(p + ngroups, 0, (size_t)(n - ngroups) * sizeof *p);
        groups = p;
        ngroups = n;
    }
    return &groups[g];
}

bool mailer_join_is_summary(const struct cli_options *o, long long index)
{
    return o->join > 0 && index % (o->join + 1) == o->join;
}

void mailer_join_ended(const struct cli_options *o, long long index, bool delivered)
{
    if (o->join == 0 || mailer_join_is_summary(o, index))
        return;
    pthread_mutex_lock(&join_lock);
    struct join_group *g = join_group_of(o, index);
    g->ended++;
    g->failed += !delivered;
    if (g->ended == o->join)
        pthread_cond_broadcast(&join_cond);
    pthread_mutex_unlock(&join_lock);
}

int mailer_join_wait(const struct cli_options *o, long long index)
{
    pthread_mutex_lock(&join_lock);
    int st = 1;
    while (join_group_of(o, index)->ended < o->join) {
        /* A member taken as the window closed may never be sent: look again
         * every 50 ms, and give up once the window is closed. */
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 50000000;
        if (t.tv_nsec >= 1000000000) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&join_cond, &join_lock, &t);
        if (join_group_of(o, index)->ended < o->join && !stats_window_may_start()) {
            st = -1;
            break;
        }
    }
    if (st == 1 && join_group_of(o, index)->failed > 0)
        st = 0;
    pthread_mutex_unlock(&join_lock);
    return st;
}
