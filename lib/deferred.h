/* deferred — Twisted's Deferred in C (spec: shared/spec/deferred.md).
 *
 * A Deferred is a promise of one result, plus a FIFO of (callback, errback)
 * pairs.  When it fires, each pair in turn receives the current result and
 * returns the next one: the callback side runs while the result is a value,
 * the errback side while it is a Failure.  What a function returns decides the
 * path onward, exactly as in Twisted:
 *     return deferred_ok(v)     the next callback gets v (from an errback: recovery)
 *     return deferred_err(f)    the next errback gets f
 *     return deferred_wait(d2)  the chain pauses until d2 has a result, then goes on
 *                            with it (d2 is "chained": §2)
 *     return r               pass the result on unchanged
 *
 *     struct deferred *d = reactor_connect_tcp(r, "127.0.0.1", port, 5.0);
 *     deferred_add_callback(d, send_helo, ctx);
 *     deferred_add_callback(d, helo_done, ctx);
 *     deferred_add_errback(d, on_failure, ctx);
 *     deferred_add_timeout(d, 30.0, reactor_clock(r));
 *     deferred_unref(d);      // the chain stays alive while an operation holds it
 *
 * WHEN CALLBACKS RUN.  Always synchronously, never "later": firing
 * (deferred_callback / deferred_errback) runs every runnable pair before it
 * returns, and adding a pair to a Deferred that has already fired (and is not
 * paused or waiting) runs it before deferred_add_* returns.  Only the reactor
 * (timers, I/O, the thread pool's ev_async) introduces asynchrony.  The run
 * loop is iterative (§1.5): long chains and deep nesting use no C stack.
 *
 * OWNERSHIP.
 * - Deferreds are reference counted.  deferred_new(), deferred_succeed(),
 *   deferred_fail() and every function returning `struct deferred *` as a new
 *   operation (reactor_connect_tcp, threadpool_defer_to_thread, deferred_list_new, ...) give
 *   the caller one reference; release it with deferred_unref().  Functions
 *   that return their argument for fluent chaining (deferred_add_*) do not.
 * - Links keep Deferreds alive: a Deferred waiting on an inner one holds a
 *   reference to the inner, and the inner's continuation holds one to the
 *   waiter; a pending add_timeout holds one; the reactor or thread pool holds
 *   one until it fires the Deferred it returned; a DeferredList and its pending
 *   members hold each other.  So dropping your reference right after building
 *   a chain is fine.  Consequence: an outer waiting on an inner that is never
 *   fired or cancelled is a reference cycle and is leaked (Twisted leaves it
 *   hanging for the garbage collector; here: fire or cancel what you start).
 * - Running callbacks hold a reference to their Deferred, so a callback may
 *   drop the last outside reference to it.
 * - Values (void *) are never owned or freed by a Deferred: they belong to
 *   whoever produced them, by the convention of the API that produced them.
 * - Failures in a result ARE owned: the Deferred holds one reference on the
 *   Failure in its current result.  A function receiving a Failure borrows it;
 *   returning deferred_err(f) with that same f keeps it, returning anything else
 *   makes the Deferred drop it (so an errback that recovers does nothing
 *   special); returning deferred_err(g) with a different g hands over one
 *   reference of g (e.g. a fresh failure_new / failure_wrap).  To keep a
 *   Failure beyond the call, failure_ref() it.  deferred_errback(d, f) and
 *   deferred_fail(f) take over the caller's reference on f, even when refused.
 * - A Deferred returned from a callback (deferred_wait(d2)) hands over one
 *   reference on d2 to the chain.
 *
 * UNHANDLED ERRORS.  A Deferred whose chain ends in a Failure remembers it; if
 * it is freed (last unref) still holding that Failure, it reports it once:
 * "Unhandled error in Deferred:" and the Failure on stderr (or to the hook set
 * by deferred_set_unhandled_hook).  A result moved to a waiting outer Deferred
 * is reported by the outer only.
 *
 * DIVERGENCES from Twisted 22.4, all deliberate:
 * - A callback that returns its own Deferred turns the result into a Failure
 *   of type FAILURE_SELF_RETURN instead of wedging silently (§2.4, case 25).
 * - Firing an already-fired Deferred returns DEFERRED_E_ALREADY_CALLED instead
 *   of raising AlreadyCalledError; firing with a Deferred, or errback with a
 *   NULL Failure (Twisted's errback() with no current exception, case 6), is
 *   refused with DEFERRED_E_INVALID and leaves the Deferred unfired.  A callback
 *   that returns deferred_err(NULL) or deferred_wait(NULL), and deferred_fail(NULL),
 *   give a Failure of FAILURE_NO_CURRENT_EXCEPTION instead.
 * - deferred_unpause() without a matching pause() aborts (Twisted goes to -1).
 * - A canceller that "raises" returns a Failure, which deferred_cancel()
 *   returns to its caller (the Deferred stays unfired, as in Twisted).
 * - Failures carry no traceback; trap() passes the same Failure on (failure.h).
 * - inlineCallbacks / coroutines are not provided: write explicit callbacks.
 * - Not thread-safe: a Deferred belongs to one thread (its reactor's).
 */
#ifndef MAILBENCH_DEFERRED_H
#define MAILBENCH_DEFERRED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "failure.h"

struct deferred;

/* ---- results ------------------------------------------------------------ */

enum deferred_kind {
    DEFERRED_VALUE = 0, /* a plain value (Twisted's anything-not-a-Failure) */
    DEFERRED_FAILURE,  /* an error: the errback path runs */
    DEFERRED_DEFERRED, /* only as a return value: wait for this Deferred */
};

/* The current result of a chain, passed and returned by value (16 bytes). */
struct deferred_result {
    enum deferred_kind kind;          /* which member of the union is meant */
    union {
        void *value;                  /* DEFERRED_VALUE; NULL plays Python's None */
        struct failure *failure;      /* DEFERRED_FAILURE */
        struct deferred *deferred;    /* DEFERRED_DEFERRED */
    };
};

static inline struct deferred_result deferred_ok(void *value)
{
    return (struct deferred_result){ .kind = DEFERRED_VALUE, .value = value };
}
static inline struct deferred_result deferred_err(struct failure *f)
{
    return (struct deferred_result){ .kind = DEFERRED_FAILURE, .failure = f };
}
static inline struct deferred_result deferred_wait(struct deferred *d)
{
    return (struct deferred_result){ .kind = DEFERRED_DEFERRED, .deferred = d };
}
static inline bool deferred_is_failure(struct deferred_result r)
{
    return r.kind == DEFERRED_FAILURE;
}

/* A callback or errback: receives the current result (a value on the callback
 * side, a Failure on the errback side, either for add_both) and the extra
 * argument given when it was added (Twisted's *args). */
typedef struct deferred_result (*deferred_fn)(struct deferred_result r, void *arg);

/* A canceller (§4.2): called by deferred_cancel() on an unfired Deferred.  It
 * may fire d itself (that outcome wins); if it leaves d unfired, d fails with
 * FAILURE_CANCELLED.  Returning a Failure plays "the canceller raised": the
 * Deferred stays unfired and deferred_cancel() returns that Failure. */
typedef struct failure *(*deferred_canceller)(struct deferred *d, void *arg);

/* Error codes of the firing functions. */
enum {
    DEFERRED_E_ALREADY_CALLED = -1, /* fired before: result and queue untouched */
    DEFERRED_E_INVALID = -2,     /* fired with a Deferred, or with a NULL Failure */
};

/* ---- life cycle ----------------------------------------------------------- */

struct deferred *deferred_new(void);     /* unfired, no canceller; 1 reference */
struct deferred *deferred_new_cancellable(deferred_canceller canceller, void *arg);
/* (These two, deferred_callback, deferred_errback and the deferred_add_* are
 * inline: "inline fast paths" below.) */
static inline struct deferred *deferred_ref(struct deferred *d);   /* returns d */
static inline void deferred_unref(struct deferred *d);   /* NULL allowed; may report unhandled */

/* Already-fired Deferreds (succeed / fail).  deferred_fail takes over f. */
struct deferred *deferred_succeed(void *value);
struct deferred *deferred_fail(struct failure *f);

/* maybeDeferred: call fn(arg); a returned Deferred is handed back as is (its
 * reference becomes the caller's), a Failure or value comes back fired. */
struct deferred *deferred_maybe(struct deferred_result (*fn)(void *arg), void *arg);

/* ---- firing ------------------------------------------------------------- */

/* Fire with a value / a Failure; runs the chain before returning.  0, or
 * DEFERRED_E_ALREADY_CALLED.  After a cancel() without canceller, exactly one
 * late firing is silently accepted (returns 0, result unchanged) (§4.2). */
static inline int deferred_callback(struct deferred *d, void *value);
static inline int deferred_errback(struct deferred *d, struct failure *f); /* takes over f; NULL: DEFERRED_E_INVALID */
/* Either, from a result (a DEFERRED_FAILURE result errbacks; DEFERRED_DEFERRED is
 * refused with DEFERRED_E_INVALID). */
int deferred_fire(struct deferred *d, struct deferred_result r);

/* ---- adding pairs --------------------------------------------------------- */

/* Append one pair; NULL on a side means pass-through.  Returns d.  Runs the
 * pair at once if d has fired and is neither paused nor waiting. */
static inline struct deferred *deferred_add_callbacks(struct deferred *d, deferred_fn cb,
                                                      void *cb_arg, deferred_fn eb, void *eb_arg);
static inline struct deferred *deferred_add_callback(struct deferred *d, deferred_fn cb, void *arg);
static inline struct deferred *deferred_add_errback(struct deferred *d, deferred_fn eb, void *arg);
static inline struct deferred *deferred_add_both(struct deferred *d, deferred_fn fn, void *arg);

/* chainDeferred (§2.5): when d1's chain reaches this pair, d2 fires with d1's
 * result at that point and d1 goes on with NULL (None).  If d2 has already
 * been called, d1 goes on with a Failure of FAILURE_ALREADY_CALLED instead,
 * as Twisted's d2.callback raising AlreadyCalledError.  Takes its own
 * reference on d2 until the pair has run.  Returns d1. */
struct deferred *deferred_chain(struct deferred *d1, struct deferred *d2);
/* The pair's function, for deferred_add_callbacks(d1, deferred_chain_cb, d2,
 * deferred_chain_cb, d2) when the caller keeps d2 alive itself. */
struct deferred_result deferred_chain_cb(struct deferred_result r, void *d2);

/* ---- state ------------------------------------------------------------ */

bool deferred_called(const struct deferred *d);   /* fired (never goes back) */
int deferred_paused(const struct deferred *d);    /* pause count, incl. waiting */
/* The current result, borrowed (a waiting Deferred reports DEFERRED_DEFERRED and
 * the inner).  Meaningful only once called. */
struct deferred_result deferred_current_result(const struct deferred *d);
/* Is d waiting on an inner Deferred (Twisted's _chainedTo)? */
bool deferred_waiting(const struct deferred *d);

/* ---- pause, cancel ------------------------------------------------------ */

void deferred_pause(struct deferred *d);
void deferred_unpause(struct deferred *d);   /* aborts if not paused */

/* cancel() (§4.2).  Unfired: run the canceller (or arm the one-shot
 * suppression of a late result), then fail with FAILURE_CANCELLED if still
 * unfired.  Waiting on an inner Deferred: cancel the innermost one instead.
 * Fired otherwise: no-op.  Returns NULL, or the Failure a canceller returned
 * (the caller then owns it). */
struct failure *deferred_cancel(struct deferred *d);

/* ---- clocks and timeouts ---------------------------------------------- */

struct deferred_clock;
struct deferred_call;

/* The clock interface (Twisted's IReactorTime).  Two implementations: the
 * fake clock below (task.Clock) and the reactor's (reactor.h). */
struct deferred_clock_ops {
    double (*now)(struct deferred_clock *c);
    /* schedule: fill in the implementation part of call and arm it */
    struct deferred_call *(*call_later)(struct deferred_clock *c, double delay,
                                        void (*fn)(void *arg), void *arg);
    void (*disarm)(struct deferred_call *call);            /* pending -> not pending */
    void (*rearm)(struct deferred_call *call, double delay); /* new deadline now + delay */
    void (*release)(struct deferred_call *call);           /* free the memory */
};

/* A clock: embed it in the implementation's struct. */
struct deferred_clock {
    const struct deferred_clock_ops *ops; /* the implementation */
};

enum deferred_call_state { DEFERRED_CALL_PENDING, DEFERRED_CALL_CALLED, DEFERRED_CALL_CANCELLED };

/* A delayed call (Twisted's DelayedCall); implementations embed it first.
 * A handle may outlive its clock: freeing a clock cancels its pending calls
 * and sets their clock to NULL; cancel / reset then return
 * DEFERRED_CALL_E_CANCELLED and unref frees through ops. */
struct deferred_call {
    struct deferred_clock *clock;   /* the clock it runs on; NULL once that clock is freed */
    const struct deferred_clock_ops *ops; /* its implementation (release works without the clock) */
    int refs;                       /* caller's reference + 1 while pending */
    enum deferred_call_state state; /* pending, ran, or cancelled */
    double when;                    /* deadline on the clock's time line */
    void (*fn)(void *arg);          /* what to call */
    void *arg;                      /* its argument */
};

double deferred_clock_now(struct deferred_clock *c);
/* callLater: returns a handle with one reference for the caller (drop it with
 * deferred_call_unref when you no longer need to cancel / reset / check it;
 * the call still runs).  delay must be >= 0.  fn runs with active() false. */
struct deferred_call *deferred_call_later(struct deferred_clock *c, double delay,
                                          void (*fn)(void *arg), void *arg);
/* 0, or DEFERRED_CALL_E_CALLED / DEFERRED_CALL_E_CANCELLED (AlreadyCalled / AlreadyCancelled). */
int deferred_call_cancel(struct deferred_call *call);
int deferred_call_reset(struct deferred_call *call, double delay);
bool deferred_call_active(const struct deferred_call *call);
void deferred_call_unref(struct deferred_call *call); /* NULL allowed */
/* For implementations: the clock calls this when the deadline is reached. */
void deferred_call_run(struct deferred_call *call);

enum { DEFERRED_CALL_E_CALLED = -1, DEFERRED_CALL_E_CANCELLED = -2 };

/* task.Clock: time starts at 0 and moves only by advance().  advance(n) runs,
 * in deadline order, every call due by now + n, including calls scheduled by
 * those calls.  Equal deadlines run in the order task.Clock gives them: calls
 * keep their place in one list kept sorted by a stable sort, so new calls go
 * after those already due at the same time, and a call reset onto another's
 * deadline keeps its place relative to it (reset later: before the calls
 * already there; reset earlier: after them).  Freeing the clock with calls
 * still pending cancels them without running them; their handles stay valid
 * (see struct deferred_call). */
struct deferred_clock *deferred_fake_clock_new(void);
void deferred_fake_clock_advance(struct deferred_clock *c, double seconds);
size_t deferred_fake_clock_pending(struct deferred_clock *c); /* getDelayedCalls() count */
void deferred_fake_clock_free(struct deferred_clock *c);

/* addTimeout (§4.3): if d has not fired `seconds` from now on `clock`, cancel
 * it; a FAILURE_CANCELLED result at that point becomes FAILURE_TIMEOUT
 * ("Deferred timed out after N seconds", code 0).  Pairs added before see the
 * cancellation, pairs added after see the timeout.  The timer is stopped when
 * d fires.  Returns d. */
struct deferred *deferred_add_timeout(struct deferred *d, double seconds,
                                      struct deferred_clock *clock);

/* ---- DeferredList, gather_results ------------------------------------------ */

enum {
    DEFERRED_LIST_FIRE_ON_ONE_CALLBACK = 1, /* fire with the first success */
    DEFERRED_LIST_FIRE_ON_ONE_ERRBACK = 2, /* fail with FirstError on the first failure */
    DEFERRED_LIST_CONSUME_ERRORS = 4,     /* members' failures become NULL values */
};

/* One member's outcome, in input order. */
struct deferred_list_item {
    bool done;                   /* has this member completed? */
    bool success;                /* SUCCESS (true) / FAILURE (false) */
    struct deferred_result result; /* the value, or a Failure the list holds a reference on */
};

/* The value a DeferredList fires with (unless fire-on-one-callback fired).
 * Owned by the list: valid while the list's Deferred lives. */
struct deferred_list_results {
    size_t n;                       /* number of members */
    struct deferred_list_item *items; /* n entries */
};

/* The value of a fire-on-one-callback list: (value, index). Owned by the list. */
struct deferred_list_first {
    void *value;                    /* the first success's value */
    size_t index;                   /* its member index */
};

/* DeferredList(ds, flags): a Deferred (1 reference for the caller) that
 * collects the members' results (§5.1).  The list takes its own reference on
 * each member.  Members already fired are processed during the call; an empty
 * list fires at once with n = 0 (never with FIRE_ON_ONE_CALLBACK).
 * FirstError: a FAILURE_FIRST_ERROR Failure, code = index, cause = subFailure.
 * Cancelling the list cancels every unfired member. */
struct deferred *deferred_list_new(struct deferred *const *ds, size_t n, unsigned flags);

/* gatherResults(ds, consume_errors): fires with `void **values` (n entries,
 * input order, owned by the list) or fails with FirstError. */
struct deferred *deferred_gather_results(struct deferred *const *ds, size_t n, bool consume_errors);

/* ---- DeferredSemaphore ----------------------------------------------------- */

struct deferred_semaphore;

struct deferred_semaphore *deferred_semaphore_new(int tokens);
/* A Deferred (1 reference for the caller) firing with s when a token is
 * free: at once if one is, else in FIFO order as tokens are released.
 * Cancelling a waiting acquire removes it from the queue. */
struct deferred *deferred_semaphore_acquire(struct deferred_semaphore *s);
/* Give a token back; the next waiter (if any) gets it, synchronously. */
void deferred_semaphore_release(struct deferred_semaphore *s);
int deferred_semaphore_tokens(const struct deferred_semaphore *s); /* free tokens now */
/* Free the semaphore; waiters still queued fail with FAILURE_CANCELLED. */
void deferred_semaphore_free(struct deferred_semaphore *s);

/* ---- diagnostics -------------------------------------------------------- */

/* Freed Deferreds are cached per thread for reuse (a bounded free list); this
 * frees the calling thread's cache (e.g. before a thread exits).  The cache is
 * off in AddressSanitizer builds and under valgrind, so that a use of a freed
 * Deferred is reported there instead of touching a recycled one. */
void deferred_pool_trim(void);

/* Replace the unhandled-error reporter (NULL restores the default, which
 * prints to stderr).  Process-wide; set it before starting threads. */
void deferred_set_unhandled_hook(void (*hook)(const struct failure *f, void *arg), void *arg);

/* A tracer (--trace, models/mailer): before(fn, arg, in) runs before every
 * callback or errback a chain calls, with the result it is given; when it
 * returns a token (not NULL), after(token, out) runs once fn has returned,
 * with what it returned (before anything else is done with it).  NULL, NULL
 * removes it.  Process-wide; set it before starting threads. */
void deferred_set_run_hook(void *(*before)(deferred_fn fn, void *arg, struct deferred_result in),
                           void (*after)(void *token, struct deferred_result out));

/* ---- inline fast paths --------------------------------------------------------
 * The implementation's layout, here only so that the commonest calls (adding
 * a pair to an unfired Deferred, ref, unref) compile to a few instructions in
 * the caller instead of a call: a chain of callbacks costs a few ns each, and
 * a call is a good part of that.  Not API: use the functions above, never
 * the fields; the deferred_impl_* functions are deferred.c's slow paths. */

#define DEFERRED_INLINE_PAIRS 4

/* One queued (callback, errback) pair (deferred.c: continuation and link pairs). */
struct deferred_pair {
    deferred_fn cb;   /* success side, NULL = pass through */
    void *cb_arg;     /* its extra argument */
    deferred_fn eb;   /* failure side, NULL = pass through */
    void *eb_arg;     /* its extra argument */
};

struct deferred {
    struct deferred_result result; /* current result; DEFERRED_DEFERRED(inner, owned ref) while waiting */
    int refs;                     /* reference count (OWNERSHIP above) */
    int paused;                   /* pause count: pause() + waiting on an inner */
    uint8_t called;               /* fired at least once */
    uint8_t running;              /* a user function of this Deferred is on the stack */
    uint8_t suppress;             /* cancel() without canceller: ignore one late firing */
    uint8_t unhandled;            /* the loop left us holding a Failure (report on free) */
    uint8_t flavour;              /* plain, or the DeferredList that embeds us */
    uint8_t seg_log;              /* log2 of the write segment's cap (0: inline) */
    /* The queue: live pairs run from rp to wp, following link pairs across
     * heap segments; the next pair goes to wp unless wp == wend (the end of
     * the inline array, or the write segment's link slot).  An empty queue is
     * always the inline array (rp == wp, rebased to inline_q). */
    struct deferred_pair *rp;     /* the next pair to run */
    struct deferred_pair *wp;     /* where the next pair goes */
    struct deferred_pair *wend;   /* the end of the room at wp */
    deferred_canceller canceller; /* optional, from deferred_new_cancellable */
    void *canceller_arg;          /* its argument */
    struct deferred_pair inline_q[DEFERRED_INLINE_PAIRS]; /* storage for short chains */
};

/* Always inlined, even in a caller the compiler thinks cold (main). */
#define DEFERRED_HOT static inline __attribute__((always_inline))

/* deferred.c: add a pair the long way (the queue is full, or d has fired);
 * free d (its last reference is gone). */
struct deferred *deferred_impl_add(struct deferred *d, deferred_fn cb, void *cb_arg,
                                   deferred_fn eb, void *eb_arg);
void deferred_impl_release(struct deferred *d);

DEFERRED_HOT int deferred_callback(struct deferred *d, void *value)
{
    return deferred_fire(d, deferred_ok(value));
}

DEFERRED_HOT int deferred_errback(struct deferred *d, struct failure *f)
{
    return deferred_fire(d, deferred_err(f));
}

DEFERRED_HOT struct deferred *deferred_ref(struct deferred *d)
{
    d->refs++;
    return d;
}

DEFERRED_HOT void deferred_unref(struct deferred *d)
{
    if (d && --d->refs == 0)
        deferred_impl_release(d);
}

/* An unfired Deferred with room in its queue: a store. */
DEFERRED_HOT struct deferred *deferred_add_callbacks(struct deferred *d, deferred_fn cb,
                                                    void *cb_arg, deferred_fn eb, void *eb_arg)
{
    if (__builtin_expect(d->wp == d->wend || d->called, 0))
        return deferred_impl_add(d, cb, cb_arg, eb, eb_arg);
    *d->wp++ = (struct deferred_pair){ cb, cb_arg, eb, eb_arg };
    return d;
}

DEFERRED_HOT struct deferred *deferred_add_callback(struct deferred *d, deferred_fn cb, void *arg)
{
    return deferred_add_callbacks(d, cb, arg, NULL, NULL);
}

DEFERRED_HOT struct deferred *deferred_add_errback(struct deferred *d, deferred_fn eb, void *arg)
{
    return deferred_add_callbacks(d, NULL, NULL, eb, arg);
}

DEFERRED_HOT struct deferred *deferred_add_both(struct deferred *d, deferred_fn fn, void *arg)
{
    return deferred_add_callbacks(d, fn, arg, fn, arg);
}

#endif
