/*
 * cli_services.c - `drover service put|ls|show|rm`: the service hub
 * (docs/api.md "Services"). Jobs of a service: `drover submit --service`.
 */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "commands.h"
#include "common/buf.h"
#include "common/xalloc.h"

#define DEFINITION_FILE_MAX (1 << 20) /* the server's body limit for a definition */

static const char service_usage[] =
    "usage: drover service put NAME FILE.json|- [--version V] [--json]\n"
    "       drover service ls [--json]\n"
    "       drover service show NAME [--version V] [--json]\n"
    "       drover service rm NAME [--json]\n"
    "\n"
    "The service hub: definitions of what jobs run (a program or an image, a\n"
    "template of typed arguments with named params and ports, requires,\n"
    "defaults). Jobs name a service and give only its params:\n"
    "drover submit --service NAME --param K=V ...\n"
    "\n"
    "  put    define NAME from FILE ('-': standard input); a definition that\n"
    "         differs from the latest makes a new version (prints NAME and it).\n"
    "         Needs the admin role.\n"
    "  ls     the services, each at its latest version (list is the same)\n"
    "  show   a service: its latest version, or --version V\n"
    "  rm     retire NAME: new jobs of it are refused, jobs it has go on. A later\n"
    "         put makes it current again. Needs the admin role.\n"
    "\n"
    "  -v, --version V    put: the version this definition is to become (refused\n"
    "                     if another admin made it first); show: the version\n"
    "      --json         print the server's JSON answer\n"
    "\n"
    "examples:\n"
    "  drover service put nhmmer nhmmer.json\n"
    "  drover service show nhmmer --version 1 --json | jq .definition\n"
    "  drover submit --service nhmmer --param query=@./q.fa --param "
    "hits=s3://out/h.tbl\n" CLI_COMMON_USAGE;

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static int service_put(struct cli *cli, const char *name, const char *file, long version, bool json)
{
    struct err e = ERR_INIT;
    json_t *answer = NULL;
    int rc = 1;
    json_t *def = cli_load_json(file, DEFINITION_FILE_MAX, &e);
    if (!def) {
        cli_error_e(&e);
        goto out;
    }
    if (version && json_is_object(def)) json_object_set_new(def, "version", json_integer(version));
    char *path = cli_path("/v1/services/", name, "");
    rc = cli_call(cli, "PUT", path, def, &answer, "cannot define service '%s'", name);
    free(path);
    if (rc) goto out;
    if (json)
        cli_print_json(answer);
    else
        printf("%s version %lld\n", name,
               (long long)json_integer_value(json_object_get(answer, "version")));
out:
    json_decref(def);
    json_decref(answer);
    return rc;
}

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

static int service_ls(struct cli *cli, bool json)
{
    json_t *answer = NULL;
    if (cli_call(cli, "GET", "/v1/services", NULL, &answer, "cannot list services")) return 1;
    if (json) {
        cli_print_json(answer);
        json_decref(answer);
        return 0;
    }
    struct table *t = table_new(5, "name", "version", "created", "retired", "description");
    table_align_right(t, 1);
    table_max_width(t, 4, 60);
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(answer, "services"), i, s)
    {
        table_add(t, jstr(s, "name"));
        table_addf(t, "%lld", (long long)json_integer_value(json_object_get(s, "version")));
        char created[CLI_TIME_MAX], retired[CLI_TIME_MAX];
        table_add(t, cli_local_time(jstr(s, "created_at"), created));
        table_add(t, or_dash(cli_local_time(jstr(s, "retired_at"), retired)));
        table_add(t, or_dash(jstr(json_object_get(s, "definition"), "description")));
    }
    table_print(t, stdout);
    table_free(t);
    json_decref(answer);
    return 0;
}

static void line(const char *label, const char *value)
{
    if (!value || !*value) return;
    printf("%-12s ", label);
    cli_put_clean(stdout, value, strlen(value));
    putchar('\n');
}

/* One declaration's summary: "int, default 2, 1..64", "input, required". */
static void decl_text(const char *kind, json_t *d, struct buf *b)
{
    const char *type = jstr(d, "type");
    buf_adds(b, type ? type : kind);
    json_t *dflt = json_object_get(d, "default");
    if (dflt && !json_is_null(dflt)) {
        char *text = json_dumps(dflt, JSON_ENCODE_ANY | JSON_COMPACT);
        buf_addf(b, ", default %s", text);
        free(text);
    } else if (json_is_true(json_object_get(d, "required"))) {
        buf_adds(b, ", required");
    } else {
        buf_adds(b, ", optional");
    }
    json_t *min = json_object_get(d, "min"), *max = json_object_get(d, "max");
    if (json_is_number(min) || json_is_number(max)) {
        buf_adds(b, ", ");
        if (json_is_number(min)) buf_addf(b, "%.15g", json_number_value(min));
        buf_adds(b, "..");
        if (json_is_number(max)) buf_addf(b, "%.15g", json_number_value(max));
    }
    json_t *values = json_object_get(d, "values"), *v;
    size_t i;
    json_array_foreach(values, i, v) buf_addf(b, "%s%s", i ? "|" : ", ", json_string_value(v));
    if (jstr(d, "description")) buf_addf(b, " - %s", jstr(d, "description"));
}

static void show_human(json_t *s)
{
    json_t *def = json_object_get(s, "definition"), *cmd = json_object_get(def, "command");
    char version[32];
    snprintf(version, sizeof(version), "%lld",
             (long long)json_integer_value(json_object_get(s, "version")));
    line("name:", jstr(s, "name"));
    line("version:", version);
    char created[CLI_TIME_MAX], retired[CLI_TIME_MAX];
    line("created:", cli_local_time(jstr(s, "created_at"), created));
    line("created by:", jstr(s, "created_by"));
    line("retired:", cli_local_time(jstr(s, "retired_at"), retired));
    line("description:", jstr(def, "description"));
    line("program:", jstr(cmd, "program"));
    line("image:", jstr(cmd, "image"));
    static const char *const sections[] = {"params", "inputs", "outputs"};
    static const char *const kinds[] = {"param", "input", "output"};
    for (size_t k = 0; k < 3; k++) {
        const char *name;
        json_t *d;
        json_object_foreach(json_object_get(def, sections[k]), name, d)
        {
            struct buf b = BUF_INIT;
            char label[80];
            snprintf(label, sizeof(label), "  %s", name);
            decl_text(kinds[k], d, &b);
            line(label, b.data);
            buf_release(&b);
        }
    }
    json_t *dflt = json_object_get(def, "defaults"), *req = json_object_get(def, "requires");
    if (json_object_size(dflt)) {
        char *text = json_dumps(dflt, JSON_COMPACT);
        line("defaults:", text);
        free(text);
    }
    if (json_object_size(req)) {
        char *text = json_dumps(req, JSON_COMPACT);
        line("requires:", text);
        free(text);
    }
}

static int service_show(struct cli *cli, const char *name, long version, bool json)
{
    json_t *answer = NULL;
    char suffix[40] = "";
    if (version) snprintf(suffix, sizeof(suffix), "/versions/%ld", version);
    char *path = cli_path("/v1/services/", name, suffix);
    int rc = cli_call(cli, "GET", path, NULL, &answer, "cannot show service '%s'", name);
    free(path);
    if (rc) return rc;
    if (json)
        cli_print_json(answer);
    else
        show_human(answer);
    json_decref(answer);
    return 0;
}

static int service_rm(struct cli *cli, const char *name, bool json)
{
    json_t *answer = NULL;
    char *path = cli_path("/v1/services/", name, "");
    int rc = cli_call(cli, "DELETE", path, NULL, &answer, "cannot retire service '%s'", name);
    free(path);
    if (rc) return rc;
    if (json)
        cli_print_json(answer);
    else
        printf("retired %s\n", name);
    json_decref(answer);
    return 0;
}

int cmd_service(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"version", required_argument, NULL, 'v'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    cli_json_prescan(argc, argv);
    if (argc < 2)
        return cli_usage_error(service_usage, "service what? 'put', 'ls', 'show' or 'rm'");
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(service_usage, stdout);
        return 0;
    }
    static const char *const subs[] = {"put", "ls", "show", "rm"};
    size_t which = 0;
    while (which < 4 && strcmp(sub, subs[which]))
        which++;
    if (which == 4 && !strcmp(sub, "list")) which = 1; /* ls's other spelling */
    if (which == 4)
        return cli_usage_error(service_usage,
                               "'%s' is not a service command: 'put', 'ls', 'show' or 'rm'", sub);
    struct cli_args a;
    cli_args_init(&a, argc - 1, argv + 1, service_usage);
    long version = 0;
    int opt;
    while ((opt = cli_getopt(&a, ":v:h", longopts)) != -1) {
        if (opt == 'v' && !cli_parse_long(optarg, 1, INT32_MAX, &version))
            return cli_usage_error(service_usage,
                                   "--version must be a whole number from 1 to %d, not '%s'",
                                   INT32_MAX, optarg);
    }
    if (a.exit_code != CLI_CONTINUE) return a.exit_code;
    size_t want = which == 0 ? 2 : which == 1 ? 0 : 1;
    const char *args[2] = {NULL, NULL};
    for (size_t i = 0; i < want; i++) {
        if (optind >= a.argc)
            return cli_usage_error(service_usage, "service %s needs %s", sub,
                                   i == 0 ? "the service's NAME" : "a definition FILE.json (or -)");
        args[i] = a.argv[optind++];
        if (!*args[i])
            return cli_usage_error(service_usage, "service %s: %s is empty", sub,
                                   i == 0 ? "the NAME" : "the FILE");
    }
    if (optind < a.argc)
        return cli_usage_error(service_usage, "service %s: unexpected argument '%s'", sub,
                               a.argv[optind]);
    if (version && (which == 1 || which == 3))
        return cli_usage_error(service_usage, "service %s takes no --version", sub);

    struct cli cli;
    int rc = 1;
    if (cli_connect(&cli, &a.conn) == 0) {
        switch (which) {
        case 0:
            rc = service_put(&cli, args[0], args[1], version, a.json);
            break;
        case 1:
            rc = service_ls(&cli, a.json);
            break;
        case 2:
            rc = service_show(&cli, args[0], version, a.json);
            break;
        default:
            rc = service_rm(&cli, args[0], a.json);
            break;
        }
    }
    cli_release(&cli);
    return rc;
}
