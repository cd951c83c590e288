/* smtp-mock — the SMTP server every mailbench benchmark talks to.
 *
 * One thread, one libev loop; it never blocks and never sleeps.  Each
 * session is a lib/smtp_server core fed from one shared read buffer.  Reply
 * latency is an ev_timer per connection: the replies produced by one read
 * are queued with a due time (now + latency draw, never earlier than the
 * reply before them, so order is kept) and written together when due.
 * Faults (4xx, 5xx, dropped connection, a session that stops answering)
 * come from a seeded PRNG through the core's decision hook; mid-DATA faults
 * (--fault-stage body) are drawn here, before the message text reaches the
 * core.  A stalled session still reads (and discards) what the client sends
 * but never writes again; it ends when the client closes or at the idle
 * timeout (closed without a 421: it is not answering).  The counts and the digest of accepted messages
 * (workloads/mock_stats) are written as JSON on SIGTERM/SIGINT.
 *
 * The server closes first after QUIT's 221 (so TIME_WAIT lands here).
 * Not done yet: --profile FILE (option sets by name). */
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
#include <unistd.h>

#include <ev.h>

#include "mock_fault.h"
#include "mock_stats.h"
#include "smtp_server.h"
#include "units.h"

#define container_of(p, type, field) ((type *)((char *)(p) - offsetof(type, field)))

/* Replies waiting for their due time (or for the socket to take them). */
typedef struct outchunk {
    struct outchunk *next;     /* later replies */
    ev_tstamp due;             /* loop time at which it may be written */
    size_t len, off;           /* bytes in data / already written */
    char data[];               /* the reply bytes */
} outchunk;

typedef struct conn {
    ev_io rio;                 /* readable: feed the core */
    ev_io wio;                 /* writable: only while the socket is full */
    ev_timer reply_timer;      /* fires when the head of the queue is due */
    ev_timer idle_timer;       /* checks last_active against --idle-timeout */
    int fd;                    /* the client socket */
    smtp_server *srv;          /* the protocol core for this session */
    outchunk *head, *tail;     /* replies not yet written, in order */
    int closing;               /* session over: close once the queue is empty */
    int stalled;               /* --stall struck: discard input and replies */
    int body_drawn;            /* --fault-stage body: drawn for this message */
    ev_tstamp last_active;     /* loop time of the last read or write */
    ev_tstamp opened;          /* loop time of the accept, for --session-timeout */
    size_t queued;             /* reply bytes in head..tail not yet written */
} conn;

/* A client that sends without reading its replies would make the reply
 * queue grow without bound: past QUEUE_HIGH bytes the session stops reading
 * (TCP flow control then holds the client) until the queue is written out. */
#define QUEUE_HIGH (256 * 1024)

/* Options, as given on the command line. */
static struct {
    char host[64];             /* --listen address */
    int port;                  /* --listen port, 0 = any free one */
    const char *listen_text;   /* --listen as typed, for params */
    const char *hostname;      /* --hostname, in 220/250/221 replies */
    mock_fault_config fault;   /* --latency, --jitter, --latency-dist, faults */
    uint64_t seed;             /* --seed */
    long long max_conns;       /* --max-conns */
    uint64_t max_size;         /* --max-size */
    long long max_rcpts;       /* --max-rcpts */
    double idle_timeout;       /* --idle-timeout, seconds */
    double session_timeout;    /* --session-timeout, seconds, 0 = none */
    const char *stats_path;    /* --stats FILE or NULL */
    const char *maildir;       /* --maildir DIR or NULL */
} opt;

/* Server-wide state (one thread: plain globals). */
static struct ev_loop *loop;
static ev_io listen_w;                 /* the listening socket */
static ev_timer accept_retry;          /* re-enables accept after EMFILE */
static mock_stats stats;
static mock_prng prng;
static uint64_t active;                /* sessions open now */
static char rbuf[128 * 1024];          /* every read lands here, then the core */

/* ------------------------------------------------------------- sessions */

static void conn_close(conn *c)
{
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    ev_timer_stop(loop, &c->reply_timer);
    ev_timer_stop(loop, &c->idle_timer);
    close(c->fd);
    for (outchunk *o = c->head, *n; o; o = n) {
        n = o->next;
        free(o);
    }
    stats.protocol_errors += smtp_server_protocol_errors(c->srv);
    smtp_server_free(c->srv);
    free(c);
    active--;
}

/* Writes every due chunk (several at once when they are due together).
 * Returns -1 if the connection was closed. */
static int conn_write_due(conn *c)
{
    ev_tstamp now = ev_now(loop) + 1e-6;
    while (c->head && c->head->due <= now) {
        struct iovec iov[16];
        int n = 0;
        size_t total = 0;
        for (outchunk *o = c->head; o && o->due <= now && n < 16; o = o->next, n++) {
            iov[n].iov_base = o->data + o->off;
            iov[n].iov_len = o->len - o->off;
            total += iov[n].iov_len;
        }
        ssize_t w = writev(c->fd, iov, n);
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
            outchunk *o = c->head;
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
        ev_timer_stop(loop, &c->reply_timer);
        ev_timer_set(&c->reply_timer, c->head->due - ev_now(loop), 0);
        ev_timer_start(loop, &c->reply_timer);
    } else if (c->closing) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static void conn_enqueue(conn *c, const char *p, size_t n, ev_tstamp due)
{
    outchunk *o = malloc(sizeof *o + n);
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
static int conn_flush(conn *c)
{
    size_t n;
    const char *out = smtp_server_output(c->srv, &n);
    if (c->stalled) {          /* replies earlier than the stall still go out */
        smtp_server_output_consume(c->srv, n);
        n = 0;
    }
    if (n > 0 && opt.fault.latency <= 0 && c->head == NULL) {
        ssize_t w = write(c->fd, out, n);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            conn_close(c);
            return -1;
        }
        size_t done = w > 0 ? (size_t)w : 0;
        c->last_active = ev_now(loop);
        if (done < n)
            conn_enqueue(c, out + done, n - done, 0);
        smtp_server_output_consume(c->srv, n);
    } else if (n > 0) {
        /* ev_time(), not ev_now(): under load the loop time can be many
         * milliseconds old, and the reply would leave early. */
        double d = mock_fault_latency(&opt.fault, &prng);
        conn_enqueue(c, out, n, ev_time() + d);
        smtp_server_output_consume(c->srv, n);
    }
    if (c->head == NULL) {
        if (c->closing) {
            conn_close(c);
            return -1;
        }
        return 0;
    }
    if (!ev_is_active(&c->reply_timer) && !ev_is_active(&c->wio))
        return conn_write_due(c);
    return 0;
}

static void conn_reply_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l; (void)revents;
    conn_write_due(container_of(w, conn, reply_timer));
}

static void conn_writable_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l; (void)revents;
    conn_write_due(container_of(w, conn, wio));
}

static int body_fault(conn *c);

/* The session is over: stop reading, close once the replies are out. */
static void conn_finish(conn *c)
{
    c->closing = 1;
    ev_io_stop(loop, &c->rio);
    ev_timer_stop(loop, &c->idle_timer);
    conn_flush(c);
}

static void conn_readable_cb(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l; (void)revents;
    conn *c = container_of(w, conn, rio);
    for (;;) {
        ssize_t n = read(c->fd, rbuf, sizeof rbuf);
        if (n > 0) {
            c->last_active = ev_now(loop);
            if (c->stalled)
                continue;      /* not answering: read to keep buffers small */
            if (opt.fault.stage == MOCK_STAGE_BODY && body_fault(c) < 0)
                return;
            if (c->stalled)
                continue;
            int r = smtp_server_feed(c->srv, rbuf, (size_t)n);
            if (!smtp_server_in_data(c->srv))
                c->body_drawn = 0;     /* the next message gets its own draw */
            if (r == SMTP_SERVER_CLOSE) {
                conn_finish(c);
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
    conn *c = container_of(w, conn, idle_timer);
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
    smtp_server_shutdown(c->srv, left <= 0 ? "Idle timeout, closing transmission channel"
                                            : "Session time limit, closing transmission channel");
    conn_finish(c);
}

/* --fault-stage body: the first message text after a 354 draws a fault
 * before the core sees it, so a dropped or 421'd message is never accepted.
 * Returns -1 if the connection was closed. */
static int body_fault(conn *c)
{
    if (c->body_drawn || !smtp_server_in_data(c->srv))
        return 0;
    c->body_drawn = 1;
    switch (mock_fault_draw(&opt.fault, &prng)) {
    case MOCK_DROP:
        stats.drops_injected++;
        conn_close(c);         /* unread text left: the kernel sends a RST */
        return -1;
    case MOCK_STALL:
        stats.stalls_injected++;
        c->stalled = 1;
        return 0;
    case MOCK_TEMPFAIL:
        stats.tempfail_injected++;
        smtp_server_shutdown(c->srv, "Service not available, closing transmission channel");
        conn_finish(c);
        return -1;
    default:                   /* permfail is refused with this stage */
        return 0;
    }
}

/* ---------------------------------------------------------------- hooks */

static smtp_server_verdict mock_decide(void *arg, smtp_server_stage st,
                                       const smtp_server_message *m)
{
    conn *c = arg;
    if (!mock_fault_applies(&opt.fault, st, m))
        return SMTP_VERDICT_ACCEPT;
    mock_outcome v = mock_fault_draw(&opt.fault, &prng);
    if (v == MOCK_TEMPFAIL) stats.tempfail_injected++;
    if (v == MOCK_PERMFAIL) stats.permfail_injected++;
    if (v == MOCK_DROP) stats.drops_injected++;
    if (v != MOCK_STALL)
        return (smtp_server_verdict)v;
    /* Stop answering.  At the greeting and after the final "." the core
     * goes on as if accepted (at DATA the message is stored, like --drop);
     * at MAIL and RCPT it refuses; either way its replies are discarded. */
    stats.stalls_injected++;
    c->stalled = 1;
    return st == SMTP_STAGE_GREETING || st == SMTP_STAGE_DATA ? SMTP_VERDICT_ACCEPT
                                                              : SMTP_VERDICT_TEMPFAIL;
}

/* --maildir: one file per accepted message (blocking I/O, for inspection). */
static void maildir_write(const smtp_server_message *m)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%06llu.eml", opt.maildir,
             (unsigned long long)stats.messages);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, m->body, m->size) != (ssize_t)m->size)
        fprintf(stderr, "smtp-mock: cannot write %s: %s\n", path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

static void mock_message(void *arg, const smtp_server_message *m)
{
    (void)arg;
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
    conn *c = calloc(1, sizeof *c);
    smtp_server_config cfg = { .hostname = opt.hostname, .max_size = opt.max_size,
                               .max_rcpts = (unsigned)opt.max_rcpts,
                               .keep_body = opt.maildir != NULL };
    smtp_server_hooks hooks = { mock_decide, mock_message, c };
    if (c == NULL || (c->srv = smtp_server_new(&cfg, &hooks)) == NULL) {
        free(c);
        close(fd);
        return;
    }
    c->fd = fd;
    c->last_active = c->opened = ev_now(loop);
    ev_io_init(&c->rio, conn_readable_cb, fd, EV_READ);
    ev_io_init(&c->wio, conn_writable_cb, fd, EV_WRITE);
    ev_init(&c->reply_timer, conn_reply_cb);
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

/* Binds and listens; prints "listening on ADDR:PORT".  Exits 1 on failure. */
static int listen_start(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port) };
    socklen_t salen = sizeof sa;
    if (fd < 0 || inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1) {
        fprintf(stderr, "smtp-mock: cannot use address %s\n", opt.host);
        exit(1);
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);    /* inherited by accept */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 65535) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &salen) < 0) {
        fprintf(stderr, "smtp-mock: cannot listen on %s:%d: %s\n", opt.host, opt.port,
                strerror(errno));
        exit(1);
    }
    printf("listening on %s:%d\n", opt.host, ntohs(sa.sin_port));
    fflush(stdout);
    return fd;
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
"  --listen ADDR:PORT    address to listen on (default 127.0.0.1:2525; port 0 picks\n"
"                        a free port). When ready, prints 'listening on ADDR:PORT'\n"
"                        as the first line on stdout.\n"
"  --hostname NAME       name in the 220/250/221 replies (default mailbench-mock)\n"
"  --latency DUR         delay before every reply, greeting included (e.g. 100ms,\n"
"                        250us, 1s; default 0). A timer, never a sleep.\n"
"  --jitter DUR          spread of the latency: uniform in LATENCY +/- JITTER\n"
"                        (implies --latency-dist uniform)\n"
"  --latency-dist D      fixed | uniform | exp (exponential with mean LATENCY)\n"
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
"                        arrives after the 354, before the final '.'; never\n"
"                        accepted: drop closes, tempfail is 421 and close;\n"
"                        --permfail cannot be used there)\n"
"  --max-conns N         sessions at once; more get '421' and are closed (default\n"
"                        100000)\n"
"  --max-size SIZE       message size limit, advertised in EHLO (default 100MB)\n"
"  --max-rcpts N         recipients per message; more get 452 (default 1000)\n"
"  --idle-timeout DUR    a client silent this long gets 421 and is disconnected\n"
"                        (default 60s; 0 = never)\n"
"  --session-timeout DUR a session open this long gets 421 and is disconnected,\n"
"                        however busy (a client sending a byte a second; default\n"
"                        0 = never). Both count in idle_timeouts\n"
"  --stats FILE          on SIGTERM/SIGINT write the counts as JSON\n"
"                        (schema mailbench.server/1) to FILE, atomically\n"
"  --maildir DIR         write each accepted message to DIR/NNNNNN.eml (blocking\n"
"                        writes: for inspection, not for benchmarks)\n"
"  --help                this text\n"
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

static void parse_options(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "listen", 1, NULL, 'l' }, { "hostname", 1, NULL, 'H' },
        { "latency", 1, NULL, 'L' }, { "jitter", 1, NULL, 'j' },
        { "latency-dist", 1, NULL, 'D' }, { "seed", 1, NULL, 's' },
        { "tempfail", 1, NULL, 't' }, { "permfail", 1, NULL, 'p' },
        { "drop", 1, NULL, 'd' }, { "fault-stage", 1, NULL, 'F' },
        { "stall", 1, NULL, 'T' }, { "session-timeout", 1, NULL, 'O' },
        { "max-conns", 1, NULL, 'c' }, { "max-size", 1, NULL, 'S' },
        { "max-rcpts", 1, NULL, 'r' }, { "idle-timeout", 1, NULL, 'i' },
        { "stats", 1, NULL, 'o' }, { "maildir", 1, NULL, 'm' },
        { "help", 0, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    int dist_given = 0, ch;
    long long n;
    opt.listen_text = "127.0.0.1:2525";
    opt.hostname = "mailbench-mock";
    opt.seed = 1;
    opt.max_conns = 100000;
    opt.max_size = 100ULL << 20;
    opt.max_rcpts = 1000;
    opt.idle_timeout = 60;
    opt.fault.stage = SMTP_STAGE_DATA;
    opt.fault.dist = MOCK_DIST_FIXED;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        const char *v = optarg;
        switch (ch) {
        case 'l': opt.listen_text = v; break;
        case 'H': if (*v == '\0' || strpbrk(v, " \r\n")) bad_value("hostname", v, "a name without spaces");
                  opt.hostname = v; break;
        case 'L': if (units_parse_duration(v, &opt.fault.latency)) bad_value("latency", v, "a duration like 100ms"); break;
        case 'j': if (units_parse_duration(v, &opt.fault.jitter)) bad_value("jitter", v, "a duration like 10ms");
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
    if (units_parse_hostport(opt.listen_text, opt.host, &opt.port))
        bad_value("listen", opt.listen_text, "ADDR:PORT like 127.0.0.1:2525");
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

/* The "params" object of the stats JSON. */
static void params_json(char *buf, size_t len)
{
    snprintf(buf, len,
             "{\"listen\": \"%s:%d\", \"hostname\": \"%s\", \"latency_s\": %.6f, "
             "\"jitter_s\": %.6f, \"latency_dist\": \"%s\", \"seed\": %llu, "
             "\"tempfail\": %g, \"permfail\": %g, \"drop\": %g, \"stall\": %g, \"fault_stage\": \"%s\", "
             "\"max_conns\": %lld, \"max_size\": %llu, \"max_rcpts\": %lld, "
             "\"idle_timeout_s\": %.3f, \"session_timeout_s\": %.3f, \"maildir\": %s%s%s}",
             opt.host, opt.port, opt.hostname, opt.fault.latency, opt.fault.jitter,
             mock_fault_dist_name(opt.fault.dist), (unsigned long long)opt.seed,
             opt.fault.tempfail, opt.fault.permfail, opt.fault.drop, opt.fault.stall,
             mock_fault_stage_name(opt.fault.stage), opt.max_conns,
             (unsigned long long)opt.max_size, opt.max_rcpts, opt.idle_timeout, opt.session_timeout,
             opt.maildir ? "\"" : "", opt.maildir ? opt.maildir : "null",
             opt.maildir ? "\"" : "");
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
    ev_io_init(&listen_w, listen_cb, listen_start(), EV_READ);
    ev_io_start(loop, &listen_w);
    ev_tstamp start = ev_time();

    ev_run(loop, 0);

    char params[2048], line[1024];
    params_json(params, sizeof params);
    if (opt.stats_path && mock_stats_write(&stats, opt.stats_path, params, ev_time() - start) < 0)
        fprintf(stderr, "smtp-mock: cannot write %s: %s\n", opt.stats_path, strerror(errno));
    mock_stats_summary(&stats, line, sizeof line);
    fprintf(stderr, "%s\n", line);
    mock_stats_free(&stats);
    return 0;
}
