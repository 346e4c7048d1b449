/*
 * test_commit.c - the group committer (server/commit.c) over a real SQLite
 * file: operations queued with a merge function are written by one call when
 * they meet in a batch, at most COMMIT_MERGE_MAX at a time, in their order;
 * when the merged call fails, each runs alone and only the one that fails
 * alone is refused, with nothing of it stored.
 *
 * A first operation holds the writer (it waits until the test lets it go), so
 * that the operations queued meanwhile all make the next batch.
 */
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include <cmocka.h>

#include "committest.h"
#include "jobtest.h"

#include "common/timeutil.h"
#include "server/commit.h"
#include "store/store.h"

#define SPEC "{\"queue\": \"q\", \"command\": {\"program\": \"/bin/true\"}}"
#define MAX_OPS 160

struct op {
    struct job job;
    int rc;      /* as handed back by done */
    bool done;
};

struct h {
    char dir[PATH_MAX];
    struct event_base *base;
    struct store *reads;
    struct committer *commit;
    struct op ops[MAX_OPS];
    size_t merges[MAX_OPS]; /* n of each merged call, in order (writer thread) */
    size_t nmerges;
    size_t alone;           /* ops the writer ran by their own fn */
    pthread_mutex_t gate_lock;
    pthread_cond_t gate_cond;
    bool gate_entered, gate_open;
};

static struct h *H; /* the fns below have only their op as argument */

static int write_one(struct store *st, void *arg, struct err *e)
{
    H->alone++;
    return store_job_insert(st, &((struct op *)arg)->job, e);
}

static int write_many(struct store *st, void **args, size_t n, struct err *e)
{
    H->merges[H->nmerges++] = n;
    struct job *jobs[COMMIT_MERGE_MAX];
    for (size_t i = 0; i < n; i++)
        jobs[i] = &((struct op *)args[i])->job;
    return store_job_insert_many(st, jobs, n, e);
}

static void done(void *arg, int rc, const struct err *e)
{
    struct op *op = arg;
    op->rc = rc;
    op->done = true;
}

/* Holds the writer, once its batch has begun, until open_gate. */
static int gate(struct store *st, void *arg, struct err *e)
{
    struct h *h = arg;
    pthread_mutex_lock(&h->gate_lock);
    h->gate_entered = true;
    pthread_cond_broadcast(&h->gate_cond);
    while (!h->gate_open)
        pthread_cond_wait(&h->gate_cond, &h->gate_lock);
    pthread_mutex_unlock(&h->gate_lock);
    return 0;
}

static void gate_done(void *arg, int rc, const struct err *e)
{
    assert_int_equal(rc, 0);
}

static void open_gate(struct h *h)
{
    pthread_mutex_lock(&h->gate_lock);
    h->gate_open = true;
    pthread_cond_broadcast(&h->gate_cond);
    pthread_mutex_unlock(&h->gate_lock);
}

/* ops [0, n) queued behind the gate, mergeable unless listed in `alone` (-1 ends it). */
static void run_ops(struct h *h, size_t n, const int *alone)
{
    commit_submit(h->commit, gate, gate_done, h);
    pthread_mutex_lock(&h->gate_lock); /* the writer holds the gate's batch: the rest waits */
    while (!h->gate_entered)
        pthread_cond_wait(&h->gate_cond, &h->gate_lock);
    pthread_mutex_unlock(&h->gate_lock);
    for (size_t i = 0; i < n; i++) {
        bool lone = false;
        for (const int *a = alone; a && *a >= 0; a++)
            lone |= (size_t)*a == i;
        commit_submit_merge(h->commit, write_one, lone ? NULL : write_many, done, &h->ops[i]);
    }
    open_gate(h);
    test_commit_pump(h->base, h->commit);
}

static void make_ops(struct h *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        make_job(&h->ops[i].job, SPEC, time_now_ms());
}

static int setup(void **state)
{
    struct h *h = calloc(1, sizeof(*h));
    h->base = event_base_new();
    if (test_commit_open(h->dir, "drover-test-commit", h->base, &h->reads, &h->commit)) return -1;
    pthread_mutex_init(&h->gate_lock, NULL);
    pthread_cond_init(&h->gate_cond, NULL);
    H = h;
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    struct h *h = *state;
    commit_free(h->commit);
    store_close(h->reads);
    event_base_free(h->base);
    for (size_t i = 0; i < MAX_OPS; i++)
        job_release(&h->ops[i].job);
    pthread_mutex_destroy(&h->gate_lock);
    pthread_cond_destroy(&h->gate_cond);
    test_commit_remove(h->dir);
    free(h);
    return 0;
}

static bool is_stored(struct h *h, const char *id)
{
    struct job j;
    struct err e = ERR_INIT;
    int rc = store_job_get(h->reads, id, &j, &e);
    if (rc && rc != ERR_NOTFOUND) fail_msg("reading job %s: %s", id, e.msg);
    if (!rc) job_release(&j);
    return !rc;
}

struct seen {
    struct h *h;
    size_t next; /* the op whose job the next event must be of */
};

static int on_event(void *arg, const struct event_rec *ev)
{
    struct seen *sn = arg;
    if (strcmp(ev->subject, sn->h->ops[sn->next].job.id))
        fail_msg("event %lld is of job %s, expected op %zu's %s", (long long)ev->seq,
                 ev->subject, sn->next, sn->h->ops[sn->next].job.id);
    sn->next++;
    return 0;
}

/* The jobs' events, one each, in the order of the ops. */
static void assert_events_in_order(struct h *h, size_t n)
{
    struct seen sn = {h, 0};
    struct event_filter f = {.kind = -1, .limit = 10000, .no_data = true};
    struct err e = ERR_INIT;
    assert_int_equal(store_event_list(h->reads, &f, on_event, &sn, &e), 0);
    assert_int_equal(sn.next, n);
}

static void test_ops_in_one_batch_are_merged(void **state)
{
    struct h *h = *state;
    make_ops(h, 10);
    run_ops(h, 10, NULL);
    assert_int_equal(h->nmerges, 1);
    assert_int_equal(h->merges[0], 10);
    assert_int_equal(h->alone, 0);
    for (size_t i = 0; i < 10; i++) {
        assert_true(h->ops[i].done);
        assert_int_equal(h->ops[i].rc, 0);
        assert_true(is_stored(h, h->ops[i].job.id));
    }
    assert_events_in_order(h, 10);
}

static void test_merged_calls_hold_at_most_the_max(void **state)
{
    struct h *h = *state;
    size_t n = COMMIT_MERGE_MAX * 2 + 5;
    assert_true(n <= MAX_OPS);
    make_ops(h, n);
    run_ops(h, n, NULL);
    assert_int_equal(h->nmerges, 3);
    assert_int_equal(h->merges[0], COMMIT_MERGE_MAX);
    assert_int_equal(h->merges[1], COMMIT_MERGE_MAX);
    assert_int_equal(h->merges[2], 5);
    for (size_t i = 0; i < n; i++)
        assert_true(is_stored(h, h->ops[i].job.id));
    assert_events_in_order(h, n);
}

static void test_an_op_that_cannot_merge_splits_the_run(void **state)
{
    struct h *h = *state;
    make_ops(h, 7);
    const int alone[] = {3, -1};
    run_ops(h, 7, alone);
    assert_int_equal(h->nmerges, 2); /* 0-2, then 4-6 */
    assert_int_equal(h->merges[0], 3);
    assert_int_equal(h->merges[1], 3);
    assert_int_equal(h->alone, 1);
    assert_events_in_order(h, 7);
}

static void test_a_failing_op_is_refused_alone(void **state)
{
    struct h *h = *state;
    make_ops(h, 6);
    /* op 4 has op 1's id: the merged insert fails on it, then op 4 alone */
    job_release(&h->ops[4].job);
    make_job(&h->ops[4].job, SPEC, time_now_ms());
    memcpy(h->ops[4].job.id, h->ops[1].job.id, sizeof(h->ops[4].job.id));
    run_ops(h, 6, NULL);
    assert_int_equal(h->nmerges, 1);
    assert_int_equal(h->alone, 6); /* each again, alone */
    for (size_t i = 0; i < 6; i++) {
        assert_true(h->ops[i].done);
        assert_int_equal(h->ops[i].rc, i == 4 ? ERR_CONFLICT : 0);
    }
    /* op 1's job is the one stored under that id, and only once */
    struct job j;
    struct err e = ERR_INIT;
    assert_int_equal(store_job_get(h->reads, h->ops[1].job.id, &j, &e), 0);
    assert_int_equal(j.created_at, h->ops[1].job.created_at);
    job_release(&j);
    struct job_filter f = {.queue = "q", .state = -1, .limit = 1000};
    struct job_list l;
    assert_int_equal(store_job_list(h->reads, &f, &l, &e), 0);
    assert_int_equal(l.n, 5);
    job_list_release(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_ops_in_one_batch_are_merged),
        T(test_merged_calls_hold_at_most_the_max),
        T(test_an_op_that_cannot_merge_splits_the_run),
        T(test_a_failing_op_is_refused_alone),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
