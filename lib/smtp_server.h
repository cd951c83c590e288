/* smtp_server — the sans-I/O SMTP server core (RFC 5321 subset).
 *
 * No sockets, no clocks: the caller feeds the bytes it read with
 * smtp_server_feed() and sends what smtp_server_output() holds.  Replies to
 * pipelined commands that arrive in one feed are appended to the same output
 * buffer, so the caller can send them in one write.
 *
 * Dialogue: greeting; EHLO/HELO (EHLO advertises PIPELINING, SIZE,
 * 8BITMIME); MAIL FROM (SIZE=, BODY=); RCPT TO; DATA, with dot-stuffing
 * undone and <CRLF>.<CRLF> found across any read boundaries; RSET, NOOP,
 * VRFY, QUIT; any number of messages per session.  Error replies:
 *   500 unknown command, command line over 512 octets or holding a NUL,
 *       text line over 1000 (the stuffing dot not counted, RFC 5321
 *       4.5.3.1.6)
 *   502 known command not implemented      503 bad sequence of commands
 *   501 syntax error in arguments          555 unknown MAIL/RCPT parameter
 *   552 message over the size limit        452 too many recipients
 *   554 a bare CR or LF in the message text (see below)
 *
 * Line ends.  A command line ends at LF (a CR before it is dropped: a bare
 * LF is tolerated there).  The message text is strict, as RFC 5321 2.3.8
 * and RFC 5322 2.3 require and as Postfix does with smtpd_forbid_bare_newline:
 * only CR LF ends a text line, so DATA ends only at <CRLF>.<CRLF>; a bare LF
 * or CR (<LF>.<CR><LF>, <CR>.<CR><LF>, the SMTP-smuggling shapes) never ends
 * it, the text runs on to the real end and the message is refused with 554
 * (a protocol error): what follows a smuggled "." is never read as commands.
 * Every reply is a whole CRLF-ended line, however long the hostname.
 *
 * Events reach the caller through hooks (smtp_server_hooks), called
 * synchronously from inside smtp_server_greeting()/smtp_server_feed():
 *   decide(stage)  before the success reply at the greeting, MAIL, RCPT and
 *                  end of DATA, and when the message text starts (BODY):
 *                  lets the caller inject a 4xx, a 5xx or a dropped
 *                  connection (the core never delays: the caller holds the
 *                  output as long as it likes);
 *   message(msg)   a message was accepted (verdict ACCEPT, or DROP at end of
 *                  DATA: accepted, then the connection is dropped without
 *                  the 250 — the client will retry, a duplicate).
 * Session opened = smtp_server_greeting(); session closed = feed returning
 * SMTP_SERVER_CLOSE (after QUIT's 221, a 421, or a drop).
 *
 * The body is not kept unless config.keep_body is set: the core hashes it
 * with digest_update() as it streams and picks the Message-ID header out of
 * the header lines, so memory per session stays small (about 2 KB). */
#ifndef MAILBENCH_SMTP_SERVER_H
#define MAILBENCH_SMTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#define SMTP_SERVER_MAX_CMD_LINE  512   /* RFC 5321 4.5.3.1.4, CRLF included */
#define SMTP_SERVER_MAX_TEXT_LINE 1000  /* RFC 5321 4.5.3.1.6, CRLF included */

/* Where a decision hook is called. */
enum smtp_server_stage {
    SMTP_SERVER_STAGE_GREETING,  /* before the 220 */
    SMTP_SERVER_STAGE_MAIL,      /* before MAIL's 250 */
    SMTP_SERVER_STAGE_RCPT,      /* before each RCPT's 250 (rcpt index in msg->nrcpts) */
    SMTP_SERVER_STAGE_DATA,      /* after the final ".", before the 250 */
    SMTP_SERVER_STAGE_BODY       /* after the 354, before the first byte of text is
                             read (in the same feed as DATA, or later):
                             TEMPFAIL and PERMFAIL give 421 and close (no 5xx
                             exists in the middle of DATA), DROP closes; the
                             message is then never accepted */
};

/* What the caller wants the server to do at a stage. */
enum smtp_server_verdict {
    SMTP_SERVER_VERDICT_ACCEPT, /* the normal success reply */
    SMTP_SERVER_VERDICT_TEMPFAIL, /* a 4xx (421 and close at the greeting) */
    SMTP_SERVER_VERDICT_PERMFAIL, /* a 5xx (554 at the greeting: then only QUIT works) */
    SMTP_SERVER_VERDICT_DROP /* close without a reply (after accepting, at DATA) */
};

/* A message (complete at SMTP_SERVER_STAGE_DATA, in progress before).  Pointers
 * are valid only during the hook call. */
struct smtp_server_message {
    const char *mail_from;     /* reverse-path without <>, "" for the null sender */
    const char *const *rcpts;  /* forward-paths without <> (NULL before DATA) */
    size_t nrcpts;             /* recipients accepted so far */
    uint64_t size;             /* body bytes after dot-unstuffing, without ".\r\n" */
    uint64_t hash;             /* digest_hash() of those bytes */
    const char *message_id;    /* "<...>" from the Message-ID header, or NULL;
                                  NUL-terminated, but may hold NULs itself: */
    size_t message_id_len;     /* its length in bytes (compare all of them) */
    const char *body;          /* the bytes, only with config.keep_body, else NULL */
};

struct smtp_server_hooks {
    /* Verdict for a stage; NULL means always ACCEPT. */
    enum smtp_server_verdict (*decide)(void *arg, enum smtp_server_stage stage,
                                       const struct smtp_server_message *msg);
    /* A message was accepted; may be NULL. */
    void (*message)(void *arg, const struct smtp_server_message *msg);
    void *arg;                 /* passed to both */
};

/* What clients sent, by command verb (for tests that compare clients'
 * exchanges).  Counted per command line, refused ones too. */
enum smtp_server_cmd {
    SMTP_SERVER_CMD_EHLO, SMTP_SERVER_CMD_HELO, SMTP_SERVER_CMD_MAIL, SMTP_SERVER_CMD_RCPT,
    SMTP_SERVER_CMD_DATA, SMTP_SERVER_CMD_RSET, SMTP_SERVER_CMD_NOOP, SMTP_SERVER_CMD_QUIT,
    SMTP_SERVER_CMD_OTHER,     /* any other verb, or a line too long / with a NUL */
    SMTP_SERVER_CMD_COUNT      /* number of the above */
};

/* Counters the caller owns; any number of sessions of one thread may share
 * them (smtp_server_config.counts). */
struct smtp_server_counts {
    uint64_t commands[SMTP_SERVER_CMD_COUNT]; /* command lines by verb */
    uint64_t reply_batches;    /* smtp_server_feed() calls that produced at least
                                  one reply byte: a client's round trips when
                                  the caller feeds each read (a pipelined
                                  MAIL/RCPT/DATA group is one, the text and
                                  its "." one) */
};

struct smtp_server_config {
    const char *hostname;      /* in the greeting and EHLO reply; NULL: "localhost";
                                  must pass smtp_server_hostname_valid() */
    uint64_t max_size;         /* message size limit (SIZE), 0 = none */
    unsigned max_rcpts;        /* recipients per message, 0 = 100 (RFC minimum) */
    int keep_body;             /* keep the unstuffed body for the message hook */
    struct smtp_server_counts *counts; /* NULL, or where to count commands and reply
                                          batches (not copied: must outlive the session) */
};

struct smtp_server;

/* Result of smtp_server_feed / smtp_server_greeting. */
enum { SMTP_SERVER_OK = 0, SMTP_SERVER_CLOSE = 1 };

/* A new session; config and hooks are copied (hostname is not: it must
 * outlive the session).  NULL when out of memory or when the hostname is
 * not valid. */
struct smtp_server *smtp_server_new(const struct smtp_server_config *config,
                                    const struct smtp_server_hooks *hooks);
void smtp_server_free(struct smtp_server *s);

/* Makes s a new session again, as smtp_server_new() with the same config and
 * hooks would, but keeps its buffers and its formatted replies: a server
 * that serves many short sessions reuses session objects instead of
 * allocating one per connection.  Counters (protocol errors) start at 0. */
void smtp_server_reset(struct smtp_server *s);

/* Puts the greeting (220, or 421/554/nothing per the hook) into the output. */
int smtp_server_greeting(struct smtp_server *s);

/* Consumes len bytes from the client.  Returns SMTP_SERVER_CLOSE when the
 * caller should send the output and close; bytes after that are ignored. */
int smtp_server_feed(struct smtp_server *s, const char *data, size_t len);

/* Puts "421 <text>" into the output and closes the session (the caller's
 * idle timeout or shutdown). */
void smtp_server_shutdown(struct smtp_server *s, const char *text);

/* Output buffer: the pending reply bytes; the caller removes what it sent. */
const char *smtp_server_output(const struct smtp_server *s, size_t *len);
void smtp_server_output_consume(struct smtp_server *s, size_t n);

/* Whether name may be put in replies as the server's name: a domain of
 * letters, digits and '-' in dot-separated labels of 1..63 (no '-' at either
 * end), or an address literal "[192.0.2.1]" / "[IPv6:2001:db8::1]"; at most
 * 255 octets.  Nothing else (no space, quote, control character). */
int smtp_server_hostname_valid(const char *name);

/* "EHLO", "HELO", ... "QUIT", "other": the names of smtp_server_cmd. */
const char *smtp_server_cmd_name(enum smtp_server_cmd c);

/* Counters for the session so far. */
unsigned long smtp_server_protocol_errors(const struct smtp_server *s); /* 5xx for bad input */
int smtp_server_in_data(const struct smtp_server *s); /* 1 while receiving DATA text */

#endif
