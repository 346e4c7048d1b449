/*
 * test_services_hub.c - unit tests for server/api_services.c's part in a
 * submission (services.h), on a real SQLite store in a mkdtemp folder: what a
 * job's expansion reads of the hub, and the write's check that it still holds
 * when the hub changed between the two (a retire, a new version, a first
 * definition).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>
#include <unistd.h>

#include <jansson.h>

/* Frees what the library allocated, with libc's free(): defined before cmocka.h replaces free()
 * in this file with its own checked allocator. */
static void lib_free(void *p)
{
    free(p);
}

#include <cmocka.h>

#include "server/services.h"
#include "store/store.h"
#include "tmpdir.h"

struct fixture {
    char dir[64];
    char uri[128];
    struct store *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!test_mkdtemp(f->dir, sizeof(f->dir), "drover-test-hub")) return -1;
    snprintf(f->uri, sizeof(f->uri), "sqlite:%s/drover.db", f->dir);
    struct err e = ERR_INIT;
    if (store_open(f->uri, NULL, &f->st, &e)) {
        fprintf(stderr, "store_open: %s\n", e.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    char path[160];
    const char *const files[] = {"drover.db", "drover.db-wal", "drover.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
        unlink(path);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void define(struct store *st, const char *name, const char *def_text)
{
    json_t *in = json_loads(def_text, 0, NULL), *def = NULL;
    struct err e = ERR_INIT;
    assert_non_null(in);
    if (service_parse(in, name, &def, &e)) fail_msg("service_parse: %s", e.msg);
    char *text = json_dumps(def, JSON_COMPACT);
    struct service_rec r = {.name = (char *)name, .definition = text, .created_at = 1};
    assert_int_equal(store_begin(st, &e), 0);
    assert_int_equal(store_service_insert(st, &r, &e), 0);
    assert_int_equal(store_commit(st, &e), 0);
    lib_free(text);
    json_decref(def);
    json_decref(in);
}

static void retire(struct store *st, const char *name)
{
    struct err e = ERR_INIT;
    assert_int_equal(store_begin(st, &e), 0);
    assert_int_equal(store_service_retire(st, name, 2, &e), 0);
    assert_int_equal(store_commit(st, &e), 0);
}

#define ECHO_DEF                                                                                   \
    "{\"command\": {\"program\": \"echo\", \"arguments\": [{\"type\": \"parameter\", "             \
    "\"param\": \"word\"}]}, \"params\": {\"word\": {\"type\": \"string\", \"default\": \"hi\"}}}"

/* Expands job_text; returns the expansion (or NULL when the hub has none), use filled. */
static json_t *expand(struct store *st, const char *job_text, const char *path,
                      struct service_use *use)
{
    json_t *job = json_loads(job_text, 0, NULL), *out = NULL;
    struct err e = ERR_INIT;
    struct services_memo memo = {0};
    assert_non_null(job);
    if (services_expand_job(st, &memo, job, path, &out, use, &e))
        fail_msg("services_expand_job: %s (%s)", e.msg, e.field);
    services_memo_release(&memo);
    json_decref(job);
    return out;
}

static void test_recheck_new_version(void **state)
{
    struct fixture *f = *state;
    struct service_use use, pinned;
    struct err e = ERR_INIT;
    define(f->st, "echo", ECHO_DEF);
    json_t *out = expand(f->st, "{\"service\": \"echo\"}", "", &use);
    assert_non_null(out);
    assert_string_equal(use.name, "echo");
    assert_int_equal(use.version, 1);
    assert_false(use.pinned);
    json_decref(out);
    out = expand(f->st, "{\"service\": \"echo\", \"service_version\": 1}", "[2]", &pinned);
    assert_true(pinned.pinned);
    json_decref(out);
    assert_int_equal(services_recheck(f->st, &use, &e), 0);

    /* version 2 comes between the expansion and the write */
    define(f->st, "echo", "{\"command\": {\"program\": \"echo\"}}");
    assert_int_equal(services_recheck(f->st, &use, &e), ERR_CONFLICT);
    assert_string_equal(e.field, "service");
    assert_non_null(strstr(e.msg, "changed to version 2"));
    err_clear(&e);
    assert_int_equal(services_recheck(f->st, &pinned, &e), 0); /* it asked for version 1 */

    /* retired: both refused, naming the job's place */
    retire(f->st, "echo");
    assert_int_equal(services_recheck(f->st, &pinned, &e), ERR_INVALID);
    assert_string_equal(e.field, "[2].service");
    assert_non_null(strstr(e.msg, "is retired"));
}

static void test_recheck_first_definition(void **state)
{
    struct fixture *f = *state;
    struct service_use use;
    struct err e = ERR_INIT;
    /* no service: the name is a program; no expansion, and the write checks it is still so */
    assert_null(expand(f->st, "{\"service\": \"echo\"}", "", &use));
    assert_string_equal(use.name, "echo");
    assert_int_equal(use.version, 0);
    assert_int_equal(services_recheck(f->st, &use, &e), 0);
    define(f->st, "echo", ECHO_DEF);
    assert_int_equal(services_recheck(f->st, &use, &e), ERR_CONFLICT);
    assert_non_null(strstr(e.msg, "was defined in the hub while this job was submitted"));

    /* names the hub cannot hold are not looked up at all */
    assert_null(expand(f->st, "{\"service\": \"My Tool\"}", "", &use));
    assert_string_equal(use.name, "");
    assert_null(expand(f->st, "{\"command\": {\"program\": \"x\"}}", "", &use));
    assert_string_equal(use.name, "");
}

static void test_expand_refusals(void **state)
{
    struct fixture *f = *state;
    struct service_use use;
    define(f->st, "echo", ECHO_DEF);
    const char *const cases[][3] = {
        {"{\"service\": \"echo\", \"params\": {\"word\": 5}}", "params.word", "a string"},
        {"{\"service\": \"echo\", \"service_version\": 2}", "service_version", "no version 2"},
        {"{\"service\": \"echo\", \"service_version\": 0}", "service_version", "from 1"},
        {"{\"service\": \"nope\", \"params\": {}}", "service", "not defined in the hub"},
        {"{\"params\": {}}", "service", "is required with params"},
    };
    struct services_memo memo = {0}; /* one for all: as the jobs of one array */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *job = json_loads(cases[i][0], 0, NULL), *out = NULL;
        struct err e = ERR_INIT;
        assert_int_equal(services_expand_job(f->st, &memo, job, "", &out, &use, &e), ERR_INVALID);
        assert_string_equal(e.field, cases[i][1]);
        assert_non_null(strstr(e.msg, cases[i][2]));
        assert_null(out);
        json_decref(job);
    }
    /* the memo holds what it read: a good job after the bad ones, then two versions */
    json_t *job = json_loads("{\"service\": \"echo\", \"params\": {\"word\": \"yo\"}}", 0, NULL),
           *out = NULL;
    struct err e = ERR_INIT;
    assert_int_equal(services_expand_job(f->st, &memo, job, "", &out, &use, &e), 0);
    assert_int_equal(use.version, 1);
    json_decref(out);
    json_decref(job);
    define(f->st, "echo", "{\"command\": {\"program\": \"true\"}}");
    services_memo_release(&memo);
    job = json_loads("{\"service\": \"echo\", \"service_version\": 1}", 0, NULL);
    assert_int_equal(services_expand_job(f->st, &memo, job, "", &out, &use, &e), 0);
    assert_int_equal(use.version, 1);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(out, "command"), "program")), "echo");
    json_decref(out);
    json_decref(job);
    job = json_loads("{\"service\": \"echo\"}", 0, NULL);
    assert_int_equal(services_expand_job(f->st, &memo, job, "", &out, &use, &e), 0);
    assert_int_equal(use.version, 2);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(out, "command"), "program")), "true");
    json_decref(out);
    json_decref(job);
    services_memo_release(&memo);

    retire(f->st, "echo");
    job = json_loads("{\"service\": \"echo\"}", 0, NULL);
    out = NULL;
    err_clear(&e);
    assert_int_equal(services_expand_job(f->st, &memo, job, "[1]", &out, &use, &e), ERR_INVALID);
    assert_string_equal(e.field, "[1].service");
    assert_non_null(strstr(e.msg, "is retired"));
    json_decref(job);
    services_memo_release(&memo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_recheck_new_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recheck_first_definition, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expand_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
