/*
 * api_jobs.c - the jobs resource: submit, get, list, wait, cancel, retry; and queues.
 *
 * Submissions are validated completely on the event loop, then written by
 * the group committer; the answer goes out from the commit's callback, so
 * a 201 always means "durable".
 *
 * A job belongs to the token that submitted it (its name is the job's
 * owner). Every /v1/jobs/{id} route first resolves {id} with resolve_id():
 * a whole id or a unique prefix, among the jobs the caller may see (its own,
 * or all for an admin); a job of someone else is "not found", so that its
 * existence is not revealed.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/hmap.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/job.h"
#include "job/spec.h"
#include "server/fleet.h"
#include "server/retention.h"
#include "server/sched.h"
#include "server/tenants.h"
#include "server/server.h"
#include "server/services.h"

#define SUBMIT_MAX_SPECS 10000
#define LIST_DEFAULT_LIMIT 50
#define LIST_MAX_LIMIT 1000
#define WAIT_DEFAULT_S 30
#define WAIT_MAX_S 3600

static struct server *srv(struct http_req *r)
{
    return r->app;
}

/*
 * Resolves the route's {id} -- a job id or a unique prefix of one, or ARRAY:INDEX, the job
 * of a task of a job array (api_arrays_task_job) -- among the caller's jobs into id.
 */
static int resolve_id(struct http_req *r, char id[UUID_STR_LEN], struct err *e)
{
    const char *given = r->params[0];
    const char *colon = strchr(given, ':');
    if (colon) { /* ARRAY:INDEX, a task of a job array */
        char *array = xstrndup(given, (size_t)(colon - given));
        int rc = api_arrays_task_job(r, array, colon + 1, id, e);
        free(array);
        return rc;
    }
    return api_resolve_id(r, STORE_JOB, given, id, e);
}

/* The job the route's {id} names, if the caller may see it. */
static int find_job(struct http_req *r, struct job *j, struct err *e)
{
    char id[UUID_STR_LEN];
    int rc = resolve_id(r, id, e);
    return rc ? rc : store_job_get(srv(r)->reads, id, j, e);
}

/* ---- submit ---- */

struct submit {
    struct http_req *r;
    char tenant[72];  /* the caller's */
    int max_queued;   /* the tenant's limit, 0: none */
    int64_t queued;   /* out: its jobs waiting, with the new ones, when over the limit */
    int64_t inserted; /* out: the new jobs (not those whose key was taken) */
    bool array;
    size_t n;
    struct job **jobs; /* each its own allocation: no array of 1,000 records over 64 KiB,
                          whose free makes glibc consolidate every small chunk of the batch */
    bool *existed;     /* the job with that key was there already */
    struct service_use *uses; /* what each job's expansion read of the service hub */
};

static void submit_free(struct submit *sb)
{
    for (size_t i = 0; i < sb->n; i++) {
        job_release(sb->jobs[i]);
        free(sb->jobs[i]);
    }
    free(sb->jobs);
    free(sb->existed);
    free(sb->uses);
    free(sb);
}

/*
 * Writer thread: jobs [from, to) of sb, none with a key, in one call (the
 * store writes a batch with few statements). A spec shared by neighbours
 * (repeated specs share one tree: api_jobs_create) is dumped once for them
 * all; any other by the store, as before.
 */
static int submit_run(struct store *st, struct submit *sb, size_t from, size_t to,
                      struct err *e)
{
    if (from == to)
        return 0;
    char **texts = xcalloc(to - from, sizeof(*texts)); /* [i - from]: dumped for job i on */
    for (size_t i = from; i < to; i++) {
        struct job *j = sb->jobs[i];
        if (i > from && sb->jobs[i - 1]->spec == j->spec)
            j->spec_text = sb->jobs[i - 1]->spec_text;
        else if (i + 1 < to && sb->jobs[i + 1]->spec == j->spec)
            j->spec_text = texts[i - from] = job_spec_dump(j->spec);
    }
    int rc = store_job_insert_many(st, sb->jobs + from, to - from, e);
    for (size_t i = from; i < to; i++) {
        sb->jobs[i]->spec_text = NULL;
        free(texts[i - from]);
    }
    free(texts);
    if (!rc)
        sb->inserted += (int64_t)(to - from);
    return rc;
}

/* Writer thread: the i-th job of sb, which has a key: it is the job already there, or new. */
static int submit_keyed(struct store *st, struct submit *sb, size_t i, struct err *e)
{
    struct job *j = sb->jobs[i];
    struct job old;
    struct err ke = ERR_INIT;
    int rc = store_job_get_by_key(st, j->owner, j->key, &old, &ke);
    if (rc == 0) {
        job_release(j);
        *j = old;
        sb->existed[i] = true;
        return 0;
    }
    if (rc != ERR_NOTFOUND)
        return err_set(e, rc, "%s", ke.msg);
    if ((rc = store_job_insert(st, j, e)))
        return rc;
    sb->inserted++;
    return 0;
}

/* Writer thread. */
static int submit_write(struct store *st, void *arg, struct err *e)
{
    struct submit *sb = arg;
    const struct service_use *checked = NULL; /* an array's jobs mostly share theirs */
    size_t from = 0; /* the jobs without a key not yet written */
    int rc = 0;
    for (size_t i = 0; i < sb->n && !rc; i++) {
        const struct service_use *u = &sb->uses[i];
        if (u->name[0] && !(checked && !strcmp(checked->name, u->name) &&
                            checked->version == u->version && checked->pinned == u->pinned)) {
            if ((rc = services_recheck(st, u, e)))
                break;
            checked = u;
        }
        if (!sb->jobs[i]->key)
            continue;
        /* a key's lookup sees the jobs before it, those of this batch too */
        if (!(rc = submit_run(st, sb, from, i, e)))
            rc = submit_keyed(st, sb, i, e);
        from = i + 1;
    }
    if (!rc)
        rc = submit_run(st, sb, from, sb->n, e);
    if (rc || !sb->max_queued || !sb->inserted)
        return rc;
    /* Counted with the new jobs, in their transaction: concurrent submissions of a tenant
       cannot pass the limit together (the writer is one thread; PostgreSQL: one server). */
    rc = store_tenant_waiting(st, sb->tenant, &sb->queued, e);
    if (rc || sb->queued <= sb->max_queued)
        return rc;
    return err_field(e, ERR_QUOTA, "max_queued",
                     "tenant '%s' may have at most %d queued jobs (max_queued); it has %lld, "
                     "and this submission would make %lld",
                     sb->tenant, sb->max_queued, (long long)(sb->queued - sb->inserted),
                     (long long)sb->queued);
}

/*
 * Writer thread: single submits queued one after the other (commit_submit_merge), their
 * jobs in one store call (a multi-row insert) instead of one each. Only for submissions
 * that submit_write would write in one submit_run: one job, no key, no service to check
 * again, no tenant limit to count (mergeable).
 */
static int submit_write_merged(struct store *st, void **args, size_t n, struct err *e)
{
    struct job *jobs[COMMIT_MERGE_MAX] = {0};
    for (size_t i = 0; i < n; i++)
        jobs[i] = ((struct submit *)args[i])->jobs[0];
    int rc = store_job_insert_many(st, jobs, n, e);
    for (size_t i = 0; i < n && !rc; i++) /* only once all are in: a failure reruns each */
        ((struct submit *)args[i])->inserted = 1;
    return rc;
}

/* Can sb be written by submit_write_merged? */
static bool mergeable(const struct submit *sb)
{
    return sb->n == 1 && !sb->jobs[0]->key && !sb->uses[0].name[0] && !sb->max_queued;
}

/* 429: which limit of which tenant, so that a client can tell it from other errors. */
static void reply_quota(struct submit *sb, const struct err *e)
{
    json_t *inner = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I}", "code", "quota", "message", e->msg,
                              "limit", "max_queued", "tenant", sb->tenant, "max", sb->max_queued,
                              "queued", (json_int_t)(sb->queued - sb->inserted));
    http_reply_json(sb->r, 429, json_pack("{s:o}", "error", inner));
}

/* The last job's created_at, and its text: a batch's jobs share it. */
struct created_memo {
    int64_t at;
    char text[32];
};

/* Appends v in decimal (without a format: once per job of a batch's answer). */
static void add_int(struct buf *b, int v)
{
    char t[16];
    char *p = t + sizeof(t);
    unsigned u = v < 0 ? 0u - (unsigned)v : (unsigned)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    buf_add(b, p, (size_t)(t + sizeof(t) - p));
}

/*
 * Appends a submitted job's summary to b, as text (a batch's answer is
 * written without a JSON tree): id, state, queue, priority, key and
 * created_at (what the client does not already know: GET shows the whole
 * job), with the agents up that could take it ("listeners") and, when none
 * could, why ("warnings"), so that a job no agent can take does not wait
 * silently.
 */
static void submitted_text(struct buf *b, struct server *s, const struct job *j,
                           struct created_memo *m)
{
    if (!m->text[0] || m->at != j->created_at) {
        m->at = j->created_at;
        time_format_rfc3339(j->created_at, m->text, sizeof(m->text));
    }
    /* ids are UUIDs, states and queues names of [a-z0-9._-]: nothing to escape; pieces
       added as they are (a format showed in profiles of batches) */
    buf_adds(b, "{\"id\":\"");
    buf_adds(b, j->id);
    buf_adds(b, "\",\"state\":\"");
    buf_adds(b, job_state_name(j->state));
    buf_adds(b, "\",\"queue\":\"");
    buf_adds(b, j->queue);
    buf_adds(b, "\",\"priority\":");
    add_int(b, j->priority);
    buf_adds(b, ",\"key\":");
    if (j->key) {
        json_t *k = json_string(j->key);
        char *text = json_dumps(k, JSON_ENCODE_ANY);
        buf_adds(b, text);
        free(text);
        json_decref(k);
    } else {
        buf_adds(b, "null");
    }
    /* who could take it, as the fleet remembers it for jobs of its shape */
    int listeners;
    const char *warnings = fleet_job_fit_text(s->fleet, j, &listeners);
    buf_adds(b, ",\"created_at\":\"");
    buf_adds(b, m->text);
    buf_adds(b, "\",\"listeners\":");
    add_int(b, listeners);
    buf_adds(b, ",\"warnings\":");
    buf_adds(b, warnings);
    buf_addc(b, '}');
}

static void submit_done(void *arg, int rc, const struct err *e)
{
    struct submit *sb = arg;
    struct http_req *r = sb->r;
    struct server *s = srv(r);
    if (!rc) /* committed: the jobs are queued, whether or not the client still listens */
        for (size_t i = 0; i < sb->n; i++)
            if (!sb->existed[i])
                fleet_job_changed(s->fleet, sb->jobs[i], false);
    if (r->gone) {
        http_req_drop(r);
    } else if (rc == ERR_QUOTA) {
        reply_quota(sb, e);
    } else if (rc) {
        http_reply_err(r, e);
    } else {
        struct buf b = BUF_INIT;
        struct created_memo m = {0};
        if (sb->array) buf_adds(&b, "{\"jobs\":[");
        for (size_t i = 0; i < sb->n; i++) {
            if (i) buf_addc(&b, ',');
            submitted_text(&b, s, sb->jobs[i], &m);
        }
        buf_adds(&b, sb->array ? "]}\n" : "\n");
        http_reply_bytes(r, !sb->array && sb->existed[0] ? 200 : 201, "application/json", b.data,
                         b.len);
        buf_release(&b);
    }
    submit_free(sb);
}

/* "test": true -- could an agent take this job? Nothing is queued. */
static int probe(struct http_req *r, const struct job_spec *spec)
{
    struct sched_fit fit;
    sched_fit_init(&fit, spec->queue, json_object_size(spec->requires) ? spec->requires : NULL,
                   spec->slots, spec_runtimes(spec->json));
    int n = fleet_fit(srv(r)->fleet, &fit);
    http_reply_json(r, 200,
                    json_pack("{s:s, s:i, s:o}", "queue", spec->queue, "listeners", n, "warnings",
                              sched_fit_warnings(&fit)));
    return HTTP_DONE;
}

/*
 * Expands (service hub) and validates the i-th spec of a submission into
 * *spec: true. Else the answer is out (an error, or a test probe's), *rc the
 * handler's return: false. *shareable: the spec named no service, so that an
 * equal spec after it is the same job again.
 */
static bool check_spec(struct http_req *r, struct services_memo *memo, json_t *in, bool array,
                       size_t i, struct service_use *use, struct job_spec *spec, bool *shareable,
                       int *rc)
{
    struct err e = ERR_INIT;
    char path[32] = "";
    if (array)
        snprintf(path, sizeof(path), "[%zu]", i);
    json_t *expanded;
    int bad = services_expand_job(srv(r)->reads, memo, in, path, &expanded, use, &e);
    if (!bad && array && json_object_get(in, "array")) {
        char field[48];
        snprintf(field, sizeof(field), "%s.array", path);
        bad = err_field(&e, ERR_INVALID, field,
                        "%s: a job array is submitted alone (POST /v1/jobs with its one spec), "
                        "not in a batch of specs",
                        field);
    }
    if (!bad) /* a single spec with "array" went to api_arrays_submit */
        bad = array ? spec_parse(expanded ? expanded : in, path, spec, &e)
                    : spec_parse_arrayable(expanded ? expanded : in, path, spec, &e);
    *shareable = !expanded && !use->name[0];
    json_decref(expanded);
    *rc = HTTP_DONE;
    if (bad) {
        http_reply_err(r, &e);
        return false;
    }
    if (!spec->test)
        return true;
    char field[48];
    snprintf(field, sizeof(field), "%s.test", path);
    if (array)
        http_reply_error(r, ERR_INVALID, field, "%s: a test probe cannot be part of an array",
                         field);
    else
        *rc = probe(r, spec);
    spec_release(spec);
    return false;
}

int api_jobs_create(struct http_req *r)
{
    json_t *body = r->body;
    bool array = json_is_array(body);
    size_t n = array ? json_array_size(body) : 1;
    if (!array && !json_is_object(body)) {
        http_reply_error(r, ERR_INVALID, NULL, "the body must be a job spec (an object) or an "
                                               "array of job specs");
        return HTTP_DONE;
    }
    if (!array && json_object_get(body, "array"))
        return api_arrays_submit(r); /* one array of tasks (api_arrays.c) */
    if (array && (n == 0 || n > SUBMIT_MAX_SPECS)) {
        http_reply_error(r, ERR_INVALID, NULL, "an array submission must hold 1 to %d specs, "
                                               "not %zu", SUBMIT_MAX_SPECS, n);
        return HTTP_DONE;
    }
    struct submit *sb = xcalloc(1, sizeof(*sb));
    sb->r = r;
    struct err te = ERR_INIT;
    if (tenants_of_token(srv(r), r->token_name, sb->tenant, sizeof(sb->tenant), &te)) {
        free(sb);
        http_reply_err(r, &te); /* the token was revoked meanwhile, or the store failed */
        return HTTP_DONE;
    }
    sb->max_queued = tenants_max_queued(srv(r), sb->tenant);
    sb->array = array;
    sb->jobs = xcalloc(n, sizeof(*sb->jobs)); /* records made as their specs pass: sb->n */
    sb->existed = xcalloc(n, sizeof(*sb->existed));
    sb->uses = xcalloc(n, sizeof(*sb->uses));
    int64_t now = time_now_ms();
    struct services_memo memo = {0};
    /* The last spec as sent, when it named no service, and its normalised form: a batch's
       specs often repeat, and a repeat is the same job again (its validation depends on the
       spec alone), so it shares the normalised tree (never modified once made) instead of
       being checked, normalised, stored as text and freed once more (submit_write dumps a
       shared tree once). */
    json_t *last_in = NULL;
    struct job_spec last = {0};
    /* A batch's keys, each to 1 + the index of its spec: a key given twice in one batch would
       answer the first spec's job for the second, whose spec is dropped unseen: refused. */
    struct hmap keys;
    hmap_init(&keys);
    for (size_t i = 0; i < n; i++) {
        struct job_spec spec;
        json_t *in = array ? json_array_get(body, i) : body;
        if (last_in && json_equal(in, last_in)) {
            spec = last;
            json_incref(spec.json);
        } else {
            bool shareable;
            int rc;
            bool ok = check_spec(r, &memo, in, array, i, &sb->uses[i], &spec, &shareable, &rc);
            spec_release(&last);
            last_in = NULL;
            if (!ok) {
                services_memo_release(&memo);
                hmap_release(&keys, NULL);
                submit_free(sb);
                return rc;
            }
            if (shareable) {
                last_in = in;
                last = spec;
                json_incref(last.json);
            }
        }
        size_t first = array && spec.key ? (size_t)(uintptr_t)hmap_get(&keys, spec.key) : 0;
        if (first) {
            char field[32];
            snprintf(field, sizeof(field), "[%zu].key", i);
            http_reply_error(r, ERR_INVALID, field,
                             "%s: '%s' repeats the key of spec [%zu]; each spec of a batch "
                             "needs a key of its own (or none)",
                             field, spec.key, first - 1);
            spec_release(&spec);
            spec_release(&last);
            services_memo_release(&memo);
            hmap_release(&keys, NULL);
            submit_free(sb);
            return HTTP_DONE;
        }
        if (array && spec.key)
            hmap_put(&keys, spec.key, (void *)(uintptr_t)(i + 1));
        sb->jobs[i] = xmalloc(sizeof(**sb->jobs));
        job_from_spec(sb->jobs[i], &spec, now);
        sb->jobs[i]->owner = xstrdup(r->token_name);
        sb->jobs[i]->tenant = xstrdup(sb->tenant);
        retention_apply(srv(r)->retention, sb->jobs[i]);
        sb->n++;
        spec_release(&spec);
    }
    spec_release(&last);
    services_memo_release(&memo);
    hmap_release(&keys, NULL);
    commit_submit_merge(srv(r)->commit, submit_write, mergeable(sb) ? submit_write_merged : NULL,
                        submit_done, sb);
    return HTTP_DEFERRED;
}

/* ---- read ---- */

/*
 * {id} is not in the store: a whole id may name a job deleted after its
 * retention, answered from the archive (retention.h): the job, its log, or, for a call
 * that would change it (`refuse`: "cancelled", "retried"), 409. Else the error as it is.
 */
static int archived_or_err(struct http_req *r, const struct err *e, bool log,
                           const struct logs_query *q, const char *refuse)
{
    if (e->code == ERR_NOTFOUND && uuid_valid(r->params[0])) {
        char id[UUID_STR_LEN];
        memcpy(id, r->params[0], UUID_STR_LEN); /* valid: UUID_STR_LEN - 1 characters */
        for (char *p = id; *p; p++)
            if (*p >= 'A' && *p <= 'F') *p = (char)(*p - 'A' + 'a');
        if (refuse)
            retention_refuse(srv(r)->retention, r, id, refuse);
        else
            retention_answer(srv(r)->retention, r, id, log, q);
        return HTTP_DEFERRED;
    }
    http_reply_err(r, e);
    return HTTP_DONE;
}

int api_jobs_get(struct http_req *r)
{
    struct job j;
    struct err e = ERR_INIT;
    if (find_job(r, &j, &e))
        return archived_or_err(r, &e, false, NULL, NULL);
    struct sched_fit fit;
    json_t *o = job_to_json(&j);
    fleet_job_fit(srv(r)->fleet, &j, &fit);
    json_t *waiting = sched_waiting_json(&j, &fit, time_now_ms());
    const char *reason = json_string_value(json_object_get(waiting, "reason"));
    bool busy = reason && !strcmp(reason, "busy"); /* read before a reason replaces it */
    int max = sched_tenant_max_running(srv(r)->sched, j.tenant);
    int64_t held = sched_tenant_held(srv(r)->sched, j.tenant);
    if (busy && max && held >= max) { /* not a slot: its quota */
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "its tenant '%s' has %lld jobs leased or running, its max_running; it starts "
                 "when one of them ends",
                 j.tenant ? j.tenant : "", (long long)held);
        json_object_set_new(waiting, "reason", json_string("quota"));
        json_object_set_new(waiting, "message", json_string(msg));
    }
    int qmax = sched_queue_max_running(srv(r)->sched, j.queue);
    int64_t qheld = sched_queue_held(srv(r)->sched, j.queue);
    if (busy && qmax && qheld >= qmax && !(max && held >= max)) { /* its queue's limit */
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "its queue '%s' has %lld jobs leased or running, its max_running; it starts "
                 "when one of them ends",
                 j.queue, (long long)qheld);
        json_object_set_new(waiting, "reason", json_string("queue_limit"));
        json_object_set_new(waiting, "message", json_string(msg));
    }
    int ending;
    const char *on;
    if (j.state == JOB_QUEUED && fleet_job_ending(srv(r)->fleet, j.id, &ending, &on)) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "attempt %d is still ending on agent '%s' (it was told to stop); the next "
                 "starts once it has",
                 ending, on);
        json_object_set_new(waiting, "reason", json_string("ending"));
        json_object_set_new(waiting, "message", json_string(msg));
    }
    json_object_set_new(o, "waiting", waiting);
    char wid[UUID_STR_LEN]; /* the workflow it is a node of, for the dashboard's link */
    struct err we = ERR_INIT;
    int wrc = store_workflow_of(srv(r)->reads, j.id, wid, &we);
    if (wrc && wrc != ERR_NOTFOUND) {
        json_decref(o);
        job_release(&j);
        http_reply_err(r, &we);
        return HTTP_DONE;
    }
    json_object_set_new(o, "workflow", wrc ? json_null() : json_string(wid));
    http_reply_json(r, 200, o);
    job_release(&j);
    return HTTP_DONE;
}

static int parse_filter(struct http_req *r, struct job_filter *f, char *label, size_t n,
                        struct err *e)
{
    memset(f, 0, sizeof(*f));
    f->owner = api_caller_owner(r);
    f->state = -1;
    long limit;
    if (http_query_long(r, "limit", 1, LIST_MAX_LIMIT, LIST_DEFAULT_LIMIT, &limit, e))
        return e->code;
    f->limit = (int)limit;
    const char *v;
    if ((v = http_query(r, "state")) && (f->state = job_state_parse(v)) < 0)
        return err_field(e, ERR_INVALID, "state",
                         "state must be one of blocked, queued, leased, running, succeeded, "
                         "failed, cancelled");
    if ((v = http_query(r, "queue")) && !spec_queue_name_valid(v))
        return err_field(e, ERR_INVALID, "queue", "queue must match [a-z0-9._-]{1,64}");
    f->queue = v;
    f->service = http_query(r, "service");
    if ((v = http_query(r, "name")) && (!*v || strlen(v) > 256))
        return err_field(e, ERR_INVALID, "name", "name must be 1 to 256 bytes of a job's name");
    f->name = v;
    if ((v = http_query(r, "agent")) && (!*v || strlen(v) > 128))
        return err_field(e, ERR_INVALID, "agent", "agent must be an agent's name (1 to 128 bytes)");
    f->agent = v;
    if ((v = http_query(r, "after")) && !uuid_valid(v))
        return err_field(e, ERR_INVALID, "after", "after must be a job id (the 'next' cursor)");
    f->after = v;
    if ((v = http_query(r, "label"))) {
        const char *colon = strchr(v, ':');
        if (!colon || colon == v || strlen(v) >= n)
            return err_field(e, ERR_INVALID, "label", "label must be KEY:VALUE");
        snprintf(label, n, "%s", v);
        label[colon - v] = '\0';
        if (!spec_label_name_valid(label))
            return err_field(e, ERR_INVALID, "label",
                             "label must be KEY:VALUE with KEY of [A-Za-z0-9._/-]{1,64}");
        f->label_key = label;
        f->label_value = label + (colon - v) + 1;
    }
    return 0;
}

int api_jobs_list(struct http_req *r)
{
    struct job_filter f;
    struct job_list l;
    char label[512];
    struct err e = ERR_INIT;
    if (parse_filter(r, &f, label, sizeof(label), &e) ||
        store_job_list(srv(r)->reads, &f, &l, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < l.n; i++)
        json_array_append_new(arr, job_to_json(&l.jobs[i]));
    json_t *next = l.n == (size_t)f.limit ? json_string(l.jobs[l.n - 1].id) : json_null();
    http_reply_json(r, 200, json_pack("{s:o, s:o}", "jobs", arr, "next", next));
    job_list_release(&l);
    return HTTP_DONE;
}

int api_jobs_wait(struct http_req *r)
{
    struct job j;
    struct err e = ERR_INIT;
    long timeout_s;
    if (http_query_long(r, "timeout_s", 0, WAIT_MAX_S, WAIT_DEFAULT_S, &timeout_s, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (find_job(r, &j, &e)) /* an archived job has ended: no wait */
        return archived_or_err(r, &e, false, NULL, NULL);
    if (job_state_terminal(j.state) || timeout_s == 0) {
        http_reply_json(r, 200, job_to_json(&j));
        job_release(&j);
        return HTTP_DONE;
    }
    waiters_add(srv(r)->waiters, j.id, r, timeout_s * 1000);
    job_release(&j);
    return HTTP_DEFERRED;
}

/* ---- cancel ---- */

struct cancel {
    struct http_req *r;
    char id[HTTP_PARAM_MAX];
    struct job job;
    /* retry: the job's tenant and its max_queued (0: none); its jobs waiting after */
    char tenant[72];
    int max_queued;
    int64_t queued;
};

static int cancel_write(struct store *st, void *arg, struct err *e)
{
    struct cancel *c = arg;
    return store_job_cancel(st, c->id, time_now_ms(), &c->job, e);
}

static void cancel_done(void *arg, int rc, const struct err *e)
{
    struct cancel *c = arg;
    if (!rc)
        fleet_job_changed(srv(c->r)->fleet, &c->job, false);
    if (c->r->gone)
        http_req_drop(c->r);
    else if (rc)
        http_reply_err(c->r, e);
    else
        http_reply_json(c->r, 200, job_to_json(&c->job));
    job_release(&c->job);
    free(c);
}

int api_jobs_cancel(struct http_req *r)
{
    char id[UUID_STR_LEN];
    struct err e = ERR_INIT;
    if (resolve_id(r, id, &e)) return archived_or_err(r, &e, false, NULL, "cancelled");
    struct cancel *c = xcalloc(1, sizeof(*c));
    c->r = r;
    snprintf(c->id, sizeof(c->id), "%s", id);
    commit_submit(srv(r)->commit, cancel_write, cancel_done, c);
    return HTTP_DEFERRED;
}

/*
 * ---- by filter: POST /v1/jobs/cancel and /v1/jobs/retry?queue=&state=&service=&label=&... ----
 *
 * Every job the filter finds in the states the verb applies to (the caller's; an admin's:
 * all), BULK_CHUNK a transaction: each state's jobs are paged newest first with a cursor,
 * the states in the order jobs move through them (cancel: blocked, queued, leased, running;
 * retry: failed, cancelled), so a job that moves on meanwhile is met again in its next
 * state, none is met twice in one state, and each walk ends (jobs newer than its first page
 * are not in it). A retry counts against its tenant's max_queued as a single one does: the
 * first it would pass stops the walk (429; what was retried before it stays, in its chunk
 * too).
 */
#define BULK_CHUNK 500
#define RETRYABLE (1u << JOB_FAILED | 1u << JOB_CANCELLED)

/*
 * A cancel by filter walks the states twice, and again while the walk before found jobs, up
 * to BULK_WALKS walks: a job that went back meanwhile (a retry, a lost agent: running or
 * leased -> queued) to a state walked already is met by the next walk. A retry walks once:
 * what failed again meanwhile was retried by this request already.
 */
#define BULK_WALKS 3

struct bulk {
    struct http_req *r;
    bool retry;
    struct job_filter f; /* its strings are the request's */
    char label[512];
    unsigned all;        /* the states to walk */
    unsigned states;     /* those still to walk in this walk */
    int walks;           /* walks begun */
    bool found;          /* this walk listed a job */
    int64_t step_ms;     /* tests (DROVER_TEST_BULK_STEP_MS): a pause after each state */
    char after[UUID_STR_LEN];
    int64_t done_n;      /* jobs cancelled or retried so far */
    size_t n;            /* this chunk's */
    char ids[BULK_CHUNK][UUID_STR_LEN];
    char tenants[BULK_CHUNK][72]; /* retry: each job's tenant ("": none) ... */
    int max_queued[BULK_CHUNK];   /* ... and its max_queued (0: none), read on the loop */
    struct job jobs[BULK_CHUNK];
    bool done[BULK_CHUNK];
    /* retry: the tenant whose max_queued stopped it, and why */
    char quota_tenant[72];
    int quota_max;
    int64_t quota_queued;
    bool quota_stop;
    struct err quota_err;
};

static void bulk_next(struct bulk *b);

/* Retry: job i's tenant would have one more queued job; ERR_QUOTA when that passes its
   max_queued. seen/queued: the chunk's tenants counted so far (one count each, then +1 a job);
   *slot: where job i is counted (-1: not counted, no limit). */
static int bulk_quota(struct bulk *b, struct store *st, size_t i, size_t *seen, size_t *nseen,
                      int64_t *queued, long *slot, struct err *e)
{
    *slot = -1;
    if (!b->max_queued[i]) return 0;
    size_t k = 0;
    while (k < *nseen && strcmp(b->tenants[seen[k]], b->tenants[i])) k++;
    if (k < *nseen) {
        queued[k]++;
    } else {
        int rc = store_tenant_waiting(st, b->tenants[i], &queued[k], e);
        if (rc) return rc;
        queued[k]++; /* and job i */
        seen[(*nseen)++] = i;
    }
    *slot = (long)k;
    if (queued[k] <= b->max_queued[i]) return 0;
    memcpy(b->quota_tenant, b->tenants[i], sizeof(b->quota_tenant));
    b->quota_max = b->max_queued[i];
    b->quota_queued = queued[k] - 1;
    return err_field(e, ERR_QUOTA, "max_queued",
                     "tenant '%s' may have at most %d queued jobs (max_queued); it has %lld, "
                     "and retrying job '%s' would make %lld",
                     b->tenants[i], b->max_queued[i], (long long)(queued[k] - 1), b->ids[i],
                     (long long)queued[k]);
}

static int bulk_write(struct store *st, void *arg, struct err *e)
{
    struct bulk *b = arg;
    int64_t now = time_now_ms();
    size_t seen[BULK_CHUNK], nseen = 0;
    int64_t queued[BULK_CHUNK];
    for (size_t i = 0; i < b->n; i++) {
        struct err ce = ERR_INIT;
        long slot = -1;
        int rc = b->retry ? bulk_quota(b, st, i, seen, &nseen, queued, &slot, &ce) : 0;
        if (rc == ERR_QUOTA) { /* the walk stops here: what it retried before is kept */
            b->quota_stop = true;
            b->quota_err = ce;
            b->n = i;
            return 0;
        }
        if (!rc)
            rc = b->retry ? store_job_retry(st, b->ids[i], now, &b->jobs[i], &ce)
                          : store_job_cancel(st, b->ids[i], now, &b->jobs[i], &ce);
        b->done[i] = rc == 0;
        if (rc == ERR_CONFLICT || rc == ERR_NOTFOUND) { /* moved or gone meanwhile */
            if (slot >= 0) queued[slot]--;
            continue;
        }
        if (rc) { /* the chunk is undone with its savepoint */
            for (size_t k = 0; k <= i; k++)
                if (b->done[k]) job_release(&b->jobs[k]);
            memset(b->done, 0, sizeof(b->done));
            *e = ce;
            return rc;
        }
    }
    return 0;
}

static void bulk_finish(struct bulk *b, int rc, const struct err *e)
{
    const char *verb = b->retry ? "retried" : "cancelled";
    if (b->r->gone)
        http_req_drop(b->r);
    else if (rc == ERR_QUOTA)
        http_reply_json(b->r, 429,
                        json_pack("{s:{s:s, s:s, s:s, s:s, s:i, s:I, s:I}}", "error", "code",
                                  "quota", "message", e->msg, "limit", "max_queued", "tenant",
                                  b->quota_tenant, "max", b->quota_max, "queued",
                                  (json_int_t)b->quota_queued, verb, (json_int_t)b->done_n));
    else if (rc)
        http_reply_error(b->r, e->code, e->field[0] ? e->field : NULL,
                         "%s (%lld jobs were %s before)", e->msg, (long long)b->done_n, verb);
    else
        http_reply_json(b->r, 200, json_pack("{s:I}", verb, (json_int_t)b->done_n));
    free(b);
}

static void bulk_done(void *arg, int rc, const struct err *e)
{
    struct bulk *b = arg;
    for (size_t i = 0; i < b->n; i++) {
        if (!b->done[i]) continue;
        fleet_job_changed(srv(b->r)->fleet, &b->jobs[i], false);
        job_release(&b->jobs[i]);
        b->done_n++;
    }
    if (rc || b->quota_stop) {
        bulk_finish(b, rc ? rc : ERR_QUOTA, rc ? e : &b->quota_err);
        return;
    }
    bulk_next(b);
}

static void bulk_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bulk_next(arg);
}

static void bulk_next(struct bulk *b)
{
    struct err e = ERR_INIT;
    for (;;) {
        if (!b->states && !b->retry && (b->found || b->walks == 1) && b->walks < BULK_WALKS) {
            b->states = b->all; /* again: what went back meanwhile */
            b->walks++;
            b->found = false;
        }
        if (b->r->gone || !b->states) break;
        b->f.state = __builtin_ctz(b->states);
        b->f.after = b->after[0] ? b->after : NULL;
        b->f.limit = BULK_CHUNK;
        struct job_list l;
        if (store_job_list(srv(b->r)->reads, &b->f, &l, &e)) {
            bulk_finish(b, e.code, &e);
            return;
        }
        b->n = l.n;
        for (size_t i = 0; i < l.n; i++) {
            const char *t = l.jobs[i].tenant;
            memcpy(b->ids[i], l.jobs[i].id, UUID_STR_LEN);
            snprintf(b->tenants[i], sizeof(b->tenants[i]), "%s", t ? t : "");
            b->max_queued[i] = b->retry && t ? tenants_max_queued(srv(b->r), t) : 0;
        }
        job_list_release(&l);
        if (!b->n) { /* this state is done */
            b->states &= b->states - 1;
            b->after[0] = '\0';
            if (b->step_ms) {
                struct timeval tv = {b->step_ms / 1000, (b->step_ms % 1000) * 1000};
                event_base_once(srv(b->r)->base, -1, EV_TIMEOUT, bulk_resume, b, &tv);
                return;
            }
            continue;
        }
        b->found = true;
        memcpy(b->after, b->ids[b->n - 1], UUID_STR_LEN);
        commit_submit(srv(b->r)->commit, bulk_write, bulk_done, b);
        return;
    }
    bulk_finish(b, 0, &e);
}

static int by_filter(struct http_req *r, bool retry)
{
    struct bulk *b = xcalloc(1, sizeof(*b));
    b->r = r;
    b->retry = retry;
    unsigned allowed = retry ? RETRYABLE : JOB_UNFINISHED_MASK;
    const char *verb = retry ? "retry" : "cancel";
    struct err e = ERR_INIT;
    if (parse_filter(r, &b->f, b->label, sizeof(b->label), &e)) {
        free(b);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (http_query(r, "after") || http_query(r, "limit")) {
        free(b);
        http_reply_error(r, ERR_INVALID, http_query(r, "after") ? "after" : "limit",
                         "a %s by filter takes every job the filter finds: no %s", verb,
                         http_query(r, "after") ? "after" : "limit");
        return HTTP_DONE;
    }
    if (!b->f.queue && !b->f.service && !b->f.name && !b->f.agent && !b->f.label_key) {
        free(b);
        http_reply_error(r, ERR_INVALID, "queue",
                         "give a filter (queue, service, label, name or agent): a %s "
                         "without one would %s every job", verb, verb);
        return HTTP_DONE;
    }
    if (b->f.state >= 0 && !((1u << b->f.state) & allowed)) {
        free(b);
        http_reply_error(r, ERR_INVALID, "state", "state must be one a job can be %s in: %s",
                         retry ? "retried" : "cancelled",
                         retry ? "failed or cancelled" : "blocked, queued, leased or running");
        return HTTP_DONE;
    }
    b->all = b->states = b->f.state >= 0 ? 1u << b->f.state : allowed;
    b->walks = 1;
    const char *step = getenv("DROVER_TEST_BULK_STEP_MS");
    b->step_ms = step ? strtoll(step, NULL, 10) : 0;
    bulk_next(b);
    return HTTP_DEFERRED;
}

int api_jobs_cancel_many(struct http_req *r)
{
    return by_filter(r, false);
}

int api_jobs_retry_many(struct http_req *r)
{
    return by_filter(r, true);
}

/* ---- retry: a failed or cancelled job queued again for one more attempt ---- */

static int retry_write(struct store *st, void *arg, struct err *e)
{
    struct cancel *c = arg;
    int rc = store_job_retry(st, c->id, time_now_ms(), &c->job, e);
    if (rc || !c->max_queued)
        return rc;
    /* queued again: it counts against its tenant's max_queued, as a new job would */
    rc = store_tenant_waiting(st, c->tenant, &c->queued, e);
    if (rc || c->queued <= c->max_queued)
        return rc;
    job_release(&c->job); /* undone with the savepoint */
    job_init(&c->job);
    return err_field(e, ERR_QUOTA, "max_queued",
                     "tenant '%s' may have at most %d queued jobs (max_queued); it has %lld, "
                     "and this retry would make %lld",
                     c->tenant, c->max_queued, (long long)(c->queued - 1), (long long)c->queued);
}

static void retry_done(void *arg, int rc, const struct err *e)
{
    struct cancel *c = arg;
    if (rc != ERR_QUOTA || c->r->gone) {
        cancel_done(arg, rc, e); /* answered as a cancel is */
        return;
    }
    json_t *inner = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I}", "code", "quota", "message", e->msg,
                              "limit", "max_queued", "tenant", c->tenant, "max", c->max_queued,
                              "queued", (json_int_t)(c->queued - 1));
    http_reply_json(c->r, 429, json_pack("{s:o}", "error", inner));
    job_release(&c->job);
    free(c);
}

int api_jobs_retry(struct http_req *r)
{
    char id[UUID_STR_LEN];
    struct err e = ERR_INIT;
    struct job j;
    if (resolve_id(r, id, &e) || store_job_get_run(srv(r)->reads, id, &j, &e))
        return archived_or_err(r, &e, false, NULL, "retried");
    struct cancel *c = xcalloc(1, sizeof(*c));
    c->r = r;
    snprintf(c->id, sizeof(c->id), "%s", id);
    snprintf(c->tenant, sizeof(c->tenant), "%s", j.tenant ? j.tenant : "");
    c->max_queued = j.tenant ? tenants_max_queued(srv(r), j.tenant) : 0;
    job_release(&j);
    commit_submit(srv(r)->commit, retry_write, retry_done, c);
    return HTTP_DEFERRED;
}

/* ---- log ---- */

int api_jobs_log(struct http_req *r)
{
    struct err e = ERR_INIT;
    struct job j;
    long offset, follow, attempt, tail;
    const char *stream = http_query(r, "stream");
    if (stream && strcmp(stream, "stdout") && strcmp(stream, "stderr")) {
        http_reply_error(r, ERR_INVALID, "stream", "stream must be stdout or stderr");
        return HTTP_DONE;
    }
    if (http_query_long(r, "offset", 0, LONG_MAX, 0, &offset, &e) ||
        http_query_long(r, "follow", 0, 1, 0, &follow, &e) ||
        http_query_long(r, "attempt", 1, INT_MAX, 0, &attempt, &e) ||
        http_query_long(r, "tail", 1, LOGS_TAIL_MAX, 0, &tail, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (tail && offset) {
        http_reply_error(r, ERR_INVALID, "tail", "give offset or tail, not both");
        return HTTP_DONE;
    }
    if (find_job(r, &j, &e)) {
        struct logs_query aq = {
            .stream = stream && !strcmp(stream, "stderr"),
            .attempt = (int)attempt,
            .pinned = attempt > 0,
            .offset = offset,
            .tail = tail,
        };
        return archived_or_err(r, &e, true, &aq, NULL);
    }
    /* followed, the attempt a queued (or blocked) job runs next may be waited for */
    bool next = follow && attempt == (long)j.attempt + 1 && job_state_waiting(j.state);
    if (attempt > j.attempt && !next) {
        bool ended = attempt == (long)j.attempt + 1 && job_state_terminal(j.state);
        err_field(&e, ERR_NOTFOUND, "attempt",
                  "job '%s' has no attempt %ld: it has run %d attempt%s so far%s", j.id, attempt,
                  j.attempt, j.attempt == 1 ? "" : "s", ended ? ", and it has ended" : "");
        job_release(&j);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    struct logs_query q = {
        .job = j.id,
        .stream = stream && !strcmp(stream, "stderr"),
        .attempt = attempt ? (int)attempt : j.attempt,
        .pinned = attempt > 0,
        .follow = follow,
        .offset = offset,
        .tail = tail,
    };
    logs_send(srv(r)->logs, r, &q);
    job_release(&j);
    return HTTP_DEFERRED;
}
