/*
 * spec.c - validate and normalise a job spec (see spec.h and docs/api.md "The job spec").
 *
 * Each JSON object of the spec is described by a table of `struct field`: its
 * keys in output order, how each value is checked and what it defaults to.
 * check_object() refuses keys that are not in the table, then checks every
 * field in table order and puts the normalised value into a new output object.
 * A field absent (or null) that has a default is left out of the output: its
 * default is implied (spec.h), and member() reads it. Rules that involve
 * several fields (shell vs program, argv vs arguments, backoff ordering, an argument's value
 * by its type) run after the table, in the object's own check function.
 *
 * Invariants: the input is only read; the output shares no json_t with it (every
 * value is built anew or deep-copied). ctx.path always holds the path of the
 * field being checked, so any failure can name it. The first failure ends the
 * parse. Lengths are in bytes of UTF-8. JSON null is the same as an absent key.
 */
#include "job/spec.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "common/buf.h"
#include "job/protocol.h"

#define S3_KEY_MAX 1024   /* what S3 allows */
#define PROGRAM_MAX 4096
#define ARG_NAME_MAX 4096
#define LABEL_VALUE_MAX 256

struct ctx {
    struct err *e;
    struct buf path; /* the field being checked: "[3].command.arguments[2].type" */
    json_t *top;     /* the top-level output, for rules across objects */
};

struct field;
typedef int (*check_fn)(struct ctx *c, const struct field *f, json_t *v, json_t **norm);

/* flags */
#define F_MIN_EXCL 1u /* numbers: the minimum itself is refused */
#define F_NO_CTRL 2u  /* strings: no control characters */
#define F_WRITTEN 4u  /* absent: its default written out (a table spec_expand does not reach) */

struct field {
    const char *key;
    check_fn check;     /* gets the value, NULL when absent or null and dflt is NULL */
    const char *dflt;   /* JSON text used when absent or null; NULL: check decides */
    double min, max;    /* numbers: the range; strings: the length in bytes */
    unsigned flags;     /* F_* */
    const char *expect; /* what a valid value is, when the generic wording is not enough */
    bool (*valid)(const char *s); /* strings: a further test */
    const char *const *choices;   /* check_choice: NULL-terminated */
    /* an object's fields, for the stored form (spec_compact/spec_expand) to go inside */
    const struct field *sub;
    size_t nsub;
};

/* --- paths and failures ------------------------------------------------- */

static size_t path_key(struct ctx *c, const char *key)
{
    return buf_path_key(&c->path, key);
}

static size_t path_index(struct ctx *c, size_t i)
{
    return buf_path_index(&c->path, i);
}

static void path_cut(struct ctx *c, size_t mark)
{
    buf_path_cut(&c->path, mark);
}

/* Fails with the current path as the field; the message is "<path> <what>". */
static int PRINTF_LIKE(2, 3) fail(struct ctx *c, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    const char *field = buf_str(&c->path);
    return err_field(c->e, ERR_INVALID, field, "%s %s", *field ? field : "the job spec", what);
}

/* --- small predicates ----------------------------------------------------- */

static bool has_ctrl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return true;
    return false;
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A JSON string of min..max bytes without NUL (which would cut the C string short). */
static bool string_ok(json_t *v, double min, double max)
{
    if (!json_is_string(v))
        return false;
    size_t n = json_string_length(v);
    return n >= min && n <= max && strlen(json_string_value(v)) == n;
}

/* Every byte of s is a letter, digit or in `extra`; 1..max bytes. */
static bool name_ok(const char *s, const char *extra, bool upper, size_t max)
{
    size_t n = strlen(s);
    if (n < 1 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || strchr(extra, ch) ||
                  (upper && ch >= 'A' && ch <= 'Z');
        if (!ok)
            return false;
    }
    return true;
}

bool spec_queue_name_valid(const char *q)
{
    return q && name_ok(q, "._-", false, 64);
}

bool spec_label_name_valid(const char *s)
{
    return name_ok(s, "._/-", true, 64);
}

bool spec_env_name_valid(const char *s)
{
    return !(s[0] >= '0' && s[0] <= '9') && name_ok(s, "_", true, 128);
}

static bool program_ok(const char *s)
{
    return !has_ctrl(s, strlen(s));
}

static bool notify_when_ok(const char *s)
{
    return !strcmp(s, "end") || !strcmp(s, "all");
}

/*
 * curl's URL parser (what delivers the webhooks) says whether it can be reached: a host, a
 * port up to 65535. No user:password@: deliveries are signed (X-Drover-Signature), and a
 * credential would be shown to whoever reads the job.
 */
bool spec_notify_url_valid(const char *s)
{
    if (!(starts(s, "http://") || starts(s, "https://")) || !spec_uri_valid(s, false, NULL))
        return false;
    CURLU *u = curl_url();
    char *user = NULL, *password = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, s, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_NO_USER &&
              curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_NO_PASSWORD;
    curl_free(user);
    curl_free(password);
    curl_url_cleanup(u);
    return ok;
}

/* --- URIs ----------------------------------------------------------------- */

static bool no(const char **why, const char *text)
{
    *why = text;
    return false;
}

/* Checks the '/'-separated segments of an s3 key (non-empty). */
static bool s3_key_valid(const char *key, bool prefix, const char **why)
{
    if (strlen(key) > S3_KEY_MAX)
        return no(why, "the key must be at most 1024 bytes");
    json_t *text = json_string(key); /* NULL unless the key is UTF-8 (it goes into JSON) */
    if (!text)
        return no(why, "the key must be UTF-8 text");
    json_decref(text);
    for (const char *seg = key;;) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0 && !end && !prefix)
            return no(why, "the key must not end with '/' (only a prefix may)");
        if (n == 0 && end)
            return no(why, "the key must not contain an empty segment ('//' or a leading '/')");
        if (n == 1 && seg[0] == '.')
            return no(why, "the key must not contain a '.' segment");
        if (n == 2 && seg[0] == '.' && seg[1] == '.')
            return no(why, "the key must not contain a '..' segment");
        if (!end)
            return true;
        seg = end + 1;
    }
}

static bool s3_valid(const char *p, bool prefix, const char **why)
{
    size_t n = strcspn(p, "/");
    bool ok = n >= 2 && n <= 63 && p[0] != '.' && p[0] != '-';
    for (size_t i = 0; ok && i < n; i++)
        ok = (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '.' ||
             p[i] == '-';
    if (!ok)
        return no(why, "the bucket must match [a-z0-9][a-z0-9.-]{1,62}");
    const char *key = p[n] ? p + n + 1 : p + n;
    if (!*key)
        return prefix ? true : no(why, "the uri must name an object: s3://bucket/key");
    return s3_key_valid(key, prefix, why);
}

static bool http_valid(const char *p, const char **why)
{
    if (strcspn(p, "/?#") == 0)
        return no(why, "an http(s) url must name a host");
    if (strchr(p, ' '))
        return no(why, "an http(s) url must not contain spaces (encode them as %20)");
    return true;
}

static bool file_valid(const char *p, const char **why)
{
    if (p[0] != '/')
        return no(why, "a file uri must be file:///absolute/path");
    for (const char *seg = p + 1;;) {
        size_t n = strcspn(seg, "/");
        if (n == 2 && seg[0] == '.' && seg[1] == '.')
            return no(why, "the path must not contain a '..' segment");
        if (!seg[n])
            return true;
        seg += n + 1;
    }
}

bool spec_uri_valid(const char *uri, bool prefix, const char **why)
{
    const char *ignored;
    if (!why)
        why = &ignored;
    *why = NULL;
    if (!uri || !*uri)
        return no(why, "the uri is empty");
    if (has_ctrl(uri, strlen(uri)))
        return no(why, "the uri must not contain control characters");
    if (starts(uri, "s3://"))
        return s3_valid(uri + 5, prefix, why);
    if (starts(uri, "http://"))
        return http_valid(uri + 7, why);
    if (starts(uri, "https://"))
        return http_valid(uri + 8, why);
    if (starts(uri, "file://"))
        return file_valid(uri + 7, why);
    return no(why, "the uri must start with s3://, http://, https:// or file:///");
}

/* Where a job writes (outputs, prefixes): what a http(s) url cannot be. */
#define WRITABLE_URI "an s3:// or file:/// uri: http(s) urls can only be read"
#define STR_(x) #x
#define STR(x) STR_(x)

static bool http_url(const char *s)
{
    return starts(s, "http://") || starts(s, "https://");
}

bool spec_arg_value_valid(const char *type, const char *value, const char **why)
{
    if (!strcmp(type, "parameter"))
        return strlen(value) <= SPEC_MAX_STRING ||
               no(why, "a parameter's value must be at most " STR(SPEC_MAX_STRING) " bytes");
    if (!spec_uri_valid(value, false, why)) return false;
    if (!strcmp(type, "output") && http_url(value))
        return no(why, "an output must be " WRITABLE_URI);
    return true;
}

enum uri_use { URI_READ, URI_WRITE, URI_PREFIX };

/* The value at the current path must be a URI usable as `use`. */
static int check_uri(struct ctx *c, json_t *v, enum uri_use use)
{
    const char *why;
    if (!string_ok(v, 1, SPEC_MAX_STRING))
        return fail(c, "must be a uri string (s3://bucket/key, https://host/path or file:///path)");
    const char *s = json_string_value(v);
    if (!spec_uri_valid(s, use == URI_PREFIX, &why))
        return fail(c, "must be a valid %s: %s", use == URI_PREFIX ? "uri prefix" : "uri", why);
    if (use != URI_READ && http_url(s))
        return fail(c, "must be " WRITABLE_URI "%s", use == URI_PREFIX ? ", not listed" : "");
    return 0;
}

/* --- generic checks ------------------------------------------------------- */

static bool nullable(const struct field *f)
{
    return f->dflt && strcmp(f->dflt, "null") == 0;
}

static int check_string(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    bool ok = string_ok(v, f->min, f->max);
    if (ok && f->flags & F_NO_CTRL)
        ok = !has_ctrl(json_string_value(v), json_string_length(v));
    if (ok && f->valid)
        ok = f->valid(json_string_value(v));
    if (!ok && f->expect)
        return fail(c, "must be %s", f->expect);
    if (!ok)
        return fail(c, "must be a %sstring of at most %.0f bytes%s%s",
                    f->min > 0 ? "non-empty " : "", f->max,
                    f->flags & F_NO_CTRL ? " without control characters" : "",
                    nullable(f) ? ", or null" : "");
    *norm = json_string(json_string_value(v));
    return 0;
}

static int check_int(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    /* 2.0 is accepted as 2: some clients (Python's json) write whole floats that way. */
    double x = json_number_value(v);
    if (!json_is_number(v) || x < f->min || x > f->max || x != (double)(json_int_t)x)
        return fail(c, "must be an integer between %.0f and %.0f", f->min, f->max);
    *norm = json_integer((json_int_t)x);
    return 0;
}

static int check_number(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    double x = json_number_value(v);
    bool low = f->flags & F_MIN_EXCL ? x <= f->min : x < f->min;
    if (!json_is_number(v) || low || x > f->max)
        return fail(c, "must be a number %s %.15g and at most %.15g%s",
                    f->flags & F_MIN_EXCL ? "greater than" : "of at least", f->min, f->max,
                    nullable(f) ? ", or null" : "");
    *norm = json_deep_copy(v);
    return 0;
}

static int check_bool(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    (void)f;
    if (!json_is_boolean(v))
        return fail(c, "must be true or false");
    *norm = json_boolean(json_is_true(v));
    return 0;
}

static int check_choice(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    for (size_t i = 0; json_is_string(v) && f->choices[i]; i++) {
        if (strcmp(json_string_value(v), f->choices[i]) == 0) {
            *norm = json_string(f->choices[i]);
            return 0;
        }
    }
    struct buf list = BUF_INIT;
    for (size_t i = 0; f->choices[i]; i++)
        buf_addf(&list, "%s%s", i ? ", " : "", f->choices[i]);
    int rc = fail(c, "must be one of %s", buf_str(&list));
    buf_release(&list);
    return rc;
}

/* A known key whose value the object's own check function reads from the input. */
static int check_later(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    (void)c, (void)f, (void)v, (void)norm;
    return 0;
}

/* --- objects -------------------------------------------------------------- */

static const struct field *find_field(const struct field *fields, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].key, key) == 0)
            return &fields[i];
    return NULL;
}

/* `also`: a field the caller takes off before this check, listed too (or NULL) */
static int refuse_unknown(struct ctx *c, json_t *in, const struct field *fields, size_t n,
                          const char *also)
{
    const char *key;
    json_t *v;
    json_object_foreach(in, key, v) {
        if (find_field(fields, n, key))
            continue;
        struct buf known = BUF_INIT;
        for (size_t i = 0; i < n; i++)
            buf_addf(&known, "%s%s", i ? ", " : "", fields[i].key);
        if (also)
            buf_addf(&known, ", %s", also);
        size_t mark = path_key(c, key);
        const char *field = buf_str(&c->path);
        int rc = err_field(c->e, ERR_INVALID, field, "unknown field '%s' (expected one of: %s)",
                           field, buf_str(&known));
        path_cut(c, mark);
        buf_release(&known);
        return rc;
    }
    return 0;
}

/*
 * The default `text` parsed, from a cache kept for the process (never changed or
 * freed). Entries are only appended, under the lock, and published by `count`: a
 * text seen before (by its address, as the tables give it) is found without the
 * lock. The tables have fewer distinct texts than the cache has entries; a text
 * equal to a cached one at another address is added as an alias while there is
 * room, and found under the lock after that.
 */
static const json_t *dflt_parsed(const char *text)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static struct {
        const char *text;
        json_t *v;
    } cache[64];
    static size_t count;
    size_t n = __atomic_load_n(&count, __ATOMIC_ACQUIRE);
    for (size_t i = 0; i < n; i++)
        if (cache[i].text == text)
            return cache[i].v;
    json_t *v = NULL;
    pthread_mutex_lock(&lock);
    n = count;
    for (size_t i = 0; i < n && !v; i++)
        if (!strcmp(cache[i].text, text))
            v = cache[i].v;
    if (!v)
        v = n < ARRAY_SIZE(cache) ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    if (v && n < ARRAY_SIZE(cache)) {
        cache[n].text = text;
        cache[n].v = v;
        __atomic_store_n(&count, n + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&lock);
    if (!v) { /* a table's mistake: no test passes with it */
        fprintf(stderr, "spec.c: default %s unparsed or the cache is full\n", text);
        abort();
    }
    return v;
}

/* Member `key` of a normalised object with `fields`, or its default when left out. */
static json_t *member(const json_t *o, const struct field *fields, size_t n, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (v)
        return v;
    const struct field *f = find_field(fields, n, key);
    return f && f->dflt ? (json_t *)dflt_parsed(f->dflt) : NULL;
}

/*
 * A default's value. Parsing its JSON text at every use showed up in profiles,
 * so scalars and empty containers are made directly, and anything else is
 * parsed once (for the process: a per-thread cache would leak with its
 * thread) and copied.
 */
static json_t *dflt_value(const char *text)
{
    if (!strcmp(text, "null"))
        return json_null();
    if (!strcmp(text, "false"))
        return json_false();
    if (!strcmp(text, "{}"))
        return json_object();
    if (!strcmp(text, "[]"))
        return json_array();
    size_t n = strlen(text);
    if (text[0] == '"' && n >= 2 && !strchr(text, '\\'))
        return json_stringn(text + 1, n - 2);
    char *end;
    long long x = strtoll(text, &end, 10);
    if (end != text && !*end)
        return json_integer(x);
    const json_t *v = dflt_parsed(text);
    return v ? json_deep_copy(v) : json_loads(text, JSON_DECODE_ANY, NULL);
}

static int check_field(struct ctx *c, const struct field *f, json_t *v, json_t *out)
{
    json_t *norm = NULL;
    if (json_is_null(v))
        v = NULL;
    if (!v && f->dflt && !(f->flags & F_WRITTEN))
        return 0; /* left out: its default is implied */
    if (!v && f->dflt) {
        json_object_set_new(out, f->key, dflt_value(f->dflt));
        return 0;
    }
    int rc = f->check(c, f, v, &norm);
    if (rc)
        return rc;
    if (!v && f->sub && json_is_object(norm) && !json_object_size(norm))
        json_decref(norm); /* an object of defaults only (retry, resources) */
    else if (norm)
        json_object_set_new(out, f->key, norm);
    return 0;
}

static int check_fields(struct ctx *c, json_t *in, const struct field *fields, size_t n,
                        json_t *out)
{
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_object_get(in, fields[i].key);
        if ((!v || json_is_null(v)) && fields[i].dflt && !(fields[i].flags & F_WRITTEN))
            continue; /* left out (check_field), with no path to name */
        size_t mark = path_key(c, fields[i].key);
        int rc = check_field(c, &fields[i], v, out);
        path_cut(c, mark);
        if (rc)
            return rc;
    }
    return 0;
}

/* Checks `in` (an object, or NULL for {}) against `fields`; *norm gets the output. */
static int check_object(struct ctx *c, json_t *in, const struct field *fields, size_t n,
                        json_t **norm)
{
    json_t *out = json_object();
    int rc = refuse_unknown(c, in, fields, n, NULL);
    if (!rc)
        rc = check_fields(c, in, fields, n, out);
    if (rc)
        json_decref(out);
    else
        *norm = out;
    return rc;
}

/* Checks a string→string object (labels, requires, env) with names passing `name_valid`. */
static int check_map(struct ctx *c, json_t *v, bool (*name_valid)(const char *),
                     const char *name_rule, const char *reserved, size_t value_max, json_t **norm)
{
    if (!json_is_object(v) || json_object_size(v) > SPEC_MAX_LABELS)
        return fail(c, "must be an object of at most %d string values", SPEC_MAX_LABELS);
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        size_t mark = path_key(c, key);
        int rc = 0;
        if (!name_valid(key))
            rc = fail(c, "is not a valid name: names must match %s", name_rule);
        else if (reserved && starts(key, reserved))
            rc = fail(c, "is reserved: names starting with %s are set by drover", reserved);
        else if (!string_ok(val, 0, (double)value_max))
            rc = fail(c, "must be a string of at most %zu bytes", value_max);
        path_cut(c, mark);
        if (rc)
            return rc;
    }
    *norm = json_deep_copy(v);
    return 0;
}

static int check_labels(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    (void)f;
    return check_map(c, v, spec_label_name_valid, "[A-Za-z0-9._/-]{1,64}", NULL, LABEL_VALUE_MAX, norm);
}

static int check_env(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    (void)f;
    return check_map(c, v, spec_env_name_valid, "[A-Za-z_][A-Za-z0-9_]{0,127}", "DROVER_", SPEC_MAX_STRING,
                     norm);
}

static int check_array(struct ctx *c, json_t *v, size_t max, const char *what,
                       int (*each)(struct ctx *c, json_t *in, json_t **norm), json_t **norm);

/* --- resources ------------------------------------------------------------- */

/* clang-format off */
static const struct field resource_fields[] = {
    {.key = "memory_mb", .check = check_int, .dflt = "null", .min = SPEC_MEMORY_MB_MIN,
     .max = SPEC_MEMORY_MB_MAX},
    {.key = "cpus", .check = check_number, .dflt = "null", .min = SPEC_CPUS_MIN,
     .max = SPEC_CPUS_MAX},
    {.key = "pids", .check = check_int, .dflt = "null", .min = 1, .max = SPEC_PIDS_MAX},
};
/* clang-format on */

static int check_resources(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    (void)f;
    if (v && !json_is_object(v))
        return fail(c, "must be an object {memory_mb, cpus, pids}, or null");
    return check_object(c, v, resource_fields, ARRAY_SIZE(resource_fields), norm);
}

/* --- retry ---------------------------------------------------------------- */

/* An exit code retry.on.exit_codes lists: 1..255 (0 is a success, never retried). */
static int exit_code_item(struct ctx *c, json_t *in, json_t **norm)
{
    static const struct field code = {.key = "", .min = 1, .max = PROTO_EXIT_CODE_MAX};
    return check_int(c, &code, in, norm);
}

static int check_exit_codes(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    (void)f;
    return check_array(c, v, PROTO_EXIT_CODE_MAX, "exit codes (integers 1 to 255)", exit_code_item,
                       norm);
}

/* The failure classes of retry.on (lifecycle.c reads them by these names). */
/* clang-format off */
static const struct field retry_on_fields[] = {
    {.key = "exit_codes", .check = check_exit_codes, .dflt = "[]"},
    {.key = "signal", .check = check_int, .dflt = "0", .min = 0, .max = SPEC_ATTEMPTS_MAX},
    {.key = "timeout", .check = check_int, .dflt = "0", .min = 0, .max = SPEC_ATTEMPTS_MAX},
    /* a lost agent (or a lease that never reached it) is not the job's doing: retried
       unless the spec says otherwise */
    {.key = "lost", .check = check_int, .dflt = "2", .min = 0, .max = SPEC_ATTEMPTS_MAX},
    {.key = "oom", .check = check_int, .dflt = "0", .min = 0, .max = SPEC_ATTEMPTS_MAX},
    {.key = "error", .check = check_int, .dflt = "0", .min = 0, .max = SPEC_ATTEMPTS_MAX},
};
/* clang-format on */

static int check_retry_on(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    (void)f;
    if (!json_is_object(v))
        return fail(c, "must be an object {exit_codes, signal, timeout, lost, oom, error}, or "
                       "null (every failure is retried)");
    return check_object(c, v, retry_on_fields, ARRAY_SIZE(retry_on_fields), norm);
}

static const struct field retry_fields[] = {
    {.key = "max_attempts", .check = check_int, .dflt = "3", .min = 1, .max = SPEC_ATTEMPTS_MAX},
    {.key = "backoff_s", .check = check_number, .dflt = "1", .min = 0, .max = 86400},
    {.key = "max_backoff_s", .check = check_number, .dflt = "300", .min = 0, .max = 86400},
    {.key = "on", .check = check_retry_on, .dflt = "null", .sub = retry_on_fields,
     .nsub = ARRAY_SIZE(retry_on_fields)},
};

static int check_retry(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    (void)f;
    if (v && !json_is_object(v))
        return fail(c, "must be an object {max_attempts, backoff_s, max_backoff_s, on}, or null");
    int rc = check_object(c, v, retry_fields, ARRAY_SIZE(retry_fields), norm);
    if (rc)
        return rc;
    json_t *b = member(*norm, retry_fields, ARRAY_SIZE(retry_fields), "backoff_s");
    double backoff = json_number_value(b);
    double max = json_number_value(member(*norm, retry_fields, ARRAY_SIZE(retry_fields),
                                          "max_backoff_s"));
    json_t *max_given = json_object_get(v, "max_backoff_s");
    if (max >= backoff)
        return 0;
    if (!max_given || json_is_null(max_given)) {
        /* Only backoff_s was given, above the default maximum: the maximum follows it. */
        json_object_set_new(*norm, "max_backoff_s", json_deep_copy(b));
        return 0;
    }
    size_t mark = path_key(c, "max_backoff_s");
    rc = fail(c, "must be at least retry.backoff_s (%.15g)", backoff);
    path_cut(c, mark);
    json_decref(*norm);
    *norm = NULL;
    return rc;
}

/* --- command: arguments ----------------------------------------------------- */

static const char *const arg_types[] = {"input", "parameter", "output", NULL};

/* clang-format off */
static const struct field arg_fields[] = {
    {.key = "type", .check = check_choice, .choices = arg_types},
    {.key = "name", .check = check_string, .dflt = "null", .min = 1, .max = ARG_NAME_MAX,
     .flags = F_WRITTEN,
     .expect = "a non-empty string of at most 4096 bytes, or null for a positional argument"},
    {.key = "value", .check = check_later},
    {.key = "cache", .check = check_later},
    {.key = "sha256", .check = check_later},
};
/* clang-format on */

/* A number as the shortest decimal text that reads back as the same number. */
static json_t *number_text(json_t *v)
{
    char s[48];
    if (json_is_integer(v)) {
        snprintf(s, sizeof(s), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return json_string(s);
    }
    double x = json_real_value(v);
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(s, sizeof(s), "%.*g", prec, x);
        if (strtod(s, NULL) == x)
            break;
    }
    return json_string(s);
}

/* A parameter value: a string, or a number or boolean turned into one. */
static int param_value(struct ctx *c, json_t *v, json_t **norm)
{
    if (string_ok(v, 0, SPEC_MAX_STRING))
        *norm = json_string(json_string_value(v));
    else if (json_is_number(v))
        *norm = number_text(v);
    else if (json_is_boolean(v))
        *norm = json_string(json_is_true(v) ? "true" : "false");
    else
        return fail(c, "must be a string (at most %d bytes), a number or a boolean",
                    SPEC_MAX_STRING);
    return 0;
}

/*
 * An input's "sha256" (64 hex digits, kept in lower case) and "cache" (true: kept in the
 * agent's input cache; an http(s) or file:// input needs its sha256 for that, an s3:// one
 * has it from the store). Neither is allowed on other arguments; absent stays absent.
 */
static int check_arg_cache(struct ctx *c, json_t *in, json_t *arg)
{
    const char *type = json_string_value(json_object_get(arg, "type"));
    json_t *cache = json_object_get(in, "cache"), *sha = json_object_get(in, "sha256");
    bool input = strcmp(type, "input") == 0;
    int rc = 0;
    size_t mark;
    if (cache && !json_is_null(cache)) {
        mark = path_key(c, "cache");
        if (!input)
            rc = fail(c, "is allowed on input arguments only");
        else if (!json_is_boolean(cache))
            rc = fail(c, "must be true or false");
        path_cut(c, mark);
        if (rc)
            return rc;
        json_object_set_new(arg, "cache", json_boolean(json_is_true(cache)));
    }
    if (sha && !json_is_null(sha)) {
        mark = path_key(c, "sha256");
        const char *s = json_string_value(sha);
        char low[65];
        bool ok = s && strlen(s) == 64;
        for (size_t i = 0; ok && i < 64; i++) {
            char ch = s[i];
            if (ch >= 'A' && ch <= 'F')
                ch = (char)(ch - 'A' + 'a');
            ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
            low[i] = ch;
        }
        low[64] = '\0';
        if (!input)
            rc = fail(c, "is allowed on input arguments only");
        else if (!ok)
            rc = fail(c, "must be the SHA-256 of the input's content, 64 hex digits");
        path_cut(c, mark);
        if (rc)
            return rc;
        json_object_set_new(arg, "sha256", json_string(low));
    }
    const char *uri = json_string_value(json_object_get(arg, "value"));
    if (json_is_true(cache) && (!sha || json_is_null(sha)) && uri && !starts(uri, "s3://")) {
        mark = path_key(c, "cache");
        rc = fail(c, "needs the input's sha256 for an http(s) or file:// uri (an s3:// object's "
                     "is known to the store)");
        path_cut(c, mark);
    }
    return rc;
}

static int check_arg_value(struct ctx *c, json_t *in, json_t *arg)
{
    const char *type = json_string_value(json_object_get(arg, "type"));
    json_t *v = json_object_get(in, "value"), *norm = NULL;
    size_t mark = path_key(c, "value");
    int rc;
    if (strcmp(type, "parameter") == 0)
        rc = param_value(c, v, &norm);
    else if (!(rc = check_uri(c, v, strcmp(type, "output") == 0 ? URI_WRITE : URI_READ)))
        norm = json_string(json_string_value(v));
    path_cut(c, mark);
    if (!rc)
        json_object_set_new(arg, "value", norm);
    if (!rc)
        rc = check_arg_cache(c, in, arg);
    return rc;
}

static int check_argument(struct ctx *c, json_t *in, json_t **norm)
{
    if (!json_is_object(in))
        return fail(c, "must be an object {\"type\": ..., \"name\": ..., \"value\": ...}");
    int rc = check_object(c, in, arg_fields, ARRAY_SIZE(arg_fields), norm);
    if (!rc && (rc = check_arg_value(c, in, *norm))) {
        json_decref(*norm);
        *norm = NULL;
    }
    return rc;
}

/* Runs `each` on every element of the array v, collecting the results into *norm. */
static int check_array(struct ctx *c, json_t *v, size_t max, const char *what,
                       int (*each)(struct ctx *c, json_t *in, json_t **norm), json_t **norm)
{
    if (!json_is_array(v) || json_array_size(v) > max)
        return fail(c, "must be an array of at most %zu %s", max, what);
    json_t *out = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        json_t *one = NULL;
        size_t mark = path_index(c, i);
        int rc = each(c, item, &one);
        path_cut(c, mark);
        if (rc) {
            json_decref(out);
            return rc;
        }
        json_array_append_new(out, one);
    }
    *norm = out;
    return 0;
}

size_t spec_input_file_name(const char *uri, const char **name)
{
    const char *p = uri;
    size_t n = strlen(uri);
    if (starts(uri, "http://") || starts(uri, "https://")) {
        p = strstr(uri, "://") + 3;
        p += strcspn(p, "/?#");
        n = *p == '/' ? strcspn(p, "?#") : 0;
    }
    const char *last = p;
    for (size_t i = 0; i < n; i++)
        if (p[i] == '/') last = p + i + 1;
    *name = last;
    return n - (size_t)(last - p);
}

/* An input or output argument with a value, for spec_input_clash: its file name, uri,
   sha256 (inputs), place. */
struct named_file {
    const char *name, *uri, *sha;
    size_t len, at;
    bool output;
};

static int by_name_then_place(const void *x, const void *y)
{
    const struct named_file *a = x, *b = y;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->name, b->name, n);
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->at < b->at ? -1 : a->at > b->at;
}

/* Why b (earlier) and a cannot share their file, or NULL when they can: two inputs of one
   object (pin: the sha256 the group's first pinned input gave), two outputs of one uri. */
static const char *clash_of(const struct named_file *a, const struct named_file *b,
                            const struct named_file **pin)
{
    if (a->output != b->output) return b->output ? "an output" : "an input";
    if (a->output) return strcmp(a->uri, b->uri) ? "another object" : NULL;
    if (strcmp(a->uri, b->uri)) return "another object";
    if (!a->sha || (*pin && !strcmp(a->sha, (*pin)->sha))) return NULL; /* one object */
    if (!*pin) {
        *pin = a;
        return NULL;
    }
    return "another sha256";
}

/* Sorted by file name (then place), so that each name is compared within its group only: a
   fan-in gives up to 4,096 inputs, whose pairs would be millions. */
bool spec_input_clash(const json_t *args, struct spec_clash *out)
{
    size_t n = json_array_size(args), m = 0;
    struct named_file *v = malloc((n ? n : 1) * sizeof(*v));
    if (!v) abort();
    for (size_t i = 0; i < n; i++) {
        const json_t *a = json_array_get(args, i);
        const char *t = json_string_value(json_object_get(a, "type"));
        const char *u = json_string_value(json_object_get(a, "value"));
        if (!t || (strcmp(t, "input") && strcmp(t, "output")) || !u) continue;
        struct named_file *f = &v[m];
        f->uri = u;
        f->output = t[0] == 'o';
        f->sha = f->output ? NULL : json_string_value(json_object_get(a, "sha256"));
        f->at = i;
        if ((f->len = spec_input_file_name(u, &f->name))) m++;
    }
    qsort(v, m, sizeof(*v), by_name_then_place);
    bool found = false;
    for (size_t g = 0; g < m;) {
        /* a group of one name, in place order: each is compared with the group's first (and
           a pinned input with the first input that pinned that uri) */
        const struct named_file *pin = v[g].sha ? &v[g] : NULL;
        size_t k = g + 1;
        for (; k < m && v[k].len == v[g].len && !memcmp(v[k].name, v[g].name, v[g].len); k++) {
            const struct named_file *a = &v[k], *b = &v[g];
            const struct named_file *pinned = pin;
            const char *why = clash_of(a, b, &pin);
            if (!why) continue;
            if (!strcmp(why, "another sha256")) b = pinned;
            if (found && a->at >= out->second) continue;
            *out = (struct spec_clash){b->at, a->at, a->name, a->len > 100 ? 100 : (int)a->len,
                                       why};
            found = true; /* the clash that comes first in the arguments is named */
        }
        g = k;
    }
    free(v);
    return found;
}

/* Refuses a spec whose input and output arguments clash (spec_input_clash), naming the
   second's value. */
static int check_input_names(struct ctx *c, const json_t *args)
{
    struct spec_clash k;
    if (!spec_input_clash(args, &k)) return 0;
    size_t mark = path_index(c, k.second);
    path_key(c, "value");
    int rc = fail(c, SPEC_CLASH_FMT, k.name_len, k.name, k.first, k.why);
    path_cut(c, mark);
    return rc;
}

static int check_arguments(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    (void)f;
    int rc = check_array(c, v, SPEC_MAX_ARGUMENTS, "arguments", check_argument, norm);
    if (!rc && (rc = check_input_names(c, *norm))) {
        json_decref(*norm);
        *norm = NULL;
    }
    return rc;
}

/* An argv element becomes {"type": "parameter", "name": null, "value": "..."}. */
static int argv_item(struct ctx *c, json_t *in, json_t **norm)
{
    json_t *value;
    int rc = param_value(c, in, &value);
    if (!rc)
        *norm = json_pack("{s:s, s:n, s:o}", "type", "parameter", "name", "value", value);
    return rc;
}

static int check_argv(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    (void)f;
    if (!v)
        return 0; /* absent: arguments stands */
    return check_array(c, v, SPEC_MAX_ARGUMENTS, "strings", argv_item, norm);
}

static int prefix_item(struct ctx *c, json_t *in, json_t **norm)
{
    int rc = check_uri(c, in, URI_PREFIX);
    if (rc) return rc;
    /* a last part "*.tbl" would match no name (a prefix is compared as it is): a mistake */
    const char *u = json_string_value(in), *last = strrchr(u, '/');
    if (last && strpbrk(last, "*?"))
        return fail(c, "'%s' is a prefix, not a pattern: every name that starts with its last "
                       "part matches ('s3://b/hits/run1' takes run1.tbl and run1.log), and '*' "
                       "or '?' there would match none",
                    u);
    *norm = json_string(u);
    return 0;
}

static int check_prefixes(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    (void)f;
    return check_array(c, v, SPEC_MAX_PREFIXES, "uri prefixes", prefix_item, norm);
}

/* --- command: stdin, stdout, stderr --------------------------------------- */

static const char *const stream_types[] = {"pipe", "uri", NULL};

static const struct field stream_fields[] = {
    {.key = "type", .check = check_choice, .choices = stream_types},
    {.key = "value", .check = check_later},
};

static int stream_value(struct ctx *c, bool is_stdin, bool pipe, json_t *v, json_t **norm)
{
    if (json_is_null(v))
        v = NULL;
    if (pipe && !is_stdin && v)
        return fail(c, "must be null for a pipe (the output is captured and kept with the job)");
    if (pipe && v && !string_ok(v, 0, SPEC_MAX_PIPE))
        return fail(c, "must be a string of at most %d bytes, or null", SPEC_MAX_PIPE);
    if (pipe) {
        *norm = v ? json_deep_copy(v) : json_null();
        return 0;
    }
    int rc = check_uri(c, v, is_stdin ? URI_READ : URI_WRITE);
    if (!rc)
        *norm = json_string(json_string_value(v));
    return rc;
}

static int check_stream(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    if (!json_is_object(v))
        return fail(c, "must be an object {\"type\": \"pipe\" or \"uri\", \"value\": ...}");
    int rc = check_object(c, v, stream_fields, ARRAY_SIZE(stream_fields), norm);
    if (rc)
        return rc;
    bool pipe = strcmp(json_string_value(json_object_get(*norm, "type")), "pipe") == 0;
    json_t *value = NULL;
    size_t mark = path_key(c, "value");
    rc = stream_value(c, strcmp(f->key, "stdin") == 0, pipe, json_object_get(v, "value"), &value);
    path_cut(c, mark);
    if (rc) {
        json_decref(*norm);
        *norm = NULL;
        return rc;
    }
    json_object_set_new(*norm, "value", value);
    return 0;
}

/* --- command -------------------------------------------------------------- */

#define PIPE_NULL "{\"type\": \"pipe\", \"value\": null}"

/*
 * An image reference as podman and docker take it: [registry[:port]/]path[:tag][@digest],
 * letters, digits and . _ - / : @ only (no option-like leading '-', no spaces).
 */
static bool image_ok(const char *s)
{
    if (!*s || *s == '-' || *s == '/' || *s == ':' || *s == '@')
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("._-/:@+", *p)))
            return false;
    return true;
}

/* clang-format off */
static const struct field command_fields[] = {
    {.key = "program", .check = check_string, .dflt = "null", .min = 1, .max = PROGRAM_MAX,
     .valid = program_ok,
     .expect = "a non-empty string of at most 4096 bytes without control characters"},
    {.key = "shell", .check = check_string, .dflt = "null", .min = 1, .max = SPEC_MAX_STRING},
    {.key = "image", .check = check_string, .dflt = "null", .min = 1, .max = 512,
     .valid = image_ok,
     .expect = "an image reference ([registry/]name[:tag][@digest]) of at most 512 bytes, "
               "or null"},
    {.key = "sandbox", .check = check_bool, .dflt = "false"},
    {.key = "network", .check = check_bool, .dflt = "null"},
    {.key = "arguments", .check = check_arguments, .dflt = "[]"},
    {.key = "argv", .check = check_argv}, /* folded into arguments */
    {.key = "stdin", .check = check_stream, .dflt = PIPE_NULL},
    {.key = "stdout", .check = check_stream, .dflt = PIPE_NULL},
    {.key = "stderr", .check = check_stream, .dflt = PIPE_NULL},
    {.key = "env", .check = check_env, .dflt = "{}"},
    {.key = "input", .check = check_prefixes, .dflt = "[]"},
    {.key = "output", .check = check_prefixes, .dflt = "[]"},
};
/* clang-format on */

static bool given(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v);
}

/* Refuses combinations of fields that contradict each other. */
static int command_conflicts(struct ctx *c, json_t *in)
{
    static const char *const not_with_shell[] = {"program", "arguments", "argv"};
    int rc = 0;
    size_t mark = c->path.len;
    for (size_t i = 0; given(in, "shell") && i < ARRAY_SIZE(not_with_shell); i++) {
        json_t *v = json_object_get(in, not_with_shell[i]);
        /* no arguments ([], as GET shows a shell job's) contradict nothing */
        if (!given(in, not_with_shell[i]) || (json_is_array(v) && !json_array_size(v)))
            continue;
        path_key(c, "shell");
        rc = fail(c, "cannot be combined with command.%s: give either a shell command, or a "
                     "program with its arguments",
                  not_with_shell[i]);
        break;
    }
    if (!rc && given(in, "image") && json_is_true(json_object_get(in, "sandbox"))) {
        path_key(c, "sandbox");
        rc = fail(c, "cannot be combined with command.image: a container is its own sandbox "
                     "(give one or the other)");
    }
    if (!rc && given(in, "argv") && given(in, "arguments")) {
        path_key(c, "argv");
        rc = fail(c, "cannot be combined with command.arguments: argv is a shorthand for "
                     "parameter arguments, give one or the other");
    }
    path_cut(c, mark);
    return rc;
}

/*
 * command.argv without command.program (nor a shell or a service) is the
 * whole argument vector, its first element the program, as exec, Docker and
 * Kubernetes read it; with a program it holds the parameters that follow.
 * Runs after argv has been checked (its items are parameter arguments).
 */
static int argv_program(struct ctx *c, json_t *out)
{
    json_t *argv = json_object_get(out, "argv");
    if (!argv || given(out, "program") || given(out, "shell") || given(c->top, "service"))
        return 0;
    size_t mark = path_key(c, "argv");
    int rc = 0;
    const char *first = json_string_value(json_object_get(json_array_get(argv, 0), "value"));
    if (!first) {
        rc = fail(c, "must not be empty without command.program: its first element is the "
                     "program");
    } else if (!*first || strlen(first) > PROGRAM_MAX || !program_ok(first)) {
        path_index(c, 0);
        rc = fail(c, "is the program (command.argv without command.program): a non-empty "
                     "string of at most %d bytes without control characters",
                  PROGRAM_MAX);
    } else {
        json_object_set_new(out, "program", json_string(first));
        json_array_remove(argv, 0);
    }
    path_cut(c, mark);
    return rc;
}

/*
 * A spec naming a service that the hub does not define (the server expands
 * one it defines before this parse, job/service.h) runs a program of that
 * name: the service's name is the program (checked like one: no control
 * characters), as before the hub existed. An explicit command.program or
 * command.shell is used as given.
 */
static int default_program(struct ctx *c, json_t *out)
{
    if (given(out, "program") || given(out, "shell")) return 0;
    json_t *service = json_object_get(c->top, "service");
    if (json_is_string(service) && program_ok(json_string_value(service))) {
        json_object_set_new(out, "program", json_string(json_string_value(service)));
        return 0;
    }
    size_t mark = path_key(c, "program");
    int rc = fail(c, "is required (or command.shell, or a service)");
    path_cut(c, mark);
    return rc;
}

static int check_command(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    (void)f;
    json_t *empty = NULL;
    if (!v && json_is_true(json_object_get(c->top, "test"))) {
        *norm = json_null();
        return 0;
    }
    if (!v && given(c->top, "service"))
        v = empty = json_object(); /* {"service": "nhmmer"} alone runs the service */
    if (!v) return fail(c, "is required (unless test is true or a service is named)");
    if (!json_is_object(v))
        return fail(c, "must be an object");
    int rc = refuse_unknown(c, v, command_fields, ARRAY_SIZE(command_fields), NULL);
    if (!rc) rc = command_conflicts(c, v);
    json_t *out = json_object();
    if (!rc) rc = check_fields(c, v, command_fields, ARRAY_SIZE(command_fields), out);
    if (!rc) rc = argv_program(c, out);
    json_decref(empty);
    if (!rc) rc = default_program(c, out);
    if (rc) {
        json_decref(out);
        return rc;
    }
    json_t *argv = json_object_get(out, "argv");
    if (argv) {
        json_object_set(out, "arguments", argv);
        json_object_del(out, "argv");
    }
    *norm = out;
    return 0;
}

/*
 * The version of the service that a job was expanded from, and its params as
 * the expansion normalised them (kept as they are); both absent from the
 * specs of other jobs.
 */
static int check_service_version(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    return v ? check_int(c, f, v, norm) : 0;
}

static int check_params(struct ctx *c, const struct field *f, json_t *v, json_t **norm)
{
    (void)f;
    if (!v)
        return 0;
    if (!given(c->top, "service_version"))
        return fail(c, "needs a service defined in the hub (PUT /v1/services/NAME): a job "
                       "gives params to a service's definition");
    if (!json_is_object(v))
        return fail(c, "must be an object {name: value}");
    *norm = json_deep_copy(v);
    return 0;
}

/* --- the spec --------------------------------------------------------------- */

/* clang-format off */
static const struct field spec_fields[] = {
    {.key = "queue", .check = check_string, .dflt = "\"default\"", .min = 1, .max = 64,
     .valid = spec_queue_name_valid, .expect = "a string matching [a-z0-9._-]{1,64}"},
    {.key = "service", .check = check_string, .dflt = "null", .min = 1, .max = 128,
     .flags = F_NO_CTRL},
    /* set by the service hub's expansion (job/service.h), which checked params */
    {.key = "service_version", .check = check_service_version, .min = 1, .max = INT32_MAX},
    {.key = "params", .check = check_params},
    {.key = "name", .check = check_string, .dflt = "null", .min = 0, .max = 256},
    {.key = "priority", .check = check_int, .dflt = "0", .min = -1000, .max = 1000},
    {.key = "requires", .check = check_labels, .dflt = "{}"},
    {.key = "slots", .check = check_int, .dflt = "1", .min = 1, .max = PROTO_SLOTS_MAX},
    {.key = "delay_s", .check = check_number, .dflt = "0", .min = 0, .max = 31536000},
    {.key = "timeout_s", .check = check_number, .dflt = "null", .min = 0, .max = 2592000,
     .flags = F_MIN_EXCL},
    {.key = "retry", .check = check_retry, .sub = retry_fields,
     .nsub = ARRAY_SIZE(retry_fields)},
    {.key = "resources", .check = check_resources, .sub = resource_fields,
     .nsub = ARRAY_SIZE(resource_fields)},
    {.key = "key", .check = check_string, .dflt = "null", .min = 1, .max = 256},
    {.key = "labels", .check = check_labels, .dflt = "{}"},
    {.key = "notify_url", .check = check_string, .dflt = "null", .min = 1, .max = 2048,
     .valid = spec_notify_url_valid,
     .expect = "an http:// or https:// url of at most 2048 bytes (a host, a port up to 65535, "
               "no user:password@: deliveries are signed), or null"},
    {.key = "notify", .check = check_string, .dflt = "\"end\"", .min = 3, .max = 3,
     .valid = notify_when_ok, .expect = "\"end\" (the job's end) or \"all\" (every change)"},
    {.key = "retention_s", .check = check_int, .dflt = "null", .min = 1,
     .max = SPEC_RETENTION_MAX_S},
    {.key = "test", .check = check_bool, .dflt = "false"},
    {.key = "command", .check = check_command, .sub = command_fields,
     .nsub = ARRAY_SIZE(command_fields)}, /* last: it reads test */
};
/* clang-format on */

void spec_views(struct job_spec *s, json_t *o)
{
#define TOP(key) member(o, spec_fields, ARRAY_SIZE(spec_fields), key)
#define RETRY(key) member(retry, retry_fields, ARRAY_SIZE(retry_fields), key)
    json_t *retry = json_object_get(o, "retry");
    s->json = o;
    s->queue = json_string_value(TOP("queue"));
    s->service = json_string_value(TOP("service"));
    s->name = json_string_value(TOP("name"));
    s->key = json_string_value(TOP("key"));
    s->priority = (int)json_integer_value(TOP("priority"));
    s->slots = (int)json_integer_value(TOP("slots"));
    s->max_attempts = (int)json_integer_value(RETRY("max_attempts"));
    s->delay_s = json_number_value(TOP("delay_s"));
    s->timeout_s = json_number_value(TOP("timeout_s")); /* null: 0 */
    s->requires = json_object_get(o, "requires");       /* left out: none ({}) */
    s->backoff_s = json_number_value(RETRY("backoff_s"));
    s->max_backoff_s = json_number_value(RETRY("max_backoff_s"));
    s->retention_s = json_integer_value(TOP("retention_s")); /* null: 0 */
    s->test = json_is_true(TOP("test"));
#undef TOP
#undef RETRY
}

static int parse(json_t *in, const char *path, const char *also, struct job_spec *out,
                 struct err *e)
{
    struct ctx c = {.e = e, .path = BUF_INIT, .top = json_object()};
    int rc;
    memset(out, 0, sizeof(*out));
    buf_adds(&c.path, path ? path : "");
    if (!json_is_object(in))
        rc = fail(&c, "must be a json object");
    else if (!(rc = refuse_unknown(&c, in, spec_fields, ARRAY_SIZE(spec_fields), also)))
        rc = check_fields(&c, in, spec_fields, ARRAY_SIZE(spec_fields), c.top);
    if (rc)
        json_decref(c.top);
    else
        spec_views(out, c.top);
    buf_release(&c.path);
    return rc;
}

int spec_parse(json_t *in, const char *path, struct job_spec *out, struct err *e)
{
    return parse(in, path, NULL, out, e);
}

int spec_parse_arrayable(json_t *in, const char *path, struct job_spec *out, struct err *e)
{
    return parse(in, path, "array", out, e);
}

const json_t *spec_get(const json_t *spec, const char *path)
{
    const struct field *fields = spec_fields; /* NULL below a table: plain members */
    size_t n = ARRAY_SIZE(spec_fields);
    const json_t *o = spec;
    for (const char *p = path;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        char key[32];
        if (len >= sizeof(key))
            return NULL;
        memcpy(key, p, len);
        key[len] = 0;
        const struct field *f = fields ? find_field(fields, n, key) : NULL;
        if (fields && !f)
            return NULL;
        if (!dot)
            return f ? member(o, fields, n, key) : json_object_get(o, key);
        /* an object left out or null: its members are their defaults */
        o = f && f->sub ? json_object_get(o, key) : f ? member(o, fields, n, key)
                                                     : json_object_get(o, key);
        fields = f ? f->sub : NULL;
        n = f ? f->nsub : 0;
        p = dot + 1;
    }
}

/* --- the stored form ----------------------------------------------------------- */

/* True when `v` is f's default (what an absent or null value normalises to). */
static bool is_default(const struct field *f, const json_t *v)
{
    const char *t = f->dflt;
    if (!t)
        return false;
    if (!strcmp(t, "null"))
        return json_is_null(v);
    if (!strcmp(t, "false"))
        return json_is_false(v);
    if (!strcmp(t, "{}"))
        return json_is_object(v) && !json_object_size(v);
    if (!strcmp(t, "[]"))
        return json_is_array(v) && !json_array_size(v);
    size_t n = strlen(t);
    if (t[0] == '"' && n >= 2 && !strchr(t, '\\'))
        return json_is_string(v) && json_string_length(v) == n - 2 &&
               !memcmp(json_string_value(v), t + 1, n - 2);
    char *end;
    long long x = strtoll(t, &end, 10);
    if (end != t && !*end)
        return json_is_integer(v) && json_integer_value(v) == x;
    const json_t *d = dflt_parsed(t);
    return d && json_equal(d, v);
}

/* Members of `in` that are not in the table (none in a spec spec_parse made) go as they are. */
static void copy_unknown(const json_t *in, const struct field *fields, size_t n, json_t *out)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)in, key, v)
        if (!find_field(fields, n, key))
            json_object_set(out, key, v);
}

static json_t *compact_object(const json_t *in, const struct field *fields, size_t n)
{
    json_t *out = json_object();
    size_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        const struct field *f = &fields[i];
        json_t *v = json_object_get(in, f->key);
        if (!v)
            continue;
        seen++;
        if (is_default(f, v))
            continue;
        if (f->sub && json_is_object(v)) {
            json_t *c = compact_object(v, f->sub, f->nsub);
            /* without a default of its own the object is made of its fields' defaults */
            if (!f->dflt && !json_object_size(c))
                json_decref(c);
            else
                json_object_set_new(out, f->key, c);
        } else {
            json_object_set(out, f->key, v);
        }
    }
    if (seen < json_object_size(in))
        copy_unknown(in, fields, n, out);
    return out;
}

static json_t *expand_object(const json_t *in, const struct field *fields, size_t n)
{
    json_t *out = json_object();
    size_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        const struct field *f = &fields[i];
        json_t *v = json_object_get(in, f->key);
        if (v)
            seen++;
        if (v && f->sub && json_is_object(v))
            json_object_set_new(out, f->key, expand_object(v, f->sub, f->nsub));
        else if (v)
            json_object_set(out, f->key, v);
        else if (f->dflt)
            json_object_set_new(out, f->key, dflt_value(f->dflt));
        else if (f->sub)
            json_object_set_new(out, f->key, expand_object(NULL, f->sub, f->nsub));
    }
    if (in && seen < json_object_size(in))
        copy_unknown(in, fields, n, out);
    return out;
}

json_t *spec_compact(const json_t *normalised)
{
    if (!json_is_object(normalised))
        return json_incref((json_t *)normalised);
    return compact_object(normalised, spec_fields, ARRAY_SIZE(spec_fields));
}

json_t *spec_expand(json_t *stored)
{
    if (!json_is_object(stored))
        return stored;
    json_t *out = expand_object(stored, spec_fields, ARRAY_SIZE(spec_fields));
    json_decref(stored);
    return out;
}

void spec_resources_get(json_t *spec, struct spec_resources *r)
{
    json_t *res = json_object_get(spec, "resources");
    json_t *mem = json_object_get(res, "memory_mb"), *cpus = json_object_get(res, "cpus");
    json_t *pids = json_object_get(res, "pids");
    r->memory_mb = json_is_integer(mem) ? json_integer_value(mem) : 0;
    r->cpus = json_is_number(cpus) ? json_number_value(cpus) : 0;
    r->pids = json_is_integer(pids) ? json_integer_value(pids) : 0;
    /* out of range only in a spec that spec_parse did not make: treated as no limit */
    if (r->memory_mb < SPEC_MEMORY_MB_MIN || r->memory_mb > SPEC_MEMORY_MB_MAX) r->memory_mb = 0;
    if (!(r->cpus >= SPEC_CPUS_MIN && r->cpus <= SPEC_CPUS_MAX)) r->cpus = 0;
    if (r->pids < 1 || r->pids > SPEC_PIDS_MAX) r->pids = 0;
}

void spec_release(struct job_spec *s)
{
    if (!s)
        return;
    json_decref(s->json);
    memset(s, 0, sizeof(*s));
}

static void add_uri(struct spec_uri *out, size_t max, size_t *n, const json_t *v,
                    enum spec_uri_use use)
{
    if (!json_is_string(v)) return;
    if (*n < max) out[*n] = (struct spec_uri){json_string_value(v), use};
    (*n)++;
}

/* A stream (stdin, stdout, stderr) of type uri. */
static const json_t *stream_uri(const json_t *cmd, const char *key)
{
    const json_t *o = json_object_get(cmd, key);
    const char *type = json_string_value(json_object_get(o, "type"));
    return type && !strcmp(type, "uri") ? json_object_get(o, "value") : NULL;
}

size_t spec_uris(const json_t *normalised, struct spec_uri *out, size_t max)
{
    const json_t *cmd = json_object_get(normalised, "command");
    size_t n = 0, i;
    json_t *v;
    json_array_foreach(json_object_get(cmd, "arguments"), i, v) {
        const char *type = json_string_value(json_object_get(v, "type"));
        if (type && !strcmp(type, "input"))
            add_uri(out, max, &n, json_object_get(v, "value"), SPEC_URI_READ);
        else if (type && !strcmp(type, "output"))
            add_uri(out, max, &n, json_object_get(v, "value"), SPEC_URI_WRITE);
    }
    add_uri(out, max, &n, stream_uri(cmd, "stdin"), SPEC_URI_READ);
    add_uri(out, max, &n, stream_uri(cmd, "stdout"), SPEC_URI_WRITE);
    add_uri(out, max, &n, stream_uri(cmd, "stderr"), SPEC_URI_WRITE);
    json_array_foreach(json_object_get(cmd, "input"), i, v)
        add_uri(out, max, &n, v, SPEC_URI_READ_PREFIX);
    json_array_foreach(json_object_get(cmd, "output"), i, v)
        add_uri(out, max, &n, v, SPEC_URI_WRITE_PREFIX);
    return n;
}

unsigned spec_runtimes(const json_t *spec)
{
    json_t *command = json_object_get(spec, "command");
    if (json_is_string(json_object_get(command, "image")))
        return PROTO_RT_CONTAINER;
    if (json_is_true(json_object_get(command, "sandbox")))
        return PROTO_RT_BWRAP;
    return PROTO_RT_NATIVE | PROTO_RT_BWRAP;
}
