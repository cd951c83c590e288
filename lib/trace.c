/* trace — see trace.h. */
#include "trace.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *out;               /* the trace file, while open */
static char *buf;               /* the lines, until trace_close */
static size_t buflen;
static FILE *mem;               /* open_memstream over buf */
static long long limit;         /* emails below this index are traced */
static long long live;          /* followed emails in flight */
static long long nevents;
static struct timespec t0;

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)(t.tv_sec - t0.tv_sec) * 1000000000LL + (t.tv_nsec - t0.tv_nsec);
}

int trace_open(const char *path, long long max_email)
{
    out = fopen(path, "w");
    if (out == NULL)
        return -1;
    mem = open_memstream(&buf, &buflen);
    if (mem == NULL) {
        fclose(out);
        out = NULL;
        errno = ENOMEM;
        return -1;
    }
    limit = max_email;
    live = nevents = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    return 0;
}

int trace_close(void)
{
    if (out == NULL)
        return 0;
    pthread_mutex_lock(&lock);
    int bad = fclose(mem) != 0;
    mem = NULL;
    if (!bad && buflen > 0 && fwrite(buf, 1, buflen, out) != buflen)
        bad = 1;
    bad |= fclose(out) != 0;
    out = NULL;
    free(buf);
    buf = NULL;
    buflen = 0;
    pthread_mutex_unlock(&lock);
    return bad ? -1 : 0;
}

bool trace_email(long long index)
{
    return mem != NULL && index >= 0 && index < limit;
}

bool trace_live(void)
{
    pthread_mutex_lock(&lock);
    bool l = live > 0;
    pthread_mutex_unlock(&lock);
    return l;
}

void trace_begin_email(long long index)
{
    if (!trace_email(index))
        return;
    pthread_mutex_lock(&lock);
    live++;
    pthread_mutex_unlock(&lock);
}

void trace_end_email(long long index)
{
    if (!trace_email(index))
        return;
    pthread_mutex_lock(&lock);
    if (live > 0)
        live--;
    pthread_mutex_unlock(&lock);
}

void trace_event(const char *ev, long long email, const char *reason, const char *fmt, ...)
{
    if (mem == NULL)
        return;
    long long t = now_ns();
    pthread_mutex_lock(&lock);
    if (mem != NULL && nevents < TRACE_MAX_EVENTS) {
        nevents++;
        fprintf(mem, "{\"t_ns\": %lld, \"ev\": ", t);
        json_write_string(mem, ev);
        fprintf(mem, ", \"email\": %lld", email);
        if (fmt) {
            va_list ap;
            va_start(ap, fmt);
            fputs(", ", mem);
            vfprintf(mem, fmt, ap);
            va_end(ap);
        }
        if (reason) {
            fputs(", \"reason\": ", mem);
            json_write_string(mem, reason);
        }
        fputs("}\n", mem);
    }
    pthread_mutex_unlock(&lock);
}
