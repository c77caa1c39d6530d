/*
 * fuzz_raft.c - libFuzzer harness for raft_msg_decode and raft_step.
 *
 * Each input builds a fresh 3-node in-memory cluster (raft_mem storage, ids
 * 1..3, deterministic seeds), optionally elects node 1 and commits a few
 * entries, then feeds the input's messages to the nodes one at a time; after
 * each one the cluster runs (readies persisted, messages delivered through
 * the codec) for a bounded number of rounds. data[0] is a flags byte:
 *
 *   bit0  structured: the messages are described field by field (below) and
 *         encoded here, so the fuzzer reaches raft_step's logic without
 *         fighting the CRC; clear: the messages are raw wire bytes
 *   bit1  elect node 1 and commit SETUP_PROPOSALS entries first
 *   bit2  with bit1: node 3 is cut off while they commit, then the leader
 *         compacts its log, so node 3 needs a snapshot
 *
 * Raw message: [dest][len u16 LE][len bytes]. (dest & 0x3f) % 3 + 1 is the
 * node; the decoded message's `to` is set to it unless dest bit7 is set; with
 * dest bit6 the last 4 bytes are replaced by the right CRC-32 first, so the
 * fuzzer reaches the decoder's checks past the checksum.
 * Structured message: STRUCT_HEADER_BYTES bytes (see struct_msg), then the
 * entries' data, then the snapshot chunk's data.
 *
 * Invariants (abort = a finding):
 *   - raft_msg_decode never crashes; a decoded message re-encodes to exactly
 *     the input bytes (the format is canonical: minimal varints, CRC, no
 *     trailing bytes), and every message a node sends round-trips too;
 *   - raft_step returns 0 or NX_ERR_INVAL, and never trips an NX_ASSERT (the
 *     fuzz build defines NX_DEBUG_CHECKS, so the core's own invariant checks
 *     run after every step);
 *   - every node: committed entries come in index order without gaps,
 *     commit <= last index, the term never goes down.
 * Raft does not defend against lying peers, so agreement between nodes is
 * not checked: forged messages may legitimately break it.
 */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "consensus/raft.h"
#include "tests/fuzz/fuzz_harness.h"

#define N_NODES 3
#define SETUP_PROPOSALS 4
#define SETTLE_ROUNDS 20 /* delivery rounds after each injected message */
#define QUEUE_MAX 256    /* messages in flight in one round; more are dropped */
#define MAX_INPUT_MSGS 64
#define STRUCT_HEADER_BYTES 16
#define STRUCT_MAX_ENTRIES 4
#define STRUCT_MAX_ENTRY_BYTES 16
#define STRUCT_MAX_SNAPSHOT_BYTES 64
#define STRUCT_MAX_CHUNK_BYTES 16
#define SEED_COUNT 128
#define CRC_BYTES 4

#define FLAG_STRUCTURED 0x1u
#define FLAG_ELECT 0x2u
#define FLAG_LAGGARD 0x4u

struct node {
    struct raft *r;
    struct raft_mem *mem;
    uint64_t applied;
    uint64_t term;
};

struct qmsg {
    uint64_t to;
    size_t len;
    uint8_t *bytes; /* owned */
};

struct cluster {
    struct node nodes[N_NODES + 1]; /* by id, 1-based */
    struct qmsg queue[QUEUE_MAX];
    size_t n_queue;
    uint64_t cut; /* messages to this node are dropped (0: none) */
};

/* Decoded m must re-encode to exactly bytes. */
static void check_canonical(const struct raft_msg *m, const uint8_t *bytes, size_t len)
{
    size_t cap = raft_msg_encoded_size(m);
    uint8_t *again = malloc(cap);
    NX_ASSERT(again);
    long n = raft_msg_encode(m, again, cap);
    NX_ASSERT(n > 0 && (size_t)n == len && memcmp(again, bytes, len) == 0);
    free(again);
}

/*
 * Encodes m into a fresh buffer (owned by the caller) and decodes it back.
 * The decoder is stricter than the encoder (it also refuses entries outside
 * an append, entries of term 0, invalid configurations, sender 0): NULL when
 * m is refused by either.
 */
static uint8_t *encode_checked(const struct raft_msg *m, size_t *len_out)
{
    size_t cap = raft_msg_encoded_size(m);
    uint8_t *buf = malloc(cap);
    NX_ASSERT(buf);
    long n = raft_msg_encode(m, buf, cap);
    if (n <= 0) {
        free(buf);
        return NULL;
    }
    struct raft_msg back;
    if (raft_msg_decode(buf, (size_t)n, &back) != NX_OK) {
        free(buf);
        return NULL;
    }
    check_canonical(&back, buf, (size_t)n);
    raft_msg_clear(&back);
    *len_out = (size_t)n;
    return buf;
}

/* Also checked in release builds, where the core's NX_DEBUG_CHECKS are off. */
static void check_node(const struct node *nd)
{
    const struct raft *r = nd->r;
    NX_ASSERT(raft_commit_index(r) <= raft_last_index(r));
    NX_ASSERT(raft_term(r) >= nd->term);
    /* log terms (from the snapshot's on) never go down and never pass the node's term */
    uint64_t prev = 0, t;
    for (uint64_t i = raft_first_index(r) - 1; i <= raft_last_index(r); i++) {
        if (!raft_entry_term(r, i, &t))
            continue;
        NX_ASSERT(t >= prev && t <= raft_term(r));
        prev = t;
    }
}

static void drain_node(struct cluster *c, uint64_t id)
{
    struct node *nd = &c->nodes[id];
    while (raft_has_ready(nd->r)) {
        struct raft_ready rd;
        raft_ready(nd->r, &rd);
        NX_ASSERT(raft_mem_persist(nd->mem, &rd) == NX_OK);
        for (size_t i = 0; i < rd.n_msgs; i++) {
            const struct raft_msg *m = &rd.msgs[i];
            size_t len;
            uint8_t *bytes = encode_checked(m, &len);
            NX_ASSERT(bytes); /* a node only sends what the codec takes */
            if (m->to < 1 || m->to > N_NODES || m->to == c->cut || c->n_queue >= QUEUE_MAX) {
                free(bytes);
                continue;
            }
            c->queue[c->n_queue++] = (struct qmsg){m->to, len, bytes};
        }
        if (rd.snapshot)
            nd->applied = rd.snapshot->index;
        for (size_t i = 0; i < rd.n_committed; i++) {
            NX_ASSERT(rd.committed[i].index == nd->applied + 1);
            nd->applied = rd.committed[i].index;
        }
        raft_advance(nd->r, &rd);
    }
    check_node(nd);
    nd->term = raft_term(nd->r);
}

/* Decodes bytes and steps node `to` with them; returns the decode result. */
static int deliver(struct cluster *c, uint64_t to, const uint8_t *bytes, size_t len, bool keep_to)
{
    struct raft_msg m;
    int rc = raft_msg_decode(bytes, len, &m);
    NX_ASSERT(rc == NX_OK || rc == NX_ERR_DECODE || rc == NX_ERR_NOMEM);
    if (rc != NX_OK)
        return rc;
    check_canonical(&m, bytes, len);
    if (!keep_to)
        m.to = to;
    rc = raft_step(c->nodes[to].r, &m);
    NX_ASSERT(rc == NX_OK || rc == NX_ERR_INVAL);
    raft_msg_clear(&m);
    return NX_OK;
}

static void settle(struct cluster *c, int rounds)
{
    for (int round = 0; round < rounds; round++) {
        for (uint64_t id = 1; id <= N_NODES; id++)
            drain_node(c, id);
        if (c->n_queue == 0)
            return;
        size_t n = c->n_queue;
        struct qmsg batch[QUEUE_MAX];
        memcpy(batch, c->queue, n * sizeof *batch);
        c->n_queue = 0;
        for (size_t i = 0; i < n; i++) {
            NX_ASSERT(deliver(c, batch[i].to, batch[i].bytes, batch[i].len, true) == NX_OK);
            free(batch[i].bytes);
        }
    }
}

static void cluster_init(struct cluster *c)
{
    memset(c, 0, sizeof *c);
    struct raft_conf boot = {.n_voters = N_NODES};
    for (uint32_t i = 0; i < N_NODES; i++)
        boot.voters[i] = i + 1;
    for (uint64_t id = 1; id <= N_NODES; id++) {
        struct node *nd = &c->nodes[id];
        struct raft_config cfg;
        raft_config_default(&cfg, id, 1000 + id);
        NX_ASSERT(raft_mem_create(&boot, &nd->mem) == NX_OK);
        struct raft_boot b;
        raft_mem_boot(nd->mem, &b);
        NX_ASSERT(raft_create(&cfg, &b, &nd->r) == NX_OK);
    }
}

static void cluster_free(struct cluster *c)
{
    for (size_t i = 0; i < c->n_queue; i++)
        free(c->queue[i].bytes);
    for (uint64_t id = 1; id <= N_NODES; id++) {
        raft_destroy(c->nodes[id].r);
        raft_mem_destroy(c->nodes[id].mem);
    }
}

static void elect(struct cluster *c, bool laggard)
{
    struct raft *leader = c->nodes[1].r;
    NX_ASSERT(raft_campaign(leader) == NX_OK);
    settle(c, 100);
    NX_ASSERT(raft_role(leader) == RAFT_LEADER);
    if (laggard)
        c->cut = 3;
    for (int i = 0; i < SETUP_PROPOSALS; i++) {
        uint8_t cmd[8] = {'c', 'm', 'd', (uint8_t)('0' + i)};
        NX_ASSERT(raft_propose(leader, cmd, sizeof cmd, NULL) == NX_OK);
        settle(c, 100);
    }
    if (laggard) {
        uint64_t applied = c->nodes[1].applied;
        NX_ASSERT(raft_compact(leader, applied, "state", 5) == NX_OK);
        NX_ASSERT(raft_mem_compact(c->nodes[1].mem, applied, "state", 5) == NX_OK);
        c->cut = 0;
    }
}

static uint64_t rel(uint64_t base, uint8_t delta)
{
    int64_t d = (int8_t)delta;
    return d < 0 && (uint64_t)-d > base ? 0 : base + (uint64_t)d;
}

/*
 * One structured message at p (end: input end). Header bytes:
 *   [0] dest  [1] type  [2] from (1..4)  [3] bits: 0 reject, 1 transfer,
 *   2 entries are CONF, 3 CONF data is a valid configuration (else raw bytes),
 *   4 a fourth voter in that configuration and the snapshot's
 *   [4] term  [5] index  [6] log_term  [7] commit  [8] hint_index
 *   [9] hint_term (deltas, int8, from the target's term and last index)
 *   [10] ctx  [11] entries (% STRUCT_MAX_ENTRIES+1)  [12] entry data bytes
 *   [13] snapshot total  [14] chunk  [15] chunk number
 * Returns the bytes used, 0 when the input is too short.
 */
static size_t struct_msg(struct cluster *c, const uint8_t *p, const uint8_t *end)
{
    if (end - p < STRUCT_HEADER_BYTES)
        return 0;
    const uint8_t *h = p;
    const uint8_t *d = p + STRUCT_HEADER_BYTES;
    uint64_t to = h[0] % N_NODES + 1;
    const struct raft *r = c->nodes[to].r;
    uint64_t term = raft_term(r), last = raft_last_index(r);
    struct raft_conf conf = {.n_voters = N_NODES};
    for (uint32_t i = 0; i < N_NODES; i++)
        conf.voters[i] = i + 1;
    if (h[3] & 0x10)
        conf.voters[conf.n_voters++] = N_NODES + 1;
    uint8_t conf_bytes[2 + 8 * (N_NODES + 1)];
    long conf_len = raft_conf_encode(&conf, conf_bytes, sizeof conf_bytes);
    NX_ASSERT(conf_len > 0);

    struct raft_msg m = {
        .type = (uint8_t)(h[1] % RAFT_MSG_TYPE_MAX + 1),
        .flags = (h[3] & 2) ? RAFT_MSG_FLAG_TRANSFER : 0,
        .reject = h[3] & 1,
        .from = h[2] % (N_NODES + 1) + 1,
        .to = to,
        .term = rel(term, h[4]),
        .index = rel(last, h[5]),
        .log_term = rel(term, h[6]),
        .hint_index = rel(last, h[8]),
        .hint_term = rel(term, h[9]),
        .ctx = h[10],
    };
    m.commit = rel(m.index, h[7]);
    struct raft_entry entries[STRUCT_MAX_ENTRIES];
    m.n_entries = m.type == RAFT_MSG_APPEND ? h[11] % (STRUCT_MAX_ENTRIES + 1) : 0;
    uint32_t entry_len = h[12] % (STRUCT_MAX_ENTRY_BYTES + 1);
    bool conf_entries = h[3] & 4, valid_conf = h[3] & 8;
    for (uint32_t i = 0; i < m.n_entries; i++) {
        struct raft_entry *e = &entries[i];
        e->term = m.log_term + 1 - (h[12] >> 7); /* entries may start a newer term */
        e->index = m.index + 1 + i;
        e->type = conf_entries ? RAFT_ENTRY_CONF : RAFT_ENTRY_NORMAL;
        if (conf_entries && valid_conf) {
            e->data = conf_bytes;
            e->len = (uint32_t)conf_len;
            continue;
        }
        if ((size_t)(end - d) < entry_len)
            return 0;
        e->data = d;
        e->len = entry_len;
        d += entry_len;
    }
    m.entries = entries;
    if (m.type == RAFT_MSG_SNAPSHOT) {
        m.snapshot.index = m.index;
        m.snapshot.term = m.log_term;
        m.snapshot.conf = conf;
        m.snap_total = h[13] % (STRUCT_MAX_SNAPSHOT_BYTES + 1);
        m.snap_chunk = h[14] % STRUCT_MAX_CHUNK_BYTES + 1;
        uint32_t chunks = (m.snap_total + m.snap_chunk - 1) / m.snap_chunk;
        m.snap_offset = chunks ? (h[15] % chunks) * m.snap_chunk : 0;
        uint32_t left = m.snap_total - m.snap_offset;
        m.snapshot.len = left < m.snap_chunk ? left : m.snap_chunk;
        if ((size_t)(end - d) < m.snapshot.len)
            return 0;
        m.snapshot.data = d;
        d += m.snapshot.len;
    }
    size_t len;
    uint8_t *bytes = encode_checked(&m, &len);
    if (bytes) /* NULL: raw CONF data that is no configuration */
        NX_ASSERT(deliver(c, to, bytes, len, true) == NX_OK);
    free(bytes);
    return (size_t)(d - p);
}

/* CRC-32 (IEEE, reflected), as the codec's trailer. */
static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return c ^ 0xFFFFFFFFu;
}

static size_t raw_msg(struct cluster *c, const uint8_t *p, const uint8_t *end)
{
    if (end - p < 3)
        return 0;
    size_t len = (size_t)(p[1] | p[2] << 8);
    if ((size_t)(end - p - 3) < len)
        len = (size_t)(end - p - 3);
    uint64_t to = (uint64_t)(p[0] & 0x3f) % N_NODES + 1;
    if ((p[0] & 0x40) && len >= CRC_BYTES) {
        uint8_t *fixed = malloc(len);
        NX_ASSERT(fixed);
        memcpy(fixed, p + 3, len);
        uint32_t crc = crc32_ieee(fixed, len - CRC_BYTES);
        for (int i = 0; i < CRC_BYTES; i++)
            fixed[len - CRC_BYTES + (size_t)i] = (uint8_t)(crc >> (8 * i));
        (void)deliver(c, to, fixed, len, p[0] & 0x80);
        free(fixed);
    } else {
        (void)deliver(c, to, p + 3, len, p[0] & 0x80);
    }
    return 3 + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t flags = data[0];
    struct cluster *c = malloc(sizeof *c);
    NX_ASSERT(c);
    cluster_init(c);
    if (flags & FLAG_ELECT)
        elect(c, flags & FLAG_LAGGARD);
    const uint8_t *p = data + 1, *end = data + size;
    for (int n = 0; n < MAX_INPUT_MSGS && p < end; n++) {
        size_t used = (flags & FLAG_STRUCTURED) ? struct_msg(c, p, end) : raw_msg(c, p, end);
        if (used == 0)
            break;
        p += used;
        settle(c, SETTLE_ROUNDS);
        for (uint64_t id = 1; id <= N_NODES; id++)
            raft_tick(c->nodes[id].r);
    }
    settle(c, SETTLE_ROUNDS);
    cluster_free(c);
    free(c);
    return 0;
}

/* ---- seeds ---------------------------------------------------------------- */

/* A valid message from node `from` to `to` as raw-mode bytes at out. */
static size_t raw_seed(uint8_t *out, size_t cap, const struct raft_msg *m, bool fix_crc)
{
    size_t need = raft_msg_encoded_size(m);
    if (cap < 3 + need)
        return 0;
    long n = raft_msg_encode(m, out + 3, need);
    NX_ASSERT(n > 0);
    out[0] = (uint8_t)((m->to - 1) | (fix_crc ? 0x40 : 0));
    out[1] = (uint8_t)n;
    out[2] = (uint8_t)(n >> 8);
    return 3 + (size_t)n;
}

size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap)
{
    static const uint8_t payload[8] = "payload";
    struct raft_entry e[2] = {
        {.term = 2, .index = 1, .type = RAFT_ENTRY_NORMAL, .len = 0},
        {.term = 2, .index = 2, .type = RAFT_ENTRY_NORMAL, .len = sizeof payload, .data = payload},
    };
    if (i >= SEED_COUNT)
        return 0;
    struct raft_msg m = {.from = 2, .to = 1, .term = 2};
    size_t kind = i % 16, n = 0;
    buf[n++] = (uint8_t)(i / 16 % 8); /* flags: all combinations */
    if (buf[0] & FLAG_STRUCTURED) {
        /* a header per message type, deltas 0, then data for the entries and the chunk */
        for (int t = 0; t < 4 && n + STRUCT_HEADER_BYTES + 128 <= cap; t++) {
            uint8_t *h = buf + n;
            memset(h, 0, STRUCT_HEADER_BYTES);
            h[0] = (uint8_t)(kind + (size_t)t);
            h[1] = (uint8_t)(kind + (size_t)t);
            h[2] = (uint8_t)(1 + t % 3);
            h[3] = (uint8_t)(kind * 3 + (size_t)t);
            h[4] = (uint8_t)(t & 1);
            h[11] = (uint8_t)(t + 1);
            h[12] = 8;
            h[13] = 20;
            h[14] = 7;
            n += STRUCT_HEADER_BYTES;
            memset(buf + n, 'a' + t, 128);
            n += 128;
        }
        return n;
    }
    switch (kind) {
    case 0:
        m.type = RAFT_MSG_VOTE;
        break;
    case 1:
        m.type = RAFT_MSG_PRE_VOTE;
        m.term = 3;
        break;
    case 2:
        m.type = RAFT_MSG_APPEND;
        m.entries = e;
        m.n_entries = 2;
        m.commit = 1;
        break;
    case 3:
        m.type = RAFT_MSG_HEARTBEAT;
        m.commit = 2;
        m.ctx = 7;
        break;
    case 4:
        m.type = RAFT_MSG_APPEND_RESP;
        m.index = 2;
        break;
    case 5:
        m.type = RAFT_MSG_APPEND_RESP;
        m.reject = true;
        m.index = 3;
        m.hint_index = 1;
        m.hint_term = 1;
        break;
    case 6:
        m.type = RAFT_MSG_SNAPSHOT;
        m.index = 10;
        m.log_term = 2;
        m.snapshot = (struct raft_snapshot){
            .index = 10, .term = 2, .conf = {.n_voters = 3, .voters = {1, 2, 3}}};
        m.snapshot.data = payload;
        m.snapshot.len = sizeof payload;
        m.snap_total = sizeof payload;
        m.snap_chunk = 64;
        break;
    case 7:
        m.type = RAFT_MSG_TIMEOUT_NOW;
        break;
    default:
        m.type = (uint8_t)(kind % RAFT_MSG_TYPE_MAX + 1);
        if (m.type == RAFT_MSG_SNAPSHOT || m.type == RAFT_MSG_APPEND)
            m.type = RAFT_MSG_HEARTBEAT_RESP;
        m.reject = kind & 1;
        m.term = kind;
        m.index = kind / 2;
        m.log_term = 1;
        break;
    }
    size_t k = raw_seed(buf + n, cap - n, &m, i / 32 & 1);
    NX_ASSERT(k > 0);
    n += k;
    m.to = 3; /* the same message to another node */
    k = raw_seed(buf + n, cap - n, &m, i / 32 & 1);
    NX_ASSERT(k > 0);
    return n + k;
}

/*
 * Found by fuzz_raft: a snapshot message whose snapshot term (20 above the
 * target's) is above the message's own term (18 above). Node 1 (the leader,
 * one follower behind a compaction) installs it, so its log starts with a
 * term it is not in yet; once it leads again at a lower term its log terms go
 * down (consensus/raft.c check_invariants: "r->ents[i].term >= prev").
 * Input: structured, elect, laggard; a SNAPSHOT to node 1 from node 3 at
 * term+18 with snapshot term term+20, index last+8, empty data, voters 1..4;
 * then a TIMEOUT_NOW to node 1 from node 2.
 */
static const uint8_t snapshot_term_above_msg_term[] = {
    0x07, 0x12, 0x12, 0x12, 0x12, 0x12, 0x08, 0x14, 0x07, 0x00, 0x77,
    0x61, 0x61, 0x6c, 0x00, 0x00, 0x00, 0x00, 0xbd, 0xbd, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x61, 0x00, 0x01, 0x00, 0x00, 0x08, 0x01, 0x02,
};

static const struct fuzz_regression regressions[] = {
    {"consensus/raft.c handle_snapshot: installs a snapshot whose term is above the "
     "message's term",
     snapshot_term_above_msg_term, sizeof snapshot_term_above_msg_term},
};

const struct fuzz_regression *fuzz_regressions(size_t *n)
{
    *n = sizeof regressions / sizeof regressions[0];
    return regressions;
}
