/* threadpool — Twisted's deferToThread over a fixed pthread pool (spec:
 * shared/spec/deferred.md §6.4).
 *
 * threadpool_defer_to_thread(pool, fn, arg) queues fn(arg) (FIFO) for a worker thread
 * and returns a Deferred (one reference for the caller).  fn returns
 * deferred_ok(value) or deferred_err(failure) (a Failure created in the worker is
 * handed over; returning a Deferred is an error reported as a Failure).  The
 * Deferred ALWAYS fires in the reactor's thread, from its loop, on a later
 * iteration: workers post results to a queue and wake the loop with
 * ev_async.  Like Twisted's, the Deferred has no canceller: cancel() fails it
 * at once with CancelledError, the work still runs, and its result is
 * swallowed.
 *
 * fn must not touch the reactor or any Deferred: only its own argument.
 * While work is outstanding the pool keeps reactor_run() from returning.
 */
#ifndef MAILBENCH_THREADPOOL_H
#define MAILBENCH_THREADPOOL_H

#include "deferred.h"
#include "reactor.h"

struct threadpool;

/* A pool of nthreads (>= 1) workers delivering into reactor r.  NULL if the
 * threads cannot be started. */
struct threadpool *threadpool_new(struct reactor *r, int nthreads);

/* Let the workers finish every queued job, join them, then fire the Deferreds
 * of finished jobs (in this, the reactor's, thread) and free the pool. */
void threadpool_free(struct threadpool *p);

struct deferred *threadpool_defer_to_thread(struct threadpool *p,
                                            struct deferred_result (*fn)(void *arg), void *arg);

#endif
