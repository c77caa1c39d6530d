/*
 * mesh.h - the node's link to its peers: the transport (transport.h), NCAP
 * envelopes (proto/ncap.h) and the signed ping that measures each peer.
 *
 * Every message leaves through mesh_send (sealed: signed, sequenced, stamped)
 * and arrives through the transport into one verifier, so every module above
 * (gossip, Raft) sees only authenticated, fresh, non-replayed bodies.
 */
#ifndef NX_NODE_MESH_H
#define NX_NODE_MESH_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "node.h"

#define MESH_PEER_STALE_MS 5000 /* a peer unheard for this long counts as not connected */

struct ev_loop;
struct mesh;

struct mesh_config {
    const char *bind;       /* "HOST:PORT" for the transport */
    const char *peers;      /* '\n'-joined "HEXPK@HOST:PORT" entries, or NULL */
    const char *trust_file; /* path of the trusted keys file */
    uint32_t ping_interval_ms;
};

/* Borrowed: loop, id and cfg strings must outlive the mesh. */
int mesh_start(struct mesh **out, struct ev_loop *loop, const struct node_identity *id,
               const uint8_t cluster_id[NODE_CLUSTER_ID_BYTES], const struct mesh_config *cfg,
               char *err, size_t cap) NX_MUST_USE;
void mesh_stop(struct mesh *m);

/* JSON array of peers (id, address, connected, rtt_us, pongs); *connected counts live ones. */
json_t *mesh_peers_json(const struct mesh *m, uint64_t now_ms, size_t *connected);
/* JSON object of transport and envelope counters. */
json_t *mesh_counters_json(const struct mesh *m);

#endif
