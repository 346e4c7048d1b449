/*
 * proc.c - see proc.h. Reads of /proc race with the processes they describe:
 * every reader here treats a missing or short file as "that process is gone".
 */
#include "agent/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/xalloc.h"

#define PROC_TREE_MAX 65536
#define PROC_ENV_MAX (1 << 20)

/* Reads a small /proc file whole into `out` (NUL-terminated); the length, or -1. */
static ssize_t read_small(const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = 0;
    while (len < cap - 1) {
        ssize_t n = read(fd, out + len, cap - 1 - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(fd);
    out[len] = '\0';
    return (ssize_t)len;
}

bool proc_stat_read(pid_t pid, struct proc_stat *st)
{
    char path[64], text[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (read_small(path, text, sizeof(text)) <= 0) return false;
    /* "pid (comm) state ppid ..." - comm may hold spaces and parentheses: start after the last ')'
     */
    char *p = strrchr(text, ')');
    if (!p || p[1] != ' ' || !p[2]) return false;
    st->state = p[2];
    p += 3; /* at the space before field 4 */
    st->ppid = (pid_t)strtol(p + 1, NULL, 10);
    for (int field = 4; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    if (!p) return false;
    st->starttime = strtoull(p + 1, NULL, 10);
    return true;
}

unsigned long long proc_starttime(pid_t pid)
{
    struct proc_stat st;
    return proc_stat_read(pid, &st) ? st.starttime : 0;
}

static void pids_add(pid_t **v, size_t *n, size_t *cap, pid_t pid)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *v = xrealloc(*v, *cap * sizeof(**v));
    }
    (*v)[(*n)++] = pid;
}

/* A name of /proc or /proc/PID/task that is a number: that number, else 0. */
static pid_t name_pid(const char *name)
{
    char *end;
    long v = strtol(name, &end, 10);
    return *name >= '1' && *name <= '9' && !*end && v > 0 && v < (1L << 30) ? (pid_t)v : 0;
}

size_t proc_all(pid_t **out)
{
    size_t n = 0, cap = 0;
    *out = NULL;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        pid_t pid = name_pid(de->d_name);
        if (pid) pids_add(out, &n, &cap, pid);
    }
    closedir(d);
    return n;
}

/* The kernel lacks /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN): every process's stat. */
static size_t children_by_scan(pid_t pid, pid_t **out)
{
    pid_t *all;
    size_t n = proc_all(&all), k = 0, cap = 0;
    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        struct proc_stat st;
        if (proc_stat_read(all[i], &st) && st.ppid == pid) pids_add(out, &k, &cap, all[i]);
    }
    free(all);
    return k;
}

/* The pids in a children file's text ("1 2 3 "), added to *out. */
static void children_parse(const char *p, pid_t **out, size_t *n, size_t *cap)
{
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (v > 0) pids_add(out, n, cap, (pid_t)v);
        p = end;
    }
}

/* Appends what fd holds from offset 0 (pread: a file kept open is read anew), until its end,
   an error, or at least `max` bytes. */
static void read_whole(int fd, struct buf *b, size_t max)
{
    char chunk[4096];
    ssize_t r;
    while (b->len < max && (r = pread(fd, chunk, sizeof(chunk), (off_t)b->len)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        buf_add(b, chunk, (size_t)r);
    }
}

size_t proc_children(pid_t pid, pid_t **out)
{
    static int have_files = -1; /* CONFIG_PROC_CHILDREN */
    char path[96];
    size_t n = 0, cap = 0;
    *out = NULL;
    if (have_files < 0) {
        snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
        have_files = access(path, F_OK) == 0;
    }
    if (!have_files) return children_by_scan(pid, out);
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *de;
    struct buf text = BUF_INIT;
    while ((de = readdir(d))) {
        pid_t tid = name_pid(de->d_name);
        if (!tid) continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)tid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue; /* the thread ended meanwhile */
        buf_reset(&text);
        read_whole(fd, &text, SIZE_MAX);
        close(fd);
        children_parse(buf_str(&text), out, &n, &cap);
    }
    closedir(d);
    buf_release(&text);
    return n;
}

size_t proc_orphans_home(pid_t **out)
{
    static int fd = -2; /* the main thread's children file, kept open (-1: none) */
    if (fd == -2) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) return proc_children(getpid(), out);
    size_t n = 0, cap = 0;
    struct buf text = BUF_INIT;
    *out = NULL;
    read_whole(fd, &text, SIZE_MAX); /* from offset 0: the children listed anew */
    children_parse(buf_str(&text), out, &n, &cap);
    buf_release(&text);
    return n;
}

/* Process `pid`'s environment (NUL-separated, as /proc has it) into env; false when it
   cannot be read. */
static bool read_environ(pid_t pid, struct buf *env)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    read_whole(fd, env, PROC_ENV_MAX);
    close(fd);
    return true;
}

bool proc_env_get(pid_t pid, const char *name, char *out, size_t n)
{
    struct buf env = BUF_INIT;
    if (!read_environ(pid, &env)) return false;
    size_t nl = strlen(name);
    bool found = false;
    for (size_t off = 0; off < env.len && !found;) {
        const char *e = env.data + off;
        size_t len = strnlen(e, env.len - off);
        if (len > nl && e[nl] == '=' && !strncmp(e, name, nl) && len - nl - 1 < n) {
            memcpy(out, e + nl + 1, len - nl - 1);
            out[len - nl - 1] = '\0';
            found = true;
        }
        off += len + 1;
    }
    buf_release(&env);
    return found;
}

bool proc_job_env(pid_t pid, char id[UUID_STR_LEN], int *attempt)
{
    struct buf env = BUF_INIT;
    if (!read_environ(pid, &env)) return false;
    bool have_id = false, have_attempt = false;
    for (size_t off = 0; off < env.len;) {
        const char *e = env.data + off;
        size_t len = strnlen(e, env.len - off);
        if (!have_id && len == 14 + UUID_STR_LEN - 1 && !strncmp(e, "DROVER_JOB_ID=", 14)) {
            memcpy(id, e + 14, UUID_STR_LEN - 1);
            id[UUID_STR_LEN - 1] = '\0';
            have_id = uuid_valid(id);
        } else if (!have_attempt && len > 15 && len < 30 && !strncmp(e, "DROVER_ATTEMPT=", 15)) {
            char num[16];
            snprintf(num, sizeof(num), "%.*s", (int)(len - 15), e + 15);
            char *end;
            long v = strtol(num, &end, 10);
            have_attempt = !*end && v >= 1 && v <= 1000000;
            *attempt = (int)v;
        }
        off += len + 1;
    }
    buf_release(&env);
    return have_id && have_attempt;
}

/*
 * Signals `pid` if it is alive and still the process meant (see proc.h): through a pidfd
 * opened before the second look at its start time, so the signal reaches the process
 * checked, or no one. `from` receives its stat.
 */
static bool signal_checked(pid_t pid, pid_t ppid, pid_t ppid_alt, unsigned long long starttime,
                           int sig, struct proc_stat *from)
{
    struct proc_stat st, again;
    if (!proc_stat_read(pid, &st) || st.state == 'Z' || st.state == 'X') return false;
    if (ppid && st.ppid != ppid && st.ppid != ppid_alt) return false;
    if (starttime && st.starttime != starttime) return false;
    *from = st;
    int fd = -1;
#ifdef SYS_pidfd_open
    fd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
    if (!proc_stat_read(pid, &again) || again.starttime != st.starttime) {
        if (fd >= 0) close(fd);
        return false;
    }
    int rc = -1;
#ifdef SYS_pidfd_send_signal
    if (fd >= 0) rc = (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
#endif
    if (fd < 0) rc = kill(pid, sig); /* a kernel without pidfds: the check above, then kill */
    if (fd >= 0) close(fd);
    return rc == 0;
}

size_t proc_signal_tree(pid_t root, pid_t root_ppid, unsigned long long root_starttime, int sig)
{
    struct node {
        pid_t pid, parent;
    };
    struct node *stack = xmalloc(64 * sizeof(*stack));
    size_t n = 0, cap = 64, visited = 0, signalled = 0;
    pid_t self = getpid();
    stack[n++] = (struct node){root, root_ppid};
    while (n > 0 && visited < PROC_TREE_MAX) {
        struct node at = stack[--n];
        bool is_root = visited++ == 0;
        struct proc_stat st;
        /* its children first: a process killed first hands them to its reaper at once */
        pid_t *kids;
        size_t nkids = proc_children(at.pid, &kids);
        if (signal_checked(at.pid, at.parent, is_root ? at.parent : self,
                           is_root ? root_starttime : 0, sig, &st)) {
            signalled++;
            for (size_t i = 0; i < nkids; i++) {
                if (n == cap) {
                    cap *= 2;
                    stack = xrealloc(stack, cap * sizeof(*stack));
                }
                stack[n++] = (struct node){kids[i], at.pid};
            }
        }
        free(kids);
    }
    free(stack);
    return signalled;
}

bool proc_kill_group(pid_t pgid, unsigned long long starttime)
{
    unsigned long long now = proc_starttime(pgid);
    bool ours = now ? now == starttime : kill(-pgid, 0) == 0;
    return ours && kill(-pgid, SIGKILL) == 0;
}

void proc_kill_escaped(const struct proc_job_key *keys, size_t nkeys)
{
    pid_t *all;
    size_t n = nkeys ? proc_all(&all) : 0;
    for (size_t i = 0; i < n; i++) {
        char id[UUID_STR_LEN];
        int attempt;
        if (all[i] == getpid() || !proc_job_env(all[i], id, &attempt)) continue;
        for (size_t k = 0; k < nkeys; k++) {
            if (keys[k].attempt != attempt || strcmp(keys[k].id, id)) continue;
            unsigned long long born = proc_starttime(all[i]);
            if (!born || born < keys[k].starttime) break; /* before the job: not its own */
            size_t killed = proc_signal_tree(all[i], 0, born, SIGKILL);
            if (killed)
                log_warn("job=%s attempt=%d %zu of its processes (pid %d, outside its group) "
                         "survived the agent; killed",
                         id, attempt, killed, (int)all[i]);
            break;
        }
    }
    if (nkeys) free(all);
}
