/*
 * agent.c - `drover agent`: options, startup, the loop's wiring, signals,
 * drain and exit. The protocol is in proto.c, a job's life in jobs.c.
 *
 * Startup: options are checked completely before anything is touched; then
 * the work folder is locked (one agent per folder: the spool is not shared),
 * the spool is recovered (jobs.c) and the agent registers. It exits 0 after
 * a drain (asked by the server, or SIGTERM/SIGINT) once its results are
 * delivered and it has left; 1 when the server refuses its registration
 * (bad token or name at the first one; at any one, its name taken by another
 * token or another live agent) or the work folder cannot be used;
 * 2 on a usage error.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/cache.h"
#include "agent/guardian.h"
#include "agent/trash.h"
#include "common/fsutil.h"
#include "commands.h"
#include "common/config.h"
#include "common/log.h"
#include "common/sdnotify.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "http/client.h"
#include "job/spec.h"

static const char usage_text[] =
    "usage: drover agent [--server URL] [--token-file FILE] [--name N] [--queues Q1,Q2]\n"
    "                    [--labels K=V,...] [--slots N] [--work-dir DIR] [--runtime R,...]\n"
    "                    [--engine-opt ARG]...\n"
    "                    [--listen ADDR:PORT] [--keep-work] [--term-grace S]\n"
    "                    [--drain-timeout S] [--allow-path DIR]... [--hide PATH]...\n"
    "                    [--stall-timeout S]\n"
    "                    [--cache-dir DIR] [--cache-size SIZE]\n"
    "                    [--limits auto|cgroup|rlimit|none]\n"
    "                    [--log-level LEVEL] [--log-format text|json] [--bench-noop]\n"
    "                    [--ca-file FILE]\n"
    "\n"
    "Runs jobs for a drover server on this machine: registers, takes leased jobs by\n"
    "long-poll, runs them, streams their output and progress, reports their results.\n"
    "A job is over when its program (its leader) exits: what it left running, even\n"
    "outside its process group, is killed then; its processes die with the agent.\n"
    "\n"
    "  --server URL[,URL]  the server, or several sharing one database: the agent moves to\n"
    "                      the next when one cannot be reached or answers 503 (default\n"
    "                      $DROVER_SERVER, else " DROVER_DEFAULT_SERVER ")\n"
    "  --token-file FILE   read the agent token from FILE (one line, trailing white space\n"
    "                      ignored; its mode must give\n"
    "                      its group and others nothing: chmod 600), else $DROVER_TOKEN.\n"
    "                      Make one with `drover token create --role agent --name NAME`\n"
    "  --token T           the token itself: avoid it, every user of this machine can read\n"
    "                      a command line (ps); the agent warns and overwrites its copy\n"
    "  --name N            this agent's name, unique per server (default: the host name); a\n"
    "                      name another live agent holds is refused: the agent exits\n"
    "  --queues Q1,Q2      the queues to take jobs from (default: default)\n"
    "  --labels K=V,...    labels, matched against the `requires` of jobs\n"
    "  --slots N           slots for jobs to take at once, 1-1024 (default 1)\n"
    "  --prefetch N        while its jobs are short (under 100 ms on average), hold up to N\n"
    "                      slots' worth of leases beyond --slots, each started as soon as\n"
    "                      a slot frees; one that waits 500 ms is given back. 0 to 4 times\n"
    "                      the slots (default: 4 times --slots, as Celery's multiplier;\n"
    "                      0: never)\n"
    "  --work-dir DIR      job folders and the spool (default $DROVER_DATA/agent,\n"
    "                      else ~/.local/share/drover/agent)\n"
    "  --runtime R,...     the runtimes to offer (comma-separated, or repeated): native\n"
    "                      (processes on this host), bwrap (a bubblewrap sandbox, for jobs\n"
    "                      with command.sandbox; without native, every job is sandboxed),\n"
    "                      podman or docker (containers, for jobs with command.image).\n"
    "                      Each must work at start, or the agent exits. Default: native,\n"
    "                      and whichever of bwrap, podman (else docker) pass a test run\n"
    "                      in the background\n"
    "  --engine-opt ARG    an argument for the container engine, put before each of its\n"
    "                      subcommands (e.g. --engine-opt=--cgroup-manager=cgroupfs);\n"
    "                      repeatable. The engine also reads its own configuration\n"
    "                      (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, DOCKER_HOST...)\n"
    "  --listen ADDR:PORT  serve /healthz, /metrics and /v1/status there (default: off)\n"
    "  --keep-work         keep each job's work folder after it ends\n"
    "  --term-grace S      seconds from SIGTERM to SIGKILL when a job is killed (default 10)\n"
    "  --drain-timeout S   on SIGTERM/SIGINT, seconds running jobs get to finish (default 60);\n"
    "                      a second signal kills them at once\n"
    "  --allow-path DIR    jobs may read and write file:///... uris under DIR (a shared\n"
    "                      filesystem); repeatable. Without it every file:// uri is refused\n"
    "  --hide PATH         a folder or file sandboxed jobs do not see (the host's secrets:\n"
    "                      a server's data folder on this machine, credentials); repeatable.\n"
    "                      The work folder, the cache and --token-file are hidden always\n"
    "  --stall-timeout S   a file transfer that moves nothing for S seconds fails (default 60)\n"
    "  --cache-dir DIR     the input cache: inputs marked \"cache\": true or given with their\n"
    "                      sha256 are kept there, by content, for the jobs that follow\n"
    "                      (default WORK_DIR/cache; one agent per folder)\n"
    "  --cache-size SIZE   its bound, e.g. 10G, 512M (default 10G); least recently used\n"
    "                      objects no running job uses are removed to keep it; 0: no cache\n"
    "  --ca-file FILE      CA certificates (PEM) that an https:// server's certificate may be\n"
    "                      signed by, beside the system's (default $DROVER_CA_FILE)\n"
    "  --limits M          how jobs' resources (memory_mb, cpus, pids) are enforced: auto\n"
    "                      (default: cgroup v2 if delegated, else cgroup v1, else rlimits),\n"
    "                      cgroup (a cgroup or refuse to start), rlimit (memory only), none\n"
    "  --log-level L       error, warn, info (default), debug\n"
    "  --log-format F      text (default) or json\n"
    "  --bench-noop        for benchmarks only: every leased job succeeds at once without\n"
    "                      running anything (started, then finished with exit code 0);\n"
    "                      nothing is spooled\n"
    "\n"
    "examples:\n"
    "  drover agent --server https://coordinator:7443 --token-file /etc/drover/agent.token \\\n"
    "               --ca-file /etc/drover/ca.pem --queues default,bio --slots 8\n"
    "  drover agent --labels db=rfam,gpu=1 --listen 127.0.0.1:7071  # /metrics there\n";

/* The command whose options are parsed, and its usage's head (NULL: the agent's): `drover dev`
   passes its agent's options and has its own (agent_opts_check). */
static const char *usage_cmd = "agent";
static const char *usage_head;

static int usage_error(const char *fmt, ...) PRINTF_LIKE(1, 2);
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "drover %s: ", usage_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (usage_head)
        fprintf(stderr, "\n%s", usage_head);
    else
        fprintf(stderr, "\n%.*s\n", (int)(strstr(usage_text, "\n\n") - usage_text), usage_text);
    fprintf(stderr, "'drover %s --help' tells more.\n", usage_cmd);
    return 2;
}

/* --- options ------------------------------------------------------------------------ */

static bool agent_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > PROTO_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool label_name_ok(const char *s, size_t n)
{
    if (n < 1 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._/-", c)))
            return false;
    }
    return true;
}

static int parse_queues(const char *arg, json_t **out)
{
    json_t *list = json_array();
    const char *p = arg;
    for (;;) {
        size_t n = strcspn(p, ",");
        char *q = xstrndup(p, n);
        if (!spec_queue_name_valid(q)) {
            json_decref(list);
            int rc = usage_error("--queues: '%s' is not a queue name ([a-z0-9._-]{1,64})", q);
            free(q);
            return rc;
        }
        json_array_append_new(list, json_string(q));
        free(q);
        if (!p[n]) break;
        p += n + 1;
    }
    if (json_array_size(list) > PROTO_QUEUES_MAX) {
        json_decref(list);
        return usage_error("--queues: at most %d queues", PROTO_QUEUES_MAX);
    }
    json_decref(*out);
    *out = list;
    return 0;
}

static int parse_labels(const char *arg, json_t *labels)
{
    const char *p = arg;
    while (*p) {
        size_t n = strcspn(p, ",");
        const char *eq = memchr(p, '=', n);
        if (!eq || !label_name_ok(p, (size_t)(eq - p)))
            return usage_error("--labels: '%.*s' is not K=V with K of [A-Za-z0-9._/-]{1,64}",
                               (int)n, p);
        char *k = xstrndup(p, (size_t)(eq - p));
        char *v = xstrndup(eq + 1, n - (size_t)(eq - p) - 1);
        json_t *jv = strlen(v) <= 256 ? json_string(v) : NULL;
        if (jv) json_object_set_new(labels, k, jv);
        free(k);
        free(v);
        if (!jv) return usage_error("--labels: a value must be UTF-8 text of at most 256 bytes");
        if (json_object_size(labels) > SPEC_MAX_LABELS)
            return usage_error("--labels: at most %d labels", SPEC_MAX_LABELS);
        p += n;
        if (*p == ',') p++;
    }
    return 0;
}

static bool parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(x) || x < 0 || x > 86400 * 365) return false;
    *out = x;
    return true;
}

/* "10G", "512M", "100k", "1048576": bytes, with an optional K, M, G or T (powers of 1024). */
static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*s)) return false;
    unsigned long long x = strtoull(s, &end, 10);
    int shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    case 't':
    case 'T':
        shift = 40;
        end++;
        break;
    default:
        break;
    }
    if (*end || errno || x > (UINT64_MAX >> shift)) return false;
    *out = (uint64_t)x << shift;
    return true;
}

/* The host name, made a valid agent name (characters outside [A-Za-z0-9._-] become '-'). */
static char *default_name(void)
{
    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) != 0 || !host[0]) return xstrdup("agent");
    host[64] = '\0';
    for (char *p = host; *p; p++)
        if (!agent_name_ok((char[]){*p, '\0'})) *p = '-';
    return xstrdup(host);
}

enum {
    OPT_SERVER = 256,
    OPT_TOKEN,
    OPT_TOKEN_FILE,
    OPT_NAME,
    OPT_QUEUES,
    OPT_LABELS,
    OPT_SLOTS,
    OPT_PREFETCH,
    OPT_WORK_DIR,
    OPT_RUNTIME,
    OPT_LISTEN,
    OPT_KEEP_WORK,
    OPT_TERM_GRACE,
    OPT_DRAIN_TIMEOUT,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_ALLOW_PATH,
    OPT_HIDE,
    OPT_BENCH_NOOP,
    OPT_STALL_TIMEOUT,
    OPT_ENGINE_OPT,
    OPT_CACHE_DIR,
    OPT_CACHE_SIZE,
    OPT_CA_FILE,
    OPT_LIMITS,
};

/*
 * Returns 0, 2 (usage error, printed) or -1 (--help printed). `check`: the options only, not
 * the token (agent_opts_check: `drover dev`'s server has not written its file yet).
 */
static int parse_opts(int argc, char **argv, struct agent_opts *o, bool check)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, OPT_SERVER},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
        {"name", required_argument, NULL, OPT_NAME},
        {"queues", required_argument, NULL, OPT_QUEUES},
        {"labels", required_argument, NULL, OPT_LABELS},
        {"slots", required_argument, NULL, OPT_SLOTS},
        {"prefetch", required_argument, NULL, OPT_PREFETCH},
        {"work-dir", required_argument, NULL, OPT_WORK_DIR},
        {"runtime", required_argument, NULL, OPT_RUNTIME},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"keep-work", no_argument, NULL, OPT_KEEP_WORK},
        {"term-grace", required_argument, NULL, OPT_TERM_GRACE},
        {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"allow-path", required_argument, NULL, OPT_ALLOW_PATH},
        {"hide", required_argument, NULL, OPT_HIDE},
        {"bench-noop", no_argument, NULL, OPT_BENCH_NOOP},
        {"stall-timeout", required_argument, NULL, OPT_STALL_TIMEOUT},
        {"engine-opt", required_argument, NULL, OPT_ENGINE_OPT},
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"cache-size", required_argument, NULL, OPT_CACHE_SIZE},
        {"ca-file", required_argument, NULL, OPT_CA_FILE},
        {"limits", required_argument, NULL, OPT_LIMITS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    o->slots = 1;
    o->prefetch = -1;
    o->term_grace_s = 10;
    o->drain_timeout_s = 60;
    o->stall_timeout_s = 60;
    o->cache_size = (uint64_t)10 << 30;
    o->labels = json_object();
    o->queues = json_pack("[s]", "default");
    int c;
    long n;
    char *end;
    const char *ca_file = NULL;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_SERVER:
            free(o->server);
            o->server = xstrdup(optarg);
            break;
        case OPT_TOKEN:
            free(o->token);
            o->token = xstrdup(optarg);
            /* what ps shows is this memory: overwritten, as MySQL's client does (the token
             * was readable from the exec until here; the warning says to avoid it) */
            memset(optarg, 'x', strlen(optarg));
            o->token_on_cmdline = true;
            break;
        case OPT_TOKEN_FILE:
            if (!*optarg) return usage_error("--token-file must not be empty");
            free(o->token_file);
            o->token_file = xstrdup(optarg);
            break;
        case OPT_NAME:
            if (!agent_name_ok(optarg))
                return usage_error("--name: '%s' is not a valid name ([A-Za-z0-9._-]{1,64})",
                                   optarg);
            free(o->name);
            o->name = xstrdup(optarg);
            break;
        case OPT_QUEUES:
            if (parse_queues(optarg, &o->queues)) return 2;
            break;
        case OPT_LABELS:
            if (parse_labels(optarg, o->labels)) return 2;
            break;
        case OPT_SLOTS:
            errno = 0;
            n = strtol(optarg, &end, 10);
            if (end == optarg || *end || errno || n < 1 || n > PROTO_SLOTS_MAX)
                return usage_error("--slots must be a whole number from 1 to %d, not '%s'",
                                   PROTO_SLOTS_MAX, optarg);
            o->slots = (int)n;
            break;
        case OPT_PREFETCH:
            errno = 0;
            n = strtol(optarg, &end, 10);
            if (end == optarg || *end || errno || n < 0 ||
                n > (long)PROTO_SLOTS_MAX * PROTO_PREFETCH_PER_SLOT_MAX)
                return usage_error("--prefetch must be a whole number from 0 to %d times "
                                   "--slots, not '%s'",
                                   PROTO_PREFETCH_PER_SLOT_MAX, optarg);
            o->prefetch = (int)n;
            break;
        case OPT_WORK_DIR:
            if (!*optarg) return usage_error("--work-dir must not be empty");
            free(o->work_dir);
            o->work_dir = xstrdup(optarg);
            break;
        case OPT_RUNTIME:
            for (const char *p = optarg;;) {
                size_t len = strcspn(p, ",");
                char *name = xstrndup(p, len);
                unsigned bit = proto_runtime_parse(name);
                free(name);
                if (!bit)
                    return usage_error("--runtime: '%.*s' is not one of native, bwrap, podman, "
                                       "docker",
                                       (int)len, p);
                o->runtimes_forced |= bit;
                if (!p[len]) break;
                p += len + 1;
            }
            if ((o->runtimes_forced & PROTO_RT_CONTAINER) == PROTO_RT_CONTAINER)
                return usage_error("--runtime: podman or docker, not both (one container engine "
                                   "per agent)");
            break;
        case OPT_ENGINE_OPT:
            if (o->nengine_opts >= 64) return usage_error("--engine-opt: at most 64");
            o->engine_opts = xrealloc(o->engine_opts, (o->nengine_opts + 1) * sizeof(char *));
            o->engine_opts[o->nengine_opts++] = xstrdup(optarg);
            break;
        case OPT_LISTEN:
            free(o->listen);
            o->listen = xstrdup(optarg);
            break;
        case OPT_KEEP_WORK:
            o->keep_work = true;
            break;
        case OPT_TERM_GRACE:
            if (!parse_seconds(optarg, &o->term_grace_s))
                return usage_error("--term-grace must be a number of seconds, not '%s'", optarg);
            break;
        case OPT_DRAIN_TIMEOUT:
            if (!parse_seconds(optarg, &o->drain_timeout_s))
                return usage_error("--drain-timeout must be a number of seconds, not '%s'", optarg);
            break;
        case OPT_LOG_LEVEL:
            if ((log_level_current = log_level_parse(optarg)) < 0)
                return usage_error("--log-level must be error, warn, info or debug");
            break;
        case OPT_LOG_FORMAT:
            if (strcmp(optarg, "text") && strcmp(optarg, "json"))
                return usage_error("--log-format must be text or json");
            log_set_json(!strcmp(optarg, "json"));
            break;
        case OPT_ALLOW_PATH: {
            struct stat sb;
            char *real = *optarg == '/' ? realpath(optarg, NULL) : NULL;
            if (!real || stat(real, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
                free(real);
                return usage_error("--allow-path: '%s' is not an absolute path to a folder",
                                   optarg);
            }
            if (o->nallow_paths >= 64) {
                free(real);
                return usage_error("--allow-path: at most 64 folders");
            }
            o->allow_paths = xrealloc(o->allow_paths, (o->nallow_paths + 1) * sizeof(char *));
            o->allow_paths[o->nallow_paths++] = real;
            break;
        }
        case OPT_HIDE: /* it may not exist yet (drover dev's data folder): looked at per job */
            if (*optarg != '/' || !optarg[strspn(optarg, "/")])
                return usage_error("--hide: '%s' is not an absolute path below /", optarg);
            if (o->nhide >= 64) return usage_error("--hide: at most 64 paths");
            o->hide = xrealloc(o->hide, (o->nhide + 1) * sizeof(char *));
            o->hide[o->nhide++] = xstrdup(optarg);
            break;
        case OPT_STALL_TIMEOUT:
            if (!parse_seconds(optarg, &o->stall_timeout_s) || o->stall_timeout_s < 1)
                return usage_error("--stall-timeout must be a number of seconds (at least 1), "
                                   "not '%s'",
                                   optarg);
            break;
        case OPT_CACHE_DIR:
            if (!*optarg) return usage_error("--cache-dir must not be empty");
            free(o->cache_dir);
            o->cache_dir = xstrdup(optarg);
            break;
        case OPT_CACHE_SIZE:
            if (!parse_size(optarg, &o->cache_size))
                return usage_error("--cache-size must be a size in bytes with an optional K, M, G "
                                   "or T (0: no cache), not '%s'",
                                   optarg);
            break;
        case OPT_LIMITS:
            if (strcmp(optarg, "auto") && strcmp(optarg, "cgroup") && strcmp(optarg, "rlimit") &&
                strcmp(optarg, "none"))
                return usage_error("--limits must be auto, cgroup, rlimit or none, not '%s'",
                                   optarg);
            free(o->limits_mode);
            o->limits_mode = xstrdup(optarg);
            break;
        case OPT_BENCH_NOOP:
            o->bench_noop = true;
            break;
        case OPT_CA_FILE:
            ca_file = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return -1;
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
    if (o->prefetch < 0) o->prefetch = PROTO_PREFETCH_PER_SLOT_MAX * o->slots;
    if (o->prefetch > o->slots * PROTO_PREFETCH_PER_SLOT_MAX)
        return usage_error("--prefetch must be a whole number from 0 to %d times --slots "
                           "(%d here), not %d",
                           PROTO_PREFETCH_PER_SLOT_MAX,
                           o->slots * PROTO_PREFETCH_PER_SLOT_MAX, o->prefetch);
    struct err ce = ERR_INIT;
    if (http_set_ca_file(ca_file, &ce)) return usage_error("%s", ce.msg);
    if (o->token_file && o->token) return usage_error("give --token-file or --token, not both");
    if (check) return 0;
    if (o->token_file) {
        struct err e = ERR_INIT;
        if (fs_read_secret(o->token_file, &o->token, &e)) {
            fprintf(stderr, "drover agent: --token-file: %s\n", e.msg);
            return 2;
        }
    }
    if (!o->server) {
        const char *env = getenv("DROVER_SERVER");
        o->server = xstrdup(env && *env ? env : DROVER_DEFAULT_SERVER);
    }
    if (!o->token) {
        const char *env = getenv("DROVER_TOKEN");
        if (env && *env) o->token = xstrdup(env);
    }
    if (!o->token)
        return usage_error("no token: give --token-file FILE or set DROVER_TOKEN (an agent "
                           "token, made with `drover token create --role agent --name NAME`)");
    if (!o->name) o->name = default_name();
    if (!o->limits_mode) o->limits_mode = xstrdup("auto");
    if (!o->work_dir) {
        char *data = config_default_data_dir();
        o->work_dir = xasprintf("%s/agent", data);
        free(data);
    }
    return 0;
}

static void opts_release(struct agent_opts *o)
{
    free(o->server);
    free(o->token);
    free(o->token_file);
    free(o->name);
    free(o->work_dir);
    free(o->listen);
    free(o->cache_dir);
    free(o->limits_mode);
    for (size_t i = 0; i < o->nallow_paths; i++)
        free(o->allow_paths[i]);
    free(o->allow_paths);
    for (size_t i = 0; i < o->nhide; i++)
        free(o->hide[i]);
    free(o->hide);
    for (size_t i = 0; i < o->nengine_opts; i++)
        free(o->engine_opts[i]);
    free(o->engine_opts);
    json_decref(o->queues);
    json_decref(o->labels);
    memset(o, 0, sizeof(*o));
}

int agent_opts_check(int argc, char **argv, const char *cmd, const char *head)
{
    struct agent_opts o;
    memset(&o, 0, sizeof(o));
    usage_cmd = cmd; /* and for the cmd_agent that follows: the user gave `drover CMD` */
    usage_head = head;
    int rc = parse_opts(argc, argv, &o, true);
    opts_release(&o);
    return rc;
}

/* --- state ----------------------------------------------------------------------------- */

int agent_free_slots(const struct agent *a)
{
    if (a->draining) return 0;
    int n = a->o.slots - a->slots_used - a->slots_waiting;
    return n > 0 ? n : 0;
}

int agent_prefetch(const struct agent *a)
{
    if (!a->server_prefetch || !a->o.prefetch || a->draining || a->hard_stop ||
        a->run_mean_us < 0 || a->run_mean_us >= PREFETCH_SHORT_MS * 1000)
        return 0;
    /* and only while a slot frees soon: one is free, or one's job is young */
    if (agent_free_slots(a) > 0) return a->o.prefetch;
    int64_t young = time_mono_ns() - (int64_t)PREFETCH_SHORT_MS * 1000000;
    for (const struct agent_job *j = a->jobs; j; j = j->next)
        if (j->phase == PHASE_RUNNING && j->start_ns > young) return a->o.prefetch;
    return 0;
}

const char *agent_state(const struct agent *a)
{
    if (a->exiting) return "stopping";
    if (a->leave_req || a->leave_pending) return "leaving";
    if (a->draining) return "draining";
    return a->registered ? "up" : "registering";
}

static void timer_arm_s(struct event *ev, double s)
{
    struct timeval tv = {(time_t)s, (suseconds_t)((s - floor(s)) * 1e6)};
    evtimer_add(ev, &tv);
}

static void quit(struct agent *a)
{
    a->exiting = true;
    event_base_loopexit(a->base, NULL);
}

void agent_check_done(struct agent *a)
{
    if (!a->draining || a->exiting || a->leave_req || a->leave_pending || jobs_running(a) > 0)
        return;
    if (a->njobs == 0 && !a->registered) {
        log_info("nothing left to run or deliver; exiting");
        quit(a);
        return;
    }
    if (a->drain_signal && !evtimer_pending(a->final_timer, NULL))
        timer_arm_s(a->final_timer, AGENT_FINAL_FLUSH_MS / 1000.0);
    if (a->njobs > 0 || !proto_idle(a) || !a->registered) return;
    if (a->poll_req) {
        /*
         * Leave only once no poll is parked at the server: one could still be answered
         * with a lease (the server may offer slots freed by our last results), which would
         * be lost with the leave. on_poll calls again.
         */
        a->leave_pending = true;
        return;
    }
    log_info("drained: every result is delivered; leaving");
    proto_leave(a);
}

void agent_drain(struct agent *a, bool by_signal)
{
    jobs_release_waiting(a); /* unstarted: back to the server for another agent */
    if (!a->draining && a->registered) {
        a->announce_drain = true;
        proto_kick(a);
    }
    if (!a->draining)
        sdnotify_stopping("draining: %zu running job(s) finish, then the agent leaves",
                          jobs_running(a));
    a->draining = true;
    if (by_signal && !a->drain_signal) {
        a->drain_signal = true;
        timer_arm_s(a->drain_timer, a->o.drain_timeout_s);
    }
    agent_check_done(a);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct agent *a = arg;
    (void)fd, (void)what;
    size_t n = jobs_running(a);
    if (n) log_warn("drain timeout (%g s): stopping %zu running job(s)", a->o.drain_timeout_s, n);
    jobs_stop_all(a, false);
}

static void on_final_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct agent *a = arg;
    (void)fd, (void)what;
    if (jobs_running(a) > 0) /* a lease came in after all: wait for it (drain timeout bounds it) */
        return;              /* agent_check_done arms this timer again once it has ended */
    log_warn("%zu result(s) could not be delivered; they stay in the spool '%s' and are sent "
             "when the agent starts again",
             a->njobs, a->spool.dir);
    quit(a);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct agent *a = arg;
    const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    (void)what;
    if (!a->drain_signal) {
        log_info("received %s: draining (running jobs get %g s to finish; a second signal "
                 "kills them)",
                 name, a->o.drain_timeout_s);
        agent_drain(a, true);
    } else if (!a->hard_stop) {
        log_warn("received %s again: killing the running jobs", name);
        a->hard_stop = true;
        jobs_stop_all(a, true);
        agent_check_done(a);
    } else {
        log_warn("received %s a third time: exiting now; undelivered results stay in the spool",
                 name);
        quit(a);
    }
}

static void on_sigchld(evutil_socket_t sig, short what, void *arg)
{
    (void)sig, (void)what;
    runner_native_reap(arg);
}

/* --- startup ------------------------------------------------------------------------------- */

/* fds 0-2 open, so that no pipe or socket of ours is ever mistaken for stdio. */
static void stdio_sanity(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0) die("cannot open /dev/null");
}

static void read_boot_id(char *out, size_t n)
{
    out[0] = '\0';
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t r = read(fd, out, n - 1);
    close(fd);
    out[r > 0 ? r : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
}

/* One agent per work folder: an advisory lock on WORK_DIR/agent.lock holding our pid. */
static int lock_work_dir(struct agent *a, struct err *e)
{
    char *path = xasprintf("%s/agent.lock", a->o.work_dir);
    int rc = 0;
    a->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (a->lock_fd < 0) {
        rc = err_set(e, ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    } else if (flock(a->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t r = pread(a->lock_fd, pid, sizeof(pid) - 1, 0);
        pid[r > 0 ? r : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        rc = err_set(e, ERR_IO, "the work folder '%s' is in use by another agent%s%s%s",
                     a->o.work_dir, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
    } else {
        char pid[32];
        int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
        if (ftruncate(a->lock_fd, 0) != 0 || pwrite(a->lock_fd, pid, (size_t)len, 0) != len)
            log_warn("cannot write '%s': %s", path, strerror(errno));
    }
    free(path);
    return rc;
}

/*
 * The work folder's instance id (WORK_DIR/agent.instance, made at its first use): what tells
 * the server that a registration under a name it sees live is this agent restarted, and not
 * a second agent that took the same name (protocol.md). Called with the folder locked.
 */
static int load_instance(struct agent *a, struct err *e)
{
    char *path = xasprintf("%s/agent.instance", a->o.work_dir);
    char *tmp = xasprintf("%s.tmp", path);
    char buf[UUID_STR_LEN + 2] = "";
    int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        buf[n > 0 ? n : 0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        if (uuid_valid(buf)) {
            memcpy(a->instance, buf, UUID_STR_LEN);
            goto out;
        }
        log_warn("'%s' holds no instance id: making a new one", path);
    } else if (errno != ENOENT) {
        rc = err_set(e, ERR_IO, "cannot read '%s': %s", path, strerror(errno));
        goto out;
    }
    uuid7_new(a->instance);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool written = fd >= 0 && dprintf(fd, "%s\n", a->instance) > 0 && fsync(fd) == 0;
    if (fd >= 0 && close(fd) != 0) written = false;
    if (!written || rename(tmp, path) != 0)
        rc = err_set(e, ERR_IO, "cannot write '%s': %s", path, strerror(errno));
out:
    free(path);
    free(tmp);
    return rc;
}

static int setup(struct agent *a, struct err *e)
{
    int rc;
    char *spool_dir = NULL;
    if ((rc = mkdir_p(a->o.work_dir, e))) return rc;
    /* Absolute: jobs get paths in it (DROVER_WORK_DIR, DROVER_PROGRESS) and run elsewhere. */
    char *abs = realpath(a->o.work_dir, NULL);
    if (!abs)
        return err_set(e, ERR_IO, "cannot use the work folder '%s': %s", a->o.work_dir,
                       strerror(errno));
    free(a->o.work_dir);
    a->o.work_dir = abs;
    spool_dir = xasprintf("%s/spool", a->o.work_dir);
    a->jobs_dir = xasprintf("%s/jobs", a->o.work_dir);
    if ((rc = lock_work_dir(a, e)) || (rc = load_instance(a, e)) ||
        (rc = spool_open(&a->spool, spool_dir, e)))
        goto out;
    if (!a->o.keep_work)
        agent_remove_tree(a->jobs_dir); /* folders of jobs that ended before a crash */
    if ((rc = mkdir_p(a->jobs_dir, e))) goto out;
    a->trash = trash_new(a->jobs_dir);
    if (a->o.cache_size > 0) {
        /* the default is inside the work folder, so on the jobs' filesystem: links, not copies */
        char *dir = a->o.cache_dir ? xstrdup(a->o.cache_dir) : xasprintf("%s/cache", a->o.work_dir);
        rc = cache_open(dir, a->o.cache_size, &a->cache, e);
        free(dir);
    }
out:
    free(spool_dir);
    return rc;
}

static struct event *signal_event(struct agent *a, int sig, event_callback_fn fn)
{
    struct event *ev = evsignal_new(a->base, sig, fn, a);
    event_priority_set(ev, AGENT_PRIO_IO);
    event_add(ev, NULL);
    return ev;
}

static void event_free_null(struct event **ev)
{
    if (*ev) event_free(*ev);
    *ev = NULL;
}

int cmd_agent(int argc, char **argv)
{
    struct agent a;
    struct err e = ERR_INIT;
    memset(&a, 0, sizeof(a));
    a.lock_fd = -1;
    a.guardian_fd = -1;
    a.spool.dirfd = -1;
    int rc = parse_opts(argc, argv, &a.o, false);
    if (rc) {
        opts_release(&a.o);
        return rc < 0 ? 0 : rc;
    }
    stdio_sanity();
    if (a.o.token_on_cmdline)
        log_warn("--token puts the token on the command line, where every user of this "
                 "machine can read it (ps); give it with --token-file FILE or DROVER_TOKEN");
    signal(SIGPIPE, SIG_IGN);
    a.started_ms = time_now_ms();
    read_boot_id(a.boot_id, sizeof(a.boot_id));

    if (http_client_init(&a.http, a.o.server, a.o.token, &e)) {
        fprintf(stderr, "drover agent: %s\n", e.msg);
        rc = 2;
        goto out;
    }
    a.http.connect_timeout_ms = 5000;
    if (setup(&a, &e)) {
        fprintf(stderr, "drover agent: %s\n", e.msg);
        rc = 1;
        goto out;
    }
    a.base = event_base_new();
    if (!a.base || event_base_priority_init(a.base, AGENT_NPRIO) != 0)
        die("cannot initialise libevent");
    a.ac = aclient_new(a.base, &a.http);
    proto_init(&a);
    jobs_init(&a);
    a.drain_timer = evtimer_new(a.base, on_drain_timeout, &a);
    a.final_timer = evtimer_new(a.base, on_final_timeout, &a);
    a.sigterm_ev = signal_event(&a, SIGTERM, on_stop_signal);
    a.sigint_ev = signal_event(&a, SIGINT, on_stop_signal);
    a.sigchld_ev = signal_event(&a, SIGCHLD, on_sigchld);
    /* What leaves a job's process group (setsid, a double fork) is re-parented to the agent
     * when its parent ends, not to init: the agent can still find and kill it (runner_native.c). */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        log_warn("cannot become a child subreaper (%s): processes that leave a job's process "
                 "group may outlive it",
                 strerror(errno));
    if (a.o.listen && status_start(&a, a.o.listen, &e)) {
        fprintf(stderr, "drover agent: %s\n", e.msg);
        rc = e.code == ERR_INVALID ? 2 : 1;
        goto out;
    }
    if (runtimes_setup(&a, &e)) {
        fprintf(stderr, "drover agent: %s\n", e.msg);
        rc = 1;
        goto out;
    }
    /* after setup (the instance names the agent's cgroups), before the recovery (which
     * finds the jobs whose groups limits_init removes) */
    if (limits_init(&a.limits, a.o.limits_mode, a.instance, &e)) {
        fprintf(stderr, "drover agent: %s\n", e.msg);
        rc = 1;
        goto out;
    }
    char *how = limits_describe(&a.limits);
    log_info("%s", how);
    free(how);
    if (jobs_recover(&a, &e)) {
        fprintf(stderr, "drover agent: %s\n", e.msg);
        rc = 1;
        goto out;
    }
    char rts[64] = "";
    for (unsigned bit = 1; bit & PROTO_RT_ALL; bit <<= 1)
        if (a.runtimes & bit)
            snprintf(rts + strlen(rts), sizeof(rts) - strlen(rts), "%s%s", rts[0] ? "," : "",
                     proto_runtime_name(bit));
    log_info("drover agent %s name=%s server=%s slots=%d runtimes=%s work_dir=%s%s%s",
             DROVER_VERSION, a.o.name, a.http.base_url, a.o.slots, rts, a.o.work_dir,
             a.o.listen ? " listen=" : "", a.o.listen ? a.o.listen : "");
    if (a.o.bench_noop)
        log_warn("--bench-noop: leased jobs are reported succeeded without being run");
    guardian_start(&a); /* before any job starts */
    proto_register(&a);
    event_base_dispatch(a.base);
    rc = a.exit_code;
    log_info("agent stopped");

out:
    status_stop(&a);
    jobs_free_all(&a);   /* first: a staging job cancels its transfers on the aclient */
    guardian_stop(&a);   /* it kills what the jobs may have left */
    trash_stop(a.trash); /* the folders of settled jobs are gone before the agent is */
    cache_free(a.cache); /* after the jobs: they unpin what they hold */
    aclient_free(a.ac);
    if (a.base) proto_release(&a);
    event_free_null(&a.drain_timer);
    event_free_null(&a.final_timer);
    event_free_null(&a.sigterm_ev);
    event_free_null(&a.sigint_ev);
    event_free_null(&a.sigchld_ev);
    runner_native_stop(&a);
    runtimes_release(&a);
    spool_close(&a.spool);
    limits_release(&a.limits);
    if (a.lock_fd >= 0) close(a.lock_fd);
    if (a.base) event_base_free(a.base);
    http_client_release(&a.http);
    free(a.jobs_dir);
    opts_release(&a.o);
    return rc;
}
