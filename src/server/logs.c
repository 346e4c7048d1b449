/*
 * logs.c - readers of a job's captured output (GET /v1/jobs/{id}/log).
 *
 * A reader holds a streamed answer open and the attempt and offset it has
 * sent up to. The answer is paced by the socket: one chunk of at most
 * LOG_CHUNK bytes is read from the store and handed to the connection, and
 * the next only once that one has left (http_reply_chunk_then), so a client
 * that reads slowly, or not at all, costs one chunk of memory, never the
 * whole log.
 *
 * Without follow the answer is what is stored from the offset on when each
 * chunk is read, and ends at the first empty read. With follow the reader
 * stays once it has caught up; logs_notify() (after reports commit, or when
 * the job changes) sends what is new. A followed log goes on through the
 * job's retries and ends with the job; one pinned to an attempt ends with
 * that attempt (pinned to the attempt a queued job runs next, it waits for it).
 *
 * Invariant: `sending` is true exactly while a chunk of ours is on its way;
 * pump() does nothing then, and the chunk's sent callback pumps again.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/buf.h"
#include "common/xalloc.h"
#include "job/protocol.h"
#include "server/server.h"

#define LOG_CHUNK (256 << 10)

struct reader {
    struct logs *l;
    struct http_req *r;
    char job[UUID_STR_LEN];
    int stream;
    int attempt;  /* the attempt being sent; 0 until the job has one */
    bool pinned;  /* only that attempt: the answer ends with it */
    bool follow;  /* wait for more until the job (or the pinned attempt) ends */
    bool sending; /* a chunk is on its way */
    int64_t offset;
    struct reader *prev, *next;
};

struct logs {
    struct server *s;
    struct reader *head;
};

struct logs *logs_new(struct server *s)
{
    struct logs *l = xcalloc(1, sizeof(*l));
    l->s = s;
    return l;
}

static void unlink_reader(struct reader *rd)
{
    if (rd->prev)
        rd->prev->next = rd->next;
    else
        rd->l->head = rd->next;
    if (rd->next) rd->next->prev = rd->prev;
    rd->r->on_gone = NULL;
    rd->r->owner = NULL;
}

/* Ends the answer (also while a chunk is on its way: evhttp then ends after it). */
static void finish(struct reader *rd)
{
    unlink_reader(rd);
    http_reply_end(rd->r);
    free(rd);
}

/* The client went away: its connection, and with it a pending sent callback, is gone. */
static void on_gone(struct http_req *r)
{
    struct reader *rd = r->owner;
    unlink_reader(rd);
    http_req_drop(r);
    free(rd);
}

static void pump(struct reader *rd);

static void on_sent(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct reader *rd = arg;
    rd->sending = false;
    pump(rd);
}

/* True when nothing more can come for what the reader sends. */
static bool reader_done(const struct reader *rd, const struct job *j)
{
    if (!rd->follow) return true;
    if (rd->pinned && j->attempt < rd->attempt) /* the next one, not begun: until it will not */
        return !job_state_waiting(j->state);
    if (rd->pinned) /* that attempt is over: a later one began, or the job is not running */
        return j->attempt > rd->attempt || (j->state != JOB_LEASED && j->state != JOB_RUNNING);
    return job_state_terminal(j->state) && rd->attempt >= j->attempt;
}

/* Sends the next chunk, if there is one and none is on its way; ends the answer when done. */
static void pump(struct reader *rd)
{
    if (rd->sending) return;
    /* a followed log is one long call: its credential is checked again before more is sent,
       as a call's would be (a revoked token's answer ends; a check is a cache lookup) */
    struct err e = ERR_INIT;
    int rc = http_authenticate(rd->r, rd->r->route->roles, &e);
    if (rc == ERR_UNAUTH || rc == ERR_DENIED) {
        finish(rd);
        return;
    }
    struct store *st = rd->l->s->reads;
    struct job j;
    if (store_job_get_run(st, rd->job, &j, NULL)) {
        finish(rd);
        return;
    }
    if (!rd->attempt) rd->attempt = j.attempt;
    for (;;) {
        struct buf b = BUF_INIT;
        if (store_log_read(st, rd->job, rd->attempt, rd->stream, rd->offset, LOG_CHUNK, &b, NULL) ==
                0 &&
            b.len) {
            struct evbuffer *chunk = evbuffer_new();
            evbuffer_add(chunk, b.data, b.len);
            rd->offset += (int64_t)b.len;
            buf_release(&b);
            job_release(&j);
            rd->sending = true;
            http_reply_chunk_then(rd->r, chunk, on_sent, rd);
            evbuffer_free(chunk);
            return;
        }
        buf_release(&b);
        if (!rd->follow || rd->pinned || rd->attempt >= j.attempt) break;
        rd->attempt++; /* that attempt is over: go on with the next one's output */
        rd->offset = 0;
    }
    bool done = reader_done(rd, &j);
    job_release(&j);
    if (done) finish(rd);
}

/*
 * The length of what is stored of a stream. The store keeps chunks by offset and no total,
 * so this looks for the first offset without a byte: a binary search of single-byte reads
 * below PROTO_STREAM_MAX, 26 reads, each a query over the stream's chunks (a few ms for a
 * full 64 MiB stream). A store call for the length would make it one query.
 */
static int64_t stream_length(struct store *st, const char *job, int attempt, int stream)
{
    int64_t lo = 0, hi = PROTO_STREAM_MAX; /* a byte at lo - 1 (or lo is 0); none at hi */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        struct buf b = BUF_INIT;
        bool there = store_log_read(st, job, attempt, stream, mid, 1, &b, NULL) == 0 && b.len;
        buf_release(&b);
        if (there)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void logs_send(struct logs *l, struct http_req *r, const struct logs_query *q)
{
    struct reader *rd = xcalloc(1, sizeof(*rd));
    rd->l = l;
    rd->r = r;
    snprintf(rd->job, sizeof(rd->job), "%s", q->job);
    rd->stream = q->stream;
    rd->attempt = q->attempt;
    rd->pinned = q->pinned;
    rd->follow = q->follow;
    rd->offset = q->offset;
    if (q->tail > 0 && rd->attempt > 0) {
        int64_t len = stream_length(l->s->reads, rd->job, rd->attempt, rd->stream);
        rd->offset = len > q->tail ? len - q->tail : 0;
    }
    char at[32];
    snprintf(at, sizeof(at), "%lld", (long long)rd->offset);
    evhttp_add_header(evhttp_request_get_output_headers(r->ev), "X-Drover-Log-Offset", at);
    r->owner = rd;
    r->on_gone = on_gone;
    rd->next = l->head;
    if (l->head) l->head->prev = rd;
    l->head = rd;
    http_reply_start(r, 200, "text/plain; charset=utf-8");
    pump(rd);
}

void logs_notify(struct logs *l, const char *job)
{
    if (!l)
        return;
    struct reader *rd = l->head;
    while (rd) {
        struct reader *next = rd->next; /* pump may finish (free) rd, never another reader */
        if (!strcmp(rd->job, job)) pump(rd);
        rd = next;
    }
}

void logs_free(struct logs *l)
{
    if (!l)
        return;
    while (l->head)
        finish(l->head);
    free(l);
}
