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
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    event_base_dispatch(d->base);
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: drover dev [--listen ADDR:PORT] [--data DIR] [--slots N] [--queues Q1,Q2]\n"
               "\n"
               "A server (as `drover server`) and one agent named 'dev' (as `drover agent`)\n"
               "in one process, on loopback: everything needed to try drover out. The\n"
               "agent's work folder is DATA/agent. Ctrl-C drains the agent, then stops.\n");
}

int cmd_dev(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'}, {"data", required_argument, NULL, 'd'},
        {"slots", required_argument, NULL, 's'},  {"queues", required_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *listen = DROVER_DEFAULT_LISTEN, *data_arg = NULL, *queues = "default";
    char slots[32];
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(slots, sizeof(slots), "%ld", n > 0 ? n : 1);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': listen = optarg; break;
        case 'd': data_arg = optarg; break;
        case 's': snprintf(slots, sizeof(slots), "%s", optarg); break;
        case 'q': queues = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "drover dev: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    char *data = data_arg ? xstrdup(data_arg) : config_default_data_dir();
    char *work = xasprintf("%s/agent", data);
    struct dev d;
    memset(&d, 0, sizeof(d));
    struct server_opts o = {0};
    struct err e = ERR_INIT;
    char *sargv[] = {"server", "--listen", (char *)listen, "--data", data, NULL};
    int rc = server_opts_parse(5, sargv, &o);
    if (rc)
        goto out;

    evthread_use_pthreads(); /* the main thread stops the server's loop */
    signal(SIGPIPE, SIG_IGN);
    d.base = event_base_new();
    if (server_start(&d.s, &o, d.base, &e)) {
        fprintf(stderr, "drover dev: %s\n", e.msg);
        rc = 1;
        server_release(&d.s);
        goto out;
    }
    d.stop = event_new(d.base, -1, 0, on_stop, &d);
    event_add(d.stop, NULL);
    /* The thread inherits the mask: block everything around its start, so that no signal
       reaches it even before its first instruction. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (pthread_create(&d.thread, NULL, server_thread, &d))
        die("cannot start the server thread");
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    /* the admin token the server wrote (mode 0600): the agent reads it as --token-file */
    char *tok_path = xasprintf("%s/%s", data, DROVER_ADMIN_TOKEN_FILE);
    char *url = xasprintf("http://%s", listen);
    char *aargv[] = {"agent", "--server", url, "--token-file", tok_path, "--name", "dev",
                     "--slots", slots, "--queues", (char *)queues, "--work-dir", work, NULL};
    log_info("drover dev: server on %s, agent 'dev' with %s slots", url, slots);
    rc = cmd_agent((int)(sizeof(aargv) / sizeof(aargv[0])) - 1, aargv);
    free(url);
    free(tok_path);

    event_active(d.stop, EV_READ, 0);
    pthread_join(d.thread, NULL);
    event_free(d.stop);
    server_release(&d.s);
out:
    if (d.base)
        event_base_free(d.base);
    server_opts_release(&o);
    free(work);
    free(data);
    return rc;
}
