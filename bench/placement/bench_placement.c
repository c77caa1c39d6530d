/*
 * bench_placement - placement decisions per second for 10, 1,000 and 10,000
 * candidate members (goal: under 100 µs per decision at 1,000).
 *
 * The view is seeded and realistic: 90% alive, 5% suspect, 5% dead; free CPU
 * and memory anywhere from 0 to all; one member in ten with 1-8 GPUs; a zone
 * label on every member. The run needs 500 millicores, 1 GiB and "zone!=z3".
 *
 * Measured, each the mean over many decisions (fastest of 5 rounds):
 *   place k=1     place_rank picking the best member (what a forward needs)
 *   place k=3     the best three (a forward plus two fallbacks)
 *   plan          every member's verdict and the full ranking (agent plan)
 * Baselines in the same run:
 *   scan          a bare linear scan for the most free CPU, no filter, no score
 *   qsort         filter on CPU and memory, score, then qsort every candidate
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node/placement.h"

#define GIB (1ull << 30)
#define SIZES 3
#define TARGET_NS 200000000.0 /* time spent per measurement */
#define ROUNDS 5              /* the fastest round counts */

/*
 * CPU time of this thread, not wall time: the build machine is shared, and
 * time spent descheduled while others compile is not the cost of a decision.
 */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void make_view(struct gossip_member_info *m, size_t n, uint64_t seed)
{
    struct nx_rng rng;
    nx_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        memset(&m[i], 0, sizeof m[i]);
        for (size_t b = 0; b < GOSSIP_ID_BYTES; b += 8) {
            uint64_t r = nx_rng_next(&rng);
            memcpy(m[i].id + b, &r, 8);
        }
        uint64_t s = nx_rng_below(&rng, 100);
        m[i].state = s < 90 ? GOSSIP_ALIVE : s < 95 ? GOSSIP_SUSPECT : GOSSIP_DEAD;
        struct gossip_meta *meta = &m[i].meta;
        meta->cpu_total_millicores = 1000u * (uint32_t)(1 + nx_rng_below(&rng, 16));
        meta->cpu_free_millicores = (uint32_t)nx_rng_below(&rng, meta->cpu_total_millicores + 1);
        meta->mem_total_bytes = GIB * (1 + nx_rng_below(&rng, 64));
        meta->mem_free_bytes = nx_rng_below(&rng, meta->mem_total_bytes + 1);
        if (nx_rng_below(&rng, 10) == 0) {
            meta->gpu_count = (uint32_t)(1 + nx_rng_below(&rng, 8));
            meta->gpu_mem_count = meta->gpu_count;
            for (uint32_t g = 0; g < meta->gpu_count; g++)
                meta->gpu_mem_bytes[g] = 16 * GIB;
        }
        meta->label_count = 2;
        snprintf(meta->labels[0].key, sizeof meta->labels[0].key, "arch");
        snprintf(meta->labels[0].value, sizeof meta->labels[0].value, "x86_64");
        snprintf(meta->labels[1].key, sizeof meta->labels[1].key, "zone");
        snprintf(meta->labels[1].value, sizeof meta->labels[1].value, "z%u",
                 (unsigned)nx_rng_below(&rng, 4));
    }
}

struct cand {
    uint32_t member;
    double score;
};

static int cand_desc(const void *a, const void *b)
{
    double x = ((const struct cand *)a)->score, y = ((const struct cand *)b)->score;
    return x < y ? 1 : x > y ? -1 : 0;
}

struct ctx {
    const struct place_needs *needs;
    const struct gossip_member_info *m;
    size_t n;
    struct place_verdict *verdicts;
    struct place_pick *picks;
    struct cand *cands;
    struct nx_rng rng;
    uint64_t sink;
};

static void do_place(struct ctx *c, size_t k, bool verdicts)
{
    struct place_result res;
    int rc =
        place_rank(c->needs, c->m, c->n, &c->rng, verdicts ? c->verdicts : NULL, c->picks, k, &res);
    c->sink += (uint64_t)rc + (res.picked_count ? c->picks[0].member : 0);
}

static void do_scan(struct ctx *c)
{
    uint32_t best = 0, best_free = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->m[i].meta.cpu_free_millicores > best_free) {
            best_free = c->m[i].meta.cpu_free_millicores;
            best = (uint32_t)i;
        }
    }
    c->sink += best;
}

static void do_qsort(struct ctx *c)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        const struct gossip_meta *mt = &c->m[i].meta;
        if (c->m[i].state != GOSSIP_ALIVE || mt->cpu_free_millicores < c->needs->cpu_millicores ||
            mt->mem_free_bytes < c->needs->mem_bytes)
            continue;
        double s =
            ((double)(mt->cpu_free_millicores - c->needs->cpu_millicores) /
                 mt->cpu_total_millicores +
             (double)(mt->mem_free_bytes - c->needs->mem_bytes) / (double)mt->mem_total_bytes) /
            2;
        c->cands[k++] = (struct cand){(uint32_t)i, s};
    }
    qsort(c->cands, k, sizeof c->cands[0], cand_desc);
    c->sink += k ? c->cands[0].member : 0;
}

enum what { PLACE1, PLACE3, PLAN, SCAN, QSORT, WHAT__COUNT };

static void run_once(struct ctx *c, enum what w)
{
    switch (w) {
    case PLACE1:
        do_place(c, 1, false);
        break;
    case PLACE3:
        do_place(c, 3, false);
        break;
    case PLAN:
        do_place(c, c->n, true);
        break;
    case SCAN:
        do_scan(c);
        break;
    default:
        do_qsort(c);
        break;
    }
}

/*
 * ns per decision: a calibration round, then ROUNDS rounds of TARGET_NS /
 * ROUNDS each; the fastest round's mean counts, because the machine is shared
 * and a slow round measures the neighbours, not us.
 */
static double measure(struct ctx *c, enum what w)
{
    uint64_t t0 = now_ns();
    size_t calib = 0;
    while (now_ns() - t0 < 10000000ull) {
        run_once(c, w);
        calib++;
    }
    double per = 10000000.0 / (double)calib;
    size_t iters = (size_t)(TARGET_NS / ROUNDS / per) + 1;
    double best = 0;
    for (int r = 0; r < ROUNDS; r++) {
        t0 = now_ns();
        for (size_t i = 0; i < iters; i++)
            run_once(c, w);
        double mean = (double)(now_ns() - t0) / (double)iters;
        if (r == 0 || mean < best)
            best = mean;
    }
    return best;
}

int main(void)
{
    static const size_t sizes[SIZES] = {10, 1000, 10000};
    struct place_needs needs = {.cpu_millicores = 500, .mem_bytes = GIB};
    if (place_needs_add(&needs, "zone!=z3") != NX_OK)
        return 1;
    size_t nmax = sizes[SIZES - 1];
    struct gossip_member_info *m = calloc(nmax, sizeof *m);
    struct place_verdict *v = calloc(nmax, sizeof *v);
    struct place_pick *p = calloc(nmax, sizeof *p);
    struct cand *cands = calloc(nmax, sizeof *cands);
    if (m == NULL || v == NULL || p == NULL || cands == NULL)
        return 1;
    make_view(m, nmax, 42);

    printf("placement decision, mean thread CPU time, fastest of %d rounds (run: 500 mc, 1 GiB, "
           "zone!=z3; 90%% alive)\n",
           ROUNDS);
    printf("%8s %10s %12s %10s %10s | %9s %7s | %9s %7s\n", "members", "k=1 µs", "decisions/s",
           "k=3 µs", "plan µs", "scan µs", "k=1/scn", "qsort µs", "k=1/qs");
    uint64_t sink = 0;
    bool goal_met = true;
    for (int s = 0; s < SIZES; s++) {
        struct ctx c = {&needs, m, sizes[s], v, p, cands, {{0}}, 0};
        nx_rng_seed(&c.rng, 1);
        double ns[WHAT__COUNT];
        (void)measure(&c, PLAN); /* warm the caches and the page tables first */
        for (int w = 0; w < WHAT__COUNT; w++)
            ns[w] = measure(&c, (enum what)w);
        sink += c.sink;
        printf("%8zu %10.2f %12.0f %10.2f %10.2f | %9.2f %6.1fx | %9.2f %6.2fx\n", sizes[s],
               ns[PLACE1] / 1000, 1e9 / ns[PLACE1], ns[PLACE3] / 1000, ns[PLAN] / 1000,
               ns[SCAN] / 1000, ns[PLACE1] / ns[SCAN], ns[QSORT] / 1000, ns[PLACE1] / ns[QSORT]);
        if (sizes[s] == 1000 && ns[PLACE1] > 100000)
            goal_met = false;
    }
    printf("goal (< 100 µs per decision at 1,000 members): %s\n", goal_met ? "met" : "MISSED");
    printf("(sink %llu)\n", (unsigned long long)(sink & 1));
    free(m);
    free(v);
    free(p);
    free(cands);
    return 0;
}
