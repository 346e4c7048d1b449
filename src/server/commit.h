/*
 * commit.h - group commit: many requests' writes in one transaction.
 *
 * Every write the server makes goes through the committer. A writer thread
 * owns a store handle of its own; it takes every operation queued since its
 * last commit, runs them in one transaction (each inside a savepoint, or a
 * run of mergeable ones inside one: commit_submit_merge; one that fails is
 * undone alone), commits once, and then hands the results back to the event
 * loop, where each operation's `done` runs. A request is answered from
 * `done`, so it is answered only after the batch holding it is durable.
 * While one batch commits, the next one gathers: the more concurrent
 * writers, the more each fsync carries.
 */
#ifndef DROVER_COMMIT_H
#define DROVER_COMMIT_H

#include <event2/event.h>
#include <stdint.h>

#include "common/err.h"
#include "store/store.h"

/* Runs on the writer thread inside the batch's transaction. Must not touch the event loop. */
typedef int (*commit_fn)(struct store *st, void *arg, struct err *e);
/* Runs on the event loop thread after the commit; rc is fn's result or the commit's failure. */
typedef void (*commit_done_fn)(void *arg, int rc, const struct err *e);

struct committer;

/* Takes ownership of st and starts the writer thread. */
struct committer *commit_new(struct event_base *base, struct store *st);
/* Runs everything queued, then stops the thread and closes the store. NULL is fine. */
void commit_free(struct committer *c);

/* Queues one operation. Thread: event loop. */
void commit_submit(struct committer *c, commit_fn fn, commit_done_fn done, void *arg);

/*
 * Runs on the writer thread: the args of n operations (1 < n <= COMMIT_MERGE_MAX) queued
 * with this merge fn one after the other, written in one call (one statement for many
 * rows) under one savepoint. Should it fail, each operation runs alone with its fn, and
 * only those that fail alone are refused: merging never changes an operation's result.
 */
#define COMMIT_MERGE_MAX 64
typedef int (*commit_merge_fn)(struct store *st, void **args, size_t n, struct err *e);

/* commit_submit, the op mergeable with its neighbours in a batch that share `merge`. */
void commit_submit_merge(struct committer *c, commit_fn fn, commit_merge_fn merge,
                         commit_done_fn done, void *arg);

/*
 * fn(arg, webhooks) runs on the event loop after each batch's operations have all
 * had their `done` (the event stream sends what the batch committed); webhooks:
 * a batch committed a webhook delivery (store_webhook_queued_take). One hook.
 */
void commit_on_batch(struct committer *c, void (*fn)(void *arg, bool webhooks), void *arg);

/*
 * Was event `seq` written by this committer's transactions (a shared store:
 * store_tx_events)? Asked in increasing seq order: ranges below seq are forgotten.
 */
bool commit_wrote_event(struct committer *c, int64_t seq);
/*
 * seq, moved past the events this server committed that follow it with no gap (seq + 1
 * starts one of its batches, and so on): all of them are its own, nothing to read back.
 * The ranges up to the seq returned are forgotten, as by commit_wrote_event.
 */
int64_t commit_skip_own(struct committer *c, int64_t seq);

/* True when every submitted operation has been delivered. Thread: event loop. */
bool commit_idle(const struct committer *c);

struct commit_stats {
    uint64_t batches;
    uint64_t ops;
    uint64_t failed_commits;
};
void commit_get_stats(struct committer *c, struct commit_stats *out);

#endif
