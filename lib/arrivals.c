/* arrivals — an open-loop schedule and its queue (contract in arrivals.h). */
#include "arrivals.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

struct arrivals {
    pthread_mutex_t lock;     /* everything below */
    double start, rate;       /* t_0 and the mean rate */
    bool poisson;             /* exponential gaps, else constant spacing */
    uint64_t rng;             /* splitmix64 state for the gaps */
    double *t;                /* t[i] for i < nt (Poisson: drawn in order) */
    long long nt, cap;        /* entries filled, room */
    double end;               /* nothing is due at or after this */
    long long limit;          /* emails in all */
    long long admitted;       /* next email not yet admitted (or shed) */
    long long shed;           /* refused at arrival */
    long long *fifo;          /* waiting emails, ring of size qcap */
    long long qhead, qlen, qcap;
    long long max_queue;      /* 0: unbounded */
    long long peak;           /* most waiting at once */
};

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

struct arrivals *arrivals_new(double start, double rate, bool poisson, uint64_t seed,
                              long long max_queue, double end, long long limit)
{
    struct arrivals *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    pthread_mutex_init(&a->lock, NULL);
    a->start = start;
    a->rate = rate;
    a->poisson = poisson;
    a->rng = seed ^ 0x6172726976616c73ULL;     /* "arrivals": its own stream */
    a->end = end;
    a->limit = limit;
    a->max_queue = max_queue;
    return a;
}

void arrivals_free(struct arrivals *a)
{
    if (a == NULL)
        return;
    pthread_mutex_destroy(&a->lock);
    free(a->t);
    free(a->fifo);
    free(a);
}

/* Poisson times are drawn in index order and kept: t[i] = t[i-1] + gap. */
static double due_locked(struct arrivals *a, long long i)
{
    if (!a->poisson)
        return a->start + (double)i / a->rate;
    while (a->nt <= i) {
        if (a->nt == a->cap) {
            a->cap = a->cap ? 2 * a->cap : 1024;
            double *t = realloc(a->t, (size_t)a->cap * sizeof *t);
            if (t == NULL)
                abort();
            a->t = t;
        }
        double u = ((double)(splitmix64(&a->rng) >> 11) + 0.5) * 0x1p-53;   /* (0, 1) */
        a->t[a->nt] = a->nt == 0 ? a->start : a->t[a->nt - 1] - log(u) / a->rate;
        a->nt++;
    }
    return a->t[i];
}

double arrivals_due(struct arrivals *a, long long i)
{
    pthread_mutex_lock(&a->lock);
    double t = due_locked(a, i);
    pthread_mutex_unlock(&a->lock);
    return t;
}

static void push(struct arrivals *a, long long i)
{
    if (a->max_queue > 0 && a->qlen >= a->max_queue) {
        a->shed++;
        return;
    }
    if (a->qlen == a->qcap) {
        long long cap = a->qcap ? 2 * a->qcap : 256;
        long long *q = malloc((size_t)cap * sizeof *q);
        if (q == NULL)
            abort();
        for (long long k = 0; k < a->qlen; k++)
            q[k] = a->fifo[(a->qhead + k) % a->qcap];
        free(a->fifo);
        a->fifo = q;
        a->qcap = cap;
        a->qhead = 0;
    }
    a->fifo[(a->qhead + a->qlen) % a->qcap] = i;
    if (++a->qlen > a->peak)
        a->peak = a->qlen;
}

static double admit_locked(struct arrivals *a, double now)
{
    while (a->admitted < a->limit) {
        double t = due_locked(a, a->admitted);
        if (t >= a->end)
            return INFINITY;
        if (t > now)
            return t;
        push(a, a->admitted++);
    }
    return INFINITY;
}

double arrivals_admit(struct arrivals *a, double now)
{
    pthread_mutex_lock(&a->lock);
    double next = admit_locked(a, now);
    pthread_mutex_unlock(&a->lock);
    return next;
}

static bool pop_locked(struct arrivals *a, long long *index)
{
    if (a->qlen == 0)
        return false;
    *index = a->fifo[a->qhead];
    a->qhead = (a->qhead + 1) % a->qcap;
    a->qlen--;
    return true;
}

bool arrivals_pop(struct arrivals *a, long long *index)
{
    pthread_mutex_lock(&a->lock);
    bool got = pop_locked(a, index);
    pthread_mutex_unlock(&a->lock);
    return got;
}

bool arrivals_next(struct arrivals *a, double now, long long *index, double *next_due)
{
    pthread_mutex_lock(&a->lock);
    *next_due = admit_locked(a, now);
    bool got = pop_locked(a, index);
    pthread_mutex_unlock(&a->lock);
    return got;
}

void arrivals_counts(struct arrivals *a, struct arrivals_counts *c)
{
    pthread_mutex_lock(&a->lock);
    c->scheduled = a->admitted;
    c->shed = a->shed;
    c->waiting = a->qlen;
    c->peak_queue = a->peak;
    pthread_mutex_unlock(&a->lock);
}
