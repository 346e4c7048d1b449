/*
 * services.h - the service hub as jobs use it (api_services.c): a job that
 * names a service the hub defines is expanded from its definition
 * (job/service.h) before its spec is parsed, and its submission's write
 * checks, in the transaction that stores the job, that what the expansion
 * read still holds (the service not retired meanwhile, no newer version, or
 * a service defined meanwhile for a name that had none).
 */
#ifndef DROVER_SERVICES_H
#define DROVER_SERVICES_H

#include <jansson.h>
#include <stdbool.h>

#include "common/err.h"
#include "job/service.h"
#include "store/store.h"

/* What a job's expansion read of the hub, for services_recheck(). */
struct service_use {
    char name[SERVICE_NAME_MAX + 1]; /* "" when the job names no service the hub could hold */
    int version;                     /* the version expanded; 0: the hub had no such service */
    bool pinned;                     /* the job gave service_version */
    char path[24];                   /* the job's place in an array ("[3]"), or "" */
};

/*
 * What a submission's jobs read of the hub, kept from one job to the next
 * (an array's jobs mostly name one service): zero it before the first,
 * services_memo_release() after the last. Valid for one request only.
 */
struct services_memo {
    char name[SERVICE_NAME_MAX + 1]; /* whose latest version `latest` is; "" none yet */
    int latest_rc;                   /* 0, or ERR_NOTFOUND: no such service */
    struct service_rec latest;
    struct service_rec pinned; /* the last version a job asked for that is not the latest */
    json_t *def;               /* the parsed definition of version def_version of `name` */
    int def_version;
};
void services_memo_release(struct services_memo *m);

/*
 * Event loop. When `job` (a spec as the client sent it; read only) names a
 * service that the hub defines, *out gets its expansion (a new reference),
 * to be given to spec_parse() instead of `job`; otherwise *out is NULL and
 * `job` is parsed as it is (a service the hub does not define is a program
 * of that name, docs/api.md). Refused with ERR_INVALID, naming the field:
 * params or service_version for a service the hub does not define, a
 * version it does not have, a retired service, the expansion's own errors.
 * `use` is filled in either way. `path` prefixes field paths.
 */
int services_expand_job(struct store *reads, struct services_memo *memo, json_t *job,
                        const char *path, json_t **out, struct service_use *use, struct err *e);

/*
 * The same for a workflow's node: `connected` ({PORT: URI}, or NULL) gives a stand-in value
 * for each of its inputs a connection feeds (and the job's params leave out), so that the
 * expansion passes; the connection sets the real one when the node is queued. *ports (a new
 * reference, or NULL when the job names no service of the hub): service_ports() of the
 * expansion, the node's ports for workflow_parse_ports().
 */
int services_expand_node(struct store *reads, struct services_memo *memo, json_t *job,
                         const char *path, const json_t *connected, json_t **out, json_t **ports,
                         struct service_use *use, struct err *e);

/*
 * Writer thread, in the transaction that stores the job: 0 when what `use`
 * says still holds; ERR_INVALID (naming "service") when the service has
 * been retired since; ERR_CONFLICT when a new version (for a job that did
 * not pin one) or a first definition (for a job that had none) has come.
 */
int services_recheck(struct store *st, const struct service_use *use, struct err *e);

#endif
