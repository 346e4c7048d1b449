/*
 * test_sqlite_walbuf.c - unit tests for store/sqlite_walbuf.c on real SQLite files in a
 * mkdtemp folder: every commit is in the WAL file when it returns (a second connection
 * through the default VFS reads it), with synchronous NORMAL and FULL; transactions larger
 * than what is gathered, that spill out of a small page cache, rewrite spilled pages and roll
 * back, leave a database SQLite finds whole; a process killed between commits loses none it
 * acknowledged. The backstop (the barrier's send) is never needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "agent/agent.h"
#include "store/sqlite_walbuf.h"
#include "tmpdir.h"

struct fixture {
    char dir[64];
    char path[96];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || !test_mkdtemp(f->dir, sizeof(f->dir), "drover-test-walbuf")) return -1;
    snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
    if (sqlite_walbuf_register() != SQLITE_OK) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    agent_remove_tree(f->dir);
    free(f);
    return 0;
}

static void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fail_msg("%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
}

static sqlite3 *open_db(const char *path, const char *vfs)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t one_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void assert_whole(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}

static sqlite3 *open_writer(const char *path, const char *sync)
{
    sqlite3 *db = open_db(path, SQLITE_WALBUF_VFS);
    char sql[160];
    snprintf(sql, sizeof(sql), "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s;", sync);
    exec(db, sql);
    exec(db, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB, n INTEGER)");
    return db;
}

static void insert(sqlite3 *db, int64_t id, int size)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t VALUES (?, zeroblob(?), ?)", -1, &st,
                                        NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, size);
    sqlite3_bind_int64(st, 3, id);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* Each commit, read through another connection on the default VFS right after it returns. */
static void commits_visible(const char *path, const char *sync)
{
    uint64_t c0, b0, c1, b1;
    sqlite_walbuf_counts(&c0, &b0);
    sqlite3 *w = open_writer(path, sync);
    sqlite3 *r = open_db(path, NULL);
    for (int i = 1; i <= 300; i++) {
        exec(w, "BEGIN");
        insert(w, i, 1000 + 37 * i); /* frames of several pages, a few per commit */
        exec(w, "COMMIT");
        assert_int_equal(one_int(r, "SELECT count(*) FROM t"), i);
        assert_int_equal(one_int(r, "SELECT max(n) FROM t"), i);
    }
    assert_whole(r);
    sqlite3_close(r);
    sqlite3_close(w);
    sqlite_walbuf_counts(&c1, &b1);
    assert_true(c1 - c0 >= 300); /* the CREATE TABLE's too */
    assert_int_equal(b1, b0);
}

static void test_commits_visible_normal(void **state)
{
    struct fixture *f = *state;
    commits_visible(f->path, "NORMAL");
}

static void test_commits_visible_full(void **state)
{
    struct fixture *f = *state;
    commits_visible(f->path, "FULL");
}

/*
 * Transactions of ~2 MB (past what is gathered at once) with a page cache of 20 pages: pages
 * spill to the WAL before the commit and are written again in place, which makes SQLite
 * rewrite the frames' checksums after the commit frame. One of them rolled back, after a
 * checkpoint the WAL restarts from its start. Then the database is whole and holds exactly
 * what was committed, through the writer, another connection and a reopened file.
 */
static void test_large_spilled_rolled_back(void **state)
{
    struct fixture *f = *state;
    uint64_t c0, b0, c1, b1;
    sqlite_walbuf_counts(&c0, &b0);
    sqlite3 *w = open_writer(f->path, "NORMAL");
    exec(w, "PRAGMA cache_size = 20");
    sqlite3 *r = open_db(f->path, NULL);
    int64_t id = 0;
    for (int round = 0; round < 4; round++) {
        exec(w, "BEGIN");
        for (int i = 0; i < 500; i++)
            insert(w, ++id, 4000);
        exec(w, "UPDATE t SET n = n + 1000000 WHERE id % 7 = 0"); /* spilled pages again */
        if (round == 1) {
            exec(w, "ROLLBACK");
            id -= 500;
        } else {
            exec(w, "COMMIT");
        }
        if (round == 2) /* the next transaction writes the WAL from its start */
            exec(w, "PRAGMA wal_checkpoint(TRUNCATE)");
        assert_int_equal(one_int(r, "SELECT count(*) FROM t"), id);
    }
    int64_t want = one_int(w, "SELECT sum(n) FROM t");
    assert_int_equal(one_int(r, "SELECT sum(n) FROM t"), want);
    assert_whole(w);
    assert_whole(r);
    sqlite3_close(r);
    sqlite3_close(w);
    sqlite3 *again = open_db(f->path, NULL);
    assert_int_equal(one_int(again, "SELECT count(*) FROM t"), id);
    assert_int_equal(one_int(again, "SELECT sum(n) FROM t"), want);
    assert_whole(again);
    sqlite3_close(again);
    sqlite_walbuf_counts(&c1, &b1);
    assert_true(c1 - c0 >= 3);
    assert_int_equal(b1, b0);
}

/*
 * A child commits one row per transaction and says so on a pipe after each COMMIT returns; it
 * is killed (SIGKILL) in the middle. Every row it acknowledged is in the database, and the
 * rows are 1..max with none missing.
 */
static void test_killed_keeps_acknowledged(void **state)
{
    struct fixture *f = *state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        sqlite3 *w = open_writer(f->path, "NORMAL");
        for (int64_t i = 1; i <= 100000; i++) {
            if (sqlite3_exec(w, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) _exit(2);
            sqlite3_stmt *st = NULL;
            if (sqlite3_prepare_v2(w, "INSERT INTO t VALUES (?, zeroblob(3000), ?)", -1, &st,
                                   NULL) != SQLITE_OK)
                _exit(2);
            sqlite3_bind_int64(st, 1, i);
            sqlite3_bind_int64(st, 2, i);
            int rc = sqlite3_step(st);
            sqlite3_finalize(st);
            if (rc != SQLITE_DONE || sqlite3_exec(w, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                _exit(2);
            if (write(fds[1], &i, sizeof(i)) != sizeof(i)) _exit(3);
        }
        _exit(0);
    }
    close(fds[1]);
    int64_t acked = 0, v;
    while (acked < 400 && read(fds[0], &v, sizeof(v)) == sizeof(v))
        acked = v;
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    while (read(fds[0], &v, sizeof(v)) == sizeof(v)) /* acknowledged before the kill landed */
        acked = v;
    close(fds[0]);
    assert_true(acked >= 400);
    sqlite3 *db = open_db(f->path, NULL);
    assert_whole(db);
    int64_t n = one_int(db, "SELECT count(*) FROM t");
    assert_true(n >= acked);
    assert_int_equal(one_int(db, "SELECT max(id) FROM t"), n);
    assert_int_equal(one_int(db, "SELECT count(*) FROM t WHERE n = id"), n);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commits_visible_normal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commits_visible_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_spilled_rolled_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_keeps_acknowledged, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
