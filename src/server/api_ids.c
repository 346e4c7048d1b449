/*
 * api_ids.c - what a route's {id} names: a whole id, or a unique prefix of one (as git
 * takes a commit's), of a job, workflow, array or trigger the caller may see.
 */
#include <string.h>

#include "common/buf.h"
#include "server/server.h"

#define ID_PREFIX_MIN 6   /* characters of an id prefix */
#define AMBIGUOUS_SHOWN 5 /* matching ids named when a prefix is ambiguous */

static const char *const kind_names[STORE_NKINDS] = {
    [STORE_JOB] = "job",
    [STORE_WORKFLOW] = "workflow",
    [STORE_ARRAY] = "array",
    [STORE_TRIGGER] = "trigger",
};

const char *api_caller_owner(const struct http_req *r)
{
    return r->role == ROLE_ADMIN ? NULL : r->token_name;
}

int api_resolve_id(struct http_req *r, enum store_kind kind, const char *given,
                   char id[UUID_STR_LEN], struct err *e)
{
    const char *what = kind_names[kind];
    size_t n = strlen(given);
    if (n < ID_PREFIX_MIN)
        return err_field(e, ERR_INVALID, "id",
                         "id must be a %s id or a unique prefix of one (at least %d "
                         "characters), not '%s'",
                         what, ID_PREFIX_MIN, given);
    char prefix[UUID_STR_LEN];
    bool ok = n < sizeof(prefix);
    for (size_t i = 0; ok && i < n; i++) {
        char ch = (char)(given[i] >= 'A' && given[i] <= 'F' ? given[i] - 'A' + 'a' : given[i]);
        ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || ch == '-';
        prefix[i] = ch;
    }
    if (!ok) /* not hex: nothing has such an id */
        return err_set(e, ERR_NOTFOUND, "%s '%s' not found", what, given);
    prefix[n] = '\0';
    char ids[AMBIGUOUS_SHOWN + 1][UUID_STR_LEN];
    size_t found;
    struct store *reads = ((struct server *)r->app)->reads;
    int rc = store_id_match(reads, kind, prefix, api_caller_owner(r), ids, ARRAY_SIZE(ids),
                            &found, e);
    if (rc) return rc;
    if (!found) return err_set(e, ERR_NOTFOUND, "%s '%s' not found", what, given);
    if (found == 1) {
        memcpy(id, ids[0], UUID_STR_LEN);
        return 0;
    }
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < found && i < AMBIGUOUS_SHOWN; i++) {
        buf_adds(&b, i ? ", " : "");
        buf_adds(&b, ids[i]);
    }
    rc = err_field(e, ERR_AMBIGUOUS, "id", "id prefix '%s' matches several %ss: %s%s", given,
                   what, b.data, found > AMBIGUOUS_SHOWN ? ", ..." : "");
    buf_release(&b);
    return rc;
}
