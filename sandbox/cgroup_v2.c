/*
 * cgroup_v2.c - per-run groups on the unified hierarchy.
 *
 * The controllers are enabled for the children of <own group> and of
 * nexus-sbx through cgroup.subtree_control (best effort: the kernel refuses
 * it for a group that still holds processes, the "no internal processes"
 * rule; a node meant for v2 runs in a leaf of its own, see docs/sandbox.md).
 *
 * Limits: memory.max (and memory.swap.max = 0), cpu.max "<quota> <period>",
 * pids.max. Usage: cpu.stat usage_usec/user_usec/system_usec/nr_throttled/
 * throttled_usec, memory.peak (memory.current on kernels before 5.19),
 * oom_kill of memory.events. cgroup.kill ends every task at once.
 *
 * The root is injectable: tests/unit/sandbox runs this file against a plain
 * temporary directory laid out like cgroupfs.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sandbox/cgroup_impl.h"

int cg_v2_create(struct sbx_cgroup *cg, const char *root, const char *parent, const char *name,
                 const struct sbx_limits *lim, uint32_t weaken, char *err, size_t err_len)
{
    char own[SBX_PATH_MAX], mid[SBX_PATH_MAX * 2], text[64];
    if (!parent) {
        if (cg_own_path(NULL, own, sizeof own) < 0)
            snprintf(own, sizeof own, "/");
        parent = own;
    }
    if (cg_mkdir_group(root, parent, name, true, cg->dir[0], sizeof cg->dir[0]) < 0) {
        sbx_errf(err, err_len, "cgroup v2: mkdir %s%s/nexus-sbx/%s: %s", root, parent, name,
                 strerror(errno));
        cg->dir[0][0] = '\0';
        return NX_ERR_IO;
    }
    snprintf(mid, sizeof mid, "%s/%s", root, parent);
    if (sbx_write_file(mid, "cgroup.subtree_control", "+memory +cpu +pids") < 0)
        NX_DEBUG("sbx_cg_subtree", "dir=%s errno=%d", mid, errno);
    snprintf(mid, sizeof mid, "%s/%s/nexus-sbx", root, parent);
    if (sbx_write_file(mid, "cgroup.subtree_control", "+memory +cpu +pids") < 0)
        NX_DEBUG("sbx_cg_subtree", "dir=%s errno=%d", mid, errno);

    const char *failed = NULL;
    if (lim->memory_bytes && !(weaken & SBX_WEAKEN_MEMORY)) {
        snprintf(text, sizeof text, "%" PRIu64, lim->memory_bytes);
        if (sbx_write_file(cg->dir[0], "memory.max", text) < 0)
            failed = "memory.max";
        else if (sbx_write_file(cg->dir[0], "memory.swap.max", "0") < 0 && errno != ENOENT)
            NX_DEBUG("sbx_cg_swap", "errno=%d", errno);
    }
    if (!failed && lim->cpu_millicores && !(weaken & SBX_WEAKEN_CPU)) {
        snprintf(text, sizeof text, "%" PRIu64 " %u",
                 (uint64_t)lim->cpu_millicores * SBX_CPU_PERIOD_US / 1000, SBX_CPU_PERIOD_US);
        if (sbx_write_file(cg->dir[0], "cpu.max", text) < 0)
            failed = "cpu.max";
    }
    if (!failed && lim->pids_max && !(weaken & SBX_WEAKEN_PIDS)) {
        snprintf(text, sizeof text, "%u", lim->pids_max);
        if (sbx_write_file(cg->dir[0], "pids.max", text) < 0)
            failed = "pids.max";
    }
    if (failed) {
        sbx_errf(err, err_len, "cgroup v2: write %s: %s", failed, strerror(errno));
        if (sbx_cgroup_destroy(cg) < 0)
            NX_WARN("sbx_cg_cleanup_failed", "version=2");
        return NX_ERR_IO;
    }
    return 0;
}

int cg_v2_usage(const struct sbx_cgroup *cg, struct sbx_usage *u)
{
    char buf[1024];
    uint64_t v;
    const char *dir = cg->dir[0];
    if (sbx_read_file(dir, "cpu.stat", buf, sizeof buf) == 0) {
        if (sbx_kv_find(buf, "usage_usec", &v)) {
            u->cpu_total_us = v;
            u->from_cgroup = true;
        }
        if (sbx_kv_find(buf, "user_usec", &v))
            u->cpu_user_us = v;
        if (sbx_kv_find(buf, "system_usec", &v))
            u->cpu_sys_us = v;
        if (sbx_kv_find(buf, "nr_throttled", &v))
            u->nr_throttled = v;
        if (sbx_kv_find(buf, "throttled_usec", &v))
            u->throttled_us = v;
    }
    if (cg_read_u64(dir, "memory.peak", &v) == 0 || cg_read_u64(dir, "memory.current", &v) == 0)
        u->peak_memory_bytes = v;
    if (sbx_read_file(dir, "memory.events", buf, sizeof buf) == 0 &&
        sbx_kv_find(buf, "oom_kill", &v) && v > 0)
        u->oom_killed = true;
    return 0;
}
