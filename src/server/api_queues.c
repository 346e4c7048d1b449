/*
 * api_queues.c - GET /v1/queues, pausing a queue: POST /v1/queues/{name}/pause and
 * /resume (admin), and its max_running: PUT /v1/queues/{name} (admin).
 *
 * A paused queue keeps its jobs queued: no agent is leased one until it is resumed; what
 * runs already runs to its end, and submissions go on (their warnings say it is paused).
 * The pause is a row in the store (store_queue_pause, with its event); the scheduler holds
 * the paused queues for the loop (sched_queue_pause). Other servers sharing the store read
 * them again when they see the event (queues_reload, from sync.c). A queue's max_running
 * (at most that many of its jobs leased or running at once) is kept the same way: a row
 * (store_queue_limit), the scheduler's copy (sched_queue_limit), the event.
 */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/job.h"
#include "job/spec.h"
#include "server/commit.h"
#include "server/fleet.h"
#include "server/sched.h"
#include "server/server.h"

static struct server *srv(struct http_req *r)
{
    return r->app;
}

static json_t *paused_json(int64_t at)
{
    char t[32];
    if (!at) return json_null();
    time_format_rfc3339(at, t, sizeof(t));
    return json_string(t);
}

static json_t *queue_json(struct server *s, const char *name, const int64_t *c)
{
    struct sched_fit fit;
    sched_fit_init(&fit, name, NULL, 0, 0);
    int listeners = fleet_fit(s->fleet, &fit);
    json_t *counts = json_object();
    for (int st = 0; st < JOB_NSTATES; st++)
        json_object_set_new(counts, job_state_name(st), json_integer(c[st]));
    int max = sched_queue_max_running(s->sched, name);
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:i, s:b, s:o, s:o, s:o}", "name", name,
                     "queued", (json_int_t)c[JOB_QUEUED], "running",
                     (json_int_t)(c[JOB_LEASED] + c[JOB_RUNNING]), "succeeded",
                     (json_int_t)c[JOB_SUCCEEDED], "failed", (json_int_t)c[JOB_FAILED],
                     "cancelled", (json_int_t)c[JOB_CANCELLED], "listeners", listeners, "paused",
                     fit.paused_at != 0, "paused_at", paused_json(fit.paused_at), "max_running",
                     max ? json_integer(max) : json_null(), "states", counts);
}

struct listing {
    struct server *s;
    const struct queue_stat *qs;
    size_t n;
    json_t *out;
};

/* A paused or limited queue with no job counted: listed all the same, with its counts 0,
   once. */
static void add_unlisted(struct listing *l, const char *queue)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->qs[i].name, queue)) return;
    size_t i;
    json_t *q;
    json_array_foreach(l->out, i, q)
    {
        if (!strcmp(json_string_value(json_object_get(q, "name")), queue)) return;
    }
    static const int64_t none[JOB_NSTATES];
    json_array_append_new(l->out, queue_json(l->s, queue, none));
}

static void add_paused(void *arg, const char *queue, int64_t at)
{
    (void)at;
    add_unlisted(arg, queue);
}

static void add_limited(void *arg, const char *queue, int max_running)
{
    (void)max_running;
    add_unlisted(arg, queue);
}

int api_queues_list(struct http_req *r)
{
    struct server *s = srv(r);
    struct queue_stat *qs;
    size_t n;
    struct err e = ERR_INIT;
    if (store_queue_stats(s->reads, r->role == ROLE_ADMIN ? NULL : r->token_name, &qs, &n, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    struct listing l = {s, qs, n, json_array()};
    for (size_t i = 0; i < n; i++)
        json_array_append_new(l.out, queue_json(s, qs[i].name, qs[i].count));
    sched_queue_paused_each(s->sched, add_paused, &l);
    sched_queue_limits_each(s->sched, add_limited, &l);
    free(qs);
    http_reply_json(r, 200, l.out);
    return HTTP_DONE;
}

/* ---- pause and resume ---- */

struct pause_op {
    struct http_req *r;
    bool paused;
    bool changed;
    int64_t at;
    char queue[72];
    char by[128];
};

static int pause_write(struct store *st, void *arg, struct err *e)
{
    struct pause_op *op = arg;
    return store_queue_pause(st, op->queue, op->paused, op->by, op->at, &op->changed, e);
}

static void pause_done(void *arg, int rc, const struct err *e)
{
    struct pause_op *op = arg;
    struct server *s = srv(op->r);
    if (!rc && op->changed) {
        sched_queue_pause(s->sched, op->queue, op->paused ? op->at : 0);
        if (!op->paused) fleet_wake(s->fleet); /* its jobs go to the agents' parked polls */
    } else if (!rc && (sched_queue_paused(s->sched, op->queue) != 0) != op->paused) {
        /* another server changed it, and its event is not read here yet: read them now */
        struct err re = ERR_INIT;
        if (queues_reload(s, &re)) log_warn("cannot read the paused queues: %s", re.msg);
    }
    if (op->r->gone)
        http_req_drop(op->r);
    else if (rc)
        http_reply_err(op->r, e);
    else /* the queue as it is now (paused since when it was first paused) */
        http_reply_json(op->r, 200,
                        json_pack("{s:s, s:b, s:o}", "name", op->queue, "paused", op->paused,
                                  "paused_at",
                                  paused_json(sched_queue_paused(s->sched, op->queue))));
    free(op);
}

static int pause_or_resume(struct http_req *r, bool paused)
{
    const char *name = r->params[0];
    if (!spec_queue_name_valid(name)) {
        http_reply_error(r, ERR_INVALID, "name", "a queue name must match [a-z0-9._-]{1,64}");
        return HTTP_DONE;
    }
    struct pause_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    op->paused = paused;
    op->at = time_now_ms();
    memcpy(op->queue, name, strlen(name) + 1); /* valid: at most 64 bytes */
    snprintf(op->by, sizeof(op->by), "%s", r->token_name);
    commit_submit(srv(r)->commit, pause_write, pause_done, op);
    return HTTP_DEFERRED;
}

int api_queues_pause(struct http_req *r)
{
    return pause_or_resume(r, true);
}

int api_queues_resume(struct http_req *r)
{
    return pause_or_resume(r, false);
}

/* ---- max_running ---- */

struct limit_op {
    struct http_req *r;
    int max_running; /* 0: none */
    bool changed;
    int64_t at;
    char queue[72];
    char by[128];
};

static int limit_write(struct store *st, void *arg, struct err *e)
{
    struct limit_op *op = arg;
    return store_queue_limit(st, op->queue, op->max_running, op->by, op->at, &op->changed, e);
}

static void limit_done(void *arg, int rc, const struct err *e)
{
    struct limit_op *op = arg;
    struct server *s = srv(op->r);
    if (!rc) {
        int was = sched_queue_max_running(s->sched, op->queue);
        sched_queue_limit(s->sched, op->queue, op->max_running);
        /* raised or lifted: its jobs may go to the agents' parked polls now */
        if (!op->max_running || (was && op->max_running > was)) fleet_wake(s->fleet);
    }
    if (op->r->gone) {
        http_req_drop(op->r);
    } else if (rc) {
        http_reply_err(op->r, e);
    } else {
        int64_t paused = sched_queue_paused(s->sched, op->queue);
        http_reply_json(op->r, 200,
                        json_pack("{s:s, s:o, s:I, s:b, s:o}", "name", op->queue, "max_running",
                                  op->max_running ? json_integer(op->max_running) : json_null(),
                                  "running", (json_int_t)sched_queue_held(s->sched, op->queue),
                                  "paused", paused != 0, "paused_at", paused_json(paused)));
    }
    free(op);
}

int api_queues_put(struct http_req *r)
{
    const char *name = r->params[0];
    struct err e = ERR_INIT;
    json_t *b = r->body, *v = json_object_get(b, "max_running");
    const char *k;
    json_t *x;
    if (!spec_queue_name_valid(name)) {
        http_reply_error(r, ERR_INVALID, "name", "a queue name must match [a-z0-9._-]{1,64}");
        return HTTP_DONE;
    }
    if (!json_is_object(b)) {
        http_reply_error(r, ERR_INVALID, NULL,
                         "the body must be an object {\"max_running\": N or null}");
        return HTTP_DONE;
    }
    json_object_foreach(b, k, x)
    {
        if (strcmp(k, "max_running")) {
            err_field(&e, ERR_INVALID, k, "unknown field '%s' (a queue has max_running)", k);
            http_reply_err(r, &e);
            return HTTP_DONE;
        }
    }
    if (v && !json_is_null(v) &&
        (!json_is_integer(v) || json_integer_value(v) < 0 ||
         json_integer_value(v) > QUEUE_MAX_RUNNING)) {
        http_reply_error(r, ERR_INVALID, "max_running",
                         "max_running must be an integer from 1 to %d (0 or null: none)",
                         QUEUE_MAX_RUNNING);
        return HTTP_DONE;
    }
    struct limit_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    op->max_running = json_is_integer(v) ? (int)json_integer_value(v) : 0;
    op->at = time_now_ms();
    memcpy(op->queue, name, strlen(name) + 1); /* valid: at most 64 bytes */
    snprintf(op->by, sizeof(op->by), "%s", r->token_name);
    commit_submit(srv(r)->commit, limit_write, limit_done, op);
    return HTTP_DEFERRED;
}

/* ---- reading them again ---- */

/* The paused queues (at: since when), or the limited ones (at: their max_running). */
struct paused_list {
    char (*names)[72];
    int64_t *at;
    size_t n, cap;
};

static int collect(void *arg, const char *queue, int64_t at)
{
    struct paused_list *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->names = xrealloc(l->names, l->cap * sizeof(*l->names));
        l->at = xrealloc(l->at, l->cap * sizeof(*l->at));
    }
    snprintf(l->names[l->n], sizeof(l->names[l->n]), "%s", queue);
    l->at[l->n++] = at;
    return 0;
}

static int collect_limit(void *arg, const char *queue, int max_running)
{
    return collect(arg, queue, max_running);
}

int queues_reload(struct server *s, struct err *e)
{
    struct paused_list l = {0}, m = {0};
    int rc = store_queue_paused(s->reads, collect, &l, e);
    if (!rc) rc = store_queue_limits(s->reads, collect_limit, &m, e);
    if (!rc) { /* on an error the scheduler keeps what it had */
        sched_queue_resume_all(s->sched);
        for (size_t i = 0; i < l.n; i++)
            sched_queue_pause(s->sched, l.names[i], l.at[i]);
        sched_queue_unlimit_all(s->sched);
        for (size_t i = 0; i < m.n; i++)
            sched_queue_limit(s->sched, m.names[i], (int)m.at[i]);
        fleet_wake(s->fleet); /* a queue resumed or raised elsewhere: its jobs may go now */
    }
    free(l.names);
    free(l.at);
    free(m.names);
    free(m.at);
    return rc;
}
