/*
 * fuzz_gossip.c - libFuzzer harness for gossip_receive and gossip_meta_decode.
 *
 * data[0] bit0 picks the target:
 *
 *   set    the rest goes to gossip_meta_decode; a decoded metadata re-encodes
 *          to exactly the input (the format is canonical).
 *   clear  a fresh core (member 0) that knows members 1..3 receives the rest
 *          as messages: [from][dt][len u16 LE][len bytes]. from % 5 picks
 *          the sender's id: a member 0..3 (0 is the core itself) or one it
 *          does not know; the clock advances dt * DT_UNIT_MS before the
 *          message and the core ticks when due.
 *
 * Invariants (abort = a finding):
 *   - gossip_receive returns 0, NX_ERR_DECODE or NX_ERR_TOO_BIG; on an error
 *     the member table is unchanged (ids, states, incarnations, metadata);
 *   - the core itself stays alive at index 0, the table within max_members;
 *   - every message the core sends fits GOSSIP_WIRE_MAX_BYTES and the
 *     configured caps, and the core it is addressed to (a peer core per
 *     member) accepts it without a decode error.
 *
 * Seeds: messages captured from a small cluster of cores running in memory
 * (probes, acks, ping-reqs, push-pulls, a metadata change and a leave), sent
 * to member 0, and encoded metadata.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "gossip/gossip.h"
#include "tests/fuzz/fuzz_harness.h"

#define N_MEMBERS 4 /* the core under test (0) and its peers */
#define N_IDS (N_MEMBERS + 1)
#define DT_UNIT_MS 50
#define START_MS 1000000
#define MAX_INPUT_MSGS 64
#define MSG_HEADER_BYTES 4
#define SEED_SIM_MS 20000
#define SEED_MSGS_MAX 256
#define SEED_MSGS_PER_INPUT 6
#define META_SEEDS 8

struct harness {
    uint8_t ids[N_IDS][GOSSIP_ID_BYTES];
    struct gossip_core *cores[N_MEMBERS]; /* 0: under test; others only receive */
    struct gossip_config cfg;
    uint64_t now;
};

static void make_id(uint8_t id[GOSSIP_ID_BYTES], int i)
{
    struct nx_rng r;
    nx_rng_seed(&r, 500 + (uint64_t)i);
    for (int k = 0; k < GOSSIP_ID_BYTES; k++)
        id[k] = (uint8_t)nx_rng_next(&r);
}

static void make_meta(struct gossip_meta *m, int i)
{
    memset(m, 0, sizeof *m);
    snprintf(m->addr, sizeof m->addr, "10.0.0.%d:7946", i);
    snprintf(m->version, sizeof m->version, "0.%d.0", i);
    m->raft_role = (enum gossip_raft_role)(i % GOSSIP_RAFT__COUNT);
    m->cpu_total_millicores = 4000;
    m->cpu_free_millicores = 1000u * (uint32_t)i;
    m->mem_total_bytes = 8ull << 30;
    m->mem_free_bytes = (uint64_t)i << 28;
    m->gpu_count = (uint32_t)i % 3;
    m->gpu_mem_count = m->gpu_count;
    for (uint32_t g = 0; g < m->gpu_mem_count; g++)
        m->gpu_mem_bytes[g] = 16ull << 30;
    m->label_count = (uint32_t)i % 3;
    for (uint32_t l = 0; l < m->label_count; l++) {
        snprintf(m->labels[l].key, sizeof m->labels[l].key, "k%u", l);
        snprintf(m->labels[l].value, sizeof m->labels[l].value, "v%d", i);
    }
}

static void harness_init(struct harness *h)
{
    memset(h, 0, sizeof *h);
    gossip_config_default(&h->cfg);
    h->cfg.max_members = 8; /* small: the table-full paths are reachable */
    h->now = START_MS;
    for (int i = 0; i < N_IDS; i++)
        make_id(h->ids[i], i);
    for (int i = 0; i < N_MEMBERS; i++) {
        struct gossip_meta meta;
        make_meta(&meta, i);
        h->cores[i] = gossip_create(&h->cfg, h->ids[i], &meta, 1, 77 + (uint64_t)i, h->now);
        NX_ASSERT(h->cores[i]);
    }
    for (int i = 0; i < N_MEMBERS; i++)
        for (int j = 0; j < N_MEMBERS; j++) {
            struct gossip_meta meta;
            make_meta(&meta, j);
            if (i != j)
                NX_ASSERT(gossip_add_member(h->cores[i], h->now, h->ids[j], 1, &meta) == NX_OK);
        }
}

static void harness_free(struct harness *h)
{
    for (int i = 0; i < N_MEMBERS; i++)
        gossip_destroy(h->cores[i]);
}

static int core_of(const struct harness *h, const uint8_t id[GOSSIP_ID_BYTES])
{
    for (int i = 0; i < N_MEMBERS; i++)
        if (memcmp(h->ids[i], id, GOSSIP_ID_BYTES) == 0)
            return i;
    return -1;
}

/* ---- the member table, to check that a refused message changed nothing ---- */

struct table {
    size_t n;
    struct {
        uint8_t id[GOSSIP_ID_BYTES];
        enum gossip_state state;
        uint64_t incarnation;
        uint8_t meta[GOSSIP_META_MAX_BYTES];
        int meta_len;
    } m[16];
};

static void table_read(const struct gossip_core *core, struct table *t)
{
    t->n = gossip_member_count(core);
    NX_ASSERT(t->n >= 1 && t->n <= 16);
    for (size_t i = 0; i < t->n; i++) {
        struct gossip_member_info info;
        NX_ASSERT(gossip_member_get(core, i, &info) == NX_OK);
        memcpy(t->m[i].id, info.id, GOSSIP_ID_BYTES);
        t->m[i].state = info.state;
        t->m[i].incarnation = info.incarnation;
        t->m[i].meta_len = gossip_meta_encode(&info.meta, t->m[i].meta, sizeof t->m[i].meta);
        NX_ASSERT(t->m[i].meta_len > 0); /* what the table holds always encodes */
    }
}

static bool table_equal(const struct table *a, const struct table *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (memcmp(a->m[i].id, b->m[i].id, GOSSIP_ID_BYTES) != 0 ||
            a->m[i].state != b->m[i].state || a->m[i].incarnation != b->m[i].incarnation ||
            a->m[i].meta_len != b->m[i].meta_len ||
            memcmp(a->m[i].meta, b->m[i].meta, (size_t)a->m[i].meta_len) != 0)
            return false;
    return true;
}

/* ---- running the core ------------------------------------------------------ */

/* Drains core i's outputs; from core 0, each message goes to its addressee core. */
static void drain(struct harness *h, int i)
{
    struct gossip_ready rd;
    gossip_ready(h->cores[i], &rd);
    for (size_t k = 0; k < rd.msg_count && i == 0; k++) {
        const struct gossip_out_msg *m = &rd.msgs[k];
        NX_ASSERT(m->len > 0 && m->len <= GOSSIP_WIRE_MAX_BYTES);
        NX_ASSERT(m->len <= h->cfg.max_msg_bytes || m->len <= h->cfg.max_push_pull_bytes);
        NX_ASSERT(memchr(m->to_addr, 0, sizeof m->to_addr) != NULL);
        int to = core_of(h, m->to_id);
        if (to <= 0)
            continue; /* to an id the fuzzer made up */
        int rc = gossip_receive(h->cores[to], h->now, h->ids[0], m->data, m->len);
        NX_ASSERT(rc == NX_OK || rc == NX_ERR_STATE);
    }
    gossip_advance(h->cores[i]);
}

static void check_core(const struct harness *h)
{
    const struct gossip_core *core = h->cores[0];
    struct gossip_member_info self;
    NX_ASSERT(gossip_member_count(core) <= h->cfg.max_members);
    NX_ASSERT(gossip_member_get(core, 0, &self) == NX_OK);
    NX_ASSERT(memcmp(self.id, h->ids[0], GOSSIP_ID_BYTES) == 0);
    NX_ASSERT(self.state == GOSSIP_ALIVE);
    NX_ASSERT(gossip_live_count(core) >= 1);
}

static void receive_mode(const uint8_t *p, const uint8_t *end)
{
    struct harness *h = malloc(sizeof *h);
    NX_ASSERT(h);
    harness_init(h);
    for (int n = 0; n < MAX_INPUT_MSGS && end - p >= MSG_HEADER_BYTES; n++) {
        const uint8_t *from = h->ids[p[0] % N_IDS];
        h->now += (uint64_t)p[1] * DT_UNIT_MS;
        size_t len = (size_t)(p[2] | p[3] << 8);
        p += MSG_HEADER_BYTES;
        if ((size_t)(end - p) < len)
            len = (size_t)(end - p);
        struct gossip_ready rd;
        gossip_ready(h->cores[0], &rd);
        gossip_advance(h->cores[0]);
        if (h->now >= rd.next_deadline_ms)
            gossip_tick(h->cores[0], h->now);
        drain(h, 0);
        struct table before, after;
        table_read(h->cores[0], &before);
        int rc = gossip_receive(h->cores[0], h->now, from, p, len);
        NX_ASSERT(rc == NX_OK || rc == NX_ERR_DECODE || rc == NX_ERR_TOO_BIG);
        if (rc != NX_OK) {
            table_read(h->cores[0], &after);
            NX_ASSERT(table_equal(&before, &after));
        }
        p += len;
        drain(h, 0);
        for (int i = 1; i < N_MEMBERS; i++)
            drain(h, i);
        check_core(h);
    }
    harness_free(h);
    free(h);
}

static void meta_mode(const uint8_t *p, size_t len)
{
    struct gossip_meta meta;
    int rc = gossip_meta_decode(&meta, p, len);
    NX_ASSERT(rc == NX_OK || rc == NX_ERR_DECODE);
    if (rc != NX_OK)
        return;
    uint8_t again[GOSSIP_META_MAX_BYTES];
    int n = gossip_meta_encode(&meta, again, sizeof again);
    NX_ASSERT(n >= 0 && (size_t)n == len && memcmp(again, p, len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        meta_mode(data + 1, size - 1);
    else
        receive_mode(data + 1, data + size);
    return 0;
}

/* ---- seeds ------------------------------------------------------------------ */

struct captured {
    uint8_t from;
    uint8_t dt;
    size_t len;
    uint8_t *bytes;
};

static struct captured seed_msgs[SEED_MSGS_MAX];
static size_t n_seed_msgs;

/*
 * Runs members 0..3 plus a joiner (id 4) for SEED_SIM_MS with every message
 * delivered, keeping the messages sent to member 0.
 */
static void capture_seed_msgs(void)
{
    struct harness *h = malloc(sizeof *h);
    NX_ASSERT(h);
    harness_init(h);
    struct gossip_core *cores[N_IDS];
    memcpy(cores, h->cores, sizeof h->cores);
    struct gossip_meta meta;
    make_meta(&meta, N_MEMBERS);
    cores[N_MEMBERS] = gossip_create(&h->cfg, h->ids[N_MEMBERS], &meta, 1, 99, h->now);
    NX_ASSERT(cores[N_MEMBERS]);
    NX_ASSERT(gossip_join(cores[N_MEMBERS], h->now, h->ids[1], "10.0.0.1:7946") == NX_OK);
    uint64_t last_capture = h->now;
    for (uint64_t t = 0; t < SEED_SIM_MS; t += DT_UNIT_MS) {
        h->now += DT_UNIT_MS;
        if (t == SEED_SIM_MS / 2) {
            make_meta(&meta, 7);
            NX_ASSERT(gossip_set_meta(cores[2], h->now, &meta) == NX_OK);
        }
        if (t == SEED_SIM_MS * 3 / 4)
            gossip_leave(cores[3], h->now);
        for (int i = 0; i < N_IDS; i++) {
            gossip_tick(cores[i], h->now);
            struct gossip_ready rd;
            gossip_ready(cores[i], &rd);
            for (size_t k = 0; k < rd.msg_count; k++) {
                const struct gossip_out_msg *m = &rd.msgs[k];
                int to = -1;
                for (int j = 0; j < N_IDS; j++)
                    if (memcmp(h->ids[j], m->to_id, GOSSIP_ID_BYTES) == 0)
                        to = j;
                if (to < 0)
                    continue;
                if (to == 0 && n_seed_msgs < SEED_MSGS_MAX && m->len <= FUZZ_INPUT_MAX / 2) {
                    struct captured *c = &seed_msgs[n_seed_msgs++];
                    c->from = (uint8_t)i;
                    c->dt = (uint8_t)((h->now - last_capture) / DT_UNIT_MS);
                    c->len = m->len;
                    c->bytes = malloc(m->len);
                    NX_ASSERT(c->bytes);
                    memcpy(c->bytes, m->data, m->len);
                    last_capture = h->now;
                }
                int rc = gossip_receive(cores[to], h->now, h->ids[i], m->data, m->len);
                NX_ASSERT(rc == NX_OK || rc == NX_ERR_STATE);
            }
            gossip_advance(cores[i]);
        }
    }
    gossip_destroy(cores[N_MEMBERS]);
    harness_free(h);
    free(h);
}

size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap)
{
    if (i < META_SEEDS) {
        struct gossip_meta meta;
        make_meta(&meta, (int)i);
        buf[0] = 1;
        int n = gossip_meta_encode(&meta, buf + 1, cap - 1);
        NX_ASSERT(n > 0);
        return 1 + (size_t)n;
    }
    if (n_seed_msgs == 0)
        capture_seed_msgs();
    size_t first = (i - META_SEEDS) * SEED_MSGS_PER_INPUT / 2; /* inputs overlap */
    if (first >= n_seed_msgs)
        return 0;
    size_t n = 0;
    buf[n++] = 0;
    for (size_t k = first; k < first + SEED_MSGS_PER_INPUT && k < n_seed_msgs; k++) {
        const struct captured *c = &seed_msgs[k];
        if (n + MSG_HEADER_BYTES + c->len > cap)
            break;
        buf[n++] = c->from;
        buf[n++] = c->dt;
        buf[n++] = (uint8_t)c->len;
        buf[n++] = (uint8_t)(c->len >> 8);
        memcpy(buf + n, c->bytes, c->len);
        n += c->len;
    }
    return n;
}

const struct fuzz_regression *fuzz_regressions(size_t *n)
{
    *n = 0;
    return NULL;
}
