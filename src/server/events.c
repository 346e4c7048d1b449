/*
 * events.c - GET /v1/events: the event stream, as Server-Sent Events.
 *
 * The store appends an event in the transaction of every change of a job or
 * an agent (store.h), so the stream is the committed history, in order. A
 * follower holds a streamed answer open and the seq it has sent up to; after
 * every committed batch (commit_on_batch) each follower reads what is new for
 * its filter from the store and sends it. One chunk at a time is in flight
 * per follower, the next read only once the last has left (a client that
 * does not read holds one chunk of memory, not the history). A follower that
 * has been sent nothing for three heartbeats (--heartbeat, 15 s by default)
 * gets a comment line, so that proxies and clients see the connection alive.
 * The retained window is pruned to the newest `keep` events by a write a
 * second after start and then each minute.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/array.h"
#include "job/spec.h"
#include "server/events.h"
#include "server/server.h"

#define READ_MAX 512  /* events per chunk */
#define PRUNE_EVERY_MS 60000

struct follower {
    struct events *ev;
    struct http_req *r;
    int64_t seq; /* the last seq sent */
    int kind;    /* -1 = any */
    char *queue;
    char *owner; /* a client's token name: its own jobs' events only; NULL for an admin */
    char **jobs;
    size_t njobs;
    bool sending; /* a chunk is on its way out: read more only once it has left */
    int64_t last_sent_ms;
    struct follower *prev, *next;
};

struct events {
    struct server *s;
    struct follower *head;
    struct event *timer;
    int64_t keep;
    int64_t last_prune_ms;
    bool pruning;
    uint64_t sent; /* events sent, all followers (for /metrics) */
};

static void follower_free(struct follower *fw)
{
    for (size_t i = 0; i < fw->njobs; i++)
        free(fw->jobs[i]);
    free(fw->jobs);
    free(fw->queue);
    free(fw->owner);
    free(fw);
}

static void unlink_follower(struct follower *fw)
{
    if (fw->prev)
        fw->prev->next = fw->next;
    else
        fw->ev->head = fw->next;
    if (fw->next) fw->next->prev = fw->prev;
    fw->r->on_gone = NULL;
    fw->r->owner = NULL;
}

/* Ends a follower's stream with a last comment saying why (a client that reconnects learns
   the rest: a 401, or a server that is back). */
static void follower_end(struct follower *fw, const char *why)
{
    unlink_follower(fw);
    char *last = xasprintf(": %s\n\n", why);
    http_reply_chunk(fw->r, last, strlen(last)); /* replaces a chunk's on_sent, as the end */
    free(last);
    http_reply_end(fw->r);
    follower_free(fw);
}

static void on_gone(struct http_req *r)
{
    struct follower *fw = r->owner;
    unlink_follower(fw);
    http_req_drop(r);
    follower_free(fw); /* a chunk's sent callback never runs once its connection is gone */
}

const char *events_type_name(const struct event_rec *ev)
{
    if (ev->kind == EVENT_OBJECT)
        return ev->state == OBJECT_DELETED ? "object.deleted" : "object.created";
    if (ev->kind == EVENT_TRIGGER) {
        static const char *const names[] = {
            [TRIGGER_FIRED] = "trigger.fired",     [TRIGGER_FAILED] = "trigger.failed",
            [TRIGGER_CREATED] = "trigger.created", [TRIGGER_UPDATED] = "trigger.updated",
            [TRIGGER_PAUSED] = "trigger.paused",   [TRIGGER_RESUMED] = "trigger.resumed",
            [TRIGGER_DELETED] = "trigger.deleted",
        };
        return ev->state >= 0 && ev->state < (int)ARRAY_SIZE(names) && names[ev->state]
                   ? names[ev->state]
                   : "trigger.fired";
    }
    if (ev->kind == EVENT_ARRAY)
        return ev->state == ARRAY_SUBMITTED ? "array.submitted" : "array.changed";
    if (ev->kind == EVENT_QUEUE)
        return ev->state == QUEUE_PAUSED    ? "queue.paused"
               : ev->state == QUEUE_LIMITED ? "queue.limited"
                                            : "queue.resumed";
    if (ev->kind == EVENT_TENANT) return "tenant.changed";
    if (ev->kind == EVENT_WORKFLOW) return "workflow";
    return ev->kind == EVENT_JOB ? "job" : "agent";
}

/* The event as the stream shows it; a new reference. */
json_t *events_to_json(const struct event_rec *ev)
{
    json_t *o = json_object();
    json_object_set_new(o, "seq", json_integer(ev->seq));
    json_object_set_new(o, "type", json_string(events_type_name(ev)));
    json_object_set_new(o, "at", job_time_json(ev->at));
    if (ev->kind == EVENT_OBJECT || ev->kind == EVENT_TENANT) {
        /* bucket, key, size, sha256; tenant, max_running, max_queued, weight: all in data */
    } else if (ev->kind == EVENT_QUEUE) {
        json_object_set_new(o, "queue", ev->queue ? json_string(ev->queue) : json_null());
        /* by: in data */
    } else if (ev->kind == EVENT_TRIGGER) {
        json_object_set_new(o, "trigger", json_string(ev->subject)); /* uri, sha256, job...: data */
    } else if (ev->kind == EVENT_ARRAY) {
        json_object_set_new(o, "array", json_string(ev->subject));
        json_object_set_new(o, "queue", ev->queue ? json_string(ev->queue) : json_null());
        /* count, kind, name: in data */
    } else if (ev->kind == EVENT_WORKFLOW) {
        json_object_set_new(o, "workflow", json_string(ev->subject));
        json_object_set_new(o, "state", json_string(job_state_name(ev->state)));
        /* name, key, progress (an end's): in data */
    } else if (ev->kind == EVENT_JOB) {
        json_object_set_new(o, "job", json_string(ev->subject));
        json_object_set_new(o, "queue", ev->queue ? json_string(ev->queue) : json_null());
        json_object_set_new(o, "state", json_string(job_state_name(ev->state)));
        json_object_set_new(o, "attempt", json_integer(ev->attempt));
        json_object_set_new(o, "agent", ev->agent ? json_string(ev->agent) : json_null());
    } else {
        json_object_set_new(o, "agent_id", json_string(ev->subject));
        json_object_set_new(o, "agent", ev->agent ? json_string(ev->agent) : json_null());
        json_object_set_new(o, "state", json_string(agent_state_name(ev->state)));
    }
    const char *k;
    json_t *v;
    json_object_foreach(ev->data, k, v) /* progress and result, what of them is set */
    {
        if (!json_is_null(v) || ev->kind == EVENT_TENANT || ev->kind == EVENT_QUEUE ||
            ev->kind == EVENT_WORKFLOW)
            json_object_set(o, k, v); /* a limit lifted is a null, as it is set; no name */
    }
    return o;
}

struct frame_ctx {
    struct evbuffer *out;
    int64_t seq;
    size_t n;
};

static int add_frame(void *arg, const struct event_rec *ev)
{
    struct frame_ctx *c = arg;
    json_t *o = events_to_json(ev);
    char *data = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    evbuffer_add_printf(c->out, "id: %" PRId64 "\nevent: %s\ndata: %s\n\n", ev->seq,
                        events_type_name(ev), data);
    free(data);
    c->seq = ev->seq;
    c->n++;
    return 0;
}

static void pump(struct follower *fw);

static void on_sent(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct follower *fw = arg;
    fw->sending = false;
    pump(fw);
}

static void send_buffer(struct follower *fw, struct evbuffer *b)
{
    fw->sending = true;
    fw->last_sent_ms = time_now_ms();
    http_reply_chunk_then(fw->r, b, on_sent, fw);
}

/* Sends the next events the follower wants, one chunk at a time. */
static void pump(struct follower *fw)
{
    if (fw->sending) return; /* on_sent pumps again */
    struct event_filter f = {.after = fw->seq,
                             .kind = fw->kind,
                             .queue = fw->queue,
                             .jobs = (const char *const *)fw->jobs,
                             .njobs = fw->njobs,
                             .owner = fw->owner,
                             .limit = READ_MAX};
    struct frame_ctx c = {.out = evbuffer_new(), .seq = fw->seq};
    struct err e = ERR_INIT;
    if (store_event_list(fw->ev->s->reads, &f, add_frame, &c, &e)) {
        log_error("req=%s reading events: %s", fw->r->id, e.msg);
        evbuffer_free(c.out);
        return; /* the next batch or keep-alive tries again */
    }
    if (!c.n) {
        evbuffer_free(c.out);
        return;
    }
    fw->seq = c.seq;
    fw->ev->sent += c.n;
    send_buffer(fw, c.out);
    evbuffer_free(c.out);
}

void events_notify(struct events *ev)
{
    if (!ev || !ev->head)
        return;
    /* One look at the newest seq: a batch without events (log chunks) costs no follower a read. */
    int64_t first, last;
    if (store_event_window(ev->s->reads, &first, &last, NULL))
        last = INT64_MAX; /* cannot tell: let each follower look */
    struct follower *fw = ev->head;
    while (fw) {
        struct follower *next = fw->next;
        if (fw->seq < last)
            pump(fw);
        fw = next;
    }
}

/* ---- pruning ---- */

struct prune_op {
    struct events *ev;
    int64_t keep;
};

static int prune_write(struct store *st, void *arg, struct err *e)
{
    struct prune_op *op = arg;
    return store_event_prune(st, 0, op->keep, e);
}

static void prune_done(void *arg, int rc, const struct err *e)
{
    struct prune_op *op = arg;
    if (rc) log_error("pruning events: %s", e->msg);
    op->ev->pruning = false;
    free(op);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct events *ev = arg;
    int64_t now = time_now_ms();
    struct follower *next;
    for (struct follower *fw = ev->head; fw; fw = next) {
        next = fw->next;
        /* a stream is one long call: its credential is checked again each second, as a
           call's would be (a cache lookup; a revoked token's or an ended session's stream
           ends) */
        struct err e = ERR_INIT;
        int rc = http_authenticate(fw->r, fw->r->route->roles, &e);
        if (rc == ERR_UNAUTH || rc == ERR_DENIED) {
            char why[600];
            snprintf(why, sizeof(why), "the stream's credential is no longer valid: %s", e.msg);
            follower_end(fw, why);
            continue;
        }
        if (fw->sending || now - fw->last_sent_ms < 3000LL * ev->s->heartbeat_s) continue;
        struct evbuffer *b = evbuffer_new();
        evbuffer_add_printf(b, ": keep-alive\n\n");
        send_buffer(fw, b);
        evbuffer_free(b);
    }
    if (!ev->pruning && !ev->s->shutting_down && ev->s->leader &&
        now - ev->last_prune_ms >= PRUNE_EVERY_MS) {
        ev->last_prune_ms = now;
        ev->pruning = true;
        struct prune_op *op = xcalloc(1, sizeof(*op));
        op->ev = ev;
        op->keep = ev->keep;
        commit_submit(ev->s->commit, prune_write, prune_done, op);
    }
}

struct events *events_new(struct server *s, int64_t keep)
{
    struct events *ev = xcalloc(1, sizeof(*ev));
    ev->s = s;
    ev->keep = keep;
    ev->last_prune_ms = time_now_ms() - PRUNE_EVERY_MS + 1000; /* the first a second after start */
    ev->timer = event_new(s->base, -1, EV_PERSIST, on_timer, ev);
    struct timeval second = {1, 0};
    event_add(ev->timer, &second);
    return ev;
}

void events_free(struct events *ev)
{
    if (!ev) return;
    while (ev->head)
        follower_end(ev->head, "the server is shutting down: reconnect with Last-Event-ID");
    event_free(ev->timer);
    free(ev);
}

size_t events_followers(const struct events *ev)
{
    size_t n = 0;
    for (const struct follower *fw = ev ? ev->head : NULL; fw; fw = fw->next)
        n++;
    return n;
}

uint64_t events_sent(const struct events *ev)
{
    return ev ? ev->sent : 0;
}

/* ---- GET /v1/events ---- */

static int parse_seq(const char *s, const char *field, int64_t *out, struct err *e)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    /* digits only: strtoll would also take blanks and a sign, and clamp what overflows */
    if (*s < '0' || *s > '9' || *end || errno == ERANGE)
        return err_field(e, ERR_INVALID, field, "%s must be a sequence number (an integer >= 0)",
                         field);
    *out = v;
    return 0;
}

/* A filter's id (job=, workflow=, array=) as a route's {id} is read, whole or a unique prefix
   (api_ids.c), a job also ARRAY:INDEX: 400 naming the filter when nothing matches, 409 when
   several do. */
static int resolve_filter(struct http_req *r, enum store_kind kind, const char *field,
                          const char *given, char id[UUID_STR_LEN], struct err *e)
{
    struct err re = ERR_INIT;
    const char *colon = kind == STORE_JOB ? strchr(given, ':') : NULL;
    int rc;
    if (colon) { /* ARRAY:INDEX, a task's job, followed before it is made too */
        char *array = xstrndup(given, (size_t)(colon - given));
        rc = api_arrays_task_id(r, array, colon + 1, id, &re);
        free(array);
    } else {
        rc = api_resolve_id(r, kind, given, id, &re);
    }
    if (!rc) return 0;
    return err_field(e, rc == ERR_AMBIGUOUS ? rc : ERR_INVALID, field, "%s", re.msg);
}

/* job=ID,ID,...: job ids (a whole id is taken as it is, without a read), at most
   JOB_EVENTS_FILTER_MAX. */
static int parse_jobs(struct http_req *r, const char *s, struct follower *fw, struct err *e)
{
    const char *p = s;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char *id = xstrndup(p, n);
        char whole[UUID_STR_LEN];
        if (!uuid_valid(id)) {
            int rc = resolve_filter(r, STORE_JOB, "job", id, whole, e);
            free(id);
            if (rc) return rc;
            id = xstrdup(whole);
        }
        if (fw->njobs == JOB_EVENTS_FILTER_MAX) {
            free(id);
            return err_field(e, ERR_INVALID, "job", "job takes at most %d ids",
                             JOB_EVENTS_FILTER_MAX);
        }
        fw->jobs = xrealloc(fw->jobs, (fw->njobs + 1) * sizeof(*fw->jobs));
        fw->jobs[fw->njobs++] = id;
        p += n;
        if (comma && !*++p)
            return err_field(e, ERR_INVALID, "job", "job must not end with a comma");
    }
    if (!fw->njobs) return err_field(e, ERR_INVALID, "job", "job must name at least one job id");
    return 0;
}

/* array=ID: the array's own events and its tasks' (an array of the caller's, of at most
   JOB_EVENTS_FILTER_MAX - 1 tasks: their ids are known without reading them,
   array_task_id()). */
static int parse_array(struct http_req *r, const char *given, struct follower *fw,
                       struct err *e)
{
    struct server *s = r->app;
    struct array_rec a;
    struct err ae = ERR_INIT;
    char id[UUID_STR_LEN];
    if (fw->njobs)
        return err_field(e, ERR_INVALID, "array", "array cannot be given with job or workflow");
    if (resolve_filter(r, STORE_ARRAY, "array", given, id, e)) return e->code;
    if (store_array_get(s->reads, id, &a, &ae))
        return err_field(e, ERR_INVALID, "array", "array '%s' not found", id);
    int rc = 0;
    if (fw->owner && (!a.owner || strcmp(a.owner, fw->owner)))
        rc = err_field(e, ERR_INVALID, "array", "array '%s' not found", id);
    else if (a.count >= JOB_EVENTS_FILTER_MAX)
        rc = err_field(e, ERR_INVALID, "array",
                       "array '%s' has %lld tasks: array= follows arrays of fewer than %d (follow "
                       "its queue instead, or job=ID of some tasks)",
                       id, (long long)a.count, JOB_EVENTS_FILTER_MAX);
    if (!rc) {
        fw->jobs = xrealloc(fw->jobs, (size_t)(a.count + 1) * sizeof(*fw->jobs));
        fw->jobs[fw->njobs++] = xstrdup(a.id);
        for (int64_t i = 0; i < a.count; i++) {
            char t[UUID_STR_LEN];
            array_task_id(a.id, i, t);
            fw->jobs[fw->njobs++] = xstrdup(t);
        }
    }
    array_rec_release(&a);
    return rc;
}

/* workflow=ID: the workflow's own events and its nodes' jobs' (a workflow of the caller's, of
   at most JOB_EVENTS_FILTER_MAX nodes). */
static int parse_workflow(struct http_req *r, const char *given, struct follower *fw,
                          struct err *e)
{
    struct server *s = r->app;
    struct workflow_rec w;
    struct err we = ERR_INIT;
    char id[UUID_STR_LEN];
    if (fw->njobs)
        return err_field(e, ERR_INVALID, "workflow", "workflow and job cannot be given together");
    if (resolve_filter(r, STORE_WORKFLOW, "workflow", given, id, e)) return e->code;
    if (store_workflow_get(s->reads, id, &w, &we))
        return err_field(e, ERR_INVALID, "workflow", "workflow '%s' not found", id);
    if (fw->owner && (!w.owner || strcmp(w.owner, fw->owner))) {
        workflow_rec_release(&w);
        return err_field(e, ERR_INVALID, "workflow", "workflow '%s' not found", id);
    }
    json_t *nodes = json_object_get(w.doc, "nodes");
    if (json_object_size(nodes) > JOB_EVENTS_FILTER_MAX) {
        err_field(e, ERR_INVALID, "workflow",
                  "workflow '%s' has %zu nodes: workflow= follows workflows of at most %d "
                  "(follow type=job instead, or job=ID of some nodes)",
                  id, json_object_size(nodes), JOB_EVENTS_FILTER_MAX);
        workflow_rec_release(&w);
        return e->code;
    }
    fw->jobs = xrealloc(fw->jobs, (fw->njobs + 1) * sizeof(*fw->jobs));
    fw->jobs[fw->njobs++] = xstrdup(w.id);
    const char *name;
    json_t *node;
    json_object_foreach(nodes, name, node)
    {
        const char *job = json_string_value(json_object_get(node, "job"));
        if (!job) continue;
        fw->jobs = xrealloc(fw->jobs, (fw->njobs + 1) * sizeof(*fw->jobs));
        fw->jobs[fw->njobs++] = xstrdup(job);
    }
    workflow_rec_release(&w);
    return 0;
}

/* Where the stream starts: since_field says what gave it (NULL: nothing, new events only). */
static int parse_follow(struct http_req *r, struct follower *fw, const char **since_field,
                        struct err *e)
{
    /* the route refuses any other parameter than these (routes.c) */
    const char *v;
    fw->kind = -1;
    *since_field = NULL;
    /* A reconnecting EventSource sends the last id it saw: that wins over the URL's since. An
       empty one is no id (a first connection may send it so). */
    const char *last_id =
        evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Last-Event-ID");
    if (last_id && *last_id) {
        if (parse_seq(last_id, "Last-Event-ID", &fw->seq, e)) return e->code;
        *since_field = "Last-Event-ID";
    } else if ((v = http_query(r, "since"))) {
        if (parse_seq(v, "since", &fw->seq, e)) return e->code;
        *since_field = "since";
    }
    static const char *const kinds[] = {[EVENT_JOB] = "job",       [EVENT_AGENT] = "agent",
                                        [EVENT_OBJECT] = "object", [EVENT_TRIGGER] = "trigger",
                                        [EVENT_ARRAY] = "array",   [EVENT_QUEUE] = "queue",
                                        [EVENT_TENANT] = "tenant", [EVENT_WORKFLOW] = "workflow"};
    if ((v = http_query(r, "type"))) {
        fw->kind = -1;
        for (int k = 0; k < (int)(sizeof(kinds) / sizeof(kinds[0])); k++)
            if (!strcmp(v, kinds[k])) fw->kind = k;
        if (fw->kind < 0)
            return err_field(e, ERR_INVALID, "type",
                             "type must be job, agent, object, trigger, array, queue, tenant or "
                             "workflow");
    }
    /* queue= and job= follow job events: another type with them would follow nothing, or
       be dropped without a word */
    if (fw->kind >= 0 && fw->kind != EVENT_JOB && (http_query(r, "queue") || http_query(r, "job")))
        return err_field(e, ERR_INVALID, "type", "type must be job with %s (or left out)",
                         http_query(r, "queue") ? "queue" : "job");
    if ((v = http_query(r, "queue"))) {
        if (!spec_queue_name_valid(v))
            return err_field(e, ERR_INVALID, "queue", "queue must match [a-z0-9._-]{1,64}");
        fw->queue = xstrdup(v);
        fw->kind = EVENT_JOB;
    }
    if ((v = http_query(r, "job"))) {
        if (parse_jobs(r, v, fw, e)) return e->code;
        fw->kind = EVENT_JOB;
    }
    if ((v = http_query(r, "workflow"))) {
        if (fw->kind >= 0 && fw->kind != EVENT_JOB && fw->kind != EVENT_WORKFLOW)
            return err_field(e, ERR_INVALID, "type",
                             "type must be job or workflow with workflow (or left out: both)");
        if (parse_workflow(r, v, fw, e)) return e->code;
    }
    if ((v = http_query(r, "array")) && parse_array(r, v, fw, e)) return e->code;
    return 0;
}

int api_events(struct http_req *r)
{
    struct server *s = r->app;
    struct events *ev = s->events;
    struct follower *fw = xcalloc(1, sizeof(*fw));
    struct err e = ERR_INIT;
    const char *since = NULL; /* what gave the start: since, Last-Event-ID, or nothing */
    int64_t first, last;
    fw->owner = r->role == ROLE_ADMIN ? NULL : xstrdup(r->token_name);
    if (parse_follow(r, fw, &since, &e) || store_event_window(s->reads, &first, &last, &e))
        goto fail;
    if (!since) {
        fw->seq = last; /* from now on */
    } else if (fw->seq > last) {
        err_field(&e, ERR_INVALID, since,
                  "%s %" PRId64 " is past the newest event (%" PRId64 ")", since, fw->seq, last);
        goto fail;
    } else if (fw->seq == 0 && !strcmp(since, "since")) {
        fw->seq = first - 1; /* since=0: all that are kept */
    } else if (fw->seq + 1 < first) {
        /* Events after since were pruned: resuming would skip some silently. */
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "events after %" PRId64 " are no longer kept: the retained window starts at seq "
                 "%" PRId64 " (resume with since=%" PRId64
                 ", or without since for new events only)",
                 fw->seq, first, first - 1);
        json_t *body =
            json_pack("{s:{s:s, s:s, s:s, s:I}}", "error", "code", err_api_code(ERR_GONE),
                      "message", msg, "field", since, "first_seq", (json_int_t)first);
        follower_free(fw);
        http_reply_json(r, err_http_status(ERR_GONE), body);
        return HTTP_DONE;
    }
    fw->ev = ev;
    fw->r = r;
    r->owner = fw;
    r->on_gone = on_gone;
    fw->next = ev->head;
    if (ev->head) ev->head->prev = fw;
    ev->head = fw;
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    http_reply_start(r, 200, "text/event-stream"); /* with Cache-Control: no-cache */
    /* A first comment goes out at once: the client knows it is connected and where it starts. */
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, ": drover events from seq %" PRId64 "\nretry: 2000\n\n", fw->seq);
    send_buffer(fw, b);
    evbuffer_free(b);
    return HTTP_DEFERRED;
fail:
    follower_free(fw);
    http_reply_err(r, &e);
    return HTTP_DONE;
}
