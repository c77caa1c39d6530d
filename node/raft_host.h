/*
 * raft_host.h - runs the pure Raft core (consensus/raft.h) inside the node,
 * with RocksDB storage (raft_store.h) and two state machines: key-value (kv.h)
 * and the registry and ledger (ledger_host.h). The first byte of a normal
 * entry says which: 1 kv command, 2 ledger entry (ledger_entry_wrap output).
 *
 * Owns: the core, its storage, the map of Raft ids to node keys and
 * addresses, the tick timer, the once-per-loop-iteration Ready processing
 * (group commit, see docs/raft-node.md) and the API requests waiting for a
 * commit, an apply or a ReadIndex.
 *
 * Never touches: the Raft protocol itself, the wire format of envelopes
 * (mesh.h seals and verifies them) or the HTTP server (api.h).
 */
#ifndef NX_NODE_RAFT_HOST_H
#define NX_NODE_RAFT_HOST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "api.h"
#include "gossip/gossip.h"
#include "gossip_host.h"
#include "kv.h"
#include "mesh.h"
#include "node.h"

#define RAFT_HOST_DEFAULT_TICK_MS 50
#define RAFT_HOST_HEARTBEAT_TICKS 1
#define RAFT_HOST_ELECTION_TICKS_MIN 6
#define RAFT_HOST_ELECTION_TICKS_MAX 12
#define RAFT_HOST_DEFAULT_SNAPSHOT_EVERY 10000
#define RAFT_HOST_MAX_PENDING 8192        /* API requests waiting on Raft */
#define RAFT_HOST_REQUEST_TIMEOUT_MS 8000 /* then 503, outcome unknown */
#define RAFT_HOST_MAX_PEERS (RAFT_MAX_NODES * 4)
#define RAFT_HOST_FORWARD_EXTRA_MS 1000 /* a forwarder waits this much past the leader */

/*
 * Envelope types of this module (NCAP_MSG_* values 50..59 are reserved for it):
 * a follower forwards a KV request to the leader and relays the answer.
 *   FORWARD:       op u8 (1 put, 2 delete, 3 get, 4 ledger command in the
 *                  value with an empty key, 5 ledger read named by the key) | request id u64 LE |
 *                  key length u16 LE | key | value
 *   FORWARD_REPLY: request id u64 LE | HTTP status u16 LE | JSON answer
 */
#define RAFT_HOST_MSG_FORWARD 50
#define RAFT_HOST_MSG_FORWARD_REPLY 51
/* A chunk of a Raft message too large for one envelope (snapshots):
 *   CHUNK: message id u64 LE | offset u32 LE | total u32 LE | bytes */
#define RAFT_HOST_MSG_CHUNK 52
#define RAFT_HOST_CHUNK_BYTES (1u << 20) /* messages above this travel in chunks */

struct raft_host;

struct raft_host_config {
    const char *data_dir;
    bool bootstrap;          /* on empty storage: create a cluster (self + peers as voters) */
    const char *peers;       /* '\n'-joined "HEXPK@HOST:PORT", or NULL */
    uint32_t tick_ms;        /* logical tick period */
    uint64_t snapshot_every; /* applied entries between snapshots */
    uint32_t voter_target;   /* voters the leader aims for; 0: 3, or 5 from 5 members on */
    uint32_t voter_grace_ms; /* a voter dead this long is replaced by a caught-up learner */
};

/* Nonzero Raft id of a node key: its first 8 bytes, little-endian (1 if those are 0). */
uint64_t raft_host_id_of(const uint8_t pk[NODE_PK_BYTES]);

/*
 * Opens storage, loads and checks it (a corrupt store is an error: err says
 * what and where), creates the core and starts the tick timer and the
 * per-iteration Ready watcher. Borrowed: loop, mesh, gossip (may be NULL), id
 * and cfg strings outlive the host.
 */
int raft_host_start(struct raft_host **out, struct ev_loop *loop, struct mesh *mesh,
                    struct gossip_host *gossip, const struct node_identity *id,
                    const struct raft_host_config *cfg, char *err, size_t cap) NX_MUST_USE;
/* Stops watchers and frees everything. Pending API requests must have been answered
 * or abandoned by api_server_stop first. */
void raft_host_stop(struct raft_host *h);

/* Whether a storage failure stopped the host (the loop was broken; exit non-zero). */
bool raft_host_failed(const struct raft_host *h);

/* {"role", "term", "leader", "commit_index", "applied_index", "voters", "learners", ...} */
json_t *raft_host_status_json(const struct raft_host *h);

/* This node's place in Raft as gossip advertises it: leader, candidate, voter, learner or none. */
enum gossip_raft_role raft_host_gossip_role(const struct raft_host *h);

/*
 * Called once with the answer to a submitted command: an HTTP-like status
 * (200 applied, 422 rejected by the ledger, 503 retry, ...) and the JSON
 * answer (borrowed for the call: {"reason": ..., "index": ...} or {"error": ...}).
 */
typedef void (*raft_host_done_fn)(void *arg, unsigned status, json_t *answer);

/*
 * Proposes a signed ledger command (borrowed) for another module: on the leader
 * directly, on a follower through the leader. done runs once, possibly before
 * this returns (an immediate refusal), else from the loop.
 */
void raft_host_submit_ledger(struct raft_host *h, const uint8_t *cmd, size_t len,
                             raft_host_done_fn done, void *arg);

/*
 * The same for the key-value store: a put (value, vlen) or, with value NULL,
 * a delete of key. done gets 200 once applied.
 */
void raft_host_submit_kv(struct raft_host *h, const char *key, const char *value, size_t vlen,
                         raft_host_done_fn done, void *arg);
/* A linearizable read of key: done gets 200 {"key", "value"} or 404. */
void raft_host_read_kv(struct raft_host *h, const char *key, raft_host_done_fn done, void *arg);
/* Every key of the local (applied, possibly stale) KV copy that starts with prefix. */
int raft_host_kv_scan(struct raft_host *h, const char *prefix, kv_scan_fn fn,
                      void *arg) NX_MUST_USE;

/* The replicated registry and ledger as applied on this node (read-only use). */
struct ledger;
struct ledger *raft_host_ledger(struct raft_host *h);

/* API handlers; ctx is the struct raft_host. */
enum api_result raft_host_api_kv(void *ctx, struct api_request *req);            /* /v1/kv/KEY */
enum api_result raft_host_api_member_add(void *ctx, struct api_request *req);    /* POST */
enum api_result raft_host_api_member_remove(void *ctx, struct api_request *req); /* DELETE */
/* POST /v1/ledger/commands {"command": hex or base64}: proposed (forwarded by a
 * follower), answered once applied with the ledger's result (200 or 422). */
enum api_result raft_host_api_ledger_command(void *ctx, struct api_request *req);
/* GET /v1/ledger/{balance/NAME,accounts,log?after&limit,genesis,verify}[?stale]:
 * linearizable through ReadIndex unless ?stale; verify always checks the local copy. */
enum api_result raft_host_api_ledger_read(void *ctx, struct api_request *req);

#endif
