/* Unit tests for lib/smtp_server: golden transcripts, every input fed one
 * byte at a time, dot-unstuffing and the final "." across every split,
 * Message-ID extraction (NULs included), limits (the stuffing dot not
 * counted), bare CR / LF in DATA (never the end: no smuggling), NUL in
 * commands, long hostnames, and the decision hooks.
 *
 * Golden transcripts: tests/golden/server/NAME.in holds what the client
 * sends (LF in the file, sent as CRLF); NAME.ref holds the server's replies
 * (CRLF shown as LF) with a "** message ..." line where the message hook
 * fired.  Each .in is replayed whole and one byte at a time; both must give
 * the .ref.  MAILBENCH_GOLDEN_UPDATE=1 rewrites the .ref files (review the
 * diff before committing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "smtp_server.h"

#define GOLDEN_DIR "tests/golden/server"

/* A growable string for transcripts. */
struct sbuf { char *p; size_t len, cap; };

static void sb_add(struct sbuf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* What a test session records. */
struct session_log {
    struct sbuf transcript;        /* replies + "** message" lines */
    int nmsg;                      /* message hook calls */
    char body[20000];              /* last message body (keep_body) */
    size_t body_len;               /* its length */
    uint64_t hash;                 /* its hash */
    char msgid[256];               /* its Message-ID, "" if none */
    size_t msgid_len;              /* its length (it may hold NULs) */
    enum smtp_server_stage fail_stage; /* stage where verdict applies */
    enum smtp_server_verdict verdict; /* verdict at fail_stage */
    struct smtp_server *srv;       /* the session, to keep the transcript in order */
};

static void drain(struct smtp_server *s, struct session_log *l);

static enum smtp_server_verdict log_decide(void *arg, enum smtp_server_stage st,
                                           const struct smtp_server_message *m)
{
    struct session_log *l = arg;
    (void)m;
    return st == l->fail_stage ? l->verdict : SMTP_SERVER_VERDICT_ACCEPT;
}

static void log_message(void *arg, const struct smtp_server_message *m)
{
    struct session_log *l = arg;
    drain(l->srv, l);          /* replies so far come before the event */
    char line[1024];
    int n = snprintf(line, sizeof line, "** message from=<%s> rcpts=%zu", m->mail_from, m->nrcpts);
    for (size_t i = 0; i < m->nrcpts; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, " <%s>", m->rcpts[i]);
    n += snprintf(line + n, sizeof line - (size_t)n, " size=%llu id=%s\n",
                  (unsigned long long)m->size, m->message_id ? m->message_id : "-");
    sb_add(&l->transcript, line, (size_t)n);
    assert_true(m->size < sizeof l->body);
    assert_non_null(m->body);
    memcpy(l->body, m->body, m->size);
    l->body_len = m->size;
    l->hash = m->hash;
    snprintf(l->msgid, sizeof l->msgid, "%s", m->message_id ? m->message_id : "");
    assert_true(m->message_id_len < sizeof l->msgid);
    if (m->message_id) {
        memcpy(l->msgid, m->message_id, m->message_id_len);
        assert_int_equal(m->message_id[m->message_id_len], '\0');
    }
    l->msgid_len = m->message_id_len;
    l->nmsg++;
}

static struct smtp_server *new_session(struct session_log *l)
{
    struct smtp_server_config cfg = { .hostname = "mock.test", .max_size = 10000,
                               .max_rcpts = 3, .keep_body = 1 };
    struct smtp_server_hooks hooks = { log_decide, log_message, l };
    struct smtp_server *s = smtp_server_new(&cfg, &hooks);
    assert_non_null(s);
    l->srv = s;
    l->fail_stage = (enum smtp_server_stage)-1;
    return s;
}

/* Moves the server's output into the transcript, CRLF shown as LF. */
static void drain(struct smtp_server *s, struct session_log *l)
{
    size_t n;
    const char *o = smtp_server_output(s, &n);
    for (size_t i = 0; i < n; i++)
        if (!(o[i] == '\r' && i + 1 < n && o[i + 1] == '\n'))
            sb_add(&l->transcript, &o[i], 1);
    smtp_server_output_consume(s, n);
}

/* Runs a whole session: greeting, then input in pieces of `step` bytes
 * (0: all at once).  Returns the transcript (caller frees); *closed tells
 * whether the server asked to close. */
static char *run(const char *in, size_t len, size_t step, struct session_log *l, int *closed)
{
    struct smtp_server *s = new_session(l);
    int rc = smtp_server_greeting(s);
    drain(s, l);
    for (size_t off = 0; off < len && rc == SMTP_SERVER_OK;) {
        size_t n = step && step < len - off ? step : len - off;
        rc = smtp_server_feed(s, in + off, n);
        drain(s, l);
        off += n;
    }
    *closed = rc == SMTP_SERVER_CLOSE;
    smtp_server_free(s);
    if (l->transcript.p == NULL)
        sb_add(&l->transcript, "", 0);
    return l->transcript.p;
}

static char *run_simple(const char *in, size_t step, struct session_log *l)
{
    int closed;
    memset(l, 0, sizeof *l);
    return run(in, strlen(in), step, l, &closed);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    struct sbuf b = { 0 };
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sb_add(&b, buf, n);
    fclose(f);
    if (b.p == NULL)
        sb_add(&b, "", 0);
    *len = b.len;
    return b.p;
}

/* LF -> CRLF, as a client sends it. */
static char *to_crlf(const char *p, size_t n, size_t *out_len)
{
    struct sbuf b = { 0 };
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n')
            sb_add(&b, "\r", 1);
        sb_add(&b, &p[i], 1);
    }
    *out_len = b.len;
    return b.p;
}

static void golden_one(const char *name)
{
    char path[512];
    size_t raw_len, in_len, ref_len;
    snprintf(path, sizeof path, "%s/%s.in", GOLDEN_DIR, name);
    char *raw = read_file(path, &raw_len);
    assert_non_null(raw);
    char *in = to_crlf(raw, raw_len, &in_len);
    struct session_log whole, bytes;
    int c1, c2;
    memset(&whole, 0, sizeof whole);
    memset(&bytes, 0, sizeof bytes);
    char *t1 = run(in, in_len, 0, &whole, &c1);
    char *t2 = run(in, in_len, 1, &bytes, &c2);
    assert_string_equal(t1, t2);      /* byte at a time = all at once */
    assert_int_equal(c1, c2);

    snprintf(path, sizeof path, "%s/%s.ref", GOLDEN_DIR, name);
    const char *update = getenv("MAILBENCH_GOLDEN_UPDATE");
    if (update && strcmp(update, "1") == 0) {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fputs(t1, f);
        fclose(f);
    }
    char *ref = read_file(path, &ref_len);
    if (ref == NULL)
        fail_msg("missing %s (run with MAILBENCH_GOLDEN_UPDATE=1 from the top directory)", path);
    if (strcmp(ref, t1) != 0)
        fprintf(stderr, "golden %s differs; got:\n%s\n", name, t1);
    assert_string_equal(ref, t1);
    free(ref); free(t1); free(t2); free(in); free(raw);
}

static void test_golden(void **state)
{
    (void)state;
    DIR *d = opendir(GOLDEN_DIR);
    if (d == NULL)
        fail_msg("cannot open %s: run from the top directory", GOLDEN_DIR);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 3 && strcmp(e->d_name + n - 3, ".in") == 0) {
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)(n - 3), e->d_name);
            golden_one(name);
            count++;
        }
    }
    closedir(d);
    assert_true(count >= 5);
}

#define HELLO "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"

/* The body is unstuffed exactly and the hash is digest_hash of it,
 * wherever the input is split (every split point into two pieces). */
static void test_unstuff_every_split(void **state)
{
    (void)state;
    const char *in = HELLO "Message-ID: <m1@x>\r\n\r\n..dot\r\n..\r\n...\r\nx.\r\n.x\r\n\r\n.\r\nQUIT\r\n";
    const char *want = "Message-ID: <m1@x>\r\n\r\n.dot\r\n.\r\n..\r\nx.\r\nx\r\n\r\n";
    size_t len = strlen(in);
    for (size_t cut = 0; cut <= len; cut++) {
        struct session_log l;
        memset(&l, 0, sizeof l);
        struct smtp_server *s = new_session(&l);
        smtp_server_greeting(s);
        smtp_server_feed(s, in, cut);
        int rc = smtp_server_feed(s, in + cut, len - cut);
        assert_int_equal(rc, SMTP_SERVER_CLOSE);
        assert_int_equal(l.nmsg, 1);
        assert_int_equal(l.body_len, strlen(want));
        assert_memory_equal(l.body, want, l.body_len);
        assert_true(l.hash == digest_hash(want, strlen(want)));
        assert_string_equal(l.msgid, "<m1@x>");
        smtp_server_free(s);
        free(l.transcript.p);
    }
}

/* A line ".\r" then text (a bare CR: refused at the end), a line of one
 * stuffed dot, and an empty message. */
static void test_odd_dots(void **state)
{
    (void)state;
    struct session_log l;
    char *t = run_simple(HELLO ".\rX\r\n.\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
                         "..\r\n.\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n.\r\n", 1, &l);
    assert_non_null(strstr(t, "354 End data with <CR><LF>.<CR><LF>\n554 Error: bare <CR> received\n"));
    assert_non_null(strstr(t, "size=3 id=-\n250 Ok: queued\n"));
    assert_non_null(strstr(t, "size=0 id=-\n250 Ok: queued\n"));
    assert_int_equal(l.nmsg, 2);
    free(t);
}

/* RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF, "not
 * counting the leading dot duplicated for transparency".  A 998-octet line
 * starting with "." goes out as 999 + CRLF (smtplib does this with an
 * ordinary message) and is accepted; 999 octets are one too many, dot or
 * not.  Whole and one byte at a time. */
static void test_stuffed_dot_not_counted(void **state)
{
    (void)state;
    for (size_t len = 998; len <= 999; len++) {
        for (int dot = 0; dot <= 1; dot++) {
            char line[1001], in[2048];
            memset(line, 'x', len);
            line[0] = dot ? '.' : 'x';
            line[len] = '\0';
            snprintf(in, sizeof in, HELLO "%s%s\r\n.\r\nQUIT\r\n", dot ? "." : "", line);
            for (size_t step = 0; step <= 1; step++) {
                struct session_log l;
                memset(&l, 0, sizeof l);
                int closed;
                char *t = run(in, strlen(in), step, &l, &closed);
                if (len == 998) {
                    if (strstr(t, "250 Ok: queued\n") == NULL)
                        fail_msg("%zu octets, dot %d: not accepted:\n%s", len, dot, t);
                    assert_int_equal(l.body_len, len + 2);
                    assert_memory_equal(l.body, line, len);
                } else if (strstr(t, "500 Line too long\n") == NULL) {
                    fail_msg("%zu octets, dot %d: not refused:\n%s", len, dot, t);
                }
                assert_true(closed);
                free(t);
            }
        }
    }
}

/* SMTP smuggling: RFC 5321 ends DATA only at <CRLF>.<CRLF>.  A bare LF or CR
 * before the "." (<LF>.<CR><LF>, <LF>.<LF>, <CR>.<CR><LF>, <CR><LF>.<LF>,
 * <CR><LF>.<CR>x) never ends it: the "smuggled" transaction after it is
 * message text, the message is refused at the real end with 554 (a protocol
 * error), nothing is accepted, and the session goes on.  Whole, and split
 * at every point. */
static void test_bare_newline_never_ends_data(void **state)
{
    (void)state;
    static const char *const shapes[] = {
        "\n.\r\n", "\n.\n", "\r.\r\n", "\r\n.\n", "\r\n.\rx", "\n", "\r", "\r\r\n",
    };
    static const char smuggled[] = "MAIL FROM:<evil@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n"
                                   "Message-ID: <evil@x>\r\n\r\nevil\r\n.\r\nNOOP\r\n";
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char in[1024];
        snprintf(in, sizeof in, HELLO "Message-ID: <s@x>\r\n\r\nhi%s%s", shapes[i], smuggled);
        size_t len = strlen(in);
        for (size_t cut = 0; cut <= len; cut++) {
            struct session_log l;
            memset(&l, 0, sizeof l);
            struct smtp_server *s = new_session(&l);
            smtp_server_greeting(s);
            assert_int_equal(smtp_server_feed(s, in, cut), SMTP_SERVER_OK);
            assert_int_equal(smtp_server_feed(s, in + cut, len - cut), SMTP_SERVER_OK);
            drain(s, &l);
            const char *want = shapes[i][0] == '\n' || strncmp(shapes[i], "\r\n.\n", 4) == 0
                ? "354 End data with <CR><LF>.<CR><LF>\n554 Error: bare <LF> received\n250 Ok\n"
                : "354 End data with <CR><LF>.<CR><LF>\n554 Error: bare <CR> received\n250 Ok\n";
            if (strstr(l.transcript.p, want) == NULL)
                fail_msg("shape %zu cut %zu: want ...%s in:\n%s", i, cut, want, l.transcript.p);
            assert_int_equal(l.nmsg, 0);
            assert_int_equal(smtp_server_protocol_errors(s), 1);
            assert_int_equal(smtp_server_in_data(s), 0);
            smtp_server_free(s);
            free(l.transcript.p);
        }
    }
}

/* CR LF split across feeds at every point, and a CR at the end of a feed
 * followed by something else: only the real CR LF counts. */
static void test_crlf_across_feeds(void **state)
{
    (void)state;
    static const char ok[] = HELLO "a\r\nb\r\n\r\n.\r\n";
    static const char bare[] = HELLO "a\rb\r\n.\r\n";
    for (int k = 0; k < 2; k++) {
        const char *in = k ? bare : ok;
        size_t len = strlen(in);
        for (size_t cut = 0; cut <= len; cut++) {
            struct session_log l;
            memset(&l, 0, sizeof l);
            struct smtp_server *s = new_session(&l);
            smtp_server_greeting(s);
            smtp_server_feed(s, in, cut);
            smtp_server_feed(s, in + cut, len - cut);
            drain(s, &l);
            assert_int_equal(l.nmsg, k ? 0 : 1);
            assert_non_null(strstr(l.transcript.p, k ? "\n554 " : "\n250 Ok: queued\n"));
            smtp_server_free(s);
            free(l.transcript.p);
        }
    }
}

/* The Message-ID is every byte of the value: one with a NUL is kept whole
 * (two ids that differ after the NUL are two ids). */
static void test_message_id_nul(void **state)
{
    (void)state;
    static const char in[] = HELLO "Message-ID: <a\0b@x> \r\n\r\nx\r\n.\r\n";
    struct session_log l;
    memset(&l, 0, sizeof l);
    int closed;
    free(run(in, sizeof in - 1, 0, &l, &closed));
    assert_int_equal(l.nmsg, 1);
    assert_int_equal(l.msgid_len, 7);
    assert_memory_equal(l.msgid, "<a\0b@x>", 7);
    memset(&l, 0, sizeof l);
    free(run(in, sizeof in - 1, 1, &l, &closed));
    assert_int_equal(l.msgid_len, 7);
    assert_memory_equal(l.msgid, "<a\0b@x>", 7);
}

/* A NUL in a command line refuses the whole line: the handlers read it as a
 * C string, so "QUIT\0x" must not be QUIT, nor "MAIL FROM:<a@x>\0..." a
 * MAIL with the rest cut off. */
static void test_nul_in_command(void **state)
{
    (void)state;
    static const char in[] = "NOOP\0x\r\nRSET\0\r\nEHLO c\r\nMAIL FROM:<a@x>\0 SIZE=x\r\n"
                             "QUIT\0now\r\nNOOP\r\n";
    struct session_log l;
    memset(&l, 0, sizeof l);
    int closed;
    char *t = run(in, sizeof in - 1, 0, &l, &closed);
    assert_string_equal(t, "220 mock.test ESMTP mailbench\n"
                           "500 Error: NUL in command line\n500 Error: NUL in command line\n"
                           "250-mock.test\n250-PIPELINING\n250-SIZE 10000\n250 8BITMIME\n"
                           "500 Error: NUL in command line\n500 Error: NUL in command line\n"
                           "250 Ok\n");
    assert_false(closed);
    free(t);
}

static void test_message_id_forms(void **state)
{
    (void)state;
    struct session_log l;
    free(run_simple(HELLO "Subject: x\r\nmessage-id:   <low@x>  \r\n\r\n.\r\n", 0, &l));
    assert_string_equal(l.msgid, "<low@x>");
    free(run_simple(HELLO "Message-ID:\r\n\t<folded@x>\r\n\r\n.\r\n", 3, &l));
    assert_string_equal(l.msgid, "<folded@x>");
    /* A Message-ID line in the body is not a header. */
    free(run_simple(HELLO "Subject: x\r\n\r\nMessage-ID: <body@x>\r\n.\r\n", 0, &l));
    assert_string_equal(l.msgid, "");
}

/* 512 octets with CRLF is a command; 513 is "500 Line too long". */
static void test_command_line_limit(void **state)
{
    (void)state;
    char in[2048];
    snprintf(in, sizeof in, "NOOP %0505d\r\nNOOP %0506d\r\n", 0, 0);
    assert_int_equal(strlen("NOOP ") + 505 + 2, 512);
    struct session_log l;
    char *t = run_simple(in, 0, &l);
    assert_string_equal(t, "220 mock.test ESMTP mailbench\n250 Ok\n500 Line too long\n");
    free(t);
}

/* Each verdict at each stage gives the right reply and event. */
static void test_verdicts(void **state)
{
    (void)state;
    static const struct {
        enum smtp_server_stage stage;
        enum smtp_server_verdict v;
        const char *expect;   /* substring of the transcript */
        int nmsg, closed;
    } cases[] = {
        { SMTP_SERVER_STAGE_GREETING, SMTP_SERVER_VERDICT_TEMPFAIL, "421 mock.test Service not available", 0, 1 },
        { SMTP_SERVER_STAGE_GREETING, SMTP_SERVER_VERDICT_PERMFAIL, "554 mock.test No SMTP service here\n503 Error: no SMTP service here\n", 0, 1 },
        { SMTP_SERVER_STAGE_GREETING, SMTP_SERVER_VERDICT_DROP, "", 0, 1 },
        { SMTP_SERVER_STAGE_MAIL, SMTP_SERVER_VERDICT_TEMPFAIL, "451 Temporary failure", 0, 1 },
        { SMTP_SERVER_STAGE_MAIL, SMTP_SERVER_VERDICT_PERMFAIL, "550 Sender rejected\n503 Error: need MAIL", 0, 1 },
        { SMTP_SERVER_STAGE_MAIL, SMTP_SERVER_VERDICT_DROP, "250 8BITMIME\n", 0, 1 },
        { SMTP_SERVER_STAGE_RCPT, SMTP_SERVER_VERDICT_TEMPFAIL, "450 Mailbox temporarily", 0, 1 },
        { SMTP_SERVER_STAGE_RCPT, SMTP_SERVER_VERDICT_PERMFAIL, "550 Mailbox unavailable\n503 Error: need RCPT", 0, 1 },
        { SMTP_SERVER_STAGE_DATA, SMTP_SERVER_VERDICT_TEMPFAIL, "451 Requested action aborted", 0, 1 },
        { SMTP_SERVER_STAGE_DATA, SMTP_SERVER_VERDICT_PERMFAIL, "554 Transaction failed", 0, 1 },
        { SMTP_SERVER_STAGE_DATA, SMTP_SERVER_VERDICT_DROP, "354 End data", 1, 1 },
        /* BODY: asked in the same feed as DATA, before the text is read. */
        { SMTP_SERVER_STAGE_BODY, SMTP_SERVER_VERDICT_TEMPFAIL, "354 End data with <CR><LF>.<CR><LF>\n"
          "421 mock.test Service not available, closing transmission channel\n", 0, 1 },
        { SMTP_SERVER_STAGE_BODY, SMTP_SERVER_VERDICT_PERMFAIL, "354 End data with <CR><LF>.<CR><LF>\n421 ", 0, 1 },
        { SMTP_SERVER_STAGE_BODY, SMTP_SERVER_VERDICT_DROP, "354 End data with <CR><LF>.<CR><LF>\n", 0, 1 },
        { SMTP_SERVER_STAGE_BODY, SMTP_SERVER_VERDICT_ACCEPT, "250 Ok: queued\n221 ", 1, 1 },
    };
    const char *in = HELLO "Message-ID: <v@x>\r\n\r\nhi\r\n.\r\nQUIT\r\n";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct session_log l;
        memset(&l, 0, sizeof l);
        struct smtp_server *s = new_session(&l);
        l.fail_stage = cases[i].stage;
        l.verdict = cases[i].v;
        int rc = smtp_server_greeting(s);
        drain(s, &l);
        if (rc == SMTP_SERVER_OK)
            rc = smtp_server_feed(s, in, strlen(in));
        drain(s, &l);
        if (l.transcript.p == NULL)
            sb_add(&l.transcript, "", 0);
        if (strstr(l.transcript.p, cases[i].expect) == NULL)
            fail_msg("case %zu: '%s' not in:\n%s", i, cases[i].expect, l.transcript.p);
        assert_int_equal(l.nmsg, cases[i].nmsg);
        assert_int_equal(rc == SMTP_SERVER_CLOSE, cases[i].closed);
        if (cases[i].v == SMTP_SERVER_VERDICT_DROP) /* no 221, nothing after the drop */
            assert_null(strstr(l.transcript.p, "221"));
        if (cases[i].stage == SMTP_SERVER_STAGE_BODY && cases[i].v != SMTP_SERVER_VERDICT_ACCEPT)
            assert_null(strstr(l.transcript.p, "250 Ok: queued"));   /* never accepted */
        smtp_server_free(s);
        free(l.transcript.p);
    }
}

/* RFC 2920: a pipelining client sends RCPT and DATA before it knows MAIL or
 * RCPT was refused.  The 503s they get are not its mistake: not counted as
 * protocol errors.  The same 503 out of the blue is. */
static void test_pipelined_refusal_not_an_error(void **state)
{
    (void)state;
    static const enum smtp_server_stage stages[] = { SMTP_SERVER_STAGE_MAIL, SMTP_SERVER_STAGE_RCPT };
    for (size_t i = 0; i < 2; i++) {
        struct session_log l;
        memset(&l, 0, sizeof l);
        struct smtp_server *s = new_session(&l);
        l.fail_stage = stages[i];
        l.verdict = i == 0 ? SMTP_SERVER_VERDICT_TEMPFAIL : SMTP_SERVER_VERDICT_PERMFAIL;
        smtp_server_greeting(s);
        const char *in = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n";
        assert_int_equal(smtp_server_feed(s, in, strlen(in)), SMTP_SERVER_OK);
        drain(s, &l);
        assert_non_null(strstr(l.transcript.p, "\n503 Error: need "));
        assert_int_equal(smtp_server_protocol_errors(s), 0);
        /* after RSET the excuse is gone */
        in = "RSET\r\nDATA\r\n";
        assert_int_equal(smtp_server_feed(s, in, strlen(in)), SMTP_SERVER_OK);
        assert_int_equal(smtp_server_protocol_errors(s), 1);
        smtp_server_free(s);
        free(l.transcript.p);
    }
}

static void test_shutdown_and_errors(void **state)
{
    (void)state;
    struct session_log l;
    memset(&l, 0, sizeof l);
    struct smtp_server *s = new_session(&l);
    smtp_server_greeting(s);
    assert_int_equal(smtp_server_feed(s, "BOGUS\r\nMAIL FROM:<a@x>\r\nEHLO", 29), SMTP_SERVER_OK);
    assert_int_equal(smtp_server_protocol_errors(s), 2);
    assert_int_equal(smtp_server_in_data(s), 0);
    smtp_server_shutdown(s, "Idle timeout");
    drain(s, &l);
    assert_non_null(strstr(l.transcript.p, "\n421 mock.test Idle timeout\n"));
    assert_int_equal(smtp_server_feed(s, " x\r\n", 4), SMTP_SERVER_CLOSE);
    smtp_server_free(s);
    free(l.transcript.p);
}

/* Every reply naming the server is whole and CRLF-ended, however long the
 * name (a 1,000-octet name once cut the greeting at 1,023 bytes, no CRLF). */
static void test_long_hostname(void **state)
{
    (void)state;
    char host[256];
    memset(host, 'a', 255);
    host[63] = host[127] = host[191] = '.';
    host[255] = '\0';
    struct smtp_server_config cfg = { .hostname = host };
    struct smtp_server *s = smtp_server_new(&cfg, NULL);
    assert_non_null(s);
    smtp_server_greeting(s);
    const char *in = "EHLO c\r\nQUIT\r\n";
    assert_int_equal(smtp_server_feed(s, in, strlen(in)), SMTP_SERVER_CLOSE);
    char want[2048];
    snprintf(want, sizeof want, "220 %s ESMTP mailbench\r\n250-%s\r\n250-PIPELINING\r\n"
             "250-SIZE 0\r\n250 8BITMIME\r\n221 %s Bye\r\n", host, host, host);
    size_t n;
    const char *out = smtp_server_output(s, &n);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    smtp_server_free(s);
    /* Nor is a long text given to smtp_server_shutdown() cut. */
    char text[3000];
    memset(text, 't', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    s = smtp_server_new(&cfg, NULL);
    assert_non_null(s);
    smtp_server_shutdown(s, text);
    out = smtp_server_output(s, &n);
    assert_int_equal(n, 4 + strlen(host) + 1 + strlen(text) + 2);
    assert_memory_equal(out + n - 4, "tt\r\n", 4);
    smtp_server_free(s);
    /* A name that would break the replies is refused. */
    static const char *const bad[] = { "", "a b", "a\"b", "a\\b", "a\tb", "a\r\nb", "a..b",
                                       ".a", "a.", "-a", "a-", "a_b", "[1.2.3]", "[IPv6:zz]",
                                       "[127.0.0.1", NULL };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.hostname = bad[i];
        if (bad[i] == NULL) {
            char longname[300];
            memset(longname, 'a', 256);
            for (int k = 63; k < 256; k += 64)
                longname[k] = '.';
            longname[256] = '\0';
            cfg.hostname = longname;   /* 256 octets, labels fine: too long */
            assert_false(smtp_server_hostname_valid(longname));
            assert_null(smtp_server_new(&cfg, NULL));
            continue;
        }
        if (smtp_server_hostname_valid(bad[i]))
            fail_msg("'%s' taken as a hostname", bad[i]);
        assert_null(smtp_server_new(&cfg, NULL));
    }
    static const char *const good[] = { "localhost", "mx-1.example.org", "a", "1.2.3.4",
                                        "[192.0.2.1]", "[IPv6:2001:db8::1]", "[ipv6:::1]" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!smtp_server_hostname_valid(good[i]))
            fail_msg("'%s' refused as a hostname", good[i]);
}

static void hash_message(void *arg, const struct smtp_server_message *m)
{
    assert_null(m->body);      /* not kept unless asked */
    assert_string_equal(m->message_id, "<big@x>");
    *(uint64_t *)arg = m->hash;
}

/* A big message (no keep_body) hashed in pieces of odd sizes. */
static void test_large_streamed(void **state)
{
    (void)state;
    struct smtp_server_config cfg = { .hostname = "h", .max_size = 0 };
    struct session_log l;
    memset(&l, 0, sizeof l);
    uint64_t hash = 0;
    struct smtp_server_hooks hooks = { NULL, hash_message, &hash };
    struct smtp_server *s = smtp_server_new(&cfg, &hooks);
    struct sbuf msg = { 0 }, wire = { 0 };
    sb_add(&msg, "Message-ID: <big@x>\r\n\r\n", 23);
    for (int i = 0; i < 5000; i++) {
        char line[64];
        int n = snprintf(line, sizeof line, "%sline %d\r\n", i % 7 ? "" : ".", i);
        sb_add(&msg, line, (size_t)n);
    }
    sb_add(&wire, HELLO, strlen(HELLO));
    for (size_t i = 0; i < msg.len; i++) {   /* dot-stuff */
        if (msg.p[i] == '.' && (i == 0 || msg.p[i - 1] == '\n'))
            sb_add(&wire, ".", 1);
        sb_add(&wire, &msg.p[i], 1);
    }
    sb_add(&wire, ".\r\n", 3);
    for (size_t off = 0, step = 1; off < wire.len; step = step * 3 % 1021 + 1) {
        size_t n = step < wire.len - off ? step : wire.len - off;
        assert_int_equal(smtp_server_feed(s, wire.p + off, n), SMTP_SERVER_OK);
        off += n;
    }
    drain(s, &l);
    assert_non_null(strstr(l.transcript.p, "354 End data with <CR><LF>.<CR><LF>\n250 Ok: queued\n"));
    assert_true(hash == digest_hash(msg.p, msg.len));
    smtp_server_free(s);
    free(msg.p); free(wire.p); free(l.transcript.p);
}

/* Feeds s and returns how many reply batches that feed added. */
static uint64_t feed_batches(struct smtp_server *s, struct smtp_server_counts *k, const char *p)
{
    uint64_t before = k->reply_batches;
    smtp_server_feed(s, p, strlen(p));
    size_t n;
    smtp_server_output(s, &n);
    smtp_server_output_consume(s, n);
    return k->reply_batches - before;
}

/* Commands are counted by verb (refused ones too; anything else as
 * "other"), and each feed that produced replies is one batch; two sessions
 * may share the counters. */
static void test_counts(void **state)
{
    (void)state;
    struct smtp_server_counts k;
    memset(&k, 0, sizeof k);
    struct smtp_server_config cfg = { .hostname = "h", .counts = &k };
    struct smtp_server *a = smtp_server_new(&cfg, NULL), *b = smtp_server_new(&cfg, NULL);
    smtp_server_greeting(a);
    smtp_server_greeting(b);
    assert_int_equal(k.reply_batches, 0);              /* the greeting is not one */
    assert_int_equal(feed_batches(a, &k, "EHLO c\r\nMAIL FROM:<a@x>\r\n"
                                         "RCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n"), 1);
    assert_int_equal(feed_batches(a, &k, "Subject: x\r\n\r\nRSET\r\n"), 0);  /* text */
    assert_int_equal(feed_batches(a, &k, ".\r\n"), 1);
    assert_int_equal(feed_batches(b, &k, "helo c\r\nnoop\r\nRSET\r\nVRFY x\r\nFOO\r\n"
                                         "MAILX\r\nDATA\r\n"), 1);
    static const char nul[] = "NOOP\0x\r\n";
    smtp_server_feed(b, nul, sizeof nul - 1);
    char longline[600];
    memset(longline, 'x', sizeof longline);
    memcpy(longline + sizeof longline - 2, "\r\n", 2);
    smtp_server_feed(b, longline, sizeof longline);
    assert_int_equal(feed_batches(b, &k, "QU"), 0);     /* half a command */
    assert_int_equal(feed_batches(b, &k, "IT\r\n"), 1);
    static const uint64_t want[SMTP_SERVER_CMD_COUNT] = {
        [SMTP_SERVER_CMD_EHLO] = 1, [SMTP_SERVER_CMD_HELO] = 1, [SMTP_SERVER_CMD_MAIL] = 1,
        [SMTP_SERVER_CMD_RCPT] = 2, [SMTP_SERVER_CMD_DATA] = 2, [SMTP_SERVER_CMD_RSET] = 1,
        [SMTP_SERVER_CMD_NOOP] = 1, [SMTP_SERVER_CMD_QUIT] = 1, [SMTP_SERVER_CMD_OTHER] = 5,
    };
    for (int i = 0; i < SMTP_SERVER_CMD_COUNT; i++)
        if (k.commands[i] != want[i])
            fail_msg("%s: %llu, want %llu", smtp_server_cmd_name((enum smtp_server_cmd)i),
                     (unsigned long long)k.commands[i], (unsigned long long)want[i]);
    assert_int_equal(k.reply_batches, 6);
    assert_string_equal(smtp_server_cmd_name(SMTP_SERVER_CMD_OTHER), "other");
    smtp_server_free(a);
    smtp_server_free(b);
}

/* A session object made new with smtp_server_reset serves exactly as a new
 * one: each golden transcript is replayed on an object that first served
 * part of another (left in every state: mid-line, mid-DATA, after errors,
 * closed), and must give the .ref; its protocol error count restarts at 0.
 * Verbs in any case are dispatched as their upper-case forms. */
static void test_reset_reuses(void **state)
{
    (void)state;
    static const char *const names[] = { "basic", "limits", "pipelined", "sequence", "syntax" };
    size_t n = sizeof names / sizeof names[0];
    for (size_t a = 0; a < n; a++) {
        for (size_t b = 0; b < n; b++) {
            char path[512];
            size_t raw_len, in_len, ref_len, bin_len, braw_len;
            snprintf(path, sizeof path, "%s/%s.in", GOLDEN_DIR, names[a]);
            char *raw = read_file(path, &raw_len);
            assert_non_null(raw);
            char *in = to_crlf(raw, raw_len, &in_len);
            snprintf(path, sizeof path, "%s/%s.in", GOLDEN_DIR, names[b]);
            char *braw = read_file(path, &braw_len);
            assert_non_null(braw);
            char *bin = to_crlf(braw, braw_len, &bin_len);
            snprintf(path, sizeof path, "%s/%s.ref", GOLDEN_DIR, names[b]);
            char *ref = read_file(path, &ref_len);
            assert_non_null(ref);
            /* the first session: greeted, then a cut of a's input (a
             * different cut for each pair, the whole of it for b == a) */
            size_t cut = b == a ? in_len : in_len * (b + 1) / (n + 1);
            struct session_log l;
            memset(&l, 0, sizeof l);
            struct smtp_server *s = new_session(&l);
            smtp_server_greeting(s);
            smtp_server_feed(s, in, cut);
            drain(s, &l);
            free(l.transcript.p);
            memset(&l.transcript, 0, sizeof l.transcript);
            l.nmsg = 0;
            /* made new: b's transcript, as from a fresh session */
            smtp_server_reset(s);
            assert_int_equal(smtp_server_protocol_errors(s), 0);
            assert_int_equal(smtp_server_in_data(s), 0);
            int rc = smtp_server_greeting(s);
            drain(s, &l);
            if (rc == SMTP_SERVER_OK)
                smtp_server_feed(s, bin, bin_len);
            drain(s, &l);
            if (l.transcript.p == NULL)
                sb_add(&l.transcript, "", 0);
            if (strcmp(ref, l.transcript.p) != 0)
                fail_msg("%s after part of %s differs; got:\n%s", names[b], names[a], l.transcript.p);
            smtp_server_free(s);
            free(l.transcript.p); free(ref); free(bin); free(braw); free(in); free(raw);
        }
    }
    /* verbs in any case; a verb that differs only in a non-letter is not one */
    struct session_log l;
    char *t = run_simple("eHlO c\r\nmail FROM:<a@x>\r\nRcPt TO:<b@x>\r\ndAtA\r\n.\r\n"
                         "MAI\x0c x\r\nNoOp\r\nrset\r\nQUI\x14\r\nquit\r\n", 0, &l);
    assert_non_null(strstr(t, "250 8BITMIME\n250 Ok\n250 Ok\n354 End data"));
    assert_non_null(strstr(t, "250 Ok: queued\n500 Error: command not recognized\n250 Ok\n250 Ok\n"
                              "500 Error: command not recognized\n221 mock.test Bye\n"));
    assert_int_equal(l.nmsg, 1);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_unstuff_every_split),
        cmocka_unit_test(test_odd_dots),
        cmocka_unit_test(test_stuffed_dot_not_counted),
        cmocka_unit_test(test_bare_newline_never_ends_data),
        cmocka_unit_test(test_crlf_across_feeds),
        cmocka_unit_test(test_message_id_nul),
        cmocka_unit_test(test_nul_in_command),
        cmocka_unit_test(test_message_id_forms),
        cmocka_unit_test(test_command_line_limit),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_pipelined_refusal_not_an_error),
        cmocka_unit_test(test_shutdown_and_errors),
        cmocka_unit_test(test_long_hostname),
        cmocka_unit_test(test_large_streamed),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_reset_reuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
