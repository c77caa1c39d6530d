/*
 * snapshot.c - the whole state as one byte stream, for Raft snapshots.
 *
 * Stream:
 *   "NXLSNAP1"                                   8 bytes
 *   { u32 LE key length | key | u32 LE value length | value }   every key, ascending
 *   u32 LE 0xffffffff                            end marker
 *   BLAKE2b-256 of every byte above              32 bytes
 * The writer hands it to a sink in chunks of at most LEDGER_SNAPSHOT_CHUNK_BYTES.
 * The installer parses incrementally, stages deletes of every current key and
 * puts of every streamed one in a single batch, and commits that batch only
 * after the trailing hash matched: an install is all or nothing.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/internal.h"

static const char SNAP_MAGIC[8] = "NXLSNAP1";
#define SNAP_END 0xffffffffu

struct snap_out {
    uint8_t buf[LEDGER_SNAPSHOT_CHUNK_BYTES];
    size_t len;
    crypto_generichash_state hash;
    ledger_sink_fn sink;
    void *arg;
};

static int out_bytes(struct snap_out *o, const uint8_t *p, size_t n, bool hashed)
{
    if (hashed)
        crypto_generichash_update(&o->hash, p, n);
    while (n) {
        size_t room = sizeof o->buf - o->len, take = n < room ? n : room;
        memcpy(o->buf + o->len, p, take);
        o->len += take;
        p += take;
        n -= take;
        if (o->len == sizeof o->buf) {
            int rc = o->sink(o->arg, o->buf, o->len);
            if (rc < 0)
                return rc;
            o->len = 0;
        }
    }
    return 0;
}

static int out_u32(struct snap_out *o, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return out_bytes(o, b, 4, true);
}

static int snap_record(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                       size_t val_len)
{
    struct snap_out *o = arg;
    int rc;
    if ((rc = out_u32(o, (uint32_t)key_len)) < 0 || (rc = out_bytes(o, key, key_len, true)) < 0 ||
        (rc = out_u32(o, (uint32_t)val_len)) < 0 || (rc = out_bytes(o, val, val_len, true)) < 0)
        return rc;
    return 0;
}

int ledger_snapshot_write(struct ledger_store *store, ledger_sink_fn sink, void *arg)
{
    struct snap_out *o = malloc(sizeof *o);
    if (!o)
        return NX_ERR_NOMEM;
    o->len = 0;
    o->sink = sink;
    o->arg = arg;
    crypto_generichash_init(&o->hash, NULL, 0, LEDGER_HASH_BYTES);
    int rc = out_bytes(o, (const uint8_t *)SNAP_MAGIC, sizeof SNAP_MAGIC, true);
    if (rc == 0)
        rc = store->ops->iter(store->ctx, (const uint8_t *)"", 0, snap_record, o);
    if (rc == 0)
        rc = out_u32(o, SNAP_END);
    if (rc == 0) {
        uint8_t h[LEDGER_HASH_BYTES];
        crypto_generichash_final(&o->hash, h, sizeof h);
        rc = out_bytes(o, h, sizeof h, false);
    }
    if (rc == 0 && o->len)
        rc = sink(arg, o->buf, o->len);
    free(o);
    return rc;
}

/* ---- install --------------------------------------------------------------- */

static int stage_delete(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                        size_t val_len)
{
    (void)val;
    (void)val_len;
    return ledger_batch_del(arg, key, key_len);
}

enum { ST_MAGIC, ST_RECORDS, ST_HASH, ST_DONE };

struct snap_in {
    uint8_t *acc; /* unparsed bytes, owned */
    size_t len, cap;
    int state;
    crypto_generichash_state hash;
    struct ledger_batch *batch;
};

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Parses what it can from the front of acc; returns bytes consumed or <0. */
static long parse(struct snap_in *in)
{
    size_t off = 0;
    for (;;) {
        const uint8_t *p = in->acc + off;
        size_t avail = in->len - off;
        if (in->state == ST_MAGIC) {
            if (avail < sizeof SNAP_MAGIC)
                break;
            if (memcmp(p, SNAP_MAGIC, sizeof SNAP_MAGIC) != 0)
                return NX_ERR_CORRUPT;
            crypto_generichash_update(&in->hash, p, sizeof SNAP_MAGIC);
            off += sizeof SNAP_MAGIC;
            in->state = ST_RECORDS;
        } else if (in->state == ST_RECORDS) {
            if (avail < 4)
                break;
            uint32_t klen = get_u32(p);
            if (klen == SNAP_END) {
                crypto_generichash_update(&in->hash, p, 4);
                off += 4;
                in->state = ST_HASH;
                continue;
            }
            if (klen == 0 || klen > LEDGER_MAX_KEY_BYTES)
                return NX_ERR_CORRUPT;
            if (avail < 8 + (size_t)klen)
                break;
            uint32_t vlen = get_u32(p + 4 + klen);
            if (vlen > LEDGER_MAX_VALUE_BYTES)
                return NX_ERR_CORRUPT;
            size_t rec = 8 + (size_t)klen + vlen;
            if (avail < rec)
                break;
            int rc = ledger_batch_put(in->batch, p + 4, klen, p + 8 + klen, vlen);
            if (rc < 0)
                return rc;
            crypto_generichash_update(&in->hash, p, rec);
            off += rec;
        } else if (in->state == ST_HASH) {
            if (avail < LEDGER_HASH_BYTES)
                break;
            uint8_t h[LEDGER_HASH_BYTES];
            crypto_generichash_final(&in->hash, h, sizeof h);
            if (sodium_memcmp(h, p, LEDGER_HASH_BYTES) != 0)
                return NX_ERR_CORRUPT;
            off += LEDGER_HASH_BYTES;
            in->state = ST_DONE;
        } else {
            if (avail)
                return NX_ERR_CORRUPT; /* bytes after the hash */
            break;
        }
    }
    return (long)off;
}

int ledger_snapshot_install(struct ledger_store *store, ledger_source_fn source, void *arg)
{
    struct ledger_batch batch;
    ledger_batch_init(&batch);
    struct snap_in in = {.batch = &batch, .state = ST_MAGIC};
    crypto_generichash_init(&in.hash, NULL, 0, LEDGER_HASH_BYTES);
    in.cap = 2 * LEDGER_SNAPSHOT_CHUNK_BYTES + LEDGER_MAX_KEY_BYTES + LEDGER_MAX_VALUE_BYTES;
    in.acc = malloc(in.cap);
    int rc = in.acc ? 0 : NX_ERR_NOMEM;
    if (rc == 0)
        rc = store->ops->iter(store->ctx, (const uint8_t *)"", 0, stage_delete, &batch);
    while (rc == 0) {
        size_t got = 0, room = in.cap - in.len;
        if (room > LEDGER_SNAPSHOT_CHUNK_BYTES)
            room = LEDGER_SNAPSHOT_CHUNK_BYTES;
        if ((rc = source(arg, in.acc + in.len, room, &got)) < 0)
            break;
        if (got == 0)
            break;
        in.len += got;
        long used = parse(&in);
        if (used < 0) {
            rc = (int)used;
            break;
        }
        memmove(in.acc, in.acc + used, in.len - (size_t)used);
        in.len -= (size_t)used;
    }
    if (rc == 0 && (in.state != ST_DONE || in.len != 0))
        rc = NX_ERR_CORRUPT; /* truncated stream */
    if (rc == 0)
        rc = ledger_store_commit(store, &batch);
    free(in.acc);
    ledger_batch_free(&batch);
    return rc;
}
