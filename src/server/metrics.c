/*
 * metrics.c - see metrics.h.
 *
 * A histogram is a fixed array of cumulative-at-render buckets; observing is
 * a short loop over the bounds. Queues get a slot on first sight, up to
 * METRICS_MAX_QUEUES; slot METRICS_MAX_QUEUES is "_other".
 */
#include "server/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "common/xalloc.h"

/* Queue waits and run times: 5 ms to an hour. */
static const double long_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                     2.5,   5,    10,    30,   60,  300,  900, 3600};
/* Leases (a group commit): 0.5 ms to 2.5 s. */
static const double short_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1,    0.25,  0.5,    1,     2.5};
#define NB_LONG ARRAY_SIZE(long_bounds)
#define NB_SHORT ARRAY_SIZE(short_bounds)
#define NB_MAX NB_LONG

static const char *const states[] = {"succeeded", "failed", "cancelled"};
#define NSTATES ARRAY_SIZE(states)

struct hist {
    uint64_t bucket[NB_MAX]; /* observations <= bound i and > bound i-1 */
    uint64_t count;
    double sum;
};

struct queue_metrics {
    char *name;
    struct hist wait;
    struct hist run[NSTATES];
    uint64_t finished[NSTATES];
};

struct metrics {
    struct queue_metrics q[METRICS_MAX_QUEUES + 1];
    size_t nq; /* named slots in use */
    struct hist lease;
    uint64_t lease_missed;
};

static void observe(struct hist *h, const double *bounds, size_t nb, double v)
{
    if (v < 0) v = 0;
    h->count++;
    h->sum += v;
    for (size_t i = 0; i < nb; i++)
        if (v <= bounds[i]) {
            h->bucket[i]++;
            return;
        }
    /* above the last bound: counted in +Inf (count) only */
}

struct metrics *metrics_new(void)
{
    struct metrics *m = xcalloc(1, sizeof(*m));
    m->q[METRICS_MAX_QUEUES].name = xstrdup(METRICS_OTHER_QUEUE);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m) return;
    for (size_t i = 0; i <= METRICS_MAX_QUEUES; i++)
        free(m->q[i].name);
    free(m);
}

static struct queue_metrics *queue_of(struct metrics *m, const char *queue)
{
    for (size_t i = 0; i < m->nq; i++)
        if (!strcmp(m->q[i].name, queue)) return &m->q[i];
    if (m->nq < METRICS_MAX_QUEUES) {
        m->q[m->nq].name = xstrdup(queue);
        return &m->q[m->nq++];
    }
    return &m->q[METRICS_MAX_QUEUES];
}

void metrics_queue_wait(struct metrics *m, const char *queue, double seconds)
{
    if (!m || !queue) return;
    observe(&queue_of(m, queue)->wait, long_bounds, NB_LONG, seconds);
}

void metrics_job_finished(struct metrics *m, const char *queue, const char *state,
                          double run_seconds)
{
    if (!m || !queue || !state) return;
    for (size_t s = 0; s < NSTATES; s++) {
        if (strcmp(states[s], state)) continue;
        struct queue_metrics *q = queue_of(m, queue);
        q->finished[s]++;
        if (run_seconds >= 0) observe(&q->run[s], long_bounds, NB_LONG, run_seconds);
        return;
    }
}

void metrics_lease(struct metrics *m, double seconds)
{
    if (m) observe(&m->lease, short_bounds, NB_SHORT, seconds);
}

void metrics_lease_missed(struct metrics *m, uint64_t n)
{
    if (m) m->lease_missed += n;
}

/* The queue's slots in use, "_other" last when anything was counted there. */
static bool slot_used(const struct metrics *m, size_t i)
{
    if (i < m->nq) return true;
    if (i != METRICS_MAX_QUEUES) return false;
    const struct queue_metrics *q = &m->q[i];
    if (q->wait.count) return true;
    for (size_t s = 0; s < NSTATES; s++)
        if (q->finished[s]) return true;
    return false;
}

/* One histogram's samples; labels is "" or `k="v",...` without braces. */
static void render_hist(struct buf *b, const char *name, const char *labels, const struct hist *h,
                        const double *bounds, size_t nb)
{
    const char *sep = *labels ? "," : "";
    uint64_t cum = 0;
    for (size_t i = 0; i < nb; i++) {
        cum += h->bucket[i];
        buf_addf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i],
                 (unsigned long long)cum);
    }
    buf_addf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
             (unsigned long long)h->count);
    const char *open = *labels ? "{" : "", *close = *labels ? "}" : "";
    buf_addf(b, "%s_sum%s%s%s %.6f\n", name, open, labels, close, h->sum);
    buf_addf(b, "%s_count%s%s%s %llu\n", name, open, labels, close,
             (unsigned long long)h->count);
}

void metrics_render(const struct metrics *m, struct buf *b)
{
    char labels[256];
    buf_adds(b, "# HELP drover_job_queue_wait_seconds Time jobs waited in their queue, from "
                "being ready (submitted, or past their delay or backoff) to their lease.\n"
                "# TYPE drover_job_queue_wait_seconds histogram\n");
    for (size_t i = 0; i <= METRICS_MAX_QUEUES; i++) {
        if (!slot_used(m, i)) continue;
        snprintf(labels, sizeof(labels), "queue=\"%s\"", m->q[i].name);
        render_hist(b, "drover_job_queue_wait_seconds", labels, &m->q[i].wait, long_bounds,
                    NB_LONG);
    }
    buf_adds(b, "# HELP drover_job_run_seconds Run time of jobs' last attempts, from start to "
                "end, by queue and final state.\n"
                "# TYPE drover_job_run_seconds histogram\n");
    for (size_t i = 0; i <= METRICS_MAX_QUEUES; i++) {
        if (!slot_used(m, i)) continue;
        for (size_t s = 0; s < NSTATES; s++) {
            if (!m->q[i].run[s].count) continue;
            snprintf(labels, sizeof(labels), "queue=\"%s\",state=\"%s\"", m->q[i].name,
                     states[s]);
            render_hist(b, "drover_job_run_seconds", labels, &m->q[i].run[s], long_bounds,
                        NB_LONG);
        }
    }
    buf_adds(b, "# HELP drover_jobs_finished_total Jobs that reached a final state, by queue "
                "and state.\n"
                "# TYPE drover_jobs_finished_total counter\n");
    for (size_t i = 0; i <= METRICS_MAX_QUEUES; i++) {
        if (!slot_used(m, i)) continue;
        for (size_t s = 0; s < NSTATES; s++)
            buf_addf(b, "drover_jobs_finished_total{queue=\"%s\",state=\"%s\"} %llu\n",
                     m->q[i].name, states[s], (unsigned long long)m->q[i].finished[s]);
    }
    buf_adds(b, "# HELP drover_lease_seconds Time to grant leases: from taking jobs off the "
                "ready queue to the committed lease.\n"
                "# TYPE drover_lease_seconds histogram\n");
    render_hist(b, "drover_lease_seconds", "", &m->lease, short_bounds, NB_SHORT);
    buf_addf(b, "# HELP drover_lease_missed_total Jobs taken off the ready queue for a lease "
                "that were no longer queued at its commit: leased by another server sharing "
                "the store, or cancelled meanwhile.\n"
                "# TYPE drover_lease_missed_total counter\n"
                "drover_lease_missed_total %llu\n",
             (unsigned long long)m->lease_missed);
}
