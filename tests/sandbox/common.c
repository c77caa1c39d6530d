/* common.c - see common.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/sandbox/common.h"

static const struct {
    const char *name;
    uint32_t bit;
} weaken_names[] = {
    {"seccomp", SBX_WEAKEN_SECCOMP}, {"uid", SBX_WEAKEN_UID},
    {"caps", SBX_WEAKEN_CAPS},       {"nnp", SBX_WEAKEN_NNP},
    {"nosuid", SBX_WEAKEN_NOSUID},   {"ro", SBX_WEAKEN_RO},
    {"pivot", SBX_WEAKEN_PIVOT},     {"pidns", SBX_WEAKEN_PIDNS},
    {"netns", SBX_WEAKEN_NETNS},     {"close_fds", SBX_WEAKEN_CLOSE_FDS},
    {"pids", SBX_WEAKEN_PIDS},       {"memory", SBX_WEAKEN_MEMORY},
    {"cpu", SBX_WEAKEN_CPU},         {"tmp_size", SBX_WEAKEN_TMP_SIZE},
    {"timeout", SBX_WEAKEN_TIMEOUT}, {"nproc", SBX_WEAKEN_NPROC},
};

uint32_t ts_weaken_from_env(void)
{
    const char *e = getenv("NX_SBX_WEAKEN");
    uint32_t bits = 0;
    if (!e)
        return 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", e);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        for (size_t i = 0; i < sizeof weaken_names / sizeof weaken_names[0]; i++)
            if (strcmp(tok, weaken_names[i].name) == 0)
                bits |= weaken_names[i].bit;
    }
    return bits;
}

bool ts_can_sandbox(void)
{
    return geteuid() == 0;
}

void ts_bundle_put(const char *dir, const char *name, const char *text, unsigned mode)
{
    char path[SBX_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

void ts_bundle_new(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/nx-sbx-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chmod(dir, 0755), 0);
    ts_bundle_put(dir, "manifest.json",
                  "{\"name\":\"test\",\"version\":\"1\",\"kind\":\"stateless\","
                  "\"entrypoint\":[\"/usr/bin/sh\"]}\n",
                  0644);
}

void ts_rmrf(const char *dir)
{
    char cmd[SBX_PATH_MAX + 16];
    if (strncmp(dir, "/tmp/nx-", 8) != 0)
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", dir);
}

void ts_config(struct sbx_config *cfg, const char *bundle)
{
    sbx_config_init(cfg);
    cfg->bundle_dir = bundle;
    cfg->limits.timeout_ms = 5000;
    cfg->weaken = ts_weaken_from_env();
}

void ts_run(const struct sbx_config *cfg, struct ts_result *r)
{
    memset(r, 0, sizeof *r);
    struct sbx_run *run;
    r->rc = sbx_run_start(cfg, &run, r->err, sizeof r->err);
    if (r->rc < 0)
        return;
    sbx_run_close_stdin(run);
    r->rc = sbx_run_wait(run, &r->usage);
    size_t len;
    const char *o = sbx_run_output(run, &len);
    snprintf(r->out, sizeof r->out, "%.*s", (int)len, o);
    snprintf(r->errout, sizeof r->errout, "%s", sbx_run_stderr_tail(run));
    sbx_run_free(run);
}

void ts_run_sh(struct sbx_config *cfg, const char *script, struct ts_result *r)
{
    const char *argv[] = {"/usr/bin/sh", "-c", script, NULL};
    cfg->argv = argv;
    ts_run(cfg, r);
    cfg->argv = NULL;
}

void ts_run_py(struct sbx_config *cfg, const char *script, struct ts_result *r)
{
    const char *argv[] = {"/usr/bin/python3", "-S", "-c", script, NULL};
    cfg->argv = argv;
    ts_run(cfg, r);
    cfg->argv = NULL;
}
