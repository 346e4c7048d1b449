/*
 * store_sqlite.c - the embedded store: one SQLite file in WAL mode.
 *
 * Each handle is one connection with its statements prepared once. SQLite
 * allows one writer at a time; the server gives all writes to one thread
 * (the group committer) and reads on another connection, which WAL lets run
 * beside the writer.
 *
 * Durability: synchronous=FULL syncs the WAL at every commit (power loss);
 * NORMAL syncs at checkpoints only, which still survives the process being
 * killed because committed pages are in the OS's cache.
 */
#include "store/store_int.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/lifecycle.h"
#include "store/schema/sqlite.h"
#include "store/sqlite_ckpt.h"
#include "store/sqlite_walbuf.h"

enum stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_SAVEPOINT,
    S_RELEASE,
    S_ROLLBACK_TO,
    S_JOB_INSERT,
    S_JOB_GET,
    S_JOB_GET_KEY,
    S_MATCH, /* store_id_match: S_MATCH + kind, S_MATCH_OWNER + kind */
    S_MATCH_OWNER = S_MATCH + STORE_NKINDS,
    S_MATCH_END = S_MATCH_OWNER + STORE_NKINDS - 1,
    S_JOB_GET_RUN,
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
    S_JOB_LEASE_READ,
    S_JOB_LEASE,
    S_JOB_SCAN,
    S_LOG_APPEND,
    S_LOG_READ,
    S_AGENT_UPSERT,
    S_AGENT_STATE,
    S_AGENT_FORGET_EVENT,
    S_AGENT_FORGET,
    S_AGENT_RUNTIMES,
    S_AGENT_SCAN,
    S_EVENT_AGENT,
    S_EVENT_ADD,
    S_EVENT_HORIZON,
    S_EVENT_WINDOW,
    S_EVENT_PRUNE,
    S_JOB_NOTIFY,
    S_EVENT_JOB_NEW,
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
    S_COUNT_ADD,
    S_JOB_UPDATE_READ,
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
    S_ARRAY_ITEM_INSERT,
    S_ARRAY_GET,
    S_ARRAY_LIST,
    S_ARRAY_SET,
    S_ARRAY_OPEN,
    S_ARRAY_ITEM,
    S_ARRAY_TASK_ADD,
    S_ARRAY_TASK_GONE,
    S_ARRAY_DROP_DONE,
    S_ARRAY_ITEMS_DROP,
    S_ARRAY_TASK_IDS,
    S_ARRAY_JOB_COUNTS,
    S_COUNT
};

#define JOB_COLUMNS                                                                                \
    "id, state, queue, service, name, idem_key, agent, priority, slots, attempt, max_attempts, "   \
    "created_at, started_at, finished_at, run_after, labels, spec, progress, result, attempts, "   \
    "owner, retention_ms, tenant"

#define ARRAY_COLUMNS                                                                              \
    "id, owner, tenant, queue, name, priority, kind, source, count, next_index, skips, spec, "     \
    "created_at, open"

#define SERVICE_COLUMNS "name, version, definition, created_by, created_at, retired_at"
#define TRIGGER_COLUMNS                                                                            \
    "id, owner, prefix, workflow, input, template, created_at, schedule, skip_overlap, timezone, " \
    "paused_at, resumed_at, updated_at"
#define FIRE_COLUMNS "id, trigger, uri, sha256, created_at, target, error, fired_at"

static const char *const stmt_sql[S_COUNT] = {
    [S_WF_INSERT] = "INSERT INTO workflows (id, owner, name, created_at, doc, idem_key) "
                    "VALUES (?,?,?,?,?,?)",
    [S_WF_BY_KEY] = "SELECT id FROM workflows WHERE coalesce(owner, '') = coalesce(?, '') "
                    "AND idem_key = ?",
    [S_WF_JOB] = "INSERT INTO workflow_jobs (job, workflow, node) VALUES (?,?,?)",
    [S_WF_GET] = "SELECT owner, name, created_at, doc FROM workflows WHERE id = ?",
    [S_WF_OF] = "SELECT workflow FROM workflow_jobs WHERE job = ?",
    [S_WF_FORGET] = "DELETE FROM workflow_jobs WHERE job = ? RETURNING workflow",
    [S_WF_DROP_EMPTY] = "DELETE FROM workflows WHERE id = ?1 AND NOT EXISTS "
                        "(SELECT 1 FROM workflow_jobs WHERE workflow = ?1)",
    [S_WF_LIST] = "SELECT id, owner, name, created_at, doc FROM workflows "
                  "WHERE (?1 IS NULL OR owner = ?1) AND (?2 IS NULL OR id < ?2) "
                  "ORDER BY id DESC LIMIT ?3",
    [S_JOB_SET_SPEC] = "UPDATE jobs SET spec = ? WHERE id = ?",
    [S_TRIGGER_INSERT] = "INSERT INTO triggers (id, owner, prefix, workflow, input, template, "
                         "created_at, schedule, skip_overlap, timezone) "
                         "VALUES (?,?,?,?,?,?,?,?,?,?)",
    [S_TRIGGER_UPDATE] = "UPDATE triggers SET prefix = ?2, workflow = ?3, input = ?4, "
                         "template = ?5, schedule = ?6, skip_overlap = ?7, timezone = ?8, "
                         "updated_at = ?9 WHERE id = ?1",
    [S_TRIGGER_GET] = "SELECT " TRIGGER_COLUMNS " FROM triggers WHERE id = ?",
    /* ids are UUIDv7: newest first by id, a page after the cursor's; LIMIT -1: all */
    [S_TRIGGER_LIST] = "SELECT " TRIGGER_COLUMNS " FROM triggers WHERE (?1 IS NULL OR owner = ?1) "
                       "AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
    [S_TRIGGER_DELETE] = "DELETE FROM triggers WHERE id = ?",
    [S_TRIGGER_DELETE_FIRES] = "DELETE FROM trigger_fires WHERE trigger = ?",
    /* every trigger whose prefix starts the URI (or the one named), once per object version;
       substr and length count characters, alike for both */
    [S_FIRE_ADD] = "INSERT INTO trigger_fires (trigger, uri, sha256, created_at) "
                   "SELECT id, ?1, ?2, ?3 FROM triggers "
                   "WHERE CASE WHEN ?4 IS NULL THEN schedule IS NULL "
                   "AND substr(?1, 1, length(prefix)) = prefix "
                   "ELSE id = ?4 END "
                   "ON CONFLICT (trigger, uri, sha256) DO NOTHING",
    [S_FIRE_PENDING] = "SELECT " FIRE_COLUMNS " FROM trigger_fires "
                       "WHERE target IS NULL AND error IS NULL AND trigger NOT IN "
                       "(SELECT id FROM triggers WHERE paused_at IS NOT NULL) ORDER BY id LIMIT ?",
    [S_FIRE_RECENT] = "SELECT " FIRE_COLUMNS " FROM trigger_fires WHERE trigger = ? "
                      "ORDER BY id DESC LIMIT ?",
    /* a schedule's fires but its newest `keep` (?2), those pending and its newest run */
    [S_FIRE_PRUNE] = "DELETE FROM trigger_fires WHERE trigger = ?1 "
                     "AND (target IS NOT NULL OR error IS NOT NULL) AND id <= "
                     "(SELECT id FROM trigger_fires WHERE trigger = ?1 ORDER BY id DESC "
                     "LIMIT 1 OFFSET ?2) AND id <> coalesce((SELECT max(id) FROM trigger_fires "
                     "WHERE trigger = ?1 AND target IS NOT NULL), 0)",
    [S_TRIGGER_PAUSE] = "UPDATE triggers SET paused_at = ?2 WHERE id = ?1 AND paused_at IS NULL",
    [S_TRIGGER_RESUME] = "UPDATE triggers SET paused_at = NULL, resumed_at = ?2 "
                         "WHERE id = ?1 AND paused_at IS NOT NULL",
    [S_FIRE_LAST_TARGET] = "SELECT target FROM trigger_fires WHERE trigger = ? AND id < ? "
                           "AND target IS NOT NULL ORDER BY id DESC LIMIT 1",
    [S_FIRE_DONE] = "UPDATE trigger_fires SET target = ?2, error = ?3, fired_at = ?4 "
                    "WHERE id = ?1 AND target IS NULL AND error IS NULL "
                    "RETURNING trigger, uri, sha256, "
                    "(SELECT owner FROM triggers t WHERE t.id = trigger_fires.trigger), "
                    "(SELECT workflow FROM triggers t WHERE t.id = trigger_fires.trigger)",
    [S_EVENT_TRIGGER] = "INSERT INTO events (at, kind, subject, state, owner, data) "
                        "VALUES (?, 3, ?, ?, ?, ?)",
    [S_ARRAY_INSERT] = "INSERT INTO arrays (" ARRAY_COLUMNS ") "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, '[]', ?10, ?11, ?9)",
    [S_ARRAY_ITEM_INSERT] = "INSERT INTO array_items (array_id, idx, item) VALUES (?, ?, ?)",
    [S_ARRAY_GET] = "SELECT " ARRAY_COLUMNS " FROM arrays WHERE id = ?",
    [S_ARRAY_LIST] = "SELECT " ARRAY_COLUMNS " FROM arrays "
                     "WHERE (?1 IS NULL OR owner = ?1) AND (?2 IS NULL OR id < ?2) "
                     "ORDER BY id DESC LIMIT ?3",
    [S_ARRAY_SET] = "UPDATE arrays SET next_index = ?1, skips = ?2, open = ?4 WHERE id = ?3",
    [S_ARRAY_OPEN] = "SELECT coalesce(sum(open), 0) FROM arrays WHERE tenant = ? AND open > 0",
    [S_ARRAY_ITEM] = "SELECT item FROM array_items WHERE array_id = ? AND idx = ?",
    [S_ARRAY_TASK_ADD] = "INSERT INTO array_tasks (array_id, idx, job) VALUES (?, ?, ?)",
    /* a task's job deleted: its row, then the array when it was the last and none is open */
    [S_ARRAY_TASK_GONE] = "DELETE FROM array_tasks WHERE job = ? RETURNING array_id",
    [S_ARRAY_DROP_DONE] = "DELETE FROM arrays WHERE id = ?1 AND open = 0 AND NOT EXISTS "
                          "(SELECT 1 FROM array_tasks WHERE array_id = ?1)",
    [S_ARRAY_ITEMS_DROP] = "DELETE FROM array_items WHERE array_id = ?",
    [S_ARRAY_TASK_IDS] = "SELECT idx, job FROM array_tasks WHERE array_id = ? "
                         "AND idx BETWEEN ? AND ? ORDER BY idx",
    [S_ARRAY_JOB_COUNTS] = "SELECT j.state, count(*) FROM array_tasks t JOIN jobs j ON j.id = t.job "
                           "WHERE t.array_id = ? GROUP BY j.state",
    [S_SERVICE_INSERT] = "INSERT INTO services (name, version, definition, created_by, created_at) "
                         "SELECT ?1, coalesce(max(version), 0) + 1, ?2, ?3, ?4 FROM services "
                         "WHERE name = ?1 RETURNING version",
    [S_SERVICE_GET] = "SELECT " SERVICE_COLUMNS " FROM services WHERE name = ? AND version = ?",
    [S_SERVICE_LATEST] = "SELECT " SERVICE_COLUMNS " FROM services WHERE name = ? "
                         "ORDER BY version DESC LIMIT 1",
    [S_SERVICE_LIST] = "SELECT " SERVICE_COLUMNS " FROM services s WHERE version = "
                       "(SELECT max(version) FROM services WHERE name = s.name) ORDER BY name",
    [S_SERVICE_RETIRE] = "UPDATE services SET retired_at = coalesce(retired_at, ?2) "
                         "WHERE name = ?1 AND version = "
                         "(SELECT max(version) FROM services WHERE name = ?1)",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT op",
    [S_RELEASE] = "RELEASE op",
    [S_ROLLBACK_TO] = "ROLLBACK TO op",
    [S_JOB_INSERT] = "INSERT INTO jobs (" JOB_COLUMNS ") VALUES "
                     "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [S_JOB_GET] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?",
    [S_JOB_GET_KEY] = "SELECT " JOB_COLUMNS " FROM jobs WHERE coalesce(owner, '') = "
                      "coalesce(?2, '') AND idem_key = ?1 AND idem_key IS NOT NULL",
    /* Ids are lower-case hex and '-', all below 'g': [p, p || 'g') holds those starting with p. */
#define MATCH(table)                                                                           \
    "SELECT id FROM " table " WHERE id >= ?1 AND id < ?1 || 'g' ORDER BY id LIMIT ?2"
#define MATCH_OWNER(table)                                                                     \
    "SELECT id FROM " table " WHERE id >= ?1 AND id < ?1 || 'g' AND owner = ?3 "             \
    "ORDER BY id LIMIT ?2"
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
    /* The same columns with labels and spec left out (NULL). */
    [S_JOB_GET_RUN] = "SELECT id, state, queue, service, name, idem_key, agent, priority, slots, "
                      "attempt, max_attempts, created_at, started_at, finished_at, run_after, "
                      "NULL, NULL, progress, result, attempts, owner, retention_ms, tenant FROM jobs "
                      "WHERE id = ?",
    /* job_counts alone (every state since schema 18): the cost is the queues', however
       many jobs there are, finished or not. A row whose count went to 0 stays. */
    /* an array's tasks not claimed yet (open) are queued jobs of its queue (state 1) */
    [S_QUEUE_STATS] = "SELECT queue, state, sum(n) FROM (SELECT queue, state, n FROM job_counts "
                      "UNION ALL SELECT queue, 1, open FROM arrays WHERE open > 0) "
                      "GROUP BY queue, state HAVING sum(n) != 0 ORDER BY queue, state",
    [S_QUEUE_STATS_OWNER] = "SELECT queue, state, sum(n) FROM (SELECT queue, state, n FROM "
                            "job_counts WHERE owner = ?1 UNION ALL SELECT queue, 1, open FROM "
                            "arrays WHERE open > 0 AND owner = ?1) GROUP BY queue, state "
                            "HAVING sum(n) != 0 ORDER BY queue, state",
    [S_TOKEN_INSERT] = "INSERT INTO tokens (name, role, hash, created_at) "
                       "VALUES (?, ?, ?, strftime('%s','now') * 1000)",
    [S_TOKEN_FIND] = "SELECT role, name FROM tokens WHERE hash = ?",
    [S_TOKEN_DELETE] = "DELETE FROM tokens WHERE name = ?",
    [S_TOKEN_COUNT] = "SELECT count(*) FROM tokens WHERE role = ?",
    [S_TOKEN_SCAN] = "SELECT name, role, tenant, created_at FROM tokens ORDER BY name",
    [S_SESSION_PRUNE] = "DELETE FROM sessions WHERE expires_at <= ?",
    /* a name's sessions but its newest ? */
    [S_SESSION_TRIM] = "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions "
                       "WHERE name = ? ORDER BY expires_at DESC, id_hash LIMIT -1 OFFSET ?)",
    [S_SESSION_COUNT] = "SELECT count(*) FROM sessions",
    [S_SESSION_INSERT] = "INSERT INTO sessions (id_hash, token_hash, csrf, role, name, "
                         "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
    [S_SESSION_FIND] = "SELECT token_hash, csrf, role, name, expires_at FROM sessions "
                       "WHERE id_hash = ? AND expires_at > ?",
    [S_SESSION_DELETE] = "DELETE FROM sessions WHERE id_hash = ?",
    [S_META_GET] = "SELECT v FROM meta WHERE k = ?",
    [S_META_SET] = "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = "
                   "excluded.v",
    /* a row back: the lease is the holder's (new, renewed or taken over) */
    [S_LEADER_TAKE] = "INSERT INTO leader (name, holder, expires_at) VALUES (?1, ?2, ?3) "
                      "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                      "expires_at = excluded.expires_at "
                      "WHERE leader.holder = excluded.holder OR leader.expires_at <= ?4 "
                      "RETURNING holder",
    [S_AGENT_SEEN] = "UPDATE agents SET last_seen = ?2 WHERE id = ?1 AND last_seen < ?2",
    [S_LEADER_RELEASE] = "UPDATE leader SET expires_at = 0 WHERE name = ? AND holder = ?",
    /* No RETURNING (whether the job's events go to a webhook: S_JOB_UPDATE_READ before it):
       SQLite gathers a RETURNING's rows in a temporary b-tree it makes and drops for each
       statement, ~10 % of the server's CPU per job in a noop drain. */
    [S_JOB_UPDATE] = "UPDATE jobs SET state = ?, agent = ?, attempt = ?, started_at = ?, "
                     "finished_at = ?, run_after = ?, progress = ?, result = ?, attempts = ? "
                     "WHERE id = ? AND attempt = ? AND ((1 << state) & ?) != 0",
    /* a lease reads only what its step and its event need; the spec as stored text */
    [S_JOB_LEASE_READ] = "SELECT state, attempt, queue, owner, spec, notify_url, notify_all "
                         "FROM jobs WHERE id = ?",
    [S_JOB_LEASE] = "UPDATE jobs SET state = ?, agent = ?, attempt = ?, started_at = ?, "
                    "finished_at = ?, progress = ? WHERE id = ? AND attempt = ? AND state = ?",
    [S_JOB_SCAN] = "SELECT " JOB_COLUMNS " FROM jobs WHERE ((1 << state) & ?) != 0 ORDER BY id",
    [S_LOG_APPEND] = "INSERT OR IGNORE INTO job_logs (job, attempt, stream, off, data) "
                     "VALUES (?, ?, ?, ?, ?)",
    [S_LOG_READ] = "SELECT off, data FROM job_logs WHERE job = ? AND attempt = ? AND stream = ? "
                   "AND off + length(data) > ? ORDER BY off",
    /* A name registered by another token is left alone: no row comes back. */
    [S_AGENT_UPSERT] = "INSERT INTO agents (id, name, labels, queues, slots, version, state, "
                       "last_seen, registered_at, owner, instance, runtimes, limits) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET labels = excluded.labels, "
                       "queues = excluded.queues, slots = excluded.slots, "
                       "version = excluded.version, state = excluded.state, "
                       "last_seen = excluded.last_seen, owner = excluded.owner, "
                       "instance = excluded.instance, runtimes = excluded.runtimes, "
                       "limits = excluded.limits "
                       "WHERE agents.owner IS NULL OR agents.owner = excluded.owner RETURNING id",
    [S_AGENT_STATE] = "UPDATE agents SET state = ?, last_seen = ? WHERE id = ?",
    /* store_agent_forget: the event first, while the row is there, on the condition */
    [S_AGENT_FORGET_EVENT] = "INSERT INTO events (at, kind, subject, state, agent) "
                             "SELECT ?1, 1, id, ?4, name FROM agents "
                             "WHERE id = ?2 AND state IN (?5, ?6) AND last_seen < ?3",
    [S_AGENT_FORGET] = "DELETE FROM agents WHERE id = ?1",
    [S_AGENT_RUNTIMES] = "UPDATE agents SET runtimes = ?2 WHERE id = ?1",
    [S_AGENT_SCAN] = "SELECT id, name, labels, queues, slots, version, state, last_seen, "
                     "registered_at, owner, instance, runtimes, limits FROM agents ORDER BY name",
    [S_EVENT_AGENT] = "INSERT INTO events (at, kind, subject, state, agent) "
                      "SELECT ?, 1, id, state, name FROM agents WHERE id = ?",
    [S_EVENT_ADD] = "INSERT INTO events (at, kind, subject, queue, state, owner, data) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
    [S_QUEUE_PAUSE] = "INSERT INTO queue_pauses (queue, at, paused_by) VALUES (?, ?, ?) "
                      "ON CONFLICT (queue) DO NOTHING",
    [S_QUEUE_RESUME] = "DELETE FROM queue_pauses WHERE queue = ?",
    [S_QUEUE_PAUSED] = "SELECT queue, at FROM queue_pauses ORDER BY queue",
    /* a change only when the limit is new or other */
    [S_QUEUE_LIMIT] = "INSERT INTO queue_limits (queue, max_running, at, set_by) "
                      "VALUES (?, ?, ?, ?) "
                      "ON CONFLICT (queue) DO UPDATE SET max_running = excluded.max_running, "
                      "at = excluded.at, set_by = excluded.set_by "
                      "WHERE max_running <> excluded.max_running",
    [S_QUEUE_UNLIMIT] = "DELETE FROM queue_limits WHERE queue = ?",
    [S_QUEUE_LIMITS] = "SELECT queue, max_running FROM queue_limits ORDER BY queue",
    [S_EVENT_WINDOW] = "SELECT (SELECT min(seq) FROM events), "
                       "(SELECT seq FROM sqlite_sequence WHERE name = 'events'), "
                       "(SELECT CAST(v AS INTEGER) FROM meta WHERE k = 'events_pruned')",
    /* the newest event the prune deleted: those kept older than it (a delivery's) are not
       part of the window (store_event_window) */
    [S_EVENT_HORIZON] = "INSERT INTO meta (k, v) VALUES ('events_pruned', ?) ON CONFLICT (k) DO "
                        "UPDATE SET v = max(CAST(v AS INTEGER), CAST(excluded.v AS INTEGER))",
    /* events a delivery still needs are kept */
    [S_EVENT_PRUNE] = "DELETE FROM events WHERE (at < ?1 OR seq <= (SELECT max(seq) FROM events) - ?2) "
                      "AND seq NOT IN (SELECT event_seq FROM webhook_outbox) RETURNING seq",
    [S_JOB_NOTIFY] = "UPDATE jobs SET notify_url = ?, notify_all = ? WHERE id = ?",
    /* a job's event, from the record just written */
    [S_EVENT_JOB_NEW] = "INSERT INTO events (at, kind, subject, queue, state, attempt, agent, "
                        "owner, data) VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?)",
    [S_WEBHOOK_ADD] = "INSERT INTO webhook_outbox (event_seq, url, created_at, next_at) "
                      "VALUES (last_insert_rowid(), ?, ?, ?)",
    [S_WEBHOOK_DUE] = "SELECT o.id, o.url, o.tries, o.created_at, e.seq, e.at, e.kind, e.subject, "
                      "e.queue, e.state, e.attempt, e.agent, e.data FROM webhook_outbox o "
                      "JOIN events e ON e.seq = o.event_seq WHERE o.next_at <= ? "
                      "ORDER BY o.next_at, o.id LIMIT ?",
    [S_WEBHOOK_DELETE] = "DELETE FROM webhook_outbox WHERE id = ?",
    [S_WEBHOOK_RETRY] = "UPDATE webhook_outbox SET tries = ?, next_at = ?, last_error = ? "
                        "WHERE id = ?",
    [S_WEBHOOK_COUNT] = "SELECT count(*) FROM webhook_outbox",
    /* each half reads its own partial index (schema 7), the longest ended first */
    [S_JOB_EXPIRED] = "SELECT id FROM (SELECT id, finished_at AS t FROM jobs WHERE state >= 4 "
                      "AND retention_ms IS NULL AND finished_at <= ?1 - ?2 "
                      "ORDER BY finished_at LIMIT ?3) "
                      "UNION ALL SELECT id FROM (SELECT id, finished_at + retention_ms AS t "
                      "FROM jobs WHERE state >= 4 AND retention_ms IS NOT NULL "
                      "AND finished_at + retention_ms <= ?1 "
                      "ORDER BY finished_at + retention_ms LIMIT ?3) LIMIT ?3",
    /* store_job_held: a workflow's nodes through workflow_jobs_workflow; a task's array through
       array_tasks_job, its unfinished tasks through jobs_state_queue (by state, its queue, the
       ids of the arrays made in its millisecond: ?2..?3) */
    [S_JOB_HELD] = "SELECT EXISTS (SELECT 1 FROM workflow_jobs w JOIN workflow_jobs o "
                   "ON o.workflow = w.workflow JOIN jobs j ON j.id = o.job "
                   "WHERE w.job = ?1 AND j.state < 4) "
                   "OR EXISTS (SELECT 1 FROM array_tasks t JOIN arrays a ON a.id = t.array_id "
                   "WHERE t.job = ?1 AND (a.open > 0 OR EXISTS (SELECT 1 FROM jobs j "
                   "WHERE j.state IN (1, 2, 3) AND j.queue = a.queue AND j.id >= ?2 "
                   "AND j.id < ?3) OR EXISTS (SELECT 1 FROM workflow_jobs w JOIN workflow_jobs o "
                   "ON o.workflow = w.workflow JOIN jobs j ON j.id = o.job "
                   "WHERE w.job = t.array_id AND j.state < 4)))",
    [S_JOB_DEFER] = "UPDATE jobs SET retention_ms = ?2 - finished_at WHERE id = ?1 AND state >= 4",
    /* what job_counts needs of the job deleted */
    [S_JOB_DELETE] = "DELETE FROM jobs WHERE id = ? AND state >= 4 RETURNING state, queue, owner",
    [S_JOB_DELETE_LOGS] = "DELETE FROM job_logs WHERE job = ?",
    [S_TOKEN_TENANT] = "SELECT coalesce(tenant, name) FROM tokens WHERE name = ?",
    [S_TOKEN_SET_TENANT] = "UPDATE tokens SET tenant = ? WHERE name = ?",
    [S_TENANT_PUT] = "INSERT INTO tenants (name, max_running, max_queued, weight) "
                     "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                     "max_running = excluded.max_running, max_queued = excluded.max_queued, "
                     "weight = excluded.weight",
    [S_TENANT_SCAN] = "SELECT name, max_running, max_queued, weight FROM tenants ORDER BY name",
    /* blocked or queued (jobs_tenant_waiting: its WHERE, word for word, lets the plan use it) */
    [S_TENANT_WAITING] = "SELECT count(*) FROM jobs WHERE tenant = ? AND state < 2",
    [S_COUNT_ADD] = "INSERT INTO job_counts (queue, owner, state, n) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (queue, owner, state) DO UPDATE SET n = n + excluded.n",
    /* what a job's update needs of the row it changes: the state it leaves (job_counts) and
       its webhook (its event) */
    [S_JOB_UPDATE_READ] = "SELECT state, notify_url, notify_all FROM jobs WHERE id = ?",
};

/* Rows of one multi-row INSERT of new jobs and of their events (sqlite_job_insert_plain). */
#define INSERT_ROWS 64

struct store_sqlite {
    struct store base;
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmt[S_COUNT];
    /* [k]: the INSERT of k jobs, and of their k events; prepared when first needed */
    sqlite3_stmt *insert_jobs[INSERT_ROWS + 1], *insert_events[INSERT_ROWS + 1];
    struct sqlite_ckpt *ckpt; /* store_opts.checkpointer */
    struct count_deltas counts; /* job_counts' changes in the open transaction (store_int.h) */
};

static struct store_sqlite *sq(struct store *st)
{
    if (st->ops != &store_sqlite_ops)
        abort();
    return (struct store_sqlite *)st;
}

/*
 * A write SQLite could not make because the file may not grow: a file size
 * limit (RLIMIT_FSIZE: EFBIG) reached by the database or its WAL, or no space
 * left. SQLite reports ENOSPC alone as SQLITE_FULL and keeps no errno it can
 * be asked for reliably, so the files are looked at.
 */
static bool db_cannot_grow(struct store_sqlite *s)
{
    struct rlimit rl;
    struct statvfs vfs;
    if (!getrlimit(RLIMIT_FSIZE, &rl) && rl.rlim_cur != RLIM_INFINITY) {
        char *wal = xasprintf("%s-wal", s->path);
        const char *files[] = {s->path, wal};
        bool at_limit = false;
        for (int i = 0; i < 2 && !at_limit; i++) {
            struct stat st;
            at_limit = !stat(files[i], &st) && (rlim_t)st.st_size + 65536 >= rl.rlim_cur;
        }
        free(wal);
        if (at_limit)
            return true;
    }
    return !statvfs(s->path, &vfs) && vfs.f_bavail == 0;
}

static int db_err(struct store_sqlite *s, struct err *e, const char *what)
{
    int rc = sqlite3_extended_errcode(s->db);
    int code = ERR_INTERNAL;
    if ((rc & 0xff) == SQLITE_FULL || (rc == SQLITE_IOERR_WRITE && db_cannot_grow(s)))
        code = ERR_NOSPACE;
    else if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
        code = ERR_UNAVAILABLE;
    else if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        code = ERR_CONFLICT;
    return err_set(e, code, "store '%s': %s: %s", s->path, what,
                   code == ERR_NOSPACE ? "no space left (or the file size limit reached)"
                                       : sqlite3_errmsg(s->db));
}

/* Resets a statement for reuse and returns it. */
static sqlite3_stmt *stmt(struct store_sqlite *s, enum stmt_id id)
{
    sqlite3_stmt *q = s->stmt[id];
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return q;
}

static void bind_text(sqlite3_stmt *q, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(q, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(q, i);
}

/* For strings that outlive the statement's step (the record being written): no copy. */
static void bind_text_static(sqlite3_stmt *q, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(q, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, i);
}

static void bind_time(sqlite3_stmt *q, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(q, i, v);
    else
        sqlite3_bind_null(q, i);
}

/* Binds text s (NULL: SQL NULL), which SQLite frees. */
static void bind_owned(sqlite3_stmt *q, int i, char *s)
{
    if (s)
        sqlite3_bind_text(q, i, s, -1, free);
    else
        sqlite3_bind_null(q, i);
}

static void bind_json(sqlite3_stmt *q, int i, const json_t *v)
{
    bind_owned(q, i, job_json_dump(v));
}

static void bind_spec(sqlite3_stmt *q, int i, const json_t *spec)
{
    bind_owned(q, i, job_spec_dump(spec));
}

/* Runs a statement that returns no rows. */
static int exec_stmt(struct store_sqlite *s, sqlite3_stmt *q, struct err *e, const char *what)
{
    int rc = sqlite3_step(q);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = db_err(s, e, what);
        sqlite3_reset(q);
        return rc;
    }
    sqlite3_reset(q);
    return 0;
}

/* ---- job_counts (store_int.h) ---- */

static int count_add(struct store_sqlite *s, const char *queue, const char *owner, int state,
                     int64_t n, struct err *e)
{
    sqlite3_stmt *q = stmt(s, S_COUNT_ADD);
    bind_text(q, 1, queue);
    bind_text(q, 2, owner ? owner : "");
    sqlite3_bind_int(q, 3, state);
    sqlite3_bind_int64(q, 4, n);
    return exec_stmt(s, q, e, "counting jobs");
}

/* Writes the transaction's deltas, one statement per (queue, owner, state); clears them. */
static int count_flush(struct store_sqlite *s, struct err *e)
{
    count_deltas_merge(&s->counts);
    int rc = 0;
    for (size_t i = 0; i < s->counts.n && !rc; i++) {
        const struct count_delta *d = &s->counts.v[i];
        rc = count_add(s, d->queue, d->owner, d->state, d->n, e);
    }
    count_deltas_drop(&s->counts, 0);
    return rc;
}

/* A job written just now went from state `from` to `to` (-1: none): noted for the commit;
   a write outside a transaction (store.h asks for one) is counted at once. */
static int count_note(struct store_sqlite *s, const char *queue, const char *owner, int from,
                      int to, struct err *e)
{
    count_deltas_note(&s->counts, queue, owner, from, to);
    return sqlite3_get_autocommit(s->db) ? count_flush(s, e) : 0;
}

static int exec_sql(struct store_sqlite *s, const char *sql, struct err *e)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = err_set(e, ERR_INTERNAL, "store '%s': %s", s->path, msg ? msg : "error");
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

static char *col_text(sqlite3_stmt *q, int i)
{
    const unsigned char *t = sqlite3_column_text(q, i);
    return t ? xstrdup((const char *)t) : NULL;
}

static void row_to_job(sqlite3_stmt *q, struct job *j)
{
    job_init(j);
    snprintf(j->id, sizeof(j->id), "%s", (const char *)sqlite3_column_text(q, 0));
    j->state = sqlite3_column_int(q, 1);
    j->queue = col_text(q, 2);
    j->service = col_text(q, 3);
    j->name = col_text(q, 4);
    j->key = col_text(q, 5);
    j->agent = col_text(q, 6);
    j->priority = sqlite3_column_int(q, 7);
    j->slots = sqlite3_column_int(q, 8);
    j->attempt = sqlite3_column_int(q, 9);
    j->max_attempts = sqlite3_column_int(q, 10);
    j->created_at = sqlite3_column_int64(q, 11);
    j->started_at = sqlite3_column_int64(q, 12);
    j->finished_at = sqlite3_column_int64(q, 13);
    j->run_after = sqlite3_column_int64(q, 14);
    j->labels = job_json_load((const char *)sqlite3_column_text(q, 15));
    job_set_spec(j, job_json_load((const char *)sqlite3_column_text(q, 16)));
    j->progress = job_json_load((const char *)sqlite3_column_text(q, 17));
    j->result = job_json_load((const char *)sqlite3_column_text(q, 18));
    j->attempts = job_json_load((const char *)sqlite3_column_text(q, 19));
    j->owner = col_text(q, 20);
    j->retention_ms = sqlite3_column_int64(q, 21);
    j->tenant = col_text(q, 22);
}

static int migrate(struct store_sqlite *s, struct err *e)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK)
        return db_err(s, e, "reading the schema version");
    int version = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int(q, 0) : 0;
    sqlite3_finalize(q);
    int latest = (int)ARRAY_SIZE(sqlite_migrations);
    if (version > latest)
        return err_set(e, ERR_INVALID,
                       "store '%s' has schema version %d, newer than this drover knows (%d)",
                       s->path, version, latest);
    for (int v = version; v < latest; v++) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", v + 1);
        int rc = exec_sql(s, "BEGIN IMMEDIATE", e);
        if (!rc)
            rc = exec_sql(s, sqlite_migrations[v], e);
        if (!rc)
            rc = exec_sql(s, pragma, e);
        if (!rc)
            rc = exec_sql(s, "COMMIT", e);
        if (rc) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
    return 0;
}

static void sqlite_close(struct store *st)
{
    struct store_sqlite *s = sq(st);
    sqlite_ckpt_stop(s->ckpt, s->db);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(s->stmt[i]);
    for (int i = 0; i <= INSERT_ROWS; i++) {
        sqlite3_finalize(s->insert_jobs[i]);
        sqlite3_finalize(s->insert_events[i]);
    }
    sqlite3_close(s->db);
    count_deltas_drop(&s->counts, 0);
    free(s->counts.v);
    free(s->path);
    free(s);
}

static bool walbuf_ok; /* the writer's VFS is registered (sqlite_walbuf.h) */

/*
 * SQLite's memory statistics (on by default) take a global mutex around every
 * allocation it makes: ~3 % of the writer thread in batches of 1,000. drover
 * reads none of them. Only possible before SQLite initialises (else
 * SQLITE_MISUSE, and the statistics stay on: harmless); the VFS's registration
 * initialises it, so it comes after.
 */
static void sqlite_setup(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    walbuf_ok = sqlite_walbuf_register() == SQLITE_OK;
}

static int sqlite_open(const char *uri, const struct store_opts *opts, struct store **out,
                       struct err *e)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sqlite_setup);
    const char *path = uri + strlen("sqlite:");
    if (!*path)
        return err_set(e, ERR_INVALID, "store '%s': a path is needed (sqlite:PATH)", uri);
    struct store_sqlite *s = xcalloc(1, sizeof(*s));
    s->base.ops = &store_sqlite_ops;
    s->path = xstrdup(path);
    int rc;
    /* The writer (the connection with the checkpointer) writes each commit's WAL frames at
       once (sqlite_walbuf.h); readers never write the WAL. */
    bool writer = opts && opts->checkpointer;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        writer && walbuf_ok ? SQLITE_WALBUF_VFS : NULL) != SQLITE_OK) {
        rc = err_set(e, ERR_IO, "cannot open store '%s': %s", path,
                     s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(s->db, 10000);
    /*
     * The writer's page cache is kept small: SQLite scans all of it at the end of each
     * transaction that split a b-tree page (balance_nonroot moves a page through the
     * lock-byte page's number, and the cache then truncates past it: its whole hash table is
     * walked, ~10 % of the writer's time per job with 64 MiB, ~7 % of the server's with 16).
     * 4 MiB (1,024 pages) holds what a transaction touches, a group commit of batches of
     * 1,000 specs too (no spill), and cut the writer's CPU per /bin/true job by ~9 % against
     * 16 MiB. Readers keep a large one.
     */
    char pragmas[256];
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s; PRAGMA foreign_keys = ON;"
             "PRAGMA cache_size = %d; PRAGMA temp_store = MEMORY;",
             opts && opts->sync_full ? "FULL" : "NORMAL", writer ? -4096 : -65536);
    if ((rc = exec_sql(s, pragmas, e)) || (rc = migrate(s, e)))
        goto out;
    if (opts && opts->checkpointer &&
        !(s->ckpt = sqlite_ckpt_start(s->db, path,
                                      opts->sync_full ? "PRAGMA synchronous = FULL"
                                                      : "PRAGMA synchronous = NORMAL",
                                      e))) {
        rc = e->code;
        goto out;
    }
    for (int i = 0; i < S_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                               NULL) != SQLITE_OK) {
            rc = db_err(s, e, "preparing statements");
            goto out;
        }
    }
    *out = &s->base;
    return 0;
out:
    sqlite_close(&s->base);
    return rc;
}

static int sqlite_begin(struct store *st, struct err *e)
{
    struct store_sqlite *s = sq(st);
    count_deltas_drop(&s->counts, 0);
    return exec_stmt(s, stmt(s, S_BEGIN), e, "begin");
}

static int sqlite_commit(struct store *st, struct err *e)
{
    struct store_sqlite *s = sq(st);
    int rc = count_flush(s, e);
    return rc ? rc : exec_stmt(s, stmt(s, S_COMMIT), e, "commit");
}

static void sqlite_rollback(struct store *st)
{
    struct store_sqlite *s = sq(st);
    count_deltas_drop(&s->counts, 0);
    if (!sqlite3_get_autocommit(s->db))
        exec_stmt(s, stmt(s, S_ROLLBACK), NULL, "rollback");
}

static int sqlite_savepoint(struct store *st, struct err *e)
{
    struct store_sqlite *s = sq(st);
    s->counts.sp = s->counts.n;
    return exec_stmt(s, stmt(s, S_SAVEPOINT), e, "savepoint");
}

static int sqlite_savepoint_release(struct store *st, struct err *e)
{
    struct store_sqlite *s = sq(st);
    return exec_stmt(s, stmt(s, S_RELEASE), e, "release savepoint");
}

static void sqlite_savepoint_rollback(struct store *st)
{
    struct store_sqlite *s = sq(st);
    count_deltas_drop(&s->counts, s->counts.sp);
    exec_stmt(s, stmt(s, S_ROLLBACK_TO), NULL, "rollback to savepoint");
    exec_stmt(s, stmt(s, S_RELEASE), NULL, "release savepoint");
}

/* Appends the event of a change just made to agent `id`, in the same transaction. */
static int agent_event(struct store_sqlite *s, const char *id, struct err *e)
{
    sqlite3_stmt *q = stmt(s, S_EVENT_AGENT);
    sqlite3_bind_int64(q, 1, time_now_ms());
    bind_text(q, 2, id);
    return exec_stmt(s, q, e, "appending an event");
}

/* Binds the event of job record j (S_EVENT_JOB_NEW's 8 values) from parameter base + 1 on. */
static void bind_job_event(sqlite3_stmt *q, int base, const struct job *j, int64_t now)
{
    sqlite3_bind_int64(q, base + 1, now);
    bind_text_static(q, base + 2, j->id);
    bind_text_static(q, base + 3, j->queue);
    sqlite3_bind_int(q, base + 4, j->state);
    sqlite3_bind_int(q, base + 5, j->attempt);
    bind_text_static(q, base + 6, j->agent);
    bind_text_static(q, base + 7, j->owner);
    json_t *data = store_event_data(j);
    bind_json(q, base + 8, data);
    json_decref(data);
}

/*
 * Appends the event of the job record j just written, in the same
 * transaction; and, when the job has a webhook (url, notify all) that wants
 * this event, its delivery to the outbox.
 */
static int job_event(struct store_sqlite *s, const struct job *j, const char *url, bool all,
                     struct err *e)
{
    int64_t now = time_now_ms();
    sqlite3_stmt *q = stmt(s, S_EVENT_JOB_NEW);
    bind_job_event(q, 0, j, now);
    int rc = exec_stmt(s, q, e, "appending an event");
    if (rc || !store_webhook_wants(url, all, j->state))
        return rc;
    q = stmt(s, S_WEBHOOK_ADD);
    bind_text(q, 1, url);
    sqlite3_bind_int64(q, 2, now);
    sqlite3_bind_int64(q, 3, now);
    s->base.webhook_queued = true;
    return exec_stmt(s, q, e, "queueing a webhook");
}

#define JOB_VALUES 23 /* JOB_COLUMNS */
#define EVENT_VALUES 8 /* S_EVENT_JOB_NEW's */

/* Binds job record j (JOB_COLUMNS) from parameter base + 1 on. */
static void bind_job(sqlite3_stmt *q, int base, const struct job *j)
{
    bind_text_static(q, base + 1, j->id);
    sqlite3_bind_int(q, base + 2, j->state);
    bind_text_static(q, base + 3, j->queue);
    bind_text_static(q, base + 4, j->service);
    bind_text_static(q, base + 5, j->name);
    bind_text_static(q, base + 6, j->key);
    bind_text_static(q, base + 7, j->agent);
    sqlite3_bind_int(q, base + 8, j->priority);
    sqlite3_bind_int(q, base + 9, j->slots);
    sqlite3_bind_int(q, base + 10, j->attempt);
    sqlite3_bind_int(q, base + 11, j->max_attempts);
    sqlite3_bind_int64(q, base + 12, j->created_at);
    bind_time(q, base + 13, j->started_at);
    bind_time(q, base + 14, j->finished_at);
    sqlite3_bind_int64(q, base + 15, j->run_after);
    bind_json(q, base + 16, j->labels);
    if (j->spec_text)
        sqlite3_bind_text(q, base + 17, j->spec_text, -1, SQLITE_STATIC);
    else
        bind_spec(q, base + 17, j->spec);
    bind_json(q, base + 18, j->progress);
    bind_json(q, base + 19, j->result);
    bind_json(q, base + 20, j->attempts);
    bind_text_static(q, base + 21, j->owner);
    bind_time(q, base + 22, j->retention_ms);
    bind_text_static(q, base + 23, j->tenant);
}

static int sqlite_job_insert(struct store *st, const struct job *j, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_JOB_INSERT);
    bind_job(q, 0, j);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(q);
        if ((rc = count_note(s, j->queue, j->owner, -1, j->state, e)))
            return rc;
        bool all;
        const char *url = store_job_notify(j, &all);
        if (url) {
            q = stmt(s, S_JOB_NOTIFY);
            bind_text(q, 1, url);
            sqlite3_bind_int(q, 2, all);
            bind_text(q, 3, j->id);
            if ((rc = exec_stmt(s, q, e, "inserting a job")))
                return rc;
        }
        return job_event(s, j, url, all, e);
    }
    if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_UNIQUE && j->key)
        rc = err_field(e, ERR_CONFLICT, "key", "key '%s' is already used by another job", j->key);
    else
        rc = db_err(s, e, "inserting a job");
    sqlite3_reset(q);
    return rc;
}

/*
 * The statement that inserts k rows (1 <= k <= INSERT_ROWS) of `values`
 * parameters each into jobs (events false: JOB_COLUMNS) or events (true:
 * a new job's event, as S_EVENT_JOB_NEW), prepared on first use and kept.
 */
static int insert_rows(struct store_sqlite *s, bool events, int k, sqlite3_stmt **out,
                       struct err *e)
{
    sqlite3_stmt **q = events ? &s->insert_events[k] : &s->insert_jobs[k];
    if (!*q) {
        int values = events ? EVENT_VALUES : JOB_VALUES;
        struct buf sql = BUF_INIT;
        buf_adds(&sql, events ? "INSERT INTO events (at, kind, subject, queue, state, attempt, "
                                "agent, owner, data) VALUES "
                              : "INSERT INTO jobs (" JOB_COLUMNS ") VALUES ");
        for (int r = 0; r < k; r++) {
            buf_adds(&sql, r ? ",(" : "(");
            for (int v = 0; v < values; v++) {
                buf_adds(&sql, v ? ",?" : "?");
                if (events && v == 0) /* kind: 0, a job's event */
                    buf_adds(&sql, ",0");
            }
            buf_addc(&sql, ')');
        }
        int rc = sqlite3_prepare_v3(s->db, sql.data, (int)sql.len, SQLITE_PREPARE_PERSISTENT, q,
                                    NULL);
        buf_release(&sql);
        if (rc != SQLITE_OK)
            return db_err(s, e, "preparing a multi-row insert");
    }
    sqlite3_reset(*q);
    sqlite3_clear_bindings(*q);
    *out = *q;
    return 0;
}

/* Inserts jobs[0..k) (no key, no webhook) and then their events, one statement each. */
static int insert_chunk(struct store_sqlite *s, struct job *const *jobs, int k, struct err *e)
{
    sqlite3_stmt *q;
    int rc = insert_rows(s, false, k, &q, e);
    if (rc)
        return rc;
    for (int r = 0; r < k; r++)
        bind_job(q, r * JOB_VALUES, jobs[r]);
    if ((rc = exec_stmt(s, q, e, "inserting jobs")))
        return rc;
    for (int r = 0; r < k; r++)
        if ((rc = count_note(s, jobs[r]->queue, jobs[r]->owner, -1, jobs[r]->state, e)))
            return rc;
    sqlite3_clear_bindings(q); /* the texts bound with a destructor go now */
    if ((rc = insert_rows(s, true, k, &q, e)))
        return rc;
    int64_t now = time_now_ms();
    for (int r = 0; r < k; r++)
        bind_job_event(q, r * EVENT_VALUES, jobs[r], now);
    rc = exec_stmt(s, q, e, "appending events");
    sqlite3_clear_bindings(q);
    return rc;
}

/*
 * Plain jobs (store_job_insert_many), one statement per INSERT_ROWS jobs and
 * one for their events: a statement's start, cursors and end cost as much as
 * a few rows.
 */
static int sqlite_job_insert_plain(struct store *st, struct job *const *jobs, size_t n,
                                   struct err *e)
{
    for (size_t i = 0; i < n; i += INSERT_ROWS) {
        size_t k = n - i < INSERT_ROWS ? n - i : INSERT_ROWS;
        int rc = insert_chunk(sq(st), jobs + i, (int)k, e);
        if (rc)
            return rc;
    }
    return 0;
}

/* Runs a one-row job query bound to `arg`. */
static int get_one(struct store_sqlite *s, enum stmt_id id, const char *arg, struct job *out,
                   struct err *e, const char *what)
{
    sqlite3_stmt *q = stmt(s, id);
    bind_text(q, 1, arg);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        row_to_job(q, out);
        sqlite3_reset(q);
        return 0;
    }
    if (rc == SQLITE_DONE) {
        sqlite3_reset(q);
        return err_set(e, ERR_NOTFOUND, "%s '%s' not found", what, arg);
    }
    rc = db_err(s, e, "reading a job");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_job_get(struct store *st, const char *id, struct job *out, struct err *e)
{
    return get_one(sq(st), S_JOB_GET, id, out, e, "job");
}

static int sqlite_job_get_run(struct store *st, const char *id, struct job *out, struct err *e)
{
    return get_one(sq(st), S_JOB_GET_RUN, id, out, e, "job");
}

static int sqlite_job_get_by_key(struct store *st, const char *owner, const char *key,
                                 struct job *out, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_JOB_GET_KEY);
    bind_text(q, 1, key);
    bind_text(q, 2, owner);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        row_to_job(q, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = err_set(e, ERR_NOTFOUND, "job with key '%s' not found", key);
    } else {
        rc = db_err(s, e, "reading a job");
    }
    sqlite3_reset(q);
    return rc;
}

static int sqlite_id_match(struct store *st, enum store_kind kind, const char *prefix,
                           const char *owner, char (*ids)[UUID_STR_LEN], size_t max, size_t *n,
                           struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, (enum stmt_id)((owner ? S_MATCH_OWNER : S_MATCH) + (int)kind));
    bind_text(q, 1, prefix);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)max);
    if (owner) bind_text(q, 3, owner);
    int rc;
    *n = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW && *n < max)
        snprintf(ids[(*n)++], UUID_STR_LEN, "%s", (const char *)sqlite3_column_text(q, 0));
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_err(s, e, "finding ids by prefix");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_job_list(struct store *st, const struct job_filter *f, struct job_list *out,
                           struct err *e)
{
    struct store_sqlite *s = sq(st);
    struct buf where = BUF_INIT;
    if (f->owner) buf_adds(&where, " AND owner = :owner");
    if (f->state >= 0)
        buf_adds(&where, " AND state = :state");
    if (f->queue)
        buf_adds(&where, " AND queue = :queue");
    if (f->service)
        buf_adds(&where, " AND service = :service");
    if (f->agent)
        buf_adds(&where, " AND agent = :agent");
    if (f->name) /* instr, not LIKE: % and _ in the text are literal */
        buf_adds(&where, " AND instr(lower(name), lower(:name)) > 0");
    if (f->label_key)
        buf_adds(&where, " AND json_extract(labels, :lpath) = :lvalue");
    if (f->after)
        buf_adds(&where, " AND id < :after");
    struct buf sql = BUF_INIT;
    if (f->queue && f->state < 0 && !f->owner) {
        /* A queue's newest jobs: the newest ids of each state, each a range of
           jobs_state_queue read newest first (there is no index on the queue alone: schema
           16), merged; then those rows, read newest first by id. */
        buf_adds(&sql, "SELECT " JOB_COLUMNS " FROM jobs WHERE id IN (SELECT id FROM (");
        for (int k = 0; k < JOB_NSTATES; k++)
            buf_addf(&sql, "%sSELECT * FROM (SELECT id FROM jobs WHERE state = %d%s "
                     "ORDER BY id DESC LIMIT :limit)", k ? " UNION ALL " : "", k,
                     where.data ? where.data : "");
        buf_adds(&sql, ") ORDER BY id DESC LIMIT :limit) ORDER BY id DESC LIMIT :limit");
    } else {
        buf_adds(&sql, "SELECT " JOB_COLUMNS " FROM jobs WHERE 1");
        buf_adds(&sql, where.data ? where.data : "");
        buf_adds(&sql, " ORDER BY id DESC LIMIT :limit");
    }
    buf_release(&where);

    sqlite3_stmt *q;
    int rc = 0;
    out->jobs = NULL;
    out->n = 0;
    if (sqlite3_prepare_v2(s->db, sql.data, -1, &q, NULL) != SQLITE_OK) {
        buf_release(&sql);
        return db_err(s, e, "listing jobs");
    }
    buf_release(&sql);
    if (f->state >= 0)
        sqlite3_bind_int(q, sqlite3_bind_parameter_index(q, ":state"), f->state);
    bind_text(q, sqlite3_bind_parameter_index(q, ":owner"), f->owner);
    bind_text(q, sqlite3_bind_parameter_index(q, ":queue"), f->queue);
    bind_text(q, sqlite3_bind_parameter_index(q, ":service"), f->service);
    bind_text(q, sqlite3_bind_parameter_index(q, ":name"), f->name);
    bind_text(q, sqlite3_bind_parameter_index(q, ":agent"), f->agent);
    if (f->label_key) {
        /* A JSON path with the key quoted, so that dots in label names are literal. */
        struct buf p = BUF_INIT;
        buf_adds(&p, "$.\"");
        buf_adds(&p, f->label_key);
        buf_adds(&p, "\"");
        bind_text(q, sqlite3_bind_parameter_index(q, ":lpath"), p.data);
        bind_text(q, sqlite3_bind_parameter_index(q, ":lvalue"), f->label_value);
        buf_release(&p);
    }
    bind_text(q, sqlite3_bind_parameter_index(q, ":after"), f->after);
    sqlite3_bind_int(q, sqlite3_bind_parameter_index(q, ":limit"), f->limit);

    size_t cap = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (out->n == cap) {
            cap = cap ? cap * 2 : 16;
            out->jobs = xrealloc(out->jobs, cap * sizeof(*out->jobs));
        }
        row_to_job(q, &out->jobs[out->n++]);
    }
    if (rc != SQLITE_DONE) {
        rc = db_err(s, e, "listing jobs");
        job_list_release(out);
    } else {
        rc = 0;
    }
    sqlite3_finalize(q);
    return rc;
}

/* The writer holds SQLite's lock for the whole transaction: a plain read is locked enough. */
static int sqlite_job_lock(struct store *st, const char *id, bool spec, struct job *out,
                           struct err *e)
{
    return get_one(sq(st), spec ? S_JOB_GET : S_JOB_GET_RUN, id, out, e, "job");
}

/*
 * One candidate of a lease: read without parsing any JSON, the lifecycle's
 * lease on the record, the fenced write and its event. 1 leased, 0 skipped.
 */
static int lease_one(struct store_sqlite *s, const char *agent, int64_t now_ms,
                     struct store_lease *c, struct err *e)
{
    sqlite3_stmt *q = stmt(s, S_JOB_LEASE_READ);
    bind_text(q, 1, c->job);
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "leasing a job");
        sqlite3_reset(q);
        return rc; /* gone: skipped */
    }
    struct job j;
    job_init(&j);
    snprintf(j.id, sizeof(j.id), "%s", c->job);
    j.state = sqlite3_column_int(q, 0);
    j.attempt = sqlite3_column_int(q, 1);
    int state = j.state, was = j.attempt;
    struct job_event_args a = {.now_ms = now_ms, .agent = agent};
    struct err ignored = ERR_INIT;
    if (lifecycle_apply(&j, JOB_EV_LEASE, &a, &ignored)) { /* not queued any more */
        sqlite3_reset(q);
        job_release(&j);
        return 0;
    }
    j.queue = col_text(q, 2);
    j.owner = col_text(q, 3);
    c->spec = col_text(q, 4);
    char *url = col_text(q, 5);
    bool all = sqlite3_column_int(q, 6) != 0;
    sqlite3_reset(q);

    q = stmt(s, S_JOB_LEASE);
    sqlite3_bind_int(q, 1, j.state);
    bind_text(q, 2, j.agent);
    sqlite3_bind_int(q, 3, j.attempt);
    bind_time(q, 4, j.started_at);
    bind_time(q, 5, j.finished_at);
    bind_json(q, 6, j.progress);
    bind_text(q, 7, j.id);
    sqlite3_bind_int(q, 8, was);
    sqlite3_bind_int(q, 9, state);
    if (!(rc = exec_stmt(s, q, e, "leasing a job")) &&
        !(rc = count_note(s, j.queue, j.owner, state, j.state, e)))
        rc = job_event(s, &j, url, all, e);
    free(url);
    if (!rc) {
        c->leased = true;
        c->attempt = j.attempt;
    }
    job_release(&j);
    return rc ? rc : c->leased;
}

/* One writer at a time: the candidates are leased in order, none can be taken meanwhile. */
static int sqlite_job_lease(struct store *st, const char *agent, int64_t now_ms,
                            struct store_lease *c, size_t n, size_t *nleased, struct err *e)
{
    struct store_sqlite *s = sq(st);
    for (size_t i = 0; i < n; i++) {
        int rc = lease_one(s, agent, now_ms, &c[i], e);
        if (rc < 0)
            return rc;
        *nleased += (size_t)rc;
    }
    return 0;
}

static int sqlite_queue_stats(struct store *st, const char *owner, struct queue_stat **out,
                              size_t *n, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, owner ? S_QUEUE_STATS_OWNER : S_QUEUE_STATS);
    if (owner) bind_text(q, 1, owner);
    struct queue_stat *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 0);
        int state = sqlite3_column_int(q, 1);
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
            v[cnt - 1].count[state] = sqlite3_column_int64(q, 2);
    }
    if (rc != SQLITE_DONE) {
        free(v);
        rc = db_err(s, e, "counting jobs");
        sqlite3_reset(q);
        return rc;
    }
    sqlite3_reset(q);
    *out = v;
    *n = cnt;
    return 0;
}

static int sqlite_token_insert(struct store *st, const char *name, int role, const char *hash,
                               struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TOKEN_INSERT);
    bind_text(q, 1, name);
    sqlite3_bind_int(q, 2, role);
    bind_text(q, 3, hash);
    if (sqlite3_step(q) == SQLITE_DONE) {
        sqlite3_reset(q);
        return 0;
    }
    int rc = sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_PRIMARYKEY
                 ? err_field(e, ERR_CONFLICT, "name", "a token named '%s' already exists", name)
                 : db_err(s, e, "inserting a token");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_token_find(struct store *st, const char *hash, int *role, char *name_out,
                             size_t n, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TOKEN_FIND);
    bind_text(q, 1, hash);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *role = sqlite3_column_int(q, 0);
        if (name_out)
            snprintf(name_out, n, "%s", (const char *)sqlite3_column_text(q, 1));
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = err_set(e, ERR_NOTFOUND, "no such token");
    } else {
        rc = db_err(s, e, "reading a token");
    }
    sqlite3_reset(q);
    return rc;
}

static int sqlite_token_delete(struct store *st, const char *name, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TOKEN_DELETE);
    bind_text(q, 1, name);
    int rc = exec_stmt(s, q, e, "deleting a token");
    if (!rc && sqlite3_changes(s->db) == 0)
        rc = err_set(e, ERR_NOTFOUND, "token '%s' not found", name);
    return rc;
}

static int sqlite_session_insert(struct store *st, const struct session_rec *r, int64_t now_ms,
                                 int max_per_name, int max_all, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_SESSION_PRUNE);
    sqlite3_bind_int64(q, 1, now_ms);
    int rc = exec_stmt(s, q, e, "deleting expired sessions");
    if (rc) return rc;
    q = stmt(s, S_SESSION_TRIM);
    bind_text(q, 1, r->name);
    sqlite3_bind_int(q, 2, max_per_name > 1 ? max_per_name - 1 : 0);
    if ((rc = exec_stmt(s, q, e, "deleting a token's oldest sessions"))) return rc;
    q = stmt(s, S_SESSION_COUNT);
    if (sqlite3_step(q) != SQLITE_ROW) {
        rc = db_err(s, e, "counting sessions");
        sqlite3_reset(q);
        return rc;
    }
    int64_t live = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    if (live >= max_all)
        return err_set(e, ERR_UNAVAILABLE, "too many sessions (%d): try again later", max_all);
    q = stmt(s, S_SESSION_INSERT);
    bind_text(q, 1, r->id_hash);
    bind_text(q, 2, r->token_hash);
    bind_text(q, 3, r->csrf);
    sqlite3_bind_int(q, 4, r->role);
    bind_text(q, 5, r->name);
    sqlite3_bind_int64(q, 6, r->expires_ms);
    return exec_stmt(s, q, e, "inserting a session");
}

static int sqlite_session_find(struct store *st, const char *id_hash, int64_t now_ms,
                               struct session_rec *out, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_SESSION_FIND);
    bind_text(q, 1, id_hash);
    sqlite3_bind_int64(q, 2, now_ms);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        snprintf(out->id_hash, sizeof(out->id_hash), "%s", id_hash);
        snprintf(out->token_hash, sizeof(out->token_hash), "%s", sqlite3_column_text(q, 0));
        snprintf(out->csrf, sizeof(out->csrf), "%s", sqlite3_column_text(q, 1));
        out->role = sqlite3_column_int(q, 2);
        snprintf(out->name, sizeof(out->name), "%s", sqlite3_column_text(q, 3));
        out->expires_ms = sqlite3_column_int64(q, 4);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = err_set(e, ERR_NOTFOUND, "no such session");
    } else {
        rc = db_err(s, e, "reading a session");
    }
    sqlite3_reset(q);
    return rc;
}

static int sqlite_session_delete(struct store *st, const char *id_hash, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_SESSION_DELETE);
    bind_text(q, 1, id_hash);
    return exec_stmt(s, q, e, "deleting a session");
}

static int sqlite_token_count(struct store *st, int role, int64_t *count, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TOKEN_COUNT);
    sqlite3_bind_int(q, 1, role);
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        rc = db_err(s, e, "counting tokens");
        sqlite3_reset(q);
        return rc;
    }
    *count = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    return 0;
}

static int sqlite_token_scan(struct store *st, int (*fn)(void *arg, const struct token_rec *t),
                             void *arg, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TOKEN_SCAN);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct token_rec t;
        const char *tenant = (const char *)sqlite3_column_text(q, 2);
        snprintf(t.name, sizeof(t.name), "%s", (const char *)sqlite3_column_text(q, 0));
        t.role = sqlite3_column_int(q, 1);
        snprintf(t.tenant, sizeof(t.tenant), "%s", tenant ? tenant : "");
        t.created_at = sqlite3_column_int64(q, 3);
        if ((rc = fn(arg, &t))) {
            sqlite3_reset(q);
            return rc;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "reading tokens");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_meta_get(struct store *st, const char *key, char **value, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_META_GET);
    bind_text(q, 1, key);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *value = col_text(q, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = err_set(e, ERR_NOTFOUND, "'%s' is not set", key);
    } else {
        rc = db_err(s, e, "reading meta");
    }
    sqlite3_reset(q);
    return rc;
}

static int sqlite_meta_set(struct store *st, const char *key, const char *value, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_META_SET);
    bind_text(q, 1, key);
    bind_text(q, 2, value);
    return exec_stmt(s, q, e, "writing meta");
}

/* ---- the service hub ---- */

static void row_to_service(sqlite3_stmt *q, struct service_rec *r)
{
    r->name = col_text(q, 0);
    r->version = sqlite3_column_int(q, 1);
    r->definition = col_text(q, 2);
    r->created_by = col_text(q, 3);
    r->created_at = sqlite3_column_int64(q, 4);
    r->retired_at = sqlite3_column_int64(q, 5); /* NULL reads as 0 */
}

static int sqlite_service_insert(struct store *st, struct service_rec *r, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_SERVICE_INSERT);
    bind_text(q, 1, r->name);
    bind_text(q, 2, r->definition);
    bind_text(q, 3, r->created_by);
    sqlite3_bind_int64(q, 4, r->created_at);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        r->version = sqlite3_column_int(q, 0);
        r->retired_at = 0;
        rc = 0;
    } else {
        rc = db_err(s, e, "inserting a service");
    }
    sqlite3_reset(q);
    return rc;
}

static int sqlite_service_get(struct store *st, const char *name, int version,
                              struct service_rec *out, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, version ? S_SERVICE_GET : S_SERVICE_LATEST);
    bind_text(q, 1, name);
    if (version)
        sqlite3_bind_int(q, 2, version);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        row_to_service(q, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = version ? err_set(e, ERR_NOTFOUND, "service '%s' has no version %d", name, version)
                     : err_set(e, ERR_NOTFOUND, "service '%s' not found", name);
    } else {
        rc = db_err(s, e, "reading a service");
    }
    sqlite3_reset(q);
    return rc;
}

static int sqlite_service_list(struct store *st, struct service_rec **out, size_t *n,
                               struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_SERVICE_LIST);
    struct service_rec *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? 2 * cap : 16;
            v = xrealloc(v, cap * sizeof(*v));
        }
        memset(&v[cnt], 0, sizeof(*v));
        row_to_service(q, &v[cnt++]);
    }
    if (rc != SQLITE_DONE) {
        rc = db_err(s, e, "listing services");
        sqlite3_reset(q);
        for (size_t i = 0; i < cnt; i++)
            store_service_release(&v[i]);
        free(v);
        return rc;
    }
    sqlite3_reset(q);
    *out = v;
    *n = cnt;
    return 0;
}

static int sqlite_service_retire(struct store *st, const char *name, int64_t now_ms,
                                 struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_SERVICE_RETIRE);
    bind_text(q, 1, name);
    sqlite3_bind_int64(q, 2, now_ms);
    int rc = exec_stmt(s, q, e, "retiring a service");
    if (!rc && sqlite3_changes(s->db) == 0)
        rc = err_set(e, ERR_NOTFOUND, "service '%s' not found", name);
    return rc;
}

static int sqlite_leader_take(struct store *st, const char *name, const char *holder,
                              int64_t now_ms, int64_t ttl_ms, bool *leader, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_LEADER_TAKE);
    bind_text(q, 1, name);
    bind_text(q, 2, holder);
    sqlite3_bind_int64(q, 3, now_ms + ttl_ms);
    sqlite3_bind_int64(q, 4, now_ms);
    int rc = sqlite3_step(q);
    *leader = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW) rc = sqlite3_step(q);
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "taking the leader lease");
    if (rc) *leader = false;
    sqlite3_reset(q);
    return rc;
}

/* ---- workflows ---- */

static int sqlite_workflow_insert(struct store *st, const struct workflow_rec *w, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_WF_INSERT);
    bind_text(q, 1, w->id);
    bind_text(q, 2, w->owner);
    bind_text(q, 3, w->name);
    sqlite3_bind_int64(q, 4, w->created_at);
    bind_json(q, 5, w->doc);
    bind_text(q, 6, json_string_value(json_object_get(w->doc, "key")));
    int rc = exec_stmt(s, q, e, "inserting a workflow");
    const char *name;
    json_t *node;
    json_object_foreach(json_object_get(w->doc, "nodes"), name, node)
    {
        if (rc) break;
        q = stmt(s, S_WF_JOB);
        bind_text(q, 1, json_string_value(json_object_get(node, "job")));
        bind_text(q, 2, w->id);
        bind_text(q, 3, name);
        rc = exec_stmt(s, q, e, "inserting a workflow");
    }
    return rc;
}

static int sqlite_workflow_get(struct store *st, const char *id, struct workflow_rec *out,
                               struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_WF_GET);
    bind_text(q, 1, id);
    int rc = sqlite3_step(q);
    memset(out, 0, sizeof(*out));
    if (rc == SQLITE_ROW) {
        snprintf(out->id, sizeof(out->id), "%s", id);
        out->owner = col_text(q, 0);
        out->name = col_text(q, 1);
        out->created_at = sqlite3_column_int64(q, 2);
        char *doc = col_text(q, 3);
        out->doc = job_json_load(doc);
        free(doc);
        rc = out->doc ? 0 : err_set(e, ERR_INTERNAL, "workflow '%s': its stored document is "
                                                     "not JSON", id);
    } else if (rc == SQLITE_DONE) {
        rc = err_set(e, ERR_NOTFOUND, "workflow '%s' not found", id);
    } else {
        rc = db_err(s, e, "reading a workflow");
    }
    sqlite3_reset(q);
    return rc;
}

static int sqlite_agent_seen(struct store *st, const char *id, int64_t last_seen,
                             struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_AGENT_SEEN);
    bind_text(q, 1, id);
    sqlite3_bind_int64(q, 2, last_seen);
    return exec_stmt(s, q, e, "updating an agent");
}

static int sqlite_agent_set_runtimes(struct store *st, const char *id, unsigned runtimes,
                                     struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_AGENT_RUNTIMES);
    bind_text(q, 1, id);
    sqlite3_bind_int(q, 2, (int)runtimes);
    int rc = exec_stmt(s, q, e, "updating an agent's runtimes");
    if (!rc && sqlite3_changes(s->db) == 0)
        rc = err_set(e, ERR_NOTFOUND, "agent '%s' not found", id);
    return rc;
}

static int sqlite_leader_release(struct store *st, const char *name, const char *holder,
                                 struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_LEADER_RELEASE);
    bind_text(q, 1, name);
    bind_text(q, 2, holder);
    return exec_stmt(s, q, e, "releasing the leader lease");
}

static int sqlite_workflow_list(struct store *st, const char *owner, const char *after,
                                int limit, struct workflow_list *out, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_WF_LIST);
    bind_text(q, 1, owner);
    bind_text(q, 2, after);
    sqlite3_bind_int(q, 3, limit);
    out->w = xcalloc((size_t)limit, sizeof(*out->w));
    int step = SQLITE_DONE, rc = 0;
    while (!rc && out->n < (size_t)limit && (step = sqlite3_step(q)) == SQLITE_ROW) {
        struct workflow_rec *w = &out->w[out->n++];
        snprintf(w->id, sizeof(w->id), "%s", (const char *)sqlite3_column_text(q, 0));
        w->owner = col_text(q, 1);
        w->name = col_text(q, 2);
        w->created_at = sqlite3_column_int64(q, 3);
        char *doc = col_text(q, 4);
        w->doc = job_json_load(doc);
        free(doc);
        if (!w->doc)
            rc = err_set(e, ERR_INTERNAL, "workflow '%s': its stored document is not JSON", w->id);
    }
    if (!rc && out->n < (size_t)limit && step != SQLITE_DONE)
        rc = db_err(s, e, "listing workflows");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_workflow_of(struct store *st, const char *job, char *id_out, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_WF_OF);
    bind_text(q, 1, job);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        snprintf(id_out, UUID_STR_LEN, "%s", (const char *)sqlite3_column_text(q, 0));
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = err_set(e, ERR_NOTFOUND, "job '%s' is in no workflow", job);
    } else {
        rc = db_err(s, e, "reading a workflow");
    }
    sqlite3_reset(q);
    return rc;
}

static int sqlite_workflow_by_key(struct store *st, const char *owner, const char *key,
                                  char *id_out, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_WF_BY_KEY);
    bind_text(q, 1, owner);
    bind_text(q, 2, key);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        snprintf(id_out, UUID_STR_LEN, "%s", (const char *)sqlite3_column_text(q, 0));
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = err_set(e, ERR_NOTFOUND, "no workflow has key '%s'", key);
    } else {
        rc = db_err(s, e, "reading a workflow");
    }
    sqlite3_reset(q);
    return rc;
}

static int sqlite_job_set_spec(struct store *st, const char *id, const json_t *spec,
                               struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_JOB_SET_SPEC);
    bind_spec(q, 1, spec);
    bind_text(q, 2, id);
    return exec_stmt(s, q, e, "writing a job's spec");
}

static int sqlite_job_update(struct store *st, const struct job *j, int expect_attempt,
                             unsigned expect_states, struct err *e)
{
    struct store_sqlite *s = sq(st);
    /* the row as the update will find it (one writer): the state it leaves, its webhook */
    sqlite3_stmt *q = stmt(s, S_JOB_UPDATE_READ);
    bind_text_static(q, 1, j->id);
    int rc = sqlite3_step(q);
    int was = rc == SQLITE_ROW ? sqlite3_column_int(q, 0) : -1;
    char *url = rc == SQLITE_ROW ? col_text(q, 1) : NULL;
    bool all = rc == SQLITE_ROW && sqlite3_column_int(q, 2) != 0;
    sqlite3_reset(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_err(s, e, "reading a job");
    q = stmt(s, S_JOB_UPDATE);
    sqlite3_bind_int(q, 1, j->state);
    bind_text(q, 2, j->agent);
    sqlite3_bind_int(q, 3, j->attempt);
    bind_time(q, 4, j->started_at);
    bind_time(q, 5, j->finished_at);
    sqlite3_bind_int64(q, 6, j->run_after);
    bind_json(q, 7, j->progress);
    bind_json(q, 8, j->result);
    bind_json(q, 9, j->attempts);
    bind_text(q, 10, j->id);
    sqlite3_bind_int(q, 11, expect_attempt);
    sqlite3_bind_int(q, 12, (int)expect_states);
    rc = sqlite3_step(q);
    bool updated = rc == SQLITE_DONE && sqlite3_changes(s->db) == 1;
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "updating a job");
    sqlite3_reset(q);
    if (updated) { /* job_counts, and its event (and webhook) from the record */
        rc = count_note(s, j->queue, j->owner, was, j->state, e);
        if (!rc)
            rc = job_event(s, j, url, all, e);
    }
    free(url);
    if (updated || rc)
        return rc;
    struct job cur;
    if ((rc = get_one(s, S_JOB_GET_RUN, j->id, &cur, e, "job")))
        return rc;
    rc = err_set(e, ERR_CONFLICT, "job '%s' is %s at attempt %d, not at attempt %d", j->id,
                 job_state_name(cur.state), cur.attempt, expect_attempt);
    job_release(&cur);
    return rc;
}

static int sqlite_job_scan(struct store *st, unsigned states,
                           int (*fn)(void *arg, const struct job *j), void *arg, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_JOB_SCAN);
    sqlite3_bind_int(q, 1, (int)states);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct job j;
        row_to_job(q, &j);
        int frc = fn(arg, &j);
        job_release(&j);
        if (frc) {
            sqlite3_reset(q);
            return frc;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "scanning jobs");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_log_append(struct store *st, const char *job, int attempt, int stream,
                             int64_t offset, const char *data, size_t len, struct err *e)
{
    struct store_sqlite *s = sq(st);
    if (!store_log_clamp(offset, &len))
        return 0;
    sqlite3_stmt *q = stmt(s, S_LOG_APPEND);
    bind_text(q, 1, job);
    sqlite3_bind_int(q, 2, attempt);
    sqlite3_bind_int(q, 3, stream);
    sqlite3_bind_int64(q, 4, offset);
    sqlite3_bind_blob(q, 5, data, (int)len, SQLITE_TRANSIENT);
    return exec_stmt(s, q, e, "storing output");
}

static int sqlite_log_read(struct store *st, const char *job, int attempt, int stream,
                           int64_t offset, size_t max, struct buf *out, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_LOG_READ);
    bind_text(q, 1, job);
    sqlite3_bind_int(q, 2, attempt);
    sqlite3_bind_int(q, 3, stream);
    sqlite3_bind_int64(q, 4, offset);
    int rc;
    int64_t pos = offset; /* the next byte wanted */
    while (max > 0 && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t off = sqlite3_column_int64(q, 0);
        const char *data = sqlite3_column_blob(q, 1);
        if (!store_log_take(&pos, &max, off, data, sqlite3_column_bytes(q, 1), out))
            break;
    }
    if (max > 0 && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = db_err(s, e, "reading output");
        sqlite3_reset(q);
        return rc;
    }
    sqlite3_reset(q);
    return 0;
}

static int sqlite_agent_upsert(struct store *st, struct agent_rec *a, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_AGENT_UPSERT);
    bind_text(q, 1, a->id);
    bind_text(q, 2, a->name);
    bind_json(q, 3, a->labels);
    bind_json(q, 4, a->queues);
    sqlite3_bind_int(q, 5, a->slots);
    bind_text(q, 6, a->version);
    sqlite3_bind_int(q, 7, a->state);
    sqlite3_bind_int64(q, 8, a->last_seen);
    sqlite3_bind_int64(q, 9, a->registered_at);
    bind_text(q, 10, a->owner);
    bind_text(q, 11, a->instance);
    sqlite3_bind_int(q, 12, (int)a->runtimes);
    bind_json(q, 13, a->limits);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(q);
        return err_set(e, ERR_CONFLICT, "agent '%s' belongs to another token", a->name);
    }
    if (rc != SQLITE_ROW) {
        rc = db_err(s, e, "registering an agent");
        sqlite3_reset(q);
        return rc;
    }
    snprintf(a->id, sizeof(a->id), "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_step(q);
    sqlite3_reset(q);
    return agent_event(s, a->id, e);
}

static int sqlite_agent_set_state(struct store *st, const char *id, int state, int64_t last_seen,
                                  struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_AGENT_STATE);
    sqlite3_bind_int(q, 1, state);
    sqlite3_bind_int64(q, 2, last_seen);
    bind_text(q, 3, id);
    int rc = exec_stmt(s, q, e, "updating an agent");
    if (!rc && sqlite3_changes(s->db) == 0)
        rc = err_set(e, ERR_NOTFOUND, "agent '%s' not found", id);
    if (!rc)
        rc = agent_event(s, id, e);
    return rc;
}

static int sqlite_agent_forget(struct store *st, const char *id, int64_t seen_before,
                               struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_AGENT_FORGET_EVENT);
    sqlite3_bind_int64(q, 1, time_now_ms());
    bind_text(q, 2, id);
    sqlite3_bind_int64(q, 3, seen_before);
    sqlite3_bind_int(q, 4, AGENT_FORGOTTEN);
    sqlite3_bind_int(q, 5, AGENT_LOST);
    sqlite3_bind_int(q, 6, AGENT_LEFT);
    int rc = exec_stmt(s, q, e, "forgetting an agent");
    if (!rc && sqlite3_changes(s->db) == 0) /* the condition is the event's: no delete */
        return err_set(e, ERR_NOTFOUND, "agent '%s' not found, or not gone long enough", id);
    if (rc)
        return rc;
    q = stmt(s, S_AGENT_FORGET); /* the single writer: the row is as the event found it */
    bind_text(q, 1, id);
    return exec_stmt(s, q, e, "forgetting an agent");
}

static int sqlite_agent_scan(struct store *st, int (*fn)(void *arg, const struct agent_rec *a),
                             void *arg, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_AGENT_SCAN);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct agent_rec a;
        agent_rec_init(&a);
        snprintf(a.id, sizeof(a.id), "%s", (const char *)sqlite3_column_text(q, 0));
        a.name = col_text(q, 1);
        a.labels = job_json_load((const char *)sqlite3_column_text(q, 2));
        a.queues = job_json_load((const char *)sqlite3_column_text(q, 3));
        a.slots = sqlite3_column_int(q, 4);
        a.version = col_text(q, 5);
        a.state = sqlite3_column_int(q, 6);
        a.last_seen = sqlite3_column_int64(q, 7);
        a.registered_at = sqlite3_column_int64(q, 8);
        a.owner = col_text(q, 9);
        a.instance = col_text(q, 10);
        a.runtimes = (unsigned)sqlite3_column_int(q, 11);
        a.limits = job_json_load((const char *)sqlite3_column_text(q, 12));
        int frc = fn(arg, &a);
        agent_rec_release(&a);
        if (frc) {
            sqlite3_reset(q);
            return frc;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "listing agents");
    sqlite3_reset(q);
    return rc;
}

/* The event in the row's columns from `c` on (seq, at, kind, subject, ...). */
static void row_to_event(sqlite3_stmt *q, int c, struct event_rec *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->seq = sqlite3_column_int64(q, c);
    ev->at = sqlite3_column_int64(q, c + 1);
    ev->kind = sqlite3_column_int(q, c + 2);
    snprintf(ev->subject, sizeof(ev->subject), "%s", (const char *)sqlite3_column_text(q, c + 3));
    ev->queue = col_text(q, c + 4);
    ev->state = sqlite3_column_int(q, c + 5);
    ev->attempt = sqlite3_column_int(q, c + 6);
    ev->agent = col_text(q, c + 7);
    ev->data = job_json_load((const char *)sqlite3_column_text(q, c + 8));
}

static void event_rec_release(struct event_rec *ev)
{
    free(ev->queue);
    free(ev->agent);
    json_decref(ev->data);
}

static int sqlite_event_add(struct store *st, int kind, const char *subject, const char *queue,
                            int state, const char *owner, json_t *data, const char *notify_url,
                            struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_EVENT_ADD);
    int64_t now = time_now_ms();
    sqlite3_bind_int64(q, 1, now);
    sqlite3_bind_int(q, 2, kind);
    bind_text(q, 3, subject);
    bind_text(q, 4, queue);
    sqlite3_bind_int(q, 5, state);
    bind_text(q, 6, owner);
    bind_json(q, 7, data);
    int rc = exec_stmt(s, q, e, "appending an event");
    if (rc || !notify_url)
        return rc;
    q = stmt(s, S_WEBHOOK_ADD); /* the event's delivery: its seq is the last rowid */
    bind_text(q, 1, notify_url);
    sqlite3_bind_int64(q, 2, now);
    sqlite3_bind_int64(q, 3, now);
    s->base.webhook_queued = true;
    return exec_stmt(s, q, e, "queueing a webhook");
}

/* ---- triggers ---- */

static void row_to_trigger(sqlite3_stmt *q, struct trigger_rec *t)
{
    snprintf(t->id, sizeof(t->id), "%s", (const char *)sqlite3_column_text(q, 0));
    t->owner = col_text(q, 1);
    t->prefix = col_text(q, 2);
    t->workflow = sqlite3_column_int(q, 3) != 0;
    t->input = col_text(q, 4);
    t->template_ = col_text(q, 5);
    t->created_at = sqlite3_column_int64(q, 6);
    t->schedule = col_text(q, 7);
    t->skip_overlap = sqlite3_column_int(q, 8) != 0;
    t->timezone = col_text(q, 9);
    t->paused_at = sqlite3_column_int64(q, 10);
    t->resumed_at = sqlite3_column_int64(q, 11);
    t->updated_at = sqlite3_column_int64(q, 12);
}

static int sqlite_trigger_insert(struct store *st, const struct trigger_rec *t, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TRIGGER_INSERT);
    bind_text(q, 1, t->id);
    bind_text(q, 2, t->owner);
    bind_text(q, 3, t->prefix);
    sqlite3_bind_int(q, 4, t->workflow);
    bind_text(q, 5, t->input);
    bind_text(q, 6, t->template_);
    sqlite3_bind_int64(q, 7, t->created_at);
    bind_text(q, 8, t->schedule);
    sqlite3_bind_int(q, 9, t->skip_overlap);
    bind_text(q, 10, t->timezone);
    return exec_stmt(s, q, e, "inserting a trigger");
}

static int sqlite_trigger_update(struct store *st, const struct trigger_rec *t, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TRIGGER_UPDATE);
    bind_text(q, 1, t->id);
    bind_text(q, 2, t->prefix);
    sqlite3_bind_int(q, 3, t->workflow);
    bind_text(q, 4, t->input);
    bind_text(q, 5, t->template_);
    bind_text(q, 6, t->schedule);
    sqlite3_bind_int(q, 7, t->skip_overlap);
    bind_text(q, 8, t->timezone);
    sqlite3_bind_int64(q, 9, t->updated_at);
    int rc = exec_stmt(s, q, e, "changing a trigger");
    if (!rc && sqlite3_changes(s->db) == 0)
        rc = err_set(e, ERR_NOTFOUND, "trigger '%s' not found", t->id);
    return rc;
}

static int sqlite_trigger_get(struct store *st, const char *id, struct trigger_rec *out,
                              struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TRIGGER_GET);
    bind_text(q, 1, id);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        row_to_trigger(q, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = err_set(e, ERR_NOTFOUND, "trigger '%s' not found", id);
    } else {
        rc = db_err(s, e, "reading a trigger");
    }
    sqlite3_reset(q);
    return rc;
}

static int sqlite_trigger_list(struct store *st, const char *owner, const char *after, int limit,
                               struct trigger_rec **out, size_t *n, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TRIGGER_LIST);
    bind_text(q, 1, owner);
    bind_text(q, 2, after);
    sqlite3_bind_int(q, 3, limit > 0 ? limit : -1);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            *out = xrealloc(*out, cap * sizeof(**out));
        }
        memset(&(*out)[*n], 0, sizeof(**out));
        row_to_trigger(q, &(*out)[(*n)++]);
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "listing triggers");
    sqlite3_reset(q);
    return rc; /* on error the caller releases what was read */
}

static int sqlite_trigger_delete(struct store *st, const char *id, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TRIGGER_DELETE);
    bind_text(q, 1, id);
    int rc = exec_stmt(s, q, e, "deleting a trigger");
    if (rc) return rc;
    if (sqlite3_changes(s->db) == 0) return err_set(e, ERR_NOTFOUND, "trigger '%s' not found", id);
    q = stmt(s, S_TRIGGER_DELETE_FIRES);
    bind_text(q, 1, id);
    return exec_stmt(s, q, e, "deleting a trigger's fires");
}

static int sqlite_trigger_fire_add(struct store *st, const char *trigger, const char *uri,
                                   const char *sha256, int64_t now_ms, int *added, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_FIRE_ADD);
    bind_text(q, 1, uri);
    bind_text(q, 2, sha256);
    sqlite3_bind_int64(q, 3, now_ms);
    bind_text(q, 4, trigger);
    int rc = exec_stmt(s, q, e, "recording a trigger's fire");
    *added = rc ? 0 : sqlite3_changes(s->db);
    return rc;
}

static int sqlite_trigger_fires(struct store *st, const char *trigger, int limit,
                                struct trigger_fire **out, size_t *n, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, trigger ? S_FIRE_RECENT : S_FIRE_PENDING);
    int i = 1;
    if (trigger) bind_text(q, i++, trigger);
    sqlite3_bind_int(q, i, limit);
    *out = xcalloc((size_t)(limit > 0 ? limit : 1), sizeof(**out));
    int rc = SQLITE_DONE;
    while (*n < (size_t)limit && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct trigger_fire *f = &(*out)[(*n)++];
        f->id = sqlite3_column_int64(q, 0);
        snprintf(f->trigger, sizeof(f->trigger), "%s", (const char *)sqlite3_column_text(q, 1));
        f->uri = col_text(q, 2);
        snprintf(f->sha256, sizeof(f->sha256), "%s", (const char *)sqlite3_column_text(q, 3));
        f->created_at = sqlite3_column_int64(q, 4);
        f->target = col_text(q, 5);
        f->error = col_text(q, 6);
        f->fired_at = sqlite3_column_int64(q, 7);
    }
    rc = *n == (size_t)limit || rc == SQLITE_DONE ? 0 : db_err(s, e, "listing trigger fires");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_trigger_fires_prune(struct store *st, const char *trigger, int keep,
                                      struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_FIRE_PRUNE);
    bind_text(q, 1, trigger);
    sqlite3_bind_int(q, 2, keep);
    return exec_stmt(s, q, e, "deleting a schedule's old fires");
}

static int sqlite_trigger_pause(struct store *st, const char *id, bool paused, int64_t now_ms,
                                bool *changed, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, paused ? S_TRIGGER_PAUSE : S_TRIGGER_RESUME);
    bind_text(q, 1, id);
    sqlite3_bind_int64(q, 2, now_ms);
    int rc = exec_stmt(s, q, e, paused ? "pausing a trigger" : "resuming a trigger");
    *changed = !rc && sqlite3_changes(s->db) == 1;
    return rc;
}

static int sqlite_trigger_last_target(struct store *st, const char *trigger, int64_t before,
                                      char **target, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_FIRE_LAST_TARGET);
    bind_text(q, 1, trigger);
    sqlite3_bind_int64(q, 2, before);
    int rc = sqlite3_step(q);
    *target = rc == SQLITE_ROW ? col_text(q, 0) : NULL;
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_err(s, e, "reading a trigger's fires");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_trigger_fire_done(struct store *st, int64_t id, const char *target,
                                    const char *error, int64_t now_ms, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_FIRE_DONE);
    sqlite3_bind_int64(q, 1, id);
    bind_text(q, 2, target);
    bind_text(q, 3, target ? NULL : error);
    sqlite3_bind_int64(q, 4, now_ms);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(q);
        return err_set(e, ERR_CONFLICT, "trigger fire %lld is not pending", (long long)id);
    }
    if (rc != SQLITE_ROW) {
        rc = db_err(s, e, "recording a trigger's fire");
        sqlite3_reset(q);
        return rc;
    }
    char *trigger = col_text(q, 0), *owner = col_text(q, 3);
    json_t *d = trigger_fire_data((const char *)sqlite3_column_text(q, 1),
                                  (const char *)sqlite3_column_text(q, 2));
    if (target)
        json_object_set_new(d, sqlite3_column_int(q, 4) ? "workflow" : "job", json_string(target));
    else
        json_object_set_new(d, "error", json_string(error ? error : ""));
    sqlite3_step(q); /* past the one row, so that the statement completes */
    sqlite3_reset(q);
    q = stmt(s, S_EVENT_TRIGGER);
    sqlite3_bind_int64(q, 1, now_ms);
    bind_text(q, 2, trigger);
    sqlite3_bind_int(q, 3, target ? TRIGGER_FIRED : TRIGGER_FAILED);
    bind_text(q, 4, owner);
    bind_json(q, 5, d);
    json_decref(d);
    free(trigger);
    free(owner);
    return exec_stmt(s, q, e, "appending an event");
}

static int sqlite_event_list(struct store *st, const struct event_filter *f,
                             int (*fn)(void *arg, const struct event_rec *ev), void *arg,
                             struct err *e)
{
    struct store_sqlite *s = sq(st);
    struct buf sql = BUF_INIT;
    buf_adds(&sql, "SELECT seq, at, kind, subject, queue, state, attempt, agent, ");
    buf_adds(&sql, f->no_data ? "NULL" : "data");
    buf_adds(&sql, " FROM events WHERE seq > :after");
    if (f->kind >= 0)
        buf_adds(&sql, " AND kind = :kind");
    if (f->queue)
        buf_adds(&sql, " AND queue = :queue");
    if (f->jobs)
        buf_adds(&sql, " AND subject IN (SELECT value FROM json_each(:jobs))");
    if (f->owner) /* a client: its own jobs', triggers', arrays' and workflows' events, the agents',
                     objects' and queues' (not the tenants') */
        buf_adds(&sql, " AND (kind NOT IN (0, 3, 4, 6, 7) OR owner = :owner)");
    buf_adds(&sql, " ORDER BY seq LIMIT :limit");
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, sql.data, -1, &q, NULL) != SQLITE_OK) {
        buf_release(&sql);
        return db_err(s, e, "listing events");
    }
    buf_release(&sql);
    sqlite3_bind_int64(q, sqlite3_bind_parameter_index(q, ":after"), f->after);
    if (f->kind >= 0)
        sqlite3_bind_int(q, sqlite3_bind_parameter_index(q, ":kind"), f->kind);
    bind_text(q, sqlite3_bind_parameter_index(q, ":queue"), f->queue);
    bind_text(q, sqlite3_bind_parameter_index(q, ":owner"), f->owner);
    if (f->jobs) {
        json_t *a = json_array();
        for (size_t i = 0; i < f->njobs; i++)
            json_array_append_new(a, json_string(f->jobs[i]));
        bind_json(q, sqlite3_bind_parameter_index(q, ":jobs"), a);
        json_decref(a);
    }
    sqlite3_bind_int(q, sqlite3_bind_parameter_index(q, ":limit"), f->limit);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct event_rec ev;
        row_to_event(q, 0, &ev);
        int frc = fn(arg, &ev);
        event_rec_release(&ev);
        if (frc) {
            sqlite3_finalize(q);
            return frc;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "listing events");
    sqlite3_finalize(q);
    return rc;
}

static int sqlite_event_window(struct store *st, int64_t *first, int64_t *last, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_EVENT_WINDOW);
    if (sqlite3_step(q) != SQLITE_ROW) {
        int rc = db_err(s, e, "reading the event window");
        sqlite3_reset(q);
        return rc;
    }
    *last = sqlite3_column_int64(q, 1); /* NULL (0) before the first event */
    *first = sqlite3_column_type(q, 0) == SQLITE_NULL ? *last + 1 : sqlite3_column_int64(q, 0);
    *first = store_event_window_start(*first, *last, sqlite3_column_int64(q, 2));
    sqlite3_reset(q);
    return 0;
}

static int sqlite_event_prune(struct store *st, int64_t before_ms, int64_t max_keep,
                              struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_EVENT_PRUNE);
    sqlite3_bind_int64(q, 1, before_ms);
    sqlite3_bind_int64(q, 2, max_keep);
    int64_t newest = 0; /* of the events deleted, one scan */
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        if (sqlite3_column_int64(q, 0) > newest) newest = sqlite3_column_int64(q, 0);
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "pruning events");
    sqlite3_reset(q);
    if (rc || !newest) return rc;
    q = stmt(s, S_EVENT_HORIZON);
    sqlite3_bind_int64(q, 1, newest);
    return exec_stmt(s, q, e, "pruning events");
}

static int sqlite_webhook_due(struct store *st, int64_t now_ms, int limit,
                              int (*fn)(void *arg, const struct webhook *w), void *arg,
                              struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_WEBHOOK_DUE);
    sqlite3_bind_int64(q, 1, now_ms);
    sqlite3_bind_int(q, 2, limit);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct event_rec ev;
        row_to_event(q, 4, &ev);
        struct webhook w = {.id = sqlite3_column_int64(q, 0),
                            .url = (const char *)sqlite3_column_text(q, 1),
                            .tries = sqlite3_column_int(q, 2),
                            .created_at = sqlite3_column_int64(q, 3),
                            .ev = &ev};
        int frc = fn(arg, &w);
        event_rec_release(&ev);
        if (frc) {
            sqlite3_reset(q);
            return frc;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "reading the webhook outbox");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_webhook_delete(struct store *st, int64_t id, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_WEBHOOK_DELETE);
    sqlite3_bind_int64(q, 1, id);
    return exec_stmt(s, q, e, "recording a delivery");
}

static int sqlite_webhook_retry(struct store *st, int64_t id, int tries, int64_t next_at,
                                const char *error, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_WEBHOOK_RETRY);
    sqlite3_bind_int(q, 1, tries);
    sqlite3_bind_int64(q, 2, next_at);
    bind_text(q, 3, error);
    sqlite3_bind_int64(q, 4, id);
    return exec_stmt(s, q, e, "recording a failed delivery");
}

static int sqlite_webhook_count(struct store *st, int64_t *n, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_WEBHOOK_COUNT);
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        rc = db_err(s, e, "counting webhooks");
        sqlite3_reset(q);
        return rc;
    }
    *n = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    return 0;
}

static int sqlite_job_expired(struct store *st, int64_t now_ms, int64_t default_ms, int limit,
                              char (*ids)[UUID_STR_LEN], size_t *n, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_JOB_EXPIRED);
    sqlite3_bind_int64(q, 1, now_ms);
    sqlite3_bind_int64(q, 2, default_ms);
    sqlite3_bind_int(q, 3, limit);
    int rc;
    *n = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW && *n < (size_t)limit)
        snprintf(ids[(*n)++], UUID_STR_LEN, "%s", (const char *)sqlite3_column_text(q, 0));
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_err(s, e, "reading expired jobs");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_job_held(struct store *st, const char *id, const char *task_lo,
                           const char *task_hi, bool *held, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_JOB_HELD);
    bind_text(q, 1, id);
    bind_text(q, 2, task_lo);
    bind_text(q, 3, task_hi);
    int rc = sqlite3_step(q);
    *held = rc == SQLITE_ROW && sqlite3_column_int(q, 0);
    rc = rc == SQLITE_ROW ? 0 : db_err(s, e, "reading what a job belongs to");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_job_defer(struct store *st, const char *id, int64_t until_ms, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_JOB_DEFER);
    bind_text(q, 1, id);
    sqlite3_bind_int64(q, 2, until_ms);
    return exec_stmt(s, q, e, "putting a job's deletion off");
}

static int sqlite_array_task_gone(struct store *st, const char *job, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_ARRAY_TASK_GONE);
    bind_text(q, 1, job);
    int rc = sqlite3_step(q);
    char *array = rc == SQLITE_ROW ? col_text(q, 0) : NULL;
    if (rc == SQLITE_ROW) rc = sqlite3_step(q); /* to its end: the delete is done then */
    if (rc != SQLITE_DONE) {
        rc = db_err(s, e, "deleting an array's task"); /* before the reset: its message */
        sqlite3_reset(q);
        free(array);
        return rc;
    }
    sqlite3_reset(q);
    if (!array) return 0;
    q = stmt(s, S_ARRAY_DROP_DONE);
    bind_text(q, 1, array);
    rc = exec_stmt(s, q, e, "deleting an array");
    if (!rc && sqlite3_changes(s->db) == 1) {
        q = stmt(s, S_ARRAY_ITEMS_DROP);
        bind_text(q, 1, array);
        rc = exec_stmt(s, q, e, "deleting an array's items");
    }
    free(array);
    return rc;
}

static int sqlite_job_delete(struct store *st, const char *id, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_JOB_DELETE);
    bind_text(q, 1, id);
    int rc = sqlite3_step(q);
    bool gone = rc == SQLITE_ROW;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        rc = db_err(s, e, "deleting a job");
        sqlite3_reset(q);
        return rc;
    }
    char *queue = gone ? col_text(q, 1) : NULL, *owner = gone ? col_text(q, 2) : NULL;
    int was = gone ? sqlite3_column_int(q, 0) : -1;
    sqlite3_reset(q);
    if (gone) {
        rc = count_note(s, queue, owner, was, -1, e);
        free(queue);
        free(owner);
        if (rc)
            return rc;
    }
    if (!gone) {
        struct job j;
        if ((rc = get_one(s, S_JOB_GET_RUN, id, &j, e, "job")))
            return rc;
        rc = err_set(e, ERR_CONFLICT, "job '%s' is %s: only a finished job is deleted", id,
                     job_state_name(j.state));
        job_release(&j);
        return rc;
    }
    q = stmt(s, S_JOB_DELETE_LOGS);
    bind_text(q, 1, id);
    if ((rc = exec_stmt(s, q, e, "deleting a job's output"))) return rc;
    /* a workflow's node: its row goes, and the workflow with its last one */
    q = stmt(s, S_WF_FORGET);
    bind_text(q, 1, id);
    rc = sqlite3_step(q);
    char wf[UUID_STR_LEN] = "";
    if (rc == SQLITE_ROW)
        snprintf(wf, sizeof(wf), "%s", (const char *)sqlite3_column_text(q, 0));
    else if (rc != SQLITE_DONE)
        rc = db_err(s, e, "deleting a job's workflow row");
    sqlite3_reset(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return rc;
    if (!*wf) return 0;
    q = stmt(s, S_WF_DROP_EMPTY);
    bind_text(q, 1, wf);
    return exec_stmt(s, q, e, "deleting a workflow");
}

static int sqlite_token_tenant(struct store *st, const char *name, char *tenant, size_t n,
                               struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TOKEN_TENANT);
    bind_text(q, 1, name);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        snprintf(tenant, n, "%s", (const char *)sqlite3_column_text(q, 0));
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = err_set(e, ERR_NOTFOUND, "token '%s' not found", name);
    } else {
        rc = db_err(s, e, "reading a token");
    }
    sqlite3_reset(q);
    return rc;
}

static int sqlite_token_set_tenant(struct store *st, const char *name, const char *tenant,
                                   struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TOKEN_SET_TENANT);
    bind_text(q, 1, tenant);
    bind_text(q, 2, name);
    int rc = exec_stmt(s, q, e, "setting a token's tenant");
    if (!rc && sqlite3_changes(s->db) == 0)
        rc = err_set(e, ERR_NOTFOUND, "token '%s' not found", name);
    return rc;
}

static void bind_limit(sqlite3_stmt *q, int i, int v)
{
    if (v >= 0)
        sqlite3_bind_int(q, i, v);
    else
        sqlite3_bind_null(q, i);
}

static int sqlite_tenant_put(struct store *st, const struct tenant_rec *t, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TENANT_PUT);
    bind_text(q, 1, t->name);
    bind_limit(q, 2, t->max_running);
    bind_limit(q, 3, t->max_queued);
    sqlite3_bind_int(q, 4, t->weight);
    return exec_stmt(s, q, e, "writing a tenant");
}

static int sqlite_tenant_scan(struct store *st, int (*fn)(void *arg, const struct tenant_rec *t),
                              void *arg, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TENANT_SCAN);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct tenant_rec t;
        snprintf(t.name, sizeof(t.name), "%s", (const char *)sqlite3_column_text(q, 0));
        t.max_running = sqlite3_column_type(q, 1) == SQLITE_NULL ? -1 : sqlite3_column_int(q, 1);
        t.max_queued = sqlite3_column_type(q, 2) == SQLITE_NULL ? -1 : sqlite3_column_int(q, 2);
        t.weight = sqlite3_column_int(q, 3);
        if ((rc = fn(arg, &t))) {
            sqlite3_reset(q);
            return rc;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "reading tenants");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_tenant_waiting(struct store *st, const char *tenant, int64_t *n,
                                 struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_TENANT_WAITING);
    bind_text(q, 1, tenant);
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        rc = db_err(s, e, "counting a tenant's jobs");
        sqlite3_reset(q);
        return rc;
    }
    *n = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    return 0;
}

static int sqlite_queue_pause(struct store *st, const char *queue, bool paused, const char *by,
                              int64_t now_ms, bool *changed, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, paused ? S_QUEUE_PAUSE : S_QUEUE_RESUME);
    bind_text(q, 1, queue);
    if (paused) {
        sqlite3_bind_int64(q, 2, now_ms);
        bind_text(q, 3, by);
    }
    int rc = exec_stmt(s, q, e, paused ? "pausing a queue" : "resuming a queue");
    *changed = !rc && sqlite3_changes(s->db) == 1;
    return rc;
}

static int sqlite_queue_limit(struct store *st, const char *queue, int max_running,
                              const char *by, int64_t now_ms, bool *changed, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, max_running ? S_QUEUE_LIMIT : S_QUEUE_UNLIMIT);
    bind_text(q, 1, queue);
    if (max_running) {
        sqlite3_bind_int(q, 2, max_running);
        sqlite3_bind_int64(q, 3, now_ms);
        bind_text(q, 4, by);
    }
    int rc = exec_stmt(s, q, e, "setting a queue's max_running");
    *changed = !rc && sqlite3_changes(s->db) == 1;
    return rc;
}

static int sqlite_queue_limits(struct store *st,
                               int (*fn)(void *arg, const char *queue, int max_running),
                               void *arg, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_QUEUE_LIMITS);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if ((rc = fn(arg, (const char *)sqlite3_column_text(q, 0), sqlite3_column_int(q, 1)))) {
            sqlite3_reset(q);
            return rc;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "reading the queues' limits");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_queue_paused(struct store *st,
                               int (*fn)(void *arg, const char *queue, int64_t at), void *arg,
                               struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_QUEUE_PAUSED);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if ((rc = fn(arg, (const char *)sqlite3_column_text(q, 0), sqlite3_column_int64(q, 1)))) {
            sqlite3_reset(q);
            return rc;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "reading the paused queues");
    sqlite3_reset(q);
    return rc;
}

/* ---- job arrays ---- */

static int sqlite_array_insert(struct store *st, const struct array_rec *a, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_ARRAY_INSERT);
    bind_text(q, 1, a->id);
    bind_text(q, 2, a->owner);
    bind_text(q, 3, a->tenant);
    bind_text(q, 4, a->queue);
    bind_text(q, 5, a->name);
    sqlite3_bind_int(q, 6, a->priority);
    sqlite3_bind_int(q, 7, a->kind);
    bind_text(q, 8, a->source);
    sqlite3_bind_int64(q, 9, a->count);
    bind_json(q, 10, a->spec);
    sqlite3_bind_int64(q, 11, a->created_at);
    int rc = exec_stmt(s, q, e, "inserting an array");
    size_t i;
    json_t *it;
    json_array_foreach(a->items, i, it) {
        if (rc) break;
        q = stmt(s, S_ARRAY_ITEM_INSERT);
        bind_text(q, 1, a->id);
        sqlite3_bind_int64(q, 2, (int64_t)i);
        bind_text(q, 3, json_string_value(it));
        rc = exec_stmt(s, q, e, "inserting an array's items");
    }
    return rc;
}

static int row_to_array(struct store_sqlite *s, sqlite3_stmt *q, struct array_rec *a,
                        struct err *e)
{
    (void)s;
    memset(a, 0, sizeof(*a));
    snprintf(a->id, sizeof(a->id), "%s", (const char *)sqlite3_column_text(q, 0));
    a->owner = col_text(q, 1);
    a->tenant = col_text(q, 2);
    a->queue = col_text(q, 3);
    a->name = col_text(q, 4);
    a->priority = sqlite3_column_int(q, 5);
    a->kind = sqlite3_column_int(q, 6);
    a->source = col_text(q, 7);
    a->count = sqlite3_column_int64(q, 8);
    a->next_index = sqlite3_column_int64(q, 9);
    a->skips = job_json_load((const char *)sqlite3_column_text(q, 10));
    a->spec = job_json_load((const char *)sqlite3_column_text(q, 11));
    a->created_at = sqlite3_column_int64(q, 12);
    if (!json_is_array(a->skips) || !json_is_object(a->spec)) {
        int rc = err_set(e, ERR_INTERNAL, "array '%s': its stored spec or skips are not JSON",
                         a->id);
        array_rec_release(a);
        return rc;
    }
    array_rec_views(a);
    return 0;
}

static int sqlite_array_get(struct store *st, const char *id, bool lock, struct array_rec *out,
                            struct err *e)
{
    (void)lock; /* the writer holds the database's lock */
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_ARRAY_GET);
    bind_text(q, 1, id);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        rc = row_to_array(s, q, out, e);
    else if (rc == SQLITE_DONE)
        rc = err_set(e, ERR_NOTFOUND, "array '%s' not found", id);
    else
        rc = db_err(s, e, "reading an array");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_array_list(struct store *st, const char *owner, const char *after, int limit,
                             struct array_rec **out, size_t *n, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_ARRAY_LIST);
    bind_text(q, 1, owner);
    bind_text(q, 2, after);
    sqlite3_bind_int(q, 3, limit);
    *out = xcalloc((size_t)limit, sizeof(**out));
    *n = 0;
    int step = SQLITE_DONE, rc = 0;
    while (!rc && *n < (size_t)limit && (step = sqlite3_step(q)) == SQLITE_ROW)
        if (!(rc = row_to_array(s, q, &(*out)[*n], e))) (*n)++;
    if (!rc && *n < (size_t)limit && step != SQLITE_DONE) rc = db_err(s, e, "listing arrays");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_array_set(struct store *st, const char *id, int64_t next_index,
                            const char *skips, int64_t open, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_ARRAY_SET);
    sqlite3_bind_int64(q, 1, next_index);
    bind_text(q, 2, skips);
    bind_text(q, 3, id);
    sqlite3_bind_int64(q, 4, open);
    return exec_stmt(s, q, e, "writing an array's cursor");
}

static int sqlite_array_open(struct store *st, const char *tenant, int64_t *n, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_ARRAY_OPEN);
    bind_text(q, 1, tenant);
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        rc = db_err(s, e, "counting a tenant's array tasks");
        sqlite3_reset(q);
        return rc;
    }
    *n = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    return 0;
}

static int sqlite_array_item(struct store *st, const char *id, int64_t index, char **item,
                             struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_ARRAY_ITEM);
    bind_text(q, 1, id);
    sqlite3_bind_int64(q, 2, index);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *item = col_text(q, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = err_set(e, ERR_NOTFOUND, "array '%s' has no item %lld", id, (long long)index);
    } else {
        rc = db_err(s, e, "reading an array's item");
    }
    sqlite3_reset(q);
    return rc;
}

static int sqlite_array_task_add(struct store *st, const char *id, int64_t index,
                                 const char *job, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_ARRAY_TASK_ADD);
    bind_text(q, 1, id);
    sqlite3_bind_int64(q, 2, index);
    bind_text(q, 3, job);
    return exec_stmt(s, q, e, "linking an array's task");
}

static int sqlite_array_task_ids(struct store *st, const char *id, int64_t from, int64_t to,
                                 int (*fn)(void *arg, int64_t index, const char *job),
                                 void *arg, struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_ARRAY_TASK_IDS);
    bind_text(q, 1, id);
    sqlite3_bind_int64(q, 2, from);
    sqlite3_bind_int64(q, 3, to);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if ((rc = fn(arg, sqlite3_column_int64(q, 0), (const char *)sqlite3_column_text(q, 1)))) {
            sqlite3_reset(q);
            return rc;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "reading an array's tasks");
    sqlite3_reset(q);
    return rc;
}

static int sqlite_array_job_counts(struct store *st, const char *id, int64_t *counts,
                                   struct err *e)
{
    struct store_sqlite *s = sq(st);
    sqlite3_stmt *q = stmt(s, S_ARRAY_JOB_COUNTS);
    bind_text(q, 1, id);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        int state = sqlite3_column_int(q, 0);
        if (state >= 0 && state < JOB_NSTATES) counts[state] += sqlite3_column_int64(q, 1);
    }
    rc = rc == SQLITE_DONE ? 0 : db_err(s, e, "counting an array's tasks");
    sqlite3_reset(q);
    return rc;
}

const struct store_ops store_sqlite_ops = {
    .scheme = "sqlite",
    .schema = (int)ARRAY_SIZE(sqlite_migrations),
    .caps = 0,
    .open = sqlite_open,
    .close = sqlite_close,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .savepoint = sqlite_savepoint,
    .savepoint_release = sqlite_savepoint_release,
    .savepoint_rollback = sqlite_savepoint_rollback,
    .job_insert = sqlite_job_insert,
    .job_insert_plain = sqlite_job_insert_plain,
    .job_get = sqlite_job_get,
    .job_get_by_key = sqlite_job_get_by_key,
    .id_match = sqlite_id_match,
    .job_get_run = sqlite_job_get_run,
    .job_list = sqlite_job_list,
    .job_lock = sqlite_job_lock,
    .job_lease = sqlite_job_lease,
    .job_update = sqlite_job_update,
    .job_scan = sqlite_job_scan,
    .log_append = sqlite_log_append,
    .log_read = sqlite_log_read,
    .agent_upsert = sqlite_agent_upsert,
    .agent_set_state = sqlite_agent_set_state,
    .agent_forget = sqlite_agent_forget,
    .agent_scan = sqlite_agent_scan,
    .queue_stats = sqlite_queue_stats,
    .token_insert = sqlite_token_insert,
    .token_find = sqlite_token_find,
    .token_delete = sqlite_token_delete,
    .token_count = sqlite_token_count,
    .token_scan = sqlite_token_scan,
    .session_insert = sqlite_session_insert,
    .session_find = sqlite_session_find,
    .session_delete = sqlite_session_delete,
    .event_add = sqlite_event_add,
    .event_list = sqlite_event_list,
    .event_window = sqlite_event_window,
    .event_prune = sqlite_event_prune,
    .webhook_due = sqlite_webhook_due,
    .webhook_delete = sqlite_webhook_delete,
    .webhook_retry = sqlite_webhook_retry,
    .webhook_count = sqlite_webhook_count,
    .service_insert = sqlite_service_insert,
    .service_get = sqlite_service_get,
    .service_list = sqlite_service_list,
    .service_retire = sqlite_service_retire,
    .meta_get = sqlite_meta_get,
    .meta_set = sqlite_meta_set,
    .workflow_insert = sqlite_workflow_insert,
    .workflow_by_key = sqlite_workflow_by_key,
    .workflow_get = sqlite_workflow_get,
    .workflow_list = sqlite_workflow_list,
    .workflow_of = sqlite_workflow_of,
    .job_set_spec = sqlite_job_set_spec,
    .trigger_insert = sqlite_trigger_insert,
    .trigger_get = sqlite_trigger_get,
    .trigger_list = sqlite_trigger_list,
    .trigger_delete = sqlite_trigger_delete,
    .trigger_update = sqlite_trigger_update,
    .trigger_fire_add = sqlite_trigger_fire_add,
    .trigger_fires = sqlite_trigger_fires,
    .trigger_fire_done = sqlite_trigger_fire_done,
    .trigger_fires_prune = sqlite_trigger_fires_prune,
    .trigger_last_target = sqlite_trigger_last_target,
    .trigger_pause = sqlite_trigger_pause,
    .array_insert = sqlite_array_insert,
    .array_get = sqlite_array_get,
    .array_list = sqlite_array_list,
    .array_set = sqlite_array_set,
    .array_open = sqlite_array_open,
    .array_item = sqlite_array_item,
    .array_task_add = sqlite_array_task_add,
    .array_task_ids = sqlite_array_task_ids,
    .array_job_counts = sqlite_array_job_counts,
    .job_expired = sqlite_job_expired,
    .job_held = sqlite_job_held,
    .job_defer = sqlite_job_defer,
    .job_delete = sqlite_job_delete,
    .array_task_gone = sqlite_array_task_gone,
    .token_tenant = sqlite_token_tenant,
    .token_set_tenant = sqlite_token_set_tenant,
    .tenant_put = sqlite_tenant_put,
    .tenant_scan = sqlite_tenant_scan,
    .tenant_waiting = sqlite_tenant_waiting,
    .queue_pause = sqlite_queue_pause,
    .queue_limit = sqlite_queue_limit,
    .queue_limits = sqlite_queue_limits,
    .queue_paused = sqlite_queue_paused,
    .leader_take = sqlite_leader_take,
    .agent_seen = sqlite_agent_seen,
    .agent_set_runtimes = sqlite_agent_set_runtimes,
    .leader_release = sqlite_leader_release,
};
