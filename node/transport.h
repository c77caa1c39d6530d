/*
 * transport.h - moves opaque byte messages between nodes over ZeroMQ + CURVE.
 *
 * Owns: one zmq context per transport, one ROUTER bound to the node's address
 * (CURVE server, with a ZAP handler that admits trusted keys and, when
 * enabled, guests), one DEALER per active peer (CURVE client), the peer table
 * (Ed25519 key -> endpoint) with a bound on open connections (least recently
 * used DEALERs are closed first), and the transport counters.
 *
 * Never touches: message contents. It neither signs, verifies nor parses the
 * bytes it carries (NCAP envelopes come from proto/), and it never blocks: a
 * send that finds the peer's queue full drops the message and counts it.
 *
 * Identity: every message handed to on_message carries the Ed25519 key the
 * CURVE handshake authenticated (or NULL for a guest), never a claim taken
 * from the bytes.
 *
 * Delivery: at most once. Messages to one peer arrive in order while its
 * connection lasts; a dropped connection loses what was in flight, and an
 * evicted connection still flushing its queue may deliver next to its
 * replacement, so order across a reconnect is not guaranteed.
 *
 * Threading: every function, and the callback, runs on the thread that runs
 * the libev loop given at creation. Nothing here is thread-safe.
 */
#ifndef NODE_TRANSPORT_H
#define NODE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "node/trust.h"

struct ev_loop;
struct node_transport;

#define NODE_TRANSPORT_PK_BYTES 32
#define NODE_TRANSPORT_SK_BYTES 64 /* libsodium Ed25519 secret key (seed || pk) */
/* Longest endpoint string, NUL included ("tcp://[v6 address]:port"). */
#define NODE_TRANSPORT_ENDPOINT_MAX 256
/* Longest guest route handle, NUL included (hex of a ZeroMQ routing id <= 255 bytes). */
#define NODE_TRANSPORT_GUEST_ROUTE_MAX 512

/* Defaults and hard caps of the limits below. */
#define NODE_TRANSPORT_MAX_PEERS_DEFAULT 1024
#define NODE_TRANSPORT_MAX_PEERS_CAP 65536
#define NODE_TRANSPORT_MAX_CONNECTIONS_DEFAULT 64
#define NODE_TRANSPORT_MAX_MSG_BYTES_DEFAULT (4u << 20)
#define NODE_TRANSPORT_MAX_MSG_BYTES_CAP (64u << 20)
#define NODE_TRANSPORT_PEER_QUEUE_MSGS_DEFAULT 1000
#define NODE_TRANSPORT_RECV_QUEUE_MSGS_DEFAULT 10000
#define NODE_TRANSPORT_QUEUE_MSGS_CAP 1000000
#define NODE_TRANSPORT_LINGER_MS_DEFAULT 200
#define NODE_TRANSPORT_RECONNECT_IVL_MS_DEFAULT 100
#define NODE_TRANSPORT_RECONNECT_IVL_MAX_MS_DEFAULT 5000
#define NODE_TRANSPORT_HEARTBEAT_IVL_MS_DEFAULT 2000
#define NODE_TRANSPORT_HEARTBEAT_TIMEOUT_MS_DEFAULT 6000
#define NODE_TRANSPORT_RECV_BATCH_DEFAULT 256
#define NODE_TRANSPORT_GUEST_HANDSHAKES_PER_S_DEFAULT 20
#define NODE_TRANSPORT_GUEST_HANDSHAKES_PER_S_CAP 100000

/*
 * Every bound the transport keeps. A zero field means "use the default".
 * Worst-case queued memory is about
 *   max_connections * peer_queue_msgs * max_msg_bytes  (outgoing)
 *   + recv_queue_msgs * max_msg_bytes                  (incoming)
 * so keep messages small (chunk snapshots) or lower the queues.
 */
struct node_transport_limits {
    uint32_t max_peers;              /* entries in the peer table */
    uint32_t max_connections;        /* open DEALERs; the least recently used is closed beyond */
    uint32_t max_msg_bytes;          /* larger sends fail, larger receives cut the connection */
    uint32_t peer_queue_msgs;        /* ZMQ_SNDHWM per DEALER: queued messages before drops */
    uint32_t recv_queue_msgs;        /* ZMQ_RCVHWM of the ROUTER */
    uint32_t linger_ms;              /* ZMQ_LINGER: how long close waits to flush */
    uint32_t reconnect_ivl_ms;       /* ZMQ_RECONNECT_IVL */
    uint32_t reconnect_ivl_max_ms;   /* ZMQ_RECONNECT_IVL_MAX (exponential backoff cap) */
    uint32_t heartbeat_ivl_ms;       /* ZMQ_HEARTBEAT_IVL: detects silently dead peers */
    uint32_t heartbeat_timeout_ms;   /* ZMQ_HEARTBEAT_TIMEOUT */
    uint32_t recv_batch;             /* messages read per socket before yielding to the loop */
    uint32_t guest_handshakes_per_s; /* guest admissions per second (burst of as many) */
};

/* Fills l with the defaults above. */
void node_transport_limits_default(struct node_transport_limits *l);

/*
 * Called for every received message, on the loop thread.
 *   sender_pk    the authenticated Ed25519 key of a trusted sender, or NULL for a guest.
 *                Messages that come back on our own connection to a peer (a
 *                host answering us while we are its guest) carry that peer's
 *                key: the server key we dialed authenticated it, trusted or not.
 *   guest_route  for a guest: an opaque NUL-terminated handle for
 *                node_transport_reply_guest (valid for the call only; copy it to
 *                keep it); NULL for a trusted sender
 *   data, len    the message; borrowed for the call
 * The callback may send, reply, add and remove peers, but must not close
 * the transport (that aborts: it would free the caller's frame).
 */
typedef void (*node_transport_on_message_fn)(void *ctx, const uint8_t *sender_pk,
                                             const char *guest_route, const uint8_t *data,
                                             size_t len);

struct node_transport_config {
    struct ev_loop *loop;                    /* borrowed; outlives the transport */
    const uint8_t *ed25519_sk;               /* borrowed for the create call; 64 bytes */
    const char *bind_endpoint;               /* borrowed for the call; "tcp://127.0.0.1:7001",
                                                port 0 or '*' picks a free port */
    struct node_trust trust;                 /* copied; trust.ctx borrowed for the lifetime */
    bool guests_allowed;                     /* admit unknown keys as guests */
    node_transport_on_message_fn on_message; /* required */
    void *on_message_ctx;                    /* borrowed */
    struct node_transport_limits limits;     /* zero fields take defaults */
};

struct node_transport_counters {
    uint64_t sent;                /* messages accepted by node_transport_send / reply_guest */
    uint64_t received;            /* messages handed to on_message */
    uint64_t received_guest;      /* ... of which from guests */
    uint64_t dropped_queue_full;  /* send found the peer's queue at its bound */
    uint64_t refused_handshake;   /* ZAP answered 400: unknown key, guests not allowed */
    uint64_t accepted_handshake;  /* ZAP answered 200 for a trusted key */
    uint64_t accepted_guest;      /* ZAP answered 200 "guest" */
    uint64_t dropped_untrusted;   /* message from a key no longer trusted */
    uint64_t dropped_guest;       /* message from a guest while guests are not allowed */
    uint64_t dropped_malformed;   /* wrong frame count or bad User-Id metadata */
    uint64_t unknown_peer;        /* send or reply to a key/route we do not know */
    uint64_t oversize;            /* send refused: larger than max_msg_bytes */
    uint64_t send_errors;         /* other zmq_send failures */
    uint64_t connections_opened;  /* DEALERs created */
    uint64_t connections_evicted; /* DEALERs closed because of max_connections */
    uint64_t handshake_failed;    /* our DEALER's handshake failed (the peer refused us) */
    uint64_t dropped_backoff;     /* send to a peer that refused us, before its retry time */
    uint64_t refused_guest_rate;  /* over guest_handshakes_per_s (also in refused_handshake) */
    uint64_t dropped_no_socket;   /* send needed a new connection while closed ones still flush */
};

/*
 * Creates a transport: derives the CURVE key pair from cfg->ed25519_sk, binds
 * the ROUTER and starts the ZAP handler. *out is owned by the caller (free
 * with node_transport_close). NX_ERR_INVAL on a bad config, NX_ERR_IO when
 * the bind fails (the message names the endpoint and errno text).
 */
int node_transport_create(struct node_transport **out,
                          const struct node_transport_config *cfg) NX_MUST_USE;

/*
 * Closes every socket (waiting at most linger_ms for queued messages), wipes
 * the secret keys and frees tp. NULL is fine. Not from inside on_message.
 */
void node_transport_close(struct node_transport *tp);

/*
 * Adds a peer or updates its endpoint ("tcp://host:port", borrowed for the
 * call). The connection opens on the first send. Changing the endpoint closes
 * the old connection. NX_ERR_FULL when the table holds max_peers entries.
 */
int node_transport_peer_set(struct node_transport *tp, const uint8_t pk[NODE_TRANSPORT_PK_BYTES],
                            const char *endpoint) NX_MUST_USE;

/* Forgets a peer and closes its connection. NX_ERR_NOT_FOUND when unknown. */
int node_transport_peer_remove(struct node_transport *tp,
                               const uint8_t pk[NODE_TRANSPORT_PK_BYTES]) NX_MUST_USE;

bool node_transport_peer_known(const struct node_transport *tp,
                               const uint8_t pk[NODE_TRANSPORT_PK_BYTES]);

/*
 * True while our connection to the peer has completed its CURVE handshake and
 * not dropped since (for status pages; it lags reality by a heartbeat at most
 * when the peer vanishes without closing). False for unknown peers.
 */
bool node_transport_peer_connected(const struct node_transport *tp,
                                   const uint8_t pk[NODE_TRANSPORT_PK_BYTES]);

/*
 * Queues len bytes (borrowed for the call; copied) for the peer. Never blocks.
 * 0 when queued; NX_ERR_NOT_FOUND for an unknown peer, NX_ERR_TOO_BIG above
 * max_msg_bytes, NX_ERR_FULL when the peer's queue is at its bound or when
 * a new connection is needed while too many evicted ones still flush (the
 * message is dropped and counted), NX_ERR_UNAVAILABLE while waiting to redial
 * a peer that refused our handshake (dropped and counted), NX_ERR_IO on other
 * failures.
 */
int node_transport_send(struct node_transport *tp, const uint8_t pk[NODE_TRANSPORT_PK_BYTES],
                        const uint8_t *data, size_t len) NX_MUST_USE;

/*
 * Sends to a guest through the handle on_message gave (borrowed for the call).
 * Same results as node_transport_send; NX_ERR_NOT_FOUND when the guest is gone.
 */
int node_transport_reply_guest(struct node_transport *tp, const char *guest_route,
                               const uint8_t *data, size_t len) NX_MUST_USE;

/* Turns guest admission on or off; existing guest connections stay, their messages drop. */
void node_transport_set_guests_allowed(struct node_transport *tp, bool allowed);

/* The endpoint actually bound, e.g. "tcp://127.0.0.1:40123". Owned by tp. */
const char *node_transport_endpoint(const struct node_transport *tp);
/* Its port; 0 when the endpoint is not tcp. */
uint16_t node_transport_port(const struct node_transport *tp);

/* Number of DEALERs currently open (<= max_connections). */
size_t node_transport_connection_count(const struct node_transport *tp);
/* Number of peers in the table (<= max_peers). */
size_t node_transport_peer_count(const struct node_transport *tp);

void node_transport_counters_get(const struct node_transport *tp,
                                 struct node_transport_counters *out);

/*
 * Maps a Curve25519 (Montgomery) public key back to the two Ed25519 public
 * keys it can come from (they differ only in the sign bit). The ZAP handler
 * uses this to ask the Ed25519 trust predicate about a CURVE client key; it is
 * public for tests. 0, or NX_ERR_INVAL for the one u with no Edwards image.
 */
int node_transport_curve_to_ed25519(uint8_t out[2][NODE_TRANSPORT_PK_BYTES],
                                    const uint8_t curve_pk[NODE_TRANSPORT_PK_BYTES]) NX_MUST_USE;

#endif
