/*
 * routes.c - THE route table: the whole HTTP API on one screen.
 *
 * method, path, handler, roles allowed, body limit, JSON body, and the query parameters
 * it takes (any other is refused with 400 naming it, so that a misspelt filter never
 * widens what a call reads or cancels).
 */
#include "server/server.h"

#define KiB 1024
#define MiB (1024 * 1024)
#define ANY_CLIENT (ROLE_CLIENT | ROLE_ADMIN)
#define AGENT (ROLE_AGENT | ROLE_ADMIN)
/* GET /v1/jobs's filters and paging (cancel and retry by filter refuse limit and after) */
#define QUERY_JOB_FILTER "state queue service name agent label limit after"

const struct route server_routes[] = {
    {"GET", "/healthz", api_healthz, 0, 0, false, ""},
    {"GET", "/readyz", api_readyz, 0, 0, false, ""},
    {"GET", "/metrics", api_metrics, 0, 0, false, ""},
    {"GET", "/v1/status", api_status, ANY_CLIENT | ROLE_AGENT, 0, false, ""},
    /* docs/openapi.json: every route of this table, and nothing else (tests/e2e/test_openapi.py) */
    {"GET", "/v1/openapi.json", api_openapi, 0, 0, false, ""},

    /* The dashboard (dashboard.c) and its sign-in (session.c): a token becomes a session
       cookie that the API accepts too (router_set_cookie_auth). */
    {"GET", "/", api_dashboard_page, 0, 0, false, NULL},
    {"GET", "/ui/{file*}", api_dashboard_file, 0, 0, false, NULL},
    {"POST", "/v1/session", api_session_create, 0, 4 * KiB, true, ""},
    {"GET", "/v1/session", api_session_get, 0, 0, false, ""},
    {"DELETE", "/v1/session", api_session_delete, 0, 0, false, ""},

    /* 10,000 specs (an array's most) of the seed message's 668 bytes are 6.7 MB compact,
       about 11 MB indented: 16 MiB holds them with room, and bounds what parsing one body
       costs the loop (about a quarter of the 64 MiB it was). */
    {"POST", "/v1/jobs", api_jobs_create, ANY_CLIENT, 16 * MiB, true, ""},
    {"GET", "/v1/jobs", api_jobs_list, ANY_CLIENT, 0, false, QUERY_JOB_FILTER},
    {"GET", "/v1/jobs/{id}", api_jobs_get, ANY_CLIENT, 0, false, ""},
    {"GET", "/v1/jobs/{id}/wait", api_jobs_wait, ANY_CLIENT, 0, false, "timeout_s"},
    {"POST", "/v1/jobs/cancel", api_jobs_cancel_many, ANY_CLIENT, 4 * KiB, false, QUERY_JOB_FILTER},
    {"POST", "/v1/jobs/{id}/cancel", api_jobs_cancel, ANY_CLIENT, 4 * KiB, false, ""},
    {"POST", "/v1/jobs/retry", api_jobs_retry_many, ANY_CLIENT, 4 * KiB, false, QUERY_JOB_FILTER},
    {"POST", "/v1/jobs/{id}/retry", api_jobs_retry, ANY_CLIENT, 4 * KiB, false, ""},
    {"GET", "/v1/jobs/{id}/log", api_jobs_log, ANY_CLIENT, 0, false,
     "stream offset follow attempt tail"},
    /* job arrays: submitted with POST /v1/jobs and "array" (api_arrays.c) */
    {"GET", "/v1/arrays", api_arrays_list, ANY_CLIENT, 0, false, "after limit"},
    {"GET", "/v1/arrays/{id}", api_arrays_get, ANY_CLIENT, 0, false, ""},
    {"GET", "/v1/arrays/{id}/tasks", api_arrays_tasks, ANY_CLIENT, 0, false, "state from to limit"},
    {"POST", "/v1/arrays/{id}/cancel", api_arrays_cancel, ANY_CLIENT, 4 * KiB, false, ""},
    {"POST", "/v1/arrays/{id}/retry", api_arrays_retry, ANY_CLIENT, 4 * KiB, false, ""},
    /* 1,000 nodes of the seed message's 668 bytes, indented, with room */
    {"POST", "/v1/workflows", api_workflows_create, ANY_CLIENT, 16 * MiB, true, ""},
    {"GET", "/v1/workflows", api_workflows_list, ANY_CLIENT, 0, false, "after limit"},
    {"GET", "/v1/workflows/{id}", api_workflows_get, ANY_CLIENT, 0, false, ""},
    {"POST", "/v1/workflows/{id}/cancel", api_workflows_cancel, ANY_CLIENT, 4 * KiB, false, ""},
    {"POST", "/v1/workflows/{id}/retry", api_workflows_retry, ANY_CLIENT, 4 * KiB, false, ""},
    /* upload triggers (api_triggers.c): a job spec or a workflow body, with room */
    {"POST", "/v1/triggers", api_triggers_create, ANY_CLIENT, 4 * MiB, true, ""},
    {"GET", "/v1/triggers", api_triggers_list, ANY_CLIENT, 0, false, "after limit"},
    {"GET", "/v1/triggers/{id}", api_triggers_get, ANY_CLIENT, 0, false, ""},
    {"PUT", "/v1/triggers/{id}", api_triggers_update, ANY_CLIENT, 4 * MiB, true, ""},
    {"DELETE", "/v1/triggers/{id}", api_triggers_delete, ANY_CLIENT, 0, false, ""},
    {"POST", "/v1/triggers/{id}/fire", api_triggers_fire, ANY_CLIENT, 0, false, ""},
    {"POST", "/v1/triggers/{id}/pause", api_triggers_pause, ANY_CLIENT, 0, false, ""},
    {"POST", "/v1/triggers/{id}/resume", api_triggers_resume, ANY_CLIENT, 0, false, ""},
    {"GET", "/v1/queues", api_queues_list, ANY_CLIENT, 0, false, ""},
    {"POST", "/v1/queues/{name}/pause", api_queues_pause, ROLE_ADMIN, 4 * KiB, false, ""},
    {"POST", "/v1/queues/{name}/resume", api_queues_resume, ROLE_ADMIN, 4 * KiB, false, ""},
    {"PUT", "/v1/queues/{name}", api_queues_put, ROLE_ADMIN, 4 * KiB, true, ""},
    {"GET", "/v1/events", api_events, ANY_CLIENT, 0, false, "since queue job type workflow array"},

    {"GET", "/v1/agents", api_agents_list, ANY_CLIENT, 0, false, ""},
    {"POST", "/v1/agents/register", api_agents_register, AGENT, 64 * KiB, true, ""},
    {"POST", "/v1/agents/{id}/poll", api_agents_poll, AGENT, 16 * MiB, true, ""},
    /* a log report's data is output as the program wrote it, NUL bytes too */
    {"POST", "/v1/agents/{id}/reports", api_agents_reports, AGENT, 64 * MiB, HTTP_JSON_NUL, ""},
    {"POST", "/v1/agents/{id}/leave", api_agents_leave, AGENT, 4 * KiB, false, ""},
    /* an admin drains any agent, an agent token the agents it registered; a client none */
    {"POST", "/v1/agents/{id}/drain", api_agents_drain, AGENT, 4 * KiB, false, ""},

    /* Objects: a presigned URL or a client token (checked by the handler); PUT bodies stream
       through the upload filter (http/upload.h), which refuses chunked ones (411). */
    {"PUT", "/v1/blobs/{bucket}/{key*}", api_blob_object, 0, 0, false, NULL},
    {"GET", "/v1/blobs/{bucket}/{key*}", api_blob_object, 0, 0, false, NULL},
    {"HEAD", "/v1/blobs/{bucket}/{key*}", api_blob_object, 0, 0, false, NULL},
    {"DELETE", "/v1/blobs/{bucket}/{key*}", api_blob_object, 0, 0, false, NULL},
    {"GET", "/v1/blobs/{bucket}", api_blob_list, ANY_CLIENT, 0, false, "prefix after limit"},
    {"GET", "/v1/blobs", api_blob_buckets, ANY_CLIENT, 0, false, "after limit"},
    {"POST", "/v1/presign", api_presign, ANY_CLIENT | ROLE_AGENT, 64 * KiB, true, ""},

    /* The service hub (api_services.c): anyone may read it, only admins change it. */
    {"PUT", "/v1/services/{name}", api_services_put, ROLE_ADMIN, 1 * MiB, true, ""},
    {"GET", "/v1/services", api_services_list, ANY_CLIENT, 0, false, ""},
    {"GET", "/v1/services/{name}", api_services_get, ANY_CLIENT, 0, false, ""},
    {"GET", "/v1/services/{name}/versions/{version}", api_services_get_version, ANY_CLIENT, 0,
     false, ""},
    {"DELETE", "/v1/services/{name}", api_services_delete, ROLE_ADMIN, 0, false, ""},

    {"GET", "/v1/tokens", api_tokens_list, ROLE_ADMIN, 0, false, ""},
    {"POST", "/v1/tokens", api_tokens_create, ROLE_ADMIN, 4 * KiB, true, ""},
    {"DELETE", "/v1/tokens/{name}", api_tokens_delete, ROLE_ADMIN, 0, false, ""},
    {"GET", "/v1/tenants", api_tenants_list, ROLE_ADMIN, 0, false, ""},
    {"PUT", "/v1/tenants/{name}", api_tenants_put, ROLE_ADMIN, 4 * KiB, true, ""},
};

const size_t server_nroutes = sizeof(server_routes) / sizeof(server_routes[0]);
