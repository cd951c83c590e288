/* smtp_session — the SMTP client core (smtp_client.h) driven over a reactor
 * connection, with Deferreds for results: what Twisted's ESMTPSender is to
 * twisted.mail.  The async and hybrid models use it; the protocol itself is
 * the same code the blocking models drive (lib/smtp_blocking.c).
 *
 *     d = smtp_session_open(r, "127.0.0.1", 2525, 30.0, &cfg);
 *         fires with the session once greeting and EHLO are done (READY)
 *     d = smtp_session_send(s, from, rcpts, n, msg, len);
 *         fires with NULL when the server accepted the message, or fails
 *     smtp_session_quit(s)  /  smtp_session_abort(s)
 *         the caller is done with the session
 *
 * Failures: SMTP_SESSION_TEMPFAIL (4xx, connection lost, aborted: worth a retry) or
 * SMTP_SESSION_PERMFAIL (5xx), both SMTP_SESSION_ERROR, code = the reply code (0 when local),
 * message "CODE text" or "stage: description"; a refused or timed-out connect
 * fails with the reactor's FAILURE_CONNECT_ERROR family.
 *
 * Cancelling (hence deferred_add_timeout: the only canceller here is a
 * timeout) an open or send Deferred that has not fired aborts the session:
 * the connect attempt, or the SMTP dialogue (every message queued on it
 * fails).  The Deferred then fails with FAILURE_TIMEOUT and the client
 * core's words for the stage it gave up in ("greeting: timeout before
 * greeting"), the same reason the blocking models report.
 *
 * Ownership: the session fired by open's Deferred is one reference for its
 * receiver, given back by smtp_session_quit() or smtp_session_abort()
 * (exactly one of them, once).  The connection holds its own reference until
 * it is lost, so the session outlives the caller's release until then.  The
 * message bytes given to send are borrowed until its Deferred fires.
 */
#ifndef MAILBENCH_SMTP_SESSION_H
#define MAILBENCH_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#include "deferred.h"
#include "failure.h"
#include "reactor.h"
#include "smtp_client.h"

extern const struct failure_type SMTP_SESSION_ERROR; /* smtp.SMTPError */
extern const struct failure_type SMTP_SESSION_TEMPFAIL; /* smtp.TempFail: retry later */
extern const struct failure_type SMTP_SESSION_PERMFAIL; /* smtp.PermFail: do not retry */

struct smtp_session;

/* Connect and greet.  connect_timeout <= 0: none.  cfg is copied. */
struct deferred *smtp_session_open(struct reactor *r, const char *host, int port,
                                   double connect_timeout,
                                   const struct smtp_client_config *cfg);

/* Queue one message (pipelined behind any queued before).  Returns a
 * Deferred (one reference for the caller); on a session that is over, it
 * has already failed with SMTP_SESSION_TEMPFAIL. */
struct deferred *smtp_session_send(struct smtp_session *s, const char *from,
                                   const char *const *rcpts, size_t nrcpt,
                                   const char *msg, size_t len);

/* The same with smtp_client_send_flags()'s flags (SMTP_CLIENT_SAFE). */
struct deferred *smtp_session_send_flags(struct smtp_session *s, const char *from,
                                         const char *const *rcpts, size_t nrcpt,
                                         const char *msg, size_t len, unsigned flags);

/* Can another message be sent now (greeted, nothing in flight, not over)? */
bool smtp_session_idle(const struct smtp_session *s);
/* Did the last message that finished here fail after its whole body was
 * sent, before the reply (the server may have it: a retry may duplicate)?
 * Also true when a cancel (timeout) struck at that point. */
bool smtp_session_maybe_delivered(const struct smtp_session *s);
/* How many messages this session has finished (delivered or not). */
long long smtp_session_sent(const struct smtp_session *s);

/* Release: QUIT once queued messages are done, then close.  Returns a
 * Deferred (one reference for the caller) that fires with NULL once the
 * connection is gone (the 221 read, or the connection lost however): a
 * caller that holds a concurrency slot over the whole exchange, as the
 * blocking models do, waits for it; one that tears down in the background
 * drops it. */
struct deferred *smtp_session_quit(struct smtp_session *s);
/* Release: drop the connection now (queued messages fail temporarily). */
void smtp_session_abort(struct smtp_session *s);

#endif
