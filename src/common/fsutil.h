/*
 * fsutil.h - small file system helpers shared by the server and the agent.
 */
#ifndef DROVER_FSUTIL_H
#define DROVER_FSUTIL_H

#include <stdbool.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "common/err.h"

/* mkdir -p, mode 0700 for the folders it makes. ERR_IO naming the folder it could not make. */
int mkdir_p(const char *path, struct err *e);

/*
 * Takes the advisory lock (flock LOCK_EX|LOCK_NB) of the file `path` (created
 * 0600 when absent) and writes our pid into it; the lock lasts as long as the
 * descriptor *fd (close-on-exec) stays open. Returns 0; ERR_CONFLICT when
 * another process holds it, *holder then being that process's pid as the file
 * says (0 when it says none); ERR_IO naming the file when it cannot be opened.
 * On failure *fd is -1.
 */
int lock_pid_file(const char *path, int *fd, pid_t *holder, struct err *e);

/*
 * Reads a secret (a token) kept alone in the file `path`, as ssh reads a key: the file
 * must be a regular file of at most 4 KiB that neither its group nor others may access
 * (mode & 077 == 0). Trailing white space (newlines, "\r\n", blank lines, spaces, tabs) is
 * stripped. *out is the caller's. ERR_IO when it cannot be read; ERR_INVALID when its mode
 * is too open (the message names the file and its mode), it is empty or too large, or what
 * is left holds a control character (a token cannot: a header's value). Every message names
 * the file.
 */
int fs_read_secret(const char *path, char **out, struct err *e);

/*
 * Writes `secret` and a newline to `path` atomically (a temporary file,
 * fsync, rename), readable by its owner only (0600). ERR_IO naming the file.
 */
int fs_write_secret(const char *path, const char *secret, struct err *e);

/*
 * Raises the soft descriptor limit (RLIMIT_NOFILE) to the hard one, as a server with one
 * descriptor per connection needs, and remembers the limit the process had before for the
 * processes it starts (fd_limit_inherited). Returns the limit now (capped at 2^30).
 */
long fd_limit_raise(void);

/*
 * The descriptor limit a started program should get when it is not the process's own: true
 * with *rl, the soft and hard limits the process had before fd_limit_raise(); false when it
 * never raised them. Programs that use select() break with a soft limit above 1024, as
 * systemd's documentation warns.
 */
bool fd_limit_before_raise(struct rlimit *rl);

#endif
