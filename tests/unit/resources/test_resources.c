/*
 * Unit tests of node/resources.c: detection from a fake proc root, NVML
 * through a fake library (and its absence), the --gpus override, and the
 * reservation ledger with its bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/resources.h"

#define GIB (1ull << 30)
#define MIB (1ull << 20)

struct fake_proc {
    char root[64];
};

static void write_file(const char *root, const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", root, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void remove_file(const char *root, const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", root, name);
    unlink(path);
}

/* 4 CPUs, load 1.5, 8000000 kB total and 6000000 kB available. */
static int proc_setup(void **state)
{
    struct fake_proc *p = calloc(1, sizeof *p);
    snprintf(p->root, sizeof p->root, "/tmp/nx_proc_XXXXXX");
    if (mkdtemp(p->root) == NULL)
        return -1;
    write_file(p->root, "stat",
               "cpu  100 0 100 1000 0 0 0 0 0 0\n"
               "cpu0 25 0 25 250 0 0 0 0 0 0\ncpu1 25 0 25 250 0 0 0 0 0 0\n"
               "cpu2 25 0 25 250 0 0 0 0 0 0\ncpu3 25 0 25 250 0 0 0 0 0 0\n"
               "intr 12345\nctxt 999\nbtime 1700000000\n");
    write_file(p->root, "loadavg", "1.50 1.20 0.90 2/345 6789\n");
    write_file(p->root, "meminfo",
               "MemTotal:        8000000 kB\nMemFree:         1000000 kB\n"
               "MemAvailable:    6000000 kB\nBuffers:          100000 kB\n");
    *state = p;
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int proc_teardown(void **state)
{
    struct fake_proc *p = *state;
    nftw(p->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(p);
    return 0;
}

/* mkdir -p of root/rel. */
static void make_dirs(const char *root, const char *rel)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *s = path + strlen(root) + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(path, 0755);
            *s = '/';
        }
    }
    mkdir(path, 0755);
}

static struct node_detect_opts opts_for(const struct fake_proc *p)
{
    /* nvml_lib "" keeps a real driver on the test machine out of these tests */
    return (struct node_detect_opts){.proc_root = p->root, .nvml_lib = "", .cgroup_root = ""};
}

static void detect_reads_cpus_load_and_memory_from_proc_root(void **state)
{
    struct fake_proc *p = *state;
    struct node_detect_opts o = opts_for(p);
    struct node_resources r;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.cpu_total_millicores, 4000);
    assert_int_equal(r.cpu_free_millicores, 2500);
    assert_true(r.mem_total_bytes == 8000000ull * 1024);
    assert_true(r.mem_free_bytes == 6000000ull * 1024);
    assert_int_equal(r.gpu_count, 0);
}

static void load_above_capacity_leaves_no_cpu_free(void **state)
{
    struct fake_proc *p = *state;
    write_file(p->root, "loadavg", "9.75 8.00 7.00 9/345 6789\n");
    struct node_detect_opts o = opts_for(p);
    struct node_resources r;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.cpu_total_millicores, 4000);
    assert_int_equal(r.cpu_free_millicores, 0);
}

static void missing_loadavg_counts_as_idle(void **state)
{
    struct fake_proc *p = *state;
    remove_file(p->root, "loadavg");
    struct node_detect_opts o = opts_for(p);
    struct node_resources r;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.cpu_free_millicores, 4000);
}

static void missing_meminfo_is_an_io_error(void **state)
{
    struct fake_proc *p = *state;
    remove_file(p->root, "meminfo");
    struct node_detect_opts o = opts_for(p);
    struct node_resources r;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_ERR_IO);
}

static void meminfo_without_total_is_an_io_error(void **state)
{
    struct fake_proc *p = *state;
    write_file(p->root, "meminfo", "MemFree: 10 kB\n");
    struct node_detect_opts o = opts_for(p);
    struct node_resources r;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_ERR_IO);
}

static void system_reserve_is_taken_from_total_and_free(void **state)
{
    struct fake_proc *p = *state;
    struct node_detect_opts o = opts_for(p);
    o.system_reserved_cpu_millicores = 500;
    o.system_reserved_mem_bytes = 1000000ull * 1024;
    struct node_resources r;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.cpu_total_millicores, 3500);
    assert_int_equal(r.cpu_free_millicores, 2000);
    assert_true(r.mem_total_bytes == 7000000ull * 1024);
    assert_true(r.mem_free_bytes == 5000000ull * 1024);
    /* holding back more than there is leaves zero, not a wrapped number */
    o.system_reserved_cpu_millicores = 10000;
    o.system_reserved_mem_bytes = 100 * GIB;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.cpu_total_millicores, 0);
    assert_int_equal(r.cpu_free_millicores, 0);
    assert_true(r.mem_total_bytes == 0 && r.mem_free_bytes == 0);
}

static void overrides_advertise_exact_amounts_less_the_system_reserve(void **state)
{
    struct fake_proc *p = *state;
    struct node_detect_opts o = opts_for(p);
    o.cpu_override_millicores = 2000;
    o.mem_override_bytes = 1024 * MIB;
    struct node_resources r;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.cpu_total_millicores, 2000);
    assert_int_equal(r.cpu_free_millicores, 2000); /* the host's load does not count */
    assert_true(r.mem_total_bytes == 1024 * MIB && r.mem_free_bytes == 1024 * MIB);
    o.system_reserved_mem_bytes = 256 * MIB;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_true(r.mem_free_bytes == 768 * MIB);
}

static void nvml_absent_gives_no_gpus_without_error(void **state)
{
    struct fake_proc *p = *state;
    struct node_detect_opts o = opts_for(p);
    o.nvml_lib = "/nonexistent/libnvidia-ml.so.1";
    struct node_resources r;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.gpu_count, 0);
    assert_false(r.gpu_from_nvml);
    assert_int_equal(r.cpu_total_millicores, 4000);
}

static void nvml_reports_each_healthy_device_with_its_memory(void **state)
{
    struct fake_proc *p = *state;
    struct node_detect_opts o = opts_for(p);
    o.nvml_lib = FAKE_NVML_PATH;
    struct node_resources r;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_true(r.gpu_from_nvml);
    assert_int_equal(r.gpu_count, 2); /* the third device's memory query fails */
    assert_int_equal(r.gpu_total_count, 2);
    assert_true(r.gpu_mem_bytes[0] == 8 * GIB);
    assert_true(r.gpu_mem_bytes[1] == 16 * GIB);
    assert_int_equal(r.gpu_index[1], 1);
    /* a second detection reuses the loaded library */
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.gpu_count, 2);
    /* and switching back to an absent library drops the GPUs */
    o.nvml_lib = "/nonexistent/libnvidia-ml.so.1";
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.gpu_count, 0);
}

static void gpus_override_wins_and_negative_means_none(void **state)
{
    struct fake_proc *p = *state;
    struct node_detect_opts o = opts_for(p);
    o.nvml_lib = FAKE_NVML_PATH;
    o.gpus = 3;
    o.gpu_mem_bytes = 4 * GIB;
    struct node_resources r;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.gpu_count, 3);
    assert_false(r.gpu_from_nvml);
    for (int i = 0; i < 3; i++)
        assert_true(r.gpu_mem_bytes[i] == 4 * GIB);
    o.gpus = 99;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.gpu_count, NODE_GPUS_MAX);
    o.gpus = -1;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.gpu_count, 0);
}

static void write_stat(const char *root, unsigned long long busy, unsigned long long idle)
{
    char text[512];
    /* user nice system idle iowait irq softirq steal guest guest_nice */
    snprintf(text, sizeof text,
             "cpu  %llu 0 0 %llu 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n"
             "cpu1 0 0 0 0 0 0 0 0 0 0\ncpu2 0 0 0 0 0 0 0 0 0 0\ncpu3 0 0 0 0 0 0 0 0 0 0\n",
             busy, idle);
    write_file(root, "stat", text);
}

static void cpu_sampler_measures_busy_share_between_calls(void **state)
{
    struct fake_proc *p = *state;
    struct node_cpu_sampler sampler = {0};
    struct node_detect_opts o = opts_for(p);
    o.cpu_sampler = &sampler;
    struct node_resources r;
    write_stat(p->root, 1000, 9000);
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.cpu_free_millicores, 2500); /* first call: the load average */
    assert_true(sampler.primed);
    write_stat(p->root, 1000 + 250, 9000 + 750); /* 25% busy since */
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.cpu_total_millicores, 4000);
    assert_int_equal(r.cpu_free_millicores, 3000);
    write_stat(p->root, 1250 + 1000, 9750); /* fully busy */
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.cpu_free_millicores, 0);
    write_stat(p->root, 10, 10); /* counters went backwards: the load average again */
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.cpu_free_millicores, 2500);
    write_stat(p->root, 10, 10); /* no time passed */
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_int_equal(r.cpu_free_millicores, 2500);
}

static void cgroup_v1_quota_and_memory_limits_cap_what_is_offered(void **state)
{
    struct fake_proc *p = *state;
    char cg[96];
    snprintf(cg, sizeof cg, "%s/cg", p->root);
    make_dirs(p->root, "self");
    write_file(p->root, "self/cgroup", "9:pids:/\n4:memory:/a/b\n1:cpu,cpuacct:/a\n0::/\n");
    make_dirs(p->root, "cg/memory/a/b");
    make_dirs(p->root, "cg/cpu/a");
    write_file(cg, "memory/memory.limit_in_bytes", "9223372036854771712\n"); /* root: none */
    write_file(cg, "memory/a/memory.limit_in_bytes", "2147483648\n");
    write_file(cg, "memory/a/memory.usage_in_bytes", "1610612736\n");
    write_file(cg, "memory/a/b/memory.limit_in_bytes", "9223372036854771712\n");
    write_file(cg, "memory/a/b/memory.usage_in_bytes", "536870912\n");
    write_file(cg, "cpu/a/cpu.cfs_quota_us", "150000\n");
    write_file(cg, "cpu/a/cpu.cfs_period_us", "100000\n");
    write_file(cg, "cpu/cpu.cfs_quota_us", "-1\n");
    write_file(cg, "cpu/cpu.cfs_period_us", "100000\n");
    struct node_detect_opts o = opts_for(p);
    o.cgroup_root = cg;
    struct node_resources r;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_true(r.cgroup_limited);
    assert_int_equal(r.cpu_total_millicores, 1500);
    assert_int_equal(r.cpu_free_millicores, 1500);
    assert_true(r.mem_total_bytes == 2 * GIB);
    assert_true(r.mem_free_bytes == GIB / 2); /* the parent's limit minus its usage */
    /* "" ignores cgroups */
    o.cgroup_root = "";
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_false(r.cgroup_limited);
    assert_int_equal(r.cpu_total_millicores, 4000);
}

static void cgroup_v2_limits_cap_what_is_offered(void **state)
{
    struct fake_proc *p = *state;
    char cg[96];
    snprintf(cg, sizeof cg, "%s/cg2", p->root);
    make_dirs(p->root, "self");
    write_file(p->root, "self/cgroup", "0::/svc/node\n");
    make_dirs(p->root, "cg2/svc/node");
    write_file(cg, "cgroup.controllers", "");
    write_file(cg, "svc/memory.max", "max\n");
    write_file(cg, "svc/cpu.max", "250000 100000\n");
    write_file(cg, "svc/node/memory.max", "1073741824\n");
    write_file(cg, "svc/node/memory.current", "268435456\n");
    write_file(cg, "svc/node/cpu.max", "max 100000\n");
    struct node_detect_opts o = opts_for(p);
    o.cgroup_root = cg;
    struct node_resources r;
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_true(r.cgroup_limited);
    assert_int_equal(r.cpu_total_millicores, 2500);
    assert_int_equal(r.cpu_free_millicores, 2500);
    assert_true(r.mem_total_bytes == GIB);
    assert_true(r.mem_free_bytes == 768 * MIB);
    /* a path that climbs out of the hierarchy is ignored */
    write_file(p->root, "self/cgroup", "0::/../../etc\n");
    assert_int_equal(node_resources_detect_opts(&r, &o), NX_OK);
    assert_false(r.cgroup_limited);
}

static void legacy_detect_reads_this_machine(void **state)
{
    (void)state;
    struct node_resources r;
    assert_int_equal(node_resources_detect(&r, 2, 1024 * MIB), NX_OK);
    assert_true(r.cpu_total_millicores >= 1000);
    assert_true(r.cpu_free_millicores <= r.cpu_total_millicores);
    assert_true(r.mem_total_bytes > 0 && r.mem_free_bytes <= r.mem_total_bytes);
    assert_int_equal(r.gpu_count, 2);
}

/* ---- reservations ------------------------------------------------------ */

static struct node_resources machine(void)
{
    struct node_resources r = {.cpu_total_millicores = 4000,
                               .cpu_free_millicores = 3000,
                               .mem_total_bytes = 8 * GIB,
                               .mem_free_bytes = 6 * GIB,
                               .gpu_count = 3,
                               .gpu_total_count = 3};
    const uint64_t mem[3] = {8 * GIB, 16 * GIB, 16 * GIB};
    for (uint32_t i = 0; i < 3; i++) {
        r.gpu_mem_bytes[i] = mem[i];
        r.gpu_index[i] = i;
    }
    return r;
}

static void reserve_then_release_returns_to_nothing_held(void **state)
{
    (void)state;
    struct node_resources r = machine();
    struct node_reserved rv;
    node_reserved_init(&rv);
    struct node_request req = {.cpu_millicores = 1500, .mem_bytes = 2 * GIB, .gpus = 1};
    struct node_grant g1, g2;
    assert_int_equal(node_resources_reserve(&rv, &r, &req, &g1), NX_OK);
    assert_int_equal(node_resources_reserve(&rv, &r, &req, &g2), NX_OK);
    assert_int_equal(rv.cpu_millicores, 3000);
    assert_true(rv.mem_bytes == 4 * GIB);
    assert_int_equal(rv.runs, 2);
    assert_int_equal(g1.gpu_mask, 1u);
    assert_int_equal(g2.gpu_mask, 2u);
    assert_int_equal(node_resources_release(&rv, &g1), NX_OK);
    assert_int_equal(node_resources_release(&rv, &g2), NX_OK);
    assert_int_equal(rv.cpu_millicores, 0);
    assert_true(rv.mem_bytes == 0);
    assert_int_equal(rv.gpu_mask, 0);
    assert_int_equal(rv.runs, 0);
}

static void reserve_beyond_capacity_is_limit_and_changes_nothing(void **state)
{
    (void)state;
    struct node_resources r = machine();
    struct node_reserved rv = {0};
    struct node_grant g;
    struct node_request cpu = {.cpu_millicores = 3000};
    assert_int_equal(node_resources_reserve(&rv, &r, &cpu, &g), NX_OK);
    assert_int_equal(node_resources_reserve(&rv, &r, &cpu, &g), NX_ERR_LIMIT);
    struct node_request mem = {.mem_bytes = 9 * GIB};
    assert_int_equal(node_resources_reserve(&rv, &r, &mem, &g), NX_ERR_LIMIT);
    struct node_request gpus = {.gpus = 4};
    assert_int_equal(node_resources_reserve(&rv, &r, &gpus, &g), NX_ERR_LIMIT);
    struct node_request big_gpu = {.gpus = 1, .gpu_mem_bytes = 32 * GIB};
    assert_int_equal(node_resources_reserve(&rv, &r, &big_gpu, &g), NX_ERR_LIMIT);
    struct node_request absurd = {.gpus = NODE_GPUS_MAX + 1};
    assert_int_equal(node_resources_reserve(&rv, &r, &absurd, &g), NX_ERR_INVAL);
    assert_int_equal(rv.cpu_millicores, 3000);
    assert_true(rv.mem_bytes == 0);
    assert_int_equal(rv.gpu_mask, 0);
    assert_int_equal(rv.runs, 1);
}

static void reserve_picks_gpus_with_enough_memory(void **state)
{
    (void)state;
    struct node_resources r = machine();
    struct node_reserved rv = {0};
    struct node_grant g;
    struct node_request req = {.gpus = 2, .gpu_mem_bytes = 12 * GIB};
    assert_int_equal(node_resources_reserve(&rv, &r, &req, &g), NX_OK);
    assert_int_equal(g.gpu_mask, 0x6u); /* devices 1 and 2, not the 8 GiB device 0 */
    assert_int_equal(node_resources_reserve(&rv, &r, &req, &g), NX_ERR_LIMIT);
    struct node_request small = {.gpus = 1, .gpu_mem_bytes = 4 * GIB};
    assert_int_equal(node_resources_reserve(&rv, &r, &small, &g), NX_OK);
    assert_int_equal(g.gpu_mask, 0x1u);
}

static void release_of_a_grant_not_held_is_invalid(void **state)
{
    (void)state;
    struct node_resources r = machine();
    struct node_reserved rv = {0};
    struct node_grant g;
    struct node_request req = {.cpu_millicores = 100, .mem_bytes = MIB, .gpus = 1};
    assert_int_equal(node_resources_reserve(&rv, &r, &req, &g), NX_OK);
    assert_int_equal(node_resources_release(&rv, &g), NX_OK);
    assert_int_equal(node_resources_release(&rv, &g), NX_ERR_INVAL); /* twice */
    struct node_grant forged = {.gpu_mask = 0x4};
    assert_int_equal(node_resources_reserve(&rv, &r, &req, &g), NX_OK);
    assert_int_equal(node_resources_release(&rv, &forged), NX_ERR_INVAL);
    struct node_grant too_much = {.cpu_millicores = 200};
    assert_int_equal(node_resources_release(&rv, &too_much), NX_ERR_INVAL);
    assert_int_equal(rv.runs, 1);
    assert_int_equal(rv.cpu_millicores, 100);
}

static void subtract_takes_the_smaller_of_measured_and_unreserved(void **state)
{
    (void)state;
    struct node_resources r = machine(); /* 3000 of 4000 mc free, 6 of 8 GiB */
    struct node_reserved rv = {0};
    struct node_grant g;
    /* a small reservation is already inside what the load shows: free stays */
    struct node_request small = {.cpu_millicores = 500, .mem_bytes = GIB};
    assert_int_equal(node_resources_reserve(&rv, &r, &small, &g), NX_OK);
    struct node_resources a = r;
    node_resources_subtract(&a, &rv);
    assert_int_equal(a.cpu_free_millicores, 3000);
    assert_true(a.mem_free_bytes == 6 * GIB);
    /* a large idle reservation still holds its share */
    struct node_request big = {.cpu_millicores = 2500, .mem_bytes = 4 * GIB, .gpus = 1};
    assert_int_equal(node_resources_reserve(&rv, &r, &big, &g), NX_OK);
    a = r;
    node_resources_subtract(&a, &rv);
    assert_int_equal(a.cpu_free_millicores, 1000);
    assert_true(a.mem_free_bytes == 3 * GIB);
    assert_int_equal(a.gpu_count, 2);
    assert_int_equal(a.gpu_index[0], 1);
    assert_true(a.gpu_mem_bytes[0] == 16 * GIB);
    assert_int_equal(a.cpu_total_millicores, 4000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(detect_reads_cpus_load_and_memory_from_proc_root,
                                        proc_setup, proc_teardown),
        cmocka_unit_test_setup_teardown(load_above_capacity_leaves_no_cpu_free, proc_setup,
                                        proc_teardown),
        cmocka_unit_test_setup_teardown(missing_loadavg_counts_as_idle, proc_setup, proc_teardown),
        cmocka_unit_test_setup_teardown(missing_meminfo_is_an_io_error, proc_setup, proc_teardown),
        cmocka_unit_test_setup_teardown(meminfo_without_total_is_an_io_error, proc_setup,
                                        proc_teardown),
        cmocka_unit_test_setup_teardown(system_reserve_is_taken_from_total_and_free, proc_setup,
                                        proc_teardown),
        cmocka_unit_test_setup_teardown(overrides_advertise_exact_amounts_less_the_system_reserve,
                                        proc_setup, proc_teardown),
        cmocka_unit_test_setup_teardown(nvml_absent_gives_no_gpus_without_error, proc_setup,
                                        proc_teardown),
        cmocka_unit_test_setup_teardown(nvml_reports_each_healthy_device_with_its_memory,
                                        proc_setup, proc_teardown),
        cmocka_unit_test_setup_teardown(gpus_override_wins_and_negative_means_none, proc_setup,
                                        proc_teardown),
        cmocka_unit_test_setup_teardown(cpu_sampler_measures_busy_share_between_calls, proc_setup,
                                        proc_teardown),
        cmocka_unit_test_setup_teardown(cgroup_v1_quota_and_memory_limits_cap_what_is_offered,
                                        proc_setup, proc_teardown),
        cmocka_unit_test_setup_teardown(cgroup_v2_limits_cap_what_is_offered, proc_setup,
                                        proc_teardown),
        cmocka_unit_test(legacy_detect_reads_this_machine),
        cmocka_unit_test(reserve_then_release_returns_to_nothing_held),
        cmocka_unit_test(reserve_beyond_capacity_is_limit_and_changes_nothing),
        cmocka_unit_test(reserve_picks_gpus_with_enough_memory),
        cmocka_unit_test(release_of_a_grant_not_held_is_invalid),
        cmocka_unit_test(subtract_takes_the_smaller_of_measured_and_unreserved),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
