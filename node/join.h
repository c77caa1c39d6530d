/*
 * join.h - join by token, both sides (docs/join.md).
 *
 * A join token is the ledger's join string (cluster id, operator pin, token id
 * and secret; ledger.h) followed by the node id of the member that made it:
 *     nxj1.<cluster 32 hex>.<operator pin 64 hex>.<id>.<secret>.<member 64 hex>
 * The member's key pins whom the joiner talks to: the CURVE handshake fails
 * against any other server, so an impostor at HOST:PORT learns nothing and
 * admits nobody. The secret never leaves the joiner: it signs a proof bound
 * to the joiner's own key, checked by the state machine at apply time.
 *
 * Joiner (join_run): sends JOIN_REQUEST {its address, its signed admit
 * command} to the pinned member as a guest, waits for the JOIN_RESPONSE and,
 * when admitted, trusts the members the answer lists and keeps them in
 * DATA_DIR/join.seed (gossip seeds and Raft peers, also after a restart).
 *
 * Member (join_serve): answers guests' JOIN_REQUESTs by proposing the admit
 * command through Raft (raft_host_submit_ledger); the ledger decides. Every
 * refusal is counted by reason and logged. The leader then adds the new node
 * as a learner (raft_host.c, "the voter set").
 *
 * Owns: the token text format, the two message bodies, the join.seed file.
 */
#ifndef NX_NODE_JOIN_H
#define NX_NODE_JOIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip_host.h"
#include "ledger/ledger.h"
#include "mesh.h"
#include "node.h"
#include "raft_host.h"

#define JOIN_TOKEN_MAX (LEDGER_JOIN_STRING_BYTES + 1 + NODE_ID_HEX_LEN + 1)
#define JOIN_SEED_FILE "join.seed"
#define JOIN_TIMEOUT_MS 30000      /* the joiner gives up after this long without an answer */
#define JOIN_RESEND_MS 1000        /* and asks again this often (same command: idempotent) */
#define JOIN_MAX_PENDING 16        /* joins a member works on at once; more: "try again" */
#define JOIN_MAX_LISTED_MEMBERS 32 /* members an answer names */

struct ev_loop;

/* A parsed token. */
struct join_token {
    char ledger_string[LEDGER_JOIN_STRING_BYTES]; /* for ledger_cmd_build_admit */
    uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES];
    uint8_t operator_pin[LEDGER_HASH_BYTES];
    char id[LEDGER_STR_CAP];
    uint8_t member[NODE_PK_BYTES];
};

int join_token_format(const char *ledger_string, const uint8_t member[NODE_PK_BYTES],
                      char out[JOIN_TOKEN_MAX]) NX_MUST_USE;
/* NX_ERR_INVAL with a reason in err when the text is not a token. */
int join_token_parse(const char *text, struct join_token *out, char *err, size_t cap) NX_MUST_USE;

/*
 * Reads DATA_DIR/join.seed: '\n'-joined "HEXPK@HOST:PORT" lines (the --peer
 * syntax), *out malloc'd. NX_ERR_NOT_FOUND when the node never joined.
 */
int join_seed_read(const char *data_dir, char **out) NX_MUST_USE;

/*
 * The joiner's side, run on the loop before the node's other services start
 * (mesh running, nothing else). On success *seeds (malloc'd) holds the
 * members as '\n'-joined peer entries, already trusted and written to
 * DATA_DIR/join.seed. On failure err says why in one line (refused: the
 * ledger's reason; no answer; ...).
 */
int join_run(struct ev_loop *loop, struct mesh *mesh, const struct node_identity *id,
             const struct join_token *token, const char *member_addr, const char *advertise,
             const char *data_dir, uint32_t timeout_ms, char **seeds, char *err,
             size_t cap) NX_MUST_USE;

/* The member's side: serves JOIN_REQUESTs until join_serve_stop. */
struct join_server;
int join_serve(struct join_server **out, struct mesh *mesh, struct raft_host *raft,
               struct gossip_host *gossip, const struct node_identity *id,
               const char *advertise) NX_MUST_USE;
void join_serve_stop(struct join_server *s);
/* {"requests", "admitted", "refused": {reason: count}, "malformed", "busy"} */
json_t *join_serve_counters_json(const struct join_server *s);

#endif
