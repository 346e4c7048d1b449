/*
 * fuzz_agent.c - what the server checks of an agent's bodies (docs/protocol.md): a body
 * with "reports" goes through api_agents_check_report report by report, as POST
 * /v1/agents/{id}/reports does; any other object is a register body
 * (api_agents_parse_register).
 *
 * Checks: refusals are ERR_INVALID naming a field; a report that passes has a known type, a
 * job id string and an attempt >= 1; a registration that passes has a valid name, slots in
 * range, at least one queue and one runtime, and the token as its owner.
 */
#include <jansson.h>
#include <string.h>

#include "fuzz.h"
#include "job/agent.h"
#include "job/protocol.h"
#include "server/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *b = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!b) return 0;
    struct err e = ERR_INIT;
    json_t *reps = json_object_get(b, "reports");
    if (json_is_array(reps)) {
        size_t i;
        json_t *it;
        json_array_foreach(reps, i, it)
        {
            enum proto_report type;
            struct err re = ERR_INIT;
            int rc = api_agents_check_report(it, i, &type, &re);
            if (rc) {
                FUZZ_CHECK(rc == ERR_INVALID && re.msg[0] && re.field[0]);
                continue;
            }
            FUZZ_CHECK(type >= 0 && type < PROTO_REPORT_COUNT);
            FUZZ_CHECK(
                !strcmp(proto_report_name(type), json_string_value(json_object_get(it, "type"))));
            FUZZ_CHECK(json_is_string(json_object_get(it, "job")));
            json_int_t att = json_integer_value(json_object_get(it, "attempt"));
            FUZZ_CHECK(att >= 1 && att <= PROTO_ATTEMPT_MAX);
        }
    } else {
        struct agent_rec a;
        int rc = api_agents_parse_register(b, "token-name", &a, &e);
        if (rc) {
            FUZZ_CHECK(rc == ERR_INVALID && e.msg[0]);
        } else {
            FUZZ_CHECK(a.name && strlen(a.name) >= 1 && strlen(a.name) <= PROTO_NAME_MAX);
            FUZZ_CHECK(a.slots >= 1 && a.slots <= PROTO_SLOTS_MAX);
            FUZZ_CHECK(json_array_size(a.queues) >= 1);
            FUZZ_CHECK(a.runtimes && !(a.runtimes & ~PROTO_RT_ALL));
            FUZZ_CHECK(!strcmp(a.owner, "token-name"));
            agent_rec_release(&a);
        }
    }
    json_decref(b);
    return 0;
}
