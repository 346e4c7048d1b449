/*
 * progress.c - see progress.h. Reading is done with O_NONBLOCK | O_NOFOLLOW
 * and checked with fstat, so whatever the job puts at the path the agent
 * neither follows a link out of the work folder nor blocks.
 */
#include "agent/progress.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/utf8.h"
#include "common/buf.h"
#include "common/xalloc.h"

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

bool progress_parse_line(const char *line, size_t n, double *percent, const char **msg,
                         size_t *msg_len)
{
    size_t i = 0;
    while (i < n && is_space(line[i]))
        i++;
    size_t start = i;
    bool digits = false, dot = false;
    for (; i < n; i++) {
        if (line[i] >= '0' && line[i] <= '9')
            digits = true;
        else if (line[i] == '.' && !dot)
            dot = true;
        else
            break;
    }
    if (!digits || i - start > 32) return false;
    char num[40];
    memcpy(num, line + start, i - start);
    num[i - start] = '\0';
    char *end;
    double x = strtod(num, &end);
    if (*end || !isfinite(x) || x < 0 || x > PROTO_PERCENT_MAX) return false;
    if (i < n && line[i] == '%') i++;
    if (i < n && !is_space(line[i])) return false; /* "42abc" is not a progress line */
    while (i < n && is_space(line[i]))
        i++;
    size_t e = n;
    while (e > i && is_space(line[e - 1]))
        e--;
    *percent = x;
    *msg = line + i;
    *msg_len = e - i;
    return true;
}

bool progress_parse_last(const char *text, size_t n, bool partial_first, bool final,
                         double *percent, char **message)
{
    const char *best = NULL;
    bool found = false;
    size_t best_len = 0;
    double best_pct = 0;
    size_t pos = 0;
    if (partial_first) {
        const char *nl = memchr(text, '\n', n);
        if (!nl) return false;
        pos = (size_t)(nl - text) + 1;
    }
    while (pos < n) {
        const char *nl = memchr(text + pos, '\n', n - pos);
        if (!nl && !final) break;
        size_t len = nl ? (size_t)(nl - (text + pos)) : n - pos;
        double pct;
        const char *msg;
        size_t msg_len;
        if (progress_parse_line(text + pos, len, &pct, &msg, &msg_len)) {
            best = msg;
            best_len = msg_len;
            best_pct = pct;
            found = true;
        }
        pos += len + 1;
    }
    if (!found) return false;
    *percent = best_pct;
    *message = NULL;
    if (best_len > 0) {
        struct buf b = BUF_INIT;
        utf8_sanitize(&b, best, best_len, true);
        size_t cut = utf8_cut(b.data, b.len, PROTO_PROGRESS_MESSAGE_MAX);
        b.data[cut] = '\0';
        b.len = cut;
        *message = buf_detach(&b);
    }
    return true;
}

void progress_watch_init(struct progress_watch *w, const char *path)
{
    memset(w, 0, sizeof(*w));
    w->path = xstrdup(path);
}

void progress_watch_release(struct progress_watch *w)
{
    free(w->path);
    memset(w, 0, sizeof(*w));
}

bool progress_watch_check(struct progress_watch *w, bool final, double *percent, char **message)
{
    int fd = open(w->path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st;
    bool found = false;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) goto out;
    if (w->seen && st.st_dev == w->dev && st.st_ino == w->ino && st.st_size == w->size &&
        st.st_mtim.tv_sec == w->mtime.tv_sec && st.st_mtim.tv_nsec == w->mtime.tv_nsec && !final)
        goto out;
    w->seen = true;
    w->dev = st.st_dev;
    w->ino = st.st_ino;
    w->size = st.st_size;
    w->mtime = st.st_mtim;
    off_t from = st.st_size > PROGRESS_TAIL ? st.st_size - PROGRESS_TAIL : 0;
    char text[PROGRESS_TAIL];
    ssize_t n = pread(fd, text, sizeof(text), from);
    if (n <= 0) goto out;
    found = progress_parse_last(text, (size_t)n, from > 0, final, percent, message);
out:
    close(fd);
    return found;
}
