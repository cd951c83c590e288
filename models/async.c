/* summary-async — the asynchronous model: one thread, a libev reactor, and
 * each email a Deferred chain (models/mailer/async_mailer.c, shared with the hybrid
 * model).  While one email waits for the server, the reactor runs the others;
 * but everything runs in this one thread, the CPU work of building each email
 * included: while it computes a summary, no connection is served.
 *
 * This file decides only that: the build step runs right here, through
 * maybeDeferred, and hands its result to the rest of the chain.
 *
 * --reactors N runs N such models, one per thread, each over its share of
 * the emails (models/mailer/async_reactors.c): the same design on every core. */
#include <stdio.h>

#include "async_mailer.h"
#include "async_reactors.h"
#include "cli.h"
#include "deferred.h"
#include "reactor.h"

/* The build step, in the reactor thread: maybeDeferred(build, job). */
static struct deferred *build_here(struct async_job *job, void *arg)
{
    (void)arg;
    return deferred_maybe(async_job_build, job);
}

int main(int argc, char **argv)
{
    struct cli_options o;
    int rc = cli_parse(argc, argv, "async", &o);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    o.threads = 1;          /* the reactor's: the JSON says so */
    if (o.reactors > 1)
        return async_reactors_run(&o, build_here, NULL);

    struct reactor *r = reactor_new();
    if (r == NULL) {
        fprintf(stderr, "summary-async: cannot create the libev loop\n");
        return 1;
    }
    int status = async_mailer_run(&o, r, build_here, NULL);
    reactor_free(r);
    return status;
}
