/*
 * common.h - helpers shared by the sandbox test programs (root-only tests
 * that run real sandboxes): temporary bundles, running a shell or Python
 * one-liner as the agent, and the NX_SBX_WEAKEN switch.
 *
 * NX_SBX_WEAKEN=seccomp,uid,... turns protections off in every run of the
 * program, to check once that the test guarding each protection fails
 * without it (the list is in docs/sandbox.md).
 */
#ifndef NX_TESTS_SANDBOX_COMMON_H
#define NX_TESTS_SANDBOX_COMMON_H

#include "sandbox/sandbox.h"

#define TS_OUT_MAX 65536
#define TS_PROGRAM_TIMEOUT_S 120 /* whole test program; sandboxes die with it (PDEATHSIG) */

struct ts_result {
    int rc; /* sbx_run_start or wait result */
    char err[SBX_ERR_MAX];
    char out[TS_OUT_MAX]; /* agent stdout */
    char errout[SBX_STDERR_TAIL_BYTES + 1];
    struct sbx_usage usage;
};

/* A fresh bundle directory (mode 0755) with a stateless manifest.json. */
void ts_bundle_new(char *dir, size_t cap);
void ts_bundle_put(const char *dir, const char *name, const char *text, unsigned mode);
void ts_rmrf(const char *dir);
/* Test defaults: 5 s timeout, the NX_SBX_WEAKEN bits. */
void ts_config(struct sbx_config *cfg, const char *bundle);
/* Runs argv with stdin closed; collects stdout, stderr tail and usage. */
void ts_run(const struct sbx_config *cfg, struct ts_result *r);
/* Runs `sh -c script` / `python3 -c script` with the given config. */
void ts_run_sh(struct sbx_config *cfg, const char *script, struct ts_result *r);
void ts_run_py(struct sbx_config *cfg, const char *script, struct ts_result *r);
uint32_t ts_weaken_from_env(void);
/* True when this test program may run sandboxes (root). */
bool ts_can_sandbox(void);

#endif
