/*
 * spec.h - the job spec of docs/api.md: parse, validate and normalise.
 *
 * A spec arrives as JSON (the seed message format is accepted as it is). It is
 * validated completely before anything is stored: the first problem found is
 * returned as ERR_INVALID with the field's path ("command.arguments[2].type",
 * prefixed by the caller's `path` for arrays, e.g. "[3].queue") and a message
 * that says what is wrong. Unknown fields are refused, so that a typo
 * ("prioirty") is not silently ignored.
 *
 * A valid spec is normalised: parameter values that were numbers or booleans
 * turned into strings, `command.argv` turned into parameter arguments. A member
 * at its default may be left out ("queue": "default", "priority": 0, the
 * members of "retry"...): spec_parse leaves out what was not given, the stored
 * form (spec_compact) what equals its default, and a reader of a normalised
 * spec takes a missing member as its default. spec_expand() writes every
 * default in, for what GET returns.
 */
#ifndef DROVER_SPEC_H
#define DROVER_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

/* Limits (documented in docs/api.md). */
#define SPEC_MAX_ARGUMENTS 4096
#define SPEC_MAX_STRING 65536     /* any one string value */
#define SPEC_MAX_PIPE (1 << 20)   /* command.stdin pipe value */
#define SPEC_MAX_LABELS 64        /* entries of labels, requires, env (each) */
#define SPEC_MAX_PREFIXES 256     /* command.input / command.output entries */
#define SPEC_ATTEMPTS_MAX 100     /* retry.max_attempts, and each budget of retry.on */
#define SPEC_MEMORY_MB_MIN 4      /* resources.memory_mb */
#define SPEC_MEMORY_MB_MAX 4194304 /* 4 TiB */
#define SPEC_CPUS_MIN 0.01         /* resources.cpus: a hundredth of one CPU's time */
#define SPEC_CPUS_MAX 1024
#define SPEC_RETENTION_MAX_S 315360000 /* retention_s: ten years */
#define SPEC_PIDS_MAX 4194304 /* resources.pids: the kernel's highest pid_max */

struct job_spec {
    json_t *json; /* the normalised spec; owned (one reference) */
    /* Borrowed views into json, valid while json lives: */
    const char *queue;   /* never NULL */
    const char *service; /* NULL when absent */
    const char *name;    /* NULL when absent */
    const char *key;     /* idempotency key, NULL when absent */
    int priority;        /* -1000..1000 */
    int slots;           /* 1..PROTO_SLOTS_MAX (an agent has at most as many) */
    int max_attempts;    /* 1..100 */
    double delay_s;      /* >= 0 */
    double timeout_s;    /* 0 = none */
    const json_t *requires; /* object, maybe empty; NULL when left out (none) */
    double backoff_s, max_backoff_s;
    int64_t retention_s; /* kept this long after it ends; 0 = the queue's or the server's */
    bool test; /* a probe: nothing is queued */
};

/*
 * Validates `in` (not modified, not stolen) and fills `out`. `path` is
 * prepended to field paths in errors ("" or NULL for none; "[3]" gives
 * "[3].queue"). Returns 0, or ERR_INVALID with e set. On error `out` holds
 * nothing that needs releasing.
 */
int spec_parse(json_t *in, const char *path, struct job_spec *out, struct err *e);
/* spec_parse() of a spec where "array" may stand too (its caller takes it off first: a job
   array's, a workflow node's): an unknown field's message lists it among the known ones. */
int spec_parse_arrayable(json_t *in, const char *path, struct job_spec *out, struct err *e);
/*
 * Fills the views of s from `normalised`, a spec spec_parse() has already
 * normalised (one read back from the store), borrowed: s->json is not a
 * reference of its own, so s is not released.
 */
void spec_views(struct job_spec *s, json_t *normalised);
/*
 * The stored form of a normalised spec: every member equal to its default left
 * out, also inside retry, resources and command (a minimal job's spec shrinks
 * from ~580 bytes to ~40). spec_expand() puts the defaults back in table
 * order: spec_expand(spec_compact(s)) equals s, and a spec stored whole (as
 * before this form) comes back as it is. Both return a new reference that may
 * share values with their input; spec_expand consumes `stored`. Not an object
 * (NULL, a test probe's null command...): returned as it is.
 */
json_t *spec_compact(const json_t *normalised);
/*
 * The value at `path` ("slots", "retry.on.lost") of a normalised spec, or its default
 * when left out (borrowed: not to be changed); NULL for a path the spec has no default
 * for, or that it does not know.
 */
const json_t *spec_get(const json_t *normalised, const char *path);
json_t *spec_expand(json_t *stored);
/*
 * The object URIs a normalised spec names, typed: what an agent running the
 * job may read (input arguments, stdin, under input prefixes) and write
 * (output arguments, stdout/stderr, names under output prefixes). `uri`
 * borrows the spec's string.
 */
enum spec_uri_use {
    SPEC_URI_READ,         /* an input argument or stdin: that object */
    SPEC_URI_READ_PREFIX,  /* command.input: objects under it */
    SPEC_URI_WRITE,        /* an output argument, stdout or stderr: that object */
    SPEC_URI_WRITE_PREFIX, /* command.output: names under it */
};
struct spec_uri {
    const char *uri;
    enum spec_uri_use use;
};
/* Fills out[0..max) in spec order and returns how many the spec names (maybe more than max). */
size_t spec_uris(const json_t *normalised, struct spec_uri *out, size_t max);
/* A job's resource limits (spec "resources"); 0 = no limit. */
struct spec_resources {
    int64_t memory_mb;
    double cpus;
    int64_t pids;
};
/* Reads the limits of a normalised spec (the agent's lease carries it); absent: all 0. */
void spec_resources_get(json_t *spec, struct spec_resources *r);
static inline bool spec_resources_any(const struct spec_resources *r)
{
    return r->memory_mb || r->cpus > 0 || r->pids;
}

/* Releases out->json and clears the views. */
void spec_release(struct job_spec *s);

/*
 * The runtimes (PROTO_RT_* bits, job/protocol.h) that can run the normalised spec `spec`
 * (NULL, or a spec without a command: a test probe): any container engine for a
 * command.image, bwrap for command.sandbox, else native or bwrap (an agent that sandboxes
 * every job). An agent may take the job when it has one of them.
 */
unsigned spec_runtimes(const json_t *spec);

/* True when `s` is a valid label name ([A-Za-z0-9._/-]{1,64}): labels and requires keys. */
bool spec_label_name_valid(const char *s);

/* True when `s` is a valid command.env name ([A-Za-z_][A-Za-z0-9_]{0,127}); the spec also
 * refuses names starting with DROVER_ (reserved). */
bool spec_env_name_valid(const char *s);

/* True when `q` is a valid queue name ([a-z0-9._-]{1,64}). */
bool spec_queue_name_valid(const char *q);

/*
 * URI checks shared with the agent and the blob store. s3://bucket/key with a
 * bucket of [a-z0-9][a-z0-9.-]{1,62} and a key that is relative, has no "."
 * or ".." segment, no empty segment and no control character;
 * http:// and https:// URLs; file:///absolute/path without "..".
 * `prefix` allows an s3 key that is empty or ends in '/'.
 */
bool spec_uri_valid(const char *uri, bool prefix, const char **why);
/* A webhook's address (a job's or a workflow's notify_url): an http:// or https:// URL. */
bool spec_notify_url_valid(const char *url);

/*
 * Whether `value` is one an argument of `type` ("input", "output" or "parameter") may have,
 * as an array's task gets it from its template (array.h); else *why says why not.
 */
bool spec_arg_value_valid(const char *type, const char *value, const char **why);

/*
 * The file name an input's object gets in a job's work folder (the agent's staging names it
 * so): the last part of its s3 key or file path, or of an http(s) URL's path (no query or
 * fragment). Returns its length (0: none); *name points into uri.
 */
size_t spec_input_file_name(const char *uri, const char **name);

/*
 * Each input and output argument is a file of the work folder named after the last part of
 * its uri. Two input arguments may name one object (the agent downloads it once and gives
 * both its file), and two outputs one uri, not two objects, or an input one pinned to two
 * sha256, or an input and an output one file: every attempt would fail at its staging, or,
 * worse, read what it writes (`tr < IN > OUT` empties IN first) or upload one file twice.
 * spec_input_clash finds the first such pair in a normalised spec's command.arguments (values
 * not set yet are left out): `first` < `second` their indexes, `name` (name_len bytes, at
 * most 100, in the second's uri) the file name, `why` "another object", "another sha256",
 * "an input" or "an output" (what the first is). spec_parse refuses it (400 naming
 * arguments[second].value); a workflow's fan-in fails its node with it.
 */
struct spec_clash {
    size_t first, second;
    const char *name;
    int name_len;
    const char *why;
};
bool spec_input_clash(const json_t *arguments, struct spec_clash *out);
/* The words of the refusal: printf with name_len, name, first, why (after the argument's path). */
#define SPEC_CLASH_FMT                                                                             \
    "would be the file '%.*s' of the work folder, as command.arguments[%zu] is (%s): each "       \
    "input and output is the file named after the last part of its uri, so two must differ "     \
    "there"

#endif
