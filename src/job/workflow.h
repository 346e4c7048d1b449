/*
 * workflow.h - a workflow (POST /v1/workflows, docs/api.md "Workflows"): named nodes, each a
 * job spec, joined by dependencies and by connections from one node's output port to another
 * node's input port. No I/O: parsing, whole validation (every node's spec, every name, no
 * cycle) and the stored document, from which the store decides what runs next.
 *
 *   {"name": "diamond",
 *    "nodes": {"A": {"job": SPEC}, "B": {"job": SPEC, "depends_on": ["A"]},
 *              "D": {"job": SPEC, "depends_on": [{"node": "B", "on": "any"}]}},
 *    "connections": [{"from": "A.out", "to": "B.in"}]}
 *
 * A port is a named argument of a node's spec: an output port is a `command.arguments` entry
 * of type "output" with that name, an input port one of type "input". A connection makes the
 * downstream node depend on the upstream one (on success); when the downstream node is
 * queued, its input's value becomes the object the upstream's succeeded attempt wrote (its
 * URI, pinned by that attempt's sha256). A connected input may leave out its "value".
 *
 * Fan-out and fan-in: a node's spec may hold "array" ({"count"}, {"items"}, or
 * {"outputs": NODE, "prefix": P}: one task per object NODE's succeeded attempt wrote). The
 * node's job is then a placeholder that no agent runs: the store makes its array when its
 * upstreams allow and settles it when the array's last task ends (store.c). A connection from
 * such a node's output port gives the downstream input one argument per task (the tasks'
 * objects, in index order).
 */
#ifndef DROVER_JOB_WORKFLOW_H
#define DROVER_JOB_WORKFLOW_H

#include <jansson.h>
#include <stdbool.h>

#include "common/err.h"
#include "common/uuid.h"
#include "job/job.h"
#include "job/spec.h"

#define WORKFLOW_MAX_NODES 10000
#define WORKFLOW_MAX_CONNECTIONS 50000
#define WORKFLOW_SAMPLE_ITEM "s3://drover-sample/item" /* a fan-out node's spec is checked so */

struct wf_dep {
    size_t node; /* the upstream node's index */
    bool any;    /* "on": "any" (afterany): go on whatever way the upstream ended */
};

struct wf_node {
    char *name;
    struct job_spec spec; /* validated and normalised */
    struct wf_dep *deps;  /* each upstream once (a connection adds one) */
    size_t ndeps;
    long fan_from; /* "array": {"outputs": NODE}: NODE's index (an upstream on success); or -1 */
};

struct wf_conn {
    size_t from, to;
    char *from_port, *to_port;
    char *base; /* the output port's URI as given (workflow_attempt_uri) */
    char *from_at, *to_at; /* a service node's port: its place (service_ports()), else NULL */
};

struct workflow {
    char *name; /* or NULL */
    char *key;  /* idempotency key (POST /v1/workflows), or NULL */
    char *notify_url; /* POSTed the workflow's end (docs/api.md "Webhooks"), or NULL */
    struct wf_node *nodes;
    size_t n;
    struct wf_conn *conns;
    size_t nconns;
    size_t *order; /* the nodes in an order where each comes after its upstreams */
};

/*
 * Validates a whole workflow body: 0, or ERR_INVALID naming the field ("nodes.B.job.queue",
 * "connections[0].to") or the cycle ("a cycle: A -> B -> A"). w is the caller's to release on 0.
 */
int workflow_parse(json_t *body, struct workflow *w, struct err *e);
/* A workflow's state from its nodes' counts by job state: JOB_RUNNING while one has not
   ended, then JOB_SUCCEEDED when all did, JOB_FAILED when one failed, else JOB_CANCELLED. */
enum job_state workflow_state(const int64_t count[JOB_NSTATES]);
/*
 * The same, for a body whose service nodes are expanded already: ports is {NODE: PORTS}, PORTS
 * what service_ports() says of that node's expansion (job/service.h); a service node's ports
 * are the service's named inputs and outputs, wherever the template put them. NULL: none.
 */
int workflow_parse_ports(json_t *body, const json_t *ports, struct workflow *w, struct err *e);
void workflow_release(struct workflow *w);
/* The index of node `name`, or -1. */
long workflow_node(const struct workflow *w, const char *name);

/*
 * The nodes' jobs: jobs[i] (w->n of them) for node i, made from its spec at now_ms, owned by
 * `owner` (may be NULL), blocked when it has upstreams, else queued. The caller releases them.
 */
void workflow_jobs(const struct workflow *w, const char *owner, int64_t now_ms, struct job *jobs);

/*
 * The document the store keeps, with each node's job id (ids[i] for node i):
 * {"name", "nodes": {NAME: {"job": ID, "depends_on": [{"node", "on"}]}},
 *  "connections": [{"from", "to", "uri", "from_at", "to_at"}]} (the last two for a service
 * node's port only); a fan-out node has "array": true; a new reference.
 */
json_t *workflow_doc(const struct workflow *w, const char (*ids)[UUID_STR_LEN]);

/*
 * Sets input port `port` of a normalised spec to the object an upstream attempt wrote:
 * `uri` (with its `sha256`, or NULL). False when the spec has no such input.
 */
bool workflow_set_input(json_t *spec, const char *port, const char *at, const char *uri,
                        const char *sha256);
/*
 * The value (URI) of output port `port` of a normalised spec, or NULL. `at` (here and above):
 * a service node's port's place (the connection's from_at or to_at), or NULL: by name.
 */
const char *workflow_output_uri(const json_t *spec, const char *port, const char *at);
/*
 * Each attempt of a node writes a connected output to its own key, so that no retry reads
 * what an earlier attempt left: s3://BUCKET/DIR/NAME becomes s3://BUCKET/DIR/attempt-N/NAME
 * for attempt N (a malloc'd URI). NULL when `base` is not an s3:// object URI or the result
 * would not be a valid one: then every attempt writes `base`.
 */
char *workflow_attempt_uri(const char *base, int attempt);
/*
 * Fan-in: input port `port` of a normalised spec becomes n input arguments (uris[i], pinned by
 * shas[i] when not NULL), in its place and keeping its name. False when there is no such input
 * argument (stdin is not one).
 */
bool workflow_set_inputs(json_t *spec, const char *port, const char *at, const char *const *uris,
                         const char *const *shas, size_t n);
/* Sets output port `port` of a normalised spec to `uri`; false when it has no such output. */
bool workflow_set_output(json_t *spec, const char *port, const char *at, const char *uri);

#endif
