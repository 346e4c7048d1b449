/*
 * fsutil.c - see fsutil.h.
 */
#include "common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

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

int lock_pid_file(const char *path, int *fd_out, pid_t *holder, struct err *e)
{
    *fd_out = -1;
    *holder = 0;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return err_set(e, ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    int rc;
    do
        rc = flock(fd, LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int saved = errno;
        char text[32] = "";
        ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
        close(fd);
        if (saved != EWOULDBLOCK)
            return err_set(e, ERR_IO, "cannot lock '%s': %s", path, strerror(saved));
        text[n > 0 ? n : 0] = '\0';
        long pid = strtol(text, NULL, 10);
        *holder = pid > 0 ? (pid_t)pid : 0;
        return err_set(e, ERR_CONFLICT, "'%s' is locked by another process", path);
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        int saved = errno;
        close(fd);
        return err_set(e, ERR_IO, "cannot write '%s': %s", path, strerror(saved));
    }
    *fd_out = fd;
    return 0;
}
