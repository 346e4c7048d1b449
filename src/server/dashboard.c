/*
 * dashboard.c - GET / and GET /ui/{file}: the dashboard's pages, served from
 * the copies built into the binary (web_assets.h).
 *
 * Every page goes out with a Content-Security-Policy that allows scripts,
 * styles and connections from this server only (no inline script or style,
 * no eval), so that data shown on a page can never run as code even if a
 * page made a mistake; and with nosniff, no framing and no referrer leaving
 * the site.
 */
#include <string.h>

#include "server/server.h"
#include "server/web_assets.h"

#define DASHBOARD_CSP                                                                              \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "              \
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "                   \
    "frame-ancestors 'none'"

static const char *content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(dot, types[i].ext)) return types[i].type;
    return "application/octet-stream";
}

static const struct web_asset *find_asset(const char *name)
{
    for (size_t i = 0; i < web_nassets; i++)
        if (!strcmp(web_assets[i].name, name)) return &web_assets[i];
    return NULL;
}

static int send_asset(struct http_req *r, const char *name)
{
    const struct web_asset *a = find_asset(name);
    if (!a) {
        http_reply_error(r, ERR_NOTFOUND, NULL, "no such dashboard file: '%.128s'", name);
        return HTTP_DONE;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    evhttp_add_header(h, "Content-Security-Policy", DASHBOARD_CSP);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "same-origin");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    http_reply_bytes(r, 200, content_type(a->name), a->data, a->len);
    return HTTP_DONE;
}

int api_dashboard_page(struct http_req *r)
{
    return send_asset(r, "index.html");
}

int api_dashboard_file(struct http_req *r)
{
    return send_asset(r, r->tail ? r->tail : "");
}
