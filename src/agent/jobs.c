/*
 * jobs.c - a lease's life on the agent (see agent.h):
 *
 *   lease ──spool──► (WAITING for a slot, when prefetched: started once one frees, or
 *                     given back with a released report after PREFETCH_WAIT_MAX_MS)
 *         ──► staging plan, argv, work folder ──► STAGE_IN (inputs download)
 *   STAGE_IN ──inputs in──► spawn ──► RUNNING
 *     (timeout / cancel / stop: SIGTERM to the group, SIGKILL after --term-grace;
 *      while staging: the transfers are dropped and the job ends at once)
 *   RUNNING ──process ended, pipes closed──► STAGE_OUT (outputs upload), or at once:
 *   ──► finished report (with the outputs), spooled ──► DONE
 *   DONE ──finished settled (200/409), nothing in flight──► records and work folder removed
 *
 * and the recovery of the spool after a restart: every job found there is
 * DONE at once; its finished report is the spooled one when there is one
 * (sent again as it is: never a different outcome), else `error` "the agent
 * restarted while the job was running" (its process group, if it survived,
 * is killed first; the leader itself died with the agent, by its parent-death
 * signal). Then what any of these jobs left outside its group is killed:
 * the processes that name it in their environment and started after it.
 *
 * The job's timeout_s runs from the lease: it covers staging in, the run and
 * staging out, as the server's deadline (timeout_s + a grace after the lease)
 * does, but not a runner's prepare (a container image's pull, shared by the
 * jobs that want it): the timer is paused while the job waits for it.
 * Staging needs no spool record of its own: an agent restarted while a job
 * stages reports it `error` like one restarted while it runs (an upload cut
 * short leaves no object: the store commits whole objects only).
 *
 * Invariant: a job's `finished` report is written to the spool before it is
 * queued, and the job is freed only by jobs_gc once it is settled.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/proc.h"
#include "agent/trash.h"
#include "agent/argv.h"
#include "agent/utf8.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/spec.h"

extern char **environ;

#define PROGRESS_FILE ".drover-progress"

/* --- work folders ---------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    if (flag == FTW_DP) return rmdir(path) != 0 && errno != ENOENT ? -1 : 0;
    return unlink(path) != 0 && errno != ENOENT ? -1 : 0;
}

static int chmod_dirs(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_D || flag == FTW_DNR)
        chmod(path, (st->st_mode & 07777) | 0700); /* a job may leave read-only folders */
    return 0;
}

void agent_remove_tree(const char *path)
{
    /* Most jobs leave their folder empty (or it is absent): one rmdir. Else one walk, and
     * only if that cannot remove everything, the chmod walk (folders made read-only) first. */
    if (rmdir(path) == 0 || errno == ENOENT) return;
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0) return;
    nftw(path, chmod_dirs, 16, FTW_PHYS);
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        log_warn("cannot remove the work folder '%s' entirely: %s", path, strerror(errno));
}

/*
 * Work folders are named by number, "<jobs_dir>/w<N>" (N < 64), so that one a job left empty
 * becomes the next job's as it is: taken at once when a job starts before the ended one is
 * settled (as under load), else kept (a->dirs_kept) for a next job. No rename, no rmdir and
 * mkdir per job: on ext4 a rename costs ~12 µs of CPU, and an rmdir and a mkdir allocate and
 * free an inode and a block every time. A folder is kept only when it is as a new one would
 * be: empty, ours, mode 0700, no extended attributes (an ACL a job set would reach the next
 * job's files). Its times are the only trace of the job before. The jobs folder is emptied at
 * the agent's start: none is kept across runs. Nor is the folder of a job a process of which
 * may have outlived it (j->strays: the sweep kept an orphan that may be its own, or its pipes
 * stayed open): with its working directory there, it could still write into the folder, where
 * before it found the folder removed. With --keep-work, and beyond 64 folders at once, a
 * folder is named by its job, "<jobs_dir>/<job>-<attempt>", and never reused.
 */
/* Whether the folder at path is empty and as mkdir(path, 0700) makes one (above). */
static bool dir_reusable(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return false;
    static uid_t euid = (uid_t)-1;
    if (euid == (uid_t)-1) euid = geteuid();
    struct stat st;
    ssize_t nx;
    bool ok = fstat(fd, &st) == 0 && (st.st_mode & 07777) == 0700 && st.st_uid == euid &&
              st.st_nlink == 2 && /* no folder in it */
              ((nx = flistxattr(fd, NULL, 0)) == 0 || (nx < 0 && errno == ENOTSUP));
    if (ok) { /* "." and ".." only: one read of the entries, a second one finds no more */
        _Alignas(struct dirent64) char buf[2048];
        ssize_t n = getdents64(fd, buf, sizeof(buf));
        ok = n > 0;
        for (ssize_t off = 0; ok && off < n;) {
            const struct dirent64 *d = (const void *)(buf + off);
            ok = !strcmp(d->d_name, ".") || !strcmp(d->d_name, "..");
            off += d->d_reclen;
        }
        ok = ok && getdents64(fd, buf, sizeof(buf)) == 0;
    }
    close(fd);
    return ok;
}

/* At a job's end: whether its folder may be the next job's (above). */
static void work_dir_ended(struct agent_job *j)
{
    j->dir_spare = j->dir_no >= 0 && !j->strays && !j->recovered && dir_reusable(j->work_dir);
}

/* The settled job's work folder, unless another job took it: kept when it can be, else gone. */
static void work_dir_release(struct agent *a, const struct agent_job *j)
{
    if (j->dir_moved) return; /* the folder, and its number, are another job's */
    if (j->dir_no >= 0) {
        uint64_t bit = 1ull << j->dir_no;
        a->dirs_held &= ~bit;
        if (j->dir_spare) {
            a->dirs_kept |= bit;
            return;
        }
    }
    trash_put(a->trash, j->work_dir); /* its name free again once this returns */
}

/* j's work folder, number n ("w<n>"). */
static void work_dir_name(struct agent_job *j, int n)
{
    free(j->work_dir);
    j->work_dir = xasprintf("%s/w%d", j->a->jobs_dir, n);
    j->dir_no = n;
}

/* Makes j's work folder, empty: a kept one, or an ended job's, else a new one. */
static int work_dir_make(struct agent_job *j)
{
    struct agent *a = j->a;
    if (!a->o.keep_work) {
        for (struct agent_job *o = a->jobs; o; o = o->next) { /* ended, not settled yet */
            if (!o->dir_spare || o->dir_moved) continue;
            o->dir_moved = true;
            work_dir_name(j, o->dir_no);
            return 0;
        }
        if (a->dirs_kept) {
            int n = __builtin_ctzll(a->dirs_kept);
            a->dirs_kept &= ~(1ull << n);
            a->dirs_held |= 1ull << n;
            work_dir_name(j, n);
            return 0;
        }
        if (~a->dirs_held) {
            int n = __builtin_ctzll(~a->dirs_held);
            a->dirs_held |= 1ull << n;
            work_dir_name(j, n);
        }
    }
    int made = mkdir(j->work_dir, 0700);
    if (made != 0 && errno == EEXIST) { /* a fresh folder, even if an earlier run left one */
        agent_remove_tree(j->work_dir);
        made = mkdir(j->work_dir, 0700);
    }
    /* On failure a number stays held: its job's release (when settled) frees it and removes
       whatever the failed mkdir left, never a folder another job made under it meanwhile. */
    return made;
}

/* --- the job list ------------------------------------------------------------ */

static struct agent_job *job_new(struct agent *a, const char *id, int attempt, json_t *spec)
{
    struct agent_job *j = xcalloc(1, sizeof(*j));
    j->a = a;
    snprintf(j->id, sizeof(j->id), "%s", id);
    j->attempt = attempt;
    /* A lease's spec comes as the store keeps it, its defaults left out, and is read so: every
       reader here takes a missing member as its default (null, false, empty, a pipe for the
       streams, 1 slot), which spares a copy of ~40 values per job. */
    j->spec = spec ? json_incref(spec) : NULL;
    json_t *slots = json_object_get(j->spec, "slots");
    j->slots = json_is_integer(slots) && json_integer_value(slots) > 0 &&
                       json_integer_value(slots) <= PROTO_SLOTS_MAX
                   ? (int)json_integer_value(slots)
                   : 1;
    j->stdin_fd = -1;
    j->out.fd = j->err.fd = -1;
    j->out.job = j->err.job = j;
    j->out.name = proto_stream_name(PROTO_STREAM_STDOUT);
    j->err.name = proto_stream_name(PROTO_STREAM_STDERR);
    j->work_dir = xasprintf("%s/%s-%d", a->jobs_dir, id, attempt); /* or w<N>: work_dir_make */
    j->dir_no = -1;
    j->prev = a->jobs_tail;
    if (a->jobs_tail)
        a->jobs_tail->next = j;
    else
        a->jobs = j;
    a->jobs_tail = j;
    a->njobs++;
    return j;
}

static void timer_free(struct event **ev)
{
    if (*ev) {
        event_free(*ev);
        *ev = NULL;
    }
}

static void job_free(struct agent_job *j)
{
    struct agent *a = j->a;
    if (j->prev)
        j->prev->next = j->next;
    else
        a->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        a->jobs_tail = j->prev;
    a->njobs--;
    (j->runner ? j->runner : &runner_native)->release(j);
    free(j->container);
    limits_job_release(&a->limits, &j->limits, true);
    stage_free(j->stage);
    agent_strv_free(j->argv);
    free(j->end_error);
    timer_free(&j->timeout_timer);
    timer_free(&j->grace_timer);
    timer_free(&j->progress_timer);
    progress_watch_release(&j->progress);
    buf_release(&j->out.pending);
    buf_release(&j->err.pending);
    json_decref(j->spec);
    json_decref(j->rec);
    json_decref(j->started);
    json_decref(j->finished);
    free(j->message);
    free(j->work_dir);
    free(j);
}

static struct agent_job *job_find(struct agent *a, const char *id, int attempt)
{
    for (struct agent_job *j = a->jobs; j; j = j->next)
        if (j->attempt == attempt && !strcmp(j->id, id)) return j;
    return NULL;
}

size_t jobs_running(const struct agent *a)
{
    size_t n = 0;
    for (const struct agent_job *j = a->jobs; j; j = j->next)
        n += j->phase != PHASE_DONE;
    return n;
}

/* --- outcomes ------------------------------------------------------------------ */

static json_t *report_base(const struct agent_job *j, enum proto_report type)
{
    return json_pack("{s:s, s:i, s:s}", "job", j->id, "attempt", j->attempt, "type",
                     proto_report_name(type));
}

/* Records, spools and queues the finished report; the job becomes DONE. */
static void job_finish(struct agent_job *j, enum proto_reason reason, int exit_code, int sig,
                       const char *error)
{
    struct agent *a = j->a;
    struct err e = ERR_INIT;
    int64_t ms = j->start_ns && j->end_ns ? (j->end_ns - j->start_ns) / 1000000 : 0;
    json_t *r = report_base(j, PROTO_REPORT_FINISHED);
    json_object_set_new(r, "reason", json_string(proto_reason_name(reason)));
    json_object_set_new(r, "exit_code",
                        reason == PROTO_REASON_EXIT ? json_integer(exit_code) : json_null());
    /* an oom kill is a SIGKILL, usually of the leader: said when it was */
    json_object_set_new(r, "signal",
                        (reason == PROTO_REASON_SIGNAL || reason == PROTO_REASON_OOM) && sig
                            ? json_integer(sig)
                            : json_null());
    json_object_set_new(r, "duration_ms", json_integer(ms));
    if (error) { /* messages may quote the job's file names: any bytes, made UTF-8 here */
        struct buf text = BUF_INIT;
        utf8_sanitize(&text, error, strlen(error), true);
        json_object_set_new(r, "error", json_string(buf_str(&text)));
        buf_release(&text);
    } else {
        json_object_set_new(r, "error", json_null());
    }
    if (json_array_size(stage_outputs(j->stage)) > 0)
        json_object_set(r, "outputs", stage_outputs(j->stage));
    stage_free(j->stage); /* whatever was in flight is dropped */
    j->stage = NULL;
    if (!a->o.bench_noop) { /* into its lease record (spool.h), or one of its own */
        if (j->rec
                ? spool_put_member(&a->spool, j->id, j->attempt, "lease", j->rec, "finished", r, &e)
                : spool_put(&a->spool, j->id, j->attempt, "finished", r, &e))
            log_error("job=%s attempt=%d the result cannot be spooled and is lost if the agent "
                      "stops before delivering it: %s",
                      j->id, j->attempt, e.msg);
        else
            j->recs |= j->rec ? REC_LEASE : REC_FINISHED;
    }
    if (j->slots_held) {
        work_dir_ended(j); /* it had a folder: the next job to start may take it */
        a->slots_used -= j->slots;
        j->slots_held = false;
        if (a->slots_waiting) event_active(a->start_ev, EV_TIMEOUT, 0);
    }
    if (j->start_ns && j->end_ns) { /* what prefetch goes by (agent_prefetch) */
        int64_t us = (j->end_ns - j->start_ns) / 1000;
        a->run_mean_us = a->run_mean_us < 0 ? us : a->run_mean_us + (us - a->run_mean_us) / 8;
    }
    j->finished = r;
    j->phase = PHASE_DONE;
    timer_free(&j->timeout_timer);
    timer_free(&j->grace_timer);
    timer_free(&j->progress_timer);
    a->m.jobs_finished[reason]++;
    if (reason == PROTO_REASON_EXIT)
        log_info("job=%s attempt=%d finished reason=exit exit_code=%d duration_ms=%lld", j->id,
                 j->attempt, exit_code, (long long)ms);
    else if (reason == PROTO_REASON_SIGNAL)
        log_info("job=%s attempt=%d finished reason=signal signal=%d duration_ms=%lld", j->id,
                 j->attempt, sig, (long long)ms);
    else
        log_info("job=%s attempt=%d finished reason=%s duration_ms=%lld%s%s", j->id, j->attempt,
                 proto_reason_name(reason), (long long)ms, error ? " error=" : "",
                 error ? error : "");
    proto_kick(a);
    /* a free slot is news for the server only with the next poll, which is on its way */
    agent_check_done(a);
}

static void progress_check(struct agent_job *j, bool final)
{
    double pct;
    char *msg;
    if (!progress_watch_check(&j->progress, final, &pct, &msg)) return;
    bool same = j->has_progress && j->percent == pct &&
                ((!msg && !j->message) || (msg && j->message && !strcmp(msg, j->message)));
    if (same) {
        free(msg);
        return;
    }
    j->has_progress = true;
    j->percent = pct;
    free(j->message);
    j->message = msg;
    j->progress_dirty = true;
    proto_kick(j->a);
}

static double job_timeout_s(const struct agent_job *j)
{
    return json_number_value(json_object_get(j->spec, "timeout_s"));
}

/* The outputs are uploaded (or failed): the run's outcome, or `error` naming the output. */
static void on_staged_out(struct agent_job *j, int rc, const char *error)
{
    if (rc) {
        char *msg = j->end_reason == PROTO_REASON_EXIT && j->end_code != 0
                        ? xasprintf("%s (the program had exited with code %d)", error, j->end_code)
                        : xstrdup(error);
        job_finish(j, PROTO_REASON_ERROR, 0, 0, msg);
        free(msg);
        return;
    }
    job_finish(j, j->end_reason, j->end_code, j->end_signal, j->end_error);
}

void jobs_process_ended(struct agent_job *j)
{
    if (j->phase != PHASE_RUNNING) return;
    progress_check(j, true);
    int st = j->wait_status;
    switch (j->kill_why) {
    case KILL_TIMEOUT: {
        char msg[128];
        snprintf(msg, sizeof(msg), "killed after its timeout of %g s", job_timeout_s(j));
        job_finish(j, PROTO_REASON_TIMEOUT, 0, 0, msg);
        return;
    }
    case KILL_CANCEL:
        job_finish(j, PROTO_REASON_CANCELLED, 0, 0, NULL);
        return;
    case KILL_STOP:
        job_finish(j, PROTO_REASON_ERROR, 0, 0, "the agent was stopped");
        return;
    case KILL_NONE:
        break;
    }
    if (j->end_error) { /* the runner's own failure (a container engine's error) */
        job_finish(j, PROTO_REASON_ERROR, 0, 0, j->end_error);
        return;
    }
    j->end_code = j->end_signal = 0;
    /* j->oom: the container engine's word (runner_container.c) */
    bool failed = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    bool oom = failed && (j->oom || limits_job_oom(&j->limits));
    /* a fork its pids limit refused: the program's own words ("Cannot fork") do not say so */
    long long refused = failed && !oom ? limits_job_pids_refused(&j->limits) : 0;
    limits_job_release(&j->a->limits, &j->limits, false); /* again at job_free if it must */
    if (oom) {
        /* the kernel killed one of its processes for memory: the leader, or a child whose
         * loss made the leader fail */
        j->end_reason = PROTO_REASON_OOM;
        j->end_signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
        json_t *mb = json_object_get(json_object_get(j->spec, "resources"), "memory_mb");
        j->end_error = xasprintf("killed for memory: the job went over its resources.memory_mb "
                                 "(%lld MiB)",
                                 (long long)json_integer_value(mb));
    } else if (WIFEXITED(st)) {
        j->end_reason = PROTO_REASON_EXIT;
        j->end_code = WEXITSTATUS(st);
    } else if (WIFSIGNALED(st)) {
        j->end_reason = PROTO_REASON_SIGNAL;
        j->end_signal = WTERMSIG(st);
    } else {
        j->end_reason = PROTO_REASON_ERROR;
        j->end_error = xstrdup("the process ended in an unknown way");
    }
    if (refused > 0 && !j->end_error) {
        json_t *pids = json_object_get(json_object_get(j->spec, "resources"), "pids");
        j->end_error = xasprintf("%lld fork(s) refused: the job reached its resources.pids "
                                 "(%lld processes)",
                                 refused, (long long)json_integer_value(pids));
    }
    /* outputs only after a success; stdout/stderr URIs after any run that ended by itself */
    bool all = j->end_reason == PROTO_REASON_EXIT && j->end_code == 0;
    if (j->stage && j->end_reason != PROTO_REASON_ERROR &&
        stage_out(j->stage, all, on_staged_out)) {
        j->phase = PHASE_STAGE_OUT;
        log_debug("job=%s attempt=%d uploading its outputs", j->id, j->attempt);
        return;
    }
    job_finish(j, j->end_reason, j->end_code, j->end_signal, j->end_error);
}

/* A kill while the job stages: the transfers are dropped and the job ends now. */
static void job_stop_staging(struct agent_job *j, enum kill_why why)
{
    char msg[160];
    bool in = j->phase == PHASE_STAGE_IN;
    switch (why) {
    case KILL_TIMEOUT:
        snprintf(msg, sizeof(msg), "%s did not finish within the job's timeout of %g s",
                 in ? "downloading its inputs" : "uploading its outputs", job_timeout_s(j));
        job_finish(j, PROTO_REASON_TIMEOUT, 0, 0, msg);
        break;
    case KILL_CANCEL:
        job_finish(j, PROTO_REASON_CANCELLED, 0, 0, NULL);
        break;
    default:
        job_finish(j, PROTO_REASON_ERROR, 0, 0, "the agent was stopped");
        break;
    }
}

/* --- killing ---------------------------------------------------------------------- */

static void job_give_back(struct agent_job *j);

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    struct agent_job *j = arg;
    (void)fd, (void)what;
    if (j->phase != PHASE_RUNNING || j->exited) return;
    log_info("job=%s attempt=%d still running %g s after SIGTERM: SIGKILL", j->id, j->attempt,
             j->a->o.term_grace_s);
    j->killed_hard = true;
    j->runner->signal(j, SIGKILL);
}

static void ms_timeval(double s, struct timeval *tv)
{
    if (s < 0) s = 0;
    long long us = (long long)(s * 1e6);
    tv->tv_sec = (time_t)(us / 1000000);
    tv->tv_usec = (suseconds_t)(us % 1000000);
}

/* SIGTERM to the group now, SIGKILL after the grace (or at once when `hard`). */
static void job_kill(struct agent_job *j, enum kill_why why, bool hard)
{
    static const char *const whys[] = {"", "timeout", "cancel", "agent stopping"};
    if (j->phase == PHASE_WAITING) {
        if (why != KILL_CANCEL) { /* it never started: another agent may run it */
            job_give_back(j);
            return;
        }
        log_info("job=%s attempt=%d cancelled before it started", j->id, j->attempt);
        j->a->slots_waiting -= j->slots;
        job_finish(j, PROTO_REASON_CANCELLED, 0, 0, NULL);
        return;
    }
    if (j->phase == PHASE_STAGE_IN || j->phase == PHASE_STAGE_OUT) {
        log_info("job=%s attempt=%d stopping its staging (%s)", j->id, j->attempt, whys[why]);
        job_stop_staging(j, why);
        return;
    }
    if (j->phase != PHASE_RUNNING || !j->pid || j->exited) return;
    if (j->kill_why == KILL_NONE) j->kill_why = why;
    if (hard) {
        if (!j->killed_hard)
            log_info("job=%s attempt=%d killing (%s): SIGKILL", j->id, j->attempt, whys[why]);
        j->killed_hard = true;
        j->runner->signal(j, SIGKILL);
        return;
    }
    if (j->grace_timer) return; /* already on its way */
    if (j->container)
        log_info("job=%s attempt=%d killing (%s): SIGTERM to container %s", j->id, j->attempt,
                 whys[why], j->container);
    else
        log_info("job=%s attempt=%d killing (%s): SIGTERM to process group %d", j->id, j->attempt,
                 whys[why], (int)j->pid);
    j->runner->signal(j, SIGTERM);
    j->grace_timer = evtimer_new(j->a->base, on_grace, j);
    struct timeval tv;
    ms_timeval(j->a->o.term_grace_s, &tv);
    evtimer_add(j->grace_timer, &tv);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct agent_job *j = arg;
    (void)fd, (void)what;
    log_info("job=%s attempt=%d timed out after %g s", j->id, j->attempt, job_timeout_s(j));
    job_kill(j, KILL_TIMEOUT, false);
}

static void on_progress_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    progress_check(arg, false);
}

void jobs_cancel(struct agent *a, json_t *items)
{
    size_t i;
    json_t *v;
    json_array_foreach(items, i, v)
    {
        /* {"job", "attempt"}: only that attempt (a later one of the same job may run here) */
        const char *id = json_string_value(json_object_get(v, "job"));
        json_t *att = json_object_get(v, "attempt");
        for (struct agent_job *j = a->jobs; id && j; j = j->next) {
            if (strcmp(j->id, id) || j->phase == PHASE_DONE) continue;
            if (json_is_integer(att) && json_integer_value(att) != j->attempt) continue;
            if (j->kill_why == KILL_CANCEL) continue; /* told again: on its way out already */
            log_info("job=%s attempt=%d cancelled by the server", j->id, j->attempt);
            job_kill(j, KILL_CANCEL, false);
        }
    }
}

void jobs_stop_all(struct agent *a, bool hard)
{
    for (struct agent_job *j = a->jobs; j; j = j->next)
        job_kill(j, KILL_STOP, hard);
}

/* --- starting ---------------------------------------------------------------------- */

const struct runner_ops *runner_for(const struct agent *a, const json_t *spec, const char **why)
{
    json_t *command = json_object_get(spec, "command");
    if (json_is_string(json_object_get(command, "image"))) {
        if (a->runtimes & PROTO_RT_PODMAN) return &runner_podman;
        if (a->runtimes & PROTO_RT_DOCKER) return &runner_docker;
        *why = "it names an image (command.image) and the agent has no container runtime";
        return NULL;
    }
    bool sandbox = json_is_true(json_object_get(command, "sandbox"));
    if (!sandbox && (a->runtimes & PROTO_RT_NATIVE)) return &runner_native;
    if (a->runtimes & PROTO_RT_BWRAP) return &runner_bwrap; /* --runtime bwrap: every job */
    *why = sandbox ? "it asks for a sandbox (command.sandbox) and the agent has no bubblewrap"
                   : "the agent runs containers only (--runtime) and the job names no image";
    return NULL;
}

/* Adds to the job's lease record what finds its process group after a restart (spool.h). */
static void spool_started(struct agent_job *j)
{
    struct agent *a = j->a;
    struct err e = ERR_INIT;
    json_t *run = json_pack("{s:I, s:I, s:s, s:I, s:s}", "pgid", (json_int_t)j->pid, "starttime",
                            (json_int_t)j->starttime, "boot_id", a->boot_id, "started_at_ms",
                            (json_int_t)j->started_at_ms, "runtime", j->runner->name);
    if (j->container) json_object_set_new(run, "container", json_string(j->container));
    if (spool_put_member(&a->spool, j->id, j->attempt, "lease", j->rec, "run", run, &e))
        log_error("job=%s attempt=%d %s", j->id, j->attempt, e.msg);
    json_decref(run);
}

/* Spawns the process (the work folder and its inputs are ready); fills e when it cannot run. */
static int job_spawn(struct agent_job *j, struct err *e)
{
    struct agent *a = j->a;
    char **envp = NULL;
    int rc;
    if (a->hard_stop)
        return err_set(e, ERR_UNAVAILABLE, "the agent was stopped before the job could start");
    char *progress_path = xasprintf("%s/" PROGRESS_FILE, j->work_dir);
    char *extra[5] = {
        xasprintf("DROVER_JOB_ID=%s", j->id),
        xasprintf("DROVER_ATTEMPT=%d", j->attempt),
        xasprintf("DROVER_WORK_DIR=%s", j->work_dir),
        xasprintf("DROVER_PROGRESS=%s", progress_path),
        NULL,
    };
    envp = agent_env_build(environ, json_object_get(json_object_get(j->spec, "command"), "env"),
                           extra);
    for (int i = 0; extra[i]; i++)
        free(extra[i]);
    progress_watch_init(&j->progress, progress_path);
    free(progress_path);

    struct spec_resources res;
    char *unenforced = NULL;
    spec_resources_get(j->spec, &res);
    if (j->runner->rt & PROTO_RT_CONTAINER) /* the engine enforces them (runner_container.c) */
        memset(&res, 0, sizeof(res));
    char group[UUID_STR_LEN + 16]; /* its cgroups: "<job>-<attempt>" */
    snprintf(group, sizeof(group), "%s-%d", j->id, j->attempt);
    if ((rc = limits_job_prepare(&a->limits, &j->limits, group, &res, &unenforced, e)))
        goto out;
    if (unenforced)
        log_warn("job=%s attempt=%d runs without its resources.{%s}: this agent cannot enforce "
                 "them (limits by %s)",
                 j->id, j->attempt, unenforced, limits_mech_name(a->limits.mech));
    free(unenforced);
    j->phase = PHASE_RUNNING;
    rc = j->runner->start(j, j->argv, envp, jobs_process_ended, e);
    limits_job_spawned(&j->limits);
    if (rc) goto out;
    a->m.jobs_started++;
    j->started = report_base(j, PROTO_REPORT_STARTED);
    j->started_ns = time_mono_ns();
    json_object_set_new(j->started, "pid", json_integer(j->pid));
    spool_started(j);
    log_info("job=%s attempt=%d started pid=%d slots=%d runtime=%s program=%s", j->id, j->attempt,
             (int)j->pid, j->slots, j->runner->name, j->argv[0]);
    struct timeval tick = {0, AGENT_PROGRESS_TICK_MS * 1000};
    j->progress_timer = event_new(a->base, -1, EV_PERSIST, on_progress_tick, j);
    evtimer_add(j->progress_timer, &tick);
    proto_kick(a);
out:
    agent_strv_free(envp);
    return rc;
}

/* A job that could not start: its slots back, its pipes closed, `error` reported. */
static void job_start_failed(struct agent_job *j, const char *error)
{
    (j->runner ? j->runner : &runner_native)->release(j);
    job_finish(j, PROTO_REASON_ERROR, 0, 0, error);
}

/* The runner's prepare is done (an image pulled): the timeout runs again, the job starts. */
static void on_prepared(struct agent_job *j, const char *error)
{
    struct err e = ERR_INIT;
    if (!j->preparing || j->phase != PHASE_STAGE_IN) return; /* cancelled meanwhile */
    j->preparing = false;
    jobs_timeout_resume(j);
    if (error)
        job_start_failed(j, error);
    else if (job_spawn(j, &e))
        job_start_failed(j, e.msg);
}

/* The inputs are in: the runner prepares (maybe later), then the job spawns. */
static int job_prepare(struct agent_job *j, struct err *e)
{
    int rc = j->runner->prepare ? j->runner->prepare(j, on_prepared, e) : 0;
    if (rc == 1) {
        j->phase = PHASE_STAGE_IN; /* a kill now ends it as while staging */
        j->preparing = true;
        jobs_timeout_pause(j);
        return 0;
    }
    return rc ? rc : job_spawn(j, e);
}

static void on_staged_in(struct agent_job *j, int rc, const char *error)
{
    struct err e = ERR_INIT;
    if (rc) {
        job_start_failed(j, error);
        return;
    }
    log_debug("job=%s attempt=%d inputs downloaded", j->id, j->attempt);
    if (job_prepare(j, &e)) job_start_failed(j, e.msg);
}

void jobs_timeout_pause(struct agent_job *j)
{
    if (!j->timeout_timer || !evtimer_pending(j->timeout_timer, NULL)) return;
    evtimer_del(j->timeout_timer);
    j->timeout_left_s -= (double)(time_mono_ns() - j->timeout_armed_ns) / 1e9;
}

void jobs_timeout_resume(struct agent_job *j)
{
    if (!j->timeout_timer || evtimer_pending(j->timeout_timer, NULL)) return;
    struct timeval tv;
    ms_timeval(j->timeout_left_s, &tv);
    j->timeout_armed_ns = time_mono_ns();
    evtimer_add(j->timeout_timer, &tv);
}

/*
 * The steps between a spooled lease and a running process or the start of its downloads:
 * the staging plan, argv, the work folder, the slots and the timeout. Fills e when the job
 * cannot run.
 */
static int job_start(struct agent_job *j, struct err *e)
{
    struct agent *a = j->a;
    json_t *command = NULL;
    int rc;
    if (a->hard_stop)
        return err_set(e, ERR_UNAVAILABLE, "the agent was stopped before the job could start");
    const char *why = NULL;
    if (!(j->runner = runner_for(a, j->spec, &why)))
        return err_set(e, ERR_UNAVAILABLE, "this agent cannot run the job: %s", why);
    /* first: the staging plan's paths are in it (released when the job is settled) */
    if (work_dir_make(j) != 0)
        return err_set(e, ERR_IO, "cannot create the work folder '%s': %s", j->work_dir,
                       strerror(errno));
    if ((rc = stage_plan(j, &j->stage, &command, e))) return rc;
    rc = agent_argv_build(command ? command : json_object_get(j->spec, "command"), &j->argv, e);
    json_decref(command);
    if (rc) return rc;
    j->slots_held = true;
    a->slots_used += j->slots;
    double timeout = job_timeout_s(j);
    if (timeout > 0) {
        struct timeval tv;
        ms_timeval(timeout, &tv);
        j->timeout_timer = evtimer_new(a->base, on_timeout, j);
        j->timeout_left_s = timeout;
        j->timeout_armed_ns = time_mono_ns();
        evtimer_add(j->timeout_timer, &tv);
    }
    if (stage_has_inputs(j->stage)) {
        j->phase = PHASE_STAGE_IN;
        log_debug("job=%s attempt=%d downloading its inputs", j->id, j->attempt);
        stage_in(j->stage, on_staged_in);
        return 0;
    }
    return job_prepare(j, e);
}

/*
 * --bench-noop: the job "runs" and ends at once, without a process, a work folder or
 * spool records: a started report, then finished with exit code 0 and duration_ms 0.
 * Only the protocol is exercised (benchmarks of the queue).
 */
static void job_noop(struct agent_job *j)
{
    j->a->m.jobs_started++;
    j->started = report_base(j, PROTO_REPORT_STARTED);
    job_finish(j, PROTO_REASON_EXIT, 0, 0, NULL);
}

void jobs_lease(struct agent *a, json_t *lease)
{
    const char *id = json_string_value(json_object_get(lease, "job"));
    json_t *attempt_v = json_object_get(lease, "attempt");
    json_t *spec = json_object_get(lease, "spec");
    struct err e = ERR_INIT;
    if (!id || !uuid_valid(id) || !json_is_integer(attempt_v) ||
        json_integer_value(attempt_v) < 1 || json_integer_value(attempt_v) > PROTO_ATTEMPT_MAX) {
        char *text = json_dumps(lease, JSON_COMPACT);
        log_error("the server sent a lease without a valid job id and attempt; ignored: %.300s",
                  text ? text : "?");
        free(text);
        return;
    }
    int attempt = (int)json_integer_value(attempt_v);
    struct agent_job *held = job_find(a, id, attempt);
    if (held && held->release && !held->finished_settled) {
        /* the server took it back and leased it here again before the release's answer came
           (or, after a restart, the lease record kept no spec): it runs from this lease */
        held->relet = true;
        if (!held->spec && json_is_object(spec)) held->spec = json_incref(spec);
        held->recovered = false;
        return;
    }
    if (held) {
        log_warn("job=%s attempt=%d leased again while the agent holds it; ignored", id, attempt);
        return;
    }
    struct agent_job *j = job_new(a, id, attempt, json_is_object(spec) ? spec : NULL);
    log_debug("job=%s attempt=%d leased", id, attempt);
    if (a->o.bench_noop) {
        job_noop(j);
        return;
    }
    /* prefetched (or a stale offer): it waits, after the jobs before it */
    bool wait = j->spec && (a->slots_waiting || a->slots_used + j->slots > a->o.slots);
    /* what recovery needs, without the spec: a recovered job never runs again (spool.h) */
    json_t *deadline = json_object_get(lease, "deadline");
    json_t *record = json_pack("{s:s, s:i, s:i, s:O}", "job", id, "attempt", attempt, "slots",
                               j->slots, "deadline", deadline ? deadline : json_null());
    if (wait) json_object_set_new(record, "waiting", json_true());
    int put = spool_put(&a->spool, id, attempt, "lease", record, &e);
    j->rec = record;
    if (put) {
        log_error("job=%s attempt=%d %s", id, attempt, e.msg);
        job_finish(j, PROTO_REASON_ERROR, 0, 0, "the agent cannot write its spool (see its log)");
        return;
    }
    j->recs |= REC_LEASE;
    if (!j->spec) {
        job_finish(j, PROTO_REASON_ERROR, 0, 0, "the lease has no spec");
    } else if (wait) {
        jobs_wait(j);
    } else if (job_start(j, &e)) {
        job_start_failed(j, e.msg);
    }
}

/* --- prefetched jobs ------------------------------------------------------------------- */

static void release_timer_arm(struct agent *a, int64_t due_ns)
{
    struct timeval tv;
    ms_timeval((double)(due_ns - time_mono_ns()) / 1e9 + 1e-6, &tv);
    evtimer_add(a->release_timer, &tv);
}

void jobs_wait(struct agent_job *j)
{
    struct agent *a = j->a;
    j->phase = PHASE_WAITING;
    j->waiting_ns = time_mono_ns();
    a->slots_waiting += j->slots;
    log_debug("job=%s attempt=%d waits for a slot", j->id, j->attempt);
    if (!evtimer_pending(a->release_timer, NULL))
        release_timer_arm(a, j->waiting_ns + (int64_t)PREFETCH_WAIT_MAX_MS * 1000000);
}

/* j (waiting) goes back to the server unstarted: a released report, then it is freed. */
static void job_give_back(struct agent_job *j)
{
    struct agent *a = j->a;
    a->slots_waiting -= j->slots;
    j->phase = PHASE_DONE;
    j->release = true;
    log_info("job=%s attempt=%d given back to the server after waiting %lld ms for a slot", j->id,
             j->attempt, (long long)((time_mono_ns() - j->waiting_ns) / 1000000));
    proto_kick(a);
    agent_check_done(a);
}

void jobs_release_waiting(struct agent *a)
{
    for (struct agent_job *j = a->jobs; j; j = j->next)
        if (j->phase == PHASE_WAITING) job_give_back(j);
}

/* The waiting jobs that fit start, in the order they were leased (a big one is not passed). */
static void on_start_waiting(evutil_socket_t fd, short what, void *arg)
{
    struct agent *a = arg;
    (void)fd, (void)what;
    for (struct agent_job *j = a->jobs, *next; j && a->slots_waiting; j = next) {
        next = j->next;
        if (j->phase != PHASE_WAITING) continue;
        if (a->slots_used + j->slots > a->o.slots) break;
        struct err e = ERR_INIT;
        a->slots_waiting -= j->slots;
        j->phase = PHASE_STAGE_IN; /* as a lease that starts at once */
        if (job_start(j, &e)) job_start_failed(j, e.msg);
    }
}

/* Gives back the jobs that waited PREFETCH_WAIT_MAX_MS; looks again when the next one will. */
static void on_release_timer(evutil_socket_t fd, short what, void *arg)
{
    struct agent *a = arg;
    (void)fd, (void)what;
    int64_t now = time_mono_ns(), max = (int64_t)PREFETCH_WAIT_MAX_MS * 1000000, next = 0;
    for (struct agent_job *j = a->jobs; j; j = j->next) {
        if (j->phase != PHASE_WAITING) continue;
        if (now - j->waiting_ns >= max)
            job_give_back(j);
        else if (!next || j->waiting_ns + max < next)
            next = j->waiting_ns + max;
    }
    if (next) release_timer_arm(a, next);
}

void jobs_init(struct agent *a)
{
    a->run_mean_us = -1;
    a->start_ev = event_new(a->base, -1, 0, on_start_waiting, a);
    event_priority_set(a->start_ev, AGENT_PRIO_IO);
    a->release_timer = evtimer_new(a->base, on_release_timer, a);
}

/* --- settlement ---------------------------------------------------------------------- */

void jobs_gc(struct agent *a)
{
    struct err fe = ERR_INIT;
    spool_hold(&a->spool); /* the removals below in one write */
    for (struct agent_job *j = a->jobs, *next; j; j = next) {
        next = j->next;
        if (j->phase != PHASE_DONE || !j->finished_settled || j->batched) continue;
        /* the lease last: a record left by a failure is still found by its lease */
        static const struct {
            unsigned bit;
            const char *kind;
        } recs[] = {{REC_STARTED, "started"},
                    {REC_RUN, "run"},
                    {REC_FINISHED, "finished"},
                    {REC_LEASE, "lease"}};
        for (size_t k = 0; k < ARRAY_SIZE(recs); k++) {
            struct err e = ERR_INIT;
            if (!(j->recs & recs[k].bit)) continue;
            if (spool_del(&a->spool, j->id, j->attempt, recs[k].kind, &e)) {
                log_warn("job=%s attempt=%d %s", j->id, j->attempt, e.msg);
                break;
            }
        }
        if (!a->o.keep_work && !a->o.bench_noop && !j->release) work_dir_release(a, j);
        log_debug("job=%s attempt=%d settled", j->id, j->attempt);
        job_free(j);
    }
    if (spool_flush(&a->spool, &fe)) log_warn("%s", fe.msg);
    agent_check_done(a);
}

void jobs_free_all(struct agent *a)
{
    while (a->jobs)
        job_free(a->jobs);
    timer_free(&a->start_ev);
    timer_free(&a->release_timer);
}

/* --- recovery ---------------------------------------------------------------------------- */

/* A job of the previous run, for the sweep of its processes outside its group. */
/* Whether `run` ("run" of spool.h) describes a process started since the machine booted. */
static bool run_this_boot(const struct agent *a, json_t *run)
{
    json_int_t pgid = json_integer_value(json_object_get(run, "pgid"));
    const char *boot = json_string_value(json_object_get(run, "boot_id"));
    return pgid > 1 && pgid <= 4194304 && boot && !strcmp(boot, a->boot_id);
}

/* Kills the process group `run` names ("run" of spool.h), if it is still the job's. */
void jobs_kill_survivors(struct agent *a, struct agent_job *j, json_t *run)
{
    json_int_t pgid = json_integer_value(json_object_get(run, "pgid"));
    unsigned long long saved =
        (unsigned long long)json_integer_value(json_object_get(run, "starttime"));
    if (!run_this_boot(a, run)) return; /* never started, or before the machine rebooted */
    if (proc_kill_group((pid_t)pgid, saved))
        log_warn("job=%s attempt=%d its processes (group %lld) survived the agent; killed", j->id,
                 j->attempt, (long long)pgid);
}

int jobs_recover(struct agent *a, struct err *e)
{
    struct spool_key *keys;
    size_t n;
    int rc = spool_list(&a->spool, &keys, &n, e);
    if (rc) return rc;
    struct proc_job_key *survivors = n ? xcalloc(n, sizeof(*survivors)) : NULL;
    size_t nsurvivors = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *lease = NULL, *started = NULL, *runrec = NULL, *finished = NULL;
        const char *id = keys[i].job;
        int attempt = keys[i].attempt;
        static const char *const kinds[] = {"lease", "started", "run", "finished"};
        json_t **docs[] = {&lease, &started, &runrec, &finished};
        for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
            struct err ge = ERR_INIT;
            int grc = spool_get(&a->spool, id, attempt, kinds[k], docs[k], &ge);
            if (grc && grc != ERR_NOTFOUND) log_error("job=%s attempt=%d %s", id, attempt, ge.msg);
        }
        struct agent_job *j = job_new(a, id, attempt, json_object_get(lease, "spec"));
        json_t *slots = json_object_get(lease, "slots"); /* "spec" only from older agents */
        if (json_is_integer(slots) && json_integer_value(slots) > 0 &&
            json_integer_value(slots) <= PROTO_SLOTS_MAX)
            j->slots = (int)json_integer_value(slots);
        j->recovered = true;
        j->recs = REC_LEASE | REC_STARTED | REC_RUN | REC_FINISHED; /* whatever is there */
        /* where the process group is described: the started record (its "run" is not part
         * of the report), else the run record, else the lease (agents before the run facts
         * moved out of it) */
        json_t *run = json_incref(json_object_get(started, "run"));
        if (run)
            json_object_del(started, "run");
        else if (json_object_get(runrec, "run"))
            run = json_incref(json_object_get(runrec, "run"));
        else if (json_is_object(json_object_get(lease, "run"))) /* this layout (spool.h) */
            run = json_incref(json_object_get(lease, "run"));
        else
            run = json_incref(lease);
        if (!finished && json_is_object(json_object_get(lease, "finished")))
            finished = json_incref(json_object_get(lease, "finished"));
        j->rec = json_incref(json_is_object(lease) ? lease : NULL);
        j->started = started;
        if (run_this_boot(a, run)) { /* its processes outside its group: proc_kill_escaped */
            struct proc_job_key *sk = &survivors[nsurvivors++];
            snprintf(sk->id, sizeof(sk->id), "%s", id);
            sk->attempt = attempt;
            sk->starttime =
                (unsigned long long)json_integer_value(json_object_get(run, "starttime"));
        }
        /* when its process started (the started report's started_ms_ago, proto.c) */
        j->started_at_ms = json_integer_value(json_object_get(run, "started_at_ms"));
        if (finished) {
            j->finished = finished;
            j->phase = PHASE_DONE;
            log_info("job=%s attempt=%d recovered from the spool with its result (reason=%s)", id,
                     attempt, json_string_value(json_object_get(finished, "reason")));
        } else if (json_is_true(json_object_get(lease, "waiting")) && !started && !runrec &&
                   !json_object_get(lease, "run")) {
            /* prefetched, and no process of it ran (it waited, or staged): given back */
            j->phase = PHASE_DONE;
            j->release = true;
            log_info("job=%s attempt=%d recovered from the spool unstarted; given back to the "
                     "server",
                     id, attempt);
        } else {
            /* by the runtime the started record names (native before runtimes existed) */
            const char *rt = json_string_value(json_object_get(run, "runtime"));
            const struct runner_ops *r = &runner_native;
            if (rt && !strcmp(rt, runner_bwrap.name)) r = &runner_bwrap;
            if ((rt && !strcmp(rt, runner_podman.name)) || (!started && a->engine))
                r = &runner_podman; /* a lease without started record may have a container */
            if (rt && !strcmp(rt, runner_docker.name)) r = &runner_docker;
            r->recover(a, j, run);
            if (j->started_at_ms > 0) {
                j->start_ns = 1;
                j->end_ns = 1 + (time_now_ms() - j->started_at_ms) * 1000000;
            }
            job_finish(j, PROTO_REASON_ERROR, 0, 0,
                       "the agent restarted while the job was running");
        }
        if (!a->o.keep_work) agent_remove_tree(j->work_dir);
        json_decref(lease);
        json_decref(runrec);
        json_decref(run);
    }
    proc_kill_escaped(survivors, nsurvivors);
    if (n) log_info("%zu job(s) recovered from the spool; their results will be delivered", n);
    free(survivors);
    free(keys);
    return 0;
}
