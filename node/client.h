/*
 * client.h - the HTTP/JSON client that every `nexus` client command uses
 * (libcurl + jansson). It only talks to a node's API; it never reads node
 * state directly, except the operator token file for convenience.
 */
#ifndef NX_NODE_CLIENT_H
#define NX_NODE_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli.h"
#include "node.h"

#define CLIENT_TIMEOUT_MS 30000
#define CLIENT_MAX_REPLY_BYTES (16u << 20)

struct client {
    char api[128];
    char *token; /* sodium_malloc'd; may be NULL */
    bool json;   /* --json given */
};

/*
 * Fills c from --api, --token, --data-dir and --json (or NEXUS_API and
 * NEXUS_TOKEN). Without a token, reads DATA_DIR/operator.token when
 * --data-dir is given. Prints an error and returns false on failure.
 */
bool client_init(struct client *c, const struct cli_cmd *cmd, const struct cli_values *vals);
void client_free(struct client *c);

/*
 * Sends METHOD path with an optional JSON body (borrowed) and parses the JSON
 * reply into *reply (owned by the caller). Returns the HTTP status, or -1 after
 * printing a one-line error when the node cannot be reached or the reply is
 * not JSON. A status >= 400 is returned as is; client_print_error() prints it.
 */
long client_call(struct client *c, const char *method, const char *path, json_t *body,
                 json_t **reply);
/*
 * The same with a raw body (borrowed; NULL for none) of body_len bytes sent
 * with the given content type. path must already be URL-escaped.
 */
long client_request(struct client *c, const char *method, const char *path, const char *body,
                    size_t body_len, const char *content_type, json_t **reply);

/* Prints "nexus: <error from reply> (HTTP status)". */
void client_print_error(long status, json_t *reply);

/*
 * A whole client command with no arguments beyond the shared ones: parses
 * argv against spec, sends METHOD path, prints the reply as JSON with --json
 * or through print_text. Returns the exit code (0, 1 failure, 2 usage).
 */
int client_simple_command(const struct cli_cmd *spec, int argc, char **argv, const char *method,
                          const char *path, void (*print_text)(json_t *reply));

/*
 * The cluster id every signed ledger command names, from the node's genesis
 * (GET /v1/ledger/genesis). 0, or 1 with the error printed.
 */
int client_cluster_id(struct client *c, uint8_t cid[NODE_CLUSTER_ID_BYTES]);

#endif
