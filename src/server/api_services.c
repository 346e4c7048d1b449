/*
 * api_services.c - the service hub (docs/api.md "Services"): define, read and
 * retire services; and what jobs that name one need of it (services.h).
 *
 * Each PUT of a definition that differs from the latest makes a new version
 * (1, 2, ...); every version stays readable, and a job keeps the version it
 * was expanded from (its spec's service_version). A PUT of the latest
 * definition again makes none (PUT is idempotent). DELETE retires the
 * service: new jobs of it are refused, the jobs it already has are not
 * touched; a later PUT makes it current again. Writes go through the group
 * committer, so the answer means the change is durable.
 */
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/job.h"
#include "server/server.h"
#include "server/services.h"

static struct server *srv(struct http_req *r)
{
    return r->app;
}

/* A version as the API shows it. */
static json_t *service_json(const struct service_rec *s)
{
    json_t *def = job_json_load(s->definition);
    return json_pack("{s:s, s:i, s:o, s:o, s:o, s:o}", "name", s->name, "version", s->version,
                     "created_at", job_time_json(s->created_at), "created_by",
                     s->created_by ? json_string(s->created_by) : json_null(), "retired_at",
                     job_time_json(s->retired_at), "definition", def ? def : json_null());
}

static int check_name(struct http_req *r)
{
    if (service_name_valid(r->params[0])) return 0;
    http_reply_error(r, ERR_INVALID, "name",
                     "service name '%s' must match [a-z0-9][a-z0-9._-]{0,63}", r->params[0]);
    return ERR_INVALID;
}

/* ---- PUT /v1/services/{name} ---- */

struct service_put {
    struct http_req *r;
    json_t *def;  /* the normalised definition */
    int expect;   /* the body's "version", or 0 */
    bool existed; /* the latest version was this definition: nothing written */
    struct service_rec rec;
};

/* Writer thread. */
static int put_write(struct store *st, void *arg, struct err *e)
{
    struct service_put *p = arg;
    struct service_rec latest;
    struct err ge = ERR_INIT;
    int rc = store_service_get(st, p->rec.name, 0, &latest, &ge);
    if (rc && rc != ERR_NOTFOUND) return err_set(e, rc, "%s", ge.msg);
    bool found = rc == 0;
    json_t *old = found ? job_json_load(latest.definition) : NULL;
    bool same = found && !latest.retired_at && old && json_equal(old, p->def);
    int next = found ? latest.version + 1 : 1;
    json_decref(old);
    rc = 0;
    if (same && (!p->expect || p->expect == latest.version || p->expect == next)) {
        store_service_release(&p->rec);
        p->rec = latest; /* a repeat: the version there is the answer */
        p->existed = true;
        return 0;
    }
    if (p->expect && p->expect != next && found)
        rc = err_field(e, ERR_CONFLICT, "version",
                       "version %d: service '%s' is at version %d, so this definition would be "
                       "version %d",
                       p->expect, p->rec.name, latest.version, next);
    else if (p->expect && p->expect != next)
        rc = err_field(e, ERR_CONFLICT, "version",
                       "version %d: service '%s' has no version yet, so this definition would "
                       "be version 1",
                       p->expect, p->rec.name);
    if (found) store_service_release(&latest);
    if (!rc) rc = store_service_insert(st, &p->rec, e);
    return rc;
}

static void put_done(void *arg, int rc, const struct err *e)
{
    struct service_put *p = arg;
    if (p->r->gone)
        http_req_drop(p->r);
    else if (rc)
        http_reply_err(p->r, e);
    else
        http_reply_json(p->r, p->existed ? 200 : 201, service_json(&p->rec));
    json_decref(p->def);
    store_service_release(&p->rec);
    free(p);
}

int api_services_put(struct http_req *r)
{
    if (check_name(r)) return HTTP_DONE;
    if (!json_is_object(r->body)) {
        http_reply_error(r, ERR_INVALID, NULL, "the body must be a service definition (an object)");
        return HTTP_DONE;
    }
    json_t *body = json_copy(r->body), *ver = json_object_get(body, "version");
    int expect = 0;
    if (ver && !json_is_null(ver)) {
        if (!json_is_integer(ver) || json_integer_value(ver) < 1 ||
            json_integer_value(ver) > INT32_MAX) {
            json_decref(body);
            http_reply_error(r, ERR_INVALID, "version",
                             "version must be the version this definition is to become (an "
                             "integer from 1), or null");
            return HTTP_DONE;
        }
        expect = (int)json_integer_value(ver);
    }
    json_object_del(body, "version");
    json_t *def;
    struct err e = ERR_INIT;
    int rc = service_parse(body, r->params[0], &def, &e);
    json_decref(body);
    if (rc) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    struct service_put *p = xcalloc(1, sizeof(*p));
    p->r = r;
    p->def = def;
    p->expect = expect;
    p->rec.name = xstrdup(r->params[0]);
    p->rec.definition = json_dumps(def, JSON_COMPACT);
    p->rec.created_by = xstrdup(r->token_name);
    p->rec.created_at = time_now_ms();
    commit_submit(srv(r)->commit, put_write, put_done, p);
    return HTTP_DEFERRED;
}

/* ---- DELETE /v1/services/{name}: retire ---- */

struct service_retire {
    struct http_req *r;
    char name[SERVICE_NAME_MAX + 1];
    struct service_rec rec;
};

static int retire_write(struct store *st, void *arg, struct err *e)
{
    struct service_retire *t = arg;
    int rc = store_service_retire(st, t->name, time_now_ms(), e);
    return rc ? rc : store_service_get(st, t->name, 0, &t->rec, e);
}

static void retire_done(void *arg, int rc, const struct err *e)
{
    struct service_retire *t = arg;
    if (t->r->gone)
        http_req_drop(t->r);
    else if (rc)
        http_reply_err(t->r, e);
    else
        http_reply_json(t->r, 200, service_json(&t->rec));
    store_service_release(&t->rec);
    free(t);
}

int api_services_delete(struct http_req *r)
{
    if (check_name(r)) return HTTP_DONE;
    struct service_retire *t = xcalloc(1, sizeof(*t));
    t->r = r;
    memcpy(t->name, r->params[0], strlen(r->params[0]) + 1); /* valid: at most 64 bytes */
    commit_submit(srv(r)->commit, retire_write, retire_done, t);
    return HTTP_DEFERRED;
}

/* ---- reads ---- */

int api_services_list(struct http_req *r)
{
    struct service_rec *v;
    size_t n;
    struct err e = ERR_INIT;
    if (store_service_list(srv(r)->reads, &v, &n, &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, service_json(&v[i]));
        store_service_release(&v[i]);
    }
    free(v);
    http_reply_json(r, 200, json_pack("{s:o}", "services", arr));
    return HTTP_DONE;
}

static int reply_version(struct http_req *r, int version)
{
    struct service_rec s;
    struct err e = ERR_INIT;
    int rc = store_service_get(srv(r)->reads, r->params[0], version, &s, &e);
    if (rc == ERR_NOTFOUND && version) {
        struct service_rec latest;
        struct err le = ERR_INIT;
        int lrc = store_service_get(srv(r)->reads, r->params[0], 0, &latest, &le);
        err_clear(&e); /* a better message: which of the two is not there */
        if (!lrc) {
            err_field(&e, ERR_NOTFOUND, "version",
                      "service '%s' has no version %d (its latest "
                      "is %d)",
                      r->params[0], version, latest.version);
            store_service_release(&latest);
        } else {
            e = le;
        }
    }
    if (rc) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    http_reply_json(r, 200, service_json(&s));
    store_service_release(&s);
    return HTTP_DONE;
}

int api_services_get(struct http_req *r)
{
    if (check_name(r)) return HTTP_DONE;
    return reply_version(r, 0);
}

int api_services_get_version(struct http_req *r)
{
    if (check_name(r)) return HTTP_DONE;
    const char *v = r->params[1];
    char *end;
    long version = strtol(v, &end, 10);
    if (!*v || *end || version < 1 || version > INT32_MAX || v[0] == '+' || v[0] == '0') {
        http_reply_error(r, ERR_INVALID, "version", "version must be an integer from 1, not '%s'",
                         v);
        return HTTP_DONE;
    }
    return reply_version(r, (int)version);
}

/* ---- jobs of a service ---- */

/* The version a job gave: *v = 0 when none. */
static int job_version(json_t *job, const char *path, int *v, struct err *e)
{
    json_t *ver = json_object_get(job, "service_version");
    double x = json_number_value(ver);
    *v = 0;
    if (!ver || json_is_null(ver)) return 0;
    if (!json_is_number(ver) || x < 1 || x > INT32_MAX || x != (double)(int)x) {
        char field[48];
        snprintf(field, sizeof(field), "%s%sservice_version", path, *path ? "." : "");
        return err_field(e, ERR_INVALID, field,
                         "%s must be a version of the service (an integer "
                         "from 1), or null for its latest",
                         field);
    }
    *v = (int)x;
    return 0;
}

void services_memo_release(struct services_memo *m)
{
    store_service_release(&m->latest);
    store_service_release(&m->pinned);
    json_decref(m->def);
    memset(m, 0, sizeof(*m));
}

/* The latest version of `name` into m->latest (rc 0), or ERR_NOTFOUND; looked up once per name. */
static int memo_latest(struct store *reads, struct services_memo *m, const char *name,
                       struct err *e)
{
    if (m->name[0] && !strcmp(m->name, name)) return m->latest_rc;
    services_memo_release(m);
    snprintf(m->name, sizeof(m->name), "%s", name);
    struct err ge = ERR_INIT;
    m->latest_rc = store_service_get(reads, name, 0, &m->latest, &ge);
    if (m->latest_rc && m->latest_rc != ERR_NOTFOUND) {
        int rc = err_set(e, m->latest_rc, "%s", ge.msg);
        m->name[0] = '\0'; /* not kept: a store error */
        return rc;
    }
    return m->latest_rc;
}

/* The parsed definition of version rec (m->def, kept while the same version follows). */
static json_t *memo_def(struct services_memo *m, const struct service_rec *rec)
{
    if (m->def && m->def_version == rec->version) return m->def;
    json_decref(m->def);
    m->def = job_json_load(rec->definition);
    m->def_version = rec->version;
    return m->def;
}

static int expand(struct store *reads, struct services_memo *memo, json_t *job, const char *path,
                  const json_t *connected, json_t **out, json_t **ports,
                  struct service_use *use, struct err *e);

int services_expand_job(struct store *reads, struct services_memo *memo, json_t *job,
                        const char *path, json_t **out, struct service_use *use, struct err *e)
{
    return expand(reads, memo, job, path, NULL, out, NULL, use, e);
}

int services_expand_node(struct store *reads, struct services_memo *memo, json_t *job,
                         const char *path, const json_t *connected, json_t **out, json_t **ports,
                         struct service_use *use, struct err *e)
{
    *ports = NULL;
    return expand(reads, memo, job, path, connected, out, ports, use, e);
}

static int expand(struct store *reads, struct services_memo *memo, json_t *job, const char *path,
                  const json_t *connected, json_t **out, json_t **ports,
                  struct service_use *use, struct err *e)
{
    memset(use, 0, sizeof(*use));
    *out = NULL;
    path = path ? path : "";
    snprintf(use->path, sizeof(use->path), "%s", path);
    if (!json_is_object(job)) return 0; /* spec_parse says what is wrong */
    char field[48];
    const char *dot = *path ? "." : "";
    json_t *svc = json_object_get(job, "service"), *params = json_object_get(job, "params");
    bool has_params = params && !json_is_null(params);
    int version, rc = job_version(job, path, &version, e);
    if (rc) return rc;
    const char *name = json_string_value(svc);
    snprintf(field, sizeof(field), "%s%sservice", path, dot);
    if (!name || !service_name_valid(name)) {
        if (!version && !has_params)
            return 0; /* a program of that name, or spec_parse refuses the service */
        if (!name)
            return err_field(e, ERR_INVALID, field,
                             "%s is required with %s: the service of the "
                             "hub they are for",
                             field, has_params ? "params" : "service_version");
        return err_field(e, ERR_INVALID, field,
                         "%s '%s' is not defined in the hub (service "
                         "names match [a-z0-9][a-z0-9._-]{0,63})",
                         field, name);
    }
    rc = memo_latest(reads, memo, name, e);
    if (rc == ERR_NOTFOUND) {
        if (!version && !has_params) { /* as before the hub: a program of that name */
            snprintf(use->name, sizeof(use->name), "%s", name);
            return 0;
        }
        return err_field(e, ERR_INVALID, field,
                         "%s '%s' is not defined in the hub (PUT "
                         "/v1/services/%s): %s needs its definition",
                         field, name, name, has_params ? "params" : "service_version");
    }
    if (rc) return rc;
    const struct service_rec *latest = &memo->latest, *rec = latest;
    if (latest->retired_at) {
        char at[32];
        time_format_rfc3339(latest->retired_at, at, sizeof(at));
        return err_field(e, ERR_INVALID, field,
                         "%s '%s' is retired (since %s): it takes no new "
                         "jobs",
                         field, name, at);
    }
    if (version && version != latest->version) {
        if (memo->pinned.version != version) {
            struct err ge = ERR_INIT;
            store_service_release(&memo->pinned);
            rc = store_service_get(reads, name, version, &memo->pinned, &ge);
            if (rc == ERR_NOTFOUND) {
                snprintf(field, sizeof(field), "%s%sservice_version", path, dot);
                return err_field(e, ERR_INVALID, field,
                                 "%s: service '%s' has no version %d "
                                 "(its latest is %d)",
                                 field, name, version, latest->version);
            }
            if (rc) return err_set(e, rc, "%s", ge.msg);
        }
        rec = &memo->pinned;
    }
    json_t *def = memo_def(memo, rec);
    if (!def)
        return err_set(e, ERR_INTERNAL,
                       "service '%s' version %d: its stored definition is not "
                       "JSON",
                       name, rec->version);
    json_t *mine = NULL; /* the job with its connected inputs' stand-ins */
    const char *port;
    json_t *v;
    json_object_foreach((json_t *)connected, port, v)
    {
        const char *type = service_port_type(def, port);
        if (!type || strcmp(type, "input") || json_object_get(params, port) ||
            (has_params && !json_is_object(params)))
            continue; /* a bad params: service_expand says so */
        if (!mine) {
            mine = json_deep_copy(job);
            if (!has_params) json_object_set_new(mine, "params", json_object());
        }
        json_object_set(json_object_get(mine, "params"), port, v);
    }
    rc = service_expand(def, name, rec->version, mine ? mine : job, path, out, e);
    json_decref(mine);
    if (!rc && ports) *ports = service_ports(def, json_object_get(*out, "params"));
    snprintf(use->name, sizeof(use->name), "%s", name);
    use->version = rec->version;
    use->pinned = version != 0;
    return rc;
}

int services_recheck(struct store *st, const struct service_use *use, struct err *e)
{
    struct service_rec latest;
    struct err ge = ERR_INIT;
    char field[48];
    snprintf(field, sizeof(field), "%s%sservice", use->path, *use->path ? "." : "");
    int rc = store_service_get(st, use->name, 0, &latest, &ge);
    if (rc == ERR_NOTFOUND && !use->version) return 0;
    if (rc == ERR_NOTFOUND) /* versions are never deleted */
        return err_set(e, ERR_INTERNAL, "service '%s' vanished from the store", use->name);
    if (rc) return err_set(e, rc, "%s", ge.msg);
    if (!use->version)
        rc = err_field(e, ERR_CONFLICT, field,
                       "%s '%s' was defined in the hub while this job "
                       "was submitted: submit it again",
                       field, use->name);
    else if (latest.retired_at)
        rc = err_field(e, ERR_INVALID, field, "%s '%s' is retired: it takes no new jobs", field,
                       use->name);
    else if (!use->pinned && latest.version != use->version)
        rc = err_field(e, ERR_CONFLICT, field,
                       "%s '%s' changed to version %d while this job "
                       "was submitted from version %d: submit it again",
                       field, use->name, latest.version, use->version);
    store_service_release(&latest);
    return rc;
}
