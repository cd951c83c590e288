/* reactor — a thin layer over libev that plays the part of Twisted's reactor
 * (spec: shared/spec/deferred.md §6): delayed calls on the loop's monotonic
 * clock, TCP connections that are Deferreds, and buffered writes.
 *
 * One reactor per thread, wrapping one `struct ev_loop`.  Nothing here is
 * thread-safe; other threads reach a reactor only through ev_async (see
 * threadpool.h).
 *
 * WHEN THINGS RUN.  Every callback runs from inside reactor_run() (libev's
 * ev_run): timer callbacks, data_received, connection_lost, and the firing of
 * the connect Deferred (hence its whole chain, synchronously, §6.3).  The
 * only exception: a connect that fails at once (e.g. an invalid address)
 * returns a Deferred that has already failed.  A delayed call scheduled from a
 * timer callback, even with delay 0, runs on a later loop iteration, so a
 * self-rescheduling callLater(0) loop does not starve I/O (case 54).
 *
 * CONNECTIONS.  reactor_connect_tcp() returns a Deferred (one reference for
 * the caller) that fires with a `struct reactor_conn *` or fails with
 * FAILURE_CONNECTION_REFUSED, FAILURE_CONNECT_TIMEOUT or another
 * FAILURE_CONNECT_ERROR / FAILURE_OS_ERROR.  Cancelling it before it fires
 * aborts the attempt (CancelledError).  Whoever receives the connection owns
 * it and must end it with reactor_conn_close() or reactor_conn_abort(), unless
 * the peer ends it first.  Either way the protocol's connection_lost runs
 * exactly once, on a later loop iteration, and the connection is freed when
 * it returns: do not touch the connection after connection_lost.  Every
 * connection has TCP_NODELAY set.  Its libev watchers are embedded in it.
 */
#ifndef MAILBENCH_REACTOR_H
#define MAILBENCH_REACTOR_H

#include <stddef.h>
#include <sys/uio.h>

#include "deferred.h"

struct ev_loop;
struct reactor;
struct reactor_conn;

/* A new reactor on a new libev loop (NULL if libev cannot create one). */
struct reactor *reactor_new(void);
/* Free it; the caller has ended every connection and pool first.  Delayed
 * calls still pending are cancelled (not run); their handles stay valid. */
void reactor_free(struct reactor *r);
struct ev_loop *reactor_loop(struct reactor *r);     /* for ev_async and friends */
/* The reactor as a Deferred clock (for deferred_add_timeout and deferred_call_*). */
struct deferred_clock *reactor_clock(struct reactor *r);
double reactor_now(struct reactor *r);               /* CLOCK_MONOTONIC, seconds */

/* callLater: as deferred_call_later on reactor_clock(r).  The handle has one
 * reference for the caller: deferred_call_cancel / reset / active, then
 * deferred_call_unref (dropping it does not cancel the call).  Calls run in
 * deadline order, and calls due at the same time in the order they were
 * scheduled (a reset call counts as scheduled at its reset, as in Twisted's
 * reactor).  Deadlines are kept by a timerfd: a call runs within microseconds
 * of its deadline on an idle loop, not libev's whole milliseconds. */
struct deferred_call *reactor_call_later(struct reactor *r, double delay,
                                         void (*fn)(void *arg), void *arg);
/* The same at an absolute time `when` on reactor_now()'s clock (now if it
 * has passed).  For a deadline known in advance (a schedule): a delay worked
 * out from a clock read earlier in the turn would put the call late by
 * whatever ran since that read. */
struct deferred_call *reactor_call_at(struct reactor *r, double when,
                                      void (*fn)(void *arg), void *arg);

/* A tracer of the loop's turns (--trace): hook(arg, true, ready) after each
 * poll, before any callback of that turn runs, with the number of watchers
 * that became ready; hook(arg, false, 0) when the turn's work is done (just
 * before the next poll).  Its watchers do not keep reactor_run() going.
 * NULL removes it. */
void reactor_set_turn_hook(struct reactor *r, void (*hook)(void *arg, bool start, int ready),
                           void *arg);

/* Run until reactor_stop() or until nothing is left to wait for. */
void reactor_run(struct reactor *r);
void reactor_stop(struct reactor *r);

/* What a connection tells its user (Twisted's Protocol). */
struct reactor_protocol {
    /* bytes arrived (len > 0); buf is valid during the call only */
    void (*data_received)(struct reactor_conn *c, const char *buf, size_t len, void *arg);
    /* the connection ended: reason is FAILURE_CONNECTION_DONE (clean: EOF, or
     * our close) or FAILURE_CONNECTION_LOST (reset, abort, error); borrowed */
    void (*connection_lost)(struct reactor_conn *c, struct failure *reason, void *arg);
};

/* Connect to host:port; host is a numeric address (IPv4 or IPv6, read
 * strictly, as inet_pton: resolve names once, beforehand), else the Deferred
 * has already failed.  connect_timeout <= 0 means none. */
struct deferred *reactor_connect_tcp(struct reactor *r, const char *host, int port,
                                     double connect_timeout);
/* Wrap an already connected socket (e.g. an accepted one); sets O_NONBLOCK
 * and TCP_NODELAY and starts reading.  NULL if fd is not usable. */
struct reactor_conn *reactor_conn_adopt(struct reactor *r, int fd);

/* Set who receives data and the end of the connection.  Data that arrives
 * while no protocol is set is discarded. */
void reactor_conn_set_protocol(struct reactor_conn *c, const struct reactor_protocol *p, void *arg);

/* Send bytes: written at once if the socket takes them (no extra syscall, no
 * delay), the rest buffered and flushed when writable.  0, or -1 if the
 * connection is closing/closed or failed (connection_lost will follow). */
int reactor_conn_write(struct reactor_conn *c, const void *buf, size_t len);
/* The same for iovcnt pieces, in one sendmsg(): what the socket does not
 * take is copied to the buffer (the pieces are the caller's again on return). */
int reactor_conn_writev(struct reactor_conn *c, const struct iovec *iov, int iovcnt);
size_t reactor_conn_buffered(const struct reactor_conn *c);   /* bytes not yet sent */

/* loseConnection: flush what is buffered, then close (reason: DONE). */
void reactor_conn_close(struct reactor_conn *c);
/* abortConnection: close now, discarding the buffer (reason: LOST). */
void reactor_conn_abort(struct reactor_conn *c);
int reactor_conn_fd(const struct reactor_conn *c);     /* -1 once closed */
struct reactor *reactor_conn_reactor(const struct reactor_conn *c);

#endif
