/* lifecycle.c - see lifecycle.h. */
#include "job/lifecycle.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "job/protocol.h"

#define B(s) (1u << (s))
#define HELD (B(JOB_LEASED) | B(JOB_RUNNING))
#define NOT_TERMINAL (B(JOB_BLOCKED) | B(JOB_QUEUED) | HELD)

/* THE table: for each event, the states it may happen in (JOB_NEW included as a bit). */
static const struct {
    const char *name;
    unsigned from;
} events[JOB_NEVENTS] = {
    [JOB_EV_SUBMIT] = {"submit", B(JOB_NEW)},
    [JOB_EV_LEASE] = {"lease", B(JOB_QUEUED)},
    [JOB_EV_UNLEASE] = {"unlease", B(JOB_LEASED)},
    [JOB_EV_START] = {"start", HELD},
    [JOB_EV_PROGRESS] = {"progress", HELD},
    [JOB_EV_FINISH] = {"finish", HELD},
    [JOB_EV_LOST] = {"lost", HELD},
    [JOB_EV_DEADLINE] = {"deadline", HELD},
    [JOB_EV_CANCEL] = {"cancel", NOT_TERMINAL},
    [JOB_EV_UNBLOCK] = {"unblock", B(JOB_BLOCKED)},
    [JOB_EV_RETRY] = {"retry", B(JOB_FAILED) | B(JOB_CANCELLED)},
    [JOB_EV_REBLOCK] = {"reblock", B(JOB_FAILED) | B(JOB_CANCELLED)},
    [JOB_EV_SETTLE] = {"settle", B(JOB_BLOCKED)},
};

const char *job_event_name(enum job_event ev)
{
    return ev >= 0 && ev < JOB_NEVENTS ? events[ev].name : "unknown";
}

bool lifecycle_allowed(int state, enum job_event ev)
{
    return ev >= 0 && ev < JOB_NEVENTS && state >= 0 && state <= JOB_NEW &&
           (events[ev].from & B(state));
}

int64_t lifecycle_backoff_ms(const struct job *j, int next_attempt)
{
    double base = json_number_value(spec_get(j->spec, "retry.backoff_s"));
    double cap = json_number_value(spec_get(j->spec, "retry.max_backoff_s"));
    int n = next_attempt - 2;
    double d = base * pow(2.0, n < 0 ? 0 : n > 30 ? 30 : n);
    if (d > cap) d = cap;
    return (int64_t)(d * 1000.0);
}

/* The length of s[0..n) without a UTF-8 sequence cut short at its end. */
static size_t utf8_whole(const char *s, size_t n)
{
    size_t i = n, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0) return n;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return need > back + 1 ? i - 1 : n;
}

static json_t *result_json(const struct attempt_end *end, int64_t duration_ms)
{
    json_t *r = json_object();
    json_object_set_new(r, "reason", json_string(end->reason));
    json_object_set_new(r, "exit_code",
                        end->has_exit_code ? json_integer(end->exit_code) : json_null());
    json_object_set_new(r, "signal", end->signal ? json_integer(end->signal) : json_null());
    json_object_set_new(r, "duration_ms",
                        duration_ms >= 0 ? json_integer(duration_ms) : json_null());
    json_object_set_new(r, "error", end->error ? json_string(end->error) : json_null());
    /* The head is cut (PROTO_RESULT_STDOUT_MAX), maybe inside a character: keep only whole ones. */
    json_t *out = end->stdout_head ? json_stringn(end->stdout_head,
                                                  utf8_whole(end->stdout_head, end->stdout_len))
                                   : json_string("");
    json_object_set_new(r, "stdout", out ? out : json_string(""));
    json_object_set_new(r, "outputs", end->outputs ? json_deep_copy(end->outputs) : json_array());
    return r;
}

/*
 * Retry budgets: how each way an attempt can end is retried (docs/api.md "retry").
 * Without retry.on every bad end is retried while attempts remain (max_attempts).
 * With retry.on, an end is retried only while its class has retries left in its budget
 * (retry.on.<budget>; the class's earlier ends in the job's attempts are the retries
 * it used), and still only while attempts remain. An exit is retried when retry.on.exit_codes
 * lists its code. The class names are those of the job's "retries" counts.
 */
enum retry_rule { RETRY_NEVER, RETRY_BUDGET, RETRY_EXIT_CODES };

static const struct {
    enum retry_rule rule;
    const char *budget; /* the retry.on key */
} retry_table[PROTO_REASON_COUNT] = {
    [PROTO_REASON_EXIT] = {RETRY_EXIT_CODES, "exit_codes"},
    [PROTO_REASON_SIGNAL] = {RETRY_BUDGET, "signal"},
    [PROTO_REASON_TIMEOUT] = {RETRY_BUDGET, "timeout"},
    [PROTO_REASON_CANCELLED] = {RETRY_NEVER, NULL},
    [PROTO_REASON_ERROR] = {RETRY_BUDGET, "error"},
    [PROTO_REASON_OOM] = {RETRY_BUDGET, "oom"},
    [PROTO_REASON_LOST] = {RETRY_BUDGET, "lost"},
};

/* How many of the first `n` attempts in the history ended with `reason` (not exit 0). */
static int ends_of(const struct job *j, size_t n, int reason)
{
    int count = 0;
    for (size_t i = 0; i < n && i < json_array_size(j->attempts); i++) {
        json_t *a = json_array_get(j->attempts, i);
        if (proto_reason_parse(json_string_value(json_object_get(a, "reason"))) != reason) continue;
        json_t *code = json_object_get(a, "exit_code");
        count += !(reason == PROTO_REASON_EXIT && json_is_integer(code) &&
                   json_integer_value(code) == 0);
    }
    return count;
}

bool lifecycle_may_retry(const struct job *j, const struct attempt_end *end)
{
    int reason = proto_reason_parse(end->reason);
    if (reason == PROTO_REASON_CANCELLED || j->attempt >= j->max_attempts) return false;
    if (!json_is_object(spec_get(j->spec, "retry.on")))
        return true;              /* no budgets: every bad end, while attempts remain */
    if (reason < 0) return false; /* a reason this server does not know */
    char path[32] = "";
    if (retry_table[reason].budget)
        snprintf(path, sizeof(path), "retry.on.%s", retry_table[reason].budget);
    json_t *v = (json_t *)spec_get(j->spec, path);
    switch (retry_table[reason].rule) {
    case RETRY_NEVER:
        return false;
    case RETRY_EXIT_CODES: {
        size_t i;
        json_t *code;
        json_array_foreach(v, i, code)
        {
            if (end->has_exit_code && json_integer_value(code) == end->exit_code) return true;
        }
        return false;
    }
    case RETRY_BUDGET: {
        /* the history holds this end already (end_attempt appends it first) */
        size_t before = json_array_size(j->attempts);
        before = before ? before - 1 : 0;
        return ends_of(j, before, reason) < json_integer_value(v);
    }
    }
    return false;
}

json_t *lifecycle_retries_json(const struct job *j)
{
    /* every end in the history was retried but the last of a failed job (a succeeded or
     * cancelled job's last end is of a kind never counted, or was retried before the cancel) */
    size_t n = json_array_size(j->attempts);
    if (n && j->state == JOB_FAILED) n--;
    json_t *o = json_object();
    for (int r = 0; r < PROTO_REASON_COUNT; r++)
        if (retry_table[r].rule != RETRY_NEVER)
            json_object_set_new(o, proto_reason_name(r), json_integer(ends_of(j, n, r)));
    return o;
}

/* finish, lost, deadline: the attempt's end goes into its history and the result. */
static void end_attempt(struct job *j, const struct attempt_end *end, int64_t now_ms)
{
    int reason = proto_reason_parse(end->reason);
    bool ok = reason == PROTO_REASON_EXIT && end->has_exit_code && end->exit_code == 0;
    bool cancelled = reason == PROTO_REASON_CANCELLED;

    json_t *entry = json_pack(
        "{s:i, s:s?, s:o, s:o, s:s, s:o, s:o, s:o}", "attempt", j->attempt, "agent", j->agent,
        "started_at", job_time_json(j->started_at), "finished_at", job_time_json(now_ms), "reason",
        end->reason, "exit_code", end->has_exit_code ? json_integer(end->exit_code) : json_null(),
        "signal", end->signal ? json_integer(end->signal) : json_null(), "error",
        end->error ? json_string(end->error) : json_null());
    if (!j->attempts) j->attempts = json_array();
    json_array_append_new(j->attempts, entry);
    json_decref(j->result);
    /* unknown to the reporter (lost, deadline): the time since the process started */
    int64_t duration = end->duration_ms >= 0 ? end->duration_ms
                       : j->started_at       ? now_ms - j->started_at
                                             : -1;
    j->result = result_json(end, duration);

    if (ok) {
        j->state = JOB_SUCCEEDED;
    } else if (cancelled) {
        j->state = JOB_CANCELLED;
    } else if (lifecycle_may_retry(j, end)) { /* retry, after the backoff */
        j->state = JOB_QUEUED;
        j->run_after = now_ms + lifecycle_backoff_ms(j, j->attempt + 1);
        free(j->agent);
        j->agent = NULL;
        json_decref(j->progress); /* the ended attempt's: the next one starts at none */
        j->progress = NULL;
        return; /* not finished: finished_at stays unset */
    } else {
        j->state = JOB_FAILED;
    }
    j->finished_at = now_ms;
}

/* The start an agent reported, within what can be true: not before the job could be leased
   (its run_after, or its creation), not after now. */
static int64_t reported_start(const struct job *j, int64_t start_ms, int64_t now_ms)
{
    int64_t lo = j->run_after > j->created_at ? j->run_after : j->created_at;
    if (start_ms < lo) start_ms = lo;
    return start_ms > now_ms || start_ms <= 0 ? now_ms : start_ms;
}

int lifecycle_apply(struct job *j, enum job_event ev, const struct job_event_args *a, struct err *e)
{
    if (!lifecycle_allowed(j->state, ev)) {
        json_decref(a->progress);
        return err_set(e, ERR_CONFLICT, "job '%s' is %s: it cannot %s", j->id,
                       j->state == JOB_NEW ? "not submitted" : job_state_name(j->state),
                       job_event_name(ev));
    }
    switch (ev) {
    case JOB_EV_SUBMIT:
    case JOB_EV_UNBLOCK:
        j->state = JOB_QUEUED;
        break;
    case JOB_EV_LEASE:
        j->state = JOB_LEASED;
        j->attempt++;
        free(j->agent);
        j->agent = xstrdup(a->agent ? a->agent : "");
        j->started_at = 0;
        j->finished_at = 0;
        json_decref(j->progress);
        j->progress = NULL;
        break;
    case JOB_EV_UNLEASE: /* as if never leased: the same attempt number is granted again */
        j->state = JOB_QUEUED;
        j->attempt--;
        free(j->agent);
        j->agent = NULL;
        break;
    case JOB_EV_START:
        if (j->state == JOB_RUNNING) return LIFECYCLE_SAME; /* a repeated report */
        j->state = JOB_RUNNING;
        j->started_at = a->start_ms > 0 ? reported_start(j, a->start_ms, a->now_ms) : a->now_ms;
        break;
    case JOB_EV_PROGRESS:
        json_decref(j->progress);
        j->progress = a->progress;
        return 0;
    case JOB_EV_FINISH:
        /* An end with no `started` before it: the start it carries, else the process ran for
           its duration, unless the attempt ended in error before any process (staging,
           exec). */
        if (!j->started_at && a->start_ms > 0)
            j->started_at = reported_start(j, a->start_ms, a->now_ms);
        else if (!j->started_at && a->end->duration_ms >= 0 &&
                 proto_reason_parse(a->end->reason) != PROTO_REASON_ERROR)
            j->started_at = a->now_ms - a->end->duration_ms;
        end_attempt(j, a->end, a->now_ms);
        break;
    case JOB_EV_LOST:
    case JOB_EV_DEADLINE:
        end_attempt(j, a->end, a->now_ms);
        break;
    case JOB_EV_CANCEL:
        j->state = JOB_CANCELLED;
        j->finished_at = a->now_ms;
        json_decref(j->result);
        j->result = json_pack("{s:s}", "reason", "cancelled");
        if (a->why) json_object_set_new(j->result, "error", json_string(a->why));
        break;
    case JOB_EV_RETRY: /* queued now; the ended attempts stay in the history */
    case JOB_EV_REBLOCK: /* the same, waiting for its upstreams */
        j->state = ev == JOB_EV_RETRY ? JOB_QUEUED : JOB_BLOCKED;
        j->run_after = a->now_ms;
        j->started_at = 0;
        j->finished_at = 0;
        free(j->agent);
        j->agent = NULL;
        json_decref(j->progress);
        j->progress = NULL;
        json_decref(j->result);
        j->result = NULL;
        break;
    case JOB_EV_SETTLE: {
        int to = a->settle;
        if (to != JOB_SUCCEEDED && to != JOB_FAILED && to != JOB_CANCELLED) {
            json_decref(a->progress);
            return err_set(e, ERR_CONFLICT, "job '%s' cannot settle as %s", j->id,
                           to >= 0 && to < JOB_NSTATES ? job_state_name(to) : "unknown");
        }
        j->state = to;
        j->finished_at = a->now_ms;
        json_decref(j->result);
        j->result = json_pack("{s:s}", "reason", a->reason ? a->reason : "error");
        if (a->why) json_object_set_new(j->result, "error", json_string(a->why));
        break;
    }
    case JOB_NEVENTS:
        break;
    }
    json_decref(a->progress);
    return 0;
}
