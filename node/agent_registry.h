/*
 * agent_registry.h - this node's read-only view of the agent registry (the
 * agent/ and agentm/ tables of the ledger state machine, docs/ledger.md), and
 * the agent questions asked of it: list, show, search by capability, and
 * resolve NAME[@VERSION] to a bundle hash and a manifest.
 *
 * Owns: nothing but the questions. It reads the ledger the raft host
 * applies (raft_host_ledger), so a read sees what Raft has applied on this
 * node: a local read, stale by the replication lag, like ?stale reads of the
 * ledger API. Published versions never change but for their deprecation
 * flag, so a stale read can only miss a version, never misreport one.
 *
 * Never touches: the ledger's writes, Raft, the network.
 */
#ifndef NX_NODE_AGENT_REGISTRY_H
#define NX_NODE_AGENT_REGISTRY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger/ledger.h"

#define AGENT_REGISTRY_MAX_VERSIONS 1024 /* versions listed per agent */
#define AGENT_REGISTRY_MAX_AGENTS 4096   /* agents listed per answer */

struct agent_registry;

/* A view over a ledger (borrowed: it must outlive the view). */
int agent_registry_open(struct agent_registry **out, struct ledger *ledger) NX_MUST_USE;
void agent_registry_close(struct agent_registry *r);

/* One resolved agent version. manifest is malloc'd (agent_version_clear frees it). */
struct agent_version {
    struct ledger_agent rec;
    uint8_t *manifest;
    size_t manifest_len;
};
void agent_version_clear(struct agent_version *v);

/*
 * NAME or NAME@VERSION: without a version, the highest version (dotted
 * numeric order, docs/agents.md) that is not deprecated. NX_ERR_NOT_FOUND
 * when there is none; NX_ERR_INVAL for a bad name.
 */
int agent_registry_resolve(struct agent_registry *r, const char *spec,
                           struct agent_version *out) NX_MUST_USE;

/*
 * {"agents": [{"name", "latest", "versions": [{"version", "tenant",
 * "deprecated", "bundle_hash", "manifest_hash", "publisher", "description",
 * "kind", "resources", "capabilities": [{"name","description"}]}]}]}.
 * capability, when not NULL, keeps the agents with a version that has a
 * capability whose name or description contains it (ASCII case-insensitive).
 * name, when not NULL, keeps that agent only and adds each version's
 * "manifest" (the full JSON); NULL with *status 404 when it has no version.
 */
json_t *agent_registry_json(struct agent_registry *r, const char *name, const char *capability,
                            unsigned *status);

/* Version order: dot/dash-separated parts, numeric parts compared as numbers. */
int agent_version_cmp(const char *a, const char *b);

#endif
