/*
 * cgroup_v1.c - per-run groups on the legacy hierarchies: one directory in
 * each of the memory, cpu, cpuacct and pids hierarchies (cpu and cpuacct may
 * be co-mounted; the second mkdir then finds the first and is accepted).
 *
 * Limits: memory.limit_in_bytes (and memory.memsw.limit_in_bytes when swap
 * accounting exists, so swap is no way around it), cpu.cfs_period_us and
 * cpu.cfs_quota_us, pids.max. Usage: cpuacct.usage and cpuacct.stat,
 * memory.max_usage_in_bytes, the oom_kill counter of memory.oom_control,
 * nr_throttled and throttled_time of cpu.stat.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sandbox/cgroup_impl.h"

static const char *const ctrl_name[SBX_CG__COUNT] = {"memory", "cpu", "cpuacct", "pids"};

static int write_u64(const char *dir, const char *file, uint64_t v)
{
    char text[32];
    snprintf(text, sizeof text, "%" PRIu64, v);
    return sbx_write_file(dir, file, text);
}

static int write_limits(struct sbx_cgroup *cg, const struct sbx_limits *lim, uint32_t weaken,
                        const char **failed)
{
    if (lim->memory_bytes && !(weaken & SBX_WEAKEN_MEMORY)) {
        *failed = "memory.limit_in_bytes";
        if (write_u64(cg->dir[SBX_CG_MEMORY], "memory.limit_in_bytes", lim->memory_bytes) < 0)
            return NX_ERR_IO;
        /* Absent without swap accounting: then there is no swap to escape to. */
        if (write_u64(cg->dir[SBX_CG_MEMORY], "memory.memsw.limit_in_bytes", lim->memory_bytes) <
                0 &&
            errno != ENOENT)
            NX_DEBUG("sbx_cg_memsw", "errno=%d", errno);
    }
    if (lim->cpu_millicores && !(weaken & SBX_WEAKEN_CPU)) {
        *failed = "cpu.cfs_quota_us";
        if (write_u64(cg->dir[SBX_CG_CPU], "cpu.cfs_period_us", SBX_CPU_PERIOD_US) < 0 ||
            write_u64(cg->dir[SBX_CG_CPU], "cpu.cfs_quota_us",
                      (uint64_t)lim->cpu_millicores * SBX_CPU_PERIOD_US / 1000) < 0)
            return NX_ERR_IO;
    }
    if (lim->pids_max && !(weaken & SBX_WEAKEN_PIDS)) {
        *failed = "pids.max";
        if (write_u64(cg->dir[SBX_CG_PIDS], "pids.max", lim->pids_max) < 0)
            return NX_ERR_IO;
    }
    return 0;
}

int cg_v1_create(struct sbx_cgroup *cg, const char *root, const char *parent, const char *name,
                 const struct sbx_limits *lim, uint32_t weaken, char *err, size_t err_len)
{
    for (int c = 0; c < SBX_CG__COUNT; c++) {
        char own[SBX_PATH_MAX], base[SBX_PATH_MAX];
        const char *p = parent;
        if (!p) {
            if (cg_own_path(ctrl_name[c], own, sizeof own) < 0)
                snprintf(own, sizeof own, "/");
            p = own;
        }
        snprintf(base, sizeof base, "%s/%s", root, ctrl_name[c]);
        if (cg_mkdir_group(base, p, name, true, cg->dir[c], sizeof cg->dir[c]) < 0) {
            sbx_errf(err, err_len, "cgroup v1: mkdir %s/%s/nexus-sbx/%s: %s", base, p, name,
                     strerror(errno));
            cg->dir[c][0] = '\0';
            goto err_destroy;
        }
    }
    const char *failed = "";
    if (write_limits(cg, lim, weaken, &failed) < 0) {
        sbx_errf(err, err_len, "cgroup v1: write %s: %s", failed, strerror(errno));
        goto err_destroy;
    }
    return 0;

err_destroy:
    if (sbx_cgroup_destroy(cg) < 0)
        NX_WARN("sbx_cg_cleanup_failed", "version=1");
    return NX_ERR_IO;
}

int cg_v1_usage(const struct sbx_cgroup *cg, struct sbx_usage *u)
{
    char buf[1024];
    uint64_t v;
    if (cg_read_u64(cg->dir[SBX_CG_CPUACCT], "cpuacct.usage", &v) == 0) {
        u->cpu_total_us = v / 1000;
        u->from_cgroup = true;
    }
    if (sbx_read_file(cg->dir[SBX_CG_CPUACCT], "cpuacct.stat", buf, sizeof buf) == 0) {
        long hz = sysconf(_SC_CLK_TCK);
        if (hz <= 0)
            hz = 100;
        if (sbx_kv_find(buf, "user", &v))
            u->cpu_user_us = v * 1000000 / (uint64_t)hz;
        if (sbx_kv_find(buf, "system", &v))
            u->cpu_sys_us = v * 1000000 / (uint64_t)hz;
    }
    if (cg_read_u64(cg->dir[SBX_CG_MEMORY], "memory.max_usage_in_bytes", &v) == 0)
        u->peak_memory_bytes = v;
    if (sbx_read_file(cg->dir[SBX_CG_MEMORY], "memory.oom_control", buf, sizeof buf) == 0 &&
        sbx_kv_find(buf, "oom_kill", &v) && v > 0)
        u->oom_killed = true;
    if (sbx_read_file(cg->dir[SBX_CG_CPU], "cpu.stat", buf, sizeof buf) == 0) {
        if (sbx_kv_find(buf, "nr_throttled", &v))
            u->nr_throttled = v;
        if (sbx_kv_find(buf, "throttled_time", &v))
            u->throttled_us = v / 1000;
    }
    return 0;
}
