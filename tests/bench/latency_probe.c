/* latency_probe — how long does a client wait for each SMTP reply?
 *
 * A libev client that opens N sessions to a server (spread over --ramp),
 * and in each runs transactions (MAIL, RCPT, DATA, the message, RSET) one
 * command at a time until --duration has passed, then QUITs.  It timestamps
 * each command when written and each reply when its last line arrives, and
 * prints the delay percentiles: with `smtp-mock --latency 100ms` every
 * reply should take 100 ms plus a little, whatever N is.  The greeting is
 * reported apart: it is timed from connect(), which also includes waiting
 * in the server's accept queue.
 *
 * Two arrival times per reply: when the probe read it ("replies": what an
 * application sees, the probe's own wake-up and queueing included) and when
 * it reached the probe's socket ("replies_kernel": the kernel's receive
 * timestamp, SO_TIMESTAMPNS, of the last segment read: the server's delay
 * alone, as a packet capture would time it).  Both are timed from just
 * before the command's write().
 *
 *   latency_probe [--connect HOST:PORT] [--sessions N] [--duration DUR]
 *                 [--ramp DUR] [--size BYTES] [--think DUR] [--busy-poll]
 * --busy-poll keeps the probe's loop from ever sleeping (a core at 100%), so
 * that "replies" is not delayed by the probe's own wake-up (~100 us on a VM).
 *
 *   latency_probe --timer-floor DUR [--duration DUR]
 * measures the machine instead: it sleeps DUR on a timerfd (in epoll, as a
 * server would) again and again for --duration and prints how late it woke,
 * "timer_floor n=... p50_us=... p99_us=...": no server that sleeps until a
 * reply is due can be more exact than that on this machine.  With
 * --busy-poll it watches the clock instead (no timer, no sleep): what is
 * left is the CPU being taken away (by the hypervisor, on a VM).
 * --think pauses each session between transactions, to offer less load than
 * the machine can carry: on 2 cores, 10,000 sessions sending back to back
 * (~90,000 replies/s, probe and server together) saturate the CPU, and then
 * no timer can hold the latency.
 * Output: "sessions=N errors=N cpu_s=S" (the probe's own CPU time), then one
 * line per kind, "replies n=... p50_ms=... p99_ms=... max_ms=...". */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "units.h"

#define container_of(p, type, field) ((type *)((char *)(p) - offsetof(type, field)))

/* The steps of a session, each a command and its expected reply class. */
enum step { S_GREETING, S_EHLO, S_MAIL, S_RCPT, S_DATA, S_BODY, S_RSET, S_QUIT, S_DONE };

struct session {
    ev_io io;                  /* readable (or writable while connecting) */
    ev_timer think;            /* pause between transactions (--think) */
    int fd;                    /* the socket */
    enum step step;            /* the reply being waited for */
    ev_tstamp sent;            /* when the command (or connect) went out */
    ev_tstamp rx;              /* receive timestamp of the last read (ev_time's
                                  clock, CLOCK_REALTIME), or when it was read */
    char buf[4096];            /* partial reply line */
    size_t len;                /* bytes in buf */
};

/* A growable array of delays in seconds. */
struct samples { double *v; size_t n, cap; };

static struct ev_loop *loop;
static struct sockaddr_in addr;
static ev_tstamp end_time;            /* stop starting transactions after this */
static struct samples replies, replies_kernel, greetings;
static long errors, open_sessions, to_start;
static char *message;                 /* the DATA text, ending in CRLF.CRLF */
static size_t message_len;
static double ramp;                   /* seconds over which sessions start */
static double think;                  /* seconds between transactions */
static long nsessions;

static void add(struct samples *s, double d)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (s->v == NULL)
            abort();
    }
    s->v[s->n++] = d;
}

static void session_end(struct session *c, int failed)
{
    if (failed)
        errors++;
    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->think);
    close(c->fd);
    free(c);
    if (--open_sessions == 0 && to_start == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void send_cmd(struct session *c, const char *p, size_t n, enum step next);

/* After --think: the next transaction (or QUIT when time is up). */
static void session_think_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l; (void)revents;
    struct session *c = container_of(w, struct session, think);
    if (ev_time() >= end_time)
        send_cmd(c, "QUIT\r\n", 6, S_QUIT);
    else
        send_cmd(c, "MAIL FROM:<probe@example.org>\r\n", 31, S_MAIL);
}

static void send_cmd(struct session *c, const char *p, size_t n, enum step next)
{
    /* Timed before the write: on loopback the server's kernel has the bytes
     * (and time-stamps them) inside write(), and a probe preempted before
     * write() returns would time the reply as early as that. */
    c->sent = ev_time();
    /* Small commands on an idle socket: a short write means trouble. */
    if (write(c->fd, p, n) != (ssize_t)n) {
        session_end(c, 1);
        return;
    }
    c->step = next;
}

/* A complete reply (its last line) arrived for c->step. */
static void on_reply(struct session *c, int code)
{
    ev_tstamp now = ev_time();
    add(c->step == S_GREETING ? &greetings : &replies, now - c->sent);
    if (c->step != S_GREETING)
        add(&replies_kernel, c->rx - c->sent);
    int ok = (c->step == S_DATA) ? code == 354 : (code >= 200 && code < 300);
    if (!ok) {
        session_end(c, 1);
        return;
    }
    switch (c->step) {
    case S_GREETING: send_cmd(c, "EHLO probe\r\n", 12, S_EHLO); break;
    case S_EHLO:
    case S_RSET:
        if (think > 0 && now < end_time) {
            ev_timer_set(&c->think, think, 0);
            ev_timer_start(loop, &c->think);
        } else if (now >= end_time)
            send_cmd(c, "QUIT\r\n", 6, S_QUIT);
        else
            send_cmd(c, "MAIL FROM:<probe@example.org>\r\n", 31, S_MAIL);
        break;
    case S_MAIL: send_cmd(c, "RCPT TO:<sink@example.org>\r\n", 28, S_RCPT); break;
    case S_RCPT: send_cmd(c, "DATA\r\n", 6, S_DATA); break;
    case S_DATA: send_cmd(c, message, message_len, S_BODY); break;
    case S_BODY: send_cmd(c, "RSET\r\n", 6, S_RSET); break;
    case S_QUIT: session_end(c, 0); break;
    case S_DONE: break;
    }
}

static void session_read_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l; (void)revents;
    struct session *c = container_of(w, struct session, io);
    union {
        char buf[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { c->buf + c->len, sizeof c->buf - c->len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
    ssize_t n = recvmsg(c->fd, &mh, 0);
    c->rx = ev_time();
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); n > 0 && cm; cm = CMSG_NXTHDR(&mh, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof ts);
            c->rx = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        }
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        session_end(c, c->step != S_QUIT);
        return;
    }
    c->len += (size_t)n;
    char *nl;
    while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
        size_t linelen = (size_t)(nl - c->buf) + 1;
        int last = linelen >= 4 && c->buf[3] != '-';
        int code = atoi(c->buf);
        memmove(c->buf, nl + 1, c->len - linelen);
        c->len -= linelen;
        if (last) {
            on_reply(c, code);
            return;            /* c may be freed; one reply at a time anyway */
        }
    }
    if (c->len == sizeof c->buf)
        session_end(c, 1);
}

static void session_connected_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void)revents;
    struct session *c = container_of(w, struct session, io);
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        session_end(c, 1);
        return;
    }
    ev_io_stop(l, w);
    ev_io_init(w, session_read_cb, c->fd, EV_READ);
    ev_io_start(l, w);
}

static void session_start(void)
{
    struct session *c = calloc(1, sizeof *c);
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("latency_probe: socket");
        exit(1);
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    open_sessions++;
    c->step = S_GREETING;
    ev_init(&c->think, session_think_cb);
    c->sent = ev_time();
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        session_end(c, 1);
        return;
    }
    ev_io_init(&c->io, session_connected_cb, c->fd, EV_WRITE);
    ev_io_start(loop, &c->io);
}

/* Starts the next batch of sessions: all of them over `ramp` seconds. */
static void ramp_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)revents;
    long batch = ramp > 0 ? nsessions / (long)(ramp * 100) + 1 : nsessions;
    for (long i = 0; i < batch && to_start > 0; i++, to_start--)
        session_start();
    if (to_start == 0)
        ev_timer_stop(l, w);
}

static void idle_cb(struct ev_loop *l, ev_idle *w, int revents)
{
    (void)l; (void)w; (void)revents;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, struct samples *s)
{
    if (s->n == 0) {
        printf("%s n=0\n", what);
        return;
    }
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += s->v[i];
    printf("%s n=%zu min_ms=%.2f p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f max_ms=%.2f mean_ms=%.2f\n",
           what, s->n, s->v[0] * 1e3, s->v[s->n / 2] * 1e3, s->v[(size_t)(s->n * 0.99)] * 1e3,
           s->v[(size_t)(s->n * 0.999)] * 1e3, s->v[s->n - 1] * 1e3, sum / (double)s->n * 1e3);
}

/* --timer-floor: how late a timerfd of `delay` wakes a process in epoll. */
static void timer_floor(double delay, double duration, int busy_poll)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, 0), ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN };
    if (fd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        perror("latency_probe: timerfd");
        exit(1);
    }
    struct samples late = { 0 };
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double end = (double)t.tv_sec + (double)t.tv_nsec * 1e-9 + duration;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        double due = (double)t.tv_sec + (double)t.tv_nsec * 1e-9 + delay;
        if (due > end)
            break;
        struct itimerspec its = { .it_value = { .tv_sec = (time_t)due,
                                                .tv_nsec = (long)((due - (double)(time_t)due) * 1e9) } };
        uint64_t ticks;
        if (busy_poll) {       /* no timer at all: watch the clock */
            do
                clock_gettime(CLOCK_MONOTONIC, &t);
            while ((double)t.tv_sec + (double)t.tv_nsec * 1e-9 < due);
        } else {
            if (timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL) < 0 ||
                epoll_wait(ep, &ev, 1, -1) != 1 || read(fd, &ticks, sizeof ticks) != sizeof ticks)
                continue;
            clock_gettime(CLOCK_MONOTONIC, &t);
        }
        add(&late, (double)t.tv_sec + (double)t.tv_nsec * 1e-9 - due);
    }
    if (late.n == 0) {
        printf("timer_floor n=0\n");
        return;
    }
    qsort(late.v, late.n, sizeof *late.v, cmp_double);
    printf("timer_floor n=%zu delay_ms=%.3f p50_us=%.1f p99_us=%.1f max_us=%.1f\n", late.n,
           delay * 1e3, late.v[late.n / 2] * 1e6, late.v[(size_t)(late.n * 0.99)] * 1e6,
           late.v[late.n - 1] * 1e6);
}

static void usage_exit(const char *name, const char *value)
{
    fprintf(stderr, "latency_probe: invalid --%s value '%s'\n", name, value);
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "connect", 1, NULL, 'c' }, { "sessions", 1, NULL, 'n' },
        { "duration", 1, NULL, 'd' }, { "ramp", 1, NULL, 'r' },
        { "size", 1, NULL, 's' }, { "think", 1, NULL, 't' },
        { "busy-poll", 0, NULL, 'b' }, { "timer-floor", 1, NULL, 'f' }, { NULL, 0, NULL, 0 },
    };
    char host[64] = "127.0.0.1";
    int port = 2525, ch, busy_poll = 0;
    double floor_delay = 0;
    double duration = 3;
    uint64_t size = 1024;
    ramp = 1;
    nsessions = 100;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        long long n;
        switch (ch) {
        case 'c': if (units_parse_hostport(optarg, host, &port)) usage_exit("connect", optarg); break;
        case 'n': if (units_parse_count(optarg, 1, 100000, &n)) usage_exit("sessions", optarg);
                  nsessions = (long)n; break;
        case 'd': if (units_parse_duration(optarg, &duration)) usage_exit("duration", optarg); break;
        case 'r': if (units_parse_duration(optarg, &ramp)) usage_exit("ramp", optarg); break;
        case 't': if (units_parse_duration(optarg, &think)) usage_exit("think", optarg); break;
        case 'b': busy_poll = 1; break;
        case 'f': if (units_parse_duration(optarg, &floor_delay) || floor_delay <= 0)
                      usage_exit("timer-floor", optarg);
                  break;
        case 's': if (units_parse_size(optarg, &size) || size > (64u << 20)) usage_exit("size", optarg); break;
        default:  fprintf(stderr, "usage: latency_probe [--connect H:P] [--sessions N] "
                          "[--duration DUR] [--ramp DUR] [--size BYTES] [--think DUR] "
                          "[--busy-poll] | --timer-floor DUR [--duration DUR] [--busy-poll]\n"); exit(2);
        }
    }
    if (floor_delay > 0) {
        timer_floor(floor_delay, duration, busy_poll);
        return 0;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, host, &addr.sin_addr);
    /* A message of `size` bytes: a header, then lines of 'x'. */
    message = malloc(size + 256);
    message_len = (size_t)snprintf(message, 256, "Subject: probe\r\n\r\n");
    while (message_len + 80 < size) {
        memset(message + message_len, 'x', 76);
        memcpy(message + message_len + 76, "\r\n", 2);
        message_len += 78;
    }
    memcpy(message + message_len, ".\r\n", 3);
    message_len += 3;

    loop = EV_DEFAULT;
    end_time = ev_time() + ramp + duration;
    to_start = nsessions;
    ev_timer ramp_timer;
    ev_timer_init(&ramp_timer, ramp_cb, 0, 0.01);
    ev_timer_start(loop, &ramp_timer);
    ev_idle spin;              /* --busy-poll: an idle watcher: epoll never sleeps */
    ev_idle_init(&spin, idle_cb);
    if (busy_poll) {
        ev_idle_start(loop, &spin);
        ev_unref(loop);        /* it must not keep ev_run going on its own */
    }
    ev_run(loop, 0);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("sessions=%ld errors=%ld cpu_s=%.3f\n", nsessions, errors,
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6);
    report("replies", &replies);
    report("replies_kernel", &replies_kernel);
    report("greeting", &greetings);
    return errors ? 1 : 0;
}
