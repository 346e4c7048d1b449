/*
 * cli_jobs.c - the job commands: submit, status, wait, cancel, jobs, queues.
 *
 * Each command parses its options (cli_getopt: --help; an unknown option is
 * a usage error, exit 2), calls the API of API.md and prints either a summary
 * for humans or, with --json, the server's JSON. Job ids on stdout stand
 * alone on their line so that `id=$(drover submit -- prog)` works.
 */
#include <errno.h>
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
#include "job/spec.h"

#define SPEC_FILE_MAX ((size_t)64 << 20)
#define WAIT_POLL_S 30 /* the server-side long-poll of one wait request */
#define WAIT_RETRIES 6 /* consecutive failed polls tolerated once the server was seen */
#define STATUS_STDOUT_LINES 10
#define JOBS_PAGE_MAX 1000 /* the most jobs the server gives in one page */

/* ---- reading jobs ---- */

/* Prints text, which may hold anything, so that it cannot drive the terminal. */
static void put_sanitised_to(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        fputc((c < 0x20 && c != '\t') || c == 0x7f ? '?' : c, f);
    }
}

static void put_sanitised(const char *s, size_t n)
{
    put_sanitised_to(stdout, s, n);
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Some answers wrap the job ({"job": {...}}); accept both shapes. */
static json_t *job_of(json_t *answer)
{
    json_t *inner = json_object_get(answer, "job");
    return json_is_object(inner) ? inner : answer;
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

/* "exit 0 · 12ms", "signal 9 · 3.1s", "timeout · 10.0s", "cancelled"; empty without result. */
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
    else if (json_is_integer(sig))
        buf_addf(out, "signal %lld", (long long)json_integer_value(sig));
    else
        buf_adds(out, reason ? reason : "?");
    if (json_is_number(dur)) {
        char d[32];
        cli_format_duration((int64_t)json_number_value(dur), d, sizeof(d));
        buf_addf(out, " \xc2\xb7 %s", d);
    }
}

/* The exit code of `drover wait` for a terminal job (API.md "CLI"). */
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
        put_sanitised(error, strlen(error));
    }
    putchar('\n');
    buf_release(&b);
}

/* ---- wait, shared by `wait` and `submit --wait` ---- */

/*
 * Long-polls job `id` until it is terminal or `timeout_s` (< 0: none) passed.
 * On 0, *job is its last known JSON (the caller owns it), terminal or not.
 * Returns 1 after printing why the job could not be followed.
 */
static int wait_job(struct cli *cli, const char *id, double timeout_s, json_t **job)
{
    int64_t deadline = timeout_s < 0 ? -1 : time_mono_ns() + (int64_t)(timeout_s * 1e9);
    char *eid = http_escape(id);
    json_t *last = NULL;
    int failures = 0;
    bool seen = false; /* the server was there once: a failure now is a restart or a hiccup */
    int rc = 0;

    *job = NULL;
    for (;;) {
        long poll = WAIT_POLL_S;
        if (deadline >= 0) {
            double left = (double)(deadline - time_mono_ns()) / 1e9;
            poll = left <= 0 ? 0 : (long)ceil(left);
            if (poll > WAIT_POLL_S) poll = WAIT_POLL_S;
        }
        char *path = xasprintf("/v1/jobs/%s/wait?timeout_s=%ld", eid, poll);
        struct err e = ERR_INIT;
        long status = 0;
        json_t *answer = NULL;
        long saved_timeout = cli->http.timeout_ms;
        cli->http.timeout_ms = (poll + 30) * 1000;
        int r = http_client_json(&cli->http, "GET", path, NULL, &status, &answer, &e);
        cli->http.timeout_ms = saved_timeout;
        free(path);

        seen = seen || cli->http.reached;
        if (r < 0) {
            json_decref(answer);
            /* Once the server was seen, ride out its restart or a dropped connection. */
            bool transient = status == 0 || status == 503;
            bool time_left = deadline < 0 || time_mono_ns() < deadline;
            if (seen && transient && time_left && ++failures <= WAIT_RETRIES) {
                int64_t pause_ns = (int64_t)1000000000 << (failures - 1 < 4 ? failures - 1 : 4);
                if (deadline >= 0 && deadline - time_mono_ns() < pause_ns)
                    pause_ns = deadline - time_mono_ns();
                if (pause_ns > 0) {
                    struct timespec ts = {pause_ns / 1000000000, pause_ns % 1000000000};
                    nanosleep(&ts, NULL);
                }
                continue;
            }
            char what[256];
            snprintf(what, sizeof(what), "cannot wait for job '%s'", id);
            cli_print_err(cli, &e, status, what);
            rc = 1;
            break;
        }
        failures = 0;
        json_t *j = json_incref(job_of(answer));
        json_decref(answer);
        json_decref(last);
        last = j;
        if (cli_job_is_terminal(jstr(last, "state"))) break;
        if (deadline >= 0 && time_mono_ns() >= deadline) break;
    }
    free(eid);
    if (rc)
        json_decref(last);
    else
        *job = last;
    return rc;
}

/* Waits and reports like `drover wait`; returns the exit code. */
static int wait_and_report(struct cli *cli, const char *id, double timeout_s, bool json,
                           json_t **final)
{
    json_t *job;
    *final = NULL;
    if (wait_job(cli, id, timeout_s, &job)) return 1;
    const char *state = jstr(job, "state");
    *final = job;
    if (!cli_job_is_terminal(state)) {
        fprintf(stderr, "drover: job '%s' is still %s after %gs\n", id, state ? state : "unknown",
                timeout_s);
        return 1;
    }
    if (!json) print_final_line(job);
    return job_exit_code(job);
}

/* ---- submit ---- */

static const char submit_usage[] =
    "usage: drover submit [options] -- PROGRAM [ARGS...]\n"
    "       drover submit [options] -f SPEC.json|-\n"
    "\n"
    "Submits a job and prints its id (one per line for an array of specs).\n"
    "When no agent up could take a job (no agent serves its queue, has the labels\n"
    "it requires or as many slots), the server's warnings say so on standard\n"
    "error; the job is queued all the same.\n"
    "With -- the job runs PROGRAM with ARGS (no shell); with -f the spec file (or\n"
    "standard input) is sent as it is, an object or an array of them, and the\n"
    "options below replace its top-level fields.\n"
    "\n"
    "  -f, --file FILE    the job spec (API.md \"Job spec\"); '-' reads standard input\n"
    "  -q, --queue Q      queue (default 'default')\n"
    "  -p, --priority N   -1000..1000, higher runs first\n"
    "  -n, --name NAME    a name for humans\n"
    "  -l, --label K=V    a label (repeatable)\n"
    "  -t, --timeout S    kill the job after S seconds\n"
    "  -k, --key KEY      idempotency key: submitting the same key again returns the first job\n"
    "  -w, --wait         wait for the job to end and exit like `drover wait`\n"
    "      --upload-to s3://BUCKET[/PREFIX]\n"
    "                     where local files (@path, below) go (default\n"
    "                     s3://uploads/<a new UUID>)\n"
    "      --json         print the server's JSON answer\n"
    "\n"
    "Local files: after --, an argument @./path, @../path or @/path names a local\n"
    "file; it is uploaded before the job is submitted and the job gets it as an\n"
    "input argument (its agent downloads it and passes the local copy's path).\n"
    "Any other argument starting with @ is passed as it is; @@x passes @x. In a\n"
    "spec file, the value \"@path\" of an input argument, of command.input and\n"
    "of a uri command.stdin is such a file (relative to the current folder); a\n"
    "command.input file goes into a sub-folder of its own (BASE/1/NAME, ...) so\n"
    "that, as a prefix, it matches that file only.\n" CLI_COMMON_USAGE;

enum { OPT_SERVICE = CLI_OPT_FIRST_FREE, OPT_UPLOAD_TO };

/* Sets obj[key] = v, stealing v; false when v is NULL (json_string of text that is not UTF-8). */
static bool put(json_t *obj, const char *key, json_t *v)
{
    return v && json_object_set_new(obj, key, v) == 0;
}

/* Sets the options on one spec object: they win over what the file says; labels merge. */
static void apply_overrides(json_t *spec, json_t *fields, json_t *labels)
{
    json_object_update(spec, fields);
    if (json_object_size(labels) > 0) {
        json_t *have = json_object_get(spec, "labels");
        if (!json_is_object(have)) {
            have = json_object();
            json_object_set_new(spec, "labels", have);
        }
        json_object_update(have, labels);
    }
}

/* Reads and parses the spec file; prints why not and returns NULL on failure. */
static json_t *load_spec(const char *file)
{
    struct buf b = BUF_INIT;
    struct err e = ERR_INIT;
    json_t *spec = NULL;
    const char *name = strcmp(file, "-") ? file : "standard input";
    if (cli_read_file(file, SPEC_FILE_MAX, &b, &e) < 0) {
        fprintf(stderr, "drover: %s\n", e.msg);
    } else {
        json_error_t jerr;
        spec = json_loadb(buf_str(&b), b.len, 0, &jerr);
        if (!spec)
            fprintf(stderr, "drover: '%s' is not valid JSON: line %d, column %d: %s\n", name,
                    jerr.line, jerr.column, jerr.text);
        else if (!json_is_object(spec) && !json_is_array(spec)) {
            fprintf(stderr, "drover: '%s' must hold a job spec (an object) or an array of them\n",
                    name);
            json_decref(spec);
            spec = NULL;
        }
    }
    buf_release(&b);
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
}

static void uploads_release(struct uploads *up)
{
    free(up->base);
    json_decref(up->by_path);
    json_decref(up->by_name);
    json_decref(up->by_inode);
    json_decref(up->order);
    json_decref(up->uploaded);
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
        fprintf(stderr, "drover: cannot read '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        fprintf(stderr, "drover: '%s' is a folder; only files can be uploaded\n", path);
        return NULL;
    }
    char inode[64];
    snprintf(inode, sizeof(inode), "%s%ju:%ju", alone ? "p:" : "", (uintmax_t)st.st_dev,
             (uintmax_t)st.st_ino);
    if ((have = jstr(up->by_inode, inode))) return have;
    if (!up->base) {
        char id[UUID_STR_LEN];
        uuid7_new(id);
        up->base = xasprintf("s3://uploads/%s", id);
    }
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    char *uri = alone ? xasprintf("%s/%d/%s", up->base, up->folders + 1, name)
                      : xasprintf("%s/%s", up->base, name);
    const char *why = NULL;
    const char *other;
    if (!spec_uri_valid(uri, false, &why)) {
        fprintf(stderr, "drover: cannot upload '%s' as '%s': %s\n", path, uri, why);
        free(uri);
        return NULL;
    }
    /* The agent names its local copy after the key's last part: two files of one name
     * could not both be there, so they are refused rather than renamed (one file named
     * both as an argument and as a prefix is the same file). */
    if ((other = jstr(up->by_name, name)) && strcmp(other, path)) {
        fprintf(stderr,
                "drover: '%s' and '%s' would both be uploaded as '%s'; give the files different "
                "names\n",
                other, path, name);
        free(uri);
        return NULL;
    }
    path_key = xasprintf("%c:%s", alone ? 'p' : 'a', path);
    bool stored = put(up->by_path, path_key, json_string(uri)) &&
                  put(up->by_name, name, json_string(path)) &&
                  put(up->by_inode, inode, json_string(uri));
    if (!stored) {
        fprintf(stderr, "drover: the file name '%s' is not UTF-8 text\n", path);
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
    json_t *cmd = json_object_get(spec, "command");
    if (!json_is_object(cmd)) return 0;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(cmd, "arguments"), i, v)
    {
        if (json_is_object(v) && jstr(v, "type") && !strcmp(jstr(v, "type"), "input") &&
            resolve_at_value(up, v, "value"))
            return -1;
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

/* True when an argument after -- names a local file: @./x, @../x, @/x. */
static bool names_local_file(const char *arg)
{
    return !strncmp(arg, "@./", 3) || !strncmp(arg, "@../", 4) || !strncmp(arg, "@/", 2);
}

/*
 * The spec for `-- PROGRAM ARGS`: command.argv when no argument names a local
 * file, else command.arguments with those as input arguments. NULL after
 * printing why not.
 */
static json_t *program_spec(struct uploads *up, char **argv, int first, int argc)
{
    bool files = false;
    for (int i = first + 1; i < argc; i++)
        files = files || names_local_file(argv[i]);
    json_t *args = json_array();
    for (int i = first + 1; i < argc; i++) {
        const char *arg = argv[i][0] == '@' && argv[i][1] == '@' ? argv[i] + 1 : argv[i];
        json_t *item;
        if (names_local_file(argv[i])) {
            const char *uri = upload_uri(up, argv[i] + 1, false);
            if (!uri) goto fail;
            item = json_pack("{s:s, s:s}", "type", "input", "value", uri);
        } else if (files) {
            item = json_pack("{s:s, s:s}", "type", "parameter", "value", arg); /* NULL: not UTF-8 */
        } else {
            item = json_string(arg);
        }
        if (!item) {
            fprintf(stderr, "drover: argument '%s' is not UTF-8 text\n", argv[i]);
            goto fail;
        }
        json_array_append_new(args, item);
    }
    json_t *spec = json_pack("{s:{s:s, s:o}}", "command", "program", argv[first],
                             files ? "arguments" : "argv", args);
    if (!spec) fprintf(stderr, "drover: the program's name '%s' is not UTF-8 text\n", argv[first]);
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
    fprintf(stderr, "drover: the job was not submitted; %s uploaded before: ",
            n == 1 ? "this object was" : "these objects were");
    size_t i;
    json_t *v;
    json_array_foreach(up->uploaded, i, v)
    {
        fprintf(stderr, "%s%s", i ? " " : "", json_string_value(v));
    }
    fprintf(stderr, " (`drover rm` deletes them)\n");
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
            fprintf(stderr, "drover: %s\n", e.msg);
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
        fprintf(stderr, "drover: warning: %s%s", job ? job : "", job ? ": " : "");
        put_sanitised_to(stderr, json_string_value(w), strlen(json_string_value(w)));
        fputc('\n', stderr);
    }
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
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc, argv, submit_usage);
    json_t *fields = json_object(); /* top-level fields set by options */
    json_t *labels = json_object();
    const char *file = NULL;
    bool wait = false;
    int opt, rc = 2;
    json_t *spec = NULL, *answer = NULL;
    struct cli cli = {0};
    struct uploads up;
    uploads_init(&up);

    /* '+': stop at the program's name, whose own options are not ours */
    while ((opt = cli_getopt(&a, "+:f:q:p:n:l:t:k:wh", longopts)) != -1) {
        bool good = true;
        switch (opt) {
        case 'f':
            file = optarg;
            break;
        case 'q':
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
        case OPT_UPLOAD_TO: {
            struct cli_s3_uri u;
            struct err e = ERR_INIT;
            if (cli_s3_parse(optarg, true, &u, &e) < 0) {
                rc = cli_usage_error(submit_usage, "--upload-to: %s", e.msg);
                goto out;
            }
            cli_s3_release(&u);
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
                rc = cli_usage_error(submit_usage,
                                     "--priority must be an integer in -1000..1000, not '%s'",
                                     optarg);
                goto out;
            }
            put(fields, "priority", json_integer(prio));
            break;
        }
        case 't': {
            double t;
            if (!cli_parse_seconds(optarg, &t)) {
                rc = cli_usage_error(submit_usage,
                                     "--timeout must be a number of seconds, not '%s'", optarg);
                goto out;
            }
            put(fields, "timeout_s",
                t == floor(t) && t < 1e15 ? json_integer((json_int_t)t) : json_real(t));
            break;
        }
        case 'l': {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                rc = cli_usage_error(submit_usage, "--label must be KEY=VALUE, not '%s'", optarg);
                goto out;
            }
            char *k = xstrndup(optarg, (size_t)(eq - optarg));
            good = put(labels, k, json_string(eq + 1));
            free(k);
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
    if (!file && optind >= argc) {
        rc = cli_usage_error(submit_usage, "nothing to submit: give -f SPEC.json or -- PROGRAM");
        goto out;
    }

    rc = 1;
    if (file) {
        if (!(spec = load_spec(file))) goto out;
    } else {
        if (!(spec = program_spec(&up, argv, optind, argc))) goto out;
    }
    if (json_is_array(spec)) {
        size_t i;
        json_t *one;
        json_array_foreach(spec, i, one)
        {
            if (json_is_object(one)) apply_overrides(one, fields, labels);
            if (file && resolve_spec_files(&up, one)) goto out;
        }
    } else {
        apply_overrides(spec, fields, labels);
        if (file && resolve_spec_files(&up, spec)) goto out;
    }

    if (cli_connect(&cli, &a.conn)) goto out;
    if (upload_all(&cli, &up)) goto out;
    if (cli_call(&cli, "POST", "/v1/jobs", spec, &answer, "cannot submit the job")) {
        tell_uploaded(&up);
        goto out;
    }

    /* One job, {"jobs": [...]} for an array, or the answer to a `test` probe. */
    json_t *jobs = json_object_get(answer, "jobs");
    json_t *single = json_is_array(jobs) ? NULL : job_of(answer);
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
    json_t *finals = json_array();
    size_t i;
    json_t *j;
    if (!a.json) {
        json_array_foreach(list, i, j) printf("%s\n", jstr(j, "id") ? jstr(j, "id") : "?");
        fflush(stdout);
    }
    rc = 0;
    json_array_foreach(list, i, j)
    {
        json_t *final = NULL;
        int r = wait_and_report(&cli, jstr(j, "id") ? jstr(j, "id") : "", -1, a.json, &final);
        if (r && !rc) rc = r;
        json_array_append_new(finals, final ? final : json_null());
    }
    if (a.json) {
        if (single)
            cli_print_json(json_array_get(finals, 0));
        else {
            json_t *wrapped = json_pack("{s:O}", "jobs", finals);
            cli_print_json(wrapped);
            json_decref(wrapped);
        }
    }
    json_decref(finals);
    json_decref(list);
out:
    json_decref(answer);
    json_decref(spec);
    json_decref(fields);
    json_decref(labels);
    uploads_release(&up);
    cli_release(&cli);
    return rc;
}

/* ---- status ---- */

static const char status_usage[] =
    "usage: drover status [--json] ID\n"
    "\n"
    "Shows a job: its state, timing, result and first lines of output; for a\n"
    "queued job, why it waits (no agent could take it, agents busy, a delay or\n"
    "a retry's backoff). ID may be a unique prefix of the job's id.\n"
    "\n"
    "      --json         print the job's JSON\n" CLI_COMMON_USAGE;

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
        put_sanitised(value, strlen(value));
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

static void print_status(json_t *job)
{
    struct buf b = BUF_INIT;
    char tmp[128];

    field("id:", jstr(job, "id"));
    field("state:", jstr(job, "state"));
    field("queue:", jstr(job, "queue"));
    field("name:", jstr(job, "name"));
    field("service:", jstr(job, "service"));
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
        if (json_is_integer(max))
            snprintf(tmp, sizeof(tmp), "%lld of %lld", (long long)json_integer_value(attempt),
                     (long long)json_integer_value(max));
        else
            snprintf(tmp, sizeof(tmp), "%lld", (long long)json_integer_value(attempt));
        field("attempt:", tmp);
    }
    print_time_field("created:", job, "created_at");
    print_time_field("started:", job, "started_at");
    print_time_field("finished:", job, "finished_at");
    field("agent:", jstr(job, "agent"));
    field("waiting:", jstr(json_object_get(job, "waiting"), "message"));

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
    if (out && *out) {
        printf("stdout:\n");
        const char *p = out;
        int lines = 0;
        while (*p && lines < STATUS_STDOUT_LINES) {
            const char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p);
            fputs("  ", stdout);
            put_sanitised(p, n);
            putchar('\n');
            lines++;
            p += n + (nl ? 1 : 0);
        }
        int more = 0;
        for (const char *q = p; *q; q++)
            if (*q == '\n' || q[1] == '\0') more++;
        if (more) printf("  ... (%d more line%s)\n", more, more == 1 ? "" : "s");
    }
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
    char *path = cli_path("/v1/jobs/", id, "");
    rc = cli_request(&a.conn, "GET", path, NULL, &job, "cannot show job '%s'", id);
    free(path);
    if (rc == 0 && a.json)
        cli_print_json(job);
    else if (rc == 0)
        print_status(job_of(job));
    json_decref(job);
    return rc;
}

/* ---- wait ---- */

static const char wait_usage[] =
    "usage: drover wait [--timeout S] [--json] ID\n"
    "\n"
    "Waits for a job to end and prints its final state. Exits with the job's exit\n"
    "code when it ran (0 when it succeeded), 1 when it failed otherwise, was\n"
    "cancelled, or is still not done after --timeout.\n"
    "\n"
    "  -t, --timeout S    give up after S seconds (default: wait as long as it takes)\n"
    "      --json         print the job's final JSON\n" CLI_COMMON_USAGE;

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
    const char *id;
    json_t *job = NULL;
    int rc;

    while (cli_getopt(&a, ":t:h", longopts) != -1) {
        /* 't', the only option of its own */
        if (!cli_parse_seconds(optarg, &timeout))
            return cli_usage_error(wait_usage, "--timeout must be a number of seconds, not '%s'",
                                   optarg);
    }
    if ((rc = cli_args_one(&a, CLI_JOB_ID_MISSING, CLI_JOB_ID_EMPTY, &id)) != CLI_CONTINUE)
        return rc;
    if (cli_connect(&cli, &a.conn)) {
        cli_release(&cli);
        return 1;
    }
    rc = wait_and_report(&cli, id, timeout, a.json, &job);
    if (a.json && job) cli_print_json(job);
    json_decref(job);
    cli_release(&cli);
    return rc;
}

/* ---- cancel ---- */

static const char cancel_usage[] =
    "usage: drover cancel [--json] ID\n"
    "\n"
    "Cancels a job that has not ended; a running process is killed.\n"
    "\n"
    "      --json         print the server's JSON answer\n" CLI_COMMON_USAGE;

int cmd_cancel(int argc, char **argv)
{
    struct cli_args a;
    cli_args_init(&a, argc, argv, cancel_usage);
    const char *id;
    json_t *answer = NULL;
    int rc = cli_parse_json_only(&a, CLI_JOB_ID_MISSING, CLI_JOB_ID_EMPTY, &id);
    if (rc != CLI_CONTINUE) return rc;
    char *path = cli_path("/v1/jobs/", id, "/cancel");
    rc = cli_request(&a.conn, "POST", path, NULL, &answer, "cannot cancel job '%s'", id);
    free(path);
    if (rc == 0 && a.json)
        cli_print_json(answer);
    else if (rc == 0)
        printf("cancelled %s\n", id);
    json_decref(answer);
    return rc;
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
    "  -l, --label K:V    only jobs with label K set to V\n"
    "  -n, --limit N      at most N jobs (one page by default)\n"
    "  -a, --all          follow the pages to the end (or to --limit)\n"
    "      --json         print the jobs as a JSON array\n" CLI_COMMON_USAGE;

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
        {"service", required_argument, NULL, OPT_SERVICE},
        {"label", required_argument, NULL, 'l'},
        {"limit", required_argument, NULL, 'n'},
        {"all", no_argument, NULL, 'a'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc, argv, jobs_usage);
    struct cli cli = {0};
    struct buf filter = BUF_INIT; /* "/v1/jobs?state=..." */
    bool all = false, has_label = false;
    long limit = 0;
    json_t *list = json_array();
    int opt, rc = 2;

    buf_adds(&filter, "/v1/jobs");
    while ((opt = cli_getopt(&a, ":s:q:l:n:ah", longopts)) != -1) {
        switch (opt) {
        case 's':
            add_query(&filter, "state", optarg);
            break;
        case 'q':
            add_query(&filter, "queue", optarg);
            break;
        case OPT_SERVICE:
            add_query(&filter, "service", optarg);
            break;
        case 'l': {
            if (has_label) {
                rc = cli_usage_error(jobs_usage, "only one --label filter is supported");
                goto out;
            }
            has_label = true;
            /* The API wants k:v; accept k=v too. */
            char *kv = xstrdup(optarg);
            char *eq = strchr(kv, '=');
            if (!strchr(kv, ':') && eq) *eq = ':';
            if (!strchr(kv, ':') || kv[0] == ':') {
                free(kv);
                rc = cli_usage_error(jobs_usage, "--label must be KEY:VALUE, not '%s'", optarg);
                goto out;
            }
            add_query(&filter, "label", kv);
            free(kv);
            break;
        }
        case 'n':
            if (!cli_parse_long(optarg, 1, 1000000000, &limit)) {
                rc = cli_usage_error(jobs_usage, "--limit must be a positive integer, not '%s'",
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
    rc = 1;
    if (cli_connect(&cli, &a.conn)) goto out;

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
    "\n"
    "Lists the queues with their jobs by state and the agents listening.\n"
    "\n"
    "      --json         print the server's JSON answer\n" CLI_COMMON_USAGE;

static void print_queues_table(json_t *list)
{
    struct table *t = table_new(6, "name", "queued", "running", "succeeded", "failed", "listeners");
    for (size_t c = 1; c < 6; c++)
        table_align_right(t, c);
    static const char *const keys[] = {"queued", "running", "succeeded", "failed", "listeners"};
    size_t i;
    json_t *q;
    json_array_foreach(list, i, q)
    {
        table_add(t, jstr(q, "name"));
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
            table_addf(t, "%lld", (long long)json_integer_value(json_object_get(q, keys[k])));
    }
    table_print(t, stdout);
    table_free(t);
}

int cmd_queues(int argc, char **argv)
{
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
