/*
 * waiters.c - long-polls on a job's end (beanstalkd's reserve-with-timeout).
 *
 * Parked requests hang off a hash table keyed by job id, each with a timer.
 * A waiter leaves the table exactly once: answered (the job ended), timed
 * out (answered with the job as it is), or gone (its client hung up).
 */
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "server/server.h"

#define NBUCKETS 1024

struct waiter {
    struct waiters *w;
    char id[UUID_STR_LEN];
    struct http_req *r;
    struct event *timer;
    struct waiter *prev, *next;
};

struct waiters {
    struct server *s;
    struct waiter *buckets[NBUCKETS];
    size_t count;
};

static unsigned bucket(const char *id)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h % NBUCKETS;
}

static void unlink_waiter(struct waiter *wt)
{
    struct waiters *w = wt->w;
    if (wt->prev)
        wt->prev->next = wt->next;
    else
        w->buckets[bucket(wt->id)] = wt->next;
    if (wt->next)
        wt->next->prev = wt->prev;
    w->count--;
    event_free(wt->timer);
    wt->r->on_gone = NULL;
    wt->r->owner = NULL;
}

/* Answers with the job as the store has it now. */
static void answer(struct waiter *wt, const struct job *known)
{
    struct http_req *r = wt->r;
    unlink_waiter(wt);
    if (known) {
        http_reply_json(r, 200, job_to_json(known));
    } else {
        struct job j;
        struct err e = ERR_INIT;
        if (store_job_get(wt->w->s->reads, wt->id, &j, &e)) {
            http_reply_err(r, &e);
        } else {
            http_reply_json(r, 200, job_to_json(&j));
            job_release(&j);
        }
    }
    free(wt);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    answer(arg, NULL);
}

static void on_gone(struct http_req *r)
{
    struct waiter *wt = r->owner;
    unlink_waiter(wt);
    http_req_drop(r);
    free(wt);
}

struct waiters *waiters_new(struct server *s)
{
    struct waiters *w = xcalloc(1, sizeof(*w));
    w->s = s;
    return w;
}

void waiters_free(struct waiters *w)
{
    if (!w)
        return;
    for (int i = 0; i < NBUCKETS; i++)
        while (w->buckets[i])
            answer(w->buckets[i], NULL);
    free(w);
}

void waiters_add(struct waiters *w, const char *id, struct http_req *r, int64_t timeout_ms)
{
    struct waiter *wt = xcalloc(1, sizeof(*wt));
    wt->w = w;
    snprintf(wt->id, sizeof(wt->id), "%s", id);
    wt->r = r;
    r->owner = wt;
    r->on_gone = on_gone;
    unsigned b = bucket(wt->id);
    wt->next = w->buckets[b];
    if (wt->next)
        wt->next->prev = wt;
    w->buckets[b] = wt;
    w->count++;
    wt->timer = evtimer_new(w->s->base, on_timeout, wt);
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    evtimer_add(wt->timer, &tv);
}

void waiters_wake(struct waiters *w, const struct job *j)
{
    if (!w || !job_state_terminal(j->state))
        return;
    struct waiter *wt = w->buckets[bucket(j->id)];
    while (wt) {
        struct waiter *next = wt->next;
        if (!strcmp(wt->id, j->id))
            answer(wt, j->spec ? j : NULL); /* a record read without its spec: read it whole */
        wt = next;
    }
}

size_t waiters_count(const struct waiters *w)
{
    return w ? w->count : 0;
}
