/*
 * internal.h - what the files of sandbox/ share; only sandbox/ and its unit
 * tests include it.
 *
 * cgroup: one per-run group with limits and usage, v1 (one directory per
 * controller) or v2 (one directory in the unified tree), chosen by what is
 * mounted under the (injectable) cgroupfs root. The v2 code is unit-tested
 * against a plain temporary directory laid out like cgroupfs.
 */
#ifndef NX_SANDBOX_INTERNAL_H
#define NX_SANDBOX_INTERNAL_H

#include <linux/filter.h>
#include <sys/types.h>

#include "sandbox/sandbox.h"

/* ---- cgroup --------------------------------------------------------------- */

enum sbx_cg_version { SBX_CG_NONE = 0, SBX_CG_V1 = 1, SBX_CG_V2 = 2 };

enum sbx_cg_ctrl { SBX_CG_MEMORY = 0, SBX_CG_CPU, SBX_CG_CPUACCT, SBX_CG_PIDS, SBX_CG__COUNT };

struct sbx_cgroup {
    enum sbx_cg_version version;
    /* v2: dir[0] is the group; v1: one group per controller (empty = not used) */
    char dir[SBX_CG__COUNT][SBX_PATH_MAX];
};

/* v2 when <root>/cgroup.controllers lists memory, cpu and pids; v1 when
 * <root>/memory/tasks exists; else none. root NULL = /sys/fs/cgroup. */
enum sbx_cg_version sbx_cgroup_detect(const char *root);

/*
 * Creates <root>/[<ctrl>/]<parent>/nexus-sbx/<name> and writes the limits
 * (0 fields and the weaken bits leave a limit out). parent NULL = this
 * process's own group read from /proc/self/cgroup. An existing directory of
 * that name is reused (names carry pid and a counter, so only a crashed
 * earlier run or a test leaves one). On failure nothing is left behind.
 */
int sbx_cgroup_create(struct sbx_cgroup *cg, enum sbx_cg_version version, const char *root,
                      const char *parent, const char *name, const struct sbx_limits *lim,
                      uint32_t weaken, char *err, size_t err_len) NX_MUST_USE;
int sbx_cgroup_add_pid(const struct sbx_cgroup *cg, pid_t pid, char *err,
                       size_t err_len) NX_MUST_USE;
/* Fills cpu_*, peak_memory_bytes, throttled_*, oom_killed; sets from_cgroup. */
int sbx_cgroup_read_usage(const struct sbx_cgroup *cg, struct sbx_usage *u) NX_MUST_USE;
/* v2: writes cgroup.kill when the kernel has it. v1: nothing (the PID namespace does it). */
void sbx_cgroup_kill(const struct sbx_cgroup *cg);
/* Removes the group(s); retries briefly while the last tasks exit. */
int sbx_cgroup_destroy(struct sbx_cgroup *cg) NX_MUST_USE;

/* Small file helpers shared by the cgroup code. */
int sbx_write_file(const char *dir, const char *file, const char *text) NX_MUST_USE;
/* Reads up to cap-1 bytes, NUL-terminates. */
int sbx_read_file(const char *dir, const char *file, char *buf, size_t cap) NX_MUST_USE;
/* The value after "key " on its own line of a "key value" file; false if absent. */
bool sbx_kv_find(const char *text, const char *key, uint64_t *value);

/* ---- seccomp ------------------------------------------------------------------- */

/* The filter, built once with libseccomp and kept as raw BPF so that the
 * child loads it with one prctl and no allocation. Borrowed, lives forever. */
int sbx_seccomp_program(const struct sock_fprog **out, char *err, size_t err_len) NX_MUST_USE;
/* Names of the denied syscalls, NULL-terminated (documented in docs/sandbox.md). */
extern const char *const sbx_seccomp_denied[];

/* ---- one run (run.c, shared with protocol.c) ------------------------------------ */

struct sbx_run {
    pid_t pid;
    int pidfd;
    int stdin_w, stdout_r, stderr_r; /* -1 once closed */
    struct sbx_cgroup cg;
    uint32_t weaken;
    uint64_t start_us;
    uint64_t deadline_us; /* 0 = none */
    char *out;            /* owned; stdout not yet consumed */
    size_t out_len, out_cap;
    uint64_t out_total;
    char err_tail[SBX_STDERR_TAIL_BYTES + 1];
    size_t err_tail_len;
    bool exited;    /* pidfd became readable */
    bool timed_out; /* killed at the deadline */
    bool truncated; /* killed for too much output */
    bool waited;
};

/*
 * Waits up to wait_ms (-1 = until the run's deadline) for something to
 * happen, then reads what stdout and stderr hold, notes an exit, and kills
 * the run at its deadline or when its output passes SBX_OUTPUT_MAX_BYTES.
 * Returns 0, or NX_ERR_IO when poll fails.
 */
int sbx_run_pump(struct sbx_run *run, int wait_ms) NX_MUST_USE;

/* ---- error text ----------------------------------------------------------------- */

void sbx_errf(char *err, size_t err_len, const char *fmt, ...) NX_PRINTF(3, 4);

#endif
