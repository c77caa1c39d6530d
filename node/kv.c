/*
 * kv.c - the replicated key-value state machine on RocksDB's "kv" column
 * family (see kv.h for the command and snapshot formats).
 *
 * Applying is deterministic: the same committed commands in the same order
 * give the same column family on every replica, malformed commands included
 * (they are skipped everywhere). Snapshots walk the column family with an
 * iterator, so they are a consistent image of one applied index as long as the
 * caller (the loop thread) applies nothing meanwhile.
 */
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"

bool kv_key_valid(const char *key, size_t len)
{
    if (len == 0 || len > KV_MAX_KEY_BYTES)
        return false;
    for (size_t i = 0; i < len; i++)
        if (key[i] <= 0x20 || key[i] >= 0x7f)
            return false;
    return true;
}

long kv_cmd_encode(enum kv_op op, const char *key, size_t klen, const void *value, size_t vlen,
                   uint8_t *out, size_t cap)
{
    if (!kv_key_valid(key, klen) || (op != KV_OP_PUT && op != KV_OP_DELETE))
        return NX_ERR_INVAL;
    if (vlen > KV_MAX_VALUE_BYTES || KV_CMD_HEADER_BYTES + klen + vlen > cap)
        return NX_ERR_TOO_BIG;
    out[0] = (uint8_t)op;
    out[1] = (uint8_t)klen;
    out[2] = (uint8_t)(klen >> 8);
    memcpy(out + KV_CMD_HEADER_BYTES, key, klen);
    if (vlen)
        memcpy(out + KV_CMD_HEADER_BYTES + klen, value, vlen);
    return (long)(KV_CMD_HEADER_BYTES + klen + vlen);
}

int kv_apply(struct raft_store *s, struct rocksdb_writebatch_t *wb, const uint8_t *cmd, size_t len)
{
    if (len < KV_CMD_HEADER_BYTES)
        return NX_ERR_DECODE;
    size_t klen = (size_t)cmd[1] | ((size_t)cmd[2] << 8);
    if (KV_CMD_HEADER_BYTES + klen > len ||
        !kv_key_valid((const char *)cmd + KV_CMD_HEADER_BYTES, klen))
        return NX_ERR_DECODE;
    const char *key = (const char *)cmd + KV_CMD_HEADER_BYTES;
    const char *val = key + klen;
    size_t vlen = len - KV_CMD_HEADER_BYTES - klen;
    rocksdb_column_family_handle_t *cf = raft_store_cf(s, RAFT_STORE_CF_KV);
    switch (cmd[0]) {
    case KV_OP_PUT:
        if (vlen > KV_MAX_VALUE_BYTES)
            return NX_ERR_DECODE;
        rocksdb_writebatch_put_cf(wb, cf, key, klen, val, vlen);
        return NX_OK;
    case KV_OP_DELETE:
        if (vlen != 0)
            return NX_ERR_DECODE;
        rocksdb_writebatch_delete_cf(wb, cf, key, klen);
        return NX_OK;
    default:
        return NX_ERR_DECODE;
    }
}

int kv_get(struct raft_store *s, const char *key, size_t klen, char **value, size_t *vlen)
{
    char *rerr = NULL;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *v = rocksdb_get_cf(raft_store_db(s), ro, raft_store_cf(s, RAFT_STORE_CF_KV), key, klen,
                             vlen, &rerr);
    rocksdb_readoptions_destroy(ro);
    if (rerr) {
        NX_ERROR("kv_get_failed", "error=\"%s\"", rerr);
        rocksdb_free(rerr);
        return NX_ERR_IO;
    }
    if (v == NULL)
        return NX_ERR_NOT_FOUND;
    *value = malloc(*vlen + 1);
    if (*value == NULL) {
        rocksdb_free(v);
        return NX_ERR_NOMEM;
    }
    memcpy(*value, v, *vlen);
    (*value)[*vlen] = '\0';
    rocksdb_free(v);
    return NX_OK;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int kv_scan(struct raft_store *s, const char *prefix, kv_scan_fn fn, void *arg)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(raft_store_db(s), ro, raft_store_cf(s, RAFT_STORE_CF_KV));
    size_t pl = strlen(prefix);
    int rc = NX_OK;
    for (rocksdb_iter_seek(it, prefix, pl); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < pl || memcmp(k, prefix, pl) != 0)
            break;
        const char *v = rocksdb_iter_value(it, &vl);
        int r = fn(arg, k, kl, v, vl);
        if (r != 0) {
            rc = r < 0 ? r : NX_OK;
            break;
        }
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) {
        NX_ERROR("kv_scan_failed", "error=\"%s\"", rerr);
        rocksdb_free(rerr);
        rc = NX_ERR_IO;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

int kv_snapshot(struct raft_store *s, uint8_t **out, size_t *len)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(raft_store_db(s), ro, raft_store_cf(s, RAFT_STORE_CF_KV));
    size_t n = 0, cap = 4096;
    uint8_t *buf = malloc(cap);
    int rc = buf ? NX_OK : NX_ERR_NOMEM;
    for (rocksdb_iter_seek_to_first(it); rc == NX_OK && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        size_t need = n + 8 + kl + vl;
        if (need > RAFT_MAX_SNAPSHOT_BYTES) {
            rc = NX_ERR_TOO_BIG;
            break;
        }
        if (need > cap) {
            size_t nc = need * 2 > RAFT_MAX_SNAPSHOT_BYTES ? RAFT_MAX_SNAPSHOT_BYTES : need * 2;
            uint8_t *g = realloc(buf, nc);
            if (g == NULL) {
                rc = NX_ERR_NOMEM;
                break;
            }
            buf = g;
            cap = nc;
        }
        put_u32(buf + n, (uint32_t)kl);
        memcpy(buf + n + 4, k, kl);
        put_u32(buf + n + 4 + kl, (uint32_t)vl);
        memcpy(buf + n + 8 + kl, v, vl);
        n = need;
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) {
        NX_ERROR("kv_snapshot_failed", "error=\"%s\"", rerr);
        rocksdb_free(rerr);
        rc = NX_ERR_IO;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rc != NX_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return NX_OK;
}

int kv_install_fill(struct raft_store *s, struct rocksdb_writebatch_t *wb, const uint8_t *data,
                    size_t len)
{
    rocksdb_column_family_handle_t *cf = raft_store_cf(s, RAFT_STORE_CF_KV);
    /* Keys are printable ASCII, so ["", "\xff") covers every key. */
    rocksdb_writebatch_delete_range_cf(wb, cf, "", 0, "\xff", 1);
    size_t pos = 0;
    while (pos < len) {
        if (len - pos < 4)
            return NX_ERR_DECODE;
        size_t kl = get_u32(data + pos);
        if (kl > len - pos - 4 || len - pos - 4 - kl < 4 ||
            !kv_key_valid((const char *)data + pos + 4, kl))
            return NX_ERR_DECODE;
        size_t vl = get_u32(data + pos + 4 + kl);
        if (vl > len - pos - 8 - kl || vl > KV_MAX_VALUE_BYTES)
            return NX_ERR_DECODE;
        rocksdb_writebatch_put_cf(wb, cf, (const char *)data + pos + 4, kl,
                                  (const char *)data + pos + 8 + kl, vl);
        pos += 8 + kl + vl;
    }
    return NX_OK;
}

int kv_install(struct raft_store *s, const uint8_t *data, size_t len, uint64_t index)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = kv_install_fill(s, wb, data, len);
    if (rc == NX_OK) {
        raft_store_batch_applied(s, wb, index);
        rc = raft_store_write(s, wb, true);
    }
    rocksdb_writebatch_destroy(wb);
    return rc;
}
