/*
 * bench_ledger.c - signed transfers applied per second by the ledger state
 * machine (in-memory store), next to raw Ed25519 verifications per second of
 * the same commands in the same run. Each transfer costs one signature
 * verification, so the goal is apply >= 70% of the raw verify rate.
 *
 * Rows: raw crypto_sign_verify_detached over each command's signed bytes;
 * apply with one entry per batch (a commit per entry); apply with 64 entries
 * per batch (the node applies what one Raft ready carries). Times are the
 * thread's CPU time (CLOCK_THREAD_CPUTIME_ID), best of BENCH_ROUNDS, so other
 * load on the machine does not count.
 *
 * A second table: ledger_verify (`nexus ledger verify`) in transactions per
 * second next to a bare BLAKE2b pass over the same stored transactions, and
 * the snapshot write rate.
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "tests/unit/ledger/fixture.h"

#define BENCH_ACCOUNTS 256
#define BENCH_TRANSFERS 4000
#define BENCH_ROUNDS 3

static uint64_t cpu_us(void)
{
    struct timespec ts;
    NX_ASSERT(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct bench {
    struct fx_key keys[BENCH_ACCOUNTS];
    uint8_t *entries[BENCH_TRANSFERS];
    size_t lens[BENCH_TRANSFERS];
};

/* A ledger with BENCH_ACCOUNTS funded accounts, and its transfers pre-signed. */
static void setup(struct fx *f, struct bench *b)
{
    fx_init(f);
    struct fx_key owner;
    fx_key_make(&owner, 2);
    if (fx_tenant(f, "bench", &owner) != LEDGER_OK)
        abort();
    for (uint64_t i = 0; i < BENCH_ACCOUNTS; i++) {
        char name[16];
        snprintf(name, sizeof name, "a%" PRIu64, i);
        fx_key_make(&b->keys[i], 1000 + i);
        if (fx_account(f, &f->op, name, "bench", &b->keys[i]) != LEDGER_OK ||
            fx_mint(f, &f->op, name, 1000000) != LEDGER_OK)
            abort();
    }
    struct nx_rng rng;
    nx_rng_seed(&rng, 1);
    for (size_t i = 0; i < BENCH_TRANSFERS; i++) {
        uint64_t from = nx_rng_below(&rng, BENCH_ACCOUNTS);
        uint64_t to = (from + 1 + nx_rng_below(&rng, BENCH_ACCOUNTS - 1)) % BENCH_ACCOUNTS;
        char fn[16], tn[16];
        snprintf(fn, sizeof fn, "a%" PRIu64, from);
        snprintf(tn, sizeof tn, "a%" PRIu64, to);
        struct ledger_cmd c;
        fx_transfer_cmd(f, &c, &b->keys[from], fn, tn, 1 + nx_rng_below(&rng, 10));
        b->entries[i] = fx_entry(f, &c, b->keys[from].sk, &b->lens[i]);
    }
}

static double raw_verify_us(const struct bench *b)
{
    uint64_t t0 = cpu_us();
    for (size_t i = 0; i < BENCH_TRANSFERS; i++) {
        const uint8_t *cmd = b->entries[i] + LEDGER_ENTRY_HEADER_BYTES;
        size_t len = b->lens[i] - LEDGER_ENTRY_HEADER_BYTES, signed_len = len - LEDGER_SIG_BYTES;
        if (crypto_sign_verify_detached(cmd + signed_len, cmd, signed_len, cmd + 40) != 0)
            abort();
    }
    return (double)(cpu_us() - t0);
}

/* Applies every transfer on a fresh copy of the funded ledger. */
static double apply_us(const struct bench *b, size_t per_batch)
{
    struct fx f;
    struct bench scratch; /* setup is deterministic: same keys, same state */
    setup(&f, &scratch);
    for (size_t i = 0; i < BENCH_TRANSFERS; i++)
        free(scratch.entries[i]);
    uint64_t t0 = cpu_us();
    for (size_t i = 0; i < BENCH_TRANSFERS;) {
        struct ledger_batch batch;
        ledger_batch_init(&batch);
        for (size_t k = 0; k < per_batch && i < BENCH_TRANSFERS; k++, i++) {
            struct ledger_result r;
            if (ledger_apply(&f.l, b->entries[i], b->lens[i], ++f.index, &batch, &r) < 0 ||
                r.reason != LEDGER_OK)
                abort();
        }
        if (ledger_store_commit(f.store, &batch) < 0)
            abort();
        ledger_batch_free(&batch);
    }
    double us = (double)(cpu_us() - t0);
    char why[LEDGER_REASON_TEXT_BYTES];
    if (ledger_verify(&f.l, why, sizeof why) != 0) {
        fprintf(stderr, "verify: %s\n", why);
        abort();
    }
    fx_free(&f);
    return us;
}

/* BLAKE2b-256 over every stored transaction's bytes: the floor of ledger_verify. */
struct hash_walk {
    size_t bytes;
};

static int hash_tx(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                   size_t val_len)
{
    (void)key;
    (void)key_len;
    struct hash_walk *h = arg;
    uint8_t out[32];
    crypto_generichash(out, sizeof out, val, val_len, NULL, 0);
    h->bytes += val_len;
    return 0;
}

static int count_sink(void *arg, const uint8_t *buf, size_t len)
{
    (void)buf;
    *(size_t *)arg += len;
    return 0;
}

/* Applies every transfer, then times ledger_verify, a raw hash pass over the
 * log and a snapshot write. Returns the number of transactions verified. */
static uint64_t verify_and_snapshot(const struct bench *b, double *verify_us, double *hash_us,
                                    double *snap_us, size_t *snap_bytes)
{
    struct fx f;
    struct bench scratch;
    setup(&f, &scratch);
    for (size_t i = 0; i < BENCH_TRANSFERS; i++) {
        free(scratch.entries[i]);
        struct ledger_result r;
        if (fx_apply_entry(&f, b->entries[i], b->lens[i], &r) != LEDGER_OK)
            abort();
    }
    char why[LEDGER_REASON_TEXT_BYTES];
    uint64_t t0 = cpu_us();
    if (ledger_verify(&f.l, why, sizeof why) != 0)
        abort();
    *verify_us = (double)(cpu_us() - t0);
    struct hash_walk h = {0};
    t0 = cpu_us();
    if (f.store->ops->iter(f.store->ctx, (const uint8_t *)"tx/", 3, hash_tx, &h) < 0)
        abort();
    *hash_us = (double)(cpu_us() - t0);
    *snap_bytes = 0;
    t0 = cpu_us();
    if (ledger_snapshot_write(f.store, count_sink, snap_bytes) < 0)
        abort();
    *snap_us = (double)(cpu_us() - t0);
    uint64_t seq;
    uint8_t head[LEDGER_HASH_BYTES];
    if (ledger_tx_head(&f.l, &seq, head) < 0)
        abort();
    fx_free(&f);
    return seq;
}

static double best(double a, double b)
{
    return a < b ? a : b;
}

int main(void)
{
    struct fx f;
    struct bench *b = malloc(sizeof *b);
    NX_ASSERT(b);
    setup(&f, b);
    double raw = 1e300, one = 1e300, many = 1e300;
    for (int r = 0; r < BENCH_ROUNDS; r++) {
        raw = best(raw, raw_verify_us(b));
        one = best(one, apply_us(b, 1));
        many = best(many, apply_us(b, 64));
    }
    double n = BENCH_TRANSFERS;
    printf("%-34s %12s %10s\n", "operation", "per_second", "vs_verify");
    printf("%-34s %12.0f %9.1f%%\n", "raw Ed25519 verify (baseline)", n / raw * 1e6, 100.0);
    printf("%-34s %12.0f %9.1f%%\n", "apply transfer, 1 per batch", n / one * 1e6,
           100.0 * raw / one);
    printf("%-34s %12.0f %9.1f%%\n", "apply transfer, 64 per batch", n / many * 1e6,
           100.0 * raw / many);
    printf("%d transfers between %d accounts, in-memory store, thread CPU time, best of %d; "
           "goal: apply >= 70%% of raw verify\n",
           BENCH_TRANSFERS, BENCH_ACCOUNTS, BENCH_ROUNDS);
    double v_us = 1e300, h_us = 1e300, s_us = 1e300;
    size_t snap_bytes = 0;
    uint64_t txs = 0;
    for (int r = 0; r < BENCH_ROUNDS; r++) {
        double v, h, sn;
        txs = verify_and_snapshot(b, &v, &h, &sn, &snap_bytes);
        v_us = best(v_us, v);
        h_us = best(h_us, h);
        s_us = best(s_us, sn);
    }
    printf("\n%-34s %12s %10s\n", "operation", "tx_per_s", "vs_hash");
    printf("%-34s %12.0f %9.1f%%\n", "BLAKE2b of each stored tx (base)", (double)txs / h_us * 1e6,
           100.0);
    printf("%-34s %12.0f %9.1f%%\n", "ledger_verify (chain + balances)", (double)txs / v_us * 1e6,
           100.0 * h_us / v_us);
    printf("snapshot write: %zu bytes in %.1f ms (%.0f MB/s), %" PRIu64 " transactions\n",
           snap_bytes, s_us / 1000.0, (double)snap_bytes / s_us, txs);
    for (size_t i = 0; i < BENCH_TRANSFERS; i++)
        free(b->entries[i]);
    free(b);
    fx_free(&f);
    return 0;
}
