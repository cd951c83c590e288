/* Unit tests for lib/smtp_session: the SMTP client core over a reactor
 * connection, with Deferreds.  The server is scripted in the same reactor
 * (a listening socket on 127.0.0.1 and adopted connections), so every test
 * is one thread and every wait is bounded by a guard timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "deferred.h"
#include "reactor.h"
#include "smtp_session.h"

/* ---- a scripted server ---------------------------------------------------- */

struct script {
    const char *greeting;       /* first reply; NULL: never say anything */
    const char *rcpt_reply;     /* reply to RCPT (default "250 ok") */
    bool drop_in_data;          /* close the connection on the first body line */
    bool silent_after_data;     /* never answer the final "." */
};

struct server {
    struct reactor *r;
    const struct script *sc;
    ev_io accept_w;
    int lfd, port;
    struct reactor_conn *conn;  /* the one accepted connection */
    char line[1024];
    size_t n;
    bool in_data;
    int messages;               /* bodies received up to "." */
    int quits;                  /* QUIT commands seen */
    bool lost;                  /* the connection ended (server side) */
};

static void say(struct server *s, const char *text)
{
    reactor_conn_write(s->conn, text, strlen(text));
}

static void server_line(struct server *s, const char *l)
{
    if (s->in_data) {
        if (strcmp(l, ".") == 0) {
            s->in_data = false;
            s->messages++;
            if (!s->sc->silent_after_data)
                say(s, "250 queued\r\n");
        } else if (s->sc->drop_in_data) {
            reactor_conn_abort(s->conn);
        }
        return;
    }
    if (strncmp(l, "EHLO", 4) == 0)
        say(s, "250-mock\r\n250 PIPELINING\r\n");
    else if (strncmp(l, "MAIL", 4) == 0 || strncmp(l, "RSET", 4) == 0)
        say(s, "250 ok\r\n");
    else if (strncmp(l, "RCPT", 4) == 0)
        say(s, s->sc->rcpt_reply ? s->sc->rcpt_reply : "250 ok\r\n");
    else if (strncmp(l, "DATA", 4) == 0) {
        if (s->sc->rcpt_reply == NULL) {
            s->in_data = true;
            say(s, "354 go\r\n");
        } else {
            say(s, "503 no valid recipients\r\n");
        }
    } else if (strncmp(l, "QUIT", 4) == 0) {
        s->quits++;
        say(s, "221 bye\r\n");
        reactor_conn_close(s->conn);
    } else {
        say(s, "500 what\r\n");
    }
}

static void server_data(struct reactor_conn *c, const char *buf, size_t len, void *arg)
{
    struct server *s = arg;
    (void)c;
    for (size_t i = 0; i < len && !s->lost; i++) {
        if (buf[i] == '\n') {
            s->line[s->n > 0 && s->line[s->n - 1] == '\r' ? s->n - 1 : s->n] = '\0';
            s->n = 0;
            server_line(s, s->line);
        } else if (s->n < sizeof s->line - 1) {
            s->line[s->n++] = buf[i];
        }
    }
}

static void server_lost(struct reactor_conn *c, struct failure *reason, void *arg)
{
    struct server *s = arg;
    (void)c;
    (void)reason;
    s->lost = true;
    s->conn = NULL;
}

static const struct reactor_protocol server_proto = { server_data, server_lost };

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct server *s = w->data;
    int fd = accept(s->lfd, NULL, NULL);
    assert_true(fd >= 0);
    s->conn = reactor_conn_adopt(s->r, fd);
    assert_non_null(s->conn);
    reactor_conn_set_protocol(s->conn, &server_proto, s);
    if (s->sc->greeting)
        say(s, s->sc->greeting);
}

static void server_start(struct server *s, struct reactor *r, const struct script *sc)
{
    memset(s, 0, sizeof *s);
    s->r = r;
    s->sc = sc;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &len), 0);
    s->port = ntohs(sa.sin_port);
    ev_io_init(&s->accept_w, on_accept, s->lfd, EV_READ);
    s->accept_w.data = s;
    ev_io_start(reactor_loop(r), &s->accept_w);
}

static void server_stop(struct server *s)
{
    if (s->lfd < 0)
        return;
    ev_io_stop(reactor_loop(s->r), &s->accept_w);
    close(s->lfd);
    s->lfd = -1;
}

/* A test's world: a new reactor with the scripted server on it ... */
static struct reactor *world_start(struct server *s, const struct script *sc)
{
    struct reactor *r = reactor_new();
    assert_non_null(r);
    server_start(s, r, sc);
    return r;
}

/* ... and its end. */
static void world_end(struct server *s)
{
    struct reactor *r = s->r;
    server_stop(s);
    reactor_free(r);
}

/* ---- helpers ---------------------------------------------------------------- */

static void stop_cb(void *r) { reactor_stop(r); }

/* Run until reactor_stop or `seconds` have passed (then fail: a hang). */
static void run_bounded(struct reactor *r, double seconds)
{
    struct deferred_call *guard = reactor_call_later(r, seconds, stop_cb, r);
    reactor_run(r);
    bool hung = !deferred_call_active(guard);  /* the guard fired */
    deferred_call_cancel(guard);
    deferred_call_unref(guard);
    assert_false(hung);
}

/* Let the loop settle (connections closing) for a short while. */
static void run_for(struct reactor *r, double seconds)
{
    struct deferred_call *t = reactor_call_later(r, seconds, stop_cb, r);
    reactor_run(r);
    deferred_call_cancel(t);
    deferred_call_unref(t);
}

struct outcome {
    bool fired;
    void *value;
    const struct failure_type *type;
    int code;
    char message[200];
    struct reactor *stop;
};

static struct deferred_result record(struct deferred_result r, void *arg)
{
    struct outcome *o = arg;
    o->fired = true;
    if (r.kind == DEFERRED_FAILURE) {
        o->type = r.failure->type;
        o->code = r.failure->code;
        snprintf(o->message, sizeof o->message, "%s", failure_message(r.failure));
    } else {
        o->value = r.value;
    }
    reactor_stop(o->stop);
    return deferred_ok(NULL);
}

static const struct smtp_client_config CFG = { .ehlo_name = "test", .pipelining = true };
static const char MSG[] = "Subject: hi\r\n\r\nbody\r\n.leading dot\r\n";
static const char *const RCPT[] = { "b@example.test" };

/* Open a session; returns it (NULL if the open failed: *o says why). */
static struct smtp_session *open_session(struct reactor *r, struct server *s,
                                         double timeout, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    o->stop = r;
    struct deferred *d = smtp_session_open(r, "127.0.0.1", s->port, 1.0, &CFG);
    if (timeout > 0)
        deferred_add_timeout(d, timeout, reactor_clock(r));
    deferred_add_both(d, record, o);
    deferred_unref(d);
    run_bounded(r, 3.0);
    assert_true(o->fired);
    return o->type ? NULL : o->value;
}

static void send_one(struct reactor *r, struct smtp_session *ss, double timeout,
                     struct outcome *o)
{
    memset(o, 0, sizeof *o);
    o->stop = r;
    struct deferred *d = smtp_session_send(ss, "a@example.test", RCPT, 1, MSG, strlen(MSG));
    if (timeout > 0)
        deferred_add_timeout(d, timeout, reactor_clock(r));
    deferred_add_both(d, record, o);
    deferred_unref(d);
    run_bounded(r, 3.0);
    assert_true(o->fired);
}

/* ---- tests -------------------------------------------------------------------- */

/* Greeting, two messages on one session, QUIT: the server saw both bodies
 * and the QUIT, and closed. */
static void test_send_and_quit(void **state)
{
    (void)state;
    struct script sc = { .greeting = "220 ready\r\n" };
    struct server s;
    struct reactor *r = world_start(&s, &sc);
    struct outcome o;
    struct smtp_session *ss = open_session(r, &s, 0, &o);
    assert_non_null(ss);
    assert_true(smtp_session_idle(ss));
    for (int i = 0; i < 2; i++) {
        send_one(r, ss, 0, &o);
        assert_null(o.type);
        assert_true(smtp_session_idle(ss));
    }
    assert_int_equal(smtp_session_sent(ss), 2);
    deferred_unref(smtp_session_quit(ss));
    run_for(r, 0.2);
    assert_int_equal(s.messages, 2);
    assert_int_equal(s.quits, 1);
    assert_true(s.lost);
    world_end(&s);
}

/* A 554 greeting: the open fails permanently with the reply's code. */
static void test_greeting_refused(void **state)
{
    (void)state;
    struct script sc = { .greeting = "554 go away\r\n" };
    struct server s;
    struct reactor *r = world_start(&s, &sc);
    struct outcome o;
    assert_null(open_session(r, &s, 0, &o));
    assert_ptr_equal(o.type, &SMTP_SESSION_PERMFAIL);
    assert_int_equal(o.code, 554);
    assert_non_null(strstr(o.message, "go away"));
    run_for(r, 0.1);
    world_end(&s);
}

/* A server that never greets: addTimeout fails the open with a timeout and
 * the connection is dropped. */
static void test_greeting_timeout(void **state)
{
    (void)state;
    struct script sc = { .greeting = NULL };
    struct server s;
    struct reactor *r = world_start(&s, &sc);
    struct outcome o;
    assert_null(open_session(r, &s, 0.1, &o));
    assert_ptr_equal(o.type, &FAILURE_TIMEOUT);
    run_for(r, 0.1);
    assert_true(s.lost);
    world_end(&s);
}

/* RCPT refused with 450: the message fails temporarily with that code, and
 * the session stays usable. */
static void test_rcpt_tempfail(void **state)
{
    (void)state;
    struct script sc = { .greeting = "220 ready\r\n", .rcpt_reply = "450 busy\r\n" };
    struct server s;
    struct reactor *r = world_start(&s, &sc);
    struct outcome o;
    struct smtp_session *ss = open_session(r, &s, 0, &o);
    assert_non_null(ss);
    send_one(r, ss, 0, &o);
    assert_ptr_equal(o.type, &SMTP_SESSION_TEMPFAIL);
    assert_int_equal(o.code, 450);
    assert_true(smtp_session_idle(ss));
    deferred_unref(smtp_session_quit(ss));
    run_for(r, 0.1);
    assert_int_equal(s.messages, 0);
    world_end(&s);
}

/* The server drops the connection in the middle of the body: a temporary
 * failure, the session is over, and a later send fails at once. */
static void test_drop_in_data(void **state)
{
    (void)state;
    struct script sc = { .greeting = "220 ready\r\n", .drop_in_data = true };
    struct server s;
    struct reactor *r = world_start(&s, &sc);
    struct outcome o;
    struct smtp_session *ss = open_session(r, &s, 0, &o);
    assert_non_null(ss);
    send_one(r, ss, 0, &o);
    assert_ptr_equal(o.type, &SMTP_SESSION_TEMPFAIL);
    assert_false(smtp_session_idle(ss));
    struct deferred *d = smtp_session_send(ss, "a@example.test", RCPT, 1, MSG, strlen(MSG));
    assert_true(deferred_called(d));
    assert_true(failure_is(deferred_current_result(d).failure, &SMTP_SESSION_TEMPFAIL));
    deferred_add_errback(d, record, &o);    /* handled */
    deferred_unref(d);
    smtp_session_abort(ss);
    run_for(r, 0.1);
    world_end(&s);
}

/* No reply to the final ".": addTimeout on the send cancels it, which
 * aborts the session; the failure is the timeout. */
static void test_send_timeout_aborts(void **state)
{
    (void)state;
    struct script sc = { .greeting = "220 ready\r\n", .silent_after_data = true };
    struct server s;
    struct reactor *r = world_start(&s, &sc);
    struct outcome o;
    struct smtp_session *ss = open_session(r, &s, 0, &o);
    assert_non_null(ss);
    send_one(r, ss, 0.1, &o);
    assert_ptr_equal(o.type, &FAILURE_TIMEOUT);
    assert_false(smtp_session_idle(ss));
    smtp_session_abort(ss);
    run_for(r, 0.1);
    assert_true(s.lost);
    assert_int_equal(s.messages, 1);    /* it did arrive: the client cannot know */
    world_end(&s);
}

/* Nobody listening: the open fails with the reactor's connect error. */
static void test_connect_refused(void **state)
{
    (void)state;
    struct script sc = { .greeting = "220 ready\r\n" };
    struct server s;
    struct reactor *r = world_start(&s, &sc);
    server_stop(&s);                    /* closed: the port now refuses */
    struct outcome o;
    assert_null(open_session(r, &s, 0, &o));
    assert_ptr_equal(o.type, &FAILURE_CONNECTION_REFUSED);
    world_end(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_send_and_quit),
        cmocka_unit_test(test_greeting_refused),
        cmocka_unit_test(test_greeting_timeout),
        cmocka_unit_test(test_rcpt_tempfail),
        cmocka_unit_test(test_drop_in_data),
        cmocka_unit_test(test_send_timeout_aborts),
        cmocka_unit_test(test_connect_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
