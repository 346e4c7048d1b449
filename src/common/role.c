/* role.c - see role.h. */
#include "common/role.h"

#include <string.h>

#include "common/common.h"

static const char *const names[] = {"agent", "client", "admin"};

const char *role_name(int role)
{
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (role == 1 << i)
            return names[i];
    return "unknown";
}

int role_parse(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (!strcmp(name, names[i]))
            return 1 << i;
    return -1;
}
