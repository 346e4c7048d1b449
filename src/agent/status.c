/*
 * status.c - the agent's own HTTP endpoint (--listen ADDR:PORT, off by
 * default), on the agent's loop: /healthz, /metrics (Prometheus text) and
 * /v1/status (JSON). Read-only and without a token: bind it to an address
 * only trusted peers reach.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/cache.h"
#include "common/buf.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

struct status_server {
    struct evhttp *http;
};

static void reply(struct evhttp_request *req, int code, const char *type, const char *body)
{
    struct evbuffer *out = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evbuffer_add(out, body, strlen(body));
    evhttp_send_reply(req, code, code == 200 ? "OK" : code == 404 ? "Not Found" : "Error", out);
    evbuffer_free(out);
}

static void reply_json(struct evhttp_request *req, int code, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    reply(req, code, "application/json", text ? text : "{}");
    free(text);
    json_decref(j);
}

/* Only GET and HEAD: answers 405 otherwise and returns false. */
static bool get_only(struct evhttp_request *req)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD) return true;
    reply_json(req, 405,
               json_pack("{s:{s:s, s:s}}", "error", "code", "method_not_allowed", "message",
                         "only GET is allowed here"));
    return false;
}

static void on_healthz(struct evhttp_request *req, void *arg)
{
    (void)arg;
    if (get_only(req)) reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void metric(struct buf *b, const char *name, const char *type, const char *help,
                   uint64_t value)
{
    buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
             (unsigned long long)value);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct agent *a = arg;
    struct buf b = BUF_INIT;
    if (!get_only(req)) return;
    metric(&b, "drover_agent_jobs_started_total", "counter", "Job processes started.",
           a->m.jobs_started);
    buf_adds(&b, "# HELP drover_agent_jobs_finished_total Job attempts ended, by reason.\n"
                 "# TYPE drover_agent_jobs_finished_total counter\n");
    for (int r = 0; r < PROTO_AGENT_REASONS; r++)
        buf_addf(&b, "drover_agent_jobs_finished_total{reason=\"%s\"} %llu\n", proto_reason_name(r),
                 (unsigned long long)a->m.jobs_finished[r]);
    metric(&b, "drover_agent_jobs_running", "gauge",
           "Jobs running now, or downloading or uploading their files.", jobs_running(a));
    metric(&b, "drover_agent_jobs_held", "gauge",
           "Leases held: running, or whose result is not delivered yet.", a->njobs);
    metric(&b, "drover_agent_slots", "gauge", "Slots of this agent.", (uint64_t)a->o.slots);
    metric(&b, "drover_agent_free_slots", "gauge", "Slots not taken by running jobs.",
           (uint64_t)agent_free_slots(a));
    metric(&b, "drover_agent_reports_sent_total", "counter",
           "Reports the server answered (stored, or refused as stale or invalid).",
           a->m.reports_sent);
    metric(&b, "drover_agent_report_requests_total", "counter", "Reports requests sent.",
           a->m.report_requests);
    metric(&b, "drover_agent_report_errors_total", "counter",
           "Reports requests that failed, and reports refused as invalid.", a->m.report_errors);
    metric(&b, "drover_agent_polls_total", "counter", "Polls sent.", a->m.polls);
    metric(&b, "drover_agent_poll_errors_total", "counter", "Polls that failed.", a->m.poll_errors);
    metric(&b, "drover_agent_registrations_total", "counter", "Successful registrations.",
           a->m.registrations);
    metric(&b, "drover_agent_registered", "gauge", "1 when registered with the server.",
           a->registered ? 1 : 0);
    if (a->cache) {
        struct cache_stats cs;
        cache_stats(a->cache, &cs);
        metric(&b, "drover_agent_cache_hits_total", "counter",
               "Cached inputs found in the input cache (no download).", cs.hits);
        metric(&b, "drover_agent_cache_fetches_total", "counter",
               "Cached inputs downloaded into the input cache.", cs.fetches);
        metric(&b, "drover_agent_cache_waits_total", "counter",
               "Cached inputs that waited for another job's download of the same object.",
               cs.waits);
        metric(&b, "drover_agent_cache_evictions_total", "counter",
               "Objects removed from the input cache to keep its bound.", cs.evictions);
        metric(&b, "drover_agent_cache_objects", "gauge", "Objects in the input cache.",
               cs.objects);
        metric(&b, "drover_agent_cache_bytes", "gauge", "Bytes in the input cache.", cs.bytes);
        metric(&b, "drover_agent_cache_max_bytes", "gauge", "The input cache's bound.",
               cs.max_bytes);
    }
    reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", buf_str(&b));
    buf_release(&b);
}

static void on_status(struct evhttp_request *req, void *arg)
{
    struct agent *a = arg;
    if (!get_only(req)) return;
    json_t *jobs = json_array();
    for (struct agent_job *j = a->jobs; j; j = j->next) {
        char at[32];
        time_format_rfc3339(j->started_at_ms, at, sizeof(at));
        json_array_append_new(
            jobs, json_pack("{s:s, s:i, s:s, s:o, s:o, s:i, s:b, s:o}", "id", j->id, "attempt",
                            j->attempt, "state",
                            j->phase == PHASE_RUNNING     ? "running"
                            : j->preparing                ? "pulling"
                            : j->phase == PHASE_STAGE_IN  ? "downloading"
                            : j->phase == PHASE_STAGE_OUT ? "uploading"
                            : j->phase == PHASE_WAITING   ? "waiting"
                                                          : "reporting",
                            "pid", j->pid > 0 && !j->exited ? json_integer(j->pid) : json_null(),
                            "started_at", j->started_at_ms ? json_string(at) : json_null(), "slots",
                            j->slots, "recovered", j->recovered, "runtime",
                            j->runner ? json_string(j->runner->name) : json_null()));
    }
    char since[32];
    time_format_rfc3339(a->started_ms, since, sizeof(since));
    reply_json(req, 200,
               json_pack("{s:s, s:o, s:s, s:s, s:i, s:i, s:O, s:O, s:o, s:s, s:s, s:o, s:o}",
                         "name", a->o.name, "id", a->registered ? json_string(a->id) : json_null(),
                         "server", a->http.base_url, "state", agent_state(a), "slots", a->o.slots,
                         "free_slots", agent_free_slots(a), "queues", a->o.queues, "labels",
                         a->o.labels, "runtimes", proto_runtimes_json(a), "version",
                         DROVER_VERSION, "started_at", since, "jobs", jobs, "limits",
                         limits_json(&a->limits)));
}

static void on_other(struct evhttp_request *req, void *arg)
{
    (void)arg;
    reply_json(req, 404,
               json_pack("{s:{s:s, s:s}}", "error", "code", "not_found", "message",
                         "no such path (try /healthz, /metrics, /v1/status)"));
}

int status_start(struct agent *a, const char *listen, struct err *e)
{
    const char *colon = strrchr(listen, ':');
    char host[256];
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    size_t hl = colon ? (size_t)(colon - listen) : 0;
    if (hl >= 2 && listen[0] == '[' && listen[hl - 1] == ']') {
        listen++;
        hl -= 2;
    }
    if (!colon || hl == 0 || hl >= sizeof(host) || *end || port < 0 || port > 65535)
        return err_set(e, ERR_INVALID, "--listen must be ADDR:PORT, not '%s'", listen);
    memcpy(host, listen, hl);
    host[hl] = '\0';
    struct status_server *s = xcalloc(1, sizeof(*s));
    s->http = evhttp_new(a->base);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_max_body_size(s->http, 4096);
    evhttp_set_timeout(s->http, 30);
    evhttp_set_cb(s->http, "/healthz", on_healthz, a);
    evhttp_set_cb(s->http, "/metrics", on_metrics, a);
    evhttp_set_cb(s->http, "/v1/status", on_status, a);
    evhttp_set_gencb(s->http, on_other, a);
    a->status = s;
    errno = 0;
    if (evhttp_bind_socket(s->http, host, (ev_uint16_t)port) != 0)
        return err_set(e, ERR_IO, "cannot listen on %s for the status endpoint: %s", listen,
                       errno ? strerror(errno) : "the address cannot be used");
    return 0;
}

void status_stop(struct agent *a)
{
    if (!a->status) return;
    evhttp_free(a->status->http);
    free(a->status);
    a->status = NULL;
}
