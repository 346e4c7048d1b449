/*
 * runner_native.c - a job's process: posix_spawn in its own process group,
 * stdin written and stdout/stderr read through non-blocking pipes on the
 * event loop, signals to the group, reaping on SIGCHLD. A stream of type
 * `uri` is a file in the work folder instead (stage.h: the downloaded stdin,
 * or the stdout/stderr to upload), not captured as a log.
 *
 * Invariants:
 *   - the process group is only signalled while its leader is not reaped:
 *     a zombie leader keeps the group id from being reused, so a signal can
 *     never reach a stranger's group;
 *   - when the leader ends, what is left of its group (background children)
 *     is killed before the leader is reaped: a job does not outlive itself;
 *   - jobs_process_ended() is called once, when the leader is reaped and both
 *     output pipes are closed (at EOF, or AGENT_PIPE_LINGER_MS after the end
 *     if a process outside the group still holds them).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/utf8.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

#define READ_CHUNK 65536

unsigned long long runner_proc_starttime(pid_t pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0) return 0;
    text[n] = '\0';
    /* "pid (comm) state ppid ..." - comm may hold spaces and parentheses: start after the last ')'
     */
    char *p = strrchr(text, ')');
    if (!p) return 0;
    p++;
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p + 1, ' ');
    }
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* A CLOCK_BOOTTIME reading in clock ticks, as the kernel shows start times; 0 when unknown. */
static unsigned long long boottime_ticks(const struct timespec *ts)
{
    static long long ns_per_tick;
    if (!ns_per_tick) {
        long hz = sysconf(_SC_CLK_TCK);
        ns_per_tick = hz > 0 && 1000000000LL % hz == 0 ? 1000000000LL / hz : -1;
    }
    if (ns_per_tick < 0) return 0;
    return ((unsigned long long)ts->tv_sec * 1000000000ULL + (unsigned long long)ts->tv_nsec) /
           (unsigned long long)ns_per_tick;
}

static void maybe_ended(struct agent_job *j)
{
    if (j->exited && j->out.fd < 0 && j->err.fd < 0) {
        if (j->linger_timer) evtimer_del(j->linger_timer);
        jobs_process_ended(j);
    }
}

static void stream_close(struct agent_stream *s)
{
    if (s->ev) {
        event_free(s->ev);
        s->ev = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

/* Keeps `n` bytes of output (carry first), sanitised, within AGENT_STREAM_MAX. */
static void stream_take(struct agent_stream *s, const char *data, size_t n, bool final)
{
    if (s->produced >= AGENT_STREAM_MAX) {
        s->discarded += n;
        s->ncarry = 0;
        return;
    }
    size_t before = s->pending.len;
    size_t used = utf8_sanitize(&s->pending, data, n, final);
    s->ncarry = n - used;
    memcpy(s->carry, data + used, s->ncarry);
    s->produced += s->pending.len - before;
    if (s->produced > AGENT_STREAM_MAX) {
        /* Keep whole characters up to the cap; the rest is counted, not kept. */
        size_t over = (size_t)(s->produced - AGENT_STREAM_MAX);
        size_t keep = utf8_cut(s->pending.data, s->pending.len, s->pending.len - over);
        s->discarded += s->pending.len - keep;
        s->produced -= s->pending.len - keep;
        s->pending.len = keep;
        s->pending.data[keep] = '\0';
        s->produced = AGENT_STREAM_MAX; /* nothing more is kept */
        log_warn("job=%s attempt=%d %s is longer than %llu MiB; the rest is not kept", s->job->id,
                 s->job->attempt, s->name, (unsigned long long)(AGENT_STREAM_MAX >> 20));
    }
    if (s->pending.len > before) proto_kick(s->job->a);
}

static void on_stream(evutil_socket_t fd, short what, void *arg)
{
    struct agent_stream *s = arg;
    struct agent_job *j = s->job;
    char data[READ_CHUNK + sizeof(s->carry)];
    (void)what;
    memcpy(data, s->carry, s->ncarry);
    ssize_t n = read(fd, data + s->ncarry, READ_CHUNK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n > 0) {
        stream_take(s, data, s->ncarry + (size_t)n, false);
        return;
    }
    if (n < 0)
        log_warn("job=%s attempt=%d cannot read %s: %s", j->id, j->attempt, s->name,
                 strerror(errno));
    stream_take(s, data, s->ncarry, true);
    stream_close(s);
    maybe_ended(j);
}

static void stdin_close(struct agent_job *j)
{
    if (j->stdin_ev) {
        event_free(j->stdin_ev);
        j->stdin_ev = NULL;
    }
    if (j->stdin_fd >= 0) {
        close(j->stdin_fd);
        j->stdin_fd = -1;
    }
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
    struct agent_job *j = arg;
    (void)what;
    while (j->stdin_off < j->stdin_len) {
        size_t n = j->stdin_len - j->stdin_off;
        ssize_t w = write(fd, j->stdin_data + j->stdin_off, n > READ_CHUNK ? READ_CHUNK : n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) return;
        if (w < 0) {
            /* EPIPE: the program does not read its input (SIGPIPE is ignored by the agent) */
            log_debug("job=%s attempt=%d stdin closed early: %s", j->id, j->attempt,
                      strerror(errno));
            break;
        }
        j->stdin_off += (size_t)w;
    }
    stdin_close(j);
}

static void on_linger(evutil_socket_t fd, short what, void *arg)
{
    struct agent_job *j = arg;
    (void)fd, (void)what;
    log_warn("job=%s attempt=%d its output pipes are still open %d ms after it ended "
             "(a process outside its group holds them); closing them",
             j->id, j->attempt, AGENT_PIPE_LINGER_MS);
    stream_take(&j->out, j->out.carry, j->out.ncarry, true);
    stream_take(&j->err, j->err.carry, j->err.ncarry, true);
    stream_close(&j->out);
    stream_close(&j->err);
    maybe_ended(j);
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void stream_open(struct agent_job *j, struct agent_stream *s, const char *name, int fd)
{
    s->job = j;
    s->name = name;
    s->fd = fd;
    s->ev = event_new(j->a->base, fd, EV_READ | EV_PERSIST, on_stream, s);
    event_priority_set(s->ev, AGENT_PRIO_IO);
    event_add(s->ev, NULL);
}

static bool stream_is_uri(const struct agent_job *j, const char *name)
{
    json_t *s = json_object_get(json_object_get(j->spec, "command"), name);
    const char *type = json_string_value(json_object_get(s, "type"));
    return type && !strcmp(type, "uri");
}

/* fd[0] (read end) / fd[1] (write end): a pipe, or the stream's file in the work folder. */
static int stream_fds(const struct agent_job *j, const char *file, int fd[2], bool output)
{
    if (!file) return pipe2(fd, O_CLOEXEC);
    char *path = xasprintf("%s/%s", j->work_dir, file);
    int f = output ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)
                   : open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    fd[output ? 1 : 0] = f;
    return f < 0 ? -1 : 0;
}

int runner_native_start(struct agent_job *j, char **argv, char **envp, struct err *e)
{
    int out[2] = {-1, -1}, errp[2] = {-1, -1}, in[2] = {-1, -1};
    int rc = 0, err_no;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    json_t *stdin_spec = json_object_get(json_object_get(j->spec, "command"), "stdin");
    json_t *stdin_value = json_object_get(stdin_spec, "value");
    bool stdin_uri = stream_is_uri(j, "stdin");
    bool stdin_pipe = !stdin_uri && json_is_string(stdin_value);
    const char *out_file = stream_is_uri(j, "stdout") ? STAGE_STDOUT_FILE : NULL;
    const char *err_file = stream_is_uri(j, "stderr") ? STAGE_STDERR_FILE : NULL;

    if (stream_fds(j, out_file, out, true) || stream_fds(j, err_file, errp, true) ||
        (stdin_pipe  ? pipe2(in, O_CLOEXEC)
         : stdin_uri ? stream_fds(j, STAGE_STDIN_FILE, in, false)
                     : (in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)) {
        rc = err_set(e, ERR_IO, "cannot start '%s': cannot make pipes or open its stream files: %s",
                     argv[0], strerror(errno));
        goto out;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3); /* sockets, the spool, other jobs' pipes */
    posix_spawn_file_actions_addchdir_np(&fa, j->work_dir);
    sigset_t all, none;
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    sigemptyset(&none);
    /* The agent ignores SIGPIPE and libevent catches others: the job starts with the defaults. */
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETSIGMASK);
    struct timespec b0, b1;
    clock_gettime(CLOCK_BOOTTIME, &b0);
    err_no = posix_spawnp(&j->pid, argv[0], &fa, &attr, argv, envp);
    clock_gettime(CLOCK_BOOTTIME, &b1);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (err_no) {
        j->pid = 0;
        rc = err_set(e, ERR_IO, "cannot start '%s': %s", argv[0], strerror(err_no));
        goto out;
    }
    j->start_ns = time_mono_ns();
    j->started_at_ms = time_now_ms();
    /* The child's start time (/proc/PID/stat field 22: CLOCK_BOOTTIME at its fork, in clock
     * ticks, truncated) lies between b0 and b1: when both fall in the same tick, that tick is
     * it, without reading /proc (all but ~1 % of spawns at 100 Hz). */
    unsigned long long t0 = boottime_ticks(&b0), t1 = boottime_ticks(&b1);
    j->starttime = t0 && t0 == t1 ? t0 : runner_proc_starttime(j->pid);

    if (!out_file) {
        stream_open(j, &j->out, "stdout", out[0]);
        out[0] = -1;
        set_nonblock(j->out.fd);
    }
    if (!err_file) {
        stream_open(j, &j->err, "stderr", errp[0]);
        errp[0] = -1;
        set_nonblock(j->err.fd);
    }
    if (stdin_pipe) {
        j->stdin_fd = in[1];
        in[1] = -1;
        j->stdin_data = json_string_value(stdin_value);
        j->stdin_len = json_string_length(stdin_value);
        set_nonblock(j->stdin_fd);
        j->stdin_ev = event_new(j->a->base, j->stdin_fd, EV_WRITE | EV_PERSIST, on_stdin, j);
        event_priority_set(j->stdin_ev, AGENT_PRIO_IO);
        event_add(j->stdin_ev, NULL);
    }
out:
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0) close(out[i]);
        if (errp[i] >= 0) close(errp[i]);
        if (in[i] >= 0) close(in[i]);
    }
    return rc;
}

void runner_native_signal(struct agent_job *j, int sig)
{
    if (j->pid > 0 && !j->exited && kill(-j->pid, sig) != 0 && errno != ESRCH)
        log_warn("job=%s attempt=%d cannot signal process group %d: %s", j->id, j->attempt,
                 (int)j->pid, strerror(errno));
}

/* The leader ended: kill what is left of its group, then reap it. */
static void reap_one(struct agent_job *j)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)j->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0)
        return;
    kill(-j->pid, SIGKILL); /* leftovers of the job; the zombie leader still holds the group */
    int status;
    pid_t r;
    while ((r = waitpid(j->pid, &status, WNOHANG)) < 0 && errno == EINTR) {
    }
    if (r != j->pid) return;
    j->exited = true;
    j->wait_status = status;
    j->end_ns = time_mono_ns();
    if (j->out.fd >= 0 || j->err.fd >= 0) {
        if (!j->linger_timer) j->linger_timer = evtimer_new(j->a->base, on_linger, j);
        struct timeval tv = {AGENT_PIPE_LINGER_MS / 1000, (AGENT_PIPE_LINGER_MS % 1000) * 1000};
        evtimer_add(j->linger_timer, &tv);
    }
    maybe_ended(j);
}

void runner_native_reap(struct agent *a)
{
    for (struct agent_job *j = a->jobs, *next; j; j = next) {
        next = j->next; /* maybe_ended may settle nothing yet, but keep the walk safe */
        if (j->pid > 0 && !j->exited) reap_one(j);
    }
}

void runner_native_release(struct agent_job *j)
{
    stream_close(&j->out);
    stream_close(&j->err);
    stdin_close(j);
    if (j->linger_timer) {
        event_free(j->linger_timer);
        j->linger_timer = NULL;
    }
}
