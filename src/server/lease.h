/*
 * lease.h - the server's side of a lease: its deadline. The rules of an
 * attempt itself (granting, ending, retry backoff) are the job's lifecycle
 * (job/lifecycle.h).
 */
#ifndef DROVER_LEASE_H
#define DROVER_LEASE_H

#include <stdint.h>

#include "job/job.h"
#include "job/lifecycle.h"

#define LEASE_DEADLINE_GRACE_S 30 /* default time added to timeout_s for the server's deadline */

/* The states a job holds while an agent has it. */
#define LEASE_HELD_STATES JOB_HELD_STATES

/*
 * The server's deadline for the attempt granted at now_ms: timeout_s + grace_ms
 * later, or 0 when the job has no timeout.
 */
int64_t lease_deadline(const struct job *j, int64_t now_ms, int64_t grace_ms);

#endif
