/*
 * argv.h - from a normalised job spec (job/spec.h) to what execve needs:
 * argv and the environment. (Input and output arguments are turned into
 * parameters holding local paths by the staging plan first: stage.h.)
 *
 * No shell is involved unless the spec has `command.shell`: user values go
 * into argv elements as they are, so they cannot inject commands.
 * Arrays returned are NULL-terminated, newly allocated, and freed with
 * agent_strv_free().
 */
#ifndef DROVER_AGENT_ARGV_H
#define DROVER_AGENT_ARGV_H

#include <jansson.h>

#include "common/err.h"

/*
 * argv for `command` (the spec's "command" object): `program`, then for each
 * argument its `name` (when not null) then its `value`; or /bin/sh -c SHELL
 * for `shell`. Fails with ERR_INVALID (e says which field) when the command
 * has neither, or an argument is not a string parameter (stage_plan turns
 * input and output arguments into parameters first).
 */
int agent_argv_build(json_t *command, char ***argv, struct err *e);

/*
 * The job's environment: `base` ("K=V" strings, e.g. environ) without the
 * agent's own variables (DROVER_TOKEN, NOTIFY_SOCKET), then the spec's `env` object (may be
 * NULL), then `extra` ("K=V", may be NULL); a value from `env` or `extra`
 * replaces every earlier entry of its name (in place of the first).
 */
char **agent_env_build(char *const *base, json_t *env, char *const *extra);

/* Frees a NULL-terminated array of strings and the strings; NULL is fine. */
void agent_strv_free(char **v);

#endif
