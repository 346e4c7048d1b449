/*
 * sched.h - the ready queues, in memory (no I/O): which queued job an agent
 * gets next.
 *
 * Each queue keeps its jobs by priority (highest first), FIFO within a
 * priority; jobs whose run_after is in the future wait in a delayed list
 * until sched_tick() finds them due. The store stays the truth: the server
 * rebuilds this from it at start, adds jobs when their submission (or a
 * retry) commits, takes them when an agent polls, and puts them back if
 * the lease could not be committed.
 */
#ifndef DROVER_SCHED_H
#define DROVER_SCHED_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "job/job.h"

struct sched;

/* A queued job as the scheduler knows it. */
struct sched_job {
    char id[UUID_STR_LEN];
    char *queue;
    char *tenant; /* its owner's tenant ("" for jobs from before tenants) */
    int priority;
    int slots;
    json_t *requires; /* object, or NULL */
    double timeout_s; /* 0 = none: for the lease's deadline */
    unsigned runtimes; /* PROTO_RT_* bits that can run it (spec_runtimes) */
    int64_t run_after;
    json_t *cache_keys; /* its cached inputs ("sha256:HEX", "uri:URI"; sched_cache_keys), or NULL */
    int64_t ready_ms;   /* when it last became ready */
    bool array;         /* an array's entry (id: the array's): it stands for `remaining` tasks */
    int64_t remaining;
    struct sched_job *prev, *next; /* in its list */
    struct sched_level *level;     /* NULL while delayed or taken */
    struct sched_sub *sub;         /* its tenant's list in its level, likewise */
};

struct sched *sched_new(void);
void sched_free(struct sched *s);

/* Adds a queued job (a copy of what the scheduler needs). A job already there is left as it is. */
void sched_add(struct sched *s, const struct job *j);
/* As sched_add, but first in its line (its tenant's, at its priority) when it is due: a job
   leased and given back unstarted (an undelivered lease, a prefetched job released) keeps
   its place. */
void sched_return(struct sched *s, const struct job *j);
/*
 * Job arrays: ONE entry for an array's unclaimed tasks, made like a job from `tmpl` (one of
 * its tasks: queue, tenant, priority, slots, requires, runtimes, run_after) and standing for
 * `remaining` of them; an entry there already only gets the new count; 0 or less forgets
 * it. sched_take hands out one task at a time as an entry of its own with `array` set and
 * id the array's (the lease claims which task in the store); put back, it goes back into
 * the array's entry. sched_remove(array id) forgets the entry.
 */
void sched_add_array(struct sched *s, const char *array, const struct job *tmpl,
                     int64_t remaining);
/* The job's entry while it is queued here (not taken), or NULL. */
const struct sched_job *sched_find(const struct sched *s, const char *id);
/* Forgets a job (cancelled). True when it was there. */
bool sched_remove(struct sched *s, const char *id);
/* Moves delayed jobs that are due by now into their queues; returns how many (counting one more
 * when a job held back for the cache preference may now go to any agent). */
size_t sched_tick(struct sched *s, int64_t now_ms);
/* When sched_tick next has something to do (ms since the epoch), or -1 for never. */
int64_t sched_next_due(const struct sched *s);

/*
 * Paused queues (POST /v1/queues/{name}/pause): sched_take hands out none of their jobs, which
 * stay queued here. sched_queue_pause notes one paused at at_ms (0: resumed);
 * sched_queue_paused says when it was, 0 when it is not.
 */
void sched_queue_pause(struct sched *s, const char *queue, int64_t at_ms);
int64_t sched_queue_paused(const struct sched *s, const char *queue);
void sched_queue_resume_all(struct sched *s);
void sched_queue_paused_each(const struct sched *s,
                             void (*fn)(void *arg, const char *queue, int64_t at_ms), void *arg);
/*
 * A queue's max_running (PUT /v1/queues/{name}): at most that many of its jobs leased or
 * running at once (held: taken by sched_take or sched_hold, until sched_release), whatever
 * their tenants; 0 (or less): none. Its jobs wait their turn meanwhile.
 */
void sched_queue_limit(struct sched *s, const char *queue, int max_running);
void sched_queue_unlimit_all(struct sched *s);
int sched_queue_max_running(const struct sched *s, const char *queue);
int64_t sched_queue_held(const struct sched *s, const char *queue);
void sched_queue_limits_each(const struct sched *s,
                             void (*fn)(void *arg, const char *queue, int max_running), void *arg);

/*
 * Takes up to `max` jobs for an agent serving `queues` (array of names),
 * with `labels` (object) and `runtimes` (PROTO_RT_* bits), that has
 * `free_slots`: the best job first across its queues (priority, then FIFO),
 * skipping jobs whose requires the agent lacks, that none of its runtimes
 * can run (a container image, a sandbox), or whose slots do not fit. Taken jobs leave the scheduler and
 * belong to the caller: sched_job_free() once leased, or sched_put_back().
 */
size_t sched_take(struct sched *s, const json_t *queues, const json_t *labels, unsigned runtimes,
                  int free_slots, struct sched_job **out, size_t max);
void sched_put_back(struct sched *s, struct sched_job *sj);
/* A taken job that was not leased after all (cancelled meanwhile): forgotten and freed. */
void sched_untake(struct sched *s, struct sched_job *sj);

/*
 * Tenants and fair share (docs/operations.md, "Quotas and fair share").
 * Every job belongs to a tenant (its owner token's). A tenant holds the jobs
 * taken for it (sched_take) until they are put back or untaken, or, once
 * leased, until their lease ends: the caller says so with
 * sched_release() (and sched_hold() for the leases it loads
 * at start), so that held = its jobs leased or running. Among the ready jobs
 * of one priority, the tenant with the fewest held per unit of weight goes
 * first (the older job on a tie), so a tenant that queued 100,000 jobs does
 * not starve one that queued 10; a tenant holding max_running jobs gets no
 * more until one ends.
 */
/* max_running of tenants without their own (0: none); those set keep theirs. */
void sched_tenant_default(struct sched *s, int max_running);
/* A tenant's limits: max_running (0: none; -1: the default) and weight (>= 1). */
void sched_tenant_set(struct sched *s, const char *tenant, int max_running, int weight);
/* A job of `tenant` in `queue` is held (a lease loaded or learnt from another server). */
void sched_hold(struct sched *s, const char *tenant, const char *queue);
/* Its lease ended: true when its tenant or its queue was at its max_running (jobs may go
   again now). */
bool sched_release(struct sched *s, const char *tenant, const char *queue);
/* How many jobs the tenant holds (leased or running, or taken). */
int64_t sched_tenant_held(const struct sched *s, const char *tenant);
/* The tenant's max_running in force (0: none). */
int sched_tenant_max_running(const struct sched *s, const char *tenant);

/*
 * The input-cache preference (docs/operations.md, "The input cache"). A job with cached inputs
 * (an input argument with "cache": true or a "sha256") is held back from an agent that has
 * none of them while another agent that has one could take it now (up, serving its queue,
 * with its labels and enough free slots): for at most SCHED_CACHE_WAIT_MS after it became
 * ready, then any agent may take it. Agents say what they hold in their register and poll
 * messages (docs/protocol.md); `have` is that, as a set (an object whose keys are
 * "sha256:HEX" and "uri:URI"), or NULL.
 */
#define SCHED_CACHE_WAIT_MS 3000
struct sched_pref {
    const json_t *have; /* the polling agent's cached objects (a set), or NULL */
    /* True when another agent has one of the job's cached objects and could take it now
     * (sched_could_take on each other agent). */
    bool (*elsewhere)(void *arg, const struct sched_job *sj);
    void *arg;
    int64_t now_ms;
};
/* sched_take with the cache preference (pref may be NULL: none). */
size_t sched_take_pref(struct sched *s, const json_t *queues, const json_t *labels,
                       unsigned runtimes, int free_slots, const struct sched_pref *pref,
                       struct sched_job **out, size_t max);
/* Could an agent with these queues, labels, runtimes, free slots and cached objects (a set)
 * take sj now, and has it one of sj's cached objects? */
bool sched_could_take(const struct sched_job *sj, const json_t *queues, const json_t *labels,
                      unsigned runtimes, int free_slots, const json_t *have);
/* The keys of a spec's cached inputs (a new array), or NULL when it has none. */
json_t *sched_cache_keys(const json_t *spec);
/* An agent's "cached" list ([{"sha256", "uri"?}], checked) as a set of keys (a new object). */
json_t *sched_cache_set(const json_t *cached);
void sched_job_free(struct sched_job *sj);

/* Jobs ready now in a queue (for /v1/queues-style views and tests). */
size_t sched_ready_count(const struct sched *s, const char *queue);
/* True when an agent with these queues, labels and free slots would get a job now. */
bool sched_has_work(const struct sched *s, const json_t *queues, const json_t *labels,
                    unsigned runtimes, int free_slots);

/*
 * Could any agent take a job? (issue 13.4: a job no agent can take must not
 * wait silently.) sched_fit_init() with the job's queue, requires (object or
 * NULL), slots (0 for a queue alone) and the runtimes that can run it
 * (spec_runtimes(); 0 for a queue alone: any); sched_fit_add() for each agent
 * that is up, with its queues, labels, slots and runtimes; then `listeners`
 * is how many could take it: they serve the queue, have every required
 * label, one of those runtimes, and at least that many slots. The job's
 * fields are borrowed until the last call.
 */
struct sched_fit {
    const char *queue;
    const json_t *requires;
    int slots;
    unsigned runtimes;
    int listeners;
    int up, serving, labelled, serving_labelled; /* agents counted, and of those: ... */
    int able, serving_labelled_able;             /* ... with a runtime for it */
    /* The most slots of one agent among: all, serving, labelled, serving and labelled. */
    int max_all, max_serving, max_labelled, max_serving_labelled;
    int64_t paused_at; /* when its queue was paused (sched_queue_paused), 0: not paused */
};
void sched_fit_init(struct sched_fit *fit, const char *queue, const json_t *need, int slots,
                    unsigned runtimes);
void sched_fit_add(struct sched_fit *fit, const json_t *queues, const json_t *labels, int slots,
                   unsigned runtimes);
/*
 * Why no agent could take the job, as sentences ("queue 'bio' is paused" first, when it is;
 * "queue 'bio' has no
 * listening agent", "no agent has labels db=rfam", "no agent serving queue
 * 'bio' has a container runtime (podman or docker)", "slots 16 exceeds the
 * largest agent's 8"); otherwise an empty array. A new reference.
 */
json_t *sched_fit_warnings(const struct sched_fit *fit);
/*
 * Why a job is still queued at now_ms, for GET /v1/jobs/{id}: {"reason",
 * "message", "until", "listeners"} with reason "delayed" (delay_s),
 * "retry_backoff" (an attempt failed; until is when the next may start),
 * "paused" (its queue is paused: fit->paused_at), "no_agent" (no agent up could take it:
 * message says why) or "busy"
 * (agents could take it but have no free slot yet, or it waits its turn);
 * JSON null for a job that is not queued. fit is the job's. A new reference.
 */
json_t *sched_waiting_json(const struct job *j, const struct sched_fit *fit, int64_t now_ms);

#endif
