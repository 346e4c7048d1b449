/*
 * cli_triggers.c - `drover trigger create|update|ls|show|fire|pause|resume|rm`: upload triggers
 * (docs/api.md "Triggers"), a job or workflow submitted once for each object version uploaded
 * under a prefix, and schedules ("Schedules"), one submitted at each time of a cron expression.
 */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "commands.h"
#include "common/buf.h"
#include "common/xalloc.h"

#define TEMPLATE_FILE_MAX (4 * 1024 * 1024) /* the server's body limit */

static const char trigger_usage[] =
    "usage: drover trigger create --prefix s3://BUCKET/PREFIX (--job FILE | --workflow FILE)\n"
    "                             [--input NAME] [--json]\n"
    "       drover trigger create --schedule CRON [--timezone ZONE]\n"
    "                             [--overlap allow|skip] (--job FILE | --workflow FILE)\n"
    "                             [--json]\n"
    "       drover trigger update ID [--prefix URI | --schedule CRON] [--timezone ZONE]\n"
    "                             [--overlap allow|skip] [--job FILE | --workflow FILE]\n"
    "                             [--input NAME] [--json]\n"
    "       drover trigger ls [--json]\n"
    "       drover trigger show ID [--json]\n"
    "       drover trigger fire ID [--json]\n"
    "       drover trigger pause ID [--json]\n"
    "       drover trigger resume ID [--json]\n"
    "       drover trigger rm ID [--json]\n"
    "\n"
    "Upload triggers: every object created under the prefix (a PUT, a presigned URL,\n"
    "with an S3 object store also an upload straight to S3) submits the job or the\n"
    "workflow once for each version of the object (its URI and SHA-256), as the\n"
    "token that made the trigger. The object is the input argument named by --input\n"
    "(ARG for a job, NODE.ARG for a workflow), any \"{{object}}\" string of the file\n"
    "(\"{{sha256}}\": its hash), and the job's DROVER_TRIGGER_OBJECT and\n"
    "DROVER_TRIGGER_SHA256.\n"
    "\n"
    "Schedules: the job or the workflow is submitted at each time of the cron\n"
    "expression (5 fields, or 6 with seconds first; @hourly, @daily...), in UTC or\n"
    "the --timezone given (a wall time a DST change skips fires right after it, one\n"
    "it repeats fires once). Any\n"
    "\"{{time}}\" string of the file is the time, as is the job's DROVER_SCHEDULE_TIME.\n"
    "Times missed while no server ran fire once, late.\n"
    "\n"
    "  create   make a trigger or a schedule; prints its ID\n"
    "  update   change what the options give of a trigger or a schedule, as create\n"
    "           takes them; what they leave out stays as it is (read first: a schedule's\n"
    "           --timezone and --overlap, a trigger's --input, the job or workflow;\n"
    "           --timezone UTC, --overlap allow go back to the defaults). Its ID, owner,\n"
    "           pause and fires stay; a schedule's new times count from the change; a\n"
    "           schedule stays one, as a job's stays a job's\n"
    "  ls       the triggers and schedules (a client token's own; an admin's: all);\n"
    "           list is the same\n"
    "  show     a trigger or a schedule with its 50 most recent fires\n"
    "  fire     a schedule's job or workflow submitted now, out of its times\n"
    "  pause    hold a trigger: its fires wait, a schedule's times pass unfired\n"
    "  resume   go on: an upload trigger's waiting fires submit, a schedule fires from now\n"
    "  rm       delete a trigger or a schedule: it fires no more\n"
    "\n"
    "  -p, --prefix URI   s3://BUCKET/ or s3://BUCKET/KEY-PREFIX\n"
    "  -s, --schedule CRON  when to fire, e.g. '*/5 * * * *' (every five minutes)\n"
    "  -z, --timezone ZONE  the time zone the schedule is read in, e.g. Europe/Paris\n"
    "                       (default UTC)\n"
    "      --overlap skip   skip a time while the run before it has not finished\n"
    "                       (default allow: every time submits)\n"
    "  -f, --job FILE     a job spec (JSON; - for stdin), as drover submit -f takes it\n"
    "  -w, --workflow FILE  a workflow (JSON; - for stdin), as drover workflow submit takes it\n"
    "  -i, --input NAME   the input argument the object becomes\n"
    "      --json         print the server's JSON answer\n"
    "\n"
    "examples:\n"
    "  drover trigger create --prefix s3://uploads/fasta/ --job search.json --input --query\n"
    "  drover trigger create --prefix s3://uploads/ --workflow wf.json --input split.--in\n"
    "  drover trigger create --schedule '0 3 * * *' --job nightly.json --overlap skip\n"
    "  drover trigger create -s '0 9 * * MON-FRI' -z America/New_York -f report.json\n"
    "  drover trigger update 0193a1b2-... --schedule '0 4 * * *'   # zone, job... kept\n"
    "  drover trigger ls\n"
    "  drover trigger show 0193a1b2-...\n"
    "  drover trigger rm 0193a1b2-...\n" CLI_COMMON_USAGE;

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

struct create_args {
    const char *prefix, *schedule, *timezone, *overlap, *file, *input;
    bool workflow, json;
};

/* Sets body[key] to have[key] when body has no such key and have a value that is not null. */
static void carry(json_t *body, json_t *have, const char *key)
{
    json_t *v = json_object_get(have, key);
    if (!json_object_get(body, key) && v && !json_is_null(v)) json_object_set(body, key, v);
}

/*
 * A PUT replaces the whole trigger (what its body leaves out takes its default): `body` gets
 * what the options did not give from the trigger as it is, `have`. 0, or 1 after saying why
 * an option does not fit it.
 */
static int update_merge(json_t *body, json_t *have, const char *id)
{
    bool sched = json_object_get(body, "schedule") ||
                 (!json_object_get(body, "prefix") && jstr(have, "schedule"));
    if (!sched && (json_object_get(body, "timezone") || json_object_get(body, "overlap"))) {
        cli_error(CLI_ERR_INVALID, json_object_get(body, "timezone") ? "timezone" : "overlap",
                  "cannot update trigger '%s': --%s is a schedule's, and it is an upload "
                  "trigger (on %s)",
                  id, json_object_get(body, "timezone") ? "timezone" : "overlap",
                  jstr(have, "prefix") ? jstr(have, "prefix") : "?");
        return 1;
    }
    if (sched && json_object_get(body, "input")) {
        cli_error(CLI_ERR_INVALID, "input",
                  "cannot update trigger '%s': --input is an upload trigger's, and it is a "
                  "schedule (%s): it has no object to pass",
                  id, jstr(have, "schedule") ? jstr(have, "schedule") : "?");
        return 1;
    }
    if (!json_object_get(body, "prefix") && !json_object_get(body, "schedule")) {
        carry(body, have, "prefix");
        carry(body, have, "schedule");
    }
    if (sched) {
        carry(body, have, "timezone");
        carry(body, have, "overlap");
    } else {
        carry(body, have, "input");
    }
    if (!json_object_get(body, "job") && !json_object_get(body, "workflow")) {
        carry(body, have, "job");
        carry(body, have, "workflow");
    }
    return 0;
}

/*
 * POST /v1/triggers, or with `id` PUT /v1/triggers/ID: the trigger the options give (an
 * update: read first, what they leave out as it is).
 */
static int trigger_create(struct cli *cli, const struct create_args *c, const char *id)
{
    const char *file = c->file;
    struct err e = ERR_INIT;
    json_t *body = json_object(), *answer = NULL, *have = NULL, *tmpl = NULL;
    int rc = 1;
    if (file && !(tmpl = cli_load_json(file, TEMPLATE_FILE_MAX, &e))) {
        cli_error_e(&e);
        goto out;
    }
    if (tmpl) json_object_set(body, c->workflow ? "workflow" : "job", tmpl);
    if (c->prefix) json_object_set_new(body, "prefix", json_string(c->prefix));
    if (c->schedule) json_object_set_new(body, "schedule", json_string(c->schedule));
    if (c->overlap) json_object_set_new(body, "overlap", json_string(c->overlap));
    if (c->timezone) json_object_set_new(body, "timezone", json_string(c->timezone));
    if (c->input) json_object_set_new(body, "input", json_string(c->input));
    if (id) {
        char *path = cli_path("/v1/triggers/", id, "");
        rc = cli_call(cli, "GET", path, NULL, &have, "cannot update trigger '%s'", id);
        if (!rc) rc = update_merge(body, have, id);
        if (!rc)
            rc = cli_call(cli, "PUT", path, body, &answer, "cannot update trigger '%s'", id);
        free(path);
    } else {
        rc = cli_call(cli, "POST", "/v1/triggers", body, &answer, "cannot create the %s '%s'",
                      c->prefix ? "trigger on" : "schedule", c->prefix ? c->prefix : c->schedule);
    }
    if (rc) goto out;
    if (c->json)
        cli_print_json(answer);
    else if (id)
        printf("updated trigger %s\n", jstr(answer, "id") ? jstr(answer, "id") : id);
    else
        printf("%s\n", jstr(answer, "id"));
out:
    json_decref(tmpl);
    json_decref(body);
    json_decref(have);
    json_decref(answer);
    return rc;
}

/* What sets it off, as ls says it: the prefix, or "schedule CRON [ZONE] [(overlap skip)]". */
static char *trigger_on(json_t *tr)
{
    if (!jstr(tr, "schedule")) return xstrdup(jstr(tr, "prefix") ? jstr(tr, "prefix") : "-");
    const char *zone = jstr(tr, "timezone");
    bool utc = !zone || !strcmp(zone, "UTC");
    const char *overlap = jstr(tr, "overlap");
    return xasprintf("schedule %s%s%s%s", jstr(tr, "schedule"), utc ? "" : " ", utc ? "" : zone,
                     overlap && !strcmp(overlap, "skip") ? " (overlap skip)" : "");
}

static int trigger_ls(struct cli *cli, bool json)
{
    json_t *list; /* every page, as one answer */
    if (cli_get_pages(cli, "/v1/triggers", "triggers", 0, true, &list)) return 1;
    json_t *answer = json_pack("{s:o}", "triggers", list);
    if (json) {
        cli_print_json(answer);
        json_decref(answer);
        return 0;
    }
    struct table *t = table_new(7, "id", "on", "submits", "input", "owner", "created", "next");
    table_max_width(t, 1, 60);
    size_t i;
    json_t *tr;
    json_array_foreach(json_object_get(answer, "triggers"), i, tr)
    {
        char *on = trigger_on(tr);
        table_add(t, jstr(tr, "id"));
        table_add(t, on);
        free(on);
        table_add(t, json_object_get(tr, "workflow") ? "workflow" : "job");
        table_add(t, jstr(tr, "input") ? jstr(tr, "input") : "-");
        table_add(t, jstr(tr, "owner") ? jstr(tr, "owner") : "-");
        char created[CLI_TIME_MAX], next_at[CLI_TIME_MAX];
        table_add(t, cli_local_time(jstr(tr, "created_at"), created));
        const char *at = cli_local_time(jstr(tr, "next_at"), next_at);
        table_add(t, jstr(tr, "paused_at") ? "paused" : at ? at : "-");
    }
    table_print(t, stdout);
    table_free(t);
    json_decref(answer);
    return 0;
}

/*
 * METHOD /v1/triggers/ID[SUFFIX] ("cannot VERB trigger 'ID'" when it fails, *rc its exit code):
 * with --json the answer is printed and NULL returned; else the answer, for the caller to say
 * in words and free.
 */
static json_t *trigger_call(struct cli *cli, const char *method, const char *id, const char *suffix,
                            const char *verb, bool json, int *rc)
{
    json_t *answer = NULL;
    char *path = cli_path("/v1/triggers/", id, suffix);
    *rc = cli_call(cli, method, path, NULL, &answer, "cannot %s trigger '%s'", verb, id);
    free(path);
    if (!*rc && json) cli_print_json(answer);
    if (!*rc && !json) return answer;
    json_decref(answer);
    return NULL;
}

static int trigger_show(struct cli *cli, const char *id, bool json)
{
    int rc;
    json_t *tr = trigger_call(cli, "GET", id, "", "read", json, &rc);
    if (!tr) return rc;
    bool sched = jstr(tr, "schedule") != NULL, wf = json_object_get(tr, "workflow") != NULL;
    char *on = trigger_on(tr);
    printf("id:       %s\non:       %s\nsubmits:  %s\n", jstr(tr, "id"), on,
           wf ? "workflow" : "job");
    free(on);
    if (jstr(tr, "input")) printf("input:    %s\n", jstr(tr, "input"));
    char at[CLI_TIME_MAX];
    if (jstr(tr, "paused_at"))
        printf("paused:   since %s\n", cli_local_time(jstr(tr, "paused_at"), at));
    if (sched)
        printf("next:     %s\n", jstr(tr, "next_at") ? cli_local_time(jstr(tr, "next_at"), at)
                                                    : "-");
    printf("owner:    %s\ncreated:  %s\n", jstr(tr, "owner") ? jstr(tr, "owner") : "-",
           cli_local_time(jstr(tr, "created_at"), at));
    json_t *fires = json_object_get(tr, "fires");
    if (!json_array_size(fires)) {
        printf("fires:    none yet\n");
        json_decref(tr);
        return 0;
    }
    putchar('\n');
    const char *target = wf ? "workflow" : "job";
    struct table *t = table_new(4, sched ? "time" : "object", "state", target, "error");
    table_max_width(t, 0, 60);
    size_t i;
    json_t *f;
    json_array_foreach(fires, i, f)
    {
        char fired_at[CLI_TIME_MAX];
        table_add(t, sched ? cli_local_time(jstr(f, "time"), fired_at) : jstr(f, "uri"));
        table_add(t, jstr(f, "state"));
        table_add(t, jstr(f, target) ? jstr(f, target) : "-");
        table_add(t, jstr(f, "error") ? jstr(f, "error") : "-");
    }
    table_print(t, stdout);
    table_free(t);
    json_decref(tr);
    return 0;
}

static int trigger_fire(struct cli *cli, const char *id, bool json)
{
    int rc;
    json_t *answer = trigger_call(cli, "POST", id, "/fire", "fire", json, &rc);
    if (!answer) return rc;
    const char *what = jstr(answer, "workflow") ? "workflow" : "job";
    char at[CLI_TIME_MAX];
    printf("fired %s %s for %s\n", what, jstr(answer, what),
           cli_local_time(jstr(answer, "time"), at));
    json_decref(answer);
    return 0;
}

static int trigger_pause(struct cli *cli, const char *id, bool pause, bool json)
{
    int rc;
    json_t *answer = trigger_call(cli, "POST", id, pause ? "/pause" : "/resume",
                                  pause ? "pause" : "resume", json, &rc);
    if (!answer) return rc;
    const char *whole = jstr(answer, "id") ? jstr(answer, "id") : id; /* not the prefix given */
    char at[CLI_TIME_MAX], since[CLI_TIME_MAX];
    const char *next = cli_local_time(jstr(answer, "next_at"), at);
    if (pause)
        printf("trigger %s paused since %s\n", whole,
               jstr(answer, "paused_at") ? cli_local_time(jstr(answer, "paused_at"), since)
                                         : "now");
    else
        printf("trigger %s resumed%s%s\n", whole, next ? ": next at " : "", next ? next : "");
    json_decref(answer);
    return 0;
}

static int trigger_rm(struct cli *cli, const char *id, bool json)
{
    int rc;
    json_t *answer = trigger_call(cli, "DELETE", id, "", "delete", json, &rc);
    if (!answer) return rc;
    printf("deleted trigger %s\n", jstr(answer, "id") ? jstr(answer, "id") : id);
    json_decref(answer);
    return 0;
}

int cmd_trigger(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"prefix", required_argument, NULL, 'p'},
        {"job", required_argument, NULL, 'f'},
        {"workflow", required_argument, NULL, 'w'},
        {"input", required_argument, NULL, 'i'},
        {"schedule", required_argument, NULL, 's'},
        {"overlap", required_argument, NULL, 'o'},
        {"timezone", required_argument, NULL, 'z'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    cli_json_prescan(argc, argv);
    if (argc < 2)
        return cli_usage_error(trigger_usage, "trigger what? 'create', 'update', 'ls', 'show', "
                                              "'fire', 'pause', 'resume' or 'rm'");
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(trigger_usage, stdout);
        return 0;
    }
    static const char *const subs[] = {"create", "ls",    "show", "fire",
                                       "pause",  "resume", "rm",  "update"};
    enum { UPDATE = 7 };
    size_t which = 0;
    while (which < ARRAY_SIZE(subs) && strcmp(sub, subs[which]))
        which++;
    if (which == ARRAY_SIZE(subs) && !strcmp(sub, "list")) which = 1; /* ls's other spelling */
    if (which == ARRAY_SIZE(subs))
        return cli_usage_error(trigger_usage,
                               "'%s' is not a trigger command: 'create', 'update', 'ls', 'show', "
                               "'fire', 'pause', 'resume' or 'rm'",
                               sub);
    struct cli_args a;
    cli_args_init(&a, argc - 1, argv + 1, trigger_usage);
    const char *prefix = NULL, *job = NULL, *workflow = NULL, *input = NULL, *schedule = NULL,
               *overlap = NULL, *timezone = NULL;
    int opt;
    while ((opt = cli_getopt(&a, ":p:f:w:i:s:o:z:h", longopts)) != -1) {
        if (opt == 'p') prefix = optarg;
        if (opt == 'f') job = optarg;
        if (opt == 'w') workflow = optarg;
        if (opt == 'i') input = optarg;
        if (opt == 's') schedule = optarg;
        if (opt == 'o') overlap = optarg;
        if (opt == 'z') timezone = optarg;
    }
    if (a.exit_code != CLI_CONTINUE) return a.exit_code;
    const char *id = NULL;
    if (which == 0 || which == UPDATE) {
        if (which == UPDATE) {
            if (optind >= a.argc)
                return cli_usage_error(trigger_usage, "trigger update needs an ID");
            id = a.argv[optind++];
            if (!*id) return cli_usage_error(trigger_usage, "trigger update: the ID is empty");
        }
        bool update = which == UPDATE; /* what it leaves out stays as the trigger has it */
        if (prefix && schedule)
            return cli_usage_error(trigger_usage, "trigger %s takes --prefix or --schedule, "
                                                  "not both",
                                   sub);
        if (!update && !prefix && !schedule)
            return cli_usage_error(trigger_usage, "trigger %s needs --prefix s3://BUCKET/... "
                                                  "or --schedule CRON (one of them)",
                                   sub);
        if (schedule && input)
            return cli_usage_error(trigger_usage, "--input is an upload trigger's (--prefix): a "
                                                  "schedule has no object to pass");
        if ((overlap || timezone) && prefix)
            return cli_usage_error(trigger_usage, "--%s is a schedule's, not an upload "
                                                  "trigger's (--prefix)",
                                   overlap ? "overlap" : "timezone");
        if ((overlap || timezone) && !schedule && !update)
            return cli_usage_error(trigger_usage, "--%s is a schedule's: give --schedule",
                                   overlap ? "overlap" : "timezone");
        if (job && workflow)
            return cli_usage_error(trigger_usage, "trigger %s takes --job FILE or "
                                                  "--workflow FILE, not both",
                                   sub);
        if (!update && !job && !workflow)
            return cli_usage_error(trigger_usage, "trigger %s needs --job FILE or "
                                                  "--workflow FILE (one of them)",
                                   sub);
        if (update && !prefix && !schedule && !job && !workflow && !input && !overlap &&
            !timezone)
            return cli_usage_error(trigger_usage, "trigger update: nothing to change: give "
                                                  "--schedule, --timezone, --overlap, --prefix, "
                                                  "--input, --job or --workflow");
        if (optind < a.argc)
            return cli_usage_error(trigger_usage, "trigger %s: unexpected argument '%s'", sub,
                                   a.argv[optind]);
    } else {
        if (prefix || job || workflow || input || schedule || overlap || timezone)
            return cli_usage_error(trigger_usage,
                                   "trigger %s takes no --prefix, --schedule, --timezone, "
                                   "--overlap, --job, --workflow or --input",
                                   sub);
        if (which >= 2) {
            if (optind >= a.argc)
                return cli_usage_error(trigger_usage, "trigger %s needs an ID", sub);
            id = a.argv[optind++];
            if (!*id) return cli_usage_error(trigger_usage, "trigger %s: the ID is empty", sub);
        }
        if (optind < a.argc)
            return cli_usage_error(trigger_usage, "trigger %s: unexpected argument '%s'", sub,
                                   a.argv[optind]);
    }
    struct cli cli;
    int rc = 1;
    if (cli_connect(&cli, &a.conn) == 0) {
        if (which == 0 || which == UPDATE) {
            struct create_args c = {
                prefix, schedule,         timezone, overlap, job ? job : workflow,
                input,  workflow != NULL, a.json};
            rc = trigger_create(&cli, &c, id);
        } else if (which == 1)
            rc = trigger_ls(&cli, a.json);
        else if (which == 2)
            rc = trigger_show(&cli, id, a.json);
        else if (which == 3)
            rc = trigger_fire(&cli, id, a.json);
        else if (which == 4 || which == 5)
            rc = trigger_pause(&cli, id, which == 4, a.json);
        else
            rc = trigger_rm(&cli, id, a.json);
    }
    cli_release(&cli);
    return rc;
}
