/*
 * server.c - `drover server`: option parsing, startup, the event loop and
 * an orderly shutdown on SIGINT / SIGTERM.
 *
 * Startup order matters: the listening socket is bound first, so that a port
 * in use (or a TLS certificate that cannot be read) fails before the data
 * folder is made or changed; the store is opened (and migrated) before the
 * admin token is made; and the socket listens last, so that a server
 * answering /healthz is ready for everything. A start that fails removes the
 * data folder when it made it.
 */
#include <errno.h>
#include <event2/listener.h>
#include <ftw.h>
#include <event2/thread.h>
#include <netdb.h>
#include <openssl/rand.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "common/config.h"
#include "common/fsutil.h"
#include "common/role.h"
#include "common/log.h"
#include "common/sdnotify.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "blob/blob.h"
#include "job/protocol.h"
#include "http/accept.h"
#include "http/client.h"
#include "http/tls.h"
#include "http/upload.h"
#include "server/datadir.h"
#include "server/events.h"
#include "server/fleet.h"
#include "server/webhooks.h"
#include "server/offload.h"
#include "server/retention.h"
#include "server/triggers.h"
#include "server/tenants.h"
#include "server/lease.h"
#include "server/metrics.h"
#include "server/sched.h"
#include "server/server.h"
#include "server/sync.h"
#include "server/session.h"

static int split_listen(const char *listen, char *host, size_t n, int *port)
{
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen)
        return -1;
    size_t hl = (size_t)(colon - listen);
    if (listen[0] == '[' && hl >= 2 && listen[hl - 1] == ']') { /* [::1]:7070 */
        listen++;
        hl -= 2;
    }
    if (hl >= n)
        return -1;
    memcpy(host, listen, hl);
    host[hl] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

/*
 * s->listen_fd: a TCP socket bound to host:port (reusable, non-blocking, close-on-exec, with
 * keep-alives, as evhttp binds its own), not listening yet: a port in use fails here, before
 * anything is made, and connections are refused until the server listens (server_start's end).
 */
static int server_bind(struct server *s, const char *listen, const char *host, int port,
                       struct err *e)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    int g = getaddrinfo(*host ? host : NULL, ps, &hints, &ai);
    if (g) return err_set(e, ERR_IO, "cannot listen on %s: %s", listen, gai_strerror(g));
    int one = 1, rc = 0;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen)) {
        rc = err_set(e, ERR_IO, "cannot listen on %s: %s", listen, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    s->listen_fd = fd;
    struct sockaddr_storage ss; /* port 0: the one the kernel chose, for the log and status */
    socklen_t sl = sizeof(ss);
    int bound = port;
    if (!rc && port == 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    if (!rc)
        s->listen = bound == port       ? xstrdup(listen)
                    : strchr(host, ':') ? xasprintf("[%s]:%d", host, bound)
                                        : xasprintf("%s:%d", host, bound);
    return rc;
}

/* Listens on s->listen_fd with evhttp (plain HTTP); evhttp then owns it. */
static int server_listen(struct server *s, const struct server_opts *o, struct err *e)
{
    if (listen(s->listen_fd, 128) ||
        !(s->listener = evhttp_accept_socket_with_handle(s->http, s->listen_fd)))
        return err_set(e, ERR_IO, "cannot listen on %s: %s", o->listen, strerror(errno));
    s->listen_fd = -1;
    return 0;
}

/*
 * --tls-cert: the TLS front (s->tls, its certificate already read) listens on s->listen_fd,
 * and evhttp on a Unix socket in the data folder, behind it (http/tls.h).
 */
static int server_listen_tls(struct server *s, const struct server_opts *o, struct err *e)
{
    int fd = tls_front_inner(s->tls, o->data, e);
    if (fd < 0) return fd;
    if (!(s->listener = evhttp_accept_socket_with_handle(s->http, fd))) {
        close(fd);
        return err_set(e, ERR_IO, "cannot serve on the TLS front's socket");
    }
    struct evconnlistener *lev = evconnlistener_new(
        s->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, -1,
        s->listen_fd);
    if (!lev) return err_set(e, ERR_IO, "cannot listen on %s: %s", o->listen, strerror(errno));
    s->listen_fd = -1;
    int one = 1;
    setsockopt(evconnlistener_get_fd(lev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    tls_front_listen(s->tls, lev);
    s->tls_guard = accept_guard_new(lev);
    return 0;
}

/*
 * The outermost folder of `path` that does not exist, which mkdir_p would make (path itself,
 * or one of its parents), or NULL when path exists: the caller's.
 */
static char *first_missing(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 || errno != ENOENT) return NULL;
    char *top = xstrdup(path);
    for (;;) {
        char *parent = xstrdup(top);
        size_t n = strlen(parent);
        while (n > 1 && parent[n - 1] == '/')
            parent[--n] = '\0';
        char *slash = strrchr(parent, '/');
        bool missing = false;
        if (slash && slash != parent) { /* not "name" nor "/name": its parent may be missing */
            *slash = '\0';
            missing = stat(parent, &st) != 0 && errno == ENOENT;
        }
        if (!missing) {
            free(parent);
            return top;
        }
        free(top);
        top = parent;
    }
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (remove(path)) log_warn("cannot remove '%s': %s", path, strerror(errno));
    return 0;
}

/* --print-routes: "METHOD PATH ROLES" per route, ROLES "-" when it needs no token. */
static void print_routes(void)
{
    static const int roles[] = {ROLE_CLIENT, ROLE_ADMIN, ROLE_AGENT};
    for (size_t i = 0; i < server_nroutes; i++) {
        printf("%s %s ", server_routes[i].method, server_routes[i].pattern);
        const char *sep = "";
        for (size_t k = 0; k < sizeof(roles) / sizeof(roles[0]); k++)
            if (server_routes[i].roles & (unsigned)roles[k]) {
                printf("%s%s", sep, role_name(roles[k]));
                sep = ",";
            }
        printf("%s\n", *sep ? "" : "-");
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: drover server [--listen ADDR:PORT] [--data DIR] [--db URI]\n"
            "                     [--sync full|normal] [--log-level LEVEL] [--log-format text|json]\n"
            "                     [--tls-cert FILE --tls-key FILE] [more options below]\n"
            "\n"
            "  --listen ADDR:PORT   where to serve the API (default %s); plain HTTP anywhere\n"
            "                       but on loopback is warned about: use --tls-cert/--tls-key\n"
            "  --tls-cert FILE      serve HTTPS with this PEM certificate (then its chain)\n"
            "  --tls-key FILE       the certificate's PEM private key\n"
            "  --data DIR           data folder: store, admin token (default $DROVER_DATA or\n"
            "                       ~/.local/share/drover)\n"
            "  --db URI             job store: sqlite:PATH (default sqlite:DIR/drover.db) or\n"
            "                       postgres://USER@HOST:PORT/DB (password: PGPASSWORD or ~/.pgpass)\n"
            "  --sync full|normal   full: fsync every commit (survives power loss);\n"
            "                       normal (default): survives a crash of the server\n"
            "  --log-level L        error, warn, info (default), debug\n"
            "  --heartbeat S        how often agents call in (default 5 s)\n"
            "  --lost-after S       an agent silent this long is lost (default 15 s)\n"
            "  --deadline-grace S   the server ends an attempt timeout_s + S after its lease\n"
            "                       (default 30 s; the agent enforces timeout_s itself)\n"
            "  --log-format F       text (default) or json\n"
            "  --blobs URI          object store: fs:DIR (default fs:DATA/blobs) or\n"
            "                       s3://BUCKET?endpoint=URL&region=R (AWS_* credentials)\n"
            "  --public-url URL     base of presigned URLs (default: http://HOST the request\n"
            "                       came to)\n"
            "  --upload-idle S      an object upload that sends nothing this long is given up\n"
            "                       (default 120 s)\n"
            "  --events-keep N      events kept for GET /v1/events (default 1000000; older\n"
            "                       ones are pruned each minute)\n"
            "  --max-connections N  connections at a time; more close idle ones or get 503\n"
            "                       (default: half the descriptor limit, at most %d)\n"
            "  --header-timeout S   a request's head must arrive within S (default %d s)\n"
            "  --idle-timeout S     a connection without a request is closed after S\n"
            "                       (default %d s)\n"
            "  --retention D        finished jobs are deleted D after they end, their record\n"
            "                       and output kept in the archive (default 7d; D is N[s|m|h|d])\n"
            "  --queue-retention Q=D  the retention of queue Q's jobs (repeatable)\n"
            "  --retention-sweep S  how often due jobs are archived (default 60 s)\n"
            "  --agent-retention D  agents lost or left D ago are forgotten: out of\n"
            "                       `drover agents`, their name free (default 1d)\n"
            "  --tenant-max-running N  jobs a tenant may have leased or running at a time\n"
            "                       (default 0: no limit; `drover tenant set` sets one's own)\n"
            "  --tenant-max-queued N  jobs a tenant may have queued; a submission past it is\n"
            "                       refused with 429 (default 0: no limit)\n"
            "  --webhook-allow LIST  addresses webhooks may reach, as CIDR ranges\n"
            "                       (10.0.0.0/8,2001:db8::/32; default: any)\n"
            "  --webhook-deny LIST  addresses webhooks may not reach (default %s:\n"
            "                       link-local, where cloud metadata services answer;\n"
            "                       none: no range)\n"
            "  --trigger-scan S     with --blobs s3://..., how often the prefixes of triggers\n"
            "                       are listed for objects uploaded straight to S3 (default\n"
            "                       10 s)\n"
            "  --print-routes       print the route table (METHOD PATH ROLES a line) and exit\n"
            "\n"
            "examples:\n"
            "  drover server                         # on 127.0.0.1:7070, ~/.local/share/drover\n"
            "  drover server --listen 0.0.0.0:7443 --tls-cert cert.pem --tls-key key.pem\n"
            "  drover server --data /srv/drover --sync full --log-format json\n",
            DROVER_DEFAULT_LISTEN, SERVER_MAX_CONNS, SERVER_HEADER_TIMEOUT_S,
            SERVER_IDLE_TIMEOUT_S, SERVER_WEBHOOK_DENY);
}

/* --max-connections, --header-timeout, --idle-timeout: 0, or -1 after a message. */
static int conn_opt_parse(const char *cmd, int c, const char *arg, struct server_opts *o)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (c == 'M' && (*end || end == arg || v < 1 || v > 1000000)) {
        fprintf(stderr, "drover %s: --max-connections must be a number (1-1000000)\n", cmd);
        return -1;
    }
    if (c != 'M' && (*end || end == arg || v < 1 || v > 3600)) {
        fprintf(stderr, "drover %s: --%s must be a number of seconds (1-3600)\n", cmd,
                c == 'T' ? "header-timeout" : "idle-timeout");
        return -1;
    }
    *(c == 'M'   ? &o->max_connections
      : c == 'T' ? &o->header_timeout_s
                 : &o->idle_timeout_s) = (int)v;
    return 0;
}

int server_opts_parse(int argc, char **argv, struct server_opts *o)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'}, {"data", required_argument, NULL, 'd'},
        {"db", required_argument, NULL, 'D'},     {"sync", required_argument, NULL, 's'},
        {"log-level", required_argument, NULL, 'L'},
        {"log-format", required_argument, NULL, 'F'},
        {"blobs", required_argument, NULL, 'B'},  {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'}, {"lost-after", required_argument, NULL, 'A'},
        {"heartbeat", required_argument, NULL, 'H'},
        {"deadline-grace", required_argument, NULL, 'G'},
        {"public-url", required_argument, NULL, 'P'},
        {"upload-idle", required_argument, NULL, 'U'},
        {"events-keep", required_argument, NULL, 'E'},
        {"max-connections", required_argument, NULL, 'M'},
        {"header-timeout", required_argument, NULL, 'T'},
        {"idle-timeout", required_argument, NULL, 'I'},
        {"retention", required_argument, NULL, 'r'},
        {"queue-retention", required_argument, NULL, 'q'},
        {"retention-sweep", required_argument, NULL, 'w'},
        {"agent-retention", required_argument, NULL, 'y'},
        {"tenant-max-running", required_argument, NULL, 'x'},
        {"tenant-max-queued", required_argument, NULL, 'X'},
        {"trigger-scan", required_argument, NULL, 'S'},
        {"webhook-allow", required_argument, NULL, 'a'},
        {"webhook-deny", required_argument, NULL, 'k'},
        {"print-routes", no_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    o->listen = DROVER_DEFAULT_LISTEN;
    o->heartbeat_s = PROTO_HEARTBEAT_S_DEFAULT;
    o->lost_after_s = PROTO_LOST_AFTER_S_DEFAULT;
    o->agent_retention_ms = 24LL * 3600 * 1000;
    o->deadline_grace_s = LEASE_DEADLINE_GRACE_S;
    o->upload_idle_s = 120;
    o->events_keep = 1000000;
    o->header_timeout_s = SERVER_HEADER_TIMEOUT_S;
    o->idle_timeout_s = SERVER_IDLE_TIMEOUT_S;
    o->trigger_scan_s = 10;
    struct err ne = ERR_INIT;
    if (netmask_list_parse("0.0.0.0/0,::/0", "--webhook-allow", &o->webhook_allow, &ne) ||
        netmask_list_parse(SERVER_WEBHOOK_DENY, "--webhook-deny", &o->webhook_deny, &ne))
        die("%s", ne.msg);
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': o->listen = optarg; break;
        case 'd': free(o->data); o->data = xstrdup(optarg); break;
        case 'D': free(o->db); o->db = xstrdup(optarg); break;
        case 's':
            if (strcmp(optarg, "full") && strcmp(optarg, "normal")) {
                fprintf(stderr, "drover %s: --sync must be full or normal, not '%s'\n", argv[0],
                        optarg);
                return 2;
            }
            o->sync_full = !strcmp(optarg, "full");
            break;
        case 'L':
            if ((log_level_current = log_level_parse(optarg)) < 0) {
                fprintf(stderr, "drover %s: --log-level must be error, warn, info or debug\n",
                        argv[0]);
                return 2;
            }
            break;
        case 'F':
            if (strcmp(optarg, "text") && strcmp(optarg, "json")) {
                fprintf(stderr, "drover %s: --log-format must be text or json\n", argv[0]);
                return 2;
            }
            log_set_json(!strcmp(optarg, "json"));
            break;
        case 'M':
        case 'T':
        case 'I':
            if (conn_opt_parse(argv[0], c, optarg, o))
                return 2;
            break;
        case 'A':
        case 'H':
        case 'U':
        case 'S':
        case 'G': {
            char *end;
            long v = strtol(optarg, &end, 10);
            const char *name = c == 'A'   ? "lost-after"
                               : c == 'H' ? "heartbeat"
                               : c == 'U' ? "upload-idle"
                               : c == 'S' ? "trigger-scan"
                                          : "deadline-grace";
            if (*end || end == optarg || v < 1 || v > 3600) {
                fprintf(stderr, "drover %s: --%s must be a number of seconds (1-3600)\n", argv[0],
                        name);
                return 2;
            }
            *(c == 'A'   ? &o->lost_after_s
              : c == 'H' ? &o->heartbeat_s
              : c == 'U' ? &o->upload_idle_s
              : c == 'S' ? &o->trigger_scan_s
                         : &o->deadline_grace_s) = (int)v;
            break;
        }
        case 'E': {
            char *end;
            long long v = strtoll(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > 1000000000) {
                fprintf(stderr, "drover %s: --events-keep must be a number of events "
                                "(1-1000000000)\n", argv[0]);
                return 2;
            }
            o->events_keep = v;
            break;
        }
        case 'B': free(o->blobs); o->blobs = xstrdup(optarg); break;
        case 'P':
            if (strncmp(optarg, "http://", 7) && strncmp(optarg, "https://", 8)) {
                fprintf(stderr, "drover %s: --public-url must start with http:// or https://\n",
                        argv[0]);
                return 2;
            }
            free(o->public_url);
            o->public_url = xstrdup(optarg);
            break;
        case 'C': free(o->tls_cert); o->tls_cert = xstrdup(optarg); break;
        case 'K': free(o->tls_key); o->tls_key = xstrdup(optarg); break;
        case 'r':
            if (retention_duration_parse(optarg, &o->retention_ms)) {
                fprintf(stderr, "drover %s: --retention must be N, Ns, Nm, Nh or Nd (at most "
                                "ten years), not '%s'\n", argv[0], optarg);
                return 2;
            }
            break;
        case 'y':
            if (retention_duration_parse(optarg, &o->agent_retention_ms)) {
                fprintf(stderr, "drover %s: --agent-retention must be N, Ns, Nm, Nh or Nd (at "
                                "most ten years), not '%s'\n", argv[0], optarg);
                return 2;
            }
            break;
        case 'a':
        case 'k':
            if (netmask_list_parse(optarg, c == 'a' ? "--webhook-allow" : "--webhook-deny",
                                   c == 'a' ? &o->webhook_allow : &o->webhook_deny, &ne)) {
                fprintf(stderr, "drover %s: %s\n", argv[0], ne.msg);
                return 2;
            }
            break;
        case 'q':
            if (retention_queue_opt_check(argv[0], optarg))
                return 2;
            o->queue_retention = xrealloc(o->queue_retention,
                                          (o->nqueue_retention + 1) * sizeof(char *));
            o->queue_retention[o->nqueue_retention++] = xstrdup(optarg);
            break;
        case 'w': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > 3600) {
                fprintf(stderr, "drover %s: --retention-sweep must be a number of seconds "
                                "(1-3600)\n", argv[0]);
                return 2;
            }
            o->retention_sweep_s = (int)v;
            break;
        }
        case 'x':
        case 'X': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 0 || v > TENANT_LIMIT_MAX) {
                fprintf(stderr, "drover %s: --%s must be a number of jobs (0-%d; 0: no limit)\n",
                        argv[0], c == 'x' ? "tenant-max-running" : "tenant-max-queued",
                        TENANT_LIMIT_MAX);
                return 2;
            }
            *(c == 'x' ? &o->tenant_max_running : &o->tenant_max_queued) = (int)v;
            break;
        }
        case 'R': print_routes(); return -1;
        case 'h': usage(stdout); return -1;
        default: /* `drover dev` passes its server options here and has a usage of its own */
            if (c == ':')
                fprintf(stderr, "drover %s: option '%s' needs a value\n", argv[0],
                        argv[optind - 1]);
            else
                fprintf(stderr, "drover %s: unknown option '%s'\n", argv[0], argv[optind - 1]);
            if (!strcmp(argv[0], "server")) usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "drover %s: unexpected argument '%s'\n", argv[0], argv[optind]);
        return 2;
    }
    if (!o->tls_cert != !o->tls_key) {
        fprintf(stderr, "drover %s: --tls-cert and --tls-key go together\n", argv[0]);
        return 2;
    }
    if (o->lost_after_s <= o->heartbeat_s) {
        fprintf(stderr, "drover %s: --lost-after (%d s) must be longer than --heartbeat (%d s)\n",
                argv[0], o->lost_after_s, o->heartbeat_s);
        return 2;
    }
    if (!o->data)
        o->data = config_default_data_dir();
    if (!o->db)
        o->db = xasprintf("sqlite:%s/drover.db", o->data);
    if (!o->blobs)
        o->blobs = xasprintf("fs:%s/blobs", o->data);
    int port;
    char host[256];
    if (split_listen(o->listen, host, sizeof(host), &port)) {
        fprintf(stderr, "drover %s: --listen must be ADDR:PORT, not '%s'\n", argv[0], o->listen);
        return 2;
    }
    return 0;
}

void server_opts_release(struct server_opts *o)
{
    free(o->data);
    free(o->db);
    free(o->blobs);
    free(o->public_url);
    free(o->tls_cert);
    free(o->tls_key);
    for (size_t i = 0; i < o->nqueue_retention; i++)
        free(o->queue_retention[i]);
    free(o->queue_retention);
    netmask_list_release(&o->webhook_allow);
    netmask_list_release(&o->webhook_deny);
    memset(o, 0, sizeof(*o));
}

/*
 * A server secret: 32 random bytes made at the first start and kept in the
 * store under `key` (hex), so that what it signs outlives a restart (and is
 * the same on every server sharing the store). *hex_out (may be NULL) gets
 * the hex, the caller's.
 */
static int secret_load(struct server *s, const char *key, unsigned char out[32], char **hex_out,
                       struct err *e)
{
    char *hex = NULL;
    int rc = store_meta_get(s->reads, key, &hex, e);
    if (rc == ERR_NOTFOUND) {
        err_clear(e);
        unsigned char fresh[32];
        if (RAND_bytes(fresh, sizeof(fresh)) != 1)
            return err_set(e, ERR_IO, "cannot draw random bytes for the %s", key);
        hex = xmalloc(2 * sizeof(fresh) + 1);
        for (size_t i = 0; i < sizeof(fresh); i++)
            sprintf(hex + 2 * i, "%02x", fresh[i]);
        rc = store_meta_set(s->reads, key, hex, e);
    }
    if (!rc && (!hex || strlen(hex) != 64))
        rc = err_set(e, ERR_IO, "the stored %s is damaged", key);
    for (size_t i = 0; !rc && i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            rc = err_set(e, ERR_IO, "the stored %s is damaged", key);
        out[i] = (unsigned char)v;
    }
    if (!rc && hex_out)
        *hex_out = hex;
    else
        free(hex);
    return rc;
}

/*
 * The webhook secret, which receivers check signatures with: in the store,
 * and in DATA/webhook.secret (0600) for the operator to hand out. The key of
 * the HMAC is the file's text (64 hex digits) as it is, the easiest for a
 * receiver to use.
 */
static int webhooks_open(struct server *s, const struct server_opts *o, struct err *e)
{
    unsigned char key[32];
    char *hex = NULL;
    int rc = secret_load(s, "webhook_secret", key, &hex, e);
    if (rc)
        return rc;
    char *path = xasprintf("%s/%s", o->data, DROVER_WEBHOOK_SECRET_FILE);
    char *old = NULL;
    struct err fe = ERR_INIT;
    if (fs_read_secret(path, &old, &fe) || strcmp(old, hex))
        rc = fs_write_secret(path, hex, e);
    free(old);
    free(path);
    if (!rc)
        rc = webhooks_start(s, o->db, (const unsigned char *)hex, strlen(hex), &o->webhook_allow,
                            &o->webhook_deny, &s->webhooks, e);
    explicit_bzero(hex, strlen(hex));
    free(hex);
    return rc;
}

/* After every committed batch: followers of the stream, and deliveries when it queued any. */
static void on_batch(void *arg, bool webhooks)
{
    struct server *s = arg;
    server_changed_jobs(s); /* a workflow's nodes queued or cancelled by the store */
    events_notify(s->events);
    if (webhooks) webhooks_kick(s->webhooks);
}

/*
 * Process-wide settings of a server. A file size limit (RLIMIT_FSIZE) makes a
 * write that crosses it fail with EFBIG, answered 507 like a full disk,
 * instead of killing the process with SIGXFSZ. The descriptor limit is raised
 * to its hard limit: each connection takes one. Returns the limit.
 */
static long server_process_limits(void)
{
    signal(SIGXFSZ, SIG_IGN);
    return fd_limit_raise();
}

/*
 * The connection guards (http/upload.h, http/accept.h): the cap (by default
 * half the descriptors left after a reserve for the store, objects being
 * read or written and lingering closes), timeouts, the memory for bodies,
 * the router's check of heads, and a listener that pauses when descriptors
 * run out.
 */
static void server_guard_connections(struct server *s, const struct server_opts *o, long nofile)
{
    long max = o->max_connections;
    if (!max) {
        /* behind a TLS front, a connection takes three descriptors more (http/tls.h) */
        max = (nofile - 64) / (s->tls ? 4 : 2);
        max = max < 16 ? 16 : max > SERVER_MAX_CONNS ? SERVER_MAX_CONNS : max;
    }
    struct upload_limits lim = {
        .max_conns = (int)max,
        .header_timeout_s = o->header_timeout_s,
        .idle_timeout_s = o->idle_timeout_s,
        .body_memory = SERVER_BODY_MEMORY,
    };
    uploads_set_limits(s->uploads, &lim, router_check_head, s->router);
    s->accept_guard = accept_guard_new(evhttp_bound_socket_get_listener(s->listener));
    log_debug("at most %ld connections (descriptor limit %ld)", max, nofile);
}

#define DRAIN_TICK_MS 20
#define DRAIN_MAX_TICKS 500 /* 10 s */

/* Calls the shutdown's callback once every write in flight has been committed and answered. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    if ((commit_idle(s->commit) && offload_idle(s->offload)) ||
        ++s->drain_ticks > DRAIN_MAX_TICKS) {
        s->on_stopped(s->on_stopped_arg);
        return;
    }
    struct timeval tv = {0, DRAIN_TICK_MS * 1000};
    evtimer_add(s->drain_timer, &tv);
}

/* ---- the fleet's dependencies (fleet.h): requests are http_req, the clock is the wall's ---- */

static int64_t fleet_clock(void *arg)
{
    (void)arg;
    return time_now_ms();
}

static void fleet_reply(void *arg, void *req, char *body, size_t len)
{
    struct http_req *r = req;
    r->on_gone = NULL; /* a parked poll's */
    r->owner = NULL;
    http_reply_bytes(r, 200, "application/json", body, len);
    free(body);
}

static void fleet_reply_error(void *arg, void *req, const struct err *e)
{
    struct http_req *r = req;
    r->on_gone = NULL;
    r->owner = NULL;
    http_reply_err(r, e);
}

static void fleet_job_changed_cb(void *arg, const struct job *j)
{
    struct server *s = arg;
    if (job_state_terminal(j->state)) waiters_wake(s->waiters, j);
    logs_notify(s->logs, j->id);
}

/*
 * The leader lease (store.h, store_leader_take), taken and renewed through the committer
 * every LEADER_RENEW_MS for LEADER_TTL_MS: when the leader dies, another server takes the
 * lease over once it lapsed. A leader whose renewals stop succeeding steps down a renewal
 * before its lease lapses, so two servers never both act as leader (given clocks that agree
 * to well within LEADER_RENEW_MS).
 */
#define LEADER_NAME "periodic"
#define LEADER_TTL_MS 10000
#define LEADER_RENEW_MS 2000

struct leader_op {
    struct server *s;
    int64_t now_ms;
    bool got;
};

static int leader_write(struct store *st, void *arg, struct err *e)
{
    struct leader_op *op = arg;
    return store_leader_take(st, LEADER_NAME, op->s->leader_holder, op->now_ms, LEADER_TTL_MS,
                             &op->got, e);
}

static void leader_set(struct server *s, bool leader, const char *why)
{
    if (leader == s->leader) return;
    s->leader = leader;
    webhooks_set_paused(s->webhooks, !leader);
    if (leader)
        log_info("this server (%s) is the leader now: it runs the periodic work (lost agents, "
                 "deadlines, event pruning, webhook deliveries, retention)",
                 s->leader_holder);
    else
        log_warn("this server (%s) is no longer the leader: %s", s->leader_holder, why);
}

static void leader_done(void *arg, int rc, const struct err *e)
{
    struct leader_op *op = arg;
    struct server *s = op->s;
    s->leader_busy = false;
    if (s->shutting_down) {
        /* let go in server_shutdown */
    } else if (rc) {
        log_repeat_fail(&s->leader_log, time_now_ms(), LOG_WARN,
                        "cannot renew the leader lease: %s", e->msg);
    } else {
        log_repeat_ok(&s->leader_log, "renewing the leader lease");
        if (op->got) {
            s->leader_until_ms = op->now_ms + LEADER_TTL_MS;
            leader_set(s, true, NULL);
        } else {
            leader_set(s, false, "another server holds the lease");
        }
    }
    free(op);
}

static void leader_check(struct server *s, int64_t now)
{
    if (s->leader && now >= s->leader_until_ms - LEADER_RENEW_MS)
        leader_set(s, false, "its lease could not be renewed in time");
    if (s->leader_busy || now < s->leader_next_ms) return;
    s->leader_busy = true;
    s->leader_next_ms = now + LEADER_RENEW_MS;
    struct leader_op *op = xcalloc(1, sizeof(*op));
    op->s = s;
    op->now_ms = now;
    commit_submit(s->commit, leader_write, leader_done, op);
}

static int leader_release_write(struct store *st, void *arg, struct err *e)
{
    struct server *s = arg;
    return store_leader_release(st, LEADER_NAME, s->leader_holder, e);
}

static void leader_release_done(void *arg, int rc, const struct err *e)
{
    (void)arg;
    if (rc) log_warn("cannot give up the leader lease: %s", e->msg);
}

/* A delayed job due before the next tick is queued at its time, not up to a second late. */
static void arm_due(struct server *s, int64_t now)
{
    int64_t due = sched_next_due(s->sched);
    if (due < 0 || due - now >= 1000) return;
    int64_t ms = due > now ? due - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(s->due, &tv);
}

static void on_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct server *s = arg;
    if (s->shutting_down) return;
    int64_t now = time_now_ms();
    fleet_tick_ready(s->fleet, now);
    arm_due(s, now);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct server *s = arg;
    if (s->shutting_down) return;
    int64_t now = time_now_ms();
    if (s->elect) leader_check(s, now);
    sync_tick(s->sync); /* before the leader judges liveness: every server's last_seen */
    if (s->leader)
        fleet_tick(s->fleet, now);
    else
        fleet_tick_ready(s->fleet, now);
    if (s->leader) triggers_tick(s->triggers, now);
    arm_due(s, now);
}

static int start(struct server *s, const struct server_opts *o, struct event_base *base,
                 struct err *e)
{
    struct store *writer = NULL;
    char host[256];
    int port, rc;
    memset(s, 0, sizeof(*s));
    s->data_lock_fd = -1;
    s->listen_fd = -1;
    s->base = base;
    split_listen(o->listen, host, sizeof(host), &port);
    if ((rc = server_bind(s, o->listen, host, port, e)) ||
        (o->tls_cert && (rc = tls_front_new(base, o->tls_cert, o->tls_key, &s->tls, e))))
        return rc;
    s->data_made = first_missing(o->data);
    long nofile = server_process_limits();
    s->started_at_ms = time_now_ms();
    s->data_dir = xstrdup(o->data);
    s->heartbeat_s = o->heartbeat_s;
    s->lost_after_s = o->lost_after_s;
    s->deadline_grace_s = o->deadline_grace_s;
    /* the writer announces its commits to other servers (a shared store; else ignored) */
    struct store_opts so = {.sync_full = o->sync_full},
                      wo = {.sync_full = o->sync_full, .notify = true, .checkpointer = true};
    if ((rc = datadir_open(o->data, &s->data_lock_fd, e)) ||
        /* the object store's settings first: a start refused for them writes nothing (an
           admin token in a shared database whose only copy would go with the data folder) */
        (rc = blob_store_open(o->blobs, &s->blobs, e)) ||
        (rc = store_open(o->db, &wo, &writer, e)) ||
        /* one server per store, unless it is shared (issue 11) */
        (!(store_caps(writer) & STORE_CAP_SHARED) && (rc = store_claim(writer, e))) ||
        (rc = store_open(o->db, &so, &s->reads, e)) ||
        (rc = auth_bootstrap(s, e)) ||
        (rc = secret_load(s, "presign_secret", s->presign_secret, NULL, e))) {
        store_close(writer);
        return rc;
    }
    s->elect = (store_caps(writer) & STORE_CAP_LEADER) != 0;
    s->leader = !s->elect;
    if (s->elect) {
        char hostname[256] = "";
        gethostname(hostname, sizeof(hostname) - 1);
        char *abs = realpath(o->data, NULL);
        s->leader_holder = xasprintf("%s:%s", hostname, abs ? abs : o->data);
        free(abs);
    }
    s->public_url = o->public_url ? xstrdup(o->public_url) : NULL;
    s->http = evhttp_new(base);
    s->uploads = uploads_new(s->http, "/v1/blobs/", o->upload_idle_s);
    s->offload = offload_new(base);
    s->commit = commit_new(base, writer);
    s->waiters = waiters_new(s);
    s->logs = logs_new(s);
    s->events = events_new(s, o->events_keep);
    commit_on_batch(s->commit, on_batch, s);
    if ((rc = webhooks_open(s, o, e)))
        return rc;
    webhooks_set_paused(s->webhooks, !s->leader); /* until the lease is this server's */
    s->sched = sched_new();
    s->metrics = metrics_new();
    struct fleet_deps fd = {
        .base = base,
        .commit = s->commit,
        .reads = s->reads,
        .sched = s->sched,
        .metrics = s->metrics,
        .lost_after_s = s->lost_after_s,
        .deadline_grace_s = s->deadline_grace_s,
        .agent_retention_ms = o->agent_retention_ms,
        .shared = (store_caps(s->reads) & STORE_CAP_SHARED) != 0,
        .now_ms = fleet_clock,
        .reply = fleet_reply,
        .reply_error = fleet_reply_error,
        .job_changed = fleet_job_changed_cb,
        .arg = s,
    };
    s->fleet = fleet_new(&fd);
    /* before the load: what others commit from now on is applied (again, harmlessly) */
    if ((store_caps(s->reads) & STORE_CAP_SHARED) && (rc = sync_new(s, o->db, &s->sync, e)))
        return rc;
    if ((rc = tenants_open(s, o->tenant_max_running, o->tenant_max_queued, e)) ||
        (rc = queues_reload(s, e)) || (rc = fleet_load(s->fleet, e)))
        return rc;
    struct retention_opts ro = {.default_ms = o->retention_ms,
                                .queues = o->queue_retention,
                                .nqueues = o->nqueue_retention,
                                .sweep_s = o->retention_sweep_s};
    s->retention = retention_new(s, o->db, &ro);
    s->triggers = triggers_new(s, o->trigger_scan_s);
    s->tick = event_new(base, -1, EV_PERSIST, on_tick, s);
    s->due = evtimer_new(base, on_due, s);
    struct timeval second = {1, 0};
    event_add(s->tick, &second);
    if (s->elect) leader_check(s, time_now_ms()); /* at once, not a second later */
    s->router = router_new(s->http, server_routes, server_nroutes, auth_check, s);
    router_set_uploads(s->router, s->uploads);
    router_set_cookie_auth(s->router, session_auth);
    evhttp_set_timeout(s->http, 3700); /* longer than the longest wait */
    s->warnings = json_array();
    if (o->tls_cert) {
        if ((rc = server_listen_tls(s, o, e))) return rc;
    } else {
        if ((rc = server_listen(s, o, e))) return rc;
        /* Accepted sockets inherit TCP_NODELAY: answers are not held back by Nagle's. */
        int one = 1;
        setsockopt(evhttp_bound_socket_get_fd(s->listener), IPPROTO_TCP, TCP_NODELAY, &one,
                   sizeof(one));
        if (!http_host_is_loopback(host)) {
            char *w = xasprintf("serving plain HTTP on %s, which is not loopback: tokens and data "
                                "cross the network unencrypted (use --tls-cert and --tls-key)",
                                o->listen);
            log_warn("%s", w);
            json_array_append_new(s->warnings, json_string(w));
            free(w);
        }
    }
    server_guard_connections(s, o, nofile);
    char db[512];
    store_uri_redact(o->db, db, sizeof(db));
    log_info("drover %s serving on %s://%s (store %s%s, objects %s)", DROVER_VERSION,
             s->tls ? "https" : "http", s->listen, db, o->sync_full ? ", sync full" : "",
             o->blobs);
    return 0;
}

/*
 * A remote object store (S3) is asked once at start, off the loop, whether it answers: its
 * open sends nothing, and a wrong endpoint, bucket or key would otherwise first show in a
 * user's failed upload. The start goes on either way (the service may come up later).
 */
struct objects_probe {
    struct blob_store *blobs;
    char *uri;
    struct err e;
    int rc;
};

static void objects_probe_work(void *arg)
{
    struct objects_probe *p = arg;
    struct blob_list l = {0};
    p->rc = blob_buckets(p->blobs, NULL, 1, &l, &p->e);
    blob_list_release(&l);
}

static void objects_probe_done(void *arg)
{
    struct objects_probe *p = arg;
    if (p->rc)
        log_warn("the object store %s does not answer: %s (uploads, downloads and jobs' "
                 "inputs and outputs fail until it does)",
                 p->uri, p->e.msg);
    else
        log_info("the object store %s answers", p->uri);
    free(p->uri);
    free(p);
}

int server_start(struct server *s, const struct server_opts *o, struct event_base *base,
                 struct err *e)
{
    int rc = start(s, o, base, e);
    if (!rc && (blob_caps(s->blobs) & BLOB_CAP_REMOTE)) {
        struct objects_probe *p = xcalloc(1, sizeof(*p));
        *p = (struct objects_probe){.blobs = s->blobs, .uri = xstrdup(o->blobs),
                                       .e = ERR_INIT};
        offload_run(s->offload, objects_probe_work, objects_probe_done, p);
    }
    s->start_failed = rc != 0;
    return rc;
}

void server_shutdown(struct server *s, void (*stopped)(void *arg), void *arg)
{
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    sync_stop(s->sync);
    s->on_stopped = stopped;
    s->on_stopped_arg = arg;
    router_set_draining(s->router, true);
    accept_guard_free(s->accept_guard);
    s->accept_guard = NULL;
    accept_guard_free(s->tls_guard);
    s->tls_guard = NULL;
    tls_front_stop(s->tls); /* connections already open go on */
    if (s->listener)
        evhttp_del_accept_socket(s->http, s->listener);
    s->listener = NULL;
    waiters_free(s->waiters);
    s->waiters = NULL;
    logs_free(s->logs);
    s->logs = NULL;
    events_free(s->events);
    s->events = NULL;
    webhooks_stop(s->webhooks); /* what it was sending goes out again after a restart */
    if (s->elect && s->leader) { /* another server need not wait for the lease to lapse */
        s->leader = false;
        commit_submit(s->commit, leader_release_write, leader_release_done, s);
    }
    /* Answers the agents' parked polls; writes in flight still need the fleet. */
    fleet_stop(s->fleet);
    s->drain_timer = evtimer_new(s->base, on_drain_tick, s);
    on_drain_tick(-1, 0, s);
}

void server_release(struct server *s)
{
    events_free(s->events);
    s->events = NULL;
    webhooks_stop(s->webhooks);
    /* Writes still queued are committed and answered before the loop's last turn. */
    commit_free(s->commit);
    webhooks_free(s->webhooks); /* after the committer, which may still record its outcomes */
    s->webhooks = NULL;
    if (s->base)
        event_base_loop(s->base, EVLOOP_NONBLOCK);
    waiters_free(s->waiters);
    logs_free(s->logs);
    sync_free(s->sync);
    fleet_free(s->fleet);
    sched_free(s->sched);
    tenants_free(s->tenants);
    metrics_free(s->metrics);
    if (s->tick)
        event_free(s->tick);
    if (s->due)
        event_free(s->due);
    offload_free(s->offload); /* uploads being committed are answered */
    retention_free(s->retention); /* after its sweeps and lookups on the workers */
    triggers_free(s->triggers);   /* after the committer's and the workers' callbacks */
    if (s->router)
        router_set_uploads(s->router, NULL);
    accept_guard_free(s->accept_guard);
    accept_guard_free(s->tls_guard);
    uploads_free(s->uploads); /* uploads still arriving are answered */
    router_free(s->router);
    auth_cache_free(s);
    if (s->http)
        evhttp_free(s->http);
    tls_front_free(s->tls); /* after evhttp, which has closed its side of each connection */
    free(s->listen);
    free(s->leader_holder);
    json_decref(s->warnings);
    blob_store_close(s->blobs);
    free(s->public_url);
    if (s->drain_timer)
        event_free(s->drain_timer);
    store_close(s->reads);
    if (s->listen_fd >= 0) close(s->listen_fd);
    /* a start that failed leaves no half-made data folder: one it made goes (while the folder
       is still locked: it is this server's) */
    if (s->start_failed && s->data_made && s->data_lock_fd >= 0) {
        log_info("removing the data folder '%s' this failed start made", s->data_made);
        nftw(s->data_made, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    }
    free(s->data_made);
    free(s->data_dir);
    if (s->data_lock_fd >= 0)
        close(s->data_lock_fd); /* the data folder is free for another server */
    memset(s, 0, sizeof(*s));
}

static void exit_loop(void *arg)
{
    /* One more short turn lets the last answers reach their sockets. */
    struct timeval flush = {0, 100 * 1000};
    event_base_loopexit(arg, &flush);
}

static void on_ready(evutil_socket_t fd, short what, void *listen)
{
    sdnotify_ready("serving on http://%s", (const char *)listen);
}

/* SIGINT / SIGTERM: refuse new work, answer the long-polls, finish the writes, exit. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    if (!s->shutting_down) {
        log_info("received %s, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
        sdnotify_stopping("shutting down: finishing the writes in flight");
    }
    server_shutdown(s, exit_loop, s->base);
}

int cmd_server(int argc, char **argv)
{
    struct server_opts o = {0};
    struct server s = {0};
    struct err e = ERR_INIT;
    int rc = server_opts_parse(argc, argv, &o);
    if (rc) {
        server_opts_release(&o);
        return rc < 0 ? 0 : rc;
    }
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    if (server_start(&s, &o, base, &e)) {
        fprintf(stderr, "drover server: %s\n", e.msg);
        rc = 1;
    } else {
        struct event *sigint = evsignal_new(base, SIGINT, on_signal, &s);
        struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, &s);
        event_add(sigint, NULL);
        event_add(sigterm, NULL);
        /* READY=1 for systemd from the loop's first turn: the store is open, the socket listens
           and requests are being answered */
        struct timeval now = {0, 0};
        event_base_once(base, -1, EV_TIMEOUT, on_ready, (void *)o.listen, &now);
        event_base_dispatch(base);
        event_free(sigint);
        event_free(sigterm);
    }
    server_release(&s);
    event_base_free(base);
    server_opts_release(&o);
    return rc;
}
