/*
 * store.c - the backend registry (by URI scheme) and the public wrappers.
 * Contracts are documented in store.h.
 */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

static const struct store_ops *const backends[] = {
    &store_sqlite_ops,
};

void job_list_release(struct job_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        job_release(&l->jobs[i]);
    free(l->jobs);
    l->jobs = NULL;
    l->n = 0;
}

int store_open(const char *uri, const struct store_opts *opts, struct store **out, struct err *e)
{
    const char *colon = strchr(uri, ':');
    size_t n = colon ? (size_t)(colon - uri) : 0;
    for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
        if (n == strlen(backends[i]->scheme) && !strncmp(uri, backends[i]->scheme, n))
            return backends[i]->open(uri, opts, out, e);
    if (colon && !strncmp(uri, "postgres", 8))
        return err_set(e, ERR_INVALID,
                       "store '%s': the PostgreSQL backend is not built yet; use sqlite:PATH",
                       uri);
    return err_set(e, ERR_INVALID, "store '%s': unknown scheme (expected sqlite:PATH)", uri);
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

int store_job_apply(struct store *st, const char *id, int attempt, const char *agent, bool spec,
                    enum job_event ev, const struct job_event_args *a, struct job *out,
                    struct err *e)
{
    return st->ops->job_apply(st, id, attempt, agent, spec, ev, a, out, e);
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

int store_meta_get(struct store *st, const char *key, char **value, struct err *e)
{
    return st->ops->meta_get(st, key, value, e);
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
