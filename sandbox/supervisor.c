/*
 * supervisor.c - long-running agents: the restart policy as a pure state
 * machine (struct sbx_backoff, diagram in sandbox.h; time is passed in, no
 * I/O) and a blocking driver for `nexus agent run-local` and tests. The
 * node's libev loop will drive the same state machine with a child watcher
 * on the run's pid and a timer for restart_at_ms.
 */
#include <string.h>
#include <time.h>

#include "sandbox/internal.h"

void sbx_backoff_init(struct sbx_backoff *b, uint64_t base_ms, uint64_t max_ms, uint64_t stable_ms)
{
    memset(b, 0, sizeof *b);
    b->base_ms = base_ms ? base_ms : 1;
    b->max_ms = max_ms < b->base_ms ? b->base_ms : max_ms;
    b->stable_ms = stable_ms;
    b->state = SBX_SUP_STOPPED;
}

void sbx_backoff_on_start(struct sbx_backoff *b, uint64_t now_ms)
{
    if (b->state == SBX_SUP_BACKOFF)
        b->restarts++;
    b->state = SBX_SUP_RUNNING;
    b->started_ms = now_ms;
}

uint64_t sbx_backoff_on_exit(struct sbx_backoff *b, uint64_t now_ms)
{
    if (b->state != SBX_SUP_RUNNING)
        return 0;
    if (b->stable_ms && now_ms - b->started_ms >= b->stable_ms)
        b->failures = 0; /* it ran long enough: a fresh crash, not a crash loop */
    uint64_t delay = b->base_ms;
    for (uint32_t i = 0; i < b->failures && delay < b->max_ms; i++)
        delay *= 2;
    if (delay > b->max_ms)
        delay = b->max_ms;
    if (b->failures < 63)
        b->failures++;
    b->state = SBX_SUP_BACKOFF;
    b->restart_at_ms = now_ms + delay;
    return delay;
}

void sbx_backoff_on_stop(struct sbx_backoff *b)
{
    b->state = SBX_SUP_STOPPED;
}

static bool stop_requested(const struct sbx_supervise_opts *o)
{
    return o->stop && *o->stop;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Runs one incarnation until it exits or a stop is requested. */
static int run_one(const struct sbx_config *cfg, const struct sbx_supervise_opts *o,
                   struct sbx_usage *u, char *err, size_t err_len)
{
    struct sbx_run *run;
    int rc = sbx_run_start(cfg, &run, err, err_len);
    if (rc < 0)
        return rc;
    while (!run->exited) {
        if (stop_requested(o))
            sbx_run_kill(run);
        if (sbx_run_pump(run, 50) < 0)
            break;
    }
    rc = sbx_run_wait(run, u);
    sbx_run_free(run);
    return rc;
}

int sbx_supervise(const struct sbx_config *cfg, const struct sbx_supervise_opts *opts,
                  struct sbx_backoff *b, char *err, size_t err_len)
{
    sbx_backoff_init(b, opts->base_ms, opts->max_ms, opts->stable_ms);
    for (;;) {
        sbx_backoff_on_start(b, nx_clock_mono_ms());
        struct sbx_usage u;
        int rc = run_one(cfg, opts, &u, err, err_len);
        uint64_t delay = sbx_backoff_on_exit(b, nx_clock_mono_ms());
        if (rc < 0)
            NX_WARN("sbx_supervise_start_failed", "err=\"%s\" next_ms=%llu", err,
                    (unsigned long long)delay);
        if (opts->on_exit)
            opts->on_exit(opts->arg, rc < 0 ? NULL : &u, delay);
        if (stop_requested(opts) || (opts->max_restarts && b->restarts >= opts->max_restarts)) {
            sbx_backoff_on_stop(b);
            return 0;
        }
        uint64_t until = nx_clock_mono_ms() + delay;
        while (!stop_requested(opts) && nx_clock_mono_ms() < until)
            sleep_ms(until - nx_clock_mono_ms() < 20 ? until - nx_clock_mono_ms() : 20);
        if (stop_requested(opts)) {
            sbx_backoff_on_stop(b);
            return 0;
        }
    }
}
