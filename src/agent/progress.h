/*
 * progress.h - a job's progress file ($DROVER_PROGRESS): lines "PERCENT [MESSAGE]".
 *
 * The program may append lines (`echo 42 >> "$DROVER_PROGRESS"`) or rewrite the
 * file (`echo "42 chunk 3 of 7" > "$DROVER_PROGRESS"`); either way the latest
 * valid line counts. The agent checks the file on a timer and when the job
 * ends: only the last PROGRESS_TAIL bytes are read, so a huge file costs
 * nothing, and the file must be a regular file (a FIFO or a device put there
 * by the job cannot block or flood the agent).
 */
#ifndef DROVER_AGENT_PROGRESS_H
#define DROVER_AGENT_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "job/protocol.h"

#define PROGRESS_TAIL 8192 /* bytes read from the end of the file */

/*
 * Parses one line without its newline: a decimal number 0..100 (an optional
 * '%' right after it), then optional whitespace and a message. Returns true
 * for a valid line, with *msg / *msg_len the message trimmed of surrounding
 * whitespace (length 0 when there is none); they point into `line`.
 */
bool progress_parse_line(const char *line, size_t n, double *percent, const char **msg,
                         size_t *msg_len);

/*
 * The last valid line of text[0..n): complete lines only (ending in '\n'),
 * and also the unterminated last one when `final`. When `partial_first`, the
 * first line may be the cut-off end of a longer one and is skipped. Returns
 * true and fills *percent and *message (newly allocated, valid UTF-8, at most
 * PROTO_PROGRESS_MESSAGE_MAX bytes (cut on a character), NULL when the line had none) when one was
 * found.
 */
bool progress_parse_last(const char *text, size_t n, bool partial_first, bool final,
                         double *percent, char **message);

struct progress_watch {
    char *path; /* owned */
    bool seen;  /* the file was looked at and (dev, ino, size, mtime) hold what was seen */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

/* Starts watching `path` (copied); nothing is read yet. */
void progress_watch_init(struct progress_watch *w, const char *path);
void progress_watch_release(struct progress_watch *w);

/*
 * Looks at the file. Returns true and fills *percent and *message (the caller
 * frees it; NULL when none) when the file changed since the last look and
 * holds a valid line; false when it is absent, unchanged, not a regular file
 * or holds no valid line. `final` also takes an unterminated last line.
 */
bool progress_watch_check(struct progress_watch *w, bool final, double *percent, char **message);

#endif
