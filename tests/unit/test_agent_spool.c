/*
 * test_agent_spool.c - unit tests for agent/spool.c on real files in a
 * mkdtemp folder: write / read / remove round trips across restarts, listing
 * by (job, attempt), a journal line cut by a kill, damaged lines kept aside,
 * older agents' record files read in, the journal written anew as it grows,
 * and names that are not job ids refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
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

/* Closes and opens the spool again, as an agent started again on its work folder does. */
static void reopen(struct fixture *f)
{
    struct err e = ERR_INIT;
    spool_close(&f->s);
    assert_int_equal(spool_open(&f->s, f->spool_dir, &e), 0);
}

static off_t size_of(struct fixture *f, const char *name)
{
    struct stat st;
    assert_int_equal(stat(file_path(f, name), &st), 0);
    return st.st_size;
}

static void write_file(struct fixture *f, const char *name, const char *mode, const char *text)
{
    FILE *fp = fopen(file_path(f, name), mode);
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static size_t count_keys(struct fixture *f)
{
    struct err e = ERR_INIT;
    struct spool_key *keys;
    size_t n;
    assert_int_equal(spool_list(&f->s, &keys, &n, &e), 0);
    lib_free(keys);
    return n;
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    json_t *lease = json_pack("{s:s, s:i, s:{s:{s:s}}, s:n}", "job", JOB_A, "attempt", 2, "spec",
                              "command", "program", "caf\xC3\xA9", "deadline");
    assert_int_equal(spool_put(&f->s, JOB_A, 2, "lease", lease, &e), 0);
    struct stat st;
    assert_int_equal(stat(file_path(f, "journal"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_not_equal(access(file_path(f, JOB_A "-2.lease"), F_OK), 0); /* no file of its own */

    json_t *back = NULL;
    assert_int_equal(spool_get(&f->s, JOB_A, 2, "lease", &back, &e), 0);
    assert_true(json_equal(lease, back));
    json_decref(back);

    /* a rewrite replaces the record, also for an agent started again */
    json_object_set_new(lease, "pgid", json_integer(4242));
    assert_int_equal(spool_put(&f->s, JOB_A, 2, "lease", lease, &e), 0);
    assert_int_equal(spool_get(&f->s, JOB_A, 2, "lease", &back, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(back, "pgid")), 4242);
    json_decref(back);
    reopen(f);
    assert_int_equal(spool_get(&f->s, JOB_A, 2, "lease", &back, &e), 0);
    assert_true(json_equal(lease, back));
    json_decref(back);

    assert_int_equal(spool_get(&f->s, JOB_A, 2, "finished", &back, &e), ERR_NOTFOUND);
    assert_null(back);
    assert_int_equal(spool_del(&f->s, JOB_A, 2, "lease", &e), 0);
    assert_int_equal(spool_get(&f->s, JOB_A, 2, "lease", &back, &e), ERR_NOTFOUND);
    assert_int_equal(spool_del(&f->s, JOB_A, 2, "lease", &e), 0); /* absent: fine */
    reopen(f);
    assert_int_equal(spool_get(&f->s, JOB_A, 2, "lease", &back, &e), ERR_NOTFOUND);
    assert_int_equal(size_of(f, "journal"), 0); /* written anew at open: nothing holds */
    json_decref(lease);
}

/* The journal's last line, as read from the file. */
static char *last_line(struct fixture *f)
{
    static char line[4096];
    FILE *fp = fopen(file_path(f, "journal"), "r");
    assert_non_null(fp);
    line[0] = '\0';
    char buf[4096];
    while (fgets(buf, sizeof(buf), fp))
        snprintf(line, sizeof(line), "%s", buf);
    fclose(fp);
    return line;
}

static void test_put_member(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    json_t *lease = json_pack("{s:s, s:i, s:i}", "job", JOB_A, "attempt", 1, "slots", 2);
    assert_int_equal(spool_put(&f->s, JOB_A, 1, "lease", lease, &e), 0);
    /* a new member: the line is what a dump of the whole record would be */
    json_t *run = json_pack("{s:i, s:s}", "pgid", 77, "runtime", "native");
    assert_int_equal(spool_put_member(&f->s, JOB_A, 1, "lease", lease, "run", run, &e), 0);
    assert_ptr_equal(json_object_get(lease, "run"), run);
    json_t *fin = json_pack("{s:s, s:i, s:s}", "reason", "exit", "exit_code", 0, "error",
                            "caf\xC3\xA9 \"q\"\n");
    assert_int_equal(spool_put_member(&f->s, JOB_A, 1, "lease", lease, "finished", fin, &e), 0);
    char *whole = json_dumps(lease, JSON_COMPACT);
    char want[4096];
    snprintf(want, sizeof(want), "{\"job\":\"%s\",\"attempt\":1,\"kind\":\"lease\",\"doc\":%s}\n",
             JOB_A, whole);
    assert_string_equal(last_line(f), want);
    lib_free(whole);
    json_t *back = NULL;
    reopen(f);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "lease", &back, &e), 0);
    assert_true(json_equal(lease, back));
    json_decref(back);
    /* a member it had is replaced: the record is written whole */
    json_t *run2 = json_pack("{s:i}", "pgid", 78);
    assert_int_equal(spool_put_member(&f->s, JOB_A, 1, "lease", lease, "run", run2, &e), 0);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "lease", &back, &e), 0);
    assert_true(json_equal(lease, back));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(back, "run"), "pgid")), 78);
    json_decref(back);
    /* without a line before (a record not written yet): written whole */
    json_t *other = json_pack("{s:s}", "job", JOB_B);
    assert_int_equal(spool_put_member(&f->s, JOB_B, 3, "lease", other, "run", run2, &e), 0);
    assert_int_equal(spool_get(&f->s, JOB_B, 3, "lease", &back, &e), 0);
    assert_true(json_equal(other, back));
    json_decref(back);
    json_decref(other);
    json_decref(run2);
    json_decref(fin);
    json_decref(run);
    json_decref(lease);
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
    assert_int_equal(spool_put(&f->s, JOB_B, 2, "lease", doc, &e), 0);
    assert_int_equal(spool_del(&f->s, JOB_B, 2, "lease", &e), 0);
    assert_int_equal(spool_put(&f->s, JOB_B, 2147483647, "lease", doc, &e), 0); /* the most */
    json_decref(doc);

    for (int round = 0; round < 2; round++) { /* and the same after a restart */
        struct spool_key *keys;
        size_t n;
        assert_int_equal(spool_list(&f->s, &keys, &n, &e), 0);
        assert_int_equal(n, 4);
        assert_string_equal(keys[0].job, JOB_A);
        assert_int_equal(keys[0].attempt, 1);
        assert_string_equal(keys[1].job, JOB_A);
        assert_int_equal(keys[1].attempt, 3);
        assert_string_equal(keys[2].job, JOB_B);
        assert_int_equal(keys[2].attempt, 1);
        assert_int_equal(keys[3].attempt, 2147483647);
        lib_free(keys);
        reopen(f);
    }
}

/* A kill while a line was appended leaves it cut: dropped at open, the rest read. */
static void test_cut_last_line(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    json_t *doc = json_pack("{s:i}", "slots", 2), *back = NULL;
    assert_int_equal(spool_put(&f->s, JOB_A, 1, "lease", doc, &e), 0);
    spool_close(&f->s);
    off_t whole = size_of(f, "journal");
    write_file(f, "journal", "a", "{\"job\":\"" JOB_B "\",\"attempt\":1,\"kind\":\"lease\",\"do");
    assert_int_equal(spool_open(&f->s, f->spool_dir, &e), 0);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "lease", &back, &e), 0);
    assert_true(json_equal(doc, back));
    json_decref(back);
    assert_int_equal(count_keys(f), 1);
    assert_int_equal(size_of(f, "journal"), whole); /* the cut line is gone */
    assert_int_not_equal(access(file_path(f, "journal.bad"), F_OK), 0);
    /* and appending goes on after it */
    assert_int_equal(spool_put(&f->s, JOB_B, 1, "lease", doc, &e), 0);
    reopen(f);
    assert_int_equal(count_keys(f), 2);
    json_decref(doc);
}

/* A line in the middle that is no record: skipped, the journal kept aside for a human. */
static void test_damaged_line_kept_aside(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    json_t *doc = json_pack("{s:i}", "slots", 1), *back = NULL;
    assert_int_equal(spool_put(&f->s, JOB_A, 1, "lease", doc, &e), 0);
    spool_close(&f->s);
    static const char *const bad[] = {
        "{not json\n",
        "{\"job\":\"../../etc/passwd\",\"attempt\":1,\"kind\":\"lease\",\"doc\":{}}\n",
        "{\"job\":\"" JOB_B "\",\"attempt\":0,\"kind\":\"lease\",\"doc\":{}}\n",
        "{\"job\":\"" JOB_B "\",\"attempt\":1,\"kind\":\"lease/x\",\"doc\":{}}\n",
        "{\"job\":\"" JOB_B "\",\"attempt\":1,\"kind\":\"lease\"}\n",
        "[1, 2]\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        write_file(f, "journal", "a", bad[i]);
    write_file(f, "journal", "a",
               "{\"job\":\"" JOB_B "\",\"attempt\":2,\"kind\":\"lease\",\"doc\":{\"slots\":3}}\n");
    assert_int_equal(spool_open(&f->s, f->spool_dir, &e), 0);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "lease", &back, &e), 0);
    assert_true(json_equal(doc, back));
    json_decref(back);
    assert_int_equal(spool_get(&f->s, JOB_B, 2, "lease", &back, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(back, "slots")), 3);
    json_decref(back);
    assert_int_equal(count_keys(f), 2);
    assert_int_equal(access(file_path(f, "journal.bad"), F_OK), 0);
    json_decref(doc);
}

/* Older agents' files: read into the journal, then removed; a bad one kept aside. */
static void test_older_agents_files(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    json_t *back = NULL;
    spool_close(&f->s);
    write_file(f, JOB_A "-1.lease", "w", "{\"job\": \"" JOB_A "\", \"attempt\": 1}   \n");
    write_file(f, JOB_A "-1.finished", "w", "{\"reason\": \"exit\", \"exit_code\": 3}");
    write_file(f, JOB_B "-2.run", "w", "{\"run\": {\"pgid\": 7}}");
    write_file(f, JOB_B "-3.finished", "w", "{not json");
    write_file(f, "." JOB_B "-9.finished.tmp", "w", "{\"half");
    write_file(f, ".free-3", "w", "{\"stale\": true}");
    write_file(f, "README", "w", "a stranger's file");
    assert_int_equal(spool_open(&f->s, f->spool_dir, &e), 0);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "finished", &back, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(back, "exit_code")), 3);
    json_decref(back);
    assert_int_equal(spool_get(&f->s, JOB_B, 2, "run", &back, &e), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(back, "run"), "pgid")), 7);
    json_decref(back);
    assert_int_equal(spool_get(&f->s, JOB_B, 3, "finished", &back, &e), ERR_NOTFOUND);
    assert_int_equal(count_keys(f), 2); /* (A, 1) and (B, 2) */
    static const char *const gone[] = {JOB_A "-1.lease", JOB_A "-1.finished", JOB_B "-2.run",
                                       "." JOB_B "-9.finished.tmp", ".free-3"};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        assert_int_not_equal(access(file_path(f, gone[i]), F_OK), 0);
    assert_int_equal(access(file_path(f, JOB_B "-3.finished.bad"), F_OK), 0);
    assert_int_equal(access(file_path(f, "README"), F_OK), 0);
    /* they are records like any other now */
    assert_int_equal(spool_del(&f->s, JOB_A, 1, "finished", &e), 0);
    reopen(f);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "finished", &back, &e), ERR_NOTFOUND);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "lease", &back, &e), 0);
    json_decref(back);
}

/* A write that fails half-way (the file size limit, standing in for a full disk): the
   record is as it was, nothing of the cut line stays, and the journal goes on. */
static void test_failed_write_cut_off(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    json_t *small = json_pack("{s:i}", "slots", 1), *back = NULL;
    assert_int_equal(spool_put(&f->s, JOB_A, 1, "lease", small, &e), 0);
    off_t before = size_of(f, "journal");
    char pad[3000];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    json_t *big = json_pack("{s:s}", "pad", pad);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)before + 1000;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = spool_put(&f->s, JOB_A, 1, "lease", big, &e);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, ERR_IO);
    assert_non_null(strstr(e.msg, "cannot write the record"));
    err_clear(&e);
    assert_int_equal(size_of(f, "journal"), before);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "lease", &back, &e), 0);
    assert_true(json_equal(small, back));
    json_decref(back);
    assert_int_equal(spool_put(&f->s, JOB_B, 1, "lease", big, &e), 0);
    reopen(f);
    assert_int_equal(count_keys(f), 2);
    assert_int_equal(access(file_path(f, "journal.bad"), F_OK) == 0, 0);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "lease", &back, &e), 0);
    assert_true(json_equal(small, back));
    json_decref(back);
    json_decref(big);
    json_decref(small);
}

/* Removals held for one write: in memory at once, in the journal at the flush (or before a
   write meanwhile), in their order. */
static void test_removals_held(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    json_t *doc = json_pack("{s:i}", "slots", 1), *back = NULL;
    for (int i = 1; i <= 3; i++)
        assert_int_equal(spool_put(&f->s, JOB_A, i, "lease", doc, &e), 0);
    off_t before = size_of(f, "journal");
    spool_hold(&f->s);
    assert_int_equal(spool_del(&f->s, JOB_A, 1, "lease", &e), 0);
    assert_int_equal(spool_del(&f->s, JOB_A, 2, "lease", &e), 0);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "lease", &back, &e), ERR_NOTFOUND);
    assert_int_equal(size_of(f, "journal"), before); /* not written yet */
    assert_int_equal(spool_flush(&f->s, &e), 0);
    assert_true(size_of(f, "journal") > before);
    reopen(f);
    assert_int_equal(count_keys(f), 1);
    /* a write while held: the removals first, then it (a record put again after its removal) */
    spool_hold(&f->s);
    assert_int_equal(spool_del(&f->s, JOB_A, 3, "lease", &e), 0);
    assert_int_equal(spool_put(&f->s, JOB_A, 3, "lease", doc, &e), 0);
    assert_int_equal(spool_put(&f->s, JOB_A, 4, "lease", doc, &e), 0);
    assert_int_equal(spool_del(&f->s, JOB_B, 1, "lease", &e), 0); /* absent: nothing */
    before = size_of(f, "journal");
    assert_int_equal(spool_del(&f->s, JOB_A, 4, "lease", &e), 0); /* still held */
    assert_int_equal(size_of(f, "journal"), before);
    assert_int_equal(spool_flush(&f->s, &e), 0);
    reopen(f);
    assert_int_equal(spool_get(&f->s, JOB_A, 3, "lease", &back, &e), 0);
    json_decref(back);
    assert_int_equal(count_keys(f), 1);
    json_decref(doc);
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
    assert_int_equal(spool_put(&f->s, JOB_A, 1, "le\"ase", doc, &e), ERR_INVALID);
    err_clear(&e);
    json_t *out;
    assert_int_equal(spool_get(&f->s, "x", 1, "lease", &out, &e), ERR_INVALID);
    json_decref(doc);
}

/* Records come and go: the journal is written anew before it grows far past them. */
static void test_journal_compacted(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    char pad[1000];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    json_t *doc = json_pack("{s:s}", "pad", pad), *back = NULL;
    assert_int_equal(spool_put(&f->s, JOB_A, 1, "lease", doc, &e), 0); /* holds throughout */
    off_t most = 0;
    for (int i = 1; i <= 3000; i++) { /* ~6 MB appended */
        assert_int_equal(spool_put(&f->s, JOB_B, i, "lease", doc, &e), 0);
        assert_int_equal(spool_put(&f->s, JOB_B, i, "lease", doc, &e), 0);
        if (i > 1) assert_int_equal(spool_del(&f->s, JOB_B, i - 1, "lease", &e), 0);
        off_t size = size_of(f, "journal");
        if (size > most) most = size;
    }
    assert_true(most <= SPOOL_COMPACT_MIN + 4 * 1100);
    assert_true(f->s.size < (size_t)SPOOL_COMPACT_MIN);
    assert_int_equal(count_keys(f), 2);
    reopen(f);
    assert_int_equal(count_keys(f), 2);
    assert_int_equal(spool_get(&f->s, JOB_B, 3000, "lease", &back, &e), 0);
    assert_true(json_equal(doc, back));
    json_decref(back);
    assert_int_equal(spool_get(&f->s, JOB_A, 1, "lease", &back, &e), 0);
    json_decref(back);
    assert_int_equal(spool_get(&f->s, JOB_B, 2999, "lease", &back, &e), ERR_NOTFOUND);
    json_decref(doc);
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
        cmocka_unit_test_setup_teardown(test_put_member, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_last_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_line_kept_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_older_agents_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_cut_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removals_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_compacted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_tree, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
