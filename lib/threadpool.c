/* threadpool — deferToThread: workers run jobs, the reactor thread fires the
 * Deferreds (contract in threadpool.h). */
#include "threadpool.h"

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

/* One unit of work; owned by the queue it is on. */
struct job {
    struct deferred_result (*fn)(void *arg); /* the work */
    void *arg;                             /* its argument */
    struct deferred *d;                    /* fired with the result (a reference); reactor thread only */
    struct deferred_result result;         /* set by the worker */
    struct job *next;                      /* FIFO link */
};

struct threadpool {
    struct reactor *r;            /* where results are delivered */
    ev_async wake;                /* workers -> reactor: "results are ready" */
    pthread_mutex_t lock;         /* guards todo, done, stopping */
    pthread_cond_t cond;          /* workers wait here for todo */
    struct job *todo, **todo_tail;/* queued work, FIFO */
    struct job *done, **done_tail;/* finished work, FIFO */
    bool stopping;                /* threadpool_free: finish the queue and exit */
    int outstanding;              /* jobs not yet delivered (reactor thread only) */
    int nthreads;                 /* threads started */
    pthread_t *threads;           /* their ids */
};

static void *worker_main(void *arg)
{
    struct threadpool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->todo && !p->stopping)
            pthread_cond_wait(&p->cond, &p->lock);
        struct job *j = p->todo;
        if (!j)
            break;                        /* stopping and nothing left */
        p->todo = j->next;
        if (!p->todo)
            p->todo_tail = &p->todo;
        pthread_mutex_unlock(&p->lock);

        j->result = j->fn(j->arg);
        if (j->result.kind == DEFERRED_DEFERRED)
            j->result = deferred_err(failure_new(
                &FAILURE_ERROR, 0, "threadpool_defer_to_thread: a worker returned a Deferred"));
        j->next = NULL;

        pthread_mutex_lock(&p->lock);
        *p->done_tail = j;
        p->done_tail = &j->next;
        ev_async_send(reactor_loop(p->r), &p->wake);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Reactor thread: fire the Deferreds of finished jobs, in completion order. */
static void deliver(struct threadpool *p)
{
    pthread_mutex_lock(&p->lock);
    struct job *j = p->done;
    p->done = NULL;
    p->done_tail = &p->done;
    pthread_mutex_unlock(&p->lock);
    while (j) {
        struct job *next = j->next;
        deferred_fire(j->d, j->result);
        deferred_unref(j->d);
        free(j);
        j = next;
        /* The async watcher keeps the loop alive only while work is out. */
        if (--p->outstanding == 0)
            ev_unref(reactor_loop(p->r));
    }
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    deliver((struct threadpool *)((char *)w - offsetof(struct threadpool, wake)));
}

struct threadpool *threadpool_new(struct reactor *r, int nthreads)
{
    struct threadpool *p = calloc(1, sizeof *p);
    if (!p || nthreads < 1)
        goto err;
    p->r = r;
    p->todo_tail = &p->todo;
    p->done_tail = &p->done;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    ev_async_init(&p->wake, wake_cb);
    ev_async_start(reactor_loop(r), &p->wake);
    ev_unref(reactor_loop(r));            /* idle pool: do not keep reactor_run going */
    p->threads = calloc((size_t)nthreads, sizeof *p->threads);
    if (!p->threads)
        goto err;
    for (; p->nthreads < nthreads; p->nthreads++)
        if (pthread_create(&p->threads[p->nthreads], NULL, worker_main, p) != 0)
            goto err;
    return p;
err:
    if (p && p->r)
        threadpool_free(p);
    else
        free(p);
    return NULL;
}

void threadpool_free(struct threadpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    deliver(p);
    ev_ref(reactor_loop(p->r));           /* balance the ev_unref of threadpool_new */
    ev_async_stop(reactor_loop(p->r), &p->wake);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}

struct deferred *threadpool_defer_to_thread(struct threadpool *p,
                                            struct deferred_result (*fn)(void *arg), void *arg)
{
    struct job *j = malloc(sizeof *j);
    if (!j)
        abort();
    struct deferred *d = deferred_new();
    *j = (struct job){ fn, arg, deferred_ref(d), deferred_ok(NULL), NULL };
    if (p->outstanding++ == 0)
        ev_ref(reactor_loop(p->r));
    pthread_mutex_lock(&p->lock);
    *p->todo_tail = j;
    p->todo_tail = &j->next;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return d;
}
