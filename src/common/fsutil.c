/*
 * fsutil.c - see fsutil.h.
 */
#include "common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
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

int fs_read_secret(const char *path, char **out, struct err *e)
{
    char text[SECRET_MAX + 2];
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
    if (len > 0 && text[len - 1] == '\n') len--;
    if (len > 0 && text[len - 1] == '\r') len--;
    if (len > SECRET_MAX) {
        rc = err_set(e, ERR_INVALID, "'%s' is larger than %d bytes", path, SECRET_MAX);
    } else if (len == 0) {
        rc = err_set(e, ERR_INVALID, "'%s' is empty", path);
    } else if (memchr(text, '\0', len)) {
        rc = err_set(e, ERR_INVALID, "'%s' holds a NUL byte", path);
    } else {
        *out = xstrndup(text, len);
    }
out:
    close(fd);
    explicit_bzero(text, sizeof(text));
    return rc;
}
