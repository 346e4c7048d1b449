/* job.c - see job.h. */
#include "job/job.h"
#include "job/lifecycle.h"

#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "common/xalloc.h"

static const char *state_names[JOB_NSTATES] = {
    "blocked", "queued", "leased", "running", "succeeded", "failed", "cancelled",
};

const char *job_state_name(int state)
{
    return state >= 0 && state < JOB_NSTATES ? state_names[state] : "unknown";
}

int job_state_parse(const char *name)
{
    for (int i = 0; i < JOB_NSTATES; i++)
        if (!strcmp(name, state_names[i]))
            return i;
    return -1;
}

bool job_state_terminal(int state)
{
    return state == JOB_SUCCEEDED || state == JOB_FAILED || state == JOB_CANCELLED;
}

void job_init(struct job *j)
{
    memset(j, 0, sizeof(*j));
}

void job_release(struct job *j)
{
    free(j->queue);
    free(j->service);
    free(j->name);
    free(j->key);
    free(j->agent);
    free(j->owner);
    free(j->tenant);
    json_decref(j->labels);
    json_decref(j->spec);
    json_decref(j->progress);
    json_decref(j->result);
    json_decref(j->attempts);
    job_init(j);
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void job_from_spec(struct job *j, const struct job_spec *s, int64_t now_ms)
{
    job_init(j);
    uuid7_new(j->id);
    j->state = JOB_NEW;
    j->queue = xstrdup(s->queue);
    j->service = dup_or_null(s->service);
    j->name = dup_or_null(s->name);
    j->key = dup_or_null(s->key);
    j->priority = s->priority;
    j->slots = s->slots;
    j->max_attempts = s->max_attempts;
    j->created_at = now_ms;
    j->run_after = now_ms + (int64_t)(s->delay_s * 1000.0);
    j->retention_ms = s->retention_s * 1000;
    j->labels = json_incref(json_object_get(s->json, "labels"));
    j->spec = json_incref(s->json);
    struct job_event_args born = {.now_ms = now_ms};
    lifecycle_apply(j, JOB_EV_SUBMIT, &born, NULL); /* -> queued */
}

json_t *job_time_json(int64_t ms)
{
    char buf[32];
    if (!ms)
        return json_null();
    time_format_rfc3339(ms, buf, sizeof(buf));
    return json_string(buf);
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *ref_or(json_t *v, json_t *dflt)
{
    if (v) {
        json_decref(dflt);
        return json_incref(v);
    }
    return dflt;
}

json_t *job_to_json(const struct job *j)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(j->id));
    json_object_set_new(o, "state", json_string(job_state_name(j->state)));
    json_object_set_new(o, "queue", json_string(j->queue));
    json_object_set_new(o, "service", str_or_null(j->service));
    json_object_set_new(o, "name", str_or_null(j->name));
    json_object_set_new(o, "key", str_or_null(j->key));
    json_object_set_new(o, "priority", json_integer(j->priority));
    json_object_set_new(o, "labels", ref_or(j->labels, json_object()));
    json_object_set_new(o, "created_at", job_time_json(j->created_at));
    json_object_set_new(o, "run_after", job_time_json(j->run_after));
    json_object_set_new(o, "started_at", job_time_json(j->started_at));
    json_object_set_new(o, "finished_at", job_time_json(j->finished_at));
    json_object_set_new(o, "attempt", json_integer(j->attempt));
    json_object_set_new(o, "max_attempts", json_integer(j->max_attempts));
    json_object_set_new(o, "retries", lifecycle_retries_json(j));
    json_object_set_new(o, "agent", str_or_null(j->agent));
    json_object_set_new(o, "owner", str_or_null(j->owner));
    json_object_set_new(o, "tenant", str_or_null(j->tenant));
    json_object_set_new(o, "progress", ref_or(j->progress, json_null()));
    json_object_set_new(o, "result", ref_or(j->result, json_null()));
    json_object_set_new(o, "attempts", ref_or(j->attempts, json_array()));
    json_object_set_new(o, "spec", ref_or(j->spec, json_null()));
    return o;
}

json_t *job_to_json_brief(const struct job *j)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(j->id));
    json_object_set_new(o, "state", json_string(job_state_name(j->state)));
    json_object_set_new(o, "queue", json_string(j->queue));
    json_object_set_new(o, "priority", json_integer(j->priority));
    json_object_set_new(o, "key", str_or_null(j->key));
    json_object_set_new(o, "created_at", job_time_json(j->created_at));
    return o;
}

char *job_json_dump(const json_t *v)
{
    return v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

json_t *job_json_load(const char *s)
{
    if (!s || !*s)
        return NULL;
    return json_loads(s, JSON_DECODE_ANY, NULL);
}
