/*
 * bench_gossip - what the SWIM/Lifeguard core costs and how fast it reacts,
 * measured in the deterministic simulator (tests/sim/gossip/gsim.h).
 *
 * Tables:
 *  1. dissemination: protocol periods until news of a join reaches every
 *     member, and bytes sent per member per second, for N = 10 .. 10,000,
 *     next to the baseline ceil(log2 N) (the rounds a push epidemic needs);
 *  2. detection: periods from a crash to the first suspicion, next to the
 *     SWIM expectation e/(e-1) = 1.58 periods; and to death at all members;
 *  3. false positives under stress (10% loss, one member slowed 10x):
 *     Lifeguard off (baseline) and on, and the ratio.
 *
 * NX_SIM_QUICK=1 runs smaller sizes. Times are simulated, not wall clock.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "gossip/gossip.h"
#include "tests/sim/gossip/gsim.h"

static bool quick(void)
{
    return gsim_quick();
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct gsim_config config(uint32_t n, uint64_t seed)
{
    struct gsim_config c;
    memset(&c, 0, sizeof c);
    c.n = n;
    c.seed = seed;
    c.lat_min_ms = 2;
    c.lat_max_ms = 20;
    c.capacity = n + 4;
    gossip_config_default(&c.gossip);
    c.gossip.max_members = n + 16 > 4096 ? n + 16 : 4096;
    c.gossip.max_push_pull_bytes = 65536;
    return c;
}

static uint64_t sum_counter(struct gsim *s, size_t offset)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < gsim_count(s); i++) {
        const struct gossip_counters *c = gossip_counters(gsim_core(s, i));
        uint64_t v;
        memcpy(&v, (const char *)c + offset, sizeof v);
        total += v;
    }
    return total;
}

/* ---- 1. dissemination --------------------------------------------------------- */

static void dissemination(void)
{
    uint32_t sizes[] = {10, 100, 1000, 10000};
    int count = quick() ? 3 : 4;
    printf("\n1. Dissemination of a join (median of seeds; T = 1 s; latency 2-20 ms)\n");
    printf("%8s %6s %7s %10s %14s %8s %12s %12s %8s\n", "N", "seeds", "view", "periods",
           "ceil(log2 N)", "ratio", "B/member/s", "w/o pushpull", "wall s");
    for (int k = 0; k < count; k++) {
        uint32_t n = sizes[k];
        int seeds = n >= 10000 ? 1 : 3;
        double periods[3], bytes_rate = 0, probe_rate = 0, t_wall = wall_s();
        /*
         * 10,000 full views would be 10^8 member entries (~20 GB): each node
         * gets a random partial view of 100 instead. Push-pull is off there
         * (between strangers it would grow every view towards full), and
         * lambda is 7 so that lambda*ceil(log10(101)) = 21 retransmissions
         * match what a full view uses (4*ceil(log10(10001)) = 20).
         */
        uint32_t view = n >= 10000 ? 100 : 0;
        for (int sd = 0; sd < seeds; sd++) {
            struct gsim_config cfg = config(n, 1000 + (uint64_t)sd * 31 + n);
            cfg.view = view;
            if (view) {
                cfg.gossip.push_pull_interval_ms = 0;
                cfg.gossip.retransmit_mult = 7;
            }
            struct gsim *s = gsim_create(&cfg);
            if (!s) {
                printf("%8u  simulator could not be created (memory)\n", n);
                return;
            }
            uint64_t T = cfg.gossip.probe_interval_ms;
            /* warm up past everyone's first push-pull (random phase in 30 s) */
            gsim_run_until(s, gsim_now(s) + (view ? 2 : 35) * T);
            uint64_t b0 = gsim_stats(s)->bytes, t0 = gsim_now(s), t = t0;
            uint64_t pp0 = gsim_stats(s)->bytes_push_pull;
            int j = gsim_add_node(s, (uint32_t)(sd * 7) % n);
            while (j >= 0 && gsim_count_not_in_state(s, (uint32_t)j, GOSSIP_ALIVE) > 0 &&
                   t < t0 + 60 * T) {
                t += n >= 10000 ? 200 : 20;
                gsim_run_until(s, t);
            }
            periods[sd] = (double)(t - t0) / (double)T;
            /* traffic over 200 periods (10 without push-pull): at least one
             * push-pull interval, which grows with log2(N/32) */
            gsim_run_until(s, t0 + (view ? 10 : 200) * T);
            uint64_t b1 = gsim_stats(s)->bytes, pp1 = gsim_stats(s)->bytes_push_pull;
            double member_s = (double)(n + 1) * ((double)(gsim_now(s) - t0) / 1000.0);
            bytes_rate += (double)(b1 - b0) / member_s / seeds;
            probe_rate += (double)((b1 - b0) - (pp1 - pp0)) / member_s / seeds;
            gsim_destroy(s);
        }
        for (int a = 0; a < seeds; a++) /* sort for the median */
            for (int b = a + 1; b < seeds; b++)
                if (periods[b] < periods[a]) {
                    double x = periods[a];
                    periods[a] = periods[b];
                    periods[b] = x;
                }
        double med = periods[seeds / 2], base = ceil(log2((double)n));
        char vbuf[16];
        snprintf(vbuf, sizeof vbuf, view ? "%u" : "all", view);
        printf("%8u %6d %7s %10.2f %14.0f %8.2f %12.0f %12.0f %8.1f\n", n, seeds, vbuf, med, base,
               med / base, bytes_rate, probe_rate, wall_s() - t_wall);
        fflush(stdout);
    }
}

/* ---- 2. detection --------------------------------------------------------------- */

static void detection(void)
{
    uint32_t n = 64;
    int runs = quick() ? 10 : 40;
    double first = 0, all = 0;
    uint64_t T = 1000;
    for (int r = 0; r < runs; r++) {
        struct gsim_config cfg = config(n, 5000 + (uint64_t)r);
        struct gsim *s = gsim_create(&cfg);
        T = cfg.gossip.probe_interval_ms;
        /* crash at a random phase of the protocol period */
        gsim_run_until(s, gsim_now(s) + 3 * T + (uint64_t)(r * 97) % T);
        uint32_t victim = (uint32_t)(r * 13) % n;
        uint64_t t0 = gsim_now(s), t = t0, t_first = 0;
        gsim_crash(s, victim);
        while (gsim_count_not_in_state(s, victim, GOSSIP_DEAD) > 0 && t < t0 + 200 * T) {
            t += 10;
            gsim_run_until(s, t);
            if (!t_first && gsim_count_not_in_state(s, victim, GOSSIP_ALIVE) > 0)
                t_first = t;
        }
        first += (double)(t_first - t0) / (double)T / runs;
        all += (double)(t - t0) / (double)T / runs;
        gsim_destroy(s);
    }
    double e = exp(1.0);
    printf("\n2. Failure detection, N=%u, %d crashes (T = %llu ms, probe timeout 500 ms)\n", n,
           runs, (unsigned long long)T);
    printf("%-44s %10s %12s %8s\n", "measure", "measured", "baseline", "ratio");
    printf("%-44s %10.2f %12.2f %8.2f\n", "periods crash -> first suspicion (SWIM e/(e-1))", first,
           e / (e - 1), first / (e / (e - 1)));
    printf("%-44s %10.2f %12s %8s\n", "periods crash -> dead at every member", all, "-", "-");
}

/* ---- 3. false positives under stress ------------------------------------------- */

struct stress {
    uint64_t suspicions;      /* raised by failed probes: all false here */
    uint64_t slow_suspicions; /* raised by the slowed member */
    uint64_t events_healthy;  /* suspicion events about non-slowed members, all observers */
    uint64_t events_slowed;   /* suspicion events about slowed members, all observers */
    uint64_t deaths;          /* false deaths, all observers */
    uint64_t refutations;
    double bytes_rate;
};

static struct stress stress_run(bool lifeguard, uint32_t n, uint64_t periods, uint64_t seed,
                                uint32_t n_slow, double loss, uint32_t lat_max_ms)
{
    struct gsim_config cfg = config(n, seed);
    cfg.loss = loss;
    cfg.lat_min_ms = 10;
    cfg.lat_max_ms = lat_max_ms;
    cfg.gossip.lifeguard_awareness = lifeguard;
    cfg.gossip.lifeguard_suspicion = lifeguard;
    cfg.gossip.lifeguard_nack = lifeguard;
    struct gsim *s = gsim_create(&cfg);
    for (uint32_t i = 0; i < n_slow; i++)
        gsim_set_slow(s, 3 + i, 10);
    gsim_run_until(s, gsim_now(s) + periods * cfg.gossip.probe_interval_ms);
    struct stress r;
    r.suspicions = sum_counter(s, offsetof(struct gossip_counters, suspicions_raised));
    r.refutations = sum_counter(s, offsetof(struct gossip_counters, refutations));
    r.slow_suspicions = 0;
    for (uint32_t i = 0; i < n_slow; i++)
        r.slow_suspicions += gossip_counters(gsim_core(s, 3 + i))->suspicions_raised;
    r.deaths = gsim_stats(s)->false_deaths;
    r.events_slowed = gsim_stats(s)->slow_suspicions;
    r.events_healthy = gsim_stats(s)->false_suspicions - r.events_slowed;
    r.bytes_rate = (double)gsim_stats(s)->bytes / n / ((double)periods);
    gsim_destroy(s);
    return r;
}

static double ratio(uint64_t off, uint64_t on)
{
    return on ? (double)off / (double)on : (off ? INFINITY : 1.0);
}

static void stress_table(uint32_t n, uint32_t n_slow, double loss, uint32_t lat_max_ms,
                         uint64_t periods)
{
    struct stress off = stress_run(false, n, periods, 77, n_slow, loss, lat_max_ms);
    struct stress on = stress_run(true, n, periods, 77, n_slow, loss, lat_max_ms);
    printf("\n3. Stress: N=%u, %.0f%% loss, latency 10-%u ms, %u member(s) slowed 10x, %llu "
           "periods (same seed)\n",
           n, loss * 100, lat_max_ms, n_slow, (unsigned long long)periods);
    printf("%-36s %14s %14s %10s\n", "measure", "lifeguard off", "lifeguard on", "off/on");
    printf("%-36s %14llu %14llu %10.1f\n", "false suspicions raised (all)",
           (unsigned long long)off.suspicions, (unsigned long long)on.suspicions,
           ratio(off.suspicions, on.suspicions));
    printf("%-36s %14llu %14llu %10.1f\n", "  of which by the slowed member(s)",
           (unsigned long long)off.slow_suspicions, (unsigned long long)on.slow_suspicions,
           ratio(off.slow_suspicions, on.slow_suspicions));
    printf("%-36s %14llu %14llu %10.1f\n", "suspect events about healthy members",
           (unsigned long long)off.events_healthy, (unsigned long long)on.events_healthy,
           ratio(off.events_healthy, on.events_healthy));
    printf("%-36s %14llu %14llu %10.1f\n", "suspect events about slowed members",
           (unsigned long long)off.events_slowed, (unsigned long long)on.events_slowed,
           ratio(off.events_slowed, on.events_slowed));
    printf("%-36s %14llu %14llu %10.1f\n", "false deaths (observer events)",
           (unsigned long long)off.deaths, (unsigned long long)on.deaths,
           ratio(off.deaths, on.deaths));
    printf("%-36s %14llu %14llu %10.1f\n", "refutations", (unsigned long long)off.refutations,
           (unsigned long long)on.refutations, ratio(off.refutations, on.refutations));
    printf("%-36s %14.0f %14.0f %10.2f\n", "bytes per member per second", off.bytes_rate,
           on.bytes_rate, off.bytes_rate / on.bytes_rate);
}

int main(void)
{
    double t0 = wall_s();
    printf("bench_gossip: SWIM + Lifeguard core in the deterministic simulator%s\n",
           quick() ? " (NX_SIM_QUICK)" : "");
    dissemination();
    detection();
    uint64_t periods = quick() ? 300 : 2000;
    /* the brief's stress: loss plus one member whose inbound path is slow */
    stress_table(48, 1, 0.10, 120, periods);
    /* harsher: an eighth of the members slowed and 20% loss */
    stress_table(48, 6, 0.20, 100, periods);
    printf("\nwall time %.1f s\n", wall_s() - t0);
    return 0;
}
