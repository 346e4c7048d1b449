/* job.c - see job.h. */
#include "job/job.h"
#include "job/array.h"
#include "job/lifecycle.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
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

bool job_state_waiting(int state)
{
    return state == JOB_QUEUED || state == JOB_BLOCKED;
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
    free(j->uris);
    job_init(j);
}

/* The typed views of j->spec, read once (spec.h). */
static void set_views(struct job *j, double timeout_s, const json_t *requires)
{
    j->timeout_s = timeout_s;
    j->requires = json_object_size(requires) ? requires : NULL;
    free(j->uris);
    j->uris = NULL;
    j->nuris = j->spec ? spec_uris(j->spec, NULL, 0) : 0;
    if (j->nuris) {
        j->uris = xcalloc(j->nuris, sizeof(*j->uris));
        spec_uris(j->spec, j->uris, j->nuris);
    }
}

void job_set_spec(struct job *j, json_t *spec)
{
    json_decref(j->spec);
    j->spec = spec;
    struct job_spec v = {0};
    if (spec)
        spec_views(&v, spec);
    set_views(j, v.timeout_s, v.requires);
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
    set_views(j, s->timeout_s, s->requires);
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
    /* the hub's version the job was expanded from; null for other jobs */
    json_object_set_new(o, "service_version",
                        ref_or(json_object_get(j->spec, "service_version"), json_null()));
    json_object_set_new(o, "name", str_or_null(j->name));
    json_object_set_new(o, "array", array_task_json(j)); /* a task's array and index */
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
    json_object_set_new(o, "spec", j->spec ? spec_expand(json_incref(j->spec)) : json_null());
    return o;
}

static void dump_string(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF"; /* as jansson */
    buf_grow(b, n + 2);
    buf_addc(b, '"');
    size_t run = 0; /* bytes copied as they are, written at once */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        buf_add(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': buf_add(b, "\\\"", 2); break;
        case '\\': buf_add(b, "\\\\", 2); break;
        case '\b': buf_add(b, "\\b", 2); break;
        case '\f': buf_add(b, "\\f", 2); break;
        case '\n': buf_add(b, "\\n", 2); break;
        case '\r': buf_add(b, "\\r", 2); break;
        case '\t': buf_add(b, "\\t", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_add(b, u, 6);
        }
        }
    }
    buf_add(b, s + run, n - run);
    buf_addc(b, '"');
}

/* jansson's real format (precision 17, always a '.' or an exponent), without its locale work. */
static void dump_real(struct buf *b, double d)
{
    char t[40];
    snprintf(t, sizeof(t), "%.17g", d);
    char *e = strchr(t, 'e');
    if (e) { /* as jansson: no '+' and no leading zeros in the exponent */
        char *from = e + 1, *to = e + 1;
        if (*from == '+')
            from++;
        else if (*from == '-')
            *to++ = *from++;
        while (*from == '0' && from[1])
            from++;
        memmove(to, from, strlen(from) + 1);
    } else if (!strpbrk(t, ".n")) { /* n: nan/inf, which jansson refuses to make anyway */
        strcat(t, ".0");
    }
    buf_adds(b, t);
}

static void dump_value(struct buf *b, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        bool first = true;
        buf_addc(b, '{');
        json_object_foreach((json_t *)v, k, x) {
            if (!first)
                buf_addc(b, ',');
            first = false;
            dump_string(b, k, strlen(k));
            buf_addc(b, ':');
            dump_value(b, x);
        }
        buf_addc(b, '}');
        break;
    }
    case JSON_ARRAY:
        buf_addc(b, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                buf_addc(b, ',');
            dump_value(b, json_array_get(v, i));
        }
        buf_addc(b, ']');
        break;
    case JSON_STRING:
        dump_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        buf_addf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        dump_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        buf_add(b, "true", 4);
        break;
    case JSON_FALSE:
        buf_add(b, "false", 5);
        break;
    case JSON_NULL:
        buf_add(b, "null", 4);
        break;
    }
}

/*
 * What json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes, byte for byte
 * (tests/unit/test_job_json.c), written straight into one buffer: jansson's
 * dumper goes through a callback per token and decodes every string's UTF-8,
 * and dumping the spec was ~40 % of the writer thread in batches of 1,000.
 * jansson's values hold valid UTF-8, so bytes over 0x7f are copied as they are.
 */
char *job_json_dump(const json_t *v)
{
    if (!v)
        return NULL;
    struct buf b = BUF_INIT;
    dump_value(&b, v);
    return buf_detach(&b);
}

json_t *job_json_load(const char *s)
{
    if (!s || !*s)
        return NULL;
    return json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL); /* output may hold NUL */
}

char *job_spec_dump(const json_t *spec)
{
    json_t *c = spec_compact(spec);
    char *s = job_json_dump(c);
    json_decref(c);
    return s;
}

