/*
 * ledger_store_rocksdb.c - struct ledger_store on RocksDB's "ledger" column
 * family (see ledger_store_rocksdb.h for why commit is usually bypassed).
 *
 * Reads go to the database (the last written state); ledger_apply overlays
 * its own batch, so entries applied in one Ready see each other's writes.
 */
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_store_rocksdb.h"

struct lsr {
    struct ledger_store store; /* first: the public handle points here */
    struct raft_store *rs;     /* borrowed */
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo;
    rocksdb_writebatch_t *capture; /* borrowed, may be NULL */
};

static rocksdb_column_family_handle_t *cf_of(struct lsr *s)
{
    return raft_store_cf(s->rs, RAFT_STORE_CF_LEDGER);
}

static int io_error(const char *what, char *rerr)
{
    NX_ERROR("ledger_store_failed", "op=%s error=\"%s\"", what, rerr);
    rocksdb_free(rerr);
    return NX_ERR_IO;
}

static int lsr_get(void *ctx, const uint8_t *key, size_t key_len, uint8_t *val, size_t val_cap,
                   size_t *val_len)
{
    struct lsr *s = ctx;
    char *rerr = NULL;
    size_t vl = 0;
    char *v = rocksdb_get_cf(raft_store_db(s->rs), s->ro, cf_of(s), (const char *)key, key_len, &vl,
                             &rerr);
    if (rerr)
        return io_error("get", rerr);
    if (v == NULL)
        return NX_ERR_NOT_FOUND;
    *val_len = vl;
    int rc = NX_OK;
    if (vl > val_cap)
        rc = NX_ERR_TOO_BIG;
    else if (vl)
        memcpy(val, v, vl);
    rocksdb_free(v);
    return rc;
}

static int lsr_put(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *val,
                   size_t val_len)
{
    struct lsr *s = ctx;
    char *rerr = NULL;
    rocksdb_put_cf(raft_store_db(s->rs), s->wo, cf_of(s), (const char *)key, key_len,
                   (const char *)val, val_len, &rerr);
    return rerr ? io_error("put", rerr) : NX_OK;
}

static int lsr_del(void *ctx, const uint8_t *key, size_t key_len)
{
    struct lsr *s = ctx;
    char *rerr = NULL;
    rocksdb_delete_cf(raft_store_db(s->rs), s->wo, cf_of(s), (const char *)key, key_len, &rerr);
    return rerr ? io_error("delete", rerr) : NX_OK;
}

static int lsr_iter(void *ctx, const uint8_t *prefix, size_t prefix_len, ledger_kv_fn fn, void *arg)
{
    struct lsr *s = ctx;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(raft_store_db(s->rs), s->ro, cf_of(s));
    int rc = NX_OK;
    for (rocksdb_iter_seek(it, (const char *)prefix, prefix_len); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < prefix_len || memcmp(k, prefix, prefix_len) != 0)
            break;
        const char *v = rocksdb_iter_value(it, &vl);
        int r = fn(arg, (const uint8_t *)k, kl, (const uint8_t *)v, vl);
        if (r < 0)
            rc = r;
        if (r != 0)
            break;
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (rerr)
        rc = io_error("iter", rerr);
    rocksdb_iter_destroy(it);
    return rc;
}

struct fill_arg {
    rocksdb_writebatch_t *wb;
    rocksdb_column_family_handle_t *cf;
};

static int fill_one(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                    size_t val_len)
{
    struct fill_arg *f = arg;
    if (val)
        rocksdb_writebatch_put_cf(f->wb, f->cf, (const char *)key, key_len, (const char *)val,
                                  val_len);
    else
        rocksdb_writebatch_delete_cf(f->wb, f->cf, (const char *)key, key_len);
    return 0;
}

int ledger_store_rocksdb_fill(struct ledger_store *store, const struct ledger_batch *batch,
                              struct rocksdb_writebatch_t *wb)
{
    struct lsr *s = store->ctx;
    struct fill_arg f = {wb, cf_of(s)};
    return ledger_batch_foreach(batch, fill_one, &f);
}

static int lsr_commit(void *ctx, const struct ledger_batch *batch)
{
    struct lsr *s = ctx;
    if (s->capture)
        return ledger_store_rocksdb_fill(&s->store, batch, s->capture);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = ledger_store_rocksdb_fill(&s->store, batch, wb);
    if (rc == NX_OK)
        rc = raft_store_write(s->rs, wb, true);
    rocksdb_writebatch_destroy(wb);
    return rc;
}

static const struct ledger_store_ops lsr_ops = {lsr_get, lsr_put, lsr_del, lsr_iter, lsr_commit};

struct ledger_store *ledger_store_rocksdb_new(struct raft_store *rs)
{
    struct lsr *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->rs = rs;
    s->ro = rocksdb_readoptions_create();
    s->wo = rocksdb_writeoptions_create();
    s->store.ops = &lsr_ops;
    s->store.ctx = s;
    return &s->store;
}

void ledger_store_rocksdb_free(struct ledger_store *store)
{
    if (store == NULL)
        return;
    struct lsr *s = store->ctx;
    rocksdb_readoptions_destroy(s->ro);
    rocksdb_writeoptions_destroy(s->wo);
    free(s);
}

void ledger_store_rocksdb_capture(struct ledger_store *store, struct rocksdb_writebatch_t *wb)
{
    ((struct lsr *)store->ctx)->capture = wb;
}
