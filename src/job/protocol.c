/* protocol.c - see protocol.h: the wire names of the agent protocol's enums. */
#include "job/protocol.h"

#include <string.h>

static const char *const report_names[PROTO_REPORT_COUNT] = {
    [PROTO_REPORT_STARTED] = "started",
    [PROTO_REPORT_LOG] = "log",
    [PROTO_REPORT_PROGRESS] = "progress",
    [PROTO_REPORT_FINISHED] = "finished",
    [PROTO_REPORT_RELEASED] = "released",
};

static const char *const reason_names[PROTO_REASON_COUNT] = {
    [PROTO_REASON_EXIT] = "exit",       [PROTO_REASON_SIGNAL] = "signal",
    [PROTO_REASON_TIMEOUT] = "timeout", [PROTO_REASON_CANCELLED] = "cancelled",
    [PROTO_REASON_ERROR] = "error",     [PROTO_REASON_OOM] = "oom",
    [PROTO_REASON_LOST] = "lost",
};

static const char *const stream_names[PROTO_STREAM_COUNT] = {
    [PROTO_STREAM_STDOUT] = "stdout",
    [PROTO_STREAM_STDERR] = "stderr",
};

static const char *name_of(const char *const *names, int n, int v)
{
    return v >= 0 && v < n ? names[v] : "unknown";
}

static int parse(const char *const *names, int n, const char *name)
{
    for (int i = 0; name && i < n; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

const char *proto_report_name(enum proto_report t)
{
    return name_of(report_names, PROTO_REPORT_COUNT, (int)t);
}

int proto_report_parse(const char *name)
{
    return parse(report_names, PROTO_REPORT_COUNT, name);
}

const char *proto_reason_name(enum proto_reason r)
{
    return name_of(reason_names, PROTO_REASON_COUNT, (int)r);
}

int proto_reason_parse(const char *name)
{
    return parse(reason_names, PROTO_REASON_COUNT, name);
}

const char *proto_stream_name(enum proto_stream s)
{
    return name_of(stream_names, PROTO_STREAM_COUNT, (int)s);
}

int proto_stream_parse(const char *name)
{
    return parse(stream_names, PROTO_STREAM_COUNT, name);
}

static const char *const runtime_names[] = {"native", "bwrap", "podman", "docker"};

const char *proto_runtime_name(unsigned rt)
{
    for (unsigned i = 0; i < sizeof(runtime_names) / sizeof(runtime_names[0]); i++)
        if (rt == 1u << i) return runtime_names[i];
    return "unknown";
}

unsigned proto_runtime_parse(const char *name)
{
    int i = parse(runtime_names, (int)(sizeof(runtime_names) / sizeof(runtime_names[0])), name);
    return i < 0 ? 0 : 1u << i;
}
