/*
 * test_fleet.c - the fleet (server/fleet.c) without HTTP: agents register,
 * poll, drain, leave and get lost; leases are written through the real group
 * committer into a real SQLite file, and a lost or departed agent's jobs are
 * queued again (or fail when no attempt is left).
 *
 * The fleet's requests are plain tags here (its dependencies are explicit:
 * struct fleet_deps), the clock is the test's own, and the event loop is run
 * until the committer has handed back every write (bounded in turns and time).
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>

/* The fleet's answers are malloc'd by the library: freed with libc's free(). */
static void lib_free(void *p)
{
    free(p);
}

#include <cmocka.h>

#include "committest.h"
#include "jobtest.h"

#include "common/timeutil.h"
#include "job/agent.h"
#include "job/protocol.h"
#include "server/commit.h"
#include "server/fleet.h"
#include "server/metrics.h"
#include "server/sched.h"
#include "store/store.h"

#define LOST_AFTER_S 15
#define AGENT_RETENTION_MS (3600 * 1000)
#define MAX_REPLIES 32

struct reply {
    int *req;     /* the tag the fleet was given */
    json_t *body; /* 200: the answer; NULL for an error */
    int code;     /* the error's code, 0 for 200 */
};

struct h {
    char dir[PATH_MAX];
    struct event_base *base;
    struct store *reads;
    struct committer *commit;
    struct sched *sched;
    struct metrics *metrics;
    struct fleet *fleet;
    int64_t now; /* the fleet's clock */
    struct reply replies[MAX_REPLIES];
    size_t nreplies;
    int changed; /* job_changed calls */
    /* request tags: the fleet only compares and hands back these pointers */
    int poll1, poll2, poll3, answer1;
};

/* ---- the fleet's dependencies ---- */

static int64_t clock_cb(void *arg)
{
    return ((struct h *)arg)->now;
}

static void reply_cb(void *arg, void *req, char *body, size_t len)
{
    struct h *h = arg;
    if (h->nreplies == MAX_REPLIES) fail_msg("more than %d answers", MAX_REPLIES);
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    if (!j)
        fail_msg("the fleet answered something that is not JSON (%s): %.*s", je.text, (int)len,
                 body);
    lib_free(body);
    h->replies[h->nreplies++] = (struct reply){.req = req, .body = j};
}

static void reply_error_cb(void *arg, void *req, const struct err *e)
{
    struct h *h = arg;
    if (h->nreplies == MAX_REPLIES) fail_msg("more than %d answers", MAX_REPLIES);
    h->replies[h->nreplies++] = (struct reply){.req = req, .code = e->code ? e->code : -1};
}

static void job_changed_cb(void *arg, const struct job *j)
{
    ((struct h *)arg)->changed++;
}

/* ---- the harness ---- */

/* Runs the loop until every write is handed back (and what it set off): bounded. */
static void pump(struct h *h)
{
    test_commit_pump(h->base, h->commit);
}

static struct fleet *new_fleet_of(struct h *h, bool shared)
{
    struct fleet_deps d = {
        .shared = shared,
        .base = h->base,
        .commit = h->commit,
        .reads = h->reads,
        .sched = h->sched,
        .metrics = h->metrics,
        .lost_after_s = LOST_AFTER_S,
        .deadline_grace_s = 2,
        .agent_retention_ms = AGENT_RETENTION_MS,
        .now_ms = clock_cb,
        .reply = reply_cb,
        .reply_error = reply_error_cb,
        .job_changed = job_changed_cb,
        .arg = h,
    };
    return fleet_new(&d);
}

static struct fleet *new_fleet(struct h *h)
{
    return new_fleet_of(h, false);
}

static int setup(void **state)
{
    struct h *h = calloc(1, sizeof(*h));
    h->base = event_base_new();
    if (test_commit_open(h->dir, "drover-test-fleet", h->base, &h->reads, &h->commit)) return -1;
    h->sched = sched_new();
    h->metrics = metrics_new();
    h->now = time_now_ms();
    h->fleet = new_fleet(h);
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    struct h *h = *state;
    fleet_free(h->fleet); /* answers parked polls: they are dropped with the replies */
    commit_free(h->commit);
    sched_free(h->sched);
    metrics_free(h->metrics);
    store_close(h->reads);
    event_base_free(h->base);
    for (size_t i = 0; i < h->nreplies; i++)
        json_decref(h->replies[i].body);
    test_commit_remove(h->dir);
    free(h);
    return 0;
}

/* The one answer given to req since the last call (fails if none or several); then forgotten. */
static json_t *answer_of(struct h *h, int *req)
{
    json_t *found = NULL;
    size_t n = 0;
    for (size_t i = 0; i < h->nreplies; i++) {
        if (h->replies[i].req != req) continue;
        n++;
        if (!h->replies[i].body) fail_msg("the request got an error %d", h->replies[i].code);
        found = h->replies[i].body;
        h->replies[i].req = NULL; /* answered once; the body is freed at teardown */
    }
    if (n != 1) fail_msg("expected one answer to the request, got %zu", n);
    return found;
}

static bool answered(const struct h *h, const int *req)
{
    for (size_t i = 0; i < h->nreplies; i++)
        if (h->replies[i].req == req) return true;
    return false;
}

struct reg_op {
    struct agent_rec rec;
};

static int reg_write(struct store *st, void *arg, struct err *e)
{
    return store_agent_upsert(st, &((struct reg_op *)arg)->rec, e);
}

static void reg_done(void *arg, int rc, const struct err *e)
{
    if (rc) fail_msg("registering: %s", e->msg);
}

/* Registers an agent the way POST /v1/agents does: stored, then handed to the fleet. */
static struct live_agent *register_agent(struct h *h, const char *name, int slots,
                                         const char *queues)
{
    struct reg_op op;
    agent_rec_init(&op.rec);
    uuid7_new(op.rec.id);
    op.rec.name = strdup(name);
    op.rec.labels = json_object();
    op.rec.queues = json_loads(queues, 0, NULL);
    op.rec.slots = slots;
    op.rec.runtimes = PROTO_RT_NATIVE; /* as an agent that names none */
    op.rec.owner = strdup("tok");
    op.rec.state = AGENT_UP;
    op.rec.last_seen = op.rec.registered_at = h->now;
    struct err e = ERR_INIT;
    assert_int_equal(fleet_may_register(h->fleet, name, "tok", NULL, &e), 0);
    fleet_register_begin(h->fleet, name);
    commit_submit(h->commit, reg_write, reg_done, &op);
    pump(h);
    fleet_register_end(h->fleet, name);
    return fleet_agent_registered(h->fleet, &op.rec); /* takes the record */
}

struct submit_op {
    struct job *jobs;
    size_t n;
};

static int submit_write(struct store *st, void *arg, struct err *e)
{
    struct submit_op *op = arg;
    for (size_t i = 0; i < op->n; i++) {
        int rc = store_job_insert(st, &op->jobs[i], e);
        if (rc) return rc;
    }
    return 0;
}

static void submit_done(void *arg, int rc, const struct err *e)
{
    if (rc) fail_msg("submitting: %s", e->msg);
}

/* Submits jobs the way POST /v1/jobs does: stored, then handed to the fleet. */
static void submit(struct h *h, struct job *jobs, size_t n, const char *spec)
{
    for (size_t i = 0; i < n; i++)
        make_job(&jobs[i], spec, h->now);
    struct submit_op op = {jobs, n};
    commit_submit(h->commit, submit_write, submit_done, &op);
    pump(h);
    for (size_t i = 0; i < n; i++)
        fleet_job_changed(h->fleet, &jobs[i], false);
}

static void release_jobs(struct job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        job_release(&jobs[i]);
}

/* The job as stored now. */
static void stored(struct h *h, const char *id, struct job *out)
{
    struct err e = ERR_INIT;
    if (store_job_get(h->reads, id, out, &e)) fail_msg("reading job %s: %s", id, e.msg);
}

static void assert_stored(struct h *h, const char *id, int state, int attempt, const char *agent)
{
    struct job j;
    stored(h, id, &j);
    if (j.state != state)
        fail_msg("job %s is %s, expected %s", id, job_state_name(j.state), job_state_name(state));
    assert_int_equal(j.attempt, attempt);
    if (agent)
        assert_string_equal(j.agent ? j.agent : "(none)", agent);
    else
        assert_null(j.agent);
    job_release(&j);
}

static int find_agent_state(void *arg, const struct agent_rec *a)
{
    int *st = arg;
    if (!strcmp(a->name, "w1")) *st = a->state;
    return 0;
}

static int stored_agent_state(struct h *h)
{
    int st = -1;
    struct err e = ERR_INIT;
    assert_int_equal(store_agent_scan(h->reads, find_agent_state, &st, &e), 0);
    return st;
}

static json_t *running(const struct job *jobs, size_t n, int attempt)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:i}", "job", jobs[i].id, "attempt", attempt));
    return a;
}

/* fleet_poll, which borrows `running` (taken here: may be NULL). */
static void agent_poll(struct h *h, struct live_agent *a, int *req, int free_slots, json_t *running,
                       int64_t wait_ms)
{
    fleet_poll(h->fleet, a, req, free_slots, running, wait_ms);
    json_decref(running);
}

/* ---- tests ---- */

/*
 * A poll leases what fits in the agent's free slots, best first; the answer
 * carries each job's spec exactly as stored, its attempt and its deadline.
 */
static void test_poll_leases(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 2, "[\"default\"]");
    assert_non_null(fleet_agent(h->fleet, "w1"));
    struct job j[3];
    submit(h, j, 3, "{\"timeout_s\": 5, \"command\": {\"program\": \"true\"}}");

    agent_poll(h, a, &h->poll1, 2, NULL, 0);
    pump(h);
    json_t *ans = answer_of(h, &h->poll1);
    json_t *leases = json_object_get(ans, "leases");
    assert_int_equal(json_array_size(leases), 2);
    assert_true(json_is_false(json_object_get(ans, "drain")));
    assert_int_equal(json_array_size(json_object_get(ans, "cancel")), 0);
    for (size_t i = 0; i < 2; i++) {
        json_t *l = json_array_get(leases, i);
        assert_string_equal(json_string_value(json_object_get(l, "job")), j[i].id); /* FIFO */
        assert_int_equal(json_integer_value(json_object_get(l, "attempt")), 1);
        /* the spec as the store keeps it, its defaults left out: the agent puts them back */
        json_t *spec = spec_expand(json_incref(json_object_get(l, "spec")));
        json_t *want = spec_expand(json_incref(j[i].spec));
        assert_true(json_equal(spec, want));
        json_decref(want);
        assert_true(json_object_size(json_object_get(l, "spec")) < json_object_size(spec));
        json_decref(spec);
        assert_true(json_is_string(json_object_get(l, "deadline"))); /* timeout_s 5 */
        assert_stored(h, j[i].id, JOB_LEASED, 1, "w1");
        int64_t deadline;
        assert_true(fleet_attempt_live(h->fleet, j[i].id, 1, &deadline));
        assert_int_equal(deadline, h->now + 5000 + 2000);
    }
    assert_stored(h, j[2].id, JOB_QUEUED, 0, NULL);
    assert_int_equal(a->held, 2);
    assert_int_equal(a->free_slots, 0);

    /* a full agent's poll parks; a job it reports ended frees a slot for it */
    agent_poll(h, a, &h->poll2, 0, running(j, 2, 1), 60000);
    pump(h);
    assert_false(answered(h, &h->poll2));
    struct job done;
    stored(h, j[0].id, &done);
    done.state = JOB_SUCCEEDED; /* as the finished report's commit hands it over */
    fleet_job_changed(h->fleet, &done, true);
    job_release(&done);
    pump(h);
    ans = answer_of(h, &h->poll2);
    leases = json_object_get(ans, "leases");
    assert_int_equal(json_array_size(leases), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(leases, 0), "job")),
                        j[2].id);
    assert_true(h->changed >= 1);

    /* the fleet rebuilt from the store (a restart) knows the agent and its leases */
    struct sched *s2 = sched_new();
    struct sched *keep = h->sched;
    h->sched = s2;
    struct fleet *f2 = new_fleet(h);
    struct err e = ERR_INIT;
    assert_int_equal(fleet_load(f2, &e), 0);
    assert_non_null(fleet_agent(f2, "w1"));
    assert_true(fleet_attempt_live(f2, j[1].id, 1, NULL));
    assert_true(fleet_attempt_live(f2, j[2].id, 1, NULL));
    fleet_free(f2);
    sched_free(s2);
    h->sched = keep;
    release_jobs(j, 3);
}

/* A parked poll gets the job submitted after it; a poll that went away is not answered. */
static void test_parked_poll(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 1, "[\"bio\"]");
    agent_poll(h, a, &h->poll1, 1, NULL, 60000);
    pump(h);
    assert_false(answered(h, &h->poll1));
    struct job other[1], j[1];
    submit(h, other, 1, "{\"queue\": \"default\", \"command\": {\"program\": \"true\"}}");
    pump(h);
    assert_false(answered(h, &h->poll1)); /* not its queue */
    submit(h, j, 1, "{\"queue\": \"bio\", \"command\": {\"program\": \"true\"}}");
    pump(h);
    json_t *ans = answer_of(h, &h->poll1);
    assert_int_equal(json_array_size(json_object_get(ans, "leases")), 1);
    assert_stored(h, j[0].id, JOB_LEASED, 1, "w1");

    /* gone before anything came: never answered, and nothing is leased to it */
    agent_poll(h, a, &h->poll2, 1, running(j, 1, 1), 60000);
    fleet_poll_gone(h->fleet, a, &h->poll2);
    pump(h);
    assert_false(answered(h, &h->poll2));
    release_jobs(other, 1);
    release_jobs(j, 1);
}

/* Cancels a job in the store behind the fleet's back, as another server would. */
static int cancel_write(struct store *st, void *arg, struct err *e)
{
    struct job out;
    struct job_event_args args = {.now_ms = time_now_ms()};
    int rc = store_job_apply(st, arg, 0, NULL, false, JOB_EV_CANCEL, &args, &out, e);
    if (!rc) job_release(&out);
    return rc;
}

static void cancel_done(void *arg, int rc, const struct err *e)
{
    if (rc) fail_msg("cancelling: %s", e->msg);
}

/* The metric `name` (a counter without labels) as GET /metrics would show it. */
static long long metric(struct h *h, const char *name)
{
    struct buf b = BUF_INIT;
    metrics_render(h->metrics, &b);
    buf_addc(&b, '\0');
    char line[128];
    snprintf(line, sizeof(line), "\n%s ", name);
    const char *at = strstr(b.data, line);
    if (!at) fail_msg("no %s in the metrics", name);
    long long v = strtoll(at + strlen(line), NULL, 10);
    buf_release(&b);
    return v;
}

/*
 * A parked poll whose candidate was no longer queued when its lease was committed (another
 * server leased or cancelled it) is not answered empty (the agent would pause before polling
 * again): it stays parked and gets the next job. Each such candidate is counted
 * (drover_lease_missed_total: how often several servers' leases collide).
 */
static void test_stale_candidate_keeps_poll(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 2, "[\"default\"]");
    struct job x[1], y[1];
    submit(h, x, 1, "{\"command\": {\"program\": \"true\"}}");
    commit_submit(h->commit, cancel_write, cancel_done, x[0].id); /* the fleet is not told */
    pump(h);
    assert_int_equal(sched_ready_count(h->sched, "default"), 1); /* stale */
    agent_poll(h, a, &h->poll1, 1, json_array(), 60000);
    pump(h);
    assert_false(answered(h, &h->poll1));
    assert_int_equal(sched_ready_count(h->sched, "default"), 0); /* the stale one is gone */
    assert_stored(h, x[0].id, JOB_CANCELLED, 0, NULL);
    assert_int_equal(metric(h, "drover_lease_missed_total"), 1);
    submit(h, y, 1, "{\"command\": {\"program\": \"true\"}}");
    pump(h);
    json_t *leases = json_object_get(answer_of(h, &h->poll1), "leases");
    assert_int_equal(json_array_size(leases), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(leases, 0), "job")),
                        y[0].id);

    /* a poll that must be answered now (wait 0) is, empty, when its candidate was stale (y
       holds one of the agent's two slots: z is its candidate for the other) */
    struct job z[1];
    submit(h, z, 1, "{\"command\": {\"program\": \"true\"}}");
    commit_submit(h->commit, cancel_write, cancel_done, z[0].id);
    pump(h);
    agent_poll(h, a, &h->poll2, 1, running(y, 1, 1), 0);
    pump(h);
    assert_int_equal(json_array_size(json_object_get(answer_of(h, &h->poll2), "leases")), 0);
    assert_int_equal(sched_ready_count(h->sched, "default"), 0);
    assert_stored(h, z[0].id, JOB_CANCELLED, 0, NULL);
    assert_int_equal(metric(h, "drover_lease_missed_total"), 2); /* y was leased: not missed */
    release_jobs(x, 1);
    release_jobs(y, 1);
    release_jobs(z, 1);
}

/*
 * Several servers: a queued job read back from the store while a lease here has it in flight
 * (its submit's event, read before this server knew the commit as its own) is not made a
 * candidate again; it would stay behind once leased.
 */
static void test_synced_while_leasing(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 1, "[\"default\"]");
    struct job j[1];
    submit(h, j, 1, "{\"command\": {\"program\": \"true\"}}");
    agent_poll(h, a, &h->poll1, 1, json_array(), 60000); /* its lease is in flight */
    fleet_job_synced(h->fleet, &j[0]);                 /* the record as submitted */
    pump(h);
    assert_int_equal(json_array_size(json_object_get(answer_of(h, &h->poll1), "leases")), 1);
    assert_stored(h, j[0].id, JOB_LEASED, 1, "w1");
    assert_int_equal(sched_ready_count(h->sched, "default"), 0);
    release_jobs(j, 1);
}

/*
 * Several servers: a lease another server committed, told by its event, is applied from the
 * job's entry here (no read of the job): no candidate any more, its agent holds it, its
 * deadline is the job's timeout. What this server does not know is left to a read.
 */
static void test_lease_synced_from_event(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 4, "[\"default\"]");
    struct job j[1];
    submit(h, j, 1, "{\"timeout_s\": 5, \"slots\": 2, \"command\": {\"program\": \"true\"}}");
    pump(h);
    assert_int_equal(sched_ready_count(h->sched, "default"), 1);
    assert_false(fleet_lease_synced(h->fleet, j[0].id, JOB_LEASED, 1, "w9")); /* agent? */
    assert_false(fleet_lease_synced(h->fleet, j[0].id, JOB_QUEUED, 0, "w1")); /* no lease */
    assert_false(fleet_lease_synced(h->fleet, "01900000-0000-7000-8000-000000000000",
                                    JOB_LEASED, 1, "w1")); /* not queued here */
    assert_int_equal(sched_ready_count(h->sched, "default"), 1);
    assert_false(fleet_attempt_live(h->fleet, j[0].id, 1, NULL));

    assert_true(fleet_lease_synced(h->fleet, j[0].id, JOB_LEASED, 1, "w1"));
    assert_int_equal(sched_ready_count(h->sched, "default"), 0);
    int64_t deadline = 0;
    assert_true(fleet_attempt_live(h->fleet, j[0].id, 1, &deadline));
    assert_true(deadline >= h->now + 5000);
    assert_int_equal(a->held, 1);
    assert_int_equal(a->held_slots, 2);
    /* its start, told next, is the same lease: nothing changes */
    assert_true(fleet_lease_synced(h->fleet, j[0].id, JOB_RUNNING, 1, "w1"));
    assert_int_equal(a->held, 1);
    assert_int_equal(a->held_slots, 2);
    /* a later attempt is not queued here any more: read */
    assert_false(fleet_lease_synced(h->fleet, j[0].id, JOB_LEASED, 2, "w1"));
    release_jobs(j, 1);
}

/* Leases the job (argument) to agent "w1" in the store behind the fleet's back, as another
   server would. */
static int lease_write(struct store *st, void *arg, struct err *e)
{
    struct store_lease c = {0};
    snprintf(c.job, sizeof(c.job), "%s", (const char *)arg);
    size_t n = 0;
    int rc = store_job_lease(st, "w1", time_now_ms(), &c, 1, &n, e);
    lib_free(c.spec);
    if (!rc && n != 1) rc = err_set(e, ERR_CONFLICT, "the job was not leased");
    return rc;
}

static void lease_done(void *arg, int rc, const struct err *e)
{
    if (rc) fail_msg("leasing: %s", e->msg);
}

/*
 * Several servers: an attempt the agent runs that this server does not know as its lease
 * (another server leased it; its event is not read here yet) is read from the store before
 * the agent is told to kill it: the store holds it for the agent, so it is no cancel and its
 * lease is known here from then on. An attempt the store does not hold is killed.
 */
static void test_unknown_lease_read_before_cancel(void **state)
{
    struct h *h = *state;
    fleet_free(h->fleet);
    h->fleet = new_fleet_of(h, true);
    struct live_agent *a = register_agent(h, "w1", 4, "[\"default\"]");
    struct job j[2];
    submit(h, j, 2, "{\"command\": {\"program\": \"sleep\"}}");
    commit_submit(h->commit, lease_write, lease_done, j[0].id);  /* leased elsewhere */
    commit_submit(h->commit, cancel_write, cancel_done, j[1].id); /* cancelled elsewhere */
    pump(h);
    assert_false(fleet_attempt_live(h->fleet, j[0].id, 1, NULL));
    json_t *run = json_pack("[{s:s, s:i}, {s:s, s:i}]", "job", j[0].id, "attempt", 1, "job",
                            j[1].id, "attempt", 1);
    agent_poll(h, a, &h->poll1, 2, run, 0);
    pump(h);
    json_t *c = json_object_get(answer_of(h, &h->poll1), "cancel");
    assert_int_equal(json_array_size(c), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(c, 0), "job")), j[1].id);
    assert_true(fleet_attempt_live(h->fleet, j[0].id, 1, NULL));
    assert_int_equal(a->held, 1);
    assert_int_equal(sched_ready_count(h->sched, "default"), 0);
    assert_stored(h, j[0].id, JOB_LEASED, 1, "w1");

    /* an agent asking for a presigned URL for such an attempt (api_blobs.c): the job as
       read is applied first */
    struct job k[1], back;
    submit(h, k, 1, "{\"command\": {\"program\": \"sleep\"}}");
    commit_submit(h->commit, lease_write, lease_done, k[0].id);
    pump(h);
    assert_false(fleet_attempt_live(h->fleet, k[0].id, 1, NULL));
    stored(h, k[0].id, &back);
    assert_false(fleet_attempt_live_read(h->fleet, &back, 2, NULL)); /* not its attempt */
    assert_true(fleet_attempt_live_read(h->fleet, &back, 1, NULL));
    assert_true(fleet_attempt_live(h->fleet, k[0].id, 1, NULL));
    job_release(&back);
    release_jobs(k, 1);

    /* one server alone knows every lease: no read, the unknown attempt is killed */
    fleet_free(h->fleet);
    h->fleet = new_fleet(h);
    a = register_agent(h, "w1", 4, "[\"default\"]");
    agent_poll(h, a, &h->poll2, 2, json_pack("[{s:s, s:i}]", "job", j[0].id, "attempt", 1), 0);
    pump(h);
    c = json_object_get(answer_of(h, &h->poll2), "cancel");
    assert_int_equal(json_array_size(c), 1);
    stored(h, j[0].id, &back);
    assert_false(fleet_attempt_live_read(h->fleet, &back, 1, NULL)); /* nor applied */
    job_release(&back);
    release_jobs(j, 2);
}

/*
 * Several servers: a job submitted here that another server leased at once, its lease read
 * back here before the submit's commit came back to this server. The submit's record is
 * older than that lease: the lease stays the agent's (no cancel at its next poll here), and
 * the job is no candidate here.
 */
static void test_own_commit_after_a_synced_lease(void **state)
{
    struct h *h = *state;
    fleet_free(h->fleet);
    h->fleet = new_fleet_of(h, true);
    struct live_agent *a = register_agent(h, "w1", 4, "[\"default\"]");
    struct job j[1], leased;
    make_job(&j[0], "{\"command\": {\"program\": \"sleep\"}}", h->now);
    struct submit_op op = {j, 1};
    commit_submit(h->commit, submit_write, submit_done, &op);
    commit_submit(h->commit, lease_write, lease_done, j[0].id); /* leased elsewhere */
    pump(h);
    stored(h, j[0].id, &leased);
    fleet_job_synced(h->fleet, &leased); /* its event, read back first */
    job_release(&leased);
    fleet_job_changed(h->fleet, &j[0], false); /* then the submit's own commit */
    assert_true(fleet_attempt_live(h->fleet, j[0].id, 1, NULL));
    assert_int_equal(a->held, 1);
    assert_int_equal(sched_ready_count(h->sched, "default"), 0);
    agent_poll(h, a, &h->poll1, 3, json_pack("[{s:s, s:i}]", "job", j[0].id, "attempt", 1), 0);
    pump(h);
    assert_int_equal(json_array_size(json_object_get(answer_of(h, &h->poll1), "cancel")), 0);
    assert_stored(h, j[0].id, JOB_LEASED, 1, "w1");
    /* its end, committed here, is applied as before */
    commit_submit(h->commit, cancel_write, cancel_done, j[0].id);
    pump(h);
    stored(h, j[0].id, &leased);
    fleet_job_changed(h->fleet, &leased, false);
    job_release(&leased);
    assert_false(fleet_attempt_live(h->fleet, j[0].id, 1, NULL));
    assert_int_equal(a->held, 0);
    release_jobs(j, 1);
}

/*
 * Several servers, the store out of reach for a while: nobody could record when agents were
 * seen, so once the agents are read again each gets lost_after from then before it is lost.
 */
static void test_agents_reread_after_outage(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 1, "[\"default\"]");
    fleet_agent_seen(h->fleet, a);
    h->now += (LOST_AFTER_S - 1) * 1000; /* the store goes away; back just before lost_after */
    fleet_agents_reread(h->fleet);
    h->now += 2000; /* past lost_after since it was last seen, not since the store came back */
    fleet_tick(h->fleet, h->now);
    pump(h);
    assert_int_equal(a->rec.state, AGENT_UP);
    h->now += (LOST_AFTER_S - 1) * 1000; /* past lost_after since then too */
    fleet_tick(h->fleet, h->now);
    pump(h);
    assert_int_equal(a->rec.state, AGENT_LOST);
}

/* The poll went away while its lease was being committed: the job is given back, same attempt. */
static void test_undelivered_lease(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 1, "[\"default\"]");
    struct job j[1];
    submit(h, j, 1, "{\"command\": {\"program\": \"true\"}}");
    agent_poll(h, a, &h->poll1, 1, NULL, 0); /* the lease commit is in flight */
    fleet_poll_gone(h->fleet, a, &h->poll1);
    pump(h);
    assert_false(answered(h, &h->poll1));
    assert_stored(h, j[0].id, JOB_QUEUED, 0, NULL);
    assert_false(fleet_attempt_live(h->fleet, j[0].id, 1, NULL));
    assert_int_equal(a->held, 0);
    /* and it is leased again, as attempt 1, at the next poll */
    agent_poll(h, a, &h->poll2, 1, json_array(), 0);
    pump(h);
    json_t *l = json_array_get(json_object_get(answer_of(h, &h->poll2), "leases"), 0);
    assert_int_equal(json_integer_value(json_object_get(l, "attempt")), 1);
    release_jobs(j, 1);
}

struct give_back_op {
    const char *id;
    struct job back;
};

static int give_back_write(struct store *st, void *arg, struct err *e)
{
    struct give_back_op *op = arg;
    struct job_event_args args = {.now_ms = 1};
    return store_job_apply(st, op->id, 1, "w1", false, JOB_EV_UNLEASE, &args, &op->back, e);
}

static void give_back_done(void *arg, int rc, const struct err *e)
{
    (void)arg;
    if (rc) fail_msg("giving back: %s", e->msg);
}

/*
 * An agent that prefetches is leased its free slots plus its prefetch, never more than its
 * slots and prefetch in all; a prefetched job it gives back (a released report) is queued
 * again with the same attempt, for another agent.
 */
static void test_prefetch(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 2, "[\"default\"]");
    struct job j[6];
    submit(h, j, 6, "{\"command\": {\"program\": \"true\"}}");
    a->prefetch = 2;
    agent_poll(h, a, &h->poll1, 2, NULL, 0);
    pump(h);
    json_t *leases = json_object_get(answer_of(h, &h->poll1), "leases");
    assert_int_equal(json_array_size(leases), 4); /* 2 slots + 2 prefetched */
    assert_int_equal(a->held_slots, 4);
    assert_stored(h, j[3].id, JOB_LEASED, 1, "w1");
    assert_stored(h, j[4].id, JOB_QUEUED, 0, NULL);

    /* full, slots and prefetch: its poll parks */
    agent_poll(h, a, &h->poll2, 0, running(j, 4, 1), 60000);
    pump(h);
    assert_false(answered(h, &h->poll2));

    /* it gives j[3] back, asking for no prefetch now (as its reports do) */
    a->prefetch = 0;
    a->holding_back = true;
    struct give_back_op op = {.id = j[3].id};
    commit_submit(h->commit, give_back_write, give_back_done, &op);
    pump(h);
    fleet_job_changed(h->fleet, &op.back, true);
    fleet_agent_offer(h->fleet, a, 0);
    pump(h);
    job_release(&op.back);
    assert_stored(h, j[3].id, JOB_QUEUED, 0, NULL);
    assert_false(fleet_attempt_live(h->fleet, j[3].id, 1, NULL));
    assert_int_equal(a->held_slots, 3);
    assert_false(answered(h, &h->poll2)); /* nothing beyond its slots now */

    /* another agent takes it, first: it kept its place in line, ahead of j[4], as attempt 1 */
    struct live_agent *b = register_agent(h, "w2", 1, "[\"default\"]");
    agent_poll(h, b, &h->answer1, 1, NULL, 0);
    pump(h);
    leases = json_object_get(answer_of(h, &h->answer1), "leases");
    assert_int_equal(json_array_size(leases), 1);
    json_t *l = json_array_get(leases, 0);
    assert_string_equal(json_string_value(json_object_get(l, "job")), j[3].id);
    assert_int_equal(json_integer_value(json_object_get(l, "attempt")), 1);
    assert_stored(h, j[3].id, JOB_LEASED, 1, "w2");
    release_jobs(j, 6);
}

/*
 * An agent's prefetch waits while another agent here has a free slot and could take a job now:
 * the jobs go to the free slots first, and the prefetch gets what they leave.
 */
static void test_prefetch_after_free_slots(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 2, "[\"default\"]");
    struct live_agent *b = register_agent(h, "w2", 2, "[\"default\"]");
    struct live_agent *c = register_agent(h, "w3", 2, "[\"other\"]"); /* idle, not for these */
    int poll_c;
    a->prefetch = 2;
    agent_poll(h, c, &poll_c, 2, NULL, 60000);
    agent_poll(h, b, &h->answer1, 2, NULL, 60000);
    agent_poll(h, a, &h->poll1, 2, NULL, 60000);
    pump(h);
    assert_false(answered(h, &h->answer1) || answered(h, &h->poll1) || answered(h, &poll_c));

    /* four jobs; a's report frees its slots before the jobs' wake-up reaches the polls */
    struct job j[6];
    submit(h, j, 4, "{\"command\": {\"program\": \"true\"}}");
    fleet_agent_offer(h->fleet, a, 2);
    pump(h);
    assert_int_equal(json_array_size(json_object_get(answer_of(h, &h->poll1), "leases")), 2);
    assert_int_equal(json_array_size(json_object_get(answer_of(h, &h->answer1), "leases")), 2);
    assert_false(answered(h, &poll_c));

    /* b full: a's prefetch takes the next two (c, idle, serves another queue) */
    agent_poll(h, b, &h->answer1, 0, running(j + 2, 2, 1), 60000);
    agent_poll(h, a, &h->poll2, 0, running(j, 2, 1), 60000);
    pump(h);
    submit(h, j + 4, 2, "{\"command\": {\"program\": \"true\"}}");
    pump(h);
    assert_int_equal(json_array_size(json_object_get(answer_of(h, &h->poll2), "leases")), 2);
    assert_int_equal(a->held_slots, 4);
    assert_false(answered(h, &h->answer1) || answered(h, &poll_c));
    release_jobs(j, 6);
}

/*
 * An agent silent for lost_after is lost: its jobs are queued again after the
 * retry backoff (attempt ended, reason lost), or fail when no attempt is left;
 * another agent then gets them.
 */
static void test_lost_agent_requeues(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 2, "[\"default\"]");
    struct job j[2];
    submit(h, &j[0], 1,
           "{\"retry\": {\"max_attempts\": 3, \"backoff_s\": 1}, "
           "\"command\": {\"program\": \"true\"}}");
    submit(h, &j[1], 1, "{\"retry\": {\"max_attempts\": 1}, \"command\": {\"program\": \"true\"}}");
    agent_poll(h, a, &h->poll1, 2, NULL, 0);
    pump(h);
    assert_int_equal(json_array_size(json_object_get(answer_of(h, &h->poll1), "leases")), 2);

    h->now += LOST_AFTER_S * 1000 - 1000; /* not yet */
    fleet_tick(h->fleet, h->now);
    pump(h);
    assert_int_equal(a->rec.state, AGENT_UP);
    assert_stored(h, j[0].id, JOB_LEASED, 1, "w1");

    h->now += 2000;
    int changed = h->changed;
    fleet_tick(h->fleet, h->now);
    pump(h);
    assert_int_equal(a->rec.state, AGENT_LOST);
    assert_int_equal(stored_agent_state(h), AGENT_LOST);
    assert_int_equal(h->changed, changed + 2);
    struct job back;
    stored(h, j[0].id, &back);
    assert_int_equal(back.state, JOB_QUEUED);
    assert_int_equal(back.attempt, 1);
    assert_string_equal(json_string_value(json_object_get(back.result, "reason")), "lost");
    assert_int_equal(back.run_after, h->now + 1000); /* the retry's backoff */
    job_release(&back);
    stored(h, j[1].id, &back);
    assert_int_equal(back.state, JOB_FAILED);
    assert_string_equal(json_string_value(json_object_get(back.result, "reason")), "lost");
    job_release(&back);
    assert_false(fleet_attempt_live(h->fleet, j[0].id, 1, NULL));
    assert_int_equal(a->held, 0);

    /* another agent gets the retry once its backoff has passed */
    struct live_agent *b = register_agent(h, "w2", 1, "[\"default\"]");
    agent_poll(h, b, &h->poll2, 1, NULL, 60000);
    pump(h);
    assert_false(answered(h, &h->poll2)); /* backing off */
    h->now += 1500;
    fleet_agent_seen(h->fleet, b);
    fleet_tick(h->fleet, h->now);
    pump(h);
    json_t *l = json_array_get(json_object_get(answer_of(h, &h->poll2), "leases"), 0);
    assert_string_equal(json_string_value(json_object_get(l, "job")), j[0].id);
    assert_int_equal(json_integer_value(json_object_get(l, "attempt")), 2);
    assert_stored(h, j[0].id, JOB_LEASED, 2, "w2");
    release_jobs(j, 2);
}

/* Lost while its lease was being committed: the lease is ended at once, the job queued again. */
static void test_lost_while_leasing(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 1, "[\"default\"]");
    struct job j[1];
    submit(h, j, 1, "{\"command\": {\"program\": \"true\"}}");
    agent_poll(h, a, &h->poll1, 1, NULL, 0); /* the lease commit is in flight */
    h->now += LOST_AFTER_S * 1000 + 1;
    fleet_tick(h->fleet, h->now);
    pump(h);
    assert_int_equal(a->rec.state, AGENT_LOST);
    assert_stored(h, j[0].id, JOB_QUEUED, 1, NULL);
    assert_false(fleet_attempt_live(h->fleet, j[0].id, 1, NULL));
    assert_int_equal(a->held, 0);
    release_jobs(j, 1);
}

/* Draining: the state is stored and answered, the parked poll is told, no new lease. */
static void test_drain(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 2, "[\"default\"]");
    agent_poll(h, a, &h->poll1, 2, NULL, 60000);
    pump(h);
    fleet_agent_set_state(h->fleet, a, AGENT_DRAINING, &h->answer1);
    pump(h);
    json_t *ans = answer_of(h, &h->poll1);
    assert_true(json_is_true(json_object_get(ans, "drain")));
    assert_int_equal(json_array_size(json_object_get(ans, "leases")), 0);
    json_t *st = answer_of(h, &h->answer1);
    assert_string_equal(json_string_value(json_object_get(st, "state")), "draining");
    assert_string_equal(json_string_value(json_object_get(st, "name")), "w1");
    assert_int_equal(stored_agent_state(h), AGENT_DRAINING);

    struct job j[1];
    submit(h, j, 1, "{\"command\": {\"program\": \"true\"}}");
    agent_poll(h, a, &h->poll2, 2, json_array(), 0);
    pump(h);
    ans = answer_of(h, &h->poll2);
    assert_int_equal(json_array_size(json_object_get(ans, "leases")), 0);
    assert_stored(h, j[0].id, JOB_QUEUED, 0, NULL);
    release_jobs(j, 1);
}

/* Leaving: stored and answered; what it held is ended (reason error) and queued again. */
static void test_leave(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 1, "[\"default\"]");
    struct job j[1];
    submit(h, j, 1, "{\"command\": {\"program\": \"true\"}}");
    agent_poll(h, a, &h->poll1, 1, NULL, 0);
    pump(h);
    assert_int_equal(json_array_size(json_object_get(answer_of(h, &h->poll1), "leases")), 1);
    fleet_agent_set_state(h->fleet, a, AGENT_LEFT, &h->answer1);
    pump(h);
    json_t *st = answer_of(h, &h->answer1);
    assert_string_equal(json_string_value(json_object_get(st, "state")), "left");
    assert_int_equal(stored_agent_state(h), AGENT_LEFT);
    struct job back;
    stored(h, j[0].id, &back);
    assert_int_equal(back.state, JOB_QUEUED);
    assert_string_equal(json_string_value(json_object_get(back.result, "reason")), "error");
    assert_string_equal(json_string_value(json_object_get(back.result, "error")), "the agent left");
    job_release(&back);
    /* the same state again: answered at once, nothing stored */
    fleet_agent_set_state(h->fleet, a, AGENT_LEFT, &h->answer1);
    assert_string_equal(json_string_value(json_object_get(answer_of(h, &h->answer1), "state")),
                        "left");
    release_jobs(j, 1);
}

/* An attempt past its server deadline (timeout_s + grace) is ended with reason timeout. */
static void test_deadline(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 1, "[\"default\"]");
    struct job j[1];
    submit(h, j, 1,
           "{\"timeout_s\": 1, \"retry\": {\"max_attempts\": 1}, "
           "\"command\": {\"program\": \"sleep\"}}");
    agent_poll(h, a, &h->poll1, 1, NULL, 0);
    pump(h);
    answer_of(h, &h->poll1);
    h->now += 1000 + 2000 - 1; /* the deadline itself: not past */
    fleet_agent_seen(h->fleet, a);
    fleet_tick(h->fleet, h->now);
    pump(h);
    assert_stored(h, j[0].id, JOB_LEASED, 1, "w1");
    h->now += 2;
    fleet_agent_seen(h->fleet, a);
    fleet_tick(h->fleet, h->now);
    pump(h);
    struct job back;
    stored(h, j[0].id, &back);
    assert_int_equal(back.state, JOB_FAILED);
    assert_string_equal(json_string_value(json_object_get(back.result, "reason")), "timeout");
    job_release(&back);
    /* the agent still running it is told to kill it at its next poll */
    agent_poll(h, a, &h->poll2, 0, running(j, 1, 1), 0);
    pump(h);
    json_t *c = json_object_get(answer_of(h, &h->poll2), "cancel");
    assert_int_equal(json_array_size(c), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(c, 0), "job")), j[0].id);
    assert_int_equal(a->rec.state, AGENT_UP);
    release_jobs(j, 1);
}

struct change_op {
    const char *id;
    bool retry;
    int64_t now;
    struct job out;
};

static int change_write(struct store *st, void *arg, struct err *e)
{
    struct change_op *op = arg;
    return (op->retry ? store_job_retry : store_job_cancel)(st, op->id, op->now, &op->out, e);
}

static void change_done(void *arg, int rc, const struct err *e)
{
    if (rc) fail_msg("cancelling or retrying: %s", e->msg);
}

/* Cancels or retries job `id` as the API does: stored, then handed to the fleet. */
static void cancel_or_retry(struct h *h, const char *id, bool retry)
{
    struct change_op op = {.id = id, .retry = retry, .now = h->now};
    commit_submit(h->commit, change_write, change_done, &op);
    pump(h);
    fleet_job_changed(h->fleet, &op.out, false);
    job_release(&op.out);
}

/*
 * A job cancelled while it runs, then retried: its next attempt is not leased while the
 * agent still runs the first (its grace before SIGKILL), whoever polls; the agent is told
 * once, not at each of its polls (each would be answered at once: a loop), then again after
 * DYING_RETELL_MS; the job is leased once a poll no longer lists the attempt, or once the
 * agent reports its end.
 */
static void test_retry_waits_for_the_killed_attempt(void **state)
{
    struct h *h = *state;
    struct live_agent *a = register_agent(h, "w1", 2, "[\"default\"]");
    struct job j[2];
    submit(h, j, 2, "{\"command\": {\"program\": \"sleep\"}}");
    agent_poll(h, a, &h->poll1, 2, NULL, 0);
    pump(h);
    assert_int_equal(json_array_size(json_object_get(answer_of(h, &h->poll1), "leases")), 2);

    for (int round = 0; round < 2; round++) { /* gone from a poll's list; its end reported */
        const char *id = j[round].id;
        cancel_or_retry(h, id, false);
        cancel_or_retry(h, id, true);
        assert_stored(h, id, JOB_QUEUED, 1, NULL);
        int attempt;
        const char *on;
        assert_true(fleet_job_ending(h->fleet, id, &attempt, &on));
        assert_int_equal(attempt, 1);
        assert_string_equal(on, "w1");
        /* what the agent runs: both first attempts, then (round 1) j[0]'s second */
        json_t *run = json_pack("[{s:s, s:i}, {s:s, s:i}]", "job", j[0].id, "attempt",
                                round + 1, "job", j[1].id, "attempt", 1);
        /* its poll still lists attempt 1: told (the cancel), nothing leased */
        agent_poll(h, a, &h->poll2, 1, json_incref(run), 0);
        pump(h);
        json_t *ans = answer_of(h, &h->poll2);
        assert_int_equal(json_array_size(json_object_get(ans, "leases")), 0);
        assert_int_equal(json_array_size(json_object_get(ans, "cancel")), 1);
        /* and again: parked, not answered at once with the same cancel */
        agent_poll(h, a, &h->poll3, 1, json_incref(run), 60000);
        pump(h);
        assert_false(answered(h, &h->poll3));
        h->now += 5000; /* told again after a while, in case the answer was lost */
        agent_poll(h, a, &h->poll2, 1, json_incref(run), 60000);
        pump(h);
        ans = answer_of(h, &h->poll3); /* the parked poll, replaced: answered empty */
        assert_int_equal(json_array_size(json_object_get(ans, "cancel")), 0);
        ans = answer_of(h, &h->poll2);
        assert_int_equal(json_array_size(json_object_get(ans, "cancel")), 1);
        assert_int_equal(json_array_size(json_object_get(ans, "leases")), 0);
        assert_stored(h, id, JOB_QUEUED, 1, NULL);
        h->now -= 5000; /* the ready queues read the real clock: the next retry's run_after
                           must not be ahead of it */
        if (round == 1) { /* its end reported: the poll parked meanwhile, which listed it, is
                             answered (a draining agent leaves once it has) */
            agent_poll(h, a, &h->poll3, 1, json_incref(run), 60000);
            pump(h);
            assert_false(answered(h, &h->poll3));
            fleet_attempt_ended(h->fleet, a, id, 1);
            pump(h);
            ans = answer_of(h, &h->poll3);
            assert_int_equal(json_array_size(json_object_get(ans, "leases")), 0);
        }
        json_array_remove(run, (size_t)round); /* attempt 1 is gone */
        agent_poll(h, a, &h->poll1, 1, run, 0);
        pump(h);
        assert_false(fleet_job_ending(h->fleet, id, &attempt, &on));
        ans = answer_of(h, &h->poll1);
        json_t *l = json_object_get(ans, "leases");
        assert_int_equal(json_array_size(l), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "job")), id);
        assert_int_equal(json_integer_value(json_object_get(json_array_get(l, 0), "attempt")), 2);
        assert_int_equal(json_array_size(json_object_get(ans, "cancel")), 0);
    }
    release_jobs(j, 2);
}

/* Registration rules the fleet checks without a store read. */
static void test_register_rules(void **state)
{
    struct h *h = *state;
    register_agent(h, "w1", 1, "[\"default\"]");
    struct err e = ERR_INIT;
    assert_int_equal(fleet_may_register(h->fleet, "w1", "other", NULL, &e), ERR_CONFLICT);
    assert_string_equal(e.field, "name");
    err_clear(&e);
    assert_int_equal(fleet_may_register(h->fleet, "w1", "tok", "inst-b", &e), ERR_CONFLICT);
    err_clear(&e);
    fleet_register_begin(h->fleet, "w9");
    assert_int_equal(fleet_may_register(h->fleet, "w9", "tok", NULL, &e), ERR_CONFLICT);
    fleet_register_end(h->fleet, "w9");
    err_clear(&e);
    assert_int_equal(fleet_may_register(h->fleet, "w9", "tok", NULL, &e), 0);
    json_t *list = fleet_agents_json(h->fleet);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
}

/* A submit's fit (fleet_job_fit_text) is remembered, and counted again whenever what it counts
   changes: an agent registered, its runtimes, its state, its queue's pause. */
static void test_fit_remembered(void **state)
{
    struct h *h = *state;
    struct job j[2];
    submit(h, j, 1, "{\"command\": {\"program\": \"true\"}}");
    submit(h, j + 1, 1, "{\"command\": {\"program\": \"true\", \"sandbox\": true}}");
    int n = -1;
    const char *t = fleet_job_fit_text(h->fleet, &j[0], &n);
    assert_int_equal(n, 0);
    assert_non_null(strstr(t, "queue 'default' has no listening agent (no agent is up)"));
    assert_non_null(fleet_job_fit_text(h->fleet, &j[1], &n));
    assert_int_equal(n, 0);

    struct live_agent *a = register_agent(h, "w1", 2, "[\"default\"]");
    assert_string_equal(fleet_job_fit_text(h->fleet, &j[0], &n), "[]");
    assert_int_equal(n, 1);
    t = fleet_job_fit_text(h->fleet, &j[1], &n); /* a sandbox, and the agent has no bwrap */
    assert_int_equal(n, 0);
    assert_string_not_equal(t, "[]");
    fleet_agent_set_runtimes(h->fleet, a, a->rec.runtimes | PROTO_RT_BWRAP); /* a poll said */
    assert_string_equal(fleet_job_fit_text(h->fleet, &j[1], &n), "[]");
    assert_int_equal(n, 1);

    sched_queue_pause(h->sched, "default", h->now);
    assert_non_null(strstr(fleet_job_fit_text(h->fleet, &j[0], &n), "queue 'default' is paused"));
    assert_int_equal(n, 1);
    sched_queue_pause(h->sched, "default", 0);
    assert_string_equal(fleet_job_fit_text(h->fleet, &j[0], &n), "[]");

    fleet_agent_set_state(h->fleet, a, AGENT_DRAINING, &h->answer1);
    pump(h);
    assert_non_null(strstr(fleet_job_fit_text(h->fleet, &j[0], &n), "no listening agent"));
    assert_int_equal(n, 0);
    release_jobs(j, 2);
}

static int count_stored(void *arg, const struct agent_rec *a)
{
    (void)a;
    ++*(int *)arg;
    return 0;
}

static int stored_agents(struct h *h)
{
    int n = 0;
    struct err e = ERR_INIT;
    assert_int_equal(store_agent_scan(h->reads, count_stored, &n, &e), 0);
    return n;
}

/*
 * The leader's tick forgets agents lost or left longer than agent_retention_ms ago: out of
 * the store and of the fleet; one up is kept, and one gone while it holds a lease is kept
 * until the lease has ended. The name is free again afterwards.
 */
static void test_gone_agents_forgotten(void **state)
{
    struct h *h = *state;
    struct live_agent *left = register_agent(h, "w1", 1, "[\"default\"]");
    struct live_agent *lost = register_agent(h, "w2", 1, "[\"default\"]");
    struct live_agent *up = register_agent(h, "w3", 1, "[\"default\"]");
    char left_id[UUID_STR_LEN];
    memcpy(left_id, left->rec.id, UUID_STR_LEN);
    fleet_agent_set_state(h->fleet, left, AGENT_LEFT, NULL);
    fleet_agent_set_state(h->fleet, lost, AGENT_LOST, NULL);
    pump(h);

    h->now += AGENT_RETENTION_MS - 1000; /* not yet */
    fleet_agent_seen(h->fleet, up);
    fleet_tick(h->fleet, h->now);
    pump(h);
    assert_non_null(fleet_agent(h->fleet, "w1"));
    assert_non_null(fleet_agent(h->fleet, "w2"));
    assert_int_equal(stored_agents(h), 3);

    h->now += 2000;
    fleet_agent_seen(h->fleet, up);
    fleet_tick(h->fleet, h->now);
    pump(h);
    assert_null(fleet_agent(h->fleet, "w1"));
    assert_null(fleet_agent(h->fleet, left_id));
    assert_null(fleet_agent(h->fleet, "w2"));
    assert_ptr_equal(fleet_agent(h->fleet, "w3"), up);
    assert_int_equal(up->rec.state, AGENT_UP);
    assert_int_equal(stored_agents(h), 1);
    json_t *list = fleet_agents_json(h->fleet);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);

    /* registered again: a new agent */
    struct live_agent *again = register_agent(h, "w1", 1, "[\"default\"]");
    assert_string_not_equal(again->rec.id, left_id);
    assert_int_equal(stored_agents(h), 2);

    /* a lease being committed for it keeps a gone agent until the lease is done and ended */
    struct job j[1];
    submit(h, j, 1, "{\"command\": {\"program\": \"true\"}}");
    fleet_tick(h->fleet, h->now); /* the ready queues' clock catches up with the test's */
    agent_poll(h, again, &h->poll1, 1, NULL, 0);
    assert_true(again->leasing);
    fleet_agent_set_state(h->fleet, again, AGENT_LEFT, NULL);
    h->now += AGENT_RETENTION_MS + 1000;
    fleet_agent_seen(h->fleet, up);
    fleet_tick(h->fleet, h->now); /* leasing: not this time */
    pump(h);
    assert_ptr_equal(fleet_agent(h->fleet, "w1"), again);
    assert_int_equal(again->held, 0); /* the lease landed, then was ended: the agent left */
    fleet_agent_seen(h->fleet, up);
    fleet_tick(h->fleet, h->now);
    pump(h);
    assert_null(fleet_agent(h->fleet, "w1"));
    struct job back;
    stored(h, j[0].id, &back);
    assert_int_equal(back.state, JOB_QUEUED);
    assert_int_equal(back.attempt, 1);
    assert_string_equal(json_string_value(json_object_get(back.result, "error")), "the agent left");
    job_release(&back);
    release_jobs(j, 1);
}

static int synced_cb(void *arg, const struct agent_rec *a)
{
    fleet_agent_synced(arg, a);
    return 0;
}

static int forget_write(struct store *st, void *arg, struct err *e)
{
    return store_agent_forget(st, arg, INT64_MAX, e);
}

static void forget_done(void *arg, int rc, const struct err *e)
{
    if (rc) fail_msg("forgetting: %s", e->msg);
}

/*
 * Another server's leader forgot an agent: a scan of the store's agents no longer lists it,
 * and fleet_agents_synced_all drops it here. An agent up that the scan did not list (not
 * stored yet, say) stays.
 */
static void test_forgotten_elsewhere(void **state)
{
    struct h *h = *state;
    struct live_agent *gone = register_agent(h, "w1", 1, "[\"default\"]");
    register_agent(h, "w2", 1, "[\"default\"]");
    fleet_agent_set_state(h->fleet, gone, AGENT_LEFT, NULL);
    pump(h);
    char id[UUID_STR_LEN];
    memcpy(id, gone->rec.id, UUID_STR_LEN);
    commit_submit(h->commit, forget_write, forget_done, id);
    pump(h);
    struct agent_rec r;
    agent_rec_init(&r);
    uuid7_new(r.id);
    r.name = strdup("w3");
    r.labels = json_object();
    r.queues = json_pack("[s]", "default");
    r.slots = 1;
    r.owner = strdup("tok");
    r.last_seen = r.registered_at = h->now;
    fleet_agent_registered(h->fleet, &r); /* up, and not in the store */

    struct err e = ERR_INIT;
    assert_int_equal(store_agent_scan(h->reads, synced_cb, h->fleet, &e), 0);
    assert_non_null(fleet_agent(h->fleet, "w1")); /* until the scan is known to be whole */
    fleet_agents_synced_all(h->fleet);
    assert_null(fleet_agent(h->fleet, "w1"));
    assert_null(fleet_agent(h->fleet, id));
    assert_non_null(fleet_agent(h->fleet, "w2"));
    assert_non_null(fleet_agent(h->fleet, "w3"));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    evthread_use_pthreads(); /* the committer hands results back from its thread */
    const struct CMUnitTest tests[] = {
        T(test_poll_leases),
        T(test_parked_poll),
        T(test_stale_candidate_keeps_poll),
        T(test_synced_while_leasing),
        T(test_lease_synced_from_event),
        T(test_unknown_lease_read_before_cancel),
        T(test_own_commit_after_a_synced_lease),
        T(test_agents_reread_after_outage),
        T(test_undelivered_lease),
        T(test_prefetch),
        T(test_prefetch_after_free_slots),
        T(test_lost_agent_requeues),
        T(test_lost_while_leasing),
        T(test_drain),
        T(test_leave),
        T(test_deadline),
        T(test_retry_waits_for_the_killed_attempt),
        T(test_register_rules),
        T(test_fit_remembered),
        T(test_gone_agents_forgotten),
        T(test_forgotten_elsewhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
