/*
 * session.c - the dashboard's sessions (session.h) and their calls:
 * POST /v1/session (sign in with a token), GET /v1/session (who am I, and
 * the CSRF token), DELETE /v1/session (sign out).
 */
#include "server/session.h"

#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/role.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "server/commit.h"
#include "server/server.h"

static void random_hex(char *out)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1) die("cannot read random bytes for a session");
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = digits[raw[i] >> 4];
        out[2 * i + 1] = digits[raw[i] & 15];
    }
    out[64] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
}

bool session_cookie_get(const char *header, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    const char *p = header;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && !strncmp(p, name, nl) && p[nl] == '=') {
            size_t vl = len - nl - 1;
            while (vl && (p[nl + 1 + vl - 1] == ' ' || p[nl + 1 + vl - 1] == '\t'))
                vl--;
            if (!vl || vl >= n) return false;
            memcpy(out, p + nl + 1, vl);
            out[vl] = '\0';
            return true;
        }
        p = end;
    }
    return false;
}

int session_check_origin(const char *origin, const char *sec_fetch_site, const char *host,
                         struct err *e)
{
    if (sec_fetch_site && strcmp(sec_fetch_site, "same-origin") != 0)
        return err_set(e, ERR_DENIED,
                       "cross-site request refused: Sec-Fetch-Site is '%.32s', not same-origin",
                       sec_fetch_site);
    if (origin) {
        const char *rest = !strncasecmp(origin, "http://", 7)    ? origin + 7
                           : !strncasecmp(origin, "https://", 8) ? origin + 8
                                                                 : NULL;
        if (!rest || !host || strcasecmp(rest, host) != 0)
            return err_set(e, ERR_DENIED,
                           "cross-site request refused: Origin '%.128s' is not this server's",
                           origin);
    }
    return 0;
}

static struct server *srv_of(struct http_req *r)
{
    return r->app;
}

/* The origin and CSRF checks of a state-changing call made with session s. */
static int check_csrf(const struct http_headers *h, const struct session_rec *s, struct err *e)
{
    int rc = session_check_origin(http_header(h, "Origin"), http_header(h, "Sec-Fetch-Site"),
                                  http_header(h, "Host"), e);
    if (rc) return rc;
    const char *csrf = http_header(h, SESSION_CSRF_HEADER);
    if (!csrf || strlen(csrf) != strlen(s->csrf) ||
        CRYPTO_memcmp(csrf, s->csrf, strlen(s->csrf)) != 0)
        return err_set(e, ERR_DENIED,
                       "cross-site request refused: the " SESSION_CSRF_HEADER
                       " header is missing or wrong (GET /v1/session gives it)");
    return 0;
}

/* The session of the request's cookie into *out: 0, ERR_NOTFOUND (no cookie), ERR_UNAUTH. */
static int find_session(struct server *srv, const struct http_headers *h, struct session_rec *out,
                        struct err *e)
{
    const char *cookie = http_header(h, "Cookie");
    char id[SESSION_ID_LEN], hash[AUTH_HASH_LEN];
    if (!cookie || !session_cookie_get(cookie, SESSION_COOKIE, id, sizeof(id))) return ERR_NOTFOUND;
    auth_token_hash(id, hash);
    OPENSSL_cleanse(id, sizeof(id));
    struct err fe = ERR_INIT;
    int rc = store_session_find(srv->reads, hash, time_now_ms(), out, &fe);
    if (rc == ERR_NOTFOUND)
        return err_set(e, ERR_UNAUTH, "the session has expired or was signed out: sign in again");
    if (rc) {
        *e = fe;
        return rc;
    }
    /* The token may have been revoked since the sign-in (by another server, too). */
    int role;
    char name[128];
    rc = auth_check_hash(srv, out->token_hash, &role, name, sizeof(name), &fe);
    if (rc == ERR_UNAUTH)
        return err_set(e, ERR_UNAUTH, "the session's token was revoked: sign in again");
    if (rc) *e = fe;
    return rc;
}

int session_auth(void *app, const struct http_headers *h, const char *method, int *role, char *name,
                 size_t n, struct err *e)
{
    struct session_rec s;
    int rc = find_session(app, h, &s, e);
    if (rc) return rc;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && (rc = check_csrf(h, &s, e)))
        return rc;
    *role = s.role;
    snprintf(name, n, "%s", s.name);
    return 0;
}

/* The session cookie; Secure when the server speaks HTTPS (--tls-cert), so that it never goes
   out in clear text. */
static void set_cookie(struct http_req *r, const char *id, int max_age_s)
{
    char v[256];
    snprintf(v, sizeof(v), SESSION_COOKIE "=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Strict%s",
             id, max_age_s, srv_of(r)->tls ? "; Secure" : "");
    evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Set-Cookie", v);
    evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Cache-Control", "no-store");
}

/* Whether a token of `role` may call method pattern, by the route table. */
static bool may_call(int role, const char *method, const char *pattern)
{
    for (size_t i = 0; i < server_nroutes; i++)
        if (!strcmp(server_routes[i].method, method) && !strcmp(server_routes[i].pattern, pattern))
            return (server_routes[i].roles & (unsigned)role) != 0;
    return false;
}

static json_t *session_json(const struct session_rec *s)
{
    char at[64];
    time_format_rfc3339(s->expires_ms, at, sizeof(at));
    return json_pack("{s:s, s:s, s:s, s:s, s:{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, "
                     "s:b}}",
                     "name",
                     s->name, "role", role_name(s->role), "csrf", s->csrf, "expires_at", at, "can",
                     "cancel", may_call(s->role, "POST", "/v1/jobs/{id}/cancel"), "retry",
                     may_call(s->role, "POST", "/v1/jobs/{id}/retry"), "drain",
                     may_call(s->role, "POST", "/v1/agents/{id}/drain"), "presign",
                     may_call(s->role, "POST", "/v1/presign"), "workflow_cancel",
                     may_call(s->role, "POST", "/v1/workflows/{id}/cancel"), "workflow_retry",
                     may_call(s->role, "POST", "/v1/workflows/{id}/retry"), "array_cancel",
                     may_call(s->role, "POST", "/v1/arrays/{id}/cancel"), "array_retry",
                     may_call(s->role, "POST", "/v1/arrays/{id}/retry"), "queue_pause",
                     may_call(s->role, "POST", "/v1/queues/{name}/pause"), "trigger_delete",
                     may_call(s->role, "DELETE", "/v1/triggers/{id}"), "tokens",
                     may_call(s->role, "GET", "/v1/tokens"));
}

/* A sign-in or sign-out on its way through the committer. */
struct session_op {
    struct http_req *r;
    struct session_rec rec;
    char id[SESSION_ID_LEN]; /* the cookie's value; "" for a sign-out */
};

static int session_insert_write(struct store *st, void *arg, struct err *e)
{
    struct session_op *op = arg;
    return store_session_insert(st, &op->rec, time_now_ms(), SESSIONS_PER_TOKEN, SESSIONS_MAX, e);
}

static int session_delete_write(struct store *st, void *arg, struct err *e)
{
    struct session_op *op = arg;
    return store_session_delete(st, op->rec.id_hash, e);
}

static void session_done(void *arg, int rc, const struct err *e)
{
    struct session_op *op = arg;
    if (op->r->gone) {
        http_req_drop(op->r);
    } else if (rc) {
        http_reply_err(op->r, e);
    } else if (op->id[0]) {
        set_cookie(op->r, op->id, SESSION_TTL_S);
        http_reply_json(op->r, 201, session_json(&op->rec));
    } else {
        set_cookie(op->r, "", 0);
        http_reply_json(op->r, 200, json_pack("{s:b}", "signed_out", 1));
    }
    OPENSSL_cleanse(op, sizeof(*op));
    free(op);
}

int api_session_create(struct http_req *r)
{
    struct server *srv = srv_of(r);
    struct err e = ERR_INIT;
    const char *key;
    json_t *v, *tok = NULL;
    if (!json_is_object(r->body)) {
        http_reply_error(r, ERR_INVALID, NULL, "the body must be a JSON object {\"token\": ...}");
        return HTTP_DONE;
    }
    json_object_foreach(r->body, key, v)
    {
        if (strcmp(key, "token") != 0) {
            http_reply_error(r, ERR_INVALID, key, "unknown field '%.64s'", key);
            return HTTP_DONE;
        }
        tok = v;
    }
    if (!json_is_string(tok) || !json_string_length(tok)) {
        http_reply_error(r, ERR_INVALID, "token", "token must be a non-empty string");
        return HTTP_DONE;
    }
    /* A sign-in made by another site's page would sign the browser in as someone else. */
    struct http_headers h = http_req_headers(r);
    if (session_check_origin(http_header(&h, "Origin"), http_header(&h, "Sec-Fetch-Site"),
                             http_header(&h, "Host"), &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    int role;
    char name[128];
    if (auth_check(srv, json_string_value(tok), &role, name, sizeof(name), &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    if (role == ROLE_AGENT) {
        http_reply_error(r, ERR_DENIED, "token",
                         "an agent token cannot sign in to the dashboard: use a client or admin "
                         "token");
        return HTTP_DONE;
    }
    struct session_op *op = xcalloc(1, sizeof(*op));
    op->r = r;
    random_hex(op->id);
    auth_token_hash(op->id, op->rec.id_hash);
    auth_token_hash(json_string_value(tok), op->rec.token_hash);
    random_hex(op->rec.csrf);
    op->rec.role = role;
    snprintf(op->rec.name, sizeof(op->rec.name), "%s", name);
    op->rec.expires_ms = time_now_ms() + (int64_t)SESSION_TTL_S * 1000;
    commit_submit(srv->commit, session_insert_write, session_done, op);
    return HTTP_DEFERRED;
}

int api_session_get(struct http_req *r)
{
    struct err e = ERR_INIT;
    struct session_rec s;
    struct http_headers h = http_req_headers(r);
    int rc = find_session(srv_of(r), &h, &s, &e);
    if (rc == ERR_NOTFOUND)
        rc = err_set(&e, ERR_UNAUTH, "not signed in: POST /v1/session {\"token\": ...}");
    if (rc) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Cache-Control", "no-store");
    http_reply_json(r, 200, session_json(&s));
    return HTTP_DONE;
}

int api_session_delete(struct http_req *r)
{
    struct server *srv = srv_of(r);
    struct err e = ERR_INIT;
    struct session_op *op = xcalloc(1, sizeof(*op));
    struct http_headers h = http_req_headers(r);
    int rc = find_session(srv, &h, &op->rec, &e);
    if (rc == ERR_NOTFOUND) rc = err_set(&e, ERR_UNAUTH, "not signed in");
    if (!rc) rc = check_csrf(&h, &op->rec, &e);
    if (rc) {
        free(op);
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    op->r = r;
    commit_submit(srv->commit, session_delete_write, session_done, op);
    return HTTP_DEFERRED;
}
