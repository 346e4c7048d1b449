/*
 * schema/sqlite.h - the SQLite schema as numbered migrations.
 *
 * Migration i brings PRAGMA user_version from i to i + 1. Never edit a
 * migration that has shipped: add the next one.
 */
#ifndef DROVER_SCHEMA_SQLITE_H
#define DROVER_SCHEMA_SQLITE_H

static const char *const sqlite_migrations[] = {
    /* 1: jobs, tokens, meta */
    "CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE tokens ("
    "  name TEXT PRIMARY KEY, role INTEGER NOT NULL, hash TEXT NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE jobs ("
    "  id TEXT PRIMARY KEY,"           /* UUIDv7: sorts by creation */
    "  state INTEGER NOT NULL,"        /* enum job_state */
    "  queue TEXT NOT NULL,"
    "  service TEXT, name TEXT, idem_key TEXT, agent TEXT,"
    "  priority INTEGER NOT NULL, slots INTEGER NOT NULL,"
    "  attempt INTEGER NOT NULL, max_attempts INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER,"
    "  run_after INTEGER NOT NULL,"
    "  labels TEXT, spec TEXT NOT NULL, progress TEXT, result TEXT, attempts TEXT"
    ") WITHOUT ROWID;"
    "CREATE UNIQUE INDEX jobs_key ON jobs (idem_key) WHERE idem_key IS NOT NULL;"
    "CREATE INDEX jobs_state_queue ON jobs (state, queue, id);"
    "CREATE INDEX jobs_queue ON jobs (queue, id);",
    /* 2: agents and captured output */
    "CREATE TABLE agents ("
    "  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, labels TEXT NOT NULL,"
    "  queues TEXT NOT NULL, slots INTEGER NOT NULL, version TEXT, state INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL, registered_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE job_logs ("
    "  job TEXT NOT NULL, attempt INTEGER NOT NULL, stream INTEGER NOT NULL,"
    "  off INTEGER NOT NULL, data BLOB NOT NULL,"
    "  PRIMARY KEY (job, attempt, stream, off)) WITHOUT ROWID;",
    /* 3: an agent's name belongs to the token that registered it (owner, the token's name;
       NULL for agents registered before, claimed by their next registration), and to the
       instance (the agent's work folder, protocol.md) that registered it last */
    "ALTER TABLE agents ADD COLUMN owner TEXT;"
    "ALTER TABLE agents ADD COLUMN instance TEXT;",
    /* 4: the event stream (GET /v1/events): one row per change of a job or an agent, written
       in the transaction of the change. seq never goes back (AUTOINCREMENT). */
    "CREATE TABLE events ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, kind INTEGER NOT NULL,"
    "  subject TEXT NOT NULL, queue TEXT, state INTEGER NOT NULL, attempt INTEGER,"
    "  agent TEXT, owner TEXT, data TEXT);"
    "CREATE INDEX events_subject ON events (subject, seq);",
    /* 5: jobs belong to the token that submitted them (NULL for jobs from before: only
       admin tokens see those); idempotency keys are per owner */
    "ALTER TABLE jobs ADD COLUMN owner TEXT;"
    "DROP INDEX jobs_key;"
    "CREATE UNIQUE INDEX jobs_owner_key ON jobs (coalesce(owner, ''), idem_key)"
    "  WHERE idem_key IS NOT NULL;"
    "CREATE INDEX jobs_owner ON jobs (owner, id);",
    /* 6: webhooks: a job's notify_url, and the outbox of deliveries, each row written in the
       transaction of the event it delivers and deleted once delivered (or given up) */
    "ALTER TABLE jobs ADD COLUMN notify_url TEXT;"
    "ALTER TABLE jobs ADD COLUMN notify_all INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE webhook_outbox ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, event_seq INTEGER NOT NULL, url TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, next_at INTEGER NOT NULL, tries INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT);"
    "CREATE INDEX webhook_outbox_due ON webhook_outbox (next_at);",
    /* 7: the service hub (docs/api.md "Services"): one row per version of a service's
       definition, never changed but for retired_at, which on the latest version retires the
       service */
    "CREATE TABLE services ("
    "  name TEXT NOT NULL, version INTEGER NOT NULL, definition TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, created_by TEXT, retired_at INTEGER,"
    "  PRIMARY KEY (name, version)) WITHOUT ROWID;",
    /* 8: retention: a finished job is archived and deleted retention_ms after it ended
       (NULL: the server's --retention). One index per kind, so that the sweep reads only
       what is due. */
    "ALTER TABLE jobs ADD COLUMN retention_ms INTEGER;"
    "CREATE INDEX jobs_expiry_default ON jobs (finished_at)"
    "  WHERE state >= 4 AND retention_ms IS NULL;"
    "CREATE INDEX jobs_expiry_own ON jobs (finished_at + retention_ms)"
    "  WHERE state >= 4 AND retention_ms IS NOT NULL;",
    /* 9: tenants: a token belongs to one (NULL: the one named as the token), a job to its
       owner's; per-tenant limits (NULL: the server's) and fair-share weight */
    "ALTER TABLE tokens ADD COLUMN tenant TEXT;"
    "ALTER TABLE jobs ADD COLUMN tenant TEXT;"
    "UPDATE jobs SET tenant = owner;"
    "CREATE INDEX jobs_tenant_state ON jobs (tenant, state);"
    "CREATE TABLE tenants ("
    "  name TEXT PRIMARY KEY, max_running INTEGER, max_queued INTEGER,"
    "  weight INTEGER NOT NULL DEFAULT 1) WITHOUT ROWID;",
    /* 10: workflows (POST /v1/workflows): the validated document (nodes with their job ids,
       dependencies, connections), and which workflow each node's job belongs to */
    "CREATE TABLE workflows ("
    "  id TEXT PRIMARY KEY, owner TEXT, name TEXT, created_at INTEGER NOT NULL,"
    "  doc TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX workflows_owner ON workflows (owner, id);"
    "CREATE TABLE workflow_jobs ("
    "  job TEXT PRIMARY KEY, workflow TEXT NOT NULL, node TEXT NOT NULL) WITHOUT ROWID;",
    /* 11: the leader lease (store_leader_take): which server does the periodic work, until
       when (ms since the epoch, the holder's clock) */
    "CREATE TABLE leader ("
    "  name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;",
    /* 12: upload triggers (docs/api.md "Triggers"): each trigger's template, and one fire per
       (trigger, object URI, sha256), pending until the transaction that submits its job or
       workflow records the target */
    "CREATE TABLE triggers ("
    "  id TEXT PRIMARY KEY, owner TEXT, prefix TEXT NOT NULL, workflow INTEGER NOT NULL,"
    "  input TEXT, template TEXT NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE trigger_fires ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, trigger TEXT NOT NULL, uri TEXT NOT NULL,"
    "  sha256 TEXT NOT NULL, created_at INTEGER NOT NULL, target TEXT, error TEXT,"
    "  fired_at INTEGER, UNIQUE (trigger, uri, sha256));"
    "CREATE INDEX trigger_fires_pending ON trigger_fires (id)"
    "  WHERE target IS NULL AND error IS NULL;"
    "CREATE INDEX trigger_fires_recent ON trigger_fires (trigger, id);",
    /* 13: job arrays (docs/api.md "Arrays"): one row per array with its spec once and the
       cursor of its next unclaimed index (indices at or above it are queued without a row of
       their own); skips: the unclaimed indices cancelled, as JSON [[from, to], ...]; open:
       how many tasks may still be claimed (they count as the tenant's queued jobs); a task
       gets its job row (array_tasks) when it is claimed, cancelled or retried; items: one row
       per item of an "items" or "objects" array */
    "CREATE TABLE arrays ("
    "  id TEXT PRIMARY KEY, owner TEXT, tenant TEXT, queue TEXT NOT NULL, name TEXT,"
    "  priority INTEGER NOT NULL, kind INTEGER NOT NULL, source TEXT, count INTEGER NOT NULL,"
    "  next_index INTEGER NOT NULL, skips TEXT NOT NULL, spec TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL, open INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX arrays_owner ON arrays (owner, id);"
    "CREATE INDEX arrays_tenant_open ON arrays (tenant) WHERE open > 0;"
    "CREATE TABLE array_items ("
    "  array_id TEXT NOT NULL, idx INTEGER NOT NULL, item TEXT NOT NULL,"
    "  PRIMARY KEY (array_id, idx)) WITHOUT ROWID;"
    "CREATE TABLE array_tasks ("
    "  array_id TEXT NOT NULL, idx INTEGER NOT NULL, job TEXT NOT NULL,"
    "  PRIMARY KEY (array_id, idx)) WITHOUT ROWID;",
    /* 14: the dashboard's sessions (store_session_insert), by the SHA-256 of the cookie's id */
    "CREATE TABLE sessions ("
    "  id_hash TEXT PRIMARY KEY, token_hash TEXT NOT NULL, csrf TEXT NOT NULL,"
    "  role INTEGER NOT NULL, name TEXT NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX sessions_name ON sessions (name, expires_at);"
    "CREATE INDEX sessions_expiry ON sessions (expires_at);",
    /* 15: a workflow's rows, found from the workflow: retention deletes the workflow with the
       row of its last job (store_job_delete) */
    "CREATE INDEX workflow_jobs_workflow ON workflow_jobs (workflow);",
    /* 16: jobs_queue goes: a queue's jobs are listed newest first through jobs_state_queue,
       one range per state (sqlite_job_list), and each submit writes one index less (~10 %
       of the writer's time per job in batches of 1,000) */
    "DROP INDEX jobs_queue;",
    /* 17: GET /v1/queues without counting finished jobs: job_counts holds how many jobs are
       in each final state (succeeded, failed, cancelled), per queue and owner ('' for jobs
       without one). store_sqlite.c adds each transaction's changes (a job made final, taken
       out of a final state by a retry, or deleted: count_note) in that transaction, at its
       commit. Not triggers: any UPDATE trigger on jobs costs every update of a job (a lease,
       a start) ~4 us, whatever its WHEN, ~10 % of the server's CPU per job, and an INSERT
       trigger doubles an insert's cost. Unfinished jobs are counted from jobs_state_queue
       (state < 4): the cost of a count is the live jobs', not the table's. A row whose count
       went to 0 stays (counts are read with n != 0). */
    "CREATE TABLE job_counts ("
    "  queue TEXT NOT NULL, owner TEXT NOT NULL, state INTEGER NOT NULL, n INTEGER NOT NULL,"
    "  PRIMARY KEY (queue, owner, state)) WITHOUT ROWID;"
    "INSERT INTO job_counts (queue, owner, state, n)"
    "  SELECT queue, coalesce(owner, ''), state, count(*) FROM jobs WHERE state >= 4"
    "  GROUP BY 1, 2, 3;",
    /* 18: job_counts holds the unfinished states too (blocked, queued, leased, running):
       GET /v1/queues reads it alone. Counting the live jobs through jobs_state_queue held
       the server's loop ~65 ms per call with 1,000,000 queued jobs, and a client's call
       (its jobs among them: each row read) ~440 ms. Each lease, start and finish now notes
       its states' deltas (count_note), written with its transaction's commit. */
    "INSERT INTO job_counts (queue, owner, state, n)"
    "  SELECT queue, coalesce(owner, ''), state, count(*) FROM jobs WHERE state < 4"
    "  GROUP BY 1, 2, 3;",
    /* 19: paused queues (POST /v1/queues/{name}/pause): a row while the queue is paused,
       since `at`, by the token `paused_by` */
    "CREATE TABLE queue_pauses ("
    "  queue TEXT PRIMARY KEY, at INTEGER NOT NULL, paused_by TEXT) WITHOUT ROWID;",
    /* 20: a task's row found from its job, which retention deletes (store_job_delete): the
       row goes with the job, and the array (with its items) with its last task once none
       may still be claimed; before, arrays, their items and tasks' rows stayed for ever */
    "CREATE INDEX array_tasks_job ON array_tasks (job);"
    "DELETE FROM array_tasks WHERE job NOT IN (SELECT id FROM jobs);",
    /* 21: schedules (docs/api.md "Schedules"): a trigger with a cron expression instead of a
       prefix (prefix '' then), the time zone it is read in (NULL: UTC), and whether a fire is
       skipped while the run before it is unfinished; its fires are keyed by their time (uri:
       the time in RFC 3339, sha256 '') */
    "ALTER TABLE triggers ADD COLUMN schedule TEXT;"
    "ALTER TABLE triggers ADD COLUMN timezone TEXT;"
    "ALTER TABLE triggers ADD COLUMN skip_overlap INTEGER NOT NULL DEFAULT 0;"
    /* and a trigger's pause (paused_at: since when; NULL: not paused), with when it was last
       resumed (a schedule's times in between do not fire) */
    "ALTER TABLE triggers ADD COLUMN paused_at INTEGER;"
    "ALTER TABLE triggers ADD COLUMN resumed_at INTEGER;",
    /* 22: a queue's max_running (PUT /v1/queues/{name}): at most that many of its jobs
       leased or running at once, set at `at` by the token `set_by` */
    "CREATE TABLE queue_limits ("
    "  queue TEXT PRIMARY KEY, max_running INTEGER NOT NULL, at INTEGER NOT NULL,"
    "  set_by TEXT) WITHOUT ROWID;",
    /* 23: when a trigger was last changed (PUT /v1/triggers/{id}); NULL: never */
    "ALTER TABLE triggers ADD COLUMN updated_at INTEGER;",
    /* 24: what an agent offers, kept for after a restart (an agent that left or was lost shows
       what it had): its runtimes (PROTO_RT_* bits, as it last said; 1, native, for the rows
       from before) and how it enforces resource limits (JSON, as it registered; NULL: unsaid) */
    "ALTER TABLE agents ADD COLUMN runtimes INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE agents ADD COLUMN limits TEXT;",
    /* 25: a tenant's jobs are only counted while they wait (blocked or queued: max_queued),
       so only waiting jobs are indexed by tenant: a lease takes its job out of the index,
       and its start and finish write no entry of it (with (tenant, state) each of the
       three moved the job's entry: ~13 % of the WAL written per job) */
    "DROP INDEX jobs_tenant_state;"
    "CREATE INDEX jobs_tenant_waiting ON jobs (tenant) WHERE state < 2;",
    /* 26: a workflow's idempotency key (POST /v1/workflows "key"), per owner as a job's */
    "ALTER TABLE workflows ADD COLUMN idem_key TEXT;"
    "CREATE UNIQUE INDEX workflows_owner_key ON workflows (coalesce(owner, ''), idem_key)"
    "  WHERE idem_key IS NOT NULL;",
};

#endif
