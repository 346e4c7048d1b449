/*
 * test_agent_limits.c - agent/limits.c's reading of where the agent's cgroups are, from
 * /proc/PID/cgroup and /proc/PID/mountinfo texts of the kinds machines have: cgroup v1
 * (hybrid, with co-mounted controllers), pure v2 (a systemd service), a container whose
 * mounts show only its own part of the hierarchy, escaped mount points; and what an
 * agent says when it can use no cgroup (--limits rlimit, none). Creating cgroups is
 * tested for real in tests/e2e/test_limits.py.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h> /* before cmocka.h, which redefines malloc and free */
#include <string.h>
#include <unistd.h>

#include <jansson.h>

/* Memory the code under test allocates is freed with libc's free, not cmocka's. */
static void lib_free(void *p)
{
    free(p);
}

#include <cmocka.h>

#include "agent/limits.h"
#include "tmpdir.h"

static char dir_buf[PATH_MAX];
static char *dir;

static char *write_tmp(const char *name, const char *text)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void check_str(char *got, const char *want)
{
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    lib_free(got);
}

static const char hybrid_cgroup[] = "12:pids:/\n"
                                    "4:memory:/process_api/abc\n"
                                    "2:cpu,cpuacct:/user.slice\n"
                                    "1:name=systemd:/\n"
                                    "0::/\n";

static const char hybrid_mounts[] =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup "
    "rw,cpu,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

static void test_hybrid_v1(void **state)
{
    (void)state;
    char *cg = write_tmp("cgroup", hybrid_cgroup), *mi = write_tmp("mountinfo", hybrid_mounts);
    char *p = limits_own_path(cg, "memory");
    assert_string_equal(p, "/process_api/abc");
    check_str(limits_group_dir(mi, "cgroup", "memory", p), "/sys/fs/cgroup/memory/process_api/abc");
    lib_free(p);
    p = limits_own_path(cg, "pids");
    assert_string_equal(p, "/");
    check_str(limits_group_dir(mi, "cgroup", "pids", p), "/sys/fs/cgroup/pids");
    lib_free(p);
    /* co-mounted: "cpu" is one of the options, not "cpuacct" taken for it */
    p = limits_own_path(cg, "cpu");
    assert_string_equal(p, "/user.slice");
    check_str(limits_group_dir(mi, "cgroup", "cpu", p), "/sys/fs/cgroup/cpu,cpuacct/user.slice");
    lib_free(p);
    check_str(limits_own_path(cg, "cpuset"), NULL);
    check_str(limits_own_path(cg, "acct"), NULL); /* a word, not a part of one */
    check_str(limits_own_path(cg, NULL), "/");
    check_str(limits_group_dir(mi, "cgroup2", NULL, "/"), "/sys/fs/cgroup/unified");
    check_str(limits_group_dir(mi, "cgroup", "blkio", "/"), NULL);
    lib_free(cg);
    lib_free(mi);
}

static void test_pure_v2_service(void **state)
{
    (void)state;
    char *cg = write_tmp("cgroup2", "0::/system.slice/drover-agent.service\n");
    char *mi = write_tmp("mountinfo2", "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 "
                                       "rw,nsdelegate,memory_recursiveprot\n");
    char *p = limits_own_path(cg, NULL);
    assert_string_equal(p, "/system.slice/drover-agent.service");
    check_str(limits_group_dir(mi, "cgroup2", NULL, p),
              "/sys/fs/cgroup/system.slice/drover-agent.service");
    lib_free(p);
    check_str(limits_own_path(cg, "memory"), NULL); /* no v1 hierarchy */
    check_str(limits_group_dir(mi, "cgroup", "memory", "/"), NULL);
    lib_free(cg);
    lib_free(mi);
}

/* A mount that shows a part of the hierarchy (its root field), and escaped mount points. */
static void test_mount_roots_and_escapes(void **state)
{
    (void)state;
    char *mi = write_tmp(
        "mountinfo3", "50 40 0:30 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"
                      "51 40 0:31 /other /mnt/pids\\040here rw - cgroup cgroup rw,pids\n"
                      "52 40 0:31 / /mnt/pids\\040all rw - cgroup cgroup rw,pids\n");
    check_str(limits_group_dir(mi, "cgroup", "memory", "/docker/abc/job"),
              "/sys/fs/cgroup/memory/job");
    check_str(limits_group_dir(mi, "cgroup", "memory", "/docker/abc"), "/sys/fs/cgroup/memory");
    /* /docker/abcd is not below /docker/abc */
    check_str(limits_group_dir(mi, "cgroup", "memory", "/docker/abcd"), NULL);
    /* the first mount does not show "/x": the second, at the root, does */
    check_str(limits_group_dir(mi, "cgroup", "pids", "/x"), "/mnt/pids all/x");
    check_str(limits_group_dir(mi, "cgroup", "pids", "/other/y"), "/mnt/pids here/y");
    check_str(limits_group_dir("/nonexistent/mountinfo", "cgroup", "pids", "/"), NULL);
    lib_free(mi);
}

static void test_rlimit_and_none(void **state)
{
    (void)state;
    struct limits l;
    struct err e = ERR_INIT;
    assert_int_equal(limits_init(&l, "rlimit", "inst", &e), 0);
    json_t *j = limits_json(&l);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text,
                        "{\"cpus\":\"none\",\"mechanism\":\"rlimit\",\"memory_mb\":\"rlimit\","
                        "\"pids\":\"none\"}");
    json_decref(j);
    char *how = limits_describe(&l);
    assert_non_null(strstr(how, "resource limits by rlimit: memory_mb=rlimit pids=none cpus=none"));
    assert_non_null(strstr(how, "jobs asking for a limit marked none run without it"));

    /* a job's memory becomes RLIMIT_AS; pids and cpus are named as not enforced */
    struct spec_resources r = {.memory_mb = 64, .cpus = 0.5, .pids = 10};
    struct limits_job lj;
    char *missing = NULL;
    assert_int_equal(limits_job_prepare(&l, &lj, "job-1", &r, &missing, &e), 0);
    assert_true(lj.active);
    assert_true(lj.rlimit_as == 64ull << 20);
    assert_string_equal(missing, "pids, cpus");
    assert_false(limits_job_oom(&lj));
    assert_int_equal(limits_job_signal(&lj, 0), -1); /* no group: the caller signals */
    assert_true(limits_job_release(&l, &lj, true));
    assert_int_equal(l.groups, 0);
    limits_release(&l);
    lib_free(text);
    lib_free(how);
    lib_free(missing);

    assert_int_equal(limits_init(&l, "none", "inst", &e), 0);
    struct spec_resources none = {0};
    assert_int_equal(limits_job_prepare(&l, &lj, "job-2", &none, &missing, &e), 0);
    assert_false(lj.active);
    assert_null(missing);
    assert_true(limits_job_release(&l, &lj, true));
    r.cpus = 0;
    r.pids = 0;
    assert_int_equal(limits_job_prepare(&l, &lj, "job-3", &r, &missing, &e), 0);
    assert_string_equal(missing, "memory_mb");
    assert_true(lj.rlimit_as == 0);
    limits_job_release(&l, &lj, true);
    lib_free(missing);
    limits_release(&l);

    assert_int_equal(limits_init(&l, "cgroups", "inst", &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "'cgroups'"));
    limits_release(&l);
}

static int setup(void **state)
{
    (void)state;
    dir = test_mkdtemp(dir_buf, sizeof(dir_buf), "drover-test-limits");
    return dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    static const char *const names[] = {"cgroup", "mountinfo", "cgroup2", "mountinfo2",
                                        "mountinfo3"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    return rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hybrid_v1),
        cmocka_unit_test(test_pure_v2_service),
        cmocka_unit_test(test_mount_roots_and_escapes),
        cmocka_unit_test(test_rlimit_and_none),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
