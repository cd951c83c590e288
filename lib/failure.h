/* failure — the error value that travels down a Deferred's errback path, the
 * C counterpart of twisted.python.failure.Failure (spec: shared/spec/deferred.md §3).
 *
 * A Failure has a *type* (a static descriptor with a parent, so that one check
 * matches a whole family, as Python's exception classes do through their MRO),
 * a formatted message, an optional integer code (errno, an SMTP reply code, the
 * member index of a FirstError, ...), an optional cause (another Failure, e.g.
 * FirstError's subFailure) and an optional payload with its destructor.
 *
 * Ownership: a Failure is reference counted.  failure_new*() returns one
 * reference owned by the caller; failure_unref() drops one and frees the
 * Failure (its message, its payload, its reference on the cause) at zero.
 * The count is not atomic: a Failure may be handed from one thread to another
 * (through a lock or a queue) but never shared by two threads at once.
 *
 * Divergences from Twisted: no traceback or frames (C has none to capture);
 * trap() cannot raise in C, so it returns NULL when nothing matches and the
 * errback passes the *same* Failure on (Twisted re-raises a copy with the same
 * type and value, which is observably the same).
 *
 * Declaring a family of one's own (in a header / in one .c file):
 *     extern const struct failure_type SMTP_SESSION_ERROR, SMTP_SESSION_TEMPFAIL;
 *     FAILURE_TYPE_DEFINE(SMTP_SESSION_ERROR, "smtp.SMTPError", &FAILURE_ERROR);
 *     FAILURE_TYPE_DEFINE(SMTP_SESSION_TEMPFAIL, "smtp.TempFail", &SMTP_SESSION_ERROR);
 */
#ifndef MAILBENCH_FAILURE_H
#define MAILBENCH_FAILURE_H

#include <stdbool.h>
#include <stdio.h>

/* An error type: a name and the type it specialises.  Always static storage. */
struct failure_type {
    const char *name;                  /* dotted name, e.g. "defer.CancelledError" */
    const struct failure_type *parent; /* the family it belongs to; NULL only for the root */
};

#define FAILURE_TYPE_DEFINE(sym, name_, parent_) \
    const struct failure_type sym = { (name_), (parent_) }

/* The root of every family (Python's Exception). */
extern const struct failure_type FAILURE_ERROR;
/* Deferred library errors. */
extern const struct failure_type FAILURE_CANCELLED;      /* defer.CancelledError */
extern const struct failure_type FAILURE_TIMEOUT;        /* defer.TimeoutError (add_timeout) */
extern const struct failure_type FAILURE_ALREADY_CALLED; /* defer.AlreadyCalledError */
extern const struct failure_type FAILURE_SELF_RETURN;    /* a callback returned its own Deferred */
extern const struct failure_type FAILURE_NO_CURRENT_EXCEPTION; /* an error without a Failure (NULL) */
extern const struct failure_type FAILURE_FIRST_ERROR;    /* defer.FirstError: code = index, cause = subFailure */
/* Operating-system and connection errors (code = errno where there is one). */
extern const struct failure_type FAILURE_OS_ERROR;           /* any errno failure */
extern const struct failure_type FAILURE_CONNECT_ERROR;      /* connecting failed (parent of the next two) */
extern const struct failure_type FAILURE_CONNECTION_REFUSED; /* ECONNREFUSED */
extern const struct failure_type FAILURE_CONNECT_TIMEOUT;    /* no answer within the connect timeout */
extern const struct failure_type FAILURE_CONNECTION_CLOSED;  /* an established connection ended */
extern const struct failure_type FAILURE_CONNECTION_LOST;    /* ... uncleanly (reset, write error) */
extern const struct failure_type FAILURE_CONNECTION_DONE;    /* ... cleanly (EOF or our own close) */

/* One error value.  Fields are public for reading; change them only through
 * the functions below. */
struct failure {
    const struct failure_type *type; /* what went wrong (matched by failure_check) */
    int refs;                        /* reference count, see the header comment */
    int code;                        /* optional number: errno, reply code, index; 0 if none */
    char *message;                   /* formatted text, never NULL (may be "") */
    struct failure *cause;           /* an owned reference to the underlying Failure, or NULL */
    void *data;                      /* optional payload for the module that raised it */
    void (*data_free)(void *data);   /* frees data when the Failure is freed; NULL = not owned */
};

/* A new Failure (one reference, owned by the caller).  Never returns NULL:
 * running out of memory aborts, as everywhere in this library. */
struct failure *failure_new(const struct failure_type *type, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same, with a cause: the new Failure takes its *own* reference on cause
 * (the caller keeps theirs).  cause may be NULL. */
struct failure *failure_wrap(const struct failure_type *type, int code, struct failure *cause,
                             const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* An errno failure of the given type (FAILURE_OS_ERROR or a descendant):
 * message "what: strerror(err)", code = err. */
struct failure *failure_from_errno(const struct failure_type *type, int err, const char *what);

struct failure *failure_ref(struct failure *f);  /* returns f; NULL is allowed */
void failure_unref(struct failure *f);           /* NULL is allowed */

/* Is f's type `type` or a descendant of it? */
bool failure_is(const struct failure *f, const struct failure_type *type);

/* check(): walks the *arguments* in order and returns the first one that f's
 * type is or descends from (so check(KeyError-failure, ValueError, LookupError,
 * KeyError) returns LookupError), or NULL.  types is NULL-terminated. */
const struct failure_type *failure_check_v(const struct failure *f,
                                           const struct failure_type *const *types);
#define failure_check(f, ...) \
    failure_check_v((f), (const struct failure_type *const[]){ __VA_ARGS__, NULL })

/* trap(): check() for use in an errback.  In C it cannot raise, so the idiom is
 *     if (!failure_trap(f, &FAILURE_CANCELLED)) return r;   // pass the same Failure on
 *     ... handle, then return deferred_ok(...) to recover ... */
#define failure_trap(f, ...) failure_check((f), __VA_ARGS__)

/* check by name: is `name` the name of f's type or of one of its ancestors?
 * (Twisted's check("builtins.KeyError")).  Returns name or NULL. */
const char *failure_check_name(const struct failure *f, const char *name);

/* The message (Twisted's getErrorMessage()). */
const char *failure_message(const struct failure *f);

/* Print "type.name: message [code N]" and, for each cause, an indented
 * "caused by: ..." line.  One line per Failure in the cause chain. */
void failure_print(const struct failure *f, FILE *out);

#endif
