/*
 * api_agents.c - the agent protocol (docs/protocol.md): register, poll,
 * reports, leave; and the client calls about agents: list, drain.
 *
 * Handlers validate on the loop; reports are applied by the group committer
 * (fenced on attempt and agent) and their effects handed to the fleet.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/array.h"
#include "job/protocol.h"
#include "job/spec.h"
#include "server/fleet.h"
#include "server/lease.h"
#include "server/server.h"

static struct server *srv(struct http_req *r)
{
    return r->app;
}

static bool name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (!n || n > max) return false;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') || ('0' <= *s && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* An integer field in [lo, hi], or dflt when absent. */
static int int_field(json_t *o, const char *key, long lo, long hi, long dflt, long *out,
                     struct err *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return err_field(e, ERR_INVALID, key, "%s must be an integer between %ld and %ld", key, lo,
                         hi);
    *out = (long)json_integer_value(v);
    return 0;
}

static int refuse_unknown(json_t *o, const char *const *known, struct err *e)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        size_t i = 0;
        while (known[i] && strcmp(known[i], k))
            i++;
        if (!known[i]) return err_field(e, ERR_INVALID, k, "unknown field '%s'", k);
    }
    return 0;
}

/*
 * The integer o.key (field path "<where>.<key>") in [lo, hi]: 0, or ERR_INVALID naming the
 * field. Absent or null is fine unless required. Checked before any cast to int: a number
 * outside the range is refused, never wrapped (4294967296 is not 0).
 */
static int int_in(json_t *o, const char *where, const char *key, json_int_t lo, json_int_t hi,
                  bool required, struct err *e)
{
    json_t *v = json_object_get(o, key);
    if ((!v || json_is_null(v)) && !required) return 0;
    if (json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi) return 0;
    char f[96];
    snprintf(f, sizeof(f), "%s.%s", where, key);
    return err_field(e, ERR_INVALID, f, "%s must be an integer from %lld to %lld", f, (long long)lo,
                     (long long)hi);
}

/* running: [{"job": id, "attempt": n}] */
static int check_running(json_t *v, struct err *e)
{
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v) || json_array_size(v) > PROTO_RUNNING_MAX)
        return err_field(e, ERR_INVALID, "running",
                         "running must be an array of "
                         "{\"job\", \"attempt\"}");
    size_t i;
    json_t *it;
    json_array_foreach(v, i, it)
    {
        json_t *job = json_object_get(it, "job"), *att = json_object_get(it, "attempt");
        char f[48];
        snprintf(f, sizeof(f), "running[%zu]", i);
        if (!json_is_object(it) || !json_is_string(job) || !json_is_integer(att))
            return err_field(e, ERR_INVALID, f, "%s must be {\"job\": id, \"attempt\": n}", f);
        if (int_in(it, f, "attempt", 1, PROTO_ATTEMPT_MAX, true, e)) return e->code;
    }
    return 0;
}

/* cached: [{"sha256": hex, "uri": string?}], the agent's input cache (protocol.md). */
static int check_cached(json_t *v, struct err *e)
{
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v) || json_array_size(v) > PROTO_CACHED_MAX)
        return err_field(e, ERR_INVALID, "cached",
                         "cached must be an array of at most %d {\"sha256\", \"uri\"} objects",
                         PROTO_CACHED_MAX);
    size_t i;
    json_t *it;
    json_array_foreach(v, i, it)
    {
        char f[48];
        snprintf(f, sizeof(f), "cached[%zu]", i);
        const char *sha = json_string_value(json_object_get(it, "sha256"));
        json_t *uri = json_object_get(it, "uri");
        bool ok = json_is_object(it) && sha && strlen(sha) == PROTO_SHA256_HEX_LEN &&
                  strspn(sha, "0123456789abcdef") == PROTO_SHA256_HEX_LEN &&
                  (!uri || (json_is_string(uri) && json_string_length(uri) > 0 &&
                            json_string_length(uri) <= PROTO_CACHED_URI_MAX)) &&
                  json_object_size(it) == (uri ? 2u : 1u);
        if (!ok)
            return err_field(e, ERR_INVALID, f,
                             "%s must be {\"sha256\": 64 lower-case hex digits, \"uri\": a "
                             "string of at most %d bytes (optional)}",
                             f, PROTO_CACHED_URI_MAX);
    }
    return 0;
}

/* ---- register ---- */

struct register_op {
    struct http_req *r;
    struct agent_rec rec;
    char name[72]; /* rec.name, kept after rec is handed to the fleet */
};

static int register_write(struct store *st, void *arg, struct err *e)
{
    struct register_op *op = arg;
    return store_agent_upsert(st, &op->rec, e);
}

static void register_done(void *arg, int rc, const struct err *e)
{
    struct register_op *op = arg;
    struct http_req *r = op->r;
    struct server *s = srv(r);
    fleet_register_end(s->fleet, op->name);
    if (rc) {
        http_reply_err(r, e); /* frees r, also when its client is gone */
        agent_rec_release(&op->rec);
        free(op);
        return;
    }
    struct live_agent *a = fleet_agent_registered(s->fleet, &op->rec);
    log_info("agent=%s name=%s registered (%d slots)", a->rec.id, a->rec.name, a->rec.slots);
    /* a registration says all it holds: none when it lists nothing (e.g. restarted without) */
    json_t *cached = json_object_get(r->body, "cached"), *none = json_array();
    fleet_agent_cached(s->fleet, a, json_is_array(cached) ? cached : none);
    json_decref(none);
    if (r->gone) {
        /* It will register again, with its running jobs: the cancels are worked out then. */
        http_req_drop(r);
    } else {
        json_t *cancel = fleet_take_cancels(s->fleet, a, json_object_get(r->body, "running"));
        http_reply_json(r, 200,
                        json_pack("{s:s, s:i, s:i, s:o, s:b}", "id", a->rec.id, "heartbeat_s",
                                  s->heartbeat_s, "lost_after_s", s->lost_after_s, "cancel",
                                  cancel, "prefetch", 1));
    }
    free(op);
}

/*
 * "runtimes" of a register or poll body: 1 to 4 distinct names of proto_runtime_parse(),
 * into *out (PROTO_RT_* bits); absent or null leaves *out as it is.
 */
static int parse_runtimes(json_t *v, unsigned *out, struct err *e)
{
    if (!v || json_is_null(v)) return 0;
    unsigned bits = 0;
    if (!json_is_array(v) || !json_array_size(v) || json_array_size(v) > 4)
        return err_field(e, ERR_INVALID, "runtimes",
                         "runtimes must be an array of 1 to 4 of native, bwrap, podman, docker");
    size_t i;
    json_t *rt;
    json_array_foreach(v, i, rt)
    {
        unsigned bit = proto_runtime_parse(json_string_value(rt));
        if (!bit || (bits & bit))
            return err_field(e, ERR_INVALID, "runtimes",
                             "runtimes[%zu] must be one of native, bwrap, podman, docker (each "
                             "once)",
                             i);
        bits |= bit;
    }
    *out = bits;
    return 0;
}

int api_agents_parse_register(json_t *b, const char *token, struct agent_rec *a, struct err *e)
{
    static const char *const known[] = {"name",     "labels",   "queues", "slots",
                                        "version",  "running",  "instance", "cached",
                                        "limits",   "runtimes", NULL};
    unsigned runtimes = PROTO_RT_NATIVE; /* an agent that does not say runs jobs natively */
    long slots;
    if (!json_is_object(b)) return err_set(e, ERR_INVALID, "the body must be an object");
    if (refuse_unknown(b, known, e)) return e->code;
    json_t *name = json_object_get(b, "name");
    if (!json_is_string(name) || !name_ok(json_string_value(name), PROTO_NAME_MAX))
        return err_field(e, ERR_INVALID, "name", "name must match [A-Za-z0-9._-]{1,%d}",
                         PROTO_NAME_MAX);
    json_t *labels = json_object_get(b, "labels");
    if (labels && !json_is_null(labels)) {
        if (!json_is_object(labels) || json_object_size(labels) > SPEC_MAX_LABELS)
            return err_field(e, ERR_INVALID, "labels",
                             "labels must be an object of at most %d "
                             "string values",
                             SPEC_MAX_LABELS);
        const char *k;
        json_t *v;
        json_object_foreach(labels, k, v)
        {
            if (!spec_label_name_valid(k) || !json_is_string(v) || json_string_length(v) > 256)
                return err_field(e, ERR_INVALID, "labels",
                                 "labels.%s must be a string of at most 256 bytes under a name "
                                 "of [A-Za-z0-9._/-]{1,64}",
                                 k);
        }
    }
    json_t *queues = json_object_get(b, "queues");
    if (queues && !json_is_null(queues)) {
        if (!json_is_array(queues) || !json_array_size(queues) ||
            json_array_size(queues) > PROTO_QUEUES_MAX)
            return err_field(e, ERR_INVALID, "queues",
                             "queues must be an array of 1 to %d queue names", PROTO_QUEUES_MAX);
        size_t i;
        json_t *q;
        json_array_foreach(queues, i, q)
        {
            if (!json_is_string(q) || !spec_queue_name_valid(json_string_value(q)))
                return err_field(e, ERR_INVALID, "queues",
                                 "queues[%zu] must match [a-z0-9._-]{1,64}", i);
        }
    }
    if (int_field(b, "slots", 1, PROTO_SLOTS_MAX, 1, &slots, e)) return e->code;
    json_t *version = json_object_get(b, "version");
    if (version && !json_is_null(version) &&
        (!json_is_string(version) || json_string_length(version) > 64))
        return err_field(e, ERR_INVALID, "version",
                         "version must be a string of at most 64 "
                         "bytes");
    if (check_running(json_object_get(b, "running"), e)) return e->code;
    if (check_cached(json_object_get(b, "cached"), e)) return e->code;
    if (parse_runtimes(json_object_get(b, "runtimes"), &runtimes, e)) return e->code;
    json_t *instance = json_object_get(b, "instance");
    if (instance && !json_is_null(instance) &&
        (!json_is_string(instance) || !name_ok(json_string_value(instance), PROTO_INSTANCE_MAX)))
        return err_field(e, ERR_INVALID, "instance", "instance must match [A-Za-z0-9._-]{1,%d}",
                         PROTO_INSTANCE_MAX);

    /* how it enforces resource limits (limits.h of the agent): short names, shown as they are */
    json_t *limits = json_object_get(b, "limits");
    if (limits && !json_is_null(limits)) {
        const char *k;
        json_t *v;
        bool ok = json_is_object(limits) && json_object_size(limits) <= 16;
        json_object_foreach(limits, k, v)
        {
            if (ok && !(name_ok(k, 32) && json_is_string(v) && name_ok(json_string_value(v), 32)))
                ok = false;
        }
        if (!ok)
            return err_field(
                e, ERR_INVALID, "limits",
                "limits must be an object of at most 16 names of [A-Za-z0-9._-]{1,32}, "
                "each with such a name as its value");
    }

    agent_rec_init(a);
    a->limits = json_is_object(limits) ? json_deep_copy(limits) : NULL;
    uuid7_new(a->id);
    a->name = xstrdup(json_string_value(name));
    a->labels = json_is_object(labels) ? json_deep_copy(labels) : json_object();
    a->queues = json_is_array(queues) ? json_deep_copy(queues) : json_pack("[s]", "default");
    a->slots = (int)slots;
    a->runtimes = runtimes;
    a->version = json_is_string(version) ? xstrdup(json_string_value(version)) : NULL;
    a->owner = xstrdup(token);
    a->instance = json_is_string(instance) ? xstrdup(json_string_value(instance)) : NULL;
    a->state = AGENT_UP;
    a->last_seen = a->registered_at = time_now_ms();
    return 0;
}

int api_agents_register(struct http_req *r)
{
    struct register_op *op = xcalloc(1, sizeof(*op));
    struct fleet *f = srv(r)->fleet;
    struct err e = ERR_INIT;
    if (api_agents_parse_register(r->body, r->token_name, &op->rec, &e) ||
        fleet_may_register(f, op->rec.name, r->token_name, op->rec.instance, &e)) {
        agent_rec_release(&op->rec);
        free(op);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    op->r = r;
    snprintf(op->name, sizeof(op->name), "%s", op->rec.name);
    fleet_register_begin(f, op->name);
    commit_submit(srv(r)->commit, register_write, register_done, op);
    return HTTP_DEFERRED;
}

/*
 * The agent named in the path (id or name), if the caller's token owns it: else NULL after
 * answering 404 (unknown) or 403 (another token's agent).
 */
static struct live_agent *own_agent(struct http_req *r)
{
    struct live_agent *a = fleet_agent(srv(r)->fleet, r->params[0]);
    if (!a) {
        http_reply_error(r, ERR_NOTFOUND, NULL, "agent '%s' not found: register first",
                         r->params[0]);
        return NULL;
    }
    if (!a->rec.owner) { /* stored before agents had owners: its registration claims it */
        http_reply_error(r, ERR_CONFLICT, NULL, "agent '%s' has no owner yet: register again",
                         a->rec.name);
        return NULL;
    }
    if (!fleet_agent_owned_by(a, r->token_name)) {
        http_reply_error(r, ERR_DENIED, NULL,
                         "agent '%s' belongs to another token: only the token that registered "
                         "it may act for it",
                         a->rec.name);
        return NULL;
    }
    return a;
}

/*
 * 0 when the call's "instance" (optional) is the one that registered the agent last; else
 * 409: the name was registered again from another work folder (after this agent was lost),
 * and this process is no longer that agent.
 */
static int same_instance(const struct live_agent *a, json_t *body, struct err *e)
{
    json_t *inst = json_object_get(body, "instance");
    if (!inst || json_is_null(inst)) return 0;
    if (json_is_string(inst) && a->rec.instance &&
        !strcmp(json_string_value(inst), a->rec.instance))
        return 0;
    return err_field(e, ERR_CONFLICT, "instance",
                     "agent '%s' was registered again by another agent process (another work "
                     "folder): register again, or pass --name to give each agent its own name",
                     a->rec.name);
}

/* own_agent(), able to talk: also 409 when it is lost or left. */
static struct live_agent *caller(struct http_req *r)
{
    struct live_agent *a = own_agent(r);
    if (a && (a->rec.state == AGENT_LOST || a->rec.state == AGENT_LEFT)) {
        http_reply_error(r, ERR_CONFLICT, NULL, "agent '%s' is %s: register again", a->rec.name,
                         agent_state_name(a->rec.state));
        return NULL;
    }
    return a;
}

/* ---- poll ---- */

/* "prefetch" of a poll or reports body: the slots' worth of jobs the agent will hold beyond
   its slots (absent: none). */
static int prefetch_field(const struct live_agent *a, json_t *b, long *out, struct err *e)
{
    return int_field(b, "prefetch", 0, (long)a->rec.slots * PROTO_PREFETCH_PER_SLOT_MAX, 0, out,
                     e);
}

struct runtimes_op {
    char id[UUID_STR_LEN];
    unsigned runtimes;
};

static int runtimes_write(struct store *st, void *arg, struct err *e)
{
    struct runtimes_op *op = arg;
    return store_agent_set_runtimes(st, op->id, op->runtimes, e);
}

static void runtimes_done(void *arg, int rc, const struct err *e)
{
    struct runtimes_op *op = arg;
    if (rc) log_warn("agent=%s cannot record its runtimes: %s", op->id, e->msg);
    free(op);
}

/* A poll said other runtimes than the agent had (it found more at work after it registered):
   stored, so that the agent keeps them after a restart of the server (left or lost too). */
static void runtimes_changed(struct server *s, const struct live_agent *a)
{
    struct runtimes_op *op = xcalloc(1, sizeof(*op));
    memcpy(op->id, a->rec.id, sizeof(op->id));
    op->runtimes = a->rec.runtimes;
    commit_submit(s->commit, runtimes_write, runtimes_done, op);
}

static void poll_gone(struct http_req *r)
{
    fleet_poll_gone(srv(r)->fleet, r->owner, r);
    http_req_drop(r);
}

int api_agents_poll(struct http_req *r)
{
    static const char *const known[] = {"free_slots", "wait_s",   "running",  "instance",
                                        "cached",     "runtimes", "prefetch", NULL};
    struct server *s = srv(r);
    struct err e = ERR_INIT;
    long free_slots, wait_s, prefetch;
    json_t *b = r->body;
    struct live_agent *a = caller(r);
    if (!a) return HTTP_DONE;
    unsigned runtimes = a->rec.runtimes;
    if (!json_is_object(b) || refuse_unknown(b, known, &e) || same_instance(a, b, &e) ||
        int_field(b, "free_slots", 0, a->rec.slots, a->rec.slots, &free_slots, &e) ||
        prefetch_field(a, b, &prefetch, &e) ||
        int_field(b, "wait_s", 0, s->heartbeat_s, s->heartbeat_s, &wait_s, &e) ||
        check_running(json_object_get(b, "running"), &e) ||
        check_cached(json_object_get(b, "cached"), &e) ||
        parse_runtimes(json_object_get(b, "runtimes"), &runtimes, &e)) {
        if (!e.code) err_set(&e, ERR_INVALID, "the body must be an object");
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (a->rec.runtimes != runtimes) {
        fleet_agent_set_runtimes(s->fleet, a, runtimes);
        runtimes_changed(s, a);
    }
    fleet_agent_cached(s->fleet, a, json_object_get(b, "cached"));
    a->prefetch = (int)prefetch;
    r->owner = a; /* until the fleet answers it (server.c's fleet_reply) */
    r->on_gone = poll_gone;
    fleet_poll(s->fleet, a, r, (int)free_slots, json_object_get(b, "running"), wait_s * 1000);
    return HTTP_DEFERRED;
}

/* ---- reports ---- */

struct report_item {
    json_t *in; /* borrowed from the request body */
    enum proto_report type;
    int status;
    char *error;
    struct job rec; /* the job after the change, when changed */
    bool changed;
    size_t same_as; /* a started report left to the later finished report at this index */
    int64_t start_ms; /* when its process started (started_ms_ago), 0 = not said */
};

struct reports_op {
    struct http_req *r;
    char agent[80];
    size_t n;
    struct report_item *items;
};

int api_agents_check_report(json_t *it, size_t i, enum proto_report *type, struct err *e)
{
    char f[64];
    snprintf(f, sizeof(f), "reports[%zu]", i);
    json_t *job = json_object_get(it, "job"), *att = json_object_get(it, "attempt");
    json_t *ty = json_object_get(it, "type");
    if (!json_is_object(it) || !json_is_string(job) || !json_is_integer(att) || !json_is_string(ty))
        return err_field(e, ERR_INVALID, f,
                         "%s must be an object with job, attempt (>= 1) and type", f);
    if (int_in(it, f, "attempt", 1, PROTO_ATTEMPT_MAX, true, e)) return e->code;
    int t = proto_report_parse(json_string_value(ty));
    if (t < 0)
        return err_field(e, ERR_INVALID, f,
                         "%s.type must be one of started, log, progress, finished, released", f);
    *type = (enum proto_report)t;
    if ((*type == PROTO_REPORT_STARTED || *type == PROTO_REPORT_FINISHED) &&
        int_in(it, f, "started_ms_ago", 0, PROTO_STARTED_AGO_MS_MAX, false, e))
        return e->code;
    if (*type == PROTO_REPORT_STARTED) {
        if (int_in(it, f, "pid", 1, PROTO_PID_MAX, false, e)) return e->code;
    } else if (*type == PROTO_REPORT_LOG) {
        json_t *st = json_object_get(it, "stream"), *off = json_object_get(it, "offset");
        json_t *data = json_object_get(it, "data");
        if (proto_stream_parse(json_string_value(st)) < 0 || !json_is_integer(off) ||
            json_integer_value(off) < 0 || !json_is_string(data) ||
            json_string_length(data) > PROTO_LOG_CHUNK_MAX)
            return err_field(e, ERR_INVALID, f,
                             "%s: a log report needs stream (stdout or stderr), offset >= 0 and "
                             "data (a string of at most %d bytes)",
                             f, PROTO_LOG_CHUNK_MAX);
    } else if (*type == PROTO_REPORT_PROGRESS) {
        json_t *p = json_object_get(it, "percent"), *m = json_object_get(it, "message");
        char pf[80];
        snprintf(pf, sizeof(pf), "%s.percent", f);
        if (!json_is_number(p) ||
            !(json_number_value(p) >= 0 && json_number_value(p) <= PROTO_PERCENT_MAX))
            return err_field(e, ERR_INVALID, pf, "%s must be a number from 0 to %d", pf,
                             PROTO_PERCENT_MAX);
        if (m && !json_is_null(m) &&
            (!json_is_string(m) || json_string_length(m) > PROTO_PROGRESS_MESSAGE_MAX))
            return err_field(e, ERR_INVALID, f,
                             "%s: a progress report's message must be a string of at most %d "
                             "bytes",
                             f, PROTO_PROGRESS_MESSAGE_MAX);
    } else if (*type == PROTO_REPORT_FINISHED) {
        /* lost is the server's own reason: an agent does not send it */
        int reason = proto_reason_parse(json_string_value(json_object_get(it, "reason")));
        if (!proto_reason_from_agent(reason))
            return err_field(e, ERR_INVALID, f,
                             "%s.reason must be one of exit, signal, timeout, "
                             "cancelled, error, oom",
                             f);
        /* exit codes and signals as a process has them; reason exit / signal needs its own */
        if (int_in(it, f, "exit_code", 0, PROTO_EXIT_CODE_MAX, reason == PROTO_REASON_EXIT, e) ||
            int_in(it, f, "signal", 1, PROTO_SIGNAL_MAX, reason == PROTO_REASON_SIGNAL, e) ||
            int_in(it, f, "duration_ms", 0, PROTO_DURATION_MS_MAX, false, e))
            return e->code;
        json_t *error = json_object_get(it, "error");
        if (error && !json_is_null(error) &&
            (!json_is_string(error) || json_string_length(error) > PROTO_ERROR_MAX))
            return err_field(e, ERR_INVALID, f, "%s.error must be a string of at most %d bytes", f,
                             PROTO_ERROR_MAX);
        json_t *outs = json_object_get(it, "outputs"), *o;
        size_t n;
        if (outs && !json_is_array(outs))
            return err_field(e, ERR_INVALID, f, "%s.outputs must be an array", f);
        json_array_foreach(outs, n, o)
        {
            json_t *sz = json_object_get(o, "size"), *sha = json_object_get(o, "sha256");
            if (!json_is_string(json_object_get(o, "uri")) || !json_is_integer(sz) ||
                json_integer_value(sz) < 0 || !json_is_string(sha) ||
                json_string_length(sha) != PROTO_SHA256_HEX_LEN || json_object_size(o) != 3)
                return err_field(e, ERR_INVALID, f,
                                 "%s.outputs[%zu] must be {\"uri\", \"size\", \"sha256\"} (a "
                                 "string, a size in bytes, 64 hex digits)",
                                 f, n);
        }
    }
    return 0;
}

static int PRINTF_LIKE(3, 4) item_fail(struct report_item *it, int status, const char *fmt, ...)
{
    va_list ap;
    it->status = status;
    va_start(ap, fmt);
    if (vasprintf(&it->error, fmt, ap) < 0) it->error = NULL;
    va_end(ap);
    return 0;
}

/* Writer thread: one report. Returns a store error only when the batch must fail. */
static int apply_report(struct store *st, const char *agent, struct report_item *it, struct err *e)
{
    const char *id = json_string_value(json_object_get(it->in, "job"));
    int attempt = (int)json_integer_value(json_object_get(it->in, "attempt"));
    int64_t now = time_now_ms();
    struct job j;
    int rc;
    it->status = 200;
    if (it->type == PROTO_REPORT_LOG) {
        /* output, not a change of the job: of the attempt this agent holds, or of the job's
           last attempt, which it ran, once the job has ended (a cancelled job's program
           writes as it stops: its trap's words are its last output) */
        struct err ge = ERR_INIT;
        if ((rc = store_job_get_run(st, id, &j, &ge)) == ERR_NOTFOUND)
            return item_fail(it, 404, "job '%s' (attempt %d) not found", id, attempt);
        if (rc) return err_set(e, rc, "%s", ge.msg);
        bool held = j.attempt == attempt && j.agent && !strcmp(j.agent, agent) &&
                    (((1u << j.state) & LEASE_HELD_STATES) || job_state_terminal(j.state));
        job_release(&j);
        if (!held)
            return item_fail(it, 409, "job '%s' attempt %d is no longer leased to this agent",
                             id, attempt);
        json_t *data = json_object_get(it->in, "data");
        int stream = proto_stream_parse(json_string_value(json_object_get(it->in, "stream")));
        return store_log_append(st, id, attempt, stream,
                                json_integer_value(json_object_get(it->in, "offset")),
                                json_string_value(data), json_string_length(data), e);
    }

    struct buf out = BUF_INIT;
    struct attempt_end end = {0};
    struct job_event_args args = {.now_ms = now, .start_ms = it->start_ms};
    enum job_event ev = JOB_EV_START;
    if (it->type == PROTO_REPORT_PROGRESS) {
        char ts[32];
        time_format_rfc3339(now, ts, sizeof(ts));
        json_t *m = json_object_get(it->in, "message");
        ev = JOB_EV_PROGRESS;
        args.progress = json_pack("{s:O, s:O, s:s}", "percent", json_object_get(it->in, "percent"),
                                  "message", json_is_string(m) ? m : json_null(), "updated_at", ts);
    } else if (it->type == PROTO_REPORT_RELEASED) {
        ev = JOB_EV_UNLEASE; /* only while leased: a started job is the agent's to finish */
    } else if (it->type == PROTO_REPORT_FINISHED) {
        if ((rc = store_log_read(st, id, attempt, PROTO_STREAM_STDOUT, 0, PROTO_RESULT_STDOUT_MAX,
                                 &out, e)))
            return rc;
        json_t *in = it->in, *code = json_object_get(in, "exit_code");
        json_t *sig = json_object_get(in, "signal"), *err = json_object_get(in, "error");
        json_t *dur = json_object_get(in, "duration_ms");
        end = (struct attempt_end){
            .reason = json_string_value(json_object_get(in, "reason")),
            .has_exit_code = json_is_integer(code),
            .exit_code = (int)json_integer_value(code),
            .signal = (int)json_integer_value(sig),
            .duration_ms = json_is_integer(dur) ? json_integer_value(dur) : -1,
            .error = json_is_string(err) ? json_string_value(err) : NULL,
            .stdout_head = out.len ? out.data : NULL,
            .stdout_len = out.len,
            .outputs = json_object_get(in, "outputs"),
        };
        ev = JOB_EV_FINISH;
        args.end = &end;
    }
    /*
     * Only an attempt's end that may be retried needs the spec (its retry policy), and an
     * array's task's (fan_task_ended reads its env); a record read without it is partial
     * (waiters_wake reads the job again to answer).
     */
    bool spec = ev == JOB_EV_FINISH &&
                (!end.has_exit_code || end.exit_code || !end.reason ||
                 proto_reason_parse(end.reason) != PROTO_REASON_EXIT || array_is_task_id(id));
    struct err ae = ERR_INIT;
    rc = store_job_apply(st, id, attempt, agent, spec, ev, &args, &j, &ae);
    buf_release(&out);
    switch (rc) {
    case 0:
        it->rec = j;
        it->changed = true;
        return 0;
    case LIFECYCLE_SAME: /* a repeated started: acknowledged, no change */
        job_release(&j);
        return 0;
    case ERR_NOTFOUND:
        return item_fail(it, 404, "job '%s' (attempt %d) not found", id, attempt);
    case ERR_CONFLICT: {
        /* finished again for an attempt already recorded: acknowledged, no change */
        bool ours = j.attempt == attempt && j.agent && !strcmp(j.agent, agent);
        bool repeat = ev == JOB_EV_FINISH && ours && job_state_terminal(j.state);
        bool running = ev == JOB_EV_UNLEASE && ours && j.state == JOB_RUNNING;
        job_release(&j);
        if (repeat) return 0;
        if (running)
            return item_fail(it, 409, "job '%s' attempt %d has started: it cannot be released",
                             id, attempt);
        return item_fail(it, 409, "job '%s' attempt %d is no longer leased to this agent", id,
                         attempt);
    }
    default:
        *e = ae;
        return rc;
    }
}

#define FINISH_LOOKAHEAD 64

/* The index of a later report of the batch that finishes the same attempt, or 0. */
static size_t finished_later(const struct reports_op *op, size_t i)
{
    json_t *in = op->items[i].in;
    const char *id = json_string_value(json_object_get(in, "job"));
    json_int_t attempt = json_integer_value(json_object_get(in, "attempt"));
    for (size_t k = i + 1; k < op->n && k <= i + FINISH_LOOKAHEAD; k++) {
        json_t *o = op->items[k].in;
        if (op->items[k].type == PROTO_REPORT_FINISHED &&
            json_integer_value(json_object_get(o, "attempt")) == attempt &&
            !strcmp(json_string_value(json_object_get(o, "job")), id))
            return k;
    }
    return 0;
}

/* The jobs the reports change, read in one go where that saves round trips (PostgreSQL). */
static int reports_prefetch(struct store *st, const struct reports_op *op, struct err *e)
{
    const char **ids = xcalloc(op->n ? op->n : 1, sizeof(*ids));
    int *heads = xcalloc(op->n ? op->n : 1, sizeof(*heads));
    size_t n = 0;
    for (size_t i = 0; i < op->n; i++) {
        if (op->items[i].type == PROTO_REPORT_LOG) continue;
        json_t *in = op->items[i].in;
        ids[n] = json_string_value(json_object_get(in, "job"));
        heads[n++] = op->items[i].type == PROTO_REPORT_FINISHED
                         ? (int)json_integer_value(json_object_get(in, "attempt"))
                         : 0;
    }
    int rc = store_job_prefetch(st, ids, heads, n, PROTO_RESULT_STDOUT_MAX, e);
    free(ids);
    free(heads);
    return rc;
}

static int reports_write(struct store *st, void *arg, struct err *e)
{
    struct reports_op *op = arg;
    int prc = reports_prefetch(st, op, e);
    if (prc) return prc;
    for (size_t i = 0; i < op->n; i++) {
        /*
         * started followed by finished in one batch: the finish records it all
         * (started_at from the started's start, else the duration): one write, not two.
         */
        size_t k;
        if (op->items[i].type == PROTO_REPORT_STARTED && (k = finished_later(op, i))) {
            op->items[i].same_as = k;
            if (!op->items[k].start_ms) op->items[k].start_ms = op->items[i].start_ms;
            continue;
        }
        int rc = apply_report(st, op->agent, &op->items[i], e);
        if (rc) return rc;
    }
    for (size_t i = 0; i < op->n; i++) /* a skipped started shares its finish's fate */
        if (op->items[i].same_as) op->items[i].status = op->items[op->items[i].same_as].status;
    return 0;
}

static void reports_free(struct reports_op *op)
{
    for (size_t i = 0; i < op->n; i++) {
        free(op->items[i].error);
        job_release(&op->items[i].rec);
    }
    free(op->items);
    free(op);
}

static void reports_done(void *arg, int rc, const struct err *e)
{
    struct reports_op *op = arg;
    struct http_req *r = op->r;
    struct server *s = srv(r);
    if (rc) {
        http_reply_err(r, e); /* frees r, also when its client is gone */
        reports_free(op);
        return;
    }
    json_t *results = json_array();
    size_t stale = 0;
    struct live_agent *a = fleet_agent(s->fleet, op->agent);
    json_t *fs = json_object_get(r->body, "free_slots");
    if (a && json_is_integer(fs)) /* freed slots are offered again only if it wants them */
        a->holding_back = true;
    for (size_t i = 0; i < op->n; i++) {
        struct report_item *it = &op->items[i];
        if (it->changed) fleet_job_changed(s->fleet, &it->rec, true);
        if (it->status == 200 && it->type == PROTO_REPORT_LOG)
            logs_notify(s->logs, json_string_value(json_object_get(it->in, "job")));
        if (a && it->type == PROTO_REPORT_FINISHED) /* an attempt it was told to kill, too */
            fleet_attempt_ended(s->fleet, a, json_string_value(json_object_get(it->in, "job")),
                                (int)json_integer_value(json_object_get(it->in, "attempt")));
        stale += it->status == 409;
        json_array_append_new(
            results, it->error ? json_pack("{s:i, s:s}", "status", it->status, "error", it->error)
                               : json_pack("{s:i}", "status", it->status));
    }
    if (a && json_is_integer(fs)) fleet_agent_offer(s->fleet, a, (int)json_integer_value(fs));
    if (a && json_is_true(json_object_get(r->body, "draining")))
        fleet_agent_release_poll(s->fleet, a);
    if (r->gone) { /* pending cancels stay with the agent for its next poll */
        json_decref(results);
        http_req_drop(r);
    } else {
        json_t *cancel = a ? fleet_take_cancels(s->fleet, a, NULL) : json_array();
        int status = op->n && stale == op->n ? 409 : 200;
        http_reply_json(r, status, json_pack("{s:o, s:o}", "results", results, "cancel", cancel));
    }
    reports_free(op);
}

int api_agents_reports(struct http_req *r)
{
    struct err e = ERR_INIT;
    json_t *reps = json_object_get(r->body, "reports");
    struct live_agent *a = own_agent(r);
    if (!a) return HTTP_DONE;
    if (!json_is_object(r->body) || !json_is_array(reps) ||
        json_array_size(reps) > PROTO_REPORTS_MAX) {
        http_reply_error(r, ERR_INVALID, "reports",
                         "the body must be {\"reports\": [...]} with at most %d reports",
                         PROTO_REPORTS_MAX);
        return HTTP_DONE;
    }
    static const char *const known[] = {"reports",  "free_slots", "draining",
                                        "instance", "prefetch",   NULL};
    long free_slots, prefetch;
    json_t *draining = json_object_get(r->body, "draining");
    if (refuse_unknown(r->body, known, &e) || same_instance(a, r->body, &e) ||
        int_field(r->body, "free_slots", 0, a->rec.slots, 0, &free_slots, &e) ||
        prefetch_field(a, r->body, &prefetch, &e) ||
        (draining && !json_is_boolean(draining) &&
         err_field(&e, ERR_INVALID, "draining", "draining must be true or false"))) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    a->prefetch = (int)prefetch;
    struct reports_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    snprintf(op->agent, sizeof(op->agent), "%s", a->rec.name);
    op->n = json_array_size(reps);
    op->items = xcalloc(op->n ? op->n : 1, sizeof(*op->items));
    int64_t arrival = time_now_ms();
    for (size_t i = 0; i < op->n; i++) {
        struct report_item *it = &op->items[i];
        it->in = json_array_get(reps, i);
        if (api_agents_check_report(it->in, i, &it->type, &e)) {
            reports_free(op);
            http_reply_err(r, &e);
            return HTTP_DONE;
        }
        json_t *ago = json_object_get(it->in, "started_ms_ago");
        if (json_is_integer(ago)) { /* the start as the agent saw it, never before the lease */
            int attempt = (int)json_integer_value(json_object_get(it->in, "attempt"));
            int64_t leased = fleet_lease_time(
                srv(r)->fleet, json_string_value(json_object_get(it->in, "job")), attempt);
            it->start_ms = arrival - json_integer_value(ago);
            if (it->start_ms < leased) it->start_ms = leased;
            if (it->start_ms < 1) it->start_ms = 1;
        }
    }
    /* A late report from a lost agent is still looked at: fencing refuses what is stale. */
    if (a->rec.state == AGENT_UP || a->rec.state == AGENT_DRAINING)
        fleet_agent_seen(srv(r)->fleet, a);
    /* the jobs these reports end or give back (their ids live in r->body, read-only from
       here on) */
    bool offer = json_is_integer(json_object_get(r->body, "free_slots")) && !json_is_true(draining);
    const char **ending = offer ? xcalloc(op->n ? op->n : 1, sizeof(*ending)) : NULL;
    int *attempts = offer ? xcalloc(op->n ? op->n : 1, sizeof(*attempts)) : NULL;
    size_t nending = 0;
    for (size_t i = 0; offer && i < op->n; i++) {
        if (op->items[i].type != PROTO_REPORT_FINISHED &&
            op->items[i].type != PROTO_REPORT_RELEASED)
            continue;
        json_t *in = op->items[i].in;
        ending[nending] = json_string_value(json_object_get(in, "job"));
        attempts[nending++] = (int)json_integer_value(json_object_get(in, "attempt"));
    }
    commit_submit(srv(r)->commit, reports_write, reports_done, op);
    if (offer)
        fleet_agent_offer_early(srv(r)->fleet, a, (int)free_slots, ending, attempts, nending);
    free(ending);
    free(attempts);
    return HTTP_DEFERRED;
}

/* ---- leave, drain, list ---- */

/* The agent named in the path (id or name), or NULL after answering 404. */
static struct live_agent *named(struct http_req *r)
{
    struct live_agent *a = fleet_agent(srv(r)->fleet, r->params[0]);
    if (!a) http_reply_error(r, ERR_NOTFOUND, NULL, "agent '%s' not found", r->params[0]);
    return a;
}

int api_agents_leave(struct http_req *r)
{
    struct live_agent *a = own_agent(r);
    if (!a) return HTTP_DONE;
    fleet_agent_set_state(srv(r)->fleet, a, AGENT_LEFT, r); /* answers once stored */
    return HTTP_DEFERRED;
}

int api_agents_drain(struct http_req *r)
{
    struct live_agent *a = r->role == ROLE_ADMIN ? named(r) : own_agent(r);
    if (!a) return HTTP_DONE;
    if (a->rec.state != AGENT_UP && a->rec.state != AGENT_DRAINING) {
        http_reply_error(r, ERR_CONFLICT, NULL, "agent '%s' is %s", a->rec.name,
                         agent_state_name(a->rec.state));
        return HTTP_DONE;
    }
    fleet_agent_set_state(srv(r)->fleet, a, AGENT_DRAINING, r); /* answers once stored */
    return HTTP_DEFERRED;
}

int api_agents_list(struct http_req *r)
{
    http_reply_json(r, 200, fleet_agents_json(srv(r)->fleet));
    return HTTP_DONE;
}
