/*
 * agent.h - `drover agent`'s state, shared by the files of src/agent/ (and by
 * nothing else but server/dev.c, for agent_opts_check).
 *
 *   agent.c          the command: options, startup, signals, drain, exit
 *   proto.c          the agent protocol (docs/protocol.md): register, poll,
 *                    batched reports, leave, on the async client (http/aclient.h)
 *   jobs.c           a lease's life: spool, start, timeout, cancel, finished
 *                    report, settlement, clean-up; recovery from the spool
 *   runner_native.c  processes: spawn, pipes (stdin, stdout, stderr), kill, reap,
 *                    and the sweep of what a job left outside its process group
 *   runner_bwrap.c   the sandbox runner: a native process inside bubblewrap
 *   runner_container.c  the container runner (podman or docker CLI): image pulls,
 *                    run, kill, inspect, remove; the engine's helper commands
 *   runtimes.c       which runtimes the agent offers: --runtime, or tests of bwrap
 *                    and the engines (in the background)
 *                    Each runner is a `struct runner_ops` (below); jobs.c picks
 *                    one per job (runner_for).
 *   proc.c           the process tree, read from /proc (proc.h)
 *   limits.c         resource limits: cgroups v2 or v1, else rlimits (limits.h)
 *   stage.c          file staging: inputs downloaded before the run, outputs
 *                    uploaded after it (stage.h)
 *   cache.c          the input cache: content-addressed, size-bounded (cache.h)
 *   spool.c          durable records (spool.h)
 *   status.c         the agent's own HTTP endpoint (--listen)
 *   argv.c utf8.c progress.c   pure helpers, unit-tested
 *
 * Everything runs on one libevent loop; nothing blocks on a child, a pipe or
 * the network (the spool's fsyncs are the only waits, on purpose).
 *
 * Lifetime: a `struct agent_job` lives from its lease (or its recovery from
 * the spool) until its `finished` report is settled (the server answered 200
 * or 409 for it) and no report of it is in flight; then its spool records and
 * work folder are removed and it is freed by jobs_gc().
 */
#ifndef DROVER_AGENT_AGENT_H
#define DROVER_AGENT_AGENT_H

#include <event2/event.h>
#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/limits.h"
#include "agent/progress.h"
#include "agent/spool.h"
#include "agent/stage.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/uuid.h"
#include "http/aclient.h"
#include "http/client.h"
#include "job/protocol.h"

/* The protocol's limits (log chunk, stream, reports per request, ...) are in job/protocol.h. */
#define AGENT_REQUEST_LOG_MAX (1024 * 1024) /* log bytes in one reports request, at first */
#define AGENT_REQUEST_LOG_MIN (64 * 1024)   /* ... halved on 413 down to this */
#define AGENT_REQUEST_REPORTS_MAX 1000      /* reports in one request (<= PROTO_REPORTS_MAX) */
_Static_assert(AGENT_REQUEST_REPORTS_MAX <= PROTO_REPORTS_MAX, "the server takes them all");
#define AGENT_BACKOFF_MIN_MS 100
#define AGENT_BACKOFF_MAX_MS 5000
#define AGENT_PROGRESS_TICK_MS 150
#define AGENT_PIPE_LINGER_MS 2000  /* after the process ended, how long its pipes may stay open */
#define AGENT_FINAL_FLUSH_MS 10000 /* when stopped by a signal, how long to deliver results */

/* Event priorities (event_base_priority_init(base, AGENT_NPRIO)): report batching runs last. */
#define AGENT_NPRIO 3
#define AGENT_PRIO_IO 1
#define AGENT_PRIO_FLUSH 2

/* Where a job is on the agent (not a server-side job state: job/job.h). */
enum agent_phase {
    PHASE_STAGE_IN,  /* its inputs are downloading; no process yet */
    PHASE_RUNNING,   /* the process runs (or its pipes are still open) */
    PHASE_STAGE_OUT, /* the process ended; its outputs are uploading */
    PHASE_DONE,      /* the finished report exists (spooled), or it was given back (release):
                        waiting for that to be settled */
    PHASE_WAITING,   /* prefetched: leased and spooled, waiting for a free slot (jobs.c) */
};

/*
 * Prefetch (jobs.c): while the agent's jobs are short (their mean run under PREFETCH_SHORT_MS),
 * it holds up to --prefetch slots' worth of leases beyond its slots (default twice its
 * slots, as Celery's prefetch holds four times its concurrency), so that a job starts as
 * soon as a slot frees instead of a server round trip later. A prefetched job that waits
 * PREFETCH_WAIT_MAX_MS for a slot (the running jobs turned out long) is given back (a
 * `released` report), unstarted, for another agent to take.
 */
#define PREFETCH_SHORT_MS 100
#define PREFETCH_WAIT_MAX_MS 500

/* Why the agent is killing a job's process group (the first reason wins). */
enum kill_why { KILL_NONE, KILL_TIMEOUT, KILL_CANCEL, KILL_STOP };

/* A job's spool records (spool.h), as bits of agent_job.recs. */
enum { REC_LEASE = 1, REC_STARTED = 2, REC_RUN = 4, REC_FINISHED = 8 };

struct agent;
struct agent_job;
struct container_engine;

/* Called by a runner once the job's process has ended and its pipes are closed ("wait by
 * callback"); the outcome is in the job (wait_status, oom). */
typedef void (*runner_ended_fn)(struct agent_job *j);
/* Called by a runner's prepare once the job can start (error NULL), or with why it cannot. */
typedef void (*runner_ready_fn)(struct agent_job *j, const char *error);

/*
 * A way to run a job's program. All run on the loop's thread; none blocks (but recover, at
 * startup before the loop runs).
 */
struct runner_ops {
    const char *name; /* "native", "bwrap", "podman", "docker" (proto_runtime_name) */
    unsigned rt;      /* its PROTO_RT_* bit */
    /* Optional: gets what the job needs before it starts (a container image). 0: ready now;
     * 1: `ready` is called later (not before this returns); else an ERR_* with e filled. */
    int (*prepare)(struct agent_job *j, runner_ready_fn ready, struct err *e);
    /* Starts argv with envp in j->work_dir (stdin, stdout, stderr as runner_native_start);
     * j->pid is what the started report shows. `ended` is called once, later. ERR_IO. */
    int (*start)(struct agent_job *j, char **argv, char **envp, runner_ended_fn ended,
                 struct err *e);
    /* Sends sig to the job (its process group, or its container). */
    void (*signal)(struct agent_job *j, int sig);
    /* Drops the runner's hold on the job (pipes, events, a pull it waits for); no kill. */
    void (*release)(struct agent_job *j);
    /* After an agent restart: kills what is left of a job the spool says was running
     * (`run`: the started record's "run", may be NULL). */
    void (*recover)(struct agent *a, struct agent_job *j, json_t *run);
};
extern const struct runner_ops runner_native, runner_bwrap, runner_podman, runner_docker;

/* A captured output stream: read from its pipe, kept until its log reports are settled. */
struct agent_stream {
    struct agent_job *job;
    const char *name; /* proto_stream_name(): "stdout" or "stderr" */
    int fd;           /* our end of the pipe, -1 once closed */
    struct event *ev;
    struct buf pending; /* sanitised text; pending.data[head..len) is not settled yet */
    size_t head;
    uint64_t base;      /* the stream offset of pending.data[head] */
    size_t inflight;    /* bytes from head carried by the reports request in flight */
    bool batch_failed;  /* while settling a batch: an earlier chunk of this stream failed */
    uint64_t produced;  /* sanitised bytes kept so far (base + pending.len) */
    uint64_t discarded; /* bytes read past PROTO_STREAM_MAX, not kept */
    char carry[4];      /* an incomplete UTF-8 sequence waiting for its next bytes */
    size_t ncarry;
    char first[200]; /* its first bytes, NUL-terminated (a container's init says why the program
                       could not start there: runner_container.c) */
};

struct agent_job {
    struct agent *a;
    struct agent_job *prev, *next;
    char id[UUID_STR_LEN];
    int attempt;
    json_t *spec;    /* the normalised spec (owned); NULL for a job recovered from the spool */
    int slots;       /* of the agent's slots, while the process runs (or it waits for them) */
    bool slots_held; /* counted in a->slots_used */
    enum agent_phase phase;
    struct stage *stage; /* its file staging (stage.h), NULL when it needs none */
    char **argv;         /* built at the lease, used when the inputs are in */
    /* the run's outcome, kept while the outputs upload */
    enum proto_reason end_reason; /* one of PROTO_AGENT_REASONS */
    int end_code, end_signal;
    char *end_error;
    bool recovered;     /* from the spool, after a restart: no process */
    int64_t waiting_ns; /* monotonic, when it began to wait for a slot (PHASE_WAITING) */
    bool release;       /* given back unstarted: a released report until settled (PHASE_DONE) */
    bool relet;         /* leased again (same attempt) while its release was in flight */
    bool strays;    /* one of its processes may have outlived its end: its folder is not reused */
    int dir_no;     /* its work folder is "<jobs_dir>/w<dir_no>", or -1: named by the job (jobs.c) */
    bool dir_spare; /* ended, its folder empty and reusable, still its own */
    bool dir_moved; /* that folder became another job's */
    unsigned recs;  /* the spool records it has (REC_*): what jobs_gc removes */
    json_t *rec;    /* its lease record as spooled, with "run" and "finished" once known */

    /* the process (runner_native.c) */
    const struct runner_ops *runner; /* NULL until chosen (runner_for) */
    runner_ended_fn ended;           /* the runner's `ended` (jobs_process_ended) */
    runner_ended_fn on_ended;        /* what runner_native calls when the process ended */
    bool oom;                        /* the engine killed it for memory */
    bool preparing;                  /* waiting for the runner's prepare (an image pull) */
    char *container;                 /* the container's name (runner_container.c), or NULL */
    struct container_wait *pull;     /* the pull it waits for, or NULL */
    pid_t pid;                       /* also the process group; 0 before start */
    bool exited;                     /* reaped */
    int wait_status;
    bool start_failed;
    int64_t start_ns, end_ns;     /* monotonic */
    int64_t started_at_ms;        /* wall clock */
    unsigned long long starttime; /* of the process, /proc/PID/stat field 22; 0 unknown */
    struct agent_stream out, err;
    int stdin_fd; /* -1 when closed */
    struct event *stdin_ev;
    const char *stdin_data; /* borrowed from spec */
    size_t stdin_len, stdin_off;
    struct event *linger_timer; /* closes the pipes if they outlive the process */
    struct limits_job limits;   /* its cgroups and rlimits (limits.h), when it asks for any */

    /* policy (jobs.c) */
    enum kill_why kill_why;
    bool killed_hard;
    struct event *timeout_timer, *grace_timer, *progress_timer;
    int64_t timeout_armed_ns; /* monotonic, when timeout_timer was (re)armed */
    double timeout_left_s;    /* of timeout_s, when it was armed (a pull pauses it) */
    char *work_dir;
    struct progress_watch progress;

    /* reports (proto.c) */
    json_t *started;    /* the started report until settled, else NULL */
    int64_t started_ns; /* monotonic, when `started` was made */
    json_t *finished;   /* the finished report once decided */
    bool finished_settled;
    bool has_progress;   /* percent/message hold a value read from the progress file */
    bool progress_dirty; /* percent/message not yet sent */
    double percent;
    char *message;
    unsigned batched; /* items of this job in the reports request in flight */
};

struct agent_opts {
    char *server;
    char *token;
    char *token_file;      /* --token-file, read into token */
    bool token_on_cmdline; /* --token: warned against */
    char *name;
    json_t *queues; /* array of strings */
    json_t *labels; /* object */
    int slots;
    int prefetch; /* --prefetch: slots' worth of leases held beyond slots; -1: twice the slots */
    char *work_dir;
    char *listen; /* NULL: no status endpoint */
    bool keep_work;
    double term_grace_s;
    double drain_timeout_s;
    bool bench_noop;    /* --bench-noop: leases complete at once, no process, no spool */
    char **allow_paths; /* --allow-path folders, resolved (realpath) */
    size_t nallow_paths;
    char **hide;        /* --hide: absolute paths a sandboxed job does not see */
    size_t nhide;
    double stall_timeout_s;   /* a transfer moving nothing this long fails */
    char *cache_dir;          /* --cache-dir (default WORK_DIR/cache) */
    uint64_t cache_size;      /* --cache-size in bytes; 0: no cache */
    char *limits_mode;        /* --limits: auto, cgroup, rlimit, none */
    unsigned runtimes_forced; /* --runtime: the PROTO_RT_* bits asked for; 0: detect */
    char **engine_opts;       /* --engine-opt: arguments before the engine's subcommand */
    size_t nengine_opts;
};

struct agent_metrics {
    uint64_t jobs_started;
    uint64_t jobs_finished[PROTO_AGENT_REASONS];
    uint64_t reports_sent;
    uint64_t report_requests;
    uint64_t report_errors;
    uint64_t polls;
    uint64_t poll_errors;
    uint64_t registrations;
};

/* One item of the reports request in flight, to settle or retry when its result comes. */
struct batch_item {
    struct agent_job *job;
    enum proto_report kind;
    struct agent_stream *stream; /* PROTO_REPORT_LOG */
    size_t len;                  /* PROTO_REPORT_LOG: bytes of stream->pending */
};

struct agent {
    struct agent_opts o;
    struct event_base *base;
    struct http_client http;
    struct aclient *ac;
    struct spool spool;
    char *jobs_dir;
    struct trash *trash; /* work folders removed off the loop (trash.h) */
    uint64_t dirs_held;  /* bit N: "<jobs_dir>/wN" is a job's work folder (jobs.c) */
    uint64_t dirs_kept;  /* bit N: "<jobs_dir>/wN" is an empty work folder kept for a next job */
    struct cache *cache; /* the input cache (cache.h), NULL when --cache-size is 0 */
    char boot_id[64];
    int lock_fd;
    pid_t guardian_pid; /* guardian.h; 0 when there is none */
    int guardian_fd;    /* the pipe to it, -1 when there is none */

    /* protocol (proto.c) */
    char instance[UUID_STR_LEN]; /* this work folder's identity (WORK_DIR/agent.instance) */
    char id[128];
    bool registered, ever_registered;
    bool server_prefetch; /* the server takes "prefetch" (its register answer says so) */
    int heartbeat_s, lost_after_s;
    struct aclient_req *register_req, *poll_req, *reports_req, *leave_req;
    size_t register_srv, poll_srv, reports_srv; /* http.current when each was sent */
    struct event *register_timer, *poll_timer, *reports_timer, *flush_ev;
    struct event *linger_timer; /* a started report waits for its job's end (proto.c) */
    int register_backoff_ms, poll_backoff_ms, reports_backoff_ms;
    int64_t poll_sent_ns;     /* monotonic */
    uint64_t cached_sent_gen; /* the input cache's generation last listed to the server */
    int64_t cached_sent_ms;   /* monotonic */
    bool leave_pending;       /* drained: waiting for the outstanding poll's answer, then leave */
    bool poll_failing, reports_failing;
    struct log_repeat switching; /* moves to the next server (proto.c server_failed) */
    struct batch_item *batch;
    size_t nbatch, batch_cap;
    size_t log_budget;

    /* jobs (jobs.c) */
    struct agent_job *jobs, *jobs_tail;
    size_t njobs;
    int slots_used;
    int slots_waiting;           /* of PHASE_WAITING jobs */
    int64_t run_mean_us;         /* a moving mean of the jobs' run times; -1 before the first */
    struct event *start_ev;      /* starts waiting jobs once slots are free */
    struct event *release_timer; /* gives back the jobs that waited too long */

    /* lifecycle (agent.c) */
    bool draining;       /* no new work; leave and exit once everything is settled */
    bool announce_drain; /* send free_slots 0 in a reports request, even an empty one */
    bool drain_signal;   /* the drain came from a signal (bounded), not from the server */
    bool hard_stop;      /* a second signal: jobs killed at once */
    bool exiting;
    int exit_code;
    int64_t started_ms;
    struct event *sigterm_ev, *sigint_ev, *sigchld_ev, *drain_timer, *final_timer;

    /* processes left behind by jobs (runner_native.c) */
    struct event *sweep_timer; /* looks again after a sweep killed some */
    int sweep_again;           /* looks in a row that found some */

    struct limits limits; /* how resource limits are enforced (limits.h) */

    /* runtimes (runtimes.c, runner_*.c) */
    unsigned runtimes;               /* PROTO_RT_* bits it offers (advertised to the server) */
    struct container_engine *engine; /* its container engine, or NULL */
    struct runtime_test {
        unsigned rt;                  /* PROTO_RT_* */
        pid_t pid;                    /* the test's process */
        bool done;                    /* ended (or could not start: code -2) */
        int code;                     /* its exit code, -1 when killed */
        struct container_engine *eng; /* the engine tested, until adopted or freed */
    } tests[3];
    size_t ntests;

    struct agent_metrics m;
    struct status_server *status;
};

/* agent.c */
/* Called whenever jobs or reports changed: leaves and exits once a drain is complete. */
void agent_check_done(struct agent *a);
/* Starts draining (from the server's poll answer, or a signal). */
void agent_drain(struct agent *a, bool by_signal);
/* The agent's state for /v1/status: "registering", "up", "draining", "leaving". */
const char *agent_state(const struct agent *a);
int agent_free_slots(const struct agent *a);
/* The "prefetch" the agent asks for now: --prefetch while its jobs are short, else 0. */
int agent_prefetch(const struct agent *a);

/* proto.c */
/* Creates the protocol's timers and events on a->base. */
void proto_init(struct agent *a);
void proto_register(struct agent *a);
/* Sends the next poll unless one is outstanding or waiting for its backoff. */
void proto_poll(struct agent *a);
/* Reports are pending: schedules one batch for the end of this loop turn. */
void proto_kick(struct agent *a);
/* True when no report is pending or in flight. */
bool proto_idle(const struct agent *a);
void proto_leave(struct agent *a);
/* The runtimes the agent offers, by name (protocol.md): a new JSON array. */
json_t *proto_runtimes_json(const struct agent *a);
/* Frees the protocol's timers and batch (requests die with the aclient). */
void proto_release(struct agent *a);

/* jobs.c */
/* A lease from a poll answer: spools it and starts the job, or reports why it cannot run. */
void jobs_lease(struct agent *a, json_t *lease);
/* Kills the processes of the jobs named in `ids` (an array of job ids; anything else is ignored).
 */
void jobs_cancel(struct agent *a, json_t *items);
/* Recovers the spool's records after a restart (see protocol.md). ERR_IO. */
int jobs_recover(struct agent *a, struct err *e);
/* Stops every running job: SIGTERM then SIGKILL after the grace, or SIGKILL at once (`hard`). */
void jobs_stop_all(struct agent *a, bool hard);
/* Frees the jobs whose finished report is settled; removes their records and work folders. */
void jobs_gc(struct agent *a);
/* Jobs not done: staging, or whose process still runs. */
size_t jobs_running(const struct agent *a);
/* Frees every job without touching its spool records or processes (at exit), and what
   jobs_init made. */
void jobs_free_all(struct agent *a);
/* Makes the jobs' events on a->base. */
void jobs_init(struct agent *a);
/* j (leased, spooled) waits for a slot: prefetched. */
void jobs_wait(struct agent_job *j);
/* Gives back every prefetched job still waiting for a slot (a drain). */
void jobs_release_waiting(struct agent *a);
/* The runner: the process ended and its pipes are closed; decides the outcome. */
void jobs_process_ended(struct agent_job *j);

/* Kills the process group the spool's `run` names, if it is still the job's (after a restart). */
void jobs_kill_survivors(struct agent *a, struct agent_job *j, json_t *run);
/* Stops / restarts the job's timeout (a runner's prepare: an image pull is not charged to it). */
void jobs_timeout_pause(struct agent_job *j);
void jobs_timeout_resume(struct agent_job *j);

/* rm -rf `path` (folders a job made read-only too); logs what it could not remove. */
void agent_remove_tree(const char *path);

/* The runner for a job's spec among the agent's runtimes, or NULL with *why set. */
const struct runner_ops *runner_for(const struct agent *a, const json_t *spec, const char **why);

/* runner_bwrap.c */
/* The test that bubblewrap works here (a sandboxed `true`): a new argv (agent_strv_free). */
char **runner_bwrap_test_argv(void);

/* runner_container.c */
/* An engine (PROTO_RT_PODMAN or PROTO_RT_DOCKER, with a->o.engine_opts), not tested. */
struct container_engine *runner_container_new(struct agent *a, unsigned rt);
/* The engine passed its test and is offered: says what it lacks (podman's init). */
void runner_container_offered(const struct container_engine *eng);
/* The test that the engine works (`ENGINE [opts] info`): a new argv (agent_strv_free). */
char **runner_container_test_argv(const struct container_engine *eng);
/* Frees an engine (NULL is fine): its helper commands are left to finish on their own. */
void runner_container_free(struct container_engine *eng);
/* SIGCHLD: true when `pid` was one of the engine's helper commands (then it is reaped). */
bool runner_container_reaped(struct agent *a, pid_t pid);
/* Whether the sweep must leave the agent's child `pid` alone: an engine helper command, or
 * the engine's monitor of one of the agent's containers (podman's conmon). */
bool runner_container_owns(struct agent *a, pid_t pid);

/* runtimes.c */
/*
 * Sets a->runtimes and a->engine: the --runtime ones, tested now (ERR_UNAVAILABLE naming
 * the first that fails), or native now and the tests of the others started (their results
 * come through runtimes_reaped).
 */
int runtimes_setup(struct agent *a, struct err *e);
/* SIGCHLD: true when `pid` was a runtime's test (then it is reaped and taken into account). */
bool runtimes_reaped(struct agent *a, pid_t pid);
/* Whether `pid` is a runtime's test still running (the sweep leaves it alone). */
bool runtimes_owns(const struct agent *a, pid_t pid);
/* Frees the engines (at exit, after the jobs). */
void runtimes_release(struct agent *a);
/* Starts argv[0] (from PATH) with stdin /dev/null, stdout and stderr to `out` (or /dev/null
 * when -1), the default signal handling, no other descriptor. 0 or an errno. */
int agent_spawn_quiet(char *const *argv, int out, pid_t *pid);
/* Waits for `pid` (blocking: startup only): its exit code, or -1. */
int agent_wait_exit(pid_t pid);

/* runner_native.c (the agent must be a child subreaper: agent.c) */
/*
 * Starts `argv` with `envp` in j->work_dir in a new process group, stdin
 * from the spec's pipe value (or /dev/null), stdout and stderr into
 * j->out / j->err, with SIGKILL as its parent-death signal: call it from the
 * loop's thread (the signal comes when the thread that spawned it ends).
 * ERR_IO with "cannot start 'prog': reason".
 */
int runner_native_start(struct agent_job *j, char **argv, char **envp, struct err *e);
/* Sends sig to the job's process group while its leader is not reaped, and to the processes
 * that left the group (the sweep of runner_native.c). */
void runner_native_signal(struct agent_job *j, int sig);
/* SIGCHLD: reaps the jobs whose leader ended (killing what they left) and the orphans. */
void runner_native_reap(struct agent *a);
/* Closes pipes and events of the job's process (without killing it). */
void runner_native_release(struct agent_job *j);
/* Frees the runner's own events (at exit). */
void runner_native_stop(struct agent *a);

/* agent.c */
/*
 * For `drover dev`, before its server starts (server/dev.c): checks the agent options argv
 * (argv[0] the command's name) as cmd_agent would, but for its token, whose file the server
 * has not written yet. A bad one is said on stderr as "drover CMD: ...", then `head` (the
 * command's usage, ending in a newline). Returns 0 or 2; cmd_agent afterwards says its usage
 * errors the same way.
 */
int agent_opts_check(int argc, char **argv, const char *cmd, const char *head);

/* status.c */
struct status_server;
/* Serves /healthz, /metrics, /v1/status on `listen` (ADDR:PORT). ERR_INVALID / ERR_IO. */
int status_start(struct agent *a, const char *listen, struct err *e);
void status_stop(struct agent *a);

#endif
