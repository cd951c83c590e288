/* What several unit tests share: the unhandled-error counter (through
 * deferred_set_unhandled_hook) and, for tests that include reactor.h first,
 * a bounded reactor run.  Header-only: each test is its own program. */
#ifndef MAILBENCH_UNIT_SUPPORT_H
#define MAILBENCH_UNIT_SUPPORT_H

#include "deferred.h"
#include "failure.h"

#define UNIT_UNUSED __attribute__((unused))

/* Unhandled-error reports since the last unhandled_setup(). */
static int unhandled;

static void count_unhandled(const struct failure *f, void *arg)
{
    (void)f;
    (void)arg;
    unhandled++;
}

/* A cmocka setup function: zero the counter and install the hook. */
static UNIT_UNUSED int unhandled_setup(void **state)
{
    (void)state;
    unhandled = 0;
    deferred_set_unhandled_hook(count_unhandled, NULL);
    return 0;
}

#ifdef MAILBENCH_REACTOR_H
static UNIT_UNUSED void stop_cb(void *r) { reactor_stop(r); }

/* Run the reactor with a guard timer: fail rather than hang. */
static UNIT_UNUSED void run_bounded(struct reactor *r, double seconds)
{
    struct deferred_call *guard = reactor_call_later(r, seconds, stop_cb, r);
    reactor_run(r);
    deferred_call_cancel(guard);
    deferred_call_unref(guard);
}
#endif

#endif
