/* async_mailer — see async_mailer.h. */
#include "async_mailer.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_session.h"
#include "trace.h"

#define PROGRESS_EVERY_S 0.25

static void chain_start_next(struct async_mailer *m);
static void start_chain(struct async_mailer *m, long long c);
static void email_start(struct async_job *job);
static void trace_email_start(struct async_job *job);
static struct deferred_result member_done(struct deferred_result r, void *arg);
static struct deferred_result summary_go(struct deferred_result r, void *arg);
static struct deferred_result summary_failed(struct deferred_result r, void *arg);

/* ---- small Twisted idioms ------------------------------------------------ */

static void fire_later(void *arg)
{
    struct deferred *d = arg;
    deferred_callback(d, NULL);
    deferred_unref(d);
}

/* task.deferLater(reactor, delay): a Deferred firing with NULL after delay. */
static struct deferred *defer_later(struct reactor *r, double delay)
{
    struct deferred *d = deferred_new();
    deferred_call_unref(reactor_call_later(r, delay, fire_later, deferred_ref(d)));
    return d;
}

/* ---- sessions: one per slot --------------------------------------------- */

static struct deferred_result count_connection(struct deferred_result r, void *arg)
{
    struct async_job *job = arg;
    job->m->stats->connections++;
    job->m->slots[job->slot] = r.value;     /* the slot's session from now on */
    return r;
}

/* The slot's session, or a new one if it has none (or the server closed it
 * while it waited), as a thread uses its connection or opens one. */
static struct deferred *get_session(struct async_job *job)
{
    struct async_mailer *m = job->m;
    struct smtp_session *s = m->slots[job->slot];
    if (s != NULL) {
        if (smtp_session_idle(s))
            return deferred_succeed(s);
        m->slots[job->slot] = NULL;
        deferred_unref(smtp_session_quit(s));   /* the server closed it while it waited */
    }
    struct deferred *d = smtp_session_open(m->r, m->o->host, (int)m->o->port,
                                           m->o->timeout_s, &m->cfg);
    deferred_add_timeout(d, m->o->timeout_s, reactor_clock(m->r));
    return deferred_add_callback(d, count_connection, job);
}

/* Will the job's slot send another email after this one?  The chain's next
 * email, or (closed loop) a chain not yet started, or (open loop) one that
 * may still arrive or waits; never once the window has closed.  Else the
 * session goes now, as a thread quits when it finds no more work. */
static bool slot_has_more(const struct async_job *job)
{
    const struct async_mailer *m = job->m;
    if (!stats_window_may_start())
        return false;
    if (job->index + 1 < job->end)
        return true;
    if (m->arr) {
        struct arrivals_counts n;
        arrivals_counts(m->arr, &n);
        return !m->arrivals_over || n.waiting > 0;
    }
    return m->next_chain < m->nchains;
}

/* After an attempt: the rule of the blocking mailer.  A session in no state
 * to go on is dropped (a retry opens a new one); once the email is over
 * (delivered, failed for good, or no retries left) a session that has
 * carried --per-session emails, or whose slot has no more to send, is
 * QUIT; else it stays with the slot, for the email's retry or the slot's
 * next email.  Returns the QUIT's Deferred (fires once the connection is
 * gone) or NULL when the session stays open or is dropped. */
static struct deferred *put_session(struct async_job *job, struct smtp_session *s, bool over)
{
    struct async_mailer *m = job->m;
    if (!smtp_session_idle(s)) {
        m->slots[job->slot] = NULL;
        smtp_session_abort(s);
        return NULL;
    }
    if (over && (smtp_session_sent(s) >= m->o->per_session || !slot_has_more(job))) {
        m->slots[job->slot] = NULL;
        return smtp_session_quit(s);
    }
    return NULL;
}

/* ---- one attempt, and the retries ---------------------------------------- */

static struct deferred *attempt(struct async_job *job);
static struct deferred_result stamp_reply(struct deferred_result r, void *arg);

/* The message is rendered here, once a session is ready for it, from the
 * summary, which goes: only the text is kept (the SMTP client copies the
 * envelope), until the email is delivered, or for its retry. */
static struct deferred_result send_on_session(struct deferred_result r, void *arg)
{
    struct async_job *job = arg;
    struct async_mailer *m = job->m;
    job->s = r.value;
    struct workload_email e = { .from = WORKLOAD_FROM };
    if (job->data == NULL) {
        if (mailer_render(&m->wp, job->summary, &e) != 0)
            return deferred_err(failure_new(&FAILURE_ERROR, 0, "workload: out of memory"));
        free(job->summary);
        job->summary = NULL;
        job->data = e.data;
        job->len = e.len;
        job->hash = e.hash;
        job->smtp_safe = e.smtp_safe != 0;
        e.data = NULL;                    /* the job's now */
    } else if ((e.rcpt = workload_recipients(m->wp.recipients)) == NULL) {
        return deferred_err(failure_new(&FAILURE_ERROR, 0, "workload: out of memory"));
    }
    int nrcpt = m->wp.recipients > 0 ? m->wp.recipients : 1;
    struct deferred *d = smtp_session_send_flags(job->s, e.from, (const char *const *)e.rcpt,
                                                 (size_t)nrcpt, job->data, job->len,
                                                 job->smtp_safe ? SMTP_CLIENT_SAFE : 0);
    workload_email_free(&e);              /* the recipients' list */
    deferred_add_timeout(d, m->o->timeout_s, reactor_clock(m->r));
    deferred_add_both(d, stamp_reply, job);
    return deferred_wait(d);
}

/* The message's reply is in: the email's latency ends here in every model,
 * whatever the teardown that follows. */
static struct deferred_result stamp_reply(struct deferred_result r, void *arg)
{
    ((struct async_job *)arg)->t_reply = stats_now();
    return r;
}

/* After the QUIT's Deferred: go on with the attempt's own result. */
static struct deferred_result resume_result(struct deferred_result r, void *arg)
{
    struct async_job *job = arg;
    (void)r;
    struct deferred_result held = job->held;
    job->held = deferred_ok(NULL);
    return held;                /* hands over the reference release_session took */
}

/* Give the session back to the slot (put_session).  When it is quit, the
 * email keeps its concurrency slot until the connection is gone, as the
 * blocking models do (they read the 221 before their next email);
 * --quit-background releases it at once
 * and reads the 221 in the background, the reactor's own advantage,
 * measured as a separate variant. */
static struct deferred_result release_session(struct deferred_result r, void *arg)
{
    struct async_job *job = arg;
    if (job->s == NULL)
        return r;
    struct smtp_session *s = job->s;
    job->s = NULL;
    if (deferred_is_failure(r) && smtp_session_maybe_delivered(s))
        job->maybe = true;
    bool over = !deferred_is_failure(r) || failure_is(r.failure, &SMTP_SESSION_PERMFAIL)
                || job->attempt >= job->m->policy.max_retries;     /* as maybe_retry decides */
    struct deferred *gone = put_session(job, s, over);
    if (!deferred_is_failure(r)) {        /* delivered: the session no longer reads it */
        free(job->data);
        job->data = NULL;
    }
    if (gone == NULL)
        return r;
    if (job->m->o->quit_background) {
        deferred_unref(gone);
        return r;
    }
    if (deferred_is_failure(r))
        failure_ref(r.failure);           /* held across the wait; resume hands it back */
    job->held = r;
    deferred_add_callback(gone, resume_result, job);
    return deferred_wait(gone);           /* our reference goes to the chain */
}

/* The email's send step, and its retry after the backoff: one attempt. */
static struct deferred_result send_email(struct deferred_result r, void *arg)
{
    (void)r;
    return deferred_wait(attempt(arg));
}

static struct deferred_result maybe_retry(struct deferred_result r, void *arg)
{
    struct async_job *job = arg;
    struct async_mailer *m = job->m;
    if (failure_is(r.failure, &SMTP_SESSION_PERMFAIL) || job->attempt >= m->policy.max_retries)
        return r;
    double delay = retry_backoff(&m->policy, job->attempt, &m->rng);
    job->attempt++;
    m->stats->retries++;
    struct deferred *d = defer_later(m->r, delay);
    deferred_add_callback(d, send_email, job);
    return deferred_wait(d);
}

static struct deferred *attempt(struct async_job *job)
{
    struct deferred *d = get_session(job);
    deferred_add_callback(d, send_on_session, job);
    deferred_add_both(d, release_session, job);
    deferred_add_errback(d, maybe_retry, job);
    return d;
}

/* ---- one email ----------------------------------------------------------- */

struct deferred_result async_job_build(void *arg)
{
    struct async_job *job = arg;
    job->summary = malloc(sizeof *job->summary);
    if (job->summary == NULL
        || mailer_summarize(&job->m->wp, (uint64_t)job->index, job->summary) != 0)
        return deferred_err(failure_new(&FAILURE_ERROR, 0, "workload: out of memory"));
    return deferred_ok(job);
}

static struct deferred_result delivered(struct deferred_result r, void *arg)
{
    struct async_job *job = arg;
    double lat = job->t_reply - job->t0, svc = job->t_reply - job->t_started;
    stats_run_delivered(job->m->stats, job->hash, (uint64_t)(lat > 0 ? lat * 1e6 : 0));
    stats_run_service(job->m->stats, (uint64_t)(svc > 0 ? svc * 1e6 : 0));
    return r;
}

static struct deferred_result failed(struct deferred_result r, void *arg)
{
    struct async_job *job = arg;
    if (job->maybe)
        stats_run_failed_maybe(job->m->stats, failure_message(r.failure), job->hash);
    else
        stats_run_failed(job->m->stats, failure_message(r.failure));
    return deferred_ok(NULL);   /* handled: the run goes on */
}

static void cancel_call(struct deferred_call **call)
{
    if (*call) {
        deferred_call_cancel(*call);
        deferred_call_unref(*call);
        *call = NULL;
    }
}

/* Once every chain that will run has ended: say goodbye to the sessions
 * the slots still hold and stop the timers; reactor_run returns once the last
 * connection is closed. */
static void run_over_check(struct async_mailer *m)
{
    if (m->chains_done < m->nchains)
        return;
    for (long long i = 0; i < m->o->concurrency; i++)
        if (m->slots[i] != NULL) {
            struct smtp_session *s = m->slots[i];
            m->slots[i] = NULL;
            deferred_unref(smtp_session_quit(s));
        }
    cancel_call(&m->ticker);
    cancel_call(&m->window);
    cancel_call(&m->arrivals);
}

/* The steady-state window has closed (--duration): no new chain starts. */
static bool stop_starting(struct async_mailer *m)
{
    if (stats_window_may_start())
        return false;
    m->nchains = m->next_chain;
    return true;
}

/* Open loop: start waiting chains while a slot is free. */
static void pump_queue(struct async_mailer *m)
{
    long long c;
    while (deferred_semaphore_tokens(m->sem) > 0 && !stop_starting(m) && arrivals_pop(m->arr, &c))
        start_chain(m, c);
    /* No more arrivals and nothing waiting (or no more starts): the chains
     * that will run are those started. */
    struct arrivals_counts n;
    arrivals_counts(m->arr, &n);
    if (m->arrivals_over && (n.waiting == 0 || !stats_window_may_start()))
        m->nchains = m->next_chain;
}

static void chain_end(struct async_job *job)
{
    struct async_mailer *m = job->m;
    if (job->slot >= 0)
        m->free_slots[m->nfree++] = job->slot;  /* before the token: its next holder takes it */
    free(job);
    m->chains_done++;
    deferred_semaphore_release(m->sem);
    if (m->arr)
        pump_queue(m);
    else
        chain_start_next(m);
    run_over_check(m);
}

static struct deferred_result email_end(struct deferred_result r, void *arg)
{
    struct async_job *job = arg;
    if (deferred_is_failure(r))     /* only with --no-errback: counted, and passed on */
        stats_run_failed(job->m->stats, failure_message(r.failure));
    free(job->data);                      /* failed for good, or never sent (else NULL) */
    job->data = NULL;
    free(job->summary);                   /* never rendered (else NULL) */
    job->summary = NULL;
    job->m->done++;
    if (job->m->done_shared)
        atomic_fetch_add(job->m->done_shared, 1);
    job->index++;
    job->attempt = 0;
    job->maybe = false;
    if (job->index < job->end && !stop_starting(job->m))
        email_start(job);
    else
        chain_end(job);
    return r;
}

static void email_go(void *arg)
{
    struct async_job *job = arg;
    struct async_mailer *m = job->m;
    job->t_started = stats_now();
    if (m->arr)
        stats_run_started(m->stats, job->t0, job->t_started);
    else
        job->t0 = job->t_started;
    if (trace_email(job->index))
        trace_email_start(job);
    if (m->o->blocking_s > 0 && !m->o->blocking_in_pool)
        workload_blocking_call(m->o->blocking_s);
    struct deferred *d = m->build(job, m->build_arg);
    deferred_add_callback(d, send_email, job);
    if (job->done)              /* --join: tell the summary waiting on this email */
        deferred_add_both(d, member_done, job);
    if (m->o->no_errback)       /* teaching: a failure stays unhandled (see email_end) */
        deferred_add_callback(d, delivered, job);
    else
        deferred_add_callbacks(d, delivered, job, failed, job);
    deferred_add_both(d, email_end, job);
    deferred_unref(d);
}

/* ---- --trace: the timeline of the first emails ---------------------------- */

static void trace_email_start(struct async_job *job)
{
    trace_begin_email(job->index);
    trace_event("email", job->index, NULL, "\"phase\": \"start\", \"attempt\": %d", job->attempt);
}

/* The callbacks and errbacks of an email's chain, by name (deferred_set_run_hook
 * calls trace_before / trace_after around every function a chain runs; only
 * these, with a traced email as their argument, are written). */
static const struct { deferred_fn fn; const char *name; } traced_fns[] = {
    { send_email, "send_email" }, { send_on_session, "send_on_session" },
    { stamp_reply, "stamp_reply" }, { release_session, "release_session" },
    { resume_result, "resume_result" }, { maybe_retry, "maybe_retry" },
    { delivered, "delivered" }, { failed, "failed" }, { email_end, "email_end" },
    { member_done, "member_done" }, { summary_go, "summary_go" }, { summary_failed, "summary_failed" },
};

/* Nested calls (a callback firing another chain) end in reverse order. */
static struct trace_frame { const char *name; long long email; } frames[64];
static int nframes;

static const char *result_kind(struct deferred_result r)
{
    return r.kind == DEFERRED_FAILURE ? "failure" : r.kind == DEFERRED_DEFERRED ? "deferred" : "value";
}

static void *trace_before(deferred_fn fn, void *arg, struct deferred_result in)
{
    const char *name = NULL;
    for (size_t i = 0; i < sizeof traced_fns / sizeof traced_fns[0]; i++)
        if (traced_fns[i].fn == fn)
            name = traced_fns[i].name;
    struct async_job *job = arg;
    if (name == NULL || !trace_email(job->index) || nframes == 64)
        return NULL;
    struct trace_frame *f = &frames[nframes++];
    f->name = name;
    f->email = job->index;
    if (fn == stamp_reply)
        trace_event("smtp", f->email, deferred_is_failure(in) ? failure_message(in.failure) : NULL,
                    "\"step\": \"replied\", \"result\": \"%s\"",
                    deferred_is_failure(in) ? "failure" : "250");
    trace_event("callback", f->email, deferred_is_failure(in) ? failure_message(in.failure) : NULL,
                "\"phase\": \"start\", \"name\": \"%s\", \"side\": \"%s\", \"in\": \"%s\"",
                name, deferred_is_failure(in) ? "errback" : "callback", result_kind(in));
    return f;
}

static void trace_after(void *token, struct deferred_result out)
{
    struct trace_frame *f = token;
    trace_event("callback", f->email, deferred_is_failure(out) ? failure_message(out.failure) : NULL,
                "\"phase\": \"end\", \"name\": \"%s\", \"out\": \"%s\"", f->name,
                result_kind(out));
    if (strcmp(f->name, "send_on_session") == 0)
        trace_event("smtp", f->email, NULL, "\"step\": \"sent\", \"what\": \"MAIL RCPT DATA .\"");
    if (strcmp(f->name, "email_end") == 0) {
        trace_event("email", f->email, NULL, "\"phase\": \"end\"");
        trace_end_email(f->email);
    }
    nframes--;
}

static bool turn_traced;

/* The reactor's turns, while a traced email is in flight. */
static void trace_turn(void *arg, bool start, int ready)
{
    (void)arg;
    if (start && trace_live()) {
        turn_traced = true;
        trace_event("turn", -1, NULL, "\"phase\": \"start\", \"ready\": %d", ready);
    } else if (!start && turn_traced) {
        turn_traced = false;
        trace_event("turn", -1, NULL, "\"phase\": \"end\"");
    }
}

static void trace_unhandled(const struct failure *f, void *arg)
{
    (void)arg;
    fputs("Unhandled error in Deferred:\n", stderr);      /* the library's report, as without --trace */
    failure_print(f, stderr);
    trace_event("unhandled", -1, failure_message(f), NULL);
}

static void email_start(struct async_job *job)
{
    struct async_mailer *m = job->m;
    if (m->arr) {               /* open loop: not before its intended start */
        job->t0 = mailer_email_due(m->arr, m->o, job->index - m->first);
        if (job->t0 > stats_now()) {
            deferred_call_unref(reactor_call_at(m->r, job->t0, email_go, job));
            return;
        }
    }
    email_go(job);
}

/* ---- chains and the semaphore ---------------------------------------------- */

/* --join: a member's end, either way, fires its done Deferred; the result
 * goes on unchanged to delivered / failed. */
static struct deferred_result member_done(struct deferred_result r, void *arg)
{
    struct async_job *job = arg;
    struct deferred *done = job->done;
    job->done = NULL;
    if (deferred_is_failure(r))
        deferred_errback(done, failure_ref(r.failure));
    else
        deferred_callback(done, NULL);
    deferred_unref(done);
    return r;
}

static struct deferred_result chain_go(struct deferred_result r, void *arg);

/* Every member was delivered: the summary now waits for a token like any email. */
static struct deferred_result summary_go(struct deferred_result r, void *arg)
{
    (void)r;
    struct async_job *job = arg;
    struct deferred *d = deferred_semaphore_acquire(job->m->sem);
    deferred_add_callback(d, chain_go, job);
    deferred_unref(d);
    return deferred_ok(NULL);
}

/* A member failed (gatherResults' FirstError): the summary is not sent. */
static struct deferred_result summary_failed(struct deferred_result r, void *arg)
{
    (void)r;
    struct async_job *job = arg;
    struct async_mailer *m = job->m;
    stats_run_failed(m->stats, "join: a member failed");
    m->done++;
    free(job);
    m->chains_done++;           /* it held no token */
    chain_start_next(m);
    run_over_check(m);
    return deferred_ok(NULL);   /* handled */
}

/* --join: a member gets a done Deferred, kept in the current group; a summary
 * waits for gatherResults(group) before it asks for a token.  True when the
 * job was a summary (it is now waiting: start_chain has nothing more to do). */
static bool join_start(struct async_mailer *m, struct async_job *job)
{
    if (job->index % (m->o->join + 1) != m->o->join) {
        job->done = deferred_new();
        m->group[m->ngroup++] = deferred_ref(job->done);
        return false;
    }
    struct deferred *all = deferred_gather_results(m->group, (size_t)m->ngroup, true);
    while (m->ngroup > 0)
        deferred_unref(m->group[--m->ngroup]);      /* the list holds its own */
    deferred_add_callbacks(all, summary_go, job, summary_failed, job);
    deferred_unref(all);
    return true;
}

static struct deferred_result chain_go(struct deferred_result r, void *arg)
{
    (void)r;
    struct async_job *job = arg;
    job->slot = job->m->free_slots[--job->m->nfree];   /* a token, so a slot is free */
    email_start(job);
    return deferred_ok(NULL);
}

/* Chain c takes a token (it waits for one in the closed loop; the open loop
 * starts a chain only when one is free) and sends its emails in order. */
static void start_chain(struct async_mailer *m, long long c)
{
    struct async_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        fprintf(stderr, "summary-%s: out of memory for a chain\n", m->o->model);
        abort();                /* cannot go on: as every allocation failure in lib/ */
    }
    m->next_chain++;
    job->m = m;
    job->slot = -1;
    job->index = m->first + c * m->unit;
    long long last = m->first + m->o->emails;
    job->end = job->index + m->unit < last ? job->index + m->unit : last;
    if (m->o->join > 0 && join_start(m, job))
        return;
    struct deferred *d = deferred_semaphore_acquire(m->sem);
    deferred_add_callback(d, chain_go, job);
    deferred_unref(d);
}

/* Closed loop: the next chain in order. */
static void chain_start_next(struct async_mailer *m)
{
    if (m->next_chain >= m->nchains || stop_starting(m))
        return;
    start_chain(m, m->next_chain);
}

/* Open loop: admit the chains that are due (a full queue sheds them), start
 * what the free slots allow, and come back when the next one is due. */
static void arrive(void *arg)
{
    struct async_mailer *m = arg;
    deferred_call_unref(m->arrivals);
    m->arrivals = NULL;
    double now = stats_now(), next = arrivals_admit(m->arr, now);
    m->arrivals_over = next == INFINITY;
    pump_queue(m);
    if (!m->arrivals_over)
        m->arrivals = reactor_call_at(m->r, next, arrive, m);  /* not next - now: pump_queue took time */
    run_over_check(m);
}

/* The window's CPU snapshots, taken on time (stats_window_next). */
static void window_due(void *arg)
{
    struct async_mailer *m = arg;
    deferred_call_unref(m->window);
    m->window = NULL;
    stats_window_poll();
    double next = stats_window_next();
    if (next < INFINITY && m->chains_done < m->nchains)
        m->window = reactor_call_at(m->r, next, window_due, m);
}

static void tick(void *arg)
{
    struct async_mailer *m = arg;
    stats_progress_tick(m->progress, (uint64_t)m->done, m->stats);
    deferred_call_unref(m->ticker);
    m->ticker = m->chains_done < m->nchains
                    ? reactor_call_later(m->r, PROGRESS_EVERY_S, tick, m) : NULL;
}

/* ---- the run --------------------------------------------------------------- */

void async_mailer_init(struct async_mailer *m, const struct cli_options *o, struct reactor *r,
                       struct stats_run *stats, struct stats_progress *progress,
                       async_build_step build, void *build_arg)
{
    memset(m, 0, sizeof *m);
    m->o = o;
    m->r = r;
    mailer_workload_params(o, &m->wp);
    m->cfg.ehlo_name = "client.mailbench.test";
    m->cfg.pipelining = true;
    m->policy = (struct retry_policy)RETRY_POLICY_DEFAULT;
    m->policy.max_retries = (int)o->retries;
    m->stats = stats;
    m->progress = progress;
    m->build = build;
    m->build_arg = build_arg;
    uint64_t seeder = o->seed;
    m->rng = retry_rand64(&seeder);
    m->unit = mailer_unit(o);
    m->nchains = (o->emails + m->unit - 1) / m->unit;
    m->sem = deferred_semaphore_new((int)o->concurrency);
    m->slots = calloc((size_t)o->concurrency, sizeof *m->slots);
    m->free_slots = malloc((size_t)o->concurrency * sizeof *m->free_slots);
    if (m->slots == NULL || m->free_slots == NULL) {
        fprintf(stderr, "summary-%s: out of memory for %lld slots\n", o->model, o->concurrency);
        abort();
    }
    for (long long i = o->concurrency; i > 0; i--)     /* slot 0 on top */
        m->free_slots[m->nfree++] = i - 1;
    m->arrivals_seed = o->seed;
    if (o->join > 0 && (m->group = calloc((size_t)o->join, sizeof *m->group)) == NULL) {
        fprintf(stderr, "summary-%s: out of memory for --join\n", o->model);
        abort();
    }
}

static struct deferred_result consume_failure(struct deferred_result r, void *arg)
{
    (void)r;
    (void)arg;
    return deferred_ok(NULL);
}

void async_mailer_start(struct async_mailer *m)
{
    if (m->nchains == 0)
        return;
    m->ticker = reactor_call_later(m->r, PROGRESS_EVERY_S, tick, m);
    if (!m->window_shared)
        stats_window_start(m->o, m->stats->start_s);
    window_due(m);
    if (m->o->rate > 0) {
        m->arr = mailer_arrivals_seeded(m->o, m->stats->start_s + m->arrivals_phase,
                                        m->arrivals_seed);
        m->nchains = LLONG_MAX;     /* unknown until the arrivals are over */
        arrive(m);
        return;
    }
    for (long long i = 0; i < m->o->concurrency && m->next_chain < m->nchains; i++)
        chain_start_next(m);
}

void async_mailer_free(struct async_mailer *m)
{
    for (long long i = 0; m->slots != NULL && i < m->o->concurrency; i++)
        if (m->slots[i] != NULL)
            smtp_session_abort(m->slots[i]);
    free(m->slots);
    m->slots = NULL;
    free(m->free_slots);
    m->free_slots = NULL;
    cancel_call(&m->ticker);
    cancel_call(&m->window);
    cancel_call(&m->arrivals);
    if (m->arr) {
        mailer_arrivals_end(m->arr, m->o, m->stats);
        arrivals_free(m->arr);
        m->arr = NULL;
    }
    deferred_semaphore_free(m->sem);
    m->sem = NULL;
    while (m->ngroup > 0) {     /* --join: members of a summary the window left unsent */
        struct deferred *d = m->group[--m->ngroup];
        deferred_unref(deferred_add_errback(d, consume_failure, NULL));
    }
    free(m->group);
    m->group = NULL;
}

int async_mailer_run(struct cli_options *o, struct reactor *r,
                     async_build_step build, void *build_arg)
{
    int prc = mailer_prepare(o);
    if (prc != 0)
        return prc;
    struct stats_run stats;
    struct stats_progress progress;
    struct async_mailer m;
    stats_run_init(&stats, (uint64_t)o->emails);
    stats_progress_init(&progress, o, o->model);
    async_mailer_init(&m, o, r, &stats, &progress, build, build_arg);
    if (o->trace[0]) {
        deferred_set_run_hook(trace_before, trace_after);
        reactor_set_turn_hook(r, trace_turn, NULL);
        deferred_set_unhandled_hook(trace_unhandled, NULL);
    }
    async_mailer_start(&m);
    reactor_run(r);         /* returns when the last email has ended */
    async_mailer_free(&m);
    return stats_run_end(o, o->model, &stats, &progress);
}
