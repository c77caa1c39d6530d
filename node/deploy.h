/*
 * deploy.h - deployments of long-running agents (docs/agents.md "Deployments").
 *
 * Owns: the controller that runs on the Raft leader (wants from the
 * registry's deployments, current assignments from the replicated KV under
 * DEPLOY_KV_PREFIX, members from gossip, deploy_plan, changes written
 * through Raft one round at a time); the executor on every node (runs the
 * replicas assigned to it, supervised with backoff, resources held while
 * they run, their log lines in a bounded ring); the status and logs queries
 * between members (envelope types 70..71); GET /v1/deployments and
 * GET /v1/deployments/NAME/logs.
 *
 * Never touches: Raft internals (raft_host_submit_kv, raft_host_kv_scan),
 * the bundle store and fetching (agent_host.h does both), the sandbox
 * internals (sandbox.h's run API). The KV entries and the log ring are
 * deploy_kv.h.
 */
#ifndef NX_NODE_DEPLOY_H
#define NX_NODE_DEPLOY_H

#include <stdint.h>

#include "agent_host.h"
#include "api.h"
#include "deploy_kv.h"
#include "gossip_host.h"
#include "mesh.h"
#include "node.h"
#include "raft_host.h"

#define DEPLOY_MSG_QUERY 70       /* rid u64 LE | JSON {"what": "status" | "logs", ...} */
#define DEPLOY_MSG_QUERY_REPLY 71 /* rid u64 LE | JSON answer */

#define DEPLOY_CONTROL_MS 1000         /* the leader reconciles this often */
#define DEPLOY_EXEC_MS 500             /* every node compares its assignments this often */
#define DEPLOY_GRACE_DEFAULT_MS 10000  /* a dead member's replicas move after this */
#define DEPLOY_LOCAL_MAX 64            /* replicas one node runs */
#define DEPLOY_LOG_LINES 256           /* kept per replica */
#define DEPLOY_LOG_LINE_MAX 1024       /* bytes per kept line (longer ones are cut) */
#define DEPLOY_ROUND_MAX 32            /* KV writes per controller round */
#define DEPLOY_RESERVE_GIVE_UP 5       /* refused reservations in a row: the replica goes back */
#define DEPLOY_QUERY_TIMEOUT_MS 2000   /* a member that does not answer a query */
#define DEPLOY_QUERIES_MAX 64          /* API requests waiting on members */
#define DEPLOY_BACKOFF_BASE_MS 500     /* restart delay, doubled per quick exit ... */
#define DEPLOY_BACKOFF_MAX_MS 30000    /* ... up to this */
#define DEPLOY_BACKOFF_STABLE_MS 10000 /* a run this long resets the delay */
#define DEPLOY_FETCH_RETRY_MS 2000     /* after a failed fetch */

struct deploy_host;

struct deploy_host_config {
    uint64_t grace_ms; /* 0: DEPLOY_GRACE_DEFAULT_MS */
};

/* Borrowed: everything, for the host's lifetime. */
int deploy_host_start(struct deploy_host **out, struct ev_loop *loop, struct mesh *mesh,
                      struct gossip_host *gossip, struct raft_host *raft, struct agent_host *agents,
                      const struct node_identity *id, const struct deploy_host_config *cfg,
                      char *err, size_t cap) NX_MUST_USE;
/* After api_server_stop, before agent_host_stop: stops every replica run here. */
void deploy_host_stop(struct deploy_host *h);

/* GET /v1/deployments, GET /v1/deployments/NAME/logs[?replica=R&lines=N]; ctx: deploy_host. */
enum api_result deploy_host_api(void *ctx, struct api_request *req);

#endif
