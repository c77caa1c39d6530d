/*
 * records.c - keys and stored record layouts of the ledger state (the table
 * is in internal.h), the transaction bytes and their chained hash, and the
 * read-through-the-batch helpers the state machine uses.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "ledger/internal.h"
#include "ledger/memmap.h"

static const char TX_DOMAIN[16] = "NXLEDGER-txch-1:";

void key_make(struct key *k, const char *prefix, const void *a, size_t alen, const void *b,
              size_t blen)
{
    size_t pl = strlen(prefix);
    NX_ASSERT(pl + alen + blen <= LEDGER_MAX_KEY_BYTES);
    memcpy(k->b, prefix, pl);
    if (alen)
        memcpy(k->b + pl, a, alen);
    if (blen)
        memcpy(k->b + pl + alen, b, blen);
    k->len = pl + alen + blen;
}

void key_str(struct key *k, const char *prefix, const char *name)
{
    key_make(k, prefix, name, strnlen(name, LEDGER_NAME_MAX), NULL, 0);
}

void key_u64(struct key *k, const char *prefix, uint64_t v)
{
    uint8_t be[8];
    be64_put(be, v);
    key_make(k, prefix, be, 8, NULL, 0);
}

void rec_genesis_fields(struct codec *c, void *rec)
{
    struct rec_genesis *r = rec;
    f_fixed(c, r->cluster_id, LEDGER_CLUSTER_ID_BYTES);
    f_fixed(c, r->operator_pk, LEDGER_KEY_BYTES);
    f_u64(c, &r->window_ms);
}

void rec_head_fields(struct codec *c, void *rec)
{
    struct rec_head *r = rec;
    f_u64(c, &r->seq);
    f_fixed(c, r->hash, LEDGER_HASH_BYTES);
}

void rec_tenant_fields(struct codec *c, void *rec)
{
    struct rec_tenant *r = rec;
    f_fixed(c, r->owner, LEDGER_KEY_BYTES);
}

void rec_account_fields(struct codec *c, void *rec)
{
    struct ledger_account *r = rec;
    f_name(c, r->tenant, 0);
    f_fixed(c, r->key, LEDGER_KEY_BYTES);
    f_u64(c, &r->balance);
}

void rec_token_fields(struct codec *c, void *rec)
{
    struct ledger_token *r = rec;
    f_fixed(c, r->verifier, LEDGER_KEY_BYTES);
    f_u64(c, &r->expires_ms);
    f_u32(c, &r->uses_left);
}

void rec_node_fields(struct codec *c, void *rec)
{
    struct ledger_node *r = rec;
    f_u64(c, &r->admitted_ms);
    f_name(c, r->token_id, NAME_EMPTY_OK);
}

void rec_agent_fields(struct codec *c, void *rec)
{
    struct rec_agent *r = rec;
    f_name(c, r->tenant, 0);
    f_fixed(c, r->manifest_hash, LEDGER_HASH_BYTES);
    f_fixed(c, r->bundle_hash, LEDGER_HASH_BYTES);
    f_fixed(c, r->publisher, LEDGER_KEY_BYTES);
    f_fixed(c, r->publisher_sig, LEDGER_SIG_BYTES);
    f_u8(c, &r->deprecated);
}

void rec_deploy_fields(struct codec *c, void *rec)
{
    struct rec_deploy *r = rec;
    f_name(c, r->tenant, 0);
    f_name(c, r->agent, 0);
    f_name(c, r->version, 0);
    f_u32(c, &r->replicas);
}

void rec_idem_fields(struct codec *c, void *rec)
{
    struct rec_idem *r = rec;
    f_fixed(c, r->cmd_hash, LEDGER_HASH_BYTES);
    f_u8(c, &r->reason);
    f_u64(c, &r->tx_seq);
    f_fixed(c, r->tx_hash, LEDGER_HASH_BYTES);
}

void rec_audit_fields(struct codec *c, void *rec)
{
    struct ledger_audit *r = rec;
    uint8_t reason = (uint8_t)r->reason, dup = r->duplicate;
    f_u8(c, &r->type);
    f_u8(c, &reason);
    f_u8(c, &dup);
    f_fixed(c, r->author, LEDGER_KEY_BYTES);
    f_u64(c, &r->time_ms);
    f_u64(c, &r->tx_seq);
    if (c->decode) {
        r->reason = reason;
        r->duplicate = dup != 0;
    }
}

void rec_tx_fields(struct codec *c, struct ledger_tx *r)
{
    f_u64(c, &r->seq);
    f_u8(c, &r->kind);
    f_u64(c, &r->time_ms);
    f_u64(c, &r->raft_index);
    f_name(c, r->from, NAME_EMPTY_OK);
    f_name(c, r->to, 0);
    f_u64(c, &r->amount);
    f_fixed(c, r->author, LEDGER_KEY_BYTES);
    f_fixed(c, r->idem_key, LEDGER_IDEM_BYTES);
}

int rec_tx_encode(const struct ledger_tx *tx_in, struct codec *out)
{
    struct ledger_tx tx = *tx_in;
    struct codec body;
    codec_enc_init(&body);
    rec_tx_fields(&body, &tx);
    codec_enc_init(out);
    size_t n = body.len;
    f_blob(out, body.buf, &n, LEDGER_MAX_VALUE_BYTES);
    f_fixed(out, tx.prev_hash, LEDGER_HASH_BYTES);
    f_fixed(out, tx.hash, LEDGER_HASH_BYTES);
    bool err = body.err || out->err;
    codec_free(&body);
    return err ? NX_ERR_NOMEM : 0;
}

int rec_tx_decode(const uint8_t *val, size_t len, struct ledger_tx *tx)
{
    memset(tx, 0, sizeof *tx);
    struct codec c, b;
    codec_dec_init(&c, val, len);
    uint32_t n = 0;
    f_u32(&c, &n);
    if (c.err || n > len - 4)
        return NX_ERR_CORRUPT;
    codec_dec_init(&b, val + 4, n);
    rec_tx_fields(&b, tx);
    if (!codec_done(&b))
        return NX_ERR_CORRUPT;
    c.off += n;
    f_fixed(&c, tx->prev_hash, LEDGER_HASH_BYTES);
    f_fixed(&c, tx->hash, LEDGER_HASH_BYTES);
    return codec_done(&c) ? 0 : NX_ERR_CORRUPT;
}

int tx_hash_compute(const struct ledger_tx *tx_in, uint8_t hash[LEDGER_HASH_BYTES])
{
    struct ledger_tx tx = *tx_in;
    struct codec body;
    codec_enc_init(&body);
    rec_tx_fields(&body, &tx);
    if (body.err) {
        codec_free(&body);
        return NX_ERR_INVAL;
    }
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, LEDGER_HASH_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)TX_DOMAIN, sizeof TX_DOMAIN);
    crypto_generichash_update(&st, tx.prev_hash, LEDGER_HASH_BYTES);
    crypto_generichash_update(&st, body.buf, body.len);
    crypto_generichash_final(&st, hash, LEDGER_HASH_BYTES);
    codec_free(&body);
    return 0;
}

int raw_get(struct ledger_store *store, const struct ledger_batch *batch, const struct key *k,
            uint8_t *val, size_t cap, size_t *len)
{
    if (batch && batch->map) {
        struct mm_node *n = mm_find(batch->map, k->b, k->len);
        if (n) {
            if (!n->val)
                return NX_ERR_NOT_FOUND;
            *len = n->val_len;
            if (n->val_len > cap)
                return NX_ERR_TOO_BIG;
            memcpy(val, n->val, n->val_len);
            return 0;
        }
    }
    return store->ops->get(store->ctx, k->b, k->len, val, cap, len);
}

int rec_get(struct ledger_store *store, const struct ledger_batch *batch, const struct key *k,
            rec_fields_fn fields, void *rec)
{
    uint8_t val[LEDGER_MAX_VALUE_BYTES];
    size_t len = 0;
    int rc = raw_get(store, batch, k, val, sizeof val, &len);
    if (rc == NX_ERR_TOO_BIG)
        return NX_ERR_CORRUPT;
    if (rc < 0)
        return rc;
    struct codec c;
    codec_dec_init(&c, val, len);
    fields(&c, rec);
    return codec_done(&c) ? 0 : NX_ERR_CORRUPT;
}

int rec_put(struct ledger_batch *batch, const struct key *k, rec_fields_fn fields, void *rec)
{
    struct codec c;
    codec_enc_init(&c);
    fields(&c, rec);
    int rc = c.err ? NX_ERR_INTERNAL : ledger_batch_put(batch, k->b, k->len, c.buf, c.len);
    codec_free(&c);
    return rc;
}

int meta_u64_get(struct ledger_store *store, const struct ledger_batch *batch, const char *name,
                 uint64_t *out)
{
    struct key k;
    key_str(&k, "meta/", name);
    uint8_t v[8];
    size_t len = 0;
    *out = 0;
    int rc = raw_get(store, batch, &k, v, sizeof v, &len);
    if (rc == NX_ERR_NOT_FOUND)
        return 0;
    if (rc == NX_ERR_TOO_BIG || (rc == 0 && len != 8))
        return NX_ERR_CORRUPT;
    if (rc < 0)
        return rc;
    *out = le64_get(v);
    return 0;
}

void key_agent(struct key *k, const char *name, const char *version)
{
    char tail[LEDGER_STR_CAP + 1];
    int n = snprintf(tail, sizeof tail, "/%s", version);
    key_make(k, "agent/", name, strnlen(name, LEDGER_NAME_MAX), tail, (size_t)n);
}

void key_manifest(struct key *k, const char *name, const char *version)
{
    char tail[LEDGER_STR_CAP + 1];
    int n = snprintf(tail, sizeof tail, "/%s", version);
    key_make(k, "agentm/", name, strnlen(name, LEDGER_NAME_MAX), tail, (size_t)n);
}

int perm_granted(struct ledger_store *store, const struct ledger_batch *batch,
                 const uint8_t *subject, const char *action, const char *resource)
{
    char tail[2 * LEDGER_STR_CAP + 2];
    const char *res[2] = {resource, "*"};
    for (int i = 0; i < 2; i++) {
        int n = snprintf(tail, sizeof tail, "%s/%s", action, res[i]);
        if (n < 0 || (size_t)n >= sizeof tail)
            return 0;
        struct key k;
        key_make(&k, "perm/", subject, LEDGER_KEY_BYTES, tail, (size_t)n);
        uint8_t v[1];
        size_t len;
        int rc = raw_get(store, batch, &k, v, sizeof v, &len);
        if (rc == 0 || rc == NX_ERR_TOO_BIG)
            return 1;
        if (rc != NX_ERR_NOT_FOUND)
            return rc;
    }
    return 0;
}

struct first {
    const struct ledger_batch *batch;
    struct key *out;
    bool found;
};

static int first_store(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                       size_t val_len)
{
    (void)val;
    (void)val_len;
    struct first *f = arg;
    if (f->batch->map) {
        struct mm_node *n = mm_find(f->batch->map, key, key_len);
        if (n && !n->val)
            return 0; /* deleted in the batch: not in the logical state */
    }
    if (key_len > LEDGER_MAX_KEY_BYTES)
        return NX_ERR_CORRUPT;
    memcpy(f->out->b, key, key_len);
    f->out->len = key_len;
    f->found = true;
    return 1;
}

static int first_batch(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                       size_t val_len)
{
    return val ? first_store(arg, key, key_len, val, val_len) : 0;
}

int merged_first(struct ledger_store *store, const struct ledger_batch *batch, const char *prefix,
                 struct key *out)
{
    struct key from_store, from_batch;
    struct first fs = {batch, &from_store, false}, fb = {batch, &from_batch, false};
    size_t pl = strlen(prefix);
    int rc = store->ops->iter(store->ctx, (const uint8_t *)prefix, pl, first_store, &fs);
    if (rc < 0)
        return rc;
    if (batch->map && (rc = mm_iter(batch->map, (const uint8_t *)prefix, pl, first_batch, &fb)) < 0)
        return rc;
    if (!fs.found && !fb.found)
        return 0;
    const struct key *pick = &from_batch;
    if (fs.found && fb.found) {
        size_t n = from_store.len < from_batch.len ? from_store.len : from_batch.len;
        int c = memcmp(from_store.b, from_batch.b, n);
        if (c < 0 || (c == 0 && from_store.len < from_batch.len))
            pick = &from_store;
    } else if (fs.found) {
        pick = &from_store;
    }
    *out = *pick;
    return 1;
}
