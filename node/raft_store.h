/*
 * raft_store.h - the node's durable storage: one RocksDB database per node in
 * DATA_DIR/db, holding the Raft log, the Raft state and the replicated
 * key-value state machine.
 *
 * Owns: the database handle and its column families:
 *   raft_log    key: big-endian u64 index; value: crc32c u32 | term u64 |
 *               type u8 | len u32 | data (all little-endian). The checksum
 *               covers the key too, so an entry moved to another index fails.
 *   raft_state  "hard" (term, vote, commit), "snap_meta" (index, term, conf,
 *               data length and data checksum), "snap_data" (the snapshot
 *               bytes), "applied" (the state machine's applied index); each
 *               value carries its own crc32c.
 *   kv          the state machine's keys and values (node/kv.h).
 *   registry, ledger, blobs, local: created empty now so later modules need
 *               no migration.
 *
 * Never touches: the Raft protocol (consensus/raft.h decides; this file only
 * writes what a raft_ready says, as ONE synced WriteBatch) or the meaning of
 * kv values.
 *
 * Rules: nothing read back is trusted. raft_store_load checks every checksum,
 * that the log is consecutive from the snapshot, that terms never decrease and
 * that commit <= last index; a violation is NX_ERR_CORRUPT with a message
 * naming the index, and the node refuses to start.
 */
#ifndef NX_NODE_RAFT_STORE_H
#define NX_NODE_RAFT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "consensus/raft.h"

#define RAFT_STORE_DIR "db"              /* under the data directory */
#define RAFT_STORE_ENTRY_HEADER_BYTES 17 /* crc u32, term u64, type u8, len u32 */

/* Column families, in the order they are opened. */
enum raft_store_cf {
    RAFT_STORE_CF_DEFAULT = 0,
    RAFT_STORE_CF_LOG,
    RAFT_STORE_CF_STATE,
    RAFT_STORE_CF_KV,
    RAFT_STORE_CF_REGISTRY,
    RAFT_STORE_CF_LEDGER,
    RAFT_STORE_CF_BLOBS,
    RAFT_STORE_CF_LOCAL,
    RAFT_STORE_CF_COUNT
};

struct raft_store;
struct rocksdb_writebatch_t; /* rocksdb/c.h */

/* What raft_store_load read: a raft_boot plus the memory it points into. */
struct raft_store_boot {
    struct raft_boot boot;         /* entries and snapshot data point into owned memory */
    struct raft_conf applied_conf; /* configuration as of boot.applied */
    bool has_state;                /* false: nothing stored yet (a new node) */
    /* owned, freed by raft_store_boot_free */
    struct raft_entry *entries;
    uint8_t *snap_data;
};

/*
 * Opens (creating when missing) DATA_DIR/db with every column family. *out is
 * owned by the caller (raft_store_close). err gets a one-line message.
 */
int raft_store_open(struct raft_store **out, const char *data_dir, char *err,
                    size_t cap) NX_MUST_USE;
void raft_store_close(struct raft_store *s);

/* For the KV state machine and tests: the database and a column family, borrowed. */
struct rocksdb_t *raft_store_db(struct raft_store *s);
struct rocksdb_column_family_handle_t *raft_store_cf(struct raft_store *s, enum raft_store_cf cf);

/*
 * A new cluster: stores a snapshot at index 0 whose configuration is conf
 * (borrowed), synced. NX_ERR_EXISTS when Raft state is already stored.
 */
int raft_store_bootstrap(struct raft_store *s, const struct raft_conf *conf) NX_MUST_USE;

/*
 * Reads and checks everything stored (see the rules above) into *out, which
 * the caller frees with raft_store_boot_free. NX_ERR_CORRUPT with err naming
 * the index or key on any violation; NX_ERR_IO when RocksDB fails.
 */
int raft_store_load(struct raft_store *s, struct raft_store_boot *out, char *err,
                    size_t cap) NX_MUST_USE;
void raft_store_boot_free(struct raft_store_boot *b);

/*
 * Step 1 of the Ready contract as ONE WriteBatch: the snapshot (meta and
 * data; deletes every stored entry), entries overwriting from entries[0].index,
 * the hard state. rd is borrowed. The batch is synced unless it only changes
 * the commit index (which need not be durable; RocksDB keeps WAL order, so a
 * later sync covers it).
 */
int raft_store_persist(struct raft_store *s, const struct raft_ready *rd) NX_MUST_USE;

/*
 * Stores a host-made snapshot at index with term and conf (borrowed), data
 * (borrowed) and deletes stored entries <= index, in one synced batch.
 */
int raft_store_compact(struct raft_store *s, uint64_t index, uint64_t term,
                       const struct raft_conf *conf, const void *data, size_t len) NX_MUST_USE;

/* Adds "applied = index" to a batch the state machine writes (rocksdb_writebatch_t). */
void raft_store_batch_applied(struct raft_store *s, struct rocksdb_writebatch_t *wb,
                              uint64_t index);

/* Writes a batch (borrowed); sync chooses a synced write. */
int raft_store_write(struct raft_store *s, struct rocksdb_writebatch_t *wb, bool sync) NX_MUST_USE;

/* CRC-32C (Castagnoli) of buf, continuing from crc (0 to start). */
uint32_t raft_store_crc32c(uint32_t crc, const void *buf, size_t len);

/* Counters: synced batches written and entries stored (for status and benchmarks). */
uint64_t raft_store_syncs(const struct raft_store *s);

#endif
