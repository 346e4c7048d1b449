/*
 * spool.c - see spool.h. Every file operation goes through the folder's
 * descriptor (openat, renameat), so a record name never resolves elsewhere.
 */
#include "agent/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/xalloc.h"

#define SPOOL_RECORD_MAX (64 << 20) /* a record holds a report: far less */
#define SPOOL_PAD 256                /* reused files are written in multiples of this */
#define SPOOL_PAGE 4096              /* what spool_update writes in place, at most */

int spool_open(struct spool *s, const char *dir, struct err *e)
{
    s->dir = NULL;
    s->dirfd = -1;
    s->nfree = 0;
    s->nholes = SPOOL_FREE_MAX;
    for (size_t i = 0; i < SPOOL_FREE_MAX; i++)
        s->holes[i] = (unsigned)(SPOOL_FREE_MAX - 1 - i); /* .free-0 on top */
    int rc = mkdir_p(dir, e);
    if (rc) return rc;
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0)
        return err_set(e, ERR_IO, "cannot open the spool folder '%s': %s", dir, strerror(errno));
    s->dir = xstrdup(dir);
    return 0;
}

void spool_close(struct spool *s)
{
    if (s->dirfd >= 0) close(s->dirfd);
    free(s->dir);
    s->dir = NULL;
    s->dirfd = -1;
}

static int record_name(char *out, size_t n, const char *job, int attempt, const char *kind,
                       struct err *e)
{
    if (!job || !uuid_valid(job) || attempt < 1)
        return err_set(e, ERR_INVALID, "job '%s' attempt %d cannot be spooled: not a job id",
                       job ? job : "", attempt);
    snprintf(out, n, "%s-%d.%s", job, attempt, kind);
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int spool_put(struct spool *s, const char *job, int attempt, const char *kind, json_t *doc,
              struct err *e)
{
    char name[128], tmp[140];
    int rc = record_name(name, sizeof(name), job, attempt, kind, e);
    if (rc) return rc;
    char *text = json_dumps(doc, JSON_COMPACT);
    if (!text) return err_set(e, ERR_INVALID, "cannot encode the %s record of job '%s'", kind, job);
    int fd = -1;
    bool reused = false;
    while (fd < 0 && s->nfree > 0) { /* a removed record's file (spool.h) */
        unsigned n = s->free[--s->nfree];
        s->holes[s->nholes++] = n; /* renamed to the record below, or removed */
        snprintf(tmp, sizeof(tmp), ".free-%u", n);
        /* not O_TRUNC: ext4 writes out a file truncated to 0 when it is closed */
        fd = openat(s->dirfd, tmp, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) unlinkat(s->dirfd, tmp, 0);
        reused = fd >= 0;
    }
    if (fd < 0) {
        snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
        fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        rc = err_set(e, ERR_IO, "cannot write '%s/%s': %s", s->dir, tmp, strerror(errno));
        goto out;
    }
    /* A reused file is overwritten, not truncated: the record is padded with blanks (JSON
     * allows them after the value) to a multiple of SPOOL_PAD, which most records fit in,
     * and the file is cut only when it was longer still. */
    size_t len = strlen(text), padded = len + 1;
    if (reused) {
        padded = (len + 1 + SPOOL_PAD - 1) / SPOOL_PAD * SPOOL_PAD;
        text = xrealloc(text, padded);
        memset(text + len, ' ', padded - len);
    }
    text[padded - 1] = '\n'; /* in place of the terminating NUL: one write */
    struct stat st;
    if (write_all(fd, text, padded) ||
        (reused && (fstat(fd, &st) || (st.st_size > (off_t)padded &&
                                        ftruncate(fd, (off_t)padded))))) {
        rc = err_set(e, ERR_IO, "cannot write '%s/%s': %s", s->dir, tmp, strerror(errno));
        close(fd);
        unlinkat(s->dirfd, tmp, 0);
        goto out;
    }
    close(fd);
    if (renameat(s->dirfd, tmp, s->dirfd, name)) {
        rc = err_set(e, ERR_IO, "cannot write '%s/%s': %s", s->dir, name, strerror(errno));
        unlinkat(s->dirfd, tmp, 0);
    }
out:
    free(text);
    return rc;
}

int spool_update(struct spool *s, const char *job, int attempt, const char *kind, json_t *doc,
                 struct err *e)
{
    char name[128];
    int rc = record_name(name, sizeof(name), job, attempt, kind, e);
    if (rc) return rc;
    char *text = json_dumps(doc, JSON_COMPACT);
    if (!text) return err_set(e, ERR_INVALID, "cannot encode the %s record of job '%s'", kind, job);
    size_t len = strlen(text);
    int fd = len < SPOOL_PAGE ? openat(s->dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size <= SPOOL_PAGE) {
        /* blanks over the rest of the old record, to a multiple of SPOOL_PAD within the page */
        size_t padded = (len + 1 + SPOOL_PAD - 1) / SPOOL_PAD * SPOOL_PAD;
        if (padded < (size_t)st.st_size) padded = (size_t)st.st_size;
        if (padded > SPOOL_PAGE) padded = SPOOL_PAGE;
        text = xrealloc(text, padded);
        memset(text + len, ' ', padded - len);
        text[padded - 1] = '\n';
        ssize_t w = pwrite(fd, text, padded, 0);
        if (w == (ssize_t)padded) {
            close(fd);
            free(text);
            return 0;
        }
        if (w >= 0) errno = EIO; /* a short write: cannot be for a page of the page cache */
        rc = err_set(e, ERR_IO, "cannot write '%s/%s': %s", s->dir, name, strerror(errno));
        close(fd);
        free(text);
        return rc;
    }
    if (fd >= 0) close(fd);
    free(text);
    return spool_put(s, job, attempt, kind, doc, e); /* absent, or too large: a new file */
}

int spool_get(struct spool *s, const char *job, int attempt, const char *kind, json_t **doc,
              struct err *e)
{
    char name[128];
    *doc = NULL;
    int rc = record_name(name, sizeof(name), job, attempt, kind, e);
    if (rc) return rc;
    int fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) return ERR_NOTFOUND;
    if (fd < 0) return err_set(e, ERR_IO, "cannot read '%s/%s': %s", s->dir, name, strerror(errno));
    struct buf b = BUF_INIT;
    char chunk[65536];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || b.len + (size_t)n > SPOOL_RECORD_MAX) {
            rc = err_set(e, ERR_IO, "cannot read '%s/%s': %s", s->dir, name,
                         n < 0 ? strerror(errno) : "too large");
            goto out;
        }
        buf_add(&b, chunk, (size_t)n);
    }
    json_error_t jerr;
    *doc = b.len ? json_loadb(b.data, b.len, 0, &jerr) : NULL;
    if (!*doc) {
        char bad[140];
        snprintf(bad, sizeof(bad), "%s.bad", name);
        renameat(s->dirfd, name, s->dirfd, bad);
        rc = err_set(e, ERR_INVALID, "'%s/%s' is not a valid record (kept as '%s')", s->dir, name,
                     bad);
    }
out:
    close(fd);
    buf_release(&b);
    return rc;
}

int spool_del(struct spool *s, const char *job, int attempt, const char *kind, struct err *e)
{
    char name[128];
    int rc = record_name(name, sizeof(name), job, attempt, kind, e);
    if (rc) return rc;
    if (s->nholes > 0) { /* kept for the next write (spool.h) */
        char free_name[32];
        unsigned n = s->holes[--s->nholes];
        snprintf(free_name, sizeof(free_name), ".free-%u", n);
        if (renameat(s->dirfd, name, s->dirfd, free_name) == 0) {
            s->free[s->nfree++] = n;
            return 0;
        }
        int err_no = errno;
        s->holes[s->nholes++] = n;
        if (err_no == ENOENT) return 0;
    }
    if (unlinkat(s->dirfd, name, 0) != 0 && errno != ENOENT)
        return err_set(e, ERR_IO, "cannot remove '%s/%s': %s", s->dir, name, strerror(errno));
    return 0;
}

static int key_cmp(const void *pa, const void *pb)
{
    const struct spool_key *a = pa, *b = pb;
    int c = strcmp(a->job, b->job);
    return c ? c : (a->attempt > b->attempt) - (a->attempt < b->attempt);
}

/* Parses "<uuid>-<attempt>.<kind>" into k; false for any other name. */
static bool parse_name(const char *name, struct spool_key *k)
{
    if (strlen(name) < UUID_STR_LEN + 2 || name[UUID_STR_LEN - 1] != '-') return false;
    memcpy(k->job, name, UUID_STR_LEN - 1);
    k->job[UUID_STR_LEN - 1] = '\0';
    if (!uuid_valid(k->job)) return false;
    const char *p = name + UUID_STR_LEN;
    char *end;
    long a = strtol(p, &end, 10);
    if (end == p || a < 1 || a > 1000000 || *end != '.') return false;
    end++;
    if (strcmp(end, "lease") && strcmp(end, "started") && strcmp(end, "run") &&
        strcmp(end, "finished"))
        return false;
    k->attempt = (int)a;
    return true;
}

int spool_list(struct spool *s, struct spool_key **keys, size_t *n, struct err *e)
{
    *keys = NULL;
    *n = 0;
    int fd = dup(s->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) close(fd);
        return err_set(e, ERR_IO, "cannot list '%s': %s", s->dir, strerror(errno));
    }
    rewinddir(d);
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' && len > 4 && !strcmp(de->d_name + len - 4, ".tmp")) {
            unlinkat(s->dirfd, de->d_name, 0); /* a write cut short by a crash */
            continue;
        }
        if (!strncmp(de->d_name, ".free-", 6)) {
            bool ours = false; /* this run's (spool_del), else a previous run's: removed */
            for (size_t i = 0; i < s->nfree && !ours; i++) {
                char mine[32];
                snprintf(mine, sizeof(mine), ".free-%u", s->free[i]);
                ours = !strcmp(mine, de->d_name);
            }
            if (!ours) unlinkat(s->dirfd, de->d_name, 0);
            continue;
        }
        struct spool_key k;
        if (!parse_name(de->d_name, &k)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *keys = xrealloc(*keys, cap * sizeof(**keys));
        }
        (*keys)[(*n)++] = k;
    }
    closedir(d);
    if (*n == 0) return 0;
    qsort(*keys, *n, sizeof(**keys), key_cmp);
    size_t w = 1; /* one key per (job, attempt) */
    for (size_t i = 1; i < *n; i++)
        if (key_cmp(&(*keys)[i], &(*keys)[w - 1])) (*keys)[w++] = (*keys)[i];
    *n = w;
    return 0;
}
