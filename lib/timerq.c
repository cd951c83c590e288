/* timerq — exact timers on a libev loop (contract in timerq.h). */
#include "timerq.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

double timerq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool before(const struct timerq_entry *a, const struct timerq_entry *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_set(struct timerq *q, size_t i, struct timerq_entry *e)
{
    q->heap[i] = e;
    e->pos = i;
}

static void sift_up(struct timerq *q, size_t i)
{
    struct timerq_entry *e = q->heap[i];
    while (i > 0 && before(e, q->heap[(i - 1) / 2])) {
        heap_set(q, i, q->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(q, i, e);
}

static void sift_down(struct timerq *q, size_t i)
{
    struct timerq_entry *e = q->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n)
            break;
        if (c + 1 < q->n && before(q->heap[c + 1], q->heap[c]))
            c++;
        if (!before(q->heap[c], e))
            break;
        heap_set(q, i, q->heap[c]);
        i = c;
    }
    heap_set(q, i, e);
}

static void poll_stop(struct timerq *q)
{
    ev_idle_stop(q->loop, &q->poll);
    ev_check_stop(q->loop, &q->due);
}

/* Point the timerfd at the earliest deadline (less the spin) when that is
 * earlier than the one it holds; a later one is left (its expiry finds
 * nothing due and re-arms), which saves a system call for every timer
 * removed.  With a spin, a deadline nearer than that is polled for. */
static void arm(struct timerq *q)
{
    if (q->n == 0) {
        ev_io_stop(q->loop, &q->io);
        poll_stop(q);
        return;
    }
    ev_io_start(q->loop, &q->io);
    double when = q->heap[0]->when - q->spin;
    if (q->spin > 0) {
        if (when <= timerq_now()) {
            ev_idle_start(q->loop, &q->poll);
            ev_check_start(q->loop, &q->due);
            return;
        }
        poll_stop(q);
    }
    if (when >= q->armed)
        return;
    struct itimerspec its = { 0 };
    double whole = floor(when);
    its.it_value.tv_sec = (time_t)whole;
    its.it_value.tv_nsec = (long)((when - whole) * 1e9);
    if (its.it_value.tv_sec <= 0 && its.it_value.tv_nsec <= 0)
        its.it_value.tv_nsec = 1;         /* zero would disarm it */
    if (timerfd_settime(q->fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        q->armed = when;
}

/* Run every entry due now that was pending when this pass began.  An entry
 * added during the pass is placed after `now` (timerq_add), so one that a
 * callback keeps adding at a time already past runs once per pass and never
 * stands in front of the others that are due. */
static void run_due(struct timerq *q)
{
    double now = timerq_now();
    uint64_t last = q->seq;
    q->pass_now = now;
    q->in_pass = true;
    while (q->n > 0 && q->heap[0]->when <= now && q->heap[0]->seq < last) {
        struct timerq_entry *e = q->heap[0];
        timerq_remove(q, e);
        e->cb(e);                         /* may add or remove others */
    }
    q->in_pass = false;
    arm(q);
}

static void expired_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct timerq *q = container_of(w, struct timerq, io);
    uint64_t ticks;
    if (read(q->fd, &ticks, sizeof ticks) < 0) { /* EAGAIN: re-armed below */ }
    q->armed = INFINITY;
    run_due(q);
}

/* Polling (spin): every loop iteration, first. */
static void due_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)loop;
    (void)revents;
    run_due(container_of(w, struct timerq, due));
}

static void poll_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;                        /* only keeps the loop from sleeping */
}

int timerq_init(struct timerq *q, struct ev_loop *loop)
{
    *q = (struct timerq){ .loop = loop, .armed = INFINITY };
    q->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (q->fd < 0)
        return -1;
    ev_io_init(&q->io, expired_cb, q->fd, EV_READ);
    ev_idle_init(&q->poll, poll_cb);
    ev_check_init(&q->due, due_cb);
    ev_set_priority(&q->due, EV_MAXPRI);
    return 0;
}

void timerq_destroy(struct timerq *q)
{
    for (size_t i = 0; i < q->n; i++)
        q->heap[i]->pos = SIZE_MAX;
    q->n = 0;
    free(q->heap);
    q->heap = NULL;
    ev_io_stop(q->loop, &q->io);
    poll_stop(q);
    if (q->fd >= 0)
        close(q->fd);
    q->fd = -1;
}

void timerq_entry_init(struct timerq_entry *e, timerq_cb cb)
{
    *e = (struct timerq_entry){ .pos = SIZE_MAX, .cb = cb };
}

void timerq_add(struct timerq *q, struct timerq_entry *e, double when)
{
    if (timerq_pending(e))
        timerq_remove(q, e);
    if (q->n == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 64;
        struct timerq_entry **heap = realloc(q->heap, cap * sizeof *heap);
        if (!heap)
            abort();
        q->heap = heap;
        q->cap = cap;
    }
    if (q->in_pass && !(when > q->pass_now))
        when = nextafter(q->pass_now, INFINITY);  /* the next pass's, not this one's */
    e->when = when;
    e->seq = q->seq++;
    heap_set(q, q->n++, e);
    sift_up(q, q->n - 1);
    arm(q);
}

void timerq_remove(struct timerq *q, struct timerq_entry *e)
{
    if (!timerq_pending(e))
        return;
    size_t i = e->pos;
    assert(i < q->n && q->heap[i] == e);
    struct timerq_entry *last = q->heap[--q->n];
    e->pos = SIZE_MAX;
    if (i < q->n) {
        heap_set(q, i, last);
        sift_up(q, i);
        sift_down(q, last->pos);
    }
    if (q->n == 0) {
        ev_io_stop(q->loop, &q->io);
        poll_stop(q);
    }
}

size_t timerq_count(const struct timerq *q)
{
    return q->n;
}

struct timerq_entry *timerq_first(const struct timerq *q)
{
    return q->n ? q->heap[0] : NULL;
}

void timerq_set_spin(struct timerq *q, double seconds)
{
    q->spin = seconds > 0 ? seconds : 0;
    q->armed = INFINITY;                  /* the timerfd may have to fire earlier */
    arm(q);
}
