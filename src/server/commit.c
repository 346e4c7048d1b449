/*
 * commit.c - see commit.h.
 *
 * Two lists guarded by one mutex: `pending` (loop -> writer) and `done`
 * (writer -> loop). The writer wakes the loop through an eventfd watched by
 * a persistent read event. Operations keep their submission order inside a
 * batch.
 */
#include "server/commit.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

struct commit_op {
    commit_fn fn;
    commit_merge_fn merge; /* NULL: runs alone */
    commit_done_fn done;
    void *arg;
    int rc;
    struct err e;
    struct commit_op *next;
};

struct op_list {
    struct commit_op *head, *tail;
};

struct committer {
    struct store *st;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct op_list pending, done;
    bool stop;
    bool writer_idle; /* the writer sleeps on cond: only then is a signal needed */
    int efd;
    struct event *ev;
    struct commit_stats stats;
    uint64_t inflight; /* submitted, not yet delivered; loop thread only */
    void (*on_batch)(void *arg, bool webhooks);
    void *on_batch_arg;
    bool webhooks; /* a batch not yet delivered queued a webhook delivery; under lock */
    /* seqs of the events this writer committed (store_tx_events), in order, not yet
       passed by commit_wrote_event; under lock */
    struct { int64_t first, last; } *own;
    size_t nown, capown;
    struct log_repeat fail_log; /* commits failing (the store away); writer thread only */
};

#define OWN_MAX 65536 /* ranges kept for a reader that lags: beyond, the oldest go */

static void list_append(struct op_list *l, struct commit_op *op)
{
    op->next = NULL;
    if (l->tail)
        l->tail->next = op;
    else
        l->head = op;
    l->tail = op;
}

static void list_concat(struct op_list *l, struct op_list *more)
{
    if (!more->head)
        return;
    if (l->tail)
        l->tail->next = more->head;
    else
        l->head = more->head;
    l->tail = more->tail;
    more->head = more->tail = NULL;
}

/* Runs op alone inside a savepoint of its own: nothing of it stays when it fails. */
static void run_one(struct store *st, struct commit_op *op)
{
    op->rc = store_savepoint(st, &op->e);
    if (!op->rc)
        op->rc = op->fn(st, op->arg, &op->e);
    if (!op->rc && (op->rc = store_savepoint_release(st, &op->e)) == 0)
        return;
    store_savepoint_rollback(st);
}

/*
 * Runs ops [op, end) (k of them, one merge fn, k > 1) as one call inside one savepoint.
 * False when that failed (undone): the caller then runs each alone, so that only the op
 * that fails is refused.
 */
static bool run_merged(struct store *st, struct commit_op *op, struct commit_op *end, size_t k)
{
    void *args[COMMIT_MERGE_MAX];
    size_t i = 0;
    for (struct commit_op *o = op; o != end; o = o->next)
        args[i++] = o->arg;
    struct err e = ERR_INIT;
    int rc = store_savepoint(st, &e);
    if (!rc)
        rc = op->merge(st, args, k, &e);
    if (!rc && !(rc = store_savepoint_release(st, &e))) {
        for (struct commit_op *o = op; o != end; o = o->next)
            o->rc = 0;
        return true;
    }
    store_savepoint_rollback(st);
    return false;
}

static void run_batch(struct committer *c, struct commit_op *ops)
{
    struct err be = ERR_INIT;
    uint64_t n = 0;
    int brc = store_begin(c->st, &be);
    for (struct commit_op *op = ops; op;) {
        struct commit_op *end = op->next;
        size_t k = 1;
        while (op->merge && end && end->merge == op->merge && k < COMMIT_MERGE_MAX) {
            end = end->next;
            k++;
        }
        n += k;
        if (brc) {
            for (; op != end; op = op->next) {
                op->rc = brc;
                op->e = be;
            }
            continue;
        }
        if (k > 1 && run_merged(c->st, op, end, k)) {
            op = end;
            continue;
        }
        for (; op != end; op = op->next)
            run_one(c->st, op);
    }
    int64_t first = 1, last = 0;
    bool webhooks = store_webhook_queued_take(c->st) && !brc;
    if (!brc && (brc = store_commit(c->st, &be))) {
        store_rollback(c->st);
        for (struct commit_op *op = ops; op; op = op->next)
            if (!op->rc) {
                op->rc = brc;
                op->e = be;
            }
    } else if (!brc) {
        store_tx_events(c->st, &first, &last); /* skipped when this server reads events back */
    }
    /* not begun or not committed: while the store is away every batch fails alike */
    if (brc)
        log_repeat_fail(&c->fail_log, time_now_ms(), LOG_ERROR, "group commit failed: %s",
                        be.msg);
    else
        log_repeat_ok(&c->fail_log, "group commit");
    pthread_mutex_lock(&c->lock);
    if (first <= last) {
        if (c->nown == OWN_MAX) {
            memmove(c->own, c->own + 1, (c->nown - 1) * sizeof(*c->own));
            c->nown--;
        }
        if (c->nown == c->capown) {
            c->capown = c->capown ? 2 * c->capown : 64;
            c->own = xrealloc(c->own, c->capown * sizeof(*c->own));
        }
        c->own[c->nown].first = first;
        c->own[c->nown++].last = last;
    }
    c->webhooks |= webhooks && !brc;
    c->stats.batches++;
    c->stats.ops += n;
    if (brc)
        c->stats.failed_commits++;
    pthread_mutex_unlock(&c->lock);
}

static void *writer_main(void *arg)
{
    struct committer *c = arg;
    pthread_setname_np(pthread_self(), "drover-commit");
    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (!c->pending.head && !c->stop) {
            c->writer_idle = true;
            pthread_cond_wait(&c->cond, &c->lock);
        }
        c->writer_idle = false;
        struct op_list batch = c->pending;
        c->pending.head = c->pending.tail = NULL;
        bool stop = c->stop;
        pthread_mutex_unlock(&c->lock);

        if (batch.head) {
            run_batch(c, batch.head);
            pthread_mutex_lock(&c->lock);
            list_concat(&c->done, &batch);
            pthread_mutex_unlock(&c->lock);
            uint64_t one = 1;
            ssize_t rc = write(c->efd, &one, sizeof(one));
            (void)rc; /* the counter cannot overflow in practice; a lost wake-up is impossible */
        } else if (stop) {
            return NULL;
        }
    }
}

static void deliver(struct committer *c)
{
    pthread_mutex_lock(&c->lock);
    struct commit_op *op = c->done.head;
    c->done.head = c->done.tail = NULL;
    bool webhooks = c->webhooks;
    c->webhooks = false;
    pthread_mutex_unlock(&c->lock);
    bool any = op != NULL;
    while (op) {
        struct commit_op *next = op->next;
        c->inflight--;
        op->done(op->arg, op->rc, op->rc ? &op->e : NULL);
        free(op);
        op = next;
    }
    if (any && c->on_batch)
        c->on_batch(c->on_batch_arg, webhooks);
}

void commit_on_batch(struct committer *c, void (*fn)(void *arg, bool webhooks), void *arg)
{
    c->on_batch = fn;
    c->on_batch_arg = arg;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    uint64_t n;
    ssize_t rc = read(fd, &n, sizeof(n));
    (void)rc;
    deliver(arg);
}

struct committer *commit_new(struct event_base *base, struct store *st)
{
    struct committer *c = xcalloc(1, sizeof(*c));
    c->st = st;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->efd < 0)
        die("cannot create an eventfd: %s", strerror(errno));
    c->ev = event_new(base, c->efd, EV_READ | EV_PERSIST, on_wake, c);
    event_add(c->ev, NULL);
    if (pthread_create(&c->thread, NULL, writer_main, c))
        die("cannot start the writer thread");
    return c;
}

void commit_free(struct committer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    deliver(c);
    event_free(c->ev);
    close(c->efd);
    store_close(c->st);
    free(c->own);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

void commit_submit(struct committer *c, commit_fn fn, commit_done_fn done, void *arg)
{
    commit_submit_merge(c, fn, NULL, done, arg);
}

void commit_submit_merge(struct committer *c, commit_fn fn, commit_merge_fn merge,
                         commit_done_fn done, void *arg)
{
    struct commit_op *op = xcalloc(1, sizeof(*op));
    op->fn = fn;
    op->merge = merge;
    op->done = done;
    op->arg = arg;
    c->inflight++;
    pthread_mutex_lock(&c->lock);
    list_append(&c->pending, op);
    if (c->writer_idle)
        pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

int64_t commit_skip_own(struct committer *c, int64_t seq)
{
    pthread_mutex_lock(&c->lock);
    size_t i = 0;
    for (; i < c->nown; i++) { /* in commit order */
        if (c->own[i].last <= seq) continue;
        if (c->own[i].first != seq + 1) break;
        seq = c->own[i].last;
    }
    /* those passed are not asked about again (the reader goes forward): forgotten, so that
       a server that never reads its events back keeps none */
    size_t past = 0;
    while (past < i && c->own[past].last <= seq)
        past++;
    if (past) {
        memmove(c->own, c->own + past, (c->nown - past) * sizeof(*c->own));
        c->nown -= past;
    }
    pthread_mutex_unlock(&c->lock);
    return seq;
}

bool commit_wrote_event(struct committer *c, int64_t seq)
{
    pthread_mutex_lock(&c->lock);
    size_t past = 0;
    while (past < c->nown && c->own[past].last < seq)
        past++;
    if (past) {
        memmove(c->own, c->own + past, (c->nown - past) * sizeof(*c->own));
        c->nown -= past;
    }
    bool mine = c->nown && c->own[0].first <= seq;
    pthread_mutex_unlock(&c->lock);
    return mine;
}

void commit_get_stats(struct committer *c, struct commit_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}

bool commit_idle(const struct committer *c)
{
    return c->inflight == 0;
}
