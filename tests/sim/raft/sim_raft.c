/*
 * sim_raft.c - seeded deterministic simulation of Raft clusters.
 *
 * One seed is one run: 3 or 5 voters plus 0-2 learners, a virtual clock in
 * milliseconds, and a network that loses, duplicates, delays and reorders
 * messages and goes through symmetric, asymmetric and partial partitions.
 * Nodes crash (sometimes between persisting a ready and sending it, or
 * between a leader's early sends and its write) and
 * restart from their raft_mem storage; their clocks stall and then burst.
 * Clients put, get and delete on a tiny key space through the leader (gets by
 * ReadIndex or through the log) and record an invoke/return history. The
 * leader now and then changes membership or hands over leadership, and nodes
 * compact their logs into snapshots.
 *
 * After every step the run checks: election safety (one leader per term),
 * state machine safety (every node applies the same entry at an index),
 * applied index moves by one (or jumps forward to an installed snapshot; it
 * goes back only on restart, to the stored snapshot, and is replayed), durable
 * term never goes back and a durable vote never changes within a term. Every
 * few steps: log matching across all pairs of nodes. On every election:
 * leader completeness. At the end: a liveness phase heals every fault and
 * requires a leader and the commit of fresh proposals on every member, then
 * the client history is checked for linearizability (tests/lin).
 *
 * Every message goes through raft_msg_encode/raft_msg_decode.
 *
 *   NX_SIM_SEED=123 sim_raft   replays one seed (NX_SIM_TRACE=1: print events;
 *                              NX_SIM_HISTORY=FILE: write the client history for lin_check)
 *   NX_SIM_SEEDS=N sim_raft    runs seeds 1..N
 *   NX_SIM_QUICK=1             fewer seeds (also the default in ASan builds)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/raft.h"
#include "tests/lin/lin.h"

#define SIM_MAX_NODES 7
#define SIM_KEYS 3
#define SIM_CLIENTS 4
#define SIM_TICK_MS 10
#define SIM_MAX_QUEUE 50000
#define SIM_SAFETY_MS 10000
#define SIM_LIVENESS_MS 8000
#define SIM_OP_TIMEOUT_MS 700
#define SIM_CMD_BYTES 18
#define SIM_COMPACT_GAP 40
#define SIM_DEFAULT_SEEDS 1000
#define SIM_QUICK_SEEDS 100

/* ASan/UBSan builds run the quick set by default: they are about ten times slower. */
#if defined(__SANITIZE_ADDRESS__)
#define SIM_SANITIZED 1
#else
#define SIM_SANITIZED 0
#endif

struct sim_msg {
    uint64_t at;
    uint64_t to;
    size_t len;
    uint8_t *bytes;
    bool corrupt; /* a byte was changed in flight: the decoder must refuse it */
};

struct node {
    uint64_t id;
    bool up;
    struct raft *r;
    struct raft_mem *mem;
    struct raft_config cfg;
    int64_t kv[SIM_KEYS];
    uint64_t applied;
    uint64_t next_tick_ms;
    uint64_t stall_until_ms;
    uint64_t restart_at_ms;
    uint64_t crash_at_ms; /* a crash planned soon after winning an election */
    uint64_t durable_term;
    uint64_t durable_vote;
    /* durable state machine (when the seed uses one): synced with every apply */
    bool sm_valid;
    uint64_t sm_applied;
    int64_t sm_kv[SIM_KEYS];
    uint64_t leader_term;
};

enum client_state { C_IDLE, C_PROPOSED, C_READ_WAIT, C_READ_APPLY };

struct client {
    enum client_state st;
    uint64_t next_at;
    struct lin_op op;
    uint64_t op_id;
    uint64_t node;
    uint64_t index;
    uint64_t read_index;
    uint64_t deadline;
    bool timed_out; /* the last op got no answer: find the leader again */
};

struct sim {
    uint64_t seed;
    struct nx_rng rng;
    bool trace;
    uint64_t now;
    uint32_t n_nodes;
    uint32_t n_voters;
    struct node nodes[SIM_MAX_NODES + 1];
    bool cut[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];
    uint32_t loss_pct;
    uint32_t dup_pct;
    uint32_t max_delay_ms;
    uint32_t corrupt_pm; /* messages corrupted in flight, per mille */
    bool durable_sm;     /* the host keeps its state machine on disk (boot.applied) */
    bool faults;
    struct sim_msg *queue;
    size_t n_queue;
    /* global record of what was applied at each index (state machine safety) */
    uint64_t *c_term;
    uint32_t *c_hash;
    uint64_t *c_seen_term; /* lowest current term of a node applying it: >= its commit term */
    size_t c_cap;
    uint64_t c_max;
    uint64_t *term_leader;
    size_t term_cap;
    struct client clients[SIM_CLIENTS];
    uint64_t next_op_id;
    struct lin_history hist;
    uint64_t liveness_ids[3];
    char failure[1024];
    bool failed;
    uint64_t digest; /* of the history and counters: equal runs, equal digests */
    /* counters */
    uint64_t msgs_sent, msgs_delivered, crashes, snapshots, elections, conf_changes, ops_ok;
};

static void sim_fail(struct sim *s, const char *fmt, ...) NX_PRINTF(2, 3);
static void sim_fail(struct sim *s, const char *fmt, ...)
{
    if (s->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->failure, sizeof s->failure, fmt, ap);
    va_end(ap);
    s->failed = true;
}

static void trace(struct sim *s, const char *fmt, ...) NX_PRINTF(2, 3);
static void trace(struct sim *s, const char *fmt, ...)
{
    if (!s->trace)
        return;
    va_list ap;
    va_start(ap, fmt);
    printf("t=%llu ", (unsigned long long)s->now);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static uint64_t rnd(struct sim *s, uint64_t bound)
{
    return nx_rng_below(&s->rng, bound);
}
static bool chance(struct sim *s, uint32_t per_mille)
{
    return rnd(s, 1000) < per_mille;
}

static uint32_t fnv(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* ---- commands and snapshots --------------------------------------------- */

static void cmd_encode(uint8_t *b, uint64_t op_id, uint8_t kind, uint8_t key, int64_t value)
{
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(op_id >> (8 * i));
    b[8] = kind;
    b[9] = key;
    for (int i = 0; i < 8; i++)
        b[10 + i] = (uint8_t)((uint64_t)value >> (8 * i));
}

static bool cmd_decode(const struct raft_entry *e, uint64_t *op_id, uint8_t *kind, uint8_t *key,
                       int64_t *value)
{
    if (e->type != RAFT_ENTRY_NORMAL || e->len != SIM_CMD_BYTES)
        return false;
    uint64_t id = 0, v = 0;
    for (int i = 0; i < 8; i++) {
        id |= (uint64_t)e->data[i] << (8 * i);
        v |= (uint64_t)e->data[10 + i] << (8 * i);
    }
    *op_id = id;
    *kind = e->data[8];
    *key = e->data[9];
    *value = (int64_t)v;
    return true;
}

/* ---- nodes --------------------------------------------------------------- */

static void node_start(struct sim *s, struct node *nd)
{
    struct raft_boot boot;
    raft_mem_boot(nd->mem, &boot);
    /*
     * A durable state machine resumes where it was, unless a snapshot stored by a
     * ready was not installed before a crash: then the snapshot wins.
     */
    bool resume = s->durable_sm && nd->sm_valid && nd->sm_applied >= boot.snapshot.index;
    if (resume)
        boot.applied = nd->sm_applied;
    int rc = raft_create(&nd->cfg, &boot, &nd->r);
    if (rc != NX_OK) {
        sim_fail(s, "node %llu: restart failed: %s", (unsigned long long)nd->id, nx_strerror(rc));
        return;
    }
    nd->up = true;
    /* The state machine is volatile: rebuilt from the stored snapshot, then replayed. */
    for (int k = 0; k < SIM_KEYS; k++)
        nd->kv[k] = LIN_ABSENT;
    if (boot.snapshot.len == SIM_KEYS * 8)
        memcpy(nd->kv, boot.snapshot.data, sizeof nd->kv);
    nd->applied = boot.snapshot.index;
    if (resume) {
        memcpy(nd->kv, nd->sm_kv, sizeof nd->kv);
        nd->applied = nd->sm_applied;
    }
    nd->next_tick_ms = s->now + 1 + rnd(s, SIM_TICK_MS);
    nd->stall_until_ms = 0;
    nd->crash_at_ms = 0;
    nd->leader_term = 0;
}

static void client_unknown(struct sim *s, struct client *c)
{
    c->op.outcome = LIN_UNKNOWN;
    c->timed_out = true;
    if (lin_history_add(&s->hist, &c->op) != NX_OK)
        sim_fail(s, "history full");
    c->st = C_IDLE;
    c->next_at = s->now + rnd(s, 20);
}

static void node_crash(struct sim *s, struct node *nd)
{
    trace(s, "crash node %llu", (unsigned long long)nd->id);
    raft_destroy(nd->r);
    nd->r = NULL;
    nd->up = false;
    nd->restart_at_ms = s->now + 20 + rnd(s, 400);
    s->crashes++;
    for (int i = 0; i < SIM_CLIENTS; i++) {
        struct client *c = &s->clients[i];
        if (c->st != C_IDLE && c->node == nd->id)
            client_unknown(s, c);
    }
}

/* ---- network ------------------------------------------------------------- */

static void net_send(struct sim *s, const struct raft_msg *m)
{
    s->msgs_sent++;
    if (m->to == 0 || m->to > s->n_nodes)
        return;
    if (s->faults && (s->cut[m->from][m->to] || chance(s, s->loss_pct * 10)))
        return;
    size_t cap = raft_msg_encoded_size(m);
    uint8_t *buf = malloc(cap);
    long n = raft_msg_encode(m, buf, cap);
    if (n <= 0) {
        sim_fail(s, "encode failed: %ld", n);
        free(buf);
        return;
    }
    int copies = (s->faults && chance(s, s->dup_pct * 10)) ? 2 : 1;
    for (int c = 0; c < copies && s->n_queue < SIM_MAX_QUEUE; c++) {
        uint8_t *b = malloc((size_t)n);
        memcpy(b, buf, (size_t)n);
        uint64_t delay = 1 + rnd(s, s->max_delay_ms);
        if (s->faults && chance(s, 10))
            delay += 100 + rnd(s, 200); /* a straggler */
        bool corrupt = s->faults && chance(s, s->corrupt_pm);
        if (corrupt)
            b[rnd(s, (uint64_t)n)] ^= (uint8_t)(1 + rnd(s, 255));
        s->queue[s->n_queue++] = (struct sim_msg){s->now + delay, m->to, (size_t)n, b, corrupt};
    }
    free(buf);
}

static void net_deliver(struct sim *s)
{
    for (size_t i = 0; i < s->n_queue;) {
        struct sim_msg qm = s->queue[i];
        if (qm.at > s->now) {
            i++;
            continue;
        }
        s->queue[i] = s->queue[--s->n_queue];
        struct node *nd = &s->nodes[qm.to];
        struct raft_msg m;
        int drc = raft_msg_decode(qm.bytes, qm.len, &m);
        if (qm.corrupt) {
            if (drc == NX_OK)
                sim_fail(s, "a message corrupted in flight was accepted");
        } else if (drc != NX_OK) {
            sim_fail(s, "decode of an encoded message failed");
        } else if (nd->up && !(s->faults && s->cut[m.from][m.to])) {
            s->msgs_delivered++;
            if (raft_step(nd->r, &m) != NX_OK)
                sim_fail(s, "step refused a well-formed message");
        }
        raft_msg_clear(&m);
        free(qm.bytes);
    }
}

/* ---- invariants ---------------------------------------------------------- */

static void record_applied(struct sim *s, struct node *nd, const struct raft_entry *e)
{
    if (e->index >= s->c_cap) {
        size_t cap = s->c_cap ? s->c_cap * 2 : 1024;
        while (cap <= e->index)
            cap *= 2;
        s->c_term = realloc(s->c_term, cap * sizeof *s->c_term);
        s->c_hash = realloc(s->c_hash, cap * sizeof *s->c_hash);
        s->c_seen_term = realloc(s->c_seen_term, cap * sizeof *s->c_seen_term);
        memset(s->c_term + s->c_cap, 0, (cap - s->c_cap) * sizeof *s->c_term);
        s->c_cap = cap;
    }
    uint32_t h = fnv(e->data, e->len) ^ e->type;
    uint64_t seen = raft_term(nd->r);
    if (s->c_term[e->index] == 0) {
        s->c_term[e->index] = e->term;
        s->c_hash[e->index] = h;
        s->c_seen_term[e->index] = seen;
        if (e->index > s->c_max)
            s->c_max = e->index;
    } else if (s->c_term[e->index] == e->term && s->c_hash[e->index] == h) {
        if (seen < s->c_seen_term[e->index])
            s->c_seen_term[e->index] = seen;
    } else {
        sim_fail(s,
                 "state machine safety: node %llu applied term %llu at index %llu, another "
                 "node applied term %llu",
                 (unsigned long long)nd->id, (unsigned long long)e->term,
                 (unsigned long long)e->index, (unsigned long long)s->c_term[e->index]);
    }
}

static void check_leader_completeness(struct sim *s, struct node *nd)
{
    /* Entries committed in an earlier term must be in this leader's log. */
    uint64_t first = raft_first_index(nd->r), lterm = raft_term(nd->r);
    for (uint64_t i = first; i <= s->c_max; i++) {
        uint64_t t;
        if (s->c_term[i] == 0 || s->c_seen_term[i] >= lterm)
            continue;
        if (!raft_entry_term(nd->r, i, &t) || t != s->c_term[i]) {
            sim_fail(s, "leader completeness: leader %llu of term %llu lacks committed index %llu",
                     (unsigned long long)nd->id, (unsigned long long)raft_term(nd->r),
                     (unsigned long long)i);
            return;
        }
    }
}

static void check_election_safety(struct sim *s)
{
    for (uint32_t id = 1; id <= s->n_nodes; id++) {
        struct node *nd = &s->nodes[id];
        if (!nd->up || raft_role(nd->r) != RAFT_LEADER)
            continue;
        uint64_t term = raft_term(nd->r);
        if (term >= s->term_cap) {
            size_t cap = s->term_cap ? s->term_cap * 2 : 256;
            while (cap <= term)
                cap *= 2;
            s->term_leader = realloc(s->term_leader, cap * sizeof *s->term_leader);
            memset(s->term_leader + s->term_cap, 0, (cap - s->term_cap) * sizeof(uint64_t));
            s->term_cap = cap;
        }
        if (s->term_leader[term] == 0) {
            s->term_leader[term] = id;
            s->elections++;
            trace(s, "leader %u term %llu", id, (unsigned long long)term);
        } else if (s->term_leader[term] != id) {
            sim_fail(s, "election safety: nodes %llu and %u both lead term %llu",
                     (unsigned long long)s->term_leader[term], id, (unsigned long long)term);
        }
        if (nd->leader_term != term) {
            nd->leader_term = term;
            check_leader_completeness(s, nd);
            /* Fresh leaders that die with half-replicated entries make Figure 8 cases. */
            if (s->faults && chance(s, 150))
                nd->crash_at_ms = s->now + 1 + rnd(s, 40);
        }
    }
}

static void check_log_matching(struct sim *s)
{
    for (uint32_t a = 1; a <= s->n_nodes; a++) {
        for (uint32_t b = a + 1; b <= s->n_nodes; b++) {
            struct node *x = &s->nodes[a], *y = &s->nodes[b];
            if (!x->up || !y->up)
                continue;
            uint64_t lo = raft_first_index(x->r), lo2 = raft_first_index(y->r);
            uint64_t hi = raft_last_index(x->r), hi2 = raft_last_index(y->r);
            if (lo2 > lo)
                lo = lo2;
            if (hi2 < hi)
                hi = hi2;
            bool matched = false;
            for (uint64_t i = hi; i >= lo && i > 0; i--) {
                const struct raft_entry *ex = raft_entry_at(x->r, i);
                const struct raft_entry *ey = raft_entry_at(y->r, i);
                if (!matched && ex->term == ey->term)
                    matched = true;
                if (matched && (ex->term != ey->term || ex->len != ey->len ||
                                (ex->len && memcmp(ex->data, ey->data, ex->len) != 0))) {
                    sim_fail(s,
                             "log matching: nodes %u and %u differ at index %llu below a "
                             "common entry",
                             a, b, (unsigned long long)i);
                    return;
                }
            }
        }
    }
}

/* ---- clients -------------------------------------------------------------- */

static void client_complete(struct sim *s, struct client *c, enum lin_outcome outcome,
                            int64_t value)
{
    c->op.outcome = outcome;
    c->op.return_us = s->now * 1000;
    if (c->op.kind == LIN_GET)
        c->op.value = value;
    if (outcome == LIN_OK)
        s->ops_ok++;
    if (outcome != LIN_FAIL && lin_history_add(&s->hist, &c->op) != NX_OK)
        sim_fail(s, "history full");
    c->st = C_IDLE;
    c->next_at = s->now + rnd(s, 20);
}

static void on_apply(struct sim *s, struct node *nd, const struct raft_entry *e)
{
    uint64_t op_id = 0;
    uint8_t kind = 0, key = 0;
    int64_t value = 0;
    bool is_cmd = cmd_decode(e, &op_id, &kind, &key, &value);
    int64_t before = is_cmd && key < SIM_KEYS ? nd->kv[key] : LIN_ABSENT;
    if (is_cmd && key < SIM_KEYS) {
        if (kind == LIN_PUT)
            nd->kv[key] = value;
        else if (kind == LIN_DELETE)
            nd->kv[key] = LIN_ABSENT;
    }
    for (int i = 0; i < SIM_CLIENTS; i++) {
        struct client *c = &s->clients[i];
        if (c->st != C_PROPOSED || c->node != nd->id || c->index != e->index)
            continue;
        if (is_cmd && op_id == c->op_id)
            client_complete(s, c, LIN_OK, before);
        else
            client_complete(s, c, LIN_FAIL, 0); /* another entry won the index */
    }
}

/*
 * Where a client sends its next op: usually the node it used last if that one
 * still thinks it leads; after a timeout, or now and then, it asks a random
 * node who leads (so clients spread over old and new leaders in a partition).
 */
static struct node *pick_leader(struct sim *s, struct client *c)
{
    struct node *nd = &s->nodes[c->node ? c->node : 1 + rnd(s, s->n_nodes)];
    if (!c->timed_out && nd->up && raft_role(nd->r) == RAFT_LEADER && !chance(s, 200))
        return nd;
    c->timed_out = false;
    nd = &s->nodes[1 + rnd(s, s->n_nodes)];
    if (nd->up && raft_leader(nd->r) && raft_leader(nd->r) <= s->n_nodes)
        nd = &s->nodes[raft_leader(nd->r)];
    return nd;
}

static void client_step(struct sim *s, struct client *c, uint32_t ci, bool issue)
{
    if (c->st != C_IDLE && s->now >= c->deadline) {
        client_unknown(s, c);
        return;
    }
    if (c->st == C_READ_APPLY) {
        struct node *nd = &s->nodes[c->node];
        if (nd->applied >= c->read_index)
            client_complete(s, c, LIN_OK, nd->kv[c->op.key]);
        return;
    }
    if (c->st != C_IDLE || !issue || s->now < c->next_at)
        return;
    struct node *nd = pick_leader(s, c);
    c->node = nd->id;
    if (!nd->up)
        return;
    uint64_t op_id = ++s->next_op_id;
    enum lin_kind kind = (enum lin_kind)rnd(s, 3);
    uint8_t key = (uint8_t)rnd(s, SIM_KEYS);
    c->op = (struct lin_op){.client = ci,
                            .kind = kind,
                            .key = key,
                            .value = (int64_t)op_id,
                            .invoke_us = s->now * 1000};
    c->op_id = op_id;
    c->deadline = s->now + SIM_OP_TIMEOUT_MS;
    if (kind == LIN_GET && chance(s, 500)) {
        if (raft_read_index(nd->r, op_id) == NX_OK)
            c->st = C_READ_WAIT;
        else
            c->next_at = s->now + 5;
        return;
    }
    uint8_t cmd[SIM_CMD_BYTES];
    cmd_encode(cmd, op_id, (uint8_t)kind, key, (int64_t)op_id);
    if (raft_propose(nd->r, cmd, sizeof cmd, &c->index) == NX_OK)
        c->st = C_PROPOSED;
    else
        c->next_at = s->now + 5;
}

/* ---- the host loop for one node ------------------------------------------ */

static void process_node(struct sim *s, struct node *nd)
{
    int guard = 0;
    while (nd->up && raft_has_ready(nd->r) && guard++ < 64 && !s->failed) {
        struct raft_ready rd;
        raft_ready(nd->r, &rd);
        /* 0. a leader's appends and heartbeats leave before its own write */
        for (size_t i = 0; i < rd.n_msgs_early; i++)
            net_send(s, &rd.msgs[i]);
        if (s->faults && rd.n_msgs_early > 0 && chance(s, 3)) {
            /* crash after sending early, before the write: the entries are lost here */
            node_crash(s, nd);
            return;
        }
        /* 1. persist */
        if (rd.has_hard_state) {
            const struct raft_hard_state *hs = &rd.hard_state;
            if (hs->term < nd->durable_term)
                sim_fail(s, "node %llu: durable term went back", (unsigned long long)nd->id);
            if (hs->term == nd->durable_term && nd->durable_vote && hs->vote != nd->durable_vote)
                sim_fail(s, "node %llu: voted twice in term %llu", (unsigned long long)nd->id,
                         (unsigned long long)hs->term);
            nd->durable_term = hs->term;
            nd->durable_vote = hs->vote;
        }
        if (raft_mem_persist(nd->mem, &rd) != NX_OK)
            sim_fail(s, "persist failed");
        if (s->faults && chance(s, 2)) {
            /* crash after the synced write, before anything is sent or applied */
            raft_advance(nd->r, &rd);
            node_crash(s, nd);
            return;
        }
        for (size_t i = 0; i < rd.n_events && s->trace; i++)
            trace(s, "node %llu event=%s term=%llu a=%llu b=%llu", (unsigned long long)nd->id,
                  raft_event_name(rd.events[i].type), (unsigned long long)rd.events[i].term,
                  (unsigned long long)rd.events[i].a, (unsigned long long)rd.events[i].b);
        /* 2. send the rest */
        for (size_t i = rd.n_msgs_early; i < rd.n_msgs; i++)
            net_send(s, &rd.msgs[i]);
        /* 3. apply */
        if (rd.snapshot) {
            if (rd.snapshot->index <= nd->applied)
                sim_fail(s, "node %llu: snapshot %llu not ahead of applied %llu",
                         (unsigned long long)nd->id, (unsigned long long)rd.snapshot->index,
                         (unsigned long long)nd->applied);
            if (rd.snapshot->len == SIM_KEYS * 8)
                memcpy(nd->kv, rd.snapshot->data, sizeof nd->kv);
            else
                sim_fail(s, "snapshot of %u bytes", rd.snapshot->len);
            nd->applied = rd.snapshot->index;
            s->snapshots++;
            for (int i = 0; i < SIM_CLIENTS; i++) {
                struct client *c = &s->clients[i];
                if (c->st == C_PROPOSED && c->node == nd->id && c->index <= nd->applied)
                    client_unknown(s, c); /* skipped over by the snapshot */
            }
        }
        for (size_t i = 0; i < rd.n_committed; i++) {
            const struct raft_entry *e = &rd.committed[i];
            if (e->index != nd->applied + 1) {
                sim_fail(s, "node %llu: applied %llu after %llu", (unsigned long long)nd->id,
                         (unsigned long long)e->index, (unsigned long long)nd->applied);
                break;
            }
            record_applied(s, nd, e);
            nd->applied = e->index;
            on_apply(s, nd, e);
        }
        for (size_t i = 0; i < rd.n_reads; i++) {
            for (int k = 0; k < SIM_CLIENTS; k++) {
                struct client *c = &s->clients[k];
                if (c->st == C_READ_WAIT && c->node == nd->id && c->op_id == rd.reads[i].ctx) {
                    c->read_index = rd.reads[i].index;
                    c->st = C_READ_APPLY;
                }
            }
        }
        if (s->durable_sm) {
            memcpy(nd->sm_kv, nd->kv, sizeof nd->kv);
            nd->sm_applied = nd->applied;
            nd->sm_valid = true;
        }
        /* 4. advance */
        raft_advance(nd->r, &rd);
        if (nd->applied >= raft_first_index(nd->r) + SIM_COMPACT_GAP && chance(s, 300)) {
            uint8_t snap[SIM_KEYS * 8];
            memcpy(snap, nd->kv, sizeof snap);
            if (raft_compact(nd->r, nd->applied, snap, sizeof snap) != NX_OK ||
                raft_mem_compact(nd->mem, nd->applied, snap, sizeof snap) != NX_OK)
                sim_fail(s, "compaction failed");
        }
    }
}

/* ---- faults ---------------------------------------------------------------- */

static void set_network(struct sim *s)
{
    memset(s->cut, 0, sizeof s->cut);
    uint32_t n = s->n_nodes;
    switch (rnd(s, 6)) {
    case 0:
        trace(s, "network healed");
        break;
    case 1: { /* symmetric split */
        uint64_t side = rnd(s, 1u << n);
        for (uint32_t a = 1; a <= n; a++)
            for (uint32_t b = 1; b <= n; b++)
                s->cut[a][b] = ((side >> (a - 1)) & 1) != ((side >> (b - 1)) & 1);
        trace(s, "split %llx", (unsigned long long)side);
        break;
    }
    case 2: { /* asymmetric: one node can send but not receive, or the reverse */
        uint32_t x = 1 + (uint32_t)rnd(s, n);
        bool out = chance(s, 500);
        for (uint32_t o = 1; o <= n; o++) {
            if (out)
                s->cut[x][o] = true;
            else
                s->cut[o][x] = true;
        }
        trace(s, "asymmetric node %u %s", x, out ? "mute" : "deaf");
        break;
    }
    case 3: /* partial: random links */
        for (uint32_t a = 1; a <= n; a++)
            for (uint32_t b = 1; b <= n; b++)
                s->cut[a][b] = chance(s, 250);
        trace(s, "partial");
        break;
    case 4: { /* the leader keeps a minority: the classic stale-leader case */
        struct node *l = NULL;
        for (uint32_t x = 1; x <= n; x++)
            if (s->nodes[x].up && raft_role(s->nodes[x].r) == RAFT_LEADER)
                l = &s->nodes[x];
        if (!l)
            break;
        uint64_t side = 1ull << (l->id - 1);
        uint32_t want = (s->n_voters - 1) / 2; /* companions: leader + them < quorum */
        for (uint32_t x = 1; x <= n && want > 0; x++) {
            if (x != l->id && chance(s, 500)) {
                side |= 1ull << (x - 1);
                want--;
            }
        }
        for (uint32_t a = 1; a <= n; a++)
            for (uint32_t b = 1; b <= n; b++)
                s->cut[a][b] = ((side >> (a - 1)) & 1) != ((side >> (b - 1)) & 1);
        trace(s, "leader %llu kept in minority %llx", (unsigned long long)l->id,
              (unsigned long long)side);
        break;
    }
    default: { /* isolate the leader */
        for (uint32_t x = 1; x <= n; x++) {
            if (s->nodes[x].up && raft_role(s->nodes[x].r) == RAFT_LEADER) {
                for (uint32_t o = 1; o <= n; o++)
                    s->cut[x][o] = s->cut[o][x] = true;
                trace(s, "isolate leader %u", x);
            }
        }
        break;
    }
    }
    s->loss_pct = (uint32_t)rnd(s, 10);
    s->dup_pct = (uint32_t)rnd(s, 5);
    s->max_delay_ms = 1 + (uint32_t)rnd(s, 30);
}

static struct node *current_leader(struct sim *s)
{
    struct node *best = NULL;
    for (uint32_t id = 1; id <= s->n_nodes; id++) {
        struct node *nd = &s->nodes[id];
        if (nd->up && raft_role(nd->r) == RAFT_LEADER &&
            (!best || raft_term(nd->r) > raft_term(best->r)))
            best = nd;
    }
    return best;
}

static void membership_change(struct sim *s)
{
    struct node *l = current_leader(s);
    if (!l)
        return;
    const struct raft_conf *c = raft_current_conf(l->r);
    int rc = NX_ERR_AGAIN;
    uint64_t who = 0;
    const char *what = "";
    if (c->n_learners > 0 && chance(s, 500)) {
        who = c->learners[rnd(s, c->n_learners)];
        struct raft_progress p;
        if (raft_progress(l->r, who, &p) == NX_OK && p.match + 5 >= raft_last_index(l->r)) {
            rc = raft_propose_conf_change(l->r, RAFT_CONF_PROMOTE, who, NULL);
            what = "promote";
        }
    } else if (c->n_voters > 3 && chance(s, 500)) {
        who = c->voters[rnd(s, c->n_voters)];
        rc = raft_propose_conf_change(l->r, RAFT_CONF_REMOVE, who, NULL);
        what = "remove";
    } else {
        for (uint32_t id = 1; id <= s->n_nodes; id++) {
            if (!raft_conf_is_voter(c, id) && !raft_conf_is_learner(c, id)) {
                who = id;
                rc = raft_propose_conf_change(l->r, RAFT_CONF_ADD_LEARNER, id, NULL);
                what = "add learner";
                break;
            }
        }
    }
    if (rc == NX_OK) {
        s->conf_changes++;
        trace(s, "conf change: %s %llu", what, (unsigned long long)who);
    }
}

static void inject_faults(struct sim *s)
{
    if (chance(s, 4))
        set_network(s);
    if (chance(s, 3)) {
        struct node *nd = &s->nodes[1 + rnd(s, s->n_nodes)];
        if (nd->up)
            node_crash(s, nd);
    }
    if (chance(s, 3)) {
        struct node *nd = &s->nodes[1 + rnd(s, s->n_nodes)];
        if (nd->up && nd->stall_until_ms <= s->now) {
            nd->stall_until_ms = s->now + 50 + rnd(s, 400);
            trace(s, "clock stall node %llu", (unsigned long long)nd->id);
        }
    }
    if (chance(s, 2))
        membership_change(s);
    if (chance(s, 1)) {
        struct node *l = current_leader(s);
        if (l) {
            const struct raft_conf *c = raft_current_conf(l->r);
            if (c->n_voters > 1)
                (void)!raft_transfer_leader(l->r, c->voters[rnd(s, c->n_voters)]);
        }
    }
}

/* ---- one step of virtual time --------------------------------------------- */

static void step(struct sim *s, bool issue)
{
    s->now++;
    net_deliver(s);
    for (uint32_t id = 1; id <= s->n_nodes; id++) {
        struct node *nd = &s->nodes[id];
        if (!nd->up) {
            if (nd->restart_at_ms && s->now >= nd->restart_at_ms) {
                trace(s, "restart node %u", id);
                nd->restart_at_ms = 0;
                node_start(s, nd);
            }
            continue;
        }
        if (nd->crash_at_ms && s->now >= nd->crash_at_ms) {
            nd->crash_at_ms = 0;
            if (s->faults) {
                node_crash(s, nd);
                continue;
            }
        }
        if (nd->stall_until_ms > s->now)
            continue;
        /* a stalled clock catches up in one burst */
        while (nd->next_tick_ms <= s->now) {
            raft_tick(nd->r);
            nd->next_tick_ms += SIM_TICK_MS;
        }
    }
    for (int i = 0; i < SIM_CLIENTS; i++)
        client_step(s, &s->clients[i], (uint32_t)i, issue);
    if (s->faults)
        inject_faults(s);
    for (uint32_t id = 1; id <= s->n_nodes; id++)
        process_node(s, &s->nodes[id]);
    check_election_safety(s);
    if (s->now % 16 == 0)
        check_log_matching(s);
}

/* ---- one run ---------------------------------------------------------------- */

static void sim_free(struct sim *s)
{
    for (uint32_t id = 1; id <= s->n_nodes; id++) {
        if (s->nodes[id].up)
            raft_destroy(s->nodes[id].r);
        raft_mem_destroy(s->nodes[id].mem);
    }
    for (size_t i = 0; i < s->n_queue; i++)
        free(s->queue[i].bytes);
    free(s->queue);
    free(s->c_term);
    free(s->c_hash);
    free(s->c_seen_term);
    free(s->term_leader);
    lin_history_free(&s->hist);
}

/* Liveness: with every fault healed, a leader commits fresh proposals on every member. */
static bool liveness(struct sim *s)
{
    s->faults = false;
    memset(s->cut, 0, sizeof s->cut);
    s->max_delay_ms = 5;
    for (uint32_t id = 1; id <= s->n_nodes; id++) {
        struct node *nd = &s->nodes[id];
        nd->stall_until_ms = 0;
        if (!nd->up) {
            nd->restart_at_ms = 0;
            node_start(s, nd);
        }
    }
    uint64_t deadline = s->now + SIM_LIVENESS_MS;
    int proposed = 0;
    uint64_t target[3] = {0};
    uint64_t proposed_term = 0;
    while (s->now < deadline && !s->failed) {
        step(s, false);
        struct node *l = current_leader(s);
        if (!l)
            continue;
        if (proposed == 3 && raft_term(l->r) != proposed_term &&
            raft_commit_index(l->r) < target[2])
            proposed = 0; /* leadership moved before they committed: they may be lost */
        if (proposed < 3) {
            proposed_term = raft_term(l->r);
            uint8_t cmd[SIM_CMD_BYTES];
            cmd_encode(cmd, ++s->next_op_id, 99, 0, 0);
            if (raft_propose(l->r, cmd, sizeof cmd, &target[proposed]) == NX_OK) {
                s->liveness_ids[proposed] = s->next_op_id;
                proposed++;
            }
            continue;
        }
        /* done when every member of the leader's config applied the proposals */
        const struct raft_conf *c = raft_current_conf(l->r);
        bool all = raft_commit_index(l->r) >= target[2];
        for (uint32_t i = 0; i < c->n_voters + c->n_learners && all; i++) {
            uint64_t id = i < c->n_voters ? c->voters[i] : c->learners[i - c->n_voters];
            if (id <= s->n_nodes && s->nodes[id].applied < target[2])
                all = false;
        }
        bool clients_done = true;
        for (int i = 0; i < SIM_CLIENTS; i++)
            clients_done &= s->clients[i].st == C_IDLE;
        if (all && clients_done) {
            /* the targets may have been overwritten if leadership moved: check contents */
            for (int k = 0; k < 3; k++) {
                const struct raft_entry *e = raft_entry_at(l->r, target[k]);
                uint64_t id;
                uint8_t kind, key;
                int64_t v;
                if (e && (!cmd_decode(e, &id, &kind, &key, &v) || id != s->liveness_ids[k])) {
                    proposed = 0; /* lost to a leader change: propose again */
                    break;
                }
            }
            if (proposed == 3)
                return true;
        }
    }
    if (!s->failed) {
        struct node *l = current_leader(s);
        char nodes[400] = "";
        size_t off = 0;
        for (uint32_t id = 1; id <= s->n_nodes && off < sizeof nodes; id++) {
            struct node *nd = &s->nodes[id];
            off += (size_t)snprintf(
                nodes + off, sizeof nodes - off, " [%u %s t%llu commit %llu applied %llu]", id,
                raft_role_name(raft_role(nd->r)), (unsigned long long)raft_term(nd->r),
                (unsigned long long)raft_commit_index(nd->r), (unsigned long long)nd->applied);
        }
        if (l) {
            for (uint32_t id = 1; id <= s->n_nodes && off < sizeof nodes; id++) {
                struct raft_progress p;
                if (raft_progress(l->r, id, &p) == NX_OK)
                    off += (size_t)snprintf(
                        nodes + off, sizeof nodes - off, " {%u match %llu next %llu infl %u}", id,
                        (unsigned long long)p.match, (unsigned long long)p.next, p.inflight_msgs);
            }
        }
        int busy = 0;
        for (int i = 0; i < SIM_CLIENTS; i++)
            busy += s->clients[i].st != C_IDLE;
        sim_fail(s,
                 "liveness: after %d ms of healed network: leader %llu, proposals %d (last "
                 "%llu), busy clients %d, nodes%s",
                 SIM_LIVENESS_MS, l ? (unsigned long long)l->id : 0ull, proposed,
                 (unsigned long long)target[2], busy, nodes);
    }
    return false;
}

static bool single_seed_mode; /* NX_SIM_SEED given: one run, extra outputs allowed */

/* Writes the client history in the text format of tests/lin/lin.h (for lin_check). */
static void write_history(const struct sim *s, const char *path)
{
    static const char *kinds[] = {"put", "get", "delete"};
    static const char *outcomes[] = {"ok", "fail", "unknown"};
    FILE *fp = fopen(path, "w");
    if (!fp) {
        printf("cannot write %s\n", path);
        return;
    }
    fprintf(fp, "# sim_raft seed %llu: client op key value invoke_us return_us outcome\n",
            (unsigned long long)s->seed);
    for (size_t i = 0; i < s->hist.n; i++) {
        const struct lin_op *op = &s->hist.ops[i];
        char val[32] = "-", ret[32] = "-";
        if (op->value != LIN_ABSENT && op->kind != LIN_DELETE)
            snprintf(val, sizeof val, "v%lld", (long long)op->value);
        if (op->outcome != LIN_UNKNOWN)
            snprintf(ret, sizeof ret, "%llu", (unsigned long long)op->return_us);
        fprintf(fp, "%u %s k%llu %s %llu %s %s\n", op->client, kinds[op->kind],
                (unsigned long long)op->key, val, (unsigned long long)op->invoke_us, ret,
                outcomes[op->outcome]);
    }
    fclose(fp);
}

/* Runs one seed; returns true when every check passed. */
static bool run_seed(uint64_t seed, bool trace_on, char *why, size_t why_len, struct sim *out)
{
    struct sim *s = calloc(1, sizeof *s);
    s->seed = seed;
    s->trace = trace_on;
    nx_rng_seed(&s->rng, seed);
    s->queue = calloc(SIM_MAX_QUEUE, sizeof *s->queue);
    lin_history_init(&s->hist);
    s->n_voters = chance(s, 500) ? 3 : 5;
    s->n_nodes = s->n_voters + (uint32_t)rnd(s, 3);
    struct raft_conf boot = {0};
    for (uint32_t i = 1; i <= s->n_nodes; i++) {
        if (i <= s->n_voters)
            boot.voters[boot.n_voters++] = i;
        else
            boot.learners[boot.n_learners++] = i;
    }
    /* One cluster-wide setting, as a deployment would have: mixed settings can livelock. */
    bool pre_vote = !chance(s, 200), check_quorum = !chance(s, 200);
    for (uint32_t id = 1; id <= s->n_nodes; id++) {
        struct node *nd = &s->nodes[id];
        nd->id = id;
        raft_config_default(&nd->cfg, id, seed);
        nd->cfg.pre_vote = pre_vote;
        nd->cfg.check_quorum = check_quorum;
        nd->cfg.max_inflight_msgs = 1 + (uint32_t)rnd(s, 8);
        nd->cfg.max_inflight_bytes = 64 + rnd(s, 4096);
        nd->cfg.max_msg_bytes = 1 + (uint32_t)rnd(s, 200);       /* 1 to 11 commands per append */
        nd->cfg.snapshot_chunk_bytes = 1 + (uint32_t)rnd(s, 32); /* 1 to 24 chunks */
        if (raft_mem_create(&boot, &nd->mem) != NX_OK)
            sim_fail(s, "storage");
        node_start(s, nd);
    }
    s->durable_sm = chance(s, 500);
    s->corrupt_pm = (uint32_t)rnd(s, 3);
    s->faults = true;
    set_network(s);
    while (s->now < SIM_SAFETY_MS && !s->failed)
        step(s, true);
    if (!s->failed)
        (void)liveness(s);
    if (!s->failed)
        check_log_matching(s);
    if (!s->failed) {
        struct lin_result res;
        if (lin_check(&s->hist, 0, &res) != NX_OK)
            sim_fail(s, "linearizability check error");
        else if (!res.linearizable)
            sim_fail(s, "linearizability: %s", res.explanation);
    }
    const char *hist_path = getenv("NX_SIM_HISTORY");
    if (hist_path && *hist_path && single_seed_mode)
        write_history(s, hist_path);
    bool ok = !s->failed;
    if (!ok)
        snprintf(why, why_len, "%s", s->failure);
    uint64_t d = 1469598103934665603ull;
    for (size_t i = 0; i < s->hist.n; i++) {
        const struct lin_op *op = &s->hist.ops[i];
        uint64_t f[6] = {op->client,    (uint64_t)op->kind << 8 | op->outcome,
                         op->key,       (uint64_t)op->value,
                         op->invoke_us, op->return_us};
        for (int k = 0; k < 6; k++)
            d = (d ^ f[k]) * 1099511628211ull;
    }
    d = (d ^ s->msgs_sent ^ (s->msgs_delivered << 20) ^ (s->crashes << 40)) * 1099511628211ull;
    s->digest = d;
    if (out)
        *out = *s;
    sim_free(s);
    free(s);
    return ok;
}

/* ---- cmocka entry --------------------------------------------------------- */

static const char *prog_name = "sim_raft";

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    return strtoull(v, NULL, 10);
}

struct seeds {
    uint64_t first;
    uint64_t count;
};

static void run_seeds(struct seeds *range)
{
    uint64_t failures = 0, ops = 0, elections = 0, crashes = 0, snaps = 0, confs = 0;
    for (uint64_t seed = range->first; seed < range->first + range->count; seed++) {
        char why[1024];
        struct sim st;
        bool ok = run_seed(seed, false, why, sizeof why, &st);
        ops += st.ops_ok;
        elections += st.elections;
        crashes += st.crashes;
        snaps += st.snapshots;
        confs += st.conf_changes;
        if (!ok) {
            failures++;
            printf("seed %llu FAILED: %s\n  replay: NX_SIM_SEED=%llu %s\n",
                   (unsigned long long)seed, why, (unsigned long long)seed, prog_name);
            if (failures >= 5)
                break;
        }
    }
    printf("seeds %llu..%llu: ok ops %llu, elections %llu, crashes %llu, snapshots installed "
           "%llu, membership changes %llu\n",
           (unsigned long long)range->first, (unsigned long long)(range->first + range->count - 1),
           (unsigned long long)ops, (unsigned long long)elections, (unsigned long long)crashes,
           (unsigned long long)snaps, (unsigned long long)confs);
    assert_int_equal(failures, 0);
}

static void same_seed_replays_identically(void **state)
{
    (void)state;
    char why[1024];
    struct sim a, b, c;
    assert_true(run_seed(7, false, why, sizeof why, &a));
    assert_true(run_seed(7, false, why, sizeof why, &b));
    assert_true(run_seed(8, false, why, sizeof why, &c));
    assert_int_equal(a.digest, b.digest);
    assert_int_equal(a.msgs_sent, b.msgs_sent);
    assert_int_not_equal(a.digest, c.digest);
}

static void first_half_of_seeds_safe_live_and_linearizable(void **state)
{
    run_seeds(*state);
}

static void second_half_of_seeds_safe_live_and_linearizable(void **state)
{
    run_seeds(*state);
}

int main(int argc, char **argv)
{
    (void)argc;
    prog_name = argv[0];
    setvbuf(stdout, NULL, _IOLBF, 0);
    uint64_t one = env_u64("NX_SIM_SEED", 0);
    if (one) {
        single_seed_mode = true;
        char why[1024];
        bool ok = run_seed(one, env_u64("NX_SIM_TRACE", 0) != 0, why, sizeof why, NULL);
        printf("seed %llu: %s%s\n", (unsigned long long)one, ok ? "ok" : "FAILED: ", ok ? "" : why);
        return ok ? 0 : 1;
    }
    bool quick = env_u64("NX_SIM_QUICK", 0) != 0 || SIM_SANITIZED;
    uint64_t n = env_u64("NX_SIM_SEEDS", quick ? SIM_QUICK_SEEDS : SIM_DEFAULT_SEEDS);
    uint64_t first = env_u64("NX_SIM_FIRST_SEED", 1);
    struct seeds a = {first, n / 2}, b = {first + n / 2, n - n / 2};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_seed_replays_identically),
        cmocka_unit_test_prestate(first_half_of_seeds_safe_live_and_linearizable, &a),
        cmocka_unit_test_prestate(second_half_of_seeds_safe_live_and_linearizable, &b),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
