/* smtp_client — the SMTP client protocol core, sans-I/O.
 *
 * One state machine that every model drives (sync, threads, async, hybrid):
 * it holds no socket and reads no clock.  The driver moves bytes and the core
 * says what they mean:
 *
 *     c = smtp_client_new(&cfg);
 *     smtp_client_send(c, from, rcpts, n, msg, len, user);   (any time, queued)
 *     smtp_client_quit(c);                      (after the last message)
 *     loop:
 *         write what smtp_client_output() returns, then smtp_client_consumed(n);
 *         read server bytes -> smtp_client_feed();  EOF/error -> smtp_client_eof();
 *         while (smtp_client_next_event(c, &ev)) handle ev;
 *     until smtp_client_is_finished(c);
 *     smtp_client_free(c);
 *
 * The dialogue (RFC 5321 subset, ESMTP PIPELINING and SIZE):
 *     greeting 220 -> EHLO (rejected: HELO) -> READY event
 *     per message: [RSET] MAIL FROM:<a> [SIZE=n] -> RCPT TO:<r>... -> DATA 354
 *                  -> body, dot-stuffed, and ".\r\n" -> MESSAGE_DONE event
 *     QUIT -> CLOSED event
 *
 * Contracts:
 * - Output.  Bytes to send are a queue of segments: commands in a buffer the
 *   client owns, the DATA body as slices of the message itself (dot-stuffing
 *   splits it at each line that begins with "."; it is never copied while its
 *   MESSAGE_DONE is still to come).  The DATA body and its terminating ".\r\n"
 *   are queued in one step, and with PIPELINING the whole group [RSET] MAIL,
 *   RCPT..., DATA (DATA last, RFC 2920) is too, so a driver that writes
 *   everything smtp_client_output_iov() returns with one writev()/sendmsg()
 *   sends each in one system call (no Nagle / delayed-ACK stall between body
 *   and terminator).  smtp_client_output() gives the first segment alone.
 * - Input.  smtp_client_feed() takes server bytes split anywhere.  Replies may
 *   be multi-line ("250-..." lines then "250 ..."); lines end in CRLF (a bare
 *   LF is tolerated).  A line that is not "ddd", "ddd text" or "ddd-text" with
 *   a code 200..599, a line holding a NUL, a multi-line reply whose codes
 *   differ, a reply nobody asked for (other than 421), or a line longer than
 *   cfg.max_line is a protocol error: PROTOCOL_ERROR event, every pending message fails
 *   (temporary), CLOSED event; the driver should close the connection.
 * - RSET.  After a transaction that failed once the server had accepted MAIL,
 *   RSET is always sent before the next MAIL.  After a successful one, RSET is
 *   sent only if cfg.rset_between is set (Twisted's sendmail does so; the RFC
 *   does not need it).  RSET is sent lazily, in front of the next MAIL (in the
 *   same pipelined group), never just before QUIT.  A non-2xx reply to RSET is
 *   ignored (only 421 ends the session).
 * - Recipients.  Some rejected: the message goes to the accepted ones and the
 *   event lists every RCPT code.  All rejected: no body is sent, the message
 *   fails at stage RCPT with the last RCPT reply.
 * - SIZE.  When the server advertises SIZE, MAIL carries SIZE=<len>; a message
 *   larger than the advertised limit fails at once, permanently, with a local
 *   552 and is not sent.  The keyword is read strictly, "SIZE" [SP 1*DIGIT]
 *   (RFC 1870) with a value that fits in 64 bits; any other shape ("SIZE -1",
 *   "SIZE 12x") is ignored, as Postfix's client does: no limit, no SIZE=.
 * - Failures of the session.  Greeting not 220, or EHLO and HELO both
 *   rejected: every queued message fails with that reply (temporary for 4xx,
 *   permanent for 5xx), QUIT is sent (except for 421) and CLOSED follows.
 *   421 in answer to anything (or unsolicited): the current and queued
 *   messages fail temporarily, CLOSED, no QUIT.
 * - Connection lost.  smtp_client_eof() (or smtp_client_abort() with a reason
 *   such as "timeout") fails the current message temporarily with its stage
 *   and a text such as "connection lost after end of data, before reply";
 *   queued messages fail the same way; CLOSED follows.  Each message gets
 *   exactly one MESSAGE_DONE event, whatever happens.
 * - Messages.  msg is the message as rendered: CRLF lines, ending in CRLF
 *   (if it does not, the core adds CRLF before the terminator).  A CR or LF
 *   that is not part of a CRLF is refused: when its turn comes the message
 *   fails at once, permanently, with a local 554 ("bare LF at byte N") and
 *   nothing of it is sent, so a "." after a bare LF can never end DATA early
 *   at a lenient server (SMTP smuggling).  The message bytes are BORROWED: they must stay valid and unchanged until that
 *   message's MESSAGE_DONE event (the envelope strings are copied).
 * - SMTP-safe messages.  Before a message goes out the core scans it once
 *   (bare CR/LF, lines beginning with "." to stuff): one read of every byte.
 *   A sender that built the message itself and knows it needs neither (every
 *   CR followed by LF and every LF preceded by CR, no line beginning with
 *   ".") may say so with smtp_client_send_flags(..., SMTP_CLIENT_SAFE, ...);
 *   the scan is skipped and the message goes out as it is.  The mark is a
 *   promise the core does not check, unless cfg.verify_safe is set or the
 *   environment has MAILBENCH_VERIFY_SAFE=1 (tests, debugging): then marked
 *   messages are scanned too, and one that is not safe fails at once,
 *   permanently, with a local 554 ("marked SMTP-safe but ...") and nothing
 *   of it is sent.  An unmarked message is always scanned and stuffed.
 * - Event strings and arrays belong to the client and stay valid until the
 *   next smtp_client_next_event() or smtp_client_free() call.
 */
#ifndef MAILBENCH_SMTP_CLIENT_H
#define MAILBENCH_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF. */
#define SMTP_CLIENT_DEFAULT_MAX_LINE 512

struct smtp_client;

struct smtp_client_config {
    const char *ehlo_name;  /* name sent in EHLO/HELO (copied); NULL = "localhost" */
    bool pipelining;        /* use PIPELINING when the server offers it */
    bool rset_between;      /* RSET after successful transactions too */
    size_t max_line;        /* longest reply line accepted, CRLF included;
                               0 = SMTP_CLIENT_DEFAULT_MAX_LINE */
    bool verify_safe;       /* scan SMTP_CLIENT_SAFE messages anyway and fail
                               a false mark (also MAILBENCH_VERIFY_SAFE=1) */
};

/* smtp_client_send_flags() flags. */
#define SMTP_CLIENT_SAFE 1u     /* the sender vouches: no bare CR/LF, no line
                                   beginning with "." (no scan; see above) */

enum smtp_client_event_type {
    SMTP_CLIENT_READY = 1,      /* greeting and EHLO/HELO done */
    SMTP_CLIENT_MESSAGE_DONE,   /* one queued message finished (ok or failed) */
    SMTP_CLIENT_CLOSED,         /* session over: always the last event */
    SMTP_CLIENT_PROTOCOL_ERROR, /* the server sent something unparseable */
};

/* How a message (or the session) ended. */
enum smtp_client_result {
    SMTP_CLIENT_OK = 0,
    SMTP_CLIENT_TEMPFAIL,   /* 4xx, connection lost, timeout: worth a retry */
    SMTP_CLIENT_PERMFAIL,   /* 5xx: do not retry */
};

/* The step of the dialogue at which a message failed. */
enum smtp_client_stage {
    SMTP_CLIENT_STAGE_NONE = 0, /* no failure */
    SMTP_CLIENT_STAGE_GREETING,
    SMTP_CLIENT_STAGE_EHLO, /* EHLO, or the HELO fallback */
    SMTP_CLIENT_STAGE_RSET,
    SMTP_CLIENT_STAGE_MAIL, /* includes "not started" and the local SIZE check */
    SMTP_CLIENT_STAGE_RCPT,
    SMTP_CLIENT_STAGE_DATA, /* the DATA command itself */
    SMTP_CLIENT_STAGE_END_OF_DATA, /* sending the body, or the reply after "." */
    SMTP_CLIENT_STAGE_QUIT,
};

struct smtp_client_event {
    enum smtp_client_event_type type;
    enum smtp_client_result result; /* MESSAGE_DONE, CLOSED */
    enum smtp_client_stage stage;   /* MESSAGE_DONE: where it failed */
    int code;            /* last relevant reply code; 0 = no reply (local) */
    const char *text;    /* reply text (lines joined by '\n', codes removed),
                            or a description when local; never NULL */
    bool local;          /* generated by the client, not a server reply */
    bool maybe_delivered;/* lost after the whole body was written and before
                            the reply: the server may have accepted it, a
                            retry may make a duplicate */
    void *user;          /* MESSAGE_DONE: the pointer given to send() */
    const int *rcpt_codes; /* MESSAGE_DONE: reply code per recipient, in the
                              order given; 0 = no reply */
    size_t nrcpt;        /* length of rcpt_codes */
    size_t naccepted;    /* recipients answered 2xx */
    /* READY: what the server offers */
    bool esmtp;          /* EHLO accepted (false: fell back to HELO) */
    bool pipelining;     /* PIPELINING offered and used (cfg.pipelining) */
    uint64_t size_limit; /* SIZE limit advertised; 0 = none */
};

/* NULL on allocation failure. */
struct smtp_client *smtp_client_new(const struct smtp_client_config *cfg);
void smtp_client_free(struct smtp_client *c);

/* Queue one message transaction.  from and the nrcpt (>= 1) recipients are
 * bare addresses (no <>, CR, LF), copied.  msg/len is borrowed (see above).
 * Returns 0, or -1 when the arguments are invalid or the session is over or
 * quitting (no event is produced then). */
int smtp_client_send(struct smtp_client *c, const char *from,
                     const char *const *rcpts, size_t nrcpt,
                     const char *msg, size_t len, void *user);

/* The same, with flags (SMTP_CLIENT_SAFE or 0). */
int smtp_client_send_flags(struct smtp_client *c, const char *from,
                           const char *const *rcpts, size_t nrcpt,
                           const char *msg, size_t len, unsigned flags, void *user);

/* Send QUIT once every queued message is done. */
void smtp_client_quit(struct smtp_client *c);

/* Server bytes in. */
void smtp_client_feed(struct smtp_client *c, const void *bytes, size_t len);
/* The connection is gone (read returned 0, or an error). */
void smtp_client_eof(struct smtp_client *c);
/* The driver gives up on the session, for the given reason (e.g. "timeout");
 * like eof, with reason in the failure texts.  The driver closes the socket. */
void smtp_client_abort(struct smtp_client *c, const char *reason);

/* Bytes to send, the first segment: returns how many and points *out at
 * them (0: nothing). */
size_t smtp_client_output(struct smtp_client *c, const char **out);
/* Bytes to send, every segment (up to max): fills iov[0..k) and returns k
 * (0: nothing).  They stay valid until smtp_client_consumed() or another
 * call that changes the client. */
int smtp_client_output_iov(struct smtp_client *c, struct iovec *iov, int max);
/* Bytes to send in all (the sum over every segment). */
size_t smtp_client_pending(const struct smtp_client *c);
/* n of those bytes were written (n <= smtp_client_pending()). */
void smtp_client_consumed(struct smtp_client *c, size_t n);

/* Pops the next event into *ev; false when there is none. */
bool smtp_client_next_event(struct smtp_client *c, struct smtp_client_event *ev);

/* Queries for drivers. */
bool smtp_client_wants_input(const struct smtp_client *c); /* a reply is awaited */
bool smtp_client_has_output(const struct smtp_client *c);
bool smtp_client_is_idle(const struct smtp_client *c);  /* READY, nothing queued
                                                            or in flight */
bool smtp_client_is_finished(const struct smtp_client *c); /* CLOSED queued */

/* Names for logs and tests ("MAIL", "end of data", "tempfail"...). */
const char *smtp_client_stage_name(enum smtp_client_stage s);
const char *smtp_client_result_name(enum smtp_client_result r);
const char *smtp_client_event_name(enum smtp_client_event_type t);

#endif
