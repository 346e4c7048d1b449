/*
 * store.c - the backend registry (by URI scheme) and the public wrappers.
 * Contracts are documented in store.h.
 */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

#define EVENT_ERROR_MAX 512 /* bytes of a result's error an event carries */

static const struct store_ops *const backends[] = {
    &store_sqlite_ops,
#ifdef WITH_POSTGRES
    &store_pg_ops,
#endif
};

void job_list_release(struct job_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        job_release(&l->jobs[i]);
    free(l->jobs);
    l->jobs = NULL;
    l->n = 0;
}

void store_uri_redact(const char *uri, char *out, size_t n)
{
    struct buf b = BUF_INIT;
    const char *p = uri;
    const char *slashes = strstr(uri, "://");
    if (slashes) { /* scheme://user:PASSWORD@host... */
        const char *auth = slashes + 3;
        const char *end = auth + strcspn(auth, "/?#");
        const char *at = memrchr(auth, '@', (size_t)(end - auth));
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon) {
            buf_add(&b, uri, (size_t)(colon + 1 - uri));
            buf_adds(&b, "***");
            p = at;
        }
    }
    for (;;) { /* ...?password=PASSWORD&... (and the key=value form) */
        const char *k = strstr(p, "password=");
        if (!k)
            break;
        buf_add(&b, p, (size_t)(k + strlen("password=") - p));
        buf_adds(&b, "***");
        p = k + strlen("password=");
        p += strcspn(p, "& ");
    }
    buf_adds(&b, p);
    snprintf(out, n, "%s", b.data ? b.data : "");
    buf_release(&b);
}

int store_open(const char *uri, const struct store_opts *opts, struct store **out, struct err *e)
{
    const char *colon = strchr(uri, ':');
    size_t n = colon ? (size_t)(colon - uri) : 0;
    char shown[512];
    *out = NULL;
    if (n == strlen("postgresql") && !strncmp(uri, "postgresql", n))
        n = strlen("postgres"); /* libpq's two spellings */
    for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
        if (n == strlen(backends[i]->scheme) && !strncmp(uri, backends[i]->scheme, n))
            return backends[i]->open(uri, opts, out, e);
    store_uri_redact(uri, shown, sizeof(shown));
    if (n == strlen("postgres") && !strncmp(uri, "postgres", n))
        return err_set(e, ERR_INVALID,
                       "store '%s': this drover was built without PostgreSQL (WITH_POSTGRES=OFF, "
                       "or libpq was not found at build time); use sqlite:PATH",
                       shown);
    return err_set(e, ERR_INVALID,
                   "store '%s': unknown scheme (expected sqlite:PATH or postgres://...)", shown);
}

void store_close(struct store *st)
{
    if (st)
        st->ops->close(st);
}

unsigned store_caps(const struct store *st)
{
    return st->ops->caps;
}

int store_claim(struct store *st, struct err *e)
{
    return st->ops->claim ? st->ops->claim(st, e) : 0;
}

int store_begin(struct store *st, struct err *e)
{
    return st->ops->begin(st, e);
}

int store_commit(struct store *st, struct err *e)
{
    return st->ops->commit(st, e);
}

void store_rollback(struct store *st)
{
    st->ops->rollback(st);
}

int store_savepoint(struct store *st, struct err *e)
{
    return st->ops->savepoint(st, e);
}

int store_savepoint_release(struct store *st, struct err *e)
{
    return st->ops->savepoint_release(st, e);
}

void store_savepoint_rollback(struct store *st)
{
    st->ops->savepoint_rollback(st);
}

int store_job_insert(struct store *st, const struct job *j, struct err *e)
{
    return st->ops->job_insert(st, j, e);
}

int store_job_get(struct store *st, const char *id, struct job *out, struct err *e)
{
    return st->ops->job_get(st, id, out, e);
}

int store_job_get_by_key(struct store *st, const char *owner, const char *key, struct job *out,
                         struct err *e)
{
    return st->ops->job_get_by_key(st, owner, key, out, e);
}

int store_job_match(struct store *st, const char *prefix, const char *owner,
                    char (*ids)[UUID_STR_LEN], size_t max, size_t *n, struct err *e)
{
    return st->ops->job_match(st, prefix, owner, ids, max, n, e);
}

int store_job_get_run(struct store *st, const char *id, struct job *out, struct err *e)
{
    return st->ops->job_get_run(st, id, out, e);
}

int store_job_list(struct store *st, const struct job_filter *f, struct job_list *out,
                   struct err *e)
{
    return st->ops->job_list(st, f, out, e);
}

/* Read locked, the lifecycle's event, fenced write: the same for every backend. */
int store_job_apply(struct store *st, const char *id, int attempt, const char *agent, bool spec,
                    enum job_event ev, const struct job_event_args *a, struct job *out,
                    struct err *e)
{
    int rc = st->ops->job_lock(st, id, spec, out, e);
    if (rc) {
        json_decref(a->progress);
        return rc;
    }
    int state = out->state, was = out->attempt;
    if ((attempt && was != attempt) || (agent && (!out->agent || strcmp(out->agent, agent)))) {
        json_decref(a->progress);
        return err_set(e, ERR_CONFLICT, "job '%s' is %s at attempt %d%s%s", id,
                       job_state_name(state), was, out->agent ? " on " : "",
                       out->agent ? out->agent : "");
    }
    if ((rc = lifecycle_apply(out, ev, a, e)))
        return rc; /* LIFECYCLE_SAME, or ERR_CONFLICT: out unchanged */
    if ((rc = st->ops->job_update(st, out, was, 1u << state, e)))
        job_release(out);
    return rc;
}

int store_job_lease(struct store *st, const char *agent, int64_t now_ms, struct store_lease *c,
                    size_t n, size_t *nleased, struct err *e)
{
    for (size_t i = 0; i < n; i++) {
        c[i].leased = false;
        c[i].attempt = 0;
        c[i].spec = NULL;
    }
    *nleased = 0;
    return st->ops->job_lease(st, agent, now_ms, c, n, nleased, e);
}

int store_job_cancel(struct store *st, const char *id, int64_t now_ms, struct job *out,
                     struct err *e)
{
    struct job_event_args a = {.now_ms = now_ms};
    struct err ce = ERR_INIT;
    int rc = store_job_apply(st, id, 0, NULL, true, JOB_EV_CANCEL, &a, out, &ce);
    if (rc == ERR_CONFLICT) {
        rc = err_set(e, ERR_CONFLICT, "job '%s' is already %s", id, job_state_name(out->state));
        job_release(out);
    } else if (rc) {
        *e = ce;
    }
    return rc;
}

int store_job_retry(struct store *st, const char *id, int64_t now_ms, struct job *out,
                    struct err *e)
{
    struct job_event_args a = {.now_ms = now_ms};
    struct err ce = ERR_INIT;
    int rc = store_job_apply(st, id, 0, NULL, true, JOB_EV_RETRY, &a, out, &ce);
    if (rc == ERR_CONFLICT) {
        rc = err_set(e, ERR_CONFLICT,
                     "job '%s' is %s: only a failed or cancelled job can be retried", id,
                     job_state_name(out->state));
        job_release(out);
    } else if (rc) {
        *e = ce;
    }
    return rc;
}

int store_job_update(struct store *st, const struct job *j, int expect_attempt,
                     unsigned expect_states, struct err *e)
{
    return st->ops->job_update(st, j, expect_attempt, expect_states, e);
}

int store_job_scan(struct store *st, unsigned states, int (*fn)(void *arg, const struct job *j),
                   void *arg, struct err *e)
{
    return st->ops->job_scan(st, states, fn, arg, e);
}

int store_log_append(struct store *st, const char *job, int attempt, int stream, int64_t offset,
                     const char *data, size_t len, struct err *e)
{
    return st->ops->log_append(st, job, attempt, stream, offset, data, len, e);
}

int store_log_read(struct store *st, const char *job, int attempt, int stream, int64_t offset,
                   size_t max, struct buf *out, struct err *e)
{
    return st->ops->log_read(st, job, attempt, stream, offset, max, out, e);
}

int store_agent_upsert(struct store *st, struct agent_rec *a, struct err *e)
{
    return st->ops->agent_upsert(st, a, e);
}

int store_agent_set_state(struct store *st, const char *id, int state, int64_t last_seen,
                          struct err *e)
{
    return st->ops->agent_set_state(st, id, state, last_seen, e);
}

int store_agent_scan(struct store *st, int (*fn)(void *arg, const struct agent_rec *a), void *arg,
                     struct err *e)
{
    return st->ops->agent_scan(st, fn, arg, e);
}

int store_queue_stats(struct store *st, const char *owner, struct queue_stat **out, size_t *n,
                      struct err *e)
{
    return st->ops->queue_stats(st, owner, out, n, e);
}

int store_token_insert(struct store *st, const char *name, int role, const char *hash,
                       struct err *e)
{
    return st->ops->token_insert(st, name, role, hash, e);
}

int store_token_find(struct store *st, const char *hash, int *role, char *name_out, size_t n,
                     struct err *e)
{
    return st->ops->token_find(st, hash, role, name_out, n, e);
}

int store_token_delete(struct store *st, const char *name, struct err *e)
{
    return st->ops->token_delete(st, name, e);
}

int store_token_count(struct store *st, int role, int64_t *count, struct err *e)
{
    return st->ops->token_count(st, role, count, e);
}

void store_service_release(struct service_rec *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->definition);
    free(r->created_by);
    memset(r, 0, sizeof(*r));
}

int store_service_insert(struct store *st, struct service_rec *r, struct err *e)
{
    return st->ops->service_insert(st, r, e);
}

int store_service_get(struct store *st, const char *name, int version, struct service_rec *out,
                      struct err *e)
{
    memset(out, 0, sizeof(*out));
    return st->ops->service_get(st, name, version, out, e);
}

int store_service_list(struct store *st, struct service_rec **out, size_t *n, struct err *e)
{
    *out = NULL;
    *n = 0;
    return st->ops->service_list(st, out, n, e);
}

int store_service_retire(struct store *st, const char *name, int64_t now_ms, struct err *e)
{
    return st->ops->service_retire(st, name, now_ms, e);
}

int store_meta_get(struct store *st, const char *key, char **value, struct err *e)
{
    return st->ops->meta_get(st, key, value, e);
}

int store_leader_take(struct store *st, const char *name, const char *holder, int64_t now_ms,
                      int64_t ttl_ms, bool *leader, struct err *e)
{
    *leader = false;
    if (ttl_ms <= 0) return err_set(e, ERR_INVALID, "the leader lease needs a positive ttl");
    return st->ops->leader_take(st, name, holder, now_ms, ttl_ms, leader, e);
}

int store_listen(struct store *st, int *fd, struct err *e)
{
    if (!st->ops->listen) return err_set(e, ERR_INVALID, "this store is not shared");
    return st->ops->listen(st, fd, e);
}

int store_notified(struct store *st, int *fd, bool *any, struct err *e)
{
    *any = false;
    if (!st->ops->notified) return err_set(e, ERR_INVALID, "this store is not shared");
    return st->ops->notified(st, fd, any, e);
}

void store_tx_events(struct store *st, int64_t *first, int64_t *last)
{
    *first = 1;
    *last = 0;
    if (st->ops->tx_events) st->ops->tx_events(st, first, last);
}

int store_agent_seen(struct store *st, const char *id, int64_t last_seen, struct err *e)
{
    return st->ops->agent_seen(st, id, last_seen, e);
}

int store_leader_release(struct store *st, const char *name, const char *holder, struct err *e)
{
    return st->ops->leader_release(st, name, holder, e);
}

int store_meta_set(struct store *st, const char *key, const char *value, struct err *e)
{
    return st->ops->meta_set(st, key, value, e);
}

int store_event_object(struct store *st, int change, const char *bucket, const char *key,
                       int64_t size, const char *sha256, struct err *e)
{
    return st->ops->event_object(st, change, bucket, key, size, sha256, e);
}

int store_event_list(struct store *st, const struct event_filter *f,
                     int (*fn)(void *arg, const struct event_rec *ev), void *arg, struct err *e)
{
    return st->ops->event_list(st, f, fn, arg, e);
}

int store_event_window(struct store *st, int64_t *first, int64_t *last, struct err *e)
{
    return st->ops->event_window(st, first, last, e);
}

int store_event_prune(struct store *st, int64_t before_ms, int64_t max_keep, struct err *e)
{
    return st->ops->event_prune(st, before_ms, max_keep, e);
}

int store_webhook_due(struct store *st, int64_t now_ms, int limit,
                      int (*fn)(void *arg, const struct webhook *w), void *arg, struct err *e)
{
    return st->ops->webhook_due(st, now_ms, limit, fn, arg, e);
}

int store_webhook_delete(struct store *st, int64_t id, struct err *e)
{
    return st->ops->webhook_delete(st, id, e);
}

int store_webhook_retry(struct store *st, int64_t id, int tries, int64_t next_at,
                        const char *error, struct err *e)
{
    return st->ops->webhook_retry(st, id, tries, next_at, error, e);
}

int store_webhook_count(struct store *st, int64_t *n, struct err *e)
{
    return st->ops->webhook_count(st, n, e);
}

/* ---- shared by the backends (store_int.h) ---- */

json_t *store_event_data(const struct job *j)
{
    static const char *const from_progress[] = {"percent", "message"};
    static const char *const from_result[] = {"reason", "exit_code", "signal", "duration_ms",
                                              "error"};
    if (!j->progress && !j->result)
        return NULL;
    json_t *d = json_object();
    for (size_t i = 0; i < ARRAY_SIZE(from_progress); i++) {
        json_t *v = json_object_get(j->progress, from_progress[i]);
        if (v && !json_is_null(v))
            json_object_set(d, from_progress[i], v);
    }
    for (size_t i = 0; i < ARRAY_SIZE(from_result); i++) {
        json_t *v = json_object_get(j->result, from_result[i]);
        if (!v || json_is_null(v))
            continue;
        size_t n = json_is_string(v) ? json_string_length(v) : 0;
        if (n > EVENT_ERROR_MAX) { /* at most EVENT_ERROR_MAX bytes, whole characters */
            const char *t = json_string_value(v);
            n = EVENT_ERROR_MAX;
            while (n > 0 && ((unsigned char)t[n] & 0xC0) == 0x80)
                n--;
            json_object_set_new(d, from_result[i], json_stringn(t, n));
        } else {
            json_object_set(d, from_result[i], v);
        }
    }
    return d;
}

const char *store_job_notify(const struct job *j, bool *all)
{
    const char *when = json_string_value(json_object_get(j->spec, "notify"));
    *all = when && !strcmp(when, "all");
    return json_string_value(json_object_get(j->spec, "notify_url"));
}

bool store_webhook_wants(const char *url, bool all, int state)
{
    return url && (all || job_state_terminal(state));
}

bool store_log_clamp(int64_t offset, size_t *len)
{
    if (offset < 0 || offset >= PROTO_STREAM_MAX || !*len)
        return false;
    if ((int64_t)*len > PROTO_STREAM_MAX - offset)
        *len = (size_t)(PROTO_STREAM_MAX - offset);
    return true;
}

bool store_log_take(int64_t *pos, size_t *max, int64_t off, const char *data, int64_t len,
                    struct buf *out)
{
    if (off > *pos) /* a gap: what is missing was never received */
        return false;
    int64_t skip = *pos - off;
    if (skip >= len)
        return true;
    size_t n = (size_t)(len - skip) < *max ? (size_t)(len - skip) : *max;
    buf_add(out, data + skip, n);
    *pos += (int64_t)n;
    *max -= n;
    return true;
}
