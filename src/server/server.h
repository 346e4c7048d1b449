/*
 * server.h - the coordinator's state, shared by its handlers.
 *
 * One event loop thread runs every handler; the writer thread (commit.h)
 * runs the store writes. Handlers read through `reads`, a store handle of
 * the loop thread's own, and write only through `commit`.
 */
#ifndef DROVER_SERVER_H
#define DROVER_SERVER_H

#include <event2/event.h>
#include <event2/http.h>

#include "common/log.h"
#include "common/netmask.h"
#include "http/router.h"
#include "server/commit.h"
#include "store/store.h"

struct waiters;
struct auth_cache;
struct sched;
struct fleet;
struct logs;
struct blob_store;
struct uploads;
struct offload;
struct events;
struct webhooks;
struct accept_guard;
struct tls_front;
struct metrics;
struct retention;
struct tenants;
struct triggers;

struct server {
    struct event_base *base;
    struct evhttp *http;
    struct router *router;
    struct store *reads;
    struct committer *commit;
    struct waiters *waiters;
    struct auth_cache *auth_cache;
    char *data_dir;
    int data_lock_fd; /* holds DATA/lock (datadir.h) while the server lives; -1 before */
    char *data_made;  /* the outermost folder of DATA that server_start made (it did not
                         exist), or NULL: removed by server_release after a failed start */
    bool start_failed;
    int listen_fd; /* bound first by server_start, -1 once it listens (the listener's then) */
    bool shutting_down;
    struct evhttp_bound_socket *listener;
    struct accept_guard *accept_guard; /* pauses accepting when descriptors run out */
    struct tls_front *tls;             /* HTTPS in front of the listener (http/tls.h), or NULL */
    struct accept_guard *tls_guard;    /* the same guard on the TLS front's listener */
    char *listen;                      /* --listen as bound (port 0: the kernel's), GET /v1/status */
    json_t *warnings;                  /* what an operator should know (GET /v1/status) */
    struct event *drain_timer;
    int drain_ticks;
    int64_t started_at_ms;
    struct sched *sched; /* ready queues */
    struct metrics *metrics; /* histograms and labelled counters (metrics.h) */
    struct fleet *fleet; /* agents and leases */
    struct logs *logs;   /* followers of job logs */
    struct events *events; /* followers of the event stream (events.h) */
    struct webhooks *webhooks; /* delivering jobs' events to their notify_url (webhooks.h) */
    struct retention *retention; /* archiving and deleting finished jobs (retention.h) */
    struct tenants *tenants;     /* quotas and fair share (tenants.h) */
    struct triggers *triggers;   /* upload triggers: fires submitted, S3 listed (triggers.h) */
    struct event *tick;
    struct event *due; /* within a tick: when a delayed job (a retry's backoff) is due */
    /* The leader lease (store_leader_take): periodic work (lost agents, deadlines, event
       pruning, webhook deliveries, the retention sweep) runs only while `leader`. Without STORE_CAP_LEADER
       (SQLite) the one server always leads and `elect` is false. */
    bool elect, leader, leader_busy;
    struct sync *sync;       /* STORE_CAP_SHARED: other servers' changes (sync.h), or NULL */
    char *leader_holder;     /* this server: "HOST:DATA-DIR", the same after a restart */
    int64_t leader_until_ms; /* when the lease last taken lapses */
    struct log_repeat leader_log; /* renewing the lease fails */
    int64_t leader_next_ms;  /* the next renewal */
    int heartbeat_s;
    int lost_after_s;
    int deadline_grace_s;
    struct blob_store *blobs;   /* the object store (blob.h) */
    struct uploads *uploads;    /* request bodies streamed past evhttp (http/upload.h) */
    struct offload *offload;    /* fsyncs and S3 calls off the loop thread (worker threads) */
    unsigned char presign_secret[32];
    char *public_url;           /* base of presigned URLs, or NULL: from the request's Host */
    void (*on_stopped)(void *arg); /* set by server_shutdown */
    void *on_stopped_arg;
};

/* `drover server`'s options. */
struct server_opts {
    const char *listen;
    char *data;
    char *db;
    bool sync_full;
    int heartbeat_s;
    int lost_after_s;
    int deadline_grace_s;
    char *blobs;      /* object store URI: fs:DIR (default DATA/blobs) or s3://... */
    char *public_url; /* --public-url */
    int upload_idle_s; /* --upload-idle */
    int64_t events_keep; /* --events-keep: events retained for GET /v1/events */
    int max_connections;  /* --max-connections; 0: from the descriptor limit */
    int header_timeout_s; /* --header-timeout */
    int idle_timeout_s;   /* --idle-timeout */
    char *tls_cert;       /* --tls-cert: PEM certificate chain, or NULL for plain HTTP */
    char *tls_key;        /* --tls-key: its PEM private key */
    int64_t retention_ms; /* --retention (retention.h) */
    int64_t agent_retention_ms; /* --agent-retention: agents gone this long are forgotten */
    char **queue_retention; /* --queue-retention QUEUE=DURATION, each as given */
    size_t nqueue_retention;
    int retention_sweep_s; /* --retention-sweep */
    int tenant_max_running; /* --tenant-max-running (0: none) */
    int tenant_max_queued;  /* --tenant-max-queued (0: none) */
    int trigger_scan_s;     /* --trigger-scan: S3 prefixes of triggers listed this often */
    struct netmask_list webhook_allow, webhook_deny; /* --webhook-allow, --webhook-deny */
};

/* --webhook-deny's default: link-local addresses (cloud metadata services: 169.254.169.254,
   fd00:ec2::254) */
#define SERVER_WEBHOOK_DENY "169.254.0.0/16,fe80::/10,fd00:ec2::254"

#define SERVER_MAX_CONNS 16384                 /* the default cap's ceiling */
#define SERVER_HEADER_TIMEOUT_S 10             /* a request's head arrives within this */
#define SERVER_IDLE_TIMEOUT_S 60               /* a connection without a request lives this long */
#define SERVER_BODY_MEMORY (128 * 1024 * 1024) /* bodies held at a time, all connections */

/*
 * Parses `drover server`'s options (argv[0] is the command's name) and fills
 * the defaults: 0, 2 for a usage error (said on stderr), -1 after --help.
 */
int server_opts_parse(int argc, char **argv, struct server_opts *o);
void server_opts_release(struct server_opts *o);
/*
 * Binds --listen (a port in use fails before the data folder is made or changed), opens the
 * store, loads the jobs in flight and starts serving on base. After a failure, server_release
 * removes the data folder when this start made it.
 */
int server_start(struct server *s, const struct server_opts *o, struct event_base *base,
                 struct err *e);
/*
 * Starts an orderly shutdown: new requests get 503, the listener closes,
 * long-polls and agents' polls are answered, and once the writes in flight
 * are committed and answered, stopped(arg) runs.
 */
void server_shutdown(struct server *s, void (*stopped)(void *arg), void *arg);
/* Frees everything (after the loop has stopped). */
void server_release(struct server *s);

/* The route table (routes.c). */
extern const struct route server_routes[];
extern const size_t server_nroutes;

/* Handlers, by resource. */
/* The owner whose jobs (workflows, arrays, triggers) the caller sees: NULL (all) for an admin. */
const char *api_caller_owner(const struct http_req *r);
/*
 * Resolves `given`, a route's {id}: a whole id or a unique prefix of one (at least 6
 * characters) of a `kind` the caller may see, into id: 0, ERR_INVALID (too short),
 * ERR_NOTFOUND, or ERR_AMBIGUOUS naming a few of the matches (api_ids.c).
 */
int api_resolve_id(struct http_req *r, enum store_kind kind, const char *given,
                   char id[UUID_STR_LEN], struct err *e);
int api_jobs_create(struct http_req *r);
int api_jobs_get(struct http_req *r);
int api_jobs_list(struct http_req *r);
int api_jobs_wait(struct http_req *r);
int api_jobs_cancel(struct http_req *r);
int api_jobs_cancel_many(struct http_req *r);
int api_jobs_retry_many(struct http_req *r);
int api_jobs_retry(struct http_req *r);
/* POST /v1/jobs with "array" (api_jobs_create hands it over) and /v1/arrays (api_arrays.c). */
int api_arrays_submit(struct http_req *r);
int api_arrays_list(struct http_req *r);
int api_arrays_get(struct http_req *r);
int api_arrays_tasks(struct http_req *r);
int api_arrays_cancel(struct http_req *r);
int api_arrays_retry(struct http_req *r);
/*
 * The job of task `index` (text, a whole number) of array `array` (its id or a unique prefix), for
 * /v1/jobs/{id} given as ARRAY:INDEX, if the caller may see the array: 0 with id set, or
 * ERR_INVALID (a bad index) or ERR_NOTFOUND saying why there is none (no such array or
 * task, or a task not claimed yet: queued, or cancelled before it ran).
 */
int api_arrays_task_job(struct http_req *r, const char *array, const char *index,
                        char id[UUID_STR_LEN], struct err *e);
/* The id the job of that task has, or will have once an agent takes it (array_task_id). */
int api_arrays_task_id(struct http_req *r, const char *array, const char *index,
                       char id[UUID_STR_LEN], struct err *e);
int api_workflows_create(struct http_req *r);
int api_workflows_get(struct http_req *r);
int api_workflows_list(struct http_req *r);
int api_workflows_cancel(struct http_req *r);
int api_workflows_retry(struct http_req *r);
int api_triggers_create(struct http_req *r);
int api_triggers_list(struct http_req *r);
int api_triggers_get(struct http_req *r);
int api_triggers_update(struct http_req *r);
int api_triggers_delete(struct http_req *r);
int api_triggers_fire(struct http_req *r);
int api_triggers_pause(struct http_req *r);
int api_triggers_resume(struct http_req *r);
/*
 * A workflow submission (api_workflows.c), shared by POST /v1/workflows and the triggers
 * (triggers.h): prepared on the loop from a workflow body (services expanded, validated
 * whole, its jobs made for `owner` and its tenant; errors name the field under `path`, e.g.
 * "workflow.nodes.A.job.queue", when path is not NULL), written by the committer (in the
 * caller's savepoint), handed to the fleet once committed.
 */
struct wf_submit;
int workflow_submit_prepare(struct server *s, json_t *body, const char *path, const char *owner,
                            struct wf_submit **out, struct err *e);
int workflow_submit_write(struct store *st, struct wf_submit *ws, struct err *e);
void workflow_submit_committed(struct server *s, struct wf_submit *ws);
const char *workflow_submit_id(const struct wf_submit *ws);
/* Calls fn on each node's validated spec (fn may add to it; nothing it holds is replaced). */
void workflow_submit_each_spec(struct wf_submit *ws,
                               void (*fn)(json_t *spec, const char *a, const char *b),
                               const char *a, const char *b);
void workflow_submit_free(struct wf_submit *ws); /* NULL is fine */
/* Hands the jobs the store changed by itself (store_changed_take) to the fleet: after a batch. */
void server_changed_jobs(struct server *s);
int api_queues_list(struct http_req *r);
int api_queues_pause(struct http_req *r);
int api_queues_resume(struct http_req *r);
#define QUEUE_MAX_RUNNING 1000000 /* the highest max_running of a queue */
int api_queues_put(struct http_req *r);
int api_jobs_log(struct http_req *r);
int api_agents_register(struct http_req *r);
/*
 * The checks of an agent's bodies, without a server (tests/fuzz): a register body into *a
 * (the caller's to agent_rec_release on 0; `token` its owner), and reports[i] of a reports
 * body, *type its type. 0, or ERR_INVALID naming the field.
 */
int api_agents_parse_register(json_t *b, const char *token, struct agent_rec *a, struct err *e);
int api_agents_check_report(json_t *it, size_t i, enum proto_report *type, struct err *e);
int api_agents_poll(struct http_req *r);
int api_agents_reports(struct http_req *r);
int api_agents_leave(struct http_req *r);
int api_agents_drain(struct http_req *r);
int api_agents_list(struct http_req *r);
int api_services_put(struct http_req *r);
int api_services_list(struct http_req *r);
int api_services_get(struct http_req *r);
int api_services_get_version(struct http_req *r);
int api_services_delete(struct http_req *r);
int api_tokens_create(struct http_req *r);
int api_tokens_delete(struct http_req *r);
int api_tokens_list(struct http_req *r);
int api_healthz(struct http_req *r);
int api_readyz(struct http_req *r);
int api_blob_object(struct http_req *r);
int api_blob_list(struct http_req *r);
int api_blob_buckets(struct http_req *r);
int api_presign(struct http_req *r);
int api_metrics(struct http_req *r);
int api_events(struct http_req *r);
int api_dashboard_page(struct http_req *r);
int api_dashboard_file(struct http_req *r);
int api_session_create(struct http_req *r);
int api_session_get(struct http_req *r);
int api_session_delete(struct http_req *r);
int api_status(struct http_req *r);
int api_openapi(struct http_req *r);
int api_tenants_list(struct http_req *r);
int api_tenants_put(struct http_req *r);

/* auth.c: token checks for the router, and the first start's admin token. */
int auth_check(void *app, const char *token, int *role, char *name, size_t n, struct err *e);
/* auth_check() of a token known by its hash (auth_token_hash). */
int auth_check_hash(struct server *s, const char *hash, int *role, char *name, size_t n,
                    struct err *e);
/* Writes a new random token into out (at least AUTH_TOKEN_LEN bytes) and its hash into hash. */
#define AUTH_TOKEN_LEN 72
#define AUTH_HASH_LEN 65
void auth_token_new(char *out, char *hash);
void auth_token_hash(const char *token, char *hash);
/* Creates the admin token and DATA/admin.token (mode 0600) when there is none. */
int auth_bootstrap(struct server *s, struct err *e);
/*
 * Tokens found valid are remembered for AUTH_CACHE_TTL_MS so that a request
 * does not cost a store read. A revoke on this server forgets them at once;
 * one made by another server sharing the store takes effect within the TTL.
 */
#define AUTH_CACHE_TTL_MS 5000
void auth_cache_forget_all(struct server *s);
void auth_cache_free(struct server *s);
/* tenants.c: forgets the tokens' tenants it remembers (a token was revoked). */
void tenants_forget_tokens(struct server *s);
/* Reads the paused queues into the scheduler (at start; sync.c: another server changed them). */
int queues_reload(struct server *s, struct err *e);

/* waiters.c: long-polls on jobs (GET /v1/jobs/{id}/wait). */
struct waiters *waiters_new(struct server *s);
/* Answers every waiter with the job's current state. NULL is fine. */
void waiters_free(struct waiters *w);
/* Parks r until the job with this id is terminal or timeout_ms passes. */
void waiters_add(struct waiters *w, const char *id, struct http_req *r, int64_t timeout_ms);
/* The job changed: waiters on it whose job is now terminal get their answer. NULL w is fine. */
void waiters_wake(struct waiters *w, const struct job *j);
size_t waiters_count(const struct waiters *w);

/* logs.c: GET /v1/jobs/{id}/log, paced by the socket; with follow=1 until the job ends. */
struct logs *logs_new(struct server *s);
/* Ends every reader's stream. NULL is fine. */
void logs_free(struct logs *l);
struct logs_query {
    const char *job; /* a whole id */
    int stream;      /* 0 stdout, 1 stderr */
    int attempt;     /* 0: the job's latest */
    bool pinned;     /* only `attempt`: a followed answer ends with it, not with the job */
    bool follow;     /* wait for more output until the job (or the pinned attempt) ends */
    int64_t offset;  /* in the (first) attempt's stream */
    int64_t tail;    /* > 0: start at the stream's last `tail` bytes instead of at offset */
};

/* The most bytes GET /v1/jobs/{id}/log?tail= may ask for. */
#define LOGS_TAIL_MAX (1 << 20)
/* Answers r (200, chunked) with the job's output as q says, one bounded chunk at a time. */
void logs_send(struct logs *l, struct http_req *r, const struct logs_query *q);
/* New output, or the job changed: its readers get what is new. NULL l is fine. */
void logs_notify(struct logs *l, const char *job);

#endif
