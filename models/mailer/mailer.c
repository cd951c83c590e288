/* mailer — see mailer.h. */
#include "mailer.h"

/* lib/cli.h bounds the options without including the workload's header:
 * the two sets of limits must be the same numbers. */
_Static_assert(MB_MAX_EVENTS == WORKLOAD_MAX_EVENTS, "--events bound differs from the workload's");
_Static_assert(MB_MAX_RECIPIENTS == WORKLOAD_MAX_RECIPIENTS, "--recipients bound differs");
_Static_assert(MB_MAX_BODY_BYTES == WORKLOAD_MAX_BODY_BYTES, "--body-bytes bound differs");

void mailer_workload_params(const struct mb_options *o, struct workload_params *wp)
{
    wp->seed = o->seed;
    wp->events = o->events;
    wp->recipients = (int)o->recipients;
    wp->body_bytes = o->body_bytes;
    wp->chain = o->chain;
}
