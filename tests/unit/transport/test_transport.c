/*
 * Unit tests of node/transport_zmq.c and node/zmq_watch.c: real transports in
 * one process, one libev loop, on 127.0.0.1 with ephemeral ports. Every wait
 * is bounded by an ev timer, so a broken transport fails a test instead of
 * hanging it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ev.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "base/base.h"
#include "node/transport.h"
#include "node/trust.h"
#include "node/zmq_watch.h"

#define BURST_MSGS 10000
#define WAIT_MS 20000

struct tnode {
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    struct node_trust_file *trust;
    struct node_transport *tp;
    /* what on_message saw */
    uint64_t got;
    uint64_t got_guest;
    uint64_t out_of_order;
    uint32_t next_seq;
    uint8_t last_sender[32];
    bool last_sender_null;
    char last_route[NODE_TRANSPORT_GUEST_ROUTE_MAX];
    uint8_t last_data[256];
    size_t last_len;
    bool echo_guests;    /* reply every guest message with the same bytes */
    uint64_t in_prepare; /* messages delivered during the loop's prepare phase */
    uint64_t echo_failed;
};

static struct ev_loop *loop;
/* True between the first and the last prepare watcher of an iteration (see prepare_fence). */
static bool in_prepare_phase;

static void on_message(void *ctx, const uint8_t *sender_pk, const char *guest_route,
                       const uint8_t *data, size_t len)
{
    struct tnode *n = ctx;
    n->got++;
    n->in_prepare += in_prepare_phase;
    n->last_sender_null = sender_pk == NULL;
    if (sender_pk != NULL)
        memcpy(n->last_sender, sender_pk, 32);
    else
        n->got_guest++;
    snprintf(n->last_route, sizeof n->last_route, "%s", guest_route ? guest_route : "");
    n->last_len = len;
    memcpy(n->last_data, data, len < sizeof n->last_data ? len : sizeof n->last_data);
    if (len >= 4) {
        uint32_t seq;
        memcpy(&seq, data, 4);
        if (seq != n->next_seq)
            n->out_of_order++;
        n->next_seq = seq + 1;
    }
    if (n->echo_guests && guest_route != NULL &&
        node_transport_reply_guest(n->tp, guest_route, data, len) != NX_OK)
        n->echo_failed++;
}

static void node_start(struct tnode *n, bool guests, const struct node_transport_limits *lim,
                       const char *endpoint)
{
    struct node_transport_config cfg = {
        .loop = loop,
        .ed25519_sk = n->sk,
        .bind_endpoint = endpoint ? endpoint : "tcp://127.0.0.1:0",
        .trust = node_trust_file_iface(n->trust),
        .guests_allowed = guests,
        .on_message = on_message,
        .on_message_ctx = n,
    };
    if (lim != NULL)
        cfg.limits = *lim;
    else
        cfg.limits = (struct node_transport_limits){
            .reconnect_ivl_ms = 20, .reconnect_ivl_max_ms = 200, .linger_ms = 50};
    assert_int_equal(node_transport_create(&n->tp, &cfg), NX_OK);
    assert_true(node_transport_port(n->tp) > 0);
}

static void node_init(struct tnode *n, bool guests, const struct node_transport_limits *lim)
{
    memset(n, 0, sizeof *n);
    crypto_sign_keypair(n->pk, n->sk);
    assert_int_equal(node_trust_file_new(&n->trust), NX_OK);
    node_start(n, guests, lim, NULL);
}

static void node_fini(struct tnode *n)
{
    node_transport_close(n->tp);
    node_trust_file_free(n->trust);
    sodium_memzero(n->sk, sizeof n->sk);
}

/* a trusts b and knows where it listens. */
static void introduce(struct tnode *a, struct tnode *b)
{
    assert_int_equal(node_trust_file_add(a->trust, b->pk), NX_OK);
    assert_int_equal(node_transport_peer_set(a->tp, b->pk, node_transport_endpoint(b->tp)), NX_OK);
}

static void timeout_cb(struct ev_loop *l, ev_timer *t, int revents)
{
    (void)l;
    (void)revents;
    *(bool *)t->data = true;
}

/* Runs the loop until *count >= want or timeout_ms passes; true when reached. */
static bool run_until(const uint64_t *count, uint64_t want, double timeout_ms)
{
    bool timed_out = false;
    ev_timer t;
    ev_timer_init(&t, timeout_cb, timeout_ms / 1000.0, 0);
    t.data = &timed_out;
    ev_timer_start(loop, &t);
    while (*count < want && !timed_out)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
    return *count >= want;
}

static void run_for(double ms)
{
    uint64_t never = 0;
    run_until(&never, 1, ms);
}

/* Two started nodes that trust each other and know each other's address. */
static void trusted_pair(struct tnode *a, struct tnode *b,
                         const struct node_transport_limits *lim_a,
                         const struct node_transport_limits *lim_b)
{
    node_init(a, false, lim_a);
    node_init(b, false, lim_b);
    introduce(a, b);
    introduce(b, a);
}

/* Runs the loop until the counter at offset (in struct node_transport_counters) is > 0. */
static uint64_t wait_counter(const struct tnode *n, size_t offset)
{
    struct node_transport_counters c;
    uint64_t v = 0;
    for (int i = 0; i < 500 && v == 0; i++) {
        run_for(10);
        node_transport_counters_get(n->tp, &c);
        memcpy(&v, (const char *)&c + offset, sizeof v);
    }
    return v;
}

/* Runs the loop until node_transport_peer_connected(n, pk) == want (or 2 s pass). */
static bool wait_connected(const struct tnode *n, const uint8_t *pk, bool want)
{
    for (int i = 0; i < 200 && node_transport_peer_connected(n->tp, pk) != want; i++)
        run_for(10);
    return node_transport_peer_connected(n->tp, pk) == want;
}

#define WAIT_COUNTER(n, field) wait_counter(n, offsetof(struct node_transport_counters, field))

/*
 * Sends small messages from `from` to `to` every 25 ms until one arrives:
 * used where a connection must come back (restart, reconnect, redial) and
 * messages sent before it did are allowed to be lost.
 */
static bool send_until_received(struct tnode *from, struct tnode *to, const char *text)
{
    uint64_t before = to->got;
    for (int i = 0; i < 200 && to->got == before; i++) {
        int rc = node_transport_send(from->tp, to->pk, (const uint8_t *)text, strlen(text));
        assert_true(rc == NX_OK || rc == NX_ERR_FULL || rc == NX_ERR_UNAVAILABLE);
        run_for(25);
    }
    return to->got > before;
}

static void send_seq(struct tnode *from, const uint8_t *to_pk, uint32_t seq, size_t len)
{
    uint8_t buf[256] = {0};
    memcpy(buf, &seq, sizeof seq);
    assert_int_equal(node_transport_send(from->tp, to_pk, buf, len), NX_OK);
}

static void trusted_peers_exchange_messages_both_ways(void **state)
{
    (void)state;
    struct tnode a, b;
    trusted_pair(&a, &b, NULL, NULL);
    assert_int_equal(node_transport_send(a.tp, b.pk, (const uint8_t *)"hello b", 7), NX_OK);
    assert_int_equal(node_transport_send(b.tp, a.pk, (const uint8_t *)"hello a", 7), NX_OK);
    assert_true(run_until(&b.got, 1, WAIT_MS));
    assert_true(run_until(&a.got, 1, WAIT_MS));
    assert_memory_equal(b.last_data, "hello b", 7);
    assert_memory_equal(b.last_sender, a.pk, 32);
    assert_memory_equal(a.last_data, "hello a", 7);
    assert_memory_equal(a.last_sender, b.pk, 32);
    assert_false(a.last_sender_null);
    assert_string_equal(a.last_route, "");
    struct node_transport_counters c;
    node_transport_counters_get(a.tp, &c);
    assert_int_equal(c.sent, 1);
    assert_int_equal(c.received, 1);
    assert_int_equal(c.accepted_handshake, 1);
    assert_int_equal(c.refused_handshake, 0);
    assert_int_equal(node_transport_connection_count(a.tp), 1);
    node_fini(&a);
    node_fini(&b);
}

static void burst_each_way(uint32_t recv_batch)
{
    struct node_transport_limits lim = {
        .peer_queue_msgs = 2 * BURST_MSGS, .recv_batch = recv_batch, .linger_ms = 50};
    struct tnode a, b;
    trusted_pair(&a, &b, &lim, &lim);
    for (uint32_t i = 0; i < BURST_MSGS; i++) {
        send_seq(&a, b.pk, i, 64);
        send_seq(&b, a.pk, i, 64);
    }
    assert_true(run_until(&b.got, BURST_MSGS, WAIT_MS));
    assert_true(run_until(&a.got, BURST_MSGS, WAIT_MS));
    assert_int_equal(a.got, BURST_MSGS);
    assert_int_equal(b.got, BURST_MSGS);
    assert_int_equal(a.out_of_order, 0);
    assert_int_equal(b.out_of_order, 0);
    assert_int_equal(a.in_prepare + b.in_prepare, 0);
    node_fini(&a);
    node_fini(&b);
}

static void burst_of_ten_thousand_each_way_all_arrive_in_order(void **state)
{
    (void)state;
    burst_each_way(0);
}

/* One message per read: only the watch's re-check and idle keep reading. */
static void burst_read_one_message_at_a_time_still_drains(void **state)
{
    (void)state;
    burst_each_way(1);
}

/*
 * A guest sends 10,000 messages and the host echoes each from inside its
 * callback: both the host's ROUTER and the guest's DEALER send and receive at
 * once, so a send that eats a read edge leaves messages unread unless the
 * watch re-checks ZMQ_EVENTS after sends.
 */
static void guest_echo_burst_all_arrive(void **state)
{
    (void)state;
    struct node_transport_limits lim = {.peer_queue_msgs = 2 * BURST_MSGS, .linger_ms = 50};
    struct tnode host, guest;
    node_init(&host, true, &lim);
    node_init(&guest, false, &lim);
    host.echo_guests = true;
    introduce(&guest, &host); /* the host does not trust the guest */
    for (uint32_t i = 0; i < BURST_MSGS; i++)
        send_seq(&guest, host.pk, i, 32);
    assert_true(run_until(&guest.got, BURST_MSGS, WAIT_MS));
    assert_int_equal(host.got_guest, BURST_MSGS);
    assert_int_equal(host.echo_failed, 0);
    assert_int_equal(guest.out_of_order, 0);
    assert_memory_equal(guest.last_sender, host.pk, 32);
    node_fini(&host);
    node_fini(&guest);
}

static void untrusted_peer_is_refused_at_the_handshake(void **state)
{
    (void)state;
    struct tnode a, c;
    node_init(&a, false, NULL);
    node_init(&c, false, NULL);
    introduce(&c, &a); /* c trusts a; a does not trust c */
    for (uint32_t i = 0; i < 10; i++)
        send_seq(&c, a.pk, i, 16);
    assert_true(WAIT_COUNTER(&a, refused_handshake) > 0);
    run_for(100); /* give a wrongly admitted message time to arrive */
    struct node_transport_counters ca;
    node_transport_counters_get(a.tp, &ca);
    assert_int_equal(ca.accepted_handshake, 0);
    assert_int_equal(ca.accepted_guest, 0);
    assert_int_equal(a.got, 0);
    node_fini(&a);
    node_fini(&c);
}

/* A node that starts before it is trusted gets through once it is, without any action. */
static void refused_peer_gets_through_after_it_becomes_trusted(void **state)
{
    (void)state;
    struct tnode a, c;
    node_init(&a, false, NULL);
    node_init(&c, false, NULL);
    introduce(&c, &a);
    send_seq(&c, a.pk, 0, 8);
    assert_true(WAIT_COUNTER(&a, refused_handshake) > 0);
    assert_int_equal(node_trust_file_add(a.trust, c.pk), NX_OK);
    assert_true(send_until_received(&c, &a, "trusted now"));
    assert_memory_equal(a.last_sender, c.pk, 32);
    struct node_transport_counters cc;
    node_transport_counters_get(c.tp, &cc);
    assert_true(cc.handshake_failed > 0); /* c saw the refusal and redialed */
    node_fini(&a);
    node_fini(&c);
}

static void guest_gets_null_sender_and_reply_reaches_it_then_admission_upgrades_it(void **state)
{
    (void)state;
    struct tnode host, guest;
    node_init(&host, true, NULL);
    node_init(&guest, false, NULL);
    introduce(&guest, &host);
    send_seq(&guest, host.pk, 0, 8);
    assert_true(run_until(&host.got, 1, WAIT_MS));
    assert_true(host.last_sender_null);
    assert_true(strlen(host.last_route) > 0);
    char route[NODE_TRANSPORT_GUEST_ROUTE_MAX];
    strcpy(route, host.last_route);
    assert_int_equal(node_transport_reply_guest(host.tp, route, (const uint8_t *)"welcome", 7),
                     NX_OK);
    assert_true(run_until(&guest.got, 1, WAIT_MS));
    assert_memory_equal(guest.last_data, "welcome", 7);
    assert_memory_equal(guest.last_sender, host.pk, 32);

    /* A route that names nobody is refused, not silently dropped. */
    assert_int_equal(node_transport_reply_guest(host.tp, "00deadbeef", (const uint8_t *)"x", 1),
                     NX_ERR_NOT_FOUND);
    assert_int_equal(node_transport_reply_guest(host.tp, "zz", (const uint8_t *)"x", 1),
                     NX_ERR_NOT_FOUND);

    /* Guests switched off: the open guest connection stays, its messages drop. */
    node_transport_set_guests_allowed(host.tp, false);
    send_seq(&guest, host.pk, 1, 8);
    assert_int_equal(WAIT_COUNTER(&host, dropped_guest), 1);
    assert_int_equal(host.got, 1);
    node_transport_set_guests_allowed(host.tp, true);

    /* Admitted: the same connection now delivers the guest's key. */
    assert_int_equal(node_trust_file_add(host.trust, guest.pk), NX_OK);
    send_seq(&guest, host.pk, 1, 8);
    assert_true(run_until(&host.got, 2, WAIT_MS));
    assert_false(host.last_sender_null);
    assert_memory_equal(host.last_sender, guest.pk, 32);

    /* Guests switched off: a new unknown key is refused. */
    node_transport_set_guests_allowed(host.tp, false);
    struct tnode other;
    node_init(&other, false, NULL);
    introduce(&other, &host);
    send_seq(&other, host.pk, 0, 8);
    assert_true(WAIT_COUNTER(&host, refused_handshake) > 0);
    run_for(50);
    struct node_transport_counters c;
    node_transport_counters_get(host.tp, &c);
    assert_int_equal(host.got, 2);
    assert_int_equal(c.accepted_guest, 1);
    node_fini(&other);
    node_fini(&host);
    node_fini(&guest);
}

/* Guest admissions are rate-limited; a refused guest redials and gets in once tokens refill. */
static void guest_admissions_are_rate_limited_then_refill(void **state)
{
    (void)state;
    struct node_transport_limits lim = {.guest_handshakes_per_s = 1,
                                        .reconnect_ivl_ms = 20,
                                        .reconnect_ivl_max_ms = 200,
                                        .linger_ms = 50};
    struct tnode host, g[2];
    node_init(&host, true, &lim);
    for (int i = 0; i < 2; i++) {
        node_init(&g[i], false, NULL);
        introduce(&g[i], &host);
        send_seq(&g[i], host.pk, 0, 8);
    }
    assert_true(WAIT_COUNTER(&host, refused_guest_rate) > 0);
    assert_true(run_until(&host.got_guest, 1, WAIT_MS));
    /* The refused guest gets in about a second later, by redialing. */
    for (int i = 0; i < 2; i++)
        assert_true(send_until_received(&g[i], &host, "again"));
    struct node_transport_counters c;
    node_transport_counters_get(host.tp, &c);
    assert_int_equal(c.accepted_guest, 2);
    assert_true(c.refused_handshake >= c.refused_guest_rate);
    for (int i = 0; i < 2; i++)
        node_fini(&g[i]);
    node_fini(&host);
}

/*
 * A client that is not our transport (as one written in another language
 * would be): a bare CURVE DEALER with keys converted from a trusted Ed25519
 * key. Its single-frame messages, even empty ones, arrive with its key; a
 * multipart message is dropped and counted.
 */
static void bare_curve_client_is_identified_and_multipart_is_dropped(void **state)
{
    (void)state;
    struct tnode a;
    node_init(&a, false, NULL);
    uint8_t pk[32], sk[64], cpk[32], csk[32], server_cpk[32];
    crypto_sign_keypair(pk, sk);
    assert_int_equal(crypto_sign_ed25519_pk_to_curve25519(cpk, pk), 0);
    assert_int_equal(crypto_sign_ed25519_sk_to_curve25519(csk, sk), 0);
    assert_int_equal(crypto_sign_ed25519_pk_to_curve25519(server_cpk, a.pk), 0);
    assert_int_equal(node_trust_file_add(a.trust, pk), NX_OK);

    void *zctx = zmq_ctx_new();
    void *d = zmq_socket(zctx, ZMQ_DEALER);
    int zero = 0;
    assert_int_equal(zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero), 0);
    assert_int_equal(zmq_setsockopt(d, ZMQ_CURVE_SERVERKEY, server_cpk, 32), 0);
    assert_int_equal(zmq_setsockopt(d, ZMQ_CURVE_PUBLICKEY, cpk, 32), 0);
    assert_int_equal(zmq_setsockopt(d, ZMQ_CURVE_SECRETKEY, csk, 32), 0);
    assert_int_equal(zmq_connect(d, node_transport_endpoint(a.tp)), 0);
    assert_int_equal(zmq_send(d, "one", 3, 0), 3);
    assert_int_equal(zmq_send(d, "two", 3, ZMQ_SNDMORE), 3);
    assert_int_equal(zmq_send(d, "parts", 5, 0), 5);
    assert_int_equal(zmq_send(d, "", 0, 0), 0);
    assert_true(run_until(&a.got, 2, WAIT_MS));
    assert_memory_equal(a.last_sender, pk, 32);
    assert_int_equal(a.last_len, 0);
    struct node_transport_counters c;
    node_transport_counters_get(a.tp, &c);
    assert_int_equal(c.dropped_malformed, 1);
    assert_int_equal(c.received, 2);
    zmq_close(d);
    zmq_ctx_term(zctx);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(csk, sizeof csk);
    node_fini(&a);
}

static void revoked_key_is_dropped_from_the_next_message(void **state)
{
    (void)state;
    struct tnode a, b;
    trusted_pair(&a, &b, NULL, NULL);
    send_seq(&a, b.pk, 0, 8);
    assert_true(run_until(&b.got, 1, WAIT_MS));
    assert_int_equal(node_trust_file_remove(b.trust, a.pk), NX_OK);
    send_seq(&a, b.pk, 1, 8);
    assert_int_equal(WAIT_COUNTER(&b, dropped_untrusted), 1);
    assert_int_equal(b.got, 1);
    node_fini(&a);
    node_fini(&b);
}

/* A port nothing listens on: bind a transport, note its port, close it. */
static void dead_endpoint(char *out, size_t out_len)
{
    struct tnode t;
    node_init(&t, false, NULL);
    snprintf(out, out_len, "%s", node_transport_endpoint(t.tp));
    node_fini(&t);
}

static void unreachable_peer_fills_a_bounded_queue_then_drops_without_blocking(void **state)
{
    (void)state;
    enum { QUEUE = 100, SENDS = 20000 };
    struct node_transport_limits lim = {.peer_queue_msgs = QUEUE, .linger_ms = 10};
    struct tnode a, ghost;
    char endpoint[NODE_TRANSPORT_ENDPOINT_MAX];
    dead_endpoint(endpoint, sizeof endpoint);
    node_init(&a, false, &lim);
    memset(&ghost, 0, sizeof ghost);
    crypto_sign_keypair(ghost.pk, ghost.sk);
    assert_int_equal(node_transport_peer_set(a.tp, ghost.pk, endpoint), NX_OK);
    uint64_t start_us = nx_clock_mono_us();
    int ok = 0, full = 0;
    uint8_t msg[64] = {0};
    for (int i = 0; i < SENDS; i++) {
        int rc = node_transport_send(a.tp, ghost.pk, msg, sizeof msg);
        if (rc == NX_OK)
            ok++;
        else if (rc == NX_ERR_FULL)
            full++;
        if (i % 1000 == 0)
            ev_run(loop, EVRUN_NOWAIT);
    }
    uint64_t took_us = nx_clock_mono_us() - start_us;
    struct node_transport_counters c;
    node_transport_counters_get(a.tp, &c);
    print_message("unreachable: %d queued, %d dropped, %.1f ms for %d sends\n", ok, full,
                  took_us / 1000.0, SENDS);
    assert_true(ok >= QUEUE && ok <= 2 * QUEUE);
    assert_int_equal(ok + full, SENDS);
    assert_int_equal(c.dropped_queue_full, (uint64_t)full);
    assert_true(took_us < 2000000); /* never blocked */
    node_fini(&a);
}

static void restarted_peer_on_the_same_port_is_reached_again(void **state)
{
    (void)state;
    struct tnode a, b;
    trusted_pair(&a, &b, NULL, NULL);
    send_seq(&a, b.pk, 0, 8);
    assert_true(run_until(&b.got, 1, WAIT_MS));

    assert_true(wait_connected(&a, b.pk, true));
    char endpoint[NODE_TRANSPORT_ENDPOINT_MAX];
    snprintf(endpoint, sizeof endpoint, "%s", node_transport_endpoint(b.tp));
    node_transport_close(b.tp);
    b.tp = NULL;
    assert_true(wait_connected(&a, b.pk, false));
    node_start(&b, false, NULL, endpoint); /* same key, same port, empty memory */
    /* Messages written into the dead connection are lost; new ones get through. */
    assert_true(send_until_received(&a, &b, "again"));
    assert_true(wait_connected(&a, b.pk, true));
    assert_memory_equal(b.last_sender, a.pk, 32);
    node_fini(&a);
    node_fini(&b);
}

static void oversize_message_is_refused_on_send_and_on_receive(void **state)
{
    (void)state;
    struct node_transport_limits big = {.max_msg_bytes = 65536,
                                        .reconnect_ivl_ms = 20,
                                        .reconnect_ivl_max_ms = 100,
                                        .linger_ms = 50};
    struct node_transport_limits small = big;
    small.max_msg_bytes = 1024;
    struct tnode a, b;
    trusted_pair(&a, &b, &big, &small);

    static uint8_t buf[65537];
    assert_int_equal(node_transport_send(a.tp, b.pk, buf, sizeof buf), NX_ERR_TOO_BIG);
    struct node_transport_counters c;
    node_transport_counters_get(a.tp, &c);
    assert_int_equal(c.oversize, 1);
    assert_int_equal(c.sent, 0);

    /* Fits a's limit, not b's: b cuts the connection and never delivers it. */
    memset(buf, 0xab, 2000);
    assert_int_equal(node_transport_send(a.tp, b.pk, buf, 2000), NX_OK);
    run_for(200);
    assert_int_equal(b.got, 0);
    /* The connection comes back for messages within the limit. */
    assert_true(send_until_received(&a, &b, "small"));
    assert_int_equal(b.last_len, 5);
    node_fini(&a);
    node_fini(&b);
}

static void connections_are_bounded_and_least_recently_used_is_closed(void **state)
{
    (void)state;
    /* A long linger: an evicted DEALER must still flush what it queued. */
    struct node_transport_limits lim = {.max_connections = 2, .linger_ms = 3000};
    struct tnode a, p[3];
    node_init(&a, false, &lim);
    for (int i = 0; i < 3; i++) {
        node_init(&p[i], false, NULL);
        introduce(&a, &p[i]);
        introduce(&p[i], &a);
    }
    send_seq(&a, p[0].pk, 0, 8);
    send_seq(&a, p[1].pk, 0, 8);
    send_seq(&a, p[0].pk, 1, 8); /* p[1] is now the least recently used */
    assert_int_equal(node_transport_connection_count(a.tp), 2);
    send_seq(&a, p[2].pk, 0, 8);
    assert_int_equal(node_transport_connection_count(a.tp), 2);
    struct node_transport_counters c;
    node_transport_counters_get(a.tp, &c);
    assert_int_equal(c.connections_evicted, 1);
    assert_int_equal(c.connections_opened, 3);
    send_seq(&a, p[0].pk, 2, 8); /* still open: no new connection */
    node_transport_counters_get(a.tp, &c);
    assert_int_equal(c.connections_opened, 3);
    send_seq(&a, p[1].pk, 1, 8); /* reopened, evicting p[2] */
    node_transport_counters_get(a.tp, &c);
    assert_int_equal(c.connections_opened, 4);
    assert_int_equal(c.connections_evicted, 2);
    assert_true(run_until(&p[0].got, 3, WAIT_MS));
    assert_true(run_until(&p[2].got, 1, WAIT_MS));
    assert_true(run_until(&p[1].got, 1, WAIT_MS)); /* at least the message after reopening */
    for (int i = 0; i < 3; i++)
        node_fini(&p[i]);
    node_fini(&a);
}

/*
 * Round-robin over more peers than connections: every send evicts. Evicted
 * DEALERs keep their socket slot while they flush, so some sends may be
 * refused (counted); every accepted message arrives exactly once. Order is
 * not asserted: a lingering DEALER and its replacement deliver side by side.
 */
static void eviction_churn_delivers_every_accepted_message(void **state)
{
    (void)state;
    enum { PEERS = 8, ROUNDS = 5 };
    struct node_transport_limits lim = {.max_connections = 3, .linger_ms = 3000};
    struct tnode hub, p[PEERS];
    uint64_t accepted[PEERS] = {0}, refused = 0;
    node_init(&hub, false, &lim);
    for (int i = 0; i < PEERS; i++) {
        node_init(&p[i], false, NULL);
        introduce(&hub, &p[i]);
        introduce(&p[i], &hub);
    }
    for (uint32_t r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < PEERS; i++) {
            uint8_t msg[8] = {0};
            memcpy(msg, &accepted[i], 4); /* sequence of accepted messages */
            int rc = node_transport_send(hub.tp, p[i].pk, msg, sizeof msg);
            assert_true(rc == NX_OK || rc == NX_ERR_FULL);
            if (rc == NX_OK)
                accepted[i]++;
            else
                refused++;
        }
        run_for(20);
    }
    assert_true(node_transport_connection_count(hub.tp) <= 3);
    for (int i = 0; i < PEERS; i++) {
        assert_true(accepted[i] > 0);
        assert_true(run_until(&p[i].got, accepted[i], WAIT_MS));
    }
    run_for(50);
    struct node_transport_counters c;
    node_transport_counters_get(hub.tp, &c);
    print_message("churn: %" PRIu64 " refused of %d\n", refused, PEERS * ROUNDS);
    for (int i = 0; i < PEERS; i++)
        assert_int_equal(p[i].got, accepted[i]);
    assert_int_equal(c.dropped_no_socket, refused);
    assert_int_equal(c.send_errors, 0);
    assert_int_equal(c.connections_opened - c.connections_evicted,
                     node_transport_connection_count(hub.tp));
    for (int i = 0; i < PEERS; i++)
        node_fini(&p[i]);
    node_fini(&hub);
}

static void peer_table_is_bounded_and_checks_input(void **state)
{
    (void)state;
    struct node_transport_limits lim = {.max_peers = 4};
    struct tnode a;
    node_init(&a, false, &lim);
    uint8_t pk[5][32], sk[64];
    for (int i = 0; i < 5; i++)
        crypto_sign_keypair(pk[i], sk);
    for (int i = 0; i < 4; i++)
        assert_int_equal(node_transport_peer_set(a.tp, pk[i], "tcp://127.0.0.1:1"), NX_OK);
    assert_int_equal(node_transport_peer_set(a.tp, pk[4], "tcp://127.0.0.1:1"), NX_ERR_FULL);
    assert_int_equal(node_transport_peer_set(a.tp, pk[0], "tcp://127.0.0.1:2"), NX_OK);
    assert_int_equal(node_transport_peer_count(a.tp), 4);
    assert_int_equal(node_transport_peer_remove(a.tp, pk[1]), NX_OK);
    assert_int_equal(node_transport_peer_remove(a.tp, pk[1]), NX_ERR_NOT_FOUND);
    assert_false(node_transport_peer_known(a.tp, pk[1]));
    assert_true(node_transport_peer_known(a.tp, pk[0]));
    assert_true(node_transport_peer_known(a.tp, pk[3]));
    assert_int_equal(node_transport_peer_set(a.tp, pk[4], "tcp://127.0.0.1:1"), NX_OK);
    assert_int_equal(node_transport_peer_set(a.tp, pk[1], "udp://x"), NX_ERR_INVAL);
    assert_int_equal(node_transport_send(a.tp, pk[1], (const uint8_t *)"x", 1), NX_ERR_NOT_FOUND);
    struct node_transport_counters c;
    node_transport_counters_get(a.tp, &c);
    assert_int_equal(c.unknown_peer, 1);
    node_fini(&a);
}

static void peer_table_keeps_every_key_through_adds_and_removes(void **state)
{
    (void)state;
    enum { N = 1024 };
    struct node_transport_limits lim = {.max_peers = N};
    struct tnode a;
    node_init(&a, false, &lim);
    static uint8_t pk[N][32];
    uint8_t sk[64];
    for (int i = 0; i < N; i++) {
        crypto_sign_keypair(pk[i], sk);
        assert_int_equal(node_transport_peer_set(a.tp, pk[i], "tcp://127.0.0.1:1"), NX_OK);
    }
    for (int i = 0; i < N; i += 2)
        assert_int_equal(node_transport_peer_remove(a.tp, pk[i]), NX_OK);
    for (int i = 0; i < N; i++)
        assert_int_equal(node_transport_peer_known(a.tp, pk[i]), i % 2 == 1);
    for (int i = 0; i < N; i += 2)
        assert_int_equal(node_transport_peer_set(a.tp, pk[i], "tcp://127.0.0.1:2"), NX_OK);
    for (int i = 0; i < N; i++)
        assert_true(node_transport_peer_known(a.tp, pk[i]));
    assert_int_equal(node_transport_peer_count(a.tp), N);
    assert_int_equal(node_transport_connection_count(a.tp), 0);
    node_fini(&a);
}

static void curve_key_maps_back_to_its_ed25519_key(void **state)
{
    (void)state;
    for (int i = 0; i < 500; i++) {
        uint8_t pk[32], sk[64], curve[32], cand[2][32];
        crypto_sign_keypair(pk, sk);
        assert_int_equal(crypto_sign_ed25519_pk_to_curve25519(curve, pk), 0);
        assert_int_equal(node_transport_curve_to_ed25519(cand, curve), NX_OK);
        assert_true(memcmp(cand[0], pk, 32) == 0 || memcmp(cand[1], pk, 32) == 0);
        /* Both candidates map to the same curve key. */
        uint8_t again[32];
        assert_int_equal(crypto_sign_ed25519_pk_to_curve25519(again, cand[0]), 0);
        assert_memory_equal(again, curve, 32);
    }
    uint8_t minus_one[32], cand[2][32];
    memset(minus_one, 0xff, sizeof minus_one);
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f; /* p - 1 */
    assert_int_equal(node_transport_curve_to_ed25519(cand, minus_one), NX_ERR_INVAL);
}

/* ---- zmq_watch on raw sockets ------------------------------------------------ */

/*
 * Both ends send from an ev_idle driver (outside their readers) while
 * messages stream the other way. zmq_send processes the socket's pending
 * commands now and then, which can eat the ZMQ_FD edge of a message that has
 * just arrived; without the re-check after sends that message, and everything
 * behind it, stays unread and the exchange stalls.
 */
struct raw_end {
    void *sock;
    struct zmq_watch watch;
    uint64_t got;
    uint64_t sent;
    uint64_t to_send;
    bool router;
    uint8_t peer_id[16];
    size_t peer_id_len;
};

static void raw_readable(struct zmq_watch *w)
{
    struct raw_end *e = w->ctx;
    for (int n = 0; n < 64; n++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, w->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        if (e->router && zmq_msg_more(&m)) { /* routing id frame */
            e->peer_id_len = zmq_msg_size(&m) < sizeof e->peer_id ? zmq_msg_size(&m) : 0;
            memcpy(e->peer_id, zmq_msg_data(&m), e->peer_id_len);
            zmq_msg_close(&m);
            zmq_msg_init(&m);
            assert_true(zmq_msg_recv(&m, w->sock, ZMQ_DONTWAIT) >= 0);
        }
        e->got++;
        zmq_msg_close(&m);
    }
}

static bool raw_send_one(struct raw_end *e)
{
    uint8_t payload[32] = {0};
    if (e->router) {
        if (e->peer_id_len == 0)
            return false; /* the router learns the dealer's id from its first message */
        if (zmq_send(e->sock, e->peer_id, e->peer_id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            return false;
    }
    if (zmq_send(e->sock, payload, sizeof payload, ZMQ_DONTWAIT) < 0)
        return false;
    zmq_watch_after_send(&e->watch);
    e->sent++;
    return true;
}

struct raw_driver {
    struct raw_end *ends[2];
    ev_idle idle;
};

/*
 * Request/response, all sends from the idle driver: the dealer keeps at most
 * 64 requests unanswered, the router answers each request it has read. Once
 * either side misses a read edge, nobody sends again and the test times out.
 */
static void raw_drive(struct ev_loop *l, ev_idle *idle, int revents)
{
    (void)revents;
    struct raw_driver *d = idle->data;
    struct raw_end *router = d->ends[0], *dealer = d->ends[1];
    while (dealer->sent < dealer->to_send && dealer->sent < dealer->got + 64 &&
           raw_send_one(dealer))
        ;
    while (router->sent < router->got && raw_send_one(router))
        ;
    if (dealer->got >= dealer->to_send)
        ev_idle_stop(l, idle);
}

static void raw_open(struct raw_end *e, void *zctx, int type)
{
    memset(e, 0, sizeof *e);
    e->sock = zmq_socket(zctx, type);
    assert_non_null(e->sock);
    int zero = 0;
    assert_int_equal(zmq_setsockopt(e->sock, ZMQ_LINGER, &zero, sizeof zero), 0);
    e->router = type == ZMQ_ROUTER;
    e->to_send = 2 * BURST_MSGS;
}

static void zmq_watch_survives_sends_outside_the_reader(void **state)
{
    (void)state;
    void *zctx = zmq_ctx_new();
    struct raw_end r, d;
    raw_open(&r, zctx, ZMQ_ROUTER);
    raw_open(&d, zctx, ZMQ_DEALER);
    assert_int_equal(zmq_bind(r.sock, "tcp://127.0.0.1:*"), 0);
    char ep[128];
    size_t ep_len = sizeof ep;
    assert_int_equal(zmq_getsockopt(r.sock, ZMQ_LAST_ENDPOINT, ep, &ep_len), 0);
    assert_int_equal(zmq_connect(d.sock, ep), 0);
    assert_int_equal(zmq_watch_start(&r.watch, loop, r.sock, raw_readable, &r), NX_OK);
    assert_int_equal(zmq_watch_start(&d.watch, loop, d.sock, raw_readable, &d), NX_OK);
    struct raw_driver drv = {.ends = {&r, &d}};
    ev_idle_init(&drv.idle, raw_drive);
    drv.idle.data = &drv;
    ev_idle_start(loop, &drv.idle);
    assert_true(run_until(&d.got, d.to_send, 10000));
    assert_int_equal(r.got, d.to_send);
    ev_idle_stop(loop, &drv.idle);
    print_message("zmq_watch: %" PRIu64 " wakeups router, %" PRIu64 " dealer\n", r.watch.wakeups,
                  d.watch.wakeups);
    zmq_watch_stop(&r.watch);
    zmq_watch_stop(&d.watch);
    zmq_close(r.sock);
    zmq_close(d.sock);
    zmq_ctx_term(zctx);
}

/*
 * Two prepare watchers at the extreme priorities bracket the prepare phase.
 * A node may flush its queues from an ev_prepare; if the transport delivered
 * messages from that phase too, their effects could wait behind a blocking
 * poll. So on_message must never run inside the bracket.
 */
static ev_prepare fence_open, fence_close;

static void fence_cb(struct ev_loop *l, ev_prepare *w, int revents)
{
    (void)l;
    (void)revents;
    in_prepare_phase = w == &fence_open;
}

static void fence_start(void)
{
    ev_prepare_init(&fence_open, fence_cb);
    ev_set_priority(&fence_open, EV_MAXPRI);
    ev_prepare_init(&fence_close, fence_cb);
    ev_set_priority(&fence_close, EV_MINPRI);
    ev_prepare_start(loop, &fence_open);
    ev_prepare_start(loop, &fence_close);
}

/* A fresh loop per test: a failed test leaves watchers behind, and they must not reach the next. */
static int loop_setup(void **state)
{
    (void)state;
    loop = ev_loop_new(EVFLAG_AUTO);
    if (loop == NULL)
        return -1;
    fence_start();
    return 0;
}

static int loop_teardown(void **state)
{
    (void)state;
    ev_loop_destroy(loop);
    loop = NULL;
    return 0;
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    nx_log_set_level(NX_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(curve_key_maps_back_to_its_ed25519_key, loop_setup,
                                        loop_teardown),
        cmocka_unit_test_setup_teardown(zmq_watch_survives_sends_outside_the_reader, loop_setup,
                                        loop_teardown),
        cmocka_unit_test_setup_teardown(trusted_peers_exchange_messages_both_ways, loop_setup,
                                        loop_teardown),
        cmocka_unit_test_setup_teardown(burst_of_ten_thousand_each_way_all_arrive_in_order,
                                        loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(burst_read_one_message_at_a_time_still_drains, loop_setup,
                                        loop_teardown),
        cmocka_unit_test_setup_teardown(guest_echo_burst_all_arrive, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(untrusted_peer_is_refused_at_the_handshake, loop_setup,
                                        loop_teardown),
        cmocka_unit_test_setup_teardown(
            guest_gets_null_sender_and_reply_reaches_it_then_admission_upgrades_it, loop_setup,
            loop_teardown),
        cmocka_unit_test_setup_teardown(refused_peer_gets_through_after_it_becomes_trusted,
                                        loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(guest_admissions_are_rate_limited_then_refill, loop_setup,
                                        loop_teardown),
        cmocka_unit_test_setup_teardown(bare_curve_client_is_identified_and_multipart_is_dropped,
                                        loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(revoked_key_is_dropped_from_the_next_message, loop_setup,
                                        loop_teardown),
        cmocka_unit_test_setup_teardown(
            unreachable_peer_fills_a_bounded_queue_then_drops_without_blocking, loop_setup,
            loop_teardown),
        cmocka_unit_test_setup_teardown(restarted_peer_on_the_same_port_is_reached_again,
                                        loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(oversize_message_is_refused_on_send_and_on_receive,
                                        loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(connections_are_bounded_and_least_recently_used_is_closed,
                                        loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(eviction_churn_delivers_every_accepted_message, loop_setup,
                                        loop_teardown),
        cmocka_unit_test_setup_teardown(peer_table_is_bounded_and_checks_input, loop_setup,
                                        loop_teardown),
        cmocka_unit_test_setup_teardown(peer_table_keeps_every_key_through_adds_and_removes,
                                        loop_setup, loop_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
