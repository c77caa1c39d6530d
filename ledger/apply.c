/*
 * apply.c - the state machine: one committed Raft entry in, writes to a batch
 * and a result out. Deterministic by construction: it reads only the store
 * (through the batch), the entry and the Raft index; time is the proposer's
 * timestamp from the entry, clamped so it never goes back.
 *
 * Every entry goes through the same pipeline, and each step either passes
 * or decides the entry's fate:
 *
 *   applied index >= raft_index ? -> already applied, nothing written
 *   entry wrapper / command decode -> MALFORMED
 *   genesis present? cluster id    -> NO_GENESIS / WRONG_CLUSTER
 *   author's signature             -> BAD_SIG
 *   created_ms within the window   -> STALE / FUTURE
 *   idempotency record             -> duplicate (original result) / IDEM_CONFLICT
 *   the command's own checks       -> PERM, OVERDRAFT, TOKEN_*, ...
 *   writes (only when every check passed)
 *   idempotency record (authenticated commands) and its age index
 *   forget up to LEDGER_PRUNE_PER_ENTRY records that left the window
 *   audit record (every entry), meta/applied = raft_index, meta/time
 *
 * Invariants (checked by ledger_verify and the simulator):
 *   I1 a command's writes happen all or not at all: every exec_* function
 *      does all its checks before its first write;
 *   I2 sum of balances == meta/supply == sum of mints; transfers and charges
 *      move value, never make it;
 *   I3 tx/<n> exists for n in 1..head.seq, each hash chained on the last;
 *   I4 one (scope, idempotency key) leads to at most one applied command,
 *      also after its record was forgotten (the command is STALE by then).
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "ledger/internal.h"

struct actx {
    struct ledger *l;
    struct ledger_store *s;
    struct ledger_batch *b;
    const struct ledger_cmd *cmd;
    struct rec_genesis g;
    uint64_t index;
    uint64_t now_ms;
    struct ledger_result *out;
};

static const uint8_t ZERO32[32];

static bool is_operator(const struct actx *x)
{
    return memcmp(x->cmd->author, x->g.operator_pk, LEDGER_KEY_BYTES) == 0;
}

/* 1 when found, 0 when absent, <0 on a store error. */
static int exists(const struct actx *x, const struct key *k)
{
    uint8_t val[LEDGER_MAX_VALUE_BYTES];
    size_t len;
    int rc = raw_get(x->s, x->b, k, val, sizeof val, &len);
    if (rc == NX_ERR_NOT_FOUND)
        return 0;
    return rc == 0 || rc == NX_ERR_TOO_BIG ? 1 : rc;
}

static int has_grant(const struct actx *x, const char *action, const char *resource)
{
    return perm_granted(x->s, x->b, x->cmd->author, action, resource);
}

/* Operator, or a grant for action on "*". Returns a reason or <0. */
static int allow_global(const struct actx *x, const char *action)
{
    if (is_operator(x))
        return LEDGER_OK;
    int rc = has_grant(x, action, "*");
    return rc < 0 ? rc : rc ? LEDGER_OK : LEDGER_REJ_PERM;
}

/* Operator, the tenant's owner, or a grant for action on the tenant. */
static int allow_tenant(const struct actx *x, const char *action, const char *tenant)
{
    struct rec_tenant t;
    struct key k;
    key_str(&k, "tenant/", tenant);
    int rc = rec_get(x->s, x->b, &k, rec_tenant_fields, &t);
    if (rc == NX_ERR_NOT_FOUND)
        return LEDGER_REJ_UNKNOWN_TENANT;
    if (rc < 0)
        return rc;
    if (is_operator(x) || memcmp(t.owner, x->cmd->author, LEDGER_KEY_BYTES) == 0)
        return LEDGER_OK;
    rc = has_grant(x, action, tenant);
    return rc < 0 ? rc : rc ? LEDGER_OK : LEDGER_REJ_PERM;
}

static int get_account(const struct actx *x, const char *name, struct ledger_account *a)
{
    struct key k;
    key_str(&k, "account/", name);
    int rc = rec_get(x->s, x->b, &k, rec_account_fields, a);
    return rc == NX_ERR_NOT_FOUND ? LEDGER_REJ_UNKNOWN_ACCOUNT : rc;
}

static int put_account(const struct actx *x, const char *name, struct ledger_account *a)
{
    struct key k;
    key_str(&k, "account/", name);
    return rec_put(x->b, &k, rec_account_fields, a);
}

/* Appends a transaction to the chain (assigning seq and hash) and reports it. */
static int tx_append(const struct actx *x, uint8_t kind, const char *from, const char *to,
                     uint64_t amount)
{
    struct rec_head head = {0};
    struct key hk;
    key_str(&hk, "meta/", "txhead");
    int rc = rec_get(x->s, x->b, &hk, rec_head_fields, &head);
    if (rc < 0 && rc != NX_ERR_NOT_FOUND)
        return rc;
    struct ledger_tx tx;
    memset(&tx, 0, sizeof tx);
    tx.seq = head.seq + 1;
    tx.kind = kind;
    tx.time_ms = x->now_ms;
    tx.raft_index = x->index;
    strcpy(tx.from, from);
    strcpy(tx.to, to);
    tx.amount = amount;
    memcpy(tx.author, x->cmd->author, LEDGER_KEY_BYTES);
    memcpy(tx.idem_key, x->cmd->idem_key, LEDGER_IDEM_BYTES);
    memcpy(tx.prev_hash, head.hash, LEDGER_HASH_BYTES);
    if ((rc = tx_hash_compute(&tx, tx.hash)) < 0)
        return rc;
    struct codec c;
    if ((rc = rec_tx_encode(&tx, &c)) < 0)
        goto out;
    struct key tk;
    key_u64(&tk, "tx/", tx.seq);
    if ((rc = ledger_batch_put(x->b, tk.b, tk.len, c.buf, c.len)) < 0)
        goto out;
    head.seq = tx.seq;
    memcpy(head.hash, tx.hash, LEDGER_HASH_BYTES);
    if ((rc = rec_put(x->b, &hk, rec_head_fields, &head)) < 0)
        goto out;
    x->out->tx_seq = tx.seq;
    memcpy(x->out->tx_hash, tx.hash, LEDGER_HASH_BYTES);
out:
    codec_free(&c);
    return rc;
}

static int put_u64(struct ledger_batch *b, const char *name, uint64_t v)
{
    struct key k;
    key_str(&k, "meta/", name);
    uint8_t buf[8];
    le64_put(buf, v);
    return ledger_batch_put(b, k.b, k.len, buf, 8);
}

/* ---- nodes and tokens ------------------------------------------------------ */

static int put_node(const struct actx *x, const uint8_t *node, const char *token_id)
{
    struct ledger_node n;
    memset(&n, 0, sizeof n);
    n.admitted_ms = x->now_ms;
    strcpy(n.token_id, token_id);
    struct key k, rm;
    key_make(&k, "node/", node, LEDGER_KEY_BYTES, NULL, 0);
    key_make(&rm, "noderm/", node, LEDGER_KEY_BYTES, NULL, 0);
    int rc = ledger_batch_del(x->b, rm.b, rm.len); /* admitted again: no longer refused */
    return rc < 0 ? rc : rec_put(x->b, &k, rec_node_fields, &n);
}

static int exec_genesis(struct actx *x, bool have_genesis)
{
    if (have_genesis)
        return LEDGER_REJ_EXISTS;
    memcpy(x->g.cluster_id, x->cmd->cluster_id, LEDGER_CLUSTER_ID_BYTES);
    memcpy(x->g.operator_pk, x->cmd->author, LEDGER_KEY_BYTES);
    x->g.window_ms =
        x->cmd->u.genesis.window_ms ? x->cmd->u.genesis.window_ms : LEDGER_CMD_WINDOW_MS;
    struct key k;
    key_str(&k, "meta/", "genesis");
    int rc = rec_put(x->b, &k, rec_genesis_fields, &x->g);
    if (rc == 0 && memcmp(x->cmd->u.genesis.first_node, ZERO32, LEDGER_KEY_BYTES) != 0)
        rc = put_node(x, x->cmd->u.genesis.first_node, "");
    return rc;
}

static int exec_admit(struct actx *x)
{
    const struct ledger_cmd_node_admit *a = &x->cmd->u.admit;
    struct key nk;
    key_make(&nk, "node/", a->node, LEDGER_KEY_BYTES, NULL, 0);
    if (a->token_id[0] == '\0') { /* the operator admits directly */
        if (!is_operator(x))
            return LEDGER_REJ_PERM;
        int e = exists(x, &nk);
        return e < 0 ? e : e ? LEDGER_REJ_NODE_EXISTS : put_node(x, a->node, "");
    }
    if (!is_operator(x) && memcmp(a->node, x->cmd->author, LEDGER_KEY_BYTES) != 0)
        return LEDGER_REJ_PERM; /* a node admits itself */
    uint8_t pin[LEDGER_HASH_BYTES];
    ledger_operator_pin(x->g.operator_pk, pin);
    if (memcmp(a->pin_cluster, x->g.cluster_id, LEDGER_CLUSTER_ID_BYTES) != 0 ||
        memcmp(a->pin_operator, pin, LEDGER_HASH_BYTES) != 0)
        return LEDGER_REJ_TOKEN_OTHER_CLUSTER;
    struct ledger_token t;
    struct key tk;
    key_str(&tk, "token/", a->token_id);
    int rc = rec_get(x->s, x->b, &tk, rec_token_fields, &t);
    if (rc == NX_ERR_NOT_FOUND)
        return LEDGER_REJ_TOKEN_UNKNOWN;
    if (rc < 0)
        return rc;
    if (!ledger_token_proof_ok(x->g.cluster_id, a->token_id, a->node, a->nonce, a->proof,
                               t.verifier))
        return LEDGER_REJ_TOKEN_FORGED;
    int e = exists(x, &nk);
    if (e)
        return e < 0 ? e : LEDGER_REJ_NODE_EXISTS;
    if (x->now_ms >= t.expires_ms)
        return LEDGER_REJ_TOKEN_EXPIRED;
    if (t.uses_left == 0)
        return LEDGER_REJ_TOKEN_USED_UP;
    t.uses_left--; /* consumed in the same batch as the admission: atomic */
    if ((rc = rec_put(x->b, &tk, rec_token_fields, &t)) < 0)
        return rc;
    return put_node(x, a->node, a->token_id);
}

static int exec_node_remove(struct actx *x)
{
    const uint8_t *node = x->cmd->u.node_remove.node;
    if (!is_operator(x) && memcmp(node, x->cmd->author, LEDGER_KEY_BYTES) != 0)
        return LEDGER_REJ_PERM;
    struct key k;
    key_make(&k, "node/", node, LEDGER_KEY_BYTES, NULL, 0);
    int e = exists(x, &k);
    if (e <= 0)
        return e < 0 ? e : LEDGER_REJ_NOT_FOUND;
    /* The tombstone keeps the key refused by every member's trust, even one
     * whose local trust file still lists it (docs/ledger.md "Trust"). */
    struct ledger_node gone;
    memset(&gone, 0, sizeof gone);
    gone.admitted_ms = x->now_ms;
    struct key rm;
    key_make(&rm, "noderm/", node, LEDGER_KEY_BYTES, NULL, 0);
    int rc = rec_put(x->b, &rm, rec_node_fields, &gone);
    return rc < 0 ? rc : ledger_batch_del(x->b, k.b, k.len);
}

static bool token_id_ok(const char *id)
{
    if (strlen(id) != LEDGER_TOKEN_ID_LEN)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            return false;
    return true;
}

static int exec_token_create(struct actx *x)
{
    const struct ledger_cmd_token_create *c = &x->cmd->u.token_create;
    int r = allow_global(x, "token.admin");
    if (r != LEDGER_OK)
        return r;
    if (!token_id_ok(c->id) || c->uses == 0 || c->expires_ms <= x->now_ms)
        return LEDGER_REJ_BAD_VALUE;
    struct key k;
    key_str(&k, "token/", c->id);
    int e = exists(x, &k);
    if (e)
        return e < 0 ? e : LEDGER_REJ_EXISTS;
    struct ledger_token t;
    memset(&t, 0, sizeof t);
    memcpy(t.verifier, c->verifier, LEDGER_KEY_BYTES);
    t.expires_ms = c->expires_ms;
    t.uses_left = c->uses;
    return rec_put(x->b, &k, rec_token_fields, &t);
}

static int exec_token_expire(struct actx *x)
{
    int r = allow_global(x, "token.admin");
    if (r != LEDGER_OK)
        return r;
    struct ledger_token t;
    struct key k;
    key_str(&k, "token/", x->cmd->u.token_expire.id);
    int rc = rec_get(x->s, x->b, &k, rec_token_fields, &t);
    if (rc == NX_ERR_NOT_FOUND)
        return LEDGER_REJ_TOKEN_UNKNOWN;
    if (rc < 0)
        return rc;
    if (t.expires_ms > x->now_ms)
        t.expires_ms = x->now_ms;
    t.uses_left = 0;
    return rec_put(x->b, &k, rec_token_fields, &t);
}

/* ---- tenants, accounts, agents, deployments, permissions ------------------ */

static int exec_tenant_create(struct actx *x)
{
    int r = allow_global(x, "tenant.create");
    if (r != LEDGER_OK)
        return r;
    struct key k;
    key_str(&k, "tenant/", x->cmd->u.tenant.name);
    int e = exists(x, &k);
    if (e)
        return e < 0 ? e : LEDGER_REJ_EXISTS;
    struct rec_tenant t;
    memcpy(t.owner, x->cmd->u.tenant.owner, LEDGER_KEY_BYTES);
    return rec_put(x->b, &k, rec_tenant_fields, &t);
}

static int exec_account_create(struct actx *x)
{
    const struct ledger_cmd_account_create *c = &x->cmd->u.account;
    int r = allow_tenant(x, "account.create", c->tenant);
    if (r != LEDGER_OK)
        return r;
    struct ledger_account a;
    r = get_account(x, c->name, &a);
    if (r != LEDGER_REJ_UNKNOWN_ACCOUNT)
        return r < 0 ? r : LEDGER_REJ_EXISTS;
    memset(&a, 0, sizeof a);
    strcpy(a.tenant, c->tenant);
    memcpy(a.key, c->key, LEDGER_KEY_BYTES);
    return put_account(x, c->name, &a);
}

static int exec_agent_publish(struct actx *x)
{
    const struct ledger_cmd_agent_publish *c = &x->cmd->u.publish;
    int r = allow_tenant(x, "agent.publish", c->tenant);
    if (r != LEDGER_OK)
        return r;
    char owner[LEDGER_STR_CAP] = "";
    struct key nk, vk;
    key_str(&nk, "agent/", c->name);
    size_t len = 0;
    int rc = raw_get(x->s, x->b, &nk, (uint8_t *)owner, LEDGER_NAME_MAX, &len);
    if (rc < 0 && rc != NX_ERR_NOT_FOUND)
        return rc;
    if (rc == 0 && (len != strlen(c->tenant) || memcmp(owner, c->tenant, len) != 0))
        return LEDGER_REJ_PERM; /* the name belongs to another tenant */
    key_agent(&vk, c->name, c->version);
    int e = exists(x, &vk);
    if (e)
        return e < 0 ? e : LEDGER_REJ_EXISTS;
    if (!ledger_agent_sig_ok(c->name, c->version, c->manifest_hash, c->bundle_hash,
                             c->publisher_sig, x->cmd->author))
        return LEDGER_REJ_BAD_PUBLISHER_SIG;
    /* The manifest is stored so every member can search capabilities; it must be
     * the one the publisher signed (through manifest_hash). */
    uint8_t mh[LEDGER_HASH_BYTES];
    crypto_generichash(mh, sizeof mh, c->manifest, c->manifest_len, NULL, 0);
    if (c->manifest_len == 0 || sodium_memcmp(mh, c->manifest_hash, LEDGER_HASH_BYTES) != 0)
        return LEDGER_REJ_BAD_MANIFEST;
    struct key mk;
    key_manifest(&mk, c->name, c->version);
    struct rec_agent a;
    memset(&a, 0, sizeof a);
    strcpy(a.tenant, c->tenant);
    memcpy(a.manifest_hash, c->manifest_hash, LEDGER_HASH_BYTES);
    memcpy(a.bundle_hash, c->bundle_hash, LEDGER_HASH_BYTES);
    memcpy(a.publisher, x->cmd->author, LEDGER_KEY_BYTES);
    memcpy(a.publisher_sig, c->publisher_sig, LEDGER_SIG_BYTES);
    if ((rc = ledger_batch_put(x->b, nk.b, nk.len, (const uint8_t *)c->tenant, strlen(c->tenant))) <
            0 ||
        (rc = ledger_batch_put(x->b, mk.b, mk.len, c->manifest, c->manifest_len)) < 0)
        return rc;
    return rec_put(x->b, &vk, rec_agent_fields, &a);
}

static int exec_agent_deprecate(struct actx *x)
{
    const struct ledger_cmd_agent_deprecate *c = &x->cmd->u.deprecate;
    struct rec_agent a;
    struct key k;
    key_agent(&k, c->name, c->version);
    int rc = rec_get(x->s, x->b, &k, rec_agent_fields, &a);
    if (rc == NX_ERR_NOT_FOUND)
        return LEDGER_REJ_NOT_FOUND;
    if (rc < 0)
        return rc;
    int r = allow_tenant(x, "agent.publish", a.tenant);
    if (r != LEDGER_OK)
        return r;
    a.deprecated = 1;
    return rec_put(x->b, &k, rec_agent_fields, &a);
}

static int exec_deploy_put(struct actx *x)
{
    const struct ledger_cmd_deploy_put *c = &x->cmd->u.deploy;
    int r = allow_tenant(x, "deploy.write", c->tenant);
    if (r != LEDGER_OK)
        return r;
    if (c->replicas == 0 || c->replicas > LEDGER_MAX_REPLICAS)
        return LEDGER_REJ_BAD_VALUE;
    struct rec_agent a;
    struct key ak, dk;
    key_agent(&ak, c->agent, c->version);
    int rc = rec_get(x->s, x->b, &ak, rec_agent_fields, &a);
    if (rc == NX_ERR_NOT_FOUND)
        return LEDGER_REJ_NOT_FOUND;
    if (rc < 0)
        return rc;
    if (a.deprecated)
        return LEDGER_REJ_DEPRECATED;
    struct rec_deploy d;
    key_str(&dk, "deploy/", c->name);
    rc = rec_get(x->s, x->b, &dk, rec_deploy_fields, &d);
    if (rc < 0 && rc != NX_ERR_NOT_FOUND)
        return rc;
    if (rc == 0 && strcmp(d.tenant, c->tenant) != 0)
        return LEDGER_REJ_PERM; /* the deployment belongs to another tenant */
    memset(&d, 0, sizeof d);
    strcpy(d.tenant, c->tenant);
    strcpy(d.agent, c->agent);
    strcpy(d.version, c->version);
    d.replicas = c->replicas;
    return rec_put(x->b, &dk, rec_deploy_fields, &d);
}

static int exec_deploy_delete(struct actx *x)
{
    struct rec_deploy d;
    struct key k;
    key_str(&k, "deploy/", x->cmd->u.deploy_delete.name);
    int rc = rec_get(x->s, x->b, &k, rec_deploy_fields, &d);
    if (rc == NX_ERR_NOT_FOUND)
        return LEDGER_REJ_NOT_FOUND;
    if (rc < 0)
        return rc;
    int r = allow_tenant(x, "deploy.write", d.tenant);
    if (r != LEDGER_OK)
        return r;
    return ledger_batch_del(x->b, k.b, k.len);
}

static int exec_perm(struct actx *x, bool grant)
{
    const struct ledger_cmd_perm *c = &x->cmd->u.perm;
    if (!is_operator(x)) {
        /* a tenant's owner grants on its own tenant; "*" is the operator's */
        if (strcmp(c->resource, "*") == 0)
            return LEDGER_REJ_PERM;
        struct rec_tenant t;
        struct key tk;
        key_str(&tk, "tenant/", c->resource);
        int rc = rec_get(x->s, x->b, &tk, rec_tenant_fields, &t);
        if (rc < 0 && rc != NX_ERR_NOT_FOUND)
            return rc;
        if (rc == NX_ERR_NOT_FOUND || memcmp(t.owner, x->cmd->author, LEDGER_KEY_BYTES) != 0)
            return LEDGER_REJ_PERM;
    }
    char tail[2 * LEDGER_STR_CAP + 2];
    int n = snprintf(tail, sizeof tail, "%s/%s", c->action, c->resource);
    struct key k;
    key_make(&k, "perm/", c->subject, LEDGER_KEY_BYTES, tail, (size_t)n);
    if (grant)
        return ledger_batch_put(x->b, k.b, k.len, NULL, 0);
    int e = exists(x, &k);
    if (e <= 0)
        return e < 0 ? e : LEDGER_REJ_NOT_FOUND;
    return ledger_batch_del(x->b, k.b, k.len);
}

/* ---- money ------------------------------------------------------------------ */

/* Moves amount between two existing, distinct accounts, then chains the tx. */
static int move(struct actx *x, const char *from, const char *to, uint64_t amount, bool payer_sig)
{
    if (amount == 0 || strcmp(from, to) == 0)
        return LEDGER_REJ_BAD_VALUE;
    struct ledger_account a, b;
    int r = get_account(x, from, &a);
    if (r != 0)
        return r;
    if ((r = get_account(x, to, &b)) != 0)
        return r;
    if (payer_sig && !is_operator(x) && memcmp(a.key, x->cmd->author, LEDGER_KEY_BYTES) != 0) {
        r = has_grant(x, "transfer", from);
        if (r <= 0)
            return r < 0 ? r : LEDGER_REJ_PERM;
    }
    if (a.balance < amount)
        return LEDGER_REJ_OVERDRAFT;
    if (b.balance > UINT64_MAX - amount)
        return LEDGER_REJ_OVERFLOW;
    a.balance -= amount;
    b.balance += amount;
    if ((r = put_account(x, from, &a)) < 0 || (r = put_account(x, to, &b)) < 0)
        return r;
    return tx_append(x, x->cmd->type, from, to, amount);
}

static int exec_mint(struct actx *x)
{
    const struct ledger_cmd_mint *c = &x->cmd->u.mint;
    int r = allow_global(x, "mint");
    if (r != LEDGER_OK)
        return r;
    if (c->amount == 0)
        return LEDGER_REJ_BAD_VALUE;
    struct ledger_account a;
    if ((r = get_account(x, c->to, &a)) != 0)
        return r;
    uint64_t supply;
    if ((r = meta_u64_get(x->s, x->b, "supply", &supply)) < 0)
        return r;
    if (supply > UINT64_MAX - c->amount)
        return LEDGER_REJ_OVERFLOW; /* every balance <= supply, so no balance overflows */
    a.balance += c->amount;
    if ((r = put_account(x, c->to, &a)) < 0 ||
        (r = put_u64(x->b, "supply", supply + c->amount)) < 0)
        return r;
    return tx_append(x, LEDGER_CMD_MINT, "", c->to, c->amount);
}

static int exec_charge(struct actx *x)
{
    const struct ledger_cmd_charge *c = &x->cmd->u.charge;
    if (!is_operator(x)) {
        struct key k;
        key_make(&k, "node/", x->cmd->author, LEDGER_KEY_BYTES, NULL, 0);
        int e = exists(x, &k);
        if (e <= 0)
            return e < 0 ? e : LEDGER_REJ_PERM; /* only member nodes meter runs */
    }
    return move(x, c->account, c->payee, c->amount, false);
}

static int exec(struct actx *x, bool have_genesis)
{
    switch (x->cmd->type) {
    case LEDGER_CMD_GENESIS:
        return exec_genesis(x, have_genesis);
    case LEDGER_CMD_NODE_ADMIT:
        return exec_admit(x);
    case LEDGER_CMD_NODE_REMOVE:
        return exec_node_remove(x);
    case LEDGER_CMD_TOKEN_CREATE:
        return exec_token_create(x);
    case LEDGER_CMD_TOKEN_EXPIRE:
        return exec_token_expire(x);
    case LEDGER_CMD_TENANT_CREATE:
        return exec_tenant_create(x);
    case LEDGER_CMD_ACCOUNT_CREATE:
        return exec_account_create(x);
    case LEDGER_CMD_AGENT_PUBLISH:
        return exec_agent_publish(x);
    case LEDGER_CMD_AGENT_DEPRECATE:
        return exec_agent_deprecate(x);
    case LEDGER_CMD_DEPLOY_PUT:
        return exec_deploy_put(x);
    case LEDGER_CMD_DEPLOY_DELETE:
        return exec_deploy_delete(x);
    case LEDGER_CMD_PERM_GRANT:
        return exec_perm(x, true);
    case LEDGER_CMD_PERM_REVOKE:
        return exec_perm(x, false);
    case LEDGER_CMD_TRANSFER:
        return move(x, x->cmd->u.transfer.from, x->cmd->u.transfer.to, x->cmd->u.transfer.amount,
                    true);
    case LEDGER_CMD_MINT:
        return exec_mint(x);
    case LEDGER_CMD_CHARGE:
        return exec_charge(x);
    default:
        return LEDGER_REJ_MALFORMED;
    }
}

/* ---- the pipeline --------------------------------------------------------- */

/* The idempotency record's key: per author, except a charge: per run, cluster-wide. */
static void idem_key(struct key *k, const struct ledger_cmd *cmd)
{
    if (cmd->type == LEDGER_CMD_CHARGE) {
        uint8_t h[LEDGER_HASH_BYTES];
        crypto_generichash(h, sizeof h, (const uint8_t *)cmd->u.charge.run_id,
                           strlen(cmd->u.charge.run_id), (const uint8_t *)"run", 3);
        key_make(k, "idem/", ZERO32, 32, h, sizeof h);
    } else {
        key_make(k, "idem/", cmd->author, LEDGER_KEY_BYTES, cmd->idem_key, LEDGER_IDEM_BYTES);
    }
}

/* Runs the checks and the command; returns a reason (>= 0) or a store error. */
static int decide(struct actx *x, const uint8_t *cmd_bytes, size_t cmd_len, struct ledger_cmd *cmd)
{
    if (ledger_cmd_decode(cmd_bytes, cmd_len, cmd) < 0)
        return LEDGER_REJ_MALFORMED;
    x->out->type = cmd->type;
    struct key gk;
    key_str(&gk, "meta/", "genesis");
    int rc = rec_get(x->s, x->b, &gk, rec_genesis_fields, &x->g);
    if (rc < 0 && rc != NX_ERR_NOT_FOUND)
        return rc;
    bool have_genesis = rc == 0;
    if (!have_genesis && cmd->type != LEDGER_CMD_GENESIS)
        return LEDGER_REJ_NO_GENESIS;
    if (have_genesis && memcmp(cmd->cluster_id, x->g.cluster_id, LEDGER_CLUSTER_ID_BYTES) != 0)
        return LEDGER_REJ_WRONG_CLUSTER;
    /* The hash names the exact bytes, for the idempotency record and for the
     * memo of a signature this node already checked (ledger_cmd_precheck). */
    uint8_t cmd_hash[LEDGER_HASH_BYTES];
    crypto_generichash(cmd_hash, sizeof cmd_hash, cmd_bytes, cmd_len, NULL, 0);
    if (!ledger_sig_memo_take(x->l, cmd_hash) && ledger_cmd_verify(cmd_bytes, cmd_len) < 0)
        return LEDGER_REJ_BAD_SIG;
    /* Commands live for a window around apply time; beyond it their
     * idempotency records may be gone, so they must be refused (genesis has
     * no window yet: it is refused by EXISTS when replayed). */
    if (have_genesis && cmd->created_ms < x->now_ms && x->now_ms - cmd->created_ms > x->g.window_ms)
        return LEDGER_REJ_STALE;
    if (have_genesis && cmd->created_ms > x->now_ms && cmd->created_ms - x->now_ms > x->g.window_ms)
        return LEDGER_REJ_FUTURE;

    struct key ik;
    idem_key(&ik, cmd);
    struct rec_idem idem;
    rc = rec_get(x->s, x->b, &ik, rec_idem_fields, &idem);
    if (rc < 0 && rc != NX_ERR_NOT_FOUND)
        return rc;
    if (rc == 0) {
        if (sodium_memcmp(idem.cmd_hash, cmd_hash, LEDGER_HASH_BYTES) != 0)
            return LEDGER_REJ_IDEM_CONFLICT;
        x->out->duplicate = true;
        x->out->tx_seq = idem.tx_seq;
        memcpy(x->out->tx_hash, idem.tx_hash, LEDGER_HASH_BYTES);
        return idem.reason;
    }

    /* A rejection leaves no writes behind: every exec_* checks first and
     * writes last (invariant I1); a write fails only with a store error,
     * which is fatal for the whole batch. */
    int reason = exec(x, have_genesis);
    if (reason < 0)
        return reason;
    if (cmd->type == LEDGER_CMD_CHARGE && reason != LEDGER_OK)
        return reason; /* a refused charge must not claim the run for its author */
    memset(&idem, 0, sizeof idem);
    memcpy(idem.cmd_hash, cmd_hash, LEDGER_HASH_BYTES);
    idem.reason = (uint8_t)reason;
    idem.tx_seq = x->out->tx_seq;
    memcpy(idem.tx_hash, x->out->tx_hash, LEDGER_HASH_BYTES);
    rc = rec_put(x->b, &ik, rec_idem_fields, &idem);
    if (rc == 0 && cmd->type != LEDGER_CMD_CHARGE) {
        /* index by age so prune() can forget it; run records are kept */
        uint8_t be[8 + LEDGER_KEY_BYTES + LEDGER_IDEM_BYTES];
        be64_put(be, cmd->created_ms);
        memcpy(be + 8, cmd->author, LEDGER_KEY_BYTES);
        memcpy(be + 8 + LEDGER_KEY_BYTES, cmd->idem_key, LEDGER_IDEM_BYTES);
        struct key tk;
        key_make(&tk, "idemt/", be, sizeof be, NULL, 0);
        rc = ledger_batch_put(x->b, tk.b, tk.len, NULL, 0);
    }
    return rc < 0 ? rc : reason;
}

/*
 * Forgets up to LEDGER_PRUNE_PER_ENTRY idempotency records whose command left
 * the window (created_ms + window < now). Safe: such a command, replayed, is
 * refused as STALE before its record would be consulted, and time never goes
 * back. Deterministic: it reads the logical state (batch over store).
 */
static int prune(struct actx *x)
{
    struct key gk;
    key_str(&gk, "meta/", "genesis");
    int rc = rec_get(x->s, x->b, &gk, rec_genesis_fields, &x->g);
    if (rc == NX_ERR_NOT_FOUND)
        return 0;
    if (rc < 0)
        return rc;
    for (int i = 0; i < LEDGER_PRUNE_PER_ENTRY; i++) {
        struct key k;
        if ((rc = merged_first(x->s, x->b, "idemt/", &k)) <= 0)
            return rc;
        const size_t pl = 6; /* "idemt/" */
        if (k.len != pl + 8 + LEDGER_KEY_BYTES + LEDGER_IDEM_BYTES)
            return NX_ERR_CORRUPT;
        uint64_t created = be64_get(k.b + pl);
        if (x->now_ms <= created || x->now_ms - created <= x->g.window_ms)
            return 0; /* the oldest is still inside the window */
        struct key ik;
        key_make(&ik, "idem/", k.b + pl + 8, LEDGER_KEY_BYTES + LEDGER_IDEM_BYTES, NULL, 0);
        if ((rc = ledger_batch_del(x->b, k.b, k.len)) < 0 ||
            (rc = ledger_batch_del(x->b, ik.b, ik.len)) < 0)
            return rc;
    }
    return 0;
}

void ledger_init(struct ledger *l, struct ledger_store *store)
{
    l->store = store;
    l->memo = NULL;
}

int ledger_apply(struct ledger *l, const uint8_t *entry, size_t len, uint64_t raft_index,
                 struct ledger_batch *batch, struct ledger_result *out)
{
    memset(out, 0, sizeof *out);
    struct actx x = {.l = l, .s = l->store, .b = batch, .index = raft_index, .out = out};
    uint64_t applied = 0, last_time = 0;
    int rc = meta_u64_get(x.s, x.b, "applied", &applied);
    if (rc < 0)
        return rc;
    if (raft_index <= applied) {
        out->already_applied = true;
        return 0;
    }
    if ((rc = meta_u64_get(x.s, x.b, "time", &last_time)) < 0)
        return rc;
    x.now_ms = last_time;
    struct ledger_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    x.cmd = &cmd;
    int reason = LEDGER_REJ_MALFORMED;
    if (len >= LEDGER_ENTRY_HEADER_BYTES && len <= LEDGER_MAX_ENTRY_BYTES &&
        memcmp(entry, "NXLE-v1:", 8) == 0) {
        uint64_t proposed = le64_get(entry + 8);
        if (proposed > x.now_ms)
            x.now_ms = proposed; /* monotonic: a leader whose clock lags cannot go back */
        reason =
            decide(&x, entry + LEDGER_ENTRY_HEADER_BYTES, len - LEDGER_ENTRY_HEADER_BYTES, &cmd);
        if (reason < 0)
            return reason;
    }
    out->reason = reason;
    if ((rc = prune(&x)) < 0)
        return rc;

    struct ledger_audit a;
    memset(&a, 0, sizeof a);
    a.type = out->type;
    a.reason = reason;
    a.duplicate = out->duplicate;
    memcpy(a.author, cmd.author, LEDGER_KEY_BYTES);
    a.time_ms = x.now_ms;
    a.tx_seq = reason == LEDGER_OK ? out->tx_seq : 0;
    struct key ak;
    key_u64(&ak, "audit/", raft_index);
    if ((rc = rec_put(batch, &ak, rec_audit_fields, &a)) < 0 ||
        (rc = put_u64(batch, "time", x.now_ms)) < 0 ||
        (rc = put_u64(batch, "applied", raft_index)) < 0)
        return rc;
    return 0;
}

static const char *const REASONS[LEDGER_REJ__COUNT] = {
    [LEDGER_OK] = "ok",
    [LEDGER_REJ_MALFORMED] = "malformed entry or command",
    [LEDGER_REJ_WRONG_CLUSTER] = "command for another cluster",
    [LEDGER_REJ_BAD_SIG] = "bad signature",
    [LEDGER_REJ_NO_GENESIS] = "cluster has no genesis yet",
    [LEDGER_REJ_PERM] = "permission denied",
    [LEDGER_REJ_UNKNOWN_ACCOUNT] = "unknown account",
    [LEDGER_REJ_OVERDRAFT] = "insufficient balance",
    [LEDGER_REJ_OVERFLOW] = "amount overflow",
    [LEDGER_REJ_IDEM_CONFLICT] = "idempotency key reused for a different command",
    [LEDGER_REJ_EXISTS] = "already exists",
    [LEDGER_REJ_NOT_FOUND] = "not found",
    [LEDGER_REJ_TOKEN_UNKNOWN] = "unknown join token",
    [LEDGER_REJ_TOKEN_EXPIRED] = "join token expired",
    [LEDGER_REJ_TOKEN_USED_UP] = "join token used up",
    [LEDGER_REJ_TOKEN_FORGED] = "join token proof does not verify",
    [LEDGER_REJ_TOKEN_OTHER_CLUSTER] = "join token of another cluster",
    [LEDGER_REJ_NODE_EXISTS] = "node already admitted",
    [LEDGER_REJ_BAD_PUBLISHER_SIG] = "bad publisher signature",
    [LEDGER_REJ_DEPRECATED] = "agent version deprecated",
    [LEDGER_REJ_BAD_MANIFEST] = "manifest missing or not the one manifest_hash names",
    [LEDGER_REJ_BAD_VALUE] = "bad value",
    [LEDGER_REJ_UNKNOWN_TENANT] = "unknown tenant",
    [LEDGER_REJ_STALE] = "command older than the command window",
    [LEDGER_REJ_FUTURE] = "command dated beyond the command window",
};

const char *ledger_reason_str(int reason)
{
    if (reason < 0 || reason >= LEDGER_REJ__COUNT)
        return "unknown reason";
    return REASONS[reason];
}
