/*
 * test_blob.c - the blob store conformance suite: what every backend behind blob.h must do.
 *
 * Each test runs once per entry of `backends[]` on a fresh, empty store made by the fixture
 * and removed afterwards. Today that is the fs backend in a new mkdtemp folder. To add a
 * backend (S3), write its create / destroy functions, its hooks (leftover uploads, faults;
 * NULL where it has none: those tests are skipped) and add one line to `backends[]`.
 *
 * Tests after "fs backend only" check what the fs backend promises beyond the interface
 * (its layout, the repair of its metadata).
 *
 * Object contents come from a generator (byte_at), so multi-megabyte objects are never held
 * whole in memory here either, and SHA-256 sums are computed independently with EVP.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <cmocka.h>

#include "blob/blob.h"
#include "blob/blob_int.h"
#include "common/err.h"
#include "common/timeutil.h"

#include "blobtest.h"
#include "tmpdir.h"

/* --- backends ------------------------------------------------------------------------------ */

struct fixture {
    char dir[PATH_MAX];      /* the temporary folder */
    char uri[PATH_MAX + 16]; /* the store under test */
    struct blob_store *bs;
};

struct backend {
    const char *name;
    unsigned caps;     /* what blob_caps() must say */
    bool nested_names; /* "a" and "a/b" may both exist (else ERR_CONFLICT) */
    /* Makes a fresh, empty location and fills f->uri; 0 or -1. */
    int (*create)(struct fixture *f);
    /* Removes the location and everything in it; 0 or -1. */
    int (*destroy)(struct fixture *f);
    /* Uploads in progress or left over (temp files, multipart uploads). */
    int (*leftovers)(const struct fixture *f);
    /* Faults, until fault_reset(): writes fail with ENOSPC once `budget` bytes are written; */
    void (*fault_nospace)(int64_t budget);
    /* every sync fails with ENOSPC; */
    void (*fault_sync_nospace)(void);
    /* the n-th rename from now (1 = the next) fails with EIO. */
    void (*fault_rename)(int n);
    void (*fault_reset)(void);
};

static int fs_create(struct fixture *f)
{
    if (!test_mkdtemp(f->dir, sizeof(f->dir), "drover-test-blob")) return -1;
    snprintf(f->uri, sizeof(f->uri), "fs:%s/store", f->dir);
    return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int fs_destroy(struct fixture *f)
{
    return nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *fs_root(const struct fixture *f)
{
    return f->uri + strlen("fs:");
}

static int fs_leftovers(const struct fixture *f)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/.tmp", fs_root(f));
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

static int64_t fault_budget;
static int fault_rename_left;

static ssize_t nospace_write(int fd, const void *buf, size_t n)
{
    if (fault_budget <= 0) {
        errno = ENOSPC;
        return -1;
    }
    if ((int64_t)n > fault_budget)
        n = (size_t)fault_budget; /* a short write first, as a filling disk does */
    ssize_t w = write(fd, buf, n);
    if (w > 0) fault_budget -= w;
    return w;
}

static int nospace_fsync(int fd)
{
    errno = ENOSPC;
    return -1;
}

static int failing_rename(const char *from, const char *to)
{
    if (--fault_rename_left == 0) {
        errno = EIO;
        return -1;
    }
    return rename(from, to);
}

static void fs_fault_nospace(int64_t budget)
{
    fault_budget = budget;
    blob_fs_fault.write = nospace_write;
}

static void fs_fault_sync_nospace(void)
{
    blob_fs_fault.fsync = nospace_fsync;
}

static void fs_fault_rename(int n)
{
    fault_rename_left = n;
    blob_fs_fault.rename = failing_rename;
}

static void fs_fault_reset(void)
{
    blob_fs_fault = blob_fs_fault_default;
}

/* One line per backend. */
static const struct backend backends[] = {
    {"fs", BLOB_CAP_RANGE, false, fs_create, fs_destroy, fs_leftovers, fs_fault_nospace,
     fs_fault_sync_nospace, fs_fault_rename, fs_fault_reset},
};

/* The backend whose group is running (cmocka passes no argument to a group). */
static const struct backend *be;

/* --- fixture ------------------------------------------------------------------------------- */

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || be->create(f)) {
        free(f);
        return -1;
    }
    struct err e = ERR_INIT;
    if (blob_store_open(f->uri, &f->bs, &e)) {
        fprintf(stderr, "blob_store_open('%s'): %s\n", f->uri, e.msg);
        be->destroy(f);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (be->fault_reset) be->fault_reset();
    blob_store_close(f->bs);
    int rc = be->destroy(f);
    free(f);
    return rc;
}

/* --- helpers ------------------------------------------------------------------------------- */

/* Stores `size` generated bytes of `seed` in chunks of the sizes in `chunks` (cycled). */
static int put_gen(struct blob_store *bs, const char *bucket, const char *key, unsigned seed,
                   int64_t size, const size_t *chunks, size_t nchunks, char sha[65],
                   struct blob_info *info, struct err *e)
{
    return put_chunks(bs, bucket, key, seed, size, chunks, nchunks, sha, info, NULL, e);
}

static int put_simple(struct blob_store *bs, const char *bucket, const char *key, unsigned seed,
                      int64_t size, char sha[65], struct blob_info *info, struct err *e)
{
    static const size_t chunk[] = {4096};
    return put_gen(bs, bucket, key, seed, size, chunk, 1, sha, info, e);
}

static int put_str(struct blob_store *bs, const char *bucket, const char *key, const char *s,
                   struct err *e)
{
    struct blob_writer *w;
    int rc = blob_put_begin(bs, bucket, key, &w, e);
    if (!rc && (rc = blob_put_write(w, s, strlen(s), e)))
        blob_put_abort(w);
    else if (!rc)
        rc = blob_put_commit(w, NULL, e);
    return rc;
}

/* Reads the reader to its end with buffers of the sizes in `bufs` (cycled), checking every
 * byte against the generator from `off`; returns the bytes read. */
static int64_t read_check(struct blob_reader *r, unsigned seed, int64_t off, const size_t *bufs,
                          size_t nbufs, char sha[65])
{
    size_t max = 0;
    for (size_t i = 0; i < nbufs; i++)
        max = bufs[i] > max ? bufs[i] : max;
    unsigned char *buf = malloc(max), *want = malloc(max);
    assert_true(buf && want);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestInit_ex(md, EVP_sha256(), NULL), 1);
    int64_t total = 0;
    struct err e = ERR_INIT;
    for (size_t i = 0;; i++) {
        ssize_t n = blob_read(r, buf, bufs[i % nbufs], &e);
        if (n < 0) fail_msg("blob_read: %zd (%s)", n, e.msg);
        if (n == 0) break;
        fill(seed, off + total, want, (size_t)n);
        if (memcmp(buf, want, (size_t)n))
            fail_msg("bytes differ in [%lld, %lld)", (long long)(off + total),
                     (long long)(off + total + n));
        EVP_DigestUpdate(md, buf, (size_t)n);
        total += n;
    }
    unsigned char sum[32];
    EVP_DigestFinal_ex(md, sum, NULL);
    EVP_MD_CTX_free(md);
    if (sha) hex32(sum, sha);
    free(buf);
    free(want);
    return total;
}

static bool visible(struct blob_store *bs, const char *bucket, const char *key)
{
    struct blob_info info;
    struct err e = ERR_INIT;
    int rc = blob_head(bs, bucket, key, &info, &e);
    if (rc && rc != ERR_NOTFOUND) fail_msg("blob_head: %d (%s)", rc, e.msg);
    return rc == 0;
}

static size_t count_listed(struct blob_store *bs, const char *bucket)
{
    struct blob_list l;
    struct err e = ERR_INIT;
    ok(blob_list(bs, bucket, NULL, NULL, BLOB_LIST_MAX, &l, &e), &e, "blob_list");
    size_t n = l.n;
    blob_list_release(&l);
    return n;
}

static void no_leftovers(const struct fixture *f)
{
    if (be->leftovers) assert_int_equal(be->leftovers(f), 0);
}

/* --- the interface ------------------------------------------------------------------------- */

static void test_open_uris(void **state)
{
    struct fixture *f = *state;
    struct blob_store *bs = NULL;
    struct err e = ERR_INIT;
    refused(blob_store_open("s3://Bad_Bucket?endpoint=http://x", &bs, &e), &e, ERR_INVALID,
            "the S3 bucket must match");
    assert_null(bs);
    err_clear(&e);
    refused(blob_store_open("nope:x", &bs, &e), &e, ERR_INVALID, "unknown scheme");
    err_clear(&e);
    refused(blob_store_open("fs:", &bs, &e), &e, ERR_INVALID, "fs:DIR");
    err_clear(&e);
    refused(blob_store_open("", &bs, &e), &e, ERR_INVALID, NULL);
    assert_int_equal(blob_caps(f->bs), be->caps);

    /* A second handle on the same store sees the same objects. */
    ok(put_str(f->bs, "bk", "shared", "x", &e), &e, "put");
    ok(blob_store_open(f->uri, &bs, &e), &e, "open again");
    assert_true(visible(bs, "bk", "shared"));
    blob_store_close(bs);
    blob_store_close(NULL);
}

static void test_roundtrip_large(void **state)
{
    struct fixture *f = *state;
    static const size_t wchunks[] = {1, 4093, 65537, 7, 300001, 131075};
    static const size_t rbufs[] = {1, 8191, 65536, 100003, 3};
    const int64_t size = (5 << 20) + 12345;
    char sha[65], got_sha[65];
    struct blob_info info, info2;
    struct err e = ERR_INIT;
    ok(put_gen(f->bs, "data", "big/run-1/output.bin", 7, size, wchunks, ARRAY_SIZE(wchunks), sha,
               &info, &e),
       &e, "put");
    assert_int_equal(info.size, size);
    assert_string_equal(info.sha256, sha);

    struct blob_reader *r;
    ok(blob_open(f->bs, "data", "big/run-1/output.bin", 0, -1, &r, &info2, &e), &e, "open");
    assert_int_equal(info2.size, size);
    assert_string_equal(info2.sha256, sha);
    assert_int_equal(info2.modified_ms, info.modified_ms);
    assert_int_equal(read_check(r, 7, 0, rbufs, ARRAY_SIZE(rbufs), got_sha), size);
    assert_string_equal(got_sha, sha);
    char byte;
    assert_int_equal(blob_read(r, &byte, 1, &e), 0); /* stays at the end */
    blob_close(r);
    no_leftovers(f);
}

static void test_range_reads(void **state)
{
    struct fixture *f = *state;
    static const size_t rbufs[] = {777};
    const int64_t size = 10000;
    char sha[65];
    struct err e = ERR_INIT;
    ok(put_simple(f->bs, "bk", "ranged", 3, size, sha, NULL, &e), &e, "put");

    static const struct {
        int64_t off, len, want_len;
    } cases[] = {
        {0, 100, 100},      {5000, 1000, 1000},    {9990, -1, 10},
        {9000, 5000, 1000}, {0, -1, 10000},        {9999, 1, 1},
        {123, 0, 0},        {0, INT64_MAX, 10000}, {1, INT64_MAX, 9999},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct blob_reader *r;
        struct blob_info info;
        int64_t off, len;
        ok(blob_open(f->bs, "bk", "ranged", cases[i].off, cases[i].len, &r, &info, &e), &e, "open");
        assert_int_equal(info.size, size); /* info is the whole object's */
        assert_string_equal(info.sha256, sha);
        blob_reader_range(r, &off, &len);
        assert_int_equal(off, cases[i].off);
        assert_int_equal(len, cases[i].want_len);
        assert_int_equal(read_check(r, 3, cases[i].off, rbufs, 1, NULL), cases[i].want_len);
        blob_close(r);
    }

    /* The fd serves the same bytes (for sendfile), at absolute offsets. */
    struct blob_reader *r;
    ok(blob_open(f->bs, "bk", "ranged", 5000, 10, &r, NULL, &e), &e, "open");
    int fd = blob_reader_fd(r);
    if (fd >= 0) {
        unsigned char b[10], want[10];
        assert_int_equal(pread(fd, b, sizeof(b), 5000), 10);
        fill(3, 5000, want, sizeof(want));
        assert_memory_equal(b, want, sizeof(b));
    }
    blob_close(r);

    /* Past the end, and malformed ranges. */
    r = NULL;
    refused(blob_open(f->bs, "bk", "ranged", size, -1, &r, NULL, &e), &e, ERR_INVALID,
            "range starting at byte 10000");
    assert_string_equal(e.field, "range");
    assert_null(r);
    err_clear(&e);
    refused(blob_open(f->bs, "bk", "ranged", size + 1, 1, &r, NULL, &e), &e, ERR_INVALID,
            "bk/ranged");
    err_clear(&e);
    refused(blob_open(f->bs, "bk", "ranged", -1, 10, &r, NULL, &e), &e, ERR_INVALID, "range");
    err_clear(&e);
    refused(blob_open(f->bs, "bk", "ranged", 0, -2, &r, NULL, &e), &e, ERR_INVALID, "range");
    err_clear(&e);
    refused(blob_open(f->bs, "bk", "missing", 0, -1, &r, NULL, &e), &e, ERR_NOTFOUND, "bk/missing");
}

static void test_empty_object(void **state)
{
    struct fixture *f = *state;
    struct blob_info info;
    struct blob_writer *w;
    struct blob_reader *r;
    struct err e = ERR_INIT;
    ok(blob_put_begin(f->bs, "bk", "empty", &w, &e), &e, "begin");
    ok(blob_put_commit(w, &info, &e), &e, "commit");
    assert_int_equal(info.size, 0);
    assert_string_equal(info.sha256,
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    ok(blob_open(f->bs, "bk", "empty", 0, -1, &r, &info, &e), &e, "open");
    char b[4];
    assert_int_equal(blob_read(r, b, sizeof(b), &e), 0);
    blob_close(r);
    refused(blob_open(f->bs, "bk", "empty", 1, -1, &r, NULL, &e), &e, ERR_INVALID, "range");
}

static void test_head(void **state)
{
    struct fixture *f = *state;
    struct blob_info info, put;
    char sha[65];
    struct err e = ERR_INIT;
    refused(blob_head(f->bs, "bk", "a/missing", &info, &e), &e, ERR_NOTFOUND, "bk/a/missing");
    err_clear(&e);
    int64_t t0 = time_now_ms();
    ok(put_simple(f->bs, "bk", "a/present.txt", 11, 70001, sha, &put, &e), &e, "put");
    int64_t t1 = time_now_ms();
    ok(blob_head(f->bs, "bk", "a/present.txt", &info, &e), &e, "head");
    assert_int_equal(info.size, 70001);
    assert_string_equal(info.sha256, sha);
    assert_true(info.modified_ms >= t0 && info.modified_ms <= t1);
    assert_int_equal(info.modified_ms, put.modified_ms);
    /* A folder of objects is not an object. */
    refused(blob_head(f->bs, "bk", "a", &info, &e), &e, ERR_NOTFOUND, NULL);
}

static void test_delete(void **state)
{
    struct fixture *f = *state;
    static const size_t rbufs[] = {4096};
    char sha[65];
    struct err e = ERR_INIT;
    ok(put_simple(f->bs, "bk", "d/x/y/z", 5, 50000, sha, NULL, &e), &e, "put");
    ok(put_str(f->bs, "bk", "d/keep", "kept", &e), &e, "put");

    struct blob_reader *r;
    ok(blob_open(f->bs, "bk", "d/x/y/z", 0, -1, &r, NULL, &e), &e, "open");
    ok(blob_delete(f->bs, "bk", "d/x/y/z", &e), &e, "delete");
    assert_false(visible(f->bs, "bk", "d/x/y/z"));
    struct blob_reader *r2 = NULL;
    refused(blob_open(f->bs, "bk", "d/x/y/z", 0, -1, &r2, NULL, &e), &e, ERR_NOTFOUND, NULL);
    err_clear(&e);
    /* A reader opened before the delete reads the whole object. */
    char got[65];
    assert_int_equal(read_check(r, 5, 0, rbufs, 1, got), 50000);
    assert_string_equal(got, sha);
    blob_close(r);

    refused(blob_delete(f->bs, "bk", "d/x/y/z", &e), &e, ERR_NOTFOUND, "bk/d/x/y/z");
    err_clear(&e);
    refused(blob_delete(f->bs, "bk", "never", &e), &e, ERR_NOTFOUND, NULL);
    err_clear(&e);
    refused(blob_delete(f->bs, "bk", "d", &e), &e, ERR_NOTFOUND, NULL); /* a folder */
    err_clear(&e);
    refused(blob_delete(f->bs, "nobucket", "x", &e), &e, ERR_NOTFOUND, NULL);
    err_clear(&e);
    assert_true(visible(f->bs, "bk", "d/keep"));
    assert_int_equal(count_listed(f->bs, "bk"), 1);

    /* The names under d/x are free again: d/x can now be an object itself. */
    ok(put_str(f->bs, "bk", "d/x", "now an object", &e), &e, "put d/x");
    assert_true(visible(f->bs, "bk", "d/x"));
}

/* Keys of the list test, in the order they must come out (strcmp: '-' < '/' < '0'). */
static const char *const sorted_keys[] = {
    "a-c",
    "a/b",
    "a/c/d",
    "a0",
    "b",
    "logs-x",
    "logs/2024/01.txt",
    "logs/2024/02.txt",
    "logs/2025/01.txt",
    "logs0",
};

static void check_page(const struct blob_list *l, size_t from, size_t n, const char *next)
{
    assert_int_equal(l->n, n);
    for (size_t i = 0; i < n; i++) {
        const char *k = sorted_keys[from + i];
        char sha[65];
        sha_of(k, strlen(k), sha);
        assert_string_equal(l->items[i].key, k);
        assert_int_equal(l->items[i].info.size, (int64_t)strlen(k));
        assert_string_equal(l->items[i].info.sha256, sha);
    }
    if (next)
        assert_string_equal(l->next, next);
    else
        assert_null(l->next);
}

static void test_list(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    size_t n = ARRAY_SIZE(sorted_keys);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(sorted_keys[i - 1], sorted_keys[i]) < 0);
    /* Stored in a scrambled order, each object holding its own key. */
    for (size_t i = 0; i < n; i++) {
        const char *k = sorted_keys[(i * 7) % n];
        ok(put_str(f->bs, "lst", k, k, &e), &e, "put");
    }
    ok(put_str(f->bs, "other", "a/b", "not in lst", &e), &e, "put");

    struct blob_list l;
    ok(blob_list(f->bs, "lst", NULL, NULL, BLOB_LIST_MAX, &l, &e), &e, "list");
    check_page(&l, 0, n, NULL);
    blob_list_release(&l);

    /* Pages of 3: 3 + 3 + 3 + 1, each cursor the last key of its page. */
    const char *after = NULL;
    char cursor[64] = "";
    for (size_t from = 0; from < n; from += 3) {
        ok(blob_list(f->bs, "lst", "", after, 3, &l, &e), &e, "list page");
        size_t want = n - from < 3 ? n - from : 3;
        check_page(&l, from, want, from + 3 < n ? sorted_keys[from + 2] : NULL);
        if (l.next) snprintf(cursor, sizeof(cursor), "%s", l.next);
        after = cursor;
        blob_list_release(&l);
    }
    /* A page that ends exactly at the last key says there is no more. */
    ok(blob_list(f->bs, "lst", NULL, sorted_keys[4], 5, &l, &e), &e, "list");
    check_page(&l, 5, 5, NULL);
    blob_list_release(&l);

    static const struct {
        const char *prefix, *after;
        size_t from, n;
    } cases[] = {
        {"logs/", NULL, 6, 3},
        {"logs/2024/", NULL, 6, 2},
        {"logs", NULL, 5, 5},
        {"a/", NULL, 1, 2},
        {"a/c/d", NULL, 2, 1},
        {"a/c/", NULL, 2, 1},
        {"zzz", NULL, 0, 0},
        {"", "a/b", 2, 8},
        {NULL, "logs/2024/", 6, 4},
        {"logs/", "logs/2024/01.txt", 7, 2},
        {"a", "a/c", 2, 2},
        {NULL, "logs0", 0, 0},
        {"logs/2", "logs/2024", 6, 3},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        ok(blob_list(f->bs, "lst", cases[i].prefix, cases[i].after, BLOB_LIST_MAX, &l, &e), &e,
           "list prefix");
        check_page(&l, cases[i].from, cases[i].n, NULL);
        blob_list_release(&l);
    }
    ok(blob_list(f->bs, "lst", "logs/", NULL, 2, &l, &e), &e, "list");
    check_page(&l, 6, 2, "logs/2024/02.txt");
    blob_list_release(&l);
    ok(blob_list(f->bs, "lst", "logs/", "logs/2024/02.txt", 2, &l, &e), &e, "list");
    check_page(&l, 8, 1, NULL);
    blob_list_release(&l);

    ok(blob_list(f->bs, "unused", NULL, NULL, 10, &l, &e), &e, "list unused bucket");
    assert_int_equal(l.n, 0);
    assert_null(l.next);
    blob_list_release(&l);

    refused(blob_list(f->bs, "lst", NULL, NULL, 0, &l, &e), &e, ERR_INVALID, NULL);
    assert_string_equal(e.field, "limit");
    err_clear(&e);
    refused(blob_list(f->bs, "lst", NULL, NULL, BLOB_LIST_MAX + 1, &l, &e), &e, ERR_INVALID, NULL);
    err_clear(&e);
    refused(blob_list(f->bs, "Bad", NULL, NULL, 10, &l, &e), &e, ERR_INVALID, NULL);
    assert_string_equal(e.field, "bucket");
    err_clear(&e);
    refused(blob_list(f->bs, "lst", "a\nb", NULL, 10, &l, &e), &e, ERR_INVALID, NULL);
    assert_string_equal(e.field, "prefix");
    assert_int_equal(l.n, 0);
}

static void test_names_refused(void **state)
{
    struct fixture *f = *state;
    char long_key[BLOB_KEY_MAX + 2];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    const char *const bad_keys[] = {
        "../x",   "/abs",      "a//b",    "a/./b",  "a/..",
        ".",      "..",        "x/",      "",       "a\nb",
        "a\x01z", "tab\there", "del\x7f", long_key, "a/../../etc/passwd",
    };
    const char *const bad_buckets[] = {
        "A",    "a",
        "-ab",  ".ab",
        "a/b",  "ab_c",
        "ab c", "Upper",
        "b\n1", "0123456789012345678901234567890123456789012345678901234567890123",
        "",
    };
    struct err e = ERR_INIT;
    for (size_t i = 0; i < ARRAY_SIZE(bad_keys); i++) {
        struct blob_writer *w = (struct blob_writer *)1;
        struct blob_reader *r = (struct blob_reader *)1;
        struct blob_info info;
        refused(blob_put_begin(f->bs, "bk", bad_keys[i], &w, &e), &e, ERR_INVALID, "key");
        assert_string_equal(e.field, "key");
        assert_null(w);
        err_clear(&e);
        refused(blob_open(f->bs, "bk", bad_keys[i], 0, -1, &r, NULL, &e), &e, ERR_INVALID, NULL);
        assert_string_equal(e.field, "key");
        assert_null(r);
        err_clear(&e);
        refused(blob_head(f->bs, "bk", bad_keys[i], &info, &e), &e, ERR_INVALID, NULL);
        err_clear(&e);
        refused(blob_delete(f->bs, "bk", bad_keys[i], &e), &e, ERR_INVALID, NULL);
        err_clear(&e);
        refused(blob_name_check("bk", bad_keys[i], &e), &e, ERR_INVALID, NULL);
        err_clear(&e);
    }
    /* A control character is never echoed back into a message. */
    refused(blob_put_begin(f->bs, "bk", "a\nb", &(struct blob_writer *){NULL}, &e), &e, ERR_INVALID,
            "control characters");
    assert_null(strchr(e.msg, '\n'));
    err_clear(&e);
    for (size_t i = 0; i < ARRAY_SIZE(bad_buckets); i++) {
        struct blob_writer *w = NULL;
        refused(blob_put_begin(f->bs, bad_buckets[i], "k", &w, &e), &e, ERR_INVALID, "bucket");
        assert_string_equal(e.field, "bucket");
        err_clear(&e);
        refused(blob_bucket_check(bad_buckets[i], &e), &e, ERR_INVALID, NULL);
        err_clear(&e);
    }
    assert_int_equal(count_listed(f->bs, "bk"), 0);
    no_leftovers(f);

    /* What is allowed: dots inside names, 1024-byte keys, odd but printable bytes. */
    char key[BLOB_KEY_MAX + 1];
    memset(key, 'k', BLOB_KEY_MAX);
    key[BLOB_KEY_MAX] = '\0';
    for (int i = 200; i < BLOB_KEY_MAX - 20; i += 201)
        key[i] = '/'; /* segments of 200 bytes, which every filesystem takes */
    const char *const good[] = {"..a", "a.b/.c/d..", "sp ace/per%cent?#&=+", "ünï/cødé", key};
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        ok(put_str(f->bs, "b.k-1", good[i], "x", &e), &e, good[i]);
        assert_true(visible(f->bs, "b.k-1", good[i]));
    }
    assert_int_equal(count_listed(f->bs, "b.k-1"), ARRAY_SIZE(good));
}

static void test_uri_parse(void **state)
{
    char bucket[BLOB_BUCKET_MAX + 1];
    const char *key = NULL;
    struct err e = ERR_INIT;
    ok(blob_uri_parse("s3://bk/a/b.txt", bucket, &key, &e), &e, "parse");
    assert_string_equal(bucket, "bk");
    assert_string_equal(key, "a/b.txt");
    const char *const bad[] = {"s3://bk",  "s3://bk/", "s3://bk/../x", "https://h/x", "file:///x",
                               "s3://B/x", "",         "s3:///x"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        refused(blob_uri_parse(bad[i], bucket, &key, &e), &e, ERR_INVALID, NULL);
        assert_string_equal(e.field, "uri");
        err_clear(&e);
    }
}

static void test_abort_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    struct blob_writer *w;
    struct err e = ERR_INIT;
    unsigned char buf[8192];
    fill(1, 0, buf, sizeof(buf));
    ok(blob_put_begin(f->bs, "bk", "aborted/obj", &w, &e), &e, "begin");
    ok(blob_put_write(w, buf, sizeof(buf), &e), &e, "write");
    ok(blob_put_write(w, buf, sizeof(buf), &e), &e, "write");
    blob_put_abort(w);
    blob_put_abort(NULL);
    assert_false(visible(f->bs, "bk", "aborted/obj"));
    assert_int_equal(count_listed(f->bs, "bk"), 0);
    no_leftovers(f);
    /* Nor does an upload that was begun and abandoned at once. */
    ok(blob_put_begin(f->bs, "bk", "aborted/obj", &w, &e), &e, "begin");
    blob_put_abort(w);
    assert_false(visible(f->bs, "bk", "aborted/obj"));
    no_leftovers(f);
}

static void test_crash_mid_upload(void **state)
{
    struct fixture *f = *state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Another process uploads half an object and dies: no commit, no abort. */
        static unsigned char buf[1 << 16];
        struct blob_store *bs;
        struct blob_writer *w;
        if (blob_store_open(f->uri, &bs, NULL) || blob_put_begin(bs, "bk", "crash/obj", &w, NULL))
            _exit(1);
        for (int i = 0; i < 16; i++)
            if (blob_put_write(w, buf, sizeof(buf), NULL)) _exit(2);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    assert_false(visible(f->bs, "bk", "crash/obj"));
    assert_int_equal(count_listed(f->bs, "bk"), 0);
    if (be->leftovers)
        assert_int_equal(be->leftovers(f), 1); /* while this store is open, it is left alone */

    /* Reopened: the dead upload's remains are cleaned, nothing became visible. */
    blob_store_close(f->bs);
    f->bs = NULL;
    struct err e = ERR_INIT;
    ok(blob_store_open(f->uri, &f->bs, &e), &e, "reopen");
    no_leftovers(f);
    assert_false(visible(f->bs, "bk", "crash/obj"));
    ok(put_str(f->bs, "bk", "crash/obj", "whole", &e), &e, "put after");
    assert_true(visible(f->bs, "bk", "crash/obj"));
}

/* Opening the store again must not disturb an upload in progress in another handle. */
static void test_reopen_during_upload(void **state)
{
    struct fixture *f = *state;
    static const size_t rbufs[] = {5000};
    unsigned char buf[10000];
    struct blob_store *bs2;
    struct blob_writer *w;
    struct blob_reader *r;
    struct blob_info info;
    struct err e = ERR_INIT;
    ok(blob_put_begin(f->bs, "bk", "busy", &w, &e), &e, "begin");
    fill(12, 0, buf, sizeof(buf));
    ok(blob_put_write(w, buf, sizeof(buf), &e), &e, "write");
    ok(blob_store_open(f->uri, &bs2, &e), &e, "open a second handle");
    fill(12, sizeof(buf), buf, sizeof(buf));
    ok(blob_put_write(w, buf, sizeof(buf), &e), &e, "write");
    ok(blob_put_commit(w, &info, &e), &e, "commit");
    ok(blob_open(bs2, "bk", "busy", 0, -1, &r, NULL, &e), &e, "open");
    assert_int_equal(read_check(r, 12, 0, rbufs, 1, NULL), 20000);
    blob_close(r);
    blob_store_close(bs2);
}

static void test_nospace(void **state)
{
    struct fixture *f = *state;
    if (!be->fault_nospace) skip();
    char old_sha[65];
    struct blob_info info;
    struct err e = ERR_INIT;
    ok(put_simple(f->bs, "bk", "full", 9, 1000, old_sha, NULL, &e), &e, "put old");

    unsigned char buf[16384];
    fill(2, 0, buf, sizeof(buf));
    static const char *const keys[] = {"full", "new/one"};
    for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
        struct blob_writer *w;
        ok(blob_put_begin(f->bs, "bk", keys[k], &w, &e), &e, "begin");
        be->fault_nospace(65536 + 100);
        int rc = 0;
        for (int i = 0; i < 100 && !rc; i++)
            rc = blob_put_write(w, buf, sizeof(buf), &e);
        char name[64];
        snprintf(name, sizeof(name), "'bk/%s'", keys[k]);
        refused(rc, &e, ERR_NOSPACE, name);
        assert_int_equal(err_http_status(rc), 507);
        err_clear(&e);
        /* The upload is dead: more writes and the commit say so. */
        refused(blob_put_write(w, buf, 10, &e), &e, ERR_NOSPACE, "already failed");
        err_clear(&e);
        be->fault_reset();
        refused(blob_put_commit(w, &info, &e), &e, ERR_NOSPACE, NULL);
        err_clear(&e);
        no_leftovers(f);
    }
    /* The old object is intact, the new one never appeared. */
    ok(blob_head(f->bs, "bk", "full", &info, &e), &e, "head");
    assert_int_equal(info.size, 1000);
    assert_string_equal(info.sha256, old_sha);
    assert_false(visible(f->bs, "bk", "new/one"));
    assert_int_equal(count_listed(f->bs, "bk"), 1);

    /* Full at the sync of the commit. */
    struct blob_writer *w;
    ok(blob_put_begin(f->bs, "bk", "synced", &w, &e), &e, "begin");
    ok(blob_put_write(w, buf, sizeof(buf), &e), &e, "write");
    be->fault_sync_nospace();
    refused(blob_put_commit(w, &info, &e), &e, ERR_NOSPACE, "'bk/synced'");
    be->fault_reset();
    assert_false(visible(f->bs, "bk", "synced"));
    no_leftovers(f);
}

static void test_failed_rename(void **state)
{
    struct fixture *f = *state;
    if (!be->fault_rename) skip();
    char old_sha[65], new_sha[65];
    struct blob_info info;
    struct err e = ERR_INIT;
    ok(put_simple(f->bs, "bk", "renamed", 4, 3000, old_sha, NULL, &e), &e, "put old");
    be->fault_rename(1);
    refused(put_simple(f->bs, "bk", "renamed", 5, 4000, new_sha, NULL, &e), &e, ERR_IO,
            strerror(EIO));
    err_clear(&e);
    be->fault_rename(1);
    refused(put_simple(f->bs, "bk", "fresh", 5, 4000, new_sha, NULL, &e), &e, ERR_IO, NULL);
    be->fault_reset();
    err_clear(&e);
    ok(blob_head(f->bs, "bk", "renamed", &info, &e), &e, "head");
    assert_int_equal(info.size, 3000);
    assert_string_equal(info.sha256, old_sha);
    assert_false(visible(f->bs, "bk", "fresh"));
    no_leftovers(f);
}

static void test_overwrite_keeps_old_until_commit(void **state)
{
    struct fixture *f = *state;
    static const size_t rbufs[] = {1000};
    char v1[65], v2[65], got[65];
    struct blob_info info;
    struct err e = ERR_INIT;
    ok(put_simple(f->bs, "bk", "doc", 1, 100000, v1, NULL, &e), &e, "put v1");

    struct blob_writer *w;
    unsigned char buf[25000];
    ok(blob_put_begin(f->bs, "bk", "doc", &w, &e), &e, "begin v2");
    for (int i = 0; i < 2; i++) {
        fill(2, i * (int64_t)sizeof(buf), buf, sizeof(buf));
        ok(blob_put_write(w, buf, sizeof(buf), &e), &e, "write v2");
    }

    /* While v2 is being written, v1 is what everyone sees. */
    ok(blob_head(f->bs, "bk", "doc", &info, &e), &e, "head");
    assert_string_equal(info.sha256, v1);
    struct blob_reader *r;
    ok(blob_open(f->bs, "bk", "doc", 0, -1, &r, &info, &e), &e, "open v1");
    unsigned char first[10], want[10];
    assert_int_equal(blob_read(r, first, sizeof(first), &e), 10);
    fill(1, 0, want, sizeof(want));
    assert_memory_equal(first, want, sizeof(first));

    ok(blob_put_commit(w, &info, &e), &e, "commit v2");
    assert_int_equal(info.size, 50000);
    snprintf(v2, sizeof(v2), "%s", info.sha256);
    assert_string_not_equal(v1, v2);

    /* The reader opened before the commit still reads v1, to its end. */
    assert_int_equal(read_check(r, 1, 10, rbufs, 1, NULL), 100000 - 10);
    blob_close(r);
    /* Everyone else now gets v2. */
    ok(blob_head(f->bs, "bk", "doc", &info, &e), &e, "head");
    assert_int_equal(info.size, 50000);
    assert_string_equal(info.sha256, v2);
    ok(blob_open(f->bs, "bk", "doc", 0, -1, &r, NULL, &e), &e, "open v2");
    assert_int_equal(read_check(r, 2, 0, rbufs, 1, got), 50000);
    assert_string_equal(got, v2);
    blob_close(r);
    assert_int_equal(count_listed(f->bs, "bk"), 1);
    no_leftovers(f);
}

static void test_name_conflicts(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    ok(put_str(f->bs, "bk", "cf/a/b", "deep", &e), &e, "put a/b");
    int rc = put_str(f->bs, "bk", "cf/a", "shallow", &e);
    if (be->nested_names)
        ok(rc, &e, "put a");
    else
        refused(rc, &e, ERR_CONFLICT, "bk/cf/a");
    err_clear(&e);
    rc = put_str(f->bs, "bk", "cf/a/b/c", "deeper", &e);
    if (be->nested_names)
        ok(rc, &e, "put a/b/c");
    else
        refused(rc, &e, ERR_CONFLICT, "'bk/cf/a/b' is an object");
    err_clear(&e);
    assert_true(visible(f->bs, "bk", "cf/a/b"));
    no_leftovers(f);
}

/* --- fs backend only ----------------------------------------------------------------------- */

static void fs_path(const struct fixture *f, const char *rel, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", fs_root(f), rel);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static void test_fs_layout(void **state)
{
    struct fixture *f = *state;
    struct err e = ERR_INIT;
    ok(put_str(f->bs, "bk", "dir/file.txt", "hello", &e), &e, "put");
    char path[PATH_MAX + 64], text[512] = "";
    fs_path(f, "bk/dir/file.txt", path, sizeof(path));
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fread(text, 1, sizeof(text) - 1, fp), 5);
    fclose(fp);
    assert_string_equal(text, "hello");
    fs_path(f, ".meta/bk/dir/file.txt", path, sizeof(path));
    fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t n = fread(text, 1, sizeof(text) - 1, fp);
    text[n] = '\0';
    fclose(fp);
    char sha[65];
    sha_of("hello", 5, sha);
    assert_non_null(strstr(text, sha));
    assert_non_null(strstr(text, "\"size\":5"));

    /* The fs backend keeps at most NAME_MAX bytes per segment. */
    char key[300];
    memset(key, 's', 256);
    key[256] = '\0';
    struct blob_writer *w = NULL;
    refused(blob_put_begin(f->bs, "bk", key, &w, &e), &e, ERR_INVALID, "255");
    assert_string_equal(e.field, "key");
    err_clear(&e);
    struct blob_info info;
    refused(blob_head(f->bs, "bk", key, &info, &e), &e, ERR_NOTFOUND, NULL);
}

static void test_fs_metadata_repaired(void **state)
{
    struct fixture *f = *state;
    char sha[65], path[PATH_MAX + 64];
    struct blob_info info;
    struct err e = ERR_INIT;

    /* The metadata's rename fails after the data's succeeded: the object is committed. */
    be->fault_rename(2);
    ok(put_simple(f->bs, "bk", "m/obj", 6, 20000, sha, &info, &e), &e, "put");
    be->fault_reset();
    assert_string_equal(info.sha256, sha);
    ok(blob_head(f->bs, "bk", "m/obj", &info, &e), &e, "head");
    assert_int_equal(info.size, 20000);
    assert_string_equal(info.sha256, sha);
    no_leftovers(f);

    /* Metadata lost, or garbage: rebuilt from the data. */
    fs_path(f, ".meta/bk/m/obj", path, sizeof(path));
    assert_int_equal(unlink(path), 0);
    ok(blob_head(f->bs, "bk", "m/obj", &info, &e), &e, "head");
    assert_string_equal(info.sha256, sha);
    assert_int_equal(access(path, F_OK), 0); /* and saved again */
    write_file(path, "{not json", 9);
    ok(blob_head(f->bs, "bk", "m/obj", &info, &e), &e, "head");
    assert_string_equal(info.sha256, sha);

    /* Stale metadata (the data was replaced, as by a crash between the two renames):
     * not trusted, though its size still matches. */
    char data[PATH_MAX + 64], tmp[PATH_MAX + 64];
    fs_path(f, "bk/m/obj", data, sizeof(data));
    fs_path(f, "replacement", tmp, sizeof(tmp));
    unsigned char *buf = malloc(20000);
    assert_non_null(buf);
    fill(8, 0, buf, 20000);
    write_file(tmp, buf, 20000);
    sha_of(buf, 20000, sha);
    free(buf);
    assert_int_equal(rename(tmp, data), 0);
    struct blob_list l;
    ok(blob_list(f->bs, "bk", NULL, NULL, 10, &l, &e), &e, "list");
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].info.sha256, sha);
    blob_list_release(&l);
    ok(blob_head(f->bs, "bk", "m/obj", &info, &e), &e, "head");
    assert_string_equal(info.sha256, sha);
}

/* --- main ---------------------------------------------------------------------------------- */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest conformance[] = {
        T(test_open_uris),
        T(test_roundtrip_large),
        T(test_range_reads),
        T(test_empty_object),
        T(test_head),
        T(test_delete),
        T(test_list),
        T(test_names_refused),
        T(test_uri_parse),
        T(test_abort_leaves_nothing),
        T(test_crash_mid_upload),
        T(test_reopen_during_upload),
        T(test_nospace),
        T(test_failed_rename),
        T(test_overwrite_keeps_old_until_commit),
        T(test_name_conflicts),
    };
    const struct CMUnitTest fs_only[] = {
        T(test_fs_layout),
        T(test_fs_metadata_repaired),
    };
    int failed = 0;
    for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
        be = &backends[i];
        char name[64];
        snprintf(name, sizeof(name), "blob conformance: %s", be->name);
        failed += _cmocka_run_group_tests(name, conformance, ARRAY_SIZE(conformance), NULL, NULL);
        if (!strcmp(be->name, "fs"))
            failed += _cmocka_run_group_tests("blob fs backend", fs_only, ARRAY_SIZE(fs_only), NULL,
                                              NULL);
    }
    return failed;
}
