/*
 * query.c - read-only views of the committed state for the node, the API and
 * the CLI, and ledger_verify, which recomputes the hash chain and every
 * balance from the transaction log (`nexus ledger verify`).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/internal.h"
#include "ledger/memmap.h"

int ledger_genesis_get(const struct ledger *l, uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES],
                       uint8_t operator_pk[LEDGER_KEY_BYTES])
{
    struct rec_genesis g;
    struct key k;
    key_str(&k, "meta/", "genesis");
    int rc = rec_get(l->store, NULL, &k, rec_genesis_fields, &g);
    if (rc < 0)
        return rc;
    memcpy(cluster_id, g.cluster_id, LEDGER_CLUSTER_ID_BYTES);
    memcpy(operator_pk, g.operator_pk, LEDGER_KEY_BYTES);
    return 0;
}

int ledger_applied_index(const struct ledger *l, uint64_t *out)
{
    return meta_u64_get(l->store, NULL, "applied", out);
}

int ledger_supply(const struct ledger *l, uint64_t *out)
{
    return meta_u64_get(l->store, NULL, "supply", out);
}

int ledger_tx_head(const struct ledger *l, uint64_t *seq, uint8_t hash[LEDGER_HASH_BYTES])
{
    struct rec_head h = {0};
    struct key k;
    key_str(&k, "meta/", "txhead");
    int rc = rec_get(l->store, NULL, &k, rec_head_fields, &h);
    if (rc < 0 && rc != NX_ERR_NOT_FOUND)
        return rc;
    *seq = h.seq;
    memcpy(hash, h.hash, LEDGER_HASH_BYTES);
    return 0;
}

int ledger_account_get(const struct ledger *l, const char *name, struct ledger_account *out)
{
    if (!ledger_name_ok(name))
        return NX_ERR_INVAL;
    memset(out, 0, sizeof *out);
    struct key k;
    key_str(&k, "account/", name);
    int rc = rec_get(l->store, NULL, &k, rec_account_fields, out);
    if (rc == 0)
        strcpy(out->name, name);
    return rc;
}

int ledger_balance(const struct ledger *l, const char *account, uint64_t *out)
{
    struct ledger_account a;
    int rc = ledger_account_get(l, account, &a);
    if (rc == 0)
        *out = a.balance;
    return rc;
}

int ledger_token_get(const struct ledger *l, const char *id, struct ledger_token *out)
{
    if (!ledger_name_ok(id))
        return NX_ERR_INVAL;
    memset(out, 0, sizeof *out);
    struct key k;
    key_str(&k, "token/", id);
    int rc = rec_get(l->store, NULL, &k, rec_token_fields, out);
    if (rc == 0)
        strcpy(out->id, id);
    return rc;
}

bool ledger_node_is_member(const struct ledger *l, const uint8_t key[LEDGER_KEY_BYTES])
{
    struct ledger_node n;
    struct key k;
    key_make(&k, "node/", key, LEDGER_KEY_BYTES, NULL, 0);
    return rec_get(l->store, NULL, &k, rec_node_fields, &n) == 0;
}

bool ledger_node_was_removed(const struct ledger *l, const uint8_t key[LEDGER_KEY_BYTES])
{
    struct ledger_node n;
    struct key k;
    key_make(&k, "noderm/", key, LEDGER_KEY_BYTES, NULL, 0);
    return rec_get(l->store, NULL, &k, rec_node_fields, &n) == 0;
}

/* ---- iteration ------------------------------------------------------------- */

struct walk {
    size_t prefix_len;
    void *fn;
    void *arg;
};

static int decode_with(const uint8_t *val, size_t len, rec_fields_fn fields, void *rec)
{
    struct codec c;
    codec_dec_init(&c, val, len);
    fields(&c, rec);
    return codec_done(&c) ? 0 : NX_ERR_CORRUPT;
}

static int account_cb(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                      size_t val_len)
{
    struct walk *w = arg;
    struct ledger_account a;
    memset(&a, 0, sizeof a);
    size_t nl = key_len - w->prefix_len;
    if (nl == 0 || nl > LEDGER_NAME_MAX)
        return NX_ERR_CORRUPT;
    memcpy(a.name, key + w->prefix_len, nl);
    int rc = decode_with(val, val_len, rec_account_fields, &a);
    return rc < 0 ? rc : ((ledger_account_fn)w->fn)(w->arg, &a);
}

static int tx_cb(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len)
{
    (void)key;
    (void)key_len;
    struct walk *w = arg;
    struct ledger_tx tx;
    int rc = rec_tx_decode(val, val_len, &tx);
    return rc < 0 ? rc : ((ledger_tx_fn)w->fn)(w->arg, &tx);
}

static int node_cb(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                   size_t val_len)
{
    struct walk *w = arg;
    struct ledger_node n;
    memset(&n, 0, sizeof n);
    if (key_len != w->prefix_len + LEDGER_KEY_BYTES)
        return NX_ERR_CORRUPT;
    memcpy(n.key, key + w->prefix_len, LEDGER_KEY_BYTES);
    int rc = decode_with(val, val_len, rec_node_fields, &n);
    return rc < 0 ? rc : ((ledger_node_fn)w->fn)(w->arg, &n);
}

static int audit_cb(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                    size_t val_len)
{
    struct walk *w = arg;
    struct ledger_audit a;
    memset(&a, 0, sizeof a);
    if (key_len != w->prefix_len + 8)
        return NX_ERR_CORRUPT;
    a.raft_index = be64_get(key + w->prefix_len);
    int rc = decode_with(val, val_len, rec_audit_fields, &a);
    return rc < 0 ? rc : ((ledger_audit_fn)w->fn)(w->arg, &a);
}

static int walk(const struct ledger *l, const char *prefix, ledger_kv_fn cb, void *fn, void *arg)
{
    struct walk w = {strlen(prefix), fn, arg};
    return l->store->ops->iter(l->store->ctx, (const uint8_t *)prefix, w.prefix_len, cb, &w);
}

int ledger_accounts_foreach(const struct ledger *l, ledger_account_fn fn, void *arg)
{
    return walk(l, "account/", account_cb, (void *)fn, arg);
}

int ledger_tx_foreach(const struct ledger *l, ledger_tx_fn fn, void *arg)
{
    return walk(l, "tx/", tx_cb, (void *)fn, arg);
}

int ledger_nodes_foreach(const struct ledger *l, ledger_node_fn fn, void *arg)
{
    return walk(l, "node/", node_cb, (void *)fn, arg);
}

int ledger_removed_nodes_foreach(const struct ledger *l, ledger_node_fn fn, void *arg)
{
    return walk(l, "noderm/", node_cb, (void *)fn, arg);
}

int ledger_audit_foreach(const struct ledger *l, ledger_audit_fn fn, void *arg)
{
    return walk(l, "audit/", audit_cb, (void *)fn, arg);
}

/* ---- verify ---------------------------------------------------------------- */

struct verify {
    struct memmap balances; /* account name -> u64 LE, replayed from the log */
    uint64_t seq;
    uint8_t head[LEDGER_HASH_BYTES];
    uint64_t minted;
    uint64_t sum;
    char *why;
    size_t why_cap;
};

static int bal_get(struct verify *v, const char *name, uint64_t *out)
{
    struct mm_node *n = mm_find(&v->balances, (const uint8_t *)name, strlen(name));
    *out = n ? le64_get(n->val) : 0;
    return 0;
}

static int bal_set(struct verify *v, const char *name, uint64_t val)
{
    uint8_t b[8];
    le64_put(b, val);
    return mm_put(&v->balances, (const uint8_t *)name, strlen(name), b, 8);
}

static int fail(struct verify *v, const char *fmt, ...) NX_PRINTF(2, 3);
static int fail(struct verify *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->why, v->why_cap, fmt, ap);
    va_end(ap);
    return NX_ERR_CORRUPT;
}

static int verify_tx(void *arg, const struct ledger_tx *tx)
{
    struct verify *v = arg;
    char hex[2 * LEDGER_HASH_BYTES + 1];
    if (tx->seq != v->seq + 1)
        return fail(v, "tx %" PRIu64 ": expected sequence %" PRIu64, tx->seq, v->seq + 1);
    if (memcmp(tx->prev_hash, v->head, LEDGER_HASH_BYTES) != 0)
        return fail(v, "tx %" PRIu64 ": prev hash does not match the hash of tx %" PRIu64, tx->seq,
                    v->seq);
    uint8_t h[LEDGER_HASH_BYTES];
    if (tx_hash_compute(tx, h) < 0 || memcmp(h, tx->hash, LEDGER_HASH_BYTES) != 0) {
        nx_hex_encode(hex, h, LEDGER_HASH_BYTES);
        return fail(v, "tx %" PRIu64 ": stored hash differs from recomputed %s", tx->seq, hex);
    }
    uint64_t from_bal = 0, to_bal = 0;
    bal_get(v, tx->to, &to_bal);
    if (tx->kind == LEDGER_CMD_MINT) {
        if (tx->from[0] || v->minted > UINT64_MAX - tx->amount)
            return fail(v, "tx %" PRIu64 ": bad mint", tx->seq);
        v->minted += tx->amount;
    } else if (tx->kind == LEDGER_CMD_TRANSFER || tx->kind == LEDGER_CMD_CHARGE) {
        bal_get(v, tx->from, &from_bal);
        if (from_bal < tx->amount)
            return fail(v, "tx %" PRIu64 ": %s would go negative", tx->seq, tx->from);
        if (bal_set(v, tx->from, from_bal - tx->amount) < 0)
            return NX_ERR_NOMEM;
        bal_get(v, tx->to, &to_bal); /* re-read: from and to may coincide */
    } else {
        return fail(v, "tx %" PRIu64 ": unknown kind %u", tx->seq, tx->kind);
    }
    if (to_bal > UINT64_MAX - tx->amount)
        return fail(v, "tx %" PRIu64 ": balance of %s overflows", tx->seq, tx->to);
    if (bal_set(v, tx->to, to_bal + tx->amount) < 0)
        return NX_ERR_NOMEM;
    v->seq = tx->seq;
    memcpy(v->head, tx->hash, LEDGER_HASH_BYTES);
    return 0;
}

static int verify_account(void *arg, const struct ledger_account *a)
{
    struct verify *v = arg;
    uint64_t want = 0;
    struct mm_node *n = mm_find(&v->balances, (const uint8_t *)a->name, strlen(a->name));
    if (n) {
        want = le64_get(n->val);
        mm_remove(&v->balances, (const uint8_t *)a->name, strlen(a->name));
    }
    if (a->balance != want)
        return fail(v, "account %s: stored balance %" PRIu64 ", log gives %" PRIu64, a->name,
                    a->balance, want);
    if (v->sum > UINT64_MAX - a->balance)
        return fail(v, "sum of balances overflows at account %s", a->name);
    v->sum += a->balance;
    return 0;
}

static int first_leftover(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                          size_t val_len)
{
    (void)val;
    (void)val_len;
    struct verify *v = arg;
    fail(v, "account %.*s appears in the log but not in the state", (int)key_len,
         (const char *)key);
    return NX_ERR_CORRUPT;
}

struct idem_walk {
    const struct ledger *l;
    struct verify *v;
};

/* Every age-index entry idemt/<created><author><key> has its idem/<author><key>. */
static int verify_idemt(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                        size_t val_len)
{
    (void)val;
    (void)val_len;
    struct idem_walk *w = arg;
    const size_t pl = 6, tail = LEDGER_KEY_BYTES + LEDGER_IDEM_BYTES;
    if (key_len != pl + 8 + tail)
        return fail(w->v, "malformed idempotency index key of %zu bytes", key_len);
    struct key k;
    key_make(&k, "idem/", key + pl + 8, tail, NULL, 0);
    struct rec_idem r;
    int rc = rec_get(w->l->store, NULL, &k, rec_idem_fields, &r);
    if (rc == NX_ERR_NOT_FOUND || rc == NX_ERR_CORRUPT) {
        char hex[2 * LEDGER_IDEM_BYTES + 1];
        nx_hex_encode(hex, key + pl + 8 + LEDGER_KEY_BYTES, LEDGER_IDEM_BYTES);
        return fail(w->v, "idempotency record %s is %s", hex,
                    rc == NX_ERR_NOT_FOUND ? "indexed but missing" : "corrupt");
    }
    return rc;
}

int ledger_verify(const struct ledger *l, char *why, size_t why_cap)
{
    struct verify v;
    memset(&v, 0, sizeof v);
    mm_init(&v.balances);
    v.why = why;
    v.why_cap = why_cap;
    if (why_cap)
        why[0] = '\0';
    int rc = ledger_tx_foreach(l, verify_tx, &v);
    if (rc < 0)
        goto out;
    uint64_t seq, supply;
    uint8_t head[LEDGER_HASH_BYTES];
    if ((rc = ledger_tx_head(l, &seq, head)) < 0 || (rc = ledger_supply(l, &supply)) < 0)
        goto out;
    if (seq != v.seq || memcmp(head, v.head, LEDGER_HASH_BYTES) != 0) {
        rc = fail(&v, "chain head says tx %" PRIu64 ", the log ends at tx %" PRIu64, seq, v.seq);
        goto out;
    }
    if ((rc = ledger_accounts_foreach(l, verify_account, &v)) < 0)
        goto out;
    if ((rc = mm_iter(&v.balances, (const uint8_t *)"", 0, first_leftover, &v)) < 0)
        goto out;
    struct idem_walk iw = {l, &v};
    if ((rc = l->store->ops->iter(l->store->ctx, (const uint8_t *)"idemt/", 6, verify_idemt, &iw)) <
        0)
        goto out;
    if (supply != v.minted)
        rc =
            fail(&v, "supply %" PRIu64 " differs from the sum of mints %" PRIu64, supply, v.minted);
    else if (v.sum != v.minted)
        rc = fail(&v, "sum of balances %" PRIu64 " differs from the sum of mints %" PRIu64, v.sum,
                  v.minted);
out:
    mm_free(&v.balances);
    if (rc < 0 && why_cap && !why[0])
        snprintf(why, why_cap, "%s", nx_strerror(rc));
    return rc;
}

/* ---- registry views ---------------------------------------------------------- */

/* Copies the key's suffix after the prefix into a name; NX_ERR_CORRUPT if it is not one. */
static int key_name(const struct walk *w, const uint8_t *key, size_t key_len, char *out)
{
    size_t nl = key_len - w->prefix_len;
    if (key_len < w->prefix_len || nl == 0 || nl > LEDGER_NAME_MAX)
        return NX_ERR_CORRUPT;
    memcpy(out, key + w->prefix_len, nl);
    out[nl] = '\0';
    return 0;
}

static int tenant_cb(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                     size_t val_len)
{
    struct walk *w = arg;
    struct ledger_tenant t;
    struct rec_tenant r;
    memset(&t, 0, sizeof t);
    int rc = key_name(w, key, key_len, t.name);
    if (rc == 0)
        rc = decode_with(val, val_len, rec_tenant_fields, &r);
    if (rc < 0)
        return rc;
    memcpy(t.owner, r.owner, LEDGER_KEY_BYTES);
    return ((ledger_tenant_fn)w->fn)(w->arg, &t);
}

static void agent_from_rec(struct ledger_agent *a, const struct rec_agent *r)
{
    strcpy(a->tenant, r->tenant);
    memcpy(a->manifest_hash, r->manifest_hash, LEDGER_HASH_BYTES);
    memcpy(a->bundle_hash, r->bundle_hash, LEDGER_HASH_BYTES);
    memcpy(a->publisher, r->publisher, LEDGER_KEY_BYTES);
    memcpy(a->publisher_sig, r->publisher_sig, LEDGER_SIG_BYTES);
    a->deprecated = r->deprecated != 0;
}

static int agent_cb(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                    size_t val_len)
{
    struct walk *w = arg;
    const uint8_t *name = key + w->prefix_len;
    size_t rest = key_len - w->prefix_len;
    const uint8_t *slash = memchr(name, '/', rest);
    if (!slash)
        return 0; /* agent/<name>: the name's owner record */
    size_t nl = (size_t)(slash - name), vl = rest - nl - 1;
    if (nl == 0 || nl > LEDGER_NAME_MAX || vl == 0 || vl > LEDGER_NAME_MAX)
        return NX_ERR_CORRUPT;
    struct ledger_agent a;
    struct rec_agent r;
    memset(&a, 0, sizeof a);
    memcpy(a.name, name, nl);
    memcpy(a.version, slash + 1, vl);
    int rc = decode_with(val, val_len, rec_agent_fields, &r);
    if (rc < 0)
        return rc;
    agent_from_rec(&a, &r);
    return ((ledger_agent_fn)w->fn)(w->arg, &a);
}

static void deployment_from_rec(struct ledger_deployment *d, const struct rec_deploy *r)
{
    strcpy(d->tenant, r->tenant);
    strcpy(d->agent, r->agent);
    strcpy(d->version, r->version);
    d->replicas = r->replicas;
}

static int deploy_cb(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                     size_t val_len)
{
    struct walk *w = arg;
    struct ledger_deployment d;
    struct rec_deploy r;
    memset(&d, 0, sizeof d);
    int rc = key_name(w, key, key_len, d.name);
    if (rc == 0)
        rc = decode_with(val, val_len, rec_deploy_fields, &r);
    if (rc < 0)
        return rc;
    deployment_from_rec(&d, &r);
    return ((ledger_deployment_fn)w->fn)(w->arg, &d);
}

int ledger_tenants_foreach(const struct ledger *l, ledger_tenant_fn fn, void *arg)
{
    return walk(l, "tenant/", tenant_cb, (void *)fn, arg);
}

int ledger_agents_foreach(const struct ledger *l, ledger_agent_fn fn, void *arg)
{
    return walk(l, "agent/", agent_cb, (void *)fn, arg);
}

int ledger_deployments_foreach(const struct ledger *l, ledger_deployment_fn fn, void *arg)
{
    return walk(l, "deploy/", deploy_cb, (void *)fn, arg);
}

int ledger_agent_get(const struct ledger *l, const char *name, const char *version,
                     struct ledger_agent *out)
{
    if (!ledger_name_ok(name) || !ledger_name_ok(version))
        return NX_ERR_INVAL;
    memset(out, 0, sizeof *out);
    struct key k;
    key_agent(&k, name, version);
    struct rec_agent r;
    int rc = rec_get(l->store, NULL, &k, rec_agent_fields, &r);
    if (rc < 0)
        return rc;
    strcpy(out->name, name);
    strcpy(out->version, version);
    agent_from_rec(out, &r);
    return 0;
}

int ledger_agent_manifest_get(const struct ledger *l, const char *name, const char *version,
                              uint8_t *buf, size_t cap, size_t *len)
{
    if (!ledger_name_ok(name) || !ledger_name_ok(version))
        return NX_ERR_INVAL;
    struct key k;
    key_manifest(&k, name, version);
    return raw_get(l->store, NULL, &k, buf, cap, len);
}

int ledger_deployment_get(const struct ledger *l, const char *name, struct ledger_deployment *out)
{
    if (!ledger_name_ok(name))
        return NX_ERR_INVAL;
    memset(out, 0, sizeof *out);
    struct key k;
    key_str(&k, "deploy/", name);
    struct rec_deploy r;
    int rc = rec_get(l->store, NULL, &k, rec_deploy_fields, &r);
    if (rc < 0)
        return rc;
    strcpy(out->name, name);
    deployment_from_rec(out, &r);
    return 0;
}

bool ledger_perm_granted(const struct ledger *l, const uint8_t subject[LEDGER_KEY_BYTES],
                         const char *action, const char *resource)
{
    return perm_granted(l->store, NULL, subject, action, resource) == 1;
}
