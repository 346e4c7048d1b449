/*
 * fuzz_workflow.c - workflows as POST /v1/workflows takes them: workflow_parse on a JSON
 * body, then what the server makes of one it accepts (its jobs, its stored document) and the
 * per-attempt URIs of its connections.
 *
 * Checks: refusals are ERR_INVALID with a message; an accepted workflow's topological order
 * holds every node once, each after its upstreams; node names are found by
 * workflow_node; the stored document names every node; a connection's per-attempt URI is
 * a valid s3 URI or NULL.
 */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "job/job.h"
#include "job/spec.h"
#include "job/workflow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!body) return 0;
    struct workflow w;
    struct err e = ERR_INIT;
    int rc = workflow_parse(body, &w, &e);
    if (rc) {
        FUZZ_CHECK(rc == ERR_INVALID && e.msg[0]);
        json_decref(body);
        return 0;
    }
    FUZZ_CHECK(w.n >= 1 && w.n <= WORKFLOW_MAX_NODES);
    size_t *pos = calloc(w.n, sizeof(*pos));
    bool *seen = calloc(w.n, sizeof(*seen));
    for (size_t k = 0; k < w.n; k++) {
        FUZZ_CHECK(w.order[k] < w.n && !seen[w.order[k]]);
        seen[w.order[k]] = true;
        pos[w.order[k]] = k;
    }
    for (size_t i = 0; i < w.n; i++) {
        FUZZ_CHECK(workflow_node(&w, w.nodes[i].name) == (long)i);
        for (size_t d = 0; d < w.nodes[i].ndeps; d++) {
            FUZZ_CHECK(w.nodes[i].deps[d].node < w.n);
            FUZZ_CHECK(pos[w.nodes[i].deps[d].node] < pos[i]);
        }
    }
    for (size_t c = 0; c < w.nconns; c++) {
        FUZZ_CHECK(w.conns[c].from < w.n && w.conns[c].to < w.n);
        if (!w.conns[c].base) continue;
        for (int attempt = 1; attempt <= 2; attempt++) {
            char *u = workflow_attempt_uri(w.conns[c].base, attempt);
            if (u) FUZZ_CHECK(spec_uri_valid(u, false, NULL));
            free(u);
        }
    }
    struct job *jobs = calloc(w.n, sizeof(*jobs));
    char(*ids)[UUID_STR_LEN] = calloc(w.n, sizeof(*ids));
    workflow_jobs(&w, "owner", 1700000000000, jobs);
    for (size_t i = 0; i < w.n; i++)
        memcpy(ids[i], jobs[i].id, UUID_STR_LEN);
    json_t *doc = workflow_doc(&w, (const char(*)[UUID_STR_LEN])ids);
    FUZZ_CHECK(json_object_size(json_object_get(doc, "nodes")) == w.n);
    json_decref(doc);
    for (size_t i = 0; i < w.n; i++)
        job_release(&jobs[i]);
    free(jobs);
    free(ids);
    free(pos);
    free(seen);
    workflow_release(&w);
    json_decref(body);
    return 0;
}
