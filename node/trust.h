/*
 * trust.h - who the transport lets in: a tiny predicate over Ed25519 public keys.
 *
 * Owns: the struct node_trust interface (one function pointer plus its context)
 * and a file-backed implementation, struct node_trust_file: a text file of
 * trusted keys, one lower- or upper-case hex Ed25519 public key (64 characters)
 * per line; '#' starts a comment that runs to the end of the line; blank lines
 * and surrounding spaces are ignored. A malformed line is an error that names
 * its line number, and a failed (re)load keeps the previous set.
 *
 * Never touches: the network, libzmq, libev. The transport (node/transport.h)
 * asks the predicate at every CURVE handshake and again for every received
 * message, so a key removed from the set is refused from the next message on.
 * Later the replicated registry backs the same interface.
 *
 * Threading: like everything the loop owns, call these on the loop thread only.
 */
#ifndef NODE_TRUST_H
#define NODE_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

#define NODE_TRUST_PK_BYTES 32
/* Largest number of distinct keys one trust file may hold. */
#define NODE_TRUST_FILE_MAX_KEYS 4096
/* Longest accepted line, comment included, without the newline. */
#define NODE_TRUST_FILE_MAX_LINE 1024

/*
 * The interface. is_trusted must be fast (it runs for every received message),
 * must not call back into the transport, and must return false for any key it
 * does not know. ctx is borrowed: its owner keeps it alive while in use.
 */
struct node_trust {
    bool (*is_trusted)(void *ctx, const uint8_t ed25519_pk[NODE_TRUST_PK_BYTES]);
    void *ctx;
};

/* Asks t; false when t or t->is_trusted is NULL (nobody is trusted). */
bool node_trust_check(const struct node_trust *t, const uint8_t ed25519_pk[NODE_TRUST_PK_BYTES]);

/* ---- file-backed set --------------------------------------------------- */

struct node_trust_file;

/* A new, empty set. *out is owned by the caller: free with node_trust_file_free. */
int node_trust_file_new(struct node_trust_file **out) NX_MUST_USE;
void node_trust_file_free(struct node_trust_file *tf); /* NULL is fine */

/*
 * Replaces the set with the keys in the file at path (borrowed for the call;
 * remembered for node_trust_file_reload). On failure the set is unchanged and,
 * when err is not NULL, err holds a one-line reason such as
 * "trust.keys:7: expected 64 hex characters". Returns 0, NX_ERR_IO (cannot
 * read), NX_ERR_DECODE (malformed line), NX_ERR_TOO_BIG (too many keys or a
 * line too long).
 */
int node_trust_file_load(struct node_trust_file *tf, const char *path, char *err,
                         size_t err_len) NX_MUST_USE;

/* Loads the file given to the last successful node_trust_file_load again. */
int node_trust_file_reload(struct node_trust_file *tf, char *err, size_t err_len) NX_MUST_USE;

/*
 * Same parser on text in memory (borrowed for the call, need not be
 * NUL-terminated); name is used in error messages. Replaces the set on success.
 */
int node_trust_file_parse(struct node_trust_file *tf, const char *name, const char *text,
                          size_t len, char *err, size_t err_len) NX_MUST_USE;

/* Adds one key (for tests and for code that builds a set by hand). NX_ERR_FULL at the limit. */
int node_trust_file_add(struct node_trust_file *tf,
                        const uint8_t ed25519_pk[NODE_TRUST_PK_BYTES]) NX_MUST_USE;
/* Removes one key; NX_ERR_NOT_FOUND when absent. */
int node_trust_file_remove(struct node_trust_file *tf,
                           const uint8_t ed25519_pk[NODE_TRUST_PK_BYTES]) NX_MUST_USE;

bool node_trust_file_contains(const struct node_trust_file *tf,
                              const uint8_t ed25519_pk[NODE_TRUST_PK_BYTES]);
size_t node_trust_file_count(const struct node_trust_file *tf);

/* The interface view of tf; tf is borrowed and must outlive every user of the view. */
struct node_trust node_trust_file_iface(struct node_trust_file *tf);

#endif
