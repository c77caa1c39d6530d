/*
 * bench_raft - commits per second of the pure Raft core, no I/O.
 *
 * A 3- and a 5-voter cluster in one process follow the Ready contract with
 * in-memory storage (raft_mem) and a perfect network; every message goes
 * through raft_msg_encode/decode. The leader proposes batches of 128-byte
 * entries; we count entries applied on every node per second of CPU time.
 *
 * Baseline, in the same run: the floor cost of the same replication done by
 * hand, copying each entry into each node's store (malloc + memcpy + free),
 * with no protocol at all. The ratio says how much the protocol costs over
 * bare copying; the fsync line says how far the core is from being the
 * bottleneck next to one synced write per batch (about 0.13 ms here).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "consensus/raft.h"

#define MAX_N 5
#define ENTRY_BYTES 128
#define TOTAL_ENTRIES 200000
#define FSYNC_US 130.0

struct qm {
    size_t len;
    uint8_t *b;
};

struct cluster {
    uint32_t n;
    struct raft *r[MAX_N + 1];
    struct raft_mem *mem[MAX_N + 1];
    uint64_t applied[MAX_N + 1];
    struct qm *q;
    size_t nq, capq;
    uint64_t msgs;
};

static void push(struct cluster *c, const struct raft_msg *m)
{
    size_t cap = raft_msg_encoded_size(m);
    uint8_t *b = malloc(cap);
    long n = raft_msg_encode(m, b, cap);
    NX_ASSERT(n > 0);
    if (c->nq == c->capq) {
        c->capq = c->capq ? c->capq * 2 : 1024;
        c->q = realloc(c->q, c->capq * sizeof *c->q);
    }
    c->q[c->nq++] = (struct qm){(size_t)n, b};
    c->msgs++;
}

static void settle(struct cluster *c)
{
    for (;;) {
        for (uint32_t id = 1; id <= c->n; id++) {
            while (raft_has_ready(c->r[id])) {
                struct raft_ready rd;
                raft_ready(c->r[id], &rd);
                int rc = raft_mem_persist(c->mem[id], &rd);
                NX_ASSERT(rc == NX_OK);
                for (size_t i = 0; i < rd.n_msgs; i++)
                    push(c, &rd.msgs[i]);
                if (rd.n_committed)
                    c->applied[id] = rd.committed[rd.n_committed - 1].index;
                raft_advance(c->r[id], &rd);
                /* keep memory flat: compact well behind */
                uint64_t a = raft_applied_index(c->r[id]);
                if (a > raft_first_index(c->r[id]) + 20000) {
                    rc = raft_compact(c->r[id], a - 1000, "s", 1);
                    NX_ASSERT(rc == NX_OK);
                    rc = raft_mem_compact(c->mem[id], a - 1000, "s", 1);
                    NX_ASSERT(rc == NX_OK);
                }
            }
        }
        if (c->nq == 0)
            return;
        size_t n = c->nq;
        struct qm *batch = malloc(n * sizeof *batch);
        memcpy(batch, c->q, n * sizeof *batch);
        c->nq = 0;
        for (size_t i = 0; i < n; i++) {
            struct raft_msg m;
            int rc = raft_msg_decode(batch[i].b, batch[i].len, &m);
            NX_ASSERT(rc == NX_OK);
            rc = raft_step(c->r[m.to], &m);
            NX_ASSERT(rc == NX_OK);
            raft_msg_clear(&m);
            free(batch[i].b);
        }
        free(batch);
    }
}

static double run_raft(uint32_t n, uint32_t batch, uint64_t *msgs)
{
    struct cluster c = {.n = n};
    struct raft_conf conf = {0};
    for (uint32_t i = 1; i <= n; i++)
        conf.voters[conf.n_voters++] = i;
    for (uint32_t id = 1; id <= n; id++) {
        struct raft_config cfg;
        raft_config_default(&cfg, id, 7);
        cfg.max_inflight_msgs = 256;
        int rc = raft_mem_create(&conf, &c.mem[id]);
        NX_ASSERT(rc == NX_OK);
        struct raft_boot boot;
        raft_mem_boot(c.mem[id], &boot);
        rc = raft_create(&cfg, &boot, &c.r[id]);
        NX_ASSERT(rc == NX_OK);
    }
    int rc = raft_campaign(c.r[1]);
    NX_ASSERT(rc == NX_OK);
    settle(&c);
    NX_ASSERT(raft_role(c.r[1]) == RAFT_LEADER);
    uint8_t data[ENTRY_BYTES];
    memset(data, 0xab, sizeof data);
    uint64_t start_idx = raft_last_index(c.r[1]);
    uint64_t t0 = nx_clock_mono_us();
    for (uint64_t done = 0; done < TOTAL_ENTRIES; done += batch) {
        for (uint32_t k = 0; k < batch; k++) {
            rc = raft_propose(c.r[1], data, sizeof data, NULL);
            NX_ASSERT(rc == NX_OK);
        }
        settle(&c);
    }
    uint64_t us = nx_clock_mono_us() - t0;
    /* Followers learn the last commit index with the next heartbeat (2 ticks). */
    for (int t = 0; t < 2; t++) {
        raft_tick(c.r[1]);
        settle(&c);
    }
    for (uint32_t id = 1; id <= n; id++)
        NX_ASSERT(c.applied[id] >= start_idx + TOTAL_ENTRIES);
    for (uint32_t id = 1; id <= n; id++) {
        raft_destroy(c.r[id]);
        raft_mem_destroy(c.mem[id]);
    }
    free(c.q);
    *msgs = c.msgs;
    return TOTAL_ENTRIES / (us / 1e6);
}

/* The floor: copy each entry into each node's store, nothing else. */
static double run_baseline(uint32_t n)
{
    uint8_t data[ENTRY_BYTES];
    memset(data, 0xab, sizeof data);
    uint8_t **ring = calloc((size_t)n * 1024, sizeof *ring);
    uint64_t t0 = nx_clock_mono_us();
    for (uint64_t i = 0; i < TOTAL_ENTRIES; i++) {
        for (uint32_t k = 0; k < n; k++) {
            size_t slot = (size_t)k * 1024 + (i % 1024);
            free(ring[slot]);
            ring[slot] = malloc(sizeof data);
            memcpy(ring[slot], data, sizeof data);
        }
    }
    uint64_t us = nx_clock_mono_us() - t0;
    for (size_t i = 0; i < (size_t)n * 1024; i++)
        free(ring[i]);
    free(ring);
    return TOTAL_ENTRIES / (us / 1e6 + 1e-9);
}

int main(void)
{
    printf("%-10s %6s %14s %12s %16s %8s %18s\n", "cluster", "batch", "commits/s", "msgs/commit",
           "baseline copy/s", "ratio", "vs fsync/batch");
    const uint32_t sizes[] = {3, 5};
    const uint32_t batches[] = {1, 16, 256};
    for (size_t s = 0; s < NX_ARRAY_LEN(sizes); s++) {
        double base = run_baseline(sizes[s]);
        for (size_t b = 0; b < NX_ARRAY_LEN(batches); b++) {
            uint64_t msgs = 0;
            double cps = run_raft(sizes[s], batches[b], &msgs);
            /* one synced write per batch caps a real node at batch / FSYNC_US */
            double fsync_cap = batches[b] * 1e6 / FSYNC_US;
            printf("%u voters  %6u %14.0f %12.2f %16.0f %8.3f %17.1fx\n", sizes[s], batches[b], cps,
                   (double)msgs / TOTAL_ENTRIES, base, cps / base, cps / fsync_cap);
        }
    }
    return 0;
}
