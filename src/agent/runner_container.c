/*
 * runner_container.c - the container runner: a job with command.image runs
 * in a container, through the podman or docker command-line client (the
 * "engine"; `drover agent --runtime podman|docker`, with --engine-opt
 * arguments put before each subcommand).
 *
 *   prepare  `ENGINE image exists IMAGE` (docker: `image inspect`), and when
 *            it is absent `ENGINE pull IMAGE`: one check and one pull per
 *            image at a time, shared by every job that waits for it (a
 *            `struct container_wait`); jobs.c pauses the job's timeout
 *            meanwhile. A pull that fails ends the waiting jobs with `error`
 *            naming the image and the engine's last line.
 *   start    `ENGINE run --name drover-JOB-ATTEMPT -i --pull never -v W:W -w W
 *            --env NAME... [--network none] [--memory ...] IMAGE ARGV...`
 *            through the native runner (runner_native.c): the client is the
 *            job's process-group leader, its stdin, stdout and stderr are the
 *            job's, and it exits with the container's exit code. The work
 *            folder is mounted at its own path, so DROVER_WORK_DIR,
 *            DROVER_PROGRESS and the arguments' paths hold inside; the values
 *            of the environment reach the container by name (--env NAME takes
 *            the client's value: they are not shown on its command line).
 *   signal   `ENGINE kill --signal N NAME`: the container itself, not only
 *            the client; SIGKILL also kills the client's group (a container
 *            not yet created is then removed below).
 *   ended    the client exited: `ENGINE inspect` (State.OOMKilled: reason
 *            `oom`; also a SIGKILL the agent did not send to a container with
 *            a memory limit, where the engine misses the event), then
 *            `ENGINE rm -f NAME`, then the job's end is decided: no container
 *            is left behind when the job's result is reported.
 *   recover  after an agent restart: `ENGINE rm -f NAME` for every job of the
 *            spool that was running (the container is found by its name).
 *
 * The engine's helper commands (check, pull, kill, inspect, rm) are the
 * agent's children: runner_native_reap() hands them here (their status),
 * and the sweep leaves them alone, as it leaves podman's monitor (conmon),
 * which the agent inherits as their subreaper, while a job of the agent names
 * its container.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/argv.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/spec.h"

#define CMD_OUTPUT_MAX (64 * 1024) /* bytes of a helper command's output kept */
#define CMDLINE_MAX 16384          /* bytes of /proc/PID/cmdline read to find a container name */

struct engine_cmd;
typedef void (*cmd_done_fn)(void *arg, int status, const char *output);

#define PODMAN_INIT "/usr/libexec/podman/catatonit"

struct container_engine {
    struct agent *a;
    unsigned rt;     /* PROTO_RT_PODMAN or PROTO_RT_DOCKER */
    const char *bin; /* "podman" or "docker" */
    bool init;       /* runs an init as the container's pid 1 (run --init) */
    struct engine_cmd *cmds;
    struct container_wait *waits;
};

/* A helper command of the engine, running: its output is kept, `done` called once. */
struct engine_cmd {
    struct container_engine *eng;
    struct engine_cmd *next;
    pid_t pid;
    int fd; /* its stdout and stderr, -1 at EOF */
    struct event *ev;
    struct buf out;
    bool reaped;
    int status;
    cmd_done_fn done;
    void *arg;
};

/* An image being checked or pulled, and the jobs waiting for it. */
struct container_wait {
    struct container_engine *eng;
    struct container_wait *next;
    char *image;
    struct agent_job **jobs;
    size_t njobs, cap;
    runner_ready_fn ready;
    int64_t t0; /* monotonic, ns */
};

/* --- helper commands --------------------------------------------------------------- */

/* ENGINE --engine-opt... ARGS (a new vector of borrowed strings: free the array only). */
static char **engine_argv(const struct container_engine *eng, const char *const *args)
{
    const struct agent_opts *o = &eng->a->o;
    size_t n = 0;
    while (args[n])
        n++;
    char **v = xcalloc(1 + o->nengine_opts + n + 1, sizeof(*v));
    size_t k = 0;
    v[k++] = (char *)eng->bin;
    for (size_t i = 0; i < o->nengine_opts; i++)
        v[k++] = o->engine_opts[i];
    for (size_t i = 0; i < n; i++)
        v[k++] = (char *)args[i];
    return v;
}

/* Runs ENGINE ARGS to its end, output discarded (startup only: before the loop runs).
 * Returns its exit code, or -1 when it could not run or did not exit. */
static int engine_run_sync(const struct container_engine *eng, const char *const *args)
{
    char **argv = engine_argv(eng, args);
    pid_t pid;
    int rc = agent_spawn_quiet(argv, -1, &pid);
    free(argv);
    return rc ? -1 : agent_wait_exit(pid);
}

static void cmd_unlink(struct engine_cmd *c)
{
    for (struct engine_cmd **p = &c->eng->cmds; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
}

static void cmd_free(struct engine_cmd *c)
{
    if (c->ev) event_free(c->ev);
    if (c->fd >= 0) close(c->fd);
    buf_release(&c->out);
    free(c);
}

/* Both the exit and the EOF are in: done, once. */
static void cmd_maybe_done(struct engine_cmd *c)
{
    if (!c->reaped || c->fd >= 0) return;
    cmd_unlink(c);
    int code = WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1;
    if (c->done) c->done(c->arg, code, buf_str(&c->out));
    cmd_free(c);
}

static void on_cmd_output(evutil_socket_t fd, short what, void *arg)
{
    struct engine_cmd *c = arg;
    char data[4096];
    (void)what;
    ssize_t n = read(fd, data, sizeof(data));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n > 0) {
        if (c->out.len < CMD_OUTPUT_MAX) buf_add(&c->out, data, (size_t)n);
        return;
    }
    event_free(c->ev);
    c->ev = NULL;
    close(c->fd);
    c->fd = -1;
    cmd_maybe_done(c);
}

/* Starts ENGINE ARGS; `done` (may be NULL) gets its exit code (-1: it did not exit) and
 * output. 0, or the errno of a failed start (then done is not called). */
static int cmd_start(struct container_engine *eng, const char *const *args, cmd_done_fn done,
                     void *arg)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return errno;
    char **argv = engine_argv(eng, args);
    pid_t pid;
    int rc = agent_spawn_quiet(argv, p[1], &pid);
    free(argv);
    close(p[1]);
    if (rc) {
        close(p[0]);
        return rc;
    }
    struct engine_cmd *c = xcalloc(1, sizeof(*c));
    c->eng = eng;
    c->pid = pid;
    c->fd = p[0];
    c->done = done;
    c->arg = arg;
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    c->ev = event_new(eng->a->base, c->fd, EV_READ | EV_PERSIST, on_cmd_output, c);
    event_priority_set(c->ev, AGENT_PRIO_IO);
    event_add(c->ev, NULL);
    c->next = eng->cmds;
    eng->cmds = c;
    return 0;
}

bool runner_container_reaped(struct agent *a, pid_t pid)
{
    if (!a->engine) return false;
    for (struct engine_cmd *c = a->engine->cmds; c; c = c->next) {
        if (c->pid != pid || c->reaped) continue;
        pid_t r;
        while ((r = waitpid(pid, &c->status, WNOHANG)) < 0 && errno == EINTR) {
        }
        if (r != pid) return true; /* not yet: the next SIGCHLD */
        c->reaped = true;
        cmd_maybe_done(c);
        return true;
    }
    return false;
}

bool runner_container_owns(struct agent *a, pid_t pid)
{
    if (!a->engine) return false;
    for (struct engine_cmd *c = a->engine->cmds; c; c = c->next)
        if (c->pid == pid) return true;
    bool any = false;
    for (struct agent_job *j = a->jobs; j && !any; j = j->next)
        any = j->container != NULL;
    if (!any) return false;
    char path[64], line[CMDLINE_MAX];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, line, sizeof(line));
    close(fd);
    if (n <= 0) return false;
    for (struct agent_job *j = a->jobs; j; j = j->next)
        if (j->container && memmem(line, (size_t)n, j->container, strlen(j->container)))
            return true;
    return false;
}

/* The last non-empty line of a command's output, at most 300 bytes (for a message). */
static void last_line(const char *out, char *line, size_t size)
{
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        n--;
    size_t start = n;
    while (start && out[start - 1] != '\n')
        start--;
    size_t len = n - start;
    if (len > 300) len = 300;
    if (len >= size) len = size - 1;
    memcpy(line, out + start, len);
    line[len] = '\0';
    if (!len) snprintf(line, size, "no message");
}

/* --- images -------------------------------------------------------------------------- */

static void wait_done(struct container_wait *w, const char *error)
{
    struct container_engine *eng = w->eng;
    for (struct container_wait **p = &eng->waits; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    for (size_t i = 0; i < w->njobs; i++)
        w->jobs[i]->pull = NULL;
    for (size_t i = 0; i < w->njobs; i++)
        w->ready(w->jobs[i], error);
    free(w->jobs);
    free(w->image);
    free(w);
}

static void on_pulled(void *arg, int status, const char *output)
{
    struct container_wait *w = arg;
    if (status == 0) {
        log_info("image=%s pulled in %lld ms", w->image,
                 (long long)((time_mono_ns() - w->t0) / 1000000));
        wait_done(w, NULL);
        return;
    }
    char line[320], *msg;
    last_line(output, line, sizeof(line));
    msg = xasprintf("cannot pull the image '%s' (%s pull exited with %d): %s", w->image,
                    w->eng->bin, status, line);
    log_warn("%s", msg);
    wait_done(w, msg);
    free(msg);
}

static void on_image_checked(void *arg, int status, const char *output)
{
    struct container_wait *w = arg;
    (void)output;
    if (status == 0) {
        wait_done(w, NULL);
        return;
    }
    log_info("image=%s is not here: pulling it (%zu job(s) wait for it)", w->image, w->njobs);
    const char *args[] = {"pull", w->image, NULL};
    int rc = cmd_start(w->eng, args, on_pulled, w);
    if (rc) {
        char *msg = xasprintf("cannot pull the image '%s': cannot run %s: %s", w->image,
                              w->eng->bin, strerror(rc));
        wait_done(w, msg);
        free(msg);
    }
}

static const char *job_image(const struct agent_job *j)
{
    return json_string_value(json_object_get(json_object_get(j->spec, "command"), "image"));
}

static int container_prepare(struct agent_job *j, runner_ready_fn ready, struct err *e)
{
    struct container_engine *eng = j->a->engine;
    const char *image = job_image(j);
    if (!eng) return err_set(e, ERR_UNAVAILABLE, "the agent has no container engine");
    struct container_wait *w = eng->waits;
    while (w && strcmp(w->image, image))
        w = w->next;
    if (!w) {
        w = xcalloc(1, sizeof(*w));
        w->eng = eng;
        w->image = xstrdup(image);
        w->ready = ready;
        w->t0 = time_mono_ns();
        const char *podman[] = {"image", "exists", image, NULL};
        const char *docker[] = {"image", "inspect", image, NULL};
        int rc = cmd_start(eng, eng->rt == PROTO_RT_PODMAN ? podman : docker, on_image_checked, w);
        if (rc) {
            free(w->image);
            free(w);
            return err_set(e, ERR_IO, "cannot run '%s': %s", eng->bin, strerror(rc));
        }
        w->next = eng->waits;
        eng->waits = w;
    }
    if (w->njobs == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 4;
        w->jobs = xrealloc(w->jobs, w->cap * sizeof(*w->jobs));
    }
    w->jobs[w->njobs++] = j;
    j->pull = w;
    return 1;
}

/* --- running ---------------------------------------------------------------------------- */

static void on_removed(void *arg, int status, const char *output)
{
    struct agent_job *j = arg;
    if (status != 0) {
        char line[320];
        last_line(output, line, sizeof(line));
        log_warn("job=%s attempt=%d cannot remove its container %s: %s", j->id, j->attempt,
                 j->container, line);
    }
    j->ended(j);
}

static void remove_container(struct agent_job *j)
{
    const char *args[] = {"rm", "-f", j->container, NULL};
    int rc = cmd_start(j->a->engine, args, on_removed, j);
    if (rc) {
        log_warn("job=%s attempt=%d cannot run %s rm: %s", j->id, j->attempt, j->a->engine->bin,
                 strerror(rc));
        j->ended(j);
    }
}

/*
 * Why the container's init could not start the job's program (it is not in the image, or not
 * executable): the init's first line of stderr says so, in its own words (podman's catatonit
 * "ERROR (catatonit:6): failed to exec pid1: No such file or directory", exit 1; docker's tini
 * "[FATAL tini (7)] exec prog failed: No such file or directory", exit 127). NULL otherwise.
 */
static const char *init_exec_failure(const struct agent_job *j)
{
    static const char catatonit[] = "ERROR (catatonit:", cat_why[] = "failed to exec pid1: ",
                      tini[] = "[FATAL tini (", tini_why[] = " failed: ";
    const char *first = j->err.first, *why = NULL;
    if (!strncmp(first, catatonit, strlen(catatonit)) && (why = strstr(first, cat_why)))
        return why + strlen(cat_why);
    if (!strncmp(first, tini, strlen(tini)) && (why = strstr(first, tini_why)))
        return why + strlen(tini_why);
    return NULL;
}

static void on_inspected(void *arg, int status, const char *output)
{
    struct agent_job *j = arg;
    if (status == 0 && !strncmp(output, "true", 4)) j->oom = true;
    /* Where the engine misses the OOM event (podman on a hybrid cgroup v1/v2 host: its
     * monitor watches the wrong hierarchy), a container with a memory limit that died of a
     * SIGKILL the agent did not send (the client's 128 + 9) is taken as killed for memory. */
    struct spec_resources res;
    spec_resources_get(j->spec, &res);
    if (!j->oom && res.memory_mb > 0 && j->kill_why == KILL_NONE && WIFEXITED(j->wait_status) &&
        WEXITSTATUS(j->wait_status) == 128 + SIGKILL)
        j->oom = true;
    /* No container: the engine failed before making it (125: its own error). */
    if (status != 0 && WIFEXITED(j->wait_status) && WEXITSTATUS(j->wait_status) == 125 &&
        j->kill_why == KILL_NONE) {
        char line[320];
        last_line(output, line, sizeof(line));
        free(j->end_error);
        j->end_error = xasprintf("%s could not run the container for image '%s' (exit code 125; "
                                 "its message is in the job's stderr)",
                                 j->a->engine->bin, job_image(j));
    }
    const char *why = j->kill_why == KILL_NONE && !j->end_error && WIFEXITED(j->wait_status) &&
                              WEXITSTATUS(j->wait_status) != 0
                          ? init_exec_failure(j)
                          : NULL;
    if (why) { /* as the native runner says it */
        j->end_error = xasprintf("cannot start '%s' in image '%s': %.*s", j->argv[0],
                                 job_image(j), (int)strcspn(why, "\n"), why);
    }
    remove_container(j);
}

/* The client exited and its pipes are closed: inspect, remove, then the job's end. */
static void container_ended(struct agent_job *j)
{
    const char *args[] = {"inspect", "--format", "{{.State.OOMKilled}}", j->container, NULL};
    if (cmd_start(j->a->engine, args, on_inspected, j)) remove_container(j);
}

/* A growing NULL-terminated vector of copies. */
struct strv {
    char **v;
    size_t n, cap;
};

static void strv_add(struct strv *s, const char *x)
{
    if (s->n + 2 > s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = xstrdup(x);
    s->v[s->n] = NULL;
}

static int container_start(struct agent_job *j, char **argv, char **envp, runner_ended_fn ended,
                           struct err *e)
{
    struct container_engine *eng = j->a->engine;
    json_t *command = json_object_get(j->spec, "command");
    if (!eng) return err_set(e, ERR_UNAVAILABLE, "the agent has no container engine");
    free(j->container);
    j->container = xasprintf("drover-%s-%d", j->id, j->attempt);
    char *volume = xasprintf("%s:%s", j->work_dir, j->work_dir);
    struct strv args = {0};
    strv_add(&args, eng->bin);
    for (size_t i = 0; i < j->a->o.nengine_opts; i++)
        strv_add(&args, j->a->o.engine_opts[i]);
    const char *fixed[] = {"run",   "--name", j->container, "-i", "--pull",
                           "never", "-v",     volume,       "-w", j->work_dir};
    for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
        strv_add(&args, fixed[i]);
    /* pid 1 ignores signals it does not handle: an init passes the SIGTERM of a timeout or a
       cancel on to the program (and reaps what it leaves) */
    if (eng->init) strv_add(&args, "--init");
    if (json_is_false(json_object_get(command, "network"))) {
        strv_add(&args, "--network");
        strv_add(&args, "none");
    }
    /* the environment by name: the client's values (envp) reach the container */
    static const char *const drover_env[] = {"DROVER_JOB_ID", "DROVER_ATTEMPT", "DROVER_WORK_DIR",
                                             "DROVER_PROGRESS"};
    for (size_t i = 0; i < ARRAY_SIZE(drover_env); i++) {
        strv_add(&args, "--env");
        strv_add(&args, drover_env[i]);
    }
    const char *name;
    json_t *v;
    json_object_foreach(json_object_get(command, "env"), name, v)
    {
        strv_add(&args, "--env");
        strv_add(&args, name);
    }
    /* resources (spec.c validated them): the engine enforces them, not the agent's limits */
    char num[64];
    struct spec_resources res;
    spec_resources_get(j->spec, &res);
    if (res.memory_mb > 0) {
        snprintf(num, sizeof(num), "%lldm", (long long)res.memory_mb);
        strv_add(&args, "--memory");
        strv_add(&args, num);
        strv_add(&args, "--memory-swap"); /* no swap beyond it: over the limit is an OOM kill */
        strv_add(&args, num);
    }
    if (res.cpus > 0) {
        snprintf(num, sizeof(num), "%g", res.cpus);
        strv_add(&args, "--cpus");
        strv_add(&args, num);
    }
    if (res.pids > 0) {
        snprintf(num, sizeof(num), "%lld", (long long)res.pids);
        strv_add(&args, "--pids-limit");
        strv_add(&args, num);
    }
    strv_add(&args, job_image(j));
    for (size_t i = 0; argv[i]; i++)
        strv_add(&args, argv[i]);
    j->ended = ended;
    j->on_ended = container_ended;
    int rc = runner_native_start(j, args.v, envp, e);
    agent_strv_free(args.v);
    free(volume);
    return rc;
}

static void on_killed(void *arg, int status, const char *output)
{
    char *name = arg;
    if (status != 0) {
        char line[320];
        last_line(output, line, sizeof(line));
        log_debug("container=%s kill: %s", name, line);
    }
    free(name);
}

static void container_signal(struct agent_job *j, int sig)
{
    if (j->pid <= 0 || j->exited || !j->a->engine) return;
    char num[16];
    snprintf(num, sizeof(num), "%d", sig);
    char *name = xstrdup(j->container);
    const char *args[] = {"kill", "--signal", num, name, NULL};
    int rc = cmd_start(j->a->engine, args, on_killed, name);
    if (rc) {
        log_warn("job=%s attempt=%d cannot run %s kill: %s", j->id, j->attempt, j->a->engine->bin,
                 strerror(rc));
        free(name);
    }
    /* A container not made yet cannot be killed by name: the client goes, and the container
     * is removed once it has (container_ended). */
    if (sig == SIGKILL) runner_native_signal(j, SIGKILL);
}

static void container_release(struct agent_job *j)
{
    struct container_wait *w = j->pull;
    if (w) {
        for (size_t i = 0; i < w->njobs; i++)
            if (w->jobs[i] == j) {
                w->jobs[i] = w->jobs[--w->njobs];
                break;
            }
        j->pull = NULL;
    }
    /* a command whose callback names the job (inspect, rm) runs only while the job is
     * RUNNING, and jobs are released after they end: nothing else points to it */
    runner_native_release(j);
}

static void container_recover(struct agent *a, struct agent_job *j, json_t *run)
{
    jobs_kill_survivors(a, j, run); /* the client, if it outlived the agent */
    const char *saved = json_string_value(json_object_get(run, "container"));
    unsigned rt = proto_runtime_parse(json_string_value(json_object_get(run, "runtime")));
    /* the engine that ran it (the agent's own may still be under test: runtimes.c) */
    struct container_engine *tmp = NULL, *eng = a->engine;
    if ((!eng || eng->rt != rt) && (rt & PROTO_RT_CONTAINER))
        eng = tmp = runner_container_new(a, rt);
    char *name = saved ? xstrdup(saved) : xasprintf("drover-%s-%d", j->id, j->attempt);
    if (!eng) {
        if (saved)
            log_warn("job=%s attempt=%d its container %s may still run: no container engine", j->id,
                     j->attempt, name);
        free(name);
        return;
    }
    /* SIGKILL first: `rm -f` alone would wait out the engine's stop timeout (10 s) */
    const char *kill_args[] = {"kill", "--signal", "KILL", name, NULL};
    const char *args[] = {"rm", "-f", name, NULL};
    bool killed = engine_run_sync(eng, kill_args) == 0; /* it was running */
    int rm = engine_run_sync(eng, args);
    if (killed)
        log_warn("job=%s attempt=%d its container %s outlived the agent; killed and %s", j->id,
                 j->attempt, name, rm == 0 ? "removed" : "not removed");
    free(name);
    runner_container_free(tmp);
}

const struct runner_ops runner_podman = {
    .name = "podman",
    .rt = PROTO_RT_PODMAN,
    .prepare = container_prepare,
    .start = container_start,
    .signal = container_signal,
    .release = container_release,
    .recover = container_recover,
};

const struct runner_ops runner_docker = {
    .name = "docker",
    .rt = PROTO_RT_DOCKER,
    .prepare = container_prepare,
    .start = container_start,
    .signal = container_signal,
    .release = container_release,
    .recover = container_recover,
};

/* --- the engine ----------------------------------------------------------------------------- */

struct container_engine *runner_container_new(struct agent *a, unsigned rt)
{
    struct container_engine *eng = xcalloc(1, sizeof(*eng));
    eng->a = a;
    eng->rt = rt;
    eng->bin = rt == PROTO_RT_PODMAN ? "podman" : "docker";
    /* docker ships its init (docker-init); podman runs catatonit from its default init_path
       (Debian's catatonit package), and `run --init` fails without it */
    eng->init = rt != PROTO_RT_PODMAN || access(PODMAN_INIT, X_OK) == 0;
    return eng;
}

void runner_container_offered(const struct container_engine *eng)
{
    if (!eng->init) /* said once the engine works: nothing to say of one not installed */
        log_info("%s has no %s: a job's program runs as its container's pid 1, which ignores "
                 "SIGTERM unless it handles it (a timeout or cancel then waits out "
                 "--term-grace); install catatonit",
                 eng->bin, PODMAN_INIT);
}

char **runner_container_test_argv(const struct container_engine *eng)
{
    static const char *const info[] = {"info", NULL};
    char **argv = engine_argv(eng, info), **copy;
    size_t n = 0;
    while (argv[n])
        n++;
    copy = xcalloc(n + 1, sizeof(*copy));
    for (size_t i = 0; i < n; i++)
        copy[i] = xstrdup(argv[i]);
    free(argv);
    return copy;
}

void runner_container_free(struct container_engine *eng)
{
    if (!eng) return;
    while (eng->cmds) {
        struct engine_cmd *c = eng->cmds;
        eng->cmds = c->next;
        cmd_free(c);
    }
    while (eng->waits) {
        struct container_wait *w = eng->waits;
        eng->waits = w->next;
        for (size_t i = 0; i < w->njobs; i++)
            w->jobs[i]->pull = NULL;
        free(w->jobs);
        free(w->image);
        free(w);
    }
    free(eng);
}
