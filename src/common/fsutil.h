/*
 * fsutil.h - small file system helpers shared by the server and the agent.
 */
#ifndef DROVER_FSUTIL_H
#define DROVER_FSUTIL_H

#include "common/err.h"

/* mkdir -p, mode 0700 for the folders it makes. ERR_IO naming the folder it could not make. */
int mkdir_p(const char *path, struct err *e);

#endif
