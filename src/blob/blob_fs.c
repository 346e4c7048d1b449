/*
 * blob_fs.c - the "fs:DIR" blob backend: objects as files on a local disk.
 *
 * Layout under DIR (bucket names cannot start with '.', so none collides):
 *   <bucket>/<key>         the object's bytes, a plain file ('/' in keys = folders)
 *   .meta/<bucket>/<key>   its metadata, a small JSON file (no xattrs, so any filesystem
 *                          and a plain `cp -a` keep it):
 *                          {"v":1,"size":N,"sha256":"<hex>","modified_ms":N,"ino":N,"mtime_ns":N}
 *   .tmp/                  files being written: put-XXXXXX (data), meta-XXXXXX (metadata)
 *   .lock                  flock()ed shared by every open store, exclusive to clean .tmp
 *
 * Invariants:
 * - An object is visible exactly when its data file exists. A commit fsyncs the data in
 *   .tmp, writes and fsyncs the metadata in .tmp, renames the data into place (the one
 *   step that publishes it, atomically replacing an older object), fsyncs that folder,
 *   then renames the metadata into place. Delete unlinks the data first.
 * - Metadata names the data file it describes by inode, size and mtime (as git's index
 *   does). Metadata that does not match its data file (a crash or a race between the two
 *   renames, or a lost metadata file) is never served: the reader rehashes the data and
 *   writes the metadata again (repair). A reader checks the metadata against the file it
 *   holds open, so what it reports is what it reads.
 * - .tmp is emptied when a store is opened while no other handle holds DIR (exclusive
 *   lock): what is there then was left by a process that died mid-upload.
 * - Folders emptied by a delete are removed up to the bucket's; a commit whose folder
 *   vanished under it (a concurrent delete) makes it again and retries.
 * - Every write(), fsync() and rename() on the way to a commit goes through
 *   blob_fs_fault (blob_int.h), so tests can fail them.
 *
 * Limits: at most 255 bytes (NAME_MAX) per key segment; "a" and "a/b" cannot both exist
 * (ERR_CONFLICT). One server per DIR; several servers share an S3 store instead.
 */
#include "blob/blob_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

#define META_MAX 4096 /* bytes of a metadata file */
#define HASH_CHUNK (64 << 10)
#define INSTALL_TRIES 4 /* renames retried when a concurrent delete removed the folder */
#define ROOT_MAX 2048   /* DIR, so that DIR/.meta/<bucket>/<key> fits in PATH_MAX */

static ssize_t sys_write(int fd, const void *buf, size_t n)
{
    return write(fd, buf, n);
}

static int sys_fsync(int fd)
{
    return fsync(fd);
}

static int sys_rename(const char *from, const char *to)
{
    return rename(from, to);
}

const struct blob_fs_fault blob_fs_fault_default = {sys_write, sys_fsync, sys_rename};
struct blob_fs_fault blob_fs_fault = {sys_write, sys_fsync, sys_rename};

struct fs_store {
    struct blob_store base;
    char *root; /* DIR, absolute */
    char *tmp;  /* DIR/.tmp */
    char *meta; /* DIR/.meta */
    int lock_fd;
};

struct fs_writer {
    struct blob_writer base;
    struct fs_store *fs;
    char *bucket, *key;
    char *tmp;      /* the temp file, NULL once renamed or removed */
    int fd;         /* -1 once closed */
    int64_t size;   /* bytes written */
    EVP_MD_CTX *md; /* SHA-256 of those bytes */
    int failed;     /* the ERR_* that ended the upload, 0 while it lives */
};

struct fs_reader {
    struct blob_reader base;
    int fd;
    char *name; /* "bucket/key", for messages */
};

/* What the metadata file holds: the object's info and the stat of the file it describes. */
struct meta {
    struct blob_info info;
    int64_t ino;
    int64_t mtime_ns;
};

static struct fs_store *fs_of(struct blob_store *bs)
{
    if (bs->ops != &blob_fs_ops) abort();
    return (struct fs_store *)bs;
}

static struct fs_writer *writer_of(struct blob_writer *w)
{
    if (w->ops != &blob_fs_ops) abort();
    return (struct fs_writer *)w;
}

static struct fs_reader *reader_of(const struct blob_reader *r)
{
    if (r->ops != &blob_fs_ops) abort();
    return (struct fs_reader *)r;
}

/* --- errors and small helpers ----------------------------------------------------------------- */

/*
 * A failed system call: ERR_NOSPACE naming the object when the disk or quota is
 * full, else ERR_IO with what was done, the path (in `fmt`) and the reason.
 */
PRINTF_LIKE(5, 6)
static int sys_err(struct err *e, int errnum, const char *bucket, const char *key, const char *fmt,
                   ...)
{
    char what[PATH_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    /* EFBIG: a file size limit (quota, RLIMIT_FSIZE) is a full disk as far as the object goes. */
    if ((errnum == ENOSPC || errnum == EDQUOT || errnum == EFBIG) && key)
        return err_set(e, ERR_NOSPACE, "no space left to store object '%s/%s' (%s: %s)", bucket,
                       key, what, strerror(errnum));
    return err_set(e, ERR_IO, "%s: %s", what, strerror(errnum));
}

static int not_found(struct err *e, const char *bucket, const char *key)
{
    return err_set(e, ERR_NOTFOUND, "object '%s/%s' not found", bucket, key);
}

/* errno values that mean "no object by that name". */
static bool absent(int errnum)
{
    return errnum == ENOENT || errnum == ENOTDIR || errnum == EISDIR || errnum == ENAMETOOLONG ||
           errnum == ELOOP;
}

static char *data_path(const struct fs_store *fs, const char *bucket, const char *key)
{
    return xasprintf("%s/%s/%s", fs->root, bucket, key);
}

static char *meta_path(const struct fs_store *fs, const char *bucket, const char *key)
{
    return xasprintf("%s/%s/%s", fs->meta, bucket, key);
}

/* Writes all n bytes through the fault seam: 0 or an errno. */
static int write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        ssize_t w = blob_fs_fault.write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return w < 0 ? errno : EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync()s the folder holding `path` (its last '/' ends the folder): 0 or an errno. */
static int sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = xstrndup(path, slash && slash != path ? (size_t)(slash - path) : 1);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (fd < 0 || blob_fs_fault.fsync(fd)) rc = errno;
    if (fd >= 0) close(fd);
    free(dir);
    return rc;
}

/* ERR_CONFLICT: the filesystem cannot hold this key beside another one. */
static int conflict(struct err *e, const char *bucket, const char *key, const char *why)
{
    return err_set(e, ERR_CONFLICT, "object '%s/%s' cannot be stored in the fs blob store: %s",
                   bucket, key, why);
}

/* ERR_CONFLICT: `other` ("bucket/a") is an object, so it cannot be a folder too. */
static int conflict_with(struct err *e, const char *bucket, const char *key, const char *other)
{
    return err_set(e, ERR_CONFLICT,
                   "object '%s/%s' cannot be stored in the fs blob store: '%s' is an object, so "
                   "it cannot also be a folder",
                   bucket, key, other);
}

#define IS_FOLDER "it is a folder holding other objects"

/*
 * Makes the folders of `path` below its first `base` bytes (an existing folder),
 * fsyncing the parent of each folder it makes.
 */
static int make_parents(const char *path, size_t base, const char *bucket, const char *key,
                        struct err *e)
{
    char *p = xstrdup(path);
    int rc = 0;
    for (char *s = strchr(p + base + 1, '/'); s && !rc; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(p, 0700) == 0) {
            int errnum = sync_parent(p);
            if (errnum)
                rc = sys_err(e, errnum, bucket, key, "cannot sync the folder above '%s'", p);
        } else if (errno == EEXIST || errno == ENOTDIR) {
            struct stat st;
            if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
                rc = conflict_with(e, bucket, key, p + base + 1);
        } else {
            rc = sys_err(e, errno, bucket, key, "cannot create folder '%s'", p);
        }
        *s = '/';
    }
    free(p);
    return rc;
}

/*
 * Renames `from` into place at `to` (whose folders below `base` bytes are made
 * as needed), then fsyncs the folder of `to`.
 */
static int install(const char *from, const char *to, size_t base, const char *bucket,
                   const char *key, struct err *e)
{
    for (int tries = 1;; tries++) {
        int rc = make_parents(to, base, bucket, key, e);
        if (rc) return rc;
        if (blob_fs_fault.rename(from, to) == 0) break;
        int errnum = errno;
        if (errnum == ENOENT && tries < INSTALL_TRIES)
            continue; /* a delete removed the (empty) folder after make_parents */
        if (errnum == EISDIR || errnum == ENOTEMPTY || errnum == EEXIST)
            return conflict(e, bucket, key, IS_FOLDER);
        if (errnum == ENOTDIR) return conflict(e, bucket, key, "one of its folders is an object");
        return sys_err(e, errnum, bucket, key, "cannot rename '%s' to '%s'", from, to);
    }
    int errnum = sync_parent(to);
    return errnum ? sys_err(e, errnum, bucket, key, "cannot sync the folder of '%s'", to) : 0;
}

/* Removes the folders of `path` that are empty, deepest first, keeping its first `keep` bytes. */
static void prune(const char *path, size_t keep)
{
    char *p = xstrdup(path);
    for (char *s = strrchr(p, '/'); s && (size_t)(s - p) > keep; s = strrchr(p, '/')) {
        *s = '\0';
        if (rmdir(p) != 0) break;
    }
    free(p);
}

/* --- metadata --------------------------------------------------------------------------------- */

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static bool meta_matches(const struct meta *m, const struct stat *st)
{
    return m->ino == (int64_t)st->st_ino && m->info.size == (int64_t)st->st_size &&
           m->mtime_ns == mtime_ns(st);
}

static bool is_hex64(const char *s)
{
    if (strlen(s) != 64) return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return false;
    return true;
}

/* Reads a metadata file; false when it is missing or not what meta_write() writes. */
static bool meta_read(const char *path, struct meta *m)
{
    char text[META_MAX];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return false;
    ssize_t n;
    do
        n = read(fd, text, sizeof(text));
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0 || n == (ssize_t)sizeof(text)) return false;
    json_t *j = json_loadb(text, (size_t)n, 0, NULL);
    json_int_t size = 0, modified = 0, ino = 0, mns = 0;
    const char *sha = NULL;
    bool ok = j &&
              !json_unpack(j, "{s:I, s:s, s:I, s:I, s:I}", "size", &size, "sha256", &sha,
                           "modified_ms", &modified, "ino", &ino, "mtime_ns", &mns) &&
              is_hex64(sha);
    if (ok) {
        m->info.size = size;
        memcpy(m->info.sha256, sha, 65);
        m->info.modified_ms = modified;
        m->ino = ino;
        m->mtime_ns = mns;
    }
    json_decref(j);
    return ok;
}

/* Writes the metadata to a new temp file in .tmp, synced; *tmp_out is the caller's. */
static int meta_write(struct fs_store *fs, const char *bucket, const char *key,
                      const struct meta *m, char **tmp_out, struct err *e)
{
    json_t *j =
        json_pack("{s:i, s:I, s:s, s:I, s:I, s:I}", "v", 1, "size", (json_int_t)m->info.size,
                  "sha256", m->info.sha256, "modified_ms", (json_int_t)m->info.modified_ms, "ino",
                  (json_int_t)m->ino, "mtime_ns", (json_int_t)m->mtime_ns);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    char *tmp = xasprintf("%s/meta-XXXXXX", fs->tmp);
    int rc = 0, errnum = 0;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = sys_err(e, errno, bucket, key, "cannot create '%s'", tmp);
    } else if ((errnum = write_all(fd, text, strlen(text)))) {
        rc = sys_err(e, errnum, bucket, key, "cannot write '%s'", tmp);
    } else if (blob_fs_fault.fsync(fd)) {
        rc = sys_err(e, errno, bucket, key, "cannot sync '%s'", tmp);
    }
    if (fd >= 0) close(fd);
    if (rc && fd >= 0) unlink(tmp);
    if (rc) {
        free(tmp);
        tmp = NULL;
    }
    free(text);
    *tmp_out = tmp;
    return rc;
}

/* The SHA-256 and length of everything in fd. */
static int hash_fd(int fd, struct blob_info *info, const char *bucket, const char *key,
                   struct err *e)
{
    unsigned char *chunk = xmalloc(HASH_CHUNK);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = 0;
    int64_t size = 0;
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        rc = err_set(e, ERR_INTERNAL, "cannot start a SHA-256 digest");
        goto out;
    }
    for (;;) {
        ssize_t n = pread(fd, chunk, HASH_CHUNK, size);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = sys_err(e, errno, NULL, NULL, "cannot read object '%s/%s'", bucket, key);
            goto out;
        }
        if (n == 0) break;
        EVP_DigestUpdate(md, chunk, (size_t)n);
        size += n;
    }
    unsigned char sum[32];
    EVP_DigestFinal_ex(md, sum, NULL);
    blob_hex(sum, sizeof(sum), info->sha256);
    info->size = size;
out:
    EVP_MD_CTX_free(md);
    free(chunk);
    return rc;
}

/*
 * Rebuilds the metadata of the data file open as fd (whose stat is st) and
 * saves it, unless the name meanwhile refers to another file. Saving is best
 * effort: the info is right either way, and the next reader tries again.
 */
static int meta_repair(struct fs_store *fs, const char *bucket, const char *key, int fd,
                       const struct stat *st, struct blob_info *info, struct err *e)
{
    struct meta m = {.ino = (int64_t)st->st_ino, .mtime_ns = mtime_ns(st)};
    int rc = hash_fd(fd, &m.info, bucket, key, e);
    if (rc) return rc;
    m.info.modified_ms = m.mtime_ns / 1000000;
    *info = m.info;

    char *dpath = data_path(fs, bucket, key), *mpath = meta_path(fs, bucket, key), *tmp = NULL;
    struct stat now;
    struct err e2 = ERR_INIT;
    if (stat(dpath, &now) == 0 && now.st_ino == st->st_ino && now.st_size == m.info.size &&
        !meta_write(fs, bucket, key, &m, &tmp, &e2) &&
        !install(tmp, mpath, strlen(fs->meta), bucket, key, &e2)) {
        free(tmp);
        tmp = NULL;
    }
    if (e2.code) log_warn("blobs: metadata of '%s/%s' not saved: %s", bucket, key, e2.msg);
    if (tmp) unlink(tmp);
    free(tmp);
    free(dpath);
    free(mpath);
    return 0;
}

/*
 * Opens the object's data file and fills *info from its metadata (repaired if
 * stale). *fd_out gets the open file, or it is closed when fd_out is NULL.
 */
static int object_open(struct fs_store *fs, const char *bucket, const char *key, int *fd_out,
                       struct blob_info *info, struct err *e)
{
    char *dpath = data_path(fs, bucket, key), *mpath = NULL;
    int rc = 0;
    struct stat st;
    struct meta m;
    int fd = open(dpath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        rc = absent(errno) ? not_found(e, bucket, key)
                           : sys_err(e, errno, NULL, NULL, "cannot open '%s'", dpath);
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        rc = sys_err(e, errno, NULL, NULL, "cannot stat '%s'", dpath);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = not_found(e, bucket, key); /* a folder of other objects */
        goto out;
    }
    mpath = meta_path(fs, bucket, key);
    if (meta_read(mpath, &m) && meta_matches(&m, &st))
        *info = m.info;
    else
        rc = meta_repair(fs, bucket, key, fd, &st, info, e);
out:
    if (fd >= 0 && (rc || !fd_out)) close(fd);
    if (fd_out) *fd_out = rc ? -1 : fd;
    free(dpath);
    free(mpath);
    return rc;
}

/* --- store ------------------------------------------------------------------------------------ */

static int make_dir(const char *path, struct err *e)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST) return 0;
    return sys_err(e, errno, NULL, NULL, "cannot create folder '%s'", path);
}

/* Empties .tmp: only called while holding the exclusive lock. */
static void clean_tmp(struct fs_store *fs)
{
    DIR *d = opendir(fs->tmp);
    if (!d) return;
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            unlinkat(dirfd(d), de->d_name, 0) == 0)
            removed++;
    closedir(d);
    if (removed)
        log_info("blobs: removed %d unfinished upload file(s) from '%s'", removed, fs->tmp);
}

static void fs_close(struct blob_store *bs)
{
    struct fs_store *fs = fs_of(bs);
    if (fs->lock_fd >= 0) close(fs->lock_fd);
    free(fs->root);
    free(fs->tmp);
    free(fs->meta);
    free(fs);
}

static int flock_retry(int fd, int how)
{
    int rc;
    do
        rc = flock(fd, how);
    while (rc != 0 && errno == EINTR);
    return rc;
}

static int fs_open(const char *uri, struct blob_store **out, struct err *e)
{
    const char *dir = uri + strlen("fs:");
    if (!*dir) return err_set(e, ERR_INVALID, "blob store '%s': expected fs:DIR", uri);
    if (strlen(dir) > ROOT_MAX)
        return err_set(e, ERR_INVALID, "blob store '%s': the folder's path is longer than %d", uri,
                       ROOT_MAX);

    struct fs_store *fs = xcalloc(1, sizeof(*fs));
    fs->base.ops = &blob_fs_ops;
    fs->lock_fd = -1;
    int rc = 0;
    char *lock_path = NULL;

    /* DIR and its parents (mkdir -p). */
    char *p = xstrdup(dir);
    for (char *s = strchr(p + 1, '/'); s && !rc; s = strchr(s + 1, '/')) {
        *s = '\0';
        rc = make_dir(p, e);
        *s = '/';
    }
    if (!rc) rc = make_dir(p, e);
    free(p);
    if (rc) goto out;
    fs->root = realpath(dir, NULL);
    if (!fs->root) {
        rc = sys_err(e, errno, NULL, NULL, "cannot resolve '%s'", dir);
        goto out;
    }
    fs->tmp = xasprintf("%s/.tmp", fs->root);
    fs->meta = xasprintf("%s/.meta", fs->root);
    if ((rc = make_dir(fs->tmp, e)) || (rc = make_dir(fs->meta, e))) goto out;

    lock_path = xasprintf("%s/.lock", fs->root);
    fs->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fs->lock_fd < 0) {
        rc = sys_err(e, errno, NULL, NULL, "cannot open '%s'", lock_path);
        goto out;
    }
    /* Alone: what is in .tmp is left from a process that died. Else it may be another's. */
    if (flock(fs->lock_fd, LOCK_EX | LOCK_NB) == 0) clean_tmp(fs);
    if (flock_retry(fs->lock_fd, LOCK_SH) != 0)
        rc = sys_err(e, errno, NULL, NULL, "cannot lock '%s'", lock_path);
out:
    free(lock_path);
    if (rc)
        fs_close(&fs->base);
    else
        *out = &fs->base;
    return rc;
}

/* --- writing ---------------------------------------------------------------------------------- */

/*
 * Refuses, before anything is uploaded, a key the filesystem cannot hold:
 * a segment over NAME_MAX, or a name that is (or lies under) another object.
 */
static int check_storable(struct fs_store *fs, const char *bucket, const char *key, struct err *e)
{
    for (const char *s = key;;) {
        size_t n = strcspn(s, "/");
        if (n > NAME_MAX)
            return err_field(e, ERR_INVALID, "key",
                             "invalid key: the fs blob store takes at most %d bytes per segment",
                             NAME_MAX);
        if (!s[n]) break;
        s += n + 1;
    }
    char *path = data_path(fs, bucket, key);
    size_t base = strlen(fs->root) + 1 + strlen(bucket);
    struct stat st;
    int rc = 0;
    for (char *s = strchr(path + base + 1, '/'); s && !rc; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (lstat(path, &st) != 0) {
            *s = '/';
            break; /* nothing further down exists yet */
        }
        if (!S_ISDIR(st.st_mode)) rc = conflict_with(e, bucket, key, path + strlen(fs->root) + 1);
        *s = '/';
    }
    if (!rc && lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
        rc = conflict(e, bucket, key, IS_FOLDER);
    free(path);
    return rc;
}

static void writer_free(struct fs_writer *w)
{
    if (w->fd >= 0) close(w->fd);
    if (w->tmp) unlink(w->tmp);
    EVP_MD_CTX_free(w->md);
    free(w->tmp);
    free(w->bucket);
    free(w->key);
    free(w);
}

static int fs_put_begin(struct blob_store *bs, const char *bucket, const char *key,
                        struct blob_writer **out, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    int rc = check_storable(fs, bucket, key, e);
    if (rc) return rc;
    struct fs_writer *w = xcalloc(1, sizeof(*w));
    w->base.ops = &blob_fs_ops;
    w->fs = fs;
    w->bucket = xstrdup(bucket);
    w->key = xstrdup(key);
    w->tmp = xasprintf("%s/put-XXXXXX", fs->tmp);
    w->fd = mkostemp(w->tmp, O_CLOEXEC);
    if (w->fd < 0) {
        rc = sys_err(e, errno, bucket, key, "cannot create '%s'", w->tmp);
        free(w->tmp);
        w->tmp = NULL;
        writer_free(w);
        return rc;
    }
    w->md = EVP_MD_CTX_new();
    if (!w->md || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
        writer_free(w);
        return err_set(e, ERR_INTERNAL, "cannot start a SHA-256 digest");
    }
    *out = &w->base;
    return 0;
}

/* Ends the upload after a failure: the temp file goes at once. */
static int writer_fail(struct fs_writer *w, int rc)
{
    close(w->fd);
    w->fd = -1;
    unlink(w->tmp);
    free(w->tmp);
    w->tmp = NULL;
    w->failed = rc;
    return rc;
}

static int dead(struct fs_writer *w, struct err *e)
{
    return err_set(e, w->failed, "the upload of object '%s/%s' already failed", w->bucket, w->key);
}

static int fs_put_write(struct blob_writer *bw, const void *data, size_t len, struct err *e)
{
    struct fs_writer *w = writer_of(bw);
    if (w->failed) return dead(w, e);
    int errnum = write_all(w->fd, data, len);
    if (errnum)
        return writer_fail(w, sys_err(e, errnum, w->bucket, w->key, "cannot write '%s'", w->tmp));
    EVP_DigestUpdate(w->md, data, len);
    w->size += (int64_t)len;
    return 0;
}

static int fs_put_commit(struct blob_writer *bw, struct blob_info *out, struct err *e)
{
    struct fs_writer *w = writer_of(bw);
    struct fs_store *fs = w->fs;
    char *dpath = NULL, *mpath = NULL, *meta_tmp = NULL;
    struct meta m = {.info = {.size = w->size}};
    struct stat st;
    unsigned char sum[32];
    int rc = 0;
    if (w->failed) {
        rc = dead(w, e);
        goto out;
    }
    if (blob_fs_fault.fsync(w->fd) != 0) {
        rc = sys_err(e, errno, w->bucket, w->key, "cannot sync '%s'", w->tmp);
        goto out;
    }
    if (fstat(w->fd, &st) != 0) {
        rc = sys_err(e, errno, NULL, NULL, "cannot stat '%s'", w->tmp);
        goto out;
    }
    EVP_DigestFinal_ex(w->md, sum, NULL);
    blob_hex(sum, sizeof(sum), m.info.sha256);
    m.info.modified_ms = time_now_ms();
    m.ino = (int64_t)st.st_ino;
    m.mtime_ns = mtime_ns(&st);
    rc = meta_write(fs, w->bucket, w->key, &m, &meta_tmp, e);
    if (rc) goto out;

    /* The switch: from here on the new object is what readers get. */
    dpath = data_path(fs, w->bucket, w->key);
    rc = install(w->tmp, dpath, strlen(fs->root), w->bucket, w->key, e);
    if (rc && access(w->tmp, F_OK) != 0) {
        free(w->tmp); /* renamed before the folder's sync failed: it is the object now */
        w->tmp = NULL;
    }
    if (rc) goto out;
    free(w->tmp);
    w->tmp = NULL;

    /* Metadata that fails to land is rebuilt by the next reader (see the top of the file). */
    struct err e2 = ERR_INIT;
    mpath = meta_path(fs, w->bucket, w->key);
    if (install(meta_tmp, mpath, strlen(fs->meta), w->bucket, w->key, &e2) == 0) {
        free(meta_tmp);
        meta_tmp = NULL;
    } else {
        log_warn("blobs: metadata of '%s/%s' not saved, to be rebuilt: %s", w->bucket, w->key,
                 e2.msg);
    }
    *out = m.info;
out:
    if (meta_tmp) unlink(meta_tmp);
    free(meta_tmp);
    free(dpath);
    free(mpath);
    writer_free(w);
    return rc;
}

static void fs_put_abort(struct blob_writer *bw)
{
    writer_free(writer_of(bw));
}

/* --- reading ---------------------------------------------------------------------------------- */

static int fs_read_open(struct blob_store *bs, const char *bucket, const char *key, int64_t off,
                        int64_t len, struct blob_reader **out, struct blob_info *info,
                        struct err *e)
{
    int fd;
    int64_t end;
    int rc = object_open(fs_of(bs), bucket, key, &fd, info, e);
    if (rc) return rc;
    rc = blob_range_resolve(bucket, key, info->size, off, len, &end, e);
    if (rc) {
        close(fd);
        return rc;
    }
    struct fs_reader *r = xcalloc(1, sizeof(*r));
    r->base = (struct blob_reader){&blob_fs_ops, off, end, off};
    r->fd = fd;
    r->name = xasprintf("%s/%s", bucket, key);
    *out = &r->base;
    return 0;
}

static ssize_t fs_read(struct blob_reader *br, void *buf, size_t n, struct err *e)
{
    struct fs_reader *r = reader_of(br);
    ssize_t got;
    do
        got = pread(r->fd, buf, n, r->base.pos);
    while (got < 0 && errno == EINTR);
    if (got < 0) return sys_err(e, errno, NULL, NULL, "cannot read object '%s'", r->name);
    return got;
}

static int fs_reader_fd(const struct blob_reader *br)
{
    return reader_of(br)->fd;
}

static void fs_read_close(struct blob_reader *br)
{
    struct fs_reader *r = reader_of(br);
    close(r->fd);
    free(r->name);
    free(r);
}

/* --- the rest --------------------------------------------------------------------------------- */

static int fs_head(struct blob_store *bs, const char *bucket, const char *key,
                   struct blob_info *info, struct err *e)
{
    return object_open(fs_of(bs), bucket, key, NULL, info, e);
}

static int fs_del(struct blob_store *bs, const char *bucket, const char *key, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    char *dpath = data_path(fs, bucket, key), *mpath = meta_path(fs, bucket, key);
    int rc = 0;
    if (unlink(dpath) != 0) {
        rc = absent(errno) ? not_found(e, bucket, key)
                           : sys_err(e, errno, NULL, NULL, "cannot remove '%s'", dpath);
        goto out;
    }
    int errnum = sync_parent(dpath);
    if (errnum) rc = sys_err(e, errnum, NULL, NULL, "cannot sync the folder of '%s'", dpath);
    unlink(mpath);
    prune(dpath, strlen(fs->root) + 1 + strlen(bucket));
    prune(mpath, strlen(fs->meta) + 1 + strlen(bucket));
out:
    free(dpath);
    free(mpath);
    return rc;
}

/* A folder entry while listing: its name, with a '/' after a folder's, so that sorting
 * siblings by it sorts all the keys below them by the whole key. */
struct dent {
    char *name;
    bool dir;
};

static int dent_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dent *)a)->name, ((const struct dent *)b)->name);
}

struct walk {
    struct fs_store *fs;
    const char *bucket, *prefix, *after;
    size_t prefix_len, limit, cap;
    struct blob_list *out;
    struct err *e;
};

static int walk_add(struct walk *w, const char *key)
{
    struct blob_info info;
    struct err e2 = ERR_INIT;
    int rc = object_open(w->fs, w->bucket, key, NULL, &info, &e2);
    if (rc == ERR_NOTFOUND) return 0; /* deleted since the folder was read */
    if (rc) return err_set(w->e, rc, "%s", e2.msg);
    if (w->out->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->out->items = xrealloc(w->out->items, w->cap * sizeof(*w->out->items));
    }
    w->out->items[w->out->n++] = (struct blob_entry){xstrdup(key), info};
    return 0;
}

/*
 * Lists the folder of the bucket whose keys start with `rel` ("" or "a/b/"),
 * in key order: 0 when done, 1 when the page is full, or an ERR_*.
 */
static int walk_dir(struct walk *w, struct buf *rel)
{
    char *path = xasprintf("%s/%s/%s", w->fs->root, w->bucket, buf_str(rel));
    DIR *d = opendir(path);
    if (!d) {
        int rc = absent(errno) ? 0 : sys_err(w->e, errno, NULL, NULL, "cannot list '%s'", path);
        free(path);
        return rc;
    }
    struct dent *ents = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        bool dir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN || de->d_type == DT_LNK) {
            struct stat st;
            if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
            dir = S_ISDIR(st.st_mode);
            if (!dir && !S_ISREG(st.st_mode)) continue;
        } else if (!dir && de->d_type != DT_REG) {
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            ents = xrealloc(ents, cap * sizeof(*ents));
        }
        ents[n++] = (struct dent){xasprintf("%s%s", de->d_name, dir ? "/" : ""), dir};
    }
    closedir(d);
    free(path);
    qsort(ents, n, sizeof(*ents), dent_cmp);

    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        size_t keep = rel->len;
        buf_adds(rel, ents[i].name);
        const char *k = buf_str(rel);
        if (ents[i].dir) {
            /* Descend when the prefix and the folder agree, and not every key below it
             * sorts before `after`. */
            size_t m = rel->len < w->prefix_len ? rel->len : w->prefix_len;
            if (!strncmp(k, w->prefix, m) && strncmp(k, w->after, rel->len) >= 0)
                rc = walk_dir(w, rel);
        } else if (!strncmp(k, w->prefix, w->prefix_len) && strcmp(k, w->after) > 0) {
            if (w->out->n == w->limit) {
                w->out->next = xstrdup(w->out->items[w->out->n - 1].key);
                rc = 1;
            } else {
                rc = walk_add(w, k);
            }
        }
        rel->len = keep;
        rel->data[keep] = '\0';
    }
    for (size_t i = 0; i < n; i++)
        free(ents[i].name);
    free(ents);
    return rc;
}

static int fs_list(struct blob_store *bs, const char *bucket, const char *prefix, const char *after,
                   size_t limit, struct blob_list *out, struct err *e)
{
    struct walk w = {fs_of(bs), bucket, prefix, after, strlen(prefix), limit, 0, out, e};
    struct buf rel = BUF_INIT;
    int rc = walk_dir(&w, &rel);
    buf_release(&rel);
    return rc < 0 ? rc : 0;
}

static int by_dirent_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* A folder that holds anything (an object, or a folder of one: deletes remove emptied ones). */
static bool folder_used(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return false;
    struct dirent *de;
    bool used = false;
    while (!used && (de = readdir(d)))
        used = strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return used;
}

static int fs_buckets(struct blob_store *bs, const char *after, size_t limit,
                      struct blob_list *out, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    struct dirent **all;
    int n = scandir(fs->root, &all, NULL, by_dirent_name);
    if (n < 0) return sys_err(e, errno, NULL, NULL, "cannot list '%s'", fs->root);
    size_t cap = 0;
    for (int i = 0; i < n; i++) {
        const char *name = all[i]->d_name;
        char *path = xasprintf("%s/%s", fs->root, name);
        struct stat st;
        /* not its housekeeping (.meta, .tmp: no bucket starts with '.'), nor a stray file */
        bool bucket = !blob_bucket_check(name, NULL) && strcmp(name, after) > 0 &&
                      lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && folder_used(path);
        free(path);
        if (bucket && out->n == limit) {
            out->next = xstrdup(out->items[out->n - 1].key);
        } else if (bucket && !out->next) {
            if (out->n == cap) {
                cap = cap ? 2 * cap : 16;
                out->items = xrealloc(out->items, cap * sizeof(*out->items));
            }
            out->items[out->n++] = (struct blob_entry){.key = xstrdup(name)};
        }
        free(all[i]);
    }
    free(all);
    return 0;
}

const struct blob_ops blob_fs_ops = {
    .scheme = "fs",
    .caps = BLOB_CAP_RANGE,
    .open = fs_open,
    .close = fs_close,
    .put_begin = fs_put_begin,
    .put_write = fs_put_write,
    .put_commit = fs_put_commit,
    .put_abort = fs_put_abort,
    .read_open = fs_read_open,
    .read = fs_read,
    .reader_fd = fs_reader_fd,
    .read_close = fs_read_close,
    .head = fs_head,
    .del = fs_del,
    .list = fs_list,
    .buckets = fs_buckets,
};
