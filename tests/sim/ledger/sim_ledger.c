/*
 * sim_ledger.c - randomized invariant test of the ledger state machine.
 *
 * One seed makes one Raft log: a random stream of signed commands, valid and
 * invalid (wrong signer, corrupted bytes, overdrafts, unknown accounts,
 * forged token proofs, resubmitted entries, proposer clocks going back).
 * Three replicas apply it, each with its own batching and its own crashes
 * (a batch dropped before commit, so the entries are applied again from the
 * stored applied index) and re-deliveries of already applied entries. A
 * fourth replica starts from a snapshot of the first taken half way.
 *
 * Checked at the end of every seed:
 *   - every replica's store is byte-identical, and every index got the same result;
 *   - ledger_verify passes (hash chain, balances, supply);
 *   - supply == sum of accepted mints; value is conserved by transfers and charges;
 *   - no command applied twice: (author, idempotency key) unique in the tx log,
 *     a run charged at most once;
 *   - every accepted transaction is in the log at the position it was given;
 *   - one audit record per entry, applied or rejected;
 *   - the idempotency age index matches the records, and pruning happened
 *     (genesis sets a 4 s command window; old resubmissions go stale).
 *
 *   NX_SIM_SEED=123 sim_ledger   replays one seed
 *   NX_SIM_SEEDS=N sim_ledger    runs seeds 1..N
 *   NX_SIM_QUICK=1               fewer seeds and steps (also in ASan builds)
 *   NX_SIM_HIST=1                print how many entries got each result
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "tests/unit/ledger/fixture.h"

#if defined(__SANITIZE_ADDRESS__)
#define SIM_SANITIZED 1
#else
#define SIM_SANITIZED 0
#endif

#define SIM_DEFAULT_SEEDS 15
#define SIM_QUICK_SEEDS 8
#define SIM_STEPS 400
#define SIM_QUICK_STEPS 150
#define SIM_USERS 5
#define SIM_NODES 3
#define SIM_REPLICAS 4 /* the last one starts from a snapshot */
#define SIM_MAX_ENTRIES 1024
#define SIM_WINDOW_MS 4000 /* a run spans about 20 s of proposer time */

struct entry_meta {
    uint8_t type;
    char from[LEDGER_STR_CAP], to[LEDGER_STR_CAP], run[LEDGER_STR_CAP];
    uint64_t amount;
};

struct sim {
    struct nx_rng rng;
    struct fx gen; /* the client side: keys, clock, idempotency counter (no store) */
    struct fx_key users[SIM_USERS], nodes[SIM_NODES], stranger;
    uint8_t *entries[SIM_MAX_ENTRIES];
    size_t lens[SIM_MAX_ENTRIES];
    struct entry_meta meta[SIM_MAX_ENTRIES];
    size_t n;
    struct ledger_result res[SIM_REPLICAS][SIM_MAX_ENTRIES + 1];
    struct ledger_store *stores[SIM_REPLICAS];
    uint64_t crashes, redeliveries, accepted, pruned;
    char *why;
    size_t why_cap;
};

static const char *const SECRETS[2] = {"aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"};
static const char *const TOKEN_IDS[2] = {"tok000", "tok001"};

static void push(struct sim *s, const struct ledger_cmd *c, const uint8_t *sk)
{
    NX_ASSERT(s->n < SIM_MAX_ENTRIES);
    struct entry_meta *m = &s->meta[s->n];
    memset(m, 0, sizeof *m);
    m->type = c->type;
    if (c->type == LEDGER_CMD_TRANSFER) {
        strcpy(m->from, c->u.transfer.from);
        strcpy(m->to, c->u.transfer.to);
        m->amount = c->u.transfer.amount;
    } else if (c->type == LEDGER_CMD_MINT) {
        strcpy(m->to, c->u.mint.to);
        m->amount = c->u.mint.amount;
    } else if (c->type == LEDGER_CMD_CHARGE) {
        strcpy(m->from, c->u.charge.account);
        strcpy(m->to, c->u.charge.payee);
        strcpy(m->run, c->u.charge.run_id);
        m->amount = c->u.charge.amount;
    }
    s->entries[s->n] = fx_entry(&s->gen, c, sk, &s->lens[s->n]);
    s->n++;
}

static void push_copy(struct sim *s, size_t from, bool corrupt)
{
    NX_ASSERT(s->n < SIM_MAX_ENTRIES);
    uint8_t *e = malloc(s->lens[from]);
    NX_ASSERT(e);
    memcpy(e, s->entries[from], s->lens[from]);
    if (corrupt) { /* in the command: the entry header is the leader's, Raft keeps it intact */
        size_t at = LEDGER_ENTRY_HEADER_BYTES +
                    nx_rng_below(&s->rng, s->lens[from] - LEDGER_ENTRY_HEADER_BYTES);
        e[at] ^= (uint8_t)(1 + nx_rng_below(&s->rng, 255));
    }
    s->entries[s->n] = e;
    s->lens[s->n] = s->lens[from];
    s->meta[s->n] = s->meta[from];
    if (corrupt)
        s->meta[s->n].type = 0; /* whatever it decodes to, no longer the original */
    s->n++;
}

static void user_name(char *out, uint64_t i)
{
    snprintf(out, LEDGER_STR_CAP, "u%" PRIu64, i);
}

static const struct fx_key *pick_user(struct sim *s, uint64_t *i)
{
    *i = nx_rng_below(&s->rng, SIM_USERS);
    return &s->users[*i];
}

static void gen_setup(struct sim *s)
{
    struct fx *g = &s->gen;
    struct ledger_cmd c;
    fx_cmd(g, &c, LEDGER_CMD_GENESIS, &g->op);
    memcpy(c.u.genesis.first_node, s->nodes[0].pk, LEDGER_KEY_BYTES);
    c.u.genesis.window_ms =
        SIM_WINDOW_MS; /* short, so old resubmissions go stale and records are pruned */
    push(s, &c, g->op.sk);
    fx_cmd(g, &c, LEDGER_CMD_TENANT_CREATE, &g->op);
    strcpy(c.u.tenant.name, "t");
    memcpy(c.u.tenant.owner, s->users[0].pk, LEDGER_KEY_BYTES);
    push(s, &c, g->op.sk);
    for (uint64_t i = 0; i < SIM_USERS; i++) {
        fx_cmd(g, &c, LEDGER_CMD_ACCOUNT_CREATE, &s->users[0]);
        user_name(c.u.account.name, i);
        strcpy(c.u.account.tenant, "t");
        memcpy(c.u.account.key, s->users[i].pk, LEDGER_KEY_BYTES);
        push(s, &c, s->users[0].sk);
    }
    for (int t = 0; t < 2; t++) {
        uint8_t pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES];
        const char *id = TOKEN_IDS[t];
        if (ledger_token_keypair(g->cluster, id, SECRETS[t], pk, sk) < 0)
            abort();
        fx_cmd(g, &c, LEDGER_CMD_TOKEN_CREATE, &g->op);
        strcpy(c.u.token_create.id, id);
        memcpy(c.u.token_create.verifier, pk, LEDGER_KEY_BYTES);
        c.u.token_create.expires_ms = g->time_ms + 5000 + nx_rng_below(&s->rng, 20000);
        c.u.token_create.uses = 1 + (uint32_t)t;
        push(s, &c, g->op.sk);
    }
}

static void gen_step(struct sim *s)
{
    struct fx *g = &s->gen;
    struct ledger_cmd c;
    uint64_t roll = nx_rng_below(&s->rng, 100), i, j;
    g->time_ms += nx_rng_below(&s->rng, 100);
    if (nx_rng_below(&s->rng, 20) == 0)
        g->time_ms -= nx_rng_below(&s->rng, 500); /* a leader whose clock lags */
    if (roll < 35) {
        const struct fx_key *payer = pick_user(s, &i);
        pick_user(s, &j);
        char from[LEDGER_STR_CAP], to[LEDGER_STR_CAP];
        user_name(from, i);
        user_name(to, nx_rng_below(&s->rng, 10) == 0 ? SIM_USERS + 1 : j); /* unknown */
        const struct fx_key *signer = nx_rng_below(&s->rng, 10) == 0 ? &s->stranger : payer;
        fx_transfer_cmd(g, &c, signer, from, to, nx_rng_below(&s->rng, 80));
        push(s, &c, signer->sk);
    } else if (roll < 45) {
        const struct fx_key *who = nx_rng_below(&s->rng, 5) == 0 ? pick_user(s, &i) : &g->op;
        fx_cmd(g, &c, LEDGER_CMD_MINT, who);
        user_name(c.u.mint.to, nx_rng_below(&s->rng, SIM_USERS));
        c.u.mint.amount =
            nx_rng_below(&s->rng, 10) == 0 ? UINT64_MAX / 2 : 1 + nx_rng_below(&s->rng, 100);
        push(s, &c, who->sk);
    } else if (roll < 57) {
        const struct fx_key *node = &s->nodes[nx_rng_below(&s->rng, SIM_NODES)];
        fx_cmd(g, &c, LEDGER_CMD_CHARGE, node);
        user_name(c.u.charge.account, nx_rng_below(&s->rng, SIM_USERS));
        user_name(c.u.charge.payee, nx_rng_below(&s->rng, SIM_USERS));
        c.u.charge.amount = 1 + nx_rng_below(&s->rng, 30);
        snprintf(c.u.charge.run_id, LEDGER_STR_CAP, "run%" PRIu64, nx_rng_below(&s->rng, 40));
        push(s, &c, node->sk);
    } else if (roll < 65) {
        const struct fx_key *node = &s->nodes[nx_rng_below(&s->rng, SIM_NODES)];
        uint64_t t = nx_rng_below(&s->rng, 2);
        const char *id = TOKEN_IDS[t];
        fx_cmd(g, &c, LEDGER_CMD_NODE_ADMIT, node);
        memcpy(c.u.admit.node, node->pk, LEDGER_KEY_BYTES);
        strcpy(c.u.admit.token_id, id);
        memcpy(c.u.admit.pin_cluster, g->cluster, LEDGER_CLUSTER_ID_BYTES);
        ledger_operator_pin(g->op.pk, c.u.admit.pin_operator);
        memset(c.u.admit.nonce, (int)roll, LEDGER_NONCE_BYTES);
        const char *secret = SECRETS[nx_rng_below(&s->rng, 4) == 0 ? 1 - t : t];
        if (ledger_token_proof(g->cluster, id, secret, node->pk, c.u.admit.nonce, c.u.admit.proof) <
            0)
            abort();
        push(s, &c, node->sk);
    } else if (roll < 70) {
        fx_cmd(g, &c, LEDGER_CMD_NODE_REMOVE, &g->op);
        memcpy(c.u.node_remove.node, s->nodes[1 + nx_rng_below(&s->rng, SIM_NODES - 1)].pk,
               LEDGER_KEY_BYTES);
        push(s, &c, g->op.sk);
    } else if (roll < 75) {
        const struct fx_key *who = nx_rng_below(&s->rng, 2) ? &s->users[0] : pick_user(s, &i);
        fx_cmd(g, &c, LEDGER_CMD_ACCOUNT_CREATE, who);
        user_name(c.u.account.name, SIM_USERS + nx_rng_below(&s->rng, 3));
        strcpy(c.u.account.tenant, "t");
        memcpy(c.u.account.key, s->stranger.pk, LEDGER_KEY_BYTES);
        push(s, &c, who->sk);
    } else if (roll < 80) {
        fx_cmd(g, &c, nx_rng_below(&s->rng, 2) ? LEDGER_CMD_PERM_GRANT : LEDGER_CMD_PERM_REVOKE,
               &g->op);
        memcpy(c.u.perm.subject, s->stranger.pk, LEDGER_KEY_BYTES);
        strcpy(c.u.perm.action, "transfer");
        user_name(c.u.perm.resource, nx_rng_below(&s->rng, SIM_USERS));
        push(s, &c, g->op.sk);
    } else if (roll < 92) {
        push_copy(s, nx_rng_below(&s->rng, s->n), false); /* resubmitted entry */
    } else {
        push_copy(s, nx_rng_below(&s->rng, s->n), true); /* corrupted in flight */
    }
}

static int sim_fail(struct sim *s, const char *fmt, ...) NX_PRINTF(2, 3);
static int sim_fail(struct sim *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, s->why_cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* Applies entries [applied+1 .. upto] with random batches, crashes and re-deliveries. */
static int replica_run(struct sim *s, int r, struct nx_rng *rng, uint64_t upto)
{
    struct ledger l;
    ledger_init(&l, s->stores[r]);
    for (;;) {
        uint64_t applied;
        if (ledger_applied_index(&l, &applied) < 0)
            return sim_fail(s, "replica %d: applied index unreadable", r);
        if (applied >= upto)
            return 0;
        struct ledger_batch b;
        ledger_batch_init(&b);
        uint64_t k = 1 + nx_rng_below(rng, 5);
        for (uint64_t idx = applied + 1; idx <= upto && idx <= applied + k; idx++) {
            if (ledger_apply(&l, s->entries[idx - 1], s->lens[idx - 1], idx, &b, &s->res[r][idx]) <
                0)
                return sim_fail(s, "replica %d: apply failed at %" PRIu64, r, idx);
        }
        if (nx_rng_below(rng, 8) == 0) {
            s->crashes++; /* crash before the batch was written: lost, applied again */
        } else if (ledger_store_commit(s->stores[r], &b) < 0) {
            return sim_fail(s, "replica %d: commit failed", r);
        }
        ledger_batch_free(&b);
        if (applied > 0 && nx_rng_below(rng, 8) == 0) {
            uint64_t idx = 1 + nx_rng_below(rng, applied); /* re-delivered after restart */
            struct ledger_result res;
            ledger_batch_init(&b);
            if (ledger_apply(&l, s->entries[idx - 1], s->lens[idx - 1], idx, &b, &res) < 0 ||
                !res.already_applied || b.ops != 0)
                return sim_fail(s, "replica %d: re-delivered index %" PRIu64 " applied again", r,
                                idx);
            ledger_batch_free(&b);
            s->redeliveries++;
        }
    }
}

static int hash_kv(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                   size_t val_len)
{
    uint8_t n[8];
    memcpy(n, &key_len, 4);
    memcpy(n + 4, &val_len, 4);
    crypto_generichash_update(arg, n, 8);
    crypto_generichash_update(arg, key, key_len);
    crypto_generichash_update(arg, val, val_len);
    return 0;
}

static void store_hash(struct ledger_store *st, uint8_t h[32])
{
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, 32);
    if (st->ops->iter(st->ctx, (const uint8_t *)"", 0, hash_kv, &hs) < 0)
        abort();
    crypto_generichash_final(&hs, h, 32);
}

struct membuf {
    uint8_t *p;
    size_t len, cap, off;
};

static int mem_sink(void *arg, const uint8_t *buf, size_t len)
{
    struct membuf *m = arg;
    if (m->len + len > m->cap) {
        m->cap = (m->len + len) * 2;
        m->p = realloc(m->p, m->cap);
        NX_ASSERT(m->p);
    }
    memcpy(m->p + m->len, buf, len);
    m->len += len;
    return 0;
}

static int mem_source(void *arg, uint8_t *buf, size_t cap, size_t *got)
{
    struct membuf *m = arg;
    size_t n = m->len - m->off < cap ? m->len - m->off : cap;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    *got = n;
    return 0;
}

struct txcheck {
    struct sim *s;
    uint64_t count;
    struct ledger_tx *txs;
};

static int collect_tx(void *arg, const struct ledger_tx *tx)
{
    struct txcheck *t = arg;
    if (tx->seq != t->count + 1 || t->count >= SIM_MAX_ENTRIES)
        return -1;
    t->txs[t->count++] = *tx;
    return 0;
}

struct auditcheck {
    uint64_t count;
    bool in_order;
};

static int count_audit(void *arg, const struct ledger_audit *a)
{
    struct auditcheck *ac = arg;
    ac->count++;
    if (a->raft_index != ac->count)
        ac->in_order = false;
    return 0;
}

struct idemcheck {
    struct ledger_store *store;
    uint64_t count;
    bool dangling;
};

/* Every age-index entry idemt/<created><author><key> has its idem/<author><key>. */
static int count_idemt(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                       size_t val_len)
{
    (void)val;
    (void)val_len;
    struct idemcheck *ic = arg;
    ic->count++;
    uint8_t k[5 + 64], v[LEDGER_MAX_VALUE_BYTES];
    size_t len;
    if (key_len != 6 + 8 + 64)
        return -1;
    memcpy(k, "idem/", 5);
    memcpy(k + 5, key + 14, 64);
    if (ic->store->ops->get(ic->store->ctx, k, sizeof k, v, sizeof v, &len) != 0)
        ic->dangling = true;
    return 0;
}

static bool records_idem(const struct ledger_result *r)
{
    switch (r->reason) {
    case LEDGER_REJ_MALFORMED:
    case LEDGER_REJ_WRONG_CLUSTER:
    case LEDGER_REJ_BAD_SIG:
    case LEDGER_REJ_NO_GENESIS:
    case LEDGER_REJ_STALE:
    case LEDGER_REJ_FUTURE:
    case LEDGER_REJ_IDEM_CONFLICT:
        return false;
    default:
        return !r->duplicate && r->type != LEDGER_CMD_CHARGE;
    }
}

static int check(struct sim *s)
{
    uint8_t h0[32], h[32];
    store_hash(s->stores[0], h0);
    for (int r = 1; r < SIM_REPLICAS; r++) {
        store_hash(s->stores[r], h);
        if (memcmp(h, h0, 32) != 0)
            return sim_fail(s, "replica %d differs from replica 0", r);
    }
    for (size_t idx = 1; idx <= s->n; idx++)
        for (int r = 1; r < SIM_REPLICAS - 1; r++)
            if (s->res[r][idx].reason != s->res[0][idx].reason ||
                s->res[r][idx].duplicate != s->res[0][idx].duplicate)
                return sim_fail(s, "index %zu: replica %d got %s, replica 0 %s", idx, r,
                                ledger_reason_str(s->res[r][idx].reason),
                                ledger_reason_str(s->res[0][idx].reason));
    struct ledger l;
    ledger_init(&l, s->stores[0]);
    char why[LEDGER_REASON_TEXT_BYTES];
    if (ledger_verify(&l, why, sizeof why) != 0)
        return sim_fail(s, "verify: %s", why);

    struct idemcheck ic = {s->stores[0], 0, false};
    uint64_t written = 0;
    for (size_t idx = 1; idx <= s->n; idx++)
        written += records_idem(&s->res[0][idx]);
    if (s->stores[0]->ops->iter(s->stores[0]->ctx, (const uint8_t *)"idemt/", 6, count_idemt, &ic) <
            0 ||
        ic.dangling || ic.count > written)
        return sim_fail(s, "idempotency index: %" PRIu64 " entries for %" PRIu64 " records%s",
                        ic.count, written, ic.dangling ? ", some dangling" : "");
    s->pruned = written - ic.count;
    struct auditcheck ac = {0, true};
    if (ledger_audit_foreach(&l, count_audit, &ac) < 0 || !ac.in_order || ac.count != s->n)
        return sim_fail(s, "audit log has %" PRIu64 " records for %zu entries", ac.count, s->n);
    struct txcheck t = {s, 0, calloc(SIM_MAX_ENTRIES, sizeof(struct ledger_tx))};
    NX_ASSERT(t.txs);
    int rc = ledger_tx_foreach(&l, collect_tx, &t);
    uint64_t minted = 0, expected_txs = 0;
    for (size_t idx = 1; rc == 0 && idx <= s->n; idx++) {
        const struct ledger_result *res = &s->res[0][idx];
        const struct entry_meta *m = &s->meta[idx - 1];
        if (res->reason != LEDGER_OK || res->duplicate || !res->tx_seq)
            continue;
        s->accepted++;
        expected_txs++;
        if (res->tx_seq > t.count) {
            rc = sim_fail(s, "index %zu: accepted tx %" PRIu64 " missing", idx, res->tx_seq);
            break;
        }
        const struct ledger_tx *tx = &t.txs[res->tx_seq - 1];
        if (m->type && (tx->kind != m->type || strcmp(tx->to, m->to) != 0 ||
                        strcmp(tx->from, m->from) != 0 || tx->amount != m->amount))
            rc = sim_fail(s, "index %zu: tx %" PRIu64 " is not the accepted command", idx,
                          res->tx_seq);
        if (tx->kind == LEDGER_CMD_MINT)
            minted += tx->amount;
        if (tx->kind == LEDGER_CMD_CHARGE && m->type) {
            for (size_t j = 1; j < idx; j++)
                if (s->meta[j - 1].type == LEDGER_CMD_CHARGE && !s->res[0][j].duplicate &&
                    s->res[0][j].reason == LEDGER_OK && strcmp(s->meta[j - 1].run, m->run) == 0)
                    rc = sim_fail(s, "run %s charged twice (index %zu and %zu)", m->run, j, idx);
        }
    }
    for (uint64_t a = 0; rc == 0 && a < t.count; a++)
        for (uint64_t b = a + 1; b < t.count; b++)
            if (memcmp(t.txs[a].author, t.txs[b].author, LEDGER_KEY_BYTES) == 0 &&
                memcmp(t.txs[a].idem_key, t.txs[b].idem_key, LEDGER_IDEM_BYTES) == 0) {
                rc = sim_fail(s, "tx %" PRIu64 " and %" PRIu64 " share an idempotency key",
                              t.txs[a].seq, t.txs[b].seq);
                break;
            }
    if (rc == 0 && expected_txs != t.count)
        rc = sim_fail(s, "%" PRIu64 " accepted transactions, %" PRIu64 " in the log", expected_txs,
                      t.count);
    uint64_t supply = 0;
    if (rc == 0 && (ledger_supply(&l, &supply) < 0 || supply != minted))
        rc = sim_fail(s, "supply %" PRIu64 " != accepted mints %" PRIu64, supply, minted);
    free(t.txs);
    return rc;
}

static int run_seed(uint64_t seed, bool quick, char *why, size_t why_cap, struct sim *s)
{
    memset(s, 0, sizeof *s);
    s->why = why;
    s->why_cap = why_cap;
    nx_rng_seed(&s->rng, seed);
    memset(s->gen.cluster, 0x42, LEDGER_CLUSTER_ID_BYTES);
    fx_key_make(&s->gen.op, 1);
    s->gen.time_ms = 1000000;
    for (int i = 0; i < SIM_USERS; i++)
        fx_key_make(&s->users[i], 100 + (uint64_t)i);
    for (int i = 0; i < SIM_NODES; i++)
        fx_key_make(&s->nodes[i], 200 + (uint64_t)i);
    fx_key_make(&s->stranger, 300);
    gen_setup(s);
    int steps = quick ? SIM_QUICK_STEPS : SIM_STEPS;
    for (int i = 0; i < steps; i++)
        gen_step(s);

    int rc = 0;
    for (int r = 0; r < SIM_REPLICAS; r++)
        s->stores[r] = ledger_store_mem_new();
    struct nx_rng rr[SIM_REPLICAS];
    for (int r = 0; r < SIM_REPLICAS; r++)
        nx_rng_seed(&rr[r], seed * 31 + (uint64_t)r + 1);
    /* replica 0 to half way, snapshot into the last replica, then everyone to the end */
    uint64_t half = s->n / 2;
    struct membuf snap = {0};
    if ((rc = replica_run(s, 0, &rr[0], half)) < 0)
        goto out;
    if (ledger_snapshot_write(s->stores[0], mem_sink, &snap) < 0 ||
        ledger_snapshot_install(s->stores[SIM_REPLICAS - 1], mem_source, &snap) < 0) {
        rc = sim_fail(s, "snapshot failed");
        goto out;
    }
    for (int r = 0; r < SIM_REPLICAS && rc == 0; r++)
        rc = replica_run(s, r, &rr[r], s->n);
    if (rc == 0)
        rc = check(s);
    if (getenv("NX_SIM_HIST")) {
        int hist[LEDGER_REJ__COUNT] = {0};
        for (size_t i = 1; i <= s->n; i++)
            hist[s->res[0][i].reason]++;
        for (int i = 0; i < LEDGER_REJ__COUNT; i++)
            if (hist[i])
                printf("  %-48s %d\n", ledger_reason_str(i), hist[i]);
    }
out:
    free(snap.p);
    for (int r = 0; r < SIM_REPLICAS; r++)
        ledger_store_mem_free(s->stores[r]);
    for (size_t i = 0; i < s->n; i++)
        free(s->entries[i]);
    return rc;
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : dflt;
}

static void seeds_keep_replicas_identical_and_the_ledger_consistent(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        fail_msg("sodium_init");
    bool quick = env_u64("NX_SIM_QUICK", 0) != 0 || SIM_SANITIZED;
    uint64_t one = env_u64("NX_SIM_SEED", 0);
    uint64_t first = one ? one : 1;
    uint64_t count = one ? 1 : env_u64("NX_SIM_SEEDS", quick ? SIM_QUICK_SEEDS : SIM_DEFAULT_SEEDS);
    struct sim *s = malloc(sizeof *s);
    NX_ASSERT(s);
    uint64_t failures = 0, crashes = 0, redeliveries = 0, entries = 0, accepted = 0, pruned = 0;
    for (uint64_t seed = first; seed < first + count; seed++) {
        char why[512];
        if (run_seed(seed, quick, why, sizeof why, s) < 0) {
            printf("seed %" PRIu64 " FAILED: %s\n  replay: NX_SIM_SEED=%" PRIu64 " sim_ledger\n",
                   seed, why, seed);
            failures++;
        }
        crashes += s->crashes;
        redeliveries += s->redeliveries;
        entries += s->n;
        accepted += s->accepted;
        pruned += s->pruned;
    }
    printf("sim_ledger: %" PRIu64 " seeds, %" PRIu64 " entries, %" PRIu64
           " accepted transactions, %" PRIu64 " crashes before commit, %" PRIu64
           " re-deliveries, %" PRIu64 " idempotency records pruned, %" PRIu64 " failed\n",
           count, entries, accepted, crashes, redeliveries, pruned, failures);
    free(s);
    assert_int_equal(failures, 0);
    assert_true(pruned > 0); /* the window is short enough for pruning to happen */
}

static void same_seed_gives_the_same_log(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        fail_msg("sodium_init");
    struct sim *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    NX_ASSERT(a && b);
    char why[512];
    assert_int_equal(run_seed(7, true, why, sizeof why, a), 0);
    assert_int_equal(run_seed(7, true, why, sizeof why, b), 0);
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->accepted, b->accepted);
    assert_int_equal(a->crashes, b->crashes);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_seed_gives_the_same_log),
        cmocka_unit_test(seeds_keep_replicas_identical_and_the_ledger_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
