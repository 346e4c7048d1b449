/* workflow.c - see workflow.h. */
#include "job/workflow.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/xalloc.h"
#include "job/array.h"

#define NODE_NAME_MAX 64
#define PORT_NAME_MAX 128

static bool node_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > NODE_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

long workflow_node(const struct workflow *w, const char *name)
{
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->nodes[i].name, name)) return (long)i;
    return -1;
}

/*
 * The port of `type` ("input" or "output") of a spec (raw or normalised): at `at` when given
 * (a service's port, service_ports(): "arguments[I]" or a stream), else the
 * command.arguments entry of that type named `port`.
 */
static json_t *port_arg(const json_t *spec, const char *type, const char *port, const char *at)
{
    json_t *cmd = json_object_get(spec, "command");
    if (at) {
        json_t *a = NULL;
        size_t i;
        char end;
        if (sscanf(at, "arguments[%zu%c", &i, &end) == 2 && end == ']') {
            a = json_array_get(json_object_get(cmd, "arguments"), i);
        } else if (!strcmp(at, !strcmp(type, "input") ? "stdin" : "stdout") ||
                   (!strcmp(type, "output") && !strcmp(at, "stderr"))) {
            a = json_object_get(cmd, at);
            const char *t = json_string_value(json_object_get(a, "type"));
            return t && !strcmp(t, "uri") ? a : NULL;
        }
        const char *t = json_string_value(json_object_get(a, "type"));
        return t && !strcmp(t, type) ? a : NULL;
    }
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(cmd, "arguments"), i, a)
    {
        const char *t = json_string_value(json_object_get(a, "type"));
        const char *n = json_string_value(json_object_get(a, "name"));
        if (t && n && !strcmp(t, type) && !strcmp(n, port)) return a;
    }
    return NULL;
}

const char *workflow_output_uri(const json_t *spec, const char *port, const char *at)
{
    return json_string_value(json_object_get(port_arg(spec, "output", port, at), "value"));
}

char *workflow_attempt_uri(const char *base, int attempt)
{
    if (!base || strncmp(base, "s3://", 5)) return NULL;
    const char *slash = strrchr(base + 5, '/');
    if (!slash || !slash[1]) return NULL; /* no key, or a prefix */
    char *uri = xasprintf("%.*s/attempt-%d/%s", (int)(slash - base), base, attempt, slash + 1);
    if (!spec_uri_valid(uri, false, NULL)) {
        free(uri);
        return NULL;
    }
    return uri;
}

bool workflow_set_output(json_t *spec, const char *port, const char *at, const char *uri)
{
    json_t *a = port_arg(spec, "output", port, at);
    return a && !json_object_set_new(a, "value", json_string(uri));
}

bool workflow_set_input(json_t *spec, const char *port, const char *at, const char *uri,
                        const char *sha256)
{
    json_t *a = port_arg(spec, "input", port, at);
    if (!a) return false;
    json_object_set_new(a, "value", json_string(uri));
    if (at && !strcmp(at, "stdin")) return true; /* a stream takes no sha256 */
    if (sha256)
        json_object_set_new(a, "sha256", json_string(sha256));
    else
        json_object_del(a, "sha256");
    return true;
}

bool workflow_set_inputs(json_t *spec, const char *port, const char *at_, const char *const *uris,
                         const char *const *shas, size_t n)
{
    json_t *args = json_object_get(json_object_get(spec, "command"), "arguments");
    json_t *a = port_arg(spec, "input", port, at_);
    size_t at = 0;
    while (a && at < json_array_size(args) && json_array_get(args, at) != a)
        at++;
    if (!a || at == json_array_size(args)) return false; /* none, or stdin */
    json_incref(a);
    json_array_remove(args, at);
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_deep_copy(a);
        json_object_set_new(c, "value", json_string(uris[i]));
        if (shas && shas[i])
            json_object_set_new(c, "sha256", json_string(shas[i]));
        else
            json_object_del(c, "sha256");
        json_array_insert_new(args, at + i, c);
    }
    json_decref(a);
    return true;
}

static void add_dep(struct wf_node *n, size_t up, bool any)
{
    for (size_t i = 0; i < n->ndeps; i++)
        if (n->deps[i].node == up) {
            n->deps[i].any = n->deps[i].any && any; /* a connection needs the upstream's success */
            return;
        }
    n->deps = xrealloc(n->deps, (n->ndeps + 1) * sizeof(*n->deps));
    n->deps[n->ndeps++] = (struct wf_dep){up, any};
}

/* "node.port" of connection i's `side`: the node's index and the port (malloc'd). */
static int split_end(struct workflow *w, json_t *c, size_t i, const char *side, size_t *node,
                     char **port, struct err *e)
{
    char field[64];
    snprintf(field, sizeof(field), "connections[%zu].%s", i, side);
    const char *v = json_string_value(json_object_get(c, side));
    const char *dot = v ? strchr(v, '.') : NULL;
    if (!dot || dot == v || !dot[1] || strlen(dot + 1) > PORT_NAME_MAX)
        return err_field(e, ERR_INVALID, field, "%s must be \"node.port\"", field);
    char name[NODE_NAME_MAX + 1];
    size_t n = (size_t)(dot - v);
    long k = -1;
    if (n <= NODE_NAME_MAX) {
        memcpy(name, v, n);
        name[n] = '\0';
        k = workflow_node(w, name);
    }
    if (k < 0)
        return err_field(e, ERR_INVALID, field, "%s: no node '%.*s' in this workflow", field,
                         (int)(n > NODE_NAME_MAX ? NODE_NAME_MAX : n), v);
    *node = (size_t)k;
    *port = xstrdup(dot + 1);
    return 0;
}

static const char *field_from(char *buf, size_t n, size_t i, const char *side)
{
    snprintf(buf, n, "connections[%zu].%s", i, side);
    return buf;
}

/* The names of a service node's ports of `type`, for a message: "query, db" (a few). */
static void port_names(const json_t *map, const char *type, struct buf *b)
{
    const char *k;
    json_t *v;
    size_t n = 0;
    json_object_foreach((json_t *)map, k, v)
    {
        const char *t = json_string_value(json_object_get(v, "type"));
        if (!t || strcmp(t, type)) continue;
        if (n++ == 12) {
            buf_adds(b, ", ...");
            break;
        }
        buf_addf(b, "%s%s", n > 1 ? ", " : "", k);
    }
    if (!n) buf_adds(b, "none");
}

/*
 * Port `port` of `type` of connection i's `side` node: its argument in raw[node] and, for a
 * service's node (one with a map in `ports`), its place (*at, malloc'd).
 */
static int find_port(struct workflow *w, const json_t *ports, json_t **raw, size_t i,
                     const char *side, size_t node, const char *type, const char *port,
                     json_t **arg, char **at, struct err *e)
{
    char field[64];
    field_from(field, sizeof(field), i, side);
    const char *name = w->nodes[node].name;
    const json_t *map = json_object_get(ports, name);
    if (!map) {
        *arg = port_arg(raw[node], type, port, NULL);
        if (!*arg)
            return err_field(e, ERR_INVALID, field,
                             "%s: node '%s' has no %s port '%s' (a command.arguments entry of "
                             "type %s with that name)",
                             field, name, type, port, type);
        return 0;
    }
    const char *svc = json_string_value(json_object_get(raw[node], "service"));
    json_t *decl = json_object_get(map, port);
    const char *t = json_string_value(json_object_get(decl, "type"));
    if (!t || strcmp(t, type)) {
        struct buf b = BUF_INIT;
        port_names(map, type, &b);
        int rc = err_field(e, ERR_INVALID, field,
                           "%s: node '%s' (service '%s') has no %s port '%s' (its %ss: %s)",
                           field, name, svc ? svc : "?", type, port, type, b.data);
        buf_release(&b);
        return rc;
    }
    const char *place = json_string_value(json_object_get(decl, "at"));
    if (!place)
        return err_field(e, ERR_INVALID, field,
                         "%s: node '%s' gives no value for its optional %s port '%s' (service "
                         "'%s' leaves it out of the command): give it in its params",
                         field, name, type, port, svc ? svc : "?");
    *arg = port_arg(raw[node], type, port, place);
    if (!*arg)
        return err_field(e, ERR_INVALID, field, "%s: node '%s' has no %s at %s", field, name,
                         type, place);
    *at = xstrdup(place);
    return 0;
}

static int connections_of(struct workflow *w, json_t *conns, const json_t *ports, json_t **raw,
                          json_t *connected, struct err *e);

/* The connections, each checked; connected: the set of inputs connected so far ("I.PORT"). */
static int parse_connections(struct workflow *w, json_t *conns, const json_t *ports, json_t **raw,
                             struct err *e)
{
    json_t *connected = json_object();
    int rc = connections_of(w, conns, ports, raw, connected, e);
    json_decref(connected);
    return rc;
}

static int connections_of(struct workflow *w, json_t *conns, const json_t *ports, json_t **raw,
                          json_t *connected, struct err *e)
{
    if (!conns || json_is_null(conns)) return 0;
    if (!json_is_array(conns) || json_array_size(conns) > WORKFLOW_MAX_CONNECTIONS)
        return err_field(e, ERR_INVALID, "connections",
                         "connections must be an array of at most %d {\"from\", \"to\"}",
                         WORKFLOW_MAX_CONNECTIONS);
    w->conns = xcalloc(json_array_size(conns) + 1, sizeof(*w->conns));
    size_t i;
    json_t *c;
    json_array_foreach(conns, i, c)
    {
        char field[64];
        snprintf(field, sizeof(field), "connections[%zu]", i);
        const char *k;
        json_t *v;
        if (!json_is_object(c))
            return err_field(e, ERR_INVALID, field, "%s must be {\"from\": \"node.port\", "
                                                    "\"to\": \"node.port\"}", field);
        json_object_foreach(c, k, v)
        {
            if (strcmp(k, "from") && strcmp(k, "to"))
                return err_field(e, ERR_INVALID, field,
                                 "%s: unknown field '%s' (a connection has from and to)", field, k);
        }
        struct wf_conn *x = &w->conns[w->nconns++];
        json_t *out, *in;
        int rc;
        if ((rc = split_end(w, c, i, "from", &x->from, &x->from_port, e)) ||
            (rc = split_end(w, c, i, "to", &x->to, &x->to_port, e)) ||
            (rc = find_port(w, ports, raw, i, "from", x->from, "output", x->from_port, &out,
                            &x->from_at, e)) ||
            (rc = find_port(w, ports, raw, i, "to", x->to, "input", x->to_port, &in, &x->to_at,
                            e)))
            return rc;
        if (x->from == x->to)
            return err_field(e, ERR_INVALID, field, "a cycle: %s -> %s",
                             w->nodes[x->from].name, w->nodes[x->from].name);
        /* Its value is the upstream's object, given when it is queued: until then the
           upstream's own URI stands in for it, so that the spec validates. */
        json_t *val = json_object_get(in, "value");
        if ((!val || json_is_null(val)) && json_is_object(in))
            json_object_set(in, "value", json_object_get(out, "value"));
        char *key = xasprintf("%zu.%s", x->to, x->to_port);
        bool again = json_object_get(connected, key) != NULL;
        json_object_set_new(connected, key, json_true());
        free(key);
        if (again)
            return err_field(e, ERR_INVALID, field_from(field, sizeof(field), i, "to"),
                             "connections[%zu].to: input '%s.%s' is already connected", i,
                             w->nodes[x->to].name, x->to_port);
        add_dep(&w->nodes[x->to], x->from, false);
    }
    return 0;
}

static int parse_deps(struct workflow *w, size_t k, json_t *deps, struct err *e)
{
    char field[NODE_NAME_MAX + 64];
    snprintf(field, sizeof(field), "nodes.%s.depends_on", w->nodes[k].name);
    if (!deps || json_is_null(deps)) return 0;
    if (!json_is_array(deps) || json_array_size(deps) > WORKFLOW_MAX_NODES)
        return err_field(e, ERR_INVALID, field,
                         "%s must be an array of node names or {\"node\", \"on\"}", field);
    size_t i;
    json_t *d;
    json_array_foreach(deps, i, d)
    {
        char f[NODE_NAME_MAX + 96];
        snprintf(f, sizeof(f), "%s[%zu]", field, i);
        const char *name = json_string_value(json_is_object(d) ? json_object_get(d, "node") : d);
        const char *on = "success";
        if (json_is_object(d)) {
            const char *key;
            json_t *v;
            json_object_foreach(d, key, v)
            {
                if (strcmp(key, "node") && strcmp(key, "on"))
                    return err_field(e, ERR_INVALID, f,
                                     "%s: unknown field '%s' (expected node and on)", f, key);
            }
            json_t *o = json_object_get(d, "on");
            if (o && !json_is_null(o)) on = json_string_value(o);
            if (!on || (strcmp(on, "success") && strcmp(on, "any")))
                return err_field(e, ERR_INVALID, f, "%s.on must be \"success\" or \"any\"", f);
        }
        if (!name)
            return err_field(e, ERR_INVALID, f, "%s must be a node's name or {\"node\", \"on\"}",
                             f);
        long up = workflow_node(w, name);
        if (up < 0)
            return err_field(e, ERR_INVALID, f, "%s: no node '%s' in this workflow", f, name);
        if ((size_t)up == k)
            return err_field(e, ERR_INVALID, f, "a cycle: %s -> %s", name, name);
        add_dep(&w->nodes[k], (size_t)up, !strcmp(on, "any"));
    }
    return 0;
}

/* An error of array_input_parse, its field ("array.count") named under the node's spec. */
static int node_array_err(struct err *e, const char *path)
{
    char field[sizeof(e->field)], msg[sizeof(e->msg)];
    snprintf(field, sizeof(field), "%.80s.%.75s", path, e->field);
    snprintf(msg, sizeof(msg), "%.80s.%.420s", path, e->msg);
    snprintf(e->field, sizeof(e->field), "%s", field);
    snprintf(e->msg, sizeof(e->msg), "%s", msg);
    return e->code;
}

/*
 * A node's spec with "array" (a fan-out): the array checked, the spec parsed as task 0's and
 * its placeholders put back, "array" kept in it. path: "nodes.N.job".
 */
static int parse_array_node(struct workflow *w, size_t k, json_t *raw, const char *path,
                            struct err *e)
{
    json_t *v = json_object_get(raw, "array");
    char field[NODE_NAME_MAX + 160];
    const char *item0 = NULL;
    char *text = NULL;
    if (json_is_object(v) && json_object_get(v, "outputs")) {
        const char *key;
        json_t *x;
        json_object_foreach(v, key, x)
        {
            if (strcmp(key, "outputs") && strcmp(key, "prefix")) {
                snprintf(field, sizeof(field), "%s.array.%.60s", path, key);
                return err_field(e, ERR_INVALID, field,
                                 "%s: unknown field (a fan-out over outputs has outputs and "
                                 "prefix)", field);
            }
        }
        snprintf(field, sizeof(field), "%s.array.outputs", path);
        const char *up = json_string_value(json_object_get(v, "outputs"));
        long u = up ? workflow_node(w, up) : -1;
        if (u < 0)
            return err_field(e, ERR_INVALID, field, "%s must name a node of this workflow%s%s%s",
                             field, up ? " (no node '" : "", up ? up : "", up ? "')" : "");
        if ((size_t)u == k)
            return err_field(e, ERR_INVALID, field, "%s: a node cannot fan out over its own "
                                                    "outputs", field);
        json_t *p = json_object_get(v, "prefix");
        if (p && !json_is_null(p)) {
            snprintf(field, sizeof(field), "%s.array.prefix", path);
            const char *ps = json_string_value(p), *why = NULL;
            if (!ps || strncmp(ps, "s3://", 5) || !spec_uri_valid(ps, true, &why))
                return err_field(e, ERR_INVALID, field, "%s must be an s3:// prefix%s%s", field,
                                 why ? ": " : "", why ? why : "");
        }
        w->nodes[k].fan_from = u;
        add_dep(&w->nodes[k], (size_t)u, false);
        item0 = WORKFLOW_SAMPLE_ITEM;
    } else {
        struct array_input in;
        if (array_input_parse(v, &in, e)) return node_array_err(e, path);
        if (in.kind == ARRAY_OBJECTS) {
            snprintf(field, sizeof(field), "%s.array.objects", path);
            return err_field(e, ERR_INVALID, field,
                             "%s: a workflow's node cannot list a prefix; fan out over an "
                             "upstream node's outputs (\"outputs\": NODE, \"prefix\": ...)",
                             field);
        }
        if (in.kind == ARRAY_ITEMS) item0 = text = array_item_text(json_array_get(in.items, 0));
    }
    json_t *sample = array_sample_spec(raw, "0", item0);
    free(text);
    struct job_spec *spec = &w->nodes[k].spec;
    int rc = spec_parse_arrayable(sample, path, spec, e);
    json_decref(sample);
    if (rc) return rc;
    array_template(spec->json, raw);
    json_t *items = json_object_get(v, "items");
    if (json_is_array(items)) { /* the tasks after the first, their arguments */
        snprintf(field, sizeof(field), "%s.array.items", path);
        if ((rc = array_items_check(spec->json, items, field, true, e))) return rc;
    }
    json_object_set_new(spec->json, "array", json_deep_copy(v));
    return 0;
}

/*
 * Depth-first over the upstream edges: the order (each node after its upstreams), or the
 * first cycle found, named node by node.
 */
struct walk {
    struct workflow *w;
    char *color; /* 0 new, 1 on the path, 2 done */
    size_t *path, depth, norder;
    struct err *e;
};

static int visit(struct walk *k, size_t v)
{
    if (k->color[v] == 2) return 0;
    if (k->color[v] == 1) {
        struct buf b = BUF_INIT;
        size_t start = k->depth;
        while (start > 0 && k->path[start - 1] != v)
            start--;
        /* path[start-1] == v: the cycle runs v -> ... (upstream edges, reversed for reading) */
        buf_adds(&b, k->w->nodes[v].name);
        for (size_t i = k->depth; i-- > start - 1 + 1;) {
            buf_adds(&b, " -> ");
            buf_adds(&b, k->w->nodes[k->path[i]].name);
        }
        buf_adds(&b, " -> ");
        buf_adds(&b, k->w->nodes[v].name);
        int rc = err_field(k->e, ERR_INVALID, "nodes", "a cycle: %s", b.data);
        buf_release(&b);
        return rc;
    }
    k->color[v] = 1;
    k->path[k->depth++] = v;
    for (size_t i = 0; i < k->w->nodes[v].ndeps; i++) {
        int rc = visit(k, k->w->nodes[v].deps[i].node);
        if (rc) return rc;
    }
    k->depth--;
    k->color[v] = 2;
    k->w->order[k->norder++] = v;
    return 0;
}

static int check_cycles(struct workflow *w, struct err *e)
{
    struct walk k = {w, xcalloc(w->n, 1), xcalloc(w->n, sizeof(size_t)), 0, 0, e};
    w->order = xcalloc(w->n, sizeof(size_t));
    int rc = 0;
    for (size_t v = 0; v < w->n && !rc; v++)
        rc = visit(&k, v);
    free(k.color);
    free(k.path);
    return rc;
}

int workflow_parse(json_t *body, struct workflow *w, struct err *e)
{
    return workflow_parse_ports(body, NULL, w, e);
}

int workflow_parse_ports(json_t *body, const json_t *ports, struct workflow *w, struct err *e)
{
    memset(w, 0, sizeof(*w));
    if (!json_is_object(body))
        return err_set(e, ERR_INVALID, "the body must be a workflow (an object with \"nodes\")");
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "name") && strcmp(key, "nodes") && strcmp(key, "connections") &&
            strcmp(key, "key") && strcmp(key, "notify_url"))
            return err_field(e, ERR_INVALID, key,
                             "unknown field '%s' (a workflow has name, key, notify_url, nodes "
                             "and connections)",
                             key);
    }
    json_t *idem = json_object_get(body, "key");
    if (idem && !json_is_null(idem)) {
        if (!json_is_string(idem) || !json_string_length(idem) || json_string_length(idem) > 256)
            return err_field(e, ERR_INVALID, "key", "key must be a string of 1 to 256 bytes");
        w->key = xstrdup(json_string_value(idem));
    }
    json_t *name = json_object_get(body, "name");
    if (name && !json_is_null(name)) {
        if (!json_is_string(name) || !json_string_length(name) || json_string_length(name) > 256) {
            workflow_release(w);
            return err_field(e, ERR_INVALID, "name", "name must be a string of 1 to 256 bytes");
        }
        w->name = xstrdup(json_string_value(name));
    }
    json_t *url = json_object_get(body, "notify_url");
    if (url && !json_is_null(url)) {
        if (!json_is_string(url) || json_string_length(url) > 2048 ||
            !spec_notify_url_valid(json_string_value(url))) {
            workflow_release(w);
            return err_field(e, ERR_INVALID, "notify_url",
                             "notify_url must be an http:// or https:// URL of at most 2048 "
                             "bytes (a host, a port up to 65535, no user:password@: deliveries "
                             "are signed)");
        }
        w->notify_url = xstrdup(json_string_value(url));
    }
    json_t *nodes = json_object_get(body, "nodes");
    size_t n = json_object_size(nodes);
    if (!json_is_object(nodes) || !n || n > WORKFLOW_MAX_NODES) {
        workflow_release(w);
        return err_field(e, ERR_INVALID, "nodes",
                         "nodes must be an object of 1 to %d nodes (name -> {\"job\": SPEC, "
                         "\"depends_on\": [...]})",
                         WORKFLOW_MAX_NODES);
    }
    w->nodes = xcalloc(n, sizeof(*w->nodes));
    json_t **raw = xcalloc(n, sizeof(*raw)), **deps = xcalloc(n, sizeof(*deps));
    int rc = 0;
    json_object_foreach(nodes, key, v)
    {
        char field[NODE_NAME_MAX + 96];
        snprintf(field, sizeof(field), "nodes.%.*s", NODE_NAME_MAX + 8, key);
        if (!node_name_valid(key)) {
            rc = err_field(e, ERR_INVALID, field, "%s: a node's name must match "
                                                  "[A-Za-z0-9_-]{1,64}", field);
            goto out;
        }
        const char *k2;
        json_t *v2;
        if (!json_is_object(v)) {
            rc = err_field(e, ERR_INVALID, field, "%s must be {\"job\": SPEC, \"depends_on\": "
                                                  "[...]}", field);
            goto out;
        }
        json_object_foreach(v, k2, v2)
        {
            if (strcmp(k2, "job") && strcmp(k2, "depends_on")) {
                rc = err_field(e, ERR_INVALID, field,
                               "%s: unknown field '%s' (a node is {\"job\": SPEC, "
                               "\"depends_on\": [...]}: its spec goes in job)",
                               field, k2);
                goto out;
            }
        }
        raw[w->n] = json_object_get(v, "job");
        if (!json_is_object(raw[w->n])) {
            strcat(field, ".job");
            rc = err_field(e, ERR_INVALID, field, "%s must be a job spec (an object)", field);
            goto out;
        }
        deps[w->n] = json_object_get(v, "depends_on");
        w->nodes[w->n++].name = xstrdup(key);
    }
    if ((rc = parse_connections(w, json_object_get(body, "connections"), ports, raw, e))) goto out;
    for (size_t i = 0; i < w->n; i++) {
        char path[NODE_NAME_MAX + 16];
        snprintf(path, sizeof(path), "nodes.%s.job", w->nodes[i].name);
        w->nodes[i].fan_from = -1;
        if (json_object_get(raw[i], "array")) {
            if ((rc = parse_array_node(w, i, raw[i], path, e))) goto out;
        } else if ((rc = spec_parse_arrayable(raw[i], path, &w->nodes[i].spec, e))) {
            goto out;
        }
        if (w->nodes[i].spec.test) {
            strcat(path, ".test");
            rc = err_field(e, ERR_INVALID, path, "%s: a test probe cannot be a workflow's node",
                           path);
            goto out;
        }
    }
    /* a connected output: each attempt its own key, the first one's now */
    json_t *bases = json_object(); /* "I.PORT" -> its URI as given, once rewritten */
    for (size_t i = 0; i < w->nconns; i++) {
        struct wf_conn *c = &w->conns[i];
        json_t *spec = w->nodes[c->from].spec.json;
        char *bkey = xasprintf("%zu.%s", c->from, c->from_port);
        json_t *before = json_object_get(bases, bkey); /* connected before: rewritten already */
        const char *given = before ? json_string_value(before)
                                   : workflow_output_uri(spec, c->from_port, c->from_at);
        c->base = given ? xstrdup(given) : NULL;
        if (!before)
            json_object_set_new(bases, bkey, c->base ? json_string(c->base) : json_null());
        free(bkey);
        /* a fan-out node's tasks write the keys as given ({{index}} makes them distinct) */
        if (json_object_get(spec, "array")) continue;
        char *first = workflow_attempt_uri(c->base, 1);
        if (first) workflow_set_output(spec, c->from_port, c->from_at, first);
        free(first);
    }
    json_decref(bases);
    for (size_t i = 0; i < w->n && !rc; i++)
        rc = parse_deps(w, i, deps[i], e);
    if (!rc) rc = check_cycles(w, e);
out:
    free(raw);
    free(deps);
    if (rc) workflow_release(w);
    return rc;
}

enum job_state workflow_state(const int64_t count[JOB_NSTATES])
{
    int64_t total = 0;
    for (int s = 0; s < JOB_NSTATES; s++) {
        if (!job_state_terminal(s) && count[s]) return JOB_RUNNING;
        total += count[s];
    }
    return count[JOB_SUCCEEDED] == total ? JOB_SUCCEEDED
           : count[JOB_FAILED]           ? JOB_FAILED
                                         : JOB_CANCELLED;
}

void workflow_release(struct workflow *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->nodes[i].name);
        free(w->nodes[i].deps);
        if (w->nodes[i].spec.json) spec_release(&w->nodes[i].spec);
    }
    for (size_t i = 0; i < w->nconns; i++) {
        free(w->conns[i].from_port);
        free(w->conns[i].to_port);
        free(w->conns[i].base);
        free(w->conns[i].from_at);
        free(w->conns[i].to_at);
    }
    free(w->nodes);
    free(w->conns);
    free(w->notify_url);
    free(w->order);
    free(w->name);
    free(w->key);
    memset(w, 0, sizeof(*w));
}

void workflow_jobs(const struct workflow *w, const char *owner, int64_t now_ms, struct job *jobs)
{
    for (size_t i = 0; i < w->n; i++) {
        job_from_spec(&jobs[i], &w->nodes[i].spec, now_ms);
        jobs[i].owner = owner ? xstrdup(owner) : NULL;
        /* a fan-out node's job is never queued: the store makes its array */
        if (w->nodes[i].ndeps || json_object_get(w->nodes[i].spec.json, "array"))
            jobs[i].state = JOB_BLOCKED;
    }
}

json_t *workflow_doc(const struct workflow *w, const char (*ids)[UUID_STR_LEN])
{
    json_t *nodes = json_object(), *conns = json_array();
    for (size_t i = 0; i < w->n; i++) {
        json_t *deps = json_array();
        for (size_t d = 0; d < w->nodes[i].ndeps; d++)
            json_array_append_new(deps, json_pack("{s:s, s:s}", "node",
                                                  w->nodes[w->nodes[i].deps[d].node].name, "on",
                                                  w->nodes[i].deps[d].any ? "any" : "success"));
        json_t *node = json_pack("{s:s, s:o}", "job", ids[i], "depends_on", deps);
        /* a fan-out node: its job's id is its array's (GET /v1/workflows shows its tasks) */
        if (json_object_get(w->nodes[i].spec.json, "array"))
            json_object_set_new(node, "array", json_true());
        json_object_set_new(nodes, w->nodes[i].name, node);
    }
    for (size_t i = 0; i < w->nconns; i++) {
        const struct wf_conn *c = &w->conns[i];
        json_t *o = json_object();
        json_object_set_new(o, "from", json_sprintf("%s.%s", w->nodes[c->from].name, c->from_port));
        json_object_set_new(o, "to", json_sprintf("%s.%s", w->nodes[c->to].name, c->to_port));
        json_object_set_new(o, "uri", json_string(c->base));
        if (c->from_at) json_object_set_new(o, "from_at", json_string(c->from_at));
        if (c->to_at) json_object_set_new(o, "to_at", json_string(c->to_at));
        json_array_append_new(conns, o);
    }
    json_t *doc = json_pack("{s:o, s:o, s:o}", "name",
                            w->name ? json_string(w->name) : json_null(), "nodes", nodes,
                            "connections", conns);
    if (w->key) json_object_set_new(doc, "key", json_string(w->key));
    if (w->notify_url) json_object_set_new(doc, "notify_url", json_string(w->notify_url));
    return doc;
}
