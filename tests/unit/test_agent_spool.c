/*
 * test_agent_spool.c - unit tests for agent/spool.c on real files in a
 * mkdtemp folder: write / read / remove round trips, listing by (job,
 * attempt), records rewritten in place, left-over temporary files, unreadable
 * records kept aside, and names that are not job ids refused.
 */
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

/* Memory the code under test allocates is freed with libc's free, not cmocka's. */
static void lib_free(void *p)
{
    free(p);
}

#include <cmocka.h>

#include "agent/agent.h"
#include "agent/spool.h"
#include "tmpdir.h"

#define JOB_A "01938c2e-0000-7000-8000-000000000001"
#define JOB_B "01938c2e-0000-7000-8000-000000000002"

struct fixture {
    char dir[64];
    char spool_dir[96];
    struct spool s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!test_mkdtemp(f->dir, sizeof(f->dir), "drover-test-spool")) return -1;
    snprintf(f->spool_dir, sizeof(f->spool_dir), "%s/a/spool", f->dir);
    struct err e = ERR_INIT;
    if (spool_open(&f->s, f->spool_dir, &e)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    spool_close(&f->s);
    agent_remove_tree(f->dir);
    free(f);
    return 0;
}

static char *file_path(struct fixture *f, const char *name)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->spool_dir, name);
    return path;
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    json_t *lease = json_pack("{s:s, s:i, s:{s:{s:s}}, s:n}", "job", JOB_A, "attempt", 2, "spec",
                              "command", "program", "caf\xC3\xA9", "deadline");
    assert_int_equal(spool_put(&f->s, JOB_A, 2, "lease", lease, &e), 0);
    struct stat st;
    assert_int_equal(stat(file_path(f, JOB_A "-2.lease"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    json_t *back = NULL;
    assert_int_equal(spool_get(&f->s, JOB_A, 2, "lease", &back, &e), 0);
    assert_true(json_equal(lease, back));
    json_decref(back);

    /* a rewrite replaces the record */
    json_object_set_new(lease, "pgid", json_integer(4242));
    assert_int_equal(spool_put(&f->s, JOB_A, 2, "lease", lease, &e), 0);
    assert_int_equal(spool_get(&f->s, JOB_A, 2, "lease", &back, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(back, "pgid")), 4242);
    json_decref(back);

    assert_int_equal(spool_get(&f->s, JOB_A, 2, "finished", &back, &e), ERR_NOTFOUND);
    assert_null(back);
    assert_int_equal(spool_del(&f->s, JOB_A, 2, "lease", &e), 0);
    assert_int_equal(spool_get(&f->s, JOB_A, 2, "lease", &back, &e), ERR_NOTFOUND);
    assert_int_equal(spool_del(&f->s, JOB_A, 2, "lease", &e), 0); /* absent: fine */
    json_decref(lease);
}

static ino_t inode_of(struct fixture *f, const char *name)
{
    struct stat st;
    assert_int_equal(stat(file_path(f, name), &st), 0);
    return st.st_ino;
}

/* A finished report of reason error whose message is `len` times the letter c. */
static json_t *error_end(size_t len, char c)
{
    char text[8192];
    assert_true(len < sizeof(text));
    memset(text, c, len);
    return json_pack("{s:s, s:s%}", "reason", "error", "error", text, len);
}

static void test_update(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    json_t *back = NULL;
    /* none yet: written as spool_put writes */
    json_t *doc = json_pack("{s:s, s:i, s:i}", "job", JOB_A, "attempt", 1, "slots", 1);
    assert_int_equal(spool_update(&f->s, JOB_A, 1, "lease", doc, &e), 0);
    ino_t ino = inode_of(f, JOB_A "-1.lease");
    /* longer, then shorter again: in place (the same file), read back whole and only it */
    json_object_set_new(doc, "run", json_pack("{s:i, s:s}", "pgid", 4242, "boot_id", "b"));
    assert_int_equal(spool_update(&f->s, JOB_A, 1, "lease", doc, &e), 0);
    assert_int_equal(inode_of(f, JOB_A "-1.lease"), ino);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "lease", &back, &e), 0);
    assert_true(json_equal(doc, back));
    json_decref(back);
    json_object_set_new(doc, "finished", error_end(599, 'x'));
    assert_int_equal(spool_update(&f->s, JOB_A, 1, "lease", doc, &e), 0);
    assert_int_equal(inode_of(f, JOB_A "-1.lease"), ino);
    json_object_del(doc, "finished");
    assert_int_equal(spool_update(&f->s, JOB_A, 1, "lease", doc, &e), 0);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "lease", &back, &e), 0);
    assert_true(json_equal(doc, back)); /* the longer record's rest is blanks now */
    json_decref(back);
    struct stat st;
    assert_int_equal(stat(file_path(f, JOB_A "-1.lease"), &st), 0);
    assert_true(st.st_size <= 4096);
    /* more than a page: a new file renamed over it (a write of several pages can be cut) */
    json_object_set_new(doc, "finished", error_end(4999, 'y'));
    assert_int_equal(spool_update(&f->s, JOB_A, 1, "lease", doc, &e), 0);
    assert_int_not_equal(inode_of(f, JOB_A "-1.lease"), ino);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "lease", &back, &e), 0);
    assert_true(json_equal(doc, back));
    json_decref(back);
    /* and from that larger file back to a small record: a new file again, read back right */
    json_object_del(doc, "finished");
    assert_int_equal(spool_update(&f->s, JOB_A, 1, "lease", doc, &e), 0);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "lease", &back, &e), 0);
    assert_true(json_equal(doc, back));
    json_decref(back);
    assert_int_equal(spool_update(&f->s, "../x", 1, "lease", doc, &e), ERR_INVALID);
    err_clear(&e);
    json_decref(doc);
}

static void test_list(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    json_t *doc = json_pack("{s:b}", "x", 1);
    assert_int_equal(spool_put(&f->s, JOB_B, 1, "lease", doc, &e), 0);
    assert_int_equal(spool_put(&f->s, JOB_A, 3, "finished", doc, &e), 0);
    assert_int_equal(spool_put(&f->s, JOB_A, 3, "lease", doc, &e), 0);
    assert_int_equal(spool_put(&f->s, JOB_A, 1, "started", doc, &e), 0);
    json_decref(doc);
    /* a write cut short by a crash, and a stranger's file */
    FILE *tmp = fopen(file_path(f, "." JOB_B "-9.finished.tmp"), "w");
    fputs("{\"half", tmp);
    fclose(tmp);
    FILE *other = fopen(file_path(f, "README"), "w");
    fclose(other);

    struct spool_key *keys;
    size_t n;
    assert_int_equal(spool_list(&f->s, &keys, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_string_equal(keys[0].job, JOB_A);
    assert_int_equal(keys[0].attempt, 1);
    assert_string_equal(keys[1].job, JOB_A);
    assert_int_equal(keys[1].attempt, 3);
    assert_string_equal(keys[2].job, JOB_B);
    assert_int_equal(keys[2].attempt, 1);
    lib_free(keys);
    assert_int_not_equal(access(file_path(f, "." JOB_B "-9.finished.tmp"), F_OK), 0);
    assert_int_equal(access(file_path(f, "README"), F_OK), 0);
}

static void test_bad_record_kept_aside(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    FILE *bad = fopen(file_path(f, JOB_A "-1.finished"), "w");
    fputs("{not json", bad);
    fclose(bad);
    json_t *doc = NULL;
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "finished", &doc, &e), ERR_INVALID);
    assert_null(doc);
    assert_non_null(strstr(e.msg, "is not a valid record"));
    assert_int_equal(access(file_path(f, JOB_A "-1.finished.bad"), F_OK), 0);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "finished", &doc, &e), ERR_NOTFOUND);
}

static void test_names_refused(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    json_t *doc = json_object();
    assert_int_equal(spool_put(&f->s, "../../etc/passwd", 1, "lease", doc, &e), ERR_INVALID);
    err_clear(&e);
    assert_int_equal(spool_put(&f->s, JOB_A, 0, "lease", doc, &e), ERR_INVALID);
    err_clear(&e);
    json_t *out;
    assert_int_equal(spool_get(&f->s, "x", 1, "lease", &out, &e), ERR_INVALID);
    json_decref(doc);
}

static void test_removed_files_reused(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    char pad[400];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    json_t *big = json_pack("{s:s, s:s}", "type", "finished", "pad", pad);
    json_t *small = json_pack("{s:i}", "x", 1);
    struct stat st;
    assert_int_equal(spool_put(&f->s, JOB_A, 1, "finished", big, &e), 0);
    assert_int_equal(stat(file_path(f, JOB_A "-1.finished"), &st), 0);
    ino_t ino = st.st_ino;
    assert_int_equal(spool_del(&f->s, JOB_A, 1, "finished", &e), 0);
    assert_int_not_equal(access(file_path(f, JOB_A "-1.finished"), F_OK), 0);
    json_t *back = NULL;
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "finished", &back, &e), ERR_NOTFOUND);
    struct spool_key *keys;
    size_t n;
    assert_int_equal(spool_list(&f->s, &keys, &n, &e), 0); /* a free file is no record */
    assert_int_equal(n, 0);
    lib_free(keys);
    /* the next write fills that file: same inode, only the new content */
    assert_int_equal(spool_put(&f->s, JOB_B, 2, "lease", small, &e), 0);
    assert_int_equal(stat(file_path(f, JOB_B "-2.lease"), &st), 0);
    assert_int_equal(st.st_ino, ino);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_true(st.st_size < 400); /* nothing of the longer record is left */
    assert_int_equal(spool_get(&f->s, JOB_B, 2, "lease", &back, &e), 0);
    assert_true(json_equal(back, small));
    json_decref(back);
    /* and a longer record in a shorter file */
    assert_int_equal(spool_del(&f->s, JOB_B, 2, "lease", &e), 0);
    assert_int_equal(spool_put(&f->s, JOB_B, 2, "finished", big, &e), 0);
    assert_int_equal(stat(file_path(f, JOB_B "-2.finished"), &st), 0);
    assert_int_equal(st.st_ino, ino);
    assert_int_equal(spool_get(&f->s, JOB_B, 2, "finished", &back, &e), 0);
    assert_true(json_equal(back, big));
    json_decref(back);
    assert_int_equal(spool_del(&f->s, JOB_B, 2, "finished", &e), 0);
    assert_int_equal(spool_put(&f->s, JOB_B, 2, "lease", small, &e), 0);
    assert_int_equal(stat(file_path(f, JOB_B "-2.lease"), &st), 0);
    assert_int_equal(st.st_ino, ino);
    assert_true(st.st_size < 400);
    assert_int_equal(spool_get(&f->s, JOB_B, 2, "lease", &back, &e), 0);
    assert_true(json_equal(back, small));
    json_decref(back);
    /* removing an absent record is still fine; a previous run's free file is cleared */
    assert_int_equal(spool_del(&f->s, JOB_A, 1, "finished", &e), 0);
    FILE *old = fopen(file_path(f, ".free-99"), "w");
    fputs("{\"stale\": true}", old);
    fclose(old);
    assert_int_equal(spool_del(&f->s, JOB_B, 2, "lease", &e), 0);
    assert_int_equal(spool_list(&f->s, &keys, &n, &e), 0);
    assert_int_equal(n, 0);
    lib_free(keys);
    assert_int_not_equal(access(file_path(f, ".free-99"), F_OK), 0);
    assert_int_equal(spool_put(&f->s, JOB_A, 3, "started", small, &e), 0); /* still reused */
    assert_int_equal(stat(file_path(f, JOB_A "-3.started"), &st), 0);
    assert_int_equal(st.st_ino, ino);
    /* many removals: beyond SPOOL_FREE_MAX they are unlinked */
    for (int i = 1; i <= SPOOL_FREE_MAX + 8; i++)
        assert_int_equal(spool_put(&f->s, JOB_B, i, "lease", small, &e), 0);
    for (int i = 1; i <= SPOOL_FREE_MAX + 8; i++)
        assert_int_equal(spool_del(&f->s, JOB_B, i, "lease", &e), 0);
    assert_int_equal(f->s.nfree, SPOOL_FREE_MAX);
    assert_int_equal(spool_list(&f->s, &keys, &n, &e), 0);
    assert_int_equal(n, 1);
    lib_free(keys);
    json_decref(big);
    json_decref(small);
}

static void test_remove_tree(void **state)
{
    struct fixture *f = *state;
    char path[256], sub[300], file[320];
    /* absent, empty */
    snprintf(path, sizeof(path), "%s/work", f->dir);
    agent_remove_tree(path);
    assert_int_equal(mkdir(path, 0700), 0);
    agent_remove_tree(path);
    assert_int_not_equal(access(path, F_OK), 0);
    /* files, and a read-only folder holding a file (a job may leave those) */
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(sub, sizeof(sub), "%s/ro", path);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(file, sizeof(file), "%s/f", sub);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(file, sizeof(file), "%s/top", path);
    fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(chmod(sub, 0500), 0);
    assert_int_equal(chmod(path, 0500), 0);
    agent_remove_tree(path);
    assert_int_not_equal(access(path, F_OK), 0);
    /* a file where a folder was */
    fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    agent_remove_tree(path);
    assert_int_not_equal(access(path, F_OK), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_record_kept_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removed_files_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_tree, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
