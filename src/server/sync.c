/*
 * sync.c - see sync.h.
 */
#include "server/sync.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "common/hmap.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "server/commit.h"
#include "server/fleet.h"
#include "server/server.h"
#include "server/tenants.h"
#include "server/triggers.h"
#include "store/store.h"

#define SYNC_PAGE 1000 /* events read at once */
#define SYNC_PAGES 20  /* pages per catch-up; the rest at the next one */

struct sync {
    struct server *s;
    struct store *listen; /* LISTENs; does nothing else */
    int fd;
    struct event *ev;
    int64_t seq; /* the newest event applied */
    struct log_repeat events_log, agents_log; /* reading them fails (failures > 0) */
};

static void on_readable(evutil_socket_t fd, short what, void *arg);

static void watch(struct sync *y, int fd)
{
    if (fd == y->fd && y->ev) return;
    if (y->ev) event_free(y->ev);
    y->ev = NULL;
    y->fd = fd;
    if (fd < 0) return;
    y->ev = event_new(y->s->base, fd, EV_READ | EV_PERSIST, on_readable, y);
    event_add(y->ev, NULL);
}

static int agent_synced(void *arg, const struct agent_rec *rec)
{
    fleet_agent_synced(arg, rec);
    return 0;
}

static int sync_agents(struct sync *y)
{
    struct err e = ERR_INIT;
    int rc = store_agent_scan(y->s->reads, agent_synced, y->s->fleet, &e);
    if (rc) {
        log_repeat_fail(&y->agents_log, time_now_ms(), LOG_WARN,
                        "cannot read the agents from the store: %s", e.msg);
        return rc;
    }
    fleet_agents_synced_all(y->s->fleet);
    if (y->agents_log.failures) { /* their last_seen could not be stored meanwhile either */
        log_info("the agents are read again: each has %d s to be seen before it is lost",
                 y->s->lost_after_s);
        fleet_agents_reread(y->s->fleet);
    }
    log_repeat_ok(&y->agents_log, NULL); /* the line above says it */
    return 0;
}

/* A job named by the events of a page: its newest event there. */
struct page_job {
    int state, attempt;
    bool own;    /* that event is this server's */
    char *agent; /* a lease's (leased or running) by another server: its agent's name */
};

static void page_job_free(void *v)
{
    struct page_job *pj = v;
    free(pj->agent);
    free(pj);
}

struct page {
    struct sync *y;
    struct committer *commit;
    struct hmap jobs; /* ids named by other servers' events read -> struct page_job */
    struct hmap arrays; /* likewise, arrays stored or changed by another server */
    int64_t last;
    size_t n;
    bool agents;      /* an agent event: read the agents first */
    bool agents_read; /* ... and they were */
    bool tenants;     /* a tenant's limits set elsewhere: read them again */
    bool queues;      /* a queue paused or resumed elsewhere: read the paused ones again */
    bool triggers;    /* a trigger made, changed, paused, resumed or deleted elsewhere */
};

static int collect(void *arg, const struct event_rec *ev)
{
    struct page *p = arg;
    p->last = ev->seq;
    p->n++;
    bool own = commit_wrote_event(p->commit, ev->seq); /* this server's: applied already */
    if (ev->kind == EVENT_JOB) {
        struct page_job *pj = hmap_get(&p->jobs, ev->subject);
        if (!pj && own) return 0;
        if (!pj) {
            pj = xcalloc(1, sizeof(*pj));
            hmap_put(&p->jobs, ev->subject, pj);
        }
        free(pj->agent);
        *pj = (struct page_job){ev->state, ev->attempt, own, NULL};
        if (!own && ev->agent && (ev->state == JOB_LEASED || ev->state == JOB_RUNNING))
            pj->agent = xstrdup(ev->agent);
    } else if (own) {
        return 0;
    } else if (ev->kind == EVENT_AGENT)
        p->agents = true;
    else if (ev->kind == EVENT_TENANT)
        p->tenants = true;
    else if (ev->kind == EVENT_QUEUE)
        p->queues = true;
    else if (ev->kind == EVENT_TRIGGER && ev->state != TRIGGER_FIRED && ev->state != TRIGGER_FAILED)
        p->triggers = true;
    else if (ev->kind == EVENT_ARRAY && !hmap_get(&p->arrays, ev->subject))
        hmap_put(&p->arrays, ev->subject, (void *)1);
    return 0;
}

/* A job named by the events of a page, as stored now. */
static int page_job(void *arg, const struct job *j)
{
    struct page *p = arg;
    /* its agent registered elsewhere a moment ago: know it before its lease */
    if (j->agent && !fleet_agent(p->y->s->fleet, j->agent) && !p->agents_read) {
        sync_agents(p->y);
        p->agents_read = true;
    }
    fleet_job_synced(p->y->s->fleet, j);
    return 0;
}

static int job_synced(void *arg, const struct job *j)
{
    fleet_job_synced(arg, j);
    return 0;
}

/* The events this server missed are gone (pruned): every unfinished job is read again. */
static void resync(struct sync *y)
{
    struct err e = ERR_INIT;
    int64_t first = 0, last = 0;
    if (store_event_window(y->s->reads, &first, &last, &e) ||
        sync_agents(y) || tenants_reload(y->s, &e) || queues_reload(y->s, &e) ||
        store_job_scan(y->s->reads,
                       (1u << JOB_QUEUED) | (1u << JOB_LEASED) | (1u << JOB_RUNNING), job_synced,
                       y->s->fleet, &e) ||
        fleet_load_arrays(y->s->fleet, &e)) {
        log_warn("cannot read the store again: %s", e.msg);
        return;
    }
    log_warn("events up to %lld were pruned before this server read them: unfinished jobs "
             "read again", (long long)last);
    y->seq = last;
}

static void catch_up(struct sync *y)
{
    struct server *s = y->s;
    for (int page = 0; page < SYNC_PAGES; page++) {
        y->seq = commit_skip_own(s->commit, y->seq); /* not read back */
        struct page p = {.y = y, .commit = s->commit, .last = y->seq};
        hmap_init(&p.jobs);
        hmap_init(&p.arrays);
        struct event_filter flt = {.after = y->seq, .kind = -1, .limit = SYNC_PAGE,
                                   .no_data = true};
        struct err e = ERR_INIT;
        int rc = store_event_list(s->reads, &flt, collect, &p, &e);
        if (!rc && p.agents) {
            rc = sync_agents(y);
            p.agents_read = true;
        }
        if (!rc && p.tenants) rc = tenants_reload(s, &e);
        if (!rc && p.queues) rc = queues_reload(s, &e);
        if (!rc && p.triggers) { /* the leader's schedules; the fires a resume lets go */
            triggers_schedules_changed(s->triggers);
            triggers_kick(s->triggers);
        }
        /* A job whose newest event ended it elsewhere is applied from that event: nothing
           here needs more of it (a waiter reads a record without its spec whole); so is a
           lease taken elsewhere of a job queued here (fleet_lease_synced). The others are
           read as stored, all in one read (those gone, purged, are skipped). */
        const char **ids = xcalloc(p.jobs.count + 1, sizeof(*ids));
        size_t n = 0;
        for (struct hmap_entry *he = hmap_first(&p.jobs); !rc && he;
             he = hmap_next(&p.jobs, he)) {
            struct page_job *pj = he->value;
            if (pj->agent &&
                fleet_lease_synced(s->fleet, he->key, pj->state, pj->attempt, pj->agent))
                continue;
            if (pj->own || !job_state_terminal(pj->state)) {
                ids[n++] = he->key;
                continue;
            }
            struct job j;
            job_init(&j);
            snprintf(j.id, sizeof(j.id), "%s", he->key);
            j.state = pj->state;
            j.attempt = pj->attempt;
            fleet_job_synced(s->fleet, &j);
        }
        if (!rc && n) rc = store_job_each(s->reads, ids, n, page_job, &p, &e);
        free(ids);
        /* its one scheduler entry here too: this server's leases claim its tasks as well */
        for (struct hmap_entry *he = hmap_first(&p.arrays); !rc && he;
             he = hmap_next(&p.arrays, he)) {
            struct array_rec a;
            int arc = store_array_get(s->reads, he->key, &a, &e);
            if (arc == ERR_NOTFOUND) continue;
            if ((rc = arc)) break;
            fleet_array_changed(s->fleet, &a);
            array_rec_release(&a);
        }
        hmap_release(&p.jobs, page_job_free);
        hmap_release(&p.arrays, NULL);
        if (rc == ERR_GONE) {
            resync(y);
            return;
        }
        if (rc) {
            log_repeat_fail(&y->events_log, time_now_ms(), LOG_WARN,
                            "cannot read the events of other servers: %s", e.msg);
            return; /* read again next time: applying twice is harmless */
        }
        log_repeat_ok(&y->events_log, "reading the events of other servers");
        y->seq = p.last;
        if (p.n < SYNC_PAGE) return;
    }
}

static void notified(struct sync *y)
{
    struct err e = ERR_INIT;
    bool any = false;
    int64_t upto = 0;
    int fd = y->fd;
    if (store_notified(y->listen, &fd, &any, &upto, &e)) {
        log_debug("listening for other servers' commits: %s", e.msg);
        watch(y, -1); /* made again at a tick */
        return;
    }
    watch(y, fd);
    if (!any) return;
    y->seq = commit_skip_own(y->s->commit, y->seq);
    if (upto > y->seq) catch_up(y); /* else all announced were this server's */
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    notified(arg);
}

void sync_stop(struct sync *y)
{
    /* Unread, a notification (this server's own commits while it drains send them too)
       would keep the socket readable, and the loop's last turns (server_release) would run
       on_readable for ever. sync_tick does nothing once the server is shutting down. */
    if (y) watch(y, -1);
}

void sync_tick(struct sync *y)
{
    if (!y || y->s->shutting_down) return;
    notified(y);
    sync_agents(y);
    fleet_flush_seen(y->s->fleet);
    catch_up(y); /* whatever an announcement lost to a reconnect would have said */
}

int sync_new(struct server *s, const char *db_uri, struct sync **out, struct err *e)
{
    struct sync *y = xcalloc(1, sizeof(*y));
    y->s = s;
    y->fd = -1;
    int64_t first = 0;
    int fd = -1;
    int rc = store_open(db_uri, NULL, &y->listen, e);
    if (!rc) rc = store_listen(y->listen, &fd, e);
    if (!rc) rc = store_event_window(s->reads, &first, &y->seq, e);
    if (rc) {
        sync_free(y);
        return rc;
    }
    watch(y, fd);
    *out = y;
    return 0;
}

void sync_free(struct sync *y)
{
    if (!y) return;
    if (y->ev) event_free(y->ev);
    store_close(y->listen);
    free(y);
}
