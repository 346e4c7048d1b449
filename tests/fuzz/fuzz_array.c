/*
 * fuzz_array.c - job arrays as POST /v1/arrays takes them: the body's "array" field
 * (array_input_parse), the spec checked as task 0's (array_sample_spec, spec_parse), the
 * template with its placeholders put back (array_template), and tasks' jobs made from it
 * (array_task_job), as the server does when an agent claims them.
 *
 * Checks: refusals are ERR_INVALID naming a field under "array"; an accepted array has a
 * count in range or 1..ARRAY_MAX_TASKS items or an s3:// prefix; task ids are version 8 and
 * recognised as tasks'; a task's job carries its index in its env.
 */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "job/array.h"
#include "job/job.h"
#include "job/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        return 0;
    }
    struct array_input in;
    struct err e = ERR_INIT;
    int rc = array_input_parse(json_object_get(body, "array"), &in, &e);
    if (rc) {
        FUZZ_CHECK(rc == ERR_INVALID && e.msg[0] && !strncmp(e.field, "array", 5));
        json_decref(body);
        return 0;
    }
    switch (in.kind) {
    case ARRAY_COUNT:
        FUZZ_CHECK(in.count >= 1 && in.count <= ARRAY_MAX_TASKS);
        break;
    case ARRAY_ITEMS:
        FUZZ_CHECK(json_is_array(in.items) && json_array_size(in.items) >= 1 &&
                   json_array_size(in.items) <= ARRAY_MAX_TASKS);
        break;
    case ARRAY_OBJECTS:
        FUZZ_CHECK(in.prefix && !strncmp(in.prefix, "s3://", 5));
        break;
    default:
        FUZZ_CHECK(!"a kind array_input_parse does not give");
    }
    char *item0 = in.kind == ARRAY_ITEMS     ? array_item_text(json_array_get(in.items, 0))
                  : in.kind == ARRAY_OBJECTS ? strdup("s3://bucket/sample/object")
                                             : NULL;
    json_t *sample = array_sample_spec(body, "0", item0);
    FUZZ_CHECK(json_is_object(sample) && !json_object_get(sample, "array"));
    struct job_spec spec;
    rc = spec_parse(sample, "", &spec, &e);
    json_decref(sample);
    if (!rc) {
        array_template(spec.json, body);
        static const char array_id[] = "01936f0e-7c1a-7abc-8def-0123456789ab";
        int64_t indexes[] = {0, 1, 4095, 4096, ARRAY_MAX_TASKS - 1};
        for (size_t k = 0; k < sizeof(indexes) / sizeof(indexes[0]); k++) {
            int64_t i = indexes[k];
            char *item = NULL;
            if (in.kind == ARRAY_ITEMS) {
                if ((size_t)i >= json_array_size(in.items)) continue;
                item = array_item_text(json_array_get(in.items, (size_t)i));
            } else if (in.kind == ARRAY_COUNT && i >= in.count) {
                continue;
            }
            struct job job;
            array_task_job(&job, array_id, i, spec.json, item ? item : item0, NULL, "owner",
                           "tenant", 1700000000000, 1700000000000);
            FUZZ_CHECK(array_is_task_id(job.id));
            json_t *env = json_object_get(json_object_get(job.spec, "command"), "env");
            char idx[24];
            snprintf(idx, sizeof(idx), "%lld", (long long)i);
            FUZZ_CHECK(!strcmp(json_string_value(json_object_get(env, "DROVER_ARRAY_INDEX")), idx));
            job_release(&job);
            free(item);
        }
        spec_release(&spec);
    } else {
        FUZZ_CHECK(rc == ERR_INVALID && e.msg[0]);
    }
    /* the placeholders, filled with what a task may see */
    json_t *args = json_object_get(json_object_get(body, "command"), "arguments");
    size_t i;
    json_t *a;
    json_array_foreach(args, i, a)
    {
        const char *v = json_string_value(json_object_get(a, "value"));
        if (!v) continue;
        char *f = array_fill(v, "12", item0 ? item0 : "");
        FUZZ_CHECK(!f == !(strstr(v, "{{index}}") || strstr(v, "{{item}}")));
        free(f);
    }
    free(item0);
    json_decref(body);
    return 0;
}
