/*
 * store_array.c - job arrays, the part every backend shares (store.h "Job arrays"): the
 * cursor, the skipped ranges, making a task's job. The backends only read and write rows.
 */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "job/array.h"
#include "job/lifecycle.h"

#define TASK_WINDOW 1000 /* indices read at once when listing */

void array_rec_release(struct array_rec *a)
{
    if (!a) return;
    free(a->owner);
    free(a->tenant);
    free(a->queue);
    free(a->name);
    free(a->source);
    json_decref(a->skips);
    json_decref(a->spec);
    json_decref(a->items);
    memset(a, 0, sizeof(*a));
}

void array_rec_views(struct array_rec *a)
{
    a->run_after =
        a->created_at + (int64_t)(json_number_value(json_object_get(a->spec, "delay_s")) * 1000.0);
}

/* ---- skipped ranges: [[from, to], ...] sorted and disjoint, adjacent ones merged ---- */

static int64_t rng(const json_t *r, size_t k)
{
    return json_integer_value(json_array_get(r, k));
}

/* How many indices of from..to the ranges hold. */
static int64_t skips_in(const json_t *skips, int64_t from, int64_t to)
{
    int64_t n = 0;
    size_t i;
    json_t *r;
    json_array_foreach(skips, i, r) {
        int64_t a = rng(r, 0) > from ? rng(r, 0) : from, b = rng(r, 1) < to ? rng(r, 1) : to;
        if (b >= a) n += b - a + 1;
    }
    return n;
}

static bool skipped(const json_t *skips, int64_t i)
{
    return skips_in(skips, i, i) > 0;
}

/* The first index at or above i that is not skipped. */
static int64_t next_free(const json_t *skips, int64_t i)
{
    size_t k;
    json_t *r;
    json_array_foreach(skips, k, r) {
        if (rng(r, 0) <= i && i <= rng(r, 1)) i = rng(r, 1) + 1;
    }
    return i;
}

/* The ranges with from..to added (add) or taken out (!add): a new array. */
static json_t *skips_edit(const json_t *skips, int64_t from, int64_t to, bool add)
{
    json_t *out = json_array();
    size_t k;
    json_t *r;
    bool placed = !add;
    json_array_foreach(skips, k, r) {
        int64_t a = rng(r, 0), b = rng(r, 1);
        if (add) {
            if (b + 1 < from) {
                json_array_append_new(out, json_pack("[I,I]", (json_int_t)a, (json_int_t)b));
            } else if (a > to + 1) {
                if (!placed)
                    json_array_append_new(out,
                                          json_pack("[I,I]", (json_int_t)from, (json_int_t)to));
                placed = true;
                json_array_append_new(out, json_pack("[I,I]", (json_int_t)a, (json_int_t)b));
            } else { /* overlaps or touches: merged into from..to */
                if (a < from) from = a;
                if (b > to) to = b;
            }
        } else {
            if (a < from)
                json_array_append_new(
                    out, json_pack("[I,I]", (json_int_t)a, (json_int_t)(b < from ? b : from - 1)));
            if (b > to)
                json_array_append_new(
                    out, json_pack("[I,I]", (json_int_t)(a > to ? a : to + 1), (json_int_t)b));
        }
    }
    if (!placed) json_array_append_new(out, json_pack("[I,I]", (json_int_t)from, (json_int_t)to));
    return out;
}

static int write_cursor(struct store *st, const struct array_rec *a, struct err *e)
{
    char *text = json_dumps(a->skips, JSON_COMPACT);
    int rc = st->ops->array_set(st, a->id, a->next_index, text, array_claimable(a), e);
    free(text);
    return rc;
}

int64_t array_claimable(const struct array_rec *a)
{
    if (a->next_index >= a->count) return 0;
    return a->count - a->next_index - skips_in(a->skips, a->next_index, a->count - 1);
}

/* ---- the operations ---- */

int store_array_insert(struct store *st, const struct array_rec *a, struct err *e)
{
    return st->ops->array_insert(st, a, e);
}

int store_event_array(struct store *st, const struct array_rec *a, int change, struct err *e)
{
    json_t *d = json_pack("{s:I, s:s, s:s?}", "count", (json_int_t)a->count, "kind",
                          array_kind_name(a->kind), "name", a->name);
    int rc = st->ops->event_add(st, EVENT_ARRAY, a->id, a->queue, change, a->owner, d, NULL, e);
    json_decref(d);
    return rc;
}

int store_array_get(struct store *st, const char *id, struct array_rec *out, struct err *e)
{
    return st->ops->array_get(st, id, false, out, e);
}

int store_array_list(struct store *st, const char *owner, const char *after, int limit,
                     struct array_rec **out, size_t *n, struct err *e)
{
    return st->ops->array_list(st, owner, after, limit, out, n, e);
}

/*
 * Makes task i's job and links it to the array: queued, or, with `agent`, leased to it at
 * once (JOB_EV_LEASE applied before the row is written: one insert, one event).
 */
static int make_task(struct store *st, const struct array_rec *a, int64_t i, int64_t now_ms,
                     const char *agent, struct job *out, struct err *e)
{
    char *item = NULL;
    if (a->kind != ARRAY_COUNT) {
        int rc = st->ops->array_item(st, a->id, i, &item, e);
        if (rc) return rc;
    }
    /* a fan-out node's item: {"uri", "sha256"}, the task's item its URI, pinned */
    json_t *pin = a->kind == ARRAY_OUTPUTS && item ? json_loads(item, 0, NULL) : NULL;
    const char *uri = json_string_value(json_object_get(pin, "uri"));
    array_task_job(out, a->id, i, a->spec, uri ? uri : item,
                   json_string_value(json_object_get(pin, "sha256")), a->owner, a->tenant, now_ms,
                   a->run_after < now_ms ? a->run_after : now_ms);
    json_decref(pin);
    free(item);
    int rc = 0;
    if (agent) {
        struct job_event_args lease = {.now_ms = now_ms, .agent = agent};
        rc = lifecycle_apply(out, JOB_EV_LEASE, &lease, e);
    }
    if (!rc) rc = store_job_insert(st, out, e);
    if (!rc) rc = st->ops->array_task_add(st, a->id, i, out->id, e);
    if (rc) job_release(out);
    return rc;
}

int store_array_claim(struct store *st, const char *id, const char *agent, int64_t now_ms,
                      size_t k, struct job *out, size_t *got, struct err *e)
{
    struct array_rec a;
    *got = 0;
    int rc = st->ops->array_get(st, id, true, &a, e);
    if (rc) return rc;
    int64_t cursor = a.next_index;
    while (!rc && *got < k) {
        int64_t i = next_free(a.skips, cursor);
        if (i >= a.count) break;
        cursor = i + 1;
        if (!(rc = make_task(st, &a, i, now_ms, agent, &out[*got], e))) (*got)++;
    }
    if (!rc && cursor != a.next_index) {
        a.next_index = cursor;
        rc = write_cursor(st, &a, e);
    }
    if (rc) {
        for (size_t j = 0; j < *got; j++)
            job_release(&out[j]);
        *got = 0;
    } else if (!*got) {
        rc = err_set(e, ERR_NOTFOUND, "array '%s' has no task left to claim", id);
    }
    array_rec_release(&a);
    return rc;
}

int store_array_counts(struct store *st, const struct array_rec *a, int64_t *counts,
                       struct err *e)
{
    memset(counts, 0, JOB_NSTATES * sizeof(*counts));
    int rc = st->ops->array_job_counts(st, a->id, counts, e);
    if (rc) return rc;
    counts[JOB_QUEUED] += array_claimable(a);
    counts[JOB_CANCELLED] += skips_in(a->skips, 0, a->count - 1);
    return 0;
}

/* ---- by range ---- */

struct window {
    int64_t from;
    char (*ids)[UUID_STR_LEN]; /* TASK_WINDOW of them, "" for no job */
};

static int window_add(void *arg, int64_t index, const char *job)
{
    struct window *w = arg;
    snprintf(w->ids[index - w->from], UUID_STR_LEN, "%s", job);
    return 0;
}

/* The job ids of tasks from..from+TASK_WINDOW-1 (at most to) into w. */
static int window_read(struct store *st, const char *id, struct window *w, int64_t from,
                       int64_t to, struct err *e)
{
    w->from = from;
    memset(w->ids, 0, TASK_WINDOW * sizeof(*w->ids));
    int64_t end = from + TASK_WINDOW - 1 < to ? from + TASK_WINDOW - 1 : to;
    return st->ops->array_task_ids(st, id, from, end, window_add, w, e);
}

int store_array_tasks(struct store *st, const struct array_rec *a, int64_t from, int64_t to,
                      int state, int limit,
                      int (*fn)(void *arg, int64_t index, int state, const struct job *j),
                      void *arg, struct err *e)
{
    if (to >= a->count) to = a->count - 1;
    struct window w = {0, xcalloc(TASK_WINDOW, sizeof(*w.ids))};
    int rc = 0, given = 0;
    for (int64_t base = from; !rc && base <= to && given < limit; base += TASK_WINDOW) {
        if ((rc = window_read(st, a->id, &w, base, to, e))) break;
        for (int64_t i = base; !rc && i <= to && i < base + TASK_WINDOW && given < limit; i++) {
            const char *job = w.ids[i - base];
            if (job[0]) {
                struct job j;
                rc = store_job_get_run(st, job, &j, e);
                if (rc == ERR_NOTFOUND) { /* deleted after its retention */
                    rc = 0;
                    continue;
                }
                if (!rc && (state < 0 || state == j.state)) {
                    given++;
                    rc = fn(arg, i, j.state, &j);
                }
                job_release(&j);
            } else {
                int s = skipped(a->skips, i) ? JOB_CANCELLED
                        : i >= a->next_index ? JOB_QUEUED
                                             : -1;
                if (s < 0 || (state >= 0 && state != s)) continue;
                given++;
                rc = fn(arg, i, s, NULL);
            }
        }
    }
    free(w.ids);
    return rc;
}

int store_array_cancel(struct store *st, const char *id, int64_t from, int64_t to,
                       int64_t now_ms, int (*fn)(void *arg, struct job *j), void *arg,
                       int64_t *n, struct err *e)
{
    struct array_rec a;
    *n = 0;
    int rc = st->ops->array_get(st, id, true, &a, e);
    if (rc) return rc;
    if (to >= a.count) to = a.count - 1;
    struct window w = {0, xcalloc(TASK_WINDOW, sizeof(*w.ids))};
    /* tasks with a job are all below the cursor */
    int64_t below = to < a.next_index - 1 ? to : a.next_index - 1;
    for (int64_t base = from; !rc && base <= below; base += TASK_WINDOW) {
        if ((rc = window_read(st, id, &w, base, below, e))) break;
        for (int64_t k = 0; !rc && k < TASK_WINDOW; k++) {
            if (!w.ids[k][0]) continue;
            struct job j;
            struct job_event_args ev = {.now_ms = now_ms};
            struct err ce = ERR_INIT;
            rc = store_job_apply(st, w.ids[k], 0, NULL, true, JOB_EV_CANCEL, &ev, &j, &ce);
            if (rc == ERR_CONFLICT || rc == LIFECYCLE_SAME || rc == ERR_NOTFOUND) {
                if (rc != ERR_NOTFOUND) job_release(&j);
                rc = 0; /* ended already (or deleted after its retention) */
                continue;
            }
            if (rc) {
                *e = ce;
                break;
            }
            (*n)++;
            if (fn)
                rc = fn(arg, &j); /* takes it */
            else
                job_release(&j);
        }
    }
    free(w.ids);
    int64_t lo = from > a.next_index ? from : a.next_index;
    if (!rc && lo <= to) {
        *n += to - lo + 1 - skips_in(a.skips, lo, to);
        json_t *s = skips_edit(a.skips, lo, to, true);
        json_decref(a.skips);
        a.skips = s;
        rc = write_cursor(st, &a, e);
    }
    array_rec_release(&a);
    return rc;
}

int store_array_retry(struct store *st, const char *id, int64_t from, int64_t to,
                      int64_t now_ms, int (*fn)(void *arg, struct job *j), void *arg,
                      int64_t *n, struct err *e)
{
    struct array_rec a;
    *n = 0;
    int rc = st->ops->array_get(st, id, true, &a, e);
    if (rc) return rc;
    if (to >= a.count) to = a.count - 1;
    struct window w = {0, xcalloc(TASK_WINDOW, sizeof(*w.ids))};
    int64_t below = to < a.next_index - 1 ? to : a.next_index - 1;
    for (int64_t base = from; !rc && base <= below; base += TASK_WINDOW) {
        if ((rc = window_read(st, id, &w, base, below, e))) break;
        for (int64_t k = 0; !rc && k < TASK_WINDOW && base + k <= below; k++) {
            struct job j;
            int64_t i = base + k;
            if (!w.ids[k][0]) {
                if (!skipped(a.skips, i)) continue;
                rc = make_task(st, &a, i, now_ms, NULL, &j, e); /* cancelled unclaimed: queued now */
            } else {
                struct job_event_args ev = {.now_ms = now_ms};
                struct err ce = ERR_INIT;
                rc = store_job_apply(st, w.ids[k], 0, NULL, true, JOB_EV_RETRY, &ev, &j, &ce);
                if (rc == ERR_CONFLICT || rc == LIFECYCLE_SAME || rc == ERR_NOTFOUND) {
                    if (rc != ERR_NOTFOUND) job_release(&j);
                    rc = 0; /* not failed or cancelled */
                    continue;
                }
                if (rc) *e = ce;
            }
            if (rc) break;
            (*n)++;
            if (fn)
                rc = fn(arg, &j); /* takes it */
            else
                job_release(&j);
        }
    }
    free(w.ids);
    if (!rc) {
        /* above the cursor, a skipped task is queued again by leaving the skips */
        *n += skips_in(a.skips, from > a.next_index ? from : a.next_index, to);
        json_t *s = skips_edit(a.skips, from, to, false);
        json_decref(a.skips);
        a.skips = s;
        rc = write_cursor(st, &a, e);
    }
    array_rec_release(&a);
    return rc;
}
