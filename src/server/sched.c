/*
 * sched.c - see sched.h.
 *
 * Structure: queues by name (hmap) -> levels sorted by priority, highest
 * first -> one FIFO list of jobs per tenant (a sub-queue) each. All jobs are
 * also in `byid` so a cancel finds them. Delayed jobs sit in one list
 * (sched_tick scans it; it holds only jobs waiting on a delay or a retry
 * backoff).
 *
 * A lease scans a queue's levels in order; within a level, the tenants'
 * sub-queues are weighed against each other (fair share: the tenant with
 * the fewest jobs held per unit of weight first; on a tie the one served
 * longest ago, then the older head; a tenant at its max_running is passed
 * over) and each sub-queue is read
 * from its head, skipping jobs that do not fit the agent; the common case
 * (one tenant, no requires, one slot) takes the head at once. Jobs with
 * cached inputs may also be skipped for a while for an agent that holds
 * none of them (sched_pref).
 */
#include "server/sched.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/hmap.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/protocol.h"
#include "job/spec.h"

struct sched_tenant {
    char *name;
    int max_running; /* 0: none */
    bool own_max;    /* max_running set for it (else the default's) */
    int weight;      /* >= 1 */
    int64_t held;    /* taken and not given back: leased or running (sched_hold) */
    uint64_t served; /* when it was last given a job (sched.takes); 0: never */
};

/* One tenant's jobs of one level, FIFO. */
struct sched_sub {
    struct sched_tenant *t;
    struct sched_job *head, *tail;
    size_t count;
    struct sched_sub *next; /* the level's next sub-queue */
};

struct sched_level {
    int priority;
    struct sched_sub *subs;
    size_t count;
    struct sched_level *next; /* lower priority */
};

struct squeue {
    struct sched_level *levels;
    size_t count;
    int max_running; /* 0: none (sched_queue_limit) */
    int64_t held;    /* its jobs taken and not given back: leased or running */
};

struct sched {
    struct hmap queues;  /* name -> struct squeue */
    struct hmap byid;    /* id -> struct sched_job (ready or delayed) */
    struct hmap tenants; /* name -> struct sched_tenant */
    struct hmap paused;  /* queue name -> int64_t *: when it was paused (ms) */
    int default_max_running;
    uint64_t takes; /* jobs taken so far: a clock for sched_tenant.served */
    struct sched_job *delayed;
    int64_t pref_until; /* a job held back by the cache preference may go anywhere then; 0 none */
};

struct sched *sched_new(void)
{
    struct sched *s = xcalloc(1, sizeof(*s));
    hmap_init(&s->queues);
    hmap_init(&s->byid);
    hmap_init(&s->tenants);
    hmap_init(&s->paused);
    return s;
}

static struct sched_tenant *tenant_get(struct sched *s, const char *name)
{
    if (!name)
        name = "";
    struct sched_tenant *t = hmap_get(&s->tenants, name);
    if (!t) {
        t = xcalloc(1, sizeof(*t));
        t->name = xstrdup(name);
        t->max_running = s->default_max_running;
        t->weight = 1;
        hmap_put(&s->tenants, name, t);
    }
    return t;
}

/* The queue `name`, made when first needed; queues are kept (their held count). */
static struct squeue *queue_get(struct sched *s, const char *name)
{
    struct squeue *q = hmap_get(&s->queues, name);
    if (!q) {
        q = xcalloc(1, sizeof(*q));
        hmap_put(&s->queues, name, q);
    }
    return q;
}

static void free_tenant(void *v)
{
    struct sched_tenant *t = v;
    free(t->name);
    free(t);
}

void sched_tenant_default(struct sched *s, int max_running)
{
    for (struct hmap_entry *e = hmap_first(&s->tenants); e; e = hmap_next(&s->tenants, e)) {
        struct sched_tenant *t = e->value;
        if (!t->own_max)
            t->max_running = max_running;
    }
    s->default_max_running = max_running;
}

void sched_tenant_set(struct sched *s, const char *tenant, int max_running, int weight)
{
    struct sched_tenant *t = tenant_get(s, tenant);
    t->own_max = max_running >= 0;
    t->max_running = max_running >= 0 ? max_running : s->default_max_running;
    t->weight = weight > 0 ? weight : 1;
}

void sched_hold(struct sched *s, const char *tenant, const char *queue)
{
    tenant_get(s, tenant)->held++;
    queue_get(s, queue)->held++;
}

bool sched_release(struct sched *s, const char *tenant, const char *queue)
{
    struct sched_tenant *t = tenant_get(s, tenant);
    struct squeue *q = queue_get(s, queue);
    bool was_full = (t->max_running && t->held >= t->max_running) ||
                    (q->max_running && q->held >= q->max_running);
    if (t->held > 0)
        t->held--;
    if (q->held > 0)
        q->held--;
    return was_full;
}

void sched_queue_limit(struct sched *s, const char *queue, int max_running)
{
    queue_get(s, queue)->max_running = max_running > 0 ? max_running : 0;
}

void sched_queue_unlimit_all(struct sched *s)
{
    for (struct hmap_entry *e = hmap_first(&s->queues); e; e = hmap_next(&s->queues, e))
        ((struct squeue *)e->value)->max_running = 0;
}

int sched_queue_max_running(const struct sched *s, const char *queue)
{
    const struct squeue *q = hmap_get(&s->queues, queue);
    return q ? q->max_running : 0;
}

int64_t sched_queue_held(const struct sched *s, const char *queue)
{
    const struct squeue *q = hmap_get(&s->queues, queue);
    return q ? q->held : 0;
}

void sched_queue_limits_each(const struct sched *s,
                             void (*fn)(void *arg, const char *queue, int max_running), void *arg)
{
    for (struct hmap_entry *e = hmap_first(&s->queues); e; e = hmap_next(&s->queues, e)) {
        const struct squeue *q = e->value;
        if (q->max_running) fn(arg, e->key, q->max_running);
    }
}

int64_t sched_tenant_held(const struct sched *s, const char *tenant)
{
    struct sched_tenant *t = hmap_get(&s->tenants, tenant ? tenant : "");
    return t ? t->held : 0;
}

int sched_tenant_max_running(const struct sched *s, const char *tenant)
{
    struct sched_tenant *t = hmap_get(&s->tenants, tenant ? tenant : "");
    return t ? t->max_running : s->default_max_running;
}

void sched_job_free(struct sched_job *sj)
{
    if (!sj)
        return;
    free(sj->queue);
    free(sj->tenant);
    json_decref(sj->requires);
    json_decref(sj->cache_keys);
    free(sj);
}

static void free_queue(void *v)
{
    struct squeue *q = v;
    struct sched_level *l = q->levels;
    while (l) {
        struct sched_level *next = l->next;
        while (l->subs) {
            struct sched_sub *sub = l->subs;
            l->subs = sub->next;
            free(sub);
        }
        free(l);
        l = next;
    }
    free(q);
}

static void free_job(void *v)
{
    sched_job_free(v);
}

void sched_free(struct sched *s)
{
    if (!s)
        return;
    hmap_release(&s->byid, free_job);
    hmap_release(&s->queues, free_queue);
    hmap_release(&s->tenants, free_tenant);
    hmap_release(&s->paused, free);
    free(s);
}

static void list_unlink(struct sched_job **head, struct sched_job **tail, struct sched_job *sj)
{
    if (sj->prev)
        sj->prev->next = sj->next;
    else
        *head = sj->next;
    if (sj->next)
        sj->next->prev = sj->prev;
    else if (tail)
        *tail = sj->prev;
    sj->prev = sj->next = NULL;
}

/* Puts sj last in its tenant's line at its priority, or first (`front`: a job given back). */
static void enqueue_ready(struct sched *s, struct sched_job *sj, bool front)
{
    struct squeue *q = queue_get(s, sj->queue);
    struct sched_level **pl = &q->levels;
    while (*pl && (*pl)->priority > sj->priority)
        pl = &(*pl)->next;
    if (!*pl || (*pl)->priority != sj->priority) {
        struct sched_level *l = xcalloc(1, sizeof(*l));
        l->priority = sj->priority;
        l->next = *pl;
        *pl = l;
    }
    struct sched_level *l = *pl;
    struct sched_tenant *t = tenant_get(s, sj->tenant);
    struct sched_sub **ps = &l->subs;
    while (*ps && (*ps)->t != t)
        ps = &(*ps)->next;
    if (!*ps) {
        *ps = xcalloc(1, sizeof(**ps));
        (*ps)->t = t;
    }
    struct sched_sub *sub = *ps;
    sj->level = l;
    sj->sub = sub;
    sj->ready_ms = time_now_ms();
    if (front) {
        sj->prev = NULL;
        sj->next = sub->head;
        if (sub->head)
            sub->head->prev = sj;
        else
            sub->tail = sj;
        sub->head = sj;
    } else {
        sj->next = NULL;
        sj->prev = sub->tail;
        if (sub->tail)
            sub->tail->next = sj;
        else
            sub->head = sj;
        sub->tail = sj;
    }
    sub->count++;
    l->count++;
    q->count++;
}

/* Takes sj out of its level (ready) or the delayed list; frees an emptied level. */
static void detach(struct sched *s, struct sched_job *sj)
{
    struct sched_level *l = sj->level;
    if (!l) {
        list_unlink(&s->delayed, NULL, sj);
        return;
    }
    struct sched_sub *sub = sj->sub;
    list_unlink(&sub->head, &sub->tail, sj);
    sub->count--;
    l->count--;
    sj->level = NULL;
    sj->sub = NULL;
    if (!sub->count) {
        struct sched_sub **ps = &l->subs;
        while (*ps != sub)
            ps = &(*ps)->next;
        *ps = sub->next;
        free(sub);
    }
    struct squeue *q = hmap_get(&s->queues, sj->queue);
    q->count--;
    if (!l->count) {
        struct sched_level **pl = &q->levels;
        while (*pl != l)
            pl = &(*pl)->next;
        *pl = l->next;
        free(l);
    }
}

static void place(struct sched *s, struct sched_job *sj, int64_t now_ms, bool front)
{
    hmap_put(&s->byid, sj->id, sj);
    if (sj->run_after > now_ms) {
        sj->level = NULL;
        sj->prev = NULL;
        sj->next = s->delayed;
        if (s->delayed)
            s->delayed->prev = sj;
        s->delayed = sj;
    } else {
        enqueue_ready(s, sj, front);
    }
}

static void add_job(struct sched *s, const struct job *j, bool front)
{
    if (hmap_get(&s->byid, j->id))
        return;
    struct sched_job *sj = xcalloc(1, sizeof(*sj));
    memcpy(sj->id, j->id, sizeof(sj->id));
    sj->queue = xstrdup(j->queue);
    sj->tenant = xstrdup(j->tenant ? j->tenant : "");
    sj->priority = j->priority;
    sj->slots = j->slots > 0 ? j->slots : 1;
    sj->requires = j->requires ? json_incref((json_t *)j->requires) : NULL;
    sj->timeout_s = j->timeout_s;
    sj->runtimes = spec_runtimes(j->spec);
    sj->cache_keys = sched_cache_keys(j->spec);
    sj->run_after = j->run_after;
    place(s, sj, time_now_ms(), front);
}

void sched_add(struct sched *s, const struct job *j)
{
    add_job(s, j, false);
}

void sched_return(struct sched *s, const struct job *j)
{
    add_job(s, j, true);
}

void sched_add_array(struct sched *s, const char *array, const struct job *tmpl,
                     int64_t remaining)
{
    struct sched_job *old = hmap_get(&s->byid, array);
    if (old) {
        if (remaining > 0)
            old->remaining = remaining;
        else
            sched_remove(s, array);
        return;
    }
    if (remaining <= 0)
        return;
    struct sched_job *sj = xcalloc(1, sizeof(*sj));
    snprintf(sj->id, sizeof(sj->id), "%s", array);
    sj->queue = xstrdup(tmpl->queue);
    sj->tenant = xstrdup(tmpl->tenant ? tmpl->tenant : "");
    sj->priority = tmpl->priority;
    sj->slots = tmpl->slots > 0 ? tmpl->slots : 1;
    sj->requires = tmpl->requires ? json_incref((json_t *)tmpl->requires) : NULL;
    sj->timeout_s = tmpl->timeout_s;
    sj->runtimes = spec_runtimes(tmpl->spec);
    sj->cache_keys = sched_cache_keys(tmpl->spec);
    sj->run_after = tmpl->run_after;
    sj->array = true;
    sj->remaining = remaining;
    place(s, sj, time_now_ms(), false);
}

/* One task of array entry sj, as an entry of its own (sj stays where it is). */
static struct sched_job *array_one(struct sched_job *sj)
{
    struct sched_job *t = xcalloc(1, sizeof(*t));
    memcpy(t->id, sj->id, sizeof(t->id));
    t->queue = xstrdup(sj->queue);
    t->tenant = xstrdup(sj->tenant);
    t->priority = sj->priority;
    t->slots = sj->slots;
    t->requires = sj->requires ? json_incref(sj->requires) : NULL;
    t->timeout_s = sj->timeout_s;
    t->runtimes = sj->runtimes;
    t->run_after = sj->run_after;
    t->cache_keys = sj->cache_keys ? json_incref(sj->cache_keys) : NULL;
    t->ready_ms = sj->ready_ms;
    t->array = true;
    t->remaining = 1;
    sj->remaining--;
    return t;
}

const struct sched_job *sched_find(const struct sched *s, const char *id)
{
    return hmap_get(&s->byid, id);
}

bool sched_remove(struct sched *s, const char *id)
{
    struct sched_job *sj = hmap_del(&s->byid, id);
    if (!sj)
        return false;
    detach(s, sj);
    sched_job_free(sj);
    return true;
}

size_t sched_tick(struct sched *s, int64_t now_ms)
{
    size_t n = 0;
    if (s->pref_until && now_ms >= s->pref_until) {
        s->pref_until = 0;
        n++;
    }
    struct sched_job *sj = s->delayed;
    while (sj) {
        struct sched_job *next = sj->next;
        if (sj->run_after <= now_ms) {
            list_unlink(&s->delayed, NULL, sj);
            enqueue_ready(s, sj, false);
            n++;
        }
        sj = next;
    }
    return n;
}

int64_t sched_next_due(const struct sched *s)
{
    int64_t due = s->pref_until ? s->pref_until : -1;
    for (const struct sched_job *sj = s->delayed; sj; sj = sj->next)
        if (due < 0 || sj->run_after < due) due = sj->run_after;
    return due;
}

/* True when labels has every label of need (a job's requires; NULL: none), with the same value. */
static bool has_labels(const json_t *need, const json_t *labels)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)need, k, v) {
        json_t *have = json_object_get(labels, k);
        if (!json_is_string(have) || strcmp(json_string_value(have), json_string_value(v)))
            return false;
    }
    return true;
}

static bool fits(const struct sched_job *sj, const json_t *labels, unsigned runtimes,
                 int free_slots)
{
    return sj->slots <= free_slots && (sj->runtimes & runtimes) && has_labels(sj->requires, labels);
}

/* ---- the input-cache preference ---- */

json_t *sched_cache_keys(const json_t *spec)
{
    json_t *keys = NULL;
    size_t i;
    json_t *arg;
    json_array_foreach(json_object_get(json_object_get(spec, "command"), "arguments"), i, arg)
    {
        const char *type = json_string_value(json_object_get(arg, "type"));
        const char *uri = json_string_value(json_object_get(arg, "value"));
        const char *sha = json_string_value(json_object_get(arg, "sha256"));
        json_t *cache = json_object_get(arg, "cache");
        if (!type || strcmp(type, "input") || !uri || json_is_false(cache) ||
            (!sha && !json_is_true(cache)))
            continue;
        if (!keys) keys = json_array();
        char *k;
        if (sha) {
            k = xasprintf("sha256:%s", sha);
            json_array_append_new(keys, json_string(k));
            free(k);
        }
        k = xasprintf("uri:%s", uri);
        json_array_append_new(keys, json_string(k));
        free(k);
    }
    return keys;
}

json_t *sched_cache_set(const json_t *cached)
{
    json_t *set = json_object();
    size_t i;
    json_t *o;
    json_array_foreach(cached, i, o)
    {
        const char *sha = json_string_value(json_object_get(o, "sha256"));
        const char *uri = json_string_value(json_object_get(o, "uri"));
        char *k;
        if (sha) {
            k = xasprintf("sha256:%s", sha);
            json_object_set_new(set, k, json_true());
            free(k);
        }
        if (uri) {
            k = xasprintf("uri:%s", uri);
            json_object_set_new(set, k, json_true());
            free(k);
        }
    }
    return set;
}

static bool has_cached(const struct sched_job *sj, const json_t *have)
{
    size_t i;
    json_t *k;
    json_array_foreach(sj->cache_keys, i, k)
    {
        if (json_object_get(have, json_string_value(k))) return true;
    }
    return false;
}

static bool in_array(const json_t *names, const char *name);

bool sched_could_take(const struct sched_job *sj, const json_t *queues, const json_t *labels,
                      unsigned runtimes, int free_slots, const json_t *have)
{
    return sj->cache_keys && in_array(queues, sj->queue) && sj->slots <= free_slots &&
           (sj->runtimes & runtimes) && has_labels(sj->requires, labels) && has_cached(sj, have);
}

/* Is sj held back from this agent (it has none of its cached objects, another has)? */
static bool held_back(struct sched *s, const struct sched_job *sj, const struct sched_pref *pref)
{
    if (!pref || !sj->cache_keys || has_cached(sj, pref->have)) return false;
    int64_t until = sj->ready_ms + SCHED_CACHE_WAIT_MS;
    if (pref->now_ms >= until || !pref->elsewhere(pref->arg, sj)) return false;
    if (!s->pref_until || until < s->pref_until) s->pref_until = until;
    return true;
}

/* A tenant's share: jobs held per unit of weight, in thousandths. */
static int64_t share(const struct sched_tenant *t)
{
    return t->held * 1000 / t->weight;
}

/*
 * Is a before b: the tenant with the smaller share; on a tie the one served
 * longest ago (else one agent slot freed and taken again would go to the
 * oldest job's tenant every time); then the older job (smaller id).
 */
static bool before(const struct sched_job *a, const struct sched_job *b)
{
    const struct sched_tenant *ta = a->sub->t, *tb = b->sub->t;
    int64_t sa = share(ta), sb = share(tb);
    if (sa != sb)
        return sa < sb;
    if (ta != tb && ta->served != tb->served)
        return ta->served < tb->served;
    return strcmp(a->id, b->id) < 0;
}

/* The best fitting job across the agent's queues, or NULL. */
static struct sched_job *best(const struct sched *s, const json_t *queues, const json_t *labels,
                              unsigned runtimes, int free_slots,
                              const struct sched_pref *pref)
{
    struct sched_job *found = NULL;
    size_t i;
    json_t *qn;
    json_array_foreach(queues, i, qn) {
        struct squeue *q = hmap_get(&s->queues, json_string_value(qn));
        if (!q || (s->paused.count && hmap_get(&s->paused, json_string_value(qn))) ||
            (q->max_running && q->held >= q->max_running)) /* at its limit: its jobs wait */
            continue;
        for (struct sched_level *l = q->levels; l; l = l->next) {
            if (found && l->priority < found->priority)
                break;
            struct sched_job *pick = NULL;
            for (struct sched_sub *sub = l->subs; sub; sub = sub->next) {
                const struct sched_tenant *t = sub->t;
                if (t->max_running && t->held >= t->max_running)
                    continue; /* at its limit: its jobs wait */
                struct sched_job *sj = sub->head;
                /* held_back only notes when a held job may go anywhere (pref_until): the
                 * cast leaves the queues as they are */
                while (sj && (!fits(sj, labels, runtimes, free_slots) ||
                              held_back((struct sched *)s, sj, pref)))
                    sj = sj->next;
                if (sj && (!pick || before(sj, pick)))
                    pick = sj;
            }
            if (pick) {
                /* Same priority in two queues: the fairer, then the older job first. */
                if (!found || pick->priority > found->priority ||
                    (pick->priority == found->priority && before(pick, found)))
                    found = pick;
                break;
            }
        }
    }
    return found;
}

size_t sched_take(struct sched *s, const json_t *queues, const json_t *labels, unsigned runtimes,
                  int free_slots, struct sched_job **out, size_t max)
{
    return sched_take_pref(s, queues, labels, runtimes, free_slots, NULL, out, max);
}

size_t sched_take_pref(struct sched *s, const json_t *queues, const json_t *labels,
                       unsigned runtimes, int free_slots, const struct sched_pref *pref,
                       struct sched_job **out, size_t max)
{
    size_t n = 0;
    while (n < max && free_slots > 0) {
        struct sched_job *sj = best(s, queues, labels, runtimes, free_slots, pref);
        if (!sj)
            break;
        if (sj->array && sj->remaining > 1) {
            sj = array_one(sj);
        } else {
            detach(s, sj);
            hmap_del(&s->byid, sj->id);
        }
        struct sched_tenant *t = tenant_get(s, sj->tenant);
        t->held++; /* until put back or its lease ends */
        t->served = ++s->takes;
        queue_get(s, sj->queue)->held++;
        free_slots -= sj->slots;
        out[n++] = sj;
    }
    return n;
}

void sched_untake(struct sched *s, struct sched_job *sj)
{
    sched_release(s, sj->tenant, sj->queue);
    sched_job_free(sj);
}

void sched_put_back(struct sched *s, struct sched_job *sj)
{
    sched_release(s, sj->tenant, sj->queue);
    struct sched_job *there = hmap_get(&s->byid, sj->id);
    if (there) {
        if (there->array && sj->array)
            there->remaining += sj->remaining; /* an array's task: back into its entry */
        sched_job_free(sj);
        return;
    }
    sj->run_after = 0;
    place(s, sj, 0, true); /* its place in line, as it was taken from it */
}

size_t sched_ready_count(const struct sched *s, const char *queue)
{
    struct squeue *q = hmap_get(&s->queues, queue);
    return q ? q->count : 0;
}

void sched_queue_pause(struct sched *s, const char *queue, int64_t at_ms)
{
    if (!at_ms) {
        free(hmap_del(&s->paused, queue));
        return;
    }
    int64_t *at = hmap_get(&s->paused, queue);
    if (!at) hmap_put(&s->paused, queue, at = xmalloc(sizeof(*at)));
    *at = at_ms;
}

int64_t sched_queue_paused(const struct sched *s, const char *queue)
{
    const int64_t *at = s->paused.count ? hmap_get(&s->paused, queue) : NULL;
    return at ? *at : 0;
}

void sched_queue_resume_all(struct sched *s)
{
    hmap_release(&s->paused, free);
    hmap_init(&s->paused);
}

void sched_queue_paused_each(const struct sched *s,
                             void (*fn)(void *arg, const char *queue, int64_t at_ms), void *arg)
{
    for (struct hmap_entry *e = hmap_first(&s->paused); e; e = hmap_next(&s->paused, e))
        fn(arg, e->key, *(const int64_t *)e->value);
}

bool sched_has_work(const struct sched *s, const json_t *queues, const json_t *labels,
                    unsigned runtimes, int free_slots)
{
    return free_slots > 0 && best(s, queues, labels, runtimes, free_slots, NULL) != NULL;
}

/* ---- could an agent take it? ---- */

void sched_fit_init(struct sched_fit *fit, const char *queue, const json_t *need, int slots,
                    unsigned runtimes)
{
    memset(fit, 0, sizeof(*fit));
    fit->queue = queue;
    fit->requires = json_object_size(need) ? need : NULL;
    fit->slots = slots;
    fit->runtimes = runtimes ? runtimes : PROTO_RT_ALL;
}

static bool in_array(const json_t *names, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        if (json_is_string(v) && !strcmp(json_string_value(v), name)) return true;
    }
    return false;
}

static void raise_to(int *max, int v)
{
    if (v > *max) *max = v;
}

void sched_fit_add(struct sched_fit *fit, const json_t *queues, const json_t *labels, int slots,
                   unsigned runtimes)
{
    bool serving = in_array(queues, fit->queue);
    bool labelled = has_labels(fit->requires, labels);
    bool able = (fit->runtimes & runtimes) != 0;
    fit->up++;
    fit->able += able;
    raise_to(&fit->max_all, slots);
    if (serving) {
        fit->serving++;
        raise_to(&fit->max_serving, slots);
    }
    if (labelled) {
        fit->labelled++;
        raise_to(&fit->max_labelled, slots);
    }
    if (serving && labelled) {
        fit->serving_labelled++;
        raise_to(&fit->max_serving_labelled, slots);
        fit->serving_labelled_able += able;
        if (able && slots >= fit->slots) fit->listeners++;
    }
}

json_t *sched_fit_warnings(const struct sched_fit *fit)
{
    json_t *w = json_array();
    char line[640];
    if (fit->paused_at) {
        snprintf(line, sizeof(line), "queue '%s' is paused", fit->queue);
        json_array_append_new(w, json_string(line));
    }
    if (fit->listeners) return w;
    if (!fit->serving) {
        snprintf(line, sizeof(line), "queue '%s' has no listening agent%s", fit->queue,
                 fit->up ? "" : " (no agent is up)");
        json_array_append_new(w, json_string(line));
    }
    if (!fit->up) return w;
    if (fit->requires && !(fit->serving ? fit->serving_labelled : fit->labelled)) {
        struct buf b = BUF_INIT;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)fit->requires, k, v)
        {
            buf_addf(&b, "%s%s=%s", b.len ? "," : "", k, json_string_value(v));
        }
        if (fit->serving && fit->labelled)
            snprintf(line, sizeof(line), "no agent serving queue '%s' has labels %s", fit->queue,
                     b.data);
        else
            snprintf(line, sizeof(line), "no agent has labels %s", b.data);
        buf_release(&b);
        json_array_append_new(w, json_string(line));
    }
    if (!(fit->serving_labelled ? fit->serving_labelled_able : fit->able)) {
        const char *what = fit->runtimes == PROTO_RT_CONTAINER
                               ? "a container runtime (podman or docker) for command.image"
                           : fit->runtimes == PROTO_RT_BWRAP
                               ? "bubblewrap (bwrap) for command.sandbox"
                               : "a runtime for jobs without an image (native or bwrap)";
        if (fit->serving_labelled)
            snprintf(line, sizeof(line), "no agent serving queue '%s'%s has %s", fit->queue,
                     fit->requires ? " with its labels" : "", what);
        else
            snprintf(line, sizeof(line), "no agent has %s", what);
        json_array_append_new(w, json_string(line));
    }
    /* Slots against the agents that pass the other tests, or as many of them as there are. */
    int max = fit->serving_labelled ? fit->max_serving_labelled
              : fit->serving        ? fit->max_serving
              : fit->labelled       ? fit->max_labelled
                                    : fit->max_all;
    if (fit->slots > max) {
        snprintf(line, sizeof(line), "slots %d exceeds the largest agent's %d", fit->slots, max);
        json_array_append_new(w, json_string(line));
    }
    return w;
}

/* Appends "no agent can take it: WHY; WHY". */
static void add_no_agent(struct buf *msg, const struct sched_fit *fit)
{
    buf_adds(msg, "no agent can take it: ");
    struct sched_fit f = *fit;
    f.paused_at = 0; /* said on its own */
    json_t *w = sched_fit_warnings(&f);
    size_t i;
    json_t *v;
    json_array_foreach(w, i, v)
    {
        buf_addf(msg, "%s%s", i ? "; " : "", json_string_value(v));
    }
    json_decref(w);
}

json_t *sched_waiting_json(const struct job *j, const struct sched_fit *fit, int64_t now_ms)
{
    if (j->state != JOB_QUEUED) return json_null();
    const char *reason;
    struct buf msg = BUF_INIT;
    json_t *until = json_null();
    if (j->run_after > now_ms) {
        char t[32];
        time_format_rfc3339(j->run_after, t, sizeof(t));
        json_decref(until);
        until = json_string(t);
        if (j->attempt > 0) {
            reason = "retry_backoff";
            buf_addf(&msg, "attempt %d failed; the next may start at %s", j->attempt, t);
        } else {
            reason = "delayed";
            buf_addf(&msg, "delayed until %s", t);
        }
        if (fit->paused_at) buf_addf(&msg, "; and its queue '%s' is paused", fit->queue);
    } else if (fit->paused_at) {
        char t[32];
        time_format_rfc3339(fit->paused_at, t, sizeof(t));
        reason = "paused";
        buf_addf(&msg, "its queue '%s' is paused (since %s): no job of it is leased until it "
                       "is resumed", fit->queue, t);
    } else if (!fit->listeners) {
        reason = "no_agent";
        add_no_agent(&msg, fit);
    } else {
        reason = "busy";
        buf_addf(&msg,
                 "%d agent%s could take it; waiting for a free slot (or its turn behind other "
                 "jobs)",
                 fit->listeners, fit->listeners == 1 ? "" : "s");
    }
    if (!fit->listeners && strcmp(reason, "no_agent")) { /* delayed or paused, and no agent */
        buf_adds(&msg, "; and as things are, ");
        add_no_agent(&msg, fit);
    }
    json_t *o = json_pack("{s:s, s:s, s:o, s:i}", "reason", reason, "message", msg.data, "until",
                          until, "listeners", fit->listeners);
    buf_release(&msg);
    return o;
}
