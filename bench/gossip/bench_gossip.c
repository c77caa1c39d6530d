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
 *     also for healthy members crashing during a stressed run, off and on;
 *  3. false suspicions under stress: the Lifeguard paper's kind (members
 *     slowed by CPU starvation, throughout or in episodes) and, for contrast,
 *     heavy uniform loss; Lifeguard off (baseline) and on, on the same seeds.
 *
 * Usage: bench_gossip [dissemination|detection|stress]  (default: all).
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

/* Network and stress conditions shared by the detection and stress runs. */
struct scenario {
    const char *name;
    uint32_t n;
    uint32_t lat_min_ms, lat_max_ms;
    double loss;
    uint32_t n_slow;      /* members 3 .. 3+n_slow-1 are slowed */
    uint32_t slow_factor; /* 10: a CPU-starved member, see gsim.h */
    uint32_t episode_s;   /* 0: slowed throughout; else slow episodes of this
                             many seconds alternating with as many normal ones */
};

static void set_slowness(struct gsim *s, const struct scenario *sc, uint64_t second)
{
    for (uint32_t i = 0; i < sc->n_slow; i++) {
        bool slow = true;
        if (sc->episode_s) /* each member on its own phase */
            slow = (second + (uint64_t)i * 7919) % (2u * sc->episode_s) < sc->episode_s;
        gsim_set_slow(s, 3 + i, slow ? sc->slow_factor : 1);
    }
}

static struct gsim *scenario_sim(const struct scenario *sc, bool lifeguard, uint64_t seed)
{
    struct gsim_config cfg = config(sc->n, seed);
    cfg.loss = sc->loss;
    cfg.lat_min_ms = sc->lat_min_ms;
    cfg.lat_max_ms = sc->lat_max_ms;
    cfg.gossip.lifeguard_awareness = lifeguard;
    cfg.gossip.lifeguard_suspicion = lifeguard;
    cfg.gossip.lifeguard_nack = lifeguard;
    struct gsim *s = gsim_create(&cfg);
    if (s)
        set_slowness(s, sc, 0);
    return s;
}

struct detect {
    double first; /* periods from crash to the first suspicion anywhere */
    double all;   /* periods from crash to dead at every member */
};

/* Crashes one healthy (not slowed) member per run at a random phase. */
static struct detect detect_runs(const struct scenario *sc, bool lifeguard, int runs)
{
    struct detect d = {0, 0};
    uint64_t T = 1000;
    for (int r = 0; r < runs; r++) {
        struct gsim *s = scenario_sim(sc, lifeguard, 5000 + (uint64_t)r);
        /* warm up long enough for the health multipliers to settle */
        uint64_t warm = (sc->n_slow ? 60 : 3) * T + (uint64_t)(r * 97) % T;
        for (uint64_t t = T; t <= warm; t += T) {
            gsim_run_until(s, gsim_now(s) + T);
            set_slowness(s, sc, t / T);
        }
        uint32_t victim = 3 + sc->n_slow + (uint32_t)(r * 13) % (sc->n - 3 - sc->n_slow);
        uint64_t t0 = gsim_now(s), t = t0, t_first = 0;
        gsim_crash(s, victim);
        while (gsim_count_not_in_state(s, victim, GOSSIP_DEAD) > 0 && t < t0 + 200 * T) {
            t += 10;
            gsim_run_until(s, t);
            if ((t - t0) % T == 0)
                set_slowness(s, sc, (t - t0) / T + warm / T);
            if (!t_first && gsim_count_not_in_state(s, victim, GOSSIP_ALIVE) > 0)
                t_first = t;
        }
        d.first += (double)(t_first - t0) / (double)T / runs;
        d.all += (double)(t - t0) / (double)T / runs;
        gsim_destroy(s);
    }
    return d;
}

static void detection(void)
{
    int runs = quick() ? 10 : 40;
    double e = exp(1.0), swim = e / (e - 1), goal = 1.1 * swim + 0.5; /* + probe timeout */
    struct scenario calm = {"calm", 64, 2, 20, 0, 0, 10, 0};
    struct scenario stressed = {"stressed", 48, 10, 120, 0.01, 6, 10, 20};
    struct detect base = detect_runs(&calm, true, runs);
    printf("\n2. Failure detection, %d crashes of healthy members (T = 1000 ms, probe timeout "
           "500 ms)\n",
           runs);
    printf("   goal: crash -> first suspicion <= 1.1 x e/(e-1) + probe timeout = %.2f periods\n",
           goal);
    printf("%-58s %10s %10s %6s\n", "scenario", "first susp", "dead @all", "goal");
    printf("%-58s %10.2f %10.2f %6s\n", "N=64, latency 2-20 ms, no loss, Lifeguard on", base.first,
           base.all, base.first <= goal ? "met" : "MISSED");
    for (int lg = 0; lg < 2; lg++) {
        struct detect d = detect_runs(&stressed, lg, runs);
        char name[80];
        snprintf(name, sizeof name, "N=48, 10-120 ms, 1%% loss, 6 slowed in episodes, LG %s",
                 lg ? "on" : "off");
        printf("%-58s %10.2f %10.2f %6s\n", name, d.first, d.all, d.first <= goal ? "met" : "-");
    }
}

/* ---- 3. false suspicions under stress ------------------------------------------ */

struct stress {
    uint64_t raised_healthy;   /* suspicions raised by a failed probe about a healthy member */
    uint64_t raised_slowed;    /* ... about a slowed member */
    uint64_t raised_by_slowed; /* raised by a slowed member's probe */
    uint64_t events_healthy;   /* members that learned a suspicion of a healthy member */
    uint64_t events_slowed;    /* ... of a slowed member */
    uint64_t deaths;           /* false deaths, all observers */
    uint64_t refutations;
    uint64_t deferred; /* verdicts put off by a raised health multiplier */
    double bytes_rate;
};

static void stress_add(struct stress *r, const struct scenario *sc, bool lifeguard, uint64_t seed,
                       uint64_t periods)
{
    struct gsim *s = scenario_sim(sc, lifeguard, seed);
    for (uint64_t k = 1; k <= periods; k++) {
        gsim_run_until(s, gsim_now(s) + 1000);
        set_slowness(s, sc, k);
    }
    const struct gsim_stats *st = gsim_stats(s);
    r->raised_healthy += st->raised_healthy;
    r->raised_slowed += st->raised_slowed;
    r->raised_by_slowed += st->raised_by_slowed;
    r->events_slowed += st->slow_suspicions;
    r->events_healthy += st->false_suspicions - st->slow_suspicions;
    r->deaths += st->false_deaths;
    r->refutations += sum_counter(s, offsetof(struct gossip_counters, refutations));
    r->deferred += sum_counter(s, offsetof(struct gossip_counters, verdicts_deferred));
    r->bytes_rate += (double)st->bytes / sc->n / ((double)periods);
    gsim_destroy(s);
}

/* off/on; with none left on, a lower bound as if one were; "-" when off is 0. */
static void print_row(const char *what, uint64_t off, uint64_t on)
{
    char buf[32];
    if (!off)
        snprintf(buf, sizeof buf, "-");
    else if (on)
        snprintf(buf, sizeof buf, "%.1f", (double)off / (double)on);
    else
        snprintf(buf, sizeof buf, ">= %llu", (unsigned long long)off);
    printf("%-44s %14llu %14llu %10s\n", what, (unsigned long long)off, (unsigned long long)on,
           buf);
}

/* Returns off/on for suspicions raised about healthy members (lower bound when on = 0). */
static double stress_table(const struct scenario *sc, uint64_t periods, int seeds)
{
    struct stress off, on;
    memset(&off, 0, sizeof off);
    memset(&on, 0, sizeof on);
    for (int k = 0; k < seeds; k++) { /* identical seeds for both arms */
        stress_add(&off, sc, false, 77 + (uint64_t)k, periods);
        stress_add(&on, sc, true, 77 + (uint64_t)k, periods);
    }
    printf("\n3%s. %s: N=%u, latency %u-%u ms, %.0f%% loss, %u member(s) slowed %ux", sc->name,
           sc->episode_s ? "Intermittent stress" : "Stress", sc->n, sc->lat_min_ms, sc->lat_max_ms,
           sc->loss * 100, sc->n_slow, sc->slow_factor);
    if (sc->episode_s)
        printf(" in %u s episodes", sc->episode_s);
    printf(", %llu periods x %d seeds (same seeds off/on)\n", (unsigned long long)periods, seeds);
    printf("%-44s %14s %14s %10s\n", "measure", "lifeguard off", "lifeguard on", "off/on");
    print_row("suspicions raised about healthy members", off.raised_healthy, on.raised_healthy);
    print_row("members told a healthy member is suspect", off.events_healthy, on.events_healthy);
    print_row("suspicions raised about slowed members", off.raised_slowed, on.raised_slowed);
    print_row("members told a slowed member is suspect", off.events_slowed, on.events_slowed);
    print_row("suspicions raised by slowed members", off.raised_by_slowed, on.raised_by_slowed);
    print_row("false deaths (observer events)", off.deaths, on.deaths);
    print_row("refutations", off.refutations, on.refutations);
    print_row("verdicts deferred (LHM rose)", off.deferred, on.deferred);
    printf("%-44s %14.0f %14.0f %10.2f\n", "bytes per member per second", off.bytes_rate / seeds,
           on.bytes_rate / seeds, off.bytes_rate / on.bytes_rate);
    return (double)off.raised_healthy / (double)(on.raised_healthy ? on.raised_healthy : 1);
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : "";
    double t0 = wall_s();
    printf("bench_gossip: SWIM + Lifeguard core in the deterministic simulator%s\n",
           quick() ? " (NX_SIM_QUICK)" : "");
    if (!*only || strcmp(only, "dissemination") == 0)
        dissemination();
    if (!*only || strcmp(only, "detection") == 0)
        detection();
    if (!*only || strcmp(only, "stress") == 0) {
        uint64_t periods = quick() ? 300 : 2000;
        int seeds = quick() ? 1 : 3;
        /*
         * The Lifeguard paper's stress: members whose message processing is
         * slow (CPU starvation), on an otherwise sound network; here with 1%
         * background loss on top. Healthy members are those not slowed.
         */
        struct scenario one = {"a", 48, 10, 120, 0.01, 1, 10, 0};
        struct scenario episodes = {"b", 48, 10, 120, 0.01, 6, 10, 20};
        double ra = stress_table(&one, periods, seeds);
        double rb = stress_table(&episodes, periods, seeds);
        /* uniform heavy loss: no one's fault, which Lifeguard does not target */
        struct scenario lossy = {"c", 48, 10, 120, 0.10, 1, 10, 0};
        struct scenario harsh = {"d", 48, 10, 100, 0.20, 6, 10, 0};
        stress_table(&lossy, periods, seeds);
        stress_table(&harsh, periods, seeds);
        printf("\nGoal (3a, 3b): >= 50x fewer suspicions of healthy members with Lifeguard on: "
               "%.0fx%s, %.0fx%s -> %s\n",
               ra, ra >= 50 ? "" : " (short)", rb, rb >= 50 ? "" : " (short)",
               ra >= 50 && rb >= 50 ? "met" : "NOT met");
    }
    printf("\nwall time %.1f s\n", wall_s() - t0);
    return 0;
}
