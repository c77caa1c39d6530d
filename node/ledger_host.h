/*
 * ledger_host.h - the registry and ledger state machine (ledger/ledger.h)
 * inside the node: its RocksDB store, the operator key file, genesis, the
 * JSON answers of the /v1/ledger routes, and the node's snapshot format that
 * carries both state machines (kv and ledger).
 *
 * Owns: the struct ledger and its store adapter; the operator key pair when
 * this node has DATA_DIR/operator.key.
 *
 * Never touches: Raft (raft_host.c proposes, applies in log order and calls
 * in here), the HTTP server, account secret keys (clients sign their own).
 *
 * Key files (operator.key, account keys made by the CLI) are text, mode 0600:
 *     nexus-ed25519-key-v1
 *     seed=<64 hex chars>
 * Node snapshot (Raft snapshot data):
 *     "NXSNAP2\0" | kv length u64 LE | kv snapshot (kv.h) | ledger snapshot stream
 * Empty data (the bootstrap snapshot at index 0) means both are empty.
 */
#ifndef NX_NODE_LEDGER_HOST_H
#define NX_NODE_LEDGER_HOST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger/ledger.h"
#include "raft_store.h"

#define LEDGER_HOST_OPERATOR_KEY_FILE "operator.key"
#define LEDGER_HOST_KEY_MAGIC "nexus-ed25519-key-v1"
#define LEDGER_HOST_SNAP_MAGIC "NXSNAP2"
#define LEDGER_HOST_SNAP_HEADER_BYTES 16
#define LEDGER_HOST_LOG_DEFAULT_LIMIT 100
#define LEDGER_HOST_LOG_MAX_LIMIT 1000

struct ledger_host;

/* Writes a new key file at path (must not exist) with mode 0600; pk and sk returned. */
int ledger_key_file_create(const char *path, uint8_t pk[LEDGER_KEY_BYTES],
                           uint8_t sk[LEDGER_SECRET_KEY_BYTES], char *err, size_t cap) NX_MUST_USE;
/* Reads a key file. NX_ERR_NOT_FOUND when missing; NX_ERR_INVAL when malformed. */
int ledger_key_file_read(const char *path, uint8_t pk[LEDGER_KEY_BYTES],
                         uint8_t sk[LEDGER_SECRET_KEY_BYTES], char *err, size_t cap) NX_MUST_USE;

/*
 * Opens the ledger on rs (borrowed). Reads DATA_DIR/operator.key if present;
 * when create_operator_key is set, no genesis is stored and the file is
 * missing, creates it. *out is owned by the caller (ledger_host_free).
 */
int ledger_host_open(struct ledger_host **out, struct raft_store *rs, const char *data_dir,
                     bool create_operator_key, char *err, size_t cap) NX_MUST_USE;
void ledger_host_free(struct ledger_host *lh);
struct ledger *ledger_host_ledger(struct ledger_host *lh);
struct ledger_store *ledger_host_store(struct ledger_host *lh);

/*
 * When this node holds an operator key and the ledger has no genesis: a
 * signed genesis command (*cmd malloc'd, caller frees), made once and reused
 * (so re-proposals are duplicates). NX_ERR_NOT_FOUND when there is nothing to do.
 */
int ledger_host_genesis_cmd(struct ledger_host *lh, uint8_t **cmd, size_t *len) NX_MUST_USE;

/*
 * An operator-signed admission of node (the operator admits directly: static
 * bootstrap members and members added through the Raft API). NX_ERR_NOT_FOUND
 * when this node holds no operator key or the ledger has no genesis yet.
 */
int ledger_host_admit_cmd(struct ledger_host *lh, const uint8_t node[LEDGER_KEY_BYTES],
                          uint8_t **cmd, size_t *len) NX_MUST_USE;

/* The registry's trust view (mesh.h): its members and its removed nodes, as two
 * new sets owned by the caller. */
struct node_trust_file;
int ledger_host_trust_sets(struct ledger_host *lh, struct node_trust_file **admitted,
                           struct node_trust_file **removed) NX_MUST_USE;

/* The answer to an applied command: *status 200 (accepted) or 422 (rejected). */
json_t *ledger_host_result_json(const struct ledger_result *r, uint64_t index, unsigned *status);

/*
 * Answers a read described by what: "balance/NAME", "accounts", "genesis",
 * "verify", "log/AFTER/LIMIT". index is the applied index (reported).
 */
json_t *ledger_host_read_json(struct ledger_host *lh, const char *what, uint64_t index,
                              unsigned *status);

/* The node snapshot (see above); *out malloc'd. */
int ledger_host_snapshot(struct ledger_host *lh, struct raft_store *rs, uint8_t **out,
                         size_t *len) NX_MUST_USE;
/* Replaces kv and ledger with a node snapshot and records applied = index, in one synced write. */
int ledger_host_install(struct ledger_host *lh, struct raft_store *rs, const uint8_t *data,
                        size_t len, uint64_t index) NX_MUST_USE;

#endif
