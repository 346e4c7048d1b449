/*
 * tenants.h - quotas and fair share between tenants (docs/operations.md,
 * "Quotas and fair share").
 *
 * A token belongs to a tenant (`drover token create NAME --tenant T`; by
 * default the tenant named as the token), and a job to its owner token's
 * tenant, written with the job. Each tenant has limits: max_running (jobs
 * leased or running at a time: the scheduler gives it no more, sched.h) and
 * max_queued (jobs waiting: a submission that would pass it is refused with
 * 429 "quota", naming the limit), each its own (PUT /v1/tenants/{name},
 * `drover tenant set`) or else the server's --tenant-max-running /
 * --tenant-max-queued (0: none), and a weight for its fair share of a queue.
 *
 * The limits live in the store (table tenants) and, for the loop, here and
 * in the scheduler. A token's tenant is read from the store and remembered
 * for TENANT_CACHE_TTL_MS.
 */
#ifndef DROVER_SERVER_TENANTS_H
#define DROVER_SERVER_TENANTS_H

#include <stdint.h>

#include "common/err.h"

struct server;
struct tenants;

#define TENANT_CACHE_TTL_MS 5000
#define TENANT_LIMIT_MAX 10000000 /* max_running, max_queued */
#define TENANT_WEIGHT_MAX 1000

/* Reads the tenants' limits from the store and gives them to the scheduler. */
int tenants_open(struct server *s, int max_running, int max_queued, struct err *e);
/* Reads the limits again, as another server sharing the store set them (sync.c). */
int tenants_reload(struct server *s, struct err *e);
void tenants_free(struct tenants *t);
/* The tenant of token `name` into out (72 bytes). ERR_NOTFOUND for an unknown token. */
int tenants_of_token(struct server *s, const char *name, char *out, size_t n, struct err *e);
/* The tenant's max_queued (0: none). */
int tenants_max_queued(struct server *s, const char *tenant);
/* A tenant name is [A-Za-z0-9._-]{1,64}, as a token's. */
bool tenants_name_valid(const char *s);

#endif
