/*
 * runner_bwrap.c - the sandbox runner: the job's program runs inside
 * bubblewrap (bwrap), which runs as the job's process-group leader through
 * the native runner (runner_native.c: pipes, signals, reaping, the sweep are
 * the same). Inside the sandbox the job sees:
 *
 *   - the host's filesystem read-only, with its own /dev, /proc (its own pid
 *     namespace: it sees only its own processes) and an empty /tmp;
 *   - the agent's work folder hidden (an empty tmpfs: no spool, no other job's
 *     folder), and its own work folder read-write at the same path, so the
 *     paths in DROVER_WORK_DIR, DROVER_PROGRESS and its arguments hold;
 *   - the agent's --token-file, its input cache and each --hide path hidden
 *     (drover dev hides its server's data folder: the admin token, the store);
 *   - no network (its own empty network namespace) unless the spec says
 *     command.network: true.
 *
 * --die-with-parent ties the sandbox to bwrap, and bwrap to the agent (the
 * native runner's parent-death signal). bwrap reports a program killed by a
 * signal as exit code 128 + the signal, so a sandboxed job ends with reason
 * `exit` there, not `signal`.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/xalloc.h"

#define BWRAP "bwrap"

/* Adds the bwrap arguments that hide `path` (a folder under an empty tmpfs, a file under
   /dev/null), if it exists, to v at *k. */
static void hide(const char *path, char **v, size_t *k)
{
    struct stat sb;
    char *real = path ? realpath(path, NULL) : NULL;
    if (!real || stat(real, &sb) != 0) {
        free(real);
        return;
    }
    if (S_ISDIR(sb.st_mode)) {
        v[(*k)++] = xstrdup("--tmpfs");
    } else {
        v[(*k)++] = xstrdup("--ro-bind");
        v[(*k)++] = xstrdup("/dev/null");
    }
    v[(*k)++] = real;
}

/* The bwrap command line before the job's own argv (a new NULL-terminated vector). */
static char **bwrap_argv(const struct agent_job *j, char **argv)
{
    json_t *command = json_object_get(j->spec, "command");
    bool network = json_is_true(json_object_get(command, "network"));
    const struct agent_opts *o = &j->a->o;
    /* clang-format off */
    const char *pre[] = {
        BWRAP, "--die-with-parent",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
    };
    const char *post[] = {
        "--tmpfs", o->work_dir,                /* the spool, other jobs' folders */
        "--bind", j->work_dir, j->work_dir,
        "--chdir", j->work_dir,
    };
    /* clang-format on */
    size_t npre = ARRAY_SIZE(pre), npost = ARRAY_SIZE(post), nargv = 0;
    while (argv[nargv])
        nargv++;
    size_t nhide = 3 * (o->nhide + 2);
    char **out = xcalloc(npre + nhide + npost + nargv + 3, sizeof(*out));
    size_t k = 0;
    for (size_t i = 0; i < npre; i++)
        out[k++] = xstrdup(pre[i]);
    /* what the host keeps from jobs: the agent's token, its input cache (other jobs' inputs)
       and --hide (last: a folder hides what it holds); the work folder comes after */
    hide(o->token_file, out, &k);
    hide(o->cache_dir, out, &k);
    for (size_t i = 0; i < o->nhide; i++)
        hide(o->hide[i], out, &k);
    for (size_t i = 0; i < npost; i++)
        out[k++] = xstrdup(post[i]);
    if (!network) out[k++] = xstrdup("--unshare-net");
    out[k++] = xstrdup("--");
    for (size_t i = 0; i < nargv; i++)
        out[k++] = xstrdup(argv[i]);
    out[k] = NULL;
    return out;
}

/*
 * 0 when `program` can be run (as execvp inside the sandbox would find it: the host's files,
 * PATH from envp, a relative path from the work folder), else why not (an errno). The native
 * runner says "cannot start" for a program it cannot start; inside bwrap that would be an
 * exit status 1 and a line on stderr.
 */
static int findable(const char *program, char **envp, const char *work_dir)
{
    char path[PATH_MAX];
    if (strchr(program, '/')) {
        if (program[0] == '/')
            snprintf(path, sizeof(path), "%s", program);
        else
            snprintf(path, sizeof(path), "%s/%s", work_dir, program);
        return access(path, X_OK) == 0 ? 0 : errno;
    }
    const char *dirs = NULL;
    for (size_t i = 0; envp && envp[i] && !dirs; i++)
        if (!strncmp(envp[i], "PATH=", 5)) dirs = envp[i] + 5;
    if (!dirs) dirs = getenv("PATH");
    if (!dirs) dirs = "/usr/local/bin:/usr/bin:/bin";
    int why = ENOENT;
    for (const char *d = dirs; *d; d += strcspn(d, ":"), d += *d == ':') {
        int n = (int)strcspn(d, ":");
        if (n) /* an empty entry is the working folder: the work folder, in the sandbox */
            snprintf(path, sizeof(path), "%.*s/%s", n, d, program);
        else
            snprintf(path, sizeof(path), "%s/%s", work_dir, program);
        if (access(path, X_OK) == 0) return 0;
        if (errno == EACCES) why = EACCES;
    }
    return why;
}

static int bwrap_start(struct agent_job *j, char **argv, char **envp, runner_ended_fn ended,
                       struct err *e)
{
    int why = findable(argv[0], envp, j->work_dir);
    if (why) return err_set(e, ERR_IO, "cannot start '%s': %s", argv[0], strerror(why));
    char **full = bwrap_argv(j, argv);
    j->ended = j->on_ended = ended;
    int rc = runner_native_start(j, full, envp, e);
    for (size_t i = 0; full[i]; i++)
        free(full[i]);
    free(full);
    return rc;
}

char **runner_bwrap_test_argv(void)
{
    static const char *const argv[] = {BWRAP,
                                       "--die-with-parent",
                                       "--unshare-pid",
                                       "--unshare-net",
                                       "--ro-bind",
                                       "/",
                                       "/",
                                       "--dev",
                                       "/dev",
                                       "--proc",
                                       "/proc",
                                       "--",
                                       "true",
                                       NULL};
    size_t n = ARRAY_SIZE(argv);
    char **v = xcalloc(n, sizeof(*v));
    for (size_t i = 0; i + 1 < n; i++)
        v[i] = xstrdup(argv[i]);
    return v;
}

const struct runner_ops runner_bwrap = {
    .name = "bwrap",
    .rt = PROTO_RT_BWRAP,
    .start = bwrap_start,
    .signal = runner_native_signal,
    .release = runner_native_release,
    .recover = jobs_kill_survivors,
};
