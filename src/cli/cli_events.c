/*
 * cli_events.c - following the server's event stream (GET /v1/events):
 * `drover events`, and the reader `drover wait` and `submit --wait` use.
 *
 * The stream is Server-Sent Events: frames of "id:", "event:" and "data:"
 * lines ended by a blank line; lines starting with ':' are comments (the
 * server's first one says the seq the stream starts after). A broken
 * connection or a restarting server is ridden out: the reader connects again
 * with since=<the last seq seen>, so no event is lost or seen twice.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "commands.h"
#include "common/timeutil.h"
#include "common/uuid.h"
#include "common/xalloc.h"

#define FRAME_MAX (1 << 20) /* a frame longer than this is not the server's */
#define IDLE_MS 90000       /* no byte, not even a keep-alive, for this long: connect again */
#define RETRIES 6           /* consecutive failed connections tolerated once the server was seen */
#define STARTS_PREFIX ": drover events from seq "

struct sse {
    struct buf line; /* the line being read */
    struct buf data; /* the frame's data lines */
    int64_t id;
    char event[16];
    struct cli_follow *f;
    bool got; /* bytes came: the server was there */
};

static int64_t parse_i64(const char *s, bool *ok)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    *ok = *s && !*end && v >= 0;
    return v;
}

/* One complete line (without its newline). */
static int sse_line(struct sse *p, const char *l, struct err *e)
{
    struct cli_follow *f = p->f;
    bool ok;
    if (!*l) { /* the frame is complete */
        int rc = 0;
        if (p->data.len) {
            json_t *data = json_loadb(p->data.data, p->data.len, JSON_ALLOW_NUL, NULL);
            if (!json_is_object(data)) {
                json_decref(data);
                return err_set(e, ERR_INTERNAL, "the server sent an event that is not JSON");
            }
            if (p->id > f->since) {
                f->since = p->id;
                rc = f->on_event(f->arg, p->id, p->event, data, e);
            }
            json_decref(data);
        }
        buf_reset(&p->data);
        p->event[0] = '\0';
        return rc;
    }
    if (!strncmp(l, STARTS_PREFIX, strlen(STARTS_PREFIX))) {
        int64_t from = parse_i64(l + strlen(STARTS_PREFIX), &ok);
        if (!ok) return err_set(e, ERR_INTERNAL, "the server's event stream began oddly");
        if (f->since < 0) f->since = from;
        return f->on_start ? f->on_start(f->arg, e) : 0;
    }
    if (l[0] == ':') return 0; /* keep-alive */
    const char *colon = strchr(l, ':');
    size_t klen = colon ? (size_t)(colon - l) : strlen(l);
    const char *v = colon ? colon + 1 : "";
    if (*v == ' ') v++;
    if (klen == 4 && !strncmp(l, "data", 4)) {
        if (p->data.len) buf_addc(&p->data, '\n');
        buf_adds(&p->data, v);
        if (p->data.len > FRAME_MAX)
            return err_set(e, ERR_INTERNAL, "the server sent an event of over %d bytes", FRAME_MAX);
    } else if (klen == 2 && !strncmp(l, "id", 2)) {
        p->id = parse_i64(v, &ok);
        if (!ok) return err_set(e, ERR_INTERNAL, "the server sent an event id that is no seq");
    } else if (klen == 5 && !strncmp(l, "event", 5)) {
        snprintf(p->event, sizeof(p->event), "%s", v);
    }
    return 0; /* "retry:" and fields unknown are ignored, as EventSource does */
}

static int sse_chunk(void *arg, const char *data, size_t len, struct err *e)
{
    struct sse *p = arg;
    p->got = true;
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n') {
            if (p->line.len > FRAME_MAX)
                return err_set(e, ERR_INTERNAL, "the server sent a line of over %d bytes",
                               FRAME_MAX);
            buf_addc(&p->line, data[i]);
            continue;
        }
        if (p->line.len && p->line.data[p->line.len - 1] == '\r') p->line.data[--p->line.len] = 0;
        int rc = sse_line(p, p->line.len ? p->line.data : "", e);
        buf_reset(&p->line);
        if (rc) return rc;
    }
    return 0;
}

int cli_follow(struct cli *cli, struct cli_follow *f, double timeout_s, struct err *e)
{
    int64_t deadline = timeout_s < 0 ? -1 : time_mono_ns() + (int64_t)(timeout_s * 1e9);
    int failures = 0;
    bool seen = false;
    long saved_timeout = cli->http.timeout_ms;
    int rc;
    for (;;) {
        struct buf path = BUF_INIT;
        buf_adds(&path, "/v1/events?");
        buf_adds(&path, f->query ? f->query : "");
        if (f->since >= 0) buf_addf(&path, "%ssince=%" PRId64, f->query ? "&" : "", f->since);
        struct sse p = {.line = BUF_INIT, .data = BUF_INIT, .f = f};
        long status = 0;
        cli->http.timeout_ms = 0;
        if (deadline >= 0) {
            int64_t left_ms = (deadline - time_mono_ns()) / 1000000;
            cli->http.timeout_ms = left_ms > 1 ? left_ms : 1;
        }
        struct err ce = ERR_INIT;
        rc = http_client_stream(&cli->http, path.data, IDLE_MS, sse_chunk, &p, &status, &ce);
        buf_release(&path);
        buf_release(&p.line);
        buf_release(&p.data);
        seen = seen || cli->http.reached || p.got;
        if (rc == 1) /* silence: the connection may be dead without having said so */
            continue;
        if (rc == CLI_FOLLOW_STOP) {
            rc = 0;
            break;
        }
        if (deadline >= 0 && time_mono_ns() >= deadline) {
            rc = CLI_FOLLOW_TIMEOUT;
            break;
        }
        bool transient =
            rc == 0 /* the server ended the stream: it is shutting down */ ||
            (rc < 0 && (status == 0 || status == 503) && !ce.field[0] && ce.code != ERR_INTERNAL);
        if (transient && seen && ++failures <= RETRIES) {
            int64_t pause_ns = (int64_t)250000000 << (failures - 1 < 4 ? failures - 1 : 4);
            struct timespec ts = {pause_ns / 1000000000, pause_ns % 1000000000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (rc == 0)
            rc = err_set(e, ERR_UNAVAILABLE, "the server ended the event stream");
        else {
            f->status = status;
            *e = ce;
        }
        break;
    }
    cli->http.timeout_ms = saved_timeout;
    return rc;
}

/* ---- waiting for a workflow or an array to end ---- */

#define READ_GAP_NS 200000000LL /* the object read at most this often */
#define WAIT_RETRIES 20         /* failed reads in a row tolerated (a restart) */

static int stop_to_read(void *arg, struct err *e)
{
    (void)arg;
    (void)e;
    return CLI_FOLLOW_STOP; /* reads are made between two connections (one curl handle) */
}

/* GET the object into *obj, at most every READ_GAP_NS; 0, or an error with e and *status. */
static int read_paced(struct cli *cli, const char *path, int64_t *last_ns, json_t **obj,
                      long *status, struct err *e)
{
    int64_t gap = *last_ns ? *last_ns + READ_GAP_NS - time_mono_ns() : 0;
    if (gap > 0) {
        struct timespec ts = {(time_t)(gap / 1000000000), (long)(gap % 1000000000)};
        nanosleep(&ts, NULL);
    }
    *last_ns = time_mono_ns();
    *status = 0;
    *obj = NULL;
    return http_client_json(&cli->http, "GET", path, NULL, status, obj, e);
}

static bool running(json_t *obj)
{
    const char *state = json_string_value(json_object_get(obj, "state"));
    return !state || !strcmp(state, "running");
}

int cli_wait_ended(struct cli *cli, struct cli_wait *w, double timeout_s)
{
    struct cli_follow f = {.since = -1, .query = w->query, .on_start = stop_to_read,
                           .on_event = w->on_event, .arg = w->arg};
    const char *given = json_string_value(json_object_get(w->last, "id"));
    char *id = xstrdup(given ? given : "?"); /* w->last goes when it is read again */
    int64_t deadline = timeout_s < 0 ? -1 : time_mono_ns() + (int64_t)(timeout_s * 1e9);
    int64_t last_read = 0;
    int rc = 0, failures = 0;
    long status = 0;
    struct err e = ERR_INIT;
    while (running(w->last)) {
        double left_s = -1;
        if (deadline >= 0 && (left_s = (double)(deadline - time_mono_ns()) / 1e9) <= 0) {
            rc = CLI_FOLLOW_TIMEOUT;
            break;
        }
        /* connect to learn where the stream starts, or follow it until on_event stops */
        bool starting = f.since < 0;
        rc = cli_follow(cli, &f, left_s, &e);
        status = f.status;
        if (rc == ERR_GONE && !starting) { /* away so long the events were pruned: again */
            err_clear(&e);
            f.since = -1;
            f.on_start = stop_to_read;
            continue;
        }
        if (rc) break;
        f.on_start = NULL;
        json_t *obj;
        while ((rc = read_paced(cli, w->path, &last_read, &obj, &status, &e)) &&
               rc == ERR_UNAVAILABLE && (status == 0 || status == 503) &&
               ++failures <= WAIT_RETRIES)
            err_clear(&e); /* a restart: read again after the gap */
        if (rc) break;
        failures = 0;
        w->on_read(w->arg, w->last, obj);
        json_decref(w->last);
        w->last = obj;
    }
    if (rc == 0 || rc == CLI_FOLLOW_TIMEOUT) {
        if (w->json)
            cli_print_json(w->last);
        else
            w->print(w->last);
    }
    if (rc == CLI_FOLLOW_TIMEOUT) {
        cli_error(CLI_ERR_TIMEOUT, NULL, "%s '%s' is still running after %gs", w->kind, id,
                  timeout_s);
    } else if (rc) {
        char what[160];
        snprintf(what, sizeof(what), "cannot wait for %s '%s'", w->kind, id);
        cli_print_err(cli, &e, status, what);
    }
    free(id);
    return rc ? 1 : 0;
}

/* ---- drover events ---- */

static const char events_usage[] =
    "usage: drover events [--since SEQ] [--job ID]... [--workflow ID] [--array ID]\n"
    "                    [--queue Q] [--type T] [--json]\n"
    "\n"
    "Prints the server's events as they happen: every change of state of a job (and\n"
    "its progress), of an agent, of an object (created, deleted), of an array, of a\n"
    "workflow (submitted, ended, retried), of a queue (paused, resumed, its\n"
    "max_running set) and of a tenant's limits, and each fire and change (made,\n"
    "changed, paused, resumed, deleted) of a trigger, one line each, until\n"
    "interrupted. With --since, the events after SEQ first (those the server still\n"
    "keeps).\n"
    "\n"
    "      --since SEQ    start after event SEQ (0: all that are kept)\n"
    "  -j, --job ID       only this job's events (repeatable; ID may be a unique\n"
    "                     prefix of one)\n"
    "  -W, --workflow ID  only the events of this workflow and its jobs (ID may be a\n"
    "                     unique prefix of one; not with --job)\n"
    "  -A, --array ID     only the events of this job array and its tasks' jobs (not\n"
    "                     with --job or --workflow)\n"
    "  -q, --queue Q      only events of jobs in queue Q\n"
    "      --type T       only job, agent, object, trigger, array, queue, tenant or\n"
    "                     workflow events (--job and --queue are job events: no\n"
    "                     other type)\n"
    "      --json         one JSON object per line, as the server sends it\n"
    "\n"
    "examples:\n"
    "  drover events                                # every change from now on\n"
    "  drover events --queue bio --type job --json\n"
    "  drover events --since 0 --job 01938c2e-7d4a\n"
    CLI_COMMON_USAGE;

static void put_clean(FILE *out, const char *s)
{
    cli_put_clean(out, s, s ? strlen(s) : 0);
}

void cli_print_event(FILE *out, json_t *ev, bool brief)
{
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *at = json_string_value(json_object_get(ev, "at"));
    const char *state = json_string_value(json_object_get(ev, "state"));
    const char *agent = json_string_value(json_object_get(ev, "agent"));
    if (!brief) {
        char local[CLI_TIME_MAX];
        cli_format_time(at, true, local, sizeof(local)); /* local time, as the other commands */
        fprintf(out, "%" JSON_INTEGER_FORMAT " %s ", json_integer_value(json_object_get(ev, "seq")),
                local);
    }
    if (type && !strncmp(type, "object.", 7)) {
        fprintf(out, "object s3://");
        put_clean(out, json_string_value(json_object_get(ev, "bucket")));
        fputc('/', out);
        put_clean(out, json_string_value(json_object_get(ev, "key")));
        fprintf(out, " %s", type + 7);
        json_t *size = json_object_get(ev, "size");
        if (json_is_integer(size))
            fprintf(out, " %" JSON_INTEGER_FORMAT " bytes", json_integer_value(size));
        fputc('\n', out);
        fflush(out);
        return;
    }
    if (type && !strncmp(type, "trigger.", 8)) {
        fputs("trigger ", out);
        put_clean(out, json_string_value(json_object_get(ev, "trigger")));
        const char *by = json_string_value(json_object_get(ev, "by"));
        if (strcmp(type, "trigger.fired") && strcmp(type, "trigger.failed")) { /* a change */
            fprintf(out, " %s", type + 8);
            if (by) {
                fputs(" by ", out);
                put_clean(out, by);
            }
            fputc('\n', out);
            fflush(out);
            return;
        }
        fprintf(out, " %s ", type + 8);
        const char *uri = json_string_value(json_object_get(ev, "uri"));
        char when[CLI_TIME_MAX]; /* a schedule's: its time, local as the line's */
        if (!uri) fputs("at ", out);
        put_clean(out, uri ? uri : cli_local_time(json_string_value(json_object_get(ev, "time")),
                                                  when));
        const char *what = json_object_get(ev, "workflow") ? "workflow" : "job";
        const char *id = json_string_value(json_object_get(ev, what));
        const char *err = json_string_value(json_object_get(ev, "error"));
        if (id) fprintf(out, " -> %s %s", what, id);
        if (err) {
            fputs(": ", out);
            put_clean(out, err);
        }
        fputc('\n', out);
        fflush(out);
        return;
    }
    if (type && (!strncmp(type, "queue.", 6) || !strncmp(type, "array.", 6))) {
        bool queue = type[0] == 'q';
        fputs(queue ? "queue " : "array ", out);
        put_clean(out, json_string_value(json_object_get(ev, queue ? "queue" : "array")));
        fprintf(out, " %s", type + 6);
        const char *by = json_string_value(json_object_get(ev, "by"));
        json_t *count = json_object_get(ev, "count");
        if (by) {
            fputs(" by ", out);
            put_clean(out, by);
        }
        if (json_is_integer(count))
            fprintf(out, " (%" JSON_INTEGER_FORMAT " tasks)", json_integer_value(count));
        json_t *max = json_object_get(ev, "max_running");
        if (queue && !strcmp(type, "queue.limited")) {
            if (json_is_integer(max))
                fprintf(out, ": max_running %" JSON_INTEGER_FORMAT, json_integer_value(max));
            else
                fputs(": max_running none", out);
        }
        fputc('\n', out);
        fflush(out);
        return;
    }
    if (type && !strcmp(type, "tenant.changed")) {
        fputs("tenant ", out);
        put_clean(out, json_string_value(json_object_get(ev, "tenant")));
        fputs(" limits set:", out);
        static const char *const keys[] = {"max_running", "max_queued", "weight"};
        for (size_t i = 0; i < 3; i++) {
            json_t *v = json_object_get(ev, keys[i]);
            if (json_is_integer(v))
                fprintf(out, " %s %" JSON_INTEGER_FORMAT, keys[i], json_integer_value(v));
            else
                fprintf(out, " %s default", keys[i]);
        }
        fputc('\n', out);
        fflush(out);
        return;
    }
    if (type && !strcmp(type, "workflow")) {
        fputs("workflow ", out);
        put_clean(out, json_string_value(json_object_get(ev, "workflow")));
        const char *name = json_string_value(json_object_get(ev, "name"));
        if (name) {
            fputs(" (", out);
            put_clean(out, name);
            fputc(')', out);
        }
        fprintf(out, " %s", state ? state : "?");
        json_t *p = json_object_get(ev, "progress");
        if (p)
            fprintf(out,
                    ": %" JSON_INTEGER_FORMAT " succeeded, %" JSON_INTEGER_FORMAT
                    " failed, %" JSON_INTEGER_FORMAT " cancelled",
                    json_integer_value(json_object_get(p, "succeeded")),
                    json_integer_value(json_object_get(p, "failed")),
                    json_integer_value(json_object_get(p, "cancelled")));
        fputc('\n', out);
        fflush(out);
        return;
    }
    if (type && !strcmp(type, "agent")) {
        fputs("agent ", out);
        put_clean(out, agent);
        fprintf(out, " %s\n", state ? state : "?");
        fflush(out);
        return;
    }
    fprintf(out, "%s%s %s", brief ? "" : "job ", json_string_value(json_object_get(ev, "job")),
            state ? state : "?");
    const char *reason = json_string_value(json_object_get(ev, "reason"));
    json_t *code = json_object_get(ev, "exit_code");
    json_int_t attempt = json_integer_value(json_object_get(ev, "attempt"));
    /* queued with a reason: the attempt named ended, and the job waits for its next one */
    bool retried = state && !strcmp(state, "queued") && reason;
    if (attempt) fprintf(out, "%s attempt %" JSON_INTEGER_FORMAT, retried ? " again after" : "",
                         attempt);
    if (agent) {
        fputs(" on ", out);
        put_clean(out, agent);
    }
    json_t *pct = json_object_get(ev, "percent");
    if (json_is_number(pct) && state && !strcmp(state, "running")) {
        fprintf(out, " %.1f%%", json_number_value(pct));
        const char *msg = json_string_value(json_object_get(ev, "message"));
        if (msg) {
            fputc(' ', out);
            put_clean(out, msg);
        }
    }
    bool ended = retried || cli_job_is_terminal(state);
    if (ended && reason && (strcmp(reason, state) || json_is_integer(code))) {
        fprintf(out, " (%s", reason); /* not "cancelled (cancelled)" */
        if (json_is_integer(code)) fprintf(out, " %" JSON_INTEGER_FORMAT, json_integer_value(code));
        fputc(')', out);
    }
    const char *error = json_string_value(json_object_get(ev, "error"));
    if (ended && error && *error) {
        fputs(": ", out);
        put_clean(out, error);
    }
    fputc('\n', out);
    fflush(out);
}

static int print_event(void *arg, int64_t seq, const char *type, json_t *data, struct err *e)
{
    bool json = *(bool *)arg;
    if (json) {
        char *s = json_dumps(data, JSON_COMPACT);
        puts(s);
        free(s);
        fflush(stdout);
    } else {
        cli_print_event(stdout, data, false);
    }
    return 0;
}

enum { OPT_SINCE = CLI_OPT_FIRST_FREE, OPT_TYPE };

/* Adds "KIND=VALUE" to the query, VALUE escaped: the server reads ids and prefixes alike. */
static void add_param(struct buf *query, const char *kind, const char *value)
{
    char *v = http_escape(value);
    buf_addf(query, "%s%s=%s", query->len ? "&" : "", kind, v);
    free(v);
}

int cmd_events(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"since", required_argument, NULL, OPT_SINCE},
        {"job", required_argument, NULL, 'j'},
        {"queue", required_argument, NULL, 'q'},
        {"workflow", required_argument, NULL, 'W'},
        {"array", required_argument, NULL, 'A'},
        {"type", required_argument, NULL, OPT_TYPE},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc, argv, events_usage);
    struct buf query = BUF_INIT;
    struct buf jobs = BUF_INIT; /* the --job ids, escaped, comma-separated */
    size_t njobs = 0;
    const char *queue = NULL, *type = NULL, *workflow = NULL, *array = NULL;
    struct cli_follow f = {.since = -1, .on_event = print_event, .arg = &a.json};
    int opt, rc = CLI_CONTINUE;
    bool ok;
    while ((opt = cli_getopt(&a, ":j:q:W:A:h", longopts)) != -1) {
        switch (opt) {
        case OPT_SINCE:
            f.since = parse_i64(optarg, &ok);
            if (!ok)
                rc = cli_usage_error(events_usage,
                                     "--since must be an event's seq (>= 0), not '%s'", optarg);
            break;
        case 'j': {
            if (!*optarg || strchr(optarg, ','))
                rc = cli_usage_error(events_usage, "--job must be one job's ID, not '%s'", optarg);
            char *v = http_escape(optarg);
            buf_addf(&jobs, "%s%s", njobs++ ? "%2C" : "", v); /* job=A,B */
            free(v);
            break;
        }
        case 'q': {
            /* the server follows one queue: a second would be dropped without a word */
            if (queue)
                rc = cli_usage_error(events_usage, "--queue is given once: '%s' or '%s'?", queue,
                                     optarg);
            queue = optarg;
            add_param(&query, "queue", optarg);
            break;
        }
        case 'W':
        case 'A': {
            const char **which = opt == 'W' ? &workflow : &array;
            if (*which)
                rc = cli_usage_error(events_usage, "--%s is given once: '%s' or '%s'?",
                                     opt == 'W' ? "workflow" : "array", *which, optarg);
            *which = optarg;
            add_param(&query, opt == 'W' ? "workflow" : "array", optarg);
            break;
        }
        case OPT_TYPE:
            if (strcmp(optarg, "job") && strcmp(optarg, "agent") && strcmp(optarg, "object") &&
                strcmp(optarg, "trigger") && strcmp(optarg, "array") &&
                strcmp(optarg, "queue") && strcmp(optarg, "tenant") && strcmp(optarg, "workflow"))
                rc = cli_usage_error(events_usage,
                                     "--type must be job, agent, object, trigger, array, "
                                     "queue, tenant or workflow, not '%s'",
                                     optarg);
            else if (type)
                rc = cli_usage_error(events_usage, "--type is given once: '%s' or '%s'?", type,
                                     optarg);
            type = optarg;
            buf_addf(&query, "%stype=%s", query.len ? "&" : "", optarg);
            break;
        }
        if (rc != CLI_CONTINUE) goto out;
    }
    if ((rc = cli_args_none(&a)) != CLI_CONTINUE) goto out;
    /* the server follows one set of jobs: a job list, a workflow's or an array's */
    if ((njobs > 0) + !!workflow + !!array > 1) {
        rc = cli_usage_error(events_usage, "give one of --job, --workflow and --array");
        goto out;
    }
    /* job= and queue= follow job events only: the server would drop another type silently */
    if (type && strcmp(type, "job") && (njobs || queue)) {
        rc = cli_usage_error(events_usage,
                             "--type %s cannot go with --%s: a job's or a queue's events are "
                             "job events (--type job)",
                             type, njobs ? "job" : "queue");
        goto out;
    }
    struct cli cli;
    if (cli_connect(&cli, &a.conn)) {
        cli_release(&cli);
        rc = 1;
        goto out;
    }
    struct err e = ERR_INIT;
    if (njobs) buf_addf(&query, "%sjob=%s", query.len ? "&" : "", jobs.data);
    f.query = query.len ? query.data : NULL;
    rc = cli_follow(&cli, &f, -1, &e);
    if (rc) {
        cli_print_err(&cli, &e, f.status, "cannot follow the events");
        rc = 1;
    }
    cli_release(&cli);
out:
    buf_release(&query);
    buf_release(&jobs);
    return rc;
}
