/*
 * argv.c - see argv.h. Pure functions over JSON: no I/O, unit-tested.
 */
#include "agent/argv.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

struct strv {
    char **v;
    size_t n, cap;
};

static void strv_push(struct strv *s, char *str)
{
    if (s->n + 2 > s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = str;
    s->v[s->n] = NULL;
}

void agent_strv_free(char **v)
{
    if (!v) return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

int agent_argv_build(json_t *command, char ***argv, struct err *e)
{
    struct strv s = {0};
    *argv = NULL;
    const char *shell = json_string_value(json_object_get(command, "shell"));
    const char *program = json_string_value(json_object_get(command, "program"));
    if (shell) {
        strv_push(&s, xstrdup("/bin/sh"));
        strv_push(&s, xstrdup("-c"));
        strv_push(&s, xstrdup(shell));
        *argv = s.v;
        return 0;
    }
    if (!program || !*program)
        return err_field(e, ERR_INVALID, "command.program",
                         "command.program or command.shell is required");
    strv_push(&s, xstrdup(program));
    json_t *args = json_object_get(command, "arguments");
    size_t i;
    json_t *arg;
    json_array_foreach(args, i, arg)
    {
        const char *type = json_string_value(json_object_get(arg, "type"));
        json_t *name = json_object_get(arg, "name");
        const char *value = json_string_value(json_object_get(arg, "value"));
        if (!type || strcmp(type, "parameter") || !value ||
            (name && !json_is_null(name) && !json_is_string(name))) {
            char field[64];
            snprintf(field, sizeof(field), "command.arguments[%zu]", i);
            agent_strv_free(s.v);
            return err_field(e, ERR_INVALID, field, "%s must be a parameter with a string value",
                             field);
        }
        if (json_is_string(name)) strv_push(&s, xstrdup(json_string_value(name)));
        strv_push(&s, xstrdup(value));
    }
    *argv = s.v;
    return 0;
}

/* Sets "name=value" in s: in place of the first entry for the same name, and no other. */
static void env_set(struct strv *s, char *entry)
{
    size_t klen = strcspn(entry, "="), w = 0;
    bool placed = false;
    for (size_t i = 0; i < s->n; i++) {
        if (strncmp(s->v[i], entry, klen) || s->v[i][klen] != '=') {
            s->v[w++] = s->v[i];
            continue;
        }
        free(s->v[i]);
        if (!placed) s->v[w++] = entry;
        placed = true;
    }
    s->n = w;
    if (s->v) s->v[w] = NULL;
    if (!placed) strv_push(s, entry);
}

/* The agent's own variables, that its jobs do not inherit: its token, and systemd's socket for
   the agent's notifications (a job's message there would be taken as the agent's). */
static bool env_private(const char *entry)
{
    static const char *const private[] = {"DROVER_TOKEN=", "NOTIFY_SOCKET="};
    for (size_t i = 0; i < sizeof(private) / sizeof(private[0]); i++)
        if (!strncmp(entry, private[i], strlen(private[i])))
            return true;
    return false;
}

char **agent_env_build(char *const *base, json_t *env, char *const *extra)
{
    struct strv s = {0};
    /* as exec passes an environment on (not compared with each other: that was most of the
       work, for ~50 variables); what is set below replaces every entry of its name */
    for (char *const *p = base; p && *p; p++)
        if (strchr(*p, '=') && !env_private(*p)) strv_push(&s, xstrdup(*p));
    const char *key;
    json_t *v;
    json_object_foreach(env, key, v) if (json_is_string(v))
        env_set(&s, xasprintf("%s=%s", key, json_string_value(v)));
    for (char *const *p = extra; p && *p; p++)
        env_set(&s, xstrdup(*p));
    if (!s.v) s.v = xcalloc(1, sizeof(*s.v)); /* an empty environment is still an array */
    return s.v;
}
