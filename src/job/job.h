/*
 * job.h - a job record: what the store keeps and the API shows.
 *
 * A job is made from a validated spec (spec.h) and then only moves forward
 * through its states: blocked -> queued -> leased -> running -> succeeded |
 * failed | cancelled, going back to queued when an attempt ends badly and may
 * be retried.
 */
#ifndef DROVER_JOB_H
#define DROVER_JOB_H

#include <jansson.h>
#include <stdint.h>

#include "common/uuid.h"
#include "job/spec.h"

enum job_state {
    JOB_BLOCKED,
    JOB_QUEUED,
    JOB_LEASED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_CANCELLED,
    JOB_NSTATES
};

/* "queued" etc.; job_state_parse returns -1 for an unknown name. */
const char *job_state_name(int state);
int job_state_parse(const char *name);
bool job_state_terminal(int state);
/* Queued or blocked: the job waits to run its next attempt (attempt + 1; leasing counts it). */
bool job_state_waiting(int state);
/* The states of a job that has not ended, as a mask of 1 << state. */
#define JOB_UNFINISHED_MASK                                                                        \
    ((1u << JOB_BLOCKED) | (1u << JOB_QUEUED) | (1u << JOB_LEASED) | (1u << JOB_RUNNING))
/* The most jobs one filter of GET /v1/events follows: ids of job=, nodes of a workflow=, an
   array='s tasks with the array (docs/api.md); the CLI's waits follow more another way. */
#define JOB_EVENTS_FILTER_MAX 1000

struct job {
    char id[UUID_STR_LEN];
    int state;
    char *queue;   /* never NULL once filled */
    char *service; /* NULL when absent, likewise name, key and agent */
    char *name;
    char *key;
    char *agent;
    char *owner; /* the name of the token that submitted it; NULL for jobs from before owners */
    char *tenant; /* its owner's tenant (docs/operations.md); NULL for jobs from before tenants */
    int priority;
    int slots;
    int attempt; /* 0 until first leased */
    int max_attempts;
    int64_t created_at; /* ms since the epoch; 0 = not yet */
    int64_t started_at;
    int64_t finished_at;
    int64_t run_after; /* not leased before this time */
    int64_t retention_ms; /* deleted this long after it ends (archived); 0 = the server's default */
    json_t *labels;    /* object; each json_t field owns one reference or is NULL */
    json_t *spec;      /* the normalised spec */
    const char *spec_text; /* borrowed, or NULL: spec as job_spec_dump() writes it, when a
                              store_job_insert() caller has it already (a shared spec) */
    json_t *progress;  /* {"percent","message","updated_at"} or NULL */
    json_t *result;    /* or NULL */
    json_t *attempts;  /* array or NULL */
    /* Typed views of the spec, set with it (job_from_spec, job_set_spec); zero without it: */
    double timeout_s;       /* 0 = none */
    const json_t *requires; /* borrowed from spec: a non-empty object, or NULL */
    struct spec_uri *uris;  /* the objects it names (spec_uris), or NULL */
    size_t nuris;
};

void job_init(struct job *j);
void job_release(struct job *j);

/* Fills a new queued job (fresh UUIDv7) from a validated spec, at time now_ms. */
void job_from_spec(struct job *j, const struct job_spec *s, int64_t now_ms);

/*
 * Sets j->spec to `spec` (a normalised spec, stolen; NULL for none) and its
 * typed views: for a spec read back from the store.
 */
void job_set_spec(struct job *j, json_t *spec);

/* The job as GET /v1/jobs/{id} shows it (docs/api.md "The job"); a new reference. */
json_t *job_to_json(const struct job *j);
/* A time as the API shows it (RFC 3339, ms), or null for 0; a new reference. */
json_t *job_time_json(int64_t ms);

/* Helpers for the JSON columns: a compact string (caller frees), or NULL for NULL. */
char *job_json_dump(const json_t *v);
/* Parses a column back (NULL or empty -> NULL); a new reference. */
json_t *job_json_load(const char *s);
/* A spec as the store keeps it: job_json_dump of its stored form (spec_compact: defaults
   left out). job_json_load reads it back as it is: a normalised spec (spec.h). */
char *job_spec_dump(const json_t *spec);

#endif
