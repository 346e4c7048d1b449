/*
 * blob.h - the object store, as its callers see it.
 *
 * Objects are named by a bucket and a key, as in "s3://bucket/key", and are
 * streamed in and out: nothing here ever holds an object whole in memory. One
 * interface, several backends chosen by URI scheme: "fs:DIR" (objects as files
 * under DIR, the default) and "s3://BUCKET?..." (an S3-compatible service, see
 * blob_store_open()).
 *
 * Names (checked by every call, with the rules of spec_uri_valid in job/spec.h):
 *   bucket  [a-z0-9][a-z0-9.-]{1,62}
 *   key     1..1024 bytes, relative ('/'-separated segments), no empty, "." or
 *           ".." segment, no trailing '/', no control character (< 0x20, 0x7f).
 * A bad name is ERR_INVALID with err.field "bucket" or "key".
 *
 * Writing is all or nothing: an object becomes visible only when
 * blob_put_commit() succeeds, and replaces the previous object of that name in
 * one step; until then readers see the old object (or none). An upload that is
 * aborted, fails, or whose process dies leaves nothing visible.
 *
 * Errors: every fallible function returns 0 (or a byte count, for blob_read)
 * or a negative ERR_* code (common/err.h) with detail in `e` (may be NULL):
 *   ERR_INVALID   bad name, bad range, bad argument
 *   ERR_NOTFOUND  no such object
 *   ERR_CONFLICT  the backend cannot store this name beside another one (fs:
 *                 "a" and "a/b" cannot both exist: one would be a file and a folder)
 *   ERR_NOSPACE   the disk or quota is full (HTTP 507); the message names the object
 *   ERR_UNAVAILABLE  a remote store (S3) cannot be reached or answers 5xx: try again later
 *   ERR_IO        any other storage failure; the message names the path and the
 *                 system's reason
 *
 * Threads: a struct blob_store may be used by several threads at once. A
 * writer or reader is used by one thread at a time.
 */
#ifndef DROVER_BLOB_H
#define DROVER_BLOB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

#define BLOB_BUCKET_MAX 63
#define BLOB_KEY_MAX 1024
#define BLOB_LIST_MAX 1000 /* entries in one page of blob_list() */
#define BLOB_PRESIGN_MAX_S 604800 /* the longest blob_presign() expiry: 7 days (S3's limit) */

struct blob_store;
struct blob_writer;
struct blob_reader;

/* What a backend can do (curl's SSLSUPP_* style). */
enum blob_caps {
    BLOB_CAP_PRESIGN_NATIVE = 1 << 0, /* signs its own URLs (S3); else use blob/presign.h */
    BLOB_CAP_RANGE = 1 << 1,          /* reads a byte range without reading what comes before */
    BLOB_CAP_REMOTE = 1 << 2,         /* every call goes over the network: keep it off event loops */
};

struct blob_info {
    int64_t size;        /* bytes */
    char sha256[65];     /* lower-case hex of the SHA-256 of the content */
    int64_t modified_ms; /* when it was committed, milliseconds since the epoch */
};

struct blob_entry {
    char *key; /* owned by the list */
    struct blob_info info;
};

struct blob_list {
    struct blob_entry *items; /* sorted by key, byte by byte (strcmp) */
    size_t n;
    char *next; /* NULL on the last page, else the `after` to pass for the next one; owned */
};

/* Frees the contents of a list filled by blob_list(); the list may be filled again. */
void blob_list_release(struct blob_list *l);

/*
 * Opens the store named by uri, *out being the caller's to blob_store_close():
 *
 * "fs:DIR"  objects as files under DIR (DIR and its housekeeping folders are
 *           created as needed).
 * "s3://BUCKET?endpoint=URL&region=R&path_style=0|1"
 *           objects in the S3 bucket BUCKET. drover's object bucket/key is the
 *           S3 object "<bucket>/<key>" of BUCKET, its SHA-256 the metadata
 *           x-amz-meta-sha256. endpoint ("http[s]://HOST[:PORT]") defaults to
 *           https://s3.R.amazonaws.com; region to $AWS_REGION, else
 *           $AWS_DEFAULT_REGION, else us-east-1; path_style (BUCKET in the path
 *           rather than the host name) to 1 when an endpoint is given, else 0.
 *           Credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
 *           optionally AWS_SESSION_TOKEN. Nothing is sent at open. Objects are
 *           limited to 5 GiB (ERR_TOOLARGE while writing); readers have no fd.
 *
 * ERR_INVALID for a bad or unknown URI, naming what is wrong (a missing
 * credential names its variable); ERR_IO for fs folders that cannot be made.
 */
int blob_store_open(const char *uri, struct blob_store **out, struct err *e);
/* Closes the store (NULL is fine). Writers and readers must be finished first. */
void blob_store_close(struct blob_store *bs);
/* BLOB_CAP_* flags of the store's backend. */
unsigned blob_caps(const struct blob_store *bs);

/* 0 when bucket and key are valid names (see above), else ERR_INVALID naming the field. */
int blob_name_check(const char *bucket, const char *key, struct err *e);
/* Like blob_name_check for the bucket alone. */
int blob_bucket_check(const char *bucket, struct err *e);
/*
 * Splits "s3://bucket/key" after checking it: copies the bucket into `bucket`
 * and points *key into `uri` (borrowed). ERR_INVALID (field "uri") otherwise.
 */
int blob_uri_parse(const char *uri, char bucket[BLOB_BUCKET_MAX + 1], const char **key,
                   struct err *e);

/* --- writing ---------------------------------------------------------------------------------- */

/*
 * Starts an upload of bucket/key. On success *w must be finished by exactly
 * one call to blob_put_commit() or blob_put_abort(), whatever happens between.
 * ERR_INVALID (names), ERR_CONFLICT, ERR_NOSPACE, ERR_IO.
 */
int blob_put_begin(struct blob_store *bs, const char *bucket, const char *key,
                   struct blob_writer **w, struct err *e);
/*
 * Appends len bytes (borrowed for the call). ERR_NOSPACE when the disk is
 * full, ERR_IO; after an error the upload is dead (what was written is
 * already discarded) and the writer only awaits blob_put_abort().
 */
int blob_put_write(struct blob_writer *w, const void *data, size_t len, struct err *e);
/*
 * Makes the object durable and visible, replacing any previous one, and fills
 * *out (may be NULL). Always frees w. On error nothing new is visible (the old
 * object, if any, is intact), except ERR_IO from syncing the folder after the
 * switch, where the new object may be in place but not yet durable.
 */
int blob_put_commit(struct blob_writer *w, struct blob_info *out, struct err *e);
/* Discards the upload and frees w (NULL is fine). Nothing becomes visible. */
void blob_put_abort(struct blob_writer *w);

/* --- reading ---------------------------------------------------------------------------------- */

/*
 * Opens bucket/key for reading bytes [off, off + len), len -1 meaning to the
 * end; a window reaching past the end is cut at the end (HTTP Range
 * semantics). `off` must be < the size, except 0 for an empty object:
 * otherwise ERR_INVALID naming the range (HTTP 416). The reader sees the
 * object as it was when opened, even if it is replaced or deleted meanwhile.
 * *info (may be NULL) describes the whole object. *r is the caller's to
 * blob_close(). ERR_INVALID, ERR_NOTFOUND, ERR_IO.
 */
int blob_open(struct blob_store *bs, const char *bucket, const char *key, int64_t off, int64_t len,
              struct blob_reader **r, struct blob_info *info, struct err *e);
/*
 * Reads up to n bytes of the window into buf: the count read (> 0), 0 at the
 * end of the window, or a negative ERR_* (ERR_IO) with detail in e.
 */
ssize_t blob_read(struct blob_reader *r, void *buf, size_t n, struct err *e);
/* The window being read: its first byte and its length. */
void blob_reader_range(const struct blob_reader *r, int64_t *off, int64_t *len);
/*
 * A file descriptor holding the object, for sendfile() / evbuffer_add_file()
 * of the window, or -1 when the backend has none. Borrowed: it stays the
 * reader's and is closed by blob_close(), so give evbuffer_add_file() (which
 * takes and closes its fd) a dup(). blob_read() uses pread(), so the fd's own
 * offset means nothing to the reader.
 */
int blob_reader_fd(const struct blob_reader *r);
/* Frees the reader (NULL is fine). */
void blob_close(struct blob_reader *r);

/* --- the rest --------------------------------------------------------------------------------- */

/* Fills *info. ERR_INVALID, ERR_NOTFOUND, ERR_IO. */
int blob_head(struct blob_store *bs, const char *bucket, const char *key, struct blob_info *info,
              struct err *e);
/* Removes the object (readers already open keep reading it). ERR_NOTFOUND when absent. */
int blob_delete(struct blob_store *bs, const char *bucket, const char *key, struct err *e);
/*
 * One page of the objects of `bucket` whose key starts with `prefix` (NULL or
 * "" for all) and sorts strictly after `after` (NULL for the first page), in
 * key order, at most `limit` (1..BLOB_LIST_MAX) of them. out->next is set when
 * more follow. A bucket that holds nothing (or never did) lists as empty.
 * *out (overwritten) is the caller's to blob_list_release(); on error it is left empty.
 */
int blob_list(struct blob_store *bs, const char *bucket, const char *prefix, const char *after,
              int limit, struct blob_list *out, struct err *e);

/*
 * One page of the buckets that hold objects (an fs store's empty bucket folder is left out),
 * by name, those sorting strictly after `after` (NULL for the first page), at most `limit`
 * (1..BLOB_LIST_MAX): out->items[i].key is a bucket's name (info zeroed), out->next set when
 * more follow. *out as blob_list's.
 */
int blob_buckets(struct blob_store *bs, const char *after, int limit, struct blob_list *out,
                 struct err *e);

/*
 * For backends with BLOB_CAP_PRESIGN_NATIVE (S3): sets *url to a URL that does
 * `method` ("GET", "PUT", "HEAD" or "DELETE") on bucket/key with no other
 * credential for expires_s seconds (1..BLOB_PRESIGN_MAX_S), the caller's to
 * free(). For S3 it is a SigV4 query-signed URL of the S3 service itself
 * (X-Amz-Expires = expires_s). An object PUT through it has no SHA-256
 * metadata until the store first reads it (it is hashed then, once).
 * ERR_INVALID for a bad method, name or expiry, and for stores without native
 * presigning ("this store has no native presigning"): use blob/presign.h.
 */
int blob_presign(struct blob_store *bs, const char *method, const char *bucket, const char *key,
                 int64_t expires_s, char **url, struct err *e);

#endif
