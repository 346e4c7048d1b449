/*
 * argv.h - from a normalised job spec (job/spec.h) to what execve needs:
 * argv, the environment, and the check that the spec needs no file staging.
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
 * has neither, or an argument is not a string parameter (staging is checked
 * separately, by agent_staging_check, which callers run first).
 */
int agent_argv_build(json_t *command, char ***argv, struct err *e);

/*
 * 0 when running `spec` (a whole normalised spec) needs no file staging;
 * otherwise ERR_INVALID with the message "file staging is not available in
 * this version yet (command.arguments[1]: 's3://…')" naming the first field
 * that needs it: an input or output argument, a non-empty command.input or
 * command.output, a stdin/stdout/stderr of type uri.
 */
int agent_staging_check(json_t *spec, struct err *e);

/*
 * The job's environment: `base` ("K=V" strings, e.g. environ) without the
 * agent's own secrets (DROVER_TOKEN), then the spec's `env` object (may be
 * NULL), then `extra` ("K=V", may be NULL); a later value of a name replaces
 * an earlier one in place.
 */
char **agent_env_build(char *const *base, json_t *env, char *const *extra);

/* Frees a NULL-terminated array of strings and the strings; NULL is fine. */
void agent_strv_free(char **v);

#endif
