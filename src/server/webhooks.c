/*
 * webhooks.c - see webhooks.h.
 *
 * The thread and the loop meet at one mutex: the thread reads due deliveries
 * (its own store handle: WAL lets it read beside the writer), POSTs them
 * through one curl multi handle and puts the outcomes in `outcomes`; an
 * eventfd wakes the loop, which queues one write for the committer. Until
 * that write is committed (`applying`) the thread reads nothing, so it never
 * sends a delivery whose last outcome is not yet stored.
 */
#include "server/webhooks.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/netmask.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/array.h"
#include "job/job.h"
#include "server/events.h"
#include "server/server.h"

#define IDLE_POLL_MS 1000 /* with nothing due, look again this often (retries become due) */
#define ERROR_MAX 200

struct delivery {
    int64_t id;
    char *url;
    int tries; /* made before this one */
    int64_t created_at;
    json_t *draft; /* the body until its job is described (describe_jobs) */
    char job[UUID_STR_LEN]; /* a job event's job, else "" */
    char *body;
    char event[16];
    /* the outcome */
    bool ok;
    bool refused; /* an address it resolved to was not allowed: `error` says which */
    char error[ERROR_MAX];
    const struct webhooks *w;
    CURL *easy;
    struct curl_slist *headers;
    struct delivery *next;
};

struct webhooks {
    struct server *s;
    struct store *st; /* the thread's */
    unsigned char secret[64];
    size_t secret_len;
    struct netmask_list allow, deny; /* what receivers' addresses may be (webhooks.h) */
    struct log_repeat due_log; /* the thread's reads of the outbox failing */
    CURLM *multi;
    pthread_t thread;
    bool started, stopped;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop, kicked, applying, paused;
    struct delivery *outcomes; /* thread -> loop */
    struct webhook_stats stats;
    int efd;
    struct event *ev;
};

int64_t webhook_backoff_ms(int tries)
{
    if (tries < 1)
        tries = 1;
    if (tries > 13) /* 2^12 s is past the cap already */
        return 3600000;
    int64_t ms = (int64_t)1000 << (tries - 1);
    return ms < 3600000 ? ms : 3600000;
}

static void delivery_free(struct delivery *d)
{
    while (d) {
        struct delivery *next = d->next;
        if (d->easy)
            curl_easy_cleanup(d->easy);
        curl_slist_free_all(d->headers);
        free(d->url);
        json_decref(d->draft);
        free(d->body);
        free(d);
        d = next;
    }
}

/* ---- the thread ---- */

struct due_ctx {
    struct delivery *head, **tail;
};

static int collect(void *arg, const struct webhook *w)
{
    struct due_ctx *c = arg;
    struct delivery *d = xcalloc(1, sizeof(*d));
    d->id = w->id;
    d->url = xstrdup(w->url);
    d->tries = w->tries;
    d->created_at = w->created_at;
    json_t *ev = events_to_json(w->ev);
    const char *state = json_string_value(json_object_get(ev, "state"));
    snprintf(d->event, sizeof(d->event), "%s",
             w->ev->kind == EVENT_JOB        ? "job"
             : w->ev->kind == EVENT_WORKFLOW ? "workflow" /* its name and key are the event's */
                                             : "agent");
    char delivery_id[32], type[48];
    snprintf(delivery_id, sizeof(delivery_id), "%" PRId64, w->id);
    snprintf(type, sizeof(type), "%s.%s", d->event, state ? state : "unknown"); /* job.succeeded */
    d->draft = json_pack("{s:s, s:s, s:i, s:o}", "delivery", delivery_id, "type", type,
                         "try", w->tries + 1, "event", ev);
    if (w->ev->kind == EVENT_JOB)
        snprintf(d->job, sizeof(d->job), "%s", w->ev->subject);
    *c->tail = d;
    c->tail = &d->next;
    return 0;
}

/* What a receiver needs to know a job by without calling back: its name, key, labels, and
   the array or workflow it belongs to; null once the job is gone (retention). */
static int job_summary(struct store *st, const char *id, json_t **out, struct err *e)
{
    struct job j;
    job_init(&j);
    int rc = store_job_get(st, id, &j, e);
    if (rc == ERR_NOTFOUND) {
        err_clear(e);
        *out = json_null();
        return 0;
    }
    char wid[UUID_STR_LEN];
    int wrc = rc ? rc : store_workflow_of(st, id, wid, e);
    if (wrc && wrc != ERR_NOTFOUND) {
        job_release(&j);
        return wrc;
    }
    err_clear(e);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(j.id));
    json_object_set_new(o, "name", j.name ? json_string(j.name) : json_null());
    json_object_set_new(o, "key", j.key ? json_string(j.key) : json_null());
    json_object_set_new(o, "queue", json_string(j.queue));
    json_object_set_new(o, "labels", j.labels ? json_incref(j.labels) : json_object());
    json_object_set_new(o, "array", array_task_json(&j));
    json_object_set_new(o, "workflow", wrc ? json_null() : json_string(wid));
    job_release(&j);
    *out = o;
    return 0;
}

/* Each delivery's body, a job event's with its job described. */
static int describe_jobs(struct webhooks *w, struct delivery *list, struct err *e)
{
    for (struct delivery *d = list; d; d = d->next) {
        if (d->job[0]) {
            json_t *job;
            int rc = job_summary(w->st, d->job, &job, e);
            if (rc) return rc;
            json_object_set_new(d->draft, "job", job);
        }
        d->body = json_dumps(d->draft, JSON_COMPACT);
        json_decref(d->draft);
        d->draft = NULL;
    }
    return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static void sign(struct webhooks *w, struct delivery *d, long ts, char *out_hex)
{
    char prefix[32];
    int plen = snprintf(prefix, sizeof(prefix), "%ld.", ts);
    unsigned char mac[32];
    unsigned int n = 0;
    size_t blen = strlen(d->body);
    unsigned char *msg = xmalloc((size_t)plen + blen);
    memcpy(msg, prefix, (size_t)plen);
    memcpy(msg + plen, d->body, blen);
    HMAC(EVP_sha256(), w->secret, (int)w->secret_len, msg, (size_t)plen + blen, mac, &n);
    free(msg);
    for (unsigned i = 0; i < 32; i++)
        sprintf(out_hex + 2 * i, "%02x", mac[i]);
}

/*
 * curl opens each connection here, with the address the URL's host resolved to: one not in
 * --webhook-allow, or in --webhook-deny, is refused before anything is sent (and a host
 * that resolves elsewhere later is checked again then). Thread: the deliverer's.
 */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct delivery *d = arg;
    const struct webhooks *w = d->w;
    if (purpose == CURLSOCKTYPE_IPCXN && (a->family == AF_INET || a->family == AF_INET6)) {
        const char *why = !netmask_list_has(&w->allow, &a->addr) ? "--webhook-allow"
                          : netmask_list_has(&w->deny, &a->addr) ? "--webhook-deny"
                                                                 : NULL;
        if (why) {
            char ip[64];
            netmask_addr_text(&a->addr, ip, sizeof(ip));
            d->refused = true;
            snprintf(d->error, sizeof(d->error),
                     "the receiver's address %s is not one webhooks may reach (%s)", ip, why);
            return CURL_SOCKET_BAD;
        }
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static void add_easy(struct webhooks *w, struct delivery *d)
{
    long ts = (long)(time_now_ms() / 1000);
    char hex[65], h[160];
    sign(w, d, ts, hex);
    d->headers = curl_slist_append(d->headers, "Content-Type: application/json");
    snprintf(h, sizeof(h), "X-Drover-Delivery: %" PRId64, d->id);
    d->headers = curl_slist_append(d->headers, h);
    snprintf(h, sizeof(h), "X-Drover-Event: %s", d->event);
    d->headers = curl_slist_append(d->headers, h);
    snprintf(h, sizeof(h), "X-Drover-Timestamp: %ld", ts);
    d->headers = curl_slist_append(d->headers, h);
    snprintf(h, sizeof(h), "X-Drover-Signature: sha256=%s", hex);
    d->headers = curl_slist_append(d->headers, h);
    d->headers = curl_slist_append(d->headers, "Expect:");
    d->easy = curl_easy_init();
    if (!d->easy)
        die("out of memory (curl_easy_init)");
    curl_easy_setopt(d->easy, CURLOPT_URL, d->url);
    curl_easy_setopt(d->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(d->easy, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(d->easy, CURLOPT_HTTPHEADER, d->headers);
    curl_easy_setopt(d->easy, CURLOPT_USERAGENT, "drover/" DROVER_VERSION);
    curl_easy_setopt(d->easy, CURLOPT_TIMEOUT_MS, (long)WEBHOOK_TIMEOUT_MS);
    curl_easy_setopt(d->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(d->easy, CURLOPT_PRIVATE, d);
    d->w = w;
    curl_easy_setopt(d->easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(d->easy, CURLOPT_OPENSOCKETDATA, d);
    curl_multi_add_handle(w->multi, d->easy);
}

static bool stopping(struct webhooks *w)
{
    pthread_mutex_lock(&w->lock);
    bool stop = w->stop;
    pthread_mutex_unlock(&w->lock);
    return stop;
}

/* POSTs every delivery of the list at once; each gets its outcome. */
static void perform(struct webhooks *w, struct delivery *list)
{
    for (struct delivery *d = list; d; d = d->next)
        add_easy(w, d);
    int running = 1;
    while (running && !stopping(w)) {
        curl_multi_perform(w->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(w->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct delivery *d;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&d);
            long status = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (m->data.result != CURLE_OK) {
                if (!d->refused) /* else open_socket said why */
                    snprintf(d->error, sizeof(d->error), "%s",
                             curl_easy_strerror(m->data.result));
            } else if (status < 200 || status > 299)
                snprintf(d->error, sizeof(d->error), "the receiver answered HTTP %ld", status);
            else
                d->ok = true;
        }
        if (running)
            curl_multi_poll(w->multi, NULL, 0, 1000, NULL);
    }
    for (struct delivery *d = list; d; d = d->next) {
        curl_multi_remove_handle(w->multi, d->easy);
        if (!d->ok && !d->error[0])
            snprintf(d->error, sizeof(d->error), "the server stopped during the delivery");
    }
}

static void *deliverer_main(void *arg)
{
    struct webhooks *w = arg;
    pthread_setname_np(pthread_self(), "drover-hooks");
    int64_t next = 0;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->stop &&
               (w->applying || w->paused || (!w->kicked && time_now_ms() < next))) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&w->cond, &w->lock, &ts);
        }
        bool stop = w->stop;
        w->kicked = false;
        pthread_mutex_unlock(&w->lock);
        if (stop)
            return NULL;

        struct due_ctx c = {.head = NULL, .tail = &c.head};
        struct err e = ERR_INIT;
        if (store_webhook_due(w->st, time_now_ms(), WEBHOOK_BATCH, collect, &c, &e) ||
            describe_jobs(w, c.head, &e)) {
            log_repeat_fail(&w->due_log, time_now_ms(), LOG_ERROR,
                            "webhooks: reading the outbox: %s", e.msg);
            delivery_free(c.head);
            next = time_now_ms() + IDLE_POLL_MS;
            continue;
        }
        log_repeat_ok(&w->due_log, "webhooks: reading the outbox");
        if (!c.head) {
            next = time_now_ms() + IDLE_POLL_MS;
            continue;
        }
        perform(w, c.head);
        pthread_mutex_lock(&w->lock);
        if (w->stop) {
            pthread_mutex_unlock(&w->lock);
            delivery_free(c.head); /* not recorded: they go out again after a restart */
            return NULL;
        }
        w->outcomes = c.head;
        w->applying = true;
        pthread_mutex_unlock(&w->lock);
        uint64_t one = 1;
        ssize_t rc = write(w->efd, &one, sizeof(one));
        (void)rc;
        next = 0;
    }
}

/* ---- the loop: recording outcomes ---- */

struct apply_op {
    struct webhooks *w;
    struct delivery *list;
    int64_t now;
};

/* Writer thread. */
static int apply_write(struct store *st, void *arg, struct err *e)
{
    struct apply_op *op = arg;
    for (struct delivery *d = op->list; d; d = d->next) {
        int rc;
        if (d->ok || op->now - d->created_at > WEBHOOK_GIVE_UP_MS)
            rc = store_webhook_delete(st, d->id, e);
        else
            rc = store_webhook_retry(st, d->id, d->tries + 1,
                                     op->now + webhook_backoff_ms(d->tries + 1), d->error, e);
        if (rc)
            return rc;
    }
    return 0;
}

static void apply_done(void *arg, int rc, const struct err *e)
{
    struct apply_op *op = arg;
    struct webhooks *w = op->w;
    pthread_mutex_lock(&w->lock);
    for (struct delivery *d = op->list; d && !rc; d = d->next) {
        if (d->ok) {
            w->stats.delivered++;
            continue;
        }
        w->stats.failed++;
        if (op->now - d->created_at > WEBHOOK_GIVE_UP_MS) {
            w->stats.dropped++;
            log_error("webhook %" PRId64 " to %s given up after %d tries: %s", d->id, d->url,
                      d->tries + 1, d->error);
        } else {
            log_warn("webhook %" PRId64 " to %s failed (try %d): %s; next in %" PRId64 " s", d->id,
                     d->url, d->tries + 1, d->error, webhook_backoff_ms(d->tries + 1) / 1000);
        }
    }
    if (rc)
        log_error("webhooks: recording outcomes: %s", e->msg); /* they are sent again */
    w->applying = false;
    w->kicked = true; /* more may be due */
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    delivery_free(op->list);
    free(op);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct webhooks *w = arg;
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof(n));
    (void)r;
    pthread_mutex_lock(&w->lock);
    struct delivery *list = w->outcomes;
    w->outcomes = NULL;
    pthread_mutex_unlock(&w->lock);
    if (!list)
        return;
    struct apply_op *op = xcalloc(1, sizeof(*op));
    op->w = w;
    op->list = list;
    op->now = time_now_ms();
    for (struct delivery *d = list; d; d = d->next) { /* the thread is done with them */
        curl_easy_cleanup(d->easy);
        d->easy = NULL;
    }
    commit_submit(w->s->commit, apply_write, apply_done, op);
}

int webhooks_start(struct server *s, const char *db_uri, const unsigned char *secret, size_t len,
                   const struct netmask_list *allow, const struct netmask_list *deny,
                   struct webhooks **out, struct err *e)
{
    struct webhooks *w = xcalloc(1, sizeof(*w));
    struct store_opts so = {0};
    int rc = store_open(db_uri, &so, &w->st, e);
    if (rc) {
        free(w);
        return rc;
    }
    w->s = s;
    w->secret_len = len < sizeof(w->secret) ? len : sizeof(w->secret);
    memcpy(w->secret, secret, w->secret_len);
    netmask_list_copy(&w->allow, allow);
    netmask_list_copy(&w->deny, deny);
    w->multi = curl_multi_init();
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0 || !w->multi)
        die("cannot start the webhook deliverer: %s", strerror(errno));
    w->ev = event_new(s->base, w->efd, EV_READ | EV_PERSIST, on_wake, w);
    event_add(w->ev, NULL);
    w->kicked = true; /* deliveries left by the last run */
    if (pthread_create(&w->thread, NULL, deliverer_main, w))
        die("cannot start the webhook thread");
    w->started = true;
    *out = w;
    return 0;
}

void webhooks_set_paused(struct webhooks *w, bool paused)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->paused = paused;
    w->kicked = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void webhooks_kick(struct webhooks *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->kicked = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void webhooks_stop(struct webhooks *w)
{
    if (!w || w->stopped)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    curl_multi_wakeup(w->multi);
    pthread_join(w->thread, NULL);
    w->stopped = true;
}

void webhooks_free(struct webhooks *w)
{
    if (!w)
        return;
    webhooks_stop(w);
    delivery_free(w->outcomes);
    event_free(w->ev);
    close(w->efd);
    curl_multi_cleanup(w->multi);
    netmask_list_release(&w->allow);
    netmask_list_release(&w->deny);
    store_close(w->st);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w);
}

void webhooks_get_stats(struct webhooks *w, struct webhook_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    *out = w->stats;
    pthread_mutex_unlock(&w->lock);
}
