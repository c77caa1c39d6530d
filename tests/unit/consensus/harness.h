/*
 * harness.h - a tiny, fully controlled cluster for the Raft scenario tests.
 *
 * Nodes follow the Ready contract with raft_mem storage; every message goes
 * through raft_msg_encode/raft_msg_decode. The test decides which links are
 * cut, may rewrite messages in flight (mutate), and drives time with
 * explicit ticks. Test-only: static functions included by one test file.
 */
#ifndef NX_TEST_RAFT_HARNESS_H
#define NX_TEST_RAFT_HARNESS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/raft.h"

#define H_MAX_NODES 8
#define H_MAX_APPLIED 4096
#define H_MAX_QUEUE 65536

struct h_node {
    uint64_t id;
    bool up;
    struct raft *r;
    struct raft_mem *mem;
    struct raft_config cfg;
    uint64_t applied_term[H_MAX_APPLIED]; /* term of the entry applied at each index */
    uint64_t last_applied;
    uint32_t snapshots_installed;
    struct raft_read_state reads[64];
    uint32_t n_reads;
    uint32_t events[RAFT_EV_DROPPED + 1]; /* trace events seen, by type */
    uint32_t transfer_campaigns;
};

struct h_qmsg {
    uint64_t to;
    size_t len;
    uint8_t *bytes;
};

struct h_net {
    struct h_node nodes[H_MAX_NODES + 1]; /* by id, 1-based */
    uint32_t n;
    bool cut[H_MAX_NODES + 1][H_MAX_NODES + 1]; /* cut[from][to] */
    /* Optional: change a decoded message before delivery; return false to drop. */
    bool (*mutate)(struct raft_msg *m, void *arg);
    void *mutate_arg;
    struct h_qmsg *queue;
    size_t n_queue;
    uint32_t rejects_seen; /* rejected append responses delivered */
    char *transcript;      /* when set: one line per event and message sent (owned) */
    size_t transcript_len;
    size_t transcript_cap;
};

static void h_say(struct h_net *net, const char *fmt, ...) NX_PRINTF(2, 3);
static void h_say(struct h_net *net, const char *fmt, ...)
{
    if (!net->transcript)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(net->transcript + net->transcript_len,
                      net->transcript_cap - net->transcript_len, fmt, ap);
    va_end(ap);
    if (n > 0 && net->transcript_len + (size_t)n < net->transcript_cap)
        net->transcript_len += (size_t)n;
}

static struct h_node *h_node(struct h_net *net, uint64_t id)
{
    return &net->nodes[id];
}

/* Starts node id from its stored state. */
static void h_start(struct h_net *net, uint64_t id)
{
    struct h_node *nd = h_node(net, id);
    struct raft_boot boot;
    raft_mem_boot(nd->mem, &boot);
    int rc = raft_create(&nd->cfg, &boot, &nd->r);
    NX_ASSERT(rc == NX_OK);
    nd->up = true;
    nd->last_applied = raft_applied_index(nd->r);
}

static void h_crash(struct h_net *net, uint64_t id)
{
    struct h_node *nd = h_node(net, id);
    raft_destroy(nd->r);
    nd->r = NULL;
    nd->up = false;
}

/* A cluster of n_voters voters (ids 1..n_voters) plus n_extra nodes with empty config. */
static void h_init(struct h_net *net, uint32_t n_voters, uint32_t n_extra, bool pre_vote,
                   bool check_quorum)
{
    memset(net, 0, sizeof *net);
    net->n = n_voters + n_extra;
    NX_ASSERT(net->n <= H_MAX_NODES);
    net->queue = calloc(H_MAX_QUEUE, sizeof *net->queue);
    struct raft_conf boot = {0};
    for (uint32_t i = 0; i < n_voters; i++)
        boot.voters[boot.n_voters++] = i + 1;
    for (uint64_t id = 1; id <= net->n; id++) {
        struct h_node *nd = h_node(net, id);
        nd->id = id;
        raft_config_default(&nd->cfg, id, 1000 + id);
        nd->cfg.pre_vote = pre_vote;
        nd->cfg.check_quorum = check_quorum;
        int rc = raft_mem_create(id <= n_voters ? &boot : NULL, &nd->mem);
        NX_ASSERT(rc == NX_OK);
        h_start(net, id);
    }
}

static void h_free(struct h_net *net)
{
    for (uint64_t id = 1; id <= net->n; id++) {
        struct h_node *nd = h_node(net, id);
        if (nd->up)
            raft_destroy(nd->r);
        raft_mem_destroy(nd->mem);
    }
    for (size_t i = 0; i < net->n_queue; i++)
        free(net->queue[i].bytes);
    free(net->queue);
    free(net->transcript);
}

/* Handles every ready of node nd: persist, queue messages, apply, advance. */
static void h_drain_node(struct h_net *net, struct h_node *nd)
{
    while (nd->up && raft_has_ready(nd->r)) {
        struct raft_ready rd;
        raft_ready(nd->r, &rd);
        int rc = raft_mem_persist(nd->mem, &rd);
        NX_ASSERT(rc == NX_OK);
        for (size_t i = 0; i < rd.n_events; i++)
            h_say(net, "n%llu %s term=%llu a=%llu b=%llu\n", (unsigned long long)nd->id,
                  raft_event_name(rd.events[i].type), (unsigned long long)rd.events[i].term,
                  (unsigned long long)rd.events[i].a, (unsigned long long)rd.events[i].b);
        for (size_t i = 0; i < rd.n_committed; i++)
            h_say(net, "n%llu apply index=%llu term=%llu len=%u\n", (unsigned long long)nd->id,
                  (unsigned long long)rd.committed[i].index,
                  (unsigned long long)rd.committed[i].term, rd.committed[i].len);
        for (size_t i = 0; i < rd.n_msgs; i++) {
            const struct raft_msg *m = &rd.msgs[i];
            h_say(net, "n%llu -> n%llu %s term=%llu index=%llu log_term=%llu commit=%llu%s n=%u\n",
                  (unsigned long long)m->from, (unsigned long long)m->to,
                  raft_msg_type_name(m->type), (unsigned long long)m->term,
                  (unsigned long long)m->index, (unsigned long long)m->log_term,
                  (unsigned long long)m->commit, m->reject ? " reject" : "", m->n_entries);
            if (m->to > net->n || net->cut[m->from][m->to] || net->n_queue >= H_MAX_QUEUE)
                continue;
            size_t cap = raft_msg_encoded_size(m);
            uint8_t *buf = malloc(cap);
            long n = raft_msg_encode(m, buf, cap);
            NX_ASSERT(n > 0);
            net->queue[net->n_queue++] = (struct h_qmsg){m->to, (size_t)n, buf};
        }
        if (rd.snapshot) {
            nd->snapshots_installed++;
            nd->last_applied = rd.snapshot->index;
        }
        for (size_t i = 0; i < rd.n_committed; i++) {
            const struct raft_entry *e = &rd.committed[i];
            NX_ASSERT(e->index == nd->last_applied + 1);
            if (e->index < H_MAX_APPLIED)
                nd->applied_term[e->index] = e->term;
            nd->last_applied = e->index;
        }
        for (size_t i = 0; i < rd.n_events; i++) {
            const struct raft_event *ev = &rd.events[i];
            if (ev->type <= RAFT_EV_DROPPED)
                nd->events[ev->type]++;
            if (ev->type == RAFT_EV_CAMPAIGN && ev->b)
                nd->transfer_campaigns++;
        }
        for (size_t i = 0; i < rd.n_reads && nd->n_reads < 64; i++)
            nd->reads[nd->n_reads++] = rd.reads[i];
        raft_advance(nd->r, &rd);
    }
}

/* Runs readies and deliveries until nothing moves (bounded). */
static void h_settle(struct h_net *net)
{
    for (int round = 0; round < 1000; round++) {
        for (uint64_t id = 1; id <= net->n; id++)
            h_drain_node(net, h_node(net, id));
        if (net->n_queue == 0)
            return;
        size_t n = net->n_queue;
        struct h_qmsg *batch = malloc(n * sizeof *batch);
        memcpy(batch, net->queue, n * sizeof *batch);
        net->n_queue = 0;
        for (size_t i = 0; i < n; i++) {
            struct h_node *nd = h_node(net, batch[i].to);
            struct raft_msg m;
            if (raft_msg_decode(batch[i].bytes, batch[i].len, &m) == NX_OK) {
                bool deliver = nd->up && !net->cut[m.from][m.to];
                if (deliver && net->mutate)
                    deliver = net->mutate(&m, net->mutate_arg);
                if (deliver) {
                    if (m.type == RAFT_MSG_APPEND_RESP && m.reject)
                        net->rejects_seen++;
                    int rc = raft_step(nd->r, &m);
                    NX_ASSERT(rc == NX_OK);
                }
                raft_msg_clear(&m);
            }
            free(batch[i].bytes);
        }
        free(batch);
    }
}

static void h_tick(struct h_net *net, uint32_t ticks)
{
    for (uint32_t t = 0; t < ticks; t++) {
        for (uint64_t id = 1; id <= net->n; id++)
            if (h_node(net, id)->up)
                raft_tick(h_node(net, id)->r);
        h_settle(net);
    }
}

static void h_isolate(struct h_net *net, uint64_t id, bool cut)
{
    for (uint64_t o = 1; o <= H_MAX_NODES; o++) {
        net->cut[id][o] = cut;
        net->cut[o][id] = cut;
    }
}

static void h_heal(struct h_net *net)
{
    memset(net->cut, 0, sizeof net->cut);
}

/* The leader of the highest term among up nodes, or 0. */
static uint64_t h_leader(struct h_net *net)
{
    uint64_t best = 0, best_term = 0;
    for (uint64_t id = 1; id <= net->n; id++) {
        struct h_node *nd = h_node(net, id);
        if (nd->up && raft_role(nd->r) == RAFT_LEADER && raft_term(nd->r) >= best_term) {
            best = id;
            best_term = raft_term(nd->r);
        }
    }
    return best;
}

static uint64_t h_elect(struct h_net *net, uint64_t id)
{
    int rc = raft_campaign(h_node(net, id)->r);
    NX_ASSERT(rc == NX_OK);
    h_settle(net);
    return h_leader(net);
}

static int h_propose(struct h_net *net, uint64_t id, const char *s)
{
    uint64_t idx;
    int rc = raft_propose(h_node(net, id)->r, s, strlen(s), &idx);
    h_settle(net);
    return rc;
}

#endif
