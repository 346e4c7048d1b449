/*
 * session.h - the dashboard's sign-in: a bearer token exchanged for a
 * server-side session named by an HttpOnly, SameSite=Strict cookie.
 *
 * A session is a random id (32 bytes, hex) with the token it was made from
 * (checked again on every call, so a revoked token ends its sessions), its
 * role and name, a CSRF token (32 random bytes, hex) and an expiry. It is
 * kept in the store (store_session_insert), named by the SHA-256 of the id,
 * so that a lookup compares no secret, every server sharing the store knows
 * it, and a restart signs no one out. Event loop thread only.
 *
 * A call authenticated by the cookie that may change something (any method
 * but GET and HEAD) must also be same-origin (Sec-Fetch-Site and Origin,
 * when the browser sends them, name this server) and carry the session's
 * CSRF token in the X-CSRF-Token header; otherwise 403.
 */
#ifndef DROVER_SERVER_SESSION_H
#define DROVER_SERVER_SESSION_H

#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "http/headers.h"

#define SESSION_COOKIE "drover_session"
#define SESSION_CSRF_HEADER "X-CSRF-Token"
#define SESSION_TTL_S (12 * 3600) /* a session lasts this long from its sign-in */
#define SESSIONS_MAX 10000        /* sessions at a time; a sign-in beyond is 503 */
#define SESSIONS_PER_TOKEN 64     /* a token's sign-in beyond this ends its oldest session */
#define SESSION_ID_LEN 65         /* 64 hex digits and '\0'; the CSRF token's too */

/*
 * The value of cookie `name` in a Cookie header ("a=1; b=2") into out (n
 * bytes): true when present, non-empty and shorter than n.
 */
bool session_cookie_get(const char *header, const char *name, char *out, size_t n);

/*
 * Whether a request that may change something comes from this server's own
 * pages: sec_fetch_site (Sec-Fetch-Site, or NULL) must be "same-origin", and
 * origin (Origin, or NULL) must be http:// or https:// followed by host (the
 * Host header). 0, or ERR_DENIED naming what is wrong. A request with
 * neither header (not a browser's) passes: the CSRF token still guards it.
 */
int session_check_origin(const char *origin, const char *sec_fetch_site, const char *host,
                         struct err *e);

/*
 * The router's cookie credential (http_cookie_auth_fn, app being the
 * struct server): the session of the drover_session cookie, its token
 * checked again, and for methods other than GET and HEAD the origin and the
 * X-CSRF-Token header. ERR_NOTFOUND when the request has no such cookie.
 */
int session_auth(void *app, const struct http_headers *h, const char *method, int *role, char *name,
                 size_t n, struct err *e);

#endif
