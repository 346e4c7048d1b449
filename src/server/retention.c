/*
 * retention.c - archiving and deleting finished jobs after their retention
 * (retention.h), and answering for them from the archive.
 *
 * Nothing here touches the store or the object store on the loop thread: the
 * sweep's reads and archive writes, and the archive's reads for an answer,
 * run on the offload workers; the deletes go through the committer.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "blob/blob.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/spec.h"
#include "server/offload.h"
#include "server/retention.h"
#include "server/server.h"

#define COPY_CHUNK (1 << 20)       /* output copied into the archive a piece at a time */
#define JOB_JSON_MAX (16 << 20)    /* an archived record larger than this is refused */
#define DURATION_MAX_MS (10LL * 365 * 24 * 3600 * 1000)

struct queue_retention {
    char queue[72];
    int64_t ms;
};

struct retention {
    struct server *s;
    char *db_uri;
    struct store *st; /* the workers' handle: one sweep at a time uses it */
    int64_t default_ms;
    struct queue_retention *queues;
    size_t nqueues;
    int64_t sweep_ms;
    int64_t next_ms; /* when the next sweep starts */
    bool busy;       /* a sweep is in flight */
    struct event *timer;
    struct retention_stats stats;
};

int retention_duration_parse(const char *s, int64_t *ms)
{
    char *end;
    if (*s < '0' || *s > '9') /* no sign, no space */
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || v <= 0)
        return -1;
    int64_t unit = 1000;
    if (*end) {
        switch (*end) {
        case 's': unit = 1000; break;
        case 'm': unit = 60 * 1000; break;
        case 'h': unit = 3600 * 1000; break;
        case 'd': unit = 24 * 3600 * 1000; break;
        default: return -1;
        }
        if (end[1])
            return -1;
    }
    if (v > DURATION_MAX_MS / unit)
        return -1;
    *ms = v * unit;
    return 0;
}

int retention_queue_opt_check(const char *cmd, const char *v)
{
    const char *eq = strchr(v, '=');
    char name[72];
    int64_t ms;
    if (!eq || (size_t)(eq - v) >= sizeof(name)) {
        fprintf(stderr, "drover %s: --queue-retention must be QUEUE=DURATION (e.g. "
                        "batch=2d), not '%s'\n", cmd, v);
        return -1;
    }
    memcpy(name, v, (size_t)(eq - v));
    name[eq - v] = '\0';
    if (!spec_queue_name_valid(name)) {
        fprintf(stderr, "drover %s: --queue-retention: '%s' is not a queue name "
                        "([a-z0-9._-]{1,64})\n", cmd, name);
        return -1;
    }
    if (retention_duration_parse(eq + 1, &ms)) {
        fprintf(stderr, "drover %s: --queue-retention %s: the duration must be N, Ns, Nm, Nh "
                        "or Nd (at most ten years), not '%s'\n", cmd, name, eq + 1);
        return -1;
    }
    return 0;
}

/* ---- the sweep ---- */

struct sweep {
    struct retention *rt;
    int64_t now_ms;
    char ids[RETENTION_BATCH][UUID_STR_LEN];
    bool archived[RETENTION_BATCH];
    bool held[RETENTION_BATCH];      /* still needed by an unfinished workflow or array */
    int64_t keep_ms[RETENTION_BATCH]; /* its retention: how long a held one is put off */
    size_t n;
    int deleted, deferred;
    int rc;
    struct err e;
};

/* Writes the bytes of one stream of one attempt to the archive (nothing when empty). */
static int archive_stream(struct retention *rt, const char *id, int attempt, int stream,
                          struct err *e)
{
    struct blob_writer *w = NULL;
    char key[160];
    snprintf(key, sizeof(key), "logs/%s/%d/%s", id, attempt, stream ? "stderr" : "stdout");
    int64_t off = 0;
    int rc = 0;
    for (;;) {
        struct buf b = BUF_INIT;
        if ((rc = store_log_read(rt->st, id, attempt, stream, off, COPY_CHUNK, &b, e))) {
            buf_release(&b);
            break;
        }
        if (!b.len) {
            buf_release(&b);
            break;
        }
        if (!w && (rc = blob_put_begin(rt->s->blobs, RETENTION_BUCKET, key, &w, e))) {
            buf_release(&b);
            break;
        }
        rc = blob_put_write(w, b.data, b.len, e);
        off += (int64_t)b.len;
        buf_release(&b);
        if (rc)
            break;
    }
    if (rc) {
        blob_put_abort(w);
        return rc;
    }
    return w ? blob_put_commit(w, NULL, e) : 0;
}

static int put_text(struct retention *rt, const char *key, const char *text, struct err *e)
{
    struct blob_writer *w;
    int rc = blob_put_begin(rt->s->blobs, RETENTION_BUCKET, key, &w, e);
    if (rc)
        return rc;
    if ((rc = blob_put_write(w, text, strlen(text), e))) {
        blob_put_abort(w);
        return rc;
    }
    return blob_put_commit(w, NULL, e);
}

/* Archives one job: its output, then its record. 0 when it is archived and may go. */
static int archive_job(struct retention *rt, const char *id, int64_t now_ms, int64_t *keep_ms,
                       struct err *e)
{
    struct job j;
    int rc = store_job_get(rt->st, id, &j, e);
    if (rc)
        return rc;
    *keep_ms = j.retention_ms ? j.retention_ms : rt->default_ms;
    if (!job_state_terminal(j.state)) {
        job_release(&j);
        return err_set(e, ERR_CONFLICT, "job '%s' is no longer finished", id);
    }
    for (int a = 1; a <= j.attempt && !rc; a++)
        for (int stream = 0; stream < 2 && !rc; stream++)
            rc = archive_stream(rt, id, a, stream, e);
    if (!rc) {
        json_t *doc = json_pack("{s:o, s:I}", "job", job_to_json(&j), "archived_at",
                                (json_int_t)now_ms);
        char *text = json_dumps(doc, JSON_COMPACT);
        char key[64];
        snprintf(key, sizeof(key), "jobs/%s.json", id);
        rc = put_text(rt, key, text, e);
        free(text);
        json_decref(doc);
    }
    job_release(&j);
    return rc;
}

static void sweep_work(void *arg)
{
    struct sweep *sw = arg;
    struct retention *rt = sw->rt;
    if (!rt->st && (sw->rc = store_open(rt->db_uri, &(struct store_opts){0}, &rt->st, &sw->e)))
        return;
    if ((sw->rc = store_job_expired(rt->st, sw->now_ms, rt->default_ms, RETENTION_BATCH, sw->ids,
                                    &sw->n, &sw->e)))
        return;
    for (size_t i = 0; i < sw->n; i++) {
        struct err e = ERR_INIT;
        struct job j;
        sw->keep_ms[i] = rt->default_ms;
        /* a node of a workflow, a task of an array, that has not ended: kept (sweep_delete) */
        int rc = store_job_held(rt->st, sw->ids[i], &sw->held[i], &e);
        if (!rc && sw->held[i] && !(rc = store_job_get_run(rt->st, sw->ids[i], &j, &e))) {
            sw->keep_ms[i] = j.retention_ms ? j.retention_ms : rt->default_ms;
            job_release(&j);
        }
        if (!rc && !sw->held[i])
            rc = archive_job(rt, sw->ids[i], sw->now_ms, &sw->keep_ms[i], &e);
        sw->archived[i] = rc == 0 && !sw->held[i];
        if (rc && rc != ERR_NOTFOUND && rc != ERR_CONFLICT) {
            log_error("retention: archiving job %s: %s", sw->ids[i], e.msg);
            if (!sw->rc) {
                sw->rc = rc;
                sw->e = e;
            }
        }
    }
}

/*
 * Writer thread: the archived jobs go. One that changed meanwhile (a retry) stays. One still
 * needed by a workflow or an array that has not ended (looked at again here: a retry of its
 * workflow may have made it needed since it was archived) is put off by its retention, at
 * least a sweep's interval, and looked at again then: it goes at most that long after its
 * workflow or array ended.
 */
static int sweep_delete(struct store *st, void *arg, struct err *e)
{
    struct sweep *sw = arg;
    for (size_t i = 0; i < sw->n; i++) {
        if (!sw->archived[i] && !sw->held[i])
            continue;
        struct err de = ERR_INIT;
        bool held = false;
        int rc = store_job_held(st, sw->ids[i], &held, &de);
        if (!rc && held) {
            int64_t keep = sw->keep_ms[i] > sw->rt->sweep_ms ? sw->keep_ms[i] : sw->rt->sweep_ms;
            if (!(rc = store_job_defer(st, sw->ids[i], sw->now_ms + keep, &de)))
                sw->deferred++;
        } else if (!rc) {
            if (!sw->archived[i])
                continue; /* its workflow or array ended since: archived next time */
            rc = store_job_delete(st, sw->ids[i], &de);
        }
        if (rc == 0 && !held)
            sw->deleted++;
        else if (rc && rc != ERR_NOTFOUND && rc != ERR_CONFLICT)
            return err_set(e, rc, "%s", de.msg);
    }
    return 0;
}

static void sweep_end(struct sweep *sw, bool more)
{
    struct retention *rt = sw->rt;
    rt->busy = false;
    rt->next_ms = time_now_ms() + (more ? 1000 : rt->sweep_ms);
    free(sw);
}

static void sweep_deleted(void *arg, int rc, const struct err *e)
{
    struct sweep *sw = arg;
    if (rc) {
        log_error("retention: deleting archived jobs: %s", e->msg);
        sw->rt->stats.failed++;
    } else {
        sw->rt->stats.archived += (uint64_t)sw->deleted;
        if (sw->deleted)
            log_info("retention: archived and deleted %d finished job%s", sw->deleted,
                     sw->deleted == 1 ? "" : "s");
        if (sw->deferred)
            log_debug("retention: kept %d finished job%s for a workflow or an array that "
                      "has not ended", sw->deferred, sw->deferred == 1 ? "" : "s");
    }
    sweep_end(sw, !rc && sw->n == RETENTION_BATCH);
}

static void sweep_found(void *arg)
{
    struct sweep *sw = arg;
    struct retention *rt = sw->rt;
    if (sw->rc && sw->rc != ERR_NOTFOUND) {
        if (!sw->n) /* an archive error is logged per job */
            log_error("retention: %s", sw->e.msg);
        rt->stats.failed++;
    }
    size_t archived = 0;
    for (size_t i = 0; i < sw->n; i++)
        archived += sw->archived[i] || sw->held[i];
    if (rt->s->shutting_down || !archived) { /* what was archived is archived again next time */
        sweep_end(sw, false);
        return;
    }
    commit_submit(rt->s->commit, sweep_delete, sweep_deleted, sw);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct retention *rt = arg;
    int64_t now = time_now_ms();
    if (rt->busy || rt->s->shutting_down || !rt->s->leader || now < rt->next_ms)
        return;
    struct sweep *sw = xcalloc(1, sizeof(*sw));
    sw->rt = rt;
    sw->now_ms = now;
    rt->busy = true;
    offload_run(rt->s->offload, sweep_work, sweep_found, sw);
}

struct retention *retention_new(struct server *s, const char *db_uri,
                                const struct retention_opts *o)
{
    struct retention *rt = xcalloc(1, sizeof(*rt));
    rt->s = s;
    rt->db_uri = xstrdup(db_uri);
    rt->default_ms = o->default_ms ? o->default_ms : RETENTION_DEFAULT_MS;
    rt->sweep_ms = 1000LL * (o->sweep_s ? o->sweep_s : RETENTION_SWEEP_S);
    rt->next_ms = time_now_ms() + 1000; /* the first a second after start */
    rt->queues = xcalloc(o->nqueues ? o->nqueues : 1, sizeof(*rt->queues));
    for (size_t i = 0; i < o->nqueues; i++) { /* checked by retention_queue_opt_check */
        const char *eq = strchr(o->queues[i], '=');
        struct queue_retention *q = &rt->queues[rt->nqueues++];
        snprintf(q->queue, sizeof(q->queue), "%.*s", (int)(eq - o->queues[i]), o->queues[i]);
        if (retention_duration_parse(eq + 1, &q->ms))
            q->ms = rt->default_ms;
    }
    rt->timer = event_new(s->base, -1, EV_PERSIST, on_timer, rt);
    struct timeval second = {1, 0};
    event_add(rt->timer, &second);
    return rt;
}

void retention_free(struct retention *rt)
{
    if (!rt)
        return;
    if (rt->timer)
        event_free(rt->timer);
    store_close(rt->st);
    free(rt->queues);
    free(rt->db_uri);
    free(rt);
}

int64_t retention_of_queue(const struct retention *rt, const char *queue)
{
    for (size_t i = rt->nqueues; i-- > 0;) /* the last one given for a queue wins */
        if (!strcmp(rt->queues[i].queue, queue))
            return rt->queues[i].ms;
    return 0;
}

void retention_apply(const struct retention *rt, struct job *j)
{
    if (!j->retention_ms)
        j->retention_ms = retention_of_queue(rt, j->queue);
}

void retention_get_stats(const struct retention *rt, struct retention_stats *out)
{
    *out = rt->stats;
}

/* ---- answering from the archive ---- */

struct lookup {
    struct retention *rt;
    struct http_req *r;
    char id[UUID_STR_LEN];
    char owner[128]; /* the caller's token name; "" for an admin (sees every job) */
    bool log;
    const char *refuse; /* "cancelled", "retried": 409 for the job found (retention_refuse) */
    int stream, attempt;
    int64_t offset, tail;
    /* out */
    int rc;
    struct err e;
    json_t *job;      /* the archived job */
    int64_t archived_at;
    struct buf bytes; /* the output asked for */
    int64_t at;       /* its offset in the stream */
};

static int read_blob(struct blob_store *bs, const char *key, int64_t off, int64_t len,
                     struct buf *out, struct err *e)
{
    struct blob_reader *rd;
    int rc = blob_open(bs, RETENTION_BUCKET, key, off, len, &rd, NULL, e);
    if (rc)
        return rc;
    char chunk[65536];
    ssize_t n;
    while ((n = blob_read(rd, chunk, sizeof(chunk), e)) > 0)
        buf_add(out, chunk, (size_t)n);
    blob_close(rd);
    return n < 0 ? (int)n : 0;
}

static void lookup_work(void *arg)
{
    struct lookup *lk = arg;
    struct blob_store *bs = lk->rt->s->blobs;
    char key[160];
    struct blob_info info;
    snprintf(key, sizeof(key), "jobs/%s.json", lk->id);
    if ((lk->rc = blob_head(bs, RETENTION_BUCKET, key, &info, &lk->e)))
        goto not_found;
    if (info.size > JOB_JSON_MAX) {
        lk->rc = err_set(&lk->e, ERR_IO, "archived job '%s' is too large (%" PRId64 " bytes)",
                         lk->id, info.size);
        return;
    }
    struct buf b = BUF_INIT;
    if ((lk->rc = read_blob(bs, key, 0, -1, &b, &lk->e))) {
        buf_release(&b);
        goto not_found;
    }
    /* output may hold NUL */
    json_t *doc = json_loadb(b.data ? b.data : "", b.len, JSON_ALLOW_NUL, NULL);
    buf_release(&b);
    json_t *job = json_object_get(doc, "job");
    const char *owner = json_string_value(json_object_get(job, "owner"));
    if (!json_is_object(job)) {
        json_decref(doc);
        lk->rc = err_set(&lk->e, ERR_IO, "archived job '%s' cannot be read", lk->id);
        return;
    }
    if (lk->owner[0] && (!owner || strcmp(owner, lk->owner))) { /* not the caller's */
        json_decref(doc);
        lk->rc = ERR_NOTFOUND;
        goto not_found;
    }
    lk->job = json_incref(job);
    lk->archived_at = json_integer_value(json_object_get(doc, "archived_at"));
    json_decref(doc);
    if (!lk->log)
        return;
    int attempts = (int)json_integer_value(json_object_get(lk->job, "attempt"));
    if (lk->attempt > attempts) {
        lk->rc = err_field(&lk->e, ERR_NOTFOUND, "attempt",
                           "job '%s' has no attempt %d: it ran %d attempt%s", lk->id,
                           lk->attempt, attempts, attempts == 1 ? "" : "s");
        return;
    }
    if (!lk->attempt)
        lk->attempt = attempts;
    lk->at = lk->offset;
    if (!lk->attempt)
        return; /* never ran: no output */
    snprintf(key, sizeof(key), "logs/%s/%d/%s", lk->id, lk->attempt,
             lk->stream ? "stderr" : "stdout");
    struct err he = ERR_INIT;
    int rc = blob_head(bs, RETENTION_BUCKET, key, &info, &he);
    if (rc == ERR_NOTFOUND)
        info.size = 0; /* it printed nothing */
    else if (rc) {
        lk->rc = rc;
        lk->e = he;
        return;
    }
    if (lk->tail)
        lk->at = info.size > lk->tail ? info.size - lk->tail : 0;
    if (lk->at >= info.size)
        return;
    int64_t len = info.size - lk->at;
    if (len > RETENTION_LOG_MAX)
        len = RETENTION_LOG_MAX;
    lk->rc = read_blob(bs, key, lk->at, len, &lk->bytes, &lk->e);
    return;
not_found:
    if (lk->rc == ERR_NOTFOUND) { /* as for any job not there: nothing of the archive shows */
        err_clear(&lk->e);
        err_set(&lk->e, ERR_NOTFOUND, "job '%s' not found", lk->id);
    }
}

static void lookup_done(void *arg)
{
    struct lookup *lk = arg;
    struct http_req *r = lk->r;
    if (r->gone) {
        http_req_drop(r);
    } else if (lk->rc) {
        http_reply_err(r, &lk->e);
    } else if (lk->refuse) {
        const char *state = json_string_value(json_object_get(lk->job, "state"));
        char at[32];
        time_format_rfc3339(lk->archived_at, at, sizeof(at));
        /* what to do instead: a retry is a new run of its spec; a cancel has nothing to do */
        bool retry = !strcmp(lk->refuse, "retried");
        http_reply_error(r, ERR_CONFLICT, NULL,
                         "job '%s' is %s and was archived at %s (past its retention): it can "
                         "no longer be %s; %s",
                         lk->id, state ? state : "ended", at, lk->refuse,
                         retry ? "submit its spec again (drover status shows it)"
                               : "it has ended, nothing of it runs");
    } else if (!lk->log) {
        json_t *o = json_deep_copy(lk->job);
        json_object_set_new(o, "waiting", json_null());
        json_object_set_new(o, "archived", json_true());
        json_object_set_new(o, "archived_at", job_time_json(lk->archived_at));
        http_reply_json(r, 200, o);
    } else {
        char at[32];
        snprintf(at, sizeof(at), "%lld", (long long)lk->at);
        struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
        evhttp_add_header(h, "X-Drover-Log-Offset", at);
        evhttp_add_header(h, "X-Drover-Archived", "true");
        http_reply_bytes(r, 200, "text/plain; charset=utf-8", lk->bytes.data ? lk->bytes.data : "",
                         lk->bytes.len);
    }
    json_decref(lk->job);
    buf_release(&lk->bytes);
    free(lk);
}

/* Looks job `id` up in the archive off the loop, then answers r (lookup_done). */
static void lookup_start(struct retention *rt, struct http_req *r, const char *id, bool log,
                         const struct logs_query *q, const char *refuse)
{
    struct lookup *lk = xcalloc(1, sizeof(*lk));
    lk->rt = rt;
    lk->r = r;
    snprintf(lk->id, sizeof(lk->id), "%s", id);
    if (r->role != ROLE_ADMIN)
        snprintf(lk->owner, sizeof(lk->owner), "%s", r->token_name);
    lk->log = log;
    lk->refuse = refuse;
    if (q) {
        lk->stream = q->stream;
        lk->attempt = q->pinned ? q->attempt : 0;
        lk->offset = q->offset;
        lk->tail = q->tail;
    }
    lk->bytes = (struct buf)BUF_INIT;
    lk->e = (struct err)ERR_INIT;
    offload_run(rt->s->offload, lookup_work, lookup_done, lk);
}

void retention_answer(struct retention *rt, struct http_req *r, const char *id, bool log,
                      const struct logs_query *q)
{
    lookup_start(rt, r, id, log, q, NULL);
}

void retention_refuse(struct retention *rt, struct http_req *r, const char *id,
                      const char *verb)
{
    lookup_start(rt, r, id, false, NULL, verb);
}
