/*
 * store.h - the durable job store, as its callers see it.
 *
 * One interface, several backends chosen by URI scheme: "sqlite:PATH", and
 * "postgres://..." (or "postgresql://...": libpq's connection URI; built
 * WITH_POSTGRES). Operations are at the level of the domain (insert a job,
 * cancel a job), not "run this SQL", so that each backend can do them its
 * own way.
 *
 * Threads: a struct store is used by one thread at a time. The server opens
 * one handle for its writer thread (the group committer, server/commit.h) and
 * another for the reads its event loop makes.
 *
 * Transactions: writes are made between store_begin() and store_commit();
 * store_savepoint() / store_savepoint_release() / store_savepoint_rollback()
 * nest one level inside, so that one bad request in a batch is undone alone.
 * Reads outside a transaction see the last commit.
 *
 * Every function returns 0 or a negative ERR_* code (common/err.h) with
 * detail in `e` (may be NULL). Records returned through `struct job *out`
 * are the caller's to job_release().
 */
#ifndef DROVER_STORE_H
#define DROVER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/role.h"
#include "common/buf.h"
#include "job/agent.h"
#include "job/job.h"
#include "job/lifecycle.h"
#include "job/protocol.h"

struct store;
struct array_rec;

struct store_opts {
    bool sync_full; /* survive power loss: fsync every commit (SQLite synchronous=FULL) */
    bool notify;    /* STORE_CAP_SHARED: each commit that wrote events announces itself to the
                       handles of store_listen (PostgreSQL: one NOTIFY per transaction) */
    bool checkpointer; /* SQLite: the WAL checkpointed by a thread of its own, not by the
                          commit that filled it (the group committer's handle) */
};

/* What a backend can do (curl's SSLSUPP_* style). */
enum store_caps {
    STORE_CAP_SHARED = 1 << 0, /* several servers may share it */
    STORE_CAP_LEADER = 1 << 1, /* reached over the network: periodic work is the leader's
                                  (store_leader_take); without it the one server leads */
};


struct job_filter {
    const char *owner;   /* NULL = any: only this token's jobs */
    const char *queue;   /* NULL = any */
    const char *service; /* NULL = any */
    const char *name;    /* NULL = any: names holding this text, (ASCII) letters in any case */
    const char *agent;   /* NULL = any: jobs whose (latest) attempt went to this agent (name) */
    int state;           /* -1 = any */
    const char *label_key, *label_value; /* both or neither */
    const char *after;   /* cursor: ids strictly older than this */
    int limit;           /* 1..1000 */
};

struct job_list {
    struct job *jobs;
    size_t n;
};
void job_list_release(struct job_list *l);

struct queue_stat {
    char name[72];
    int64_t count[JOB_NSTATES];
};

/* Opens (creating and migrating as needed) the store named by uri. */
int store_open(const char *uri, const struct store_opts *opts, struct store **out, struct err *e);
/*
 * uri as it may be shown (logs, messages): a password in it ("user:PASSWORD@"
 * or "password=PASSWORD") becomes "***". Truncated to fit n bytes.
 */
void store_uri_redact(const char *uri, char *out, size_t n);
void store_close(struct store *st);
unsigned store_caps(const struct store *st);
/* The store's kind ("sqlite", "postgres") and its schema version (an open store is at the
   binary's: migrated at open, a newer one refused). */
const char *store_kind(const struct store *st);
int store_schema(const struct store *st);
/*
 * Claims the store for this process alone for as long as st is open, so that
 * a second server started on the same store is refused: ERR_CONFLICT when
 * another process holds it. SQLite: nothing to do (the data folder's lock
 * does it). PostgreSQL: a session advisory lock, taken again when the
 * connection is made again. The server claims only a store without
 * STORE_CAP_SHARED: several servers share a PostgreSQL database (server/sync.h).
 */
int store_claim(struct store *st, struct err *e);

int store_begin(struct store *st, struct err *e);
/* Whether a webhook delivery was queued (the outbox written) since the last call; clears it.
   A transaction rolled back may still say so (a wasted look at the outbox, nothing more). */
bool store_webhook_queued_take(struct store *st);
int store_commit(struct store *st, struct err *e);
void store_rollback(struct store *st);
int store_savepoint(struct store *st, struct err *e);
int store_savepoint_release(struct store *st, struct err *e);
void store_savepoint_rollback(struct store *st);

/* Inserts a new job. ERR_CONFLICT when its key is already taken. */
int store_job_insert(struct store *st, const struct job *j, struct err *e);
/* Inserts n new jobs, in order, as store_job_insert does each (a batch: fewer statements). */
int store_job_insert_many(struct store *st, struct job *const *jobs, size_t n, struct err *e);
/* ERR_NOTFOUND when there is no such job. */
int store_job_get(struct store *st, const char *id, struct job *out, struct err *e);
/* The job of that owner (NULL: the jobs without one) with that idempotency key. */
int store_job_get_by_key(struct store *st, const char *owner, const char *key, struct job *out,
                         struct err *e);
/* What an id names, for store_id_match. */
enum store_kind { STORE_JOB, STORE_WORKFLOW, STORE_ARRAY, STORE_TRIGGER, STORE_NKINDS };
/*
 * The ids of up to `max` jobs (workflows, arrays, triggers: `kind`) whose id
 * starts with `prefix` (lower-case hex and '-'), owned by `owner` (NULL = any),
 * in id order, into ids; *n is how many (0 when none: not an error).
 */
int store_id_match(struct store *st, enum store_kind kind, const char *prefix,
                   const char *owner, char (*ids)[UUID_STR_LEN], size_t max, size_t *n,
                   struct err *e);
/*
 * The job without its spec and labels (both NULL): for the updates that need
 * only its run state, which then do not pay for parsing the spec.
 */
int store_job_get_run(struct store *st, const char *id, struct job *out, struct err *e);
/* Newest first, as the filter says. */
int store_job_list(struct store *st, const struct job_filter *f, struct job_list *out,
                   struct err *e);
/*
 * THE lifecycle operation: applies event `ev` (job/lifecycle.h) to job `id`
 * and writes the result, as one step under the backend's own locking (SQLite:
 * inside the writer's transaction; a shared backend: the row locked for the
 * step), so that no other change comes between the read and the write.
 *
 * The job must be at attempt `attempt` (0: any) and, when `agent` is not
 * NULL, held by that agent. With `spec` false the spec and labels are not
 * read (out has them NULL): for events that need neither (finish, lost and
 * deadline need the retry policy). Leases are written by store_job_lease()
 * (below), which the server uses for every lease.
 *
 * Returns 0 (applied: out is the job after), LIFECYCLE_SAME (allowed and
 * nothing changes: out as it is), ERR_CONFLICT (the attempt, the agent or the
 * state does not allow it: out is the job as it is, for the caller to tell a
 * repeat from a stale caller), ERR_NOTFOUND; out is the caller's to release
 * on 0, LIFECYCLE_SAME and ERR_CONFLICT.
 */
int store_job_apply(struct store *st, const char *id, int attempt, const char *agent, bool spec,
                    enum job_event ev, const struct job_event_args *a, struct job *out,
                    struct err *e);
/*
 * Lease for one agent: THE place a lease is written.
 *
 * `c` holds n candidates, in the order the caller prefers them (the server's
 * scheduler, sched.h, picks and orders them). As one step under the
 * backend's own locking, each candidate that is still queued gets the
 * lifecycle's JOB_EV_LEASE at now_ms (state leased, attempt + 1, agent =
 * `agent` — the agent's name —, started_at/finished_at/progress cleared; the
 * stored result and attempts of earlier attempts stay) and its event; the
 * other candidates are skipped, never waited for: one cancelled or leased
 * meanwhile, or, with a shared backend, one whose row another server holds
 * locked. SQLite: inside the writer's transaction (one writer at a time).
 * PostgreSQL: the queued rows among the candidates taken with
 * `SELECT ... WHERE id = ANY($1) AND state = queued FOR UPDATE SKIP LOCKED`,
 * then updated, in the caller's transaction; two servers leasing the same
 * candidates at once lease each job once.
 *
 * Out, per candidate: `leased`; when leased, `attempt` (the attempt granted)
 * and `spec`, the job's stored spec as the stored JSON text (malloc'd, the
 * caller's to free even when the call fails): the lease answer is written
 * around these bytes, never parsed again. *nleased = how many were leased.
 * A candidate naming an array (`array`) gets the array's next task
 * (store_array_claim), its job written leased (`job` is then its id), or
 * `exhausted` when the array has none left.
 * A store error is returned as it is; what the call wrote is then undone
 * with the caller's transaction (or savepoint), as for any write.
 */
struct store_lease {
    char job[UUID_STR_LEN]; /* in: a candidate; out: the task's id for an array's */
    char array[UUID_STR_LEN]; /* in: "" or an array (store_array_claim: its next task) */
    bool exhausted;         /* out: the array had no task left to claim */
    bool leased;            /* out */
    int attempt;            /* out, when leased */
    char *spec;             /* out, when leased: the stored spec text (caller frees) */
};
int store_job_lease(struct store *st, const char *agent, int64_t now_ms, struct store_lease *c,
                    size_t n, size_t *nleased, struct err *e);
/*
 * store_job_apply's cancel, any attempt: the job (not terminal) becomes
 * cancelled and is returned in out. ERR_NOTFOUND, or ERR_CONFLICT ("job 'x'
 * is already succeeded") when it already ended (out released).
 */
int store_job_cancel(struct store *st, const char *id, int64_t now_ms, struct job *out,
                     struct err *e);
/*
 * store_job_apply's retry: a failed or cancelled job is queued again (job/lifecycle.h) and
 * returned in out. ERR_NOTFOUND, or ERR_CONFLICT ("job 'x' is succeeded: only a failed or
 * cancelled job can be retried") otherwise (out released).
 */
int store_job_retry(struct store *st, const char *id, int64_t now_ms, struct job *out,
                    struct err *e);
/*
 * A fenced write of a job's mutable fields (state, agent, attempt, started_at,
 * finished_at, run_after, progress, result, attempts): applied only if the
 * stored job still has attempt `expect_attempt` and a state in `expect_states`
 * (a mask of 1 << state). ERR_CONFLICT otherwise, ERR_NOTFOUND when unknown.
 */
int store_job_update(struct store *st, const struct job *j, int expect_attempt,
                     unsigned expect_states, struct err *e);
/*
 * Calls fn for every job whose state is in `states` (a mask), oldest first;
 * fn owns nothing (the job is released after it returns). A non-zero return
 * from fn stops the scan and is returned.
 */
int store_job_scan(struct store *st, unsigned states, int (*fn)(void *arg, const struct job *j),
                   void *arg, struct err *e);
/*
 * Calls fn for each of the n jobs `ids` that exists (those not found are
 * skipped), in no set order, as store_job_scan does: one read for all of them
 * where the backend can (PostgreSQL), one per job otherwise.
 */
int store_job_each(struct store *st, const char *const *ids, size_t n,
                   int (*fn)(void *arg, const struct job *j), void *arg, struct err *e);
/*
 * Before a run of store_job_apply calls on jobs `ids` inside one group-commit
 * op (agents' reports): a backend whose every statement is a round trip
 * (PostgreSQL) locks and reads those jobs, with their workflow, and for each
 * head_attempts[i] > 0 the first head_max bytes of that attempt's stdout, in
 * one or two statements; the job_lock, workflow lookup and log_read (offset 0,
 * head_max bytes) of those that follow are answered from them until the op
 * ends or another kind of write is made. SQLite does nothing (its calls are no
 * round trips). Ids not found are left to the calls that follow.
 */
int store_job_prefetch(struct store *st, const char *const *ids, const int *head_attempts,
                       size_t n, size_t head_max, struct err *e);

/*
 * Captured output, stored in chunks by (job, attempt, stream, offset); stream is an
 * enum proto_stream (0 stdout, 1 stderr). At most PROTO_STREAM_MAX bytes per stream and
 * attempt are kept; bytes past it are dropped.
 */
/* Stores a chunk at its offset; a chunk already stored at that offset is kept as it is. */
int store_log_append(struct store *st, const char *job, int attempt, int stream, int64_t offset,
                     const char *data, size_t len, struct err *e);
/* Appends to out the stream's bytes from offset on, at most max of them. */
int store_log_read(struct store *st, const char *job, int attempt, int stream, int64_t offset,
                   size_t max, struct buf *out, struct err *e);

/*
 * Agents: registered by name; an existing name keeps its id (written back into a->id).
 * a->owner, a->instance, a->runtimes and a->limits are stored with it; ERR_CONFLICT when
 * the name is already registered by another owner (a stored owner of NULL is claimed by the
 * first one). What is stored is read back by store_agent_scan, as the agent was when last
 * written (runtimes 1, native, and limits NULL for a row from before they were stored).
 */
int store_agent_upsert(struct store *st, struct agent_rec *a, struct err *e);
int store_agent_set_state(struct store *st, const char *id, int state, int64_t last_seen,
                          struct err *e);
/*
 * Deletes agent `id` when it is lost or left and was last seen before `seen_before` (ms
 * since the epoch), with an agent event of state AGENT_FORGOTTEN (its name, in the same
 * transaction). ERR_NOTFOUND, nothing written, when there is no such agent or it is up,
 * draining or seen since (registered again meanwhile, say).
 */
int store_agent_forget(struct store *st, const char *id, int64_t seen_before, struct err *e);
/* Calls fn for every agent (the record is released after fn returns). */
int store_agent_scan(struct store *st, int (*fn)(void *arg, const struct agent_rec *a), void *arg,
                     struct err *e);

/* Counts per queue and state of owner's jobs (NULL = all jobs); *out is the caller's to free(). */
int store_queue_stats(struct store *st, const char *owner, struct queue_stat **out, size_t *n,
                      struct err *e);

/* Tokens are kept as the hex SHA-256 of the secret. ERR_CONFLICT when the name is taken. */
int store_token_insert(struct store *st, const char *name, int role, const char *hash,
                       struct err *e);
/* ERR_NOTFOUND when no token has that hash. name_out gets the token's name. */
int store_token_find(struct store *st, const char *hash, int *role, char *name_out, size_t n,
                     struct err *e);
int store_token_delete(struct store *st, const char *name, struct err *e);
/* Number of tokens with that role. */
int store_token_count(struct store *st, int role, int64_t *count, struct err *e);
/* A token as listed (never its secret, nor its hash). */
struct token_rec {
    char name[128];
    int role;
    char tenant[128]; /* "" when unset: the tenant is then its name */
    int64_t created_at;
};
/* Calls fn for each token, by name; a non-zero return of fn stops and is returned. */
int store_token_scan(struct store *st, int (*fn)(void *arg, const struct token_rec *t), void *arg,
                     struct err *e);

/*
 * The dashboard's sessions (server/session.h), kept in the store so that every server
 * sharing it knows them and a restart signs no one out. A session is named by the hex
 * SHA-256 of its cookie's id and holds the hex SHA-256 of the token it was made from
 * (the server checks that token again on each call: a revoked token ends its sessions).
 */
#define STORE_HASH_LEN 65 /* 64 hex digits and '\0' */
struct session_rec {
    char id_hash[STORE_HASH_LEN];
    char token_hash[STORE_HASH_LEN];
    char csrf[STORE_HASH_LEN];
    int role;
    char name[128]; /* the token's */
    int64_t expires_ms;
};
/*
 * Stores s, first deleting the sessions expired by now_ms and, when s->name has
 * max_per_name live sessions, its oldest ones so that s makes max_per_name.
 * ERR_UNAVAILABLE (nothing stored) when max_all live sessions exist then.
 */
int store_session_insert(struct store *st, const struct session_rec *s, int64_t now_ms,
                         int max_per_name, int max_all, struct err *e);
/* The session named id_hash alive at now_ms into out; ERR_NOTFOUND when unknown or expired. */
int store_session_find(struct store *st, const char *id_hash, int64_t now_ms,
                       struct session_rec *out, struct err *e);
/* Deletes the session named id_hash (sign-out); 0 also when there is none. */
int store_session_delete(struct store *st, const char *id_hash, struct err *e);

/*
 * The event stream. Every job insert, update and cancel and every agent upsert
 * and state change appends an event in the same transaction, so an event is
 * visible exactly when its change is committed. Events are numbered by seq,
 * which only grows.
 */
enum event_kind {
    EVENT_JOB,
    EVENT_AGENT,
    EVENT_OBJECT,
    EVENT_TRIGGER,
    EVENT_ARRAY,
    EVENT_QUEUE,  /* a queue paused, resumed or limited: subject and queue its name, state
                     queue_change, data {"by"} (limited: and "max_running", N or null) */
    EVENT_TENANT, /* a tenant's limits set: subject its name, data {"tenant", "max_running",
                     "max_queued", "weight"}; an admin's only */
    EVENT_WORKFLOW, /* a workflow submitted or reopened by a retry (state JOB_RUNNING), or its
                       last node ended (its end state, workflow_state()): subject its id,
                       owner its owner's, data {"name", "key"} and at an end "progress" */
};
/* A queue event's state. */
enum queue_change { QUEUE_RESUMED, QUEUE_PAUSED, QUEUE_LIMITED };
/* A trigger event's state: a fire's outcome, or a change of the trigger (data {"by"}). */
enum trigger_outcome {
    TRIGGER_FIRED,
    TRIGGER_FAILED,
    TRIGGER_CREATED,
    TRIGGER_UPDATED,
    TRIGGER_PAUSED,
    TRIGGER_RESUMED,
    TRIGGER_DELETED,
};
/* An array event's state: stored, or a cancel or retry by range changed it. */
enum array_change { ARRAY_SUBMITTED, ARRAY_CHANGED };
/* An object event's state. */
enum object_change { OBJECT_CREATED, OBJECT_DELETED };

struct event_rec {
    int64_t seq;
    int64_t at;      /* ms since the epoch */
    int kind;        /* enum event_kind */
    char subject[UUID_STR_LEN]; /* the job's, the agent's or the array's id */
    char *queue;     /* job events */
    int state;       /* enum job_state, agent_state, object_change or array_change */
    int attempt;     /* job events; 0 = none */
    char *agent;     /* job events: the agent's name, when one holds it; agent events: its name */
    json_t *data;    /* jobs: {"percent", "message", "reason", "exit_code", ...} or NULL;
                        objects: {"bucket", "key", "size", "sha256"} */
};

struct event_filter {
    int64_t after;             /* events with seq > after */
    int kind;                  /* -1 = any */
    const char *queue;         /* NULL = any */
    const char *const *jobs;   /* subjects wanted, or NULL = any */
    size_t njobs;
    const char *owner;         /* only job and array events of this owner's jobs and arrays
                                  (and agent and object events); NULL = all */
    int limit;                 /* 1..10000 */
    bool no_data;              /* each event's data left out (NULL): not read, not parsed */
};

/*
 * An object of the blob store was created (a PUT committed it, new or
 * replacing one) or deleted: appends its event (kind EVENT_OBJECT, state an
 * enum object_change, data {"bucket", "key", "size", "sha256"}) and, for one
 * created with its sha256, the pending fires of the triggers whose prefix it
 * is under (store_trigger_fire_add), in the same transaction. Objects
 * live outside this store, so this is a write of its own, made once the
 * object's change is done and before the change is answered.
 */
int store_event_object(struct store *st, int change, const char *bucket, const char *key,
                       int64_t size, const char *sha256, struct err *e);
/*
 * An array was stored or changed by a range (enum array_change): appends its event (kind
 * EVENT_ARRAY, subject the array's id, its queue and owner, data {"count", "kind", "name"}),
 * in the caller's transaction. Other servers sharing the store learn of it that way.
 */
int store_event_array(struct store *st, const struct array_rec *a, int change, struct err *e);
/* Calls fn for each event the filter wants, in seq order; fn's non-zero return stops it. */
int store_event_list(struct store *st, const struct event_filter *f,
                     int (*fn)(void *arg, const struct event_rec *ev), void *arg, struct err *e);
/*
 * The retained window: *first is the oldest seq from which on every event is
 * kept (the next seq when none is), *last the newest seq ever written (0
 * before the first). Older events a webhook still has to deliver are kept
 * too, but are not part of the window.
 */
int store_event_window(struct store *st, int64_t *first, int64_t *last, struct err *e);
/* Deletes events older than before_ms, and beyond the newest max_keep ones. */
int store_event_prune(struct store *st, int64_t before_ms, int64_t max_keep, struct err *e);

/*
 * Webhooks. A job inserted with spec.notify_url gets, in the transaction of
 * each of its events that is terminal (every event with spec.notify "all"),
 * a row in the outbox; the deliverer reads what is due, and records each
 * outcome: delivered (the row goes), or tried again later.
 */
struct webhook {
    int64_t id; /* the delivery's id: the same for each of its tries */
    const char *url;
    int tries;          /* tries made before this one */
    int64_t created_at; /* ms */
    const struct event_rec *ev;
};
/* Calls fn for up to `limit` deliveries due at now_ms, the earliest first. */
int store_webhook_due(struct store *st, int64_t now_ms, int limit,
                      int (*fn)(void *arg, const struct webhook *w), void *arg, struct err *e);
/* Delivered, or given up: the row goes. */
int store_webhook_delete(struct store *st, int64_t id, struct err *e);
/* Failed: try again at next_at; `error` says why (kept for operators). */
int store_webhook_retry(struct store *st, int64_t id, int tries, int64_t next_at,
                        const char *error, struct err *e);
/* How many deliveries wait. */
int store_webhook_count(struct store *st, int64_t *n, struct err *e);

/*
 * Retention (server/retention.h). The ids of up to `limit` finished jobs
 * (succeeded, failed, cancelled) due for deletion at now_ms: those whose
 * finished_at + retention (the job's retention_ms, or default_ms when it has
 * none) is at most now_ms, the longest due first, into ids; *n is how many.
 * Reads only what is due (an index per kind).
 */
int store_job_expired(struct store *st, int64_t now_ms, int64_t default_ms, int limit,
                      char (*ids)[UUID_STR_LEN], size_t *n, struct err *e);
/*
 * Whether finished job `id` still matters to something that has not ended, into *held: a
 * node of a workflow one of whose nodes has not ended; a task of an array one of whose tasks
 * has not ended or may still be claimed, or of a fan-out node whose workflow has not ended.
 * Retention keeps such a job (store_job_defer). Reads the workflow's nodes (their job's
 * state) and, for a task, the array's row and the unfinished jobs among its tasks (by id:
 * a task's id begins with its array's millisecond; those of another array made in the same
 * millisecond count too, which only keeps a task longer). A job unknown is not held.
 */
int store_job_held(struct store *st, const char *id, bool *held, struct err *e);
/* Finished job `id` is due for deletion at until_ms, not before (its retention_ms made so:
   an internal field, not its spec's retention_s). 0 also when it is unknown or unfinished. */
int store_job_defer(struct store *st, const char *id, int64_t until_ms, struct err *e);
/*
 * Deletes a finished job: its row (with its result and attempts) and all its
 * captured output, and for a workflow's node its row of the workflow, and the
 * workflow itself when that was its last job; for an array's task its row of the array,
 * and the array with its items when that was its last task's and none may still be claimed
 * (an array whose every task was cancelled before its claim has no job to go with: it
 * stays). ERR_NOTFOUND when unknown,
 * ERR_CONFLICT when it has not finished (a retry may have queued it again
 * since it was found due).
 */
int store_job_delete(struct store *st, const char *id, struct err *e);

/*
 * Tenants (docs/operations.md, "Quotas and fair share"). A token belongs to
 * a tenant, by default the one named as the token; a job to its owner's
 * (struct job.tenant, written at insert). A tenant's limits: -1 = unset
 * (the server's default), 0 = none.
 */
struct tenant_rec {
    char name[72];
    int max_running;
    int max_queued;
    int weight; /* 1..1000 */
};
/* The tenant of token `name` into tenant (n bytes). ERR_NOTFOUND when there is no such token. */
int store_token_tenant(struct store *st, const char *name, char *tenant, size_t n,
                       struct err *e);
/* Sets the tenant of token `name`. ERR_NOTFOUND when there is no such token. */
int store_token_set_tenant(struct store *st, const char *name, const char *tenant,
                           struct err *e);
/* Creates or replaces a tenant's limits, with its event (EVENT_TENANT: other servers sharing
   the store apply the limits when they read it). */
int store_tenant_put(struct store *st, const struct tenant_rec *t, struct err *e);
/* Calls fn for every tenant with limits of its own, by name; fn's non-zero return stops it. */
int store_tenant_scan(struct store *st, int (*fn)(void *arg, const struct tenant_rec *t),
                      void *arg, struct err *e);
/* How many of the tenant's jobs wait (blocked or queued: what max_queued limits), the tasks
   its arrays have not handed out yet included (store.h "Job arrays"). */
int store_tenant_waiting(struct store *st, const char *tenant, int64_t *n, struct err *e);

/*
 * Paused queues (POST /v1/queues/{name}/pause): no job of a paused queue is leased. Pausing
 * a queue paused already, or resuming one that is not, changes nothing (*changed false);
 * otherwise its event (EVENT_QUEUE, data {"by": `by`}) is appended in the same transaction.
 */
int store_queue_pause(struct store *st, const char *queue, bool paused, const char *by,
                      int64_t now_ms, bool *changed, struct err *e);
/* Calls fn for every paused queue, by name, with when it was paused (ms); fn's non-zero
   return stops it. */
int store_queue_paused(struct store *st, int (*fn)(void *arg, const char *queue, int64_t at),
                       void *arg, struct err *e);
/*
 * A queue's max_running (PUT /v1/queues/{name}): at most that many of its jobs leased or
 * running at once; 0: none. *changed false when it was so already; otherwise its event
 * (EVENT_QUEUE, state QUEUE_LIMITED, data {"by", "max_running": N or null}) is appended in
 * the same transaction.
 */
int store_queue_limit(struct store *st, const char *queue, int max_running, const char *by,
                      int64_t now_ms, bool *changed, struct err *e);
/* Calls fn for every queue with a max_running, by name; fn's non-zero return stops it. */
int store_queue_limits(struct store *st, int (*fn)(void *arg, const char *queue, int max_running),
                       void *arg, struct err *e);

/*
 * The service hub (job/service.h): every version of every service's
 * definition is kept. A service is retired when its latest version has
 * retired_at; a new version makes it current again.
 */
struct service_rec {
    char *name;
    int version;        /* 1, 2, ... per name */
    char *definition;   /* the normalised definition, JSON text */
    char *created_by;   /* the name of the token that put it; may be NULL */
    int64_t created_at; /* ms */
    int64_t retired_at; /* ms; 0 = not retired */
};
void store_service_release(struct service_rec *r);
/*
 * Adds the next version of service r->name (1 for a new name) with
 * r->definition, r->created_by and r->created_at; r->version gets the
 * number given to it, r->retired_at is 0.
 */
int store_service_insert(struct store *st, struct service_rec *r, struct err *e);
/* Version `version` of service `name` (0: the latest) into out. ERR_NOTFOUND. */
int store_service_get(struct store *st, const char *name, int version, struct service_rec *out,
                      struct err *e);
/* The latest version of every service, retired ones too, by name; *out: free each and it. */
int store_service_list(struct store *st, struct service_rec **out, size_t *n, struct err *e);
/*
 * Retires service `name` at now_ms (its latest version's retired_at; one
 * already retired keeps its time). ERR_NOTFOUND when there is no such service.
 */
int store_service_retire(struct store *st, const char *name, int64_t now_ms, struct err *e);

/*
 * Workflows (job/workflow.h; docs/api.md "Workflows"). A workflow is stored with all its
 * nodes' jobs, the waiting ones blocked, in the caller's transaction. From then on the store
 * moves it along: whenever a workflow's job reaches a terminal state through
 * store_job_apply(), in the same transaction, each blocked node depending on it is
 * cancelled when an upstream it needs ("on": "success") did not succeed, or, once all its
 * upstreams have ended as it needs, gets its connected inputs (the objects its upstreams'
 * succeeded attempts wrote, URI and sha256) and is queued (unblock). Jobs changed that way are
 * listed for the server (store_changed_take) once the transaction commits.
 */
struct workflow_rec {
    char id[UUID_STR_LEN];
    char *owner; /* NULL: none */
    char *name;  /* NULL: none */
    int64_t created_at;
    json_t *doc; /* workflow_doc(): {"name", "nodes": {NAME: {"job", "depends_on"}}, ...} */
};
void workflow_rec_release(struct workflow_rec *w);
/* Inserts w and its jobs (jobs[i] for each node, in w->doc's nodes); the blocked ones wait. */
int store_workflow_insert(struct store *st, const struct workflow_rec *w, struct job *const *jobs,
                          size_t n, struct err *e);
/* The id of owner's (NULL: no owner) workflow of idempotency key `key` (its doc's "key",
   unique per owner); ERR_NOTFOUND when there is none. */
int store_workflow_by_key(struct store *st, const char *owner, const char *key, char *id_out,
                          struct err *e);
/* ERR_NOTFOUND when there is no such workflow. */
int store_workflow_get(struct store *st, const char *id, struct workflow_rec *out, struct err *e);
struct workflow_list {
    struct workflow_rec *w;
    size_t n;
};
void workflow_list_release(struct workflow_list *l);
/* Up to limit (1..1000) workflows, newest first: owner's (NULL: anyone's), with ids strictly
   older than after (NULL: from the newest). */
int store_workflow_list(struct store *st, const char *owner, const char *after, int limit,
                        struct workflow_list *out, struct err *e);
/* The id of the workflow job is a node of (UUID_STR_LEN bytes); ERR_NOTFOUND when in none. */
int store_workflow_of(struct store *st, const char *job, char *id_out, struct err *e);
/* Cancels every node not yet ended (each through store_job_apply); *n = how many. */
int store_workflow_cancel(struct store *st, const struct workflow_rec *w, int64_t now_ms,
                          size_t *n, struct err *e);
/*
 * Reruns what failed or was cancelled, keeping what succeeded: each such node, in an order
 * where upstreams come first, is queued again (JOB_EV_RETRY) when its upstreams have ended as
 * it needs, else blocked again (JOB_EV_REBLOCK) until they have. *n = how many. ERR_CONFLICT
 * when nothing failed or was cancelled.
 */
int store_workflow_retry(struct store *st, const struct workflow_rec *w, int64_t now_ms,
                         size_t *n, struct err *e);
/*
 * Ids of jobs the store changed by itself (a workflow moving on, a workflow's cancel or retry)
 * in transactions committed since the last call, of any handle of this process; the caller
 * frees *ids. Thread-safe: the server reads them on its loop after each batch.
 */
size_t store_changed_take(char (**ids)[UUID_STR_LEN]);

/*
 * Upload triggers (docs/api.md "Triggers"). A trigger submits its template (a job spec or a
 * workflow body, JSON text) once per object version created under its prefix. The intent
 * (a "fire") is a row keyed UNIQUE by (trigger, uri, sha256): written in the transaction of
 * the object's event (store_event_object) or by a listing (store_trigger_fire_add), and
 * marked with what it submitted in the transaction that submits it (store_trigger_fire_done),
 * so a crash between the two loses nothing and a fire submits at most once.
 */
struct trigger_rec {
    char id[UUID_STR_LEN];
    char *owner;        /* the token that made it (its jobs are this token's); NULL: none */
    char *prefix;       /* s3://BUCKET/ or s3://BUCKET/KEY-PREFIX */
    bool workflow;      /* template is a workflow body, else a job spec */
    char *input;        /* the input port the object fills (ARG or NODE.ARG), or NULL */
    char *template_;    /* JSON text */
    int64_t created_at; /* ms */
    char *schedule;     /* a schedule (docs/api.md "Schedules"): its cron expression, and prefix
                           is ""; NULL: an upload trigger */
    bool skip_overlap;  /* a schedule's fire is skipped while its previous run is unfinished */
    char *timezone;     /* the zone a schedule is read in ("Europe/Paris"); NULL: UTC */
    int64_t paused_at;  /* ms: paused since (its fires wait, a schedule records none); 0: not */
    int64_t resumed_at; /* ms: last resumed (a schedule's times before it are past); 0: never */
    int64_t updated_at; /* ms: last changed (store_trigger_update); 0: never */
};
void trigger_rec_release(struct trigger_rec *t);
/*
 * A trigger's changes append their event (kind EVENT_TRIGGER, subject its id, state
 * TRIGGER_CREATED, _UPDATED, _PAUSED, _RESUMED or _DELETED, owner the trigger's, data {"by":
 * the token that made the change}) in their transaction: servers sharing the store read the
 * triggers again when they see one.
 */
/* Inserts t. ERR_CONFLICT when its id is taken. */
int store_trigger_insert(struct store *st, const struct trigger_rec *t, struct err *e);
/* Sets trigger t->id's prefix, workflow, input, template, schedule, skip_overlap, timezone and
   updated_at to t's (not its owner, creation, pause or fires). ERR_NOTFOUND. */
int store_trigger_update(struct store *st, const struct trigger_rec *t, const char *by,
                         struct err *e);
/* ERR_NOTFOUND when there is no such trigger. */
int store_trigger_get(struct store *st, const char *id, struct trigger_rec *out, struct err *e);
/* The triggers of owner (NULL: everyone's), newest first: those older than `after` (a
   trigger's id; NULL: from the newest), at most `limit` (0: all); *out: release each, free
   it. */
int store_trigger_list(struct store *st, const char *owner, const char *after, int limit,
                       struct trigger_rec **out, size_t *n, struct err *e);
/* Pauses (paused: at now_ms) or resumes (resumed_at now_ms) trigger `id`; *changed false
   when it was so already. A paused trigger's pending fires are not listed for submission. */
int store_trigger_pause(struct store *st, const char *id, bool paused, int64_t now_ms,
                        const char *by, bool *changed, struct err *e);
/* Deletes a trigger and its fires, pending ones too (they never submit). ERR_NOTFOUND. */
int store_trigger_delete(struct store *st, const char *id, const char *by, struct err *e);

struct trigger_fire {
    int64_t id;
    char trigger[UUID_STR_LEN];
    char *uri;
    char sha256[65];
    int64_t created_at; /* ms: when the object was seen */
    char *target;       /* the job or workflow submitted; NULL while pending or failed */
    char *error;        /* why nothing could be submitted; NULL */
    int64_t fired_at;   /* ms; 0 while pending */
};
void trigger_fire_release(struct trigger_fire *f);
/*
 * Object `uri` (s3://BUCKET/KEY) with content sha256 exists: a pending fire for every upload
 * trigger whose prefix starts uri (only trigger `trigger` when not NULL; its prefix is then
 * not checked), unless that (trigger, uri, sha256) fired or waits already. *added (may be
 * NULL) = how many fires are new. store_event_object calls it for each object created. A
 * schedule's fire is recorded with `trigger` given, uri its time (RFC 3339) and sha256 "".
 */
int store_trigger_fire_add(struct store *st, const char *trigger, const char *uri,
                           const char *sha256, int64_t now_ms, int *added, struct err *e);
/*
 * With `trigger` NULL: up to `limit` pending fires of every trigger, oldest first. Else that
 * trigger's newest `limit` fires, newest first, whatever their state. *out: release each,
 * free it.
 */
int store_trigger_fires(struct store *st, const char *trigger, int limit,
                        struct trigger_fire **out, size_t *n, struct err *e);
/*
 * Fire `id` submitted `target` (a job or workflow id), or, with target NULL, failed with
 * `error`: recorded, with its event (kind EVENT_TRIGGER, subject the trigger, state an enum
 * trigger_outcome, data {"uri", "sha256", "job"|"workflow"|"error"}, owner the trigger's).
 * ERR_CONFLICT when it is not pending (done already, or its trigger deleted): the caller
 * undoes what it submitted with it. A schedule's event data has {"time"} for uri and sha256.
 */
int store_trigger_fire_done(struct store *st, int64_t id, const char *target, const char *error,
                            int64_t now_ms, struct err *e);
/* Deletes a schedule's done fires (submitted or failed) but its newest `keep` (>= 1) and
   the newest that submitted something (its last run, which overlap "skip" looks at). */
int store_trigger_fires_prune(struct store *st, const char *trigger, int keep, struct err *e);
/* *target: what the newest fire of trigger before fire `before` submitted (a job or workflow
   id, the caller frees it), NULL when none did. */
int store_trigger_last_target(struct store *st, const char *trigger, int64_t before,
                              char **target, struct err *e);

/*
 * Job arrays (job/array.h; docs/api.md "Arrays"). An array is one row: its spec template once,
 * count tasks, a cursor next_index: tasks at or above it that are not in `skips` are queued
 * without a row of their own. A task becomes an ordinary job (id array_task_id(), linked in
 * array_tasks) when it is claimed for a lease (store_array_claim, in the lease's
 * transaction: the cursor moves in the database, so servers sharing it claim each task once),
 * or when a cancel or a retry by range reaches it.
 */
struct array_rec {
    char id[UUID_STR_LEN];
    char *owner, *tenant; /* NULL: none */
    char *queue;
    char *name; /* NULL: none */
    int priority;
    int kind;     /* enum array_kind */
    char *source; /* objects: the prefix listed; else NULL */
    int64_t count, next_index;
    json_t *skips; /* [[from, to], ...]: unclaimed tasks that were cancelled, sorted, disjoint */
    json_t *spec;  /* the normalised spec template */
    int64_t created_at, run_after; /* run_after: created_at + delay_s (not stored) */
    json_t *items; /* store_array_insert: the items' texts (strings), or NULL (count) */
};
void array_rec_release(struct array_rec *a);
/* Inserts a (and its items, a->items) with next_index 0 and no skips. */
int store_array_insert(struct store *st, const struct array_rec *a, struct err *e);
/* ERR_NOTFOUND when there is no such array; out->items stays NULL. */
int store_array_get(struct store *st, const char *id, struct array_rec *out, struct err *e);
/* Up to limit (1..1000) arrays, newest first: owner's (NULL: all), ids older than after. */
int store_array_list(struct store *st, const char *owner, const char *after, int limit,
                     struct array_rec **out, size_t *n, struct err *e);
/* Tasks that may still be claimed (at or above the cursor, not skipped). */
int64_t array_claimable(const struct array_rec *a);
/*
 * Claims array `id`'s next k tasks (fewer when it has fewer left) and inserts their jobs into
 * out[0..*got) (the caller's to release): queued, or with `agent` (its name) leased to it
 * (attempt 1: the lease of store_job_lease, written with the row). ERR_NOTFOUND when the
 * array has none left (or is gone). The array's row is read (and locked) once for all k.
 */
int store_array_claim(struct store *st, const char *id, const char *agent, int64_t now_ms,
                      size_t k, struct job *out, size_t *got, struct err *e);
/*
 * Counts per state of the array's tasks into counts[JOB_NSTATES]: its jobs' states, the
 * tasks not claimed yet as queued, the skipped as cancelled.
 */
int store_array_counts(struct store *st, const struct array_rec *a, int64_t *counts,
                       struct err *e);
/*
 * Calls fn for each task from..to (inclusive) in index order, up to limit of them, with state
 * `state` (-1: any): with its job, or with j NULL for one without (queued, or cancelled
 * unclaimed: *state says). fn's non-zero return stops it.
 */
int store_array_tasks(struct store *st, const struct array_rec *a, int64_t from, int64_t to,
                      int state, int limit,
                      int (*fn)(void *arg, int64_t index, int state, const struct job *j),
                      void *arg, struct err *e);
/*
 * Cancels tasks from..to: each job not ended (store_job_apply), and the unclaimed tasks
 * (skipped from now on). fn is given each job changed (its to release). *n = how many tasks.
 */
int store_array_cancel(struct store *st, const char *id, int64_t from, int64_t to,
                       int64_t now_ms, int (*fn)(void *arg, struct job *j), void *arg,
                       int64_t *n, struct err *e);
/*
 * Retries tasks from..to that failed or were cancelled: their jobs queued again, cancelled
 * unclaimed tasks queued again (above the cursor: unskipped; below it: their jobs made).
 * fn is given each job queued (its to release). *n = how many tasks.
 */
int store_array_retry(struct store *st, const char *id, int64_t from, int64_t to,
                      int64_t now_ms, int (*fn)(void *arg, struct job *j), void *arg,
                      int64_t *n, struct err *e);

/* Small named values (the server's secret, ...). get: ERR_NOTFOUND when unset; *value is the caller's. */
/*
 * The leader lease: periodic work (lost agents, deadlines, delayed jobs, pruning,
 * webhook deliveries) runs on one server of those sharing a store. Takes the lease
 * `name` for `holder` until now_ms + ttl_ms when nobody holds it, when it lapsed
 * (its expiry <= now_ms) or when `holder` has it already (a renewal): *leader =
 * true. Else *leader = false, and nothing changes. One statement, committed on its
 * own when no transaction is open; two servers racing for a lapsed lease cannot both
 * get it. Clocks: now_ms is the caller's, so the servers' clocks must agree to well
 * within ttl_ms.
 */
int store_leader_take(struct store *st, const char *name, const char *holder, int64_t now_ms,
                      int64_t ttl_ms, bool *leader, struct err *e);
/*
 * Several servers (STORE_CAP_SHARED): store_listen makes this handle (one of its own: it
 * does nothing else) hear of other handles' commits that wrote events (store_opts.notify);
 * *fd is a descriptor to wait on for reading. store_notified reads what came: *any is true
 * when a commit was announced since the last call, or when the connection was made again
 * (what came meanwhile is unknown); *fd may then have changed. *upto is the newest seq
 * the announcements read say was committed (0: none; INT64_MAX when one did not say, as
 * after a reconnect). ERR_INVALID on a store without STORE_CAP_SHARED; ERR_UNAVAILABLE
 * while the database cannot be reached.
 */
int store_listen(struct store *st, int *fd, struct err *e);
int store_notified(struct store *st, int *fd, bool *any, int64_t *upto, struct err *e);
/*
 * After a store_commit that succeeded: the seqs of the events that transaction wrote,
 * first..last (first > last: none, or a store that is not shared). A server skips its
 * own events when it reads the others' (server/sync.h).
 */
void store_tx_events(struct store *st, int64_t *first, int64_t *last);
/* An agent was seen by a server at last_seen (kept when newer than what is stored). No event. */
int store_agent_seen(struct store *st, const char *id, int64_t last_seen, struct err *e);
/* The runtimes (PROTO_RT_* bits) an agent offers now (a poll said others). No event.
   ERR_NOTFOUND when there is no such agent. */
int store_agent_set_runtimes(struct store *st, const char *id, unsigned runtimes, struct err *e);

/* Lets the lease go at once when `holder` has it (a clean shutdown); else nothing. */
int store_leader_release(struct store *st, const char *name, const char *holder, struct err *e);

int store_meta_get(struct store *st, const char *key, char **value, struct err *e);
int store_meta_set(struct store *st, const char *key, const char *value, struct err *e);

#endif
