/* deferred — Twisted's Deferred, DeferredList, DeferredSemaphore, addTimeout
 * and a fake clock (contract in deferred.h; behaviour: shared/spec/deferred.md).
 *
 * Performance notes: pairs live in a small inline array inside the Deferred;
 * a longer queue spills into a list of heap segments, each twice the size of
 * the one before up to a cap, linked through a marker pair in its last slot,
 * so adding a callback never copies the queue and the cost per callback does
 * not depend on the chain's length; segments are freed as the run loop leaves
 * them.  The run loop keeps its explicit stack on the C stack until it needs
 * more than a few entries, and runs a plain value through callbacks with no
 * reference counting when no run hook is installed. */
#include "deferred.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFERRED_STACK_INLINE 32
#define DEFERRED_SEG_MIN_LOG 3    /* the first heap segment: 8 pairs (and its link) */
#define DEFERRED_SEG_MAX_LOG 8    /* the largest: 256 pairs, 8 KB */

/* struct deferred and struct deferred_pair are in deferred.h (its inline
 * fast paths).  A continuation pair (a waiter's link on the Deferred it waits
 * for) has deferred_continue on both sides and the waiter as both arguments;
 * it holds a reference on the waiter.  A link pair (the last slot of a full
 * heap segment) has deferred_link as cb, the next segment's first pair as
 * cb_arg and its own segment as eb_arg. */

/* A heap segment of the queue: cap pairs, and one more slot after them for
 * the link.  (With the link among the cap slots, an email's usual chain of 8
 * pairs spilled into a second segment: 0.55 KB more per in-flight email at
 * 10,000 in flight than the doubling array before the segments.) */
struct deferred_seg {
    struct deferred_seg *next_free; /* on the per-thread cache */
    size_t cap;                     /* pairs in p, a power of two; p[cap] is the link slot */
    struct deferred_pair p[];       /* the pairs */
};

enum deferred_flavour { DEFERRED_PLAIN, DEFERRED_LIST };

static struct deferred_result deferred_continue(struct deferred_result r, void *waiter);
static struct deferred_result deferred_link(struct deferred_result r, void *next);
static void queue_clear(struct deferred *d);
static void deferred_list_destroy(struct deferred *d);
static struct failure *deferred_list_cancel(struct deferred *d);

static void (*unhandled_hook)(const struct failure *, void *);
static void *(*run_before)(deferred_fn, void *, struct deferred_result);
static void (*run_after)(void *, struct deferred_result);
static void *unhandled_arg;

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

/* ---- life cycle ----------------------------------------------------------- */

static inline void deferred_init(struct deferred *d)
{
    d->result = deferred_ok(NULL);
    d->refs = 1;
    d->paused = 0;
    d->called = d->running = d->suppress = d->unhandled = 0;
    d->flavour = DEFERRED_PLAIN;
    d->seg_log = 0;
    d->rp = d->wp = d->inline_q;
    d->wend = d->inline_q + DEFERRED_INLINE_PAIRS;
    d->canceller = NULL;
    d->canceller_arg = NULL;
}

/* Freed plain Deferreds are kept on a per-thread free list (bounded), so the
 * common create-fire-free cycle does not go through malloc; likewise the
 * largest queue segments (only chains of hundreds of pairs use them), so a
 * long chain neither calls malloc per segment nor faults in fresh pages each
 * time.  The lists are reachable through thread-local storage, so leak
 * checkers do not count them; deferred_pool_trim() gives them back. */
#define DEFERRED_POOL_MAX 4096
#define DEFERRED_SEG_POOL_MAX 64          /* 64 segments of 8 KB: 512 KB a thread at most */

#if defined(__SANITIZE_ADDRESS__)
#define DEFERRED_POOL_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DEFERRED_POOL_OFF 1
#endif
#endif
#ifndef DEFERRED_POOL_OFF
#define DEFERRED_POOL_OFF 0
#include <valgrind/valgrind.h>
#endif

/* Off under AddressSanitizer (compile time) and valgrind (run time): there a
 * freed Deferred must really be freed, or a use after free goes unseen.  The
 * bounds are set once at load time (before any thread can start), so the
 * free paths test one number and no thread writes shared state. */
static unsigned pool_max = DEFERRED_POOL_OFF ? 0 : DEFERRED_POOL_MAX;
static unsigned seg_pool_max = DEFERRED_POOL_OFF ? 0 : DEFERRED_SEG_POOL_MAX;

#if !DEFERRED_POOL_OFF
__attribute__((constructor)) static void pool_init(void)
{
    if (RUNNING_ON_VALGRIND)
        pool_max = seg_pool_max = 0;
}
#endif

static _Thread_local struct deferred *pool_head;   /* linked through result.deferred */
static _Thread_local unsigned pool_count;           /* entries on the list */
static _Thread_local struct deferred_seg *seg_pool; /* free segments of the largest cap */
static _Thread_local unsigned seg_pool_count;       /* entries on it */

struct deferred *deferred_new(void)
{
    struct deferred *d = pool_head;
    if (d) {
        pool_head = d->result.deferred;
        pool_count--;
    } else {
        d = xmalloc(sizeof *d);
    }
    deferred_init(d);
    return d;
}

static void pool_put(struct deferred *d)
{
    if (pool_count >= pool_max) {
        free(d);
        return;
    }
    d->result.deferred = pool_head;
    pool_head = d;
    pool_count++;
}

void deferred_pool_trim(void)
{
    while (pool_head) {
        struct deferred *d = pool_head;
        pool_head = d->result.deferred;
        free(d);
    }
    pool_count = 0;
    while (seg_pool) {
        struct deferred_seg *g = seg_pool;
        seg_pool = g->next_free;
        free(g);
    }
    seg_pool_count = 0;
}

struct deferred *deferred_new_cancellable(deferred_canceller canceller, void *arg)
{
    struct deferred *d = deferred_new();
    d->canceller = canceller;
    d->canceller_arg = arg;
    return d;
}

void deferred_set_unhandled_hook(void (*hook)(const struct failure *f, void *arg), void *arg)
{
    unhandled_hook = hook;
    unhandled_arg = arg;
}

void deferred_set_run_hook(void *(*before)(deferred_fn fn, void *arg, struct deferred_result in),
                           void (*after)(void *token, struct deferred_result out))
{
    run_before = before;
    run_after = after;
}

static void report_unhandled(const struct failure *f)
{
    if (unhandled_hook) {
        unhandled_hook(f, unhandled_arg);
        return;
    }
    fputs("Unhandled error in Deferred:\n", stderr);
    failure_print(f, stderr);
}

static __attribute__((noinline)) void deferred_destroy(struct deferred *d)
{
    if (d->result.kind == DEFERRED_FAILURE) {
        if (d->unhandled)
            report_unhandled(d->result.failure);
        failure_unref(d->result.failure);
    } else if (d->result.kind == DEFERRED_DEFERRED) {
        deferred_unref(d->result.deferred);
    }
    /* Continuations still queued hold references on their waiters. */
    queue_clear(d);
    if (d->flavour == DEFERRED_LIST) {
        deferred_list_destroy(d);
        free(d);
    } else {
        pool_put(d);
    }
}

/* The last reference is gone (deferred_unref, inline in deferred.h). */
void deferred_impl_release(struct deferred *d)
{
    if (d->result.kind == DEFERRED_VALUE && d->rp == d->wp && d->flavour == DEFERRED_PLAIN) {
        /* the common case, nothing to release: straight to the free list */
        if (__builtin_expect(pool_count < pool_max, 1)) {
            d->result.deferred = pool_head;
            pool_head = d;
            pool_count++;
        } else {
            free(d);
        }
        return;
    }
    deferred_destroy(d);
}

/* ---- the queue ---------------------------------------------------------- */

static struct deferred_pair *seg_alloc(struct deferred *d, unsigned log)
{
    struct deferred_seg *g;
    if (log == DEFERRED_SEG_MAX_LOG && seg_pool) {
        g = seg_pool;
        seg_pool = g->next_free;
        seg_pool_count--;
    } else {
        g = xmalloc(sizeof *g + (((size_t)1 << log) + 1) * sizeof g->p[0]);
        g->cap = (size_t)1 << log;
    }
    d->seg_log = (uint8_t)log;
    d->wend = g->p + g->cap;              /* the link slot */
    return g->p;
}

static void seg_free(struct deferred_seg *g)
{
    if (g->cap == (size_t)1 << DEFERRED_SEG_MAX_LOG && seg_pool_count < seg_pool_max) {
        g->next_free = seg_pool;
        seg_pool = g;
        seg_pool_count++;
        return;
    }
    free(g);
}

/* The write segment, from its link slot (only when d->seg_log != 0). */
static struct deferred_seg *write_seg(const struct deferred *d)
{
    struct deferred_pair *p0 = d->wend - ((size_t)1 << d->seg_log);
    return (struct deferred_seg *)((char *)p0 - offsetof(struct deferred_seg, p));
}

/* wp reached wend: make room. */
static void queue_grow(struct deferred *d)
{
    if (d->seg_log == 0) {
        size_t live = (size_t)(d->wp - d->rp);
        if (d->rp != d->inline_q) {       /* room at the front: compact */
            memmove(d->inline_q, d->rp, live * sizeof *d->rp);
            d->rp = d->inline_q;
            d->wp = d->inline_q + live;
            return;
        }
        /* spill: the inline pairs move to the first segment, once */
        struct deferred_pair *p = seg_alloc(d, DEFERRED_SEG_MIN_LOG);
        memcpy(p, d->inline_q, live * sizeof *p);
        d->rp = p;
        d->wp = p + live;
        return;
    }
    struct deferred_pair *link = d->wend;
    struct deferred_seg *g = write_seg(d);
    unsigned log = d->seg_log < DEFERRED_SEG_MAX_LOG ? d->seg_log + 1u : DEFERRED_SEG_MAX_LOG;
    struct deferred_pair *p = seg_alloc(d, log);
    *link = (struct deferred_pair){ deferred_link, p, NULL, g };
    d->wp = p;
}

static inline void queue_push(struct deferred *d, deferred_fn cb, void *cb_arg, deferred_fn eb,
                              void *eb_arg)
{
    if (__builtin_expect(d->wp == d->wend, 0))
        queue_grow(d);
    *d->wp++ = (struct deferred_pair){ cb, cb_arg, eb, eb_arg };
}

/* The queue has just become empty (rp == wp): back to the inline array,
 * giving back the last segment.  Appends restart at the front. */
static __attribute__((noinline)) void queue_unspill(struct deferred *d)
{
    seg_free(write_seg(d));
    d->seg_log = 0;
    d->wend = d->inline_q + DEFERRED_INLINE_PAIRS;
}

static inline void queue_rebase(struct deferred *d)
{
    if (__builtin_expect(d->seg_log != 0, 0))
        queue_unspill(d);
    d->rp = d->wp = d->inline_q;
}

/* Pop the next pair into *out, following links; false when empty. */
static inline bool queue_pop(struct deferred *d, struct deferred_pair *out)
{
    for (;;) {
        if (d->rp == d->wp)
            return false;
        struct deferred_pair *p = d->rp++;
        if (__builtin_expect(p->cb == deferred_link, 0)) {
            d->rp = p->cb_arg;
            seg_free(p->eb_arg);
            continue;
        }
        *out = *p;
        if (d->rp == d->wp)
            queue_rebase(d);
        return true;
    }
}

/* Drop every queued pair (a Deferred being freed): continuations still
 * queued hold references on their waiters. */
static void queue_clear(struct deferred *d)
{
    struct deferred_pair p;
    while (queue_pop(d, &p))
        if (p.cb == deferred_continue)
            deferred_unref(p.cb_arg);
}

/* ---- the run loop (§1.5) ----------------------------------------------------- */

/* Never called: marks a continuation pair.  (The two markers have different
 * bodies so that no identical-code folding can give them one address.) */
static struct deferred_result deferred_continue(struct deferred_result r, void *waiter)
{
    fprintf(stderr, "deferred: continuation pair of %p called\n", waiter);
    abort();
    return r;
}

/* Never called: marks a link pair (the queue). */
static struct deferred_result deferred_link(struct deferred_result r, void *next)
{
    fprintf(stderr, "deferred: link pair to %p called\n", next);
    abort();
    return r;
}

struct run_stack {
    struct deferred **v;        /* entries, each holding a reference */
    size_t n, cap;              /* used, room */
    struct deferred *inl[DEFERRED_STACK_INLINE]; /* the first entries */
};

static void stack_grow(struct run_stack *s)
{
    size_t cap = s->cap * 2;
    struct deferred **v = xmalloc(cap * sizeof *v);
    memcpy(v, s->v, s->n * sizeof *v);
    if (s->v != s->inl)
        free(s->v);
    s->v = v;
    s->cap = cap;
}

static inline void stack_push(struct run_stack *s, struct deferred *d)
{
    if (__builtin_expect(s->n == s->cap, 0))
        stack_grow(s);
    s->v[s->n++] = d;
}

static void drop_result(struct deferred_result r)
{
    if (r.kind == DEFERRED_FAILURE)
        failure_unref(r.failure);
}

/* A function that returns deferred_err(NULL) or deferred_wait(NULL) has no error or
 * Deferred to hand over (Twisted: NoCurrentExceptionError); the chain goes on
 * with a Failure that says so instead of dereferencing NULL later. */
static struct deferred_result check_returned_slow(struct deferred_result r)
{
    if (r.kind == DEFERRED_FAILURE && !r.failure)
        return deferred_err(failure_new(&FAILURE_NO_CURRENT_EXCEPTION, 0,
                                        "a callback returned deferred_err(NULL): no Failure"));
    if (r.kind == DEFERRED_DEFERRED && !r.deferred)
        return deferred_err(failure_new(&FAILURE_NO_CURRENT_EXCEPTION, 0,
                                        "a callback returned deferred_wait(NULL): no Deferred"));
    return r;
}

static inline struct deferred_result check_returned(struct deferred_result r)
{
    if (__builtin_expect(r.kind == DEFERRED_VALUE, 1))
        return r;                         /* the usual case: one test, no call */
    return check_returned_slow(r);
}

/* The user function returned Deferred x as cur's result: wait on it, or take
 * its result at once (§2.1, §2.2).  Returns true when cur now waits. */
static inline bool chain_on(struct deferred *cur, struct deferred *x)
{
    if (x == cur) {                       /* §2.4: a Failure, not a silent wedge */
        cur->refs--;                      /* the handed-over reference; the stack holds one */
        cur->result = deferred_err(failure_new(&FAILURE_SELF_RETURN, 0,
                                               "callback returned the Deferred it was attached to"));
        return false;
    }
    if (!x->called || x->result.kind == DEFERRED_DEFERRED || x->paused) {
        cur->paused++;                    /* cur->result = x keeps x alive */
        cur->refs++;                      /* the continuation keeps cur alive */
        queue_push(x, deferred_continue, cur, deferred_continue, cur);
        return true;
    }
    cur->result = x->result;              /* a move: x is left holding "None" */
    x->result = deferred_ok(NULL);
    x->unhandled = 0;
    deferred_unref(x);
    return false;
}

/* Call one user function with cur's result and store what it returns.
 * Returns true when cur now waits on an inner Deferred. */
static inline bool run_one(struct deferred *cur, deferred_fn fn, void *arg)
{
    struct deferred_result old = cur->result;
    /* The function borrows old.  While it runs, another Deferred may take
     * cur's result over (a callback elsewhere returns cur, which has a result
     * and is not paused: chain_on moves it, §2.2) and so cur's own reference
     * with it; this call keeps one of its own so old outlives the function. */
    if (old.kind == DEFERRED_FAILURE)
        failure_ref(old.failure);
    cur->running = 1;
    void *token = run_before ? run_before(fn, arg, old) : NULL;
    struct deferred_result r = check_returned(fn(old, arg));
    if (token)
        run_after(token, r);
    cur->running = 0;
    drop_result(cur->result);             /* cur's reference: old, or "None" if taken over */
    if (old.kind == DEFERRED_FAILURE && !(r.kind == DEFERRED_FAILURE && r.failure == old.failure))
        failure_unref(old.failure);       /* else this call's reference becomes cur's */
    cur->result = r;
    if (r.kind == DEFERRED_DEFERRED)
        return chain_on(cur, r.deferred);
    return false;
}

/* Run cur's queue until it is empty, cur waits, or a continuation hands
 * cur's result to a waiter (returned through *waiter). */
static inline __attribute__((always_inline)) bool run_queue(struct deferred *cur,
                                                           struct deferred **waiter)
{
    for (;;) {
        /* The usual case, a value through plain callbacks with no tracer, in
         * a tight loop.  A value holds no reference, so whatever a callback
         * did to cur's result (another Deferred may have taken it over: it is
         * "None" now) there is nothing to drop; and while callbacks return
         * values the result stays a value.  running stays set between the
         * callbacks: no user code runs there. */
        if (cur->result.kind == DEFERRED_VALUE) {
            struct deferred_pair *p;
            cur->running = 1;
            while ((p = cur->rp) != cur->wp) {
                deferred_fn cb = p->cb;
                if (__builtin_expect(cb == deferred_link || cb == deferred_continue || run_before, 0)) {
                    cur->running = 0;
                    goto general;         /* the general path below takes this pair */
                }
                void *arg = p->cb_arg;
                cur->rp = p + 1;
                if (p + 1 == cur->wp)
                    queue_rebase(cur);
                if (!cb)
                    continue;
                struct deferred_result r = cb(cur->result, arg);
                if (__builtin_expect(r.kind != DEFERRED_VALUE, 0)) {
                    cur->running = 0;
                    if (r.kind != DEFERRED_DEFERRED || !r.deferred)
                        r = check_returned_slow(r);
                    cur->result = r;
                    if (r.kind == DEFERRED_DEFERRED && chain_on(cur, r.deferred))
                        return true;
                    goto general;
                }
                cur->result = r;
            }
            cur->running = 0;
            return true;                  /* the queue is empty */
        }
    general:;
        struct deferred_pair p;
        if (!queue_pop(cur, &p))
            return true;
        if (p.cb == deferred_continue) {
            struct deferred *w = p.cb_arg;
            /* w->result is cur, with w's reference: cur stays alive on our stack. */
            assert(w->result.kind == DEFERRED_DEFERRED && w->result.deferred == cur);
            cur->refs--;
            w->result = cur->result;
            cur->result = deferred_ok(NULL);
            cur->unhandled = 0;
            w->paused--;
            *waiter = w;                  /* the continuation's reference goes to the stack */
            return false;
        }
        bool fail = cur->result.kind == DEFERRED_FAILURE;
        deferred_fn fn = fail ? p.eb : p.cb;
        void *arg = fail ? p.eb_arg : p.cb_arg;
        if (fn && run_one(cur, fn, arg))
            return true;
    }
}

/* The general loop, for waiters of waiters: an explicit stack of the
 * Deferreds whose queues are being run (each with a reference), started with
 * the n in v, the last on top; when a queue is done, the one below goes on. */
static __attribute__((noinline)) void run_nested(struct deferred *const *v, size_t n)
{
    struct run_stack s;                   /* no initialiser: inl stays untouched */
    s.v = s.inl;
    s.n = 0;
    s.cap = DEFERRED_STACK_INLINE;
    for (size_t i = 0; i < n; i++)
        stack_push(&s, v[i]);
    while (s.n > 0) {
        struct deferred *cur = s.v[s.n - 1];
        if (cur->paused)
            break;                        /* everything below waits for the unpause */
        struct deferred *waiter = NULL;
        if (!run_queue(cur, &waiter)) {
            stack_push(&s, waiter);
            continue;
        }
        cur->unhandled = cur->result.kind == DEFERRED_FAILURE;
        s.n--;
        deferred_unref(cur);
    }
    while (s.n > 0)
        deferred_unref(s.v[--s.n]);
    if (s.v != s.inl)
        free(s.v);
}

/* Run d's queue (§1.5): the general loop's work for a stack of depth one or
 * two, without the stack.  d's own queue runs to its end or until d waits;
 * when a continuation hands d's result to a waiter w, w's queue runs, then
 * d's goes on; only a continuation in w's queue (a waiter of a waiter) goes
 * to run_nested.  Each Deferred being run holds a reference, as a callback
 * may drop the last outside one.  Returns 0, so that the firing functions
 * end in a tail call. */
static __attribute__((noinline)) int run(struct deferred *d)
{
    if (d->running || d->paused)
        return 0;                         /* running: its pass picks new pairs up */
    d->refs++;
    struct deferred *w, *w2;
    while (!run_queue(d, &w)) {
        if (w->paused) {                  /* everything below waits for the unpause */
            deferred_unref(w);
            deferred_unref(d);
            return 0;
        }
        if (!run_queue(w, &w2)) {
            struct deferred *const v[3] = { d, w, w2 };
            run_nested(v, 3);
            return 0;
        }
        w->unhandled = w->result.kind == DEFERRED_FAILURE;
        deferred_unref(w);
        if (d->paused) {
            deferred_unref(d);
            return 0;
        }
    }
    d->unhandled = d->result.kind == DEFERRED_FAILURE;
    deferred_unref(d);
    return 0;
}

/* ---- firing, adding --------------------------------------------------------- */

int deferred_fire(struct deferred *d, struct deferred_result r)
{
    if (r.kind == DEFERRED_DEFERRED || (r.kind == DEFERRED_FAILURE && !r.failure))
        return DEFERRED_E_INVALID;        /* d stays unfired */
    if (d->called) {
        drop_result(r);
        if (d->suppress) {
            d->suppress = 0;
            return 0;
        }
        return DEFERRED_E_ALREADY_CALLED;
    }
    d->called = 1;
    d->result = r;
    if (d->rp == d->wp && !d->paused) {   /* nothing queued: what run() would do */
        d->unhandled = r.kind == DEFERRED_FAILURE;
        return 0;
    }
    return run(d);
}

struct deferred *deferred_succeed(void *value)
{
    struct deferred *d = deferred_new();
    d->called = 1;
    d->result = deferred_ok(value);
    return d;
}

struct deferred *deferred_fail(struct failure *f)
{
    if (!f)
        f = failure_new(&FAILURE_NO_CURRENT_EXCEPTION, 0, "deferred_fail(NULL): no Failure");
    struct deferred *d = deferred_new();
    d->called = 1;
    d->result = deferred_err(f);
    d->unhandled = 1;
    return d;
}

struct deferred *deferred_maybe(struct deferred_result (*fn)(void *arg), void *arg)
{
    struct deferred_result r = check_returned(fn(arg));
    switch (r.kind) {
    case DEFERRED_DEFERRED: return r.deferred;
    case DEFERRED_FAILURE:  return deferred_fail(r.failure);
    default:             return deferred_succeed(r.value);
    }
}

struct deferred *deferred_impl_add(struct deferred *d, deferred_fn cb, void *cb_arg,
                                   deferred_fn eb, void *eb_arg)
{
    queue_push(d, cb, cb_arg, eb, eb_arg);
    if (d->called)
        run(d);
    return d;
}

static struct deferred_result deferred_chain_unref_cb(struct deferred_result r, void *d2)
{
    struct deferred_result out = deferred_chain_cb(r, d2);
    deferred_unref(d2);
    return out;
}

struct deferred_result deferred_chain_cb(struct deferred_result r, void *d2)
{
    if (r.kind == DEFERRED_FAILURE)
        failure_ref(r.failure);           /* d2 takes its own reference */
    if (deferred_fire(d2, r) == DEFERRED_E_ALREADY_CALLED) /* d2.callback() raised */
        return deferred_err(failure_new(&FAILURE_ALREADY_CALLED, 0,
                                        "chainDeferred: the chained Deferred has already been called"));
    return deferred_ok(NULL);
}

struct deferred *deferred_chain(struct deferred *d1, struct deferred *d2)
{
    deferred_ref(d2);                     /* until d1's pair has run */
    return deferred_add_callbacks(d1, deferred_chain_unref_cb, d2, deferred_chain_unref_cb, d2);
}

/* ---- state, pause, cancel ------------------------------------------------- */

bool deferred_called(const struct deferred *d) { return d->called; }
int deferred_paused(const struct deferred *d) { return d->paused; }
struct deferred_result deferred_current_result(const struct deferred *d) { return d->result; }

bool deferred_waiting(const struct deferred *d)
{
    return d->called && d->result.kind == DEFERRED_DEFERRED;
}

void deferred_pause(struct deferred *d)
{
    d->paused++;
}

void deferred_unpause(struct deferred *d)
{
    if (d->paused <= 0) {
        fprintf(stderr, "deferred_unpause: Deferred %p is not paused (%d)\n", (void *)d, d->paused);
        abort();
    }
    if (--d->paused == 0 && d->called)
        run(d);
}

struct failure *deferred_cancel(struct deferred *d)
{
    /* Waiting: forward to the innermost Deferred, iteratively. */
    while (d->called && d->result.kind == DEFERRED_DEFERRED)
        d = d->result.deferred;
    if (d->called)
        return NULL;
    if (d->flavour == DEFERRED_LIST)
        return deferred_list_cancel(d);
    struct failure *err = NULL;
    d->refs++;                            /* the canceller may drop the last reference */
    if (d->canceller)
        err = d->canceller(d, d->canceller_arg);
    else
        d->suppress = 1;
    if (!err && !d->called)
        deferred_errback(d, failure_new(&FAILURE_CANCELLED, 0, "Deferred was cancelled"));
    deferred_unref(d);
    return err;
}

/* ---- clocks -------------------------------------------------------------- */

double deferred_clock_now(struct deferred_clock *c)
{
    return c->ops->now(c);
}

struct deferred_call *deferred_call_later(struct deferred_clock *c, double delay,
                                          void (*fn)(void *arg), void *arg)
{
    assert(delay >= 0);
    return c->ops->call_later(c, delay, fn, arg);
}

bool deferred_call_active(const struct deferred_call *call)
{
    return call->state == DEFERRED_CALL_PENDING;
}

static int call_state_error(const struct deferred_call *call)
{
    return call->state == DEFERRED_CALL_CALLED ? DEFERRED_CALL_E_CALLED : DEFERRED_CALL_E_CANCELLED;
}

int deferred_call_cancel(struct deferred_call *call)
{
    if (call->state != DEFERRED_CALL_PENDING)
        return call_state_error(call);
    call->state = DEFERRED_CALL_CANCELLED;
    call->ops->disarm(call);
    deferred_call_unref(call);            /* the clock's reference */
    return 0;
}

int deferred_call_reset(struct deferred_call *call, double delay)
{
    if (call->state != DEFERRED_CALL_PENDING)
        return call_state_error(call);
    call->ops->rearm(call, delay);
    return 0;
}

void deferred_call_unref(struct deferred_call *call)
{
    if (call && --call->refs == 0)
        call->ops->release(call);
}

void deferred_call_run(struct deferred_call *call)
{
    call->state = DEFERRED_CALL_CALLED;   /* before fn: active() is false inside it */
    call->fn(call->arg);
    deferred_call_unref(call);            /* the clock's reference */
}

/* The fake clock: one list sorted by deadline, kept as task.Clock keeps its
 * list (a stable sort after each change), see deferred.h. */
struct fake_call {
    struct deferred_call base;    /* must be first */
    struct fake_call *next;       /* next pending call, or NULL */
};

struct fake_clock {
    struct deferred_clock clock;  /* must be first */
    double now;                   /* seconds since creation */
    struct fake_call *pending;    /* sorted list of pending calls */
};

static double fake_now(struct deferred_clock *c)
{
    return ((struct fake_clock *)c)->now;
}

/* Insert call in deadline order: after the calls due at the same time
 * (after_equal) or before them. */
static void fake_insert(struct fake_clock *fc, struct fake_call *call, bool after_equal)
{
    struct fake_call **p = &fc->pending;
    while (*p && ((*p)->base.when < call->base.when
                  || (after_equal && (*p)->base.when == call->base.when)))
        p = &(*p)->next;
    call->next = *p;
    *p = call;
}

static void fake_disarm(struct deferred_call *call)
{
    struct fake_clock *fc = (struct fake_clock *)call->clock;
    for (struct fake_call **p = &fc->pending; *p; p = &(*p)->next)
        if (&(*p)->base == call) {
            *p = (*p)->next;
            return;
        }
}

/* A stable sort after the deadline changed: moving later, the call stays
 * before the calls it preceded (all of them were due no earlier than it);
 * moving earlier, the calls already due at the new time stay before it. */
static void fake_rearm(struct deferred_call *call, double delay)
{
    struct fake_clock *fc = (struct fake_clock *)call->clock;
    double when = fc->now + delay;
    if (when == call->when)
        return;
    bool later = when > call->when;
    fake_disarm(call);
    call->when = when;
    fake_insert(fc, (struct fake_call *)call, !later);
}

static void fake_release(struct deferred_call *call)
{
    free(call);
}

static const struct deferred_clock_ops fake_ops;

static struct deferred_call *fake_call_later(struct deferred_clock *c, double delay,
                                             void (*fn)(void *arg), void *arg)
{
    struct fake_clock *fc = (struct fake_clock *)c;
    struct fake_call *call = xmalloc(sizeof *call);
    call->base = (struct deferred_call){ c, &fake_ops, 2, DEFERRED_CALL_PENDING, fc->now + delay, fn, arg };
    fake_insert(fc, call, true);
    return &call->base;
}

static const struct deferred_clock_ops fake_ops = {
    fake_now, fake_call_later, fake_disarm, fake_rearm, fake_release,
};

struct deferred_clock *deferred_fake_clock_new(void)
{
    struct fake_clock *fc = calloc(1, sizeof *fc);
    if (!fc)
        abort();
    fc->clock.ops = &fake_ops;
    return &fc->clock;
}

void deferred_fake_clock_advance(struct deferred_clock *c, double seconds)
{
    struct fake_clock *fc = (struct fake_clock *)c;
    fc->now += seconds;
    while (fc->pending && fc->pending->base.when <= fc->now) {
        struct fake_call *call = fc->pending;
        fc->pending = call->next;
        deferred_call_run(&call->base);
    }
}

size_t deferred_fake_clock_pending(struct deferred_clock *c)
{
    size_t n = 0;
    for (struct fake_call *p = ((struct fake_clock *)c)->pending; p; p = p->next)
        n++;
    return n;
}

void deferred_fake_clock_free(struct deferred_clock *c)
{
    struct fake_clock *fc = (struct fake_clock *)c;
    while (fc->pending) {
        struct fake_call *call = fc->pending;
        fc->pending = call->next;
        call->base.state = DEFERRED_CALL_CANCELLED;
        call->base.clock = NULL;          /* a handle still held must not reach fc */
        deferred_call_unref(&call->base);
    }
    free(fc);
}

/* ---- addTimeout (§4.3) ------------------------------------------------------ */

struct timeout_ctx {
    struct deferred *d;           /* a reference, dropped when d fires */
    struct deferred_call *call;   /* the timer (our reference) */
    double seconds;               /* for the TimeoutError message */
    bool timed_out;               /* the timer fired and cancelled d */
};

static void timeout_fire(void *arg)
{
    struct timeout_ctx *t = arg;
    t->timed_out = true;
    struct failure *err = deferred_cancel(t->d);
    if (err) {                            /* a canceller refused: report, keep waiting */
        report_unhandled(err);
        failure_unref(err);
    }
}

static struct deferred_result timeout_convert(struct deferred_result r, void *arg)
{
    struct timeout_ctx *t = arg;
    if (t->timed_out && r.kind == DEFERRED_FAILURE && failure_is(r.failure, &FAILURE_CANCELLED))
        return deferred_err(failure_new(&FAILURE_TIMEOUT, 0, "Deferred timed out after %g seconds",
                                        t->seconds));
    return r;
}

static struct deferred_result timeout_stop(struct deferred_result r, void *arg)
{
    struct timeout_ctx *t = arg;
    deferred_call_cancel(t->call);        /* no-op when it already ran */
    deferred_call_unref(t->call);
    deferred_unref(t->d);                 /* safe: the run loop holds a reference */
    free(t);
    return r;
}

struct deferred *deferred_add_timeout(struct deferred *d, double seconds,
                                      struct deferred_clock *clock)
{
    struct timeout_ctx *t = xmalloc(sizeof *t);
    *t = (struct timeout_ctx){ deferred_ref(d), NULL, seconds, false };
    t->call = deferred_call_later(clock, seconds, timeout_fire, t);
    deferred_add_both(d, timeout_convert, t);
    return deferred_add_both(d, timeout_stop, t);
}

/* ---- DeferredList, gather_results (§5) -------------------------------------- */

struct deferred_list;

/* Per member: where its outcome goes.  Holds a reference on the list until the
 * member's pair has run. */
struct deferred_list_slot {
    struct deferred_list *dl;     /* the list */
    size_t index;                 /* member index */
};

struct deferred_list {
    struct deferred d;                 /* the list is a Deferred (must be first) */
    unsigned flags;                    /* DEFERRED_LIST_* */
    bool gather;                       /* gather_results: fire with values[] */
    size_t finished;                   /* members completed */
    struct deferred **members;         /* a reference on each */
    struct deferred_list_slot *slots;  /* one per member */
    struct deferred_list_results res;  /* the collected outcomes */
    struct deferred_list_first first;  /* fire-on-one-callback result */
    void **values;                     /* gather_results result */
};

static void deferred_list_destroy(struct deferred *d)
{
    struct deferred_list *dl = (struct deferred_list *)d;
    for (size_t i = 0; i < dl->res.n; i++) {
        drop_result(dl->res.items[i].result);
        deferred_unref(dl->members[i]);
    }
    free(dl->members);
    free(dl->slots);
    free(dl->res.items);
    free(dl->values);
}

static void deferred_list_complete(struct deferred_list *dl, size_t i)
{
    struct deferred_list_item *it = &dl->res.items[i];
    if (it->success && (dl->flags & DEFERRED_LIST_FIRE_ON_ONE_CALLBACK)) {
        dl->first = (struct deferred_list_first){ it->result.value, i };
        deferred_callback(&dl->d, &dl->first);
    } else if (!it->success && (dl->flags & DEFERRED_LIST_FIRE_ON_ONE_ERRBACK)) {
        struct failure *sub = it->result.failure;
        deferred_errback(&dl->d, failure_wrap(&FAILURE_FIRST_ERROR, (int)i, sub,
                                              "FirstError[#%zu, %s: %s]", i, sub->type->name,
                                              sub->message));
    } else if (dl->finished == dl->res.n) {
        if (!dl->gather) {
            deferred_callback(&dl->d, &dl->res);
            return;
        }
        dl->values = xmalloc((dl->res.n ? dl->res.n : 1) * sizeof *dl->values);
        for (size_t k = 0; k < dl->res.n; k++)
            dl->values[k] = dl->res.items[k].result.value;
        deferred_callback(&dl->d, dl->values);
    }
}

static struct deferred_result deferred_list_member_cb(struct deferred_result r, void *arg)
{
    struct deferred_list_slot *slot = arg;
    struct deferred_list *dl = slot->dl;
    struct deferred_list_item *it = &dl->res.items[slot->index];
    it->done = true;
    it->success = r.kind != DEFERRED_FAILURE;
    it->result = r;
    failure_ref(it->success ? NULL : r.failure);
    dl->finished++;
    if (!dl->d.called)
        deferred_list_complete(dl, slot->index);
    if (!it->success && (dl->flags & DEFERRED_LIST_CONSUME_ERRORS))
        r = deferred_ok(NULL);
    deferred_unref(&dl->d);               /* the slot's reference; may free dl */
    return r;
}

static struct failure *deferred_list_cancel(struct deferred *d)
{
    struct deferred_list *dl = (struct deferred_list *)d;
    d->refs++;
    /* Every member, even after the list has fired part-way through. */
    for (size_t i = 0; i < dl->res.n; i++) {
        struct failure *err = deferred_cancel(dl->members[i]);
        if (err) {                        /* logged and ignored, as Twisted does */
            report_unhandled(err);
            failure_unref(err);
        }
    }
    deferred_unref(d);
    return NULL;
}

static struct deferred *deferred_list_build(struct deferred *const *ds, size_t n, unsigned flags,
                                            bool gather)
{
    struct deferred_list *dl = xmalloc(sizeof *dl);
    deferred_init(&dl->d);
    dl->d.flavour = DEFERRED_LIST;
    dl->flags = flags;
    dl->gather = gather;
    dl->finished = 0;
    dl->members = xmalloc((n ? n : 1) * sizeof *dl->members);
    dl->slots = xmalloc((n ? n : 1) * sizeof *dl->slots);
    dl->res.n = n;
    dl->res.items = calloc(n ? n : 1, sizeof *dl->res.items);
    dl->values = NULL;
    if (!dl->res.items)
        abort();
    if (n == 0 && !(flags & DEFERRED_LIST_FIRE_ON_ONE_CALLBACK)) {
        if (gather)
            dl->values = xmalloc(sizeof *dl->values);
        deferred_callback(&dl->d, gather ? (void *)dl->values : (void *)&dl->res);
    }
    for (size_t i = 0; i < n; i++) {
        dl->members[i] = deferred_ref(ds[i]);
        dl->slots[i] = (struct deferred_list_slot){ dl, i };
        dl->d.refs++;                     /* the slot's reference */
        deferred_add_both(ds[i], deferred_list_member_cb, &dl->slots[i]);
    }
    return &dl->d;
}

struct deferred *deferred_list_new(struct deferred *const *ds, size_t n, unsigned flags)
{
    return deferred_list_build(ds, n, flags, false);
}

struct deferred *deferred_gather_results(struct deferred *const *ds, size_t n, bool consume_errors)
{
    unsigned flags = DEFERRED_LIST_FIRE_ON_ONE_ERRBACK | (consume_errors ? DEFERRED_LIST_CONSUME_ERRORS : 0);
    return deferred_list_build(ds, n, flags, true);
}

/* ---- DeferredSemaphore ------------------------------------------------------- */

/* A queued acquire; the Deferred is the waiter's, this node is the queue's. */
struct sem_waiter {
    struct deferred *d;           /* the acquire Deferred (a reference) */
    struct sem_waiter *next;      /* FIFO */
    struct deferred_semaphore *sem; /* for the canceller */
};

struct deferred_semaphore {
    int tokens;                   /* free tokens */
    int limit;                    /* tokens in all (release beyond it is a bug) */
    struct sem_waiter *head;      /* waiting acquires, oldest first */
    struct sem_waiter **tail;     /* where the next waiter goes */
};

struct deferred_semaphore *deferred_semaphore_new(int tokens)
{
    assert(tokens > 0);
    struct deferred_semaphore *s = xmalloc(sizeof *s);
    *s = (struct deferred_semaphore){ tokens, tokens, NULL, NULL };
    s->tail = &s->head;
    return s;
}

static void sem_unlink(struct deferred_semaphore *s, struct sem_waiter *w)
{
    struct sem_waiter **p = &s->head;
    while (*p != w)
        p = &(*p)->next;
    *p = w->next;
    if (s->tail == &w->next)
        s->tail = p;
}

/* Cancelling a queued acquire: leave the queue; the Deferred fails with CancelledError. */
static struct failure *sem_cancel(struct deferred *d, void *arg)
{
    struct sem_waiter *w = arg;
    (void)d;
    sem_unlink(w->sem, w);
    deferred_unref(w->d);
    free(w);
    return NULL;
}

struct deferred *deferred_semaphore_acquire(struct deferred_semaphore *s)
{
    if (s->tokens > 0) {
        s->tokens--;
        return deferred_succeed(s);
    }
    struct sem_waiter *w = xmalloc(sizeof *w);
    w->d = deferred_new_cancellable(sem_cancel, w);
    w->next = NULL;
    w->sem = s;
    *s->tail = w;
    s->tail = &w->next;
    return deferred_ref(w->d);
}

void deferred_semaphore_release(struct deferred_semaphore *s)
{
    assert(s->tokens < s->limit);
    struct sem_waiter *w = s->head;
    if (!w) {
        s->tokens++;
        return;
    }
    sem_unlink(s, w);
    struct deferred *d = w->d;
    free(w);
    d->canceller = NULL;                  /* no longer queued */
    deferred_callback(d, s);              /* the token passes straight to the waiter */
    deferred_unref(d);
}

int deferred_semaphore_tokens(const struct deferred_semaphore *s)
{
    return s->tokens;
}

void deferred_semaphore_free(struct deferred_semaphore *s)
{
    while (s->head)
        failure_unref(deferred_cancel(s->head->d));   /* the canceller unlinks it */
    free(s);
}
