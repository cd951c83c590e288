/* async_mailer — sends the run's emails from one reactor thread, each email
 * a Deferred chain written the way a Twisted user writes it: the code the
 * async and hybrid models share, so that the two differ only in where the
 * CPU work (building the email) runs.
 *
 * One email, as callbacks on one Deferred:
 *
 *     [--blocking call, in the reactor thread: it stalls every connection]
 *     d = build(job)                        the model's step: the summary (the
 *                                           CPU work; async: in the reactor;
 *                                           hybrid: threadpool_defer_to_thread); the
 *                                           message is rendered only once a
 *                                           session is ready to send it
 *     d.addCallback(send)                   -> attempt: session (the slot's, or
 *                                              smtp_session_open + addTimeout)
 *                                              -> smtp_session_send + addTimeout
 *                                              -> give the session back to
 *                                              the slot (or QUIT it)
 *                                              errback: temporary failure and
 *                                              retries left -> wait backoff
 *                                              (callLater) -> attempt again
 *     d.addCallbacks(delivered, failed)     record in the run's statistics
 *     d.addBoth(email_end)                  free it; start the chain's next email
 *
 * Concurrency: a DeferredSemaphore of --concurrency tokens; the unit that
 * holds a token is a chain of --chain emails sent in order (1 by default),
 * as in the threads model.  Closed loop: chains are fed to the semaphore as
 * tokens come back.  Open loop (--rate): chain c arrives at start + c *
 * chain / rate and waits for a token; latency is measured from each email's
 * intended start.  Each of the --concurrency slots (a token and what it
 * holds) owns at most one session, as a thread of the threads model owns its
 * connection: the chains that take the slot send their emails on it one
 * after another (a retry too, while the session is usable); once it has
 * carried --per-session emails, or the slot will carry no more, the email's
 * chain QUITs it and keeps the slot until the 221 (--quit-background: reads
 * it in the background), and the slot's next email opens a new one.  In the
 * closed loop a chain is mailer_unit() emails, --per-session by default, so
 * every connection carries exactly --per-session emails but the run's last.
 * Every connect, greeting and message transaction
 * is bounded by --timeout (deferred_add_timeout).
 *
 * The run is over when every chain has ended and the last session has
 * closed: reactor_run() then returns. */
#ifndef MAILBENCH_ASYNC_MAILER_H
#define MAILBENCH_ASYNC_MAILER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli.h"
#include "mailer.h"
#include "deferred.h"
#include "reactor.h"
#include "retry.h"
#include "smtp_client.h"
#include "stats.h"
#include "summary.h"

struct async_mailer;
struct smtp_session;

/* One chain of emails in progress (the unit of concurrency). */
struct async_job {
    struct async_mailer *m;
    long long index;            /* the email being sent */
    long long end;              /* one past the chain's last email */
    long long slot;             /* the slot it holds (index into m->slots), or -1 */
    double t0;                  /* stats_now() when the email started (or was due) */
    double t_reply;             /* stats_now() when its last attempt's reply came */
    double t_started;           /* stats_now() when it actually started (open loop: >= t0) */
    struct deferred_result held; /* the attempt's result while the QUIT completes */
    int attempt;                /* retries made for this email */
    bool maybe;                 /* some attempt may have reached the server */
    struct smtp_session *s;     /* the session it is using, or NULL */
    /* Per email, only what the chain needs at each step: the summary from
     * the build step until a session is ready; then the message, rendered
     * from it (send_on_session; the summary goes), until it is delivered,
     * or kept for a retry after a failed attempt; then only its hash. */
    struct workload_summary *summary;   /* the build step's, until rendered, or NULL */
    char *data;                 /* the rendered message, or NULL */
    size_t len;                 /* its length */
    uint64_t hash;              /* digest_hash of it (set once rendered) */
    bool smtp_safe;             /* the renderer's mark (workload_email.smtp_safe) */
    struct deferred *done;      /* --join: fires when this member email has ended, or NULL */
};

/* The model's build step: returns a Deferred (one reference for the caller)
 * that fires with the job once async_job_build(job) has run, or fails. */
typedef struct deferred *(*async_build_step)(struct async_job *job, void *arg);

struct async_mailer {
    const struct cli_options *o;    /* the run's options (borrowed) */
    struct reactor *r;
    struct workload_params wp;
    struct smtp_client_config cfg;
    struct retry_policy policy;
    struct stats_run *stats;
    struct stats_progress *progress;
    async_build_step build;
    void *build_arg;
    uint64_t rng;                   /* retry jitter */
    struct deferred_semaphore *sem; /* --concurrency tokens */
    long long unit;                 /* emails per chain: mailer_unit() */
    long long nchains;              /* ceil(emails / unit) */
    long long next_chain;           /* the next chain not yet started */
    long long chains_done;
    long long done;                 /* emails ended, delivered or failed */
    struct smtp_session **slots;    /* --concurrency slots: each one's session, or NULL */
    long long *free_slots;          /* the slots no chain holds (a stack) */
    long long nfree;
    struct deferred_call *ticker;   /* progress, while the run lasts */
    struct deferred_call *arrivals; /* open loop: the next chain's arrival */
    struct deferred_call *window;   /* the steady-state window's next snapshot */
    struct arrivals *arr;           /* open loop: the schedule and its queue, else NULL */
    bool arrivals_over;             /* open loop: no chain will arrive any more */
    /* One reactor of several (--reactors, async_reactors.h); set after
     * async_mailer_init, before async_mailer_start.  Defaults: the whole run. */
    long long first;                /* the index of its first email (a multiple of unit) */
    uint64_t arrivals_seed;         /* open loop, Poisson: its schedule's seed (o->seed) */
    double arrivals_phase;          /* open loop: its schedule starts this much later (0) */
    bool window_shared;             /* the driver has started the process's window */
    _Atomic long long *done_shared; /* if set, += 1 per email ended (the driver's progress) */
    struct deferred **group;        /* --join: the current group's members' done Deferreds */
    long long ngroup;
};

/* The CPU work of one email: its summary (workload_summarize) into
 * job->summary; the message is rendered later, when a session is ready for
 * it, in the reactor thread (it is cheap: O(its size)).  Touches only the
 * job and the (read-only) workload parameters, so it may run in any thread. */
struct deferred_result async_job_build(void *job);

/* A whole run of the model: statistics, progress, the mailer, reactor_run
 * until the last email has ended and the last session has closed, then
 * stats_run_end (summary, JSON).  Returns the exit status (0, 3, or 1). */
int async_mailer_run(struct cli_options *o, struct reactor *r,
                     async_build_step build, void *build_arg);

/* The parts, for tests and other drivers.
 * Ready to run on r; nothing happens until async_mailer_start. */
void async_mailer_init(struct async_mailer *m, const struct cli_options *o, struct reactor *r,
                       struct stats_run *stats, struct stats_progress *progress,
                       async_build_step build, void *build_arg);
/* Start the first chains (before reactor_run). */
void async_mailer_start(struct async_mailer *m);
/* After reactor_run has returned. */
void async_mailer_free(struct async_mailer *m);

#endif
