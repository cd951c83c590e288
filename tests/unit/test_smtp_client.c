/* Unit tests for lib/smtp_client: golden transcripts and targeted cases.
 *
 * Golden transcripts live in tests/golden/client/: NAME.in holds the bytes
 * the server sends, NAME.ref the exact bytes the client must send, and
 * NAME.events the events it must report (one line each, see event_line()).
 * The scenario of each transcript (configuration, queued messages, QUIT) is
 * the table `scenarios` below.  Every transcript is replayed whole, one byte
 * at a time, split in two at every offset, and with the output taken one
 * byte at a time; all must give the same bytes and events.  Then the
 * connection is cut after every byte of the input: each queued message must
 * still get exactly one MESSAGE_DONE, and CLOSED must come last.
 *
 * SMTP_GOLDEN_BLESS=1 writes missing .ref/.events files (review them!). */
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

/* The server core, for the round trip below.  Its stage names clash with the
 * client's (SMTP_CLIENT_STAGE_MAIL in both), and this test uses none of them: they
 * are renamed while its header is read. */
#define SMTP_CLIENT_STAGE_GREETING SMTP_SERVER_STAGE_GREETING
#define SMTP_CLIENT_STAGE_MAIL SMTP_SERVER_STAGE_MAIL
#define SMTP_CLIENT_STAGE_RCPT SMTP_SERVER_STAGE_RCPT
#define SMTP_CLIENT_STAGE_DATA SMTP_SERVER_STAGE_DATA
#include "smtp_server.h"
#undef SMTP_CLIENT_STAGE_GREETING
#undef SMTP_CLIENT_STAGE_MAIL
#undef SMTP_CLIENT_STAGE_RCPT
#undef SMTP_CLIENT_STAGE_DATA

/* ---- messages and scenarios ------------------------------------------- */

struct msgspec {
    const char *from;
    const char *rcpts[4];  /* NULL-terminated */
    const char *body;      /* NUL-terminated message; NULL = big (200 bytes) */
};

static const char B1[] =
    "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: test\r\n"
    "Message-ID: <1@mailbench>\r\n\r\nHello.\r\n";
static const char BDOT[] =
    ".top\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\na.b\r\n"
    "crlf\r\n.lf\r\n.\r\nmiddle\r\n.\r\n";
/* A bare LF: refused locally, nothing of it sent (then M1 goes as usual). */
static const char BBARELF[] =
    "Subject: smuggle\r\n\r\nhi\n.\r\nMAIL FROM:<evil@example.org>\r\n";
static const char BNOEOL[] = "Subject: no newline\r\n\r\nlast line";
static char BBIG[201];

static const struct msgspec M1 = { "alice@example.org", { "bob@example.org" }, B1 };
static const struct msgspec M2 = { "alice@example.org",
    { "a@example.org", "b@example.org", "c@example.org" }, B1 };
static const struct msgspec M3 = { "alice@example.org",
    { "a@example.org", "b@example.org" }, B1 };
static const struct msgspec MDOT = { "alice@example.org", { "bob@example.org" }, BDOT };
static const struct msgspec MNOEOL = { "alice@example.org", { "bob@example.org" }, BNOEOL };
static const struct msgspec MBARELF = { "alice@example.org", { "bob@example.org" }, BBARELF };
static const struct msgspec MEMPTY = { "alice@example.org", { "bob@example.org" }, "" };
static const struct msgspec MBIG = { "alice@example.org", { "bob@example.org" }, BBIG };

struct scenario {
    const char *name;                 /* tests/golden/client/NAME.{in,ref,events} */
    struct smtp_client_config cfg;
    const struct msgspec *msgs[4];    /* queued before any input; NULL-ended */
    bool quit;                        /* smtp_client_quit() after queueing */
};

#define PIPE { .ehlo_name = "client.example", .pipelining = true }
#define PLAIN { .ehlo_name = "client.example" }
static const struct scenario scenarios[] = {
    { "basic", PLAIN, { &M1 }, true },
    { "pipelining", PIPE, { &M1, &M1 }, true },
    { "pipelining_off", PLAIN, { &M1, &M1 }, true },
    { "rset_between", { .ehlo_name = "client.example", .rset_between = true },
      { &M1, &M1, &M1 }, true },
    { "pipelining_rset_between", { .ehlo_name = "client.example", .pipelining = true,
      .rset_between = true }, { &M1, &M1 }, true },
    { "partial_rcpt", PLAIN, { &M2 }, true },
    { "all_rejected", PLAIN, { &M3, &M1 }, true },
    { "all_rejected_pipelined", PIPE, { &M3, &M1 }, true },
    { "all_rejected_pipelined_354", PIPE, { &M1, &M1 }, true },
    { "mail_4xx", PLAIN, { &M1, &M1 }, true },
    { "mail_5xx_pipelined", PIPE, { &M1, &M1 }, true },
    { "rcpt_4xx", PLAIN, { &M1, &M1 }, true },
    { "data_5xx", PLAIN, { &M1, &M1 }, true },
    { "dot_4xx", PLAIN, { &M1, &M1 }, true },
    { "dot_5xx_multiline", PLAIN, { &M1 }, true },
    { "ehlo_rejected", PLAIN, { &M1 }, true },
    { "helo_rejected", PLAIN, { &M1 }, true },
    { "greeting_554", PLAIN, { &M1, &M1 }, true },
    { "greeting_421", PLAIN, { &M1 }, true },
    { "rcpt_421", PLAIN, { &M1, &M1 }, true },
    { "idle_421", PLAIN, { &M1 }, false },
    { "dotstuff", PLAIN, { &MDOT, &MNOEOL, &MEMPTY }, true },
    { "size_exceeded", PLAIN, { &MBIG, &M1 }, true },
    { "garbage", PLAIN, { &M1 }, true },
    { "overlong", { .ehlo_name = "client.example", .max_line = 64 }, { &M1 }, true },
    { "multiline_mismatch", PLAIN, { &M1 }, true },
    { "unexpected_reply", PLAIN, { &M1 }, false },
    { "bare_lf", PLAIN, { &M1 }, true },
    { "bare_lf_message", PLAIN, { &MBARELF, &M1 }, true },
    { "multiline_everywhere", PLAIN, { &M2, &M1 }, true },
};
#define NSCEN (sizeof scenarios / sizeof *scenarios)

/* ---- a growable string ------------------------------------------------ */

struct buf { char *p; size_t len, cap; };

static void buf_add(struct buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1);
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_add(b, tmp, (size_t)n);
}

/* ---- driving the core like a model would, without sockets ------------- */

/* One line per event; '\n' in texts shown as "\n". */
static void event_line(struct buf *log, const struct smtp_client_event *ev)
{
    buf_printf(log, "%s", smtp_client_event_name(ev->type));
    if (ev->type == SMTP_CLIENT_READY) {
        buf_printf(log, " esmtp=%d pipelining=%d size=%llu\n", ev->esmtp,
                   ev->pipelining, (unsigned long long)ev->size_limit);
        return;
    }
    if (ev->type == SMTP_CLIENT_MESSAGE_DONE) {
        buf_printf(log, " user=%d %s stage=%s rcpts=", (int)(intptr_t)ev->user,
                   smtp_client_result_name(ev->result),
                   smtp_client_stage_name(ev->stage));
        for (size_t i = 0; i < ev->nrcpt; i++)
            buf_printf(log, "%s%d", i ? "," : "", ev->rcpt_codes[i]);
        buf_printf(log, " accepted=%zu", ev->naccepted);
    } else if (ev->type == SMTP_CLIENT_CLOSED) {
        buf_printf(log, " %s", smtp_client_result_name(ev->result));
    }
    buf_printf(log, " code=%d%s%s text=\"", ev->code, ev->local ? " local" : "",
               ev->maybe_delivered ? " maybe_delivered" : "");
    for (const char *p = ev->text; *p; p++)
        if (*p == '\n') buf_add(log, "\\n", 2); else buf_add(log, p, 1);
    buf_add(log, "\"\n", 2);
}

struct run {
    struct smtp_client *c;
    struct buf out;        /* every byte the client sent */
    struct buf log;        /* event lines */
    size_t out_step;       /* take output this many bytes at a time; 0 = all */
    int done[8];           /* MESSAGE_DONE count per user number */
    bool closed;           /* CLOSED seen */
    bool after_closed;     /* an event came after CLOSED: a bug */
};

static void drain(struct run *r)
{
    const char *p;
    size_t n;
    while ((n = smtp_client_output(r->c, &p)) > 0) {
        if (r->out_step && n > r->out_step) n = r->out_step;
        buf_add(&r->out, p, n);
        smtp_client_consumed(r->c, n);
    }
    struct smtp_client_event ev;
    while (smtp_client_next_event(r->c, &ev)) {
        if (r->closed) r->after_closed = true;
        if (ev.type == SMTP_CLIENT_MESSAGE_DONE) r->done[(intptr_t)ev.user]++;
        if (ev.type == SMTP_CLIENT_CLOSED) r->closed = true;
        event_line(&r->log, &ev);
    }
}

static size_t run_start(struct run *r, const struct scenario *s, size_t out_step)
{
    memset(r, 0, sizeof *r);
    buf_add(&r->out, "", 0);   /* never NULL, even when nothing is sent */
    buf_add(&r->log, "", 0);
    r->out_step = out_step;
    r->c = smtp_client_new(&s->cfg);
    assert_non_null(r->c);
    size_t n = 0;
    for (; n < 4 && s->msgs[n]; n++) {
        const struct msgspec *m = s->msgs[n];
        size_t nr = 0;
        while (nr < 4 && m->rcpts[nr]) nr++;
        assert_int_equal(smtp_client_send(r->c, m->from, m->rcpts, nr, m->body,
                                          strlen(m->body), (void *)(intptr_t)(n + 1)), 0);
    }
    if (s->quit) smtp_client_quit(r->c);
    drain(r);
    return n;
}

static void run_end(struct run *r)
{
    smtp_client_free(r->c);
    free(r->out.p);
    free(r->log.p);
}

/* Feed `in` in the pieces given by cuts (offsets, ascending, ending at len). */
static void feed_pieces(struct run *r, const char *in, size_t len,
                        const size_t *cuts, size_t ncuts)
{
    size_t at = 0;
    for (size_t i = 0; i < ncuts; i++) {
        smtp_client_feed(r->c, in + at, cuts[i] - at);
        at = cuts[i];
        drain(r);
    }
    assert_int_equal(at, len);
}

/* ---- files ------------------------------------------------------------ */

static char *golden_path(const char *name, const char *ext)
{
    static char path[512];
    const char *dir = getenv("MAILBENCH_GOLDEN") ? getenv("MAILBENCH_GOLDEN")
                                                 : "tests/golden/client";
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    return path;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct buf b = { 0 };
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) buf_add(&b, tmp, n);
    fclose(f);
    if (!b.p) buf_add(&b, "", 0);
    *len = b.len;
    return b.p;
}

static void compare_or_bless(const char *name, const char *ext, const struct buf *got)
{
    size_t len;
    char *want = slurp(golden_path(name, ext), &len);
    if (!want && getenv("SMTP_GOLDEN_BLESS")) {
        FILE *f = fopen(golden_path(name, ext), "wb");
        assert_non_null(f);
        fwrite(got->p, 1, got->len, f);
        fclose(f);
        return;
    }
    if (!want) fail_msg("missing %s", golden_path(name, ext));
    if (len != got->len || memcmp(want, got->p, len) != 0)
        fail_msg("%s.%s differs:\n--- want\n%s\n--- got\n%s", name, ext, want, got->p);
    free(want);
}

/* ---- golden replay ---------------------------------------------------- */

static void check_same(const char *name, const char *how, const struct run *a,
                       const struct run *b)
{
    if (a->out.len != b->out.len || memcmp(a->out.p, b->out.p, a->out.len))
        fail_msg("%s: output differs when %s:\n%s\n--- vs\n%s", name, how,
                 a->out.p, b->out.p);
    if (strcmp(a->log.p, b->log.p))
        fail_msg("%s: events differ when %s:\n%s\n--- vs\n%s", name, how,
                 a->log.p, b->log.p);
}

static void replay_one(const struct scenario *s)
{
    size_t len;
    char *in = slurp(golden_path(s->name, "in"), &len);
    if (!in) fail_msg("missing %s", golden_path(s->name, "in"));

    struct run whole;
    size_t nmsg = run_start(&whole, s, 0);
    feed_pieces(&whole, in, len, &len, 1);
    compare_or_bless(s->name, "ref", &whole.out);
    compare_or_bless(s->name, "events", &whole.log);
    for (size_t m = 1; m <= nmsg; m++)
        if (whole.done[m] != 1)
            fail_msg("%s: message %zu reported %d times", s->name, m, whole.done[m]);
    assert_false(whole.after_closed);

    /* one byte at a time, output one byte at a time */
    struct run bytes;
    run_start(&bytes, s, 1);
    size_t *cuts = malloc((len + 1) * sizeof *cuts);
    for (size_t i = 0; i < len; i++) cuts[i] = i + 1;
    feed_pieces(&bytes, in, len, cuts, len);
    check_same(s->name, "fed one byte at a time", &whole, &bytes);
    run_end(&bytes);

    /* split in two at every offset */
    for (size_t k = 0; k <= len; k++) {
        struct run split;
        run_start(&split, s, 0);
        size_t two[2] = { k, len };
        feed_pieces(&split, in, len, two, 2);
        check_same(s->name, "split in two", &whole, &split);
        run_end(&split);
    }

    /* connection lost after every byte: every message still reported once */
    for (size_t k = 0; k < len; k++) {
        struct run cut;
        run_start(&cut, s, 0);
        size_t one = k;
        feed_pieces(&cut, in, k, &one, 1);
        smtp_client_eof(cut.c);
        drain(&cut);
        for (size_t m = 1; m <= nmsg; m++)
            if (cut.done[m] != 1)
                fail_msg("%s: cut at %zu: message %zu reported %d times\n%s",
                         s->name, k, m, cut.done[m], cut.log.p);
        assert_true(cut.closed);
        assert_false(cut.after_closed);
        assert_true(smtp_client_is_finished(cut.c));
        run_end(&cut);
    }
    free(cuts);
    free(in);
    run_end(&whole);
}

static void test_golden(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSCEN; i++) replay_one(&scenarios[i]);
}

/* ---- targeted cases --------------------------------------------------- */

static const char GREET_EHLO_PIPE[] =
    "220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
static const char GREET_EHLO[] = "220 mx ESMTP\r\n250 mx\r\n";

static struct smtp_client *client(bool pipelining)
{
    struct smtp_client_config cfg = { .ehlo_name = "c", .pipelining = pipelining };
    struct smtp_client *c = smtp_client_new(&cfg);
    assert_non_null(c);
    return c;
}

static void feed_str(struct smtp_client *c, const char *s)
{
    smtp_client_feed(c, s, strlen(s));
}

/* Takes all pending output as one string (the chunk a driver would write
 * with one writev() of every segment). */
static char *take(struct smtp_client *c)
{
    struct iovec iov[64];
    int k = smtp_client_output_iov(c, iov, 64);
    assert_true(k < 64);
    size_t n = 0;
    for (int i = 0; i < k; i++) n += iov[i].iov_len;
    assert_int_equal(n, smtp_client_pending(c));
    char *s = malloc(n + 1), *w = s;
    for (int i = 0; i < k; i++) {
        memcpy(w, iov[i].iov_base, iov[i].iov_len);
        w += iov[i].iov_len;
    }
    s[n] = '\0';
    smtp_client_consumed(c, n);
    return s;
}

static void expect_take(struct smtp_client *c, const char *want)
{
    char *got = take(c);
    assert_string_equal(got, want);
    free(got);
}

static struct smtp_client_event next(struct smtp_client *c, enum smtp_client_event_type t)
{
    struct smtp_client_event ev;
    assert_true(smtp_client_next_event(c, &ev));
    assert_int_equal(ev.type, t);
    return ev;
}

static const char *const BOB[] = { "bob@x" };

/* The body and its terminator come out as one chunk; with PIPELINING the
 * MAIL/RCPT/DATA group does too. */
static void test_one_chunk(void **state)
{
    (void)state;
    struct smtp_client *c = client(true);
    assert_true(smtp_client_wants_input(c));
    assert_false(smtp_client_has_output(c));
    smtp_client_feed(c, GREET_EHLO_PIPE, 14);   /* the greeting */
    expect_take(c, "EHLO c\r\n");
    feed_str(c, GREET_EHLO_PIPE + 14);  /* the EHLO reply */
    struct smtp_client_event ev = next(c, SMTP_CLIENT_READY);
    assert_true(ev.esmtp && ev.pipelining);
    assert_int_equal(ev.size_limit, 1000);
    assert_true(smtp_client_is_idle(c));
    const char *r2[] = { "a@x", "b@x" };
    assert_int_equal(smtp_client_send(c, "s@x", r2, 2, "hi\r\n", 4, NULL), 0);
    assert_false(smtp_client_is_idle(c));
    expect_take(c, "MAIL FROM:<s@x> SIZE=4\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n");
    feed_str(c, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    expect_take(c, "hi\r\n.\r\n");
    assert_false(smtp_client_next_event(c, &ev));
    feed_str(c, "250 queued\r\n");
    ev = next(c, SMTP_CLIENT_MESSAGE_DONE);
    assert_int_equal(ev.result, SMTP_CLIENT_OK);
    assert_int_equal(ev.code, 250);
    assert_string_equal(ev.text, "queued");
    assert_int_equal(ev.naccepted, 2);
    assert_true(smtp_client_is_idle(c));
    assert_false(smtp_client_wants_input(c));
    smtp_client_quit(c);
    expect_take(c, "QUIT\r\n");
    feed_str(c, "221 bye\r\n");
    ev = next(c, SMTP_CLIENT_CLOSED);
    assert_int_equal(ev.result, SMTP_CLIENT_OK);
    assert_true(smtp_client_is_finished(c));
    assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, "x\r\n", 3, NULL), -1);
    smtp_client_free(c);
}

/* Lost after the whole body was written: "maybe delivered"; lost while it
 * was still being written: not. */
static void test_lost_during_data(void **state)
{
    (void)state;
    for (int written = 0; written <= 1; written++) {
        struct smtp_client *c = client(false);
        feed_str(c, GREET_EHLO);
        assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, "hi\r\n", 4, (void *)7), 0);
        free(take(c));
        feed_str(c, "250 ok\r\n");
        expect_take(c, "RCPT TO:<bob@x>\r\n");
        feed_str(c, "250 ok\r\n");
        expect_take(c, "DATA\r\n");
        feed_str(c, "354 go\r\n");
        size_t n = smtp_client_pending(c);
        assert_int_equal(n, 4 + 3);
        smtp_client_consumed(c, written ? n : n - 1);
        smtp_client_eof(c);
        next(c, SMTP_CLIENT_READY);
        struct smtp_client_event ev = next(c, SMTP_CLIENT_MESSAGE_DONE);
        assert_ptr_equal(ev.user, (void *)7);
        assert_int_equal(ev.result, SMTP_CLIENT_TEMPFAIL);
        assert_int_equal(ev.stage, SMTP_CLIENT_STAGE_END_OF_DATA);
        assert_int_equal(ev.code, 0);
        assert_true(ev.local);
        assert_int_equal(ev.maybe_delivered, written);
        assert_string_equal(ev.text, written
            ? "connection lost after end of data, before reply"
            : "connection lost while sending message data");
        ev = next(c, SMTP_CLIENT_CLOSED);
        assert_int_equal(ev.result, SMTP_CLIENT_TEMPFAIL);
        assert_false(smtp_client_next_event(c, &ev));
        smtp_client_free(c);
    }
}

/* A driver timeout: abort with a reason; the texts carry it. */
static void test_abort_reason(void **state)
{
    (void)state;
    struct smtp_client *c = client(false);
    feed_str(c, GREET_EHLO);
    assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, "hi\r\n", 4, NULL), 0);
    assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, "hi\r\n", 4, NULL), 0);
    smtp_client_abort(c, "timeout");
    next(c, SMTP_CLIENT_READY);
    struct smtp_client_event ev = next(c, SMTP_CLIENT_MESSAGE_DONE);
    assert_string_equal(ev.text, "timeout after MAIL, before reply");
    assert_int_equal(ev.stage, SMTP_CLIENT_STAGE_MAIL);
    ev = next(c, SMTP_CLIENT_MESSAGE_DONE);   /* queued, never started */
    assert_int_equal(ev.result, SMTP_CLIENT_TEMPFAIL);
    assert_int_equal(ev.stage, SMTP_CLIENT_STAGE_MAIL);
    assert_string_equal(ev.text, "not sent: timeout after MAIL, before reply");
    next(c, SMTP_CLIENT_CLOSED);
    smtp_client_abort(c, "again");          /* harmless once closed */
    smtp_client_eof(c);
    feed_str(c, "250 late\r\n");
    assert_false(smtp_client_next_event(c, &ev));
    smtp_client_free(c);
}

/* Idle connection closed by the server: just CLOSED. */
static void test_lost_idle(void **state)
{
    (void)state;
    struct smtp_client *c = client(false);
    feed_str(c, GREET_EHLO);
    next(c, SMTP_CLIENT_READY);
    smtp_client_eof(c);
    struct smtp_client_event ev = next(c, SMTP_CLIENT_CLOSED);
    assert_string_equal(ev.text, "connection lost while idle");
    assert_false(smtp_client_next_event(c, &ev));
    smtp_client_free(c);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct smtp_client *c = client(false);
    const char *bad[] = { "a>b@x" };
    const char *crlf[] = { "a@x\r\nRSET" };
    assert_int_equal(smtp_client_send(c, "s@x", BOB, 0, "x", 1, NULL), -1);
    assert_int_equal(smtp_client_send(c, "s@x", bad, 1, "x", 1, NULL), -1);
    assert_int_equal(smtp_client_send(c, "s@x", crlf, 1, "x", 1, NULL), -1);
    assert_int_equal(smtp_client_send(c, "<s@x>", BOB, 1, "x", 1, NULL), -1);
    assert_int_equal(smtp_client_send(c, "", BOB, 1, "x", 1, NULL), 0); /* null sender */
    smtp_client_quit(c);
    assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, "x", 1, NULL), -1);
    smtp_client_free(c);  /* frees the queued message and pending events */
}

/* Messages queued while a transaction is in flight start in order. */
static void test_send_while_busy(void **state)
{
    (void)state;
    struct smtp_client *c = client(false);
    feed_str(c, GREET_EHLO);
    free(take(c));
    assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, "1\r\n", 3, (void *)1), 0);
    expect_take(c, "MAIL FROM:<s@x>\r\n");
    assert_int_equal(smtp_client_send(c, "t@x", BOB, 1, "2\r\n", 3, (void *)2), 0);
    assert_false(smtp_client_has_output(c));
    feed_str(c, "250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n");
    expect_take(c, "RCPT TO:<bob@x>\r\nDATA\r\n1\r\n.\r\nMAIL FROM:<t@x>\r\n");
    smtp_client_free(c);
}

/* max_line counts the CRLF: a line of exactly max_line bytes passes. */
static void test_line_limit(void **state)
{
    (void)state;
    for (int extra = 0; extra <= 1; extra++) {
        struct smtp_client_config cfg = { .max_line = 64 };
        struct smtp_client *c = smtp_client_new(&cfg);
        char line[80];
        memset(line, 'x', sizeof line);
        memcpy(line, "220 ", 4);
        memcpy(line + 62 + extra, "\r\n", 2);
        smtp_client_feed(c, line, 64 + extra);
        struct smtp_client_event ev;
        if (extra) {
            next(c, SMTP_CLIENT_PROTOCOL_ERROR);
        } else {
            expect_take(c, "EHLO localhost\r\n");
            assert_false(smtp_client_next_event(c, &ev));
        }
        smtp_client_free(c);
    }
}

/* A NUL in a reply line is a protocol error: it used to end the text there,
 * so the extensions after it were lost (here PIPELINING and SIZE). */
static void test_reply_nul(void **state)
{
    (void)state;
    static const char ehlo[] = "250-mx\r\n250-X\0Y\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
    struct smtp_client *c = client(true);
    feed_str(c, "220 mx ESMTP\r\n");
    expect_take(c, "EHLO c\r\n");
    smtp_client_feed(c, ehlo, sizeof ehlo - 1);
    struct smtp_client_event ev = next(c, SMTP_CLIENT_PROTOCOL_ERROR);
    assert_string_equal(ev.text, "NUL in reply line \"250-X\"");
    next(c, SMTP_CLIENT_CLOSED);
    smtp_client_free(c);

    static const char greeting[] = "220 mx\0 ESMTP\r\n";     /* in any reply */
    c = client(false);
    assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, "hi\r\n", 4, (void *)1), 0);
    smtp_client_feed(c, greeting, sizeof greeting - 1);
    next(c, SMTP_CLIENT_PROTOCOL_ERROR);
    ev = next(c, SMTP_CLIENT_MESSAGE_DONE);
    assert_int_equal(ev.result, SMTP_CLIENT_TEMPFAIL);
    assert_int_equal(ev.stage, SMTP_CLIENT_STAGE_GREETING);
    next(c, SMTP_CLIENT_CLOSED);
    assert_false(smtp_client_has_output(c));
    smtp_client_free(c);
}

/* SIZE is read strictly (RFC 1870: "SIZE" [SP 1*DIGIT]); anything else is
 * ignored, as if no limit were given (Postfix's client does the same): it
 * used to be strtoull's reading ("SIZE -1" a limit of 2^64-1, "SIZE 12x" a
 * limit of 12 that refused a 20-byte message locally). */
static void test_size_strict(void **state)
{
    (void)state;
    static const struct { const char *line; uint64_t limit; } cases[] = {
        { "SIZE 1000", 1000 }, { "SIZE", 0 }, { "SIZE 0", 0 },
        { "size 77", 77 }, { "SIZE 18446744073709551615", UINT64_MAX },
        { "SIZE -1", 0 }, { "SIZE x", 0 }, { "SIZE 12x", 0 }, { "SIZE +5", 0 },
        { "SIZE  5", 0 }, { "SIZE 5 ", 0 }, { "SIZE ", 0 }, { "SIZE 0x10", 0 },
        { "SIZE 18446744073709551616", 0 }, { "SIZE 99999999999999999999999", 0 },
    };
    static const char body[] = "twenty bytes, here\r\n";   /* 20 > 12 */
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct smtp_client *c = client(false);
        char reply[128];
        snprintf(reply, sizeof reply, "220 mx\r\n250-mx\r\n250 %s\r\n", cases[i].line);
        assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, body, sizeof body - 1, NULL), 0);
        feed_str(c, reply);
        struct smtp_client_event ev = next(c, SMTP_CLIENT_READY);
        if (ev.size_limit != cases[i].limit)
            fail_msg("\"%s\": limit %llu, want %llu", cases[i].line,
                     (unsigned long long)ev.size_limit, (unsigned long long)cases[i].limit);
        char *out = take(c);
        if (cases[i].limit)
            assert_non_null(strstr(out, " SIZE=20\r\n"));
        else
            assert_string_equal(out, "EHLO c\r\nMAIL FROM:<s@x>\r\n");
        free(out);
        assert_false(smtp_client_next_event(c, &ev));
        smtp_client_free(c);
    }
}

/* A bare LF or CR in the message is refused: the message fails at once,
 * permanently, with a local 554, and nothing of it is sent.  It used to be
 * passed through, and the "." after a bare LF was not stuffed, so a lenient
 * server would end DATA there and read what followed as commands. */
static void test_bare_eol_refused(void **state)
{
    (void)state;
    static const struct { const char *body, *why; } bad[] = {
        { "a\n.\r\nMAIL FROM:<evil@x>\r\n", "5.6.0 bare LF at byte 1 of the message "
          "(lines must end in CRLF; not sent)" },
        { "Subject: x\r\n\r\nb\r.\r\n", "5.6.0 bare CR at byte 15 of the message "
          "(lines must end in CRLF; not sent)" },
        { "\n", "5.6.0 bare LF at byte 0 of the message (lines must end in CRLF; not sent)" },
        { "end\r", "5.6.0 bare CR at byte 3 of the message (lines must end in CRLF; not sent)" },
        { "x\r\r\n", "5.6.0 bare CR at byte 1 of the message (lines must end in CRLF; not sent)" },
    };
    for (int pipe = 0; pipe <= 1; pipe++) {
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            struct smtp_client *c = client(pipe);
            feed_str(c, pipe ? GREET_EHLO_PIPE : GREET_EHLO);
            next(c, SMTP_CLIENT_READY);
            free(take(c));
            assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, bad[i].body,
                                              strlen(bad[i].body), (void *)1), 0);
            assert_false(smtp_client_has_output(c));
            struct smtp_client_event ev = next(c, SMTP_CLIENT_MESSAGE_DONE);
            assert_int_equal(ev.result, SMTP_CLIENT_PERMFAIL);
            assert_int_equal(ev.stage, SMTP_CLIENT_STAGE_MAIL);
            assert_int_equal(ev.code, 554);
            assert_true(ev.local);
            assert_string_equal(ev.text, bad[i].why);
            assert_true(smtp_client_is_idle(c));
            /* the session goes on: the next message is sent as usual */
            assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, "ok\r\n", 4, (void *)2), 0);
            char *out = take(c);
            assert_int_equal(strncmp(out, "MAIL FROM:<s@x>", 15), 0);
            free(out);
            smtp_client_free(c);
        }
    }
}

/* SMTP_CLIENT_SAFE: the message goes out as it is, with no scan; with
 * verify_safe (or MAILBENCH_VERIFY_SAFE=1) a false mark fails the message
 * with a local 554 and sends nothing of it; unmarked, the same bytes are
 * still stuffed (or refused) as ever. */
static struct smtp_client *ready_client(bool verify)
{
    struct smtp_client_config cfg = { .ehlo_name = "c", .pipelining = true,
                                      .verify_safe = verify };
    struct smtp_client *c = smtp_client_new(&cfg);
    assert_non_null(c);
    feed_str(c, GREET_EHLO_PIPE);
    next(c, SMTP_CLIENT_READY);
    free(take(c));
    return c;
}

static void test_safe_mark(void **state)
{
    (void)state;
    unsetenv("MAILBENCH_VERIFY_SAFE");
    /* A true mark, verified or not: the body as it is. */
    for (int verify = 0; verify <= 1; verify++) {
        struct smtp_client *c = ready_client(verify);
        static const char ok[] = "Subject: s\r\n\r\nline\r\nx..not first\r\n";
        assert_int_equal(smtp_client_send_flags(c, "s@x", BOB, 1, ok, strlen(ok),
                                                SMTP_CLIENT_SAFE, NULL), 0);
        free(take(c));
        feed_str(c, "250 ok\r\n250 ok\r\n354 go\r\n");
        expect_take(c, "Subject: s\r\n\r\nline\r\nx..not first\r\n.\r\n");
        feed_str(c, "250 queued\r\n");
        assert_int_equal(next(c, SMTP_CLIENT_MESSAGE_DONE).result, SMTP_CLIENT_OK);
        smtp_client_free(c);
    }
    static const struct { const char *body, *why; } lies[] = {
        { "a\r\n.b\r\n", "5.6.0 message marked SMTP-safe but has a line beginning "
          "with \".\" at byte 3 (not sent)" },
        { ".\r\n", "5.6.0 message marked SMTP-safe but has a line beginning with \".\" "
          "at byte 0 (not sent)" },
        { "a\n.\r\n", "5.6.0 message marked SMTP-safe but has a bare LF at byte 1 (not sent)" },
        { "a\rb\r\n", "5.6.0 message marked SMTP-safe but has a bare CR at byte 1 (not sent)" },
    };
    for (size_t i = 0; i < sizeof lies / sizeof *lies; i++) {
        size_t n = strlen(lies[i].body);
        /* verifying: the false mark is caught, nothing is sent */
        struct smtp_client *c = ready_client(true);
        assert_int_equal(smtp_client_send_flags(c, "s@x", BOB, 1, lies[i].body, n,
                                                SMTP_CLIENT_SAFE, NULL), 0);
        assert_false(smtp_client_has_output(c));
        struct smtp_client_event ev = next(c, SMTP_CLIENT_MESSAGE_DONE);
        assert_int_equal(ev.result, SMTP_CLIENT_PERMFAIL);
        assert_int_equal(ev.code, 554);
        assert_true(ev.local);
        assert_string_equal(ev.text, lies[i].why);
        assert_true(smtp_client_is_idle(c));
        smtp_client_free(c);
        /* the environment switch does the same */
        setenv("MAILBENCH_VERIFY_SAFE", "1", 1);
        c = ready_client(false);
        unsetenv("MAILBENCH_VERIFY_SAFE");
        assert_int_equal(smtp_client_send_flags(c, "s@x", BOB, 1, lies[i].body, n,
                                                SMTP_CLIENT_SAFE, NULL), 0);
        assert_false(smtp_client_has_output(c));
        assert_int_equal(next(c, SMTP_CLIENT_MESSAGE_DONE).code, 554);
        smtp_client_free(c);
        /* unmarked: stuffed (the dot lines) or refused (bare CR/LF), as ever */
        c = ready_client(false);
        assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, lies[i].body, n, NULL), 0);
        if (i < 2) {
            free(take(c));
            feed_str(c, "250 ok\r\n250 ok\r\n354 go\r\n");
            expect_take(c, i == 0 ? "a\r\n..b\r\n.\r\n" : "..\r\n.\r\n");
        } else {
            assert_false(smtp_client_has_output(c));
            assert_int_equal(next(c, SMTP_CLIENT_MESSAGE_DONE).code, 554);
        }
        smtp_client_free(c);
        /* marked and not verified: the promise is taken as given (this is
         * what the mark is for: the bytes go out unscanned) */
        c = ready_client(false);
        assert_int_equal(smtp_client_send_flags(c, "s@x", BOB, 1, lies[i].body, n,
                                                SMTP_CLIENT_SAFE, NULL), 0);
        free(take(c));
        feed_str(c, "250 ok\r\n250 ok\r\n354 go\r\n");
        char *out = take(c);
        assert_int_equal(strncmp(out, lies[i].body, n), 0);
        assert_string_equal(out + n, ".\r\n");
        free(out);
        smtp_client_free(c);
    }
}

/* ---- client core against the server core ------------------------------ */

struct rt_server {
    char *body;            /* the last message accepted (copy) */
    size_t size;           /* its length */
    int accepted;          /* messages accepted */
};

static void rt_message(void *arg, const struct smtp_server_message *m)
{
    struct rt_server *r = arg;
    free(r->body);
    r->body = malloc(m->size + 1);
    assert_non_null(r->body);
    memcpy(r->body, m->body, m->size);
    r->size = m->size;
    r->accepted++;
}

/* Moves bytes both ways until the client is finished; returns the
 * MESSAGE_DONE event's code (0 if none). */
static int round_trip(const char *msg, size_t len, struct rt_server *r)
{
    struct smtp_server_config scfg = { .hostname = "mx.example", .keep_body = 1 };
    struct smtp_server_hooks hooks = { NULL, rt_message, r };
    struct smtp_server *s = smtp_server_new(&scfg, &hooks);
    assert_non_null(s);
    struct smtp_client *c = client(true);
    assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, msg, len, NULL), 0);
    smtp_client_quit(c);
    int code = 0, closed = 0;
    smtp_server_greeting(s);
    for (int rounds = 0; rounds < 50 && !smtp_client_is_finished(c); rounds++) {
        size_t n;
        const char *p = smtp_server_output(s, &n);
        smtp_client_feed(c, p, n);
        smtp_server_output_consume(s, n);
        if (closed) smtp_client_eof(c);
        n = smtp_client_output(c, &p);
        if (n > 0 && !closed) closed = smtp_server_feed(s, p, n) == SMTP_SERVER_CLOSE;
        smtp_client_consumed(c, n);
        struct smtp_client_event ev;
        while (smtp_client_next_event(c, &ev))
            if (ev.type == SMTP_CLIENT_MESSAGE_DONE) code = ev.code;
    }
    assert_true(smtp_client_is_finished(c));
    smtp_client_free(c);
    smtp_server_free(s);
    return code;
}

/* A 998-octet text line starting with '.' goes through: the client stuffs
 * it to 999 octets and the server does not count the stuffing dot against
 * its 1,000-octet limit (RFC 5321 4.5.3.1.6); the server gets the line back
 * unstuffed.  One octet more is refused by the server, not cut. */
static void test_round_trip_dot_line(void **state)
{
    (void)state;
    for (size_t line = 998; line <= 999; line++) {
        static const char head[] = "Subject: dots\r\n\r\n";
        size_t len = sizeof head - 1 + line + 2;
        char *msg = malloc(len + 1);
        memcpy(msg, head, sizeof head - 1);
        memset(msg + sizeof head - 1, 'x', line);
        msg[sizeof head - 1] = '.';
        memcpy(msg + len - 2, "\r\n", 3);
        struct rt_server r = { 0 };
        int code = round_trip(msg, len, &r);
        if (line == 998) {
            assert_int_equal(code, 250);
            assert_int_equal(r.accepted, 1);
            assert_int_equal(r.size, len);
            assert_memory_equal(r.body, msg, len);
        } else {
            assert_int_equal(code / 100, 5);
            assert_int_equal(r.accepted, 0);
        }
        free(r.body);
        free(msg);
    }
}

/* ---- dot-stuffing: the memchr scan against the per-byte original ------- */

/* The client's stuffing before issue 16, a byte at a time: the oracle. */
static size_t old_stuff(const char *m, size_t len, char *out)
{
    size_t o = 0, start = 0;
    for (size_t i = 0; i < len; i++) {
        bool line_start = i == 0 || (i >= 2 && m[i - 1] == '\n' && m[i - 2] == '\r');
        if (line_start && m[i] == '.') {
            memcpy(out + o, m + start, i - start);
            o += i - start;
            out[o++] = '.';
            start = i;
        }
    }
    memcpy(out + o, m + start, len - start);
    o += len - start;
    if (len > 0 && (len < 2 || m[len - 2] != '\r' || m[len - 1] != '\n')) {
        memcpy(out + o, "\r\n", 2);
        o += 2;
    }
    memcpy(out + o, ".\r\n", 3);
    return o + 3;
}

/* ... and its bare CR / LF check, a byte at a time. */
static size_t old_bare_eol(const char *msg, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r'))
            return i;
        if (msg[i] == '\r' && (i + 1 == len || msg[i + 1] != '\n'))
            return i;
    }
    return len;
}

static uint64_t prop_rng = 88172645463325252ULL;
static uint64_t rnd(void)
{
    prop_rng ^= prop_rng << 13;
    prop_rng ^= prop_rng >> 7;
    prop_rng ^= prop_rng << 17;
    return prop_rng;
}

/* A random message of CRLF lines: short ones, and ones of exactly 996..1000
 * octets (CRLF included), many beginning with "." or made of dots; the last
 * line may lack its CRLF. */
static size_t random_message(char *m, size_t cap)
{
    size_t len = 0;
    int lines = 1 + (int)(rnd() % 12);
    for (int l = 0; l < lines; l++) {
        size_t n;                               /* octets with the CRLF */
        switch (rnd() % 4) {
        case 0: n = 996 + rnd() % 5; break;     /* 996 .. 1000 */
        default: n = 2 + rnd() % 40; break;
        }
        if (len + n + 2 > cap) break;
        for (size_t i = 0; i < n - 2; i++) {
            uint64_t x = rnd() % 8;
            m[len + i] = x < 3 ? '.' : (char)('a' + x);
        }
        if (n > 2 && rnd() % 2) m[len] = '.';
        memcpy(m + len + n - 2, "\r\n", 2);
        len += n;
    }
    if (len > 2 && rnd() % 5 == 0) len -= 2;    /* no final CRLF */
    return len;
}

/* Connects a pipelining client, queues msg, answers MAIL/RCPT/DATA: the body
 * and terminator are then pending. */
static struct smtp_client *client_at_body(const char *msg, size_t len)
{
    struct smtp_client *c = client(true);
    feed_str(c, "220 mx ESMTP\r\n250-mx\r\n250 PIPELINING\r\n");   /* no SIZE limit */
    struct smtp_client_event ev;
    while (smtp_client_next_event(c, &ev)) {}
    free(take(c));                                  /* EHLO */
    assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, msg, len, NULL), 0);
    free(take(c));                                  /* MAIL RCPT DATA */
    feed_str(c, "250 ok\r\n250 ok\r\n354 go\r\n");
    return c;
}

/* Takes the pending output in pieces of step bytes (1 = a byte at a time),
 * each piece through smtp_client_output(): pieces cross segments. */
static size_t take_stepped(struct smtp_client *c, char *out, size_t step)
{
    size_t o = 0;
    const char *p;
    size_t n;
    while ((n = smtp_client_output(c, &p)) > 0) {
        if (n > step) n = step;
        memcpy(out + o, p, n);
        o += n;
        smtp_client_consumed(c, n);
    }
    return o;
}

struct prop_server { uint64_t hash; uint64_t size; int accepted; };

static void prop_message(void *arg, const struct smtp_server_message *m)
{
    struct prop_server *r = arg;
    r->hash = m->hash;
    r->size = m->size;
    r->accepted++;
}

/* Feeds the DATA text (stuffed, with its terminator) to a server in two
 * pieces split at `cut`; returns the server's reply code to it. */
static int server_takes(const char *wire, size_t n, size_t cut, struct prop_server *r)
{
    struct smtp_server_config scfg = { .hostname = "mx" };
    struct smtp_server_hooks hooks = { NULL, prop_message, r };
    struct smtp_server *s = smtp_server_new(&scfg, &hooks);
    assert_non_null(s);
    size_t k;
    smtp_server_greeting(s);
    const char *pre = "EHLO c\r\nMAIL FROM:<s@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n";
    smtp_server_feed(s, pre, strlen(pre));
    smtp_server_output_consume(s, (smtp_server_output(s, &k), k));
    smtp_server_feed(s, wire, cut);
    smtp_server_feed(s, wire + cut, n - cut);
    const char *out = smtp_server_output(s, &k);
    int code = k >= 3 ? atoi(out) : 0;
    smtp_server_free(s);
    return code;
}

/* Longest line of msg in octets with its CRLF (the stuffing dot is not
 * counted by the server, RFC 5321 4.5.3.1.6). */
static size_t longest_line(const char *m, size_t len)
{
    size_t best = 0, cur = 0;
    for (size_t i = 0; i < len; i++) {
        cur++;
        if (m[i] == '\n') { if (cur > best) best = cur; cur = 0; }
    }
    return cur + 2 > best && cur > 0 ? cur + 2 : best;
}

/* Property: for random messages the client sends exactly what the per-byte
 * stuffing sent, whatever the sizes of the writes; and a server fed the
 * result in two pieces, cut anywhere, gets the message back (its XXH3
 * digest equal to the client's), or refuses it when a line is over 1,000
 * octets. */
static void test_dot_stuffing_property(void **state)
{
    (void)state;
    enum { CAP = 16000 };
    char *m = malloc(CAP), *want = malloc(2 * CAP + 8), *got = malloc(2 * CAP + 8);
    assert_non_null(m);
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = random_message(m, CAP);
        size_t wn = old_stuff(m, len, want);
        struct smtp_client *c = client_at_body(m, len);
        size_t step = iter % 3 == 0 ? 1 : 1 + rnd() % 700;
        size_t gn = take_stepped(c, got, step);
        if (gn != wn || memcmp(got, want, wn) != 0)
            fail_msg("stuffed output differs from the per-byte version (message %d, "
                     "%zu bytes, step %zu)", iter, len, step);
        smtp_client_free(c);
        struct prop_server r = { 0 };
        size_t cut = (size_t)(rnd() % (wn + 1));
        int code = server_takes(want, wn, cut, &r);
        bool ends_crlf = len >= 2 && m[len - 2] == '\r' && m[len - 1] == '\n';
        if (longest_line(m, len) > 1000) {
            assert_int_equal(code, 500);
            assert_int_equal(r.accepted, 0);
        } else {
            assert_int_equal(code, 250);
            assert_int_equal(r.accepted, 1);
            size_t blen = ends_crlf || len == 0 ? len : len + 2;  /* the CRLF added */
            assert_int_equal(r.size, blen);
            memcpy(got, m, len);
            memcpy(got + len, "\r\n", 2);
            assert_true(r.hash == digest_hash(got, blen));
        }
    }
    free(m);
    free(want);
    free(got);
}

/* A "." at every position of a message of short lines, and the stuffed
 * text cut into two pieces at every position (a cut before, on and after
 * every dot, a CR and an LF): the output equals the per-byte version's,
 * and the server gets the message back. */
static void test_dot_every_position(void **state)
{
    (void)state;
    static const char base[] = "Subject: d\r\n\r\nab\r\ncd\r\n\r\nefgh\r\n.\r\nij\r\n";
    size_t blen = sizeof base - 1;
    char m[64], want[160], got[160];
    for (size_t at = 0; at < blen; at++) {
        memcpy(m, base, blen);
        if (m[at] == '\r' || m[at] == '\n') continue;   /* keep the CRLFs */
        m[at] = '.';
        size_t wn = old_stuff(m, blen, want);
        for (size_t step = 1; step <= 9; step += 4) {
            struct smtp_client *c = client_at_body(m, blen);
            size_t gn = take_stepped(c, got, step);
            assert_int_equal(gn, wn);
            assert_memory_equal(got, want, wn);
            smtp_client_free(c);
        }
        for (size_t cut = 0; cut <= wn; cut++) {
            struct prop_server r = { 0 };
            assert_int_equal(server_takes(want, wn, cut, &r), 250);
            assert_int_equal(r.size, blen);
            assert_true(r.hash == digest_hash(m, blen));
        }
    }
}

/* The memchr check for a bare CR or LF reports the byte the per-byte one
 * did, on random bytes rich in CR, LF and ".". */
static void test_bare_eol_property(void **state)
{
    (void)state;
    char m[300];
    static const char alphabet[] = "\r\n\r\n.ab";
    for (int iter = 0; iter < 20000 + 3 * 200; iter++) {
        size_t len = rnd() % sizeof m;
        for (size_t i = 0; i < len; i++) m[i] = alphabet[rnd() % (sizeof alphabet - 1)];
        if (iter >= 20000) {
            /* well-formed lines of 5 octets, then one defect at the end or
             * a CRLF astride every 16- and 64-byte boundary */
            int k = iter - 20000;
            len = 1 + (size_t)(k % 200);
            for (size_t i = 0; i < len; i++) m[i] = "abc\r\n"[i % 5];
            if (k / 200 == 0) m[len - 1] = '\r';          /* ends in a CR */
            if (k / 200 == 1) m[len - 1] = '\n';          /* ends in an LF */
            if (k / 200 == 2 && len > 1) memcpy(m + len - 2, "\r\n", 2);
        }
        size_t want = old_bare_eol(m, len);
        struct smtp_client *c = client(true);
        feed_str(c, GREET_EHLO_PIPE);
        free(take(c));
        assert_int_equal(smtp_client_send(c, "s@x", BOB, 1, m, len, NULL), 0);
        struct smtp_client_event ev;
        bool refused = false;
        while (smtp_client_next_event(c, &ev)) {
            if (ev.type != SMTP_CLIENT_MESSAGE_DONE) continue;
            refused = true;
            char expect_text[64];
            snprintf(expect_text, sizeof expect_text, "at byte %zu of", want);
            assert_non_null(strstr(ev.text, expect_text));
            assert_non_null(strstr(ev.text, m[want] == '\n' ? "bare LF" : "bare CR"));
        }
        assert_int_equal(refused, want < len);
        smtp_client_free(c);
    }
}

/* A server that answers the "." before the body was all written: the
 * message is done, its bytes go back to the caller (here: overwritten),
 * and what was still unsent goes out as it was queued (copied first). */
static void test_early_reply_copies_body(void **state)
{
    (void)state;
    char msg[] = "a\r\n.b\r\nc\r\n";
    char want[64];
    size_t wn = old_stuff(msg, strlen(msg), want);
    struct smtp_client *c = client_at_body(msg, strlen(msg));
    const char *p;
    size_t n = smtp_client_output(c, &p);
    assert_true(n >= 2);
    smtp_client_consumed(c, 2);                 /* "a\r" written */
    feed_str(c, "250 early\r\n");
    struct smtp_client_event ev;
    bool done = false;
    while (smtp_client_next_event(c, &ev))
        done |= ev.type == SMTP_CLIENT_MESSAGE_DONE;
    assert_true(done);
    memset(msg, 'X', strlen(msg));              /* the caller frees or reuses it */
    char got[64];
    size_t gn = take_stepped(c, got, 3);
    assert_int_equal(gn, wn - 2);
    assert_memory_equal(got, want + 2, wn - 2);
    smtp_client_free(c);
}

int main(void)
{
    memset(BBIG, 'x', 198);
    memcpy(BBIG + 198, "\r\n", 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_one_chunk),
        cmocka_unit_test(test_lost_during_data),
        cmocka_unit_test(test_abort_reason),
        cmocka_unit_test(test_lost_idle),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_send_while_busy),
        cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_reply_nul),
        cmocka_unit_test(test_size_strict),
        cmocka_unit_test(test_bare_eol_refused),
        cmocka_unit_test(test_round_trip_dot_line),
        cmocka_unit_test(test_dot_stuffing_property),
        cmocka_unit_test(test_dot_every_position),
        cmocka_unit_test(test_bare_eol_property),
        cmocka_unit_test(test_early_reply_copies_body),
        cmocka_unit_test(test_safe_mark),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
