/*
 * api_blobs.c - the object store over HTTP: PUT / GET / HEAD / DELETE of
 * /v1/blobs/{bucket}/{key}, listing, and POST /v1/presign.
 *
 * Bodies stream both ways. An upload's body arrives through the upload
 * filter (http/upload.h) piece by piece and is written as it comes; its
 * commit (an fsync, or the S3 call that completes it) runs on the offload
 * thread. A download is sent in chunks of READ_CHUNK, the next one read only
 * when the last has left, so memory stays flat whatever the object's size.
 *
 * Object routes need no token when the URL is presigned (presign.h);
 * otherwise a client or admin token.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "blob/blob.h"
#include "blob/presign.h"
#include "common/log.h"
#include "common/role.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "http/range.h"
#include "http/upload.h"
#include "job/job.h"
#include "job/spec.h"
#include "server/fleet.h"
#include "server/offload.h"
#include "server/retention.h"
#include "server/server.h"
#include "server/triggers.h"

#define READ_CHUNK (256 * 1024)
#define PRESIGN_MAX_S (7 * 24 * 3600)
#define PRESIGN_DEFAULT_S 900
#define PRESIGN_AGENT_MAX_S 3600 /* an agent's URL, at most (and never past its attempt) */

static struct server *srv(struct http_req *r)
{
    return r->app;
}

/* 0 when the URL is not bound (job "") or its attempt is still leased, else ERR_DENIED. */
static int attempt_live(struct server *s, const struct presign_bind *b, const char *bucket,
                        const char *key, struct err *e)
{
    if (!b->job[0] || fleet_attempt_live(s->fleet, b->job, b->attempt, NULL)) return 0;
    return err_set(e, ERR_DENIED, "presigned url for '%s/%s' refused: job '%s' attempt %d is over",
                   bucket, key, b->job, b->attempt);
}

/*
 * A presigned URL (its signature in the query) or a client/admin token. An agent's URL is
 * bound to its job's attempt (presign.h) and works only while that attempt is leased; *b
 * gets the binding (job "" for none), so that an upload checks it again before it commits.
 */
static int object_auth(struct http_req *r, const char *method, const char *bucket, const char *key,
                       struct presign_bind *b, struct err *e)
{
    *b = (struct presign_bind){"", 0};
    if (!http_query(r, PRESIGN_SIGNATURE_PARAM))
        return http_authenticate(r, ROLE_CLIENT | ROLE_ADMIN, e);
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r->ev);
    struct server *s = srv(r);
    int rc = presign_check_query(s->presign_secret, sizeof(s->presign_secret), method, bucket, key,
                                 evhttp_uri_get_query(u), time(NULL), b, e);
    return rc ? rc : attempt_live(s, b, bucket, key, e);
}

static json_t *info_json(const char *bucket, const char *key, const struct blob_info *i)
{
    char *uri = xasprintf("s3://%s/%s", bucket, key);
    json_t *j =
        json_pack("{s:s, s:I, s:s}", "uri", uri, "size", (json_int_t)i->size, "sha256", i->sha256);
    free(uri);
    return j;
}

/* ---- conditional requests (RFC 9110 section 13) ---- */

/*
 * GET and HEAD honour If-None-Match, If-Modified-Since and If-Range against the object they
 * would send; the ETag is "<sha256>", a strong validator. Header values are copied at the
 * request's start and judged in get_prepare, against the version whose bytes are then read.
 *
 * Writes with a precondition (PUT, DELETE with If-Match, If-None-Match or
 * If-Unmodified-Since) are refused, never run as if unconditional: honouring one needs a
 * compare-and-swap that neither store has across servers (several servers share an S3 store),
 * and ignoring it would let a client believe its version was checked.
 */

/*
 * Every line of header `name` joined by ", " (a list's lines are one list), or NULL for none;
 * the caller frees it. A field that is no list (a date, If-Range) given twice so becomes one
 * that does not parse, and is ignored.
 */
static char *header_joined(struct http_req *r, const char *name)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(r->ev);
    struct evkeyval *kv;
    char *all = NULL;
    TAILQ_FOREACH(kv, h, next)
    {
        if (strcasecmp(kv->key, name)) continue;
        char *more = all ? xasprintf("%s, %s", all, kv->value) : xstrdup(kv->value);
        free(all);
        all = more;
    }
    return all;
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* One entity-tag at *p ([W/]"opaque"), advanced past it: *tag and *n its opaque part. */
static bool etag_parse(const char **p, bool *weak, const char **tag, size_t *n)
{
    const char *s = *p;
    *weak = !strncmp(s, "W/", 2);
    if (*weak) s += 2;
    if (*s++ != '"') return false;
    const char *start = s;
    for (; *s != '"'; s++) /* etagc: %x21 / %x23-7E / obs-text */
        if ((unsigned char)*s < 0x21 || *s == 0x7f) return false;
    *tag = start;
    *n = (size_t)(s - start);
    *p = s + 1;
    return true;
}

static bool etag_is(const char *tag, size_t n, const struct blob_info *i)
{
    return n == strlen(i->sha256) && !memcmp(tag, i->sha256, n);
}

/*
 * Does If-None-Match's value h ("*" or a list of entity-tags) match the object? Weak
 * comparison: W/"x" matches "x". A malformed list matches nothing (the header is ignored).
 */
static bool none_match_hit(const char *h, const struct blob_info *i)
{
    const char *p = skip_ows(h);
    if (*p == '*') return !*skip_ows(p + 1);
    bool hit = false, any = false;
    for (;;) {
        p = skip_ows(p);
        if (*p == ',') { /* empty elements are allowed in a list */
            p++;
            continue;
        }
        if (!*p) break;
        bool weak;
        const char *tag;
        size_t n;
        if (!etag_parse(&p, &weak, &tag, &n)) return false;
        hit = hit || etag_is(tag, n, i);
        any = true;
        p = skip_ows(p);
        if (*p && *p != ',') return false;
    }
    return any && hit;
}

/*
 * An HTTP-date (RFC 9110 5.6.7) into seconds since the epoch, strictly: IMF-fixdate
 * ("Sun, 06 Nov 1994 08:49:37 GMT") and the obsolete forms a recipient must take,
 * rfc850-date ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37 1994").
 * strptime reads the fields (the server runs in the C locale: English names); a date that
 * does not exist (30 Feb) is refused by reading it back.
 */
static bool http_date_parse(const char *s, int64_t *out)
{
    static const char *const forms[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                        "%a %b %e %H:%M:%S %Y"};
    for (size_t k = 0; k < sizeof(forms) / sizeof(forms[0]); k++) {
        struct tm tm = {0}, back;
        const char *end = strptime(s, forms[k], &tm);
        if (!end || *end) continue;
        time_t t = timegm(&tm);
        if (t == (time_t)-1 || !gmtime_r(&t, &back) || back.tm_mday != tm.tm_mday) return false;
        *out = (int64_t)t;
        return true;
    }
    return false;
}

/*
 * Is the object unchanged for the client, so 304? If-None-Match when present, else
 * If-Modified-Since: the object's Last-Modified (whole seconds) at or before the date. A date
 * that is malformed, in the future or given on several lines is ignored (RFC 9110 13.1.3).
 */
static bool not_modified(const char *inm, const char *ims, const struct blob_info *i)
{
    if (inm) return none_match_hit(inm, i);
    int64_t t;
    if (!ims || !http_date_parse(ims, &t) || t > time_now_ms() / 1000) return false;
    return time_floor_div(i->modified_ms, 1000) <= t;
}

/*
 * Does If-Range (h, NULL for none) let the Range apply? Only a strong ETag equal to the
 * object's: a weak tag never matches, nor does a date. Last-Modified has whole seconds and an
 * object can be replaced twice within one, so drover cannot tell a date is a strong validator
 * (RFC 9110 8.8.2.2); a false If-Range sends the whole object, which is always correct.
 * Several lines, a list or anything malformed is false too.
 */
static bool if_range_holds(const char *h, const struct blob_info *i)
{
    if (!h) return true;
    const char *p = skip_ows(h), *tag;
    bool weak;
    size_t n;
    return etag_parse(&p, &weak, &tag, &n) && !weak && !*skip_ows(p) && etag_is(tag, n, i);
}

/* 0 when the write (method, "PUT" or "DELETE") has no precondition, else ERR_INVALID naming it. */
static int write_unconditional(struct http_req *r, const char *method, struct err *e)
{
    static const char *const conds[] = {"If-Match", "If-None-Match", "If-Unmodified-Since", NULL};
    struct evkeyvalq *h = evhttp_request_get_input_headers(r->ev);
    for (int k = 0; conds[k]; k++)
        if (evhttp_find_header(h, conds[k]))
            return err_field(e, ERR_INVALID, conds[k],
                             "conditional writes are not supported: a %s with %s would not be "
                             "checked against the object's current version; send it without %s",
                             method, conds[k], conds[k]);
    return 0;
}

/* ---- PUT ---- */

struct put_op {
    struct http_req *r;
    struct server *s;
    struct blob_writer *w;
    char bucket[BLOB_BUCKET_MAX + 1];
    char *key;
    struct err err;
    bool failed; /* a write failed: the rest of the body is thrown away */
    struct blob_info info;
    int rc;
    struct upload *up;        /* while the body arrives */
    bool writing;             /* a write is in flight on the offload thread */
    bool broken;              /* the body broke off while it was */
    struct evbuffer *pending; /* remote stores: bytes for the next write on the offload thread */
    struct presign_bind bind; /* the URL's attempt: still live when the object commits? */
};

/* Remote stores (S3) get their bytes in pieces this large, written on the offload thread. */
#define REMOTE_PIECE (4 * 1024 * 1024)

static void put_free(struct put_op *op)
{
    if (op->pending) evbuffer_free(op->pending);
    blob_put_abort(op->w); /* NULL once committed */
    free(op->key);
    free(op);
}

/* Writes what is pending (offload thread, remote stores). */
static int put_write_pending(struct put_op *op)
{
    size_t n = op->pending ? evbuffer_get_length(op->pending) : 0;
    if (!n || op->failed) return op->failed ? -1 : 0;
    const void *data = evbuffer_pullup(op->pending, -1);
    int rc = blob_put_write(op->w, data, n, &op->err);
    evbuffer_drain(op->pending, n);
    if (rc) op->failed = true;
    return rc;
}

static void put_write_work(void *arg)
{
    put_write_pending(arg);
}

static void put_done(void *arg, int status);

static void put_write_done(void *arg)
{
    struct put_op *op = arg;
    op->writing = false;
    if (op->broken) { /* the connection broke meanwhile: finish what put_done began */
        put_done(op, -1);
        return;
    }
    if (op->up) upload_resume(op->up);
}

static int put_sink(void *arg, const void *data, size_t len)
{
    struct put_op *op = arg;
    if (op->failed) return -1;
    if (op->pending) { /* a remote store: never wait on the network here */
        evbuffer_add(op->pending, data, len);
        if (evbuffer_get_length(op->pending) < REMOTE_PIECE) return 0;
        op->writing = true;
        offload_run(op->s->offload, put_write_work, put_write_done, op);
        return UPLOAD_PAUSE;
    }
    if (blob_put_write(op->w, data, len, &op->err)) {
        op->failed = true;
        return -1;
    }
    return 0;
}

static void put_commit_work(void *arg)
{
    struct put_op *op = arg;
    if (put_write_pending(op)) {
        op->rc = op->err.code ? op->err.code : ERR_IO;
        return; /* put_free aborts the writer */
    }
    op->rc = blob_put_commit(op->w, &op->info, &op->err);
    op->w = NULL; /* commit frees the writer, whatever happens */
}

static void put_answer(struct put_op *op)
{
    struct http_req *r = op->r;
    if (r->gone)
        http_req_drop(r);
    else if (op->rc)
        http_reply_err(r, &op->err);
    else
        http_reply_json(r, 200, info_json(op->bucket, op->key, &op->info));
    put_free(op);
}

static int put_event_write(struct store *st, void *arg, struct err *e)
{
    struct put_op *op = arg;
    return store_event_object(st, OBJECT_CREATED, op->bucket, op->key, op->info.size,
                              op->info.sha256, e);
}

static void put_event_done(void *arg, int rc, const struct err *e)
{
    /* The object is there either way: a lost event is logged, the PUT still succeeds. */
    struct put_op *op = arg;
    if (rc) log_error("object s3://%s/%s: cannot record its event: %s", op->bucket, op->key, e->msg);
    else triggers_kick(op->s->triggers); /* its fires, if any, were written with the event */
    put_answer(op);
}

/* The object is committed: its event is written before the answer (the stream has it then). */
static void put_commit_done(void *arg)
{
    struct put_op *op = arg;
    if (op->rc) {
        put_answer(op);
        return;
    }
    commit_submit(op->s->commit, put_event_write, put_event_done, op);
}

static void put_done(void *arg, int status)
{
    struct put_op *op = arg;
    struct http_req *r = op->r;
    op->up = NULL;
    if (op->writing) { /* the offload thread holds the writer: wait for it */
        op->broken = true;
        return;
    }
    /* An agent's upload that outlived its attempt leaves nothing: the writer is aborted. */
    if (status == 0 && !op->failed && !r->gone &&
        attempt_live(op->s, &op->bind, op->bucket, op->key, &op->err))
        op->failed = true;
    if (status == 0 && !op->failed && !r->gone) {
        offload_run(op->s->offload, put_commit_work, put_commit_done, op);
        return;
    }
    /* The body broke off or could not be written: nothing becomes visible. */
    if (r->gone) {
        http_req_drop(r);
        put_free(op);
        return;
    }
    if (status != 0)
        err_set(&op->err, ERR_INVALID, "the body broke off or stalled before all of it arrived");
    http_reply_err(r, &op->err);
    put_free(op);
}

static void put_gone(struct http_req *r)
{
    /* The body's end (or the connection's) still comes through put_done. */
    (void)r;
}

static int api_blob_put(struct http_req *r, const char *bucket, const char *key)
{
    struct server *s = srv(r);
    struct err e = ERR_INIT;
    struct upload *up = upload_of(s->uploads, r->ev);
    struct presign_bind bind;
    if (object_auth(r, "PUT", bucket, key, &bind, &e) || blob_name_check(bucket, key, &e) ||
        write_unconditional(r, "PUT", &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (!up) {
        http_reply_error(r, ERR_LENGTH, NULL,
                         "an object's PUT needs a Content-Length header (chunked bodies are "
                         "not accepted)");
        return HTTP_DONE;
    }
    struct put_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    op->s = s;
    snprintf(op->bucket, sizeof(op->bucket), "%s", bucket);
    op->key = xstrdup(key);
    op->bind = bind;
    if (blob_put_begin(s->blobs, bucket, key, &op->w, &e)) {
        put_free(op);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (blob_caps(s->blobs) & BLOB_CAP_REMOTE) op->pending = evbuffer_new();
    op->up = up;
    r->owner = op;
    r->on_gone = put_gone;
    upload_accept(up, put_sink, put_done, op);
    return HTTP_DEFERRED;
}

/* ---- GET / HEAD ---- */

struct get_op {
    struct http_req *r;
    struct server *s;
    char bucket[BLOB_BUCKET_MAX + 1];
    char *key, *range;
    char *inm, *ims, *if_range; /* If-None-Match, If-Modified-Since, If-Range (NULL: none) */
    bool head;
    struct blob_info info; /* from get_prepare: */
    bool unmodified;       /* 304 */
    int64_t off, len;
    int ranged, rc;
    struct blob_reader *rd;
    int64_t left;
    bool remote;          /* reads run on the offload thread */
    bool reading, gone;   /* a read is in flight; the client left meanwhile */
    struct evbuffer *buf; /* the chunk read there */
    ssize_t n;
    struct err err;
};

static void get_free(struct get_op *op)
{
    free(op->key);
    free(op->range);
    free(op->inm);
    free(op->ims);
    free(op->if_range);
    blob_close(op->rd);
    if (op->buf) evbuffer_free(op->buf);
    free(op);
}

static void get_gone(struct http_req *r)
{
    struct get_op *op = r->owner;
    http_req_drop(r);
    if (op->reading) { /* the offload thread still uses the reader: its done() frees */
        op->gone = true;
        return;
    }
    get_free(op);
}

/* Reads the next chunk into op->buf (op->n: bytes, or the error). */
static void get_read(struct get_op *op)
{
    size_t want = op->left < READ_CHUNK ? (size_t)op->left : READ_CHUNK;
    struct evbuffer_iovec v;
    evbuffer_reserve_space(op->buf, want, &v, 1);
    op->n = blob_read(op->rd, v.iov_base, want, &op->err);
    v.iov_len = op->n > 0 ? (size_t)op->n : 0;
    evbuffer_commit_space(op->buf, &v, 1);
}

static void get_send_read(struct get_op *op);

static void get_read_work(void *arg)
{
    get_read(arg);
}

static void get_read_done(void *arg)
{
    struct get_op *op = arg;
    op->reading = false;
    if (op->gone) {
        get_free(op);
        return;
    }
    get_send_read(op);
}

static void get_pump(struct evhttp_connection *evcon, void *arg);

static void get_send_next(struct get_op *op)
{
    struct http_req *r = op->r;
    if (op->left <= 0) {
        r->on_gone = NULL;
        get_free(op);
        http_reply_end(r);
        return;
    }
    if (op->remote) {
        op->reading = true;
        offload_run(op->s->offload, get_read_work, get_read_done, op);
        return;
    }
    get_read(op);
    get_send_read(op);
}

/* Sends the chunk just read. */
static void get_send_read(struct get_op *op)
{
    struct http_req *r = op->r;
    if (op->n <= 0) {
        /* The status line is out: all we can do is cut the connection short. */
        log_error("req=%s reading the object failed after the answer began: %s", r->id,
                  op->n < 0 ? op->err.msg : "the object ended early");
        evhttp_connection_free(evhttp_request_get_connection(r->ev));
        return; /* the close marks r gone: get_gone frees op */
    }
    op->left -= op->n;
    http_reply_chunk_then(r, op->buf, get_pump, op);
}

static void get_pump(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    get_send_next(arg);
}

static void add_object_headers(struct http_req *r, const struct blob_info *info)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    char etag[80], date[64];
    snprintf(etag, sizeof(etag), "\"%s\"", info->sha256);
    evhttp_add_header(h, "ETag", etag);
    evhttp_add_header(h, "X-Drover-Sha256", info->sha256);
    evhttp_add_header(h, "Accept-Ranges", "bytes");
    time_t t = (time_t)(info->modified_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    evhttp_add_header(h, "Last-Modified", date);
}

static bool same_version(const struct blob_info *a, const struct blob_info *b)
{
    return a->size == b->size && a->modified_ms == b->modified_ms && !strcmp(a->sha256, b->sha256);
}

#define GET_TRIES 3 /* versions tried when the object is replaced between its head and its open */

/*
 * What a GET or HEAD needs from the store (on the offload thread for remote stores): the
 * object's head, the preconditions and Range judged against it, and a reader of that same
 * version. A reader that finds another version (replaced meanwhile) is closed and all is
 * judged again, so the ETag, an If-Range and the bytes sent always agree.
 */
static void get_prepare(void *arg)
{
    struct get_op *op = arg;
    for (int tries = 1;; tries++) {
        op->rc = blob_head(op->s->blobs, op->bucket, op->key, &op->info, &op->err);
        if (op->rc) return;
        op->unmodified = not_modified(op->inm, op->ims, &op->info);
        op->off = 0;
        op->len = op->info.size;
        op->ranged = 0;
        if (!op->unmodified && if_range_holds(op->if_range, &op->info))
            op->ranged = http_range_parse(op->range, op->info.size, &op->off, &op->len);
        if (op->unmodified || op->ranged < 0 || op->head) return;
        struct blob_info opened;
        op->rc = blob_open(op->s->blobs, op->bucket, op->key, op->off, op->len, &op->rd, &opened,
                           &op->err);
        /* ERR_INVALID: the window is past the end of a shorter version, opened meanwhile */
        if ((op->rc && op->rc != ERR_INVALID) || (!op->rc && same_version(&opened, &op->info)))
            return;
        blob_close(op->rd);
        op->rd = NULL;
        if (tries == GET_TRIES) {
            err_clear(&op->err);
            op->rc = err_set(&op->err, ERR_UNAVAILABLE,
                             "object '%s/%s' was replaced %d times while it was being opened; "
                             "try again",
                             op->bucket, op->key, GET_TRIES);
            return;
        }
        err_clear(&op->err);
    }
}

/* Answers with what get_prepare found: an error, the headers, or the start of the bytes. */
static void get_respond(void *arg)
{
    struct get_op *op = arg;
    struct http_req *r = op->r;
    op->reading = false;
    if (op->gone) { /* get_gone dropped r */
        get_free(op);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    char buf[96];
    if (op->rc || op->ranged < 0) {
        if (!op->rc) {
            snprintf(buf, sizeof(buf), "bytes */%" PRId64, op->info.size);
            evhttp_add_header(h, "Content-Range", buf);
            err_field(&op->err, ERR_RANGE, "Range",
                      "range '%s' is outside the object's %" PRId64 " bytes", op->range,
                      op->info.size);
        }
        r->on_gone = NULL;
        http_reply_err(r, &op->err);
        get_free(op);
        return;
    }
    add_object_headers(r, &op->info);
    if (op->unmodified) {
        /* no body; the length a 200 would have (RFC 9110 8.6), so a HEAD's is not 0 */
        snprintf(buf, sizeof(buf), "%" PRId64, op->info.size);
        evhttp_add_header(h, "Content-Length", buf);
        r->on_gone = NULL;
        get_free(op);
        http_reply_bytes(r, 304, "application/octet-stream", "", 0);
        return;
    }
    snprintf(buf, sizeof(buf), "%" PRId64, op->len);
    evhttp_add_header(h, "Content-Length", buf);
    if (op->ranged > 0) {
        snprintf(buf, sizeof(buf), "bytes %" PRId64 "-%" PRId64 "/%" PRId64, op->off,
                 op->off + op->len - 1, op->info.size);
        evhttp_add_header(h, "Content-Range", buf);
    }
    int status = op->ranged > 0 ? 206 : 200;
    if (op->head) {
        r->on_gone = NULL;
        get_free(op);
        http_reply_bytes(r, status, "application/octet-stream", "", 0);
        return;
    }
    op->left = op->len;
    http_reply_start(r, status, "application/octet-stream");
    if (r->ev) get_send_next(op);
}

static int api_blob_get(struct http_req *r, const char *bucket, const char *key, bool head)
{
    struct server *s = srv(r);
    struct err e = ERR_INIT;
    struct presign_bind bind;
    if (object_auth(r, head ? "HEAD" : "GET", bucket, key, &bind, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    struct get_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    op->s = s;
    snprintf(op->bucket, sizeof(op->bucket), "%s", bucket);
    op->key = xstrdup(key);
    const char *range = evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Range");
    op->range = range ? xstrdup(range) : NULL;
    op->inm = header_joined(r, "If-None-Match");
    op->ims = header_joined(r, "If-Modified-Since");
    op->if_range = header_joined(r, "If-Range");
    op->head = head;
    op->remote = blob_caps(s->blobs) & BLOB_CAP_REMOTE;
    op->buf = evbuffer_new();
    r->owner = op;
    r->on_gone = get_gone;
    if (op->remote) {
        op->reading = true;
        offload_run(s->offload, get_prepare, get_respond, op);
    } else {
        get_prepare(op);
        get_respond(op);
    }
    return HTTP_DEFERRED;
}

/* ---- DELETE and listing: one store call, on the offload thread for remote stores ---- */

enum call_kind { CALL_DELETE, CALL_LIST, CALL_BUCKETS };

struct call_op {
    struct http_req *r;
    struct server *s;
    enum call_kind kind;
    bool in_flight, gone;
    bool evented; /* delete: its event is written */
    char bucket[BLOB_BUCKET_MAX + 1];
    char *key, *prefix, *after; /* owned: r may be gone while the call runs */
    int limit;
    struct blob_list list;
    struct blob_info info; /* delete: the object deleted */
    int rc;
    struct err err;
};

static void call_free(struct call_op *op)
{
    free(op->key);
    free(op->prefix);
    free(op->after);
    blob_list_release(&op->list);
    free(op);
}

static void call_work(void *arg)
{
    struct call_op *op = arg;
    struct blob_store *bs = op->s->blobs;
    if (op->kind == CALL_DELETE) {
        /* what is deleted, for its event */
        op->rc = blob_head(bs, op->bucket, op->key, &op->info, &op->err);
        if (!op->rc) op->rc = blob_delete(bs, op->bucket, op->key, &op->err);
    } else if (op->kind == CALL_LIST) {
        op->rc = blob_list(bs, op->bucket, op->prefix, op->after, op->limit, &op->list, &op->err);
    } else {
        op->rc = blob_buckets(bs, op->after, op->limit, &op->list, &op->err);
    }
}

/* {"buckets": [{"name"}], "next"}: drover's archive (the jobs API reads it) left out. */
static json_t *buckets_json(const struct blob_list *l)
{
    json_t *names = json_array();
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].key, RETENTION_BUCKET))
            json_array_append_new(names, json_pack("{s:s}", "name", l->items[i].key));
    return json_pack("{s:o, s:o}", "buckets", names, "next",
                     l->next ? json_string(l->next) : json_null());
}

static json_t *list_json(const struct blob_list *l)
{
    json_t *objs = json_array();
    for (size_t i = 0; i < l->n; i++) {
        char ts[40];
        time_format_rfc3339(l->items[i].info.modified_ms, ts, sizeof(ts));
        json_array_append_new(objs, json_pack("{s:s, s:I, s:s, s:s}", "key", l->items[i].key,
                                              "size", (json_int_t)l->items[i].info.size, "sha256",
                                              l->items[i].info.sha256, "modified", ts));
    }
    return json_pack("{s:o, s:o}", "objects", objs, "next",
                     l->next ? json_string(l->next) : json_null());
}

static int delete_event_write(struct store *st, void *arg, struct err *e)
{
    struct call_op *op = arg;
    return store_event_object(st, OBJECT_DELETED, op->bucket, op->key, op->info.size,
                              op->info.sha256, e);
}

static void call_answer(void *arg);

static void delete_event_done(void *arg, int rc, const struct err *e)
{
    struct call_op *op = arg;
    if (rc) log_error("object s3://%s/%s: cannot record its event: %s", op->bucket, op->key, e->msg);
    op->evented = true;
    call_answer(op);
}

static void call_answer(void *arg)
{
    struct call_op *op = arg;
    struct http_req *r = op->r;
    if (op->kind == CALL_DELETE && !op->rc && !op->evented) {
        /* deleted: its event is written before the answer (in flight: call_gone waits) */
        op->in_flight = true;
        commit_submit(op->s->commit, delete_event_write, delete_event_done, op);
        return;
    }
    op->in_flight = false;
    if (!op->gone) {
        r->on_gone = NULL;
        if (op->rc)
            http_reply_err(r, &op->err);
        else if (op->kind == CALL_DELETE)
            http_reply_bytes(r, 204, "application/json", "", 0);
        else if (op->kind == CALL_LIST)
            http_reply_json(r, 200, list_json(&op->list));
        else
            http_reply_json(r, 200, buckets_json(&op->list));
    }
    call_free(op);
}

static void call_gone(struct http_req *r)
{
    struct call_op *op = r->owner;
    http_req_drop(r);
    if (op->in_flight) /* call_answer frees it */
        op->gone = true;
    else
        call_free(op);
}

static int call_run(struct http_req *r, struct call_op *op)
{
    op->r = r;
    op->s = srv(r);
    r->owner = op;
    r->on_gone = call_gone;
    if (blob_caps(op->s->blobs) & BLOB_CAP_REMOTE) {
        op->in_flight = true;
        offload_run(op->s->offload, call_work, call_answer, op);
    } else {
        call_work(op);
        call_answer(op);
    }
    return HTTP_DEFERRED;
}

/* ---- the object routes ---- */

/* The archive of finished jobs (retention.h) is the server's own: read through the jobs API. */
static int bucket_reserved(const char *bucket, struct err *e)
{
    if (strcmp(bucket, RETENTION_BUCKET))
        return 0;
    return err_field(e, ERR_DENIED, "bucket",
                     "bucket '%s' is reserved for drover's archive of finished jobs (read them "
                     "with GET /v1/jobs/{id} and /v1/jobs/{id}/log)",
                     bucket);
}

/* Splits r->tail "bucket/key" (decoded). */
static int object_name(struct http_req *r, char bucket[BLOB_BUCKET_MAX + 1], const char **key,
                       struct err *e)
{
    *key = r->tail ? r->tail : "";
    if (strlen(r->params[0]) > BLOB_BUCKET_MAX)
        return blob_bucket_check(r->params[0], e); /* says why */
    memcpy(bucket, r->params[0], strlen(r->params[0]) + 1);
    int rc = blob_name_check(bucket, *key, e);
    return rc ? rc : bucket_reserved(bucket, e);
}

int api_blob_object(struct http_req *r)
{
    char bucket[BLOB_BUCKET_MAX + 1];
    const char *key;
    struct err e = ERR_INIT;
    if (object_name(r, bucket, &key, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    switch (evhttp_request_get_command(r->ev)) {
    case EVHTTP_REQ_PUT:
        return api_blob_put(r, bucket, key);
    case EVHTTP_REQ_GET:
        return api_blob_get(r, bucket, key, false);
    case EVHTTP_REQ_HEAD:
        return api_blob_get(r, bucket, key, true);
    case EVHTTP_REQ_DELETE: {
        struct presign_bind bind;
        if (object_auth(r, "DELETE", bucket, key, &bind, &e) ||
            write_unconditional(r, "DELETE", &e)) {
            http_reply_err(r, &e);
            return HTTP_DONE;
        }
        struct call_op *op = xcalloc(1, sizeof(*op));
        op->kind = CALL_DELETE;
        memcpy(op->bucket, bucket, sizeof(op->bucket));
        op->key = xstrdup(key);
        return call_run(r, op);
    }
    default:
        http_reply_error(r, ERR_METHOD, NULL, "method not allowed on an object");
        return HTTP_DONE;
    }
}

/* A listing's call (objects or buckets) with its page's limit and after, or NULL after
   answering a bad limit. */
static struct call_op *list_op(struct http_req *r, enum call_kind kind)
{
    struct err e = ERR_INIT;
    long limit;
    if (http_query_long(r, "limit", 1, BLOB_LIST_MAX, BLOB_LIST_MAX, &limit, &e)) {
        http_reply_err(r, &e);
        return NULL;
    }
    struct call_op *op = xcalloc(1, sizeof(*op));
    op->kind = kind;
    const char *after = http_query(r, "after");
    op->after = after ? xstrdup(after) : NULL;
    op->limit = (int)limit;
    return op;
}

int api_blob_list(struct http_req *r)
{
    struct err e = ERR_INIT;
    if (blob_bucket_check(r->params[0], &e) || bucket_reserved(r->params[0], &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    struct call_op *op = list_op(r, CALL_LIST);
    if (!op) return HTTP_DONE;
    memcpy(op->bucket, r->params[0], strlen(r->params[0]) + 1); /* checked: <= 63 bytes */
    const char *prefix = http_query(r, "prefix");
    op->prefix = prefix ? xstrdup(prefix) : NULL;
    return call_run(r, op);
}

/* GET /v1/blobs?after=&limit=: the buckets that hold objects, by name. */
int api_blob_buckets(struct http_req *r)
{
    struct call_op *op = list_op(r, CALL_BUCKETS);
    return op ? call_run(r, op) : HTTP_DONE;
}

/* ---- POST /v1/presign ---- */

/*
 * Is uri under the job's prefix p? Compared as bucket and key: "s3://bu" (a
 * whole bucket) does not reach into "s3://bucket/...".
 */
static bool has_prefix(const char *uri, const char *p)
{
    size_t n = strlen(p);
    if (strncmp(uri, p, n)) return false;
    bool bucket_only = !strchr(p + (strncmp(p, "s3://", 5) ? 0 : 5), '/');
    return !bucket_only || uri[n] == '/' || uri[n] == '\0';
}

/*
 * May an agent running this job use `method` on `uri` (a whole prefix when
 * `prefix`)? GET/HEAD: its input arguments, stdin, input prefixes. PUT: its
 * output arguments, stdout/stderr, and names that start with an output prefix
 * (a folder's files below it too). Read from the
 * job's typed view of its spec (job.h: uris).
 */
static bool job_allows(const struct job *j, const char *method, const char *uri, bool prefix)
{
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    bool put = !strcmp(method, "PUT");
    for (size_t i = 0; i < j->nuris; i++) {
        const struct spec_uri *u = &j->uris[i];
        switch (u->use) {
        case SPEC_URI_READ_PREFIX:
            if (get && has_prefix(uri, u->uri)) return true;
            break;
        case SPEC_URI_WRITE_PREFIX:
            if (put && !prefix && has_prefix(uri, u->uri)) /* a folder's files: deeper */
                return true;
            break;
        case SPEC_URI_READ:
            if (get && !prefix && !strcmp(u->uri, uri)) return true;
            break;
        case SPEC_URI_WRITE:
            if (put && !prefix && !strcmp(u->uri, uri)) return true;
            break;
        }
    }
    return false;
}

/*
 * An agent's presign: the job must be leased (this attempt) to an agent of the caller's token
 * and name the object. Fills bind with the attempt and cuts *expires_s to its deadline.
 */
static int agent_may(struct http_req *r, json_t *body, const char *method, const char *uri,
                     bool prefix, struct presign_bind *bind, int64_t *expires_s, struct err *e)
{
    json_t *job = json_object_get(body, "job"), *att = json_object_get(body, "attempt");
    if (!json_is_string(job))
        return err_field(e, ERR_INVALID, "job", "an agent token must name its job: \"job\"");
    if (!json_is_integer(att) || json_integer_value(att) < 1 || json_integer_value(att) > INT32_MAX)
        return err_field(e, ERR_INVALID, "attempt",
                         "an agent token must name its attempt: \"attempt\" (an integer >= 1)");
    struct job j;
    int attempt = (int)json_integer_value(att);
    int64_t deadline = 0, now = time_now_ms();
    int rc = store_job_get(srv(r)->reads, json_string_value(job), &j, e);
    if (rc) return rc;
    struct live_agent *holder = j.agent ? fleet_agent(srv(r)->fleet, j.agent) : NULL;
    if ((j.state != JOB_LEASED && j.state != JOB_RUNNING) || j.attempt != attempt ||
        !fleet_attempt_live_read(srv(r)->fleet, &j, attempt, &deadline) ||
        (deadline && deadline <= now))
        rc = err_set(e, ERR_DENIED, "job '%s' attempt %d is not running", j.id, attempt);
    else if (!holder || !fleet_agent_owned_by(holder, r->token_name))
        rc = err_set(e, ERR_DENIED, "job '%s' is leased to an agent of another token", j.id);
    else if (!job_allows(&j, method, uri, prefix))
        rc = err_set(e, ERR_DENIED, "job '%s' does not name %s for %s", j.id, uri, method);
    if (!rc) {
        memcpy(bind->job, j.id, UUID_STR_LEN);
        bind->attempt = attempt;
        if (*expires_s > PRESIGN_AGENT_MAX_S) *expires_s = PRESIGN_AGENT_MAX_S;
        if (deadline && *expires_s > (deadline - now + 999) / 1000)
            *expires_s = (deadline - now + 999) / 1000;
    }
    job_release(&j);
    return rc;
}

/*
 * The URL's base: --public-url, else http:// (https:// when the server serves TLS) and the
 * Host the request came to.
 */
static char *url_base(struct http_req *r)
{
    struct server *s = srv(r);
    if (s->public_url) return xstrdup(s->public_url);
    const char *host = evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Host");
    return xasprintf("%s://%s", s->tls ? "https" : "http", host && *host ? host : "127.0.0.1");
}

/*
 * A URL for method on bucket/key; base ("http://host") is for the embedded store's URLs,
 * which are bound to bind (an agent's attempt). A store's own URLs (S3) cannot be bound:
 * their expiry is all that ends them.
 */
static int sign_one(struct server *s, const char *base, const char *method, const char *bucket,
                    const char *key, int64_t expires_s, const struct presign_bind *bind, char **url,
                    struct err *e)
{
    if (blob_caps(s->blobs) & BLOB_CAP_PRESIGN_NATIVE)
        return blob_presign(s->blobs, method, bucket, key, expires_s, url, e);
    char *q = NULL;
    int rc = presign_make(s->presign_secret, sizeof(s->presign_secret), method, bucket, key,
                          (int64_t)time(NULL) + expires_s, bind, &q, e);
    if (rc) return rc;
    *url = presign_url(base, bucket, key, q);
    free(q);
    return 0;
}

/*
 * {"method": "GET", "uri": "s3://b/prefix", "prefix": true}: every object under it, signed.
 * Runs on an offload thread for remote stores (it lists), so it takes no request.
 */
struct prefix_op {
    struct http_req *r;
    struct server *s;
    char *base;
    char bucket[BLOB_BUCKET_MAX + 1];
    char *key;
    int64_t expires_s;
    struct presign_bind bind;
    bool in_flight, gone;
    json_t *ans;
    int rc;
    struct err err;
};

static int presign_prefix(struct server *s, const char *base, const char *bucket, const char *key,
                          int64_t expires_s, const struct presign_bind *bind, json_t **out,
                          struct err *e)
{
    json_t *objs = json_array();
    char *after = NULL;
    int rc = 0;
    for (int page = 0; page < 100 && !rc; page++) {
        struct blob_list l = {0};
        if ((rc = blob_list(s->blobs, bucket, key, after, BLOB_LIST_MAX, &l, e))) break;
        for (size_t i = 0; i < l.n && !rc; i++) {
            char *url = NULL;
            if ((rc = sign_one(s, base, "GET", bucket, l.items[i].key, expires_s, bind, &url, e)))
                break;
            char *uri = xasprintf("s3://%s/%s", bucket, l.items[i].key);
            json_array_append_new(objs, json_pack("{s:s, s:s, s:I, s:s, s:s}", "uri", uri, "key",
                                                  l.items[i].key, "size",
                                                  (json_int_t)l.items[i].info.size, "sha256",
                                                  l.items[i].info.sha256, "url", url));
            free(uri);
            free(url);
        }
        free(after);
        after = l.next ? xstrdup(l.next) : NULL;
        blob_list_release(&l);
        if (!after) break;
    }
    free(after);
    if (rc) {
        json_decref(objs);
        return rc;
    }
    *out = json_pack("{s:o}", "objects", objs);
    return 0;
}

static void prefix_free(struct prefix_op *op)
{
    json_decref(op->ans);
    free(op->base);
    free(op->key);
    free(op);
}

static void prefix_work(void *arg)
{
    struct prefix_op *op = arg;
    op->rc = presign_prefix(op->s, op->base, op->bucket, op->key, op->expires_s, &op->bind,
                            &op->ans, &op->err);
}

static void prefix_answer(void *arg)
{
    struct prefix_op *op = arg;
    op->in_flight = false;
    if (!op->gone) {
        op->r->on_gone = NULL;
        if (op->rc)
            http_reply_err(op->r, &op->err);
        else
            http_reply_json(op->r, 200, json_incref(op->ans));
    }
    prefix_free(op);
}

static void prefix_gone(struct http_req *r)
{
    struct prefix_op *op = r->owner;
    http_req_drop(r);
    if (op->in_flight) /* prefix_answer frees it */
        op->gone = true;
    else
        prefix_free(op);
}

static int presign_prefix_run(struct http_req *r, const char *bucket, const char *key,
                              int64_t expires_s, const struct presign_bind *bind)
{
    struct prefix_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    op->s = srv(r);
    op->base = url_base(r);
    memcpy(op->bucket, bucket, strlen(bucket) + 1);
    op->key = xstrdup(key);
    op->expires_s = expires_s;
    op->bind = *bind;
    r->owner = op;
    r->on_gone = prefix_gone;
    if (blob_caps(op->s->blobs) & BLOB_CAP_REMOTE) {
        op->in_flight = true;
        offload_run(op->s->offload, prefix_work, prefix_answer, op);
    } else {
        prefix_work(op);
        prefix_answer(op);
    }
    return HTTP_DEFERRED;
}

/* "s3://bucket/prefix", where the prefix may be empty ("s3://bucket/" or "s3://bucket"). */
static int prefix_parse(const char *uri, char bucket[BLOB_BUCKET_MAX + 1], const char **key,
                        struct err *e)
{
    const char *why = NULL;
    if (strncmp(uri, "s3://", 5) != 0)
        why = "must be s3://bucket/ or s3://bucket/prefix";
    else
        spec_uri_valid(uri, true, &why);
    if (why) return err_field(e, ERR_INVALID, "uri", "invalid uri: %s", why);
    size_t n = strcspn(uri + 5, "/"); /* 2..63, checked above */
    memcpy(bucket, uri + 5, n);
    bucket[n] = '\0';
    *key = uri[5 + n] ? uri + 5 + n + 1 : ""; /* "s3://bucket": the whole bucket too */
    return 0;
}

int api_presign(struct http_req *r)
{
    struct err e = ERR_INIT;
    json_t *b = r->body;
    static const char *const fields[] = {"method", "uri",     "expires_s", "prefix",
                                         "job",    "attempt", NULL};
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v)
    {
        int i = 0;
        while (fields[i] && strcmp(fields[i], k))
            i++;
        if (!fields[i]) {
            http_reply_error(r, ERR_INVALID, k, "unknown field '%s'", k);
            return HTTP_DONE;
        }
    }
    json_t *m = json_object_get(b, "method"), *u = json_object_get(b, "uri");
    json_t *x = json_object_get(b, "expires_s"), *p = json_object_get(b, "prefix");
    const char *method = json_string_value(m);
    if (!method || (strcmp(method, "GET") && strcmp(method, "PUT") && strcmp(method, "HEAD") &&
                    strcmp(method, "DELETE"))) {
        http_reply_error(r, ERR_INVALID, "method", "method must be GET, PUT, HEAD or DELETE");
        return HTTP_DONE;
    }
    if (!json_is_string(u)) {
        http_reply_error(r, ERR_INVALID, "uri", "uri must be a string like s3://bucket/key");
        return HTTP_DONE;
    }
    if (x && (!json_is_integer(x) || json_integer_value(x) < 1 ||
              json_integer_value(x) > PRESIGN_MAX_S)) {
        http_reply_error(r, ERR_INVALID, "expires_s",
                         "expires_s must be a number of seconds from 1 to %d", PRESIGN_MAX_S);
        return HTTP_DONE;
    }
    if (p && !json_is_boolean(p)) {
        http_reply_error(r, ERR_INVALID, "prefix", "prefix must be true or false");
        return HTTP_DONE;
    }
    bool prefix = json_is_true(p);
    if (prefix && strcmp(method, "GET")) {
        http_reply_error(r, ERR_INVALID, "prefix", "prefix works with method GET only");
        return HTTP_DONE;
    }
    /* Agents name their job and get only its objects; an admin token may act as an agent
       (`drover dev`), and then the same rules hold. */
    bool as_agent = r->role == ROLE_AGENT || (r->role == ROLE_ADMIN && json_object_get(b, "job"));
    if (!as_agent && (json_object_get(b, "job") || json_object_get(b, "attempt"))) {
        http_reply_error(r, ERR_INVALID, "job", "job and attempt are for agent tokens");
        return HTTP_DONE;
    }
    char bucket[BLOB_BUCKET_MAX + 1];
    const char *key;
    const char *uri = json_string_value(u);
    int64_t expires_s = x ? json_integer_value(x) : PRESIGN_DEFAULT_S;
    struct presign_bind bind = {"", 0};
    if ((prefix ? prefix_parse(uri, bucket, &key, &e) : blob_uri_parse(uri, bucket, &key, &e)) ||
        bucket_reserved(bucket, &e) ||
        (as_agent && agent_may(r, b, method, uri, prefix, &bind, &expires_s, &e))) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (prefix) return presign_prefix_run(r, bucket, key, expires_s, &bind);
    char *url = NULL, *base = url_base(r);
    int rc = sign_one(srv(r), base, method, bucket, key, expires_s, &bind, &url, &e);
    free(base);
    if (rc) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    json_t *ans = json_pack("{s:s, s:s, s:I}", "url", url, "method", method, "expires",
                            (json_int_t)(time(NULL) + expires_s));
    free(url);
    http_reply_json(r, 200, ans);
    return HTTP_DONE;
}
