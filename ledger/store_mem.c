/*
 * store_mem.c - the in-memory struct ledger_store (for tests, the simulator
 * and the benchmark) and the write batch every store commits.
 *
 * A batch is a memmap of pending writes (tombstones for deletes), so
 * ledger_apply reads its own writes and a commit walks them in key order.
 * The in-memory store applies a batch in key order; a put can fail only on
 * malloc, reported as NX_ERR_NOMEM, which the host treats as fatal (as it
 * would a failed RocksDB write).
 */
#include <stdlib.h>
#include <string.h>

#include "ledger/ledger.h"
#include "ledger/memmap.h"

/* ---- batch ---------------------------------------------------------------- */

void ledger_batch_init(struct ledger_batch *batch)
{
    batch->map = NULL;
    batch->ops = 0;
}

void ledger_batch_free(struct ledger_batch *batch)
{
    if (batch->map) {
        mm_free(batch->map);
        free(batch->map);
    }
    ledger_batch_init(batch);
}

static int batch_write(struct ledger_batch *batch, const uint8_t *key, size_t key_len,
                       const uint8_t *val, size_t val_len)
{
    if (key_len == 0 || key_len > LEDGER_MAX_KEY_BYTES)
        return NX_ERR_TOO_BIG;
    if (!batch->map) {
        batch->map = malloc(sizeof(struct memmap));
        if (!batch->map)
            return NX_ERR_NOMEM;
        mm_init(batch->map);
    }
    int rc = mm_put(batch->map, key, key_len, val, val_len);
    if (rc == 0)
        batch->ops++;
    return rc;
}

int ledger_batch_put(struct ledger_batch *batch, const uint8_t *key, size_t key_len,
                     const uint8_t *val, size_t val_len)
{
    static const uint8_t empty[1];
    return batch_write(batch, key, key_len, val ? val : empty, val_len);
}

int ledger_batch_del(struct ledger_batch *batch, const uint8_t *key, size_t key_len)
{
    return batch_write(batch, key, key_len, NULL, 0);
}

int ledger_batch_foreach(const struct ledger_batch *batch, ledger_batch_fn fn, void *arg)
{
    if (!batch->map)
        return 0;
    return mm_iter(batch->map, (const uint8_t *)"", 0, fn, arg);
}

int ledger_store_commit(struct ledger_store *store, const struct ledger_batch *batch)
{
    return store->ops->commit(store->ctx, batch);
}

/* ---- in-memory store ------------------------------------------------------ */

static int mem_get(void *ctx, const uint8_t *key, size_t key_len, uint8_t *val, size_t val_cap,
                   size_t *val_len)
{
    struct mm_node *n = mm_find(ctx, key, key_len);
    if (!n)
        return NX_ERR_NOT_FOUND;
    *val_len = n->val_len;
    if (n->val_len > val_cap)
        return NX_ERR_TOO_BIG;
    if (n->val_len)
        memcpy(val, n->val, n->val_len);
    return 0;
}

static int mem_put(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *val,
                   size_t val_len)
{
    static const uint8_t empty[1];
    return mm_put(ctx, key, key_len, val ? val : empty, val_len);
}

static int mem_del(void *ctx, const uint8_t *key, size_t key_len)
{
    mm_remove(ctx, key, key_len);
    return 0;
}

static int mem_iter(void *ctx, const uint8_t *prefix, size_t prefix_len, ledger_kv_fn fn, void *arg)
{
    return mm_iter(ctx, prefix, prefix_len, fn, arg);
}

static int commit_one(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                      size_t val_len)
{
    if (!val) {
        mm_remove(arg, key, key_len);
        return 0;
    }
    return mm_put(arg, key, key_len, val, val_len);
}

static int mem_commit(void *ctx, const struct ledger_batch *batch)
{
    return ledger_batch_foreach(batch, commit_one, ctx);
}

static const struct ledger_store_ops mem_ops = {
    .get = mem_get,
    .put = mem_put,
    .del = mem_del,
    .iter = mem_iter,
    .commit = mem_commit,
};

struct ledger_store *ledger_store_mem_new(void)
{
    struct ledger_store *s = malloc(sizeof *s);
    struct memmap *m = malloc(sizeof *m);
    if (!s || !m) {
        free(s);
        free(m);
        return NULL;
    }
    mm_init(m);
    s->ops = &mem_ops;
    s->ctx = m;
    return s;
}

void ledger_store_mem_free(struct ledger_store *store)
{
    if (!store)
        return;
    mm_free(store->ctx);
    free(store->ctx);
    free(store);
}

size_t ledger_store_mem_count(const struct ledger_store *store)
{
    return ((const struct memmap *)store->ctx)->count;
}
