/*
 * logs.c - followers of a job's captured output (GET /v1/jobs/{id}/log?follow=1).
 *
 * A follower holds a streamed answer open and the offset it has sent up to.
 * logs_notify() (after reports commit, or when the job ends) reads what is
 * new from the store and sends it; once the job is terminal, whatever is
 * left is sent and the stream ends.
 */
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/xalloc.h"
#include "server/server.h"

#define FOLLOW_READ_MAX (1 << 20)

struct follower {
    struct logs *l;
    struct http_req *r;
    char job[UUID_STR_LEN];
    int stream;
    int attempt; /* the attempt being streamed; a retry's output follows the last one's */
    int64_t offset;
    struct follower *prev, *next;
};

struct logs {
    struct server *s;
    struct follower *head;
};

struct logs *logs_new(struct server *s)
{
    struct logs *l = xcalloc(1, sizeof(*l));
    l->s = s;
    return l;
}

static void unlink_follower(struct follower *fw)
{
    if (fw->prev)
        fw->prev->next = fw->next;
    else
        fw->l->head = fw->next;
    if (fw->next)
        fw->next->prev = fw->prev;
    fw->r->on_gone = NULL;
    fw->r->owner = NULL;
}

static void finish(struct follower *fw)
{
    unlink_follower(fw);
    http_reply_end(fw->r);
    free(fw);
}

static void on_gone(struct http_req *r)
{
    struct follower *fw = r->owner;
    unlink_follower(fw);
    http_req_drop(r);
    free(fw);
}

/* Sends what is new; ends the stream when the job is over. */
static void pump(struct follower *fw)
{
    struct store *st = fw->l->s->reads;
    struct job j;
    if (store_job_get_run(st, fw->job, &j, NULL)) {
        finish(fw);
        return;
    }
    if (!fw->attempt)
        fw->attempt = j.attempt;
    for (int i = 0; i < 64; i++) { /* bounded: at most 64 MiB per notification */
        struct buf b = BUF_INIT;
        if (store_log_read(st, fw->job, fw->attempt, fw->stream, fw->offset, FOLLOW_READ_MAX, &b,
                           NULL) ||
            !b.len) {
            buf_release(&b);
            if (fw->attempt >= j.attempt)
                break;
            fw->attempt++; /* that attempt is over: go on with the next one's output */
            fw->offset = 0;
            continue;
        }
        http_reply_chunk(fw->r, b.data, b.len);
        fw->offset += (int64_t)b.len;
        buf_release(&b);
    }
    bool over = job_state_terminal(j.state);
    job_release(&j);
    if (over)
        finish(fw);
}

void logs_follow(struct logs *l, struct http_req *r, const char *job, int stream, int64_t offset)
{
    struct follower *fw = xcalloc(1, sizeof(*fw));
    fw->l = l;
    fw->r = r;
    snprintf(fw->job, sizeof(fw->job), "%s", job);
    fw->stream = stream;
    fw->offset = offset;
    r->owner = fw;
    r->on_gone = on_gone;
    fw->next = l->head;
    if (l->head)
        l->head->prev = fw;
    l->head = fw;
    pump(fw);
}

void logs_notify(struct logs *l, const char *job)
{
    if (!l)
        return;
    struct follower *fw = l->head;
    while (fw) {
        struct follower *next = fw->next;
        if (!strcmp(fw->job, job))
            pump(fw);
        fw = next;
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
