/*
 * store_pg.c - the PostgreSQL store (libpq), for "postgres://..." URIs.
 *
 * Each handle is one connection; its statements are prepared on the
 * connection at their first use. Transactions are READ COMMITTED; what the
 * SQLite backend gets from its single writer this one gets from row locks,
 * so that nothing here depends on being the only process on the database:
 *   - a lifecycle step reads its job FOR UPDATE (job_lock) and writes it
 *     fenced on attempt and state;
 *   - a transaction that writes events locks event_head's one row at its
 *     first write (before any job's row: no deadlock), then numbers its
 *     events after the newest one stored (events_lock): writing
 *     transactions commit one after the other, in seq order
 *     (schema/postgres.h), as SQLite's single writer does. The row is only
 *     locked, not updated, per transaction: a transaction left open
 *     elsewhere (holding back vacuum) would otherwise make every lock walk
 *     all the row's versions since it began;
 *   - a lease takes its candidates FOR UPDATE SKIP LOCKED.
 * The only state kept here between calls is the open transaction's: its
 * depth and the seq of its last event.
 *
 * Durability: every COMMIT waits for the database's WAL flush (PostgreSQL's
 * synchronous_commit; sync_full forces it on should the database default
 * to off).
 *
 * Errors: a lost connection, a server shutting down or too many connections
 * are ERR_UNAVAILABLE (503); the connection is re-made at the next call
 * outside a transaction.
 */
#include "store/store_int.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/hmap.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "store/schema/postgres.h"

/* The keys of the advisory locks migrations and store_claim take ("drover" in ASCII, + 1). */
#define MIGRATE_LOCK "110413358540402"
#define CLAIM_LOCK "110413358540403"

enum stmt_id {
    S_JOB_INSERT,
    S_JOB_GET,
    S_JOB_GET_KEY,
    S_MATCH, /* store_id_match: S_MATCH + kind, S_MATCH_OWNER + kind */
    S_MATCH_OWNER = S_MATCH + STORE_NKINDS,
    S_MATCH_END = S_MATCH_OWNER + STORE_NKINDS - 1,
    S_JOB_GET_RUN,
    S_JOB_LOCK,
    S_JOB_LOCK_RUN,
    S_QUEUE_STATS,
    S_QUEUE_STATS_OWNER,
    S_TOKEN_INSERT,
    S_TOKEN_FIND,
    S_TOKEN_DELETE,
    S_TOKEN_COUNT,
    S_TOKEN_SCAN,
    S_SESSION_PRUNE,
    S_SESSION_TRIM,
    S_SESSION_COUNT,
    S_SESSION_INSERT,
    S_SESSION_FIND,
    S_SESSION_DELETE,
    S_META_GET,
    S_META_SET,
    S_LEADER_TAKE,
    S_AGENT_SEEN,
    S_LEADER_RELEASE,
    S_JOB_UPDATE,
    S_JOB_INSERT_SET,
    S_JOB_LEASE_LOCK,
    S_JOB_LEASE,
    S_JOB_SCAN,
    S_JOB_SCAN_LIVE,
    S_JOB_EACH,
    S_JOB_PREFETCH,
    S_JOB_UPDATE_SET,
    S_LOG_HEADS,
    S_LOG_APPEND,
    S_LOG_READ,
    S_AGENT_UPSERT,
    S_AGENT_STATE,
    S_AGENT_FORGET,
    S_AGENT_RUNTIMES,
    S_AGENT_SCAN,
    S_EVENT_AGENT,
    S_EVENT_ADD,
    S_EVENT_WINDOW,
    S_EVENT_PRUNE,
    S_WEBHOOK_ADD,
    S_WEBHOOK_DUE,
    S_WEBHOOK_DELETE,
    S_WEBHOOK_RETRY,
    S_WEBHOOK_COUNT,
    S_JOB_EXPIRED,
    S_JOB_HELD,
    S_JOB_DEFER,
    S_JOB_DELETE,
    S_JOB_DELETE_LOGS,
    S_TOKEN_TENANT,
    S_TOKEN_SET_TENANT,
    S_TENANT_PUT,
    S_TENANT_SCAN,
    S_TENANT_WAITING,
    S_QUEUE_PAUSE,
    S_QUEUE_RESUME,
    S_QUEUE_PAUSED,
    S_QUEUE_LIMIT,
    S_QUEUE_UNLIMIT,
    S_QUEUE_LIMITS,
    S_JOB_STATE_LOCK,
    S_SERVICE_INSERT,
    S_SERVICE_GET,
    S_SERVICE_LATEST,
    S_SERVICE_LIST,
    S_SERVICE_RETIRE,
    S_WF_INSERT,
    S_WF_BY_KEY,
    S_WF_JOB,
    S_WF_GET,
    S_WF_OF,
    S_WF_LIST,
    S_WF_FORGET,
    S_WF_DROP_EMPTY,
    S_JOB_SET_SPEC,
    S_TRIGGER_INSERT,
    S_TRIGGER_UPDATE,
    S_TRIGGER_GET,
    S_TRIGGER_LIST,
    S_TRIGGER_DELETE,
    S_TRIGGER_DELETE_FIRES,
    S_FIRE_ADD,
    S_FIRE_PENDING,
    S_FIRE_RECENT,
    S_FIRE_PRUNE,
    S_TRIGGER_PAUSE,
    S_TRIGGER_RESUME,
    S_FIRE_LAST_TARGET,
    S_FIRE_DONE,
    S_EVENT_TRIGGER,
    S_ARRAY_INSERT,
    S_ARRAY_ITEMS,
    S_ARRAY_GET,
    S_ARRAY_LOCK,
    S_ARRAY_LIST,
    S_ARRAY_SET,
    S_ARRAY_OPEN,
    S_ARRAY_ITEM,
    S_ARRAY_TASK_ADD,
    S_ARRAY_TASK_GONE,
    S_ARRAY_TASK_IDS,
    S_ARRAY_JOB_COUNTS,
    S_COUNT
};

#define JOB_COLUMNS                                                                                \
    "id, state, queue, service, name, idem_key, agent, priority, slots, attempt, max_attempts, "   \
    "created_at, started_at, finished_at, run_after, labels, spec, progress, result, attempts, "   \
    "owner, retention_ms, tenant"
/* The same columns with labels and spec left out (NULL). */
#define JOB_RUN_COLUMNS                                                                            \
    "id, state, queue, service, name, idem_key, agent, priority, slots, attempt, max_attempts, "   \
    "created_at, started_at, finished_at, run_after, NULL, NULL, progress, result, attempts, "     \
    "owner, retention_ms, tenant"

#define NOTIFY_CHANNEL "drover_events"

/* The states of unfinished jobs: those whose end_state is NULL (schema 12). */
#define LIVE_STATES JOB_UNFINISHED_MASK

#define SERVICE_COLUMNS "name, version, definition, created_by, created_at, retired_at"
#define TRIGGER_COLUMNS                                                                            \
    "id, owner, prefix, workflow, input, template, created_at, schedule, skip_overlap, timezone, " \
    "paused_at, resumed_at, updated_at"
#define FIRE_COLUMNS "id, trigger, uri, sha256, created_at, target, error, fired_at"
#define ARRAY_COLUMNS                                                                              \
    "id, owner, tenant, queue, name, priority, kind, source, count, next_index, skips, spec, "     \
    "created_at, open"

/* A CTE "e" appending the event of the job that CTE `from` wrote (none if it wrote none),
   from parameters $a.. (seq, at, subject, queue, state, attempt, agent, owner, data: as
   event_params() gives them): a job's write and its event cost one round trip. */
#define EVENT_OF(from, a, b, c, d, f, g, h, i, k)                                                  \
    "e AS (INSERT INTO events (seq, at, kind, subject, queue, state, attempt, agent, owner, "     \
    "data) SELECT $" a "::bigint, $" b "::bigint, 0, $" c "::text, $" d "::text, $" f            \
    "::integer, $" g "::integer, $" h "::text, $" i "::text, $" k "::text FROM " from ")"

static const char *const stmt_sql[S_COUNT] = {
    [S_WF_INSERT] = "INSERT INTO workflows (id, owner, name, created_at, doc, idem_key) "
                    "VALUES ($1, $2, $3, $4, $5, $6)",
    [S_WF_BY_KEY] = "SELECT id FROM workflows WHERE coalesce(owner, '') = coalesce($1, '') "
                    "AND idem_key = $2",
    [S_WF_JOB] = "INSERT INTO workflow_jobs (job, workflow, node) VALUES ($1, $2, $3)",
    [S_WF_GET] = "SELECT owner, name, created_at, doc FROM workflows WHERE id = $1",
    [S_WF_OF] = "SELECT workflow FROM workflow_jobs WHERE job = $1",
    [S_WF_FORGET] = "DELETE FROM workflow_jobs WHERE job = $1 RETURNING workflow",
    [S_WF_DROP_EMPTY] = "DELETE FROM workflows WHERE id = $1 AND NOT EXISTS "
                        "(SELECT 1 FROM workflow_jobs WHERE workflow = $1)",
    [S_WF_LIST] = "SELECT id, owner, name, created_at, doc FROM workflows "
                  "WHERE ($1::text IS NULL OR owner = $1) AND ($2::text IS NULL OR id < $2) "
                  "ORDER BY id DESC LIMIT $3",
    [S_JOB_SET_SPEC] = "UPDATE jobs SET spec = $1 WHERE id = $2",
    [S_TRIGGER_INSERT] = "INSERT INTO triggers (id, owner, prefix, workflow, input, template, "
                         "created_at, schedule, skip_overlap, timezone) "
                         "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    [S_TRIGGER_UPDATE] = "UPDATE triggers SET prefix = $2, workflow = $3, input = $4, "
                         "template = $5, schedule = $6, skip_overlap = $7, timezone = $8, "
                         "updated_at = $9 WHERE id = $1",
    [S_TRIGGER_GET] = "SELECT " TRIGGER_COLUMNS " FROM triggers WHERE id = $1",
    /* ids are UUIDv7: newest first by id, a page after the cursor's; LIMIT NULL: all */
    [S_TRIGGER_LIST] = "SELECT " TRIGGER_COLUMNS " FROM triggers "
                       "WHERE ($1::text IS NULL OR owner = $1) AND ($2::text IS NULL OR id < $2) "
                       "ORDER BY id DESC LIMIT $3::bigint",
    [S_TRIGGER_DELETE] = "DELETE FROM triggers WHERE id = $1",
    [S_TRIGGER_DELETE_FIRES] = "DELETE FROM trigger_fires WHERE trigger = $1",
    /* every trigger whose prefix starts the URI (or the one named), once per object version */
    [S_FIRE_ADD] = "INSERT INTO trigger_fires (trigger, uri, sha256, created_at) "
                   "SELECT id, $1::text, $2::text, $3::bigint FROM triggers "
                   "WHERE CASE WHEN $4::text IS NULL THEN schedule IS NULL "
                   "AND left($1::text, length(prefix)) = prefix "
                   "ELSE id = $4::text END "
                   "ON CONFLICT (trigger, uri, sha256) DO NOTHING",
    [S_FIRE_PENDING] = "SELECT " FIRE_COLUMNS " FROM trigger_fires "
                       "WHERE target IS NULL AND error IS NULL AND trigger NOT IN "
                       "(SELECT id FROM triggers WHERE paused_at IS NOT NULL) ORDER BY id LIMIT $1",
    [S_FIRE_RECENT] = "SELECT " FIRE_COLUMNS " FROM trigger_fires WHERE trigger = $1 "
                      "ORDER BY id DESC LIMIT $2",
    /* a schedule's fires but its newest `keep` ($2), those pending and its newest run */
    [S_FIRE_PRUNE] = "DELETE FROM trigger_fires WHERE trigger = $1 "
                     "AND (target IS NOT NULL OR error IS NOT NULL) AND id <= "
                     "(SELECT id FROM trigger_fires WHERE trigger = $1 ORDER BY id DESC "
                     "LIMIT 1 OFFSET $2) AND id <> coalesce((SELECT max(id) FROM trigger_fires "
                     "WHERE trigger = $1 AND target IS NOT NULL), 0)",
    [S_TRIGGER_PAUSE] = "UPDATE triggers SET paused_at = $2 WHERE id = $1 AND paused_at IS NULL "
                        "RETURNING id",
    [S_TRIGGER_RESUME] = "UPDATE triggers SET paused_at = NULL, resumed_at = $2 "
                         "WHERE id = $1 AND paused_at IS NOT NULL RETURNING id",
    [S_FIRE_LAST_TARGET] = "SELECT target FROM trigger_fires WHERE trigger = $1 AND id < $2 "
                           "AND target IS NOT NULL ORDER BY id DESC LIMIT 1",
    [S_FIRE_DONE] = "UPDATE trigger_fires f SET target = $2, error = $3, fired_at = $4 "
                    "WHERE f.id = $1 AND target IS NULL AND error IS NULL "
                    "RETURNING trigger, uri, sha256, "
                    "(SELECT owner FROM triggers t WHERE t.id = f.trigger), "
                    "(SELECT workflow FROM triggers t WHERE t.id = f.trigger)",
    [S_EVENT_TRIGGER] = "INSERT INTO events (seq, at, kind, subject, state, owner, data) "
                        "VALUES ($1, $2, 3, $3, $4, $5, $6)",
    [S_ARRAY_INSERT] = "INSERT INTO arrays (" ARRAY_COLUMNS ") "
                       "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, '[]', $10, $11, $9)",
    /* all items in one statement: a million round trips would take minutes */
    [S_ARRAY_ITEMS] = "INSERT INTO array_items (array_id, idx, item) "
                      "SELECT $1, t.n - 1, t.v FROM json_array_elements_text($2::json) "
                      "WITH ORDINALITY AS t(v, n)",
    [S_ARRAY_GET] = "SELECT " ARRAY_COLUMNS " FROM arrays WHERE id = $1",
    /* claims and range changes of one array wait for each other, across servers */
    [S_ARRAY_LOCK] = "SELECT " ARRAY_COLUMNS " FROM arrays WHERE id = $1 FOR UPDATE",
    [S_ARRAY_LIST] = "SELECT " ARRAY_COLUMNS " FROM arrays "
                     "WHERE ($1::text IS NULL OR owner = $1) AND ($2::text IS NULL OR id < $2) "
                     "ORDER BY id DESC LIMIT $3",
    [S_ARRAY_SET] = "UPDATE arrays SET next_index = $1, skips = $2, open = $4 WHERE id = $3",
    [S_ARRAY_OPEN] = "SELECT coalesce(sum(open), 0) FROM arrays WHERE tenant = $1 AND open > 0",
    [S_ARRAY_ITEM] = "SELECT item FROM array_items WHERE array_id = $1 AND idx = $2",
    [S_ARRAY_TASK_ADD] = "INSERT INTO array_tasks (array_id, idx, job) VALUES ($1, $2, $3)",
    /* a task's job deleted: its row, the array when it was the last and none is open, and
       then its items */
    [S_ARRAY_TASK_GONE] = "WITH t AS (DELETE FROM array_tasks WHERE job = $1 RETURNING array_id), "
                          "a AS (DELETE FROM arrays WHERE id IN (SELECT array_id FROM t) "
                          "AND open = 0 AND NOT EXISTS (SELECT 1 FROM array_tasks x "
                          "WHERE x.array_id = arrays.id AND x.job <> $1) RETURNING id) "
                          "DELETE FROM array_items WHERE array_id IN (SELECT id FROM a)",
    [S_ARRAY_TASK_IDS] = "SELECT idx, job FROM array_tasks WHERE array_id = $1 "
                         "AND idx BETWEEN $2 AND $3 ORDER BY idx",
    [S_ARRAY_JOB_COUNTS] = "SELECT j.state, count(*) FROM array_tasks t JOIN jobs j ON j.id = t.job "
                           "WHERE t.array_id = $1 GROUP BY j.state",
    /* one writer per database (store_claim): max + 1 is not raced */
    [S_SERVICE_INSERT] = "INSERT INTO services (name, version, definition, created_by, created_at) "
                         "SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4 FROM services "
                         "WHERE name = $1 RETURNING version",
    [S_SERVICE_GET] = "SELECT " SERVICE_COLUMNS " FROM services WHERE name = $1 AND version = $2",
    [S_SERVICE_LATEST] = "SELECT " SERVICE_COLUMNS " FROM services WHERE name = $1 "
                         "ORDER BY version DESC LIMIT 1",
    [S_SERVICE_LIST] = "SELECT " SERVICE_COLUMNS " FROM services s WHERE version = "
                       "(SELECT max(version) FROM services WHERE name = s.name) ORDER BY name",
    [S_SERVICE_RETIRE] = "UPDATE services SET retired_at = coalesce(retired_at, $2) "
                         "WHERE name = $1 AND version = "
                         "(SELECT max(version) FROM services WHERE name = $1)",
    /* A taken id or key inserts nothing (no error, which would abort the transaction); a
       queued job ($26: JOB_QUEUED) gets its row in ready too. */
    [S_JOB_INSERT] = "WITH j AS (INSERT INTO jobs (" JOB_COLUMNS ", notify_url, notify_all) "
                     "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,"
                     "$20,$21,$22,$23,$24,$25) ON CONFLICT DO NOTHING "
                     "RETURNING id, state, queue, priority, run_after), "
                     "r AS (INSERT INTO ready (job, queue, priority, run_after) "
                     "SELECT id, queue, priority, run_after FROM j WHERE state = $26), "
                     EVENT_OF("j", "27", "28", "29", "30", "31", "32", "33", "34", "35")
                     " SELECT id FROM j",
    [S_JOB_GET] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = $1",
    [S_JOB_GET_KEY] = "SELECT " JOB_COLUMNS " FROM jobs WHERE coalesce(owner, '') = "
                      "coalesce($2::text, '') AND idem_key = $1",
    /* Ids are lower-case hex and '-', all below 'g': [p, p || 'g') holds those starting with p. */
#define MATCH(table)                                                                           \
    "SELECT id FROM " table " WHERE id >= $1 AND id < $1 || 'g' ORDER BY id LIMIT $2"
#define MATCH_OWNER(table)                                                                     \
    "SELECT id FROM " table " WHERE id >= $1 AND id < $1 || 'g' AND owner = $3 "             \
    "ORDER BY id LIMIT $2"
    [S_MATCH + STORE_JOB] = MATCH("jobs"),
    [S_MATCH + STORE_WORKFLOW] = MATCH("workflows"),
    [S_MATCH + STORE_ARRAY] = MATCH("arrays"),
    [S_MATCH + STORE_TRIGGER] = MATCH("triggers"),
    [S_MATCH_OWNER + STORE_JOB] = MATCH_OWNER("jobs"),
    [S_MATCH_OWNER + STORE_WORKFLOW] = MATCH_OWNER("workflows"),
    [S_MATCH_OWNER + STORE_ARRAY] = MATCH_OWNER("arrays"),
    [S_MATCH_OWNER + STORE_TRIGGER] = MATCH_OWNER("triggers"),
#undef MATCH
#undef MATCH_OWNER
    [S_JOB_GET_RUN] = "SELECT " JOB_RUN_COLUMNS " FROM jobs WHERE id = $1",
    [S_JOB_LOCK] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = $1 FOR UPDATE",
    [S_JOB_LOCK_RUN] = "SELECT " JOB_RUN_COLUMNS " FROM jobs WHERE id = $1 FOR UPDATE",
    /* Every state read from job_counts (schema 14), summed over its shards: the cost is
       the counters', however many jobs the table holds. */
    /* an array's tasks not claimed yet (open) are queued jobs of its queue (state 1) */
    [S_QUEUE_STATS] = "SELECT queue, state, sum(n)::bigint FROM (SELECT queue, state, n FROM "
                      "job_counts UNION ALL SELECT queue, 1, open FROM arrays WHERE open > 0) c "
                      "GROUP BY queue, state HAVING sum(n) <> 0 ORDER BY queue, state",
    [S_QUEUE_STATS_OWNER] = "SELECT queue, state, sum(n)::bigint FROM (SELECT queue, state, n "
                            "FROM job_counts WHERE owner = $1 UNION ALL SELECT queue, 1, open "
                            "FROM arrays WHERE open > 0 AND owner = $1) c GROUP BY queue, state "
                            "HAVING sum(n) <> 0 ORDER BY queue, state",
    [S_TOKEN_INSERT] = "INSERT INTO tokens (name, role, hash, created_at) VALUES ($1, $2, $3, "
                       "(extract(epoch FROM clock_timestamp()) * 1000)::bigint) "
                       "ON CONFLICT (name) DO NOTHING",
    [S_TOKEN_FIND] = "SELECT role, name FROM tokens WHERE hash = $1",
    [S_TOKEN_DELETE] = "DELETE FROM tokens WHERE name = $1",
    [S_TOKEN_COUNT] = "SELECT count(*) FROM tokens WHERE role = $1",
    [S_TOKEN_SCAN] = "SELECT name, role, tenant, created_at FROM tokens ORDER BY name",
    [S_SESSION_PRUNE] = "DELETE FROM sessions WHERE expires_at <= $1",
    /* a name's sessions but its newest $2 */
    [S_SESSION_TRIM] = "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions "
                       "WHERE name = $1 ORDER BY expires_at DESC, id_hash OFFSET $2)",
    [S_SESSION_COUNT] = "SELECT count(*) FROM sessions",
    [S_SESSION_INSERT] = "INSERT INTO sessions (id_hash, token_hash, csrf, role, name, "
                         "expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    [S_SESSION_FIND] = "SELECT token_hash, csrf, role, name, expires_at FROM sessions "
                       "WHERE id_hash = $1 AND expires_at > $2",
    [S_SESSION_DELETE] = "DELETE FROM sessions WHERE id_hash = $1",
    [S_META_GET] = "SELECT v FROM meta WHERE k = $1",
    [S_META_SET] = "INSERT INTO meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = "
                   "excluded.v",
    /* a row back: the lease is the holder's (new, renewed or taken over); the row lock
       serialises two servers racing for it, the WHERE is checked on the newest row */
    [S_LEADER_TAKE] = "INSERT INTO leader (name, holder, expires_at) VALUES ($1, $2, $3) "
                      "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                      "expires_at = excluded.expires_at "
                      "WHERE leader.holder = excluded.holder OR leader.expires_at <= $4 "
                      "RETURNING holder",
    [S_AGENT_SEEN] = "UPDATE agents SET last_seen = $2 WHERE id = $1 AND last_seen < $2",
    [S_LEADER_RELEASE] = "UPDATE leader SET expires_at = 0 WHERE name = $1 AND holder = $2",
    /* Back: whether the job's events go to a webhook (no second read for it). A job updated
       to queued ($13: JOB_QUEUED) has its row in ready (its run_after as now written), one
       updated to any other state has none. */
    [S_JOB_UPDATE] = "WITH u AS (UPDATE jobs SET state = $1, agent = $2, attempt = $3, "
                     "started_at = $4, finished_at = $5, run_after = $6, progress = $7, "
                     "result = $8, attempts = $9 WHERE id = $10 AND attempt = $11 "
                     "AND ((1 << state) & $12::integer) != 0 "
                     "RETURNING id, state, queue, priority, run_after, notify_url, notify_all), "
                     "d AS (DELETE FROM ready USING u WHERE ready.job = u.id AND u.state <> $13), "
                     "i AS (INSERT INTO ready (job, queue, priority, run_after) "
                     "SELECT id, queue, priority, run_after FROM u WHERE state = $13 "
                     "ON CONFLICT (job) DO UPDATE SET run_after = excluded.run_after), "
                     EVENT_OF("u", "14", "15", "16", "17", "18", "19", "20", "21", "22")
                     " SELECT notify_url, notify_all FROM u",
    /* plain jobs (no key, no webhook) of a batch in one statement: JOB_COLUMNS but idem_key,
       then each one's event seq and data; their ready rows ($25: JOB_QUEUED) and events
       ($26: at) too; the ids written back */
    [S_JOB_INSERT_SET] =
        "WITH v AS (SELECT * FROM unnest($1::text[], $2::integer[], $3::text[], $4::text[], "
        "$5::text[], $6::text[], $7::integer[], $8::integer[], $9::integer[], $10::integer[], "
        "$11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::text[], $16::text[], "
        "$17::text[], $18::text[], $19::text[], $20::text[], $21::bigint[], $22::text[], "
        "$23::bigint[], $24::text[]) AS v(id, state, queue, service, name, agent, priority, "
        "slots, attempt, max_attempts, created_at, started_at, finished_at, run_after, labels, "
        "spec, progress, result, attempts, owner, retention_ms, tenant, seq, data)), "
        "j AS (INSERT INTO jobs (id, state, queue, service, name, agent, priority, slots, "
        "attempt, max_attempts, created_at, started_at, finished_at, run_after, labels, spec, "
        "progress, result, attempts, owner, retention_ms, tenant) SELECT id, state, queue, "
        "service, name, agent, priority, slots, attempt, max_attempts, created_at, started_at, "
        "finished_at, run_after, labels, spec, progress, result, attempts, owner, retention_ms, "
        "tenant FROM v ON CONFLICT DO NOTHING RETURNING id, state, queue, priority, run_after), "
        "r AS (INSERT INTO ready (job, queue, priority, run_after) "
        "SELECT id, queue, priority, run_after FROM j WHERE state = $25), "
        "e AS (INSERT INTO events (seq, at, kind, subject, queue, state, attempt, agent, owner, "
        "data) SELECT v.seq, $26, 0, v.id, v.queue, v.state, v.attempt, v.agent, v.owner, "
        "v.data FROM v JOIN j ON j.id = v.id) SELECT id FROM j",
    /* a lease's candidates still queued (in ready), skipping rows another transaction holds
       (in ready or in jobs); the spec as stored text, and only what the lease's step and its
       event need */
    [S_JOB_LEASE_LOCK] = "SELECT j.id, j.attempt, j.queue, j.owner, j.spec, j.notify_url, "
                         "j.notify_all FROM ready r JOIN jobs j ON j.id = r.job "
                         "WHERE r.job = ANY($1::text[]) AND j.state = $2 "
                         "FOR UPDATE OF r, j SKIP LOCKED",
    /* the leases of one call in one statement: one row of arrays per job; their rows leave
       ready (locked by S_JOB_LEASE_LOCK); their events ($10: at, then arrays) written by it
       too */
    [S_JOB_LEASE] = "WITH u AS (UPDATE jobs AS j SET state = v.state, agent = v.agent, "
                    "attempt = v.attempt, started_at = v.started_at, "
                    "finished_at = v.finished_at, progress = v.progress "
                    "FROM unnest($1::text[], $2::integer[], $3::text[], $4::integer[], "
                    "$5::bigint[], $6::bigint[], $7::text[], $8::integer[]) "
                    "AS v(id, state, agent, attempt, started_at, finished_at, progress, was) "
                    "WHERE j.id = v.id AND j.attempt = v.was AND j.state = $9 RETURNING j.id), "
                    "d AS (DELETE FROM ready USING u WHERE ready.job = u.id), "
                    "e AS (INSERT INTO events (seq, at, kind, subject, queue, state, attempt, "
                    "agent, owner, data) SELECT v.seq, $10, 0, v.subject, v.queue, v.state, "
                    "v.attempt, v.agent, v.owner, v.data FROM unnest($11::bigint[], "
                    "$12::text[], $13::text[], $14::integer[], $15::integer[], $16::text[], "
                    "$17::text[], $18::text[]) AS v(seq, subject, queue, state, attempt, "
                    "agent, owner, data)) SELECT id FROM u",
    [S_JOB_EACH] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ANY($1::text[])",
    [S_JOB_SCAN] = "SELECT " JOB_COLUMNS " FROM jobs WHERE state = ANY($1::integer[]) ORDER BY id",
    /* unfinished states only: jobs_live finds them among any number of finished ones */
    [S_JOB_SCAN_LIVE] = "SELECT " JOB_COLUMNS " FROM jobs WHERE end_state IS NULL "
                        "AND state = ANY($1::integer[]) ORDER BY id",
    [S_LOG_APPEND] = "INSERT INTO job_logs (job, attempt, stream, off, data) "
                     "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    /* The chunks that hold bytes of [$4, $4 + $5): no more than what was asked is fetched. */
    /* store_job_prefetch: the rows locked (after event_head, as pg_job_lock does), with their
       workflow; then the stdout heads of the attempts asked for */
    [S_JOB_PREFETCH] = "SELECT " JOB_COLUMNS ", (SELECT workflow FROM workflow_jobs w "
                       "WHERE w.job = jobs.id) FROM jobs WHERE id = ANY($1::text[]) "
                       "ORDER BY id FOR UPDATE OF jobs",
    /* the writes of jobs read by S_JOB_PREFETCH and stepped since, in one statement (as
       S_JOB_UPDATE's each: the row, its ready row, its event; $17: JOB_QUEUED); only a job
       that may have been queued (its fence's states) may have a ready row to delete: the
       others (a report's: leased or running) are not looked up there */
    [S_JOB_UPDATE_SET] =
        "WITH v AS (SELECT * FROM unnest($1::text[], $2::integer[], $3::text[], $4::integer[], "
        "$5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[], "
        "$11::integer[], $12::integer[], $13::bigint[], $14::bigint[], $15::text[], "
        "$16::text[], $18::text[]) AS v(id, state, agent, attempt, started_at, finished_at, "
        "run_after, progress, result, attempts, was, states, seq, at, queue, owner, data)), "
        "u AS (UPDATE jobs AS j SET state = v.state, agent = v.agent, attempt = v.attempt, "
        "started_at = v.started_at, finished_at = v.finished_at, run_after = v.run_after, "
        "progress = v.progress, result = v.result, attempts = v.attempts FROM v "
        "WHERE j.id = v.id AND j.attempt = v.was AND ((1 << j.state) & v.states) != 0 "
        "RETURNING j.id, j.state, j.queue, j.priority, j.run_after, j.notify_url, j.notify_all, "
        "v.states), "
        "d AS (DELETE FROM ready USING u WHERE ready.job = u.id AND u.state <> $17 "
        "AND (u.states & (1 << $17)) <> 0), "
        "i AS (INSERT INTO ready (job, queue, priority, run_after) "
        "SELECT id, queue, priority, run_after FROM u WHERE state = $17 "
        "ON CONFLICT (job) DO UPDATE SET run_after = excluded.run_after), "
        "e AS (INSERT INTO events (seq, at, kind, subject, queue, state, attempt, agent, owner, "
        "data) SELECT v.seq, v.at, 0, v.id, v.queue, v.state, v.attempt, v.agent, v.owner, "
        "v.data FROM v JOIN u ON u.id = v.id) SELECT id, notify_url, notify_all FROM u",
    [S_LOG_HEADS] = "SELECT l.job, l.attempt, l.off, l.data FROM job_logs l "
                    "JOIN unnest($1::text[], $2::integer[]) AS h(job, attempt) "
                    "ON l.job = h.job AND l.attempt = h.attempt WHERE l.stream = $3 "
                    "AND l.off + length(l.data) > 0 AND l.off < $4 "
                    "ORDER BY l.job, l.attempt, l.off",
    [S_LOG_READ] = "SELECT off, data FROM job_logs WHERE job = $1 AND attempt = $2 AND stream = $3 "
                   "AND off + length(data) > $4 AND off < $4::bigint + $5::bigint ORDER BY off",
    /* A name registered by another token is left alone: no row comes back. */
    [S_AGENT_UPSERT] = "INSERT INTO agents (id, name, labels, queues, slots, version, state, "
                       "last_seen, registered_at, owner, instance, runtimes, limits) "
                       "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
                       "ON CONFLICT (name) DO UPDATE SET labels = excluded.labels, "
                       "queues = excluded.queues, slots = excluded.slots, "
                       "version = excluded.version, state = excluded.state, "
                       "last_seen = excluded.last_seen, owner = excluded.owner, "
                       "instance = excluded.instance, runtimes = excluded.runtimes, "
                       "limits = excluded.limits "
                       "WHERE agents.owner IS NULL OR agents.owner = excluded.owner RETURNING id",
    [S_AGENT_STATE] = "UPDATE agents SET state = $1, last_seen = $2 WHERE id = $3",
    [S_AGENT_FORGET] = "WITH d AS (DELETE FROM agents WHERE id = $3 AND state IN ($6, $7) "
                       "AND last_seen < $4 RETURNING id, name) "
                       "INSERT INTO events (seq, at, kind, subject, state, agent) "
                       "SELECT $1, $2, 1, id, $5, name FROM d",
    [S_AGENT_RUNTIMES] = "UPDATE agents SET runtimes = $2 WHERE id = $1",
    [S_AGENT_SCAN] = "SELECT id, name, labels, queues, slots, version, state, last_seen, "
                     "registered_at, owner, instance, runtimes, limits FROM agents ORDER BY name",
    [S_EVENT_AGENT] = "INSERT INTO events (seq, at, kind, subject, state, agent) "
                      "SELECT $1, $2, 1, id, state, name FROM agents WHERE id = $3",
    [S_EVENT_ADD] = "INSERT INTO events (seq, at, kind, subject, queue, state, owner, data) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    [S_QUEUE_PAUSE] = "INSERT INTO queue_pauses (queue, at, paused_by) VALUES ($1, $2, $3) "
                      "ON CONFLICT (queue) DO NOTHING RETURNING queue",
    [S_QUEUE_RESUME] = "DELETE FROM queue_pauses WHERE queue = $1 RETURNING queue",
    [S_QUEUE_PAUSED] = "SELECT queue, at FROM queue_pauses ORDER BY queue",
    /* a row only when the limit is new or other */
    [S_QUEUE_LIMIT] = "INSERT INTO queue_limits (queue, max_running, at, set_by) "
                      "VALUES ($1, $2, $3, $4) ON CONFLICT (queue) DO UPDATE SET "
                      "max_running = excluded.max_running, at = excluded.at, "
                      "set_by = excluded.set_by "
                      "WHERE queue_limits.max_running <> excluded.max_running RETURNING queue",
    [S_QUEUE_UNLIMIT] = "DELETE FROM queue_limits WHERE queue = $1 RETURNING queue",
    [S_QUEUE_LIMITS] = "SELECT queue, max_running FROM queue_limits ORDER BY queue",
    [S_EVENT_WINDOW] = "SELECT (SELECT min(seq) FROM events), "
                       "greatest((SELECT seq FROM event_head WHERE id = 1), "
                       "(SELECT max(seq) FROM events)), "
                       "(SELECT v::bigint FROM meta WHERE k = 'events_pruned')",
    /* events a delivery still needs are kept; event_head.seq first takes the newest seq
       (events_lock), which the delete may take away */
    [S_EVENT_PRUNE] = "WITH h AS (UPDATE event_head SET seq = greatest(seq, "
                      "(SELECT max(seq) FROM events)) WHERE id = 1), "
                      "d AS (DELETE FROM events e WHERE (e.at < $1 OR e.seq <= "
                      "(SELECT max(seq) FROM events) - $2::bigint) AND NOT EXISTS "
                      "(SELECT 1 FROM webhook_outbox o WHERE o.event_seq = e.seq) RETURNING e.seq) "
                      /* the newest deleted: those kept older than it (a delivery's) are not
                         part of the window (store_event_window) */
                      "INSERT INTO meta (k, v) SELECT 'events_pruned', max(seq)::text FROM d "
                      "HAVING max(seq) IS NOT NULL ON CONFLICT (k) DO UPDATE SET v = "
                      "greatest(meta.v::bigint, excluded.v::bigint)::text",
    [S_WEBHOOK_ADD] = "INSERT INTO webhook_outbox (event_seq, url, created_at, next_at) "
                      "VALUES ($1, $2, $3, $4)",
    [S_WEBHOOK_DUE] = "SELECT o.id, o.url, o.tries, o.created_at, e.seq, e.at, e.kind, e.subject, "
                      "e.queue, e.state, e.attempt, e.agent, e.data FROM webhook_outbox o "
                      "JOIN events e ON e.seq = o.event_seq WHERE o.next_at <= $1 "
                      "ORDER BY o.next_at, o.id LIMIT $2",
    [S_WEBHOOK_DELETE] = "DELETE FROM webhook_outbox WHERE id = $1",
    [S_WEBHOOK_RETRY] = "UPDATE webhook_outbox SET tries = $1, next_at = $2, last_error = $3 "
                        "WHERE id = $4",
    [S_WEBHOOK_COUNT] = "SELECT count(*) FROM webhook_outbox",
    /* each half reads its own partial index (schema 12), the longest ended first */
    [S_JOB_EXPIRED] = "(SELECT id FROM jobs WHERE end_state IS NOT NULL AND retention_ms IS NULL "
                      "AND finished_at <= $1::bigint - $2::bigint ORDER BY finished_at LIMIT $3) "
                      "UNION ALL (SELECT id FROM jobs WHERE end_state IS NOT NULL "
                      "AND retention_ms IS NOT NULL AND finished_at + retention_ms <= $1 "
                      "ORDER BY finished_at + retention_ms LIMIT $3) LIMIT $3",
    /* store_job_held: a workflow's nodes through workflow_jobs_workflow; a task's array through
       array_tasks_job, its unfinished tasks through jobs_live (the ids of the arrays made in
       its millisecond: $2..$3) */
    [S_JOB_HELD] = "SELECT (EXISTS (SELECT 1 FROM workflow_jobs w JOIN workflow_jobs o "
                   "ON o.workflow = w.workflow JOIN jobs j ON j.id = o.job "
                   "WHERE w.job = $1 AND j.end_state IS NULL) "
                   "OR EXISTS (SELECT 1 FROM array_tasks t JOIN arrays a ON a.id = t.array_id "
                   "WHERE t.job = $1 AND (a.open > 0 OR EXISTS (SELECT 1 FROM jobs j "
                   "WHERE j.end_state IS NULL AND j.id >= $2 AND j.id < $3) "
                   "OR EXISTS (SELECT 1 FROM workflow_jobs w JOIN workflow_jobs o "
                   "ON o.workflow = w.workflow JOIN jobs j ON j.id = o.job "
                   "WHERE w.job = t.array_id AND j.end_state IS NULL))))::int",
    [S_JOB_DEFER] = "UPDATE jobs SET retention_ms = $2::bigint - finished_at "
                    "WHERE id = $1 AND end_state IS NOT NULL",
    /* what job_counts needs of the job deleted */
    [S_JOB_DELETE] = "DELETE FROM jobs WHERE id = $1 AND state >= 4 RETURNING state, queue, owner",
    [S_JOB_STATE_LOCK] = "SELECT state FROM jobs WHERE id = $1 FOR UPDATE",
    [S_JOB_DELETE_LOGS] = "DELETE FROM job_logs WHERE job = $1",
    [S_TOKEN_TENANT] = "SELECT coalesce(tenant, name) FROM tokens WHERE name = $1",
    [S_TOKEN_SET_TENANT] = "UPDATE tokens SET tenant = $1 WHERE name = $2",
    [S_TENANT_PUT] = "INSERT INTO tenants (name, max_running, max_queued, weight) "
                     "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET "
                     "max_running = excluded.max_running, max_queued = excluded.max_queued, "
                     "weight = excluded.weight",
    [S_TENANT_SCAN] = "SELECT name, max_running, max_queued, weight FROM tenants ORDER BY name",
    /* blocked or queued (jobs_tenant_live) */
    [S_TENANT_WAITING] = "SELECT count(*) FROM jobs WHERE tenant = $1 AND end_state IS NULL "
                         "AND state < 2",
};

/* A job read by store_job_prefetch, until the op's savepoint ends or another write. */
struct pf_job {
    char id[UUID_STR_LEN];
    struct job j;       /* its locked row but labels and spec; taken by the first pg_job_lock
                           (then `used`) */
    char *labels, *spec; /* those as stored, parsed only for a pg_job_lock that wants them */
    bool used;
    bool in_wf;         /* in a workflow: wf */
    char wf[UUID_STR_LEN];
    int head_attempt;   /* its stdout head read for this attempt; 0 none, -1 not kept */
    bool held;          /* taken by pg_job_lock, and nothing written since: its write can wait */
    int held_attempt, held_state;
    struct buf head;
    int64_t head_pos;   /* store_log_take's state while reading it */
    size_t head_left;
    bool head_stop;
};

/* A job's write left for pf_flush: what its webhook needs, and the statement's row. */
struct pw_row {
    char id[UUID_STR_LEN];
    int state;
    int64_t seq, at;
    char *cols[17]; /* S_JOB_UPDATE_SET's $1..$16 and $18, as text (NULL: NULL) */
};

struct store_pg {
    struct store base;
    PGconn *conn;
    char *shown; /* the URI without its password, for messages */
    bool prepared[S_COUNT];
    bool claimed;      /* store_claim was called: the session must hold CLAIM_LOCK ... */
    bool claim_held;   /* ... and this one does */
    int depth;         /* 0: no transaction, 1: in one, 2: and in its savepoint */
    bool ev_locked;    /* this transaction holds event_head's row ... */
    int64_t ev_seq;    /* ... and gave its last event this seq */
    bool sp_open;      /* a savepoint is open in PostgreSQL (released or not: pg_savepoint) */
    bool sp_pending;   /* the op's savepoint is to be sent with its first statement */
    bool begin_pending; /* so is the transaction's BEGIN */
    bool sp_ev_locked; /* the same when the savepoint was made */
    int64_t sp_ev_seq;
    bool notify;       /* store_opts.notify: NOTIFY in a commit that wrote events */
    int64_t ev_first;  /* the transaction's events: seqs ev_first + 1 .. ev_seq */
    int64_t tx_first, tx_last; /* those of the last committed transaction (store_tx_events) */
    bool listening;    /* store_listen was called: LISTEN again after a reconnect */
    struct pf_job *pf; /* store_job_prefetch's jobs, sorted by id (strcmp) */
    size_t npf;
    size_t pf_head_max;
    struct pw_row *pw; /* the jobs' writes waiting (pf_flush), in their events' order */
    size_t npw, cappw;
    struct count_deltas counts; /* job_counts' changes in the open transaction (store_int.h) */
};


static struct store_pg *pg(struct store *st)
{
    if (st->ops != &store_pg_ops)
        abort();
    return (struct store_pg *)st;
}

/* ---- statements and their parameters ---- */

#define PARAMS_MAX 40

/* Parameters in text form (format 0) but for binary ones (format 1). */
struct params {
    int n;
    const char *v[PARAMS_MAX];
    int len[PARAMS_MAX];
    int fmt[PARAMS_MAX];
    char num[PARAMS_MAX][24];
    char *owned[PARAMS_MAX];
};

static void p_text(struct params *p, const char *v)
{
    if (p->n >= PARAMS_MAX)
        abort();
    p->v[p->n] = v;
    p->len[p->n] = 0;
    p->fmt[p->n] = 0;
    p->n++;
}

static void p_int(struct params *p, int64_t v)
{
    if (p->n >= PARAMS_MAX)
        abort();
    snprintf(p->num[p->n], sizeof(p->num[p->n]), "%" PRId64, v);
    p_text(p, p->num[p->n]);
}

/* A time: 0 is NULL. */
static void p_time(struct params *p, int64_t v)
{
    if (v)
        p_int(p, v);
    else
        p_text(p, NULL);
}

static void p_bool(struct params *p, bool v)
{
    p_text(p, v ? "t" : "f");
}

static void p_json(struct params *p, const json_t *v)
{
    char *s = job_json_dump(v);
    p->owned[p->n] = s;
    p_text(p, s);
}

static void p_spec(struct params *p, const json_t *spec)
{
    char *s = job_spec_dump(spec);
    p->owned[p->n] = s;
    p_text(p, s);
}

static void p_bin(struct params *p, const void *data, size_t len)
{
    p_text(p, data);
    p->len[p->n - 1] = (int)len;
    p->fmt[p->n - 1] = 1;
}

static void params_release(struct params *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->owned[i]);
}

/* An array literal ({"a",NULL,"b"}) built one element at a time: a parameter. */
struct arr {
    struct buf b;
    int n;
};

static void arr_text(struct arr *a, const char *v)
{
    buf_adds(&a->b, a->n++ ? "," : "{");
    if (!v) {
        buf_adds(&a->b, "NULL");
        return;
    }
    buf_addc(&a->b, '"');
    for (const char *c = v; *c; c++) {
        if (*c == '"' || *c == '\\')
            buf_addc(&a->b, '\\');
        buf_addc(&a->b, *c);
    }
    buf_addc(&a->b, '"');
}

static void arr_int(struct arr *a, int64_t v)
{
    buf_adds(&a->b, a->n++ ? "," : "{");
    buf_addf(&a->b, "%" PRId64, v);
}

/* A time: 0 is NULL. */
static void arr_time(struct arr *a, int64_t v)
{
    if (v) {
        arr_int(a, v);
    } else {
        buf_adds(&a->b, a->n++ ? "," : "{");
        buf_adds(&a->b, "NULL");
    }
}

static void arr_json(struct arr *a, const json_t *v)
{
    char *t = job_json_dump(v);
    arr_text(a, t);
    free(t);
}

/* Hands the literal to p (which frees it). */
static void p_arr(struct params *p, struct arr *a)
{
    if (!a->n)
        buf_adds(&a->b, "{");
    buf_adds(&a->b, "}");
    char *t = buf_detach(&a->b);
    p->owned[p->n] = t;
    p_text(p, t);
    a->n = 0;
}

/* A set of states (1 << state each) as an integer[] parameter, for "state = ANY(...)". */
static void p_states(struct params *p, unsigned states)
{
    struct arr a = {BUF_INIT, 0};
    for (int k = 0; k < JOB_NSTATES; k++)
        if (states & (1u << k))
            arr_int(&a, k);
    p_arr(p, &a);
}

/* The error of a failed call as an ERR_* code, with its message. */
static int db_err(struct store_pg *s, const PGresult *r, struct err *e, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorMessage(r) : "";
    if (!msg || !*msg)
        msg = PQerrorMessage(s->conn);
    int code = ERR_INTERNAL;
    if (PQstatus(s->conn) == CONNECTION_BAD)
        code = ERR_UNAVAILABLE;
    else if (!state)
        code = ERR_INTERNAL;
    else if (!strcmp(state, "23505")) /* unique_violation */
        code = ERR_CONFLICT;
    else if (!strcmp(state, "53100")) /* disk_full */
        code = ERR_NOSPACE;
    /* connection exceptions, insufficient resources, shutting down, serialization or
       deadlock, lock not available: worth trying again */
    else if (!strncmp(state, "08", 2) || !strncmp(state, "53", 2) || !strncmp(state, "57P", 3) ||
             !strncmp(state, "40", 2) || !strcmp(state, "55P03"))
        code = ERR_UNAVAILABLE;
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    return err_set(e, code, "store '%s': %s: %.*s", s->shown, what,
                   (int)(n < 400 ? n : 400), msg);
}

/*
 * Takes CLAIM_LOCK for the session: `busy` (the code) when another session
 * holds it.
 */
static int claim_take(struct store_pg *s, int busy, struct err *e)
{
    PGresult *r = PQexec(s->conn, "SELECT pg_try_advisory_lock(" CLAIM_LOCK ")");
    int rc;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = db_err(s, r, e, "claiming the database");
    else if (strcmp(PQgetvalue(r, 0, 0), "t"))
        rc = err_set(e, busy,
                     "store '%s' is in use by another drover server (one server per "
                     "PostgreSQL database for now)",
                     s->shown);
    else
        rc = 0;
    PQclear(r);
    return rc;
}

/* Sets up a (re)made connection. */
static int session_init(struct store_pg *s, struct err *e)
{
    memset(s->prepared, 0, sizeof(s->prepared));
    if (PQsetClientEncoding(s->conn, "UTF8"))
        return db_err(s, NULL, e, "setting the client encoding");
    /* NOTICEs (CREATE ... IF NOT EXISTS) would go to stderr */
    PGresult *r = PQexec(s->conn, "SET client_min_messages = warning");
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : db_err(s, r, e, "setting up the session");
    PQclear(r);
    s->claim_held = false; /* a new session holds no advisory lock */
    return rc;
}

static void notice_ignore(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/*
 * Outside a transaction, a lost connection is made again (and a claim taken
 * again: ERR_UNAVAILABLE while another server holds it).
 */
static int conn_ready(struct store_pg *s, struct err *e)
{
    int rc;
    if (PQstatus(s->conn) != CONNECTION_OK) {
        if (s->depth)
            return err_set(e, ERR_UNAVAILABLE, "store '%s': the connection was lost", s->shown);
        PQreset(s->conn);
        if (PQstatus(s->conn) != CONNECTION_OK)
            return db_err(s, NULL, e, "connecting again");
        if ((rc = session_init(s, e)))
            return rc;
    }
    if (s->claimed && !s->claim_held) {
        if ((rc = claim_take(s, ERR_UNAVAILABLE, e)))
            return rc;
        s->claim_held = true;
    }
    return 0;
}

/*
 * Runs statement `id` with p (released here). Its rows, when `out` is not
 * NULL, are the caller's to PQclear().
 */
static void pf_clear(struct store_pg *s)
{
    for (size_t i = 0; i < s->npf; i++) {
        job_release(&s->pf[i].j);
        free(s->pf[i].labels);
        free(s->pf[i].spec);
        buf_release(&s->pf[i].head);
    }
    free(s->pf);
    s->pf = NULL;
    s->npf = 0;
}

static int pf_cmp(const void *a, const void *b)
{
    return strcmp(((const struct pf_job *)a)->id, ((const struct pf_job *)b)->id);
}

static struct pf_job *pf_find(struct store_pg *s, const char *id)
{
    if (!s->npf || strlen(id) >= UUID_STR_LEN)
        return NULL;
    struct pf_job key;
    memcpy(key.id, id, strlen(id) + 1);
    return bsearch(&key, s->pf, s->npf, sizeof(*s->pf), pf_cmp);
}

static void pw_discard(struct store_pg *s)
{
    for (size_t i = 0; i < s->npw; i++)
        for (size_t c = 0; c < ARRAY_SIZE(s->pw[i].cols); c++)
            free(s->pw[i].cols[c]);
    s->npw = 0;
}

static int run(struct store_pg *s, enum stmt_id id, struct params *p, PGresult **out,
               struct err *e, const char *what);
static int webhook_add(struct store_pg *s, int64_t seq, const char *url, int64_t now,
                       struct err *e);
static void arr_text(struct arr *a, const char *v);

/*
 * Writes the jobs' writes left waiting by job_update_tx, in one statement.
 * Called before any other statement (run), and where an op ends (savepoint
 * release, commit): what the transaction reads or commits has them.
 */
static int pf_flush(struct store_pg *s, struct err *e)
{
    size_t n = s->npw;
    if (!n)
        return 0;
    s->npw = 0; /* the statements below are run() too */
    struct arr a[17];
    for (size_t c = 0; c < 17; c++) {
        a[c] = (struct arr){BUF_INIT, 0};
        for (size_t i = 0; i < n; i++)
            arr_text(&a[c], s->pw[i].cols[c]);
    }
    struct params p = {0};
    for (size_t c = 0; c < 16; c++)
        p_arr(&p, &a[c]);
    p_int(&p, JOB_QUEUED);
    p_arr(&p, &a[16]);
    PGresult *r = NULL;
    int rc = run(s, S_JOB_UPDATE_SET, &p, &r, e, "updating jobs");
    for (size_t c = 0; c < 17; c++)
        buf_release(&a[c].b);
    /* every row is locked by this transaction and its fence was checked on it: all match */
    if (!rc && PQntuples(r) != (int)n)
        rc = err_set(e, ERR_INTERNAL, "store '%s': updating jobs: %d of %zu written", s->shown,
                     PQntuples(r), n);
    for (int row = 0; !rc && row < PQntuples(r); row++) {
        if (PQgetisnull(r, row, 1))
            continue; /* no webhook */
        const char *url = PQgetvalue(r, row, 1);
        const struct pw_row *w = NULL;
        for (size_t i = 0; i < n && !w; i++)
            if (!strcmp(s->pw[i].id, PQgetvalue(r, row, 0)))
                w = &s->pw[i];
        if (w && store_webhook_wants(url, !strcmp(PQgetvalue(r, row, 2), "t"), w->state))
            rc = webhook_add(s, w->seq, url, w->at, e);
    }
    PQclear(r);
    s->npw = n;
    pw_discard(s);
    return rc;
}

/*
 * What a statement leaves of store_job_prefetch's reads: the reads, the
 * lock of event_head, a job's fenced write (which drops that job's row:
 * job_update_tx) and its webhook leave them; any other write may change a
 * job, its output or its workflow: all are dropped.
 */
static bool pf_keeps(enum stmt_id id)
{
    switch (id) {
    case S_JOB_PREFETCH: case S_LOG_HEADS: case S_JOB_LOCK: case S_JOB_LOCK_RUN:
    case S_JOB_GET: case S_JOB_GET_RUN: case S_LOG_READ: case S_WF_OF:
    case S_JOB_UPDATE: case S_WEBHOOK_ADD:
    case S_JOB_UPDATE_SET:
        return true;
    default:
        return false;
    }
}

/* The pending BEGIN and savepoint (pg_begin, pg_savepoint) as SQL, appended to b. */
static void pending_sql(const struct store_pg *s, struct buf *b)
{
    if (s->begin_pending)
        buf_adds(b, "BEGIN; ");
    if (s->sp_pending)
        buf_adds(b, s->sp_open ? "RELEASE SAVEPOINT op; SAVEPOINT op; " : "SAVEPOINT op; ");
}

/* What pending_sql gave was sent ahead of a statement. If the SAVEPOINT failed, the
   transaction is aborted: the op's rollback fails, and so does the batch's COMMIT. */
static void pending_sent(struct store_pg *s)
{
    s->begin_pending = false;
    if (s->sp_pending)
        s->sp_open = true;
    s->sp_pending = false;
}

/* Sends what is pending on its own (before a statement that cannot carry it). */
static int pending_send(struct store_pg *s, struct err *e)
{
    if (!s->sp_pending && !s->begin_pending)
        return 0;
    struct buf q = BUF_INIT;
    pending_sql(s, &q);
    PGresult *r = PQexec(s->conn, q.data);
    buf_release(&q);
    bool sp = s->sp_pending;
    pending_sent(s);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : db_err(s, r, e, "savepoint");
    PQclear(r);
    if (sp)
        s->sp_open = !rc;
    return rc;
}

/* The result of one query of a pipeline, and the NULL that ends it. */
static PGresult *pipeline_result(struct store_pg *s)
{
    PGresult *r = PQgetResult(s->conn);
    PGresult *end = r ? PQgetResult(s->conn) : NULL;
    while (end) { /* not expected: one result per query */
        PQclear(end);
        end = PQgetResult(s->conn);
    }
    return r;
}

/*
 * Ends a connection whose protocol state is not known (a pipeline's send failed with the
 * connection up, libpq out of memory): it reads as lost from now on (PQstatus), so the open
 * transaction fails with it and the next call outside a transaction connects again
 * (conn_ready; a new connection is out of pipeline mode).
 */
static void conn_drop(struct store_pg *s)
{
    int fd = PQsocket(s->conn);
    if (PQstatus(s->conn) != CONNECTION_OK || fd < 0)
        return;
    shutdown(fd, SHUT_RDWR);
    /* reads what was already received, then the end: CONNECTION_BAD */
    for (int i = 0; i < 64 && PQstatus(s->conn) == CONNECTION_OK; i++)
        if (!PQconsumeInput(s->conn)) break;
}

/* One prepared statement of a pipeline (run_pipeline). */
struct pl {
    enum stmt_id id;
    struct params *p; /* its parameters (NULL: none), the caller's */
    PGresult *r;      /* out: its rows, the caller's to PQclear(); NULL after an error */
};

/* What a pipeline sent, in order: its results come back in this order. */
enum pl_kind { PL_BEGIN, PL_RELEASE, PL_SAVEPOINT, PL_LOCK, PL_HEAD, PL_PREPARE, PL_EXEC };

static const char *const pl_sql[] = {
    [PL_BEGIN] = "BEGIN",
    [PL_RELEASE] = "RELEASE SAVEPOINT op",
    [PL_SAVEPOINT] = "SAVEPOINT op",
    /* events_lock's two statements: the newest seq read once the lock is held (each
       statement of a pipeline has its own snapshot) */
    [PL_LOCK] = "SELECT 1 FROM event_head WHERE id = 1 FOR UPDATE",
    [PL_HEAD] = "SELECT (SELECT seq FROM event_head WHERE id = 1), (SELECT max(seq) FROM events)",
};

/*
 * In one round trip, through libpq's pipeline mode: what is pending (the batch's BEGIN, the
 * op's RELEASE and SAVEPOINT: pg_begin, pg_savepoint), event_head's lock and newest seq when
 * `lock` (events_lock's), then prepared statements st[0..n) in order, each prepared first
 * when it is not yet. An op of the group commit thus costs the round trips of its
 * statements, and its savepoint and the batch's BEGIN none of their own. An error aborts
 * what follows it in the pipeline: the first is the one reported, and no st[i].r is kept.
 */
static int run_pipeline(struct store_pg *s, bool lock, struct pl *st, size_t n, struct err *e,
                        const char *what)
{
    for (size_t i = 0; i < n; i++)
        st[i].r = NULL;
    struct pl_sent {
        enum pl_kind kind;
        size_t i; /* PL_PREPARE, PL_EXEC: the statement */
    } sent[8 + 2 * 4];
    size_t ns = 0;
    if (n > 4)
        return err_set(e, ERR_INTERNAL, "store '%s': %s: %zu statements in one pipeline",
                       s->shown, what, n);
    if (!PQenterPipelineMode(s->conn))
        return err_set(e, ERR_UNAVAILABLE, "store '%s': %s: %s", s->shown, what,
                       PQerrorMessage(s->conn));
    bool ok = true;
    if (s->begin_pending)
        sent[ns++].kind = PL_BEGIN;
    if (s->sp_pending && s->sp_open)
        sent[ns++].kind = PL_RELEASE;
    if (s->sp_pending)
        sent[ns++].kind = PL_SAVEPOINT;
    if (lock) {
        sent[ns++].kind = PL_LOCK;
        sent[ns++].kind = PL_HEAD;
    }
    for (size_t q = 0; q < ns && ok; q++)
        ok = PQsendQueryParams(s->conn, pl_sql[sent[q].kind], 0, NULL, NULL, NULL, NULL, 0);
    char names[4][16];
    for (size_t i = 0; i < n && ok; i++) {
        const struct params *p = st[i].p;
        snprintf(names[i], sizeof(names[i]), "d%d", (int)st[i].id);
        if (!s->prepared[st[i].id]) {
            sent[ns++] = (struct pl_sent){PL_PREPARE, i};
            ok = PQsendPrepare(s->conn, names[i], stmt_sql[st[i].id], 0, NULL);
        }
        sent[ns++] = (struct pl_sent){PL_EXEC, i};
        ok = ok && PQsendQueryPrepared(s->conn, names[i], p ? p->n : 0, p ? p->v : NULL,
                                       p ? p->len : NULL, p ? p->fmt : NULL, 0);
    }
    ok = ok && PQpipelineSync(s->conn);
    bool sp = s->sp_pending;
    s->sp_pending = s->begin_pending = false;
    int rc = 0;
    if (!ok) {
        rc = err_set(e, ERR_UNAVAILABLE, "store '%s': %s: %s", s->shown, what,
                     PQerrorMessage(s->conn));
        conn_drop(s); /* what was sent is not known: nothing more goes on this connection */
    } else {
        for (size_t q = 0; q < ns; q++) {
            PGresult *r = pipeline_result(s);
            ExecStatusType status = PQresultStatus(r);
            bool good = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
            if (!good && !rc)
                rc = db_err(s, r, e,
                            sent[q].kind <= PL_SAVEPOINT ? "savepoint"
                            : sent[q].kind <= PL_HEAD    ? "appending an event"
                                                         : what);
            if (good && sent[q].kind == PL_SAVEPOINT) {
                s->sp_open = true;
            } else if (good && sent[q].kind == PL_HEAD) {
                if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
                    if (!rc)
                        rc = err_set(e, ERR_INTERNAL, "store '%s': event_head has no row",
                                     s->shown);
                } else {
                    int64_t head = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
                    int64_t max = strtoll(PQgetvalue(r, 0, 1), NULL, 10); /* NULL: 0 */
                    s->ev_seq = s->ev_first = head > max ? head : max;
                    s->ev_locked = true;
                }
            } else if (good && sent[q].kind == PL_PREPARE) {
                s->prepared[st[sent[q].i].id] = true;
            } else if (good && sent[q].kind == PL_EXEC) {
                st[sent[q].i].r = r;
                continue;
            }
            PQclear(r);
        }
        PGresult *r; /* the sync's own result */
        while ((r = PQgetResult(s->conn)) && PQresultStatus(r) != PGRES_PIPELINE_SYNC)
            PQclear(r);
        PQclear(r);
    }
    if (sp && !s->sp_open && !rc) /* not expected: the SAVEPOINT's result was not seen */
        rc = err_set(e, ERR_INTERNAL, "store '%s': savepoint: no result", s->shown);
    if (!PQexitPipelineMode(s->conn)) {
        if (!rc)
            rc = err_set(e, ERR_UNAVAILABLE, "store '%s': %s: %s", s->shown, what,
                         PQerrorMessage(s->conn));
        conn_drop(s); /* still in pipeline mode: no statement could run on it */
    }
    if (rc) {
        if (lock && !s->ev_locked)
            s->ev_seq = s->ev_first = 0;
        for (size_t i = 0; i < n; i++) {
            PQclear(st[i].r);
            st[i].r = NULL;
        }
    }
    return rc;
}

static int run(struct store_pg *s, enum stmt_id id, struct params *p, PGresult **out,
               struct err *e, const char *what)
{
    if (s->npw) { /* what waits is written first: this statement sees it */
        int frc = pf_flush(s, e);
        if (frc) {
            if (p)
                params_release(p);
            if (out)
                *out = NULL;
            return frc;
        }
    }
    if (s->npf && !pf_keeps(id))
        pf_clear(s);
    char name[16];
    snprintf(name, sizeof(name), "d%d", (int)id);
    PGresult *r = NULL;
    int rc = conn_ready(s, e);
    if (!rc && !s->prepared[id]) {
        r = PQprepare(s->conn, name, stmt_sql[id], 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            rc = db_err(s, r, e, what);
        else
            s->prepared[id] = true;
        PQclear(r);
        r = NULL;
    }
    if (!rc && (s->sp_pending || s->begin_pending)) {
        struct pl one = {id, p, NULL};
        rc = run_pipeline(s, false, &one, 1, e, what);
        r = one.r;
    } else if (!rc) {
        r = PQexecPrepared(s->conn, name, p ? p->n : 0, p ? p->v : NULL, p ? p->len : NULL,
                           p ? p->fmt : NULL, 0);
        ExecStatusType status = PQresultStatus(r);
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
            rc = db_err(s, r, e, what);
            PQclear(r);
            r = NULL;
        }
    }
    if (p)
        params_release(p);
    if (out)
        *out = r;
    else
        PQclear(r);
    return rc;
}

/* Runs SQL that takes no parameters and returns no rows. */
static int exec_sql(struct store_pg *s, const char *sql, struct err *e, const char *what)
{
    PGresult *r = PQexec(s->conn, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : db_err(s, r, e, what);
    PQclear(r);
    return rc;
}

/* How many rows the statement changed. */
static int64_t changed(const PGresult *r)
{
    return strtoll(PQcmdTuples((PGresult *)r), NULL, 10);
}

static char *col_text(const PGresult *r, int row, int c)
{
    return PQgetisnull(r, row, c) ? NULL : xstrdup(PQgetvalue(r, row, c));
}

/* NULL is 0. */
static int64_t col_int(const PGresult *r, int row, int c)
{
    return strtoll(PQgetvalue(r, row, c), NULL, 10);
}

static json_t *col_json(const PGresult *r, int row, int c)
{
    return PQgetisnull(r, row, c) ? NULL : job_json_load(PQgetvalue(r, row, c));
}

/* A job's row; its labels and spec too unless `lazy` (then NULL, as JOB_RUN_COLUMNS's). */
static void row_to_job_cols(const PGresult *r, int row, struct job *j, bool lazy)
{
    job_init(j);
    snprintf(j->id, sizeof(j->id), "%s", PQgetvalue(r, row, 0));
    j->state = (int)col_int(r, row, 1);
    j->queue = col_text(r, row, 2);
    j->service = col_text(r, row, 3);
    j->name = col_text(r, row, 4);
    j->key = col_text(r, row, 5);
    j->agent = col_text(r, row, 6);
    j->priority = (int)col_int(r, row, 7);
    j->slots = (int)col_int(r, row, 8);
    j->attempt = (int)col_int(r, row, 9);
    j->max_attempts = (int)col_int(r, row, 10);
    j->created_at = col_int(r, row, 11);
    j->started_at = col_int(r, row, 12);
    j->finished_at = col_int(r, row, 13);
    j->run_after = col_int(r, row, 14);
    if (!lazy) {
        j->labels = col_json(r, row, 15);
        job_set_spec(j, PQgetisnull(r, row, 16) ? NULL : job_json_load(PQgetvalue(r, row, 16)));
    }
    j->progress = col_json(r, row, 17);
    j->result = col_json(r, row, 18);
    j->attempts = col_json(r, row, 19);
    j->owner = col_text(r, row, 20);
    j->retention_ms = col_int(r, row, 21);
    j->tenant = col_text(r, row, 22);
}

static void row_to_job(const PGresult *r, int row, struct job *j)
{
    row_to_job_cols(r, row, j, false);
}

/* ---- open, migrate, close ---- */

static int migrate(struct store_pg *s, struct err *e)
{
    int latest = (int)ARRAY_SIZE(pg_migrations);
    int rc = exec_sql(s, "BEGIN", e, "migrating");
    if (rc)
        goto fail;
    /* the lock first, then what is there (a statement after it: its snapshot sees what a
       migration that held the lock committed); no DDL at all when the schema is current,
       so that the user then needs no CREATE right */
    PGresult *r = PQexec(s->conn, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ")");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = db_err(s, r, e, "migrating");
        PQclear(r);
        goto fail;
    }
    PQclear(r);
    r = PQexec(s->conn, "SELECT to_regclass('drover_schema') IS NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = db_err(s, r, e, "reading the schema version");
        PQclear(r);
        goto fail;
    }
    bool fresh = !strcmp(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    if (fresh && (rc = exec_sql(s, "CREATE TABLE drover_schema (version integer NOT NULL)", e,
                                "migrating")))
        goto fail;
    r = PQexec(s->conn, "SELECT version FROM drover_schema");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = db_err(s, r, e, "reading the schema version");
        PQclear(r);
        goto fail;
    }
    bool none = PQntuples(r) == 0;
    int version = none ? 0 : (int)col_int(r, 0, 0);
    PQclear(r);
    if (version > latest) {
        rc = err_set(e, ERR_INVALID,
                     "store '%s' has schema version %d, newer than this drover knows (%d)",
                     s->shown, version, latest);
        goto fail;
    }
    if (none && (rc = exec_sql(s, "INSERT INTO drover_schema VALUES (0)", e, "migrating")))
        goto fail;
    for (int v = version; v < latest; v++) {
        char set[80];
        snprintf(set, sizeof(set), "UPDATE drover_schema SET version = %d", v + 1);
        if ((rc = exec_sql(s, pg_migrations[v], e, "migrating")) ||
            (rc = exec_sql(s, set, e, "migrating")))
            goto fail;
    }
    if ((rc = exec_sql(s, "COMMIT", e, "migrating")))
        goto fail;
    return 0;
fail:
    exec_sql(s, "ROLLBACK", NULL, "migrating");
    return rc;
}

static void pg_close(struct store *st)
{
    struct store_pg *s = pg(st);
    pw_discard(s);
    free(s->pw);
    pf_clear(s);
    count_deltas_drop(&s->counts, 0);
    free(s->counts.v);
    PQfinish(s->conn);
    free(s->shown);
    free(s);
}

static int pg_open(const char *uri, const struct store_opts *opts, struct store **out,
                   struct err *e)
{
    struct store_pg *s = xcalloc(1, sizeof(*s));
    char shown[512];
    store_uri_redact(uri, shown, sizeof(shown));
    s->base.ops = &store_pg_ops;
    s->shown = xstrdup(shown);
    int rc;
    /*
     * Defaults the URI's own parameters override (libpq: later wins; dbname expands the
     * URI in place): a server that does not answer fails a connection after 10 s rather
     * than holding the thread, and a connection to a dead one is noticed within a minute.
     */
    static const char *const keys[] = {"connect_timeout", "keepalives_idle",
                                       "keepalives_interval", "keepalives_count",
                                       "application_name", "dbname", NULL};
    const char *const values[] = {"10", "30", "10", "3", "drover", uri, NULL};
    s->conn = PQconnectdbParams(keys, values, 1);
    if (!s->conn) {
        rc = err_set(e, ERR_UNAVAILABLE, "cannot open store '%s': out of memory", s->shown);
        goto out;
    }
    PQsetNoticeProcessor(s->conn, notice_ignore, NULL);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        const char *msg = PQerrorMessage(s->conn);
        size_t n = strlen(msg);
        while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
            n--;
        rc = err_set(e, ERR_UNAVAILABLE, "cannot open store '%s': %.*s", s->shown,
                     (int)(n < 400 ? n : 400), msg);
        goto out;
    }
    s->notify = opts && opts->notify;
    if ((rc = session_init(s, e)) ||
        (opts && opts->sync_full &&
         (rc = exec_sql(s, "SET synchronous_commit = on", e, "setting up the session"))) ||
        (rc = migrate(s, e)))
        goto out;
    *out = &s->base;
    return 0;
out:
    pg_close(&s->base);
    return rc;
}

static int pg_claim(struct store *st, struct err *e)
{
    struct store_pg *s = pg(st);
    if (s->claimed)
        return 0;
    /* A server restarted at once may find its predecessor's session not ended yet: the
       database frees the lock when it sees the connection close, a moment later. */
    int rc = ERR_CONFLICT;
    for (int i = 0; i < 30 && rc == ERR_CONFLICT; i++) {
        if (i)
            usleep(100 * 1000);
        rc = claim_take(s, ERR_CONFLICT, e);
    }
    if (!rc)
        s->claimed = s->claim_held = true;
    return rc;
}

/* ---- transactions ---- */

static int pg_begin(struct store *st, struct err *e)
{
    struct store_pg *s = pg(st);
    int rc = conn_ready(s, e);
    if (!rc) { /* BEGIN goes with the first statement (pending_sql) */
        s->depth = 1;
        s->begin_pending = true;
        s->ev_locked = false;
        s->sp_open = false;
        s->sp_pending = false;
    }
    pw_discard(s);
    pf_clear(s);
    count_deltas_drop(&s->counts, 0);
    return rc;
}

static void tx_reset(struct store_pg *s)
{
    pw_discard(s);
    pf_clear(s);
    count_deltas_drop(&s->counts, 0);
    s->depth = 0;
    s->sp_open = false;
    s->sp_pending = false;
    s->begin_pending = false;
    s->ev_locked = false;
}

/*
 * The transaction's changes of job_counts (store_int.h) as one statement, sent with its
 * COMMIT (no round trip of its own): rows in (queue, owner, state) order, the order in
 * which every transaction locks them (no deadlock). Each connection adds to its own shard
 * of a row (its backend's pid mod 16; counts are the sums over the shards), so that several
 * servers finishing jobs of one queue do not all wait for one row's lock.
 */
static int counts_sql(struct store_pg *s, struct buf *sql, struct err *e)
{
    count_deltas_merge(&s->counts);
    if (!s->counts.n)
        return 0;
    buf_adds(sql, "INSERT INTO job_counts AS c (queue, owner, state, shard, n) VALUES ");
    for (size_t i = 0; i < s->counts.n; i++) {
        const struct count_delta *d = &s->counts.v[i];
        char *q = PQescapeLiteral(s->conn, d->queue, strlen(d->queue));
        char *o = PQescapeLiteral(s->conn, d->owner, strlen(d->owner));
        if (q && o)
            buf_addf(sql, "%s(%s, %s, %d, pg_backend_pid() %% 16, %" PRId64 ")", i ? ", " : "",
                     q, o, d->state, d->n);
        PQfreemem(q);
        PQfreemem(o);
        if (!q || !o)
            return err_set(e, ERR_INTERNAL, "store '%s': counting jobs: %s", s->shown,
                           PQerrorMessage(s->conn));
    }
    buf_adds(sql, " ON CONFLICT (queue, owner, state, shard) DO UPDATE SET n = c.n + excluded.n; ");
    return 0;
}

static int pg_commit(struct store *st, struct err *e)
{
    struct store_pg *s = pg(st);
    int rc = pf_flush(s, e);
    if (rc)
        return rc; /* the caller rolls back */
    s->tx_first = 1;
    s->tx_last = 0;
    bool wrote = s->ev_locked && s->ev_seq > s->ev_first;
    int64_t first = s->ev_first + 1, last = s->ev_seq;
    /* one notification per committed batch that wrote events, delivered at its commit
       (issue 11), saying the newest seq (pg_notified: a server that wrote all up to it reads
       nothing); sent with the COMMIT, one round trip (the rows are the COMMIT's; an error
       skips it) */
    struct buf sql = BUF_INIT;
    if ((rc = counts_sql(s, &sql, e))) {
        buf_release(&sql);
        return rc;
    }
    if (s->begin_pending && !sql.len && !wrote) { /* nothing was sent: nothing to commit */
        buf_release(&sql);
        tx_reset(s);
        return 0;
    }
    if (s->begin_pending) { /* (not expected: counts come with writes) */
        struct buf all = BUF_INIT;
        buf_adds(&all, "BEGIN; ");
        if (sql.len)
            buf_add(&all, sql.data, sql.len);
        buf_release(&sql);
        sql = all;
        s->begin_pending = false;
    }
    if (wrote && s->notify)
        buf_addf(&sql, "SELECT pg_notify('" NOTIFY_CHANNEL "', '%" PRId64 "'); ", last);
    buf_adds(&sql, "COMMIT");
    PGresult *r = PQexec(s->conn, sql.data);
    buf_release(&sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = db_err(s, r, e, "commit");
    } else if (strcmp(PQcmdStatus(r), "COMMIT")) {
        /* COMMIT of a transaction an error aborted rolls it back */
        rc = err_set(e, ERR_INTERNAL, "store '%s': commit: the transaction was rolled back "
                     "after an earlier error", s->shown);
        tx_reset(s);
    } else {
        tx_reset(s);
        if (wrote) {
            s->tx_first = first;
            s->tx_last = last;
        }
    }
    PQclear(r);
    return rc;
}

static void pg_rollback(struct store *st)
{
    struct store_pg *s = pg(st);
    if (s->depth && !s->begin_pending && PQstatus(s->conn) == CONNECTION_OK)
        exec_sql(s, "ROLLBACK", NULL, "rollback");
    tx_reset(s);
}

/*
 * A savepoint is sent with the op's first statement, in the same round trip
 * (run_pipeline, or ahead of a simple query: pending_sql), not on its own;
 * an op that sends nothing makes none. A savepoint released is released for
 * real at the next savepoint ("RELEASE ...; SAVEPOINT op") or by COMMIT: a
 * group commit's op costs the round trips of its statements and no more.
 * Until then what follows runs inside it, which changes nothing: nothing rolls
 * back to it once released.
 */
static int pg_savepoint(struct store *st, struct err *e)
{
    struct store_pg *s = pg(st);
    int rc = pf_flush(s, e);
    if (rc)
        return rc;
    pf_clear(s); /* an op's reads are the op's */
    s->sp_pending = true;
    s->depth = 2;
    s->sp_ev_locked = s->ev_locked;
    s->sp_ev_seq = s->ev_seq;
    s->counts.sp = s->counts.n;
    return 0;
}

static int pg_savepoint_release(struct store *st, struct err *e)
{
    pg(st)->depth = 1; /* released at the next savepoint or COMMIT (pg_savepoint) */
    return pf_flush(pg(st), e); /* the op's waiting writes: its own error */
}

static void pg_savepoint_rollback(struct store *st)
{
    struct store_pg *s = pg(st);
    pw_discard(s);
    pf_clear(s);
    count_deltas_drop(&s->counts, s->counts.sp);
    if (s->sp_pending) /* nothing of the op reached PostgreSQL */
        s->sp_pending = false;
    else
        exec_sql(s, "ROLLBACK TO SAVEPOINT op; RELEASE SAVEPOINT op", NULL,
                 "rollback to savepoint");
    s->sp_open = false;
    s->depth = 1;
    /* what came after the savepoint is undone, its lock of event_head too */
    s->ev_locked = s->sp_ev_locked;
    s->ev_seq = s->sp_ev_seq;
}

/*
 * A write that appends events, called outside a transaction, is made in one
 * of its own (SQLite's statements commit one by one there): own says whether
 * tx_end commits it.
 */
static int tx_start(struct store_pg *s, bool *own, struct err *e)
{
    *own = s->depth == 0;
    return *own ? pg_begin(&s->base, e) : 0;
}

static int tx_end(struct store_pg *s, bool own, int rc, struct err *e)
{
    if (!own)
        return rc;
    if (!rc)
        rc = pg_commit(&s->base, e);
    if (rc)
        pg_rollback(&s->base);
    return rc;
}

/* ---- events ---- */

/*
 * Locks event_head's row for the rest of the transaction (once). Every write
 * that may append an event, or locks a job's row, calls it first: the lock
 * on event_head is always taken before any row lock, so that two
 * transactions (of two servers, one day) cannot deadlock over a job's row
 * and event_head.
 */
static int events_lock(struct store_pg *s, struct err *e)
{
    if (s->ev_locked || !s->depth)
        return 0; /* held; or outside a transaction, where there is nothing to order */
    /* The lock, then the newest seq in a statement of its own: its snapshot, taken once the
       lock is held, sees the events of the transaction that held it before. Both in one
       round trip (run_pipeline: each statement of a pipeline has its own snapshot). */
    int rc = pf_flush(s, e);
    if (!rc)
        rc = conn_ready(s, e);
    /* with what is pending (BEGIN, the op's savepoint), in one round trip */
    return rc ? rc : run_pipeline(s, true, NULL, 0, e, "appending an event");
}

/* The seq of the transaction's next event (always inside one: tx_start). */
static int next_seq(struct store_pg *s, int64_t *seq, struct err *e)
{
    int rc = events_lock(s, e);
    if (rc)
        return rc;
    if (!s->ev_locked)
        return err_set(e, ERR_INTERNAL, "store '%s': an event outside a transaction", s->shown);
    *seq = ++s->ev_seq;
    return 0;
}

/* Appends the event of a change just made to agent `id`, in the same transaction. */
static int agent_event(struct store_pg *s, const char *id, struct err *e)
{
    int64_t seq = 0;
    int rc = next_seq(s, &seq, e);
    if (rc)
        return rc;
    struct params p = {0};
    p_int(&p, seq);
    p_int(&p, time_now_ms());
    p_text(&p, id);
    return run(s, S_EVENT_AGENT, &p, NULL, e, "appending an event");
}

/* The parameters of job record j's event (EVENT_OF). */
static void event_params(struct params *p, const struct job *j, int64_t seq, int64_t now)
{
    p_int(p, seq);
    p_int(p, now);
    p_text(p, j->id);
    p_text(p, j->queue);
    p_int(p, j->state);
    p_int(p, j->attempt);
    p_text(p, j->agent);
    p_text(p, j->owner);
    json_t *data = store_event_data(j);
    p_json(p, data);
    json_decref(data);
}

/* The delivery of event seq to url, into the webhooks' outbox, due at once. */
static int webhook_add(struct store_pg *s, int64_t seq, const char *url, int64_t now,
                       struct err *e)
{
    struct params w = {0};
    p_int(&w, seq);
    p_text(&w, url);
    p_int(&w, now);
    p_int(&w, now);
    s->base.webhook_queued = true;
    return run(s, S_WEBHOOK_ADD, &w, NULL, e, "queueing a webhook");
}

/* When the job has a webhook (url, notify all) that wants its event seq: the delivery. */
static int job_webhook(struct store_pg *s, const struct job *j, const char *url, bool all,
                       int64_t seq, int64_t now, struct err *e)
{
    return store_webhook_wants(url, all, j->state) ? webhook_add(s, seq, url, now, e) : 0;
}

/* ---- jobs ---- */

static int job_insert_tx(struct store_pg *s, const struct job *j, struct err *e)
{
    int rc = events_lock(s, e);
    if (rc)
        return rc;
    bool all;
    const char *url = store_job_notify(j, &all);
    struct params p = {0};
    p_text(&p, j->id);
    p_int(&p, j->state);
    p_text(&p, j->queue);
    p_text(&p, j->service);
    p_text(&p, j->name);
    p_text(&p, j->key);
    p_text(&p, j->agent);
    p_int(&p, j->priority);
    p_int(&p, j->slots);
    p_int(&p, j->attempt);
    p_int(&p, j->max_attempts);
    p_int(&p, j->created_at);
    p_time(&p, j->started_at);
    p_time(&p, j->finished_at);
    p_int(&p, j->run_after);
    p_json(&p, j->labels);
    p_spec(&p, j->spec);
    p_json(&p, j->progress);
    p_json(&p, j->result);
    p_json(&p, j->attempts);
    p_text(&p, j->owner);
    p_time(&p, j->retention_ms);
    p_text(&p, j->tenant);
    p_text(&p, url);
    p_bool(&p, url && all);
    p_int(&p, JOB_QUEUED);
    int64_t seq = 0, now = time_now_ms();
    if ((rc = next_seq(s, &seq, e))) {
        params_release(&p);
        return rc;
    }
    event_params(&p, j, seq, now);
    PGresult *r;
    rc = run(s, S_JOB_INSERT, &p, &r, e, "inserting a job");
    if (rc)
        return rc;
    int64_t n = changed(r);
    PQclear(r);
    if (n == 0)
        s->ev_seq--; /* no event written: its seq is the next one's */
    if (n == 0 && j->key)
        return err_field(e, ERR_CONFLICT, "key", "key '%s' is already used by another job",
                         j->key);
    if (n == 0)
        return err_set(e, ERR_CONFLICT, "store '%s': job '%s' already exists", s->shown, j->id);
    count_deltas_note(&s->counts, j->queue, j->owner, -1, j->state);
    return job_webhook(s, j, url, all, seq, now, e);
}

static int pg_job_insert(struct store *st, const struct job *j, struct err *e)
{
    struct store_pg *s = pg(st);
    bool own;
    int rc = tx_start(s, &own, e);
    return rc ? rc : tx_end(s, own, job_insert_tx(s, j, e), e);
}

/* Jobs of one S_JOB_INSERT_SET statement at most (pg_job_insert_plain). */
#define INSERT_ROWS 1000

static int row_of(const PGresult *r, const char *id);

/* Writes n plain jobs (no key, no webhook) in one statement (S_JOB_INSERT_SET). */
static int insert_set(struct store_pg *s, struct job *const *jobs, size_t n, struct err *e)
{
    int rc = events_lock(s, e);
    if (rc)
        return rc;
    enum { NCOL = 24 };
    struct arr a[NCOL];
    for (int k = 0; k < NCOL; k++)
        a[k] = (struct arr){BUF_INIT, 0};
    for (size_t i = 0; i < n && !rc; i++) {
        const struct job *j = jobs[i];
        int64_t seq = 0;
        if ((rc = next_seq(s, &seq, e)))
            break;
        arr_text(&a[0], j->id);
        arr_int(&a[1], j->state);
        arr_text(&a[2], j->queue);
        arr_text(&a[3], j->service);
        arr_text(&a[4], j->name);
        arr_text(&a[5], j->agent);
        arr_int(&a[6], j->priority);
        arr_int(&a[7], j->slots);
        arr_int(&a[8], j->attempt);
        arr_int(&a[9], j->max_attempts);
        arr_int(&a[10], j->created_at);
        arr_time(&a[11], j->started_at);
        arr_time(&a[12], j->finished_at);
        arr_int(&a[13], j->run_after);
        arr_json(&a[14], j->labels);
        /* a spec shared by neighbours comes dumped once (job.h: spec_text) */
        char *spec = j->spec_text ? NULL : job_spec_dump(j->spec);
        arr_text(&a[15], j->spec_text ? j->spec_text : spec);
        free(spec);
        arr_json(&a[16], j->progress);
        arr_json(&a[17], j->result);
        arr_json(&a[18], j->attempts);
        arr_text(&a[19], j->owner);
        arr_time(&a[20], j->retention_ms);
        arr_text(&a[21], j->tenant);
        arr_int(&a[22], seq);
        json_t *data = store_event_data(j);
        arr_json(&a[23], data);
        json_decref(data);
    }
    PGresult *r = NULL;
    if (!rc) {
        struct params p = {0};
        for (int k = 0; k < NCOL; k++)
            p_arr(&p, &a[k]);
        p_int(&p, JOB_QUEUED);
        p_int(&p, time_now_ms());
        rc = run(s, S_JOB_INSERT_SET, &p, &r, e, "inserting jobs");
    }
    for (int k = 0; k < NCOL; k++)
        buf_release(&a[k].b);
    if (rc)
        return rc;
    /* a job whose id is taken: the op fails (its savepoint, events and seqs rolled back) */
    for (size_t i = 0; PQntuples(r) != (int)n && i < n && !rc; i++)
        if (row_of(r, jobs[i]->id) < 0)
            rc = err_set(e, ERR_CONFLICT, "store '%s': job '%s' already exists", s->shown,
                         jobs[i]->id);
    PQclear(r);
    for (size_t i = 0; i < n && !rc; i++)
        count_deltas_note(&s->counts, jobs[i]->queue, jobs[i]->owner, -1, jobs[i]->state);
    return rc;
}

/*
 * Plain jobs (store_job_insert_many), one statement per INSERT_ROWS: a
 * statement is a round trip. One alone (a single submit) goes through
 * S_JOB_INSERT, whose plain parameters cost the database less than arrays.
 */
static int pg_job_insert_plain(struct store *st, struct job *const *jobs, size_t n,
                               struct err *e)
{
    struct store_pg *s = pg(st);
    bool own;
    int rc = tx_start(s, &own, e);
    if (rc)
        return rc;
    if (n == 1)
        rc = job_insert_tx(s, jobs[0], e);
    for (size_t i = 0; n > 1 && i < n && !rc; i += INSERT_ROWS)
        rc = insert_set(s, jobs + i, n - i < INSERT_ROWS ? n - i : INSERT_ROWS, e);
    return tx_end(s, own, rc, e);
}

/* Runs a one-row job query bound to `arg`. */
static int get_one(struct store_pg *s, enum stmt_id id, const char *arg, struct job *out,
                   struct err *e, const char *what)
{
    struct params p = {0};
    p_text(&p, arg);
    PGresult *r;
    int rc = run(s, id, &p, &r, e, "reading a job");
    if (rc)
        return rc;
    if (PQntuples(r) == 1)
        row_to_job(r, 0, out);
    else
        rc = err_set(e, ERR_NOTFOUND, "%s '%s' not found", what, arg);
    PQclear(r);
    return rc;
}

static int pg_job_get(struct store *st, const char *id, struct job *out, struct err *e)
{
    return get_one(pg(st), S_JOB_GET, id, out, e, "job");
}

static int pg_job_get_run(struct store *st, const char *id, struct job *out, struct err *e)
{
    return get_one(pg(st), S_JOB_GET_RUN, id, out, e, "job");
}

/* The row stays locked (FOR UPDATE) until the transaction ends. */
static int pg_job_lock(struct store *st, const char *id, bool spec, struct job *out,
                       struct err *e)
{
    struct store_pg *s = pg(st);
    int rc = events_lock(s, e);
    if (rc)
        return rc;
    struct pf_job *f = pf_find(s, id);
    if (f && !f->used) { /* locked and read by store_job_prefetch */
        *out = f->j;
        job_init(&f->j);
        if (spec) { /* JSON parsed only when wanted: a successful end reads no spec */
            out->labels = f->labels ? job_json_load(f->labels) : NULL;
            job_set_spec(out, f->spec ? job_json_load(f->spec) : NULL);
        }
        f->used = true;
        f->held = true; /* until written: its write may wait (job_update_tx) */
        f->held_attempt = out->attempt;
        f->held_state = out->state;
        return 0;
    }
    return get_one(s, spec ? S_JOB_LOCK : S_JOB_LOCK_RUN, id, out, e, "job");
}

static int pg_job_prefetch(struct store *st, const char *const *ids, const int *head_attempts,
                           size_t n, size_t head_max, struct err *e)
{
    struct store_pg *s = pg(st);
    int rc = pf_flush(s, e);
    if (rc)
        return rc;
    pf_clear(s);
    if (!n)
        return 0;
    if ((rc = conn_ready(s, e)))
        return rc;
    /* the heads wanted: one attempt per job (two different ones: neither kept) */
    struct hmap want;
    hmap_init(&want);
    for (size_t i = 0; i < n; i++) {
        if (head_attempts[i] <= 0)
            continue;
        intptr_t had = (intptr_t)hmap_get(&want, ids[i]);
        if (!had || had != head_attempts[i])
            hmap_put(&want, ids[i], (void *)(intptr_t)(had ? -1 : head_attempts[i]));
    }
    struct arr a = {BUF_INIT, 0}, hj = {BUF_INIT, 0}, ha = {BUF_INIT, 0};
    for (size_t i = 0; i < n; i++)
        arr_text(&a, ids[i]);
    for (struct hmap_entry *he = hmap_first(&want); he; he = hmap_next(&want, he)) {
        if ((intptr_t)he->value <= 0)
            continue;
        arr_text(&hj, he->key);
        arr_int(&ha, (int64_t)(intptr_t)he->value);
    }
    /* event_head's lock before any row's (as always), the rows, the heads: one round trip */
    struct params p = {0}, hp = {0};
    p_arr(&p, &a);
    struct pl pl[2] = {{S_JOB_PREFETCH, &p, NULL}, {S_LOG_HEADS, &hp, NULL}};
    size_t nst = 1;
    if (hj.n && head_max) {
        p_arr(&hp, &hj);
        p_arr(&hp, &ha);
        p_int(&hp, 0); /* stdout */
        p_int(&hp, head_max > INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)head_max);
        nst = 2;
    } else {
        buf_release(&hj.b);
        buf_release(&ha.b);
    }
    rc = run_pipeline(s, s->depth && !s->ev_locked, pl, nst, e, "reading jobs");
    params_release(&p);
    params_release(&hp);
    if (rc) {
        hmap_release(&want, NULL);
        return rc;
    }
    PGresult *r = pl[0].r;
    int rows = PQntuples(r);
    s->pf = xcalloc(rows ? (size_t)rows : 1, sizeof(*s->pf));
    for (int i = 0; i < rows; i++) {
        struct pf_job *f = &s->pf[s->npf++];
        row_to_job_cols(r, i, &f->j, true);
        f->labels = PQgetisnull(r, i, 15) ? NULL : xstrdup(PQgetvalue(r, i, 15));
        f->spec = PQgetisnull(r, i, 16) ? NULL : xstrdup(PQgetvalue(r, i, 16));
        memcpy(f->id, f->j.id, sizeof(f->id));
        f->in_wf = !PQgetisnull(r, i, 23);
        if (f->in_wf)
            snprintf(f->wf, sizeof(f->wf), "%s", PQgetvalue(r, i, 23));
        f->head = (struct buf)BUF_INIT;
        intptr_t att = (intptr_t)hmap_get(&want, f->id);
        f->head_attempt = (int)att;
        if (att > 0 && head_max) {
            f->head_pos = 0;
            f->head_left = head_max;
        }
    }
    PQclear(r);
    hmap_release(&want, NULL);
    qsort(s->pf, s->npf, sizeof(*s->pf), pf_cmp);
    s->pf_head_max = head_max;
    if (nst < 2)
        return 0;
    r = pl[1].r;
    /* as pg_log_read reads one head, chunk after chunk */
    for (int i = 0; i < PQntuples(r); i++) {
        struct pf_job *f = pf_find(s, PQgetvalue(r, i, 0));
        if (!f || f->head_attempt != (int)col_int(r, i, 1) || f->head_stop || !f->head_left)
            continue;
        size_t len = 0;
        unsigned char *data = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 3), &len);
        if (!data) {
            PQclear(r);
            pf_clear(s);
            return err_set(e, ERR_INTERNAL, "store '%s': reading output: out of memory",
                           s->shown);
        }
        f->head_stop = !store_log_take(&f->head_pos, &f->head_left, col_int(r, i, 2),
                                       (const char *)data, (int64_t)len, &f->head);
        PQfreemem(data);
    }
    PQclear(r);
    return 0;
}

static int pg_job_get_by_key(struct store *st, const char *owner, const char *key,
                             struct job *out, struct err *e)
{
    struct store_pg *s = pg(st);
    struct params p = {0};
    p_text(&p, key);
    p_text(&p, owner);
    PGresult *r;
    int rc = run(s, S_JOB_GET_KEY, &p, &r, e, "reading a job");
    if (rc)
        return rc;
    if (PQntuples(r) == 1)
        row_to_job(r, 0, out);
    else
        rc = err_set(e, ERR_NOTFOUND, "job with key '%s' not found", key);
    PQclear(r);
    return rc;
}

static int pg_id_match(struct store *st, enum store_kind kind, const char *prefix,
                       const char *owner, char (*ids)[UUID_STR_LEN], size_t max, size_t *n,
                       struct err *e)
{
    struct store_pg *s = pg(st);
    struct params p = {0};
    p_text(&p, prefix);
    p_int(&p, (int64_t)max);
    if (owner)
        p_text(&p, owner);
    PGresult *r;
    *n = 0;
    int rc = run(s, (enum stmt_id)((owner ? S_MATCH_OWNER : S_MATCH) + (int)kind), &p, &r, e,
                 "finding ids by prefix");
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(r) && *n < max; i++)
        snprintf(ids[(*n)++], UUID_STR_LEN, "%s", PQgetvalue(r, i, 0));
    PQclear(r);
    return 0;
}

/* Adds " AND <cond>" with the next parameter's number in place of the "$" in cond. */
static void where_param(struct buf *sql, struct params *p, const char *cond)
{
    const char *d = strchr(cond, '$');
    buf_adds(sql, " AND ");
    buf_add(sql, cond, (size_t)(d - cond));
    buf_addf(sql, "$%d", p->n + 1);
    buf_adds(sql, d + 1);
}

static int pg_job_list(struct store *st, const struct job_filter *f, struct job_list *out,
                       struct err *e)
{
    struct store_pg *s = pg(st);
    struct buf sql = BUF_INIT;
    struct params p = {0};
    out->jobs = NULL;
    out->n = 0;
    buf_adds(&sql, "SELECT " JOB_COLUMNS " FROM jobs WHERE true");
    if (f->owner) {
        where_param(&sql, &p, "owner = $");
        p_text(&p, f->owner);
    }
    if (f->state >= 0) { /* by jobs_ended or jobs_live (schema 12) */
        if (job_state_terminal(f->state)) {
            where_param(&sql, &p, "end_state = $");
        } else {
            buf_adds(&sql, " AND end_state IS NULL");
            where_param(&sql, &p, "state = $");
        }
        p_int(&p, f->state);
    }
    if (f->queue) {
        where_param(&sql, &p, "queue = $");
        p_text(&p, f->queue);
    }
    if (f->service) {
        where_param(&sql, &p, "service = $");
        p_text(&p, f->service);
    }
    if (f->agent) {
        where_param(&sql, &p, "agent = $");
        p_text(&p, f->agent);
    }
    if (f->name) { /* strpos, not LIKE: % and _ in the text are literal */
        where_param(&sql, &p, "strpos(lower(name), lower($::text)) > 0");
        p_text(&p, f->name);
    }
    if (f->label_key) { /* the key is a literal key, dots and all */
        buf_addf(&sql, " AND labels::jsonb ->> $%d::text = $%d", p.n + 1, p.n + 2);
        p_text(&p, f->label_key);
        p_text(&p, f->label_value);
    }
    if (f->after) {
        where_param(&sql, &p, "id < $");
        p_text(&p, f->after);
    }
    buf_addf(&sql, " ORDER BY id DESC LIMIT %d", f->limit);
    int rc = pf_flush(s, e); /* waiting writes first: the list sees them */
    if (!rc)
        rc = conn_ready(s, e);
    if (!rc)
        rc = pending_send(s, e);
    PGresult *r = NULL;
    if (!rc) {
        r = PQexecParams(s->conn, sql.data, p.n, NULL, p.v, p.len, p.fmt, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            rc = db_err(s, r, e, "listing jobs");
    }
    buf_release(&sql);
    params_release(&p);
    if (!rc && PQntuples(r) > 0) {
        out->jobs = xcalloc((size_t)PQntuples(r), sizeof(*out->jobs));
        for (int i = 0; i < PQntuples(r); i++)
            row_to_job(r, i, &out->jobs[out->n++]);
    }
    PQclear(r);
    return rc;
}

static char *dup_int(int64_t v)
{
    char t[24];
    snprintf(t, sizeof(t), "%" PRId64, v);
    return xstrdup(t);
}

static char *dup_opt(const char *v)
{
    return v ? xstrdup(v) : NULL;
}

/*
 * A write of job j read by store_job_prefetch, locked since and not written:
 * its fence holds (checked here, on the row as locked), so it waits, with its
 * event's seq taken now, to be written with the op's others in one statement
 * (pf_flush).
 */
static int pw_add(struct store_pg *s, struct pf_job *f, const struct job *j, int expect_attempt,
                  unsigned expect_states, struct err *e)
{
    int64_t seq = 0;
    int rc = next_seq(s, &seq, e);
    if (rc)
        return rc;
    f->held = false; /* a second write of it is made after this one (run flushes first) */
    /* written for sure at the op's flush (the row is locked, its fence checked): counted */
    count_deltas_note(&s->counts, j->queue, j->owner, f->held_state, j->state);
    if (s->npw == s->cappw) {
        s->cappw = s->cappw ? 2 * s->cappw : 64;
        s->pw = xrealloc(s->pw, s->cappw * sizeof(*s->pw));
    }
    struct pw_row *w = &s->pw[s->npw++];
    snprintf(w->id, sizeof(w->id), "%s", j->id);
    w->state = j->state;
    w->seq = seq;
    w->at = time_now_ms();
    json_t *data = store_event_data(j);
    char *const cols[17] = {
        xstrdup(j->id), dup_int(j->state), dup_opt(j->agent), dup_int(j->attempt),
        j->started_at ? dup_int(j->started_at) : NULL,
        j->finished_at ? dup_int(j->finished_at) : NULL, dup_int(j->run_after),
        job_json_dump(j->progress), job_json_dump(j->result), job_json_dump(j->attempts),
        dup_int(expect_attempt), dup_int((int)expect_states), dup_int(seq), dup_int(w->at),
        dup_opt(j->queue), dup_opt(j->owner), job_json_dump(data)};
    json_decref(data);
    memcpy(w->cols, cols, sizeof(cols));
    return 0;
}

static int job_update_tx(struct store_pg *s, const struct job *j, int expect_attempt,
                         unsigned expect_states, struct err *e)
{
    int rc = events_lock(s, e);
    if (rc)
        return rc;
    struct pf_job *f = pf_find(s, j->id);
    if (f && f->held && f->held_attempt == expect_attempt &&
        ((1u << f->held_state) & expect_states))
        return pw_add(s, f, j, expect_attempt, expect_states, e);
    if (f && !f->used) { /* its row as read is no longer what is stored */
        job_release(&f->j);
        f->used = true;
    }
    if (f)
        f->held = false;
    /* job_counts needs the state the job leaves: the one state expected, else read, locked
       (after event_head's lock) */
    int was = -1;
    if (expect_states && !(expect_states & (expect_states - 1))) {
        was = __builtin_ctz(expect_states);
    } else {
        struct params l = {0};
        p_text(&l, j->id);
        PGresult *r;
        if ((rc = run(s, S_JOB_STATE_LOCK, &l, &r, e, "reading a job's state")))
            return rc;
        if (PQntuples(r) == 1)
            was = (int)col_int(r, 0, 0);
        PQclear(r);
    }
    struct params p = {0};
    p_int(&p, j->state);
    p_text(&p, j->agent);
    p_int(&p, j->attempt);
    p_time(&p, j->started_at);
    p_time(&p, j->finished_at);
    p_int(&p, j->run_after);
    p_json(&p, j->progress);
    p_json(&p, j->result);
    p_json(&p, j->attempts);
    p_text(&p, j->id);
    p_int(&p, expect_attempt);
    p_int(&p, (int)expect_states);
    p_int(&p, JOB_QUEUED);
    int64_t seq = 0, now = time_now_ms();
    if ((rc = next_seq(s, &seq, e))) {
        params_release(&p);
        return rc;
    }
    event_params(&p, j, seq, now);
    PGresult *r;
    rc = run(s, S_JOB_UPDATE, &p, &r, e, "updating a job");
    if (rc)
        return rc;
    if (PQntuples(r) == 1) { /* updated, with its event: its webhook, from the record */
        char *url = col_text(r, 0, 0);
        bool all = !strcmp(PQgetvalue(r, 0, 1), "t");
        PQclear(r);
        count_deltas_note(&s->counts, j->queue, j->owner, was, j->state);
        rc = job_webhook(s, j, url, all, seq, now, e);
        free(url);
        return rc;
    }
    s->ev_seq--; /* no event written: its seq is the next one's */
    PQclear(r);
    struct job cur;
    if ((rc = get_one(s, S_JOB_GET_RUN, j->id, &cur, e, "job")))
        return rc;
    rc = err_set(e, ERR_CONFLICT, "job '%s' is %s at attempt %d, not at attempt %d", j->id,
                 job_state_name(cur.state), cur.attempt, expect_attempt);
    job_release(&cur);
    return rc;
}

static int pg_job_update(struct store *st, const struct job *j, int expect_attempt,
                         unsigned expect_states, struct err *e)
{
    struct store_pg *s = pg(st);
    bool own;
    int rc = tx_start(s, &own, e);
    return rc ? rc : tx_end(s, own, job_update_tx(s, j, expect_attempt, expect_states, e), e);
}

/*
 * The candidates still queued and not locked by another transaction are
 * locked (SKIP LOCKED: never waited for), stepped through the lifecycle's
 * lease in the caller's order, then written with their events in one
 * statement each.
 */
/* The row of r (ids in column 0) for job id, or -1. */
static int row_of(const PGresult *r, const char *id)
{
    for (int k = 0; k < PQntuples(r); k++)
        if (!strcmp(PQgetvalue(r, k, 0), id))
            return k;
    return -1;
}

static int pg_job_lease(struct store *st, const char *agent, int64_t now_ms,
                        struct store_lease *c, size_t n, size_t *nleased, struct err *e)
{
    struct store_pg *s = pg(st);
    if (!n)
        return 0;
    int rc = events_lock(s, e);
    if (rc)
        return rc;
    struct arr ids = {BUF_INIT, 0};
    for (size_t i = 0; i < n; i++)
        arr_text(&ids, c[i].job);
    struct params p = {0};
    p_arr(&p, &ids);
    p_int(&p, JOB_QUEUED);
    PGresult *r;
    rc = run(s, S_JOB_LEASE_LOCK, &p, &r, e, "leasing jobs");
    if (rc)
        return rc;
    struct arr u[8], ev[8];
    bool *taken = xcalloc((size_t)PQntuples(r) + 1, sizeof(*taken)); /* a row leased already */
    for (int k = 0; k < 8; k++) {
        u[k] = (struct arr){BUF_INIT, 0};
        ev[k] = (struct arr){BUF_INIT, 0};
    }
    for (size_t i = 0; i < n && !rc; i++) {
        int row = row_of(r, c[i].job);
        if (row < 0 || taken[row])
            continue; /* not queued, locked elsewhere, unknown, or given twice: skipped */
        taken[row] = true;
        struct job j;
        job_init(&j);
        snprintf(j.id, sizeof(j.id), "%s", c[i].job);
        j.state = JOB_QUEUED;
        j.attempt = (int)col_int(r, row, 1);
        int was = j.attempt;
        struct job_event_args a = {.now_ms = now_ms, .agent = agent};
        struct err ignored = ERR_INIT;
        if (lifecycle_apply(&j, JOB_EV_LEASE, &a, &ignored)) {
            job_release(&j);
            continue;
        }
        j.queue = col_text(r, row, 2);
        j.owner = col_text(r, row, 3);
        int64_t seq = 0;
        if ((rc = next_seq(s, &seq, e))) {
            job_release(&j);
            break;
        }
        arr_text(&u[0], j.id);
        arr_int(&u[1], j.state);
        arr_text(&u[2], j.agent);
        arr_int(&u[3], j.attempt);
        arr_time(&u[4], j.started_at);
        arr_time(&u[5], j.finished_at);
        arr_json(&u[6], j.progress);
        arr_int(&u[7], was);
        json_t *data = store_event_data(&j);
        arr_int(&ev[0], seq);
        arr_text(&ev[1], j.id);
        arr_text(&ev[2], j.queue);
        arr_int(&ev[3], j.state);
        arr_int(&ev[4], j.attempt);
        arr_text(&ev[5], j.agent);
        arr_text(&ev[6], j.owner);
        arr_json(&ev[7], data);
        json_decref(data);
        count_deltas_note(&s->counts, j.queue, j.owner, JOB_QUEUED, j.state);
        c[i].leased = true;
        c[i].attempt = j.attempt;
        c[i].spec = col_text(r, row, 4);
        ++*nleased;
        job_release(&j);
    }
    if (!rc && *nleased) {
        struct params up = {0};
        for (int k = 0; k < 8; k++)
            p_arr(&up, &u[k]);
        p_int(&up, JOB_QUEUED);
        p_int(&up, time_now_ms());
        for (int k = 0; k < 8; k++)
            p_arr(&up, &ev[k]);
        PGresult *ur;
        if (!(rc = run(s, S_JOB_LEASE, &up, &ur, e, "leasing jobs"))) {
            /* the rows are locked: cannot happen (the transaction is rolled back) */
            if (changed(ur) != (int64_t)*nleased)
                rc = err_set(e, ERR_INTERNAL, "store '%s': leasing jobs: %lld of %zu written",
                             s->shown, (long long)changed(ur), *nleased);
            PQclear(ur);
        }
    }
    /* deliveries of the lease events wanted by webhooks (notify "all"); the events got
       consecutive seqs, in the candidates' order */
    int64_t seq = s->ev_seq - (int64_t)*nleased, now = time_now_ms();
    for (size_t i = 0; i < n && !rc; i++) {
        if (!c[i].leased)
            continue;
        seq++;
        int row = row_of(r, c[i].job);
        const char *url = PQgetisnull(r, row, 5) ? NULL : PQgetvalue(r, row, 5);
        if (store_webhook_wants(url, !strcmp(PQgetvalue(r, row, 6), "t"), JOB_LEASED))
            rc = webhook_add(s, seq, url, now, e);
    }
    for (int k = 0; k < 8; k++) {
        buf_release(&u[k].b);
        buf_release(&ev[k].b);
    }
    free(taken);
    PQclear(r);
    return rc;
}

/* Runs statement `id` (its rows: jobs) and calls fn for each job (released after it). */
static int run_jobs(struct store_pg *s, enum stmt_id id, struct params *p,
                    int (*fn)(void *arg, const struct job *j), void *arg, struct err *e,
                    const char *what)
{
    PGresult *r;
    int rc = run(s, id, p, &r, e, what);
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(r) && !rc; i++) {
        struct job j;
        row_to_job(r, i, &j);
        rc = fn(arg, &j);
        job_release(&j);
    }
    PQclear(r);
    return rc;
}

static int pg_job_scan(struct store *st, unsigned states, int (*fn)(void *arg, const struct job *j),
                       void *arg, struct err *e)
{
    struct store_pg *s = pg(st);
    struct params p = {0};
    p_states(&p, states);
    return run_jobs(s, (states & ~LIVE_STATES) ? S_JOB_SCAN : S_JOB_SCAN_LIVE, &p, fn, arg, e,
                    "scanning jobs");
}

static int pg_job_each(struct store *st, const char *const *ids, size_t n,
                       int (*fn)(void *arg, const struct job *j), void *arg, struct err *e)
{
    struct store_pg *s = pg(st);
    struct arr a = {BUF_INIT, 0};
    for (size_t i = 0; i < n; i++)
        arr_text(&a, ids[i]);
    struct params p = {0};
    p_arr(&p, &a);
    return run_jobs(s, S_JOB_EACH, &p, fn, arg, e, "reading jobs");
}

/* ---- output ---- */

static int pg_log_append(struct store *st, const char *job, int attempt, int stream,
                         int64_t offset, const char *data, size_t len, struct err *e)
{
    struct store_pg *s = pg(st);
    if (!store_log_clamp(offset, &len))
        return 0;
    struct params p = {0};
    p_text(&p, job);
    p_int(&p, attempt);
    p_int(&p, stream);
    p_int(&p, offset);
    p_bin(&p, data, len);
    return run(s, S_LOG_APPEND, &p, NULL, e, "storing output");
}

static int pg_log_read(struct store *st, const char *job, int attempt, int stream,
                       int64_t offset, size_t max, struct buf *out, struct err *e)
{
    struct store_pg *s = pg(st);
    if (max == 0)
        return 0;
    struct pf_job *f = stream == 0 && offset == 0 && max == s->pf_head_max ? pf_find(s, job)
                                                                           : NULL;
    if (f && attempt > 0 && f->head_attempt == attempt) { /* read by store_job_prefetch */
        if (f->head.len)
            buf_add(out, f->head.data, f->head.len);
        return 0;
    }
    struct params p = {0};
    p_text(&p, job);
    p_int(&p, attempt);
    p_int(&p, stream);
    p_int(&p, offset);
    p_int(&p, max > INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)max);
    PGresult *r;
    int rc = run(s, S_LOG_READ, &p, &r, e, "reading output");
    if (rc)
        return rc;
    int64_t pos = offset; /* the next byte wanted */
    for (int i = 0; i < PQntuples(r) && max > 0; i++) {
        size_t len = 0;
        unsigned char *data =
            PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 1), &len);
        if (!data) {
            PQclear(r);
            return err_set(e, ERR_INTERNAL, "store '%s': reading output: out of memory",
                           s->shown);
        }
        bool more = store_log_take(&pos, &max, col_int(r, i, 0), (const char *)data,
                                   (int64_t)len, out);
        PQfreemem(data);
        if (!more)
            break;
    }
    PQclear(r);
    return 0;
}

/* ---- agents ---- */

static int agent_upsert_tx(struct store_pg *s, struct agent_rec *a, struct err *e)
{
    int rc = events_lock(s, e);
    if (rc)
        return rc;
    struct params p = {0};
    p_text(&p, a->id);
    p_text(&p, a->name);
    p_json(&p, a->labels);
    p_json(&p, a->queues);
    p_int(&p, a->slots);
    p_text(&p, a->version);
    p_int(&p, a->state);
    p_int(&p, a->last_seen);
    p_int(&p, a->registered_at);
    p_text(&p, a->owner);
    p_text(&p, a->instance);
    p_int(&p, a->runtimes);
    p_json(&p, a->limits);
    PGresult *r;
    rc = run(s, S_AGENT_UPSERT, &p, &r, e, "registering an agent");
    if (rc)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return err_set(e, ERR_CONFLICT, "agent '%s' belongs to another token", a->name);
    }
    snprintf(a->id, sizeof(a->id), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return agent_event(s, a->id, e);
}

static int pg_agent_upsert(struct store *st, struct agent_rec *a, struct err *e)
{
    struct store_pg *s = pg(st);
    bool own;
    int rc = tx_start(s, &own, e);
    return rc ? rc : tx_end(s, own, agent_upsert_tx(s, a, e), e);
}

static int agent_set_state_tx(struct store_pg *s, const char *id, int state, int64_t last_seen,
                              struct err *e)
{
    int rc = events_lock(s, e);
    if (rc)
        return rc;
    struct params p = {0};
    p_int(&p, state);
    p_int(&p, last_seen);
    p_text(&p, id);
    PGresult *r;
    rc = run(s, S_AGENT_STATE, &p, &r, e, "updating an agent");
    if (rc)
        return rc;
    int64_t n = changed(r);
    PQclear(r);
    if (n == 0)
        return err_set(e, ERR_NOTFOUND, "agent '%s' not found", id);
    return agent_event(s, id, e);
}

static int pg_agent_set_state(struct store *st, const char *id, int state, int64_t last_seen,
                              struct err *e)
{
    struct store_pg *s = pg(st);
    bool own;
    int rc = tx_start(s, &own, e);
    return rc ? rc : tx_end(s, own, agent_set_state_tx(s, id, state, last_seen, e), e);
}

static int agent_forget_tx(struct store_pg *s, const char *id, int64_t seen_before,
                           struct err *e)
{
    int64_t seq = 0;
    int rc = next_seq(s, &seq, e);
    if (rc)
        return rc;
    struct params p = {0};
    p_int(&p, seq);
    p_int(&p, time_now_ms());
    p_text(&p, id);
    p_int(&p, seen_before);
    p_int(&p, AGENT_FORGOTTEN);
    p_int(&p, AGENT_LOST);
    p_int(&p, AGENT_LEFT);
    PGresult *r;
    if ((rc = run(s, S_AGENT_FORGET, &p, &r, e, "forgetting an agent")))
        return rc;
    int64_t n = changed(r);
    PQclear(r);
    if (n)
        return 0;
    s->ev_seq--; /* no event written: its seq is the next one's */
    return err_set(e, ERR_NOTFOUND, "agent '%s' not found, or not gone long enough", id);
}

static int pg_agent_forget(struct store *st, const char *id, int64_t seen_before, struct err *e)
{
    struct store_pg *s = pg(st);
    bool own;
    int rc = tx_start(s, &own, e);
    return rc ? rc : tx_end(s, own, agent_forget_tx(s, id, seen_before, e), e);
}

static int pg_agent_scan(struct store *st, int (*fn)(void *arg, const struct agent_rec *a),
                         void *arg, struct err *e)
{
    struct store_pg *s = pg(st);
    PGresult *r;
    int rc = run(s, S_AGENT_SCAN, NULL, &r, e, "listing agents");
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(r) && !rc; i++) {
        struct agent_rec a;
        agent_rec_init(&a);
        snprintf(a.id, sizeof(a.id), "%s", PQgetvalue(r, i, 0));
        a.name = col_text(r, i, 1);
        a.labels = col_json(r, i, 2);
        a.queues = col_json(r, i, 3);
        a.slots = (int)col_int(r, i, 4);
        a.version = col_text(r, i, 5);
        a.state = (int)col_int(r, i, 6);
        a.last_seen = col_int(r, i, 7);
        a.registered_at = col_int(r, i, 8);
        a.owner = col_text(r, i, 9);
        a.instance = col_text(r, i, 10);
        a.runtimes = (unsigned)col_int(r, i, 11);
        a.limits = col_json(r, i, 12);
        rc = fn(arg, &a);
        agent_rec_release(&a);
    }
    PQclear(r);
    return rc;
}

static int pg_queue_stats(struct store *st, const char *owner, struct queue_stat **out,
                          size_t *n, struct err *e)
{
    struct store_pg *s = pg(st);
    struct params p = {0};
    if (owner)
        p_text(&p, owner);
    PGresult *r;
    int rc = run(s, owner ? S_QUEUE_STATS_OWNER : S_QUEUE_STATS, &p, &r, e, "counting jobs");
    if (rc)
        return rc;
    struct queue_stat *v = NULL;
    size_t cnt = 0, cap = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0);
        int state = (int)col_int(r, i, 1);
        if (!cnt || strcmp(v[cnt - 1].name, name)) { /* rows come grouped by queue */
            if (cnt == cap) {
                cap = cap ? cap * 2 : 8;
                v = xrealloc(v, cap * sizeof(*v));
            }
            memset(&v[cnt], 0, sizeof(v[cnt]));
            snprintf(v[cnt].name, sizeof(v[cnt].name), "%s", name);
            cnt++;
        }
        if (state >= 0 && state < JOB_NSTATES)
            v[cnt - 1].count[state] = col_int(r, i, 2);
    }
    PQclear(r);
    *out = v;
    *n = cnt;
    return 0;
}

/* ---- tokens, meta ---- */

static int pg_token_insert(struct store *st, const char *name, int role, const char *hash,
                           struct err *e)
{
    struct store_pg *s = pg(st);
    struct params p = {0};
    p_text(&p, name);
    p_int(&p, role);
    p_text(&p, hash);
    PGresult *r;
    int rc = run(s, S_TOKEN_INSERT, &p, &r, e, "inserting a token");
    if (rc)
        return rc;
    int64_t n = changed(r);
    PQclear(r);
    return n ? 0 : err_field(e, ERR_CONFLICT, "name", "a token named '%s' already exists", name);
}

static int pg_token_find(struct store *st, const char *hash, int *role, char *name_out,
                         size_t n, struct err *e)
{
    struct store_pg *s = pg(st);
    struct params p = {0};
    p_text(&p, hash);
    PGresult *r;
    int rc = run(s, S_TOKEN_FIND, &p, &r, e, "reading a token");
    if (rc)
        return rc;
    if (PQntuples(r) == 1) {
        *role = (int)col_int(r, 0, 0);
        if (name_out)
            snprintf(name_out, n, "%s", PQgetvalue(r, 0, 1));
    } else {
        rc = err_set(e, ERR_NOTFOUND, "no such token");
    }
    PQclear(r);
    return rc;
}

static int pg_token_delete(struct store *st, const char *name, struct err *e)
{
    struct store_pg *s = pg(st);
    struct params p = {0};
    p_text(&p, name);
    PGresult *r;
    int rc = run(s, S_TOKEN_DELETE, &p, &r, e, "deleting a token");
    if (rc)
        return rc;
    int64_t n = changed(r);
    PQclear(r);
    return n ? 0 : err_set(e, ERR_NOTFOUND, "token '%s' not found", name);
}

/* One count(*) row. */
static int count_one(struct store_pg *s, enum stmt_id id, struct params *p, int64_t *out,
                     struct err *e, const char *what)
{
    PGresult *r;
    int rc = run(s, id, p, &r, e, what);
    if (rc)
        return rc;
    *out = col_int(r, 0, 0);
    PQclear(r);
    return 0;
}

static int pg_token_count(struct store *st, int role, int64_t *count, struct err *e)
{
    struct params p = {0};
    p_int(&p, role);
    return count_one(pg(st), S_TOKEN_COUNT, &p, count, e, "counting tokens");
}

static int pg_token_scan(struct store *st, int (*fn)(void *arg, const struct token_rec *t),
                         void *arg, struct err *e)
{
    PGresult *r;
    int rc = run(pg(st), S_TOKEN_SCAN, NULL, &r, e, "reading tokens");
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(r) && !rc; i++) {
        struct token_rec t;
        snprintf(t.name, sizeof(t.name), "%s", PQgetvalue(r, i, 0));
        t.role = (int)col_int(r, i, 1);
        snprintf(t.tenant, sizeof(t.tenant), "%s", PQgetisnull(r, i, 2) ? "" : PQgetvalue(r, i, 2));
        t.created_at = col_int(r, i, 3);
        rc = fn(arg, &t);
    }
    PQclear(r);
    return rc;
}

static int pg_session_insert(struct store *st, const struct session_rec *r, int64_t now_ms,
                             int max_per_name, int max_all, struct err *e)
{
    struct store_pg *s = pg(st);
    struct params prune = {0}, trim = {0}, ins = {0};
    p_int(&prune, now_ms);
    int rc = run(s, S_SESSION_PRUNE, &prune, NULL, e, "deleting expired sessions");
    if (rc)
        return rc;
    p_text(&trim, r->name);
    p_int(&trim, max_per_name > 1 ? max_per_name - 1 : 0);
    if ((rc = run(s, S_SESSION_TRIM, &trim, NULL, e, "deleting a token's oldest sessions")))
        return rc;
    int64_t live;
    if ((rc = count_one(s, S_SESSION_COUNT, NULL, &live, e, "counting sessions")))
        return rc;
    if (live >= max_all)
        return err_set(e, ERR_UNAVAILABLE, "too many sessions (%d): try again later", max_all);
    p_text(&ins, r->id_hash);
    p_text(&ins, r->token_hash);
    p_text(&ins, r->csrf);
    p_int(&ins, r->role);
    p_text(&ins, r->name);
    p_int(&ins, r->expires_ms);
    return run(s, S_SESSION_INSERT, &ins, NULL, e, "inserting a session");
}

static int pg_session_find(struct store *st, const char *id_hash, int64_t now_ms,
                           struct session_rec *out, struct err *e)
{
    struct store_pg *s = pg(st);
    struct params p = {0};
    p_text(&p, id_hash);
    p_int(&p, now_ms);
    PGresult *r;
    int rc = run(s, S_SESSION_FIND, &p, &r, e, "reading a session");
    if (rc) return rc;
    if (PQntuples(r) == 1) {
        memset(out, 0, sizeof(*out));
        snprintf(out->id_hash, sizeof(out->id_hash), "%s", id_hash);
        snprintf(out->token_hash, sizeof(out->token_hash), "%s", PQgetvalue(r, 0, 0));
        snprintf(out->csrf, sizeof(out->csrf), "%s", PQgetvalue(r, 0, 1));
        out->role = (int)col_int(r, 0, 2);
        snprintf(out->name, sizeof(out->name), "%s", PQgetvalue(r, 0, 3));
        out->expires_ms = col_int(r, 0, 4);
    } else {
        rc = err_set(e, ERR_NOTFOUND, "no such session");
    }
    PQclear(r);
    return rc;
}

static int pg_session_delete(struct store *st, const char *id_hash, struct err *e)
{
    struct params p = {0};
    p_text(&p, id_hash);
    return run(pg(st), S_SESSION_DELETE, &p, NULL, e, "deleting a session");
}

static int pg_meta_get(struct store *st, const char *key, char **value, struct err *e)
{
    struct store_pg *s = pg(st);
    struct params p = {0};
    p_text(&p, key);
    PGresult *r;
    int rc = run(s, S_META_GET, &p, &r, e, "reading meta");
    if (rc)
        return rc;
    if (PQntuples(r) == 1)
        *value = col_text(r, 0, 0);
    else
        rc = err_set(e, ERR_NOTFOUND, "'%s' is not set", key);
    PQclear(r);
    return rc;
}

static int pg_meta_set(struct store *st, const char *key, const char *value, struct err *e)
{
    struct params p = {0};
    p_text(&p, key);
    p_text(&p, value);
    return run(pg(st), S_META_SET, &p, NULL, e, "writing meta");
}

/* ---- the service hub ---- */

static void row_to_service(const PGresult *r, int row, struct service_rec *out)
{
    out->name = col_text(r, row, 0);
    out->version = (int)col_int(r, row, 1);
    out->definition = col_text(r, row, 2);
    out->created_by = col_text(r, row, 3);
    out->created_at = col_int(r, row, 4);
    out->retired_at = PQgetisnull(r, row, 5) ? 0 : col_int(r, row, 5);
}

static int pg_service_insert(struct store *st, struct service_rec *rec, struct err *e)
{
    struct params p = {0};
    p_text(&p, rec->name);
    p_text(&p, rec->definition);
    p_text(&p, rec->created_by);
    p_int(&p, rec->created_at);
    PGresult *r;
    int rc = run(pg(st), S_SERVICE_INSERT, &p, &r, e, "inserting a service");
    if (rc)
        return rc;
    rec->version = (int)col_int(r, 0, 0);
    rec->retired_at = 0;
    PQclear(r);
    return 0;
}

static int pg_service_get(struct store *st, const char *name, int version,
                          struct service_rec *out, struct err *e)
{
    struct params p = {0};
    p_text(&p, name);
    if (version)
        p_int(&p, version);
    PGresult *r;
    int rc = run(pg(st), version ? S_SERVICE_GET : S_SERVICE_LATEST, &p, &r, e,
                 "reading a service");
    if (rc)
        return rc;
    if (PQntuples(r) == 1)
        row_to_service(r, 0, out);
    else if (version)
        rc = err_set(e, ERR_NOTFOUND, "service '%s' has no version %d", name, version);
    else
        rc = err_set(e, ERR_NOTFOUND, "service '%s' not found", name);
    PQclear(r);
    return rc;
}

static int pg_service_list(struct store *st, struct service_rec **out, size_t *n, struct err *e)
{
    PGresult *r;
    int rc = run(pg(st), S_SERVICE_LIST, NULL, &r, e, "listing services");
    if (rc)
        return rc;
    size_t cnt = (size_t)PQntuples(r);
    struct service_rec *v = xcalloc(cnt ? cnt : 1, sizeof(*v));
    for (size_t i = 0; i < cnt; i++)
        row_to_service(r, (int)i, &v[i]);
    PQclear(r);
    *out = v;
    *n = cnt;
    return 0;
}

static int pg_service_retire(struct store *st, const char *name, int64_t now_ms, struct err *e)
{
    struct params p = {0};
    p_text(&p, name);
    p_int(&p, now_ms);
    PGresult *r;
    int rc = run(pg(st), S_SERVICE_RETIRE, &p, &r, e, "retiring a service");
    if (rc)
        return rc;
    int64_t changes = changed(r);
    PQclear(r);
    return changes ? 0 : err_set(e, ERR_NOTFOUND, "service '%s' not found", name);
}

static int pg_leader_take(struct store *st, const char *name, const char *holder, int64_t now_ms,
                          int64_t ttl_ms, bool *leader, struct err *e)
{
    struct params p = {0};
    p_text(&p, name);
    p_text(&p, holder);
    p_int(&p, now_ms + ttl_ms);
    p_int(&p, now_ms);
    PGresult *r;
    int rc = run(pg(st), S_LEADER_TAKE, &p, &r, e, "taking the leader lease");
    if (rc) return rc;
    *leader = PQntuples(r) == 1;
    PQclear(r);
    return 0;
}

static int pg_agent_seen(struct store *st, const char *id, int64_t last_seen, struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    p_int(&p, last_seen);
    return run(pg(st), S_AGENT_SEEN, &p, NULL, e, "updating an agent");
}

static int pg_agent_set_runtimes(struct store *st, const char *id, unsigned runtimes, struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    p_int(&p, runtimes);
    PGresult *r;
    int rc = run(pg(st), S_AGENT_RUNTIMES, &p, &r, e, "updating an agent's runtimes");
    if (rc)
        return rc;
    int64_t n = changed(r);
    PQclear(r);
    return n ? 0 : err_set(e, ERR_NOTFOUND, "agent '%s' not found", id);
}

static void pg_tx_events(struct store *st, int64_t *first, int64_t *last)
{
    struct store_pg *s = pg(st);
    *first = s->tx_first;
    *last = s->tx_last;
}

static int pg_listen(struct store *st, int *fd, struct err *e)
{
    struct store_pg *s = pg(st);
    int rc = conn_ready(s, e);
    if (!rc)
        rc = exec_sql(s, "LISTEN " NOTIFY_CHANNEL, e, "listening");
    if (rc)
        return rc;
    s->listening = true;
    *fd = PQsocket(s->conn);
    return 0;
}

static int pg_notified(struct store *st, int *fd, bool *any, int64_t *upto, struct err *e)
{
    struct store_pg *s = pg(st);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        int rc = pg_listen(st, fd, e); /* conn_ready connects again */
        if (!rc) {
            *any = true; /* what was announced meanwhile is lost */
            *upto = INT64_MAX;
        }
        return rc;
    }
    if (!PQconsumeInput(s->conn)) {
        *fd = -1;
        return db_err(s, NULL, e, "listening");
    }
    PGnotify *n;
    while ((n = PQnotifies(s->conn))) {
        *any = true;
        char *end;
        long long seq = strtoll(n->extra, &end, 10);
        if (end == n->extra || *end) /* a NOTIFY without the seq: all may be new */
            seq = INT64_MAX;
        if (seq > *upto)
            *upto = seq;
        PQfreemem(n);
    }
    *fd = PQsocket(s->conn);
    return 0;
}

static int pg_leader_release(struct store *st, const char *name, const char *holder,
                             struct err *e)
{
    struct params p = {0};
    p_text(&p, name);
    p_text(&p, holder);
    return run(pg(st), S_LEADER_RELEASE, &p, NULL, e, "releasing the leader lease");
}

/* ---- workflows ---- */

static int pg_workflow_insert(struct store *st, const struct workflow_rec *w, struct err *e)
{
    struct store_pg *s = pg(st);
    struct params p = {0};
    p_text(&p, w->id);
    p_text(&p, w->owner);
    p_text(&p, w->name);
    p_int(&p, w->created_at);
    p_json(&p, w->doc);
    p_text(&p, json_string_value(json_object_get(w->doc, "key")));
    int rc = run(s, S_WF_INSERT, &p, NULL, e, "inserting a workflow");
    const char *name;
    json_t *node;
    json_object_foreach(json_object_get(w->doc, "nodes"), name, node)
    {
        if (rc) break;
        struct params q = {0};
        p_text(&q, json_string_value(json_object_get(node, "job")));
        p_text(&q, w->id);
        p_text(&q, name);
        rc = run(s, S_WF_JOB, &q, NULL, e, "inserting a workflow");
    }
    return rc;
}

static int pg_workflow_get(struct store *st, const char *id, struct workflow_rec *out,
                           struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    PGresult *r;
    memset(out, 0, sizeof(*out));
    int rc = run(pg(st), S_WF_GET, &p, &r, e, "reading a workflow");
    if (rc) return rc;
    if (PQntuples(r) == 1) {
        snprintf(out->id, sizeof(out->id), "%s", id);
        out->owner = col_text(r, 0, 0);
        out->name = col_text(r, 0, 1);
        out->created_at = col_int(r, 0, 2);
        out->doc = col_json(r, 0, 3);
        if (!out->doc)
            rc = err_set(e, ERR_INTERNAL, "workflow '%s': its stored document is not JSON", id);
    } else {
        rc = err_set(e, ERR_NOTFOUND, "workflow '%s' not found", id);
    }
    PQclear(r);
    return rc;
}

static int pg_workflow_list(struct store *st, const char *owner, const char *after, int limit,
                            struct workflow_list *out, struct err *e)
{
    struct params p = {0};
    p_text(&p, owner);
    p_text(&p, after);
    p_int(&p, limit);
    PGresult *r;
    int rc = run(pg(st), S_WF_LIST, &p, &r, e, "listing workflows");
    if (rc) return rc;
    int n = PQntuples(r);
    out->w = xcalloc((size_t)(n ? n : 1), sizeof(*out->w));
    for (int i = 0; i < n && !rc; i++) {
        struct workflow_rec *w = &out->w[out->n++];
        snprintf(w->id, sizeof(w->id), "%s", PQgetvalue(r, i, 0));
        w->owner = col_text(r, i, 1);
        w->name = col_text(r, i, 2);
        w->created_at = col_int(r, i, 3);
        w->doc = col_json(r, i, 4);
        if (!w->doc)
            rc = err_set(e, ERR_INTERNAL, "workflow '%s': its stored document is not JSON", w->id);
    }
    PQclear(r);
    return rc;
}

static int pg_workflow_of(struct store *st, const char *job, char *id_out, struct err *e)
{
    struct pf_job *f = pf_find(pg(st), job);
    if (f && f->in_wf) {
        snprintf(id_out, UUID_STR_LEN, "%s", f->wf);
        return 0;
    }
    if (f)
        return err_set(e, ERR_NOTFOUND, "job '%s' is in no workflow", job);
    struct params p = {0};
    p_text(&p, job);
    PGresult *r;
    int rc = run(pg(st), S_WF_OF, &p, &r, e, "reading a workflow");
    if (rc) return rc;
    if (PQntuples(r) == 1)
        snprintf(id_out, UUID_STR_LEN, "%s", PQgetvalue(r, 0, 0));
    else
        rc = err_set(e, ERR_NOTFOUND, "job '%s' is in no workflow", job);
    PQclear(r);
    return rc;
}

static int pg_workflow_by_key(struct store *st, const char *owner, const char *key, char *id_out,
                              struct err *e)
{
    struct params p = {0};
    p_text(&p, owner);
    p_text(&p, key);
    PGresult *r;
    int rc = run(pg(st), S_WF_BY_KEY, &p, &r, e, "reading a workflow");
    if (rc) return rc;
    if (PQntuples(r) == 1)
        snprintf(id_out, UUID_STR_LEN, "%s", PQgetvalue(r, 0, 0));
    else
        rc = err_set(e, ERR_NOTFOUND, "no workflow has key '%s'", key);
    PQclear(r);
    return rc;
}

static int pg_job_set_spec(struct store *st, const char *id, const json_t *spec, struct err *e)
{
    struct params p = {0};
    p_spec(&p, spec);
    p_text(&p, id);
    return run(pg(st), S_JOB_SET_SPEC, &p, NULL, e, "writing a job's spec");
}

/* ---- the event stream ---- */

/* The event in the row's columns from `c` on (seq, at, kind, subject, ...). */
static void row_to_event(const PGresult *r, int row, int c, struct event_rec *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->seq = col_int(r, row, c);
    ev->at = col_int(r, row, c + 1);
    ev->kind = (int)col_int(r, row, c + 2);
    snprintf(ev->subject, sizeof(ev->subject), "%s", PQgetvalue(r, row, c + 3));
    ev->queue = col_text(r, row, c + 4);
    ev->state = (int)col_int(r, row, c + 5);
    ev->attempt = (int)col_int(r, row, c + 6);
    ev->agent = col_text(r, row, c + 7);
    ev->data = col_json(r, row, c + 8);
}

static void event_rec_release(struct event_rec *ev)
{
    free(ev->queue);
    free(ev->agent);
    json_decref(ev->data);
}

static int pg_event_add(struct store *st, int kind, const char *subject, const char *queue,
                        int state, const char *owner, json_t *data, const char *notify_url,
                        struct err *e)
{
    struct store_pg *s = pg(st);
    int64_t seq = 0, now = time_now_ms();
    int rc = next_seq(s, &seq, e);
    if (rc)
        return rc;
    struct params p = {0};
    p_int(&p, seq);
    p_int(&p, now);
    p_int(&p, kind);
    p_text(&p, subject);
    p_text(&p, queue);
    p_int(&p, state);
    p_text(&p, owner);
    p_json(&p, data);
    if ((rc = run(s, S_EVENT_ADD, &p, NULL, e, "appending an event")) || !notify_url)
        return rc;
    return webhook_add(s, seq, notify_url, now, e);
}

/* ---- triggers ---- */

static void row_to_trigger(const PGresult *r, int row, struct trigger_rec *t)
{
    snprintf(t->id, sizeof(t->id), "%s", PQgetvalue(r, row, 0));
    t->owner = col_text(r, row, 1);
    t->prefix = col_text(r, row, 2);
    t->workflow = PQgetvalue(r, row, 3)[0] == 't';
    t->input = col_text(r, row, 4);
    t->template_ = col_text(r, row, 5);
    t->created_at = col_int(r, row, 6);
    t->schedule = col_text(r, row, 7);
    t->skip_overlap = PQgetvalue(r, row, 8)[0] == 't';
    t->timezone = col_text(r, row, 9);
    t->paused_at = col_int(r, row, 10);
    t->resumed_at = col_int(r, row, 11);
    t->updated_at = col_int(r, row, 12);
}

static int pg_trigger_insert(struct store *st, const struct trigger_rec *t, struct err *e)
{
    struct params p = {0};
    p_text(&p, t->id);
    p_text(&p, t->owner);
    p_text(&p, t->prefix);
    p_bool(&p, t->workflow);
    p_text(&p, t->input);
    p_text(&p, t->template_);
    p_int(&p, t->created_at);
    p_text(&p, t->schedule);
    p_bool(&p, t->skip_overlap);
    p_text(&p, t->timezone);
    return run(pg(st), S_TRIGGER_INSERT, &p, NULL, e, "inserting a trigger");
}

static int pg_trigger_update(struct store *st, const struct trigger_rec *t, struct err *e)
{
    struct params p = {0};
    p_text(&p, t->id);
    p_text(&p, t->prefix);
    p_bool(&p, t->workflow);
    p_text(&p, t->input);
    p_text(&p, t->template_);
    p_text(&p, t->schedule);
    p_bool(&p, t->skip_overlap);
    p_text(&p, t->timezone);
    p_int(&p, t->updated_at);
    PGresult *r;
    int rc = run(pg(st), S_TRIGGER_UPDATE, &p, &r, e, "changing a trigger");
    if (rc) return rc;
    int64_t n = changed(r);
    PQclear(r);
    return n ? 0 : err_set(e, ERR_NOTFOUND, "trigger '%s' not found", t->id);
}

static int pg_trigger_get(struct store *st, const char *id, struct trigger_rec *out,
                          struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    PGresult *r;
    int rc = run(pg(st), S_TRIGGER_GET, &p, &r, e, "reading a trigger");
    if (rc) return rc;
    if (PQntuples(r) == 1)
        row_to_trigger(r, 0, out);
    else
        rc = err_set(e, ERR_NOTFOUND, "trigger '%s' not found", id);
    PQclear(r);
    return rc;
}

static int pg_trigger_list(struct store *st, const char *owner, const char *after, int limit,
                           struct trigger_rec **out, size_t *n, struct err *e)
{
    struct params p = {0};
    p_text(&p, owner);
    p_text(&p, after);
    if (limit > 0)
        p_int(&p, limit);
    else
        p_text(&p, NULL);
    PGresult *r;
    int rc = run(pg(st), S_TRIGGER_LIST, &p, &r, e, "listing triggers");
    if (rc) return rc;
    int rows = PQntuples(r);
    *out = xcalloc((size_t)(rows ? rows : 1), sizeof(**out));
    for (int i = 0; i < rows; i++)
        row_to_trigger(r, i, &(*out)[(*n)++]);
    PQclear(r);
    return 0;
}

static int pg_trigger_delete(struct store *st, const char *id, struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    PGresult *r;
    int rc = run(pg(st), S_TRIGGER_DELETE, &p, &r, e, "deleting a trigger");
    if (rc) return rc;
    int64_t n = changed(r);
    PQclear(r);
    if (!n) return err_set(e, ERR_NOTFOUND, "trigger '%s' not found", id);
    p = (struct params){0};
    p_text(&p, id);
    return run(pg(st), S_TRIGGER_DELETE_FIRES, &p, NULL, e, "deleting a trigger's fires");
}

static int pg_trigger_fire_add(struct store *st, const char *trigger, const char *uri,
                               const char *sha256, int64_t now_ms, int *added, struct err *e)
{
    struct params p = {0};
    p_text(&p, uri);
    p_text(&p, sha256);
    p_int(&p, now_ms);
    p_text(&p, trigger);
    PGresult *r;
    *added = 0;
    int rc = run(pg(st), S_FIRE_ADD, &p, &r, e, "recording a trigger's fire");
    if (rc) return rc;
    *added = (int)changed(r);
    PQclear(r);
    return 0;
}

static int pg_trigger_fires(struct store *st, const char *trigger, int limit,
                            struct trigger_fire **out, size_t *n, struct err *e)
{
    struct params p = {0};
    if (trigger) p_text(&p, trigger);
    p_int(&p, limit);
    PGresult *r;
    int rc = run(pg(st), trigger ? S_FIRE_RECENT : S_FIRE_PENDING, &p, &r, e,
                 "listing trigger fires");
    if (rc) return rc;
    int rows = PQntuples(r);
    *out = xcalloc((size_t)(rows ? rows : 1), sizeof(**out));
    for (int i = 0; i < rows; i++) {
        struct trigger_fire *f = &(*out)[(*n)++];
        f->id = col_int(r, i, 0);
        snprintf(f->trigger, sizeof(f->trigger), "%s", PQgetvalue(r, i, 1));
        f->uri = col_text(r, i, 2);
        snprintf(f->sha256, sizeof(f->sha256), "%s", PQgetvalue(r, i, 3));
        f->created_at = col_int(r, i, 4);
        f->target = col_text(r, i, 5);
        f->error = col_text(r, i, 6);
        f->fired_at = col_int(r, i, 7);
    }
    PQclear(r);
    return 0;
}

static int pg_trigger_fires_prune(struct store *st, const char *trigger, int keep, struct err *e)
{
    struct params p = {0};
    p_text(&p, trigger);
    p_int(&p, keep);
    return run(pg(st), S_FIRE_PRUNE, &p, NULL, e, "deleting a schedule's old fires");
}

static int pg_trigger_pause(struct store *st, const char *id, bool paused, int64_t now_ms,
                            bool *changed, struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    p_int(&p, now_ms);
    PGresult *r;
    int rc = run(pg(st), paused ? S_TRIGGER_PAUSE : S_TRIGGER_RESUME, &p, &r, e,
                 paused ? "pausing a trigger" : "resuming a trigger");
    if (rc) return rc;
    *changed = PQntuples(r) == 1;
    PQclear(r);
    return 0;
}

static int pg_trigger_last_target(struct store *st, const char *trigger, int64_t before,
                                  char **target, struct err *e)
{
    struct params p = {0};
    p_text(&p, trigger);
    p_int(&p, before);
    PGresult *r;
    *target = NULL;
    int rc = run(pg(st), S_FIRE_LAST_TARGET, &p, &r, e, "reading a trigger's fires");
    if (rc) return rc;
    if (PQntuples(r) == 1) *target = col_text(r, 0, 0);
    PQclear(r);
    return 0;
}

static int pg_trigger_fire_done(struct store *st, int64_t id, const char *target,
                                const char *error, int64_t now_ms, struct err *e)
{
    struct store_pg *s = pg(st);
    struct params p = {0};
    p_int(&p, id);
    p_text(&p, target);
    p_text(&p, target ? NULL : error);
    p_int(&p, now_ms);
    PGresult *r;
    int rc = run(s, S_FIRE_DONE, &p, &r, e, "recording a trigger's fire");
    if (rc) return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return err_set(e, ERR_CONFLICT, "trigger fire %lld is not pending", (long long)id);
    }
    json_t *d = trigger_fire_data(PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
    if (target)
        json_object_set_new(d, PQgetvalue(r, 0, 4)[0] == 't' ? "workflow" : "job",
                            json_string(target));
    else
        json_object_set_new(d, "error", json_string(error ? error : ""));
    int64_t seq = 0;
    if (!(rc = next_seq(s, &seq, e))) {
        p = (struct params){0};
        p_int(&p, seq);
        p_int(&p, now_ms);
        p_text(&p, PQgetvalue(r, 0, 0));
        p_int(&p, target ? TRIGGER_FIRED : TRIGGER_FAILED);
        p_text(&p, PQgetisnull(r, 0, 3) ? NULL : PQgetvalue(r, 0, 3));
        p_json(&p, d);
        rc = run(s, S_EVENT_TRIGGER, &p, NULL, e, "appending an event");
    }
    json_decref(d);
    PQclear(r);
    return rc;
}

static int pg_event_list(struct store *st, const struct event_filter *f,
                         int (*fn)(void *arg, const struct event_rec *ev), void *arg,
                         struct err *e)
{
    struct store_pg *s = pg(st);
    struct buf sql = BUF_INIT;
    struct params p = {0};
    buf_adds(&sql, "SELECT seq, at, kind, subject, queue, state, attempt, agent, ");
    buf_adds(&sql, f->no_data ? "NULL" : "data");
    buf_adds(&sql, " FROM events WHERE seq > $1");
    p_int(&p, f->after);
    if (f->kind >= 0) {
        where_param(&sql, &p, "kind = $");
        p_int(&p, f->kind);
    }
    if (f->queue) {
        where_param(&sql, &p, "queue = $");
        p_text(&p, f->queue);
    }
    if (f->jobs) {
        where_param(&sql, &p, "subject = ANY($::text[])");
        struct arr a = {BUF_INIT, 0};
        for (size_t i = 0; i < f->njobs; i++)
            arr_text(&a, f->jobs[i]);
        p_arr(&p, &a);
    }
    if (f->owner) { /* a client: its own jobs' events, and the agents' */
        where_param(&sql, &p, "(kind NOT IN (0, 3, 4, 6, 7) OR owner = $)"); /* agents', objects' too */
        p_text(&p, f->owner);
    }
    buf_addf(&sql, " ORDER BY seq LIMIT %d", f->limit);
    int rc = pf_flush(s, e); /* waiting writes first: the list sees them */
    if (!rc)
        rc = conn_ready(s, e);
    if (!rc)
        rc = pending_send(s, e);
    PGresult *r = NULL;
    if (!rc) {
        r = PQexecParams(s->conn, sql.data, p.n, NULL, p.v, p.len, p.fmt, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            rc = db_err(s, r, e, "listing events");
    }
    buf_release(&sql);
    params_release(&p);
    for (int i = 0; !rc && i < PQntuples(r); i++) {
        struct event_rec ev;
        row_to_event(r, i, 0, &ev);
        rc = fn(arg, &ev);
        event_rec_release(&ev);
    }
    PQclear(r);
    return rc;
}

static int pg_event_window(struct store *st, int64_t *first, int64_t *last, struct err *e)
{
    struct store_pg *s = pg(st);
    PGresult *r;
    int rc = run(s, S_EVENT_WINDOW, NULL, &r, e, "reading the event window");
    if (rc)
        return rc;
    *last = col_int(r, 0, 1);
    *first = PQgetisnull(r, 0, 0) ? *last + 1 : col_int(r, 0, 0);
    *first = store_event_window_start(*first, *last, col_int(r, 0, 2));
    PQclear(r);
    return 0;
}

static int pg_event_prune(struct store *st, int64_t before_ms, int64_t max_keep, struct err *e)
{
    struct params p = {0};
    p_int(&p, before_ms);
    p_int(&p, max_keep);
    return run(pg(st), S_EVENT_PRUNE, &p, NULL, e, "pruning events");
}

/* ---- webhooks ---- */

static int pg_webhook_due(struct store *st, int64_t now_ms, int limit,
                          int (*fn)(void *arg, const struct webhook *w), void *arg, struct err *e)
{
    struct store_pg *s = pg(st);
    struct params p = {0};
    p_int(&p, now_ms);
    p_int(&p, limit);
    PGresult *r;
    int rc = run(s, S_WEBHOOK_DUE, &p, &r, e, "reading the webhook outbox");
    if (rc)
        return rc;
    for (int i = 0; !rc && i < PQntuples(r); i++) {
        struct event_rec ev;
        row_to_event(r, i, 4, &ev);
        struct webhook w = {.id = col_int(r, i, 0),
                            .url = PQgetvalue(r, i, 1),
                            .tries = (int)col_int(r, i, 2),
                            .created_at = col_int(r, i, 3),
                            .ev = &ev};
        rc = fn(arg, &w);
        event_rec_release(&ev);
    }
    PQclear(r);
    return rc;
}

static int pg_webhook_delete(struct store *st, int64_t id, struct err *e)
{
    struct params p = {0};
    p_int(&p, id);
    return run(pg(st), S_WEBHOOK_DELETE, &p, NULL, e, "recording a delivery");
}

static int pg_webhook_retry(struct store *st, int64_t id, int tries, int64_t next_at,
                            const char *error, struct err *e)
{
    struct params p = {0};
    p_int(&p, tries);
    p_int(&p, next_at);
    p_text(&p, error);
    p_int(&p, id);
    return run(pg(st), S_WEBHOOK_RETRY, &p, NULL, e, "recording a failed delivery");
}

static int pg_webhook_count(struct store *st, int64_t *n, struct err *e)
{
    return count_one(pg(st), S_WEBHOOK_COUNT, NULL, n, e, "counting webhooks");
}

static int pg_job_expired(struct store *st, int64_t now_ms, int64_t default_ms, int limit,
                          char (*ids)[UUID_STR_LEN], size_t *n, struct err *e)
{
    struct params p = {0};
    p_int(&p, now_ms);
    p_int(&p, default_ms);
    p_int(&p, limit);
    PGresult *r;
    *n = 0;
    int rc = run(pg(st), S_JOB_EXPIRED, &p, &r, e, "reading expired jobs");
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(r) && *n < (size_t)limit; i++)
        snprintf(ids[(*n)++], UUID_STR_LEN, "%s", PQgetvalue(r, i, 0));
    PQclear(r);
    return 0;
}

static int pg_job_held(struct store *st, const char *id, const char *task_lo,
                       const char *task_hi, bool *held, struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    p_text(&p, task_lo);
    p_text(&p, task_hi);
    int64_t n = 0;
    int rc = count_one(pg(st), S_JOB_HELD, &p, &n, e, "reading what a job belongs to");
    *held = !rc && n;
    return rc;
}

static int pg_job_defer(struct store *st, const char *id, int64_t until_ms, struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    p_int(&p, until_ms);
    return run(pg(st), S_JOB_DEFER, &p, NULL, e, "putting a job's deletion off");
}

static int job_delete_tx(struct store_pg *s, const char *id, struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    PGresult *r;
    int rc = run(s, S_JOB_DELETE, &p, &r, e, "deleting a job");
    if (rc)
        return rc;
    int64_t n = PQntuples(r);
    if (n == 1)
        count_deltas_note(&s->counts, PQgetvalue(r, 0, 1),
                          PQgetisnull(r, 0, 2) ? NULL : PQgetvalue(r, 0, 2),
                          (int)col_int(r, 0, 0), -1);
    PQclear(r);
    if (n == 0) {
        struct job j;
        if ((rc = get_one(s, S_JOB_GET_RUN, id, &j, e, "job")))
            return rc;
        rc = err_set(e, ERR_CONFLICT, "job '%s' is %s: only a finished job is deleted", id,
                     job_state_name(j.state));
        job_release(&j);
        return rc;
    }
    struct params l = {0};
    p_text(&l, id);
    if ((rc = run(s, S_JOB_DELETE_LOGS, &l, NULL, e, "deleting a job's output"))) return rc;
    /* a workflow's node: its row goes, and the workflow with its last one */
    struct params f = {0};
    p_text(&f, id);
    if ((rc = run(s, S_WF_FORGET, &f, &r, e, "deleting a job's workflow row"))) return rc;
    char wf[UUID_STR_LEN] = "";
    if (PQntuples(r) == 1) snprintf(wf, sizeof(wf), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!*wf) return 0;
    struct params w = {0};
    p_text(&w, wf);
    return run(s, S_WF_DROP_EMPTY, &w, NULL, e, "deleting a workflow");
}

static int pg_array_task_gone(struct store *st, const char *job, struct err *e)
{
    struct params p = {0};
    p_text(&p, job);
    return run(pg(st), S_ARRAY_TASK_GONE, &p, NULL, e, "deleting an array's task");
}

static int pg_job_delete(struct store *st, const char *id, struct err *e)
{
    struct store_pg *s = pg(st);
    bool own;
    int rc = tx_start(s, &own, e);
    return rc ? rc : tx_end(s, own, job_delete_tx(s, id, e), e);
}

static int pg_token_tenant(struct store *st, const char *name, char *tenant, size_t n,
                           struct err *e)
{
    struct params p = {0};
    p_text(&p, name);
    PGresult *r;
    int rc = run(pg(st), S_TOKEN_TENANT, &p, &r, e, "reading a token");
    if (rc)
        return rc;
    if (PQntuples(r) == 1)
        snprintf(tenant, n, "%s", PQgetvalue(r, 0, 0));
    else
        rc = err_set(e, ERR_NOTFOUND, "token '%s' not found", name);
    PQclear(r);
    return rc;
}

static int pg_token_set_tenant(struct store *st, const char *name, const char *tenant,
                               struct err *e)
{
    struct params p = {0};
    p_text(&p, tenant);
    p_text(&p, name);
    PGresult *r;
    int rc = run(pg(st), S_TOKEN_SET_TENANT, &p, &r, e, "setting a token's tenant");
    if (rc)
        return rc;
    int64_t n = changed(r);
    PQclear(r);
    return n ? 0 : err_set(e, ERR_NOTFOUND, "token '%s' not found", name);
}

static void p_limit(struct params *p, int v)
{
    if (v >= 0)
        p_int(p, v);
    else
        p_text(p, NULL);
}

static int pg_tenant_put(struct store *st, const struct tenant_rec *t, struct err *e)
{
    struct params p = {0};
    p_text(&p, t->name);
    p_limit(&p, t->max_running);
    p_limit(&p, t->max_queued);
    p_int(&p, t->weight);
    return run(pg(st), S_TENANT_PUT, &p, NULL, e, "writing a tenant");
}

static int pg_tenant_scan(struct store *st, int (*fn)(void *arg, const struct tenant_rec *t),
                          void *arg, struct err *e)
{
    PGresult *r;
    int rc = run(pg(st), S_TENANT_SCAN, NULL, &r, e, "reading tenants");
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(r) && !rc; i++) {
        struct tenant_rec t;
        snprintf(t.name, sizeof(t.name), "%s", PQgetvalue(r, i, 0));
        t.max_running = PQgetisnull(r, i, 1) ? -1 : (int)col_int(r, i, 1);
        t.max_queued = PQgetisnull(r, i, 2) ? -1 : (int)col_int(r, i, 2);
        t.weight = (int)col_int(r, i, 3);
        rc = fn(arg, &t);
    }
    PQclear(r);
    return rc;
}

static int pg_tenant_waiting(struct store *st, const char *tenant, int64_t *n, struct err *e)
{
    struct params p = {0};
    p_text(&p, tenant);
    return count_one(pg(st), S_TENANT_WAITING, &p, n, e, "counting a tenant's jobs");
}

static int pg_queue_pause(struct store *st, const char *queue, bool paused, const char *by,
                          int64_t now_ms, bool *changed, struct err *e)
{
    struct params p = {0};
    p_text(&p, queue);
    if (paused) {
        p_int(&p, now_ms);
        p_text(&p, by);
    }
    PGresult *r;
    int rc = run(pg(st), paused ? S_QUEUE_PAUSE : S_QUEUE_RESUME, &p, &r, e,
                 paused ? "pausing a queue" : "resuming a queue");
    if (rc)
        return rc;
    *changed = PQntuples(r) == 1;
    PQclear(r);
    return 0;
}

static int pg_queue_limit(struct store *st, const char *queue, int max_running, const char *by,
                          int64_t now_ms, bool *changed, struct err *e)
{
    struct params p = {0};
    p_text(&p, queue);
    if (max_running) {
        p_int(&p, max_running);
        p_int(&p, now_ms);
        p_text(&p, by);
    }
    PGresult *r;
    int rc = run(pg(st), max_running ? S_QUEUE_LIMIT : S_QUEUE_UNLIMIT, &p, &r, e,
                 "setting a queue's max_running");
    if (rc)
        return rc;
    *changed = PQntuples(r) == 1;
    PQclear(r);
    return 0;
}

static int pg_queue_limits(struct store *st,
                           int (*fn)(void *arg, const char *queue, int max_running), void *arg,
                           struct err *e)
{
    PGresult *r;
    int rc = run(pg(st), S_QUEUE_LIMITS, NULL, &r, e, "reading the queues' limits");
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(r) && !rc; i++)
        rc = fn(arg, PQgetvalue(r, i, 0), (int)col_int(r, i, 1));
    PQclear(r);
    return rc;
}

static int pg_queue_paused(struct store *st, int (*fn)(void *arg, const char *queue, int64_t at),
                           void *arg, struct err *e)
{
    PGresult *r;
    int rc = run(pg(st), S_QUEUE_PAUSED, NULL, &r, e, "reading the paused queues");
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(r) && !rc; i++)
        rc = fn(arg, PQgetvalue(r, i, 0), col_int(r, i, 1));
    PQclear(r);
    return rc;
}

/* ---- job arrays (their claims in functions of their own: the lease path stays as it is) ---- */

static int pg_array_insert(struct store *st, const struct array_rec *a, struct err *e)
{
    struct params p = {0};
    p_text(&p, a->id);
    p_text(&p, a->owner);
    p_text(&p, a->tenant);
    p_text(&p, a->queue);
    p_text(&p, a->name);
    p_int(&p, a->priority);
    p_int(&p, a->kind);
    p_text(&p, a->source);
    p_int(&p, a->count);
    p_json(&p, a->spec);
    p_int(&p, a->created_at);
    int rc = run(pg(st), S_ARRAY_INSERT, &p, NULL, e, "inserting an array");
    if (rc || !a->items) return rc;
    struct params q = {0};
    p_text(&q, a->id);
    p_json(&q, a->items);
    return run(pg(st), S_ARRAY_ITEMS, &q, NULL, e, "inserting an array's items");
}

static int row_to_array(const PGresult *r, int row, struct array_rec *a, struct err *e)
{
    memset(a, 0, sizeof(*a));
    snprintf(a->id, sizeof(a->id), "%s", PQgetvalue(r, row, 0));
    a->owner = col_text(r, row, 1);
    a->tenant = col_text(r, row, 2);
    a->queue = col_text(r, row, 3);
    a->name = col_text(r, row, 4);
    a->priority = (int)col_int(r, row, 5);
    a->kind = (int)col_int(r, row, 6);
    a->source = col_text(r, row, 7);
    a->count = col_int(r, row, 8);
    a->next_index = col_int(r, row, 9);
    a->skips = col_json(r, row, 10);
    a->spec = col_json(r, row, 11);
    a->created_at = col_int(r, row, 12);
    if (!json_is_array(a->skips) || !json_is_object(a->spec)) {
        int rc = err_set(e, ERR_INTERNAL, "array '%s': its stored spec or skips are not JSON",
                         a->id);
        array_rec_release(a);
        return rc;
    }
    array_rec_views(a);
    return 0;
}

static int pg_array_get(struct store *st, const char *id, bool lock, struct array_rec *out,
                        struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    PGresult *r;
    memset(out, 0, sizeof(*out));
    int rc = run(pg(st), lock ? S_ARRAY_LOCK : S_ARRAY_GET, &p, &r, e, "reading an array");
    if (rc) return rc;
    if (PQntuples(r) == 1)
        rc = row_to_array(r, 0, out, e);
    else
        rc = err_set(e, ERR_NOTFOUND, "array '%s' not found", id);
    PQclear(r);
    return rc;
}

static int pg_array_list(struct store *st, const char *owner, const char *after, int limit,
                         struct array_rec **out, size_t *n, struct err *e)
{
    struct params p = {0};
    p_text(&p, owner);
    p_text(&p, after);
    p_int(&p, limit);
    PGresult *r;
    *n = 0;
    *out = NULL;
    int rc = run(pg(st), S_ARRAY_LIST, &p, &r, e, "listing arrays");
    if (rc) return rc;
    int rows = PQntuples(r);
    *out = xcalloc((size_t)(rows ? rows : 1), sizeof(**out));
    for (int i = 0; i < rows && !rc; i++)
        if (!(rc = row_to_array(r, i, &(*out)[*n], e))) (*n)++;
    PQclear(r);
    return rc;
}

static int pg_array_set(struct store *st, const char *id, int64_t next_index, const char *skips,
                        int64_t open, struct err *e)
{
    struct params p = {0};
    p_int(&p, next_index);
    p_text(&p, skips);
    p_text(&p, id);
    p_int(&p, open);
    return run(pg(st), S_ARRAY_SET, &p, NULL, e, "writing an array's cursor");
}

static int pg_array_open(struct store *st, const char *tenant, int64_t *n, struct err *e)
{
    struct params p = {0};
    p_text(&p, tenant);
    return count_one(pg(st), S_ARRAY_OPEN, &p, n, e, "counting a tenant's array tasks");
}

static int pg_array_item(struct store *st, const char *id, int64_t index, char **item,
                         struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    p_int(&p, index);
    PGresult *r;
    int rc = run(pg(st), S_ARRAY_ITEM, &p, &r, e, "reading an array's item");
    if (rc) return rc;
    if (PQntuples(r) == 1)
        *item = col_text(r, 0, 0);
    else
        rc = err_set(e, ERR_NOTFOUND, "array '%s' has no item %lld", id, (long long)index);
    PQclear(r);
    return rc;
}

static int pg_array_task_add(struct store *st, const char *id, int64_t index, const char *job,
                             struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    p_int(&p, index);
    p_text(&p, job);
    return run(pg(st), S_ARRAY_TASK_ADD, &p, NULL, e, "linking an array's task");
}

static int pg_array_task_ids(struct store *st, const char *id, int64_t from, int64_t to,
                             int (*fn)(void *arg, int64_t index, const char *job), void *arg,
                             struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    p_int(&p, from);
    p_int(&p, to);
    PGresult *r;
    int rc = run(pg(st), S_ARRAY_TASK_IDS, &p, &r, e, "reading an array's tasks");
    if (rc) return rc;
    for (int i = 0; i < PQntuples(r) && !rc; i++)
        rc = fn(arg, col_int(r, i, 0), PQgetvalue(r, i, 1));
    PQclear(r);
    return rc;
}

static int pg_array_job_counts(struct store *st, const char *id, int64_t *counts, struct err *e)
{
    struct params p = {0};
    p_text(&p, id);
    PGresult *r;
    int rc = run(pg(st), S_ARRAY_JOB_COUNTS, &p, &r, e, "counting an array's tasks");
    if (rc) return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t state = col_int(r, i, 0);
        if (state >= 0 && state < JOB_NSTATES) counts[state] += col_int(r, i, 1);
    }
    PQclear(r);
    return 0;
}

const struct store_ops store_pg_ops = {
    .scheme = "postgres",
    .schema = (int)ARRAY_SIZE(pg_migrations),
    .caps = STORE_CAP_SHARED | STORE_CAP_LEADER,
    .open = pg_open,
    .close = pg_close,
    .claim = pg_claim,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .savepoint = pg_savepoint,
    .savepoint_release = pg_savepoint_release,
    .savepoint_rollback = pg_savepoint_rollback,
    .job_insert = pg_job_insert,
    .job_insert_plain = pg_job_insert_plain,
    .job_get = pg_job_get,
    .job_get_by_key = pg_job_get_by_key,
    .id_match = pg_id_match,
    .job_get_run = pg_job_get_run,
    .job_list = pg_job_list,
    .job_lock = pg_job_lock,
    .job_lease = pg_job_lease,
    .job_update = pg_job_update,
    .job_scan = pg_job_scan,
    .job_each = pg_job_each,
    .job_prefetch = pg_job_prefetch,
    .log_append = pg_log_append,
    .log_read = pg_log_read,
    .agent_upsert = pg_agent_upsert,
    .agent_set_state = pg_agent_set_state,
    .agent_forget = pg_agent_forget,
    .agent_scan = pg_agent_scan,
    .queue_stats = pg_queue_stats,
    .token_insert = pg_token_insert,
    .token_find = pg_token_find,
    .session_insert = pg_session_insert,
    .session_find = pg_session_find,
    .session_delete = pg_session_delete,
    .token_delete = pg_token_delete,
    .token_count = pg_token_count,
    .token_scan = pg_token_scan,
    .event_add = pg_event_add,
    .event_list = pg_event_list,
    .event_window = pg_event_window,
    .event_prune = pg_event_prune,
    .webhook_due = pg_webhook_due,
    .webhook_delete = pg_webhook_delete,
    .webhook_retry = pg_webhook_retry,
    .webhook_count = pg_webhook_count,
    .service_insert = pg_service_insert,
    .service_get = pg_service_get,
    .service_list = pg_service_list,
    .service_retire = pg_service_retire,
    .meta_get = pg_meta_get,
    .meta_set = pg_meta_set,
    .workflow_insert = pg_workflow_insert,
    .workflow_by_key = pg_workflow_by_key,
    .workflow_get = pg_workflow_get,
    .workflow_list = pg_workflow_list,
    .workflow_of = pg_workflow_of,
    .job_set_spec = pg_job_set_spec,
    .trigger_insert = pg_trigger_insert,
    .trigger_get = pg_trigger_get,
    .trigger_list = pg_trigger_list,
    .trigger_delete = pg_trigger_delete,
    .trigger_update = pg_trigger_update,
    .trigger_fire_add = pg_trigger_fire_add,
    .trigger_fires = pg_trigger_fires,
    .trigger_fire_done = pg_trigger_fire_done,
    .trigger_fires_prune = pg_trigger_fires_prune,
    .trigger_last_target = pg_trigger_last_target,
    .trigger_pause = pg_trigger_pause,
    .array_insert = pg_array_insert,
    .array_get = pg_array_get,
    .array_list = pg_array_list,
    .array_set = pg_array_set,
    .array_open = pg_array_open,
    .array_item = pg_array_item,
    .array_task_add = pg_array_task_add,
    .array_task_ids = pg_array_task_ids,
    .array_job_counts = pg_array_job_counts,
    .job_expired = pg_job_expired,
    .job_held = pg_job_held,
    .job_defer = pg_job_defer,
    .job_delete = pg_job_delete,
    .array_task_gone = pg_array_task_gone,
    .token_tenant = pg_token_tenant,
    .token_set_tenant = pg_token_set_tenant,
    .tenant_put = pg_tenant_put,
    .tenant_scan = pg_tenant_scan,
    .tenant_waiting = pg_tenant_waiting,
    .queue_pause = pg_queue_pause,
    .queue_limit = pg_queue_limit,
    .queue_limits = pg_queue_limits,
    .queue_paused = pg_queue_paused,
    .leader_take = pg_leader_take,
    .agent_seen = pg_agent_seen,
    .agent_set_runtimes = pg_agent_set_runtimes,
    .listen = pg_listen,
    .tx_events = pg_tx_events,
    .notified = pg_notified,
    .leader_release = pg_leader_release,
};
