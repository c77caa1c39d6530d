/*
 * Unit tests of gossip/: the wire decoder against hostile bytes, metadata
 * limits, and the SWIM transitions (suspect, refute, dead, left, rejoin, meta
 * update) on a handful of cores wired by a tiny instant network in this file.
 * The large seeded scenarios live in tests/sim/gossip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "gossip/gossip.h"
#include "gossip/wire.h"

#define NET_MAX 8

struct net {
    struct gossip_core *cores[NET_MAX];
    uint8_t ids[NET_MAX][GOSSIP_ID_BYTES];
    bool down[NET_MAX]; /* crashed: neither sends nor receives */
    bool mute[NET_MAX]; /* messages to it are lost */
    int n;
    uint64_t now;
    struct gossip_config cfg;
    int events[NET_MAX][GOSSIP_EV__COUNT]; /* per observer */
};

static void make_id(uint8_t id[GOSSIP_ID_BYTES], int i)
{
    struct nx_rng r;
    nx_rng_seed(&r, 1000 + (uint64_t)i);
    for (int k = 0; k < GOSSIP_ID_BYTES; k++)
        id[k] = (uint8_t)nx_rng_next(&r);
}

static void make_meta(struct gossip_meta *m, int i)
{
    memset(m, 0, sizeof *m);
    snprintf(m->addr, sizeof m->addr, "10.0.0.%d:7946", i);
    snprintf(m->version, sizeof m->version, "0.1.0");
    m->raft_role = GOSSIP_RAFT_FOLLOWER;
    m->cpu_total_millicores = 4000;
    m->cpu_free_millicores = 3000;
    m->mem_total_bytes = 8ull << 30;
    m->mem_free_bytes = 4ull << 30;
    m->gpu_count = 1;
    m->gpu_mem_count = 1;
    m->gpu_mem_bytes[0] = 16ull << 30;
    m->label_count = 1;
    snprintf(m->labels[0].key, sizeof m->labels[0].key, "zone");
    snprintf(m->labels[0].value, sizeof m->labels[0].value, "z%d", i % 3);
}

static int index_of(const struct net *net, const uint8_t *id)
{
    for (int i = 0; i < net->n; i++)
        if (memcmp(net->ids[i], id, GOSSIP_ID_BYTES) == 0)
            return i;
    return -1;
}

/* Creates n cores that all know each other (bootstrapped without messages). */
static void net_init(struct net *net, int n, const struct gossip_config *cfg)
{
    memset(net, 0, sizeof *net);
    net->n = n;
    net->now = 1000;
    net->cfg = *cfg;
    for (int i = 0; i < n; i++) {
        struct gossip_meta meta;
        make_id(net->ids[i], i);
        make_meta(&meta, i);
        net->cores[i] = gossip_create(cfg, net->ids[i], &meta, 1, 77 + (uint64_t)i, net->now);
        assert_non_null(net->cores[i]);
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            struct gossip_meta meta;
            make_meta(&meta, j);
            if (i != j)
                assert_int_equal(gossip_add_member(net->cores[i], net->now, net->ids[j], 1, &meta),
                                 NX_OK);
        }
    for (int i = 0; i < n; i++) /* the bootstrap's join events are not news */
        gossip_advance(net->cores[i]);
}

static void net_free(struct net *net)
{
    for (int i = 0; i < net->n; i++)
        gossip_destroy(net->cores[i]);
}

/* Delivers every queued message instantly (filtered by down/mute), repeatedly. */
static void net_flush(struct net *net)
{
    for (int round = 0; round < 16; round++) {
        bool any = false;
        for (int i = 0; i < net->n; i++) {
            struct gossip_ready rd;
            gossip_ready(net->cores[i], &rd);
            for (size_t e = 0; e < rd.event_count; e++)
                net->events[i][rd.events[e].kind]++;
            for (size_t k = 0; k < rd.msg_count; k++) {
                int to = index_of(net, rd.msgs[k].to_id);
                any = true;
                if (to < 0 || net->down[i] || net->down[to] || net->mute[to])
                    continue;
                int rc = gossip_receive(net->cores[to], net->now, net->ids[i], rd.msgs[k].data,
                                        rd.msgs[k].len);
                assert_true(rc == NX_OK || rc == NX_ERR_STATE);
            }
            gossip_advance(net->cores[i]);
        }
        if (!any)
            return;
    }
}

/* Runs the network for ms milliseconds in 10 ms steps. */
static void net_run(struct net *net, uint64_t ms)
{
    for (uint64_t end = net->now + ms; net->now < end; net->now += 10) {
        for (int i = 0; i < net->n; i++)
            if (!net->down[i])
                gossip_tick(net->cores[i], net->now);
        net_flush(net);
    }
}

static enum gossip_state state_of(const struct net *net, int observer, int member)
{
    enum gossip_state st = GOSSIP_STATE__COUNT;
    assert_true(gossip_member_state(net->cores[observer], net->ids[member], &st, NULL));
    return st;
}

static struct gossip_config small_config(void)
{
    struct gossip_config cfg;
    gossip_config_default(&cfg);
    cfg.push_pull_interval_ms = 0;
    return cfg;
}

/* Finds the first outgoing message of `type` from core i; copies it to buf. */
static size_t take_msg(struct net *net, int i, uint8_t type, uint8_t *buf, size_t cap)
{
    struct gossip_ready rd;
    size_t len = 0;
    gossip_ready(net->cores[i], &rd);
    for (size_t k = 0; k < rd.msg_count && len == 0; k++)
        if (rd.msgs[k].data[1] == type && rd.msgs[k].len <= cap) {
            memcpy(buf, rd.msgs[k].data, rd.msgs[k].len);
            len = rd.msgs[k].len;
        }
    gossip_advance(net->cores[i]);
    return len;
}

/* Runs core 0 alone until it sends a ping; copies it to buf. */
static size_t first_ping(struct net *net, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    for (int step = 0; step < 300 && len == 0; step++) {
        net->now += 10;
        gossip_tick(net->cores[0], net->now);
        len = take_msg(net, 0, GOSSIP_MSG_PING, buf, cap);
    }
    return len;
}

/* A real ping with piggy-backed updates (alive with meta, suspect) from core 0. */
static size_t capture_ping(uint8_t *buf, size_t cap)
{
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 3, &cfg);
    struct gossip_meta meta;
    make_meta(&meta, 0);
    meta.cpu_free_millicores = 1;
    assert_int_equal(gossip_set_meta(net.cores[0], net.now, &meta), NX_OK);
    size_t len = first_ping(&net, buf, cap);
    net_free(&net);
    assert_true(len > GW_HEADER_BYTES + GOSSIP_ID_BYTES + 2);
    return len;
}

/* ---- decoder ------------------------------------------------------------ */

static void decoder_rejects_every_truncation_and_counts_it(void **state)
{
    (void)state;
    uint8_t msg[1400];
    size_t len = capture_ping(msg, sizeof msg);
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 3, &cfg);
    struct gossip_core *b = net.cores[1];
    uint64_t before = gossip_counters(b)->drops[GOSSIP_DROP_DECODE];
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(gossip_receive(b, net.now, net.ids[0], msg, cut), NX_ERR_DECODE);
    assert_int_equal(gossip_counters(b)->drops[GOSSIP_DROP_DECODE] - before, len);
    /* one trailing byte too many is rejected as well */
    uint8_t longer[1401];
    memcpy(longer, msg, len);
    longer[len] = 0;
    assert_int_equal(gossip_receive(b, net.now, net.ids[0], longer, len + 1), NX_ERR_DECODE);
    /* the intact message is accepted */
    assert_int_equal(gossip_receive(b, net.now, net.ids[0], msg, len), NX_OK);
    net_free(&net);
}

static void decoder_survives_byte_flips_and_garbage(void **state)
{
    (void)state;
    uint8_t msg[1400], bad[1400];
    size_t len = capture_ping(msg, sizeof msg);
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 3, &cfg);
    struct gossip_core *b = net.cores[1];
    uint64_t rejected = 0, before = gossip_counters(b)->drops[GOSSIP_DROP_DECODE];
    for (size_t pos = 0; pos < len; pos++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, msg, len);
            bad[pos] ^= (uint8_t)(1u << bit);
            int rc = gossip_receive(b, net.now, net.ids[0], bad, len);
            assert_true(rc == NX_OK || rc == NX_ERR_DECODE);
            rejected += rc == NX_ERR_DECODE;
        }
    assert_int_equal(gossip_counters(b)->drops[GOSSIP_DROP_DECODE] - before, rejected);
    assert_true(rejected > 0);
    /* header fields: version and type must be known */
    memcpy(bad, msg, len);
    bad[0] = 2;
    assert_int_equal(gossip_receive(b, net.now, net.ids[0], bad, len), NX_ERR_DECODE);
    bad[0] = GW_VERSION;
    bad[1] = 0;
    assert_int_equal(gossip_receive(b, net.now, net.ids[0], bad, len), NX_ERR_DECODE);
    bad[1] = GOSSIP_MSG__COUNT;
    assert_int_equal(gossip_receive(b, net.now, net.ids[0], bad, len), NX_ERR_DECODE);
    /* random garbage */
    struct nx_rng r;
    nx_rng_seed(&r, 5);
    for (int i = 0; i < 2000; i++) {
        size_t n = (size_t)nx_rng_below(&r, sizeof bad);
        for (size_t k = 0; k < n; k++)
            bad[k] = (uint8_t)nx_rng_next(&r);
        int rc = gossip_receive(b, net.now, net.ids[0], bad, n);
        assert_true(rc == NX_OK || rc == NX_ERR_DECODE);
    }
    /* oversized input is refused before parsing */
    assert_int_equal(gossip_receive(b, net.now, net.ids[0], msg, GOSSIP_WIRE_MAX_BYTES + 1),
                     NX_ERR_TOO_BIG);
    assert_int_equal(gossip_counters(b)->drops[GOSSIP_DROP_TOO_BIG], 1);
    net_free(&net);
}

static void meta_round_trips_and_rejects_bad_fields(void **state)
{
    (void)state;
    struct gossip_meta m, back;
    make_meta(&m, 4);
    memset(m.labels, 0, sizeof m.labels);
    m.label_count = GOSSIP_LABELS_MAX;
    for (int i = 0; i < GOSSIP_LABELS_MAX; i++) {
        snprintf(m.labels[i].key, sizeof m.labels[i].key, "k%d", i);
        snprintf(m.labels[i].value, sizeof m.labels[i].value, "v%d", i);
    }
    uint8_t buf[GOSSIP_META_MAX_BYTES];
    int len = gossip_meta_encode(&m, buf, sizeof buf);
    assert_true(len > 0);
    assert_int_equal(gossip_meta_decode(&back, buf, (size_t)len), NX_OK);
    assert_memory_equal(&m, &back, sizeof m);
    for (int cut = 0; cut < len; cut++)
        assert_int_equal(gossip_meta_decode(&back, buf, (size_t)cut), NX_ERR_DECODE);
    assert_int_equal(gossip_meta_encode(&m, buf, 20), NX_ERR_TOO_BIG);
    m.raft_role = GOSSIP_RAFT__COUNT;
    assert_int_equal(gossip_meta_encode(&m, buf, sizeof buf), NX_ERR_INVAL);
    make_meta(&m, 4);
    m.labels[0].key[0] = '\0';
    assert_int_equal(gossip_meta_encode(&m, buf, sizeof buf), NX_ERR_INVAL);
    make_meta(&m, 4);
    len = gossip_meta_encode(&m, buf, sizeof buf);
    buf[1] = 0; /* a NUL inside the address */
    assert_int_equal(gossip_meta_decode(&back, buf, (size_t)len), NX_ERR_DECODE);
}

/* ---- protocol ----------------------------------------------------------- */

static void healthy_members_stay_alive(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 5, &cfg);
    net_run(&net, 30000);
    for (int i = 0; i < 5; i++) {
        for (int j = 0; j < 5; j++)
            assert_int_equal(state_of(&net, i, j), GOSSIP_ALIVE);
        assert_int_equal(net.events[i][GOSSIP_EV_SUSPECT], 0);
        assert_true(gossip_counters(net.cores[i])->probes >= 25);
    }
    net_free(&net);
}

static void suspicion_is_refuted_by_higher_incarnation(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 5, &cfg);
    net.mute[2] = true; /* member 2 hears nothing: it will be suspected */
    bool suspected = false;
    for (int step = 0; step < 1000 && !suspected; step++) {
        net_run(&net, 10);
        for (int i = 0; i < 5; i++)
            suspected |= i != 2 && state_of(&net, i, 2) == GOSSIP_SUSPECT;
    }
    assert_true(suspected);
    net.mute[2] = false;
    net_run(&net, 3000);
    uint64_t inc = 0;
    for (int i = 0; i < 5; i++) {
        enum gossip_state st;
        assert_true(gossip_member_state(net.cores[i], net.ids[2], &st, &inc));
        assert_int_equal(st, GOSSIP_ALIVE);
        assert_true(inc > 1);
    }
    assert_true(gossip_counters(net.cores[2])->refutations >= 1);
    assert_true(net.events[2][GOSSIP_EV_REFUTE] >= 1);
    net_free(&net);
}

static void crashed_member_is_dead_after_suspicion_timeout(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 5, &cfg);
    uint64_t crash = net.now;
    net.down[4] = true;
    /* bound: a probe reaches it within a few periods, then at most the
     * Lifeguard maximum suspicion timeout, then a few periods to spread */
    uint64_t hi = gossip_suspicion_timeout_ms(net.cores[0], 0);
    uint64_t lo = gossip_suspicion_timeout_ms(net.cores[0], cfg.indirect_k);
    assert_true(hi > lo);
    uint64_t first_dead = 0;
    for (int step = 0; step < 10000; step++) {
        net_run(&net, 10);
        bool all = true;
        for (int i = 0; i < 4; i++) {
            bool dead = state_of(&net, i, 4) == GOSSIP_DEAD;
            all &= dead;
            if (dead && !first_dead)
                first_dead = net.now;
        }
        if (all)
            break;
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(state_of(&net, i, 4), GOSSIP_DEAD);
    /* the suspicion timeout really waited: not before the minimum */
    assert_true(first_dead - crash >= lo);
    assert_true(net.now - crash <= 8 * cfg.probe_interval_ms + hi);
    /* others stay alive */
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            assert_int_equal(state_of(&net, i, j), GOSSIP_ALIVE);
    net_free(&net);
}

static void dynamic_suspicion_timeout_shrinks_with_confirmations(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 6, &cfg);
    struct gossip_core *c = net.cores[0];
    uint64_t t0 = gossip_suspicion_timeout_ms(c, 0), t1 = gossip_suspicion_timeout_ms(c, 1),
             t3 = gossip_suspicion_timeout_ms(c, 3);
    assert_true(t0 > t1 && t1 > t3);
    assert_int_equal(t0, (uint64_t)cfg.suspicion_max_mult * t3);
    assert_int_equal(gossip_suspicion_timeout_ms(c, 10), t3);
    net_free(&net);
    cfg.lifeguard_suspicion = false;
    net_init(&net, 6, &cfg);
    assert_int_equal(gossip_suspicion_timeout_ms(net.cores[0], 0), t3);
    net_free(&net);
}

static void leave_marks_member_left_not_dead(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 5, &cfg);
    net_run(&net, 2000);
    gossip_leave(net.cores[3], net.now);
    net_run(&net, 5000);
    for (int i = 0; i < 5; i++)
        if (i != 3) {
            assert_int_equal(state_of(&net, i, 3), GOSSIP_LEFT);
            assert_int_equal(net.events[i][GOSSIP_EV_LEFT], 1);
            assert_int_equal(net.events[i][GOSSIP_EV_DEAD], 0);
        }
    uint8_t junk[8] = {0};
    assert_int_equal(gossip_receive(net.cores[3], net.now, net.ids[0], junk, sizeof junk),
                     NX_ERR_STATE);
    net_free(&net);
}

static void restart_with_higher_incarnation_is_alive_again(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 4, &cfg);
    net.down[3] = true;
    net_run(&net, 60000);
    assert_int_equal(state_of(&net, 0, 3), GOSSIP_DEAD);
    /* restart: memory lost, higher incarnation from the host, join via 0 */
    gossip_destroy(net.cores[3]);
    struct gossip_meta meta;
    make_meta(&meta, 3);
    net.cores[3] = gossip_create(&cfg, net.ids[3], &meta, 100, 9, net.now);
    assert_non_null(net.cores[3]);
    net.down[3] = false;
    assert_int_equal(gossip_join(net.cores[3], net.now, net.ids[0], "10.0.0.0:7946"), NX_OK);
    net_run(&net, 5000);
    for (int i = 0; i < 4; i++) {
        enum gossip_state st;
        uint64_t inc;
        assert_true(gossip_member_state(net.cores[i], net.ids[3], &st, &inc));
        assert_int_equal(st, GOSSIP_ALIVE);
        assert_true(inc >= 100);
        assert_int_equal(gossip_member_count(net.cores[i]), 4);
    }
    net_free(&net);
}

static void join_via_seed_learns_everyone(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 4, &cfg);
    /* core 4 starts alone and joins through core 1 */
    struct gossip_meta meta;
    make_id(net.ids[4], 4);
    make_meta(&meta, 4);
    net.cores[4] = gossip_create(&cfg, net.ids[4], &meta, 1, 99, net.now);
    net.n = 5;
    assert_int_equal(gossip_join(net.cores[4], net.now, net.ids[1], "bad\0"), NX_OK);
    assert_int_equal(gossip_join(net.cores[4], net.now, net.ids[1], ""), NX_ERR_INVAL);
    assert_int_equal(gossip_join(net.cores[4], net.now, net.ids[1], "10.0.0.1:7946"), NX_OK);
    net_run(&net, 10000);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(gossip_member_count(net.cores[i]), 5);
        for (int j = 0; j < 5; j++)
            assert_int_equal(state_of(&net, i, j), GOSSIP_ALIVE);
    }
    assert_int_equal(net.events[0][GOSSIP_EV_JOIN], 1);
    net_free(&net);
}

static void metadata_update_propagates(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 5, &cfg);
    struct gossip_meta meta;
    make_meta(&meta, 2);
    meta.cpu_free_millicores = 123;
    meta.raft_role = GOSSIP_RAFT_LEADER;
    assert_int_equal(gossip_set_meta(net.cores[2], net.now, &meta), NX_OK);
    net_run(&net, 8000);
    for (int i = 0; i < 5; i++) {
        struct gossip_member_info info;
        assert_int_equal(gossip_member_find(net.cores[i], net.ids[2], &info), NX_OK);
        assert_int_equal(info.meta.cpu_free_millicores, 123);
        assert_int_equal(info.meta.raft_role, GOSSIP_RAFT_LEADER);
        assert_int_equal(info.incarnation, 2);
        if (i != 2)
            assert_int_equal(net.events[i][GOSSIP_EV_META], 1);
    }
    net_free(&net);
}

static void limits_are_enforced(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    cfg.max_members = 3;
    cfg.max_meta_bytes = 80;
    struct net net;
    net_init(&net, 3, &cfg);
    uint8_t extra[GOSSIP_ID_BYTES];
    struct gossip_meta meta;
    make_id(extra, 7);
    make_meta(&meta, 7);
    assert_int_equal(gossip_add_member(net.cores[0], net.now, extra, 1, &meta), NX_ERR_FULL);
    assert_int_equal(gossip_member_count(net.cores[0]), 3);
    /* a push-pull from a fourth node is refused and counted */
    struct gossip_config big = small_config();
    struct gossip_core *d = gossip_create(&big, extra, &meta, 1, 3, net.now);
    assert_non_null(d);
    assert_int_equal(gossip_join(d, net.now, net.ids[0], "10.0.0.0:7946"), NX_OK);
    struct gossip_ready rd;
    gossip_ready(d, &rd);
    assert_int_equal(rd.msg_count, 1);
    assert_int_equal(gossip_receive(net.cores[0], net.now, extra, rd.msgs[0].data, rd.msgs[0].len),
                     NX_OK);
    gossip_advance(d);
    assert_true(gossip_counters(net.cores[0])->drops[GOSSIP_DROP_TABLE_FULL] >= 1);
    assert_int_equal(gossip_member_count(net.cores[0]), 3);
    gossip_destroy(d);
    /* oversized metadata */
    for (int i = 0; i < GOSSIP_LABELS_MAX; i++) {
        snprintf(meta.labels[i].key, sizeof meta.labels[i].key, "key%d", i);
        snprintf(meta.labels[i].value, sizeof meta.labels[i].value, "a-rather-long-value-%d", i);
    }
    meta.label_count = GOSSIP_LABELS_MAX;
    assert_int_equal(gossip_set_meta(net.cores[0], net.now, &meta), NX_ERR_TOO_BIG);
    assert_null(gossip_create(&cfg, extra, &meta, 1, 1, net.now));
    /* bad config */
    struct gossip_config bad = small_config();
    bad.indirect_k = GOSSIP_INDIRECT_K_MAX + 1;
    make_meta(&meta, 7);
    assert_null(gossip_create(&bad, extra, &meta, 1, 1, net.now));
    net_free(&net);
}

static void lifeguard_health_rises_when_acks_are_missed(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 5, &cfg);
    net.mute[0] = true; /* core 0 hears nothing: its probes all fail */
    net_run(&net, 4000);
    assert_true(gossip_health(net.cores[0]) >= 2);
    net.mute[0] = false;
    net_run(&net, 60000);
    assert_true(gossip_health(net.cores[0]) <= 1);
    net_free(&net);
    cfg.lifeguard_awareness = false;
    net_init(&net, 5, &cfg);
    net.mute[0] = true;
    net_run(&net, 4000);
    assert_int_equal(gossip_health(net.cores[0]), 0);
    net_free(&net);
}

static void trace_events_follow_a_failed_probe(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    cfg.trace = true;
    struct net net;
    net_init(&net, 4, &cfg);
    net.down[2] = true;
    net_run(&net, 6000);
    /* someone probed 2, fell back to ping-req, got nacks, and gave up */
    int probes = 0, ping_reqs = 0, nacks = 0, fails = 0;
    for (int i = 0; i < 4; i++) {
        probes += net.events[i][GOSSIP_TRACE_PROBE];
        ping_reqs += net.events[i][GOSSIP_TRACE_PING_REQ];
        nacks += net.events[i][GOSSIP_TRACE_NACK];
        fails += net.events[i][GOSSIP_TRACE_PROBE_FAIL];
    }
    assert_true(probes >= 12);
    assert_true(ping_reqs >= 1 && nacks >= 1 && fails >= 1);
    assert_true(net.events[0][GOSSIP_EV_SUSPECT] >= 1);
    assert_string_equal(gossip_event_name(GOSSIP_TRACE_NACK), "nack");
    assert_string_equal(gossip_state_name(GOSSIP_SUSPECT), "suspect");
    net_free(&net);
}

static void misdirected_ping_is_dropped_and_counted(void **state)
{
    (void)state;
    uint8_t msg[1400];
    size_t len = capture_ping(msg, sizeof msg);
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 3, &cfg);
    /* the captured ping is addressed to some member of another run: not us */
    uint8_t *target = msg + GW_HEADER_BYTES;
    memset(target, 0xee, GOSSIP_ID_BYTES);
    assert_int_equal(gossip_receive(net.cores[1], net.now, net.ids[0], msg, len), NX_OK);
    assert_int_equal(gossip_counters(net.cores[1])->drops[GOSSIP_DROP_MISDIRECTED], 1);
    struct gossip_ready rd;
    gossip_ready(net.cores[1], &rd);
    assert_int_equal(rd.msg_count, 0); /* no ack */
    gossip_advance(net.cores[1]);
    /* member 0 is always us */
    struct gossip_member_info info;
    assert_int_equal(gossip_member_get(net.cores[1], 0, &info), NX_OK);
    assert_memory_equal(info.id, net.ids[1], GOSSIP_ID_BYTES);
    assert_int_equal(gossip_member_get(net.cores[1], 3, &info), NX_ERR_NOT_FOUND);
    net_free(&net);
}

static void full_table_forgets_oldest_dead_member_for_a_newcomer(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    cfg.max_members = 4;
    struct net net;
    net_init(&net, 4, &cfg);
    net.down[3] = true;
    net_run(&net, 60000);
    assert_int_equal(state_of(&net, 0, 3), GOSSIP_DEAD);
    /* a fifth node joins through 0: the dead member makes room */
    struct gossip_meta meta;
    make_id(net.ids[4], 4);
    make_meta(&meta, 4);
    net.cores[4] = gossip_create(&cfg, net.ids[4], &meta, 1, 5, net.now);
    net.n = 5;
    assert_int_equal(gossip_join(net.cores[4], net.now, net.ids[0], "10.0.0.0:7946"), NX_OK);
    net_run(&net, 10000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(state_of(&net, i, 4), GOSSIP_ALIVE);
        assert_false(gossip_member_state(net.cores[i], net.ids[3], NULL, NULL));
        assert_int_equal(gossip_counters(net.cores[i])->evictions, 1);
        assert_int_equal(gossip_member_count(net.cores[i]), 4);
        for (int j = 0; j < 3; j++)
            assert_int_equal(state_of(&net, i, j), GOSSIP_ALIVE);
    }
    net_free(&net);
}

static void stale_suspicion_is_corrected_in_the_ack(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 3, &cfg);
    /* member 2 refuted long ago: core 0 holds it alive at incarnation 3 */
    struct gossip_meta meta;
    make_meta(&meta, 2);
    assert_int_equal(gossip_add_member(net.cores[0], net.now, net.ids[2], 3, &meta), NX_OK);
    /* core 1 pings core 0 carrying an old suspicion of member 2 (incarnation 2) */
    uint8_t buf[512];
    struct gw_writer w = {.buf = buf, .cap = sizeof buf};
    gw_put_header(&w, GOSSIP_MSG_PING, 77);
    gw_put_bytes(&w, net.ids[0], GOSSIP_ID_BYTES);
    gw_put_addr(&w, "10.0.0.1:7946");
    gw_put_u16(&w, 1);
    gw_put_update(&w, GW_SUSPECT, net.ids[2], 2, NULL, 0, net.ids[1]);
    assert_false(w.overflow);
    assert_int_equal(gossip_receive(net.cores[0], net.now, net.ids[1], buf, w.len), NX_OK);
    uint8_t ack[1400];
    size_t len = take_msg(&net, 0, GOSSIP_MSG_ACK, ack, sizeof ack);
    assert_true(len > 0);
    struct gw_msg msg;
    assert_int_equal(gw_parse(&msg, ack, len), NX_OK);
    assert_int_equal(msg.seq, 77);
    assert_int_equal(msg.incarnation, 1); /* core 0's own incarnation */
    assert_true(msg.update_count >= 1);
    struct gw_update u;
    gw_next_update(&msg.updates, &u);
    assert_int_equal(u.kind, GW_ALIVE);
    assert_memory_equal(u.id, net.ids[2], GOSSIP_ID_BYTES);
    assert_int_equal(u.incarnation, 3);
    net_free(&net);
}

static void ack_with_newer_incarnation_asks_for_the_record(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 2, &cfg);
    /* run core 0 until it pings core 1 */
    uint8_t ping[1400];
    size_t len = first_ping(&net, ping, sizeof ping);
    assert_true(len > 0);
    struct gw_msg msg;
    assert_int_equal(gw_parse(&msg, ping, len), NX_OK);
    /* core 1 answers at incarnation 9, above the 1 core 0 knows */
    uint8_t buf[64];
    struct gw_writer w = {.buf = buf, .cap = sizeof buf};
    gw_put_header(&w, GOSSIP_MSG_ACK, msg.seq);
    gw_put_u64(&w, 9);
    gw_put_u16(&w, 0);
    assert_int_equal(gossip_receive(net.cores[0], net.now, net.ids[1], buf, w.len), NX_OK);
    uint8_t out[1400];
    assert_true(take_msg(&net, 0, GOSSIP_MSG_GOSSIP, out, sizeof out) > 0);
    net_free(&net);
}

/* ---- Lifeguard timing and suspicion repair ----------------------------------- */

/* Ticks core 0 alone up to `until`, dropping what it sends; counts its SUSPECT events. */
static int tick_alone(struct net *net, uint64_t until)
{
    int suspects = 0;
    for (; net->now < until; net->now += 10) {
        gossip_tick(net->cores[0], net->now);
        struct gossip_ready rd;
        gossip_ready(net->cores[0], &rd);
        for (size_t e = 0; e < rd.event_count; e++)
            suspects += rd.events[e].kind == GOSSIP_EV_SUSPECT;
        gossip_advance(net->cores[0]);
    }
    return suspects;
}

/* A GOSSIP message from `from` carrying one suspect claim about `about`. */
static size_t suspect_msg(struct net *net, uint8_t *buf, size_t cap, int about, uint64_t inc,
                          int from)
{
    struct gw_writer w = {.buf = buf, .cap = cap};
    gw_put_header(&w, GOSSIP_MSG_GOSSIP, 0);
    gw_put_u16(&w, 1);
    gw_put_update(&w, GW_SUSPECT, net->ids[about], inc, NULL, 0, net->ids[from]);
    assert_false(w.overflow);
    return w.len;
}

static size_t ack_msg(uint8_t *buf, size_t cap, uint32_t seq, uint64_t inc)
{
    struct gw_writer w = {.buf = buf, .cap = cap};
    gw_put_header(&w, GOSSIP_MSG_ACK, seq);
    gw_put_u64(&w, inc);
    gw_put_u16(&w, 0);
    assert_false(w.overflow);
    return w.len;
}

enum verdict_case { NOTHING_BACK, LATE_ACK, ONE_NACK };

static void verdict_without_any_nack_waits_a_period(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    for (int mode = NOTHING_BACK; mode <= ONE_NACK; mode++) {
        struct net net;
        net_init(&net, 5, &cfg);
        uint8_t ping[1400];
        size_t len = first_ping(&net, ping, sizeof ping);
        assert_true(len > 0);
        uint64_t start = net.now;
        struct gw_msg msg;
        assert_int_equal(gw_parse(&msg, ping, len), NX_OK);
        int target = index_of(&net, msg.target);
        if (mode == ONE_NACK) { /* one relay answers: our receive path works */
            assert_int_equal(tick_alone(&net, start + 700), 0);
            uint8_t nack[64];
            struct gw_writer w = {.buf = nack, .cap = sizeof nack};
            gw_put_header(&w, GOSSIP_MSG_NACK, msg.seq);
            gw_put_u16(&w, 0);
            int helper = target == 1 ? 2 : 1;
            assert_int_equal(gossip_receive(net.cores[0], net.now, net.ids[helper], nack, w.len),
                             NX_OK);
            assert_int_equal(tick_alone(&net, start + 1100), 1); /* no waiting */
            assert_int_equal(gossip_health(net.cores[0]), 2);
            assert_int_equal(gossip_counters(net.cores[0])->verdicts_deferred, 0);
            net_free(&net);
            continue;
        }
        /* no ack and none of the 3 nacks: at the end of the period the LHM
         * rises by 3 and the verdict waits one more period */
        assert_int_equal(tick_alone(&net, start + 1100), 0);
        assert_int_equal(gossip_health(net.cores[0]), 3);
        assert_int_equal(gossip_counters(net.cores[0])->verdicts_deferred, 1);
        assert_int_equal(tick_alone(&net, start + 1500), 0);
        if (mode == LATE_ACK) { /* our slowness delayed it: the target is cleared */
            uint8_t ack[64];
            size_t n = ack_msg(ack, sizeof ack, msg.seq, 1);
            assert_int_equal(gossip_receive(net.cores[0], net.now, net.ids[target], ack, n), NX_OK);
        }
        int suspects = tick_alone(&net, start + 2010);
        assert_int_equal(suspects, mode == LATE_ACK ? 0 : 1);
        assert_int_equal(state_of(&net, 0, target),
                         mode == LATE_ACK ? GOSSIP_ALIVE : GOSSIP_SUSPECT);
        net_free(&net);
    }
}

static void relay_nacks_after_half_a_timeout_and_forwards_a_late_ack(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 3, &cfg);
    /* core 0 asks core 1 to ping core 2 */
    uint8_t buf[512];
    struct gw_writer w = {.buf = buf, .cap = sizeof buf};
    gw_put_header(&w, GOSSIP_MSG_PING_REQ, 55);
    gw_put_bytes(&w, net.ids[2], GOSSIP_ID_BYTES);
    gw_put_addr(&w, "10.0.0.2:7946");
    gw_put_addr(&w, "10.0.0.0:7946");
    gw_put_u16(&w, 0);
    assert_false(w.overflow);
    uint64_t t0 = net.now;
    assert_int_equal(gossip_receive(net.cores[1], t0, net.ids[0], buf, w.len), NX_OK);
    uint8_t ping[1400];
    size_t len = take_msg(&net, 1, GOSSIP_MSG_PING, ping, sizeof ping);
    assert_true(len > 0);
    struct gw_msg msg;
    assert_int_equal(gw_parse(&msg, ping, len), NX_OK);
    uint8_t out[1400];
    gossip_tick(net.cores[1], t0 + cfg.probe_timeout_ms / 2 - 1);
    assert_int_equal(take_msg(&net, 1, GOSSIP_MSG_NACK, out, sizeof out), 0);
    gossip_tick(net.cores[1], t0 + cfg.probe_timeout_ms / 2);
    assert_true(take_msg(&net, 1, GOSSIP_MSG_NACK, out, sizeof out) > 0);
    /* the target's ack comes after the nack: still forwarded, with our seq 55 */
    uint8_t ack[64];
    size_t n = ack_msg(ack, sizeof ack, msg.seq, 4);
    assert_int_equal(gossip_receive(net.cores[1], t0 + 700, net.ids[2], ack, n), NX_OK);
    len = take_msg(&net, 1, GOSSIP_MSG_ACK, out, sizeof out);
    assert_true(len > 0);
    assert_int_equal(gw_parse(&msg, out, len), NX_OK);
    assert_int_equal(msg.seq, 55);
    assert_int_equal(msg.incarnation, 4);
    net_free(&net);
}

static void ack_with_newer_incarnation_ends_our_suspicion(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 4, &cfg);
    uint8_t buf[512];
    size_t n = suspect_msg(&net, buf, sizeof buf, 1, 1, 2);
    assert_int_equal(gossip_receive(net.cores[0], net.now, net.ids[2], buf, n), NX_OK);
    assert_int_equal(state_of(&net, 0, 1), GOSSIP_SUSPECT);
    /* core 0 probes the suspect next; the suspicion rides on the ping */
    uint8_t ping[1400];
    size_t len = first_ping(&net, ping, sizeof ping);
    struct gw_msg msg;
    assert_int_equal(gw_parse(&msg, ping, len), NX_OK);
    assert_memory_equal(msg.target, net.ids[1], GOSSIP_ID_BYTES);
    struct gw_update u;
    gw_next_update(&msg.updates, &u);
    assert_int_equal(u.kind, GW_SUSPECT);
    /* member 1 had refuted at incarnation 2: its ack proves it */
    uint8_t ack[64];
    n = ack_msg(ack, sizeof ack, msg.seq, 2);
    assert_int_equal(gossip_receive(net.cores[0], net.now, net.ids[1], ack, n), NX_OK);
    assert_int_equal(state_of(&net, 0, 1), GOSSIP_ALIVE);
    /* an older claim is ignored now; one at the proven incarnation is not */
    n = suspect_msg(&net, buf, sizeof buf, 1, 1, 3);
    assert_int_equal(gossip_receive(net.cores[0], net.now, net.ids[3], buf, n), NX_OK);
    assert_int_equal(state_of(&net, 0, 1), GOSSIP_ALIVE);
    n = suspect_msg(&net, buf, sizeof buf, 1, 2, 3);
    assert_int_equal(gossip_receive(net.cores[0], net.now, net.ids[3], buf, n), NX_OK);
    assert_int_equal(state_of(&net, 0, 1), GOSSIP_SUSPECT);
    net_free(&net);
}

static void ping_req_about_a_suspect_carries_the_suspicion(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    struct net net;
    net_init(&net, 5, &cfg);
    uint8_t buf[512];
    size_t n = suspect_msg(&net, buf, sizeof buf, 1, 1, 2);
    assert_int_equal(gossip_receive(net.cores[0], net.now, net.ids[2], buf, n), NX_OK);
    uint8_t ping[1400];
    assert_true(first_ping(&net, ping, sizeof ping) > 0); /* to the suspect */
    /* member 3 pings core 0 until the suspicion has had all its broadcasts */
    for (int k = 0; k < 4; k++) {
        struct gw_writer w = {.buf = buf, .cap = sizeof buf};
        gw_put_header(&w, GOSSIP_MSG_PING, 90 + (uint32_t)k);
        gw_put_bytes(&w, net.ids[0], GOSSIP_ID_BYTES);
        gw_put_addr(&w, "10.0.0.3:7946");
        gw_put_u16(&w, 0);
        assert_int_equal(gossip_receive(net.cores[0], net.now, net.ids[3], buf, w.len), NX_OK);
        uint8_t ack[1400];
        assert_true(take_msg(&net, 0, GOSSIP_MSG_ACK, ack, sizeof ack) > 0);
    }
    uint8_t req[1400];
    size_t len = 0;
    for (int step = 0; step < 100 && len == 0; step++) {
        net.now += 10;
        gossip_tick(net.cores[0], net.now);
        len = take_msg(&net, 0, GOSSIP_MSG_PING_REQ, req, sizeof req);
    }
    assert_true(len > 0);
    struct gw_msg msg;
    assert_int_equal(gw_parse(&msg, req, len), NX_OK);
    assert_memory_equal(msg.target, net.ids[1], GOSSIP_ID_BYTES);
    struct gw_update u;
    gw_next_update(&msg.updates, &u);
    assert_int_equal(u.kind, GW_SUSPECT);
    assert_memory_equal(u.id, net.ids[1], GOSSIP_ID_BYTES);
    net_free(&net);
}

static void suspect_gets_a_last_call_before_its_timeout(void **state)
{
    (void)state;
    struct gossip_config cfg = small_config();
    cfg.lifeguard_awareness = false; /* periods stay 1 s: a fixed deadline */
    struct net net;
    net_init(&net, 8, &cfg);
    /* four independent accusers (k = 3 confirmations): the minimum timeout */
    uint8_t buf[512];
    for (int from = 2; from <= 5; from++) {
        size_t n = suspect_msg(&net, buf, sizeof buf, 1, 1, from);
        assert_int_equal(gossip_receive(net.cores[0], net.now, net.ids[from], buf, n), NX_OK);
    }
    uint64_t deadline = net.now + gossip_suspicion_timeout_ms(net.cores[0], 3);
    assert_int_equal(deadline - net.now, 4000);
    /* nothing answers; core 0 pings the suspect next, then once more when
     * its deadline is two periods away, not only when the round comes back */
    int pings = 0;
    for (; net.now < deadline; net.now += 10) {
        gossip_tick(net.cores[0], net.now);
        struct gossip_ready rd;
        gossip_ready(net.cores[0], &rd);
        for (size_t k = 0; k < rd.msg_count; k++) {
            struct gw_msg msg;
            if (rd.msgs[k].data[1] == GOSSIP_MSG_PING &&
                gw_parse(&msg, rd.msgs[k].data, rd.msgs[k].len) == NX_OK &&
                memcmp(msg.target, net.ids[1], GOSSIP_ID_BYTES) == 0)
                pings++;
        }
        gossip_advance(net.cores[0]);
    }
    assert_int_equal(pings, 2);
    assert_int_equal(tick_alone(&net, deadline + 20), 0);
    assert_int_equal(state_of(&net, 0, 1), GOSSIP_DEAD);
    net_free(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decoder_rejects_every_truncation_and_counts_it),
        cmocka_unit_test(decoder_survives_byte_flips_and_garbage),
        cmocka_unit_test(meta_round_trips_and_rejects_bad_fields),
        cmocka_unit_test(healthy_members_stay_alive),
        cmocka_unit_test(suspicion_is_refuted_by_higher_incarnation),
        cmocka_unit_test(crashed_member_is_dead_after_suspicion_timeout),
        cmocka_unit_test(dynamic_suspicion_timeout_shrinks_with_confirmations),
        cmocka_unit_test(leave_marks_member_left_not_dead),
        cmocka_unit_test(restart_with_higher_incarnation_is_alive_again),
        cmocka_unit_test(join_via_seed_learns_everyone),
        cmocka_unit_test(metadata_update_propagates),
        cmocka_unit_test(limits_are_enforced),
        cmocka_unit_test(lifeguard_health_rises_when_acks_are_missed),
        cmocka_unit_test(trace_events_follow_a_failed_probe),
        cmocka_unit_test(misdirected_ping_is_dropped_and_counted),
        cmocka_unit_test(full_table_forgets_oldest_dead_member_for_a_newcomer),
        cmocka_unit_test(stale_suspicion_is_corrected_in_the_ack),
        cmocka_unit_test(ack_with_newer_incarnation_asks_for_the_record),
        cmocka_unit_test(verdict_without_any_nack_waits_a_period),
        cmocka_unit_test(relay_nacks_after_half_a_timeout_and_forwards_a_late_ack),
        cmocka_unit_test(ack_with_newer_incarnation_ends_our_suspicion),
        cmocka_unit_test(ping_req_about_a_suspect_carries_the_suspicion),
        cmocka_unit_test(suspect_gets_a_last_call_before_its_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
