/*
 * Unit tests of node/placement.c: each filter and its verdict text, the
 * ranking, the seeded tie-break, top-k selection, the "why nothing fits"
 * explanation, suspect/dead/left handling, soft anti-affinity, admission
 * against the real state, and the spread of many runs placed one by one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "node/placement.h"

#define GIB (1ull << 30)
#define MIB (1ull << 20)
#define MEMBERS_MAX 16

static void make_member(struct gossip_member_info *m, uint8_t tag, enum gossip_state state,
                        uint32_t cpu_free, uint32_t cpu_total, uint64_t mem_free,
                        uint64_t mem_total)
{
    memset(m, 0, sizeof *m);
    memset(m->id, tag, sizeof m->id);
    m->state = state;
    m->meta.cpu_free_millicores = cpu_free;
    m->meta.cpu_total_millicores = cpu_total;
    m->meta.mem_free_bytes = mem_free;
    m->meta.mem_total_bytes = mem_total;
}

static void add_gpus(struct gossip_member_info *m, uint32_t count, uint64_t mem_each)
{
    m->meta.gpu_count = count;
    m->meta.gpu_mem_count = count;
    for (uint32_t i = 0; i < count; i++)
        m->meta.gpu_mem_bytes[i] = mem_each;
}

static void add_label(struct gossip_member_info *m, const char *key, const char *value)
{
    struct gossip_label *l = &m->meta.labels[m->meta.label_count++];
    snprintf(l->key, sizeof l->key, "%s", key);
    snprintf(l->value, sizeof l->value, "%s", value);
}

/* Four alive members, 4000 mc and 8 GiB each, all free. */
static void four_equal(struct gossip_member_info *m)
{
    for (uint8_t i = 0; i < 4; i++)
        make_member(&m[i], (uint8_t)(0x10 + i), GOSSIP_ALIVE, 4000, 4000, 8 * GIB, 8 * GIB);
}

static int rank(const struct place_needs *nd, const struct gossip_member_info *m, size_t n,
                uint64_t seed, struct place_verdict *v, struct place_pick *picks, size_t k,
                struct place_result *res)
{
    struct nx_rng rng;
    nx_rng_seed(&rng, seed);
    return place_rank(nd, m, n, &rng, v, picks, k, res);
}

static const char *verdict_text(const struct place_verdict *v, const struct place_needs *nd,
                                const struct gossip_member_info *m)
{
    static char buf[PLACE_REASON_MAX];
    return place_verdict_format(v, nd, m, buf, sizeof buf);
}

/* ---- filters ------------------------------------------------------------- */

static void cpu_and_memory_needs_filter_with_reasons(void **state)
{
    (void)state;
    struct gossip_member_info m[3];
    make_member(&m[0], 1, GOSSIP_ALIVE, 500, 4000, 8 * GIB, 8 * GIB);
    make_member(&m[1], 2, GOSSIP_ALIVE, 4000, 4000, 1024 * MIB, 8 * GIB);
    make_member(&m[2], 3, GOSSIP_ALIVE, 2000, 4000, 5 * GIB, 8 * GIB);
    struct place_needs nd = {.cpu_millicores = 1000, .mem_bytes = 4096 * MIB};
    struct place_verdict v[3];
    struct place_pick p[3];
    struct place_result res;
    assert_int_equal(rank(&nd, m, 3, 1, v, p, 3, &res), NX_OK);
    assert_int_equal(v[0].reason, PLACE_CPU);
    assert_string_equal(verdict_text(&v[0], &nd, &m[0]), "needs 1000 millicores, has 500 free");
    assert_int_equal(v[1].reason, PLACE_MEM);
    assert_string_equal(verdict_text(&v[1], &nd, &m[1]), "needs 4096 MiB, has 1024 MiB free");
    assert_int_equal(v[2].reason, PLACE_FITS);
    assert_int_equal(res.fit_count, 1);
    assert_int_equal(res.picked_count, 1);
    assert_int_equal(p[0].member, 2);
}

static void gpu_needs_filter_by_count_and_memory_per_gpu(void **state)
{
    (void)state;
    struct gossip_member_info m[3];
    for (uint8_t i = 0; i < 3; i++)
        make_member(&m[i], (uint8_t)(i + 1), GOSSIP_ALIVE, 4000, 4000, 8 * GIB, 8 * GIB);
    add_gpus(&m[0], 1, 16 * GIB);
    add_gpus(&m[1], 2, 8 * GIB);
    add_gpus(&m[2], 2, 16 * GIB);
    m[2].meta.gpu_mem_bytes[0] = 8 * GIB; /* one small, one large */
    struct place_needs nd = {.gpus = 2};
    struct place_verdict v[3];
    struct place_result res;
    assert_int_equal(rank(&nd, m, 3, 1, v, NULL, 0, &res), NX_OK);
    assert_int_equal(v[0].reason, PLACE_GPU);
    assert_string_equal(verdict_text(&v[0], &nd, &m[0]), "needs 2 GPUs, has 1 free");
    assert_int_equal(v[1].reason, PLACE_FITS);
    assert_int_equal(v[2].reason, PLACE_FITS);
    nd.gpu_mem_bytes = 12 * GIB;
    assert_int_equal(rank(&nd, m, 3, 1, v, NULL, 0, &res), NX_ERR_LIMIT);
    assert_int_equal(v[1].reason, PLACE_GPU_MEM);
    assert_string_equal(verdict_text(&v[1], &nd, &m[1]), "needs 2 GPUs with 12288 MiB each, has 0");
    assert_int_equal(v[2].reason, PLACE_GPU_MEM);
    assert_int_equal(v[2].have, 1);
    nd.gpus = 1;
    assert_int_equal(rank(&nd, m, 3, 1, v, NULL, 0, &res), NX_OK);
    assert_int_equal(res.fit_count, 2); /* members 0 and 2 have a 16 GiB GPU */
    assert_int_equal(v[1].reason, PLACE_GPU_MEM);
}

static void label_rules_filter_members(void **state)
{
    (void)state;
    struct gossip_member_info m[3];
    for (uint8_t i = 0; i < 3; i++)
        make_member(&m[i], (uint8_t)(i + 1), GOSSIP_ALIVE, 4000, 4000, 8 * GIB, 8 * GIB);
    add_label(&m[0], "zone", "eu");
    add_label(&m[0], "ssd", "yes");
    add_label(&m[1], "zone", "us");
    struct place_needs nd = {0};
    assert_int_equal(place_needs_add(&nd, "zone=eu"), NX_OK);
    struct place_verdict v[3];
    struct place_result res;
    assert_int_equal(rank(&nd, m, 3, 1, v, NULL, 0, &res), NX_OK);
    assert_int_equal(res.fit_count, 1);
    assert_int_equal(v[0].reason, PLACE_FITS);
    assert_int_equal(v[1].reason, PLACE_LABEL);
    assert_string_equal(verdict_text(&v[1], &nd, &m[1]), "missing label zone=eu");
    assert_string_equal(verdict_text(&v[2], &nd, &m[2]), "missing label zone=eu");

    struct place_needs ne = {0};
    assert_int_equal(place_needs_add(&ne, "zone!=eu"), NX_OK);
    assert_int_equal(rank(&ne, m, 3, 1, v, NULL, 0, &res), NX_OK);
    assert_int_equal(v[0].reason, PLACE_LABEL);
    assert_string_equal(verdict_text(&v[0], &ne, &m[0]), "has label zone=eu");
    assert_int_equal(res.fit_count, 2); /* a member without the key passes != */

    struct place_needs ex = {0};
    assert_int_equal(place_needs_add(&ex, "zone"), NX_OK);
    assert_int_equal(place_needs_add(&ex, "!ssd"), NX_OK);
    assert_int_equal(rank(&ex, m, 3, 1, v, NULL, 0, &res), NX_OK);
    assert_int_equal(res.fit_count, 1);
    assert_int_equal(v[1].reason, PLACE_FITS);
    assert_string_equal(verdict_text(&v[0], &ex, &m[0]), "has label ssd");
    assert_string_equal(verdict_text(&v[2], &ex, &m[2]), "missing label zone");
}

static void excluded_members_never_fit(void **state)
{
    (void)state;
    struct gossip_member_info m[4];
    four_equal(m);
    m[1].meta.cpu_free_millicores = 4000; /* all equal; exclude two of them */
    struct place_needs nd = {0};
    char hex[2 * GOSSIP_ID_BYTES + 8] = "node!=";
    nx_hex_encode(hex + 6, m[0].id, GOSSIP_ID_BYTES);
    assert_int_equal(place_needs_add(&nd, hex), NX_OK);
    memcpy(nd.exclude[nd.exclude_count++], m[2].id, GOSSIP_ID_BYTES);
    struct place_verdict v[4];
    struct place_result res;
    for (uint64_t seed = 0; seed < 50; seed++) {
        struct place_pick p[1];
        assert_int_equal(rank(&nd, m, 4, seed, v, p, 1, &res), NX_OK);
        assert_true(p[0].member == 1 || p[0].member == 3);
    }
    assert_int_equal(v[0].reason, PLACE_EXCLUDED);
    assert_int_equal(v[2].reason, PLACE_EXCLUDED);
    assert_string_equal(verdict_text(&v[0], &nd, &m[0]), "excluded by the run's constraints");
}

static void dead_and_left_are_out_and_suspects_are_a_last_resort(void **state)
{
    (void)state;
    struct gossip_member_info m[4];
    make_member(&m[0], 1, GOSSIP_ALIVE, 1000, 4000, 2 * GIB, 8 * GIB);   /* least free */
    make_member(&m[1], 2, GOSSIP_SUSPECT, 3100, 4000, 6 * GIB, 8 * GIB); /* more free */
    make_member(&m[2], 3, GOSSIP_DEAD, 4000, 4000, 8 * GIB, 8 * GIB);    /* most free */
    make_member(&m[3], 4, GOSSIP_LEFT, 4000, 4000, 8 * GIB, 8 * GIB);
    struct place_needs nd = {.cpu_millicores = 100};
    struct place_verdict v[4];
    struct place_pick p[4];
    struct place_result res;
    assert_int_equal(rank(&nd, m, 4, 9, v, p, 4, &res), NX_OK);
    assert_int_equal(res.fit_count, 2);
    assert_int_equal(res.alive_count, 2);
    assert_int_equal(p[0].member, 0); /* the alive one first, though it has less free */
    assert_int_equal(p[1].member, 1);
    assert_int_equal(v[1].tier, 1);
    assert_string_equal(verdict_text(&v[1], &nd, &m[1]),
                        "fits, score 0.750 (last resort: suspect)");
    assert_int_equal(v[2].reason, PLACE_NOT_ALIVE);
    assert_string_equal(verdict_text(&v[2], &nd, &m[2]), "not alive (dead)");
    assert_string_equal(verdict_text(&v[3], &nd, &m[3]), "not alive (left)");
    /* without an alive member that fits, the suspect is chosen */
    m[0].meta.cpu_free_millicores = 50;
    assert_int_equal(rank(&nd, m, 4, 9, v, p, 1, &res), NX_OK);
    assert_int_equal(p[0].member, 1);
}

/* ---- ranking ------------------------------------------------------------- */

static void ranking_picks_the_most_free_member(void **state)
{
    (void)state;
    struct gossip_member_info m[4];
    four_equal(m);
    m[0].meta.cpu_free_millicores = 1000;
    m[1].meta.mem_free_bytes = 2 * GIB;
    m[2].meta.cpu_free_millicores = 3900; /* second best: a little CPU in use */
    m[3].meta.cpu_free_millicores = 4000;
    struct place_needs nd = {.cpu_millicores = 500, .mem_bytes = GIB};
    struct place_pick p[4];
    struct place_verdict v[4];
    struct place_result res;
    assert_int_equal(rank(&nd, m, 4, 3, v, p, 4, &res), NX_OK);
    assert_int_equal(p[0].member, 3);
    assert_int_equal(p[1].member, 2);
    for (int i = 1; i < 4; i++)
        assert_true(p[i - 1].key > p[i].key && p[i - 1].score >= p[i].score);
    /* score = mean of free fractions after placement */
    double want = ((4000 - 500) / 4000.0 + (8.0 - 1.0) / 8.0) / 2;
    assert_true(fabs(v[3].score - want) < 1e-12);
}

static void ties_are_random_reproducible_and_cover_every_tied_member(void **state)
{
    (void)state;
    struct gossip_member_info m[6];
    for (uint8_t i = 0; i < 6; i++)
        make_member(&m[i], (uint8_t)(i + 1), GOSSIP_ALIVE, 4000, 4000, 8 * GIB, 8 * GIB);
    m[5].meta.cpu_free_millicores = 3000; /* not tied: must never win */
    struct place_needs nd = {.cpu_millicores = 100};
    struct place_result res;
    unsigned wins[6] = {0};
    for (uint64_t seed = 0; seed < 500; seed++) {
        struct place_pick a[1], b[1];
        assert_int_equal(rank(&nd, m, 6, seed, NULL, a, 1, &res), NX_OK);
        assert_int_equal(rank(&nd, m, 6, seed, NULL, b, 1, &res), NX_OK);
        assert_int_equal(a[0].member, b[0].member); /* same seed, same choice */
        wins[a[0].member]++;
    }
    for (int i = 0; i < 5; i++)
        assert_true(wins[i] >= 60); /* ~100 each expected; every tied member wins */
    assert_int_equal(wins[5], 0);
}

static void top_k_matches_the_head_of_the_full_ranking(void **state)
{
    (void)state;
    struct gossip_member_info m[MEMBERS_MAX];
    for (uint8_t i = 0; i < MEMBERS_MAX; i++)
        make_member(&m[i], (uint8_t)(i + 1), i % 3 ? GOSSIP_ALIVE : GOSSIP_SUSPECT,
                    (uint32_t)(1000 + 250 * (i % 5)), 4000, (uint64_t)(1 + i % 4) * GIB, 8 * GIB);
    struct place_needs nd = {.cpu_millicores = 100};
    struct place_pick all[MEMBERS_MAX], top[3];
    struct place_result res;
    for (uint64_t seed = 0; seed < 20; seed++) {
        assert_int_equal(rank(&nd, m, MEMBERS_MAX, seed, NULL, all, MEMBERS_MAX, &res), NX_OK);
        assert_int_equal(res.picked_count, MEMBERS_MAX);
        assert_int_equal(rank(&nd, m, MEMBERS_MAX, seed, NULL, top, 3, &res), NX_OK);
        assert_int_equal(res.picked_count, 3);
        for (int i = 0; i < 3; i++)
            assert_int_equal(top[i].member, all[i].member);
        for (int i = 1; i < MEMBERS_MAX; i++)
            assert_true(all[i - 1].key > all[i].key);
    }
}

static void avoided_members_are_used_only_when_nothing_else_fits(void **state)
{
    (void)state;
    struct gossip_member_info m[2];
    make_member(&m[0], 1, GOSSIP_ALIVE, 4000, 4000, 8 * GIB, 8 * GIB); /* most free */
    make_member(&m[1], 2, GOSSIP_ALIVE, 1000, 4000, 2 * GIB, 8 * GIB);
    struct place_needs nd = {.cpu_millicores = 500};
    memcpy(nd.avoid[nd.avoid_count++], m[0].id, GOSSIP_ID_BYTES);
    struct place_pick p[2];
    struct place_verdict v[2];
    struct place_result res;
    assert_int_equal(rank(&nd, m, 2, 1, v, p, 2, &res), NX_OK);
    assert_int_equal(p[0].member, 1);
    assert_int_equal(v[0].tier, 2);
    nd.cpu_millicores = 2000; /* only the avoided member fits now */
    assert_int_equal(rank(&nd, m, 2, 1, v, p, 2, &res), NX_OK);
    assert_int_equal(res.fit_count, 1);
    assert_int_equal(p[0].member, 0);
}

static void runs_without_gpus_prefer_members_without_free_gpus(void **state)
{
    (void)state;
    struct gossip_member_info m[2];
    make_member(&m[0], 1, GOSSIP_ALIVE, 4000, 4000, 8 * GIB, 8 * GIB);
    make_member(&m[1], 2, GOSSIP_ALIVE, 4000, 4000, 8 * GIB, 8 * GIB);
    add_gpus(&m[0], 2, 16 * GIB);
    struct place_needs cpu_run = {.cpu_millicores = 100};
    struct place_pick p[1];
    struct place_result res;
    for (uint64_t seed = 0; seed < 20; seed++) {
        assert_int_equal(rank(&cpu_run, m, 2, seed, NULL, p, 1, &res), NX_OK);
        assert_int_equal(p[0].member, 1);
    }
    struct place_needs gpu_run = {.cpu_millicores = 100, .gpus = 1};
    assert_int_equal(rank(&gpu_run, m, 2, 1, NULL, p, 1, &res), NX_OK);
    assert_int_equal(p[0].member, 0);
}

/* ---- explanations ---------------------------------------------------------- */

static void no_fit_names_the_dimension_and_the_closest_member(void **state)
{
    (void)state;
    struct gossip_member_info m[4];
    four_equal(m);
    add_gpus(&m[1], 1, 16 * GIB);
    m[3].state = GOSSIP_DEAD;
    add_gpus(&m[3], 8, 16 * GIB); /* dead: must not be named */
    struct place_needs nd = {.gpus = 2};
    struct place_verdict v[4];
    struct place_result res;
    char buf[PLACE_REASON_MAX];
    assert_int_equal(rank(&nd, m, 4, 1, v, NULL, 0, &res), NX_ERR_LIMIT);
    assert_string_equal(place_explain(&res, &nd, m, 4, buf, sizeof buf),
                        "no member has 2 GPUs free; the most free is node 11111111 with 1");

    struct place_needs mem = {.mem_bytes = 16 * GIB};
    m[2].meta.mem_free_bytes = 8 * GIB + 512 * MIB; /* cannot be: still names the best */
    assert_int_equal(rank(&mem, m, 4, 1, v, NULL, 0, &res), NX_ERR_LIMIT);
    assert_string_equal(place_explain(&res, &mem, m, 4, buf, sizeof buf),
                        "no member has 16384 MiB free; the most free is node 12121212 with "
                        "8704 MiB");

    struct place_needs label = {0};
    assert_int_equal(place_needs_add(&label, "zone=eu"), NX_OK);
    assert_int_equal(rank(&label, m, 4, 1, v, NULL, 0, &res), NX_ERR_LIMIT);
    assert_string_equal(place_explain(&res, &label, m, 4, buf, sizeof buf),
                        "no member has label zone=eu");

    /* mixed reasons: the one that stopped most members, with the count */
    struct place_needs cpu = {.cpu_millicores = 5000};
    add_label(&m[0], "zone", "us");
    struct place_needs both = cpu;
    assert_int_equal(place_needs_add(&both, "!zone"), NX_OK);
    assert_int_equal(rank(&both, m, 4, 1, v, NULL, 0, &res), NX_ERR_LIMIT);
    assert_string_equal(place_explain(&res, &both, m, 4, buf, sizeof buf),
                        "no member has 5000 millicores free; the most free is node 11111111 "
                        "with 4000 (2 of 3 alive members stop here)");

    for (int i = 0; i < 4; i++)
        m[i].state = GOSSIP_DEAD;
    assert_int_equal(rank(&cpu, m, 4, 1, v, NULL, 0, &res), NX_ERR_LIMIT);
    assert_string_equal(place_explain(&res, &cpu, m, 4, buf, sizeof buf),
                        "no member is alive (4 known, all dead or left)");
    assert_int_equal(rank(&cpu, m, 0, 1, v, NULL, 0, &res), NX_ERR_LIMIT);
    assert_string_equal(place_explain(&res, &cpu, m, 0, buf, sizeof buf), "no members known");
}

/* ---- admission ------------------------------------------------------------- */

static void admission_refuses_when_the_real_state_changed(void **state)
{
    (void)state;
    struct gossip_member_info m[1];
    make_member(&m[0], 7, GOSSIP_ALIVE, 4000, 4000, 8 * GIB, 8 * GIB);
    add_label(&m[0], "zone", "eu");
    struct place_needs nd = {.cpu_millicores = 2000, .mem_bytes = 4 * GIB};
    assert_int_equal(place_needs_add(&nd, "zone=eu"), NX_OK);
    struct place_pick p[1];
    struct place_result res;
    assert_int_equal(rank(&nd, m, 1, 1, NULL, p, 1, &res), NX_OK);

    /* the target's real state: capacity as advertised, but two runs arrive */
    struct node_resources real = {.cpu_total_millicores = 4000,
                                  .cpu_free_millicores = 4000,
                                  .mem_total_bytes = 8 * GIB,
                                  .mem_free_bytes = 8 * GIB};
    struct node_reserved rv = {0};
    struct node_request req = {.cpu_millicores = nd.cpu_millicores, .mem_bytes = nd.mem_bytes};
    struct node_grant g;
    struct place_verdict why;
    char buf[PLACE_REASON_MAX];
    struct node_resources avail = real;
    node_resources_subtract(&avail, &rv);
    assert_int_equal(place_admit(&nd, m[0].id, &avail, m[0].meta.labels, 1, &why), NX_OK);
    assert_int_equal(node_resources_reserve(&rv, &real, &req, &g), NX_OK);
    avail = real;
    node_resources_subtract(&avail, &rv);
    assert_int_equal(place_admit(&nd, m[0].id, &avail, m[0].meta.labels, 1, &why), NX_OK);
    assert_int_equal(node_resources_reserve(&rv, &real, &req, &g), NX_OK);
    /* a third run placed from the stale view is refused, with the reason */
    avail = real;
    node_resources_subtract(&avail, &rv);
    assert_int_equal(place_admit(&nd, m[0].id, &avail, m[0].meta.labels, 1, &why), NX_ERR_LIMIT);
    assert_int_equal(why.reason, PLACE_CPU);
    assert_string_equal(place_verdict_format(&why, &nd, NULL, buf, sizeof buf),
                        "needs 2000 millicores, has 0 free");
    /* load from outside the mesh counts too */
    assert_int_equal(node_resources_release(&rv, &g), NX_OK);
    avail = real;
    avail.cpu_free_millicores = 1500;
    node_resources_subtract(&avail, &rv);
    assert_int_equal(place_admit(&nd, m[0].id, &avail, m[0].meta.labels, 1, &why), NX_ERR_LIMIT);
    assert_int_equal(why.have, 1500);
    /* and a label removed since the view was taken */
    avail = real;
    assert_int_equal(place_admit(&nd, m[0].id, &avail, NULL, 0, &why), NX_ERR_LIMIT);
    assert_int_equal(why.reason, PLACE_LABEL);
}

/* The documented flow: rank the best three, the first refuses, the second admits. */
static void a_refusal_falls_through_to_the_next_pick(void **state)
{
    (void)state;
    struct gossip_member_info view[3];
    struct node_resources real[3];
    struct node_reserved held[3] = {{0}};
    for (uint8_t i = 0; i < 3; i++) {
        uint32_t cpu = 4000 - 1000u * i; /* member 0 looks best, then 1, then 2 */
        make_member(&view[i], (uint8_t)(0x20 + i), GOSSIP_ALIVE, cpu, 4000, 8 * GIB, 8 * GIB);
        real[i] = (struct node_resources){.cpu_total_millicores = 4000,
                                          .cpu_free_millicores = cpu,
                                          .mem_total_bytes = 8 * GIB,
                                          .mem_free_bytes = 8 * GIB};
    }
    /* since the view was gossiped, member 0 admitted a big run of someone else's */
    struct node_request other = {.cpu_millicores = 3500};
    struct node_grant g;
    assert_int_equal(node_resources_reserve(&held[0], &real[0], &other, &g), NX_OK);

    struct place_needs nd = {.cpu_millicores = 1000, .mem_bytes = GIB};
    struct place_pick picks[3];
    struct place_result res;
    assert_int_equal(rank(&nd, view, 3, 5, NULL, picks, 3, &res), NX_OK);
    assert_int_equal(picks[0].member, 0);
    int admitted_by = -1;
    char why_text[PLACE_REASON_MAX] = "";
    for (uint32_t i = 0; i < res.picked_count && admitted_by < 0; i++) {
        uint32_t t = picks[i].member;
        struct node_resources avail = real[t];
        node_resources_subtract(&avail, &held[t]);
        struct place_verdict why;
        int rc = place_admit(&nd, view[t].id, &avail, NULL, 0, &why);
        if (rc == NX_ERR_LIMIT) {
            place_verdict_format(&why, &nd, &view[t], why_text, sizeof why_text);
            continue;
        }
        assert_int_equal(rc, NX_OK);
        struct node_request req = {.cpu_millicores = nd.cpu_millicores, .mem_bytes = nd.mem_bytes};
        assert_int_equal(node_resources_reserve(&held[t], &real[t], &req, &g), NX_OK);
        admitted_by = (int)t;
    }
    assert_int_equal(admitted_by, 1);
    assert_string_equal(why_text, "needs 1000 millicores, has 500 free");
    assert_int_equal(held[1].cpu_millicores, 1000);
}

/*
 * Three placers with views that go stale between refreshes, five targets
 * that admit against their real state. Admission that says yes must always
 * be followed by a reservation that succeeds; the targets fill exactly to
 * capacity; a run is refused only when a fresh view has no room either.
 */
#define SIM_TARGETS 5
#define SIM_PLACERS 3

struct sim_target {
    struct node_resources real;
    struct node_reserved held;
};

static void refresh_view(struct gossip_member_info *view, const struct sim_target *t)
{
    for (int i = 0; i < SIM_TARGETS; i++) {
        struct node_resources avail = t[i].real;
        node_resources_subtract(&avail, &t[i].held);
        make_member(&view[i], (uint8_t)(0x40 + i), GOSSIP_ALIVE, avail.cpu_free_millicores,
                    avail.cpu_total_millicores, avail.mem_free_bytes, avail.mem_total_bytes);
    }
}

/* Tries the picks in order; the index of the target that took the run, or -1. */
static int try_picks(struct sim_target *t, const struct gossip_member_info *view,
                     const struct place_needs *nd, const struct place_pick *picks, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        struct sim_target *x = &t[picks[i].member];
        struct node_resources avail = x->real;
        node_resources_subtract(&avail, &x->held);
        struct place_verdict why;
        if (place_admit(nd, view[picks[i].member].id, &avail, NULL, 0, &why) != NX_OK)
            continue;
        struct node_request req = {.cpu_millicores = nd->cpu_millicores,
                                   .mem_bytes = nd->mem_bytes};
        struct node_grant g;
        assert_int_equal(node_resources_reserve(&x->held, &x->real, &req, &g), NX_OK);
        return (int)picks[i].member;
    }
    return -1;
}

static void stale_views_never_overfill_and_fill_to_capacity(void **state)
{
    (void)state;
    struct sim_target t[SIM_TARGETS];
    for (int i = 0; i < SIM_TARGETS; i++)
        t[i] = (struct sim_target){.real = {.cpu_total_millicores = 4000,
                                            .cpu_free_millicores = 4000,
                                            .mem_total_bytes = 8 * GIB,
                                            .mem_free_bytes = 8 * GIB}};
    struct gossip_member_info views[SIM_PLACERS][SIM_TARGETS];
    for (int p = 0; p < SIM_PLACERS; p++)
        refresh_view(views[p], t);
    struct place_needs nd = {.cpu_millicores = 500, .mem_bytes = GIB}; /* 8 fit per target */
    struct nx_rng rng;
    nx_rng_seed(&rng, 99);
    int placed = 0, refused = 0;
    for (int run = 0; run < 60; run++) {
        int p = run % SIM_PLACERS;
        if (run % 7 == 0) /* gossip catches up now and then */
            refresh_view(views[p], t);
        struct place_pick picks[3];
        struct place_result res;
        int got = -1;
        if (place_rank(&nd, views[p], SIM_TARGETS, &rng, NULL, picks, 3, &res) == NX_OK)
            got = try_picks(t, views[p], &nd, picks, res.picked_count);
        if (got < 0) { /* all refused or none fit: retry once on a fresh view */
            refresh_view(views[p], t);
            if (place_rank(&nd, views[p], SIM_TARGETS, &rng, NULL, picks, 3, &res) == NX_OK)
                got = try_picks(t, views[p], &nd, picks, res.picked_count);
        }
        if (got < 0) {
            refused++;
            char buf[PLACE_REASON_MAX];
            assert_int_equal(res.fit_count, 0);
            assert_string_equal(place_explain(&res, &nd, views[p], SIM_TARGETS, buf, sizeof buf),
                                "no member has 500 millicores free; the most free is node "
                                "40404040 with 0");
            continue;
        }
        placed++;
        place_charge(&views[p][got], &nd);
    }
    assert_int_equal(placed, 40);
    assert_int_equal(refused, 20);
    for (int i = 0; i < SIM_TARGETS; i++) {
        assert_int_equal(t[i].held.runs, 8);
        assert_int_equal(t[i].held.cpu_millicores, 4000);
    }
}

/* ---- spread ---------------------------------------------------------------- */

static void many_runs_spread_evenly_over_equal_members(void **state)
{
    (void)state;
    struct gossip_member_info m[4];
    four_equal(m);
    struct place_needs nd = {.cpu_millicores = 100, .mem_bytes = 64 * MIB};
    struct nx_rng rng;
    nx_rng_seed(&rng, 2026);
    unsigned count[4] = {0};
    for (int run = 0; run < 100; run++) {
        struct place_pick p[1];
        struct place_result res;
        assert_int_equal(place_rank(&nd, m, 4, &rng, NULL, p, 1, &res), NX_OK);
        count[p[0].member]++;
        place_charge(&m[p[0].member], &nd);
        /* the formula keeps every member within one run of the others */
        unsigned lo = count[0], hi = count[0];
        for (int i = 1; i < 4; i++) {
            lo = count[i] < lo ? count[i] : lo;
            hi = count[i] > hi ? count[i] : hi;
        }
        assert_true(hi - lo <= 1);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(count[i], 25);
    assert_int_equal(m[0].meta.cpu_free_millicores, 4000 - 25 * 100);
}

static void many_runs_spread_in_proportion_to_capacity(void **state)
{
    (void)state;
    struct gossip_member_info m[3];
    make_member(&m[0], 1, GOSSIP_ALIVE, 8000, 8000, 16 * GIB, 16 * GIB);
    make_member(&m[1], 2, GOSSIP_ALIVE, 4000, 4000, 8 * GIB, 8 * GIB);
    make_member(&m[2], 3, GOSSIP_ALIVE, 4000, 4000, 8 * GIB, 8 * GIB);
    struct place_needs nd = {.cpu_millicores = 100, .mem_bytes = 200 * MIB};
    struct nx_rng rng;
    nx_rng_seed(&rng, 7);
    unsigned count[3] = {0};
    for (int run = 0; run < 100; run++) {
        struct place_pick p[1];
        struct place_result res;
        assert_int_equal(place_rank(&nd, m, 3, &rng, NULL, p, 1, &res), NX_OK);
        count[p[0].member]++;
        place_charge(&m[p[0].member], &nd);
    }
    /* equal free fractions: the big member takes half the runs */
    assert_true(count[0] >= 49 && count[0] <= 51);
    assert_true(count[1] >= 24 && count[1] <= 26);
    assert_true(count[2] >= 24 && count[2] <= 26);
}

static void charge_takes_the_gpus_a_run_would_use(void **state)
{
    (void)state;
    struct gossip_member_info m;
    make_member(&m, 1, GOSSIP_ALIVE, 4000, 4000, 8 * GIB, 8 * GIB);
    add_gpus(&m, 3, 16 * GIB);
    m.meta.gpu_mem_bytes[0] = 8 * GIB;
    struct place_needs nd = {.cpu_millicores = 5000, .gpus = 1, .gpu_mem_bytes = 12 * GIB};
    place_charge(&m, &nd);
    assert_int_equal(m.meta.cpu_free_millicores, 0); /* never below zero */
    assert_int_equal(m.meta.gpu_count, 2);
    assert_int_equal(m.meta.gpu_mem_count, 2);
    assert_true(m.meta.gpu_mem_bytes[0] == 8 * GIB); /* the small one is left */
    assert_true(m.meta.gpu_mem_bytes[1] == 16 * GIB);
}

/* ---- random views against a plain reference --------------------------------- */

static const char *const zones[3] = {"eu", "us", "ap"};

static void random_member(struct gossip_member_info *m, struct nx_rng *r, uint8_t tag)
{
    static const enum gossip_state states[5] = {GOSSIP_ALIVE, GOSSIP_ALIVE, GOSSIP_SUSPECT,
                                                GOSSIP_DEAD, GOSSIP_LEFT};
    uint32_t cpu_total = 1000u * (uint32_t)(1 + nx_rng_below(r, 8));
    uint64_t mem_total = GIB * (1 + nx_rng_below(r, 8));
    make_member(m, tag, states[nx_rng_below(r, 5)], (uint32_t)nx_rng_below(r, cpu_total + 1),
                cpu_total, nx_rng_below(r, mem_total + 1), mem_total);
    if (nx_rng_below(r, 3) == 0) {
        add_gpus(m, (uint32_t)nx_rng_below(r, 4), 8 * GIB);
        for (uint32_t g = 0; g < m->meta.gpu_count; g++)
            m->meta.gpu_mem_bytes[g] = 8 * GIB * (1 + nx_rng_below(r, 2));
    }
    if (nx_rng_below(r, 4) != 0)
        add_label(m, "zone", zones[nx_rng_below(r, 3)]);
    if (nx_rng_below(r, 2) == 0)
        add_label(m, "ssd", "yes");
}

static void random_needs(struct place_needs *nd, struct nx_rng *r,
                         const struct gossip_member_info *m, size_t n)
{
    memset(nd, 0, sizeof *nd);
    nd->cpu_millicores = (uint32_t)nx_rng_below(r, 3000);
    nd->mem_bytes = nx_rng_below(r, 4 * GIB);
    nd->gpus = nx_rng_below(r, 3) == 0 ? (uint32_t)nx_rng_below(r, 3) : 0;
    nd->gpu_mem_bytes = nx_rng_below(r, 2) ? 12 * GIB : 0;
    static const char *const rules[6] = {"zone=eu", "zone!=us", "ssd", "!ssd", "zone", "x=y"};
    uint32_t nrules = (uint32_t)nx_rng_below(r, 3);
    for (uint32_t i = 0; i < nrules; i++)
        assert_int_equal(place_needs_add(nd, rules[nx_rng_below(r, 6)]), NX_OK);
    if (n > 0 && nx_rng_below(r, 2) == 0)
        memcpy(nd->exclude[nd->exclude_count++], m[nx_rng_below(r, n)].id, GOSSIP_ID_BYTES);
    if (n > 0 && nx_rng_below(r, 2) == 0)
        memcpy(nd->avoid[nd->avoid_count++], m[nx_rng_below(r, n)].id, GOSSIP_ID_BYTES);
}

static const char *ref_label(const struct gossip_member_info *m, const char *key)
{
    for (uint32_t i = 0; i < m->meta.label_count; i++)
        if (strcmp(m->meta.labels[i].key, key) == 0)
            return m->meta.labels[i].value;
    return NULL;
}

/* The documented rules, written out plainly: first failing check, or PLACE_FITS. */
static enum place_reason ref_verdict(const struct place_needs *nd,
                                     const struct gossip_member_info *m)
{
    if (m->state == GOSSIP_DEAD || m->state == GOSSIP_LEFT)
        return PLACE_NOT_ALIVE;
    for (uint32_t i = 0; i < nd->exclude_count; i++)
        if (memcmp(nd->exclude[i], m->id, GOSSIP_ID_BYTES) == 0)
            return PLACE_EXCLUDED;
    for (uint32_t i = 0; i < nd->rule_count; i++) {
        const struct place_label_rule *rule = &nd->rules[i];
        const char *v = ref_label(m, rule->key);
        bool eq = v != NULL && strcmp(v, rule->value) == 0;
        bool ok = rule->op == PLACE_LABEL_EQ       ? eq
                  : rule->op == PLACE_LABEL_NE     ? !eq
                  : rule->op == PLACE_LABEL_EXISTS ? v != NULL
                                                   : v == NULL;
        if (!ok)
            return PLACE_LABEL;
    }
    if (m->meta.cpu_free_millicores < nd->cpu_millicores)
        return PLACE_CPU;
    if (m->meta.mem_free_bytes < nd->mem_bytes)
        return PLACE_MEM;
    if (m->meta.gpu_count < nd->gpus)
        return PLACE_GPU;
    uint32_t big = 0;
    for (uint32_t g = 0; g < m->meta.gpu_count; g++)
        big += m->meta.gpu_mem_bytes[g] >= nd->gpu_mem_bytes;
    if (nd->gpus > 0 && big < nd->gpus)
        return PLACE_GPU_MEM;
    return PLACE_FITS;
}

static double ref_score(const struct place_needs *nd, const struct gossip_member_info *m)
{
    const struct gossip_meta *x = &m->meta;
    double cpu = (double)(x->cpu_free_millicores - nd->cpu_millicores) / x->cpu_total_millicores;
    double mem = (double)(x->mem_free_bytes - nd->mem_bytes) / (double)x->mem_total_bytes;
    double s;
    if (nd->gpus > 0)
        s = (cpu + mem + (double)(x->gpu_count - nd->gpus) / x->gpu_count) / 3;
    else
        s = (cpu + mem) / 2 * (x->gpu_count > 0 ? PLACE_GPU_SPARE_FACTOR : 1.0);
    return s;
}

static unsigned ref_tier(const struct place_needs *nd, const struct gossip_member_info *m)
{
    bool avoided = false;
    for (uint32_t i = 0; i < nd->avoid_count; i++)
        avoided |= memcmp(nd->avoid[i], m->id, GOSSIP_ID_BYTES) == 0;
    return (m->state == GOSSIP_ALIVE ? 2u : 0u) + (avoided ? 0u : 1u);
}

static void random_views_rank_like_a_plain_reference(void **state)
{
    (void)state;
    struct gossip_member_info m[40];
    struct place_verdict v[40];
    struct place_pick p[40];
    struct nx_rng r;
    nx_rng_seed(&r, 424242);
    unsigned fits_seen = 0, nofit_seen = 0;
    for (int round = 0; round < 400; round++) {
        size_t n = (size_t)nx_rng_below(&r, 41);
        for (size_t i = 0; i < n; i++)
            random_member(&m[i], &r, (uint8_t)(i + 1));
        struct place_needs nd;
        random_needs(&nd, &r, m, n);
        struct place_result res;
        int rc = rank(&nd, m, n, (uint64_t)round, v, p, n, &res);
        uint32_t fit = 0;
        for (size_t i = 0; i < n; i++) {
            enum place_reason want = ref_verdict(&nd, &m[i]);
            assert_int_equal(v[i].reason, want);
            if (want != PLACE_FITS)
                continue;
            fit++;
            assert_true(fabs(v[i].score - ref_score(&nd, &m[i])) < 1e-12);
            assert_int_equal(v[i].tier, ref_tier(&nd, &m[i]));
        }
        assert_int_equal(res.fit_count, fit);
        assert_int_equal(res.picked_count, fit);
        assert_int_equal(rc, fit > 0 ? NX_OK : NX_ERR_LIMIT);
        fits_seen += fit > 0;
        nofit_seen += fit == 0;
        for (uint32_t i = 1; i < fit; i++) {
            const struct place_verdict *a = &v[p[i - 1].member], *b = &v[p[i].member];
            assert_true(a->tier > b->tier || (a->tier == b->tier && a->score >= b->score - 1e-9));
        }
    }
    assert_true(fits_seen > 50 && nofit_seen > 50); /* both paths were exercised */
}

/* ---- input ------------------------------------------------------------------ */

static void constraints_parse_and_bad_input_is_refused(void **state)
{
    (void)state;
    struct place_needs nd = {0};
    assert_int_equal(place_needs_add(&nd, "zone=eu"), NX_OK);
    assert_int_equal(nd.rules[0].op, PLACE_LABEL_EQ);
    assert_string_equal(nd.rules[0].key, "zone");
    assert_string_equal(nd.rules[0].value, "eu");
    assert_int_equal(place_needs_add(&nd, "tier!=spot"), NX_OK);
    assert_int_equal(nd.rules[1].op, PLACE_LABEL_NE);
    assert_string_equal(nd.rules[1].value, "spot");
    assert_int_equal(place_needs_add(&nd, "gpu"), NX_OK);
    assert_int_equal(nd.rules[2].op, PLACE_LABEL_EXISTS);
    assert_int_equal(place_needs_add(&nd, "!maint"), NX_OK);
    assert_int_equal(nd.rules[3].op, PLACE_LABEL_ABSENT);
    assert_string_equal(nd.rules[3].key, "maint");
    assert_int_equal(place_needs_add(&nd, "=eu"), NX_ERR_INVAL);
    assert_int_equal(place_needs_add(&nd, ""), NX_ERR_INVAL);
    assert_int_equal(place_needs_add(&nd, "a=b=c"), NX_ERR_INVAL);
    assert_int_equal(place_needs_add(&nd, "node!=abcd"), NX_ERR_INVAL);
    char long_key[GOSSIP_LABEL_KEY_MAX + 8];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    assert_int_equal(place_needs_add(&nd, long_key), NX_ERR_INVAL);
    for (int i = 4; i < PLACE_RULES_MAX; i++)
        assert_int_equal(place_needs_add(&nd, "x=y"), NX_OK);
    assert_int_equal(place_needs_add(&nd, "x=y"), NX_ERR_FULL);

    struct gossip_member_info m[1];
    make_member(&m[0], 1, GOSSIP_ALIVE, 4000, 4000, 8 * GIB, 8 * GIB);
    struct place_result res;
    struct place_needs bad = {.rule_count = PLACE_RULES_MAX + 1};
    assert_int_equal(rank(&bad, m, 1, 1, NULL, NULL, 0, &res), NX_ERR_INVAL);
    struct place_needs nan_weight = {.weights = {.cpu = NAN}};
    assert_int_equal(rank(&nan_weight, m, 1, 1, NULL, NULL, 0, &res), NX_ERR_INVAL);
    struct place_needs unterminated = {.rule_count = 1};
    memset(unterminated.rules[0].key, 'k', sizeof unterminated.rules[0].key);
    assert_int_equal(rank(&unterminated, m, 1, 1, NULL, NULL, 0, &res), NX_ERR_INVAL);
    struct place_needs fine = {0};
    assert_int_equal(rank(&fine, m, 1, 1, NULL, NULL, 1, &res), NX_ERR_INVAL); /* k, no picks */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cpu_and_memory_needs_filter_with_reasons),
        cmocka_unit_test(gpu_needs_filter_by_count_and_memory_per_gpu),
        cmocka_unit_test(label_rules_filter_members),
        cmocka_unit_test(excluded_members_never_fit),
        cmocka_unit_test(dead_and_left_are_out_and_suspects_are_a_last_resort),
        cmocka_unit_test(ranking_picks_the_most_free_member),
        cmocka_unit_test(ties_are_random_reproducible_and_cover_every_tied_member),
        cmocka_unit_test(top_k_matches_the_head_of_the_full_ranking),
        cmocka_unit_test(avoided_members_are_used_only_when_nothing_else_fits),
        cmocka_unit_test(runs_without_gpus_prefer_members_without_free_gpus),
        cmocka_unit_test(no_fit_names_the_dimension_and_the_closest_member),
        cmocka_unit_test(admission_refuses_when_the_real_state_changed),
        cmocka_unit_test(a_refusal_falls_through_to_the_next_pick),
        cmocka_unit_test(stale_views_never_overfill_and_fill_to_capacity),
        cmocka_unit_test(many_runs_spread_evenly_over_equal_members),
        cmocka_unit_test(many_runs_spread_in_proportion_to_capacity),
        cmocka_unit_test(charge_takes_the_gpus_a_run_would_use),
        cmocka_unit_test(random_views_rank_like_a_plain_reference),
        cmocka_unit_test(constraints_parse_and_bad_input_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
