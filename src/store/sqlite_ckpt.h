/*
 * sqlite_ckpt.h - a SQLite WAL checkpointed on a thread of its own.
 *
 * By default SQLite checkpoints in the commit that grew the WAL past 1,000
 * pages: the group-commit writer then copied pages into the database file
 * (and, with synchronous FULL or NORMAL, synced it) instead of committing the
 * next batch. sqlite_ckpt_start() takes that over for a connection: after a
 * commit that leaves the WAL at 4,000 pages or more it wakes a thread that runs
 * a PASSIVE checkpoint on a connection of its own (beside the writer, which it
 * never blocks). Should that thread fall far behind (16,000 pages), the
 * committing connection checkpoints itself, as before.
 */
#ifndef DROVER_STORE_SQLITE_CKPT_H
#define DROVER_STORE_SQLITE_CKPT_H

#include <sqlite3.h>

#include "common/err.h"

struct sqlite_ckpt;

/*
 * Starts the checkpointer of db, the store file at path; `pragmas` (the store's
 * synchronous setting, say) run on its own connection first. NULL after setting e.
 */
struct sqlite_ckpt *sqlite_ckpt_start(sqlite3 *db, const char *path, const char *pragmas,
                                      struct err *e);
/* Stops the thread (after a checkpoint it is running) and closes its connection (NULL is
   fine). The connection it served must not commit any more. */
void sqlite_ckpt_stop(struct sqlite_ckpt *c, sqlite3 *db);

#endif
