/*
 * bench_transport - what CURVE, ZAP and the transport's bookkeeping cost on
 * loopback, next to a plain ZeroMQ DEALER/ROUTER pair measured in the same run.
 *
 * Both setups have the same shape: two ends, each with a bound ROUTER and a
 * DEALER connected to the other's ROUTER, all driven by one libev loop
 * through node/zmq_watch. Figures:
 *   - round trip of a 64-byte message (A -> B, B echoes from its callback),
 *     p50 and p99 over RTT_COUNT sequential pings;
 *   - one-way messages per second, 64-byte messages, at most WINDOW in flight;
 *   - first message on a fresh connection (dial, handshake, ZAP, delivery),
 *     p50 over CONNECT_COUNT redials: what closing an idle DEALER (the LRU
 *     bound) costs when that peer is needed again. Most of it is libzmq's
 *     CURVE handshake itself: a bare CURVE DEALER/ROUTER pair without ZAP or
 *     any of our code took 2-10 ms per fresh connection on the same machine.
 */
#include <ev.h>
#include <sodium.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "base/base.h"
#include "node/transport.h"
#include "node/trust.h"
#include "node/zmq_watch.h"

#define MSG_BYTES 64
#define RTT_WARMUP 500
#define RTT_COUNT 10000
#define FLOOD_COUNT 200000
#define WINDOW 2000
#define CONNECT_COUNT 200
#define TIMEOUT_S 60.0

enum phase { PHASE_RTT, PHASE_FLOOD, PHASE_CONNECT };

struct end {
    int (*send)(struct end *e, const uint8_t *data, size_t len);
    void (*redial)(struct end *e); /* drops the connection to other, opens a new one */
    struct end *other;
    uint64_t received;
    /* transport flavour */
    struct node_transport *tp;
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    struct node_trust_file *trust;
    /* plain flavour */
    void *zctx, *router, *dealer;
    struct zmq_watch router_watch, dealer_watch;
};

struct run {
    enum phase phase;
    struct end *a, *b;
    uint64_t sent;
    uint64_t *rtt_us; /* RTT_COUNT samples */
    uint64_t rtt_done;
    uint64_t ping_start_us;
    uint64_t flood_start_us, flood_end_us;
    bool done;
};

static struct ev_loop *loop;
static struct run run;

static void ping(void)
{
    uint8_t msg[MSG_BYTES] = {0};
    run.ping_start_us = nx_clock_mono_us();
    if (run.a->send(run.a, msg, sizeof msg) != NX_OK) {
        fprintf(stderr, "ping send failed\n");
        exit(1);
    }
}

/* Every received message ends up here, for both flavours. */
static void on_recv(struct end *e, const uint8_t *data, size_t len)
{
    e->received++;
    if (run.phase == PHASE_CONNECT) {
        run.done = true;
        return;
    }
    if (run.phase == PHASE_FLOOD) {
        if (e == run.b && e->received == FLOOD_COUNT) {
            run.flood_end_us = nx_clock_mono_us();
            run.done = true;
        }
        return;
    }
    if (e == run.b) {
        if (e->send(e, data, len) != NX_OK) {
            fprintf(stderr, "echo send failed\n");
            exit(1);
        }
        return;
    }
    uint64_t rtt = nx_clock_mono_us() - run.ping_start_us;
    if (e->received > RTT_WARMUP)
        run.rtt_us[run.rtt_done++] = rtt;
    if (run.rtt_done == RTT_COUNT)
        run.done = true;
    else
        ping();
}

/* ---- CURVE transport flavour ------------------------------------------- */

static void tp_on_message(void *ctx, const uint8_t *sender_pk, const char *guest_route,
                          const uint8_t *data, size_t len)
{
    (void)sender_pk;
    (void)guest_route;
    on_recv(ctx, data, len);
}

static int tp_send(struct end *e, const uint8_t *data, size_t len)
{
    return node_transport_send(e->tp, e->other->pk, data, len);
}

static void tp_redial(struct end *e)
{
    if (node_transport_peer_remove(e->tp, e->other->pk) != NX_OK ||
        node_transport_peer_set(e->tp, e->other->pk, node_transport_endpoint(e->other->tp)) !=
            NX_OK)
        exit(1);
}

static void tp_open(struct end *e)
{
    crypto_sign_keypair(e->pk, e->sk);
    if (node_trust_file_new(&e->trust) != NX_OK)
        exit(1);
    struct node_transport_config cfg = {
        .loop = loop,
        .ed25519_sk = e->sk,
        .bind_endpoint = "tcp://127.0.0.1:0",
        .trust = node_trust_file_iface(e->trust),
        .on_message = tp_on_message,
        .on_message_ctx = e,
        .limits = {.peer_queue_msgs = 2 * WINDOW, .recv_queue_msgs = 2 * WINDOW},
    };
    if (node_transport_create(&e->tp, &cfg) != NX_OK)
        exit(1);
    e->send = tp_send;
    e->redial = tp_redial;
}

static void tp_link(struct end *a, struct end *b)
{
    if (node_trust_file_add(a->trust, b->pk) != NX_OK ||
        node_transport_peer_set(a->tp, b->pk, node_transport_endpoint(b->tp)) != NX_OK)
        exit(1);
}

static void tp_close(struct end *e)
{
    node_transport_close(e->tp);
    node_trust_file_free(e->trust);
}

/* ---- plain ZeroMQ flavour (no CURVE, no ZAP) ---------------------------- */

static void plain_router_readable(struct zmq_watch *w)
{
    struct end *e = w->ctx;
    for (int n = 0; n < NODE_TRANSPORT_RECV_BATCH_DEFAULT; n++) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, w->sock, ZMQ_DONTWAIT) < 0) {
            if (zmq_errno() == EAGAIN)
                zmq_watch_drained(w);
            zmq_msg_close(&rid);
            return;
        }
        zmq_msg_init(&body);
        if (zmq_msg_recv(&body, w->sock, ZMQ_DONTWAIT) >= 0)
            on_recv(e, zmq_msg_data(&body), zmq_msg_size(&body));
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
    }
}

static void plain_dealer_readable(struct zmq_watch *w)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, w->sock, ZMQ_DONTWAIT) >= 0)
        ;
    if (zmq_errno() == EAGAIN)
        zmq_watch_drained(w);
    zmq_msg_close(&m);
}

static int plain_send(struct end *e, const uint8_t *data, size_t len)
{
    int rc = zmq_send(e->dealer, data, len, ZMQ_DONTWAIT) < 0 ? NX_ERR_FULL : NX_OK;
    zmq_watch_after_send(&e->dealer_watch);
    return rc;
}

static void *plain_socket(void *zctx, int type)
{
    int hwm = 2 * WINDOW, linger = 0;
    void *sock = zmq_socket(zctx, type);
    if (sock == NULL || zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) != 0)
        exit(1);
    return sock;
}

static void plain_link(struct end *a, struct end *b)
{
    char ep[128];
    size_t len = sizeof ep;
    if (zmq_getsockopt(b->router, ZMQ_LAST_ENDPOINT, ep, &len) != 0 || zmq_connect(a->dealer, ep))
        exit(1);
}

static void plain_redial(struct end *e)
{
    zmq_watch_stop(&e->dealer_watch);
    void *zctx = e->zctx;
    zmq_close(e->dealer);
    e->dealer = plain_socket(zctx, ZMQ_DEALER);
    if (zmq_watch_start(&e->dealer_watch, loop, e->dealer, plain_dealer_readable, e) != NX_OK)
        exit(1);
    plain_link(e, e->other);
}

static void plain_open(struct end *e, void *zctx)
{
    e->zctx = zctx;
    e->router = plain_socket(zctx, ZMQ_ROUTER);
    e->dealer = plain_socket(zctx, ZMQ_DEALER);
    if (zmq_bind(e->router, "tcp://127.0.0.1:*") != 0 ||
        zmq_watch_start(&e->router_watch, loop, e->router, plain_router_readable, e) != NX_OK ||
        zmq_watch_start(&e->dealer_watch, loop, e->dealer, plain_dealer_readable, e) != NX_OK)
        exit(1);
    e->send = plain_send;
    e->redial = plain_redial;
}

static void plain_close(struct end *e)
{
    zmq_watch_stop(&e->router_watch);
    zmq_watch_stop(&e->dealer_watch);
    zmq_close(e->router);
    zmq_close(e->dealer);
}

/* ---- driver ------------------------------------------------------------- */

static void flood_drive(struct ev_loop *l, ev_idle *idle, int revents)
{
    (void)revents;
    uint8_t msg[MSG_BYTES] = {0};
    while (run.sent < FLOOD_COUNT && run.sent < run.b->received + WINDOW) {
        if (run.a->send(run.a, msg, sizeof msg) != NX_OK)
            break; /* queue full: try again on the next pass */
        run.sent++;
    }
    if (run.sent >= FLOOD_COUNT)
        ev_idle_stop(l, idle);
}

static void timeout_cb(struct ev_loop *l, ev_timer *t, int revents)
{
    (void)l;
    (void)t;
    (void)revents;
    fprintf(stderr, "bench_transport: timed out\n");
    exit(1);
}

static void run_loop_until_done(void)
{
    ev_timer t;
    ev_timer_init(&t, timeout_cb, TIMEOUT_S, 0);
    ev_timer_start(loop, &t);
    while (!run.done)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

struct figures {
    double p50_us, p99_us, msgs_per_s, connect_p50_us;
    double cpu_us_per_rtt; /* loop thread CPU (user + system) per round trip */
};

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* First message over a fresh connection, CONNECT_COUNT times; returns the p50 in µs. */
static double measure_connect(struct end *a)
{
    uint64_t *samples = calloc(CONNECT_COUNT, sizeof *samples);
    if (samples == NULL)
        exit(1);
    uint8_t msg[MSG_BYTES] = {0};
    run.phase = PHASE_CONNECT;
    for (int i = 0; i < CONNECT_COUNT; i++) {
        a->redial(a);
        run.done = false;
        uint64_t start = nx_clock_mono_us();
        if (a->send(a, msg, sizeof msg) != NX_OK)
            exit(1);
        run_loop_until_done();
        samples[i] = nx_clock_mono_us() - start;
    }
    qsort(samples, CONNECT_COUNT, sizeof *samples, cmp_u64);
    double p50 = (double)samples[CONNECT_COUNT / 2];
    free(samples);
    return p50;
}

static void measure(struct end *a, struct end *b, struct figures *f)
{
    memset(&run, 0, sizeof run);
    run.a = a;
    run.b = b;
    run.rtt_us = calloc(RTT_COUNT, sizeof *run.rtt_us);
    if (run.rtt_us == NULL)
        exit(1);
    a->received = b->received = 0;
    run.phase = PHASE_RTT;
    uint64_t cpu0 = thread_cpu_ns();
    ping();
    run_loop_until_done();
    f->cpu_us_per_rtt = (thread_cpu_ns() - cpu0) / 1000.0 / (RTT_WARMUP + RTT_COUNT);
    qsort(run.rtt_us, RTT_COUNT, sizeof *run.rtt_us, cmp_u64);
    f->p50_us = (double)run.rtt_us[RTT_COUNT / 2];
    f->p99_us = (double)run.rtt_us[RTT_COUNT * 99 / 100];
    free(run.rtt_us);

    a->received = b->received = 0;
    run.done = false;
    run.phase = PHASE_FLOOD;
    run.sent = 0;
    run.flood_start_us = nx_clock_mono_us();
    ev_idle drive;
    ev_idle_init(&drive, flood_drive);
    ev_idle_start(loop, &drive);
    run_loop_until_done();
    ev_idle_stop(loop, &drive);
    f->msgs_per_s = FLOOD_COUNT / ((run.flood_end_us - run.flood_start_us) / 1e6);
    f->connect_p50_us = measure_connect(a);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    nx_log_set_level(NX_LOG_WARN);
    loop = ev_default_loop(0);

    struct end ca = {0}, cb = {0};
    tp_open(&ca);
    tp_open(&cb);
    ca.other = &cb;
    cb.other = &ca;
    tp_link(&ca, &cb);
    tp_link(&cb, &ca);
    struct figures curve;
    measure(&ca, &cb, &curve);
    tp_close(&ca);
    tp_close(&cb);

    void *zctx = zmq_ctx_new();
    struct end pa = {0}, pb = {0};
    plain_open(&pa, zctx);
    plain_open(&pb, zctx);
    pa.other = &pb;
    pb.other = &pa;
    plain_link(&pa, &pb);
    plain_link(&pb, &pa);
    struct figures plain;
    measure(&pa, &pb, &plain);
    plain_close(&pa);
    plain_close(&pb);
    zmq_ctx_term(zctx);

    printf("transport on loopback, %d-byte messages, one libev loop for both ends\n", MSG_BYTES);
    printf("%-28s %12s %12s %14s %16s %14s\n", "setup", "rtt_p50_us", "rtt_p99_us", "one_way_msg/s",
           "fresh_conn_p50_us", "loop_cpu_us/rtt");
    printf("%-28s %12.0f %12.0f %14.0f %16.0f %14.1f\n", "node_transport (CURVE+ZAP)", curve.p50_us,
           curve.p99_us, curve.msgs_per_s, curve.connect_p50_us, curve.cpu_us_per_rtt);
    printf("%-28s %12.0f %12.0f %14.0f %16.0f %14.1f\n", "baseline: plain zmq", plain.p50_us,
           plain.p99_us, plain.msgs_per_s, plain.connect_p50_us, plain.cpu_us_per_rtt);
    printf("%-28s %12.2f %12.2f %14.2f %16.2f %14.2f\n", "ratio transport/baseline",
           curve.p50_us / plain.p50_us, curve.p99_us / plain.p99_us,
           curve.msgs_per_s / plain.msgs_per_s, curve.connect_p50_us / plain.connect_p50_us,
           curve.cpu_us_per_rtt / plain.cpu_us_per_rtt);
    printf("(loop_cpu: CPU time of the one loop thread, both ends, per round trip incl. warm-up;\n"
           " rtt over %d pings after %d warm-up; throughput over %d messages, window %d;\n"
           " fresh connection: close, dial, handshake, first message delivered, %d times)\n",
           RTT_COUNT, RTT_WARMUP, FLOOD_COUNT, WINDOW, CONNECT_COUNT);
    return 0;
}
