/* agent.c - see agent.h. */
#include "job/agent.h"

#include <stdlib.h>
#include <string.h>

static const char *const names[AGENT_NSTATES] = {"up", "draining", "lost", "left", "forgotten"};

const char *agent_state_name(int state)
{
    return state >= 0 && state < AGENT_NSTATES ? names[state] : "unknown";
}

void agent_rec_init(struct agent_rec *a)
{
    memset(a, 0, sizeof(*a));
}

void agent_rec_release(struct agent_rec *a)
{
    free(a->name);
    free(a->version);
    free(a->owner);
    free(a->instance);
    json_decref(a->labels);
    json_decref(a->queues);
    json_decref(a->limits);
    agent_rec_init(a);
}
