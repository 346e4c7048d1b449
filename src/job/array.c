/* array.c - see array.h. */
#include "job/array.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/xalloc.h"
#include "job/spec.h"

const char *array_kind_name(int kind)
{
    switch (kind) {
    case ARRAY_COUNT: return "count";
    case ARRAY_ITEMS: return "items";
    case ARRAY_OUTPUTS: return "outputs";
    default: return "objects";
    }
}

int array_input_parse(const json_t *v, struct array_input *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(v))
        return err_field(e, ERR_INVALID, "array",
                         "array must be an object: {\"count\": N}, {\"items\": [...]} or "
                         "{\"objects\": \"s3://bucket/prefix\"}");
    const char *k;
    json_t *x;
    int given = 0;
    json_object_foreach((json_t *)v, k, x) {
        char field[80];
        snprintf(field, sizeof(field), "array.%.60s", k);
        if (!strcmp(k, "outputs") || !strcmp(k, "prefix"))
            return err_field(e, ERR_INVALID, field,
                             "%s: only a workflow's node fans out over an upstream node's "
                             "outputs (docs/api.md \"Workflows\")",
                             field);
        if (strcmp(k, "count") && strcmp(k, "items") && strcmp(k, "objects"))
            return err_field(e, ERR_INVALID, field,
                             "%s: unknown field (an array has one of count, items, objects)",
                             field);
        if (++given > 1)
            return err_field(e, ERR_INVALID, field,
                             "%s: an array has exactly one of count, items and objects", field);
    }
    if (!given)
        return err_field(e, ERR_INVALID, "array",
                         "array needs one of count, items and objects");
    json_t *count = json_object_get(v, "count"), *items = json_object_get(v, "items"),
           *objects = json_object_get(v, "objects");
    if (count) {
        if (!json_is_integer(count) || json_integer_value(count) < 1 ||
            json_integer_value(count) > ARRAY_MAX_TASKS)
            return err_field(e, ERR_INVALID, "array.count",
                             "array.count must be an integer from 1 to %d", ARRAY_MAX_TASKS);
        out->kind = ARRAY_COUNT;
        out->count = json_integer_value(count);
    } else if (items) {
        if (!json_is_array(items) || !json_array_size(items) ||
            json_array_size(items) > ARRAY_MAX_TASKS)
            return err_field(e, ERR_INVALID, "array.items",
                             "array.items must be an array of 1 to %d items", ARRAY_MAX_TASKS);
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
            char *t = array_item_text(it);
            size_t n = strlen(t);
            free(t);
            if (n > ARRAY_MAX_ITEM) {
                char field[48];
                snprintf(field, sizeof(field), "array.items[%zu]", i);
                return err_field(e, ERR_INVALID, field, "%s: an item may be at most %d bytes",
                                 field, ARRAY_MAX_ITEM);
            }
        }
        out->kind = ARRAY_ITEMS;
        out->items = items;
        out->count = (int64_t)json_array_size(items);
    } else {
        const char *why = NULL;
        const char *p = json_string_value(objects);
        if (!p || strncmp(p, "s3://", 5) || !spec_uri_valid(p, true, &why))
            return err_field(e, ERR_INVALID, "array.objects",
                             "array.objects must be an s3://bucket/prefix uri%s%s",
                             why ? ": " : "", why ? why : "");
        out->kind = ARRAY_OBJECTS;
        out->prefix = p;
    }
    return 0;
}

char *array_item_text(const json_t *item)
{
    if (json_is_string(item)) return xstrdup(json_string_value(item));
    char *t = json_dumps(item, JSON_COMPACT | JSON_ENCODE_ANY);
    return t ? t : xstrdup("null");
}

char *array_fill(const char *s, const char *index, const char *item)
{
    if (!strstr(s, "{{index}}") && !strstr(s, "{{item}}")) return NULL;
    struct buf b = BUF_INIT;
    while (*s) {
        if (!strncmp(s, "{{index}}", 9)) {
            buf_adds(&b, index);
            s += 9;
        } else if (!strncmp(s, "{{item}}", 8)) {
            buf_adds(&b, item ? item : "");
            s += 8;
        } else {
            buf_addc(&b, *s++);
        }
    }
    char *out = xstrdup(b.data ? b.data : "");
    buf_release(&b);
    return out;
}

static void fill_arguments(json_t *spec, const char *index, const char *item)
{
    size_t i;
    json_t *arg;
    json_array_foreach(json_object_get(json_object_get(spec, "command"), "arguments"), i, arg) {
        const char *v = json_string_value(json_object_get(arg, "value"));
        char *f = v ? array_fill(v, index, item) : NULL;
        if (f) json_object_set_new(arg, "value", json_string(f));
        free(f);
    }
}

/* A service job's params (docs/api.md "Services"), likewise: its string values. */
static void fill_params(json_t *spec, const char *index, const char *item)
{
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(spec, "params"), k, v) {
        const char *s = json_string_value(v);
        char *f = s ? array_fill(s, index, item) : NULL;
        if (f) json_string_set(v, f);
        free(f);
    }
}

json_t *array_sample_spec(const json_t *body, const char *index, const char *item)
{
    json_t *s = json_deep_copy(body);
    json_object_del(s, "array");
    fill_arguments(s, index, item);
    fill_params(s, index, item);
    return s;
}

int array_items_check(const json_t *spec, const json_t *items, const char *field, bool indexed,
                      struct err *e)
{
    const json_t *args = json_object_get(json_object_get(spec, "command"), "arguments");
    size_t i, k;
    const json_t *item, *arg;
    bool templated = false; /* an index keeps a value valid: only {{item}} needs the items */
    json_array_foreach(args, k, arg) {
        const char *v = json_string_value(json_object_get(arg, "value"));
        templated |= v && strstr(v, "{{item}}");
    }
    if (!templated) return 0;
    int rc = 0;
    json_array_foreach(items, i, item) {
        char index[24], *text = NULL;
        snprintf(index, sizeof(index), "%zu", i);
        json_array_foreach(args, k, arg) {
            const char *v = json_string_value(json_object_get(arg, "value"));
            const char *type = json_string_value(json_object_get(arg, "type"));
            if (!v || !type || !strstr(v, "{{item}}")) continue;
            if (!text) text = array_item_text(item);
            char *f = array_fill(v, index, text);
            const char *why = NULL;
            if (!spec_arg_value_valid(type, f, &why)) {
                char *name = indexed ? xasprintf("%s[%zu]", field, i) : xstrdup(field);
                rc = err_field(e, ERR_INVALID, name,
                               "%s: task %zu's item makes command.arguments[%zu].value "
                               "'%.200s%s', which is not valid: %s",
                               name, i, k, f, strlen(f) > 200 ? "..." : "", why);
                free(name);
            }
            free(f);
            if (rc) break;
        }
        free(text);
        if (rc) return rc;
    }
    return 0;
}

void array_template(json_t *normalised, const json_t *body)
{
    json_t *given = json_object_get(json_object_get(body, "command"), "arguments");
    json_t *norm = json_object_get(json_object_get(normalised, "command"), "arguments");
    size_t i;
    json_t *arg;
    json_array_foreach(given, i, arg) {
        const char *v = json_string_value(json_object_get(arg, "value"));
        json_t *n = json_array_get(norm, i);
        if (v && n && (strstr(v, "{{index}}") || strstr(v, "{{item}}")))
            json_object_set_new(n, "value", json_string(v));
    }
}

bool array_is_task_id(const char *id)
{
    return strlen(id) == UUID_STR_LEN - 1 && id[14] == '8';
}

int64_t array_task_index(const char *id)
{
    if (!array_is_task_id(id)) return -1;
    static const int at[6] = {15, 16, 17, 20, 21, 22}; /* around the variant digit, 19 */
    int64_t index = 0;
    for (int k = 0; k < 6; k++) {
        char c = id[at[k]];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0) return -1;
        index = index * 16 + v;
    }
    return index;
}

json_t *array_task_json(const struct job *j)
{
    int64_t index = array_task_index(j->id);
    json_t *env = json_object_get(json_object_get(j->spec, "command"), "env");
    const char *array = json_string_value(json_object_get(env, "DROVER_ARRAY_ID"));
    /* the array's id starts with the task's time digits (array_task_id) */
    if (index < 0 || !array || !uuid_valid(array) || strncmp(array, j->id, 13))
        return json_null();
    return json_pack("{s:s, s:I}", "id", array, "index", (json_int_t)index);
}

void array_task_id(const char *array, int64_t index, char out[UUID_STR_LEN])
{
    char in[64];
    int n = snprintf(in, sizeof(in), "%s:%lld", array, (long long)index);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(in, (size_t)n, md, &len, EVP_sha256(), NULL);
    static const char hex[] = "0123456789abcdef";
    /*
     * 8-4-4-4-12 hex digits: the array's 48 bits of ms (its first 12 digits), version 8,
     * the index in 24 bits (digits 13-15 and 17-19, around the variant digit, fixed at 8),
     * then 48 bits of the hash. A task's id sorts after its array's earlier tasks: the jobs' indexes grow at
     * their end as a lease claims tasks in order, as they do with UUIDv7 jobs.
     */
    char h[32];
    memcpy(h, array, 8);
    memcpy(h + 8, array + 9, 4);
    h[12] = '8';
    uint32_t ix = (uint32_t)index & 0xffffff;
    for (int i = 0; i < 3; i++)
        h[13 + i] = hex[(ix >> (20 - 4 * i)) & 15];
    h[16] = '8'; /* variant 10 (and 00): fixed, so that ids sort by index */
    for (int i = 0; i < 3; i++)
        h[17 + i] = hex[(ix >> (8 - 4 * i)) & 15];
    for (int i = 20; i < 32; i++)
        h[i] = hex[(md[(i - 20) / 2] >> ((i % 2) ? 0 : 4)) & 15];
    snprintf(out, UUID_STR_LEN, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

/*
 * cmd's arguments with the placeholders filled: a new array whose changed arguments are
 * copies and whose others are shared, or NULL when none has a placeholder.
 */
static json_t *filled_arguments(const json_t *cmd, const char *index, const char *item,
                                const char *sha256)
{
    json_t *args = json_object_get(cmd, "arguments"), *out = NULL;
    size_t i;
    json_t *arg;
    json_array_foreach(args, i, arg) {
        const char *v = json_string_value(json_object_get(arg, "value"));
        char *f = v ? array_fill(v, index, item) : NULL;
        if (f && !out) {
            out = json_array();
            for (size_t k = 0; k < i; k++)
                json_array_append(out, json_array_get(args, k));
        }
        if (f) {
            json_t *c = json_copy(arg);
            json_object_set_new(c, "value", json_string(f));
            /* the item is the object an upstream wrote: read exactly that */
            const char *t = json_string_value(json_object_get(arg, "type"));
            if (sha256 && t && !strcmp(t, "input") && !strcmp(v, "{{item}}"))
                json_object_set_new(c, "sha256", json_string(sha256));
            json_array_append_new(out, c);
            free(f);
        } else if (out) {
            json_array_append(out, arg);
        }
    }
    return out;
}

void array_task_job(struct job *out, const char *array, int64_t index, const json_t *spec,
                    const char *item, const char *sha256, const char *owner, const char *tenant,
                    int64_t now_ms, int64_t run_after)
{
    /* copied only where the task's spec differs (command, its env and arguments): the rest
       is shared with the template, which nothing changes (a lease makes many of these) */
    json_t *s = json_copy((json_t *)spec);
    char idx[24];
    snprintf(idx, sizeof(idx), "%lld", (long long)index);
    json_t *cmd = json_object_get(s, "command");
    if (cmd) {
        cmd = json_copy(cmd);
        json_object_set_new(s, "command", cmd);
        json_t *args = filled_arguments(cmd, idx, item, sha256);
        if (args) json_object_set_new(cmd, "arguments", args);
        json_t *env = json_object_get(cmd, "env");
        env = json_is_object(env) ? json_copy(env) : json_object();
        json_object_set_new(cmd, "env", env);
        json_object_set_new(env, "DROVER_ARRAY_ID", json_string(array));
        json_object_set_new(env, "DROVER_ARRAY_INDEX", json_string(idx));
        if (item) json_object_set_new(env, "DROVER_ARRAY_ITEM", json_string(item));
    }
    const char *name = json_string_value(json_object_get(s, "name"));
    if (name) {
        char *n = xasprintf("%s[%s]", name, idx);
        json_object_set_new(s, "name", json_string(n));
        free(n);
    }
    struct job_spec v;
    spec_views(&v, s);
    job_from_spec(out, &v, now_ms); /* takes its own reference of s */
    json_decref(s);
    array_task_id(array, index, out->id);
    out->owner = owner ? xstrdup(owner) : NULL;
    out->tenant = tenant ? xstrdup(tenant) : NULL;
    out->run_after = run_after;
}
