/* blocking_mailer — see blocking_mailer.h. */
#include "blocking_mailer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "retry.h"
#include "smtp_blocking.h"
#include "trace.h"

enum attempt { ATTEMPT_OK, ATTEMPT_TEMP, ATTEMPT_PERM };

void blocking_mailer_init(struct blocking_mailer *m, const struct cli_options *o,
                          struct stats_run *stats, uint64_t rng_seed)
{
    memset(m, 0, sizeof *m);
    m->o = o;
    mailer_workload_params(o, &m->wp);
    m->cfg.ehlo_name = "client.mailbench.test";
    m->cfg.pipelining = true;
    m->stats = stats;
    m->rng = rng_seed;
    m->fd = -1;
    m->traced = -1;
}

void blocking_sleep_until(double t)
{
    double d = t - stats_now();
    if (d <= 0)
        return;
    struct timespec ts = { (time_t)d, (long)((d - (double)(time_t)d) * 1e9) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* --trace: a blocking call of email m->traced begins / ends ("block" events). */
static void block_start(struct blocking_mailer *m, const char *what)
{
    if (m->traced >= 0)
        trace_event("block", m->traced, NULL, "\"phase\": \"start\", \"what\": \"%s\"", what);
}

static void block_end(struct blocking_mailer *m, const char *what, const char *reason)
{
    if (m->traced >= 0)
        trace_event("block", m->traced, reason, "\"phase\": \"end\", \"what\": \"%s\"", what);
}

/* The next event of the client core: a blocking wait for the server. */
static int wait_event(struct blocking_mailer *m, struct smtp_client_event *ev, const char *what)
{
    block_start(m, what);
    int st = smtp_blocking_next_event(m->fd, m->c, m->o->timeout_s, ev);
    if (m->traced >= 0)
        block_end(m, st == SMTP_BLOCKING_EVENT ? smtp_client_event_name(ev->type)
                     : st == SMTP_BLOCKING_TIMEOUT ? "timeout" : what, NULL);
    return st;
}

/* The backoff before retry number `attempt` (0-based): this thread sleeps. */
static void backoff(struct blocking_mailer *m, const struct retry_policy *policy, int attempt)
{
    block_start(m, "backoff");
    blocking_sleep_until(stats_now() + retry_backoff(policy, attempt, &m->rng));
    block_end(m, "backoff", NULL);
}

static void drop_connection(struct blocking_mailer *m)
{
    if (m->fd >= 0)
        close(m->fd);
    smtp_client_free(m->c);
    m->fd = -1;
    m->c = NULL;
    m->on_conn = 0;
}

/* Opens a connection if none is open; a failure is a temporary one. */
static enum attempt ensure_connection(struct blocking_mailer *m, char *reason, size_t len)
{
    if (m->fd >= 0)
        return ATTEMPT_OK;
    block_start(m, "connect");
    m->fd = smtp_blocking_connect(m->o->host, m->o->port, m->o->timeout_s, reason, len);
    block_end(m, "connect", m->fd < 0 ? reason : NULL);
    if (m->fd < 0)
        return ATTEMPT_TEMP;
    m->stats->connections++;
    m->c = smtp_client_new(&m->cfg);
    if (m->c == NULL) {
        snprintf(reason, len, "out of memory");
        drop_connection(m);
        return ATTEMPT_PERM;
    }
    return ATTEMPT_OK;
}

static void describe_failure(const struct smtp_client_event *ev, char *reason, size_t len)
{
    if (ev->local || ev->code == 0)
        snprintf(reason, len, "%s: %s", smtp_client_stage_name(ev->stage), ev->text);
    else
        snprintf(reason, len, "%d %s", ev->code, ev->text);
    char *nl = strchr(reason, '\n');
    if (nl)
        *nl = '\0';
}

/* One try: send the email on the (possibly new) connection and wait for its
 * MESSAGE_DONE event.  Any failure that leaves the session unusable closes
 * the connection, so the retry starts afresh. */
static enum attempt attempt_once(struct blocking_mailer *m, const struct workload_email *e,
                                 char *reason, size_t len, bool *maybe)
{
    enum attempt r = ensure_connection(m, reason, len);
    if (r != ATTEMPT_OK)
        return r;
    if (smtp_client_send_flags(m->c, e->from, (const char *const *)e->rcpt, (size_t)e->nrcpt,
                               e->data, e->len, e->smtp_safe ? SMTP_CLIENT_SAFE : 0,
                               NULL) != 0) {
        snprintf(reason, len, "session unusable");
        drop_connection(m);
        return ATTEMPT_TEMP;
    }
    struct smtp_client_event ev;
    for (;;) {
        int st = wait_event(m, &ev, "reply");
        if (st == SMTP_BLOCKING_TIMEOUT) {
            smtp_client_abort(m->c, "timeout");
            continue;
        }
        if (st == SMTP_BLOCKING_IDLE) {     /* cannot happen with a message queued */
            snprintf(reason, len, "client idle with a message queued");
            drop_connection(m);
            return ATTEMPT_TEMP;
        }
        if (ev.type == SMTP_CLIENT_MESSAGE_DONE)
            break;
    }
    m->on_conn++;
    if (ev.maybe_delivered)
        *maybe = true;
    if (ev.result == SMTP_CLIENT_OK)
        return ATTEMPT_OK;
    describe_failure(&ev, reason, len);
    if (!smtp_client_is_idle(m->c))
        drop_connection(m);
    return ev.result == SMTP_CLIENT_PERMFAIL ? ATTEMPT_PERM : ATTEMPT_TEMP;
}

bool blocking_mailer_send(struct blocking_mailer *m, uint64_t index, double t0)
{
    const struct cli_options *o = m->o;
    double started = stats_now();
    m->traced = trace_email((long long)index) ? (long long)index : -1;
    if (m->traced >= 0)
        trace_event("email", m->traced, NULL, "\"phase\": \"start\"");
    if (mailer_join_is_summary(o, (long long)index)) {     /* --join: wait for its members */
        block_start(m, "join");
        int members = mailer_join_wait(o, (long long)index);
        block_end(m, "join", NULL);
        if (members < 0)
            return false;       /* the window closed first: never started */
        if (members == 0) {
            stats_run_failed(m->stats, "join: a member failed");
            return false;
        }
    }
    if (o->blocking_s > 0) {
        block_start(m, "blocking_call");
        workload_blocking_call(o->blocking_s);
        block_end(m, "blocking_call", NULL);
    }
    struct workload_email e;
    block_start(m, "build");
    int built = mailer_build(&m->wp, index, &e);
    block_end(m, "build", NULL);
    if (built != 0) {
        stats_run_failed(m->stats, "workload: out of memory");
        mailer_join_ended(o, (long long)index, false);
        return false;
    }
    struct retry_policy policy = RETRY_POLICY_DEFAULT;
    policy.max_retries = (int)o->retries;
    char reason[256] = "";
    enum attempt r = ATTEMPT_TEMP;
    bool maybe = false;         /* some attempt may have reached the server */
    for (int attempt = 0; attempt <= policy.max_retries; attempt++) {
        if (attempt > 0) {
            m->stats->retries++;
            backoff(m, &policy, attempt - 1);
        }
        r = attempt_once(m, &e, reason, sizeof reason, &maybe);
        if (r != ATTEMPT_TEMP)
            break;
    }
    if (r == ATTEMPT_OK) {
        double now = stats_now();
        stats_run_delivered(m->stats, e.hash, (uint64_t)((now - t0) * 1e6));
        stats_run_service(m->stats, (uint64_t)((now - started) * 1e6));
    }
    else if (maybe)
        stats_run_failed_maybe(m->stats, reason, e.hash);
    else
        stats_run_failed(m->stats, reason);
    workload_email_free(&e);
    if (m->on_conn >= o->per_session)
        blocking_mailer_finish(m);
    mailer_join_ended(o, (long long)index, r == ATTEMPT_OK);
    if (m->traced >= 0)
        trace_event("email", m->traced, r == ATTEMPT_OK ? NULL : reason,
                    "\"phase\": \"end\", \"result\": \"%s\"",
                    r == ATTEMPT_OK ? "delivered" : "failed");
    m->traced = -1;
    return r == ATTEMPT_OK;
}

long long blocking_mailer_send_chain(struct blocking_mailer *m, struct arrivals *a, long long c)
{
    const struct cli_options *o = m->o;
    long long sent = 0;
    for (long long i = c * o->chain; i < (c + 1) * o->chain && i < o->emails; i++) {
        if (!stats_window_may_start())
            break;
        double due = mailer_email_due(a, o, i);
        blocking_sleep_until(due);
        stats_run_started(m->stats, due, stats_now());
        blocking_mailer_send(m, (uint64_t)i, due);
        sent++;
    }
    return sent;
}

void blocking_mailer_finish(struct blocking_mailer *m)
{
    if (m->c == NULL)
        return;
    smtp_client_quit(m->c);
    struct smtp_client_event ev;
    for (;;) {
        int st = wait_event(m, &ev, "quit");
        if (st == SMTP_BLOCKING_TIMEOUT) {
            smtp_client_abort(m->c, "timeout");
            continue;
        }
        if (st != SMTP_BLOCKING_EVENT || ev.type == SMTP_CLIENT_CLOSED)
            break;
    }
    drop_connection(m);
}
