/*
 * bench_agent_local - the baseline of bench_agents.py: sandboxed runs per
 * second of one bundle on this machine, with no node in the way.
 *
 *   bench_agent_local BUNDLE_DIR THREADS SECONDS POOL
 *
 * THREADS threads each send one request per sandboxed run for SECONDS:
 * POOL 0 starts a sandbox per run (sbx_run_once, as a node does without a
 * warm pool); POOL > 0 gives each thread a warm pool of that size (as a node
 * does for stateless agents). Prints one JSON object: runs, seconds,
 * runs_per_s, failures.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sandbox/sandbox.h"

struct shared {
    struct sbx_manifest m;
    const char *bundle;
    uint64_t stop_us;
    size_t pool;
    atomic_ulong runs, failures;
    atomic_ulong call_us, wait_us; /* warm: take + call, and close + wait (exit, cgroup) */
};

static int one_cold(struct shared *s, const struct sbx_config *cfg, json_t *input)
{
    (void)s;
    struct sbx_reply reply;
    struct sbx_usage usage;
    char err[SBX_ERR_MAX];
    int rc = sbx_run_once(cfg, input, NULL, &reply, &usage, err, sizeof err);
    rc = rc == 0 && reply.output ? 0 : -1;
    sbx_reply_clear(&reply);
    return rc;
}

static int one_warm(struct shared *s, struct sbx_pool *pool, json_t *input)
{
    uint64_t t0 = nx_clock_mono_us();
    struct sbx_run *run;
    char err[SBX_ERR_MAX];
    if (sbx_pool_take(pool, &run, err, sizeof err) != 0)
        return -1;
    struct sbx_reply reply = {0};
    struct sbx_usage usage;
    int rc = sbx_call(run, 1, input, NULL, 0, &reply, err, sizeof err);
    uint64_t t1 = nx_clock_mono_us();
    sbx_run_close_stdin(run);
    if (sbx_run_wait(run, &usage) != 0 || !reply.output)
        rc = -1;
    atomic_fetch_add(&s->call_us, t1 - t0);
    atomic_fetch_add(&s->wait_us, nx_clock_mono_us() - t1);
    sbx_reply_clear(&reply);
    sbx_run_free(run);
    if (sbx_pool_refill(pool, err, sizeof err) != 0)
        rc = -1;
    return rc;
}

static void *worker(void *arg)
{
    struct shared *s = arg;
    struct sbx_config cfg;
    sbx_config_init(&cfg);
    cfg.bundle_dir = s->bundle;
    sbx_config_from_manifest(&cfg, &s->m, false);
    struct sbx_pool *pool = NULL;
    char err[SBX_ERR_MAX];
    if (s->pool && sbx_pool_create(&cfg, s->pool, &pool, err, sizeof err) != 0) {
        fprintf(stderr, "pool: %s\n", err);
        return NULL;
    }
    json_t *input = json_string("x");
    while (nx_clock_mono_us() < s->stop_us) {
        int rc = pool ? one_warm(s, pool, input) : one_cold(s, &cfg, input);
        if (rc == 0)
            atomic_fetch_add(&s->runs, 1);
        else
            atomic_fetch_add(&s->failures, 1);
    }
    json_decref(input);
    sbx_pool_free(pool);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc == 1) { /* `scons bench` runs every program; this one is driven by bench_agents.py */
        printf("bench_agent_local: the baseline of bench_agents.py (see there)\n");
        return 0;
    }
    if (argc != 5) {
        fprintf(stderr, "usage: bench_agent_local BUNDLE_DIR THREADS SECONDS POOL\n");
        return 2;
    }
    nx_log_set_level(NX_LOG_ERROR);
    struct shared s = {.bundle = argv[1], .pool = (size_t)atoi(argv[4])};
    int threads = atoi(argv[2]);
    double seconds = atof(argv[3]);
    char err[SBX_ERR_MAX];
    if (threads < 1 || threads > 256 || seconds <= 0 ||
        sbx_manifest_load(s.bundle, &s.m, err, sizeof err) != 0) {
        fprintf(stderr, "bench_agent_local: bad arguments or manifest: %s\n", err);
        return 2;
    }
    pthread_t t[256];
    uint64_t start = nx_clock_mono_us();
    s.stop_us = start + (uint64_t)(seconds * 1e6);
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, worker, &s) != 0)
            return 1;
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double took = (double)(nx_clock_mono_us() - start) / 1e6;
    unsigned long runs = (unsigned long)s.runs;
    printf("{\"runs\": %lu, \"seconds\": %.3f, \"runs_per_s\": %.1f, \"failures\": %lu, "
           "\"warm_call_ms\": %.3f, \"warm_wait_ms\": %.3f}\n",
           runs, took, (double)runs / took, (unsigned long)s.failures,
           runs ? (double)s.call_us / runs / 1000.0 : 0.0,
           runs ? (double)s.wait_us / runs / 1000.0 : 0.0);
    sbx_manifest_free(&s.m);
    return 0;
}
