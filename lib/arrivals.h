/* arrivals — an open-loop schedule (MEASUREMENT.md §4): email i is due at
 * its intended start t_i, whatever happened to the emails before it, and a
 * FIFO of the emails that are due but not started, optionally bounded.
 *
 *   constant:  t_i = start + i / rate
 *   poisson:   t_i = start + the sum of i exponential gaps of mean 1 / rate,
 *              drawn from a PRNG seeded by the run's seed (the same schedule
 *              in every model for the same seed)
 *
 * The queue: arrivals_admit(a, now) moves every email due by `now` into the
 * FIFO; one that finds the FIFO full (max_queue > 0) is shed, never started
 * (refused at arrival, as a bounded server queue does).  arrivals_next()
 * pops the oldest waiting email.  With max_queue 0 the FIFO is unbounded, as
 * a naive program's is.  Every scheduled email ends up started, shed or (at
 * the end of a run sized by time) still waiting: arrivals_waiting().
 *
 * Thread-safe (one mutex): the threads model's workers share one schedule. */
#ifndef MAILBENCH_ARRIVALS_H
#define MAILBENCH_ARRIVALS_H

#include <stdbool.h>
#include <stdint.h>

struct arrivals;

/* NULL if out of memory.  rate > 0 emails/s; end: no email is due at or
 * after it (the end of the run's window; INFINITY for none); limit: at most
 * this many emails in all. */
struct arrivals *arrivals_new(double start, double rate, bool poisson, uint64_t seed,
                              long long max_queue, double end, long long limit);
void arrivals_free(struct arrivals *a);

/* The intended start of email i (any i >= 0, in any order). */
double arrivals_due(struct arrivals *a, long long i);
/* Admit every email due by now (shedding those that find the queue full);
 * returns when the next one is due (INFINITY: the schedule is over). */
double arrivals_admit(struct arrivals *a, double now);
/* Pop the oldest waiting email into *index; false if none waits. */
bool arrivals_pop(struct arrivals *a, long long *index);
/* Both: admit, then pop (true), or false; *next_due as arrivals_admit's. */
bool arrivals_next(struct arrivals *a, double now, long long *index, double *next_due);

/* Counters, for the run's JSON. */
struct arrivals_counts {
    long long scheduled;    /* emails admitted or shed so far */
    long long shed;         /* refused at arrival: the queue was full */
    long long waiting;      /* due, not started (pending once the run ends) */
    long long peak_queue;   /* most waiting at once */
};
void arrivals_counts(struct arrivals *a, struct arrivals_counts *c);

#endif
