/*
 * fsutil.c - see fsutil.h.
 */
#include "common/fsutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/xalloc.h"

int mkdir_p(const char *path, struct err *e)
{
    char *p = xstrdup(path);
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rc = err_set(e, ERR_IO, "cannot create folder '%s': %s", p, strerror(errno));
            break;
        }
        *s = saved;
        if (!saved) break;
    }
    free(p);
    return rc;
}
