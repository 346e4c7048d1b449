/*
 * cli_jobs.c - the job commands: submit, status, wait, cancel, jobs, queues.
 *
 * Each command parses its options (cli_getopt: --help; an unknown option is
 * a usage error, exit 2), calls the HTTP API (docs/api.md) and prints either a summary
 * for humans or, with --json, the server's JSON. Job ids on stdout stand
 * alone on their line so that `id=$(drover submit -- prog)` works.
 */
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "commands.h"
#include "common/timeutil.h"
#include "common/uuid.h"
#include "common/xalloc.h"
#include "job/array.h"
#include "job/service.h"
#include "job/spec.h"

#define SPEC_FILE_MAX ((size_t)64 << 20)
#define STATUS_STDOUT_LINES 10
#define STATUS_TAIL_BYTES 8192 /* of stdout (and stderr) fetched for their last lines */
#define STATUS_LINE_MAX 400    /* bytes of one line shown (a line can be megabytes) */
#define WAIT_RETRIES 20    /* consecutive failures tolerated once the server was seen */
#define JOBS_PAGE_MAX 1000 /* the most jobs the server gives in one page */

/* ---- reading jobs ---- */

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* "name", else "service", else the program (or shell command) from the spec. */
static const char *job_title(json_t *job)
{
    const char *s = jstr(job, "name");
    if (s && *s) return s;
    if ((s = jstr(job, "service")) && *s) return s;
    json_t *cmd = json_object_get(json_object_get(job, "spec"), "command");
    if ((s = jstr(cmd, "program")) && *s) return s;
    return jstr(cmd, "shell");
}

/* "exit 0 · 12ms", "signal 9 · 3.1s", "oom, signal 9 · 0.4s", "timeout · 10.0s", "cancelled";
   empty without result. */
static void result_summary(json_t *job, struct buf *out)
{
    json_t *r = json_object_get(job, "result");
    if (!json_is_object(r)) return;
    const char *reason = jstr(r, "reason");
    json_t *code = json_object_get(r, "exit_code");
    json_t *sig = json_object_get(r, "signal");
    json_t *dur = json_object_get(r, "duration_ms");
    if (json_is_integer(code) && (!reason || !strcmp(reason, "exit")))
        buf_addf(out, "exit %lld", (long long)json_integer_value(code));
    else if (json_is_integer(sig) && (!reason || !strcmp(reason, "signal")))
        buf_addf(out, "signal %lld", (long long)json_integer_value(sig));
    else if (json_is_integer(sig)) /* oom, timeout: what killed it says more than SIGKILL */
        buf_addf(out, "%s, signal %lld", reason, (long long)json_integer_value(sig));
    else
        buf_adds(out, reason ? reason : "?");
    if (json_is_number(dur)) {
        char d[32];
        cli_format_duration((int64_t)json_number_value(dur), d, sizeof(d));
        buf_addf(out, " \xc2\xb7 %s", d);
    }
}

/* The exit code of `drover wait` for a terminal job (README.md "Scripts"). */
static int job_exit_code(json_t *job)
{
    const char *state = jstr(job, "state");
    json_t *code = json_object_get(json_object_get(job, "result"), "exit_code");
    if (state && !strcmp(state, "succeeded")) return 0;
    if (json_is_integer(code) && json_integer_value(code) > 0 && json_integer_value(code) < 256)
        return (int)json_integer_value(code);
    return 1;
}

/* "ID succeeded (exit 0 · 12ms)" and, when the job failed to start, why. */
static void print_final_line(json_t *job)
{
    struct buf b = BUF_INIT;
    result_summary(job, &b);
    const char *state = jstr(job, "state");
    printf("%s %s", jstr(job, "id") ? jstr(job, "id") : "?", state ? state : "?");
    if (b.len && (!state || strcmp(b.data, state))) /* not "cancelled (cancelled)" */
        printf(" (%s)", b.data);
    const char *error = jstr(json_object_get(job, "result"), "error");
    if (!error) error = jstr(job, "error");
    if (error && *error) {
        fputs(": ", stdout);
        cli_put_clean(stdout, error, strlen(error));
    }
    putchar('\n');
    buf_release(&b);
}

/* ---- wait, shared by `wait` and `submit --wait` ---- */

/*
 * Waiting on jobs follows the event stream (cli_follow): connect (the server
 * says the seq its stream starts after), read each job once (what ended
 * before that seq is seen there), then take the events after it until every
 * job has ended. Nothing is polled.
 */
struct waiting {
    struct cli *cli;
    size_t n, left;
    char **ids;      /* whole ids */
    json_t **finals; /* each job's final JSON once it ended (from its event), else NULL */
    char **state;    /* the last state seen, for the timeout's message */
    bool quiet;      /* --json: no lines for humans */
};

static void waiting_release(struct waiting *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->ids[i]);
        free(w->state[i]);
        json_decref(w->finals[i]);
    }
    free(w->ids);
    free(w->state);
    free(w->finals);
}

static void set_state(struct waiting *w, size_t i, const char *state)
{
    free(w->state[i]);
    w->state[i] = xstrdup(state ? state : "unknown");
}

/* Job i has ended: `job` (stolen) is its final JSON. */
static void job_ended(struct waiting *w, size_t i, json_t *job)
{
    w->finals[i] = job;
    w->left--;
    set_state(w, i, jstr(job, "state"));
    if (!w->quiet) {
        print_final_line(job);
        fflush(stdout);
    }
}

/* GET job `id` (an id or a unique prefix): 0, or an error with e and *status set. */
static int get_job(struct cli *cli, const char *id, json_t **job, long *status, struct err *e)
{
    char *path = cli_path("/v1/jobs/", id, "");
    json_t *answer = NULL;
    *status = 0;
    int rc = http_client_json(&cli->http, "GET", path, NULL, status, &answer, e);
    free(path);
    *job = rc ? NULL : json_incref(cli_job_of(answer));
    json_decref(answer);
    return rc;
}

/*
 * `method` /v1/jobs/{id}{suffix}, as cli_request, `what` saying what failed; the
 * message of a 404 says when `id` is an array's or a workflow's (drover array or
 * workflow `sub`). Returns 0 with *resp the answer (the caller's), or 1 after
 * printing why (*resp NULL).
 */
static int job_request(const struct cli_opts *o, const char *method, const char *id,
                       const char *suffix, const char *sub, json_t **resp, const char *what)
{
    struct cli cli;
    struct err e = ERR_INIT;
    long status = 0;
    *resp = NULL;
    if (cli_connect(&cli, o)) {
        cli_release(&cli);
        return 1;
    }
    char *path = cli_path("/v1/jobs/", id, suffix);
    int rc = http_client_json(&cli.http, method, path, NULL, &status, resp, &e);
    free(path);
    if (rc) {
        cli_not_a_job(&cli, id, sub, &e);
        cli_print_err(&cli, &e, status, what);
        json_decref(*resp);
        *resp = NULL;
    }
    cli_release(&cli);
    return rc ? 1 : 0;
}

/* A failure that a restarting server or a dropped connection explains. */
static bool transient(int rc, long status)
{
    return rc == ERR_UNAVAILABLE && (status == 0 || status == 503);
}

/* The stream is there (the seq it starts after is known): read the jobs not yet ended once. */
static int wait_on_start(void *arg, struct err *e)
{
    (void)e;
    return CLI_FOLLOW_STOP; /* the reads are made between two connections (one curl handle) */
}

static int wait_on_event(void *arg, int64_t seq, const char *type, json_t *ev, struct err *e)
{
    struct waiting *w = arg;
    const char *job = jstr(ev, "job"), *state = jstr(ev, "state");
    for (size_t i = 0; job && state && i < w->n; i++) {
        if (w->finals[i] || strcmp(w->ids[i], job)) continue;
        set_state(w, i, state);
        if (!cli_job_is_terminal(state)) {
            if (!w->quiet) cli_print_event(stderr, ev, true);
            break;
        }
        json_t *result = json_object();
        static const char *const keys[] = {"reason", "exit_code", "signal", "error",
                                           "duration_ms"};
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
            if (json_object_get(ev, keys[k]))
                json_object_set(result, keys[k], json_object_get(ev, keys[k]));
        job_ended(w, i,
                  json_pack("{s:s, s:s, s:O, s:o}", "id", job, "state", state, "attempt",
                            json_object_get(ev, "attempt"), "result", result));
        break;
    }
    return w->left ? 0 : CLI_FOLLOW_STOP;
}

/*
 * Waits for jobs `ids` (ids or unique prefixes) to end, or `timeout_s` (< 0:
 * none), printing a line for each state change (stderr) and each end
 * (stdout) unless `json`. *finals (the caller's) gets the array of the jobs'
 * JSON as last read. Returns the worst exit code (`drover wait`).
 */
static int wait_jobs(struct cli *cli, const char *const *ids, size_t n, double timeout_s,
                     bool json, json_t **finals)
{
    struct waiting w = {.cli = cli, .n = n, .left = n, .quiet = json};
    w.ids = xcalloc(n, sizeof(*w.ids));
    w.state = xcalloc(n, sizeof(*w.state));
    w.finals = xcalloc(n, sizeof(*w.finals));
    int64_t deadline = timeout_s < 0 ? -1 : time_mono_ns() + (int64_t)(timeout_s * 1e9);
    struct buf query = BUF_INIT;
    struct cli_follow f = {.since = -1, .on_start = wait_on_start, .on_event = wait_on_event,
                           .arg = &w};
    struct err e = ERR_INIT;
    long status = 0;
    int rc = 0, worst = 0, failures = 0;
    bool seen = false; /* the server answered once: a failure now is a restart or a hiccup */
    const char *failed = NULL; /* the job whose reading failed, for the message */
    *finals = NULL;
    /* whole ids (a prefix is resolved by reading the job) for the stream's filter */
    for (size_t i = 0; i < n; i++) {
        json_t *job = NULL;
        if (!uuid_valid(ids[i]) && (rc = get_job(cli, ids[i], &job, &status, &e))) {
            failed = ids[i];
            goto fail;
        }
        w.ids[i] = xstrdup(job ? jstr(job, "id") : ids[i]);
        json_decref(job);
    }
    buf_adds(&query, "type=job&job=");
    for (size_t i = 0; i < n; i++) {
        char *eid = http_escape(w.ids[i]);
        buf_addf(&query, "%s%s", i ? "%2C" : "", eid);
        free(eid);
    }
    f.query = query.data;
    while (w.left) {
        double left_s = -1;
        if (rc && !(transient(rc, status) && seen && ++failures <= WAIT_RETRIES)) break;
        if (deadline >= 0 && (left_s = (double)(deadline - time_mono_ns()) / 1e9) <= 0) {
            rc = CLI_FOLLOW_TIMEOUT;
            break;
        }
        if (rc) { /* a restart or a hiccup: start again (connect, read the jobs) */
            struct timespec ts = {0, 250000000L}; /* cli_follow itself waits longer */
            nanosleep(&ts, NULL);
            err_clear(&e);
            failed = NULL;
            f.since = -1;
            rc = 0;
        }
        status = 0;
        if (f.since < 0) {
            /* connect to learn where the stream starts, then read each job once */
            if ((rc = cli_follow(cli, &f, left_s, &e))) continue;
            seen = true;
            for (size_t i = 0; i < n && w.left && !rc; i++) {
                json_t *job;
                if (w.finals[i]) continue;
                if ((rc = get_job(cli, w.ids[i], &job, &status, &e))) {
                    failed = w.ids[i];
                    continue;
                }
                set_state(&w, i, jstr(job, "state"));
                if (cli_job_is_terminal(jstr(job, "state")))
                    job_ended(&w, i, job);
                else
                    json_decref(job);
            }
            continue;
        }
        f.on_start = NULL;
        rc = cli_follow(cli, &f, left_s, &e);
        f.on_start = wait_on_start;
        status = f.status;
        if (!rc) failures = 0;
        if (rc == ERR_GONE) { /* so long away that the events were pruned: read them again */
            f.since = -1;
            err_clear(&e);
            rc = 0;
        }
    }
    bool timed_out = rc == CLI_FOLLOW_TIMEOUT;
    if (rc && !timed_out) goto fail;
    rc = 0;
    /* the answer: each job as it is now (the whole JSON with --json, else the exit codes) */
    json_t *all = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *job = NULL;
        if (json || !w.finals[i]) {
            if ((rc = get_job(cli, w.ids[i], &job, &status, &e))) {
                json_decref(all);
                failed = w.ids[i];
                goto fail;
            }
        } else {
            job = json_incref(w.finals[i]);
        }
        const char *state = jstr(job, "state");
        if (cli_job_is_terminal(state)) {
            int code = job_exit_code(job);
            if (code > worst) worst = code;
        } else {
            cli_error(CLI_ERR_TIMEOUT, NULL, "job '%s' is still %s after %gs", w.ids[i],
                      state ? state : "unknown", timeout_s);
            worst = worst > 1 ? worst : 1;
        }
        json_array_append_new(all, job);
    }
    *finals = all;
    goto out;
fail:
    if (failed) {
        char what[160];
        snprintf(what, sizeof(what), "cannot wait for job '%s'", failed);
        cli_not_a_job(cli, failed, "wait", &e);
        cli_print_err(cli, &e, status, what);
    } else {
        cli_print_err(cli, &e, status,
                      n == 1 ? "cannot wait for the job" : "cannot wait for the jobs");
    }
    rc = 1;
out:
    buf_release(&query);
    waiting_release(&w);
    return rc ? rc : worst;
}

/* --json after waiting: the job's JSON, or {"jobs": [...]} for several (or an array of specs). */
static void print_finals(json_t *finals, bool one)
{
    if (one) {
        cli_print_json(json_array_get(finals, 0));
        return;
    }
    json_t *wrapped = json_pack("{s:O}", "jobs", finals);
    cli_print_json(wrapped);
    json_decref(wrapped);
}

/* ---- submit ---- */

static const char submit_usage[] =
    "usage: drover submit [options] -- PROGRAM [ARGS...]\n"
    "       drover submit [options] -f SPEC.json|-\n"
    "       drover submit [options] --service NAME [--param K=V]...\n"
    "\n"
    "Submits a job and prints its id (one per line for an array of specs).\n"
    "When no agent up could take a job (no agent serves its queue, has the labels\n"
    "it requires or as many slots), the server's warnings say so on standard\n"
    "error; the job is queued all the same.\n"
    "With -- the job runs PROGRAM with ARGS (no shell); with -f the spec file (or\n"
    "standard input) is sent as it is, an object or an array of them, and the\n"
    "options below replace its fields (--label, --requires and --env add to them).\n"
    "\n"
    "  -f, --file FILE    the job spec (docs/api.md \"The job spec\"); '-' reads\n"
    "                     standard input\n"
    "  -q, --queue Q      queue (default 'default')\n"
    "  -p, --priority N   -1000..1000, higher runs first\n"
    "  -n, --name NAME    a name for humans\n"
    "  -l, --label K=V    a label (repeatable)\n"
    "      --requires K=V run only on an agent with the label K=V (repeatable)\n"
    "      --slots N      how many of an agent's slots the job takes, 1..1024 (default 1)\n"
    "      --delay S      start no sooner than S seconds from now\n"
    "      --retries N    retry a failed attempt at most N times, 0..99 (default 2;\n"
    "                     0: no retry)\n"
    "      --attempts N   the same, counted as attempts in all: 1..100 (--retries N+1)\n"
    "      --memory-mb N  the job's memory limit in MiB (resources.memory_mb, 4..4194304)\n"
    "      --cpus N       the CPUs' time it may use (resources.cpus, 0.01..1024; 0.5: half\n"
    "                     of one CPU)\n"
    "      --pids N       the processes and threads it may have at once (resources.pids)\n"
    "  -t, --timeout S    kill the job after S seconds\n"
    "  -e, --env K=V      an environment variable for the program (repeatable)\n"
    "      --stdin FILE   the program's standard input: FILE's text (at most 1 MiB;\n"
    "                     '-': this command's standard input)\n"
    "      --image IMAGE  run in a container of IMAGE (command.image: an agent with\n"
    "                     podman or docker)\n"
    "      --sandbox      run in a bubblewrap sandbox (command.sandbox: an agent with bwrap)\n"
    "      --network, --no-network\n"
    "                     a sandboxed or container job's network (command.network)\n"
    "      --notify URL   POST the job's end to URL (notify_url; docs/api.md \"Webhooks\")\n"
    "      --notify-all   ... and each of its state changes (notify: \"all\")\n"
    "      --array N      a job array of N tasks, 0..N-1 (1..1000000; docs/api.md\n"
    "                     \"Arrays\"): each runs with DROVER_ARRAY_INDEX, and {{index}}\n"
    "                     in an argument becomes its index\n"
    "      --array-items FILE\n"
    "                     a job array of one task per line of FILE ('-': standard\n"
    "                     input), which it gets as DROVER_ARRAY_ITEM and {{item}}\n"
    "      --array-objects s3://BUCKET/PREFIX\n"
    "                     a job array of one task per object under the prefix, its\n"
    "                     URI the task's item (@{{item}}: the object as an input)\n"
    "  -k, --key KEY      idempotency key: submitting the same key again returns the first job\n"
    "                     (whatever this spec says; a note on stderr tells it); not with a\n"
    "                     file of several specs (give each its \"key\" in the file)\n"
    "  -s, --service NAME run service NAME of the hub (`drover service`); the job gives\n"
    "                     only its params\n"
    "  -P, --param K=V    a param or port of the service (repeatable); the server checks\n"
    "                     V against the param's type; @./FILE uploads FILE and gives its uri\n"
    "      --service-version V\n"
    "                     that version of the service (default: its latest)\n"
    "  -w, --wait         wait for the job to end and exit like `drover wait`\n"
    "      --upload-to s3://BUCKET[/PREFIX]\n"
    "                     where local files (@path, below) go (default\n"
    "                     s3://uploads/<a new UUID>)\n"
    "      --json         print the server's JSON answer; errors as JSON on stderr\n"
    "\n"
    "Files: after --, an argument @./path, @../path or @/path names a local file;\n"
    "it is uploaded before the job is submitted and the job gets it as an input\n"
    "argument (its agent downloads it and passes the local copy's path).\n"
    "@s3://BUCKET/KEY is an object the job gets the same way, and\n"
    "@out:s3://BUCKET/KEY an output: the program gets a local path, and the file\n"
    "it writes there is uploaded to the object after a successful run.\n"
    "@out:./path (../path, /path) is an output stored beside the uploads, which\n"
    "--wait (required) downloads to that path once the job has succeeded. In a\n"
    "job array, @{{item}} is the task's item as an object's URI, an input too.\n"
    "Any other argument starting with @ is passed as it is; @@x passes @x. In a\n"
    "spec file, the value \"@path\" of an input argument, of command.input and\n"
    "of a uri command.stdin is such a file (relative to the current folder), and\n"
    "of an output argument a local output (--wait downloads it); a\n"
    "command.input file goes into a sub-folder of its own (BASE/1/NAME, ...) so\n"
    "that, as a prefix, it matches that file only.\n"
    "\n"
    "examples:\n"
    "  drover submit -- echo hello                  # prints the new job's id\n"
    "  drover submit --wait -q bio -- nhmmer --cpu 2 --tblout @out:s3://hits/q.tbl \\\n"
    "                   @./query.fa @s3://db/rfam.fa\n"
    "  drover submit --wait -- sort -o @out:./sorted.txt @./names.txt\n"
    "  drover submit -f spec.json --priority 5 --label project=x\n"
    "  drover submit --service nhmmer --param query=@./q.fa --param hits=s3://out/h.tbl\n"
    "  drover submit --json -f - < specs.json       # an array: one transaction\n"
    CLI_COMMON_USAGE;

enum {
    OPT_SERVICE = CLI_OPT_FIRST_FREE,
    OPT_UPLOAD_TO,
    OPT_REQUIRES,
    OPT_SLOTS,
    OPT_DELAY,
    OPT_RETRIES,
    OPT_ATTEMPTS,
    OPT_STDIN,
    OPT_MEMORY_MB,
    OPT_CPUS,
    OPT_PIDS,
    OPT_SERVICE_VERSION,
    OPT_ARRAY,
    OPT_ARRAY_ITEMS,
    OPT_ARRAY_OBJECTS,
    OPT_FROM,
    OPT_TO,
    OPT_IMAGE,
    OPT_SANDBOX,
    OPT_NETWORK,
    OPT_NO_NETWORK,
    OPT_NOTIFY,
    OPT_NOTIFY_ALL,
};

#define DELAY_MAX_S 31536000.0  /* the API's limit of delay_s */
#define TIMEOUT_MAX_S 2592000.0 /* ... and of timeout_s */

/* Sets obj[key] = v, stealing v; false when v is NULL (json_string of text that is not UTF-8). */
static bool put(json_t *obj, const char *key, json_t *v)
{
    return v && json_object_set_new(obj, key, v) == 0;
}

/* What submit's options set in each spec. */
struct overrides {
    json_t *fields;    /* top-level fields that replace the spec's (queue, slots, ...) */
    json_t *labels;    /* added to labels */
    json_t *requires;  /* added to requires */
    json_t *env;       /* added to command.env */
    json_t *resources; /* added to resources */
    json_t *command;   /* command fields that replace the spec's (image, sandbox, network) */
    json_t *params;    /* added to params (a service's) */
    json_t *stdin_;    /* command.stdin, or NULL */
    long max_attempts; /* retry.max_attempts, or 0 */
};

/* obj[key] as an object to add to: made when absent or null; NULL when it is something else
 * (left as it is for the server to refuse). */
static json_t *member_object(json_t *obj, const char *key)
{
    json_t *have = json_object_get(obj, key);
    if (json_is_object(have)) return have;
    if (have && !json_is_null(have)) return NULL;
    have = json_object();
    json_object_set_new(obj, key, have);
    return have;
}

/* Adds the pairs of `add` to obj[key] (see member_object). */
static void merge_into(json_t *obj, const char *key, json_t *add)
{
    json_t *have;
    if (json_object_size(add) > 0 && (have = member_object(obj, key)))
        json_object_update(have, add);
}

/* Sets the options on one spec object: they win over what the file says; maps merge. */
static void apply_overrides(json_t *spec, const struct overrides *ov)
{
    json_t *obj;
    json_object_update(spec, ov->fields);
    merge_into(spec, "labels", ov->labels);
    merge_into(spec, "requires", ov->requires);
    merge_into(spec, "resources", ov->resources);
    merge_into(spec, "params", ov->params);
    if (ov->max_attempts && (obj = member_object(spec, "retry")))
        json_object_set_new(obj, "max_attempts", json_integer(ov->max_attempts));
    json_t *cmd = json_object_get(spec, "command");
    if (!json_is_object(cmd)) return; /* the server says what is wrong with it */
    merge_into(cmd, "env", ov->env);
    json_object_update(cmd, ov->command);
    if (ov->stdin_) json_object_set(cmd, "stdin", ov->stdin_);
}

/*
 * Where a label's "K=V" splits: at its first '=', else (K:V, the API's form of a
 * label filter; ':' cannot be in a label's name) at its first ':'. NULL for neither.
 */
static const char *label_split(const char *arg)
{
    const char *eq = strchr(arg, '=');
    return eq ? eq : strchr(arg, ':');
}

/*
 * Parses "K=V", the value of option `opt`, into obj[K] = V, K checked by
 * `valid` (`rule` says what it must be), V at most `max` bytes; `label`: a
 * label's K:V is taken too (label_split). Returns CLI_CONTINUE, or 2 after a
 * usage error naming the option.
 */
static int put_pair(json_t *obj, const char *opt, const char *arg, bool (*valid)(const char *),
                    const char *rule, size_t max, bool label)
{
    const char *eq = label ? label_split(arg) : strchr(arg, '=');
    if (!eq || eq == arg)
        return cli_usage_error(submit_usage, "%s must be KEY=VALUE, not '%s'", opt, arg);
    char *k = xstrndup(arg, (size_t)(eq - arg));
    int rc = CLI_CONTINUE;
    if (!valid(k))
        rc = cli_usage_error(submit_usage, "%s: '%s' is not a valid name (%s)", opt, k, rule);
    else if (strlen(eq + 1) > max)
        rc = cli_usage_error(submit_usage, "%s: the value of '%s' is longer than %zu bytes", opt, k,
                             max);
    else if (!put(obj, k, json_string(eq + 1)))
        rc = cli_usage_error(submit_usage, "%s: '%s' is not UTF-8 text", opt, arg);
    free(k);
    return rc;
}

static bool env_name_valid(const char *s)
{
    return spec_env_name_valid(s) && strncmp(s, "DROVER_", 7);
}

/* A number of seconds as JSON: an integer when it is one. */
static json_t *seconds_json(double s)
{
    return s == floor(s) && s < 1e15 ? json_integer((json_int_t)s) : json_real(s);
}

/* command.stdin {"type": "pipe", "value": FILE's text}; NULL after printing why not. */
static json_t *stdin_pipe(const char *file)
{
    struct buf b = BUF_INIT;
    struct err e = ERR_INIT;
    json_t *v = NULL;
    const char *name = strcmp(file, "-") ? file : "standard input";
    int rc = cli_read_file(file, SPEC_MAX_PIPE, &b, &e);
    if (rc == ERR_TOOLARGE)
        cli_error(CLI_ERR_INVALID, "command.stdin",
                  "--stdin: '%s' is larger than %d bytes; put it in the object store and give a "
                  "spec (-f) a uri command.stdin",
                  name, SPEC_MAX_PIPE);
    else if (rc < 0)
        cli_error_e(&e);
    else if (!(v = json_stringn(b.data ? b.data : "", b.len)))
        cli_error(CLI_ERR_INVALID, "command.stdin",
                  "--stdin: '%s' is not UTF-8 text (or holds a NUL byte); put it in the object "
                  "store and give a spec (-f) a uri command.stdin",
                  name);
    buf_release(&b);
    return v ? json_pack("{s:s, s:o}", "type", "pipe", "value", v) : NULL;
}

/*
 * @{{item}} makes each item an input, which names an object or a URL: an item that is a
 * local path (it has no scheme) is said here, with what to do, rather than as the server's
 * "must be a valid uri" of one task. False after saying it.
 */
static bool items_fit_inputs(const json_t *spec, const json_t *items, const char *file)
{
    const json_t *args = json_object_get(json_object_get(spec, "command"), "arguments");
    const json_t *arg, *item;
    size_t k, i;
    json_array_foreach(args, k, arg) {
        const char *v = json_string_value(json_object_get(arg, "value"));
        const char *type = json_string_value(json_object_get(arg, "type"));
        if (!v || !type || strcmp(type, "input") || strncmp(v, "{{item}}", 8)) continue;
        json_array_foreach(items, i, item) {
            const char *t = json_string_value(item);
            if (strstr(t, "://")) continue;
            cli_error(CLI_ERR_INVALID, "array.items",
                      "--array-items: line %zu of '%s' is '%.100s', not a URI: @{{item}} makes "
                      "each item an input, an s3://, http(s):// or file:/// URI; for local "
                      "files, upload them first (drover put FILE s3://BUCKET/PREFIX/) and give "
                      "--array-objects s3://BUCKET/PREFIX/",
                      i + 1, strcmp(file, "-") ? file : "standard input", t);
            return false;
        }
    }
    return true;
}

/*
 * --array-items FILE: its lines as the items (a final newline, and a '\r' before each
 * newline, are not part of them). NULL after saying what is wrong: no line, an empty
 * line, a line that is too long or not UTF-8 text, too many lines.
 */
static json_t *array_items(const char *file)
{
    struct buf b = BUF_INIT;
    struct err e = ERR_INIT;
    const char *name = strcmp(file, "-") ? file : "standard input";
    json_t *items = NULL;
    if (cli_read_file(file, SPEC_FILE_MAX, &b, &e) < 0) {
        cli_error_e(&e);
        goto out;
    }
    items = json_array();
    const char *p = b.data ? b.data : "", *end = p + b.len;
    for (size_t line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        if (n && p[n - 1] == '\r') n--;
        json_t *item = n && n <= ARRAY_MAX_ITEM ? json_stringn(p, n) : NULL;
        if (!item || json_array_size(items) == ARRAY_MAX_TASKS) {
            char why[96];
            if (!n || n > ARRAY_MAX_ITEM || !item)
                snprintf(why, sizeof(why), "%s",
                         !n                   ? "is empty: each line is one task's item"
                         : n > ARRAY_MAX_ITEM ? "is longer than an item may be"
                                              : "is not UTF-8 text (or holds a NUL byte)");
            else
                snprintf(why, sizeof(why), "is one too many: an array has %d tasks at most",
                         ARRAY_MAX_TASKS);
            cli_error(CLI_ERR_INVALID, "array.items", "--array-items: line %zu of '%s' %s", line,
                      name, why);
            json_decref(item);
            json_decref(items);
            items = NULL;
            goto out;
        }
        json_array_append_new(items, item);
        p = nl ? nl + 1 : end;
    }
    if (!json_array_size(items)) {
        cli_error(CLI_ERR_INVALID, "array.items",
                  "--array-items: '%s' holds no line: an array needs one item at least", name);
        json_decref(items);
        items = NULL;
    }
out:
    buf_release(&b);
    return items;
}

/* Reads and parses the spec file; prints why not and returns NULL on failure. */
static json_t *load_spec(const char *file)
{
    struct err e = ERR_INIT;
    const char *name = strcmp(file, "-") ? file : "standard input";
    json_t *spec = cli_load_json(file, SPEC_FILE_MAX, &e);
    if (!spec) {
        cli_error_e(&e);
    } else if (!json_is_object(spec) && !json_is_array(spec)) {
        cli_error(CLI_ERR_INVALID, NULL,
                  "'%s' must hold a job spec (an object) or an array of them", name);
        json_decref(spec);
        spec = NULL;
    }
    return spec;
}

/* ---- submit: local files (@path) ---- */

/* The local files a submission names, each with the object it becomes. */
struct uploads {
    char *base;       /* "s3://uploads/<uuid>" or --upload-to, no trailing '/'; owned */
    json_t *by_path;  /* "a:PATH" (an argument's) or "p:PATH" (a prefix's, in a folder of
                       * its own) -> URI */
    json_t *by_name;  /* file name -> local path: the agent could not hold two of one name */
    json_t *by_inode; /* "dev:inode" -> URI: one file under two paths is uploaded once */
    int folders;      /* the sub-folders made so far for command.input files */
    json_t *order;    /* the by_path keys in the order met */
    json_t *uploaded; /* the URIs uploaded so far */
    json_t *outputs;  /* local outputs (@out:./x): path -> URI, downloaded after --wait */
};

static void uploads_init(struct uploads *up)
{
    up->base = NULL;
    up->by_path = json_object();
    up->by_name = json_object();
    up->folders = 0;
    up->by_inode = json_object();
    up->order = json_array();
    up->uploaded = json_array();
    up->outputs = json_object();
}

static void uploads_release(struct uploads *up)
{
    free(up->base);
    json_decref(up->by_path);
    json_decref(up->by_name);
    json_decref(up->by_inode);
    json_decref(up->order);
    json_decref(up->uploaded);
    json_decref(up->outputs);
}

/* NULL, after saying that `path` is named as an input and as an output. */
static const char *in_and_out(const char *path)
{
    cli_error(CLI_ERR_INVALID, NULL,
              "'%s' is both an input and an output (@out:%s); write the output to a file of "
              "another name",
              path, path);
    return NULL;
}

/* Where this submission's local files go: --upload-to, or s3://uploads/<a new UUID>. */
static const char *upload_base(struct uploads *up)
{
    if (!up->base) {
        char id[UUID_STR_LEN];
        uuid7_new(id);
        up->base = xasprintf("s3://uploads/%s", id);
    }
    return up->base;
}

/*
 * The URI the local file `path` will be uploaded to (borrowed from `up`), or
 * NULL after printing why it cannot be: it cannot be read, is a folder, its
 * name makes no key, or another file of the same name is uploaded too. The
 * file is only looked at here; it is read by upload_all.
 *
 * With `alone` (a command.input prefix) the file goes into a sub-folder of its
 * own, BASE/N/NAME, so that the prefix matches it only (BASE/data would match
 * BASE/data.idx too); else to BASE/NAME.
 */
static const char *upload_uri(struct uploads *up, const char *path, bool alone)
{
    char *path_key = xasprintf("%c:%s", alone ? 'p' : 'a', path);
    const char *have = jstr(up->by_path, path_key);
    free(path_key);
    if (have) return have;
    struct stat st;
    if (stat(path, &st) < 0) {
        cli_error(CLI_ERR_IO, NULL, "cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        cli_error(CLI_ERR_IO, NULL, "'%s' is a folder; only files can be uploaded", path);
        return NULL;
    }
    char inode[64];
    snprintf(inode, sizeof(inode), "%s%ju:%ju", alone ? "p:" : "", (uintmax_t)st.st_dev,
             (uintmax_t)st.st_ino);
    if ((have = jstr(up->by_inode, inode))) return have;
    if (jstr(up->outputs, path)) return in_and_out(path);
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    char *uri = alone ? xasprintf("%s/%d/%s", upload_base(up), up->folders + 1, name)
                      : xasprintf("%s/%s", upload_base(up), name);
    const char *why = NULL;
    const char *other;
    if (!spec_uri_valid(uri, false, &why)) {
        cli_error(CLI_ERR_INVALID, NULL, "cannot upload '%s' as '%s': %s", path, uri, why);
        free(uri);
        return NULL;
    }
    /* The agent names its local copy after the key's last part: two files of one name
     * could not both be there, so they are refused rather than renamed (one file named
     * both as an argument and as a prefix is the same file). */
    if ((other = jstr(up->by_name, name)) && strcmp(other, path)) {
        cli_error(CLI_ERR_INVALID, NULL,
                  "'%s' and '%s' would both be uploaded as '%s'; give the files different names",
                  other, path, name);
        free(uri);
        return NULL;
    }
    path_key = xasprintf("%c:%s", alone ? 'p' : 'a', path);
    bool stored = put(up->by_path, path_key, json_string(uri)) &&
                  put(up->by_name, name, json_string(path)) &&
                  put(up->by_inode, inode, json_string(uri));
    if (!stored) {
        cli_error(CLI_ERR_INVALID, NULL, "the file name '%s' is not UTF-8 text", path);
        free(uri);
        free(path_key);
        return NULL;
    }
    free(uri);
    if (alone) up->folders++;
    json_array_append_new(up->order, json_string(path_key));
    have = jstr(up->by_path, path_key);
    free(path_key);
    return have;
}

static bool names_local_file(const char *arg);
static const char *output_uri(struct uploads *up, const char *path);

/* Replaces the value "@path" of obj[key] by the URI path is uploaded to ("@@x" by "@x"). */
static int resolve_at_value(struct uploads *up, json_t *obj, const char *key)
{
    const char *v = jstr(obj, key);
    if (!v || v[0] != '@') return 0;
    if (v[1] == '@') return json_object_set_new(obj, key, json_string(v + 1)) ? -1 : 0;
    const char *uri = upload_uri(up, v + 1, false);
    if (!uri) return -1;
    json_object_set_new(obj, key, json_string(uri));
    return 0;
}

/* The @path values of one spec of a spec file (see submit_usage); -1 after printing why. */
static int resolve_spec_files(struct uploads *up, json_t *spec)
{
    json_t *cmd = json_object_get(spec, "command"), *params = json_object_get(spec, "params");
    size_t i;
    json_t *v;
    const char *key;
    json_object_foreach(json_is_object(params) ? params : NULL, key, v) {
        /* a service's port given as a local file (a param that is not one says so, with
           the uploaded uri, when the server checks its type) */
        if (jstr(params, key) && names_local_file(jstr(params, key)) &&
            resolve_at_value(up, params, key))
            return -1;
    }
    if (!json_is_object(cmd)) return 0;
    json_array_foreach(json_object_get(cmd, "arguments"), i, v)
    {
        const char *type = json_is_object(v) ? jstr(v, "type") : NULL;
        const char *value = type ? jstr(v, "value") : NULL;
        if (type && !strcmp(type, "input") && resolve_at_value(up, v, "value")) return -1;
        if (type && !strcmp(type, "output") && value && value[0] == '@' && value[1] != '@') {
            const char *uri = output_uri(up, value + 1); /* a local output */
            if (!uri) return -1;
            json_object_set_new(v, "value", json_string(uri));
        } else if (type && !strcmp(type, "output") && value && value[0] == '@') {
            json_object_set_new(v, "value", json_string(value + 1));
        }
    }
    json_t *in = json_object_get(cmd, "input");
    json_array_foreach(in, i, v)
    {
        const char *s = json_string_value(v);
        if (!s || s[0] != '@') continue;
        const char *uri = s[1] == '@' ? s + 1 : upload_uri(up, s + 1, true);
        if (!uri) return -1;
        json_array_set_new(in, i, json_string(uri));
    }
    json_t *stdin_ = json_object_get(cmd, "stdin");
    if (jstr(stdin_, "type") && !strcmp(jstr(stdin_, "type"), "uri") &&
        resolve_at_value(up, stdin_, "value"))
        return -1;
    return 0;
}

/* True when `s` is a local path as the CLI's @ arguments take them: ./x, ../x, /x. */
static bool local_path(const char *s)
{
    return !strncmp(s, "./", 2) || !strncmp(s, "../", 3) || s[0] == '/';
}

/* True when an argument after -- names a local file: @./x, @../x, @/x. */
static bool names_local_file(const char *arg)
{
    return arg[0] == '@' && local_path(arg + 1);
}

/*
 * The URI a local output (@out:PATH) goes to, BASE/NAME, which --wait downloads
 * into PATH once the job has succeeded (borrowed from `up`); NULL after printing
 * why it cannot be: PATH is a folder or its folder is not there or not writable,
 * its name makes no key, or it is an input too, or another file of that name is
 * an input or an output. Checked before anything is submitted.
 */
static const char *output_uri(struct uploads *up, const char *path)
{
    const char *have = jstr(up->outputs, path);
    if (have) return have;
    char *as_input = xasprintf("a:%s", path);
    bool input = jstr(up->by_path, as_input) != NULL;
    free(as_input);
    if (input) return in_and_out(path);
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    struct stat st;
    if (!*name || (stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
        cli_error(CLI_ERR_INVALID, NULL, "output '%s' is a folder; an output is a file", path);
        return NULL;
    }
    char *copy = xstrdup(path);
    const char *dir = dirname(copy);
    const char *why = stat(dir, &st) < 0     ? strerror(errno)
                      : !S_ISDIR(st.st_mode) ? "not a folder"
                      : access(dir, W_OK) < 0 ? strerror(errno)
                                              : NULL;
    if (why) cli_error(CLI_ERR_IO, NULL, "cannot write output '%s' into '%s': %s", path, dir, why);
    free(copy);
    if (why) return NULL;
    char *uri = xasprintf("%s/%s", upload_base(up), name);
    const char *other = jstr(up->by_name, name);
    if (!spec_uri_valid(uri, false, &why)) {
        cli_error(CLI_ERR_INVALID, NULL, "output '%s' cannot be stored as '%s': %s", path, uri,
                  why);
    } else if (other && strcmp(other, path)) {
        cli_error(CLI_ERR_INVALID, NULL,
                  "'%s' and '%s' would both be '%s' in the job's folder; give the files "
                  "different names",
                  other, path, name);
    } else if (!put(up->by_name, name, json_string(path)) ||
               !put(up->outputs, path, json_string(uri))) {
        cli_error(CLI_ERR_INVALID, NULL, "the file name '%s' is not UTF-8 text", path);
    } else {
        free(uri);
        return jstr(up->outputs, path);
    }
    free(uri);
    return NULL;
}

/* Downloads each local output of a job that succeeded; 0, or 1 after printing why not. */
static int download_outputs(struct cli *cli, const struct uploads *up, json_t *job)
{
    const char *state = jstr(job, "state");
    bool ok = state && !strcmp(state, "succeeded");
    int rc = 0;
    const char *path;
    json_t *uri;
    json_object_foreach(up->outputs, path, uri)
    {
        if (!ok)
            cli_notice("note", "output '%s' was not written: the job %s", path,
                       state ? state : "did not end");
        else if (cli_blob_get(cli, json_string_value(uri), path, NULL)) {
            cli_notice("note", "output '%s' is kept as %s (drover get %s PATH)", path,
                       json_string_value(uri), json_string_value(uri));
            rc = 1;
        }
    }
    return rc;
}

/* What an argument after -- is (program_spec). */
enum arg_kind {
    ARG_PLAIN,      /* passed as it is (@@x as @x) */
    ARG_LOCAL,      /* @./x, @../x, @/x: a local file, uploaded, an input */
    ARG_OBJECT_IN,  /* @s3://B/K or @{{item}} (an array's): an object, an input */
    ARG_OBJECT_OUT, /* @out:s3://B/K: an output (its agent uploads it after the run) */
    ARG_LOCAL_OUT,  /* @out:./x, @out:../x, @out:/x: an output, downloaded after --wait */
};

static enum arg_kind arg_kind(const char *arg)
{
    if (names_local_file(arg)) return ARG_LOCAL;
    if (!strncmp(arg, "@s3://", 6) || !strncmp(arg, "@{{item}}", 9)) return ARG_OBJECT_IN;
    if (!strncmp(arg, "@out:", 5))
        return local_path(arg + 5) ? ARG_LOCAL_OUT : ARG_OBJECT_OUT;
    return ARG_PLAIN;
}

/*
 * The spec for `-- PROGRAM ARGS`: command.argv when every argument is plain, else
 * command.arguments, typed: local files and @s3:// objects as inputs, @out:s3:// as
 * outputs, the others as parameters. NULL after printing why not.
 */
static json_t *program_spec(struct uploads *up, char **argv, int first, int argc)
{
    bool typed = false;
    for (int i = first + 1; i < argc; i++)
        typed = typed || arg_kind(argv[i]) != ARG_PLAIN;
    json_t *args = json_array();
    for (int i = first + 1; i < argc; i++) {
        const char *arg = argv[i][0] == '@' && argv[i][1] == '@' ? argv[i] + 1 : argv[i];
        json_t *item;
        enum arg_kind kind = arg_kind(argv[i]);
        if (kind == ARG_LOCAL) {
            const char *uri = upload_uri(up, argv[i] + 1, false);
            if (!uri) goto fail;
            item = json_pack("{s:s, s:s}", "type", "input", "value", uri);
        } else if (kind == ARG_LOCAL_OUT) {
            const char *uri = output_uri(up, argv[i] + 5);
            if (!uri) goto fail;
            item = json_pack("{s:s, s:s}", "type", "output", "value", uri);
        } else if (kind == ARG_OBJECT_OUT && strncmp(argv[i] + 5, "s3://", 5)) {
            cli_error(CLI_ERR_INVALID, NULL,
                      "argument '%s': an output is @out:s3://BUCKET/KEY (its agent uploads the "
                      "file the program writes there) or @out:./PATH (with --wait: downloaded "
                      "there after the job); @@out:... passes @out:... as it is",
                      argv[i]);
            goto fail;
        } else if (kind != ARG_PLAIN) {
            item = json_pack("{s:s, s:s}", "type", kind == ARG_OBJECT_IN ? "input" : "output",
                             "value", argv[i] + (kind == ARG_OBJECT_IN ? 1 : 5));
        } else if (typed) {
            item = json_pack("{s:s, s:s}", "type", "parameter", "value", arg); /* NULL: not UTF-8 */
        } else {
            item = json_string(arg);
        }
        if (!item) {
            cli_error(CLI_ERR_INVALID, NULL, "argument '%s' is not UTF-8 text", argv[i]);
            goto fail;
        }
        json_array_append_new(args, item);
    }
    json_t *spec = json_pack("{s:{s:s, s:o}}", "command", "program", argv[first],
                             typed ? "arguments" : "argv", args);
    if (!spec)
        cli_error(CLI_ERR_INVALID, NULL, "the program's name '%s' is not UTF-8 text", argv[first]);
    return spec;
fail:
    json_decref(args);
    return NULL;
}

/* Prints which objects were uploaded, when some were, after a failure. */
static void tell_uploaded(const struct uploads *up)
{
    size_t n = json_array_size(up->uploaded);
    if (n == 0) return;
    struct buf list = BUF_INIT;
    size_t i;
    json_t *v;
    json_array_foreach(up->uploaded, i, v)
    {
        buf_addf(&list, "%s%s", i ? " " : "", json_string_value(v));
    }
    cli_error("not_submitted", NULL,
              "the job was not submitted; %s uploaded before: %s (`drover rm` deletes them)",
              n == 1 ? "this object was" : "these objects were", buf_str(&list));
    buf_release(&list);
}

/* Uploads every file met; 0, or 1 after printing why (and what was uploaded already). */
static int upload_all(struct cli *cli, struct uploads *up)
{
    size_t i;
    json_t *v;
    json_array_foreach(up->order, i, v)
    {
        const char *key = json_string_value(v);
        const char *uri = jstr(up->by_path, key);
        const char *path = key + 2; /* after "a:" or "p:" */
        struct err e = ERR_INIT;
        int64_t size = 0;
        int fd = cli_blob_open_local(path, &size, &e);
        if (fd < 0) {
            cli_error_e(&e);
            tell_uploaded(up);
            return 1;
        }
        int rc = cli_blob_upload_fd(cli, fd, size, path, uri, NULL);
        close(fd);
        if (rc) {
            tell_uploaded(up);
            return 1;
        }
        json_array_append_new(up->uploaded, json_string(uri));
    }
    return 0;
}

/*
 * The answer's warnings (why no agent could take a job) on stderr, one per
 * line; `job` names the job when the answer holds several. The exit code
 * does not change: the job is queued all the same.
 */
static void print_warnings(json_t *answer, const char *job)
{
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(answer, "warnings"), i, w)
    {
        if (!json_is_string(w)) continue;
        cli_notice("warning", "%s%s%s", job ? job : "", job ? ": " : "", json_string_value(w));
    }
}

/*
 * An array submitted: its id (--json: its summary); with --wait, its summary polled until
 * every task has ended: 0 when all succeeded, else 1.
 */
static int submitted_array(struct cli *cli, json_t *arr, bool wait, bool json)
{
    const char *id = json_string_value(json_object_get(arr, "id"));
    if (!id) {
        cli_error(CLI_ERR_INTERNAL, NULL, "the server's answer has no array id");
        return 1;
    }
    if (!wait || !json) { /* with --wait --json, only the array at its end */
        if (json)
            cli_print_json(arr);
        else
            printf("%s\n", id);
        fflush(stdout);
    }
    return wait ? cli_array_wait(cli, id, -1, json) : 0;
}

/* The value of submit's --`opt` that must be an s3://bucket[/prefix]: CLI_CONTINUE, or 2
   after a usage error naming the option. */
static int s3_prefix_option(const char *opt, const char *uri)
{
    struct cli_s3_uri u;
    struct err e = ERR_INIT;
    if (cli_s3_parse(uri, true, &u, &e) < 0)
        return cli_usage_error(submit_usage, "--%s: %s", opt, e.msg);
    cli_s3_release(&u);
    return CLI_CONTINUE;
}

int cmd_submit(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"file", required_argument, NULL, 'f'},
        {"queue", required_argument, NULL, 'q'},
        {"priority", required_argument, NULL, 'p'},
        {"name", required_argument, NULL, 'n'},
        {"label", required_argument, NULL, 'l'},
        {"timeout", required_argument, NULL, 't'},
        {"key", required_argument, NULL, 'k'},
        {"wait", no_argument, NULL, 'w'},
        {"upload-to", required_argument, NULL, OPT_UPLOAD_TO},
        {"requires", required_argument, NULL, OPT_REQUIRES},
        {"slots", required_argument, NULL, OPT_SLOTS},
        {"delay", required_argument, NULL, OPT_DELAY},
        {"retries", required_argument, NULL, OPT_RETRIES},
        {"attempts", required_argument, NULL, OPT_ATTEMPTS},
        {"env", required_argument, NULL, 'e'},
        {"stdin", required_argument, NULL, OPT_STDIN},
        {"memory-mb", required_argument, NULL, OPT_MEMORY_MB},
        {"cpus", required_argument, NULL, OPT_CPUS},
        {"pids", required_argument, NULL, OPT_PIDS},
        {"service", required_argument, NULL, 's'},
        {"param", required_argument, NULL, 'P'},
        {"service-version", required_argument, NULL, OPT_SERVICE_VERSION},
        {"array", required_argument, NULL, OPT_ARRAY},
        {"array-items", required_argument, NULL, OPT_ARRAY_ITEMS},
        {"array-objects", required_argument, NULL, OPT_ARRAY_OBJECTS},
        {"image", required_argument, NULL, OPT_IMAGE},
        {"sandbox", no_argument, NULL, OPT_SANDBOX},
        {"network", no_argument, NULL, OPT_NETWORK},
        {"no-network", no_argument, NULL, OPT_NO_NETWORK},
        {"notify", required_argument, NULL, OPT_NOTIFY},
        {"notify-all", no_argument, NULL, OPT_NOTIFY_ALL},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc, argv, submit_usage);
    struct overrides ov = {
        .fields = json_object(),
        .labels = json_object(),
        .requires = json_object(),
        .env = json_object(),
        .resources = json_object(),
        .command = json_object(),
        .params = json_object(),
    };
    json_t *fields = ov.fields;
    const char *file = NULL, *stdin_file = NULL, *items_file = NULL;
    const char *array_opt = NULL; /* the option that made "array" */
    bool wait = false;
    int opt, rc = 2;
    json_t *spec = NULL, *answer = NULL;
    struct cli cli = {0};
    struct uploads up;
    uploads_init(&up);

    /* '+': stop at the program's name, whose own options are not ours */
    while ((opt = cli_getopt(&a, "+:f:q:p:n:l:t:k:e:s:P:wh", longopts)) != -1) {
        bool good = true;
        switch (opt) {
        case 'f':
            file = optarg;
            break;
        case 'q':
            if (!spec_queue_name_valid(optarg)) {
                rc = cli_usage_error(submit_usage,
                                     "--queue: '%s' is not a queue's name ([a-z0-9._-]{1,64})",
                                     optarg);
                goto out;
            }
            good = put(fields, "queue", json_string(optarg));
            break;
        case 'n':
            good = put(fields, "name", json_string(optarg));
            break;
        case 'k':
            good = put(fields, "key", json_string(optarg));
            break;
        case 'w':
            wait = true;
            break;
        case OPT_IMAGE: /* the server checks the reference */
            good = put(ov.command, "image", json_string(optarg));
            break;
        case OPT_SANDBOX:
            put(ov.command, "sandbox", json_true());
            break;
        case OPT_NETWORK:
        case OPT_NO_NETWORK:
            put(ov.command, "network", json_boolean(opt == OPT_NETWORK));
            break;
        case OPT_NOTIFY: /* the server checks the URL (and what it may reach) */
            good = put(fields, "notify_url", json_string(optarg));
            break;
        case OPT_NOTIFY_ALL:
            put(fields, "notify", json_string("all"));
            break;
        case OPT_UPLOAD_TO: {
            if ((rc = s3_prefix_option("upload-to", optarg)) != CLI_CONTINUE) goto out;
            free(up.base);
            up.base = xstrdup(optarg);
            size_t n = strlen(up.base);
            while (n > 0 && up.base[n - 1] == '/')
                up.base[--n] = '\0';
            break;
        }
        case 'p': {
            long prio;
            if (!cli_parse_long(optarg, -1000, 1000, &prio)) {
                rc = cli_usage_error(
                    submit_usage, "--priority must be an integer in -1000..1000, not '%s'", optarg);
                goto out;
            }
            put(fields, "priority", json_integer(prio));
            break;
        }
        case 't': {
            double t;
            if (!cli_parse_seconds(optarg, &t) || t <= 0 || t > TIMEOUT_MAX_S) {
                rc = cli_usage_error(submit_usage,
                                     "--timeout must be a number of seconds, more than 0 and at "
                                     "most %.0f, not '%s'",
                                     TIMEOUT_MAX_S, optarg);
                goto out;
            }
            put(fields, "timeout_s", seconds_json(t));
            break;
        }
        case OPT_DELAY: {
            double d;
            if (!cli_parse_seconds(optarg, &d) || d > DELAY_MAX_S) {
                rc = cli_usage_error(submit_usage,
                                     "--delay must be a number of seconds from 0 to %.0f, not '%s'",
                                     DELAY_MAX_S, optarg);
                goto out;
            }
            put(fields, "delay_s", seconds_json(d));
            break;
        }
        case OPT_SLOTS: {
            long n;
            if (!cli_parse_long(optarg, 1, 1024, &n)) {
                rc = cli_usage_error(submit_usage,
                                     "--slots must be a whole number from 1 to 1024, not '%s'",
                                     optarg);
                goto out;
            }
            put(fields, "slots", json_integer(n));
            break;
        }
        case OPT_RETRIES:
        case OPT_ATTEMPTS: {
            bool retries = opt == OPT_RETRIES;
            long n;
            if (ov.max_attempts) {
                rc = cli_usage_error(submit_usage,
                                     "give --retries or --attempts once, not '--%s %s' as well",
                                     retries ? "retries" : "attempts", optarg);
                goto out;
            }
            long min = retries ? 0 : 1, max = SPEC_ATTEMPTS_MAX - (retries ? 1 : 0);
            if (!cli_parse_long(optarg, min, max, &n)) {
                rc = cli_usage_error(submit_usage,
                                     "--%s must be a whole number from %ld to %ld, not '%s'",
                                     retries ? "retries (after the first attempt)"
                                             : "attempts (in all)",
                                     min, max, optarg);
                goto out;
            }
            ov.max_attempts = retries ? n + 1 : n;
            break;
        }
        case 'l':
            if ((rc = put_pair(ov.labels, "--label", optarg, spec_label_name_valid,
                               "[A-Za-z0-9._/-]{1,64}", 256, true)) != CLI_CONTINUE)
                goto out;
            break;
        case OPT_REQUIRES:
            if ((rc = put_pair(ov.requires, "--requires", optarg, spec_label_name_valid,
                               "[A-Za-z0-9._/-]{1,64}", 256, true)) != CLI_CONTINUE)
                goto out;
            break;
        case 'e':
            if ((rc = put_pair(ov.env, "--env", optarg, env_name_valid,
                               "[A-Za-z_][A-Za-z0-9_]{0,127}, not starting with DROVER_",
                               SPEC_MAX_STRING, false)) != CLI_CONTINUE)
                goto out;
            break;
        case OPT_STDIN:
            stdin_file = optarg;
            break;
        case OPT_ARRAY:
        case OPT_ARRAY_ITEMS:
        case OPT_ARRAY_OBJECTS: {
            const char *name = opt == OPT_ARRAY         ? "array"
                               : opt == OPT_ARRAY_ITEMS ? "array-items"
                                                        : "array-objects";
            long count;
            if (array_opt) {
                rc = cli_usage_error(submit_usage,
                                     "give one of --array, --array-items and --array-objects, "
                                     "once: not --%s and --%s",
                                     array_opt, name);
                goto out;
            }
            array_opt = name;
            if (opt == OPT_ARRAY_ITEMS) {
                items_file = optarg; /* read once the options are known (-f -, --stdin -) */
            } else if (opt == OPT_ARRAY_OBJECTS) {
                if ((rc = s3_prefix_option("array-objects", optarg)) != CLI_CONTINUE) goto out;
                good = put(fields, "array", json_pack("{s:s}", "objects", optarg));
            } else if (cli_parse_long(optarg, 1, ARRAY_MAX_TASKS, &count)) {
                put(fields, "array", json_pack("{s:I}", "count", (json_int_t)count));
            } else {
                rc = cli_usage_error(submit_usage,
                                     "--array (how many tasks) must be a whole number from 1 to "
                                     "%d, not '%s'",
                                     ARRAY_MAX_TASKS, optarg);
                goto out;
            }
            break;
        }
        case 's':
            good = put(fields, "service", json_string(optarg));
            break;
        case 'P':
            if ((rc = put_pair(ov.params, "--param", optarg, service_param_name_valid,
                               "[A-Za-z_][A-Za-z0-9_-]{0,63}", SPEC_MAX_STRING, false)) !=
                CLI_CONTINUE)
                goto out;
            break;
        case OPT_SERVICE_VERSION: {
            long v;
            if (!cli_parse_long(optarg, 1, INT32_MAX, &v)) {
                rc = cli_usage_error(submit_usage,
                                     "--service-version must be a whole number from 1, not '%s'",
                                     optarg);
                goto out;
            }
            put(fields, "service_version", json_integer(v));
            break;
        }
        case OPT_MEMORY_MB:
        case OPT_PIDS: {
            bool mem = opt == OPT_MEMORY_MB;
            long n, min = mem ? SPEC_MEMORY_MB_MIN : 1;
            long max = mem ? SPEC_MEMORY_MB_MAX : SPEC_PIDS_MAX;
            if (!cli_parse_long(optarg, min, max, &n)) {
                rc = cli_usage_error(submit_usage,
                                     "--%s must be a whole number from %ld to %ld, not '%s'",
                                     mem ? "memory-mb" : "pids", min, max, optarg);
                goto out;
            }
            put(ov.resources, mem ? "memory_mb" : "pids", json_integer(n));
            break;
        }
        case OPT_CPUS: {
            double c;
            if (!cli_parse_seconds(optarg, &c) || c < SPEC_CPUS_MIN || c > SPEC_CPUS_MAX) {
                rc = cli_usage_error(submit_usage,
                                     "--cpus must be a number from %g to %g, not '%s'",
                                     SPEC_CPUS_MIN, (double)SPEC_CPUS_MAX, optarg);
                goto out;
            }
            put(ov.resources, "cpus", seconds_json(c));
            break;
        }
        }
        if (!good) {
            rc = cli_usage_error(submit_usage, "'%s' is not UTF-8 text", optarg);
            goto out;
        }
    }
    if ((rc = a.exit_code) != CLI_CONTINUE) goto out;
    if (file && optind < argc) {
        rc = cli_usage_error(submit_usage, "give either -f SPEC or -- PROGRAM, not both");
        goto out;
    }
    bool service_only = !file && optind >= argc && json_object_get(fields, "service");
    if (!file && optind >= argc && !service_only) {
        rc = cli_usage_error(submit_usage, "nothing to submit: give -f SPEC.json, -- PROGRAM or "
                                           "--service NAME");
        goto out;
    }
    if (service_only && (json_object_size(ov.env) || stdin_file || json_object_size(ov.command))) {
        const char *which = stdin_file ? "stdin" : json_object_size(ov.env) ? "env"
                            : json_object_get(ov.command, "image")   ? "image"
                            : json_object_get(ov.command, "sandbox") ? "sandbox"
                                                                     : "network";
        rc = cli_usage_error(submit_usage, "--%s cannot be given with --service alone: the "
                                           "service's definition makes the command",
                             which);
        goto out;
    }
    if (json_object_size(ov.params) && !file && !service_only) {
        if (json_object_get(fields, "service")) /* then the program after -- is the trouble */
            rc = cli_usage_error(submit_usage,
                                 "a command (-- %s ...) cannot be given with --service: the "
                                 "service's definition says what runs; a job of it gives only "
                                 "its --param K=V",
                                 argv[optind]);
        else
            rc = cli_usage_error(submit_usage, "--param is for a service: give --service NAME");
        goto out;
    }
    int readers = (file && !strcmp(file, "-")) + (stdin_file && !strcmp(stdin_file, "-")) +
                  (items_file && !strcmp(items_file, "-"));
    if (readers > 1) {
        rc = cli_usage_error(submit_usage, "only one of -f -, --stdin - and --array-items - can "
                                           "read standard input");
        goto out;
    }

    rc = 1;
    if (stdin_file && !(ov.stdin_ = stdin_pipe(stdin_file))) goto out;
    json_t *items = NULL; /* borrowed from fields */
    if (items_file) {
        if (!(items = array_items(items_file))) goto out;
        put(fields, "array", json_pack("{s:o}", "items", items));
    }
    if (file) {
        if (!(spec = load_spec(file))) goto out;
        if (json_object_get(spec, "nodes") && !json_object_get(spec, "command")) {
            rc = cli_usage_error(submit_usage,
                                 "'%s' is a workflow (it has \"nodes\"): drover workflow "
                                 "submit %s",
                                 strcmp(file, "-") ? file : "standard input", file);
            goto out;
        }
    } else if (service_only) {
        spec = json_object(); /* the service and its params, from the options */
    } else {
        if (!(spec = program_spec(&up, argv, optind, argc))) goto out;
        if (items && !items_fit_inputs(spec, items, items_file)) goto out;
    }
    if (json_is_array(spec) && json_array_size(spec) > 1 && json_object_get(fields, "key")) {
        rc = cli_usage_error(submit_usage,
                             "--key names one submission, not each of the %zu specs of '%s': "
                             "give each spec a \"key\" of its own in the file instead",
                             json_array_size(spec), strcmp(file, "-") ? file : "standard input");
        goto out;
    }
    if (json_is_array(spec)) {
        size_t i;
        json_t *one;
        json_array_foreach(spec, i, one)
        {
            if (json_is_object(one)) apply_overrides(one, &ov);
            if (file && resolve_spec_files(&up, one)) goto out;
        }
    } else {
        apply_overrides(spec, &ov);
        if ((file || service_only) && resolve_spec_files(&up, spec)) goto out;
    }
    if (json_object_size(up.outputs) && (json_is_array(spec) || json_object_get(spec, "array"))) {
        rc = cli_usage_error(submit_usage,
                             "a local output file is for one job: the tasks of an array, or "
                             "several specs, would all write it; name objects with {{index}} "
                             "or {{item}} instead (@out:s3://BUCKET/out-{{index}})");
        goto out;
    }
    if (json_object_size(up.outputs) && !wait) {
        rc = cli_usage_error(submit_usage,
                             "a local output file is downloaded when the job has succeeded: "
                             "give --wait, or name an object (@out:s3://BUCKET/KEY)");
        goto out;
    }

    if (cli_connect(&cli, &a.conn)) goto out;
    if (upload_all(&cli, &up)) goto out;
    if (cli_call(&cli, "POST", "/v1/jobs", spec, &answer, "cannot submit the job")) {
        tell_uploaded(&up);
        goto out;
    }

    /* A job array ("array" in the spec): its id, or with --wait its end. */
    json_t *arr = json_object_get(answer, "array");
    if (json_is_object(arr)) {
        print_warnings(arr, NULL);
        rc = submitted_array(&cli, arr, wait, a.json);
        goto out;
    }
    /* One job, {"jobs": [...]} for an array, or the answer to a `test` probe. */
    json_t *jobs = json_object_get(answer, "jobs");
    json_t *single = json_is_array(jobs) ? NULL : cli_job_of(answer);
    if (json_is_array(jobs)) {
        size_t i;
        json_t *j;
        json_array_foreach(jobs, i, j)
        {
            char which[96];
            snprintf(which, sizeof(which), "job %zu (%s)", i + 1,
                     jstr(j, "id") ? jstr(j, "id") : "?");
            print_warnings(j, which);
        }
    } else {
        print_warnings(answer, NULL);
    }
    if (single && cli.status == 200 && jstr(single, "key")) /* 200, not 201: known already */
        cli_notice("note",
                   "key '%s' was used before: %s is that job, this spec was not submitted (a "
                   "key names one submission)",
                   jstr(single, "key"), jstr(single, "id") ? jstr(single, "id") : "?");
    if (!json_is_array(jobs) && !jstr(single, "id")) {
        if (a.json)
            cli_print_json(answer);
        else if (json_object_get(answer, "listeners"))
            printf("queue '%s': %lld listener(s)\n",
                   jstr(answer, "queue") ? jstr(answer, "queue") : "?",
                   (long long)json_integer_value(json_object_get(answer, "listeners")));
        else
            cli_print_json(answer);
        rc = 0;
        goto out;
    }
    if (!wait) {
        if (a.json) {
            cli_print_json(answer);
        } else if (single) {
            printf("%s\n", jstr(single, "id"));
        } else {
            size_t i;
            json_t *j;
            json_array_foreach(jobs, i, j) printf("%s\n", jstr(j, "id") ? jstr(j, "id") : "?");
        }
        rc = 0;
        goto out;
    }

    /* --wait: the ids first, then each final state; the first failure decides the exit code. */
    json_t *list = single ? json_pack("[O]", single) : json_incref(jobs);
    size_t i, n = json_array_size(list);
    json_t *j, *finals = NULL;
    const char **ids = xcalloc(n ? n : 1, sizeof(*ids));
    json_array_foreach(list, i, j)
    {
        ids[i] = jstr(j, "id") ? jstr(j, "id") : "";
        if (!a.json) printf("%s\n", ids[i]);
    }
    fflush(stdout);
    rc = wait_jobs(&cli, ids, n, -1, a.json, &finals);
    free(ids);
    if (finals && download_outputs(&cli, &up, json_array_get(finals, 0)) && !rc) rc = 1;
    if (a.json && finals) print_finals(finals, single);
    json_decref(finals);
    json_decref(list);
out:
    json_decref(answer);
    json_decref(spec);
    json_decref(ov.fields);
    json_decref(ov.labels);
    json_decref(ov.requires);
    json_decref(ov.env);
    json_decref(ov.resources);
    json_decref(ov.command);
    json_decref(ov.params);
    json_decref(ov.stdin_);
    uploads_release(&up);
    cli_release(&cli);
    return rc;
}

/* ---- status ---- */

static const char status_usage[] =
    "usage: drover status [--json] ID\n"
    "\n"
    "Shows a job: its state, timing, result and the last lines of its output:\n"
    "stdout, then stderr when it has any (`drover logs [--stderr] ID` prints all of\n"
    "it); for a queued job, why it waits (no agent could take it, agents busy, a\n"
    "delay or a retry's backoff). ID may be a unique prefix of the job's id, or\n"
    "ARRAY_ID:INDEX for a task of a job array.\n"
    "\n"
    "      --json         print the job's JSON\n"
    "\n"
    "examples:\n"
    "  drover status 01938c2e-7d4a                  # a prefix of 6 characters or more\n"
    "  drover status --json 01938c2e-7d4a | jq .result.exit_code\n"
    "  drover status 0193a1b2-5e6f-7a8b-9c0d-1e2f3a4b5c6d:17   # task 17 of an array\n"
    CLI_COMMON_USAGE;

/* Appends `s` as one shell word, quoted when it needs to be. */
static void add_word(struct buf *b, const char *s)
{
    bool plain = *s != '\0';
    for (const char *p = s; *p && plain; p++)
        plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%",
                       *p) != NULL;
    if (b->len) buf_addc(b, ' ');
    if (plain) {
        buf_adds(b, s);
        return;
    }
    buf_addc(b, '\'');
    for (const char *p = s; *p; p++) {
        if (*p == '\'')
            buf_adds(b, "'\\''");
        else
            buf_addc(b, *p);
    }
    buf_addc(b, '\'');
}

/* The command line the spec describes: program, then each argument's name and value. */
static void command_line(json_t *job, struct buf *b)
{
    json_t *cmd = json_object_get(json_object_get(job, "spec"), "command");
    const char *shell = jstr(cmd, "shell");
    if (shell) {
        buf_adds(b, "sh -c");
        add_word(b, shell);
        return;
    }
    if (!jstr(cmd, "program")) return;
    add_word(b, jstr(cmd, "program"));
    json_t *args = json_object_get(cmd, "arguments");
    if (!json_is_array(args)) args = json_object_get(cmd, "argv");
    size_t i;
    json_t *a;
    json_array_foreach(args, i, a)
    {
        if (json_is_string(a)) {
            add_word(b, json_string_value(a));
            continue;
        }
        if (jstr(a, "name")) add_word(b, jstr(a, "name"));
        json_t *v = json_object_get(a, "value");
        if (json_is_string(v)) {
            add_word(b, json_string_value(v));
        } else if (v && !json_is_null(v)) {
            char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            add_word(b, s ? s : "?");
            free(s);
        }
    }
}

/* One "label:     value" line, skipped when the value is missing or empty. */
static void field(const char *label, const char *value)
{
    if (value && *value) {
        printf("%-10s ", label);
        cli_put_clean(stdout, value, strlen(value));
        putchar('\n');
    }
}

static void print_time_field(const char *label, json_t *job, const char *key)
{
    const char *v = jstr(job, key);
    if (v) {
        char t[64];
        cli_format_time(v, true, t, sizeof(t));
        field(label, t);
    }
}

/*
 * Prints the last STATUS_STDOUT_LINES lines of text (len bytes of a job's `stream`, "stdout"
 * or "stderr"); `cut`: the output went on before text (text starts mid-line then: that part
 * is left out). Points to `drover logs` when not everything is shown.
 */
static void print_tail(const char *id, const char *stream, const char *text, size_t len,
                       bool cut)
{
    const char *start = text, *end = text + len;
    if (cut) {
        const char *nl = memchr(text, '\n', len);
        start = nl ? nl + 1 : end;
    }
    if (end > start && end[-1] == '\n') end--; /* the last line's end */
    if (end == start) return;
    /* back from the end over STATUS_STDOUT_LINES lines: [from, end) holds `lines` of them */
    const char *from = end;
    int lines = 1;
    for (; from > start; from--)
        if (from[-1] == '\n' && lines++ == STATUS_STDOUT_LINES) {
            lines--;
            break;
        }
    bool err = !strcmp(stream, "stderr");
    if (!cut && from == start)
        printf("%s:\n", stream);
    else
        printf("%s (last %d line%s; all of it: drover logs %s%s):\n", stream, lines,
               lines == 1 ? "" : "s", err ? "--stderr " : "", id);
    for (const char *p = from; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        fputs("  ", stdout);
        cli_put_clean(stdout, p, n > STATUS_LINE_MAX ? STATUS_LINE_MAX : n);
        if (n > STATUS_LINE_MAX) fputs(" ...", stdout);
        putchar('\n');
        p += n + (nl ? 1 : 0);
    }
}

static int tail_piece(void *arg, const char *data, size_t len, struct err *e)
{
    struct buf *b = arg;
    (void)e;
    if (b->len + len <= 2 * STATUS_TAIL_BYTES) buf_add(b, data, len); /* bounded, whatever comes */
    return 0;
}

/*
 * The last STATUS_TAIL_BYTES of `stream` ("stdout", "stderr") of job id's latest attempt,
 * from the server (GET /v1/jobs/{id}/log?tail=), into out: 0, or -1 when it cannot be read.
 */
static int fetch_tail(const struct cli_opts *o, const char *id, const char *stream,
                      struct buf *out)
{
    struct cli cli;
    struct err e = ERR_INIT;
    long status = 0;
    if (cli_connect(&cli, o)) return -1;
    char *eid = http_escape(id);
    char *path = xasprintf("/v1/jobs/%s/log?stream=%s&tail=%d", eid, stream, STATUS_TAIL_BYTES);
    int rc = http_client_stream(&cli.http, path, 0, tail_piece, out, &status, &e);
    free(path);
    free(eid);
    cli_release(&cli);
    return rc == 0 ? 0 : -1;
}

/*
 * A failed job: why its last attempt was not retried (docs/api.md "retry"), into out; nothing
 * for another state, or for a job that asked for no retry (max_attempts 1).
 */
static void why_no_retry(json_t *job, struct buf *out)
{
    const char *state = jstr(job, "state");
    json_t *result = json_object_get(job, "result");
    const char *reason = jstr(result, "reason");
    if (!state || strcmp(state, "failed") || !reason) return;
    long long attempt = json_integer_value(json_object_get(job, "attempt"));
    long long max = json_integer_value(json_object_get(job, "max_attempts"));
    json_t *on = json_object_get(json_object_get(json_object_get(job, "spec"), "retry"), "on");
    if (max && attempt >= max) {
        if (max > 1) buf_addf(out, "no: max_attempts (%lld) reached", max); /* 1: none asked */
    } else if (json_is_object(on) && !strcmp(reason, "exit")) {
        json_t *code = json_object_get(result, "exit_code");
        buf_addf(out, "no: exit code %lld is not in retry.on.exit_codes",
                 (long long)json_integer_value(code));
    } else if (json_is_object(on)) {
        json_t *budget = json_object_get(on, reason);
        long long left = json_is_integer(budget) ? json_integer_value(budget)
                         : !strcmp(reason, "lost")  ? 2 /* its default */
                                                    : 0;
        long long used = json_integer_value(json_object_get(json_object_get(job, "retries"),
                                                            reason));
        buf_addf(out, "no: retry.on.%s allows %lld retr%s, %lld used", reason, left,
                 left == 1 ? "y" : "ies", used);
    }
}

/* `tail`, `errtail`: the ends of stdout and stderr, NULL when they could not be read. */
static void print_status(json_t *job, const struct buf *tail, const struct buf *errtail)
{
    struct buf b = BUF_INIT;
    char tmp[128];

    field("id:", jstr(job, "id"));
    field("state:", jstr(job, "state"));
    field("queue:", jstr(job, "queue"));
    field("name:", jstr(job, "name"));
    json_t *arr = json_object_get(job, "array");
    if (jstr(arr, "id")) { /* a task of a job array: how to name it again */
        snprintf(tmp, sizeof(tmp), "%s:%lld", jstr(arr, "id"),
                 (long long)json_integer_value(json_object_get(arr, "index")));
        field("array:", tmp);
    }
    json_t *sv = json_object_get(job, "service_version");
    if (jstr(job, "service") && json_is_integer(sv)) { /* expanded from the hub */
        char *text = xasprintf("%s (version %lld)", jstr(job, "service"),
                               (long long)json_integer_value(sv));
        field("service:", text);
        free(text);
    } else {
        field("service:", jstr(job, "service"));
    }
    command_line(job, &b);
    field("command:", b.data);
    buf_reset(&b);
    json_t *prio = json_object_get(job, "priority");
    if (json_is_integer(prio)) {
        snprintf(tmp, sizeof(tmp), "%lld", (long long)json_integer_value(prio));
        field("priority:", tmp);
    }
    json_t *labels = json_object_get(job, "labels");
    const char *k;
    json_t *v;
    json_object_foreach(labels, k, v)
    {
        buf_addf(&b, "%s%s=%s", b.len ? ", " : "", k,
                 json_is_string(v) ? json_string_value(v) : "?");
    }
    field("labels:", b.data);
    buf_reset(&b);
    json_t *attempt = json_object_get(job, "attempt");
    json_t *max = json_object_get(job, "max_attempts");
    if (json_is_integer(attempt)) {
        /* `drover retry` runs one attempt more without raising max_attempts (docs/api.md) */
        if (json_is_integer(max) && json_integer_value(attempt) > json_integer_value(max))
            snprintf(tmp, sizeof(tmp), "%lld (beyond max_attempts %lld: retried by hand)",
                     (long long)json_integer_value(attempt), (long long)json_integer_value(max));
        else if (json_is_integer(max))
            snprintf(tmp, sizeof(tmp), "%lld of %lld", (long long)json_integer_value(attempt),
                     (long long)json_integer_value(max));
        else
            snprintf(tmp, sizeof(tmp), "%lld", (long long)json_integer_value(attempt));
        field("attempt:", tmp);
    }
    print_time_field("created:", job, "created_at");
    print_time_field("started:", job, "started_at");
    print_time_field("finished:", job, "finished_at");
    if (json_is_true(json_object_get(job, "archived")))
        print_time_field("archived:", job, "archived_at"); /* deleted after its retention */
    field("agent:", jstr(job, "agent"));
    char *waiting = cli_local_times_in(jstr(json_object_get(job, "waiting"), "message"));
    field("waiting:", waiting); /* "delayed until TIME": local, as the times above */
    free(waiting);

    json_t *progress = json_object_get(job, "progress");
    json_t *pct = json_object_get(progress, "percent");
    if (json_is_number(pct)) {
        buf_addf(&b, "%.1f%%", json_number_value(pct));
        if (jstr(progress, "message") && *jstr(progress, "message"))
            buf_addf(&b, " %s", jstr(progress, "message"));
        field("progress:", b.data);
        buf_reset(&b);
    }

    json_t *result = json_object_get(job, "result");
    result_summary(job, &b);
    field("result:", b.data);
    buf_reset(&b);
    why_no_retry(job, &b);
    field("retried:", b.len ? b.data : NULL);
    buf_reset(&b);
    field("error:", jstr(result, "error"));
    json_t *outputs = json_object_get(result, "outputs");
    size_t i;
    json_array_foreach(outputs, i, v)
    {
        snprintf(tmp, sizeof(tmp), "%lld bytes",
                 (long long)json_integer_value(json_object_get(v, "size")));
        buf_addf(&b, "%s (%s)", jstr(v, "uri") ? jstr(v, "uri") : "?", tmp);
        field(i == 0 ? "outputs:" : "", b.data);
        buf_reset(&b);
    }

    const char *out = jstr(result, "stdout");
    if (tail && tail->len) /* the stream's end; more came before it when it is a full tail */
        print_tail(jstr(job, "id"), "stdout", tail->data, tail->len,
                   tail->len >= STATUS_TAIL_BYTES);
    else if (!tail && out && *out) /* the server could not say: the result's head, at least */
        print_tail(jstr(job, "id"), "stdout", out, strlen(out), false);
    /* what a program says when it fails is often on stderr alone */
    if (errtail && errtail->len)
        print_tail(jstr(job, "id"), "stderr", errtail->data, errtail->len,
                   errtail->len >= STATUS_TAIL_BYTES);
    buf_release(&b);
}

int cmd_status(int argc, char **argv)
{
    struct cli_args a;
    cli_args_init(&a, argc, argv, status_usage);
    const char *id;
    json_t *job = NULL;
    int rc = cli_parse_json_only(&a, CLI_JOB_ID_MISSING, CLI_JOB_ID_EMPTY, &id);
    if (rc != CLI_CONTINUE) return rc;
    char what[320];
    snprintf(what, sizeof(what), "cannot show job '%s'", id);
    rc = job_request(&a.conn, "GET", id, "", "status", &job, what);
    if (rc == 0 && a.json) {
        cli_print_json(job);
    } else if (rc == 0) {
        /* not the result's first MiB: the output's last lines, which say how it ended */
        struct buf tail = BUF_INIT, errtail = BUF_INIT;
        json_t *j = cli_job_of(job);
        const char *jid = jstr(j, "id");
        bool ran = json_integer_value(json_object_get(j, "attempt")) > 0 && jid;
        bool got = ran && fetch_tail(&a.conn, jid, "stdout", &tail) == 0;
        bool goterr = ran && fetch_tail(&a.conn, jid, "stderr", &errtail) == 0;
        print_status(j, got ? &tail : NULL, goterr ? &errtail : NULL);
        buf_release(&tail);
        buf_release(&errtail);
    }
    json_decref(job);
    return rc;
}

/* ---- wait ---- */

static const char wait_usage[] =
    "usage: drover wait [--timeout S] [--json] ID...\n"
    "\n"
    "Waits for jobs to end, printing each change of their state (and progress) on\n"
    "stderr as it happens and each job's final state on stdout. Exits with the\n"
    "worst exit code among them: a job's own exit code when it ran (0 when it\n"
    "succeeded), 1 when it failed otherwise or was cancelled, and 1 when one is\n"
    "still not done after --timeout. An ID may be any unique prefix of one, or\n"
    "ARRAY_ID:INDEX for a task of a job array.\n"
    "\n"
    "  -t, --timeout S    give up after S seconds (default: wait as long as it takes)\n"
    "      --json         print the final JSON (of the job; {\"jobs\": [...]} for several)\n"
    "\n"
    "examples:\n"
    "  drover wait 01938c2e-7d4a                    # exits with the job's exit code\n"
    "  drover wait --timeout 60 $(drover jobs --state running --json | jq -r '.[].id')\n"
    CLI_COMMON_USAGE;

int cmd_wait(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"timeout", required_argument, NULL, 't'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc, argv, wait_usage);
    struct cli cli;
    double timeout = -1;
    json_t *finals = NULL;
    int rc;

    while (cli_getopt(&a, ":t:h", longopts) != -1) {
        /* 't', the only option of its own */
        if (!cli_parse_seconds(optarg, &timeout))
            return cli_usage_error(wait_usage, CLI_WAIT_TIMEOUT_BAD, optarg);
    }
    if (a.exit_code != CLI_CONTINUE) return a.exit_code;
    if (optind >= a.argc) return cli_usage_error(wait_usage, CLI_JOB_ID_MISSING);
    for (int i = optind; i < a.argc; i++)
        if (!*a.argv[i]) return cli_usage_error(wait_usage, CLI_JOB_ID_EMPTY);
    if (a.argc - optind > JOB_EVENTS_FILTER_MAX)
        return cli_usage_error(wait_usage, "at most %d jobs at once", JOB_EVENTS_FILTER_MAX);
    if (cli_connect(&cli, &a.conn)) {
        cli_release(&cli);
        return 1;
    }
    size_t n = (size_t)(a.argc - optind);
    rc = wait_jobs(&cli, (const char *const *)a.argv + optind, n, timeout, a.json, &finals);
    if (a.json && finals) print_finals(finals, n == 1);
    json_decref(finals);
    cli_release(&cli);
    return rc;
}

/* ---- cancel and retry: jobs by ID, or every job filters find ---- */

/* The filters of a cancel or a retry by filter, as their usages list them. */
#define BY_FILTER_USAGE                                                                           \
    "  -q, --queue Q      jobs of queue Q\n"                                                       \
    "      --service S    jobs of service S\n"                                                     \
    "  -l, --label K=V    jobs with label K set to V (one --label)\n"                              \
    "      --name N       jobs whose name holds N (letters in any case)\n"                         \
    "      --agent A      jobs whose latest attempt went to agent A\n"

static const char cancel_usage[] =
    "usage: drover cancel [--json] ID...\n"
    "       drover cancel [--json] (--queue Q | --service S | --label K=V | --name N |\n"
    "                     --agent A)... [--state S]\n"
    "\n"
    "Cancels jobs that have not ended; a running process is killed. With IDs, those\n"
    "jobs; with filters (as `drover jobs` takes them), every unfinished job they find\n"
    "(your own; an admin's: everyone's) -- blocked, queued, leased and running ones, or\n"
    "those in --state. ARRAY_ID:INDEX is a task of a job array, handed out to an\n"
    "agent or not (drover array cancel --from I --to J: a range of them).\n"
    "\n"
    BY_FILTER_USAGE
    "  -s, --state S      only jobs in state S (blocked, queued, leased, running)\n"
    "      --json         print the server's JSON answer\n"
    "\n"
    "examples:\n"
    "  drover cancel 01938c2e-7d4a 01938c2e-7e10\n"
    "  drover queues pause bio && drover cancel --queue bio --state queued\n"
    CLI_COMMON_USAGE;

static const char retry_usage[] =
    "usage: drover retry [--json] ID...\n"
    "       drover retry [--json] (--queue Q | --service S | --label K=V | --name N |\n"
    "                    --agent A)... [--state S]\n"
    "\n"
    "Queues failed or cancelled jobs again at once for one more attempt each, whatever\n"
    "their retry policy (the earlier attempts' results and logs are kept: drover logs\n"
    "--attempt N). With IDs, those jobs (one in any other state is refused); with\n"
    "filters (as `drover jobs` takes them), every failed or cancelled job they find\n"
    "(your own; an admin's: everyone's), or those in --state. A tenant's max_queued\n"
    "stops it at the first job that would pass it. ARRAY_ID:INDEX is a task of a job\n"
    "array (drover array retry: a range of them). A workflow's failed nodes: drover\n"
    "workflow retry.\n"
    "\n"
    BY_FILTER_USAGE
    "  -s, --state S      only jobs in state S (failed, cancelled)\n"
    "      --json         print the server's JSON answer\n"
    "\n"
    "examples:\n"
    "  drover retry 01938c2e-7d4a\n"
    "  drover retry --queue bio --state failed\n"
    CLI_COMMON_USAGE;

/* The filter options of jobs, cancel and retry (numbered after submit's options). */
enum { OPT_F_SERVICE = OPT_TO + 1, OPT_F_NAME, OPT_F_AGENT };

static void add_query(struct buf *path, const char *key, const char *value);

/* A filter's state names: jobs takes them all, cancel the first four, retry the last two. */
static const char *const job_states[] = {"blocked",   "queued", "leased",   "running",
                                         "succeeded", "failed", "cancelled"};

/*
 * Adds the filter option `opt` (-q, -l, -s, OPT_F_*) with value `arg` to `query`
 * (GET /v1/jobs's filters), after checking here what can be: a label's K=V (or
 * K:V, the API's form), a state among job_states[first..last], a name's length.
 * Returns CLI_CONTINUE, or 2 after a usage error naming the option and value.
 */
static int add_filter(struct buf *query, const char *usage, int opt, const char *arg,
                      size_t first, size_t last)
{
    switch (opt) {
    case 'q': /* the server names what is wrong with it (test_cancel_many.py) */
        add_query(query, "queue", arg);
        break;
    case OPT_F_SERVICE:
        add_query(query, "service", arg);
        break;
    case OPT_F_NAME:
    case OPT_F_AGENT: {
        bool name = opt == OPT_F_NAME;
        size_t max = name ? 256 : 128;
        if (!*arg || strlen(arg) > max)
            return cli_usage_error(usage, "--%s must be 1 to %zu bytes, not '%s'",
                                   name ? "name" : "agent", max, arg);
        add_query(query, name ? "name" : "agent", arg);
        break;
    }
    case 'l': {
        if (strstr(buf_str(query), "label="))
            return cli_usage_error(usage, "only one --label filter is supported");
        const char *split = label_split(arg);
        char *key = split ? xstrndup(arg, (size_t)(split - arg)) : NULL;
        bool valid = key && spec_label_name_valid(key);
        char *kv = valid ? xasprintf("%s:%s", key, split + 1) : NULL; /* the API's k:v */
        free(key);
        if (!valid)
            return cli_usage_error(usage,
                                   "--label must be KEY=VALUE with KEY of [A-Za-z0-9._/-]{1,64}, "
                                   "not '%s'",
                                   arg);
        add_query(query, "label", kv);
        free(kv);
        break;
    }
    case 's': {
        struct buf list = BUF_INIT;
        bool known = false;
        for (size_t i = first; i <= last; i++) {
            known = known || !strcmp(arg, job_states[i]);
            buf_addf(&list, "%s%s", i > first ? ", " : "", job_states[i]);
        }
        int rc = known ? CLI_CONTINUE
                       : cli_usage_error(usage, "--state must be one of %s, not '%s'",
                                         buf_str(&list), arg);
        buf_release(&list);
        if (!known) return rc;
        add_query(query, "state", arg);
        break;
    }
    }
    return CLI_CONTINUE;
}

/* With filters: one call, the server walks the jobs. */
static int by_filter(struct cli_args *a, bool retry, const char *query)
{
    char *path = xasprintf("/v1/jobs/%s%s", retry ? "retry" : "cancel", query);
    json_t *answer = NULL;
    int rc = cli_request(&a->conn, "POST", path, NULL, &answer, "cannot %s the jobs",
                         retry ? "retry" : "cancel");
    free(path);
    if (rc == 0 && a->json) {
        cli_print_json(answer);
    } else if (rc == 0) {
        const char *verb = retry ? "retried" : "cancelled";
        json_int_t n = json_integer_value(json_object_get(answer, verb));
        printf("%s %lld job%s\n", verb, (long long)n, n == 1 ? "" : "s");
    }
    json_decref(answer);
    return rc;
}

/*
 * A task of a job array, ARRAY:INDEX (`colon` in `id`), cancelled or retried by its array's
 * range route, which reaches a task whether its job was made or not (unclaimed tasks have
 * none): 0 with *answer the array's answer, or 1 after printing why.
 */
static int task_request(struct cli_args *a, bool retry, const char *id, const char *colon,
                        json_t **answer)
{
    const char *verb = retry ? "retry" : "cancel";
    long index;
    *answer = NULL;
    if (!cli_parse_long(colon + 1, 0, 1000000000, &index)) {
        cli_error(CLI_ERR_INVALID, NULL,
                  "cannot %s '%s': a task of an array is ARRAY_ID:INDEX, INDEX a whole number "
                  "from 0",
                  verb, id);
        return 1;
    }
    char *array = xstrndup(id, (size_t)(colon - id));
    char *path = cli_path("/v1/arrays/", array, retry ? "/retry" : "/cancel");
    json_t *body = json_pack("{s:I, s:I}", "from", (json_int_t)index, "to", (json_int_t)index);
    char what[320];
    snprintf(what, sizeof(what), "cannot %s task %ld of array '%s'", verb, index, array);
    int rc = cli_request(&a->conn, "POST", path, body, answer, "%s", what);
    if (!rc && json_integer_value(json_object_get(*answer, retry ? "retried" : "cancelled")) < 1) {
        cli_error("conflict", NULL, "%s: %s", what,
                  retry ? "it has neither failed nor been cancelled" : "it has ended already");
        rc = 1;
    }
    json_decref(body);
    free(path);
    free(array);
    return rc;
}

/* With IDs: each job its own call; one refused, the next still go (exit 1). */
static int by_ids(struct cli_args *a, bool retry)
{
    int rc = 0;
    for (int i = optind; i < a->argc; i++) {
        const char *id = a->argv[i], *colon = strchr(id, ':');
        json_t *answer = NULL;
        if (colon) {
            int one = task_request(a, retry, id, colon, &answer);
            if (one == 0 && a->json)
                cli_print_json(answer);
            else if (one == 0)
                printf("%s %s\n", retry ? "retrying" : "cancelled", id);
            if (one && !rc) rc = one;
            json_decref(answer);
            continue;
        }
        char what[320];
        snprintf(what, sizeof(what), "cannot %s job '%s'", retry ? "retry" : "cancel", id);
        int one = job_request(&a->conn, "POST", id, retry ? "/retry" : "/cancel",
                              retry ? "retry" : "cancel", &answer, what);
        /* the whole id, not the prefix that was typed */
        const char *full = jstr(cli_job_of(answer), "id") ? jstr(cli_job_of(answer), "id") : id;
        if (one == 0 && a->json) {
            cli_print_json(answer);
        } else if (one == 0 && retry) {
            const char *state = jstr(cli_job_of(answer), "state");
            printf("retrying %s: %s\n", full, state ? state : "?");
        } else if (one == 0) {
            printf("cancelled %s\n", full);
        }
        if (one && !rc) rc = one;
        json_decref(answer);
    }
    return rc;
}

static int cancel_or_retry(int argc, char **argv, bool retry)
{
    static const struct option longopts[] = {
        {"queue", required_argument, NULL, 'q'},
        {"service", required_argument, NULL, OPT_F_SERVICE},
        {"label", required_argument, NULL, 'l'},
        {"name", required_argument, NULL, OPT_F_NAME},
        {"agent", required_argument, NULL, OPT_F_AGENT},
        {"state", required_argument, NULL, 's'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const char *usage = retry ? retry_usage : cancel_usage;
    struct cli_args a;
    cli_args_init(&a, argc, argv, usage);
    struct buf query = BUF_INIT;
    bool filtered = false, state = false;
    int opt, rc = 2;
    int bad = CLI_CONTINUE;
    while (bad == CLI_CONTINUE && (opt = cli_getopt(&a, ":q:l:s:h", longopts)) != -1) {
        /* cancel: blocked..running; retry: failed, cancelled */
        bad = add_filter(&query, usage, opt, optarg, retry ? 5 : 0, retry ? 6 : 3);
        if (opt == 's')
            state = true;
        else
            filtered = true;
    }
    int nids = a.argc - optind;
    if (bad != CLI_CONTINUE)
        rc = bad;
    else if (a.exit_code != CLI_CONTINUE)
        rc = a.exit_code;
    else if (filtered && nids)
        rc = cli_usage_error(usage, "give job IDs or filters, not both");
    else if (filtered)
        rc = by_filter(&a, retry, query.len ? buf_str(&query) : "");
    else if (state)
        rc = cli_usage_error(usage, "--state needs a filter: --queue, --service, --label, "
                                    "--name or --agent");
    else if (!nids)
        rc = cli_usage_error(usage, CLI_JOB_ID_MISSING);
    else {
        rc = CLI_CONTINUE;
        for (int i = optind; i < a.argc && rc == CLI_CONTINUE; i++)
            if (!*a.argv[i]) rc = cli_usage_error(usage, CLI_JOB_ID_EMPTY);
        if (rc == CLI_CONTINUE) rc = by_ids(&a, retry);
    }
    buf_release(&query);
    return rc;
}

int cmd_cancel(int argc, char **argv)
{
    return cancel_or_retry(argc, argv, false);
}

int cmd_retry(int argc, char **argv)
{
    return cancel_or_retry(argc, argv, true);
}

/* ---- jobs ---- */

static const char jobs_usage[] =
    "usage: drover jobs [options]\n"
    "\n"
    "Lists jobs, newest first.\n"
    "\n"
    "  -s, --state S      only jobs in state S (blocked, queued, leased, running,\n"
    "                     succeeded, failed, cancelled)\n"
    "  -q, --queue Q      only jobs of queue Q\n"
    "      --service S    only jobs of service S\n"
    "  -l, --label K=V    only jobs with label K set to V (one --label)\n"
    "      --name N       only jobs whose name holds N (letters in any case)\n"
    "      --agent A      only jobs whose latest attempt went to agent A (with --state\n"
    "                     running: what it runs now)\n"
    "  -n, --limit N      at most N jobs, 1..1000000000 (one page by default)\n"
    "  -a, --all          follow the pages to the end (or to --limit)\n"
    "      --array ID     the tasks of job array ID instead, by index (with --state,\n"
    "                     --limit, --all, --from, --to)\n"
    "      --from I       with --array: from task index I (default 0)\n"
    "      --to J         with --array: up to task index J (default the last)\n"
    "      --json         print the jobs as a JSON array\n"
    "\n"
    "examples:\n"
    "  drover jobs                                  # the newest page, cut to the terminal\n"
    "  drover jobs --state failed --queue bio --limit 20\n"
    "  drover jobs --all --label project=x --json | jq length\n"
    "  drover jobs --agent worker-7 --state running\n"
    "  drover jobs --array 0193a1b2-... --state failed --all\n"
    "  drover jobs --array 0193a1b2-... --from 100 --to 199 --json\n"
    CLI_COMMON_USAGE;

/* Appends "?key=value" or "&key=value" to a path, escaping the value. */
static void add_query(struct buf *path, const char *key, const char *value)
{
    char *v = http_escape(value);
    buf_addf(path, "%c%s=%s", strchr(buf_str(path), '?') ? '&' : '?', key, v);
    free(v);
}

static void print_jobs_table(json_t *list)
{
    struct table *t = table_new(7, "id", "state", "queue", "name", "attempt", "created", "result");
    table_max_width(t, 3, 40);
    size_t i;
    json_t *job;
    json_array_foreach(list, i, job)
    {
        char created[64];
        struct buf r = BUF_INIT;
        table_add(t, jstr(job, "id"));
        table_add(t, jstr(job, "state"));
        table_add(t, jstr(job, "queue"));
        table_add(t, job_title(job));
        table_addf(t, "%lld/%lld", (long long)json_integer_value(json_object_get(job, "attempt")),
                   (long long)json_integer_value(json_object_get(job, "max_attempts")));
        cli_format_time(jstr(job, "created_at"), false, created, sizeof(created));
        table_add(t, created);
        result_summary(job, &r);
        table_add(t, r.data);
        buf_release(&r);
    }
    table_print(t, stdout);
    table_free(t);
}

int cmd_jobs(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"state", required_argument, NULL, 's'},
        {"queue", required_argument, NULL, 'q'},
        {"service", required_argument, NULL, OPT_F_SERVICE},
        {"label", required_argument, NULL, 'l'},
        {"name", required_argument, NULL, OPT_F_NAME},
        {"agent", required_argument, NULL, OPT_F_AGENT},
        {"limit", required_argument, NULL, 'n'},
        {"all", no_argument, NULL, 'a'},
        {"array", required_argument, NULL, OPT_ARRAY},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc, argv, jobs_usage);
    const char *array = NULL, *state = NULL;
    long from = -1, to = -1;
    bool other = false; /* a filter that --array does not take */
    struct cli cli = {0};
    struct buf filter = BUF_INIT; /* "/v1/jobs?state=..." */
    bool all = false;
    long limit = 0;
    json_t *list = json_array();
    int opt, rc = 2;

    buf_adds(&filter, "/v1/jobs");
    while ((opt = cli_getopt(&a, ":s:q:l:n:ah", longopts)) != -1) {
        switch (opt) {
        case 's':
        case 'q':
        case 'l':
        case OPT_F_SERVICE:
        case OPT_F_NAME:
        case OPT_F_AGENT:
            if ((rc = add_filter(&filter, jobs_usage, opt, optarg, 0, 6)) != CLI_CONTINUE)
                goto out;
            if (opt == 's')
                state = optarg;
            else
                other = true;
            break;
        case OPT_ARRAY:
            array = optarg;
            break;
        case OPT_FROM:
        case OPT_TO:
            if (!cli_parse_long(optarg, 0, 1000000000, opt == OPT_FROM ? &from : &to)) {
                rc = cli_usage_error(jobs_usage, "--%s must be a task index (0 or more), not '%s'",
                                     opt == OPT_FROM ? "from" : "to", optarg);
                goto out;
            }
            break;
        case 'n':
            if (!cli_parse_long(optarg, 1, 1000000000, &limit)) {
                rc = cli_usage_error(jobs_usage,
                                     "--limit must be a whole number from 1 to 1000000000, not "
                                     "'%s'",
                                     optarg);
                goto out;
            }
            break;
        case 'a':
            all = true;
            break;
        }
    }
    if ((rc = cli_args_none(&a)) != CLI_CONTINUE) goto out;
    if (!array && (from >= 0 || to >= 0)) {
        rc = cli_usage_error(jobs_usage, "--from and --to are for --array");
        goto out;
    }
    if (array && other) {
        rc = cli_usage_error(jobs_usage, "--array lists one array's tasks: --queue, --service, "
                                         "--label, --name and --agent are not for it");
        goto out;
    }
    rc = 1;
    if (cli_connect(&cli, &a.conn)) goto out;
    if (array) {
        rc = cli_array_tasks(&cli, array, state, from, to, limit, all, a.json);
        goto out;
    }

    char *after = NULL;
    bool more = false;
    for (;;) {
        struct buf path = BUF_INIT;
        buf_adds(&path, filter.data);
        if (limit) {
            char n[32];
            long left = limit - (long)json_array_size(list);
            snprintf(n, sizeof(n), "%ld", left < JOBS_PAGE_MAX ? left : JOBS_PAGE_MAX);
            add_query(&path, "limit", n);
        }
        if (after) add_query(&path, "after", after);
        json_t *page = NULL;
        int r = cli_call(&cli, "GET", path.data, NULL, &page, "cannot list jobs");
        buf_release(&path);
        free(after);
        after = NULL;
        if (r) goto out;
        json_t *jobs = json_is_array(page) ? page : json_object_get(page, "jobs");
        json_array_extend(list, jobs);
        const char *next = jstr(page, "next");
        more = next && *next && json_array_size(jobs) > 0;
        if (more) after = xstrdup(next);
        json_decref(page);
        if (!all || !more || (limit && (long)json_array_size(list) >= limit)) break;
    }
    free(after);
    if (a.json) {
        cli_print_json(list);
    } else {
        print_jobs_table(list);
        if (more && !all && !(limit && (long)json_array_size(list) >= limit))
            fprintf(stderr, "drover: more jobs follow; --all lists them all\n");
    }
    rc = 0;
out:
    json_decref(list);
    buf_release(&filter);
    cli_release(&cli);
    return rc;
}

/* ---- queues ---- */

static const char queues_usage[] =
    "usage: drover queues [--json]\n"
    "       drover queues pause NAME [--json]\n"
    "       drover queues resume NAME [--json]\n"
    "       drover queues limit NAME N|none [--json]\n"
    "\n"
    "Lists the queues with their jobs by state, the agents listening, whether the\n"
    "queue is paused, and its max_running. `pause` (admin) stops leasing the queue's\n"
    "jobs: they stay queued, what runs already runs to its end, submissions go on;\n"
    "`resume` lets them run again. `limit` (admin) lets at most N of the queue's\n"
    "jobs be leased or running at once, on all agents together (a licence, an API's\n"
    "rate); `none` (or 0) lifts it. Pausing or limiting a queue that no job or agent\n"
    "uses yet is allowed (a note on stderr says so, in case the name is a typo).\n"
    "\n"
    "      --json         print the server's JSON answer\n"
    "\n"
    "examples:\n"
    "  drover queues\n"
    "  drover queues --json | jq '.[] | select(.listeners == 0)'\n"
    "  drover queues pause bio\n"
    "  drover queues limit solver 2\n"
    CLI_COMMON_USAGE;

static void print_queues_table(json_t *list)
{
    struct table *t = table_new(9, "name", "queued", "running", "succeeded", "failed",
                                "cancelled", "listeners", "paused", "limit");
    for (size_t c = 1; c < 7; c++)
        table_align_right(t, c);
    static const char *const keys[] = {"queued", "running",   "succeeded",
                                       "failed", "cancelled", "listeners"};
    size_t i;
    json_t *q;
    json_array_foreach(list, i, q)
    {
        table_add(t, jstr(q, "name"));
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
            table_addf(t, "%lld", (long long)json_integer_value(json_object_get(q, keys[k])));
        char at[CLI_TIME_MAX];
        const char *since = cli_local_time(json_string_value(json_object_get(q, "paused_at")), at);
        table_add(t, json_is_true(json_object_get(q, "paused")) ? (since ? since : "yes") : "no");
        json_t *max = json_object_get(q, "max_running");
        if (json_is_integer(max))
            table_addf(t, "%lld", (long long)json_integer_value(max));
        else
            table_add(t, "-");
    }
    table_print(t, stdout);
    table_free(t);
}

/*
 * A queue may be paused or limited before any job or agent uses it; a name that nothing uses
 * yet may also be a typo: says so on stderr (the command still succeeded).
 */
static void note_unused_queue(const struct cli_opts *o, const char *name)
{
    json_t *answer = NULL;
    struct cli cli;
    long status = 0;
    struct err e = ERR_INIT;
    if (cli_connect(&cli, o) ||
        http_client_json(&cli.http, "GET", "/v1/queues", NULL, &status, &answer, &e)) {
        cli_release(&cli);
        json_decref(answer);
        return; /* only a note: no second error for it */
    }
    cli_release(&cli);
    json_t *list = json_is_array(answer) ? answer : json_object_get(answer, "queues"), *q;
    size_t i;
    bool used = false;
    json_array_foreach(list, i, q)
    {
        if (!jstr(q, "name") || strcmp(jstr(q, "name"), name)) continue;
        static const char *const keys[] = {"queued",    "running",   "succeeded",
                                           "failed",    "cancelled", "listeners"};
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
            used |= json_integer_value(json_object_get(q, keys[k])) > 0;
    }
    if (!used)
        cli_notice("note",
                   "no job and no agent uses queue '%s' yet (is the name right? `drover "
                   "queues` lists them)",
                   name);
    json_decref(answer);
}

/* drover queues pause|resume NAME */
static int queue_pause(int argc, char **argv, bool pause)
{
    struct cli_args a;
    cli_args_init(&a, argc - 1, argv + 1, queues_usage);
    const char *name = NULL;
    int rc = cli_parse_json_only(&a, "which queue? give its NAME", "the queue's NAME is empty",
                                 &name);
    if (rc != CLI_CONTINUE) return rc;
    char *path = cli_path("/v1/queues/", name, pause ? "/pause" : "/resume");
    json_t *answer = NULL;
    rc = cli_request(&a.conn, "POST", path, NULL, &answer, "cannot %s queue '%s'",
                     pause ? "pause" : "resume", name);
    free(path);
    char at[CLI_TIME_MAX];
    const char *since = rc == 0 ? cli_local_time(jstr(answer, "paused_at"), at) : NULL;
    if (rc == 0 && a.json)
        cli_print_json(answer);
    else if (rc == 0 && pause)
        printf("queue %s paused since %s: its jobs wait until `drover queues resume %s`\n", name,
               since ? since : "now", name);
    else if (rc == 0)
        printf("queue %s runs\n", name);
    if (rc == 0 && pause) note_unused_queue(&a.conn, name);
    json_decref(answer);
    return rc;
}

/* drover queues limit NAME N|none */
static int queue_limit(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc - 1, argv + 1, queues_usage);
    for (int i = 2; i < argc; i++) /* not an option: a number below 0 */
        if (argv[i][0] == '-' && isdigit((unsigned char)argv[i][1]))
            return cli_usage_error(queues_usage,
                                   "queues limit: N must be a whole number from 1 to 1000000, "
                                   "or none (0 is the same), not '%s'",
                                   argv[i]);
    while (cli_getopt(&a, ":h", longopts) != -1)
        ;
    if (a.exit_code != CLI_CONTINUE) return a.exit_code;
    if (a.argc - optind != 2)
        return cli_usage_error(queues_usage, "queues limit takes a queue's NAME and N (or none)");
    const char *name = a.argv[optind], *n = a.argv[optind + 1];
    char *end = NULL;
    long max = strcmp(n, "none") ? strtol(n, &end, 10) : 0;
    if (end && (!*n || *end || max < 0 || max > 1000000))
        return cli_usage_error(queues_usage,
                               "queues limit: N must be a whole number from 1 to 1000000, or "
                               "none (0 is the same), not '%s'",
                               n);
    if (!*name) return cli_usage_error(queues_usage, "the queue's NAME is empty");
    char *path = cli_path("/v1/queues/", name, "");
    json_t *body = json_pack("{s:o}", "max_running", max ? json_integer(max) : json_null());
    json_t *answer = NULL;
    int rc = cli_request(&a.conn, "PUT", path, body, &answer, "cannot limit queue '%s'", name);
    free(path);
    json_decref(body);
    if (rc == 0 && a.json)
        cli_print_json(answer);
    else if (rc == 0 && max)
        printf("queue %s: at most %ld jobs leased or running at once (%lld now)\n", name, max,
               (long long)json_integer_value(json_object_get(answer, "running")));
    else if (rc == 0)
        printf("queue %s: no max_running\n", name);
    json_decref(answer);
    return rc;
}

int cmd_queues(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "pause") || !strcmp(argv[1], "resume")))
        return queue_pause(argc, argv, argv[1][0] == 'p');
    if (argc >= 2 && !strcmp(argv[1], "limit")) return queue_limit(argc, argv);
    struct cli_args a;
    cli_args_init(&a, argc, argv, queues_usage);
    json_t *answer = NULL;
    int rc = cli_parse_json_only(&a, NULL, NULL, NULL);
    if (rc != CLI_CONTINUE) return rc;
    rc = cli_request(&a.conn, "GET", "/v1/queues", NULL, &answer, "cannot list queues");
    if (rc == 0 && a.json)
        cli_print_json(answer);
    else if (rc == 0)
        print_queues_table(json_is_array(answer) ? answer : json_object_get(answer, "queues"));
    json_decref(answer);
    return rc;
}
