/*
 * runner_native.c - a job's process: vfork + exec into its own process
 * group, with SIGKILL as its parent-death signal (it dies with the agent);
 * stdin written and stdout/stderr read through non-blocking pipes on the
 * event loop, signals to the group, reaping on SIGCHLD. A stream of type
 * `uri` is a file in the work folder instead (stage.h: the downloaded stdin,
 * or the stdout/stderr to upload), not captured as a log.
 *
 * The agent is a child subreaper (prctl PR_SET_CHILD_SUBREAPER, agent.c): a
 * process that leaves its job's group (setsid, a double fork) is re-parented
 * to the agent when its parent ends, an "orphan". The sweep (runner_sweep)
 * signals every orphan, with its descendants, whose job no longer runs: the
 * job named by DROVER_JOB_ID/DROVER_ATTEMPT in its environment, else (an
 * environment cleared) any job that was running when it started.
 *
 * Invariants:
 *   - the process group is only signalled while its leader is not reaped:
 *     a zombie leader keeps the group id from being reused, so a signal can
 *     never reach a stranger's group;
 *   - when the leader ends, what is left of its group (background children)
 *     and its orphans are killed before the leader is reaped: a job is over
 *     when its leader exits, and it does not outlive itself;
 *   - SIGCHLD reaps the leaders (through reap_one) and the orphans; an
 *     orphan is never taken for a leader (a leader is matched by its pid
 *     while it is not reaped, and no pid is reused before it is reaped);
 *   - jobs_process_ended() is called once, when the leader is reaped and both
 *     output pipes are closed (at EOF, or AGENT_PIPE_LINGER_MS after the end
 *     if a process outside the group still holds them).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/guardian.h"
#include "agent/proc.h"
#include "agent/utf8.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

#define READ_CHUNK 65536

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
        if (j->on_ended) j->on_ended(j);
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

/* What ends a stream cut at its cap, so that its reader sees it was cut (what comes after
   is not kept): the cap's last bytes. */
#define STREAM_CUT_NOTE "\n[drover: the output is cut here: it is longer than 64 MiB]\n"
#define STREAM_KEEP (PROTO_STREAM_MAX - (sizeof(STREAM_CUT_NOTE) - 1))
_Static_assert(PROTO_STREAM_MAX == 64u << 20, "STREAM_CUT_NOTE names the cap");

/* Keeps `n` bytes of output (carry first), sanitised, within PROTO_STREAM_MAX. */
static void stream_take(struct agent_stream *s, const char *data, size_t n, bool final)
{
    if (s->produced >= PROTO_STREAM_MAX) {
        s->discarded += n;
        s->ncarry = 0;
        return;
    }
    size_t before = s->pending.len;
    size_t used = utf8_sanitize(&s->pending, data, n, final);
    s->ncarry = n - used;
    memcpy(s->carry, data + used, s->ncarry);
    if (s->produced < sizeof(s->first) - 1) {
        size_t room = sizeof(s->first) - 1 - (size_t)s->produced, got = s->pending.len - before;
        memcpy(s->first + s->produced, s->pending.data + before, got < room ? got : room);
    }
    s->produced += s->pending.len - before;
    if (s->produced > STREAM_KEEP) {
        /* Keep whole characters up to the cap, less the note that says so; the rest is
           counted, not kept. */
        size_t over = (size_t)(s->produced - STREAM_KEEP);
        size_t keep = utf8_cut(s->pending.data, s->pending.len, s->pending.len - over);
        s->discarded += s->pending.len - keep;
        s->produced -= s->pending.len - keep;
        s->pending.len = keep;
        buf_adds(&s->pending, STREAM_CUT_NOTE);
        s->produced = PROTO_STREAM_MAX; /* nothing more is kept */
        log_warn("job=%s attempt=%d %s is longer than %llu MiB; the rest is not kept", s->job->id,
                 s->job->attempt, s->name, (unsigned long long)(PROTO_STREAM_MAX >> 20));
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
    j->strays = true; /* its folder is not reused (jobs.c) */
    stream_take(&j->out, j->out.carry, j->out.ncarry, true);
    stream_take(&j->err, j->err.carry, j->err.ncarry, true);
    stream_close(&j->out);
    stream_close(&j->err);
    maybe_ended(j);
}

/* fd: a pipe's end of ours, whose other status flags are none */
static int set_nonblock(int fd)
{
    return fcntl(fd, F_SETFL, O_NONBLOCK);
}

static void stream_open(struct agent_job *j, struct agent_stream *s, enum proto_stream which,
                        int fd)
{
    s->job = j;
    s->name = proto_stream_name(which);
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

struct spawn_args {
    char **argv, **envp;
    const char *dir;
    int fd[3];                       /* its stdin, stdout, stderr */
    pid_t parent;                    /* the agent */
    const struct limits_job *limits; /* cgroups to join, rlimits to set (limits.h) */
    const struct rlimit *nofile;     /* the descriptor limit to restore (NULL: the agent's own) */
    const sigset_t *handled;         /* the signals not at SIG_DFL here (handled_signals) */
};

/*
 * The signals whose disposition in this process is not SIG_DFL (a handler of the agent's
 * or libevent's, or SIG_IGN): those a job's process resets before exec. Asked of the kernel
 * again once a second (one call per signal), not at every spawn: the agent sets its
 * dispositions when it starts.
 */
static const sigset_t *handled_signals(void)
{
    static sigset_t set;
    static int64_t asked_ns = -1;
    int64_t now = time_mono_ns();
    if (asked_ns >= 0 && now - asked_ns < 1000000000) return &set;
    asked_ns = now;
    sigemptyset(&set);
    struct sigaction cur;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP && sigaction(sig, NULL, &cur) == 0 &&
            cur.sa_handler != SIG_DFL)
            sigaddset(&set, sig);
    return &set;
}

/*
 * The child of spawn(), between vfork and exec: it shares the agent's memory (and only
 * writes *err), runs with every signal blocked until the handlers it inherited are reset,
 * and makes only system calls.
 */
static _Noreturn void spawn_child(const struct spawn_args *s, volatile int *err)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigset_t none;
    sigemptyset(&none);
    /* The agent ignores SIGPIPE and libevent catches others: the job starts with the defaults. */
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(s->handled, sig) == 1) sigaction(sig, &dfl, NULL);
    /* Dies with the agent (with the thread that spawns it: the loop's, which lives as long). */
    if (setpgid(0, 0) != 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) goto fail;
    if (getppid() != s->parent) _exit(127); /* the agent died before the line above */
    if (limits_job_child(s->limits) != 0) goto fail;
    /* not the limit a server in this process (drover dev) raised for its connections */
    if (s->nofile && setrlimit(RLIMIT_NOFILE, s->nofile) != 0) goto fail;
    for (int i = 0; i < 3; i++)
        if (dup2(s->fd[i], i) < 0) goto fail;
    /* sockets, the spool, other jobs' pipes (most are close-on-exec already) */
    long closed = -1;
#ifdef SYS_close_range
    closed = syscall(SYS_close_range, 3U, ~0U, 0U);
#endif
    struct rlimit rl;
    if (closed != 0) { /* before Linux 5.9 */
        int max_fd =
            getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
        for (int fd = 3; fd < max_fd; fd++)
            close(fd);
    }
    if (chdir(s->dir) != 0) goto fail;
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvpe(s->argv[0], s->argv, s->envp);
fail:
    *err = errno ? errno : EINVAL;
    _exit(127);
}

/*
 * Starts the process (as posix_spawnp would, from the agent's PATH) with the parent-death
 * signal posix_spawn cannot set. 0 with *pid, or the errno of what failed (the child is
 * reaped then).
 */
static int spawn(const struct spawn_args *s, pid_t *pid)
{
    volatile int child_err = 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* no handler of ours may run in the child */
    pid_t p = vfork();
    if (p == 0) spawn_child(s, &child_err);
    int err_no = p < 0 ? errno : child_err; /* the child has exec'd or exited by now */
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (p > 0 && err_no) {
        while (waitpid(p, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    if (!err_no) *pid = p;
    return err_no;
}

int runner_native_start(struct agent_job *j, char **argv, char **envp, struct err *e)
{
    int out[2] = {-1, -1}, errp[2] = {-1, -1}, in[2] = {-1, -1};
    int rc = 0, err_no;
    json_t *stdin_spec = json_object_get(json_object_get(j->spec, "command"), "stdin");
    json_t *stdin_value = json_object_get(stdin_spec, "value");
    bool stdin_uri = stream_is_uri(j, "stdin");
    bool stdin_pipe = !stdin_uri && json_is_string(stdin_value);
    const char *out_file = stream_is_uri(j, "stdout") ? STAGE_STDOUT_FILE : NULL;
    const char *err_file = stream_is_uri(j, "stderr") ? STAGE_STDERR_FILE : NULL;
    static int devnull = -1; /* a job's stdin by default: opened once, kept */
    if (devnull < 0) devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

    if (stream_fds(j, out_file, out, true) || stream_fds(j, err_file, errp, true) ||
        (stdin_pipe  ? pipe2(in, O_CLOEXEC)
         : stdin_uri ? stream_fds(j, STAGE_STDIN_FILE, in, false)
                     : devnull < 0)) {
        rc = err_set(e, ERR_IO, "cannot start '%s': cannot make pipes or open its stream files: %s",
                     argv[0], strerror(errno));
        goto out;
    }
    struct rlimit nofile;
    struct spawn_args sa = {argv,
                            envp,
                            j->work_dir,
                            {in[0] >= 0 ? in[0] : devnull, out[1], errp[1]},
                            getpid(),
                            &j->limits,
                            fd_limit_before_raise(&nofile) ? &nofile : NULL,
                            handled_signals()};
    struct timespec b0, b1;
    clock_gettime(CLOCK_BOOTTIME, &b0);
    err_no = spawn(&sa, &j->pid);
    clock_gettime(CLOCK_BOOTTIME, &b1);
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
    j->starttime = t0 && t0 == t1 ? t0 : proc_starttime(j->pid);

    if (!out_file) {
        stream_open(j, &j->out, PROTO_STREAM_STDOUT, out[0]);
        out[0] = -1;
        set_nonblock(j->out.fd);
    }
    if (!err_file) {
        stream_open(j, &j->err, PROTO_STREAM_STDERR, errp[0]);
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

#define SWEEP_AGAIN_MS 20 /* after a sweep killed something: look again, for what it forked */
#define SWEEP_AGAIN_MAX 250

/* The job whose (not yet reaped) leader is `pid`, or NULL. */
static struct agent_job *job_by_leader(struct agent *a, pid_t pid)
{
    for (struct agent_job *j = a->jobs; j; j = j->next)
        if (j->pid == pid && !j->exited) return j;
    return NULL;
}

/* A job whose leader runs, other than `ending` (whose processes are being killed). */
static bool job_runs(const struct agent_job *j, const struct agent_job *ending)
{
    return j != ending && j->phase == PHASE_RUNNING && j->pid > 0 && !j->exited;
}

/* Whether the orphan `pid` belongs to a job that runs (and `ending` does not); *maybe_ending
   is set when it is kept though it may be ending's. */
static bool orphan_kept(struct agent *a, pid_t pid, const struct agent_job *ending,
                        bool *maybe_ending)
{
    char id[UUID_STR_LEN];
    int attempt;
    if (proc_job_env(pid, id, &attempt)) {
        for (struct agent_job *j = a->jobs; j; j = j->next)
            if (j->attempt == attempt && !strcmp(j->id, id)) return job_runs(j, ending);
        return false; /* a job that ended, or one of an earlier run of the agent */
    }
    /* Its environment is cleared or unreadable: any job that ran when it started may own it. */
    unsigned long long born = proc_starttime(pid);
    for (struct agent_job *j = a->jobs; j; j = j->next)
        if (job_runs(j, ending) && (!born || !j->starttime || j->starttime <= born)) {
            *maybe_ending = ending && (!born || !ending->starttime || ending->starttime <= born);
            return true;
        }
    return false;
}

static void on_sweep_again(evutil_socket_t fd, short what, void *arg);

/*
 * Sends `sig` to every orphan (a process the agent reaps for a job that left it behind)
 * that no running job other than `ending` owns, and to its descendants. Returns how many
 * live processes were signalled; after a SIGKILL that reached some, looks again shortly.
 */
static size_t sweep(struct agent *a, struct agent_job *ending, int sig)
{
    pid_t *kids;
    size_t n = proc_orphans_home(&kids), signalled = 0;
    for (size_t i = 0; i < n; i++) {
        bool maybe_ending = false;
        if (kids[i] == a->guardian_pid || job_by_leader(a, kids[i]) ||
            runner_container_owns(a, kids[i]) ||
            runtimes_owns(a, kids[i]) || orphan_kept(a, kids[i], ending, &maybe_ending)) {
            if (maybe_ending) ending->strays = true; /* its folder is not reused (jobs.c) */
            continue;
        }
        size_t k = proc_signal_tree(kids[i], getpid(), 0, sig);
        if (k && sig == SIGKILL && ending)
            log_info("job=%s attempt=%d killed %zu process(es) outside its process group (pid %d "
                     "and its descendants)",
                     ending->id, ending->attempt, k, (int)kids[i]);
        else if (k && sig == SIGKILL)
            log_info("killed %zu process(es) left behind by jobs that ended (pid %d and its "
                     "descendants)",
                     k, (int)kids[i]);
        signalled += k;
    }
    free(kids);
    if (sig == SIGKILL && signalled && a->sweep_again < SWEEP_AGAIN_MAX) {
        if (!a->sweep_timer) a->sweep_timer = evtimer_new(a->base, on_sweep_again, a);
        struct timeval tv = {0, SWEEP_AGAIN_MS * 1000};
        a->sweep_again++;
        evtimer_add(a->sweep_timer, &tv);
    } else if (!signalled) {
        a->sweep_again = 0;
    }
    return signalled;
}

static void on_sweep_again(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    sweep(arg, NULL, SIGKILL);
}

void runner_native_signal(struct agent_job *j, int sig)
{
    if (j->pid <= 0 || j->exited) return;
    /* a job with a cgroup: every one of its processes, each once, wherever it went */
    if (limits_job_signal(&j->limits, sig) >= 0) return;
    if (kill(-j->pid, sig) != 0 && errno != ESRCH)
        log_warn("job=%s attempt=%d cannot signal process group %d: %s", j->id, j->attempt,
                 (int)j->pid, strerror(errno));
    sweep(j->a, j, sig); /* the processes that left its group */
}

/* The leader ended (a waitid peek named it, leaving it a zombie): kill what is left of its
   group and its orphans, then reap it. */
static void reap_one(struct agent_job *j)
{
    kill(-j->pid, SIGKILL); /* leftovers of the job; the zombie leader still holds the group */
    sweep(j->a, j, SIGKILL);
    limits_job_signal(&j->limits, SIGKILL); /* its cgroup holds them all, wherever they went */
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
    /* Peek at each ended child (WNOWAIT): a job's leader is reaped by reap_one, which kills
     * what is left of its job first; anything else is an orphan, reaped here. Bounded: each
     * turn reaps one child. */
    for (int turn = 0; turn < 65536; turn++) {
        siginfo_t si;
        memset(&si, 0, sizeof(si));
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0) break;
        struct agent_job *j = job_by_leader(a, si.si_pid);
        if (!j && (runner_container_reaped(a, si.si_pid) || runtimes_reaped(a, si.si_pid) ||
                   guardian_reaped(a, si.si_pid)))
            continue;
        if (j) {
            reap_one(j);
            if (!j->exited) break;
            continue;
        }
        pid_t r;
        while ((r = waitpid(si.si_pid, NULL, WNOHANG)) < 0 && errno == EINTR) {
        }
        if (r != si.si_pid) break;
        log_debug("reaped process %d, left behind by a job", (int)si.si_pid);
    }
}

void runner_native_stop(struct agent *a)
{
    if (a->sweep_timer) event_free(a->sweep_timer);
    a->sweep_timer = NULL;
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

/* --- the native runner's vtable (runner_bwrap.c shares it) --- */

static int native_start(struct agent_job *j, char **argv, char **envp, runner_ended_fn ended,
                        struct err *e)
{
    j->ended = j->on_ended = ended;
    return runner_native_start(j, argv, envp, e);
}

const struct runner_ops runner_native = {
    .name = "native",
    .rt = PROTO_RT_NATIVE,
    .start = native_start,
    .signal = runner_native_signal,
    .release = runner_native_release,
    .recover = jobs_kill_survivors,
};
