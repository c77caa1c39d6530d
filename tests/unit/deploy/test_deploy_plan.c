/*
 * Unit tests of node/deploy_plan.c: first placement spreads, a stable view
 * changes nothing, a dead member keeps its replicas through the grace period
 * and loses them after, scale-down and removal, "nothing fits" with the
 * reason, packing when replicas outnumber members, a full output buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "node/deploy_plan.h"

#define GIB (1ull << 30)
#define SEED 42

static void make_member(struct gossip_member_info *m, uint8_t tag, enum gossip_state state)
{
    memset(m, 0, sizeof *m);
    memset(m->id, tag, sizeof m->id);
    m->state = state;
    m->meta.cpu_free_millicores = m->meta.cpu_total_millicores = 4000;
    m->meta.mem_free_bytes = m->meta.mem_total_bytes = 8 * GIB;
}

static void members4(struct gossip_member_info *m)
{
    for (uint8_t i = 0; i < 4; i++)
        make_member(&m[i], (uint8_t)(0x10 + i), GOSSIP_ALIVE);
}

static void want(struct deploy_want *w, const char *name, uint32_t replicas)
{
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->replicas = replicas;
    w->needs.cpu_millicores = 500;
    w->needs.mem_bytes = GIB;
}

static void assigned(struct deploy_assignment *a, const char *name, uint32_t r, uint8_t tag)
{
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    a->replica = r;
    memset(a->node, tag, sizeof a->node);
}

static int plan(struct deploy_plan_input *in, struct deploy_change *out, size_t cap, size_t *n)
{
    struct nx_rng rng;
    nx_rng_seed(&rng, SEED);
    return deploy_plan(in, &rng, out, cap, n);
}

static void first_placement_spreads_over_distinct_members(void **state)
{
    (void)state;
    struct gossip_member_info m[4];
    struct deploy_want w;
    struct deploy_change out[8];
    size_t n;
    members4(m);
    want(&w, "web", 3);
    struct deploy_plan_input in = {&w, 1, NULL, 0, m, 4, 1000, 5000};
    assert_int_equal(plan(&in, out, 8, &n), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(out[i].kind, DEPLOY_ASSIGN);
        assert_int_equal(out[i].replica, i);
        assert_false(out[i].moved);
        for (size_t j = 0; j < i; j++)
            assert_memory_not_equal(out[i].node, out[j].node, GOSSIP_ID_BYTES);
    }
}

static void a_stable_view_changes_nothing(void **state)
{
    (void)state;
    struct gossip_member_info m[4];
    struct deploy_want w;
    struct deploy_assignment cur[2];
    struct deploy_change out[8];
    size_t n;
    members4(m);
    m[1].state = GOSSIP_SUSPECT; /* suspect is not gone */
    want(&w, "web", 2);
    assigned(&cur[0], "web", 0, 0x10);
    assigned(&cur[1], "web", 1, 0x11);
    struct deploy_plan_input in = {&w, 1, cur, 2, m, 4, 1000, 5000};
    assert_int_equal(plan(&in, out, 8, &n), 0);
    assert_int_equal(n, 0);
}

static void a_dead_member_keeps_its_replica_through_the_grace_then_loses_it(void **state)
{
    (void)state;
    struct gossip_member_info m[4];
    struct deploy_want w;
    struct deploy_assignment cur[2];
    struct deploy_change out[8];
    size_t n;
    members4(m);
    m[0].state = GOSSIP_DEAD;
    m[0].state_change_ms = 10000;
    want(&w, "web", 2);
    assigned(&cur[0], "web", 0, 0x10);
    assigned(&cur[1], "web", 1, 0x11);
    struct deploy_plan_input in = {&w, 1, cur, 2, m, 4, 10000 + 4999, 5000};
    assert_int_equal(plan(&in, out, 8, &n), 0);
    assert_int_equal(n, 0); /* within the grace */
    in.now_ms = 10000 + 5000;
    assert_int_equal(plan(&in, out, 8, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].kind, DEPLOY_ASSIGN);
    assert_int_equal(out[0].replica, 0);
    assert_true(out[0].moved);
    /* not the dead member, and not the one holding replica 1 (anti-affinity) */
    assert_true(out[0].node[0] == 0x12 || out[0].node[0] == 0x13);
}

static void a_member_gossip_forgot_counts_as_gone(void **state)
{
    (void)state;
    struct gossip_member_info m[4];
    struct deploy_want w;
    struct deploy_assignment cur;
    struct deploy_change out[4];
    size_t n;
    members4(m);
    want(&w, "web", 1);
    assigned(&cur, "web", 0, 0x77);
    struct deploy_plan_input in = {&w, 1, &cur, 1, m, 4, 0, 5000};
    assert_int_equal(plan(&in, out, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_true(out[0].moved);
    assert_int_equal(out[0].node[0] & 0xf0, 0x10);
}

static void scale_down_and_removal_unassign(void **state)
{
    (void)state;
    struct gossip_member_info m[4];
    struct deploy_want w;
    struct deploy_assignment cur[4];
    struct deploy_change out[8];
    size_t n;
    members4(m);
    want(&w, "web", 1);
    assigned(&cur[0], "web", 0, 0x10);
    assigned(&cur[1], "web", 1, 0x11);
    assigned(&cur[2], "web", 2, 0x12);
    assigned(&cur[3], "old", 0, 0x13);
    struct deploy_plan_input in = {&w, 1, cur, 4, m, 4, 0, 5000};
    assert_int_equal(plan(&in, out, 8, &n), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(out[i].kind, DEPLOY_UNASSIGN);
    assert_string_equal(out[0].name, "web");
    assert_int_equal(out[0].replica, 1);
    assert_int_equal(out[1].replica, 2);
    assert_string_equal(out[2].name, "old");
}

static void nothing_fits_is_pending_with_the_reason(void **state)
{
    (void)state;
    struct gossip_member_info m[4];
    struct deploy_want w;
    struct deploy_change out[4];
    size_t n;
    members4(m);
    want(&w, "gpu", 1);
    w.needs.gpus = 2;
    struct deploy_plan_input in = {&w, 1, NULL, 0, m, 4, 0, 5000};
    assert_int_equal(plan(&in, out, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].kind, DEPLOY_PENDING);
    assert_non_null(strstr(out[0].why, "GPU"));
}

static void more_replicas_than_members_pack_evenly(void **state)
{
    (void)state;
    struct gossip_member_info m[4];
    struct deploy_want w;
    struct deploy_change out[8];
    size_t n;
    int per[4] = {0};
    members4(m);
    want(&w, "web", 8);
    struct deploy_plan_input in = {&w, 1, NULL, 0, m, 4, 0, 5000};
    assert_int_equal(plan(&in, out, 8, &n), 0);
    assert_int_equal(n, 8);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(out[i].kind, DEPLOY_ASSIGN);
        per[out[i].node[0] - 0x10]++;
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(per[i], 2);
}

static void a_full_buffer_is_reported_and_what_fits_is_valid(void **state)
{
    (void)state;
    struct gossip_member_info m[4];
    struct deploy_want w;
    struct deploy_change out[2];
    size_t n;
    members4(m);
    want(&w, "web", 3);
    struct deploy_plan_input in = {&w, 1, NULL, 0, m, 4, 0, 5000};
    assert_int_equal(plan(&in, out, 2, &n), NX_ERR_FULL);
    assert_int_equal(n, 2);
    assert_int_equal(out[1].kind, DEPLOY_ASSIGN);
    w.replicas = DEPLOY_REPLICAS_MAX + 1;
    struct deploy_change big[4];
    assert_int_equal(plan(&in, big, 4, &n), NX_ERR_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_placement_spreads_over_distinct_members),
        cmocka_unit_test(a_stable_view_changes_nothing),
        cmocka_unit_test(a_dead_member_keeps_its_replica_through_the_grace_then_loses_it),
        cmocka_unit_test(a_member_gossip_forgot_counts_as_gone),
        cmocka_unit_test(scale_down_and_removal_unassign),
        cmocka_unit_test(nothing_fits_is_pending_with_the_reason),
        cmocka_unit_test(more_replicas_than_members_pack_evenly),
        cmocka_unit_test(a_full_buffer_is_reported_and_what_fits_is_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
