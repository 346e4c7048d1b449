/*
 * cli_blobs.c - the object commands: put, get, ls, rm, and the upload that
 * `drover submit` uses for its @file arguments (cli.h).
 *
 * Objects go through /v1/blobs (docs/api.md) streamed both ways with
 * http_client_transfer: a file is never held in memory, whatever its size.
 *
 * Invariants:
 *   - `get` to a file writes a temporary file beside the target and renames it
 *     over the target only once every byte came and the SHA-256 the server
 *     gave (X-Drover-Sha256) matched: a failed or interrupted get leaves the
 *     target as it was and no temporary file behind (an interrupt by SIGINT,
 *     SIGTERM or SIGHUP stops the transfer, removes the file, then ends the
 *     process by that signal);
 *   - `put` sends a Content-Length: what is not a regular file (standard
 *     input, a pipe) is first copied to an unnamed temporary file; the SHA-256
 *     of the bytes sent is checked against the one the server answers;
 *   - a progress bar is drawn on stderr only when it is a terminal and the
 *     object is larger than PROGRESS_MIN; nothing else is printed on stderr
 *     unless something fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "commands.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "job/spec.h"

#define PROGRESS_MIN ((int64_t)8 << 20) /* smaller transfers get no progress bar */
#define PROGRESS_EVERY_NS 200000000     /* redraw at most five times a second */
#define IO_CHUNK 65536
#define LIST_PAGE 1000
#define TEMP_NAME_KEEP 200 /* bytes of the target's name in get's temporary file's name */

/* ---- URIs ---- */

int cli_s3_parse(const char *uri, bool prefix, struct cli_s3_uri *out, struct err *e)
{
    const char *why = NULL;
    memset(out, 0, sizeof(*out));
    if (strncmp(uri, "s3://", 5))
        return err_set(e, ERR_INVALID,
                       "'%s' is not an s3:// URI: objects are named s3://bucket/key", uri);
    if (!spec_uri_valid(uri, prefix, &why))
        return err_set(e, ERR_INVALID, "bad URI '%s': %s", uri, why);
    const char *p = uri + 5;
    size_t n = strcspn(p, "/");
    out->bucket = xstrndup(p, n);
    out->key = xstrdup(p[n] ? p + n + 1 : "");
    return 0;
}

void cli_s3_release(struct cli_s3_uri *u)
{
    free(u->bucket);
    free(u->key);
    memset(u, 0, sizeof(*u));
}

/* "/v1/blobs/BUCKET/KEY", each segment escaped; the caller frees it. */
static char *blob_path(const struct cli_s3_uri *u)
{
    char *b = http_escape(u->bucket);
    char *k = http_escape_path(u->key);
    char *path = xasprintf("/v1/blobs/%s/%s", b, k);
    free(b);
    free(k);
    return path;
}

/* The last segment of a key or a local path ("" for none); borrowed from `s`. */
static const char *last_part(const char *s)
{
    const char *slash = strrchr(s, '/');
    return slash ? slash + 1 : s;
}

/* ---- SHA-256 ---- */

static EVP_MD_CTX *sha256_new(void)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) die("cannot start a SHA-256");
    return md;
}

/* Finishes `md` into 64 lower-case hex digits and frees it. */
static void sha256_end(EVP_MD_CTX *md, char hex[65])
{
    unsigned char sum[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(md, sum, &n);
    EVP_MD_CTX_free(md);
    for (unsigned int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", sum[i]);
    hex[64] = '\0';
}

/* ---- progress ---- */

struct progress {
    const char *label; /* the file's or the object's name */
    bool tty;          /* stderr is a terminal */
    bool shown;        /* a line was drawn: end it with a newline */
    int64_t start_ns, last_ns;
    int64_t done, total;
};

/* An interrupting signal's number once one came (get), else 0. */
static volatile sig_atomic_t interrupted;

static void progress_init(struct progress *p, const char *label)
{
    memset(p, 0, sizeof(*p));
    p->label = label;
    p->tty = isatty(STDERR_FILENO);
    p->start_ns = time_mono_ns();
}

/* "812 B", "1.5 KiB", "48.0 MiB", "2.25 GiB". */
static void format_bytes(double n, char *out, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;
    while (n >= 1024 && u + 1 < ARRAY_SIZE(units)) {
        n /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, len, "%.0f B", n);
    else
        snprintf(out, len, "%.1f %s", n, units[u]);
}

static void progress_draw(struct progress *p, int64_t now)
{
    char done[32], total[32], rate[32];
    double secs = (double)(now - p->start_ns) / 1e9;
    format_bytes((double)p->done, done, sizeof(done));
    format_bytes((double)p->total, total, sizeof(total));
    format_bytes(secs > 0 ? (double)p->done / secs : 0, rate, sizeof(rate));
    int pct = p->total > 0 ? (int)(p->done * 100 / p->total) : 0;
    /* The label is a name from outside: no control character may reach the terminal. */
    char label[41];
    size_t n = 0;
    for (const char *s = p->label; *s && n < sizeof(label) - 1; s++)
        label[n++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
    label[n] = '\0';
    fprintf(stderr, "\r%s  %s / %s  %3d%%  %s/s\033[K", label, done, total, pct, rate);
    fflush(stderr);
    p->shown = true;
    p->last_ns = now;
}

static int progress_update(void *arg, int64_t done, int64_t total, struct err *e)
{
    struct progress *p = arg;
    if (interrupted) return err_set(e, ERR_IO, "interrupted");
    p->done = done;
    p->total = total;
    if (!p->tty || total <= PROGRESS_MIN) return 0;
    int64_t now = time_mono_ns();
    if (!p->shown || now - p->last_ns >= PROGRESS_EVERY_NS) progress_draw(p, now);
    return 0;
}

/* Draws the last state (all done when `complete`) and ends the line. */
static void progress_end(struct progress *p, bool complete)
{
    if (!p->shown) return;
    if (complete) p->done = p->total;
    progress_draw(p, time_mono_ns());
    fputc('\n', stderr);
}

/* ---- local files ---- */

/* Writes all of data to fd; 0, or -1 with errno set. */
static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* An unnamed file for a copy of what cannot be measured; -1 with errno set. */
static int temp_file(const char **dir_out)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    *dir_out = dir;
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return fd;
    /* A file system without O_TMPFILE: a named file, unlinked at once. */
    char *path = xasprintf("%s/drover-spool-XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0) unlink(path);
    free(path);
    return fd;
}

/* Copies `in` into a temporary file; returns its descriptor at offset 0, or -1 with e set. */
static int spool(int in, const char *name, int64_t *size, struct err *e)
{
    const char *dir;
    int out = temp_file(&dir);
    if (out < 0) {
        err_set(e, ERR_IO, "cannot make a temporary file in '%s' for '%s': %s", dir, name,
                strerror(errno));
        return -1;
    }
    char *chunk = xmalloc(IO_CHUNK);
    int64_t total = 0;
    for (;;) {
        ssize_t n = read(in, chunk, IO_CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            err_set(e, ERR_IO, "cannot read '%s': %s", name, strerror(errno));
            goto fail;
        }
        if (n == 0) break;
        if (write_all(out, chunk, (size_t)n) < 0) {
            err_set(e, ERR_IO, "cannot keep a copy of '%s' in '%s' to upload it: %s", name, dir,
                    strerror(errno));
            goto fail;
        }
        total += n;
    }
    free(chunk);
    if (lseek(out, 0, SEEK_SET) < 0) {
        err_set(e, ERR_IO, "cannot read back the copy of '%s': %s", name, strerror(errno));
        close(out);
        return -1;
    }
    *size = total;
    return out;
fail:
    free(chunk);
    close(out);
    return -1;
}

/*
 * When the folder `dir` is not there or is not a folder, says so for the file `target` that
 * was to be read or written in it ("cannot VERB 'T': there is no folder 'D'", "... 'P' is a
 * file, not a folder", P the part of D that is one; `hint` after a missing folder) and
 * returns ERR_IO; else 0 (the reason is another one then: the caller's strerror says it).
 */
static int folder_missing(const char *dir, const char *verb, const char *target, const char *hint,
                          struct err *e)
{
    struct stat st;
    char *part = xstrdup(dir);
    size_t n = strlen(part);
    while (n > 1 && part[n - 1] == '/')
        part[--n] = '\0';
    char *whole = xstrdup(part);
    int rc = 0;
    /* the deepest part that is there tells a missing folder from a file in the way */
    while (stat(part, &st) < 0 && (errno == ENOENT || errno == ENOTDIR)) {
        char *slash = strrchr(part, '/');
        if (!slash) {
            part[0] = '\0'; /* a relative name: the current folder holds none of it */
            break;
        }
        slash[slash == part ? 1 : 0] = '\0';
        while ((n = strlen(part)) > 1 && part[n - 1] == '/')
            part[n - 1] = '\0';
    }
    if (*part && stat(part, &st) == 0 && !S_ISDIR(st.st_mode))
        rc = err_set(e, ERR_IO, "cannot %s '%s': '%s' is a file, not a folder", verb, target, part);
    else if (strcmp(part, whole))
        rc = err_set(e, ERR_IO, "cannot %s '%s': there is no folder '%s'%s", verb, target, whole,
                     hint);
    free(whole);
    free(part);
    return rc;
}

int cli_blob_open_local(const char *path, int64_t *size, struct err *e)
{
    bool is_stdin = !strcmp(path, "-");
    const char *name = is_stdin ? "standard input" : path;
    int fd = is_stdin ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int saved = errno; /* "f.txt/" or "f.txt/x": not "Not a directory" but which part */
        if (is_stdin || saved != ENOTDIR || !folder_missing(path, "read", name, "", e))
            err_set(e, ERR_IO, "cannot read '%s': %s", name, strerror(saved));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        err_set(e, ERR_IO, "cannot read '%s': %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        err_set(e, ERR_IO, "'%s' is a folder, not a file", name);
        close(fd);
        return -1;
    }
    if (S_ISREG(st.st_mode)) {
        off_t at = lseek(fd, 0, SEEK_CUR); /* stdin redirected from a file may be part read */
        *size = (int64_t)st.st_size - (at > 0 ? (int64_t)at : 0);
        if (*size < 0) *size = 0;
        return fd;
    }
    int copy = spool(fd, name, size, e);
    close(fd);
    return copy;
}

/* ---- put ---- */

struct source {
    int fd;
    const char *name;
    EVP_MD_CTX *md;
    int64_t left; /* bytes still to send */
};

static ssize_t source_read(void *arg, char *data, size_t len, struct err *e)
{
    struct source *s = arg;
    if (interrupted) return err_set(e, ERR_IO, "interrupted");
    if (s->left == 0) return 0;
    if ((int64_t)len > s->left) len = (size_t)s->left;
    ssize_t n;
    do
        n = read(s->fd, data, len);
    while (n < 0 && errno == EINTR);
    if (n < 0) return err_set(e, ERR_IO, "cannot read '%s': %s", s->name, strerror(errno));
    if (n == 0)
        return err_set(e, ERR_IO, "'%s' got shorter while it was uploaded (%lld bytes missing)",
                       s->name, (long long)s->left);
    EVP_DigestUpdate(s->md, data, (size_t)n);
    s->left -= n;
    return n;
}

int cli_blob_upload_fd(struct cli *cli, int fd, int64_t size, const char *name, const char *uri,
                       json_t **answer)
{
    struct cli_s3_uri u;
    struct err e = ERR_INIT;
    if (answer) *answer = NULL;
    if (cli_s3_parse(uri, false, &u, &e) < 0) {
        cli_error_e(&e);
        return 1;
    }
    char *path = blob_path(&u);
    /* a regular file is read as it is (no copy): it must not change while it is sent */
    struct stat before, after = {0};
    off_t start = lseek(fd, 0, SEEK_CUR);
    bool regular = fstat(fd, &before) == 0 && S_ISREG(before.st_mode) && start >= 0;
    struct source src = {.fd = fd, .name = name, .md = sha256_new(), .left = size};
    struct progress prog;
    progress_init(&prog, name);
    struct http_transfer t = {
        .method = "PUT",
        .path = path,
        .read_fn = source_read,
        .read_arg = &src,
        .upload_size = size,
        .progress_fn = progress_update,
        .progress_arg = &prog,
    };
    int rc = http_client_transfer(&cli->http, &t, &e);
    progress_end(&prog, rc == 0);
    char local[65];
    sha256_end(src.md, local);
    if (rc < 0) {
        char what[1024];
        snprintf(what, sizeof(what), "cannot upload '%s' to '%s'", name, uri);
        cli_print_err(cli, &e, t.status, what);
        rc = 1;
        goto out;
    }
    const char *remote = json_string_value(json_object_get(t.resp, "sha256"));
    json_t *rsize = json_object_get(t.resp, "size");
    if (!remote || strcmp(remote, local) ||
        (json_is_integer(rsize) && json_integer_value(rsize) != size)) {
        cli_error(CLI_ERR_CORRUPT, NULL,
                  "'%s' was not stored intact as '%s': the server has %lld bytes with "
                  "SHA-256 %s, the %lld bytes sent have %s",
                  name, uri, json_is_integer(rsize) ? (long long)json_integer_value(rsize) : -1LL,
                  remote ? remote : "(none given)", (long long)size, local);
        rc = 1;
        goto out;
    }
    if (regular &&
        (fstat(fd, &after) != 0 || after.st_size != before.st_size ||
         after.st_size - start != size || after.st_mtim.tv_sec != before.st_mtim.tv_sec ||
         after.st_mtim.tv_nsec != before.st_mtim.tv_nsec)) {
        cli_error(CLI_ERR_IO, NULL,
                  "'%s' changed while it was uploaded; the object stored as '%s' may not "
                  "match it (%lld bytes were sent, the file now has %lld): upload it again",
                  name, uri, (long long)size, (long long)after.st_size);
        rc = 1;
        goto out;
    }
    if (answer) *answer = json_incref(t.resp);
out:
    json_decref(t.resp);
    free(path);
    cli_s3_release(&u);
    return rc;
}

static const char put_usage[] =
    "usage: drover put [--json] FILE s3://BUCKET/KEY\n"
    "\n"
    "Uploads a local file (FILE '-': standard input) to the object store and\n"
    "prints the object's URI. A KEY that is empty or ends in '/' gets the file's\n"
    "name appended. The upload is streamed; its SHA-256 is checked against the\n"
    "server's. A file that changes while it is uploaded (its size or its\n"
    "modification time) makes put exit 1: the object is stored but may not match\n"
    "the file. A progress bar is shown on a terminal for files over 8 MiB.\n"
    "\n"
    "      --json         print the server's answer: {\"uri\", \"size\", "
    "\"sha256\"}\n"
    "\n"
    "examples:\n"
    "  drover put reads.fa s3://lab/run-1/reads.fa\n"
    "  tar c results | drover put - s3://lab/run-1/results.tar\n"
    CLI_COMMON_USAGE;

/* Collects min..max positional arguments (none empty) into out; CLI_CONTINUE or the exit code. */
static int positional(struct cli_args *a, int min, int max, const char *what, char **out)
{
    if (a->exit_code != CLI_CONTINUE) return a->exit_code;
    int n = a->argc - optind;
    if (n < min) return cli_usage_error(a->usage, "%s", what);
    if (n > max)
        return cli_usage_error(a->usage, "unexpected argument '%s'", a->argv[optind + max]);
    for (int i = 0; i < n; i++) {
        if (!*a->argv[optind + i]) return cli_usage_error(a->usage, "argument %d is empty", i + 1);
        out[i] = a->argv[optind + i];
    }
    return CLI_CONTINUE;
}

int cmd_put(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc, argv, put_usage);
    char *args[2] = {NULL, NULL};
    char *uri = NULL;
    struct cli cli = {0};
    struct err e = ERR_INIT;
    json_t *answer = NULL;
    struct cli_s3_uri u = {0};
    int fd = -1, rc;
    while (cli_getopt(&a, ":h", longopts) != -1)
        ; /* --json is the only option of its own */
    if ((rc = positional(&a, 2, 2, "give a FILE and the s3://bucket/key to put it at", args)) !=
        CLI_CONTINUE)
        return rc;
    const char *file = args[0];

    if (cli_s3_parse(args[1], true, &u, &e) < 0) {
        rc = cli_usage_error(put_usage, "%s", e.msg);
        goto out;
    }
    size_t klen = strlen(u.key);
    if (klen == 0 || u.key[klen - 1] == '/') {
        const char *base = last_part(file);
        if (!strcmp(file, "-") || !*base || !strcmp(base, ".") || !strcmp(base, "..")) {
            rc = cli_usage_error(put_usage,
                                 "'%s' names no object and '%s' gives no name: give "
                                 "the whole key",
                                 args[1], file);
            goto out;
        }
        uri = xasprintf("%s%s%s", args[1],
                        klen == 0 && args[1][strlen(args[1]) - 1] != '/' ? "/" : "", base);
    } else {
        uri = xstrdup(args[1]);
    }
    cli_s3_release(&u);
    if (cli_s3_parse(uri, false, &u, &e) < 0) {
        rc = cli_usage_error(put_usage, "%s", e.msg);
        goto out;
    }

    rc = 1;
    int64_t size = 0;
    if ((fd = cli_blob_open_local(file, &size, &e)) < 0) {
        cli_error_e(&e);
        goto out;
    }
    if (cli_connect(&cli, &a.conn)) goto out;
    const char *name = strcmp(file, "-") ? file : "standard input";
    if (cli_blob_upload_fd(&cli, fd, size, name, uri, &answer)) goto out;
    if (a.json)
        cli_print_json(answer);
    else
        printf("%s\n", json_string_value(json_object_get(answer, "uri"))
                           ? json_string_value(json_object_get(answer, "uri"))
                           : uri);
    rc = 0;
out:
    if (fd >= 0) close(fd);
    json_decref(answer);
    cli_s3_release(&u);
    free(uri);
    cli_release(&cli);
    return rc;
}

/* ---- get ---- */

struct sink {
    int fd;
    const char *name; /* the target, as messages call it */
    EVP_MD_CTX *md;
    int64_t bytes;
};

static int sink_write(void *arg, const char *data, size_t len, struct err *e)
{
    struct sink *s = arg;
    if (interrupted) return err_set(e, ERR_IO, "interrupted");
    if (write_all(s->fd, data, len) < 0)
        return err_set(e, errno == ENOSPC || errno == EDQUOT ? ERR_NOSPACE : ERR_IO,
                       "cannot write '%s': %s", s->name, strerror(errno));
    EVP_DigestUpdate(s->md, data, len);
    s->bytes += (int64_t)len;
    return 0;
}

static void on_interrupt(int sig)
{
    interrupted = sig;
}

static const int interrupt_signals[] = {SIGINT, SIGTERM, SIGHUP};

/* Catches the interrupting signals so that a temporary file can be removed first. */
static void catch_interrupts(struct sigaction old[])
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < ARRAY_SIZE(interrupt_signals); i++)
        sigaction(interrupt_signals[i], &sa, &old[i]);
}

/* Puts the handlers back and, when a signal came, ends the process by it. */
static void release_interrupts(const struct sigaction old[])
{
    for (size_t i = 0; i < ARRAY_SIZE(interrupt_signals); i++)
        sigaction(interrupt_signals[i], &old[i], NULL);
    if (interrupted) {
        int sig = interrupted;
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

static const char get_usage[] =
    "usage: drover get [--json] s3://BUCKET/KEY [FILE]\n"
    "\n"
    "Downloads an object into FILE (default: the key's last part, in the current\n"
    "folder; into a folder when FILE is one; '-': standard output). The file is\n"
    "written beside the target under a temporary name and renamed when every\n"
    "byte came and the SHA-256 matched, so a failed download leaves the target\n"
    "as it was. A progress bar is shown on a terminal for objects over 8 MiB.\n"
    "\n"
    "      --json         print {\"uri\", \"path\", \"size\", \"sha256\"} of what was\n"
    "                     written (not with FILE '-')\n"
    "\n"
    "examples:\n"
    "  drover get s3://lab/run-1/out.txt            # into ./out.txt\n"
    "  drover get s3://lab/run-1/out.txt - | head\n"
    CLI_COMMON_USAGE;

/* Where a get writes: the final name, and the temporary one beside it (NULL: write in place). */
struct target {
    char *path;
    char *temp;
    int fd;
};

/* Decides where `key` goes for the FILE argument `arg` (NULL: none) and opens it. */
static int open_target(const char *arg, const char *key, struct target *t, struct err *e)
{
    struct stat st;
    memset(t, 0, sizeof(*t));
    t->fd = -1;
    if (arg && !strcmp(arg, "-")) {
        t->path = xstrdup("standard output");
        t->fd = STDOUT_FILENO;
        return 0;
    }
    /* "DIR/" names a folder: one that is not there is an error, not a file named "DIR/" */
    if (arg && arg[strlen(arg) - 1] == '/' &&
        folder_missing(arg, "write", arg, " (a name that ends in '/' is a folder's)", e)) {
        t->path = xstrdup(arg);
        return e->code;
    }
    if (!arg)
        t->path = xstrdup(last_part(key));
    else if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode))
        t->path = xasprintf("%s%s%s", arg, arg[strlen(arg) - 1] == '/' ? "" : "/", last_part(key));
    else
        t->path = xstrdup(arg);

    if (stat(t->path, &st) == 0 && S_ISDIR(st.st_mode))
        return err_set(e, ERR_IO, "cannot write '%s': it is a folder", t->path);
    if (stat(t->path, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* A device or a pipe (/dev/null, a fifo) is written in place: it cannot be renamed over. */
        t->fd = open(t->path, O_WRONLY | O_CLOEXEC);
        if (t->fd < 0) return err_set(e, ERR_IO, "cannot write '%s': %s", t->path, strerror(errno));
        return 0;
    }
    /* ".NAME.drover-XXXXXX": NAME cut (not inside a UTF-8 character) so that a name near
     * the 255-byte limit still leaves room for the temporary one */
    char *copy = xstrdup(t->path);
    const char *name = last_part(t->path);
    size_t keep = strlen(name);
    if (keep > TEMP_NAME_KEEP) {
        keep = TEMP_NAME_KEEP;
        while (keep > 0 && ((unsigned char)name[keep] & 0xC0) == 0x80)
            keep--;
    }
    t->temp = xasprintf("%s/.%.*s.drover-XXXXXX", dirname(copy), (int)keep, name);
    free(copy);
    t->fd = mkostemp(t->temp, O_CLOEXEC);
    if (t->fd < 0) {
        int saved = errno;
        free(t->temp);
        t->temp = NULL;
        copy = xstrdup(t->path);
        int rc = (saved == ENOENT || saved == ENOTDIR)
                     ? folder_missing(dirname(copy), "write", t->path, "", e)
                     : 0;
        free(copy);
        return rc ? rc : err_set(e, ERR_IO, "cannot write '%s': %s", t->path, strerror(saved));
    }
    /* mkstemp makes it 0600; a downloaded file gets the usual 0666 less the umask. */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(t->fd, 0666 & ~mask);
    return 0;
}

/* Closes the target; with `keep` renames the temporary file over it, else removes it. */
static int close_target(struct target *t, bool keep, struct err *e)
{
    int rc = 0;
    if (t->fd > STDERR_FILENO && close(t->fd) < 0 && keep)
        rc = err_set(e, ERR_IO, "cannot write '%s': %s", t->path, strerror(errno));
    t->fd = -1;
    if (t->temp) {
        if (keep && rc == 0 && rename(t->temp, t->path) < 0)
            rc = err_set(e, ERR_IO, "cannot write '%s': %s", t->path, strerror(errno));
        if (!keep || rc < 0) unlink(t->temp);
    }
    free(t->temp);
    free(t->path);
    memset(t, 0, sizeof(*t));
    return rc;
}

int cli_blob_get(struct cli *cli, const char *uri, const char *file, json_t **info)
{
    struct cli_s3_uri u;
    struct err e = ERR_INIT;
    if (info) *info = NULL;
    if (cli_s3_parse(uri, false, &u, &e) < 0) {
        cli_error_e(&e);
        return 1;
    }
    struct target tgt = {.fd = -1};
    struct sigaction old[ARRAY_SIZE(interrupt_signals)];
    catch_interrupts(old);
    if (open_target(file, u.key, &tgt, &e) < 0) {
        cli_error_e(&e);
        close_target(&tgt, false, NULL);
        release_interrupts(old);
        cli_s3_release(&u);
        return 1;
    }
    char *path = blob_path(&u);
    struct sink sink = {.fd = tgt.fd, .name = tgt.path, .md = sha256_new()};
    struct progress prog;
    progress_init(&prog, uri);
    struct http_transfer t = {
        .method = "GET",
        .path = path,
        .write_fn = sink_write,
        .write_arg = &sink,
        .progress_fn = progress_update,
        .progress_arg = &prog,
    };
    int r = http_client_transfer(&cli->http, &t, &e);
    progress_end(&prog, r == 0);
    char local[65];
    sha256_end(sink.md, local);
    if (r < 0 && interrupted) {
        /* the signal ends the process below; nothing to say */
    } else if (r < 0) {
        char what[1024];
        snprintf(what, sizeof(what), "cannot get '%s'", uri);
        cli_print_err(cli, &e, t.status, what);
    } else if (t.sha256[0] && strcmp(t.sha256, local)) {
        cli_error(CLI_ERR_CORRUPT, NULL,
                  "'%s' came damaged: the server gave SHA-256 %s, the %lld bytes received "
                  "have %s%s",
                  uri, t.sha256, (long long)sink.bytes, local,
                  tgt.temp ? "; nothing was written" : "");
        r = -1;
    } else if (t.content_length >= 0 && t.content_length != sink.bytes) {
        cli_error(CLI_ERR_CORRUPT, NULL, "'%s' came short: %lld of %lld bytes%s", uri,
                  (long long)sink.bytes, (long long)t.content_length,
                  tgt.temp ? "; nothing was written" : "");
        r = -1;
    }
    json_decref(t.resp);
    char *written = xstrdup(tgt.path);
    if (close_target(&tgt, r == 0, &e) < 0) {
        cli_error_e(&e);
        r = -1;
    }
    release_interrupts(old);
    if (r == 0 && info) {
        *info = json_pack("{s:s, s:s?, s:I, s:s}", "uri", uri, "path", written, "size",
                          (json_int_t)sink.bytes, "sha256", local);
        if (!*info) /* a path that is not UTF-8 */
            *info = json_pack("{s:s, s:n, s:I, s:s}", "uri", uri, "path", "size",
                              (json_int_t)sink.bytes, "sha256", local);
    }
    free(written);
    free(path);
    cli_s3_release(&u);
    return r == 0 ? 0 : 1;
}

int cmd_get(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc, argv, get_usage);
    while (cli_getopt(&a, ":h", longopts) != -1)
        ;
    char *args[2] = {NULL, NULL};
    int rc = positional(&a, 1, 2, "which object? give its s3://bucket/key", args);
    if (rc != CLI_CONTINUE) return rc;
    if (a.json && args[1] && !strcmp(args[1], "-"))
        return cli_usage_error(get_usage, "--json prints to standard output: give a FILE, not '-'");

    struct cli_s3_uri u;
    struct err e = ERR_INIT;
    if (cli_s3_parse(args[0], false, &u, &e) < 0) return cli_usage_error(get_usage, "%s", e.msg);
    cli_s3_release(&u);

    struct cli cli = {0};
    json_t *info = NULL;
    rc = 1;
    if (!cli_connect(&cli, &a.conn))
        rc = cli_blob_get(&cli, args[0], args[1], a.json ? &info : NULL);
    if (info) cli_print_json(info);
    json_decref(info);
    cli_release(&cli);
    return rc;
}

/* ---- ls ---- */

static const char ls_usage[] =
    "usage: drover ls [--json] [s3://BUCKET[/PREFIX]]\n"
    "\n"
    "Lists the objects of a bucket whose keys start with PREFIX (all of them when\n"
    "there is none), sorted by key: key, size in bytes, when it was stored.\n"
    "Without a URI, the buckets that hold objects, by name (s3://NAME).\n"
    "\n"
    "  -n, --limit N      at most N objects (default: all)\n"
    "      --json         print the objects as a JSON array of {key, size, sha256, "
    "modified}\n"
    "                     (the buckets as an array of {name})\n"
    "\n"
    "examples:\n"
    "  drover ls                                   # the buckets\n"
    "  drover ls s3://lab\n"
    "  drover ls --json s3://lab/run-1/ | jq '.[].key'\n"
    CLI_COMMON_USAGE;

/* The "modified" of an object (RFC 3339 text, or milliseconds) for humans. */
static void format_modified(json_t *v, char *out, size_t n)
{
    if (json_is_integer(v)) {
        time_t secs = (time_t)(json_integer_value(v) / 1000);
        struct tm local;
        localtime_r(&secs, &local);
        strftime(out, n, "%Y-%m-%d %H:%M:%S", &local);
        return;
    }
    cli_format_time(json_string_value(v), false, out, n);
}

/*
 * The objects under u (its key a prefix), in key order, page by page (GET
 * /v1/blobs/{bucket}?prefix=), at most `limit` (0: all), into *list: 0, or 1 after saying
 * why (`arg`, the URI as given, names it).
 */
static int list_objects(struct cli *cli, const struct cli_s3_uri *u, const char *arg, long limit,
                        json_t **list)
{
    *list = json_array();
    char *after = NULL;
    char *bucket = http_escape(u->bucket), *prefix = http_escape(u->key);
    int rc = 0;
    for (;;) {
        struct buf path = BUF_INIT;
        long want = LIST_PAGE;
        if (limit && limit - (long)json_array_size(*list) < want)
            want = limit - (long)json_array_size(*list);
        buf_addf(&path, "/v1/blobs/%s?prefix=%s&limit=%ld", bucket, prefix, want);
        if (after) {
            char *ea = http_escape(after);
            buf_addf(&path, "&after=%s", ea);
            free(ea);
        }
        json_t *page = NULL;
        rc = cli_call(cli, "GET", path.data, NULL, &page, "cannot list '%s'", arg);
        buf_release(&path);
        free(after);
        after = NULL;
        if (rc) break;
        json_t *objects = json_object_get(page, "objects");
        json_array_extend(*list, objects);
        const char *next = json_string_value(json_object_get(page, "next"));
        bool more = next && *next && json_array_size(objects) > 0;
        if (more) after = xstrdup(next);
        json_decref(page);
        if (!more || (limit && (long)json_array_size(*list) >= limit)) break;
    }
    free(after);
    free(bucket);
    free(prefix);
    return rc;
}

/* drover ls alone: the buckets (GET /v1/blobs), one s3://NAME per line. */
static int list_buckets(struct cli_args *a, long limit)
{
    struct cli cli = {0};
    json_t *list = NULL;
    int rc = 1;
    if (cli_connect(&cli, &a->conn) ||
        cli_get_pages(&cli, "/v1/blobs", "buckets", limit, limit == 0, &list))
        goto out;
    if (a->json) {
        cli_print_json(list);
    } else {
        size_t i;
        json_t *b;
        json_array_foreach(list, i, b)
        {
            fputs("s3://", stdout);
            const char *name = json_string_value(json_object_get(b, "name"));
            cli_put_clean(stdout, name ? name : "?", name ? strlen(name) : 1);
            putchar('\n');
        }
    }
    rc = 0;
out:
    json_decref(list);
    cli_release(&cli);
    return rc;
}

int cmd_ls(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"limit", required_argument, NULL, 'n'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc, argv, ls_usage);
    long limit = 0;
    int opt;
    while ((opt = cli_getopt(&a, ":n:h", longopts)) != -1) {
        /* 'n', the only option of its own */
        if (!cli_parse_long(optarg, 1, 1000000000, &limit))
            return cli_usage_error(ls_usage, "--limit must be a positive integer, not '%s'",
                                   optarg);
    }
    if (a.exit_code == CLI_CONTINUE && optind >= argc) return list_buckets(&a, limit);
    const char *arg;
    int rc = cli_args_one(&a, "which bucket? give s3://bucket or s3://bucket/prefix",
                          "the URI is empty", &arg);
    if (rc != CLI_CONTINUE) return rc;
    struct cli_s3_uri u;
    struct err e = ERR_INIT;
    if (cli_s3_parse(arg, true, &u, &e) < 0) return cli_usage_error(ls_usage, "%s", e.msg);

    struct cli cli = {0};
    json_t *list = NULL;
    rc = 1;
    if (cli_connect(&cli, &a.conn) || list_objects(&cli, &u, arg, limit, &list)) goto out;
    if (a.json) {
        cli_print_json(list);
    } else {
        struct table *t = table_new(3, "key", "size", "modified");
        table_align_right(t, 1);
        size_t i;
        json_t *o;
        json_array_foreach(list, i, o)
        {
            char when[64];
            table_add(t, json_string_value(json_object_get(o, "key")));
            table_addf(t, "%lld", (long long)json_integer_value(json_object_get(o, "size")));
            format_modified(json_object_get(o, "modified"), when, sizeof(when));
            table_add(t, when);
        }
        table_print(t, stdout);
        table_free(t);
    }
    rc = 0;
out:
    json_decref(list);
    cli_s3_release(&u);
    cli_release(&cli);
    return rc;
}

/* ---- rm ---- */

static const char rm_usage[] =
    "usage: drover rm [--json] s3://BUCKET/KEY...\n"
    "       drover rm --recursive [--json] s3://BUCKET[/PREFIX]...\n"
    "\n"
    "Deletes objects. Goes on past an object that cannot be deleted, and then\n"
    "exits with 1.\n"
    "\n"
    "  -r, --recursive    each URI is a prefix: every object whose key starts with it\n"
    "                     (s3://BUCKET: all of the bucket's)\n"
    "      --json         print {\"removed\": [URI, ...]}, the objects deleted\n"
    "\n"
    "examples:\n"
    "  drover rm s3://lab/run-1/out.txt s3://lab/run-1/reads.fa\n"
    "  drover rm -r s3://lab/run-1/                 # everything under run-1/\n"
    CLI_COMMON_USAGE;

int cmd_rm(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"recursive", no_argument, NULL, 'r'},
        CLI_JSON_LONG_OPTION,
        CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    struct cli_args a;
    cli_args_init(&a, argc, argv, rm_usage);
    bool recursive = false;
    int opt;
    while ((opt = cli_getopt(&a, ":rh", longopts)) != -1)
        recursive = recursive || opt == 'r';
    if (a.exit_code != CLI_CONTINUE) return a.exit_code;
    if (optind >= argc)
        return cli_usage_error(rm_usage, recursive ? "which objects? give s3://bucket/prefix"
                                                   : "which object? give its s3://bucket/key");
    struct err e = ERR_INIT;
    for (int i = optind; i < argc; i++) {
        struct cli_s3_uri u;
        if (cli_s3_parse(argv[i], recursive, &u, &e) < 0) {
            if (!recursive && cli_s3_parse(argv[i], true, &u, NULL) == 0) {
                cli_s3_release(&u); /* a prefix: what -r is for */
                return cli_usage_error(rm_usage, "%s (every object under it: drover rm -r %s)",
                                       e.msg, argv[i]);
            }
            return cli_usage_error(rm_usage, "%s", e.msg);
        }
        cli_s3_release(&u);
    }
    struct cli cli;
    int rc = 0;
    if (cli_connect(&cli, &a.conn)) {
        cli_release(&cli);
        return 1;
    }
    json_t *removed = json_array();
    for (int i = optind; i < argc; i++) {
        struct cli_s3_uri u;
        cli_s3_parse(argv[i], recursive, &u, NULL);
        json_t *under = NULL; /* with -r, the objects under the prefix (none when the
                                 listing failed part way: nothing of it is removed) */
        bool listed = !recursive || !list_objects(&cli, &u, argv[i], 0, &under);
        if (!listed) rc = 1;
        size_t n = !listed ? 0 : recursive ? json_array_size(under) : 1;
        for (size_t k = 0; k < n; k++) {
            struct cli_s3_uri o = u;
            if (recursive)
                o.key = (char *)json_string_value(json_object_get(json_array_get(under, k), "key"));
            char *uri = recursive ? xasprintf("s3://%s/%s", u.bucket, o.key ? o.key : "")
                                  : xstrdup(argv[i]);
            char *path = blob_path(&o);
            if (!o.key || cli_call(&cli, "DELETE", path, NULL, NULL, "cannot remove '%s'", uri))
                rc = 1;
            else if (a.json)
                json_array_append_new(removed, json_string(uri)); /* checked: UTF-8 */
            else
                printf("removed %s\n", uri);
            free(path);
            free(uri);
        }
        if (recursive && listed && !n) cli_notice("note", "no object under %s", argv[i]);
        json_decref(under);
        cli_s3_release(&u);
    }
    if (a.json) {
        json_t *j = json_pack("{s:o}", "removed", removed);
        cli_print_json(j);
        json_decref(j);
    } else {
        json_decref(removed);
    }
    cli_release(&cli);
    return rc;
}
