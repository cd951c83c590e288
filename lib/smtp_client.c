/* smtp_client — the SMTP client protocol core (see smtp_client.h).
 *
 * Structure: every command sent pushes an "expectation" (which reply it is
 * waiting for) on a FIFO; every complete reply pops one and goes to that
 * command's *_done handler.  Without PIPELINING each handler sends the next
 * command; with PIPELINING the whole MAIL/RCPT/DATA group is sent at once and
 * the handlers only record, the DATA reply deciding what happens.  The
 * dialogue reads off the function list: send_ehlo/ehlo_done,
 * send_mail/mail_done, send_rcpt/rcpt_done, send_data/data_done,
 * send_body/dot_done, send_rset/rset_done, send_quit/quit_done. */
#include "smtp_client.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* A multi-line reply may not grow beyond this many lines' worth of text. */
#define MAX_REPLY_LINES 64

enum expect_kind { EXP_GREETING, EXP_EHLO, EXP_HELO, EXP_RSET, EXP_MAIL,
                   EXP_RCPT, EXP_DATA, EXP_DOT, EXP_QUIT };

struct expect {
    enum expect_kind kind; /* which command the next reply answers */
    size_t index;          /* EXP_RCPT: which recipient */
};

/* One queued message transaction. */
struct txn {
    struct txn *next;      /* FIFO of messages; the head is the current one */
    void *user;            /* returned in MESSAGE_DONE */
    char *from;            /* envelope sender (owned) */
    char **rcpts;          /* envelope recipients (owned) */
    size_t nrcpt;          /* number of recipients */
    const char *msg;       /* message bytes (borrowed until MESSAGE_DONE) */
    size_t len;            /* message length */
    int *codes;            /* RCPT reply per recipient (0 = none yet) */
    size_t naccepted;      /* recipients answered 2xx */
    int last_rcpt_code;    /* last rejecting RCPT reply ... */
    char *last_rcpt_text;  /* ... and its text (owned) */
    bool started;          /* MAIL (or RSET before it) was sent */
    bool mail_ok;          /* server accepted MAIL: it holds a transaction */
    bool failed;           /* a failure is recorded below (first one wins) */
    enum smtp_client_stage fail_stage;
    int fail_code;
    char *fail_text;       /* owned */
    uint64_t body_end;     /* out_total once ".\r\n" is queued; 0 = not yet */
    size_t *dots;          /* offsets of the "." that begin a line (to stuff) */
    size_t ndots;
    bool safe;             /* SMTP_CLIENT_SAFE: not scanned (unless verifying) */
};

/* A piece of pending output: base + off, len bytes; base NULL = c->out
 * (an offset, so that growing out[] moves nothing). */
struct oseg {
    const char *base;
    size_t off, len;
};

/* An event waiting in the queue, with the storage it points into. */
struct ev_slot {
    struct smtp_client_event ev; /* text/rcpt_codes point at the two below */
    char *text;
    int *codes;
};

enum session { S_GREETING, S_EHLO, S_READY, S_QUITTING, S_CLOSED };

struct smtp_client {
    struct smtp_client_config cfg; /* copy; ehlo_name points at ehlo below */
    char *ehlo;                /* owned EHLO name */
    enum session state;        /* where the session is */
    bool quit_requested;       /* smtp_client_quit() was called */
    bool pipelining;           /* using PIPELINING (offered and wanted) */
    bool pending_rset;         /* RSET goes out before the next MAIL */
    uint64_t size_limit;       /* server's SIZE; 0 = none */
    bool dead;                 /* protocol error / lost: ignore further input */
    int fail_code;             /* why the session failed (greeting, HELO), */
    char *fail_text;           /* reported in CLOSED after the QUIT exchange */

    struct txn *head, *tail;   /* queued messages; head is in progress when
                                  head->started */

    struct expect *exp;        /* FIFO of replies awaited: exp[exp_head..exp_n) */
    size_t exp_head, exp_n, exp_cap;

    /* Pending output: a FIFO of segments, each either bytes in out[] (the
     * commands) or a slice of a borrowed message (the body, sent from where
     * it is: never copied, see send_body). */
    char *out;                 /* owned bytes: out[0..out_len) */
    size_t out_len, out_cap;
    struct oseg *seg;          /* seg[seg_head..seg_n) is what is unsent */
    size_t seg_head, seg_n, seg_cap;
    size_t pending;            /* bytes in those segments */
    uint64_t out_total;        /* bytes ever queued */
    uint64_t out_written;      /* bytes ever consumed */

    char *line;                /* reply line being assembled */
    size_t line_len;           /* bytes in line (without the LF) */
    int reply_code;            /* code of a multi-line reply in progress; 0 */
    char *text;                /* that reply's text so far, lines joined '\n' */
    size_t text_len, text_cap;
    size_t reply_lines;        /* lines in the reply so far */

    struct ev_slot *evq;       /* events not yet taken: evq[ev_head..ev_n) */
    size_t ev_head, ev_n, ev_cap;
    struct ev_slot given;      /* the last event handed out (its storage) */
};

static void dispatch(struct smtp_client *c, int code, const char *text);
static void start_next(struct smtp_client *c);

/* ---- small helpers ---------------------------------------------------- */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) { fprintf(stderr, "smtp_client: out of memory (%zu bytes)\n", n); abort(); }
    return q;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xrealloc(NULL, n), s, n);
}

static enum smtp_client_result classify(int code)
{
    if (code >= 200 && code < 400) return SMTP_CLIENT_OK;
    if (code >= 500) return SMTP_CLIENT_PERMFAIL;
    return SMTP_CLIENT_TEMPFAIL; /* 4xx, or 0: no reply at all */
}

static void seg_push(struct smtp_client *c, const char *base, size_t off, size_t n)
{
    if (c->seg_n == c->seg_cap) {
        c->seg_cap = c->seg_cap ? 2 * c->seg_cap : 8;
        c->seg = xrealloc(c->seg, c->seg_cap * sizeof *c->seg);
    }
    c->seg[c->seg_n++] = (struct oseg){ base, off, n };
}

/* n bytes copied to the owned buffer, in a segment of their own or at the
 * end of the last one when it ends there. */
static void out_append(struct smtp_client *c, const char *p, size_t n)
{
    if (n == 0)
        return;                 /* c->out may be NULL: it is given back when drained */
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 1024;
        while (cap < c->out_len + n) cap *= 2;
        c->out = xrealloc(c->out, cap);
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    struct oseg *last = c->seg_n > c->seg_head ? &c->seg[c->seg_n - 1] : NULL;
    if (last && !last->base && last->off + last->len == c->out_len)
        last->len += n;
    else
        seg_push(c, NULL, c->out_len, n);
    c->out_len += n;
    c->out_total += n;
    c->pending += n;
}

/* n bytes at p sent from where they are (they must outlive their sending,
 * or be copied by out_materialize first). */
static void out_borrow(struct smtp_client *c, const char *p, size_t n)
{
    if (n == 0) return;
    seg_push(c, p, 0, n);
    c->out_total += n;
    c->pending += n;
}

/* Copies every borrowed segment still unsent into the owned buffer: done
 * when a message is reported done (its bytes may be freed then) before its
 * body was all written, which only a misbehaving server causes. */
static void out_materialize(struct smtp_client *c)
{
    for (size_t i = c->seg_head; i < c->seg_n; i++) {
        struct oseg *g = &c->seg[i];
        if (!g->base) continue;
        if (c->out_len + g->len > c->out_cap) {
            size_t cap = c->out_cap ? c->out_cap : 1024;
            while (cap < c->out_len + g->len) cap *= 2;
            c->out = xrealloc(c->out, cap);
            c->out_cap = cap;
        }
        memcpy(c->out + c->out_len, g->base + g->off, g->len);
        *g = (struct oseg){ NULL, c->out_len, g->len };
        c->out_len += g->len;
    }
}

static void out_printf(struct smtp_client *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    assert(n > 0 && (size_t)n < sizeof buf); /* addresses are length-checked */
    out_append(c, buf, (size_t)n);
}

static void expect(struct smtp_client *c, enum expect_kind kind, size_t index)
{
    if (c->exp_n == c->exp_cap) {
        c->exp_cap = c->exp_cap ? 2 * c->exp_cap : 8;
        c->exp = xrealloc(c->exp, c->exp_cap * sizeof *c->exp);
    }
    c->exp[c->exp_n++] = (struct expect){ kind, index };
}

static bool expecting(const struct smtp_client *c)
{
    return c->exp_head < c->exp_n;
}

static struct expect expect_pop(struct smtp_client *c)
{
    struct expect e = c->exp[c->exp_head++];
    if (c->exp_head == c->exp_n) c->exp_head = c->exp_n = 0;
    return e;
}

static enum smtp_client_stage stage_of(enum expect_kind k)
{
    static const enum smtp_client_stage map[] = {
        [EXP_GREETING] = SMTP_CLIENT_STAGE_GREETING, [EXP_EHLO] = SMTP_CLIENT_STAGE_EHLO,
        [EXP_HELO] = SMTP_CLIENT_STAGE_EHLO, [EXP_RSET] = SMTP_CLIENT_STAGE_RSET,
        [EXP_MAIL] = SMTP_CLIENT_STAGE_MAIL, [EXP_RCPT] = SMTP_CLIENT_STAGE_RCPT,
        [EXP_DATA] = SMTP_CLIENT_STAGE_DATA, [EXP_DOT] = SMTP_CLIENT_STAGE_END_OF_DATA,
        [EXP_QUIT] = SMTP_CLIENT_STAGE_QUIT,
    };
    return map[k];
}

/* ---- events ----------------------------------------------------------- */

static struct ev_slot *event_push(struct smtp_client *c,
                                  enum smtp_client_event_type type,
                                  int code, const char *text)
{
    if (c->ev_n == c->ev_cap) {
        c->ev_cap = c->ev_cap ? 2 * c->ev_cap : 2;   /* usually one or two pending */
        c->evq = xrealloc(c->evq, c->ev_cap * sizeof *c->evq);
    }
    struct ev_slot *s = &c->evq[c->ev_n++];
    memset(s, 0, sizeof *s);
    s->ev.type = type;
    s->ev.code = code;
    s->ev.result = classify(code);
    s->text = xstrdup(text ? text : "");
    return s;
}

static void closed_event(struct smtp_client *c, int code, const char *text,
                         enum smtp_client_result result)
{
    struct ev_slot *s = event_push(c, SMTP_CLIENT_CLOSED, code, text);
    s->ev.result = result;
    s->ev.local = code == 0;
    c->state = S_CLOSED;
    c->exp_head = c->exp_n = 0;
}

/* ---- transactions ----------------------------------------------------- */

static void txn_free(struct txn *t)
{
    for (size_t i = 0; i < t->nrcpt; i++) free(t->rcpts[i]);
    free(t->rcpts);
    free(t->from);
    free(t->codes);
    free(t->last_rcpt_text);
    free(t->fail_text);
    free(t->dots);
    free(t);
}

/* Record why the current message failed; the first reason sticks. */
static void txn_fail(struct txn *t, enum smtp_client_stage stage, int code,
                     const char *text)
{
    if (t->failed) return;
    t->failed = true;
    t->fail_stage = stage;
    t->fail_code = code;
    t->fail_text = xstrdup(text);
}

/* Emit MESSAGE_DONE for the head message, unlink and free it.  `ok_code`/
 * `ok_text` are the final reply when the message did not fail. */
static void txn_report(struct smtp_client *c, int ok_code, const char *ok_text,
                       bool local, bool maybe_delivered)
{
    struct txn *t = c->head;
    int code = t->failed ? t->fail_code : ok_code;
    if (t->body_end > c->out_written)
        out_materialize(c);     /* its bytes are the caller's again after this */
    struct ev_slot *s = event_push(c, SMTP_CLIENT_MESSAGE_DONE, code,
                                   t->failed ? t->fail_text : ok_text);
    s->ev.result = t->failed ? (code >= 500 ? SMTP_CLIENT_PERMFAIL
                                            : SMTP_CLIENT_TEMPFAIL)
                             : SMTP_CLIENT_OK;
    s->ev.stage = t->failed ? t->fail_stage : SMTP_CLIENT_STAGE_NONE;
    s->ev.local = local;
    s->ev.maybe_delivered = maybe_delivered;
    s->ev.user = t->user;
    s->codes = t->codes;       /* ownership moves to the event */
    t->codes = NULL;
    s->ev.nrcpt = t->nrcpt;
    s->ev.naccepted = t->naccepted;
    c->head = t->next;
    if (!c->head) c->tail = NULL;
    txn_free(t);
}

/* The current transaction's last reply is in: report it, go on. */
static void finish_txn(struct smtp_client *c, int code, const char *text)
{
    struct txn *t = c->head;
    c->pending_rset = t->failed ? t->mail_ok : c->cfg.rset_between;
    txn_report(c, code, text, false, false);
    start_next(c);
}

/* ---- the dialogue: send_X issues a command, X_done takes its reply ------ */

static void send_ehlo(struct smtp_client *c)
{
    out_printf(c, "EHLO %s\r\n", c->ehlo);
    expect(c, EXP_EHLO, 0);
    c->state = S_EHLO;
}

static void send_helo(struct smtp_client *c)
{
    out_printf(c, "HELO %s\r\n", c->ehlo);
    expect(c, EXP_HELO, 0);
}

static void send_quit(struct smtp_client *c)
{
    out_append(c, "QUIT\r\n", 6);
    expect(c, EXP_QUIT, 0);
    c->state = S_QUITTING;
}

static void send_rset(struct smtp_client *c)
{
    out_append(c, "RSET\r\n", 6);
    expect(c, EXP_RSET, 0);
    c->pending_rset = false;
}

/* "PREFIX<addr>" + (SIZE=n when size) + CRLF, without printf: these two go
 * out with every message. */
static void out_command(struct smtp_client *c, const char *prefix, size_t np,
                        const char *addr, bool size, size_t len)
{
    char buf[300 + 32], *w = buf;       /* addresses: at most 256 (address_ok) */
    size_t na = strlen(addr);
    memcpy(w, prefix, np);
    w += np;
    memcpy(w, addr, na);
    w += na;
    *w++ = '>';
    if (size) {
        char d[20];
        size_t i = sizeof d;
        do {
            d[--i] = (char)('0' + len % 10);
            len /= 10;
        } while (len);
        memcpy(w, " SIZE=", 6);
        memcpy(w + 6, d + i, sizeof d - i);
        w += 6 + sizeof d - i;
    }
    *w++ = '\r';
    *w++ = '\n';
    out_append(c, buf, (size_t)(w - buf));
}

static void send_mail(struct smtp_client *c)
{
    struct txn *t = c->head;
    out_command(c, "MAIL FROM:<", 11, t->from, c->size_limit != 0, t->len);
    expect(c, EXP_MAIL, 0);
}

static void send_rcpt(struct smtp_client *c, size_t i)
{
    out_command(c, "RCPT TO:<", 9, c->head->rcpts[i], false, 0);
    expect(c, EXP_RCPT, i);
}

static void send_data(struct smtp_client *c)
{
    out_append(c, "DATA\r\n", 6);
    expect(c, EXP_DATA, 0);
}

/* The body, dot-stuffed, and ".\r\n", queued in one step: one chunk.  A
 * line (after CRLF, or the first) that begins with "." is sent with one more
 * "."; the bytes go out from the message itself, the segments overlapping
 * by that dot: [start, dot] then [dot, ...), so nothing is copied.  Where the
 * dots are, scan_message found when the message started. */
static void send_body(struct smtp_client *c, const struct txn *t)
{
    const char *m = t->msg;
    size_t len = t->len, start = 0;
    for (size_t k = 0; k < t->ndots; k++) {
        size_t i = t->dots[k];
        out_borrow(c, m + start, i + 1 - start);
        start = i;
    }
    out_borrow(c, m + start, len - start);
    if (len > 0 && (len < 2 || m[len - 2] != '\r' || m[len - 1] != '\n'))
        out_borrow(c, "\r\n.\r\n", 5);
    else
        out_borrow(c, ".\r\n", 3);
    c->head->body_end = c->out_total;
    expect(c, EXP_DOT, 0);
}

/* Every queued message fails: the current one with the stage and text
 * given, the ones not yet started (once the session was ready) at MAIL,
 * "not sent: <text>", so nobody mistakes them for the one that broke. */
static void fail_all(struct smtp_client *c, enum smtp_client_stage stage,
                     int code, const char *text, bool local,
                     bool maybe_delivered)
{
    char queued[300];
    snprintf(queued, sizeof queued, "not sent: %s", text);
    while (c->head) {
        struct txn *t = c->head;
        bool current = t->started, early = stage < SMTP_CLIENT_STAGE_RSET;
        txn_fail(t, current || early ? stage : SMTP_CLIENT_STAGE_MAIL, code,
                 current || early ? text : queued);
        txn_report(c, code, text, local, current && maybe_delivered);
    }
}

static void session_fail(struct smtp_client *c, enum smtp_client_stage stage,
                         int code, const char *text)
{
    fail_all(c, stage, code, text, false, false);
    c->exp_head = c->exp_n = 0;
    c->fail_code = code;
    c->fail_text = xstrdup(text);
    if (code == 421) closed_event(c, code, text, SMTP_CLIENT_TEMPFAIL);
    else send_quit(c);
}

static void greeting_done(struct smtp_client *c, int code, const char *text)
{
    if (code == 220) send_ehlo(c);
    else session_fail(c, SMTP_CLIENT_STAGE_GREETING, code, text);
}

/* The SIZE keyword's line (n bytes at p, "SIZE" matched): RFC 1870's
 * "SIZE" [SP 1*DIGIT] with a value that fits in 64 bits gives the limit (0:
 * none); any other shape ("SIZE -1", "SIZE 12x", an overflow) is ignored,
 * as Postfix's client does: no limit is assumed, and the server still
 * refuses what is too large with 552 after DATA. */
static void parse_size(struct smtp_client *c, const char *p, size_t n)
{
    uint64_t v = 0;
    if (n == 4) {
        c->size_limit = 0;
        return;
    }
    if (p[4] != ' ' || n == 5)
        return;
    for (size_t i = 5; i < n; i++) {
        if (p[i] < '0' || p[i] > '9' || v > (UINT64_MAX - (uint64_t)(p[i] - '0')) / 10)
            return;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    c->size_limit = v;
}

/* EHLO reply lines after the first are keywords: pick PIPELINING and SIZE.
 * The text holds no NUL (reply_line refuses one). */
static void parse_extensions(struct smtp_client *c, const char *text)
{
    const char *p = strchr(text, '\n');
    while (p) {
        p++;
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 10 && strncasecmp(p, "PIPELINING", 10) == 0)
            c->pipelining = c->cfg.pipelining;
        else if (n >= 4 && strncasecmp(p, "SIZE", 4) == 0 && (n == 4 || p[4] == ' '))
            parse_size(c, p, n);
        p = end;
    }
}

static void ready(struct smtp_client *c, bool esmtp)
{
    c->state = S_READY;
    struct ev_slot *s = event_push(c, SMTP_CLIENT_READY, 0, "");
    s->ev.result = SMTP_CLIENT_OK;
    s->ev.esmtp = esmtp;
    s->ev.pipelining = c->pipelining;
    s->ev.size_limit = c->size_limit;
    start_next(c);
}

static void ehlo_done(struct smtp_client *c, int code, const char *text)
{
    if (code / 100 == 2) {
        parse_extensions(c, text);
        ready(c, true);
    } else {
        send_helo(c);
    }
}

static void helo_done(struct smtp_client *c, int code, const char *text)
{
    if (code / 100 == 2) ready(c, false);
    else session_fail(c, SMTP_CLIENT_STAGE_EHLO, code, text);
}

/* Begin the head message: local SIZE check, then [RSET] MAIL (+ the rest of
 * the group when pipelining). */
static void start_txn(struct smtp_client *c)
{
    struct txn *t = c->head;
    t->started = true;
    if (c->pipelining) {
        if (c->pending_rset) send_rset(c);
        send_mail(c);
        for (size_t i = 0; i < t->nrcpt; i++) send_rcpt(c, i);
        send_data(c);
    } else if (c->pending_rset) {
        send_rset(c);       /* rset_done sends MAIL */
    } else {
        send_mail(c);
    }
}

/* One pass over a message before it is sent (scan_message): the offset of
 * the first CR or LF that is not part of a CRLF, or len if there is none;
 * and, when there is none, the offsets of the "." that begin a line (the
 * first byte, or after CRLF), which send_body stuffs.  A message with a bare
 * CR or LF is refused: dot-stuffing goes by CRLF lines, so a "." after a
 * bare LF would go out unstuffed, and a lenient server would end DATA there
 * (the SMTP-smuggling shape).
 *
 * With SSE2 (every x86-64) it looks at 64 bytes at a time: the message is
 * well formed exactly when the LF lanes are the CR lanes shifted by one byte
 * (every CR followed by an LF, every LF preceded by a CR), and a dot begins
 * a line when the lane before it is an LF.  Both are tested in vector lanes
 * (no per-block bit twiddling) and only a block where either fires is looked
 * at again with bit masks to say where.  Elsewhere the same rule a byte at a
 * time. */
static void add_dot(struct txn *t, size_t *cap, size_t at)
{
    if (t->ndots == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        t->dots = xrealloc(t->dots, *cap * sizeof *t->dots);
    }
    t->dots[t->ndots++] = at;
}

#ifdef __SSE2__
/* The 64 bytes at p: bit masks (bit i = byte i) of CR, LF and '.'. */
static inline void block_masks(const char *p, uint64_t *cr, uint64_t *lf, uint64_t *dot)
{
    const __m128i vcr = _mm_set1_epi8('\r'), vlf = _mm_set1_epi8('\n'), vdot = _mm_set1_epi8('.');
    uint64_t c = 0, l = 0, d = 0;
    for (int k = 0; k < 4; k++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * k));
        c |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, vcr)) << (16 * k);
        l |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, vlf)) << (16 * k);
        d |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, vdot)) << (16 * k);
    }
    *cr = c;
    *lf = l;
    *dot = d;
}

static size_t scan_message(struct txn *t)
{
    const char *m = t->msg;
    size_t len = t->len, cap = 0;
    const __m128i vcr = _mm_set1_epi8('\r'), vlf = _mm_set1_epi8('\n'), vdot = _mm_set1_epi8('.');
    /* the last 16 bytes' CR and LF lanes; "an LF before byte 0": it begins a line */
    __m128i pcr = _mm_setzero_si128(), plf = _mm_slli_si128(_mm_set1_epi8(-1), 15);
    char tail[64];
    for (size_t o = 0; o < len; o += 64) {
        const char *p = m + o;
        if (len - o < 64) {                 /* the last bytes, padded with NULs */
            memset(tail, 0, sizeof tail);
            memcpy(tail, p, len - o);
            p = tail;
        }
        /* Fast test, all in vector lanes: an LF lane where the lane before
         * is not a CR (or the reverse), or a dot after an LF. */
        __m128i bad = _mm_setzero_si128(), cr0 = pcr, lf0 = plf;
        for (int k = 0; k < 4; k++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * k));
            __m128i ecr = _mm_cmpeq_epi8(v, vcr), elf = _mm_cmpeq_epi8(v, vlf);
            __m128i cr_before = _mm_or_si128(_mm_slli_si128(ecr, 1), _mm_srli_si128(pcr, 15));
            __m128i lf_before = _mm_or_si128(_mm_slli_si128(elf, 1), _mm_srli_si128(plf, 15));
            bad = _mm_or_si128(bad, _mm_xor_si128(elf, cr_before));
            bad = _mm_or_si128(bad, _mm_and_si128(_mm_cmpeq_epi8(v, vdot), lf_before));
            pcr = ecr;
            plf = elf;
        }
        if (__builtin_expect(_mm_movemask_epi8(bad) == 0, 1))
            continue;
        /* Something in this block: find it with the 64-bit masks. */
        uint64_t cr_carry = (unsigned)_mm_movemask_epi8(cr0) >> 15;
        uint64_t lf_carry = (unsigned)_mm_movemask_epi8(lf0) >> 15;
        uint64_t cr, lf, dot;
        block_masks(p, &cr, &lf, &dot);
        uint64_t want_lf = (cr << 1) | cr_carry;
        if (lf != want_lf) {
            unsigned b = (unsigned)__builtin_ctzll(lf ^ want_lf);
            size_t at = o + b;
            if (!(lf >> b & 1))
                at--;                       /* a CR not followed by an LF */
            return at;
        }
        uint64_t starts = dot & ((lf << 1) | lf_carry);
        for (; starts; starts &= starts - 1)
            add_dot(t, &cap, o + (unsigned)__builtin_ctzll(starts));
    }
    /* the last byte is a CR (its LF would be past the end) */
    return (unsigned)_mm_movemask_epi8(pcr) >> 15 ? len - 1 : len;
}
#else
static size_t scan_message(struct txn *t)
{
    const char *m = t->msg;
    size_t len = t->len, cap = 0;
    for (size_t i = 0; i < len; i++) {
        if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r'))
            return i;
        if (m[i] == '\r' && (i + 1 == len || m[i + 1] != '\n'))
            return i;
        if (m[i] == '.' && (i == 0 || m[i - 1] == '\n'))
            add_dot(t, &cap, i);
    }
    return len;
}
#endif

static void start_next(struct smtp_client *c)
{
    size_t bad;
    while (c->head) {
        struct txn *t = c->head;
        t->ndots = 0;
        if (t->safe && !c->cfg.verify_safe) {
            /* The sender's word (SMTP_CLIENT_SAFE): no pass over the bytes. */
        } else if (t->safe) {
            bad = scan_message(t);
            if (bad < t->len || t->ndots > 0) {
                char why[200];
                snprintf(why, sizeof why, "5.6.0 message marked SMTP-safe but has %s at "
                         "byte %zu (not sent)", bad < t->len ? (t->msg[bad] == '\n'
                         ? "a bare LF" : "a bare CR") : "a line beginning with \".\"",
                         bad < t->len ? bad : t->dots[0]);
                t->ndots = 0;
                txn_fail(t, SMTP_CLIENT_STAGE_MAIL, 554, why);
                txn_report(c, 554, why, true, false);
                continue;
            }
        } else if ((bad = scan_message(t)) < t->len) {
            char why[160];
            snprintf(why, sizeof why, "5.6.0 bare %s at byte %zu of the message "
                     "(lines must end in CRLF; not sent)", t->msg[bad] == '\n' ? "LF" : "CR",
                     bad);
            txn_fail(t, SMTP_CLIENT_STAGE_MAIL, 554, why);
            txn_report(c, 554, why, true, false);
            continue;
        }
        if (c->size_limit && t->len > c->size_limit) {
            char why[128];
            snprintf(why, sizeof why, "5.3.4 message size %zu exceeds the "
                     "server's SIZE limit %llu (not sent)", t->len,
                     (unsigned long long)c->size_limit);
            txn_fail(t, SMTP_CLIENT_STAGE_MAIL, 552, why);
            txn_report(c, 552, why, true, false);
            continue;
        }
        start_txn(c);
        return;
    }
    if (c->quit_requested) send_quit(c);
}

static void rset_done(struct smtp_client *c, int code, const char *text)
{
    (void)code; (void)text; /* RSET must not fail (RFC 5321 4.1.1.5); ignored */
    if (!c->pipelining) send_mail(c);
}

static void mail_done(struct smtp_client *c, int code, const char *text)
{
    struct txn *t = c->head;
    if (code / 100 == 2) {
        t->mail_ok = true;
        if (!c->pipelining) send_rcpt(c, 0);
        return;
    }
    txn_fail(t, SMTP_CLIENT_STAGE_MAIL, code, text);
    if (!c->pipelining) finish_txn(c, code, text);
    /* pipelined: the RCPT and DATA replies are still to come */
}

static void rcpt_done(struct smtp_client *c, size_t i, int code, const char *text)
{
    struct txn *t = c->head;
    t->codes[i] = code;
    if (code / 100 == 2) {
        t->naccepted++;
    } else {
        t->last_rcpt_code = code;
        free(t->last_rcpt_text);
        t->last_rcpt_text = xstrdup(text);
    }
    if (c->pipelining) return;
    if (i + 1 < t->nrcpt) {
        send_rcpt(c, i + 1);
    } else if (t->naccepted > 0) {
        send_data(c);
    } else {
        txn_fail(t, SMTP_CLIENT_STAGE_RCPT, t->last_rcpt_code, t->last_rcpt_text);
        finish_txn(c, code, text);
    }
}

static void data_done(struct smtp_client *c, int code, const char *text)
{
    struct txn *t = c->head;
    if (!t->failed && t->naccepted == 0)    /* pipelined: all RCPTs refused */
        txn_fail(t, SMTP_CLIENT_STAGE_RCPT, t->last_rcpt_code, t->last_rcpt_text);
    if (code == 354 && t->failed) {
        /* A server that accepts DATA without recipients: end the empty
         * message (RFC 2920 3.1) and ignore what it says of it. */
        out_append(c, ".\r\n", 3);
        expect(c, EXP_DOT, 0);
    } else if (code == 354) {
        send_body(c, t);
    } else {
        txn_fail(t, SMTP_CLIENT_STAGE_DATA, code, text);
        finish_txn(c, code, text);
    }
}

static void dot_done(struct smtp_client *c, int code, const char *text)
{
    if (code / 100 != 2) txn_fail(c->head, SMTP_CLIENT_STAGE_END_OF_DATA, code, text);
    finish_txn(c, code, text);
}

static void quit_done(struct smtp_client *c, int code, const char *text)
{
    if (c->fail_text) closed_event(c, c->fail_code, c->fail_text, classify(c->fail_code));
    else closed_event(c, code, text, classify(code));
}

/* ---- reply parsing ---------------------------------------------------- */

static void protocol_error(struct smtp_client *c, const char *fmt, ...)
{
    char why[256], full[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    event_push(c, SMTP_CLIENT_PROTOCOL_ERROR, 0, why)->ev.local = true;
    snprintf(full, sizeof full, "protocol error: %s", why);
    enum smtp_client_stage stage = expecting(c)
        ? stage_of(c->exp[c->exp_head].kind) : SMTP_CLIENT_STAGE_MAIL;
    fail_all(c, stage, 0, full, true, false);
    closed_event(c, 0, full, SMTP_CLIENT_TEMPFAIL);
    c->dead = true;
}

/* Route a complete reply to the handler of the command it answers. */
static void dispatch(struct smtp_client *c, int code, const char *text)
{
    if (!expecting(c)) {
        if (code == 421) {     /* server shutting down an idle session */
            fail_all(c, SMTP_CLIENT_STAGE_MAIL, code, text, false, false);
            closed_event(c, code, text, SMTP_CLIENT_TEMPFAIL);
        } else {
            protocol_error(c, "unexpected reply %d %.100s", code, text);
        }
        return;
    }
    struct expect e = expect_pop(c);
    if (code == 421 && e.kind != EXP_QUIT) {
        if (e.kind == EXP_RCPT) c->head->codes[e.index] = code;
        fail_all(c, stage_of(e.kind), code, text, false, false);
        closed_event(c, code, text, SMTP_CLIENT_TEMPFAIL);
        return;
    }
    switch (e.kind) {
    case EXP_GREETING: greeting_done(c, code, text); break;
    case EXP_EHLO:     ehlo_done(c, code, text); break;
    case EXP_HELO:     helo_done(c, code, text); break;
    case EXP_RSET:     rset_done(c, code, text); break;
    case EXP_MAIL:     mail_done(c, code, text); break;
    case EXP_RCPT:     rcpt_done(c, e.index, code, text); break;
    case EXP_DATA:     data_done(c, code, text); break;
    case EXP_DOT:      dot_done(c, code, text); break;
    case EXP_QUIT:     quit_done(c, code, text); break;
    }
}

static void text_append(struct smtp_client *c, const char *p, size_t n)
{
    if (c->text_len + n + 2 > c->text_cap) {
        c->text_cap = 2 * (c->text_len + n + 2);
        c->text = xrealloc(c->text, c->text_cap);
    }
    if (c->reply_lines > 0) c->text[c->text_len++] = '\n';
    memcpy(c->text + c->text_len, p, n);
    c->text_len += n;
    c->text[c->text_len] = '\0';
}

/* One reply line, without its CRLF. */
static void reply_line(struct smtp_client *c, const char *l, size_t n)
{
    if (n < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' ||
        l[2] < '0' || l[2] > '9' || (n > 3 && l[3] != ' ' && l[3] != '-')) {
        protocol_error(c, "malformed reply line \"%.*s\"", (int)(n < 80 ? n : 80), l);
        return;
    }
    /* The text is kept as a C string: a NUL would cut it (and hide the EHLO
     * keywords after it). */
    const char *nul = memchr(l, '\0', n);
    if (nul) {
        protocol_error(c, "NUL in reply line \"%.*s\"", (int)(nul - l < 80 ? nul - l : 80), l);
        return;
    }
    int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    if (c->reply_code && code != c->reply_code) {
        protocol_error(c, "reply code %d inside a multi-line %d reply", code,
                       c->reply_code);
        return;
    }
    if (c->reply_lines >= MAX_REPLY_LINES) {
        protocol_error(c, "reply longer than %d lines", MAX_REPLY_LINES);
        return;
    }
    text_append(c, n > 4 ? l + 4 : "", n > 4 ? n - 4 : 0);
    c->reply_lines++;
    if (n > 3 && l[3] == '-') {
        c->reply_code = code;
        return;
    }
    c->reply_code = 0;
    c->reply_lines = 0;
    c->text_len = 0;
    dispatch(c, code, c->text);
}

void smtp_client_feed(struct smtp_client *c, const void *bytes, size_t len)
{
    const char *p = bytes, *end = p + len;
    size_t max = c->cfg.max_line - 2; /* content, CRLF excluded */
    while (p < end && !c->dead && c->state != S_CLOSED) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        /* allow one byte past max for the CR of CRLF */
        if (c->line_len + n > max + 1) {
            protocol_error(c, "reply line longer than %zu bytes", c->cfg.max_line);
            return;
        }
        if (c->line_len == 0 && nl) {     /* a whole line here: read it in place */
            size_t l = n > 0 && p[n - 1] == '\r' ? n - 1 : n;
            const char *line = p;
            p = nl + 1;
            if (l > max) {
                protocol_error(c, "reply line longer than %zu bytes", c->cfg.max_line);
                return;
            }
            reply_line(c, line, l);
            continue;
        }
        /* A line cut by the read: kept here until its end comes.  The buffer
         * exists only meanwhile (not max_line bytes in every idle session). */
        if (c->line == NULL && (c->line = malloc(c->cfg.max_line)) == NULL) {
            fprintf(stderr, "smtp_client: out of memory (%zu bytes)\n", c->cfg.max_line);
            abort();
        }
        memcpy(c->line + c->line_len, p, n);
        c->line_len += n;
        p += n;
        if (!nl) return;
        p++;
        size_t l = c->line_len;
        if (l > 0 && c->line[l - 1] == '\r') l--;
        c->line_len = 0;
        if (l > max) {
            protocol_error(c, "reply line longer than %zu bytes", c->cfg.max_line);
            return;
        }
        reply_line(c, c->line, l);
        free(c->line);
        c->line = NULL;
    }
}

/* ---- connection loss -------------------------------------------------- */

void smtp_client_abort(struct smtp_client *c, const char *reason)
{
    if (c->state == S_CLOSED) return;
    c->dead = true;
    if (c->state == S_QUITTING && !c->head) {
        if (c->fail_text)
            closed_event(c, c->fail_code, c->fail_text, classify(c->fail_code));
        else
            closed_event(c, 0, "connection closed before the QUIT reply",
                         SMTP_CLIENT_OK);
        return;
    }
    char text[200];
    enum smtp_client_stage stage = SMTP_CLIENT_STAGE_MAIL;
    bool maybe = false;
    if (!expecting(c)) {
        snprintf(text, sizeof text, "%s while idle", reason);
    } else {
        enum expect_kind k = c->exp[c->exp_head].kind;
        static const char *const what[] = {
            [EXP_GREETING] = "before greeting", [EXP_EHLO] = "after EHLO, before reply",
            [EXP_HELO] = "after HELO, before reply", [EXP_RSET] = "after RSET, before reply",
            [EXP_MAIL] = "after MAIL, before reply", [EXP_RCPT] = "after RCPT, before reply",
            [EXP_DATA] = "after DATA, before reply", [EXP_DOT] = "after end of data, before reply",
            [EXP_QUIT] = "after QUIT, before reply",
        };
        stage = stage_of(k);
        const char *w = what[k];
        if (k == EXP_DOT && c->head && c->head->body_end > c->out_written)
            w = "while sending message data";
        else if (k == EXP_DOT && c->head && !c->head->failed)
            maybe = true;
        snprintf(text, sizeof text, "%s %s", reason, w);
    }
    fail_all(c, stage, 0, text, true, maybe);
    closed_event(c, 0, text, SMTP_CLIENT_TEMPFAIL);
    /* The stage given up in, for a driver that had no message queued yet
     * (the reactor's session waits for READY before it sends one). */
    c->evq[c->ev_n - 1].ev.stage = stage;
}

void smtp_client_eof(struct smtp_client *c)
{
    smtp_client_abort(c, "connection lost");
}

/* ---- public API ------------------------------------------------------- */

struct smtp_client *smtp_client_new(const struct smtp_client_config *cfg)
{
    struct smtp_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->cfg = *cfg;
    if (!c->cfg.max_line) c->cfg.max_line = SMTP_CLIENT_DEFAULT_MAX_LINE;
    if (c->cfg.max_line < 8) c->cfg.max_line = 8;
    const char *v = getenv("MAILBENCH_VERIFY_SAFE");
    if (v && strcmp(v, "1") == 0) c->cfg.verify_safe = true;
    c->ehlo = strdup(cfg->ehlo_name ? cfg->ehlo_name : "localhost");
    if (!c->ehlo) goto err;             /* c->line: only for a line cut by a read */
    c->cfg.ehlo_name = c->ehlo;
    c->state = S_GREETING;
    expect(c, EXP_GREETING, 0);
    return c;
err:
    free(c->ehlo);
    free(c->line);
    free(c);
    return NULL;
}

void smtp_client_free(struct smtp_client *c)
{
    if (!c) return;
    while (c->head) {
        struct txn *t = c->head;
        c->head = t->next;
        txn_free(t);
    }
    for (size_t i = c->ev_head; i < c->ev_n; i++) {
        free(c->evq[i].text);
        free(c->evq[i].codes);
    }
    free(c->given.text);
    free(c->given.codes);
    free(c->evq);
    free(c->exp);
    free(c->out);
    free(c->seg);
    free(c->line);
    free(c->text);
    free(c->ehlo);
    free(c->fail_text);
    free(c);
}

static bool address_ok(const char *a)
{
    return a && strlen(a) <= 256 && !strpbrk(a, "<>\r\n");
}

int smtp_client_send(struct smtp_client *c, const char *from,
                     const char *const *rcpts, size_t nrcpt,
                     const char *msg, size_t len, void *user)
{
    return smtp_client_send_flags(c, from, rcpts, nrcpt, msg, len, 0, user);
}

int smtp_client_send_flags(struct smtp_client *c, const char *from,
                           const char *const *rcpts, size_t nrcpt,
                           const char *msg, size_t len, unsigned flags, void *user)
{
    if (c->state >= S_QUITTING || c->dead || c->quit_requested || nrcpt == 0 ||
        (!msg && len) || !address_ok(from))
        return -1;
    for (size_t i = 0; i < nrcpt; i++)
        if (!address_ok(rcpts[i])) return -1;
    struct txn *t = xrealloc(NULL, sizeof *t);
    memset(t, 0, sizeof *t);
    t->user = user;
    t->from = xstrdup(from);
    t->rcpts = xrealloc(NULL, nrcpt * sizeof *t->rcpts);
    for (size_t i = 0; i < nrcpt; i++) t->rcpts[i] = xstrdup(rcpts[i]);
    t->nrcpt = nrcpt;
    t->codes = calloc(nrcpt, sizeof *t->codes);
    if (!t->codes) abort();
    t->msg = msg;
    t->len = len;
    t->safe = (flags & SMTP_CLIENT_SAFE) != 0;
    if (c->tail) c->tail->next = t; else c->head = t;
    c->tail = t;
    if (c->state == S_READY && c->head == t && !expecting(c))
        start_next(c);     /* idle session: start now; else when its turn comes */
    return 0;
}

void smtp_client_quit(struct smtp_client *c)
{
    if (c->quit_requested || c->state >= S_QUITTING) return;
    c->quit_requested = true;
    if (c->state == S_READY && !c->head && !expecting(c)) send_quit(c);
}

size_t smtp_client_output(struct smtp_client *c, const char **out)
{
    if (c->seg_head == c->seg_n) {
        *out = "";
        return 0;
    }
    const struct oseg *g = &c->seg[c->seg_head];
    *out = (g->base ? g->base : c->out) + g->off;
    return g->len;
}

int smtp_client_output_iov(struct smtp_client *c, struct iovec *iov, int max)
{
    int k = 0;
    for (size_t i = c->seg_head; i < c->seg_n && k < max; i++, k++) {
        const struct oseg *g = &c->seg[i];
        iov[k].iov_base = (char *)(g->base ? g->base : c->out) + g->off;
        iov[k].iov_len = g->len;
    }
    return k;
}

size_t smtp_client_pending(const struct smtp_client *c)
{
    return c->pending;
}

void smtp_client_consumed(struct smtp_client *c, size_t n)
{
    assert(n <= c->pending);
    c->pending -= n;
    c->out_written += n;
    while (n > 0) {
        struct oseg *g = &c->seg[c->seg_head];
        size_t k = n < g->len ? n : g->len;
        g->off += k;
        g->len -= k;
        n -= k;
        if (g->len == 0) c->seg_head++;
    }
    if (c->seg_head == c->seg_n) {
        c->seg_head = c->seg_n = 0;
        c->out_len = 0;
        /* The buffer is given back once sent, whatever its size: a session
         * spends most of its life waiting for a reply, and with 10,000
         * sessions the idle buffers would be most of the memory (the first
         * 1 KB was kept too: a sixth of an in-flight email; a malloc per
         * flight costs far less than the flight). */
        if (c->out_cap > 0) {
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
        if (c->seg_cap > 0) {
            free(c->seg);
            c->seg = NULL;
            c->seg_cap = 0;
        }
    }
}

bool smtp_client_next_event(struct smtp_client *c, struct smtp_client_event *ev)
{
    free(c->given.text);
    free(c->given.codes);
    memset(&c->given, 0, sizeof c->given);
    if (c->ev_head == c->ev_n) return false;
    c->given = c->evq[c->ev_head++];
    if (c->ev_head == c->ev_n) c->ev_head = c->ev_n = 0;
    *ev = c->given.ev;
    ev->text = c->given.text;
    ev->rcpt_codes = c->given.codes;
    return true;
}

bool smtp_client_wants_input(const struct smtp_client *c)
{
    return c->state != S_CLOSED && expecting(c);
}

bool smtp_client_has_output(const struct smtp_client *c)
{
    return c->pending > 0;
}

bool smtp_client_is_idle(const struct smtp_client *c)
{
    return c->state == S_READY && !c->head && !expecting(c) && !c->quit_requested;
}

bool smtp_client_is_finished(const struct smtp_client *c)
{
    return c->state == S_CLOSED;
}

const char *smtp_client_stage_name(enum smtp_client_stage s)
{
    static const char *const names[] = {
        "none", "greeting", "EHLO", "RSET", "MAIL", "RCPT", "DATA",
        "end of data", "QUIT",
    };
    return (unsigned)s < sizeof names / sizeof *names ? names[s] : "?";
}

const char *smtp_client_result_name(enum smtp_client_result r)
{
    return r == SMTP_CLIENT_OK ? "ok" : r == SMTP_CLIENT_TEMPFAIL ? "tempfail"
                                                                  : "permfail";
}

const char *smtp_client_event_name(enum smtp_client_event_type t)
{
    switch (t) {
    case SMTP_CLIENT_READY: return "READY";
    case SMTP_CLIENT_MESSAGE_DONE: return "MESSAGE_DONE";
    case SMTP_CLIENT_CLOSED: return "CLOSED";
    case SMTP_CLIENT_PROTOCOL_ERROR: return "PROTOCOL_ERROR";
    }
    return "?";
}
