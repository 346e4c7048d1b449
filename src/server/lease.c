/* lease.c - see lease.h. */
#include "server/lease.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/protocol.h"

static double retry_value(const struct job *j, const char *key, double dflt)
{
    json_t *v = json_object_get(json_object_get(j->spec, "retry"), key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

void lease_grant(struct job *j, const char *agent)
{
    j->state = JOB_LEASED;
    j->attempt++;
    free(j->agent);
    j->agent = xstrdup(agent);
    j->started_at = 0;
    j->finished_at = 0;
    json_decref(j->progress);
    j->progress = NULL;
}

int64_t lease_deadline(const struct job *j, int64_t now_ms, int64_t grace_ms)
{
    json_t *t = json_object_get(j->spec, "timeout_s");
    if (!json_is_number(t) || json_number_value(t) <= 0) return 0;
    return now_ms + (int64_t)(json_number_value(t) * 1000.0) + grace_ms;
}

int64_t lease_backoff_ms(const struct job *j, int next_attempt)
{
    double base = retry_value(j, "backoff_s", 1), cap = retry_value(j, "max_backoff_s", 300);
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

static json_t *result_json(const struct attempt_end *end)
{
    json_t *r = json_object();
    json_object_set_new(r, "reason", json_string(end->reason));
    json_object_set_new(r, "exit_code",
                        end->has_exit_code ? json_integer(end->exit_code) : json_null());
    json_object_set_new(r, "signal", end->signal ? json_integer(end->signal) : json_null());
    json_object_set_new(r, "duration_ms",
                        end->duration_ms >= 0 ? json_integer(end->duration_ms) : json_null());
    json_object_set_new(r, "error", end->error ? json_string(end->error) : json_null());
    /* The head is cut (PROTO_RESULT_STDOUT_MAX), maybe inside a character: keep only whole ones. */
    json_t *out = end->stdout_head ? json_stringn(end->stdout_head,
                                                  utf8_whole(end->stdout_head, end->stdout_len))
                                   : json_string("");
    json_object_set_new(r, "stdout", out ? out : json_string(""));
    json_object_set_new(r, "outputs", end->outputs ? json_deep_copy(end->outputs) : json_array());
    return r;
}

void lease_end_attempt(struct job *j, const struct attempt_end *end, int64_t now_ms)
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
    j->result = result_json(end);

    if (ok) {
        j->state = JOB_SUCCEEDED;
    } else if (cancelled) {
        j->state = JOB_CANCELLED;
    } else if (j->attempt < j->max_attempts) {
        j->state = JOB_QUEUED;
        j->run_after = now_ms + lease_backoff_ms(j, j->attempt + 1);
        free(j->agent);
        j->agent = NULL;
        return; /* not finished: finished_at stays unset */
    } else {
        j->state = JOB_FAILED;
    }
    j->finished_at = now_ms;
}
