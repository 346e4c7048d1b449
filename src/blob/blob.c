/*
 * blob.c - the backend registry (by URI scheme), name checks and the public
 * wrappers. Contracts are documented in blob.h.
 *
 * Every check that does not depend on the backend is made here, once, before
 * a backend is called: names, range arguments, list limits, and the reader's
 * window (a backend's read never sees a request past the window's end).
 */
#include "blob/blob_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "job/spec.h"

static const struct blob_ops *const backends[] = {
    &blob_fs_ops,
    &blob_s3_ops,
};

void blob_list_release(struct blob_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].key);
    free(l->items);
    free(l->next);
    l->items = NULL;
    l->n = 0;
    l->next = NULL;
}

void blob_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* --- names ------------------------------------------------------------------------------------ */

/* Control characters as spec.c's has_ctrl() sees them. */
static bool has_ctrl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
    return false;
}

/*
 * The name itself, quoted, when it is safe to echo into a message (no control
 * characters, not too long); else nothing, so that a log line cannot be forged.
 */
static const char *echo(const char *s, char *tmp, size_t n)
{
    if (!s || has_ctrl(s) || strlen(s) > 80) return "";
    snprintf(tmp, n, " '%s'", s);
    return tmp;
}

/*
 * The rules are spec_uri_valid's (job/spec.h), applied to "s3://bucket/key",
 * so that a name the job spec accepts is one the store accepts. Two checks
 * come first because the URI alone cannot make them: a '/' in the bucket would
 * move the split between bucket and key, and a control character must be
 * blamed on the right field.
 */
static int name_check(const char *bucket, const char *key, bool want_key, struct err *e)
{
    char tmp[100];
    const char *why = NULL;
    const char *field = "bucket";
    if (!bucket || !*bucket || strchr(bucket, '/') || has_ctrl(bucket) ||
        strlen(bucket) > BLOB_BUCKET_MAX) {
        why = "the bucket must match [a-z0-9][a-z0-9.-]{1,62}";
    } else if (want_key && (!key || !*key)) {
        field = "key";
        why = "the key must not be empty";
    } else if (want_key && has_ctrl(key)) {
        field = "key";
        why = "the key must not contain control characters";
    } else if (want_key && strlen(key) > BLOB_KEY_MAX) {
        field = "key";
        why = "the key must be at most 1024 bytes";
    } else {
        char *uri = xasprintf("s3://%s/%s", bucket, want_key ? key : "x");
        bool ok = spec_uri_valid(uri, false, &why);
        free(uri);
        if (ok) return 0;
        if (strncmp(why, "the bucket", 10) != 0) field = "key";
    }
    const char *value = !strcmp(field, "bucket") ? bucket : key;
    return err_field(e, ERR_INVALID, field, "invalid %s%s: %s", field,
                     echo(value, tmp, sizeof(tmp)), why);
}

int blob_name_check(const char *bucket, const char *key, struct err *e)
{
    return name_check(bucket, key, true, e);
}

int blob_bucket_check(const char *bucket, struct err *e)
{
    return name_check(bucket, NULL, false, e);
}

int blob_uri_parse(const char *uri, char bucket[BLOB_BUCKET_MAX + 1], const char **key,
                   struct err *e)
{
    const char *why = NULL;
    if (!uri || strncmp(uri, "s3://", 5) != 0)
        why = "must be s3://bucket/key";
    else
        spec_uri_valid(uri, false, &why); /* why stays NULL when valid */
    if (why) return err_field(e, ERR_INVALID, "uri", "invalid uri: %s", why);
    const char *b = uri + 5;
    size_t n = strcspn(b, "/"); /* 2..63, checked by spec_uri_valid */
    memcpy(bucket, b, n);
    bucket[n] = '\0';
    *key = b + n + 1;
    return 0;
}

/* --- store ------------------------------------------------------------------------------------ */

int blob_store_open(const char *uri, struct blob_store **out, struct err *e)
{
    *out = NULL;
    if (!uri) uri = "";
    const char *colon = strchr(uri, ':');
    size_t n = colon ? (size_t)(colon - uri) : 0;
    for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
        if (n && n == strlen(backends[i]->scheme) && !strncmp(uri, backends[i]->scheme, n)) {
            if (!strcmp(backends[i]->scheme, "s3") && strncmp(uri, "s3://", 5))
                break;
            return backends[i]->open(uri, out, e);
        }
    return err_set(e, ERR_INVALID,
                   "blob store '%s': unknown scheme (expected fs:DIR or s3://BUCKET?...)", uri);
}

void blob_store_close(struct blob_store *bs)
{
    if (bs) bs->ops->close(bs);
}

unsigned blob_caps(const struct blob_store *bs)
{
    return bs->ops->caps;
}

/* --- writing ---------------------------------------------------------------------------------- */

int blob_put_begin(struct blob_store *bs, const char *bucket, const char *key,
                   struct blob_writer **w, struct err *e)
{
    *w = NULL;
    int rc = blob_name_check(bucket, key, e);
    return rc ? rc : bs->ops->put_begin(bs, bucket, key, w, e);
}

int blob_put_write(struct blob_writer *w, const void *data, size_t len, struct err *e)
{
    return len ? w->ops->put_write(w, data, len, e) : 0;
}

int blob_put_commit(struct blob_writer *w, struct blob_info *out, struct err *e)
{
    struct blob_info ignored;
    return w->ops->put_commit(w, out ? out : &ignored, e);
}

void blob_put_abort(struct blob_writer *w)
{
    if (w) w->ops->put_abort(w);
}

/* --- reading ---------------------------------------------------------------------------------- */

int blob_range_resolve(const char *bucket, const char *key, int64_t size, int64_t off, int64_t len,
                       int64_t *end, struct err *e)
{
    if (off > size || (off == size && off > 0))
        return err_field(e, ERR_INVALID, "range",
                         "range starting at byte %lld is past the end of object '%s/%s' "
                         "(%lld bytes)",
                         (long long)off, bucket, key, (long long)size);
    *end = len < 0 || len > size - off ? size : off + len;
    return 0;
}

int blob_open(struct blob_store *bs, const char *bucket, const char *key, int64_t off, int64_t len,
              struct blob_reader **r, struct blob_info *info, struct err *e)
{
    *r = NULL;
    struct blob_info ignored;
    int rc = blob_name_check(bucket, key, e);
    if (rc) return rc;
    if (off < 0 || len < -1)
        return err_field(e, ERR_INVALID, "range",
                         "invalid range: offset %lld and length %lld (offset >= 0, length >= 0 "
                         "or -1 for the rest)",
                         (long long)off, (long long)len);
    return bs->ops->read_open(bs, bucket, key, off, len, r, info ? info : &ignored, e);
}

ssize_t blob_read(struct blob_reader *r, void *buf, size_t n, struct err *e)
{
    int64_t left = r->end - r->pos;
    if (left <= 0 || n == 0) return 0;
    if ((uint64_t)left < n) n = (size_t)left;
    if (n > SSIZE_MAX) n = SSIZE_MAX;
    ssize_t got = r->ops->read(r, buf, n, e);
    if (got == 0)
        return err_set(e, ERR_IO, "object ended at byte %lld, short of the %lld expected",
                       (long long)r->pos, (long long)r->end);
    if (got > 0) r->pos += got;
    return got;
}

void blob_reader_range(const struct blob_reader *r, int64_t *off, int64_t *len)
{
    *off = r->off;
    *len = r->end - r->off;
}

int blob_reader_fd(const struct blob_reader *r)
{
    return r->ops->reader_fd(r);
}

void blob_close(struct blob_reader *r)
{
    if (r) r->ops->read_close(r);
}

/* --- the rest --------------------------------------------------------------------------------- */

int blob_head(struct blob_store *bs, const char *bucket, const char *key, struct blob_info *info,
              struct err *e)
{
    int rc = blob_name_check(bucket, key, e);
    return rc ? rc : bs->ops->head(bs, bucket, key, info, e);
}

int blob_delete(struct blob_store *bs, const char *bucket, const char *key, struct err *e)
{
    int rc = blob_name_check(bucket, key, e);
    return rc ? rc : bs->ops->del(bs, bucket, key, e);
}

/* A prefix or cursor: any bytes but control characters, at most a key's length. */
static int filter_check(const char *field, const char *s, struct err *e)
{
    if (strlen(s) > BLOB_KEY_MAX || has_ctrl(s))
        return err_field(e, ERR_INVALID, field,
                         "invalid %s: at most %d bytes without control characters", field,
                         BLOB_KEY_MAX);
    return 0;
}

int blob_buckets(struct blob_store *bs, const char *after, int limit, struct blob_list *out,
                 struct err *e)
{
    *out = (struct blob_list){NULL, 0, NULL};
    after = after ? after : "";
    if (*after && blob_bucket_check(after, NULL))
        return err_field(e, ERR_INVALID, "after", "after must be a bucket's name");
    if (limit < 1 || limit > BLOB_LIST_MAX)
        return err_field(e, ERR_INVALID, "limit", "limit must be between 1 and %d", BLOB_LIST_MAX);
    int rc = bs->ops->buckets(bs, after, (size_t)limit, out, e);
    if (rc) blob_list_release(out);
    return rc;
}

int blob_presign(struct blob_store *bs, const char *method, const char *bucket, const char *key,
                 int64_t expires_s, char **url, struct err *e)
{
    *url = NULL;
    static const char *const methods[] = {"GET", "PUT", "HEAD", "DELETE"};
    bool known = false;
    for (size_t i = 0; method && i < ARRAY_SIZE(methods); i++)
        known = known || !strcmp(method, methods[i]);
    if (!known)
        return err_field(e, ERR_INVALID, "method",
                         "invalid method: must be GET, PUT, HEAD or DELETE");
    int rc = blob_name_check(bucket, key, e);
    if (rc) return rc;
    if (expires_s < 1 || expires_s > BLOB_PRESIGN_MAX_S)
        return err_field(e, ERR_INVALID, "expires_s", "expires_s must be between 1 and %d seconds",
                         BLOB_PRESIGN_MAX_S);
    if (!(bs->ops->caps & BLOB_CAP_PRESIGN_NATIVE) || !bs->ops->presign)
        return err_set(e, ERR_INVALID, "this store has no native presigning (use blob/presign.h)");
    return bs->ops->presign(bs, method, bucket, key, expires_s, url, e);
}

int blob_list(struct blob_store *bs, const char *bucket, const char *prefix, const char *after,
              int limit, struct blob_list *out, struct err *e)
{
    *out = (struct blob_list){NULL, 0, NULL};
    int rc = blob_bucket_check(bucket, e);
    if (rc) return rc;
    prefix = prefix ? prefix : "";
    after = after ? after : "";
    if ((rc = filter_check("prefix", prefix, e)) || (rc = filter_check("after", after, e)))
        return rc;
    if (limit < 1 || limit > BLOB_LIST_MAX)
        return err_field(e, ERR_INVALID, "limit", "limit must be between 1 and %d", BLOB_LIST_MAX);
    rc = bs->ops->list(bs, bucket, prefix, after, (size_t)limit, out, e);
    if (rc) blob_list_release(out);
    return rc;
}
