/*
 * fleet.c - see fleet.h.
 *
 * Flows, all started on the loop and finished in a commit callback:
 *   lease   poll -> sched_take -> commit (queued -> leased, fenced) -> answer the poll
 *   unlease the poll went away before its leases were answered: leased -> queued again
 *   end     lost agent or passed deadline -> commit (attempt ended, fenced) -> job changed
 * A lease in the table is exactly a job that the store has leased or running
 * for that agent and attempt (as of the last commit the loop has seen).
 */
#include "server/fleet.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/hmap.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/array.h"
#include "job/protocol.h"
#include "job/spec.h"
#include "server/commit.h"
#include "server/lease.h"
#include "server/metrics.h"
#include "server/sched.h"
#include "store/store.h"

#define MAX_LEASES_PER_POLL 64

struct lease_rec {
    char job[UUID_STR_LEN];
    char agent_id[UUID_STR_LEN];
    int attempt;
    int slots;
    int64_t deadline; /* 0 = none */
    int64_t leased_at; /* ms since the epoch; 0 = unknown (leased by another server) */
    bool ending;      /* an end-of-attempt commit is in flight */
    bool unheld;      /* its agent said it does not run it: no cancel, nothing to wait for */
    char tenant[132]; /* its job's tenant, which holds it (sched_hold) ... */
    char queue[72];   /* ... and its queue */
};

#define FIT_CACHE 8 /* job shapes whose fit is remembered (fleet_job_fit_text) */
#define DYING_RETELL_MS 5000 /* an agent still running an attempt it was told to kill is told
                                again after this, not at each of its polls */

/*
 * An attempt an agent was told to kill (a cancel, a deadline, a lease another server ended)
 * and may still run: it gets SIGTERM, then SIGKILL after its grace. Its job's next attempt
 * is not leased until it is gone -- the agent's finished report for it, a poll that no
 * longer lists it, or the agent lost or gone -- so that a retry never runs beside it.
 */
struct dying {
    char agent_id[UUID_STR_LEN];
    int attempt;
    int64_t told_at; /* when the agent was last told */
    bool held;       /* its job was queued meanwhile: ready once this attempt is gone */
};

struct fleet {
    struct fleet_deps d;
    struct hmap agents;  /* id -> struct live_agent */
    struct hmap by_name; /* name -> struct live_agent (same objects) */
    struct hmap leases;  /* job id -> struct lease_rec */
    struct hmap registering; /* names whose registration is being committed -> (void *)1 */
    struct hmap taking; /* jobs taken off the ready queues by a lease in flight -> (void *)1 */
    struct hmap dying;  /* job id -> struct dying: an attempt being killed on an agent */
    struct event *wake; /* active once per loop turn when jobs became ready */
    bool prefetch_held; /* a prefetch waited for another agent's free slot: wake after a lease */
    struct log_repeat seen_log, forget_log; /* the periodic writes failing */
    struct log_repeat lease_log; /* leases failing to commit (the store away) */
    int64_t silence_from; /* agents' silence is counted from here at the earliest
                             (fleet_agents_reread) */
    uint64_t scans; /* full scans of the store's agents ended (fleet_agents_synced_all) */
    uint64_t gen; /* bumped by every change to what fleet_fit counts (fits_changed) */
    struct fit_entry {
        char *queue; /* NULL: unused */
        json_t *requires;
        int slots;
        unsigned runtimes;
        int64_t paused_at;
        uint64_t gen;
        int listeners;
        char *text; /* sched_fit_warnings, as JSON text */
    } fits[FIT_CACHE];
    unsigned fit_next; /* the entry a new shape takes */
};

static void reply_poll(struct fleet *f, struct live_agent *a, struct buf *leases);
static bool try_lease(struct fleet *f, struct live_agent *a);
static void dying_sweep(struct fleet *f, const struct live_agent *a, json_t *running);

static int64_t clock_ms(struct fleet *f)
{
    return f->d.now_ms(f->d.arg);
}

/* ---- agents ---- */

static void free_agent(void *v)
{
    struct live_agent *a = v;
    if (a->poll_timer) event_free(a->poll_timer);
    json_decref(a->cancel);
    json_decref(a->cached);
    agent_rec_release(&a->rec);
    free(a);
}

static void wake_polls(struct fleet *f);

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    wake_polls(arg);
}

struct fleet *fleet_new(const struct fleet_deps *d)
{
    struct fleet *f = xcalloc(1, sizeof(*f));
    f->d = *d;
    hmap_init(&f->agents);
    hmap_init(&f->by_name);
    hmap_init(&f->leases);
    hmap_init(&f->registering);
    hmap_init(&f->taking);
    hmap_init(&f->dying);
    f->wake = event_new(d->base, -1, 0, on_wake, f);
    return f;
}

void fleet_stop(struct fleet *f)
{
    for (struct hmap_entry *e = hmap_first(&f->agents); e; e = hmap_next(&f->agents, e)) {
        struct live_agent *a = e->value;
        if (a->poll) reply_poll(f, a, NULL);
    }
}

void fleet_free(struct fleet *f)
{
    if (!f) return;
    fleet_stop(f);
    hmap_release(&f->by_name, NULL);
    hmap_release(&f->agents, free_agent);
    hmap_release(&f->leases, free);
    hmap_release(&f->registering, NULL);
    hmap_release(&f->taking, NULL);
    hmap_release(&f->dying, free);
    for (int i = 0; i < FIT_CACHE; i++) {
        free(f->fits[i].queue);
        json_decref(f->fits[i].requires);
        free(f->fits[i].text);
    }
    event_free(f->wake);
    free(f);
}

/* What fleet_fit counts has changed (an agent's state, queues, labels, slots or runtimes). */
static void fits_changed(struct fleet *f)
{
    f->gen++;
}

struct live_agent *fleet_agent(struct fleet *f, const char *id_or_name)
{
    struct live_agent *a = hmap_get(&f->agents, id_or_name);
    return a ? a : hmap_get(&f->by_name, id_or_name);
}

bool fleet_agent_owned_by(const struct live_agent *a, const char *token)
{
    return a->rec.owner && !strcmp(a->rec.owner, token);
}

int fleet_may_register(struct fleet *f, const char *name, const char *token, const char *instance,
                       struct err *e)
{
    struct live_agent *a = hmap_get(&f->by_name, name);
    if (a && a->rec.owner && strcmp(a->rec.owner, token))
        return err_field(e, ERR_CONFLICT, "name",
                         "agent '%s' is registered with another token: pass --name to choose "
                         "another name for this agent",
                         name);
    if (hmap_get(&f->registering, name))
        return err_field(e, ERR_CONFLICT, "name",
                         "agent '%s' is being registered by another process: pass --name to "
                         "give each agent its own name",
                         name);
    if (!a || !a->rec.owner) return 0; /* new, or stored before owners: this one claims it */
    bool live = a->rec.state == AGENT_UP || a->rec.state == AGENT_DRAINING;
    bool same = instance && a->rec.instance && !strcmp(instance, a->rec.instance);
    if (live && !same)
        return err_field(e, ERR_CONFLICT, "name",
                         "agent '%s' is %s and held by another agent process (another work "
                         "folder, maybe on a copy of this machine): pass --name to give each "
                         "agent its own name",
                         name, agent_state_name(a->rec.state));
    return 0;
}

void fleet_register_begin(struct fleet *f, const char *name)
{
    hmap_put(&f->registering, name, (void *)1);
}

void fleet_register_end(struct fleet *f, const char *name)
{
    hmap_del(&f->registering, name);
}

static struct live_agent *add_agent(struct fleet *f, struct agent_rec *rec)
{
    struct live_agent *a = xcalloc(1, sizeof(*a));
    a->rec = *rec;
    agent_rec_init(rec);
    a->cancel = json_array();
    a->free_slots = a->rec.slots;
    a->fleet = f;
    hmap_put(&f->agents, a->rec.id, a);
    hmap_put(&f->by_name, a->rec.name, a);
    fits_changed(f);
    return a;
}

struct live_agent *fleet_agent_registered(struct fleet *f, struct agent_rec *rec)
{
    struct live_agent *a = hmap_get(&f->agents, rec->id);
    if (!a) return add_agent(f, rec);
    json_decref(a->rec.labels);
    json_decref(a->rec.queues);
    free(a->rec.version);
    a->rec.labels = rec->labels;
    a->rec.queues = rec->queues;
    a->rec.version = rec->version;
    free(a->rec.owner);
    free(a->rec.instance);
    a->rec.owner = rec->owner;
    a->rec.instance = rec->instance;
    json_decref(a->rec.limits);
    a->rec.limits = rec->limits;
    rec->limits = NULL;
    rec->labels = rec->queues = NULL;
    rec->version = rec->owner = rec->instance = NULL;
    a->rec.slots = rec->slots;
    a->rec.runtimes = rec->runtimes;
    a->rec.state = AGENT_UP;
    fits_changed(f); /* its queues, labels, slots or runtimes may be new */
    a->rec.last_seen = clock_ms(f);
    a->free_slots = a->rec.slots;
    a->prefetch = 0;
    a->drain_told = false;
    a->holding_back = false;
    agent_rec_release(rec);
    return a;
}

void fleet_agent_seen(struct fleet *f, struct live_agent *a)
{
    a->rec.last_seen = clock_ms(f);
}

void fleet_agent_set_runtimes(struct fleet *f, struct live_agent *a, unsigned runtimes)
{
    a->rec.runtimes = runtimes;
    fits_changed(f);
}

/* Answers req with json (taken), 200. */
static void reply_json(struct fleet *f, void *req, json_t *json)
{
    char *s = json_dumps(json, JSON_COMPACT);
    json_decref(json);
    size_t n = strlen(s);
    s[n] = '\n'; /* over the NUL: the answer is a line */
    f->d.reply(f->d.arg, req, s, n + 1);
}

/* ---- committing agent state ---- */

struct state_op {
    char id[UUID_STR_LEN];
    int state;
    int64_t last_seen;
    struct fleet *f;
    void *answer; /* answered once the state is stored, or NULL */
};

static int state_write(struct store *st, void *arg, struct err *e)
{
    struct state_op *op = arg;
    return store_agent_set_state(st, op->id, op->state, op->last_seen, e);
}

static void state_done(void *arg, int rc, const struct err *e)
{
    struct state_op *op = arg;
    if (rc) log_error("agent=%s cannot record its state: %s", op->id, e->msg);
    if (op->answer) {
        struct fleet *f = op->f;
        struct live_agent *a = fleet_agent(f, op->id);
        if (rc) {
            f->d.reply_error(f->d.arg, op->answer, e);
        } else if (a) { /* the state this change stored (a drained agent may have left since) */
            json_t *j = fleet_agent_json(a);
            json_object_set_new(j, "state", json_string(agent_state_name(op->state)));
            reply_json(f, op->answer, j);
        } else {
            struct err gone = ERR_INIT;
            err_set(&gone, ERR_NOTFOUND, "agent '%s' is gone", op->id);
            f->d.reply_error(f->d.arg, op->answer, &gone);
        }
    }
    free(op);
}

static void commit_state(struct fleet *f, struct live_agent *a, void *answer)
{
    struct state_op *op = xcalloc(1, sizeof(*op));
    op->f = f;
    op->answer = answer;
    memcpy(op->id, a->rec.id, sizeof(op->id));
    op->state = a->rec.state;
    op->last_seen = a->rec.last_seen;
    commit_submit(f->d.commit, state_write, state_done, op);
}

/*
 * What store_job_apply()'s rc means to the fleet: 1 when applied (j is the
 * job after), 0 when the job is no longer as the caller knew it (j released),
 * or a negative store error.
 */
static int applied(int rc, struct job *j, struct err *e)
{
    if (!rc) return 1;
    if (rc == LIFECYCLE_SAME || rc == ERR_CONFLICT) job_release(j);
    if (rc != LIFECYCLE_SAME && rc != ERR_CONFLICT && rc != ERR_NOTFOUND) return rc;
    err_clear(e);
    return 0;
}


/* ---- ending attempts for the agent (lost, deadline, left) ---- */

struct end_item {
    char job[UUID_STR_LEN];
    int attempt;
    struct job rec; /* the changed job, when changed */
    bool changed;
};

struct end_op {
    struct fleet *f;
    int64_t now;
    const char *reason;
    const char *error;
    size_t n;
    struct end_item *items;
};

static int end_write(struct store *st, void *arg, struct err *e)
{
    struct end_op *op = arg;
    int64_t now = op->now;
    for (size_t i = 0; i < op->n; i++) {
        struct end_item *it = &op->items[i];
        struct attempt_end end = {.reason = op->reason, .duration_ms = -1, .error = op->error};
        int reason = proto_reason_parse(op->reason);
        enum job_event ev = reason == PROTO_REASON_TIMEOUT ? JOB_EV_DEADLINE
                            : reason == PROTO_REASON_LOST  ? JOB_EV_LOST
                                                           : JOB_EV_FINISH;
        struct job_event_args args = {.now_ms = now, .end = &end};
        int rc = applied(store_job_apply(st, it->job, it->attempt, NULL, true, ev, &args,
                                         &it->rec, e),
                         &it->rec, e);
        if (rc < 0) return rc;
        it->changed = rc > 0;
    }
    return 0;
}

static void end_done(void *arg, int rc, const struct err *e)
{
    struct end_op *op = arg;
    if (rc) log_error("cannot end %zu attempt(s) (%s): %s", op->n, op->reason, e->msg);
    for (size_t i = 0; i < op->n; i++) {
        struct end_item *it = &op->items[i];
        struct lease_rec *l = hmap_get(&op->f->leases, it->job);
        if (l) l->ending = false;
        if (!rc && it->changed) {
            log_info("job=%s attempt=%d ended: %s", it->job, it->attempt, op->reason);
            fleet_job_changed(op->f, &it->rec, false);
        }
        if (it->changed) job_release(&it->rec);
    }
    free(op->items);
    free(op);
}

/* Ends, in one commit, the attempts of the leases for which pick() says yes. */
static void end_leases(struct fleet *f, bool (*pick)(struct lease_rec *, const void *),
                       const void *arg, const char *reason, const char *error)
{
    struct end_op *op = NULL;
    size_t cap = 0;
    for (struct hmap_entry *e = hmap_first(&f->leases); e; e = hmap_next(&f->leases, e)) {
        struct lease_rec *l = e->value;
        if (l->ending || !pick(l, arg)) continue;
        if (!op) {
            op = xcalloc(1, sizeof(*op));
            op->f = f;
            op->now = clock_ms(f);
            op->reason = reason;
            op->error = error;
        }
        if (op->n == cap) {
            cap = cap ? cap * 2 : 8;
            op->items = xrealloc(op->items, cap * sizeof(*op->items));
        }
        struct end_item *it = &op->items[op->n++];
        memset(it, 0, sizeof(*it));
        memcpy(it->job, l->job, sizeof(it->job));
        it->attempt = l->attempt;
        l->ending = true;
    }
    if (op) commit_submit(f->d.commit, end_write, end_done, op);
}

static bool lease_of_agent(struct lease_rec *l, const void *agent_id)
{
    return !strcmp(l->agent_id, agent_id);
}

/* The agent is lost or left: the attempts it holds end (reason lost, or error). */
static void end_agent_leases(struct fleet *f, struct live_agent *a)
{
    bool lost = a->rec.state == AGENT_LOST;
    end_leases(f, lease_of_agent, a->rec.id,
               proto_reason_name(lost ? PROTO_REASON_LOST : PROTO_REASON_ERROR),
               lost ? "the agent stopped answering" : "the agent left");
}

static bool lease_past(struct lease_rec *l, const void *now)
{
    return l->deadline && l->deadline < *(const int64_t *)now;
}

void fleet_agent_set_state(struct fleet *f, struct live_agent *a, int state, void *answer)
{
    if (a->rec.state == state) {
        if (answer) reply_json(f, answer, fleet_agent_json(a));
        return;
    }
    log_info("agent=%s name=%s %s -> %s", a->rec.id, a->rec.name, agent_state_name(a->rec.state),
             agent_state_name(state));
    a->rec.state = state;
    fits_changed(f);
    commit_state(f, a, answer);
    if (state == AGENT_LOST || state == AGENT_LEFT) {
        end_agent_leases(f, a);
        dying_sweep(f, a, NULL); /* its processes went with it */
    }
    if (a->poll && !a->leasing) reply_poll(f, a, NULL);
}

/* ---- polls ---- */

void fleet_poll_gone(struct fleet *f, struct live_agent *a, void *r)
{
    (void)f;
    if (a->poll != r) return;
    if (a->poll_timer) evtimer_del(a->poll_timer);
    a->poll = NULL;
}

static void poll_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct live_agent *a = arg;
    if (a->poll && !a->leasing) reply_poll(a->fleet, a, NULL);
}

/* The parked poll waits until a->poll_until for work (answered empty then), or now. */
static void park_poll(struct fleet *f, struct live_agent *a)
{
    int64_t wait_ms = a->poll_until - clock_ms(f);
    if (wait_ms <= 0) {
        reply_poll(f, a, NULL);
        return;
    }
    if (!a->poll_timer) a->poll_timer = evtimer_new(f->d.base, poll_timeout, a);
    struct timeval tv = {(time_t)(wait_ms / 1000), (suseconds_t)(wait_ms % 1000) * 1000};
    evtimer_add(a->poll_timer, &tv);
}

/*
 * Answers the agent's parked poll. `leases` (or NULL) holds the leases'
 * entries, comma-separated, written around their stored specs
 * (lease_answer_append); the answer is written as text around them.
 */
static void reply_poll(struct fleet *f, struct live_agent *a, struct buf *leases)
{
    void *r = a->poll;
    a->poll = NULL;
    if (a->poll_timer) evtimer_del(a->poll_timer);
    char *cancel = json_dumps(a->cancel, JSON_COMPACT);
    json_decref(a->cancel);
    a->cancel = json_array();
    if (a->rec.state == AGENT_DRAINING) a->drain_told = true;
    struct buf b = BUF_INIT;
    buf_adds(&b, "{\"leases\":[");
    if (leases && leases->len) buf_add(&b, leases->data, leases->len);
    buf_addf(&b, "],\"cancel\":%s,\"drain\":%s}\n", cancel,
             a->rec.state == AGENT_DRAINING ? "true" : "false");
    free(cancel);
    size_t n = b.len;
    f->d.reply(f->d.arg, r, buf_detach(&b), n);
}

/* The attempt of `job` being killed on agent a, or NULL. */
static struct dying *dying_on(struct fleet *f, const struct live_agent *a, const char *job,
                              int attempt)
{
    struct dying *d = hmap_get(&f->dying, job);
    return d && d->attempt == attempt && !strcmp(d->agent_id, a->rec.id) ? d : NULL;
}

/* The attempt of `job` that was being killed is gone: its job, held meanwhile, is ready. */
static void dying_gone(struct fleet *f, const char *job_id)
{
    char job[UUID_STR_LEN]; /* job_id may be the entry's own key, freed with it */
    snprintf(job, sizeof(job), "%s", job_id);
    struct dying *d = hmap_del(&f->dying, job);
    if (!d) return;
    if (d->held) {
        struct job j;
        struct err e = ERR_INIT;
        int rc = store_job_get(f->d.reads, job, &j, &e); /* its spec too (sched_add) */
        if (rc && rc != ERR_NOTFOUND) {
            /* kept: read again when the agent next polls without it or is lost */
            log_warn("job=%s cannot be read to queue it again (%s): tried again later", job,
                     e.msg);
            hmap_put(&f->dying, job, d);
            return;
        }
        if (!rc && j.state == JOB_QUEUED) {
            log_debug("job=%s attempt %d gone from its agent: ready", job, d->attempt);
            sched_add(f->d.sched, &j);
            event_active(f->wake, EV_TIMEOUT, 0);
        }
        if (!rc) job_release(&j);
    }
    free(d);
}

/* Does an agent's poll list (`running`, NULL for none) hold attempt `attempt` of `job`? */
static bool lists(json_t *running, const char *job, int attempt)
{
    size_t i;
    json_t *it;
    json_array_foreach(running, i, it)
    {
        const char *id = json_string_value(json_object_get(it, "job"));
        if (id && !strcmp(id, job) && json_integer_value(json_object_get(it, "attempt")) == attempt)
            return true;
    }
    return false;
}

/* Every attempt being killed on agent a is gone (it is lost or left: its processes with it),
   or, with `running` (its poll's list), those it no longer lists. */
static void dying_sweep(struct fleet *f, const struct live_agent *a, json_t *running)
{
    char(*gone)[UUID_STR_LEN] = NULL; /* collected first: no change to the map while walked */
    size_t n = 0;
    for (struct hmap_entry *e = hmap_first(&f->dying); e; e = hmap_next(&f->dying, e)) {
        const struct dying *d = e->value;
        if (strcmp(d->agent_id, a->rec.id) || lists(running, e->key, d->attempt)) continue;
        gone = xrealloc(gone, (n + 1) * sizeof(*gone));
        snprintf(gone[n++], UUID_STR_LEN, "%s", e->key);
    }
    for (size_t i = 0; i < n; i++)
        dying_gone(f, gone[i]);
    free(gone);
}

/* Asks the agent to kill one attempt (never a later attempt of the same job it may run). */
static void add_cancel(struct live_agent *a, const char *job, int attempt)
{
    struct fleet *f = a->fleet;
    if (a->rec.state == AGENT_UP || a->rec.state == AGENT_DRAINING) {
        struct dying *d = hmap_get(&f->dying, job);
        if (!d) {
            d = xcalloc(1, sizeof(*d));
            hmap_put(&f->dying, job, d);
        }
        memcpy(d->agent_id, a->rec.id, sizeof(d->agent_id));
        d->attempt = attempt;
        d->told_at = clock_ms(f);
    }
    size_t i;
    json_t *v;
    json_array_foreach(a->cancel, i, v)
    {
        if (!strcmp(json_string_value(json_object_get(v, "job")), job) &&
            json_integer_value(json_object_get(v, "attempt")) == attempt)
            return;
    }
    json_array_append_new(a->cancel, json_pack("{s:s, s:i}", "job", job, "attempt", attempt));
}

bool fleet_job_ending(struct fleet *f, const char *job, int *attempt, const char **agent)
{
    const struct dying *d = hmap_get(&f->dying, job);
    if (!d || !d->held) return false;
    const struct live_agent *a = hmap_get(&f->agents, d->agent_id);
    *attempt = d->attempt;
    *agent = a ? a->rec.name : d->agent_id;
    return true;
}

void fleet_attempt_ended(struct fleet *f, struct live_agent *a, const char *job, int attempt)
{
    if (!dying_on(f, a, job, attempt)) return;
    dying_gone(f, job);
    /* its parked poll listed the attempt as running: answered now, the agent polls again with
       what it holds (a draining agent leaves once nothing is running) */
    if (a->poll && !a->leasing) reply_poll(f, a, NULL);
}

int64_t fleet_lease_time(struct fleet *f, const char *job, int attempt)
{
    const struct lease_rec *l = hmap_get(&f->leases, job);
    return l && l->attempt == attempt ? l->leased_at : 0;
}

static bool holds(struct fleet *f, const struct live_agent *a, const char *job, int attempt)
{
    const struct lease_rec *l = hmap_get(&f->leases, job);
    return l && l->attempt == attempt && !strcmp(l->agent_id, a->rec.id);
}

static int job_read_synced(void *arg, const struct job *j)
{
    fleet_job_synced(arg, j);
    return 0;
}

/*
 * An attempt the agent runs that this server does not know as its lease is killed. With
 * several servers what is known here may lag behind the store: a lease another server
 * committed whose event is not read here yet (sync lags, or failed while the database was
 * away, and the agent came here from that server). Such jobs are read as stored first and
 * applied (fleet_job_synced); only an attempt the store does not hold for the agent is
 * killed, and none when the store cannot be read (the agent lists them again at its next
 * poll). Killed otherwise, the attempt would end cancelled in the store that holds it.
 */
json_t *fleet_take_cancels(struct fleet *f, struct live_agent *a, json_t *running)
{
    size_t i, n = 0;
    json_t *item;
    const char **ids = NULL; /* with a shared store: the attempts to read before a kill */
    int *attempts = NULL;
    json_array_foreach(running, i, item)
    {
        const char *job = json_string_value(json_object_get(item, "job"));
        int attempt = (int)json_integer_value(json_object_get(item, "attempt"));
        if (!job || holds(f, a, job, attempt)) continue;
        /* told already and on its way out (its grace): not told again at each poll, which
           would answer each at once, the agent's next poll too, in a loop */
        const struct dying *d = dying_on(f, a, job, attempt);
        if (d && clock_ms(f) - d->told_at < DYING_RETELL_MS) continue;
        if (!f->d.shared) {
            add_cancel(a, job, attempt);
            continue;
        }
        if (!ids) {
            ids = xcalloc(json_array_size(running), sizeof(*ids));
            attempts = xcalloc(json_array_size(running), sizeof(*attempts));
        }
        attempts[n] = attempt;
        ids[n++] = job;
    }
    struct err e = ERR_INIT;
    if (n) {
        log_debug("agent=%s: %zu running job(s) not known here as its leases: read", a->rec.name,
                  n);
        if (store_job_each(f->d.reads, ids, n, job_read_synced, f, &e)) {
            log_warn("agent=%s: %zu running job(s) not known here as its leases, not read from "
                     "the store (%s): none is killed now", a->rec.name, n, e.msg);
            n = 0;
        }
    }
    for (i = 0; i < n; i++)
        if (!holds(f, a, ids[i], attempts[i])) add_cancel(a, ids[i], attempts[i]);
    free(ids);
    free(attempts);
    json_t *out = a->cancel;
    a->cancel = json_array();
    return out;
}

void fleet_agent_offer(struct fleet *f, struct live_agent *a, int free_slots)
{
    a->free_slots = free_slots;
    a->holding_back = free_slots < a->rec.slots - a->held_slots;
    try_lease(f, a);
}

void fleet_agent_release_poll(struct fleet *f, struct live_agent *a)
{
    if (a->poll && !a->leasing) reply_poll(f, a, NULL);
}

struct not_held {
    const char *agent_id;
    json_t *running;
};

/* A lease of the agent's that its poll does not list: it never reached it (marked so). */
static bool lease_not_held(struct lease_rec *l, const void *arg)
{
    const struct not_held *nh = arg;
    if (strcmp(l->agent_id, nh->agent_id) || lists(nh->running, l->job, l->attempt)) return false;
    l->unheld = true;
    return true;
}

void fleet_poll(struct fleet *f, struct live_agent *a, void *r, int free_slots, json_t *running,
                int64_t wait_ms)
{
    fleet_agent_seen(f, a);
    a->free_slots = free_slots;
    a->holding_back = free_slots < a->rec.slots - a->held_slots;
    /*
     * The agent sends a poll only once the previous one was answered, so every
     * lease granted before now has reached it or was lost on the way; one it
     * does not list never reached it. Such a job is ended (reason lost) and
     * retried rather than left leased forever.
     */
    if (json_is_array(running) && !a->leasing && a->held) {
        struct not_held nh = {a->rec.id, running};
        end_leases(f, lease_not_held, &nh, proto_reason_name(PROTO_REASON_LOST),
                   "the lease never reached the agent");
    }
    if (a->poll) /* a new poll replaces an old one the agent gave up on */
        reply_poll(f, a, NULL);
    if (json_is_array(running)) dying_sweep(f, a, running); /* what it killed, gone */
    json_t *cancels = fleet_take_cancels(f, a, running);
    json_decref(a->cancel);
    a->cancel = cancels;
    a->poll = r;
    bool tell_drain = a->rec.state == AGENT_DRAINING && !a->drain_told;
    if (json_array_size(a->cancel) || tell_drain || wait_ms <= 0) {
        a->poll_until = 0; /* answered once its lease (if any) is committed */
        if (!try_lease(f, a)) reply_poll(f, a, NULL);
        return;
    }
    a->poll_until = clock_ms(f) + wait_ms;
    if (try_lease(f, a)) return;
    park_poll(f, a);
}

/* ---- leasing ---- */

struct lease_op {
    struct fleet *f;
    char agent_id[UUID_STR_LEN];
    struct sched_job **taken;  /* the scheduler's picks, parallel to g->c */
    struct lease_grant *g;     /* written by lease_grant_write (lease.h) */
    struct job *back;          /* unlease: the records given back */
    bool *unleased;
    int64_t t0_ns; /* when its jobs were taken off the ready queue (metrics) */
};

static void lease_op_free(struct lease_op *op)
{
    if (op->back)
        for (size_t i = 0; i < op->g->n; i++)
            job_release(&op->back[i]); /* unfilled entries are zeroed: harmless */
    free(op->back);
    free(op->unleased);
    free(op->taken);
    lease_grant_free(op->g);
    free(op);
}

static int lease_write(struct store *st, void *arg, struct err *e)
{
    struct lease_op *op = arg;
    return lease_grant_write(st, op->g, e); /* a store error fails the batch: jobs put back */
}

static void unlease(struct fleet *f, struct lease_op *op);

static void lease_done(void *arg, int rc, const struct err *e)
{
    struct lease_op *op = arg;
    struct fleet *f = op->f;
    struct lease_grant *g = op->g;
    struct live_agent *a = hmap_get(&f->agents, op->agent_id);
    a->leasing = false;
    int64_t now_ms = clock_ms(f);
    if (rc) { /* each poll fails alike while the store is away: logged as one failure */
        log_repeat_fail(&f->lease_log, now_ms, LOG_ERROR, "agent=%s cannot lease: %s",
                        op->agent_id, e->msg);
        for (size_t i = 0; i < g->n; i++)
            g->c[i].leased = false;
    } else {
        log_repeat_ok(&f->lease_log, "leasing");
    }
    struct buf leases = BUF_INIT;
    if (!rc) metrics_lease(f->d.metrics, (double)(time_mono_ns() - op->t0_ns) / 1e9);
    uint64_t missed = 0;
    for (size_t i = 0; i < g->n; i++) {
        struct sched_job *sj = op->taken[i];
        struct store_lease *c = &g->c[i];
        op->taken[i] = NULL;
        if (!sj->array) hmap_del(&f->taking, sj->id);
        if (!c->leased) {
            if (rc) {
                sched_put_back(f->d.sched, sj);
                continue;
            }
            /* an array with nothing left to claim (cancelled, or claimed by another server) */
            if (c->exhausted) sched_remove(f->d.sched, sj->id);
            sched_untake(f->d.sched, sj); /* no longer queued: cancelled, or leased elsewhere */
            missed++;
            continue;
        }
        struct lease_rec *l = xcalloc(1, sizeof(*l));
        memcpy(l->job, c->job, sizeof(l->job));
        memcpy(l->agent_id, a->rec.id, sizeof(l->agent_id));
        l->attempt = c->attempt;
        l->slots = sj->slots;
        l->deadline = g->deadline[i];
        l->leased_at = g->now_ms;
        snprintf(l->tenant, sizeof(l->tenant), "%s", sj->tenant); /* held since taken */
        snprintf(l->queue, sizeof(l->queue), "%s", sj->queue);
        struct lease_rec *old = hmap_put(&f->leases, c->job, l);
        if (old) { /* known already from the store (fleet_job_synced): counted once */
            sched_release(f->d.sched, old->tenant, old->queue);
            struct live_agent *o = hmap_get(&f->agents, old->agent_id);
            if (o) {
                o->held--;
                o->held_slots -= old->slots;
            }
            free(old);
        }
        a->held++;
        a->held_slots += sj->slots;
        a->free_slots -= sj->slots;
        log_debug("job=%s attempt=%d leased agent=%s", c->job, c->attempt, a->rec.name);
        /* ready since its run_after (submit time + delay, or the retry's backoff) */
        metrics_queue_wait(f->d.metrics, sj->queue, (double)(now_ms - sj->run_after) / 1000.0);
        if (leases.len) buf_addc(&leases, ',');
        lease_answer_append(&leases, c, l->deadline);
        sched_job_free(sj);
    }
    metrics_lease_missed(f->d.metrics, missed);
    if (f->prefetch_held) { /* a prefetch waited for this agent (free_slot_elsewhere) */
        f->prefetch_held = false;
        event_active(f->wake, EV_TIMEOUT, 0);
    }
    /* it was lost or left while these leases were being committed: they end now */
    if (a->rec.state == AGENT_LOST || a->rec.state == AGENT_LEFT) end_agent_leases(f, a);
    if (a->poll && !leases.len && !rc && a->poll_until && a->rec.state == AGENT_UP) {
        /* None of its candidates could be leased: taken by another server, or ended
           meanwhile (they left the ready queues). The poll is not answered empty for that
           (the agent would pause before its next one, as after a poll that found nothing
           to wait for): it tries the others, else waits out its time. */
        log_debug("agent=%s none of %zu candidate(s) could be leased", a->rec.name, g->n);
        buf_release(&leases);
        lease_op_free(op);
        if (!try_lease(f, a)) park_poll(f, a);
        return;
    }
    if (a->poll) {
        reply_poll(f, a, &leases);
    } else if (leases.len) {
        buf_release(&leases);
        unlease(f, op); /* takes op */
        return;
    }
    buf_release(&leases);
    lease_op_free(op);
}

void fleet_agent_cached(struct fleet *f, struct live_agent *a, const json_t *cached)
{
    (void)f;
    if (!cached) return;
    json_decref(a->cached);
    a->cached = sched_cache_set(cached);
}

/* The slots an agent can take now: never more than its slots, whatever a stale report says. */
static int slots_free(const struct live_agent *a)
{
    int n = a->free_slots;
    return n > a->rec.slots - a->held_slots ? a->rec.slots - a->held_slots : n;
}

struct pref_ctx {
    struct fleet *f;
    const struct live_agent *polling;
};

/* The cache preference (sched.h): another agent up has one of sj's objects and room for it. */
static bool cached_elsewhere(void *arg, const struct sched_job *sj)
{
    struct pref_ctx *c = arg;
    for (struct hmap_entry *e = hmap_first(&c->f->agents); e; e = hmap_next(&c->f->agents, e)) {
        const struct live_agent *b = e->value;
        if (b != c->polling && b->cached && b->rec.state == AGENT_UP &&
            sched_could_take(sj, b->rec.queues, b->rec.labels, b->rec.runtimes, slots_free(b),
                             b->cached))
            return true;
    }
    return false;
}

/*
 * Another agent up, its poll parked here and not being served, has a free slot and a job it
 * could take now: a's prefetch waits for it (a job held beyond a's slots would wait on a while
 * that agent could start it at once). Sets f->prefetch_held so that the next lease looks
 * again at the polls once that agent has been served.
 */
static bool free_slot_elsewhere(struct fleet *f, const struct live_agent *a)
{
    for (struct hmap_entry *e = hmap_first(&f->agents); e; e = hmap_next(&f->agents, e)) {
        const struct live_agent *b = e->value;
        int n;
        if (b != a && b->poll && !b->leasing && b->rec.state == AGENT_UP &&
            (n = slots_free(b)) > 0 &&
            sched_has_work(f->d.sched, b->rec.queues, b->rec.labels, b->rec.runtimes, n)) {
            f->prefetch_held = true;
            return true;
        }
    }
    return false;
}

/*
 * Leases up to free_slots, plus what the agent prefetches, to a's parked poll: never more than
 * its slots and prefetch less held_slots, whatever a stale report says. (A prefetched job waits
 * on the agent for a slot; the agent gives it back when it waits too long: protocol.md.) No
 * prefetch while another agent here could start a job now (free_slot_elsewhere).
 */
static bool lease_slots(struct fleet *f, struct live_agent *a, int free_slots, int held_slots)
{
    if (a->leasing || !a->poll || a->rec.state != AGENT_UP) return false;
    /* Asked only when a has work it could take at all (its slots and prefetch at most):
       otherwise each parked poll that a wake offers work to would look at every agent, and
       a wake would cost parked polls x agents (bench/fleet.c: 37 ms with 1,000 idle agents
       that prefetch, against 0.09 ms with none that does; bench/RESULTS.md). */
    int most = a->rec.slots + a->prefetch - held_slots, prefetch = 0;
    if (a->prefetch > 0 && most > 0 &&
        sched_has_work(f->d.sched, a->rec.queues, a->rec.labels, a->rec.runtimes, most) &&
        !free_slot_elsewhere(f, a))
        prefetch = a->prefetch;
    free_slots += prefetch;
    if (free_slots > a->rec.slots + prefetch - held_slots)
        free_slots = a->rec.slots + prefetch - held_slots;
    if (free_slots <= 0) return false;
    struct sched_job *taken[MAX_LEASES_PER_POLL];
    struct pref_ctx pc = {f, a};
    struct sched_pref pref = {a->cached, cached_elsewhere, &pc, clock_ms(f)};
    size_t n = sched_take_pref(f->d.sched, a->rec.queues, a->rec.labels, a->rec.runtimes,
                               free_slots, &pref, taken, MAX_LEASES_PER_POLL);
    if (!n) return false;
    struct lease_op *op = xcalloc(1, sizeof(*op));
    op->f = f;
    memcpy(op->agent_id, a->rec.id, sizeof(op->agent_id));
    op->g = lease_grant_new(a->rec.name, n, clock_ms(f), (int64_t)f->d.deadline_grace_s * 1000);
    op->taken = xmalloc(n * sizeof(*op->taken));
    memcpy(op->taken, taken, n * sizeof(*taken));
    for (size_t i = 0; i < n; i++) {
        /* an array's task: which one is claimed in the lease's transaction */
        memcpy(taken[i]->array ? op->g->c[i].array : op->g->c[i].job, taken[i]->id,
               UUID_STR_LEN);
        if (!taken[i]->array) hmap_put(&f->taking, taken[i]->id, (void *)1);
        op->g->timeout_s[i] = taken[i]->timeout_s;
    }
    op->t0_ns = time_mono_ns();
    a->leasing = true;
    commit_submit(f->d.commit, lease_write, lease_done, op);
    return true;
}

static bool try_lease(struct fleet *f, struct live_agent *a)
{
    return lease_slots(f, a, a->free_slots, a->held_slots);
}

void fleet_agent_offer_early(struct fleet *f, struct live_agent *a, int free_slots,
                             const char *const *ending, const int *attempts, size_t n)
{
    int held = a->held_slots;
    struct hmap seen; /* a job reported twice frees its slots once */
    hmap_init(&seen);
    for (size_t i = 0; i < n; i++) { /* a stale report (another attempt) frees nothing */
        struct lease_rec *l = hmap_get(&f->leases, ending[i]);
        if (l && l->attempt == attempts[i] && !strcmp(l->agent_id, a->rec.id) &&
            !hmap_put(&seen, ending[i], l))
            held -= l->slots;
    }
    hmap_release(&seen, NULL);
    lease_slots(f, a, free_slots, held);
}

/* The poll was gone when its leases were committed: give them back (same attempt number). */
static int unlease_write(struct store *st, void *arg, struct err *e)
{
    struct lease_op *op = arg;
    struct lease_grant *g = op->g;
    for (size_t i = 0; i < g->n; i++) {
        if (!g->c[i].leased) continue;
        struct job back;
        struct job_event_args args = {.now_ms = g->now_ms};
        int rc = applied(store_job_apply(st, g->c[i].job, g->c[i].attempt, g->agent, true,
                                         JOB_EV_UNLEASE, &args, &back, e),
                         &back, e);
        if (rc < 0) return rc;
        op->unleased[i] = rc > 0; /* else it changed meanwhile (cancelled) */
        if (rc) op->back[i] = back;
    }
    return 0;
}

static void unlease_done(void *arg, int rc, const struct err *e)
{
    struct lease_op *op = arg;
    if (rc) log_error("cannot give back undelivered leases: %s", e->msg);
    for (size_t i = 0; i < op->g->n; i++) {
        if (!op->unleased[i] || rc) continue;
        struct lease_rec *l = hmap_del(&op->f->leases, op->back[i].id);
        if (l) sched_release(op->f->d.sched, l->tenant, l->queue);
        struct live_agent *a = l ? hmap_get(&op->f->agents, l->agent_id) : NULL;
        if (a) {
            a->held--;
            a->held_slots -= l->slots;
        }
        free(l);
        sched_return(op->f->d.sched, &op->back[i]); /* its place in line */
        fleet_job_changed(op->f, &op->back[i], true);
    }
    lease_op_free(op);
}

static void unlease(struct fleet *f, struct lease_op *op)
{
    op->back = xcalloc(op->g->n, sizeof(*op->back));
    op->unleased = xcalloc(op->g->n, sizeof(*op->unleased));
    commit_submit(f->d.commit, unlease_write, unlease_done, op);
}

static void wake_polls(struct fleet *f)
{
    for (struct hmap_entry *e = hmap_first(&f->agents); e; e = hmap_next(&f->agents, e)) {
        struct live_agent *a = e->value;
        if (a->poll && !a->leasing) try_lease(f, a);
    }
}

/* ---- job changes ---- */

/* j, queued again after lease l, was given back unstarted (its attempt not spent): it keeps
   its place in line (sched_return), where a retry goes to the end. */
static bool given_back(const struct job *j, const struct lease_rec *l)
{
    return l && j->state == JOB_QUEUED && j->attempt < l->attempt;
}

void fleet_job_changed(struct fleet *f, const struct job *j, bool by_agent)
{
    /*
     * Several servers: a later attempt is known here already, leased by another server and
     * read back (fleet_job_synced) before this commit of ours got here (a submit or retry
     * leased elsewhere at once). The record is older than that lease: nothing to apply.
     * Given back by its agent (by_agent), the lease is this record's own attempt.
     */
    if (f->d.shared && !by_agent) {
        const struct lease_rec *known = hmap_get(&f->leases, j->id);
        if (known && known->attempt > j->attempt) return;
    }
    struct lease_rec *l = NULL;
    if (!((1u << j->state) & LEASE_HELD_STATES)) l = hmap_del(&f->leases, j->id);
    bool back = given_back(j, l);
    if (l) {
        /* a tenant or queue at its max_running may start another job: on any agent, next turn */
        if (sched_release(f->d.sched, l->tenant, l->queue)) event_active(f->wake, EV_TIMEOUT, 0);
        struct live_agent *a = hmap_get(&f->agents, l->agent_id);
        if (a) {
            a->held--;
            a->held_slots -= l->slots;
            if (!by_agent) {
                if (!l->unheld) { /* else it never reached the agent: nothing to kill */
                    add_cancel(a, j->id, l->attempt);
                    if (a->poll && !a->leasing) reply_poll(f, a, NULL);
                }
            } else if (!a->holding_back) {
                /* Its process has ended: the slots are free for the poll it has parked. */
                a->free_slots += l->slots;
                try_lease(f, a);
            }
        }
        free(l);
    }
    struct dying *d = j->state == JOB_QUEUED && !back ? hmap_get(&f->dying, j->id) : NULL;
    if (d) {
        if (!d->held)
            log_info("job=%s queued again: leased once attempt %d has ended on its agent (%s)",
                     j->id, d->attempt, d->agent_id);
        d->held = true;
    } else if (j->state == JOB_QUEUED) {
        (back ? sched_return : sched_add)(f->d.sched, j);
        /* once per loop turn, however many jobs a batch queued */
        if (j->run_after <= clock_ms(f)) event_active(f->wake, EV_TIMEOUT, 0);
    } else if (job_state_terminal(j->state)) {
        sched_remove(f->d.sched, j->id);
        metrics_job_finished(f->d.metrics, j->queue, job_state_name(j->state),
                             j->started_at && j->finished_at >= j->started_at
                                 ? (double)(j->finished_at - j->started_at) / 1000.0
                                 : -1);
    }
    if (f->d.job_changed) f->d.job_changed(f->d.arg, j); /* ended, or on to another attempt */
}

/* ---- several servers ---- */

/* Forgets lease l of a job (not held as l says any more); its agent is told to kill it. */
static void drop_lease(struct fleet *f, struct lease_rec *l)
{
    hmap_del(&f->leases, l->job);
    if (sched_release(f->d.sched, l->tenant, l->queue)) event_active(f->wake, EV_TIMEOUT, 0);
    struct live_agent *a = hmap_get(&f->agents, l->agent_id);
    /*
     * Its agent is told to kill the attempt now when it waits on this server (a parked poll);
     * else its next poll here lists the job in `running`, answered with the cancel
     * (fleet_take_cancels). Nothing is kept for an agent served by another server: it would
     * pile up, one cancel per job it ran, each looked through at the next.
     */
    if (a) {
        a->held--;
        a->held_slots -= l->slots;
        if (a->poll) {
            add_cancel(a, l->job, l->attempt);
            if (!a->leasing) reply_poll(f, a, NULL);
        }
    }
    free(l);
}

void fleet_job_synced(struct fleet *f, const struct job *j)
{
    struct lease_rec *l = hmap_get(&f->leases, j->id);
    if ((1u << j->state) & LEASE_HELD_STATES) {
        sched_remove(f->d.sched, j->id); /* taken, here or elsewhere */
        struct live_agent *a = j->agent ? hmap_get(&f->by_name, j->agent) : NULL;
        if (l && l->attempt == j->attempt) return; /* known */
        if (l && l->ending) return; /* ending here: its commit settles it */
        if (l) drop_lease(f, l);
        l = xcalloc(1, sizeof(*l));
        memcpy(l->job, j->id, sizeof(l->job));
        l->attempt = j->attempt;
        l->slots = j->slots > 0 ? j->slots : 1;
        snprintf(l->tenant, sizeof(l->tenant), "%s", j->tenant ? j->tenant : "");
        snprintf(l->queue, sizeof(l->queue), "%s", j->queue ? j->queue : "");
        sched_hold(f->d.sched, l->tenant, l->queue);
        l->deadline = lease_deadline(j->timeout_s, j->started_at ? j->started_at : clock_ms(f),
                                     (int64_t)f->d.deadline_grace_s * 1000);
        if (a) {
            memcpy(l->agent_id, a->rec.id, sizeof(l->agent_id));
            a->held++;
            a->held_slots += l->slots;
        }
        hmap_put(&f->leases, j->id, l);
        return;
    }
    bool back = given_back(j, l); /* through another server */
    if (l && !l->ending) drop_lease(f, l); /* the attempt ended elsewhere */
    if (j->state == JOB_QUEUED) {
        /* read while a lease here has it in flight (the submit's own event, read back
           before its commit was known as this server's): that lease's commit settles it;
           added again, it would stay behind as a candidate no lease can take */
        if (hmap_get(&f->taking, j->id)) return;
        (back ? sched_return : sched_add)(f->d.sched, j);
        if (j->run_after <= clock_ms(f)) event_active(f->wake, EV_TIMEOUT, 0);
    } else if (job_state_terminal(j->state)) {
        sched_remove(f->d.sched, j->id);
        if (f->d.job_changed) f->d.job_changed(f->d.arg, j); /* waiters here */
    }
}

bool fleet_lease_synced(struct fleet *f, const char *id, int state, int attempt,
                        const char *agent)
{
    if (!((1u << state) & LEASE_HELD_STATES) || !agent || !hmap_get(&f->by_name, agent))
        return false;
    const struct lease_rec *l = hmap_get(&f->leases, id);
    const struct sched_job *sj = sched_find(f->d.sched, id);
    bool known = l && (l->attempt == attempt || l->ending); /* fleet_job_synced keeps it */
    if (!known && (!sj || sj->array)) return false;
    /* what fleet_job_synced takes of a leased job: the event's, and the entry's of the job
       as it was queued here */
    struct job j;
    job_init(&j);
    snprintf(j.id, sizeof(j.id), "%s", id);
    j.state = state;
    j.attempt = attempt;
    j.agent = (char *)agent;
    if (sj) {
        j.slots = sj->slots;
        j.tenant = xstrdup(sj->tenant); /* sj goes first (sched_remove) */
        j.queue = xstrdup(sj->queue);
        j.timeout_s = sj->timeout_s;
    }
    fleet_job_synced(f, &j);
    free(j.tenant);
    free(j.queue);
    return true;
}

void fleet_agent_synced(struct fleet *f, const struct agent_rec *rec)
{
    struct live_agent *a = hmap_get(&f->agents, rec->id);
    if (a) a->synced = f->scans + 1; /* listed by the scan under way */
    if (!a) {
        struct live_agent *other = hmap_get(&f->by_name, rec->name);
        if (other) return; /* its name went to a new id: that one's registration tells */
        struct agent_rec copy = *rec;
        copy.name = xstrdup(rec->name);
        copy.version = rec->version ? xstrdup(rec->version) : NULL;
        copy.owner = rec->owner ? xstrdup(rec->owner) : NULL;
        copy.instance = rec->instance ? xstrdup(rec->instance) : NULL;
        copy.labels = json_incref(rec->labels);
        copy.queues = json_incref(rec->queues);
        copy.limits = json_incref(rec->limits);
        copy.runtimes = rec->runtimes ? rec->runtimes : PROTO_RT_NATIVE;
        a = add_agent(f, &copy);
        a->seen_flushed = rec->last_seen;
        a->synced = f->scans + 1;
        return;
    }
    bool newer = rec->last_seen > a->rec.last_seen;
    if (newer) {
        a->rec.last_seen = rec->last_seen;
        a->seen_flushed = rec->last_seen > a->seen_flushed ? rec->last_seen : a->seen_flushed;
    }
    /*
     * A state stored by another server: lost or left (the leader judged it; it left through
     * another server: a poll here is answered 409 and the agent registers again), draining
     * (asked through another server), up again (it registered elsewhere since: its
     * last_seen is newer). Never a state this server set and has not committed yet.
     */
    bool adopt = rec->state == AGENT_LOST || rec->state == AGENT_LEFT ||
                 (rec->state == AGENT_DRAINING && a->rec.state == AGENT_UP) ||
                 (rec->state == AGENT_UP && newer);
    if (rec->state != a->rec.state && adopt) {
        log_info("agent=%s name=%s %s -> %s (stored by another server)", a->rec.id, a->rec.name,
                 agent_state_name(a->rec.state), agent_state_name(rec->state));
        a->rec.state = rec->state;
        fits_changed(f);
        if (a->poll && !a->leasing) reply_poll(f, a, NULL);
    }
}

struct seen_op {
    struct fleet *f;
    size_t n;
    char (*ids)[UUID_STR_LEN];
    int64_t *at;
};

static int seen_write(struct store *st, void *arg, struct err *e)
{
    struct seen_op *op = arg;
    for (size_t i = 0; i < op->n; i++) {
        int rc = store_agent_seen(st, op->ids[i], op->at[i], e);
        if (rc) return rc;
    }
    return 0;
}

static void seen_done(void *arg, int rc, const struct err *e)
{
    struct seen_op *op = arg;
    if (rc)
        log_repeat_fail(&op->f->seen_log, time_now_ms(), LOG_WARN,
                        "cannot record when agents were last seen: %s", e->msg);
    else
        log_repeat_ok(&op->f->seen_log, "recording when agents were last seen");
    free(op->ids);
    free(op->at);
    free(op);
}

void fleet_flush_seen(struct fleet *f)
{
    size_t n = 0, cap = 0;
    struct seen_op *op = NULL;
    for (struct hmap_entry *e = hmap_first(&f->agents); e; e = hmap_next(&f->agents, e)) {
        struct live_agent *a = e->value;
        if (a->rec.last_seen <= a->seen_flushed) continue;
        if (!op) {
            op = xcalloc(1, sizeof(*op));
            op->f = f;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            op->ids = xrealloc(op->ids, cap * sizeof(*op->ids));
            op->at = xrealloc(op->at, cap * sizeof(*op->at));
        }
        memcpy(op->ids[n], a->rec.id, UUID_STR_LEN);
        op->at[n++] = a->rec.last_seen;
        a->seen_flushed = a->rec.last_seen;
    }
    if (!op) return;
    op->n = n;
    commit_submit(f->d.commit, seen_write, seen_done, op);
}

void fleet_wake(struct fleet *f)
{
    event_active(f->wake, EV_TIMEOUT, 0);
}

/* ---- forgetting agents gone long ago ---- */

static bool gone_idle(const struct live_agent *a)
{
    return (a->rec.state == AGENT_LOST || a->rec.state == AGENT_LEFT) && !a->poll &&
           !a->leasing && !a->held;
}

/* Drops a gone agent from memory (the store has forgotten it). */
static void drop_agent(struct fleet *f, struct live_agent *a)
{
    log_info("agent=%s name=%s forgotten (%s since %" PRId64 ")", a->rec.id, a->rec.name,
             agent_state_name(a->rec.state), a->rec.last_seen);
    if (hmap_get(&f->by_name, a->rec.name) == a) hmap_del(&f->by_name, a->rec.name);
    hmap_del(&f->agents, a->rec.id);
    free_agent(a);
}

struct forget_op {
    struct fleet *f;
    int64_t before; /* last seen before this */
    size_t n;
    char (*ids)[UUID_STR_LEN];
    bool *forgotten; /* out: which the store deleted */
};

static int forget_write(struct store *st, void *arg, struct err *e)
{
    struct forget_op *op = arg;
    for (size_t i = 0; i < op->n; i++) {
        int rc = store_agent_forget(st, op->ids[i], op->before, e);
        op->forgotten[i] = !rc;
        if (rc == ERR_NOTFOUND) /* up again, or seen since: kept */
            err_clear(e);
        else if (rc)
            return rc;
    }
    return 0;
}

static void forget_done(void *arg, int rc, const struct err *e)
{
    struct forget_op *op = arg;
    if (rc)
        log_repeat_fail(&op->f->forget_log, time_now_ms(), LOG_ERROR,
                        "cannot forget agents gone long ago: %s", e->msg);
    else
        log_repeat_ok(&op->f->forget_log, "forgetting agents gone long ago");
    for (size_t i = 0; i < op->n; i++) {
        struct live_agent *a = hmap_get(&op->f->agents, op->ids[i]);
        if (!a) continue;
        a->forgetting = false;
        if (!rc && op->forgotten[i] && gone_idle(a)) drop_agent(op->f, a);
    }
    free(op->ids);
    free(op->forgotten);
    free(op);
}

/* Deletes the agents lost or left more than agent_retention_ms ago, then drops them here. */
static void forget_agents(struct fleet *f, int64_t now_ms)
{
    if (f->d.agent_retention_ms <= 0) return;
    struct forget_op *op = NULL;
    size_t cap = 0;
    int64_t before = now_ms - f->d.agent_retention_ms;
    for (struct hmap_entry *e = hmap_first(&f->agents); e; e = hmap_next(&f->agents, e)) {
        struct live_agent *a = e->value;
        if (a->forgetting || !gone_idle(a) || a->rec.last_seen >= before) continue;
        if (!op) {
            op = xcalloc(1, sizeof(*op));
            op->f = f;
            op->before = before;
        }
        if (op->n == cap) {
            cap = cap ? 2 * cap : 8;
            op->ids = xrealloc(op->ids, cap * sizeof(*op->ids));
            op->forgotten = xrealloc(op->forgotten, cap * sizeof(*op->forgotten));
        }
        memcpy(op->ids[op->n++], a->rec.id, UUID_STR_LEN);
        a->forgetting = true;
    }
    if (op) commit_submit(f->d.commit, forget_write, forget_done, op);
}

void fleet_agents_synced_all(struct fleet *f)
{
    size_t n = 0;
    struct live_agent **drop = xcalloc(f->agents.count + 1, sizeof(*drop));
    for (struct hmap_entry *e = hmap_first(&f->agents); e; e = hmap_next(&f->agents, e)) {
        struct live_agent *a = e->value;
        if (a->synced != f->scans + 1 && gone_idle(a)) drop[n++] = a;
    }
    for (size_t i = 0; i < n; i++)
        drop_agent(f, drop[i]);
    free(drop);
    f->scans++;
}

/* ---- time ---- */

void fleet_tick_ready(struct fleet *f, int64_t now_ms)
{
    if (sched_tick(f->d.sched, now_ms)) wake_polls(f);
}

void fleet_tick(struct fleet *f, int64_t now_ms)
{
    fleet_tick_ready(f, now_ms);
    int64_t lost_ms = (int64_t)f->d.lost_after_s * 1000;
    for (struct hmap_entry *e = hmap_first(&f->agents); e; e = hmap_next(&f->agents, e)) {
        struct live_agent *a = e->value;
        bool alive = a->rec.state == AGENT_UP || a->rec.state == AGENT_DRAINING;
        int64_t seen = a->rec.last_seen > f->silence_from ? a->rec.last_seen : f->silence_from;
        if (alive && now_ms - seen > lost_ms)
            fleet_agent_set_state(f, a, AGENT_LOST, NULL);
    }
    end_leases(f, lease_past, &now_ms, proto_reason_name(PROTO_REASON_TIMEOUT),
               "the attempt passed its deadline on the server");
    forget_agents(f, now_ms);
}

void fleet_agents_reread(struct fleet *f)
{
    f->silence_from = clock_ms(f);
}

/* ---- start ---- */

/*
 * An agent as it was stored: when it was last seen, its labels, runtimes and limits stay as
 * they were (an agent that left or was lost shows what it had; one up gets lost_after from
 * the start to call: fleet_load's silence_from).
 */
static int load_agent(void *arg, const struct agent_rec *rec)
{
    struct fleet *f = arg;
    struct agent_rec copy = *rec;
    copy.name = xstrdup(rec->name);
    copy.version = rec->version ? xstrdup(rec->version) : NULL;
    copy.owner = rec->owner ? xstrdup(rec->owner) : NULL;
    copy.instance = rec->instance ? xstrdup(rec->instance) : NULL;
    copy.labels = json_incref(rec->labels);
    copy.queues = json_incref(rec->queues);
    copy.limits = json_incref(rec->limits);
    copy.runtimes = rec->runtimes ? rec->runtimes : PROTO_RT_NATIVE;
    struct live_agent *a = add_agent(f, &copy);
    a->seen_flushed = rec->last_seen; /* stored already: fleet_flush_seen has nothing to write */
    return 0;
}

static int load_job(void *arg, const struct job *j)
{
    struct fleet *f = arg;
    if (j->state == JOB_QUEUED) {
        sched_add(f->d.sched, j);
        return 0;
    }
    struct live_agent *a = j->agent ? hmap_get(&f->by_name, j->agent) : NULL;
    struct lease_rec *l = xcalloc(1, sizeof(*l));
    memcpy(l->job, j->id, sizeof(l->job));
    if (a) {
        memcpy(l->agent_id, a->rec.id, sizeof(l->agent_id));
        a->held++;
        a->held_slots += j->slots > 0 ? j->slots : 1;
    }
    l->attempt = j->attempt;
    l->slots = j->slots > 0 ? j->slots : 1;
    snprintf(l->tenant, sizeof(l->tenant), "%s", j->tenant ? j->tenant : "");
    snprintf(l->queue, sizeof(l->queue), "%s", j->queue ? j->queue : "");
    sched_hold(f->d.sched, l->tenant, l->queue);
    l->deadline = lease_deadline(j->timeout_s, j->started_at ? j->started_at : clock_ms(f),
                                 (int64_t)f->d.deadline_grace_s * 1000);
    hmap_put(&f->leases, j->id, l);
    return 0;
}

int fleet_load(struct fleet *f, struct err *e)
{
    f->silence_from = clock_ms(f); /* a fresh start gives every agent lost_after to call */
    int rc = store_agent_scan(f->d.reads, load_agent, f, e);
    if (!rc)
        rc = store_job_scan(f->d.reads,
                            (1u << JOB_QUEUED) | (1u << JOB_LEASED) | (1u << JOB_RUNNING), load_job,
                            f, e);
    if (!rc) rc = fleet_load_arrays(f, e);
    return rc;
}

/* Array a's next task as a job (without its item): what the scheduler and the fit see. */
static void next_task(const struct array_rec *a, struct job *tmpl)
{
    array_task_job(tmpl, a->id, a->next_index, a->spec, NULL, NULL, a->owner, a->tenant,
                   a->created_at, a->run_after);
}

const char *fleet_array_fit_text(struct fleet *f, const struct array_rec *a, int *listeners)
{
    struct job tmpl;
    next_task(a, &tmpl);
    const char *text = fleet_job_fit_text(f, &tmpl, listeners);
    job_release(&tmpl);
    return text;
}

void fleet_array_changed(struct fleet *f, const struct array_rec *a)
{
    int64_t n = array_claimable(a);
    if (n > 0) {
        struct job tmpl;
        next_task(a, &tmpl);
        sched_add_array(f->d.sched, a->id, &tmpl, n);
        job_release(&tmpl);
        if (a->run_after <= clock_ms(f)) event_active(f->wake, EV_TIMEOUT, 0);
    } else {
        sched_remove(f->d.sched, a->id);
    }
}

/* Every array with tasks left to claim gets its scheduler entry. */
int fleet_load_arrays(struct fleet *f, struct err *e)
{
    char after[UUID_STR_LEN] = "";
    for (;;) {
        struct array_rec *list;
        size_t n;
        int rc = store_array_list(f->d.reads, NULL, after[0] ? after : NULL, 1000, &list, &n, e);
        for (size_t i = 0; i < n; i++) {
            if (!rc) fleet_array_changed(f, &list[i]);
            array_rec_release(&list[i]);
        }
        if (n) memcpy(after, list[n - 1].id, sizeof(after));
        free(list);
        if (rc || n < 1000) return rc;
    }
}

bool fleet_attempt_live(struct fleet *f, const char *job, int attempt, int64_t *deadline_ms)
{
    struct lease_rec *l = hmap_get(&f->leases, job);
    if (!l || l->attempt != attempt || l->ending) return false;
    if (deadline_ms) *deadline_ms = l->deadline;
    return true;
}

bool fleet_attempt_live_read(struct fleet *f, const struct job *j, int attempt,
                             int64_t *deadline_ms)
{
    if (f->d.shared && ((1u << j->state) & LEASE_HELD_STATES) && j->attempt == attempt &&
        !fleet_attempt_live(f, j->id, attempt, NULL))
        fleet_job_synced(f, j);
    return fleet_attempt_live(f, j->id, attempt, deadline_ms);
}

/* ---- views ---- */

int fleet_fit(struct fleet *f, struct sched_fit *fit)
{
    fit->paused_at = sched_queue_paused(f->d.sched, fit->queue);
    for (struct hmap_entry *e = hmap_first(&f->agents); e; e = hmap_next(&f->agents, e)) {
        struct live_agent *a = e->value;
        if (a->rec.state == AGENT_UP)
            sched_fit_add(fit, a->rec.queues, a->rec.labels, a->rec.slots, a->rec.runtimes);
    }
    return fit->listeners;
}

int fleet_job_fit(struct fleet *f, const struct job *j, struct sched_fit *fit)
{
    sched_fit_init(fit, j->queue, j->requires, j->slots, spec_runtimes(j->spec));
    return fleet_fit(f, fit);
}

const char *fleet_job_fit_text(struct fleet *f, const struct job *j, int *listeners)
{
    unsigned runtimes = spec_runtimes(j->spec);
    int64_t paused_at = sched_queue_paused(f->d.sched, j->queue);
    struct fit_entry *c = NULL;
    for (int i = 0; i < FIT_CACHE && !c; i++) {
        struct fit_entry *x = &f->fits[i];
        if (x->queue && x->gen == f->gen && x->paused_at == paused_at && x->slots == j->slots &&
            x->runtimes == runtimes && !strcmp(x->queue, j->queue) &&
            (x->requires == j->requires ||
             (x->requires && j->requires && json_equal(x->requires, j->requires))))
            c = x;
    }
    if (!c) {
        c = &f->fits[f->fit_next++ % FIT_CACHE];
        free(c->queue);
        json_decref(c->requires);
        free(c->text);
        struct sched_fit fit;
        c->listeners = fleet_job_fit(f, j, &fit);
        json_t *w = sched_fit_warnings(&fit);
        c->text = json_dumps(w, JSON_COMPACT);
        json_decref(w);
        c->queue = xstrdup(j->queue);
        c->requires = json_incref((json_t *)j->requires);
        c->slots = j->slots;
        c->runtimes = runtimes;
        c->paused_at = fit.paused_at;
        c->gen = f->gen;
    }
    *listeners = c->listeners;
    return c->text;
}

json_t *fleet_runtimes_json(unsigned runtimes)
{
    json_t *arr = json_array();
    for (unsigned bit = 1; bit & PROTO_RT_ALL; bit <<= 1)
        if (runtimes & bit) json_array_append_new(arr, json_string(proto_runtime_name(bit)));
    return arr;
}

json_t *fleet_agent_json(const struct live_agent *a)
{
    /* an agent that left or was lost takes nothing: no free slots, no prefetch (as after a
       restart, which does not know what it last said) */
    bool gone = a->rec.state == AGENT_LEFT || a->rec.state == AGENT_LOST;
    int free_slots = a->free_slots < 0 || gone ? 0 : a->free_slots;
    if (free_slots > a->rec.slots) free_slots = a->rec.slots;
    return json_pack("{s:s, s:s, s:O, s:O, s:i, s:i, s:i, s:o, s:s, s:o, s:o, s:o, s:i, s:O}",
                     "id", a->rec.id, "name", a->rec.name, "labels", a->rec.labels, "queues",
                     a->rec.queues, "slots", a->rec.slots, "free_slots", free_slots, "prefetch",
                     gone ? 0 : a->prefetch, "runtimes",
                     fleet_runtimes_json(a->rec.runtimes), "state", agent_state_name(a->rec.state),
                     "last_seen", job_time_json(a->rec.last_seen), "registered_at",
                     job_time_json(a->rec.registered_at), "version",
                     a->rec.version ? json_string(a->rec.version) : json_null(), "running", a->held,
                     "limits", a->rec.limits ? a->rec.limits : json_null());
}

static int by_name(const void *x, const void *y)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)x, "name")),
                  json_string_value(json_object_get(*(json_t *const *)y, "name")));
}

json_t *fleet_agents_json(struct fleet *f)
{
    size_t n = f->agents.count, i = 0;
    json_t **v = xcalloc(n ? n : 1, sizeof(*v));
    for (struct hmap_entry *e = hmap_first(&f->agents); e; e = hmap_next(&f->agents, e))
        v[i++] = fleet_agent_json(e->value);
    qsort(v, n, sizeof(*v), by_name);
    json_t *arr = json_array();
    for (i = 0; i < n; i++)
        json_array_append_new(arr, v[i]);
    free(v);
    return arr;
}
