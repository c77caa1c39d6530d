/*
 * fixture.h - test helpers shared by the ledger unit tests, the ledger
 * simulator and the benchmark: deterministic keys, a command builder, and
 * "submit": build, sign, wrap with a proposer time, apply, commit.
 */
#ifndef NX_TESTS_LEDGER_FIXTURE_H
#define NX_TESTS_LEDGER_FIXTURE_H

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "ledger/ledger.h"

struct fx_key {
    uint8_t pk[LEDGER_KEY_BYTES];
    uint8_t sk[LEDGER_SECRET_KEY_BYTES];
};

struct fx {
    struct ledger_store *store;
    struct ledger l;
    uint8_t cluster[LEDGER_CLUSTER_ID_BYTES];
    struct fx_key op;
    uint64_t index;   /* last Raft index used */
    uint64_t time_ms; /* proposer time of the next entry */
    uint64_t idem;    /* counter for fresh idempotency keys */
};

/* The same number always gives the same key. */
static inline void fx_key_make(struct fx_key *k, uint64_t n)
{
    uint8_t seed[crypto_sign_SEEDBYTES] = {0};
    memcpy(seed, &n, sizeof n);
    seed[31] = 0x5a;
    crypto_sign_seed_keypair(k->pk, k->sk, seed);
}

static inline void fx_fresh_idem(struct fx *f, uint8_t idem[LEDGER_IDEM_BYTES])
{
    memset(idem, 0, LEDGER_IDEM_BYTES);
    f->idem++;
    memcpy(idem, &f->idem, sizeof f->idem);
}

/* A command of type by author with a fresh idempotency key. */
static inline void fx_cmd(struct fx *f, struct ledger_cmd *c, uint8_t type,
                          const struct fx_key *author)
{
    memset(c, 0, sizeof *c);
    c->type = type;
    memcpy(c->cluster_id, f->cluster, LEDGER_CLUSTER_ID_BYTES);
    memcpy(c->author, author->pk, LEDGER_KEY_BYTES);
    fx_fresh_idem(f, c->idem_key);
    c->created_ms = f->time_ms;
}

/* Builds the Raft entry for a command signed with sk. When sk is not the
 * author's key, the command is signed by sk's owner and the author field is
 * then replaced: a forgery. Aborts on failure. */
static inline uint8_t *fx_entry(struct fx *f, const struct ledger_cmd *c, const uint8_t *sk,
                                size_t *len)
{
    uint8_t *cmd = NULL, *entry = NULL;
    size_t cmd_len = 0;
    struct ledger_cmd signer = *c;
    memcpy(signer.author, sk + 32, LEDGER_KEY_BYTES);
    if (ledger_cmd_build(&signer, sk, &cmd, &cmd_len) < 0)
        abort();
    memcpy(cmd + 40, c->author, LEDGER_KEY_BYTES); /* author field, docs/ledger.md */
    if (ledger_entry_wrap(cmd, cmd_len, f->time_ms, &entry, len) < 0)
        abort();
    free(cmd);
    return entry;
}

/* Applies one entry at the next index and commits it; returns the reason. */
static inline int fx_apply_entry(struct fx *f, const uint8_t *entry, size_t len,
                                 struct ledger_result *res)
{
    struct ledger_result tmp;
    if (!res)
        res = &tmp;
    struct ledger_batch b;
    ledger_batch_init(&b);
    if (ledger_apply(&f->l, entry, len, ++f->index, &b, res) < 0)
        abort();
    if (ledger_store_commit(f->store, &b) < 0)
        abort();
    ledger_batch_free(&b);
    return res->reason;
}

static inline int fx_submit(struct fx *f, const struct ledger_cmd *c, const uint8_t *sk,
                            struct ledger_result *res)
{
    size_t len;
    uint8_t *e = fx_entry(f, c, sk, &len);
    int r = fx_apply_entry(f, e, len, res);
    free(e);
    return r;
}

/* A fresh store with genesis done by the operator (key 1). */
static inline void fx_init(struct fx *f)
{
    memset(f, 0, sizeof *f);
    if (sodium_init() < 0)
        abort();
    f->store = ledger_store_mem_new();
    if (!f->store)
        abort();
    ledger_init(&f->l, f->store);
    memset(f->cluster, 0xc1, sizeof f->cluster);
    fx_key_make(&f->op, 1);
    f->time_ms = 1000000;
    struct ledger_cmd c;
    fx_cmd(f, &c, LEDGER_CMD_GENESIS, &f->op);
    if (fx_submit(f, &c, f->op.sk, NULL) != LEDGER_OK)
        abort();
}

static inline void fx_free(struct fx *f)
{
    ledger_store_mem_free(f->store);
    f->store = NULL;
}

static inline int fx_tenant(struct fx *f, const char *name, const struct fx_key *owner)
{
    struct ledger_cmd c;
    fx_cmd(f, &c, LEDGER_CMD_TENANT_CREATE, &f->op);
    strcpy(c.u.tenant.name, name);
    memcpy(c.u.tenant.owner, owner->pk, LEDGER_KEY_BYTES);
    return fx_submit(f, &c, f->op.sk, NULL);
}

static inline int fx_account(struct fx *f, const struct fx_key *author, const char *name,
                             const char *tenant, const struct fx_key *key)
{
    struct ledger_cmd c;
    fx_cmd(f, &c, LEDGER_CMD_ACCOUNT_CREATE, author);
    strcpy(c.u.account.name, name);
    strcpy(c.u.account.tenant, tenant);
    memcpy(c.u.account.key, key->pk, LEDGER_KEY_BYTES);
    return fx_submit(f, &c, author->sk, NULL);
}

static inline int fx_mint(struct fx *f, const struct fx_key *author, const char *to,
                          uint64_t amount)
{
    struct ledger_cmd c;
    fx_cmd(f, &c, LEDGER_CMD_MINT, author);
    strcpy(c.u.mint.to, to);
    c.u.mint.amount = amount;
    return fx_submit(f, &c, author->sk, NULL);
}

static inline void fx_transfer_cmd(struct fx *f, struct ledger_cmd *c, const struct fx_key *author,
                                   const char *from, const char *to, uint64_t amount)
{
    fx_cmd(f, c, LEDGER_CMD_TRANSFER, author);
    strcpy(c->u.transfer.from, from);
    strcpy(c->u.transfer.to, to);
    c->u.transfer.amount = amount;
}

static inline int fx_transfer(struct fx *f, const struct fx_key *author, const char *from,
                              const char *to, uint64_t amount)
{
    struct ledger_cmd c;
    fx_transfer_cmd(f, &c, author, from, to, amount);
    return fx_submit(f, &c, author->sk, NULL);
}

#endif
