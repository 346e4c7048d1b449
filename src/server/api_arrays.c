/*
 * api_arrays.c - job arrays (docs/api.md "Arrays"): POST /v1/jobs with "array" stores ONE
 * array of N tasks (store.h "Job arrays"); /v1/arrays reads it, lists its tasks by index
 * range and cancels or retries ranges. The scheduler holds one entry per array
 * (sched_add_array); a lease claims the next task in the store.
 *
 * An array belongs to the token that submitted it, as a job does: another client's array is
 * "not found".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "blob/blob.h"
#include "common/buf.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/array.h"
#include "job/spec.h"
#include "server/commit.h"
#include "server/fleet.h"
#include "server/offload.h"
#include "server/retention.h"
#include "server/server.h"
#include "server/services.h"
#include "server/tenants.h"

#define TASKS_DEFAULT_LIMIT 100
#define TASKS_MAX_LIMIT 1000
#define LIST_MAX_LIMIT 1000

static struct server *srv(struct http_req *r)
{
    return r->app;
}

/* The array's summary: counts per state and its state as a whole (a workflow's rules). */
static json_t *summary_json(const struct array_rec *a, const int64_t *count, bool spec)
{
    json_t *counts = json_object();
    int64_t open = 0, archived = a->count;
    for (int s = 0; s < JOB_NSTATES; s++) {
        json_object_set_new(counts, job_state_name(s), json_integer(count[s]));
        if (!job_state_terminal(s)) open += count[s];
        archived -= count[s];
    }
    /* tasks whose job was deleted after its retention (the array had ended): they had ended */
    json_object_set_new(counts, "archived", json_integer(archived > 0 ? archived : 0));
    json_object_set_new(counts, "total", json_integer(a->count));
    const char *state = open                  ? "running"
                        : count[JOB_FAILED]    ? "failed"
                        : count[JOB_CANCELLED] ? "cancelled"
                                               : "succeeded";
    json_t *o = json_pack("{s:s, s:o, s:o, s:s, s:i, s:s, s:o, s:I, s:o, s:s, s:o}", "id", a->id,
                          "name", a->name ? json_string(a->name) : json_null(), "owner",
                          a->owner ? json_string(a->owner) : json_null(), "queue", a->queue,
                          "priority", a->priority, "kind", array_kind_name(a->kind), "source",
                          a->source ? json_string(a->source) : json_null(), "count",
                          (json_int_t)a->count, "created_at", job_time_json(a->created_at),
                          "state", state, "counts", counts);
    if (spec) json_object_set_new(o, "spec", spec_expand(json_incref(a->spec)));
    return o;
}

/* ---- submit ---- */

struct arr_submit {
    struct http_req *r;
    struct server *s;
    json_t *body;            /* a reference: the request's */
    struct array_input in;   /* borrows body */
    struct array_rec rec;
    struct service_use use;
    char tenant[72];
    int max_queued;
    int64_t queued; /* out: the tenant's waiting jobs with the new tasks, when over */
    /* objects: the listing (on a worker when the object store is remote) */
    bool in_flight, gone;
    char bucket[BLOB_BUCKET_MAX + 1];
    char *prefix;
    json_t *objects; /* the URIs listed */
    int rc;
    struct err err;
};

static void arr_submit_free(struct arr_submit *op)
{
    json_decref(op->body);
    array_rec_release(&op->rec);
    json_decref(op->objects);
    free(op->prefix);
    free(op);
}

static int arr_write(struct store *st, void *arg, struct err *e)
{
    struct arr_submit *op = arg;
    int rc = op->use.name[0] ? services_recheck(st, &op->use, e) : 0;
    if (!rc) rc = store_array_insert(st, &op->rec, e);
    if (!rc) rc = store_event_array(st, &op->rec, ARRAY_SUBMITTED, e);
    if (rc || !op->max_queued) return rc;
    /* its tasks count against the tenant's max_queued as jobs would (store_tenant_waiting
       counts the arrays' tasks not handed out yet, this one's too) */
    rc = store_tenant_waiting(st, op->tenant, &op->queued, e);
    if (rc || op->queued <= op->max_queued) return rc;
    return err_field(e, ERR_QUOTA, "max_queued",
                     "tenant '%s' may have at most %d queued jobs (max_queued); it has %lld, "
                     "and this array's %lld tasks would make %lld",
                     op->tenant, op->max_queued, (long long)(op->queued - op->rec.count),
                     (long long)op->rec.count, (long long)op->queued);
}

static void arr_done(void *arg, int rc, const struct err *e)
{
    struct arr_submit *op = arg;
    struct http_req *r = op->r;
    if (!rc) fleet_array_changed(op->s->fleet, &op->rec);
    if (r->gone) {
        http_req_drop(r);
    } else if (rc == ERR_QUOTA) {
        json_t *inner = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I}", "code", "quota", "message",
                                  e->msg, "limit", "max_queued", "tenant", op->tenant, "max",
                                  op->max_queued, "queued",
                                  (json_int_t)(op->queued - op->rec.count));
        http_reply_json(r, 429, json_pack("{s:o}", "error", inner));
    } else if (rc) {
        http_reply_err(r, e);
    } else {
        int64_t count[JOB_NSTATES] = {0};
        count[JOB_QUEUED] = op->rec.count;
        json_t *summary = summary_json(&op->rec, count, false);
        /* who could take its tasks, and why none could, as a job's answer says */
        int listeners;
        const char *warnings = fleet_array_fit_text(op->s->fleet, &op->rec, &listeners);
        json_object_set_new(summary, "listeners", json_integer(listeners));
        json_object_set_new(summary, "warnings", json_loads(warnings, 0, NULL));
        http_reply_json(r, 201, json_pack("{s:o}", "array", summary));
    }
    arr_submit_free(op);
}

/* Validates the spec (as task 0's) and commits the array. */
static void arr_continue(struct arr_submit *op)
{
    struct http_req *r = op->r;
    struct err e = ERR_INIT;
    const json_t *items = op->in.kind == ARRAY_OBJECTS ? op->objects : op->in.items;
    char *item0 = items ? array_item_text(json_array_get(items, 0)) : NULL;
    json_t *sample = array_sample_spec(op->body, "0", item0), *expanded = NULL;
    free(item0);
    struct services_memo memo = {0};
    struct job_spec spec;
    int bad = services_expand_job(op->s->reads, &memo, sample, "", &expanded, &op->use, &e);
    if (!bad) bad = spec_parse_arrayable(expanded ? expanded : sample, "", &spec, &e);
    json_decref(sample);
    /* a service's job: its arguments with the placeholders are the service expanded with the
       params as given (the same version: the memo has it) */
    json_t *tmpl = NULL;
    if (!bad && expanded) {
        struct service_use use;
        json_t *given = array_sample_spec(op->body, "{{index}}", "{{item}}"); /* "array" out */
        bad = services_expand_job(op->s->reads, &memo, given, "", &tmpl, &use, &e);
        json_decref(given);
        if (bad) spec_release(&spec);
    }
    json_decref(expanded);
    services_memo_release(&memo);
    if (bad) {
        http_reply_err(r, &e);
        arr_submit_free(op);
        return;
    }
    struct array_rec *a = &op->rec;
    uuid7_new(a->id);
    a->owner = xstrdup(r->token_name);
    a->tenant = xstrdup(op->tenant);
    a->queue = xstrdup(spec.queue);
    a->name = spec.name ? xstrdup(spec.name) : NULL;
    a->priority = spec.priority;
    a->kind = op->in.kind;
    a->source = op->in.prefix ? xstrdup(op->in.prefix) : NULL;
    a->count = op->in.kind == ARRAY_OBJECTS ? (int64_t)json_array_size(op->objects) : op->in.count;
    a->skips = json_array();
    a->spec = json_incref(spec.json);
    array_template(a->spec, tmpl ? tmpl : op->body);
    json_decref(tmpl);
    /* the queue's retention (--queue-retention) goes into the template: the tasks' jobs are
       made in the store (at their claim), which does not know it */
    int64_t keep_ms = retention_of_queue(op->s->retention, a->queue);
    if (!spec.retention_s && keep_ms >= 1000)
        json_object_set_new(a->spec, "retention_s", json_integer(keep_ms / 1000));
    a->created_at = time_now_ms();
    a->run_after = a->created_at + (int64_t)(spec.delay_s * 1000.0);
    if (items) {
        a->items = json_array();
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
            char *t = array_item_text(it);
            json_array_append_new(a->items, json_string(t));
            free(t);
        }
    }
    spec_release(&spec);
    /* task 0's item was checked with the spec; the others' change only its arguments */
    if (a->items && array_items_check(a->spec, a->items,
                                      a->kind == ARRAY_OBJECTS ? "array.objects" : "array.items",
                                      a->kind != ARRAY_OBJECTS, &e)) {
        http_reply_err(r, &e);
        arr_submit_free(op);
        return;
    }
    op->max_queued = tenants_max_queued(op->s, op->tenant);
    commit_submit(op->s->commit, arr_write, arr_done, op);
}

/* Lists the objects under the prefix, page by page (a worker's, when remote). */
static void list_work(void *arg)
{
    struct arr_submit *op = arg;
    op->objects = json_array();
    char *after = NULL;
    for (;;) {
        struct blob_list l = {0};
        op->rc = blob_list(op->s->blobs, op->bucket, op->prefix, after, BLOB_LIST_MAX, &l,
                           &op->err);
        free(after);
        after = NULL;
        if (op->rc) break;
        for (size_t i = 0; i < l.n; i++) {
            char *uri = xasprintf("s3://%s/%s", op->bucket, l.items[i].key);
            json_array_append_new(op->objects, json_string(uri));
            free(uri);
        }
        after = l.next ? xstrdup(l.next) : NULL;
        blob_list_release(&l);
        if (!after) break;
        if (json_array_size(op->objects) > ARRAY_MAX_TASKS) {
            free(after);
            break;
        }
    }
}

static void list_done(void *arg)
{
    struct arr_submit *op = arg;
    op->in_flight = false;
    if (op->gone) {
        arr_submit_free(op);
        return;
    }
    struct http_req *r = op->r;
    r->owner = NULL;
    r->on_gone = NULL;
    if (op->rc) {
        http_reply_error(r, ERR_INVALID, "array.objects", "array.objects: cannot list '%s': %s",
                         op->in.prefix, op->err.msg);
    } else if (!json_array_size(op->objects)) {
        http_reply_error(r, ERR_INVALID, "array.objects",
                         "array.objects: there is no object under '%s'", op->in.prefix);
    } else if (json_array_size(op->objects) > ARRAY_MAX_TASKS) {
        http_reply_error(r, ERR_INVALID, "array.objects",
                         "array.objects: more than %d objects under '%s' (an array's most)",
                         ARRAY_MAX_TASKS, op->in.prefix);
    } else {
        arr_continue(op);
        return;
    }
    arr_submit_free(op);
}

static void list_gone(struct http_req *r)
{
    struct arr_submit *op = r->owner;
    http_req_drop(r);
    op->r = NULL;
    op->gone = true;
}

int api_arrays_submit(struct http_req *r)
{
    json_t *body = r->body;
    struct array_input in;
    struct err e = ERR_INIT;
    if (array_input_parse(json_object_get(body, "array"), &in, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (json_object_get(body, "key") && !json_is_null(json_object_get(body, "key"))) {
        http_reply_error(r, ERR_INVALID, "key",
                         "key: an array cannot have an idempotency key (its tasks are made "
                         "once each by the array itself)");
        return HTTP_DONE;
    }
    if (json_is_true(json_object_get(body, "test"))) {
        http_reply_error(r, ERR_INVALID, "test", "test: a test probe cannot be an array");
        return HTTP_DONE;
    }
    struct arr_submit *op = xcalloc(1, sizeof(*op));
    op->r = r;
    op->s = srv(r);
    op->body = json_incref(body);
    op->in = in;
    if (tenants_of_token(op->s, r->token_name, op->tenant, sizeof(op->tenant), &e)) {
        arr_submit_free(op);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (in.kind != ARRAY_OBJECTS) {
        arr_continue(op);
        return HTTP_DEFERRED;
    }
    /* checked by array_input_parse: s3://BUCKET[/PREFIX] */
    size_t n = strcspn(in.prefix + 5, "/");
    memcpy(op->bucket, in.prefix + 5, n);
    op->bucket[n] = '\0';
    if (!strcmp(op->bucket, RETENTION_BUCKET)) {
        http_reply_error(r, ERR_INVALID, "array.objects",
                         "array.objects: '%s' cannot be read by this token (bucket '%s' is "
                         "drover's archive of finished jobs)",
                         in.prefix, op->bucket);
        arr_submit_free(op);
        return HTTP_DONE;
    }
    op->prefix = xstrdup(in.prefix[5 + n] ? in.prefix + 5 + n + 1 : "");
    if (blob_caps(op->s->blobs) & BLOB_CAP_REMOTE) {
        op->in_flight = true;
        r->owner = op;
        r->on_gone = list_gone;
        offload_run(op->s->offload, list_work, list_done, op);
    } else {
        list_work(op);
        list_done(op);
    }
    return HTTP_DEFERRED;
}

/* ---- read ---- */

/* The array `given` names (a whole id or a unique prefix), if the caller may see it. */
static int find_array_id(struct http_req *r, const char *given, struct array_rec *a,
                         struct err *e)
{
    char id[UUID_STR_LEN];
    int rc = api_resolve_id(r, STORE_ARRAY, given, id, e);
    if (!rc) rc = store_array_get(srv(r)->reads, id, a, e);
    if (rc) return rc;
    const char *owner = api_caller_owner(r);
    if (owner && (!a->owner || strcmp(owner, a->owner))) {
        array_rec_release(a);
        return err_set(e, ERR_NOTFOUND, "array '%s' not found", id);
    }
    return 0;
}

/* The route's array, if the caller may see it. */
static int find_array(struct http_req *r, struct array_rec *a, struct err *e)
{
    return find_array_id(r, r->params[0], a, e);
}

struct task_of {
    int64_t index;
    int state;              /* the task's (without a job: queued, or cancelled unclaimed) */
    char job[UUID_STR_LEN]; /* its job's id, "" for none */
};

static int task_of(void *arg, int64_t index, int state, const struct job *j)
{
    struct task_of *t = arg;
    t->index = index;
    t->state = state;
    if (j) memcpy(t->job, j->id, UUID_STR_LEN);
    return 0; /* one task asked: the walk ends */
}

/* The array and the index of ARRAY:INDEX, a task the caller may see; a is released by the
   caller when 0 is returned. */
static int find_task(struct http_req *r, const char *array, const char *index,
                     struct array_rec *a, int64_t *i, struct err *e)
{
    char *end;
    errno = 0;
    long long n = strtoll(index, &end, 10);
    if (index[0] < '0' || index[0] > '9' || *end || errno) /* not " 1", "+1", "-1" */
        return err_field(e, ERR_INVALID, "id",
                         "a task of an array is ARRAY_ID:INDEX, INDEX a whole number from 0, "
                         "not '%s:%s'",
                         array, index);
    int rc = find_array_id(r, array, a, e);
    if (rc) return rc;
    if (n >= a->count) {
        rc = err_set(e, ERR_NOTFOUND, "array '%s' has %lld task%s (0 to %lld): no task %lld",
                     a->id, (long long)a->count, a->count == 1 ? "" : "s",
                     (long long)a->count - 1, n);
        array_rec_release(a);
        return rc;
    }
    *i = n;
    return 0;
}

int api_arrays_task_job(struct http_req *r, const char *array, const char *index,
                        char id[UUID_STR_LEN], struct err *e)
{
    struct array_rec a;
    int64_t i;
    int rc = find_task(r, array, index, &a, &i, e);
    if (rc) return rc;
    struct task_of t = {.index = -1};
    rc = store_array_tasks(srv(r)->reads, &a, i, i, -1, 1, task_of, &t, e);
    if (!rc && t.index != i)
        rc = err_set(e, ERR_INTERNAL, "task %lld of array '%s' could not be read", (long long)i,
                     a.id);
    else if (!rc && !t.job[0])
        rc = err_set(e, ERR_NOTFOUND,
                     t.state == JOB_CANCELLED
                         ? "task %lld of array '%s' was cancelled before it ran: it has no job"
                         : "task %lld of array '%s' is queued and has no job yet: it becomes "
                           "one when an agent takes it",
                     (long long)i, a.id);
    else if (!rc)
        memcpy(id, t.job, UUID_STR_LEN);
    array_rec_release(&a);
    return rc;
}

int api_arrays_task_id(struct http_req *r, const char *array, const char *index,
                       char id[UUID_STR_LEN], struct err *e)
{
    struct array_rec a;
    int64_t i;
    int rc = find_task(r, array, index, &a, &i, e);
    if (rc) return rc;
    array_task_id(a.id, i, id);
    array_rec_release(&a);
    return 0;
}

int api_arrays_get(struct http_req *r)
{
    struct array_rec a;
    struct err e = ERR_INIT;
    int64_t count[JOB_NSTATES];
    if (find_array(r, &a, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (store_array_counts(srv(r)->reads, &a, count, &e))
        http_reply_err(r, &e);
    else
        http_reply_json(r, 200, summary_json(&a, count, true));
    array_rec_release(&a);
    return HTTP_DONE;
}

int api_arrays_list(struct http_req *r)
{
    const char *after = http_query(r, "after");
    long limit;
    struct err e = ERR_INIT;
    if (http_query_long(r, "limit", 1, LIST_MAX_LIMIT, 50, &limit, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (after && !uuid_valid(after)) {
        http_reply_error(r, ERR_INVALID, "after", "after must be an array id");
        return HTTP_DONE;
    }
    struct array_rec *list;
    size_t n;
    int rc =
        store_array_list(srv(r)->reads, api_caller_owner(r), after, (int)limit, &list, &n, &e);
    json_t *arrays = json_array();
    for (size_t i = 0; i < n; i++) {
        int64_t count[JOB_NSTATES];
        if (!rc) rc = store_array_counts(srv(r)->reads, &list[i], count, &e);
        if (!rc) json_array_append_new(arrays, summary_json(&list[i], count, false));
        array_rec_release(&list[i]);
    }
    if (rc) {
        json_decref(arrays);
        http_reply_err(r, &e);
    } else {
        json_t *next = n == (size_t)limit ? json_string(json_string_value(json_object_get(
                                                json_array_get(arrays, n - 1), "id")))
                                          : json_null();
        http_reply_json(r, 200, json_pack("{s:o, s:o}", "arrays", arrays, "next", next));
    }
    free(list);
    return HTTP_DONE;
}

/* An index query parameter or body field: 0..count-1, or dflt when absent. */
static int index_arg(const char *name, const json_t *v, const char *text, int64_t count,
                     int64_t dflt, int64_t *out, struct err *e)
{
    long long x;
    if (text) {
        char *end;
        errno = 0;
        x = strtoll(text, &end, 10);
        if (errno || *end || end == text) x = -1;
    } else if (v && !json_is_null(v)) {
        x = json_is_integer(v) ? json_integer_value(v) : -1;
    } else {
        *out = dflt;
        return 0;
    }
    if (x < 0 || x >= count)
        return err_field(e, ERR_INVALID, name, "%s must be a task index from 0 to %lld", name,
                         (long long)count - 1);
    *out = x;
    return 0;
}

struct tasks_out {
    json_t *tasks;
    int64_t last;
};

static int task_json(void *arg, int64_t index, int state, const struct job *j)
{
    struct tasks_out *t = arg;
    json_t *o = json_pack("{s:I, s:s}", "index", (json_int_t)index, "state",
                          job_state_name(state));
    if (j) {
        json_object_set_new(o, "job", json_string(j->id));
        json_object_set_new(o, "attempt", json_integer(j->attempt));
        json_object_set_new(o, "agent", j->agent ? json_string(j->agent) : json_null());
        json_object_set_new(o, "result", j->result ? json_incref(j->result) : json_null());
    } else {
        json_object_set_new(o, "job", json_null());
        json_object_set_new(o, "attempt", json_integer(0));
    }
    json_array_append_new(t->tasks, o);
    t->last = index;
    return 0;
}

int api_arrays_tasks(struct http_req *r)
{
    struct array_rec a;
    struct err e = ERR_INIT;
    if (find_array(r, &a, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    int64_t from, to, limit = TASKS_DEFAULT_LIMIT;
    int state = -1;
    const char *st = http_query(r, "state");
    int rc = index_arg("from", NULL, http_query(r, "from"), a.count, 0, &from, &e);
    if (!rc) rc = index_arg("to", NULL, http_query(r, "to"), a.count, a.count - 1, &to, &e);
    if (!rc && from > to)
        rc = err_field(&e, ERR_INVALID, "from", "from (%lld) must not be past to (%lld)",
                       (long long)from, (long long)to);
    if (!rc && st && (state = job_state_parse(st)) < 0)
        rc = err_field(&e, ERR_INVALID, "state", "state must be a job state (queued, ...)");
    long lim = 0;
    if (!rc) rc = http_query_long(r, "limit", 1, TASKS_MAX_LIMIT, TASKS_DEFAULT_LIMIT, &lim, &e);
    limit = lim;
    struct tasks_out out = {json_array(), -1};
    if (!rc)
        rc = store_array_tasks(srv(r)->reads, &a, from, to, state, (int)limit, task_json, &out,
                               &e);
    if (rc) {
        json_decref(out.tasks);
        http_reply_err(r, &e);
    } else {
        /* the next page starts after the last task given, while the range goes on */
        json_t *next = (int64_t)json_array_size(out.tasks) == limit && out.last < to
                           ? json_integer(out.last + 1)
                           : json_null();
        http_reply_json(r, 200, json_pack("{s:s, s:o, s:o}", "array", a.id, "tasks", out.tasks,
                                          "next_from", next));
    }
    array_rec_release(&a);
    return HTTP_DONE;
}

/* ---- cancel and retry by range ---- */

struct range_op {
    struct http_req *r;
    char id[UUID_STR_LEN];
    int64_t from, to;
    bool retry;
    int64_t n;
    struct job *jobs; /* changed, for the fleet */
    size_t njobs, cap;
    struct array_rec after; /* the array once changed */
};

static int range_keep(void *arg, struct job *j)
{
    struct range_op *op = arg;
    if (op->njobs == op->cap) {
        op->cap = op->cap ? 2 * op->cap : 64;
        op->jobs = xrealloc(op->jobs, op->cap * sizeof(*op->jobs));
    }
    op->jobs[op->njobs++] = *j; /* taken */
    return 0;
}

static void range_free(struct range_op *op)
{
    for (size_t i = 0; i < op->njobs; i++)
        job_release(&op->jobs[i]);
    free(op->jobs);
    array_rec_release(&op->after);
    free(op);
}

static int range_write(struct store *st, void *arg, struct err *e)
{
    struct range_op *op = arg;
    int64_t now = time_now_ms();
    int rc = op->retry ? store_array_retry(st, op->id, op->from, op->to, now, range_keep, op,
                                           &op->n, e)
                       : store_array_cancel(st, op->id, op->from, op->to, now, range_keep, op,
                                            &op->n, e);
    if (!rc) rc = store_array_get(st, op->id, &op->after, e);
    if (!rc) rc = store_event_array(st, &op->after, ARRAY_CHANGED, e);
    return rc;
}

static void range_done(void *arg, int rc, const struct err *e)
{
    struct range_op *op = arg;
    struct server *s = srv(op->r);
    if (!rc) {
        for (size_t i = 0; i < op->njobs; i++)
            fleet_job_changed(s->fleet, &op->jobs[i], false);
        fleet_array_changed(s->fleet, &op->after);
    }
    if (op->r->gone)
        http_req_drop(op->r);
    else if (rc)
        http_reply_err(op->r, e);
    else
        http_reply_json(op->r, 200,
                        json_pack("{s:s, s:I, s:I, s:I}", "array", op->id, "from",
                                  (json_int_t)op->from, "to", (json_int_t)op->to,
                                  op->retry ? "retried" : "cancelled", (json_int_t)op->n));
    range_free(op);
}

static int range_start(struct http_req *r, bool retry)
{
    struct array_rec a;
    struct err e = ERR_INIT;
    if (find_array(r, &a, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    /* the body may be left out (all tasks) */
    struct evbuffer *in = evhttp_request_get_input_buffer(r->ev);
    size_t len = evbuffer_get_length(in);
    json_t *body = NULL;
    json_error_t je;
    int rc = 0;
    if (len && !(body = json_loadb((const char *)evbuffer_pullup(in, -1), len,
                                   JSON_REJECT_DUPLICATES, &je)))
        rc = http_json_malformed(&e, &je);
    else if (body && !json_is_object(body))
        rc = err_set(&e, ERR_INVALID, "the body must be an object: {\"from\": I, \"to\": J}");
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) {
        if (!rc && strcmp(k, "from") && strcmp(k, "to"))
            rc = err_field(&e, ERR_INVALID, k, "%s: unknown field (the body has from and to)",
                           k);
    }
    struct range_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    op->retry = retry;
    memcpy(op->id, a.id, sizeof(op->id));
    if (!rc) rc = index_arg("from", json_object_get(body, "from"), NULL, a.count, 0, &op->from, &e);
    if (!rc)
        rc = index_arg("to", json_object_get(body, "to"), NULL, a.count, a.count - 1, &op->to, &e);
    if (!rc && op->from > op->to)
        rc = err_field(&e, ERR_INVALID, "from", "from (%lld) must not be past to (%lld)",
                       (long long)op->from, (long long)op->to);
    array_rec_release(&a);
    json_decref(body);
    if (rc) {
        range_free(op);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    commit_submit(srv(r)->commit, range_write, range_done, op);
    return HTTP_DEFERRED;
}

int api_arrays_cancel(struct http_req *r)
{
    return range_start(r, false);
}

int api_arrays_retry(struct http_req *r)
{
    return range_start(r, true);
}
