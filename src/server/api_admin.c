/*
 * api_admin.c - tokens, health and metrics.
 */
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "server/events.h"
#include "http/tls.h"
#include "http/upload.h"
#include "server/metrics.h"
#include "server/retention.h"
#include "server/server.h"
#include "server/tenants.h"
#include "server/webhooks.h"

static struct server *srv(struct http_req *r)
{
    return r->app;
}

static bool token_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return false;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') || ('0' <= *s && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

struct token_op {
    struct http_req *r;
    char name[HTTP_PARAM_MAX];
    char tenant[72]; /* "" : the token's own name */
    int role;
    char token[AUTH_TOKEN_LEN];
    char hash[AUTH_HASH_LEN];
};

static int token_insert_write(struct store *st, void *arg, struct err *e)
{
    struct token_op *t = arg;
    int rc = store_token_insert(st, t->name, t->role, t->hash, e);
    return rc || !t->tenant[0] ? rc : store_token_set_tenant(st, t->name, t->tenant, e);
}

static int token_delete_write(struct store *st, void *arg, struct err *e)
{
    struct token_op *t = arg;
    return store_token_delete(st, t->name, e);
}

static void token_done(void *arg, int rc, const struct err *e)
{
    struct token_op *t = arg;
    if (!rc && !t->token[0]) { /* revoked: no cached check may keep it alive */
        auth_cache_forget_all(t->r->app);
        tenants_forget_tokens(t->r->app); /* its name may come back with another tenant */
    }
    if (t->r->gone)
        http_req_drop(t->r);
    else if (rc)
        http_reply_err(t->r, e);
    else if (t->token[0])
        http_reply_json(t->r, 201,
                        json_pack("{s:s, s:s, s:s, s:s}", "token", t->token, "name", t->name,
                                  "role", role_name(t->role), "tenant",
                                  t->tenant[0] ? t->tenant : t->name));
    else
        http_reply_json(t->r, 200, json_pack("{s:s, s:b}", "name", t->name, "revoked", 1));
    free(t);
}

int api_tokens_create(struct http_req *r)
{
    json_t *role = json_object_get(r->body, "role"), *name = json_object_get(r->body, "name");
    const char *key;
    json_t *v;
    if (!json_is_object(r->body)) {
        http_reply_error(r, ERR_INVALID, NULL,
                         "the body must be an object {\"role\", \"name\", \"tenant\"}");
        return HTTP_DONE;
    }
    json_object_foreach(r->body, key, v)
    {
        if (strcmp(key, "role") && strcmp(key, "name") && strcmp(key, "tenant")) {
            http_reply_error(r, ERR_INVALID, key, "unknown field '%s'", key);
            return HTTP_DONE;
        }
    }
    if (!json_is_string(role) || role_parse(json_string_value(role)) < 0) {
        http_reply_error(r, ERR_INVALID, "role", "role must be one of agent, client, admin");
        return HTTP_DONE;
    }
    if (!json_is_string(name) || !token_name_valid(json_string_value(name))) {
        http_reply_error(r, ERR_INVALID, "name", "name must match [A-Za-z0-9._-]{1,64}");
        return HTTP_DONE;
    }
    json_t *tenant = json_object_get(r->body, "tenant");
    if (tenant && !json_is_null(tenant) &&
        (!json_is_string(tenant) || !tenants_name_valid(json_string_value(tenant)))) {
        http_reply_error(r, ERR_INVALID, "tenant", "tenant must match [A-Za-z0-9._-]{1,64}");
        return HTTP_DONE;
    }
    struct token_op *t = xcalloc(1, sizeof(*t));
    t->r = r;
    if (json_is_string(tenant))
        snprintf(t->tenant, sizeof(t->tenant), "%s", json_string_value(tenant));
    t->role = role_parse(json_string_value(role));
    snprintf(t->name, sizeof(t->name), "%s", json_string_value(name));
    auth_token_new(t->token, t->hash);
    commit_submit(srv(r)->commit, token_insert_write, token_done, t);
    return HTTP_DEFERRED;
}

int api_tokens_delete(struct http_req *r)
{
    if (!strcmp(r->params[0], r->token_name)) {
        http_reply_error(r, ERR_CONFLICT, "name", "a token cannot revoke itself");
        return HTTP_DONE;
    }
    struct token_op *t = xcalloc(1, sizeof(*t));
    t->r = r;
    snprintf(t->name, sizeof(t->name), "%s", r->params[0]);
    commit_submit(srv(r)->commit, token_delete_write, token_done, t);
    return HTTP_DEFERRED;
}

static int token_listed(void *arg, const struct token_rec *t)
{
    char created[40];
    time_format_rfc3339(t->created_at, created, sizeof(created));
    json_array_append_new(arg, json_pack("{s:s, s:s, s:s, s:s}", "name", t->name, "role",
                                         role_name(t->role), "tenant",
                                         t->tenant[0] ? t->tenant : t->name, "created_at",
                                         created));
    return 0;
}

int api_tokens_list(struct http_req *r)
{
    json_t *list = json_array();
    struct err e = ERR_INIT;
    if (store_token_scan(srv(r)->reads, token_listed, list, &e)) {
        json_decref(list);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    http_reply_json(r, 200, json_pack("{s:o}", "tokens", list));
    return HTTP_DONE;
}

int api_healthz(struct http_req *r)
{
    http_reply_json(r, 200, json_pack("{s:s, s:s}", "status", "ok", "version", DROVER_VERSION));
    return HTTP_DONE;
}

/* Ready to serve: its store answers a read (a load balancer's check; /healthz says only that
   the process answers). 503, naming no detail (router.c), while the store cannot be reached. */
int api_readyz(struct http_req *r)
{
    char *v = NULL;
    struct err e = ERR_INIT;
    int rc = store_meta_get(srv(r)->reads, "presign_secret", &v, &e);
    free(v);
    if (rc) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    http_reply_json(r, 200, json_pack("{s:s, s:s}", "status", "ready", "version", DROVER_VERSION));
    return HTTP_DONE;
}

/* docs/openapi.json, compiled in (CMakeLists.txt, cmake/embed.cmake). */
extern const unsigned char openapi_json[];
extern const size_t openapi_json_len;

int api_openapi(struct http_req *r)
{
    http_reply_bytes(r, 200, "application/json", openapi_json, openapi_json_len);
    return HTTP_DONE;
}

int api_status(struct http_req *r)
{
    struct server *s = srv(r);
    int64_t now = time_now_ms();
    json_t *warnings = s->warnings ? json_incref(s->warnings) : json_array();
    http_reply_json(r, 200,
                    json_pack("{s:s, s:s, s:b, s:I, s:{s:s, s:i}, s:o}", "version",
                              DROVER_VERSION, "listen", s->listen ? s->listen : "", "tls",
                              s->tls != NULL, "uptime_s",
                              (json_int_t)((now - s->started_at_ms) / 1000), "store", "kind",
                              store_kind(s->reads), "schema", store_schema(s->reads),
                              "warnings", warnings));
    return HTTP_DONE;
}

int api_metrics(struct http_req *r)
{
    struct server *s = srv(r);
    struct commit_stats cs;
    commit_get_stats(s->commit, &cs);
    struct buf b = BUF_INIT;
    buf_addf(&b,
             "# HELP drover_http_requests_total HTTP requests received.\n"
             "# TYPE drover_http_requests_total counter\n"
             "drover_http_requests_total %llu\n"
             "# HELP drover_commit_batches_total Group-commit transactions.\n"
             "# TYPE drover_commit_batches_total counter\n"
             "drover_commit_batches_total %llu\n"
             "# HELP drover_commit_ops_total Write operations committed in batches.\n"
             "# TYPE drover_commit_ops_total counter\n"
             "drover_commit_ops_total %llu\n"
             "# HELP drover_commit_failures_total Batches whose commit failed.\n"
             "# TYPE drover_commit_failures_total counter\n"
             "drover_commit_failures_total %llu\n"
             "# HELP drover_waiters Requests waiting on a job.\n"
             "# TYPE drover_waiters gauge\n"
             "drover_waiters %zu\n"
             "# HELP drover_uptime_seconds Seconds since the server started.\n"
             "# TYPE drover_uptime_seconds gauge\n"
             "drover_uptime_seconds %.3f\n"
             "# HELP drover_leader 1 when this server runs the periodic work (the leader).\n"
             "# TYPE drover_leader gauge\n"
             "drover_leader %d\n",
             (unsigned long long)router_served(s->router), (unsigned long long)cs.batches,
             (unsigned long long)cs.ops, (unsigned long long)cs.failed_commits,
             waiters_count(s->waiters), (double)(time_now_ms() - s->started_at_ms) / 1000.0,
             s->leader ? 1 : 0);
    struct webhook_stats ws;
    webhooks_get_stats(s->webhooks, &ws);
    buf_addf(&b,
             "# HELP drover_webhooks_delivered_total Webhook deliveries answered 2xx.\n"
             "# TYPE drover_webhooks_delivered_total counter\n"
             "drover_webhooks_delivered_total %llu\n"
             "# HELP drover_webhooks_failed_total Webhook tries that failed (tried again later).\n"
             "# TYPE drover_webhooks_failed_total counter\n"
             "drover_webhooks_failed_total %llu\n"
             "# HELP drover_webhooks_dropped_total Webhook deliveries given up after 25 hours.\n"
             "# TYPE drover_webhooks_dropped_total counter\n"
             "drover_webhooks_dropped_total %llu\n"
             "# HELP drover_event_followers Clients following the event stream.\n"
             "# TYPE drover_event_followers gauge\n"
             "drover_event_followers %zu\n",
             (unsigned long long)ws.delivered, (unsigned long long)ws.failed,
             (unsigned long long)ws.dropped, events_followers(s->events));
    struct retention_stats rs;
    retention_get_stats(s->retention, &rs);
    buf_addf(&b,
             "# HELP drover_jobs_archived_total Finished jobs archived and deleted after their "
             "retention.\n"
             "# TYPE drover_jobs_archived_total counter\n"
             "drover_jobs_archived_total %llu\n"
             "# HELP drover_retention_failures_total Retention sweeps that failed (logged).\n"
             "# TYPE drover_retention_failures_total counter\n"
             "drover_retention_failures_total %llu\n",
             (unsigned long long)rs.archived, (unsigned long long)rs.failed);
    int conns, lingering;
    int64_t reserved;
    uploads_stats(s->uploads, &conns, &lingering, &reserved);
    buf_addf(&b,
             "# HELP drover_http_connections Client connections open.\n"
             "# TYPE drover_http_connections gauge\n"
             "drover_http_connections %d\n"
             "# HELP drover_http_lingering Connections closing after their answer.\n"
             "# TYPE drover_http_lingering gauge\n"
             "drover_http_lingering %d\n"
             "# HELP drover_http_body_bytes_reserved Request body bytes held or announced.\n"
             "# TYPE drover_http_body_bytes_reserved gauge\n"
             "drover_http_body_bytes_reserved %lld\n",
             conns, lingering, (long long)reserved);
    if (s->tls) {
        struct tls_stats ts;
        tls_front_stats(s->tls, &ts);
        buf_addf(&b,
                 "# HELP drover_tls_connections TLS connections open.\n"
                 "# TYPE drover_tls_connections gauge\n"
                 "drover_tls_connections %d\n"
                 "# HELP drover_tls_accepted_total TLS connections accepted.\n"
                 "# TYPE drover_tls_accepted_total counter\n"
                 "drover_tls_accepted_total %llu\n"
                 "# HELP drover_tls_handshake_failures_total TLS connections that ended before "
                 "their handshake completed.\n"
                 "# TYPE drover_tls_handshake_failures_total counter\n"
                 "drover_tls_handshake_failures_total %llu\n",
                 ts.conns, (unsigned long long)ts.accepted,
                 (unsigned long long)ts.handshake_failures);
    }
    metrics_render(s->metrics, &b);
    http_reply_text(r, 200, "text/plain; version=0.0.4", buf_str(&b));
    buf_release(&b);
    return HTTP_DONE;
}
