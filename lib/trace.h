/* trace — a timeline of a run as JSON lines (--trace FILE on the models).
 *
 * One object per line, in the order the events happened:
 *
 *     {"t_ns": 1234567, "ev": "callback", "email": 0, "name": "send_email",
 *      "phase": "start", "in": "ok"}
 *
 * t_ns is CLOCK_MONOTONIC in nanoseconds since trace_open; "email" is the
 * email's index, or -1 for an event of no one email (a reactor turn).  What
 * the other fields are depends on "ev" (see README.md, "--trace").
 *
 * Bounded, so that tracing does not change a large run: only emails whose
 * index is below the limit given to trace_open are traced (trace_email), the
 * reactor's turns only while one of them is in flight (trace_live), and at
 * most TRACE_MAX_EVENTS lines are written; lines are kept in memory and
 * written at trace_close.  Thread-safe (one mutex): the threads model's
 * workers trace from their own threads. */
#ifndef MAILBENCH_TRACE_H
#define MAILBENCH_TRACE_H

#include <stdbool.h>

#define TRACE_MAX_EVENTS 100000

/* Open FILE for the run's trace; emails with index < max_email are traced.
 * Returns 0, or -1 (errno set) if FILE cannot be written. */
int trace_open(const char *path, long long max_email);
/* Write the events to the file and close it.  Returns 0, or -1 on a write
 * error.  A no-op when no trace is open. */
int trace_close(void);

/* Is a trace open, and is email `index` one it follows?  (Cheap: a load and
 * a compare; false when no trace is open.) */
bool trace_email(long long index);
/* Is any followed email in flight (trace_begin_email'd, not yet ended)? */
bool trace_live(void);
void trace_begin_email(long long index);   /* counts it in flight */
void trace_end_email(long long index);

/* One event: ev, the email (-1: none), then the members printf'd from fmt
 * (JSON text without braces, e.g. "\"name\": \"%s\"", NULL for none), then,
 * if reason is not NULL, "reason": reason as an escaped JSON string (a
 * server's reply text or a Failure's message).  Dropped when no trace is
 * open or the bound has been reached. */
__attribute__((format(printf, 4, 5)))
void trace_event(const char *ev, long long email, const char *reason, const char *fmt, ...);

#endif
