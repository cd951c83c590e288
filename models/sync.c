/* summary-sync — the synchronous model: one email after another on a
 * blocking socket.  While it waits for the server, it does nothing else.
 *
 * Everything it does per email is models/mailer/blocking_mailer.c, shared with the
 * threads model: this file only decides that there is one of it. */

#include <math.h>

#include "blocking_mailer.h"
#include "cli.h"
#include "stats.h"

int main(int argc, char **argv)
{
    struct cli_options o;
    int rc = cli_parse(argc, argv, "sync", &o);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    o.concurrency = 1;      /* one at a time, whatever was asked: the JSON says so */
    o.threads = 1;

    if ((rc = mailer_prepare(&o)) != 0)
        return rc;
    struct stats_run stats;
    struct stats_progress progress;
    struct blocking_mailer m;
    stats_run_init(&stats, (uint64_t)o.emails);
    stats_progress_init(&progress, &o, "sync");
    blocking_mailer_init(&m, &o, &stats, o.seed);
    stats_window_start(&o, stats.start_s);

    if (o.rate > 0) {
        /* Open loop: chains arrive on the schedule whatever happens; one
         * sender takes the oldest waiting one when it is free. */
        struct arrivals *a = mailer_arrivals(&o, stats.start_s);
        long long c;
        double next;
        while (stats_window_may_start()) {
            if (arrivals_next(a, stats_now(), &c, &next))
                blocking_mailer_send_chain(&m, a, c);
            else if (next == INFINITY)
                break;
            else
                blocking_sleep_until(next);
            stats_window_poll();
            stats_progress_tick(&progress, stats.delivered + stats.failed, &stats);
        }
        mailer_arrivals_end(a, &o, &stats);
        arrivals_free(a);
    } else {
        /* Emails go in index order, so every chain's order holds by itself. */
        for (long long i = 0; i < o.emails && stats_window_may_start(); i++) {
            blocking_mailer_send(&m, (uint64_t)i, stats_now());
            stats_window_poll();
            stats_progress_tick(&progress, stats.delivered + stats.failed, &stats);
        }
    }
    blocking_mailer_finish(&m);

    return stats_run_end(&o, "sync", &stats, &progress);
}
