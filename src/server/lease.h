/*
 * lease.h - the rules of an attempt, on job records in memory (no I/O):
 * granting a lease, ending an attempt, the retry backoff.
 *
 * The caller writes the changed record with store_job_update(), fenced on
 * the attempt and states it read, so a stale caller changes nothing.
 */
#ifndef DROVER_LEASE_H
#define DROVER_LEASE_H

#include <jansson.h>
#include <stdint.h>

#include "job/job.h"

#define LEASE_DEADLINE_GRACE_S 30 /* default time added to timeout_s for the server's deadline */

/* The states a job holds while an agent has it. */
#define LEASE_HELD_STATES ((1u << JOB_LEASED) | (1u << JOB_RUNNING))

/* How an attempt ended (docs/protocol.md "finished"). */
struct attempt_end {
    const char *reason;    /* a proto_reason_name() (job/protocol.h) */
    bool has_exit_code;
    int exit_code;
    int signal;            /* 0 = none */
    int64_t duration_ms;   /* -1 = unknown */
    const char *error;     /* NULL = none */
    const char *stdout_head; /* the first bytes of stdout, or NULL */
    size_t stdout_len;
    json_t *outputs;       /* [{"uri", "size", "sha256"}] uploaded by the agent, borrowed; or NULL */
};

/* queued -> leased to agent at attempt + 1. */
void lease_grant(struct job *j, const char *agent);
/*
 * The server's deadline for the attempt granted at now_ms: timeout_s + grace_ms
 * later, or 0 when the job has no timeout.
 */
int64_t lease_deadline(const struct job *j, int64_t now_ms, int64_t grace_ms);
/* Delay before attempt `next_attempt` runs: backoff_s * 2^(next_attempt - 2), capped. */
int64_t lease_backoff_ms(const struct job *j, int next_attempt);
/*
 * Records the end of the current attempt: result, attempts history,
 * finished_at, and the new state — succeeded, cancelled, failed, or queued
 * again (run_after = now + backoff) when the attempt failed and attempts remain.
 */
void lease_end_attempt(struct job *j, const struct attempt_end *end, int64_t now_ms);

#endif
