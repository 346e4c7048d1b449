/*
 * offload.c - see offload.h. OFFLOAD_THREADS workers, a queue under a mutex, and
 * an eventfd that wakes the loop to run the finished jobs' done() callbacks.
 */
#include "server/offload.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xalloc.h"

struct job {
    offload_fn work, done;
    void *arg;
    struct job *next;
};

#define OFFLOAD_THREADS 4

struct offload {
    pthread_t threads[OFFLOAD_THREADS];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *todo, **todo_tail; /* for the worker */
    struct job *finished;          /* for the loop, newest first */
    bool stop;
    int efd;
    struct event *ev;
    int inflight; /* loop thread only */
};

static void *worker_main(void *arg)
{
    struct offload *o = arg;
    pthread_setname_np(pthread_self(), "drover-offload");
    pthread_mutex_lock(&o->lock);
    for (;;) {
        while (!o->todo && !o->stop)
            pthread_cond_wait(&o->cond, &o->lock);
        if (!o->todo) break;
        struct job *j = o->todo;
        o->todo = j->next;
        if (!o->todo) o->todo_tail = &o->todo;
        pthread_mutex_unlock(&o->lock);
        j->work(j->arg);
        pthread_mutex_lock(&o->lock);
        j->next = o->finished;
        o->finished = j;
        uint64_t one = 1;
        ssize_t rc = write(o->efd, &one, sizeof(one));
        (void)rc;
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

static void deliver(struct offload *o)
{
    pthread_mutex_lock(&o->lock);
    struct job *list = o->finished;
    o->finished = NULL;
    pthread_mutex_unlock(&o->lock);
    struct job *in_order = NULL; /* reverse: oldest first */
    while (list) {
        struct job *n = list->next;
        list->next = in_order;
        in_order = list;
        list = n;
    }
    while (in_order) {
        struct job *j = in_order;
        in_order = j->next;
        o->inflight--;
        j->done(j->arg);
        free(j);
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    uint64_t n;
    ssize_t rc = read(fd, &n, sizeof(n));
    (void)rc;
    (void)what;
    deliver(arg);
}

struct offload *offload_new(struct event_base *base)
{
    struct offload *o = xcalloc(1, sizeof(*o));
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->cond, NULL);
    o->todo_tail = &o->todo;
    o->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (o->efd < 0) die("cannot create an eventfd: %s", strerror(errno));
    o->ev = event_new(base, o->efd, EV_READ | EV_PERSIST, on_wake, o);
    event_add(o->ev, NULL);
    for (int i = 0; i < OFFLOAD_THREADS; i++)
        if (pthread_create(&o->threads[i], NULL, worker_main, o))
            die("cannot start the offload threads");
    return o;
}

void offload_free(struct offload *o)
{
    if (!o) return;
    pthread_mutex_lock(&o->lock);
    o->stop = true;
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->lock);
    for (int i = 0; i < OFFLOAD_THREADS; i++) /* the workers finish what is queued first */
        pthread_join(o->threads[i], NULL);
    deliver(o);
    event_free(o->ev);
    close(o->efd);
    pthread_mutex_destroy(&o->lock);
    pthread_cond_destroy(&o->cond);
    free(o);
}

void offload_run(struct offload *o, offload_fn work, offload_fn done, void *arg)
{
    struct job *j = xcalloc(1, sizeof(*j));
    j->work = work;
    j->done = done;
    j->arg = arg;
    o->inflight++;
    pthread_mutex_lock(&o->lock);
    *o->todo_tail = j;
    o->todo_tail = &j->next;
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

bool offload_idle(const struct offload *o)
{
    return o->inflight == 0;
}
