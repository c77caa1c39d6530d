/*
 * agent_registry.h - this node's read-only view of the agent registry (the
 * agent/ and agentm/ tables of the ledger state machine, docs/ledger.md), and
 * the agent questions asked of it: list, show, search by capability, and
 * resolve NAME[@VERSION] to a bundle hash and a manifest.
 *
 * Owns: a RocksDB *secondary* instance over the node's own database
 * (DATA_DIR/db), opened under DATA_DIR/agents/registry-view, and a read-only
 * struct ledger_store over its "ledger" column family. Every read first
 * catches up with the primary (rocksdb_try_catch_up_with_primary, which
 * replays the primary's new WAL), so a read sees what Raft has applied on
 * this node: a local (stale-by-replication-lag) read, like ?stale reads of
 * the ledger API.
 *
 * Why a secondary and not the raft host's ledger: raft_host.h does not export
 * its struct ledger, and raft_host.c is being changed by others. When it
 * gains an accessor (raft_host_ledger), agent_registry_open_on(ledger) is the
 * one line to change; nothing else here depends on where the ledger lives.
 *
 * Never touches: the ledger's writes (every write op of the store fails with
 * NX_ERR_PERM), Raft, the network.
 */
#ifndef NX_NODE_AGENT_REGISTRY_H
#define NX_NODE_AGENT_REGISTRY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger/ledger.h"

#define AGENT_REGISTRY_VIEW_DIR "agents/registry-view"
#define AGENT_REGISTRY_MAX_VERSIONS 1024 /* versions listed per agent */
#define AGENT_REGISTRY_MAX_AGENTS 4096   /* agents listed per answer */

struct agent_registry;

/* Opens the view over DATA_DIR/db (which the raft host must have created). */
int agent_registry_open(struct agent_registry **out, const char *data_dir, char *err,
                        size_t cap) NX_MUST_USE;
/* A view over a ledger the caller owns (tests, or a future raft_host accessor). */
int agent_registry_open_on(struct agent_registry **out, struct ledger *ledger) NX_MUST_USE;
void agent_registry_close(struct agent_registry *r);

/* Catches up with what this node applied. Cheap when nothing changed. */
int agent_registry_refresh(struct agent_registry *r) NX_MUST_USE;
/* The ledger behind the view (read-only), as of the last refresh. */
struct ledger *agent_registry_ledger(struct agent_registry *r);

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
