/*
 * array.h - job arrays (docs/api.md "Arrays"): one spec, N tasks. No I/O.
 *
 * A submission {"array": {"count": N} | {"items": [...]} | {"objects": "s3://b/prefix"},
 * ...spec} is stored once (store.h: struct array_rec); task i becomes a job of its own only
 * when it is claimed for a lease, cancelled or retried (array_task_job). Each task's spec is
 * the array's with, in command.env, DROVER_ARRAY_ID, DROVER_ARRAY_INDEX and DROVER_ARRAY_ITEM
 * (the item: a string item as it is, any other item as compact JSON text; an object's URI),
 * and "{{index}}" and "{{item}}" replaced in every command.arguments[].value: so an input
 * argument {"type": "input", "value": "{{item}}"} of an objects array reads the task's
 * object.
 */
#ifndef DROVER_JOB_ARRAY_H
#define DROVER_JOB_ARRAY_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "common/uuid.h"
#include "job/job.h"

#define ARRAY_MAX_TASKS 1000000 /* count, items and objects */
#define ARRAY_MAX_ITEM 65536    /* bytes of one item's JSON text */

/* ARRAY_OUTPUTS: a workflow's fan-out node over the objects an upstream node wrote (docs/api.md
   "Workflows"); its items are {"uri", "sha256"} as JSON text, a task's item its URI. */
enum array_kind { ARRAY_COUNT, ARRAY_ITEMS, ARRAY_OBJECTS, ARRAY_OUTPUTS };
const char *array_kind_name(int kind);

/* The "array" field of a submission, checked. Borrowed from the request body. */
struct array_input {
    int kind;
    int64_t count;      /* ARRAY_COUNT: 1..ARRAY_MAX_TASKS */
    const json_t *items; /* ARRAY_ITEMS: 1..ARRAY_MAX_TASKS items */
    const char *prefix; /* ARRAY_OBJECTS: an s3:// prefix */
};
/* Checks `v` (the "array" field's value); ERR_INVALID naming "array.FIELD". */
int array_input_parse(const json_t *v, struct array_input *out, struct err *e);

/*
 * The spec of a submission with "array" taken out and "{{index}}"/"{{item}}" in
 * command.arguments[].value (and a service job's string params) replaced by `sample`'s (task
 * 0's) values, for spec_parse to check as a task's; a new reference. array_template() then
 * puts the placeholders back into the normalised spec from `body`'s command.arguments
 * (arguments keep their order through normalisation): for a service job, body is the service
 * expanded with the placeholders as given (service ports accept them, service.h).
 */
json_t *array_sample_spec(const json_t *body, const char *index, const char *item);
/* s with every "{{index}}" and "{{item}}" replaced (a new string); NULL when it has neither. */
char *array_fill(const char *s, const char *index, const char *item);
void array_template(json_t *normalised, const json_t *body);

/*
 * Checks what each item (`items`: a JSON array, each item's text as array_item_text) makes of the
 * arguments of the normalised template `spec` whose values hold placeholders: an input's or
 * output's URI must stay one, a parameter within its length. ERR_INVALID naming `field`,
 * with the index of the first item that fails when `indexed` ("array.items[3]").
 */
int array_items_check(const json_t *spec, const json_t *items, const char *field, bool indexed,
                      struct err *e);

/* The text a task sees of an item (DROVER_ARRAY_ITEM): a string as it is, else compact JSON. */
char *array_item_text(const json_t *item);

/* The id of task `index` (< 2^24) of array `array` (UUIDv8): the array's time prefix, the
   index, a hash of both; the same every time. */
void array_task_id(const char *array, int64_t index, char out[UUID_STR_LEN]);
/* Whether job id `id` is an array's task's (made by array_task_id: UUID version 8). */
bool array_is_task_id(const char *id);
/* The index a task's job id holds (array_task_id), or -1 for an id of no task. */
int64_t array_task_index(const char *id);
/* {"id", "index"}: the array (from command.env of its spec, DROVER_ARRAY_ID, which only the
   server sets) and the index (from its id) of the task whose job j is; JSON null for a job of
   no array. */
json_t *array_task_json(const struct job *j);

/*
 * A task's queued job from the array's normalised spec template `spec` (borrowed): its own
 * spec (env and placeholders as above; item: the item's text, NULL for a count array), id
 * array_task_id(), name "NAME[index]", owner and tenant, run_after `run_after`. With `sha256`
 * (or NULL), each input argument whose value is "{{item}}" is pinned to that object's sha256.
 */
void array_task_job(struct job *out, const char *array, int64_t index, const json_t *spec,
                    const char *item, const char *sha256, const char *owner, const char *tenant,
                    int64_t now_ms, int64_t run_after);

#endif
