/*
 * blob_int.h - for blob backends only: the operations table each backend fills
 * in, the base structs they embed, and the fs backend's fault seam for tests.
 * Callers use blob.h; blob.c holds the registry and the wrappers.
 *
 * A backend's own structs start with `struct blob_store base;` (and
 * `struct blob_writer base;`, `struct blob_reader base;`) and downcast with a
 * checked helper. The contract of each operation is the comment on its wrapper
 * in blob.h; the wrappers have already checked names and argument shapes, so a
 * backend sees only valid buckets and keys, off >= 0, len >= -1, n > 0 and a
 * limit in 1..BLOB_LIST_MAX.
 */
#ifndef DROVER_BLOB_INT_H
#define DROVER_BLOB_INT_H

#include <time.h>

#include "blob/blob.h"

struct blob_ops {
    const char *scheme; /* "fs": matches "fs:..." */
    unsigned caps;      /* BLOB_CAP_* */
    int (*open)(const char *uri, struct blob_store **out, struct err *e);
    void (*close)(struct blob_store *bs);

    int (*put_begin)(struct blob_store *bs, const char *bucket, const char *key,
                     struct blob_writer **w, struct err *e);
    int (*put_write)(struct blob_writer *w, const void *data, size_t len, struct err *e);
    /* Frees w whatever the outcome. */
    int (*put_commit)(struct blob_writer *w, struct blob_info *out, struct err *e);
    void (*put_abort)(struct blob_writer *w);

    /*
     * Opens a reader and fills its base's off/end/pos (with blob_range_resolve)
     * and *info (never NULL here).
     */
    int (*read_open)(struct blob_store *bs, const char *bucket, const char *key, int64_t off,
                     int64_t len, struct blob_reader **r, struct blob_info *info, struct err *e);
    /*
     * Reads up to n bytes (n <= end - pos, n > 0) at the base's pos: a count > 0
     * or a negative ERR_*. The wrapper advances pos; 0 means the object ended
     * before the window did (it is reported as ERR_IO).
     */
    ssize_t (*read)(struct blob_reader *r, void *buf, size_t n, struct err *e);
    int (*reader_fd)(const struct blob_reader *r);
    void (*read_close)(struct blob_reader *r);

    int (*head)(struct blob_store *bs, const char *bucket, const char *key, struct blob_info *info,
                struct err *e);
    int (*del)(struct blob_store *bs, const char *bucket, const char *key, struct err *e);
    /* prefix and after are never NULL here ("" for none); out is empty on entry. */
    int (*list)(struct blob_store *bs, const char *bucket, const char *prefix, const char *after,
                size_t limit, struct blob_list *out, struct err *e);
    /* after is never NULL here ("" for none); out is empty on entry. */
    int (*buckets)(struct blob_store *bs, const char *after, size_t limit, struct blob_list *out,
                   struct err *e);
    /*
     * A presigned URL (BLOB_CAP_PRESIGN_NATIVE backends only, else NULL): method is one of
     * GET, PUT, HEAD, DELETE and expires_s in 1..BLOB_PRESIGN_MAX_S, both checked.
     */
    int (*presign)(struct blob_store *bs, const char *method, const char *bucket, const char *key,
                   int64_t expires_s, char **url, struct err *e);
};

struct blob_store {
    const struct blob_ops *ops;
};

struct blob_writer {
    const struct blob_ops *ops;
};

struct blob_reader {
    const struct blob_ops *ops;
    int64_t off; /* the window: [off, end) */
    int64_t end;
    int64_t pos; /* next byte to read, off <= pos <= end */
};

/*
 * The window [off, *end) of a read of an object of `size` bytes, by the rules
 * of blob_open() in blob.h: ERR_INVALID naming the range and the object when
 * off is past the end. Shared so that every backend answers alike.
 */
int blob_range_resolve(const char *bucket, const char *key, int64_t size, int64_t off, int64_t len,
                       int64_t *end, struct err *e);

/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void blob_hex(const unsigned char *in, size_t n, char *out);

extern const struct blob_ops blob_fs_ops;
extern const struct blob_ops blob_s3_ops;

/*
 * The fs backend's fault seam: every write(), fsync() (of files and folders)
 * and rename() it makes on the way to committing an object goes through these
 * pointers, which default to the system calls. Tests replace them to fail
 * (ENOSPC, EIO) and must restore `blob_fs_fault_default` afterwards. Not for
 * use while other threads are writing.
 */
struct blob_fs_fault {
    ssize_t (*write)(int fd, const void *buf, size_t n);
    int (*fsync)(int fd);
    int (*rename)(const char *from, const char *to);
};
extern struct blob_fs_fault blob_fs_fault;
extern const struct blob_fs_fault blob_fs_fault_default;


/*
 * The S3 backend's seams for tests. blob_s3_part_size is the size of the parts of a
 * multipart upload (and the largest object sent in one PUT), read when an upload begins;
 * default 8 MiB. S3 wants parts of at least 5 MiB but the last, so only tests lower it.
 */
extern size_t blob_s3_part_size;

/* SigV4, as blob_s3.c signs requests, exposed so tests can check it against AWS's examples. */
struct blob_s3_cred {
    const char *access_key, *secret, *token, *region; /* token may be NULL */
};
struct blob_s3_hdr {
    const char *name; /* lower case */
    const char *value;
};
/*
 * The Authorization header's value for a request: method, path (URI-encoded as sent),
 * canonical query (sorted, encoded; "" for none), the n headers to sign (any order, values
 * trimmed) and the payload's hex SHA-256 (or "UNSIGNED-PAYLOAD"), at time `when`. The
 * caller frees the result.
 */
char *blob_s3_authorization(const struct blob_s3_cred *c, const char *method, const char *path,
                            const char *query, const struct blob_s3_hdr *hdrs, size_t n,
                            const char *payload_hash, time_t when);
/*
 * A presigned URL: origin ("https://host[:port]") + path + the X-Amz-* query, signing only
 * the host header (`host`, as sent) and an unsigned payload. The caller frees the result.
 */
char *blob_s3_presign_url(const struct blob_s3_cred *c, const char *method, const char *origin,
                          const char *host, const char *path, int64_t expires_s, time_t when);
/* XML character data s[0..n) with entities decoded, a new string; NULL when malformed (or
   holding a NUL). */
char *blob_s3_xml_text(const char *s, size_t n);

#endif
