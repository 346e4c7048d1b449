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

#include "common/hmap.h"
#include "common/role.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "server/server.h"

struct sessions {
    struct hmap by_hash; /* SHA-256 of the id (hex) -> struct session */
};

static void session_free(void *p)
{
    struct session *s = p;
    if (!s) return;
    OPENSSL_cleanse(s->token, strlen(s->token));
    free(s->token);
    free(s);
}

struct sessions *sessions_new(void)
{
    struct sessions *ss = xcalloc(1, sizeof(*ss));
    hmap_init(&ss->by_hash);
    return ss;
}

void sessions_free(struct sessions *ss)
{
    if (!ss) return;
    hmap_release(&ss->by_hash, session_free);
    free(ss);
}

size_t sessions_count(const struct sessions *ss)
{
    return ss->by_hash.count;
}

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
}

/*
 * Forgets the expired sessions and, when `name` already has SESSIONS_PER_TOKEN,
 * its oldest ones, so that one token signing in again and again cannot fill
 * the table for everyone.
 */
static void forget_old(struct sessions *ss, const char *name, int64_t now_ms)
{
    /* Collected first: the map may not change while it is walked. */
    char **dead = NULL;
    size_t n = 0, cap = 0, mine = 0;
    const char *oldest = NULL;
    int64_t oldest_ms = INT64_MAX;
    for (struct hmap_entry *it = hmap_first(&ss->by_hash); it; it = hmap_next(&ss->by_hash, it)) {
        const struct session *s = it->value;
        if (s->expires_ms <= now_ms) {
            if (n == cap) dead = xrealloc(dead, (cap = cap ? 2 * cap : 16) * sizeof(*dead));
            dead[n++] = xstrdup(it->key);
        } else if (!strcmp(s->name, name)) {
            mine++;
            if (s->expires_ms < oldest_ms) oldest_ms = s->expires_ms, oldest = it->key;
        }
    }
    if (mine >= SESSIONS_PER_TOKEN && oldest) {
        char *key = xstrdup(oldest); /* the map frees its own copy */
        session_free(hmap_del(&ss->by_hash, key));
        free(key);
    }
    for (size_t i = 0; i < n; i++) {
        session_free(hmap_del(&ss->by_hash, dead[i]));
        free(dead[i]);
    }
    free(dead);
}

const struct session *sessions_create(struct sessions *ss, const char *token, int role,
                                      const char *name, int64_t now_ms, char *id, struct err *e)
{
    forget_old(ss, name, now_ms);
    if (ss->by_hash.count >= SESSIONS_MAX) {
        err_set(e, ERR_UNAVAILABLE, "too many sessions (%d): try again later", SESSIONS_MAX);
        return NULL;
    }
    struct session *s = xcalloc(1, sizeof(*s));
    char hash[AUTH_HASH_LEN];
    random_hex(id);
    random_hex(s->csrf);
    s->token = xstrdup(token);
    s->role = role;
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->expires_ms = now_ms + (int64_t)SESSION_TTL_S * 1000;
    auth_token_hash(id, hash);
    session_free(hmap_put(&ss->by_hash, hash, s));
    return s;
}

const struct session *sessions_find(struct sessions *ss, const char *id, int64_t now_ms)
{
    char hash[AUTH_HASH_LEN];
    auth_token_hash(id, hash);
    struct session *s = hmap_get(&ss->by_hash, hash);
    if (s && s->expires_ms <= now_ms) {
        session_free(hmap_del(&ss->by_hash, hash));
        return NULL;
    }
    return s;
}

void sessions_delete(struct sessions *ss, const char *id)
{
    char hash[AUTH_HASH_LEN];
    auth_token_hash(id, hash);
    session_free(hmap_del(&ss->by_hash, hash));
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

static const char *in_header(struct evhttp_request *ev, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(ev), name);
}

/* The origin and CSRF checks of a state-changing call made with session s. */
static int check_csrf(struct evhttp_request *ev, const struct session *s, struct err *e)
{
    int rc = session_check_origin(in_header(ev, "Origin"), in_header(ev, "Sec-Fetch-Site"),
                                  in_header(ev, "Host"), e);
    if (rc) return rc;
    const char *csrf = in_header(ev, SESSION_CSRF_HEADER);
    if (!csrf || strlen(csrf) != strlen(s->csrf) ||
        CRYPTO_memcmp(csrf, s->csrf, strlen(s->csrf)) != 0)
        return err_set(e, ERR_DENIED,
                       "cross-site request refused: the " SESSION_CSRF_HEADER
                       " header is missing or wrong (GET /v1/session gives it)");
    return 0;
}

/* The session of the request's cookie: 0, ERR_NOTFOUND (no cookie), ERR_UNAUTH. */
static int find_session(struct server *srv, struct evhttp_request *ev, char *id,
                        const struct session **out, struct err *e)
{
    const char *cookie = in_header(ev, "Cookie");
    if (!cookie || !session_cookie_get(cookie, SESSION_COOKIE, id, SESSION_ID_LEN))
        return ERR_NOTFOUND;
    const struct session *s = sessions_find(srv->sessions, id, time_now_ms());
    if (!s)
        return err_set(e, ERR_UNAUTH, "the session has expired or was signed out: sign in again");
    /* The token may have been revoked since the sign-in. */
    int role;
    char name[128];
    struct err ae = ERR_INIT;
    int rc = auth_check(srv, s->token, &role, name, sizeof(name), &ae);
    if (rc == ERR_UNAUTH) {
        sessions_delete(srv->sessions, id);
        return err_set(e, ERR_UNAUTH, "the session's token was revoked: sign in again");
    }
    if (rc) {
        *e = ae;
        return rc;
    }
    *out = s;
    return 0;
}

int session_auth(void *app, struct evhttp_request *ev, const char *method, int *role, char *name,
                 size_t n, struct err *e)
{
    struct server *srv = app;
    char id[SESSION_ID_LEN];
    const struct session *s = NULL;
    int rc = find_session(srv, ev, id, &s, e);
    if (rc) return rc;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && (rc = check_csrf(ev, s, e)))
        return rc;
    *role = s->role;
    snprintf(name, n, "%s", s->name);
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

static json_t *session_json(const struct session *s)
{
    char at[64];
    time_format_rfc3339(s->expires_ms, at, sizeof(at));
    return json_pack("{s:s, s:s, s:s, s:s, s:{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b}}", "name",
                     s->name, "role", role_name(s->role), "csrf", s->csrf, "expires_at", at, "can",
                     "cancel", may_call(s->role, "POST", "/v1/jobs/{id}/cancel"), "retry",
                     may_call(s->role, "POST", "/v1/jobs/{id}/retry"), "drain",
                     may_call(s->role, "POST", "/v1/agents/{id}/drain"), "presign",
                     may_call(s->role, "POST", "/v1/presign"), "workflow_cancel",
                     may_call(s->role, "POST", "/v1/workflows/{id}/cancel"), "workflow_retry",
                     may_call(s->role, "POST", "/v1/workflows/{id}/retry"), "array_cancel",
                     may_call(s->role, "POST", "/v1/arrays/{id}/cancel"), "array_retry",
                     may_call(s->role, "POST", "/v1/arrays/{id}/retry"));
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
    if (session_check_origin(in_header(r->ev, "Origin"), in_header(r->ev, "Sec-Fetch-Site"),
                             in_header(r->ev, "Host"), &e)) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    int role;
    char name[128], id[SESSION_ID_LEN];
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
    const struct session *s =
        sessions_create(srv->sessions, json_string_value(tok), role, name, time_now_ms(), id, &e);
    if (!s) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    set_cookie(r, id, SESSION_TTL_S);
    http_reply_json(r, 201, session_json(s));
    return HTTP_DONE;
}

int api_session_get(struct http_req *r)
{
    struct err e = ERR_INIT;
    char id[SESSION_ID_LEN];
    const struct session *s = NULL;
    int rc = find_session(srv_of(r), r->ev, id, &s, &e);
    if (rc == ERR_NOTFOUND)
        rc = err_set(&e, ERR_UNAUTH, "not signed in: POST /v1/session {\"token\": ...}");
    if (rc) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Cache-Control", "no-store");
    http_reply_json(r, 200, session_json(s));
    return HTTP_DONE;
}

int api_session_delete(struct http_req *r)
{
    struct server *srv = srv_of(r);
    struct err e = ERR_INIT;
    char id[SESSION_ID_LEN];
    const struct session *s = NULL;
    int rc = find_session(srv, r->ev, id, &s, &e);
    if (rc == ERR_NOTFOUND) rc = err_set(&e, ERR_UNAUTH, "not signed in");
    if (!rc) rc = check_csrf(r->ev, s, &e);
    if (rc) {
        http_reply_err(r, &e);
        return HTTP_DONE;
    }
    sessions_delete(srv->sessions, id);
    set_cookie(r, "", 0);
    http_reply_json(r, 200, json_pack("{s:b}", "signed_out", 1));
    return HTTP_DONE;
}
