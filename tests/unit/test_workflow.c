/*
 * test_workflow.c - a workflow's whole validation (job/workflow.h): nodes, dependencies,
 * connections between ports, each node's spec with its path, cycles named node by node, and
 * the order each node comes in after its upstreams.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>

/* What drover's own code allocated: freed by the C library's free, not cmocka's. */
static void lib_free(void *p)
{
    free(p);
}

#include <jansson.h>

#include <cmocka.h>

#include "job/workflow.h"

#define P(name) "{\"command\": {\"program\": \"" name "\"}}"
#define OUT(port, uri) "{\"type\": \"output\", \"name\": \"" port "\", \"value\": \"" uri "\"}"
#define IN(port) "{\"type\": \"input\", \"name\": \"" port "\"}"

static int parse(const char *text, struct workflow *w, struct err *e)
{
    json_error_t je;
    json_t *body = json_loads(text, 0, &je);
    if (!body) fail_msg("bad test JSON: %s: %s", je.text, text);
    int rc = workflow_parse(body, w, e);
    json_decref(body);
    return rc;
}

/* Refused with a 400 whose field and message hold the given texts. */
static void refused(const char *text, const char *field, const char *msg)
{
    struct workflow w;
    struct err e = ERR_INIT;
    int rc = parse(text, &w, &e);
    if (rc != ERR_INVALID) fail_msg("accepted (rc %d): %s", rc, text);
    if (field && strcmp(e.field, field)) fail_msg("field '%s', expected '%s' (%s)", e.field, field, e.msg);
    if (msg && !strstr(e.msg, msg)) fail_msg("message '%s' lacks '%s'", e.msg, msg);
}

static size_t pos(const struct workflow *w, const char *name)
{
    long k = workflow_node(w, name);
    assert_true(k >= 0);
    for (size_t i = 0; i < w->n; i++)
        if (w->order[i] == (size_t)k) return i;
    fail_msg("node %s not in the order", name);
    return 0;
}

static void test_diamond(void **state)
{
    (void)state;
    struct workflow w;
    struct err e = ERR_INIT;
    const char *text =
        "{\"name\": \"d\", \"nodes\": {"
        "\"D\": {\"job\": {\"command\": {\"program\": \"cat\", \"arguments\": [" IN("b") "," IN("c") "]}},"
        "       \"depends_on\": [{\"node\": \"A\", \"on\": \"any\"}]},"
        "\"B\": {\"job\": {\"command\": {\"program\": \"b\", \"arguments\": [" OUT("out", "s3://wf/b") "]}},"
        "       \"depends_on\": [\"A\"]},"
        "\"C\": {\"job\": {\"command\": {\"program\": \"c\", \"arguments\": [" OUT("out", "s3://wf/c") "]}},"
        "       \"depends_on\": [\"A\"]},"
        "\"A\": {\"job\": " P("a") "}},"
        "\"connections\": [{\"from\": \"B.out\", \"to\": \"D.b\"}, {\"from\": \"C.out\", \"to\": \"D.c\"}]}";
    assert_int_equal(parse(text, &w, &e), 0);
    assert_int_equal(w.n, 4);
    assert_int_equal(w.nconns, 2);
    assert_true(pos(&w, "A") < pos(&w, "B"));
    assert_true(pos(&w, "A") < pos(&w, "C"));
    assert_true(pos(&w, "B") < pos(&w, "D"));
    assert_true(pos(&w, "C") < pos(&w, "D"));
    const struct wf_node *d = &w.nodes[workflow_node(&w, "D")];
    assert_int_equal(d->ndeps, 3); /* A (any), B and C (connections: success) */
    for (size_t i = 0; i < d->ndeps; i++) /* only the edge from A goes on whatever A's end */
        assert_int_equal(d->deps[i].any, d->deps[i].node == (size_t)workflow_node(&w, "A"));
    /* a connected output: the first attempt's own key; the input stands on it until queued */
    assert_string_equal(workflow_output_uri(w.nodes[workflow_node(&w, "B")].spec.json, "out", NULL),
                        "s3://wf/attempt-1/b");
    char *u = workflow_attempt_uri("s3://wf/x/y.txt", 12);
    assert_string_equal(u, "s3://wf/x/attempt-12/y.txt");
    lib_free(u);
    assert_null(workflow_attempt_uri("file:///tmp/y.txt", 2)); /* s3 objects only */
    assert_null(workflow_attempt_uri("s3://wf", 2));
    json_t *spec = json_deep_copy(d->spec.json);
    assert_true(workflow_set_input(spec, "b", NULL, "s3://wf/b-1", "ab"));
    assert_false(workflow_set_input(spec, "nope", NULL, "s3://wf/x", NULL));
    json_t *arg = json_array_get(json_object_get(json_object_get(spec, "command"), "arguments"), 0);
    assert_string_equal(json_string_value(json_object_get(arg, "value")), "s3://wf/b-1");
    assert_string_equal(json_string_value(json_object_get(arg, "sha256")), "ab");
    json_decref(spec);

    char ids[4][UUID_STR_LEN] = {"1", "2", "3", "4"};
    json_t *doc = workflow_doc(&w, (const char(*)[UUID_STR_LEN])ids);
    assert_string_equal(json_string_value(json_object_get(doc, "name")), "d");
    json_t *dn = json_object_get(json_object_get(doc, "nodes"), "D");
    assert_int_equal(json_array_size(json_object_get(dn, "depends_on")), 3);
    assert_int_equal(json_array_size(json_object_get(doc, "connections")), 2);
    json_decref(doc);
    workflow_release(&w);
}

static void test_cycles(void **state)
{
    (void)state;
    refused("{\"nodes\": {\"A\": {\"job\": " P("a") ", \"depends_on\": [\"B\"]},"
            "\"B\": {\"job\": " P("b") ", \"depends_on\": [\"C\"]},"
            "\"C\": {\"job\": " P("c") ", \"depends_on\": [\"A\"]}}}",
            "nodes", "a cycle: ");
    /* the whole cycle is named, each node once, back to where it starts */
    struct workflow w;
    struct err e = ERR_INIT;
    assert_int_equal(parse("{\"nodes\": {\"X\": {\"job\": " P("x") "},"
                           "\"A\": {\"job\": " P("a") ", \"depends_on\": [\"B\", \"X\"]},"
                           "\"B\": {\"job\": " P("b") ", \"depends_on\": [\"A\"]}}}",
                           &w, &e),
                     ERR_INVALID);
    assert_true(!strcmp(e.msg, "a cycle: A -> B -> A") || !strcmp(e.msg, "a cycle: B -> A -> B"));
    assert_null(strstr(e.msg, "X"));
    refused("{\"nodes\": {\"A\": {\"job\": " P("a") ", \"depends_on\": [\"A\"]}}}",
            "nodes.A.depends_on[0]", "a cycle: A -> A");
    /* a cycle through a connection */
    refused("{\"nodes\": {"
            "\"A\": {\"job\": {\"command\": {\"program\": \"a\", \"arguments\": [" OUT("o", "s3://wf/a") "]}},"
            "       \"depends_on\": [\"B\"]},"
            "\"B\": {\"job\": {\"command\": {\"program\": \"b\", \"arguments\": [" IN("i") "]}}}},"
            "\"connections\": [{\"from\": \"A.o\", \"to\": \"B.i\"}]}",
            "nodes", "a cycle: ");
}

static void test_bad_input(void **state)
{
    (void)state;
    refused("[]", NULL, "workflow");
    refused("{\"nodes\": {}}", "nodes", "1 to");
    refused("{\"nodes\": {\"A\": {\"job\": " P("a") "}}, \"extra\": 1}", "extra", "unknown");
    refused("{\"nodes\": {\"a.b\": {\"job\": " P("a") "}}}", "nodes.a.b", "[A-Za-z0-9_-]");
    refused("{\"nodes\": {\"A\": {\"spec\": " P("a") "}}}", "nodes.A", "unknown field 'spec'");
    /* a spec written as the node itself: the message says where it goes */
    refused("{\"nodes\": {\"A\": {\"command\": {\"program\": \"a\"}}}}", "nodes.A",
            "unknown field 'command' (a node is {\"job\": SPEC, \"depends_on\": [...]}: its spec "
            "goes in job)");
    refused("{\"nodes\": {\"A\": {\"job\": " P("a") "}}, \"edges\": []}", "edges",
            "unknown field 'edges' (a workflow has name, key, notify_url, nodes and connections)");
    /* an idempotency key: a string of 1 to 256 bytes (the name's checks come after it) */
    refused("{\"key\": \"\", \"nodes\": {\"A\": {\"job\": " P("a") "}}}", "key", "1 to 256");
    refused("{\"key\": 5, \"name\": 7, \"nodes\": {\"A\": {\"job\": " P("a") "}}}", "key",
            "must be a string");
    refused("{\"key\": \"k\", \"name\": 7, \"nodes\": {\"A\": {\"job\": " P("a") "}}}",
            "name", "1 to 256"); /* the key read first is released */
    /* a webhook for the workflow's end: an http(s) URL (the key and name read are released) */
    refused("{\"key\": \"k\", \"name\": \"n\", \"notify_url\": \"ftp://h/x\", \"nodes\": "
            "{\"A\": {\"job\": " P("a") "}}}",
            "notify_url", "http:// or https://");
    refused("{\"notify_url\": 7, \"nodes\": {\"A\": {\"job\": " P("a") "}}}", "notify_url",
            "URL");
    refused("{\"nodes\": {\"A\": {}}}", "nodes.A.job", "job spec");
    /* each node's spec is validated as a job spec, with the node's name in the path */
    refused("{\"nodes\": {\"A\": {\"job\": " P("a") "}, \"B\": {\"job\": {\"queue\": \"BAD Q\", "
            "\"command\": {\"program\": \"b\"}}}}}",
            "nodes.B.job.queue", NULL);
    refused("{\"nodes\": {\"A\": {\"job\": {\"command\": {\"program\": \"a\"}, \"test\": true}}}}",
            "nodes.A.job.test", "probe");
    refused("{\"nodes\": {\"A\": {\"job\": " P("a") ", \"depends_on\": [\"Z\"]}}}",
            "nodes.A.depends_on[0]", "no node 'Z'");
    refused("{\"nodes\": {\"A\": {\"job\": " P("a") ", \"depends_on\": 3}}}",
            "nodes.A.depends_on", NULL);
    refused("{\"nodes\": {\"A\": {\"job\": " P("a") "}, \"B\": {\"job\": " P("b")
            ", \"depends_on\": [{\"node\": \"A\", \"when\": \"any\"}]}}}",
            "nodes.B.depends_on[0]", "unknown field 'when' (expected node and on)");
    refused("{\"nodes\": {\"A\": {\"job\": " P("a") "}, \"B\": {\"job\": " P("b")
            ", \"depends_on\": [{\"node\": \"A\", \"on\": \"failure\"}]}}}",
            "nodes.B.depends_on[0]", "\"success\" or \"any\"");
    /* connections: unknown node, unknown port, bad shape */
#define TWO(conns)                                                                                 \
    "{\"nodes\": {"                                                                                \
    "\"A\": {\"job\": {\"command\": {\"program\": \"a\", \"arguments\": [" OUT("o", "s3://wf/a") "]}}}," \
    "\"B\": {\"job\": {\"command\": {\"program\": \"b\", \"arguments\": [" IN("i") "]}}}},"           \
    "\"connections\": [" conns "]}"
    refused(TWO("{\"from\": \"Q.o\", \"to\": \"B.i\"}"), "connections[0].from", "no node 'Q'");
    refused(TWO("{\"from\": \"A.nope\", \"to\": \"B.i\"}"), "connections[0].from", "no output port 'nope'");
    refused(TWO("{\"from\": \"A.o\", \"to\": \"B.j\"}"), "connections[0].to", "no input port 'j'");
    refused(TWO("{\"from\": \"A.o\", \"to\": \"B\"}"), "connections[0].to", "node.port");
    refused(TWO("{\"from\": \"A.o\", \"to\": \"B.i\", \"x\": 1}"), "connections[0]",
            "unknown field 'x' (a connection has from and to)");
    refused(TWO("{\"from\": \"A.o\", \"to\": \"B.i\"}, {\"from\": \"A.o\", \"to\": \"B.i\"}"), "connections[1].to", "already connected");
    struct workflow w;
    struct err e = ERR_INIT;
    assert_int_equal(parse(TWO("{\"from\": \"A.o\", \"to\": \"B.i\"}"), &w, &e), 0);
    workflow_release(&w);
}

/*
 * A fan-out node: its upstream over whose outputs it fans out is a dependency (on success),
 * its spec checked as task 0's keeps "array" and its placeholders, its connected output keeps
 * its key; the document marks it; bad fan-outs are refused naming the field.
 */
static void test_fan_out(void **state)
{
    (void)state;
    struct workflow w;
    struct err e = ERR_INIT;
    const char *text =
        "{\"nodes\": {\"S\": {\"job\": " P("s") "},"
        " \"M\": {\"job\": {\"array\": {\"outputs\": \"S\", \"prefix\": \"s3://bk/p/\"},"
        "  \"command\": {\"program\": \"m\", \"arguments\": ["
        "   {\"type\": \"input\", \"value\": \"{{item}}\"}, " OUT("o", "s3://bk/r/{{index}}") "]}}},"
        " \"R\": {\"job\": {\"command\": {\"program\": \"r\", \"arguments\": [" IN("i") "]}}}},"
        " \"connections\": [{\"from\": \"M.o\", \"to\": \"R.i\"}]}";
    if (parse(text, &w, &e)) fail_msg("%s", e.msg);
    const struct wf_node *m = &w.nodes[workflow_node(&w, "M")];
    assert_int_equal(m->fan_from, workflow_node(&w, "S"));
    assert_int_equal(m->ndeps, 1);
    assert_int_equal(m->deps[0].node, (size_t)workflow_node(&w, "S"));
    assert_false(m->deps[0].any);
    assert_true(pos(&w, "S") < pos(&w, "M") && pos(&w, "M") < pos(&w, "R"));
    json_t *args = json_object_get(json_object_get(m->spec.json, "command"), "arguments");
    assert_string_equal(json_string_value(json_object_get(json_array_get(args, 0), "value")),
                        "{{item}}");
    assert_string_equal(workflow_output_uri(m->spec.json, "o", NULL), "s3://bk/r/{{index}}");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(m->spec.json, "array"), "outputs")),
                        "S");
    char ids[3][UUID_STR_LEN] = {"a", "b", "c"};
    json_t *doc = workflow_doc(&w, (const char(*)[UUID_STR_LEN])ids);
    assert_true(json_is_true(json_object_get(json_object_get(json_object_get(doc, "nodes"), "M"),
                                             "array")));
    assert_null(json_object_get(json_object_get(json_object_get(doc, "nodes"), "R"), "array"));
    json_decref(doc);
    workflow_release(&w);

    refused("{\"nodes\": {\"M\": {\"job\": {\"array\": {\"outputs\": \"Z\"}, \"command\": "
            "{\"program\": \"m\"}}}}}",
            "nodes.M.job.array.outputs", "no node 'Z'");
    refused("{\"nodes\": {\"M\": {\"job\": {\"array\": {\"outputs\": \"M\"}, \"command\": "
            "{\"program\": \"m\"}}}}}",
            "nodes.M.job.array.outputs", "its own outputs");
    refused("{\"nodes\": {\"S\": {\"job\": " P("s") "}, \"M\": {\"job\": {\"array\": "
            "{\"outputs\": \"S\", \"prefix\": \"file:///x\"}, \"command\": {\"program\": \"m\"}}}}}",
            "nodes.M.job.array.prefix", "s3:// prefix");
    refused("{\"nodes\": {\"M\": {\"job\": {\"array\": {\"objects\": \"s3://bk/\"}, \"command\": "
            "{\"program\": \"m\"}}}}}",
            "nodes.M.job.array.objects", "cannot list a prefix");
    refused("{\"nodes\": {\"M\": {\"job\": {\"array\": {\"count\": 0}, \"command\": "
            "{\"program\": \"m\"}}}}}",
            "nodes.M.job.array.count", "nodes.M.job.array.count must be");
    refused("{\"nodes\": {\"M\": {\"job\": {\"array\": {\"count\": 2}, \"command\": "
            "{\"program\": \"m\", \"bogus\": 1}}}}}",
            "nodes.M.job.command.bogus", NULL);
}

/* Fan-in: one input argument becomes n in its place, each keeping its name, pinned or not. */
static void test_set_inputs(void **state)
{
    (void)state;
    json_t *spec = json_loads("{\"command\": {\"program\": \"r\", \"arguments\": ["
                              "{\"type\": \"parameter\", \"value\": \"a\"}, " IN("--in") ", "
                              "{\"type\": \"parameter\", \"value\": \"z\"}]}}",
                              0, NULL);
    const char *uris[] = {"s3://b/0", "s3://b/1"}, *shas[] = {"s0", NULL};
    assert_false(workflow_set_inputs(spec, "--nope", NULL, uris, shas, 2));
    assert_true(workflow_set_inputs(spec, "--in", NULL, uris, shas, 2));
    json_t *args = json_object_get(json_object_get(spec, "command"), "arguments");
    assert_int_equal(json_array_size(args), 4);
    char *text = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text,
                        "[{\"type\":\"parameter\",\"value\":\"a\"},"
                        "{\"name\":\"--in\",\"sha256\":\"s0\",\"type\":\"input\",\"value\":\"s3://b/0\"},"
                        "{\"name\":\"--in\",\"type\":\"input\",\"value\":\"s3://b/1\"},"
                        "{\"type\":\"parameter\",\"value\":\"z\"}]");
    lib_free(text);
    /* by place; and none: the argument goes */
    assert_true(workflow_set_inputs(spec, "x", "arguments[2]", NULL, NULL, 0));
    assert_int_equal(json_array_size(args), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(args, 1), "value")),
                        "s3://b/0");
    assert_false(workflow_set_inputs(spec, "x", "arguments[0]", uris, shas, 2)); /* a parameter */
    assert_false(workflow_set_inputs(spec, "x", "stdin", uris, shas, 2));
    json_decref(spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diamond),
        cmocka_unit_test(test_cycles),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_fan_out),
        cmocka_unit_test(test_set_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
