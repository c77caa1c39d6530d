/*
 * raft_host.c - the Raft core on the node's libev loop, with RocksDB storage
 * and the KV state machine.
 *
 * Inputs feed the core as they arrive (raft_step for a message, raft_propose
 * for an API write, raft_read_index for an API read, raft_tick from a timer);
 * nothing is written or sent from those callbacks. Once per loop iteration,
 * just before libev blocks for I/O, an ev_prepare watcher drains the core's
 * Ready exactly per the contract in consensus/raft.h:
 *
 *     0. send the leader's appends (rd.n_msgs_early) at once, so the
 *        followers write while we do;
 *     1. persist: snapshot, entries, hard state as ONE synced WriteBatch;
 *     2. send:    every other message, as one NCAP_MSG_RAFT envelope each;
 *     3. apply:   install the snapshot (one WriteBatch replacing the kv column
 *                 family), apply committed entries (one WriteBatch with the
 *                 applied index), answer the API requests they complete,
 *                 queue the confirmed reads;
 *     4. advance.
 *
 * This is group commit: every proposal and message that arrived while the
 * previous synced write ran is handled in the next iteration's callbacks and
 * rides on ONE next synced write (docs/raft-node.md).
 *
 * Ids: a node's Raft id is the first 8 bytes (little-endian) of its Ed25519
 * public key; the host keeps id -> (key, address) from --peer options, from
 * gossip members and from members added through the API.
 *
 * Write requests wait in a table keyed by the proposal's (index, term): when
 * the entry at that index is applied, the request succeeds if the term
 * matches and fails with 503 "not committed" otherwise (another leader's
 * entry took the slot). A request that waits longer than
 * RAFT_HOST_REQUEST_TIMEOUT_MS gets 503 "outcome unknown".
 */
#include <ev.h>
#include <stdarg.h>
#include <rocksdb/c.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/raft.h"
#include "kv.h"
#include "ledger_host.h"
#include "proto/ncap.h"
#include "raft_host.h"
#include "ledger_store_rocksdb.h"
#include "raft_store.h"
#include "trust.h"

#define PEER_REFRESH_TICKS 20 /* gossip members are re-read this often */

struct rh_peer {
    uint64_t id;
    uint8_t pk[NODE_PK_BYTES];
    char hex[NODE_ID_HEX_LEN + 1];
    char addr[NODE_ADDR_MAX];
    bool addr_told; /* the transport was given addr */
};

enum pending_kind {
    PENDING_FREE = 0,
    PENDING_WRITE,      /* proposed here, waiting for the entry to apply */
    PENDING_READ_INDEX, /* waiting for the ReadIndex confirmation */
    PENDING_READ_WAIT,  /* confirmed, waiting for applied >= index */
    PENDING_READ_RETRY, /* new leader, no entry of its term committed yet: ask again */
    PENDING_FORWARD,    /* sent to the leader, waiting for its answer */
};

#define FWD_OP_GET 3           /* forward op besides enum kv_op */
#define FWD_OP_LEDGER_CMD 4    /* value: a signed ledger command; no key */
#define FWD_OP_LEDGER_READ 5   /* key: what to read (ledger_host_read_json) */
#define GENESIS_RETRY_TICKS 10 /* a leader without genesis proposes it this often */

/* First byte of every normal Raft entry: which state machine it is for. */
#define ENTRY_TAG_KV 1
#define ENTRY_TAG_LEDGER 2
#define FWD_HEADER_BYTES 11       /* op u8, request id u64, key length u16 */
#define FWD_REPLY_HEADER_BYTES 10 /* request id u64, status u16 */

/* Where an answer goes: an API request of ours, a callback of another module
 * (raft_host_submit_ledger), or the node that forwarded it. */
struct reply_to {
    struct api_request *req; /* local: borrowed until we reply */
    raft_host_done_fn done;  /* local, no request: called with the answer */
    void *done_arg;
    bool remote;
    uint8_t pk[NODE_PK_BYTES]; /* remote: the forwarding node */
    uint64_t rid;              /* remote: its request id */
};

struct pending {
    enum pending_kind kind;
    struct reply_to to;
    uint8_t leader_pk[NODE_PK_BYTES]; /* forward: who must answer */
    uint64_t rid;                     /* forward: our request id */
    uint64_t index;                   /* write: proposal index; read wait: read index */
    uint64_t term;                    /* write: proposal term */
    uint64_t ctx;                     /* read: ReadIndex request id */
    uint8_t op;                       /* enum kv_op or FWD_OP_GET */
    uint64_t deadline_ms;
    bool have_lres; /* ledger write: the entry applied here with this result */
    struct ledger_result lres;
    size_t klen;
    char key[KV_MAX_KEY_BYTES + 1];
};

#define CHUNK_HEADER_BYTES 16 /* msg id u64, offset u32, total u32 */

/* The one large message being reassembled from chunks. */
struct chunk_assembly {
    bool active;
    uint64_t id;
    uint8_t from[NODE_PK_BYTES];
    uint32_t total;
    uint32_t have;
    uint8_t *buf; /* owned, total bytes */
};

struct raft_host {
    struct ev_loop *loop;
    struct mesh *mesh;
    struct gossip_host *gossip;
    const struct node_identity *ident;
    struct raft_host_config cfg;
    struct raft_store *store;
    struct ledger_host *lh;
    struct raft *r;
    uint64_t id;
    struct rh_peer peers[RAFT_HOST_MAX_PEERS];
    size_t n_peers;
    ev_timer tick;
    ev_prepare prepare;
    uint64_t ticks;
    uint64_t applied;
    uint64_t snap_index;
    struct raft_conf applied_conf;
    enum raft_role role;
    uint64_t next_read_ctx;
    uint64_t next_fwd_id;
    uint64_t next_chunk_msg_id;
    struct chunk_assembly asm_;
    struct pending *pending; /* RAFT_HOST_MAX_PENDING slots */
    size_t pending_hw;       /* slots [0, pending_hw) may be in use */
    size_t n_pending;
    uint8_t *sendbuf;
    size_t sendbuf_cap;
    bool failed;
    /* counters */
    uint64_t readies, msgs_sent, msgs_dropped, msgs_received, msgs_bad_sender, msgs_bad;
    uint64_t proposals, applied_entries, bad_commands, snapshots_made, snapshots_installed;
    uint64_t writes_ok, writes_lost, writes_timed_out;
    uint64_t forwarded, forwards_served, forwards_bad;
    uint64_t ledger_accepted, ledger_rejected, genesis_proposals;
    uint64_t chunks_sent, chunks_received, chunks_bad;
    uint64_t persist_us, send_us, apply_us; /* time spent in each step (µs, total) */
    uint64_t snapshot_us;                   /* making snapshots (µs, total) */
    /* the registry: trust and the voter set (the end of this file) */
    bool registry_changed; /* an applied admit/remove: rebuild the mesh's trust */
    uint64_t registry_admits, conf_changes_proposed, voters_replaced;
};

static void registry_sync_trust(struct raft_host *h);
static void registry_reconcile(struct raft_host *h);

/* ---- ids and peers -------------------------------------------------------- */

uint64_t raft_host_id_of(const uint8_t pk[NODE_PK_BYTES])
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | pk[i];
    return v ? v : 1;
}

static struct rh_peer *peer_by_id(struct raft_host *h, uint64_t id)
{
    for (size_t i = 0; i < h->n_peers; i++)
        if (h->peers[i].id == id)
            return &h->peers[i];
    return NULL;
}

/* Adds or updates a peer; addr may be NULL (keeps the known one). */
static struct rh_peer *peer_learn(struct raft_host *h, const uint8_t pk[NODE_PK_BYTES],
                                  const char *addr)
{
    uint64_t id = raft_host_id_of(pk);
    struct rh_peer *p = peer_by_id(h, id);
    if (p && memcmp(p->pk, pk, NODE_PK_BYTES) != 0) {
        NX_WARN("raft_id_collision", "id=%016llx", (unsigned long long)id);
        return NULL;
    }
    if (p == NULL) {
        if (h->n_peers == RAFT_HOST_MAX_PEERS)
            return NULL;
        p = &h->peers[h->n_peers++];
        memset(p, 0, sizeof *p);
        p->id = id;
        memcpy(p->pk, pk, NODE_PK_BYTES);
        nx_hex_encode(p->hex, pk, NODE_PK_BYTES);
    }
    if (addr && addr[0] && strcmp(addr, p->addr) != 0) {
        snprintf(p->addr, sizeof p->addr, "%s", addr);
        p->addr_told = false;
    }
    return p;
}

/* Parses '\n'-joined "HEXPK@HOST:PORT" entries into peers. */
static int parse_peers(struct raft_host *h, const char *list, char *err, size_t cap)
{
    for (const char *s = list; s && *s;) {
        const char *end = strchr(s, '\n');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *at = memchr(s, '@', len);
        uint8_t pk[NODE_PK_BYTES];
        char hex[NODE_ID_HEX_LEN + 1], addr[NODE_ADDR_MAX];
        if (at == NULL || at - s != NODE_ID_HEX_LEN || len - (size_t)(at - s) - 1 >= sizeof addr) {
            snprintf(err, cap, "raft: bad --peer '%.*s'", (int)len, s);
            return NX_ERR_INVAL;
        }
        memcpy(hex, s, NODE_ID_HEX_LEN);
        hex[NODE_ID_HEX_LEN] = '\0';
        memcpy(addr, at + 1, len - (size_t)(at - s) - 1);
        addr[len - (size_t)(at - s) - 1] = '\0';
        if (nx_hex_decode(pk, sizeof pk, hex) != NX_OK) {
            snprintf(err, cap, "raft: bad node id in --peer '%.*s'", (int)len, s);
            return NX_ERR_INVAL;
        }
        if (memcmp(pk, h->ident->pk, NODE_PK_BYTES) != 0 && peer_learn(h, pk, addr) == NULL) {
            snprintf(err, cap, "raft: cannot add peer '%.*s'", (int)len, s);
            return NX_ERR_FULL;
        }
        s = end ? end + 1 : s + len;
    }
    return NX_OK;
}

static void refresh_from_gossip(struct raft_host *h)
{
    if (h->gossip == NULL)
        return;
    json_t *members = gossip_host_members_json(h->gossip);
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m)
    {
        const char *hex = json_string_value(json_object_get(m, "id"));
        const char *addr = json_string_value(json_object_get(m, "address"));
        uint8_t pk[NODE_PK_BYTES];
        if (hex == NULL || addr == NULL || strlen(hex) != NODE_ID_HEX_LEN ||
            nx_hex_decode(pk, sizeof pk, hex) != NX_OK ||
            memcmp(pk, h->ident->pk, NODE_PK_BYTES) == 0)
            continue;
        (void)peer_learn(h, pk, addr);
    }
    json_decref(members);
}

/* Hex node id (public key) of a Raft id when known, else the id as 16 hex digits. */
static json_t *id_json(const struct raft_host *h, uint64_t id)
{
    if (id == 0)
        return json_string("");
    if (id == h->id)
        return json_string(h->ident->id_hex);
    for (size_t i = 0; i < h->n_peers; i++)
        if (h->peers[i].id == id)
            return json_string(h->peers[i].hex);
    char buf[17];
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)id);
    return json_string(buf);
}

/* ---- pending API requests ------------------------------------------------- */

static struct pending *pending_add(struct raft_host *h, enum pending_kind kind,
                                   const struct reply_to *to, const char *key, size_t klen)
{
    if (h->n_pending == RAFT_HOST_MAX_PENDING)
        return NULL;
    size_t i = 0;
    while (h->pending[i].kind != PENDING_FREE)
        i++;
    struct pending *p = &h->pending[i];
    memset(p, 0, offsetof(struct pending, key));
    p->kind = kind;
    p->to = *to;
    p->klen = klen;
    memcpy(p->key, key, klen);
    p->key[klen] = '\0';
    p->deadline_ms = nx_clock_mono_ms() + RAFT_HOST_REQUEST_TIMEOUT_MS;
    if (i + 1 > h->pending_hw)
        h->pending_hw = i + 1;
    h->n_pending++;
    return p;
}

static void pending_free(struct raft_host *h, struct pending *p)
{
    p->kind = PENDING_FREE;
    p->to.req = NULL;
    h->n_pending--;
    while (h->pending_hw > 0 && h->pending[h->pending_hw - 1].kind == PENDING_FREE)
        h->pending_hw--;
}

/* Sends an answer (body taken) to a local API request or back to a forwarding node. */
static void answer(struct raft_host *h, const struct reply_to *to, unsigned status, json_t *body)
{
    if (to->done) {
        to->done(to->done_arg, status, body);
        json_decref(body);
        return;
    }
    if (!to->remote) {
        api_reply_json(to->req, status, body);
        return;
    }
    char *txt = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    size_t tl = txt ? strlen(txt) : 0;
    uint8_t *buf = malloc(FWD_REPLY_HEADER_BYTES + tl);
    if (buf == NULL) {
        free(txt);
        return; /* the forwarder times out: outcome unknown, which is true */
    }
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(to->rid >> (8 * i));
    buf[8] = (uint8_t)status;
    buf[9] = (uint8_t)(status >> 8);
    if (tl)
        memcpy(buf + FWD_REPLY_HEADER_BYTES, txt, tl);
    struct rh_peer *p = peer_by_id(h, raft_host_id_of(to->pk));
    const char *addr = p && !p->addr_told && p->addr[0] ? p->addr : NULL;
    if (mesh_send(h->mesh, to->pk, addr, RAFT_HOST_MSG_FORWARD_REPLY, buf,
                  FWD_REPLY_HEADER_BYTES + tl) != NX_OK)
        h->forwards_bad++;
    free(buf);
    free(txt);
}

static void answer_error(struct raft_host *h, const struct reply_to *to, unsigned status,
                         const char *fmt, ...) NX_PRINTF(4, 5);
static void answer_error(struct raft_host *h, const struct reply_to *to, unsigned status,
                         const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    answer(h, to, status, json_pack("{s:s}", "error", msg));
}

static void reply_not_leader(struct raft_host *h, const struct reply_to *to)
{
    uint64_t leader = raft_leader(h->r);
    struct rh_peer *p = peer_by_id(h, leader);
    answer(h, to, 503,
           json_pack("{s:s,s:o,s:s}", "error", "not the leader", "leader", id_json(h, leader),
                     "leader_address", p ? p->addr : ""));
}

static bool op_is_write(uint8_t op)
{
    return op == KV_OP_PUT || op == KV_OP_DELETE || op == FWD_OP_LEDGER_CMD;
}

/* Answers a ledger read (what: see ledger_host_read_json) with the local copy. */
static void reply_ledger_read(struct raft_host *h, const struct reply_to *to, const char *what)
{
    unsigned status = 200;
    json_t *o = ledger_host_read_json(h->lh, what, h->applied, &status);
    answer(h, to, status, o);
}

/* Answers a read with the local copy. */
static void reply_read(struct raft_host *h, const struct reply_to *to, uint8_t op, const char *key,
                       size_t klen)
{
    if (op == FWD_OP_LEDGER_READ) {
        reply_ledger_read(h, to, key);
        return;
    }
    char *value = NULL;
    size_t vlen = 0;
    int rc = kv_get(h->store, key, klen, &value, &vlen);
    if (rc == NX_ERR_NOT_FOUND) {
        answer(h, to, 404,
               json_pack("{s:s,s:s#,s:I}", "error", "no such key", "key", key, klen, "index",
                         (json_int_t)h->applied));
        return;
    }
    if (rc != NX_OK) {
        answer_error(h, to, 500, "storage error: %s", nx_strerror(rc));
        return;
    }
    json_t *v = json_stringn(value, vlen);
    json_t *o = json_pack("{s:s#,s:I}", "key", key, klen, "index", (json_int_t)h->applied);
    if (v) {
        json_object_set_new(o, "value", v);
    } else { /* not UTF-8: hex */
        char *hex = malloc(2 * vlen + 1);
        if (hex) {
            nx_hex_encode(hex, (const uint8_t *)value, vlen);
            json_object_set_new(o, "value_hex", json_string(hex));
            free(hex);
        }
    }
    free(value);
    answer(h, to, 200, o);
}

static void reply_write(struct raft_host *h, struct pending *p)
{
    if (p->op == FWD_OP_LEDGER_CMD) {
        unsigned status = 200;
        json_t *o = p->have_lres ? ledger_host_result_json(&p->lres, p->index, &status)
                                 : json_pack("{s:s}", "error", "entry applied without a result");
        answer(h, &p->to, p->have_lres ? status : 500, o);
        return;
    }
    json_t *o = json_pack("{s:s#,s:I,s:s}", "key", p->key, p->klen, "index", (json_int_t)p->index,
                          "op", p->op == KV_OP_PUT ? "put" : "delete");
    answer(h, &p->to, 200, o);
}

/* Writes whose entry index is now applied: success if the term matches. */
static void resolve_writes(struct raft_host *h, const struct raft_entry *committed, size_t n)
{
    for (size_t i = 0; i < h->pending_hw; i++) {
        struct pending *p = &h->pending[i];
        if (p->kind != PENDING_WRITE || p->index > h->applied)
            continue;
        const struct raft_entry *e = NULL;
        if (n > 0 && p->index >= committed[0].index && p->index <= committed[n - 1].index)
            e = &committed[p->index - committed[0].index];
        if (e && e->term == p->term) {
            h->writes_ok++;
            reply_write(h, p);
        } else if (e) {
            h->writes_lost++;
            answer(h, &p->to, 503,
                   json_pack("{s:s,s:b}", "error", "not committed: leadership changed, retry",
                             "committed", 0));
        } else {
            h->writes_timed_out++;
            answer(h, &p->to, 503,
                   json_pack("{s:s}", "error",
                             "outcome unknown: a snapshot replaced the entry, read to "
                             "check"));
        }
        pending_free(h, p);
    }
}

static void serve_reads(struct raft_host *h)
{
    for (size_t i = 0; i < h->pending_hw; i++) {
        struct pending *p = &h->pending[i];
        if (p->kind == PENDING_READ_WAIT && p->index <= h->applied) {
            reply_read(h, &p->to, p->op, p->key, p->klen);
            pending_free(h, p);
        }
    }
}

static void fail_reads(struct raft_host *h, const char *why)
{
    for (size_t i = 0; i < h->pending_hw; i++) {
        struct pending *p = &h->pending[i];
        if (p->kind == PENDING_READ_INDEX || p->kind == PENDING_READ_WAIT ||
            p->kind == PENDING_READ_RETRY) {
            answer(h, &p->to, 503, json_pack("{s:s}", "error", why));
            pending_free(h, p);
        }
    }
}

static void expire_pending(struct raft_host *h, uint64_t now_ms)
{
    for (size_t i = 0; i < h->pending_hw; i++) {
        struct pending *p = &h->pending[i];
        if (p->kind == PENDING_FREE || p->deadline_ms > now_ms)
            continue;
        bool write = p->kind == PENDING_WRITE || (p->kind == PENDING_FORWARD && op_is_write(p->op));
        if (write)
            h->writes_timed_out++;
        answer(h, &p->to, 503,
               json_pack("{s:s}", "error",
                         write ? "timed out: outcome unknown, read to check"
                               : "timed out waiting for the leader"));
        pending_free(h, p);
    }
}

/* ---- the Ready loop ------------------------------------------------------- */

static void fatal(struct raft_host *h, const char *what, int rc)
{
    NX_ERROR("raft_fatal", "what=\"%s\" error=\"%s\"", what, nx_strerror(rc));
    h->failed = true;
    ev_break(h->loop, EVBREAK_ALL);
}

/*
 * Sends one encoded message: as one NCAP_MSG_RAFT envelope, or, when larger
 * than RAFT_HOST_CHUNK_BYTES (snapshots), as consecutive RAFT_HOST_MSG_CHUNK
 * envelopes: msg id u64 | offset u32 | total u32 | bytes (all LE). The
 * transport keeps the order on one connection; a lost chunk loses the
 * message, which Raft resends.
 */
static int send_encoded(struct raft_host *h, struct rh_peer *p, const uint8_t *buf, size_t len)
{
    const char *addr = p->addr_told ? NULL : p->addr;
    if (len <= RAFT_HOST_CHUNK_BYTES) {
        int rc = mesh_send(h->mesh, p->pk, addr, NCAP_MSG_RAFT, buf, len);
        if (rc == NX_OK)
            p->addr_told = true;
        return rc;
    }
    uint8_t *chunk = malloc(CHUNK_HEADER_BYTES + RAFT_HOST_CHUNK_BYTES);
    if (chunk == NULL)
        return NX_ERR_NOMEM;
    uint64_t id = ++h->next_chunk_msg_id;
    int rc = NX_OK;
    for (size_t off = 0; off < len && rc == NX_OK; off += RAFT_HOST_CHUNK_BYTES) {
        size_t n = len - off < RAFT_HOST_CHUNK_BYTES ? len - off : RAFT_HOST_CHUNK_BYTES;
        for (int i = 0; i < 8; i++)
            chunk[i] = (uint8_t)(id >> (8 * i));
        for (int i = 0; i < 4; i++) {
            chunk[8 + i] = (uint8_t)(off >> (8 * i));
            chunk[12 + i] = (uint8_t)(len >> (8 * i));
        }
        memcpy(chunk + CHUNK_HEADER_BYTES, buf + off, n);
        rc = mesh_send(h->mesh, p->pk, addr, RAFT_HOST_MSG_CHUNK, chunk, CHUNK_HEADER_BYTES + n);
        if (rc == NX_OK) {
            p->addr_told = true;
            addr = NULL;
            h->chunks_sent++;
        }
    }
    free(chunk);
    return rc;
}

static void send_msgs(struct raft_host *h, const struct raft_msg *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct raft_msg *m = &msgs[i];
        struct rh_peer *p = peer_by_id(h, m->to);
        if (p == NULL || p->addr[0] == '\0') {
            h->msgs_dropped++;
            continue;
        }
        size_t need = raft_msg_encoded_size(m);
        if (need > h->sendbuf_cap) {
            uint8_t *g = realloc(h->sendbuf, need);
            if (g == NULL) {
                h->msgs_dropped++;
                continue;
            }
            h->sendbuf = g;
            h->sendbuf_cap = need;
        }
        long len = raft_msg_encode(m, h->sendbuf, h->sendbuf_cap);
        int rc = len < 0 ? (int)len : send_encoded(h, p, h->sendbuf, (size_t)len);
        if (rc != NX_OK) {
            h->msgs_dropped++;
            continue;
        }
        h->msgs_sent++;
    }
}

/* Gives a ledger result to the write request waiting on this entry, if any. */
static void note_ledger_result(struct raft_host *h, const struct raft_entry *e,
                               const struct ledger_result *r)
{
    if (r->reason == LEDGER_OK)
        h->ledger_accepted++;
    else
        h->ledger_rejected++;
    for (size_t i = 0; i < h->pending_hw; i++) {
        struct pending *p = &h->pending[i];
        if (p->kind == PENDING_WRITE && p->op == FWD_OP_LEDGER_CMD && p->index == e->index &&
            p->term == e->term) {
            p->lres = *r;
            p->have_lres = true;
            return;
        }
    }
}

/*
 * Applies committed entries as ONE WriteBatch: kv effects, the ledger's batch
 * (ledger_apply reads through it, so later entries see earlier ones) and the
 * Raft applied index, so a crash never applies an entry twice or loses one.
 */
static int apply_committed(struct raft_host *h, const struct raft_entry *ents, size_t n)
{
    if (n == 0)
        return NX_OK;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    struct ledger_batch lb;
    ledger_batch_init(&lb);
    int rc = NX_OK;
    for (size_t i = 0; i < n && rc == NX_OK; i++) {
        const struct raft_entry *e = &ents[i];
        if (e->type == RAFT_ENTRY_CONF) {
            struct raft_conf c;
            if (raft_conf_decode(e->data, e->len, &c) == NX_OK)
                h->applied_conf = c;
        } else if (e->len == 0) {
            continue; /* a new leader's empty entry */
        } else if (e->data[0] == ENTRY_TAG_LEDGER) {
            struct ledger_result r;
            rc =
                ledger_apply(ledger_host_ledger(h->lh), e->data + 1, e->len - 1, e->index, &lb, &r);
            if (rc == NX_OK)
                note_ledger_result(h, e, &r);
            if (rc == NX_OK && r.reason == LEDGER_OK &&
                (r.type == LEDGER_CMD_NODE_ADMIT || r.type == LEDGER_CMD_NODE_REMOVE ||
                 r.type == LEDGER_CMD_GENESIS))
                h->registry_changed = true;
        } else if (e->data[0] != ENTRY_TAG_KV ||
                   kv_apply(h->store, wb, e->data + 1, e->len - 1) != NX_OK) {
            h->bad_commands++;
        }
    }
    if (rc == NX_OK)
        rc = ledger_store_rocksdb_fill(ledger_host_store(h->lh), &lb, wb);
    ledger_batch_free(&lb);
    if (rc == NX_OK) {
        raft_store_batch_applied(h->store, wb, ents[n - 1].index);
        rc = raft_store_write(h->store, wb, false);
    }
    rocksdb_writebatch_destroy(wb);
    if (rc == NX_OK) {
        h->applied = ents[n - 1].index;
        h->applied_entries += n;
    }
    if (rc == NX_OK && h->registry_changed)
        registry_sync_trust(h);
    return rc;
}

static void maybe_snapshot(struct raft_host *h)
{
    if (h->cfg.snapshot_every == 0 || h->applied < h->snap_index + h->cfg.snapshot_every)
        return;
    uint64_t index = h->applied, term = 0;
    if (!raft_entry_term(h->r, index, &term))
        return;
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t t0 = nx_clock_mono_us();
    int rc = ledger_host_snapshot(h->lh, h->store, &data, &len);
    if (rc != NX_OK) {
        NX_WARN("raft_snapshot_skipped", "error=\"%s\"", nx_strerror(rc));
        h->snap_index = index; /* do not retry every iteration */
        return;
    }
    rc = raft_store_compact(h->store, index, term, &h->applied_conf, data, len);
    if (rc == NX_OK)
        rc = raft_compact(h->r, index, data, len);
    free(data);
    if (rc != NX_OK) {
        fatal(h, "snapshot", rc);
        return;
    }
    h->snap_index = index;
    h->snapshots_made++;
    uint64_t us = nx_clock_mono_us() - t0; /* the loop stands still meanwhile */
    h->snapshot_us += us;
    NX_INFO("raft_snapshot", "index=%llu bytes=%zu us=%llu", (unsigned long long)index, len,
            (unsigned long long)us);
}

static void on_role_change(struct raft_host *h, const struct raft_soft_state *ss)
{
    if (ss->role != h->role)
        NX_INFO("raft_role", "role=%s term=%llu leader=%016llx", raft_role_name(ss->role),
                (unsigned long long)raft_term(h->r), (unsigned long long)ss->leader);
    if (h->role == RAFT_LEADER && ss->role != RAFT_LEADER)
        fail_reads(h, "leadership lost, retry");
    h->role = ss->role;
}

/* Reads that came before the new leader committed an entry of its term: ask again. */
static void retry_reads(struct raft_host *h)
{
    for (size_t i = 0; i < h->pending_hw; i++) {
        struct pending *p = &h->pending[i];
        if (p->kind != PENDING_READ_RETRY)
            continue;
        int rc = raft_read_index(h->r, p->ctx);
        if (rc == NX_OK) {
            p->kind = PENDING_READ_INDEX;
        } else if (rc != NX_ERR_AGAIN) {
            if (rc == NX_ERR_NOT_LEADER)
                reply_not_leader(h, &p->to);
            else
                answer_error(h, &p->to, 503, "cannot read now: %s, retry", nx_strerror(rc));
            pending_free(h, p);
        }
    }
}

static void process_ready(struct raft_host *h)
{
    if (h->n_pending > 0)
        retry_reads(h);
    while (!h->failed && raft_has_ready(h->r)) {
        struct raft_ready rd;
        raft_ready(h->r, &rd);
        h->readies++;
        if (rd.has_soft_state)
            on_role_change(h, &rd.soft_state);
        /*
         * The leader's appends (rd.n_msgs_early) leave before our synced
         * write, so the followers' fsyncs run while ours does; everything
         * else (votes, acknowledgements) only once it is durable.
         */
        uint64_t t0 = nx_clock_mono_us();
        send_msgs(h, rd.msgs, rd.n_msgs_early);
        uint64_t t1 = nx_clock_mono_us();
        int rc = raft_store_persist(h->store, &rd);
        uint64_t t2 = nx_clock_mono_us();
        h->persist_us += t2 - t1;
        if (rc != NX_OK) {
            fatal(h, "persist", rc);
            return;
        }
        send_msgs(h, rd.msgs + rd.n_msgs_early, rd.n_msgs - rd.n_msgs_early);
        uint64_t t3 = nx_clock_mono_us();
        h->send_us += (t1 - t0) + (t3 - t2);
        if (rd.snapshot) {
            rc = ledger_host_install(h->lh, h->store, rd.snapshot->data, rd.snapshot->len,
                                     rd.snapshot->index);
            if (rc != NX_OK) {
                fatal(h, "install snapshot", rc);
                return;
            }
            h->applied = rd.snapshot->index;
            h->snap_index = rd.snapshot->index;
            h->applied_conf = rd.snapshot->conf;
            h->snapshots_installed++;
            registry_sync_trust(h);
        }
        rc = apply_committed(h, rd.committed, rd.n_committed);
        h->apply_us += nx_clock_mono_us() - t3;
        if (rc != NX_OK) {
            fatal(h, "apply", rc);
            return;
        }
        resolve_writes(h, rd.committed, rd.n_committed);
        for (size_t i = 0; i < rd.n_reads; i++) {
            for (size_t k = 0; k < h->pending_hw; k++) {
                struct pending *p = &h->pending[k];
                if (p->kind == PENDING_READ_INDEX && p->ctx == rd.reads[i].ctx) {
                    p->kind = PENDING_READ_WAIT;
                    p->index = rd.reads[i].index;
                }
            }
        }
        raft_advance(h->r, &rd);
        serve_reads(h);
    }
    if (!h->failed)
        maybe_snapshot(h);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    process_ready(w->data);
}

static enum api_result ledger_propose(struct raft_host *h, const struct reply_to *to,
                                      const uint8_t *cmd, size_t len);

/* Leader with the operator key and no genesis applied: propose it (ledger_host.h). */
static void propose_genesis(struct raft_host *h)
{
    uint8_t *cmd = NULL;
    size_t len = 0;
    if (ledger_host_genesis_cmd(h->lh, h->ident->pk, &cmd, &len) != NX_OK)
        return;
    h->genesis_proposals++;
    NX_INFO("ledger_genesis_proposed", "bytes=%zu", len);
    (void)ledger_propose(h, NULL, cmd, len);
    free(cmd);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct raft_host *h = w->data;
    raft_tick(h->r);
    if (++h->ticks % PEER_REFRESH_TICKS == 0)
        refresh_from_gossip(h);
    if (h->ticks % GENESIS_RETRY_TICKS == 0 && raft_role(h->r) == RAFT_LEADER) {
        propose_genesis(h);
        registry_reconcile(h);
    }
    if (h->n_pending > 0)
        expire_pending(h, nx_clock_mono_ms());
}

/* Decodes one encoded message from an authenticated sender and feeds it to the core. */
static void step_encoded(struct raft_host *h, const uint8_t sender[NODE_PK_BYTES],
                         const uint8_t *body, size_t len)
{
    struct raft_msg m;
    if (raft_msg_decode(body, len, &m) != NX_OK) {
        h->msgs_bad++;
        return;
    }
    h->msgs_received++;
    if (m.from != raft_host_id_of(sender) || m.to != h->id) {
        h->msgs_bad_sender++;
        NX_DEBUG("raft_msg_dropped", "reason=sender from=%016llx", (unsigned long long)m.from);
    } else {
        if (peer_by_id(h, m.from) == NULL)
            (void)peer_learn(h, sender, NULL);
        if (raft_step(h->r, &m) != NX_OK)
            h->msgs_bad++;
    }
    raft_msg_clear(&m);
}

static void on_raft_msg(void *ctx, const uint8_t sender[NODE_PK_BYTES], const uint8_t *body,
                        size_t len)
{
    step_encoded(ctx, sender, body, len);
}

/*
 * One chunk of a large message (see send_encoded). One message is assembled
 * at a time, from one sender, in order; anything else restarts or drops the
 * assembly (counted in chunks_bad).
 */
static void on_raft_chunk(void *ctx, const uint8_t sender[NODE_PK_BYTES], const uint8_t *body,
                          size_t len)
{
    struct raft_host *h = ctx;
    if (len <= CHUNK_HEADER_BYTES) {
        h->chunks_bad++;
        return;
    }
    uint64_t id = 0;
    uint32_t off = 0, total = 0;
    for (int i = 7; i >= 0; i--)
        id = (id << 8) | body[i];
    for (int i = 3; i >= 0; i--) {
        off = (off << 8) | body[8 + i];
        total = (total << 8) | body[12 + i];
    }
    size_t n = len - CHUNK_HEADER_BYTES;
    struct chunk_assembly *a = &h->asm_;
    if (off == 0) {
        if (total > RAFT_MAX_MSG_BYTES || total <= n) {
            h->chunks_bad++;
            return;
        }
        uint8_t *g = realloc(a->buf, total);
        if (g == NULL) {
            h->chunks_bad++;
            return;
        }
        a->buf = g;
        a->id = id;
        a->total = total;
        a->have = 0;
        memcpy(a->from, sender, NODE_PK_BYTES);
        a->active = true;
    } else if (!a->active || a->id != id || a->total != total || a->have != off ||
               memcmp(a->from, sender, NODE_PK_BYTES) != 0) {
        h->chunks_bad++;
        return;
    }
    if (n > a->total - a->have) {
        h->chunks_bad++;
        a->active = false;
        return;
    }
    memcpy(a->buf + a->have, body + CHUNK_HEADER_BYTES, n);
    a->have += n;
    h->chunks_received++;
    if (a->have == a->total) {
        a->active = false;
        step_encoded(h, sender, a->buf, a->total);
        free(a->buf); /* large and rare: do not keep it */
        a->buf = NULL;
    }
}

/* ---- start / stop ---------------------------------------------------------- */

static void on_forward(void *ctx, const uint8_t sender[NODE_PK_BYTES], const uint8_t *body,
                       size_t len);
static void on_forward_reply(void *ctx, const uint8_t sender[NODE_PK_BYTES], const uint8_t *body,
                             size_t len);

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Loads storage, bootstrapping it first when asked and empty. */
static int load_storage(struct raft_host *h, struct raft_store_boot *b, char *err, size_t cap)
{
    int rc = raft_store_load(h->store, b, err, cap);
    if (rc != NX_OK)
        return rc;
    bool pristine =
        !b->has_state || (b->boot.snapshot.index == 0 && b->boot.snapshot.conf.n_voters == 0 &&
                          b->boot.snapshot.conf.n_learners == 0 && b->boot.n_entries == 0 &&
                          b->boot.hard_state.term == 0);
    if (!pristine) {
        if (h->cfg.bootstrap)
            NX_INFO("raft_bootstrap_ignored", "reason=\"raft state already stored\"");
        return NX_OK;
    }
    struct raft_conf conf = {0};
    if (h->cfg.bootstrap) {
        conf.voters[conf.n_voters++] = h->id;
        for (size_t i = 0; i < h->n_peers && conf.n_voters < RAFT_MAX_NODES; i++)
            conf.voters[conf.n_voters++] = h->peers[i].id;
        qsort(conf.voters, conf.n_voters, sizeof conf.voters[0], cmp_u64);
    }
    bool had_state = b->has_state; /* raft_store_boot_free clears *b */
    raft_store_boot_free(b);
    rc = had_state ? raft_store_compact(h->store, 0, 0, &conf, NULL, 0)
                   : raft_store_bootstrap(h->store, &conf);
    if (rc == NX_OK && h->cfg.bootstrap)
        NX_INFO("raft_bootstrap", "voters=%u", conf.n_voters);
    if (rc != NX_OK) {
        snprintf(err, cap, "raft: cannot bootstrap storage: %s", nx_strerror(rc));
        return rc;
    }
    return raft_store_load(h->store, b, err, cap);
}

static int create_core(struct raft_host *h, char *err, size_t cap)
{
    struct raft_store_boot b;
    int rc = load_storage(h, &b, err, cap);
    if (rc != NX_OK)
        return rc;
    /* A snapshot persisted but not installed before a crash: install it now. */
    if (b.boot.applied < b.boot.snapshot.index) {
        rc = ledger_host_install(h->lh, h->store, b.boot.snapshot.data, b.boot.snapshot.len,
                                 b.boot.snapshot.index);
        if (rc != NX_OK) {
            snprintf(err, cap, "raft: cannot install the stored snapshot: %s", nx_strerror(rc));
            raft_store_boot_free(&b);
            return rc;
        }
        b.boot.applied = b.boot.snapshot.index;
        b.applied_conf = b.boot.snapshot.conf;
    }
    struct raft_config rc_cfg;
    uint64_t seed;
    randombytes_buf(&seed, sizeof seed);
    raft_config_default(&rc_cfg, h->id, seed);
    rc_cfg.election_tick_min = RAFT_HOST_ELECTION_TICKS_MIN;
    rc_cfg.election_tick_max = RAFT_HOST_ELECTION_TICKS_MAX;
    rc_cfg.heartbeat_tick = RAFT_HOST_HEARTBEAT_TICKS;
    rc_cfg.max_entry_bytes = 1 + KV_MAX_CMD_BYTES; /* tag byte + the largest command */
    rc = raft_create(&rc_cfg, &b.boot, &h->r);
    if (rc != NX_OK) {
        snprintf(err, cap, "raft: stored state rejected by the core: %s", nx_strerror(rc));
        raft_store_boot_free(&b);
        return rc;
    }
    h->applied = b.boot.applied;
    h->snap_index = b.boot.snapshot.index;
    h->applied_conf = b.applied_conf;
    NX_INFO("raft_loaded",
            "id=%016llx term=%llu commit=%llu applied=%llu snapshot=%llu entries=%zu voters=%u",
            (unsigned long long)h->id, (unsigned long long)b.boot.hard_state.term,
            (unsigned long long)b.boot.hard_state.commit, (unsigned long long)b.boot.applied,
            (unsigned long long)b.boot.snapshot.index, b.boot.n_entries,
            raft_current_conf(h->r)->n_voters);
    raft_store_boot_free(&b);
    const struct raft_conf *c = raft_current_conf(h->r);
    if (c->n_voters == 1 && c->voters[0] == h->id)
        if (raft_campaign(h->r) != NX_OK) /* a cluster of one need not wait for a timeout */
            NX_WARN("raft_campaign_failed", "%s", "");
    return NX_OK;
}

int raft_host_start(struct raft_host **out, struct ev_loop *loop, struct mesh *mesh,
                    struct gossip_host *gossip, const struct node_identity *id,
                    const struct raft_host_config *cfg, char *err, size_t cap)
{
    struct raft_host *h = calloc(1, sizeof *h);
    if (h == NULL || (h->pending = calloc(RAFT_HOST_MAX_PENDING, sizeof *h->pending)) == NULL) {
        free(h);
        snprintf(err, cap, "raft: out of memory");
        return NX_ERR_NOMEM;
    }
    h->loop = loop;
    h->mesh = mesh;
    h->gossip = gossip;
    h->ident = id;
    h->cfg = *cfg;
    h->id = raft_host_id_of(id->pk);
    h->role = RAFT_FOLLOWER;
    int rc = parse_peers(h, cfg->peers, err, cap);
    if (rc == NX_OK)
        rc = raft_store_open(&h->store, cfg->data_dir, err, cap);
    if (rc == NX_OK)
        rc = ledger_host_open(&h->lh, h->store, cfg->data_dir, cfg->bootstrap, err, cap);
    if (rc == NX_OK)
        rc = create_core(h, err, cap);
    if (rc == NX_OK)
        registry_sync_trust(h);
    if (rc == NX_OK)
        rc = mesh_set_handler(mesh, NCAP_MSG_RAFT, on_raft_msg, h);
    if (rc == NX_OK)
        rc = mesh_set_handler(mesh, RAFT_HOST_MSG_CHUNK, on_raft_chunk, h);
    if (rc == NX_OK)
        rc = mesh_set_handler(mesh, RAFT_HOST_MSG_FORWARD, on_forward, h);
    if (rc == NX_OK)
        rc = mesh_set_handler(mesh, RAFT_HOST_MSG_FORWARD_REPLY, on_forward_reply, h);
    if (rc != NX_OK) {
        if (err[0] == '\0')
            snprintf(err, cap, "raft: cannot start: %s", nx_strerror(rc));
        raft_host_stop(h);
        return rc;
    }
    double tick_s = cfg->tick_ms / 1000.0;
    ev_timer_init(&h->tick, on_tick, tick_s, tick_s);
    h->tick.data = h;
    ev_timer_start(loop, &h->tick);
    ev_prepare_init(&h->prepare, on_prepare);
    h->prepare.data = h;
    ev_prepare_start(loop, &h->prepare);
    *out = h;
    return NX_OK;
}

void raft_host_stop(struct raft_host *h)
{
    if (h == NULL)
        return;
    if (h->loop) {
        ev_timer_stop(h->loop, &h->tick);
        ev_prepare_stop(h->loop, &h->prepare);
    }
    raft_destroy(h->r);
    ledger_host_free(h->lh);
    raft_store_close(h->store);
    free(h->sendbuf);
    free(h->asm_.buf);
    free(h->pending);
    free(h);
}

bool raft_host_failed(const struct raft_host *h)
{
    return h != NULL && h->failed;
}

/* ---- status ----------------------------------------------------------------- */

static json_t *ids_json(const struct raft_host *h, const uint64_t *ids, uint32_t n)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < n; i++)
        json_array_append_new(a, id_json(h, ids[i]));
    return a;
}

static int count_node_cb(void *arg, const struct ledger_node *n)
{
    (void)n;
    (*(size_t *)arg)++;
    return 0;
}

json_t *raft_host_status_json(const struct raft_host *h)
{
    if (h == NULL)
        return json_null();
    const struct raft_conf *c = raft_current_conf(h->r);
    char rid[17];
    snprintf(rid, sizeof rid, "%016llx", (unsigned long long)h->id);
    json_t *counters = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "readies",
        (json_int_t)h->readies, "synced_writes", (json_int_t)raft_store_syncs(h->store),
        "msgs_sent", (json_int_t)h->msgs_sent, "msgs_dropped", (json_int_t)h->msgs_dropped,
        "msgs_received", (json_int_t)h->msgs_received, "msgs_bad_sender",
        (json_int_t)h->msgs_bad_sender, "msgs_bad", (json_int_t)h->msgs_bad, "proposals",
        (json_int_t)h->proposals, "applied_entries", (json_int_t)h->applied_entries, "bad_commands",
        (json_int_t)h->bad_commands, "snapshots_made", (json_int_t)h->snapshots_made,
        "snapshots_installed", (json_int_t)h->snapshots_installed, "writes_ok",
        (json_int_t)h->writes_ok, "writes_lost", (json_int_t)h->writes_lost, "writes_timed_out",
        (json_int_t)h->writes_timed_out);
    json_object_set_new(counters, "forwarded", json_integer((json_int_t)h->forwarded));
    json_object_set_new(counters, "forwards_served", json_integer((json_int_t)h->forwards_served));
    json_object_set_new(counters, "forwards_bad", json_integer((json_int_t)h->forwards_bad));
    json_object_set_new(counters, "chunks_sent", json_integer((json_int_t)h->chunks_sent));
    json_object_set_new(counters, "chunks_received", json_integer((json_int_t)h->chunks_received));
    json_object_set_new(counters, "chunks_bad", json_integer((json_int_t)h->chunks_bad));
    json_object_set_new(counters, "persist_us", json_integer((json_int_t)h->persist_us));
    json_object_set_new(counters, "send_us", json_integer((json_int_t)h->send_us));
    json_object_set_new(counters, "apply_us", json_integer((json_int_t)h->apply_us));
    json_object_set_new(counters, "snapshot_us", json_integer((json_int_t)h->snapshot_us));
    json_object_set_new(counters, "ledger_accepted", json_integer((json_int_t)h->ledger_accepted));
    json_object_set_new(counters, "ledger_rejected", json_integer((json_int_t)h->ledger_rejected));
    json_object_set_new(counters, "genesis_proposals",
                        json_integer((json_int_t)h->genesis_proposals));
    json_object_set_new(counters, "registry_admits", json_integer((json_int_t)h->registry_admits));
    json_object_set_new(counters, "conf_changes_proposed",
                        json_integer((json_int_t)h->conf_changes_proposed));
    json_object_set_new(counters, "voters_replaced", json_integer((json_int_t)h->voters_replaced));
    size_t members = 0, removed = 0;
    if (ledger_nodes_foreach(ledger_host_ledger(h->lh), count_node_cb, &members) < 0 ||
        ledger_removed_nodes_foreach(ledger_host_ledger(h->lh), count_node_cb, &removed) < 0)
        members = removed = 0;
    return json_pack(
        "{s:s,s:s,s:I,s:o,s:I,s:I,s:I,s:o,s:o,s:I,s:o,s:{s:I,s:I}}", "id", rid, "role",
        raft_role_name(raft_role(h->r)), "term", (json_int_t)raft_term(h->r), "leader",
        id_json(h, raft_leader(h->r)), "commit_index", (json_int_t)raft_commit_index(h->r),
        "applied_index", (json_int_t)h->applied, "snapshot_index", (json_int_t)h->snap_index,
        "voters", ids_json(h, c->voters, c->n_voters), "learners",
        ids_json(h, c->learners, c->n_learners), "pending", (json_int_t)h->n_pending, "counters",
        counters, "registry", "members", (json_int_t)members, "removed", (json_int_t)removed);
}

/* ---- API ---------------------------------------------------------------------- */

/* Proposes a write; value is borrowed. API_PENDING when the answer comes later. */
static enum api_result kv_write(struct raft_host *h, const struct reply_to *to, enum kv_op op,
                                const char *key, size_t klen, const char *value, size_t vlen)
{
    if (vlen > KV_MAX_VALUE_BYTES) {
        answer_error(h, to, 413, "value of %zu bytes is over the limit of %u", vlen,
                     KV_MAX_VALUE_BYTES);
        return API_DONE;
    }
    if (raft_role(h->r) != RAFT_LEADER) {
        reply_not_leader(h, to);
        return API_DONE;
    }
    if (h->n_pending == RAFT_HOST_MAX_PENDING) {
        answer_error(h, to, 503, "too many pending requests, retry");
        return API_DONE;
    }
    uint8_t *cmd = malloc(1 + KV_CMD_HEADER_BYTES + klen + vlen);
    if (cmd == NULL) {
        answer_error(h, to, 500, "out of memory");
        return API_DONE;
    }
    cmd[0] = ENTRY_TAG_KV;
    long len =
        kv_cmd_encode(op, key, klen, value, vlen, cmd + 1, KV_CMD_HEADER_BYTES + klen + vlen);
    uint64_t index = 0;
    int rc = len < 0 ? (int)len : raft_propose(h->r, cmd, 1 + (size_t)len, &index);
    free(cmd);
    if (rc != NX_OK) {
        if (rc == NX_ERR_NOT_LEADER)
            reply_not_leader(h, to);
        else
            answer_error(h, to, rc == NX_ERR_TOO_BIG ? 413 : 503, "cannot propose: %s",
                         nx_strerror(rc));
        return API_DONE;
    }
    h->proposals++;
    struct pending *p = pending_add(h, PENDING_WRITE, to, key, klen);
    NX_ASSERT(p != NULL); /* checked above, nothing freed slots in between */
    p->index = index;
    p->term = raft_term(h->r);
    p->op = (uint8_t)op;
    return API_PENDING;
}

/*
 * Leader: wraps a signed ledger command (borrowed) with this node's clock and
 * proposes it; the answer is the ledger's result once the entry applies.
 * to may be NULL (genesis: nobody waits).
 */
static enum api_result ledger_propose(struct raft_host *h, const struct reply_to *to,
                                      const uint8_t *cmd, size_t len)
{
    if (raft_role(h->r) != RAFT_LEADER) {
        if (to)
            reply_not_leader(h, to);
        return API_DONE;
    }
    if (to && h->n_pending == RAFT_HOST_MAX_PENDING) {
        answer_error(h, to, 503, "too many pending requests, retry");
        return API_DONE;
    }
    uint8_t *wrapped = NULL, *entry = NULL;
    size_t wlen = 0;
    int rc = ledger_entry_wrap(cmd, len, nx_clock_wall_ms(), &wrapped, &wlen);
    if (rc == NX_OK && (entry = malloc(1 + wlen)) == NULL)
        rc = NX_ERR_NOMEM;
    uint64_t index = 0;
    if (rc == NX_OK) {
        entry[0] = ENTRY_TAG_LEDGER;
        memcpy(entry + 1, wrapped, wlen);
        rc = raft_propose(h->r, entry, 1 + wlen, &index);
    }
    free(wrapped);
    free(entry);
    if (rc != NX_OK) {
        if (to == NULL)
            return API_DONE;
        if (rc == NX_ERR_NOT_LEADER)
            reply_not_leader(h, to);
        else
            answer_error(h, to, rc == NX_ERR_TOO_BIG ? 413 : 503, "cannot propose: %s",
                         nx_strerror(rc));
        return API_DONE;
    }
    h->proposals++;
    if (to == NULL)
        return API_DONE;
    struct pending *p = pending_add(h, PENDING_WRITE, to, "", 0);
    NX_ASSERT(p != NULL); /* checked above */
    p->index = index;
    p->term = raft_term(h->r);
    p->op = FWD_OP_LEDGER_CMD;
    return API_PENDING;
}

static enum api_result lin_read(struct raft_host *h, const struct reply_to *to, uint8_t op,
                                const char *key, size_t klen)
{
    if (raft_role(h->r) != RAFT_LEADER) {
        reply_not_leader(h, to);
        return API_DONE;
    }
    if (h->n_pending == RAFT_HOST_MAX_PENDING) {
        answer_error(h, to, 503, "too many pending requests, retry");
        return API_DONE;
    }
    uint64_t ctx = ++h->next_read_ctx;
    int rc = raft_read_index(h->r, ctx);
    if (rc != NX_OK && rc != NX_ERR_AGAIN) {
        if (rc == NX_ERR_NOT_LEADER)
            reply_not_leader(h, to);
        else
            answer_error(h, to, 503, "cannot read now: %s, retry", nx_strerror(rc));
        return API_DONE;
    }
    struct pending *p =
        pending_add(h, rc == NX_OK ? PENDING_READ_INDEX : PENDING_READ_RETRY, to, key, klen);
    p->ctx = ctx;
    p->op = op;
    return API_PENDING;
}

/*
 * On a follower: sends the request to the leader over the mesh and relays its
 * answer. Returns false when the leader or its address is unknown.
 */
static bool forward_to(struct raft_host *h, const struct reply_to *to, uint8_t op, const char *key,
                       size_t klen, const char *value, size_t vlen)
{
    struct rh_peer *leader = peer_by_id(h, raft_leader(h->r));
    if (leader == NULL || leader->addr[0] == '\0' || h->n_pending == RAFT_HOST_MAX_PENDING ||
        vlen > KV_MAX_VALUE_BYTES)
        return false;
    uint8_t *buf = malloc(FWD_HEADER_BYTES + klen + vlen);
    if (buf == NULL)
        return false;
    uint64_t rid = ++h->next_fwd_id;
    buf[0] = op;
    for (int i = 0; i < 8; i++)
        buf[1 + i] = (uint8_t)(rid >> (8 * i));
    buf[9] = (uint8_t)klen;
    buf[10] = (uint8_t)(klen >> 8);
    memcpy(buf + FWD_HEADER_BYTES, key, klen);
    if (vlen)
        memcpy(buf + FWD_HEADER_BYTES + klen, value, vlen);
    int rc = mesh_send(h->mesh, leader->pk, leader->addr_told ? NULL : leader->addr,
                       RAFT_HOST_MSG_FORWARD, buf, FWD_HEADER_BYTES + klen + vlen);
    free(buf);
    if (rc != NX_OK)
        return false;
    leader->addr_told = true;
    struct pending *p = pending_add(h, PENDING_FORWARD, to, key, klen);
    p->rid = rid;
    p->op = op;
    memcpy(p->leader_pk, leader->pk, NODE_PK_BYTES);
    p->deadline_ms += RAFT_HOST_FORWARD_EXTRA_MS; /* let the leader's own timeout answer first */
    h->forwarded++;
    return true;
}

static bool forward(struct raft_host *h, struct api_request *req, uint8_t op, const char *key,
                    size_t klen, const char *value, size_t vlen)
{
    struct reply_to to = {.req = req};
    return forward_to(h, &to, op, key, klen, value, vlen);
}

enum api_result raft_host_api_kv(void *ctx, struct api_request *req)
{
    struct raft_host *h = ctx;
    const char *key = api_req_tail(req);
    size_t klen = strlen(key);
    struct reply_to to = {.req = req};
    if (!kv_key_valid(key, klen)) {
        api_reply_error(req, 400, "key must be 1 to %d printable ASCII bytes without spaces",
                        KV_MAX_KEY_BYTES);
        return API_DONE;
    }
    /* _session/, _deploy/: records other modules keep consistent; readable, not writable */
    if (key[0] == '_' && strcmp(api_req_method(req), "GET") != 0) {
        api_reply_error(req, 403, "keys starting with '_' are written by the node itself");
        return API_DONE;
    }
    const char *method = api_req_method(req);
    uint8_t op;
    if (strcmp(method, "GET") == 0)
        op = FWD_OP_GET;
    else if (strcmp(method, "PUT") == 0)
        op = KV_OP_PUT;
    else if (strcmp(method, "DELETE") == 0)
        op = KV_OP_DELETE;
    else {
        api_reply_error(req, 405, "method %s not allowed", method);
        return API_DONE;
    }
    if (op == FWD_OP_GET && api_req_query(req, "stale") != NULL) {
        reply_read(h, &to, FWD_OP_GET, key, klen);
        return API_DONE;
    }
    size_t vlen = 0;
    const char *value = op == KV_OP_PUT ? api_req_body(req, &vlen) : NULL;
    if (raft_role(h->r) != RAFT_LEADER && forward(h, req, op, key, klen, value, vlen))
        return API_PENDING;
    if (op == FWD_OP_GET)
        return lin_read(h, &to, FWD_OP_GET, key, klen);
    return kv_write(h, &to, (enum kv_op)op, key, klen, value, vlen);
}

/* Leader side of forwarding: a request from another member, answered over the mesh. */
static void on_forward(void *ctx, const uint8_t sender[NODE_PK_BYTES], const uint8_t *body,
                       size_t len)
{
    struct raft_host *h = ctx;
    if (len < FWD_HEADER_BYTES) {
        h->forwards_bad++;
        return;
    }
    struct reply_to to = {.remote = true};
    memcpy(to.pk, sender, NODE_PK_BYTES);
    for (int i = 7; i >= 0; i--)
        to.rid = (to.rid << 8) | body[1 + i];
    size_t klen = (size_t)body[9] | ((size_t)body[10] << 8);
    const char *key = (const char *)body + FWD_HEADER_BYTES;
    uint8_t op = body[0];
    bool ledger_cmd = op == FWD_OP_LEDGER_CMD;
    if (klen > len - FWD_HEADER_BYTES || (ledger_cmd ? klen != 0 : !kv_key_valid(key, klen)) ||
        (op != KV_OP_PUT && op != KV_OP_DELETE && op != FWD_OP_GET && !ledger_cmd &&
         op != FWD_OP_LEDGER_READ)) {
        h->forwards_bad++;
        answer_error(h, &to, 400, "malformed forwarded request");
        return;
    }
    h->forwards_served++;
    size_t vlen = len - FWD_HEADER_BYTES - klen;
    if (ledger_cmd)
        (void)ledger_propose(h, &to, (const uint8_t *)key, vlen);
    else if (op == FWD_OP_GET || op == FWD_OP_LEDGER_READ)
        (void)lin_read(h, &to, op, key, klen);
    else
        (void)kv_write(h, &to, (enum kv_op)op, key, klen, key + klen, vlen);
}

/* Follower side: the leader's answer to a forwarded request, relayed to the client. */
static void on_forward_reply(void *ctx, const uint8_t sender[NODE_PK_BYTES], const uint8_t *body,
                             size_t len)
{
    struct raft_host *h = ctx;
    if (len < FWD_REPLY_HEADER_BYTES) {
        h->forwards_bad++;
        return;
    }
    uint64_t rid = 0;
    for (int i = 7; i >= 0; i--)
        rid = (rid << 8) | body[i];
    unsigned status = (unsigned)body[8] | ((unsigned)body[9] << 8);
    for (size_t i = 0; i < h->pending_hw; i++) {
        struct pending *p = &h->pending[i];
        if (p->kind != PENDING_FORWARD || p->rid != rid ||
            memcmp(p->leader_pk, sender, NODE_PK_BYTES) != 0)
            continue;
        json_t *reply = json_loadb((const char *)body + FWD_REPLY_HEADER_BYTES,
                                   len - FWD_REPLY_HEADER_BYTES, 0, NULL);
        if (reply == NULL || status < 200 || status > 599) {
            json_decref(reply);
            h->forwards_bad++;
            reply = json_pack("{s:s}", "error",
                              !op_is_write(p->op) ? "bad answer from the leader"
                                                  : "bad answer from the leader: outcome unknown");
            status = 502;
        }
        answer(h, &p->to, status, reply);
        pending_free(h, p);
        return;
    }
    h->forwards_bad++; /* late (timed out) or unknown: dropped */
}

static enum api_result conf_change(struct raft_host *h, struct api_request *req,
                                   enum raft_conf_op op, uint64_t id)
{
    uint64_t index = 0;
    int rc = raft_propose_conf_change(h->r, op, id, &index);
    if (rc == NX_ERR_NOT_LEADER) {
        struct reply_to to = {.req = req};
        reply_not_leader(h, &to);
        return API_DONE;
    }
    if (rc != NX_OK) {
        api_reply_error(req, rc == NX_ERR_AGAIN ? 503 : 409, "membership change refused: %s",
                        nx_strerror(rc));
        return API_DONE;
    }
    char rid[17];
    snprintf(rid, sizeof rid, "%016llx", (unsigned long long)id);
    api_reply_json(req, 202, json_pack("{s:s,s:I}", "raft_id", rid, "index", (json_int_t)index));
    return API_DONE;
}

enum api_result raft_host_api_member_add(void *ctx, struct api_request *req)
{
    struct raft_host *h = ctx;
    json_t *body = api_req_json(req);
    if (body == NULL)
        return API_DONE;
    const char *hex = json_string_value(json_object_get(body, "id"));
    const char *addr = json_string_value(json_object_get(body, "address"));
    const char *role = json_string_value(json_object_get(body, "role"));
    uint8_t pk[NODE_PK_BYTES];
    char host[NODE_ADDR_MAX];
    uint16_t port;
    if (hex == NULL || strlen(hex) != NODE_ID_HEX_LEN ||
        nx_hex_decode(pk, sizeof pk, hex) != NX_OK) {
        api_reply_error(req, 400, "\"id\" must be a node id (64 hex digits)");
        return API_DONE;
    }
    if (addr == NULL || node_addr_split(addr, host, sizeof host, &port) != NX_OK || port == 0) {
        api_reply_error(req, 400, "\"address\" must be HOST:PORT");
        return API_DONE;
    }
    if (role && strcmp(role, "voter") != 0 && strcmp(role, "learner") != 0) {
        api_reply_error(req, 400, "\"role\" must be voter or learner");
        return API_DONE;
    }
    if (peer_learn(h, pk, addr) == NULL) {
        api_reply_error(req, 409, "cannot track this node (id collision or too many peers)");
        return API_DONE;
    }
    enum raft_conf_op op =
        role && strcmp(role, "learner") == 0 ? RAFT_CONF_ADD_LEARNER : RAFT_CONF_ADD_VOTER;
    uint64_t id = raft_host_id_of(pk);
    if (op == RAFT_CONF_ADD_VOTER && raft_conf_is_learner(raft_current_conf(h->r), id))
        op = RAFT_CONF_PROMOTE;
    return conf_change(h, req, op, id);
}

enum api_result raft_host_api_member_remove(void *ctx, struct api_request *req)
{
    struct raft_host *h = ctx;
    const char *hex = api_req_tail(req);
    uint8_t pk[NODE_PK_BYTES];
    if (strlen(hex) != NODE_ID_HEX_LEN || nx_hex_decode(pk, sizeof pk, hex) != NX_OK) {
        api_reply_error(req, 400, "expected /v1/raft/members/NODE_ID (64 hex digits)");
        return API_DONE;
    }
    return conf_change(h, req, RAFT_CONF_REMOVE, raft_host_id_of(pk));
}

/* ---- ledger API ------------------------------------------------------------- */

/* Decodes hex or base64 (standard or URL-safe, padding optional); *out malloc'd. */
static int decode_blob(const char *txt, uint8_t **out, size_t *len)
{
    size_t n = strlen(txt), cap = n + 1;
    if (n == 0 || n > 2 * LEDGER_MAX_ENTRY_BYTES)
        return NX_ERR_INVAL;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return NX_ERR_NOMEM;
    size_t got = 0;
    if (sodium_hex2bin(buf, cap, txt, n, NULL, &got, NULL) == 0 ||
        sodium_base642bin(buf, cap, txt, n, "\n", &got, NULL, sodium_base64_VARIANT_ORIGINAL) ==
            0 ||
        sodium_base642bin(buf, cap, txt, n, "\n", &got, NULL,
                          sodium_base64_VARIANT_ORIGINAL_NO_PADDING) == 0 ||
        sodium_base642bin(buf, cap, txt, n, "\n", &got, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0) {
        *out = buf;
        *len = got;
        return NX_OK;
    }
    free(buf);
    return NX_ERR_INVAL;
}

enum api_result raft_host_api_ledger_command(void *ctx, struct api_request *req)
{
    struct raft_host *h = ctx;
    json_t *body = api_req_json(req);
    if (body == NULL)
        return API_DONE;
    const char *txt = json_string_value(json_object_get(body, "command"));
    uint8_t *cmd = NULL;
    size_t len = 0;
    struct ledger_cmd decoded;
    if (txt == NULL || decode_blob(txt, &cmd, &len) != NX_OK) {
        api_reply_error(req, 400, "\"command\" must be a signed ledger command in hex or base64");
        return API_DONE;
    }
    if (len + LEDGER_ENTRY_HEADER_BYTES > LEDGER_MAX_ENTRY_BYTES ||
        ledger_cmd_decode(cmd, len, &decoded) != NX_OK) {
        free(cmd);
        api_reply_error(req, 400, "not a well-formed ledger command (docs/ledger.md section 3)");
        return API_DONE;
    }
    /* refuse junk before it takes a log slot; apply here reuses this check (ledger.h) */
    if (ledger_cmd_precheck(ledger_host_ledger(h->lh), cmd, len) != NX_OK) {
        free(cmd);
        api_reply_error(req, 400, "bad signature: the command is not signed by its author");
        return API_DONE;
    }
    struct reply_to to = {.req = req};
    enum api_result res;
    if (raft_role(h->r) != RAFT_LEADER &&
        forward(h, req, FWD_OP_LEDGER_CMD, "", 0, (const char *)cmd, len))
        res = API_PENDING;
    else
        res = ledger_propose(h, &to, cmd, len);
    free(cmd);
    return res;
}

enum api_result raft_host_api_ledger_read(void *ctx, struct api_request *req)
{
    struct raft_host *h = ctx;
    const char *tail = api_req_tail(req);
    struct reply_to to = {.req = req};
    char what[KV_MAX_KEY_BYTES + 1];
    if (strcmp(tail, "log") == 0 || strcmp(tail, "audit") == 0) {
        const char *a = api_req_query(req, "after"), *l = api_req_query(req, "limit");
        unsigned long long after = a ? strtoull(a, NULL, 10) : 0;
        unsigned long long limit = l ? strtoull(l, NULL, 10) : LEDGER_HOST_LOG_DEFAULT_LIMIT;
        if (limit == 0 || limit > LEDGER_HOST_LOG_MAX_LIMIT)
            limit = LEDGER_HOST_LOG_MAX_LIMIT;
        snprintf(what, sizeof what, "%s/%llu/%llu", tail, after, limit);
    } else if (strcmp(tail, "accounts") == 0 || strcmp(tail, "genesis") == 0 ||
               strcmp(tail, "verify") == 0 || strcmp(tail, "nodes") == 0 ||
               strcmp(tail, "tenants") == 0 ||
               (strncmp(tail, "balance/", 8) == 0 && tail[8] &&
                strlen(tail) <= 8 + LEDGER_NAME_MAX)) {
        snprintf(what, sizeof what, "%s", tail);
    } else {
        api_reply_error(req, 404, "no such ledger route: /v1/ledger/%s", tail);
        return API_DONE;
    }
    size_t wlen = strlen(what);
    /* verify checks this node's own copy, whatever the leader has */
    if (api_req_query(req, "stale") != NULL || strcmp(what, "verify") == 0 ||
        !kv_key_valid(what, wlen)) {
        reply_ledger_read(h, &to, what);
        return API_DONE;
    }
    if (raft_role(h->r) != RAFT_LEADER && forward(h, req, FWD_OP_LEDGER_READ, what, wlen, NULL, 0))
        return API_PENDING;
    return lin_read(h, &to, FWD_OP_LEDGER_READ, what, wlen);
}

enum gossip_raft_role raft_host_gossip_role(const struct raft_host *h)
{
    if (h == NULL || h->r == NULL)
        return GOSSIP_RAFT_NONE;
    switch (raft_role(h->r)) {
    case RAFT_LEADER:
        return GOSSIP_RAFT_LEADER;
    case RAFT_CANDIDATE:
    case RAFT_PRE_CANDIDATE:
        return GOSSIP_RAFT_CANDIDATE;
    case RAFT_FOLLOWER:
        break;
    }
    const struct raft_conf *c = raft_current_conf(h->r);
    if (raft_conf_is_voter(c, h->id))
        return GOSSIP_RAFT_FOLLOWER;
    return raft_conf_is_learner(c, h->id) ? GOSSIP_RAFT_LEARNER : GOSSIP_RAFT_NONE;
}

/* ---- the registry: trust, submissions, the voter set ------------------------
 *
 * docs/raft-node.md "The voter set". The leader reconciles three sets every
 * GENESIS_RETRY_TICKS: the Raft configuration, the registry's members and
 * gossip's view of who is alive. One change at a time (the core refuses a
 * second one until the first commits), so each round proposes at most one.
 */

#define LEARNER_CATCHUP_LAG 64 /* a learner this close to the commit index is caught up */

static void registry_sync_trust(struct raft_host *h)
{
    struct node_trust_file *admitted, *removed;
    h->registry_changed = false;
    int rc = ledger_host_trust_sets(h->lh, &admitted, &removed);
    if (rc != NX_OK) {
        NX_WARN("registry_trust_failed", "error=\"%s\"", nx_strerror(rc));
        return;
    }
    NX_DEBUG("registry_trust", "members=%zu removed=%zu", node_trust_file_count(admitted),
             node_trust_file_count(removed));
    mesh_trust_registry_set(h->mesh, admitted, removed);
}

void raft_host_submit_ledger(struct raft_host *h, const uint8_t *cmd, size_t len,
                             raft_host_done_fn done, void *arg)
{
    struct reply_to to = {.done = done, .done_arg = arg};
    if (raft_role(h->r) != RAFT_LEADER &&
        forward_to(h, &to, FWD_OP_LEDGER_CMD, "", 0, (const char *)cmd, len))
        return;
    (void)ledger_propose(h, &to, cmd, len);
}

struct ledger *raft_host_ledger(struct raft_host *h)
{
    return ledger_host_ledger(h->lh);
}

void raft_host_submit_kv(struct raft_host *h, const char *key, const char *value, size_t vlen,
                         raft_host_done_fn done, void *arg)
{
    struct reply_to to = {.done = done, .done_arg = arg};
    uint8_t op = value ? KV_OP_PUT : KV_OP_DELETE;
    size_t klen = strlen(key);
    if (!kv_key_valid(key, klen)) {
        answer_error(h, &to, 400, "invalid key");
        return;
    }
    if (raft_role(h->r) != RAFT_LEADER && forward_to(h, &to, op, key, klen, value, vlen))
        return;
    (void)kv_write(h, &to, (enum kv_op)op, key, klen, value, vlen);
}

void raft_host_read_kv(struct raft_host *h, const char *key, raft_host_done_fn done, void *arg)
{
    struct reply_to to = {.done = done, .done_arg = arg};
    size_t klen = strlen(key);
    if (!kv_key_valid(key, klen)) {
        answer_error(h, &to, 400, "invalid key");
        return;
    }
    if (raft_role(h->r) != RAFT_LEADER && forward_to(h, &to, FWD_OP_GET, key, klen, NULL, 0))
        return;
    (void)lin_read(h, &to, FWD_OP_GET, key, klen);
}

int raft_host_kv_scan(struct raft_host *h, const char *prefix, kv_scan_fn fn, void *arg)
{
    return kv_scan(h->store, prefix, fn, arg);
}

/* The key of a Raft id we know (ourselves or a peer), or NULL. */
static const uint8_t *key_of(struct raft_host *h, uint64_t id)
{
    if (id == h->id)
        return h->ident->pk;
    struct rh_peer *p = peer_by_id(h, id);
    return p ? p->pk : NULL;
}

static bool gossip_alive(struct raft_host *h, const uint8_t *pk)
{
    enum gossip_state st;
    uint64_t for_ms;
    if (pk == h->ident->pk)
        return true;
    return h->gossip && gossip_host_member_state(h->gossip, pk, &st, &for_ms) == NX_OK &&
           st == GOSSIP_ALIVE;
}

/* Dead or gone for longer than the grace period (gossip's verdict). */
static bool gossip_gone(struct raft_host *h, const uint8_t *pk)
{
    enum gossip_state st;
    uint64_t for_ms;
    return h->gossip && gossip_host_member_state(h->gossip, pk, &st, &for_ms) == NX_OK &&
           (st == GOSSIP_DEAD || st == GOSSIP_LEFT) && for_ms >= h->cfg.voter_grace_ms;
}

static bool propose_conf(struct raft_host *h, enum raft_conf_op op, uint64_t id, const char *why)
{
    uint64_t index;
    int rc = raft_propose_conf_change(h->r, op, id, &index);
    if (rc != NX_OK) {
        NX_DEBUG("raft_conf_deferred", "op=%d id=%016llx error=\"%s\"", (int)op,
                 (unsigned long long)id, nx_strerror(rc));
        return false;
    }
    h->conf_changes_proposed++;
    NX_INFO("raft_conf_proposed", "op=%s id=%016llx index=%llu why=\"%s\"",
            op == RAFT_CONF_ADD_LEARNER ? "add_learner"
            : op == RAFT_CONF_PROMOTE   ? "promote"
            : op == RAFT_CONF_REMOVE    ? "remove"
                                        : "add_voter",
            (unsigned long long)id, (unsigned long long)index, why);
    return true;
}

/* Static-bootstrap and API-added Raft members enter the registry (operator-signed). */
static bool admit_conf_members(struct raft_host *h, const struct raft_conf *c)
{
    struct ledger *l = ledger_host_ledger(h->lh);
    for (uint32_t i = 0; i < c->n_voters + c->n_learners; i++) {
        uint64_t id = i < c->n_voters ? c->voters[i] : c->learners[i - c->n_voters];
        const uint8_t *pk = key_of(h, id);
        if (pk == NULL || ledger_node_is_member(l, pk) || ledger_node_was_removed(l, pk))
            continue; /* unknown, admitted, or removed (the registry refuses it) */
        uint8_t *cmd = NULL;
        size_t len = 0;
        if (ledger_host_admit_cmd(h->lh, pk, &cmd, &len) != NX_OK)
            return false; /* no operator key here, or no genesis yet */
        h->registry_admits++;
        (void)ledger_propose(h, NULL, cmd, len);
        free(cmd);
        return true;
    }
    return false;
}

struct reconcile_walk {
    struct raft_host *h;
    const struct raft_conf *c;
    uint64_t add; /* a registry member to add as a learner */
    size_t members;
};

static int reconcile_member_cb(void *arg, const struct ledger_node *n)
{
    struct reconcile_walk *w = arg;
    uint64_t id = raft_host_id_of(n->key);
    w->members++;
    if (w->add != 0 || raft_conf_is_voter(w->c, id) || raft_conf_is_learner(w->c, id))
        return 0;
    struct rh_peer *p = peer_by_id(w->h, id);
    if (p && p->addr[0] && memcmp(p->pk, n->key, NODE_PK_BYTES) == 0 && gossip_alive(w->h, n->key))
        w->add = id;
    return 0;
}

static uint32_t voter_target(const struct raft_host *h, size_t members)
{
    if (h->cfg.voter_target > 0)
        return h->cfg.voter_target;
    return members >= 5 ? 5 : 3;
}

/* A learner that is alive and caught up, or 0. */
static uint64_t ready_learner(struct raft_host *h, const struct raft_conf *c)
{
    for (uint32_t i = 0; i < c->n_learners; i++) {
        struct raft_progress pr;
        const uint8_t *pk = key_of(h, c->learners[i]);
        if (pk && gossip_alive(h, pk) && raft_progress(h->r, c->learners[i], &pr) == NX_OK &&
            pr.match + LEARNER_CATCHUP_LAG >= raft_commit_index(h->r))
            return c->learners[i];
    }
    return 0;
}

static void registry_reconcile(struct raft_host *h)
{
    if (h->gossip == NULL || raft_role(h->r) != RAFT_LEADER)
        return;
    const struct raft_conf *c = raft_current_conf(h->r);
    if (admit_conf_members(h, c))
        return;
    struct ledger *l = ledger_host_ledger(h->lh);
    /* Removed from the registry: out of Raft too (never ourselves: transfer first). */
    for (uint32_t i = 0; i < c->n_voters + c->n_learners; i++) {
        uint64_t id = i < c->n_voters ? c->voters[i] : c->learners[i - c->n_voters];
        const uint8_t *pk = key_of(h, id);
        if (id != h->id && pk && ledger_node_was_removed(l, pk)) {
            (void)propose_conf(h, RAFT_CONF_REMOVE, id, "removed from the registry");
            return;
        }
    }
    struct reconcile_walk w = {h, c, 0, 0};
    if (ledger_nodes_foreach(l, reconcile_member_cb, &w) < 0)
        return;
    if (w.add && propose_conf(h, RAFT_CONF_ADD_LEARNER, w.add, "admitted member"))
        return;
    uint64_t learner = ready_learner(h, c);
    if (learner && c->n_voters < voter_target(h, w.members)) {
        (void)propose_conf(h, RAFT_CONF_PROMOTE, learner, "below the voter target");
        return;
    }
    /* A voter gossip has declared dead for longer than the grace: replace it. */
    for (uint32_t i = 0; learner && i < c->n_voters; i++) {
        const uint8_t *pk = key_of(h, c->voters[i]);
        if (c->voters[i] != h->id && pk && gossip_gone(h, pk) &&
            propose_conf(h, RAFT_CONF_REMOVE, c->voters[i], "dead past the grace period")) {
            h->voters_replaced++;
            return;
        }
    }
}
