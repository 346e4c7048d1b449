/*
 * test_agent_cache.c - unit tests for agent/cache.c on real files in a
 * mkdtemp folder: claim / fetch / commit / hit, one fetch with waiters,
 * abandon handing the fetch on, eviction by recency and size, pins that
 * keep objects, the index rebuilt at open (leftover temporary files removed,
 * strangers left alone), links read-only, the report and the lock.
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

static void lib_free(void *p)
{
    free(p);
}

#include <cmocka.h>

#include "agent/agent.h"
#include "agent/cache.h"
#include "tmpdir.h"

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define SHA_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

struct fixture {
    char dir[64];
    char cache_dir[96];
    struct cache *c;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!test_mkdtemp(f->dir, sizeof(f->dir), "drover-test-cache")) return -1;
    snprintf(f->cache_dir, sizeof(f->cache_dir), "%s/cache", f->dir);
    struct err e = ERR_INIT;
    if (cache_open(f->cache_dir, 1000, &f->c, &e)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    cache_free(f->c);
    agent_remove_tree(f->dir);
    free(f);
    return 0;
}

static void write_file(const char *path, size_t size)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (size_t i = 0; i < size; i++)
        fputc('x', fp);
    fclose(fp);
}

static bool exists(struct fixture *f, const char *sha)
{
    char *p = cache_object_path(f->c, sha);
    bool ok = access(p, F_OK) == 0;
    lib_free(p);
    return ok;
}

/* Claims sha (must be a miss), writes size bytes and commits: the object is pinned once. */
static void fetch(struct fixture *f, const char *sha, size_t size, const char *uri)
{
    char *tmp = NULL;
    struct cache_waiter w = {0};
    assert_int_equal(cache_claim(f->c, sha, &w, &tmp), CACHE_FETCH);
    assert_non_null(tmp);
    write_file(tmp, size);
    struct err e = ERR_INIT;
    assert_int_equal(cache_commit(f->c, sha, uri, &e), 0);
    assert_int_not_equal(access(tmp, F_OK), 0); /* renamed away */
    lib_free(tmp);
}

static void test_sha_valid(void **state)
{
    (void)state;
    assert_true(cache_sha_valid(SHA_A));
    assert_false(
        cache_sha_valid("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    assert_false(cache_sha_valid("abc"));
    assert_false(cache_sha_valid(SHA_A "a"));
    assert_false(
        cache_sha_valid("../aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

static void test_fetch_then_hit(void **state)
{
    struct fixture *f = *state;
    fetch(f, SHA_A, 100, "s3://b/a");
    char *p = cache_object_path(f->c, SHA_A);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0444);
    assert_int_equal(sb.st_size, 100);
    lib_free(p);
    struct cache_waiter w = {0};
    char *tmp = NULL;
    assert_int_equal(cache_claim(f->c, SHA_A, &w, &tmp), CACHE_HIT);
    assert_null(tmp);
    struct cache_stats st;
    cache_stats(f->c, &st);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.fetches, 1);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.bytes, 100);

    /* linked read-only into a work folder */
    char dst[200];
    snprintf(dst, sizeof(dst), "%s/linked", f->dir);
    struct err e = ERR_INIT;
    assert_int_equal(cache_link(f->c, SHA_A, dst, &e), 0);
    assert_int_equal(stat(dst, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0444);
    assert_int_equal(sb.st_nlink, 2);
    assert_int_not_equal(cache_link(f->c, SHA_A, dst, &e), 0); /* exists: an error */
    assert_int_equal(e.code, ERR_IO);
    cache_unpin(f->c, SHA_A);
    cache_unpin(f->c, SHA_A);
}

static int woken;
static void on_wake(void *arg)
{
    (void)arg;
    woken++;
}

static void test_one_fetch_many_waiters(void **state)
{
    struct fixture *f = *state;
    char *tmp = NULL, *tmp2 = NULL;
    struct cache_waiter w1 = {.fn = on_wake}, w2 = {.fn = on_wake}, w3 = {.fn = on_wake};
    woken = 0;
    assert_int_equal(cache_claim(f->c, SHA_A, &w1, &tmp), CACHE_FETCH);
    assert_int_equal(cache_claim(f->c, SHA_A, &w2, &tmp2), CACHE_BUSY);
    assert_int_equal(cache_claim(f->c, SHA_A, &w3, &tmp2), CACHE_BUSY);
    assert_null(tmp2);
    assert_true(w2.queued && w3.queued);
    cache_unwait(f->c, &w3); /* its job went away */
    assert_false(w3.queued);
    write_file(tmp, 10);
    struct err e = ERR_INIT;
    assert_int_equal(cache_commit(f->c, SHA_A, NULL, &e), 0);
    assert_int_equal(woken, 1);
    assert_false(w2.queued);
    assert_int_equal(cache_claim(f->c, SHA_A, &w2, &tmp2), CACHE_HIT);
    struct cache_stats st;
    cache_stats(f->c, &st);
    assert_int_equal(st.fetches, 1);
    assert_int_equal(st.waits, 2);
    lib_free(tmp);
    cache_unpin(f->c, SHA_A);
    cache_unpin(f->c, SHA_A);
}

static void test_abandon_hands_on(void **state)
{
    struct fixture *f = *state;
    char *tmp = NULL, *tmp2 = NULL;
    struct cache_waiter w1 = {.fn = on_wake}, w2 = {.fn = on_wake};
    woken = 0;
    assert_int_equal(cache_claim(f->c, SHA_B, &w1, &tmp), CACHE_FETCH);
    write_file(tmp, 10); /* half a download */
    assert_int_equal(cache_claim(f->c, SHA_B, &w2, &tmp2), CACHE_BUSY);
    cache_abandon(f->c, SHA_B);
    assert_int_equal(woken, 1);
    assert_int_not_equal(access(tmp, F_OK), 0); /* the partial file is gone */
    assert_false(exists(f, SHA_B));
    assert_int_equal(cache_claim(f->c, SHA_B, &w2, &tmp2), CACHE_FETCH); /* the waiter fetches */
    assert_non_null(tmp2);
    cache_abandon(f->c, SHA_B);
    lib_free(tmp);
    lib_free(tmp2);
    struct cache_stats st;
    cache_stats(f->c, &st);
    assert_int_equal(st.objects, 0);
}

static void test_eviction_lru_and_pins(void **state)
{
    struct fixture *f = *state; /* bound: 1000 bytes */
    fetch(f, SHA_A, 400, NULL);
    fetch(f, SHA_B, 400, NULL);
    cache_unpin(f->c, SHA_A);
    cache_unpin(f->c, SHA_B);
    /* A used again: B is now the least recently used */
    struct cache_waiter w = {0};
    char *tmp = NULL;
    assert_int_equal(cache_claim(f->c, SHA_A, &w, &tmp), CACHE_HIT);
    cache_unpin(f->c, SHA_A);
    fetch(f, SHA_C, 400, NULL); /* 1200 > 1000: B goes */
    assert_true(exists(f, SHA_A));
    assert_false(exists(f, SHA_B));
    assert_true(exists(f, SHA_C));
    struct cache_stats st;
    cache_stats(f->c, &st);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.bytes, 800);

    /* pinned objects stay, even above the bound */
    assert_int_equal(cache_claim(f->c, SHA_A, &w, &tmp), CACHE_HIT); /* A and C pinned */
    fetch(f, SHA_B, 900, NULL);                                      /* 1700 */
    assert_true(exists(f, SHA_A) && exists(f, SHA_B) && exists(f, SHA_C));
    cache_unpin(f->c, SHA_A); /* A is the least recently used unpinned: 1300 */
    assert_false(exists(f, SHA_A));
    assert_true(exists(f, SHA_C));
    cache_unpin(f->c, SHA_C); /* C goes: 900 */
    assert_false(exists(f, SHA_C));
    assert_true(exists(f, SHA_B));
    cache_unpin(f->c, SHA_B);
    assert_true(exists(f, SHA_B)); /* within the bound */
    cache_unpin(f->c, SHA_B);      /* not pinned: nothing happens */
    cache_stats(f->c, &st);
    assert_int_equal(st.bytes, 900);
    assert_int_equal(st.objects, 1);
}

static void test_rebuild_at_open(void **state)
{
    struct fixture *f = *state;
    fetch(f, SHA_A, 300, "s3://b/a");
    fetch(f, SHA_B, 300, NULL);
    cache_unpin(f->c, SHA_A);
    cache_unpin(f->c, SHA_B);
    /* a download cut short by a crash, and a file that is not the cache's */
    char *tmp = NULL;
    struct cache_waiter w = {0};
    assert_int_equal(cache_claim(f->c, SHA_C, &w, &tmp), CACHE_FETCH);
    write_file(tmp, 50);
    char stranger[200];
    snprintf(stranger, sizeof(stranger), "%s/objects/notes.txt", f->cache_dir);
    write_file(stranger, 5);
    /* a second agent cannot open the same cache */
    struct cache *other = NULL;
    struct err e = ERR_INIT;
    assert_int_equal(cache_open(f->cache_dir, 1000, &other, &e), ERR_IO);
    assert_non_null(strstr(e.msg, "in use"));
    assert_null(other);
    cache_free(f->c);
    f->c = NULL;

    /* restart with a smaller bound: the least recently used (A) is evicted at open */
    e = (struct err)ERR_INIT;
    assert_int_equal(cache_open(f->cache_dir, 400, &f->c, &e), 0);
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_equal(access(stranger, F_OK), 0);
    assert_false(exists(f, SHA_A));
    assert_true(exists(f, SHA_B));
    assert_false(exists(f, SHA_C));
    struct cache_stats st;
    cache_stats(f->c, &st);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.bytes, 300);
    char *tmp2 = NULL;
    assert_int_equal(cache_claim(f->c, SHA_B, &w, &tmp2), CACHE_HIT);
    cache_unpin(f->c, SHA_B);
    lib_free(tmp);
}

/* A job that wrote to its input through its link (root ignores 0444): the object is dropped. */
static void test_changed_object_removed(void **state)
{
    struct fixture *f = *state;
    fetch(f, SHA_A, 100, NULL);
    char *p = cache_object_path(f->c, SHA_A);
    char linked[200];
    snprintf(linked, sizeof(linked), "%s/work-a", f->dir);
    struct err e = ERR_INIT;
    assert_int_equal(cache_link(f->c, SHA_A, linked, &e), 0);
    chmod(linked, 0644);
    FILE *fp = fopen(linked, "a");
    assert_non_null(fp);
    fputs("more", fp);
    fclose(fp);
    cache_unpin(f->c, SHA_A); /* the job ends: the change is seen */
    assert_int_not_equal(access(p, F_OK), 0);
    assert_int_equal(access(linked, F_OK), 0); /* the job's own link is left alone */
    struct cache_stats st;
    cache_stats(f->c, &st);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.bytes, 0);

    /* changed while pinned by another job, seen at the next claim: fetched again */
    fetch(f, SHA_B, 100, NULL);
    char *pb = cache_object_path(f->c, SHA_B);
    chmod(pb, 0644);
    fp = fopen(pb, "a");
    fputs("x", fp);
    fclose(fp);
    struct cache_waiter w = {0};
    char *tmp = NULL;
    assert_int_equal(cache_claim(f->c, SHA_B, &w, &tmp), CACHE_FETCH);
    assert_int_not_equal(access(pb, F_OK), 0);
    write_file(tmp, 100);
    assert_int_equal(cache_commit(f->c, SHA_B, NULL, &e), 0);
    cache_unpin(f->c, SHA_B); /* the first job's pin */
    cache_unpin(f->c, SHA_B);
    assert_int_equal(access(pb, F_OK), 0);
    cache_stats(f->c, &st);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.bytes, 100);
    lib_free(tmp);
    lib_free(p);
    lib_free(pb);
}

static void test_report(void **state)
{
    struct fixture *f = *state;
    fetch(f, SHA_A, 10, "s3://b/a");
    fetch(f, SHA_B, 10, NULL);
    uint64_t g = cache_generation(f->c);
    cache_note_uri(f->c, SHA_B, "s3://b/b");
    assert_true(cache_generation(f->c) != g);
    g = cache_generation(f->c);
    cache_note_uri(f->c, SHA_B, "s3://b/b"); /* the same: no change */
    assert_true(cache_generation(f->c) == g);
    json_t *r = cache_report(f->c, 10);
    assert_int_equal(json_array_size(r), 2);
    /* the most recently used first */
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 0), "sha256")), SHA_B);
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 0), "uri")),
                        "s3://b/b");
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 1), "uri")),
                        "s3://b/a");
    json_decref(r);
    r = cache_report(f->c, 1);
    assert_int_equal(json_array_size(r), 1);
    json_decref(r);
    cache_unpin(f->c, SHA_A);
    cache_unpin(f->c, SHA_B);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha_valid),
        cmocka_unit_test_setup_teardown(test_fetch_then_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_fetch_many_waiters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abandon_hands_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_lru_and_pins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_object_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
