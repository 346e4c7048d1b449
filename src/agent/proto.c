/*
 * proto.c - the agent's side of docs/protocol.md on the async client:
 * register, one poll always outstanding, batched reports, leave.
 *
 * Reports are not queued as messages: each job holds what it still has to
 * say (its started report, unsent output, its latest progress, its finished
 * report) and a batch is built from all jobs, in order, when the loop turn
 * that produced something ends (the flush event has the lowest priority).
 * At most one reports request is in flight; what it carries is listed in
 * a->batch so each result settles (200, 409; 400 is logged and dropped) or
 * keeps (anything else) its item. A job's finished report only goes in a
 * batch that also carries (or follows) all of its output and its started
 * report, so the server sees them in order.
 *
 * Failures: the server unreachable or answering 5xx → the same call again
 * after a backoff (100 ms doubling to 5 s), jobs keep running meanwhile;
 * 404/409 to a poll or to the reports as a whole → register again.
 * With several servers (--server A,B), no answer or a 503 also moves the agent to
 * the next one: reports are fenced by attempt, so sending them again elsewhere is
 * safe, and a server that does not know the agent answers 404 (register there).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/cache.h"
#include "agent/utf8.h"
#include "common/log.h"
#include "common/sdnotify.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

#define REGISTER_TIMEOUT_MS 30000
#define REPORTS_TIMEOUT_MS 60000
#define LEAVE_TIMEOUT_MS 10000
#define POLL_MARGIN_MS 30000 /* beyond wait_s before a poll counts as lost */
#define POLL_QUICK_MS 50     /* an empty poll answer faster than this was not held */
#define POLL_PAUSE_MAX_MS 1000
#define CACHED_RESEND_MS 60000 /* the input cache is listed in a poll at least this often */

static void backoff_next(int *ms)
{
    *ms = *ms ? *ms * 2 : AGENT_BACKOFF_MIN_MS;
    if (*ms > AGENT_BACKOFF_MAX_MS) *ms = AGENT_BACKOFF_MAX_MS;
}

static void timer_arm(struct event *ev, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static void timer_arm_us(struct event *ev, int64_t us)
{
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    evtimer_add(ev, &tv);
}

static char *agent_path(const struct agent *a, const char *what)
{
    char *id = http_escape(a->id);
    char *p = xasprintf("/v1/agents/%s/%s", id, what);
    free(id);
    return p;
}

/* [{"job", "attempt"}] of the jobs whose lease the agent holds (not settled). */
static json_t *held_leases(const struct agent *a)
{
    json_t *list = json_array();
    for (const struct agent_job *j = a->jobs; j; j = j->next) {
        if (j->finished_settled) continue;
        json_array_append_new(list, json_pack("{s:s, s:i}", "job", j->id, "attempt", j->attempt));
    }
    return list;
}

/* A request sent to server `sent` got `status` (0: no answer): on to the next server, once. */
static void server_failed(struct agent *a, size_t sent, long status)
{
    if (status != 0 && status != 503) return;
    if (a->http.current != sent || !http_client_next_server(&a->http)) return;
    /* while every server is away this repeats at each try: a line a minute then */
    log_repeat_fail(&a->switching, time_now_ms(), LOG_WARN,
                    "the server at %s %s; going on with %s", a->http.servers[sent],
                    status ? "is unavailable (503)" : "cannot be reached", a->http.base_url);
}

/* --- register ---------------------------------------------------------------------- */

static void on_register_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    proto_register(arg);
}

static bool id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n < 1 || n >= sizeof(((struct agent *)0)->id)) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] <= 0x20 || id[i] == 0x7f) return false;
    return true;
}

static int int_field(json_t *obj, const char *key, int dflt, int min, int max)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return dflt;
    return (int)json_integer_value(v);
}

static void on_register(void *arg, int rc, long status, json_t *resp, const struct err *e)
{
    struct agent *a = arg;
    a->register_req = NULL;
    const char *id = json_string_value(json_object_get(resp, "id"));
    if (rc == 0 && !id_ok(id)) {
        rc = ERR_INTERNAL;
        log_error("the server's answer to register has no valid agent id");
    }
    if (rc) {
        /* 409: the name is another token's, or another live agent holds it (not a restart
           of this one: its instance differs); waiting would not help, nor would a retry */
        bool fatal = status == 409 ||
                     (!a->ever_registered && (status == 400 || status == 401 || status == 403 ||
                                              status == 404 || status == 405));
        if (fatal) {
            log_error("cannot register with the server at %s: %s%s", a->http.base_url, e->msg,
                      status == 404 || status == 405
                          ? " (does the server implement the agent protocol?)"
                      : status == 401 ? " (check --token / DROVER_TOKEN: an agent token)"
                                      : "");
            a->exit_code = 1;
            a->exiting = true;
            event_base_loopexit(a->base, NULL);
            return;
        }
        server_failed(a, a->register_srv, status);
        backoff_next(&a->register_backoff_ms);
        if (a->register_backoff_ms == AGENT_BACKOFF_MIN_MS) {
            log_warn("cannot register%s%s: %s (retrying)", status ? " with " : "",
                     status ? a->http.base_url : "", e->msg);
            sdnotify_status("cannot register with %s: %s (retrying)", a->http.base_url, e->msg);
        } else
            log_debug("cannot register: %s", e->msg);
        timer_arm(a->register_timer, a->register_backoff_ms);
        return;
    }
    snprintf(a->id, sizeof(a->id), "%s", id);
    /* systemd (Type=notify) counts the agent as started once it is registered, the first time */
    if (!a->ever_registered)
        sdnotify_ready("registered with %s as %s, %d slot(s)", a->http.base_url, a->o.name,
                       a->o.slots);
    else if (!a->draining)
        sdnotify_status("registered again with %s as %s", a->http.base_url, a->o.name);
    a->heartbeat_s = int_field(resp, "heartbeat_s", PROTO_HEARTBEAT_S_DEFAULT, 1, 3600);
    a->lost_after_s = int_field(resp, "lost_after_s", PROTO_LOST_AFTER_S_DEFAULT, 1, 86400);
    /* a server that does not say it takes "prefetch" would refuse it: none is asked for */
    a->server_prefetch = json_is_true(json_object_get(resp, "prefetch"));
    a->registered = a->ever_registered = true;
    a->register_backoff_ms = 0;
    a->m.registrations++;
    log_info("registered with %s as name=%s id=%s slots=%d heartbeat_s=%d lost_after_s=%d",
             a->http.base_url, a->o.name, a->id, a->o.slots, a->heartbeat_s, a->lost_after_s);
    jobs_cancel(a, json_object_get(resp, "cancel"));
    proto_poll(a);
    proto_kick(a);
    agent_check_done(a);
}

json_t *proto_runtimes_json(const struct agent *a)
{
    json_t *arr = json_array();
    for (unsigned bit = 1; bit & PROTO_RT_ALL; bit <<= 1)
        if (a->runtimes & bit) json_array_append_new(arr, json_string(proto_runtime_name(bit)));
    return arr;
}

/*
 * Lists the input cache in a register (always) or poll body (when it changed since it was last
 * sent, or every CACHED_RESEND_MS: a server restarted meanwhile has forgotten it).
 */
static void add_cached(struct agent *a, json_t *body, bool always)
{
    if (!a->cache) return;
    uint64_t gen = cache_generation(a->cache);
    int64_t now_ms = time_mono_ns() / 1000000;
    if (!always && gen == a->cached_sent_gen && now_ms - a->cached_sent_ms < CACHED_RESEND_MS)
        return;
    json_object_set_new(body, "cached", cache_report(a->cache, CACHE_REPORT_MAX));
    a->cached_sent_gen = gen;
    a->cached_sent_ms = now_ms;
}

void proto_register(struct agent *a)
{
    if (a->register_req || a->exiting || evtimer_pending(a->register_timer, NULL)) return;
    a->registered = false;
    json_t *body = json_pack("{s:s, s:O, s:O, s:i, s:s, s:o, s:s, s:o, s:o}", "name", a->o.name,
                             "labels", a->o.labels, "queues", a->o.queues, "slots", a->o.slots,
                             "version", DROVER_VERSION, "running", held_leases(a), "instance",
                             a->instance, "limits", limits_json(&a->limits), "runtimes",
                             proto_runtimes_json(a));
    add_cached(a, body, true);
    a->register_srv = a->http.current;
    if (aclient_request(a->ac, "POST", "/v1/agents/register", body, REGISTER_TIMEOUT_MS,
                        on_register, a, &a->register_req)) {
        log_error("cannot build the register request");
        backoff_next(&a->register_backoff_ms);
        timer_arm(a->register_timer, a->register_backoff_ms);
    }
    json_decref(body);
}

/*
 * The server no longer knows this agent (404), marked it lost (409), or gave its name to
 * another agent process meanwhile (409: registering again then fails and the agent exits).
 */
static void registration_lost(struct agent *a, long status, const char *what)
{
    if (!a->registered) return; /* already registering */
    log_warn("the server answered %ld to %s: %s; registering again", status, what,
             status == 404 ? "it does not know this agent"
                           : "it marked this agent lost or left, or gave its name to another "
                             "agent process");
    a->registered = false;
    sdnotify_status("the server answered %ld to %s; registering again", status, what);
    proto_register(a);
}

/*
 * 401 to a poll or reports: the server no longer takes this agent's token (revoked). Waiting
 * cannot help and no result can be delivered: the running jobs are killed, what they leave
 * stays in the spool (sent when the agent starts again with a valid token), and the agent
 * exits 1.
 */
static void token_refused(struct agent *a, const char *what, const struct err *e)
{
    if (a->hard_stop) return;
    log_error("the server at %s refuses this agent's token to %s (%s): was it revoked? killing "
              "the running jobs and exiting; their results stay in the spool '%s'",
              a->http.base_url, what, e->msg, a->spool.dir);
    sdnotify_status("the server refuses this agent's token: exiting");
    a->exit_code = 1;
    a->registered = false;
    a->draining = a->drain_signal = a->hard_stop = true;
    jobs_stop_all(a, true);
    agent_check_done(a);
}

/* --- poll -------------------------------------------------------------------------------- */

static void on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    proto_poll(arg);
}

static void on_poll(void *arg, int rc, long status, json_t *resp, const struct err *e)
{
    struct agent *a = arg;
    a->poll_req = NULL;
    bool leaving = a->leave_pending;
    a->leave_pending = false;
    if (a->exiting || a->leave_req)
        return; /* leaving: the server refuses polls now, and none is needed */
    if (rc == 0) {
        if (a->poll_failing) log_info("the server at %s answers polls again", a->http.base_url);
        a->poll_failing = false;
        log_repeat_ok(&a->switching, NULL); /* the line above says it */
        a->poll_backoff_ms = 0;
        json_t *leases = json_object_get(resp, "leases"), *cancel = json_object_get(resp, "cancel");
        size_t i;
        json_t *lease;
        json_array_foreach(leases, i, lease) jobs_lease(a, lease);
        jobs_cancel(a, cancel);
        if (json_is_true(json_object_get(resp, "drain")) && !a->draining) {
            log_info("the server asks this agent to drain");
            agent_drain(a, false);
        }
        /*
         * An empty answer that came at once (a draining agent's polls are answered without
         * waiting) must not turn the poll into a busy loop: the next one waits a little,
         * well within the heartbeat.
         */
        if (a->draining && a->njobs == 0 && !json_array_size(leases)) {
            /* Nothing runs and no poll is parked: no new one is needed to leave (it would
               park for a heartbeat); the leave goes once the last reports are out. */
            agent_check_done(a);
            return;
        }
        if (leaving && !json_array_size(leases)) {
            agent_check_done(a); /* no poll is parked now: nothing can be leased to us */
            if (!a->leave_req && !a->exiting) proto_poll(a);
            return;
        }
        int64_t took_ms = (time_mono_ns() - a->poll_sent_ns) / 1000000;
        if (!json_array_size(leases) && !json_array_size(cancel) && took_ms < POLL_QUICK_MS) {
            timer_arm(a->poll_timer, a->heartbeat_s * 1000 / 4 < POLL_PAUSE_MAX_MS
                                         ? a->heartbeat_s * 1000 / 4
                                         : POLL_PAUSE_MAX_MS);
            return;
        }
        proto_poll(a);
        return;
    }
    if (status == 404 || status == 409) {
        registration_lost(a, status, "a poll");
        return;
    }
    if (status == 401) {
        token_refused(a, "a poll", e);
        return;
    }
    if (leaving) {
        agent_check_done(a);
        if (a->leave_req || a->exiting) return;
    }
    a->m.poll_errors++;
    server_failed(a, a->poll_srv, status);
    a->cached_sent_gen = 0; /* it may not have arrived: sent again */
    backoff_next(&a->poll_backoff_ms);
    if (!a->poll_failing)
        log_warn("poll failed: %s (retrying; running jobs go on)", e->msg);
    else
        log_debug("poll failed: %s", e->msg);
    a->poll_failing = true;
    timer_arm(a->poll_timer, a->poll_backoff_ms);
}

void proto_poll(struct agent *a)
{
    if (!a->registered || a->poll_req || a->exiting || a->hard_stop || a->leave_pending ||
        a->leave_req || evtimer_pending(a->poll_timer, NULL))
        return;
    json_t *body = json_pack("{s:i, s:i, s:o, s:s, s:o}", "free_slots", agent_free_slots(a),
                             "wait_s", a->heartbeat_s, "running", held_leases(a), "instance",
                             a->instance, "runtimes", proto_runtimes_json(a));
    add_cached(a, body, false);
    if (a->server_prefetch) json_object_set_new(body, "prefetch", json_integer(agent_prefetch(a)));
    char *path = agent_path(a, "poll");
    a->m.polls++;
    a->poll_sent_ns = time_mono_ns();
    a->poll_srv = a->http.current;
    if (aclient_request(a->ac, "POST", path, body, a->heartbeat_s * 1000L + POLL_MARGIN_MS, on_poll,
                        a, &a->poll_req)) {
        log_error("cannot build the poll request");
        backoff_next(&a->poll_backoff_ms);
        timer_arm(a->poll_timer, a->poll_backoff_ms);
    }
    free(path);
    json_decref(body);
}

/* --- reports ------------------------------------------------------------------------------- */

static bool job_has_news(const struct agent_job *j)
{
    return j->started || j->out.pending.len > j->out.head || j->err.pending.len > j->err.head ||
           j->progress_dirty || ((j->finished || j->release) && !j->finished_settled);
}

bool proto_idle(const struct agent *a)
{
    if (a->reports_req) return false;
    for (const struct agent_job *j = a->jobs; j; j = j->next)
        if (job_has_news(j)) return false;
    return true;
}

void proto_kick(struct agent *a)
{
    event_active(a->flush_ev, EV_TIMEOUT, 0);
}

static void batch_add(struct agent *a, json_t *reports, json_t *report, struct agent_job *j,
                      enum proto_report kind, struct agent_stream *s, size_t len)
{
    if (a->nbatch == a->batch_cap) {
        a->batch_cap = a->batch_cap ? a->batch_cap * 2 : 64;
        a->batch = xrealloc(a->batch, a->batch_cap * sizeof(*a->batch));
    }
    a->batch[a->nbatch++] = (struct batch_item){j, kind, s, len};
    j->batched++;
    json_array_append_new(reports, report);
}

static json_t *job_report(const struct agent_job *j, enum proto_report type)
{
    return json_pack("{s:s, s:i, s:s}", "job", j->id, "attempt", j->attempt, "type",
                     proto_report_name(type));
}

/* Adds the stream's unsent text in chunks within *budget; true when all of it went in. */
static bool batch_stream(struct agent *a, json_t *reports, struct agent_job *j,
                         struct agent_stream *s, size_t *budget)
{
    s->batch_failed = false;
    while (s->head + s->inflight < s->pending.len) {
        if (a->nbatch >= AGENT_REQUEST_REPORTS_MAX) return false;
        const char *p = s->pending.data + s->head + s->inflight;
        size_t avail = s->pending.len - s->head - s->inflight;
        size_t max = *budget < PROTO_LOG_CHUNK_MAX ? *budget : PROTO_LOG_CHUNK_MAX;
        size_t n = utf8_cut(p, avail, max);
        if (n == 0) return false;
        json_t *data = json_stringn(p, n);
        if (!data) {
            /* cannot happen (the text is sanitised); never block the job's other reports */
            log_error("job=%s attempt=%d %s holds invalid UTF-8; %zu bytes dropped", j->id,
                      j->attempt, s->name, n);
            data = json_string("");
        }
        json_t *r = job_report(j, PROTO_REPORT_LOG);
        json_object_set_new(r, "stream", json_string(s->name));
        json_object_set_new(r, "offset", json_integer((json_int_t)(s->base + s->inflight)));
        json_object_set_new(r, "data", data);
        batch_add(a, reports, r, j, PROTO_REPORT_LOG, s, n);
        s->inflight += n;
        *budget -= n;
    }
    return true;
}

static void on_reports(void *arg, int rc, long status, json_t *resp, const struct err *e);

/*
 * Sets report r's "started_ms_ago": how long ago j's process started, as of now (the
 * report's sending), so that the server's started_at does not depend on when the report
 * goes (a started report may wait for the job's end, below, or for the server). A
 * recovered job has the wall-clock start its spool record kept; a job without a process
 * (its start failed) none.
 */
static void start_ago(const struct agent_job *j, json_t *r)
{
    bool known = j->recovered ? j->started_at_ms > 0 : j->start_ns > 0;
    int64_t ago = !known         ? 0
                  : j->recovered ? time_now_ms() - j->started_at_ms
                                 : (time_mono_ns() - j->start_ns) / 1000000;
    if (known)
        json_object_set_new(r, "started_ms_ago", json_integer(ago > 0 ? ago : 0));
    else
        json_object_del(r, "started_ms_ago");
}

/*
 * A started report waits up to START_LINGER_MS for its job's end: a job that ends by then
 * goes as its finished report alone (one report, one commit on the server instead of two).
 * The start is not told late for it: the report says how long ago it was (start_ago).
 */
#define START_LINGER_MS 10

/* Whether all j has to send is a started report younger than START_LINGER_MS (at `now`,
   monotonic); *due is lowered to when it is due. */
static bool young_start(const struct agent_job *j, int64_t now, int64_t *due)
{
    bool start_only = j->started && !(j->finished && !j->finished_settled) &&
                      !j->progress_dirty && j->out.head == j->out.pending.len &&
                      j->err.head == j->err.pending.len;
    int64_t d = j->started_ns + (int64_t)START_LINGER_MS * 1000000;
    if (!start_only || d <= now) return false;
    if (d < *due) *due = d;
    return true;
}

/* j ended and has nothing else to say: its finished report goes alone. */
static bool just_finished(const struct agent_job *j)
{
    return j->phase == PHASE_DONE && j->finished && !j->finished_settled && !j->progress_dirty &&
           j->out.head == j->out.pending.len && j->err.head == j->err.pending.len;
}

/*
 * Ends wait up to FINISH_LINGER_US for the agent's other running jobs to end too, when all
 * there is to send is ends that young (and young starts): the ends of short jobs go in one
 * request, one commit on the server. An end goes at once when no other job runs, or with
 * anything else that goes.
 */
#define FINISH_LINGER_US 5000

static bool ends_wait(const struct agent *a, int64_t now, int64_t *due)
{
    bool running = false, ends = false;
    int64_t d = *due;
    for (const struct agent_job *j = a->jobs; j; j = j->next) {
        running |= j->phase == PHASE_RUNNING;
        if (!job_has_news(j) || young_start(j, now, &d)) continue;
        int64_t end = j->end_ns + (int64_t)FINISH_LINGER_US * 1000;
        if (!just_finished(j) || !j->end_ns || end <= now) return false;
        if (end < d) d = end;
        ends = true;
    }
    if (!ends || !running) return false;
    /* prefetching with no job left waiting: the slots run dry unless new leases come now */
    if (!a->slots_waiting && agent_prefetch(a)) return false;
    *due = d;
    return true;
}

static void send_batch(struct agent *a)
{
    if (!a->registered || a->reports_req || evtimer_pending(a->reports_timer, NULL)) return;
    int64_t now = time_mono_ns(), due = INT64_MAX;
    if (!a->announce_drain && ends_wait(a, now, &due)) {
        timer_arm_us(a->linger_timer, (due - now) / 1000 + 1); /* the earliest of them */
        return;
    }
    json_t *reports = json_array();
    size_t budget = a->log_budget;
    a->nbatch = 0;
    for (struct agent_job *j = a->jobs; j; j = j->next) {
        if (a->nbatch >= AGENT_REQUEST_REPORTS_MAX) break;
        if (!job_has_news(j)) continue;
        if (j->release) { /* given back unstarted: that is all there is to say */
            batch_add(a, reports, job_report(j, PROTO_REPORT_RELEASED), j, PROTO_REPORT_RELEASED,
                      NULL, 0);
            continue;
        }
        /* a young start waits, also when other news go now (a drain is told at once) */
        if (!a->announce_drain && young_start(j, now, &due)) continue;
        /* A job that ended with nothing else to say goes as its finished report alone: the
           server takes the start from it (protocol.md), and the started is settled with it. */
        if (j->started && !just_finished(j)) {
            start_ago(j, j->started);
            batch_add(a, reports, json_incref(j->started), j, PROTO_REPORT_STARTED, NULL, 0);
        }
        bool all_out = batch_stream(a, reports, j, &j->out, &budget);
        bool all_err = all_out && batch_stream(a, reports, j, &j->err, &budget);
        if (j->progress_dirty && a->nbatch < AGENT_REQUEST_REPORTS_MAX) {
            json_t *r = job_report(j, PROTO_REPORT_PROGRESS);
            json_object_set_new(r, "percent", json_real(j->percent));
            json_object_set_new(r, "message", j->message ? json_string(j->message) : json_null());
            batch_add(a, reports, r, j, PROTO_REPORT_PROGRESS, NULL, 0);
            j->progress_dirty = false;
        }
        if (j->phase == PHASE_DONE && j->finished && !j->finished_settled && all_out && all_err &&
            a->nbatch < AGENT_REQUEST_REPORTS_MAX) {
            /* the start goes with the end (a recovered job's started may not have been sent) */
            if (j->started || j->recovered) start_ago(j, j->finished);
            batch_add(a, reports, json_incref(j->finished), j, PROTO_REPORT_FINISHED, NULL, 0);
        }
        if (!all_out || !all_err) break; /* the budget is spent */
    }
    if (due != INT64_MAX && !evtimer_pending(a->linger_timer, NULL))
        timer_arm(a->linger_timer, (int)((due - now) / 1000000 + 1));
    if (a->nbatch == 0 && !a->announce_drain) {
        json_decref(reports);
        return;
    }
    /* A drain is told at once (free_slots 0, draining), so the parked poll gets no new lease
       and is answered at once: the agent can leave without waiting for the heartbeat. */
    bool announce = a->announce_drain;
    a->announce_drain = false;
    /* free_slots: what the agent can take now, after the jobs these reports finish. */
    json_t *body = json_pack("{s:o, s:i, s:s}", "reports", reports, "free_slots",
                             agent_free_slots(a), "instance", a->instance);
    if (a->server_prefetch) json_object_set_new(body, "prefetch", json_integer(agent_prefetch(a)));
    if (announce) json_object_set_new(body, "draining", json_true());
    char *path = agent_path(a, "reports");
    a->m.report_requests++;
    log_debug("sending %zu report(s)", a->nbatch);
    a->reports_srv = a->http.current;
    if (aclient_request(a->ac, "POST", path, body, REPORTS_TIMEOUT_MS, on_reports, a,
                        &a->reports_req)) {
        log_error("cannot build the reports request");
        on_reports(a, ERR_INTERNAL, 0, NULL, &(struct err){ERR_INTERNAL, "cannot build it", ""});
    }
    free(path);
    json_decref(body);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    send_batch(arg);
}

static void on_reports_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    send_batch(arg);
}

static void stream_consume(struct agent_stream *s, size_t n)
{
    s->head += n;
    s->base += n;
    if (s->head == s->pending.len) {
        buf_reset(&s->pending);
        s->head = 0;
    } else if (s->head >= (1u << 20) && s->head * 2 >= s->pending.len) {
        memmove(s->pending.data, s->pending.data + s->head, s->pending.len - s->head + 1);
        s->pending.len -= s->head;
        s->head = 0;
    }
}

static void item_settle(struct batch_item *it, long st, const char *msg)
{
    struct agent_job *j = it->job;
    if (st == 409 && (it->kind == PROTO_REPORT_FINISHED || it->kind == PROTO_REPORT_STARTED))
        log_info("job=%s attempt=%d the server refused a %s report as stale: %s", j->id, j->attempt,
                 proto_report_name(it->kind), msg ? msg : "no longer leased to this agent");
    else if (st == 409)
        log_debug("job=%s attempt=%d the server refused a %s report as stale", j->id, j->attempt,
                  proto_report_name(it->kind));
    else if (st != 200)
        log_error("job=%s attempt=%d the server answered %ld to a report; dropped: %s", j->id,
                  j->attempt, st, msg ? msg : "");
    switch (it->kind) {
    case PROTO_REPORT_STARTED:
        json_decref(j->started);
        j->started = NULL;
        break;
    case PROTO_REPORT_LOG:
        if (it->stream->batch_failed) break; /* a chunk before it was not stored: send both again */
        stream_consume(it->stream, it->len);
        break;
    case PROTO_REPORT_PROGRESS:
        break;
    case PROTO_REPORT_FINISHED:
        j->finished_settled = true;
        json_decref(j->started); /* not sent when the finished went alone (send_batch) */
        j->started = NULL;
        if (st == 200) log_debug("job=%s attempt=%d result delivered", j->id, j->attempt);
        break;
    case PROTO_REPORT_RELEASED:
        if (j->relet && st == 200) { /* the server leased it here again meanwhile: it waits */
            j->release = j->relet = false;
            jobs_wait(j);
            event_active(j->a->start_ev, EV_TIMEOUT, 0);
            break;
        }
        j->finished_settled = true; /* freed by jobs_gc (409: it was no longer ours anyway) */
        break;
    }
}

static void item_retry(struct batch_item *it)
{
    switch (it->kind) {
    case PROTO_REPORT_LOG:
        it->stream->batch_failed = true;
        break;
    case PROTO_REPORT_PROGRESS:
        it->job->progress_dirty = true; /* the latest values go again */
        break;
    default:
        break;
    }
}

/* Ends the batch: every stream's in-flight mark is cleared, every job released. */
static void batch_end(struct agent *a)
{
    for (size_t i = 0; i < a->nbatch; i++) {
        struct batch_item *it = &a->batch[i];
        it->job->batched--;
        if (it->stream) {
            it->stream->inflight = 0;
            it->stream->batch_failed = false;
        }
    }
    a->nbatch = 0;
}

static void on_reports(void *arg, int rc, long status, json_t *resp, const struct err *e)
{
    struct agent *a = arg;
    json_t *results = json_object_get(resp, "results");
    size_t failed = 0;
    a->reports_req = NULL;
    if (a->announce_drain) proto_kick(a); /* a drain began while this request was out */
    if ((rc == 0 || status == 409) && json_is_array(results)) {
        for (size_t i = 0; i < a->nbatch; i++) {
            json_t *r = json_array_get(results, i);
            long st = (long)json_integer_value(json_object_get(r, "status"));
            const char *msg = json_string_value(json_object_get(r, "error"));
            if (st >= 200 && st < 500) {
                /* 200 stored, 409 stale, 404 the job is gone, 400 our bug: nothing to resend */
                item_settle(&a->batch[i], st, msg);
                a->m.reports_sent++;
                if (st != 200 && st != 409) a->m.report_errors++;
            } else {
                item_retry(&a->batch[i]);
                failed++;
            }
        }
        if (a->reports_failing) log_info("the server at %s takes reports again", a->http.base_url);
        a->reports_failing = false;
        a->reports_backoff_ms = 0;
        jobs_cancel(a, json_object_get(resp, "cancel"));
    } else if (status == 400) {
        /* One bad report fails the whole request ("field": "reports[N]"): drop that one only. */
        size_t bad = SIZE_MAX;
        if (sscanf(e->field, "reports[%zu]", &bad) != 1 || bad >= a->nbatch) bad = SIZE_MAX;
        log_error("the server refused %s (a bug in the agent; dropped): %s",
                  bad == SIZE_MAX ? "a whole reports request" : "a report", e->msg);
        for (size_t i = 0; i < a->nbatch; i++) {
            if (bad == SIZE_MAX || i == bad)
                item_settle(&a->batch[i], 400, e->msg);
            else
                item_retry(&a->batch[i]);
        }
        a->m.report_errors++;
    } else {
        for (size_t i = 0; i < a->nbatch; i++)
            item_retry(&a->batch[i]);
        failed = a->nbatch;
        a->m.report_errors++;
        if (status == 413 && a->log_budget > AGENT_REQUEST_LOG_MIN) {
            a->log_budget /= 2;
            log_warn("the server finds reports requests too large; sending at most %zu KiB of "
                     "output per request",
                     a->log_budget >> 10);
        } else if (status == 404 || status == 409) {
            registration_lost(a, status, "reports");
        } else if (status == 401) {
            token_refused(a, "reports", e);
        } else {
            server_failed(a, a->reports_srv, status);
            backoff_next(&a->reports_backoff_ms);
            if (!a->reports_failing)
                log_warn("reports failed: %s (results are kept and sent again)", e->msg);
            else
                log_debug("reports failed: %s", e->msg);
            a->reports_failing = true;
            timer_arm(a->reports_timer, a->reports_backoff_ms);
        }
    }
    if (failed && rc == 0) log_debug("%zu report(s) to be sent again", failed);
    batch_end(a);
    jobs_gc(a);
    if (!proto_idle(a)) proto_kick(a);
}

/* --- leave ------------------------------------------------------------------------------------ */

static void on_leave(void *arg, int rc, long status, json_t *resp, const struct err *e)
{
    struct agent *a = arg;
    (void)status, (void)resp;
    a->leave_req = NULL;
    if (rc)
        log_warn("leave failed: %s (exiting anyway)", e->msg);
    else
        log_info("left the server at %s", a->http.base_url);
    a->exiting = true;
    event_base_loopexit(a->base, NULL);
}

void proto_leave(struct agent *a)
{
    if (a->leave_req) return;
    json_t *body = json_object();
    char *path = agent_path(a, "leave");
    if (aclient_request(a->ac, "POST", path, body, LEAVE_TIMEOUT_MS, on_leave, a, &a->leave_req))
        on_leave(a, ERR_INTERNAL, 0, NULL, &(struct err){ERR_INTERNAL, "cannot build it", ""});
    free(path);
    json_decref(body);
}

/* --- setup -------------------------------------------------------------------------------------
 */

void proto_init(struct agent *a)
{
    a->register_timer = evtimer_new(a->base, on_register_timer, a);
    a->poll_timer = evtimer_new(a->base, on_poll_timer, a);
    a->reports_timer = evtimer_new(a->base, on_reports_timer, a);
    a->flush_ev = event_new(a->base, -1, 0, on_flush, a);
    a->linger_timer = evtimer_new(a->base, on_flush, a);
    event_priority_set(a->flush_ev, AGENT_PRIO_FLUSH);
    a->log_budget = AGENT_REQUEST_LOG_MAX;
}

void proto_release(struct agent *a)
{
    struct event **evs[] = {&a->register_timer, &a->poll_timer, &a->reports_timer, &a->flush_ev,
                            &a->linger_timer};
    for (size_t i = 0; i < ARRAY_SIZE(evs); i++) {
        if (*evs[i]) event_free(*evs[i]);
        *evs[i] = NULL;
    }
    free(a->batch);
    a->batch = NULL;
    a->nbatch = a->batch_cap = 0;
}
