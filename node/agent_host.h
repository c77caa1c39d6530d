/*
 * agent_host.h - mesh-wide agent runs inside the node (docs/agents.md).
 *
 * Owns: the /v1/agents, /v1/runs and /v1/bundles API; the run protocol
 * between members (envelope types 60..69 below); placement of a run on the
 * members gossip knows (node/placement.h: place_rank on the requester,
 * place_admit on the target, the next candidate on a refusal); fetching a
 * missing bundle from peers in chunks; the resources admitted runs hold
 * here; and metering: a charge (LEDGER_CMD_CHARGE signed by this node's key,
 * the run id as idempotency) for every run done here for an account.
 *
 * Never touches: Raft or the ledger's state (it reads the registry through
 * agent_registry.h over raft_host_ledger, and proposes signed charges with
 * raft_host_submit_ledger like any other author), the sandbox internals (agent_exec.h drives it on
 * helper threads), the wire format of envelopes (mesh.h).
 *
 * A run, end to end:
 *
 *   client --POST /v1/runs--> requester: resolve NAME[@VERSION] in the registry,
 *       needs from the manifest, place_rank over gossip members
 *     requester --RUN--> best candidate (itself too: through the same handlers)
 *       target: place_admit against its real state; reserve, or REFUSED
 *     target --RUN_REPLY accepted--> requester (else: the next candidate)
 *       target: bundle missing? --FETCH--> requester, then any member that has
 *       it, chunk by chunk; hash checked; stored; unpacked
 *       target: sandboxed run on a helper thread (warm pool when stateless)
 *       target: with an account, charge it (exactly once per run id)
 *     target --RUN_REPLY done (output, usage, node, charge)--> requester --> client
 */
#ifndef NX_NODE_AGENT_HOST_H
#define NX_NODE_AGENT_HOST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "api.h"
#include "gossip_host.h"
#include "mesh.h"
#include "node.h"
#include "raft_host.h"

/*
 * Envelope types of this module (NCAP message types 60..69 are reserved for it).
 * Every body starts with the sender's request id (u64 LE), which the answer repeats.
 *   RUN:         rid | JSON {"run_id", "agent", "version", "tenant", "bundle_hash",
 *                "input", "account"?, "needs": {cpu_millicores, mem_bytes, gpus,
 *                gpu_mem_bytes}, "constraints": ["key=value", ...]}
 *   RUN_REPLY:   rid | JSON {"status": "accepted" | "refused" | "done", ...}
 *   FETCH:       rid | bundle hash (32) | offset u64 LE | max bytes u32 LE
 *   FETCH_REPLY: rid | status u8 (0 bytes follow, 1 not stored here) | total u64 LE |
 *                offset u64 LE | bytes
 */
#define AGENT_MSG_RUN 60
#define AGENT_MSG_RUN_REPLY 61
#define AGENT_MSG_FETCH 62
#define AGENT_MSG_FETCH_REPLY 63

#define AGENT_HOST_MAX_OUTBOUND 1024        /* runs this node placed, waiting for an answer */
#define AGENT_HOST_MAX_INBOUND 256          /* runs admitted here */
#define AGENT_HOST_CANDIDATES 8             /* members tried per run, best first */
#define AGENT_HOST_ADMIT_TIMEOUT_MS 3000    /* a candidate that does not answer: next */
#define AGENT_HOST_FETCH_BUDGET_MS 30000    /* added to the agent's timeout while waiting */
#define AGENT_HOST_CHUNK_BYTES (512u << 10) /* bundle bytes per FETCH_REPLY */
#define AGENT_HOST_CHUNK_TIMEOUT_MS 5000    /* a source that does not answer: next */
#define AGENT_HOST_DONE_CACHE 512           /* finished runs remembered by run id */
#define AGENT_HOST_MAX_INPUT_BYTES (512u << 10)
#define AGENT_HOST_POOL_DEFAULT 2           /* warm sandboxes per stateless agent version */
#define AGENT_HOST_RESOURCES_MAX_AGE_MS 500 /* admission re-reads resources this often */
#define AGENT_HOST_RUN_ID_MAX 64            /* a ledger name: [a-z0-9._-]{1,64} */
#define AGENT_HOST_PREFETCH_EVERY_MS 2000   /* look for registry bundles missing here */
#define AGENT_HOST_PREFETCH_RETRY_MS 30000  /* a bundle nobody could serve: try again after */
#define AGENT_HOST_PREFETCH_BACKOFF_SLOTS 8
#define AGENT_HOST_CHARGE_ATTEMPTS 50  /* a charge Raft answers 503 is resent ... */
#define AGENT_HOST_CHARGE_RETRY_MS 200 /* ... this often (10 s in all) */
/* a run sent this recently counts against its member in our view (gossip lags) */
#define AGENT_HOST_VIEW_GRACE_MS (GOSSIP_HOST_REFRESH_MS + 1000)

struct agent_host;

struct agent_host_config {
    const char *data_dir;
    const uint8_t *cluster_id; /* NODE_CLUSTER_ID_BYTES: what charges name before genesis is here */
    const char *labels;        /* '\n'-joined key=value as advertised, or NULL */
    int gpus;                  /* as for gossip: > 0 override, 0 detect, < 0 none */
    uint64_t gpu_mem_bytes;
    uint32_t cpu_override_millicores; /* as for gossip: > 0 replaces what is detected */
    uint64_t mem_override_bytes;
    unsigned threads;   /* helper threads; 0 = AGENT_EXEC_THREADS_DEFAULT */
    unsigned pool_size; /* warm sandboxes per agent version; 0 = none */
};

/*
 * Opens the bundle store, starts the helper threads and registers the
 * envelope handlers. Borrowed: everything, for the host's lifetime.
 */
int agent_host_start(struct agent_host **out, struct ev_loop *loop, struct mesh *mesh,
                     struct gossip_host *gossip, struct raft_host *raft,
                     const struct node_identity *id, const struct agent_host_config *cfg, char *err,
                     size_t cap) NX_MUST_USE;
/* After api_server_stop, before raft_host_stop: waits for running agents, frees everything
 * (a charge still waiting for Raft is abandoned; its run id keeps a retry from paying twice). */
void agent_host_stop(struct agent_host *h);

/* An answer for another module: HTTP-like status and the JSON body (borrowed for the call). */
typedef void (*agent_host_done_fn)(void *arg, unsigned status, json_t *answer);

/*
 * One call of a stateful agent for a session (session.h): placed and run like
 * POST /v1/runs, with context (the session's last checkpoint; json null for a
 * new session) sent along; the answer is the run's, plus "context" when the
 * agent returned a new one. done runs once, possibly before this returns.
 */
void agent_host_session_call(struct agent_host *h, const char *agent_spec, json_t *input,
                             json_t *context, const char *account, const char *run_id,
                             agent_host_done_fn done, void *arg);

/* Runs, fetches, replication and charges counted since start. */
json_t *agent_host_counters_json(const struct agent_host *h);

/* The registry questions (agent_registry.h) this host answers with. */
struct agent_registry *agent_host_registry(struct agent_host *h);

/* ---- for deployments (node/deploy.h): the bundle store, fetching, reservations ---- */

/* Called once a fetch ended: rc NX_OK (the bundle is stored here) or an error and why. */
typedef void (*agent_host_fetch_fn)(void *arg, const uint8_t *bundle_hash, int rc, const char *why);
/*
 * Fetches a bundle (BUNDLE_HASH_BYTES) from the alive members, like a run's
 * target does; fn runs later from the loop, never before this returns.
 * NX_ERR_FULL when every inbound slot is busy (try again later).
 */
int agent_host_fetch(struct agent_host *h, const uint8_t *bundle_hash, agent_host_fetch_fn fn,
                     void *arg) NX_MUST_USE;
/* The unpacked bundle's directory; NX_ERR_NOT_FOUND when the bundle is not stored here. */
int agent_host_bundle_dir(struct agent_host *h, const uint8_t *bundle_hash, char *dir, size_t cap,
                          char *err, size_t err_cap) NX_MUST_USE;
struct node_request;
struct node_grant;
/* Holds resources here like an admitted run (gossip advertises them as taken). */
int agent_host_reserve(struct agent_host *h, const struct node_request *req,
                       struct node_grant *grant) NX_MUST_USE;
void agent_host_release(struct agent_host *h, const struct node_grant *grant);
/* The member view as gossip sees it (state_change_ms not filled); *out malloc'd. */
int agent_host_members(struct agent_host *h, struct gossip_member_info **out,
                       size_t *n) NX_MUST_USE;

/* API handlers; ctx is the struct agent_host. */
/* GET /v1/agents[?capability=X], /v1/agents/NAME, /v1/agents/NAME/plan[?version=V] */
enum api_result agent_host_api_agents(void *ctx, struct api_request *req);
/* POST /v1/runs {"agent": "NAME[@VERSION]", "input", "account"?, "run_id"?, "constraints"?} */
enum api_result agent_host_api_run(void *ctx, struct api_request *req);
/* PUT /v1/bundles/HASH?offset=O&total=T with raw archive bytes */
enum api_result agent_host_api_bundle(void *ctx, struct api_request *req);

#endif
