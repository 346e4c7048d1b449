/*
 * cache.h - the agent's reference-data cache: an agent-wide, size-bounded,
 * content-addressed store of input files (docs/operations.md, "The input
 * cache"). An object is named by the SHA-256 of its bytes:
 *
 *   CACHE_DIR/objects/<sha256>   complete, verified objects, mode 0444
 *   CACHE_DIR/tmp/<sha256>.<R>   downloads in progress (removed at open)
 *
 * An object enters only by a rename of a download whose SHA-256 was checked
 * (the caller's job), so a crash leaves a complete object or none. The index
 * lives in memory and is rebuilt from objects/ at open (least recently used
 * first by modification time, which a use refreshes).
 *
 * Pins: a job that uses an object pins it (cache_claim's HIT, or the commit of
 * its own download) until it unpins it, at the end of the job; eviction (the
 * least recently used unpinned objects, until the total size is at most the
 * bound) never removes a pinned object, so the cache may stay above its bound
 * while running jobs hold it.
 *
 * One download per object: while a caller fetches an object, other callers
 * wanting it wait (a cache_waiter) and claim again once the fetch is committed
 * or abandoned. Everything runs on the agent's loop thread; no callback runs
 * from inside a call of the caller's own (waiters are woken from
 * cache_commit / cache_abandon, and must only schedule their work).
 */
#ifndef DROVER_AGENT_CACHE_H
#define DROVER_AGENT_CACHE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#include "job/protocol.h"

#define CACHE_REPORT_MAX PROTO_CACHED_MAX /* objects listed to the server (most recently used) */

struct cache;

struct cache_waiter {
    void (*fn)(void *arg); /* the object's fetch ended: claim again (schedule, do not recurse) */
    void *arg;
    struct cache_waiter *next; /* the cache's, while queued */
    bool queued;
};

struct cache_stats {
    uint64_t hits;      /* claims that found the object */
    uint64_t fetches;   /* claims that had to download it */
    uint64_t waits;     /* claims that waited for another's download */
    uint64_t evictions; /* objects removed to keep the bound */
    uint64_t objects, bytes, max_bytes;
};

/*
 * Opens (creating) the cache in `dir`, bounded to max_bytes, and rebuilds its
 * index; removes leftover temporary files. The folder is locked (flock):
 * one agent per cache. ERR_IO with e naming the path.
 */
int cache_open(const char *dir, uint64_t max_bytes, struct cache **out, struct err *e);
/* Frees the index (files stay). NULL is fine. Queued waiters are dropped without a call. */
void cache_free(struct cache *c);

/* True when `s` is 64 lower-case hex digits. */
bool cache_sha_valid(const char *s);

enum cache_claim {
    CACHE_HIT,   /* present: pinned for the caller */
    CACHE_FETCH, /* the caller downloads it into *tmp_path, then cache_commit or cache_abandon */
    CACHE_BUSY,  /* another caller is downloading it: w is queued and called when that ends */
};
/* sha must be cache_sha_valid. *tmp_path (FETCH only) belongs to the caller. */
enum cache_claim cache_claim(struct cache *c, const char *sha, struct cache_waiter *w,
                             char **tmp_path);
/*
 * The caller's download of `sha` is complete and verified: its temporary file
 * is renamed into place (mode 0444), pinned for the caller, recorded as
 * fetched from `uri` (may be NULL), waiters woken, and the bound enforced.
 * ERR_IO when it cannot be renamed (the fetch is then abandoned).
 */
int cache_commit(struct cache *c, const char *sha, const char *uri, struct err *e);
/* The caller's download of `sha` failed or was dropped: its temporary file is removed, the
 * waiters woken (one of them fetches next). */
void cache_abandon(struct cache *c, const char *sha);
/* Takes w out of its queue (its caller is going away). Not queued is fine. */
void cache_unwait(struct cache *c, struct cache_waiter *w);
/* Records that `sha` (pinned) was also reached through `uri` (reported to the server). */
void cache_note_uri(struct cache *c, const char *sha, const char *uri);
/* Drops one pin of the caller; the bound is enforced again. */
void cache_unpin(struct cache *c, const char *sha);

/*
 * Puts the pinned object `sha` at `dst` (which must not exist) read-only: a
 * hard link. Returns 0, 1 when `dst` is on another filesystem (the caller
 * copies the file, cache_object_path, then makes it 0444), or ERR_IO.
 */
int cache_link(struct cache *c, const char *sha, const char *dst, struct err *e);
/* The object's path (the caller frees it). */
char *cache_object_path(const struct cache *c, const char *sha);

/*
 * What the agent tells the server it holds: [{"sha256", "uri"?}], the most
 * recently used first, at most `max`. A new reference. The generation changes
 * whenever that list may have.
 */
json_t *cache_report(const struct cache *c, size_t max);
uint64_t cache_generation(const struct cache *c);
void cache_stats(const struct cache *c, struct cache_stats *out);

#endif
