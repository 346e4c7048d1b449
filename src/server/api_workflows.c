/*
 * api_workflows.c - /v1/workflows (docs/api.md "Workflows"): a workflow of nodes (job specs)
 * joined by dependencies and port connections, validated whole (job/workflow.h), stored with
 * all its jobs in one transaction; the store moves it along as its nodes end
 * (store_job_apply), and the jobs it changes reach the fleet after each batch
 * (server_changed_jobs).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/array.h"
#include "job/workflow.h"
#include "server/fleet.h"
#include "server/retention.h"
#include "server/server.h"
#include "server/services.h"
#include "server/tenants.h"

static struct server *srv(struct http_req *r)
{
    return r->app;
}

/*
 * The workflow as GET shows it: every node's job and state, and its progress (counts per
 * state, and the overall state: running while a node has not ended, then succeeded when all
 * did, else failed when one failed, else cancelled). Reads the nodes' jobs from st.
 */
static json_t *workflow_json(struct store *st, const struct workflow_rec *w)
{
    json_t *nodes = json_object(), *counts = json_object();
    int64_t count[JOB_NSTATES] = {0};
    const char *name;
    json_t *v;
    json_object_foreach(json_object_get(w->doc, "nodes"), name, v)
    {
        const char *id = json_string_value(json_object_get(v, "job"));
        struct job j;
        json_t *n = json_pack("{s:s, s:O}", "job", id ? id : "", "depends_on",
                              json_object_get(v, "depends_on"));
        if (id && !store_job_get_run(st, id, &j, NULL)) {
            int state = j.state;
            struct array_rec a;
            /* a fan-out node: its array (its id the node's job's), running while it waits */
            if (json_is_true(json_object_get(v, "array")) &&
                !store_array_get(st, id, &a, NULL)) {
                int64_t c[JOB_NSTATES];
                if (!store_array_counts(st, &a, c, NULL)) {
                    json_t *ac = json_object();
                    for (int s = 0; s < JOB_NSTATES; s++)
                        json_object_set_new(ac, job_state_name(s), json_integer(c[s]));
                    json_object_set_new(ac, "total", json_integer(a.count));
                    json_object_set_new(n, "array", json_string(a.id));
                    json_object_set_new(n, "counts", ac);
                    if (state == JOB_BLOCKED) state = JOB_RUNNING;
                }
                array_rec_release(&a);
            }
            count[state]++;
            json_object_set_new(n, "state", json_string(job_state_name(state)));
            json_object_set_new(n, "attempt", json_integer(j.attempt));
            json_object_set_new(n, "result", j.result ? json_incref(j.result) : json_null());
            job_release(&j);
        } else {
            json_object_set_new(n, "state", json_null());
        }
        json_object_set_new(nodes, name, n);
    }
    int64_t total = 0;
    for (int s = 0; s < JOB_NSTATES; s++) {
        json_object_set_new(counts, job_state_name(s), json_integer(count[s]));
        total += count[s];
    }
    json_object_set_new(counts, "total", json_integer(total));
    json_t *key = json_object_get(w->doc, "key"), *url = json_object_get(w->doc, "notify_url");
    return json_pack("{s:s, s:o, s:O, s:O, s:o, s:o, s:s, s:o, s:o, s:O}", "id", w->id, "name",
                     w->name ? json_string(w->name) : json_null(), "key",
                     key ? key : json_null(), "notify_url", url ? url : json_null(), "owner",
                     w->owner ? json_string(w->owner) : json_null(), "created_at",
                     job_time_json(w->created_at), "state",
                     job_state_name(workflow_state(count)), "progress", counts, "nodes", nodes,
                     "connections", json_object_get(w->doc, "connections"));
}

/* ---- submit ---- */

struct wf_submit {
    struct http_req *r;
    struct workflow_rec rec;
    struct job *jobs;
    size_t n;
    struct service_use *uses; /* what each node's expansion read of the service hub */
    size_t nuses;
    char tenant[72]; /* the caller's: its nodes' jobs are its jobs */
    int max_queued;  /* the tenant's limit, 0: none */
    char existing[UUID_STR_LEN]; /* the workflow its key named already: nothing written */
};

int workflow_submit_write(struct store *st, struct wf_submit *ws, struct err *e)
{
    for (size_t i = 0; i < ws->nuses; i++) { /* the services expanded still hold */
        int rc = services_recheck(st, &ws->uses[i], e);
        if (rc) return rc;
    }
    /* a key submitted before (a client's retry): that workflow, nothing new */
    const char *key = json_string_value(json_object_get(ws->rec.doc, "key"));
    struct err ke = ERR_INIT;
    int rc = key ? store_workflow_by_key(st, ws->rec.owner, key, ws->existing, &ke) : ERR_NOTFOUND;
    if (rc != ERR_NOTFOUND) {
        if (rc) *e = ke;
        return rc;
    }
    struct job **p = xcalloc(ws->n, sizeof(*p));
    for (size_t i = 0; i < ws->n; i++)
        p[i] = &ws->jobs[i];
    rc = store_workflow_insert(st, &ws->rec, p, ws->n, e);
    if (rc == ERR_CONFLICT && key && !e->field[0]) { /* another server's, in the meantime */
        err_clear(e);
        err_field(e, ERR_CONFLICT, "key",
                  "key '%s' was taken by a workflow submitted at the same moment: submit again "
                  "to get that one",
                  key);
    }
    free(p);
    if (rc || !ws->max_queued) return rc;
    /* the tenant's waiting jobs (blocked nodes too), counted with these as a submission's are */
    int64_t queued;
    if ((rc = store_tenant_waiting(st, ws->tenant, &queued, e))) return rc;
    if (queued > ws->max_queued)
        return err_field(e, ERR_QUOTA, "max_queued",
                         "tenant '%s' may have at most %d queued jobs (max_queued); it has "
                         "%lld, and this workflow's %zu nodes would make %lld",
                         ws->tenant, ws->max_queued, (long long)queued - (long long)ws->n, ws->n,
                         (long long)queued);
    return 0;
}

void workflow_submit_committed(struct server *s, struct wf_submit *ws)
{
    if (ws->existing[0]) return; /* nothing was written */
    for (size_t i = 0; i < ws->n; i++) /* the first nodes are queued */
        fleet_job_changed(s->fleet, &ws->jobs[i], false);
}

const char *workflow_submit_id(const struct wf_submit *ws)
{
    return ws->rec.id;
}

void workflow_submit_each_spec(struct wf_submit *ws,
                               void (*fn)(json_t *spec, const char *a, const char *b),
                               const char *a, const char *b)
{
    for (size_t i = 0; i < ws->n; i++)
        fn(ws->jobs[i].spec, a, b);
}

void workflow_submit_free(struct wf_submit *ws)
{
    if (!ws) return;
    for (size_t i = 0; i < ws->n; i++)
        job_release(&ws->jobs[i]);
    free(ws->jobs);
    free(ws->uses);
    workflow_rec_release(&ws->rec);
    free(ws);
}

static int submit_write(struct store *st, void *arg, struct err *e)
{
    return workflow_submit_write(st, arg, e);
}

/* 200 and the workflow its key named (as a job's key answers the job submitted first). */
static void reply_existing(struct http_req *r, const char *id)
{
    struct workflow_rec w;
    struct err e = ERR_INIT;
    if (store_workflow_get(srv(r)->reads, id, &w, &e)) {
        http_reply_err(r, &e);
        return;
    }
    http_reply_json(r, 200, workflow_json(srv(r)->reads, &w));
    workflow_rec_release(&w);
}

static void submit_done(void *arg, int rc, const struct err *e)
{
    struct wf_submit *ws = arg;
    struct http_req *r = ws->r;
    if (!rc) /* committed: the first nodes are queued, whether or not the client listens */
        workflow_submit_committed(srv(r), ws);
    if (r->gone)
        http_req_drop(r);
    else if (rc)
        http_reply_err(r, e);
    else if (ws->existing[0])
        reply_existing(r, ws->existing);
    else
        http_reply_json(r, 201, workflow_json(srv(r)->reads, &ws->rec));
    workflow_submit_free(ws);
}

/* The value a node's job (as sent, or expanded) gives output port `port`, or NULL. */
static json_t *raw_output(json_t *job, const char *port)
{
    json_t *params = json_object_get(job, "params");
    if (json_object_get(job, "service") && json_is_object(params))
        return json_object_get(params, port); /* a service's port, expanded or not */
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(json_object_get(job, "command"), "arguments"), i, a)
    {
        const char *t = json_string_value(json_object_get(a, "type"));
        const char *n = json_string_value(json_object_get(a, "name"));
        if (t && n && !strcmp(t, "output") && !strcmp(n, port)) return json_object_get(a, "value");
    }
    return NULL;
}

/*
 * {NODE: {PORT: URI}}: each connected input's stand-in, the upstream's output as sent (or a
 * placeholder when there is none: workflow_parse then names the connection).
 */
static json_t *connected_inputs(json_t *body)
{
    json_t *nodes = json_object_get(body, "nodes"), *out = json_object(), *c;
    size_t i;
    json_array_foreach(json_object_get(body, "connections"), i, c)
    {
        const char *from = json_string_value(json_object_get(c, "from"));
        const char *to = json_string_value(json_object_get(c, "to"));
        const char *fdot = from ? strchr(from, '.') : NULL, *tdot = to ? strchr(to, '.') : NULL;
        if (!fdot || !tdot || fdot - from > 64 || tdot - to > 64) continue;
        char up[72], down[72];
        snprintf(up, sizeof(up), "%.*s", (int)(fdot - from), from);
        snprintf(down, sizeof(down), "%.*s", (int)(tdot - to), to);
        json_t *v = raw_output(json_object_get(json_object_get(nodes, up), "job"), fdot + 1);
        json_t *mine = json_object_get(out, down);
        if (!mine) json_object_set_new(out, down, mine = json_object());
        json_object_set_new(mine, tdot + 1,
                            json_is_string(v) ? json_incref(v)
                                              : json_string("s3://drover-workflow/unconnected"));
    }
    return out;
}

/*
 * A node's job may name a service of the hub and give only its params, as a job may: each
 * is expanded from its definition (server/services.h) before the workflow is validated, and
 * what the expansions read is checked again in the transaction that stores them. *ports gets
 * each service node's ports ({NODE: PORTS}, for workflow_parse_ports).
 */
static int expand_services(struct store *reads, json_t *body, const char *prefix,
                           struct service_use **uses, size_t *n, json_t **ports, struct err *e)
{
    json_t *nodes = json_object_get(body, "nodes");
    *ports = json_object();
    if (!json_is_object(nodes) || json_object_size(nodes) > WORKFLOW_MAX_NODES)
        return 0; /* workflow_parse says what is wrong */
    *uses = xcalloc(json_object_size(nodes) + 1, sizeof(**uses));
    json_t *connected = connected_inputs(body);
    struct services_memo memo = {0};
    const char *name;
    json_t *node;
    int rc = 0;
    json_object_foreach(nodes, name, node)
    {
        json_t *job = json_object_get(node, "job"), *expanded = NULL, *mine = NULL;
        if (!json_is_object(job)) continue;
        char path[128];
        snprintf(path, sizeof(path), "%snodes.%.64s.job", prefix, name);
        if ((rc = services_expand_node(reads, &memo, job, path, json_object_get(connected, name),
                                       &expanded, &mine, &(*uses)[*n], e)))
            break;
        (*n)++;
        if (expanded) json_object_set_new(node, "job", expanded);
        if (mine) json_object_set_new(*ports, name, mine);
    }
    services_memo_release(&memo);
    json_decref(connected);
    return rc;
}

int workflow_submit_prepare(struct server *s, json_t *body, const char *path, const char *owner,
                            struct wf_submit **out, struct err *e)
{
    struct workflow w;
    struct service_use *uses = NULL;
    size_t nuses = 0;
    char prefix[64] = "";
    if (path && *path) snprintf(prefix, sizeof(prefix), "%s.", path);
    json_t *ports = NULL;
    int rc = expand_services(s->reads, body, prefix, &uses, &nuses, &ports, e);
    if (!rc && (rc = workflow_parse_ports(body, ports, &w, e)) && *prefix &&
        e) { /* named from the top */
        char field[sizeof(e->field)], msg[sizeof(e->msg)];
        snprintf(field, sizeof(field), "%s%s", prefix, e->field[0] ? e->field : "nodes");
        snprintf(msg, sizeof(msg), "%s", e->msg);
        err_clear(e); /* the first error set is kept: this one replaces it */
        err_field(e, rc, field, "%s", msg);
    }
    json_decref(ports);
    if (!rc && w.key && *prefix) { /* a trigger's: each fire is a workflow of its own */
        workflow_release(&w);
        char field[sizeof(prefix) + 4];
        snprintf(field, sizeof(field), "%skey", prefix);
        rc = err_field(e, ERR_INVALID, field,
                       "%s: a trigger's workflow takes no key (each fire submits a workflow of "
                       "its own)",
                       field);
    }
    if (rc) {
        free(uses);
        return rc;
    }
    struct wf_submit *ws = xcalloc(1, sizeof(*ws));
    if ((rc = tenants_of_token(s, owner, ws->tenant, sizeof(ws->tenant), e))) {
        free(ws);
        free(uses);
        workflow_release(&w);
        return rc; /* the token was revoked meanwhile, or the store failed */
    }
    ws->max_queued = tenants_max_queued(s, ws->tenant);
    ws->uses = uses;
    ws->nuses = nuses;
    ws->n = w.n;
    ws->jobs = xcalloc(w.n, sizeof(*ws->jobs));
    int64_t now = time_now_ms();
    workflow_jobs(&w, owner, now, ws->jobs);
    for (size_t i = 0; i < w.n; i++) { /* as a job submitted alone */
        ws->jobs[i].tenant = xstrdup(ws->tenant);
        retention_apply(s->retention, &ws->jobs[i]);
    }
    char(*ids)[UUID_STR_LEN] = xcalloc(w.n, UUID_STR_LEN);
    for (size_t i = 0; i < w.n; i++)
        memcpy(ids[i], ws->jobs[i].id, UUID_STR_LEN);
    uuid7_new(ws->rec.id);
    ws->rec.owner = xstrdup(owner);
    ws->rec.name = w.name ? xstrdup(w.name) : NULL;
    ws->rec.created_at = now;
    ws->rec.doc = workflow_doc(&w, (const char(*)[UUID_STR_LEN])ids);
    free(ids);
    workflow_release(&w);
    *out = ws;
    return 0;
}

int api_workflows_create(struct http_req *r)
{
    struct err e = ERR_INIT;
    struct wf_submit *ws;
    if (workflow_submit_prepare(srv(r), r->body, NULL, r->token_name, &ws, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    ws->r = r;
    commit_submit(srv(r)->commit, submit_write, submit_done, ws);
    return HTTP_DEFERRED;
}

/* ---- read ---- */

/* The route's workflow, if the caller may see it (else 404, as if there were none). */
static int find_workflow(struct http_req *r, struct store *st, const char *id,
                         struct workflow_rec *w, struct err *e)
{
    if (!uuid_valid(id)) return err_set(e, ERR_NOTFOUND, "workflow '%s' not found", id);
    int rc = store_workflow_get(st, id, w, e);
    if (rc) return rc;
    const char *owner = api_caller_owner(r);
    if (owner && (!w->owner || strcmp(owner, w->owner))) {
        workflow_rec_release(w);
        return err_set(e, ERR_NOTFOUND, "workflow '%s' not found", id);
    }
    return 0;
}

int api_workflows_get(struct http_req *r)
{
    struct workflow_rec w;
    struct err e = ERR_INIT;
    char id[UUID_STR_LEN];
    if (api_resolve_id(r, STORE_WORKFLOW, r->params[0], id, &e) ||
        find_workflow(r, srv(r)->reads, id, &w, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    http_reply_json(r, 200, workflow_json(srv(r)->reads, &w));
    workflow_rec_release(&w);
    return HTTP_DONE;
}

/*
 * GET /v1/workflows?limit=&after=: the caller's workflows (an admin's: everyone's), newest
 * first, each as GET shows it without its nodes and connections (its state and progress are
 * read from its nodes' jobs: hence a page of at most 100).
 */
int api_workflows_list(struct http_req *r)
{
    struct err e = ERR_INIT;
    const char *after = http_query(r, "after");
    long limit;
    if (http_query_long(r, "limit", 1, 100, 20, &limit, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (after && !uuid_valid(after)) {
        err_field(&e, ERR_INVALID, "after", "after must be a workflow id (the 'next' cursor)");
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    struct store *st = srv(r)->reads;
    struct workflow_list l;
    if (store_workflow_list(st, api_caller_owner(r), after, (int)limit, &l, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < l.n; i++) {
        json_t *w = workflow_json(st, &l.w[i]);
        json_object_del(w, "nodes");
        json_object_del(w, "connections");
        json_array_append_new(arr, w);
    }
    json_t *next = l.n == (size_t)limit ? json_string(l.w[l.n - 1].id) : json_null();
    workflow_list_release(&l);
    http_reply_json(r, 200, json_pack("{s:o, s:o}", "workflows", arr, "next", next));
    return HTTP_DONE;
}

/* ---- cancel, retry ---- */

struct wf_op {
    struct http_req *r;
    char id[UUID_STR_LEN];
    bool retry;
    struct workflow_rec w;
    size_t n;
};

static int op_write(struct store *st, void *arg, struct err *e)
{
    struct wf_op *op = arg;
    int rc = find_workflow(op->r, st, op->id, &op->w, e);
    if (rc) return rc;
    int64_t now = time_now_ms();
    return op->retry ? store_workflow_retry(st, &op->w, now, &op->n, e)
                     : store_workflow_cancel(st, &op->w, now, &op->n, e);
}

/* The jobs it changed reach the fleet after the batch (server_changed_jobs). */
static void op_done(void *arg, int rc, const struct err *e)
{
    struct wf_op *op = arg;
    if (op->r->gone)
        http_req_drop(op->r);
    else if (rc)
        http_reply_err(op->r, e);
    else
        http_reply_json(op->r, 200, workflow_json(srv(op->r)->reads, &op->w));
    workflow_rec_release(&op->w);
    free(op);
}

static int op_submit(struct http_req *r, bool retry)
{
    struct err e = ERR_INIT;
    char id[UUID_STR_LEN];
    if (api_resolve_id(r, STORE_WORKFLOW, r->params[0], id, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    struct wf_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    op->retry = retry;
    memcpy(op->id, id, UUID_STR_LEN);
    commit_submit(srv(r)->commit, op_write, op_done, op);
    return HTTP_DEFERRED;
}

int api_workflows_cancel(struct http_req *r)
{
    return op_submit(r, false);
}

int api_workflows_retry(struct http_req *r)
{
    return op_submit(r, true);
}

void server_changed_jobs(struct server *s)
{
    char(*ids)[UUID_STR_LEN];
    size_t n = store_changed_take(&ids);
    for (size_t i = 0; i < n; i++) {
        struct job j;
        if (!store_job_get(s->reads, ids[i], &j, NULL)) {
            fleet_job_changed(s->fleet, &j, false);
            job_release(&j);
        }
        /* a workflow's fan-out node: its array (the same id) made, retried or cancelled */
        struct array_rec a;
        if (!store_array_get(s->reads, ids[i], &a, NULL)) {
            fleet_array_changed(s->fleet, &a);
            array_rec_release(&a);
        }
    }
    free(ids);
}
