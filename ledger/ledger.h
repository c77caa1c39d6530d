/*
 * ledger.h - the replicated registry and ledger: a deterministic state machine.
 *
 * Owns: the command format (hand-laid canonical bytes, signed by their author
 * with Ed25519), the state machine that applies committed Raft entries
 * (ledger_apply), the layout of the state in an ordered key-value store, the
 * transaction hash chain and its verifier (ledger_verify), join-token proofs,
 * snapshots of the state, and the query functions the node and the CLI use.
 *
 * Never touches: a clock, a random source, the network or the disk. Time comes
 * in the Raft entry (the proposer's timestamp, clamped to be monotonic), and
 * storage is the struct ledger_store seam: the node backs it with a RocksDB
 * column family, tests with the in-memory store here. docs/ledger.md
 * specifies the bytes, the permissions and the invariants.
 *
 * The host loop, per committed entry:
 *     ledger_batch_init(&b);
 *     ledger_apply(l, entry, len, raft_index, &b, &res);   // reads store + batch
 *     ledger_store_commit(store, &b);   // one atomic write, applied index inside
 *     ledger_batch_free(&b);
 * Several entries may share one batch: later entries see earlier writes.
 */
#ifndef NX_LEDGER_H
#define NX_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ---- limits and sizes --------------------------------------------------- */

#define LEDGER_KEY_BYTES 32        /* Ed25519 public key */
#define LEDGER_SECRET_KEY_BYTES 64 /* libsodium Ed25519 secret key */
#define LEDGER_SIG_BYTES 64
#define LEDGER_HASH_BYTES 32 /* BLAKE2b-256 */
#define LEDGER_CLUSTER_ID_BYTES 16
#define LEDGER_IDEM_BYTES 32
#define LEDGER_NONCE_BYTES 16
#define LEDGER_NAME_MAX 64           /* names: [a-z0-9._-], 1..64 chars */
#define LEDGER_TOKEN_ID_LEN 6        /* token id: [a-z0-9], exactly 6 chars */
#define LEDGER_TOKEN_SECRET_LEN 16   /* token secret: [a-z0-9], exactly 16 chars */
#define LEDGER_MAX_ENTRY_BYTES 65536 /* a Raft entry larger than this is rejected */
#define LEDGER_MAX_KEY_BYTES 256
#define LEDGER_MAX_VALUE_BYTES 4096
#define LEDGER_MAX_REPLICAS 1024
#define LEDGER_SNAPSHOT_CHUNK_BYTES 65536
#define LEDGER_CMD_HEADER_BYTES 112
#define LEDGER_ENTRY_HEADER_BYTES 16
#define LEDGER_REASON_TEXT_BYTES 256
/* An agent version's manifest travels in its publish command and is stored in
 * the registry (so every member can search capabilities); it must fit one
 * stored value. Larger schemas belong in the bundle's files. */
#define LEDGER_MANIFEST_MAX_BYTES LEDGER_MAX_VALUE_BYTES
/* Default command window: a command whose created_ms is further than this from
 * the apply time is refused (STALE / FUTURE), which lets the state machine
 * forget idempotency records older than the window. Genesis may set another. */
#define LEDGER_CMD_WINDOW_MS (24ull * 3600 * 1000)
#define LEDGER_PRUNE_PER_ENTRY 4 /* idempotency records forgotten per applied entry, at most */

/* ---- storage seam ------------------------------------------------------- */

/*
 * A write batch: puts and deletes, ordered by key, later writes to a key
 * replacing earlier ones. ledger_apply reads through it (read your writes).
 * The host commits it with ledger_store_commit, atomically.
 */
struct ledger_batch {
    void *map; /* private: owned */
    size_t ops;
};

/* Called per key in order; return 0 to go on, 1 to stop, <0 for an error. */
typedef int (*ledger_kv_fn)(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                            size_t val_len);
/* Batch walk: val is NULL for a delete. */
typedef int (*ledger_batch_fn)(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                               size_t val_len);

struct ledger_store_ops {
    /* Copies the value into val (capacity val_cap), sets *val_len. NX_ERR_NOT_FOUND
     * when absent; NX_ERR_TOO_BIG (with *val_len set) when val_cap is too small. */
    int (*get)(void *ctx, const uint8_t *key, size_t key_len, uint8_t *val, size_t val_cap,
               size_t *val_len);
    int (*put)(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len);
    int (*del)(void *ctx, const uint8_t *key, size_t key_len);
    /* Every key starting with prefix, in ascending byte order. Returns 0, or the
     * callback's negative code. */
    int (*iter)(void *ctx, const uint8_t *prefix, size_t prefix_len, ledger_kv_fn fn, void *arg);
    /* Applies every operation of the batch atomically (all or nothing). */
    int (*commit)(void *ctx, const struct ledger_batch *batch);
};

struct ledger_store {
    const struct ledger_store_ops *ops;
    void *ctx;
};

/* In-memory store (a treap ordered by key). Returns NULL when out of memory. */
struct ledger_store *ledger_store_mem_new(void);
void ledger_store_mem_free(struct ledger_store *store);
size_t ledger_store_mem_count(const struct ledger_store *store);

void ledger_batch_init(struct ledger_batch *batch);
void ledger_batch_free(struct ledger_batch *batch);
int ledger_batch_put(struct ledger_batch *batch, const uint8_t *key, size_t key_len,
                     const uint8_t *val, size_t val_len) NX_MUST_USE;
int ledger_batch_del(struct ledger_batch *batch, const uint8_t *key, size_t key_len) NX_MUST_USE;
/* Every operation in key order (val NULL for a delete). */
int ledger_batch_foreach(const struct ledger_batch *batch, ledger_batch_fn fn, void *arg);
/* store->ops->commit(store->ctx, batch). */
int ledger_store_commit(struct ledger_store *store, const struct ledger_batch *batch) NX_MUST_USE;

/* ---- commands ------------------------------------------------------------- */

enum ledger_cmd_type {
    LEDGER_CMD_GENESIS = 1,
    LEDGER_CMD_NODE_ADMIT = 2,
    LEDGER_CMD_NODE_REMOVE = 3,
    LEDGER_CMD_TOKEN_CREATE = 4,
    LEDGER_CMD_TOKEN_EXPIRE = 5,
    LEDGER_CMD_TENANT_CREATE = 6,
    LEDGER_CMD_ACCOUNT_CREATE = 7,
    LEDGER_CMD_AGENT_PUBLISH = 8,
    LEDGER_CMD_AGENT_DEPRECATE = 9,
    LEDGER_CMD_DEPLOY_PUT = 10,
    LEDGER_CMD_DEPLOY_DELETE = 11,
    LEDGER_CMD_PERM_GRANT = 12,
    LEDGER_CMD_PERM_REVOKE = 13,
    LEDGER_CMD_TRANSFER = 14,
    LEDGER_CMD_MINT = 15,
    LEDGER_CMD_CHARGE = 16,
    LEDGER_CMD__MAX = 16
};

#define LEDGER_STR_CAP (LEDGER_NAME_MAX + 1)

struct ledger_cmd_genesis {
    uint8_t first_node[LEDGER_KEY_BYTES]; /* admitted at genesis; all zero: none */
    uint64_t window_ms;                   /* command window; 0: LEDGER_CMD_WINDOW_MS */
};
struct ledger_cmd_node_admit {
    uint8_t node[LEDGER_KEY_BYTES];
    char token_id[LEDGER_STR_CAP];                /* "" only when the operator admits directly */
    uint8_t pin_cluster[LEDGER_CLUSTER_ID_BYTES]; /* the cluster the joiner's token names */
    uint8_t pin_operator[LEDGER_HASH_BYTES];      /* BLAKE2b-256 of its operator key */
    uint8_t nonce[LEDGER_NONCE_BYTES];
    uint8_t proof[LEDGER_SIG_BYTES]; /* ledger_token_proof() */
};
struct ledger_cmd_node_remove {
    uint8_t node[LEDGER_KEY_BYTES];
};
struct ledger_cmd_token_create {
    char id[LEDGER_STR_CAP];
    uint8_t verifier[LEDGER_KEY_BYTES]; /* ledger_token_keypair() public half */
    uint64_t expires_ms;
    uint32_t uses;
};
struct ledger_cmd_token_expire {
    char id[LEDGER_STR_CAP];
};
struct ledger_cmd_tenant_create {
    char name[LEDGER_STR_CAP];
    uint8_t owner[LEDGER_KEY_BYTES];
};
struct ledger_cmd_account_create {
    char name[LEDGER_STR_CAP];
    char tenant[LEDGER_STR_CAP];
    uint8_t key[LEDGER_KEY_BYTES]; /* signs transfers out of the account */
};
struct ledger_cmd_agent_publish {
    char name[LEDGER_STR_CAP];
    char version[LEDGER_STR_CAP];
    char tenant[LEDGER_STR_CAP];
    uint8_t manifest_hash[LEDGER_HASH_BYTES];
    uint8_t bundle_hash[LEDGER_HASH_BYTES];
    uint8_t publisher_sig[LEDGER_SIG_BYTES];     /* ledger_agent_sign() by the author */
    uint32_t manifest_len;                       /* 1..LEDGER_MANIFEST_MAX_BYTES */
    uint8_t manifest[LEDGER_MANIFEST_MAX_BYTES]; /* BLAKE2b-256 must equal manifest_hash */
};
struct ledger_cmd_agent_deprecate {
    char name[LEDGER_STR_CAP];
    char version[LEDGER_STR_CAP];
};
struct ledger_cmd_deploy_put {
    char name[LEDGER_STR_CAP];
    char tenant[LEDGER_STR_CAP];
    char agent[LEDGER_STR_CAP];
    char version[LEDGER_STR_CAP];
    uint32_t replicas;
};
struct ledger_cmd_deploy_delete {
    char name[LEDGER_STR_CAP];
};
struct ledger_cmd_perm {
    uint8_t subject[LEDGER_KEY_BYTES];
    char action[LEDGER_STR_CAP];   /* e.g. "account.create", "transfer" */
    char resource[LEDGER_STR_CAP]; /* a tenant or account name, or "*" */
};
struct ledger_cmd_transfer {
    char from[LEDGER_STR_CAP];
    char to[LEDGER_STR_CAP];
    uint64_t amount;
};
struct ledger_cmd_mint {
    char to[LEDGER_STR_CAP];
    uint64_t amount;
};
struct ledger_cmd_charge {
    char account[LEDGER_STR_CAP]; /* the caller's account, debited */
    char payee[LEDGER_STR_CAP];   /* credited */
    uint64_t amount;
    char run_id[LEDGER_STR_CAP]; /* idempotency: one charge per run, cluster-wide */
};

/* A decoded command. The signature covers header and body (docs/ledger.md). */
struct ledger_cmd {
    uint8_t type; /* enum ledger_cmd_type */
    uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES];
    uint8_t author[LEDGER_KEY_BYTES];
    uint8_t idem_key[LEDGER_IDEM_BYTES]; /* unique per author; a transfer's idempotency key */
    uint64_t created_ms;                 /* author's clock, informational */
    union {
        struct ledger_cmd_genesis genesis;
        struct ledger_cmd_node_admit admit;
        struct ledger_cmd_node_remove node_remove;
        struct ledger_cmd_token_create token_create;
        struct ledger_cmd_token_expire token_expire;
        struct ledger_cmd_tenant_create tenant;
        struct ledger_cmd_account_create account;
        struct ledger_cmd_agent_publish publish;
        struct ledger_cmd_agent_deprecate deprecate;
        struct ledger_cmd_deploy_put deploy;
        struct ledger_cmd_deploy_delete deploy_delete;
        struct ledger_cmd_perm perm;
        struct ledger_cmd_transfer transfer;
        struct ledger_cmd_mint mint;
        struct ledger_cmd_charge charge;
    } u;
};

/*
 * Encodes and signs a command. cmd->author must be the public half of sk.
 * *out is malloc'd, owned by the caller. NX_ERR_INVAL on a bad field (a name
 * outside [a-z0-9._-]{1,64}, unknown type).
 */
int ledger_cmd_build(const struct ledger_cmd *cmd, const uint8_t sk[LEDGER_SECRET_KEY_BYTES],
                     uint8_t **out, size_t *out_len) NX_MUST_USE;
/* Decodes command bytes (no signature check). NX_ERR_DECODE when not canonical. */
int ledger_cmd_decode(const uint8_t *buf, size_t len, struct ledger_cmd *out) NX_MUST_USE;
/* Verifies the command's signature against its author; 0 or NX_ERR_BAD_SIG. */
int ledger_cmd_verify(const uint8_t *buf, size_t len) NX_MUST_USE;

/* Convenience for the CLI: a signed transfer. */
int ledger_cmd_build_transfer(const uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES],
                              const uint8_t sk[LEDGER_SECRET_KEY_BYTES], const char *from,
                              const char *to, uint64_t amount,
                              const uint8_t idem_key[LEDGER_IDEM_BYTES], uint64_t created_ms,
                              uint8_t **out, size_t *out_len) NX_MUST_USE;

/*
 * Wraps command bytes into a Raft entry with the proposer's timestamp (the
 * leader's wall clock at proposal). *out is malloc'd, owned by the caller.
 */
int ledger_entry_wrap(const uint8_t *cmd, size_t cmd_len, uint64_t proposer_time_ms, uint8_t **out,
                      size_t *out_len) NX_MUST_USE;

/* Publisher signature over an agent version (stored with it). */
void ledger_agent_sign(const char *name, const char *version,
                       const uint8_t manifest_hash[LEDGER_HASH_BYTES],
                       const uint8_t bundle_hash[LEDGER_HASH_BYTES],
                       const uint8_t sk[LEDGER_SECRET_KEY_BYTES], uint8_t sig[LEDGER_SIG_BYTES]);

/* ---- join tokens (docs/ledger.md "Join tokens") ------------------------- */

/* The token's Ed25519 key pair, derived from the secret, the cluster and the id. */
int ledger_token_keypair(const uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES], const char *token_id,
                         const char *secret, uint8_t pk[LEDGER_KEY_BYTES],
                         uint8_t sk[LEDGER_SECRET_KEY_BYTES]) NX_MUST_USE;
/* The joiner's proof of the secret, bound to its key and a nonce. */
int ledger_token_proof(const uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES], const char *token_id,
                       const char *secret, const uint8_t joiner_pk[LEDGER_KEY_BYTES],
                       const uint8_t nonce[LEDGER_NONCE_BYTES],
                       uint8_t proof[LEDGER_SIG_BYTES]) NX_MUST_USE;
/*
 * A new token id (6 chars) and secret (16 chars) from caller-supplied random
 * bytes (randombytes_buf on the operator's machine; ledger/ itself has no
 * random source). Each char is 5 bits from the base32 alphabet [a-z2-7], a
 * subset of the allowed [a-z0-9]: 30 bits of id, 80 bits of secret, unbiased.
 */
#define LEDGER_TOKEN_RANDOM_BYTES 14 /* 22 chars x 5 bits = 110 bits */
void ledger_token_new(const uint8_t random[LEDGER_TOKEN_RANDOM_BYTES], char id[LEDGER_STR_CAP],
                      char secret[LEDGER_STR_CAP]);
/* BLAKE2b-256 of the operator key: the pin a join string carries. */
void ledger_operator_pin(const uint8_t operator_pk[LEDGER_KEY_BYTES],
                         uint8_t pin[LEDGER_HASH_BYTES]);

#define LEDGER_JOIN_STRING_BYTES 128
/* "nxj1.<cluster hex32>.<operator pin hex64>.<id>.<secret>", NUL-terminated. */
int ledger_join_string_format(const uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES],
                              const uint8_t operator_pin[LEDGER_HASH_BYTES], const char *token_id,
                              const char *secret, char out[LEDGER_JOIN_STRING_BYTES]) NX_MUST_USE;
int ledger_join_string_parse(const char *s, uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES],
                             uint8_t operator_pin[LEDGER_HASH_BYTES], char token_id[LEDGER_STR_CAP],
                             char secret[LEDGER_STR_CAP]) NX_MUST_USE;

/*
 * The joiner's side in one call: parses the join string, makes the proof for
 * its own key (the public half of node_sk) and a nonce it chose at random,
 * and builds the signed admit command. The idempotency key is derived from
 * the nonce. *out is malloc'd, owned by the caller. NX_ERR_INVAL on a bad
 * join string.
 */
int ledger_cmd_build_admit(const char *join_string, const uint8_t node_sk[LEDGER_SECRET_KEY_BYTES],
                           const uint8_t nonce[LEDGER_NONCE_BYTES], uint64_t created_ms,
                           uint8_t **out, size_t *out_len) NX_MUST_USE;

/* ---- the state machine ---------------------------------------------------- */

/* Why a command was rejected; LEDGER_OK when applied. Stable numbers (stored). */
enum ledger_reason {
    LEDGER_OK = 0,
    LEDGER_REJ_MALFORMED = 1,
    LEDGER_REJ_WRONG_CLUSTER = 2,
    LEDGER_REJ_BAD_SIG = 3,
    LEDGER_REJ_NO_GENESIS = 4,
    LEDGER_REJ_PERM = 5,
    LEDGER_REJ_UNKNOWN_ACCOUNT = 6,
    LEDGER_REJ_OVERDRAFT = 7,
    LEDGER_REJ_OVERFLOW = 8,
    LEDGER_REJ_IDEM_CONFLICT = 9,
    LEDGER_REJ_EXISTS = 10,
    LEDGER_REJ_NOT_FOUND = 11,
    LEDGER_REJ_TOKEN_UNKNOWN = 12,
    LEDGER_REJ_TOKEN_EXPIRED = 13,
    LEDGER_REJ_TOKEN_USED_UP = 14,
    LEDGER_REJ_TOKEN_FORGED = 15,
    LEDGER_REJ_TOKEN_OTHER_CLUSTER = 16,
    LEDGER_REJ_NODE_EXISTS = 17,
    LEDGER_REJ_BAD_PUBLISHER_SIG = 18,
    LEDGER_REJ_DEPRECATED = 19,
    LEDGER_REJ_BAD_VALUE = 20, /* zero amount, replicas over the limit, self transfer */
    LEDGER_REJ_UNKNOWN_TENANT = 21,
    LEDGER_REJ_STALE = 22,        /* created_ms older than the command window */
    LEDGER_REJ_FUTURE = 23,       /* created_ms further ahead than the command window */
    LEDGER_REJ_BAD_MANIFEST = 24, /* publish: manifest empty or its hash is not manifest_hash */
    LEDGER_REJ__COUNT = 25
};

const char *ledger_reason_str(int reason);

struct ledger_result {
    int reason;           /* enum ledger_reason */
    bool duplicate;       /* answered from the idempotency record, nothing applied */
    bool already_applied; /* raft_index <= applied index: nothing done */
    uint8_t type;         /* command type, 0 when it did not decode */
    uint64_t tx_seq;      /* ledger transactions: position in the chain (from 1) */
    uint8_t tx_hash[LEDGER_HASH_BYTES];
};

struct ledger_sig_memo;

struct ledger {
    struct ledger_store *store;   /* borrowed */
    struct ledger_sig_memo *memo; /* owned; NULL unless ledger_sig_memo_enable */
};

void ledger_init(struct ledger *l, struct ledger_store *store);
/* Frees what the ledger owns (the signature memo); the store stays the caller's. */
void ledger_fini(struct ledger *l);

/*
 * One Ed25519 verification per command per node. The host checks a command's
 * signature early, when its API receives it (junk never takes a log slot),
 * with ledger_cmd_precheck: like ledger_cmd_verify, and on success, when the
 * memo is enabled, it remembers the hash of these exact bytes in a bounded,
 * node-local memo (LEDGER_SIG_MEMO_SLOTS, direct-mapped, the newest wins a
 * slot). When ledger_apply on this replica meets the same bytes, it takes the
 * memo entry instead of verifying a second time. The outcome is unchanged (a
 * hit means these very bytes verified; BLAKE2b-256 binds them), so apply stays
 * deterministic; a miss, an evicted entry or another replica just verifies.
 * ledger_sig_memo_enable: 0 or NX_ERR_NOMEM (the ledger then works without).
 * ledger_cmd_precheck: 0 or NX_ERR_BAD_SIG.
 */
#define LEDGER_SIG_MEMO_SLOTS 8192
int ledger_sig_memo_enable(struct ledger *l) NX_MUST_USE;
int ledger_cmd_precheck(struct ledger *l, const uint8_t *buf, size_t len) NX_MUST_USE;

/*
 * Applies one committed Raft entry. Deterministic: the same store, entry and
 * index give the same batch and result on every replica. A rejected command
 * changes nothing but its audit record (and idempotency record). Returns 0
 * when the entry was decided (out says how); a negative nx_err only when the
 * store failed or memory ran out, after which the host must not commit the
 * batch and must stop applying.
 */
int ledger_apply(struct ledger *l, const uint8_t *entry, size_t len, uint64_t raft_index,
                 struct ledger_batch *batch, struct ledger_result *out) NX_MUST_USE;

/* ---- queries (read the committed store) ----------------------------------- */

struct ledger_account {
    char name[LEDGER_STR_CAP];
    char tenant[LEDGER_STR_CAP];
    uint8_t key[LEDGER_KEY_BYTES];
    uint64_t balance;
};
struct ledger_tx {
    uint64_t seq;
    uint8_t kind; /* LEDGER_CMD_TRANSFER, _MINT or _CHARGE */
    uint64_t time_ms;
    uint64_t raft_index;
    char from[LEDGER_STR_CAP]; /* "" for a mint */
    char to[LEDGER_STR_CAP];
    uint64_t amount;
    uint8_t author[LEDGER_KEY_BYTES];
    uint8_t idem_key[LEDGER_IDEM_BYTES];
    uint8_t prev_hash[LEDGER_HASH_BYTES];
    uint8_t hash[LEDGER_HASH_BYTES];
};
struct ledger_node {
    uint8_t key[LEDGER_KEY_BYTES];
    uint64_t admitted_ms;
    char token_id[LEDGER_STR_CAP];
};
struct ledger_token {
    char id[LEDGER_STR_CAP];
    uint8_t verifier[LEDGER_KEY_BYTES];
    uint64_t expires_ms;
    uint32_t uses_left;
};
struct ledger_tenant {
    char name[LEDGER_STR_CAP];
    uint8_t owner[LEDGER_KEY_BYTES];
};
struct ledger_agent {
    char name[LEDGER_STR_CAP];
    char version[LEDGER_STR_CAP];
    char tenant[LEDGER_STR_CAP];
    uint8_t manifest_hash[LEDGER_HASH_BYTES];
    uint8_t bundle_hash[LEDGER_HASH_BYTES]; /* BLAKE2b-256 of the bundle */
    uint8_t publisher[LEDGER_KEY_BYTES];
    uint8_t publisher_sig[LEDGER_SIG_BYTES];
    bool deprecated;
};
struct ledger_deployment {
    char name[LEDGER_STR_CAP];
    char tenant[LEDGER_STR_CAP];
    char agent[LEDGER_STR_CAP];
    char version[LEDGER_STR_CAP];
    uint32_t replicas;
};
struct ledger_audit {
    uint64_t raft_index;
    uint8_t type;
    int reason;
    bool duplicate;
    uint8_t author[LEDGER_KEY_BYTES];
    uint64_t time_ms;
    uint64_t tx_seq;
};

int ledger_genesis_get(const struct ledger *l, uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES],
                       uint8_t operator_pk[LEDGER_KEY_BYTES]) NX_MUST_USE;
int ledger_applied_index(const struct ledger *l, uint64_t *out) NX_MUST_USE;
int ledger_balance(const struct ledger *l, const char *account, uint64_t *out) NX_MUST_USE;
int ledger_account_get(const struct ledger *l, const char *name,
                       struct ledger_account *out) NX_MUST_USE;
int ledger_token_get(const struct ledger *l, const char *id, struct ledger_token *out) NX_MUST_USE;
bool ledger_node_is_member(const struct ledger *l, const uint8_t key[LEDGER_KEY_BYTES]);
/* Removed from the registry and not admitted again since. */
bool ledger_node_was_removed(const struct ledger *l, const uint8_t key[LEDGER_KEY_BYTES]);
/* Total minted (= total supply: transfers and charges conserve). */
int ledger_supply(const struct ledger *l, uint64_t *out) NX_MUST_USE;
/* Chain head: last sequence number (0 when empty) and its hash. */
int ledger_tx_head(const struct ledger *l, uint64_t *seq,
                   uint8_t hash[LEDGER_HASH_BYTES]) NX_MUST_USE;

/* Iteration: the callback returns 0 to go on, 1 to stop, <0 to fail. */
typedef int (*ledger_account_fn)(void *arg, const struct ledger_account *a);
typedef int (*ledger_tx_fn)(void *arg, const struct ledger_tx *tx);
typedef int (*ledger_node_fn)(void *arg, const struct ledger_node *n);
typedef int (*ledger_audit_fn)(void *arg, const struct ledger_audit *a);
int ledger_accounts_foreach(const struct ledger *l, ledger_account_fn fn, void *arg);
int ledger_tx_foreach(const struct ledger *l, ledger_tx_fn fn, void *arg);
int ledger_nodes_foreach(const struct ledger *l, ledger_node_fn fn, void *arg);
int ledger_audit_foreach(const struct ledger *l, ledger_audit_fn fn, void *arg);
/* Nodes removed and not admitted again (the registry keeps refusing their keys);
 * admitted_ms holds the time of the removal, token_id is empty. */
int ledger_removed_nodes_foreach(const struct ledger *l, ledger_node_fn fn, void *arg);
typedef int (*ledger_tenant_fn)(void *arg, const struct ledger_tenant *t);
typedef int (*ledger_agent_fn)(void *arg, const struct ledger_agent *a);
typedef int (*ledger_deployment_fn)(void *arg, const struct ledger_deployment *d);
int ledger_tenants_foreach(const struct ledger *l, ledger_tenant_fn fn, void *arg);
/* Every published version of every agent, by name then version (byte order). */
int ledger_agents_foreach(const struct ledger *l, ledger_agent_fn fn, void *arg);
int ledger_deployments_foreach(const struct ledger *l, ledger_deployment_fn fn, void *arg);
int ledger_agent_get(const struct ledger *l, const char *name, const char *version,
                     struct ledger_agent *out) NX_MUST_USE;
int ledger_deployment_get(const struct ledger *l, const char *name,
                          struct ledger_deployment *out) NX_MUST_USE;
/* The manifest bytes stored with an agent version (cap >= LEDGER_MANIFEST_MAX_BYTES is
 * always enough). NX_ERR_NOT_FOUND, NX_ERR_TOO_BIG (with *len set) when cap is short. */
int ledger_agent_manifest_get(const struct ledger *l, const char *name, const char *version,
                              uint8_t *buf, size_t cap, size_t *len) NX_MUST_USE;
/* Would subject be allowed action on resource by a grant (not counting the
 * operator and owner rules)? For the API's own checks. */
bool ledger_perm_granted(const struct ledger *l, const uint8_t subject[LEDGER_KEY_BYTES],
                         const char *action, const char *resource);

/*
 * Recomputes the hash chain and every balance from the transaction log and
 * compares them with the stored state (and checks that every idempotency
 * record the age index names exists). 0 when everything matches; else
 * NX_ERR_CORRUPT with the first mismatch described in why (why_cap bytes).
 */
int ledger_verify(const struct ledger *l, char *why, size_t why_cap) NX_MUST_USE;

/* ---- snapshots ------------------------------------------------------------- */

/* Sink: takes len bytes (borrowed). Source: fills up to cap bytes, *got = 0 at end. */
typedef int (*ledger_sink_fn)(void *arg, const uint8_t *buf, size_t len);
typedef int (*ledger_source_fn)(void *arg, uint8_t *buf, size_t cap, size_t *got);

/* Streams the whole state in chunks of at most LEDGER_SNAPSHOT_CHUNK_BYTES. */
int ledger_snapshot_write(struct ledger_store *store, ledger_sink_fn sink, void *arg) NX_MUST_USE;
/*
 * Reads a snapshot stream and, only when its trailing hash verifies, replaces
 * the whole state with it in one atomic commit. NX_ERR_CORRUPT (nothing
 * changed) when the hash or the framing is wrong.
 */
int ledger_snapshot_install(struct ledger_store *store, ledger_source_fn source,
                            void *arg) NX_MUST_USE;

#endif
