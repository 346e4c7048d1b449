/*
 * sqlite_walbuf.c - see sqlite_walbuf.h.
 *
 * How SQLite's wal.c (walFrames) writes a transaction: for each new frame its 24-byte header,
 * then its page, appended; a page written again after it spilled to the WAL in the same
 * transaction is rewritten in place; the commit frame's header holds the database's size in
 * pages (bytes 4-7, zero in every other frame); after the commit frame, if pages were
 * rewritten in place, the headers from the first of them are written again with new checksums
 * (the frames read back first); with synchronous FULL, a sync. Then the frames are indexed in
 * shared memory and the transaction made visible there, after a memory barrier.
 *
 * So the WAL file's writes are gathered while each one continues or lands inside what is
 * gathered; the write that ends a commit frame sends all of it (and its error is the
 * commit's). From then until the next transaction's first write (at or past that commit's
 * end, or the WAL's header at offset 0 when the WAL restarts) writes go straight to the file:
 * they are the commit's rewritten checksums. A read, sync, size, truncate, file control or
 * close sends what is gathered first. Sending early is always safe (it is what SQLite does by
 * itself); sending late is not. As a backstop for a SQLite that wrote differently, the
 * database file's barrier (before the index makes anything visible) sends what its WAL still
 * holds, and stops the process if it cannot: a commit not in the file must not be seen, and
 * a process stopped there has acknowledged nothing of it (its recovery ignores the frames).
 */
#include "store/sqlite_walbuf.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xalloc.h"

/* The default (unix) VFS writes at most 0x1ffff bytes in one call (a page is 64 KiB at most),
   so a transaction's frames beyond ~31 pages of 4 KiB go out in several writes. */
#define GATHER_MAX 0x1ffff
#define FRAME_HEADER 24

struct wfile {
    sqlite3_file base;
    sqlite3_file *real;  /* the default VFS's file, in the same allocation, after this */
    struct wfile *wal;   /* a database file: its WAL file, while open */
    struct wfile *db;    /* a WAL file: its database file */
    unsigned char *buf;  /* a WAL file: bytes gathered for offsets off .. off + len */
    sqlite3_int64 off;
    int len;
    bool commit_next;    /* the last write was a commit frame's header */
    /* where the commit frame this handle sent last ends, until the next transaction's first
       write (0: none): writes before it, but at offset 0, go straight out */
    sqlite3_int64 commit_end;
};

static sqlite3_vfs *base_vfs;
static uint64_t n_commits, n_backstops; /* sqlite_walbuf_counts */
static sqlite3_vfs walbuf_vfs;
static sqlite3_io_methods file_methods; /* a database file: all passed on but the barrier */
static sqlite3_io_methods wal_methods;

#define REAL(f) (((struct wfile *)(f))->real)
#define RM(f) (REAL(f)->pMethods)

/* Writes what is gathered. What is gathered is always of the transaction being written (a
   commit is sent at its commit frame): a failed send fails that transaction, which SQLite
   then rolls back, so its bytes are dropped (kept, the barrier would try them again). */
static int send(struct wfile *w)
{
    if (!w->len)
        return SQLITE_OK;
    int rc = RM(w)->xWrite(w->real, w->buf, w->len, w->off);
    w->len = 0;
    return rc;
}

static int gather(struct wfile *w, const void *p, int n, sqlite3_int64 ofs)
{
    if (w->len && ofs >= w->off && ofs <= w->off + w->len && ofs + n <= w->off + GATHER_MAX) {
        memcpy(w->buf + (ofs - w->off), p, (size_t)n);
        if (ofs + n > w->off + w->len)
            w->len = (int)(ofs + n - w->off);
        return SQLITE_OK;
    }
    int rc = send(w);
    if (rc || n > GATHER_MAX)
        return rc ? rc : RM(w)->xWrite(w->real, p, n, ofs);
    if (!w->buf)
        w->buf = xmalloc(GATHER_MAX);
    memcpy(w->buf, p, (size_t)n);
    w->off = ofs;
    w->len = n;
    return SQLITE_OK;
}

static int wal_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 ofs)
{
    struct wfile *w = (struct wfile *)f;
    if (ofs != 0 && ofs < w->commit_end) /* the last commit's checksums, rewritten */
        return RM(w)->xWrite(w->real, p, n, ofs);
    w->commit_end = 0; /* the next transaction */
    const unsigned char *b = p;
    bool commit_header = n == FRAME_HEADER && (b[4] | b[5] | b[6] | b[7]);
    int rc = gather(w, p, n, ofs);
    if (!rc && w->commit_next && !commit_header) { /* the commit frame's page */
        if ((rc = send(w)) == SQLITE_OK) { /* else SQLite rolls the transaction back */
            w->commit_end = ofs + n;
            __atomic_add_fetch(&n_commits, 1, __ATOMIC_RELAXED);
        }
    }
    w->commit_next = commit_header && !rc;
    return rc;
}

static int wal_read(sqlite3_file *f, void *p, int n, sqlite3_int64 ofs)
{
    int rc = send((struct wfile *)f);
    return rc ? rc : RM(f)->xRead(REAL(f), p, n, ofs);
}

static int wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    int rc = send((struct wfile *)f);
    return rc ? rc : RM(f)->xTruncate(REAL(f), size);
}

static int wal_sync(sqlite3_file *f, int flags)
{
    int rc = send((struct wfile *)f);
    return rc ? rc : RM(f)->xSync(REAL(f), flags);
}

static int wal_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    int rc = send((struct wfile *)f);
    return rc ? rc : RM(f)->xFileSize(REAL(f), size);
}

static int wal_file_control(sqlite3_file *f, int op, void *arg)
{
    int rc = send((struct wfile *)f);
    return rc ? rc : RM(f)->xFileControl(REAL(f), op, arg);
}

static int wal_fetch(sqlite3_file *f, sqlite3_int64 ofs, int n, void **pp)
{
    int rc = send((struct wfile *)f);
    return rc ? rc : RM(f)->xFetch(REAL(f), ofs, n, pp);
}

static int any_close(sqlite3_file *f)
{
    struct wfile *w = (struct wfile *)f;
    int rc = send(w);
    if (w->db)
        w->db->wal = NULL;
    if (w->wal)
        w->wal->db = NULL;
    free(w->buf);
    w->buf = NULL;
    int crc = RM(w)->xClose(w->real);
    return rc ? rc : crc;
}

static void file_barrier(sqlite3_file *f)
{
    struct wfile *w = (struct wfile *)f;
    if (w->wal && w->wal->len) {
        __atomic_add_fetch(&n_backstops, 1, __ATOMIC_RELAXED);
        int len = w->wal->len, rc = send(w->wal);
        if (rc != SQLITE_OK)
            die("cannot write %d bytes of the store's WAL before a commit becomes visible: %s",
                len, sqlite3_errstr(rc));
    }
    RM(f)->xShmBarrier(REAL(f));
}

/* Passed on unchanged. */
static int any_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 ofs)
{
    return RM(f)->xWrite(REAL(f), p, n, ofs);
}
static int any_read(sqlite3_file *f, void *p, int n, sqlite3_int64 ofs)
{
    return RM(f)->xRead(REAL(f), p, n, ofs);
}
static int any_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return RM(f)->xTruncate(REAL(f), size);
}
static int any_sync(sqlite3_file *f, int flags) { return RM(f)->xSync(REAL(f), flags); }
static int any_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return RM(f)->xFileSize(REAL(f), size);
}
static int any_lock(sqlite3_file *f, int lock) { return RM(f)->xLock(REAL(f), lock); }
static int any_unlock(sqlite3_file *f, int lock) { return RM(f)->xUnlock(REAL(f), lock); }
static int any_reserved(sqlite3_file *f, int *out)
{
    return RM(f)->xCheckReservedLock(REAL(f), out);
}
static int any_file_control(sqlite3_file *f, int op, void *arg)
{
    return RM(f)->xFileControl(REAL(f), op, arg);
}
static int any_sector_size(sqlite3_file *f) { return RM(f)->xSectorSize(REAL(f)); }
static int any_device(sqlite3_file *f) { return RM(f)->xDeviceCharacteristics(REAL(f)); }
static int any_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **pp)
{
    return RM(f)->xShmMap(REAL(f), page, size, extend, pp);
}
static int any_shm_lock(sqlite3_file *f, int ofs, int n, int flags)
{
    return RM(f)->xShmLock(REAL(f), ofs, n, flags);
}
static void any_shm_barrier(sqlite3_file *f) { RM(f)->xShmBarrier(REAL(f)); }
static int any_shm_unmap(sqlite3_file *f, int del) { return RM(f)->xShmUnmap(REAL(f), del); }
static int any_fetch(sqlite3_file *f, sqlite3_int64 ofs, int n, void **pp)
{
    return RM(f)->xFetch(REAL(f), ofs, n, pp);
}
static int any_unfetch(sqlite3_file *f, sqlite3_int64 ofs, void *p)
{
    return RM(f)->xUnfetch(REAL(f), ofs, p);
}

static int vfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
                    int *out_flags)
{
    (void)vfs;
    bool wal = flags & SQLITE_OPEN_WAL, db = flags & SQLITE_OPEN_MAIN_DB;
    if (!wal && !db) /* journals, temporary files: the default VFS's own, as they are */
        return base_vfs->xOpen(base_vfs, name, f, flags, out_flags);
    struct wfile *w = (struct wfile *)f;
    memset(w, 0, sizeof(*w));
    w->real = (sqlite3_file *)(w + 1);
    int rc = base_vfs->xOpen(base_vfs, name, w->real, flags, out_flags);
    if (rc != SQLITE_OK || !w->real->pMethods || w->real->pMethods->iVersion < 3) {
        if (rc == SQLITE_OK && w->real->pMethods) /* no shared memory: none of this applies */
            w->real->pMethods->xClose(w->real);
        w->base.pMethods = NULL;
        return rc == SQLITE_OK ? SQLITE_CANTOPEN : rc;
    }
    w->base.pMethods = wal ? &wal_methods : &file_methods;
    if (wal) {
        sqlite3_file *main = sqlite3_database_file_object(name);
        if (main && main->pMethods == &file_methods) {
            w->db = (struct wfile *)main;
            w->db->wal = w;
        }
    }
    return SQLITE_OK;
}

/* The rest of the VFS is the default one's. */
static int vfs_delete(sqlite3_vfs *v, const char *name, int sync)
{
    (void)v;
    return base_vfs->xDelete(base_vfs, name, sync);
}
static int vfs_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return base_vfs->xAccess(base_vfs, name, flags, out);
}
static int vfs_full_path(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return base_vfs->xFullPathname(base_vfs, name, n, out);
}
static void *vfs_dl_open(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return base_vfs->xDlOpen(base_vfs, name);
}
static void vfs_dl_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    base_vfs->xDlError(base_vfs, n, out);
}
static void (*vfs_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return base_vfs->xDlSym(base_vfs, h, sym);
}
static void vfs_dl_close(sqlite3_vfs *v, void *h)
{
    (void)v;
    base_vfs->xDlClose(base_vfs, h);
}
static int vfs_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return base_vfs->xRandomness(base_vfs, n, out);
}
static int vfs_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return base_vfs->xSleep(base_vfs, us);
}
static int vfs_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return base_vfs->xCurrentTime(base_vfs, out);
}
static int vfs_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return base_vfs->xGetLastError(base_vfs, n, out);
}
static int vfs_current_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return base_vfs->xCurrentTimeInt64(base_vfs, out);
}

static int register_rc;

static void register_once(void)
{
    base_vfs = sqlite3_vfs_find(NULL);
    if (!base_vfs) {
        register_rc = SQLITE_ERROR;
        return;
    }
    static const sqlite3_io_methods any = {
        .iVersion = 3,
        .xClose = any_close,
        .xRead = any_read,
        .xWrite = any_write,
        .xTruncate = any_truncate,
        .xSync = any_sync,
        .xFileSize = any_file_size,
        .xLock = any_lock,
        .xUnlock = any_unlock,
        .xCheckReservedLock = any_reserved,
        .xFileControl = any_file_control,
        .xSectorSize = any_sector_size,
        .xDeviceCharacteristics = any_device,
        .xShmMap = any_shm_map,
        .xShmLock = any_shm_lock,
        .xShmBarrier = any_shm_barrier,
        .xShmUnmap = any_shm_unmap,
        .xFetch = any_fetch,
        .xUnfetch = any_unfetch,
    };
    file_methods = any;
    file_methods.xShmBarrier = file_barrier;
    wal_methods = any;
    wal_methods.xRead = wal_read;
    wal_methods.xWrite = wal_write;
    wal_methods.xTruncate = wal_truncate;
    wal_methods.xSync = wal_sync;
    wal_methods.xFileSize = wal_file_size;
    wal_methods.xFileControl = wal_file_control;
    wal_methods.xFetch = wal_fetch;
    walbuf_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct wfile) + base_vfs->szOsFile,
        .mxPathname = base_vfs->mxPathname,
        .zName = SQLITE_WALBUF_VFS,
        .xOpen = vfs_open,
        .xDelete = vfs_delete,
        .xAccess = vfs_access,
        .xFullPathname = vfs_full_path,
        .xDlOpen = vfs_dl_open,
        .xDlError = vfs_dl_error,
        .xDlSym = vfs_dl_sym,
        .xDlClose = vfs_dl_close,
        .xRandomness = vfs_randomness,
        .xSleep = vfs_sleep,
        .xCurrentTime = vfs_current_time,
        .xGetLastError = vfs_last_error,
        .xCurrentTimeInt64 = vfs_current_time64,
    };
    register_rc = sqlite3_vfs_register(&walbuf_vfs, 0);
}

int sqlite_walbuf_register(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_once);
    return register_rc;
}

void sqlite_walbuf_counts(uint64_t *commits, uint64_t *backstops)
{
    *commits = __atomic_load_n(&n_commits, __ATOMIC_RELAXED);
    *backstops = __atomic_load_n(&n_backstops, __ATOMIC_RELAXED);
}
