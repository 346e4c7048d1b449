/*
 * aclient.c - see aclient.h. libcurl's multi interface on a libevent loop,
 * after curl's hiperfifo example: curl tells us which sockets to watch
 * (on_socket) and when to wake it up (on_timer); libevent tells curl which
 * socket is ready (on_event) or that the time came (on_timeout); completed
 * transfers are collected by check_done and handed to their callbacks.
 *
 * Invariants: every open request is on c->reqs and in the multi handle;
 * curl_multi_socket_action is never called from inside a curl callback
 * (on_timer only arms a libevent timer); a request is unlinked and removed
 * from the multi handle before its callback runs, so the callback may start
 * or cancel any request.
 */
#include "http/aclient.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

struct aclient {
    struct event_base *base;
    const struct http_client *cfg;
    CURLM *multi;
    struct event *timer;
    struct aclient_req *reqs; /* open requests, a doubly linked list */
    size_t nreqs;
};

struct aclient_req {
    struct aclient *c;
    CURL *easy;
    struct http_call call;
    aclient_cb cb;
    aclient_easy_cb easy_cb; /* a raw transfer (aclient_easy): no http_call */
    void *arg;
    struct aclient_req *prev, *next;
};

/* What we keep per socket curl asked us to watch (curl_multi_assign). */
struct sock {
    struct aclient *c;
    struct event *ev;
};

static void check_done(struct aclient *c);

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    struct sock *s = arg;
    struct aclient *c = s->c; /* s may be freed by on_socket during the action */
    int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    check_done(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct aclient *c = arg;
    int running;
    (void)fd, (void)what;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct aclient *c = userp;
    struct sock *s = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            event_free(s->ev);
            free(s);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    short kind = (short)((what & CURL_POLL_IN ? EV_READ : 0) |
                         (what & CURL_POLL_OUT ? EV_WRITE : 0) | EV_PERSIST);
    if (!s) {
        s = xcalloc(1, sizeof(*s));
        s->c = c;
        s->ev = event_new(c->base, fd, kind, on_event, s);
        if (!s->ev) die("out of memory");
        curl_multi_assign(c->multi, fd, s);
    } else {
        event_del(s->ev);
        event_assign(s->ev, c->base, fd, kind, on_event, s);
    }
    event_add(s->ev, NULL);
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct aclient *c = userp;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
    } else {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(c->timer, &tv);
    }
    return 0;
}

struct aclient *aclient_new(struct event_base *base, const struct http_client *cfg)
{
    struct aclient *c = xcalloc(1, sizeof(*c));
    c->base = base;
    c->cfg = cfg;
    c->multi = curl_multi_init();
    c->timer = evtimer_new(base, on_timeout, c);
    if (!c->multi || !c->timer) die("cannot initialise libcurl's multi interface");
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return c;
}

static void unlink_req(struct aclient_req *r)
{
    struct aclient *c = r->c;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
    c->nreqs--;
    curl_multi_remove_handle(c->multi, r->easy);
}

static void free_req(struct aclient_req *r)
{
    http_call_release(&r->call);
    curl_easy_cleanup(r->easy);
    free(r);
}

void aclient_cancel(struct aclient_req *r)
{
    if (!r) return;
    unlink_req(r);
    free_req(r);
}

void aclient_free(struct aclient *c)
{
    if (!c) return;
    while (c->reqs)
        aclient_cancel(c->reqs);
    /* Closing the cached connections calls on_socket(REMOVE), which frees our socket records. */
    curl_multi_cleanup(c->multi);
    event_free(c->timer);
    free(c);
}

size_t aclient_pending(const struct aclient *c)
{
    return c->nreqs;
}

/* Puts a request added to the multi handle in the client's list. */
static void track(struct aclient *c, struct aclient_req *r, struct aclient_req **out)
{
    r->next = c->reqs;
    if (c->reqs) c->reqs->prev = r;
    c->reqs = r;
    c->nreqs++;
    if (out) *out = r;
}

int aclient_request(struct aclient *c, const char *method, const char *path, json_t *body,
                    long timeout_ms, aclient_cb cb, void *arg, struct aclient_req **out)
{
    struct aclient_req *r = xcalloc(1, sizeof(*r));
    struct err e = ERR_INIT;
    r->c = c;
    r->cb = cb;
    r->arg = arg;
    r->easy = curl_easy_init();
    if (!r->easy) die("cannot initialise libcurl");
    int rc = http_call_setup(&r->call, c->cfg, r->easy, method, path, body, &e);
    if (rc == 0 &&
        (curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r) != CURLE_OK ||
         (timeout_ms > 0 && curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK)))
        rc = ERR_INTERNAL;
    if (rc == 0 && curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) rc = ERR_INTERNAL;
    if (rc) {
        free_req(r);
        return rc;
    }
    track(c, r, out);
    return 0;
}

int aclient_easy(struct aclient *c, CURL *easy, aclient_easy_cb cb, void *arg,
                 struct aclient_req **out)
{
    struct aclient_req *r = xcalloc(1, sizeof(*r));
    r->c = c;
    r->easy = easy;
    r->easy_cb = cb;
    r->arg = arg;
    if (curl_easy_setopt(easy, CURLOPT_PRIVATE, r) != CURLE_OK ||
        curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
        free_req(r);
        return ERR_INTERNAL;
    }
    track(c, r, out);
    return 0;
}

static void check_done(struct aclient *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        struct aclient_req *r = NULL;
        CURLcode result = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (!r) continue;
        unlink_req(r); /* msg is invalid from here on */
        if (r->easy_cb) {
            r->easy_cb(r->arg, result, r->easy);
            free_req(r);
            continue;
        }
        struct err e = ERR_INIT;
        long status = 0;
        json_t *resp = NULL;
        int rc = http_call_finish(&r->call, c->cfg, result, &status, &resp, &e);
        r->cb(r->arg, rc, status, resp, &e);
        json_decref(resp);
        free_req(r);
    }
}
