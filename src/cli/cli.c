/*
 * cli.c - see cli.h. The plumbing under every client command: where the
 * server and the token come from, one call with its error message, options,
 * files, and the formatting of times and durations.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/fsutil.h"
#include "common/timeutil.h"
#include "common/uuid.h"
#include "common/xalloc.h"

#define TOKEN_FILE_MAX 4096

/* Records `opt` in `o` when it is one of the connection options; false for any other. */
static bool common_opt(struct cli_opts *o, int opt, const char *arg)
{
    switch (opt) {
    case CLI_OPT_SERVER:
        o->server = arg;
        return true;
    case CLI_OPT_TOKEN: {
        /* a copy, and argv's overwritten: what ps shows is that memory (as MySQL's client) */
        static char *copy; /* lives until exit */
        free(copy);
        copy = xstrdup(arg);
        memset((char *)arg, 'x', strlen(arg));
        o->token = copy;
        cli_notice("warning", "--token puts the token on the command line, where every user of "
                              "this machine can read it (ps); give it with --token-file FILE or "
                              "DROVER_TOKEN");
        return true;
    }
    case CLI_OPT_TOKEN_FILE:
        o->token_file = arg;
        return true;
    case CLI_OPT_DATA:
        o->data = arg;
        return true;
    case CLI_OPT_CA_FILE:
        o->ca_file = arg;
        return true;
    default:
        return false;
    }
}

/* --json was given: messages are JSON lines (cli_error). */
static bool json_messages;
/* While a refusal of the server is printed: its {"error": {...}} object, whose members beside
   the message (a quota's "limit", "tenant", "max"...) the JSON line keeps (borrowed). */
static json_t *server_error;

void cli_json_prescan(int argc, char **argv)
{
    json_messages = false;
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--json")) json_messages = true;
}

/* msg as a JSON string (bytes that are not UTF-8 text become '?'). */
static json_t *message_json(char *msg)
{
    json_t *text = json_string(msg);
    if (!text) { /* a name that is not UTF-8 text */
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p >= 0x80) *p = '?';
        text = json_string(msg);
    }
    return text;
}

/* One JSON line on stderr (taken). */
static void json_line(json_t *j)
{
    json_dumpf(j, stderr, JSON_COMPACT);
    fputc('\n', stderr);
    json_decref(j);
}

/* cli_error with its arguments in a va_list. */
static void error_v(const char *code, const char *field, const char *fmt, va_list ap)
    PRINTF_LIKE(3, 0);
static void error_v(const char *code, const char *field, const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (!json_messages) {
        fprintf(stderr, "drover: %s\n", msg);
        return;
    }
    json_t *f = field && *field ? json_string(field) : json_null();
    json_t *inner = json_pack("{s:s, s:o, s:o}", "code", code, "message", message_json(msg),
                              "field", f ? f : json_null());
    const char *k;
    json_t *v;
    json_object_foreach(json_is_object(server_error) ? server_error : NULL, k, v)
        if (strcmp(k, "message") && !(json_is_null(v) && json_object_get(inner, k)))
            json_object_set(inner, k, v); /* the API's code and field, and its extra members */
    json_line(json_pack("{s:o}", "error", inner));
}

void cli_notice(const char *kind, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (json_messages) {
        json_line(json_pack("{s:{s:o}}", kind, "message", message_json(msg)));
        return;
    }
    fprintf(stderr, "drover: %s: ", kind);
    cli_put_clean(stderr, msg, strlen(msg)); /* it may quote the server's text */
    fputc('\n', stderr);
}

void cli_error(const char *code, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_v(code, field, fmt, ap);
    va_end(ap);
}

/* The code of cli_error for an error `e` (status: the HTTP status, 0 when none came). */
static const char *error_code(const struct err *e)
{
    return e->code == ERR_IO ? CLI_ERR_IO : err_api_code(e->code);
}

void cli_error_e(const struct err *e)
{
    cli_error(error_code(e), e->field, "%s", e->msg[0] ? e->msg : err_str(e->code));
}

int cli_usage_error(const char *usage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (json_messages) {
        error_v(CLI_ERR_USAGE, NULL, fmt, ap);
        va_end(ap);
        return 2;
    }
    fputs("drover: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    /* The synopsis only (up to the first blank line); --help shows the rest. */
    const char *end = strstr(usage, "\n\n");
    int n = end ? (int)(end - usage) : (int)strlen(usage);
    fprintf(stderr, "\n%.*s\n", n, usage);
    static const char prefix[] = "usage: drover ";
    if (!strncmp(usage, prefix, strlen(prefix))) {
        const char *cmd = usage + strlen(prefix);
        fprintf(stderr, "'drover %.*s --help' tells more.\n", (int)strcspn(cmd, " \n"), cmd);
    }
    return 2;
}

int cli_bad_option(int opt, char **argv, const char *usage)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    if (opt == ':') return cli_usage_error(usage, "option '%s' needs a value", arg);
    if (optopt > 0 && optopt < 128 && optopt != '?')
        return cli_usage_error(usage, "unknown option '-%c'", optopt);
    return cli_usage_error(usage, "unknown option '%s'", arg);
}

void cli_args_init(struct cli_args *a, int argc, char **argv, const char *usage)
{
    *a = (struct cli_args){.argc = argc, .argv = argv, .usage = usage, .exit_code = CLI_CONTINUE};
    cli_json_prescan(argc, argv);
}

/*
 * The item of a --server list whose scheme is not http:// or https:// (NULL when
 * all are; "host:port" has none and is http://), at most n bytes into buf.
 */
static const char *bad_scheme(const char *list, char *buf, size_t n)
{
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        snprintf(buf, n, "%.*s", (int)len, p);
        const char *item = buf + strspn(buf, " \t");
        const char *sep = strstr(item, "://");
        if (sep && strncasecmp(item, "http://", 7) && strncasecmp(item, "https://", 8))
            return item;
        p += len + (p[len] == ',');
    }
    return NULL;
}

int cli_getopt(struct cli_args *a, const char *optstring, const struct option *longopts)
{
    int opt;
    opterr = 0;
    while ((opt = getopt_long(a->argc, a->argv, optstring, longopts, NULL)) != -1) {
        char item[256];
        const char *bad;
        if (opt == CLI_OPT_SERVER && (bad = bad_scheme(optarg, item, sizeof(item)))) {
            /* checked here so that every command calls it a usage error */
            a->exit_code = cli_usage_error(a->usage,
                                           "--server: '%s' must start with http:// or https://",
                                           bad);
            return -1;
        }
        if (common_opt(&a->conn, opt, optarg)) continue;
        switch (opt) {
        case CLI_OPT_JSON:
            a->json = true;
            continue;
        case 'h':
            fputs(a->usage, stdout);
            a->exit_code = 0;
            return -1;
        case '?':
        case ':':
            a->exit_code = cli_bad_option(opt, a->argv, a->usage);
            return -1;
        default:
            return opt;
        }
    }
    json_messages = a->json; /* the options are over: a "--json" after them is an argument */
    return -1;
}

int cli_args_none(struct cli_args *a)
{
    if (a->exit_code != CLI_CONTINUE) return a->exit_code;
    if (optind < a->argc)
        return cli_usage_error(a->usage, "unexpected argument '%s'", a->argv[optind]);
    return CLI_CONTINUE;
}

int cli_args_one(struct cli_args *a, const char *missing, const char *empty, const char **arg)
{
    if (a->exit_code != CLI_CONTINUE) return a->exit_code;
    if (optind >= a->argc) return cli_usage_error(a->usage, "%s", missing);
    if (optind + 1 < a->argc)
        return cli_usage_error(a->usage, "unexpected argument '%s'", a->argv[optind + 1]);
    *arg = a->argv[optind];
    if (!**arg) return cli_usage_error(a->usage, "%s", empty);
    return CLI_CONTINUE;
}

int cli_parse_json_only(struct cli_args *a, const char *missing, const char *empty,
                        const char **arg)
{
    static const struct option longopts[] = {
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    while (cli_getopt(a, ":h", longopts) != -1)
        ; /* there is no option of the command's own */
    return arg ? cli_args_one(a, missing, empty, arg) : cli_args_none(a);
}

/* Reads the admin token the server wrote into `dir`; NULL when there is none. */
static char *read_admin_token(const char *dir, char **path_out)
{
    struct buf b = BUF_INIT;
    char *path = xasprintf("%s/%s", dir, DROVER_ADMIN_TOKEN_FILE);
    *path_out = path;
    if (cli_read_file(path, TOKEN_FILE_MAX, &b, NULL) < 0) {
        buf_release(&b);
        return NULL;
    }
    while (b.len > 0 && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r' ||
                         b.data[b.len - 1] == ' ' || b.data[b.len - 1] == '\t'))
        b.data[--b.len] = '\0';
    if (b.len == 0) {
        buf_release(&b);
        return NULL;
    }
    return buf_detach(&b);
}

int cli_connect(struct cli *cli, const struct cli_opts *o)
{
    struct err e = ERR_INIT;
    memset(cli, 0, sizeof(*cli));

    const char *server = o->server;
    if (!server || !*server) server = getenv("DROVER_SERVER");
    if (!server || !*server) server = DROVER_DEFAULT_SERVER;

    const char *token = o->token;
    char *secret = NULL;
    cli->token_source = "--token";
    if (o->token_file && o->token) {
        cli_error(CLI_ERR_INVALID, "token", "give --token-file or --token, not both");
        return 1;
    }
    if (o->token_file) {
        if (fs_read_secret(o->token_file, &secret, &e)) {
            cli_error(CLI_ERR_IO, "token-file", "--token-file: %s", e.msg);
            return 1;
        }
        token = secret;
        cli->token_source = "--token-file";
    }
    if (!token) {
        token = getenv("DROVER_TOKEN");
        cli->token_source = "DROVER_TOKEN";
    }
    if (token && !*token) token = NULL;

    if (http_set_ca_file(o->ca_file, &e)) {
        if (secret) explicit_bzero(secret, strlen(secret));
        free(secret);
        cli_error_e(&e);
        return 1;
    }
    int init = http_client_init(&cli->http, server, token, &e);
    if (secret) explicit_bzero(secret, strlen(secret));
    free(secret);
    if (init < 0) {
        cli_error_e(&e);
        return 1;
    }
    cli->http.hint = "is `drover server` running? set DROVER_SERVER";

    if (token) {
        /* given explicitly */
    } else if (cli->http.loopback) {
        char *dir = o->data ? xstrdup(o->data) : config_default_data_dir();
        char *file_token = read_admin_token(dir, &cli->token_file);
        free(dir);
        cli->token_source = file_token ? "file" : NULL;
        int rc = http_client_set_token(&cli->http, file_token, &e);
        free(file_token);
        if (rc < 0) {
            cli_error(error_code(&e), NULL, "cannot use the token in '%s': %s", cli->token_file,
                      e.msg);
            return 1;
        }
    } else {
        cli->token_source = NULL;
    }
    return 0;
}

void cli_release(struct cli *cli)
{
    http_client_release(&cli->http);
    free(cli->token_file);
    cli->token_file = NULL;
}

/*
 * Appends "<what>: <msg>" to b, saying the subject once (see cli_print_err):
 * when `what` ends with a quoted subject that msg names too, only what comes
 * before the subject is kept, less the noun msg starts with (or a "to" that
 * led to it); for ERR_NOTFOUND nothing, when that was the only subject. An
 * s3:// URI the server names without its scheme ('bucket/key') is put back
 * in msg as the user gave it.
 */
static void add_what_msg(struct buf *b, const char *what, const char *msg, int code)
{
    size_t n = strlen(what);
    size_t open = n;
    if (n >= 2 && what[n - 1] == '\'') {
        for (open = n - 1; open > 0 && what[open - 1] != '\''; open--)
            ;
        open = open > 0 ? open - 1 : n;
    }
    if (open == n) { /* no subject at the end */
        buf_addf(b, "%s: %s", what, msg);
        return;
    }
    bool others = memchr(what, '\'', open) != NULL; /* "cannot upload 'f' to 's3://b/k'" */
    char *subject = xstrndup(what + open, n - open);
    char *bare = !strncmp(subject, "'s3://", 6) ? xasprintf("'%s", subject + 6) : NULL;
    const char *at = bare ? strstr(msg, bare) : NULL;
    if (!strstr(msg, subject) && !at) {
        buf_addf(b, "%s: %s", what, msg);
    } else {
        if (code != ERR_NOTFOUND || others) {
            size_t keep = open;
            while (keep > 0 && what[keep - 1] == ' ')
                keep--;
            /* less the noun msg starts with ("job"), or a word that led to the subject */
            static const char *const drop[] = {"to", "from", "into", "as", NULL};
            size_t noun = strcspn(msg, " ");
            for (size_t i = 0; noun > 0 && i < ARRAY_SIZE(drop); i++) {
                size_t w = drop[i] ? strlen(drop[i]) : noun;
                const char *word = drop[i] ? drop[i] : msg;
                if (keep > w && what[keep - w - 1] == ' ' && !strncmp(what + keep - w, word, w)) {
                    keep -= w + 1;
                    break;
                }
            }
            buf_addf(b, "%.*s: ", (int)keep, what);
        }
        if (at && !strstr(msg, subject))
            buf_addf(b, "%.*s%s%s", (int)(at - msg), msg, subject, at + strlen(bare));
        else
            buf_adds(b, msg);
    }
    free(bare);
    free(subject);
}

void cli_print_err(const struct cli *cli, const struct err *e, long status, const char *what)
{
    struct buf b = BUF_INIT;
    const char *msg = e->msg[0] ? e->msg : err_str(e->code);

    struct buf m = BUF_INIT;
    if (e->code == ERR_DENIED && !strcasestr(msg, "permission"))
        buf_adds(&m, "permission denied: ");
    buf_adds(&m, msg);
    /* "cannot reach the server" says everything; "cannot list jobs: " would add nothing. */
    if (status != 0 && what && *what)
        add_what_msg(&b, what, buf_str(&m), e->code);
    else
        buf_adds(&b, buf_str(&m));
    buf_release(&m);
    if (e->field[0] && !strstr(msg, e->field) && !json_messages)
        buf_addf(&b, " (field '%s')", e->field);

    if (e->code == ERR_UNAUTH) {
        const char *src = cli ? cli->token_source : NULL;
        if (!src && cli && cli->token_file)
            buf_addf(&b,
                     " (no token: set DROVER_TOKEN, or --data DIR to the server's data dir;"
                     " '%s' was not readable)",
                     cli->token_file);
        else if (!src)
            buf_adds(&b, " (no token: set DROVER_TOKEN)");
        else if (!strcmp(src, "file"))
            buf_addf(&b, " (the admin token in '%s' was refused; set DROVER_TOKEN)",
                     cli->token_file);
        else
            buf_addf(&b, " (check %s)", src);
    }
    cli_error(error_code(e), e->field, "%s", buf_str(&b));
    buf_release(&b);
}

int cli_get_pages(struct cli *cli, const char *path, const char *key, long limit, bool all,
                  json_t **list)
{
    *list = json_array();
    char *after = NULL;
    int rc;
    for (;;) {
        long want = limit ? limit - (long)json_array_size(*list) : all ? 100 : 20;
        struct buf url = BUF_INIT;
        buf_addf(&url, "%s?limit=%ld", path, want > 100 ? 100 : want);
        if (after) buf_addf(&url, "&after=%s", after);
        json_t *answer = NULL;
        rc = cli_call(cli, "GET", buf_str(&url), NULL, &answer, "cannot list %s", key);
        buf_release(&url);
        if (rc) break;
        json_array_extend(*list, json_object_get(answer, key));
        const char *next = json_string_value(json_object_get(answer, "next"));
        free(after);
        after = next && *next ? xstrdup(next) : NULL;
        json_decref(answer);
        if (!after || (!all && !limit) || (limit && (long)json_array_size(*list) >= limit)) break;
    }
    free(after);
    if (rc) {
        json_decref(*list);
        *list = NULL;
    }
    return rc;
}

int cli_list_command(int argc, char **argv, const char *usage, const char *path,
                     const char *key, void (*print)(json_t *list))
{
    static const struct option longopts[] = {
        {"limit", required_argument, NULL, 'n'},
        {"all", no_argument, NULL, 'a'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc, argv, usage);
    long limit = 0;
    bool all = false;
    int opt, rc;
    while ((opt = cli_getopt(&a, ":n:ah", longopts)) != -1) {
        if (opt == 'a')
            all = true;
        else if (!cli_parse_long(optarg, 1, 1000000000, &limit))
            return cli_usage_error(usage, "--limit must be a positive integer, not '%s'", optarg);
    }
    if ((rc = cli_args_none(&a)) != CLI_CONTINUE) return rc;
    struct cli cli;
    json_t *list = NULL;
    rc = cli_connect(&cli, &a.conn) ? 1 : cli_get_pages(&cli, path, key, limit, all, &list);
    if (rc == 0 && a.json)
        cli_print_json(list);
    else if (rc == 0)
        print(list);
    json_decref(list);
    cli_release(&cli);
    return rc;
}

void cli_not_a_job(struct cli *cli, const char *id, const char *sub, struct err *e)
{
    static const char *const kinds[][3] = {
        {"/v1/arrays/", "a job array", "array"},
        {"/v1/workflows/", "a workflow", "workflow"},
    };
    if (e->code != ERR_NOTFOUND) return;
    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
        struct err ignored = ERR_INIT;
        long status = 0;
        char *path = cli_path(kinds[i][0], id, "");
        int rc = http_client_json(&cli->http, "GET", path, NULL, &status, NULL, &ignored);
        free(path);
        if (rc) continue;
        size_t n = strlen(e->msg);
        snprintf(e->msg + n, sizeof(e->msg) - n, "; it is %s: drover %s %s %s",
                 kinds[i][1], kinds[i][2], sub, id);
        return;
    }
}

/* cli_call with its arguments for `what` in a va_list. */
static int call_v(struct cli *cli, const char *method, const char *path, json_t *body,
                  json_t **resp, const char *what, va_list ap) PRINTF_LIKE(6, 0);
static int call_v(struct cli *cli, const char *method, const char *path, json_t *body,
                  json_t **resp, const char *what, va_list ap)
{
    struct err e = ERR_INIT;
    long status = 0;
    json_t *j = NULL;
    int rc = http_client_json(&cli->http, method, path, body, &status, &j, &e);
    cli->status = status;
    if (rc < 0) {
        char whatbuf[512];
        vsnprintf(whatbuf, sizeof(whatbuf), what, ap);
        server_error = json_object_get(j, "error");
        cli_print_err(cli, &e, status, whatbuf);
        server_error = NULL;
        json_decref(j);
        if (resp) *resp = NULL;
        return 1;
    }
    if (resp)
        *resp = j;
    else
        json_decref(j);
    return 0;
}

int cli_call(struct cli *cli, const char *method, const char *path, json_t *body, json_t **resp,
             const char *what, ...)
{
    va_list ap;
    va_start(ap, what);
    int rc = call_v(cli, method, path, body, resp, what, ap);
    va_end(ap);
    return rc;
}

int cli_request(const struct cli_opts *o, const char *method, const char *path, json_t *body,
                json_t **resp, const char *what, ...)
{
    struct cli cli;
    if (resp) *resp = NULL;
    int rc = cli_connect(&cli, o);
    if (rc == 0) {
        va_list ap;
        va_start(ap, what);
        rc = call_v(&cli, method, path, body, resp, what, ap);
        va_end(ap);
    }
    cli_release(&cli);
    return rc;
}

char *cli_path(const char *prefix, const char *id, const char *suffix)
{
    char *eid = http_escape(id);
    char *path = xasprintf("%s%s%s", prefix, eid, suffix);
    free(eid);
    return path;
}

bool cli_job_is_terminal(const char *state)
{
    return state &&
           (!strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "cancelled"));
}

json_t *cli_job_of(json_t *answer)
{
    json_t *inner = json_object_get(answer, "job");
    return json_is_object(inner) ? inner : answer;
}

void cli_put_clean(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        fputc((c < 0x20 && c != '\t') || c == 0x7f ? '?' : c, f);
    }
}

void cli_print_json(json_t *j)
{
    if (j)
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
    else
        fputs("null", stdout);
    fputc('\n', stdout);
}

int cli_read_file(const char *path, size_t max, struct buf *out, struct err *e)
{
    bool is_stdin = !strcmp(path, "-");
    const char *name = is_stdin ? "standard input" : path;
    int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(e, ERR_IO, "cannot read '%s': %s", name, strerror(errno));
    int rc = 0;
    for (;;) {
        buf_grow(out, 65536);
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = err_set(e, ERR_IO, "cannot read '%s': %s", name, strerror(errno));
            break;
        }
        if (n == 0) break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
        if (out->len > max) {
            rc = err_set(e, ERR_TOOLARGE, "'%s' is larger than %zu bytes", name, max);
            break;
        }
    }
    if (!is_stdin) close(fd);
    return rc;
}

json_t *cli_load_json(const char *path, size_t max, struct err *e)
{
    struct buf b = BUF_INIT;
    json_t *j = NULL;
    const char *name = strcmp(path, "-") ? path : "standard input";
    if (cli_read_file(path, max, &b, e) == 0) {
        json_error_t jerr;
        /* as the API reads a body: a key twice is refused, not the last one taken */
        j = json_loadb(buf_str(&b), b.len, JSON_REJECT_DUPLICATES, &jerr);
        static const char dup[] = "duplicate object key near '\"";
        size_t n = strlen(jerr.text);
        if (!j && !strncmp(jerr.text, dup, strlen(dup)) && n >= strlen(dup) + 2)
            err_set(e, ERR_INVALID, "'%s' has the key '%.*s' twice in one object (line %d, "
                    "column %d)", name, (int)(n - strlen(dup) - 2), jerr.text + strlen(dup),
                    jerr.line, jerr.column);
        else if (!j)
            err_set(e, ERR_INVALID, "'%s' is not valid JSON: line %d, column %d: %s", name,
                    jerr.line, jerr.column, jerr.text);
    }
    buf_release(&b);
    return j;
}

bool cli_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) return false;
    *out = v;
    return true;
}

bool cli_parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0) return false;
    *out = v;
    return true;
}

bool cli_parse_time(const char *rfc3339, int64_t *ms_out)
{
    return time_parse_rfc3339(rfc3339, ms_out);
}

void cli_format_age(int64_t ms, char *out, size_t n)
{
    int64_t s = ms < 0 ? 0 : ms / 1000;
    if (s < 60)
        snprintf(out, n, "%llds ago", (long long)s);
    else if (s < 3600)
        snprintf(out, n, "%lldm ago", (long long)(s / 60));
    else if (s < 48 * 3600)
        snprintf(out, n, "%lldh ago", (long long)(s / 3600));
    else
        snprintf(out, n, "%lldd ago", (long long)(s / 86400));
}

void cli_format_time(const char *rfc3339, bool with_ms, char *out, size_t n)
{
    int64_t at;
    if (!rfc3339) {
        snprintf(out, n, "-");
        return;
    }
    if (!time_parse_rfc3339(rfc3339, &at)) { /* show anything unexpected as it is */
        snprintf(out, n, "%s", rfc3339);
        return;
    }
    time_t t = (time_t)(at / 1000);
    struct tm local;
    localtime_r(&t, &local);
    if (with_ms)
        snprintf(out, n, "%04d-%02d-%02d %02d:%02d:%02d.%03d", local.tm_year + 1900,
                 local.tm_mon + 1, local.tm_mday, local.tm_hour, local.tm_min, local.tm_sec,
                 (int)(at % 1000));
    else
        snprintf(out, n, "%04d-%02d-%02d %02d:%02d:%02d", local.tm_year + 1900, local.tm_mon + 1,
                 local.tm_mday, local.tm_hour, local.tm_min, local.tm_sec);
}

const char *cli_local_time(const char *rfc3339, char *buf)
{
    if (!rfc3339) return NULL;
    cli_format_time(rfc3339, false, buf, CLI_TIME_MAX);
    return buf;
}

/* The length of the RFC 3339 UTC time at s ("YYYY-MM-DDTHH:MM:SS[.fff]Z"), 0 when none is. */
static size_t utc_time_len(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    size_t i = 0;
    for (; shape[i]; i++)
        if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i]) return 0;
    if (s[i] == '.') {
        size_t digits = 0;
        while (s[i + 1 + digits] >= '0' && s[i + 1 + digits] <= '9' && digits < 9)
            digits++;
        if (!digits) return 0;
        i += 1 + digits;
    }
    return s[i] == 'Z' ? i + 1 : 0;
}

char *cli_local_times_in(const char *text)
{
    if (!text) return NULL;
    struct buf b = BUF_INIT;
    for (const char *p = text; *p;) {
        size_t n = utc_time_len(p);
        char one[40], local[CLI_TIME_MAX];
        int64_t ms;
        if (n && n < sizeof(one)) {
            memcpy(one, p, n);
            one[n] = '\0';
        }
        if (n && n < sizeof(one) && time_parse_rfc3339(one, &ms)) {
            buf_adds(&b, cli_local_time(one, local));
            p += n;
        } else {
            buf_addc(&b, *p++);
        }
    }
    return buf_detach(&b);
}

void cli_format_duration(int64_t ms, char *out, size_t n)
{
    /* Each unit rounds to its last digit, and a value that rounds up into the
     * next unit is shown in it ("59.96 s" is "1m00s", not "60.0s"). */
    int64_t tenths = (ms < 0 ? 0 : ms + 50) / 100;
    int64_t secs = (ms < 0 ? 0 : ms + 500) / 1000;
    int64_t mins = (ms < 0 ? 0 : ms + 30000) / 60000;
    if (ms < 1000)
        snprintf(out, n, "%dms", ms < 0 ? 0 : (int)ms);
    else if (tenths < 600)
        snprintf(out, n, "%d.%ds", (int)(tenths / 10), (int)(tenths % 10));
    else if (secs < 3600)
        snprintf(out, n, "%dm%02ds", (int)(secs / 60), (int)(secs % 60));
    else
        snprintf(out, n, "%lldh%02dm", (long long)(mins / 60), (int)(mins % 60));
}
