/* fuzz_smtp_client — libFuzzer harness for lib/smtp_client (the sans-I/O
 * SMTP client core): arbitrary server bytes as replies.
 *
 * Input layout: 3 header bytes, then the server's bytes.
 *   byte 0  bit 0 pipelining, bit 1 rset_between, bit 2 max_line 64,
 *           bit 3 quit() only after the server bytes (else at the start),
 *           bit 4 end with abort("timeout") instead of eof(),
 *           bit 5 queue one more message after the first chunk
 *   byte 1  messages: 1 + (b % 3) queued at the start; bits 2-3 pick the
 *           recipient count of each
 *   byte 2  seed of the read boundaries (chunks of 1..32 bytes; 0 = one feed)
 * Each message body is its own heap copy, freed at its MESSAGE_DONE, so
 * AddressSanitizer catches the core reading a message it no longer borrows.
 * Checked (smtp_client.h contracts):
 *   - every message accepted by send() gets exactly one MESSAGE_DONE, with
 *     its user pointer, rcpt_codes of its recipient count, a non-NULL text;
 *     OK means a 2xx code, stage none and at least one recipient accepted;
 *   - READY comes at most once; CLOSED comes exactly once and is the last
 *     event; after eof()/abort() the session is finished;
 *   - smtp_client_has_output() agrees with smtp_client_output().
 * Seed corpus: tests/fuzz/corpus/fuzz_smtp_client/ (server sides of the
 * golden transcripts in tests/golden/client, behind a header). */
#include "smtp_client.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSGS 4

static const char *const bodies[] = {
    "Message-ID: <f1@fuzz>\r\nSubject: one\r\n\r\n.leading dot\r\nline\r\n",
    "Message-ID: <f2@fuzz>\r\n\r\nno final CRLF\n.\nbare LF",
    "Message-ID: <f3@fuzz>\r\n\r\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
    "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
    ".\r\n..\r\n",
};
static const char *const rcpts[] = { "a@fuzz", "b@fuzz", "c@fuzz" };

struct msg {
    char *bytes;        /* heap copy, freed at MESSAGE_DONE */
    size_t nrcpt;       /* recipients given to send() */
    int done;           /* MESSAGE_DONE events seen */
    bool queued;        /* send() returned 0 */
};

struct run {
    struct msg m[MAX_MSGS];
    int nmsg;
    int ready, closed;  /* events seen */
};

static void queue(struct smtp_client *c, struct run *r, unsigned shape)
{
    struct msg *m = &r->m[r->nmsg];
    const char *b = bodies[shape % 3];
    m->nrcpt = 1 + (shape >> 2) % 3;
    m->bytes = strdup(b);
    if (m->bytes == NULL)
        abort();
    int rc = smtp_client_send(c, "sender@fuzz", rcpts, m->nrcpt, m->bytes, strlen(b),
                              m);
    m->queued = rc == 0;
    if (!m->queued) {
        free(m->bytes);
        m->bytes = NULL;
    }
    r->nmsg++;
}

static void on_done(struct run *r, const struct smtp_client_event *ev)
{
    struct msg *m = ev->user;
    if (m < r->m || m >= r->m + r->nmsg || !m->queued || m->done++ != 0)
        abort();                       /* unknown, never queued, or twice */
    if (ev->nrcpt != m->nrcpt || ev->rcpt_codes == NULL || ev->naccepted > ev->nrcpt)
        abort();
    if (ev->result == SMTP_CLIENT_OK &&
        (ev->code < 200 || ev->code > 299 || ev->stage != SMTP_CLIENT_STAGE_NONE ||
         ev->naccepted == 0))
        abort();
    if (ev->result != SMTP_CLIENT_OK && ev->stage == SMTP_CLIENT_STAGE_NONE)
        abort();
    free(m->bytes);                    /* the core may no longer read it */
    m->bytes = NULL;
}

static void drain(struct smtp_client *c, struct run *r, unsigned *rng)
{
    const char *out;
    size_t n = smtp_client_output(c, &out);
    if ((n > 0) != smtp_client_has_output(c) || (n > 0 && out == NULL))
        abort();
    *rng = *rng * 1103515245u + 12345u;
    if (n > 0)
        smtp_client_consumed(c, (*rng >> 16) % 4 == 0 ? n / 2 : n);  /* short writes */
    struct smtp_client_event ev;
    while (smtp_client_next_event(c, &ev)) {
        if (r->closed || ev.text == NULL)
            abort();                   /* CLOSED must be the last event */
        switch (ev.type) {
        case SMTP_CLIENT_READY:
            if (r->ready++)
                abort();
            break;
        case SMTP_CLIENT_MESSAGE_DONE:
            on_done(r, &ev);
            break;
        case SMTP_CLIENT_CLOSED:
            r->closed = 1;
            break;
        case SMTP_CLIENT_PROTOCOL_ERROR:
            break;
        default:
            abort();
        }
    }
    if (r->closed != smtp_client_is_finished(c))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    struct smtp_client_config cfg = {
        .ehlo_name = "client.fuzz",
        .pipelining = data[0] & 1,
        .rset_between = data[0] & 2,
        .max_line = (data[0] & 4) ? 64 : 0,
    };
    struct smtp_client *c = smtp_client_new(&cfg);
    if (c == NULL)
        return 0;
    struct run r = { .nmsg = 0 };
    int n = 1 + data[1] % 3;
    for (int i = 0; i < n; i++)
        queue(c, &r, (unsigned)(data[1] >> 2) + (unsigned)i * 5);
    if (!(data[0] & 8))
        smtp_client_quit(c);
    unsigned rng = data[2];
    drain(c, &r, &rng);
    const uint8_t *in = data + 3;
    size_t left = size - 3;
    int chunks = 0;
    while (left > 0 && !r.closed) {
        rng = rng * 1103515245u + 12345u;
        size_t k = data[2] ? 1 + (rng >> 16) % 32 : left;
        if (k > left)
            k = left;
        smtp_client_feed(c, in, k);
        in += k;
        left -= k;
        drain(c, &r, &rng);
        if (++chunks == 1 && (data[0] & 32) && r.nmsg < MAX_MSGS) {
            queue(c, &r, data[1]);
            if (r.closed && r.m[r.nmsg - 1].queued)
                abort();               /* send() after the end must fail */
        }
    }
    if (data[0] & 8)
        smtp_client_quit(c);
    drain(c, &r, &rng);
    if (!r.closed) {
        if (data[0] & 16)
            smtp_client_abort(c, "timeout");
        else
            smtp_client_eof(c);
        drain(c, &r, &rng);
    }
    if (!r.closed)
        abort();                       /* eof/abort must end the session */
    for (int i = 0; i < r.nmsg; i++)
        if (r.m[i].queued && r.m[i].done != 1)
            abort();                   /* exactly one MESSAGE_DONE each */
    smtp_client_free(c);
    for (int i = 0; i < r.nmsg; i++)
        free(r.m[i].bytes);
    return 0;
}
