/* lease.c - see lease.h. */
#include "server/lease.h"

#include <stdlib.h>

#include "common/timeutil.h"
#include "common/xalloc.h"

int64_t lease_deadline(double timeout_s, int64_t now_ms, int64_t grace_ms)
{
    if (!(timeout_s > 0)) return 0;
    return now_ms + (int64_t)(timeout_s * 1000.0) + grace_ms;
}

struct lease_grant *lease_grant_new(const char *agent, size_t n, int64_t now_ms, int64_t grace_ms)
{
    struct lease_grant *g = xcalloc(1, sizeof(*g));
    g->agent = xstrdup(agent);
    g->now_ms = now_ms;
    g->grace_ms = grace_ms;
    g->n = n;
    g->c = xcalloc(n ? n : 1, sizeof(*g->c));
    g->timeout_s = xcalloc(n ? n : 1, sizeof(*g->timeout_s));
    g->deadline = xcalloc(n ? n : 1, sizeof(*g->deadline));
    return g;
}

void lease_grant_free(struct lease_grant *g)
{
    if (!g) return;
    for (size_t i = 0; i < g->n; i++)
        free(g->c[i].spec);
    free(g->c);
    free(g->timeout_s);
    free(g->deadline);
    free(g->agent);
    free(g);
}

int lease_grant_write(struct store *st, struct lease_grant *g, struct err *e)
{
    int rc = store_job_lease(st, g->agent, g->now_ms, g->c, g->n, &g->nleased, e);
    for (size_t i = 0; i < g->n; i++)
        g->deadline[i] =
            !rc && g->c[i].leased ? lease_deadline(g->timeout_s[i], g->now_ms, g->grace_ms) : 0;
    return rc;
}

void lease_answer_append(struct buf *b, const struct store_lease *l, int64_t deadline_ms)
{
    /* ids are UUIDs and the spec is JSON as stored: nothing here needs escaping */
    buf_addf(b, "{\"job\":\"%s\",\"attempt\":%d,\"spec\":", l->job, l->attempt);
    buf_adds(b, l->spec);
    if (deadline_ms) {
        char t[32];
        time_format_rfc3339(deadline_ms, t, sizeof(t));
        buf_addf(b, ",\"deadline\":\"%s\"}", t);
    } else {
        buf_adds(b, ",\"deadline\":null}");
    }
}
