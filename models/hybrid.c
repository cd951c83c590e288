/* summary-hybrid — the asynchronous model with its CPU work moved off the
 * reactor: the build step of each email (its summary: the CPU work) runs in
 * a pool of --threads worker threads through deferToThread (default: one per
 * core), and the result comes back to the reactor thread as the Deferred
 * firing.  The SMTP dialogue, the retries and the timeouts stay in the one
 * reactor thread (models/mailer/async_mailer.c, shared with the async model); so do
 * the rendering of the message, once a session is ready for it (O(its size),
 * as in the async model), and the --blocking call, which therefore still
 * stalls every connection, unless --blocking-in-pool moves it into the pool
 * too (Twisted's remedy: the blocking call and the build in one deferToThread
 * job). */
#include <stdio.h>
#include <unistd.h>

#include "async_mailer.h"
#include "cli.h"
#include "deferred.h"
#include "reactor.h"
#include "threadpool.h"

/* The build step, in a worker thread: deferToThread(build, job). */
static struct deferred *build_in_pool(struct async_job *job, void *pool)
{
    return threadpool_defer_to_thread(pool, async_job_build, job);
}

/* --blocking-in-pool: the blocking call, then the build, in a worker thread:
 * deferToThread(lambda: (blocking_call(), build(job))). */
static struct deferred_result block_then_build(void *arg)
{
    struct async_job *job = arg;
    workload_blocking_call(job->m->o->blocking_s);
    return async_job_build(job);
}

static struct deferred *block_and_build_in_pool(struct async_job *job, void *pool)
{
    return threadpool_defer_to_thread(pool, block_then_build, job);
}

int main(int argc, char **argv)
{
    struct cli_options o;
    int rc = cli_parse(argc, argv, "hybrid", &o);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    if (o.threads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        o.threads = cores > 0 ? cores : 1;
    }

    struct reactor *r = reactor_new();
    if (r == NULL) {
        fprintf(stderr, "summary-hybrid: cannot create the libev loop\n");
        return 1;
    }
    struct threadpool *pool = threadpool_new(r, (int)o.threads);
    if (pool == NULL) {
        fprintf(stderr, "summary-hybrid: cannot start %lld worker threads\n", o.threads);
        return 1;
    }
    int status = async_mailer_run(&o, r, o.blocking_in_pool ? block_and_build_in_pool : build_in_pool,
                                  pool);
    threadpool_free(pool);
    reactor_free(r);
    return status;
}
