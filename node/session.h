/*
 * session.h - stateful agent sessions across the mesh (docs/agents.md "Sessions").
 *
 * Owns: the session records, kept in the replicated key-value store under
 * "_session/<id>" as JSON {"agent", "account", "context", "calls", "node"},
 * and the /v1/sessions API. A call reads the record linearizably, runs the
 * stateful agent once wherever placement puts it (agent_host_session_call:
 * the context goes in, the new context comes back), writes the new record
 * through Raft, and only then answers. So the checkpoint is replicated off
 * the node that ran the call before the caller sees the output: when that
 * node dies, the next call runs elsewhere from the last checkpoint.
 *
 * A call's run id is "<session>.<call number>", so a retried call is charged
 * once (the ledger keys charges by run id) and a call whose checkpoint was
 * not written is simply run again from the previous context.
 *
 * Never touches: placement, the sandbox, Raft internals.
 */
#ifndef NX_NODE_SESSION_H
#define NX_NODE_SESSION_H

#include <jansson.h>

#include "agent_host.h"
#include "api.h"
#include "raft_host.h"

#define SESSION_KV_PREFIX "_session/"
#define SESSION_ID_PREFIX "s-"
#define SESSION_ID_LEN 18     /* "s-" + 16 hex digits */
#define SESSION_MAX_BUSY 1024 /* calls in flight on one node */

struct session_host;

int session_host_start(struct session_host **out, struct agent_host *agents,
                       struct raft_host *raft) NX_MUST_USE;
void session_host_stop(struct session_host *s);

/*
 *   POST   /v1/sessions         {"agent": "NAME[@VERSION]", "account"?}  -> {"session": ID, ...}
 *   POST   /v1/sessions/ID      {"input": JSON}  -> the run's answer + {"session", "call"}
 *   GET    /v1/sessions/ID      the record
 *   DELETE /v1/sessions/ID      closes it (the record is deleted)
 */
enum api_result session_host_api(void *ctx, struct api_request *req);

json_t *session_host_counters_json(const struct session_host *s);

#endif
