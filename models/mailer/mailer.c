/* mailer — see mailer.h. */
#include "mailer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* lib/cli.h bounds the options without including the workload's header:
 * the two sets of limits must be the same numbers. */
_Static_assert(MB_MAX_EVENTS == WORKLOAD_MAX_EVENTS, "--events bound differs from the workload's");
_Static_assert(MB_MAX_RECIPIENTS == WORKLOAD_MAX_RECIPIENTS, "--recipients bound differs");
_Static_assert(MB_MAX_BODY_BYTES == WORKLOAD_MAX_BODY_BYTES, "--body-bytes bound differs");

struct arrivals *mailer_arrivals(const struct mb_options *o, double start)
{
    long long nchains = (o->emails + o->chain - 1) / o->chain;
    struct arrivals *a = arrivals_new(start, (double)o->rate / (double)o->chain,
                                      strcmp(o->arrivals, "poisson") == 0, o->seed, o->max_queue,
                                      mb_window_close_at(), nchains);
    if (a == NULL) {
        fprintf(stderr, "summary-%s: out of memory for the schedule\n", o->model);
        abort();
    }
    return a;
}

double mailer_email_due(struct arrivals *a, const struct mb_options *o, long long index)
{
    long long c = index / o->chain, k = index % o->chain;
    return arrivals_due(a, c) + (double)k / (double)o->rate;
}

void mailer_arrivals_end(struct arrivals *a, const struct mb_options *o, struct mb_run_stats *s)
{
    struct arrivals_counts c;
    arrivals_counts(a, &c);
    long long k = o->chain;
    s->scheduled = c.scheduled * k < o->emails ? c.scheduled * k : o->emails;
    s->shed = c.shed * k;
    s->pending = c.waiting * k;
    s->peak_queue = c.peak_queue;
}

void mailer_workload_params(const struct mb_options *o, struct workload_params *wp)
{
    wp->seed = o->seed;
    wp->events = o->events;
    wp->recipients = (int)o->recipients;
    wp->body_bytes = o->body_bytes;
    wp->chain = o->chain;
}
