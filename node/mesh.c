/*
 * mesh.c - peers, signed pings and the one path every message takes.
 *
 * Outgoing: mesh_send() seals a body in an NCAP envelope (our key, our
 * cluster, the next sequence number, the wall clock) and hands the frame to
 * the transport, which never blocks.
 *
 * Incoming: the transport gives us a frame plus the Ed25519 key the CURVE
 * handshake authenticated. ncap_open() checks it (cluster, recipient, trust,
 * time window, replay window, signature); we also require that the envelope's
 * signer is the key that authenticated the connection, so one member cannot
 * relay another's envelopes as its own. Then we dispatch on the type.
 *
 * PING/PONG: the body of a PING is the sender's monotonic clock in µs (8
 * bytes, little-endian); the PONG echoes it, and the round trip is measured
 * against the same clock, so clocks of different machines never mix.
 */
#include "mesh.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ncap.h"
#include "transport.h"
#include "trust.h"

#define PING_BODY_BYTES 8
#define RTT_SAMPLES 256 /* recent round trips kept per peer for p50/p99 */

struct peer {
    uint8_t pk[NODE_PK_BYTES];
    char id_hex[NODE_ID_HEX_LEN + 1];
    char address[NODE_ADDR_MAX];
    uint64_t last_heard_ms; /* monotonic, 0 = never */
    int64_t rtt_us;         /* last measured, -1 = none */
    uint32_t rtt_ring[RTT_SAMPLES];
    uint32_t rtt_count; /* samples in the ring, at most RTT_SAMPLES */
    uint32_t rtt_next;
    uint64_t pings_sent, pongs, pings_received;
};

struct mesh {
    struct ev_loop *loop;
    const struct node_identity *id;
    uint8_t cluster_id[NODE_CLUSTER_ID_BYTES];
    struct node_trust_file *trust;    /* the trust file, plus keys a join taught us */
    struct node_trust_file *admitted; /* the registry's members (NULL until it is read) */
    struct node_trust_file *removed; /* the registry's removed nodes: refused even if in the file */
    struct ncap_verifier *verifier;
    struct ncap_sender seqs;
    struct node_transport *tp;
    struct peer peers[NODE_MAX_STATIC_PEERS];
    size_t n_peers;
    ev_timer ping_timer;
    struct {
        uint32_t type;
        mesh_handler_fn fn;
        void *ctx;
    } handlers[MESH_MAX_HANDLERS];
    size_t n_handlers;
    mesh_guest_fn guest_fn;
    void *guest_ctx;
    uint64_t guest_dropped, guest_wrong_cluster;
    uint64_t sender_mismatch, unexpected_type, send_failed, seal_failed;
};

static struct peer *peer_find(struct mesh *m, const uint8_t pk[NODE_PK_BYTES])
{
    for (size_t i = 0; i < m->n_peers; i++)
        if (memcmp(m->peers[i].pk, pk, NODE_PK_BYTES) == 0)
            return &m->peers[i];
    return NULL;
}

/* The one trust rule (docs/ARCHITECTURE.md "Trust"): the transport and the
 * envelope verifier both ask it, for every handshake and every message. */
static bool trusted(const struct mesh *m, const uint8_t pk[NODE_PK_BYTES])
{
    if (m->removed && node_trust_file_contains(m->removed, pk))
        return false;
    return node_trust_file_contains(m->trust, pk) ||
           (m->admitted && node_trust_file_contains(m->admitted, pk));
}

static bool trust_cb(void *ctx, const uint8_t pk[NCAP_KEY_BYTES])
{
    return trusted(ctx, pk);
}

void mesh_trust_registry_set(struct mesh *m, struct node_trust_file *admitted,
                             struct node_trust_file *removed)
{
    node_trust_file_free(m->admitted);
    node_trust_file_free(m->removed);
    m->admitted = admitted;
    m->removed = removed;
}

int mesh_trust_add(struct mesh *m, const uint8_t pk[NODE_PK_BYTES])
{
    if (node_trust_file_contains(m->trust, pk))
        return NX_OK;
    return node_trust_file_add(m->trust, pk);
}

static int set_transport_peer(struct mesh *m, const uint8_t pk[NODE_PK_BYTES], const char *addr)
{
    char endpoint[NODE_ADDR_MAX + 8];
    snprintf(endpoint, sizeof endpoint, "tcp://%.*s", NODE_ADDR_MAX - 1, addr);
    return node_transport_peer_set(m->tp, pk, endpoint);
}

/* Seals body for `to` and hands the frame to the transport: to the peer's
 * connection, or with guest_route on the connection a guest opened to us. */
static int seal_and_send(struct mesh *m, const uint8_t to[NODE_PK_BYTES], const char *guest_route,
                         uint32_t type, const uint8_t *body, size_t len)
{
    struct ncap_header h;
    ncap_header_init(&h, m->cluster_id, m->id->pk, to, type, ncap_sender_next_seq(&m->seqs),
                     nx_clock_wall_ms());
    uint8_t *frame;
    size_t frame_len;
    int rc = ncap_seal(&h, body, len, m->id->sk, &frame, &frame_len);
    if (rc != NX_OK) {
        m->seal_failed++;
        return rc;
    }
    rc = guest_route ? node_transport_reply_guest(m->tp, guest_route, frame, frame_len)
                     : node_transport_send(m->tp, to, frame, frame_len);
    free(frame);
    if (rc != NX_OK)
        m->send_failed++;
    return rc;
}

int mesh_send(struct mesh *m, const uint8_t to[NODE_PK_BYTES], const char *addr, uint32_t type,
              const uint8_t *body, size_t len)
{
    if (addr) {
        int rc = set_transport_peer(m, to, addr);
        if (rc != NX_OK) {
            m->send_failed++;
            return rc;
        }
    }
    return seal_and_send(m, to, NULL, type, body, len);
}

int mesh_set_handler(struct mesh *m, uint32_t type, mesh_handler_fn fn, void *ctx)
{
    if (m->n_handlers == MESH_MAX_HANDLERS)
        return NX_ERR_FULL;
    m->handlers[m->n_handlers].type = type;
    m->handlers[m->n_handlers].fn = fn;
    m->handlers[m->n_handlers].ctx = ctx;
    m->n_handlers++;
    return NX_OK;
}

void mesh_clear_handler(struct mesh *m, uint32_t type)
{
    for (size_t i = 0; i < m->n_handlers; i++) {
        if (m->handlers[i].type == type) {
            m->handlers[i] = m->handlers[--m->n_handlers];
            return;
        }
    }
}

bool mesh_trusts(const struct mesh *m, const uint8_t pk[NODE_PK_BYTES])
{
    return trusted(m, pk);
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void on_ping_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct mesh *m = w->data;
    uint8_t body[PING_BODY_BYTES];
    for (size_t i = 0; i < m->n_peers; i++) {
        put_u64le(body, nx_clock_mono_us());
        if (mesh_send(m, m->peers[i].pk, NULL, NCAP_MSG_PING, body, sizeof body) == NX_OK)
            m->peers[i].pings_sent++;
    }
}

static void handle_pong(struct mesh *m, const struct ncap_msg *msg)
{
    struct peer *p = peer_find(m, msg->h.sender);
    if (p == NULL || msg->body_len != PING_BODY_BYTES)
        return;
    uint64_t sent_us = get_u64le(msg->body), now_us = nx_clock_mono_us();
    if (sent_us > now_us)
        return; /* not our clock: a confused or hostile peer */
    p->rtt_us = (int64_t)(now_us - sent_us);
    p->rtt_ring[p->rtt_next] = p->rtt_us > UINT32_MAX ? UINT32_MAX : (uint32_t)p->rtt_us;
    p->rtt_next = (p->rtt_next + 1) % RTT_SAMPLES;
    if (p->rtt_count < RTT_SAMPLES)
        p->rtt_count++;
    p->pongs++;
    p->last_heard_ms = now_us / 1000;
    NX_DEBUG("pong", "peer=%.16s rtt_us=%lld", p->id_hex, (long long)p->rtt_us);
}

void mesh_set_guest_handler(struct mesh *m, mesh_guest_fn fn, void *ctx)
{
    m->guest_fn = fn;
    m->guest_ctx = ctx;
    node_transport_set_guests_allowed(m->tp, fn != NULL);
}

int mesh_reply_guest(struct mesh *m, const char *route, const uint8_t to[NODE_PK_BYTES],
                     uint32_t type, const uint8_t *body, size_t len)
{
    return seal_and_send(m, to, route, type, body, len);
}

/* A guest (a key nobody trusts yet): the verifier lets only a JOIN_REQUEST through. */
static void on_guest_message(struct mesh *m, const char *route, const uint8_t *data, size_t len)
{
    struct ncap_msg msg;
    if (m->guest_fn == NULL) {
        m->guest_dropped++;
        return;
    }
    int rc = ncap_open(m->verifier, data, len, nx_clock_wall_ms(), &msg);
    if (rc == NX_ERR_WRONG_CLUSTER) { /* a token of another cluster: say so in our log */
        m->guest_wrong_cluster++;
        NX_WARN("join_refused", "reason=\"other cluster\" count=%llu",
                (unsigned long long)m->guest_wrong_cluster);
    }
    if (rc != NX_OK)
        return; /* counted by the verifier */
    if (msg.guest && msg.h.type == NCAP_MSG_JOIN_REQUEST)
        m->guest_fn(m->guest_ctx, msg.h.sender, route, msg.body, msg.body_len);
    else
        m->guest_dropped++; /* a member on a guest connection: it has its own */
    ncap_msg_free(&msg);
}

static void on_message(void *ctx, const uint8_t *sender_pk, const char *guest_route,
                       const uint8_t *data, size_t len)
{
    struct mesh *m = ctx;
    struct ncap_msg msg;
    if (sender_pk == NULL) {
        if (guest_route)
            on_guest_message(m, guest_route, data, len);
        return;
    }
    if (ncap_open(m->verifier, data, len, nx_clock_wall_ms(), &msg) != NX_OK)
        return; /* counted by the transport or the verifier */
    if (memcmp(msg.h.sender, sender_pk, NODE_PK_BYTES) != 0) {
        m->sender_mismatch++;
        goto out;
    }
    struct peer *p = peer_find(m, msg.h.sender);
    if (p)
        p->last_heard_ms = nx_clock_mono_ms();
    switch (msg.h.type) {
    case NCAP_MSG_PING:
        if (p)
            p->pings_received++;
        if (mesh_send(m, msg.h.sender, NULL, NCAP_MSG_PONG, msg.body, msg.body_len) != NX_OK)
            NX_DEBUG("pong_dropped", "peer=%.16s", p ? p->id_hex : "?");
        break;
    case NCAP_MSG_PONG:
        handle_pong(m, &msg);
        break;
    default:
        for (size_t i = 0; i < m->n_handlers; i++) {
            if (m->handlers[i].type == msg.h.type) {
                m->handlers[i].fn(m->handlers[i].ctx, msg.h.sender, msg.body, msg.body_len);
                goto out;
            }
        }
        m->unexpected_type++;
        break;
    }
out:
    ncap_msg_free(&msg);
}

/* Parses "HEXPK@HOST:PORT" into a peer; err gets the reason. */
static int peer_parse(struct peer *p, const char *spec, size_t len, char *err, size_t cap)
{
    char text[NODE_ID_HEX_LEN + 1 + NODE_ADDR_MAX];
    if (len >= sizeof text)
        goto bad;
    memcpy(text, spec, len);
    text[len] = '\0';
    char *at = strchr(text, '@');
    if (at == NULL || at - text != NODE_ID_HEX_LEN)
        goto bad;
    *at = '\0';
    char host[NODE_ADDR_MAX];
    uint16_t port;
    if (nx_hex_decode(p->pk, NODE_PK_BYTES, text) != NX_OK ||
        node_addr_split(at + 1, host, sizeof host, &port) != NX_OK)
        goto bad;
    memcpy(p->id_hex, text, NODE_ID_HEX_LEN + 1);
    snprintf(p->address, sizeof p->address, "%s", at + 1);
    p->rtt_us = -1;
    return NX_OK;
bad:
    snprintf(err, cap, "bad --peer '%.*s' (expected NODEID@HOST:PORT, NODEID 64 hex chars)",
             (int)(len > 200 ? 200 : len), spec);
    return NX_ERR_INVAL;
}

static int add_peers(struct mesh *m, const char *list, char *err, size_t cap)
{
    for (const char *s = list; s && *s;) {
        size_t len = strcspn(s, "\n");
        if (m->n_peers == NODE_MAX_STATIC_PEERS) {
            snprintf(err, cap, "too many --peer options (at most %d)", NODE_MAX_STATIC_PEERS);
            return NX_ERR_TOO_BIG;
        }
        struct peer *p = &m->peers[m->n_peers];
        int rc = peer_parse(p, s, len, err, cap);
        if (rc != NX_OK)
            return rc;
        rc = set_transport_peer(m, p->pk, p->address);
        if (rc != NX_OK) {
            snprintf(err, cap, "cannot add peer %s: %s", p->address, nx_strerror(rc));
            return rc;
        }
        if (!node_trust_file_contains(m->trust, p->pk))
            NX_WARN("peer_untrusted", "peer=%.16s address=%s hint=\"add its id to the trust file\"",
                    p->id_hex, p->address);
        m->n_peers++;
        s += len;
        if (*s == '\n')
            s++;
    }
    return NX_OK;
}

static int load_trust(struct mesh *m, const char *path, char *err, size_t cap)
{
    int rc = node_trust_file_new(&m->trust);
    if (rc != NX_OK)
        return rc;
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        NX_WARN("trust_file_missing", "path=%s trusted=0", path);
        return NX_OK;
    }
    fclose(f);
    rc = node_trust_file_load(m->trust, path, err, cap);
    if (rc == NX_OK)
        NX_INFO("trust_file", "path=%s trusted=%zu", path, node_trust_file_count(m->trust));
    return rc;
}

static int start_transport(struct mesh *m, const char *bind, char *err, size_t cap)
{
    char endpoint[NODE_ADDR_MAX + 8];
    snprintf(endpoint, sizeof endpoint, "tcp://%s", bind);
    struct node_transport_config tc = {
        .loop = m->loop,
        .ed25519_sk = m->id->sk,
        .bind_endpoint = endpoint,
        .trust = {.is_trusted = trust_cb, .ctx = m},
        .guests_allowed = false,
        .on_message = on_message,
        .on_message_ctx = m,
    };
    int rc = node_transport_create(&m->tp, &tc);
    if (rc != NX_OK)
        snprintf(err, cap, "cannot start the transport on %s: %s", bind, nx_strerror(rc));
    return rc;
}

int mesh_start(struct mesh **out, struct ev_loop *loop, const struct node_identity *id,
               const uint8_t cluster_id[NODE_CLUSTER_ID_BYTES], const struct mesh_config *cfg,
               char *err, size_t cap)
{
    struct mesh *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NX_ERR_NOMEM;
    m->loop = loop;
    m->id = id;
    memcpy(m->cluster_id, cluster_id, NODE_CLUSTER_ID_BYTES);
    ncap_sender_init(&m->seqs, nx_clock_wall_ms() * 1000);
    int rc = load_trust(m, cfg->trust_file, err, cap);
    if (rc != NX_OK)
        goto fail;
    /*
     * Envelopes stamped before we started are refused from senders we have not
     * heard since, so nothing captured before a restart can be replayed to us.
     * A peer whose clock lags ours by d is refused for the first d after start.
     */
    struct ncap_verifier_config vc = {
        .is_trusted = trust_cb,
        .trust_ctx = m,
        .new_sender_floor_ms = nx_clock_wall_ms(),
        .allow_guest_join = true, /* only JOIN_REQUESTs; dropped without a guest handler */
    };
    memcpy(vc.cluster_id, cluster_id, NODE_CLUSTER_ID_BYTES);
    memcpy(vc.self_pk, id->pk, NODE_PK_BYTES);
    rc = ncap_verifier_new(&vc, &m->verifier);
    if (rc != NX_OK) {
        snprintf(err, cap, "cannot create the envelope verifier: %s", nx_strerror(rc));
        goto fail;
    }
    rc = start_transport(m, cfg->bind, err, cap);
    if (rc == NX_OK)
        rc = add_peers(m, cfg->peers, err, cap);
    if (rc != NX_OK)
        goto fail;
    double every = cfg->ping_interval_ms / 1000.0;
    ev_timer_init(&m->ping_timer, on_ping_timer, every, every);
    m->ping_timer.data = m;
    ev_timer_start(loop, &m->ping_timer);
    *out = m;
    return NX_OK;
fail:
    mesh_stop(m);
    return rc;
}

void mesh_stop(struct mesh *m)
{
    if (m == NULL)
        return;
    ev_timer_stop(m->loop, &m->ping_timer);
    node_transport_close(m->tp);
    ncap_verifier_free(m->verifier);
    node_trust_file_free(m->trust);
    node_trust_file_free(m->admitted);
    node_trust_file_free(m->removed);
    free(m);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Adds rtt_p50_us and rtt_p99_us over the recent samples (nearest rank). */
static void add_rtt_percentiles(json_t *o, const struct peer *p)
{
    if (p->rtt_count == 0)
        return;
    uint32_t sorted[RTT_SAMPLES];
    memcpy(sorted, p->rtt_ring, p->rtt_count * sizeof sorted[0]);
    qsort(sorted, p->rtt_count, sizeof sorted[0], cmp_u32);
    json_object_set_new(o, "rtt_p50_us", json_integer(sorted[(p->rtt_count - 1) / 2]));
    json_object_set_new(o, "rtt_p99_us", json_integer(sorted[(p->rtt_count * 99 - 1) / 100]));
    json_object_set_new(o, "rtt_samples", json_integer(p->rtt_count));
}

json_t *mesh_peers_json(const struct mesh *m, uint64_t now_ms, size_t *connected)
{
    json_t *arr = json_array();
    *connected = 0;
    for (size_t i = 0; m && i < m->n_peers; i++) {
        const struct peer *p = &m->peers[i];
        bool live = p->last_heard_ms && now_ms - p->last_heard_ms <= MESH_PEER_STALE_MS;
        *connected += live;
        json_t *o =
            json_pack("{s:s,s:s,s:b,s:I,s:I,s:I}", "id", p->id_hex, "address", p->address,
                      "connected", live, "pings_sent", (json_int_t)p->pings_sent, "pongs",
                      (json_int_t)p->pongs, "pings_received", (json_int_t)p->pings_received);
        json_object_set_new(o, "rtt_us", p->rtt_us >= 0 ? json_integer(p->rtt_us) : json_null());
        add_rtt_percentiles(o, p);
        json_array_append_new(arr, o);
    }
    return arr;
}

json_t *mesh_counters_json(const struct mesh *m)
{
    struct node_transport_counters t;
    node_transport_counters_get(m->tp, &t);
    const struct ncap_counters *c = ncap_verifier_counters(m->verifier);
    return json_pack(
        "{s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},"
        "s:{s:I,s:I,s:I,s:I}}",
        "transport", "sent", (json_int_t)t.sent, "received", (json_int_t)t.received,
        "dropped_queue_full", (json_int_t)t.dropped_queue_full, "refused_handshake",
        (json_int_t)t.refused_handshake, "dropped_untrusted", (json_int_t)t.dropped_untrusted,
        "send_errors", (json_int_t)t.send_errors, "accepted_guest", (json_int_t)t.accepted_guest,
        "refused_guest_rate", (json_int_t)t.refused_guest_rate, "envelope", "accepted",
        (json_int_t)c->accepted, "accepted_guest", (json_int_t)c->accepted_guest, "decode",
        (json_int_t)c->decode, "version", (json_int_t)c->version, "wrong_cluster",
        (json_int_t)c->wrong_cluster, "wrong_recipient", (json_int_t)c->wrong_recipient,
        "unknown_sender", (json_int_t)c->unknown_sender, "stale", (json_int_t)c->stale, "future",
        (json_int_t)c->future, "bad_sig", (json_int_t)c->bad_sig, "replay", (json_int_t)c->replay,
        "mesh", "sender_mismatch", (json_int_t)m->sender_mismatch, "unexpected_type",
        (json_int_t)m->unexpected_type, "guest_dropped", (json_int_t)m->guest_dropped,
        "guest_wrong_cluster", (json_int_t)m->guest_wrong_cluster);
}
