/*
 * gossip_host.h - runs the pure SWIM core (gossip/) inside the node.
 *
 * Wires the core to the libev loop (one timer at the core's next deadline),
 * to the mesh (every gossip message is one signed NCAP envelope of type
 * GOSSIP, addressed to its member) and to the machine's resources (refreshed
 * into our metadata when they change noticeably).
 */
#ifndef NX_NODE_GOSSIP_HOST_H
#define NX_NODE_GOSSIP_HOST_H

#include <jansson.h>

#include "gossip/gossip.h"
#include "mesh.h"
#include "node.h"

#define GOSSIP_HOST_REFRESH_MS 5000 /* how often resources are re-read */

struct gossip_host;

struct gossip_host_config {
    const char *advertise; /* "HOST:PORT" others reach our transport at */
    const char *seeds;     /* '\n'-joined "HEXID@HOST:PORT", or NULL */
    const char *labels;    /* '\n'-joined "key=value", or NULL */
    uint32_t probe_interval_ms;
    int gpus;               /* -1: none advertised */
    uint64_t gpu_mem_bytes; /* per GPU, with gpus */
    /* > 0: advertise this much CPU / memory, all free, instead of what is detected
     * (node_detect_opts; for several nodes on one machine, as tests run them) */
    uint32_t cpu_override_millicores;
    uint64_t mem_override_bytes;
};

/* Borrowed: loop, mesh, id and cfg strings outlive the host. */
int gossip_host_start(struct gossip_host **out, struct ev_loop *loop, struct mesh *mesh,
                      const struct node_identity *id, const struct gossip_host_config *cfg,
                      char *err, size_t cap) NX_MUST_USE;
void gossip_host_stop(struct gossip_host *h);

/* Leaves gracefully: tells others we left; the caller stops the node shortly after. */
void gossip_host_leave(struct gossip_host *h);

/* Advertises our Raft role; gossips it only when it changed. */
void gossip_host_set_raft_role(struct gossip_host *h, int role /* enum gossip_raft_role */);

struct node_reserved; /* resources.h */
/* What admitted runs hold (borrowed, NULL for nothing): subtracted from what we advertise. */
void gossip_host_set_reserved(struct gossip_host *h, const struct node_reserved *rv);
/* Re-reads our resources now (a reservation changed); gossips them when they moved noticeably. */
void gossip_host_refresh(struct gossip_host *h);

/* The member list as JSON (id, address, state, incarnation, resources, labels, ...). */
json_t *gossip_host_members_json(const struct gossip_host *h);
/*
 * One member's state and how long it has held it (ms, by the monotonic clock).
 * NX_ERR_NOT_FOUND when gossip has never heard of the key.
 */
int gossip_host_member_state(const struct gossip_host *h, const uint8_t pk[NODE_PK_BYTES],
                             enum gossip_state *state, uint64_t *for_ms) NX_MUST_USE;
/* Counters (messages, drops, suspicions) and local health as JSON. */
json_t *gossip_host_counters_json(const struct gossip_host *h);

#endif
