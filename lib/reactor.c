/* reactor — libev glue: delayed calls, TCP connections as Deferreds, buffered
 * writes (contract in reactor.h). */
#include "reactor.h"

#include <assert.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* Delayed calls live in the reactor's own binary heap ordered by (deadline,
 * sequence number), so calls due at the same time run in the order they were
 * scheduled (libev's timer heap does not keep that order), and one timerfd
 * (CLOCK_MONOTONIC, absolute, nanoseconds) watched by libev wakes the loop for
 * the earliest: libev's epoll backend sleeps in whole milliseconds, a timerfd
 * fires within microseconds of its deadline. */
struct reactor {
    struct ev_loop *loop;         /* ours: created by reactor_new */
    struct defer_clock clock;     /* the reactor as a Deferred clock */
    struct reactor_call **heap;   /* pending calls, a min-heap on (when, seq) */
    size_t n, cap;                /* heap entries, room */
    uint64_t seq;                 /* next sequence number */
    int tfd;                      /* the timerfd */
    ev_io tio;                    /* readable when the timerfd expires; active while n > 0 */
    double armed;                 /* deadline the timerfd is set to (INFINITY: none) */
};

/* A delayed call on the reactor: the generic part plus its heap position. */
struct reactor_call {
    struct defer_call base;       /* must be first */
    uint64_t seq;                 /* FIFO among equal deadlines */
    size_t pos;                   /* index in r->heap while pending */
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
    char peer[300];                       /* "connect to HOST:PORT", for error messages */
};

/* ---- loop and clock ----------------------------------------------------- */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double rclock_now(struct defer_clock *c)
{
    (void)c;
    return mono_now();
}

static bool call_before(const struct reactor_call *a, const struct reactor_call *b)
{
    return a->base.when < b->base.when || (a->base.when == b->base.when && a->seq < b->seq);
}

static void heap_set(struct reactor *r, size_t i, struct reactor_call *call)
{
    r->heap[i] = call;
    call->pos = i;
}

static void heap_up(struct reactor *r, size_t i)
{
    struct reactor_call *call = r->heap[i];
    while (i > 0 && call_before(call, r->heap[(i - 1) / 2])) {
        heap_set(r, i, r->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(r, i, call);
}

static void heap_down(struct reactor *r, size_t i)
{
    struct reactor_call *call = r->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= r->n)
            break;
        if (c + 1 < r->n && call_before(r->heap[c + 1], r->heap[c]))
            c++;
        if (!call_before(r->heap[c], call))
            break;
        heap_set(r, i, r->heap[c]);
        i = c;
    }
    heap_set(r, i, call);
}

/* Set the timerfd to the earliest deadline if it is earlier than the one set
 * (a later one is left: its expiry finds nothing due and re-arms). */
static void timer_arm(struct reactor *r)
{
    if (r->n == 0) {
        ev_io_stop(r->loop, &r->tio);     /* nothing to wait for: reactor_run may return */
        return;
    }
    ev_io_start(r->loop, &r->tio);
    double when = r->heap[0]->base.when;
    if (when >= r->armed)
        return;
    struct itimerspec its = { 0 };
    double whole = floor(when);
    its.it_value.tv_sec = (time_t)whole;
    its.it_value.tv_nsec = (long)((when - whole) * 1e9);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
        its.it_value.tv_nsec = 1;         /* zero would disarm */
    if (timerfd_settime(r->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        r->armed = when;
}

static void heap_push(struct reactor *r, struct reactor_call *call)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->heap = realloc(r->heap, r->cap * sizeof *r->heap);
        if (!r->heap)
            abort();
    }
    call->seq = r->seq++;
    heap_set(r, r->n++, call);
    heap_up(r, r->n - 1);
    timer_arm(r);
}

static void heap_remove(struct reactor *r, struct reactor_call *call)
{
    size_t i = call->pos;
    assert(i < r->n && r->heap[i] == call);
    struct reactor_call *last = r->heap[--r->n];
    if (i < r->n) {
        heap_set(r, i, last);
        heap_up(r, i);
        heap_down(r, last->pos);
    }
    if (r->n == 0)
        ev_io_stop(r->loop, &r->tio);
}

/* The timerfd expired: run every call due now that was scheduled before this
 * pass began, in (deadline, sequence) order.  A call scheduled by one of them,
 * even with delay 0, waits for the next loop iteration, so a self-rescheduling
 * callLater(0) does not starve I/O (case 54). */
static void timer_expired_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct reactor *r = container_of(w, struct reactor, tio);
    uint64_t ticks;
    if (read(r->tfd, &ticks, sizeof ticks) < 0) { /* EAGAIN: nothing; the deadline is re-armed below */ }
    r->armed = INFINITY;
    double now = mono_now();
    uint64_t last = r->seq;
    while (r->n > 0 && r->heap[0]->base.when <= now && r->heap[0]->seq < last) {
        struct reactor_call *call = r->heap[0];
        heap_remove(r, call);
        defer_call_run(&call->base);      /* may schedule or cancel others */
    }
    timer_arm(r);
}

static const struct defer_clock_ops reactor_clock_ops;

static struct defer_call *rclock_call_later(struct defer_clock *c, double delay,
                                            void (*fn)(void *arg), void *arg)
{
    struct reactor *r = container_of(c, struct reactor, clock);
    struct reactor_call *call = malloc(sizeof *call);
    if (!call)
        abort();
    call->base = (struct defer_call){ c, &reactor_clock_ops, 2, DEFER_CALL_PENDING,
                                      mono_now() + delay, fn, arg };
    heap_push(r, call);
    return &call->base;
}

static void rclock_disarm(struct defer_call *base)
{
    heap_remove(container_of(base->clock, struct reactor, clock), (struct reactor_call *)base);
}

/* reset(): a new deadline and a new place after the calls already due then
 * (as Twisted's reactor re-inserts a reset call). */
static void rclock_rearm(struct defer_call *base, double delay)
{
    struct reactor *r = container_of(base->clock, struct reactor, clock);
    heap_remove(r, (struct reactor_call *)base);
    base->when = mono_now() + delay;
    heap_push(r, (struct reactor_call *)base);
}

static void rclock_release(struct defer_call *base)
{
    free(base);
}

static const struct defer_clock_ops reactor_clock_ops = {
    rclock_now, rclock_call_later, rclock_disarm, rclock_rearm, rclock_release,
};

struct reactor *reactor_new(void)
{
    struct reactor *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    r->loop = ev_loop_new(EVFLAG_AUTO);
    r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!r->loop || r->tfd < 0) {
        if (r->loop)
            ev_loop_destroy(r->loop);
        if (r->tfd >= 0)
            close(r->tfd);
        free(r);
        return NULL;
    }
    r->armed = INFINITY;
    ev_io_init(&r->tio, timer_expired_cb, r->tfd, EV_READ);
    r->clock.ops = &reactor_clock_ops;
    return r;
}

/* Calls still pending are cancelled without running; a handle still held
 * stays valid (deferred.h, struct defer_call). */
void reactor_free(struct reactor *r)
{
    if (!r)
        return;
    while (r->n > 0) {
        struct reactor_call *call = r->heap[--r->n];
        call->base.state = DEFER_CALL_CANCELLED;
        call->base.clock = NULL;
        defer_call_unref(&call->base);    /* the clock's reference */
    }
    free(r->heap);
    ev_io_stop(r->loop, &r->tio);
    close(r->tfd);
    ev_loop_destroy(r->loop);
    free(r);
}

struct ev_loop *reactor_loop(struct reactor *r) { return r->loop; }
struct defer_clock *reactor_clock(struct reactor *r) { return &r->clock; }
double reactor_now(struct reactor *r) { (void)r; return mono_now(); }

struct defer_call *reactor_call_later(struct reactor *r, double delay,
                                      void (*fn)(void *arg), void *arg)
{
    return defer_call_later(&r->clock, delay, fn, arg);
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

/* A literal address is taken as written (AI_NUMERICHOST): getaddrinfo alone
 * reads "0127.0.0.1" as octal, 87.0.0.1, and a benchmark must never send to a
 * host its user did not name.  Something made only of digits and dots that
 * inet_pton refuses is refused here too, not looked up as a name. */
static int resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1)
        hints.ai_flags |= AI_NUMERICHOST;
    else if (host[0] == '\0' || strspn(host, "0123456789.") == strlen(host))
        return EAI_NONAME;
    struct addrinfo *ai = NULL;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &ai);
    if (rc != 0)
        return rc;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

struct deferred *reactor_connect_tcp(struct reactor *r, const char *host, int port,
                                     double connect_timeout)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc = resolve(host, port, &ss, &sslen);
    if (rc != 0)
        return deferred_fail(failure_new(&FAILURE_CONNECT_ERROR, 0, "resolve %s: %s",
                                         host, gai_strerror(rc)));
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return deferred_fail(failure_from_errno(&FAILURE_CONNECT_ERROR, errno, "socket"));
    struct reactor_conn *c = conn_alloc(r, fd);
    snprintf(c->peer, sizeof c->peer, "connect to %s:%d", host, port);
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
