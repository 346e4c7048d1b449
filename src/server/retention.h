/*
 * retention.h - finished jobs are deleted after a retention, their record
 * and output kept in the object store (docs/operations.md, "Retention").
 *
 * A job's retention is fixed when it is submitted: its spec's retention_s,
 * else its queue's --queue-retention, else (stored as none) the server's
 * --retention when the sweep runs. Every --retention-sweep seconds (60 by
 * default) the sweeper, on a worker thread (offload.h) with a store handle
 * of its own, reads up to RETENTION_BATCH jobs due, copies each one's output
 * (every attempt, stdout and stderr) and then its record into the reserved
 * bucket RETENTION_BUCKET of drover's object store:
 *
 *   logs/<id>/<attempt>/stdout|stderr   the captured bytes (absent when empty)
 *   jobs/<id>.json                      {"job": <the job as GET shows it>,
 *                                        "archived_at": ms}, written last
 *
 * and then the writer deletes the archived rows (store_job_delete: the row,
 * its result and attempts, its output) in one batch. A full batch makes the
 * next sweep start at the next second, so a backlog drains without one sweep
 * holding anything for long. GET /v1/jobs/{id}, /wait and /log then answer
 * from the archive (the job marked "archived": true), for the job's owner and
 * admins; others get 404 as for any job not theirs.
 */
#ifndef DROVER_SERVER_RETENTION_H
#define DROVER_SERVER_RETENTION_H

#include <stdint.h>

#include "job/job.h"

struct server;
struct http_req;
struct logs_query;
struct retention;

#define RETENTION_BUCKET "drover-archive"
#define RETENTION_BATCH 100                          /* jobs archived and deleted per sweep */
#define RETENTION_DEFAULT_MS (7LL * 24 * 3600 * 1000) /* --retention */
#define RETENTION_SWEEP_S 60                          /* --retention-sweep */
#define RETENTION_LOG_MAX (64 << 20) /* bytes of one archived stream sent in one answer */

struct retention_opts {
    int64_t default_ms;  /* --retention */
    char **queues;       /* --queue-retention NAME=DURATION, as given */
    size_t nqueues;
    int sweep_s;         /* --retention-sweep */
};

/*
 * "90" (seconds), "90s", "15m", "12h", "7d" into *ms: 0, or -1 for anything
 * else (also 0 and more than ten years).
 */
int retention_duration_parse(const char *s, int64_t *ms);
/* Checks one --queue-retention value (NAME=DURATION): 0, or -1 after a message on stderr. */
int retention_queue_opt_check(const char *cmd, const char *v);

struct retention *retention_new(struct server *s, const char *db_uri,
                                const struct retention_opts *o);
/* After the worker threads have stopped (offload_free). NULL is fine. */
void retention_free(struct retention *rt);
/* A job being submitted gets its queue's retention when its spec gives none. */
void retention_apply(const struct retention *rt, struct job *j);
/* Queue `queue`'s retention (--queue-retention), in ms; 0 when it has none of its own. */
int64_t retention_of_queue(const struct retention *rt, const char *queue);

/*
 * The job `id` is not in the store: answers r from the archive (200 with the
 * archived job; for `log`, its output as q says, without following), or 404
 * when it is not there or not the caller's. Runs off the loop; r is deferred.
 */
void retention_answer(struct retention *rt, struct http_req *r, const char *id, bool log,
                      const struct logs_query *q);
/*
 * The job `id` is not in the store, and a call would change it (`verb`: "cancelled",
 * "retried"): 409 saying it ended and was archived when the archive has it (the caller's),
 * else 404. Runs off the loop; r is deferred.
 */
void retention_refuse(struct retention *rt, struct http_req *r, const char *id,
                      const char *verb);

struct retention_stats {
    uint64_t archived; /* jobs archived and deleted */
    uint64_t failed;   /* sweeps that failed (logged) */
};
void retention_get_stats(const struct retention *rt, struct retention_stats *out);

#endif
