/* agent.h - an agent as the coordinator records it (see docs/protocol.md). */
#ifndef DROVER_AGENT_REC_H
#define DROVER_AGENT_REC_H

#include <jansson.h>
#include <stdint.h>

#include "common/uuid.h"

/* AGENT_FORGOTTEN is an event's only (store_agent_forget): no stored agent has it. */
enum agent_state { AGENT_UP, AGENT_DRAINING, AGENT_LOST, AGENT_LEFT, AGENT_FORGOTTEN, AGENT_NSTATES };

const char *agent_state_name(int state);

struct agent_rec {
    char id[UUID_STR_LEN];
    char *name;
    json_t *labels;  /* object string -> string */
    json_t *queues;  /* array of queue names */
    int slots;
    char *version;   /* may be NULL */
    int state;
    int64_t last_seen; /* ms since the epoch */
    int64_t registered_at;
    char *owner;    /* the name of the token that registered it first; NULL before it is known */
    char *instance; /* the instance that registered it last (protocol.md), or NULL */
    json_t *limits; /* how it enforces resource limits, as it registered, or NULL */
    unsigned runtimes; /* PROTO_RT_* bits it advertised (register, poll; both stored) */
};

void agent_rec_init(struct agent_rec *a);
void agent_rec_release(struct agent_rec *a);

#endif
