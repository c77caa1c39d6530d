/*
 * ledger_host.c - the ledger state machine in the node (see ledger_host.h):
 * key files, genesis, JSON answers and the combined kv + ledger snapshot.
 *
 * Genesis: the node started with --bootstrap on a ledger without genesis
 * makes DATA_DIR/operator.key (unless present) and, whenever it is the Raft
 * leader and the ledger still has no genesis, proposes the genesis command
 * signed with that key (raft_host.c's tick). The first genesis applied wins;
 * any other is rejected as EXISTS by the state machine. The genesis names the
 * mesh's cluster id (DATA_DIR/cluster.id) when there is one, else a random one.
 */
#include <errno.h>
#include <fcntl.h>
#include <rocksdb/c.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv.h"
#include "ledger_host.h"
#include "trust.h"
#include "ledger_store_rocksdb.h"
#include "node.h"

#define KEY_FILE_MAX_BYTES 256

struct ledger_host {
    struct ledger_store *store; /* owned */
    struct ledger l;
    bool have_op;
    uint8_t op_pk[LEDGER_KEY_BYTES];
    uint8_t op_sk[LEDGER_SECRET_KEY_BYTES];
    bool have_cid; /* DATA_DIR/cluster.id (nexus init) names the cluster at genesis */
    uint8_t cid[LEDGER_CLUSTER_ID_BYTES];
    uint8_t *genesis; /* owned: the signed genesis once made */
    size_t genesis_len;
};

/* ---- key files ------------------------------------------------------------- */

int ledger_key_file_create(const char *path, uint8_t pk[LEDGER_KEY_BYTES],
                           uint8_t sk[LEDGER_SECRET_KEY_BYTES], char *err, size_t cap)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    randombytes_buf(seed, sizeof seed);
    crypto_sign_seed_keypair(pk, sk, seed);
    char hex[2 * crypto_sign_SEEDBYTES + 1], text[KEY_FILE_MAX_BYTES];
    nx_hex_encode(hex, seed, sizeof seed);
    int n = snprintf(text, sizeof text, "%s\nseed=%s\n", LEDGER_HOST_KEY_MAGIC, hex);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(hex, sizeof hex);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, cap, "cannot create %s: %s", path, strerror(errno));
        sodium_memzero(text, sizeof text);
        return errno == EEXIST ? NX_ERR_EXISTS : NX_ERR_IO;
    }
    bool ok = write(fd, text, (size_t)n) == n && fsync(fd) == 0;
    sodium_memzero(text, sizeof text);
    if (close(fd) != 0 || !ok) {
        snprintf(err, cap, "cannot write %s", path);
        unlink(path);
        return NX_ERR_IO;
    }
    return NX_OK;
}

int ledger_key_file_read(const char *path, uint8_t pk[LEDGER_KEY_BYTES],
                         uint8_t sk[LEDGER_SECRET_KEY_BYTES], char *err, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, cap, "cannot read %s: %s", path, strerror(errno));
        return errno == ENOENT ? NX_ERR_NOT_FOUND : NX_ERR_IO;
    }
    struct stat st;
    char text[KEY_FILE_MAX_BYTES];
    ssize_t n = fstat(fd, &st) == 0 ? read(fd, text, sizeof text - 1) : -1;
    close(fd);
    if (n < 0) {
        snprintf(err, cap, "cannot read %s", path);
        return NX_ERR_IO;
    }
    if (st.st_mode & 077) {
        snprintf(err, cap, "%s is readable by group or others: refused (chmod 600)", path);
        return NX_ERR_INVAL;
    }
    text[n] = '\0';
    const char *line = strstr(text, "\nseed=");
    uint8_t seed[crypto_sign_SEEDBYTES];
    char hex[2 * crypto_sign_SEEDBYTES + 1];
    int rc = NX_ERR_INVAL;
    if (strncmp(text, LEDGER_HOST_KEY_MAGIC "\n", strlen(LEDGER_HOST_KEY_MAGIC) + 1) == 0 && line &&
        strlen(line + 6) >= sizeof hex - 1) {
        memcpy(hex, line + 6, sizeof hex - 1);
        hex[sizeof hex - 1] = '\0';
        if (nx_hex_decode(seed, sizeof seed, hex) == NX_OK) {
            crypto_sign_seed_keypair(pk, sk, seed);
            rc = NX_OK;
        }
    }
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(text, sizeof text);
    if (rc != NX_OK)
        snprintf(err, cap, "%s is not a key file (%s)", path, LEDGER_HOST_KEY_MAGIC);
    return rc;
}

/* ---- open / genesis ---------------------------------------------------------- */

int ledger_host_open(struct ledger_host **out, struct raft_store *rs, const char *data_dir,
                     bool create_operator_key, char *err, size_t cap)
{
    struct ledger_host *lh = calloc(1, sizeof *lh);
    if (lh == NULL || (lh->store = ledger_store_rocksdb_new(rs)) == NULL) {
        free(lh);
        snprintf(err, cap, "ledger: out of memory");
        return NX_ERR_NOMEM;
    }
    ledger_init(&lh->l, lh->store);
    if (ledger_sig_memo_enable(&lh->l) != NX_OK) /* works without: verifies twice on the receiver */
        NX_WARN("ledger_sig_memo_off", "error=\"%s\"", nx_strerror(NX_ERR_NOMEM));
    _Static_assert(NODE_CLUSTER_ID_BYTES == LEDGER_CLUSTER_ID_BYTES, "one cluster id");
    lh->have_cid = node_cluster_id_load(lh->cid, data_dir, false, err, cap) == NX_OK;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", data_dir, LEDGER_HOST_OPERATOR_KEY_FILE);
    int rc = ledger_key_file_read(path, lh->op_pk, lh->op_sk, err, cap);
    uint8_t cid[LEDGER_CLUSTER_ID_BYTES], opk[LEDGER_KEY_BYTES];
    if (rc == NX_ERR_NOT_FOUND && create_operator_key &&
        ledger_genesis_get(&lh->l, cid, opk) == NX_ERR_NOT_FOUND) {
        rc = ledger_key_file_create(path, lh->op_pk, lh->op_sk, err, cap);
        if (rc == NX_OK)
            NX_INFO("ledger_operator_key_created", "path=\"%s\"", path);
    }
    if (rc == NX_OK) {
        lh->have_op = true;
    } else if (rc != NX_ERR_NOT_FOUND) {
        ledger_host_free(lh);
        return rc;
    }
    err[0] = '\0';
    *out = lh;
    return NX_OK;
}

void ledger_host_free(struct ledger_host *lh)
{
    if (lh == NULL)
        return;
    ledger_fini(&lh->l);
    ledger_store_rocksdb_free(lh->store);
    sodium_memzero(lh->op_sk, sizeof lh->op_sk);
    free(lh->genesis);
    free(lh);
}

struct ledger *ledger_host_ledger(struct ledger_host *lh)
{
    return &lh->l;
}

struct ledger_store *ledger_host_store(struct ledger_host *lh)
{
    return lh->store;
}

int ledger_host_genesis_cmd(struct ledger_host *lh, uint8_t **cmd, size_t *len)
{
    uint8_t cid[LEDGER_CLUSTER_ID_BYTES], opk[LEDGER_KEY_BYTES];
    if (!lh->have_op || ledger_genesis_get(&lh->l, cid, opk) != NX_ERR_NOT_FOUND)
        return NX_ERR_NOT_FOUND;
    if (lh->genesis == NULL) {
        struct ledger_cmd c;
        memset(&c, 0, sizeof c);
        c.type = LEDGER_CMD_GENESIS;
        if (lh->have_cid)
            memcpy(c.cluster_id, lh->cid, sizeof c.cluster_id);
        else
            randombytes_buf(c.cluster_id, sizeof c.cluster_id);
        randombytes_buf(c.idem_key, sizeof c.idem_key);
        memcpy(c.author, lh->op_pk, LEDGER_KEY_BYTES);
        c.created_ms = nx_clock_wall_ms();
        int rc = ledger_cmd_build(&c, lh->op_sk, &lh->genesis, &lh->genesis_len);
        if (rc != NX_OK)
            return rc;
    }
    *cmd = malloc(lh->genesis_len);
    if (*cmd == NULL)
        return NX_ERR_NOMEM;
    memcpy(*cmd, lh->genesis, lh->genesis_len);
    *len = lh->genesis_len;
    return NX_OK;
}

int ledger_host_admit_cmd(struct ledger_host *lh, const uint8_t node[LEDGER_KEY_BYTES],
                          uint8_t **cmd, size_t *len)
{
    struct ledger_cmd c;
    memset(&c, 0, sizeof c);
    if (!lh->have_op || ledger_genesis_get(&lh->l, c.cluster_id, c.author) != NX_OK ||
        memcmp(c.author, lh->op_pk, LEDGER_KEY_BYTES) != 0)
        return NX_ERR_NOT_FOUND;
    c.type = LEDGER_CMD_NODE_ADMIT;
    memcpy(c.u.admit.node, node, LEDGER_KEY_BYTES);
    randombytes_buf(c.idem_key, sizeof c.idem_key);
    c.created_ms = nx_clock_wall_ms();
    return ledger_cmd_build(&c, lh->op_sk, cmd, len);
}

static int trust_add_cb(void *arg, const struct ledger_node *n)
{
    return node_trust_file_add(arg, n->key) == NX_OK ? 0 : NX_ERR_FULL;
}

int ledger_host_trust_sets(struct ledger_host *lh, struct node_trust_file **admitted,
                           struct node_trust_file **removed)
{
    *admitted = *removed = NULL;
    int rc = node_trust_file_new(admitted);
    if (rc == NX_OK)
        rc = node_trust_file_new(removed);
    if (rc == NX_OK)
        rc = ledger_nodes_foreach(&lh->l, trust_add_cb, *admitted);
    if (rc == NX_OK)
        rc = ledger_removed_nodes_foreach(&lh->l, trust_add_cb, *removed);
    if (rc != NX_OK) {
        node_trust_file_free(*admitted);
        node_trust_file_free(*removed);
        *admitted = *removed = NULL;
    }
    return rc;
}

/* ---- JSON ------------------------------------------------------------------- */

static json_t *hex_json(const uint8_t *b, size_t n)
{
    char hex[2 * LEDGER_HASH_BYTES + 1];
    NX_ASSERT(n <= LEDGER_HASH_BYTES);
    nx_hex_encode(hex, b, n);
    return json_string(hex);
}

json_t *ledger_host_result_json(const struct ledger_result *r, uint64_t index, unsigned *status)
{
    json_t *o = json_pack("{s:b,s:s,s:i,s:b,s:i,s:I}", "accepted", r->reason == LEDGER_OK, "reason",
                          ledger_reason_str(r->reason), "reason_code", r->reason, "duplicate",
                          r->duplicate, "type", r->type, "index", (json_int_t)index);
    if (r->tx_seq) {
        json_object_set_new(o, "tx_seq", json_integer((json_int_t)r->tx_seq));
        json_object_set_new(o, "tx_hash", hex_json(r->tx_hash, LEDGER_HASH_BYTES));
    }
    *status = 200;
    if (r->reason != LEDGER_OK) {
        char msg[LEDGER_REASON_TEXT_BYTES];
        snprintf(msg, sizeof msg, "rejected: %s", ledger_reason_str(r->reason));
        json_object_set_new(o, "error", json_string(msg));
        *status = 422;
    }
    return o;
}

static int account_cb(void *arg, const struct ledger_account *a)
{
    json_array_append_new(arg, json_pack("{s:s,s:s,s:o,s:I}", "name", a->name, "tenant", a->tenant,
                                         "key", hex_json(a->key, LEDGER_KEY_BYTES), "balance",
                                         (json_int_t)a->balance));
    return 0;
}

struct log_arg {
    json_t *arr;
    uint64_t after;
    uint64_t limit;
};

static int tx_cb(void *arg, const struct ledger_tx *tx)
{
    struct log_arg *la = arg;
    if (tx->seq <= la->after)
        return 0;
    if (json_array_size(la->arr) >= la->limit)
        return 1;
    const char *kind = tx->kind == LEDGER_CMD_MINT       ? "mint"
                       : tx->kind == LEDGER_CMD_TRANSFER ? "transfer"
                                                         : "charge";
    json_array_append_new(
        la->arr, json_pack("{s:I,s:s,s:I,s:I,s:s,s:s,s:I,s:o,s:o,s:o}", "seq", (json_int_t)tx->seq,
                           "kind", kind, "time_ms", (json_int_t)tx->time_ms, "raft_index",
                           (json_int_t)tx->raft_index, "from", tx->from, "to", tx->to, "amount",
                           (json_int_t)tx->amount, "author", hex_json(tx->author, LEDGER_KEY_BYTES),
                           "idempotency_key", hex_json(tx->idem_key, LEDGER_IDEM_BYTES), "hash",
                           hex_json(tx->hash, LEDGER_HASH_BYTES)));
    return 0;
}

static const char *cmd_type_name(int type)
{
    static const char *const names[LEDGER_CMD__MAX + 1] = {
        [LEDGER_CMD_GENESIS] = "genesis",
        [LEDGER_CMD_NODE_ADMIT] = "node.admit",
        [LEDGER_CMD_NODE_REMOVE] = "node.remove",
        [LEDGER_CMD_TOKEN_CREATE] = "token.create",
        [LEDGER_CMD_TOKEN_EXPIRE] = "token.expire",
        [LEDGER_CMD_TENANT_CREATE] = "tenant.create",
        [LEDGER_CMD_ACCOUNT_CREATE] = "account.create",
        [LEDGER_CMD_AGENT_PUBLISH] = "agent.publish",
        [LEDGER_CMD_AGENT_DEPRECATE] = "agent.deprecate",
        [LEDGER_CMD_DEPLOY_PUT] = "deploy.put",
        [LEDGER_CMD_DEPLOY_DELETE] = "deploy.delete",
        [LEDGER_CMD_PERM_GRANT] = "perm.grant",
        [LEDGER_CMD_PERM_REVOKE] = "perm.revoke",
        [LEDGER_CMD_TRANSFER] = "transfer",
        [LEDGER_CMD_MINT] = "mint",
        [LEDGER_CMD_CHARGE] = "charge",
    };
    return type > 0 && type <= LEDGER_CMD__MAX && names[type] ? names[type] : "unknown";
}

static int audit_cb(void *arg, const struct ledger_audit *a)
{
    struct log_arg *la = arg;
    if (a->raft_index <= la->after)
        return 0;
    if (json_array_size(la->arr) >= la->limit)
        return 1;
    json_array_append_new(
        la->arr,
        json_pack("{s:I,s:s,s:s,s:b,s:o,s:I,s:I}", "index", (json_int_t)a->raft_index, "command",
                  cmd_type_name(a->type), "result",
                  a->reason == LEDGER_OK ? "applied" : ledger_reason_str(a->reason), "duplicate",
                  a->duplicate, "author", hex_json(a->author, LEDGER_KEY_BYTES), "time_ms",
                  (json_int_t)a->time_ms, "tx_seq", (json_int_t)a->tx_seq));
    return 0;
}

static int node_json_cb(void *arg, const struct ledger_node *n)
{
    json_array_append_new(arg,
                          json_pack("{s:o,s:I,s:s}", "id", hex_json(n->key, LEDGER_KEY_BYTES),
                                    "since_ms", (json_int_t)n->admitted_ms, "token", n->token_id));
    return 0;
}

static int tenant_json_cb(void *arg, const struct ledger_tenant *t)
{
    json_array_append_new(arg, json_pack("{s:s,s:o}", "name", t->name, "owner",
                                         hex_json(t->owner, LEDGER_KEY_BYTES)));
    return 0;
}

static json_t *error_json(unsigned *status, unsigned code, const char *msg)
{
    *status = code;
    return json_pack("{s:s}", "error", msg);
}

json_t *ledger_host_read_json(struct ledger_host *lh, const char *what, uint64_t index,
                              unsigned *status)
{
    *status = 200;
    if (strncmp(what, "balance/", 8) == 0) {
        uint64_t bal = 0;
        int rc = ledger_balance(&lh->l, what + 8, &bal);
        if (rc == NX_ERR_NOT_FOUND)
            return error_json(status, 404, "no such account");
        if (rc != NX_OK)
            return error_json(status, 500, nx_strerror(rc));
        return json_pack("{s:s,s:I,s:I}", "account", what + 8, "balance", (json_int_t)bal, "index",
                         (json_int_t)index);
    }
    if (strcmp(what, "accounts") == 0) {
        json_t *arr = json_array();
        int rc = ledger_accounts_foreach(&lh->l, account_cb, arr);
        if (rc < 0) {
            json_decref(arr);
            return error_json(status, 500, nx_strerror(rc));
        }
        return json_pack("{s:o,s:I}", "accounts", arr, "index", (json_int_t)index);
    }
    if (strcmp(what, "genesis") == 0) {
        uint8_t cid[LEDGER_CLUSTER_ID_BYTES], opk[LEDGER_KEY_BYTES];
        int rc = ledger_genesis_get(&lh->l, cid, opk);
        if (rc == NX_ERR_NOT_FOUND)
            return error_json(status, 404, "no genesis yet");
        if (rc != NX_OK)
            return error_json(status, 500, nx_strerror(rc));
        return json_pack("{s:o,s:o,s:I}", "cluster_id", hex_json(cid, sizeof cid), "operator",
                         hex_json(opk, sizeof opk), "index", (json_int_t)index);
    }
    if (strcmp(what, "verify") == 0) {
        char why[LEDGER_REASON_TEXT_BYTES] = "";
        int rc = ledger_verify(&lh->l, why, sizeof why);
        uint64_t seq = 0, supply = 0;
        uint8_t head[LEDGER_HASH_BYTES] = {0};
        if (rc != NX_OK) {
            *status = 409;
            return json_pack("{s:b,s:s,s:I}", "ok", 0, "error", why[0] ? why : nx_strerror(rc),
                             "index", (json_int_t)index);
        }
        if (ledger_tx_head(&lh->l, &seq, head) != NX_OK || ledger_supply(&lh->l, &supply) != NX_OK)
            return error_json(status, 500, "cannot read the chain head");
        return json_pack("{s:b,s:I,s:I,s:o,s:I}", "ok", 1, "transactions", (json_int_t)seq,
                         "supply", (json_int_t)supply, "head", hex_json(head, sizeof head), "index",
                         (json_int_t)index);
    }
    if (strcmp(what, "nodes") == 0) {
        json_t *nodes = json_array(), *removed = json_array();
        if (ledger_nodes_foreach(&lh->l, node_json_cb, nodes) < 0 ||
            ledger_removed_nodes_foreach(&lh->l, node_json_cb, removed) < 0) {
            json_decref(nodes);
            json_decref(removed);
            return error_json(status, 500, "cannot read the registry");
        }
        return json_pack("{s:o,s:o,s:I}", "nodes", nodes, "removed", removed, "index",
                         (json_int_t)index);
    }
    if (strcmp(what, "tenants") == 0) {
        json_t *arr = json_array();
        if (ledger_tenants_foreach(&lh->l, tenant_json_cb, arr) < 0) {
            json_decref(arr);
            return error_json(status, 500, "cannot read the registry");
        }
        return json_pack("{s:o,s:I}", "tenants", arr, "index", (json_int_t)index);
    }
    unsigned long long after = 0, limit = 0;
    if (sscanf(what, "audit/%llu/%llu", &after, &limit) == 2) {
        /* A walk from the oldest record: fine for an operator's tool, O(records). */
        struct log_arg la = {json_array(), after, limit};
        if (ledger_audit_foreach(&lh->l, audit_cb, &la) < 0) {
            json_decref(la.arr);
            return error_json(status, 500, "cannot read the audit log");
        }
        size_t n = json_array_size(la.arr);
        uint64_t next = n ? (uint64_t)json_integer_value(
                                json_object_get(json_array_get(la.arr, n - 1), "index"))
                          : after;
        return json_pack("{s:o,s:I,s:I}", "audit", la.arr, "next_after", (json_int_t)next, "index",
                         (json_int_t)index);
    }
    if (sscanf(what, "log/%llu/%llu", &after, &limit) == 2) {
        struct log_arg la = {json_array(), after, limit};
        int rc = ledger_tx_foreach(&lh->l, tx_cb, &la);
        if (rc < 0) {
            json_decref(la.arr);
            return error_json(status, 500, nx_strerror(rc));
        }
        size_t n = json_array_size(la.arr);
        uint64_t next =
            n ? (uint64_t)json_integer_value(json_object_get(json_array_get(la.arr, n - 1), "seq"))
              : after;
        return json_pack("{s:o,s:I,s:I}", "transactions", la.arr, "next_after", (json_int_t)next,
                         "index", (json_int_t)index);
    }
    return error_json(status, 404, "no such ledger route");
}

/* ---- snapshots ------------------------------------------------------------ */

struct growbuf {
    uint8_t *p;
    size_t n, cap;
};

static int grow_append(void *arg, const uint8_t *buf, size_t len)
{
    struct growbuf *g = arg;
    if (g->n + len > RAFT_MAX_SNAPSHOT_BYTES)
        return NX_ERR_TOO_BIG;
    if (g->n + len > g->cap) {
        size_t nc = (g->n + len) * 2;
        uint8_t *q = realloc(g->p, nc);
        if (q == NULL)
            return NX_ERR_NOMEM;
        g->p = q;
        g->cap = nc;
    }
    memcpy(g->p + g->n, buf, len);
    g->n += len;
    return 0;
}

int ledger_host_snapshot(struct ledger_host *lh, struct raft_store *rs, uint8_t **out, size_t *len)
{
    uint8_t *kv = NULL;
    size_t kv_len = 0;
    int rc = kv_snapshot(rs, &kv, &kv_len);
    if (rc != NX_OK)
        return rc;
    struct growbuf g = {0};
    uint8_t hdr[LEDGER_HOST_SNAP_HEADER_BYTES] = LEDGER_HOST_SNAP_MAGIC;
    for (int i = 0; i < 8; i++)
        hdr[8 + i] = (uint8_t)((uint64_t)kv_len >> (8 * i));
    rc = grow_append(&g, hdr, sizeof hdr);
    if (rc == NX_OK && kv_len)
        rc = grow_append(&g, kv, kv_len);
    free(kv);
    if (rc == NX_OK)
        rc = ledger_snapshot_write(lh->store, grow_append, &g);
    if (rc != NX_OK) {
        free(g.p);
        return rc;
    }
    *out = g.p;
    *len = g.n;
    return NX_OK;
}

struct memsrc {
    const uint8_t *p;
    size_t n, pos;
};

static int mem_source(void *arg, uint8_t *buf, size_t cap, size_t *got)
{
    struct memsrc *s = arg;
    size_t k = s->n - s->pos < cap ? s->n - s->pos : cap;
    memcpy(buf, s->p + s->pos, k);
    s->pos += k;
    *got = k;
    return 0;
}

int ledger_host_install(struct ledger_host *lh, struct raft_store *rs, const uint8_t *data,
                        size_t len, uint64_t index)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = NX_OK;
    if (len == 0) {
        rc = kv_install_fill(rs, wb, NULL, 0);
        /* Ledger keys start with a lower-case ASCII word: ["", "\xff") is all of them. */
        rocksdb_writebatch_delete_range_cf(wb, raft_store_cf(rs, RAFT_STORE_CF_LEDGER), "", 0,
                                           "\xff", 1);
    } else {
        uint64_t kv_len = 0;
        for (int i = 7; i >= 0; i--)
            kv_len = (kv_len << 8) | (len >= LEDGER_HOST_SNAP_HEADER_BYTES ? data[8 + i] : 0);
        if (len < LEDGER_HOST_SNAP_HEADER_BYTES ||
            memcmp(data, LEDGER_HOST_SNAP_MAGIC, sizeof LEDGER_HOST_SNAP_MAGIC) != 0 ||
            kv_len > len - LEDGER_HOST_SNAP_HEADER_BYTES) {
            rc = NX_ERR_DECODE;
        } else {
            const uint8_t *kv = data + LEDGER_HOST_SNAP_HEADER_BYTES;
            rc = kv_install_fill(rs, wb, kv, (size_t)kv_len);
            struct memsrc src = {kv + kv_len, len - LEDGER_HOST_SNAP_HEADER_BYTES - kv_len, 0};
            if (rc == NX_OK) {
                ledger_store_rocksdb_capture(lh->store, wb);
                rc = ledger_snapshot_install(lh->store, mem_source, &src);
                ledger_store_rocksdb_capture(lh->store, NULL);
            }
        }
    }
    if (rc == NX_OK) {
        raft_store_batch_applied(rs, wb, index);
        rc = raft_store_write(rs, wb, true);
    }
    rocksdb_writebatch_destroy(wb);
    return rc;
}
