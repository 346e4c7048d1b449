/*
 * server.c - `drover server`: option parsing, startup, the event loop and
 * an orderly shutdown on SIGINT / SIGTERM.
 *
 * Startup order matters: the store is opened (and migrated) before the
 * admin token is made, and the listener is bound last, so that a server
 * answering /healthz is ready for everything.
 */
#include <errno.h>
#include <event2/thread.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "commands.h"
#include "common/config.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "server/fleet.h"
#include "server/sched.h"
#include "server/server.h"

struct server_opts {
    const char *listen;
    char *data;
    char *db;
    bool sync_full;
    int heartbeat_s;
    int lost_after_s;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: drover server [--listen ADDR:PORT] [--data DIR] [--db sqlite:PATH]\n"
            "                     [--sync full|normal] [--log-level LEVEL] [--log-format text|json]\n"
            "\n"
            "  --listen ADDR:PORT   where to serve the API (default %s)\n"
            "  --data DIR           data folder: store, admin token (default $DROVER_DATA or\n"
            "                       ~/.local/share/drover)\n"
            "  --db URI             job store (default sqlite:DIR/drover.db)\n"
            "  --sync full|normal   full: fsync every commit (survives power loss);\n"
            "                       normal (default): survives a crash of the server\n"
            "  --log-level L        error, warn, info (default), debug\n"
            "  --heartbeat S        how often agents call in (default 5 s)\n"
            "  --lost-after S       an agent silent this long is lost (default 15 s)\n"
            "  --log-format F       text (default) or json\n",
            DROVER_DEFAULT_LISTEN);
}

static int parse_opts(int argc, char **argv, struct server_opts *o)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'}, {"data", required_argument, NULL, 'd'},
        {"db", required_argument, NULL, 'D'},     {"sync", required_argument, NULL, 's'},
        {"log-level", required_argument, NULL, 'L'},
        {"log-format", required_argument, NULL, 'F'},
        {"blobs", required_argument, NULL, 'B'},  {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'}, {"lost-after", required_argument, NULL, 'A'},
        {"heartbeat", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    o->listen = DROVER_DEFAULT_LISTEN;
    o->heartbeat_s = 5;
    o->lost_after_s = 15;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': o->listen = optarg; break;
        case 'd': free(o->data); o->data = xstrdup(optarg); break;
        case 'D': free(o->db); o->db = xstrdup(optarg); break;
        case 's':
            if (strcmp(optarg, "full") && strcmp(optarg, "normal")) {
                fprintf(stderr, "drover server: --sync must be full or normal, not '%s'\n", optarg);
                return 2;
            }
            o->sync_full = !strcmp(optarg, "full");
            break;
        case 'L':
            if ((log_level_current = log_level_parse(optarg)) < 0) {
                fprintf(stderr, "drover server: --log-level must be error, warn, info or debug\n");
                return 2;
            }
            break;
        case 'F':
            if (strcmp(optarg, "text") && strcmp(optarg, "json")) {
                fprintf(stderr, "drover server: --log-format must be text or json\n");
                return 2;
            }
            log_set_json(!strcmp(optarg, "json"));
            break;
        case 'A':
        case 'H': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > 3600) {
                fprintf(stderr, "drover server: --%s must be a number of seconds (1-3600)\n",
                        c == 'A' ? "lost-after" : "heartbeat");
                return 2;
            }
            *(c == 'A' ? &o->lost_after_s : &o->heartbeat_s) = (int)v;
            break;
        }
        case 'B': case 'C': case 'K':
            fprintf(stderr, "drover server: --%s is not available in this version yet\n",
                    c == 'B' ? "blobs" : "tls-cert/--tls-key");
            return 2;
        case 'h': usage(stdout); return -1;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "drover server: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o->lost_after_s <= o->heartbeat_s) {
        fprintf(stderr, "drover server: --lost-after (%d s) must be longer than --heartbeat (%d s)\n",
                o->lost_after_s, o->heartbeat_s);
        return 2;
    }
    if (!o->data)
        o->data = config_default_data_dir();
    if (!o->db)
        o->db = xasprintf("sqlite:%s/drover.db", o->data);
    return 0;
}

/* mkdir -p with mode 0700 for the folders it makes. */
static int make_dirs(const char *path, struct err *e)
{
    char *p = xstrdup(path);
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || !*s) {
            char saved = *s;
            *s = '\0';
            if (mkdir(p, 0700) != 0 && errno != EEXIST) {
                rc = err_set(e, ERR_IO, "cannot create folder '%s': %s", p, strerror(errno));
                break;
            }
            *s = saved;
            if (!saved)
                break;
        }
    }
    free(p);
    return rc;
}

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

#define DRAIN_TICK_MS 20
#define DRAIN_MAX_TICKS 500 /* 10 s */

/* Stops the loop once every write in flight has been committed and answered. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    if (commit_idle(s->commit) || ++s->drain_ticks > DRAIN_MAX_TICKS) {
        /* One more short turn lets the last answers reach their sockets. */
        struct timeval flush = {0, 100 * 1000};
        event_base_loopexit(s->base, &flush);
        return;
    }
    struct timeval tv = {0, DRAIN_TICK_MS * 1000};
    evtimer_add(s->drain_timer, &tv);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    if (!s->shutting_down)
        fleet_tick(s->fleet, time_now_ms());
}

/* SIGINT / SIGTERM: refuse new work, answer the long-polls, finish the writes, exit. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    if (s->shutting_down)
        return;
    log_info("received %s, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    s->shutting_down = true;
    router_set_draining(s->router, true);
    if (s->listener)
        evhttp_del_accept_socket(s->http, s->listener);
    s->listener = NULL;
    waiters_free(s->waiters);
    s->waiters = NULL;
    logs_free(s->logs);
    s->logs = NULL;
    fleet_free(s->fleet); /* answers the agents' parked polls */
    s->fleet = NULL;
    s->drain_timer = evtimer_new(s->base, on_drain_tick, s);
    on_drain_tick(-1, 0, s);
}

int cmd_server(int argc, char **argv)
{
    struct server_opts o = {0};
    struct server s = {0};
    struct err e = ERR_INIT;
    struct store *writer = NULL;
    struct event *sigint = NULL, *sigterm = NULL;
    int rc = parse_opts(argc, argv, &o);
    if (rc)
        goto out_opts;

    signal(SIGPIPE, SIG_IGN);
    /*
     * A batch of 1,000 specs makes and frees tens of thousands of small JSON
     * values; glibc's default trimming and mmap thresholds made it give memory
     * back and take it again at every batch (malloc_consolidate in profiles).
     */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_MMAP_THRESHOLD, 8 << 20);
    s.started_at_ms = time_now_ms();
    s.data_dir = o.data;
    struct store_opts so = {.sync_full = o.sync_full};
    if (make_dirs(o.data, &e) || store_open(o.db, &so, &s.reads, &e) ||
        store_open(o.db, &so, &writer, &e) || auth_bootstrap(&s, &e)) {
        fprintf(stderr, "drover server: %s\n", e.msg);
        rc = 1;
        goto out;
    }

    char host[256];
    int port;
    if (split_listen(o.listen, host, sizeof(host), &port)) {
        fprintf(stderr, "drover server: --listen must be ADDR:PORT, not '%s'\n", o.listen);
        rc = 2;
        goto out;
    }
    s.base = event_base_new();
    s.http = evhttp_new(s.base);
    s.commit = commit_new(s.base, writer);
    writer = NULL;
    s.waiters = waiters_new(&s);
    s.logs = logs_new(&s);
    s.sched = sched_new();
    s.fleet = fleet_new(&s);
    s.heartbeat_s = o.heartbeat_s;
    s.lost_after_s = o.lost_after_s;
    if (fleet_load(s.fleet, &e)) {
        fprintf(stderr, "drover server: cannot load the jobs in flight: %s\n", e.msg);
        rc = 1;
        goto out;
    }
    s.tick = event_new(s.base, -1, EV_PERSIST, on_tick, &s);
    struct timeval second = {1, 0};
    event_add(s.tick, &second);
    s.router = router_new(s.http, server_routes, server_nroutes, auth_check, &s);
    evhttp_set_timeout(s.http, 3700); /* longer than the longest wait */
    if (!(s.listener = evhttp_bind_socket_with_handle(s.http, host, (ev_uint16_t)port))) {
        fprintf(stderr, "drover server: cannot listen on %s: %s\n", o.listen, strerror(errno));
        rc = 1;
        goto out;
    }
    /* Accepted sockets inherit TCP_NODELAY: answers are not held back by Nagle's algorithm. */
    int one = 1;
    setsockopt(evhttp_bound_socket_get_fd(s.listener), IPPROTO_TCP, TCP_NODELAY, &one,
               sizeof(one));
    sigint = evsignal_new(s.base, SIGINT, on_signal, &s);
    sigterm = evsignal_new(s.base, SIGTERM, on_signal, &s);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    log_info("drover %s serving on http://%s (store %s%s)", DROVER_VERSION, o.listen, o.db,
             o.sync_full ? ", sync full" : "");
    event_base_dispatch(s.base);

out:
    /* Writes still queued are committed and answered before the loop's last turn. */
    commit_free(s.commit);
    if (s.base)
        event_base_loop(s.base, EVLOOP_NONBLOCK);
    waiters_free(s.waiters);
    logs_free(s.logs);
    fleet_free(s.fleet);
    sched_free(s.sched);
    if (s.tick)
        event_free(s.tick);
    router_free(s.router);
    auth_cache_free(&s);
    if (s.http)
        evhttp_free(s.http);
    if (sigint)
        event_free(sigint);
    if (sigterm)
        event_free(sigterm);
    if (s.drain_timer)
        event_free(s.drain_timer);
    if (s.base)
        event_base_free(s.base);
    store_close(writer);
    store_close(s.reads);
out_opts:
    free(o.data);
    free(o.db);
    return rc < 0 ? 0 : rc;
}
