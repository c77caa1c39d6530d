/*
 * node.h - the NexusCore daemon and command-line tool (`nexus`).
 *
 * Owns: process start-up, configuration, the node's identity on disk
 * (node.key, operator.token, cluster.id), the libev loop that drives every
 * other module, the adapters to real I/O (ZeroMQ transport, HTTP API) and the
 * command-line client that talks to the HTTP API.
 *
 * Never touches: protocol logic that belongs in a pure core (gossip/,
 * consensus/) or the wire format (proto/). Those are called, not re-done here.
 *
 * This header lists what other files of node/ share; nothing outside node/
 * includes it except tests of node/.
 */
#ifndef NX_NODE_H
#define NX_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

#define NODE_VERSION "0.1.0"

#define NODE_KEY_FILE "node.key"
#define NODE_TOKEN_FILE "operator.token"
#define NODE_CLUSTER_FILE "cluster.id"
#define NODE_TRUST_FILE "trusted.keys"

#define NODE_PK_BYTES 32
#define NODE_SK_BYTES 64
#define NODE_CLUSTER_ID_BYTES 16
#define NODE_ID_HEX_LEN (2 * NODE_PK_BYTES)
#define NODE_TOKEN_BYTES 32
/* "nxo_" + hex of the random bytes */
#define NODE_TOKEN_PREFIX "nxo_"
#define NODE_TOKEN_LEN (4 + 2 * NODE_TOKEN_BYTES)
#define NODE_ADDR_MAX 128
#define NODE_MAX_STATIC_PEERS 64

/* ---- identity (identity.c) ------------------------------------------- */

/* The node's Ed25519 key pair. sk lives in sodium_malloc memory. */
struct node_identity {
    uint8_t pk[NODE_PK_BYTES];
    uint8_t *sk; /* NODE_SK_BYTES, owned, wiped on free */
    char id_hex[NODE_ID_HEX_LEN + 1];
};

/*
 * Loads DIR/node.key, or creates it (mode 0600) when absent. Refuses a key
 * file that group or others may read, and a corrupt or truncated one, with a
 * one-line message in err (cap bytes). *created tells whether it was made now.
 */
int node_identity_load_or_create(struct node_identity *id, const char *dir, bool *created,
                                 char *err, size_t cap) NX_MUST_USE;
void node_identity_free(struct node_identity *id);

/*
 * Reads DIR/operator.token or creates it (mode 0600). The token is returned
 * in sodium_malloc memory (NUL-terminated), owned by the caller; free it with
 * node_secret_free().
 */
int node_operator_token_load_or_create(char **token, const char *dir, char *err,
                                       size_t cap) NX_MUST_USE;
/* Reads DIR/operator.token if present; NX_ERR_NOT_FOUND otherwise. */
int node_operator_token_read(char **token, const char *dir, char *err, size_t cap) NX_MUST_USE;
void node_secret_free(char *secret);

/* DIR/cluster.id (hex): read, or with create=true make a random one. */
int node_cluster_id_load(uint8_t id[NODE_CLUSTER_ID_BYTES], const char *dir, bool create, char *err,
                         size_t cap) NX_MUST_USE;
int node_cluster_id_store(const uint8_t id[NODE_CLUSTER_ID_BYTES], const char *dir, char *err,
                          size_t cap) NX_MUST_USE;

/* Writes data to DIR/NAME atomically (temporary file, fsync, rename) with mode 0600. */
int node_file_write_atomic(const char *dir, const char *name, const char *data, char *err,
                           size_t cap) NX_MUST_USE;

/* Creates DIR (and parents) with mode 0700 when missing. */
int node_data_dir_prepare(const char *dir, char *err, size_t cap) NX_MUST_USE;

/* Constant-time comparison of two NUL-terminated secrets. */
bool node_secret_equal(const char *a, const char *b);

/* ---- addresses ---------------------------------------------------------- */

/* Splits "HOST:PORT" (IPv6 as "[::1]:PORT"); 0 or NX_ERR_INVAL. */
int node_addr_split(const char *addr, char *host, size_t host_cap, uint16_t *port) NX_MUST_USE;

#endif
