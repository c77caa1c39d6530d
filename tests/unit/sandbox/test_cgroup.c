/*
 * Unit tests of the cgroup code: the v2 implementation against a plain
 * temporary directory laid out like cgroupfs (limits written, pid moved,
 * usage parsed, a missing control file refused by name), version
 * detection, and, where the kernel has them, real v1 and v2 groups.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/internal.h"

struct fake {
    char root[64];
};

static void put(const char *dir, const char *file, const char *text)
{
    char path[SBX_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void get(const char *dir, const char *file, char *buf, size_t cap)
{
    assert_int_equal(sbx_read_file(dir, file, buf, cap), 0);
}

static int fake_setup(void **state)
{
    struct fake *f = calloc(1, sizeof *f);
    snprintf(f->root, sizeof f->root, "/tmp/nx-fakecg-XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    char dir[SBX_PATH_MAX];
    put(f->root, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    snprintf(dir, sizeof dir, "%s/node", f->root);
    mkdir(dir, 0755);
    put(dir, "cgroup.subtree_control", "");
    snprintf(dir, sizeof dir, "%s/node/nexus-sbx", f->root);
    mkdir(dir, 0755);
    put(dir, "cgroup.subtree_control", "");
    snprintf(dir, sizeof dir, "%s/node/nexus-sbx/run1", f->root);
    mkdir(dir, 0755);
    static const char *const files[] = {"memory.max", "memory.swap.max", "cpu.max",
                                        "pids.max",   "cgroup.procs",    "cgroup.kill"};
    for (size_t i = 0; i < NX_ARRAY_LEN(files); i++)
        put(dir, files[i], "");
    *state = f;
    return 0;
}

static int fake_teardown(void **state)
{
    struct fake *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->root);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static const struct sbx_limits test_limits = {
    .memory_bytes = 64u << 20, .cpu_millicores = 500, .pids_max = 32};

static void v2_is_detected_from_cgroup_controllers(void **state)
{
    struct fake *f = *state;
    assert_int_equal(sbx_cgroup_detect(f->root), SBX_CG_V2);
    put(f->root, "cgroup.controllers", "hugetlb\n"); /* this machine's unified mount */
    assert_int_equal(sbx_cgroup_detect(f->root), SBX_CG_NONE);
    char dir[SBX_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/memory", f->root);
    mkdir(dir, 0755);
    put(dir, "tasks", "");
    assert_int_equal(sbx_cgroup_detect(f->root), SBX_CG_V1);
}

static void v2_create_writes_limits_and_enables_controllers(void **state)
{
    struct fake *f = *state;
    struct sbx_cgroup cg;
    char err[SBX_ERR_MAX] = "", buf[128], dir[SBX_PATH_MAX];
    assert_int_equal(sbx_cgroup_create(&cg, SBX_CG_V2, f->root, "/node", "run1", &test_limits, 0,
                                       err, sizeof err),
                     0);
    snprintf(dir, sizeof dir, "%s//node/nexus-sbx/run1", f->root);
    assert_string_equal(cg.dir[0], dir);
    get(cg.dir[0], "memory.max", buf, sizeof buf);
    assert_string_equal(buf, "67108864");
    get(cg.dir[0], "memory.swap.max", buf, sizeof buf);
    assert_string_equal(buf, "0");
    get(cg.dir[0], "cpu.max", buf, sizeof buf);
    assert_string_equal(buf, "50000 100000");
    get(cg.dir[0], "pids.max", buf, sizeof buf);
    assert_string_equal(buf, "32");
    snprintf(dir, sizeof dir, "%s/node", f->root);
    get(dir, "cgroup.subtree_control", buf, sizeof buf);
    assert_string_equal(buf, "+memory +cpu +pids");
    assert_int_equal(sbx_cgroup_add_pid(&cg, 4242, err, sizeof err), 0);
    get(cg.dir[0], "cgroup.procs", buf, sizeof buf);
    assert_string_equal(buf, "4242");
    sbx_cgroup_kill(&cg);
    get(cg.dir[0], "cgroup.kill", buf, sizeof buf);
    assert_string_equal(buf, "1");
}

static void v2_weaken_bits_leave_limits_out(void **state)
{
    struct fake *f = *state;
    struct sbx_cgroup cg;
    char err[SBX_ERR_MAX] = "", buf[64];
    assert_int_equal(sbx_cgroup_create(&cg, SBX_CG_V2, f->root, "/node", "run1", &test_limits,
                                       SBX_WEAKEN_MEMORY | SBX_WEAKEN_CPU | SBX_WEAKEN_PIDS, err,
                                       sizeof err),
                     0);
    get(cg.dir[0], "memory.max", buf, sizeof buf);
    assert_string_equal(buf, "");
    get(cg.dir[0], "pids.max", buf, sizeof buf);
    assert_string_equal(buf, "");
}

static void v2_usage_is_read_from_cpu_stat_peak_and_events(void **state)
{
    struct fake *f = *state;
    struct sbx_cgroup cg;
    char err[SBX_ERR_MAX] = "";
    assert_int_equal(sbx_cgroup_create(&cg, SBX_CG_V2, f->root, "/node", "run1", &test_limits, 0,
                                       err, sizeof err),
                     0);
    put(cg.dir[0], "cpu.stat",
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 3\n"
        "throttled_usec 777\n");
    put(cg.dir[0], "memory.current", "4096\n");
    put(cg.dir[0], "memory.events", "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n");
    struct sbx_usage u = {0};
    assert_int_equal(sbx_cgroup_read_usage(&cg, &u), 0);
    assert_true(u.from_cgroup);
    assert_int_equal(u.cpu_total_us, 1500);
    assert_int_equal(u.cpu_user_us, 1000);
    assert_int_equal(u.cpu_sys_us, 500);
    assert_int_equal(u.nr_throttled, 3);
    assert_int_equal(u.throttled_us, 777);
    assert_int_equal(u.peak_memory_bytes, 4096); /* memory.current before 5.19 */
    assert_true(u.oom_killed);
    put(cg.dir[0], "memory.peak", "1048576\n");
    put(cg.dir[0], "memory.events", "oom 0\noom_kill 0\n");
    memset(&u, 0, sizeof u);
    assert_int_equal(sbx_cgroup_read_usage(&cg, &u), 0);
    assert_int_equal(u.peak_memory_bytes, 1048576);
    assert_false(u.oom_killed);
}

static void v2_missing_control_file_is_refused_by_name(void **state)
{
    struct fake *f = *state;
    char dir[SBX_PATH_MAX], err[SBX_ERR_MAX] = "";
    snprintf(dir, sizeof dir, "%s/node/nexus-sbx/run1/pids.max", f->root);
    assert_int_equal(unlink(dir), 0);
    struct sbx_cgroup cg;
    assert_int_equal(sbx_cgroup_create(&cg, SBX_CG_V2, f->root, "/node", "run1", &test_limits, 0,
                                       err, sizeof err),
                     NX_ERR_IO);
    assert_string_equal(err, "cgroup v2: write pids.max: No such file or directory");
}

static void kv_find_matches_whole_keys_only(void **state)
{
    (void)state;
    uint64_t v = 0;
    const char *t = "nr_throttled 3\nthrottled_usec 9\n";
    assert_true(sbx_kv_find(t, "throttled_usec", &v));
    assert_int_equal(v, 9);
    assert_true(sbx_kv_find(t, "nr_throttled", &v));
    assert_int_equal(v, 3);
    assert_false(sbx_kv_find(t, "throttled", &v));
}

static void real_group_round_trip(enum sbx_cg_version want)
{
    if (geteuid() != 0 || sbx_cgroup_detect(NULL) != want)
        skip();
    struct sbx_cgroup cg;
    char err[SBX_ERR_MAX] = "", name[64], buf[64];
    /* A group left behind by a process that is gone, to be swept. */
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    snprintf(name, sizeof name, "run-%d-0", (int)dead);
    assert_int_equal(
        sbx_cgroup_create(&cg, want, NULL, NULL, name, &test_limits, 0, err, sizeof err), 0);
    char stale[SBX_PATH_MAX];
    snprintf(stale, sizeof stale, "%s", cg.dir[0]);
    memset(&cg, 0, sizeof cg); /* "crash": leave it */
    snprintf(name, sizeof name, "unit-%d", (int)getpid());
    assert_int_equal(
        sbx_cgroup_create(&cg, want, NULL, NULL, name, &test_limits, 0, err, sizeof err), 0);
    if (want == SBX_CG_V1) {
        get(cg.dir[SBX_CG_MEMORY], "memory.limit_in_bytes", buf, sizeof buf);
        assert_string_equal(buf, "67108864\n");
        get(cg.dir[SBX_CG_CPU], "cpu.cfs_quota_us", buf, sizeof buf);
        assert_string_equal(buf, "50000\n");
        get(cg.dir[SBX_CG_PIDS], "pids.max", buf, sizeof buf);
        assert_string_equal(buf, "32\n");
    } else {
        get(cg.dir[0], "memory.max", buf, sizeof buf);
        assert_string_equal(buf, "67108864\n");
    }
    char first[SBX_PATH_MAX];
    snprintf(first, sizeof first, "%s", cg.dir[0]);
    struct sbx_usage u = {0};
    assert_int_equal(sbx_cgroup_read_usage(&cg, &u), 0);
    assert_true(u.from_cgroup);
    assert_int_equal(sbx_cgroup_destroy(&cg), 0);
    assert_int_not_equal(access(first, F_OK), 0);
    assert_int_not_equal(access(stale, F_OK), 0); /* swept by the first create */
}

static void real_v1_group_is_created_limited_and_removed(void **state)
{
    (void)state;
    real_group_round_trip(SBX_CG_V1);
}

static void real_v2_group_is_created_limited_and_removed(void **state)
{
    (void)state;
    real_group_round_trip(SBX_CG_V2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(v2_is_detected_from_cgroup_controllers, fake_setup,
                                        fake_teardown),
        cmocka_unit_test_setup_teardown(v2_create_writes_limits_and_enables_controllers, fake_setup,
                                        fake_teardown),
        cmocka_unit_test_setup_teardown(v2_weaken_bits_leave_limits_out, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(v2_usage_is_read_from_cpu_stat_peak_and_events, fake_setup,
                                        fake_teardown),
        cmocka_unit_test_setup_teardown(v2_missing_control_file_is_refused_by_name, fake_setup,
                                        fake_teardown),
        cmocka_unit_test(kv_find_matches_whole_keys_only),
        cmocka_unit_test(real_v1_group_is_created_limited_and_removed),
        cmocka_unit_test(real_v2_group_is_created_limited_and_removed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
