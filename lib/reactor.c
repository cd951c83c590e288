/* reactor — libev glue: delayed calls, TCP connections as Deferreds, buffered
 * writes (contract in reactor.h). */
#include "reactor.h"
#include "timerq.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* Delayed calls live in a timerq (timerq.h): exact deadlines on a timerfd,
 * and calls due at the same time in the order they were scheduled. */
struct reactor {
    struct ev_loop *loop;         /* ours: created by reactor_new */
    struct deferred_clock clock;  /* the reactor as a Deferred clock */
    struct timerq timers;         /* the pending delayed calls */
    ev_check turn_start;          /* reactor_set_turn_hook: after each poll */
    ev_prepare turn_end;          /* ... and before the next one */
    void (*turn_hook)(void *arg, bool start, int ready);
    void *turn_arg;
    bool in_turn;
};

/* A delayed call on the reactor: the generic part plus its queue entry. */
struct reactor_call {
    struct deferred_call base;    /* must be first */
    struct timerq_entry entry;    /* pending while in r->timers */
};

enum conn_state {
    CONN_CONNECTING,              /* wio waits for connect() to complete */
    CONN_OPEN,                    /* reading; wio flushes the write buffer */
    CONN_CLOSING,                 /* close() called: flushing, then teardown */
    CONN_CLOSED,                  /* fd closed; connection_lost pending */
};

struct reactor_conn {
    struct reactor *r;                    /* owning reactor */
    int fd;                               /* the socket, -1 once closed */
    enum conn_state state;                /* see above */
    ev_io rio;                            /* readable */
    ev_io wio;                            /* writable: connect done / flush */
    ev_timer timer;                       /* connect timeout, then the connection_lost hop */
    struct deferred *connecting;          /* the connect Deferred (a reference) until it fires */
    char *wbuf;                           /* unsent bytes are wbuf[woff..wlen) */
    size_t woff, wlen, wcap;              /* offsets into wbuf, its size */
    const struct reactor_protocol *proto; /* the user's callbacks, or NULL */
    void *proto_arg;                      /* their argument */
    struct failure *reason;               /* why it ended, for connection_lost */
    double connect_timeout;               /* seconds, for the timeout message */
    char *peer;                           /* "connect to HOST:PORT", for a failed connect's
                                           * message; freed once connected (not 300 bytes
                                           * inline in every connection) */
};

/* ---- loop and clock ----------------------------------------------------- */

static double rclock_now(struct deferred_clock *c)
{
    (void)c;
    return timerq_now();
}

static void rcall_due(struct timerq_entry *e)
{
    deferred_call_run(&container_of(e, struct reactor_call, entry)->base);
}

static const struct deferred_clock_ops reactor_clock_ops;

struct deferred_call *reactor_call_at(struct reactor *r, double when,
                                      void (*fn)(void *arg), void *arg)
{
    struct reactor_call *call = malloc(sizeof *call);
    if (!call)
        abort();
    call->base = (struct deferred_call){ &r->clock, &reactor_clock_ops, 2, DEFERRED_CALL_PENDING,
                                         when, fn, arg };
    timerq_entry_init(&call->entry, rcall_due);
    timerq_add(&r->timers, &call->entry, when);
    return &call->base;
}

static struct deferred_call *rclock_call_later(struct deferred_clock *c, double delay,
                                               void (*fn)(void *arg), void *arg)
{
    return reactor_call_at(container_of(c, struct reactor, clock), timerq_now() + delay, fn, arg);
}

static void rclock_disarm(struct deferred_call *base)
{
    struct reactor *r = container_of(base->clock, struct reactor, clock);
    timerq_remove(&r->timers, &((struct reactor_call *)base)->entry);
}

/* reset(): a new deadline and a new place after the calls already due then
 * (as Twisted's reactor re-inserts a reset call). */
static void rclock_rearm(struct deferred_call *base, double delay)
{
    struct reactor *r = container_of(base->clock, struct reactor, clock);
    base->when = timerq_now() + delay;
    timerq_add(&r->timers, &((struct reactor_call *)base)->entry, base->when);
}

static void rclock_release(struct deferred_call *base)
{
    free(base);
}

static const struct deferred_clock_ops reactor_clock_ops = {
    rclock_now, rclock_call_later, rclock_disarm, rclock_rearm, rclock_release,
};

struct reactor *reactor_new(void)
{
    struct reactor *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    r->loop = ev_loop_new(EVFLAG_AUTO);
    if (!r->loop) {
        free(r);
        return NULL;
    }
    if (timerq_init(&r->timers, r->loop) != 0) {
        ev_loop_destroy(r->loop);
        free(r);
        return NULL;
    }
    r->clock.ops = &reactor_clock_ops;
    return r;
}

/* Calls still pending are cancelled without running; a handle still held
 * stays valid (deferred.h, struct deferred_call). */
static void turn_start_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)revents;
    struct reactor *r = container_of(w, struct reactor, turn_start);
    r->in_turn = true;
    /* libev takes a watcher off the pending count before calling it: what is
     * left is the turn's other ready watchers (I/O, timers, async wake-ups). */
    r->turn_hook(r->turn_arg, true, (int)ev_pending_count(loop));
}

static void turn_end_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    struct reactor *r = container_of(w, struct reactor, turn_end);
    if (r->in_turn)
        r->turn_hook(r->turn_arg, false, 0);
    r->in_turn = false;
}

void reactor_set_turn_hook(struct reactor *r, void (*hook)(void *arg, bool start, int ready),
                           void *arg)
{
    if (r->turn_hook) {             /* the watchers do not keep the loop alive */
        ev_ref(r->loop);
        ev_check_stop(r->loop, &r->turn_start);
        ev_ref(r->loop);
        ev_prepare_stop(r->loop, &r->turn_end);
    }
    r->turn_hook = hook;
    r->turn_arg = arg;
    r->in_turn = false;
    if (hook == NULL)
        return;
    ev_check_init(&r->turn_start, turn_start_cb);
    ev_set_priority(&r->turn_start, EV_MAXPRI);
    ev_check_start(r->loop, &r->turn_start);
    ev_unref(r->loop);
    ev_prepare_init(&r->turn_end, turn_end_cb);
    ev_prepare_start(r->loop, &r->turn_end);
    ev_unref(r->loop);
}

void reactor_free(struct reactor *r)
{
    if (!r)
        return;
    if (r->turn_hook)
        reactor_set_turn_hook(r, NULL, NULL);
    struct timerq_entry *e;
    while ((e = timerq_first(&r->timers)) != NULL) {
        struct reactor_call *call = container_of(e, struct reactor_call, entry);
        timerq_remove(&r->timers, e);
        call->base.state = DEFERRED_CALL_CANCELLED;
        call->base.clock = NULL;
        deferred_call_unref(&call->base); /* the clock's reference */
    }
    timerq_destroy(&r->timers);
    ev_loop_destroy(r->loop);
    free(r);
}

struct ev_loop *reactor_loop(struct reactor *r) { return r->loop; }
struct deferred_clock *reactor_clock(struct reactor *r) { return &r->clock; }
double reactor_now(struct reactor *r) { (void)r; return timerq_now(); }

struct deferred_call *reactor_call_later(struct reactor *r, double delay,
                                         void (*fn)(void *arg), void *arg)
{
    return deferred_call_later(&r->clock, delay, fn, arg);
}

void reactor_run(struct reactor *r)
{
    ev_run(r->loop, 0);
}

void reactor_stop(struct reactor *r)
{
    ev_break(r->loop, EVBREAK_ALL);
}

/* ---- connections: teardown ---------------------------------------------- */

static void conn_free(struct reactor_conn *c)
{
    failure_unref(c->reason);
    free(c->wbuf);
    free(c->peer);
    free(c);
}

/* The hop to a later iteration: tell the protocol, then free. */
static void conn_lost_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct reactor_conn *c = container_of(w, struct reactor_conn, timer);
    if (c->proto && c->proto->connection_lost)
        c->proto->connection_lost(c, c->reason, c->proto_arg);
    conn_free(c);
}

/* Stop every watcher, close the socket, and schedule connection_lost.
 * Takes over `reason`.  Safe to call from any callback of this connection. */
static void conn_teardown(struct reactor_conn *c, struct failure *reason)
{
    if (c->state == CONN_CLOSED) {
        failure_unref(reason);
        return;
    }
    struct ev_loop *loop = c->r->loop;
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    ev_timer_stop(loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    c->state = CONN_CLOSED;
    c->reason = reason;
    c->woff = c->wlen = 0;
    ev_timer_init(&c->timer, conn_lost_cb, 0., 0.);
    ev_timer_start(loop, &c->timer);
}

void reactor_conn_abort(struct reactor_conn *c)
{
    conn_teardown(c, failure_new(&FAILURE_CONNECTION_LOST, 0, "Connection was aborted"));
}

static struct failure *conn_done(void)
{
    return failure_new(&FAILURE_CONNECTION_DONE, 0, "Connection was closed cleanly");
}

void reactor_conn_close(struct reactor_conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    if (c->wlen > c->woff)
        c->state = CONN_CLOSING;          /* the flush finishes the job */
    else
        conn_teardown(c, conn_done());
}

/* ---- connections: reading and writing -------------------------------------- */

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct reactor_conn *c = container_of(w, struct reactor_conn, rio);
    char buf[16384];
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n > 0) {
        if (c->proto && c->proto->data_received)
            c->proto->data_received(c, buf, (size_t)n, c->proto_arg);
    } else if (n == 0) {
        conn_teardown(c, conn_done());
    } else if (errno != EAGAIN && errno != EINTR) {
        conn_teardown(c, failure_from_errno(&FAILURE_CONNECTION_LOST, errno, "read"));
    }
}

/* Write as much of the buffer as the socket takes.  -1 on a write error
 * (the connection is then torn down). */
static int conn_flush(struct reactor_conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            conn_teardown(c, failure_from_errno(&FAILURE_CONNECTION_LOST, errno, "write"));
            return -1;
        }
        c->woff += (size_t)n;
    }
    c->woff = c->wlen = 0;
    return 0;
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents);

static void conn_buffer(struct reactor_conn *c, const char *buf, size_t len)
{
    if (c->woff > 0 && c->wlen == c->woff)
        c->woff = c->wlen = 0;
    if (c->wlen + len > c->wcap) {
        size_t cap = c->wcap ? c->wcap : 4096;
        while (cap < c->wlen + len)
            cap *= 2;
        c->wbuf = realloc(c->wbuf, cap);
        if (!c->wbuf)
            abort();
        c->wcap = cap;
    }
    memcpy(c->wbuf + c->wlen, buf, len);
    c->wlen += len;
    ev_io_start(c->r->loop, &c->wio);
}

int reactor_conn_write(struct reactor_conn *c, const void *buf, size_t len)
{
    if (c->state != CONN_OPEN)
        return -1;
    const char *p = buf;
    if (c->wlen == c->woff) {             /* nothing queued: try the socket directly */
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            conn_teardown(c, failure_from_errno(&FAILURE_CONNECTION_LOST, errno, "write"));
            return -1;
        }
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
    }
    if (len > 0)
        conn_buffer(c, p, len);
    return 0;
}

int reactor_conn_writev(struct reactor_conn *c, const struct iovec *iov, int iovcnt)
{
    if (c->state != CONN_OPEN)
        return -1;
    size_t skip = 0;                      /* bytes the socket took */
    if (c->wlen == c->woff) {             /* nothing queued: try the socket directly */
        struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            conn_teardown(c, failure_from_errno(&FAILURE_CONNECTION_LOST, errno, "write"));
            return -1;
        }
        if (n > 0)
            skip = (size_t)n;
    }
    size_t rest = 0;
    for (int i = 0; i < iovcnt; i++)
        rest += iov[i].iov_len;
    rest -= skip;
    if (rest == 0)
        return 0;
    if (c->woff > 0 && c->wlen == c->woff)
        c->woff = c->wlen = 0;
    if (c->wlen + rest > c->wcap) {       /* once, to the size needed */
        size_t cap = (c->wlen + rest + 4095) & ~(size_t)4095;
        char *b = realloc(c->wbuf, cap);
        if (!b)
            abort();
        c->wbuf = b;
        c->wcap = cap;
    }
    for (int i = 0; i < iovcnt; i++) {
        size_t len = iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        conn_buffer(c, (const char *)iov[i].iov_base + skip, len - skip);
        skip = 0;
    }
    return 0;
}

size_t reactor_conn_buffered(const struct reactor_conn *c)
{
    return c->wlen - c->woff;
}

/* ---- connections: establishing ------------------------------------------- */

static void conn_opened(struct reactor_conn *c)
{
    struct ev_loop *loop = c->r->loop;
    ev_io_stop(loop, &c->wio);
    ev_timer_stop(loop, &c->timer);
    ev_io_set(&c->wio, c->fd, EV_WRITE);
    ev_set_cb(&c->wio, conn_write_cb);
    c->state = CONN_OPEN;
    ev_io_start(loop, &c->rio);
}

/* The connect attempt ended: fire the Deferred with c or with err. */
static void conn_connect_done(struct reactor_conn *c, struct failure *err)
{
    struct deferred *d = c->connecting;
    c->connecting = NULL;
    if (err) {
        ev_io_stop(c->r->loop, &c->wio);
        ev_timer_stop(c->r->loop, &c->timer);
        close(c->fd);
        conn_free(c);
        deferred_errback(d, err);
    } else {
        free(c->peer);
        c->peer = NULL;
        conn_opened(c);
        deferred_callback(d, c);
    }
    deferred_unref(d);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct reactor_conn *c = container_of(w, struct reactor_conn, wio);
    if (c->state == CONN_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err == 0)
            conn_connect_done(c, NULL);
        else
            conn_connect_done(c, failure_from_errno(err == ECONNREFUSED ? &FAILURE_CONNECTION_REFUSED
                                                                        : &FAILURE_CONNECT_ERROR,
                                                    err, c->peer));
        return;
    }
    if (conn_flush(c) < 0)
        return;
    if (c->wlen == 0) {
        ev_io_stop(loop, &c->wio);
        if (c->state == CONN_CLOSING)
            conn_teardown(c, conn_done());
    }
}

static void conn_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct reactor_conn *c = container_of(w, struct reactor_conn, timer);
    /* The same words as the blocking models' (smtp_blocking_connect). */
    conn_connect_done(c, failure_new(&FAILURE_CONNECT_TIMEOUT, ETIMEDOUT, "%s: timed out after %gs",
                                     c->peer, c->connect_timeout));
}

/* Cancelling the connect Deferred: abort the attempt (then: CancelledError). */
static struct failure *conn_connect_cancel(struct deferred *d, void *arg)
{
    struct reactor_conn *c = arg;
    (void)d;
    ev_io_stop(c->r->loop, &c->wio);
    ev_timer_stop(c->r->loop, &c->timer);
    close(c->fd);
    deferred_unref(c->connecting);        /* the caller's reference keeps d alive */
    conn_free(c);
    return NULL;
}

static struct reactor_conn *conn_alloc(struct reactor *r, int fd)
{
    struct reactor_conn *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->r = r;
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
    ev_timer_init(&c->timer, conn_timeout_cb, 0., 0.);
    return c;
}

struct reactor_conn *reactor_conn_adopt(struct reactor *r, int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return NULL;
    struct reactor_conn *c = conn_alloc(r, fd);
    conn_opened(c);
    return c;
}

/* host must be a numeric IPv4 or IPv6 address, read as inet_pton reads it:
 * getaddrinfo, even with AI_NUMERICHOST, reads "0127.0.0.1" as octal
 * (87.0.0.1), "127.1" and "0x7f000001" too, and a benchmark must never send
 * to a host its user did not name.  Names are resolved once, at start, by
 * the caller (lib/cli.c), not per connection: that lookup would block. */
static int resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (port < 1 || port > 65535)
        return EAI_SERVICE;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *len = sizeof *sin;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *len = sizeof *sin6;
        return 0;
    }
    return EAI_NONAME;
}

struct deferred *reactor_connect_tcp(struct reactor *r, const char *host, int port,
                                     double connect_timeout)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc = resolve(host, port, &ss, &sslen);
    if (rc != 0)
        return deferred_fail(failure_new(&FAILURE_CONNECT_ERROR, 0,
                                         "connect to %s:%d: not a numeric address or port (%s)",
                                         host, port, gai_strerror(rc)));
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return deferred_fail(failure_from_errno(&FAILURE_CONNECT_ERROR, errno, "socket"));
    struct reactor_conn *c = conn_alloc(r, fd);
    char peer[300];
    snprintf(peer, sizeof peer, "connect to %s:%d", host, port);
    c->peer = strdup(peer);
    if (c->peer == NULL)
        abort();
    if (connect(fd, (struct sockaddr *)&ss, sslen) < 0 && errno != EINPROGRESS) {
        int err = errno;
        struct failure *f = failure_from_errno(err == ECONNREFUSED ? &FAILURE_CONNECTION_REFUSED
                                                                   : &FAILURE_CONNECT_ERROR,
                                               err, c->peer);
        close(fd);
        conn_free(c);
        return deferred_fail(f);
    }
    /* Completion (even an immediate one) is reported by writability. */
    c->state = CONN_CONNECTING;
    struct deferred *d = deferred_new_cancellable(conn_connect_cancel, c);
    c->connecting = deferred_ref(d);
    ev_io_start(r->loop, &c->wio);
    if (connect_timeout > 0) {
        ev_timer_set(&c->timer, connect_timeout, 0.);
        c->connect_timeout = connect_timeout;
        ev_timer_start(r->loop, &c->timer);
    }
    return d;
}

void reactor_conn_set_protocol(struct reactor_conn *c, const struct reactor_protocol *p, void *arg)
{
    c->proto = p;
    c->proto_arg = arg;
}

int reactor_conn_fd(const struct reactor_conn *c) { return c->fd; }
struct reactor *reactor_conn_reactor(const struct reactor_conn *c) { return c->r; }
