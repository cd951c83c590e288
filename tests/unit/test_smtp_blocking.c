/* Unit tests for lib/smtp_blocking: the blocking driver against a scripted
 * server thread on 127.0.0.1 port 0 (no external server needed), a closed
 * port (connection refused) and a server that never answers (timeout). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "smtp_blocking.h"

/* One step of the server's script: send `reply` (if any), then read until
 * the bytes received in this step contain `until` (NULL: close now). */
struct step { const char *reply; const char *until; };

struct server {
    const struct step *steps;  /* NULL-reply-and-until entry ends the script */
    bool silent;               /* accept, never answer, hold until stopped */
    int lfd;                   /* listening socket */
    int port;                  /* its port */
    int stop[2];               /* pipe: the test tells a silent server to go */
    pthread_t thread;
    char *got;                 /* every byte the client sent */
    size_t got_len, got_cap;
};

/* Wait up to 5 s for fd to become readable (or the stop pipe). */
static bool wait_readable(struct server *s, int fd)
{
    struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
                           { .fd = s->stop[0], .events = POLLIN } };
    return poll(p, 2, 5000) > 0 && !(p[1].revents & POLLIN);
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    if (!wait_readable(s, s->lfd)) return NULL;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0) return NULL;
    if (s->silent) {
        wait_readable(s, s->stop[0]);  /* until stopped (or 5 s) */
        close(fd);
        return NULL;
    }
    for (const struct step *st = s->steps; st->reply || st->until; st++) {
        if (st->reply && write(fd, st->reply, strlen(st->reply)) < 0) break;
        if (!st->until) break;
        size_t from = s->got_len;
        bool found = false;
        while (!found && wait_readable(s, fd)) {
            if (s->got_cap - s->got_len < 65536) {
                s->got_cap = 2 * s->got_cap + 65536;
                s->got = realloc(s->got, s->got_cap);
            }
            ssize_t r = read(fd, s->got + s->got_len, s->got_cap - s->got_len - 1);
            if (r <= 0) break;
            /* search only the new bytes (and the few before them) */
            size_t back = strlen(st->until) - 1;
            size_t at = s->got_len - from > back ? s->got_len - back : from;
            s->got_len += (size_t)r;
            found = memmem(s->got + at, s->got_len - at, st->until,
                           strlen(st->until)) != NULL;
        }
        if (!found) break;
    }
    close(fd);
    return NULL;
}

static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void server_start(struct server *s, const struct step *steps, bool silent)
{
    memset(s, 0, sizeof *s);
    s->steps = steps;
    s->silent = silent;
    s->lfd = listen_any(&s->port);
    assert_int_equal(pipe(s->stop), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

/* Stops the server (at once if silent) and joins it; s->got stays, for the
 * caller to check and free. */
static void server_stop(struct server *s)
{
    assert_int_equal(write(s->stop[1], "x", 1), 1);
    pthread_join(s->thread, NULL);
    close(s->lfd);
    close(s->stop[0]);
    close(s->stop[1]);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *const RCPTS[] = { "bob@example.org", "carol@example.org" };

/* Pump until CLOSED (or idle); returns the events as text, one per line. */
static void pump(int fd, struct smtp_client *c, char *log, size_t loglen)
{
    struct smtp_client_event ev;
    size_t at = 0;
    log[0] = '\0';
    for (int i = 0; i < 100; i++) {
        int st = smtp_blocking_next_event(fd, c, 5.0, &ev);
        if (st == SMTP_BLOCKING_TIMEOUT) fail_msg("timeout\n%s", log);
        if (st == SMTP_BLOCKING_IDLE) break;
        at += (size_t)snprintf(log + at, loglen - at, "%s %s %d %s%s\n",
                               smtp_client_event_name(ev.type),
                               smtp_client_result_name(ev.result), ev.code, ev.text,
                               ev.maybe_delivered ? " (maybe delivered)" : "");
        if (ev.type == SMTP_CLIENT_CLOSED) break;
    }
}

/* A whole pipelined session: the client's bytes and the events. */
static void test_session(void **state)
{
    (void)state;
    static const struct step steps[] = {
        { "220 test ESMTP\r\n", "EHLO t\r\n" },
        { "250-test\r\n250-PIPELINING\r\n250 SIZE 100000\r\n", "DATA\r\n" },
        { "250 ok\r\n250 ok\r\n550 no such user\r\n354 go\r\n", "\r\n.\r\n" },
        { "250 queued\r\n", "QUIT\r\n" },
        { "221 bye\r\n", NULL },
    };
    struct server s;
    server_start(&s, steps, false);
    char err[256];
    int fd = smtp_blocking_connect("127.0.0.1", s.port, 2.0, err, sizeof err);
    assert_true(fd >= 0);
    struct smtp_client_config cfg = { .ehlo_name = "t", .pipelining = true };
    struct smtp_client *c = smtp_client_new(&cfg);
    const char msg[] = "Subject: x\r\n\r\n.dot\r\n";
    assert_int_equal(smtp_client_send(c, "a@example.org", RCPTS, 2, msg,
                                      strlen(msg), NULL), 0);
    smtp_client_quit(c);
    char log[2048];
    pump(fd, c, log, sizeof log);
    assert_string_equal(log,
        "READY ok 0 \n"
        "MESSAGE_DONE ok 250 queued\n"
        "CLOSED ok 221 bye\n");
    close(fd);
    smtp_client_free(c);
    server_stop(&s);
    const char wire[] = "EHLO t\r\nMAIL FROM:<a@example.org> SIZE=20\r\n"
        "RCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n"
        "Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n";
    assert_int_equal(s.got_len, strlen(wire));
    assert_memory_equal(s.got, wire, s.got_len);
    free(s.got);
}

/* The bytes on the wire, and a big message (short writes, many reads). */
static void test_wire_bytes_big_message(void **state)
{
    (void)state;
    static const struct step script[] = {
        { "220 test\r\n", "EHLO t\r\n" },
        { "502 no\r\n", "HELO t\r\n" },
        { "250 test\r\n", "MAIL FROM:<a@x>\r\n" },
        { "250 ok\r\n", "RCPT TO:<bob@example.org>\r\n" },
        { "250 ok\r\n", "DATA\r\n" },
        { "354 go\r\n", "\r\n.\r\n" },
        { "250 queued\r\n", "QUIT\r\n" },
        { "221 bye\r\n", NULL },
        { NULL, NULL },
    };
    size_t big = 4 << 20;   /* 4 MiB: more than the socket buffers hold */
    char *msg = malloc(big);
    for (size_t i = 0; i < big; i += 64) {
        memset(msg + i, 'x', 62);
        if (i % 128 == 0) msg[i] = '.';     /* every other line starts with '.' */
        memcpy(msg + i + 62, "\r\n", 2);
    }
    struct server s;
    server_start(&s, script, false);
    char err[256];
    int fd = smtp_blocking_connect(NULL, s.port, 2.0, err, sizeof err);
    assert_true(fd >= 0);
    struct smtp_client_config cfg = { .ehlo_name = "t" };
    struct smtp_client *c = smtp_client_new(&cfg);
    assert_int_equal(smtp_client_send(c, "a@x", RCPTS, 1, msg, big, NULL), 0);
    smtp_client_quit(c);
    char log[2048];
    pump(fd, c, log, sizeof log);
    assert_string_equal(log, "READY ok 0 \nMESSAGE_DONE ok 250 queued\nCLOSED ok 221 bye\n");
    close(fd);
    smtp_client_free(c);
    server_stop(&s);
    const char head[] = "EHLO t\r\nHELO t\r\nMAIL FROM:<a@x>\r\n"
                        "RCPT TO:<bob@example.org>\r\nDATA\r\n";
    size_t hl = strlen(head);
    size_t stuffed = big + big / 128;           /* one extra dot per 128 bytes */
    assert_int_equal(s.got_len, hl + stuffed + 3 + 6);
    assert_memory_equal(s.got, head, hl);
    assert_memory_equal(s.got + hl, "..xx", 4);
    assert_memory_equal(s.got + hl + stuffed, ".\r\nQUIT\r\n", 9);
    free(s.got);
    free(msg);
}

/* The server drops the connection after the body, before its reply. */
static void test_lost_after_data(void **state)
{
    (void)state;
    static const struct step steps[] = {
        { "220 test\r\n", "EHLO t\r\n" },
        { "250 test\r\n", "MAIL FROM:<a@x>\r\n" },
        { "250 ok\r\n", "RCPT TO:<bob@example.org>\r\n" },
        { "250 ok\r\n", "DATA\r\n" },
        { "354 go\r\n", "\r\n.\r\n" },
        { NULL, NULL },
    };
    struct server s;
    server_start(&s, steps, false);
    char err[256];
    int fd = smtp_blocking_connect("127.0.0.1", s.port, 2.0, err, sizeof err);
    assert_true(fd >= 0);
    struct smtp_client_config cfg = { .ehlo_name = "t" };
    struct smtp_client *c = smtp_client_new(&cfg);
    assert_int_equal(smtp_client_send(c, "a@x", RCPTS, 1, "hi\r\n", 4, NULL), 0);
    char log[2048];
    pump(fd, c, log, sizeof log);
    assert_string_equal(log,
        "READY ok 0 \n"
        "MESSAGE_DONE tempfail 0 connection lost after end of data, before reply"
        " (maybe delivered)\n"
        "CLOSED tempfail 0 connection lost after end of data, before reply\n");
    close(fd);
    smtp_client_free(c);
    server_stop(&s);
    free(s.got);
}

static void test_connection_refused(void **state)
{
    (void)state;
    int port;
    int lfd = listen_any(&port);
    close(lfd);   /* nothing listens there now */
    char err[256];
    errno = 0;
    assert_int_equal(smtp_blocking_connect("127.0.0.1", port, 2.0, err, sizeof err), -1);
    assert_int_equal(errno, ECONNREFUSED);
    char want[128];
    snprintf(want, sizeof want, "connect to 127.0.0.1:%d: Connection refused", port);
    assert_string_equal(err, want);
    assert_int_equal(smtp_blocking_connect("no.such.host.invalid", 25, 1.0, err,
                                           sizeof err), -1);
    assert_non_null(strstr(err, "no.such.host.invalid"));
}

/* Issue 11 #13: the address is read as written.  getaddrinfo (even with
 * AI_NUMERICHOST) reads "0177.0.0.1" as octal 127.0.0.1, "127.1" and
 * "0x7f000001" likewise: each would reach the listener below. */
static void test_numeric_address_only(void **state)
{
    (void)state;
    int port;
    int lfd = listen_any(&port);
    const char *bad[] = { "0177.0.0.1", "127.1", "0x7f000001", "127.0.0.01", " 127.0.0.1", NULL };
    for (int i = 0; bad[i]; i++) {
        char err[256] = "";
        errno = 0;
        int fd = smtp_blocking_connect(bad[i], port, 2.0, err, sizeof err);
        if (fd >= 0) {
            close(fd);
            fail_msg("'%s' connected (to 127.0.0.1:%d)", bad[i], port);
        }
        assert_int_equal(errno, EINVAL);
        assert_non_null(strstr(err, bad[i]));
    }
    close(lfd);
}

/* A server that accepts and never says a word: TIMEOUT within the deadline,
 * then abort gives the message a clear failure. */
static void test_silent_server_timeout(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, NULL, true);
    char err[256];
    int fd = smtp_blocking_connect("127.0.0.1", s.port, 2.0, err, sizeof err);
    assert_true(fd >= 0);
    struct smtp_client_config cfg = { .ehlo_name = "t" };
    struct smtp_client *c = smtp_client_new(&cfg);
    assert_int_equal(smtp_client_send(c, "a@x", RCPTS, 1, "hi\r\n", 4, NULL), 0);
    struct smtp_client_event ev;
    double t0 = now_s();
    assert_int_equal(smtp_blocking_next_event(fd, c, 0.2, &ev), SMTP_BLOCKING_TIMEOUT);
    double took = now_s() - t0;
    assert_true(took >= 0.19);
    assert_true(took < 1.5);
    assert_int_equal(smtp_blocking_next_event(fd, c, 0, &ev), SMTP_BLOCKING_TIMEOUT);
    smtp_client_abort(c, "timeout");
    assert_int_equal(smtp_blocking_next_event(fd, c, 1.0, &ev), SMTP_BLOCKING_EVENT);
    assert_int_equal(ev.type, SMTP_CLIENT_MESSAGE_DONE);
    assert_int_equal(ev.result, SMTP_CLIENT_TEMPFAIL);
    assert_int_equal(ev.stage, SMTP_CLIENT_STAGE_GREETING);
    assert_string_equal(ev.text, "timeout before greeting");
    assert_int_equal(smtp_blocking_next_event(fd, c, 1.0, &ev), SMTP_BLOCKING_EVENT);
    assert_int_equal(ev.type, SMTP_CLIENT_CLOSED);
    assert_int_equal(smtp_blocking_next_event(fd, c, 1.0, &ev), SMTP_BLOCKING_IDLE);
    close(fd);
    smtp_client_free(c);
    server_stop(&s);
    free(s.got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session),
        cmocka_unit_test(test_wire_bytes_big_message),
        cmocka_unit_test(test_lost_after_data),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_numeric_address_only),
        cmocka_unit_test(test_silent_server_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
