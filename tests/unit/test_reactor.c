/* Unit tests for lib/reactor (loopback only, every wait bounded by a guard
 * timer), with the Deferred checklist's reactor cases 54 and 60.  The thread
 * pool (and case 55, deferToThread) is in test_threadpool.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "deferred.h"
#include "reactor.h"
#include "unit_support.h"

static int listen_any(int *port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, backlog), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}


/* Records the outcome of a Deferred. */
struct outcome {
    bool fired;                         /* any result arrived */
    const struct failure_type *ftype;   /* its type if a Failure */
    void *value;                        /* its value otherwise */
    struct reactor *stop;               /* stop this reactor when it arrives */
};

static struct deferred_result record(struct deferred_result r, void *arg)
{
    struct outcome *o = arg;
    o->fired = true;
    if (r.kind == DEFERRED_FAILURE)
        o->ftype = r.failure->type;
    else
        o->value = r.value;
    if (o->stop)
        reactor_stop(o->stop);
    return deferred_ok(NULL);
}

static void test_connect_refused(void **state)
{
    (void)state;
    struct reactor *r = reactor_new();
    int port, fd = listen_any(&port, 1);
    close(fd);                          /* nobody listens there now */
    struct outcome o = { .stop = r };
    struct deferred *d = reactor_connect_tcp(r, "127.0.0.1", port, 1.0);
    deferred_add_both(d, record, &o);
    if (!o.fired)
        run_bounded(r, 2.0);
    assert_true(o.fired);
    assert_ptr_equal(o.ftype, &FAILURE_CONNECTION_REFUSED);
    assert_true(failure_check(&(struct failure){ .type = o.ftype }, &FAILURE_CONNECT_ERROR) != NULL);
    deferred_unref(d);
    reactor_free(r);
}

static void test_connect_timeout_and_cancel(void **state)
{
    (void)state;
    struct reactor *r = reactor_new();
    /* A listener whose accept queue is full: further SYNs are dropped, so
     * the next connect neither succeeds nor fails until our timeout. */
    int port, lfd = listen_any(&port, 0);
    int fill[4], nfill = 0;
    for (; nfill < 4; nfill++) {
        fill[nfill] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        connect(fill[nfill], (struct sockaddr *)&sa, sizeof sa);
    }
    struct outcome o = { .stop = r };
    struct deferred *d = reactor_connect_tcp(r, "127.0.0.1", port, 0.2);
    deferred_add_both(d, record, &o);
    run_bounded(r, 3.0);
    assert_true(o.fired);
    assert_ptr_equal(o.ftype, &FAILURE_CONNECT_TIMEOUT);
    deferred_unref(d);

    /* Cancelling a pending connect aborts it: CancelledError. */
    struct outcome c = { 0 };
    d = reactor_connect_tcp(r, "127.0.0.1", port, 5.0);
    deferred_add_both(d, record, &c);
    deferred_cancel(d);
    assert_true(c.fired);
    assert_ptr_equal(c.ftype, &FAILURE_CANCELLED);
    deferred_unref(d);
    run_bounded(r, 0.05);                /* lets an aborted connection's hop run */
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    close(lfd);
    reactor_free(r);
}

/* A peer that reads everything until EOF (on the raw socket side). */
struct sink {
    struct reactor *r;
    struct reactor_conn *client;        /* our end, via the connect Deferred */
    size_t received;                    /* bytes the peer read */
    bool lost;                          /* connection_lost ran on our end */
    const struct failure_type *reason;  /* with this type */
};

static void client_lost(struct reactor_conn *c, struct failure *reason, void *arg)
{
    struct sink *s = arg;
    (void)c;
    s->lost = true;
    s->reason = reason->type;
    s->client = NULL;
}

static const struct reactor_protocol client_proto = { NULL, client_lost };

static struct deferred_result got_conn(struct deferred_result r, void *arg)
{
    struct sink *s = arg;
    s->client = r.value;
    reactor_conn_set_protocol(s->client, &client_proto, s);
    reactor_stop(s->r);
    return deferred_ok(NULL);
}

static void test_write_buffering_and_close(void **state)
{
    (void)state;
    struct sink s = { reactor_new(), NULL, 0, false, NULL };
    int port, lfd = listen_any(&port, 4);
    struct deferred *d = reactor_connect_tcp(s.r, "127.0.0.1", port, 1.0);
    deferred_add_callback(d, got_conn, &s);
    run_bounded(s.r, 2.0);
    assert_non_null(s.client);
    deferred_unref(d);
    int peer = accept(lfd, NULL, NULL);
    assert_true(peer >= 0);

    /* Small write: straight to the socket, nothing buffered. */
    assert_int_equal(reactor_conn_write(s.client, "hi", 2), 0);
    assert_int_equal(reactor_conn_buffered(s.client), 0);
    /* Large write while the peer does not read: the rest is buffered. */
    size_t big = 8u << 20;
    char *buf = malloc(big);
    memset(buf, 'x', big);
    assert_int_equal(reactor_conn_write(s.client, buf, big), 0);
    assert_true(reactor_conn_buffered(s.client) > 0);
    reactor_conn_close(s.client);       /* flush, then close */
    assert_int_equal(reactor_conn_write(s.client, "late", 4), -1);
    /* Drain on the peer side while the reactor flushes. */
    for (int rounds = 0; rounds < 100000 && !s.lost; rounds++) {
        ev_run(reactor_loop(s.r), EVRUN_NOWAIT);
        ssize_t n;
        while ((n = recv(peer, buf, big, MSG_DONTWAIT)) > 0)
            s.received += (size_t)n;
        if (n == 0)
            break;
        poll(NULL, 0, 1);
    }
    run_bounded(s.r, 0.05);
    ssize_t n;
    while ((n = recv(peer, buf, big, MSG_DONTWAIT)) > 0)
        s.received += (size_t)n;
    assert_int_equal(s.received, big + 2);
    assert_true(s.lost);
    assert_ptr_equal(s.reason, &FAILURE_CONNECTION_DONE);
    free(buf);
    close(peer);
    close(lfd);
    reactor_free(s.r);
}

/* writev: the pieces go out in order, what the socket does not take is
 * buffered from the right byte of the right piece (the peer does not read
 * at first), and a writev while bytes are buffered queues behind them. */
static void test_writev_partial(void **state)
{
    (void)state;
    struct sink s = { reactor_new(), NULL, 0, false, NULL };
    int port, lfd = listen_any(&port, 4);
    struct deferred *d = reactor_connect_tcp(s.r, "127.0.0.1", port, 1.0);
    deferred_add_callback(d, got_conn, &s);
    run_bounded(s.r, 2.0);
    assert_non_null(s.client);
    deferred_unref(d);
    int peer = accept(lfd, NULL, NULL);
    assert_true(peer >= 0);
    size_t big = 6u << 20, total = 100 + big + 5 + 7;
    char *want = malloc(total), *got = malloc(total + 1);
    memset(want, 'a', 100);
    for (size_t i = 0; i < big; i++)
        want[100 + i] = (char)(i % 251);
    memcpy(want + 100 + big, "tail!", 5);
    memcpy(want + 100 + big + 5, "behind!", 7);
    struct iovec iov[3] = { { want, 100 }, { want + 100, big }, { want + 100 + big, 5 } };
    assert_int_equal(reactor_conn_writev(s.client, iov, 3), 0);
    assert_true(reactor_conn_buffered(s.client) > 0);     /* 6 MB: not all taken */
    struct iovec more = { want + 100 + big + 5, 7 };
    assert_int_equal(reactor_conn_writev(s.client, &more, 1), 0);
    reactor_conn_close(s.client);
    size_t n_got = 0;
    for (int rounds = 0; rounds < 100000 && !s.lost; rounds++) {
        ev_run(reactor_loop(s.r), EVRUN_NOWAIT);
        ssize_t n;
        while (n_got < total && (n = recv(peer, got + n_got, total + 1 - n_got, MSG_DONTWAIT)) > 0)
            n_got += (size_t)n;
        poll(NULL, 0, 1);
    }
    run_bounded(s.r, 0.05);
    ssize_t n;
    while ((n = recv(peer, got + n_got, total + 1 - n_got, MSG_DONTWAIT)) > 0)
        n_got += (size_t)n;
    assert_int_equal(n_got, total);
    assert_memory_equal(got, want, total);
    assert_true(s.lost);
    free(want);
    free(got);
    close(peer);
    close(lfd);
    reactor_free(s.r);
}

/* Peer closes: data_received sees the bytes, then connection_lost(DONE). */
struct echo { struct reactor *r; char got[16]; size_t n; const struct failure_type *reason; };

static void echo_data(struct reactor_conn *c, const char *buf, size_t len, void *arg)
{
    struct echo *e = arg;
    (void)c;
    memcpy(e->got + e->n, buf, len < sizeof e->got - e->n - 1 ? len : 0);
    e->n += len;
}

static void echo_lost(struct reactor_conn *c, struct failure *reason, void *arg)
{
    struct echo *e = arg;
    (void)c;
    e->reason = reason->type;
    reactor_stop(e->r);
}

static const struct reactor_protocol echo_proto = { echo_data, echo_lost };

static void test_adopt_read_and_peer_close(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct echo e = { reactor_new(), { 0 }, 0, NULL };
    struct reactor_conn *c = reactor_conn_adopt(e.r, sv[0]);
    assert_non_null(c);
    reactor_conn_set_protocol(c, &echo_proto, &e);
    assert_int_equal(write(sv[1], "hello", 5), 5);
    close(sv[1]);
    run_bounded(e.r, 2.0);
    assert_string_equal(e.got, "hello");
    assert_ptr_equal(e.reason, &FAILURE_CONNECTION_DONE);
    reactor_free(e.r);
}

/* Real delayed calls: order, cancel, reset, active. */
struct timers { struct reactor *r; char order[8]; int n; struct deferred_call *self; bool active_inside; };

static void t_a(void *arg) { struct timers *t = arg; t->order[t->n++] = 'a'; }
static void t_b(void *arg) { struct timers *t = arg; t->order[t->n++] = 'b'; }
static void t_c(void *arg)
{
    struct timers *t = arg;
    t->order[t->n++] = 'c';
    t->active_inside = deferred_call_active(t->self);
    reactor_stop(t->r);
}

static void test_call_later(void **state)
{
    (void)state;
    struct timers t = { reactor_new(), { 0 }, 0, NULL, true };
    struct deferred_call *b = reactor_call_later(t.r, 0.02, t_b, &t);
    struct deferred_call *a = reactor_call_later(t.r, 0.01, t_a, &t);
    struct deferred_call *x = reactor_call_later(t.r, 0.005, t_a, &t);
    assert_true(deferred_call_active(x));
    assert_int_equal(deferred_call_cancel(x), 0);
    assert_false(deferred_call_active(x));
    assert_int_equal(deferred_call_cancel(x), DEFERRED_CALL_E_CANCELLED);
    t.self = reactor_call_later(t.r, 0.001, t_c, &t);
    assert_int_equal(deferred_call_reset(t.self, 0.04), 0); /* later: after a and b */
    run_bounded(t.r, 2.0);
    assert_string_equal(t.order, "abc");
    assert_false(t.active_inside);
    assert_int_equal(deferred_call_reset(t.self, 1), DEFERRED_CALL_E_CALLED);
    deferred_call_unref(a);
    deferred_call_unref(b);
    deferred_call_unref(x);
    deferred_call_unref(t.self);
    reactor_free(t.r);
}

/* callAt: a deadline on the reactor's clock holds whatever ran since the
 * caller read the clock (a delay from that read would fire late by it);
 * a time already past runs on the next turn, in order. */
struct at_ctx { struct reactor *r; double ran[3]; int n; };

static void at_ran(void *arg)
{
    struct at_ctx *c = arg;
    c->ran[c->n++] = reactor_now(c->r);
    if (c->n == 3)
        reactor_stop(c->r);
}

static void test_call_at(void **state)
{
    (void)state;
    struct at_ctx c = { reactor_new(), { 0 }, 0 };
    double t0 = reactor_now(c.r);
    struct deferred_call *past = reactor_call_at(c.r, t0 - 1.0, at_ran, &c);
    while (reactor_now(c.r) < t0 + 0.004)
        ;                                 /* 4 ms of work after the clock read */
    struct deferred_call *at = reactor_call_at(c.r, t0 + 0.010, at_ran, &c);
    struct deferred_call *later = reactor_call_at(c.r, t0 + 0.020, at_ran, &c);
    run_bounded(c.r, 2.0);
    assert_int_equal(c.n, 3);
    assert_true(c.ran[0] < t0 + 0.010);   /* the past one first */
    assert_true(c.ran[1] >= t0 + 0.010);  /* never early */
    assert_true(c.ran[2] >= t0 + 0.020);
    /* The deadlines are the times asked for, not t0 + 4 ms + 10 ms: the
     * work since the clock read is not added (exact, whatever the host's
     * wake-up delay). */
    assert_true(fabs(at->when - (t0 + 0.010)) < 1e-6);
    assert_true(fabs(later->when - (t0 + 0.020)) < 1e-6);
    deferred_call_unref(past);
    deferred_call_unref(at);
    deferred_call_unref(later);
    reactor_free(c.r);
}

/* ---- the checklist's reactor cases (shared/spec/deferred.md §8: 54, 60) ---- */

/* 54: a Deferred fired from dataReceived runs its callbacks at once, inside
 * it; callLater(0) does not starve I/O; timers run in deadline order. */
struct c54_ctx {
    struct reactor *r;
    struct deferred *got;         /* fired from data_received */
    bool in_data_received;        /* true while data_received runs */
    bool cb_ran_inside;           /* the callback saw in_data_received */
    int spins;                    /* callLater(0) iterations before data arrived */
    bool data_seen;
    char order[4];
    int norder;
    struct deferred_call *spinner;
    struct reactor_conn *server;
};

static struct deferred_result c54_cb(struct deferred_result r, void *arg)
{
    struct c54_ctx *c = arg;
    c->cb_ran_inside = c->in_data_received;
    return r;
}

static void c54_data(struct reactor_conn *conn, const char *buf, size_t len, void *arg)
{
    struct c54_ctx *c = arg;
    (void)conn;
    (void)buf;
    (void)len;
    c->in_data_received = true;
    c->data_seen = true;
    deferred_callback(c->got, NULL);
    c->in_data_received = false;
}

static void c54_lost(struct reactor_conn *conn, struct failure *reason, void *arg)
{
    struct c54_ctx *c = arg;
    (void)conn;
    (void)reason;
    c->server = NULL;                     /* freed after we return */
}

static const struct reactor_protocol c54_proto = { c54_data, c54_lost };

static void c54_spin(void *arg)
{
    struct c54_ctx *c = arg;
    deferred_call_unref(c->spinner);
    c->spinner = NULL;
    if (c->data_seen || c->spins > 10000)
        return;
    c->spins++;
    c->spinner = reactor_call_later(c->r, 0, c54_spin, c);
}

static void c54_a(void *arg) { struct c54_ctx *c = arg; c->order[c->norder++] = 'a'; }
static void c54_b(void *arg) { struct c54_ctx *c = arg; c->order[c->norder++] = 'b'; }

static struct deferred_result c54_connected(struct deferred_result r, void *arg)
{
    (void)arg;
    reactor_conn_write(r.value, "hello", 5);
    reactor_conn_close(r.value);
    return deferred_ok(NULL);
}

static void test_c54_reactor_fires_inside_data_received(void **state)
{
    (void)state;
    struct c54_ctx c = { 0 };
    c.r = reactor_new();
    int port, lfd = listen_any(&port, 16);
    c.got = deferred_new();
    deferred_add_callback(c.got, c54_cb, &c);
    struct deferred *d = reactor_connect_tcp(c.r, "127.0.0.1", port, 2.0);
    deferred_add_callback(d, c54_connected, &c);
    deferred_unref(d);
    int sfd = accept(lfd, NULL, NULL);       /* the kernel completed the handshake */
    assert_true(sfd >= 0);
    c.server = reactor_conn_adopt(c.r, sfd);
    reactor_conn_set_protocol(c.server, &c54_proto, &c);
    c.spinner = reactor_call_later(c.r, 0, c54_spin, &c);
    deferred_call_unref(reactor_call_later(c.r, 0.02, c54_b, &c));
    deferred_call_unref(reactor_call_later(c.r, 0.01, c54_a, &c));
    struct deferred_call *stop = reactor_call_later(c.r, 0.05, (void (*)(void *))reactor_stop, c.r);
    reactor_run(c.r);
    deferred_call_unref(stop);
    assert_true(c.data_seen);
    assert_true(c.cb_ran_inside);
    assert_true(c.spins >= 1 && c.spins < 10000);   /* callLater(0) did not starve I/O */
    assert_string_equal(c.order, "ab");
    if (c.server) {                                  /* the client's close may not have arrived */
        reactor_conn_close(c.server);
        reactor_run(c.r);                            /* delivers connection_lost, frees */
    }
    assert_null(c.server);
    deferred_unref(c.got);
    close(lfd);
    reactor_free(c.r);
}

/* 60, the reactor part: a silent server; the chain waits for a greeting that
 * never comes; add_timeout cancels it, the canceller aborts the connection,
 * the result is FAILURE_TIMEOUT and the server sees 1 connection, closed. */
struct c60_ctx { struct reactor *r; struct reactor_conn *conn; struct deferred *greeting;
                 bool lost; struct deferred_result final; };

static struct failure *c60_cancel_greeting(struct deferred *d, void *arg)
{
    struct c60_ctx *c = arg;
    (void)d;
    reactor_conn_abort(c->conn);
    return NULL;
}

static void c60_lost(struct reactor_conn *conn, struct failure *reason, void *arg)
{
    struct c60_ctx *c = arg;
    (void)conn;
    (void)reason;
    c->lost = true;
    reactor_stop(c->r);
}

static const struct reactor_protocol c60_proto = { NULL, c60_lost };

static struct deferred_result c60_connected(struct deferred_result r, void *arg)
{
    struct c60_ctx *c = arg;
    c->conn = r.value;
    reactor_conn_set_protocol(c->conn, &c60_proto, c);
    c->greeting = deferred_new_cancellable(c60_cancel_greeting, c);
    return deferred_wait(deferred_ref(c->greeting));
}

static struct deferred_result c60_final(struct deferred_result r, void *arg)
{
    struct c60_ctx *c = arg;
    c->final = r;
    return deferred_ok(NULL);
}

static void test_c60_timeout_aborts_silent_connection(void **state)
{
    (void)state;
    struct c60_ctx c = { 0 };
    c.r = reactor_new();
    int port, lfd = listen_any(&port, 16);
    struct deferred *d = reactor_connect_tcp(c.r, "127.0.0.1", port, 2.0);
    deferred_add_callback(d, c60_connected, &c);
    deferred_add_timeout(d, 0.1, reactor_clock(c.r));
    deferred_add_both(d, c60_final, &c);
    double t0 = reactor_now(c.r);
    struct deferred_call *guard = reactor_call_later(c.r, 2.0, (void (*)(void *))reactor_stop, c.r);
    reactor_run(c.r);
    assert_true(c.lost);
    assert_true(reactor_now(c.r) - t0 < 1.0);
    assert_int_equal(c.final.kind, DEFERRED_FAILURE); /* checked before the failure was dropped */
    int sfd = accept(lfd, NULL, NULL);
    assert_true(sfd >= 0);
    char b;
    assert_int_equal(read(sfd, &b, 1), 0);           /* aborted: EOF at the server */
    close(sfd);
    deferred_call_cancel(guard);
    deferred_call_unref(guard);
    deferred_unref(c.greeting);
    deferred_unref(d);
    close(lfd);
    reactor_free(c.r);
}

/* reactor_set_turn_hook (--trace): a start and an end per turn, callbacks inside a turn, the ready
^ * count is never negative, and the hook's watchers do not keep
 * reactor_run() going: it returns once the last timer has run. */
struct turns { int starts, ends, max_ready, fired; bool open; };
static void on_turn(void *arg, bool start, int ready)
{
    struct turns *t = arg;
    if (start) {
        assert_false(t->open);
        t->open = true;
        t->starts++;
        if (ready > t->max_ready)
            t->max_ready = ready;
    } else {
        assert_true(t->open);
        t->open = false;
        t->ends++;
    }
}
static void turn_timer(void *arg)
{
    struct turns *t = arg;
    assert_true(t->open);       /* callbacks run inside a turn */
    t->fired++;
}

static void test_turn_hook(void **state)
{
    (void)state;
    struct turns t = { 0 };
    struct reactor *r = reactor_new();
    reactor_set_turn_hook(r, on_turn, &t);
    deferred_call_unref(reactor_call_later(r, 0.005, turn_timer, &t));
    deferred_call_unref(reactor_call_later(r, 0.010, turn_timer, &t));
    reactor_run(r);             /* returns by itself: nothing left to wait for */
    assert_int_equal(t.fired, 2);
    assert_true(t.starts >= 2);
    assert_true(t.ends >= t.starts - 1 && t.ends <= t.starts);
    assert_true(t.max_ready >= 0);     /* timers due within the spin window fire from an idle watcher: 0 ready; I/O readiness is checked in test_trace.sh */
    reactor_set_turn_hook(r, NULL, NULL);
    reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_connect_timeout_and_cancel),
        cmocka_unit_test(test_write_buffering_and_close),
        cmocka_unit_test(test_adopt_read_and_peer_close),
        cmocka_unit_test(test_writev_partial),
        cmocka_unit_test(test_call_later),
        cmocka_unit_test(test_call_at),
        cmocka_unit_test(test_c54_reactor_fires_inside_data_received),
        cmocka_unit_test(test_c60_timeout_aborts_silent_connection),
        cmocka_unit_test(test_turn_hook),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
