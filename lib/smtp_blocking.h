/* smtp_blocking — the blocking driver of the SMTP client core, used by the
 * synchronous and threaded models.
 *
 * Like linenoise's blocking API over its non-blocking one, it is only
 * "connect; pump the core until it has something to say; close" over
 * smtp_client: no protocol logic lives here, so the blocking and the
 * event-loop models cannot drift apart.
 *
 *     int fd = smtp_blocking_connect("127.0.0.1", port, 5.0, err, sizeof err);
 *     if (fd < 0) report err (the message names the address and the reason);
 *     c = smtp_client_new(&cfg);
 *     smtp_client_send(c, ...); smtp_client_quit(c);
 *     for (;;) {
 *         int st = smtp_blocking_next_event(fd, c, timeout_s, &ev);
 *         if (st == SMTP_BLOCKING_EVENT) { handle ev; if CLOSED break; continue; }
 *         if (st == SMTP_BLOCKING_TIMEOUT) { smtp_client_abort(c, "timeout"); continue; }
 *         break;   SMTP_BLOCKING_IDLE: send another message, or quit
 *     }
 *     close(fd); smtp_client_free(c);
 *
 * Guarantees: every wait has a deadline (poll), so a call never blocks
 * longer than timeout_s (plus the time to process what arrives); EINTR and
 * short writes are handled; SIGPIPE is never raised (MSG_NOSIGNAL).  The
 * socket is non-blocking with TCP_NODELAY, and the driver writes everything
 * the core has queued as soon as the socket takes it, so the DATA body and
 * its terminator leave in one write.  A lost connection (EOF, reset, a
 * failed write) is passed to smtp_client_eof(): the caller sees it as the
 * events that follow (the current message failed with its stage, CLOSED).
 */
#ifndef MAILBENCH_SMTP_BLOCKING_H
#define MAILBENCH_SMTP_BLOCKING_H

#include <stddef.h>

#include "smtp_client.h"

enum smtp_blocking_status {
    SMTP_BLOCKING_EVENT = 1,    /* *ev holds the next event */
    SMTP_BLOCKING_IDLE = 0,     /* nothing to wait for: the client is idle
                                   (queue a message or quit) or finished */
    SMTP_BLOCKING_TIMEOUT = -1, /* the deadline passed with no event; the
                                   client is unchanged: wait again, or
                                   smtp_client_abort(c, "timeout") and drain
                                   its events */
};

/* A TCP connection to host:port (a numeric IPv4 address, no name lookup;
 * NULL or "" = 127.0.0.1), with
 * TCP_NODELAY, non-blocking, close-on-exec, connected within timeout_s.
 * Returns the fd, or -1 with errno set and a message in err such as
 * "connect to 127.0.0.1:2525: Connection refused". */
int smtp_blocking_connect(const char *host, int port, double timeout_s,
                          char *err, size_t errlen);

/* Writes the client's output, reads and feeds the server's replies, until
 * the client has an event, for at most timeout_s seconds.  See the status
 * values above. */
int smtp_blocking_next_event(int fd, struct smtp_client *c, double timeout_s,
                             struct smtp_client_event *ev);

#endif
