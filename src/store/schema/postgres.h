/*
 * schema/postgres.h - the PostgreSQL schema as numbered migrations.
 *
 * Migration i brings drover_schema.version from i to i + 1, in one
 * transaction under an advisory lock (several servers may start at once).
 * Never edit a migration that has shipped: add the next one.
 *
 * The same tables as SQLite's (schema/sqlite.h) in their latest shape, with
 * PostgreSQL's types: times are bigint milliseconds, JSON documents text
 * (read back exactly as written), output bytea. Text that is ordered or
 * compared by range (ids, queue and agent names) is COLLATE "C": byte order,
 * as in SQLite, whatever the database's locale.
 */
#ifndef DROVER_SCHEMA_POSTGRES_H
#define DROVER_SCHEMA_POSTGRES_H

static const char *const pg_migrations[] = {
    /* 1: everything SQLite's migrations 1-6 made */
    "CREATE TABLE meta (k text PRIMARY KEY, v text NOT NULL);"
    "CREATE TABLE tokens ("
    "  name text PRIMARY KEY, role integer NOT NULL, hash text NOT NULL UNIQUE,"
    "  created_at bigint NOT NULL);"
    "CREATE TABLE jobs ("
    "  id text COLLATE \"C\" PRIMARY KEY," /* UUIDv7: sorts by creation */
    "  state integer NOT NULL,"            /* enum job_state */
    "  queue text COLLATE \"C\" NOT NULL,"
    "  service text, name text, idem_key text, agent text,"
    "  priority integer NOT NULL, slots integer NOT NULL,"
    "  attempt integer NOT NULL, max_attempts integer NOT NULL,"
    "  created_at bigint NOT NULL, started_at bigint, finished_at bigint,"
    "  run_after bigint NOT NULL,"
    "  labels text, spec text NOT NULL, progress text, result text, attempts text,"
    "  owner text,"
    "  notify_url text, notify_all boolean NOT NULL DEFAULT false);"
    "CREATE UNIQUE INDEX jobs_owner_key ON jobs (coalesce(owner, ''), idem_key)"
    "  WHERE idem_key IS NOT NULL;"
    "CREATE INDEX jobs_state_queue ON jobs (state, queue, id);"
    "CREATE INDEX jobs_queue ON jobs (queue, id);"
    "CREATE INDEX jobs_owner ON jobs (owner, id);"
    "CREATE TABLE agents ("
    "  id text PRIMARY KEY, name text COLLATE \"C\" NOT NULL UNIQUE, labels text NOT NULL,"
    "  queues text NOT NULL, slots integer NOT NULL, version text, state integer NOT NULL,"
    "  last_seen bigint NOT NULL, registered_at bigint NOT NULL, owner text, instance text);"
    "CREATE TABLE job_logs ("
    "  job text NOT NULL, attempt integer NOT NULL, stream integer NOT NULL,"
    "  off bigint NOT NULL, data bytea NOT NULL,"
    "  PRIMARY KEY (job, attempt, stream, off));"
    /* The event stream. seq is given by the writing transaction, which locks event_head's
       row until it commits: events become visible in seq order (a follower reading
       seq > N never misses one committed later with a smaller seq). The newest seq is
       the greater of max(events.seq) and event_head.seq, which pruning sets before it
       deletes (store_pg.c: the row is locked per transaction, no longer updated). */
    "CREATE TABLE events ("
    "  seq bigint PRIMARY KEY, at bigint NOT NULL, kind integer NOT NULL,"
    "  subject text NOT NULL, queue text, state integer NOT NULL, attempt integer,"
    "  agent text, owner text, data text);"
    "CREATE INDEX events_subject ON events (subject, seq);"
    "CREATE TABLE event_head (id integer PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL);"
    "INSERT INTO event_head VALUES (1, 0);"
    "CREATE TABLE webhook_outbox ("
    "  id bigserial PRIMARY KEY, event_seq bigint NOT NULL, url text NOT NULL,"
    "  created_at bigint NOT NULL, next_at bigint NOT NULL, tries integer NOT NULL DEFAULT 0,"
    "  last_error text);"
    "CREATE INDEX webhook_outbox_due ON webhook_outbox (next_at);"
    "CREATE INDEX webhook_outbox_event ON webhook_outbox (event_seq);",
    /* 2: the service hub (SQLite's 7) */
    "CREATE TABLE services ("
    "  name text COLLATE \"C\" NOT NULL, version integer NOT NULL, definition text NOT NULL,"
    "  created_at bigint NOT NULL, created_by text, retired_at bigint,"
    "  PRIMARY KEY (name, version));",
    /* 3: SQLite's 8: retention */
    "ALTER TABLE jobs ADD COLUMN retention_ms bigint;"
    "CREATE INDEX jobs_expiry_default ON jobs (finished_at)"
    "  WHERE state >= 4 AND retention_ms IS NULL;"
    "CREATE INDEX jobs_expiry_own ON jobs ((finished_at + retention_ms))"
    "  WHERE state >= 4 AND retention_ms IS NOT NULL;",
    /* 4: SQLite's 9: tenants */
    "ALTER TABLE tokens ADD COLUMN tenant text;"
    "ALTER TABLE jobs ADD COLUMN tenant text;"
    "UPDATE jobs SET tenant = owner;"
    "CREATE INDEX jobs_tenant_state ON jobs (tenant, state);"
    "CREATE TABLE tenants ("
    "  name text PRIMARY KEY, max_running integer, max_queued integer,"
    "  weight integer NOT NULL DEFAULT 1);",
    /* 5: workflows (SQLite's 10) */
    "CREATE TABLE workflows ("
    "  id text COLLATE \"C\" PRIMARY KEY, owner text, name text, created_at bigint NOT NULL,"
    "  doc text NOT NULL);"
    "CREATE INDEX workflows_owner ON workflows (owner, id);"
    "CREATE TABLE workflow_jobs ("
    "  job text COLLATE \"C\" PRIMARY KEY, workflow text NOT NULL, node text NOT NULL);",
    /* 6: the leader lease (SQLite's 11; store_leader_take): which server does the periodic
       work, until when (ms since the epoch, the holder's clock) */
    "CREATE TABLE leader ("
    "  name text PRIMARY KEY, holder text NOT NULL, expires_at bigint NOT NULL);",
    /* 7: upload triggers (SQLite's 12) */
    "CREATE TABLE triggers ("
    "  id text COLLATE \"C\" PRIMARY KEY, owner text, prefix text NOT NULL,"
    "  workflow boolean NOT NULL, input text, template text NOT NULL, created_at bigint NOT NULL);"
    "CREATE TABLE trigger_fires ("
    "  id bigserial PRIMARY KEY, trigger text NOT NULL, uri text NOT NULL,"
    "  sha256 text NOT NULL, created_at bigint NOT NULL, target text, error text,"
    "  fired_at bigint, UNIQUE (trigger, uri, sha256));"
    "CREATE INDEX trigger_fires_pending ON trigger_fires (id)"
    "  WHERE target IS NULL AND error IS NULL;"
    "CREATE INDEX trigger_fires_recent ON trigger_fires (trigger, id);",
    /* 8: job arrays (SQLite's 13) */
    "CREATE TABLE arrays ("
    "  id text COLLATE \"C\" PRIMARY KEY, owner text, tenant text, queue text NOT NULL,"
    "  name text, priority integer NOT NULL, kind integer NOT NULL, source text,"
    "  count bigint NOT NULL, next_index bigint NOT NULL, skips text NOT NULL,"
    "  spec text NOT NULL, created_at bigint NOT NULL, open bigint NOT NULL);"
    "CREATE INDEX arrays_owner ON arrays (owner, id);"
    "CREATE INDEX arrays_tenant_open ON arrays (tenant) WHERE open > 0;"
    "CREATE TABLE array_items ("
    "  array_id text COLLATE \"C\" NOT NULL, idx bigint NOT NULL, item text NOT NULL,"
    "  PRIMARY KEY (array_id, idx));"
    "CREATE TABLE array_tasks ("
    "  array_id text COLLATE \"C\" NOT NULL, idx bigint NOT NULL, job text NOT NULL,"
    "  PRIMARY KEY (array_id, idx));",
    /* 9: the dashboard's sessions (SQLite's 14) */
    "CREATE TABLE sessions ("
    "  id_hash text COLLATE \"C\" PRIMARY KEY, token_hash text NOT NULL, csrf text NOT NULL,"
    "  role integer NOT NULL, name text NOT NULL, expires_at bigint NOT NULL);"
    "CREATE INDEX sessions_name ON sessions (name, expires_at);"
    "CREATE INDEX sessions_expiry ON sessions (expires_at);",
    /* 10: SQLite's 15: a workflow's rows, found from the workflow (store_job_delete) */
    "CREATE INDEX workflow_jobs_workflow ON workflow_jobs (workflow);",
    /* 11: the ready table: one row per queued job (state 1), written in the transaction that
       makes the job queued or takes it out of queued (store_pg.c), so that leasing locks and
       deletes rows of a small table however many finished jobs `jobs` holds. The job's id
       (UUIDv7) is its creation order. Its rows live briefly: autovacuum visits it after a
       fixed 1,000 dead rows, not after a fraction of its size, at full speed (a small table:
       no cost delay), so its bloat stays bounded. */
    "CREATE TABLE ready ("
    "  job text COLLATE \"C\" PRIMARY KEY, queue text COLLATE \"C\" NOT NULL,"
    "  priority integer NOT NULL, run_after bigint NOT NULL)"
    "  WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,"
    "        autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0,"
    "        autovacuum_analyze_threshold = 1000);"
    "INSERT INTO ready (job, queue, priority, run_after)"
    "  SELECT id, queue, priority, run_after FROM jobs WHERE state = 1;",
    /* 12: updates of a job that keep it unfinished (lease, started, progress, unlease) are
       HOT: no index of jobs holds a column they change (state, agent, attempt, started_at,
       progress, run_after), and its pages keep room for the new row version (fillfactor 50:
       a lease writes one for every row of the page in one transaction), so they write no
       index entry. What found jobs by state finds them by end_state, computed: the state of
       a finished job, NULL while it is unfinished (a lease does not change it): unfinished
       ones by jobs_live, finished ones by jobs_ended. A finish writes the indexes of its new
       row version: four (five with an owner), not six. jobs_owner and jobs_tenant_live leave
       out jobs without an owner or tenant, which no query by owner or tenant finds. Adding
       the column rewrites jobs under an exclusive lock: the servers' work waits for it
       (docs/operations.md). */
    "DROP INDEX jobs_state_queue, jobs_tenant_state, jobs_expiry_default, jobs_expiry_own,"
    "  jobs_owner;"
    "ALTER TABLE jobs ADD COLUMN end_state integer GENERATED ALWAYS AS "
    "  (CASE WHEN state >= 4 THEN state END) STORED,"
    "  SET (fillfactor = 50);"
    "CREATE INDEX jobs_live ON jobs (id) WHERE end_state IS NULL;"
    "CREATE INDEX jobs_owner ON jobs (owner, id) WHERE owner IS NOT NULL;"
    "CREATE INDEX jobs_tenant_live ON jobs (tenant) WHERE end_state IS NULL AND tenant IS NOT NULL;"
    "CREATE INDEX jobs_ended ON jobs (end_state, id) WHERE end_state IS NOT NULL;"
    "CREATE INDEX jobs_expiry_default ON jobs (finished_at)"
    "  WHERE end_state IS NOT NULL AND retention_ms IS NULL;"
    "CREATE INDEX jobs_expiry_own ON jobs ((finished_at + retention_ms))"
    "  WHERE end_state IS NOT NULL AND retention_ms IS NOT NULL;",
    /* 13: GET /v1/queues without counting finished jobs (SQLite's 17): job_counts holds how
       many jobs are in each final state, per queue and owner ('' for jobs without one), in
       shards (store_pg.c counts_sql: each connection adds to its own, its backend's pid mod
       16, so that several servers finishing jobs of one queue do not wait on one row; the
       counts are the sums over the shards, a shard alone may be negative). store_pg.c adds
       each transaction's changes with its COMMIT (store_int.h: not triggers, whose function
       cost ~10 us of the database's CPU per finish). Unfinished jobs are counted from
       jobs_live. Its rows are few and updated often: vacuumed like ready's (schema 11). */
    "CREATE TABLE job_counts ("
    "  queue text COLLATE \"C\" NOT NULL, owner text NOT NULL, state integer NOT NULL,"
    "  shard integer NOT NULL, n bigint NOT NULL,"
    "  PRIMARY KEY (queue, owner, state, shard))"
    "  WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0,"
    "        autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0,"
    "        autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 1000);"
    /* counted under a lock that makes other servers' writes of jobs wait until the
       migration commits: the counts are those of the jobs as they are at its commit */
    "LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;"
    "INSERT INTO job_counts (queue, owner, state, shard, n)"
    "  SELECT queue, coalesce(owner, ''), state, 0, count(*) FROM jobs"
    "  WHERE end_state IS NOT NULL GROUP BY 1, 2, 3;",
    /* 14: job_counts holds the unfinished states too (SQLite's 18): GET /v1/queues reads it
       alone instead of counting the live jobs through jobs_live (a million queued jobs
       counted at each call). Each write of a job notes the state it leaves (store_pg.c);
       counted under 13's lock, as they are at the migration's commit. */
    "LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;"
    "INSERT INTO job_counts (queue, owner, state, shard, n)"
    "  SELECT queue, coalesce(owner, ''), state, 0, count(*) FROM jobs"
    "  WHERE end_state IS NULL GROUP BY 1, 2, 3;",
    /* 15: paused queues (SQLite's 19) */
    "CREATE TABLE queue_pauses ("
    "  queue text COLLATE \"C\" PRIMARY KEY, at bigint NOT NULL, paused_by text);",
    /* 16: a task's row found from its job (SQLite's 20) */
    "CREATE INDEX array_tasks_job ON array_tasks (job);"
    "DELETE FROM array_tasks t WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = t.job);",
    /* 17: schedules (SQLite's 21) */
    "ALTER TABLE triggers ADD COLUMN schedule text, ADD COLUMN timezone text,"
    "  ADD COLUMN skip_overlap boolean NOT NULL DEFAULT false,"
    "  ADD COLUMN paused_at bigint, ADD COLUMN resumed_at bigint;",
    /* 18: queues' max_running (SQLite's 22) */
    "CREATE TABLE queue_limits ("
    "  queue text COLLATE \"C\" PRIMARY KEY, max_running integer NOT NULL, at bigint NOT NULL,"
    "  set_by text);",
    /* 19: when a trigger was last changed (SQLite's 23) */
    "ALTER TABLE triggers ADD COLUMN updated_at bigint;",
    /* 20: agents' runtimes and limits (SQLite's 24) */
    "ALTER TABLE agents ADD COLUMN runtimes integer NOT NULL DEFAULT 1, ADD COLUMN limits text;",
    /* 21: a workflow's idempotency key (SQLite's 26) */
    "ALTER TABLE workflows ADD COLUMN idem_key text;"
    "CREATE UNIQUE INDEX workflows_owner_key ON workflows (coalesce(owner, ''), idem_key)"
    "  WHERE idem_key IS NOT NULL;",
};

#endif
