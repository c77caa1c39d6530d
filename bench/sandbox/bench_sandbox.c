/*
 * bench_sandbox - what a sandbox costs on this machine (root only).
 *
 *   1. start-to-exit of a trivial agent (/usr/bin/true), sandboxed, p50/p99,
 *      next to plain fork+execve+waitpid of the same program in the same run
 *      (ratio; goal at most 3x), and the sandbox with parts left out, to
 *      show where the time goes (no cgroup, no network namespace);
 *   2. a request round trip to a warm stateless agent (echo-c taken from the
 *      pool), next to a cold sbx_run_once of the same request;
 *   3. sandboxed runs per second, one after another (goal at least 100/s),
 *      next to fork+exec per second.
 */
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox.h"

#define ROUNDS 200
#define WARM_ROUNDS 200

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct stats {
    double p50_ms, p99_ms, mean_ms;
    double cpu_ms; /* CPU time per run, this process and its children: load-independent */
};

static uint64_t cpu_us_now(void)
{
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    uint64_t us = 0;
    const struct timeval *tv[] = {&self.ru_utime, &self.ru_stime, &kids.ru_utime, &kids.ru_stime};
    for (int i = 0; i < 4; i++)
        us += (uint64_t)tv[i]->tv_sec * 1000000 + (uint64_t)tv[i]->tv_usec;
    return us;
}

static struct stats summarize(uint64_t *us, int n)
{
    qsort(us, (size_t)n, sizeof *us, cmp_u64);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += (double)us[i];
    struct stats s = {us[n / 2] / 1000.0, us[(n * 99) / 100] / 1000.0, sum / n / 1000.0, 0};
    return s;
}

static const char *const true_argv[] = {"/usr/bin/true", NULL};

static int fork_exec_once(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        execve(true_argv[0], (char *const *)true_argv, (char *const[]){NULL});
        _exit(127);
    }
    int status;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
                   WEXITSTATUS(status) == 0
               ? 0
               : -1;
}

static int sandbox_once(const struct sbx_config *cfg)
{
    struct sbx_run *run;
    char err[SBX_ERR_MAX];
    if (sbx_run_start(cfg, &run, err, sizeof err) < 0) {
        fprintf(stderr, "start: %s\n", err);
        return -1;
    }
    sbx_run_close_stdin(run);
    struct sbx_usage u;
    int rc = sbx_run_wait(run, &u);
    sbx_run_free(run);
    return rc == 0 && u.exit_code == 0 && u.term_signal == 0 ? 0 : -1;
}

static struct stats time_it(const struct sbx_config *cfg, int n)
{
    uint64_t *us = calloc((size_t)n, sizeof *us);
    uint64_t cpu0 = cpu_us_now();
    for (int i = 0; i < n; i++) {
        uint64_t t0 = nx_clock_mono_us();
        if ((cfg ? sandbox_once(cfg) : fork_exec_once()) < 0) {
            fprintf(stderr, "run %d failed\n", i);
            exit(1);
        }
        us[i] = nx_clock_mono_us() - t0;
    }
    uint64_t cpu = cpu_us_now() - cpu0;
    struct stats s = summarize(us, n);
    s.cpu_ms = (double)cpu / n / 1000.0;
    free(us);
    return s;
}

static double per_second(const struct sbx_config *cfg)
{
    uint64_t t0 = nx_clock_mono_us();
    int n = 0;
    while (nx_clock_mono_us() - t0 < 1000000) {
        if ((cfg ? sandbox_once(cfg) : fork_exec_once()) < 0)
            exit(1);
        n++;
    }
    return n * 1e6 / (double)(nx_clock_mono_us() - t0);
}

struct worker {
    const struct sbx_config *cfg;
    uint64_t until_us;
    int runs;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    while (nx_clock_mono_us() < w->until_us) {
        if ((w->cfg ? sandbox_once(w->cfg) : fork_exec_once()) < 0)
            exit(1);
        w->runs++;
    }
    return NULL;
}

/* Runs per second with `threads` workers starting runs side by side. */
static double per_second_parallel(const struct sbx_config *cfg, int threads)
{
    struct worker w[4];
    pthread_t t[4];
    uint64_t t0 = nx_clock_mono_us();
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){cfg, t0 + 1000000, 0};
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    int total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        total += w[i].runs;
    }
    return total * 1e6 / (double)(nx_clock_mono_us() - t0);
}

static void warm_round_trip(void)
{
    struct sbx_manifest m;
    char err[SBX_ERR_MAX];
    if (sbx_manifest_load(NX_BUILT_AGENTS "/echo-c", &m, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    struct sbx_config cfg;
    sbx_config_init(&cfg);
    cfg.bundle_dir = NX_BUILT_AGENTS "/echo-c";
    sbx_config_from_manifest(&cfg, &m, false);
    struct sbx_pool *pool;
    if (sbx_pool_create(&cfg, 4, &pool, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    uint64_t warm[WARM_ROUNDS], cold[WARM_ROUNDS];
    json_t *input = json_string("ping");
    for (int i = 0; i < WARM_ROUNDS; i++) {
        struct sbx_run *run;
        struct sbx_reply reply;
        struct sbx_usage u;
        uint64_t t0 = nx_clock_mono_us();
        if (sbx_pool_take(pool, &run, err, sizeof err) < 0 ||
            sbx_call(run, 1, input, NULL, 2000, &reply, err, sizeof err) < 0) {
            fprintf(stderr, "warm: %s\n", err);
            exit(1);
        }
        warm[i] = nx_clock_mono_us() - t0;
        sbx_reply_clear(&reply);
        sbx_run_close_stdin(run);
        if (sbx_run_wait(run, &u) < 0)
            exit(1);
        sbx_run_free(run);
        if (sbx_pool_refill(pool, err, sizeof err) < 0)
            exit(1);
        t0 = nx_clock_mono_us();
        if (sbx_run_once(&cfg, input, NULL, &reply, &u, err, sizeof err) < 0) {
            fprintf(stderr, "cold: %s\n", err);
            exit(1);
        }
        cold[i] = nx_clock_mono_us() - t0;
        sbx_reply_clear(&reply);
    }
    json_decref(input);
    sbx_pool_free(pool);
    sbx_manifest_free(&m);
    struct stats w = summarize(warm, WARM_ROUNDS), c = summarize(cold, WARM_ROUNDS);
    printf("%-44s %9.3f %9.3f\n", "echo request, warm pool (take + call)", w.p50_ms, w.p99_ms);
    printf("%-44s %9.3f %9.3f\n", "echo request, cold (start + call + wait)", c.p50_ms, c.p99_ms);
    printf("%-44s %8.1fx\n", "cold / warm (p50)", c.p50_ms / w.p50_ms);
}

int main(void)
{
    if (geteuid() != 0) {
        printf("bench_sandbox: needs root (namespaces, cgroups); skipped\n");
        return 0;
    }
    nx_log_set_level(NX_LOG_ERROR);
    struct sbx_config cfg;
    sbx_config_init(&cfg);
    char bundle[] = "/tmp/nx-sbx-bench-XXXXXX";
    if (!mkdtemp(bundle))
        return 1;
    chmod(bundle, 0755);
    cfg.bundle_dir = bundle;
    cfg.argv = true_argv;
    (void)time_it(&cfg, 10); /* warm up: seccomp program, page cache */

    struct stats base = time_it(NULL, ROUNDS);
    struct stats full = time_it(&cfg, ROUNDS);
    struct sbx_config nocg = cfg, nonet = cfg, bare = cfg;
    nocg.no_cgroup = true;
    nonet.allow_network = true;
    bare.no_cgroup = true;
    bare.allow_network = true;
    struct stats s_nocg = time_it(&nocg, ROUNDS);
    struct stats s_nonet = time_it(&nonet, ROUNDS);
    struct stats s_bare = time_it(&bare, ROUNDS);

    printf("%-40s %8s %8s %9s %8s %9s\n", "start to exit of /usr/bin/true", "p50_ms", "p99_ms",
           "p50/base", "cpu_ms", "cpu/base");
    const struct {
        const char *name;
        struct stats *s;
    } rows[] = {{"baseline: fork + execve + waitpid", &base},
                {"sandbox, full (goal <= 3x)", &full},
                {"sandbox without cgroup", &s_nocg},
                {"sandbox without network namespace", &s_nonet},
                {"sandbox without both", &s_bare}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        printf("%-40s %8.3f %8.3f %8.2fx %8.3f %8.2fx\n", rows[i].name, rows[i].s->p50_ms,
               rows[i].s->p99_ms, rows[i].s->p50_ms / base.p50_ms, rows[i].s->cpu_ms,
               rows[i].s->cpu_ms / base.cpu_ms);
    printf("\n%-44s %9s %9s\n", "request round trip", "p50_ms", "p99_ms");
    warm_round_trip();
    double sps = per_second(&cfg), fps = per_second(NULL);
    printf("\n%-44s %9.0f\n", "sandboxed runs per second (goal >= 100)", sps);
    printf("%-44s %9.0f\n", "baseline: fork+exec per second", fps);
    printf("%-44s %8.1fx\n", "baseline / sandboxed", fps / sps);
    double sps2 = per_second_parallel(&cfg, 2), fps2 = per_second_parallel(NULL, 2);
    printf("%-44s %9.0f\n", "sandboxed runs per second, 2 threads", sps2);
    printf("%-44s %9.0f\n", "baseline: fork+exec per second, 2 threads", fps2);
    printf("%-44s %8.1fx\n", "baseline / sandboxed, 2 threads", fps2 / sps2);
    rmdir(bundle);
    return 0;
}
