/*
 * store.c - the backend registry (by URI scheme) and the public wrappers.
 * Contracts are documented in store.h.
 */
#include "store/store_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/array.h"
#include "job/workflow.h"

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
    if (st) {
        free(st->changed);
        for (size_t i = 0; i < ARRAY_SIZE(st->wf_cache); i++)
            json_decref(st->wf_cache[i]);
        free(st->wf_pending);
        free(st->wf_touched);
        st->ops->close(st);
    }
}

unsigned store_caps(const struct store *st)
{
    return st->ops->caps;
}

const char *store_kind(const struct store *st)
{
    return st->ops->scheme;
}

int store_schema(const struct store *st)
{
    return st->ops->schema;
}

int store_claim(struct store *st, struct err *e)
{
    return st->ops->claim ? st->ops->claim(st, e) : 0;
}

/* ---- jobs the store changed by itself, for the server once committed ---- */

static pthread_mutex_t changed_lock = PTHREAD_MUTEX_INITIALIZER;
static char (*changed_ids)[UUID_STR_LEN];
static size_t changed_n, changed_cap;

static void changed_push(struct store *st, const char *id)
{
    if (st->nchanged == st->changed_cap) {
        st->changed_cap = st->changed_cap ? 2 * st->changed_cap : 16;
        st->changed = xrealloc(st->changed, st->changed_cap * sizeof(*st->changed));
    }
    snprintf(st->changed[st->nchanged++], UUID_STR_LEN, "%s", id);
}

size_t store_changed_take(char (**ids)[UUID_STR_LEN])
{
    pthread_mutex_lock(&changed_lock);
    size_t n = changed_n;
    *ids = changed_ids;
    changed_ids = NULL;
    changed_n = changed_cap = 0;
    pthread_mutex_unlock(&changed_lock);
    return n;
}

int store_begin(struct store *st, struct err *e)
{
    st->nchanged = st->changed_mark = 0;
    return st->ops->begin(st, e);
}

bool store_webhook_queued_take(struct store *st)
{
    bool q = st->webhook_queued;
    st->webhook_queued = false;
    return q;
}

int store_commit(struct store *st, struct err *e)
{
    int rc = st->ops->commit(st, e);
    if (!rc && st->nchanged) {
        pthread_mutex_lock(&changed_lock);
        if (changed_n + st->nchanged > changed_cap) {
            changed_cap = changed_n + st->nchanged + 16;
            changed_ids = xrealloc(changed_ids, changed_cap * sizeof(*changed_ids));
        }
        memcpy(changed_ids + changed_n, st->changed, st->nchanged * sizeof(*st->changed));
        changed_n += st->nchanged;
        pthread_mutex_unlock(&changed_lock);
    }
    st->nchanged = st->changed_mark = 0;
    return rc;
}

void store_rollback(struct store *st)
{
    st->nchanged = st->changed_mark = 0;
    st->ops->rollback(st);
}

int store_savepoint(struct store *st, struct err *e)
{
    st->changed_mark = st->nchanged;
    return st->ops->savepoint(st, e);
}

int store_savepoint_release(struct store *st, struct err *e)
{
    return st->ops->savepoint_release(st, e);
}

void store_savepoint_rollback(struct store *st)
{
    st->nchanged = st->changed_mark;
    st->ops->savepoint_rollback(st);
}

int store_job_insert(struct store *st, const struct job *j, struct err *e)
{
    return st->ops->job_insert(st, j, e);
}

/* A run of plain jobs: in as few statements as the backend can, else one by one. */
static int insert_plain(struct store *st, struct job *const *jobs, size_t n, struct err *e)
{
    if (st->ops->job_insert_plain)
        return n ? st->ops->job_insert_plain(st, jobs, n, e) : 0;
    for (size_t i = 0; i < n; i++) {
        int rc = st->ops->job_insert(st, jobs[i], e);
        if (rc)
            return rc;
    }
    return 0;
}

/*
 * Each job in order. A job with a key (whose conflict names the key) or a
 * webhook (whose outbox row names its event) is written alone; each run of
 * the others goes to the backend at once.
 */
int store_job_insert_many(struct store *st, struct job *const *jobs, size_t n, struct err *e)
{
    size_t from = 0; /* the run of plain jobs not yet written */
    for (size_t i = 0; i < n; i++) {
        bool all;
        if (!jobs[i]->key && !store_job_notify(jobs[i], &all))
            continue;
        int rc = insert_plain(st, jobs + from, i - from, e);
        if (!rc)
            rc = st->ops->job_insert(st, jobs[i], e);
        if (rc)
            return rc;
        from = i + 1;
    }
    return insert_plain(st, jobs + from, n - from, e);
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

int store_id_match(struct store *st, enum store_kind kind, const char *prefix,
                   const char *owner, char (*ids)[UUID_STR_LEN], size_t max, size_t *n,
                   struct err *e)
{
    return st->ops->id_match(st, kind, prefix, owner, ids, max, n, e);
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

/*
 * A workflow's lookups, built once from its document (which never changes once stored): a
 * json object {"id", "doc", "job_node": {JOB: NODE}, "down": {NODE: [NODE...]} (the nodes
 * that depend on it), "to": {NODE: [CONNECTION...]}, "from": {NODE: [CONNECTION...]},
 * "on": {NODE: {UPSTREAM: "success"|"any"}}, "cursor": {NODE: N} (node_go's hint), "names":
 * [NODE...] (the document's order), "open_at": N (wf_ended's hint)}, so that
 * moving a workflow along costs what the nodes it touches cost, not its size.
 */
static void index_add(json_t *o, const char *key, json_t *v)
{
    json_t *a = json_object_get(o, key);
    if (!a) json_object_set_new(o, key, a = json_array());
    json_array_append(a, v);
}

/* The node of "NODE.PORT" into node (at most n bytes); false when there is none. */
static bool end_node(const char *end, char *node, size_t n)
{
    const char *dot = end ? strchr(end, '.') : NULL;
    if (!dot || (size_t)(dot - end) >= n) return false;
    memcpy(node, end, (size_t)(dot - end));
    node[dot - end] = '\0';
    return true;
}

static json_t *wf_index_build(const char *id, json_t *doc)
{
    json_t *job_node = json_object(), *down = json_object(), *to = json_object(),
           *from = json_object(), *on = json_object(), *v, *d, *c;
    const char *k;
    size_t i;
    json_object_foreach(json_object_get(doc, "nodes"), k, v)
    {
        const char *job = json_string_value(json_object_get(v, "job"));
        if (job) json_object_set_new(job_node, job, json_string(k));
        json_t *name = json_string(k), *ons = json_object();
        json_array_foreach(json_object_get(v, "depends_on"), i, d)
        {
            const char *up = json_string_value(json_object_get(d, "node"));
            if (!up) continue;
            index_add(down, up, name);
            json_object_set(ons, up, json_object_get(d, "on"));
        }
        json_object_set_new(on, k, ons);
        json_decref(name);
    }
    json_array_foreach(json_object_get(doc, "connections"), i, c)
    {
        char node[80];
        if (end_node(json_string_value(json_object_get(c, "to")), node, sizeof(node)))
            index_add(to, node, c);
        if (end_node(json_string_value(json_object_get(c, "from")), node, sizeof(node)))
            index_add(from, node, c);
    }
    json_t *names = json_array();
    json_object_foreach(json_object_get(doc, "nodes"), k, v)
        json_array_append_new(names, json_string(k));
    return json_pack("{s:s, s:O, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:i}", "id", id, "doc", doc,
                     "job_node", job_node, "down", down, "to", to, "from", from, "on", on,
                     "cursor", json_object(), "names", names, "open_at", 0);
}

/* Workflow `id`'s lookups (a new reference): from the cache, else built from doc (when given)
   or from the store. */
static int wf_index(struct store *st, const char *id, json_t *doc, json_t **out, struct err *e)
{
    for (size_t i = 0; i < ARRAY_SIZE(st->wf_cache); i++) {
        const char *have = json_string_value(json_object_get(st->wf_cache[i], "id"));
        if (have && !strcmp(have, id)) {
            *out = json_incref(st->wf_cache[i]);
            return 0;
        }
    }
    struct workflow_rec w = {0};
    if (!doc) {
        int rc = st->ops->workflow_get(st, id, &w, e);
        if (rc) return rc;
        doc = w.doc;
    }
    *out = wf_index_build(id, doc);
    workflow_rec_release(&w);
    size_t slot = st->wf_next++ % ARRAY_SIZE(st->wf_cache);
    json_decref(st->wf_cache[slot]);
    st->wf_cache[slot] = json_incref(*out);
    return 0;
}

/* The lookups of the workflow job `job` belongs to, in *ix (a new reference): 1; 0 when it
   belongs to none. */
static int workflow_of_job(struct store *st, const char *job, json_t **ix, struct err *e)
{
    char wid[UUID_STR_LEN];
    struct err we = ERR_INIT;
    int rc = st->ops->workflow_of(st, job, wid, &we);
    if (rc == ERR_NOTFOUND) return 0;
    if (rc) return err_set(e, rc, "%s", we.msg);
    return (rc = wf_index(st, wid, NULL, ix, e)) ? rc : 1;
}

/* The name of the node whose job is `job`; NULL when none. */
static const char *node_of_job(json_t *ix, const char *job)
{
    return json_string_value(json_object_get(json_object_get(ix, "job_node"), job));
}

static int workflow_advance(struct store *st, const char *job, int64_t now_ms, struct err *e);
static int workflow_reblock_after(struct store *st, const char *job, int64_t now_ms,
                                  struct err *e);
static int workflow_attempt_keys(struct store *st, const char *job, int attempt, struct err *e);
static int fan_cancel(struct store *st, const char *job, int64_t now_ms, struct err *e);
static int fan_task_ended(struct store *st, const struct job *task, int64_t now_ms,
                          struct err *e);
static bool fan_node(const struct job *j);
static int node_go(struct store *st, json_t *ix, const char *name, const char *ended,
                   int64_t now_ms, struct err *e);
static int wf_end_check(struct store *st, const char *wid, struct err *e);
static int wf_is_ended(struct store *st, const char *wid, bool *ended, struct err *e);
static int wf_ended(struct store *st, json_t *ix, bool *ended, int64_t *count, struct err *e);
static int wf_reopened_by(struct store *st, const char *job, char wid[UUID_STR_LEN],
                          struct err *e);
static int wf_reopened(struct store *st, const char *wid, struct err *e);
static int wf_event(struct store *st, const struct workflow_rec *w, int state,
                    const int64_t *count, struct err *e);

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
    /* a fan-out node's job is never queued: no agent runs it (its workflow's retry reruns its
       tasks) */
    if (ev == JOB_EV_RETRY && fan_node(out))
        return err_set(e, ERR_CONFLICT,
                       "job '%s' is a workflow's fan-out node: retry its workflow (its failed and "
                       "cancelled tasks run again)",
                       id);
    /* a node retried by hand reopens its workflow when that had ended */
    char reopens[UUID_STR_LEN] = "";
    if (ev == JOB_EV_RETRY && (rc = wf_reopened_by(st, id, reopens, e))) {
        json_decref(a->progress);
        job_release(out);
        return rc; /* a store's error, not ERR_CONFLICT: out released */
    }
    if ((rc = lifecycle_apply(out, ev, a, e)))
        return rc; /* LIFECYCLE_SAME, or ERR_CONFLICT: out unchanged */
    if ((rc = st->ops->job_update(st, out, was, 1u << state, e))) {
        job_release(out);
        return rc;
    }
    /* a workflow's node ended: what depends on it may go on (or not), in this transaction; a
       fan-out node cancelled cancels its tasks; a fan-out node's last task settles it */
    if (job_state_terminal(out->state) &&
        ((rc = workflow_advance(st, id, a->now_ms, e)) ||
         (ev == JOB_EV_CANCEL && (rc = fan_cancel(st, id, a->now_ms, e))) ||
         (rc = fan_task_ended(st, out, a->now_ms, e))))
        job_release(out);
    /* queued for another attempt: its connected outputs go to that attempt's keys; retried by
       hand, what its end cancelled after it waits for it again */
    else if (out->state == JOB_QUEUED && state != JOB_QUEUED &&
             ((rc = workflow_attempt_keys(st, id, out->attempt + 1, e)) ||
              (ev == JOB_EV_RETRY && (rc = workflow_reblock_after(st, id, a->now_ms, e))) ||
              (reopens[0] && (rc = wf_reopened(st, reopens, e)))))
        job_release(out);
    return rc;
}

/* When job's workflow has ended: its id into wid (else wid is left as it is). */
static int wf_reopened_by(struct store *st, const char *job, char wid[UUID_STR_LEN],
                          struct err *e)
{
    json_t *ix;
    bool ended;
    int rc = workflow_of_job(st, job, &ix, e);
    if (rc <= 0) return rc; /* an error, or not a workflow's job */
    if (!(rc = wf_ended(st, ix, &ended, NULL, e)) && ended)
        snprintf(wid, UUID_STR_LEN, "%s", json_string_value(json_object_get(ix, "id")));
    json_decref(ix);
    return rc;
}

/* Workflow wid runs again after its end: its event. */
static int wf_reopened(struct store *st, const char *wid, struct err *e)
{
    struct workflow_rec w = {0};
    int rc = st->ops->workflow_get(st, wid, &w, e);
    if (!rc) rc = wf_event(st, &w, JOB_RUNNING, NULL, e);
    workflow_rec_release(&w);
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
    /* an array's candidates: as many of its next tasks claimed, their jobs made, in this
       transaction (the array's row read once for all of them) */
    for (size_t i = 0; i < n; i++)
        c[i].exhausted = false;
    for (size_t i = 0; i < n; i++) {
        if (!c[i].array[0] || c[i].job[0] || c[i].exhausted) continue;
        size_t k = 0;
        for (size_t j = i; j < n; j++)
            k += !strcmp(c[j].array, c[i].array) && !c[j].job[0];
        struct job *jobs = xcalloc(k, sizeof(*jobs));
        size_t got = 0;
        struct err ce = ERR_INIT;
        int rc = store_array_claim(st, c[i].array, agent, now_ms, k, jobs, &got, &ce);
        if (rc && rc != ERR_NOTFOUND) {
            free(jobs);
            *e = ce;
            return rc;
        }
        size_t next = 0;
        for (size_t j = i; j < n; j++) {
            if (strcmp(c[j].array, c[i].array) || c[j].job[0] || c[j].exhausted) continue;
            if (next < got) { /* leased with its row */
                struct job *t = &jobs[next++];
                memcpy(c[j].job, t->id, sizeof(c[j].job));
                c[j].leased = true;
                c[j].attempt = t->attempt;
                c[j].spec = job_spec_dump(t->spec); /* as the store keeps it */
                (*nleased)++;
            } else {
                c[j].exhausted = true;
            }
        }
        for (size_t j = 0; j < got; j++)
            job_release(&jobs[j]);
        free(jobs);
    }
    size_t arrays = 0;
    for (size_t i = 0; i < n; i++)
        arrays += c[i].array[0] != '\0';
    if (!arrays) return st->ops->job_lease(st, agent, now_ms, c, n, nleased, e);
    if (arrays == n) return 0;
    /* the other candidates, leased by the backend */
    struct store_lease *live = xcalloc(n, sizeof(*live));
    size_t *at = xcalloc(n, sizeof(*at)), m = 0, more = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].array[0]) continue;
        live[m] = c[i];
        at[m++] = i;
    }
    int rc = st->ops->job_lease(st, agent, now_ms, live, m, &more, e);
    *nleased += more;
    for (size_t k = 0; k < m; k++)
        c[at[k]] = live[k];
    free(live);
    free(at);
    return rc;
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
    if (rc == ERR_CONFLICT && fan_node(out)) {
        *e = ce;
        job_release(out);
    } else if (rc == ERR_CONFLICT) {
        rc = err_set(e, ERR_CONFLICT,
                     "job '%s' is %s: only a failed or cancelled job can be retried", id,
                     job_state_name(out->state));
        job_release(out);
    } else if (rc) {
        *e = ce;
    }
    return rc;
}

int store_job_prefetch(struct store *st, const char *const *ids, const int *head_attempts,
                       size_t n, size_t head_max, struct err *e)
{
    return st->ops->job_prefetch && n
               ? st->ops->job_prefetch(st, ids, head_attempts, n, head_max, e)
               : 0;
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

int store_job_each(struct store *st, const char *const *ids, size_t n,
                   int (*fn)(void *arg, const struct job *j), void *arg, struct err *e)
{
    if (st->ops->job_each)
        return n ? st->ops->job_each(st, ids, n, fn, arg, e) : 0;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        struct job j;
        if ((rc = st->ops->job_get(st, ids[i], &j, e)) == ERR_NOTFOUND) {
            err_clear(e);
            rc = 0;
            continue;
        }
        if (!rc) {
            rc = fn(arg, &j);
            job_release(&j);
        }
    }
    return rc;
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

int store_agent_forget(struct store *st, const char *id, int64_t seen_before, struct err *e)
{
    return st->ops->agent_forget(st, id, seen_before, e);
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

int store_token_scan(struct store *st, int (*fn)(void *arg, const struct token_rec *t), void *arg,
                     struct err *e)
{
    return st->ops->token_scan(st, fn, arg, e);
}

int store_session_insert(struct store *st, const struct session_rec *s, int64_t now_ms,
                         int max_per_name, int max_all, struct err *e)
{
    return st->ops->session_insert(st, s, now_ms, max_per_name, max_all, e);
}

int store_session_find(struct store *st, const char *id_hash, int64_t now_ms,
                       struct session_rec *out, struct err *e)
{
    return st->ops->session_find(st, id_hash, now_ms, out, e);
}

int store_session_delete(struct store *st, const char *id_hash, struct err *e)
{
    return st->ops->session_delete(st, id_hash, e);
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

int store_notified(struct store *st, int *fd, bool *any, int64_t *upto, struct err *e)
{
    *any = false;
    *upto = 0;
    if (!st->ops->notified) return err_set(e, ERR_INVALID, "this store is not shared");
    return st->ops->notified(st, fd, any, upto, e);
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

int store_agent_set_runtimes(struct store *st, const char *id, unsigned runtimes, struct err *e)
{
    return st->ops->agent_set_runtimes(st, id, runtimes, e);
}

int store_leader_release(struct store *st, const char *name, const char *holder, struct err *e)
{
    return st->ops->leader_release(st, name, holder, e);
}

int store_meta_set(struct store *st, const char *key, const char *value, struct err *e)
{
    return st->ops->meta_set(st, key, value, e);
}

int store_trigger_fire_add(struct store *st, const char *trigger, const char *uri,
                           const char *sha256, int64_t now_ms, int *added, struct err *e)
{
    int dummy;
    return st->ops->trigger_fire_add(st, trigger, uri, sha256, now_ms, added ? added : &dummy, e);
}

int store_event_object(struct store *st, int change, const char *bucket, const char *key,
                       int64_t size, const char *sha256, struct err *e)
{
    json_t *d = json_pack("{s:s, s:s, s:I, s:s?}", "bucket", bucket, "key", key, "size",
                          (json_int_t)size, "sha256", sha256);
    int rc = st->ops->event_add(st, EVENT_OBJECT, bucket, NULL, change, NULL, d, NULL, e);
    json_decref(d);
    if (rc || change != OBJECT_CREATED || !sha256) return rc;
    char *uri = xasprintf("s3://%s/%s", bucket, key);
    rc = store_trigger_fire_add(st, NULL, uri, sha256, time_now_ms(), NULL, e);
    free(uri);
    return rc;
}

json_t *trigger_fire_data(const char *uri, const char *sha256)
{
    if (!*sha256) return json_pack("{s:s}", "time", uri); /* a schedule's: uri is its time */
    return json_pack("{s:s, s:s}", "uri", uri, "sha256", sha256);
}

void trigger_rec_release(struct trigger_rec *t)
{
    free(t->schedule);
    free(t->timezone);
    free(t->owner);
    free(t->prefix);
    free(t->input);
    free(t->template_);
    memset(t, 0, sizeof(*t));
}

void trigger_fire_release(struct trigger_fire *f)
{
    free(f->uri);
    free(f->target);
    free(f->error);
    memset(f, 0, sizeof(*f));
}

/* Trigger `id` (of `owner`) changed: its event, in the transaction of the change. */
static int trigger_changed(struct store *st, const char *id, const char *owner,
                           enum trigger_outcome change, const char *by, struct err *e)
{
    json_t *d = json_pack("{s:s?}", "by", by);
    int rc = st->ops->event_add(st, EVENT_TRIGGER, id, NULL, change, owner, d, NULL, e);
    json_decref(d);
    return rc;
}

/* The owner of trigger `id` (*owner: free it), for its event. */
static int trigger_owner(struct store *st, const char *id, char **owner, struct err *e)
{
    struct trigger_rec t = {0};
    int rc = st->ops->trigger_get(st, id, &t, e);
    *owner = rc ? NULL : t.owner;
    t.owner = NULL;
    trigger_rec_release(&t);
    return rc;
}

int store_trigger_insert(struct store *st, const struct trigger_rec *t, struct err *e)
{
    int rc = st->ops->trigger_insert(st, t, e);
    return rc ? rc : trigger_changed(st, t->id, t->owner, TRIGGER_CREATED, t->owner, e);
}

int store_trigger_update(struct store *st, const struct trigger_rec *t, const char *by,
                         struct err *e)
{
    char *owner = NULL; /* the stored one: t's is not written */
    int rc = st->ops->trigger_update(st, t, e);
    if (!rc && !(rc = trigger_owner(st, t->id, &owner, e)))
        rc = trigger_changed(st, t->id, owner, TRIGGER_UPDATED, by, e);
    free(owner);
    return rc;
}

int store_trigger_get(struct store *st, const char *id, struct trigger_rec *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    return st->ops->trigger_get(st, id, out, e);
}

int store_trigger_list(struct store *st, const char *owner, const char *after, int limit,
                       struct trigger_rec **out, size_t *n, struct err *e)
{
    *out = NULL;
    *n = 0;
    return st->ops->trigger_list(st, owner, after, limit, out, n, e);
}

int store_trigger_delete(struct store *st, const char *id, const char *by, struct err *e)
{
    char *owner = NULL;
    int rc = trigger_owner(st, id, &owner, e);
    if (!rc) rc = st->ops->trigger_delete(st, id, e);
    if (!rc) rc = trigger_changed(st, id, owner, TRIGGER_DELETED, by, e);
    free(owner);
    return rc;
}

int store_trigger_fires(struct store *st, const char *trigger, int limit,
                        struct trigger_fire **out, size_t *n, struct err *e)
{
    *out = NULL;
    *n = 0;
    return st->ops->trigger_fires(st, trigger, limit, out, n, e);
}

int store_trigger_fire_done(struct store *st, int64_t id, const char *target, const char *error,
                            int64_t now_ms, struct err *e)
{
    return st->ops->trigger_fire_done(st, id, target, error, now_ms, e);
}

int store_trigger_fires_prune(struct store *st, const char *trigger, int keep, struct err *e)
{
    return st->ops->trigger_fires_prune(st, trigger, keep < 1 ? 1 : keep, e);
}

int store_trigger_pause(struct store *st, const char *id, bool paused, int64_t now_ms,
                        const char *by, bool *changed, struct err *e)
{
    char *owner = NULL;
    int rc = st->ops->trigger_pause(st, id, paused, now_ms, changed, e);
    if (rc || !*changed) return rc;
    if (!(rc = trigger_owner(st, id, &owner, e)))
        rc = trigger_changed(st, id, owner, paused ? TRIGGER_PAUSED : TRIGGER_RESUMED, by, e);
    free(owner);
    return rc;
}

int store_trigger_last_target(struct store *st, const char *trigger, int64_t before,
                              char **target, struct err *e)
{
    return st->ops->trigger_last_target(st, trigger, before, target, e);
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

/* ---- workflows ---- */

void workflow_rec_release(struct workflow_rec *w)
{
    free(w->owner);
    free(w->name);
    json_decref(w->doc);
    memset(w, 0, sizeof(*w));
}

/* Node job `job`'s key is taken: e names the node's field (nodes.NAME.job.key), as the
   workflow's checks name fields, not the job's "key". */
static void name_node_key(const struct workflow_rec *w, const char *job, struct err *e)
{
    const char *name;
    json_t *node;
    json_object_foreach(json_object_get(w->doc, "nodes"), name, node)
    {
        const char *id = json_string_value(json_object_get(node, "job"));
        if (!id || strcmp(id, job)) continue;
        char field[sizeof(e->field)], msg[sizeof(e->field) + sizeof(e->msg) + 2];
        snprintf(field, sizeof(field), "nodes.%s.job.key", name);
        snprintf(msg, sizeof(msg), "%s: %s", field, e->msg);
        err_clear(e); /* the first error set wins: replaced */
        err_field(e, ERR_CONFLICT, field, "%s", msg);
        return;
    }
}

int store_workflow_by_key(struct store *st, const char *owner, const char *key, char *id_out,
                          struct err *e)
{
    return st->ops->workflow_by_key(st, owner, key, id_out, e);
}

int store_workflow_insert(struct store *st, const struct workflow_rec *w, struct job *const *jobs,
                          size_t n, struct err *e)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = store_job_insert(st, jobs[i], e);
        if (rc == ERR_CONFLICT && !strcmp(e->field, "key")) name_node_key(w, jobs[i]->id, e);
    }
    if (!rc) rc = st->ops->workflow_insert(st, w, e);
    if (!rc) rc = wf_event(st, w, JOB_RUNNING, NULL, e);
    /* a fan-out node without upstreams: its array now */
    json_t *ix = NULL;
    for (size_t i = 0; i < n && !rc; i++) {
        if (!fan_node(jobs[i])) continue;
        if (!ix && (rc = wf_index(st, w->id, w->doc, &ix, e))) break;
        const char *name = node_of_job(ix, jobs[i]->id);
        json_t *node = json_object_get(json_object_get(w->doc, "nodes"), name ? name : "");
        if (name && !json_array_size(json_object_get(node, "depends_on")))
            rc = node_go(st, ix, name, NULL, w->created_at, e);
    }
    json_decref(ix);
    return rc;
}

int store_workflow_get(struct store *st, const char *id, struct workflow_rec *out, struct err *e)
{
    return st->ops->workflow_get(st, id, out, e);
}

void workflow_list_release(struct workflow_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        workflow_rec_release(&l->w[i]);
    free(l->w);
    memset(l, 0, sizeof(*l));
}

int store_workflow_list(struct store *st, const char *owner, const char *after, int limit,
                        struct workflow_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    int rc = st->ops->workflow_list(st, owner, after, limit, out, e);
    if (rc) workflow_list_release(out);
    return rc;
}

int store_workflow_of(struct store *st, const char *job, char *id_out, struct err *e)
{
    return st->ops->workflow_of(st, job, id_out, e);
}

static const char *node_job(json_t *nodes, const char *name)
{
    return json_string_value(json_object_get(json_object_get(nodes, name), "job"));
}

/* What a node whose job is no longer in the store says of it (deleted by hand, or by a
   retention from before retention kept the nodes of a workflow that has not ended). */
#define NODE_GONE "is no longer in the store (deleted after its retention; see its archived job)"

/* The state of upstream node `up` (a name in nodes), into *state; -1 when its job is gone
   (ended: only a finished job is deleted). */
static int up_state(struct store *st, json_t *nodes, const char *up, int *state, struct err *e)
{
    const char *id = node_job(nodes, up);
    struct job j;
    struct err ge = ERR_INIT;
    int rc = st->ops->job_get_run(st, id ? id : "", &j, &ge);
    *state = -1;
    if (rc == ERR_NOTFOUND) return 0;
    if (rc) return err_set(e, rc, "%s", ge.msg);
    *state = j.state;
    job_release(&j);
    return 0;
}

/*
 * How a blocked node stands, from its upstreams from the `from`-th on: *verdict -1 cancel (an
 * upstream it needs did not succeed: why says which), 0 wait (an upstream has not ended), 1
 * go. With `first_open`, it stops at the first upstream not ended (its index in *stop);
 * else it reads them all (a cancel found after an open one wins).
 */
static int node_verdict(struct store *st, json_t *nodes, json_t *node, size_t from,
                        bool first_open, size_t *stop, int *verdict, char *why, size_t nwhy,
                        struct err *e)
{
    json_t *deps = json_object_get(node, "depends_on");
    *verdict = 1;
    *stop = json_array_size(deps);
    for (size_t i = from; i < json_array_size(deps); i++) {
        json_t *d = json_array_get(deps, i);
        const char *up = json_string_value(json_object_get(d, "node"));
        const char *on = json_string_value(json_object_get(d, "on"));
        int state, rc = up_state(st, nodes, up ? up : "", &state, e);
        if (rc) return rc;
        if (state < 0) { /* gone: ended, how is not known here */
            if (on && !strcmp(on, "any")) continue;
            snprintf(why, nwhy, "its upstream node '%s' " NODE_GONE, up ? up : "?");
            *verdict = -1;
            return 0;
        }
        if (!job_state_terminal(state)) {
            *verdict = 0;
            if (first_open) {
                *stop = i;
                return 0;
            }
        } else if (state != JOB_SUCCEEDED && !(on && !strcmp(on, "any"))) {
            snprintf(why, nwhy, "its upstream node '%s' %s", up ? up : "?",
                     job_state_name(state));
            *verdict = -1;
            return 0;
        }
    }
    return 0;
}

/*
 * The verdict on blocked node `name` after its upstream `ended` ended (NULL: any may have).
 * A fan-in node is looked at once per upstream's end: reading all its upstreams each time
 * would cost the square of their number. So: the one that ended, when it cancels the node,
 * decides at once; else the upstreams are read from where the last look stopped (the
 * cursor: those before it had ended) up to the first one still open; and only when none is
 * open are they all read again, from the first (one may have been retried since), to decide.
 */
static int verdict_after(struct store *st, json_t *ix, const char *name, const char *ended,
                         int *verdict, char *why, size_t nwhy, struct err *e)
{
    json_t *nodes = json_object_get(json_object_get(ix, "doc"), "nodes");
    json_t *node = json_object_get(nodes, name);
    json_t *cursors = json_object_get(ix, "cursor");
    size_t stop, from = (size_t)json_integer_value(json_object_get(cursors, name));
    int rc;
    if (!ended) return node_verdict(st, nodes, node, 0, false, &stop, verdict, why, nwhy, e);
    const char *on = json_string_value(
        json_object_get(json_object_get(json_object_get(ix, "on"), name), ended));
    int state;
    if ((rc = up_state(st, nodes, ended, &state, e))) return rc;
    if (state < 0 && !(on && !strcmp(on, "any"))) {
        snprintf(why, nwhy, "its upstream node '%s' " NODE_GONE, ended);
        *verdict = -1;
        return 0;
    }
    if (job_state_terminal(state) && state != JOB_SUCCEEDED && !(on && !strcmp(on, "any"))) {
        snprintf(why, nwhy, "its upstream node '%s' %s", ended, job_state_name(state));
        *verdict = -1;
        return 0;
    }
    if ((rc = node_verdict(st, nodes, node, from, true, &stop, verdict, why, nwhy, e)))
        return rc;
    json_object_set_new(cursors, name, json_integer((json_int_t)stop));
    if (*verdict == 1 && from > 0) /* all ended since the cursor: make sure of those before */
        rc = node_verdict(st, nodes, node, 0, false, &stop, verdict, why, nwhy, e);
    return rc;
}

/* A fan-out node's job: a placeholder no agent runs (docs/api.md "Workflows"). */
static bool fan_node(const struct job *j)
{
    return json_is_object(json_object_get(j->spec, "array"));
}

struct fanin {
    struct store *st;
    const char *port, *at; /* the fan-out node's output port (at: a service node's place) */
    char **uris, **shas;
    size_t n, max;
    bool over;
};

/* A succeeded task of a fan-out node: the object it wrote to output port f->port. */
static int fanin_add(void *arg, int64_t index, int state, const struct job *run)
{
    struct fanin *f = arg;
    (void)index;
    (void)state;
    if (f->n == f->max) {
        f->over = true;
        return 1;
    }
    struct job t;
    struct err e = ERR_INIT;
    if (!run || f->st->ops->job_get(f->st, run->id, &t, &e)) return 0;
    const char *uri = workflow_output_uri(t.spec, f->port, f->at), *sha = NULL;
    size_t k;
    json_t *o;
    json_array_foreach(json_object_get(t.result, "outputs"), k, o)
    {
        const char *ou = json_string_value(json_object_get(o, "uri"));
        if (uri && ou && !strcmp(ou, uri)) sha = json_string_value(json_object_get(o, "sha256"));
    }
    if (uri) {
        f->uris[f->n] = xstrdup(uri);
        f->shas[f->n++] = sha ? xstrdup(sha) : NULL;
    }
    job_release(&t);
    return 0;
}

/*
 * Fan-in: input `port` (to_at: its place, or NULL) of spec gets one argument per succeeded
 * task of fan-out node u (index order), each the object the task wrote to u's output
 * `from_port` (from_at). *fail says why when they would be more arguments than a spec may
 * hold, or when the input is not an argument.
 */
static int fan_in(struct store *st, const struct job *u, const char *from_port,
                  const char *from_at, json_t *spec, const char *port, const char *to_at,
                  const char *up_name, char *fail, size_t nfail, struct err *e)
{
    struct array_rec a = {0};
    struct err ge = ERR_INIT;
    size_t have = json_array_size(json_object_get(json_object_get(spec, "command"), "arguments"));
    struct fanin f = {st,   from_port, from_at, NULL, NULL, 0,
                      SPEC_MAX_ARGUMENTS - (have ? have - 1 : 0), false};
    int rc = st->ops->array_get(st, u->id, false, &a, &ge);
    if (rc && rc != ERR_NOTFOUND) return err_set(e, rc, "%s", ge.msg);
    f.uris = xcalloc(f.max + 1, sizeof(*f.uris));
    f.shas = xcalloc(f.max + 1, sizeof(*f.shas));
    if (!rc) /* else it ended before its array was made: no object */
        rc = store_array_tasks(st, &a, 0, a.count - 1, JOB_SUCCEEDED, (int)f.max + 1, fanin_add,
                               &f, e);
    else
        rc = 0;
    if (rc == 1 && f.over) rc = 0;
    if (!rc && f.over)
        snprintf(fail, nfail,
                 "the fan-in from node '%s' has more than %zu objects: with the other "
                 "arguments, more than a spec's %d arguments",
                 up_name, f.max, SPEC_MAX_ARGUMENTS);
    else if (!rc && !workflow_set_inputs(spec, port, to_at, (const char *const *)f.uris,
                                         (const char *const *)f.shas, f.n))
        snprintf(fail, nfail, "the fan-in from node '%s' must go to an input argument", up_name);
    for (size_t i = 0; i < f.n; i++) {
        free(f.uris[i]);
        free(f.shas[i]);
    }
    free(f.uris);
    free(f.shas);
    array_rec_release(&a);
    return rc;
}

/* The argument index of a connection's "to_at" ("arguments[I]"), or -1. */
static long at_index(json_t *c)
{
    size_t i;
    char end;
    const char *at = json_string_value(json_object_get(c, "to_at"));
    return at && sscanf(at, "arguments[%zu%c", &i, &end) == 2 && end == ']' ? (long)i : -1;
}

/*
 * The inputs of node `name` connected to fan-out nodes (connect_inputs). Each becomes many
 * arguments, which moves the arguments after it: those given by place go first, from the
 * last place back, then those given by name.
 */
static int fan_ins(struct store *st, json_t *ix, const char *name, json_t *spec, bool *changed,
                   char *fail, size_t nfail, struct err *e)
{
    json_t *conns = json_object_get(json_object_get(ix, "to"), name);
    json_t *nodes = json_object_get(json_object_get(ix, "doc"), "nodes");
    size_t n = json_array_size(conns), len = strlen(name);
    bool *done = xcalloc(n + 1, sizeof(*done));
    int rc = 0;
    for (size_t round = 0; round < n && !rc && !fail[0]; round++) {
        long best = -2;
        size_t pick = n;
        for (size_t i = 0; i < n; i++) {
            long at = at_index(json_array_get(conns, i));
            if (!done[i] && at > best) {
                best = at;
                pick = i;
            }
        }
        if (pick == n) break;
        done[pick] = true;
        json_t *c = json_array_get(conns, pick);
        const char *to = json_string_value(json_object_get(c, "to"));
        const char *from = json_string_value(json_object_get(c, "from"));
        const char *dot = from ? strchr(from, '.') : NULL;
        if (!to || !dot) continue;
        char up[80];
        snprintf(up, sizeof(up), "%.*s", (int)(dot - from), from);
        const char *upjob = node_job(nodes, up);
        struct job u;
        struct err ge = ERR_INIT;
        if ((rc = st->ops->job_get(st, upjob ? upjob : "", &u, &ge)) == ERR_NOTFOUND) {
            snprintf(fail, nfail, "its upstream node '%s' " NODE_GONE ": its outputs are not "
                     "known", up);
            rc = 0;
            break;
        }
        if (rc) {
            err_set(e, rc, "%s", ge.msg);
            break;
        }
        if (fan_node(&u)) {
            rc = fan_in(st, &u, dot + 1, json_string_value(json_object_get(c, "from_at")), spec,
                        to + len + 1, json_string_value(json_object_get(c, "to_at")), up, fail,
                        nfail, e);
            *changed = true;
        }
        job_release(&u);
    }
    free(done);
    return rc;
}

/*
 * Sets the inputs of node `name` (spec: its job's) connected to its upstreams' outputs; one
 * from a fan-out node becomes one argument per task (after the others: fan_ins). *fail (when
 * set) says why the node cannot run.
 */
static int connect_inputs(struct store *st, json_t *ix, const char *name, json_t *spec,
                          bool *changed, char *fail, size_t nfail, struct err *e)
{
    size_t i, len = strlen(name);
    json_t *c, *nodes = json_object_get(json_object_get(ix, "doc"), "nodes");
    json_array_foreach(json_object_get(json_object_get(ix, "to"), name), i, c)
    {
        const char *to = json_string_value(json_object_get(c, "to"));
        const char *from = json_string_value(json_object_get(c, "from"));
        const char *dot = from ? strchr(from, '.') : NULL;
        if (!to || !dot) continue;
        char up[80];
        snprintf(up, sizeof(up), "%.*s", (int)(dot - from), from);
        const char *upjob = node_job(nodes, up);
        struct job u;
        struct err ge = ERR_INIT;
        int rc = st->ops->job_get(st, upjob ? upjob : "", &u, &ge);
        if (rc == ERR_NOTFOUND) {
            snprintf(fail, nfail, "its upstream node '%s' " NODE_GONE ": its outputs are not "
                     "known", up);
            return 0;
        }
        if (rc) return err_set(e, rc, "%s", ge.msg);
        if (fan_node(&u)) { /* below, once the others are set */
            job_release(&u);
            continue;
        }
        const char *from_at = json_string_value(json_object_get(c, "from_at"));
        const char *to_at = json_string_value(json_object_get(c, "to_at"));
        const char *uri = workflow_output_uri(u.spec, dot + 1, from_at), *sha = NULL;
        size_t k;
        json_t *o;
        /* the object its succeeded attempt wrote, pinned by that attempt's sha256 */
        json_array_foreach(json_object_get(u.result, "outputs"), k, o)
        {
            const char *ou = json_string_value(json_object_get(o, "uri"));
            if (uri && ou && !strcmp(ou, uri))
                sha = json_string_value(json_object_get(o, "sha256"));
        }
        if (uri && workflow_set_input(spec, to + len + 1, to_at, uri, sha)) *changed = true;
        job_release(&u);
    }
    int rc = fan_ins(st, ix, name, spec, changed, fail, nfail, e);
    struct spec_clash k;
    if (!rc && !*fail &&
        spec_input_clash(json_object_get(json_object_get(spec, "command"), "arguments"), &k))
        snprintf(fail, nfail, "command.arguments[%zu].value " SPEC_CLASH_FMT, k.second,
                 k.name_len, k.name, k.first, k.why);
    return rc;
}

static int node_apply(struct store *st, const char *job, enum job_event ev, int64_t now_ms,
                      const char *why, struct err *e)
{
    struct job_event_args a = {.now_ms = now_ms, .why = why};
    struct job out;
    int rc = store_job_apply(st, job, 0, NULL, false, ev, &a, &out, e);
    if (rc == 0 || rc == LIFECYCLE_SAME || rc == ERR_CONFLICT) job_release(&out);
    if (rc == 0) changed_push(st, job);
    return rc;
}

/* Ends a blocked node no agent runs (JOB_EV_SETTLE) as `state`. */
static int settle(struct store *st, const char *job, int state, const char *reason,
                  const char *why, int64_t now_ms, struct err *e)
{
    struct job_event_args a = {.now_ms = now_ms, .settle = state, .reason = reason, .why = why};
    struct job out;
    int rc = store_job_apply(st, job, 0, NULL, false, JOB_EV_SETTLE, &a, &out, e);
    if (rc == 0 || rc == LIFECYCLE_SAME || rc == ERR_CONFLICT) job_release(&out);
    if (rc == 0) changed_push(st, job);
    return rc == ERR_CONFLICT ? 0 : rc;
}

static int fan_push(void *arg, struct job *j)
{
    changed_push(arg, j->id);
    job_release(j);
    return 0;
}

/*
 * Fan-out node `id` (blocked) whose array has no task left to end: settled, succeeded when
 * all its tasks did, else failed when one failed, else cancelled. The array's row is locked
 * first, so that of two tasks ending at once the later sees the other's end.
 */
static int fan_check(struct store *st, const char *id, int64_t now_ms, struct err *e)
{
    struct array_rec a;
    struct err ge = ERR_INIT;
    int rc = st->ops->array_get(st, id, true, &a, &ge);
    if (rc == ERR_NOTFOUND) return 0;
    if (rc) return err_set(e, rc, "%s", ge.msg);
    int64_t counts[JOB_NSTATES], open = 0, gone = a.count;
    rc = store_array_counts(st, &a, counts, e);
    for (int k = 0; !rc && k < JOB_NSTATES; k++) {
        if (!job_state_terminal(k)) open += counts[k];
        gone -= counts[k];
    }
    if (!rc && !open) {
        char why[200] = "";
        /* gone: a task's job deleted while its node was blocked (by hand, or by a retention
           from before retention kept them): it had ended, how and with what output is not
           known here */
        int state = counts[JOB_SUCCEEDED] == a.count      ? JOB_SUCCEEDED
                    : counts[JOB_FAILED] || gone > 0       ? JOB_FAILED
                                                           : JOB_CANCELLED;
        if (state == JOB_FAILED && counts[JOB_FAILED])
            snprintf(why, sizeof(why), "%lld of its %lld tasks failed",
                     (long long)counts[JOB_FAILED], (long long)a.count);
        else if (state == JOB_FAILED)
            snprintf(why, sizeof(why), "%lld of its %lld tasks are no longer in the store "
                     "(deleted after their retention): their outputs are not known",
                     (long long)gone, (long long)a.count);
        else if (state == JOB_CANCELLED)
            snprintf(why, sizeof(why), "%lld of its %lld tasks were cancelled",
                     (long long)counts[JOB_CANCELLED], (long long)a.count);
        rc = settle(st, id, state, "array", why[0] ? why : NULL, now_ms, e);
    }
    array_rec_release(&a);
    return rc;
}

/* A task ended: when its array is a fan-out node's, that node may be settled. */
static int fan_task_ended(struct store *st, const struct job *task, int64_t now_ms,
                          struct err *e)
{
    if (!array_is_task_id(task->id)) return 0;
    struct job t, p;
    const struct job *j = task;
    struct err ge = ERR_INIT;
    if (!task->spec) {
        if (st->ops->job_get(st, task->id, &t, &ge)) return 0;
        j = &t;
    }
    /* a fan-out node's tasks name it (its job has its array's id; blocked while they run): an
       array of its own costs no lookup */
    const char *node = json_string_value(json_object_get(
        json_object_get(json_object_get(j->spec, "command"), "env"), "DROVER_FANOUT_NODE"));
    int rc = node ? st->ops->job_get_run(st, node, &p, &ge) : ERR_NOTFOUND;
    if (!rc) {
        if (p.state == JOB_BLOCKED) rc = fan_check(st, p.id, now_ms, e);
        job_release(&p);
    } else if (rc == ERR_NOTFOUND) {
        rc = 0; /* an array of its own, not a node's */
    } else {
        err_set(e, rc, "%s", ge.msg);
    }
    if (j == &t) job_release(&t);
    return rc;
}

/* A fan-out node's job was cancelled: so are its tasks that have not ended. */
static int fan_cancel(struct store *st, const char *job, int64_t now_ms, struct err *e)
{
    if (array_is_task_id(job)) return 0;
    struct array_rec a;
    struct err ge = ERR_INIT;
    int rc = st->ops->array_get(st, job, false, &a, &ge);
    if (rc == ERR_NOTFOUND) return 0;
    if (rc) return err_set(e, rc, "%s", ge.msg);
    int64_t n = 0;
    rc = store_array_cancel(st, job, 0, a.count - 1, now_ms, fan_push, st, &n, e);
    if (!rc) rc = store_event_array(st, &a, ARRAY_CHANGED, e); /* other servers: its entry */
    if (!rc) changed_push(st, job); /* this one drops its array's entry */
    array_rec_release(&a);
    return rc;
}

struct fan_outs {
    struct store *st;
    json_t *outs;
};

static int outputs_add(void *arg, int64_t index, int state, const struct job *run)
{
    struct fan_outs *f = arg;
    (void)index;
    (void)state;
    struct job t;
    struct err e = ERR_INIT;
    if (!run || f->st->ops->job_get(f->st, run->id, &t, &e)) return 0;
    json_array_extend(f->outs, json_object_get(t.result, "outputs"));
    job_release(&t);
    return json_array_size(f->outs) > ARRAY_MAX_TASKS; /* enough: 1 stops */
}

/* The outputs of fan-out node `id`'s succeeded tasks, in index order, appended to outs. */
static int fan_outputs(struct store *st, const char *id, json_t *outs, struct err *e)
{
    struct array_rec a;
    struct err ge = ERR_INIT;
    int rc = st->ops->array_get(st, id, false, &a, &ge);
    if (rc == ERR_NOTFOUND) return 0;
    if (rc) return err_set(e, rc, "%s", ge.msg);
    struct fan_outs f = {st, outs};
    rc = store_array_tasks(st, &a, 0, a.count - 1, JOB_SUCCEEDED, ARRAY_MAX_TASKS, outputs_add,
                           &f, e);
    array_rec_release(&a);
    return rc == 1 ? 0 : rc;
}

/*
 * Fan-out node `name` (j: its blocked job) may go: its array made (an upstream's outputs, the
 * count or the items), or, made before (a workflow's retry), its failed and cancelled tasks run
 * again. The server is told (the node's id, which is its array's) once committed.
 */
static int fan_start(struct store *st, json_t *ix, const char *name, struct job *j,
                     int64_t now_ms, struct err *e)
{
    struct array_rec a = {0};
    struct err ge = ERR_INIT;
    int rc = st->ops->array_get(st, j->id, false, &a, &ge);
    if (!rc) {
        int64_t n = 0;
        rc = store_array_retry(st, j->id, 0, a.count - 1, now_ms, fan_push, st, &n, e);
        if (!rc) rc = store_event_array(st, &a, ARRAY_CHANGED, e);
        array_rec_release(&a);
        if (!rc) changed_push(st, j->id);
        return rc ? rc : fan_check(st, j->id, now_ms, e);
    }
    if (rc != ERR_NOTFOUND) return err_set(e, rc, "%s", ge.msg);
    char fail[320] = "";
    bool changed = false;
    if ((rc = connect_inputs(st, ix, name, j->spec, &changed, fail, sizeof(fail), e)))
        return rc;
    if (fail[0]) return settle(st, j->id, JOB_FAILED, "error", fail, now_ms, e);
    if (changed && (rc = st->ops->job_set_spec(st, j->id, j->spec, e))) return rc;
    json_t *in = json_object_get(j->spec, "array");
    memcpy(a.id, j->id, sizeof(a.id));
    a.items = json_array();
    const char *up = json_string_value(json_object_get(in, "outputs"));
    if (up) {
        a.kind = ARRAY_OUTPUTS;
        const char *prefix = json_string_value(json_object_get(in, "prefix"));
        const char *upjob = node_job(json_object_get(json_object_get(ix, "doc"), "nodes"), up);
        struct job u;
        struct err ue = ERR_INIT;
        if ((rc = st->ops->job_get(st, upjob ? upjob : "", &u, &ue)) == ERR_NOTFOUND) {
            snprintf(fail, sizeof(fail), "its upstream node '%s' " NODE_GONE ": its outputs "
                     "are not known", up);
            rc = settle(st, j->id, JOB_FAILED, "error", fail, now_ms, e);
            goto out;
        }
        if (rc) {
            err_set(e, rc, "%s", ue.msg);
            goto out;
        }
        json_t *outs = json_incref(json_object_get(u.result, "outputs"));
        if (fan_node(&u)) { /* a fan-out node: what its succeeded tasks wrote, in index order */
            json_decref(outs);
            outs = json_array();
            rc = fan_outputs(st, u.id, outs, e);
        }
        job_release(&u);
        size_t k;
        json_t *o;
        json_array_foreach(outs, k, o)
        {
            const char *uri = json_string_value(json_object_get(o, "uri"));
            if (rc || !uri || (prefix && strncmp(uri, prefix, strlen(prefix)))) continue;
            if (json_array_size(a.items) == ARRAY_MAX_TASKS) break;
            json_t *it = json_pack("{s:s, s:O?}", "uri", uri, "sha256",
                                   json_object_get(o, "sha256"));
            char *text = json_dumps(it, JSON_COMPACT);
            json_array_append_new(a.items, json_string(text));
            free(text);
            json_decref(it);
        }
        json_decref(outs);
        if (rc) goto out;
        a.source = xstrdup(up);
        if (!json_array_size(a.items)) {
            snprintf(fail, sizeof(fail), "its upstream node '%s' wrote no object%s%.200s", up,
                     prefix ? " under " : "", prefix ? prefix : "");
            rc = settle(st, j->id, JOB_FAILED, "error", fail, now_ms, e);
            goto out;
        }
    } else if (json_object_get(in, "items")) {
        a.kind = ARRAY_ITEMS;
        size_t k;
        json_t *it;
        json_array_foreach(json_object_get(in, "items"), k, it)
        {
            char *t = array_item_text(it);
            json_array_append_new(a.items, json_string(t));
            free(t);
        }
    } else {
        a.kind = ARRAY_COUNT;
        json_decref(a.items);
        a.items = NULL;
        a.count = json_integer_value(json_object_get(in, "count"));
    }
    if (a.items) a.count = (int64_t)json_array_size(a.items);
    a.owner = j->owner ? xstrdup(j->owner) : NULL;
    a.tenant = j->tenant ? xstrdup(j->tenant) : NULL;
    a.queue = xstrdup(j->queue);
    a.name = j->name ? xstrdup(j->name) : NULL;
    a.priority = j->priority;
    a.skips = json_array();
    a.spec = json_deep_copy(j->spec);
    json_object_del(a.spec, "array");
    /* its tasks name their node: a task's end looks for a node to settle only then */
    json_t *cmd = json_object_get(a.spec, "command"), *env = json_object_get(cmd, "env");
    if (cmd && !json_is_object(env)) json_object_set_new(cmd, "env", env = json_object());
    if (env) json_object_set_new(env, "DROVER_FANOUT_NODE", json_string(j->id));
    a.created_at = now_ms;
    array_rec_views(&a);
    if (!(rc = store_array_insert(st, &a, e)) &&
        !(rc = store_event_array(st, &a, ARRAY_SUBMITTED, e)))
        changed_push(st, j->id);
out:
    array_rec_release(&a);
    return rc;
}

/*
 * A blocked node whose upstreams may all have ended (`ended` did, or NULL: any may have):
 * queued, cancelled, or left waiting.
 */
static int node_go(struct store *st, json_t *ix, const char *name, const char *ended,
                   int64_t now_ms, struct err *e)
{
    json_t *nodes = json_object_get(json_object_get(ix, "doc"), "nodes");
    const char *id = node_job(nodes, name);
    struct job j;
    char why[320] = "";
    struct err ge = ERR_INIT;
    int verdict, rc = st->ops->job_get(st, id ? id : "", &j, &ge);
    if (rc == ERR_NOTFOUND) return 0; /* gone: it had ended */
    if (rc) return err_set(e, rc, "%s", ge.msg);
    if (j.state != JOB_BLOCKED ||
        (rc = verdict_after(st, ix, name, ended, &verdict, why, sizeof(why), e)) ||
        verdict == 0) {
        job_release(&j);
        return rc;
    }
    if (verdict > 0 && fan_node(&j)) {
        rc = fan_start(st, ix, name, &j, now_ms, e);
        job_release(&j);
        return rc;
    }
    bool changed = false;
    if (verdict > 0 &&
        !(rc = connect_inputs(st, ix, name, j.spec, &changed, why, sizeof(why), e)) && changed &&
        !why[0])
        rc = st->ops->job_set_spec(st, j.id, j.spec, e);
    job_release(&j);
    if (rc) return rc;
    if (why[0] && verdict > 0) /* its fan-in cannot be given */
        return settle(st, id, JOB_FAILED, "error", why, now_ms, e);
    rc = node_apply(st, id, verdict > 0 ? JOB_EV_UNBLOCK : JOB_EV_CANCEL, now_ms,
                    verdict > 0 ? NULL : why, e);
    return rc == ERR_CONFLICT ? 0 : rc;
}

/* The nodes that depend on the node of the ended job `job`: each queued, cancelled or left. */
static int advance_one(struct store *st, const char *job, int64_t now_ms, struct err *e)
{
    json_t *ix;
    int rc = workflow_of_job(st, job, &ix, e);
    if (rc <= 0) return rc; /* an error, or not a workflow's job */
    rc = 0;
    const char *wid = json_string_value(json_object_get(ix, "id"));
    size_t t = 0;
    while (t < st->wf_ntouched && strcmp(st->wf_touched[t], wid))
        t++;
    if (t == st->wf_ntouched) { /* its end is looked at once all noted jobs are */
        if (st->wf_ntouched == st->wf_touched_cap) {
            st->wf_touched_cap = st->wf_touched_cap ? 2 * st->wf_touched_cap : 4;
            st->wf_touched =
                xrealloc(st->wf_touched, st->wf_touched_cap * sizeof(*st->wf_touched));
        }
        snprintf(st->wf_touched[st->wf_ntouched++], UUID_STR_LEN, "%s", wid);
    }
    const char *name = node_of_job(ix, job);
    size_t i;
    json_t *d;
    json_array_foreach(name ? json_object_get(json_object_get(ix, "down"), name) : NULL, i, d)
    {
        if ((rc = node_go(st, ix, json_string_value(d), name, now_ms, e))) break;
    }
    json_decref(ix);
    return rc;
}

/*
 * A job ended. A node it cancels ends too, and so on down a chain: rather than recursing once
 * per node (10,000 deep for a long chain), a nested call only notes the job, and the
 * outermost one looks at the noted jobs in turn.
 */
static int workflow_advance(struct store *st, const char *job, int64_t now_ms, struct err *e)
{
    if (st->wf_npending == st->wf_pending_cap) {
        st->wf_pending_cap = st->wf_pending_cap ? 2 * st->wf_pending_cap : 16;
        st->wf_pending = xrealloc(st->wf_pending, st->wf_pending_cap * sizeof(*st->wf_pending));
    }
    snprintf(st->wf_pending[st->wf_npending++], UUID_STR_LEN, "%s", job);
    if (st->wf_advancing) return 0;
    st->wf_advancing = true;
    int rc = 0;
    for (size_t i = 0; i < st->wf_npending && !rc; i++) {
        char id[UUID_STR_LEN];
        memcpy(id, st->wf_pending[i], UUID_STR_LEN); /* the array may grow meanwhile */
        rc = advance_one(st, id, now_ms, e);
    }
    for (size_t i = 0; i < st->wf_ntouched && !rc; i++)
        rc = wf_end_check(st, st->wf_touched[i], e);
    st->wf_npending = 0;
    st->wf_ntouched = 0;
    st->wf_advancing = false;
    return rc;
}

static int workflow_attempt_keys(struct store *st, const char *job, int attempt, struct err *e)
{
    json_t *ix;
    int rc = workflow_of_job(st, job, &ix, e);
    if (rc <= 0) return rc; /* an error, or not a workflow's job */
    rc = 0;
    const char *name = node_of_job(ix, job);
    struct job j;
    bool loaded = false, changed = false;
    size_t i, len = name ? strlen(name) : 0;
    json_t *c;
    json_array_foreach(name ? json_object_get(json_object_get(ix, "from"), name) : NULL, i, c)
    {
        const char *from = json_string_value(json_object_get(c, "from"));
        if (rc || !from) continue;
        char *uri = workflow_attempt_uri(json_string_value(json_object_get(c, "uri")), attempt);
        if (uri && !loaded && !(rc = st->ops->job_get(st, job, &j, e))) loaded = true;
        if (uri && loaded)
            changed |= workflow_set_output(j.spec, from + len + 1,
                                           json_string_value(json_object_get(c, "from_at")), uri);
        free(uri);
    }
    if (loaded) {
        if (!rc && changed) rc = st->ops->job_set_spec(st, job, j.spec, e);
        job_release(&j);
    }
    json_decref(ix);
    return rc;
}

/* The state of node `name`'s job; NODE_STATE_GONE when its job is no longer in the store
   (it had ended); -1 on an error (in e). */
#define NODE_STATE_GONE (-2)
static int node_state(struct store *st, json_t *nodes, const char *name, struct err *e)
{
    struct job j;
    struct err ge = ERR_INIT;
    const char *id = node_job(nodes, name);
    int rc = st->ops->job_get_run(st, id ? id : "", &j, &ge);
    if (rc == ERR_NOTFOUND) return NODE_STATE_GONE;
    if (rc) {
        err_set(e, rc, "%s", ge.msg);
        return -1;
    }
    int state = j.state;
    job_release(&j);
    return state;
}

/*
 * Whether every node of workflow ix has ended (a node whose job is gone had); when all have,
 * count (may be NULL) gets them by state. It reads from the hint "open_at" on (the first node
 * found open last time: those before it had ended) and, when those have all ended, all of them
 * from the first (one may have been retried since): a workflow's node ends cost what its
 * nodes cost, not their square.
 */
static int wf_ended(struct store *st, json_t *ix, bool *ended, int64_t *count, struct err *e)
{
    json_t *nodes = json_object_get(json_object_get(ix, "doc"), "nodes");
    json_t *names = json_object_get(ix, "names");
    size_t n = json_array_size(names);
    size_t from = (size_t)json_integer_value(json_object_get(ix, "open_at"));
    int64_t c[JOB_NSTATES];
    *ended = false;
    for (int pass = from > 0 && from < n ? 0 : 1; pass < 2; pass++) {
        memset(c, 0, sizeof(c));
        for (size_t i = pass ? 0 : from; i < n; i++) {
            int state = node_state(st, nodes, json_string_value(json_array_get(names, i)), e);
            if (state == -1) return e ? e->code : ERR_INTERNAL;
            if (state >= 0 && !job_state_terminal(state)) {
                json_object_set_new(ix, "open_at", json_integer((json_int_t)i));
                return 0;
            }
            if (state >= 0) c[state]++;
        }
    }
    *ended = true;
    if (count) memcpy(count, c, sizeof(c));
    return 0;
}

static int wf_is_ended(struct store *st, const char *wid, bool *ended, struct err *e)
{
    json_t *ix;
    int rc = wf_index(st, wid, NULL, &ix, e);
    if (!rc) rc = wf_ended(st, ix, ended, NULL, e);
    json_decref(ix);
    return rc;
}

/* Its event (store.h, EVENT_WORKFLOW), and at an end its notify_url's delivery. */
static int wf_event(struct store *st, const struct workflow_rec *w, int state,
                    const int64_t *count, struct err *e)
{
    json_t *d = json_object(), *name = json_object_get(w->doc, "name"),
           *key = json_object_get(w->doc, "key");
    json_object_set(d, "name", name ? name : json_null());
    json_object_set(d, "key", key ? key : json_null());
    if (count) {
        json_t *p = json_object();
        int64_t total = 0;
        for (int s = 0; s < JOB_NSTATES; s++) {
            json_object_set_new(p, job_state_name(s), json_integer(count[s]));
            total += count[s];
        }
        json_object_set_new(p, "total", json_integer(total));
        json_object_set_new(d, "progress", p);
    }
    const char *url = job_state_terminal(state)
                          ? json_string_value(json_object_get(w->doc, "notify_url"))
                          : NULL;
    int rc = st->ops->event_add(st, EVENT_WORKFLOW, w->id, NULL, state, w->owner, d, url, e);
    json_decref(d);
    return rc;
}

/* A node of workflow wid ended: when it was the last one open, the workflow's end event. */
static int wf_end_check(struct store *st, const char *wid, struct err *e)
{
    json_t *ix;
    bool ended;
    int64_t count[JOB_NSTATES];
    int rc = wf_index(st, wid, NULL, &ix, e);
    if (!rc) rc = wf_ended(st, ix, &ended, count, e);
    json_decref(ix);
    if (rc || !ended) return rc;
    struct workflow_rec w = {0};
    if ((rc = st->ops->workflow_get(st, wid, &w, e))) return rc;
    rc = wf_event(st, &w, workflow_state(count), count, e);
    workflow_rec_release(&w);
    return rc;
}

/*
 * The nodes after node `name` of workflow `ix` that ended without running (cancelled, or
 * failed, because it had ended as it did) wait for it again (blocked), and so on down; a
 * node after it that ran keeps its end, and so does what follows it. (A node reached twice
 * is blocked by then: it is left as it is.)
 */
static int reblock_after(struct store *st, json_t *ix, const char *name, int64_t now_ms,
                         struct err *e)
{
    json_t *nodes = json_object_get(json_object_get(ix, "doc"), "nodes");
    size_t k;
    json_t *d;
    json_array_foreach(json_object_get(json_object_get(ix, "down"), name), k, d)
    {
        const char *after = json_string_value(d), *id = node_job(nodes, after ? after : "");
        struct job j;
        struct err ge = ERR_INIT;
        int rc = st->ops->job_get_run(st, id ? id : "", &j, &ge);
        if (rc == ERR_NOTFOUND) continue; /* gone: it had ended, and is left so */
        if (rc) return err_set(e, rc, "%s", ge.msg);
        bool never_ran = (j.state == JOB_CANCELLED || j.state == JOB_FAILED) && !j.attempt;
        job_release(&j);
        if (never_ran && ((rc = node_apply(st, id, JOB_EV_REBLOCK, now_ms, NULL, e)) ||
                          (rc = reblock_after(st, ix, after, now_ms, e))))
            return rc;
    }
    return 0;
}

/* Workflow node `job` was retried by itself (POST /v1/jobs/{id}/retry): what its end
   cancelled waits for it again, as a retry of the whole workflow makes it. */
static int workflow_reblock_after(struct store *st, const char *job, int64_t now_ms,
                                  struct err *e)
{
    json_t *ix = NULL;
    int rc = workflow_of_job(st, job, &ix, e);
    if (rc <= 0) return rc;
    const char *name = node_of_job(ix, job);
    rc = name ? reblock_after(st, ix, name, now_ms, e) : 0;
    json_decref(ix);
    return rc;
}

int store_workflow_cancel(struct store *st, const struct workflow_rec *w, int64_t now_ms,
                          size_t *n, struct err *e)
{
    json_t *nodes = json_object_get(w->doc, "nodes");
    const char *k;
    json_t *v;
    *n = 0;
    /* the blocked first: a node that goes on after any end of its upstream must not be
       queued by its upstream's cancel */
    for (int pass = 0; pass < 2; pass++) {
        json_object_foreach(nodes, k, v)
        {
            int state = node_state(st, nodes, k, e);
            if (state == NODE_STATE_GONE) continue; /* it had ended */
            if (state < 0) return e ? e->code : ERR_INTERNAL;
            if (job_state_terminal(state) || (pass == 0) != (state == JOB_BLOCKED)) continue;
            int rc = node_apply(st, node_job(nodes, k), JOB_EV_CANCEL, now_ms,
                                "its workflow was cancelled", e);
            if (rc && rc != ERR_CONFLICT) return rc;
            *n += !rc;
        }
    }
    return 0;
}

int store_workflow_retry(struct store *st, const struct workflow_rec *w, int64_t now_ms,
                         size_t *n, struct err *e)
{
    json_t *nodes = json_object_get(w->doc, "nodes");
    const char *k;
    json_t *v;
    bool ended;
    *n = 0;
    int rc = wf_is_ended(st, w->id, &ended, e);
    if (rc) return rc;
    /* every node that failed or was cancelled waits again, then each goes once its
       upstreams (kept or rerun) allow */
    json_object_foreach(nodes, k, v)
    {
        int state = node_state(st, nodes, k, e);
        if (state == NODE_STATE_GONE) continue; /* its record is archived: it cannot run */
        if (state < 0) return e ? e->code : ERR_INTERNAL;
        if (state != JOB_FAILED && state != JOB_CANCELLED) continue;
        if ((rc = node_apply(st, node_job(nodes, k), JOB_EV_REBLOCK, now_ms, NULL, e))) return rc;
        (*n)++;
    }
    if (!*n)
        return err_set(e, ERR_CONFLICT, "workflow '%s' has no failed or cancelled node to retry",
                       w->id);
    if (ended && (rc = wf_event(st, w, JOB_RUNNING, NULL, e))) return rc; /* running again */
    json_t *ix = NULL;
    rc = wf_index(st, w->id, w->doc, &ix, e);
    json_object_foreach(rc ? NULL : nodes, k, v)
    {
        if ((rc = node_go(st, ix, k, NULL, now_ms, e))) break;
    }
    json_decref(ix);
    return rc;
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

int store_job_expired(struct store *st, int64_t now_ms, int64_t default_ms, int limit,
                      char (*ids)[UUID_STR_LEN], size_t *n, struct err *e)
{
    return st->ops->job_expired(st, now_ms, default_ms, limit, ids, n, e);
}

int store_job_held(struct store *st, const char *id, bool *held, struct err *e)
{
    char lo[UUID_STR_LEN] = "", hi[UUID_STR_LEN] = "";
    *held = false;
    if (array_is_task_id(id)) { /* "xxxxxxxx-xxxx-8": the array's ms, the version (8) */
        snprintf(lo, 16, "%s", id);
        memcpy(hi, lo, sizeof(hi));
        hi[14] = '9';
    }
    return st->ops->job_held(st, id, lo, hi, held, e);
}

int store_job_defer(struct store *st, const char *id, int64_t until_ms, struct err *e)
{
    return st->ops->job_defer(st, id, until_ms, e);
}

int store_job_delete(struct store *st, const char *id, struct err *e)
{
    int rc = st->ops->job_delete(st, id, e);
    return rc || !array_is_task_id(id) ? rc : st->ops->array_task_gone(st, id, e);
}

int store_token_tenant(struct store *st, const char *name, char *tenant, size_t n,
                       struct err *e)
{
    return st->ops->token_tenant(st, name, tenant, n, e);
}

int store_token_set_tenant(struct store *st, const char *name, const char *tenant,
                           struct err *e)
{
    return st->ops->token_set_tenant(st, name, tenant, e);
}

static json_t *limit_or_null(int v)
{
    return v >= 0 ? json_integer(v) : json_null();
}

int store_tenant_put(struct store *st, const struct tenant_rec *t, struct err *e)
{
    int rc = st->ops->tenant_put(st, t, e);
    if (rc) return rc;
    json_t *d = json_pack("{s:s, s:o, s:o, s:i}", "tenant", t->name, "max_running",
                          limit_or_null(t->max_running), "max_queued",
                          limit_or_null(t->max_queued), "weight", t->weight);
    rc = st->ops->event_add(st, EVENT_TENANT, t->name, NULL, 0, NULL, d, NULL, e);
    json_decref(d);
    return rc;
}

int store_queue_pause(struct store *st, const char *queue, bool paused, const char *by,
                      int64_t now_ms, bool *changed, struct err *e)
{
    int rc = st->ops->queue_pause(st, queue, paused, by, now_ms, changed, e);
    if (rc || !*changed) return rc;
    json_t *d = json_pack("{s:s?}", "by", by);
    rc = st->ops->event_add(st, EVENT_QUEUE, queue, queue, paused ? QUEUE_PAUSED : QUEUE_RESUMED,
                            NULL, d, NULL, e);
    json_decref(d);
    return rc;
}

int store_queue_paused(struct store *st, int (*fn)(void *arg, const char *queue, int64_t at),
                       void *arg, struct err *e)
{
    return st->ops->queue_paused(st, fn, arg, e);
}

int store_queue_limit(struct store *st, const char *queue, int max_running, const char *by,
                      int64_t now_ms, bool *changed, struct err *e)
{
    if (max_running < 0) max_running = 0;
    int rc = st->ops->queue_limit(st, queue, max_running, by, now_ms, changed, e);
    if (rc || !*changed) return rc;
    json_t *d = json_pack("{s:s?, s:o}", "by", by, "max_running",
                          max_running ? json_integer(max_running) : json_null());
    rc = st->ops->event_add(st, EVENT_QUEUE, queue, queue, QUEUE_LIMITED, NULL, d, NULL, e);
    json_decref(d);
    return rc;
}

int store_queue_limits(struct store *st, int (*fn)(void *arg, const char *queue, int max_running),
                       void *arg, struct err *e)
{
    return st->ops->queue_limits(st, fn, arg, e);
}

int store_tenant_scan(struct store *st, int (*fn)(void *arg, const struct tenant_rec *t),
                      void *arg, struct err *e)
{
    return st->ops->tenant_scan(st, fn, arg, e);
}

/* the backends' queries read "waiting" as state < 2 */
_Static_assert(JOB_BLOCKED == 0 && JOB_QUEUED == 1, "blocked and queued come first");

int store_tenant_waiting(struct store *st, const char *tenant, int64_t *n, struct err *e)
{
    int rc = st->ops->tenant_waiting(st, tenant, n, e);
    if (rc) return rc;
    int64_t open = 0; /* arrays' tasks not handed out yet: queued, without rows of their own */
    rc = st->ops->array_open(st, tenant, &open, e);
    *n += open;
    return rc;
}

/* ---- job_counts' deltas ---- */

void count_deltas_note(struct count_deltas *d, const char *queue, const char *owner, int from,
                       int to)
{
    if (from == to)
        return;
    for (int k = 0; k < 2; k++) {
        int state = k ? to : from;
        if (state < 0)
            continue;
        if (d->n == d->cap) {
            d->cap = d->cap ? d->cap * 2 : 16;
            d->v = xrealloc(d->v, d->cap * sizeof(*d->v));
        }
        d->v[d->n++] = (struct count_delta){xstrdup(queue), xstrdup(owner ? owner : ""), state,
                                            k ? 1 : -1};
    }
}

void count_deltas_drop(struct count_deltas *d, size_t keep)
{
    while (d->n > keep) {
        struct count_delta *c = &d->v[--d->n];
        free(c->queue);
        free(c->owner);
    }
    if (d->sp > d->n)
        d->sp = d->n;
}

static int delta_cmp(const void *a, const void *b)
{
    const struct count_delta *x = a, *y = b;
    int c = strcmp(x->queue, y->queue);
    if (!c)
        c = strcmp(x->owner, y->owner);
    return c ? c : (x->state > y->state) - (x->state < y->state);
}

void count_deltas_merge(struct count_deltas *d)
{
    if (d->n > 1)
        qsort(d->v, d->n, sizeof(*d->v), delta_cmp);
    size_t out = 0;
    for (size_t i = 0; i < d->n;) {
        size_t k = i + 1;
        int64_t n = d->v[i].n;
        while (k < d->n && !delta_cmp(&d->v[i], &d->v[k])) {
            n += d->v[k].n;
            free(d->v[k].queue);
            free(d->v[k].owner);
            k++;
        }
        if (n) {
            d->v[out] = d->v[i];
            d->v[out++].n = n;
        } else {
            free(d->v[i].queue);
            free(d->v[i].owner);
        }
        i = k;
    }
    d->n = out;
    d->sp = 0;
}
