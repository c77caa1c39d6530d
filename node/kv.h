/*
 * kv.h - the replicated key-value state machine, stored in the "kv" column
 * family of the node's RocksDB (raft_store.h).
 *
 * Owns: the encoding of KV commands carried in Raft entries, applying them to
 * a write batch, point reads, and the snapshot format of the whole kv column
 * family (serialize; install atomically in one WriteBatch).
 *
 * Never touches: Raft (raft_host.c decides what is committed and calls
 * kv_apply in log order) or the HTTP API.
 *
 * Command (entry data): op u8 (1 put, 2 delete) | key_len u16 LE | key | value.
 * Snapshot: repeated key_len u32 LE | key | value_len u32 LE | value.
 */
#ifndef NX_NODE_KV_H
#define NX_NODE_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "raft_store.h"

#define KV_MAX_KEY_BYTES 256
#define KV_MAX_VALUE_BYTES (512u * 1024u)
#define KV_CMD_HEADER_BYTES 3
#define KV_MAX_CMD_BYTES (KV_CMD_HEADER_BYTES + KV_MAX_KEY_BYTES + KV_MAX_VALUE_BYTES)

enum kv_op { KV_OP_PUT = 1, KV_OP_DELETE = 2 };

/* Whether key (len bytes) is a valid key: 1..KV_MAX_KEY_BYTES printable ASCII, no space. */
bool kv_key_valid(const char *key, size_t len);

/*
 * Encodes a command into out (capacity cap >= KV_CMD_HEADER_BYTES + klen + vlen).
 * Returns the length or NX_ERR_TOO_BIG / NX_ERR_INVAL.
 */
long kv_cmd_encode(enum kv_op op, const char *key, size_t klen, const void *value, size_t vlen,
                   uint8_t *out, size_t cap) NX_MUST_USE;

/*
 * Adds the effect of one committed command (borrowed) to wb. A malformed
 * command is skipped and counted by the caller (NX_ERR_DECODE): every replica
 * skips it alike, so they stay identical.
 */
int kv_apply(struct raft_store *s, struct rocksdb_writebatch_t *wb, const uint8_t *cmd,
             size_t len) NX_MUST_USE;

/*
 * Reads key. On success *value is malloc'd (caller frees) with *vlen bytes.
 * NX_ERR_NOT_FOUND when absent, NX_ERR_IO on a RocksDB error.
 */
int kv_get(struct raft_store *s, const char *key, size_t klen, char **value,
           size_t *vlen) NX_MUST_USE;

/* Called per key in order; value borrowed for the call. Return 0 to go on, 1 to stop. */
typedef int (*kv_scan_fn)(void *arg, const char *key, size_t klen, const char *value, size_t vlen);
/* Every key that starts with prefix, in byte order, from the local (applied) copy. */
int kv_scan(struct raft_store *s, const char *prefix, kv_scan_fn fn, void *arg) NX_MUST_USE;

/* Serializes the kv column family; *out is malloc'd (caller frees). NX_ERR_TOO_BIG past
 * RAFT_MAX_SNAPSHOT_BYTES. */
int kv_snapshot(struct raft_store *s, uint8_t **out, size_t *len) NX_MUST_USE;

/*
 * Replaces the kv column family with snapshot data (borrowed) and records
 * applied = index, in one WriteBatch (synced). NX_ERR_DECODE if data is malformed
 * (nothing is changed then).
 */
int kv_install(struct raft_store *s, const uint8_t *data, size_t len, uint64_t index) NX_MUST_USE;

/* The same without writing: adds the replacement to wb (borrowed), no applied index.
 * NX_ERR_DECODE if data is malformed (wb must then be discarded). */
int kv_install_fill(struct raft_store *s, struct rocksdb_writebatch_t *wb, const uint8_t *data,
                    size_t len) NX_MUST_USE;

#endif
