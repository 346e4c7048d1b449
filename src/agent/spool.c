/*
 * spool.c - see spool.h. Every file operation goes through the folder's
 * descriptor (openat, renameat), so a name never resolves elsewhere.
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
#include "common/log.h"
#include "common/xalloc.h"
#include "job/protocol.h"

#define JOURNAL "journal"
#define JOURNAL_TMP ".journal.tmp"
#define JOURNAL_BAD "journal.bad"
#define SPOOL_RECORD_MAX (64 << 20) /* a record holds a report: far less */

/* "<job>-<attempt>.<kind>": the key of a record (and an older agent's file name) */
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
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Keeps `line` (owned) as the record `name`'s state: NULL forgets the record. */
static void rec_set(struct spool *s, const char *name, char *line)
{
    char *old = line ? hmap_put(&s->recs, name, line) : hmap_del(&s->recs, name);
    if (old) s->live -= strlen(old);
    if (line) s->live += strlen(line);
    free(old);
}

/* Writes the journal anew with the records that hold (spool.h). 0, or -1 with errno (the
   journal is then as it was). */
static int compact(struct spool *s)
{
    struct buf all = BUF_INIT;
    for (struct hmap_entry *it = hmap_first(&s->recs); it; it = hmap_next(&s->recs, it))
        buf_adds(&all, it->value);
    int fd =
        openat(s->dirfd, JOURNAL_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    int rc = fd < 0 || write_all(fd, all.data, all.len) ||
                     renameat(s->dirfd, JOURNAL_TMP, s->dirfd, JOURNAL)
                 ? -1
                 : 0;
    if (rc) {
        int err_no = errno;
        if (fd >= 0) close(fd);
        unlinkat(s->dirfd, JOURNAL_TMP, 0);
        errno = err_no;
    } else {
        if (s->fd >= 0) close(s->fd);
        s->fd = fd;
        s->size = all.len;
    }
    buf_release(&all);
    return rc;
}

/* Appends `line` (its length len; `what` it is, for a message); a write cut short is cut off
   again. 0, or ERR_IO. */
static int append(struct spool *s, const char *what, const char *line, size_t len, struct err *e)
{
    if (write_all(s->fd, line, len) != 0) {
        int err_no = errno;
        if (ftruncate(s->fd, (off_t)s->size) != 0) { /* else the next line would follow it */
            close(s->fd);
            s->fd = -1;
        }
        return err_set(e, ERR_IO, "cannot write %s in '%s/" JOURNAL "': %s", what, s->dir,
                       strerror(err_no));
    }
    s->size += len;
    return 0;
}

/* A journal to append to: after a failed append that could not be cut off (append), one
   written anew from the records that hold. 0, or ERR_IO. */
static int journal_ready(struct spool *s, const char *what, struct err *e)
{
    if (s->fd >= 0 || compact(s) == 0) return 0;
    return err_set(e, ERR_IO, "cannot write %s: cannot write '%s/" JOURNAL "' anew: %s", what,
                   s->dir, strerror(errno));
}

/* After a change: written anew when mostly records that no longer hold. */
static void maybe_compact(struct spool *s)
{
    if (s->size <= SPOOL_COMPACT_MIN || s->size / 4 <= s->live) return;
    if (compact(s) != 0)
        log_warn("cannot write '%s/" JOURNAL "' anew (it grows meanwhile): %s", s->dir,
                 strerror(errno));
}

/* Appends the held removals (spool_hold). */
static int write_held(struct spool *s, struct err *e)
{
    if (!s->held.len) return 0;
    static const char what[] = "the removals of settled records";
    int rc = journal_ready(s, what, e);
    if (!rc) rc = append(s, what, s->held.data, s->held.len, e);
    buf_reset(&s->held); /* forgotten in memory already: written anew so if this failed */
    maybe_compact(s);
    return rc;
}

/* The line of a record: `doc` may be NULL (a removal). NULL when kind needs quoting. */
static char *line_of(const char *job, int attempt, const char *kind, const char *doc)
{
    for (const char *c = kind; *c; c++)
        if (*c < 'a' || *c > 'z') return NULL;
    return doc ? xasprintf("{\"job\":\"%s\",\"attempt\":%d,\"kind\":\"%s\",\"doc\":%s}\n", job,
                           attempt, kind, doc)
               : xasprintf("{\"job\":\"%s\",\"attempt\":%d,\"kind\":\"%s\",\"del\":true}\n", job,
                           attempt, kind);
}

/* Appends `line` (taken) as the record `name`'s state. */
static int put_line(struct spool *s, const char *name, char *line, struct err *e)
{
    char what[160];
    snprintf(what, sizeof(what), "the record '%s'", name);
    int rc;
    if ((rc = journal_ready(s, what, e)) || (rc = write_held(s, e)) ||
        (rc = append(s, what, line, strlen(line), e))) {
        free(line);
        return rc;
    }
    rec_set(s, name, line);
    maybe_compact(s);
    return 0;
}

int spool_put(struct spool *s, const char *job, int attempt, const char *kind, json_t *doc,
              struct err *e)
{
    char name[128];
    int rc = record_name(name, sizeof(name), job, attempt, kind, e);
    if (rc) return rc;
    char *text = json_dumps(doc, JSON_COMPACT);
    char *line = text ? line_of(job, attempt, kind, text) : NULL;
    free(text);
    if (!line) return err_set(e, ERR_INVALID, "cannot encode the %s record of job '%s'", kind, job);
    return put_line(s, name, line, e);
}

int spool_put_member(struct spool *s, const char *job, int attempt, const char *kind, json_t *doc,
                     const char *key, json_t *value, struct err *e)
{
    char name[128];
    int rc = record_name(name, sizeof(name), job, attempt, kind, e);
    if (rc) return rc;
    bool had = json_object_get(doc, key) != NULL;
    json_object_set(doc, key, value);
    /* the line last written for doc ends "...}}\n" (its last member, doc's brace, the
       line's): a new member goes before the two braces, where a dump of doc puts it */
    const char *prev = hmap_get(&s->recs, name);
    size_t n = prev ? strlen(prev) : 0;
    bool plain = key[0] != '\0';
    for (const char *c = key; *c; c++)
        plain = plain && ((*c >= 'a' && *c <= 'z') || *c == '_');
    if (had || !plain || n < 5 || strcmp(prev + n - 3, "}}\n") || prev[n - 4] == '{')
        return spool_put(s, job, attempt, kind, doc, e);
    char *v = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!v) return err_set(e, ERR_INVALID, "cannot encode the %s record of job '%s'", kind, job);
    char *line = xasprintf("%.*s,\"%s\":%s}}\n", (int)(n - 3), prev, key, v);
    free(v);
    return put_line(s, name, line, e);
}

int spool_get(struct spool *s, const char *job, int attempt, const char *kind, json_t **doc,
              struct err *e)
{
    char name[128];
    *doc = NULL;
    int rc = record_name(name, sizeof(name), job, attempt, kind, e);
    if (rc) return rc;
    const char *line = hmap_get(&s->recs, name);
    if (!line) return ERR_NOTFOUND;
    json_t *rec = json_loads(line, 0, NULL); /* checked when read or written */
    *doc = json_incref(json_object_get(rec, "doc"));
    json_decref(rec);
    return *doc ? 0 : err_set(e, ERR_INTERNAL, "the record '%s' cannot be read back", name);
}

int spool_del(struct spool *s, const char *job, int attempt, const char *kind, struct err *e)
{
    char name[128];
    int rc = record_name(name, sizeof(name), job, attempt, kind, e);
    if (rc || !hmap_get(&s->recs, name)) return rc;
    char what[160];
    snprintf(what, sizeof(what), "the removal of the record '%s'", name);
    if (!s->holding && (rc = journal_ready(s, what, e))) return rc;
    char *line = line_of(job, attempt, kind, NULL);
    if (!line) return err_set(e, ERR_INVALID, "cannot encode the removal of '%s'", name);
    if (s->holding)
        buf_adds(&s->held, line);
    else
        rc = append(s, what, line, strlen(line), e);
    free(line);
    if (rc) return rc;
    rec_set(s, name, NULL);
    if (!s->holding) maybe_compact(s);
    return 0;
}

void spool_hold(struct spool *s)
{
    s->holding = true;
}

int spool_flush(struct spool *s, struct err *e)
{
    s->holding = false;
    return write_held(s, e);
}

/* --- reading at open ---------------------------------------------------------------- */

/* Parses "<uuid>-<attempt>.<kind>" into k (kind: one a record may have); false otherwise. */
static bool parse_name(const char *name, struct spool_key *k)
{
    if (strlen(name) < UUID_STR_LEN + 2 || name[UUID_STR_LEN - 1] != '-') return false;
    memcpy(k->job, name, UUID_STR_LEN - 1);
    k->job[UUID_STR_LEN - 1] = '\0';
    if (!uuid_valid(k->job)) return false;
    const char *p = name + UUID_STR_LEN;
    char *end;
    long a = strtol(p, &end, 10);
    if (end == p || a < 1 || a > PROTO_ATTEMPT_MAX || *end != '.') return false;
    end++;
    if (strcmp(end, "lease") && strcmp(end, "started") && strcmp(end, "run") &&
        strcmp(end, "finished"))
        return false;
    k->attempt = (int)a;
    return true;
}

/* Reads a whole file of the folder into b (bounded by max). 0, ENOENT, or another errno. */
static int read_file_at(int dirfd, const char *name, struct buf *b, size_t max)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno;
    char chunk[65536];
    ssize_t n;
    int rc = 0;
    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || b->len + (size_t)n > max) {
            rc = n < 0 ? errno : EFBIG;
            break;
        }
        buf_add(b, chunk, (size_t)n);
    }
    close(fd);
    return rc;
}

/* One journal line (without its newline): applied, or false when it is no record. */
static bool replay_line(struct spool *s, const char *text, size_t len)
{
    json_t *rec = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    const char *job = json_string_value(json_object_get(rec, "job"));
    json_t *attempt = json_object_get(rec, "attempt");
    const char *kind = json_string_value(json_object_get(rec, "kind"));
    json_t *doc = json_object_get(rec, "doc");
    char name[128];
    struct spool_key k;
    bool ok = job && kind && json_is_integer(attempt) && json_integer_value(attempt) >= 1 &&
              json_integer_value(attempt) <= PROTO_ATTEMPT_MAX &&
              (doc || json_is_true(json_object_get(rec, "del")));
    if (ok) {
        snprintf(name, sizeof(name), "%s-%d.%s", job, (int)json_integer_value(attempt), kind);
        ok = parse_name(name, &k);
    }
    if (ok) rec_set(s, name, doc ? xasprintf("%.*s\n", (int)len, text) : NULL);
    json_decref(rec);
    return ok;
}

/* Replays the journal into s->recs; a damaged one is kept aside (spool.h). */
static int load_journal(struct spool *s, struct err *e)
{
    struct buf b = BUF_INIT;
    int err_no = read_file_at(s->dirfd, JOURNAL, &b, (size_t)1 << 30);
    if (err_no && err_no != ENOENT) {
        buf_release(&b);
        return err_set(e, ERR_IO, "cannot read '%s/" JOURNAL "': %s", s->dir, strerror(err_no));
    }
    size_t bad = 0, first_bad = 0, lineno = 0;
    for (size_t at = 0; at < b.len;) {
        const char *p = b.data + at, *nl = memchr(p, '\n', b.len - at);
        lineno++;
        if (!nl) { /* cut by a kill while being appended: nothing was done on it */
            log_warn("'%s/" JOURNAL "': its last line was cut short (%zu bytes), dropped", s->dir,
                     b.len - at);
            break;
        }
        if (!replay_line(s, p, (size_t)(nl - p)) && !bad++) first_bad = lineno;
        at = (size_t)(nl - b.data) + 1;
    }
    buf_release(&b);
    if (bad) {
        log_warn("'%s/" JOURNAL "': %zu line(s) are no record (the first: line %zu), skipped; "
                 "the file is kept as '%s/" JOURNAL_BAD "'",
                 s->dir, bad, first_bad, s->dir);
        renameat(s->dirfd, JOURNAL, s->dirfd, JOURNAL_BAD);
    }
    return 0;
}

/* Older agents' files (spool.h): their records read in, the names to remove in *old. */
static int load_files(struct spool *s, char ***old, size_t *nold, struct err *e)
{
    int fd = dup(s->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) close(fd);
        return err_set(e, ERR_IO, "cannot list '%s': %s", s->dir, strerror(errno));
    }
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        size_t len = strlen(n);
        struct spool_key k;
        bool tmp = n[0] == '.' && len > 4 && !strcmp(n + len - 4, ".tmp"); /* a cut write */
        bool free_file = !strncmp(n, ".free-", 6);
        bool record = !tmp && !free_file && parse_name(n, &k);
        if (!tmp && !free_file && !record) continue;
        if (record) {
            struct buf b = BUF_INIT;
            int err_no = read_file_at(s->dirfd, n, &b, SPOOL_RECORD_MAX);
            json_t *doc = err_no ? NULL : json_loadb(b.data ? b.data : "", b.len, 0, NULL);
            buf_release(&b);
            if (!doc) {
                char bad[300];
                snprintf(bad, sizeof(bad), "%s.bad", n);
                renameat(s->dirfd, n, s->dirfd, bad);
                log_warn("'%s/%s' is not a valid record (kept as '%s')", s->dir, n, bad);
                continue;
            }
            char *text = json_dumps(doc, JSON_COMPACT);
            const char *kind = strchr(n + UUID_STR_LEN, '.') + 1;
            rec_set(s, n, line_of(k.job, k.attempt, kind, text));
            free(text);
            json_decref(doc);
        }
        if (*nold == cap) {
            cap = cap ? cap * 2 : 16;
            *old = xrealloc(*old, cap * sizeof(**old));
        }
        (*old)[(*nold)++] = xstrdup(n);
    }
    closedir(d);
    return 0;
}

int spool_open(struct spool *s, const char *dir, struct err *e)
{
    s->dir = NULL;
    s->dirfd = s->fd = -1;
    s->size = s->live = 0;
    hmap_init(&s->recs);
    s->holding = false;
    buf_init(&s->held);
    int rc = mkdir_p(dir, e);
    if (rc) return rc;
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0)
        return err_set(e, ERR_IO, "cannot open the spool folder '%s': %s", dir, strerror(errno));
    s->dir = xstrdup(dir);
    char **old = NULL;
    size_t nold = 0;
    /* older agents' files first: the journal, when there is one, was written after them */
    if ((rc = load_files(s, &old, &nold, e)) || (rc = load_journal(s, e))) goto out;
    if (compact(s) != 0) {
        rc = err_set(e, ERR_IO, "cannot write '%s/" JOURNAL "': %s", dir, strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < nold; i++) /* in the journal now */
        unlinkat(s->dirfd, old[i], 0);
out:
    for (size_t i = 0; i < nold; i++)
        free(old[i]);
    free(old);
    return rc;
}

void spool_close(struct spool *s)
{
    if (s->fd >= 0) close(s->fd);
    if (s->dirfd >= 0) close(s->dirfd);
    hmap_release(&s->recs, free);
    buf_release(&s->held);
    free(s->dir);
    s->dir = NULL;
    s->dirfd = s->fd = -1;
}

static int key_cmp(const void *pa, const void *pb)
{
    const struct spool_key *a = pa, *b = pb;
    int c = strcmp(a->job, b->job);
    return c ? c : (a->attempt > b->attempt) - (a->attempt < b->attempt);
}

int spool_list(struct spool *s, struct spool_key **keys, size_t *n, struct err *e)
{
    (void)e;
    *n = 0;
    *keys = s->recs.count ? xcalloc(s->recs.count, sizeof(**keys)) : NULL;
    for (struct hmap_entry *it = hmap_first(&s->recs); it; it = hmap_next(&s->recs, it))
        if (parse_name(it->key, &(*keys)[*n])) (*n)++;
    if (*n == 0) return 0;
    qsort(*keys, *n, sizeof(**keys), key_cmp);
    size_t w = 1; /* one key per (job, attempt) */
    for (size_t i = 1; i < *n; i++)
        if (key_cmp(&(*keys)[i], &(*keys)[w - 1])) (*keys)[w++] = (*keys)[i];
    *n = w;
    return 0;
}
