/*
 * service.h - the service hub's definitions (docs/api.md "Services"): check a
 * definition, and expand it with a job's params into a job spec.
 *
 * A definition says what a service runs (command.program, or an image), a
 * template of typed arguments that take their values from named, typed
 * params and from ports (inputs: objects the job reads; outputs: objects it
 * writes), the labels an agent must have (requires) and the job-level
 * defaults (queue, timeout_s, resources, ...). A job names the service and
 * gives only `params`, {name: value} for params and ports alike; the
 * expansion turns that into a complete job spec that spec_parse() then
 * checks like any other. No I/O here: the caller finds the definition (the
 * store) and stores the result.
 *
 * Errors are ERR_INVALID with the field's path: in a definition
 * ("command.arguments[2].param"), in a job prefixed by the caller's path
 * ("[3].params.cpu").
 */
#ifndef DROVER_SERVICE_H
#define DROVER_SERVICE_H

#include <jansson.h>
#include <stdbool.h>

#include "common/err.h"

#define SERVICE_NAME_MAX 64
#define SERVICE_MAX_NAMES 256 /* params, inputs and outputs together */
#define SERVICE_MAX_ENUM 256  /* values of an enum param */

/* True when s is a valid service name: [a-z0-9][a-z0-9._-]{0,63}. */
bool service_name_valid(const char *s);

/* True when s is a valid param or port name: [A-Za-z_][A-Za-z0-9_-]{0,63}. */
bool service_param_name_valid(const char *s);

/*
 * Checks a definition (the body of PUT /v1/services/{name} less its
 * "version") and normalises it: every section present, every param with its
 * type, default and required. A definition passes only if it expands, with
 * sample values, into a valid job spec, so a job's expansion fails only on
 * the job's own params and fields. `name` is the service's (for the trial
 * spec). *out: a new reference. ERR_INVALID naming the field.
 */
int service_parse(json_t *in, const char *name, json_t **out, struct err *e);

/*
 * Expands service `name` at `version`, whose normalised definition is `def`
 * (service_parse's output), for the job spec `job` (an object naming the
 * service; read only): the job's params are checked against their types
 * (unknown, missing and mistyped ones refused, naming "params.NAME"),
 * defaults filled in, the command built from the template, and the job's
 * own fields laid over the service's defaults (requires and labels merged,
 * the job's values winning). A job of a service gives no command (refused,
 * naming "command"). *out (a new reference) is a job spec with "service",
 * "service_version" and the normalised "params", for spec_parse(). `path`
 * prefixes field paths ("" or NULL for none).
 */
int service_expand(const json_t *def, const char *name, int version, json_t *job, const char *path,
                   json_t **out, struct err *e);

/* "input" or "output" when `name` is a port the definition declares, else NULL. */
const char *service_port_type(const json_t *def, const char *name);

/*
 * Where a job's expansion put each of its ports that has a value (`values`: the expanded
 * spec's normalised "params"), for a workflow's connections (job/workflow.h):
 * {PORT: {"type": "input"|"output", "at": "arguments[I]"|"stdin"|"stdout"|"stderr"}}, I the
 * index in the spec's command.arguments; "at" is null for a declared port that has no value
 * (an optional one not given). A port used twice is found at its first place. A new reference.
 */
json_t *service_ports(const json_t *def, const json_t *values);

#endif
