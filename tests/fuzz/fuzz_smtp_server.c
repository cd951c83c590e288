/* fuzz_smtp_server — libFuzzer harness for lib/smtp_server (the sans-I/O
 * SMTP server core).
 *
 * Input layout: 4 header bytes, then the client's bytes.
 *   byte 0  config: bit 0 keep_body, bit 1 small max_size (64 + byte 3),
 *           bit 2 small max_rcpts (2), bit 3 use the verdict script,
 *           bit 4 call smtp_server_shutdown() at the end if still open
 *   byte 1  verdict script: 4 two-bit verdicts used in turn by decide()
 *   byte 2  seed of the read boundaries (chunks of 1..32 bytes; 0 = one feed)
 *   byte 3  size limit adjustment
 * The client bytes are fed split at those boundaries, as a socket would
 * deliver them, and the output is drained by a varying amount after each
 * feed.  Checked, besides the sanitizers' own checks:
 *   - the output only ever holds whole reply lines "ddd[ -]...\r\n" with a
 *     code 2xx..5xx (a reply is never half-written into the buffer);
 *   - a CLOSE result is final: later feeds return CLOSE and add no output;
 *   - an accepted message: nrcpts >= 1, size within max_size, with
 *     keep_body the body hashes to msg->hash, is empty or ends in CRLF,
 *     has no bare CR or LF (only <CRLF>.<CRLF> ends DATA: no smuggling)
 *     and no line over 998 octets; a Message-ID is non-empty, trimmed,
 *     message_id_len long (NULs may be inside), NUL-terminated, and has no
 *     LF (the core takes any value, not only "<...>").
 * Seed corpus: tests/fuzz/corpus/fuzz_smtp_server/ (the golden transcripts
 * of tests/golden/server, CRLF, behind a header). */
#include "smtp_server.h"
#include "digest.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
    uint8_t flags;          /* byte 0 */
    uint8_t script;         /* byte 1 */
    unsigned ndecide;       /* decide() calls so far, indexes the script */
    uint64_t max_size;      /* the configured limit, 0 = none */
    unsigned max_rcpts;     /* the configured limit (0 = 100) */
    int keep_body;          /* copy of config.keep_body */
};

static enum smtp_server_verdict decide(void *arg, enum smtp_server_stage stage,
                                       const struct smtp_server_message *msg)
{
    struct run *r = arg;
    if (stage != SMTP_SERVER_STAGE_GREETING && msg == NULL)
        abort();
    if (!(r->flags & 8))
        return SMTP_SERVER_VERDICT_ACCEPT;
    unsigned v = (r->script >> (2 * (r->ndecide++ % 4))) & 3;
    return (enum smtp_server_verdict)v;
}

/* Accepted text: CR LF line ends only, lines of at most 998 octets. */
static void check_text(const char *b, size_t n)
{
    size_t line = 0;
    if (n > 0 && (n < 2 || b[n - 2] != '\r' || b[n - 1] != '\n'))
        abort();
    for (size_t i = 0; i < n; i++) {
        if (b[i] == '\r' && (i + 1 == n || b[i + 1] != '\n'))
            abort();
        if (b[i] == '\n') {
            if (i == 0 || b[i - 1] != '\r' || line > 998 + 1 /* its CR */)
                abort();
            line = 0;
        } else {
            line++;
        }
    }
}

static void message(void *arg, const struct smtp_server_message *msg)
{
    struct run *r = arg;
    if (msg == NULL || msg->mail_from == NULL || msg->nrcpts == 0 || msg->rcpts == NULL)
        abort();
    if (msg->nrcpts > (r->max_rcpts ? r->max_rcpts : 100))
        abort();
    for (size_t i = 0; i < msg->nrcpts; i++)
        if (msg->rcpts[i] == NULL)
            abort();
    if (r->max_size && msg->size > r->max_size)
        abort();
    if (msg->message_id) {  /* the core keeps any value, "<...>" or not */
        const char *id = msg->message_id;
        size_t n = msg->message_id_len;
        if (n == 0 || id[n] != '\0' || memchr(id, '\n', n) || id[0] == ' ' ||
            id[0] == '\t' || id[n - 1] == ' ' || id[n - 1] == '\t')
            abort();
    } else if (msg->message_id_len != 0) {
        abort();
    }
    if (r->keep_body) {
        if (msg->body == NULL || digest_hash(msg->body, msg->size) != msg->hash)
            abort();
        check_text(msg->body, msg->size);
    }
}

/* The output must be whole reply lines with codes 200..599. */
static void check_output(const char *out, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (len - i < 5 || out[i] < '2' || out[i] > '5' ||
            out[i + 1] < '0' || out[i + 1] > '9' || out[i + 2] < '0' || out[i + 2] > '9')
            abort();
        if (out[i + 3] != ' ' && out[i + 3] != '-' && out[i + 3] != '\r')
            abort();
        const char *nl = memchr(out + i, '\n', len - i);
        if (nl == NULL || nl == out + i || nl[-1] != '\r')
            abort();
        i = (size_t)(nl - out) + 1;
    }
}

/* Checks and removes part (or all) of the pending output. */
static void drain(struct smtp_server *s, unsigned *rng, int all)
{
    size_t len;
    const char *out = smtp_server_output(s, &len);
    check_output(out, len);
    *rng = *rng * 1103515245u + 12345u;
    size_t n = all ? len : len - len * ((*rng >> 16) % 3) / 4;  /* all, 3/4 or 1/2 */
    if (n == len || memchr(out + n, '\n', len - n) == NULL)
        n = len;                     /* keep only whole lines pending */
    else
        n = (size_t)((const char *)memchr(out + n, '\n', len - n) - out) + 1;
    smtp_server_output_consume(s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    struct run r = { .flags = data[0], .script = data[1] };
    struct smtp_server_config cfg = {
        .hostname = (data[0] & 32) ? "mx.fuzz.example" : NULL,
        .max_size = (data[0] & 2) ? 64u + data[3] : 0,
        .max_rcpts = (data[0] & 4) ? 2 : 0,
        .keep_body = data[0] & 1,
    };
    r.max_size = cfg.max_size;
    r.max_rcpts = cfg.max_rcpts;
    r.keep_body = cfg.keep_body;
    struct smtp_server_hooks hooks = { decide, message, &r };
    struct smtp_server *s = smtp_server_new(&cfg, &hooks);
    if (s == NULL)
        return 0;
    unsigned rng = data[2];
    const char *in = (const char *)data + 4;
    size_t left = size - 4;
    int closed = smtp_server_greeting(s) == SMTP_SERVER_CLOSE;
    drain(s, &rng, 0);
    while (left > 0 && !closed) {
        rng = rng * 1103515245u + 12345u;
        size_t n = data[2] ? 1 + (rng >> 16) % 32 : left;
        if (n > left)
            n = left;
        closed = smtp_server_feed(s, in, n) == SMTP_SERVER_CLOSE;
        in += n;
        left -= n;
        drain(s, &rng, closed);
    }
    if (closed) {
        /* Final: more bytes are ignored and produce nothing. */
        size_t len;
        if (smtp_server_feed(s, "NOOP\r\n", 6) != SMTP_SERVER_CLOSE)
            abort();
        smtp_server_output(s, &len);
        if (len != 0)
            abort();
    } else if (data[0] & 16) {
        smtp_server_shutdown(s, "4.3.2 shutting down");
        size_t len;
        const char *out = smtp_server_output(s, &len);
        check_output(out, len);
    }
    (void)smtp_server_protocol_errors(s);
    (void)smtp_server_in_data(s);
    smtp_server_free(s);
    return 0;
}
