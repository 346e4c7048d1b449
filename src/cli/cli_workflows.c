/*
 * cli_workflows.c - `drover workflow submit FILE | list (ls) | status ID | wait ID | cancel ID |
 * retry ID` (docs/api.md "Workflows"): status draws the graph as text, each node indented by
 * its depth (the longest path to it from a node without upstreams), with its state and its
 * upstreams; list is a table, newest first; wait follows the event stream until the workflow
 * ended; --json prints the server's answer.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "commands.h"
#include "common/xalloc.h"
#include "job/job.h"

#define MAX_INDENT 32 /* levels drawn indented */
#define WORKFLOW_FILE_MAX (16 * 1024 * 1024) /* the server's limit */

static const char workflow_usage[] =
    "usage: drover workflow submit [--wait [--timeout S]] [--key K] [--json] FILE|-f FILE\n"
    "       drover workflow list [--json] [--limit N | --all]\n"
    "       drover workflow status [--json] ID\n"
    "       drover workflow wait [--timeout S] [--json] ID\n"
    "       drover workflow cancel [--json] ID\n"
    "       drover workflow retry [--json] ID\n"
    "\n"
    "Workflows: nodes (job specs) joined by depends_on and port connections, each node\n"
    "queued once its upstreams have ended as it needs (docs/api.md \"Workflows\").\n"
    "\n"
    "  submit FILE        submit the workflow in FILE (JSON; - for stdin): prints its id\n"
    "                     (its graph on stderr)\n"
    "      -f, --file FILE  the same (as drover submit -f)\n"
    "      -w, --wait       then wait for it to end, as workflow wait does\n"
    "      -k, --key K      idempotency key: submitting K again gives the first workflow\n"
    "                       (the file's \"key\"; a retried submit makes no second one; a\n"
    "                       note on stderr tells it)\n"
    "  list               the workflows, newest first: state and progress of each\n"
    "                     (ls is the same)\n"
    "      -n, --limit N  at most N workflows (default: one page of 20)\n"
    "      -a, --all      follow the pages to the end (or to --limit)\n"
    "  status ID          every node's state and the progress, drawn as a graph\n"
    "  wait ID            wait for the workflow to end, printing each change of a\n"
    "                     node's state on stderr, then the graph; exits 0 when it\n"
    "                     succeeded, else with the worst exit code of its failed nodes\n"
    "                     (1 when none ran to an exit code, and after --timeout)\n"
    "      -t, --timeout S  give up after S seconds (default: as long as it takes)\n"
    "  cancel ID          cancel every node that has not ended\n"
    "  retry ID           rerun what failed or was cancelled, keeping what succeeded\n"
    "      --json         print the server's JSON answer\n"
    "\n"
    "examples:\n"
    "  drover workflow submit diamond.json\n"
    "  drover workflow list --all --json | jq -r '.[] | select(.state == \"failed\") | .id'\n"
    "  drover workflow status 0193a1b2-...\n"
    "  drover workflow submit --wait diamond.json && echo all done\n"
    "  drover workflow retry 0193a1b2-...\n"
    CLI_COMMON_USAGE;

/* The depth of each node: 0 without upstreams, else 1 + its deepest upstream's. */
static long depth_of(json_t *nodes, const char *name, json_t *memo, int guard)
{
    json_t *m = json_object_get(memo, name);
    if (m) return (long)json_integer_value(m);
    long d = 0;
    size_t i;
    json_t *dep;
    if (guard > 10001) return 0; /* the server refuses cycles; never loop on a bad answer */
    json_array_foreach(json_object_get(json_object_get(nodes, name), "depends_on"), i, dep)
    {
        const char *up = json_string_value(json_object_get(dep, "node"));
        if (up && json_object_get(nodes, up)) {
            long u = depth_of(nodes, up, memo, guard + 1) + 1;
            if (u > d) d = u;
        }
    }
    json_object_set_new(memo, name, json_integer(d));
    return d;
}

struct drawn {
    const char *name;
    json_t *node;
    long depth;
    size_t at; /* its place in the answer */
};

static int by_depth(const void *a, const void *b)
{
    const struct drawn *x = a, *y = b;
    if (x->depth != y->depth) return x->depth < y->depth ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

static void print_graph_to(FILE *f, json_t *w)
{
    const char *id = json_string_value(json_object_get(w, "id"));
    const char *name = json_string_value(json_object_get(w, "name"));
    json_t *progress = json_object_get(w, "progress"), *nodes = json_object_get(w, "nodes");
    fprintf(f, "workflow %s", id ? id : "?");
    if (name) {
        fprintf(f, " ");
        cli_put_clean(f, name, strlen(name));
    }
    fprintf(f, ": %s\n", json_string_value(json_object_get(w, "state")) ?: "?");
    fprintf(f, "progress: %lld/%lld succeeded",
           (long long)json_integer_value(json_object_get(progress, "succeeded")),
           (long long)json_integer_value(json_object_get(progress, "total")));
    static const char *const others[] = {"running", "leased", "queued", "blocked", "failed",
                                         "cancelled"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        json_int_t n = json_integer_value(json_object_get(progress, others[i]));
        if (n) fprintf(f, ", %lld %s", (long long)n, others[i]);
    }
    fprintf(f, "\n");
    json_t *memo = json_object();
    size_t n = json_object_size(nodes), at = 0;
    struct drawn *order = xcalloc(n + 1, sizeof(*order));
    const char *k;
    json_t *v;
    json_object_foreach(nodes, k, v)
    {
        order[at] = (struct drawn){k, v, depth_of(nodes, k, memo, 0), at};
        at++;
    }
    qsort(order, n, sizeof(*order), by_depth); /* level by level, each in the answer's order */
    for (size_t o = 0; o < n; o++) {
        k = order[o].name;
        v = order[o].node;
        long level = order[o].depth;
        if (level > MAX_INDENT) /* deeper: the level said, not drawn */
            fprintf(f, "%*s└─(level %ld) ", 2 * MAX_INDENT, "", level);
        else
            fprintf(f, "%*s%s ", (int)(2 * level), "", level ? "└─" : "●");
        cli_put_clean(f, k, strlen(k));
        const char *state = json_string_value(json_object_get(v, "state"));
        fprintf(f, "  [%s]", state ? state : "?");
        json_t *counts = json_object_get(v, "counts"); /* a fan-out node's tasks */
        if (counts) {
            fprintf(f, "  tasks %lld/%lld succeeded",
                   (long long)json_integer_value(json_object_get(counts, "succeeded")),
                   (long long)json_integer_value(json_object_get(counts, "total")));
            for (size_t t = 0; t < sizeof(others) / sizeof(others[0]); t++) {
                json_int_t c = json_integer_value(json_object_get(counts, others[t]));
                if (c) fprintf(f, ", %lld %s", (long long)c, others[t]);
            }
        }
        size_t i;
        json_t *dep;
        json_array_foreach(json_object_get(v, "depends_on"), i, dep)
        {
            const char *up = json_string_value(json_object_get(dep, "node"));
            const char *on = json_string_value(json_object_get(dep, "on"));
            fprintf(f, "%s", i ? ", " : "  after ");
            cli_put_clean(f, up ? up : "?", up ? strlen(up) : 1);
            if (on && !strcmp(on, "any")) fprintf(f, " (any end)");
        }
        fprintf(f, "\n");
    }
    free(order);
    json_decref(memo);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(w, "connections"), i, c)
    {
        const char *from = json_string_value(json_object_get(c, "from"));
        const char *to = json_string_value(json_object_get(c, "to"));
        if (!i) fprintf(f, "connections:\n");
        fprintf(f, "  ");
        cli_put_clean(f, from ? from : "?", from ? strlen(from) : 1);
        fprintf(f, " -> ");
        cli_put_clean(f, to ? to : "?", to ? strlen(to) : 1);
        fprintf(f, "\n");
    }
}

static void print_graph(json_t *w)
{
    print_graph_to(stdout, w);
}

static void print_list(json_t *list)
{
    struct table *t = table_new(5, "id", "name", "state", "progress", "created");
    table_align_right(t, 3);
    table_max_width(t, 1, 40);
    size_t i;
    json_t *w;
    json_array_foreach(list, i, w)
    {
        json_t *p = json_object_get(w, "progress");
        table_add(t, json_string_value(json_object_get(w, "id")));
        table_add(t, json_string_value(json_object_get(w, "name")));
        table_add(t, json_string_value(json_object_get(w, "state")));
        table_addf(t, "%lld/%lld", (long long)json_integer_value(json_object_get(p, "succeeded")),
                   (long long)json_integer_value(json_object_get(p, "total")));
        char at[CLI_TIME_MAX];
        table_add(t, cli_local_time(json_string_value(json_object_get(w, "created_at")), at));
    }
    table_print(t, stdout);
    table_free(t);
}

/* ---- wait ---- */

/*
 * Waiting follows the event stream of the workflow's jobs (GET /v1/events?workflow=ID) with
 * cli_wait_ended: each end of a node's job is a reason to read the workflow again, until its
 * state is no longer "running". Each node's changes are printed on stderr, named.
 */
struct wf_wait {
    json_t *nodes; /* the nodes' job ids -> node names */
    json_t *ended; /* the nodes whose end was printed -> true */
    bool quiet;    /* --json: no lines for humans */
};

/* "NODE: " and the event's line, unless --json or the node's end was printed already. */
static void wf_print(struct wf_wait *w, const char *node, json_t *ev)
{
    const char *state = json_string_value(json_object_get(ev, "state"));
    if (w->quiet || json_object_get(w->ended, node)) return;
    if (cli_job_is_terminal(state)) json_object_set_new(w->ended, node, json_true());
    cli_put_clean(stderr, node, strlen(node));
    fputs(": ", stderr);
    cli_print_event(stderr, ev, true);
}

/*
 * The workflow read `now` (`before`: the read before it, NULL for the first). A node that
 * `before` saw open and `now` sees ended, its end not yet printed (its event not yet taken:
 * the read came first), gets its line from the read.
 */
static void wf_read(void *arg, json_t *before, json_t *now)
{
    struct wf_wait *w = arg;
    json_t *was_nodes = json_object_get(before, "nodes");
    json_object_clear(w->nodes);
    const char *name;
    json_t *node;
    json_object_foreach(json_object_get(now, "nodes"), name, node)
    {
        const char *job = json_string_value(json_object_get(node, "job"));
        const char *state = json_string_value(json_object_get(node, "state"));
        json_t *was = json_object_get(json_object_get(was_nodes, name), "state");
        if (job && *job) json_object_set_new(w->nodes, job, json_string(name));
        if (!job || !cli_job_is_terminal(state) || !json_is_string(was) ||
            cli_job_is_terminal(json_string_value(was)))
            continue;
        json_t *result = json_object_get(node, "result");
        json_t *ev = json_pack("{s:s, s:s}", "job", job, "state", state);
        if (json_integer_value(json_object_get(node, "attempt")) > 0)
            json_object_set(ev, "attempt", json_object_get(node, "attempt"));
        static const char *const keys[] = {"reason", "exit_code", "error"};
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            json_t *v = json_object_get(result, keys[k]);
            if (json_is_string(v) || json_is_integer(v)) json_object_set(ev, keys[k], v);
        }
        wf_print(w, name, ev);
        json_decref(ev);
    }
}

static int wf_on_event(void *arg, int64_t seq, const char *type, json_t *ev, struct err *e)
{
    (void)seq;
    (void)e;
    struct wf_wait *w = arg;
    const char *job = json_string_value(json_object_get(ev, "job"));
    const char *state = json_string_value(json_object_get(ev, "state"));
    if (type && !strcmp(type, "workflow")) /* its own end: read it */
        return cli_job_is_terminal(state) ? CLI_FOLLOW_STOP : 0;
    const char *node = job ? json_string_value(json_object_get(w->nodes, job)) : NULL;
    if (!node || !state) return 0; /* a fan-out's task: its node's counts tell */
    wf_print(w, node, ev);
    return cli_job_is_terminal(state) ? CLI_FOLLOW_STOP : 0;
}

/* 0 for a workflow that succeeded, else the worst exit code of its failed nodes, or 1. */
static int wf_exit_code(json_t *wf)
{
    const char *state = json_string_value(json_object_get(wf, "state"));
    if (state && !strcmp(state, "succeeded")) return 0;
    int rc = 1;
    const char *name;
    json_t *node;
    json_object_foreach(json_object_get(wf, "nodes"), name, node)
    {
        json_int_t code =
            json_integer_value(json_object_get(json_object_get(node, "result"), "exit_code"));
        const char *s = json_string_value(json_object_get(node, "state"));
        if (s && !strcmp(s, "failed") && code > rc && code < 256) rc = (int)code;
    }
    return rc;
}

/*
 * Waits for workflow `first` (as read, stolen) to end or `timeout_s` (< 0: none) to run
 * out; prints its graph (or JSON) as last read. Returns the exit code of `workflow wait`.
 */
static int wait_workflow(struct cli *cli, json_t *first, double timeout_s, bool json)
{
    const char *id = json_string_value(json_object_get(first, "id"));
    char *eid = http_escape(id ? id : "");
    char *path = cli_path("/v1/workflows/", id ? id : "", "");
    /* the stream's filter takes at most 1,000 nodes: a larger workflow's among all jobs' */
    bool all = json_object_size(json_object_get(first, "nodes")) > JOB_EVENTS_FILTER_MAX;
    char *query = all ? xstrdup("type=job") : xasprintf("workflow=%s", eid);
    struct wf_wait w = {.nodes = json_object(), .ended = json_object(), .quiet = json};
    struct cli_wait cw = {.kind = "workflow", .path = path, .query = query,
                          .on_event = wf_on_event, .on_read = wf_read, .print = print_graph,
                          .arg = &w, .json = json, .last = first};
    wf_read(&w, NULL, first); /* the nodes' names */
    int rc = cli_wait_ended(cli, &cw, timeout_s);
    if (rc == 0) rc = wf_exit_code(cw.last);
    json_decref(cw.last);
    json_decref(w.nodes);
    json_decref(w.ended);
    free(query);
    free(path);
    free(eid);
    return rc;
}

/*
 * The arguments of submit (its file, given alone or with -f as drover submit takes a spec;
 * *file NULL for wait) or of wait (its ID): --wait and --key K (submit), --timeout S (both).
 */
static int parse_submit_wait(struct cli_args *a, const char **file, const char **id, bool *wait,
                             double *timeout, const char **key)
{
    static const struct option submit_opts[] = {
        {"file", required_argument, NULL, 'f'},
        {"key", required_argument, NULL, 'k'},
        {"wait", no_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    static const struct option wait_opts[] = {
        {"timeout", required_argument, NULL, 't'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    const char *f = NULL;
    bool submit = file != NULL, timeout_given = false;
    int opt;
    while ((opt = cli_getopt(a, submit ? ":f:wt:k:h" : ":t:h",
                             submit ? submit_opts : wait_opts)) != -1) {
        if (opt == 'w') {
            *wait = true;
        } else if (opt == 'k') {
            if (!*optarg || strlen(optarg) > 256)
                return cli_usage_error(workflow_usage, "--key must be 1 to 256 bytes");
            *key = optarg;
        } else if (opt == 't') {
            if (!cli_parse_seconds(optarg, timeout))
                return cli_usage_error(workflow_usage, CLI_WAIT_TIMEOUT_BAD, optarg);
            timeout_given = true;
        } else if (f) {
            return cli_usage_error(workflow_usage, "give one workflow file");
        } else {
            f = optarg;
        }
    }
    if (a->exit_code != CLI_CONTINUE) return a->exit_code;
    if (submit && timeout_given && !*wait)
        return cli_usage_error(workflow_usage, "--timeout is for --wait: give both");
    if (!submit)
        return cli_args_one(a, "which workflow? give its ID", "the workflow ID is empty", id);
    if (!f)
        return cli_args_one(a, "which file? give the workflow's JSON file",
                            "the file name is empty", file);
    if (optind < a->argc)
        return cli_usage_error(workflow_usage, "give one workflow file, not -f %s and '%s'", f,
                               a->argv[optind]);
    if (!*f) return cli_usage_error(workflow_usage, "the file name is empty");
    *file = f;
    return CLI_CONTINUE;
}

/* `workflow submit` and `workflow wait`: the workflow submitted or read, then waited for. */
static int workflow_submit_wait(int argc, char **argv, bool submit)
{
    struct cli_args a;
    cli_args_init(&a, argc, argv, workflow_usage);
    const char *file = NULL, *id = NULL, *key = NULL;
    bool wait = !submit;
    double timeout = -1;
    int rc = parse_submit_wait(&a, submit ? &file : NULL, &id, &wait, &timeout, &key);
    if (rc != CLI_CONTINUE) return rc;
    struct cli cli;
    json_t *answer = NULL, *body = NULL;
    struct err e = ERR_INIT;
    if (submit && !(body = cli_load_json(file, WORKFLOW_FILE_MAX, &e))) {
        cli_error_e(&e);
        return 1;
    }
    if (key && json_is_object(body)) json_object_set_new(body, "key", json_string(key));
    rc = cli_connect(&cli, &a.conn);
    if (!rc && submit) {
        rc = cli_call(&cli, "POST", "/v1/workflows", body, &answer, "cannot submit workflow '%s'",
                      file);
        const char *used = json_string_value(json_object_get(answer, "key"));
        if (!rc && cli.status == 200 && used) /* 200, not 201: the key's workflow, as it was */
            cli_notice("note",
                       "key '%s' was used before: %s is that workflow, '%s' was not submitted "
                       "(a key names one submission)",
                       used, json_string_value(json_object_get(answer, "id")) ?: "?",
                       strcmp(file, "-") ? file : "standard input");
    } else if (!rc) {
        char *path = cli_path("/v1/workflows/", id, "");
        rc = cli_call(&cli, "GET", path, NULL, &answer, "cannot wait for workflow '%s'", id);
        free(path);
    }
    json_decref(body);
    if (!rc && wait) {
        rc = wait_workflow(&cli, answer, timeout, a.json); /* takes the answer */
        answer = NULL;
    } else if (!rc && a.json) {
        cli_print_json(answer);
    } else if (!rc && submit) { /* the id, as drover submit prints a job's: W=$(...) */
        puts(json_string_value(json_object_get(answer, "id")) ?: "?");
        print_graph_to(stderr, answer);
    } else if (!rc) {
        print_graph(answer);
    }
    json_decref(answer);
    cli_release(&cli);
    return rc;
}

int cmd_workflow(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (sub && (!strcmp(sub, "-h") || !strcmp(sub, "--help"))) {
        fputs(workflow_usage, stdout);
        return 0;
    }
    bool status = sub && !strcmp(sub, "status");
    bool cancel = sub && !strcmp(sub, "cancel"), retry = sub && !strcmp(sub, "retry");
    if (sub && (!strcmp(sub, "list") || !strcmp(sub, "ls")))
        return cli_list_command(argc - 1, argv + 1, workflow_usage, "/v1/workflows",
                                "workflows", print_list);
    if (sub && (!strcmp(sub, "submit") || !strcmp(sub, "wait")))
        return workflow_submit_wait(argc - 1, argv + 1, !strcmp(sub, "submit"));
    if (!status && !cancel && !retry) {
        cli_json_prescan(argc, argv);
        return sub ? cli_usage_error(workflow_usage, "unknown workflow command '%s' (submit, "
                                                     "list, status, wait, cancel or retry)", sub)
                   : cli_usage_error(workflow_usage, "which workflow command? submit, list, "
                                                     "status, wait, cancel or retry");
    }
    struct cli_args a;
    cli_args_init(&a, argc - 1, argv + 1, workflow_usage);
    const char *arg;
    int rc = cli_parse_json_only(&a, "which workflow? give its ID", "the workflow ID is empty",
                                 &arg);
    if (rc != CLI_CONTINUE) return rc;
    json_t *answer = NULL;
    char *path = cli_path("/v1/workflows/", arg, status ? "" : cancel ? "/cancel" : "/retry");
    rc = cli_request(&a.conn, status ? "GET" : "POST", path, NULL, &answer,
                     "cannot %s workflow '%s'", sub, arg);
    free(path);
    if (rc == 0 && a.json)
        cli_print_json(answer);
    else if (rc == 0)
        print_graph(answer);
    json_decref(answer);
    return rc;
}
