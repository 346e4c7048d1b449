/*
 * service.c - service definitions and their expansion (see service.h and
 * docs/api.md "Services").
 *
 * A definition is checked in two passes. The first checks what only a
 * definition has: the params and ports (their types, defaults and names,
 * one namespace for the three sections) and the template's references to
 * them (an argument's param, port or if; a stream's port; an env value's
 * param), and refuses a declared name no template refers to. The second
 * expands the template with sample values (each param's default, or a value
 * of its type; every `if` true) and runs spec_parse() on the result: what a
 * job spec would refuse (a bad queue in defaults, a bad env name, a stream
 * type) is refused here, at PUT, under the definition's own path. So a job's
 * expansion can fail only on the job's own params and fields.
 *
 * Invariants: inputs are only read; outputs share no json_t with them.
 */
#include "job/array.h"
#include "job/service.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/xalloc.h"
#include "common/common.h"
#include "job/spec.h"

#define DESCRIPTION_MAX 4096
#define ENUM_VALUE_MAX 256

enum kind { K_PARAM, K_INPUT, K_OUTPUT, K_N };
static const char *const sections[K_N] = {"params", "inputs", "outputs"};

static const char *const param_types[] = {"string", "int", "number", "bool", "enum", NULL};

/* The job-level fields a service may give defaults for. */
static const char *const default_keys[] = {"queue", "priority",  "slots",  "delay_s", "timeout_s",
                                           "retry", "resources", "labels", "notify",  NULL};

struct sctx {
    struct err *e;
    struct buf path;
};

/* --- paths and failures (as in spec.c) ------------------------------------ */

static size_t path_key(struct sctx *c, const char *key)
{
    return buf_path_key(&c->path, key);
}

static size_t path_index(struct sctx *c, size_t i)
{
    return buf_path_index(&c->path, i);
}

static void path_cut(struct sctx *c, size_t mark)
{
    buf_path_cut(&c->path, mark);
}

static int PRINTF_LIKE(2, 3) fail(struct sctx *c, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    const char *field = buf_str(&c->path);
    return err_field(c->e, ERR_INVALID, field, "%s %s", *field ? field : "the definition", what);
}

/* Fails naming path.key. */
static int PRINTF_LIKE(3, 4) fail_at(struct sctx *c, const char *key, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    size_t mark = path_key(c, key);
    int rc = fail(c, "%s", what);
    path_cut(c, mark);
    return rc;
}

/* --- names ------------------------------------------------------------------ */

static bool in_set(char ch, const char *set)
{
    return ch && strchr(set, ch);
}

#define LOWER_DIGITS "abcdefghijklmnopqrstuvwxyz0123456789"
#define LETTERS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"

bool service_name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > SERVICE_NAME_MAX || !in_set(s[0], LOWER_DIGITS)) return false;
    for (size_t i = 1; i < n; i++)
        if (!in_set(s[i], LOWER_DIGITS "._-")) return false;
    return true;
}

bool service_param_name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 64 || !in_set(s[0], LETTERS)) return false;
    for (size_t i = 1; i < n; i++)
        if (!in_set(s[i], LETTERS "0123456789-")) return false;
    return true;
}

static bool one_of(const char *s, const char *const *set)
{
    for (size_t i = 0; s && set[i]; i++)
        if (!strcmp(s, set[i])) return true;
    return false;
}

static json_t *given(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

/* Refuses keys of `o` that are not in `keys` (NULL-terminated). */
static int known_keys(struct sctx *c, const json_t *o, const char *const *keys, const char *what)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v)
    {
        if (!one_of(key, keys)) return fail_at(c, key, "is not a field of %s", what);
    }
    return 0;
}

static bool text_ok(const json_t *v, size_t max)
{
    return json_is_string(v) && json_string_length(v) <= max &&
           strlen(json_string_value(v)) == json_string_length(v);
}

/* --- values: one check for a default and for a job's value -------------- */

/* "an integer between 1 and 64", "a number of at least 0", ... */
static void range_text(const json_t *decl, const char *what, char *out, size_t n)
{
    json_t *min = given(decl, "min"), *max = given(decl, "max");
    if (min && max)
        snprintf(out, n, "%s between %.15g and %.15g", what, json_number_value(min),
                 json_number_value(max));
    else if (min)
        snprintf(out, n, "%s of at least %.15g", what, json_number_value(min));
    else if (max)
        snprintf(out, n, "%s of at most %.15g", what, json_number_value(max));
    else
        snprintf(out, n, "%s", what);
}

static bool in_range(const json_t *decl, double x)
{
    json_t *min = given(decl, "min"), *max = given(decl, "max");
    return (!min || x >= json_number_value(min)) && (!max || x <= json_number_value(max));
}

/* A decimal integer, all of s (command lines give every value as text). */
static bool text_int(const char *s, json_int_t *out)
{
    char *end;
    if (!*s || strlen(s) > 20) return false;
    long long x = strtoll(s, &end, 10);
    if (*end || end == s || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) return false;
    *out = (json_int_t)x;
    return x != LLONG_MIN && x != LLONG_MAX;
}

static bool text_number(const char *s, double *out)
{
    char *end;
    if (!*s || !(s[0] == '-' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9'))) return false;
    double x = strtod(s, &end);
    *out = x;
    return !*end && isfinite(x);
}

/* Checks v (not null) against param declaration `decl`; *norm gets the normalised value. */
static int param_value(struct sctx *c, const json_t *decl, json_t *v, json_t **norm)
{
    const char *type = json_string_value(json_object_get(decl, "type"));
    const char *s = json_string_value(v);
    char what[160];
    if (!strcmp(type, "string")) {
        json_t *maxlen = given(decl, "max_length");
        size_t max = maxlen ? (size_t)json_integer_value(maxlen) : SPEC_MAX_STRING;
        if (!text_ok(v, max)) return fail(c, "must be a string of at most %zu bytes", max);
        *norm = json_string(s);
    } else if (!strcmp(type, "int")) {
        json_int_t x = 0;
        double d = json_number_value(v);
        bool ok = false;
        if (json_is_integer(v)) {
            x = json_integer_value(v);
            ok = true;
        } else if (json_is_real(v) && d == floor(d) && fabs(d) < 9e15) {
            x = (json_int_t)d; /* 2.0 is 2, as for a spec's integers */
            ok = true;
        } else if (s) {
            ok = text_int(s, &x);
        }
        if (!ok || !in_range(decl, (double)x)) {
            range_text(decl, "an integer", what, sizeof(what));
            return fail(c, "must be %s", what);
        }
        *norm = json_integer(x);
    } else if (!strcmp(type, "number")) {
        double x = json_number_value(v);
        bool ok = json_is_number(v) || (s && text_number(s, &x));
        if (!ok || !in_range(decl, x)) {
            range_text(decl, "a number", what, sizeof(what));
            return fail(c, "must be %s", what);
        }
        *norm = json_is_integer(v) ? json_integer(json_integer_value(v)) : json_real(x);
    } else if (!strcmp(type, "bool")) {
        if (json_is_boolean(v))
            *norm = json_boolean(json_is_true(v));
        else if (s && (!strcmp(s, "true") || !strcmp(s, "false")))
            *norm = json_boolean(!strcmp(s, "true"));
        else
            return fail(c, "must be true or false");
    } else { /* enum */
        json_t *values = json_object_get(decl, "values"), *one;
        size_t i;
        json_array_foreach(values, i, one)
        {
            if (s && !strcmp(s, json_string_value(one))) {
                *norm = json_string(s);
                return 0;
            }
        }
        struct buf b = BUF_INIT;
        json_array_foreach(values, i, one)
        {
            if (i == 8) {
                buf_adds(&b, ", ...");
                break;
            }
            buf_addf(&b, "%s'%s'", i ? ", " : "", json_string_value(one));
        }
        int rc = fail(c, "must be one of %s", b.data);
        buf_release(&b);
        return rc;
    }
    return 0;
}

/*
 * A port value holding an array's placeholders (docs/api.md "Arrays": "{{index}}", "{{item}}")
 * as a task could have it, for the check: "{{item}}" alone as an object's URI, else the index
 * 0 and the item "item"; NULL when it holds none. The array checks task 0's own values too.
 */
static char *port_sample(const char *s)
{
    if (s && !strcmp(s, "{{item}}")) return xstrdup("s3://drover-check/item");
    return s ? array_fill(s, "0", "item") : NULL;
}

/* A port's value: an object's URI, readable (inputs) or writable (outputs). */
static int port_value(struct sctx *c, enum kind k, json_t *v, json_t **norm)
{
    const char *why = NULL, *given_s = json_string_value(v);
    char *sample = port_sample(given_s);
    const char *s = sample ? sample : given_s;
    int rc = 0;
    if (!text_ok(v, SPEC_MAX_STRING) || !spec_uri_valid(s, false, &why))
        rc = fail(c, "must be the uri of an object (s3://bucket/key%s)%s%s",
                  k == K_INPUT ? ", https://host/path or file:///path" : " or file:///path",
                  why ? ": " : "", why ? why : "");
    else if (k == K_OUTPUT && strncmp(s, "s3://", 5) && strncmp(s, "file://", 7))
        rc = fail(c, "must be an s3:// or file:/// uri: an output is written, and http(s) urls "
                     "can only be read");
    free(sample);
    if (!rc) *norm = json_string(given_s);
    return rc;
}

/* --- a definition: params and ports ------------------------------------------ */

static const char *const param_keys[] = {"type", "description", "default",    "required", "min",
                                         "max",  "values",      "max_length", NULL};
static const char *const port_keys[] = {"description", "required", NULL};

static int check_description(struct sctx *c, const json_t *decl, json_t *out)
{
    json_t *d = given(decl, "description");
    if (d && !text_ok(d, DESCRIPTION_MAX))
        return fail_at(c, "description", "must be a string of at most %d bytes, or null",
                       DESCRIPTION_MAX);
    json_object_set_new(out, "description", d ? json_string(json_string_value(d)) : json_null());
    return 0;
}

static int check_enum_values(struct sctx *c, json_t *values, json_t *out)
{
    size_t mark = path_key(c, "values");
    int rc = 0;
    if (!json_is_array(values) || !json_array_size(values) ||
        json_array_size(values) > SERVICE_MAX_ENUM)
        rc = fail(c, "must be an array of 1 to %d strings (an enum's values)", SERVICE_MAX_ENUM);
    size_t i;
    json_t *v;
    json_array_foreach(values, i, v)
    {
        if (rc) break;
        size_t m = path_index(c, i);
        if (!text_ok(v, ENUM_VALUE_MAX) || !json_string_length(v))
            rc = fail(c, "must be a non-empty string of at most %d bytes", ENUM_VALUE_MAX);
        for (size_t j = 0; !rc && j < i; j++)
            if (json_equal(v, json_array_get(values, j)))
                rc = fail(c, "repeats '%s'", json_string_value(v));
        path_cut(c, m);
    }
    path_cut(c, mark);
    if (!rc) json_object_set_new(out, "values", json_deep_copy(values));
    return rc;
}

/* The type-specific fields: min/max (int, number), values (enum), max_length (string). */
static int check_param_shape(struct sctx *c, const char *type, const json_t *decl, json_t *out)
{
    bool numeric = !strcmp(type, "int") || !strcmp(type, "number");
    json_t *min = given(decl, "min"), *max = given(decl, "max");
    json_t *values = given(decl, "values"), *maxlen = given(decl, "max_length");
    const char *const extra[] = {"min", "max", "values", "max_length"};
    for (size_t i = 0; i < ARRAY_SIZE(extra); i++) {
        bool allowed = i < 2 ? numeric : i == 2 ? !strcmp(type, "enum") : !strcmp(type, "string");
        if (given(decl, extra[i]) && !allowed)
            return fail_at(c, extra[i], "is not a field of a param of type %s", type);
    }
    const char *bounds[] = {"min", "max"};
    json_t *bv[] = {min, max};
    for (size_t i = 0; i < 2; i++) {
        if (!bv[i]) continue;
        double x = json_number_value(bv[i]);
        if (!json_is_number(bv[i]) || (!strcmp(type, "int") && x != floor(x)) || fabs(x) > 9e15)
            return fail_at(c, bounds[i], "must be %s, or null",
                           !strcmp(type, "int") ? "an integer" : "a number");
        json_object_set_new(out, bounds[i], json_deep_copy(bv[i]));
    }
    if (min && max && json_number_value(min) > json_number_value(max))
        return fail_at(c, "max", "must be at least min (%.15g)", json_number_value(min));
    if (!strcmp(type, "enum")) {
        if (!values) return fail_at(c, "values", "is required for a param of type enum");
        return check_enum_values(c, values, out);
    }
    if (maxlen) {
        json_int_t n = json_integer_value(maxlen);
        if (!json_is_integer(maxlen) || n < 0 || n > SPEC_MAX_STRING)
            return fail_at(c, "max_length", "must be an integer between 0 and %d, or null",
                           SPEC_MAX_STRING);
        json_object_set_new(out, "max_length", json_integer(n));
    }
    return 0;
}

static int check_required(struct sctx *c, const json_t *decl, bool has_default, json_t *out)
{
    json_t *req = given(decl, "required");
    if (req && !json_is_boolean(req))
        return fail_at(c, "required", "must be true or false, or null");
    if (json_is_true(req) && has_default)
        return fail_at(c, "required", "cannot be true for a param that has a default");
    json_object_set_new(out, "required", json_boolean(req ? json_is_true(req) : !has_default));
    return 0;
}

static int check_param_decl(struct sctx *c, const json_t *decl, json_t **norm)
{
    if (!json_is_object(decl))
        return fail(c, "must be an object {\"type\": string|int|number|bool|enum, ...}");
    int rc = known_keys(c, decl, param_keys, "a param");
    if (rc) return rc;
    json_t *type = json_object_get(decl, "type");
    if (!one_of(json_string_value(type), param_types))
        return fail_at(c, "type", "must be one of string, int, number, bool, enum");
    json_t *out = json_object();
    json_object_set_new(out, "type", json_string(json_string_value(type)));
    rc = check_description(c, decl, out);
    if (!rc) rc = check_param_shape(c, json_string_value(type), decl, out);
    json_t *dflt = given(decl, "default"), *dnorm = NULL;
    if (!rc && dflt) {
        size_t mark = path_key(c, "default");
        rc = param_value(c, out, dflt, &dnorm);
        path_cut(c, mark);
    }
    if (!rc) {
        json_object_set_new(out, "default", dnorm ? dnorm : json_null());
        rc = check_required(c, decl, dnorm != NULL, out);
    }
    if (rc)
        json_decref(out);
    else
        *norm = out;
    return rc;
}

static int check_port_decl(struct sctx *c, const json_t *decl, json_t **norm)
{
    if (decl && !json_is_object(decl))
        return fail(c, "must be an object {\"description\", \"required\"}, or null");
    int rc = decl ? known_keys(c, decl, port_keys, "a port") : 0;
    json_t *out = json_object();
    if (!rc) rc = check_description(c, decl, out);
    if (!rc) rc = check_required(c, decl, false, out);
    if (rc)
        json_decref(out);
    else
        *norm = out;
    return rc;
}

/* Which section declares `name`, or K_N. */
static enum kind kind_of(const json_t *def, const char *name)
{
    for (int k = 0; k < K_N; k++)
        if (name && json_object_get(json_object_get(def, sections[k]), name)) return (enum kind)k;
    return K_N;
}

/* Checks params, inputs and outputs into out (names unique across the three). */
static int check_names(struct sctx *c, const json_t *in, json_t *out)
{
    size_t total = 0;
    for (int k = 0; k < K_N; k++) {
        json_t *sec = given(in, sections[k]), *norm_sec = json_object();
        json_object_set_new(out, sections[k], norm_sec);
        size_t mark = path_key(c, sections[k]);
        int rc = 0;
        if (sec && !json_is_object(sec))
            rc = fail(c, "must be an object {name: declaration}, or null");
        const char *name;
        json_t *decl;
        json_object_foreach(rc ? NULL : sec, name, decl)
        {
            size_t m = path_key(c, name);
            json_t *norm = NULL;
            enum kind other = kind_of(out, name);
            if (++total > SERVICE_MAX_NAMES)
                rc = fail(c, "is one name too many: params, inputs and outputs hold at most %d",
                          SERVICE_MAX_NAMES);
            else if (!service_param_name_valid(name))
                rc = fail(c, "is not a valid name: names match [A-Za-z_][A-Za-z0-9_-]{0,63}");
            else if (other != K_N)
                rc = fail(c,
                          "is already declared in %s: params, inputs and outputs are one "
                          "namespace (a job's params)",
                          sections[other]);
            else if (!(rc = k == K_PARAM ? check_param_decl(c, decl, &norm)
                                         : check_port_decl(c, given(sec, name), &norm)))
                json_object_set_new(norm_sec, name, norm);
            path_cut(c, m);
            if (rc) break;
        }
        path_cut(c, mark);
        if (rc) return rc;
    }
    return 0;
}

/* --- a definition: the command template --------------------------------------- */

static const char *const arg_keys[] = {"type", "name",  "value",  "param", "port",
                                       "if",   "cache", "sha256", NULL};
static const char *const arg_types[] = {"input", "parameter", "output", NULL};

/* `key` of o must name a declaration of kind `want` (K_N: any); marks it used. */
static int check_ref(struct sctx *c, const json_t *def, json_t *used, const json_t *o,
                     const char *key, enum kind want)
{
    json_t *v = given(o, key);
    if (!v) return 0;
    const char *name = json_string_value(v);
    enum kind k = kind_of(def, name);
    if (!name)
        return fail_at(c, key, "must be the name of a %s",
                       want == K_N       ? "param or port"
                       : want == K_PARAM ? "param"
                       : want == K_INPUT ? "input"
                                         : "output");
    if (k == K_N || (want != K_N && k != want))
        return fail_at(c, key, "'%s' is not declared in %s", name,
                       want == K_N ? "params, inputs or outputs" : sections[want]);
    json_object_set_new(used, name, json_true());
    return 0;
}

static int check_arg_template(struct sctx *c, const json_t *def, json_t *used, const json_t *a)
{
    if (!json_is_object(a))
        return fail(c, "must be an object {\"type\", \"name\", and one of \"value\", \"param\", "
                       "\"port\"}");
    int rc = known_keys(c, a, arg_keys, "an argument");
    if (rc) return rc;
    const char *type = json_string_value(json_object_get(a, "type"));
    if (!one_of(type, arg_types))
        return fail_at(c, "type", "must be one of input, parameter, output");
    bool param = given(a, "param"), port = given(a, "port"), value = given(a, "value");
    if (param + port + value != 1)
        return fail(c, "must have one of value (a fixed value), param (for a parameter) or port "
                       "(for an input or output)");
    bool parameter = !strcmp(type, "parameter");
    if (param && !parameter)
        return fail_at(c, "param", "is for parameter arguments: an %s argument takes a port", type);
    if (port && parameter)
        return fail_at(c, "port", "is for input and output arguments: a parameter takes a param");
    rc = check_ref(c, def, used, a, "param", K_PARAM);
    if (!rc) rc = check_ref(c, def, used, a, "port", !strcmp(type, "input") ? K_INPUT : K_OUTPUT);
    if (!rc) rc = check_ref(c, def, used, a, "if", K_N);
    return rc;
}

static int check_stream_template(struct sctx *c, const json_t *def, json_t *used, const char *key,
                                 const json_t *s)
{
    if (!json_is_object(s) || !given(s, "port"))
        return 0; /* a fixed stream: the trial spec checks it */
    size_t mark = path_key(c, key);
    static const char *const keys[] = {"type", "port", NULL};
    int rc = known_keys(c, s, keys, "a stream with a port");
    const char *type = json_string_value(json_object_get(s, "type"));
    if (!rc && (!type || strcmp(type, "uri")))
        rc = fail_at(c, "type", "must be \"uri\" for a stream that takes a port");
    if (!rc) rc = check_ref(c, def, used, s, "port", !strcmp(key, "stdin") ? K_INPUT : K_OUTPUT);
    path_cut(c, mark);
    return rc;
}

static int check_env_template(struct sctx *c, const json_t *def, json_t *used, const json_t *env)
{
    if (!json_is_object(env)) return 0; /* the trial spec says what is wrong */
    const char *name;
    json_t *v;
    int rc = 0;
    size_t mark = path_key(c, "env");
    json_object_foreach((json_t *)env, name, v)
    {
        if (!json_is_object(v)) continue;
        size_t m = path_key(c, name);
        static const char *const keys[] = {"param", NULL};
        if (!given(v, "param"))
            rc = fail(c, "must be a string, or {\"param\": NAME} for a param's value");
        if (!rc) rc = known_keys(c, v, keys, "an env value");
        if (!rc) rc = check_ref(c, def, used, v, "param", K_PARAM);
        path_cut(c, m);
        if (rc) break;
    }
    path_cut(c, mark);
    return rc;
}

static int check_command_template(struct sctx *c, const json_t *def, json_t *used,
                                  const json_t *cmd)
{
    if (!json_is_object(cmd))
        return fail(c, "must be an object: the command's template {\"program\", \"arguments\", "
                       "...}");
    if (given(cmd, "shell"))
        return fail_at(c, "shell",
                       "is not allowed in a service: params reach the program as "
                       "separate arguments, never through a shell (run /bin/sh "
                       "-c SCRIPT with the params as arguments after it)");
    if (given(cmd, "argv"))
        return fail_at(c, "argv",
                       "is not allowed in a service: give arguments (each with a "
                       "value, param or port)");
    if (!given(cmd, "program"))
        return fail_at(c, "program",
                       "is required: the program the service runs (in its image "
                       "when command.image is given)");
    json_t *args = given(cmd, "arguments"), *a;
    size_t i;
    size_t mark = path_key(c, "arguments");
    int rc = 0;
    if (args && (!json_is_array(args) || json_array_size(args) > SPEC_MAX_ARGUMENTS))
        rc = fail(c, "must be an array of at most %d arguments", SPEC_MAX_ARGUMENTS);
    json_array_foreach(rc ? NULL : args, i, a)
    {
        size_t m = path_index(c, i);
        rc = check_arg_template(c, def, used, a);
        path_cut(c, m);
        if (rc) break;
    }
    path_cut(c, mark);
    const char *const streams[] = {"stdin", "stdout", "stderr"};
    for (size_t k = 0; !rc && k < ARRAY_SIZE(streams); k++)
        rc = check_stream_template(c, def, used, streams[k], json_object_get(cmd, streams[k]));
    if (!rc) rc = check_env_template(c, def, used, json_object_get(cmd, "env"));
    return rc;
}

/* Every declared name must be used by the template: an unused one is a typo's other half. */
static int check_all_used(struct sctx *c, const json_t *def, const json_t *used)
{
    for (int k = 0; k < K_N; k++) {
        const char *name;
        json_t *decl;
        json_object_foreach(json_object_get(def, sections[k]), name, decl)
        {
            if (json_object_get(used, name)) continue;
            size_t mark = path_key(c, sections[k]);
            int rc = fail_at(c, name, "is not used by the command: no %s refers to it",
                             k == K_PARAM   ? "argument's param or if, nor env value,"
                             : k == K_INPUT ? "input argument's port or if, nor stdin,"
                                            : "output argument's port or if, nor stdout or "
                                              "stderr,");
            path_cut(c, mark);
            return rc;
        }
    }
    return 0;
}

/* --- building a spec ------------------------------------------------------------ */

/* A param's value as env text. */
static json_t *env_text(const json_t *v)
{
    char s[48];
    if (json_is_string(v)) return json_string(json_string_value(v));
    if (json_is_boolean(v)) return json_string(json_is_true(v) ? "true" : "false");
    if (json_is_integer(v)) {
        snprintf(s, sizeof(s), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return json_string(s);
    }
    double x = json_real_value(v);
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(s, sizeof(s), "%.*g", prec, x);
        if (strtod(s, NULL) == x) break;
    }
    return json_string(s);
}

/* Is the argument in? Its `if` names a bool that is true, or another name that has a value. */
static bool arg_included(const json_t *a, const json_t *values)
{
    const char *cond = json_string_value(given(a, "if"));
    if (!cond) return true;
    json_t *v = json_object_get(values, cond);
    return v && !json_is_false(v);
}

/* The job's command from the template and the params' values (a name without one is absent). */
static json_t *build_command(const json_t *tmpl, const json_t *values)
{
    json_t *out = json_object(), *v;
    const char *key;
    json_object_foreach((json_t *)tmpl, key, v)
    {
        if (json_is_null(v) || !strcmp(key, "arguments") || !strcmp(key, "env") ||
            (one_of(key, (const char *const[]){"stdin", "stdout", "stderr", NULL}) &&
             given(v, "port")))
            continue;
        json_object_set_new(out, key, json_deep_copy(v));
    }
    json_t *args = json_array(), *a;
    size_t i;
    json_array_foreach(given(tmpl, "arguments"), i, a)
    {
        const char *ref = json_string_value(given(a, "param"));
        if (!ref) ref = json_string_value(given(a, "port"));
        json_t *val = ref ? json_object_get(values, ref) : json_object_get(a, "value");
        if (!val || !arg_included(a, values))
            continue; /* an optional param or port without a value: its argument is left out */
        json_t *arg = json_object();
        json_object_set_new(arg, "type", json_deep_copy(json_object_get(a, "type")));
        if (given(a, "name"))
            json_object_set_new(arg, "name", json_deep_copy(json_object_get(a, "name")));
        json_object_set_new(arg, "value", json_deep_copy(val));
        const char *const extra[] = {"cache", "sha256"};
        for (size_t k = 0; k < ARRAY_SIZE(extra); k++)
            if (given(a, extra[k]))
                json_object_set_new(arg, extra[k], json_deep_copy(json_object_get(a, extra[k])));
        json_array_append_new(args, arg);
    }
    json_object_set_new(out, "arguments", args);
    const char *const streams[] = {"stdin", "stdout", "stderr"};
    for (size_t k = 0; k < ARRAY_SIZE(streams); k++) {
        const char *port = json_string_value(given(given(tmpl, streams[k]), "port"));
        json_t *val = port ? json_object_get(values, port) : NULL;
        if (val)
            json_object_set_new(out, streams[k],
                                json_pack("{s:s, s:O}", "type", "uri", "value", val));
    }
    json_t *env = given(tmpl, "env");
    if (json_is_object(env)) {
        json_t *eo = json_object();
        json_object_foreach(env, key, v)
        {
            if (!json_is_object(v)) {
                json_object_set_new(eo, key, json_deep_copy(v));
                continue;
            }
            json_t *pv = json_object_get(values, json_string_value(given(v, "param")));
            if (pv) json_object_set_new(eo, key, env_text(pv));
        }
        json_object_set_new(out, "env", eo);
    } else if (env) {
        json_object_set_new(out, "env", json_deep_copy(env)); /* spec_parse names the problem */
    }
    return out;
}

const char *service_port_type(const json_t *def, const char *name)
{
    enum kind k = kind_of(def, name);
    return k == K_INPUT ? "input" : k == K_OUTPUT ? "output" : NULL;
}

/*
 * Where build_command() put each port that has a value: the same walk over the template,
 * counting the arguments it keeps.
 */
json_t *service_ports(const json_t *def, const json_t *values)
{
    const json_t *tmpl = json_object_get(def, "command");
    json_t *out = json_object(), *a;
    size_t i, kept = 0;
    json_array_foreach(given(tmpl, "arguments"), i, a)
    {
        const char *ref = json_string_value(given(a, "param"));
        const char *port = ref ? NULL : json_string_value(given(a, "port"));
        if (!ref) ref = port;
        json_t *val = ref ? json_object_get(values, ref) : json_object_get(a, "value");
        if (!val || !arg_included(a, values)) continue;
        if (port && !json_object_get(out, port)) {
            char at[48];
            snprintf(at, sizeof(at), "arguments[%zu]", kept);
            json_object_set_new(out, port, json_pack("{s:s, s:s}", "type",
                                                     service_port_type(def, port), "at", at));
        }
        kept++;
    }
    const char *const streams[] = {"stdin", "stdout", "stderr"};
    for (size_t k = 0; k < ARRAY_SIZE(streams); k++) {
        const char *port = json_string_value(given(given(tmpl, streams[k]), "port"));
        if (port && json_object_get(values, port) && !json_object_get(out, port))
            json_object_set_new(out, port, json_pack("{s:s, s:s}", "type",
                                                     service_port_type(def, port), "at",
                                                     streams[k]));
    }
    for (int k = K_INPUT; k < K_N; k++) { /* declared, without a value: in no place */
        const char *name;
        json_t *decl;
        json_object_foreach(json_object_get(def, sections[k]), name, decl)
        {
            if (!json_object_get(out, name))
                json_object_set_new(out, name, json_pack("{s:s, s:n}", "type",
                                                         k == K_INPUT ? "input" : "output", "at"));
        }
    }
    return out;
}

/* Adds the entries of `more` (an object) to `into`, replacing those of the same key. */
static void merge_into(json_t *into, const json_t *more)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)more, key, v) json_object_set_new(into, key, json_deep_copy(v));
}

/*
 * A job spec: the service's defaults and requires, the job's fields over them (requires
 * and labels merged), the command built from `values`.
 */
static json_t *build_spec(const json_t *def, const char *name, int version, const json_t *job,
                          json_t *values)
{
    json_t *spec = json_deep_copy(json_object_get(def, "defaults"));
    json_object_set_new(spec, "requires", json_deep_copy(json_object_get(def, "requires")));
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)job, key, v)
    {
        if (json_is_null(v) ||
            one_of(key, (const char *const[]){"service", "service_version", "params", NULL}))
            continue;
        json_t *mine = json_object_get(spec, key);
        if ((!strcmp(key, "requires") || !strcmp(key, "labels")) && json_is_object(mine) &&
            json_is_object(v))
            merge_into(mine, v);
        else
            json_object_set_new(spec, key, json_deep_copy(v));
    }
    json_object_set_new(spec, "service", json_string(name));
    json_object_set_new(spec, "service_version", json_integer(version));
    json_object_set_new(spec, "params", values);
    json_object_set_new(spec, "command", build_command(json_object_get(def, "command"), values));
    return spec;
}

/* --- a definition, whole ----------------------------------------------------------- */

static const char *const def_keys[] = {"description", "command", "requires", "defaults",
                                       "params",      "inputs",  "outputs",  NULL};

/* A value of each declaration's type, for the trial spec. */
static json_t *sample_values(const json_t *def)
{
    json_t *values = json_object(), *decl;
    const char *name;
    json_object_foreach(json_object_get(def, "params"), name, decl)
    {
        json_t *dflt = given(decl, "default"), *min = given(decl, "min"), *max = given(decl, "max");
        const char *type = json_string_value(json_object_get(decl, "type"));
        json_t *v;
        if (dflt)
            v = json_deep_copy(dflt);
        else if (!strcmp(type, "string"))
            v = json_string("x");
        else if (!strcmp(type, "bool"))
            v = json_true();
        else if (!strcmp(type, "enum"))
            v = json_deep_copy(json_array_get(json_object_get(decl, "values"), 0));
        else /* int, number: a bound, or 0 */
            v = min ? json_deep_copy(min) : max ? json_deep_copy(max) : json_integer(0);
        json_object_set_new(values, name, v);
    }
    for (int k = K_INPUT; k < K_N; k++) {
        json_object_foreach(json_object_get(def, sections[k]), name, decl)
        {
            char uri[128];
            snprintf(uri, sizeof(uri), "s3://drover-check/%s/%s", sections[k], name);
            json_object_set_new(values, name, json_string(uri));
        }
    }
    return values;
}

/* The definition's path of a trial spec's field: the job-level ones are under defaults. */
static int trial_error(struct sctx *c, const struct err *te)
{
    const char *f = te->field;
    size_t n = strcspn(f, ".[");
    char head[32];
    snprintf(head, sizeof(head), "%.*s", (int)(n < sizeof(head) ? n : sizeof(head) - 1), f);
    if (one_of(head, default_keys)) {
        char field[200];
        snprintf(field, sizeof(field), "defaults.%s", f);
        return err_field(c->e, ERR_INVALID, field, "defaults.%s", te->msg);
    }
    return err_field(c->e, ERR_INVALID, f, "%s", te->msg);
}

static int check_defaults(struct sctx *c, const json_t *in, json_t *out)
{
    json_t *d = given(in, "defaults");
    if (d && !json_is_object(d))
        return fail_at(c, "defaults",
                       "must be an object of job fields (queue, timeout_s, "
                       "resources, ...), or null");
    const char *key;
    json_t *v;
    json_object_foreach(d, key, v)
    {
        if (!one_of(key, default_keys)) {
            size_t mark = path_key(c, "defaults");
            int rc = fail_at(c, key,
                             "is not a default a service can give (queue, priority, "
                             "slots, delay_s, timeout_s, retry, resources, labels, "
                             "notify)");
            path_cut(c, mark);
            return rc;
        }
    }
    json_object_set_new(out, "defaults", d ? json_deep_copy(d) : json_object());
    json_t *req = given(in, "requires");
    json_object_set_new(out, "requires", req ? json_deep_copy(req) : json_object());
    return 0;
}

int service_parse(json_t *in, const char *name, json_t **out, struct err *e)
{
    struct sctx c = {.e = e, .path = BUF_INIT};
    json_t *def = json_object(), *used = json_object();
    int rc = 0;
    *out = NULL;
    if (!json_is_object(in))
        rc = fail(&c, "must be a json object {\"command\", \"params\", \"inputs\", "
                      "\"outputs\", \"requires\", \"defaults\", \"description\"}");
    if (!rc) rc = known_keys(&c, in, def_keys, "a service definition");
    if (!rc) rc = check_description(&c, in, def);
    json_object_set_new(def, "command", json_null()); /* its place in the output's order */
    if (!rc) rc = check_names(&c, in, def);
    if (!rc) {
        size_t mark = path_key(&c, "command");
        rc = check_command_template(&c, def, used, json_object_get(in, "command"));
        path_cut(&c, mark);
    }
    if (!rc) rc = check_all_used(&c, def, used);
    if (!rc) rc = check_defaults(&c, in, def);
    if (!rc) {
        json_object_set_new(def, "command", json_deep_copy(json_object_get(in, "command")));
        /* the trial: the template with sample values must make a valid job spec */
        json_t *job = json_object();
        json_t *spec = build_spec(def, name, 1, job, sample_values(def));
        struct job_spec js;
        struct err te = ERR_INIT;
        if (spec_parse(spec, "", &js, &te))
            rc = trial_error(&c, &te);
        else
            spec_release(&js);
        json_decref(spec);
        json_decref(job);
    }
    json_decref(used);
    buf_release(&c.path);
    if (rc)
        json_decref(def);
    else
        *out = def;
    return rc;
}

/* --- a job's expansion ------------------------------------------------------------ */

/* The names a service has, for a message: "cpu, query, hits" (at most a few). */
static void names_text(const json_t *def, struct buf *b)
{
    size_t n = 0;
    for (int k = 0; k < K_N; k++) {
        const char *name;
        json_t *decl;
        json_object_foreach(json_object_get(def, sections[k]), name, decl)
        {
            if (n++ == 12) {
                buf_adds(b, ", ...");
                return;
            }
            buf_addf(b, "%s%s", n > 1 ? ", " : "", name);
        }
    }
    if (!n) buf_adds(b, "none");
}

static int job_values(struct sctx *c, const json_t *def, const char *name, int version,
                      const json_t *params, json_t *values)
{
    const char *key;
    json_t *v;
    size_t mark = path_key(c, "params");
    int rc = 0;
    if (params && !json_is_object(params))
        rc = fail(c, "must be an object {name: value} of service '%s''s params and ports", name);
    json_object_foreach(rc ? NULL : (json_t *)params, key, v)
    {
        if (kind_of(def, key) != K_N) continue;
        struct buf b = BUF_INIT;
        names_text(def, &b);
        rc = fail_at(c, key, "is not a param of service '%s' version %d (it has: %s)", name,
                     version, b.data);
        buf_release(&b);
    }
    for (int k = 0; !rc && k < K_N; k++) {
        json_t *decl;
        json_object_foreach(json_object_get(def, sections[k]), key, decl)
        {
            json_t *given_v = given(params, key), *norm = NULL;
            size_t m = path_key(c, key);
            if (given_v)
                rc = k == K_PARAM ? param_value(c, decl, given_v, &norm)
                                  : port_value(c, (enum kind)k, given_v, &norm);
            else if (given(decl, "default"))
                norm = json_deep_copy(json_object_get(decl, "default"));
            else if (json_is_true(json_object_get(decl, "required")))
                rc = fail(c, "is required by service '%s' version %d (%s)", name, version,
                          k == K_PARAM   ? json_string_value(json_object_get(decl, "type"))
                          : k == K_INPUT ? "an input: the uri of an object to read"
                                         : "an output: the uri of an object to write");
            path_cut(c, m);
            if (norm) json_object_set_new(values, key, norm);
            if (rc) break;
        }
    }
    path_cut(c, mark);
    return rc;
}

int service_expand(const json_t *def, const char *name, int version, json_t *job, const char *path,
                   json_t **out, struct err *e)
{
    struct sctx c = {.e = e, .path = BUF_INIT};
    json_t *values = json_object();
    int rc = 0;
    *out = NULL;
    buf_adds(&c.path, path ? path : "");
    if (given(job, "command"))
        rc = fail_at(&c, "command",
                     "cannot be given with service '%s': the service's definition "
                     "(version %d) says what runs; a job of it gives only params",
                     name, version);
    if (!rc) rc = job_values(&c, def, name, version, given(job, "params"), values);
    if (!rc)
        *out = build_spec(def, name, version, job, values);
    else
        json_decref(values);
    buf_release(&c.path);
    return rc;
}
