/* The two sans-I/O SMTP cores pumped into each other, with no sockets.
 *
 * lib/smtp_client and lib/smtp_server hold no socket and read no clock, so
 * the strongest test the design allows is to connect them directly: the
 * client's output is fed to the server and the server's output to the
 * client, in pieces of a chosen size (one byte, a few bytes, everything at
 * once).  Each case checks both ends: what the client's events say, what the
 * server's message hook received (bodies unstuffed byte for byte, the same
 * digest), and what the server counted (commands, reply batches).  Faults
 * are injected through the server's decide hook, as smtp-mock does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "smtp_client.h"
#include "smtp_server.h"

#define MAX_MSGS 16

/* The server's side: what it accepted, and the fault to inject. */
struct server_side {
    int naccepted;
    uint64_t hash[MAX_MSGS];
    uint64_t size[MAX_MSGS];
    size_t nrcpts[MAX_MSGS];
    char body[MAX_MSGS][4096];
    enum smtp_server_stage fault_stage;
    enum smtp_server_verdict fault;
    int fault_rcpt;            /* at RCPT: only the recipient with this index */
    int fault_times;           /* how many times the fault applies (0: never) */
};

/* The client's side: one MESSAGE_DONE per message, in order. */
struct client_side {
    int ndone, nready, nclosed, nprotocol;
    enum smtp_client_result result[MAX_MSGS];
    enum smtp_client_stage stage[MAX_MSGS];
    int code[MAX_MSGS];
    bool maybe_delivered[MAX_MSGS];
    size_t naccepted[MAX_MSGS];
    intptr_t user[MAX_MSGS];
    bool pipelining;
};

static enum smtp_server_verdict decide(void *arg, enum smtp_server_stage st,
                                       const struct smtp_server_message *m)
{
    struct server_side *s = arg;
    if (s->fault_times <= 0 || st != s->fault_stage)
        return SMTP_SERVER_VERDICT_ACCEPT;
    if (st == SMTP_SERVER_STAGE_RCPT && (int)m->nrcpts != s->fault_rcpt)
        return SMTP_SERVER_VERDICT_ACCEPT;
    s->fault_times--;
    return s->fault;
}

static void message(void *arg, const struct smtp_server_message *m)
{
    struct server_side *s = arg;
    assert_true(s->naccepted < MAX_MSGS);
    int i = s->naccepted++;
    s->hash[i] = m->hash;
    s->size[i] = m->size;
    s->nrcpts[i] = m->nrcpts;
    assert_non_null(m->body);
    assert_true(m->size < sizeof s->body[i]);
    memcpy(s->body[i], m->body, (size_t)m->size);
    s->body[i][m->size] = '\0';
}

static void drain_events(struct smtp_client *c, struct client_side *cs)
{
    struct smtp_client_event ev;
    while (smtp_client_next_event(c, &ev)) {
        switch (ev.type) {
        case SMTP_CLIENT_READY:
            cs->nready++;
            cs->pipelining = ev.pipelining;
            break;
        case SMTP_CLIENT_MESSAGE_DONE: {
            assert_true(cs->ndone < MAX_MSGS);
            int i = cs->ndone++;
            cs->result[i] = ev.result;
            cs->stage[i] = ev.stage;
            cs->code[i] = ev.code;
            cs->maybe_delivered[i] = ev.maybe_delivered;
            cs->naccepted[i] = ev.naccepted;
            cs->user[i] = (intptr_t)ev.user;
            break;
        }
        case SMTP_CLIENT_CLOSED:
            cs->nclosed++;
            break;
        case SMTP_CLIENT_PROTOCOL_ERROR:
            cs->nprotocol++;
            break;
        }
    }
}

/* Moves bytes both ways, at most `chunk` bytes per feed, until the client
 * has finished.  When the server closes, the client sees end of file once
 * the server's last bytes have reached it.  Returns the number of steps. */
static int pump(struct smtp_client *c, struct smtp_server *s, size_t chunk, struct client_side *cs)
{
    int server_closed = smtp_server_greeting(s) == SMTP_SERVER_CLOSE;
    int client_eof = 0, steps = 0;
    while (!smtp_client_is_finished(c)) {
        assert_true(++steps < 1000000);
        int moved = 0;
        size_t n;
        /* server -> client */
        const char *sout = smtp_server_output(s, &n);
        if (n > 0) {
            size_t k = n < chunk ? n : chunk;
            smtp_client_feed(c, sout, k);
            smtp_server_output_consume(s, k);
            moved = 1;
        } else if (server_closed && !client_eof) {
            smtp_client_eof(c);
            client_eof = 1;
            moved = 1;
        }
        drain_events(c, cs);
        /* client -> server: as a driver's writev of every segment, cut
         * at `chunk` bytes */
        n = smtp_client_pending(c);
        if (n > 0 && !server_closed) {
            size_t k = n < chunk ? n : chunk;
            /* Copy: the server may be handed bytes that end mid-line. */
            char *copy = malloc(k);
            assert_non_null(copy);
            struct iovec iov[64];
            int nv = smtp_client_output_iov(c, iov, 64);
            size_t got = 0;
            for (int v = 0; v < nv && got < k; v++) {
                size_t take = iov[v].iov_len < k - got ? iov[v].iov_len : k - got;
                memcpy(copy + got, iov[v].iov_base, take);
                got += take;
            }
            assert_int_equal(got, k);
            smtp_client_consumed(c, k);
            if (smtp_server_feed(s, copy, k) == SMTP_SERVER_CLOSE)
                server_closed = 1;
            free(copy);
            moved = 1;
        } else if (n > 0) {
            smtp_client_consumed(c, n); /* written into a closed connection */
            moved = 1;
        }
        drain_events(c, cs);
        if (!moved) {
            /* Nothing to move either way: the client must be finished, or
             * it is waiting for a reply the server will never send. */
            assert_true(smtp_client_is_finished(c));
        }
    }
    drain_events(c, cs);
    return steps;
}

/* One session: `nmsg` messages (the bodies given), quit after the last. */
struct session {
    struct smtp_client *c;
    struct smtp_server *s;
    struct smtp_server_counts counts;
    struct server_side ss;
    struct client_side cs;
};

static void session_open(struct session *x, bool pipelining, bool rset_between)
{
    memset(x, 0, sizeof *x);
    struct smtp_client_config ccfg = { .ehlo_name = "client.test", .pipelining = pipelining,
                                       .rset_between = rset_between };
    x->c = smtp_client_new(&ccfg);
    assert_non_null(x->c);
    struct smtp_server_config scfg = { .hostname = "mock.test", .keep_body = 1, .counts = &x->counts };
    struct smtp_server_hooks hooks = { .decide = decide, .message = message, .arg = &x->ss };
    x->s = smtp_server_new(&scfg, &hooks);
    assert_non_null(x->s);
}

static void session_close(struct session *x)
{
    smtp_client_free(x->c);
    smtp_server_free(x->s);
}

static void send_msg(struct session *x, const char *body, size_t nrcpt, intptr_t user)
{
    static const char *const rcpts[] = { "a@example.test", "b@example.test", "c@example.test" };
    assert_true(nrcpt <= 3);
    assert_int_equal(smtp_client_send(x->c, "summary@app.test", rcpts, nrcpt, body, strlen(body),
                                      (void *)user), 0);
}

static const char MSG_PLAIN[] =
    "Message-ID: <1@app.test>\r\nSubject: summary\r\n\r\nline one\r\nline two\r\n";
/* Dot lines: a single ".", "..", ". space", a dot at the start of the body
 * and the last line a dot followed by text. */
static const char MSG_DOTS[] =
    "Message-ID: <2@app.test>\r\nSubject: dots\r\n\r\n.\r\n..\r\n. x\r\n...\r\nmid.dle\r\n.end\r\n";

static const size_t CHUNKS[] = { 1, 2, 3, 7, 64, 1u << 20 };

/* Two messages, every chunk size, with and without pipelining: both
 * delivered, the server's unstuffed bodies equal what was sent, the hashes
 * equal digest_hash() of the rendered bytes. */
static void test_deliver_every_split(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof CHUNKS / sizeof CHUNKS[0]; i++) {
        for (int pl = 0; pl <= 1; pl++) {
            struct session x;
            session_open(&x, pl, false);
            send_msg(&x, MSG_PLAIN, 1, 1);
            send_msg(&x, MSG_DOTS, 2, 2);
            smtp_client_quit(x.c);
            pump(x.c, x.s, CHUNKS[i], &x.cs);
            assert_int_equal(x.cs.nready, 1);
            assert_int_equal(x.cs.pipelining, pl);
            assert_int_equal(x.cs.ndone, 2);
            assert_int_equal(x.cs.nclosed, 1);
            assert_int_equal(x.cs.nprotocol, 0);
            for (int m = 0; m < 2; m++) {
                assert_int_equal(x.cs.result[m], SMTP_CLIENT_OK);
                assert_int_equal(x.cs.code[m], 250);
                assert_int_equal(x.cs.user[m], m + 1);
            }
            assert_int_equal(x.ss.naccepted, 2);
            assert_string_equal(x.ss.body[0], MSG_PLAIN);
            assert_string_equal(x.ss.body[1], MSG_DOTS);
            assert_int_equal(x.ss.hash[0], digest_hash(MSG_PLAIN, strlen(MSG_PLAIN)));
            assert_int_equal(x.ss.hash[1], digest_hash(MSG_DOTS, strlen(MSG_DOTS)));
            assert_int_equal(x.ss.size[1], strlen(MSG_DOTS));
            assert_int_equal(x.ss.nrcpts[1], 2);
            /* Exactly one exchange: EHLO, MAIL x2, RCPT x3, DATA x2, QUIT. */
            assert_int_equal(x.counts.commands[SMTP_SERVER_CMD_EHLO], 1);
            assert_int_equal(x.counts.commands[SMTP_SERVER_CMD_MAIL], 2);
            assert_int_equal(x.counts.commands[SMTP_SERVER_CMD_RCPT], 3);
            assert_int_equal(x.counts.commands[SMTP_SERVER_CMD_DATA], 2);
            assert_int_equal(x.counts.commands[SMTP_SERVER_CMD_RSET], 0);
            assert_int_equal(x.counts.commands[SMTP_SERVER_CMD_QUIT], 1);
            assert_int_equal(x.counts.commands[SMTP_SERVER_CMD_OTHER], 0);
            session_close(&x);
        }
    }
}

/* Pipelining saves round trips, and the server can see it: with everything
 * sent at once, MAIL/RCPT/DATA are one batch of replies; without, one each.
 * Per message: pipelined = group + text (2), plain = MAIL, RCPT x n, DATA,
 * text (3 + n); plus greeting-less EHLO and QUIT. */
static void test_pipelining_round_trips(void **state)
{
    (void)state;
    size_t batches[2];
    for (int pl = 0; pl <= 1; pl++) {
        struct session x;
        session_open(&x, pl, false);
        send_msg(&x, MSG_PLAIN, 3, 1);
        smtp_client_quit(x.c);
        pump(x.c, x.s, 1u << 20, &x.cs);
        assert_int_equal(x.cs.ndone, 1);
        assert_int_equal(x.cs.result[0], SMTP_CLIENT_OK);
        assert_int_equal(x.cs.naccepted[0], 3);
        batches[pl] = (size_t)x.counts.reply_batches;
        session_close(&x);
    }
    assert_int_equal(batches[0], 1 + (3 + 3) + 1); /* EHLO, MAIL RCPT×3 DATA text, QUIT */
    assert_int_equal(batches[1], 1 + 2 + 1);       /* EHLO, group, text, QUIT */
}

/* RSET between transactions when asked, and after a failed one always. */
static void test_rset(void **state)
{
    (void)state;
    struct session x;
    session_open(&x, true, true);
    send_msg(&x, MSG_PLAIN, 1, 1);
    send_msg(&x, MSG_PLAIN, 1, 2);
    send_msg(&x, MSG_PLAIN, 1, 3);
    smtp_client_quit(x.c);
    pump(x.c, x.s, 5, &x.cs);
    assert_int_equal(x.cs.ndone, 3);
    assert_int_equal(x.ss.naccepted, 3);
    assert_int_equal(x.counts.commands[SMTP_SERVER_CMD_RSET], 2);
    session_close(&x);

    session_open(&x, true, false);
    x.ss.fault_stage = SMTP_SERVER_STAGE_DATA;
    x.ss.fault = SMTP_SERVER_VERDICT_TEMPFAIL;
    x.ss.fault_times = 1;
    send_msg(&x, MSG_PLAIN, 1, 1);
    send_msg(&x, MSG_DOTS, 1, 2);
    smtp_client_quit(x.c);
    pump(x.c, x.s, 1, &x.cs);
    assert_int_equal(x.cs.ndone, 2);
    assert_int_equal(x.cs.result[0], SMTP_CLIENT_TEMPFAIL);
    assert_int_equal(x.cs.stage[0], SMTP_CLIENT_STAGE_END_OF_DATA);
    assert_int_equal(x.cs.code[0], 451);
    assert_int_equal(x.cs.result[1], SMTP_CLIENT_OK);
    assert_int_equal(x.ss.naccepted, 1);
    assert_string_equal(x.ss.body[0], MSG_DOTS);
    assert_int_equal(x.counts.commands[SMTP_SERVER_CMD_RSET], 1);
    session_close(&x);
}

/* Each fault the mock can inject, seen by the client as the models see it:
 * the result, the stage, the code, and whether it may have been delivered. */
static void test_faults(void **state)
{
    (void)state;
    static const struct {
        enum smtp_server_stage stage;
        enum smtp_server_verdict verdict;
        enum smtp_client_result result;
        enum smtp_client_stage cstage;
        int code;
        int maybe;      /* maybe_delivered: 0 no, 1 yes, 2 when the client had
                           written the whole text before it saw the close */
        int accepted;   /* messages the server's hook saw */
    } cases[] = {
        { SMTP_SERVER_STAGE_GREETING, SMTP_SERVER_VERDICT_TEMPFAIL, SMTP_CLIENT_TEMPFAIL, SMTP_CLIENT_STAGE_GREETING, 421, 0, 0 },
        { SMTP_SERVER_STAGE_GREETING, SMTP_SERVER_VERDICT_PERMFAIL, SMTP_CLIENT_PERMFAIL, SMTP_CLIENT_STAGE_GREETING, 554, 0, 0 },
        { SMTP_SERVER_STAGE_GREETING, SMTP_SERVER_VERDICT_DROP, SMTP_CLIENT_TEMPFAIL, SMTP_CLIENT_STAGE_GREETING, 0, 0, 0 },
        { SMTP_SERVER_STAGE_MAIL, SMTP_SERVER_VERDICT_TEMPFAIL, SMTP_CLIENT_TEMPFAIL, SMTP_CLIENT_STAGE_MAIL, 451, 0, 0 },
        { SMTP_SERVER_STAGE_MAIL, SMTP_SERVER_VERDICT_PERMFAIL, SMTP_CLIENT_PERMFAIL, SMTP_CLIENT_STAGE_MAIL, 550, 0, 0 },
        { SMTP_SERVER_STAGE_RCPT, SMTP_SERVER_VERDICT_TEMPFAIL, SMTP_CLIENT_TEMPFAIL, SMTP_CLIENT_STAGE_RCPT, 450, 0, 0 },
        { SMTP_SERVER_STAGE_RCPT, SMTP_SERVER_VERDICT_PERMFAIL, SMTP_CLIENT_PERMFAIL, SMTP_CLIENT_STAGE_RCPT, 550, 0, 0 },
        { SMTP_SERVER_STAGE_DATA, SMTP_SERVER_VERDICT_TEMPFAIL, SMTP_CLIENT_TEMPFAIL, SMTP_CLIENT_STAGE_END_OF_DATA, 451, 0, 0 },
        { SMTP_SERVER_STAGE_DATA, SMTP_SERVER_VERDICT_PERMFAIL, SMTP_CLIENT_PERMFAIL, SMTP_CLIENT_STAGE_END_OF_DATA, 554, 0, 0 },
        /* Accepted, then dropped before the 250: a duplicate if retried. */
        { SMTP_SERVER_STAGE_DATA, SMTP_SERVER_VERDICT_DROP, SMTP_CLIENT_TEMPFAIL, SMTP_CLIENT_STAGE_END_OF_DATA, 0, 1, 1 },
        { SMTP_SERVER_STAGE_BODY, SMTP_SERVER_VERDICT_TEMPFAIL, SMTP_CLIENT_TEMPFAIL, SMTP_CLIENT_STAGE_END_OF_DATA, 421, 0, 0 },
        /* Dropped when the text starts: never accepted, but a client that
         * wrote all of it before seeing the close cannot tell (a retry is
         * then a duplicate only in its own eyes). */
        { SMTP_SERVER_STAGE_BODY, SMTP_SERVER_VERDICT_DROP, SMTP_CLIENT_TEMPFAIL, SMTP_CLIENT_STAGE_END_OF_DATA, 0, 2, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t ch = 0; ch < sizeof CHUNKS / sizeof CHUNKS[0]; ch++) {
            for (int pl = 0; pl <= 1; pl++) {
                struct session x;
                session_open(&x, pl, false);
                x.ss.fault_stage = cases[i].stage;
                x.ss.fault = cases[i].verdict;
                x.ss.fault_times = 1;
                send_msg(&x, MSG_DOTS, 1, 7);
                smtp_client_quit(x.c);
                pump(x.c, x.s, CHUNKS[ch], &x.cs);
                char what[80];
                snprintf(what, sizeof what, "case %zu chunk %zu pipelining %d", i, CHUNKS[ch], pl);
                bool maybe = cases[i].maybe == 2 ? CHUNKS[ch] >= sizeof MSG_DOTS + 2 : cases[i].maybe;
                if (x.cs.ndone != 1 || x.cs.result[0] != cases[i].result || x.cs.stage[0] != cases[i].cstage
                    || x.cs.code[0] != cases[i].code || x.cs.maybe_delivered[0] != maybe
                    || x.ss.naccepted != cases[i].accepted)
                    fail_msg("%s: done %d result %d stage %d code %d maybe %d accepted %d", what, x.cs.ndone,
                             x.cs.result[0], x.cs.stage[0], x.cs.code[0], x.cs.maybe_delivered[0],
                             x.ss.naccepted);
                assert_int_equal(x.cs.nclosed, 1);
                assert_int_equal(x.cs.nprotocol, 0);
                session_close(&x);
            }
        }
    }
}

/* One of three recipients refused: the message goes to the other two and
 * the client's event says so; all refused: no text is sent at all. */
static void test_some_recipients_refused(void **state)
{
    (void)state;
    struct session x;
    session_open(&x, true, false);
    x.ss.fault_stage = SMTP_SERVER_STAGE_RCPT;
    x.ss.fault = SMTP_SERVER_VERDICT_PERMFAIL;
    x.ss.fault_rcpt = 1;
    x.ss.fault_times = 1;
    send_msg(&x, MSG_PLAIN, 3, 1);
    smtp_client_quit(x.c);
    pump(x.c, x.s, 3, &x.cs);
    assert_int_equal(x.cs.ndone, 1);
    assert_int_equal(x.cs.result[0], SMTP_CLIENT_OK);
    assert_int_equal(x.cs.naccepted[0], 2);
    assert_int_equal(x.ss.naccepted, 1);
    assert_int_equal(x.ss.nrcpts[0], 2);
    session_close(&x);

    session_open(&x, true, false);
    x.ss.fault_stage = SMTP_SERVER_STAGE_RCPT;
    x.ss.fault = SMTP_SERVER_VERDICT_PERMFAIL;
    x.ss.fault_rcpt = 0;
    x.ss.fault_times = 1;
    send_msg(&x, MSG_PLAIN, 1, 1);
    send_msg(&x, MSG_PLAIN, 1, 2);
    smtp_client_quit(x.c);
    pump(x.c, x.s, 1u << 20, &x.cs);
    assert_int_equal(x.cs.ndone, 2);
    assert_int_equal(x.cs.result[0], SMTP_CLIENT_PERMFAIL);
    assert_int_equal(x.cs.stage[0], SMTP_CLIENT_STAGE_RCPT);
    assert_int_equal(x.cs.result[1], SMTP_CLIENT_OK);
    assert_int_equal(x.ss.naccepted, 1);
    session_close(&x);
}

/* A message larger than the server's SIZE limit never leaves the client
 * (local 552), and the next one on the session still goes. */
static void test_size_limit(void **state)
{
    (void)state;
    struct session x;
    memset(&x, 0, sizeof x);
    struct smtp_client_config ccfg = { .pipelining = true };
    x.c = smtp_client_new(&ccfg);
    struct smtp_server_config scfg = { .hostname = "mock.test", .keep_body = 1, .counts = &x.counts,
                                .max_size = sizeof MSG_PLAIN - 1 };
    struct smtp_server_hooks hooks = { .decide = decide, .message = message, .arg = &x.ss };
    x.s = smtp_server_new(&scfg, &hooks);
    assert_non_null(x.c);
    assert_non_null(x.s);
    send_msg(&x, MSG_DOTS, 1, 1);  /* larger than MSG_PLAIN */
    send_msg(&x, MSG_PLAIN, 1, 2); /* exactly the limit */
    smtp_client_quit(x.c);
    pump(x.c, x.s, 4, &x.cs);
    assert_true(sizeof MSG_DOTS > sizeof MSG_PLAIN);
    assert_int_equal(x.cs.ndone, 2);
    assert_int_equal(x.cs.result[0], SMTP_CLIENT_PERMFAIL);
    assert_int_equal(x.cs.code[0], 552);
    assert_int_equal(x.cs.result[1], SMTP_CLIENT_OK);
    assert_int_equal(x.ss.naccepted, 1);
    assert_string_equal(x.ss.body[0], MSG_PLAIN);
    assert_int_equal(x.counts.commands[SMTP_SERVER_CMD_MAIL], 1);
    session_close(&x);
}

/* Random bodies of dot lines, random chunk sizes: whatever the client sends,
 * the server gets back exactly the rendered bytes. */
static void test_random_bodies(void **state)
{
    (void)state;
    uint64_t r = 0x9e3779b97f4a7c15u;
    static const char *const pieces[] = { ".", "..", "x", ". ", "a.b", "\r\n", "\r\n.", "\r\n..\r\n" };
    for (int round = 0; round < 200; round++) {
        char body[2048] = "Message-ID: <r@app.test>\r\n\r\n";
        size_t len = strlen(body);
        int n = 1 + (int)(r % 60);
        for (int k = 0; k < n; k++) {
            r = r * 6364136223846793005u + 1442695040888963407u;
            const char *p = pieces[(r >> 33) % (sizeof pieces / sizeof pieces[0])];
            memcpy(body + len, p, strlen(p));
            len += strlen(p);
        }
        memcpy(body + len, "\r\n", 3);
        len += 2;
        r = r * 6364136223846793005u + 1442695040888963407u;
        size_t chunk = 1 + (size_t)((r >> 40) % 97);
        struct session x;
        session_open(&x, (r >> 20) & 1, false);
        send_msg(&x, body, 1, 1);
        smtp_client_quit(x.c);
        pump(x.c, x.s, chunk, &x.cs);
        assert_int_equal(x.cs.ndone, 1);
        assert_int_equal(x.cs.result[0], SMTP_CLIENT_OK);
        assert_int_equal(x.ss.naccepted, 1);
        assert_int_equal(x.ss.size[0], len);
        assert_memory_equal(x.ss.body[0], body, len);
        assert_int_equal(x.ss.hash[0], digest_hash(body, len));
        session_close(&x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deliver_every_split),
        cmocka_unit_test(test_pipelining_round_trips),
        cmocka_unit_test(test_rset),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_some_recipients_refused),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_random_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
