/*
 * transport_zmq.c - the node's transport: ZeroMQ with CURVE, driven by libev.
 *
 * ## Socket pattern
 * Each node binds one ROUTER (ZMQ_CURVE_SERVER=1, its Curve25519 secret key)
 * and, to reach a peer, connects one DEALER to the peer's ROUTER carrying the
 * peer's public key as ZMQ_CURVE_SERVERKEY plus its own key pair. So a pair
 * of nodes that talk both ways holds two TCP connections, one per direction:
 * A's DEALER -> B's ROUTER carries A's messages to B, and B answers through
 * its own DEALER -> A's ROUTER. The CURVE keys are the nodes' Ed25519 keys
 * converted with crypto_sign_ed25519_{pk,sk}_to_curve25519, so there is one
 * identity per node. The ROUTER talks back on a connection only to guests
 * (joiners, which have no ROUTER we trust yet): node_transport_reply_guest.
 *
 * ## Why ZAP + User-Id
 * CURVE proves that the client holds the secret key of the public key it
 * presents, but libzmq accepts any key unless a ZAP handler says otherwise.
 * Each transport serves ZAP itself (a REP socket on inproc://zeromq.zap.01 in
 * its own zmq context, watched by the loop): the request carries the client's
 * Curve25519 key; we map it back to the two Ed25519 keys it can come from
 * (node_transport_curve_to_ed25519: y = (u-1)/(u+1), sign bit unknown) and ask
 * the Ed25519 trust predicate, so the trust interface never needs to list its
 * keys. A trusted key gets 200 with User-Id = its hex Ed25519 key; an unknown
 * key gets 200 with User-Id "guest:<hex key>" when guests are allowed, else
 * 400, which ends the handshake (counted as refused_handshake). libzmq then
 * attaches the User-Id to every message from that connection, so the ROUTER
 * reads the authenticated sender from zmq_msg_gets(msg, "User-Id") and never
 * from the bytes. The predicate is asked again for every message, so removing
 * a key stops its traffic at once, and a guest whose key became trusted
 * (a joiner just admitted) is delivered as that key without reconnecting.
 *
 * ## Edge-trigger handling
 * ZMQ_FD only signals that the socket's command mailbox changed, and any
 * zmq_send/zmq_recv/ZMQ_EVENTS call may consume that signal. node/zmq_watch.c
 * is the one adapter that wires a socket into libev: an ev_io on ZMQ_FD, an
 * ev_check and an ev_idle. When the fd fires it asks ZMQ_EVENTS and, while
 * POLLIN, calls the reader, which reads with ZMQ_DONTWAIT until EAGAIN or
 * recv_batch messages. Every send (also a failed one) calls
 * zmq_watch_after_send, because a send can eat the edge of a message that is
 * already waiting: it marks the watch pending and starts the ev_idle, which
 * only keeps the next poll from blocking; the ev_check, which runs after
 * every poll and so cannot be starved, asks ZMQ_EVENTS again and reads. When
 * the read budget runs out the same mark brings the loop back without
 * blocking, so one busy socket cannot starve timers and other sockets. Owner
 * callbacks never run in the prepare phase, so a node may flush its own
 * queues from an ev_prepare. tests/unit/transport checks each rule and fails
 * without it: bursts of 10,000 messages each way (also read one message at a
 * time, with a fence around the prepare phase), a guest echo of 10,000, and
 * raw sockets that send only from outside their readers.
 *
 * ## Queue bounds
 * Nothing blocks and nothing grows without bound:
 *   - each DEALER queues at most peer_queue_msgs (ZMQ_SNDHWM), also while the
 *     peer is down (ZMQ_IMMEDIATE=0 keeps the queue across reconnects); a send
 *     beyond that fails at once with NX_ERR_FULL and counts
 *     dropped_queue_full. Callers treat the network as lossy (gossip and Raft
 *     retransmit), so a drop is a delay, not a loss of safety;
 *   - the ROUTER holds at most recv_queue_msgs per connection (ZMQ_RCVHWM);
 *     beyond that libzmq stops reading the socket and TCP pushes back on
 *     the sender, whose own queue then fills and drops;
 *   - every socket has ZMQ_MAXMSGSIZE = max_msg_bytes: a larger send fails
 *     with NX_ERR_TOO_BIG (oversize counter); a larger incoming message makes
 *     libzmq drop that connection (the sender reconnects, the message is gone);
 *   - the loop reads at most recv_batch messages per socket per wakeup;
 *   - guests (unknown keys, when allowed) are admitted at most
 *     guest_handshakes_per_s per second (a token bucket in the ZAP handler),
 *     so a flood of fresh keys cannot grow the ROUTER's connections freely;
 *     beyond it they get 400 and count refused_guest_rate.
 *
 * ## Connections a node holds
 * One ROUTER (listening; one inbound connection per peer or guest that talks
 * to us) plus one DEALER per active peer (with its monitor PAIR: three zmq
 * sockets, one TCP connection), at most max_connections DEALERs:
 * when a send needs a new DEALER and the limit is reached, the least recently
 * used one is closed (its queue gets linger_ms to flush) and reopened on its
 * next send. Reopening is not free: a fresh CURVE connection took 3-12 ms to
 * deliver its first message on loopback here, against 0.5 ms without CURVE
 * (bench/transport), so max_connections should cover the peers a node talks
 * to steadily (Raft peers, gossip fan-out) and eviction serve the long tail.
 * An evicted DEALER keeps its zmq socket until its queue is flushed (or
 * linger_ms passed), so the context allows max_connections * (3 + 2) + 16
 * sockets: three per open peer and room for two lingering ones per allowed
 * connection. When churn fills that room, a send that needs a new connection
 * fails with NX_ERR_FULL (dropped_no_socket) instead of growing further. Each
 * zmq socket holds one eventfd and each connection one TCP socket: with the
 * default 64 connections budget about 400 descriptors for the transport. ZeroMQ reconnects
 * DEALERs on its own (reconnect_ivl_ms doubling up to reconnect_ivl_max_ms), heartbeats
 * (heartbeat_ivl_ms) notice peers that vanished without a FIN, so a peer restarted at the same
 * address is reached again with no action from us; a peer that moved is updated with
 * node_transport_peer_set, which closes the old DEALER. One case libzmq 4.3
 * does not redial: a failed handshake (the peer's ZAP said 400 because it
 * does not trust us yet). Each DEALER therefore carries a socket monitor
 * (an inproc PAIR, also watched by the loop); on a handshake failure we close
 * the DEALER and the next send after a backoff (reconnect_ivl_ms doubling to
 * reconnect_ivl_max_ms; sends before it fail fast, dropped_backoff) dials
 * afresh, so a node that starts before the others trust it gets through as
 * soon as they do. The peer table itself holds at most max_peers keys.
 *
 * Invariants:
 *   1. A peer slot has dealer != NULL iff its watch is active; open_count is
 *      the number of such slots and never exceeds max_connections.
 *   2. Every zmq socket call happens on the loop thread.
 *   3. The peer index maps each used slot's key to that slot, and nothing else.
 */
#include "node/transport.h"

#include <errno.h>
#include <ev.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "node/zmq_watch.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_DOMAIN "nexus"
/* ZAP request: version, request id, domain, address, identity, mechanism, key. */
#define ZAP_REQUEST_FRAMES 7
#define GUEST_PREFIX "guest:"
/* "guest:" + 64 hex + NUL. */
#define USER_ID_MAX (sizeof GUEST_PREFIX + 2 * NODE_TRANSPORT_PK_BYTES)
/* ZeroMQ routing ids are at most 255 bytes. */
#define ROUTING_ID_MAX 255
#define ZAP_BATCH 64
/* Client-side handshake events: a failure ends the connection for good in libzmq 4.3. */
#define HANDSHAKE_FAILED_EVENTS                                                                    \
    (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |                  \
     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
/* Sockets per open peer: the DEALER, the monitor's PAIR and our PAIR. */
#define SOCKETS_PER_PEER 3
/*
 * A closed DEALER keeps its zmq socket slot until its queue flushed or
 * linger_ms passed. The context gets room for this many lingering DEALERs per
 * allowed connection; beyond it a new connection waits (NX_ERR_FULL).
 */
#define LINGERING_PER_CONNECTION 2
/* The ROUTER, the ZAP REP, and slack. */
#define SOCKETS_FIXED 16

struct peer {
    bool used;
    uint8_t pk[NODE_TRANSPORT_PK_BYTES];
    uint8_t curve_pk[crypto_box_PUBLICKEYBYTES];
    char endpoint[NODE_TRANSPORT_ENDPOINT_MAX];
    void *dealer;  /* owned zmq socket, or NULL while not connected */
    void *monitor; /* owned PAIR reading the DEALER's handshake events */
    struct zmq_watch watch, monitor_watch;
    double retry_at;     /* ev_now() before which a refused peer is not redialed */
    uint32_t backoff_ms; /* next wait after a refused handshake */
    bool connected;      /* handshake done and not disconnected since (monitor events) */
    uint64_t last_use;   /* tp->use_tick at the last send/receive: LRU order */
    struct node_transport *tp;
};

struct node_transport {
    struct ev_loop *loop; /* borrowed */
    void *zctx;           /* owned zmq context */
    void *router;         /* owned */
    void *zap;            /* owned */
    struct zmq_watch router_watch, zap_watch;
    uint8_t *curve_sk; /* sodium_malloc, crypto_box_SECRETKEYBYTES */
    uint8_t curve_pk[crypto_box_PUBLICKEYBYTES];
    struct node_trust trust;
    bool guests_allowed;
    node_transport_on_message_fn on_message;
    void *on_message_ctx;
    struct node_transport_limits lim;
    struct peer *peers; /* owned, lim.max_peers slots */
    uint32_t *index;    /* owned; open addressing: slot + 1, 0 = empty */
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    size_t index_mask; /* index size - 1 (a power of two >= 2 * max_peers) */
    size_t peer_count;
    size_t open_count;
    uint64_t use_tick;
    uint64_t monitor_seq;   /* makes monitor endpoint names unique */
    double guest_tokens;    /* guest admissions available now */
    double guest_tokens_at; /* ev_now() of the last refill */
    int in_callback;
    char endpoint[NODE_TRANSPORT_ENDPOINT_MAX];
    struct node_transport_counters c;
};

/* ---- Curve25519 -> Ed25519 public key ----------------------------------
 *
 * Field arithmetic mod p = 2^255 - 19 in five 51-bit limbs. Only public keys
 * pass through here, so nothing needs to be constant-time.
 */
#define FE_MASK ((UINT64_C(1) << 51) - 1)

static uint64_t load64_le(const uint8_t *s)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | s[i];
    return v;
}

static void store64_le(uint8_t *s, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        s[i] = (uint8_t)(v >> (8 * i));
}

static void fe_load(uint64_t h[5], const uint8_t s[32])
{
    uint64_t w0 = load64_le(s), w1 = load64_le(s + 8), w2 = load64_le(s + 16),
             w3 = load64_le(s + 24);
    h[0] = w0 & FE_MASK;
    h[1] = (w0 >> 51 | w1 << 13) & FE_MASK;
    h[2] = (w1 >> 38 | w2 << 26) & FE_MASK;
    h[3] = (w2 >> 25 | w3 << 39) & FE_MASK;
    h[4] = (w3 >> 12) & FE_MASK; /* bit 255 dropped, as X25519 does */
}

static void fe_carry(uint64_t h[5])
{
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 4; i++) {
            h[i + 1] += h[i] >> 51;
            h[i] &= FE_MASK;
        }
        h[0] += 19 * (h[4] >> 51);
        h[4] &= FE_MASK;
    }
}

/* Canonical little-endian encoding of h mod p. */
static void fe_store(uint8_t s[32], const uint64_t in[5])
{
    uint64_t h[5];
    memcpy(h, in, sizeof h);
    fe_carry(h); /* now h < 2^255 */
    uint64_t t[5];
    t[0] = h[0] + 19;
    for (int i = 0; i < 4; i++) {
        t[i + 1] = h[i + 1] + (t[i] >> 51);
        t[i] &= FE_MASK;
    }
    if (t[4] >> 51) { /* h >= p: h - p = h + 19 - 2^255 */
        t[4] &= FE_MASK;
        memcpy(h, t, sizeof h);
    }
    store64_le(s, h[0] | h[1] << 51);
    store64_le(s + 8, h[1] >> 13 | h[2] << 38);
    store64_le(s + 16, h[2] >> 26 | h[3] << 25);
    store64_le(s + 24, h[3] >> 39 | h[4] << 12);
}

static void fe_mul(uint64_t r[5], const uint64_t a[5], const uint64_t b[5])
{
    typedef unsigned __int128 u128;
    uint64_t b19[5];
    for (int i = 0; i < 5; i++)
        b19[i] = 19 * b[i];
    u128 t0 = (u128)a[0] * b[0] + (u128)a[1] * b19[4] + (u128)a[2] * b19[3] + (u128)a[3] * b19[2] +
              (u128)a[4] * b19[1];
    u128 t1 = (u128)a[0] * b[1] + (u128)a[1] * b[0] + (u128)a[2] * b19[4] + (u128)a[3] * b19[3] +
              (u128)a[4] * b19[2];
    u128 t2 = (u128)a[0] * b[2] + (u128)a[1] * b[1] + (u128)a[2] * b[0] + (u128)a[3] * b19[4] +
              (u128)a[4] * b19[3];
    u128 t3 = (u128)a[0] * b[3] + (u128)a[1] * b[2] + (u128)a[2] * b[1] + (u128)a[3] * b[0] +
              (u128)a[4] * b19[4];
    u128 t4 = (u128)a[0] * b[4] + (u128)a[1] * b[3] + (u128)a[2] * b[2] + (u128)a[3] * b[1] +
              (u128)a[4] * b[0];
    t1 += t0 >> 51;
    t2 += t1 >> 51;
    t3 += t2 >> 51;
    t4 += t3 >> 51;
    u128 x = ((uint64_t)t0 & FE_MASK) + (t4 >> 51) * 19;
    r[0] = (uint64_t)x & FE_MASK;
    r[1] = ((uint64_t)t1 & FE_MASK) + (uint64_t)(x >> 51);
    r[2] = (uint64_t)t2 & FE_MASK;
    r[3] = (uint64_t)t3 & FE_MASK;
    r[4] = (uint64_t)t4 & FE_MASK;
}

/* r = a^(p-2) = 1/a (0 for a = 0). p - 2 = 2^255 - 21: bits 254..0 set but 4 and 2. */
static void fe_invert(uint64_t r[5], const uint64_t a[5])
{
    uint64_t acc[5] = {1, 0, 0, 0, 0};
    for (int bit = 254; bit >= 0; bit--) {
        fe_mul(acc, acc, acc);
        if (bit != 4 && bit != 2)
            fe_mul(acc, acc, a);
    }
    memcpy(r, acc, sizeof acc);
}

int node_transport_curve_to_ed25519(uint8_t out[2][NODE_TRANSPORT_PK_BYTES],
                                    const uint8_t curve_pk[NODE_TRANSPORT_PK_BYTES])
{
    static const uint8_t zero[32];
    /* 2p limbs, so that a - b stays positive for carried inputs. */
    static const uint64_t two_p[5] = {(UINT64_C(1) << 52) - 38, (UINT64_C(1) << 52) - 2,
                                      (UINT64_C(1) << 52) - 2, (UINT64_C(1) << 52) - 2,
                                      (UINT64_C(1) << 52) - 2};
    uint64_t u[5], num[5], den[5], inv[5], y[5];
    fe_load(u, curve_pk);
    /* Ed25519 y = (u - 1) / (u + 1); libsodium maps the other way, u = (1 + y) / (1 - y). */
    for (int i = 0; i < 5; i++) {
        num[i] = u[i] + two_p[i];
        den[i] = u[i];
    }
    num[0] -= 1;
    den[0] += 1;
    fe_carry(num);
    fe_carry(den);
    uint8_t den_bytes[32];
    fe_store(den_bytes, den);
    if (sodium_memcmp(den_bytes, zero, sizeof zero) == 0)
        return NX_ERR_INVAL; /* u = -1 has no Edwards image */
    fe_invert(inv, den);
    fe_mul(y, num, inv);
    fe_store(out[0], y);
    memcpy(out[1], out[0], NODE_TRANSPORT_PK_BYTES);
    out[1][31] |= 0x80; /* the other sign of x */
    return NX_OK;
}

/* ---- limits and small helpers ------------------------------------------ */

void node_transport_limits_default(struct node_transport_limits *l)
{
    *l = (struct node_transport_limits){
        .max_peers = NODE_TRANSPORT_MAX_PEERS_DEFAULT,
        .max_connections = NODE_TRANSPORT_MAX_CONNECTIONS_DEFAULT,
        .max_msg_bytes = NODE_TRANSPORT_MAX_MSG_BYTES_DEFAULT,
        .peer_queue_msgs = NODE_TRANSPORT_PEER_QUEUE_MSGS_DEFAULT,
        .recv_queue_msgs = NODE_TRANSPORT_RECV_QUEUE_MSGS_DEFAULT,
        .linger_ms = NODE_TRANSPORT_LINGER_MS_DEFAULT,
        .reconnect_ivl_ms = NODE_TRANSPORT_RECONNECT_IVL_MS_DEFAULT,
        .reconnect_ivl_max_ms = NODE_TRANSPORT_RECONNECT_IVL_MAX_MS_DEFAULT,
        .heartbeat_ivl_ms = NODE_TRANSPORT_HEARTBEAT_IVL_MS_DEFAULT,
        .heartbeat_timeout_ms = NODE_TRANSPORT_HEARTBEAT_TIMEOUT_MS_DEFAULT,
        .recv_batch = NODE_TRANSPORT_RECV_BATCH_DEFAULT,
        .guest_handshakes_per_s = NODE_TRANSPORT_GUEST_HANDSHAKES_PER_S_DEFAULT,
    };
}

/* Fills zero fields with defaults and checks the caps. */
static int limits_resolve(struct node_transport_limits *out, const struct node_transport_limits *in)
{
    struct node_transport_limits d;
    node_transport_limits_default(&d);
    *out = *in;
#define TAKE_DEFAULT(field)                                                                        \
    do {                                                                                           \
        if (out->field == 0)                                                                       \
            out->field = d.field;                                                                  \
    } while (0)
    TAKE_DEFAULT(max_peers);
    TAKE_DEFAULT(max_connections);
    TAKE_DEFAULT(max_msg_bytes);
    TAKE_DEFAULT(peer_queue_msgs);
    TAKE_DEFAULT(recv_queue_msgs);
    TAKE_DEFAULT(linger_ms);
    TAKE_DEFAULT(reconnect_ivl_ms);
    TAKE_DEFAULT(reconnect_ivl_max_ms);
    TAKE_DEFAULT(heartbeat_ivl_ms);
    TAKE_DEFAULT(heartbeat_timeout_ms);
    TAKE_DEFAULT(recv_batch);
    TAKE_DEFAULT(guest_handshakes_per_s);
#undef TAKE_DEFAULT
    if (out->max_peers > NODE_TRANSPORT_MAX_PEERS_CAP ||
        out->max_msg_bytes > NODE_TRANSPORT_MAX_MSG_BYTES_CAP ||
        out->peer_queue_msgs > NODE_TRANSPORT_QUEUE_MSGS_CAP ||
        out->recv_queue_msgs > NODE_TRANSPORT_QUEUE_MSGS_CAP || out->linger_ms > INT32_MAX ||
        out->reconnect_ivl_ms > INT32_MAX || out->reconnect_ivl_max_ms > INT32_MAX ||
        out->heartbeat_ivl_ms > INT32_MAX || out->heartbeat_timeout_ms > INT32_MAX ||
        out->guest_handshakes_per_s > NODE_TRANSPORT_GUEST_HANDSHAKES_PER_S_CAP)
        return NX_ERR_INVAL;
    if (out->max_connections > out->max_peers)
        out->max_connections = out->max_peers;
    return NX_OK;
}

static int set_int(void *sock, int option, int value)
{
    if (zmq_setsockopt(sock, option, &value, sizeof value) != 0) {
        NX_ERROR("transport_sockopt", "option=%d err=\"%s\"", option, zmq_strerror(zmq_errno()));
        return NX_ERR_IO;
    }
    return NX_OK;
}

/* Options every socket gets: bounded size, queues, linger, heartbeats. */
static int set_common_opts(const struct node_transport *tp, void *sock, int sndhwm, int rcvhwm)
{
    int64_t max = tp->lim.max_msg_bytes;
    if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof max) != 0) {
        NX_ERROR("transport_sockopt", "option=maxmsgsize err=\"%s\"", zmq_strerror(zmq_errno()));
        return NX_ERR_IO;
    }
    int rc = set_int(sock, ZMQ_LINGER, (int)tp->lim.linger_ms);
    if (rc == NX_OK)
        rc = set_int(sock, ZMQ_SNDHWM, sndhwm);
    if (rc == NX_OK)
        rc = set_int(sock, ZMQ_RCVHWM, rcvhwm);
    if (rc == NX_OK)
        rc = set_int(sock, ZMQ_HEARTBEAT_IVL, (int)tp->lim.heartbeat_ivl_ms);
    if (rc == NX_OK)
        rc = set_int(sock, ZMQ_HEARTBEAT_TIMEOUT, (int)tp->lim.heartbeat_timeout_ms);
    return rc;
}

static void close_socket(void **sock)
{
    if (*sock != NULL) {
        zmq_close(*sock);
        *sock = NULL;
    }
}

/*
 * zmq_socket, telling "every socket slot is taken" (NX_ERR_FULL: closed
 * DEALERs are still flushing) from real failures (NX_ERR_IO).
 */
static int new_socket(struct node_transport *tp, int type, void **out)
{
    *out = zmq_socket(tp->zctx, type);
    if (*out != NULL)
        return NX_OK;
    if (zmq_errno() == EMFILE) {
        tp->c.dropped_no_socket++;
        return NX_ERR_FULL;
    }
    NX_ERROR("transport_socket", "err=\"%s\"", zmq_strerror(zmq_errno()));
    return NX_ERR_IO;
}

/* ---- peer table --------------------------------------------------------- */

/*
 * Keyed (SipHash) so that a joiner grinding its key cannot lengthen probe
 * chains: keys are chosen by their owners, not by us.
 */
static size_t pk_hash(const struct node_transport *tp, const uint8_t pk[NODE_TRANSPORT_PK_BYTES])
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, pk, NODE_TRANSPORT_PK_BYTES, tp->hash_key);
    return (size_t)load64_le(h);
}

static struct peer *peer_find(const struct node_transport *tp,
                              const uint8_t pk[NODE_TRANSPORT_PK_BYTES])
{
    for (size_t i = pk_hash(tp, pk) & tp->index_mask;; i = (i + 1) & tp->index_mask) {
        uint32_t v = tp->index[i];
        if (v == 0)
            return NULL;
        struct peer *p = &tp->peers[v - 1];
        if (memcmp(p->pk, pk, NODE_TRANSPORT_PK_BYTES) == 0)
            return p;
    }
}

static void index_insert(struct node_transport *tp, uint32_t slot)
{
    size_t i = pk_hash(tp, tp->peers[slot].pk) & tp->index_mask;
    while (tp->index[i] != 0)
        i = (i + 1) & tp->index_mask;
    tp->index[i] = slot + 1;
}

/* Removals are rare: rebuild the index rather than shift probe chains. */
static void index_rebuild(struct node_transport *tp)
{
    memset(tp->index, 0, (tp->index_mask + 1) * sizeof *tp->index);
    for (uint32_t s = 0; s < tp->lim.max_peers; s++) {
        if (tp->peers[s].used)
            index_insert(tp, s);
    }
}

static void peer_disconnect(struct node_transport *tp, struct peer *p)
{
    if (p->dealer == NULL)
        return;
    /* Detach the monitor first: the DEALER may still flush its queue for linger_ms. */
    zmq_socket_monitor(p->dealer, NULL, 0);
    zmq_watch_stop(&p->monitor_watch);
    close_socket(&p->monitor);
    zmq_watch_stop(&p->watch);
    close_socket(&p->dealer);
    p->connected = false;
    NX_ASSERT(tp->open_count > 0);
    tp->open_count--;
}

static void evict_lru(struct node_transport *tp, const struct peer *keep)
{
    struct peer *lru = NULL;
    for (uint32_t s = 0; s < tp->lim.max_peers; s++) {
        struct peer *p = &tp->peers[s];
        if (p->dealer != NULL && p != keep && (lru == NULL || p->last_use < lru->last_use))
            lru = p;
    }
    NX_ASSERT(lru != NULL);
    char hex[2 * NODE_TRANSPORT_PK_BYTES + 1];
    nx_hex_encode(hex, lru->pk, NODE_TRANSPORT_PK_BYTES);
    NX_DEBUG("transport_evict", "peer=%.16s endpoint=%s", hex, lru->endpoint);
    peer_disconnect(tp, lru);
    tp->c.connections_evicted++;
}

static void deliver(struct node_transport *tp, const uint8_t *sender_pk, const char *guest_route,
                    zmq_msg_t *body)
{
    tp->c.received++;
    if (sender_pk == NULL)
        tp->c.received_guest++;
    tp->in_callback++;
    tp->on_message(tp->on_message_ctx, sender_pk, guest_route, zmq_msg_data(body),
                   zmq_msg_size(body));
    tp->in_callback--;
}

/* After a failed first read: tells the watch when it was EAGAIN (nothing left). */
static void note_empty(struct zmq_watch *w)
{
    if (zmq_errno() == EAGAIN)
        zmq_watch_drained(w);
}

/* Reads the rest of a multipart message we do not want. */
static void discard_more(void *sock, zmq_msg_t *last)
{
    while (zmq_msg_more(last)) {
        zmq_msg_close(last);
        zmq_msg_init(last);
        if (zmq_msg_recv(last, sock, ZMQ_DONTWAIT) < 0)
            return;
    }
}

/* DEALER reader: only guest replies and ROUTER answers come this way. */
static void dealer_readable(struct zmq_watch *w)
{
    struct peer *p = w->ctx;
    struct node_transport *tp = p->tp;
    void *sock = w->sock;
    for (uint32_t n = 0; n < tp->lim.recv_batch; n++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) < 0) {
            note_empty(w);
            zmq_msg_close(&msg);
            return;
        }
        if (zmq_msg_more(&msg)) {
            tp->c.dropped_malformed++;
            discard_more(sock, &msg);
        } else {
            p->last_use = ++tp->use_tick;
            /* The server key pinned on this DEALER authenticates the sender. */
            uint8_t pk[NODE_TRANSPORT_PK_BYTES];
            memcpy(pk, p->pk, sizeof pk);
            deliver(tp, pk, NULL, &msg);
        }
        zmq_msg_close(&msg);
        if (p->dealer != sock)
            return; /* closed or replaced from inside the callback */
    }
}

/*
 * Handshake events of one DEALER. libzmq 4.3 does not redial after a failed
 * handshake (a ZAP 400 from a peer that does not trust us yet, a wrong server
 * key): the connection is gone for good. So on failure we close the DEALER and
 * let the next send open a fresh one, after a backoff that doubles up to
 * reconnect_ivl_max_ms and resets on the next successful handshake.
 */
static void monitor_readable(struct zmq_watch *w)
{
    struct peer *p = w->ctx;
    struct node_transport *tp = p->tp;
    void *sock = w->sock;
    for (int n = 0; n < ZAP_BATCH; n++) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, sock, ZMQ_DONTWAIT) < 0) {
            note_empty(w);
            zmq_msg_close(&ev);
            return;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&ev) >= sizeof event)
            memcpy(&event, zmq_msg_data(&ev), sizeof event);
        discard_more(sock, &ev); /* the endpoint frame */
        zmq_msg_close(&ev);
        if (event & ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            p->backoff_ms = tp->lim.reconnect_ivl_ms;
            p->connected = true;
        } else if (event & ZMQ_EVENT_DISCONNECTED) {
            p->connected = false; /* libzmq redials on its own */
        } else if (event & HANDSHAKE_FAILED_EVENTS) {
            tp->c.handshake_failed++;
            p->retry_at = ev_now(tp->loop) + p->backoff_ms / 1000.0;
            p->backoff_ms = p->backoff_ms * 2 < tp->lim.reconnect_ivl_max_ms
                                ? p->backoff_ms * 2
                                : tp->lim.reconnect_ivl_max_ms;
            NX_INFO("transport_handshake_failed", "endpoint=%s event=%u retry_ms=%u", p->endpoint,
                    event, (unsigned)((p->retry_at - ev_now(tp->loop)) * 1000));
            peer_disconnect(tp, p);
            return; /* sock is closed */
        }
    }
}

/* Attaches a monitor to dealer before it connects, so no event is missed. */
static int monitor_open(struct node_transport *tp, struct peer *p, void *dealer)
{
    char name[64];
    snprintf(name, sizeof name, "inproc://nx-monitor-%llu", (unsigned long long)tp->monitor_seq++);
    int events = HANDSHAKE_FAILED_EVENTS | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED;
    if (zmq_socket_monitor(dealer, name, events) != 0) {
        if (zmq_errno() == EMFILE) { /* its PAIR found no free slot */
            tp->c.dropped_no_socket++;
            return NX_ERR_FULL;
        }
        goto err;
    }
    int rc = new_socket(tp, ZMQ_PAIR, &p->monitor);
    if (rc != NX_OK)
        goto err_stop;
    if (set_int(p->monitor, ZMQ_LINGER, 0) != NX_OK || zmq_connect(p->monitor, name) != 0)
        goto err_close;
    if (zmq_watch_start(&p->monitor_watch, tp->loop, p->monitor, monitor_readable, p) != NX_OK)
        goto err_close;
    return NX_OK;

err_close:
    close_socket(&p->monitor);
err:
    NX_ERROR("transport_monitor", "err=\"%s\"", zmq_strerror(zmq_errno()));
    rc = NX_ERR_IO;
err_stop:
    zmq_socket_monitor(dealer, NULL, 0);
    return rc;
}

static int peer_connect(struct node_transport *tp, struct peer *p)
{
    void *sock = NULL;
    int rc = new_socket(tp, ZMQ_DEALER, &sock);
    if (rc != NX_OK)
        return rc;
    rc = set_common_opts(tp, sock, (int)tp->lim.peer_queue_msgs, (int)tp->lim.peer_queue_msgs);
    if (rc == NX_OK)
        rc = set_int(sock, ZMQ_RECONNECT_IVL, (int)tp->lim.reconnect_ivl_ms);
    if (rc == NX_OK)
        rc = set_int(sock, ZMQ_RECONNECT_IVL_MAX, (int)tp->lim.reconnect_ivl_max_ms);
    if (rc != NX_OK)
        goto err_close;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, p->curve_pk, sizeof p->curve_pk) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, tp->curve_pk, sizeof tp->curve_pk) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, tp->curve_sk, crypto_box_SECRETKEYBYTES) != 0) {
        NX_ERROR("transport_curve", "err=\"%s\"", zmq_strerror(zmq_errno()));
        rc = NX_ERR_IO;
        goto err_close;
    }
    rc = monitor_open(tp, p, sock);
    if (rc != NX_OK)
        goto err_close;
    if (zmq_connect(sock, p->endpoint) != 0) {
        NX_ERROR("transport_connect", "endpoint=%s err=\"%s\"", p->endpoint,
                 zmq_strerror(zmq_errno()));
        rc = NX_ERR_IO;
        goto err_close_monitor;
    }
    rc = zmq_watch_start(&p->watch, tp->loop, sock, dealer_readable, p);
    if (rc != NX_OK)
        goto err_close_monitor;
    /* Evict only now: a connection that could not be set up costs nobody theirs. */
    if (tp->open_count >= tp->lim.max_connections)
        evict_lru(tp, p);
    p->dealer = sock;
    tp->open_count++;
    tp->c.connections_opened++;
    return NX_OK;

err_close_monitor:
    zmq_socket_monitor(sock, NULL, 0);
    zmq_watch_stop(&p->monitor_watch);
    close_socket(&p->monitor);
err_close:
    zmq_close(sock);
    return rc;
}

static bool endpoint_valid(const char *endpoint)
{
    if (endpoint == NULL)
        return false;
    size_t len = strnlen(endpoint, NODE_TRANSPORT_ENDPOINT_MAX);
    return len > 0 && len < NODE_TRANSPORT_ENDPOINT_MAX &&
           (strncmp(endpoint, "tcp://", 6) == 0 || strncmp(endpoint, "ipc://", 6) == 0);
}

int node_transport_peer_set(struct node_transport *tp, const uint8_t pk[NODE_TRANSPORT_PK_BYTES],
                            const char *endpoint)
{
    NX_ASSERT(tp != NULL && pk != NULL);
    if (!endpoint_valid(endpoint))
        return NX_ERR_INVAL;
    struct peer *p = peer_find(tp, pk);
    if (p != NULL) {
        if (strcmp(p->endpoint, endpoint) != 0) {
            peer_disconnect(tp, p);
            p->retry_at = 0; /* a new address: dial at once */
            snprintf(p->endpoint, sizeof p->endpoint, "%s", endpoint);
        }
        return NX_OK;
    }
    uint8_t curve_pk[crypto_box_PUBLICKEYBYTES];
    if (crypto_sign_ed25519_pk_to_curve25519(curve_pk, pk) != 0)
        return NX_ERR_INVAL; /* not a valid Ed25519 point */
    if (tp->peer_count >= tp->lim.max_peers)
        return NX_ERR_FULL;
    uint32_t slot = 0;
    while (tp->peers[slot].used)
        slot++;
    p = &tp->peers[slot];
    memset(p, 0, sizeof *p);
    p->used = true;
    p->tp = tp;
    memcpy(p->pk, pk, NODE_TRANSPORT_PK_BYTES);
    memcpy(p->curve_pk, curve_pk, sizeof curve_pk);
    p->backoff_ms = tp->lim.reconnect_ivl_ms;
    snprintf(p->endpoint, sizeof p->endpoint, "%s", endpoint);
    index_insert(tp, slot);
    tp->peer_count++;
    return NX_OK;
}

int node_transport_peer_remove(struct node_transport *tp, const uint8_t pk[NODE_TRANSPORT_PK_BYTES])
{
    NX_ASSERT(tp != NULL && pk != NULL);
    struct peer *p = peer_find(tp, pk);
    if (p == NULL)
        return NX_ERR_NOT_FOUND;
    peer_disconnect(tp, p);
    p->used = false;
    tp->peer_count--;
    index_rebuild(tp);
    return NX_OK;
}

bool node_transport_peer_known(const struct node_transport *tp,
                               const uint8_t pk[NODE_TRANSPORT_PK_BYTES])
{
    return peer_find(tp, pk) != NULL;
}

bool node_transport_peer_connected(const struct node_transport *tp,
                                   const uint8_t pk[NODE_TRANSPORT_PK_BYTES])
{
    const struct peer *p = peer_find(tp, pk);
    return p != NULL && p->connected;
}

/* ---- sending ------------------------------------------------------------ */

/* Maps a failed zmq_send to a result and a counter. */
static int send_failed(struct node_transport *tp, const char *what)
{
    int e = zmq_errno();
    if (e == EAGAIN) {
        tp->c.dropped_queue_full++;
        return NX_ERR_FULL;
    }
    if (e == EHOSTUNREACH) {
        tp->c.unknown_peer++;
        return NX_ERR_NOT_FOUND;
    }
    tp->c.send_errors++;
    NX_WARN("transport_send_failed", "to=%s err=\"%s\"", what, zmq_strerror(e));
    return NX_ERR_IO;
}

int node_transport_send(struct node_transport *tp, const uint8_t pk[NODE_TRANSPORT_PK_BYTES],
                        const uint8_t *data, size_t len)
{
    NX_ASSERT(tp != NULL && pk != NULL && (data != NULL || len == 0));
    if (len > tp->lim.max_msg_bytes) {
        tp->c.oversize++;
        return NX_ERR_TOO_BIG;
    }
    struct peer *p = peer_find(tp, pk);
    if (p == NULL) {
        tp->c.unknown_peer++;
        return NX_ERR_NOT_FOUND;
    }
    if (p->dealer == NULL && ev_now(tp->loop) < p->retry_at) {
        tp->c.dropped_backoff++; /* it refused our handshake a moment ago */
        return NX_ERR_UNAVAILABLE;
    }
    if (p->dealer == NULL) {
        int rc = peer_connect(tp, p);
        if (rc != NX_OK) {
            if (rc != NX_ERR_FULL) /* FULL is counted as dropped_no_socket */
                tp->c.send_errors++;
            return rc;
        }
    }
    p->last_use = ++tp->use_tick;
    int sent = zmq_send(p->dealer, data, len, ZMQ_DONTWAIT);
    int rc = sent < 0 ? send_failed(tp, "peer") : NX_OK;
    zmq_watch_after_send(&p->watch); /* the send may have eaten a read edge */
    if (rc == NX_OK)
        tp->c.sent++;
    return rc;
}

int node_transport_reply_guest(struct node_transport *tp, const char *guest_route,
                               const uint8_t *data, size_t len)
{
    NX_ASSERT(tp != NULL && (data != NULL || len == 0));
    if (len > tp->lim.max_msg_bytes) {
        tp->c.oversize++;
        return NX_ERR_TOO_BIG;
    }
    uint8_t rid[ROUTING_ID_MAX];
    size_t hex_len = guest_route != NULL ? strnlen(guest_route, 2 * ROUTING_ID_MAX + 1) : 0;
    if (hex_len == 0 || hex_len % 2 != 0 || hex_len > 2 * ROUTING_ID_MAX ||
        nx_hex_decode(rid, hex_len / 2, guest_route) != NX_OK) {
        tp->c.unknown_peer++;
        return NX_ERR_NOT_FOUND;
    }
    int rc = NX_OK;
    /* ROUTER_MANDATORY: EHOSTUNREACH for a gone guest, EAGAIN for a full queue. */
    if (zmq_send(tp->router, rid, hex_len / 2, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(tp->router, data, len, ZMQ_DONTWAIT) < 0)
        rc = send_failed(tp, "guest");
    zmq_watch_after_send(&tp->router_watch);
    if (rc == NX_OK)
        tp->c.sent++;
    return rc;
}

/* ---- receiving on the ROUTER -------------------------------------------- */

static bool trusted_either(const struct node_transport *tp,
                           uint8_t cand[2][NODE_TRANSPORT_PK_BYTES], const uint8_t **which)
{
    for (int i = 0; i < 2; i++) {
        if (node_trust_check(&tp->trust, cand[i])) {
            *which = cand[i];
            return true;
        }
    }
    return false;
}

/* Decides who sent body from its User-Id and hands it on, or drops and counts. */
static void router_dispatch(struct node_transport *tp, zmq_msg_t *rid, zmq_msg_t *body)
{
    const char *uid = zmq_msg_gets(body, "User-Id");
    size_t uid_len = uid != NULL ? strlen(uid) : 0;
    uint8_t cand[2][NODE_TRANSPORT_PK_BYTES];
    if (uid_len == 2 * NODE_TRANSPORT_PK_BYTES &&
        nx_hex_decode(cand[0], NODE_TRANSPORT_PK_BYTES, uid) == NX_OK) {
        if (!node_trust_check(&tp->trust, cand[0])) {
            tp->c.dropped_untrusted++; /* trusted at the handshake, revoked since */
            return;
        }
        deliver(tp, cand[0], NULL, body);
        return;
    }
    size_t prefix = strlen(GUEST_PREFIX);
    if (uid_len != prefix + 2 * NODE_TRANSPORT_PK_BYTES ||
        strncmp(uid, GUEST_PREFIX, prefix) != 0 ||
        nx_hex_decode(cand[0], NODE_TRANSPORT_PK_BYTES, uid + prefix) != NX_OK) {
        tp->c.dropped_malformed++;
        return;
    }
    memcpy(cand[1], cand[0], NODE_TRANSPORT_PK_BYTES);
    cand[1][31] |= 0x80;
    const uint8_t *pk = NULL;
    if (trusted_either(tp, cand, &pk)) {
        deliver(tp, pk, NULL, body); /* admitted since it connected as a guest */
        return;
    }
    if (!tp->guests_allowed) {
        tp->c.dropped_guest++;
        return;
    }
    char route[NODE_TRANSPORT_GUEST_ROUTE_MAX];
    size_t rid_len = zmq_msg_size(rid);
    if (rid_len == 0 || rid_len > ROUTING_ID_MAX) {
        tp->c.dropped_malformed++;
        return;
    }
    nx_hex_encode(route, zmq_msg_data(rid), rid_len);
    deliver(tp, NULL, route, body);
}

static void router_readable(struct zmq_watch *w)
{
    struct node_transport *tp = w->ctx;
    for (uint32_t n = 0; n < tp->lim.recv_batch; n++) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, tp->router, ZMQ_DONTWAIT) < 0) {
            note_empty(w);
            zmq_msg_close(&rid);
            return;
        }
        zmq_msg_init(&body);
        if (!zmq_msg_more(&rid) || zmq_msg_recv(&body, tp->router, ZMQ_DONTWAIT) < 0) {
            tp->c.dropped_malformed++;
        } else if (zmq_msg_more(&body)) {
            tp->c.dropped_malformed++; /* we send single frames only */
            discard_more(tp->router, &body);
        } else {
            router_dispatch(tp, &rid, &body);
        }
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
    }
}

/* ---- ZAP handler ------------------------------------------------------------ */

static bool frame_is(zmq_msg_t *m, const char *s)
{
    size_t len = strlen(s);
    return zmq_msg_size(m) == len && memcmp(zmq_msg_data(m), s, len) == 0;
}

/*
 * Token bucket over guest admissions: unknown keys are free to make, so a
 * flood of guests would otherwise grow the ROUTER's connections without bound.
 */
static bool guest_token_take(struct node_transport *tp)
{
    double now = ev_now(tp->loop), rate = tp->lim.guest_handshakes_per_s;
    tp->guest_tokens += (now - tp->guest_tokens_at) * rate;
    if (tp->guest_tokens > rate)
        tp->guest_tokens = rate;
    tp->guest_tokens_at = now;
    if (tp->guest_tokens < 1.0) {
        tp->c.refused_guest_rate++;
        return false;
    }
    tp->guest_tokens -= 1.0;
    return true;
}

/* Decides one ZAP request: fills status and user_id. */
static void zap_decide(struct node_transport *tp, zmq_msg_t *f, int nframes, const char **status,
                       char user_id[USER_ID_MAX])
{
    *status = "400";
    user_id[0] = '\0';
    if (nframes != ZAP_REQUEST_FRAMES || !frame_is(&f[0], "1.0") || !frame_is(&f[5], "CURVE") ||
        zmq_msg_size(&f[6]) != crypto_box_PUBLICKEYBYTES) {
        tp->c.refused_handshake++;
        return;
    }
    uint8_t cand[2][NODE_TRANSPORT_PK_BYTES];
    const uint8_t *pk = NULL;
    bool mapped = node_transport_curve_to_ed25519(cand, zmq_msg_data(&f[6])) == NX_OK;
    if (mapped && trusted_either(tp, cand, &pk)) {
        *status = "200";
        nx_hex_encode(user_id, pk, NODE_TRANSPORT_PK_BYTES);
        tp->c.accepted_handshake++;
        return;
    }
    if (mapped && tp->guests_allowed && guest_token_take(tp)) {
        *status = "200";
        memcpy(user_id, GUEST_PREFIX, strlen(GUEST_PREFIX));
        nx_hex_encode(user_id + strlen(GUEST_PREFIX), cand[0], NODE_TRANSPORT_PK_BYTES);
        tp->c.accepted_guest++;
        return;
    }
    tp->c.refused_handshake++;
    /* A refused client may keep dialing: log the 1st, 2nd, 4th, 8th... refusal only. */
    if ((tp->c.refused_handshake & (tp->c.refused_handshake - 1)) == 0) {
        char hex[2 * NODE_TRANSPORT_PK_BYTES + 1];
        nx_hex_encode(hex, zmq_msg_data(&f[6]), NODE_TRANSPORT_PK_BYTES);
        NX_INFO("transport_refused", "curve_key=%.16s guest=%d refused_total=%llu", hex,
                mapped && tp->guests_allowed, (unsigned long long)tp->c.refused_handshake);
    }
}

static void zap_reply(void *zap, zmq_msg_t *request_id, const char *status, const char *user_id)
{
    const char *text = status[0] == '2' ? "OK" : "not trusted";
    zmq_send(zap, "1.0", 3, ZMQ_SNDMORE);
    if (request_id != NULL)
        zmq_send(zap, zmq_msg_data(request_id), zmq_msg_size(request_id), ZMQ_SNDMORE);
    else
        zmq_send(zap, "", 0, ZMQ_SNDMORE);
    zmq_send(zap, status, strlen(status), ZMQ_SNDMORE);
    zmq_send(zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(zap, user_id, strlen(user_id), ZMQ_SNDMORE);
    zmq_send(zap, "", 0, 0); /* metadata: none */
}

static void zap_readable(struct zmq_watch *w)
{
    struct node_transport *tp = w->ctx;
    for (int n = 0; n < ZAP_BATCH; n++) {
        zmq_msg_t f[ZAP_REQUEST_FRAMES + 1];
        int nframes = 0;
        zmq_msg_init(&f[0]);
        if (zmq_msg_recv(&f[0], tp->zap, ZMQ_DONTWAIT) < 0) {
            note_empty(w);
            zmq_msg_close(&f[0]);
            return;
        }
        nframes = 1;
        while (zmq_msg_more(&f[nframes - 1]) && nframes < ZAP_REQUEST_FRAMES + 1) {
            zmq_msg_init(&f[nframes]);
            if (zmq_msg_recv(&f[nframes], tp->zap, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&f[nframes]);
                break;
            }
            nframes++;
        }
        discard_more(tp->zap, &f[nframes - 1]);
        const char *status;
        char user_id[USER_ID_MAX];
        zap_decide(tp, f, nframes, &status, user_id);
        /* REP must answer every request, even a malformed one. */
        zap_reply(tp->zap, nframes >= 2 ? &f[1] : NULL, status, user_id);
        zmq_watch_after_send(w);
        for (int i = 0; i < nframes; i++)
            zmq_msg_close(&f[i]);
    }
}

/* ---- create and close --------------------------------------------------------- */

static int derive_keys(struct node_transport *tp, const uint8_t *ed25519_sk)
{
    tp->curve_sk = sodium_malloc(crypto_box_SECRETKEYBYTES);
    if (tp->curve_sk == NULL)
        return NX_ERR_NOMEM;
    if (crypto_sign_ed25519_sk_to_curve25519(tp->curve_sk, ed25519_sk) != 0 ||
        crypto_sign_ed25519_pk_to_curve25519(tp->curve_pk, ed25519_sk + crypto_sign_SECRETKEYBYTES -
                                                               crypto_sign_PUBLICKEYBYTES) != 0)
        return NX_ERR_INVAL;
    return NX_OK;
}

static int open_zap(struct node_transport *tp)
{
    tp->zap = zmq_socket(tp->zctx, ZMQ_REP);
    if (tp->zap == NULL)
        return NX_ERR_IO;
    int rc = set_int(tp->zap, ZMQ_LINGER, 0);
    if (rc != NX_OK)
        return rc;
    if (zmq_bind(tp->zap, ZAP_ENDPOINT) != 0) {
        NX_ERROR("transport_zap_bind", "err=\"%s\"", zmq_strerror(zmq_errno()));
        return NX_ERR_IO;
    }
    return zmq_watch_start(&tp->zap_watch, tp->loop, tp->zap, zap_readable, tp);
}

static int open_router(struct node_transport *tp, const char *bind_endpoint)
{
    tp->router = zmq_socket(tp->zctx, ZMQ_ROUTER);
    if (tp->router == NULL)
        return NX_ERR_IO;
    int rc =
        set_common_opts(tp, tp->router, (int)tp->lim.peer_queue_msgs, (int)tp->lim.recv_queue_msgs);
    if (rc == NX_OK)
        rc = set_int(tp->router, ZMQ_CURVE_SERVER, 1);
    if (rc == NX_OK)
        rc = set_int(tp->router, ZMQ_ROUTER_MANDATORY, 1);
    if (rc != NX_OK)
        return rc;
    if (zmq_setsockopt(tp->router, ZMQ_CURVE_SECRETKEY, tp->curve_sk, crypto_box_SECRETKEYBYTES) !=
            0 ||
        zmq_setsockopt(tp->router, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN)) != 0)
        return NX_ERR_IO;
    if (zmq_bind(tp->router, bind_endpoint) != 0) {
        NX_ERROR("transport_bind", "endpoint=%s err=\"%s\"", bind_endpoint,
                 zmq_strerror(zmq_errno()));
        return NX_ERR_IO;
    }
    size_t len = sizeof tp->endpoint;
    if (zmq_getsockopt(tp->router, ZMQ_LAST_ENDPOINT, tp->endpoint, &len) != 0)
        return NX_ERR_IO;
    return zmq_watch_start(&tp->router_watch, tp->loop, tp->router, router_readable, tp);
}

int node_transport_create(struct node_transport **out, const struct node_transport_config *cfg)
{
    NX_ASSERT(out != NULL && cfg != NULL);
    if (cfg->loop == NULL || cfg->ed25519_sk == NULL || cfg->bind_endpoint == NULL ||
        cfg->on_message == NULL)
        return NX_ERR_INVAL;
    if (sodium_init() < 0)
        return NX_ERR_INTERNAL;
    struct node_transport *tp = calloc(1, sizeof *tp);
    if (tp == NULL)
        return NX_ERR_NOMEM;
    int rc = limits_resolve(&tp->lim, &cfg->limits);
    if (rc != NX_OK)
        goto err_free;
    tp->loop = cfg->loop;
    tp->trust = cfg->trust;
    tp->guests_allowed = cfg->guests_allowed;
    tp->guest_tokens = tp->lim.guest_handshakes_per_s;
    tp->guest_tokens_at = ev_now(tp->loop);
    tp->on_message = cfg->on_message;
    tp->on_message_ctx = cfg->on_message_ctx;
    size_t index_size = 1;
    while (index_size < 2 * (size_t)tp->lim.max_peers)
        index_size <<= 1;
    tp->index_mask = index_size - 1;
    crypto_shorthash_keygen(tp->hash_key);
    tp->index = calloc(index_size, sizeof *tp->index);
    tp->peers = calloc(tp->lim.max_peers, sizeof *tp->peers);
    rc = NX_ERR_NOMEM;
    if (tp->index == NULL || tp->peers == NULL)
        goto err_free;
    rc = derive_keys(tp, cfg->ed25519_sk);
    if (rc != NX_OK)
        goto err_free;
    rc = NX_ERR_IO;
    tp->zctx = zmq_ctx_new();
    if (tp->zctx == NULL)
        goto err_free;
    int max_sockets = (int)tp->lim.max_connections * (SOCKETS_PER_PEER + LINGERING_PER_CONNECTION) +
                      SOCKETS_FIXED;
    if (zmq_ctx_set(tp->zctx, ZMQ_MAX_SOCKETS, max_sockets) != 0)
        goto err_close;
    rc = open_zap(tp); /* before the ROUTER: no handshake may pass unchecked */
    if (rc != NX_OK)
        goto err_close;
    rc = open_router(tp, cfg->bind_endpoint);
    if (rc != NX_OK)
        goto err_close;
    NX_INFO("transport_listening", "endpoint=%s guests=%d max_peers=%u max_connections=%u",
            tp->endpoint, tp->guests_allowed, tp->lim.max_peers, tp->lim.max_connections);
    *out = tp;
    return NX_OK;

err_close:
    node_transport_close(tp);
    return rc;
err_free:
    sodium_free(tp->curve_sk);
    free(tp->peers);
    free(tp->index);
    free(tp);
    return rc;
}

void node_transport_close(struct node_transport *tp)
{
    if (tp == NULL)
        return;
    NX_ASSERT(tp->in_callback == 0); /* closing from on_message would free the caller's frame */
    for (uint32_t s = 0; s < tp->lim.max_peers; s++)
        peer_disconnect(tp, &tp->peers[s]);
    zmq_watch_stop(&tp->router_watch);
    zmq_watch_stop(&tp->zap_watch);
    close_socket(&tp->router);
    close_socket(&tp->zap);
    if (tp->zctx != NULL)
        zmq_ctx_term(tp->zctx); /* waits at most linger_ms per socket */
    sodium_free(tp->curve_sk);
    free(tp->peers);
    free(tp->index);
    free(tp);
}

/* ---- accessors ------------------------------------------------------------- */

void node_transport_set_guests_allowed(struct node_transport *tp, bool allowed)
{
    tp->guests_allowed = allowed;
}

const char *node_transport_endpoint(const struct node_transport *tp)
{
    return tp->endpoint;
}

uint16_t node_transport_port(const struct node_transport *tp)
{
    if (strncmp(tp->endpoint, "tcp://", 6) != 0)
        return 0;
    const char *colon = strrchr(tp->endpoint, ':');
    if (colon == NULL)
        return 0;
    char *end = NULL;
    unsigned long port = strtoul(colon + 1, &end, 10);
    return (end != colon + 1 && *end == '\0' && port <= UINT16_MAX) ? (uint16_t)port : 0;
}

size_t node_transport_connection_count(const struct node_transport *tp)
{
    return tp->open_count;
}

size_t node_transport_peer_count(const struct node_transport *tp)
{
    return tp->peer_count;
}

void node_transport_counters_get(const struct node_transport *tp,
                                 struct node_transport_counters *out)
{
    *out = tp->c;
}
