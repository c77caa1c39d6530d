/*
 * ledger_store_rocksdb.h - the ledger's storage seam (struct ledger_store,
 * ledger/ledger.h) on the node's RocksDB, column family "ledger"
 * (docs/ledger.md section 9 maps every key into this one family).
 *
 * Owns: the adapter object only. The database belongs to the raft_store.
 *
 * Never touches: the Raft log or state, the kv family, the meaning of keys.
 *
 * Atomicity with the Raft applied index: the host does not call
 * ledger_store_commit while applying; it copies the ledger batch into the
 * same rocksdb_writebatch_t that carries the kv effects and raft_state's
 * "applied" (ledger_store_rocksdb_fill), and writes that once. While a
 * capture batch is set, commit (used by ledger_snapshot_install) adds to it
 * instead of writing, so a snapshot installs kv and ledger together.
 */
#ifndef NX_NODE_LEDGER_STORE_ROCKSDB_H
#define NX_NODE_LEDGER_STORE_ROCKSDB_H

#include "ledger/ledger.h"
#include "raft_store.h"

/* A store over s's "ledger" family; s is borrowed and must outlive it. NULL when out of memory. */
struct ledger_store *ledger_store_rocksdb_new(struct raft_store *s);
void ledger_store_rocksdb_free(struct ledger_store *store);

/* Adds every operation of batch (borrowed) to wb, in the ledger family. */
int ledger_store_rocksdb_fill(struct ledger_store *store, const struct ledger_batch *batch,
                              struct rocksdb_writebatch_t *wb) NX_MUST_USE;

/* While wb is non-NULL, commit fills wb instead of writing (wb borrowed). */
void ledger_store_rocksdb_capture(struct ledger_store *store, struct rocksdb_writebatch_t *wb);

#endif
