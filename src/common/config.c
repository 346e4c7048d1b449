/* config.c - see config.h. */
#include "config.h"

#include <stdlib.h>

#include "xalloc.h"

char *config_default_data_dir(void)
{
    const char *v = getenv("DROVER_DATA");
    if (v && *v)
        return xstrdup(v);
    v = getenv("XDG_DATA_HOME");
    if (v && *v)
        return xasprintf("%s/drover", v);
    v = getenv("HOME");
    if (v && *v)
        return xasprintf("%s/.local/share/drover", v);
    return xstrdup("drover-data");
}
