/*
 * dev.c - `drover dev`: a server and one agent in one process, on loopback.
 *
 * The server runs on its own event loop in a second thread; the agent runs
 * `drover agent`'s own code on the main thread, which also takes the
 * signals. On SIGINT/SIGTERM the agent drains (its running jobs finish and
 * are reported), leaves and returns; then the server is asked, from this
 * thread, to shut down in order, and its thread is joined.
 */
#include <event2/thread.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "commands.h"
#include "common/config.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "server/server.h"

struct dev {
    struct server s;
    struct event_base *base;
    struct event *stop;
    pthread_t thread;
};

static void exit_loop(void *arg)
{
    struct timeval flush = {0, 100 * 1000};
    event_base_loopexit(arg, &flush);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct dev *d = arg;
    server_shutdown(&d->s, exit_loop, d->base);
}

static void *server_thread(void *arg)
{
    struct dev *d = arg; /* started with every signal blocked: they are the agent's */
    pthread_setname_np(pthread_self(), "drover-server");
    event_base_dispatch(d->base);
    return NULL;
}

/* What a usage error shows of the usage, after its line. */
static const char usage_head[] =
    "usage: drover dev [server options] [--queues Q1,Q2] [--slots N] [--labels K=V,...]\n"
    "                  [--prefetch N] [--allow-path DIR]... [--keep-work] [--runtime R,...]\n"
    "                  [--engine-opt ARG]...\n";

static void usage(FILE *f)
{
    fputs(usage_head, f);
    fprintf(f,
            "\n"
            "A server (as `drover server`) and one agent named 'dev' (as `drover agent`)\n"
            "in one process, on loopback: everything needed to try drover out. The\n"
            "agent's work folder is DATA/agent. Ctrl-C drains the agent, then stops.\n"
            "\n"
            "Every option of `drover server` is taken (see `drover server --help`), e.g.\n"
            "  --listen ADDR:PORT   where to serve (default %s)\n"
            "  --data DIR           data folder (default $DROVER_DATA or ~/.local/share/drover)\n"
            "  --blobs URI          object store (default fs:DATA/blobs)\n"
            "  --sync full|normal   fsync every commit, or not (default normal)\n"
            "  --log-level L        error, warn, info (default), debug\n"
            "and these of `drover agent` for its agent:\n"
            "  --queues Q1,Q2       the queues it serves (default: default)\n"
            "  --slots N            jobs it runs at once, 1-1024 (default: the number of CPUs)\n"
            "  --labels K=V,...     its labels, matched against the `requires` of jobs\n"
            "  --prefetch N         leases held beyond its slots while its jobs are short\n"
            "                       (default: 4 times --slots; 0: none)\n"
            "  --allow-path DIR     a folder file:// URIs may name (repeatable)\n"
            "  --keep-work          keep each job's work folder after it ends\n"
            "  --cache-dir DIR      its input cache (default DATA/agent/cache)\n"
            "  --cache-size SIZE    the cache's bound, e.g. 10G (default 10G; 0: none)\n"
            "  --ca-file FILE       with --tls-cert: the CA its agent verifies the server with\n"
            "                       (default: the system's, $DROVER_CA_FILE)\n"
            "  --limits M           how job resources are enforced: auto, cgroup, rlimit, none\n"
            "  --runtime R,...      native, bwrap, podman, docker (default: native and\n"
            "                       whichever of the others work here)\n"
            "  --engine-opt ARG     an argument for the container engine (repeatable)\n"
            "\n"
            "examples:\n"
            "  drover dev                                   # then, in another terminal:\n"
            "  drover submit --wait -- echo hello\n"
            "  drover dev --listen 127.0.0.1:7443 --tls-cert cert.pem --tls-key key.pem \\\n"
            "             --ca-file ca.pem\n",
            DROVER_DEFAULT_LISTEN);
}

/* The options of `drover agent` that `drover dev` passes to its agent; the rest are the server's.
 */
static const struct {
    const char *name;
    bool value;
} agent_options[] = {
    {"queues", true},     {"slots", true},      {"labels", true},     {"allow-path", true},
    {"keep-work", false}, {"cache-dir", true},  {"cache-size", true}, {"ca-file", true},
    {"limits", true},     {"runtime", true},    {"engine-opt", true}, {"prefetch", true},
};

/* The agent option `arg` ("--name" or "--name=value") is; NULL for any other argument. */
static const char *agent_option(const char *arg, bool *value)
{
    if (strncmp(arg, "--", 2)) return NULL;
    size_t n = strcspn(arg + 2, "=");
    for (size_t i = 0; i < sizeof(agent_options) / sizeof(agent_options[0]); i++) {
        if (strlen(agent_options[i].name) == n && !strncmp(arg + 2, agent_options[i].name, n)) {
            *value = agent_options[i].value && !arg[2 + n]; /* "--name value": one more */
            return agent_options[i].name;
        }
    }
    return NULL;
}

/* After the line that says what is wrong: exit code 2. */
static int usage_error(void)
{
    fprintf(stderr, "%s'drover dev --help' tells more.\n", usage_head);
    return 2;
}

/* The server's URL for its agent: listen's address, or localhost for a certificate on
   127.x (a certificate for this machine names it `localhost`, rarely 127.0.0.1). */
static char *server_url(const struct server_opts *o, const char *listen)
{
    if (o->tls_cert && !strncmp(listen, "127.", 4) && strrchr(listen, ':'))
        return xasprintf("https://localhost%s", strrchr(listen, ':'));
    return xasprintf("%s://%s", o->tls_cert ? "https" : "http", listen);
}

int cmd_dev(int argc, char **argv)
{
    /* argv split in two: the agent's options (above) and the server's, parsed as its own */
    char **sargv = xcalloc((size_t)argc + 1, sizeof(char *));
    char **agent_args = xcalloc((size_t)argc + 1, sizeof(char *));
    int sargc = 0, nagent = 0;
    bool slots_given = false;
    sargv[sargc++] = "dev";
    for (int i = 1; i < argc; i++) {
        bool value = false;
        const char *name = agent_option(argv[i], &value);
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            free(sargv);
            free(agent_args);
            return 0;
        }
        if (!name) {
            sargv[sargc++] = argv[i];
            continue;
        }
        if (value && i + 1 >= argc) {
            fprintf(stderr, "drover dev: option '%s' needs a value\n", argv[i]);
            free(sargv);
            free(agent_args);
            return usage_error();
        }
        slots_given = slots_given || !strcmp(name, "slots");
        agent_args[nagent++] = argv[i];
        if (value) agent_args[nagent++] = argv[++i];
    }

    struct dev d;
    memset(&d, 0, sizeof(d));
    struct server_opts o = {0};
    struct err e = ERR_INIT;
    char *work = NULL, *url = NULL, *tok_path = NULL, *data = NULL, **aargv = NULL;
    int rc = server_opts_parse(sargc, sargv, &o);
    if (rc) {
        rc = rc < 0 ? 0 : usage_error();
        goto out;
    }
    work = xasprintf("%s/agent", o.data);
    /* the admin token the server writes (mode 0600): the agent reads it as --token-file */
    tok_path = xasprintf("%s/%s", o.data, DROVER_ADMIN_TOKEN_FILE);
    char cwd[PATH_MAX];
    data = o.data[0] == '/' || !getcwd(cwd, sizeof(cwd)) ? xstrdup(o.data)
                                                        : xasprintf("%s/%s", cwd, o.data);
    url = server_url(&o, o.listen); /* for the options check; made again once bound */
    char slots[32];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(slots, sizeof(slots), "%ld", ncpu > 0 ? ncpu : 1);
    /* its sandboxed jobs do not see the server's data folder (the admin token, the store) */
    char *fixed[] = {"agent", "--server", url, "--token-file", tok_path, "--name",  "dev",
                     "--work-dir", work, "--hide", data, "--slots", slots};
    size_t nfixed = sizeof(fixed) / sizeof(fixed[0]) - (slots_given ? 2 : 0);
    int aargc = (int)nfixed + nagent;
    aargv = xcalloc((size_t)aargc + 1, sizeof(char *));
    memcpy(aargv, fixed, nfixed * sizeof(char *));
    memcpy(aargv + nfixed, agent_args, (size_t)nagent * sizeof(char *));
    /* the agent's options too, before the server makes or binds anything */
    if ((rc = agent_opts_check(aargc, aargv, "dev", usage_head))) goto out;

    evthread_use_pthreads(); /* the main thread stops the server's loop */
    signal(SIGPIPE, SIG_IGN);
    d.base = event_base_new();
    if (server_start(&d.s, &o, d.base, &e)) {
        fprintf(stderr, "drover dev: %s\n", e.msg);
        rc = 1;
        server_release(&d.s);
        goto out;
    }
    free(url); /* where the server got (port 0: the kernel's choice) */
    url = aargv[2] = server_url(&o, d.s.listen);
    d.stop = event_new(d.base, -1, 0, on_stop, &d);
    event_add(d.stop, NULL);
    /* The thread inherits the mask: block everything around its start, so that no signal
       reaches it even before its first instruction. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (pthread_create(&d.thread, NULL, server_thread, &d)) die("cannot start the server thread");
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    log_info("drover dev: server on %s, agent 'dev'", url);
    rc = cmd_agent(aargc, aargv);

    event_active(d.stop, EV_READ, 0);
    pthread_join(d.thread, NULL);
    event_free(d.stop);
    server_release(&d.s);
out:
    if (d.base) event_base_free(d.base);
    server_opts_release(&o);
    free(aargv);
    free(tok_path);
    free(data);
    free(url);
    free(work);
    free(sargv);
    free(agent_args);
    return rc;
}
