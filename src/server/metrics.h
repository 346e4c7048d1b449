/*
 * metrics.h - the server's histograms and labelled counters, for GET /metrics.
 *
 * Prometheus' conventions: counters end in _total, durations are histograms
 * in seconds (_bucket{le}, _sum, _count). Labels are bounded: a queue label
 * takes the first METRICS_MAX_QUEUES queue names seen, and every later queue
 * is counted under queue="_other"; states are the job's terminal states.
 * All calls on the loop thread.
 */
#ifndef DROVER_SERVER_METRICS_H
#define DROVER_SERVER_METRICS_H

#include <stdint.h>

#include "common/buf.h"

#define METRICS_MAX_QUEUES 64
#define METRICS_OTHER_QUEUE "_other"

struct metrics;

struct metrics *metrics_new(void);
/* NULL is fine. */
void metrics_free(struct metrics *m);

/* A job of queue was leased after waiting `seconds` since it was ready. NULL m is fine. */
void metrics_queue_wait(struct metrics *m, const char *queue, double seconds);
/*
 * A job of queue ended in `state` (a terminal state's name); `run_seconds` is
 * its last attempt's time from start to end, or negative when it never started.
 */
void metrics_job_finished(struct metrics *m, const char *queue, const char *state,
                          double run_seconds);
/* A lease took `seconds` from taking its jobs off the ready queue to its commit. */
void metrics_lease(struct metrics *m, double seconds);
/* n jobs taken for a lease were no longer queued at its commit (leased by another server
   on the same store, or cancelled meanwhile). NULL m is fine. */
void metrics_lease_missed(struct metrics *m, uint64_t n);

/* Appends the metrics above, in the text exposition format. */
void metrics_render(const struct metrics *m, struct buf *b);

#endif
