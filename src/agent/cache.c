/*
 * cache.c - see cache.h. The index is a hash map sha256 -> struct centry;
 * recency is a counter stamped on each use (eviction scans for the smallest:
 * a cache holds few, large objects). An entry is either present (its file in
 * objects/) or being fetched (no file yet; `fetching` set, waiters queued on
 * it); an entry whose fetch is abandoned before it was ever present goes away.
 *
 * Mode 0444 keeps honest jobs from writing to an object through their link, but not a job
 * running as root or that chmods it: so an object's size and mtime are recorded when it
 * enters, and an object found changed (at a claim, or when a job unpins it) is removed, not
 * handed out. Recency is kept in the file's atime (set explicitly), not its mtime.
 */
#include "agent/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/hmap.h"
#include "common/log.h"
#include "common/xalloc.h"

struct centry {
    char sha[65];
    uint64_t size;
    uint64_t used;         /* recency stamp */
    struct timespec mtime; /* of the file when it entered: a change means a job wrote to it */
    int pins;
    bool present;
    bool fetching;
    char *tmp; /* while fetching */
    char *uri; /* the last uri it was reached through, for the report; NULL unknown */
    struct cache_waiter *waiters;
};

struct cache {
    char *dir, *objects, *tmpdir;
    int lock_fd;
    uint64_t max_bytes, bytes, objects_n;
    uint64_t clock, generation;
    struct hmap index;
    struct cache_stats st;
};

bool cache_sha_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f'))) return false;
    return n == 64;
}

static void entry_free(void *v)
{
    struct centry *ce = v;
    for (struct cache_waiter *w = ce->waiters; w; w = w->next)
        w->queued = false;
    free(ce->tmp);
    free(ce->uri);
    free(ce);
}

static struct centry *entry_new(struct cache *c, const char *sha)
{
    struct centry *ce = xcalloc(1, sizeof(*ce));
    memcpy(ce->sha, sha, 65);
    hmap_put(&c->index, sha, ce);
    return ce;
}

static void entry_drop(struct cache *c, struct centry *ce)
{
    hmap_del(&c->index, ce->sha);
    entry_free(ce);
    c->generation++;
}

char *cache_object_path(const struct cache *c, const char *sha)
{
    return xasprintf("%s/%s", c->objects, sha);
}

/* Removes least recently used unpinned objects while over the bound. */
static void enforce(struct cache *c)
{
    while (c->bytes > c->max_bytes) {
        struct centry *victim = NULL;
        for (struct hmap_entry *e = hmap_first(&c->index); e; e = hmap_next(&c->index, e)) {
            struct centry *ce = e->value;
            if (ce->present && ce->pins == 0 && !ce->fetching &&
                (!victim || ce->used < victim->used))
                victim = ce;
        }
        if (!victim) {
            log_debug("cache: %llu bytes held by running jobs, above the bound of %llu",
                      (unsigned long long)c->bytes, (unsigned long long)c->max_bytes);
            return;
        }
        char *path = cache_object_path(c, victim->sha);
        if (unlink(path) != 0 && errno != ENOENT)
            log_warn("cache: cannot remove '%s': %s", path, strerror(errno));
        else
            log_info("cache: evicted %s (%llu bytes)", victim->sha,
                     (unsigned long long)victim->size);
        free(path);
        c->bytes -= victim->size;
        c->objects_n--;
        c->st.evictions++;
        entry_drop(c, victim);
    }
}

/*
 * False (and the object removed from the cache) when a present object's file changed since
 * it entered, or is gone. Removing the cache's name disturbs no job: each has its own link
 * or copy. A pinned entry stays, not present, until its last pin goes.
 */
static bool intact(struct cache *c, struct centry *ce)
{
    char *p = cache_object_path(c, ce->sha);
    struct stat sb;
    bool ok = lstat(p, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == ce->size &&
              sb.st_mtim.tv_sec == ce->mtime.tv_sec && sb.st_mtim.tv_nsec == ce->mtime.tv_nsec;
    if (!ok) {
        log_warn("cache: %s changed since it entered (a job wrote to its input?): removed",
                 ce->sha);
        unlink(p);
        c->bytes -= ce->size;
        c->objects_n--;
        ce->present = false;
        c->generation++;
        if (ce->pins == 0 && !ce->fetching) entry_drop(c, ce);
    }
    free(p);
    return ok;
}

static int by_used(const void *a, const void *b)
{
    const struct centry *x = *(struct centry *const *)a, *y = *(struct centry *const *)b;
    return x->used < y->used ? -1 : x->used > y->used;
}

/* Reads objects/ into the index (recency from mtime); empties tmp/. */
static int rebuild(struct cache *c, struct err *e)
{
    DIR *d = opendir(c->tmpdir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char *p = xasprintf("%s/%s", c->tmpdir, de->d_name);
        unlink(p); /* a download cut short by a crash */
        free(p);
    }
    if (d) closedir(d);
    d = opendir(c->objects);
    if (!d) return err_set(e, ERR_IO, "cannot read '%s': %s", c->objects, strerror(errno));
    struct centry **all = NULL;
    size_t n = 0, cap = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        struct stat sb;
        char *p = xasprintf("%s/%s", c->objects, de->d_name);
        bool ok = cache_sha_valid(de->d_name) && lstat(p, &sb) == 0 && S_ISREG(sb.st_mode);
        if (!ok) {
            log_warn("cache: '%s' is not a cache object: left alone", p);
            free(p);
            continue;
        }
        free(p);
        struct centry *ce = entry_new(c, de->d_name);
        ce->present = true;
        ce->size = (uint64_t)sb.st_size;
        ce->mtime = sb.st_mtim;
        /* ns since the epoch: sorted below, then replaced by the clock */
        ce->used = (uint64_t)sb.st_atim.tv_sec * 1000000000u + (uint64_t)sb.st_atim.tv_nsec;
        c->bytes += ce->size;
        c->objects_n++;
        if (n == cap) all = xrealloc(all, (cap = cap ? cap * 2 : 64) * sizeof(*all));
        all[n++] = ce;
    }
    closedir(d);
    if (n) qsort(all, n, sizeof(*all), by_used);
    for (size_t i = 0; i < n; i++)
        all[i]->used = ++c->clock;
    free(all);
    return 0;
}

int cache_open(const char *dir, uint64_t max_bytes, struct cache **out, struct err *e)
{
    struct cache *c = xcalloc(1, sizeof(*c));
    int rc;
    c->lock_fd = -1;
    hmap_init(&c->index);
    c->dir = xstrdup(dir);
    c->objects = xasprintf("%s/objects", dir);
    c->tmpdir = xasprintf("%s/tmp", dir);
    c->max_bytes = max_bytes;
    if ((rc = mkdir_p(c->objects, e)) || (rc = mkdir_p(c->tmpdir, e))) goto out;
    char *lock = xasprintf("%s/cache.lock", dir);
    c->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (c->lock_fd < 0 || flock(c->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = err_set(e, ERR_IO,
                     errno == EWOULDBLOCK ? "the cache '%s' is in use by another agent"
                                          : "cannot lock the cache '%s': %s",
                     dir, strerror(errno));
        free(lock);
        goto out;
    }
    free(lock);
    if ((rc = rebuild(c, e))) goto out;
    enforce(c);
    c->generation = 1;
out:
    if (rc) {
        cache_free(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

void cache_free(struct cache *c)
{
    if (!c) return;
    hmap_release(&c->index, entry_free);
    if (c->lock_fd >= 0) close(c->lock_fd);
    free(c->dir);
    free(c->objects);
    free(c->tmpdir);
    free(c);
}

static void touch(struct cache *c, struct centry *ce)
{
    ce->used = ++c->clock;
    char *p = cache_object_path(c, ce->sha);
    /* the order survives a restart in the atime; the mtime stays what intact() compares */
    struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    utimensat(AT_FDCWD, p, times, AT_SYMLINK_NOFOLLOW);
    free(p);
}

enum cache_claim cache_claim(struct cache *c, const char *sha, struct cache_waiter *w,
                             char **tmp_path)
{
    struct centry *ce = hmap_get(&c->index, sha);
    if (ce && ce->present && !intact(c, ce)) ce = hmap_get(&c->index, sha); /* removed */
    if (ce && ce->present) {
        ce->pins++;
        c->st.hits++;
        touch(c, ce);
        return CACHE_HIT;
    }
    if (ce && ce->fetching) {
        w->next = NULL;
        struct cache_waiter **pw = &ce->waiters;
        while (*pw)
            pw = &(*pw)->next;
        *pw = w;
        w->queued = true;
        c->st.waits++;
        return CACHE_BUSY;
    }
    if (!ce) ce = entry_new(c, sha);
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint64_t)getpid() ^ c->clock;
    ce->fetching = true;
    free(ce->tmp);
    ce->tmp =
        xasprintf("%s/%s.%012llx", c->tmpdir, sha, (unsigned long long)(r & 0xffffffffffffULL));
    c->st.fetches++;
    *tmp_path = xstrdup(ce->tmp);
    return CACHE_FETCH;
}

/* Wakes every waiter of ce (they claim again from their own events). */
static void wake(struct centry *ce)
{
    struct cache_waiter *w = ce->waiters;
    ce->waiters = NULL;
    while (w) {
        struct cache_waiter *next = w->next;
        w->queued = false;
        w->next = NULL;
        w->fn(w->arg);
        w = next;
    }
}

int cache_commit(struct cache *c, const char *sha, const char *uri, struct err *e)
{
    struct centry *ce = hmap_get(&c->index, sha);
    if (!ce || !ce->fetching) return err_set(e, ERR_IO, "cache: %s is not being fetched", sha);
    char *dst = cache_object_path(c, sha);
    struct stat sb;
    int rc = 0;
    if (chmod(ce->tmp, 0444) != 0 || stat(ce->tmp, &sb) != 0 || rename(ce->tmp, dst) != 0) {
        rc = err_set(e, ERR_IO, "cannot move '%s' into the cache: %s", ce->tmp, strerror(errno));
        free(dst);
        cache_abandon(c, sha);
        return rc;
    }
    free(dst);
    free(ce->tmp);
    ce->tmp = NULL;
    ce->fetching = false;
    ce->present = true;
    ce->size = (uint64_t)sb.st_size;
    ce->mtime = sb.st_mtim;
    ce->pins++;
    ce->used = ++c->clock;
    if (uri) {
        free(ce->uri);
        ce->uri = xstrdup(uri);
    }
    c->bytes += ce->size;
    c->objects_n++;
    c->generation++;
    wake(ce);
    enforce(c);
    return 0;
}

void cache_abandon(struct cache *c, const char *sha)
{
    struct centry *ce = hmap_get(&c->index, sha);
    if (!ce || !ce->fetching) return;
    if (ce->tmp) unlink(ce->tmp);
    free(ce->tmp);
    ce->tmp = NULL;
    ce->fetching = false;
    struct cache_waiter *w = ce->waiters;
    ce->waiters = NULL;
    if (!ce->present) {
        hmap_del(&c->index, ce->sha);
        entry_free(ce);
    }
    /* woken after the entry is gone: the first to claim again fetches */
    while (w) {
        struct cache_waiter *next = w->next;
        w->queued = false;
        w->next = NULL;
        w->fn(w->arg);
        w = next;
    }
}

void cache_unwait(struct cache *c, struct cache_waiter *w)
{
    if (!w->queued) return;
    for (struct hmap_entry *e = hmap_first(&c->index); e; e = hmap_next(&c->index, e)) {
        struct centry *ce = e->value;
        for (struct cache_waiter **pw = &ce->waiters; *pw; pw = &(*pw)->next) {
            if (*pw == w) {
                *pw = w->next;
                w->next = NULL;
                w->queued = false;
                return;
            }
        }
    }
}

void cache_note_uri(struct cache *c, const char *sha, const char *uri)
{
    struct centry *ce = hmap_get(&c->index, sha);
    if (!ce || !uri || (ce->uri && !strcmp(ce->uri, uri))) return;
    free(ce->uri);
    ce->uri = xstrdup(uri);
    c->generation++;
}

void cache_unpin(struct cache *c, const char *sha)
{
    struct centry *ce = hmap_get(&c->index, sha);
    if (!ce || ce->pins <= 0) return;
    ce->pins--;
    if (ce->present) {
        if (!intact(c, ce)) return; /* removed (and dropped when unpinned) */
    } else if (ce->pins == 0 && !ce->fetching) {
        entry_drop(c, ce);
        return;
    }
    enforce(c);
}

int cache_link(struct cache *c, const char *sha, const char *dst, struct err *e)
{
    char *src = cache_object_path(c, sha);
    int rc = 0;
    if (link(src, dst) != 0) {
        if (errno == EXDEV)
            rc = 1;
        else
            rc = err_set(e, ERR_IO, "cannot link '%s' to '%s': %s", src, dst, strerror(errno));
    }
    free(src);
    return rc;
}

json_t *cache_report(const struct cache *c, size_t max)
{
    size_t n = 0;
    const struct centry **all = xcalloc(c->index.count + 1, sizeof(*all));
    for (struct hmap_entry *e = hmap_first(&c->index); e; e = hmap_next(&c->index, e)) {
        const struct centry *ce = e->value;
        if (ce->present) all[n++] = ce;
    }
    qsort(all, n, sizeof(*all), by_used);
    json_t *out = json_array();
    for (size_t i = n; i > 0 && json_array_size(out) < max; i--) {
        json_t *o = json_pack("{s:s}", "sha256", all[i - 1]->sha);
        const char *uri = all[i - 1]->uri;
        json_t *u = uri && strlen(uri) <= PROTO_CACHED_URI_MAX ? json_string(uri) : NULL;
        if (u) json_object_set_new(o, "uri", u); /* NULL too when not UTF-8: left out */
        json_array_append_new(out, o);
    }
    free(all);
    return out;
}

uint64_t cache_generation(const struct cache *c)
{
    return c->generation;
}

void cache_stats(const struct cache *c, struct cache_stats *out)
{
    *out = c->st;
    out->objects = c->objects_n;
    out->bytes = c->bytes;
    out->max_bytes = c->max_bytes;
}
