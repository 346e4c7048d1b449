/*
 * fleet.h - the agents and their leases, as the event loop knows them.
 *
 * The store is the truth; the fleet is what the loop needs to answer agents
 * without a query: each agent's registration, liveness and parked poll, the
 * lease table (job -> agent, attempt, deadline), and the ready queues
 * (sched.h). Everything here runs on the event loop thread; every change of
 * a job is first committed (commit.h), then reported with
 * fleet_job_changed(), which keeps queues, leases, polls and waiters in step.
 *
 * The fleet knows nothing of HTTP or of the server: what it needs comes in
 * struct fleet_deps (the committer, a read handle, the ready queues, a clock,
 * and callbacks that answer a caller's request and tell others of a job's
 * change), so that it runs, and is unit-tested, without either.
 */
#ifndef DROVER_FLEET_H
#define DROVER_FLEET_H

#include <jansson.h>

#include "job/agent.h"
#include "job/job.h"

struct fleet;
struct sched;
struct store;
struct committer;
struct event_base;
struct err;
struct metrics;

/*
 * What the fleet uses. Requests (an agent's poll, a drain or leave call) are
 * the caller's opaque `req` pointers; the fleet answers each exactly once
 * through reply or reply_error.
 */
struct fleet_deps {
    struct event_base *base;   /* poll timers, the once-a-turn wake */
    struct committer *commit;  /* every write */
    struct store *reads;       /* fleet_load's reads (the loop's handle) */
    struct sched *sched;       /* the ready queues */
    struct metrics *metrics;   /* lease and queue-wait histograms (metrics.h); NULL: none */
    int lost_after_s;          /* an agent silent this long is lost */
    int deadline_grace_s;      /* added to timeout_s for an attempt's deadline */
    int64_t agent_retention_ms; /* an agent lost or left this long ago is forgotten (fleet_tick);
                                   0: never */
    bool shared;               /* several servers share the store: the leases known here
                                  may lag behind it (fleet_take_cancels reads it first) */
    int64_t (*now_ms)(void *arg); /* the clock (loop thread) */
    /* 200 with `body` (JSON text, len bytes; the callee owns it: free()) */
    void (*reply)(void *arg, void *req, char *body, size_t len);
    void (*reply_error)(void *arg, void *req, const struct err *e);
    /* a committed change of a job (waiters, log followers); may be NULL */
    void (*job_changed)(void *arg, const struct job *j);
    void *arg;
};

struct live_agent {
    struct agent_rec rec;
    int free_slots;         /* as the agent last said, plus what it freed since */
    int prefetch;           /* the slots' worth of jobs it holds beyond its slots (its last say) */
    int held;               /* leases it holds */
    int held_slots;         /* the slots those leases take */
    void *poll;             /* its parked poll (the caller's request), or NULL */
    struct event *poll_timer;
    int64_t poll_until;     /* when its parked poll is answered empty; 0: once leased */
    bool leasing;           /* a lease commit is in flight for it */
    bool holding_back;      /* its last poll offered fewer slots than it has free (draining) */
    bool drain_told;        /* a poll answer has said drain: true */
    json_t *cancel;         /* job ids it must kill, not yet delivered */
    struct fleet *fleet;    /* its fleet (for its poll timer) */
    json_t *cached;         /* the objects in its input cache, a set (sched_cache_set), or NULL */
    int64_t seen_flushed;   /* the last_seen fleet_flush_seen last stored */
    bool forgetting;        /* its deletion (store_agent_forget) is in flight */
    uint64_t synced;        /* 1 + the fleet's count of whole scans when the store last listed
                               it (fleet_agents_synced_all); 0: never */
};

/* d is copied. */
struct fleet *fleet_new(const struct fleet_deps *d);
/* Answers the parked polls (empty): the server is shutting down. */
void fleet_stop(struct fleet *f);
/* Answers parked polls (empty) and frees everything. NULL is fine. */
void fleet_free(struct fleet *f);
/* Rebuilds agents, leases and ready queues from the store (at start). */
int fleet_load(struct fleet *f, struct err *e);

struct live_agent *fleet_agent(struct fleet *f, const char *id_or_name);
/*
 * May the caller, with the token named `token` and an optional `instance` (NULL when not
 * given), register the name `name` now? 0 (the name is free, or its own and not held by
 * another live instance), or ERR_CONFLICT with a message naming the agent: the name belongs
 * to another token, a live (up or draining) agent of another instance holds it, or another
 * registration of it is in flight. A string compare on the loop's agents, no store read.
 */
int fleet_may_register(struct fleet *f, const char *name, const char *token, const char *instance,
                       struct err *e);
/* A registration of `name` is being committed (begin) / was answered (end). */
void fleet_register_begin(struct fleet *f, const char *name);
void fleet_register_end(struct fleet *f, const char *name);
/* Does the agent belong to the token named `token`? (The check of every agent call.) */
bool fleet_agent_owned_by(const struct live_agent *a, const char *token);
/* Creates or refreshes an agent from its registration (already committed; rec is taken). */
struct live_agent *fleet_agent_registered(struct fleet *f, struct agent_rec *rec);
void fleet_agent_seen(struct fleet *f, struct live_agent *a);
/* The runtimes (PROTO_RT_* bits) the agent offers now, as its poll said (not stored here). */
void fleet_agent_set_runtimes(struct fleet *f, struct live_agent *a, unsigned runtimes);
/* Sets and stores the agent's state; `answer` (or NULL) gets the agent once it is stored. */
void fleet_agent_set_state(struct fleet *f, struct live_agent *a, int state, void *answer);

/*
 * Handles a poll: computes cancels for `running` (array of {job, attempt}),
 * leases what fits into `free_slots`, or parks r for up to wait_ms. Answers r
 * (docs/protocol.md "poll": {"leases", "cancel", "drain"}).
 */
void fleet_poll(struct fleet *f, struct live_agent *a, void *r, int free_slots, json_t *running,
                int64_t wait_ms);
/* The client of the agent's parked poll r went away: forget r (it is not answered). */
void fleet_poll_gone(struct fleet *f, struct live_agent *a, void *r);
/* The agent's register or poll listed its input cache ("cached", checked): kept for the
 * scheduler's preference (sched.h). NULL: unchanged. */
void fleet_agent_cached(struct fleet *f, struct live_agent *a, const json_t *cached);
/* The agent says it can take free_slots now: leases them to its parked poll. */
void fleet_agent_offer(struct fleet *f, struct live_agent *a, int free_slots);
/*
 * The agent's reports that end attempts `attempts[i]` of jobs `ending[i]` (n of them) were
 * just queued for the writer, and it says it can take free_slots once they are applied: the
 * leases for its parked poll are queued right behind them, so that both commit in one batch
 * (one commit per cycle of the agent instead of two in a row). The slots of those attempts it
 * holds count as free for this. The reports' answer (fleet_agent_offer) then finds the
 * leasing under way.
 */
void fleet_agent_offer_early(struct fleet *f, struct live_agent *a, int free_slots,
                             const char *const *ending, const int *attempts, size_t n);
/* The agent is draining by itself: its parked poll is answered now (no lease), so it can leave. */
void fleet_agent_release_poll(struct fleet *f, struct live_agent *a);
/* When this server leased `attempt` of `job` (ms since the epoch); 0 when unknown here. */
int64_t fleet_lease_time(struct fleet *f, const char *job, int attempt);
/* Jobs in `running` that the agent no longer holds, plus pending cancels; a new array. */
json_t *fleet_take_cancels(struct fleet *f, struct live_agent *a, json_t *running);
/*
 * Agent a has reported the end of `attempt` of `job` (finished, refused or not): when it was
 * told to kill that attempt, the job's next attempt may be leased now.
 */
void fleet_attempt_ended(struct fleet *f, struct live_agent *a, const char *job, int attempt);
/* Does queued `job` wait for an earlier attempt to end on an agent (fleet_attempt_ended)?
   Then *attempt is that attempt, *agent the agent's name (the fleet's, valid until it
   changes). */
bool fleet_job_ending(struct fleet *f, const char *job, int *attempt, const char **agent);

/*
 * A committed change of a job. `by_agent`: the agent that held it reported
 * the change itself (else a job it held was ended for it, and it is told to
 * kill it).
 */
void fleet_job_changed(struct fleet *f, const struct job *j, bool by_agent);
/*
 * An array was stored, or a cancel or retry by range changed what of it may still be
 * claimed: its one scheduler entry gets the new count (array_claimable), or goes.
 */
struct array_rec;
void fleet_array_changed(struct fleet *f, const struct array_rec *a);
/* fleet_array_changed for every stored array (at start, and after missed events). */
int fleet_load_arrays(struct fleet *f, struct err *e);

/*
 * Several servers on one store (STORE_CAP_SHARED): the fleet is then a cache of what
 * the store holds, kept in step with the changes other servers commit.
 *
 * fleet_job_synced: `j` (with its spec) is the job as the store has it now, read after
 * an event about it: a queued job becomes a candidate here, a job leased (by any server)
 * is no candidate and its lease is known here (a report or a poll of its agent may come
 * here), an attempt that ended elsewhere is forgotten and its agent told to kill it.
 * Applying the store's current record again is harmless (this server's own changes come
 * back this way too). A job that ended elsewhere may come as a record made from its event
 * (id, state, attempt; no spec): ending it here needs no more (a waiter reads it whole).
 *
 * fleet_lease_synced: a lease that another server committed, told by its newest event
 * (state leased or running, attempt, agent's name), applied without reading the job: true
 * when this server knew enough, the lease at that attempt or the job queued here (its
 * slots, tenant and timeout), and knows the agent; false when the job must be read
 * (fleet_job_synced).
 *
 * fleet_agent_synced: `rec` is an agent as the store has it: one registered through
 * another server is added, a newer last_seen kept (liveness is the newest of all
 * servers'), a state another server stored (lost, left, up again) adopted without a write.
 *
 * fleet_agents_reread: the agents could be read again after the store was out of reach
 * (sync.c). Meanwhile no server could record when agents polled it, so an agent's silence is
 * counted from now at the earliest: each gets lost_after to be seen again, as at a start.
 *
 * fleet_flush_seen: commits the last_seen of the agents seen here since the last flush
 * (store_agent_seen), so that the leader, wherever it is, does not judge them lost.
 */
void fleet_job_synced(struct fleet *f, const struct job *j);
bool fleet_lease_synced(struct fleet *f, const char *id, int state, int attempt,
                        const char *agent);
void fleet_agent_synced(struct fleet *f, const struct agent_rec *rec);
/*
 * fleet_agents_synced_all: a scan of all the store's agents, each through fleet_agent_synced,
 * has just ended: an agent that left or was lost and that the scan did not list was forgotten
 * (the leader's fleet_tick, wherever it runs): it goes here too.
 */
void fleet_agents_synced_all(struct fleet *f);
void fleet_agents_reread(struct fleet *f);
void fleet_flush_seen(struct fleet *f);

/* Once a second: lost agents, passed deadlines, delayed jobs now due; agents gone longer
   than agent_retention_ms are forgotten (deleted from the store with an event, then here). */
void fleet_tick(struct fleet *f, int64_t now_ms);
/* Once a second on a server that is not the leader: delayed jobs now due, nothing else
 * (lost agents and deadlines are the leader's). */
void fleet_tick_ready(struct fleet *f, int64_t now_ms);
/* Parked polls try again for work at the next loop turn (a tenant's limit was raised). */
void fleet_wake(struct fleet *f);

/*
 * Is `attempt` of `job` the live lease of an agent (leased or running, not being ended)?
 * *deadline_ms (may be NULL) gets its deadline, 0 for none. A hash lookup, no store read.
 */
bool fleet_attempt_live(struct fleet *f, const char *job, int attempt, int64_t *deadline_ms);
/*
 * The same for job `j` as just read from the store: with several servers, a lease the store
 * holds that this server has not applied yet (another server's, its event not read here yet)
 * is applied first (fleet_job_synced).
 */
bool fleet_attempt_live_read(struct fleet *f, const struct job *j, int attempt,
                             int64_t *deadline_ms);

/*
 * Counts the agents up into fit (sched_fit_init'ed: sched.h) and returns
 * its listeners, the agents that could take such a job. The one count of
 * listeners: the submit answer, the `test` probe, /v1/queues, a job's
 * `waiting`.
 */
struct sched_fit;
int fleet_fit(struct fleet *f, struct sched_fit *fit);
/* The same for a job (its queue, requires and slots; j must have its spec). */
int fleet_job_fit(struct fleet *f, const struct job *j, struct sched_fit *fit);
/*
 * fleet_job_fit's listeners into *listeners, and its warnings
 * (sched_fit_warnings) as JSON text, remembered for a few job shapes until
 * what it counts changes (an agent's state, queues, labels, slots or runtimes)
 * or the queue's pause does: a submit does not count
 * every agent again. The text is the fleet's, valid until the next call.
 */
const char *fleet_job_fit_text(struct fleet *f, const struct job *j, int *listeners);
/* The same for the tasks of job array `a` (its spec, as its next task's). */
const char *fleet_array_fit_text(struct fleet *f, const struct array_rec *a, int *listeners);
/* GET /v1/agents. */
json_t *fleet_agents_json(struct fleet *f);
json_t *fleet_agent_json(const struct live_agent *a);
/* The names of the PROTO_RT_* bits in `runtimes`, as a new JSON array. */
json_t *fleet_runtimes_json(unsigned runtimes);

#endif
