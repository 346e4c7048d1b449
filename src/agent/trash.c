/*
 * trash.c - see trash.h. One worker thread, started with the first folder
 * that needs it, and a queue under a mutex.
 */
#include "agent/trash.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/xalloc.h"

struct item {
    char *path;
    struct item *next;
};

struct trash {
    const char *jobs_dir;
    unsigned long long seq;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct item *head, **tail;
    bool started, stop;
    pthread_t thread;
};

static void *worker_main(void *arg)
{
    struct trash *t = arg;
    pthread_setname_np(pthread_self(), "drover-trash");
    pthread_mutex_lock(&t->lock);
    for (;;) {
        while (!t->head && !t->stop)
            pthread_cond_wait(&t->cond, &t->lock);
        struct item *it = t->head;
        if (!it) break;
        t->head = it->next;
        if (!t->head) t->tail = &t->head;
        pthread_mutex_unlock(&t->lock);
        agent_remove_tree(it->path);
        free(it->path);
        free(it);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

struct trash *trash_new(const char *jobs_dir)
{
    struct trash *t = xcalloc(1, sizeof(*t));
    t->jobs_dir = jobs_dir;
    t->tail = &t->head;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    return t;
}

void trash_put(struct trash *t, const char *path)
{
    if (rmdir(path) == 0 || errno == ENOENT) return; /* most jobs leave nothing */
    if (!t) {
        agent_remove_tree(path);
        return;
    }
    char *hidden = xasprintf("%s/.trash-%d-%llu", t->jobs_dir, (int)getpid(), ++t->seq);
    if (rename(path, hidden) != 0) { /* another filesystem? then here and now */
        free(hidden);
        agent_remove_tree(path);
        return;
    }
    struct item *it = xcalloc(1, sizeof(*it));
    it->path = hidden;
    pthread_mutex_lock(&t->lock);
    if (!t->started && pthread_create(&t->thread, NULL, worker_main, t) == 0) t->started = true;
    if (!t->started) { /* no thread: do it here */
        pthread_mutex_unlock(&t->lock);
        agent_remove_tree(hidden);
        free(hidden);
        free(it);
        return;
    }
    *t->tail = it;
    t->tail = &it->next;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

void trash_stop(struct trash *t)
{
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_signal(&t->cond);
    bool started = t->started;
    pthread_mutex_unlock(&t->lock);
    if (started) pthread_join(t->thread, NULL); /* it empties the queue first */
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    free(t);
}
