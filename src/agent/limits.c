/*
 * limits.c - see limits.h: resource limits by cgroup v2, cgroup v1 or rlimits.
 *
 * Where the agent's own groups are: /proc/self/cgroup names, for each
 * hierarchy, the group this process is in; /proc/self/mountinfo names where
 * each hierarchy is mounted and which of its groups the mount shows at its
 * root. Everything this file creates or removes lies below those own groups.
 */
#include "agent/limits.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/xalloc.h"

#define SELF_CGROUP "/proc/self/cgroup"
#define SELF_MOUNTINFO "/proc/self/mountinfo"
#define CPU_PERIOD_US 100000
#define SIGNAL_MAX_PIDS 65536 /* processes read from one group's cgroup.procs */

static const char *const ctl_names[LIMITS_NCTL] = {"memory", "pids", "cpu"};
static const char *const limit_names[LIMITS_NCTL] = {"memory_mb", "pids", "cpus"};

const char *limits_mech_name(enum limits_mech m)
{
    switch (m) {
    case LIMITS_CGROUP2:
        return "cgroup2";
    case LIMITS_CGROUP1:
        return "cgroup1";
    case LIMITS_RLIMIT:
        return "rlimit";
    case LIMITS_NONE:
        break;
    }
    return "none";
}

/* --- small file helpers --------------------------------------------------- */

/* Reads a small file (up to cap - 1 bytes) into out, NUL-terminated; -1 on failure. */
static ssize_t read_text(const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t n = 0;
    while (n < cap - 1) {
        ssize_t r = read(fd, out + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    out[n] = '\0';
    return (ssize_t)n;
}

/* Writes `text` to dir/file; 0 or -1 with errno. */
static int write_file(const char *dir, const char *file, const char *text)
{
    char *path = xasprintf("%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    free(path);
    if (fd < 0) return -1;
    ssize_t w = write(fd, text, strlen(text));
    int saved = errno;
    close(fd);
    errno = saved;
    return w == (ssize_t)strlen(text) ? 0 : -1;
}

static bool file_exists(const char *dir, const char *file)
{
    char *path = xasprintf("%s/%s", dir, file);
    bool ok = access(path, F_OK) == 0;
    free(path);
    return ok;
}

/* Whether the space-separated `list` holds `word` (cgroup.controllers, subtree_control). */
static bool has_word(const char *list, const char *word, char sep)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == sep) && (p[n] == sep || p[n] == '\0' || p[n] == '\n'))
            return true;
    return false;
}

/* --- where the agent's groups are ----------------------------------------- */

/* Mountinfo escapes spaces and such as \ooo: undone in place. */
static void unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

/*
 * The folder of the group `path` (as /proc/self/cgroup shows it) of the hierarchy mounted
 * with fstype `fstype` (and, for cgroup v1, the controller `ctl` among its options), from
 * the mount table `mountinfo` (/proc/self/mountinfo's format), or NULL.
 */
char *limits_group_dir(const char *mountinfo, const char *fstype, const char *ctl, const char *path)
{
    FILE *f = fopen(mountinfo, "re");
    if (!f) return NULL;
    char *line = NULL, *dir = NULL;
    size_t cap = 0;
    while (!dir && getline(&line, &cap, f) > 0) {
        char *sep = strstr(line, " - ");
        if (!sep) continue;
        *sep = '\0';
        char *save = NULL, *fields[5] = {0};
        char *t = strtok_r(line, " ", &save);
        for (int i = 0; t && i < 5; i++, t = strtok_r(NULL, " ", &save))
            fields[i] = t;
        char *save2 = NULL;
        char *type = strtok_r(sep + 3, " ", &save2);
        strtok_r(NULL, " ", &save2); /* the source */
        char *opts = strtok_r(NULL, " \n", &save2);
        if (!fields[4] || !type || strcmp(type, fstype) != 0) continue;
        if (ctl && (!opts || !has_word(opts, ctl, ','))) continue;
        char *root = fields[3], *mnt = fields[4];
        unescape(root);
        unescape(mnt);
        size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
        if (rl && (strncmp(path, root, rl) != 0 || (path[rl] != '/' && path[rl] != '\0')))
            continue; /* this mount does not show our group */
        const char *rest = path + rl;
        dir = xasprintf("%s%s", mnt, strcmp(rest, "/") == 0 ? "" : rest);
    }
    free(line);
    fclose(f);
    return dir;
}

/*
 * The path of the group in the v1 hierarchy with `ctl`, or (ctl NULL) in v2, from `cgroup`
 * (/proc/PID/cgroup's format), or NULL.
 */
char *limits_own_path(const char *cgroup, const char *ctl)
{
    FILE *f = fopen(cgroup, "re");
    if (!f) return NULL;
    char *line = NULL, *path = NULL;
    size_t cap = 0;
    while (!path && getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = *c2 = '\0'; /* line: the hierarchy's id, c1 + 1: its controllers */
        bool v2 = strcmp(line, "0") == 0 && c1[1] == '\0';
        if (ctl ? (!v2 && has_word(c1 + 1, ctl, ',')) : v2) path = xstrdup(c2 + 1);
    }
    free(line);
    fclose(f);
    return path;
}

static char *child_rel(const char *parent, const char *name)
{
    return xasprintf("%s/%s", strcmp(parent, "/") == 0 ? "" : parent, name);
}

/* Whether this process is the only one in the group at `dir` (cgroup.procs). */
static bool alone_in(const char *dir)
{
    char text[256], mine[32];
    char *file = xasprintf("%s/cgroup.procs", dir);
    ssize_t n = read_text(file, text, sizeof(text));
    free(file);
    snprintf(mine, sizeof(mine), "%d\n", (int)getpid());
    return n > 0 && strcmp(text, mine) == 0;
}

/*
 * cgroup v2: enables `ctl` for the children of the group at `dir`. A group with processes
 * cannot have children with controllers (the "no internal processes" rule): when the agent
 * is alone in its group (a systemd service with Delegate=yes), it moves itself into a leaf
 * below it, drover-agent, first. 0 or -1 with errno.
 */
static int v2_enable(const char *dir, const char *ctl)
{
    char plus[32];
    snprintf(plus, sizeof(plus), "+%s", ctl);
    if (write_file(dir, "cgroup.subtree_control", plus) == 0) return 0;
    if (errno != EBUSY || !alone_in(dir)) return -1;
    char *leaf = xasprintf("%s/drover-agent", dir);
    int rc =
        (mkdir(leaf, 0755) == 0 || errno == EEXIST) ? write_file(leaf, "cgroup.procs", "0") : -1;
    if (rc == 0) log_info("moved the agent into the cgroup '%s' (to delegate below it)", leaf);
    free(leaf);
    return rc ? -1 : write_file(dir, "cgroup.subtree_control", plus);
}

/* Fills own/base for controller c at the group `dir`, shown as `path`. */
static void set_group(struct limits *l, int c, const char *dir, const char *path,
                      const char *instance)
{
    char *name = xasprintf("drover-%s", instance);
    l->own[c] = xstrdup(dir);
    l->base[c] = xasprintf("%s/%s", dir, name);
    l->base_rel[c] = child_rel(path, name);
    free(name);
}

/* cgroup v2: the controllers (bits) the agent can use below its own group. */
static unsigned try_v2(struct limits *l, const char *instance, struct buf *why)
{
    char *path = limits_own_path(SELF_CGROUP, NULL);
    char *dir = path ? limits_group_dir(SELF_MOUNTINFO, "cgroup2", NULL, path) : NULL;
    char have[512], on[512];
    unsigned got = 0;
    if (!dir) {
        buf_addf(why, "cgroup v2: no hierarchy holds this agent's group; ");
        goto out;
    }
    char *f1 = xasprintf("%s/cgroup.controllers", dir),
         *f2 = xasprintf("%s/cgroup.subtree_control", dir);
    bool read = read_text(f1, have, sizeof(have)) >= 0 && read_text(f2, on, sizeof(on)) >= 0;
    free(f1);
    free(f2);
    if (!read || access(dir, W_OK) != 0) {
        buf_addf(why, "cgroup v2: the group '%s' cannot be read or written; ", dir);
        goto out;
    }
    for (int c = 0; c < LIMITS_NCTL; c++) {
        if (!has_word(have, ctl_names[c], ' ')) continue;
        if (!has_word(on, ctl_names[c], ' ') && v2_enable(dir, ctl_names[c])) {
            buf_addf(why, "cgroup v2: cannot enable %s below '%s' (%s: not delegated); ",
                     ctl_names[c], dir, strerror(errno));
            continue;
        }
        got |= 1u << c;
    }
    if (!got && !why->len)
        buf_addf(why, "cgroup v2: the group '%s' offers none of memory, pids, cpu; ", dir);
    for (int c = 0; c < LIMITS_NCTL; c++)
        if (got & (1u << c)) set_group(l, c, dir, path, instance);
out:
    free(path);
    free(dir);
    return got;
}

/* cgroup v1: the controllers (bits) whose hierarchy lets the agent make groups below its own. */
static unsigned try_v1(struct limits *l, const char *instance, struct buf *why)
{
    unsigned got = 0;
    for (int c = 0; c < LIMITS_NCTL; c++) {
        char *path = limits_own_path(SELF_CGROUP, ctl_names[c]);
        char *dir = path ? limits_group_dir(SELF_MOUNTINFO, "cgroup", ctl_names[c], path) : NULL;
        if (!dir)
            buf_addf(why, "cgroup v1: no %s hierarchy; ", ctl_names[c]);
        else if (access(dir, W_OK) != 0 || !file_exists(dir, "cgroup.procs"))
            buf_addf(why, "cgroup v1: cannot write to '%s' (%s); ", dir, strerror(errno));
        else {
            set_group(l, c, dir, path, instance);
            got |= 1u << c;
        }
        free(path);
        free(dir);
    }
    return got;
}

static void clear_groups(struct limits *l)
{
    for (int c = 0; c < LIMITS_NCTL; c++) {
        free(l->own[c]);
        free(l->base[c]);
        free(l->base_rel[c]);
        l->own[c] = l->base[c] = l->base_rel[c] = NULL;
    }
}

/* Makes and removes the base group of each controller: proof that the agent may. */
static bool probe(struct limits *l, struct buf *why)
{
    for (int c = 0; c < LIMITS_NCTL; c++) {
        if (!l->base[c]) continue;
        if (mkdir(l->base[c], 0755) != 0 && errno != EEXIST) {
            buf_addf(why, "cannot create the cgroup '%s': %s; ", l->base[c], strerror(errno));
            return false;
        }
        rmdir(l->base[c]); /* fails for a base shared by two controllers: removed already */
    }
    return true;
}

int limits_init(struct limits *l, const char *mode, const char *instance, struct err *e)
{
    memset(l, 0, sizeof(*l));
    struct buf why = BUF_INIT;
    int rc = 0;
    bool cgroups = !strcmp(mode, "auto") || !strcmp(mode, "cgroup");
    if (!cgroups && strcmp(mode, "rlimit") && strcmp(mode, "none")) {
        rc = err_set(e, ERR_INVALID, "--limits must be auto, cgroup, rlimit or none, not '%s'",
                     mode);
        goto out;
    }
    unsigned got = 0;
    if (cgroups) {
        /* the hierarchy that offers more of the three controllers (v2 on a tie): a hybrid
         * system's v2 hierarchy offers none, a pure v2 one all */
        struct limits v1 = {0};
        unsigned got2 = try_v2(l, instance, &why), got1 = try_v1(&v1, instance, &why);
        if (__builtin_popcount(got1) > __builtin_popcount(got2)) {
            clear_groups(l);
            memcpy(l->own, v1.own, sizeof(l->own));
            memcpy(l->base, v1.base, sizeof(l->base));
            memcpy(l->base_rel, v1.base_rel, sizeof(l->base_rel));
            got = got1;
            l->mech = LIMITS_CGROUP1;
        } else {
            clear_groups(&v1);
            got = got2;
            l->mech = got ? LIMITS_CGROUP2 : LIMITS_NONE;
        }
    }
    if (got) {
        limits_recover(l); /* first: what an earlier run left must not fail the probe */
        if (!probe(l, &why)) {
            clear_groups(l);
            got = 0;
            l->mech = LIMITS_NONE;
        }
    }
    if (!got && !strcmp(mode, "cgroup")) {
        rc = err_set(e, ERR_INVALID,
                     "--limits cgroup: no cgroup can be made below this "
                     "agent's own: %s",
                     why.len ? buf_str(&why) : "?");
        goto out;
    }
    for (int c = 0; c < LIMITS_NCTL; c++)
        l->by[c] = got & (1u << c) ? l->mech : LIMITS_NONE;
    if (strcmp(mode, "none") && l->by[LIMITS_MEMORY] == LIMITS_NONE) {
        l->by[LIMITS_MEMORY] = LIMITS_RLIMIT;
        if (!got) l->mech = LIMITS_RLIMIT;
    }
    if (why.len) {
        why.data[why.len - 2] = '\0'; /* the last "; " */
        l->why = xstrdup(why.data);
    }
out:
    buf_release(&why);
    return rc;
}

void limits_release(struct limits *l)
{
    clear_groups(l);
    free(l->why);
    l->why = NULL;
}

json_t *limits_json(const struct limits *l)
{
    json_t *o = json_pack("{s:s}", "mechanism", limits_mech_name(l->mech));
    for (int c = 0; c < LIMITS_NCTL; c++)
        json_object_set_new(o, limit_names[c], json_string(limits_mech_name(l->by[c])));
    return o;
}

char *limits_describe(const struct limits *l)
{
    struct buf b = BUF_INIT;
    buf_addf(&b, "resource limits by %s:", limits_mech_name(l->mech));
    for (int c = 0; c < LIMITS_NCTL; c++)
        buf_addf(&b, " %s=%s", limit_names[c], limits_mech_name(l->by[c]));
    if (l->by[LIMITS_MEMORY] == LIMITS_RLIMIT)
        buf_adds(&b, " (memory_mb as RLIMIT_AS: each process's address space, no oom reason)");
    bool missing = false;
    for (int c = 0; c < LIMITS_NCTL; c++)
        missing |= l->by[c] == LIMITS_NONE;
    if (missing) buf_adds(&b, "; jobs asking for a limit marked none run without it");
    if (l->why && (missing || l->mech != LIMITS_CGROUP2)) buf_addf(&b, " (%s)", l->why);
    return buf_detach(&b);
}

/* --- processes in a group ---------------------------------------------------- */

/* Whether process `pid` is in the group shown as `rel` (some line of /proc/PID/cgroup). */
static bool pid_in(pid_t pid, const char *rel)
{
    char path[64], text[4096], want[1024];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    if (read_text(path, text, sizeof(text)) <= 0) return false;
    int n = snprintf(want, sizeof(want), ":%s\n", rel);
    return n > 0 && (size_t)n < sizeof(want) && strstr(text, want);
}

/*
 * Sends sig to every process of the group at `dir` (shown as `rel`): each through a pidfd
 * opened before checking that it is still in the group, so a pid reused meanwhile is spared.
 */
static size_t signal_group(const char *dir, const char *rel, int sig)
{
    char *file = xasprintf("%s/cgroup.procs", dir);
    FILE *f = fopen(file, "re");
    free(file);
    if (!f) return 0;
    size_t n = 0;
    long pid;
    for (int i = 0; i < SIGNAL_MAX_PIDS && fscanf(f, "%ld", &pid) == 1; i++) {
        if (pid <= 0 || pid == getpid()) continue;
        int fd = -1;
#ifdef SYS_pidfd_open
        fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
#endif
        if (!pid_in((pid_t)pid, rel)) {
            if (fd >= 0) close(fd);
            continue;
        }
        int rc = -1;
#ifdef SYS_pidfd_send_signal
        if (fd >= 0) rc = (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
#endif
        if (fd < 0) rc = kill((pid_t)pid, sig);
        if (fd >= 0) close(fd);
        n += rc == 0;
    }
    fclose(f);
    return n;
}

/* rmdir, again for a while when killed processes are still leaving the group (bounded). */
static int remove_group(const char *dir, const char *rel, int tries)
{
    for (int i = 0; i < tries; i++) {
        if (rmdir(dir) == 0 || errno == ENOENT) return 0;
        if (errno != EBUSY) return -1;
        signal_group(dir, rel, SIGKILL);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    errno = EBUSY;
    return -1;
}

/* Whether controller c's group is the same folder as an earlier controller's (v2: one). */
static bool same_as_earlier(char *const *dirs, int c)
{
    for (int k = 0; k < c; k++)
        if (dirs[k] && dirs[c] && !strcmp(dirs[k], dirs[c])) return true;
    return false;
}

void limits_recover(struct limits *l)
{
    for (int c = 0; c < LIMITS_NCTL; c++) {
        if (!l->base[c] || same_as_earlier(l->base, c)) continue;
        DIR *d = opendir(l->base[c]);
        if (!d) continue;
        struct dirent *de;
        size_t left = 0, removed = 0;
        while ((de = readdir(d))) {
            if (de->d_type != DT_DIR || de->d_name[0] == '.') continue;
            char *dir = xasprintf("%s/%s", l->base[c], de->d_name);
            char *rel = xasprintf("%s/%s", l->base_rel[c], de->d_name);
            size_t killed = signal_group(dir, rel, SIGKILL);
            if (killed)
                log_warn("killed %zu process(es) of a job of an earlier run of the agent, left "
                         "in the cgroup '%s'",
                         killed, dir);
            if (remove_group(dir, rel, 100) == 0)
                removed++;
            else
                left++;
            free(dir);
            free(rel);
        }
        closedir(d);
        if (removed) log_info("removed %zu cgroup(s) left below '%s'", removed, l->base[c]);
        if (left)
            log_warn("cannot remove %zu cgroup(s) below '%s': %s", left, l->base[c],
                     strerror(errno));
        rmdir(l->base[c]);
    }
}

/* --- a job's groups ---------------------------------------------------------------- */

static void job_clear(struct limits_job *lj)
{
    for (int c = 0; c < LIMITS_NCTL; c++) {
        if (lj->procs_fd[c] >= 0) close(lj->procs_fd[c]);
        free(lj->dir[c]);
        free(lj->rel[c]);
    }
    memset(lj, 0, sizeof(*lj));
    for (int c = 0; c < LIMITS_NCTL; c++)
        lj->procs_fd[c] = -1;
}

/* Writes the limit `c` of r into the job's group at dir. 0 or -1 (errno) with *file set. */
static int write_limit(enum limits_mech m, int c, const char *dir, const struct spec_resources *r,
                       const char **file)
{
    char v[64];
    bool v2 = m == LIMITS_CGROUP2;
    switch (c) {
    case LIMITS_MEMORY:
        if (!r->memory_mb) return 0;
        snprintf(v, sizeof(v), "%lld", (long long)r->memory_mb << 20);
        *file = v2 ? "memory.max" : "memory.limit_in_bytes";
        if (write_file(dir, *file, v)) return -1;
        /* no swap beyond the limit (where swap is accounted: best effort) */
        if (v2)
            write_file(dir, "memory.swap.max", "0");
        else if (file_exists(dir, "memory.memsw.limit_in_bytes"))
            write_file(dir, "memory.memsw.limit_in_bytes", v);
        return 0;
    case LIMITS_PIDS:
        if (!r->pids) return 0;
        snprintf(v, sizeof(v), "%lld", (long long)r->pids);
        *file = "pids.max";
        return write_file(dir, *file, v);
    case LIMITS_CPU: {
        if (r->cpus <= 0) return 0;
        long long quota = (long long)(r->cpus * CPU_PERIOD_US + 0.5);
        if (quota < 1000) quota = 1000; /* the kernel's least */
        if (v2) {
            snprintf(v, sizeof(v), "%lld %d", quota, CPU_PERIOD_US);
            *file = "cpu.max";
            return write_file(dir, *file, v);
        }
        snprintf(v, sizeof(v), "%d", CPU_PERIOD_US);
        *file = "cpu.cfs_period_us";
        if (write_file(dir, *file, v)) return -1;
        snprintf(v, sizeof(v), "%lld", quota);
        *file = "cpu.cfs_quota_us";
        return write_file(dir, *file, v);
    }
    }
    return 0;
}

/* The first of the job's groups: every process of the job is in each of them. */
static int first_group(const struct limits_job *lj)
{
    for (int c = 0; c < LIMITS_NCTL; c++)
        if (lj->dir[c]) return c;
    return -1;
}

static void ensure_base(struct limits *l, int c)
{
    if (mkdir(l->base[c], 0755) != 0 || l->mech != LIMITS_CGROUP2) return;
    /* a new v2 base: its children get the controllers the agent's group passes down */
    for (int k = 0; k < LIMITS_NCTL; k++) {
        char plus[32];
        snprintf(plus, sizeof(plus), "+%s", ctl_names[k]);
        if (l->by[k] == LIMITS_CGROUP2 && write_file(l->base[c], "cgroup.subtree_control", plus))
            log_warn("cannot enable %s in '%s': %s", ctl_names[k], l->base[c], strerror(errno));
    }
}

int limits_job_prepare(struct limits *l, struct limits_job *lj, const char *name,
                       const struct spec_resources *r, char **unenforced, struct err *e)
{
    memset(lj, 0, sizeof(*lj));
    for (int c = 0; c < LIMITS_NCTL; c++)
        lj->procs_fd[c] = -1;
    *unenforced = NULL;
    if (!spec_resources_any(r)) return 0;
    lj->active = true;
    bool asked[LIMITS_NCTL] = {r->memory_mb > 0, r->pids > 0, r->cpus > 0};
    struct buf miss = BUF_INIT;
    for (int c = 0; c < LIMITS_NCTL; c++)
        if (asked[c] && l->by[c] == LIMITS_NONE)
            buf_addf(&miss, "%s%s", miss.len ? ", " : "", limit_names[c]);
    if (miss.len) *unenforced = buf_detach(&miss);
    buf_release(&miss);
    if (l->by[LIMITS_MEMORY] == LIMITS_RLIMIT && r->memory_mb)
        lj->rlimit_as = (uint64_t)r->memory_mb << 20;

    for (int c = 0; c < LIMITS_NCTL; c++) {
        if (l->by[c] != LIMITS_CGROUP1 && l->by[c] != LIMITS_CGROUP2) continue;
        if (first_group(lj) < 0) l->groups++; /* released (and counted down) on every path */
        lj->dir[c] = xasprintf("%s/%s", l->base[c], name);
        lj->rel[c] = xasprintf("%s/%s", l->base_rel[c], name);
        if (same_as_earlier(lj->dir, c)) continue; /* v2: one group for every controller */
        ensure_base(l, c);
        if (mkdir(lj->dir[c], 0755) != 0 && errno != EEXIST) {
            int rc = err_set(e, ERR_IO, "cannot create the cgroup '%s': %s", lj->dir[c],
                             strerror(errno));
            limits_job_release(l, lj, true);
            return rc;
        }
    }
    for (int c = 0; c < LIMITS_NCTL; c++) {
        /* each limit into the group of its controller; then the group's procs, once */
        const char *file = NULL;
        if (lj->dir[c] && write_limit(l->mech, c, lj->dir[c], r, &file)) {
            int rc = err_set(e, ERR_IO, "cannot set %s in the cgroup '%s': %s", file, lj->dir[c],
                             strerror(errno));
            limits_job_release(l, lj, true);
            return rc;
        }
        if (!lj->dir[c] || same_as_earlier(lj->dir, c)) continue;
        char *procs = xasprintf("%s/cgroup.procs", lj->dir[c]);
        lj->procs_fd[c] = open(procs, O_WRONLY | O_CLOEXEC);
        int saved = errno;
        free(procs);
        if (lj->procs_fd[c] < 0) {
            int rc = err_set(e, ERR_IO, "cannot open the cgroup.procs of '%s': %s", lj->dir[c],
                             strerror(saved));
            limits_job_release(l, lj, true);
            return rc;
        }
    }
    return 0;
}

int limits_job_child(const struct limits_job *lj)
{
    if (!lj || !lj->active) return 0;
    for (int c = 0; c < LIMITS_NCTL; c++)
        if (lj->procs_fd[c] >= 0 && write(lj->procs_fd[c], "0", 1) != 1) return -1;
    if (lj->rlimit_as) {
        struct rlimit rl = {(rlim_t)lj->rlimit_as, (rlim_t)lj->rlimit_as};
        if (setrlimit(RLIMIT_AS, &rl) != 0) return -1;
    }
    return 0;
}

void limits_job_spawned(struct limits_job *lj)
{
    for (int c = 0; c < LIMITS_NCTL; c++) {
        if (lj->procs_fd[c] >= 0) close(lj->procs_fd[c]);
        lj->procs_fd[c] = -1;
    }
}

ssize_t limits_job_signal(const struct limits_job *lj, int sig)
{
    int c = lj->active && !lj->removed ? first_group(lj) : -1;
    return c < 0 ? -1 : (ssize_t)signal_group(lj->dir[c], lj->rel[c], sig);
}

bool limits_job_oom(const struct limits_job *lj)
{
    const char *dir = lj->active ? lj->dir[LIMITS_MEMORY] : NULL;
    if (!dir) return false;
    char text[2048];
    char *file = xasprintf(
        "%s/%s", dir, file_exists(dir, "memory.events") ? "memory.events" : "memory.oom_control");
    ssize_t n = read_text(file, text, sizeof(text));
    free(file);
    const char *p = n > 0 ? strstr(text, "oom_kill ") : NULL;
    return p && strtoll(p + 9, NULL, 10) > 0;
}

long long limits_job_pids_refused(const struct limits_job *lj)
{
    const char *dir = lj->active ? lj->dir[LIMITS_PIDS] : NULL;
    if (!dir) return 0;
    char text[256];
    char *file = xasprintf("%s/pids.events", dir);
    ssize_t n = read_text(file, text, sizeof(text));
    free(file);
    const char *p = n > 0 ? strstr(text, "max ") : NULL;
    return p ? strtoll(p + 4, NULL, 10) : 0;
}

bool limits_job_release(struct limits *l, struct limits_job *lj, bool final)
{
    if (!lj->active) return true;
    limits_job_spawned(lj);
    bool gone = true, had = first_group(lj) >= 0;
    for (int c = 0; c < LIMITS_NCTL && !lj->removed; c++) {
        if (!lj->dir[c] || same_as_earlier(lj->dir, c)) continue;
        if (remove_group(lj->dir[c], lj->rel[c], final ? 50 : 1) != 0) {
            if (final)
                log_warn("cannot remove the cgroup '%s': %s (the agent's next start will)",
                         lj->dir[c], strerror(errno));
            gone = false;
        }
    }
    if (!gone && !final) return false;
    if (had && !lj->removed && --l->groups == 0) {
        for (int c = 0; c < LIMITS_NCTL; c++)
            if (l->base[c]) rmdir(l->base[c]);
    }
    lj->removed = true;
    if (final) job_clear(lj);
    return gone;
}
