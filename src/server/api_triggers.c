/*
 * api_triggers.c - /v1/triggers (docs/api.md "Triggers", "Schedules"): upload triggers and
 * schedules made, listed, read with their recent fires, changed, paused, fired and deleted. A trigger belongs to the token
 * that made it (its jobs are that token's); a client token sees only its own. The template is
 * checked whole when the trigger is made, as the submission of an object under its prefix.
 */
#include <stdlib.h>
#include <string.h>

#include "blob/blob.h"
#include "common/cron.h"
#include "common/timeutil.h"
#include "common/tz.h"
#include "common/xalloc.h"
#include "job/job.h"
#include "job/spec.h"
#include "server/retention.h"
#include "server/server.h"
#include "server/triggers.h"

#define FIRES_SHOWN 50 /* a trigger's most recent fires in GET /v1/triggers/{id} */
#define INPUT_MAX 200
#define LIST_DEFAULT 100 /* GET /v1/triggers: triggers a page */
#define LIST_MAX 1000

static struct server *srv(struct http_req *r)
{
    return r->app;
}

static json_t *trigger_json(struct server *s, const struct trigger_rec *t)
{
    json_t *tmpl = json_loads(t->template_, 0, NULL);
    json_t *j =
        json_pack("{s:s, s:o, s:o, s:o, s:o, s:o}", "id", t->id, "prefix",
                  t->schedule ? json_null() : json_string(t->prefix), "owner",
                  t->owner ? json_string(t->owner) : json_null(), "input",
                  t->input ? json_string(t->input) : json_null(), t->workflow ? "workflow" : "job",
                  tmpl ? tmpl : json_null(), "created_at", job_time_json(t->created_at));
    json_object_set_new(j, "schedule", t->schedule ? json_string(t->schedule) : json_null());
    json_object_set_new(
        j, "overlap", !t->schedule ? json_null() : json_string(t->skip_overlap ? "skip" : "allow"));
    json_object_set_new(
        j, "timezone", !t->schedule ? json_null() : json_string(t->timezone ? t->timezone : "UTC"));
    struct cron c;
    const struct tz *zone = NULL;
    int64_t next = -1;
    if (t->schedule && !cron_parse(t->schedule, "schedule", &c, NULL) &&
        (!t->timezone || !triggers_zone(s->triggers, t->timezone, &zone, NULL)))
        next = cron_next_tz(&c, zone, time_now_ms());
    json_object_set_new(j, "next_at",
                        next >= 0 && !t->paused_at ? job_time_json(next) : json_null());
    json_object_set_new(j, "paused", json_boolean(t->paused_at != 0));
    json_object_set_new(j, "paused_at", t->paused_at ? job_time_json(t->paused_at) : json_null());
    json_object_set_new(j, "updated_at",
                        t->updated_at ? job_time_json(t->updated_at) : json_null());
    return j;
}

static json_t *fire_json(const struct trigger_fire *f, bool workflow)
{
    const char *state = f->target ? "fired" : f->error ? "failed" : "pending";
    json_t *j = json_pack("{s:s, s:o, s:o, s:o}", "state", state, workflow ? "workflow" : "job",
                          f->target ? json_string(f->target) : json_null(), "error",
                          f->error ? json_string(f->error) : json_null(), "fired_at",
                          f->fired_at ? job_time_json(f->fired_at) : json_null());
    if (!f->sha256[0]) { /* a schedule's: its time */
        json_object_set_new(j, "time", json_string(f->uri));
    } else {
        json_object_set_new(j, "uri", json_string(f->uri));
        json_object_set_new(j, "sha256", json_string(f->sha256));
        json_object_set_new(j, "seen_at", job_time_json(f->created_at));
    }
    return j;
}

/* A change's answer: the trigger as it is then (with `status`), the error, or nothing to a
   client gone; t released. */
static void answer_trigger(struct http_req *r, int rc, const struct err *e, int status,
                           struct trigger_rec *t)
{
    if (r->gone)
        http_req_drop(r);
    else if (rc)
        http_reply_err(r, e);
    else
        http_reply_json(r, status, trigger_json(srv(r), t));
    trigger_rec_release(t);
}

/* ---- create ---- */

/* "s3://bucket/" or "s3://bucket/key-prefix"; "s3://bucket" is made "s3://bucket/". */
static int prefix_check(json_t *v, char **out, struct err *e)
{
    if (!v || json_is_null(v))
        return err_field(e, ERR_INVALID, "prefix",
                         "prefix (s3://BUCKET/ or s3://BUCKET/KEY-PREFIX: an upload "
                         "trigger) or schedule (a cron expression) is required");
    const char *p = json_string_value(v), *why = NULL;
    if (!p || strncmp(p, "s3://", 5))
        return err_field(e, ERR_INVALID, "prefix",
                         "prefix must be a string s3://BUCKET/ or s3://BUCKET/KEY-PREFIX");
    char *norm = strchr(p + 5, '/') ? xstrdup(p) : xasprintf("%s/", p);
    /* an object name under the prefix must be possible: checked as a URI with a key after */
    char *probe = xasprintf("%sx", norm);
    if (!spec_uri_valid(probe, false, &why)) {
        free(probe);
        free(norm);
        return err_field(e, ERR_INVALID, "prefix", "invalid prefix '%s': %s", p, why);
    }
    free(probe);
    size_t bl = strcspn(norm + 5, "/");
    if (bl == strlen(RETENTION_BUCKET) && !strncmp(norm + 5, RETENTION_BUCKET, bl)) {
        free(norm);
        return err_field(e, ERR_DENIED, "prefix",
                         "bucket '%s' is reserved for drover's archive of finished jobs: this "
                         "token may not read it",
                         RETENTION_BUCKET);
    }
    *out = norm;
    return 0;
}

/* A schedule's "schedule", "timezone" and "overlap" into t. */
static int schedule_check(struct http_req *r, json_t *b, struct trigger_rec *t, struct err *e)
{
    json_t *v = json_object_get(b, "schedule"), *ov = json_object_get(b, "overlap");
    const char *text = json_string_value(v);
    if (!text)
        return err_field(e, ERR_INVALID, "schedule",
                         "schedule must be a cron expression (a string such as \"*/5 * * * *\")");
    struct cron c;
    int rc = cron_parse(text, "schedule", &c, e);
    if (rc) return rc;
    if (json_object_get(b, "input"))
        return err_field(e, ERR_INVALID, "input",
                         "input is an upload trigger's: a schedule has no object to pass");
    json_t *tzv = json_object_get(b, "timezone");
    const char *zone = tzv && !json_is_null(tzv) ? json_string_value(tzv) : "UTC";
    const struct tz *z;
    if (!zone)
        return err_field(e, ERR_INVALID, "timezone",
                         "timezone must be a time zone name such as \"Europe/Paris\" (default "
                         "\"UTC\")");
    if ((rc = triggers_zone(srv(r)->triggers, zone, &z, e))) return rc;
    const char *o = ov && !json_is_null(ov) ? json_string_value(ov) : "allow";
    if (!o || (strcmp(o, "allow") && strcmp(o, "skip")))
        return err_field(e, ERR_INVALID, "overlap",
                         "overlap must be \"allow\" (a fire runs whatever runs already) or "
                         "\"skip\" (a fire is skipped while the run before it has not finished)");
    t->schedule = xstrdup(text);
    t->timezone = strcmp(zone, "UTC") ? xstrdup(zone) : NULL;
    t->skip_overlap = !strcmp(o, "skip");
    t->prefix = xstrdup("");
    return 0;
}

/* The fields of a create's or a change's body into t: all but its id, owner and times. */
static int body_fields(struct http_req *r, struct trigger_rec *t, struct err *e)
{
    json_t *b = r->body;
    if (!json_is_object(b))
        return err_set(e, ERR_INVALID,
                       "the body must be an object {\"prefix\" or \"schedule\", \"job\" or "
                       "\"workflow\", ...}");
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v)
    {
        if (strcmp(k, "prefix") && strcmp(k, "job") && strcmp(k, "workflow") &&
            strcmp(k, "input") && strcmp(k, "schedule") && strcmp(k, "overlap") &&
            strcmp(k, "timezone"))
            return err_field(e, ERR_INVALID, k,
                             "unknown field '%s' (a trigger has prefix and input, or schedule, "
                             "timezone and overlap, and job or workflow)",
                             k);
    }
    bool sched = json_object_get(b, "schedule") != NULL;
    if (sched && json_object_get(b, "prefix"))
        return err_field(e, ERR_INVALID, "schedule",
                         "give either prefix (an upload trigger) or schedule, not both");
    if (!sched && json_object_get(b, "overlap"))
        return err_field(e, ERR_INVALID, "overlap", "overlap is a schedule's: give schedule");
    if (!sched && json_object_get(b, "timezone"))
        return err_field(e, ERR_INVALID, "timezone", "timezone is a schedule's: give schedule");
    int rc = sched ? schedule_check(r, b, t, e)
                   : prefix_check(json_object_get(b, "prefix"), &t->prefix, e);
    if (rc) return rc;
    json_t *job = json_object_get(b, "job"), *wf = json_object_get(b, "workflow");
    if (job && wf)
        return err_field(e, ERR_INVALID, "workflow", "give either job or workflow, not both");
    if (!job && !wf)
        return err_field(e, ERR_INVALID, "job",
                         "job (a job spec) or workflow (a workflow body) is required");
    if (job && !json_is_object(job))
        return err_field(e, ERR_INVALID, "job", "job must be a job spec (an object)");
    if (wf && !json_is_object(wf))
        return err_field(e, ERR_INVALID, "workflow",
                         "workflow must be a workflow body (an object)");
    t->workflow = wf != NULL;
    json_t *in = json_object_get(b, "input");
    if (in && !json_is_null(in)) {
        const char *s = json_string_value(in);
        if (!s || !*s || strlen(s) > INPUT_MAX)
            return err_field(e, ERR_INVALID, "input",
                             "input must be the name of an input argument (%s), 1-%d bytes",
                             wf ? "NODE.ARG" : "ARG", INPUT_MAX);
        t->input = xstrdup(s);
    }
    t->template_ = json_dumps(wf ? wf : job, JSON_COMPACT);
    return 0;
}

/* The whole submission of t (its owner's), checked as its next fire's would be. */
static int template_check(struct http_req *r, const struct trigger_rec *t, struct err *e)
{
    char example[32];
    time_format_rfc3339(time_now_ms(), example, sizeof(example));
    char *uri = t->schedule ? xstrdup(example) : xasprintf("%sexample", t->prefix);
    struct trigger_submit *ts = NULL;
    int rc = triggers_build(
        srv(r), t, uri,
        t->schedule ? "" : "0000000000000000000000000000000000000000000000000000000000000000",
        &ts, e);
    free(uri);
    trigger_submit_free(ts);
    return rc;
}

static int body_parse(struct http_req *r, struct trigger_rec *t, struct err *e)
{
    int rc = body_fields(r, t, e);
    if (rc) return rc;
    t->owner = xstrdup(r->token_name);
    t->created_at = time_now_ms();
    uuid7_new(t->id);
    return template_check(r, t, e);
}

struct create_op {
    struct http_req *r;
    struct trigger_rec t;
};

static int create_write(struct store *st, void *arg, struct err *e)
{
    struct create_op *op = arg;
    return store_trigger_insert(st, &op->t, e);
}

static void create_done(void *arg, int rc, const struct err *e)
{
    struct create_op *op = arg;
    if (!rc && op->t.schedule) triggers_schedules_changed(srv(op->r)->triggers);
    answer_trigger(op->r, rc, e, 201, &op->t);
    free(op);
}

int api_triggers_create(struct http_req *r)
{
    struct create_op *op = xcalloc(1, sizeof(*op));
    struct err e = ERR_INIT;
    op->r = r;
    if (body_parse(r, &op->t, &e)) {
        trigger_rec_release(&op->t);
        free(op);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    commit_submit(srv(r)->commit, create_write, create_done, op);
    return HTTP_DEFERRED;
}

/* ---- read ---- */

int api_triggers_list(struct http_req *r)
{
    struct err e = ERR_INIT;
    struct trigger_rec *t = NULL;
    size_t n = 0;
    const char *after = http_query(r, "after");
    long limit;
    if (http_query_long(r, "limit", 1, LIST_MAX, LIST_DEFAULT, &limit, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (after && !uuid_valid(after)) {
        http_reply_error(r, ERR_INVALID, "after", "after must be a trigger id (the 'next' cursor)");
        return HTTP_DONE;
    }
    int rc =
        store_trigger_list(srv(r)->reads, api_caller_owner(r), after, (int)limit, &t, &n, &e);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (!rc) json_array_append_new(arr, trigger_json(srv(r), &t[i]));
        trigger_rec_release(&t[i]);
    }
    free(t);
    if (rc) {
        json_decref(arr);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    json_t *next =
        n == (size_t)limit
            ? json_string(json_string_value(json_object_get(json_array_get(arr, n - 1), "id")))
            : json_null();
    http_reply_json(r, 200, json_pack("{s:o, s:o}", "triggers", arr, "next", next));
    return HTTP_DONE;
}

/* The trigger of whole id `id`, if the caller may see it (else 404, as if there were none). */
static int find_trigger(struct http_req *r, struct store *st, const char *id, struct trigger_rec *t,
                        struct err *e)
{
    if (!uuid_valid(id)) return err_set(e, ERR_NOTFOUND, "trigger '%s' not found", id);
    int rc = store_trigger_get(st, id, t, e);
    if (rc) return rc;
    const char *owner = api_caller_owner(r);
    if (owner && (!t->owner || strcmp(owner, t->owner))) {
        trigger_rec_release(t);
        return err_set(e, ERR_NOTFOUND, "trigger '%s' not found", id);
    }
    return 0;
}

/* The route's trigger ({id}: a whole id or a unique prefix), if the caller may see it. */
static int route_trigger(struct http_req *r, struct trigger_rec *t, struct err *e)
{
    char id[UUID_STR_LEN];
    int rc = api_resolve_id(r, STORE_TRIGGER, r->params[0], id, e);
    return rc ? rc : find_trigger(r, srv(r)->reads, id, t, e);
}

int api_triggers_get(struct http_req *r)
{
    struct err e = ERR_INIT;
    struct trigger_rec t;
    struct store *st = srv(r)->reads;
    if (route_trigger(r, &t, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    struct trigger_fire *f = NULL;
    size_t n = 0;
    int rc = store_trigger_fires(st, t.id, FIRES_SHOWN, &f, &n, &e);
    json_t *fires = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(fires, fire_json(&f[i], t.workflow));
        trigger_fire_release(&f[i]);
    }
    free(f);
    if (rc) {
        json_decref(fires);
        trigger_rec_release(&t);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    json_t *j = trigger_json(srv(r), &t);
    json_object_set_new(j, "fires", fires);
    trigger_rec_release(&t);
    http_reply_json(r, 200, j);
    return HTTP_DONE;
}

/* ---- change ---- */

/* Refuses to turn a schedule into an upload trigger or a job's trigger into a workflow's
   (their fires' history would not read right), and back. */
static int same_kind(const struct trigger_rec *was, const struct trigger_rec *t, struct err *e)
{
    if (!was->schedule != !t->schedule)
        return err_field(e, ERR_CONFLICT, was->schedule ? "prefix" : "schedule",
                         "trigger '%s' is %s: it stays one (delete it and make %s)", was->id,
                         was->schedule ? "a schedule" : "an upload trigger",
                         was->schedule ? "an upload trigger" : "a schedule");
    if (was->workflow != t->workflow)
        return err_field(e, ERR_CONFLICT, t->workflow ? "workflow" : "job",
                         "trigger '%s' submits a %s: it stays so (delete it and make one that "
                         "submits a %s)",
                         was->id, was->workflow ? "workflow" : "job",
                         was->workflow ? "job" : "workflow");
    return 0;
}

struct update_op {
    struct http_req *r;
    struct trigger_rec t; /* as it is to be; as it is once changed */
};

static int update_write(struct store *st, void *arg, struct err *e)
{
    struct update_op *op = arg;
    struct trigger_rec was;
    int rc = find_trigger(op->r, st, op->t.id, &was, e); /* deleted or changed meanwhile? */
    if (!rc) rc = same_kind(&was, &op->t, e);
    if (!rc) {
        op->t.paused_at = was.paused_at; /* for the answer */
        op->t.resumed_at = was.resumed_at;
        rc = store_trigger_update(st, &op->t, op->r->token_name, e);
    }
    trigger_rec_release(&was);
    return rc;
}

static void update_done(void *arg, int rc, const struct err *e)
{
    struct update_op *op = arg;
    struct server *s = srv(op->r);
    if (!rc) triggers_schedules_changed(s->triggers); /* the leader (this one) reads them again */
    answer_trigger(op->r, rc, e, 200, &op->t);
    free(op);
}

/* PUT: the trigger as the body gives it (as a create's), its id, owner, creation, pause and
   fires kept; a schedule's new times count from the change. */
int api_triggers_update(struct http_req *r)
{
    struct err e = ERR_INIT;
    struct trigger_rec was;
    if (route_trigger(r, &was, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    struct update_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    int rc = body_fields(r, &op->t, &e);
    if (!rc) rc = same_kind(&was, &op->t, &e);
    if (!rc) {
        memcpy(op->t.id, was.id, UUID_STR_LEN);
        op->t.owner = was.owner ? xstrdup(was.owner) : NULL; /* its jobs stay its owner's */
        op->t.created_at = was.created_at;
        op->t.updated_at = time_now_ms();
        rc = template_check(r, &op->t, &e);
    }
    trigger_rec_release(&was);
    if (rc) {
        trigger_rec_release(&op->t);
        free(op);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    commit_submit(srv(r)->commit, update_write, update_done, op);
    return HTTP_DEFERRED;
}

/* ---- delete ---- */

struct delete_op {
    struct http_req *r;
    char id[UUID_STR_LEN];
    struct trigger_rec t;
};

static int delete_write(struct store *st, void *arg, struct err *e)
{
    struct delete_op *op = arg;
    int rc = find_trigger(op->r, st, op->id, &op->t, e);
    return rc ? rc : store_trigger_delete(st, op->id, op->r->token_name, e);
}

static void delete_done(void *arg, int rc, const struct err *e)
{
    struct delete_op *op = arg;
    if (!rc && op->t.schedule) triggers_schedules_changed(srv(op->r)->triggers);
    answer_trigger(op->r, rc, e, 200, &op->t);
    free(op);
}

int api_triggers_delete(struct http_req *r)
{
    struct err e = ERR_INIT;
    char id[UUID_STR_LEN];
    if (api_resolve_id(r, STORE_TRIGGER, r->params[0], id, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    struct delete_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    memcpy(op->id, id, UUID_STR_LEN);
    commit_submit(srv(r)->commit, delete_write, delete_done, op);
    return HTTP_DEFERRED;
}

/* ---- a schedule's fire now ---- */

struct fire_now_op {
    struct http_req *r;
    char id[UUID_STR_LEN];
    char time[32];
    struct trigger_submit *ts;
    bool workflow;
};

/* Writer thread: a fire at the time of the request, marked with what it submits, and that
   stored, in one transaction (as the leader's fires are; nothing of it when one fails). */
static int fire_now_write(struct store *st, void *arg, struct err *e)
{
    struct fire_now_op *op = arg;
    int added = 0;
    int rc = store_trigger_fire_add(st, op->id, op->time, "", time_now_ms(), &added, e);
    if (rc) return rc;
    if (!added) /* its trigger was deleted meanwhile, or this very ms fired already */
        return err_set(e, ERR_CONFLICT, "trigger '%s' cannot fire for %s: it is gone, or it "
                                        "fired for that time already", op->id, op->time);
    /* ours among its newest, by its time (its key: another server's fire of the schedule
       may have committed meanwhile, with a higher id) */
    struct trigger_fire *f = NULL;
    size_t n = 0;
    if ((rc = store_trigger_fires(st, op->id, 8, &f, &n, e))) return rc;
    int64_t fire = 0;
    for (size_t i = 0; i < n; i++) {
        if (!fire && !strcmp(f[i].uri, op->time)) fire = f[i].id;
        trigger_fire_release(&f[i]);
    }
    free(f);
    if (!fire)
        return err_set(e, ERR_UNAVAILABLE, "the fire for %s was not found: try again", op->time);
    return triggers_submit_write(st, fire, op->ts, NULL, e);
}

static void fire_now_done(void *arg, int rc, const struct err *e)
{
    struct fire_now_op *op = arg;
    if (!rc) triggers_submit_committed(srv(op->r), op->ts);
    if (op->r->gone)
        http_req_drop(op->r);
    else if (rc)
        http_reply_err(op->r, e);
    else
        http_reply_json(op->r, 201,
                        json_pack("{s:s, s:s, s:s}", "time", op->time, "state", "fired",
                                  op->workflow ? "workflow" : "job",
                                  trigger_submit_target(op->ts)));
    trigger_submit_free(op->ts);
    free(op);
}

int api_triggers_fire(struct http_req *r)
{
    struct err e = ERR_INIT;
    struct trigger_rec t;
    if (route_trigger(r, &t, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (!t.schedule) {
        err_set(&e, ERR_CONFLICT,
                "trigger '%s' is an upload trigger: it fires for the objects created under %s",
                t.id, t.prefix);
        trigger_rec_release(&t);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    struct fire_now_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    op->workflow = t.workflow;
    memcpy(op->id, t.id, UUID_STR_LEN);
    time_format_rfc3339(time_now_ms(), op->time, sizeof(op->time));
    int rc = triggers_build(srv(r), &t, op->time, "", &op->ts, &e);
    trigger_rec_release(&t);
    if (rc) {
        free(op);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    commit_submit(srv(r)->commit, fire_now_write, fire_now_done, op);
    return HTTP_DEFERRED;
}

/* ---- pause and resume ---- */

struct pause_op {
    struct http_req *r;
    char id[UUID_STR_LEN];
    bool paused;
    struct trigger_rec t;
};

static int pause_write(struct store *st, void *arg, struct err *e)
{
    struct pause_op *op = arg;
    bool changed;
    int rc = find_trigger(op->r, st, op->id, &op->t, e);
    if (!rc)
        rc = store_trigger_pause(st, op->id, op->paused, time_now_ms(), op->r->token_name,
                                 &changed, e);
    trigger_rec_release(&op->t);
    return rc ? rc : store_trigger_get(st, op->id, &op->t, e); /* as it is now */
}

static void pause_done(void *arg, int rc, const struct err *e)
{
    struct pause_op *op = arg;
    struct server *s = srv(op->r);
    if (!rc) {
        triggers_schedules_changed(s->triggers); /* the leader (this one) reads them again */
        if (!op->paused) triggers_kick(s->triggers); /* the fires that waited */
    }
    answer_trigger(op->r, rc, e, 200, &op->t);
    free(op);
}

static int pause_or_resume(struct http_req *r, bool paused)
{
    struct err e = ERR_INIT;
    char id[UUID_STR_LEN];
    if (api_resolve_id(r, STORE_TRIGGER, r->params[0], id, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    struct pause_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    op->paused = paused;
    memcpy(op->id, id, UUID_STR_LEN);
    commit_submit(srv(r)->commit, pause_write, pause_done, op);
    return HTTP_DEFERRED;
}

int api_triggers_pause(struct http_req *r)
{
    return pause_or_resume(r, true);
}

int api_triggers_resume(struct http_req *r)
{
    return pause_or_resume(r, false);
}
