/*
 * test_store.c - the store conformance suite: what every backend behind store.h must do.
 *
 * Each test runs once per entry of `backends[]`, on a fresh, empty location made by the
 * fixture (per-test setup) and removed afterwards (teardown): SQLite on a real file in a new
 * mkdtemp folder; PostgreSQL (when built WITH_POSTGRES and DROVER_TEST_PG_URI names a server,
 * postgres://USER@HOST:PORT/DB with the right to create databases) in a new database made on
 * that server for the test and dropped after it. scripts/test.sh starts a throwaway server
 * (scripts/pgtest.sh) and sets DROVER_TEST_PG_URI; without it the PostgreSQL group is skipped
 * with a message. To add a backend, write its create / destroy / exists / check_schema
 * functions (create: a fresh location, with its URI in f->uri and an unopenable one in
 * f->bad_uri) and add one line to `backends[]`.
 *
 * Jobs are made the real way: a JSON spec through spec_parse() and job_from_spec().
 * Writes are made between store_begin() and store_commit(), as the contract asks.
 */
#include <dirent.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>
#ifdef WITH_POSTGRES
#include <libpq-fe.h>
#endif

/*
 * Memory that the library allocated (store_meta_get's value, store_queue_stats' array) is
 * freed with libc's free(): this function is defined before cmocka.h replaces free() in this
 * file with its own checked allocator.
 */
static void lib_free(void *p)
{
    free(p);
}

#include <cmocka.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/role.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/array.h"
#include "job/job.h"
#include "job/spec.h"
#include "job/workflow.h"
#include "store/schema/sqlite.h"
#ifdef WITH_POSTGRES
#include "store/schema/postgres.h"
#endif
#include "store/store.h"

/* Milliseconds: a fixed clock, so that times read back can be compared exactly. */
#define T0 INT64_C(1764000000000)

/* --- backends ------------------------------------------------------------------------------ */

struct backend;

struct fixture {
    const struct backend *be;
    char dir[PATH_MAX];          /* sqlite: the temporary folder */
    char db[64];                 /* postgres: the database */
    char uri[PATH_MAX + 64];     /* the store under test */
    char bad_uri[PATH_MAX + 64]; /* same scheme, a location that cannot be opened */
    struct store *st;            /* opened by setup_open */
    struct store *st2;           /* a second handle, closed by teardown when a test opens it */
};

struct backend {
    const char *name;
    /* Makes a fresh, empty location and fills f->uri and f->bad_uri; 0 or -1. */
    int (*create)(struct fixture *f);
    /* Removes the location and everything in it; 0 or -1. */
    int (*destroy)(struct fixture *f);
    /* Whether anything exists at f->uri yet (before the first store_open: no). */
    bool (*exists)(const struct fixture *f);
    /* Asserts that the store at f->uri is at the latest schema version. */
    void (*check_schema)(const struct fixture *f);
    /*
     * Backends where writers lock rows, not the whole store (NULL otherwise): holds job id's
     * row locked from a connection of its own, as another server's transaction would, until
     * unlock_job(handle).
     */
    void *(*lock_job)(const struct fixture *f, const char *id);
    void (*unlock_job)(void *handle);
    /*
     * Backends that keep queued jobs in a table of their own as well (NULL otherwise): 0 when
     * it holds exactly the queued jobs, with their queue, priority and run_after; else -1 with
     * a message. Checked after every test, whatever the test did to its jobs.
     */
    int (*check_ready)(const struct fixture *f);
    /*
     * A one-value query on the store at f->uri (malloc'd text, lib_free() it), or NULL when
     * it fails. Used after every test to compare job_counts with a count of the jobs.
     */
    char *(*value)(const struct fixture *f, const char *sql);
};

static int sqlite_create(struct fixture *f)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/drover-test-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->uri, sizeof(f->uri), "sqlite:%s/drover.db", f->dir);
    snprintf(f->bad_uri, sizeof(f->bad_uri), "sqlite:%s/no/such/folder/drover.db", f->dir);
    return 0;
}

static int sqlite_destroy(struct fixture *f)
{
    DIR *d = opendir(f->dir);
    if (!d)
        return -1;
    struct dirent *de;
    char path[PATH_MAX + 300];
    int rc = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", f->dir, de->d_name);
        if (unlink(path))
            rc = -1;
    }
    closedir(d);
    if (rmdir(f->dir))
        rc = -1;
    return rc;
}

static const char *sqlite_path(const struct fixture *f)
{
    return f->uri + strlen("sqlite:");
}

static bool sqlite_exists(const struct fixture *f)
{
    struct stat sb;
    return stat(sqlite_path(f), &sb) == 0;
}

static char *sqlite_value(const struct fixture *f, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    char *v = NULL;
    if (sqlite3_open_v2(sqlite_path(f), &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW &&
        sqlite3_column_type(q, 0) != SQLITE_NULL)
        v = strdup((const char *)sqlite3_column_text(q, 0));
    else
        fprintf(stderr, "sqlite: %s: %s\n", sql, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static void sqlite_check_schema(const struct fixture *f)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_open_v2(sqlite_path(f), &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);

    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int version = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);

    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                        "AND name IN ('jobs', 'tokens', 'meta')",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int tables = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);

    /* WAL is what lets the server's reader run beside its writer. */
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    char mode[16];
    snprintf(mode, sizeof(mode), "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    sqlite3_close(db);

    assert_int_equal(version, (int)ARRAY_SIZE(sqlite_migrations));
    assert_int_equal(tables, 3);
    assert_string_equal(mode, "wal");
}

#ifdef WITH_POSTGRES
/*
 * The server: DROVER_TEST_PG_URI up to its path ("postgres://u@h:p"), and what follows the
 * database name ("?opt=..."), so that a database's URI is base + "/" + name + tail.
 */
static char pg_base[512], pg_tail[512];
static const char *pg_admin_uri; /* DROVER_TEST_PG_URI: where databases are made and dropped */
static unsigned pg_made;

static int pg_split(const char *uri)
{
    const char *auth = strstr(uri, "://");
    if (!auth)
        return -1;
    auth += 3;
    size_t n = strcspn(auth, "/?");
    const char *rest = auth + n;
    if (*rest == '/')
        rest += strcspn(rest, "?");
    snprintf(pg_base, sizeof(pg_base), "%.*s", (int)(auth + n - uri), uri);
    snprintf(pg_tail, sizeof(pg_tail), "%s", rest);
    return 0;
}

/* Runs one statement on the admin connection: 0 or -1 (with the message on stderr). */
static int pg_admin(const char *sql)
{
    PGconn *c = PQconnectdb(pg_admin_uri);
    int rc = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
        if (rc)
            fprintf(stderr, "postgres: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        fprintf(stderr, "postgres: cannot connect to DROVER_TEST_PG_URI: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return rc;
}

static int pg_create(struct fixture *f)
{
    snprintf(f->db, sizeof(f->db), "drover_test_%ld_%u", (long)getpid(), pg_made++);
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->db);
    if (pg_admin(sql))
        return -1;
    snprintf(f->uri, sizeof(f->uri), "%s/%s%s", pg_base, f->db, pg_tail);
    snprintf(f->bad_uri, sizeof(f->bad_uri), "%s/%s_no_such_database%s", pg_base, f->db,
             pg_tail);
    return 0;
}

static int pg_destroy(struct fixture *f)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", f->db);
    return pg_admin(sql);
}

/* A one-value query on the test's database; NULL when it fails. lib_free() it. */
static char *pg_value(const struct fixture *f, const char *sql)
{
    PGconn *c = PQconnectdb(f->uri);
    char *v = NULL;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
            v = strdup(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(c);
    return v;
}

static bool pg_exists(const struct fixture *f)
{
    char *v = pg_value(f, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()");
    bool any = v && strcmp(v, "0");
    lib_free(v);
    return any;
}

static void pg_check_schema(const struct fixture *f)
{
    char *version = pg_value(f, "SELECT version FROM drover_schema");
    char *tables = pg_value(f, "SELECT count(*) FROM pg_tables WHERE schemaname = "
                               "current_schema() AND tablename IN ('jobs', 'tokens', 'meta')");
    char want[16];
    snprintf(want, sizeof(want), "%d", (int)ARRAY_SIZE(pg_migrations));
    assert_non_null(version);
    assert_non_null(tables);
    assert_string_equal(version, want);
    assert_string_equal(tables, "3");
    lib_free(version);
    lib_free(tables);
}

static void *pg_lock_job(const struct fixture *f, const char *id)
{
    PGconn *c = PQconnectdb(f->uri);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    const char *params[] = {id};
    PGresult *r = PQexec(c, "BEGIN");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    r = PQexecParams(c, "SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", 1, NULL, params, NULL,
                     NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    PQclear(r);
    return c;
}

static void pg_unlock_job(void *handle)
{
    PQclear(PQexec(handle, "ROLLBACK"));
    PQfinish(handle);
}

static int pg_check_ready(const struct fixture *f)
{
    char *v = pg_value(f, "SELECT count(*) FROM (SELECT id, queue, priority, run_after "
                          "FROM jobs WHERE state = 1) q FULL JOIN ready r ON r.job = q.id "
                          "AND r.queue = q.queue AND r.priority = q.priority "
                          "AND r.run_after = q.run_after WHERE q.id IS NULL OR r.job IS NULL");
    int rc = v && !strcmp(v, "0") ? 0 : -1;
    if (rc)
        fprintf(stderr, "postgres: the ready table differs from the queued jobs in %s rows\n",
                v ? v : "(unreadable)");
    lib_free(v);
    return rc;
}
#endif

/* One line per backend; the PostgreSQL one runs when DROVER_TEST_PG_URI is set. */
static const struct backend backends[] = {
    {"sqlite", sqlite_create, sqlite_destroy, sqlite_exists, sqlite_check_schema, NULL, NULL,
     NULL, sqlite_value},
#ifdef WITH_POSTGRES
    {"postgres", pg_create, pg_destroy, pg_exists, pg_check_schema, pg_lock_job, pg_unlock_job,
     pg_check_ready, pg_value},
#endif
};

/* The backend whose group is running (cmocka passes no argument to a group). */
static const struct backend *current;

/* --- fixture ------------------------------------------------------------------------------- */

/* A fresh location, nothing opened yet. */
static int setup_empty(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->be = current;
    if (f->be->create(f)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

/* A fresh location with the store opened on it as f->st. */
static int setup_open(void **state)
{
    if (setup_empty(state))
        return -1;
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    if (store_open(f->uri, NULL, &f->st, &e)) {
        fprintf(stderr, "store_open('%s'): %s\n", f->uri, e.msg);
        return -1;
    }
    return 0;
}

/*
 * The (queue, owner, state) rows where job_counts (SQLite schema 17, every state since 18;
 * PostgreSQL 13, every state since 14; summed over its shards) differs from a count of the
 * jobs. The same SQL for both backends.
 */
#define COUNTS_DIFF                                                                                \
    "SELECT count(*) FROM (SELECT queue, owner, state FROM ("                                      \
    "SELECT queue, coalesce(owner, '') AS owner, state, count(*) AS n FROM jobs "                  \
    "GROUP BY queue, coalesce(owner, ''), state "                                                  \
    "UNION ALL SELECT queue, owner, state, -n FROM job_counts) d "                                 \
    "GROUP BY queue, owner, state HAVING sum(n) <> 0) x"

/*
 * 0 when job_counts holds exactly the counts of the jobs, else -1 with a message.
 * Checked after every test, whatever the test did to its jobs. A store left at an older
 * schema (a test of migrations refused) has no job_counts: nothing to compare.
 */
static int check_counts(const struct fixture *f)
{
    char *has = f->be->value(f, strcmp(f->be->name, "sqlite")
                                    ? "SELECT count(*) FROM pg_tables WHERE tablename = "
                                      "'job_counts' AND schemaname = current_schema()"
                                    : "SELECT count(*) FROM sqlite_master WHERE name = "
                                      "'job_counts'");
    bool exists = has && strcmp(has, "0");
    lib_free(has);
    if (!exists)
        return 0;
    char *v = f->be->value(f, COUNTS_DIFF);
    int rc = v && !strcmp(v, "0") ? 0 : -1;
    if (rc)
        fprintf(stderr, "%s: job_counts differs from the jobs in %s rows\n",
                f->be->name, v ? v : "(unreadable)");
    lib_free(v);
    return rc;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (!f)
        return 0;
    store_close(f->st2);
    store_close(f->st);
    /* a test that never made the schema has no ready table to compare */
    bool made = f->be->exists(f);
    int ready = f->be->check_ready && made ? f->be->check_ready(f) : 0;
    int counts = made ? check_counts(f) : 0;
    int rc = f->be->destroy(f) || ready || counts ? -1 : 0;
    free(f);
    *state = NULL;
    return rc;
}

/* --- helpers ------------------------------------------------------------------------------- */

/* Fails the test with the store's message when `call` does not return 0. */
#define assert_ok(call, e)                                                                         \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_)                                                                                   \
            fail_msg("%s returned %d: %s", #call, rc_, (e)->msg);                                  \
    } while (0)

/* Asserts that `call` fails with `code` and says something about it. */
#define assert_err(call, want, e)                                                                  \
    do {                                                                                           \
        err_clear(e);                                                                              \
        int rc_ = (call);                                                                          \
        if (rc_ != (want))                                                                         \
            fail_msg("%s returned %d, expected %d (%s)", #call, rc_, (int)(want), (e)->msg);       \
        assert_int_equal((e)->code, (want));                                                       \
        assert_true((e)->msg[0] != '\0');                                                          \
    } while (0)

/*
 * Makes a queued job at time `now` from a spec. The spec is written with ' for " to keep the
 * literals readable, and formatted like printf.
 */
PRINTF_LIKE(3, 4) static void make_job(struct job *j, int64_t now, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(text));
    for (char *p = text; *p; p++)
        if (*p == '\'')
            *p = '"';

    json_error_t jerr;
    json_t *in = json_loads(text, 0, &jerr);
    if (!in)
        fail_msg("bad test json (%s): %s", jerr.text, text);
    struct job_spec s;
    struct err e = ERR_INIT;
    int rc = spec_parse(in, NULL, &s, &e);
    json_decref(in);
    if (rc)
        fail_msg("spec_parse failed: %s (field %s) for %s", e.msg, e.field, text);
    job_from_spec(j, &s, now);
    spec_release(&s);
}

/* A minimal job in `queue`. */
static void make_simple(struct job *j, int64_t now, const char *queue)
{
    make_job(j, now, "{'queue': '%s', 'command': {'program': 'true'}}", queue);
}

/* Inserts jobs in one transaction. */
static void insert_jobs(struct store *st, struct job *jobs, size_t n)
{
    struct err e = ERR_INIT;
    assert_ok(store_begin(st, &e), &e);
    for (size_t i = 0; i < n; i++)
        assert_ok(store_job_insert(st, &jobs[i], &e), &e);
    assert_ok(store_commit(st, &e), &e);
}

static void release_jobs(struct job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        job_release(&jobs[i]);
}

static void assert_str_same(const char *want, const char *got, const char *what)
{
    if (!want && !got)
        return;
    if (!want || !got || strcmp(want, got))
        fail_msg("%s: expected '%s', got '%s'", what, want ? want : "(null)",
                 got ? got : "(null)");
}

/* Both absent, or equal JSON (json_equal is false for two NULLs). */
static void assert_json_same(const json_t *want, const json_t *got, const char *what)
{
    if (!want && !got)
        return;
    if (!want || !got || !json_equal(want, got))
        fail_msg("%s: the JSON read back differs from the JSON stored", what);
}

/* Two normalised specs alike once their defaults are written in (spec.h). */
static void assert_spec_same(const json_t *want, const json_t *got, const char *what)
{
    json_t *w = want ? spec_expand(json_incref((json_t *)want)) : NULL;
    json_t *g = got ? spec_expand(json_incref((json_t *)got)) : NULL;
    bool same = (!w && !g) || (w && g && json_equal(w, g));
    json_decref(w);
    json_decref(g);
    if (!same)
        fail_msg("%s: the spec read back differs from the spec stored", what);
}

/* Every field of the record. */
static void assert_job_equal(const struct job *want, const struct job *got)
{
    assert_string_equal(got->id, want->id);
    assert_int_equal(got->state, want->state);
    assert_str_same(want->queue, got->queue, "queue");
    assert_str_same(want->service, got->service, "service");
    assert_str_same(want->name, got->name, "name");
    assert_str_same(want->key, got->key, "key");
    assert_str_same(want->agent, got->agent, "agent");
    assert_str_same(want->owner, got->owner, "owner");
    assert_int_equal(got->priority, want->priority);
    assert_int_equal(got->slots, want->slots);
    assert_int_equal(got->attempt, want->attempt);
    assert_int_equal(got->max_attempts, want->max_attempts);
    assert_int_equal(got->created_at, want->created_at);
    assert_int_equal(got->started_at, want->started_at);
    assert_int_equal(got->finished_at, want->finished_at);
    assert_int_equal(got->run_after, want->run_after);
    assert_json_same(want->labels, got->labels, "labels");
    assert_spec_same(want->spec, got->spec, "spec");
    assert_json_same(want->progress, got->progress, "progress");
    assert_json_same(want->result, got->result, "result");
    assert_json_same(want->attempts, got->attempts, "attempts");
}

static struct job_filter filter_any(void)
{
    return (struct job_filter){.state = -1, .limit = 1000};
}

/* Lists with `flt` and asserts that exactly the jobs `want` (ids, in that order) come back. */
static void assert_list(struct store *st, const struct job_filter *flt, const char *const *want,
                        size_t n)
{
    struct job_list l = {0};
    struct err e = ERR_INIT;
    assert_ok(store_job_list(st, flt, &l, &e), &e);
    char got[64][UUID_STR_LEN];
    size_t got_n = l.n;
    for (size_t i = 0; i < l.n && i < ARRAY_SIZE(got); i++)
        snprintf(got[i], sizeof(got[i]), "%s", l.jobs[i].id);
    job_list_release(&l);
    assert_int_equal(got_n, n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(got[i], want[i]))
            fail_msg("job_list row %zu: expected %s, got %s", i, want[i], got[i]);
}

/* A token hash: 64 hex digits of `c`. */
static void make_hash(char out[65], char c)
{
    memset(out, c, 64);
    out[64] = '\0';
}

/* --- open ---------------------------------------------------------------------------------- */

static void test_open_creates_and_migrates(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    assert_false(f->be->exists(f));

    assert_ok(store_open(f->uri, NULL, &f->st, &e), &e);
    assert_non_null(f->st);
    assert_true(f->be->exists(f));
    f->be->check_schema(f);
    assert_int_equal(store_caps(f->st) & ~(unsigned)(STORE_CAP_SHARED | STORE_CAP_LEADER), 0);

    /* Empty, and every table usable. */
    struct job_filter flt = filter_any();
    assert_list(f->st, &flt, NULL, 0);
    struct queue_stat *qs = NULL;
    size_t n = 99;
    assert_ok(store_queue_stats(f->st, NULL, &qs, &n, &e), &e);
    assert_int_equal(n, 0);
    lib_free(qs);
    int64_t count = -1;
    assert_ok(store_token_count(f->st, ROLE_ADMIN, &count, &e), &e);
    assert_int_equal(count, 0);
    char *v = NULL;
    assert_err(store_meta_get(f->st, "secret", &v, &e), ERR_NOTFOUND, &e);

    struct job j;
    make_simple(&j, T0, "default");
    insert_jobs(f->st, &j, 1);
    struct job got;
    assert_ok(store_job_get(f->st, j.id, &got, &e), &e);
    assert_job_equal(&j, &got);
    job_release(&got);
    job_release(&j);
}

static void test_open_sync_full(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct store_opts opts = {.sync_full = true};
    assert_ok(store_open(f->uri, &opts, &f->st, &e), &e);
    struct job j;
    make_simple(&j, T0, "default");
    insert_jobs(f->st, &j, 1);
    struct job got;
    assert_ok(store_job_get(f->st, j.id, &got, &e), &e);
    job_release(&got);
    job_release(&j);
}

/*
 * SQLite with store_opts.checkpointer: SQLite's own checkpoint after commits is off and a
 * thread of the store's checkpoints instead; the WAL's pages still reach the database file
 * (here ~6,000 pages of commits: past its 4,000, well below the committing connection's own
 * backstop of 16,000).
 */
static void test_sqlite_checkpointer(void **state)
{
    struct fixture *f = *state;
    if (strncmp(f->uri, "sqlite:", 7)) skip(); /* a SQLite store's WAL */
    struct err e = ERR_INIT;
    struct store_opts opts = {.checkpointer = true};
    assert_ok(store_open(f->uri, &opts, &f->st, &e), &e);
    struct stat before;
    assert_int_equal(stat(sqlite_path(f), &before), 0);
    char pad[2001];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int batch = 0; batch < 60; batch++) {
        struct job jobs[200];
        for (int i = 0; i < 200; i++)
            make_job(&jobs[i], T0 + batch * 200 + i,
                     "{'queue': 'q', 'command': {'program': 'echo', 'arguments': "
                     "[{'type': 'parameter', 'value': '%s'}]}}",
                     pad);
        insert_jobs(f->st, jobs, 200);
        release_jobs(jobs, 200);
    }
    struct stat after = before;
    for (int i = 0; i < 200 && after.st_size < before.st_size + (4 << 20); i++) {
        usleep(25000);
        assert_int_equal(stat(sqlite_path(f), &after), 0);
    }
    assert_true(after.st_size >= before.st_size + (4 << 20));
    store_close(f->st); /* stops the thread */
    f->st = NULL;
}

static void test_reopen_keeps_data(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job jobs[2];
    make_job(&jobs[0], T0, "{'queue': 'q1', 'key': 'k1', 'labels': {'a': 'b'}, "
                           "'command': {'program': 'true'}}");
    make_simple(&jobs[1], T0 + 1, "q2");
    insert_jobs(f->st, jobs, 2);
    char hash[65];
    make_hash(hash, 'a');
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_token_insert(f->st, "admin", ROLE_ADMIN, hash, &e), &e);
    assert_ok(store_meta_set(f->st, "secret", "s3cr3t", &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    store_close(f->st);
    f->st = NULL;

    /* Twice: the second open finds the schema current and migrates nothing. */
    for (int round = 0; round < 2; round++) {
        assert_ok(store_open(f->uri, NULL, &f->st, &e), &e);
        f->be->check_schema(f);
        for (size_t i = 0; i < 2; i++) {
            struct job got;
            assert_ok(store_job_get(f->st, jobs[i].id, &got, &e), &e);
            assert_job_equal(&jobs[i], &got);
            job_release(&got);
        }
        int role = 0;
        char name[64] = "";
        assert_ok(store_token_find(f->st, hash, &role, name, sizeof(name), &e), &e);
        assert_int_equal(role, ROLE_ADMIN);
        assert_string_equal(name, "admin");
        char *v = NULL;
        assert_ok(store_meta_get(f->st, "secret", &v, &e), &e);
        assert_string_equal(v, "s3cr3t");
        lib_free(v);
        store_close(f->st);
        f->st = NULL;
    }

    /* And it takes new writes after the reopen. */
    assert_ok(store_open(f->uri, NULL, &f->st, &e), &e);
    struct job j3;
    make_simple(&j3, T0 + 2, "q1");
    insert_jobs(f->st, &j3, 1);
    struct job_filter flt = filter_any();
    const char *want[] = {j3.id, jobs[1].id, jobs[0].id};
    assert_list(f->st, &flt, want, 3);
    job_release(&j3);
    release_jobs(jobs, 2);
}

/*
 * SQLite: a store made by an older drover (schema 15, with the index jobs_queue and a job in
 * it) is brought to the latest schema on open: jobs_queue is gone (schema 16), the job is
 * there, listed by its queue; a queue's listing reads jobs_state_queue, not the whole table.
 */
static void test_sqlite_migrates_from_15(void **state)
{
    struct fixture *f = *state;
    if (strcmp(f->be->name, "sqlite")) {
        skip();
        return;
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(sqlite_path(f), &db), SQLITE_OK);
    for (int v = 0; v < 15; v++)
        assert_int_equal(sqlite3_exec(db, sqlite_migrations[v], NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "PRAGMA user_version = 15;"
                                  "INSERT INTO jobs (id, state, queue, priority, slots, attempt, "
                                  "max_attempts, created_at, run_after, spec) VALUES "
                                  "('01900000-0000-7000-8000-000000000001', 1, 'old', 0, 1, 0, "
                                  "1, 1, 1, '{\"queue\":\"old\"}')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    struct err e = ERR_INIT;
    assert_ok(store_open(f->uri, NULL, &f->st, &e), &e);
    f->be->check_schema(f);
    struct job_filter flt = filter_any();
    flt.queue = "old";
    const char *want[] = {"01900000-0000-7000-8000-000000000001"};
    assert_list(f->st, &flt, want, 1);

    assert_int_equal(sqlite3_open(sqlite_path(f), &db), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE type = "
                                            "'index' AND name = 'jobs_queue'", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 0);
    sqlite3_finalize(q);
    /* the shape of sqlite_job_list's statement for a queue alone: no step of it scans jobs */
    struct buf sql = BUF_INIT;
    buf_adds(&sql, "EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE id IN (SELECT id FROM (");
    for (int k = 0; k < JOB_NSTATES; k++)
        buf_addf(&sql, "%sSELECT * FROM (SELECT id FROM jobs WHERE state = %d AND queue = 'old' "
                       "ORDER BY id DESC LIMIT 50)", k ? " UNION ALL " : "", k);
    buf_adds(&sql, ") ORDER BY id DESC LIMIT 50) ORDER BY id DESC LIMIT 50");
    assert_int_equal(sqlite3_prepare_v2(db, sql.data, -1, &q, NULL), SQLITE_OK);
    buf_release(&sql);
    int searches = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(q, 3);
        if (strstr(detail, "SCAN jobs"))
            fail_msg("a queue's listing scans the table: %s", detail);
        searches += strstr(detail, "COVERING INDEX jobs_state_queue") != NULL;
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    assert_int_equal(searches, JOB_NSTATES);
}

static void test_open_bad_scheme(void **state)
{
    (void)state;
    static const char *const uris[] = {
        "nosuch:/tmp/x.db", "/tmp/no-scheme.db", "", "sqlite", "sqlit:/tmp/x.db", "sqlite:",
    };
    for (size_t i = 0; i < ARRAY_SIZE(uris); i++) {
        struct store *st = NULL;
        struct err e = ERR_INIT;
        int rc = store_open(uris[i], NULL, &st, &e);
        if (rc != ERR_INVALID)
            fail_msg("store_open('%s') returned %d, expected ERR_INVALID", uris[i], rc);
        assert_null(st);
        assert_int_equal(e.code, ERR_INVALID);
        assert_true(e.msg[0] != '\0');
        assert_non_null(strstr(e.msg, uris[i])); /* the message names what was given */
    }
}

/* A postgres URI: refused clearly when built without it; its password never in a message. */
static void test_open_postgres_uri(void **state)
{
    (void)state;
    struct store *st = NULL;
    struct err e = ERR_INIT;
    int rc = store_open("postgres://drover:hunter2@127.0.0.1:1/drover", NULL, &st, &e);
    assert_true(rc < 0);
    assert_null(st);
    assert_null(strstr(e.msg, "hunter2"));
    assert_non_null(strstr(e.msg, "postgres://drover:***@127.0.0.1:1/drover"));
#ifdef WITH_POSTGRES
    assert_int_equal(rc, ERR_UNAVAILABLE); /* nothing listens on port 1 */
#else
    assert_int_equal(rc, ERR_INVALID);
    assert_non_null(strstr(e.msg, "WITH_POSTGRES"));
#endif
}

static void test_open_missing_folder(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct store *st = NULL;
    int rc = store_open(f->bad_uri, NULL, &st, &e);
    assert_true(rc < 0);
    assert_int_equal(e.code, rc);
    assert_true(e.msg[0] != '\0');
    assert_null(st);
    /* Same with no struct err to fill. */
    assert_true(store_open(f->bad_uri, NULL, &st, NULL) < 0);
    assert_null(st);
}

/* --- insert and get ------------------------------------------------------------------------ */

static void test_insert_get_every_field(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job jobs[3];
    make_job(&jobs[0], T0,
             "{'queue': 'bio.q-1', 'service': 'nhmmer', 'name': 'a long name \\u00e9', "
             "'key': 'req-1', 'priority': -5, 'slots': 3, 'delay_s': 2.5, "
             "'retry': {'max_attempts': 7}, 'labels': {'project': 'x', 'team.name': 'core'}, "
             "'requires': {'db': 'rfam'}, 'timeout_s': 600, "
             "'command': {'program': 'nhmmer', 'arguments': "
             "[{'type': 'parameter', 'name': '--cpu', 'value': 2}, "
             "{'type': 'input', 'value': 's3://in/q.fa'}], 'env': {'A': 'b'}}}");
    make_simple(&jobs[1], T0 + 1, "default"); /* no service, name, key; empty labels */

    /* A record further along its life: every optional column filled. */
    make_job(&jobs[2], T0 + 2, "{'queue': 'q', 'service': 's', 'command': {'program': 'p'}}");
    jobs[2].state = JOB_FAILED;
    jobs[2].agent = xstrdup("agent-7");
    jobs[2].owner = xstrdup("team-a");
    jobs[2].attempt = 2;
    jobs[2].started_at = T0 + 100;
    jobs[2].finished_at = T0 + 200;
    jobs[2].progress = json_pack("{s:i, s:s}", "percent", 50, "message", "half");
    jobs[2].result = json_pack("{s:s, s:i}", "reason", "exit", "code", 3);
    jobs[2].attempts = json_pack("[{s:i}]", "attempt", 1);

    /* What job_from_spec filled in, so that the comparison below means something. */
    assert_int_equal(jobs[0].state, JOB_QUEUED);
    assert_int_equal(jobs[0].priority, -5);
    assert_int_equal(jobs[0].slots, 3);
    assert_int_equal(jobs[0].max_attempts, 7);
    assert_int_equal(jobs[0].run_after, T0 + 2500);
    assert_non_null(jobs[0].labels);
    assert_null(jobs[1].service);
    assert_null(jobs[1].key);

    insert_jobs(f->st, jobs, 3);
    for (size_t i = 0; i < 3; i++) {
        struct job got;
        assert_ok(store_job_get(f->st, jobs[i].id, &got, &e), &e);
        assert_job_equal(&jobs[i], &got);
        /* the spec's typed views come with it (an agent's presigns are checked on them) */
        assert_int_equal(got.nuris, jobs[i].nuris);
        assert_true(got.timeout_s == jobs[i].timeout_s);
        job_release(&got);
    }
    assert_int_equal(jobs[0].nuris, 1);
    release_jobs(jobs, 3);
}

static void test_get_unknown(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job j, got;
    make_job(&j, T0, "{'key': 'k', 'command': {'program': 'true'}}");
    insert_jobs(f->st, &j, 1);

    char other[UUID_STR_LEN];
    uuid7_new(other);
    job_init(&got);
    assert_err(store_job_get(f->st, other, &got, &e), ERR_NOTFOUND, &e);
    assert_non_null(strstr(e.msg, other));
    assert_err(store_job_get(f->st, "not-a-uuid", &got, &e), ERR_NOTFOUND, &e);
    assert_err(store_job_get_by_key(f->st, NULL, "other-key", &got, &e), ERR_NOTFOUND, &e);
    /* e may be NULL. */
    assert_int_equal(store_job_get(f->st, other, &got, NULL), ERR_NOTFOUND);
    assert_int_equal(store_job_get_by_key(f->st, NULL, "other-key", &got, NULL), ERR_NOTFOUND);
    job_release(&j);
}

static void test_get_by_key(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job jobs[3];
    make_job(&jobs[0], T0, "{'key': 'alpha', 'command': {'program': 'true'}}");
    make_job(&jobs[1], T0, "{'key': 'beta', 'queue': 'q2', 'command': {'program': 'true'}}");
    make_simple(&jobs[2], T0, "default"); /* no key */
    insert_jobs(f->st, jobs, 3);

    for (size_t i = 0; i < 2; i++) {
        struct job got;
        assert_ok(store_job_get_by_key(f->st, NULL, jobs[i].key, &got, &e), &e);
        assert_job_equal(&jobs[i], &got);
        job_release(&got);
    }
    release_jobs(jobs, 3);
}

/* Jobs belong to a token (issue 13.6): keys are per owner; lists, counts and id prefixes filter. */
static void test_owners(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job a, b, c, legacy, got;
    make_job(&a, T0, "{'key': 'k', 'queue': 'q', 'command': {'program': 'a'}}");
    make_job(&b, T0 + 1, "{'key': 'k', 'queue': 'q', 'command': {'program': 'b'}}");
    make_job(&c, T0 + 2, "{'queue': 'r', 'command': {'program': 'c'}}");
    make_job(&legacy, T0 + 3, "{'key': 'k', 'queue': 'q', 'command': {'program': 'd'}}");
    a.owner = xstrdup("alice");
    b.owner = xstrdup("bob"); /* the same key as alice's: another job */
    c.owner = xstrdup("alice");
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_insert(f->st, &a, &e), &e);
    assert_ok(store_job_insert(f->st, &b, &e), &e);
    assert_ok(store_job_insert(f->st, &c, &e), &e);
    assert_ok(store_job_insert(f->st, &legacy, &e), &e); /* no owner: a job from before */
    assert_ok(store_commit(f->st, &e), &e);

    struct job dup;
    make_job(&dup, T0 + 4, "{'key': 'k', 'command': {'program': 'x'}}");
    dup.owner = xstrdup("bob");
    assert_ok(store_begin(f->st, &e), &e);
    assert_err(store_job_insert(f->st, &dup, &e), ERR_CONFLICT, &e);
    store_rollback(f->st);
    job_release(&dup);

    const char *owners[] = {"alice", "bob", NULL};
    const struct job *want[] = {&a, &b, &legacy};
    for (size_t i = 0; i < ARRAY_SIZE(owners); i++) {
        err_clear(&e);
        assert_ok(store_job_get_by_key(f->st, owners[i], "k", &got, &e), &e);
        assert_string_equal(got.id, want[i]->id);
        assert_str_same(owners[i], got.owner, "owner");
        job_release(&got);
    }
    assert_err(store_job_get_by_key(f->st, "carol", "k", &got, &e), ERR_NOTFOUND, &e);

    /* Lists and counts of one owner. */
    struct job_filter flt = filter_any();
    flt.owner = "alice";
    const char *alices[] = {c.id, a.id};
    assert_list(f->st, &flt, alices, 2);
    struct queue_stat *qs;
    size_t n;
    assert_ok(store_queue_stats(f->st, "bob", &qs, &n, &e), &e);
    assert_int_equal(n, 1);
    assert_string_equal(qs[0].name, "q");
    assert_int_equal(qs[0].count[JOB_QUEUED], 1);
    lib_free(qs);
    assert_ok(store_queue_stats(f->st, NULL, &qs, &n, &e), &e);
    assert_int_equal(n, 2);
    assert_int_equal(qs[0].count[JOB_QUEUED], 3);
    lib_free(qs);

    /* Id prefixes: the whole id, a prefix shared by all four (UUIDv7s made in a row share their
       first characters), restricted to an owner. */
    char ids[8][UUID_STR_LEN];
    assert_ok(store_id_match(f->st, STORE_JOB, b.id, NULL, ids, 8, &n, &e), &e);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], b.id);
    assert_ok(store_id_match(f->st, STORE_JOB, b.id, "alice", ids, 8, &n, &e), &e);
    assert_int_equal(n, 0);
    char prefix[7];
    snprintf(prefix, sizeof(prefix), "%.6s", a.id);
    assert_ok(store_id_match(f->st, STORE_JOB, prefix, NULL, ids, 8, &n, &e), &e);
    assert_int_equal(n, 4);
    assert_string_equal(ids[0], a.id); /* in id order */
    assert_ok(store_id_match(f->st, STORE_JOB, prefix, NULL, ids, 2, &n, &e), &e);
    assert_int_equal(n, 2);
    assert_ok(store_id_match(f->st, STORE_JOB, prefix, "alice", ids, 8, &n, &e), &e);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], a.id);
    assert_string_equal(ids[1], c.id);
    assert_ok(store_id_match(f->st, STORE_JOB, "ffffffff", NULL, ids, 8, &n, &e), &e);
    assert_int_equal(n, 0);
    job_release(&a);
    job_release(&b);
    job_release(&c);
    job_release(&legacy);
}

/* --- transactions -------------------------------------------------------------------------- */

static void test_duplicate_key(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job a, b, c, d, got;
    make_job(&a, T0, "{'key': 'same', 'command': {'program': 'a'}}");
    make_job(&b, T0, "{'key': 'same', 'command': {'program': 'b'}}");
    make_job(&c, T0, "{'key': 'other', 'command': {'program': 'c'}}");
    make_simple(&d, T0, "default"); /* keyless jobs never conflict */

    /* A batch as the group committer makes it: one savepoint per request. */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_savepoint(f->st, &e), &e);
    assert_ok(store_job_insert(f->st, &a, &e), &e);
    assert_ok(store_savepoint_release(f->st, &e), &e);

    /* requests that write nothing: one released, one rolled back (PostgreSQL sends an
       op's savepoint with its first statement: these send none) */
    assert_ok(store_savepoint(f->st, &e), &e);
    assert_ok(store_savepoint_release(f->st, &e), &e);
    assert_ok(store_savepoint(f->st, &e), &e);
    store_savepoint_rollback(f->st);

    assert_ok(store_savepoint(f->st, &e), &e);
    assert_err(store_job_insert(f->st, &b, &e), ERR_CONFLICT, &e);
    assert_non_null(strstr(e.msg, "same"));
    store_savepoint_rollback(f->st);

    assert_ok(store_savepoint(f->st, &e), &e);
    assert_ok(store_job_insert(f->st, &c, &e), &e);
    assert_ok(store_job_insert(f->st, &d, &e), &e);
    assert_ok(store_savepoint_release(f->st, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);

    assert_ok(store_job_get(f->st, a.id, &got, &e), &e);
    assert_job_equal(&a, &got);
    job_release(&got);
    assert_ok(store_job_get(f->st, c.id, &got, &e), &e);
    job_release(&got);
    assert_ok(store_job_get(f->st, d.id, &got, &e), &e);
    job_release(&got);
    assert_err(store_job_get(f->st, b.id, &got, &e), ERR_NOTFOUND, &e);
    assert_ok(store_job_get_by_key(f->st, NULL, "same", &got, &e), &e);
    assert_string_equal(got.id, a.id);
    job_release(&got);

    /* Against a committed row too, and with no struct err. */
    assert_ok(store_begin(f->st, &e), &e);
    assert_int_equal(store_job_insert(f->st, &b, NULL), ERR_CONFLICT);
    store_rollback(f->st);
    assert_err(store_job_get(f->st, b.id, &got, &e), ERR_NOTFOUND, &e);

    job_release(&a);
    job_release(&b);
    job_release(&c);
    job_release(&d);
}

static void test_rollback_discards(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job a, b, c, got;
    make_job(&a, T0, "{'key': 'ka', 'command': {'program': 'true'}}");
    make_simple(&b, T0, "default");
    make_simple(&c, T0, "default");

    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_insert(f->st, &a, &e), &e);
    assert_ok(store_meta_set(f->st, "m", "v", &e), &e);
    store_rollback(f->st);
    assert_err(store_job_get(f->st, a.id, &got, &e), ERR_NOTFOUND, &e);
    assert_err(store_job_get_by_key(f->st, NULL, "ka", &got, &e), ERR_NOTFOUND, &e);
    char *v = NULL;
    assert_err(store_meta_get(f->st, "m", &v, &e), ERR_NOTFOUND, &e);
    struct job_filter flt = filter_any();
    assert_list(f->st, &flt, NULL, 0);

    /* Rolling back to a savepoint undoes only what came after it. */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_insert(f->st, &b, &e), &e);
    assert_ok(store_savepoint(f->st, &e), &e);
    assert_ok(store_job_insert(f->st, &c, &e), &e);
    store_savepoint_rollback(f->st);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_job_get(f->st, b.id, &got, &e), &e);
    job_release(&got);
    assert_err(store_job_get(f->st, c.id, &got, &e), ERR_NOTFOUND, &e);

    /* The rolled-back job can still be inserted afterwards. */
    insert_jobs(f->st, &a, 1);
    assert_ok(store_job_get_by_key(f->st, NULL, "ka", &got, &e), &e);
    assert_job_equal(&a, &got);
    job_release(&got);

    job_release(&a);
    job_release(&b);
    job_release(&c);
}

/* The server reads on one handle while its committer writes on another. */
static void test_second_handle(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    assert_ok(store_open(f->uri, NULL, &f->st2, &e), &e);
    struct store *rd = f->st2;

    struct job a, b, got;
    make_job(&a, T0, "{'key': 'ka', 'queue': 'qa', 'command': {'program': 'true'}}");
    make_simple(&b, T0 + 1, "qa");
    insert_jobs(f->st, &a, 1);
    assert_ok(store_job_get(rd, a.id, &got, &e), &e);
    assert_job_equal(&a, &got);
    job_release(&got);

    /* Uncommitted: invisible to the reader, which is not blocked either. */
    char hash[65];
    make_hash(hash, 'b');
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_insert(f->st, &b, &e), &e);
    assert_ok(store_token_insert(f->st, "t", ROLE_CLIENT, hash, &e), &e);
    assert_ok(store_meta_set(f->st, "m", "v", &e), &e);

    assert_err(store_job_get(rd, b.id, &got, &e), ERR_NOTFOUND, &e);
    struct job_filter flt = filter_any();
    const char *only_a[] = {a.id};
    assert_list(rd, &flt, only_a, 1);
    struct queue_stat *qs = NULL;
    size_t n = 0;
    assert_ok(store_queue_stats(rd, NULL, &qs, &n, &e), &e);
    int64_t queued = n == 1 ? qs[0].count[JOB_QUEUED] : -1;
    lib_free(qs);
    assert_int_equal(queued, 1);
    int role = 0;
    assert_err(store_token_find(rd, hash, &role, NULL, 0, &e), ERR_NOTFOUND, &e);
    char *v = NULL;
    assert_err(store_meta_get(rd, "m", &v, &e), ERR_NOTFOUND, &e);

    /* Committed: visible to the reader's next read. */
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_job_get(rd, b.id, &got, &e), &e);
    assert_job_equal(&b, &got);
    job_release(&got);
    const char *both[] = {b.id, a.id};
    assert_list(rd, &flt, both, 2);
    assert_ok(store_queue_stats(rd, NULL, &qs, &n, &e), &e);
    queued = n == 1 ? qs[0].count[JOB_QUEUED] : -1;
    lib_free(qs);
    assert_int_equal(queued, 2);
    assert_ok(store_token_find(rd, hash, &role, NULL, 0, &e), &e);
    assert_int_equal(role, ROLE_CLIENT);
    assert_ok(store_meta_get(rd, "m", &v, &e), &e);
    assert_string_equal(v, "v");
    lib_free(v);

    /* A write made through the reader's handle (as auth bootstrap does) reaches the writer. */
    struct job c;
    make_simple(&c, T0 + 2, "qa");
    insert_jobs(rd, &c, 1);
    assert_ok(store_job_get(f->st, c.id, &got, &e), &e);
    job_release(&got);
    job_release(&c);

    /* A cancel committed on the writer shows on the reader. */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_cancel(f->st, a.id, T0 + 50, &got, &e), &e);
    job_release(&got);
    assert_ok(store_job_get(rd, a.id, &got, &e), &e);
    assert_int_equal(got.state, JOB_QUEUED); /* not committed yet */
    job_release(&got);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_job_get(rd, a.id, &got, &e), &e);
    assert_int_equal(got.state, JOB_CANCELLED);
    job_release(&got);

    job_release(&a);
    job_release(&b);
}

/* --- list ---------------------------------------------------------------------------------- */

static void test_list_newest_first(void **state)
{
    struct fixture *f = *state;
    enum { N = 12 };
    struct job jobs[N];
    /* Made in order (ids sort by creation); created_at deliberately not increasing. */
    for (int i = 0; i < N; i++)
        make_simple(&jobs[i], T0 + (i % 3) * 1000, i % 2 ? "odd" : "even");
    insert_jobs(f->st, jobs, N);
    const char *want[N];
    for (int i = 0; i < N; i++)
        want[i] = jobs[N - 1 - i].id;
    struct job_filter flt = filter_any();
    assert_list(f->st, &flt, want, N);

    /* Full records come back in the list, not only ids. */
    struct job_list l = {0};
    struct err e = ERR_INIT;
    flt.limit = 1;
    assert_ok(store_job_list(f->st, &flt, &l, &e), &e);
    assert_int_equal(l.n, 1);
    assert_job_equal(&jobs[N - 1], &l.jobs[0]);
    job_list_release(&l);
    assert_null(l.jobs);
    assert_int_equal(l.n, 0);
    release_jobs(jobs, N);
}

static void test_list_filters(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    enum { N = 6 };
    struct job j[N];
    make_job(&j[0], T0, "{'queue': 'a', 'service': 's1', "
                        "'labels': {'env': 'prod', 'team.name': 'core'}, "
                        "'command': {'program': 'p'}}");
    make_job(&j[1], T0, "{'queue': 'a', 'service': 's2', 'labels': {'env': 'dev'}, "
                        "'command': {'program': 'p'}}");
    make_job(&j[2], T0, "{'queue': 'b', 'service': 's1', 'labels': {'env': 'prod'}, "
                        "'command': {'program': 'p'}}");
    make_simple(&j[3], T0, "b");
    make_job(&j[4], T0, "{'queue': 'a', 'service': 's1', 'labels': {'team.name': 'other', "
                        "'team': 'core', 'name': 'core'}, 'command': {'program': 'p'}}");
    make_job(&j[5], T0, "{'queue': 'a.b', 'labels': {'env': 'prod'}, "
                        "'command': {'program': 'p'}}");
    j[5].state = JOB_RUNNING;
    insert_jobs(f->st, j, N);
    struct job got;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_cancel(f->st, j[3].id, T0 + 10, &got, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    job_release(&got);

    struct job_filter flt = filter_any();
    flt.state = JOB_QUEUED;
    const char *queued[] = {j[4].id, j[2].id, j[1].id, j[0].id};
    assert_list(f->st, &flt, queued, 4);
    flt.state = JOB_CANCELLED;
    const char *cancelled[] = {j[3].id};
    assert_list(f->st, &flt, cancelled, 1);
    flt.state = JOB_RUNNING;
    const char *running[] = {j[5].id};
    assert_list(f->st, &flt, running, 1);
    flt.state = JOB_BLOCKED; /* 0: a real filter, not "any" */
    assert_list(f->st, &flt, NULL, 0);

    flt = filter_any();
    flt.queue = "a";
    const char *qa[] = {j[4].id, j[1].id, j[0].id};
    assert_list(f->st, &flt, qa, 3);
    flt.queue = "a.b";
    const char *qab[] = {j[5].id};
    assert_list(f->st, &flt, qab, 1);
    flt.queue = "nosuch";
    assert_list(f->st, &flt, NULL, 0);
    /* a queue alone: its jobs of every state, newest first, limit and cursor across states */
    flt.queue = "b";
    const char *qb[] = {j[3].id, j[2].id};
    assert_list(f->st, &flt, qb, 2);
    flt.limit = 1;
    assert_list(f->st, &flt, qb, 1);
    flt.after = j[3].id;
    assert_list(f->st, &flt, qb + 1, 1);
    flt.limit = 100;
    flt.after = NULL;

    flt = filter_any();
    flt.service = "s1";
    const char *s1[] = {j[4].id, j[2].id, j[0].id};
    assert_list(f->st, &flt, s1, 3);

    flt = filter_any();
    flt.label_key = "env";
    flt.label_value = "prod";
    const char *prod[] = {j[5].id, j[2].id, j[0].id};
    assert_list(f->st, &flt, prod, 3);
    flt.label_value = "staging";
    assert_list(f->st, &flt, NULL, 0);

    /* A dot in a label name is part of the name, not a path into the labels. */
    flt.label_key = "team.name";
    flt.label_value = "core";
    const char *core[] = {j[0].id};
    assert_list(f->st, &flt, core, 1);
    flt.label_value = "other";
    const char *other[] = {j[4].id};
    assert_list(f->st, &flt, other, 1);
    flt.label_key = "team";
    flt.label_value = "core";
    assert_list(f->st, &flt, other, 1);

    /* Filters combine. */
    flt = filter_any();
    flt.queue = "a";
    flt.service = "s1";
    flt.state = JOB_QUEUED;
    flt.label_key = "env";
    flt.label_value = "prod";
    const char *all4[] = {j[0].id};
    assert_list(f->st, &flt, all4, 1);
    flt.queue = "b";
    const char *all4b[] = {j[2].id};
    assert_list(f->st, &flt, all4b, 1);
    flt.state = JOB_CANCELLED;
    assert_list(f->st, &flt, NULL, 0);

    /* limit keeps the newest. */
    flt = filter_any();
    flt.limit = 2;
    const char *newest[] = {j[5].id, j[4].id};
    assert_list(f->st, &flt, newest, 2);
    flt.queue = "a";
    const char *newest_a[] = {j[4].id, j[1].id};
    assert_list(f->st, &flt, newest_a, 2);

    release_jobs(j, N);
}

/* name: the jobs whose name holds the text, ASCII letters in any case, % and _ literal. */
static void test_list_name(void **state)
{
    struct fixture *f = *state;
    enum { N = 5 };
    struct job j[N];
    make_job(&j[0], T0, "{'name': 'Alpha one', 'command': {'program': 'p'}}");
    make_job(&j[1], T0, "{'name': 'beta', 'command': {'program': 'p'}}");
    make_job(&j[2], T0, "{'name': 'ALPHA two', 'queue': 'q', 'command': {'program': 'p'}}");
    make_job(&j[3], T0, "{'name': '50%%_off', 'command': {'program': 'p'}}");
    make_job(&j[4], T0, "{'command': {'program': 'p'}}");
    insert_jobs(f->st, j, N);

    struct job_filter flt = filter_any();
    flt.name = "alpha";
    const char *alpha[] = {j[2].id, j[0].id};
    assert_list(f->st, &flt, alpha, 2);
    flt.name = "A T";
    const char *two[] = {j[2].id};
    assert_list(f->st, &flt, two, 1);
    const char *off[] = {j[3].id};
    flt.name = "%";
    assert_list(f->st, &flt, off, 1);
    flt.name = "_";
    assert_list(f->st, &flt, off, 1);
    flt.name = "gamma";
    assert_list(f->st, &flt, NULL, 0);
    /* With the other filters, and a limit. */
    flt.name = "alpha";
    flt.queue = "q";
    assert_list(f->st, &flt, two, 1);
    flt = filter_any();
    flt.name = "o";
    flt.limit = 1;
    assert_list(f->st, &flt, off, 1);
    release_jobs(j, N);
}

/* agent: the jobs whose (latest) attempt went to that agent. */
static void test_list_agent(void **state)
{
    struct fixture *f = *state;
    enum { N = 3 };
    struct job j[N];
    for (int i = 0; i < N; i++)
        make_simple(&j[i], T0, "a");
    j[0].state = j[2].state = JOB_RUNNING;
    j[0].agent = strdup("w1");
    j[2].agent = strdup("w2");
    insert_jobs(f->st, j, N);
    struct job_filter flt = filter_any();
    flt.agent = "w1";
    const char *w1[] = {j[0].id};
    assert_list(f->st, &flt, w1, 1);
    flt.agent = "w";
    assert_list(f->st, &flt, NULL, 0);
    flt.agent = "w2";
    flt.state = JOB_RUNNING;
    const char *w2[] = {j[2].id};
    assert_list(f->st, &flt, w2, 1);
    release_jobs(j, N);
}

static void test_list_paging(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    enum { N = 25, PAGE = 7 };
    struct job jobs[N];
    for (int i = 0; i < N; i++)
        make_simple(&jobs[i], T0 + i, i % 5 == 0 ? "fifth" : "rest");
    insert_jobs(f->st, jobs, N);

    /* Every job exactly once, newest first, across pages of PAGE. */
    for (int pass = 0; pass < 2; pass++) {
        const char *queue = pass ? "rest" : NULL;
        int total = pass ? N - 5 : N;
        char seen[N][UUID_STR_LEN];
        int nseen = 0, pages = 0;
        char after[UUID_STR_LEN] = "";
        for (;;) {
            struct job_filter flt = filter_any();
            flt.limit = PAGE;
            flt.queue = queue;
            flt.after = after[0] ? after : NULL;
            struct job_list l = {0};
            assert_ok(store_job_list(f->st, &flt, &l, &e), &e);
            size_t n = l.n;
            bool room = nseen + (int)n <= total;
            for (size_t i = 0; room && i < n; i++)
                snprintf(seen[nseen + (int)i], sizeof(seen[0]), "%s", l.jobs[i].id);
            if (n)
                snprintf(after, sizeof(after), "%s", l.jobs[n - 1].id);
            job_list_release(&l);
            assert_true(room);
            assert_true(n <= PAGE);
            nseen += (int)n;
            pages++;
            if (n < PAGE)
                break;
            assert_true(pages <= N);
        }
        assert_int_equal(nseen, total);
        assert_int_equal(pages, total / PAGE + 1);
        int k = 0;
        for (int i = N - 1; i >= 0; i--) {
            if (queue && strcmp(jobs[i].queue, queue))
                continue;
            if (strcmp(seen[k], jobs[i].id))
                fail_msg("paging row %d: expected %s, got %s", k, jobs[i].id, seen[k]);
            k++;
        }
    }

    /* after = the oldest id: nothing older. */
    struct job_filter flt = filter_any();
    flt.after = jobs[0].id;
    assert_list(f->st, &flt, NULL, 0);
    release_jobs(jobs, N);
}

/* --- cancel -------------------------------------------------------------------------------- */

static void test_cancel(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job jobs[3], out, got;
    make_job(&jobs[0], T0, "{'queue': 'q', 'key': 'kc', 'labels': {'x': 'y'}, "
                           "'command': {'program': 'true'}}");
    make_simple(&jobs[1], T0, "q");
    jobs[1].state = JOB_RUNNING;
    jobs[1].agent = xstrdup("agent-1");
    jobs[1].attempt = 1;
    jobs[1].started_at = T0 + 5;
    make_simple(&jobs[2], T0, "q");
    jobs[2].state = JOB_SUCCEEDED;
    jobs[2].finished_at = T0 + 7;
    jobs[2].result = json_pack("{s:s}", "reason", "exit");
    insert_jobs(f->st, jobs, 3);

    json_t *want_result = json_pack("{s:s}", "reason", "cancelled");
    assert_ok(store_begin(f->st, &e), &e);
    job_init(&out);
    assert_ok(store_job_cancel(f->st, jobs[0].id, T0 + 1000, &out, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);

    /* out is the job after the cancel: only state, finished_at and result changed. */
    struct job want = jobs[0];
    want.state = JOB_CANCELLED;
    want.finished_at = T0 + 1000;
    want.result = want_result;
    assert_job_equal(&want, &out);
    job_release(&out);
    assert_ok(store_job_get(f->st, jobs[0].id, &got, &e), &e);
    assert_job_equal(&want, &got);
    job_release(&got);

    /* A running job can be cancelled too. */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_cancel(f->st, jobs[1].id, T0 + 2000, &out, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(out.state, JOB_CANCELLED);
    assert_int_equal(out.finished_at, T0 + 2000);
    assert_int_equal(out.started_at, T0 + 5);
    assert_json_same(want_result, out.result, "result");
    job_release(&out);

    /* Ended jobs: conflict, and nothing changes. */
    assert_ok(store_begin(f->st, &e), &e);
    job_init(&out);
    assert_err(store_job_cancel(f->st, jobs[0].id, T0 + 3000, &out, &e), ERR_CONFLICT, &e);
    assert_non_null(strstr(e.msg, jobs[0].id));
    job_init(&out);
    assert_err(store_job_cancel(f->st, jobs[2].id, T0 + 3000, &out, &e), ERR_CONFLICT, &e);
    job_init(&out);
    assert_int_equal(store_job_cancel(f->st, jobs[2].id, T0 + 3000, &out, NULL), ERR_CONFLICT);

    char other[UUID_STR_LEN];
    uuid7_new(other);
    job_init(&out);
    assert_err(store_job_cancel(f->st, other, T0 + 3000, &out, &e), ERR_NOTFOUND, &e);
    assert_non_null(strstr(e.msg, other));
    assert_ok(store_commit(f->st, &e), &e);

    assert_ok(store_job_get(f->st, jobs[0].id, &got, &e), &e);
    assert_job_equal(&want, &got);
    job_release(&got);
    assert_ok(store_job_get(f->st, jobs[2].id, &got, &e), &e);
    assert_job_equal(&jobs[2], &got);
    job_release(&got);
    assert_err(store_job_get(f->st, other, &got, &e), ERR_NOTFOUND, &e);

    json_decref(want_result);
    release_jobs(jobs, 3);
}

/* --- the lifecycle operation and its events --------------------------------------------- */

static int count_events(void *arg, const struct event_rec *ev)
{
    int *states = arg;
    states[0]++;
    states[states[0]] = ev->state;
    return states[0] >= 15;
}

/*
 * store_job_apply: fenced on attempt and agent, refused by the lifecycle's
 * table, one event per applied change, in the same transaction.
 */
static void test_apply(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job j, out;
    make_job(&j, T0, "{'retry': {'max_attempts': 1}, 'command': {'program': 'true'}}");
    insert_jobs(f->st, &j, 1);
    struct job_event_args lease = {.now_ms = T0 + 1, .agent = "w1"};
    struct job_event_args at = {.now_ms = T0 + 2};

    assert_ok(store_begin(f->st, &e), &e);
    /* queued: starting is not allowed, and the store says what the job is */
    assert_err(store_job_apply(f->st, j.id, 0, NULL, false, JOB_EV_START, &at, &out, &e),
               ERR_CONFLICT, &e);
    assert_int_equal(out.state, JOB_QUEUED);
    job_release(&out);
    assert_ok(store_job_apply(f->st, j.id, 0, NULL, true, JOB_EV_LEASE, &lease, &out, &e), &e);
    assert_int_equal(out.state, JOB_LEASED);
    assert_int_equal(out.attempt, 1);
    assert_non_null(out.spec); /* asked for */
    job_release(&out);
    /* another agent, or another attempt: refused, the job as it is */
    assert_err(store_job_apply(f->st, j.id, 1, "w2", false, JOB_EV_START, &at, &out, &e),
               ERR_CONFLICT, &e);
    assert_string_equal(out.agent, "w1");
    job_release(&out);
    assert_err(store_job_apply(f->st, j.id, 2, "w1", false, JOB_EV_START, &at, &out, &e),
               ERR_CONFLICT, &e);
    job_release(&out);
    assert_ok(store_job_apply(f->st, j.id, 1, "w1", false, JOB_EV_START, &at, &out, &e), &e);
    assert_int_equal(out.state, JOB_RUNNING);
    assert_null(out.spec); /* not asked for */
    job_release(&out);
    assert_int_equal(store_job_apply(f->st, j.id, 1, "w1", false, JOB_EV_START, &at, &out, &e),
                     LIFECYCLE_SAME);
    job_release(&out);
    struct attempt_end bad = {.reason = "exit", .has_exit_code = true, .exit_code = 2,
                              .duration_ms = 3};
    struct job_event_args fin = {.now_ms = T0 + 5, .end = &bad};
    assert_ok(store_job_apply(f->st, j.id, 1, "w1", true, JOB_EV_FINISH, &fin, &out, &e), &e);
    assert_int_equal(out.state, JOB_FAILED); /* one attempt only */
    job_release(&out);
    char unknown[UUID_STR_LEN];
    uuid7_new(unknown);
    assert_err(store_job_apply(f->st, unknown, 0, NULL, false, JOB_EV_CANCEL, &at, &out, &e),
               ERR_NOTFOUND, &e);
    assert_ok(store_commit(f->st, &e), &e);

    /* the events: the insert and each applied change, nothing for the refusals */
    int states[16] = {0};
    const char *const ids[] = {j.id};
    struct event_filter flt = {.after = 0, .kind = EVENT_JOB, .jobs = ids, .njobs = 1,
                               .limit = 100};
    assert_ok(store_event_list(f->st, &flt, count_events, states, &e), &e);
    assert_int_equal(states[0], 4);
    assert_int_equal(states[1], JOB_QUEUED);
    assert_int_equal(states[2], JOB_LEASED);
    assert_int_equal(states[3], JOB_RUNNING);
    assert_int_equal(states[4], JOB_FAILED);
    /* a rolled back change leaves no event */
    assert_ok(store_begin(f->st, &e), &e);
    struct job k;
    make_simple(&k, T0 + 9, "q");
    assert_ok(store_job_insert(f->st, &k, &e), &e);
    store_rollback(f->st);
    int64_t first, last;
    assert_ok(store_event_window(f->st, &first, &last, &e), &e);
    assert_int_equal(first, 1);
    assert_int_equal(last, 4);
    job_release(&k);
    job_release(&j);
}

/*
 * store_job_lease: the candidates still queued are leased in the order given, the others are
 * skipped; the spec comes back as the stored text; each lease has its event; a retried job
 * keeps the result of its earlier attempt.
 */
static void test_lease(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job j[4], out;
    for (int i = 0; i < 4; i++)
        make_job(&j[i], T0 + i, "{'queue': 'q', 'retry': {'max_attempts': 3}, "
                                "'command': {'program': 'true', 'argv': ['x', '%d']}}", i);
    insert_jobs(f->st, j, 4);
    struct job_event_args at = {.now_ms = T0 + 10, .agent = "w0"};
    assert_ok(store_begin(f->st, &e), &e);
    /* j[1] cancelled, j[2] leased by another agent, j[3] back in the queue after a failure */
    assert_ok(store_job_cancel(f->st, j[1].id, T0 + 10, &out, &e), &e);
    job_release(&out);
    assert_ok(store_job_apply(f->st, j[2].id, 0, NULL, false, JOB_EV_LEASE, &at, &out, &e), &e);
    job_release(&out);
    assert_ok(store_job_apply(f->st, j[3].id, 0, NULL, false, JOB_EV_LEASE, &at, &out, &e), &e);
    job_release(&out);
    struct attempt_end bad = {.reason = "exit", .has_exit_code = true, .exit_code = 2,
                              .duration_ms = 3};
    struct job_event_args fin = {.now_ms = T0 + 11, .end = &bad};
    assert_ok(store_job_apply(f->st, j[3].id, 1, "w0", true, JOB_EV_FINISH, &fin, &out, &e), &e);
    assert_int_equal(out.state, JOB_QUEUED);
    job_release(&out);
    assert_ok(store_commit(f->st, &e), &e);
    int64_t first, before;
    assert_ok(store_event_window(f->st, &first, &before, &e), &e);

    struct store_lease c[5] = {0};
    const int order[] = {3, 1, 2, 0};
    for (int i = 0; i < 4; i++)
        memcpy(c[i].job, j[order[i]].id, UUID_STR_LEN);
    uuid7_new(c[4].job); /* unknown: skipped too */
    size_t n = 99;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_lease(f->st, "w1", T0 + 20, c, 5, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(n, 2);
    assert_true(c[0].leased);
    assert_int_equal(c[0].attempt, 2);
    assert_false(c[1].leased);
    assert_null(c[1].spec);
    assert_false(c[2].leased);
    assert_null(c[2].spec);
    assert_true(c[3].leased);
    assert_int_equal(c[3].attempt, 1);
    assert_false(c[4].leased);
    /* the spec as stored (its defaults left out: job_spec_dump), what GET reads back */
    for (int i = 0; i < 4; i += 3) {
        assert_non_null(c[i].spec);
        json_t *spec = job_json_load(c[i].spec);
        assert_spec_same(j[order[i]].spec, spec, "leased spec");
        json_decref(spec);
        lib_free(c[i].spec);
    }
    assert_ok(store_job_get(f->st, j[3].id, &out, &e), &e);
    assert_int_equal(out.state, JOB_LEASED);
    assert_string_equal(out.agent, "w1");
    assert_int_equal(out.attempt, 2);
    assert_int_equal(out.started_at, 0);
    assert_null(out.progress);
    assert_string_equal(json_string_value(json_object_get(out.result, "reason")), "exit");
    assert_int_equal(json_array_size(out.attempts), 1);
    job_release(&out);
    assert_ok(store_job_get(f->st, j[2].id, &out, &e), &e);
    assert_string_equal(out.agent, "w0"); /* untouched */
    assert_int_equal(out.attempt, 1);
    job_release(&out);
    /* one event per lease, in the order leased */
    int states[16] = {0};
    struct event_filter flt = {.after = before, .kind = EVENT_JOB, .limit = 100};
    assert_ok(store_event_list(f->st, &flt, count_events, states, &e), &e);
    assert_int_equal(states[0], 2);
    assert_int_equal(states[1], JOB_LEASED);
    assert_int_equal(states[2], JOB_LEASED);
    release_jobs(j, 4);
}

/* A candidate given twice is leased once. */
static void test_lease_twice_in_one_call(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job j;
    make_simple(&j, T0, "q");
    insert_jobs(f->st, &j, 1);
    struct store_lease c[2] = {0};
    memcpy(c[0].job, j.id, UUID_STR_LEN);
    memcpy(c[1].job, j.id, UUID_STR_LEN);
    size_t n = 0;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_lease(f->st, "w1", T0 + 1, c, 2, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(n, 1);
    assert_true(c[0].leased);
    assert_int_equal(c[0].attempt, 1);
    assert_false(c[1].leased);
    assert_null(c[1].spec);
    lib_free(c[0].spec);
    struct job got;
    assert_ok(store_job_get(f->st, j.id, &got, &e), &e);
    assert_int_equal(got.attempt, 1);
    job_release(&got);
    job_release(&j);
}

/*
 * With row locks (PostgreSQL), a candidate another server's transaction holds is skipped at
 * once, never waited for (FOR UPDATE SKIP LOCKED), and leased once it is free again.
 */
static void test_lease_skips_locked(void **state)
{
    struct fixture *f = *state;
    if (!f->be->lock_job)
        skip(); /* SQLite: one writer at a time, nothing to skip */
    struct err e = ERR_INIT;
    struct job j[3];
    for (int i = 0; i < 3; i++)
        make_simple(&j[i], T0 + i, "q");
    insert_jobs(f->st, j, 3);
    void *held = f->be->lock_job(f, j[1].id);

    /* a handle that fails rather than waits on a lock: a wait would fail the test, not hang it */
    char uri[sizeof(f->uri) + 64];
    snprintf(uri, sizeof(uri), "%s%soptions=-c%%20lock_timeout%%3D5000", f->uri,
             strchr(f->uri, '?') ? "&" : "?");
    assert_ok(store_open(uri, NULL, &f->st2, &e), &e);
    struct store_lease c[3] = {0};
    for (int i = 0; i < 3; i++)
        memcpy(c[i].job, j[i].id, UUID_STR_LEN);
    size_t n = 0;
    assert_ok(store_begin(f->st2, &e), &e);
    assert_ok(store_job_lease(f->st2, "w1", T0 + 10, c, 3, &n, &e), &e);
    assert_ok(store_commit(f->st2, &e), &e);
    assert_int_equal(n, 2);
    assert_true(c[0].leased && c[2].leased);
    assert_false(c[1].leased);
    assert_null(c[1].spec);
    lib_free(c[0].spec);
    lib_free(c[2].spec);

    f->be->unlock_job(held);
    assert_ok(store_begin(f->st2, &e), &e);
    assert_ok(store_job_lease(f->st2, "w1", T0 + 11, c, 3, &n, &e), &e);
    assert_ok(store_commit(f->st2, &e), &e);
    assert_int_equal(n, 1);
    assert_true(c[1].leased);
    assert_int_equal(c[1].attempt, 1);
    lib_free(c[1].spec);
    struct job got;
    assert_ok(store_job_get(f->st, j[1].id, &got, &e), &e);
    assert_int_equal(got.state, JOB_LEASED);
    assert_string_equal(got.agent, "w1");
    job_release(&got);
    release_jobs(j, 3);
}

/*
 * store_claim: one process per store. SQLite has nothing to claim (the data folder's lock
 * does it); where several processes can reach the store (PostgreSQL), a second claim is
 * refused until the first handle is closed.
 */
static void test_claim(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    assert_ok(store_claim(f->st, &e), &e);
    assert_ok(store_claim(f->st, &e), &e); /* again: still ours */
    assert_ok(store_open(f->uri, NULL, &f->st2, &e), &e);
    if (!f->be->lock_job) {
        assert_ok(store_claim(f->st2, &e), &e);
        return;
    }
    assert_err(store_claim(f->st2, &e), ERR_CONFLICT, &e);
    assert_non_null(strstr(e.msg, "another drover server"));
    /* the refused handle still works for what does not need the claim */
    struct job j;
    make_simple(&j, T0, "q");
    insert_jobs(f->st2, &j, 1);
    store_close(f->st);
    f->st = NULL;
    /* released with its session (the claim waits a moment for the database to see it end) */
    assert_ok(store_claim(f->st2, &e), &e);
    job_release(&j);
}

static int collect_events(void *arg, const struct event_rec *ev)
{
    json_t *a = arg;
    json_array_append_new(a, json_pack("{s:i, s:i, s:O}", "kind", ev->kind, "state", ev->state,
                                       "data", ev->data ? ev->data : json_null()));
    return 0;
}

/* Triggers' fires' events only (not their changes'). */
static int collect_fire_events(void *arg, const struct event_rec *ev)
{
    return ev->state == TRIGGER_FIRED || ev->state == TRIGGER_FAILED ? collect_events(arg, ev) : 0;
}

/* store_event_object: its own event, seen by every owner, filtered by kind. */
static void test_object_events(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job j;
    make_simple(&j, T0, "q");
    insert_jobs(f->st, &j, 1); /* seq 1, a job's (owner NULL) */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_event_object(f->st, OBJECT_CREATED, "b1", "dir/a.txt", 5, "ab12", &e), &e);
    assert_ok(store_event_object(f->st, OBJECT_DELETED, "b1", "dir/a.txt", 5, "ab12", &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    json_t *got = json_array();
    struct event_filter flt = {.after = 0, .kind = EVENT_OBJECT, .owner = "someone", .limit = 10};
    assert_ok(store_event_list(f->st, &flt, collect_events, got, &e), &e);
    assert_int_equal(json_array_size(got), 2);
    json_t *want = json_pack("[{s:i, s:i, s:{s:s, s:s, s:i, s:s}}, {s:i, s:i, s:{s:s, s:s, s:i, s:s}}]",
                             "kind", EVENT_OBJECT, "state", OBJECT_CREATED, "data", "bucket", "b1",
                             "key", "dir/a.txt", "size", 5, "sha256", "ab12", "kind", EVENT_OBJECT,
                             "state", OBJECT_DELETED, "data", "bucket", "b1", "key", "dir/a.txt",
                             "size", 5, "sha256", "ab12");
    assert_true(json_equal(got, want));
    json_decref(want);
    json_array_clear(got);
    /* any kind, another owner: the objects' events but not the job's */
    flt.kind = -1;
    assert_ok(store_event_list(f->st, &flt, collect_events, got, &e), &e);
    assert_int_equal(json_array_size(got), 2);
    json_decref(got);
    job_release(&j);
}

/* --- queue stats --------------------------------------------------------------------------- */

/*
 * Each queue appears once with its counts, whatever order the backend's plan produces
 * (SQLite once answered from the (state, queue) index and split queues by state).
 */
static void test_queue_stats(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    static const struct {
        const char *queue;
        int state;
    } rows[] = {
        {"alpha", JOB_QUEUED},    {"alpha", JOB_QUEUED},    {"alpha", JOB_CANCELLED},
        {"beta", JOB_QUEUED},     {"beta", JOB_CANCELLED},  {"beta", JOB_CANCELLED},
        {"beta", JOB_RUNNING},    {"gamma.1", JOB_BLOCKED}, {"alpha", JOB_SUCCEEDED},
        {"gamma.1", JOB_FAILED},  {"alpha", JOB_LEASED},
    };
    enum { N = ARRAY_SIZE(rows) };
    struct job jobs[N];
    for (size_t i = 0; i < N; i++) {
        make_simple(&jobs[i], T0 + (int64_t)i, rows[i].queue);
        jobs[i].state = rows[i].state;
    }
    insert_jobs(f->st, jobs, N);

    static const char *const queues[] = {"alpha", "beta", "gamma.1"};
    int64_t want[3][JOB_NSTATES] = {{0}};
    for (size_t i = 0; i < N; i++)
        for (size_t q = 0; q < 3; q++)
            if (!strcmp(rows[i].queue, queues[q]))
                want[q][rows[i].state]++;

    struct queue_stat *qs = NULL;
    size_t n = 0;
    assert_ok(store_queue_stats(f->st, NULL, &qs, &n, &e), &e);
    /* Copy out and free before asserting, so that a failure leaks nothing. */
    int64_t got[3][JOB_NSTATES] = {{0}};
    int times[3] = {0}, unknown = 0;
    for (size_t i = 0; i < n; i++) {
        size_t q = 0;
        while (q < 3 && strcmp(qs[i].name, queues[q]))
            q++;
        if (q == 3) {
            unknown++;
            continue;
        }
        times[q]++;
        for (int s = 0; s < JOB_NSTATES; s++)
            got[q][s] += qs[i].count[s];
    }
    lib_free(qs);
    release_jobs(jobs, N);

    assert_int_equal(unknown, 0);
    for (size_t q = 0; q < 3; q++) {
        if (times[q] != 1)
            fail_msg("queue '%s' appears %d times in queue_stats, expected once (%zu entries)",
                     queues[q], times[q], n);
        for (int s = 0; s < JOB_NSTATES; s++)
            if (got[q][s] != want[q][s])
                fail_msg("queue '%s' state %s: %lld, expected %lld", queues[q],
                         job_state_name(s), (long long)got[q][s], (long long)want[q][s]);
    }
    assert_int_equal(n, 3);
}

/* What a full count of the jobs says store_queue_stats should answer (the oracle). */
struct stats_want {
    const char *owner; /* NULL = all jobs */
    char queue[8][16];
    int64_t count[8][JOB_NSTATES];
    size_t n;
};

static int stats_count_job(void *arg, const struct job *j)
{
    struct stats_want *w = arg;
    if (w->owner && (!j->owner || strcmp(w->owner, j->owner)))
        return 0;
    size_t q = 0;
    while (q < w->n && strcmp(w->queue[q], j->queue))
        q++;
    if (q == w->n) {
        assert_true(w->n < 8);
        snprintf(w->queue[w->n++], sizeof(w->queue[0]), "%s", j->queue);
    }
    w->count[q][j->state]++;
    return 0;
}

/*
 * store_queue_stats(owner) answers what a scan of every job counts, queue by queue; and
 * count[queue][state] is `want` (-1: not checked) for the states given. Returns the queues.
 */
static size_t assert_stats(struct store *st, const char *owner, const char *queue, int state,
                           int64_t want)
{
    struct err e = ERR_INIT;
    struct stats_want w = {.owner = owner};
    assert_ok(store_job_scan(st, ~0u, stats_count_job, &w, &e), &e);
    struct queue_stat *qs = NULL;
    size_t n = 0;
    assert_ok(store_queue_stats(st, owner, &qs, &n, &e), &e);
    struct queue_stat got[8];
    size_t ngot = n < 8 ? n : 8;
    if (ngot)
        memcpy(got, qs, ngot * sizeof(*got));
    lib_free(qs);
    assert_int_equal(n, w.n);
    for (size_t i = 0; i < ngot; i++) {
        size_t q = 0;
        while (q < w.n && strcmp(w.queue[q], got[i].name))
            q++;
        if (q == w.n)
            fail_msg("queue_stats(%s) has queue '%s', which no job of it is in",
                     owner ? owner : "all", got[i].name);
        for (int s = 0; s < JOB_NSTATES; s++)
            if (got[i].count[s] != w.count[q][s])
                fail_msg("queue_stats(%s) '%s' %s: %lld, the jobs say %lld", owner ? owner : "all",
                         got[i].name, job_state_name(s), (long long)got[i].count[s],
                         (long long)w.count[q][s]);
        if (queue && !strcmp(queue, got[i].name) && got[i].count[state] != want)
            fail_msg("queue_stats(%s) '%s' %s: %lld, expected %lld", owner ? owner : "all", queue,
                     job_state_name(state), (long long)got[i].count[state], (long long)want);
    }
    return n;
}

/*
 * The counts of finished jobs are kept (job_counts, in the transaction of each change) through
 * every way a job gets into a final state, out of one and out of the store: a batch, leases
 * and starts, each kind of finish, cancels of queued and running jobs, a retry of a failed
 * job, retention's deletes, a rolled back finish; for two owners and two queues, each owner
 * seeing its own. The teardown compares job_counts with the jobs once more.
 */
static void test_queue_stats_kept(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    enum { N = 7 };
    struct job j[N], out;
    /* 0-3: alice's in a, 4: bob's in b, 5: bob's in a, 6: an admin's (no owner) in a */
    for (int i = 0; i < N; i++) {
        make_job(&j[i], T0 + i, "{'queue': '%s', 'retry': {'max_attempts': 1}, "
                                "'command': {'program': 'true', 'argv': ['%d']}}",
                 i == 4 ? "b" : "a", i);
        if (i < 4)
            j[i].owner = xstrdup("alice");
        else if (i < 6)
            j[i].owner = xstrdup("bob");
    }
    struct job *ptrs[N];
    for (int i = 0; i < N; i++)
        ptrs[i] = &j[i];
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_insert_many(f->st, ptrs, N, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(assert_stats(f->st, NULL, "a", JOB_QUEUED, 6), 2);
    assert_int_equal(assert_stats(f->st, "alice", "a", JOB_QUEUED, 4), 1);
    assert_int_equal(assert_stats(f->st, "bob", "b", JOB_QUEUED, 1), 2);

    /* leases of 0-3 and 5, starts of 0-2 */
    struct store_lease c[5] = {0};
    const int leased[] = {0, 1, 2, 3, 5};
    for (int i = 0; i < 5; i++)
        memcpy(c[i].job, j[leased[i]].id, UUID_STR_LEN);
    size_t n = 0;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_lease(f->st, "w1", T0 + 10, c, 5, &n, &e), &e);
    struct job_event_args at = {.now_ms = T0 + 11};
    for (int i = 0; i < 3; i++) {
        assert_ok(store_job_apply(f->st, j[i].id, 1, "w1", false, JOB_EV_START, &at, &out, &e),
                  &e);
        job_release(&out);
    }
    assert_ok(store_commit(f->st, &e), &e);
    for (int i = 0; i < 5; i++)
        lib_free(c[i].spec);
    assert_int_equal(n, 5);
    assert_stats(f->st, NULL, "a", JOB_RUNNING, 3);
    assert_stats(f->st, "alice", "a", JOB_LEASED, 1);
    assert_stats(f->st, "bob", "a", JOB_LEASED, 1);

    /* finishes: 0 succeeded, 1 failed (one attempt); 2 cancelled while running, 4 while
       queued */
    struct attempt_end ok = {.reason = "exit", .has_exit_code = true, .exit_code = 0,
                             .duration_ms = 3};
    struct attempt_end bad = {.reason = "exit", .has_exit_code = true, .exit_code = 2,
                              .duration_ms = 3};
    struct job_event_args fin_ok = {.now_ms = T0 + 20, .end = &ok};
    struct job_event_args fin_bad = {.now_ms = T0 + 20, .end = &bad};
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_apply(f->st, j[0].id, 1, "w1", true, JOB_EV_FINISH, &fin_ok, &out, &e),
              &e);
    assert_int_equal(out.state, JOB_SUCCEEDED);
    job_release(&out);
    assert_ok(store_job_apply(f->st, j[1].id, 1, "w1", true, JOB_EV_FINISH, &fin_bad, &out, &e),
              &e);
    assert_int_equal(out.state, JOB_FAILED);
    job_release(&out);
    assert_ok(store_job_cancel(f->st, j[2].id, T0 + 21, &out, &e), &e);
    job_release(&out);
    assert_ok(store_job_cancel(f->st, j[4].id, T0 + 21, &out, &e), &e);
    job_release(&out);
    assert_ok(store_commit(f->st, &e), &e);
    assert_stats(f->st, NULL, "a", JOB_SUCCEEDED, 1);
    assert_stats(f->st, NULL, "a", JOB_FAILED, 1);
    assert_stats(f->st, NULL, "a", JOB_CANCELLED, 1);
    assert_stats(f->st, NULL, "b", JOB_CANCELLED, 1);
    assert_stats(f->st, "alice", "a", JOB_CANCELLED, 1);
    assert_stats(f->st, "bob", "b", JOB_CANCELLED, 1);
    assert_stats(f->st, "bob", "a", JOB_SUCCEEDED, 0);

    /* a finish rolled back counts nothing */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_apply(f->st, j[3].id, 1, "w1", true, JOB_EV_FINISH, &fin_ok, &out, &e),
              &e);
    job_release(&out);
    store_rollback(f->st);
    assert_stats(f->st, "alice", "a", JOB_SUCCEEDED, 1);
    assert_stats(f->st, "alice", "a", JOB_LEASED, 1);

    /* a retry takes the failed job out of failed */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_retry(f->st, j[1].id, T0 + 30, &out, &e), &e);
    assert_int_equal(out.state, JOB_QUEUED);
    job_release(&out);
    assert_ok(store_commit(f->st, &e), &e);
    assert_stats(f->st, NULL, "a", JOB_FAILED, 0);
    assert_stats(f->st, "alice", "a", JOB_QUEUED, 1);

    /* retention deletes finished jobs: bob's queue b is gone from his counts with its job */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_delete(f->st, j[0].id, &e), &e);
    assert_ok(store_job_delete(f->st, j[4].id, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_stats(f->st, NULL, "a", JOB_SUCCEEDED, 0);
    assert_int_equal(assert_stats(f->st, "bob", "a", JOB_LEASED, 1), 1);
    assert_int_equal(assert_stats(f->st, NULL, "a", JOB_CANCELLED, 1), 1);
    assert_int_equal(assert_stats(f->st, "carol", NULL, 0, 0), 0);
    release_jobs(j, N);
}

/*
 * A store made before job_counts (SQLite 16, PostgreSQL 12) with finished jobs in it gets its
 * counts from those jobs when it is opened (its queued job's too: SQLite 18, PostgreSQL 14):
 * the same answer as before, from the table.
 */
static void test_counts_migrate(void **state)
{
    struct fixture *f = *state;
    bool lite = !strcmp(f->be->name, "sqlite");
    struct buf sql = BUF_INIT;
    /* 3 succeeded and 1 failed of alice in 'a', 2 cancelled without owner in 'a', 1 queued */
    static const struct {
        int state;
        const char *owner;
    } rows[] = {{4, "'alice'"}, {4, "'alice'"}, {4, "'alice'"}, {5, "'alice'"},
                {6, "NULL"},    {6, "NULL"},    {1, "'alice'"}};
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
        buf_addf(&sql,
                 "INSERT INTO jobs (id, state, queue, priority, slots, attempt, max_attempts, "
                 "created_at, run_after, spec, owner, finished_at) VALUES "
                 "('01900000-0000-7000-8000-00000000000%zu', %d, 'a', 0, 1, 1, 1, 1, 1, "
                 "'{\"queue\":\"a\"}', %s, 2);",
                 i, rows[i].state, rows[i].owner);
    if (lite) {
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(sqlite_path(f), &db), SQLITE_OK);
        for (int v = 0; v < 16; v++)
            assert_int_equal(sqlite3_exec(db, sqlite_migrations[v], NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 16", NULL, NULL, NULL),
                         SQLITE_OK);
        if (sqlite3_exec(db, sql.data, NULL, NULL, NULL) != SQLITE_OK)
            fail_msg("%s", sqlite3_errmsg(db));
        sqlite3_close(db);
    } else {
#ifdef WITH_POSTGRES
        PGconn *c = PQconnectdb(f->uri);
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        struct buf all = BUF_INIT;
        buf_adds(&all, "CREATE TABLE drover_schema (version integer NOT NULL);"
                       "INSERT INTO drover_schema VALUES (12);");
        for (int v = 0; v < 12; v++)
            buf_adds(&all, pg_migrations[v]);
        buf_adds(&all, sql.data);
        /* its queued job in the ready table too, as the server writes it (schema 11) */
        buf_adds(&all, "INSERT INTO ready SELECT id, queue, priority, run_after FROM jobs "
                       "WHERE state = 1;");
        PGresult *r = PQexec(c, all.data);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fail_msg("%s", PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(c);
        buf_release(&all);
#else
        fail_msg("backend %s", f->be->name);
#endif
    }
    buf_release(&sql);

    struct err e = ERR_INIT;
    assert_ok(store_open(f->uri, NULL, &f->st, &e), &e);
    f->be->check_schema(f);
    char *v = f->be->value(f, "SELECT sum(n) FROM job_counts WHERE queue = 'a' AND state >= 4");
    assert_non_null(v);
    assert_string_equal(v, "6");
    lib_free(v);
    /* the unfinished counted too (SQLite 18, PostgreSQL 14) */
    v = f->be->value(f, "SELECT sum(n) FROM job_counts WHERE state < 4");
    assert_non_null(v);
    assert_string_equal(v, "1");
    lib_free(v);
    assert_stats(f->st, NULL, "a", JOB_SUCCEEDED, 3);
    assert_stats(f->st, NULL, "a", JOB_CANCELLED, 2);
    assert_stats(f->st, "alice", "a", JOB_FAILED, 1);
    assert_stats(f->st, "alice", "a", JOB_CANCELLED, 0);
    assert_stats(f->st, "alice", "a", JOB_QUEUED, 1);
}

/* --- tokens -------------------------------------------------------------------------------- */

struct token_list {
    struct token_rec t[8];
    size_t n, stop_at; /* stop_at: token_listed returns 7 at that many (0: never) */
};

static int token_listed(void *arg, const struct token_rec *t)
{
    struct token_list *l = arg;
    if (l->n < 8) l->t[l->n++] = *t;
    return l->stop_at && l->n == l->stop_at ? 7 : 0;
}

static void test_tokens(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    char h1[65], h2[65], h3[65], h4[65], none[65];
    make_hash(h1, '1');
    make_hash(h2, '2');
    make_hash(h3, '3');
    make_hash(h4, '4');
    make_hash(none, 'f');

    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_token_insert(f->st, "alice", ROLE_CLIENT, h1, &e), &e);
    assert_ok(store_token_insert(f->st, "bob", ROLE_ADMIN, h2, &e), &e);
    assert_ok(store_token_insert(f->st, "carol", ROLE_CLIENT, h3, &e), &e);
    assert_ok(store_token_insert(f->st, "agent-1", ROLE_AGENT | ROLE_CLIENT, none, &e), &e);
    assert_ok(store_token_delete(f->st, "agent-1", &e), &e);
    assert_ok(store_commit(f->st, &e), &e);

    int role = 0;
    char name[64];
    assert_ok(store_token_find(f->st, h1, &role, name, sizeof(name), &e), &e);
    assert_int_equal(role, ROLE_CLIENT);
    assert_string_equal(name, "alice");
    assert_ok(store_token_find(f->st, h2, &role, name, sizeof(name), &e), &e);
    assert_int_equal(role, ROLE_ADMIN);
    assert_string_equal(name, "bob");
    assert_err(store_token_find(f->st, none, &role, name, sizeof(name), &e), ERR_NOTFOUND, &e);
    assert_int_equal(store_token_find(f->st, none, &role, name, sizeof(name), NULL),
                     ERR_NOTFOUND);

    /* A taken name: conflict, and the rest of the transaction still commits. */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_savepoint(f->st, &e), &e);
    assert_err(store_token_insert(f->st, "alice", ROLE_ADMIN, h4, &e), ERR_CONFLICT, &e);
    assert_non_null(strstr(e.msg, "alice"));
    store_savepoint_rollback(f->st);
    assert_int_equal(store_token_insert(f->st, "alice", ROLE_ADMIN, h4, NULL), ERR_CONFLICT);
    assert_ok(store_meta_set(f->st, "after-conflict", "yes", &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_err(store_token_find(f->st, h4, &role, name, sizeof(name), &e), ERR_NOTFOUND, &e);
    assert_ok(store_token_find(f->st, h1, &role, name, sizeof(name), &e), &e);
    assert_int_equal(role, ROLE_CLIENT); /* unchanged */
    char *v = NULL;
    assert_ok(store_meta_get(f->st, "after-conflict", &v, &e), &e);
    lib_free(v);

    int64_t count = -1;
    assert_ok(store_token_count(f->st, ROLE_CLIENT, &count, &e), &e);
    assert_int_equal(count, 2);
    assert_ok(store_token_count(f->st, ROLE_ADMIN, &count, &e), &e);
    assert_int_equal(count, 1);
    assert_ok(store_token_count(f->st, ROLE_AGENT, &count, &e), &e);
    assert_int_equal(count, 0);

    /* Delete, then the hash no longer authenticates and the name is free again. */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_token_delete(f->st, "alice", &e), &e);
    assert_err(store_token_delete(f->st, "alice", &e), ERR_NOTFOUND, &e);
    assert_err(store_token_delete(f->st, "nobody", &e), ERR_NOTFOUND, &e);
    assert_non_null(strstr(e.msg, "nobody"));
    assert_int_equal(store_token_delete(f->st, "nobody", NULL), ERR_NOTFOUND);
    assert_ok(store_commit(f->st, &e), &e);
    assert_err(store_token_find(f->st, h1, &role, name, sizeof(name), &e), ERR_NOTFOUND, &e);
    assert_ok(store_token_count(f->st, ROLE_CLIENT, &count, &e), &e);
    assert_int_equal(count, 1);

    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_token_insert(f->st, "alice", ROLE_AGENT, h4, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_token_find(f->st, h4, &role, name, sizeof(name), &e), &e);
    assert_int_equal(role, ROLE_AGENT);
    assert_string_equal(name, "alice");
    assert_ok(store_token_count(f->st, ROLE_AGENT, &count, &e), &e);
    assert_int_equal(count, 1);

    /* Listed by name, with role, tenant (set or not) and creation time; a stop ends the scan. */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_token_set_tenant(f->st, "carol", "lab", &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    struct token_list tl = {0};
    assert_ok(store_token_scan(f->st, token_listed, &tl, &e), &e);
    assert_int_equal(tl.n, 3);
    assert_string_equal(tl.t[0].name, "alice");
    assert_int_equal(tl.t[0].role, ROLE_AGENT);
    assert_string_equal(tl.t[0].tenant, "");
    assert_string_equal(tl.t[1].name, "bob");
    assert_int_equal(tl.t[1].role, ROLE_ADMIN);
    assert_string_equal(tl.t[2].name, "carol");
    assert_string_equal(tl.t[2].tenant, "lab");
    assert_true(tl.t[2].created_at > 1600000000000LL);
    tl = (struct token_list){.stop_at = 2};
    assert_int_equal(store_token_scan(f->st, token_listed, &tl, &e), 7);
    assert_int_equal(tl.n, 2);
}

/* --- agents -------------------------------------------------------------------------------- */

/* Registers `name` for owner/instance (either may be NULL); *id gets the agent's id. */
static int agent_upsert(struct fixture *f, const char *name, const char *owner,
                        const char *instance, char id[UUID_STR_LEN], struct err *e)
{
    struct agent_rec a;
    agent_rec_init(&a);
    uuid7_new(a.id);
    a.name = xstrdup(name);
    a.labels = json_object();
    a.queues = json_pack("[s]", "default");
    a.slots = 1;
    a.owner = owner ? xstrdup(owner) : NULL;
    a.instance = instance ? xstrdup(instance) : NULL;
    a.last_seen = a.registered_at = 1000;
    int rc = store_begin(f->st, e);
    if (!rc) rc = store_agent_upsert(f->st, &a, e);
    if (!rc) rc = store_commit(f->st, e);
    if (rc) store_rollback(f->st);
    if (!rc) memcpy(id, a.id, UUID_STR_LEN);
    agent_rec_release(&a);
    return rc;
}

struct agent_seen {
    char name[16], owner[16], instance[16], id[UUID_STR_LEN];
};

static int collect_agent(void *arg, const struct agent_rec *a)
{
    struct agent_seen *seen = arg;
    while (seen->name[0])
        seen++;
    snprintf(seen->name, sizeof(seen->name), "%s", a->name);
    snprintf(seen->owner, sizeof(seen->owner), "%s", a->owner ? a->owner : "(null)");
    snprintf(seen->instance, sizeof(seen->instance), "%s", a->instance ? a->instance : "(null)");
    memcpy(seen->id, a->id, UUID_STR_LEN);
    return 0;
}

/* An agent's name belongs to the token that registered it first; its id never changes. */
/* A session of `name` made from token hash `tok`, named by the hash made of `c`. */
static struct session_rec session_of(char c, const char *tok, const char *name, int64_t expires)
{
    struct session_rec r;
    memset(&r, 0, sizeof(r));
    make_hash(r.id_hash, c);
    snprintf(r.token_hash, sizeof(r.token_hash), "%s", tok);
    make_hash(r.csrf, 'c');
    r.role = ROLE_CLIENT;
    snprintf(r.name, sizeof(r.name), "%s", name);
    r.expires_ms = expires;
    return r;
}

static void test_sessions(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    char tok[65], none[65];
    make_hash(tok, '9');
    make_hash(none, 'f');
    struct session_rec a1 = session_of('1', tok, "alice", 1000),
                       a2 = session_of('2', tok, "alice", 1001),
                       a3 = session_of('3', tok, "alice", 1002),
                       a4 = session_of('4', tok, "alice", 1003),
                       b1 = session_of('5', tok, "bob", 1000), got;
    assert_ok(store_session_insert(f->st, &a1, 0, 3, 5, &e), &e);
    assert_ok(store_session_find(f->st, a1.id_hash, 999, &got, &e), &e);
    assert_memory_equal(&got, &a1, sizeof(got));
    assert_err(store_session_find(f->st, none, 999, &got, &e), ERR_NOTFOUND, &e);
    /* expired at its expiry */
    assert_err(store_session_find(f->st, a1.id_hash, 1000, &got, &e), ERR_NOTFOUND, &e);

    /* At most 3 of alice's: her fourth ends her oldest; bob's stays. */
    assert_ok(store_session_insert(f->st, &b1, 0, 3, 5, &e), &e);
    assert_ok(store_session_insert(f->st, &a2, 0, 3, 5, &e), &e);
    assert_ok(store_session_insert(f->st, &a3, 0, 3, 5, &e), &e);
    assert_ok(store_session_find(f->st, a1.id_hash, 0, &got, &e), &e);
    assert_ok(store_session_insert(f->st, &a4, 0, 3, 5, &e), &e);
    assert_err(store_session_find(f->st, a1.id_hash, 0, &got, &e), ERR_NOTFOUND, &e);
    assert_ok(store_session_find(f->st, a2.id_hash, 0, &got, &e), &e);
    assert_ok(store_session_find(f->st, b1.id_hash, 0, &got, &e), &e);

    /* At most 4 in all: the fifth is refused and nothing is stored. */
    struct session_rec c1 = session_of('6', tok, "carol", 5000);
    assert_err(store_session_insert(f->st, &c1, 0, 3, 4, &e), ERR_UNAVAILABLE, &e);
    assert_non_null(strstr(e.msg, "too many sessions"));
    assert_err(store_session_find(f->st, c1.id_hash, 0, &got, &e), ERR_NOTFOUND, &e);
    /* Once the others have expired, the sign-in deletes them and succeeds. */
    assert_ok(store_session_insert(f->st, &c1, 1003, 3, 4, &e), &e);
    assert_ok(store_session_find(f->st, c1.id_hash, 1003, &got, &e), &e);
    assert_err(store_session_find(f->st, a4.id_hash, 0, &got, &e), ERR_NOTFOUND, &e);

    /* Sign-out; twice is no error. */
    assert_ok(store_session_delete(f->st, c1.id_hash, &e), &e);
    assert_err(store_session_find(f->st, c1.id_hash, 1003, &got, &e), ERR_NOTFOUND, &e);
    assert_ok(store_session_delete(f->st, c1.id_hash, &e), &e);
}

static void test_agent_owner(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    char id[UUID_STR_LEN], again[UUID_STR_LEN] = "", old[UUID_STR_LEN];
    assert_ok(agent_upsert(f, "w1", "tok-a", "inst-1", id, &e), &e);
    assert_ok(agent_upsert(f, "w1", "tok-a", "inst-2", again, &e), &e); /* its next instance */
    assert_string_equal(again, id);
    assert_err(agent_upsert(f, "w1", "tok-b", "inst-3", again, &e), ERR_CONFLICT, &e);
    assert_non_null(strstr(e.msg, "'w1'"));
    /* one stored before owners (NULL) is claimed by the first registration, then kept */
    assert_ok(agent_upsert(f, "old", NULL, NULL, old, &e), &e);
    assert_ok(agent_upsert(f, "old", "tok-c", "inst-4", again, &e), &e);
    assert_string_equal(again, old);
    err_clear(&e);
    assert_err(agent_upsert(f, "old", "tok-a", "inst-1", again, &e), ERR_CONFLICT, &e);

    struct agent_seen seen[3];
    memset(seen, 0, sizeof(seen));
    assert_ok(store_agent_scan(f->st, collect_agent, seen, &e), &e);
    assert_string_equal(seen[0].name, "old"); /* by name */
    assert_string_equal(seen[0].owner, "tok-c");
    assert_string_equal(seen[0].instance, "inst-4");
    assert_string_equal(seen[0].id, old);
    assert_string_equal(seen[1].name, "w1");
    assert_string_equal(seen[1].owner, "tok-a");
    assert_string_equal(seen[1].instance, "inst-2"); /* the refused one changed nothing */
    assert_string_equal(seen[1].id, id);
    assert_string_equal(seen[2].name, "");
}

/* --- the event stream: filters, what events carry, window and pruning --------------------- */

struct ev_seen {
    int n;
    int64_t seq[32];
    int kind[32], state[32], attempt[32];
    char subject[32][UUID_STR_LEN], queue[32][16], agent[32][16];
    json_t *data[32];
};

static int collect_event(void *arg, const struct event_rec *ev)
{
    struct ev_seen *s = arg;
    if (s->n >= 32)
        return 1;
    int i = s->n++;
    s->seq[i] = ev->seq;
    s->kind[i] = ev->kind;
    s->state[i] = ev->state;
    s->attempt[i] = ev->attempt;
    snprintf(s->subject[i], sizeof(s->subject[i]), "%s", ev->subject);
    snprintf(s->queue[i], sizeof(s->queue[i]), "%s", ev->queue ? ev->queue : "(null)");
    snprintf(s->agent[i], sizeof(s->agent[i]), "%s", ev->agent ? ev->agent : "(null)");
    s->data[i] = json_incref(ev->data);
    return 0;
}

/* Lists the events flt wants into *s (released first), asserting the call succeeds. */
static void list_events(struct store *st, const struct event_filter *flt, struct ev_seen *s)
{
    for (int i = 0; i < s->n; i++)
        json_decref(s->data[i]);
    memset(s, 0, sizeof(*s));
    struct err e = ERR_INIT;
    assert_ok(store_event_list(st, flt, collect_event, s, &e), &e);
}

static void ev_seen_release(struct ev_seen *s)
{
    for (int i = 0; i < s->n; i++)
        json_decref(s->data[i]);
    s->n = 0;
}

static int stop_after_two(void *arg, const struct event_rec *ev)
{
    int *n = arg;
    (void)ev;
    return ++*n == 2 ? 7 : 0;
}

static void test_events(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job a, b, out;
    make_job(&a, T0, "{'queue': 'qa', 'command': {'program': 'true'}}");
    make_job(&b, T0, "{'queue': 'qb', 'command': {'program': 'true'}}");
    a.owner = xstrdup("alice");
    b.owner = xstrdup("bob");
    insert_jobs(f->st, (struct job[]){a, b}, 2); /* seq 1, 2 */

    char id[UUID_STR_LEN];
    struct agent_rec ag;
    agent_rec_init(&ag);
    uuid7_new(ag.id);
    memcpy(id, ag.id, UUID_STR_LEN);
    ag.name = xstrdup("w1");
    ag.labels = json_object();
    ag.queues = json_pack("[s]", "qa");
    ag.slots = 2;
    ag.last_seen = ag.registered_at = T0;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_agent_upsert(f->st, &ag, &e), &e);                     /* 3 */
    assert_ok(store_agent_set_state(f->st, id, AGENT_DRAINING, T0 + 1, &e), &e); /* 4 */
    char unknown[UUID_STR_LEN];
    uuid7_new(unknown);
    assert_err(store_agent_set_state(f->st, unknown, AGENT_UP, T0, &e), ERR_NOTFOUND, &e);
    struct job_event_args lease = {.now_ms = T0 + 2, .agent = "w1"};
    assert_ok(store_job_apply(f->st, a.id, 0, NULL, true, JOB_EV_LEASE, &lease, &out, &e), &e);
    job_release(&out); /* 5 */
    struct job_event_args prog = {.now_ms = T0 + 3,
                                  .progress = json_pack("{s:i, s:s, s:I}", "percent", 50,
                                                        "message", "half", "updated_at",
                                                        (json_int_t)(T0 + 3))};
    assert_ok(store_job_apply(f->st, a.id, 1, "w1", false, JOB_EV_PROGRESS, &prog, &out, &e), &e);
    job_release(&out); /* 6 */
    char long_error[1201];
    for (int i = 0; i < 600; i++)
        memcpy(long_error + 2 * i, "\xc3\xa9", 2); /* é: 2 bytes */
    long_error[1200] = '\0';
    struct attempt_end end = {.reason = "exit", .has_exit_code = true, .exit_code = 3,
                              .duration_ms = 5, .error = long_error};
    struct job_event_args fin = {.now_ms = T0 + 4, .end = &end};
    assert_ok(store_job_apply(f->st, a.id, 1, "w1", true, JOB_EV_FINISH, &fin, &out, &e), &e);
    int final_state = out.state;
    job_release(&out); /* 7 */
    assert_ok(store_commit(f->st, &e), &e);
    agent_rec_release(&ag);

    int64_t first, last;
    assert_ok(store_event_window(f->st, &first, &last, &e), &e);
    assert_int_equal(first, 1);
    assert_int_equal(last, 7);

    struct ev_seen s = {0};
    struct event_filter flt = {.after = 0, .kind = -1, .limit = 100};
    list_events(f->st, &flt, &s);
    assert_int_equal(s.n, 7);
    for (int i = 0; i < 7; i++)
        assert_int_equal(s.seq[i], i + 1);
    assert_string_equal(s.subject[0], a.id);
    assert_int_equal(s.kind[0], EVENT_JOB);
    assert_int_equal(s.state[0], JOB_QUEUED);
    assert_string_equal(s.queue[0], "qa");
    assert_null(s.data[0]); /* no progress, no result */
    assert_string_equal(s.subject[1], b.id);
    /* agent events: the agent's id, state and name */
    assert_int_equal(s.kind[2], EVENT_AGENT);
    assert_string_equal(s.subject[2], id);
    assert_int_equal(s.state[2], AGENT_UP);
    assert_string_equal(s.agent[2], "w1");
    assert_int_equal(s.state[3], AGENT_DRAINING);
    /* job events carry the holder, the attempt, progress and the end */
    assert_int_equal(s.state[4], JOB_LEASED);
    assert_int_equal(s.attempt[4], 1);
    assert_string_equal(s.agent[4], "w1");
    assert_int_equal(json_integer_value(json_object_get(s.data[5], "percent")), 50);
    assert_string_equal(json_string_value(json_object_get(s.data[5], "message")), "half");
    assert_null(json_object_get(s.data[5], "updated_at"));
    assert_int_equal(s.state[6], final_state);
    assert_int_equal(json_integer_value(json_object_get(s.data[6], "exit_code")), 3);
    const char *err6 = json_string_value(json_object_get(s.data[6], "error"));
    assert_non_null(err6);
    assert_int_equal(strlen(err6), 512); /* cut at 512 bytes, on a character's boundary */
    /* no_data: the same events without their data (a reader that does not want it) */
    struct ev_seen bare = {0};
    flt.no_data = true;
    list_events(f->st, &flt, &bare);
    flt.no_data = false;
    assert_int_equal(bare.n, 7);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(bare.seq[i], s.seq[i]);
        assert_int_equal(bare.state[i], s.state[i]);
        assert_string_equal(bare.subject[i], s.subject[i]);
        assert_null(bare.data[i]);
    }
    ev_seen_release(&bare);

    /* filters: after, kind, queue, subjects, owner (a client sees agents' events too), limit */
    flt.after = 4;
    list_events(f->st, &flt, &s);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.seq[0], 5);
    flt = (struct event_filter){.after = 0, .kind = EVENT_AGENT, .limit = 100};
    list_events(f->st, &flt, &s);
    assert_int_equal(s.n, 2);
    flt = (struct event_filter){.after = 0, .kind = -1, .queue = "qb", .limit = 100};
    list_events(f->st, &flt, &s);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.subject[0], b.id);
    const char *const subjects[] = {b.id, id, "no\"such\\id"};
    flt = (struct event_filter){.after = 0, .kind = -1, .jobs = subjects, .njobs = 3, .limit = 100};
    list_events(f->st, &flt, &s);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.seq[0], 2);
    assert_int_equal(s.seq[1], 3);
    assert_int_equal(s.seq[2], 4);
    flt = (struct event_filter){.after = 0, .kind = -1, .owner = "bob", .limit = 100};
    list_events(f->st, &flt, &s);
    assert_int_equal(s.n, 3); /* its job's, and the agent's two */
    assert_string_equal(s.subject[0], b.id);
    flt = (struct event_filter){.after = 0, .kind = -1, .limit = 2};
    list_events(f->st, &flt, &s);
    assert_int_equal(s.n, 2);
    /* fn's non-zero return stops the listing and is returned */
    int n = 0;
    flt.limit = 100;
    assert_int_equal(store_event_list(f->st, &flt, stop_after_two, &n, &e), 7);
    assert_int_equal(n, 2);

    /* a savepoint rolled back takes its events back; the next one gets the next seq */
    struct job c;
    make_simple(&c, T0 + 5, "qa");
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_savepoint(f->st, &e), &e);
    assert_ok(store_job_insert(f->st, &c, &e), &e);
    store_savepoint_rollback(f->st);
    assert_ok(store_savepoint(f->st, &e), &e);
    assert_ok(store_job_cancel(f->st, b.id, T0 + 6, &out, &e), &e);
    job_release(&out);
    assert_ok(store_savepoint_release(f->st, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    flt = (struct event_filter){.after = 7, .kind = -1, .limit = 100};
    list_events(f->st, &flt, &s);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.seq[0], 8);
    assert_string_equal(s.subject[0], b.id);
    assert_int_equal(s.state[0], JOB_CANCELLED);

    /* pruning: beyond the newest max_keep, and before a time; the window's end stays */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_event_prune(f->st, 0, 3, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_event_window(f->st, &first, &last, &e), &e);
    assert_int_equal(first, 6);
    assert_int_equal(last, 8);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_event_prune(f->st, INT64_MAX, 1000, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_event_window(f->st, &first, &last, &e), &e);
    assert_int_equal(first, 9); /* none kept: the next seq */
    assert_int_equal(last, 8);
    /* and seq goes on from there */
    insert_jobs(f->st, &c, 1);
    assert_ok(store_event_window(f->st, &first, &last, &e), &e);
    assert_int_equal(first, 9);
    assert_int_equal(last, 9);

    ev_seen_release(&s);
    job_release(&a);
    job_release(&b);
    job_release(&c);
}

/* --- captured output ----------------------------------------------------------------------- */

static void read_log(struct store *st, const char *job, int attempt, int stream, int64_t off,
                     size_t max, const char *want, size_t want_len)
{
    struct buf out = BUF_INIT;
    struct err e = ERR_INIT;
    assert_ok(store_log_read(st, job, attempt, stream, off, max, &out, &e), &e);
    assert_int_equal(out.len, want_len);
    if (want_len)
        assert_memory_equal(out.data, want, want_len);
    buf_release(&out);
}

static void test_logs(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job j;
    make_simple(&j, T0, "default");
    insert_jobs(f->st, &j, 1);
    static const char bin[] = {'a', '\0', 'b', '\n', '\xff', 'c'}; /* bytes, not text */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_log_append(f->st, j.id, 1, 0, 0, bin, sizeof(bin), &e), &e);
    assert_ok(store_log_append(f->st, j.id, 1, 0, 6, "def", 3, &e), &e);
    /* a chunk already stored at an offset is kept as it is */
    assert_ok(store_log_append(f->st, j.id, 1, 0, 6, "XYZ", 3, &e), &e);
    assert_ok(store_log_append(f->st, j.id, 1, 1, 0, "err", 3, &e), &e);
    assert_ok(store_log_append(f->st, j.id, 2, 0, 0, "two", 3, &e), &e);
    /* a gap: bytes 12.. of stdout, with 9..11 never received */
    assert_ok(store_log_append(f->st, j.id, 1, 0, 12, "late", 4, &e), &e);
    /* nothing past PROTO_STREAM_MAX is kept; a chunk across it is cut */
    assert_ok(store_log_append(f->st, j.id, 3, 0, PROTO_STREAM_MAX, "x", 1, &e), &e);
    assert_ok(store_log_append(f->st, j.id, 3, 0, PROTO_STREAM_MAX - 2, "abcd", 4, &e), &e);
    assert_ok(store_log_append(f->st, j.id, 3, 0, -1, "neg", 3, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);

    read_log(f->st, j.id, 1, 0, 0, 1000, "a\0b\n\xff" "cdef", 9); /* stops at the gap */
    read_log(f->st, j.id, 1, 0, 4, 3, "\xff" "cd", 3);            /* within and across chunks */
    read_log(f->st, j.id, 1, 0, 9, 100, "", 0);                   /* in the gap */
    read_log(f->st, j.id, 1, 0, 13, 100, "ate", 3);
    read_log(f->st, j.id, 1, 0, 16, 100, "", 0); /* at the end */
    read_log(f->st, j.id, 1, 1, 0, 100, "err", 3);
    read_log(f->st, j.id, 2, 0, 0, 100, "two", 3);
    read_log(f->st, j.id, 1, 0, 0, 0, "", 0);
    read_log(f->st, j.id, 3, 0, PROTO_STREAM_MAX - 2, 100, "ab", 2);
    read_log(f->st, j.id, 3, 0, 0, 100, "", 0);
    read_log(f->st, "no-such-job", 1, 0, 0, 100, "", 0);

    /* a rolled back chunk is not kept */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_log_append(f->st, j.id, 1, 0, 9, "gap", 3, &e), &e);
    store_rollback(f->st);
    read_log(f->st, j.id, 1, 0, 0, 1000, "a\0b\n\xff" "cdef", 9);
    job_release(&j);
}

/* --- retention ---------------------------------------------------------------------------- */

static void expect_expired(struct store *st, int64_t now, int64_t dflt, int limit,
                           const char *const *want, size_t nwant)
{
    char ids[8][UUID_STR_LEN];
    size_t n = 99;
    struct err e = ERR_INIT;
    assert_true(limit <= 8);
    assert_ok(store_job_expired(st, now, dflt, limit, ids, &n, &e), &e);
    if (n != nwant)
        fail_msg("store_job_expired(now=%lld, default=%lld): %zu jobs, expected %zu",
                 (long long)(now - T0), (long long)dflt, n, nwant);
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t k = 0; k < nwant; k++)
            found |= !strcmp(ids[i], want[k]);
        if (!found)
            fail_msg("store_job_expired returned %s, not expected", ids[i]);
    }
}

static void test_retention(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job jobs[4], got;
    make_simple(&jobs[0], T0, "default");                     /* the default retention */
    make_job(&jobs[1], T0, "{'retention_s': 1, 'command': {'program': 'true'}}");
    make_simple(&jobs[2], T0, "default");                     /* never finishes */
    make_job(&jobs[3], T0, "{'retention_s': 100000, 'command': {'program': 'true'}}");
    assert_int_equal(jobs[1].retention_ms, 1000);
    insert_jobs(f->st, jobs, 4);
    assert_ok(store_job_get(f->st, jobs[3].id, &got, &e), &e);
    assert_int_equal(got.retention_ms, 100000000);
    job_release(&got);
    assert_ok(store_job_get(f->st, jobs[0].id, &got, &e), &e);
    assert_int_equal(got.retention_ms, 0);
    job_release(&got);

    assert_ok(store_begin(f->st, &e), &e);
    int64_t ended[4] = {T0 + 1000, T0 + 2000, 0, T0 + 1000};
    for (int i = 0; i < 4; i++) {
        if (!ended[i]) continue;
        assert_ok(store_job_cancel(f->st, jobs[i].id, ended[i], &got, &e), &e);
        job_release(&got);
    }
    for (int i = 0; i < 4; i++)
        assert_ok(store_log_append(f->st, jobs[i].id, 1, 0, 0, "out", 3, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);

    const char *a[] = {jobs[0].id}, *ab[] = {jobs[0].id, jobs[1].id};
    expect_expired(f->st, T0 + 1999, 1000, 8, NULL, 0);   /* nothing due yet */
    expect_expired(f->st, T0 + 2000, 1000, 8, a, 1);      /* ended + the default */
    expect_expired(f->st, T0 + 2999, 5000, 8, NULL, 0);   /* a longer default */
    expect_expired(f->st, T0 + 3000, 1000, 8, ab, 2);     /* b: ended + its own 1 s */
    expect_expired(f->st, T0 + 3000, 1000, 1, ab, 1);     /* at most limit */
    /* a job's own retention wins over the default, either way */
    expect_expired(f->st, T0 + 100000000, 1000, 8, ab, 2);
    const char *abd[] = {jobs[0].id, jobs[1].id, jobs[3].id};
    expect_expired(f->st, T0 + 100001000, 1000, 8, abd, 3);

    assert_ok(store_begin(f->st, &e), &e);
    assert_err(store_job_delete(f->st, jobs[2].id, &e), ERR_CONFLICT, &e); /* still queued */
    assert_ok(store_job_delete(f->st, jobs[0].id, &e), &e);
    assert_err(store_job_delete(f->st, jobs[0].id, &e), ERR_NOTFOUND, &e);
    assert_err(store_job_delete(f->st, "no-such-job", &e), ERR_NOTFOUND, &e);
    assert_ok(store_commit(f->st, &e), &e);

    assert_err(store_job_get(f->st, jobs[0].id, &got, &e), ERR_NOTFOUND, &e);
    read_log(f->st, jobs[0].id, 1, 0, 0, 100, "", 0); /* its output went with it */
    read_log(f->st, jobs[1].id, 1, 0, 0, 100, "out", 3);
    read_log(f->st, jobs[2].id, 1, 0, 0, 100, "out", 3);
    assert_ok(store_job_get(f->st, jobs[2].id, &got, &e), &e);
    assert_int_equal(got.state, JOB_QUEUED);
    job_release(&got);
    expect_expired(f->st, T0 + 3000, 1000, 8, ab + 1, 1);
    release_jobs(jobs, 4);
}

/* --- tenants ------------------------------------------------------------------------------ */

static int collect_tenants(void *arg, const struct tenant_rec *t)
{
    struct tenant_rec *out = arg;
    while (out->name[0])
        out++;
    *out = *t;
    return 0;
}

static void test_tenants(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    char tenant[72];
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_token_insert(f->st, "alice", ROLE_CLIENT, "hash-alice", &e), &e);
    assert_ok(store_token_insert(f->st, "bob", ROLE_CLIENT, "hash-bob", &e), &e);
    assert_ok(store_token_set_tenant(f->st, "bob", "lab", &e), &e);
    assert_err(store_token_set_tenant(f->st, "nobody", "lab", &e), ERR_NOTFOUND, &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_token_tenant(f->st, "alice", tenant, sizeof(tenant), &e), &e);
    assert_string_equal(tenant, "alice"); /* by default the token's own name */
    assert_ok(store_token_tenant(f->st, "bob", tenant, sizeof(tenant), &e), &e);
    assert_string_equal(tenant, "lab");
    assert_err(store_token_tenant(f->st, "nobody", tenant, sizeof(tenant), &e), ERR_NOTFOUND, &e);

    struct tenant_rec lab = {"lab", 2, -1, 3}, zed = {"zed", 0, 10, 1};
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_tenant_put(f->st, &zed, &e), &e);
    assert_ok(store_tenant_put(f->st, &lab, &e), &e);
    lab.max_running = 5; /* replaced whole */
    assert_ok(store_tenant_put(f->st, &lab, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    struct tenant_rec got[4];
    memset(got, 0, sizeof(got));
    assert_ok(store_tenant_scan(f->st, collect_tenants, got, &e), &e);
    assert_string_equal(got[0].name, "lab");
    assert_int_equal(got[0].max_running, 5);
    assert_int_equal(got[0].max_queued, -1);
    assert_int_equal(got[0].weight, 3);
    assert_string_equal(got[1].name, "zed");
    assert_int_equal(got[1].max_running, 0);
    assert_int_equal(got[1].max_queued, 10);
    assert_int_equal(got[2].name[0], '\0');

    struct job jobs[3], j;
    for (int i = 0; i < 3; i++) {
        make_simple(&jobs[i], T0 + i, "default");
        jobs[i].tenant = xstrdup(i < 2 ? "lab" : "other");
    }
    insert_jobs(f->st, jobs, 3);
    assert_ok(store_job_get(f->st, jobs[0].id, &j, &e), &e);
    assert_string_equal(j.tenant, "lab");
    job_release(&j);
    int64_t n = -1;
    assert_ok(store_tenant_waiting(f->st, "lab", &n, &e), &e);
    assert_int_equal(n, 2);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_cancel(f->st, jobs[1].id, T0 + 9, &j, &e), &e);
    job_release(&j);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_tenant_waiting(f->st, "lab", &n, &e), &e);
    assert_int_equal(n, 1);     /* a finished job no longer waits */
    struct store_lease c = {0}; /* a leased job neither */
    memcpy(c.job, jobs[0].id, UUID_STR_LEN);
    size_t leased = 0;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_lease(f->st, "w1", T0 + 10, &c, 1, &leased, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(leased, 1);
    lib_free(c.spec);
    assert_ok(store_tenant_waiting(f->st, "lab", &n, &e), &e);
    assert_int_equal(n, 0);
    assert_ok(store_tenant_waiting(f->st, "nobody", &n, &e), &e);
    assert_int_equal(n, 0);
    release_jobs(jobs, 3);
}

/* A tenant's limits set: its event, with the limits as stored, an admin's only. */
static void test_tenant_events(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct tenant_rec lab = {"lab", 2, -1, 3};
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_tenant_put(f->st, &lab, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    json_t *got = json_array();
    struct event_filter flt = {.after = 0, .kind = -1, .limit = 10};
    assert_ok(store_event_list(f->st, &flt, collect_events, got, &e), &e);
    json_t *want = json_pack("[{s:i, s:i, s:{s:s, s:i, s:n, s:i}}]", "kind", EVENT_TENANT,
                             "state", 0, "data", "tenant", "lab", "max_running", 2,
                             "max_queued", "weight", 3);
    assert_true(json_equal(got, want));
    json_decref(want);
    json_array_clear(got);
    flt.owner = "lab"; /* a client's stream, even the tenant's own token */
    assert_ok(store_event_list(f->st, &flt, collect_events, got, &e), &e);
    assert_int_equal(json_array_size(got), 0);
    json_decref(got);
}

/* --- paused queues ------------------------------------------------------------------------- */

static int collect_paused(void *arg, const char *queue, int64_t at)
{
    json_object_set_new(arg, queue, json_integer(at));
    return 0;
}

static void set_paused(struct store *st, const char *queue, bool paused, int64_t at, bool want_changed)
{
    struct err e = ERR_INIT;
    bool changed = !want_changed;
    assert_ok(store_begin(st, &e), &e);
    assert_ok(store_queue_pause(st, queue, paused, "admin", at, &changed, &e), &e);
    assert_ok(store_commit(st, &e), &e);
    assert_int_equal(changed, want_changed);
}

/* Pausing and resuming: a row while paused, an event per change and none for a repeat. */
static void test_queue_pause(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    set_paused(f->st, "bio", true, T0, true);
    set_paused(f->st, "bio", true, T0 + 5, false); /* paused already: still since T0 */
    set_paused(f->st, "chem", true, T0 + 1, true);
    set_paused(f->st, "idle", false, T0 + 2, false); /* not paused: nothing to resume */
    json_t *got = json_object();
    assert_ok(store_queue_paused(f->st, collect_paused, got, &e), &e);
    json_t *want = json_pack("{s:I, s:I}", "bio", (json_int_t)T0, "chem", (json_int_t)(T0 + 1));
    assert_true(json_equal(got, want));
    json_decref(want);
    set_paused(f->st, "bio", false, T0 + 3, true);
    json_object_clear(got);
    assert_ok(store_queue_paused(f->st, collect_paused, got, &e), &e);
    want = json_pack("{s:I}", "chem", (json_int_t)(T0 + 1));
    assert_true(json_equal(got, want));
    json_decref(want);
    json_decref(got);

    /* three changes, three events, seen by clients too */
    got = json_array();
    struct event_filter flt = {.after = 0, .kind = EVENT_QUEUE, .owner = "someone", .limit = 10};
    assert_ok(store_event_list(f->st, &flt, collect_events, got, &e), &e);
    want = json_pack("[{s:i, s:i, s:{s:s}}, {s:i, s:i, s:{s:s}}, {s:i, s:i, s:{s:s}}]", "kind",
                     EVENT_QUEUE, "state", QUEUE_PAUSED, "data", "by", "admin", "kind",
                     EVENT_QUEUE, "state", QUEUE_PAUSED, "data", "by", "admin", "kind",
                     EVENT_QUEUE, "state", QUEUE_RESUMED, "data", "by", "admin");
    assert_true(json_equal(got, want));
    json_decref(want);
    json_decref(got);
}

static int collect_limits(void *arg, const char *queue, int max_running)
{
    json_object_set_new(arg, queue, json_integer(max_running));
    return 0;
}

static void set_limit(struct store *st, const char *queue, int max, bool want_changed)
{
    struct err e = ERR_INIT;
    bool changed = !want_changed;
    assert_ok(store_begin(st, &e), &e);
    assert_ok(store_queue_limit(st, queue, max, "ops", T0, &changed, &e), &e);
    assert_ok(store_commit(st, &e), &e);
    assert_int_equal(changed, want_changed);
}

/* A queue's max_running: a row while set, an event per change (none for a repeat). */
static void test_queue_limit(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    set_limit(f->st, "lic", 2, true);
    set_limit(f->st, "lic", 2, false); /* the same */
    set_limit(f->st, "lic", 3, true);
    set_limit(f->st, "api", 1, true);
    set_limit(f->st, "none", 0, false); /* no limit to lift */
    json_t *got = json_object();
    assert_ok(store_queue_limits(f->st, collect_limits, got, &e), &e);
    json_t *want = json_pack("{s:i, s:i}", "lic", 3, "api", 1);
    assert_true(json_equal(got, want));
    json_decref(want);
    set_limit(f->st, "lic", 0, true);
    json_object_clear(got);
    assert_ok(store_queue_limits(f->st, collect_limits, got, &e), &e);
    want = json_pack("{s:i}", "api", 1);
    assert_true(json_equal(got, want));
    json_decref(want);
    json_decref(got);
    got = json_array();
    struct event_filter flt = {.after = 0, .kind = EVENT_QUEUE, .limit = 10};
    assert_ok(store_event_list(f->st, &flt, collect_events, got, &e), &e);
    want = json_pack("[{s:i, s:i, s:{s:s, s:i}}, {s:i, s:i, s:{s:s, s:i}},"
                     " {s:i, s:i, s:{s:s, s:i}}, {s:i, s:i, s:{s:s, s:n}}]",
                     "kind", EVENT_QUEUE, "state", QUEUE_LIMITED, "data", "by", "ops",
                     "max_running", 2, "kind", EVENT_QUEUE, "state", QUEUE_LIMITED, "data", "by",
                     "ops", "max_running", 3, "kind", EVENT_QUEUE, "state", QUEUE_LIMITED, "data",
                     "by", "ops", "max_running", 1, "kind", EVENT_QUEUE, "state", QUEUE_LIMITED,
                     "data", "by", "ops", "max_running");
    assert_true(json_equal(got, want));
    json_decref(want);
    json_decref(got);
}

/* --- fenced updates and scans -------------------------------------------------------------- */

static int collect_ids(void *arg, const struct job *j)
{
    char(*ids)[UUID_STR_LEN] = arg;
    while (ids[0][0])
        ids++;
    memcpy(ids[0], j->id, UUID_STR_LEN);
    assert_non_null(j->spec);
    return 0;
}

static int stop_at_first(void *arg, const struct job *j)
{
    (void)arg;
    (void)j;
    return 42;
}

static void test_update_and_scan(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job jobs[3], got;
    for (int i = 0; i < 3; i++)
        make_simple(&jobs[i], T0 + i, "default");
    insert_jobs(f->st, jobs, 3);

    /* a fenced write: applied at the expected attempt and state only */
    struct job w;
    assert_ok(store_job_get(f->st, jobs[1].id, &w, &e), &e);
    w.state = JOB_LEASED;
    w.attempt = 1;
    w.agent = xstrdup("w9");
    w.started_at = T0 + 10;
    w.progress = json_pack("{s:i}", "percent", 5);
    assert_ok(store_begin(f->st, &e), &e);
    assert_err(store_job_update(f->st, &w, 1, 1u << JOB_QUEUED, &e), ERR_CONFLICT, &e);
    assert_err(store_job_update(f->st, &w, 0, 1u << JOB_RUNNING, &e), ERR_CONFLICT, &e);
    assert_ok(store_job_update(f->st, &w, 0, 1u << JOB_QUEUED | 1u << JOB_BLOCKED, &e), &e);
    char unknown[UUID_STR_LEN];
    uuid7_new(unknown);
    struct job u;
    make_simple(&u, T0, "default");
    memcpy(u.id, unknown, UUID_STR_LEN);
    assert_err(store_job_update(f->st, &u, 0, ~0u, &e), ERR_NOTFOUND, &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_job_get(f->st, jobs[1].id, &got, &e), &e);
    assert_job_equal(&w, &got);
    job_release(&got);

    /* scans: by state mask, oldest first; fn's non-zero return stops it */
    char ids[4][UUID_STR_LEN];
    memset(ids, 0, sizeof(ids));
    assert_ok(store_job_scan(f->st, 1u << JOB_QUEUED, collect_ids, ids, &e), &e);
    assert_string_equal(ids[0], jobs[0].id);
    assert_string_equal(ids[1], jobs[2].id);
    assert_string_equal(ids[2], "");
    memset(ids, 0, sizeof(ids));
    assert_ok(store_job_scan(f->st, JOB_HELD_STATES, collect_ids, ids, &e), &e);
    assert_string_equal(ids[0], jobs[1].id);
    assert_string_equal(ids[1], "");
    memset(ids, 0, sizeof(ids));
    assert_ok(store_job_scan(f->st, 1u << JOB_SUCCEEDED, collect_ids, ids, &e), &e);
    assert_string_equal(ids[0], "");
    assert_int_equal(store_job_scan(f->st, ~0u, stop_at_first, NULL, &e), 42);

    /* jobs by id, whole (spec and all), in any order; unknown ids skipped */
    const char *want[] = {jobs[2].id, unknown, jobs[1].id};
    memset(ids, 0, sizeof(ids));
    assert_ok(store_job_each(f->st, want, 3, collect_ids, ids, &e), &e);
    assert_string_equal(ids[2], "");
    assert_true((!strcmp(ids[0], jobs[2].id) && !strcmp(ids[1], jobs[1].id)) ||
                (!strcmp(ids[0], jobs[1].id) && !strcmp(ids[1], jobs[2].id)));
    memset(ids, 0, sizeof(ids));
    assert_ok(store_job_each(f->st, want, 0, collect_ids, ids, &e), &e);
    assert_string_equal(ids[0], "");
    assert_int_equal(store_job_each(f->st, want, 3, stop_at_first, NULL, &e), 42);

    job_release(&u);
    job_release(&w);
    release_jobs(jobs, 3);
}

/* --- webhooks' outbox ---------------------------------------------------------------------- */

struct hook_seen {
    int n;
    int64_t id[8], seq[8], created_at[8];
    int tries[8], state[8];
    char url[8][64];
};

static int collect_hook(void *arg, const struct webhook *w)
{
    struct hook_seen *s = arg;
    if (s->n >= 8)
        return 1;
    int i = s->n++;
    s->id[i] = w->id;
    s->seq[i] = w->ev->seq;
    s->state[i] = w->ev->state;
    s->tries[i] = w->tries;
    s->created_at[i] = w->created_at;
    snprintf(s->url[i], sizeof(s->url[i]), "%s", w->url);
    return 0;
}

static void hooks_due(struct store *st, int64_t now, int limit, struct hook_seen *s)
{
    struct err e = ERR_INIT;
    memset(s, 0, sizeof(*s));
    assert_ok(store_webhook_due(st, now, limit, collect_hook, s, &e), &e);
}

static void test_webhooks(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job end, all, none, out;
    make_job(&end, T0, "{'notify_url': 'http://127.0.0.1:9/end', 'command': {'program': 'a'}}");
    make_job(&all, T0, "{'notify_url': 'http://127.0.0.1:9/all', 'notify': 'all', "
                       "'command': {'program': 'b'}}");
    make_simple(&none, T0, "default");
    insert_jobs(f->st, (struct job[]){end, all, none}, 3);
    int64_t count = -1;
    assert_ok(store_webhook_count(f->st, &count, &e), &e);
    assert_int_equal(count, 1); /* notify all: its submission too */

    /* cancels: terminal, so each job with a webhook gets a delivery */
    assert_ok(store_begin(f->st, &e), &e);
    const struct job *const js[] = {&end, &all, &none};
    for (int i = 0; i < 3; i++) {
        assert_ok(store_job_cancel(f->st, js[i]->id, T0 + 1, &out, &e), &e);
        job_release(&out);
    }
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_webhook_count(f->st, &count, &e), &e);
    assert_int_equal(count, 3);

    int64_t now = time_now_ms() + 1000;
    struct hook_seen s;
    hooks_due(f->st, now, 10, &s);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.url[0], "http://127.0.0.1:9/all");
    assert_int_equal(s.state[0], JOB_QUEUED);
    assert_int_equal(s.tries[0], 0);
    assert_true(s.created_at[0] > T0);
    assert_string_equal(s.url[1], "http://127.0.0.1:9/end");
    assert_int_equal(s.state[1], JOB_CANCELLED);
    assert_string_equal(s.url[2], "http://127.0.0.1:9/all");
    assert_int_equal(s.state[2], JOB_CANCELLED);
    assert_true(s.seq[0] < s.seq[1] && s.seq[1] < s.seq[2]);
    hooks_due(f->st, now, 2, &s);
    assert_int_equal(s.n, 2);
    hooks_due(f->st, 0, 10, &s); /* none due yet at time 0 */
    assert_int_equal(s.n, 0);

    /* a failed try waits for its next time; a delivered one goes */
    hooks_due(f->st, now, 10, &s);
    int64_t first_id = s.id[0];
    int64_t second_id = s.id[1];
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_webhook_retry(f->st, first_id, 1, now + 60000, "connection refused", &e), &e);
    assert_ok(store_webhook_delete(f->st, second_id, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    hooks_due(f->st, now, 10, &s);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.url[0], "http://127.0.0.1:9/all");
    assert_int_equal(s.state[0], JOB_CANCELLED);
    hooks_due(f->st, now + 60000, 10, &s);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.id[1], first_id); /* the earliest due first */
    assert_int_equal(s.tries[1], 1);

    /* pruning keeps the events a delivery still needs; the window starts after the newest
       event pruned all the same (no hole in it): here none is left in it */
    int64_t first, last;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_event_prune(f->st, INT64_MAX, 0, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    hooks_due(f->st, now + 60000, 10, &s);
    assert_int_equal(s.n, 2);
    assert_ok(store_webhook_count(f->st, &count, &e), &e);
    assert_int_equal(count, 2);
    assert_ok(store_event_window(f->st, &first, &last, &e), &e);
    assert_int_equal(first, last + 1);

    /* a lease is an event too: notify "all" gets it, notify "end" does not */
    struct job la, le;
    make_job(&la, T0 + 2, "{'notify_url': 'http://127.0.0.1:9/la', 'notify': 'all', "
                          "'command': {'program': 'c'}}");
    make_job(&le, T0 + 2, "{'notify_url': 'http://127.0.0.1:9/le', 'command': {'program': 'd'}}");
    insert_jobs(f->st, (struct job[]){la, le}, 2);
    struct store_lease c[2] = {0};
    memcpy(c[0].job, la.id, UUID_STR_LEN);
    memcpy(c[1].job, le.id, UUID_STR_LEN);
    size_t n = 0;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_lease(f->st, "w1", T0 + 3, c, 2, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(n, 2);
    lib_free(c[0].spec);
    lib_free(c[1].spec);
    assert_ok(store_webhook_count(f->st, &count, &e), &e);
    assert_int_equal(count, 4); /* la's submission and lease */
    hooks_due(f->st, now + 60000, 10, &s);
    assert_int_equal(s.n, 4);
    int la_states = 0;
    for (int i = 0; i < s.n; i++)
        if (!strcmp(s.url[i], "http://127.0.0.1:9/la"))
            la_states |= 1 << s.state[i];
    assert_int_equal(la_states, 1 << JOB_QUEUED | 1 << JOB_LEASED);
    job_release(&la);
    job_release(&le);

    job_release(&end);
    job_release(&all);
    job_release(&none);
}

/* --- URIs shown ---------------------------------------------------------------------------- */

/*
 * store_job_prefetch (a hint: PostgreSQL reads ahead, SQLite does nothing): what the locks, log
 * reads and applies that follow it see is what the store holds, also after a job's own write and
 * after another kind of write (which a backend's read-ahead must not hide).
 */
static void test_prefetch(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job jobs[3], out;
    make_simple(&jobs[0], T0, "pf");
    make_simple(&jobs[1], T0 + 1, "pf");
    make_job(&jobs[2], T0 + 2, "{'notify_url': 'http://127.0.0.1:9/end', 'queue': 'pf', "
                               "'command': {'program': 'a'}}");
    insert_jobs(f->st, jobs, 3);
    const char *a = jobs[0].id, *b = jobs[1].id, *c = jobs[2].id;
    char unknown[UUID_STR_LEN];
    uuid7_new(unknown);
    struct job_event_args lease = {.now_ms = T0 + 2, .agent = "w1"};
    struct job_event_args at = {.now_ms = T0 + 3};
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_apply(f->st, a, 0, NULL, true, JOB_EV_LEASE, &lease, &out, &e), &e);
    job_release(&out);
    assert_ok(store_job_apply(f->st, b, 0, NULL, true, JOB_EV_LEASE, &lease, &out, &e), &e);
    job_release(&out);
    assert_ok(store_job_apply(f->st, c, 0, NULL, true, JOB_EV_LEASE, &lease, &out, &e), &e);
    job_release(&out);
    /* a's stdout: two chunks, a gap, one more; b's: one chunk of attempt 2 only */
    assert_ok(store_log_append(f->st, a, 1, 0, 0, "he", 2, &e), &e);
    assert_ok(store_log_append(f->st, a, 1, 0, 2, "llo", 3, &e), &e);
    assert_ok(store_log_append(f->st, a, 1, 0, 9, "late", 4, &e), &e);
    assert_ok(store_log_append(f->st, a, 1, 1, 0, "err", 3, &e), &e);
    assert_ok(store_log_append(f->st, b, 2, 0, 0, "two", 3, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);

    const char *ids[] = {a, b, unknown, a};
    const int heads[] = {1, 1, 1, 0};
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_savepoint(f->st, &e), &e);
    assert_ok(store_job_prefetch(f->st, ids, heads, 4, 64, &e), &e);
    read_log(f->st, a, 1, 0, 0, 64, "hello", 5); /* stops at the gap */
    read_log(f->st, a, 1, 0, 0, 3, "hel", 3);    /* another size: read as it is asked */
    read_log(f->st, a, 1, 1, 0, 64, "err", 3);
    read_log(f->st, b, 1, 0, 0, 64, "", 0);
    read_log(f->st, b, 2, 0, 0, 64, "two", 3);
    assert_ok(store_job_apply(f->st, a, 1, "w1", false, JOB_EV_START, &at, &out, &e), &e);
    assert_int_equal(out.state, JOB_RUNNING);
    job_release(&out);
    /* a's own write is seen by the next lock: the same start again changes nothing */
    assert_int_equal(store_job_apply(f->st, a, 1, "w1", false, JOB_EV_START, &at, &out, &e),
                     LIFECYCLE_SAME);
    job_release(&out);
    assert_err(store_job_apply(f->st, unknown, 1, "w1", false, JOB_EV_START, &at, &out, &e),
               ERR_NOTFOUND, &e);
    /* another write: b's output grows, b is started by a plain update; both are seen */
    assert_ok(store_log_append(f->st, b, 1, 0, 0, "one", 3, &e), &e);
    read_log(f->st, b, 1, 0, 0, 64, "one", 3);
    assert_ok(store_job_get(f->st, b, &out, &e), &e);
    out.state = JOB_RUNNING;
    assert_ok(store_job_update(f->st, &out, 1, 1u << JOB_LEASED, &e), &e);
    job_release(&out);
    assert_err(store_job_apply(f->st, b, 1, "w2", false, JOB_EV_START, &at, &out, &e),
               ERR_CONFLICT, &e);
    assert_int_equal(out.state, JOB_RUNNING);
    job_release(&out);
    assert_ok(store_savepoint_release(f->st, &e), &e);
    /* the next op: a prefetch, then its savepoint rolled back: nothing of it stays */
    assert_ok(store_savepoint(f->st, &e), &e);
    const char *ac[] = {a, c};
    const int ac_heads[] = {1, 1};
    assert_ok(store_job_prefetch(f->st, ac, ac_heads, 2, 64, &e), &e);
    struct attempt_end ok = {.reason = "exit", .has_exit_code = true, .duration_ms = 1};
    struct job_event_args fin = {.now_ms = T0 + 5, .end = &ok};
    assert_ok(store_job_apply(f->st, c, 1, "w1", true, JOB_EV_FINISH, &fin, &out, &e), &e);
    job_release(&out);
    assert_ok(store_job_apply(f->st, a, 1, "w1", true, JOB_EV_FINISH, &fin, &out, &e), &e);
    assert_int_equal(out.state, JOB_SUCCEEDED);
    job_release(&out);
    store_savepoint_rollback(f->st);
    int64_t hooks = -1;
    assert_ok(store_webhook_count(f->st, &hooks, &e), &e);
    assert_int_equal(hooks, 0);
    /* and again, kept: c's end has its webhook delivery */
    assert_ok(store_savepoint(f->st, &e), &e);
    assert_ok(store_job_prefetch(f->st, ac, ac_heads, 2, 64, &e), &e);
    assert_ok(store_job_apply(f->st, c, 1, "w1", true, JOB_EV_FINISH, &fin, &out, &e), &e);
    job_release(&out);
    assert_ok(store_job_apply(f->st, a, 1, "w1", true, JOB_EV_FINISH, &fin, &out, &e), &e);
    assert_int_equal(out.state, JOB_SUCCEEDED);
    job_release(&out);
    assert_ok(store_savepoint_release(f->st, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_webhook_count(f->st, &hooks, &e), &e);
    assert_int_equal(hooks, 1);
    struct hook_seen hs;
    hooks_due(f->st, time_now_ms() + 1000, 10, &hs);
    assert_int_equal(hs.n, 1);
    assert_int_equal(hs.state[0], JOB_SUCCEEDED);
    /* a's events: one per change kept, in order */
    int states[16] = {0};
    const char *const a_only[] = {a};
    struct event_filter flt = {.after = 0, .kind = EVENT_JOB, .jobs = a_only, .njobs = 1,
                               .limit = 100};
    assert_ok(store_event_list(f->st, &flt, count_events, states, &e), &e);
    assert_int_equal(states[0], 4);
    assert_int_equal(states[1], JOB_QUEUED);
    assert_int_equal(states[2], JOB_LEASED);
    assert_int_equal(states[3], JOB_RUNNING);
    assert_int_equal(states[4], JOB_SUCCEEDED);
    assert_ok(store_job_get(f->st, a, &out, &e), &e);
    assert_int_equal(out.state, JOB_SUCCEEDED);
    job_release(&out);
    assert_ok(store_job_get(f->st, b, &out, &e), &e);
    assert_int_equal(out.state, JOB_RUNNING);
    job_release(&out);
    /* nothing asked: nothing done */
    assert_ok(store_job_prefetch(f->st, NULL, NULL, 0, 64, &e), &e);
    for (int i = 0; i < 3; i++)
        job_release(&jobs[i]);
}

/* A job read ahead gives a lock that wants the spec its labels, spec and typed views, as a
   plain lock does; one that does not want it may leave them out. */
static void test_prefetch_spec(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct job j, out;
    make_job(&j, T0, "{'queue': 'pfs', 'labels': {'env': 'prod'}, 'timeout_s': 30, "
                     "'command': {'program': 'a'}}");
    insert_jobs(f->st, &j, 1);
    const char *ids[] = {j.id};
    const int heads[] = {0};
    struct job_event_args lease = {.now_ms = T0 + 1, .agent = "w1"};
    struct job_event_args at = {.now_ms = T0 + 2};
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_savepoint(f->st, &e), &e);
    assert_ok(store_job_prefetch(f->st, ids, heads, 1, 64, &e), &e);
    assert_ok(store_job_apply(f->st, j.id, 0, NULL, true, JOB_EV_LEASE, &lease, &out, &e), &e);
    assert_non_null(out.spec);
    assert_true(json_equal(out.spec, j.spec));
    assert_string_equal(json_string_value(json_object_get(out.labels, "env")), "prod");
    assert_true(out.timeout_s == 30);
    job_release(&out);
    assert_ok(store_savepoint_release(f->st, &e), &e);
    /* read ahead again, locked without the spec: the step is made all the same */
    assert_ok(store_savepoint(f->st, &e), &e);
    assert_ok(store_job_prefetch(f->st, ids, heads, 1, 64, &e), &e);
    assert_ok(store_job_apply(f->st, j.id, 1, "w1", false, JOB_EV_START, &at, &out, &e), &e);
    assert_int_equal(out.state, JOB_RUNNING);
    job_release(&out);
    assert_ok(store_savepoint_release(f->st, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_job_get(f->st, j.id, &out, &e), &e);
    assert_int_equal(out.state, JOB_RUNNING);
    assert_true(json_equal(out.spec, j.spec));
    assert_string_equal(json_string_value(json_object_get(out.labels, "env")), "prod");
    job_release(&out);
    job_release(&j);
}


static void test_uri_redact(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"sqlite:/var/lib/drover/drover.db", "sqlite:/var/lib/drover/drover.db"},
        {"postgres://drover:hunter2@db.example:5432/drover",
         "postgres://drover:***@db.example:5432/drover"},
        {"postgresql://u:p%40ss@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"},
        {"postgres://drover@h/db", "postgres://drover@h/db"},
        {"postgres://h/db?user=u&password=hunter2&sslmode=require",
         "postgres://h/db?user=u&password=***&sslmode=require"},
        {"postgres://u@h/db?password=hunter2", "postgres://u@h/db?password=***"},
        {"", ""},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char out[256];
        store_uri_redact(cases[i][0], out, sizeof(out));
        assert_string_equal(out, cases[i][1]);
    }
    char small[12];
    store_uri_redact("postgres://u:hunter2@h/db", small, sizeof(small));
    assert_string_equal(small, "postgres://");
}

/* --- meta ---------------------------------------------------------------------------------- */

static void test_meta(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    char *v = NULL;
    assert_err(store_meta_get(f->st, "secret", &v, &e), ERR_NOTFOUND, &e);
    assert_non_null(strstr(e.msg, "secret"));
    assert_int_equal(store_meta_get(f->st, "secret", &v, NULL), ERR_NOTFOUND);

    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_meta_set(f->st, "secret", "first", &e), &e);
    assert_ok(store_meta_set(f->st, "empty", "", &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_meta_get(f->st, "secret", &v, &e), &e);
    assert_string_equal(v, "first");
    lib_free(v);
    v = NULL;
    assert_ok(store_meta_get(f->st, "empty", &v, &e), &e);
    assert_non_null(v);
    assert_string_equal(v, "");
    lib_free(v);

    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_meta_set(f->st, "secret", "second, longer value", &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_meta_get(f->st, "secret", &v, &e), &e);
    assert_string_equal(v, "second, longer value");
    lib_free(v);
    assert_err(store_meta_get(f->st, "Secret", &v, &e), ERR_NOTFOUND, &e);
}

/* --- the service hub ---------------------------------------------------------------------- */

static void put_service(struct store *st, const char *name, const char *def, int64_t at,
                        int want_version)
{
    struct err e = ERR_INIT;
    struct service_rec r = {.name = (char *)name, .definition = (char *)def,
                            .created_by = "admin", .created_at = at, .retired_at = 99};
    assert_ok(store_begin(st, &e), &e);
    assert_ok(store_service_insert(st, &r, &e), &e);
    assert_ok(store_commit(st, &e), &e);
    assert_int_equal(r.version, want_version);
    assert_int_equal(r.retired_at, 0);
}

static void test_services(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct service_rec r;
    struct service_rec *list = NULL;
    size_t n = 99;

    assert_ok(store_service_list(f->st, &list, &n, &e), &e);
    assert_int_equal(n, 0);
    lib_free(list);
    assert_err(store_service_get(f->st, "nhmmer", 0, &r, &e), ERR_NOTFOUND, &e);
    assert_non_null(strstr(e.msg, "nhmmer"));
    assert_ok(store_begin(f->st, &e), &e);
    assert_err(store_service_retire(f->st, "nhmmer", T0, &e), ERR_NOTFOUND, &e);
    store_rollback(f->st);

    /* versions count up per name; every one stays readable */
    put_service(f->st, "nhmmer", "{\"v\": 1}", T0, 1);
    put_service(f->st, "nhmmer", "{\"v\": 2}", T0 + 10, 2);
    put_service(f->st, "blast", "{\"b\": 1}", T0 + 20, 1);
    assert_ok(store_service_get(f->st, "nhmmer", 0, &r, &e), &e);
    assert_string_equal(r.name, "nhmmer");
    assert_int_equal(r.version, 2);
    assert_string_equal(r.definition, "{\"v\": 2}");
    assert_string_equal(r.created_by, "admin");
    assert_int_equal(r.created_at, T0 + 10);
    assert_int_equal(r.retired_at, 0);
    store_service_release(&r);
    assert_ok(store_service_get(f->st, "nhmmer", 1, &r, &e), &e);
    assert_int_equal(r.version, 1);
    assert_string_equal(r.definition, "{\"v\": 1}");
    assert_int_equal(r.created_at, T0);
    store_service_release(&r);
    assert_err(store_service_get(f->st, "nhmmer", 3, &r, &e), ERR_NOTFOUND, &e);
    assert_non_null(strstr(e.msg, "no version 3"));
    assert_ok(store_service_get(f->st, "nhmmer", 0, &r, &e), &e); /* after a miss */
    assert_int_equal(r.version, 2);
    store_service_release(&r);
    assert_err(store_service_get(f->st, "NHMMER", 0, &r, &e), ERR_NOTFOUND, &e);

    /* the list: the latest of each, by name */
    assert_ok(store_service_list(f->st, &list, &n, &e), &e);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].name, "blast");
    assert_int_equal(list[0].version, 1);
    assert_string_equal(list[1].name, "nhmmer");
    assert_int_equal(list[1].version, 2);
    assert_string_equal(list[1].definition, "{\"v\": 2}");
    for (size_t i = 0; i < n; i++)
        store_service_release(&list[i]);
    lib_free(list);

    /* retire marks the latest; a second retire keeps the first time; a rollback undoes it */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_service_retire(f->st, "blast", T0 + 30, &e), &e);
    store_rollback(f->st);
    assert_ok(store_service_get(f->st, "blast", 0, &r, &e), &e);
    assert_int_equal(r.retired_at, 0);
    store_service_release(&r);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_service_retire(f->st, "nhmmer", T0 + 30, &e), &e);
    assert_ok(store_service_retire(f->st, "nhmmer", T0 + 40, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_service_get(f->st, "nhmmer", 0, &r, &e), &e);
    assert_int_equal(r.retired_at, T0 + 30);
    store_service_release(&r);
    assert_ok(store_service_get(f->st, "nhmmer", 1, &r, &e), &e);
    assert_int_equal(r.retired_at, 0);
    store_service_release(&r);

    /* a new version after retirement is current and not retired */
    put_service(f->st, "nhmmer", "{\"v\": 3}", T0 + 50, 3);
    assert_ok(store_service_list(f->st, &list, &n, &e), &e);
    assert_int_equal(n, 2);
    assert_int_equal(list[1].version, 3);
    assert_int_equal(list[1].retired_at, 0);
    for (size_t i = 0; i < n; i++)
        store_service_release(&list[i]);
    lib_free(list);

    /* a second handle (the server's reads) sees what was committed */
    struct store *rd;
    assert_ok(store_open(f->uri, NULL, &rd, &e), &e);
    assert_ok(store_service_get(rd, "nhmmer", 2, &r, &e), &e);
    assert_int_equal(r.retired_at, T0 + 30);
    store_service_release(&r);
    store_close(rd);
}

static int last_seen_of(void *arg, const struct agent_rec *a)
{
    *(int64_t *)arg = a->last_seen;
    return 0;
}

/* store_agent_seen keeps the newest time a server saw the agent; no event. */
static void test_agent_seen(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    char id[UUID_STR_LEN];
    assert_ok(agent_upsert(f, "w1", "tok-a", "inst-1", id, &e), &e); /* last_seen 1000 */
    int64_t first = 0, last = 0, seen = 0;
    assert_ok(store_event_window(f->st, &first, &last, &e), &e);
    assert_ok(store_agent_seen(f->st, id, 5000, &e), &e);
    assert_ok(store_agent_seen(f->st, id, 4000, &e), &e); /* older: kept 5000 */
    assert_ok(store_agent_scan(f->st, last_seen_of, &seen, &e), &e);
    assert_int_equal(seen, 5000);
    assert_ok(store_agent_seen(f->st, "no-such-agent", 9000, &e), &e); /* nothing to do */
    int64_t first2 = 0, last2 = 0;
    assert_ok(store_event_window(f->st, &first2, &last2, &e), &e);
    assert_int_equal(last2, last);
}

struct agent_kept {
    int state;
    int64_t last_seen;
    unsigned runtimes;
    char labels[64], limits[128];
};

static int agent_kept_of(void *arg, const struct agent_rec *a)
{
    struct agent_kept *k = arg;
    k->state = a->state;
    k->last_seen = a->last_seen;
    k->runtimes = a->runtimes;
    char *l = json_dumps(a->labels, JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(k->labels, sizeof(k->labels), "%s", l ? l : "(null)");
    lib_free(l);
    l = a->limits ? json_dumps(a->limits, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    snprintf(k->limits, sizeof(k->limits), "%s", l ? l : "(null)");
    lib_free(l);
    return 0;
}

/*
 * What a server shows of an agent after a restart is what the store kept: its labels, the
 * runtimes it registered with and then the ones a poll said (store_agent_set_runtimes, no
 * event), its limits, and the state and last_seen of its leaving.
 */
static void test_agent_kept(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct agent_rec a;
    agent_rec_init(&a);
    uuid7_new(a.id);
    a.name = xstrdup("w1");
    a.labels = json_pack("{s:s}", "gpu", "1");
    a.queues = json_pack("[s]", "default");
    a.slots = 2;
    a.runtimes = PROTO_RT_NATIVE | PROTO_RT_BWRAP;
    a.limits = json_pack("{s:s, s:s}", "mechanism", "rlimit", "memory_mb", "rlimit");
    a.last_seen = a.registered_at = 1000;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_agent_upsert(f->st, &a, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    struct agent_kept k;
    memset(&k, 0, sizeof(k));
    assert_ok(store_agent_scan(f->st, agent_kept_of, &k, &e), &e);
    assert_int_equal(k.runtimes, PROTO_RT_NATIVE | PROTO_RT_BWRAP);
    assert_string_equal(k.labels, "{\"gpu\":\"1\"}");
    assert_string_equal(k.limits, "{\"mechanism\":\"rlimit\",\"memory_mb\":\"rlimit\"}");

    int64_t first = 0, last = 0, last2 = 0;
    assert_ok(store_event_window(f->st, &first, &last, &e), &e);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_agent_set_runtimes(f->st, a.id, PROTO_RT_NATIVE | PROTO_RT_PODMAN, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_event_window(f->st, &first, &last2, &e), &e);
    assert_int_equal(last2, last);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_agent_set_state(f->st, a.id, AGENT_LEFT, 4000, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    memset(&k, 0, sizeof(k));
    assert_ok(store_agent_scan(f->st, agent_kept_of, &k, &e), &e);
    assert_int_equal(k.state, AGENT_LEFT);
    assert_int_equal(k.last_seen, 4000);
    assert_int_equal(k.runtimes, PROTO_RT_NATIVE | PROTO_RT_PODMAN);
    assert_string_equal(k.limits, "{\"mechanism\":\"rlimit\",\"memory_mb\":\"rlimit\"}");

    /* registered again without limits: none kept from before */
    json_decref(a.limits);
    a.limits = NULL;
    a.runtimes = PROTO_RT_NATIVE;
    a.state = AGENT_UP;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_agent_upsert(f->st, &a, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    memset(&k, 0, sizeof(k));
    assert_ok(store_agent_scan(f->st, agent_kept_of, &k, &e), &e);
    assert_int_equal(k.runtimes, PROTO_RT_NATIVE);
    assert_string_equal(k.limits, "(null)");

    assert_ok(store_begin(f->st, &e), &e);
    assert_err(store_agent_set_runtimes(f->st, "no-such-agent", PROTO_RT_NATIVE, &e), ERR_NOTFOUND,
               &e);
    assert_non_null(strstr(e.msg, "'no-such-agent'"));
    store_rollback(f->st);
    agent_rec_release(&a);
}

/* A stored agent, up, named `name`, of owner `owner`, last seen at `seen`; its id into id. */
static void agent_stored(struct store *st, const char *name, const char *owner, int64_t seen,
                         char id[UUID_STR_LEN])
{
    struct err e = ERR_INIT;
    struct agent_rec a;
    agent_rec_init(&a);
    uuid7_new(a.id);
    a.name = xstrdup(name);
    a.owner = xstrdup(owner);
    a.labels = json_object();
    a.queues = json_pack("[s]", "default");
    a.slots = 1;
    a.last_seen = a.registered_at = seen;
    assert_ok(store_begin(st, &e), &e);
    assert_ok(store_agent_upsert(st, &a, &e), &e);
    assert_ok(store_commit(st, &e), &e);
    memcpy(id, a.id, UUID_STR_LEN);
    agent_rec_release(&a);
}

static int count_agents(void *arg, const struct agent_rec *a)
{
    (void)a;
    ++*(int *)arg;
    return 0;
}

/*
 * An agent lost or left before the cut is forgotten: deleted, with an event of state
 * forgotten that names it; one up, or seen since, or unknown is not (ERR_NOTFOUND, nothing
 * written); its name is free for another owner afterwards.
 */
static void test_agent_forget(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    char left[UUID_STR_LEN], lost[UUID_STR_LEN], up[UUID_STR_LEN], unknown[UUID_STR_LEN];
    agent_stored(f->st, "w-left", "alice", 1000, left);
    agent_stored(f->st, "w-lost", "alice", 1000, lost);
    agent_stored(f->st, "w-up", "alice", 1000, up);
    uuid7_new(unknown);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_agent_set_state(f->st, left, AGENT_LEFT, 4000, &e), &e);
    assert_ok(store_agent_set_state(f->st, lost, AGENT_LOST, 3000, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    int64_t first, last, last2;
    assert_ok(store_event_window(f->st, &first, &last, &e), &e);

    assert_ok(store_begin(f->st, &e), &e);
    /* seen at the cut, not before it; up; unknown */
    assert_err(store_agent_forget(f->st, left, 4000, &e), ERR_NOTFOUND, &e);
    assert_non_null(strstr(e.msg, left));
    assert_err(store_agent_forget(f->st, up, 9000, &e), ERR_NOTFOUND, &e);
    assert_err(store_agent_forget(f->st, unknown, 9000, &e), ERR_NOTFOUND, &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_event_window(f->st, &first, &last2, &e), &e);
    assert_int_equal(last2, last); /* no event */
    int n = 0;
    assert_ok(store_agent_scan(f->st, count_agents, &n, &e), &e);
    assert_int_equal(n, 3);

    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_agent_forget(f->st, left, 4001, &e), &e);
    assert_ok(store_agent_forget(f->st, lost, 4001, &e), &e);
    assert_err(store_agent_forget(f->st, lost, 4001, &e), ERR_NOTFOUND, &e); /* once */
    assert_ok(store_commit(f->st, &e), &e);
    n = 0;
    assert_ok(store_agent_scan(f->st, count_agents, &n, &e), &e);
    assert_int_equal(n, 1);

    struct ev_seen seen = {0};
    struct event_filter flt = {.after = last, .kind = -1, .limit = 100};
    list_events(f->st, &flt, &seen);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.seq[0], last + 1);
    assert_int_equal(seen.seq[1], last + 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(seen.kind[i], EVENT_AGENT);
        assert_int_equal(seen.state[i], AGENT_FORGOTTEN);
    }
    assert_string_equal(seen.subject[0], left);
    assert_string_equal(seen.agent[0], "w-left");
    assert_string_equal(seen.subject[1], lost);
    assert_string_equal(seen.agent[1], "w-lost");
    ev_seen_release(&seen);

    /* the name is free: another owner registers it, under a new id */
    char again[UUID_STR_LEN];
    agent_stored(f->st, "w-left", "bob", 9000, again);
    assert_string_not_equal(again, left);
    n = 0;
    assert_ok(store_agent_scan(f->st, count_agents, &n, &e), &e);
    assert_int_equal(n, 2);
}

/* A shared store: a commit that wrote events is announced to a listening handle, once. */
static void test_listen(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    int fd = -1;
    bool any = true;
    int64_t first = 0, last = -1, wfirst = 0, wlast = 0, upto = -1;
    if (!(store_caps(f->st) & STORE_CAP_SHARED)) {
        struct job one;
        make_simple(&one, T0, "q");
        insert_jobs(f->st, &one, 1);
        job_release(&one);
        store_tx_events(f->st, &first, &last);
        assert_true(first > last); /* not shared: nothing to tell */
        assert_err(store_listen(f->st, &fd, &e), ERR_INVALID, &e);
        assert_err(store_notified(f->st, &fd, &any, &upto, &e), ERR_INVALID, &e);
        assert_false(any);
        return;
    }
    struct store_opts so = {.notify = true};
    struct store *writer;
    assert_ok(store_open(f->uri, &so, &writer, &e), &e);
    assert_ok(store_open(f->uri, NULL, &f->st2, &e), &e);
    assert_ok(store_listen(f->st2, &fd, &e), &e);
    assert_true(fd >= 0);
    assert_ok(store_notified(f->st2, &fd, &any, &upto, &e), &e);
    assert_false(any); /* nothing yet */
    assert_int_equal(upto, 0);
    /* a batch of two jobs: one announcement */
    struct job j[2];
    make_simple(&j[0], T0, "q");
    make_simple(&j[1], T0, "q");
    assert_ok(store_begin(writer, &e), &e);
    assert_ok(store_job_insert(writer, &j[0], &e), &e);
    assert_ok(store_job_insert(writer, &j[1], &e), &e);
    assert_ok(store_commit(writer, &e), &e);
    /* the seqs of the two events it wrote, the newest ones */
    store_tx_events(writer, &first, &last);
    assert_ok(store_event_window(f->st, &wfirst, &wlast, &e), &e);
    assert_int_equal(last - first, 1);
    assert_int_equal(last, wlast);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1); /* bounded: 5 s */
    assert_ok(store_notified(f->st2, &fd, &any, &upto, &e), &e);
    assert_true(any);
    assert_int_equal(upto, last); /* it says the newest seq written */
    assert_ok(store_notified(f->st2, &fd, &any, &upto, &e), &e);
    assert_false(any); /* read once */
    assert_int_equal(upto, 0);
    /* rolled back: nothing */
    struct job k;
    make_simple(&k, T0, "q");
    assert_ok(store_begin(writer, &e), &e);
    assert_ok(store_job_insert(writer, &k, &e), &e);
    store_rollback(writer);
    assert_ok(store_begin(writer, &e), &e); /* a commit without events: none */
    assert_ok(store_meta_set(writer, "m", "v", &e), &e);
    assert_ok(store_commit(writer, &e), &e);
    store_tx_events(writer, &first, &last);
    assert_true(first > last);
    /* a handle without notify announces nothing */
    insert_jobs(f->st, &k, 1);
    assert_int_equal(poll(&pfd, 1, 300), 0);
    assert_ok(store_notified(f->st2, &fd, &any, &upto, &e), &e);
    assert_false(any);
    store_close(writer);
    release_jobs(j, 2);
    job_release(&k);
}

/* The leader lease: one holder at a time, renewed by it, taken over once it lapsed. */
static void test_leader(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    bool lead = true;
    assert_ok(store_open(f->uri, NULL, &f->st2, &e), &e); /* a second server */
    struct store *a = f->st, *b = f->st2;

    assert_ok(store_leader_take(a, "periodic", "server-a", 1000, 5000, &lead, &e), &e);
    assert_true(lead); /* nobody had it */
    assert_ok(store_leader_take(b, "periodic", "server-b", 2000, 5000, &lead, &e), &e);
    assert_false(lead); /* a's until 6000 */
    assert_ok(store_leader_take(a, "periodic", "server-a", 3000, 5000, &lead, &e), &e);
    assert_true(lead); /* renewed: until 8000 */
    assert_ok(store_leader_take(b, "periodic", "server-b", 7999, 5000, &lead, &e), &e);
    assert_false(lead);
    /* another lease is another row */
    assert_ok(store_leader_take(b, "other", "server-b", 7999, 5000, &lead, &e), &e);
    assert_true(lead);
    /* lapsed: b takes it over, and a no longer has it */
    assert_ok(store_leader_take(b, "periodic", "server-b", 8000, 5000, &lead, &e), &e);
    assert_true(lead);
    assert_ok(store_leader_take(a, "periodic", "server-a", 8500, 5000, &lead, &e), &e);
    assert_false(lead);
    /* a release by who does not hold it changes nothing */
    assert_ok(store_leader_release(a, "periodic", "server-a", &e), &e);
    assert_ok(store_leader_take(a, "periodic", "server-a", 8600, 5000, &lead, &e), &e);
    assert_false(lead);
    /* the holder's release lets the other take it at once */
    assert_ok(store_leader_release(b, "periodic", "server-b", &e), &e);
    assert_ok(store_leader_take(a, "periodic", "server-a", 8700, 5000, &lead, &e), &e);
    assert_true(lead);
    /* in a transaction rolled back: not taken */
    assert_ok(store_begin(b, &e), &e);
    assert_ok(store_leader_take(b, "periodic", "server-b", 20000, 5000, &lead, &e), &e);
    assert_true(lead);
    store_rollback(b);
    assert_ok(store_leader_take(a, "periodic", "server-a", 19000, 5000, &lead, &e), &e);
    assert_true(lead); /* still a's: renewed until 24000 */
    assert_ok(store_leader_take(b, "periodic", "server-b", 23999, 5000, &lead, &e), &e);
    assert_false(lead);
    /* a ttl that is not positive is refused */
    lead = true;
    assert_err(store_leader_take(a, "periodic", "server-a", 30000, 0, &lead, &e), ERR_INVALID, &e);
    assert_false(lead);
}

/* --- workflows ----------------------------------------------------------------------------- */

/* A workflow of owner from its text (' for "), stored with its jobs in one transaction. */
static void store_wf_of(struct store *st, const char *owner, const char *text,
                        struct workflow_rec *rec, struct job *jobs, struct workflow *w)
{
    char t[2048];
    snprintf(t, sizeof(t), "%s", text);
    for (char *c = t; *c; c++)
        if (*c == '\'') *c = '"';
    json_error_t je;
    json_t *body = json_loads(t, 0, &je);
    assert_non_null(body);
    struct err e = ERR_INIT;
    assert_ok(workflow_parse(body, w, &e), &e);
    json_decref(body);
    workflow_jobs(w, owner, T0, jobs);
    char ids[8][UUID_STR_LEN];
    assert_true(w->n <= 8);
    for (size_t i = 0; i < w->n; i++)
        memcpy(ids[i], jobs[i].id, UUID_STR_LEN);
    memset(rec, 0, sizeof(*rec));
    uuid7_new(rec->id);
    rec->owner = xstrdup(owner);
    rec->created_at = T0;
    rec->doc = workflow_doc(w, (const char(*)[UUID_STR_LEN])ids);
    struct job *ptrs[8];
    for (size_t i = 0; i < w->n; i++)
        ptrs[i] = &jobs[i];
    assert_ok(store_begin(st, &e), &e);
    assert_ok(store_workflow_insert(st, rec, ptrs, w->n, &e), &e);
    assert_ok(store_commit(st, &e), &e);
}

/* ... of alice: rec and jobs. */
static void store_wf(struct store *st, const char *text, struct workflow_rec *rec,
                     struct job *jobs, struct workflow *w)
{
    store_wf_of(st, "alice", text, rec, jobs, w);
}

static int wf_state(struct store *st, const struct workflow *w, const struct job *jobs,
                    const char *node)
{
    struct job j;
    struct err e = ERR_INIT;
    assert_ok(store_job_get(st, jobs[workflow_node(w, node)].id, &j, &e), &e);
    int s = j.state;
    job_release(&j);
    return s;
}

/* Leases node's job and ends its attempt with exit code `code` (and an output, when given). */
static void wf_run(struct store *st, const struct workflow *w, const struct job *jobs,
                   const char *node, int code, const char *out_uri)
{
    struct err e = ERR_INIT;
    const char *id = jobs[workflow_node(w, node)].id;
    struct store_lease c = {0};
    size_t n;
    snprintf(c.job, sizeof(c.job), "%s", id);
    assert_ok(store_begin(st, &e), &e);
    assert_ok(store_job_lease(st, "w1", T0 + 1, &c, 1, &n, &e), &e);
    lib_free(c.spec);
    assert_int_equal(n, 1);
    json_t *outs = json_array();
    if (out_uri)
        json_array_append_new(outs, json_pack("{s:s, s:i, s:s}", "uri", out_uri, "size", 3,
                                              "sha256", "ab12"));
    struct attempt_end end = {.reason = "exit", .has_exit_code = true, .exit_code = code,
                              .duration_ms = 1, .outputs = outs};
    struct job_event_args fin = {.now_ms = T0 + 2, .end = &end};
    struct job out;
    assert_ok(store_job_apply(st, id, c.attempt, "w1", true, JOB_EV_FINISH, &fin, &out, &e), &e);
    job_release(&out);
    json_decref(outs);
    assert_ok(store_commit(st, &e), &e);
}

static bool changed_has(char (*ids)[UUID_STR_LEN], size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ids[i], id)) return true;
    return false;
}

/*
 * A workflow in the store: stored whole with its jobs (the waiting ones blocked); a failed
 * node cancels what needs its success, and what goes on after any end is queued; retry
 * reruns only what failed or was cancelled; a node is queued once all its upstreams have
 * succeeded, its connected input set to the object its upstream's attempt wrote; cancel stops
 * the rest; a rolled back workflow leaves nothing.
 */
/*
 * A workflow's idempotency key: found by (owner, key), not by another owner's key; a second
 * workflow of one owner with the same key is refused (the unique index) and leaves nothing.
 */
static void test_workflow_keys(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct workflow w, w2;
    struct workflow_rec rec, rec2;
    struct job jobs[1], jobs2[1];
    char id[UUID_STR_LEN];
    char (*ids)[UUID_STR_LEN];
    store_wf(f->st, "{'key': 'nightly-1', 'nodes': {'A': {'job': {'command': {'program': 'a'}}}}}",
             &rec, jobs, &w);
    assert_ok(store_workflow_by_key(f->st, "alice", "nightly-1", id, &e), &e);
    assert_string_equal(id, rec.id);
    assert_int_equal(store_workflow_by_key(f->st, "bob", "nightly-1", id, &e), ERR_NOTFOUND);
    err_clear(&e);
    assert_int_equal(store_workflow_by_key(f->st, "alice", "nightly-2", id, &e), ERR_NOTFOUND);
    err_clear(&e);
    /* bob's own workflow of that key is his */
    store_wf_of(f->st, "bob", "{'key': 'nightly-1', 'nodes': {'A': {'job': {'command': "
                              "{'program': 'a'}}}}}",
                &rec2, jobs2, &w2);
    assert_ok(store_workflow_by_key(f->st, "bob", "nightly-1", id, &e), &e);
    assert_string_equal(id, rec2.id);
    workflow_rec_release(&rec2);
    release_jobs(jobs2, w2.n);
    workflow_release(&w2);
    /* alice's second of the same key: refused whole */
    json_t *body = json_pack("{s:s, s:{s:{s:{s:{s:s}}}}}", "key", "nightly-1", "nodes", "A", "job",
                             "command", "program", "a");
    assert_ok(workflow_parse(body, &w2, &e), &e);
    json_decref(body);
    workflow_jobs(&w2, "alice", T0, jobs2);
    memset(&rec2, 0, sizeof(rec2));
    uuid7_new(rec2.id);
    rec2.owner = xstrdup("alice");
    rec2.created_at = T0;
    char nid[1][UUID_STR_LEN];
    memcpy(nid[0], jobs2[0].id, UUID_STR_LEN);
    rec2.doc = workflow_doc(&w2, (const char(*)[UUID_STR_LEN])nid);
    struct job *p2[1] = {&jobs2[0]};
    assert_ok(store_begin(f->st, &e), &e);
    assert_int_equal(store_workflow_insert(f->st, &rec2, p2, 1, &e), ERR_CONFLICT);
    store_rollback(f->st);
    err_clear(&e);
    struct job j;
    assert_int_equal(store_job_get(f->st, jobs2[0].id, &j, &e), ERR_NOTFOUND);
    err_clear(&e);
    struct workflow_rec none;
    assert_int_equal(store_workflow_get(f->st, rec2.id, &none, &e), ERR_NOTFOUND);
    err_clear(&e);
    store_changed_take(&ids);
    lib_free(ids);
    workflow_rec_release(&rec2);
    release_jobs(jobs2, w2.n);
    workflow_release(&w2);
    workflow_rec_release(&rec);
    release_jobs(jobs, w.n);
    workflow_release(&w);
}

static void test_workflows(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct workflow w;
    struct workflow_rec rec, got;
    struct job jobs[4];
    char (*ids)[UUID_STR_LEN];
    /* what earlier tests left: not this test's */
    store_changed_take(&ids);
    lib_free(ids);
    store_wf(f->st,
             "{'name': 'd', 'nodes': {"
             "'A': {'job': {'retry': {'max_attempts': 1}, 'command': {'program': 'a'}}},"
             "'B': {'job': {'retry': {'max_attempts': 1}, 'command': {'program': 'b', "
             "  'arguments': [{'type': 'output', 'name': 'out', 'value': 's3://wf/b'}]}},"
             "  'depends_on': ['A']},"
             "'C': {'job': {'command': {'program': 'c'}}, 'depends_on': [{'node': 'A', 'on': 'any'}]},"
             "'D': {'job': {'command': {'program': 'd', "
             "  'arguments': [{'type': 'input', 'name': 'in'}]}}, 'depends_on': ['C']}},"
             "'connections': [{'from': 'B.out', 'to': 'D.in'}]}",
             &rec, jobs, &w);
    assert_ok(store_workflow_get(f->st, rec.id, &got, &e), &e);
    assert_string_equal(got.owner, "alice");
    assert_string_equal(json_string_value(json_object_get(got.doc, "name")), "d");
    assert_true(json_equal(got.doc, rec.doc));
    workflow_rec_release(&got);
    char match[2][UUID_STR_LEN]; /* found by its id, among workflows only, its owner's */
    size_t found;
    assert_ok(store_id_match(f->st, STORE_WORKFLOW, rec.id, "alice", match, 2, &found, &e), &e);
    assert_int_equal(found, 1);
    assert_string_equal(match[0], rec.id);
    assert_ok(store_id_match(f->st, STORE_WORKFLOW, rec.id, "bob", match, 2, &found, &e), &e);
    assert_int_equal(found, 0);
    assert_ok(store_id_match(f->st, STORE_JOB, rec.id, NULL, match, 2, &found, &e), &e);
    assert_int_equal(found, 0);
    assert_int_equal(wf_state(f->st, &w, jobs, "A"), JOB_QUEUED);
    assert_int_equal(wf_state(f->st, &w, jobs, "B"), JOB_BLOCKED);
    assert_int_equal(wf_state(f->st, &w, jobs, "D"), JOB_BLOCKED);

    /* A fails: B (needs its success) and D after it are cancelled, C (any end) is queued */
    wf_run(f->st, &w, jobs, "A", 1, NULL);
    assert_int_equal(wf_state(f->st, &w, jobs, "A"), JOB_FAILED);
    assert_int_equal(wf_state(f->st, &w, jobs, "B"), JOB_CANCELLED);
    assert_int_equal(wf_state(f->st, &w, jobs, "C"), JOB_QUEUED);
    assert_int_equal(wf_state(f->st, &w, jobs, "D"), JOB_CANCELLED);
    struct job b;
    assert_ok(store_job_get(f->st, jobs[workflow_node(&w, "B")].id, &b, &e), &e);
    assert_string_equal(json_string_value(json_object_get(b.result, "error")),
                        "its upstream node 'A' failed"); /* the cancel says why */
    job_release(&b);
    size_t n = store_changed_take(&ids); /* for the server: what the store changed itself */
    for (const char *const *k = (const char *const[]){"B", "C", "D", NULL}; *k; k++)
        assert_true(changed_has(ids, n, jobs[workflow_node(&w, *k)].id));
    assert_false(changed_has(ids, n, jobs[workflow_node(&w, "A")].id));
    lib_free(ids);

    /* retry: A queued again, B and D wait again; C (queued) is left alone */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_workflow_retry(f->st, &rec, T0 + 3, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(n, 3);
    assert_int_equal(wf_state(f->st, &w, jobs, "A"), JOB_QUEUED);
    assert_int_equal(wf_state(f->st, &w, jobs, "B"), JOB_BLOCKED);
    assert_int_equal(wf_state(f->st, &w, jobs, "D"), JOB_BLOCKED);
    assert_int_equal(wf_state(f->st, &w, jobs, "C"), JOB_QUEUED);

    wf_run(f->st, &w, jobs, "A", 0, NULL);
    assert_int_equal(wf_state(f->st, &w, jobs, "B"), JOB_QUEUED);
    /* B's output: a key of its own attempt (workflow_attempt_uri) */
    struct job bj;
    assert_ok(store_job_get(f->st, jobs[workflow_node(&w, "B")].id, &bj, &e), &e);
    assert_string_equal(workflow_output_uri(bj.spec, "out", NULL), "s3://wf/attempt-1/b");
    job_release(&bj);
    wf_run(f->st, &w, jobs, "B", 0, "s3://wf/attempt-1/b");
    assert_int_equal(wf_state(f->st, &w, jobs, "D"), JOB_BLOCKED); /* C has not ended */
    wf_run(f->st, &w, jobs, "C", 0, NULL);
    assert_int_equal(wf_state(f->st, &w, jobs, "D"), JOB_QUEUED);
    struct job d;
    assert_ok(store_job_get(f->st, jobs[workflow_node(&w, "D")].id, &d, &e), &e);
    json_t *in = json_array_get(json_object_get(json_object_get(d.spec, "command"), "arguments"), 0);
    assert_string_equal(json_string_value(json_object_get(in, "value")), "s3://wf/attempt-1/b");
    assert_string_equal(json_string_value(json_object_get(in, "sha256")), "ab12");
    job_release(&d);
    /* the lease hands out the spec as stored: with the input set */
    struct store_lease c = {0};
    snprintf(c.job, sizeof(c.job), "%s", jobs[workflow_node(&w, "D")].id);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_lease(f->st, "w1", T0 + 4, &c, 1, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_non_null(strstr(c.spec, "ab12"));
    lib_free(c.spec);

    /* nothing failed now: retry is refused */
    assert_ok(store_begin(f->st, &e), &e);
    assert_err(store_workflow_retry(f->st, &rec, T0 + 5, &n, &e), ERR_CONFLICT, &e);
    /* cancel stops what has not ended: D */
    assert_ok(store_workflow_cancel(f->st, &rec, T0 + 5, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(n, 1);
    assert_int_equal(wf_state(f->st, &w, jobs, "D"), JOB_CANCELLED);
    assert_int_equal(wf_state(f->st, &w, jobs, "B"), JOB_SUCCEEDED);
    /* what earlier tests left: not this test's */
    store_changed_take(&ids);
    lib_free(ids);
    workflow_rec_release(&rec);
    release_jobs(jobs, w.n);
    workflow_release(&w);

    /* a workflow rolled back leaves neither itself nor a job */
    struct workflow w2;
    struct job j2[2];
    struct job *p2[2] = {&j2[0], &j2[1]};
    json_t *body = json_pack("{s:{s:{s:{s:{s:s}}}, s:{s:{s:{s:s}}, s:[s]}}}", "nodes", "X", "job",
                             "command", "program", "x", "Y", "job", "command", "program", "y",
                             "depends_on", "X");
    assert_ok(workflow_parse(body, &w2, &e), &e);
    json_decref(body);
    workflow_jobs(&w2, NULL, T0, j2);
    char id2[2][UUID_STR_LEN];
    memcpy(id2[0], j2[0].id, UUID_STR_LEN);
    memcpy(id2[1], j2[1].id, UUID_STR_LEN);
    memset(&rec, 0, sizeof(rec));
    uuid7_new(rec.id);
    rec.doc = workflow_doc(&w2, (const char(*)[UUID_STR_LEN])id2);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_workflow_insert(f->st, &rec, p2, 2, &e), &e);
    store_rollback(f->st);
    assert_err(store_workflow_get(f->st, rec.id, &got, &e), ERR_NOTFOUND, &e);
    assert_err(store_job_get(f->st, j2[1].id, &d, &e), ERR_NOTFOUND, &e);
    workflow_rec_release(&rec);
    release_jobs(j2, 2);
    workflow_release(&w2);
}

/* The workflow's own events (kind EVENT_WORKFLOW, its owner's), oldest first. */
static json_t *wf_events(struct store *st, const char *id, const char *owner)
{
    struct err e = ERR_INIT;
    json_t *got = json_array();
    const char *subjects[] = {id};
    struct event_filter flt = {.after = 0, .kind = EVENT_WORKFLOW, .jobs = subjects, .njobs = 1,
                               .owner = owner, .limit = 100};
    assert_ok(store_event_list(st, &flt, collect_events, got, &e), &e);
    return got;
}

/*
 * A workflow's events: running at its submit; its end once its last node ends (in that
 * node's transaction, once, with the nodes' counts), with a delivery to its notify_url;
 * running again when a retry reopens it (its own, or a node's by hand), no delivery then;
 * another owner does not see them.
 */
static void test_workflow_events(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct workflow w;
    struct workflow_rec rec;
    struct job jobs[3];
    int64_t hooks0 = -1, hooks = -1;
    assert_ok(store_webhook_count(f->st, &hooks0, &e), &e);
    store_wf(f->st,
             "{'name': 'ev', 'key': 'k-ev', 'notify_url': 'http://127.0.0.1:9/wf', 'nodes': {"
             "'A': {'job': {'retry': {'max_attempts': 1}, 'command': {'program': 'a'}}},"
             "'B': {'job': {'retry': {'max_attempts': 1}, 'command': {'program': 'b'}}, "
             "  'depends_on': ['A']},"
             "'C': {'job': {'retry': {'max_attempts': 1}, 'command': {'program': 'c'}}}}}",
             &rec, jobs, &w);
    json_t *got = wf_events(f->st, rec.id, "alice");
    json_t *want = json_pack("[{s:i, s:i, s:{s:s, s:s}}]", "kind", EVENT_WORKFLOW, "state",
                             JOB_RUNNING, "data", "name", "ev", "key", "k-ev");
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    /* A fails (B cancelled): C still runs, no end yet; C's end ends it, failed */
    wf_run(f->st, &w, jobs, "A", 1, NULL);
    got = wf_events(f->st, rec.id, "alice");
    assert_int_equal(json_array_size(got), 1);
    json_decref(got);
    wf_run(f->st, &w, jobs, "C", 0, NULL);
    got = wf_events(f->st, rec.id, "alice");
    assert_int_equal(json_array_size(got), 2);
    json_t *end = json_array_get(got, 1);
    assert_int_equal(json_integer_value(json_object_get(end, "state")), JOB_FAILED);
    json_t *p = json_object_get(json_object_get(end, "data"), "progress");
    assert_int_equal(json_integer_value(json_object_get(p, "succeeded")), 1);
    assert_int_equal(json_integer_value(json_object_get(p, "failed")), 1);
    assert_int_equal(json_integer_value(json_object_get(p, "cancelled")), 1);
    assert_int_equal(json_integer_value(json_object_get(p, "total")), 3);
    json_decref(got);
    assert_ok(store_webhook_count(f->st, &hooks, &e), &e);
    assert_int_equal(hooks, hooks0 + 1);
    got = wf_events(f->st, rec.id, "bob"); /* not another owner's */
    assert_int_equal(json_array_size(got), 0);
    json_decref(got);

    /* B (cancelled) retried by hand reopens it; B's end ends it again, failed (A's) */
    struct job out;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_retry(f->st, jobs[workflow_node(&w, "B")].id, T0 + 3, &out, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    job_release(&out);
    got = wf_events(f->st, rec.id, NULL);
    assert_int_equal(json_array_size(got), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(got, 2), "state")),
                     JOB_RUNNING);
    json_decref(got);
    wf_run(f->st, &w, jobs, "B", 0, NULL);
    /* the workflow's retry reopens it (A); A's success ends it, succeeded */
    size_t n;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_workflow_retry(f->st, &rec, T0 + 5, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(n, 1);
    wf_run(f->st, &w, jobs, "A", 0, NULL);
    got = wf_events(f->st, rec.id, NULL);
    static const int want_states[] = {JOB_RUNNING, JOB_FAILED, JOB_RUNNING, JOB_FAILED,
                                      JOB_RUNNING, JOB_SUCCEEDED};
    assert_int_equal(json_array_size(got), ARRAY_SIZE(want_states));
    for (size_t i = 0; i < ARRAY_SIZE(want_states); i++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(got, i), "state")),
                         want_states[i]);
    p = json_object_get(json_object_get(json_array_get(got, 5), "data"), "progress");
    assert_int_equal(json_integer_value(json_object_get(p, "succeeded")), 3);
    json_decref(got);
    assert_ok(store_webhook_count(f->st, &hooks, &e), &e);
    assert_int_equal(hooks, hooks0 + 3); /* the ends only */
    workflow_rec_release(&rec);
    release_jobs(jobs, w.n);
    workflow_release(&w);
}

/* Listing workflows: newest first, an owner's only (or anyone's), paged by the last id. */
static void test_workflow_list(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct workflow w;
    struct workflow_rec rec[4];
    struct job jobs[4][1];
    const char *owners[4] = {"alice", "bob", "alice", "alice"};
    for (int i = 0; i < 4; i++) {
        store_wf_of(f->st, owners[i], "{'nodes': {'A': {'job': {'command': {'program': 'a'}}}}}",
                    &rec[i], jobs[i], &w);
        workflow_release(&w);
        job_release(&jobs[i][0]);
    }
    char (*ids)[UUID_STR_LEN]; /* jobs a workflow moved: none here */
    store_changed_take(&ids);
    lib_free(ids);
    struct workflow_list l;
    assert_ok(store_workflow_list(f->st, NULL, NULL, 10, &l, &e), &e);
    assert_int_equal(l.n, 4);
    for (int i = 0; i < 4; i++) { /* newest first, whole */
        assert_string_equal(l.w[i].id, rec[3 - i].id);
        assert_string_equal(l.w[i].owner, owners[3 - i]);
        assert_int_equal(l.w[i].created_at, T0);
        assert_true(json_equal(l.w[i].doc, rec[3 - i].doc));
    }
    workflow_list_release(&l);
    /* alice's, two a page: [3, 2], then [0] after 2 */
    assert_ok(store_workflow_list(f->st, "alice", NULL, 2, &l, &e), &e);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.w[0].id, rec[3].id);
    assert_string_equal(l.w[1].id, rec[2].id);
    workflow_list_release(&l);
    assert_ok(store_workflow_list(f->st, "alice", rec[2].id, 2, &l, &e), &e);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.w[0].id, rec[0].id);
    workflow_list_release(&l);
    assert_ok(store_workflow_list(f->st, "alice", rec[0].id, 2, &l, &e), &e);
    assert_int_equal(l.n, 0);
    workflow_list_release(&l);
    assert_ok(store_workflow_list(f->st, "bob", NULL, 10, &l, &e), &e);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.w[0].id, rec[1].id);
    workflow_list_release(&l);
    assert_ok(store_workflow_list(f->st, "carol", NULL, 10, &l, &e), &e);
    assert_int_equal(l.n, 0);
    workflow_list_release(&l);
    for (int i = 0; i < 4; i++)
        workflow_rec_release(&rec[i]);
}

/*
 * A fan-in node (D after A, B and C) is looked at once per upstream's end, from where the
 * last look stopped: it still waits for every upstream, is cancelled at once by one it needs
 * that fails, and waits again for an upstream retried after the look had passed it.
 */
static void test_workflow_fan_in(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct workflow w;
    struct workflow_rec rec;
    struct job jobs[4], out;
    char (*ids)[UUID_STR_LEN];
    const char *body = "{'nodes': {'A': {'job': {'retry': {'max_attempts': 1}, 'command': "
                       "{'program': 'a'}}},"
                       "'B': {'job': {'retry': {'max_attempts': 1}, 'command': {'program': 'b'}}},"
                       "'C': {'job': {'retry': {'max_attempts': 1}, 'command': {'program': 'c'}}},"
                       "'D': {'job': {'command': {'program': 'd'}}, "
                       "  'depends_on': [{'node': 'A', 'on': 'any'}, 'B', 'C']}}}";
    /* ends out of order: D waits for the last one */
    store_wf(f->st, body, &rec, jobs, &w);
    wf_run(f->st, &w, jobs, "C", 0, NULL);
    assert_int_equal(wf_state(f->st, &w, jobs, "D"), JOB_BLOCKED);
    wf_run(f->st, &w, jobs, "A", 0, NULL);
    assert_int_equal(wf_state(f->st, &w, jobs, "D"), JOB_BLOCKED);
    wf_run(f->st, &w, jobs, "B", 0, NULL);
    assert_int_equal(wf_state(f->st, &w, jobs, "D"), JOB_QUEUED);
    release_jobs(jobs, 4);
    workflow_release(&w);
    workflow_rec_release(&rec);
    /* one it needs fails while another is still open: cancelled at once */
    store_wf(f->st, body, &rec, jobs, &w);
    wf_run(f->st, &w, jobs, "C", 3, NULL);
    assert_int_equal(wf_state(f->st, &w, jobs, "D"), JOB_CANCELLED);
    release_jobs(jobs, 4);
    workflow_release(&w);
    workflow_rec_release(&rec);
    /* A (on: any) fails, and is retried after the look passed it: D waits for it again */
    store_wf(f->st, body, &rec, jobs, &w);
    wf_run(f->st, &w, jobs, "A", 5, NULL);
    wf_run(f->st, &w, jobs, "B", 0, NULL);
    assert_int_equal(wf_state(f->st, &w, jobs, "D"), JOB_BLOCKED);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_retry(f->st, jobs[0].id, T0 + 3, &out, &e), &e);
    job_release(&out);
    assert_ok(store_commit(f->st, &e), &e);
    wf_run(f->st, &w, jobs, "C", 0, NULL);
    assert_int_equal(wf_state(f->st, &w, jobs, "D"), JOB_BLOCKED); /* A runs again */
    wf_run(f->st, &w, jobs, "A", 0, NULL);
    assert_int_equal(wf_state(f->st, &w, jobs, "D"), JOB_QUEUED);
    release_jobs(jobs, 4);
    workflow_release(&w);
    workflow_rec_release(&rec);
    store_changed_take(&ids);
    lib_free(ids);
}

/*
 * Retention deletes a workflow's jobs one by one (store_job_delete): each takes its row of
 * the workflow along, and the last one the workflow; another workflow is not touched.
 */
static void test_workflow_deleted_with_its_last_job(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct workflow w, w2;
    struct workflow_rec rec, rec2, got;
    struct job jobs[2], other[1];
    char wid[UUID_STR_LEN], (*ids)[UUID_STR_LEN];
    store_wf(f->st,
             "{'nodes': {'A': {'job': {'command': {'program': 'a'}}},"
             "'B': {'job': {'command': {'program': 'b'}}, 'depends_on': ['A']}}}",
             &rec, jobs, &w);
    store_wf(f->st, "{'nodes': {'A': {'job': {'command': {'program': 'a'}}}}}", &rec2, other,
             &w2);
    wf_run(f->st, &w, jobs, "A", 0, NULL);
    wf_run(f->st, &w, jobs, "B", 0, NULL);
    assert_int_equal(wf_state(f->st, &w, jobs, "B"), JOB_SUCCEEDED);
    store_changed_take(&ids);
    lib_free(ids);
    /* one of two jobs gone: the workflow stays, with its other job's row */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_delete(f->st, jobs[0].id, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_err(store_workflow_of(f->st, jobs[0].id, wid, &e), ERR_NOTFOUND, &e);
    assert_ok(store_workflow_of(f->st, jobs[1].id, wid, &e), &e);
    assert_string_equal(wid, rec.id);
    assert_ok(store_workflow_get(f->st, rec.id, &got, &e), &e);
    workflow_rec_release(&got);
    /* the last one: the workflow goes too */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_delete(f->st, jobs[1].id, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_err(store_workflow_of(f->st, jobs[1].id, wid, &e), ERR_NOTFOUND, &e);
    assert_err(store_workflow_get(f->st, rec.id, &got, &e), ERR_NOTFOUND, &e);
    /* the other workflow (its job still queued, not deleted) is whole */
    assert_ok(store_begin(f->st, &e), &e);
    assert_err(store_job_delete(f->st, other[0].id, &e), ERR_CONFLICT, &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_workflow_get(f->st, rec2.id, &got, &e), &e);
    workflow_rec_release(&got);
    assert_ok(store_workflow_of(f->st, other[0].id, wid, &e), &e);
    for (size_t i = 0; i < 2; i++)
        job_release(&jobs[i]);
    job_release(&other[0]);
    workflow_release(&w);
    workflow_release(&w2);
    workflow_rec_release(&rec);
    workflow_rec_release(&rec2);
}

/* --- triggers ------------------------------------------------------------------------------ */

static void insert_trigger(struct store *st, struct trigger_rec *t, const char *owner,
                           const char *prefix, bool workflow, const char *input, int64_t at)
{
    struct err e = ERR_INIT;
    memset(t, 0, sizeof(*t));
    uuid7_new(t->id);
    t->owner = (char *)owner;
    t->prefix = (char *)prefix;
    t->workflow = workflow;
    t->input = (char *)input;
    t->template_ = (char *)(workflow ? "{\"nodes\":{}}" : "{\"command\":{\"program\":\"a\"}}");
    t->created_at = at;
    assert_ok(store_begin(st, &e), &e);
    assert_ok(store_trigger_insert(st, t, &e), &e);
    assert_ok(store_commit(st, &e), &e);
}

static void object_created(struct store *st, const char *bucket, const char *key,
                           const char *sha256)
{
    struct err e = ERR_INIT;
    assert_ok(store_begin(st, &e), &e);
    assert_ok(store_event_object(st, OBJECT_CREATED, bucket, key, 1, sha256, &e), &e);
    assert_ok(store_commit(st, &e), &e);
}

/* The pending fires as "TRIGGER-INDEX URI SHA" lines, oldest first (t: the triggers). */
static char *pending_text(struct store *st, const struct trigger_rec *t, size_t nt)
{
    struct err e = ERR_INIT;
    struct trigger_fire *f;
    size_t n;
    assert_ok(store_trigger_fires(st, NULL, 100, &f, &n, &e), &e);
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < nt && strcmp(t[k].id, f[i].trigger))
            k++;
        assert_true(k < nt);
        assert_null(f[i].target);
        assert_null(f[i].error);
        assert_true(!i || f[i].id > f[i - 1].id);
        buf_addf(&b, "%zu %s %s\n", k, f[i].uri, f[i].sha256);
        trigger_fire_release(&f[i]);
    }
    lib_free(f);
    char *text = xstrdup(b.data ? b.data : "");
    buf_release(&b);
    return text;
}

#define assert_pending(st, t, nt, want)                                                            \
    do {                                                                                           \
        char *got_ = pending_text(st, t, nt);                                                      \
        assert_string_equal(got_, want);                                                           \
        lib_free(got_);                                                                            \
    } while (0)

/*
 * Triggers and their fires: an object's event records a fire for each trigger whose prefix
 * holds it, once per (trigger, uri, sha256); a fire is done once; deleting a trigger takes
 * its fires; fires are events of their trigger's owner.
 */
static void test_triggers(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct trigger_rec t[2], got;
    insert_trigger(f->st, &t[0], "alice", "s3://up/in/", false, "--in", T0);
    insert_trigger(f->st, &t[1], "bob", "s3://up/", true, NULL, T0 + 1);

    assert_ok(store_trigger_get(f->st, t[0].id, &got, &e), &e);
    assert_string_equal(got.id, t[0].id);
    assert_string_equal(got.owner, "alice");
    assert_string_equal(got.prefix, "s3://up/in/");
    assert_false(got.workflow);
    assert_string_equal(got.input, "--in");
    assert_string_equal(got.template_, t[0].template_);
    assert_int_equal(got.created_at, T0);
    trigger_rec_release(&got);
    assert_ok(store_trigger_get(f->st, t[1].id, &got, &e), &e);
    assert_true(got.workflow);
    assert_null(got.input);
    trigger_rec_release(&got);
    assert_err(store_trigger_get(f->st, "01900000-0000-7000-8000-000000000000", &got, &e),
               ERR_NOTFOUND, &e);
    assert_ok(store_begin(f->st, &e), &e); /* the same id again */
    assert_err(store_trigger_insert(f->st, &t[0], &e), ERR_CONFLICT, &e);
    store_rollback(f->st);

    struct trigger_rec *l;
    size_t n;
    assert_ok(store_trigger_list(f->st, NULL, NULL, 0, &l, &n, &e), &e); /* newest first */
    assert_int_equal(n, 2);
    assert_string_equal(l[0].id, t[1].id);
    assert_string_equal(l[1].id, t[0].id);
    for (size_t i = 0; i < n; i++)
        trigger_rec_release(&l[i]);

    /* the prefix both ids share finds both, in id order; an owner's finds its own */
    char match[3][UUID_STR_LEN], prefix[UUID_STR_LEN];
    size_t common = 0;
    while (t[0].id[common] == t[1].id[common])
        common++;
    snprintf(prefix, sizeof(prefix), "%.*s", (int)common, t[0].id);
    assert_ok(store_id_match(f->st, STORE_TRIGGER, prefix, NULL, match, 3, &n, &e), &e);
    assert_int_equal(n, 2);
    assert_true(strcmp(match[0], match[1]) < 0);
    assert_ok(store_id_match(f->st, STORE_TRIGGER, prefix, "bob", match, 3, &n, &e), &e);
    assert_int_equal(n, 1);
    assert_string_equal(match[0], t[1].id);
    assert_ok(store_id_match(f->st, STORE_ARRAY, prefix, NULL, match, 3, &n, &e), &e);
    assert_int_equal(n, 0);
    lib_free(l);
    assert_ok(store_trigger_list(f->st, "alice", NULL, 0, &l, &n, &e), &e);
    assert_int_equal(n, 1);
    assert_string_equal(l[0].id, t[0].id);
    trigger_rec_release(&l[0]);
    lib_free(l);
    assert_ok(store_trigger_list(f->st, "carol", NULL, 0, &l, &n, &e), &e);
    assert_int_equal(n, 0);
    lib_free(l);
    /* pages: one at a time, the second after the first's id */
    assert_ok(store_trigger_list(f->st, NULL, NULL, 1, &l, &n, &e), &e);
    assert_int_equal(n, 1);
    assert_string_equal(l[0].id, t[1].id);
    trigger_rec_release(&l[0]);
    lib_free(l);
    assert_ok(store_trigger_list(f->st, NULL, t[1].id, 1, &l, &n, &e), &e);
    assert_int_equal(n, 1);
    assert_string_equal(l[0].id, t[0].id);
    trigger_rec_release(&l[0]);
    lib_free(l);
    assert_ok(store_trigger_list(f->st, NULL, t[0].id, 1, &l, &n, &e), &e);
    assert_int_equal(n, 0);
    lib_free(l);

    /* objects: under both prefixes, under bob's only, under none; deleted: no fire */
    object_created(f->st, "up", "in/x.txt", "aa");
    object_created(f->st, "up", "other.txt", "bb");
    object_created(f->st, "upx", "in/x.txt", "aa");
    object_created(f->st, "up2", "in/x.txt", "aa");
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_event_object(f->st, OBJECT_DELETED, "up", "in/gone", 1, "dd", &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    const char *want = "0 s3://up/in/x.txt aa\n1 s3://up/in/x.txt aa\n1 s3://up/other.txt bb\n";
    assert_pending(f->st, t, 2, want);
    /* the same version again: nothing new; a new version: new fires */
    object_created(f->st, "up", "in/x.txt", "aa");
    assert_pending(f->st, t, 2, want);
    object_created(f->st, "up", "in/x.txt", "cc");
    want = "0 s3://up/in/x.txt aa\n1 s3://up/in/x.txt aa\n1 s3://up/other.txt bb\n"
           "0 s3://up/in/x.txt cc\n1 s3://up/in/x.txt cc\n";
    assert_pending(f->st, t, 2, want);
    /* a listing's fire for one trigger: the unique key holds, the prefix is the caller's */
    int added = -1;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_trigger_fire_add(f->st, t[0].id, "s3://up/in/x.txt", "aa", T0, &added, &e),
              &e);
    assert_int_equal(added, 0);
    assert_ok(store_trigger_fire_add(f->st, t[0].id, "s3://up/in/y.txt", "ee", T0, &added, &e),
              &e);
    assert_int_equal(added, 1);
    store_rollback(f->st); /* undone with its transaction */
    assert_pending(f->st, t, 2, want);

    /* done once: with a target, or failed; then not pending */
    struct trigger_fire *fs;
    assert_ok(store_trigger_fires(f->st, NULL, 2, &fs, &n, &e), &e); /* at most 2 */
    assert_int_equal(n, 2);
    int64_t first = fs[0].id, second = fs[1].id;
    for (size_t i = 0; i < n; i++)
        trigger_fire_release(&fs[i]);
    lib_free(fs);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_trigger_fire_done(f->st, first, "job-1", NULL, T0 + 5, &e), &e);
    assert_err(store_trigger_fire_done(f->st, first, "job-2", NULL, T0 + 6, &e), ERR_CONFLICT, &e);
    assert_ok(store_trigger_fire_done(f->st, second, NULL, "no such service", T0 + 7, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_pending(f->st, t, 2,
                   "1 s3://up/other.txt bb\n0 s3://up/in/x.txt cc\n1 s3://up/in/x.txt cc\n");
    assert_ok(store_trigger_fires(f->st, t[0].id, 10, &fs, &n, &e), &e); /* newest first */
    assert_int_equal(n, 2);
    assert_string_equal(fs[0].sha256, "cc");
    assert_null(fs[0].target);
    assert_int_equal(fs[0].fired_at, 0);
    assert_int_equal(fs[1].id, first);
    assert_string_equal(fs[1].uri, "s3://up/in/x.txt");
    assert_string_equal(fs[1].target, "job-1");
    assert_null(fs[1].error);
    assert_int_equal(fs[1].fired_at, T0 + 5);
    for (size_t i = 0; i < n; i++)
        trigger_fire_release(&fs[i]);
    lib_free(fs);
    assert_ok(store_trigger_fires(f->st, t[1].id, 10, &fs, &n, &e), &e);
    assert_int_equal(n, 3);
    assert_int_equal(fs[2].id, second);
    assert_null(fs[2].target);
    assert_string_equal(fs[2].error, "no such service");
    for (size_t i = 0; i < n; i++)
        trigger_fire_release(&fs[i]);
    lib_free(fs);

    /* their events: the trigger's owner's (and an admin's), not another client's */
    json_t *evs = json_array();
    struct event_filter flt = {.after = 0, .kind = EVENT_TRIGGER, .limit = 10};
    assert_ok(store_event_list(f->st, &flt, collect_fire_events, evs, &e), &e);
    json_t *exp = json_pack("[{s:i, s:i, s:{s:s, s:s, s:s}}, {s:i, s:i, s:{s:s, s:s, s:s}}]",
                            "kind", EVENT_TRIGGER, "state", TRIGGER_FIRED, "data", "uri",
                            "s3://up/in/x.txt", "sha256", "aa", "job", "job-1", "kind",
                            EVENT_TRIGGER, "state", TRIGGER_FAILED, "data", "uri",
                            "s3://up/in/x.txt", "sha256", "aa", "error", "no such service");
    assert_true(json_equal(evs, exp));
    json_decref(exp);
    json_array_clear(evs);
    flt.owner = "alice";
    assert_ok(store_event_list(f->st, &flt, collect_fire_events, evs, &e), &e);
    assert_int_equal(json_array_size(evs), 1);
    json_array_clear(evs);
    flt.owner = "carol";
    assert_ok(store_event_list(f->st, &flt, collect_fire_events, evs, &e), &e);
    assert_int_equal(json_array_size(evs), 0);
    json_decref(evs);

    /* deleted: with its fires, pending ones too, which can no longer be done */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_trigger_delete(f->st, t[0].id, "alice", &e), &e);
    assert_err(store_trigger_delete(f->st, t[0].id, "alice", &e), ERR_NOTFOUND, &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_err(store_trigger_get(f->st, t[0].id, &got, &e), ERR_NOTFOUND, &e);
    assert_pending(f->st, t, 2, "1 s3://up/other.txt bb\n1 s3://up/in/x.txt cc\n");
    assert_ok(store_trigger_fires(f->st, t[0].id, 10, &fs, &n, &e), &e);
    assert_int_equal(n, 0);
    lib_free(fs);
    object_created(f->st, "up", "in/z.txt", "ff"); /* bob's only now */
    assert_pending(f->st, t, 2,
                   "1 s3://up/other.txt bb\n1 s3://up/in/x.txt cc\n1 s3://up/in/z.txt ff\n");
}

/*
 * Schedules: stored with their expression and overlap; an object matches no schedule (its
 * prefix is empty); a fire per time, once; pruning keeps the newest fires and the newest
 * that submitted a run, which last_target finds past the skipped ones; events carry "time".
 */
static void test_schedules(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct trigger_rec s, up, got;
    memset(&s, 0, sizeof(s));
    uuid7_new(s.id);
    s.owner = "alice";
    s.prefix = "";
    s.template_ = "{\"command\":{\"program\":\"a\"}}";
    s.created_at = T0;
    s.schedule = "*/5 * * * *";
    s.skip_overlap = true;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_trigger_insert(f->st, &s, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    insert_trigger(f->st, &up, "bob", "s3://up/", false, NULL, T0 + 1);
    assert_ok(store_trigger_get(f->st, s.id, &got, &e), &e);
    assert_string_equal(got.schedule, "*/5 * * * *");
    assert_true(got.skip_overlap);
    assert_string_equal(got.prefix, "");
    trigger_rec_release(&got);
    assert_ok(store_trigger_get(f->st, up.id, &got, &e), &e);
    assert_null(got.schedule);
    assert_false(got.skip_overlap);
    trigger_rec_release(&got);

    struct trigger_rec both[2] = {s, up};
    object_created(f->st, "up", "x", "aa"); /* the upload trigger's only */
    assert_pending(f->st, both, 2, "1 s3://up/x aa\n");
    /* a schedule's fire per time, once */
    static const char *const times[] = {"2026-01-01T00:00:00.000Z", "2026-01-01T00:05:00.000Z",
                                        "2026-01-01T00:10:00.000Z", "2026-01-01T00:15:00.000Z",
                                        "2026-01-01T00:20:00.000Z"};
    int added;
    int64_t ids[5];
    for (int i = 0; i < 5; i++) {
        assert_ok(store_begin(f->st, &e), &e);
        assert_ok(store_trigger_fire_add(f->st, s.id, times[i], "", T0 + i, &added, &e), &e);
        assert_int_equal(added, 1);
        assert_ok(store_trigger_fire_add(f->st, s.id, times[i], "", T0 + i, &added, &e), &e);
        assert_int_equal(added, 0);
        assert_ok(store_commit(f->st, &e), &e);
        struct trigger_fire *fs;
        size_t n;
        assert_ok(store_trigger_fires(f->st, s.id, 1, &fs, &n, &e), &e);
        assert_int_equal(n, 1);
        assert_string_equal(fs[0].uri, times[i]);
        assert_string_equal(fs[0].sha256, "");
        ids[i] = fs[0].id;
        trigger_fire_release(&fs[0]);
        lib_free(fs);
        /* the first submits a run, the others are skipped */
        assert_ok(store_begin(f->st, &e), &e);
        assert_ok(store_trigger_fire_done(f->st, ids[i], i ? NULL : "job-1", i ? "skipped" : NULL,
                                          T0 + 10 + i, &e),
                  &e);
        assert_ok(store_commit(f->st, &e), &e);
    }
    char *target = NULL;
    assert_ok(store_trigger_last_target(f->st, s.id, ids[4], &target, &e), &e);
    assert_string_equal(target, "job-1");
    lib_free(target);
    assert_ok(store_trigger_last_target(f->st, s.id, ids[0], &target, &e), &e);
    assert_null(target); /* none before the first */
    /* pruned to the newest 2, and the run: ids[0], ids[3], ids[4] */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_trigger_fires_prune(f->st, s.id, 2, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    struct trigger_fire *fs;
    size_t n;
    assert_ok(store_trigger_fires(f->st, s.id, 10, &fs, &n, &e), &e);
    assert_int_equal(n, 3);
    assert_int_equal(fs[0].id, ids[4]);
    assert_int_equal(fs[1].id, ids[3]);
    assert_int_equal(fs[2].id, ids[0]);
    for (size_t i = 0; i < n; i++)
        trigger_fire_release(&fs[i]);
    lib_free(fs);
    assert_ok(store_trigger_last_target(f->st, s.id, ids[4] + 1, &target, &e), &e);
    assert_string_equal(target, "job-1");
    lib_free(target);
    /* a pending fire is never pruned */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_trigger_fire_add(f->st, s.id, "2026-01-01T00:25:00.000Z", "", T0, &added, &e),
              &e);
    assert_ok(store_trigger_fires_prune(f->st, s.id, 1, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_trigger_fires(f->st, s.id, 10, &fs, &n, &e), &e);
    assert_int_equal(n, 2); /* the pending one and the run */
    assert_string_equal(fs[0].uri, "2026-01-01T00:25:00.000Z");
    assert_int_equal(fs[1].id, ids[0]);
    for (size_t i = 0; i < n; i++)
        trigger_fire_release(&fs[i]);
    lib_free(fs);
    /* its events have the time, not an object */
    json_t *evs = json_array();
    struct event_filter flt = {.after = 0, .kind = EVENT_TRIGGER, .limit = 10, .owner = "alice"};
    assert_ok(store_event_list(f->st, &flt, collect_fire_events, evs, &e), &e);
    assert_int_equal(json_array_size(evs), 5);
    json_t *exp = json_pack("{s:i, s:i, s:{s:s, s:s}}", "kind", EVENT_TRIGGER, "state",
                            TRIGGER_FIRED, "data", "time", times[0], "job", "job-1");
    assert_true(json_equal(json_array_get(evs, 0), exp));
    json_decref(exp);
    json_decref(evs);

    /* paused: its pending fire is not listed for submission; resumed: it is, and when */
    bool changed = false;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_trigger_pause(f->st, s.id, true, T0 + 100, "alice", &changed, &e), &e);
    assert_true(changed);
    assert_ok(store_trigger_pause(f->st, s.id, true, T0 + 101, "alice", &changed, &e), &e);
    assert_false(changed); /* paused already: since T0 + 100 */
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_trigger_get(f->st, s.id, &got, &e), &e);
    assert_int_equal(got.paused_at, T0 + 100);
    assert_int_equal(got.resumed_at, 0);
    trigger_rec_release(&got);
    assert_pending(f->st, both, 2, "1 s3://up/x aa\n"); /* the upload trigger's only */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_trigger_pause(f->st, s.id, false, T0 + 200, "alice", &changed, &e), &e);
    assert_true(changed);
    assert_ok(store_trigger_pause(f->st, s.id, false, T0 + 201, "alice", &changed, &e), &e);
    assert_false(changed);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_trigger_get(f->st, s.id, &got, &e), &e);
    assert_int_equal(got.paused_at, 0);
    assert_int_equal(got.resumed_at, T0 + 200);
    trigger_rec_release(&got);
    assert_pending(f->st, both, 2, "1 s3://up/x aa\n0 2026-01-01T00:25:00.000Z \n");
}

/* store_trigger_update: what a PUT changes, kept the rest; every change of a trigger an event. */
static void test_trigger_update(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct trigger_rec s, u, got;
    memset(&s, 0, sizeof(s));
    uuid7_new(s.id);
    s.owner = "alice";
    s.prefix = "";
    s.template_ = "{\"command\":{\"program\":\"a\"}}";
    s.created_at = T0;
    s.schedule = "*/5 * * * *";
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_trigger_insert(f->st, &s, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    insert_trigger(f->st, &u, "bob", "s3://up/", false, NULL, T0 + 1);

    struct trigger_rec c = s;
    c.owner = "mallory"; /* not changed by an update */
    c.created_at = 1;
    c.template_ = "{\"command\":{\"program\":\"b\"}}";
    c.schedule = "0 * * * *";
    c.timezone = "Europe/Paris";
    c.skip_overlap = true;
    c.updated_at = T0 + 50;
    bool changed;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_trigger_pause(f->st, s.id, true, T0 + 10, "alice", &changed, &e), &e);
    assert_ok(store_trigger_update(f->st, &c, "admin", &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_trigger_get(f->st, s.id, &got, &e), &e);
    assert_string_equal(got.owner, "alice");
    assert_int_equal(got.created_at, T0);
    assert_string_equal(got.template_, "{\"command\":{\"program\":\"b\"}}");
    assert_string_equal(got.schedule, "0 * * * *");
    assert_string_equal(got.timezone, "Europe/Paris");
    assert_true(got.skip_overlap);
    assert_int_equal(got.updated_at, T0 + 50);
    assert_int_equal(got.paused_at, T0 + 10); /* still paused */
    trigger_rec_release(&got);
    assert_ok(store_trigger_get(f->st, u.id, &got, &e), &e);
    assert_int_equal(got.updated_at, 0); /* never changed */
    trigger_rec_release(&got);
    struct trigger_rec none = c;
    uuid7_new(none.id);
    assert_ok(store_begin(f->st, &e), &e);
    assert_err(store_trigger_update(f->st, &none, "admin", &e), ERR_NOTFOUND, &e);
    assert_ok(store_trigger_pause(f->st, s.id, false, T0 + 60, "alice", &changed, &e), &e);
    assert_ok(store_trigger_delete(f->st, s.id, "carol", &e), &e);
    assert_ok(store_commit(f->st, &e), &e);

    /* the changes' events: the trigger's owner's, with who made each */
    json_t *evs = json_array();
    struct event_filter flt = {.after = 0, .kind = EVENT_TRIGGER, .limit = 10, .owner = "alice"};
    assert_ok(store_event_list(f->st, &flt, collect_events, evs, &e), &e);
    json_t *exp = json_pack(
        "[{s:i, s:i, s:{s:s}}, {s:i, s:i, s:{s:s}}, {s:i, s:i, s:{s:s}}, {s:i, s:i, s:{s:s}},"
        " {s:i, s:i, s:{s:s}}]",
        "kind", EVENT_TRIGGER, "state", TRIGGER_CREATED, "data", "by", "alice", "kind",
        EVENT_TRIGGER, "state", TRIGGER_PAUSED, "data", "by", "alice", "kind", EVENT_TRIGGER,
        "state", TRIGGER_UPDATED, "data", "by", "admin", "kind", EVENT_TRIGGER, "state",
        TRIGGER_RESUMED, "data", "by", "alice", "kind", EVENT_TRIGGER, "state", TRIGGER_DELETED,
        "data", "by", "carol");
    assert_true(json_equal(evs, exp));
    json_decref(exp);
    json_array_clear(evs);
    flt.owner = "bob";
    assert_ok(store_event_list(f->st, &flt, collect_events, evs, &e), &e);
    assert_int_equal(json_array_size(evs), 1); /* his trigger's creation */
    json_decref(evs);
}

/* --- main ---------------------------------------------------------------------------------- */

/* --- job arrays ------------------------------------------------------------------------------ */

/* An array of `count` tasks (items: a JSON array text of strings, or NULL) from a spec text. */
static void make_array(struct array_rec *a, int64_t count, const char *items, int64_t now)
{
    memset(a, 0, sizeof(*a));
    struct job tmpl;
    make_job(&tmpl, now, "{'queue': 'q', 'name': 'arr', 'retry': {'max_attempts': 2}, "
                         "'command': {'program': 'echo', 'arguments': "
                         "[{'type': 'parameter', 'value': 'x'}]}}");
    uuid7_new(a->id);
    a->owner = xstrdup("alice");
    a->tenant = xstrdup("t1");
    a->queue = xstrdup("q");
    a->name = xstrdup("arr");
    a->kind = items ? ARRAY_ITEMS : ARRAY_COUNT;
    a->count = count;
    a->skips = json_array();
    a->spec = json_incref(tmpl.spec);
    /* the argument's value as a template */
    json_object_set_new(json_array_get(json_object_get(json_object_get(a->spec, "command"),
                                                       "arguments"),
                                       0),
                        "value", json_string("i={{index}} item={{item}}"));
    a->created_at = now;
    a->run_after = now;
    a->items = items ? json_loads(items, 0, NULL) : NULL;
    job_release(&tmpl);
}

/* Leases the next task of array `id` for agent w: its index (-1: none left). */
static int64_t lease_task(struct store *st, const char *id, int64_t now, char job_out[UUID_STR_LEN])
{
    struct err e = ERR_INIT;
    struct store_lease c = {0};
    memcpy(c.array, id, UUID_STR_LEN);
    size_t n = 0;
    assert_ok(store_begin(st, &e), &e);
    assert_ok(store_job_lease(st, "w", now, &c, 1, &n, &e), &e);
    assert_ok(store_commit(st, &e), &e);
    if (c.exhausted) {
        assert_false(c.leased);
        assert_int_equal(n, 0);
        return -1;
    }
    assert_true(c.leased);
    assert_int_equal(n, 1);
    assert_int_equal(c.attempt, 1);
    json_t *spec = json_loads(c.spec, 0, NULL);
    assert_non_null(spec);
    lib_free(c.spec);
    json_t *env = json_object_get(json_object_get(spec, "command"), "env");
    assert_string_equal(json_string_value(json_object_get(env, "DROVER_ARRAY_ID")), id);
    int64_t index = strtoll(json_string_value(json_object_get(env, "DROVER_ARRAY_INDEX")), NULL,
                            10);
    char want[UUID_STR_LEN];
    array_task_id(id, index, want);
    assert_string_equal(c.job, want);
    assert_int_equal(array_task_index(c.job), index); /* the id holds its index */
    assert_int_equal(array_task_index(id), -1);       /* an array's own id is no task's */
    if (job_out) memcpy(job_out, c.job, UUID_STR_LEN);
    json_decref(spec);
    return index;
}

static void assert_counts(struct store *st, const char *id, int64_t queued, int64_t leased,
                          int64_t cancelled, int64_t failed)
{
    struct err e = ERR_INIT;
    struct array_rec a;
    int64_t c[JOB_NSTATES];
    assert_ok(store_array_get(st, id, &a, &e), &e);
    assert_ok(store_array_counts(st, &a, c, &e), &e);
    assert_int_equal(c[JOB_QUEUED], queued);
    assert_int_equal(c[JOB_LEASED], leased);
    assert_int_equal(c[JOB_CANCELLED], cancelled);
    assert_int_equal(c[JOB_FAILED], failed);
    int64_t total = 0;
    for (int s = 0; s < JOB_NSTATES; s++)
        total += c[s];
    assert_int_equal(total, a.count);
    array_rec_release(&a);
}

static int keep_count(void *arg, struct job *j)
{
    (*(int *)arg)++;
    job_release(j);
    return 0;
}

struct seen_tasks {
    int64_t index[64];
    int state[64];
    bool has_job[64];
    int n;
};

static int seen_task(void *arg, int64_t index, int state, const struct job *j)
{
    struct seen_tasks *s = arg;
    assert_true(s->n < 64);
    s->index[s->n] = index;
    s->state[s->n] = state;
    s->has_job[s->n++] = j != NULL;
    return 0;
}

/* A million tasks are one row; leases claim indices in order; ranges cancel and retry. */
static void test_arrays(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct array_rec a;
    make_array(&a, 1000000, NULL, T0);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_array_insert(f->st, &a, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_counts(f->st, a.id, 1000000, 0, 0, 0);
    int64_t queued = 0;
    assert_ok(store_tenant_waiting(f->st, "t1", &queued, &e), &e);
    assert_int_equal(queued, 1000000); /* its tasks count as the tenant's queued jobs */
    struct job_list jl;
    struct job_filter flt = filter_any();
    assert_ok(store_job_list(f->st, &flt, &jl, &e), &e);
    assert_int_equal(jl.n, 0); /* no job until a task is claimed */
    job_list_release(&jl);

    char job0[UUID_STR_LEN];
    assert_int_equal(lease_task(f->st, a.id, T0 + 1, job0), 0);
    assert_int_equal(lease_task(f->st, a.id, T0 + 2, NULL), 1);
    assert_counts(f->st, a.id, 999998, 2, 0, 0);
    struct job j;
    assert_ok(store_job_get(f->st, job0, &j, &e), &e);
    assert_string_equal(j.name, "arr[0]");
    assert_string_equal(j.owner, "alice");
    assert_string_equal(j.tenant, "t1");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(json_object_get(j.spec, "command"),
                                                           "arguments"),
                                           0),
                            "value")),
                        "i=0 item=");
    job_release(&j);

    /* cancel 5..9 (not claimed yet) and 1 (leased): 6 tasks */
    int changed = 0;
    int64_t n = 0;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_array_cancel(f->st, a.id, 5, 9, T0 + 3, keep_count, &changed, &n, &e), &e);
    assert_int_equal(n, 5);
    assert_int_equal(changed, 0);
    assert_ok(store_array_cancel(f->st, a.id, 1, 1, T0 + 3, keep_count, &changed, &n, &e), &e);
    assert_int_equal(n, 1);
    assert_int_equal(changed, 1);
    assert_ok(store_commit(f->st, &e), &e);
    assert_counts(f->st, a.id, 999998 - 5, 1, 6, 0);
    assert_ok(store_tenant_waiting(f->st, "t1", &queued, &e), &e);
    assert_int_equal(queued, 999998 - 5); /* not the leased task 0 */
    /* the cursor skips what was cancelled */
    assert_int_equal(lease_task(f->st, a.id, T0 + 4, NULL), 2);
    assert_int_equal(lease_task(f->st, a.id, T0 + 4, NULL), 3);
    assert_int_equal(lease_task(f->st, a.id, T0 + 4, NULL), 4);
    assert_int_equal(lease_task(f->st, a.id, T0 + 4, NULL), 10);

    struct array_rec got;
    assert_ok(store_array_get(f->st, a.id, &got, &e), &e);
    struct seen_tasks seen = {0};
    assert_ok(store_array_tasks(f->st, &got, 0, 12, -1, 64, seen_task, &seen, &e), &e);
    assert_int_equal(seen.n, 13);
    for (int i = 0; i < 13; i++)
        assert_int_equal(seen.index[i], i);
    assert_int_equal(seen.state[1], JOB_CANCELLED);
    assert_true(seen.has_job[1]);
    assert_int_equal(seen.state[7], JOB_CANCELLED);
    assert_false(seen.has_job[7]);
    assert_int_equal(seen.state[10], JOB_LEASED);
    assert_int_equal(seen.state[11], JOB_QUEUED);
    assert_false(seen.has_job[11]);
    memset(&seen, 0, sizeof(seen));
    assert_ok(store_array_tasks(f->st, &got, 0, 999999, JOB_CANCELLED, 3, seen_task, &seen, &e),
              &e);
    assert_int_equal(seen.n, 3); /* the limit */
    assert_int_equal(seen.index[0], 1);
    assert_int_equal(seen.index[2], 6);
    array_rec_release(&got);

    /* retry 0..7: the leased ones stay; 1 is queued again, 5..7 (skipped) get their jobs */
    changed = 0;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_array_retry(f->st, a.id, 0, 7, T0 + 5, keep_count, &changed, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(n, 4);
    assert_int_equal(changed, 4);
    assert_counts(f->st, a.id, 999998 - 5 - 4 + 4, 5, 2, 0); /* leased: 0, 2, 3, 4, 10 */
    char id6[UUID_STR_LEN];
    array_task_id(a.id, 6, id6);
    assert_ok(store_job_get(f->st, id6, &j, &e), &e);
    assert_int_equal(j.state, JOB_QUEUED);
    job_release(&j);
    array_rec_release(&a);
}

/* Retention deletes tasks' jobs: each takes its task's row along, and the last one (none
   may still be claimed) takes the array and its items. */
static void test_array_goes_with_its_last_task(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct array_rec a, got;
    make_array(&a, 3, "[\"x\", \"y\", \"z\"]", T0);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_array_insert(f->st, &a, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    char job0[UUID_STR_LEN], job1[UUID_STR_LEN];
    assert_int_equal(lease_task(f->st, a.id, T0 + 1, job0), 0);
    assert_int_equal(lease_task(f->st, a.id, T0 + 1, job1), 1);
    int changed = 0;
    int64_t n = 0;
    assert_ok(store_begin(f->st, &e), &e); /* 0 and 1 end; 2, never claimed, is skipped */
    assert_ok(store_array_cancel(f->st, a.id, 0, 2, T0 + 2, keep_count, &changed, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(changed, 2);

    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_delete(f->st, job0, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_array_get(f->st, a.id, &got, &e), &e); /* task 1's job is still there */
    array_rec_release(&got);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_delete(f->st, job1, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_err(store_array_get(f->st, a.id, &got, &e), ERR_NOTFOUND, &e);
    if (sqlite_exists(f)) { /* no row of it is left behind */
        char *left = sqlite_value(f, "SELECT (SELECT count(*) FROM array_items) + "
                                     "(SELECT count(*) FROM array_tasks)");
        assert_string_equal(left, "0");
        lib_free(left);
    }

    /* an array that may still hand out tasks stays when its claimed ones' jobs go */
    struct array_rec b;
    make_array(&b, 2, NULL, T0);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_array_insert(f->st, &b, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    char match[2][UUID_STR_LEN]; /* found by a prefix of its id */
    char prefix[UUID_STR_LEN - 4];
    snprintf(prefix, sizeof(prefix), "%.*s", (int)sizeof(prefix) - 1, b.id);
    size_t found;
    assert_ok(store_id_match(f->st, STORE_ARRAY, prefix, NULL, match, 2, &found, &e), &e);
    assert_int_equal(found, 1);
    assert_string_equal(match[0], b.id);
    assert_int_equal(lease_task(f->st, b.id, T0 + 1, job0), 0);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_array_cancel(f->st, b.id, 0, 0, T0 + 2, keep_count, &changed, &n, &e), &e);
    assert_ok(store_job_delete(f->st, job0, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_ok(store_array_get(f->st, b.id, &got, &e), &e);
    assert_int_equal(array_claimable(&got), 1);
    array_rec_release(&got);
    array_rec_release(&a);
    array_rec_release(&b);
}

/* The last task claimed, the array has nothing left: exhausted, not leased. Items reach env. */
static void test_array_items_and_end(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct array_rec a;
    make_array(&a, 2, "[\"s3://b/one\", \"{\\\"k\\\":1}\"]", T0);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_array_insert(f->st, &a, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    char id[UUID_STR_LEN];
    assert_int_equal(lease_task(f->st, a.id, T0 + 1, id), 0);
    struct job j;
    assert_ok(store_job_get(f->st, id, &j, &e), &e);
    json_t *cmd = json_object_get(j.spec, "command");
    assert_string_equal(json_string_value(json_object_get(json_object_get(cmd, "env"),
                                                          "DROVER_ARRAY_ITEM")),
                        "s3://b/one");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(cmd, "arguments"), 0), "value")),
                        "i=0 item=s3://b/one");
    job_release(&j);
    assert_int_equal(lease_task(f->st, a.id, T0 + 1, id), 1);
    assert_ok(store_job_get(f->st, id, &j, &e), &e);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(j.spec, "command"), "env"),
                            "DROVER_ARRAY_ITEM")),
                        "{\"k\":1}");
    job_release(&j);
    assert_int_equal(lease_task(f->st, a.id, T0 + 1, NULL), -1);
    /* a lease mixing a job with an exhausted array leases the job */
    struct job plain;
    make_simple(&plain, T0, "q");
    insert_jobs(f->st, &plain, 1);
    struct store_lease c[2] = {0};
    memcpy(c[0].array, a.id, UUID_STR_LEN);
    memcpy(c[1].job, plain.id, UUID_STR_LEN);
    size_t n = 0;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_lease(f->st, "w", T0 + 2, c, 2, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(n, 1);
    assert_true(c[0].exhausted);
    assert_false(c[0].leased);
    assert_true(c[1].leased);
    lib_free(c[1].spec);
    job_release(&plain);
    /* unknown arrays */
    char unknown[UUID_STR_LEN];
    uuid7_new(unknown);
    struct array_rec got;
    assert_err(store_array_get(f->st, unknown, &got, &e), ERR_NOTFOUND, &e);
    /* the list: newest first, by owner */
    struct array_rec b;
    make_array(&b, 3, NULL, T0 + 1);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_array_insert(f->st, &b, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    struct array_rec *list;
    size_t ln;
    assert_ok(store_array_list(f->st, "alice", NULL, 10, &list, &ln, &e), &e);
    assert_int_equal(ln, 2);
    assert_string_equal(list[0].id, b.id);
    assert_string_equal(list[1].id, a.id);
    assert_int_equal(list[1].next_index, 2);
    for (size_t i = 0; i < ln; i++)
        array_rec_release(&list[i]);
    lib_free(list);
    assert_ok(store_array_list(f->st, "bob", NULL, 10, &list, &ln, &e), &e);
    assert_int_equal(ln, 0);
    lib_free(list);
    /* a second handle claims where the first left off (PostgreSQL: the row is locked) */
    assert_ok(store_open(f->uri, NULL, &f->st2, &e), &e);
    assert_int_equal(lease_task(f->st, b.id, T0 + 2, NULL), 0);
    assert_int_equal(lease_task(f->st2, b.id, T0 + 2, NULL), 1);
    assert_int_equal(lease_task(f->st, b.id, T0 + 2, NULL), 2);
    assert_int_equal(lease_task(f->st2, b.id, T0 + 2, NULL), -1);
    array_rec_release(&a);
    array_rec_release(&b);
}

/* The subjects of the job events listed, in order, against the ids expected. */
struct ev_order {
    struct job *jobs;
    size_t n, seen;
    int64_t last_seq;
};

static int check_event_order(void *arg, const struct event_rec *ev)
{
    struct ev_order *o = arg;
    if (o->seen >= o->n)
        fail_msg("event %lld beyond the %zu expected", (long long)ev->seq, o->n);
    const struct job *j = &o->jobs[o->seen++];
    assert_int_equal(ev->kind, EVENT_JOB);
    assert_string_equal(ev->subject, j->id);
    assert_string_equal(ev->queue, j->queue);
    assert_int_equal(ev->state, JOB_QUEUED);
    assert_true(ev->seq > o->last_seq);
    o->last_seq = ev->seq;
    return 0;
}

/*
 * store_job_insert_many: a batch written as store_job_insert writes each job, in order --
 * the rows, one event per job with seqs in the batch's order, a keyed job's conflict naming
 * its key, a webhook's outbox row naming its own event -- and a failure in the middle of a
 * batch (of a keyed job, or of a row among many) leaves nothing of it once rolled back.
 */
static void test_insert_many(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    enum { N = 150, KEYED = 10, HOOKED = 70, KEYED2 = 71 };
    struct job *jobs = xcalloc(N, sizeof(*jobs));
    struct job *ptrs[N];
    for (size_t i = 0; i < N; i++) {
        if (i == KEYED || i == KEYED2)
            make_job(&jobs[i], T0, "{'queue': 'q%zu', 'key': 'k%zu', 'command': {'program': 'a'}}",
                     i % 3, i);
        else if (i == HOOKED)
            make_job(&jobs[i], T0, "{'notify_url': 'http://127.0.0.1:9/h', 'notify': 'all', "
                                   "'command': {'program': 'h'}}");
        else
            make_job(&jobs[i], T0, "{'queue': 'q%zu', 'labels': {'i': '%zu'}, "
                                   "'command': {'program': 'p'}}", i % 3, i);
        jobs[i].owner = xstrdup(i % 2 ? "alice" : "bob");
        jobs[i].tenant = xstrdup("t");
        ptrs[i] = &jobs[i];
    }
    char *shared = job_json_dump(jobs[0].spec); /* the text of a spec, as a caller shares it */
    jobs[0].spec_text = shared;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_insert_many(f->st, ptrs, N, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    jobs[0].spec_text = NULL;
    lib_free(shared);

    for (size_t i = 0; i < N; i++) {
        struct job got;
        assert_ok(store_job_get(f->st, jobs[i].id, &got, &e), &e);
        assert_job_equal(&jobs[i], &got);
        job_release(&got);
    }
    struct job got;
    assert_ok(store_job_get_by_key(f->st, "alice", "k71", &got, &e), &e);
    assert_string_equal(got.id, jobs[KEYED2].id);
    job_release(&got);
    struct ev_order o = {.jobs = jobs, .n = N};
    struct event_filter flt = {.after = 0, .kind = -1, .limit = 1000};
    assert_ok(store_event_list(f->st, &flt, check_event_order, &o, &e), &e);
    assert_int_equal(o.seen, N);
    struct hook_seen h;
    hooks_due(f->st, time_now_ms() + 60000, 8, &h);
    assert_int_equal(h.n, 1); /* notify all: its queued state too */
    assert_string_equal(h.url[0], "http://127.0.0.1:9/h");
    const char *const hooked[] = {jobs[HOOKED].id};
    struct ev_seen s = {0};
    flt = (struct event_filter){.after = 0, .kind = -1, .jobs = hooked, .njobs = 1, .limit = 10};
    list_events(f->st, &flt, &s);
    assert_int_equal(s.n, 1);
    assert_int_equal(h.seq[0], s.seq[0]); /* the outbox row names the webhook job's event */
    ev_seen_release(&s);
    int64_t first, last;
    assert_ok(store_event_window(f->st, &first, &last, &e), &e);
    assert_int_equal(last, o.last_seq);

    /* a taken key in the middle: ERR_CONFLICT naming it; the savepoint leaves nothing */
    struct job *more = xcalloc(N, sizeof(*more));
    struct job *mptrs[N];
    for (size_t i = 0; i < N; i++) {
        if (i == 100)
            make_job(&more[i], T0, "{'key': 'k10', 'command': {'program': 'a'}}");
        else
            make_simple(&more[i], T0, "q9");
        more[i].owner = xstrdup("bob");
        mptrs[i] = &more[i];
    }
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_savepoint(f->st, &e), &e);
    assert_err(store_job_insert_many(f->st, mptrs, N, &e), ERR_CONFLICT, &e);
    assert_non_null(strstr(e.msg, "k10"));
    store_savepoint_rollback(f->st);
    assert_ok(store_commit(f->st, &e), &e);
    /* a row that cannot go in among many (its id taken): the same */
    job_release(&more[100]);
    make_simple(&more[100], T0, "q9");
    memcpy(more[100].id, jobs[5].id, sizeof(more[100].id));
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_savepoint(f->st, &e), &e);
    assert_err(store_job_insert_many(f->st, mptrs, N, &e), ERR_CONFLICT, &e);
    store_savepoint_rollback(f->st);
    assert_ok(store_commit(f->st, &e), &e);
    for (size_t i = 0; i < N; i++)
        if (i != 100)
            assert_err(store_job_get(f->st, more[i].id, &got, &e), ERR_NOTFOUND, &e);
    struct job_filter jf = filter_any();
    jf.queue = "q9";
    assert_list(f->st, &jf, NULL, 0);
    flt = (struct event_filter){.after = last, .kind = -1, .limit = 10};
    list_events(f->st, &flt, &s);
    assert_int_equal(s.n, 0); /* no event of either batch */

    release_jobs(more, N);
    lib_free(more);
    release_jobs(jobs, N);
    lib_free(jobs);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_open, teardown)
#define T_EMPTY(fn) cmocka_unit_test_setup_teardown(fn, setup_empty, teardown)

/* Ends task `id` (leased to "w" at attempt `attempt`) with exit `code` and, when given, one
   output (uri, sha256). */
static void finish_task(struct store *st, const char *id, int attempt, int code, const char *uri,
                        const char *sha)
{
    struct err e = ERR_INIT;
    json_t *outs = json_array();
    if (uri)
        json_array_append_new(outs, json_pack("{s:s, s:i, s:s}", "uri", uri, "size", 1, "sha256",
                                              sha));
    struct attempt_end end = {.reason = "exit", .has_exit_code = true, .exit_code = code,
                              .duration_ms = 1, .outputs = outs};
    struct job_event_args fin = {.now_ms = T0 + 20, .end = &end};
    struct job out;
    assert_ok(store_begin(st, &e), &e);
    assert_ok(store_job_apply(st, id, attempt, "w", true, JOB_EV_FINISH, &fin, &out, &e), &e);
    assert_ok(store_commit(st, &e), &e);
    job_release(&out);
    json_decref(outs);
}

/* Input argument k of job id's spec: its value and sha256. */
static void assert_input(struct store *st, const char *id, size_t k, const char *value,
                         const char *sha)
{
    struct job j;
    struct err e = ERR_INIT;
    assert_ok(store_job_get(st, id, &j, &e), &e);
    json_t *a = json_array_get(json_object_get(json_object_get(j.spec, "command"), "arguments"), k);
    assert_string_equal(json_string_value(json_object_get(a, "type")), "input");
    assert_string_equal(json_string_value(json_object_get(a, "value")), value);
    assert_string_equal(json_string_value(json_object_get(a, "sha256")), sha);
    job_release(&j);
}

/*
 * A fan-out node in the store: its array made when its upstream succeeds (one task per object
 * under the prefix, each pinned), its job settled when the last task ends (failed: what needs
 * it is cancelled), the workflow's retry reruns only the failed task, then the fan-in gives
 * the reduce one input per task; cancelling a fan-out node cancels its tasks.
 */
static void test_workflow_fanout(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    struct workflow w;
    struct workflow_rec rec;
    struct job jobs[3];
    char (*ids)[UUID_STR_LEN];
    store_changed_take(&ids);
    lib_free(ids);
    store_wf(f->st,
             "{'nodes': {"
             "'S': {'job': {'command': {'program': 's'}}},"
             "'M': {'job': {'retry': {'max_attempts': 1}, 'array': {'outputs': 'S', 'prefix': 's3://wf/p/'},"
             "  'command': {'program': 'm', 'arguments': [{'type': 'input', 'value': '{{item}}'},"
             "  {'type': 'output', 'name': 'out', 'value': 's3://wf/r/{{index}}'}]}}},"
             "'R': {'job': {'command': {'program': 'r', 'arguments': ["
             "  {'type': 'parameter', 'value': 'x'}, {'type': 'input', 'name': 'in'}]}}}},"
             "'connections': [{'from': 'M.out', 'to': 'R.in'}]}",
             &rec, jobs, &w);
    const char *m = jobs[workflow_node(&w, "M")].id;
    assert_int_equal(wf_state(f->st, &w, jobs, "M"), JOB_BLOCKED);
    struct array_rec a;
    assert_err(store_array_get(f->st, m, &a, &e), ERR_NOTFOUND, &e);

    /* S wrote three objects, two under the prefix: M's array has their two tasks */
    const char *sid = jobs[workflow_node(&w, "S")].id;
    struct store_lease c = {0};
    size_t n;
    snprintf(c.job, sizeof(c.job), "%s", sid);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_lease(f->st, "w1", T0 + 1, &c, 1, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    lib_free(c.spec);
    json_t *outs = json_pack("[{s:s, s:i, s:s}, {s:s, s:i, s:s}, {s:s, s:i, s:s}]", "uri",
                             "s3://wf/p/0", "size", 1, "sha256", "s0", "uri", "s3://wf/q", "size",
                             1, "sha256", "sq", "uri", "s3://wf/p/1", "size", 1, "sha256", "s1");
    struct attempt_end end = {.reason = "exit", .has_exit_code = true, .duration_ms = 1,
                              .outputs = outs};
    struct job_event_args fin = {.now_ms = T0 + 2, .end = &end};
    struct job out;
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_apply(f->st, sid, c.attempt, "w1", true, JOB_EV_FINISH, &fin, &out, &e),
              &e);
    assert_ok(store_commit(f->st, &e), &e);
    job_release(&out);
    json_decref(outs);
    assert_int_equal(wf_state(f->st, &w, jobs, "M"), JOB_BLOCKED); /* its tasks run */
    assert_ok(store_array_get(f->st, m, &a, &e), &e);
    assert_int_equal(a.count, 2);
    assert_int_equal(a.kind, ARRAY_OUTPUTS);
    assert_string_equal(a.source, "S");
    assert_null(json_object_get(a.spec, "array"));
    array_rec_release(&a);
    n = store_changed_take(&ids); /* the server adds the array's entry */
    assert_true(changed_has(ids, n, m));
    lib_free(ids);

    char t0[UUID_STR_LEN], t1[UUID_STR_LEN];
    assert_int_equal(lease_task(f->st, m, T0 + 3, t0), 0);
    assert_int_equal(lease_task(f->st, m, T0 + 3, t1), 1);
    assert_input(f->st, t0, 0, "s3://wf/p/0", "s0"); /* pinned: what S wrote */
    assert_input(f->st, t1, 0, "s3://wf/p/1", "s1");
    finish_task(f->st, t0, 1, 0, "s3://wf/r/0", "r0");
    assert_int_equal(wf_state(f->st, &w, jobs, "M"), JOB_BLOCKED);
    finish_task(f->st, t1, 1, 4, NULL, NULL);
    assert_int_equal(wf_state(f->st, &w, jobs, "M"), JOB_FAILED);
    assert_int_equal(wf_state(f->st, &w, jobs, "R"), JOB_CANCELLED);
    struct job mj;
    assert_ok(store_job_get(f->st, m, &mj, &e), &e);
    assert_string_equal(json_string_value(json_object_get(mj.result, "error")),
                        "1 of its 2 tasks failed");
    assert_int_equal(mj.attempt, 0); /* no agent ran it */
    job_release(&mj);

    /* retry: only the failed task runs again; its end settles M, and R gets both objects */
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_workflow_retry(f->st, &rec, T0 + 30, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(n, 2); /* M and R */
    assert_int_equal(wf_state(f->st, &w, jobs, "M"), JOB_BLOCKED);
    assert_int_equal(wf_state(f->st, &w, jobs, "R"), JOB_BLOCKED);
    struct job tj;
    assert_ok(store_job_get(f->st, t0, &tj, &e), &e);
    assert_int_equal(tj.state, JOB_SUCCEEDED); /* kept */
    job_release(&tj);
    assert_ok(store_job_get(f->st, t1, &tj, &e), &e);
    assert_int_equal(tj.state, JOB_QUEUED);
    job_release(&tj);
    n = store_changed_take(&ids);
    assert_true(changed_has(ids, n, t1));
    lib_free(ids);
    c = (struct store_lease){0};
    snprintf(c.job, sizeof(c.job), "%s", t1);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_job_lease(f->st, "w", T0 + 31, &c, 1, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    lib_free(c.spec);
    assert_int_equal(c.attempt, 2);
    finish_task(f->st, t1, 2, 0, "s3://wf/r/1", "r1");
    assert_int_equal(wf_state(f->st, &w, jobs, "M"), JOB_SUCCEEDED);
    assert_int_equal(wf_state(f->st, &w, jobs, "R"), JOB_QUEUED);
    const char *r = jobs[workflow_node(&w, "R")].id;
    assert_input(f->st, r, 1, "s3://wf/r/0", "r0"); /* in index order, in the port's place */
    assert_input(f->st, r, 2, "s3://wf/r/1", "r1");
    struct job rj;
    assert_ok(store_job_get(f->st, r, &rj, &e), &e);
    assert_int_equal(json_array_size(json_object_get(json_object_get(rj.spec, "command"),
                                                     "arguments")),
                     3);
    job_release(&rj);
    workflow_rec_release(&rec);
    release_jobs(jobs, w.n);
    workflow_release(&w);

    /* a count node without upstreams has its array at once; cancelling the workflow cancels
       its tasks, the leased one and the unclaimed ones */
    struct job cj[1];
    store_wf(f->st,
             "{'nodes': {'C': {'job': {'array': {'count': 3}, 'command': {'program': 'c'}}}}}",
             &rec, cj, &w);
    assert_int_equal(wf_state(f->st, &w, cj, "C"), JOB_BLOCKED);
    assert_ok(store_array_get(f->st, cj[0].id, &a, &e), &e);
    assert_int_equal(a.count, 3);
    array_rec_release(&a);
    assert_int_equal(lease_task(f->st, cj[0].id, T0 + 3, t0), 0);
    assert_ok(store_begin(f->st, &e), &e);
    assert_ok(store_workflow_cancel(f->st, &rec, T0 + 4, &n, &e), &e);
    assert_ok(store_commit(f->st, &e), &e);
    assert_int_equal(n, 1);
    assert_int_equal(wf_state(f->st, &w, cj, "C"), JOB_CANCELLED);
    assert_ok(store_job_get(f->st, t0, &tj, &e), &e);
    assert_int_equal(tj.state, JOB_CANCELLED);
    job_release(&tj);
    assert_counts(f->st, cj[0].id, 0, 0, 3, 0);
    n = store_changed_take(&ids);
    assert_true(changed_has(ids, n, t0));
    lib_free(ids);
    workflow_rec_release(&rec);
    release_jobs(cj, w.n);
    workflow_release(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T_EMPTY(test_open_creates_and_migrates),
        T_EMPTY(test_sqlite_migrates_from_15),
        T_EMPTY(test_open_sync_full),
        T_EMPTY(test_sqlite_checkpointer),
        T(test_reopen_keeps_data),
        T_EMPTY(test_open_bad_scheme),
        T_EMPTY(test_open_missing_folder),
        T_EMPTY(test_open_postgres_uri),
        T(test_insert_get_every_field),
        T(test_get_unknown),
        T(test_get_by_key),
        T(test_duplicate_key),
        T(test_insert_many),
        T(test_owners),
        T(test_rollback_discards),
        T(test_second_handle),
        T(test_list_newest_first),
        T(test_list_filters),
        T(test_list_name),
        T(test_list_agent),
        T(test_list_paging),
        T(test_cancel),
        T(test_apply),
        T(test_lease),
        T(test_lease_twice_in_one_call),
        T(test_lease_skips_locked),
        T(test_object_events),
        T(test_claim),
        T(test_queue_stats),
        T(test_queue_stats_kept),
        T_EMPTY(test_counts_migrate),
        T(test_tokens),
        T(test_sessions),
        T(test_agent_owner),
        T(test_meta),
        T(test_services),
        T(test_leader),
        T(test_agent_seen),
        T(test_agent_kept),
        T(test_agent_forget),
        T(test_listen),
        T(test_events),
        T(test_logs),
        T(test_prefetch),
        T(test_prefetch_spec),
        T(test_update_and_scan),
        T(test_retention),
        T(test_tenants),
        T(test_tenant_events),
        T(test_queue_pause),
        T(test_queue_limit),
        T(test_webhooks),
        T(test_workflows),
        T(test_workflow_events),
        T(test_workflow_keys),
        T(test_workflow_list),
        T(test_workflow_fan_in),
        T(test_workflow_deleted_with_its_last_job),
        T(test_triggers),
        T(test_schedules),
        T(test_trigger_update),
        T(test_arrays),
        T(test_array_items_and_end),
        T(test_array_goes_with_its_last_task),
        T(test_workflow_fanout),
        T_EMPTY(test_uri_redact),
    };
    int failed = 0;
    for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
        current = &backends[i];
#ifdef WITH_POSTGRES
        if (current->create == pg_create) {
            pg_admin_uri = getenv("DROVER_TEST_PG_URI");
            if (!pg_admin_uri || !*pg_admin_uri) {
                printf("[  SKIPPED ] postgres: DROVER_TEST_PG_URI is not set (scripts/test.sh "
                       "starts a server for it: scripts/pgtest.sh)\n");
                fflush(stdout);
                continue;
            }
            if (pg_split(pg_admin_uri)) {
                fprintf(stderr, "DROVER_TEST_PG_URI must be postgres://USER@HOST:PORT/DB\n");
                failed++;
                continue;
            }
        }
#endif
        failed += cmocka_run_group_tests_name(current->name, tests, NULL, NULL);
    }
    return failed ? 1 : 0;
}
