/*
 * fsutil.c - see fsutil.h.
 */
#include "common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/xalloc.h"

#define SECRET_MAX 4096

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

int fs_read_secret(const char *path, char **out, struct err *e)
{
    char text[SECRET_MAX + 257]; /* the secret, then up to 256 bytes of white space */
    struct stat st;
    size_t len = 0;
    int rc = 0;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return err_set(e, ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        rc = err_set(e, ERR_IO, "cannot read '%s': %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = err_set(e, ERR_INVALID, "'%s' is not a regular file", path);
        goto out;
    }
    if (st.st_mode & 077) {
        rc = err_set(e, ERR_INVALID,
                     "'%s' has mode %04o: a secret's file must not be accessible by its group "
                     "or others (chmod 600 '%s')",
                     path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    while (len < sizeof(text) - 1) {
        ssize_t n = read(fd, text + len, sizeof(text) - 1 - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = err_set(e, ERR_IO, "cannot read '%s': %s", path, strerror(errno));
            goto out;
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    /* what editors and `echo` leave after it: blank lines, CRLF, trailing blanks */
    bool whole = len < sizeof(text) - 1; /* else it goes on: too large, whatever it ends with */
    while (whole && len > 0 && text[len - 1] && strchr(" \t\r\n", text[len - 1]))
        len--;
    size_t ctrl = 0; /* the first control character, +1 */
    for (size_t i = 0; i < len && i < SECRET_MAX && !ctrl; i++)
        if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f) ctrl = i + 1;
    if (len > SECRET_MAX) {
        rc = err_set(e, ERR_INVALID, "'%s' is larger than %d bytes", path, SECRET_MAX);
    } else if (len == 0) {
        rc = err_set(e, ERR_INVALID, "'%s' is empty", path);
    } else if (memchr(text, '\0', len)) {
        rc = err_set(e, ERR_INVALID, "'%s' holds a NUL byte", path);
    } else if (ctrl) {
        rc = err_set(e, ERR_INVALID,
                     "'%s' holds a control character (byte %zu, 0x%02x): a secret's file holds "
                     "it alone, on one line",
                     path, ctrl, (unsigned)(unsigned char)text[ctrl - 1]);
    } else {
        *out = xstrndup(text, len);
    }
out:
    close(fd);
    explicit_bzero(text, sizeof(text));
    return rc;
}

int fs_write_secret(const char *path, const char *secret, struct err *e)
{
    char *tmp = xasprintf("%s.tmp", path);
    int rc = 0;
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = err_set(e, ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
        goto out;
    }
    size_t len = strlen(secret);
    if (write(fd, secret, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
        rc = err_set(e, ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        rc = err_set(e, ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        unlink(tmp);
    }
out:
    free(tmp);
    return rc;
}

/* The limits the process had before fd_limit_raise() first ran. */
static struct rlimit fd_limit_before;
static bool fd_limit_raised;

long fd_limit_raise(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return 1024;
    if (!fd_limit_raised) {
        fd_limit_before = rl;
        fd_limit_raised = true;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl)) /* e.g. a hard limit over the kernel's nr_open */
            rl.rlim_cur = was;
    }
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1 << 30 ? 1 << 30 : (long)rl.rlim_cur;
}

bool fd_limit_before_raise(struct rlimit *rl)
{
    if (fd_limit_raised) *rl = fd_limit_before;
    return fd_limit_raised;
}
