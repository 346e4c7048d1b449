/*
 * trash.h - work folders removed off the event loop.
 *
 * A job may leave gigabytes in its work folder; removing them file by file
 * on the agent's loop would stop its heartbeats meanwhile. trash_put()
 * renames the folder into the agent's jobs folder under a hidden name (one
 * rename, at once) and a worker thread removes it; trash_stop() waits for
 * what is queued. Folders a crash left behind are removed at the next start
 * with the rest of the jobs folder.
 */
#ifndef DROVER_AGENT_TRASH_H
#define DROVER_AGENT_TRASH_H

struct trash;

/* A trash for folders under jobs_dir (borrowed; it must outlive the trash). */
struct trash *trash_new(const char *jobs_dir);
/* Removes `path` and all in it: at once when it is empty or absent, else in the background. */
void trash_put(struct trash *t, const char *path);
/* Removes what is queued, stops the worker and frees (NULL is fine). */
void trash_stop(struct trash *t);

#endif
