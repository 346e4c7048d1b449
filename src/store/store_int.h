/*
 * store_int.h - for store backends only: the operations table each backend
 * fills in. Callers use store.h; store.c holds the registry and the wrappers.
 *
 * A backend's own struct starts with `struct store base;` and downcasts with
 * a checked helper. The contract of each operation is the comment on its
 * wrapper in store.h.
 */
#ifndef DROVER_STORE_INT_H
#define DROVER_STORE_INT_H

#include "store/store.h"

struct store_ops {
    const char *scheme; /* "sqlite" */
    unsigned caps;
    int schema; /* the schema version its migrations reach: an open store's (newer: refused) */
    int (*open)(const char *uri, const struct store_opts *opts, struct store **out,
                struct err *e);
    void (*close)(struct store *st);
    int (*claim)(struct store *st, struct err *e); /* NULL: nothing to claim */

    int (*begin)(struct store *st, struct err *e);
    int (*commit)(struct store *st, struct err *e);
    void (*rollback)(struct store *st);
    int (*savepoint)(struct store *st, struct err *e);
    int (*savepoint_release)(struct store *st, struct err *e);
    void (*savepoint_rollback)(struct store *st);

    int (*job_insert)(struct store *st, const struct job *j, struct err *e);
    /* optional: n >= 1 plain jobs (no key, no webhook) in order, in as few statements as the
       backend can (store_job_insert_many); without it, job_insert for each */
    int (*job_insert_plain)(struct store *st, struct job *const *jobs, size_t n, struct err *e);
    int (*job_get)(struct store *st, const char *id, struct job *out, struct err *e);
    int (*job_get_by_key)(struct store *st, const char *owner, const char *key, struct job *out,
                          struct err *e);
    int (*id_match)(struct store *st, enum store_kind kind, const char *prefix,
                    const char *owner, char (*ids)[UUID_STR_LEN], size_t max, size_t *n,
                    struct err *e);
    int (*job_get_run)(struct store *st, const char *id, struct job *out, struct err *e);
    int (*job_list)(struct store *st, const struct job_filter *f, struct job_list *out,
                    struct err *e);
    /*
     * Reads job `id` (with spec and labels when `spec`) for one lifecycle step
     * (store_job_apply in store.c), locked against other writers until the
     * transaction ends: SQLite's writer holds the database's lock anyway, a
     * shared backend locks the row. ERR_NOTFOUND when unknown.
     */
    int (*job_lock)(struct store *st, const char *id, bool spec, struct job *out,
                    struct err *e);
    int (*job_lease)(struct store *st, const char *agent, int64_t now_ms, struct store_lease *c,
                     size_t n, size_t *nleased, struct err *e);
    int (*job_update)(struct store *st, const struct job *j, int expect_attempt,
                      unsigned expect_states, struct err *e);
    int (*job_scan)(struct store *st, unsigned states, int (*fn)(void *arg, const struct job *j),
                    void *arg, struct err *e);
    /* optional: store_job_each reads the jobs one by one with job_get without it */
    int (*job_each)(struct store *st, const char *const *ids, size_t n,
                    int (*fn)(void *arg, const struct job *j), void *arg, struct err *e);
    /* optional: store_job_prefetch does nothing without it */
    int (*job_prefetch)(struct store *st, const char *const *ids, const int *head_attempts,
                        size_t n, size_t head_max, struct err *e);
    int (*log_append)(struct store *st, const char *job, int attempt, int stream, int64_t offset,
                      const char *data, size_t len, struct err *e);
    int (*log_read)(struct store *st, const char *job, int attempt, int stream, int64_t offset,
                    size_t max, struct buf *out, struct err *e);
    int (*agent_upsert)(struct store *st, struct agent_rec *a, struct err *e);
    int (*agent_set_state)(struct store *st, const char *id, int state, int64_t last_seen,
                           struct err *e);
    int (*agent_forget)(struct store *st, const char *id, int64_t seen_before, struct err *e);
    int (*agent_scan)(struct store *st, int (*fn)(void *arg, const struct agent_rec *a),
                      void *arg, struct err *e);
    int (*queue_stats)(struct store *st, const char *owner, struct queue_stat **out, size_t *n,
                       struct err *e);

    int (*token_insert)(struct store *st, const char *name, int role, const char *hash,
                        struct err *e);
    int (*token_find)(struct store *st, const char *hash, int *role, char *name_out, size_t n,
                      struct err *e);
    int (*token_delete)(struct store *st, const char *name, struct err *e);
    int (*token_count)(struct store *st, int role, int64_t *count, struct err *e);
    int (*token_scan)(struct store *st, int (*fn)(void *arg, const struct token_rec *t), void *arg,
                      struct err *e);
    int (*session_insert)(struct store *st, const struct session_rec *s, int64_t now_ms,
                          int max_per_name, int max_all, struct err *e);
    int (*session_find)(struct store *st, const char *id_hash, int64_t now_ms,
                        struct session_rec *out, struct err *e);
    int (*session_delete)(struct store *st, const char *id_hash, struct err *e);

    /* an event without a job's columns (objects, arrays, queues, tenants, workflows), in the
       current transaction; with notify_url, its webhook's delivery too */
    int (*event_add)(struct store *st, int kind, const char *subject, const char *queue,
                     int state, const char *owner, json_t *data, const char *notify_url,
                     struct err *e);
    int (*event_list)(struct store *st, const struct event_filter *f,
                      int (*fn)(void *arg, const struct event_rec *ev), void *arg, struct err *e);
    int (*event_window)(struct store *st, int64_t *first, int64_t *last, struct err *e);
    int (*event_prune)(struct store *st, int64_t before_ms, int64_t max_keep, struct err *e);

    int (*webhook_due)(struct store *st, int64_t now_ms, int limit,
                       int (*fn)(void *arg, const struct webhook *w), void *arg, struct err *e);
    int (*webhook_delete)(struct store *st, int64_t id, struct err *e);
    int (*webhook_retry)(struct store *st, int64_t id, int tries, int64_t next_at,
                         const char *error, struct err *e);
    int (*webhook_count)(struct store *st, int64_t *n, struct err *e);

    int (*service_insert)(struct store *st, struct service_rec *r, struct err *e);
    int (*service_get)(struct store *st, const char *name, int version, struct service_rec *out,
                       struct err *e);
    int (*service_list)(struct store *st, struct service_rec **out, size_t *n, struct err *e);
    int (*service_retire)(struct store *st, const char *name, int64_t now_ms, struct err *e);

    int (*listen)(struct store *st, int *fd, struct err *e);   /* NULL: not shared */
    int (*notified)(struct store *st, int *fd, bool *any, int64_t *upto, struct err *e);
    void (*tx_events)(struct store *st, int64_t *first, int64_t *last); /* NULL: none */
    int (*agent_seen)(struct store *st, const char *id, int64_t last_seen, struct err *e);
    int (*agent_set_runtimes)(struct store *st, const char *id, unsigned runtimes, struct err *e);
    int (*leader_take)(struct store *st, const char *name, const char *holder, int64_t now_ms,
                       int64_t ttl_ms, bool *leader, struct err *e);
    int (*leader_release)(struct store *st, const char *name, const char *holder, struct err *e);
    int (*meta_get)(struct store *st, const char *key, char **value, struct err *e);
    int (*meta_set)(struct store *st, const char *key, const char *value, struct err *e);

    int (*job_expired)(struct store *st, int64_t now_ms, int64_t default_ms, int limit,
                       char (*ids)[UUID_STR_LEN], size_t *n, struct err *e);
    int (*job_delete)(struct store *st, const char *id, struct err *e);
    /* store_job_held; task_lo..task_hi (excluded): the ids of the tasks of the arrays made in
       the millisecond of task `id`'s ("" and "" for a job of no array) */
    int (*job_held)(struct store *st, const char *id, const char *task_lo, const char *task_hi,
                    bool *held, struct err *e);
    int (*job_defer)(struct store *st, const char *id, int64_t until_ms, struct err *e);
    /* an array task's job was deleted: its array_tasks row, and the array (with its items)
       when that was its last task and none may still be claimed */
    int (*array_task_gone)(struct store *st, const char *job, struct err *e);

    int (*token_tenant)(struct store *st, const char *name, char *tenant, size_t n,
                        struct err *e);
    int (*token_set_tenant)(struct store *st, const char *name, const char *tenant,
                            struct err *e);
    int (*tenant_put)(struct store *st, const struct tenant_rec *t, struct err *e);
    int (*tenant_scan)(struct store *st, int (*fn)(void *arg, const struct tenant_rec *t),
                       void *arg, struct err *e);
    int (*tenant_waiting)(struct store *st, const char *tenant, int64_t *n, struct err *e);
    /* the row of a paused queue made (paused) or deleted; *changed when it was not so */
    int (*queue_pause)(struct store *st, const char *queue, bool paused, const char *by,
                       int64_t now_ms, bool *changed, struct err *e);
    int (*queue_limit)(struct store *st, const char *queue, int max_running, const char *by,
                       int64_t now_ms, bool *changed, struct err *e);
    int (*queue_limits)(struct store *st, int (*fn)(void *arg, const char *queue, int max),
                        void *arg, struct err *e);
    int (*queue_paused)(struct store *st, int (*fn)(void *arg, const char *queue, int64_t at),
                        void *arg, struct err *e);
    /* The workflow's row and, for each node of w->doc, its job's (workflow, node) row. */
    int (*workflow_insert)(struct store *st, const struct workflow_rec *w, struct err *e);
    int (*workflow_by_key)(struct store *st, const char *owner, const char *key, char *id_out,
                           struct err *e);
    int (*workflow_get)(struct store *st, const char *id, struct workflow_rec *out,
                        struct err *e);
    int (*workflow_list)(struct store *st, const char *owner, const char *after, int limit,
                         struct workflow_list *out, struct err *e);
    /* The workflow of a job: ERR_NOTFOUND when it is in none. */
    int (*workflow_of)(struct store *st, const char *job, char *id_out, struct err *e);
    int (*trigger_insert)(struct store *st, const struct trigger_rec *t, struct err *e);
    int (*trigger_get)(struct store *st, const char *id, struct trigger_rec *out, struct err *e);
    int (*trigger_list)(struct store *st, const char *owner, const char *after, int limit,
                        struct trigger_rec **out, size_t *n, struct err *e);
    int (*trigger_delete)(struct store *st, const char *id, struct err *e);
    int (*trigger_update)(struct store *st, const struct trigger_rec *t, struct err *e);
    int (*trigger_fire_add)(struct store *st, const char *trigger, const char *uri,
                            const char *sha256, int64_t now_ms, int *added, struct err *e);
    int (*trigger_fires)(struct store *st, const char *trigger, int limit,
                         struct trigger_fire **out, size_t *n, struct err *e);
    int (*trigger_fire_done)(struct store *st, int64_t id, const char *target,
                             const char *error, int64_t now_ms, struct err *e);
    int (*trigger_fires_prune)(struct store *st, const char *trigger, int keep, struct err *e);
    int (*trigger_pause)(struct store *st, const char *id, bool paused, int64_t now_ms,
                         bool *changed, struct err *e);
    int (*trigger_last_target)(struct store *st, const char *trigger, int64_t before,
                               char **target, struct err *e);
    /* Job arrays (store_array.c holds what the backends share). */
    int (*array_insert)(struct store *st, const struct array_rec *a, struct err *e);
    /* The array's row (spec too), the row locked for the transaction when `lock`. */
    int (*array_get)(struct store *st, const char *id, bool lock, struct array_rec *out,
                     struct err *e);
    int (*array_list)(struct store *st, const char *owner, const char *after, int limit,
                      struct array_rec **out, size_t *n, struct err *e);
    /* Writes the cursor, skips (JSON text) and how many tasks may still be claimed. */
    int (*array_set)(struct store *st, const char *id, int64_t next_index, const char *skips,
                     int64_t open, struct err *e);
    /* The tasks the tenant's arrays may still hand out (their `open`), summed. */
    int (*array_open)(struct store *st, const char *tenant, int64_t *n, struct err *e);
    /* Item `index`'s text into *item (caller frees); ERR_NOTFOUND when none. */
    int (*array_item)(struct store *st, const char *id, int64_t index, char **item,
                      struct err *e);
    int (*array_task_add)(struct store *st, const char *id, int64_t index, const char *job,
                          struct err *e);
    /* (index, job id) of the tasks with a job, from..to, in index order. */
    int (*array_task_ids)(struct store *st, const char *id, int64_t from, int64_t to,
                          int (*fn)(void *arg, int64_t index, const char *job), void *arg,
                          struct err *e);
    /* Counts per state of the array's tasks that have a job. */
    int (*array_job_counts)(struct store *st, const char *id, int64_t *counts, struct err *e);
    /* Replaces a job's stored spec (a blocked node's, its connected inputs set). */
    int (*job_set_spec)(struct store *st, const char *id, const json_t *spec, struct err *e);
};

struct store {
    const struct store_ops *ops;
    bool webhook_queued; /* a delivery was queued since store_webhook_queued_take */
    /* Jobs changed by the store itself in this transaction (store_changed_take), and how many
       of them were there when the savepoint was made. */
    char (*changed)[UUID_STR_LEN];
    size_t nchanged, changed_cap, changed_mark;
    /* Workflows' documents with their lookups (store.c: a workflow's document never changes
       once stored), the last few used; and the ended nodes whose downstream nodes are still
       to be looked at (store.c: workflow_advance, a loop rather than a recursion). */
    json_t *wf_cache[8];
    size_t wf_next;
    char (*wf_pending)[UUID_STR_LEN];
    size_t wf_npending, wf_pending_cap;
    bool wf_advancing;
    /* the workflows those nodes belong to, whose end is looked at once they are done */
    char (*wf_touched)[UUID_STR_LEN];
    size_t wf_ntouched, wf_touched_cap;
};

extern const struct store_ops store_sqlite_ops;
#ifdef WITH_POSTGRES
extern const struct store_ops store_pg_ops;
#endif

/* What every backend shares (store.c, store_array.c). */

/* Sets a->run_after from a->created_at and its spec's delay_s: for an array read back. */
void array_rec_views(struct array_rec *a);

/* What a follower needs of a job's progress and result, for its event: a new reference, or NULL. */
json_t *store_event_data(const struct job *j);
/* The window's first seq: after `pruned`, the newest event a prune deleted (events older than
   it kept for a delivery are not in the window), and at most last + 1. */
static inline int64_t store_event_window_start(int64_t oldest, int64_t last, int64_t pruned)
{
    int64_t first = oldest > pruned ? oldest : pruned + 1;
    return first > last + 1 ? last + 1 : first;
}
/* A trigger fire's event data: {"uri", "sha256"} of an object, {"time"} of a schedule's. */
json_t *trigger_fire_data(const char *uri, const char *sha256);
/* The webhook of a job being inserted: its spec's notify_url (NULL: none) and notify "all". */
const char *store_job_notify(const struct job *j, bool *all);
/* Whether a job with webhook `url` (notify "all": all) gets a delivery for an event in `state`. */
bool store_webhook_wants(const char *url, bool all, int state);
/*
 * Clamps a chunk of output to what is kept of a stream (PROTO_STREAM_MAX bytes):
 * false when nothing of it is kept.
 */
bool store_log_clamp(int64_t offset, size_t *len);
/*
 * store_log_read's assembly, one stored chunk at a time, in offset order: adds
 * to out what the chunk holds from *pos on (at most *max bytes), moving both.
 * false when reading must stop (a gap: what is missing was never received).
 */
bool store_log_take(int64_t *pos, size_t *max, int64_t off, const char *data, int64_t len,
                    struct buf *out);

/*
 * job_counts (GET /v1/queues: jobs per queue, owner and state; SQLite schema 17 for the
 * final states, every state since 18; PostgreSQL 13 and 14 likewise) is kept by the backends
 * in C: each write of a job notes the state it leaves and the one it enters in its
 * transaction's deltas, which the backend writes just before COMMIT, merged, and drops
 * with a rollback (down to `sp` with its savepoint's). Not triggers: on SQLite any UPDATE
 * trigger on jobs costs every update ~4 us whatever its WHEN, on PostgreSQL a row
 * trigger's function ~10 us of the database's CPU per finish (bench/RESULTS.md, "GET
 * /v1/queues").
 */
struct count_delta {
    char *queue, *owner; /* owner: "" for none */
    int state;
    int64_t n;
};
struct count_deltas {
    struct count_delta *v;
    size_t n, cap;
    size_t sp; /* how many there were when the open savepoint began */
};
/* A job of queue and owner left state `from` and is now in `to` (-1: none, inserted or
   deleted): notes -1 for `from`, +1 for `to`; nothing when they are equal. */
void count_deltas_note(struct count_deltas *d, const char *queue, const char *owner, int from,
                       int to);
/* Drops the deltas noted after the first `keep`. */
void count_deltas_drop(struct count_deltas *d, size_t keep);
/* Sorts by (queue, owner, state), one delta per key, those summing to 0 left out: the order
   in which every writer locks the counters' rows (PostgreSQL: no deadlock between two). */
void count_deltas_merge(struct count_deltas *d);

#endif
