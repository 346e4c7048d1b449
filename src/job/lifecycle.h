/*
 * lifecycle.h - THE rules of a job's life. Every change of a job's state or
 * attempt (submit, lease, start, progress, finish, retry with backoff, lost,
 * deadline, cancel) is an event applied to the record in memory by
 * lifecycle_apply(), over one table of (state, event) pairs; a pair the table
 * does not allow is refused (ERR_CONFLICT naming both) and changes nothing.
 *
 *            submit  lease  unlease  start  progress  finish lost deadline  cancel  unblock  retry  reblock  settle
 *   (new)      ok
 *   blocked                                                                    ok       ok                      ok
 *   queued            ok                                                      ok
 *   leased                   ok       ok      ok        ok     ok    ok        ok
 *   running                           same    ok        ok     ok    ok        ok
 *   failed, cancelled                                                                           ok     ok
 *   succeeded: none
 *
 * retry (POST /v1/jobs/{id}/retry, by hand) queues a failed or cancelled job
 * again for one more attempt, now, whatever its retry policy says: the next
 * lease makes attempt N+1 (its history and logs keep the earlier ones), and
 * its end is final (max_attempts is not raised, so it is not retried again
 * by itself).
 *
 * reblock (a workflow's retry, POST /v1/workflows/{id}/retry) is retry for a node whose
 * upstreams must run again first: the job waits, blocked, until they succeed (unblock).
 *
 * settle ends a workflow's fan-out node (docs/api.md "Workflows"), a job no agent runs: its
 * placeholder waits blocked while its array's tasks run and is settled when the last one ends
 * (succeeded when all did, else failed or cancelled), or failed at once when its array cannot
 * be made (an upstream that wrote no object, a fan-in over the argument limit).
 *
 * finish, lost and deadline end the attempt: succeeded (exit 0), cancelled,
 * queued again after the retry backoff while attempts remain and the retry
 * budget of its class (retry.on) allows, else failed.
 * No I/O here: the caller writes the changed record with store_job_update(),
 * fenced on the attempt and states it read, so a stale caller changes nothing.
 */
#ifndef DROVER_JOB_LIFECYCLE_H
#define DROVER_JOB_LIFECYCLE_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "job/job.h"

enum job_event {
    JOB_EV_SUBMIT,   /* a new record: -> queued */
    JOB_EV_LEASE,    /* queued -> leased to an agent, attempt + 1 */
    JOB_EV_UNLEASE,  /* leased -> queued: the lease never reached its agent (attempt - 1) */
    JOB_EV_START,    /* leased -> running (its process started) */
    JOB_EV_PROGRESS, /* leased, running: new progress; no change of state */
    JOB_EV_FINISH,   /* the agent reported the attempt's end */
    JOB_EV_LOST,     /* the agent holding it was lost, or the lease never reached it */
    JOB_EV_DEADLINE, /* the server's deadline for the attempt passed */
    JOB_EV_CANCEL,   /* any state not terminal -> cancelled */
    JOB_EV_UNBLOCK,  /* blocked -> queued (its dependencies are done) */
    JOB_EV_RETRY,    /* failed, cancelled -> queued: one more attempt, by hand */
    JOB_EV_REBLOCK,  /* failed, cancelled -> blocked: a workflow's retry, upstreams first */
    JOB_EV_SETTLE,   /* blocked -> succeeded, failed or cancelled: a node no agent runs ended */
    JOB_NEVENTS
};

/* The state of a record not yet submitted (job_init's), for JOB_EV_SUBMIT. */
#define JOB_NEW JOB_NSTATES

/* The states a job holds while an agent has it. */
#define JOB_HELD_STATES ((1u << JOB_LEASED) | (1u << JOB_RUNNING))

/* How an attempt ended (docs/protocol.md "finished"), for finish, lost and deadline. */
struct attempt_end {
    const char *reason; /* exit, signal, timeout, cancelled, error, oom, lost */
    bool has_exit_code;
    int exit_code;
    int signal;              /* 0 = none */
    int64_t duration_ms;     /* -1 = unknown: now - started_at when it started */
    const char *error;       /* NULL = none */
    const char *stdout_head; /* the first bytes of stdout, or NULL */
    size_t stdout_len;
    json_t *outputs; /* [{"uri", "size", "sha256"}] uploaded by the agent, borrowed; or NULL */
};

/* What an event brings; each event reads only its own fields. */
struct job_event_args {
    int64_t now_ms;
    int64_t start_ms;              /* start, finish: when the process started as its agent
                                      says (started_ms_ago); 0 = now (start), unknown (finish) */
    const char *agent;             /* lease: the agent's name */
    const struct attempt_end *end; /* finish, lost, deadline */
    json_t *progress;              /* progress: {"percent", "message", "updated_at"}, stolen */
    const char *why;               /* cancel, settle: why, as the result's "error" (NULL: none) */
    int settle;                    /* settle: the end state (succeeded, failed or cancelled) */
    const char *reason;            /* settle: the result's "reason" (NULL: "error") */
};

/* What lifecycle_apply returns besides 0 and errors: allowed, and nothing to write. */
#define LIFECYCLE_SAME 1

/* Whether the table allows `ev` in `state` (JOB_NEW for a record not yet submitted). */
bool lifecycle_allowed(int state, enum job_event ev);
/*
 * Applies `ev` to j: 0 (j changed), LIFECYCLE_SAME (allowed, nothing changes:
 * a repeated start), or ERR_CONFLICT with e naming the state and the event
 * (j unchanged). a->progress is stolen whatever the outcome.
 */
int lifecycle_apply(struct job *j, enum job_event ev, const struct job_event_args *a,
                    struct err *e);
const char *job_event_name(enum job_event ev);

/*
 * Whether an attempt of j that ended as `end` is retried: not cancelled, attempts remain
 * (max_attempts), and, when the spec has retry.on, its class's budget has retries left (the
 * class's earlier ends in j->attempts, where end_attempt has put this end already, are the
 * retries used) or, for an exit, retry.on.exit_codes lists its code.
 */
bool lifecycle_may_retry(const struct job *j, const struct attempt_end *end);
/*
 * The retries j has used, by class of end: {"exit", "signal", "timeout", "error", "oom",
 * "lost"} (the API's job "retries"); a new reference.
 */
json_t *lifecycle_retries_json(const struct job *j);

/* Delay before attempt `next_attempt` runs: retry.backoff_s * 2^(next_attempt - 2), capped. */
int64_t lifecycle_backoff_ms(const struct job *j, int next_attempt);

#endif
