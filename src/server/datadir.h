/*
 * datadir.h - the server's data folder (--data): private to its user, and
 * used by one server at a time.
 */
#ifndef DROVER_SERVER_DATADIR_H
#define DROVER_SERVER_DATADIR_H

#include "common/err.h"

#define DATADIR_LOCK_FILE "lock"

/*
 * Readies the data folder `dir` before anything is written in it:
 *   - sets the process's umask to 077, so that every file the server makes
 *     (the database, its -wal/-shm files, tokens, objects) is its user's only;
 *   - creates the folder (0700) if it is absent;
 *   - takes DIR/lock (flock, our pid inside) for as long as *lock_fd is open:
 *     a second server on the same folder would mark the first one's agents
 *     lost and race it on the store;
 *   - warns (log) when the folder is open to its group or to others, and
 *     makes the files directly in it that are (from an older version) 0600.
 * Returns 0; ERR_CONFLICT "the data folder 'D' is in use by another drover
 * server (pid N)"; ERR_IO naming what could not be made. *lock_fd is -1 on
 * failure; close it to let the folder go.
 */
int datadir_open(const char *dir, int *lock_fd, struct err *e);

#endif
