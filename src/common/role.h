/* role.h - the roles a token carries (docs/api.md "Authentication"), as bits so routes
 * can allow several. */
#ifndef DROVER_ROLE_H
#define DROVER_ROLE_H

enum role { ROLE_AGENT = 1 << 0, ROLE_CLIENT = 1 << 1, ROLE_ADMIN = 1 << 2 };

/* "agent", "client", "admin" ("unknown" otherwise). */
const char *role_name(int role);
/* The role named, or -1. */
int role_parse(const char *name);

#endif
