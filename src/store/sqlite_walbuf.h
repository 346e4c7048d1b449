/*
 * sqlite_walbuf.h - a SQLite VFS that writes a transaction's WAL frames in one write.
 *
 * SQLite writes each WAL frame with two writes, its 24-byte header and its page: a group
 * commit of ~13 frames made ~26 pwrite calls, a third of the writer thread's time on single
 * submits. This VFS ("drover-walbuf") is the default one with the WAL file's writes gathered
 * in a buffer and written at once when the transaction's commit frame has been written (and
 * before any other call that needs them in the file: read, sync, size, truncate, close), so
 * that a commit is in the file, or has failed with SQLite's error, before SQLite makes it
 * visible to readers. The database file's calls pass through (its memory barrier, which comes
 * before a commit is made visible, also sends what its WAL may still hold: a backstop);
 * every other file is the default VFS's own.
 */
#ifndef DROVER_STORE_SQLITE_WALBUF_H
#define DROVER_STORE_SQLITE_WALBUF_H

#include <sqlite3.h>
#include <stdint.h>

#define SQLITE_WALBUF_VFS "drover-walbuf"

/* Registers the VFS under SQLITE_WALBUF_VFS (not as the default), the first call only: SQLITE_OK
   or SQLite's error. Before a connection names it. */
int sqlite_walbuf_register(void);

/* Since the start: the commits sent when their commit frame was written, and the times the
   backstop (the database file's barrier) found WAL bytes still gathered, which a SQLite
   that writes its frames as wal.c does today never leaves (tests check it stays 0). */
void sqlite_walbuf_counts(uint64_t *commits, uint64_t *backstops);

#endif
