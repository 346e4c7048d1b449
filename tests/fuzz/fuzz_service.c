/*
 * fuzz_service.c - service hub definitions (PUT /v1/services/{name}) and the jobs that use
 * them: input {"service": DEFINITION, "job": JOB}. service_parse on the definition; when it
 * is accepted, service_expand on the job, spec_parse on the expansion, service_ports on its
 * params, as the submit path does.
 *
 * Checks: refusals are ERR_INVALID with a message; a normalised definition is accepted again
 * as itself; neither input is modified; an expansion names the service and its version.
 */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "job/service.h"
#include "job/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *in = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(in)) {
        json_decref(in);
        return 0;
    }
    json_t *given = json_object_get(in, "service"), *job = json_object_get(in, "job");
    json_t *copy = json_deep_copy(in);
    json_t *def = NULL;
    struct err e = ERR_INIT;
    int rc = service_parse(given, "svc", &def, &e);
    FUZZ_CHECK(json_equal(copy, in));
    if (rc) {
        FUZZ_CHECK(rc == ERR_INVALID && e.msg[0]);
        goto out;
    }
    json_t *again = NULL;
    struct err e2 = ERR_INIT;
    rc = service_parse(def, "svc", &again, &e2);
    if (rc) fprintf(stderr, "normalised definition refused: %s (%s)\n", e2.msg, e2.field);
    FUZZ_CHECK(rc == 0 && json_equal(again, def));
    json_decref(again);
    if (json_is_object(job)) {
        json_t *expanded = NULL;
        struct err e3 = ERR_INIT;
        rc = service_expand(def, "svc", 3, job, "[0]", &expanded, &e3);
        FUZZ_CHECK(json_equal(copy, in));
        if (rc) {
            FUZZ_CHECK(rc == ERR_INVALID && e3.msg[0]);
        } else {
            FUZZ_CHECK(!strcmp(json_string_value(json_object_get(expanded, "service")), "svc"));
            struct job_spec spec;
            struct err e4 = ERR_INIT;
            if (!spec_parse(expanded, "[0]", &spec, &e4)) {
                json_t *ports = service_ports(def, json_object_get(spec.json, "params"));
                FUZZ_CHECK(json_is_object(ports));
                json_decref(ports);
                spec_release(&spec);
            }
            json_decref(expanded);
        }
    }
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(job, "params"), k, v)(void) service_port_type(def, k);
out:
    json_decref(def);
    json_decref(copy);
    json_decref(in);
    return 0;
}
