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

/*
 * A handler for one envelope type. sender is the authenticated key (it signed
 * the envelope and owns the connection); body is borrowed for the call.
 */
typedef void (*mesh_handler_fn)(void *ctx, const uint8_t sender[NODE_PK_BYTES], const uint8_t *body,
                                size_t len);

#define MESH_MAX_HANDLERS 16

/* Routes envelopes of `type` (enum ncap_msg_type) to fn. NX_ERR_FULL past the limit. */
int mesh_set_handler(struct mesh *m, uint32_t type, mesh_handler_fn fn, void *ctx) NX_MUST_USE;
/* Removes the handler of `type` (if any): its envelopes count as unexpected again. */
void mesh_clear_handler(struct mesh *m, uint32_t type);

/*
 * Seals body in an envelope of `type` addressed to `to` and queues it. When
 * addr ("HOST:PORT") is given, the transport learns or updates the peer's
 * address first. Never blocks: a full queue drops and counts.
 */
int mesh_send(struct mesh *m, const uint8_t to[NODE_PK_BYTES], const char *addr, uint32_t type,
              const uint8_t *body, size_t len) NX_MUST_USE;

/*
 * Joiners: a JOIN_REQUEST signed by a key no member trusts yet. sender signed
 * it; route (valid for the call) answers it through mesh_reply_guest. Setting
 * a handler lets guests connect (rate-limited by the transport); NULL stops it.
 */
typedef void (*mesh_guest_fn)(void *ctx, const uint8_t sender[NODE_PK_BYTES], const char *route,
                              const uint8_t *body, size_t len);
void mesh_set_guest_handler(struct mesh *m, mesh_guest_fn fn, void *ctx);
int mesh_reply_guest(struct mesh *m, const char *route, const uint8_t to[NODE_PK_BYTES],
                     uint32_t type, const uint8_t *body, size_t len) NX_MUST_USE;

/*
 * Trust: a key is trusted when the registry has not removed it and either the
 * trust file (plus keys given to mesh_trust_add) or the registry's member set
 * lists it. Every handshake and every message asks again, so a change applies
 * from the next message on.
 */
bool mesh_trusts(const struct mesh *m, const uint8_t pk[NODE_PK_BYTES]);
/* Replaces the registry's view: both sets are taken (owned by the mesh from now on). */
struct node_trust_file;
void mesh_trust_registry_set(struct mesh *m, struct node_trust_file *admitted,
                             struct node_trust_file *removed);
/* Trusts one more key (a joiner learns its cluster's members this way). */
int mesh_trust_add(struct mesh *m, const uint8_t pk[NODE_PK_BYTES]) NX_MUST_USE;

/* JSON array of peers (id, address, connected, rtt_us, pongs); *connected counts live ones. */
json_t *mesh_peers_json(const struct mesh *m, uint64_t now_ms, size_t *connected);
/* JSON object of transport and envelope counters. */
json_t *mesh_counters_json(const struct mesh *m);

#endif
