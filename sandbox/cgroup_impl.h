/*
 * cgroup_impl.h - shared between cgroup.c, cgroup_v1.c and cgroup_v2.c only.
 */
#ifndef NX_SANDBOX_CGROUP_IMPL_H
#define NX_SANDBOX_CGROUP_IMPL_H

#include "sandbox/internal.h"

#define SBX_CG_DEFAULT_ROOT "/sys/fs/cgroup"

int cg_read_u64(const char *dir, const char *file, uint64_t *v) NX_MUST_USE;
/* This process's group path for a v1 controller, or the v2 path (controller NULL). */
int cg_own_path(const char *controller, char *out, size_t cap) NX_MUST_USE;
/* mkdir <base>/<parent>/nexus-sbx and .../<name> (EEXIST accepted); dir gets the latter.
 * With sweep, first removes empty groups left by processes that no longer exist (a
 * readdir per run: cheap next to the mkdir, and a node never accumulates leftovers). */
int cg_mkdir_group(const char *base, const char *parent, const char *name, bool sweep, char *dir,
                   size_t cap) NX_MUST_USE;
int cg_rmdir_retry(const char *dir) NX_MUST_USE;

int cg_v1_create(struct sbx_cgroup *cg, const char *root, const char *parent, const char *name,
                 const struct sbx_limits *lim, uint32_t weaken, char *err,
                 size_t err_len) NX_MUST_USE;
int cg_v1_usage(const struct sbx_cgroup *cg, struct sbx_usage *u) NX_MUST_USE;
int cg_v2_create(struct sbx_cgroup *cg, const char *root, const char *parent, const char *name,
                 const struct sbx_limits *lim, uint32_t weaken, char *err,
                 size_t err_len) NX_MUST_USE;
int cg_v2_usage(const struct sbx_cgroup *cg, struct sbx_usage *u) NX_MUST_USE;

#endif
