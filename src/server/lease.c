/* lease.c - see lease.h. */
#include "server/lease.h"

int64_t lease_deadline(const struct job *j, int64_t now_ms, int64_t grace_ms)
{
    json_t *t = json_object_get(j->spec, "timeout_s");
    if (!json_is_number(t) || json_number_value(t) <= 0) return 0;
    return now_ms + (int64_t)(json_number_value(t) * 1000.0) + grace_ms;
}
