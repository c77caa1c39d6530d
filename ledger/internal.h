/*
 * internal.h - private to ledger/: the stored record layouts, key builders
 * and the checks the state machine borrows from cmd.c.
 *
 * Key layout (one ordered key space, a prefix per table):
 *   meta/genesis            cluster id | operator key
 *   meta/applied            u64 last applied Raft index
 *   meta/time               u64 last apply time (ms, monotonic)
 *   meta/txhead             u64 seq | hash of the last transaction
 *   meta/supply             u64 total minted
 *   node/<key32>            struct rec_node
 *   noderm/<key32>          struct rec_node of a removed node (admitted_ms: removal time)
 *   token/<id>              struct rec_token
 *   tenant/<name>           struct rec_tenant
 *   account/<name>          struct rec_account
 *   agent/<name>            owning tenant of the agent name
 *   agent/<name>/<version>  struct rec_agent
 *   agentm/<name>/<version> the version's manifest bytes (raw)
 *   deploy/<name>           struct rec_deploy
 *   perm/<key32><action>/<resource>   empty value
 *   tx/<u64 BE seq>         transaction bytes | prev hash | hash
 *   idem/<scope32><key32>   struct rec_idem
 *   idemt/<u64 BE created_ms><author32><key32>   empty: idem records by age, for pruning
 *   audit/<u64 BE index>    struct ledger_audit
 * Big-endian numbers in keys keep the iteration order numeric.
 * (meta/genesis also carries the command window, u64 ms.)
 */
#ifndef NX_LEDGER_INTERNAL_H
#define NX_LEDGER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "ledger/codec.h"
#include "ledger/ledger.h"

/* The memo of ledger_cmd_precheck: true (and the entry consumed) when these bytes verified. */
bool ledger_sig_memo_take(struct ledger *l, const uint8_t cmd_hash[LEDGER_HASH_BYTES]);

bool ledger_token_proof_ok(const uint8_t *cluster_id, const char *token_id,
                           const uint8_t *joiner_pk, const uint8_t *nonce, const uint8_t *proof,
                           const uint8_t *verifier);
bool ledger_agent_sig_ok(const char *name, const char *version, const uint8_t *manifest_hash,
                         const uint8_t *bundle_hash, const uint8_t *sig, const uint8_t *pk);

struct key {
    uint8_t b[LEDGER_MAX_KEY_BYTES];
    size_t len;
};

/* prefix followed by up to three parts (NULL ends; each part is len bytes). */
void key_make(struct key *k, const char *prefix, const void *a, size_t alen, const void *b,
              size_t blen);
void key_str(struct key *k, const char *prefix, const char *name);
void key_u64(struct key *k, const char *prefix, uint64_t v);

struct rec_genesis {
    uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES];
    uint8_t operator_pk[LEDGER_KEY_BYTES];
    uint64_t window_ms;
};
struct rec_head {
    uint64_t seq;
    uint8_t hash[LEDGER_HASH_BYTES];
};
struct rec_tenant {
    uint8_t owner[LEDGER_KEY_BYTES];
};
struct rec_agent {
    char tenant[LEDGER_STR_CAP];
    uint8_t manifest_hash[LEDGER_HASH_BYTES];
    uint8_t bundle_hash[LEDGER_HASH_BYTES];
    uint8_t publisher[LEDGER_KEY_BYTES];
    uint8_t publisher_sig[LEDGER_SIG_BYTES];
    uint8_t deprecated;
};
struct rec_deploy {
    char tenant[LEDGER_STR_CAP];
    char agent[LEDGER_STR_CAP];
    char version[LEDGER_STR_CAP];
    uint32_t replicas;
};
struct rec_idem {
    uint8_t cmd_hash[LEDGER_HASH_BYTES];
    uint8_t reason;
    uint64_t tx_seq;
    uint8_t tx_hash[LEDGER_HASH_BYTES];
};

/* Visitors (codec.h) for every stored layout; rec points to the struct named
 * in the comment of internal.h's table. Account and token records skip the
 * name (it is in the key). */
void rec_genesis_fields(struct codec *c, void *rec);
void rec_head_fields(struct codec *c, void *rec);
void rec_tenant_fields(struct codec *c, void *rec);
void rec_account_fields(struct codec *c, void *rec);
void rec_token_fields(struct codec *c, void *rec);
void rec_node_fields(struct codec *c, void *rec);
void rec_agent_fields(struct codec *c, void *rec);
void rec_deploy_fields(struct codec *c, void *rec);
void rec_idem_fields(struct codec *c, void *rec);
void rec_audit_fields(struct codec *c, void *rec);
/* The canonical transaction bytes (everything but prev_hash and hash). */
void rec_tx_fields(struct codec *c, struct ledger_tx *r);
/* A stored transaction: u32 length | canonical bytes | prev hash | hash. */
int rec_tx_encode(const struct ledger_tx *tx, struct codec *out) NX_MUST_USE;
int rec_tx_decode(const uint8_t *val, size_t len, struct ledger_tx *tx) NX_MUST_USE;
/* hash = BLAKE2b-256("NXLEDGER-txch-1:" | prev hash | canonical bytes) */
int tx_hash_compute(const struct ledger_tx *tx, uint8_t hash[LEDGER_HASH_BYTES]) NX_MUST_USE;

typedef void (*rec_fields_fn)(struct codec *c, void *rec);
/* Reads key from the batch (when not NULL) then the store and decodes it with
 * fields into rec. NX_ERR_NOT_FOUND, NX_ERR_CORRUPT when it does not decode. */
int rec_get(struct ledger_store *store, const struct ledger_batch *batch, const struct key *k,
            rec_fields_fn fields, void *rec) NX_MUST_USE;
/* Raw read through batch and store. */
int raw_get(struct ledger_store *store, const struct ledger_batch *batch, const struct key *k,
            uint8_t *val, size_t cap, size_t *len) NX_MUST_USE;
/* meta/<name> as a u64 through batch (may be NULL) and store; 0 when absent. */
int meta_u64_get(struct ledger_store *store, const struct ledger_batch *batch, const char *name,
                 uint64_t *out) NX_MUST_USE;
/* 1 when perm/<subject><action>/<resource> exists, or the grant on "*"; 0 when
 * neither; <0 on a store error. */
int perm_granted(struct ledger_store *store, const struct ledger_batch *batch,
                 const uint8_t *subject, const char *action, const char *resource);
/* The first key under prefix in the logical state (the batch over the store,
 * tombstones hiding store keys). 1 and *out set, 0 when none, <0 on error. */
int merged_first(struct ledger_store *store, const struct ledger_batch *batch, const char *prefix,
                 struct key *out) NX_MUST_USE;
/* agent/<name>/<version> */
void key_agent(struct key *k, const char *name, const char *version);
/* agentm/<name>/<version> */
void key_manifest(struct key *k, const char *name, const char *version);
int rec_put(struct ledger_batch *batch, const struct key *k, rec_fields_fn fields,
            void *rec) NX_MUST_USE;

#endif
