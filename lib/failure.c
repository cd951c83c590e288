/* failure — reference-counted error values with a type family (see failure.h). */
#include "failure.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

FAILURE_TYPE_DEFINE(FAILURE_ERROR, "Error", NULL);
FAILURE_TYPE_DEFINE(FAILURE_CANCELLED, "defer.CancelledError", &FAILURE_ERROR);
FAILURE_TYPE_DEFINE(FAILURE_TIMEOUT, "defer.TimeoutError", &FAILURE_ERROR);
FAILURE_TYPE_DEFINE(FAILURE_ALREADY_CALLED, "defer.AlreadyCalledError", &FAILURE_ERROR);
FAILURE_TYPE_DEFINE(FAILURE_SELF_RETURN, "defer.SelfReturnError", &FAILURE_ERROR);
FAILURE_TYPE_DEFINE(FAILURE_NO_CURRENT_EXCEPTION, "failure.NoCurrentExceptionError", &FAILURE_ERROR);
FAILURE_TYPE_DEFINE(FAILURE_FIRST_ERROR, "defer.FirstError", &FAILURE_ERROR);
FAILURE_TYPE_DEFINE(FAILURE_OS_ERROR, "OSError", &FAILURE_ERROR);
FAILURE_TYPE_DEFINE(FAILURE_CONNECT_ERROR, "error.ConnectError", &FAILURE_OS_ERROR);
FAILURE_TYPE_DEFINE(FAILURE_CONNECTION_REFUSED, "error.ConnectionRefusedError", &FAILURE_CONNECT_ERROR);
FAILURE_TYPE_DEFINE(FAILURE_CONNECT_TIMEOUT, "error.TCPTimedOutError", &FAILURE_CONNECT_ERROR);
FAILURE_TYPE_DEFINE(FAILURE_CONNECTION_CLOSED, "error.ConnectionClosed", &FAILURE_OS_ERROR);
FAILURE_TYPE_DEFINE(FAILURE_CONNECTION_LOST, "error.ConnectionLost", &FAILURE_CONNECTION_CLOSED);
FAILURE_TYPE_DEFINE(FAILURE_CONNECTION_DONE, "error.ConnectionDone", &FAILURE_CONNECTION_CLOSED);

static struct failure *failure_alloc(const struct failure_type *type, int code,
                                     struct failure *cause, const char *fmt, va_list ap)
{
    struct failure *f = calloc(1, sizeof *f);
    if (!f || vasprintf(&f->message, fmt, ap) < 0)
        abort();                       /* out of memory: cannot be reported sanely */
    f->type = type;
    f->refs = 1;
    f->code = code;
    f->cause = failure_ref(cause);
    return f;
}

struct failure *failure_new(const struct failure_type *type, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct failure *f = failure_alloc(type, code, NULL, fmt, ap);
    va_end(ap);
    return f;
}

struct failure *failure_wrap(const struct failure_type *type, int code, struct failure *cause,
                             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct failure *f = failure_alloc(type, code, cause, fmt, ap);
    va_end(ap);
    return f;
}

struct failure *failure_from_errno(const struct failure_type *type, int err, const char *what)
{
    char buf[128];
    const char *s = strerror_r(err, buf, sizeof buf);   /* GNU variant: returns the text */
    return failure_new(type, err, "%s: %s", what, s);
}

struct failure *failure_ref(struct failure *f)
{
    if (f)
        f->refs++;
    return f;
}

void failure_unref(struct failure *f)
{
    /* Iterative over the cause chain, so a long chain of wraps cannot recurse. */
    while (f && --f->refs == 0) {
        struct failure *cause = f->cause;
        if (f->data_free)
            f->data_free(f->data);
        free(f->message);
        free(f);
        f = cause;
    }
}

bool failure_is(const struct failure *f, const struct failure_type *type)
{
    for (const struct failure_type *t = f->type; t; t = t->parent)
        if (t == type)
            return true;
    return false;
}

const struct failure_type *failure_check_v(const struct failure *f,
                                           const struct failure_type *const *types)
{
    for (; *types; types++)
        if (failure_is(f, *types))
            return *types;
    return NULL;
}

const char *failure_check_name(const struct failure *f, const char *name)
{
    for (const struct failure_type *t = f->type; t; t = t->parent)
        if (strcmp(t->name, name) == 0)
            return name;
    return NULL;
}

const char *failure_message(const struct failure *f)
{
    return f->message;
}

void failure_print(const struct failure *f, FILE *out)
{
    for (int depth = 0; f; f = f->cause, depth++) {
        fprintf(out, "%s%s: %s", depth ? "  caused by: " : "", f->type->name, f->message);
        if (f->code)
            fprintf(out, " [code %d]", f->code);
        fputc('\n', out);
    }
}
