/*
 * stage.c - see stage.h. A stage is two lists of items (downloads, uploads)
 * worked through one at a time by a small state machine on the loop:
 *
 *   NEXT ──s3 object without URL──► PRESIGN (POST /v1/presign on the aclient)
 *        ──s3 / http(s) with URL──► TRANSFER (a curl easy handle on the aclient)
 *        ──file://──────────────► COPY (one chunk per loop turn)
 *        ──prefix──► listed (s3: a presign with "prefix": true; file: and the
 *                    work folder: readdir), its objects appended as items
 *
 * Every step is started from the `kick` event, so `done` is never called from
 * inside stage_in / stage_out. An item's failure ends the stage: what is in
 * flight is dropped and `done` gets the message, which names the URI first.
 *
 * Invariants: at most one of req (presign or transfer) and the copy's fds is
 * live; `fd` is the local file of the current item (-1 between items).
 */
#include "agent/stage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/cache.h"
#include "agent/utf8.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "job/spec.h"

#define PRESIGN_TIMEOUT_MS 30000
#define PRESIGN_TRIES 5 /* on a network error or a 5xx, with a backoff from 500 ms */
#define CONNECT_TIMEOUT_MS 10000
#define COPY_CHUNK (1024 * 1024) /* bytes a local copy moves per loop turn */
#define ANSWER_MAX (64 * 1024)   /* an answer's body that is not the object (errors, PUT's) */
#define NAME_MAX_LOCAL 255
#define TMP_NAME_KEEP 200 /* bytes of NAME kept in a file:// output's ".NAME.drover-tmp-R" */
#define TMP_TRIES 8
#define OUTPUT_TREE_DEPTH 32    /* folders within folders an output prefix uploads */
#define OUTPUT_FILES_MAX 100000 /* items of a stage's uploads */

enum item_kind { IT_GET, IT_GET_PREFIX, IT_PUT, IT_PUT_PREFIX };

struct stage_item {
    enum item_kind kind;
    const char *what; /* "input", "output", "stdin", "stdout", "stderr": starts messages */
    char *uri;        /* the object, or the prefix */
    char *path;       /* the local file (absolute), NULL for prefixes */
    char *name;       /* the local name as the job sees it (messages) */
    char *url;        /* the presigned or listed URL, once known */
    bool always;      /* uploaded after a failed run too (stdout/stderr) */
    /* inputs: the input cache (cache.h) */
    bool cached;    /* goes through the agent's cache (cache: true, or its sha256 known) */
    char sha[65];   /* its expected SHA-256, "" unknown (an s3 object's is asked with a HEAD) */
    char *head_url; /* the presigned HEAD URL that asks it */
    bool head_done;
};

struct items {
    struct stage_item *v;
    size_t n, cap;
};

enum step { STEP_NEXT, STEP_PRESIGN, STEP_TRANSFER, STEP_COPY, STEP_CACHE_WAIT };

struct stage {
    struct agent_job *j;
    struct agent *a;
    struct items in, out;
    struct items *cur; /* the list being worked through */
    size_t idx;
    bool all; /* stage_out: every output, not only the `always` ones */
    stage_done_fn done;
    enum step step;
    struct event *kick, *retry_timer;
    int presign_tries;
    bool presign_head; /* the presign in flight is the HEAD of a cached input */
    bool hashing;      /* the copy in flight is a download that is checked (not a placement) */

    /* the input cache: the object this stage downloads into it, its wait for another's
     * download, the objects it pinned (released with the stage, when its job is gone) */
    char fetch_sha[65];
    struct cache_waiter waiter;
    char (*pins)[65];
    size_t npins;

    /* the current item's transfer */
    struct aclient_req *req;
    CURL *easy;      /* of the transfer in flight (owned by the aclient) */
    int fd, dst_fd;  /* local file; the copy's destination */
    char *tmp;       /* file:// output: the temporary file renamed into place */
    char *dst_final; /* ... and its final path */
    struct curl_slist *headers;
    EVP_MD_CTX *sha;
    int64_t size;      /* of an upload: the file's size */
    int64_t moved;     /* bytes read (uploads) or written (downloads) */
    int io_errno;      /* a local read/write failed inside a curl callback */
    struct buf answer; /* a body that is not the object: an error's, or a PUT's answer */
    char errbuf[CURL_ERROR_SIZE];

    json_t *outputs;
};

static void fail(struct stage *st, const char *fmt, ...) PRINTF_LIKE(2, 3);
static bool download_end(struct stage *st, struct stage_item *it);

/* --- small helpers ---------------------------------------------------------------------- */

static bool starts(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static struct stage_item *items_add(struct items *l)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    struct stage_item *it = &l->v[l->n++];
    memset(it, 0, sizeof(*it));
    return it;
}

static void items_release(struct items *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].uri);
        free(l->v[i].path);
        free(l->v[i].name);
        free(l->v[i].url);
        free(l->v[i].head_url);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* The part after the last '/' of an s3 key or file path (the URI's "last part"). */
static const char *last_part(const char *s)
{
    const char *slash = strrchr(s, '/');
    return slash ? slash + 1 : s;
}

/* The local name a URI's object gets (spec_input_file_name: the server checks names with it). */
static char *local_name(const char *uri)
{
    const char *name;
    size_t n = spec_input_file_name(uri, &name);
    return xstrndup(name, n);
}

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > NAME_MAX_LOCAL || !strcmp(name, ".") || !strcmp(name, "..") ||
        strchr(name, '/') || starts(name, STAGE_RESERVED_PREFIX))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) return false;
    return true;
}

/* True when s is valid UTF-8 (json_string takes nothing else). */
static bool utf8_valid(const char *s)
{
    struct buf b = BUF_INIT;
    size_t n = strlen(s);
    utf8_sanitize(&b, s, n, true);
    bool ok = b.len == n && (n == 0 || memcmp(b.data, s, n) == 0);
    buf_release(&b);
    return ok;
}

/*
 * Opens an existing file to read it without blocking the loop and without
 * following a symbolic link at its last part: a FIFO, a device or a folder is
 * refused (*why set, errno EINVAL; ELOOP for a link), the descriptor is blocking
 * again when returned. -1 with errno set otherwise.
 */
static int open_regular(const char *path, const char **why)
{
    *why = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ELOOP) *why = "is a symbolic link";
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        *why = "is not a regular file";
        errno = EINVAL;
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* realpath of `path` or of its nearest existing ancestor; NULL if none resolves. */
static char *real_existing(const char *path)
{
    char *p = xstrdup(path);
    for (;;) {
        char *r = realpath(p, NULL);
        if (r || errno != ENOENT) {
            free(p);
            return r;
        }
        char *slash = strrchr(p, '/');
        if (!slash || slash == p) {
            free(p);
            return realpath("/", NULL);
        }
        *slash = '\0';
    }
}

static bool under(const char *real, const char *root)
{
    size_t n = strlen(root);
    if (!strcmp(root, "/")) return true;
    return !strncmp(real, root, n) && (real[n] == '\0' || real[n] == '/');
}

/* True when the file:// path (or what exists of it) resolves under an --allow-path folder. */
static bool path_allowed(const struct agent *a, const char *path)
{
    char *real = real_existing(path);
    bool ok = false;
    for (size_t i = 0; real && i < a->o.nallow_paths && !ok; i++)
        ok = under(real, a->o.allow_paths[i]);
    free(real);
    return ok;
}

static void sha_hex(EVP_MD_CTX *ctx, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    for (unsigned i = 0; i < len && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[64] = '\0';
}

static void sha_reset(struct stage *st)
{
    if (!st->sha) st->sha = EVP_MD_CTX_new();
    if (!st->sha || !EVP_DigestInit_ex(st->sha, EVP_sha256(), NULL)) die("cannot use SHA-256");
}

/* mkdir -p of the folders of `path` below `base` (base exists), mode 0700 | 0755 for shared. */
static int mkdirs_below(const char *base, const char *path, mode_t mode)
{
    size_t n = strlen(base);
    char *p = xstrdup(path);
    int rc = 0;
    for (char *s = p + n + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) rc = -1;
        *s = '/';
        if (rc) break;
    }
    free(p);
    return rc;
}

/* --- the plan -------------------------------------------------------------------------- */

static int plan_fail(struct err *e, const char *what, const char *uri, const char *why)
{
    return err_set(e, ERR_INVALID, "%s %.300s: %s", what, uri, why);
}

/* Checks the URI's scheme for `what` on this agent. */
static int plan_uri(struct stage *st, const char *what, const char *uri, bool output, struct err *e)
{
    if (starts(uri, "s3://")) return 0;
    if (starts(uri, "http://") || starts(uri, "https://"))
        return output ? plan_fail(e, what, uri, "http(s) urls can only be read") : 0;
    if (starts(uri, "file://")) {
        if (st->a->o.nallow_paths == 0)
            return plan_fail(e, what, uri,
                             "file:// uris are refused: this agent allows no path (--allow-path)");
        if (!path_allowed(st->a, uri + 7))
            return plan_fail(e, what, uri,
                             "the path is not under a folder this agent allows (--allow-path)");
        return 0;
    }
    return plan_fail(e, what, uri, "the uri must start with s3://, http://, https:// or file:///");
}

/* The input or output item whose file of the work folder is `name`, or NULL. */
static const struct stage_item *name_taken(const struct stage *st, const char *name)
{
    const struct items *lists[] = {&st->in, &st->out};
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < lists[k]->n; i++)
            if (lists[k]->v[i].name && !strcmp(lists[k]->v[i].name, name)) return &lists[k]->v[i];
    return NULL;
}

/* One object item, added at the end of l. */
static int plan_object(struct stage *st, struct items *l, enum item_kind kind, const char *what,
                       const char *uri, const char *fixed_name, bool always, struct err *e)
{
    int rc = plan_uri(st, what, uri, kind == IT_PUT, e);
    if (rc) return rc;
    char *name = fixed_name ? xstrdup(fixed_name) : local_name(uri);
    if (!fixed_name && !name_ok(name)) {
        rc = plan_fail(e, what, uri,
                       !*name ? "no file name can be taken from it (its last part is empty)"
                              : "its last part cannot name a file in the work folder");
        free(name);
        return rc;
    }
    const struct stage_item *other = fixed_name ? NULL : name_taken(st, name);
    if (other) { /* spec.c refuses this at submit; it comes from an array's task, whose item
                    is set when the task is made, or from a spec stored before */
        char why[512];
        snprintf(why, sizeof(why),
                 "its file '%.100s' of the work folder is already that of %s %.200s: each input "
                 "and output is named after the last part of its uri, so two must differ there",
                 name, other->what, other->uri);
        free(name);
        return plan_fail(e, what, uri, why);
    }
    struct stage_item *it = items_add(l);
    it->kind = kind;
    it->what = what;
    it->uri = xstrdup(uri);
    it->name = name;
    it->path = xasprintf("%s/%s", st->j->work_dir, name);
    it->always = always;
    return 0;
}

/* An input argument's item planned already for this uri with no other sha256 (sha may be
   NULL: any), or NULL. */
static struct stage_item *same_input(struct items *l, const char *uri, const char *sha)
{
    for (size_t k = 0; k < l->n; k++) {
        struct stage_item *it = &l->v[k];
        if (it->kind == IT_GET && !strcmp(it->what, "input") && !strcmp(it->uri, uri) &&
            (!sha || !it->sha[0] || !strcmp(it->sha, sha)))
            return it;
    }
    return NULL;
}

/* An output argument's item planned already for this uri (one file, uploaded once), or NULL. */
static struct stage_item *same_output(struct items *l, const char *uri)
{
    for (size_t k = 0; k < l->n; k++)
        if (l->v[k].kind == IT_PUT && !strcmp(l->v[k].what, "output") && !strcmp(l->v[k].uri, uri))
            return &l->v[k];
    return NULL;
}

static int plan_prefix(struct stage *st, struct items *l, enum item_kind kind, const char *uri,
                       struct err *e)
{
    const char *what = kind == IT_GET_PREFIX ? "input" : "output";
    int rc = plan_uri(st, what, uri, kind == IT_PUT_PREFIX, e);
    if (rc) return rc;
    if (starts(uri, "http"))
        return plan_fail(e, what, uri, "an http(s) url cannot be listed as a prefix");
    struct stage_item *it = items_add(l);
    it->kind = kind;
    it->what = what;
    it->uri = xstrdup(uri);
    return 0;
}

static const char *stream_uri(json_t *command, const char *name)
{
    json_t *s = json_object_get(command, name);
    const char *type = json_string_value(json_object_get(s, "type"));
    return type && !strcmp(type, "uri") ? json_string_value(json_object_get(s, "value")) : NULL;
}

int stage_plan(struct agent_job *j, struct stage **out, json_t **command_out, struct err *e)
{
    struct stage *st = xcalloc(1, sizeof(*st));
    json_t *command = json_deep_copy(json_object_get(j->spec, "command"));
    int rc = 0;
    *out = NULL;
    *command_out = NULL;
    if (!command) command = json_object();
    st->j = j;
    st->a = j->a;
    st->fd = st->dst_fd = -1;
    st->outputs = json_array();

    size_t i;
    json_t *arg;
    json_array_foreach(json_object_get(command, "arguments"), i, arg)
    {
        const char *type = json_string_value(json_object_get(arg, "type"));
        const char *uri = json_string_value(json_object_get(arg, "value"));
        bool in = type && !strcmp(type, "input"), outp = type && !strcmp(type, "output");
        if (!in && !outp) continue;
        if (!uri) {
            rc = err_set(e, ERR_INVALID, "command.arguments[%zu] has no uri", i);
            goto out;
        }
        const char *sha = json_string_value(json_object_get(arg, "sha256"));
        /* one object named twice: downloaded once, both arguments get its file */
        struct stage_item *it = in ? same_input(&st->in, uri, sha) : same_output(&st->out, uri);
        if (!it) {
            struct items *l = in ? &st->in : &st->out;
            if ((rc = plan_object(st, l, in ? IT_GET : IT_PUT, in ? "input" : "output", uri,
                                  NULL, false, e)))
                goto out;
            it = &l->v[l->n - 1];
        }
        if (in && sha && cache_sha_valid(sha)) memcpy(it->sha, sha, 65);
        /* an input marked cache: true (an s3 object's sha256 is asked of the store; spec.c
         * refuses cache: true elsewhere without one), or whose sha256 is known unless it is
         * marked cache: false */
        json_t *cache = json_object_get(arg, "cache");
        if (in && st->a->cache && (json_is_true(cache) || (sha && !json_is_false(cache))))
            it->cached = true;
        json_object_del(arg, "cache");
        json_object_del(arg, "sha256");
        json_object_set_new(arg, "type", json_string("parameter"));
        json_object_set_new(arg, "value", json_string(it->path));
    }
    json_array_foreach(json_object_get(command, "input"), i, arg)
    {
        if (json_is_string(arg) &&
            (rc = plan_prefix(st, &st->in, IT_GET_PREFIX, json_string_value(arg), e)))
            goto out;
    }
    json_array_foreach(json_object_get(command, "output"), i, arg)
    {
        if (json_is_string(arg) &&
            (rc = plan_prefix(st, &st->out, IT_PUT_PREFIX, json_string_value(arg), e)))
            goto out;
    }
    const char *uri;
    if ((uri = stream_uri(command, "stdin")) &&
        (rc = plan_object(st, &st->in, IT_GET, "stdin", uri, STAGE_STDIN_FILE, false, e)))
        goto out;
    if ((uri = stream_uri(command, "stdout")) &&
        (rc = plan_object(st, &st->out, IT_PUT, "stdout", uri, STAGE_STDOUT_FILE, true, e)))
        goto out;
    if ((uri = stream_uri(command, "stderr")) &&
        (rc = plan_object(st, &st->out, IT_PUT, "stderr", uri, STAGE_STDERR_FILE, true, e)))
        goto out;
out:
    if (rc || (st->in.n == 0 && st->out.n == 0)) {
        stage_free(st);
        st = NULL;
    }
    if (rc) {
        json_decref(command);
        return rc;
    }
    *out = st;
    *command_out = command;
    return 0;
}

bool stage_has_inputs(const struct stage *st)
{
    return st && st->in.n > 0;
}

json_t *stage_outputs(const struct stage *st)
{
    return st ? st->outputs : NULL;
}

/* --- ending a transfer, the stage ------------------------------------------------------ */

static void transfer_drop(struct stage *st)
{
    aclient_cancel(st->req);
    st->req = NULL;
    st->easy = NULL;
    if (st->retry_timer) evtimer_del(st->retry_timer);
    if (st->fd >= 0) close(st->fd);
    if (st->dst_fd >= 0) close(st->dst_fd);
    st->fd = st->dst_fd = -1;
    if (st->fetch_sha[0]) cache_abandon(st->a->cache, st->fetch_sha); /* removes its file */
    st->fetch_sha[0] = '\0';
    if (st->a->cache) cache_unwait(st->a->cache, &st->waiter);
    if (st->tmp) unlink(st->tmp);
    free(st->tmp);
    free(st->dst_final);
    st->tmp = st->dst_final = NULL;
    curl_slist_free_all(st->headers);
    st->headers = NULL;
    buf_release(&st->answer);
    st->moved = st->size = 0;
    st->hashing = false;
    st->presign_head = false;
    st->io_errno = 0;
    st->errbuf[0] = '\0';
    st->step = STEP_NEXT;
}

static void kick(struct stage *st)
{
    event_active(st->kick, EV_TIMEOUT, 0);
}

/* The current item is done: on to the next, from the loop. */
static void item_done(struct stage *st)
{
    transfer_drop(st);
    st->idx++;
    kick(st);
}

static void fail(struct stage *st, const char *fmt, ...)
{
    va_list ap;
    char *msg;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
    va_end(ap);
    /* names from the job's files may be any bytes: the report carries UTF-8 text only */
    struct buf text = BUF_INIT;
    if (msg) utf8_sanitize(&text, msg, strlen(msg), true);
    free(msg);
    transfer_drop(st);
    st->cur = NULL;
    stage_done_fn done = st->done;
    st->done = NULL;
    done(st->j, ERR_IO, text.len ? buf_str(&text) : "staging failed");
    buf_release(&text);
}

/* Lists an upload in the report's outputs; false (after failing the stage) if it cannot be. */
static bool add_output(struct stage *st, const char *what, const char *uri, int64_t size,
                       const char *sha)
{
    json_t *o = json_pack("{s:s, s:I, s:s}", "uri", uri, "size", (json_int_t)size, "sha256", sha);
    if (!o || json_array_append_new(st->outputs, o) != 0) {
        fail(st, "%s %s: cannot be listed in the report (the uri is not UTF-8 text)", what, uri);
        return false;
    }
    return true;
}

/* --- presign -------------------------------------------------------------------------- */

static void advance(struct stage *st);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct stage *st = arg;
    (void)fd, (void)what;
    advance(st);
}

static int add_prefix_objects(struct stage *st, struct stage_item *prefix, json_t *objects);

static void on_presign(void *arg, int rc, long status, json_t *resp, const struct err *e)
{
    struct stage *st = arg;
    struct stage_item *it = &st->cur->v[st->idx];
    st->req = NULL;
    st->step = STEP_NEXT;
    if (rc && (status == 0 || status >= 500) && ++st->presign_tries < PRESIGN_TRIES) {
        int ms = 500 << (st->presign_tries - 1);
        log_warn("job=%s attempt=%d %s %s: cannot get a URL from the server (%s); trying again in "
                 "%d ms",
                 st->j->id, st->j->attempt, it->what, it->uri, e->msg, ms);
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(st->retry_timer, &tv);
        return;
    }
    if (rc && status == 404) { /* a server that checks the object before signing */
        fail(st, "%s %s: 404 not found", it->what, it->uri);
        return;
    }
    if (rc) {
        fail(st, "%s %s: the server refused a URL for it (%ld): %s", it->what, it->uri, status,
             e->msg);
        return;
    }
    st->presign_tries = 0;
    if (it->kind == IT_GET_PREFIX) {
        json_t *objects = json_object_get(resp, "objects");
        if (!json_is_array(objects)) {
            fail(st, "%s %s: the server's answer to presign has no objects", it->what, it->uri);
            return;
        }
        if (add_prefix_objects(st, it, objects) == 0) item_done(st);
        return;
    }
    const char *url = json_string_value(json_object_get(resp, "url"));
    if (!url || (!starts(url, "http://") && !starts(url, "https://"))) {
        fail(st, "%s %s: the server's answer to presign has no URL", it->what, it->uri);
        return;
    }
    if (st->presign_head)
        it->head_url = xstrdup(url);
    else
        it->url = xstrdup(url);
    st->presign_head = false;
    advance(st);
}

static void presign(struct stage *st, struct stage_item *it, const char *method, bool prefix)
{
    json_t *body =
        json_pack("{s:s, s:s, s:i, s:s, s:i}", "method", method, "uri", it->uri, "expires_s",
                  STAGE_PRESIGN_EXPIRES_S, "job", st->j->id, "attempt", st->j->attempt);
    if (!body) {
        fail(st, "%s %s: cannot build the presign request (the uri is not UTF-8 text)", it->what,
             it->uri);
        return;
    }
    if (prefix) json_object_set_new(body, "prefix", json_true());
    st->step = STEP_PRESIGN;
    st->presign_head = !strcmp(method, "HEAD");
    if (aclient_request(st->a->ac, "POST", "/v1/presign", body, PRESIGN_TIMEOUT_MS, on_presign, st,
                        &st->req)) {
        json_decref(body);
        fail(st, "%s %s: cannot build the presign request", it->what, it->uri);
        return;
    }
    json_decref(body);
}

/* --- prefixes ----------------------------------------------------------------------------- */

/* The relative path of `key` under the prefix's folder is safe to create in the work folder. */
static bool rel_ok(const char *rel)
{
    if (!*rel || strlen(rel) > PATH_MAX / 2) return false;
    for (const char *seg = rel;;) {
        size_t n = strcspn(seg, "/");
        if (n == 0 || n > NAME_MAX_LOCAL || (n == 1 && seg[0] == '.') ||
            (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        if (!seg[n]) break;
        seg += n + 1;
    }
    for (const char *p = rel; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) return false;
    return !starts(rel, STAGE_RESERVED_PREFIX);
}

/* s3 prefix listed by the server: [{"uri", "key", "url", ...}] become downloads. */
static int add_prefix_objects(struct stage *st, struct stage_item *prefix, json_t *objects)
{
    /* keys land relative to the prefix's folder: s3://b/maps/poly → maps/poly.shp → poly.shp */
    const char *key = strchr(prefix->uri + 5, '/');
    size_t folder_len = key ? (size_t)(last_part(key + 1) - (key + 1)) : 0;
    char *prefix_uri = xstrdup(prefix->uri); /* items_add may move `prefix` */
    size_t i;
    json_t *o;
    json_array_foreach(objects, i, o)
    {
        const char *okey = json_string_value(json_object_get(o, "key"));
        const char *url = json_string_value(json_object_get(o, "url"));
        const char *ouri = json_string_value(json_object_get(o, "uri"));
        if (!okey || !url || !ouri || strlen(okey) < folder_len || !rel_ok(okey + folder_len)) {
            fail(st,
                 "input %s: the server listed an object that cannot be downloaded here (%.200s)",
                 prefix_uri, okey ? okey : "no key");
            free(prefix_uri);
            return -1;
        }
        struct stage_item *it = items_add(st->cur);
        it->kind = IT_GET;
        it->what = "input";
        it->uri = xstrdup(ouri);
        it->name = xstrdup(okey + folder_len);
        it->path = xasprintf("%s/%s", st->j->work_dir, it->name);
        it->url = xstrdup(url);
    }
    free(prefix_uri);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/*
 * The regular files (and with `dirs`, the folders) of folder `dir` whose names start with
 * `start` (and are not the agent's), sorted. With `follow` false a symbolic link is no
 * regular file nor folder (skipped),
 * else the file it leads to counts. Returns their count or -1 (errno set); *names is
 * freed with free_names.
 */
static int list_files(const char *dir, const char *start, bool follow, bool dirs,
                      struct dirent ***names)
{
    struct dirent **all;
    int n = scandir(dir, &all, NULL, by_name);
    if (n < 0) return -1;
    int k = 0;
    for (int i = 0; i < n; i++) {
        const char *name = all[i]->d_name;
        struct stat sb;
        char *full = xasprintf("%s/%s", dir, name);
        bool keep = starts(name, start) && strcmp(name, ".") && strcmp(name, "..") &&
                    !starts(name, STAGE_RESERVED_PREFIX) &&
                    (follow ? stat(full, &sb) : lstat(full, &sb)) == 0 &&
                    (S_ISREG(sb.st_mode) || (dirs && S_ISDIR(sb.st_mode)));
        free(full);
        if (keep)
            all[k++] = all[i];
        else
            free(all[i]);
    }
    *names = all;
    return k;
}

static void free_names(struct dirent **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* 0 when `rel`, a file under a local prefix, may be named `ouri`; else -1 after fail(), which
   says why it cannot be `verb` ("uploaded", "copied in"). */
static int local_name_check(struct stage *st, const char *what, const char *prefix,
                            const char *rel, const char *ouri, const char *verb)
{
    const char *why = NULL;
    if (!utf8_valid(rel)) {
        fail(st, "%s %s: the file name '%.200s' is not UTF-8 text, so it names no object", what,
             prefix, rel);
        return -1;
    }
    if (!name_ok(last_part(rel)) || !spec_uri_valid(ouri, false, &why)) {
        fail(st, "%s %s: the file '%.200s' cannot be %s: %s", what, prefix, rel, verb,
             why ? why : "not a usable name");
        return -1;
    }
    return 0;
}

/* Is `uri` uploaded already by an item of the job's, or `name` the file of one of its inputs
   (downloaded, not made by the job)? An output prefix leaves those files out. */
static bool staged_already(const struct stage *st, const char *name, const char *uri)
{
    for (size_t i = 0; i < st->in.n; i++)
        if (st->in.v[i].name && !strcmp(st->in.v[i].name, name)) return true;
    for (size_t i = 0; i < st->out.n; i++)
        if (st->out.v[i].kind == IT_PUT && !strcmp(st->out.v[i].uri, uri)) return true;
    return false;
}

/*
 * The file or folder `rel` of the work folder, under an output prefix whose folder is
 * folder_uri: an upload item (unless staged_already), or each file of the folder, at any
 * depth up to OUTPUT_TREE_DEPTH, as folder_uri + its path. 0, or -1 after fail().
 */
static int plan_output_tree(struct stage *st, const char *what, const char *prefix,
                            const char *folder_uri, const char *rel, int depth)
{
    char *path = xasprintf("%s/%s", st->j->work_dir, rel);
    char *ouri = xasprintf("%s%s", folder_uri, rel);
    struct stat sb;
    int rc = 0;
    if (local_name_check(st, what, prefix, rel, ouri, "uploaded")) {
        rc = -1;
    } else if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        struct dirent **names = NULL;
        int n = depth < OUTPUT_TREE_DEPTH ? list_files(path, "", false, true, &names) : 0;
        if (n < 0) {
            fail(st, "%s %s: cannot list '%s': %s", what, prefix, path, strerror(errno));
            rc = -1;
        } else if (depth >= OUTPUT_TREE_DEPTH) {
            fail(st, "%s %s: the folder '%.200s' is more than %d folders deep", what, prefix, rel,
                 OUTPUT_TREE_DEPTH);
            rc = -1;
        }
        for (int i = 0; i < n && rc == 0; i++) {
            char *sub = xasprintf("%s/%s", rel, names[i]->d_name);
            rc = plan_output_tree(st, what, prefix, folder_uri, sub, depth + 1);
            free(sub);
        }
        if (n > 0) free_names(names, n);
    } else if (!staged_already(st, rel, ouri)) {
        if (st->cur->n >= OUTPUT_FILES_MAX) {
            fail(st, "%s %s: more than %d files to upload", what, prefix, OUTPUT_FILES_MAX);
            rc = -1;
        } else {
            struct stage_item *o = items_add(st->cur);
            o->kind = IT_PUT;
            o->what = what;
            o->uri = xstrdup(ouri);
            o->name = xstrdup(rel);
            o->path = xstrdup(path);
        }
    }
    free(path);
    free(ouri);
    return rc;
}

/* A file:// input prefix, or an output prefix over the work folder: items appended. */
static int expand_local(struct stage *st)
{
    struct stage_item *it = &st->cur->v[st->idx];
    bool input = it->kind == IT_GET_PREFIX;
    char *uri = xstrdup(it->uri);
    const char *what = it->what;
    const char *start = last_part(uri);
    char *folder_uri = xstrndup(uri, (size_t)(start - uri)); /* ends with '/' */
    char *dir = input ? xstrndup(uri + 7, (size_t)(start - uri - 7)) : xstrdup(st->j->work_dir);
    struct dirent **names = NULL;
    /* a job's symbolic links are not uploaded (they could lead anywhere the agent can read);
     * a file:// input folder's are followed and checked against --allow-path when opened;
     * an output folder is uploaded with what it holds */
    int n = list_files(dir, start, input, !input, &names), rc = 0;
    if (n < 0) {
        fail(st, "%s %s: cannot list '%s': %s", what, uri, dir, strerror(errno));
        rc = -1;
        goto out;
    }
    for (int i = 0; i < n && rc == 0; i++) {
        const char *name = names[i]->d_name;
        if (!input) {
            rc = plan_output_tree(st, what, uri, folder_uri, name, 0);
            continue;
        }
        char *ouri = xasprintf("%s%s", folder_uri, name);
        if (local_name_check(st, what, uri, name, ouri, "copied in")) {
            rc = -1;
        } else {
            struct stage_item *o = items_add(st->cur);
            o->kind = IT_GET;
            o->what = what;
            o->uri = xstrdup(ouri);
            o->name = xstrdup(name);
            o->path = xasprintf("%s/%s", st->j->work_dir, name);
        }
        free(ouri);
    }
    free_names(names, n);
out:
    free(uri);
    free(folder_uri);
    free(dir);
    return rc;
}

/* --- curl transfers -------------------------------------------------------------------- */

static long response_code(CURL *easy)
{
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct stage *st = arg;
    size_t n = size * nmemb;
    struct stage_item *it = &st->cur->v[st->idx];
    long code = response_code(st->easy);
    if (it->kind == IT_PUT || code < 200 || code >= 300) {
        if (st->answer.len < ANSWER_MAX)
            buf_add(&st->answer, data,
                    n < ANSWER_MAX - st->answer.len ? n : ANSWER_MAX - st->answer.len);
        return n;
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(st->fd, data + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            st->io_errno = errno;
            return 0; /* CURLE_WRITE_ERROR */
        }
        off += (size_t)w;
    }
    if (it->sha[0]) EVP_DigestUpdate(st->sha, data, n);
    st->moved += (int64_t)n;
    return n;
}

static size_t on_read(char *data, size_t size, size_t nmemb, void *arg)
{
    struct stage *st = arg;
    ssize_t r;
    while ((r = read(st->fd, data, size * nmemb)) < 0 && errno == EINTR) {
    }
    if (r < 0) {
        st->io_errno = errno;
        return CURL_READFUNC_ABORT;
    }
    EVP_DigestUpdate(st->sha, data, (size_t)r);
    st->moved += r;
    return (size_t)r;
}

/* curl rewinds an upload to send it again (a redirect, a retried connection). */
static int on_seek(void *arg, curl_off_t offset, int origin)
{
    struct stage *st = arg;
    if (offset != 0 || origin != SEEK_SET || lseek(st->fd, 0, SEEK_SET) != 0)
        return CURL_SEEKFUNC_CANTSEEK;
    sha_reset(st);
    st->moved = 0;
    return CURL_SEEKFUNC_OK;
}

/* "404 not found", "HTTP 403: <the server's message>": an answer that is not the object. */
static char *status_text(struct stage *st, long code)
{
    if (code == 404) return xstrdup("404 not found");
    const char *msg = NULL;
    json_t *doc = st->answer.len ? json_loadb(st->answer.data, st->answer.len, 0, NULL) : NULL;
    json_t *m = json_object_get(json_object_get(doc, "error"), "message");
    if (json_is_string(m)) msg = json_string_value(m);
    if (!msg && !doc && st->answer.len) {
        buf_addc(&st->answer, '\0');
        msg = st->answer.data;
    }
    char *text = msg ? xasprintf("HTTP %ld: %.300s", code, msg) : xasprintf("HTTP %ld", code);
    json_decref(doc);
    for (char *p = text; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    return text;
}

static void on_transfer(void *arg, CURLcode result, CURL *easy)
{
    struct stage *st = arg;
    struct stage_item *it = &st->cur->v[st->idx];
    long code = response_code(easy);
    st->req = NULL;
    st->easy = NULL;
    if (result == CURLE_WRITE_ERROR && st->io_errno) {
        fail(st, "%s %s: cannot write '%s': %s", it->what, it->uri, it->name,
             strerror(st->io_errno));
        return;
    }
    if (result == CURLE_ABORTED_BY_CALLBACK && st->io_errno) {
        fail(st, "%s %s: cannot read '%s': %s", it->what, it->uri, it->name,
             strerror(st->io_errno));
        return;
    }
    if (result == CURLE_OPERATION_TIMEDOUT && strstr(st->errbuf, "too slow")) {
        fail(st, "%s %s: the transfer stalled: nothing moved for %g s", it->what, it->uri,
             st->a->o.stall_timeout_s);
        return;
    }
    if (result != CURLE_OK) {
        fail(st, "%s %s: %s", it->what, it->uri,
             st->errbuf[0] ? st->errbuf : curl_easy_strerror(result));
        return;
    }
    if (code < 200 || code >= 300) {
        char *text = status_text(st, code);
        fail(st, "%s %s: %s", it->what, it->uri, text);
        free(text);
        return;
    }
    if (it->kind == IT_PUT) {
        char sha[65];
        sha_hex(st->sha, sha);
        if (st->moved != st->size) {
            fail(st, "%s %s: '%s' changed size while it was uploaded", it->what, it->uri, it->name);
            return;
        }
        /* the embedded store answers what it stored; check it against what was read */
        json_t *doc = st->answer.len ? json_loadb(st->answer.data, st->answer.len, 0, NULL) : NULL;
        const char *theirs = json_string_value(json_object_get(doc, "sha256"));
        bool differ = theirs && strcmp(theirs, sha);
        json_decref(doc);
        if (differ) {
            fail(st, "%s %s: the store received other bytes than were sent (sha256 differs)",
                 it->what, it->uri);
            return;
        }
        if (!add_output(st, it->what, it->uri, st->size, sha)) return;
    }
    log_debug("job=%s attempt=%d %s %s: %lld bytes %s", st->j->id, st->j->attempt, it->what,
              it->uri, (long long)st->moved, it->kind == IT_PUT ? "uploaded" : "downloaded");
    if (it->kind == IT_GET && !download_end(st, it)) return;
    item_done(st);
}

static void start_transfer(struct stage *st, struct stage_item *it, const char *url)
{
    CURL *easy = curl_easy_init();
    if (!easy) die("cannot initialise libcurl");
    bool put = it->kind == IT_PUT;
    curl_easy_setopt(easy, CURLOPT_URL, url);
    http_easy_tls(easy); /* --ca-file: presigned URLs of a drover server with its own CA */
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, st->errbuf);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "drover-agent/" DROVER_VERSION);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME,
                     (long)(st->a->o.stall_timeout_s >= 1 ? st->a->o.stall_timeout_s : 1));
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, st);
    if (put) {
        st->headers = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, st->headers);
        curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st->size);
        curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(easy, CURLOPT_READDATA, st);
        curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(easy, CURLOPT_SEEKDATA, st);
        sha_reset(st);
    } else if (!starts(it->uri, "s3://")) {
        if (it->sha[0]) sha_reset(st);
        curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(easy, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    } else if (it->sha[0]) {
        sha_reset(st);
    }
    st->step = STEP_TRANSFER;
    st->easy = easy;
    if (aclient_easy(st->a->ac, easy, on_transfer, st, &st->req))
        fail(st, "%s %s: cannot start the transfer", it->what, it->uri);
}

/* --- local copies (file://) ------------------------------------------------------------- */

static void copy_step(struct stage *st)
{
    struct stage_item *it = &st->cur->v[st->idx];
    static char chunk[64 * 1024];
    bool put = it->kind == IT_PUT;
    for (size_t done = 0; done < COPY_CHUNK;) {
        ssize_t r = read(st->fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            fail(st, "%s %s: cannot read '%s': %s", it->what, it->uri, put ? it->name : it->uri + 7,
                 strerror(errno));
            return;
        }
        if (r == 0) {
            char sha[65];
            if (!put) {
                if (download_end(st, it)) item_done(st);
                return;
            }
            if (put) sha_hex(st->sha, sha);
            if (put && fsync(st->dst_fd) != 0 && errno != EINVAL) {
                fail(st, "%s %s: cannot write it: %s", it->what, it->uri, strerror(errno));
                return;
            }
            if (put && rename(st->tmp, st->dst_final) != 0) {
                fail(st, "%s %s: cannot rename '%s' into place: %s", it->what, it->uri, st->tmp,
                     strerror(errno));
                return;
            }
            if (put) {
                free(st->tmp);
                st->tmp = NULL;
                if (!add_output(st, it->what, it->uri, st->moved, sha)) return;
            }
            item_done(st);
            return;
        }
        if (put || (st->hashing && it->sha[0])) EVP_DigestUpdate(st->sha, chunk, (size_t)r);
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(st->dst_fd, chunk + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                fail(st, "%s %s: cannot write '%s': %s", it->what, it->uri,
                     put ? it->uri + 7 : it->name, strerror(errno));
                return;
            }
            off += w;
        }
        st->moved += r;
        done += (size_t)r;
    }
    kick(st); /* the next chunk on the next loop turn */
}

/* file:// input: checked again at open (the plan checked before the job started). */
static void start_copy_in(struct stage *st, struct stage_item *it)
{
    const char *src = it->uri + 7;
    if (!path_allowed(st->a, src)) {
        fail(st, "%s %s: the path is not under a folder this agent allows (--allow-path)", it->what,
             it->uri);
        return;
    }
    /* the resolved path, opened without following a link at its end: what was checked is
     * what is read (a link swapped in since fails); a FIFO or a device never blocks the loop */
    char *real = realpath(src, NULL);
    if (!real) {
        fail(st, "%s %s: %s", it->what, it->uri,
             errno == ENOENT ? "no such file" : strerror(errno));
        return;
    }
    const char *why = NULL;
    int fd = -1;
    bool allowed = false;
    for (size_t i = 0; i < st->a->o.nallow_paths && !allowed; i++)
        allowed = under(real, st->a->o.allow_paths[i]);
    if (allowed) fd = open_regular(real, &why);
    int err = errno;
    free(real);
    if (!allowed) {
        fail(st, "%s %s: the path is not under a folder this agent allows (--allow-path)", it->what,
             it->uri);
        return;
    }
    if (fd < 0) {
        fail(st, "%s %s: %s", it->what, it->uri,
             why             ? why
             : err == ENOENT ? "no such file"
                             : strerror(err));
        return;
    }
    st->dst_fd = st->fd; /* the local file opened by advance */
    st->fd = fd;
    st->hashing = it->sha[0] != '\0';
    if (st->hashing) sha_reset(st);
    st->step = STEP_COPY;
    kick(st);
}

/* file:// output: into a temporary file beside the destination, renamed at the end. */
static void start_copy_out(struct stage *st, struct stage_item *it)
{
    const char *dst = it->uri + 7;
    if (!path_allowed(st->a, dst)) {
        fail(st, "%s %s: the path is not under a folder this agent allows (--allow-path)", it->what,
             it->uri);
        return;
    }
    /* folders that do not exist yet are made below the nearest one that does (allowed) */
    char *base = xstrndup(dst, (size_t)(last_part(dst) - dst - 1));
    struct stat sb;
    while (*base && stat(base, &sb) != 0)
        *strrchr(base, '/') = '\0';
    int mk = mkdirs_below(*base ? base : "", dst, 0755);
    free(base);
    if (mk) {
        fail(st, "%s %s: cannot create its folder: %s", it->what, it->uri, strerror(errno));
        return;
    }
    st->dst_final = xstrdup(dst);
    /* ".NAME.drover-tmp-RANDOM", NAME cut so that the whole fits in a file name; made new
     * (O_EXCL, no link followed), so nothing planted there is written through, and two
     * jobs writing one destination each have their own */
    const char *name = last_part(dst);
    size_t keep = utf8_cut(name, strlen(name), TMP_NAME_KEEP);
    int err = EEXIST;
    for (int tries = 0; tries < TMP_TRIES && st->dst_fd < 0 && err == EEXIST; tries++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
            r = ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)st ^ (uint64_t)tries;
        free(st->tmp);
        st->tmp = xasprintf("%.*s.%.*s.drover-tmp-%012llx", (int)(name - dst), dst, (int)keep, name,
                            (unsigned long long)(r & 0xffffffffffffULL));
        st->dst_fd = open(st->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        err = errno;
    }
    if (st->dst_fd < 0) {
        free(st->tmp);
        st->tmp = NULL;
        fail(st, "%s %s: cannot create a file there: %s", it->what, it->uri, strerror(err));
        return;
    }
    sha_reset(st);
    st->step = STEP_COPY;
    kick(st);
}

/* --- the input cache (cache.h) ------------------------------------------------------------ */

static void add_pin(struct stage *st, const char *sha)
{
    st->pins = xrealloc(st->pins, (st->npins + 1) * sizeof(*st->pins));
    memcpy(st->pins[st->npins++], sha, 65);
}

/* Puts the pinned object at the item's path: a hard link, else (another filesystem) a copy. */
static void place_cached(struct stage *st, struct stage_item *it)
{
    struct err e = ERR_INIT;
    int rc = cache_link(st->a->cache, it->sha, it->path, &e);
    if (rc == 0) {
        log_debug("job=%s attempt=%d %s %s: linked from the cache (%s)", st->j->id, st->j->attempt,
                  it->what, it->uri, it->sha);
        item_done(st);
        return;
    }
    if (rc < 0) {
        fail(st, "%s %s: %s", it->what, it->uri, e.msg);
        return;
    }
    char *src = cache_object_path(st->a->cache, it->sha);
    st->fd = open(src, O_RDONLY | O_CLOEXEC);
    int err = errno;
    free(src);
    if (st->fd < 0) {
        fail(st, "%s %s: cannot read its cached copy: %s", it->what, it->uri, strerror(err));
        return;
    }
    st->dst_fd = open(it->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (st->dst_fd < 0) {
        fail(st, "%s %s: cannot create '%s': %s", it->what, it->uri, it->name, strerror(errno));
        return;
    }
    st->step = STEP_COPY; /* copy_step; ends with item_done (no fetch, nothing to check) */
    kick(st);
}

/*
 * A download ended (curl, or a file:// copy): checks it against the input's sha256 when that
 * is known, and moves a cache fetch into the cache and on to the work folder. True when the
 * item is done; false when the stage failed or goes on (a copy across filesystems).
 */
static bool download_end(struct stage *st, struct stage_item *it)
{
    bool verify = it->sha[0] && (st->step == STEP_TRANSFER || st->hashing);
    if (verify) {
        char got[65];
        sha_hex(st->sha, got);
        if (strcmp(got, it->sha)) {
            fail(st, "%s %s: its content does not match its sha256 (expected %s, got %s)", it->what,
                 it->uri, it->sha, got);
            return false;
        }
    }
    if (!st->fetch_sha[0]) return true;
    /* complete and checked: durable before it is named, so a crash leaves it whole or not */
    int fd = st->step == STEP_COPY ? st->dst_fd : st->fd;
    if (fsync(fd) != 0 && errno != EINVAL) {
        fail(st, "%s %s: cannot write it into the cache: %s", it->what, it->uri, strerror(errno));
        return false;
    }
    close(st->fd);
    if (st->dst_fd >= 0) close(st->dst_fd);
    st->fd = st->dst_fd = -1;
    struct err e = ERR_INIT;
    st->fetch_sha[0] = '\0'; /* cache_commit abandons it itself when it fails */
    if (cache_commit(st->a->cache, it->sha, it->uri, &e)) {
        fail(st, "%s %s: %s", it->what, it->uri, e.msg);
        return false;
    }
    add_pin(st, it->sha);
    st->hashing = false;
    st->step = STEP_NEXT;
    place_cached(st, it);
    return false;
}

static void on_cache_wake(void *arg)
{
    struct stage *st = arg;
    st->step = STEP_NEXT;
    kick(st); /* claims again from the loop */
}

static size_t on_head_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct stage_item *it = arg;
    size_t n = size * nmemb;
    static const char *const names[] = {"x-drover-sha256:", "x-amz-meta-sha256:"};
    for (size_t i = 0; i < 2; i++) {
        size_t k = strlen(names[i]);
        if (n <= k || strncasecmp(data, names[i], k)) continue;
        char v[80];
        size_t m = 0;
        for (size_t p = k; p < n && m < sizeof(v) - 1; p++)
            if (data[p] != ' ' && data[p] != '\t' && data[p] != '\r' && data[p] != '\n')
                v[m++] = data[p];
        v[m] = '\0';
        if (cache_sha_valid(v)) memcpy(it->sha, v, 65);
    }
    return n;
}

static void on_head(void *arg, CURLcode result, CURL *easy)
{
    struct stage *st = arg;
    struct stage_item *it = &st->cur->v[st->idx];
    long code = response_code(easy);
    st->req = NULL;
    st->easy = NULL;
    st->step = STEP_NEXT;
    it->head_done = true;
    if (result != CURLE_OK) {
        fail(st, "%s %s: %s", it->what, it->uri,
             st->errbuf[0] ? st->errbuf : curl_easy_strerror(result));
        return;
    }
    if (code == 404) {
        fail(st, "%s %s: 404 not found", it->what, it->uri);
        return;
    }
    if (code < 200 || code >= 300) it->sha[0] = '\0'; /* what the GET says decides */
    if (!it->sha[0])
        log_warn("job=%s attempt=%d %s %s: the store gives no sha256 for it (HTTP %ld): "
                 "downloaded without the cache",
                 st->j->id, st->j->attempt, it->what, it->uri, code);
    kick(st);
}

/* HEAD of a cached s3 input whose sha256 the spec does not give: the store's answer has it. */
static void start_head(struct stage *st, struct stage_item *it)
{
    CURL *easy = curl_easy_init();
    if (!easy) die("cannot initialise libcurl");
    curl_easy_setopt(easy, CURLOPT_URL, it->head_url);
    http_easy_tls(easy);
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, st->errbuf);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "drover-agent/" DROVER_VERSION);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)PRESIGN_TIMEOUT_MS);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_head_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, it);
    st->step = STEP_TRANSFER;
    st->easy = easy;
    if (aclient_easy(st->a->ac, easy, on_head, st, &st->req))
        fail(st, "%s %s: cannot start the transfer", it->what, it->uri);
}

/*
 * A cached input: its sha256 (asked with a HEAD when unknown), then the cache: present, it is
 * placed at once; being downloaded by another job, this one waits; else this job downloads it
 * into the cache (a temporary file, checked, renamed) and places it.
 */
static void cached_get(struct stage *st, struct stage_item *it)
{
    struct cache *c = st->a->cache;
    if (!it->sha[0]) {
        if (!it->head_done && !it->head_url) {
            presign(st, it, "HEAD", false);
            return;
        }
        if (!it->head_done) {
            start_head(st, it);
            return;
        }
        it->cached = false; /* no sha256: an ordinary download */
        kick(st);
        return;
    }
    if (!st->fetch_sha[0]) {
        char *tmp = NULL;
        st->waiter.fn = on_cache_wake;
        st->waiter.arg = st;
        switch (cache_claim(c, it->sha, &st->waiter, &tmp)) {
        case CACHE_HIT:
            add_pin(st, it->sha);
            cache_note_uri(c, it->sha, it->uri);
            place_cached(st, it);
            return;
        case CACHE_BUSY:
            log_debug("job=%s attempt=%d %s %s: waiting for another job's download of it",
                      st->j->id, st->j->attempt, it->what, it->uri);
            st->step = STEP_CACHE_WAIT;
            return;
        case CACHE_FETCH:
            break;
        }
        memcpy(st->fetch_sha, it->sha, 65);
        st->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        int err = errno;
        free(tmp);
        if (st->fd < 0) {
            fail(st, "%s %s: cannot create a file in the cache: %s", it->what, it->uri,
                 strerror(err));
            return;
        }
    }
    if (starts(it->uri, "s3://") && !it->url)
        presign(st, it, "GET", false);
    else if (starts(it->uri, "file://"))
        start_copy_in(st, it);
    else
        start_transfer(st, it, it->url ? it->url : it->uri);
}

/* --- the state machine ---------------------------------------------------------------------- */

/* Opens the current item's local file: created for a download, read for an upload. */
static int open_local(struct stage *st, struct stage_item *it)
{
    if (it->kind == IT_GET) {
        if (strchr(it->name, '/') && mkdirs_below(st->j->work_dir, it->path, 0700) != 0) {
            fail(st, "%s %s: cannot create the folders of '%s': %s", it->what, it->uri, it->name,
                 strerror(errno));
            return -1;
        }
        st->fd = open(it->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (st->fd < 0) {
            if (errno == EEXIST)
                fail(st, "%s %s: another input is also named '%s' in the work folder", it->what,
                     it->uri, it->name);
            else
                fail(st, "%s %s: cannot create '%s': %s", it->what, it->uri, it->name,
                     strerror(errno));
            return -1;
        }
        return 0;
    }
    /* what the job left: never a link followed, never a FIFO or a device opened for long */
    struct stat sb;
    const char *why;
    st->fd = open_regular(it->path, &why);
    if (st->fd < 0 && errno == ENOENT) {
        if (!strcmp(it->what, "output"))
            fail(st, "%s %s: the job wrote no file %s", it->what, it->uri, it->name);
        else
            fail(st, "%s %s: the job's %s file is missing", it->what, it->uri, it->what);
        return -1;
    }
    if (st->fd < 0 && why) {
        fail(st, "%s %s: '%s' %s", it->what, it->uri, it->name, why);
        return -1;
    }
    if (st->fd < 0 || fstat(st->fd, &sb) != 0) {
        fail(st, "%s %s: cannot read '%s': %s", it->what, it->uri, it->name, strerror(errno));
        return -1;
    }
    st->size = sb.st_size;
    return 0;
}

static void advance(struct stage *st)
{
    while (st->cur && st->idx < st->cur->n) {
        struct stage_item *it = &st->cur->v[st->idx];
        bool s3 = starts(it->uri, "s3://"), file = starts(it->uri, "file://");
        if (st->cur == &st->out && !st->all && !it->always) {
            st->idx++;
            continue;
        }
        switch (it->kind) {
        case IT_GET_PREFIX:
            if (s3) {
                presign(st, it, "GET", true);
                return;
            }
            /* fallthrough */
        case IT_PUT_PREFIX:
            if (expand_local(st)) return;
            st->idx++;
            continue;
        case IT_GET:
        case IT_PUT:
            if (it->kind == IT_GET && it->cached) {
                cached_get(st, it);
                return;
            }
            if (st->fd < 0 && open_local(st, it)) return;
            if (s3 && !it->url) {
                presign(st, it, it->kind == IT_GET ? "GET" : "PUT", false);
                return;
            }
            if (file)
                it->kind == IT_GET ? start_copy_in(st, it) : start_copy_out(st, it);
            else
                start_transfer(st, it, it->url ? it->url : it->uri);
            return;
        }
    }
    if (!st->cur) return;
    st->cur = NULL;
    stage_done_fn done = st->done;
    st->done = NULL;
    done(st->j, 0, NULL);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct stage *st = arg;
    (void)fd, (void)what;
    if (st->step == STEP_COPY)
        copy_step(st);
    else if (st->step == STEP_NEXT)
        advance(st);
}

static void begin(struct stage *st, struct items *list, stage_done_fn done)
{
    if (!st->kick) {
        st->kick = event_new(st->a->base, -1, 0, on_kick, st);
        st->retry_timer = evtimer_new(st->a->base, on_retry, st);
        if (!st->kick || !st->retry_timer) die("out of memory");
    }
    st->cur = list;
    st->idx = 0;
    st->done = done;
    st->step = STEP_NEXT;
    st->presign_tries = 0;
    kick(st);
}

void stage_in(struct stage *st, stage_done_fn done)
{
    begin(st, &st->in, done);
}

bool stage_out(struct stage *st, bool all, stage_done_fn done)
{
    bool any = false;
    for (size_t i = 0; i < st->out.n; i++)
        any |= all || st->out.v[i].always;
    if (!any) return false;
    st->all = all;
    begin(st, &st->out, done);
    return true;
}

void stage_free(struct stage *st)
{
    if (!st) return;
    transfer_drop(st);
    if (st->kick) event_free(st->kick);
    if (st->retry_timer) event_free(st->retry_timer);
    if (st->sha) EVP_MD_CTX_free(st->sha);
    for (size_t i = 0; i < st->npins; i++)
        cache_unpin(st->a->cache, st->pins[i]);
    free(st->pins);
    items_release(&st->in);
    items_release(&st->out);
    json_decref(st->outputs);
    free(st);
}
