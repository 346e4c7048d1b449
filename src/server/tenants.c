/*
 * tenants.c - see tenants.h; and the routes GET /v1/tenants and
 * PUT /v1/tenants/{name}.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hmap.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "server/fleet.h"
#include "server/sched.h"
#include "server/server.h"
#include "server/tenants.h"

#define TOKEN_CACHE_SIZE 64

struct token_tenant {
    char name[128];
    char tenant[72];
    int64_t expires_ms;
};

struct tenants {
    int max_running, max_queued; /* the server's defaults (0: none) */
    struct hmap own;             /* name -> struct tenant_rec: limits of its own */
    struct token_tenant cache[TOKEN_CACHE_SIZE];
    unsigned next;
};

static struct server *srv(struct http_req *r)
{
    return r->app;
}

bool tenants_name_valid(const char *s)
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

/* Remembers t's limits and gives them to the scheduler. */
static void tenant_set(struct server *s, const struct tenant_rec *t)
{
    struct tenant_rec *copy = xmalloc(sizeof(*copy));
    *copy = *t;
    free(hmap_put(&s->tenants->own, t->name, copy));
    sched_tenant_set(s->sched, t->name, t->max_running, t->weight);
}

static int load_one(void *arg, const struct tenant_rec *t)
{
    tenant_set(arg, t);
    return 0;
}

int tenants_open(struct server *s, int max_running, int max_queued, struct err *e)
{
    s->tenants = xcalloc(1, sizeof(*s->tenants));
    s->tenants->max_running = max_running;
    s->tenants->max_queued = max_queued;
    hmap_init(&s->tenants->own);
    sched_tenant_default(s->sched, max_running);
    return store_tenant_scan(s->reads, load_one, s, e);
}

int tenants_reload(struct server *s, struct err *e)
{
    int rc = store_tenant_scan(s->reads, load_one, s, e);
    if (!rc) fleet_wake(s->fleet); /* a higher limit may let its jobs go now */
    return rc;
}

void tenants_free(struct tenants *t)
{
    if (!t)
        return;
    hmap_release(&t->own, free);
    free(t);
}

int tenants_of_token(struct server *s, const char *name, char *out, size_t n, struct err *e)
{
    struct tenants *t = s->tenants;
    int64_t now = time_now_ms();
    for (int i = 0; i < TOKEN_CACHE_SIZE; i++) {
        struct token_tenant *c = &t->cache[i];
        if (c->expires_ms > now && !strcmp(c->name, name)) {
            snprintf(out, n, "%s", c->tenant);
            return 0;
        }
    }
    int rc = store_token_tenant(s->reads, name, out, n, e);
    if (rc)
        return rc;
    struct token_tenant *c = &t->cache[t->next++ % TOKEN_CACHE_SIZE];
    snprintf(c->name, sizeof(c->name), "%s", name);
    snprintf(c->tenant, sizeof(c->tenant), "%s", out);
    c->expires_ms = now + TENANT_CACHE_TTL_MS;
    return 0;
}

void tenants_forget_tokens(struct server *s)
{
    if (s->tenants)
        memset(s->tenants->cache, 0, sizeof(s->tenants->cache));
}

int tenants_max_queued(struct server *s, const char *tenant)
{
    const struct tenant_rec *own = hmap_get(&s->tenants->own, tenant);
    return own && own->max_queued >= 0 ? own->max_queued : s->tenants->max_queued;
}

static int max_running(struct server *s, const char *tenant)
{
    const struct tenant_rec *own = hmap_get(&s->tenants->own, tenant);
    return own && own->max_running >= 0 ? own->max_running : s->tenants->max_running;
}

/* ---- the routes ---- */

static json_t *limit_json(int v)
{
    return v > 0 ? json_integer(v) : json_null();
}

/* A tenant as the API shows it: its limits in force (null: none), and its jobs now. */
static json_t *tenant_json(struct server *s, const char *name, int64_t queued)
{
    const struct tenant_rec *own = hmap_get(&s->tenants->own, name);
    json_t *o = json_pack("{s:s, s:o, s:o, s:i, s:I}", "name", name, "max_running",
                          limit_json(max_running(s, name)), "max_queued",
                          limit_json(tenants_max_queued(s, name)), "weight",
                          own ? own->weight : 1, "running",
                          (json_int_t)sched_tenant_held(s->sched, name));
    if (queued >= 0)
        json_object_set_new(o, "queued", json_integer(queued));
    json_object_set_new(o, "own", json_pack("{s:o, s:o}", "max_running",
                                            own && own->max_running >= 0
                                                ? json_integer(own->max_running)
                                                : json_null(),
                                            "max_queued",
                                            own && own->max_queued >= 0
                                                ? json_integer(own->max_queued)
                                                : json_null()));
    return o;
}

int api_tenants_list(struct http_req *r)
{
    struct server *s = srv(r);
    json_t *arr = json_array();
    for (struct hmap_entry *it = hmap_first(&s->tenants->own); it;
         it = hmap_next(&s->tenants->own, it)) {
        const struct tenant_rec *t = it->value;
        int64_t queued = -1;
        struct err e = ERR_INIT;
        if (store_tenant_waiting(s->reads, t->name, &queued, &e)) {
            json_decref(arr);
            http_reply_err(r, &e);
            return HTTP_DONE;
        }
        json_array_append_new(arr, tenant_json(s, t->name, queued));
    }
    http_reply_json(r, 200,
                    json_pack("{s:o, s:{s:o, s:o}}", "tenants", arr, "defaults", "max_running",
                              limit_json(s->tenants->max_running), "max_queued",
                              limit_json(s->tenants->max_queued)));
    return HTTP_DONE;
}

struct tenant_op {
    struct http_req *r;
    struct tenant_rec t;
};

static int tenant_write(struct store *st, void *arg, struct err *e)
{
    struct tenant_op *op = arg;
    return store_tenant_put(st, &op->t, e);
}

static void tenant_done(void *arg, int rc, const struct err *e)
{
    struct tenant_op *op = arg;
    struct server *s = srv(op->r);
    if (!rc) {
        tenant_set(s, &op->t);
        fleet_wake(s->fleet); /* a higher limit may let its jobs go now */
    }
    if (op->r->gone)
        http_req_drop(op->r);
    else if (rc)
        http_reply_err(op->r, e);
    else
        http_reply_json(op->r, 200, tenant_json(s, op->t.name, -1));
    free(op);
}

/* A limit field: absent or null -> -1 (the server's), else 0..max. */
static int limit_field(struct http_req *r, const char *key, int max, int dflt, int *out)
{
    json_t *v = json_object_get(r->body, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < (dflt < 0 ? 0 : 1) ||
        json_integer_value(v) > max) {
        http_reply_error(r, ERR_INVALID, key, "%s must be an integer from %d to %d%s", key,
                         dflt < 0 ? 0 : 1, max,
                         dflt < 0 ? " (0: no limit), or null for the server's default" : "");
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

int api_tenants_put(struct http_req *r)
{
    const char *key;
    json_t *v;
    if (!tenants_name_valid(r->params[0])) {
        http_reply_error(r, ERR_INVALID, "name", "a tenant name must match [A-Za-z0-9._-]{1,64}");
        return HTTP_DONE;
    }
    if (!json_is_object(r->body)) {
        http_reply_error(r, ERR_INVALID, NULL,
                         "the body must be an object {\"max_running\", \"max_queued\", "
                         "\"weight\"}");
        return HTTP_DONE;
    }
    json_object_foreach(r->body, key, v)
    {
        if (strcmp(key, "max_running") && strcmp(key, "max_queued") && strcmp(key, "weight")) {
            http_reply_error(r, ERR_INVALID, key, "unknown field '%s'", key);
            return HTTP_DONE;
        }
    }
    struct tenant_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    memcpy(op->t.name, r->params[0], strlen(r->params[0]) + 1); /* valid: at most 64 bytes */
    if (limit_field(r, "max_running", TENANT_LIMIT_MAX, -1, &op->t.max_running) ||
        limit_field(r, "max_queued", TENANT_LIMIT_MAX, -1, &op->t.max_queued) ||
        limit_field(r, "weight", TENANT_WEIGHT_MAX, 1, &op->t.weight)) {
        free(op);
        return HTTP_DONE;
    }
    commit_submit(srv(r)->commit, tenant_write, tenant_done, op);
    return HTTP_DEFERRED;
}
