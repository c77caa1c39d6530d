/*
 * Seeded simulations of the gossip core (see gsim.h): dissemination speed,
 * failure detection bound, no false deaths under loss and a slow node,
 * partition healing, churn. Each test runs a few seeds and checks medians
 * where the property is statistical and every seed where it is a bound.
 *
 * Replay one seed:  NX_SIM_SEED=<seed> build/release/tests/sim_gossip <test>
 * Faster run:       NX_SIM_QUICK=1 (fewer seeds, members and periods)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "gossip/gossip.h"
#include "tests/sim/gossip/gsim.h"

#define SEEDS_MAX 8

static bool quick(void)
{
    return gsim_quick();
}

/* Seeds to run: NX_SIM_SEED alone when set, else a fixed list. */
static int seeds(uint64_t *out, int normal, uint64_t base)
{
    const char *env = getenv("NX_SIM_SEED");
    if (env && *env) {
        out[0] = strtoull(env, NULL, 0);
        return 1;
    }
    int n = quick() ? (normal + 1) / 2 : normal;
    for (int i = 0; i < n; i++)
        out[i] = base + (uint64_t)i * 7919;
    return n;
}

static void replay_hint(const char *test, uint64_t seed)
{
    fprintf(stderr, "replay: NX_SIM_SEED=%llu build/release/tests/sim_gossip %s\n",
            (unsigned long long)seed, test);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static struct gsim_config base_config(uint32_t n, uint64_t seed)
{
    struct gsim_config c;
    memset(&c, 0, sizeof c);
    c.n = n;
    c.seed = seed;
    c.lat_min_ms = 2;
    c.lat_max_ms = 20;
    c.capacity = n + 16;
    gossip_config_default(&c.gossip);
    c.gossip.max_push_pull_bytes = 1u << 20;
    return c;
}

static void expect_no_false_death(const struct gsim *s, const char *test, uint64_t seed)
{
    const struct gsim_stats *st = gsim_stats(s);
    if (st->false_deaths) {
        fprintf(stderr, "invariant broken: %s (%llu false deaths)\n", st->first_violation,
                (unsigned long long)st->false_deaths);
        replay_hint(test, seed);
    }
    assert_int_equal(st->false_deaths, 0);
}

static void expect_converged(const struct gsim *s, const char *test, uint64_t seed)
{
    if (gsim_unconverged_pairs(s) > 0) {
        gsim_print_unconverged(s);
        replay_hint(test, seed);
    }
    assert_int_equal(gsim_unconverged_pairs(s), 0);
}

/* ---- join dissemination ------------------------------------------------------ */

static void join_news_reaches_all_1000_within_log2n_plus_4_periods(void **state)
{
    (void)state;
    const char *test = "join_news_reaches_all_1000_within_log2n_plus_4_periods";
    uint64_t sd[SEEDS_MAX];
    int ns = seeds(sd, 3, 101);
    uint32_t n = quick() ? 200 : 1000;
    double bound = ceil(log2((double)n)) + 4, periods[SEEDS_MAX];
    for (int k = 0; k < ns; k++) {
        struct gsim_config cfg = base_config(n, sd[k]);
        struct gsim *s = gsim_create(&cfg);
        assert_non_null(s);
        uint64_t period = cfg.gossip.probe_interval_ms;
        gsim_run_until(s, gsim_now(s) + 3 * period);
        uint64_t t0 = gsim_now(s);
        int j = gsim_add_node(s, (uint32_t)(sd[k] % n));
        assert_true(j >= 0);
        uint64_t t = t0;
        while (gsim_count_not_in_state(s, (uint32_t)j, GOSSIP_ALIVE) > 0 && t < t0 + 60 * period) {
            t += 20;
            gsim_run_until(s, t);
        }
        periods[k] = (double)(t - t0) / (double)period;
        printf("  seed %llu: N=%u join known by all after %.2f periods (bound %.0f)\n",
               (unsigned long long)sd[k], n, periods[k], bound);
        if (periods[k] > bound)
            replay_hint(test, sd[k]);
        expect_no_false_death(s, test, sd[k]);
        gsim_destroy(s);
    }
    double med = median(periods, ns);
    printf("  median %.2f periods, bound ceil(log2 %u)+4 = %.0f\n", med, n, bound);
    assert_true(med <= bound);
}

/* ---- failure detection --------------------------------------------------------- */

static void crashed_member_declared_dead_by_all_within_bound(void **state)
{
    (void)state;
    const char *test = "crashed_member_declared_dead_by_all_within_bound";
    uint64_t sd[SEEDS_MAX];
    int ns = seeds(sd, 5, 202);
    uint32_t n = quick() ? 32 : 64;
    for (int k = 0; k < ns; k++) {
        struct gsim_config cfg = base_config(n, sd[k]);
        struct gsim *s = gsim_create(&cfg);
        assert_non_null(s);
        uint64_t period = cfg.gossip.probe_interval_ms;
        gsim_run_until(s, gsim_now(s) + 5 * period);
        /*
         * Bound: someone probes the crashed member within 10 periods (each of
         * the N-1 others probes it with probability ~1/(N-1) per period, so
         * missing it for 10 periods has probability ~e^-10), one more period
         * for the ping-req round, the Lifeguard maximum suspicion timeout (no
         * confirmation at all), then ceil(log2 N)+4 periods of dissemination.
         */
        uint64_t smax = gossip_suspicion_timeout_ms(gsim_core(s, 0), 0);
        uint64_t bound = 11 * period + smax + (uint64_t)(ceil(log2((double)n)) + 4) * period;
        uint32_t victim = (uint32_t)(sd[k] % n);
        uint64_t t0 = gsim_now(s), t = t0, first_suspect = 0;
        gsim_crash(s, victim);
        while (gsim_count_not_in_state(s, victim, GOSSIP_DEAD) > 0 && t < t0 + 2 * bound) {
            t += 10;
            gsim_run_until(s, t);
            if (!first_suspect && gsim_count_not_in_state(s, victim, GOSSIP_ALIVE) > 0)
                first_suspect = t;
        }
        printf("  seed %llu: N=%u first suspicion after %.2f periods, dead at all after %.1f s "
               "(bound %.1f s = 11 T + max suspicion %.1f s + (log2 N + 4) T)\n",
               (unsigned long long)sd[k], n, (double)(first_suspect - t0) / (double)period,
               (double)(t - t0) / 1000.0, (double)bound / 1000.0, (double)smax / 1000.0);
        if (t - t0 > bound)
            replay_hint(test, sd[k]);
        assert_true(t - t0 <= bound);
        expect_no_false_death(s, test, sd[k]);
        gsim_destroy(s);
    }
}

/* ---- no false positives under stress ------------------------------------------ */

static void no_healthy_member_dead_under_loss_and_slow_node(void **state)
{
    (void)state;
    const char *test = "no_healthy_member_dead_under_loss_and_slow_node";
    uint64_t sd[SEEDS_MAX];
    int ns = seeds(sd, 1, 303);
    uint32_t n = quick() ? 24 : 48;
    uint64_t periods = quick() ? 1000 : 10000;
    for (int k = 0; k < ns; k++) {
        struct gsim_config cfg = base_config(n, sd[k]);
        cfg.loss = 0.10;
        cfg.lat_min_ms = 10;
        cfg.lat_max_ms = 60;
        struct gsim *s = gsim_create(&cfg);
        assert_non_null(s);
        gsim_set_slow(s, 3, 10);
        gsim_run_until(s, gsim_now(s) + periods * cfg.gossip.probe_interval_ms);
        const struct gsim_stats *st = gsim_stats(s);
        printf("  seed %llu: N=%u, 10%% loss, node 3 slowed 10x, %llu periods: %llu false "
               "suspicions, %llu false deaths, %llu messages\n",
               (unsigned long long)sd[k], n, (unsigned long long)periods,
               (unsigned long long)st->false_suspicions, (unsigned long long)st->false_deaths,
               (unsigned long long)st->messages);
        expect_no_false_death(s, test, sd[k]);
        /* liveness phase: faults off, the views must settle to all alive */
        gsim_set_loss(s, 0);
        gsim_set_slow(s, 3, 1);
        gsim_run_until(s, gsim_now(s) + 20 * cfg.gossip.probe_interval_ms);
        expect_converged(s, test, sd[k]);
        gsim_destroy(s);
    }
}

/* ---- partitions ------------------------------------------------------------------ */

static void healed_partition_merges_into_one_view(void **state)
{
    (void)state;
    const char *test = "healed_partition_merges_into_one_view";
    uint64_t sd[SEEDS_MAX];
    int ns = seeds(sd, 3, 404);
    uint32_t n = quick() ? 16 : 32;
    for (int k = 0; k < ns; k++) {
        struct gsim_config cfg = base_config(n, sd[k]);
        cfg.gossip.push_pull_interval_ms = 10000;
        struct gsim *s = gsim_create(&cfg);
        assert_non_null(s);
        uint64_t period = cfg.gossip.probe_interval_ms;
        gsim_run_until(s, gsim_now(s) + 5 * period);
        expect_no_false_death(s, test, sd[k]);
        uint8_t group[64];
        for (uint32_t i = 0; i < n; i++)
            group[i] = i < n / 2 ? 0 : 1;
        gsim_partition(s, group);
        /* Each side comes to hold the other side dead. While cut off, every member's
         * Lifeguard health multiplier climbs (no relay on the far side ever nacks), which
         * stretches suspicion timeouts on purpose: most seeds take 70-90 periods, a few
         * more, so the bound is 150. */
        uint64_t p0 = gsim_now(s);
        while ((gsim_count_not_in_state(s, 0, GOSSIP_DEAD) != n / 2 - 1 ||
                gsim_count_not_in_state(s, n - 1, GOSSIP_DEAD) != n / 2 - 1) &&
               gsim_now(s) < p0 + 150 * period)
            gsim_run_until(s, gsim_now(s) + period);
        assert_int_equal(gsim_count_not_in_state(s, 0, GOSSIP_DEAD), n / 2 - 1);
        assert_int_equal(gsim_count_not_in_state(s, n - 1, GOSSIP_DEAD), n / 2 - 1);
        double cut_periods = (double)(gsim_now(s) - p0) / (double)period;
        gsim_partition(s, NULL);
        uint64_t t0 = gsim_now(s), t = t0;
        while (gsim_unconverged_pairs(s) > 0 && t < t0 + 120 * period) {
            t += 100;
            gsim_run_until(s, t);
        }
        printf("  seed %llu: N=%u, sides dead to each other after %.0f periods, merged %.1f "
               "periods after healing\n",
               (unsigned long long)sd[k], n, cut_periods, (double)(t - t0) / (double)period);
        expect_converged(s, test, sd[k]);
        gsim_destroy(s);
    }
}

/* ---- restart ------------------------------------------------------------------- */

static void restarted_member_rejoins_with_higher_incarnation(void **state)
{
    (void)state;
    const char *test = "restarted_member_rejoins_with_higher_incarnation";
    uint64_t sd[SEEDS_MAX];
    int ns = seeds(sd, 3, 606);
    uint32_t n = quick() ? 16 : 32;
    for (int k = 0; k < ns; k++) {
        struct gsim_config cfg = base_config(n, sd[k]);
        struct gsim *s = gsim_create(&cfg);
        assert_non_null(s);
        uint64_t period = cfg.gossip.probe_interval_ms;
        uint32_t victim = (uint32_t)(sd[k] % n), via = (victim + 1) % n;
        gsim_run_until(s, gsim_now(s) + 5 * period);
        gsim_crash(s, victim);
        gsim_run_until(s, gsim_now(s) + 80 * period);
        assert_int_equal(gsim_count_not_in_state(s, victim, GOSSIP_DEAD), 0);
        /* the host passes a larger starting incarnation (e.g. wall-clock ms);
         * every other seed it restarts at 1 and must refute its own death */
        uint64_t inc = k % 2 ? 1 : gsim_now(s);
        assert_int_equal(gsim_restart(s, victim, inc, via), 0);
        uint64_t t0 = gsim_now(s), t = t0;
        while (gsim_unconverged_pairs(s) > 0 && t < t0 + 30 * period) {
            t += 50;
            gsim_run_until(s, t);
        }
        printf("  seed %llu: N=%u, member %u restarted at incarnation %llu, alive everywhere "
               "after %.1f periods\n",
               (unsigned long long)sd[k], n, victim, (unsigned long long)inc,
               (double)(t - t0) / (double)period);
        expect_converged(s, test, sd[k]);
        expect_no_false_death(s, test, sd[k]);
        gsim_destroy(s);
    }
}

/* ---- churn ------------------------------------------------------------------------- */

static uint32_t random_healthy(const struct gsim *s, struct nx_rng *r)
{
    for (;;) {
        uint32_t i = (uint32_t)nx_rng_below(r, gsim_count(s));
        if (gsim_healthy(s, i))
            return i;
    }
}

static void churn_keeps_views_consistent(void **state)
{
    (void)state;
    const char *test = "churn_keeps_views_consistent";
    uint64_t sd[SEEDS_MAX];
    int ns = seeds(sd, 3, 505);
    for (int k = 0; k < ns; k++) {
        struct gsim_config cfg = base_config(24, sd[k]);
        cfg.loss = 0.01;
        struct gsim *s = gsim_create(&cfg);
        assert_non_null(s);
        struct nx_rng r;
        nx_rng_seed(&r, sd[k]);
        uint64_t period = cfg.gossip.probe_interval_ms;
        for (int step = 0; step < 8; step++) {
            gsim_run_until(s, gsim_now(s) + 10 * period);
            assert_true(gsim_add_node(s, random_healthy(s, &r)) >= 0);
            if (step % 3 == 2)
                gsim_leave(s, random_healthy(s, &r));
        }
        gsim_run_until(s, gsim_now(s) + 60 * period);
        expect_no_false_death(s, test, sd[k]);
        expect_converged(s, test, sd[k]);
        /* those who left are left (or, for later joiners, never known) */
        for (uint32_t j = 0; j < gsim_count(s); j++)
            for (uint32_t i = 0; i < gsim_count(s) && !gsim_healthy(s, j); i++) {
                enum gossip_state st = GOSSIP_LEFT;
                if (gsim_healthy(s, i))
                    (void)gossip_member_state(gsim_core(s, i), gsim_id(s, j), &st, NULL);
                assert_int_equal(st, GOSSIP_LEFT);
            }
        gsim_destroy(s);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(join_news_reaches_all_1000_within_log2n_plus_4_periods),
        cmocka_unit_test(crashed_member_declared_dead_by_all_within_bound),
        cmocka_unit_test(no_healthy_member_dead_under_loss_and_slow_node),
        cmocka_unit_test(healed_partition_merges_into_one_view),
        cmocka_unit_test(restarted_member_rejoins_with_higher_incarnation),
        cmocka_unit_test(churn_keeps_views_consistent),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
