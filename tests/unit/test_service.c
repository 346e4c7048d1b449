/*
 * test_service.c - unit tests for job/service.c: a definition's normalisation,
 * its expansion into a job spec that spec_parse() takes, and the field path of
 * every kind of bad definition and bad job params.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>

#include <jansson.h>

#include <cmocka.h>

#include "job/service.h"
#include "job/spec.h"

/* nhmmer as a service: params of each type, an input and an output port, an optional flag. */
static const char nhmmer_def[] =
    "{"
    "  \"description\": \"search DNA queries against a database\","
    "  \"command\": {"
    "    \"program\": \"nhmmer\","
    "    \"arguments\": ["
    "      {\"type\": \"parameter\", \"name\": \"--cpu\", \"param\": \"cpu\"},"
    "      {\"type\": \"parameter\", \"name\": \"-E\", \"param\": \"evalue\"},"
    "      {\"type\": \"parameter\", \"value\": \"--dna\", \"if\": \"dna\"},"
    "      {\"type\": \"parameter\", \"name\": \"--mode\", \"param\": \"mode\"},"
    "      {\"type\": \"parameter\", \"name\": \"--note\", \"param\": \"note\"},"
    "      {\"type\": \"output\", \"name\": \"--tblout\", \"port\": \"hits\"},"
    "      {\"type\": \"input\", \"port\": \"query\"},"
    "      {\"type\": \"input\", \"value\": \"file:///refs/rfam.fa\", \"cache\": false}"
    "    ],"
    "    \"stderr\": {\"type\": \"uri\", \"port\": \"log\"},"
    "    \"env\": {\"OMP_NUM_THREADS\": {\"param\": \"cpu\"}, \"LANG\": \"C\"}"
    "  },"
    "  \"params\": {"
    "    \"cpu\": {\"type\": \"int\", \"default\": 2, \"min\": 1, \"max\": 64},"
    "    \"evalue\": {\"type\": \"number\", \"default\": 10},"
    "    \"dna\": {\"type\": \"bool\", \"default\": false},"
    "    \"mode\": {\"type\": \"enum\", \"values\": [\"fast\", \"slow\"], \"default\": \"fast\"},"
    "    \"note\": {\"type\": \"string\", \"required\": false, \"max_length\": 8}"
    "  },"
    "  \"inputs\": {\"query\": {\"description\": \"FASTA queries\"}},"
    "  \"outputs\": {\"hits\": null, \"log\": {\"required\": false}},"
    "  \"requires\": {\"db\": \"rfam\"},"
    "  \"defaults\": {\"queue\": \"bio\", \"timeout_s\": 600, \"labels\": {\"tool\": \"nhmmer\"},"
    "                \"resources\": {\"memory_mb\": 512}}"
    "}";

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!j) fail_msg("bad test json (%s): %s", jerr.text, text);
    return j;
}

static json_t *def_ok(const char *text)
{
    json_t *in = load(text), *out = NULL;
    struct err e = ERR_INIT;
    int rc = service_parse(in, "nhmmer", &out, &e);
    if (rc) fail_msg("service_parse: %s (field %s)", e.msg, e.field);
    json_decref(in);
    return out;
}

static void test_names(void **state)
{
    (void)state;
    assert_true(service_name_valid("nhmmer"));
    assert_true(service_name_valid("blast.2-x_y"));
    assert_true(service_name_valid("0abc"));
    assert_false(service_name_valid(""));
    assert_false(service_name_valid(NULL));
    assert_false(service_name_valid("Nhmmer"));
    assert_false(service_name_valid(".x"));
    assert_false(service_name_valid("-x"));
    assert_false(service_name_valid("a/b"));
    assert_false(service_name_valid("a b"));
    char long_name[66];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    assert_false(service_name_valid(long_name));
    long_name[64] = '\0';
    assert_true(service_name_valid(long_name));
    assert_true(service_param_name_valid("query_1"));
    assert_true(service_param_name_valid("_x-y"));
    assert_false(service_param_name_valid("1x"));
    assert_false(service_param_name_valid("a.b")); /* workflows write node.port */
}

static void test_definition_normalised(void **state)
{
    (void)state;
    json_t *d = def_ok(nhmmer_def);
    json_t *cpu = json_object_get(json_object_get(d, "params"), "cpu");
    assert_string_equal(json_string_value(json_object_get(cpu, "type")), "int");
    assert_int_equal(json_integer_value(json_object_get(cpu, "default")), 2);
    assert_true(json_is_false(json_object_get(cpu, "required")));
    assert_true(json_is_null(json_object_get(cpu, "description")));
    json_t *note = json_object_get(json_object_get(d, "params"), "note");
    assert_true(json_is_null(json_object_get(note, "default")));
    assert_true(json_is_false(json_object_get(note, "required")));
    json_t *query = json_object_get(json_object_get(d, "inputs"), "query");
    assert_true(json_is_true(json_object_get(query, "required")));
    assert_string_equal(json_string_value(json_object_get(query, "description")), "FASTA queries");
    json_t *hits = json_object_get(json_object_get(d, "outputs"), "hits");
    assert_true(json_is_true(json_object_get(hits, "required")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(d, "requires"), "db")),
                        "rfam");
    assert_string_equal(json_string_value(json_object_get(json_object_get(d, "defaults"), "queue")),
                        "bio");
    /* the same definition again is equal (PUT compares them to find a repeat) */
    json_t *again = def_ok(nhmmer_def);
    assert_true(json_equal(d, again));
    json_decref(again);
    json_decref(d);

    /* the smallest one: a program */
    d = def_ok("{\"command\": {\"program\": \"true\"}}");
    assert_int_equal(json_object_size(json_object_get(d, "params")), 0);
    assert_int_equal(json_object_size(json_object_get(d, "defaults")), 0);
    json_decref(d);
}

/* Expands job text against the nhmmer definition; *spec gets spec_parse's result, its
   defaults written in (spec_expand) for the checks to read. */
static void expand_ok(const json_t *d, const char *job_text, struct job_spec *spec)
{
    json_t *job = load(job_text), *out = NULL;
    struct err e = ERR_INIT;
    if (service_expand(d, "nhmmer", 3, job, "", &out, &e))
        fail_msg("service_expand: %s (field %s)", e.msg, e.field);
    if (spec_parse(out, "", spec, &e))
        fail_msg("spec_parse of the expansion: %s (field %s)", e.msg, e.field);
    spec_views(spec, spec_expand(spec->json));
    json_decref(out);
    json_decref(job);
}

static const char *arg_at(const json_t *spec, size_t i, const char *key)
{
    json_t *args = json_object_get(json_object_get(spec, "command"), "arguments");
    return json_string_value(json_object_get(json_array_get(args, i), key));
}

static void test_expand(void **state)
{
    (void)state;
    json_t *d = def_ok(nhmmer_def);
    struct job_spec s;

    /* only the required ports: every default, the optional ones left out */
    expand_ok(d,
              "{\"service\": \"nhmmer\", \"params\": {\"query\": \"s3://in/q.fa\","
              " \"hits\": \"s3://out/hits.tbl\"}}",
              &s);
    json_t *cmd = json_object_get(s.json, "command");
    assert_string_equal(json_string_value(json_object_get(cmd, "program")), "nhmmer");
    json_t *args = json_object_get(cmd, "arguments");
    assert_int_equal(json_array_size(args), 6); /* no --dna, no --note */
    assert_string_equal(arg_at(s.json, 0, "name"), "--cpu");
    assert_string_equal(arg_at(s.json, 0, "value"), "2");
    assert_string_equal(arg_at(s.json, 1, "value"), "10");
    assert_string_equal(arg_at(s.json, 2, "value"), "fast");
    assert_string_equal(arg_at(s.json, 3, "type"), "output");
    assert_string_equal(arg_at(s.json, 3, "value"), "s3://out/hits.tbl");
    assert_string_equal(arg_at(s.json, 4, "type"), "input");
    assert_string_equal(arg_at(s.json, 4, "value"), "s3://in/q.fa");
    assert_string_equal(arg_at(s.json, 5, "value"), "file:///refs/rfam.fa");
    assert_string_equal(json_string_value(json_object_get(json_object_get(cmd, "stderr"), "type")),
                        "pipe"); /* the optional log port was not given */
    json_t *env = json_object_get(cmd, "env");
    assert_string_equal(json_string_value(json_object_get(env, "OMP_NUM_THREADS")), "2");
    assert_string_equal(json_string_value(json_object_get(env, "LANG")), "C");
    assert_string_equal(s.queue, "bio");
    assert_string_equal(s.service, "nhmmer");
    assert_true(s.timeout_s == 600);
    assert_int_equal(json_integer_value(json_object_get(s.json, "service_version")), 3);
    json_t *params = json_object_get(s.json, "params");
    assert_int_equal(json_integer_value(json_object_get(params, "cpu")), 2);
    assert_true(json_is_false(json_object_get(params, "dna")));
    assert_null(json_object_get(params, "note"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(s.json, "requires"), "db")), "rfam");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(s.json, "resources"), "memory_mb")),
        512);
    spec_release(&s);

    /* every param given, as a command line gives them (text), and the job's own fields */
    expand_ok(
        d,
        "{\"service\": \"nhmmer\", \"service_version\": 3, \"queue\": \"fast\","
        " \"priority\": 5, \"requires\": {\"gpu\": \"no\"}, \"labels\": {\"run\": \"7\"},"
        " \"params\": {\"query\": \"https://example.org/q.fa\", \"hits\": \"s3://out/h\","
        " \"log\": \"s3://out/log\", \"cpu\": \"8\", \"evalue\": \"0.001\", \"dna\": \"true\","
        " \"mode\": \"slow\", \"note\": \"hi\"}}",
        &s);
    args = json_object_get(json_object_get(s.json, "command"), "arguments");
    assert_int_equal(json_array_size(args), 8);
    assert_string_equal(arg_at(s.json, 0, "value"), "8");
    assert_string_equal(arg_at(s.json, 1, "value"), "0.001");
    assert_string_equal(arg_at(s.json, 2, "value"), "--dna");
    assert_string_equal(arg_at(s.json, 3, "value"), "slow");
    assert_string_equal(arg_at(s.json, 4, "value"), "hi");
    cmd = json_object_get(s.json, "command");
    assert_string_equal(json_string_value(json_object_get(json_object_get(cmd, "stderr"), "value")),
                        "s3://out/log");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(cmd, "env"), "OMP_NUM_THREADS")), "8");
    assert_string_equal(s.queue, "fast");
    assert_int_equal(s.priority, 5);
    json_t *req = json_object_get(s.json, "requires");
    assert_int_equal(json_object_size(req), 2);
    assert_string_equal(json_string_value(json_object_get(req, "gpu")), "no");
    json_t *labels = json_object_get(s.json, "labels");
    assert_string_equal(json_string_value(json_object_get(labels, "tool")), "nhmmer");
    assert_string_equal(json_string_value(json_object_get(labels, "run")), "7");
    params = json_object_get(s.json, "params");
    assert_int_equal(json_integer_value(json_object_get(params, "cpu")), 8);
    assert_true(json_is_true(json_object_get(params, "dna")));
    spec_release(&s);

    /* JSON types: 4.0 is the int 4; a number stays a number */
    expand_ok(d,
              "{\"service\": \"nhmmer\", \"params\": {\"query\": \"s3://in/q\","
              " \"hits\": \"s3://out/h\", \"cpu\": 4.0, \"evalue\": 1e-5, \"dna\": false}}",
              &s);
    assert_string_equal(arg_at(s.json, 0, "value"), "4");
    assert_string_equal(arg_at(s.json, 1, "value"), "1e-05");
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(s.json, "command"), "arguments")), 6);
    spec_release(&s);
    json_decref(d);
}

struct bad_case {
    const char *json;
    const char *field;
    const char *words; /* in the message */
};

static void check_bad_def(const struct bad_case *c)
{
    json_t *in = load(c->json), *out = NULL;
    struct err e = ERR_INIT;
    int rc = service_parse(in, "x", &out, &e);
    if (rc != ERR_INVALID) fail_msg("accepted, or not ERR_INVALID (%d): %s", rc, c->json);
    if (strcmp(e.field, c->field))
        fail_msg("field '%s', expected '%s' (%s) for %s", e.field, c->field, e.msg, c->json);
    if (!strstr(e.msg, c->words)) fail_msg("message '%s' lacks '%s'", e.msg, c->words);
    if (strncmp(e.msg, c->field, strlen(c->field)) && strncmp(e.msg, "unknown field", 13))
        fail_msg("message '%s' does not start with its field '%s'", e.msg, c->field);
    assert_null(out);
    json_decref(in);
}

#define P "\"command\": {\"program\": \"p\", \"arguments\": "

static void test_bad_definitions(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"[]", "", "must be a json object"},
        {"{\"command\": {\"program\": \"p\"}, \"versoin\": 2}", "versoin", "not a field"},
        {"{\"params\": {}}", "command", "must be an object"},
        {"{\"command\": {}}", "command.program", "is required"},
        {"{\"command\": {\"shell\": \"echo hi\"}}", "command.shell", "never through a shell"},
        {"{\"command\": {\"program\": \"p\", \"argv\": [\"a\"]}}", "command.argv", "arguments"},
        {"{" P "[{\"type\": \"parameter\", \"param\": \"cpu\"}]}, \"params\": {\"cpu\": "
         "{\"type\": \"integer\"}}}",
         "params.cpu.type", "one of string, int"},
        {"{" P "[{\"type\": \"parameter\", \"param\": \"cpu\"}]}, \"params\": {\"cpu\": "
         "{\"type\": \"int\", \"default\": \"two\"}}}",
         "params.cpu.default", "an integer"},
        {"{" P "[{\"type\": \"parameter\", \"param\": \"cpu\"}]}, \"params\": {\"cpu\": "
         "{\"type\": \"int\", \"default\": 100, \"max\": 64}}}",
         "params.cpu.default", "an integer of at most 64"},
        {"{" P "[{\"type\": \"parameter\", \"param\": \"cpu\"}]}, \"params\": {\"cpu\": "
         "{\"type\": \"int\", \"default\": 1, \"required\": true}}}",
         "params.cpu.required", "has a default"},
        {"{" P "[{\"type\": \"parameter\", \"param\": \"cpu\"}]}, \"params\": {\"cpu\": "
         "{\"type\": \"int\", \"min\": 5, \"max\": 1}}}",
         "params.cpu.max", "at least min"},
        {"{" P "[{\"type\": \"parameter\", \"param\": \"cpu\"}]}, \"params\": {\"cpu\": "
         "{\"type\": \"int\", \"min\": 1.5}}}",
         "params.cpu.min", "an integer"},
        {"{" P "[{\"type\": \"parameter\", \"param\": \"s\"}]}, \"params\": {\"s\": "
         "{\"type\": \"string\", \"min\": 1}}}",
         "params.s.min", "not a field of a param of type string"},
        {"{" P "[{\"type\": \"parameter\", \"param\": \"m\"}]}, \"params\": {\"m\": "
         "{\"type\": \"enum\"}}}",
         "params.m.values", "required"},
        {"{" P "[{\"type\": \"parameter\", \"param\": \"m\"}]}, \"params\": {\"m\": "
         "{\"type\": \"enum\", \"values\": [\"a\", \"a\"]}}}",
         "params.m.values[1]", "repeats"},
        {"{" P "[{\"type\": \"parameter\", \"param\": \"m\"}]}, \"params\": {\"m\": "
         "{\"type\": \"enum\", \"values\": [\"a\"], \"default\": \"b\"}}}",
         "params.m.default", "one of 'a'"},
        {"{" P "[]}, \"params\": {\"1x\": {\"type\": \"int\"}}}", "params.1x", "not a valid name"},
        {"{" P "[]}, \"params\": {\"x\": {\"type\": \"int\", \"colour\": 1}}}", "params.x.colour",
         "not a field of a param"},
        {"{" P "[{\"type\": \"input\", \"port\": \"cpu\"}]}, \"params\": {\"cpu\": "
         "{\"type\": \"int\"}}, \"inputs\": {\"cpu\": {}}}",
         "inputs.cpu", "already declared in params"},
        {"{" P "[{\"type\": \"parameter\", \"param\": \"cpus\"}]}, \"params\": {\"cpu\": "
         "{\"type\": \"int\"}}}",
         "command.arguments[0].param", "'cpus' is not declared in params"},
        {"{" P "[{\"type\": \"input\", \"port\": \"hits\"}]}, \"outputs\": {\"hits\": {}}}",
         "command.arguments[0].port", "'hits' is not declared in inputs"},
        {"{" P "[{\"type\": \"input\", \"port\": \"nope\"}]}}", "command.arguments[0].port",
         "'nope' is not declared in inputs"},
        {"{" P "[{\"type\": \"input\", \"param\": \"q\"}]}, \"params\": {\"q\": "
         "{\"type\": \"string\"}}}",
         "command.arguments[0].param", "takes a port"},
        {"{" P "[{\"type\": \"parameter\", \"port\": \"q\"}]}, \"inputs\": {\"q\": {}}}",
         "command.arguments[0].port", "takes a param"},
        {"{" P "[{\"type\": \"parameter\", \"value\": \"1\", \"param\": \"q\"}]}, \"params\": "
         "{\"q\": {\"type\": \"string\"}}}",
         "command.arguments[0]", "one of value"},
        {"{" P "[{\"type\": \"parameter\"}]}}", "command.arguments[0]", "one of value"},
        {"{" P "[{\"type\": \"flag\", \"value\": \"1\"}]}}", "command.arguments[0].type",
         "one of input"},
        {"{" P "[{\"type\": \"parameter\", \"value\": \"-v\", \"if\": \"verbose\"}]}}",
         "command.arguments[0].if", "'verbose' is not declared"},
        {"{" P "[{\"type\": \"parameter\", \"value\": \"1\", \"colour\": 1}]}}",
         "command.arguments[0].colour", "not a field of an argument"},
        {"{\"command\": {\"program\": \"p\", \"stdout\": {\"type\": \"uri\", \"port\": \"q\"}}, "
         "\"inputs\": {\"q\": {}}}",
         "command.stdout.port", "not declared in outputs"},
        {"{\"command\": {\"program\": \"p\", \"stdin\": {\"type\": \"pipe\", \"port\": \"q\"}}, "
         "\"inputs\": {\"q\": {}}}",
         "command.stdin.type", "\"uri\""},
        {"{\"command\": {\"program\": \"p\", \"env\": {\"N\": {\"param\": \"n\"}}}}",
         "command.env.N.param", "not declared in params"},
        {"{\"command\": {\"program\": \"p\", \"env\": {\"N\": {}}}}", "command.env.N",
         "{\"param\": NAME}"},
        {"{" P "[]}, \"params\": {\"unused\": {\"type\": \"int\"}}}", "params.unused",
         "not used by the command"},
        {"{" P "[]}, \"outputs\": {\"out\": {}}}", "outputs.out", "not used by the command"},
        {"{\"command\": {\"program\": \"p\"}, \"defaults\": {\"key\": \"k\"}}", "defaults.key",
         "not a default"},
        {"{\"command\": {\"program\": \"p\"}, \"defaults\": []}", "defaults", "must be an object"},
        /* what only a job spec knows: refused by the trial expansion, under the definition's
           own path */
        {"{\"command\": {\"program\": \"p\"}, \"defaults\": {\"queue\": \"Bad Queue\"}}",
         "defaults.queue", "[a-z0-9._-]"},
        {"{\"command\": {\"program\": \"p\"}, \"defaults\": {\"timeout_s\": -1}}",
         "defaults.timeout_s", "must be"},
        {"{\"command\": {\"program\": \"p\"}, \"requires\": {\"bad key!\": \"x\"}}",
         "requires.bad key!", "not a valid name"},
        {"{\"command\": {\"program\": \"p\", \"env\": {\"DROVER_X\": \"1\"}}}",
         "command.env.DROVER_X", "reserved"},
        {"{\"command\": {\"program\": \"p\", \"stdout\": {\"type\": \"file\"}}}",
         "command.stdout.type", "must be"},
        {"{\"command\": {\"program\": \"p\", \"colour\": 1}}", "command.colour", "unknown"},
        {"{" P "[{\"type\": \"input\", \"value\": \"ftp://x/y\"}]}}", "command.arguments[0].value",
         "uri"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_bad_def(&cases[i]);
}

static void check_bad_job(const json_t *d, const char *path, const char *job_text,
                          const char *field, const char *words)
{
    json_t *job = load(job_text), *out = NULL;
    struct err e = ERR_INIT;
    int rc = service_expand(d, "nhmmer", 3, job, path, &out, &e);
    if (rc != ERR_INVALID) fail_msg("accepted, or not ERR_INVALID (%d): %s", rc, job_text);
    if (strcmp(e.field, field))
        fail_msg("field '%s', expected '%s' (%s) for %s", e.field, field, e.msg, job_text);
    if (!strstr(e.msg, words)) fail_msg("message '%s' lacks '%s'", e.msg, words);
    assert_null(out);
    json_decref(job);
}

#define J(params) "{\"service\": \"nhmmer\", \"params\": {\"query\": \"s3://in/q\", " params "}}"

static void test_bad_params(void **state)
{
    (void)state;
    json_t *d = def_ok(nhmmer_def);
    check_bad_job(d, "", J("\"hits\": \"s3://out/h\", \"cpus\": 2"), "params.cpus",
                  "not a param of service 'nhmmer' version 3 (it has: cpu, evalue");
    check_bad_job(d, "", "{\"service\": \"nhmmer\", \"params\": {\"hits\": \"s3://out/h\"}}",
                  "params.query", "is required by service 'nhmmer' version 3 (an input");
    check_bad_job(d, "", "{\"service\": \"nhmmer\"}", "params.query", "is required");
    check_bad_job(d, "", J("\"hits\": \"s3://out/h\", \"cpu\": \"two\""), "params.cpu",
                  "must be an integer between 1 and 64");
    check_bad_job(d, "", J("\"hits\": \"s3://out/h\", \"cpu\": 65"), "params.cpu",
                  "between 1 and 64");
    check_bad_job(d, "", J("\"hits\": \"s3://out/h\", \"cpu\": 2.5"), "params.cpu", "an integer");
    check_bad_job(d, "", J("\"hits\": \"s3://out/h\", \"cpu\": true"), "params.cpu", "an integer");
    check_bad_job(d, "", J("\"hits\": \"s3://out/h\", \"cpu\": \"2x\""), "params.cpu",
                  "an integer");
    check_bad_job(d, "", J("\"hits\": \"s3://out/h\", \"evalue\": \"1e400\""), "params.evalue",
                  "a number");
    check_bad_job(d, "", J("\"hits\": \"s3://out/h\", \"evalue\": []"), "params.evalue",
                  "a number");
    check_bad_job(d, "", J("\"hits\": \"s3://out/h\", \"dna\": \"yes\""), "params.dna",
                  "true or false");
    check_bad_job(d, "", J("\"hits\": \"s3://out/h\", \"mode\": \"medium\""), "params.mode",
                  "one of 'fast', 'slow'");
    check_bad_job(d, "", J("\"hits\": \"s3://out/h\", \"note\": \"much too long\""), "params.note",
                  "at most 8 bytes");
    check_bad_job(d, "", J("\"hits\": \"s3://out/h\", \"note\": 5"), "params.note", "a string");
    check_bad_job(d, "", J("\"hits\": \"https://example.org/h\""), "params.hits",
                  "an s3:// or file:/// uri");
    check_bad_job(d, "", J("\"hits\": \"s3://out/../h\""), "params.hits", "'..'");
    check_bad_job(d, "", "{\"service\": \"nhmmer\", \"params\": {\"query\": 5}}", "params.query",
                  "the uri of an object");
    check_bad_job(d, "", "{\"service\": \"nhmmer\", \"params\": [1]}", "params",
                  "must be an object");
    check_bad_job(d, "", "{\"service\": \"nhmmer\", \"command\": {\"program\": \"rm\"}}", "command",
                  "gives only params");
    check_bad_job(d, "[4]", J("\"hits\": \"s3://out/h\", \"cpu\": 0"), "[4].params.cpu",
                  "between 1 and 64");
    json_decref(d);
}

/* A job's own bad field is spec_parse's to refuse, after the expansion, naming it. */
static void test_job_fields_checked_after(void **state)
{
    (void)state;
    json_t *d = def_ok(nhmmer_def);
    json_t *job = load(J("\"hits\": \"s3://out/h\"")), *out = NULL;
    json_object_set_new(job, "priority", json_integer(5000));
    json_object_set_new(job, "colour", json_string("red"));
    struct err e = ERR_INIT;
    assert_int_equal(service_expand(d, "nhmmer", 3, job, "", &out, &e), 0);
    struct job_spec s;
    assert_int_equal(spec_parse(out, "", &s, &e), ERR_INVALID);
    assert_true(!strcmp(e.field, "colour") || !strcmp(e.field, "priority"));
    json_decref(out);
    json_decref(job);
    json_decref(d);
}

/* params in a spec that no service expanded: refused. */
static void test_spec_params_need_service(void **state)
{
    (void)state;
    json_t *in = load("{\"service\": \"x\", \"params\": {\"a\": 1}}");
    struct job_spec s;
    struct err e = ERR_INIT;
    assert_int_equal(spec_parse(in, "", &s, &e), ERR_INVALID);
    assert_string_equal(e.field, "params");
    assert_non_null(strstr(e.msg, "needs a service defined in the hub"));
    json_decref(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_definition_normalised),
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_bad_definitions),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_job_fields_checked_after),
        cmocka_unit_test(test_spec_params_need_service),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
