/*
 * triggers.c - upload triggers: pending fires submitted by the leader, and, with a remote
 * object store, the prefixes listed for objects uploaded past drover (triggers.h).
 *
 * A fire's submission is one committer op: the fire marked with its target and the job (or
 * workflow) inserted, in one savepoint. A fire that can never submit (its template no
 * longer expands, its owner's token is gone) is marked failed with the reason; one that
 * cannot submit now (a quota, the store unavailable) stays pending and that fire alone is
 * tried again after RETRY_MS (`waiting`), so one tenant at its quota does not hold back
 * another's fires (unless more than DRAIN_BATCH of them wait at once).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob/blob.h"
#include "common/buf.h"
#include "common/cron.h"
#include "common/hmap.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/tz.h"
#include "common/xalloc.h"
#include "job/spec.h"
#include "server/fleet.h"
#include "server/offload.h"
#include "server/retention.h"
#include "server/server.h"
#include "server/services.h"
#include "server/tenants.h"
#include "server/triggers.h"

#define DRAIN_BATCH 64          /* pending fires read at a time */
#define SCHEDULES_READ_MS 10000 /* the leader reads the schedules again at least this often */
#define SCHEDULE_KEEP 100       /* a schedule's most recent fires kept (shown, and its last) */
#define RETRY_MS 5000           /* after a fire could not be submitted for now */
#define SCHEDULE_ARM_MS 1100    /* a time sooner than this (the tick's second) gets a timer */
#define SCAN_MAX_OBJECTS 100000 /* objects of one prefix looked at per listing */

struct triggers {
    struct server *s;
    int64_t scan_ms;
    int64_t next_scan_ms;
    struct hmap waiting; /* fire id -> int64_t *: not tried again before then */
    int64_t hold_ms;     /* tests: a fire waits this long before it is submitted */
    struct log_repeat fires_log; /* reading the pending fires fails */
    size_t inflight;     /* submissions of the current drain not yet done */
    bool more;           /* the last drain read a full batch, or a kick came meanwhile */
    bool scanning;
    bool caught_up;         /* the first listing (any object store) is done or under way */
    struct hmap schedules;  /* trigger id -> struct schedule *: the leader's schedules */
    struct hmap zones;      /* time zone name -> struct tz *, loaded once */
    int64_t schedules_next; /* ms: when they are read again */
    bool recording;         /* schedules' fires being written */
    struct event *due_timer; /* the next schedule's time, when it comes before the next tick */
};

struct schedule {
    struct cron cron;
    const struct tz *zone; /* NULL: UTC */
    int64_t last;          /* ms: its newest fire recorded, else its creation */
    int64_t updated_at;    /* ms: the trigger's change it was read at (0: none) */
    bool seen;             /* in the latest reading */
};

/* Fire `id` failed for now: tried again RETRY_MS from now. */
static void fire_wait(struct triggers *t, int64_t id, int64_t now)
{
    char key[24];
    snprintf(key, sizeof(key), "%lld", (long long)id);
    int64_t *until = hmap_get(&t->waiting, key);
    if (!until) hmap_put(&t->waiting, key, until = xmalloc(sizeof(*until)));
    *until = now + RETRY_MS;
}

/* True while fire `id` waits; a wait that is over is forgotten. */
static bool fire_waits(struct triggers *t, int64_t id, int64_t now)
{
    char key[24];
    snprintf(key, sizeof(key), "%lld", (long long)id);
    int64_t *until = hmap_get(&t->waiting, key);
    if (!until || now < *until) return until != NULL;
    free(hmap_del(&t->waiting, key));
    return false;
}

/* Forgets waits long over (fires submitted since by another leader, or deleted). */
static void waits_prune(struct triggers *t, int64_t now)
{
    char(*old)[24] = NULL;
    size_t n = 0;
    for (struct hmap_entry *it = hmap_first(&t->waiting); it; it = hmap_next(&t->waiting, it))
        if (*(int64_t *)it->value + 60000 < now) {
            old = xrealloc(old, (n + 1) * sizeof(*old));
            snprintf(old[n++], sizeof(*old), "%s", it->key);
        }
    for (size_t i = 0; i < n; i++)
        free(hmap_del(&t->waiting, old[i]));
    free(old);
}

struct trigger_submit {
    bool workflow;
    struct job job;
    struct service_use use;
    char tenant[72];
    int max_queued;
    struct wf_submit *wf;
};

void trigger_submit_free(struct trigger_submit *ts)
{
    if (!ts) return;
    job_release(&ts->job);
    workflow_submit_free(ts->wf);
    free(ts);
}

/*
 * What a string holding placeholders becomes: each name of `subst` (NULL-terminated pairs of
 * name and value: "{{object}}" the URI, "{{sha256}}" the hash, or a schedule's "{{time}}")
 * replaced by its value, so "s3://out/{{sha256}}/result.json" names a key of the object's
 * own; NULL when it holds none (or x is no string).
 */
static json_t *placeholder(const json_t *x, const char *const *subst)
{
    const char *v = json_string_value(x);
    if (!v || !strstr(v, "{{")) return NULL;
    bool any = false;
    for (const char *const *p = subst; *p && !any; p += 2)
        any = strstr(v, p[0]) != NULL;
    if (!any) return NULL;
    struct buf b = BUF_INIT;
    while (*v) {
        const char *const *p = subst;
        while (*p && strncmp(v, p[0], strlen(p[0])))
            p += 2;
        if (*p) {
            buf_adds(&b, p[1]);
            v += strlen(p[0]);
        } else {
            buf_addc(&b, *v++);
        }
    }
    json_t *out = json_stringn(b.data ? b.data : "", b.len);
    buf_release(&b);
    return out;
}

/* Every placeholder string anywhere in v is replaced (a value replaced in place). */
static void placeholders(json_t *v, const char *const *subst)
{
    const char *k;
    size_t i;
    json_t *x, *to;
    if (json_is_object(v)) {
        json_object_foreach(v, k, x)
        {
            if ((to = placeholder(x, subst)))
                json_object_set_new(v, k, to);
            else
                placeholders(x, subst);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x)
        {
            if ((to = placeholder(x, subst)))
                json_array_set_new(v, i, to);
            else
                placeholders(x, subst);
        }
    }
}

/* The input argument `port` of a job spec as given (command.arguments), or NULL. */
static json_t *input_arg(json_t *job, const char *port)
{
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(json_object_get(job, "command"), "arguments"), i, a)
    {
        const char *t = json_string_value(json_object_get(a, "type"));
        const char *n = json_string_value(json_object_get(a, "name"));
        if (t && n && !strcmp(t, "input") && !strcmp(n, port)) return a;
    }
    return NULL;
}

/* Input argument `port` of a job spec as given becomes the object (pinned by its sha256). */
static int set_input(json_t *job, const char *port, const char *field, const char *uri,
                     const char *sha256, struct err *e)
{
    json_t *a = input_arg(job, port);
    if (!a)
        return err_field(e, ERR_INVALID, "input",
                         "%s has no input argument named '%s' (command.arguments: "
                         "{\"type\": \"input\", \"name\": \"%s\"})",
                         field, port, port);
    json_object_set_new(a, "value", json_string(uri));
    json_object_set_new(a, "sha256", json_string(sha256));
    return 0;
}

/*
 * The object in the environment of a validated spec: DROVER_* names are drover's (a spec
 * as given may not set them), so they are set here, after validation.
 */
void triggers_spec_env(json_t *spec, const char *uri, const char *sha256)
{
    json_t *cmd = json_object_get(spec, "command"), *env = json_object_get(cmd, "env");
    if (!json_is_object(cmd)) return;
    if (!json_is_object(env)) json_object_set_new(cmd, "env", env = json_object());
    if (!*sha256) { /* a schedule's fire: uri is its time */
        json_object_set_new(env, "DROVER_SCHEDULE_TIME", json_string(uri));
        return;
    }
    json_object_set_new(env, "DROVER_TRIGGER_OBJECT", json_string(uri));
    json_object_set_new(env, "DROVER_TRIGGER_SHA256", json_string(sha256));
}

static int build_job(struct server *s, const struct trigger_rec *t, json_t *tmpl, const char *uri,
                     const char *sha256, struct trigger_submit *ts, struct err *e)
{
    json_t *expanded = NULL;
    struct services_memo memo = {0};
    struct job_spec spec;
    int rc = services_expand_job(s->reads, &memo, tmpl, "job", &expanded, &ts->use, e);
    services_memo_release(&memo);
    if (!rc && json_object_get(tmpl, "array"))
        rc = err_field(e, ERR_INVALID, "job.array",
                       "job.array: a trigger's job cannot be a job array: each fire submits one "
                       "job (a workflow's node may be an array: a trigger of a workflow)");
    if (!rc) rc = spec_parse(expanded ? expanded : tmpl, "job", &spec, e);
    json_decref(expanded);
    if (rc) return rc;
    if (spec.test || spec.key) {
        rc = err_field(e, ERR_INVALID, spec.test ? "job.test" : "job.key",
                       spec.test ? "a trigger's job cannot be a test probe"
                                 : "a trigger's job cannot have an idempotency key: each "
                                   "fire submits it once already");
        spec_release(&spec);
        return rc;
    }
    triggers_spec_env(spec.json, uri, sha256);
    job_from_spec(&ts->job, &spec, time_now_ms());
    spec_release(&spec);
    ts->job.owner = t->owner ? xstrdup(t->owner) : NULL;
    if ((rc = tenants_of_token(s, t->owner, ts->tenant, sizeof(ts->tenant), e))) return rc;
    ts->job.tenant = xstrdup(ts->tenant);
    ts->max_queued = tenants_max_queued(s, ts->tenant);
    retention_apply(s->retention, &ts->job);
    return 0;
}

int triggers_build(struct server *s, const struct trigger_rec *t, const char *uri,
                   const char *sha256, struct trigger_submit **out, struct err *e)
{
    json_error_t je;
    json_t *tmpl = json_loads(t->template_, 0, &je);
    if (!tmpl)
        return err_set(e, ERR_INTERNAL, "trigger '%s': its stored template is not JSON", t->id);
    const char *object[] = {"{{object}}", uri, "{{sha256}}", sha256, NULL};
    const char *schedule[] = {"{{time}}", uri, NULL};
    placeholders(tmpl, t->schedule ? schedule : object);
    struct trigger_submit *ts = xcalloc(1, sizeof(*ts));
    job_init(&ts->job);
    ts->workflow = t->workflow;
    int rc = 0;
    if (!t->workflow) {
        if (!t->input || !(rc = set_input(tmpl, t->input, "job", uri, sha256, e)))
            rc = build_job(s, t, tmpl, uri, sha256, ts, e);
    } else {
        json_t *nodes = json_object_get(tmpl, "nodes");
        if (t->input) { /* "NODE.ARG": the node is what comes before the first dot */
            const char *dot = strchr(t->input, '.');
            char nname[72] = "";
            if (dot && (size_t)(dot - t->input) < sizeof(nname))
                memcpy(nname, t->input, (size_t)(dot - t->input));
            json_t *job = json_object_get(json_object_get(nodes, nname), "job");
            if (!dot || !json_is_object(job)) {
                rc = err_field(e, ERR_INVALID, "input",
                               "input must be NODE.ARG, a node of the workflow and one of its "
                               "input arguments, not '%s'",
                               t->input);
            } else {
                char field[96];
                snprintf(field, sizeof(field), "workflow.nodes.%s.job", nname);
                rc = set_input(job, dot + 1, field, uri, sha256, e);
            }
        }
        if (!rc) rc = workflow_submit_prepare(s, tmpl, "workflow", t->owner, &ts->wf, e);
        if (!rc) workflow_submit_each_spec(ts->wf, triggers_spec_env, uri, sha256);
    }
    json_decref(tmpl);
    if (rc) {
        trigger_submit_free(ts);
        return rc;
    }
    *out = ts;
    return 0;
}

/* ---- submitting fires ---- */

struct fire_op {
    struct triggers *t;
    struct trigger_fire fire;
    struct trigger_submit *ts; /* NULL: the fire failed for good, with `error` */
    char *error;
    bool not_pending; /* done already, or its trigger deleted: nothing to do */
};

static void drain(struct triggers *t);

static void fire_op_free(struct fire_op *op)
{
    trigger_fire_release(&op->fire);
    trigger_submit_free(op->ts);
    free(op->error);
    free(op);
}

/* Writer thread: the fire marked and its submission inserted, or neither. */
static int fire_write(struct store *st, void *arg, struct err *e)
{
    struct fire_op *op = arg;
    if (op->ts) return triggers_submit_write(st, op->fire.id, op->ts, &op->not_pending, e);
    int rc = store_trigger_fire_done(st, op->fire.id, NULL, op->error, time_now_ms(), e);
    op->not_pending = rc == ERR_CONFLICT;
    return rc;
}

const char *trigger_submit_target(const struct trigger_submit *ts)
{
    return ts->workflow ? workflow_submit_id(ts->wf) : ts->job.id;
}

int triggers_submit_write(struct store *st, int64_t fire, struct trigger_submit *ts,
                          bool *not_pending, struct err *e)
{
    int rc = store_trigger_fire_done(st, fire, trigger_submit_target(ts), NULL, time_now_ms(), e);
    if (not_pending) *not_pending = rc == ERR_CONFLICT;
    if (rc) return rc;
    if (ts->workflow) return workflow_submit_write(st, ts->wf, e);
    if (ts->use.name[0] && (rc = services_recheck(st, &ts->use, e))) return rc;
    if ((rc = store_job_insert(st, &ts->job, e)) || !ts->max_queued) return rc;
    int64_t queued;
    if ((rc = store_tenant_waiting(st, ts->tenant, &queued, e))) return rc;
    if (queued > ts->max_queued)
        return err_field(e, ERR_QUOTA, "max_queued",
                         "tenant '%s' may have at most %d queued jobs (max_queued)", ts->tenant,
                         ts->max_queued);
    return 0;
}

/* Errors that a later try may not meet: the fire waits (pending) for it. */
static bool transient(int rc)
{
    return rc == ERR_QUOTA || rc == ERR_UNAVAILABLE || rc == ERR_NOSPACE || rc == ERR_IO ||
           rc == ERR_INTERNAL;
}

static void fire_done(void *arg, int rc, const struct err *e);

static void fire_submit(struct triggers *t, struct fire_op *op)
{
    t->inflight++;
    commit_submit(t->s->commit, fire_write, fire_done, op);
}

void triggers_submit_committed(struct server *s, struct trigger_submit *ts)
{
    if (ts->workflow)
        workflow_submit_committed(s, ts->wf);
    else
        fleet_job_changed(s->fleet, &ts->job, false);
}

static void fire_done(void *arg, int rc, const struct err *e)
{
    struct fire_op *op = arg;
    struct triggers *t = op->t;
    t->inflight--;
    if (!rc && op->ts) {
        triggers_submit_committed(t->s, op->ts);
        log_info("trigger=%s fired: %s %s for %s", op->fire.trigger,
                 op->ts->workflow ? "workflow" : "job",
                 op->ts->workflow ? workflow_submit_id(op->ts->wf) : op->ts->job.id, op->fire.uri);
    } else if (!rc) {
        log_warn("trigger=%s failed for %s: %s", op->fire.trigger, op->fire.uri, op->error);
    } else if (op->not_pending) {
        /* submitted already (or its trigger deleted): nothing to do */
    } else if (op->ts && !transient(rc) && !t->s->shutting_down) {
        /* it can never be submitted as it is: recorded as failed, with why */
        struct fire_op *fail = xcalloc(1, sizeof(*fail));
        fail->t = t;
        fail->fire = op->fire;
        memset(&op->fire, 0, sizeof(op->fire));
        fail->error = xstrdup(e->msg);
        fire_submit(t, fail);
    } else {
        log_warn("trigger=%s: the fire for %s waits: %s", op->fire.trigger, op->fire.uri, e->msg);
        fire_wait(t, op->fire.id, time_now_ms());
    }
    fire_op_free(op);
    if (!t->inflight && t->more && !t->s->shutting_down) drain(t);
}

/* Whether job or workflow `id` has not finished (one deleted has). */
static bool run_open(struct store *st, const char *id, bool workflow)
{
    struct job j;
    bool open = false;
    if (!workflow) {
        if (store_job_get_run(st, id, &j, NULL)) return false;
        open = !job_state_terminal(j.state);
        job_release(&j);
        return open;
    }
    struct workflow_rec w;
    if (store_workflow_get(st, id, &w, NULL)) return false;
    const char *name;
    json_t *v;
    json_object_foreach(json_object_get(w.doc, "nodes"), name, v)
    {
        const char *job = json_string_value(json_object_get(v, "job"));
        if (open || !job || store_job_get_run(st, job, &j, NULL)) continue;
        open = !job_state_terminal(j.state);
        job_release(&j);
    }
    workflow_rec_release(&w);
    return open;
}

/* Schedule tr with overlap "skip": why its fire `id` is skipped (the run before it has not
   finished), else NULL. */
static char *overlap(struct server *s, const struct trigger_rec *tr, int64_t id)
{
    char *prev = NULL, *why = NULL;
    struct err e = ERR_INIT;
    if (store_trigger_last_target(s->reads, tr->id, id, &prev, &e))
        log_warn("schedule=%s: cannot read its last run (fired all the same): %s", tr->id, e.msg);
    if (prev && run_open(s->reads, prev, tr->workflow))
        why = xasprintf("skipped: the run before, %s %s, has not finished (overlap: skip)",
                        tr->workflow ? "workflow" : "job", prev);
    free(prev);
    return why;
}

/* Reads the pending fires and submits each (one committer op each). */
static void drain(struct triggers *t)
{
    struct server *s = t->s;
    int64_t now = time_now_ms();
    if (t->inflight || s->shutting_down) {
        if (t->inflight) t->more = true;
        return;
    }
    t->more = false;
    struct trigger_fire *f = NULL;
    size_t n = 0;
    struct err e = ERR_INIT;
    if (store_trigger_fires(s->reads, NULL, DRAIN_BATCH, &f, &n, &e)) {
        log_repeat_fail(&t->fires_log, now, LOG_WARN,
                        "triggers: cannot read the pending fires: %s", e.msg);
        for (size_t i = 0; i < n; i++)
            trigger_fire_release(&f[i]);
        free(f);
        return;
    }
    log_repeat_ok(&t->fires_log, "triggers: reading the pending fires");
    t->more = n == DRAIN_BATCH;
    if (t->waiting.count) waits_prune(t, now);
    for (size_t i = 0; i < n; i++) {
        if ((t->hold_ms && now < f[i].created_at + t->hold_ms) || /* a test's window */
            fire_waits(t, f[i].id, now)) {
            trigger_fire_release(&f[i]);
            continue;
        }
        struct fire_op *op = xcalloc(1, sizeof(*op));
        op->t = t;
        op->fire = f[i];
        struct trigger_rec tr;
        struct err be = ERR_INIT;
        int rc = store_trigger_get(s->reads, f[i].trigger, &tr, &be);
        if (rc == ERR_NOTFOUND) { /* deleted meanwhile, its fires with it */
            fire_op_free(op);
            continue;
        }
        int64_t at;
        if (!rc && tr.schedule && tr.resumed_at && time_parse_rfc3339(f[i].uri, &at) &&
            at < tr.resumed_at) /* recorded before a pause (its time, or a quota, held it) */
            op->error = xstrdup("skipped: the schedule was paused");
        else if (!rc && tr.skip_overlap)
            op->error = overlap(s, &tr, f[i].id);
        if (!rc && !op->error) rc = triggers_build(s, &tr, f[i].uri, f[i].sha256, &op->ts, &be);
        trigger_rec_release(&tr); /* zeroed by a failed get */
        if (rc && transient(rc)) {
            log_warn("trigger=%s: the fire for %s waits: %s", f[i].trigger, f[i].uri, be.msg);
            fire_wait(t, f[i].id, now);
            fire_op_free(op);
            continue;
        }
        if (rc) op->error = xstrdup(be.msg);
        fire_submit(t, op);
    }
    free(f);
}

/* ---- listing the prefixes of a remote store ---- */

struct scan_item {
    char trigger[UUID_STR_LEN];
    char *uri;
    char sha256[65];
};

struct scan_op {
    struct triggers *t;
    struct trigger_rec *trs;
    size_t ntrs;
    struct scan_item *items;
    size_t n, cap;
};

static void scan_free(struct scan_op *op)
{
    for (size_t i = 0; i < op->ntrs; i++)
        trigger_rec_release(&op->trs[i]);
    free(op->trs);
    for (size_t i = 0; i < op->n; i++)
        free(op->items[i].uri);
    free(op->items);
    free(op);
}

/*
 * Offload thread: every object under each prefix committed since its trigger was made.
 * S3 keeps whole seconds: there an object of the trigger's own second counts (a fire more
 * rather than one lost; objects written before the trigger in that second are the price).
 */
static void scan_work(void *arg)
{
    struct scan_op *op = arg;
    struct blob_store *bs = op->t->s->blobs;
    int64_t slack = (blob_caps(bs) & BLOB_CAP_REMOTE) ? 999 : 0;
    for (size_t i = 0; i < op->ntrs; i++) {
        const struct trigger_rec *tr = &op->trs[i];
        if (tr->schedule) continue;
        char bucket[BLOB_BUCKET_MAX + 1];
        const char *p = tr->prefix + 5, *slash = strchr(p, '/');
        size_t bl = slash ? (size_t)(slash - p) : strlen(p);
        if (bl >= sizeof(bucket)) continue;
        memcpy(bucket, p, bl);
        bucket[bl] = '\0';
        const char *kp = slash ? slash + 1 : "";
        struct blob_list l = {0};
        char *after = NULL;
        size_t seen = 0;
        do {
            struct err e = ERR_INIT;
            int rc = blob_list(bs, bucket, kp, after, BLOB_LIST_MAX, &l, &e);
            free(after);
            after = NULL;
            if (rc) {
                log_warn("trigger=%s: cannot list %s: %s", tr->id, tr->prefix, e.msg);
                break;
            }
            for (size_t j = 0; j < l.n; j++) {
                const struct blob_entry *b = &l.items[j];
                if (b->info.modified_ms + slack < tr->created_at || !b->info.sha256[0]) continue;
                if (op->n == op->cap) {
                    op->cap = op->cap ? 2 * op->cap : 64;
                    op->items = xrealloc(op->items, op->cap * sizeof(*op->items));
                }
                struct scan_item *it = &op->items[op->n++];
                memcpy(it->trigger, tr->id, UUID_STR_LEN);
                it->uri = xasprintf("s3://%s/%s", bucket, b->key);
                memcpy(it->sha256, b->info.sha256, sizeof(it->sha256));
            }
            seen += l.n;
            after = l.next ? xstrdup(l.next) : NULL;
            blob_list_release(&l);
        } while (after && seen < SCAN_MAX_OBJECTS);
        free(after);
    }
}

static int scan_write(struct store *st, void *arg, struct err *e)
{
    struct scan_op *op = arg;
    int64_t now = time_now_ms();
    for (size_t i = 0; i < op->n; i++) {
        int rc = store_trigger_fire_add(st, op->items[i].trigger, op->items[i].uri,
                                        op->items[i].sha256, now, NULL, e);
        if (rc) return rc;
    }
    return 0;
}

static void scan_written(void *arg, int rc, const struct err *e)
{
    struct scan_op *op = arg;
    struct triggers *t = op->t;
    if (rc) log_warn("triggers: cannot record what the listing found: %s", e->msg);
    t->scanning = false;
    scan_free(op);
    if (!rc && !t->s->shutting_down) drain(t);
}

static void scan_listed(void *arg)
{
    struct scan_op *op = arg;
    if (!op->n || op->t->s->shutting_down) {
        op->t->scanning = false;
        scan_free(op);
        return;
    }
    commit_submit(op->t->s->commit, scan_write, scan_written, op);
}

static void scan(struct triggers *t)
{
    struct scan_op *op = xcalloc(1, sizeof(*op));
    op->t = t;
    struct err e = ERR_INIT;
    if (store_trigger_list(t->s->reads, NULL, NULL, 0, &op->trs, &op->ntrs, &e) || !op->ntrs) {
        if (e.code) log_warn("triggers: cannot read the triggers: %s", e.msg);
        scan_free(op);
        return;
    }
    t->scanning = true;
    offload_run(t->s->offload, scan_work, scan_listed, op);
}

/* ---- schedules ---- */

/* The time of schedule tr's newest fire (its uri), else its creation or its last resume, the
   latest; -1: unreadable now. */
static int64_t schedule_last(struct triggers *t, const struct trigger_rec *tr)
{
    struct trigger_fire *f = NULL;
    size_t n = 0;
    struct err e = ERR_INIT;
    int64_t last = tr->resumed_at > tr->created_at ? tr->resumed_at : tr->created_at, at;
    if (store_trigger_fires(t->s->reads, tr->id, 1, &f, &n, &e)) {
        log_warn("schedule=%s: cannot read its fires: %s", tr->id, e.msg);
        last = -1;
    } else if (n && time_parse_rfc3339(f[0].uri, &at) && at > last) {
        last = at;
    }
    for (size_t i = 0; i < n; i++)
        trigger_fire_release(&f[i]);
    free(f);
    return last;
}

/* The schedules read again: new ones start from their newest fire, deleted and paused ones
   go, a schedule resumed since starts from then (the times it was paused fire not), and one
   changed since is read anew and starts from its change (its new times before it are past). */
static void schedules_read(struct triggers *t, int64_t now)
{
    struct trigger_rec *trs = NULL;
    size_t n = 0;
    struct err e = ERR_INIT;
    t->schedules_next = now + SCHEDULES_READ_MS;
    int rc = store_trigger_list(t->s->reads, NULL, NULL, 0, &trs, &n, &e);
    if (rc) log_warn("schedules: cannot read the triggers: %s", e.msg);
    for (struct hmap_entry *it = hmap_first(&t->schedules); it; it = hmap_next(&t->schedules, it))
        ((struct schedule *)it->value)->seen = rc != 0; /* unread: all stay */
    for (size_t i = 0; i < n; i++) {
        struct trigger_rec *tr = &trs[i];
        struct schedule *sc =
            tr->schedule && !tr->paused_at ? hmap_get(&t->schedules, tr->id) : NULL;
        struct cron c;
        struct err ce = ERR_INIT;
        int64_t last;
        const struct tz *zone = NULL;
        if (sc && tr->resumed_at > sc->last) sc->last = tr->resumed_at;
        if (sc && tr->updated_at != sc->updated_at) { /* read anew below */
            free(hmap_del(&t->schedules, tr->id));
            sc = NULL;
        }
        if (!rc && tr->schedule && !tr->paused_at && !sc) {
            if (cron_parse(tr->schedule, "schedule", &c, &ce) || /* checked when made */
                (tr->timezone && triggers_zone(t, tr->timezone, &zone, &ce)))
                log_warn("schedule=%s: %s", tr->id, ce.msg);
            else if ((last = schedule_last(t, tr)) >= 0) {
                sc = xcalloc(1, sizeof(*sc));
                sc->cron = c;
                sc->zone = zone;
                sc->last = last > tr->updated_at ? last : tr->updated_at;
                sc->updated_at = tr->updated_at;
                hmap_put(&t->schedules, tr->id, sc);
            }
        }
        if (sc) sc->seen = true;
        trigger_rec_release(tr);
    }
    free(trs);
    char(*gone)[UUID_STR_LEN] = NULL;
    size_t ngone = 0;
    for (struct hmap_entry *it = hmap_first(&t->schedules); it; it = hmap_next(&t->schedules, it))
        if (!((struct schedule *)it->value)->seen) {
            gone = xrealloc(gone, (ngone + 1) * sizeof(*gone));
            snprintf(gone[ngone++], UUID_STR_LEN, "%s", it->key);
        }
    for (size_t i = 0; i < ngone; i++)
        free(hmap_del(&t->schedules, gone[i]));
    free(gone);
}

struct due_fire {
    char trigger[UUID_STR_LEN];
    int64_t at;
};

struct record_op {
    struct triggers *t;
    struct due_fire *due;
    size_t n;
};

/* Writer thread: each schedule's due fire recorded (once: the unique key), old ones pruned. */
static int record_write(struct store *st, void *arg, struct err *e)
{
    struct record_op *op = arg;
    int64_t now = time_now_ms();
    for (size_t i = 0; i < op->n; i++) {
        char at[32];
        time_format_rfc3339(op->due[i].at, at, sizeof(at));
        int rc = store_trigger_fire_add(st, op->due[i].trigger, at, "", now, NULL, e);
        if (!rc) rc = store_trigger_fires_prune(st, op->due[i].trigger, SCHEDULE_KEEP, e);
        if (rc) return rc;
    }
    return 0;
}

static void record_done(void *arg, int rc, const struct err *e)
{
    struct record_op *op = arg;
    struct triggers *t = op->t;
    t->recording = false;
    if (rc) log_warn("schedules: cannot record their fires (tried again): %s", e->msg);
    for (size_t i = 0; !rc && i < op->n; i++) {
        struct schedule *sc = hmap_get(&t->schedules, op->due[i].trigger);
        if (sc && op->due[i].at > sc->last) sc->last = op->due[i].at;
    }
    free(op->due);
    free(op);
    if (!rc && !t->s->shutting_down) drain(t);
}

/*
 * Whether schedule `id`'s newest fire waits to be submitted (its tenant at its quota, the
 * store unavailable): no other is recorded meanwhile, so the times that pass fire once when
 * it is through, as missed times do, rather than piling up. Unreadable: as if it waited.
 */
static bool fire_pending(struct triggers *t, const char *id)
{
    struct trigger_fire *f = NULL;
    size_t n = 0;
    bool pending = store_trigger_fires(t->s->reads, id, 1, &f, &n, NULL) != 0 ||
                   (n && !f[0].target && !f[0].error);
    for (size_t i = 0; i < n; i++)
        trigger_fire_release(&f[i]);
    free(f);
    return pending;
}

static void schedules_tick(struct triggers *t, int64_t now);

static void on_due(evutil_socket_t fd, short what, void *arg)
{
    struct triggers *t = arg;
    (void)fd, (void)what;
    if (t->s->leader && !t->s->shutting_down) schedules_tick(t, time_now_ms());
}

/*
 * The server's tick comes every second: a schedule whose next time falls before the next
 * tick gets a timer of its own, so that it fires at its time, not up to a second late.
 */
static void schedules_arm(struct triggers *t, int64_t now)
{
    int64_t next = INT64_MAX;
    for (struct hmap_entry *it = hmap_first(&t->schedules); it; it = hmap_next(&t->schedules, it)) {
        struct schedule *sc = it->value;
        int64_t n = cron_next_tz(&sc->cron, sc->zone, now > sc->last ? now : sc->last);
        if (n > 0 && n < next) next = n;
    }
    if (next == INT64_MAX || next - now > SCHEDULE_ARM_MS) return;
    if (!t->due_timer) t->due_timer = evtimer_new(t->s->base, on_due, t);
    int64_t ms = next - now + 1; /* at or just after it by the wall clock */
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(t->due_timer, &tv);
}

/*
 * The leader records a fire for each schedule whose time has come: the latest time due since
 * its newest fire (times missed while no server led fire once, late, not each), keyed by
 * that time, so a fire is recorded once whichever server leads.
 */
static void schedules_tick(struct triggers *t, int64_t now)
{
    if (now >= t->schedules_next) schedules_read(t, now);
    if (!t->schedules.count) return;
    schedules_arm(t, now);
    if (t->recording) return;
    struct record_op *op = NULL;
    size_t cap = 0;
    for (struct hmap_entry *it = hmap_first(&t->schedules); it; it = hmap_next(&t->schedules, it)) {
        struct schedule *sc = it->value;
        int64_t due = cron_last_due_tz(&sc->cron, sc->zone, sc->last, now);
        if (due < 0 || fire_pending(t, it->key)) continue;
        if (!op) {
            op = xcalloc(1, sizeof(*op));
            op->t = t;
        }
        if (op->n == cap) {
            cap = cap ? 2 * cap : 8;
            op->due = xrealloc(op->due, cap * sizeof(*op->due));
        }
        snprintf(op->due[op->n].trigger, UUID_STR_LEN, "%s", it->key);
        op->due[op->n++].at = due;
    }
    if (!op) return;
    t->recording = true;
    commit_submit(t->s->commit, record_write, record_done, op);
}

void triggers_schedules_changed(struct triggers *t)
{
    if (t) t->schedules_next = 0;
}

int triggers_zone(struct triggers *t, const char *name, const struct tz **out, struct err *e)
{
    struct tz *z = hmap_get(&t->zones, name);
    if (!z) {
        int rc = tz_load(name, "timezone", &z, e);
        if (rc) return rc;
        hmap_put(&t->zones, name, z);
    }
    *out = z;
    return 0;
}

static void zone_free(void *z)
{
    tz_free(z);
}

/* ---- the rest ---- */

struct triggers *triggers_new(struct server *s, int scan_s)
{
    struct triggers *t = xcalloc(1, sizeof(*t));
    t->s = s;
    t->scan_ms = (int64_t)scan_s * 1000;
    hmap_init(&t->waiting);
    hmap_init(&t->schedules);
    hmap_init(&t->zones);
    /* Tests only: fires wait this long, a window in which to kill -9 the server between an
       upload and its submission (tests/e2e/test_triggers.py). Unset in production. */
    const char *hold = getenv("DROVER_TEST_TRIGGER_HOLD_MS");
    if (hold) t->hold_ms = strtoll(hold, NULL, 10);
    return t;
}

void triggers_free(struct triggers *t)
{
    if (!t) return;
    if (t->due_timer) event_free(t->due_timer);
    hmap_release(&t->waiting, free);
    hmap_release(&t->schedules, free);
    hmap_release(&t->zones, zone_free);
    free(t);
}

/*
 * A remote store is listed every scan_ms. Any store is listed once when this server first
 * leads: the catch-up for an object committed by a server that died before its event (and
 * so its fires) was written; the unique key drops what fired already.
 */
void triggers_tick(struct triggers *t, int64_t now_ms)
{
    if (!t) return;
    schedules_tick(t, now_ms);
    drain(t); /* also what other servers recorded, and what waited */
    bool remote = (blob_caps(t->s->blobs) & BLOB_CAP_REMOTE) != 0;
    if ((remote || !t->caught_up) && !t->scanning && now_ms >= t->next_scan_ms) {
        t->caught_up = true;
        t->next_scan_ms = now_ms + t->scan_ms;
        scan(t);
    }
}

void triggers_kick(struct triggers *t)
{
    if (t && t->s->leader) drain(t);
}
