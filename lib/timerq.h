/* timerq — exact timers on a libev loop: a binary heap of deadlines on
 * CLOCK_MONOTONIC and one timerfd, watched by libev, set to the earliest.
 *
 * Why not ev_timer: libev's epoll backend sleeps in whole milliseconds and
 * rounds up, so a 5 ms timer on a busy loop fires at 6-7 ms (measured with
 * smtp-mock --latency 5ms and 100 sessions: p50 6.6 ms).  A timerfd wakes
 * epoll within microseconds of its deadline.  Entries due at the same time
 * run in the order they were added (libev's heap does not keep that order).
 *
 * Use: embed a struct timerq_entry in your object, timerq_entry_init() it
 * with its callback, timerq_add() it with an absolute deadline (timerq_now()
 * + delay).  The callback runs from inside ev_run, once, with the entry
 * already removed; it may add or remove any entry, itself included.  An
 * entry added from a callback runs on a later loop iteration even if it is
 * already due (its deadline is moved to just after the time that pass runs
 * up to), so a timer that re-adds itself with no delay, or at a time already
 * past, cannot starve I/O nor the other entries due.  The queue's watcher is
 * active only while an entry is pending, so ev_run can return when nothing
 * else is left.  Not thread-safe: one queue per loop, used from the loop's
 * thread.
 *
 * Spin (timerq_set_spin, off by default): a timerfd still fires as late as
 * the machine wakes a sleeping CPU (measured on a 2-vCPU KVM guest: p50
 * ~100 us after a 5 ms sleep, against a few us on bare metal).  With a spin
 * of S the queue wakes S before the earliest deadline and then keeps the
 * loop polling (an ev_idle, so epoll never sleeps; I/O is still served)
 * until it is due, and runs due entries before the iteration's other
 * callbacks (an ev_check at EV_MAXPRI).  It costs up to S of CPU per
 * deadline: a whole core once deadlines come more often than every S.
 */
#ifndef MAILBENCH_TIMERQ_H
#define MAILBENCH_TIMERQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

struct timerq_entry;
typedef void (*timerq_cb)(struct timerq_entry *e);

/* One timer: embed it in your struct. */
struct timerq_entry {
    double when;                  /* deadline, timerq_now() seconds */
    uint64_t seq;                 /* FIFO among equal deadlines */
    size_t pos;                   /* index in the heap; SIZE_MAX when not pending */
    timerq_cb cb;                 /* what to run */
};

struct timerq {
    struct ev_loop *loop;         /* the loop that watches the timerfd */
    struct timerq_entry **heap;   /* pending entries, a min-heap on (when, seq) */
    size_t n, cap;                /* entries, room */
    uint64_t seq;                 /* next sequence number */
    int fd;                       /* the timerfd */
    ev_io io;                     /* readable when it expires; active while n > 0 */
    double armed;                 /* the deadline the timerfd is set to (INFINITY: none) */
    double spin;                  /* poll this long before a deadline (0: sleep) */
    ev_idle poll;                 /* active while polling: ev_run does not sleep */
    ev_check due;                 /* active while polling: runs due entries */
    bool in_pass;                 /* running due entries (run_due) */
    double pass_now;              /* the time that pass runs up to */
};

/* CLOCK_MONOTONIC in seconds (the queue's time line). */
double timerq_now(void);

/* 0, or -1 with errno set (no timerfd). */
int timerq_init(struct timerq *q, struct ev_loop *loop);
/* Pending entries are dropped without running (their pos is reset). */
void timerq_destroy(struct timerq *q);

void timerq_entry_init(struct timerq_entry *e, timerq_cb cb);
/* Schedule e at absolute time `when` (re-schedules it if pending). */
void timerq_add(struct timerq *q, struct timerq_entry *e, double when);
/* Unschedule e; a no-op if it is not pending. */
void timerq_remove(struct timerq *q, struct timerq_entry *e);
static inline bool timerq_pending(const struct timerq_entry *e) { return e->pos != SIZE_MAX; }
size_t timerq_count(const struct timerq *q);
/* The earliest pending entry, or NULL (e.g. to cancel everything on exit). */
struct timerq_entry *timerq_first(const struct timerq *q);
/* Poll the loop for the last `seconds` before each deadline instead of
 * sleeping (see Spin above); 0, the default, turns it off. */
void timerq_set_spin(struct timerq *q, double seconds);

#endif
