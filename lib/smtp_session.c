/* smtp_session — see smtp_session.h.
 *
 * One function, pump(), moves everything: it writes what the client core
 * has to send and turns the core's events into fired Deferreds.  Firing runs
 * user callbacks synchronously, and those may queue another message on the
 * same session (or release it); pump() is therefore re-entrant by flag: a
 * nested call only asks the running one to go round again. */
#include "smtp_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

FAILURE_TYPE_DEFINE(SMTP_SESSION_ERROR, "smtp.SMTPError", &FAILURE_ERROR);
FAILURE_TYPE_DEFINE(SMTP_SESSION_TEMPFAIL, "smtp.TempFail", &SMTP_SESSION_ERROR);
FAILURE_TYPE_DEFINE(SMTP_SESSION_PERMFAIL, "smtp.PermFail", &SMTP_SESSION_ERROR);

struct smtp_session {
    int refs;                   /* the receiver's + the connection's + pump's */
    struct reactor *r;
    struct reactor_conn *conn;  /* NULL before connect and once lost */
    struct smtp_client *c;      /* the protocol core */
    struct deferred *ready;     /* pending greeting (our reference), or NULL */
    struct deferred *gone;      /* quit's Deferred (our reference) until the connection is lost */
    long long sent;             /* messages finished */
    bool last_maybe;            /* the last one ended "maybe delivered" */
    int inflight;               /* messages queued and not finished */
    bool greeted;               /* READY seen */
    bool closed;                /* CLOSED seen: the session is over */
    bool released;              /* quit or abort called */
    bool aborting;              /* drop the connection rather than close it */
    bool timed_out;             /* aborted by a timeout: failures are FAILURE_TIMEOUT */
    bool conn_ending;           /* close/abort already asked of the reactor */
    bool pumping, again;        /* re-entrancy of pump() */
};

/* One message in flight: its MESSAGE_DONE event fires d. */
struct pending_send {
    struct smtp_session *s;
    struct deferred *d;         /* our reference; NULL once cancelled */
};

static void session_unref(struct smtp_session *s)
{
    if (--s->refs > 0)
        return;
    smtp_client_free(s->c);
    free(s);
}

/* The Failure for a failed message or session, from a client event. */
static struct failure *event_failure(const struct smtp_session *s,
                                     const struct smtp_client_event *ev)
{
    const struct failure_type *type =
        ev->result == SMTP_CLIENT_PERMFAIL ? &SMTP_SESSION_PERMFAIL : &SMTP_SESSION_TEMPFAIL;
    if (s->timed_out && ev->local)
        type = &FAILURE_TIMEOUT;          /* what addTimeout gives, with the stage's words */
    size_t n = strcspn(ev->text, "\n");     /* first line: one reason key per cause */
    if (ev->local || ev->code == 0)
        return failure_new(type, ev->code, "%s: %.*s", smtp_client_stage_name(ev->stage),
                           (int)n, ev->text);
    return failure_new(type, ev->code, "%d %.*s", ev->code, (int)n, ev->text);
}

static void handle_event(struct smtp_session *s, const struct smtp_client_event *ev)
{
    switch (ev->type) {
    case SMTP_CLIENT_READY:
        s->greeted = true;
        if (s->ready) {
            struct deferred *d = s->ready;
            s->ready = NULL;
            deferred_callback(d, s);
            deferred_unref(d);
        }
        break;
    case SMTP_CLIENT_MESSAGE_DONE: {
        struct pending_send *p = ev->user;
        s->sent++;
        s->inflight--;
        s->last_maybe = ev->result != SMTP_CLIENT_OK && ev->maybe_delivered;
        if (p->d) {
            struct deferred *d = p->d;
            if (ev->result == SMTP_CLIENT_OK)
                deferred_callback(d, NULL);
            else
                deferred_errback(d, event_failure(s, ev));
            deferred_unref(d);
        }
        free(p);
        break;
    }
    case SMTP_CLIENT_CLOSED:
        s->closed = true;
        if (s->ready) {         /* greeting or EHLO refused, or lost before READY */
            struct deferred *d = s->ready;
            s->ready = NULL;
            struct smtp_client_event e = *ev;
            if (e.result == SMTP_CLIENT_OK)   /* closed cleanly before READY: still a failure */
                e.result = SMTP_CLIENT_TEMPFAIL;
            deferred_errback(d, event_failure(s, &e));
            deferred_unref(d);
        }
        break;
    case SMTP_CLIENT_PROTOCOL_ERROR:
        s->aborting = true;     /* the server is confused: do not wait for it */
        break;
    }
}

static void pump(struct smtp_session *s)
{
    if (s->pumping) {
        s->again = true;
        return;
    }
    s->pumping = true;
    s->refs++;
    do {
        s->again = false;
        struct iovec iov[64];
        int k;
        while ((k = smtp_client_output_iov(s->c, iov, 64)) > 0) {
            size_t n = 0;
            for (int i = 0; i < k; i++)
                n += iov[i].iov_len;
            /* -1: the connection is ending; connection_lost will tell the core */
            if (s->conn && !s->conn_ending)
                (void)reactor_conn_writev(s->conn, iov, k);
            smtp_client_consumed(s->c, n);
        }
        struct smtp_client_event ev;
        while (smtp_client_next_event(s->c, &ev))
            handle_event(s, &ev);
    } while (s->again);
    if (s->closed && s->conn && !s->conn_ending) {
        s->conn_ending = true;
        if (s->aborting)
            reactor_conn_abort(s->conn);
        else
            reactor_conn_close(s->conn);    /* flushes QUIT first */
    }
    s->pumping = false;
    session_unref(s);
}

static void on_data(struct reactor_conn *conn, const char *buf, size_t len, void *arg)
{
    (void)conn;
    struct smtp_session *s = arg;
    smtp_client_feed(s->c, buf, len);
    pump(s);
}

static void on_lost(struct reactor_conn *conn, struct failure *reason, void *arg)
{
    (void)conn;
    (void)reason;
    struct smtp_session *s = arg;
    s->conn = NULL;
    if (!s->closed)
        smtp_client_eof(s->c);
    pump(s);
    if (s->gone) {
        struct deferred *d = s->gone;
        s->gone = NULL;
        deferred_callback(d, NULL);
        deferred_unref(d);
    }
    session_unref(s);           /* the connection's reference */
}

static const struct reactor_protocol session_protocol = { on_data, on_lost };

/* The session gives up: every queued message fails temporarily with reason,
 * and the connection is dropped. */
static void session_abort(struct smtp_session *s, const char *reason)
{
    s->aborting = true;
    if (!s->closed)
        smtp_client_abort(s->c, reason);
    pump(s);
    if (s->conn && !s->conn_ending) {   /* closed already, but still connected */
        s->conn_ending = true;
        reactor_conn_abort(s->conn);
    }
}

/* Cancelling the greeting or a message (addTimeout is the only caller): the
 * session gives up on the stage it is in, and the abort fires the Deferred
 * with the client core's reason ("greeting: timeout before greeting",
 * "end of data: timeout after end of data, before reply"), the words the
 * blocking models report for the same stall. */
static struct failure *ready_cancel(struct deferred *d, void *arg)
{
    struct smtp_session *s = arg;
    (void)d;
    s->timed_out = true;
    session_abort(s, "timeout");
    return NULL;
}

/* The greeting failed, however: the receiver never gets the session, so
 * its reference goes here. */
static struct deferred_result ready_failed(struct deferred_result r, void *arg)
{
    struct smtp_session *s = arg;
    s->released = true;
    session_unref(s);
    return r;
}

static struct deferred_result on_connected(struct deferred_result r, void *arg)
{
    struct smtp_session *s = arg;
    s->conn = r.value;
    s->refs++;                  /* the connection's reference */
    reactor_conn_set_protocol(s->conn, &session_protocol, s);
    s->ready = deferred_new_cancellable(ready_cancel, s);
    deferred_add_errback(s->ready, ready_failed, s);
    return deferred_wait(deferred_ref(s->ready));
}

static struct deferred_result on_connect_failed(struct deferred_result r, void *arg)
{
    struct smtp_session *s = arg;
    s->released = true;
    session_unref(s);           /* the receiver's reference: nobody receives it */
    return r;
}

struct deferred *smtp_session_open(struct reactor *r, const char *host, int port,
                                   double connect_timeout,
                                   const struct smtp_client_config *cfg)
{
    struct smtp_session *s = calloc(1, sizeof *s);
    if (s == NULL || (s->c = smtp_client_new(cfg)) == NULL) {
        free(s);
        return deferred_fail(failure_new(&SMTP_SESSION_TEMPFAIL, 0, "connect: out of memory"));
    }
    s->refs = 1;                /* the receiver's */
    s->r = r;
    struct deferred *d = reactor_connect_tcp(r, host, port, connect_timeout);
    deferred_add_callbacks(d, on_connected, s, on_connect_failed, s);
    return d;
}

/* Cancelling one message aborts the session: SMTP cannot take it back. */
static struct failure *send_cancel(struct deferred *d, void *arg)
{
    struct pending_send *p = arg;
    (void)d;
    p->s->timed_out = true;
    session_abort(p->s, "timeout");
    return NULL;
}

struct deferred *smtp_session_send(struct smtp_session *s, const char *from,
                                   const char *const *rcpts, size_t nrcpt,
                                   const char *msg, size_t len)
{
    return smtp_session_send_flags(s, from, rcpts, nrcpt, msg, len, 0);
}

struct deferred *smtp_session_send_flags(struct smtp_session *s, const char *from,
                                         const char *const *rcpts, size_t nrcpt,
                                         const char *msg, size_t len, unsigned flags)
{
    if (s->closed || s->conn == NULL)
        return deferred_fail(failure_new(&SMTP_SESSION_TEMPFAIL, 0, "MAIL: session is over"));
    struct pending_send *p = malloc(sizeof *p);
    if (p == NULL)
        return deferred_fail(failure_new(&SMTP_SESSION_TEMPFAIL, 0, "MAIL: out of memory"));
    p->s = s;
    p->d = deferred_new_cancellable(send_cancel, p);
    if (smtp_client_send_flags(s->c, from, rcpts, nrcpt, msg, len, flags, p) != 0) {
        deferred_unref(p->d);
        free(p);
        return deferred_fail(failure_new(&SMTP_SESSION_PERMFAIL, 0, "MAIL: invalid envelope"));
    }
    s->inflight++;
    struct deferred *d = deferred_ref(p->d);
    pump(s);
    return d;
}

bool smtp_session_idle(const struct smtp_session *s)
{
    return s->greeted && !s->closed && !s->released && s->conn != NULL && s->inflight == 0
        && smtp_client_is_idle(s->c);
}

bool smtp_session_maybe_delivered(const struct smtp_session *s)
{
    return s->last_maybe;
}

long long smtp_session_sent(const struct smtp_session *s)
{
    return s->sent;
}

struct deferred *smtp_session_quit(struct smtp_session *s)
{
    s->released = true;
    struct deferred *d;
    if (s->conn == NULL) {
        d = deferred_succeed(NULL);
    } else {
        d = deferred_new();
        s->gone = deferred_ref(d);
    }
    if (!s->closed) {
        smtp_client_quit(s->c);
        pump(s);
    }
    session_unref(s);
    return d;
}

void smtp_session_abort(struct smtp_session *s)
{
    s->released = true;
    session_abort(s, "aborted");
    session_unref(s);
}
