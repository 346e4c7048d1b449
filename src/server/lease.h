/*
 * lease.h - the server's side of a lease: writing it (one store call,
 * store_job_lease), its deadline, and its entry in a poll's answer. The rules
 * of an attempt itself (granting, ending, retry backoff) are the job's
 * lifecycle (job/lifecycle.h).
 */
#ifndef DROVER_LEASE_H
#define DROVER_LEASE_H

#include <stdint.h>

#include "common/buf.h"
#include "job/job.h"
#include "job/lifecycle.h"
#include "store/store.h"

#define LEASE_DEADLINE_GRACE_S 30 /* default time added to timeout_s for the server's deadline */

/* The states a job holds while an agent has it. */
#define LEASE_HELD_STATES JOB_HELD_STATES

/*
 * The server's deadline for an attempt granted at now_ms to a job with that
 * timeout_s (0: none): timeout_s + grace_ms later, or 0 when it has none.
 */
int64_t lease_deadline(double timeout_s, int64_t now_ms, int64_t grace_ms);

/*
 * One grant of leases to an agent: made on the loop with the scheduler's
 * picks, written on the writer thread, answered on the loop.
 */
struct lease_grant {
    char *agent;           /* the agent's name */
    int64_t now_ms;        /* when granted */
    int64_t grace_ms;      /* --deadline-grace */
    size_t n;              /* candidates */
    size_t nleased;        /* out: how many were leased */
    struct store_lease *c; /* the candidates, in the scheduler's order */
    double *timeout_s;     /* per candidate: its spec's timeout_s (0: none) */
    int64_t *deadline;     /* out, per leased candidate: lease_deadline(), 0 = none */
};
struct lease_grant *lease_grant_new(const char *agent, size_t n, int64_t now_ms, int64_t grace_ms);
void lease_grant_free(struct lease_grant *g);
/*
 * Writer thread: leases the candidates (store_job_lease: the one place a
 * lease is written) and sets the deadlines of those leased.
 */
int lease_grant_write(struct store *st, struct lease_grant *g, struct err *e);

/*
 * Appends one lease of a poll's answer, {"job", "attempt", "spec",
 * "deadline"} (docs/protocol.md), to b: the spec is the stored text as it
 * is, not parsed and dumped again.
 */
void lease_answer_append(struct buf *b, const struct store_lease *l, int64_t deadline_ms);

#endif
