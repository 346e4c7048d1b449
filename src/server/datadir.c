/*
 * datadir.c - see datadir.h. One server per data folder, and nothing in it
 * readable by other users.
 */
#include "server/datadir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/log.h"
#include "common/xalloc.h"

/* Files directly in `dir` that others may read (left by an older version) become 0600. */
static void tighten_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        struct stat st;
        if (fstatat(dirfd(d), ent->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            !(st.st_mode & 077))
            continue;
        if (fchmodat(dirfd(d), ent->d_name, 0600, 0) == 0)
            log_warn("'%s/%s' was open to other users (mode %04o); it is now 0600", dir,
                     ent->d_name, (unsigned)(st.st_mode & 07777));
        else
            log_warn("'%s/%s' is open to other users (mode %04o) and cannot be made 0600: %s", dir,
                     ent->d_name, (unsigned)(st.st_mode & 07777), strerror(errno));
    }
    closedir(d);
}

int datadir_open(const char *dir, int *lock_fd, struct err *e)
{
    int rc;
    *lock_fd = -1;
    umask(077); /* before the first file is made: the store holds the presign secret */
    if ((rc = mkdir_p(dir, e))) return rc;

    char *path = xasprintf("%s/%s", dir, DATADIR_LOCK_FILE);
    pid_t holder = 0;
    struct err le = ERR_INIT;
    rc = lock_pid_file(path, lock_fd, &holder, &le);
    free(path);
    if (rc == ERR_CONFLICT && holder > 0)
        return err_set(e, rc, "the data folder '%s' is in use by another drover server (pid %ld)",
                       dir, (long)holder);
    if (rc == ERR_CONFLICT)
        return err_set(e, rc, "the data folder '%s' is in use by another drover server", dir);
    if (rc) return err_set(e, rc, "%s", le.msg);

    struct stat st;
    if (stat(dir, &st) == 0 && (st.st_mode & 077))
        log_warn("the data folder '%s' is open to other users (mode %04o): it holds the store, "
                 "tokens and secrets; `chmod 700 %s`",
                 dir, (unsigned)(st.st_mode & 07777), dir);
    tighten_files(dir);
    return 0;
}
