/* smtp-mock — the SMTP server every mailbench benchmark talks to.
 *
 * One thread, one libev loop; it never blocks and never sleeps.  Each
 * session is a lib/smtp_server core fed from one shared read buffer.  Reply
 * latency is a timer per connection in one lib/timerq queue (a timerfd, not
 * an ev_timer: libev's epoll backend sleeps in whole milliseconds, so a 5 ms
 * reply left at 6-7 ms under load): the replies produced by one read are
 * queued with a due time on CLOCK_MONOTONIC (latency draw after the
 * arrival of the bytes that made them, never earlier than the reply before
 * them, so order is kept) and written together when due.  The arrival is
 * the kernel's receive timestamp (SO_TIMESTAMPNS), not the time of the
 * read: time the loop spends on other sessions before it reads does not
 * add to the latency.  The idle and session timeouts stay ev_timers: a
 * millisecond late does not matter to them.
 * Faults (4xx, 5xx, dropped connection, a session that stops answering)
 * come from a seeded PRNG through the core's decision hook, mid-DATA faults
 * (--fault-stage body) too: the core asks before it reads the first byte of
 * text, even when DATA and the text came in one read.  A stalled session
 * accepts no other message; it still reads (and discards) what the client
 * sends but never writes again; it ends when the client closes or at the idle
 * timeout (closed without a 421: it is not answering).  The counts and the digest of accepted messages
 * (workloads/mock_stats) are written as JSON on SIGTERM/SIGINT.
 *
 * The server closes first after QUIT's 221 (so TIME_WAIT lands here).
 * --profile FILE reads the server keys of a workload profile (lib/cli's
 * parser and checks; the model keys are left to the models); a flag
 * overrides the profile's key. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "cli.h"
#include "json.h"
#include "mock_fault.h"
#include "mock_stats.h"
#include "smtp_server.h"
#include "timerq.h"
#include "units.h"

#define container_of(p, type, field) ((type *)((char *)(p) - offsetof(type, field)))

/* Replies waiting for their due time (or for the socket to take them). */
struct outchunk {
    struct outchunk *next;     /* later replies */
    double due;                /* timerq_now() time at which it may be written */
    size_t len, off;           /* bytes in data / already written */
    char data[];               /* the reply bytes */
};

struct conn {
    ev_io rio;                 /* readable: feed the core */
    ev_io wio;                 /* writable: only while the socket is full */
    struct timerq_entry reply_timer; /* in `timers`: when the head of the queue is due */
    ev_timer idle_timer;       /* checks last_active against --idle-timeout */
    int fd;                    /* the client socket */
    struct smtp_server *srv;   /* the protocol core for this session */
    struct outchunk *head, *tail; /* replies not yet written, in order */
    int closing;               /* session over: close once the queue is empty */
    int stalled;               /* --stall struck: discard input and replies */
    size_t stall_keep;         /* output bytes the core had made before the
                                  stall (in the same read): still sent */
    ev_tstamp last_active;     /* loop time of the last read or write */
    ev_tstamp opened;          /* loop time of the accept, for --session-timeout */
    double arrived;            /* timerq_now() time the input being answered
                                  arrived (its receive timestamp), or of the
                                  accept or timeout that made the reply */
    size_t queued;             /* reply bytes in head..tail not yet written */
    uint64_t messages;         /* messages accepted on this session */
    struct conn *next_free;    /* in the pool (conn_pool) when closed */
};

/* Closed sessions kept for the next connections, each with its protocol
 * core (smtp_server_reset makes it new): no allocation per connection.  At
 * most POOL_MAX are kept (after a burst of 10,000 sessions the rest are
 * freed). */
#define POOL_MAX 256
static struct conn *conn_pool;
static size_t conn_pooled;

/* The pool is off under AddressSanitizer (compile time) and valgrind (run
 * time), as lib/deferred.c's free list: there a closed connection's memory
 * must really be freed, or a use after close goes unseen. */
#if defined(__SANITIZE_ADDRESS__)
#define CONN_POOL_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CONN_POOL_OFF 1
#endif
#endif
#ifndef CONN_POOL_OFF
#define CONN_POOL_OFF 0
#include <valgrind/valgrind.h>
#endif

static bool conn_pool_enabled(void)
{
#if CONN_POOL_OFF
    return false;
#else
    static int on = -1;         /* the mock is single-threaded */
    if (on < 0)
        on = RUNNING_ON_VALGRIND ? 0 : 1;
    return on;
#endif
}

/* A client that sends without reading its replies would make the reply
 * queue grow without bound: past QUEUE_HIGH bytes the session stops reading
 * (TCP flow control then holds the client) until the queue is written out. */
#define QUEUE_HIGH (256 * 1024)

/* Options, as given on the command line. */
static struct {
    char host[64];             /* --listen address, dotted quad */
    struct in_addr addr;       /* the same, parsed */
    int port;                  /* --listen port (0 = any free one), then the one bound */
    const char *hostname;      /* --hostname, in 220/250/221 replies */
    struct mock_fault_config fault; /* --latency, --jitter, --latency-dist, faults */
    uint64_t seed;             /* --seed */
    long long max_conns;       /* --max-conns */
    uint64_t max_size;         /* --max-size */
    long long max_rcpts;       /* --max-rcpts */
    double idle_timeout;       /* --idle-timeout, seconds */
    double session_timeout;    /* --session-timeout, seconds, 0 = none */
    double spin;               /* --spin, seconds of polling before a reply, 0 = none */
    double refuse_for;         /* --refuse-for, seconds: bound but not listening until then */
    const char *stats_path;    /* --stats FILE or NULL */
    const char *maildir;       /* --maildir DIR or NULL */
    const char *profile;       /* --profile FILE or NULL */
} opt;

/* Server-wide state (one thread: plain globals). */
static struct ev_loop *loop;
static ev_io listen_w;                 /* the listening socket */
static ev_timer accept_retry;          /* re-enables accept after EMFILE */
static struct timerq timers;           /* every session's reply_timer */
static struct mock_stats stats;
static struct mock_prng prng;
static uint64_t active;                /* sessions open now */
static char rbuf[128 * 1024];          /* every read lands here, then the core */
static int close_drained;              /* conn_finish after a read that emptied the socket */

/* ------------------------------------------------------------- sessions */

static void conn_close(struct conn *c)
{
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    timerq_remove(&timers, &c->reply_timer);
    ev_timer_stop(loop, &c->idle_timer);
    close(c->fd);
    for (struct outchunk *o = c->head, *n; o; o = n) {
        n = o->next;
        free(o);
    }
    stats.protocol_errors += smtp_server_protocol_errors(c->srv);
    mock_stats_conn_closed(&stats, c->messages);
    active--;
    if (conn_pooled < POOL_MAX && conn_pool_enabled()) {
        c->next_free = conn_pool;
        conn_pool = c;
        conn_pooled++;
        return;
    }
    smtp_server_free(c->srv);
    free(c);
}

/* Writes every due chunk (several at once when they are due together).
 * Returns -1 if the connection was closed. */
static int conn_write_due(struct conn *c)
{
    double now = timerq_now();
    while (c->head && c->head->due <= now) {
        struct iovec iov[16];
        int n = 0;
        size_t total = 0;
        for (struct outchunk *o = c->head; o && o->due <= now && n < 16; o = o->next, n++) {
            iov[n].iov_base = o->data + o->off;
            iov[n].iov_len = o->len - o->off;
            total += iov[n].iov_len;
        }
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            ev_io_start(loop, &c->wio);
            return 0;
        }
        if (w < 0) {           /* the client went away: nothing to tell it */
            conn_close(c);
            return -1;
        }
        c->last_active = ev_now(loop);
        c->queued -= (size_t)w;
        size_t left = (size_t)w;
        while (c->head && left >= c->head->len - c->head->off) {
            struct outchunk *o = c->head;
            left -= o->len - o->off;
            c->head = o->next;
            free(o);
        }
        if (c->head == NULL)
            c->tail = NULL;
        else
            c->head->off += left;
        if ((size_t)w < total) {
            ev_io_start(loop, &c->wio);   /* short write: wait for room */
            return 0;
        }
    }
    ev_io_stop(loop, &c->wio);
    if (c->queued < QUEUE_HIGH && !c->closing && !ev_is_active(&c->rio))
        ev_io_start(loop, &c->rio);   /* written out: read again */
    if (c->head) {
        timerq_add(&timers, &c->reply_timer, c->head->due);
    } else if (c->closing) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static void conn_enqueue(struct conn *c, const char *p, size_t n, double due)
{
    struct outchunk *o = malloc(sizeof *o + n);
    if (o == NULL)
        abort();
    if (c->tail && c->tail->due > due)
        due = c->tail->due;    /* never overtake an earlier reply */
    o->next = NULL;
    o->due = due;
    o->len = n;
    o->off = 0;
    memcpy(o->data, p, n);
    c->queued += n;
    if (c->queued >= QUEUE_HIGH)
        ev_io_stop(loop, &c->rio);    /* see QUEUE_HIGH */
    if (c->tail)
        c->tail->next = o;
    else
        c->head = o;
    c->tail = o;
}

/* Takes the core's output: written now when there is no latency and
 * nothing queued, else queued for its due time.  -1 if closed. */
static int conn_flush(struct conn *c)
{
    size_t n;
    const char *out = smtp_server_output(c->srv, &n);
    size_t all = n;
    if (c->stalled) {          /* replies earlier than the stall still go out */
        n = c->stall_keep;
        c->stall_keep = 0;
    }
    if (n > 0 && opt.fault.latency <= 0 && c->head == NULL) {
        ssize_t w = send(c->fd, out, n, MSG_NOSIGNAL | (c->closing && close_drained ? MSG_MORE : 0));
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            conn_close(c);
            return -1;
        }
        size_t done = w > 0 ? (size_t)w : 0;
        c->last_active = ev_now(loop);
        if (done < n)
            conn_enqueue(c, out + done, n - done, 0);
    } else if (n > 0) {
        /* From the arrival, not ev_now(): under load the loop time can be
         * many milliseconds old (the reply would leave early), and the read
         * late (it would leave late). */
        double d = mock_fault_latency(&opt.fault, &prng);
        conn_enqueue(c, out, n, c->arrived + d);
    }
    smtp_server_output_consume(c->srv, all);
    if (c->head == NULL) {
        if (c->closing) {
            conn_close(c);
            return -1;
        }
        return 0;
    }
    if (!timerq_pending(&c->reply_timer) && !ev_is_active(&c->wio))
        return conn_write_due(c);
    return 0;
}

static void conn_reply_cb(struct timerq_entry *e)
{
    conn_write_due(container_of(e, struct conn, reply_timer));
}

static void conn_writable_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l; (void)revents;
    conn_write_due(container_of(w, struct conn, wio));
}

/* The session is over: stop reading, close once the replies are out. */
static void conn_finish(struct conn *c)
{
    c->closing = 1;
    ev_io_stop(loop, &c->rio);
    ev_timer_stop(loop, &c->idle_timer);
    conn_flush(c);
}

/* When the bytes of a read arrived, on the timerq_now() time line: the
 * receive timestamp of the last segment read (SCM_TIMESTAMPNS, on
 * CLOCK_REALTIME, moved by its age), or now if there is none.  A step of the
 * real-time clock between the arrival and the read would move it by as much;
 * it is never later than now. */
static double arrival(struct msghdr *mh)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_TIMESTAMPNS)
            continue;
        struct timespec at, rt;
        memcpy(&at, CMSG_DATA(cm), sizeof at);
        /* The real-time clock first: a preemption between the two reads then
         * makes the arrival look later (the reply late), never earlier. */
        clock_gettime(CLOCK_REALTIME, &rt);
        double now = timerq_now();
        double age = (double)(rt.tv_sec - at.tv_sec) + (double)(rt.tv_nsec - at.tv_nsec) * 1e-9;
        return age > 0 ? now - age : now;
    }
    return timerq_now();
}

/* read() into rbuf that also sets c->arrived.  Without --latency replies
 * go out at once and the arrival time is not needed: a plain read, no
 * control message, no clock. */
static ssize_t conn_recv(struct conn *c)
{
    if (opt.fault.latency <= 0)
        return recv(c->fd, rbuf, sizeof rbuf, 0);
    union {
        char buf[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { rbuf, sizeof rbuf };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
    ssize_t n = recvmsg(c->fd, &mh, 0);
    if (n > 0)
        c->arrived = arrival(&mh);
    return n;
}

static void conn_readable_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l; (void)revents;
    struct conn *c = container_of(w, struct conn, rio);
    for (;;) {
        ssize_t n = conn_recv(c);
        if (n > 0) {
            c->last_active = ev_now(loop);
            if (c->stalled)
                continue;      /* not answering: read to keep buffers small */
            int r = smtp_server_feed(c->srv, rbuf, (size_t)n);
            /* A stall struck in this read: what the core did after it (a
             * QUIT read in the same bytes) is not acted on: the session
             * stays open and silent. */
            if (r == SMTP_SERVER_CLOSE && !c->stalled) {
                close_drained = (size_t)n < sizeof rbuf;
                conn_finish(c);
                close_drained = 0;
                return;
            }
            if (conn_flush(c) < 0 || (size_t)n < sizeof rbuf || !ev_is_active(&c->rio))
                return;
            continue;          /* a full buffer: there is probably more */
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        conn_close(c);         /* EOF or error: the client is gone */
        return;
    }
}

/* libev's idle-timeout recipe: one timer, re-armed only when it fires. */
static void conn_idle_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)revents;
    struct conn *c = container_of(w, struct conn, idle_timer);
    ev_tstamp now = ev_now(l);
    ev_tstamp left = opt.idle_timeout > 0 ? c->last_active + opt.idle_timeout - now : 1e30;
    ev_tstamp total = opt.session_timeout > 0 ? c->opened + opt.session_timeout - now : 1e30;
    if (left > 0 && total > 0) {
        w->repeat = left < total ? left : total;
        ev_timer_again(l, w);
        return;
    }
    stats.idle_timeouts++;
    /* Not answering, or the client does not read what is already queued
     * (a 421 would never arrive): just close. */
    if (c->stalled || ev_is_active(&c->wio)) {
        conn_close(c);
        return;
    }
    c->arrived = timerq_now();
    smtp_server_shutdown(c->srv, left <= 0 ? "Idle timeout, closing transmission channel"
                                            : "Session time limit, closing transmission channel");
    conn_finish(c);
}

/* ---------------------------------------------------------------- hooks */

static enum smtp_server_verdict mock_decide(void *arg, enum smtp_server_stage st,
                                            const struct smtp_server_message *m)
{
    struct conn *c = arg;
    /* Stalled earlier in this read (a pipelining client sent more): nothing
     * more is accepted, and the session is not closed either: a 4xx at
     * MAIL, RCPT or the final ".", whose reply is discarded like any now. */
    if (c->stalled)
        return st == SMTP_SERVER_STAGE_BODY ? SMTP_SERVER_VERDICT_ACCEPT : SMTP_SERVER_VERDICT_TEMPFAIL;
    if (!mock_fault_applies(&opt.fault, st, m))
        return SMTP_SERVER_VERDICT_ACCEPT;
    enum mock_outcome v = mock_fault_draw(&opt.fault, &prng);
    if (v == MOCK_TEMPFAIL) stats.tempfail_injected++;
    if (v == MOCK_PERMFAIL) stats.permfail_injected++;
    if (v == MOCK_DROP) stats.drops_injected++;
    if (v != MOCK_STALL)
        return (enum smtp_server_verdict)v;
    /* Stop answering.  At the greeting, after the 354 (body) and after the
     * final "." the core goes on as if accepted (at DATA the message is
     * stored, like --drop; at body it never is: see c->stalled above); at
     * MAIL and RCPT it refuses; either way its replies are discarded. */
    stats.stalls_injected++;
    c->stalled = 1;
    smtp_server_output(c->srv, &c->stall_keep);
    return st == SMTP_SERVER_STAGE_MAIL || st == SMTP_SERVER_STAGE_RCPT ? SMTP_SERVER_VERDICT_TEMPFAIL
                                                          : SMTP_SERVER_VERDICT_ACCEPT;
}

/* --maildir: one file per accepted message (blocking I/O, for inspection). */
static void maildir_write(const struct smtp_server_message *m)
{
    char *path;
    if (asprintf(&path, "%s/%06llu.eml", opt.maildir, (unsigned long long)stats.messages) < 0)
        abort();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, m->body, m->size) != (ssize_t)m->size)
        fprintf(stderr, "smtp-mock: cannot write %s: %s\n", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(path);
}

static void mock_message(void *arg, const struct smtp_server_message *m)
{
    struct conn *c = arg;
    c->messages++;
    mock_stats_message(&stats, m);
    if (opt.maildir)
        maildir_write(m);
}

/* ------------------------------------------------------------- listener */

static void conn_open(int fd)
{
    /* TCP_NODELAY comes from the listening socket (Linux copies it to the
     * accepted one): one system call less per connection. */
    if (opt.max_conns > 0 && active >= (uint64_t)opt.max_conns) {
        static const char msg[] = "421 Too many connections, try again later\r\n";
        ssize_t w = write(fd, msg, sizeof msg - 1);
        (void)w;               /* best effort: it is being turned away */
        close(fd);
        stats.rejected_connections++;
        return;
    }
    struct conn *c = conn_pool;
    if (c != NULL) {           /* a closed session's objects, made new */
        conn_pool = c->next_free;
        conn_pooled--;
        struct smtp_server *srv = c->srv;
        memset(c, 0, sizeof *c);
        smtp_server_reset(srv);
        c->srv = srv;          /* its hooks' argument is c still */
    } else {
        c = calloc(1, sizeof *c);
        struct smtp_server_config cfg = { .hostname = opt.hostname, .max_size = opt.max_size,
                                   .max_rcpts = (unsigned)opt.max_rcpts,
                                   .keep_body = opt.maildir != NULL, .counts = &stats.counts };
        struct smtp_server_hooks hooks = { mock_decide, mock_message, c };
        if (c == NULL || (c->srv = smtp_server_new(&cfg, &hooks)) == NULL) {
            free(c);
            close(fd);
            return;
        }
    }
    c->fd = fd;
    c->last_active = c->opened = ev_now(loop);
    /* The reply latency counts from here for the greeting (only with it). */
    c->arrived = opt.fault.latency > 0 ? timerq_now() : 0;
    ev_io_init(&c->rio, conn_readable_cb, fd, EV_READ);
    ev_io_init(&c->wio, conn_writable_cb, fd, EV_WRITE);
    timerq_entry_init(&c->reply_timer, conn_reply_cb);
    ev_init(&c->idle_timer, conn_idle_cb);
    active++;
    stats.connections++;
    if (active > stats.max_concurrent)
        stats.max_concurrent = active;
    if (smtp_server_greeting(c->srv) == SMTP_SERVER_CLOSE) {
        conn_finish(c);
        return;
    }
    ev_io_start(loop, &c->rio);
    if (opt.idle_timeout > 0 || opt.session_timeout > 0) {
        c->idle_timer.repeat = opt.idle_timeout > 0 && (opt.session_timeout <= 0 ||
                               opt.idle_timeout < opt.session_timeout)
                               ? opt.idle_timeout : opt.session_timeout;
        ev_timer_again(loop, &c->idle_timer);
    }
    conn_flush(c);
}

static void accept_retry_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)w; (void)revents;
    ev_io_start(l, &listen_w);
}

static void listen_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void)revents;
    for (int i = 0; i < 256; i++) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_open(fd);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Out of descriptors: pause accepting rather than spin. */
            fprintf(stderr, "smtp-mock: accept: %s (pausing 100 ms)\n", strerror(errno));
            ev_io_stop(l, w);
            ev_timer_set(&accept_retry, 0.1, 0);
            ev_timer_start(l, &accept_retry);
        }
        return;                /* EAGAIN, or a connection that vanished */
    }
}

/* Binds and listens; prints "listening on ADDR:PORT" and keeps the port
 * bound in opt.port (for params).  Exits 1 on failure (the address itself
 * was checked by parse_listen). */
static int listen_start(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port),
                              .sin_addr = opt.addr };
    socklen_t salen = sizeof sa;
    if (fd < 0) {
        fprintf(stderr, "smtp-mock: socket: %s\n", strerror(errno));
        exit(1);
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);    /* inherited by accept */
    if (opt.fault.latency > 0)     /* receive timestamps (see arrival()), inherited too */
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    /* --refuse-for: bound (the port is ours and printed) but not listening:
     * the kernel answers every connect with RST (ECONNREFUSED) until
     * refuse_over_cb calls listen(). */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        (opt.refuse_for <= 0 && listen(fd, 65535) < 0) ||
        getsockname(fd, (struct sockaddr *)&sa, &salen) < 0) {
        fprintf(stderr, "smtp-mock: cannot listen on %s:%d: %s\n", opt.host, opt.port,
                strerror(errno));
        exit(1);
    }
    opt.port = ntohs(sa.sin_port);
    printf("listening on %s:%d\n", opt.host, opt.port);
    fflush(stdout);
    return fd;
}

/* --refuse-for is over: listen, and accept from now on. */
static void refuse_over_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)w; (void)revents;
    if (listen(listen_w.fd, 65535) < 0) {
        fprintf(stderr, "smtp-mock: --refuse-for: cannot listen: %s\n", strerror(errno));
        ev_break(l, EVBREAK_ALL);
        return;
    }
    ev_io_start(l, &listen_w);
}

static void stop_cb(struct ev_loop *l, ev_signal *w, int revents)
{
    (void)w; (void)revents;
    ev_break(l, EVBREAK_ALL);
}

/* ------------------------------------------------------------- options */

static void usage(FILE *f)
{
    fprintf(f,
"usage: smtp-mock [options]\n"
"A single-threaded libev SMTP server for benchmarks: configurable reply latency,\n"
"injected failures, and exact counts of what it accepted.\n"
"\n"
"  --listen ADDR:PORT    address to listen on (default 127.0.0.1:2525): ADDR an IPv4\n"
"                        address as written (no leading zeros or short forms) or\n"
"                        localhost, PORT 0 to 65535 in plain digits (0 picks a free\n"
"                        port).\n"
"                        When ready, prints 'listening on ADDR:PORT' (the port\n"
"                        bound) as the first line on stdout.\n"
"  --hostname NAME       name in the 220/250/221 replies (default mailbench-mock):\n"
"                        letters, digits, '-' and '.', at most 255, or an address\n"
"                        literal like [192.0.2.1] or [IPv6:2001:db8::1]\n"
"  --latency DUR         delay before every reply, greeting included (e.g. 100ms,\n"
"                        250us, 1s; default 0), from the arrival of the command\n"
"                        (its kernel receive timestamp; the greeting: the accept)\n"
"                        to the write of the reply. A timer (timerfd, to the\n"
"                        microsecond), never a sleep.\n"
"  --jitter DUR          spread of the latency: uniform in LATENCY +/- JITTER\n"
"                        (implies --latency-dist uniform); at most LATENCY (a\n"
"                        larger one is refused, exit 2: the draws below 0 would\n"
"                        be cut and the mean would drift above LATENCY), so the\n"
"                        mean delay is LATENCY\n"
"  --latency-dist D      fixed | uniform | exp (exponential with mean LATENCY)\n"
"  --spin DUR            poll for the last DUR before each reply instead of\n"
"                        sleeping (e.g. 200us; default 0 = sleep): on a VM, where\n"
"                        a sleeping CPU wakes ~100 us late, replies leave within\n"
"                        a few us of their time. Costs CPU: up to DUR per reply,\n"
"                        a whole core once replies are due more often than that\n"
"  --seed N              seed of the PRNG behind faults and jitter (default 1)\n"
"  --tempfail P          probability per message of a 4xx reply (e.g. 0.05 or 5%%)\n"
"  --permfail P          probability per message of a 5xx reply\n"
"  --drop P              probability per message of closing the connection instead\n"
"                        of replying; at 'data' the message is accepted first (the\n"
"                        client's retry then shows up as a duplicate)\n"
"  --stall P             probability per message of no reply ever again: the\n"
"                        session stays open, input is read and ignored, until the\n"
"                        client gives up or --idle-timeout closes it (no 421); at\n"
"                        'data' the message is accepted first, like --drop\n"
"  --fault-stage S       where faults strike: greeting (421 / 554 / drop per\n"
"                        session), mail, rcpt (first recipient), data (after the\n"
"                        final '.'; default), body (mid-DATA: when message text\n"
"                        arrives after the 354, even in the same write as DATA,\n"
"                        before the final '.'; never accepted: drop closes,\n"
"                        tempfail is 421 and close; --permfail cannot be used there)\n"
"  --max-conns N         sessions at once; more get '421' and are closed (default\n"
"                        100000)\n"
"  --max-size SIZE       message size limit, advertised in EHLO (default 100MB)\n"
"  --max-rcpts N         recipients per message; more get 452 (default 1000)\n"
"  --idle-timeout DUR    a client silent this long gets 421 and is disconnected\n"
"                        (default 60s; 0 = never)\n"
"  --session-timeout DUR a session open this long gets 421 and is disconnected,\n"
"                        however busy (a client sending a byte a second; default\n"
"                        0 = never). Both count in idle_timeouts\n"
"  --profile FILE        read the server keys of a workload profile\n"
"                        (workloads/profiles/*.conf: latency, jitter, latency-dist,\n"
"                        tempfail, permfail, drop, stall, fault-stage, max-conns,\n"
"                        max-size, max-rcpts, idle-timeout, session-timeout); its\n"
"                        model keys are checked and ignored; a flag given here\n"
"                        overrides the profile's key. A bad profile exits 2 naming\n"
"                        FILE:LINE and the key\n"
"  --refuse-for DUR      refuse connections (connect gets ECONNREFUSED: the port\n"
"                        is bound but not listening) for DUR from the start, then\n"
"                        listen and serve normally: a server down for a while\n"
"                        that recovers (default 0)\n"
"  --stats FILE          on SIGTERM/SIGINT write the counts as JSON\n"
"                        (schema mailbench.server/1) to FILE, atomically\n"
"  --maildir DIR         write each accepted message to DIR/NNNNNN.eml (blocking\n"
"                        writes: for inspection, not for benchmarks)\n"
"  --help                this text\n"
"\n"
"Each option may be given once (a second one is an error: \"--latency given\n"
"twice\"). Message text must use CRLF line ends: a bare CR or LF never ends\n"
"DATA (only <CRLF>.<CRLF> does) and the message is refused with 554.\n"
"\n"
"The server closes the connection after its 221 reply to QUIT, so TIME_WAIT\n"
"sockets accumulate on the server side. It stops on SIGTERM or SIGINT, writes\n"
"--stats, prints a summary on stderr and exits 0. Bad option values exit 2.\n");
}

static void bad_value(const char *name, const char *value, const char *expected)
{
    fprintf(stderr, "smtp-mock: invalid --%s value '%s' (expected %s)\n", name, value, expected);
    fprintf(stderr, "Try 'smtp-mock --help'.\n");
    exit(2);
}

/* --stats is written only at exit and --maildir at every message: refuse at
 * start what could not be written then.  need_dir: PATH itself must be a
 * writable directory; else PATH must be a writable file or creatable. */
static void check_writable(const char *name, const char *path, int need_dir)
{
    struct stat st;
    char dir[4096];
    const char *why = NULL;
    if (*path == '\0') {
        why = "an empty name";
    } else if (stat(path, &st) == 0) {
        if (need_dir && !S_ISDIR(st.st_mode)) why = "not a directory";
        else if (!need_dir && S_ISDIR(st.st_mode)) why = "a directory";
        else if (access(path, need_dir ? W_OK | X_OK : W_OK) != 0) why = strerror(errno);
    } else if (need_dir) {
        why = strerror(errno);
    } else {
        const char *slash = strrchr(path, '/');
        snprintf(dir, sizeof dir, "%.*s", slash == NULL ? 1 : slash == path ? 1 : (int)(slash - path),
                 slash == NULL ? "." : path);
        if (access(dir, W_OK | X_OK) != 0) why = strerror(errno);
    }
    if (why) {
        fprintf(stderr, "smtp-mock: invalid --%s value '%s' (cannot write: %s)\n", name, path, why);
        fprintf(stderr, "Try 'smtp-mock --help'.\n");
        exit(2);
    }
}

/* --listen ADDR:PORT as units_parse_hostport reads it (an IPv4 address as
 * inet_pton reads it, or localhost; a decimal port).  Exits 2 naming the
 * value otherwise. */
static void parse_listen(const char *v)
{
    if (units_parse_hostport(v, opt.host, &opt.port) != 0 ||
        inet_pton(AF_INET, opt.host, &opt.addr) != 1)
        bad_value("listen", v, "ADDR:PORT like 127.0.0.1:2525: an IPv4 address as "
                  "written or localhost, a port from 0 to 65535");
}

/* --profile FILE: argv with the profile's server keys as flags in front
 * (those the command line also gives left out: the flag wins) and
 * --profile removed, so that one getopt loop below checks every value.
 * Exits 2 naming FILE:LINE and the key on a bad profile.  Returns argv
 * itself when there is no --profile. */
static char **apply_profile(int *argc, char **argv)
{
    const char *path = NULL;
    int at = -1, width = 0;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--profile") == 0 || strncmp(argv[i], "--profile=", 10) == 0) {
            if (path) {
                fprintf(stderr, "smtp-mock: --profile given twice\nTry 'smtp-mock --help'.\n");
                exit(2);
            }
            width = argv[i][9] == '=' ? 1 : 2;
            if (width == 2 && i + 1 >= *argc) {
                fprintf(stderr, "smtp-mock: option '--profile' requires an argument\n"
                        "Try 'smtp-mock --help'.\n");
                exit(2);
            }
            path = width == 1 ? argv[i] + 10 : argv[i + 1];
            at = i;
        }
    }
    if (path == NULL)
        return argv;
    static struct cli_options po;
    cli_defaults(&po, "smtp-mock");
    if (cli_load_profile(&po, path, stderr) != 0)
        exit(2);
    opt.profile = path;
    char **out = calloc((size_t)*argc + 64, sizeof *out);
    char *args = strdup(po.srv.args);
    if (out == NULL || args == NULL) {
        fprintf(stderr, "smtp-mock: out of memory\n");
        exit(1);
    }
    int n = 0;
    out[n++] = argv[0];
    char *save = NULL;
    for (char *w = strtok_r(args, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        char *value = strtok_r(NULL, " ", &save);
        int flagged = 0;
        size_t len = strlen(w);
        for (int i = 1; i < *argc && value; i++)
            if (i != at && strncmp(argv[i], w, len) == 0 && (argv[i][len] == '\0' || argv[i][len] == '='))
                flagged = 1;
        if (value && !flagged && n + 2 < *argc + 62) {
            out[n++] = w;
            out[n++] = value;
        }
    }
    for (int i = 1; i < *argc; i++)
        if (i < at || i >= at + width)
            out[n++] = argv[i];
    out[n] = NULL;
    *argc = n;
    return out;
}

static void parse_options(int argc, char **argv)
{
    argv = apply_profile(&argc, argv);
    static const struct option longopts[] = {
        { "listen", 1, NULL, 'l' }, { "hostname", 1, NULL, 'H' },
        { "latency", 1, NULL, 'L' }, { "jitter", 1, NULL, 'j' },
        { "latency-dist", 1, NULL, 'D' }, { "seed", 1, NULL, 's' },
        { "tempfail", 1, NULL, 't' }, { "permfail", 1, NULL, 'p' },
        { "drop", 1, NULL, 'd' }, { "fault-stage", 1, NULL, 'F' },
        { "stall", 1, NULL, 'T' }, { "session-timeout", 1, NULL, 'O' },
        { "max-conns", 1, NULL, 'c' }, { "max-size", 1, NULL, 'S' },
        { "max-rcpts", 1, NULL, 'r' }, { "idle-timeout", 1, NULL, 'i' },
        { "stats", 1, NULL, 'o' }, { "maildir", 1, NULL, 'm' }, { "spin", 1, NULL, 'P' },
        { "refuse-for", 1, NULL, 'R' },
        { "help", 0, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    /* The value each option was first given, to refuse a second one: "the
     * last wins" would silently drop a value a script or a user meant. */
    const char *given[sizeof longopts / sizeof longopts[0]] = { 0 };
    int dist_given = 0, ch, idx;
    const char *jitter = NULL;
    long long n;
    const char *listen = "127.0.0.1:2525";
    opt.hostname = "mailbench-mock";
    opt.seed = 1;
    opt.max_conns = 100000;
    opt.max_size = 100ULL << 20;
    opt.max_rcpts = 1000;
    opt.idle_timeout = 60;
    opt.fault.stage = SMTP_SERVER_STAGE_DATA;
    opt.fault.dist = MOCK_DIST_FIXED;
    while ((idx = -1, ch = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
        const char *v = optarg;
        if (idx >= 0 && v != NULL) {
            if (given[idx]) {
                fprintf(stderr, "smtp-mock: --%s given twice ('%s' and '%s')\n"
                        "Try 'smtp-mock --help'.\n", longopts[idx].name, given[idx], v);
                exit(2);
            }
            given[idx] = v;
        }
        switch (ch) {
        case 'l': listen = v; break;
        case 'H': if (!smtp_server_hostname_valid(v))
                      bad_value("hostname", v, "letters, digits, '-' and '.', at most 255, "
                                "or an address literal like [192.0.2.1]");
                  opt.hostname = v; break;
        case 'L': if (units_parse_duration(v, &opt.fault.latency)) bad_value("latency", v, "a duration like 100ms"); break;
        case 'j': if (units_parse_duration(v, &opt.fault.jitter)) bad_value("jitter", v, "a duration like 10ms");
                  jitter = v;
                  if (!dist_given) opt.fault.dist = MOCK_DIST_UNIFORM;
                  break;
        case 'D': if (mock_fault_parse_dist(v, &opt.fault.dist)) bad_value("latency-dist", v, "fixed, uniform or exp");
                  dist_given = 1; break;
        case 's': if (units_parse_count(v, 0, INT64_MAX, &n)) bad_value("seed", v, "a non-negative integer");
                  opt.seed = (uint64_t)n; break;
        case 't': if (units_parse_prob(v, &opt.fault.tempfail)) bad_value("tempfail", v, "a probability in [0,1] or a percentage"); break;
        case 'p': if (units_parse_prob(v, &opt.fault.permfail)) bad_value("permfail", v, "a probability in [0,1] or a percentage"); break;
        case 'd': if (units_parse_prob(v, &opt.fault.drop)) bad_value("drop", v, "a probability in [0,1] or a percentage"); break;
        case 'T': if (units_parse_prob(v, &opt.fault.stall)) bad_value("stall", v, "a probability in [0,1] or a percentage"); break;
        case 'F': if (mock_fault_parse_stage(v, &opt.fault.stage)) bad_value("fault-stage", v, "greeting, mail, rcpt, data or body"); break;
        case 'c': if (units_parse_count(v, 1, 10000000, &opt.max_conns)) bad_value("max-conns", v, "a count from 1 to 10000000"); break;
        case 'S': if (units_parse_size(v, &opt.max_size) || opt.max_size == 0) bad_value("max-size", v, "a size like 10MB, at least 1"); break;
        case 'r': if (units_parse_count(v, 1, 100000, &opt.max_rcpts)) bad_value("max-rcpts", v, "a count from 1 to 100000"); break;
        case 'i': if (units_parse_duration(v, &opt.idle_timeout)) bad_value("idle-timeout", v, "a duration like 60s, or 0"); break;
        case 'O': if (units_parse_duration(v, &opt.session_timeout)) bad_value("session-timeout", v, "a duration like 300s, or 0"); break;
        case 'P': if (units_parse_duration(v, &opt.spin) || opt.spin > 0.1)
                      bad_value("spin", v, "a duration like 200us, at most 100ms, or 0");
                  break;
        case 'R':
            if (units_parse_duration(v, &opt.refuse_for) || opt.refuse_for > 3600)
                bad_value("refuse-for", v, "a duration like 500ms, at most 1h");
            break;
        case 'o': opt.stats_path = v; break;
        case 'm': opt.maildir = v; break;
        case 'h': usage(stdout); exit(0);
        default:  fprintf(stderr, "Try 'smtp-mock --help'.\n"); exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "smtp-mock: unexpected argument '%s'\nTry 'smtp-mock --help'.\n", argv[optind]);
        exit(2);
    }
    parse_listen(listen);
    if (opt.fault.dist == MOCK_DIST_UNIFORM && opt.fault.jitter > opt.fault.latency) {
        char want[96];
        snprintf(want, sizeof want, "at most --latency, %gms: the mean delay must stay "
                 "LATENCY", opt.fault.latency * 1e3);
        bad_value("jitter", jitter, want);
    }
    if (opt.stats_path)
        check_writable("stats", opt.stats_path, 0);
    if (opt.maildir)
        check_writable("maildir", opt.maildir, 1);
    if (opt.fault.tempfail + opt.fault.permfail + opt.fault.drop + opt.fault.stall > 1.0 + 1e-9) {
        fprintf(stderr, "smtp-mock: --tempfail + --permfail + --drop + --stall add up to more than 1\n");
        exit(2);
    }
    if (opt.fault.stage == MOCK_STAGE_BODY && opt.fault.permfail > 0) {
        fprintf(stderr, "smtp-mock: --permfail cannot be used with --fault-stage body "
                "(there is no 5xx reply in the middle of DATA)\nTry 'smtp-mock --help'.\n");
        exit(2);
    }
}

/* The "params" object of the stats JSON (malloc'd; NULL if out of memory).
 * Every string goes through json_write_string: a --maildir may hold any
 * byte. */
static char *params_json(void)
{
    char *buf = NULL, listen[96];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return NULL;
    snprintf(listen, sizeof listen, "%s:%d", opt.host, opt.port);
    fputs("{\"listen\": ", f);
    json_write_string(f, listen);
    fputs(", \"hostname\": ", f);
    json_write_string(f, opt.hostname);
    fprintf(f, ", \"latency_s\": %.6f, \"jitter_s\": %.6f, \"latency_dist\": ",
            opt.fault.latency, opt.fault.jitter);
    json_write_string(f, mock_fault_dist_name(opt.fault.dist));
    fprintf(f, ", \"seed\": %llu, \"tempfail\": %g, \"permfail\": %g, \"drop\": %g, "
            "\"stall\": %g, \"fault_stage\": ", (unsigned long long)opt.seed,
            opt.fault.tempfail, opt.fault.permfail, opt.fault.drop, opt.fault.stall);
    json_write_string(f, mock_fault_stage_name(opt.fault.stage));
    fprintf(f, ", \"max_conns\": %lld, \"max_size\": %llu, \"max_rcpts\": %lld, "
            "\"idle_timeout_s\": %.3f, \"session_timeout_s\": %.3f, \"spin_s\": %.6f, "
            "\"refuse_for_s\": %.6f, \"maildir\": ", opt.max_conns, (unsigned long long)opt.max_size,
            opt.max_rcpts, opt.idle_timeout, opt.session_timeout, opt.spin, opt.refuse_for);
    json_write_string(f, opt.maildir);
    fputs(", \"profile\": ", f);
    json_write_string(f, opt.profile);
    fputs("}", f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* As many descriptors as the hard limit allows: 10,000 sessions need them. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    mock_stats_init(&stats);
    mock_prng_seed(&prng, opt.seed);
    loop = EV_DEFAULT;
    ev_signal sigterm, sigint;
    ev_signal_init(&sigterm, stop_cb, SIGTERM);
    ev_signal_init(&sigint, stop_cb, SIGINT);
    ev_signal_start(loop, &sigterm);
    ev_signal_start(loop, &sigint);
    ev_init(&accept_retry, accept_retry_cb);
    if (timerq_init(&timers, loop) != 0) {
        fprintf(stderr, "smtp-mock: timerfd_create: %s\n", strerror(errno));
        return 1;
    }
    timerq_set_spin(&timers, opt.spin);
    ev_io_init(&listen_w, listen_cb, listen_start(), EV_READ);
    ev_timer refuse_over;
    if (opt.refuse_for > 0) {
        ev_timer_init(&refuse_over, refuse_over_cb, opt.refuse_for, 0);
        ev_timer_start(loop, &refuse_over);
    } else {
        ev_io_start(loop, &listen_w);
    }
    ev_tstamp start = ev_time();

    ev_run(loop, 0);
    timerq_destroy(&timers);

    char *params = params_json(), line[1024];
    if (opt.stats_path && (params == NULL ||
                           mock_stats_write(&stats, opt.stats_path, params, ev_time() - start) < 0))
        fprintf(stderr, "smtp-mock: cannot write %s: %s\n", opt.stats_path, strerror(errno));
    free(params);
    mock_stats_summary(&stats, line, sizeof line);
    fprintf(stderr, "%s\n", line);
    mock_stats_free(&stats);
    return 0;
}
