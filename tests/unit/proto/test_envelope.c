/*
 * Unit tests of proto/ncap: sealing and opening NCAP envelopes, every
 * rejection with its code and counter, the replay window as seen through
 * ncap_open, and the test vector of docs/ncap.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "proto/ncap.h"

#define NOW_MS 1764000000000ull
#define MAX_KEYS 4

struct key {
    uint8_t pk[NCAP_KEY_BYTES], sk[NCAP_SECRET_BYTES];
};

/* A receiver ("self") and a few senders; trust is a list of public keys. */
struct fixture {
    struct key self, alice, bob, mallory; /* mallory is never trusted */
    uint8_t cluster[NCAP_CLUSTER_ID_BYTES];
    const uint8_t *trusted[MAX_KEYS];
    size_t n_trusted;
    struct ncap_verifier *v;
    struct ncap_sender alice_seq;
};

static void key_from_seed(struct key *k, uint8_t seed_byte)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, seed_byte, sizeof seed);
    crypto_sign_seed_keypair(k->pk, k->sk, seed);
}

static bool trust_list(void *ctx, const uint8_t pk[NCAP_KEY_BYTES])
{
    struct fixture *f = ctx;
    for (size_t i = 0; i < f->n_trusted; i++)
        if (memcmp(f->trusted[i], pk, NCAP_KEY_BYTES) == 0)
            return true;
    return false;
}

static struct ncap_verifier_config config_of(struct fixture *f)
{
    struct ncap_verifier_config cfg = {.is_trusted = trust_list, .trust_ctx = f};
    memcpy(cfg.cluster_id, f->cluster, sizeof f->cluster);
    memcpy(cfg.self_pk, f->self.pk, NCAP_KEY_BYTES);
    return cfg;
}

static int setup(void **state)
{
    assert_true(sodium_init() >= 0);
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    key_from_seed(&f->self, 1);
    key_from_seed(&f->alice, 2);
    key_from_seed(&f->bob, 3);
    key_from_seed(&f->mallory, 4);
    memset(f->cluster, 0xc1, sizeof f->cluster);
    f->trusted[f->n_trusted++] = f->alice.pk;
    f->trusted[f->n_trusted++] = f->bob.pk;
    struct ncap_verifier_config cfg = config_of(f);
    assert_int_equal(ncap_verifier_new(&cfg, &f->v), NX_OK);
    ncap_sender_init(&f->alice_seq, NOW_MS * 1000);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    ncap_verifier_free(f->v);
    free(f);
    return 0;
}

/* A sealed envelope from `from` to self; the caller frees it. */
static uint8_t *seal_full(struct fixture *f, const struct key *from, uint32_t type, uint64_t seq,
                          uint64_t ts_ms, const uint8_t *body, size_t body_len, size_t *len)
{
    struct ncap_header h;
    ncap_header_init(&h, f->cluster, from->pk, f->self.pk, type, seq, ts_ms);
    uint8_t *out = NULL;
    assert_int_equal(ncap_seal(&h, body, body_len, from->sk, &out, len), NX_OK);
    return out;
}

static uint8_t *seal_seq(struct fixture *f, uint64_t seq, size_t *len)
{
    static const uint8_t body[] = "gossip batch";
    return seal_full(f, &f->alice, NCAP_MSG_GOSSIP, seq, NOW_MS, body, sizeof body, len);
}

static uint8_t *seal_header(const struct ncap_header *h, const struct key *from, size_t *len)
{
    uint8_t *out = NULL;
    assert_int_equal(ncap_seal(h, (const uint8_t *)"x", 1, from->sk, &out, len), NX_OK);
    return out;
}

/* Opens bytes at NOW_MS, frees the message, returns the code. */
static int open_rc(struct fixture *f, const uint8_t *bytes, size_t len)
{
    struct ncap_msg m;
    int rc = ncap_open(f->v, bytes, len, NOW_MS, &m);
    ncap_msg_free(&m);
    return rc;
}

static int open_seq(struct fixture *f, uint64_t seq)
{
    size_t len;
    uint8_t *env = seal_seq(f, seq, &len);
    int rc = open_rc(f, env, len);
    free(env);
    return rc;
}

static const struct ncap_counters *counters(struct fixture *f)
{
    return ncap_verifier_counters(f->v);
}

static void seal_then_open_returns_every_field(void **state)
{
    struct fixture *f = *state;
    static const uint8_t body[] = "three raft entries";
    size_t len;
    uint64_t seq = ncap_sender_next_seq(&f->alice_seq);
    uint8_t *env = seal_full(f, &f->alice, NCAP_MSG_RAFT, seq, NOW_MS - 5, body, sizeof body, &len);
    struct ncap_msg m;
    assert_int_equal(ncap_open(f->v, env, len, NOW_MS, &m), NX_OK);
    assert_int_equal(m.h.version, NCAP_VERSION);
    assert_memory_equal(m.h.cluster_id, f->cluster, NCAP_CLUSTER_ID_BYTES);
    assert_memory_equal(m.h.sender, f->alice.pk, NCAP_KEY_BYTES);
    assert_true(m.h.has_recipient);
    assert_memory_equal(m.h.recipient, f->self.pk, NCAP_KEY_BYTES);
    assert_int_equal(m.h.type, NCAP_MSG_RAFT);
    assert_int_equal(m.h.seq, seq);
    assert_int_equal(m.h.timestamp_ms, NOW_MS - 5);
    assert_int_equal(m.body_len, sizeof body);
    assert_memory_equal(m.body, body, sizeof body);
    assert_false(m.guest);
    ncap_msg_free(&m);
    ncap_msg_free(&m); /* twice is fine */
    assert_int_equal(counters(f)->accepted, 1);
    free(env);
}

static void broadcast_with_empty_body_opens(void **state)
{
    struct fixture *f = *state;
    struct ncap_header h;
    ncap_header_init(&h, f->cluster, f->bob.pk, NULL, NCAP_MSG_PING, 7, NOW_MS);
    uint8_t *env;
    size_t len;
    assert_int_equal(ncap_seal(&h, NULL, 0, f->bob.sk, &env, &len), NX_OK);
    struct ncap_msg m;
    assert_int_equal(ncap_open(f->v, env, len, NOW_MS, &m), NX_OK);
    assert_false(m.h.has_recipient);
    assert_int_equal(m.body_len, 0);
    assert_null(m.body);
    ncap_msg_free(&m);
    free(env);
}

static void seal_refuses_bad_arguments(void **state)
{
    struct fixture *f = *state;
    struct ncap_header h;
    uint8_t *env;
    size_t len;
    ncap_header_init(&h, f->cluster, f->alice.pk, NULL, NCAP_MSG_PING, 1, NOW_MS);
    /* the secret key must match the sender */
    assert_int_equal(ncap_seal(&h, NULL, 0, f->bob.sk, &env, &len), NX_ERR_INVAL);
    assert_null(env);
    h.type = NCAP_MSG_NONE;
    assert_int_equal(ncap_seal(&h, NULL, 0, f->alice.sk, &env, &len), NX_ERR_INVAL);
    h.type = NCAP_MSG_PING;
    h.version = 0;
    assert_int_equal(ncap_seal(&h, NULL, 0, f->alice.sk, &env, &len), NX_ERR_INVAL);
    h.version = NCAP_VERSION;
    assert_int_equal(ncap_seal(&h, NULL, 5, f->alice.sk, &env, &len), NX_ERR_INVAL);
}

static void verifier_refuses_bad_config(void **state)
{
    struct fixture *f = *state;
    struct ncap_verifier *v = NULL;
    struct ncap_verifier_config cfg = config_of(f);
    cfg.max_senders = NCAP_MAX_SENDERS + 1;
    assert_int_equal(ncap_verifier_new(&cfg, &v), NX_ERR_INVAL);
    cfg = config_of(f);
    cfg.is_trusted = NULL;
    assert_int_equal(ncap_verifier_new(&cfg, &v), NX_ERR_INVAL);
    assert_null(v);
    struct ncap_msg m;
    assert_int_equal(ncap_open(f->v, NULL, 5, NOW_MS, &m), NX_ERR_INVAL);
}

static void every_flipped_byte_is_rejected(void **state)
{
    struct fixture *f = *state;
    static const uint8_t patterns[] = {0x01, 0x80, 0xff, 0x5a};
    size_t len;
    uint8_t *env = seal_seq(f, 1000, &len);
    uint8_t *copy = malloc(len);
    for (size_t i = 0; i < len; i++) {
        for (size_t p = 0; p < sizeof patterns; p++) {
            memcpy(copy, env, len);
            copy[i] ^= patterns[p];
            int rc = open_rc(f, copy, len);
            if (rc == NX_OK)
                fail_msg("flip 0x%02x at byte %zu of %zu was accepted", patterns[p], i, len);
        }
    }
    assert_int_equal(counters(f)->accepted, 0);
    /* and the untouched envelope still opens: no flip moved the window */
    assert_int_equal(open_rc(f, env, len), NX_OK);
    free(copy);
    free(env);
}

static void replayed_envelope_is_rejected_and_counted(void **state)
{
    struct fixture *f = *state;
    size_t len;
    uint8_t *env = seal_seq(f, 42, &len);
    assert_int_equal(open_rc(f, env, len), NX_OK);
    assert_int_equal(open_rc(f, env, len), NX_ERR_REPLAY);
    assert_int_equal(open_rc(f, env, len), NX_ERR_REPLAY);
    assert_int_equal(counters(f)->replay, 2);
    assert_int_equal(counters(f)->accepted, 1);
    free(env);
}

static void timestamps_outside_the_window_are_stale_or_future(void **state)
{
    struct fixture *f = *state;
    size_t len;
    uint8_t *env;
    env = seal_full(f, &f->alice, NCAP_MSG_PING, 1, NOW_MS - NCAP_MAX_SKEW_MS - 1, NULL, 0, &len);
    assert_int_equal(open_rc(f, env, len), NX_ERR_STALE);
    free(env);
    env = seal_full(f, &f->alice, NCAP_MSG_PING, 2, NOW_MS + NCAP_MAX_SKEW_MS + 1, NULL, 0, &len);
    assert_int_equal(open_rc(f, env, len), NX_ERR_FUTURE);
    free(env);
    /* the edges themselves are inside */
    env = seal_full(f, &f->alice, NCAP_MSG_PING, 3, NOW_MS - NCAP_MAX_SKEW_MS, NULL, 0, &len);
    assert_int_equal(open_rc(f, env, len), NX_OK);
    free(env);
    env = seal_full(f, &f->alice, NCAP_MSG_PING, 4, NOW_MS + NCAP_MAX_SKEW_MS, NULL, 0, &len);
    assert_int_equal(open_rc(f, env, len), NX_OK);
    free(env);
    assert_int_equal(counters(f)->stale, 1);
    assert_int_equal(counters(f)->future, 1);
}

static void wrong_cluster_recipient_sender_and_version_are_rejected(void **state)
{
    struct fixture *f = *state;
    struct ncap_header h;
    size_t len;
    uint8_t *env;

    ncap_header_init(&h, f->cluster, f->alice.pk, f->self.pk, NCAP_MSG_PING, 1, NOW_MS);
    h.cluster_id[3] ^= 1;
    env = seal_header(&h, &f->alice, &len);
    assert_int_equal(open_rc(f, env, len), NX_ERR_WRONG_CLUSTER);
    free(env);

    ncap_header_init(&h, f->cluster, f->alice.pk, f->bob.pk, NCAP_MSG_PING, 2, NOW_MS);
    env = seal_header(&h, &f->alice, &len);
    assert_int_equal(open_rc(f, env, len), NX_ERR_WRONG_RECIPIENT);
    free(env);

    ncap_header_init(&h, f->cluster, f->mallory.pk, f->self.pk, NCAP_MSG_PING, 3, NOW_MS);
    env = seal_header(&h, &f->mallory, &len);
    assert_int_equal(open_rc(f, env, len), NX_ERR_UNKNOWN_SENDER);
    free(env);

    ncap_header_init(&h, f->cluster, f->alice.pk, f->self.pk, NCAP_MSG_PING, 4, NOW_MS);
    h.version = NCAP_VERSION + 1;
    env = seal_header(&h, &f->alice, &len);
    assert_int_equal(open_rc(f, env, len), NX_ERR_VERSION);
    free(env);

    const struct ncap_counters *c = counters(f);
    assert_int_equal(c->wrong_cluster, 1);
    assert_int_equal(c->wrong_recipient, 1);
    assert_int_equal(c->unknown_sender, 1);
    assert_int_equal(c->version, 1);
    assert_int_equal(c->accepted, 0);
}

static void envelope_signed_by_another_key_is_bad_sig(void **state)
{
    struct fixture *f = *state;
    /* bob signs a header that claims to be from alice */
    struct ncap_header h;
    ncap_header_init(&h, f->cluster, f->alice.pk, f->self.pk, NCAP_MSG_PING, 1, NOW_MS);
    size_t len;
    uint8_t *env = seal_header(&h, &f->alice, &len);
    uint8_t sig[NCAP_SIG_BYTES];
    uint8_t signed_buf[NCAP_SIGNED_HEADER_BYTES + 1];
    size_t n = ncap_signed_bytes(&h, (const uint8_t *)"x", 1, signed_buf, sizeof signed_buf);
    assert_int_equal(n, sizeof signed_buf);
    crypto_sign_detached(sig, NULL, signed_buf, n, f->bob.sk);
    memcpy(env + len - NCAP_SIG_BYTES, sig, NCAP_SIG_BYTES); /* signature is the last field */
    assert_int_equal(open_rc(f, env, len), NX_ERR_BAD_SIG);
    assert_int_equal(counters(f)->bad_sig, 1);
    free(env);
}

static void forged_envelope_does_not_move_the_window(void **state)
{
    struct fixture *f = *state;
    size_t len;
    /* a far-ahead seq with a broken signature must not push seq 10 out */
    uint8_t *env = seal_seq(f, 10 + 10 * NCAP_REPLAY_WINDOW, &len);
    env[len - 1] ^= 1;
    assert_int_equal(open_rc(f, env, len), NX_ERR_BAD_SIG);
    assert_int_equal(open_seq(f, 10), NX_OK);
    free(env);
}

static void reordering_inside_the_window_is_accepted(void **state)
{
    struct fixture *f = *state;
    uint64_t top = 1000000;
    assert_int_equal(open_seq(f, top), NX_OK);
    assert_int_equal(open_seq(f, top - 1), NX_OK);
    assert_int_equal(open_seq(f, top - 100), NX_OK);
    assert_int_equal(open_seq(f, top - NCAP_REPLAY_WINDOW + 1), NX_OK);
    assert_int_equal(open_seq(f, top + 5), NX_OK);
    assert_int_equal(open_seq(f, top + 3), NX_OK);
    assert_int_equal(counters(f)->accepted, 6);
}

static void duplicate_inside_the_window_is_rejected(void **state)
{
    struct fixture *f = *state;
    uint64_t top = 1000000;
    assert_int_equal(open_seq(f, top), NX_OK);
    assert_int_equal(open_seq(f, top - 7), NX_OK);
    assert_int_equal(open_seq(f, top + 70), NX_OK);
    assert_int_equal(open_seq(f, top - 7), NX_ERR_REPLAY);
    assert_int_equal(open_seq(f, top), NX_ERR_REPLAY);
    assert_int_equal(open_seq(f, top + 70), NX_ERR_REPLAY);
    assert_int_equal(counters(f)->replay, 3);
}

static void older_than_the_window_is_rejected(void **state)
{
    struct fixture *f = *state;
    uint64_t top = 1000000;
    assert_int_equal(open_seq(f, top), NX_OK);
    assert_int_equal(open_seq(f, top - NCAP_REPLAY_WINDOW), NX_ERR_REPLAY);
    assert_int_equal(open_seq(f, 1), NX_ERR_REPLAY);
    assert_int_equal(counters(f)->replay, 2);
}

static void truncated_envelope_is_rejected_at_every_length(void **state)
{
    struct fixture *f = *state;
    size_t len;
    uint8_t *env = seal_seq(f, 5, &len);
    for (size_t n = 0; n < len; n++) {
        /* a fresh heap copy of exactly n bytes, so ASan sees any overread */
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, env, n);
        assert_int_not_equal(open_rc(f, cut, n), NX_OK);
        free(cut);
    }
    assert_int_equal(counters(f)->accepted, 0);
    assert_int_equal(open_rc(f, env, len), NX_OK);
    free(env);
}

static void random_garbage_is_rejected(void **state)
{
    struct fixture *f = *state;
    struct nx_rng rng;
    nx_rng_seed(&rng, 99);
    uint8_t buf[512];
    for (int i = 0; i < 5000; i++) {
        size_t n = nx_rng_below(&rng, sizeof buf + 1);
        for (size_t j = 0; j < n; j++)
            buf[j] = (uint8_t)nx_rng_next(&rng);
        assert_int_not_equal(open_rc(f, buf, n), NX_OK);
    }
    assert_int_equal(counters(f)->accepted, 0);
}

static void non_canonical_encoding_is_rejected(void **state)
{
    struct fixture *f = *state;
    size_t len;
    uint8_t *env = seal_seq(f, 5, &len);
    uint8_t *longer = malloc(len + 4);
    /* a repeated version field: decodes to the same content, but not canonical */
    memcpy(longer, env, len);
    longer[len] = 0x08;
    longer[len + 1] = NCAP_VERSION;
    assert_int_equal(open_rc(f, longer, len + 2), NX_ERR_DECODE);
    /* an unknown field 15 (varint) */
    longer[len] = 15 << 3;
    longer[len + 1] = 1;
    assert_int_equal(open_rc(f, longer, len + 2), NX_ERR_DECODE);
    /* the version field (first, 2 bytes) moved to the end: same fields, other order */
    memcpy(longer, env + 2, len - 2);
    memcpy(longer + len - 2, env, 2);
    assert_int_equal(open_rc(f, longer, len), NX_ERR_DECODE);
    assert_int_equal(counters(f)->decode, 3);
    free(longer);
    free(env);
}

static void frame_of_unknown_fields_is_rejected_quickly(void **state)
{
    struct fixture *f = *state;
    /* 2 million unknown fields: a decoder that keeps each one spends ~1 s on it */
    size_t len = NCAP_MAX_ENVELOPE_BYTES;
    uint8_t *buf = malloc(len);
    for (size_t i = 0; i < len; i += 2) {
        buf[i] = 15 << 3; /* field 15, varint */
        buf[i + 1] = 1;
    }
    uint64_t t0 = nx_clock_mono_us();
    assert_int_equal(open_rc(f, buf, len), NX_ERR_DECODE);
    uint64_t took_us = nx_clock_mono_us() - t0;
    if (took_us > 50000)
        fail_msg("rejecting took %llu us", (unsigned long long)took_us);
    free(buf);
}

static void oversize_is_rejected(void **state)
{
    struct fixture *f = *state;
    size_t big = NCAP_MAX_ENVELOPE_BYTES + 1;
    uint8_t *buf = calloc(1, big);
    assert_int_equal(open_rc(f, buf, big), NX_ERR_TOO_BIG);
    assert_int_equal(counters(f)->too_big, 1);
    struct ncap_header h;
    ncap_header_init(&h, f->cluster, f->alice.pk, NULL, NCAP_MSG_GOSSIP, 1, NOW_MS);
    uint8_t *env;
    size_t len;
    assert_int_equal(ncap_seal(&h, buf, NCAP_MAX_BODY_BYTES + 1, f->alice.sk, &env, &len),
                     NX_ERR_TOO_BIG);
    /* the largest body fits, and opens */
    assert_int_equal(ncap_seal(&h, buf, NCAP_MAX_BODY_BYTES, f->alice.sk, &env, &len), NX_OK);
    assert_true(len <= NCAP_MAX_ENVELOPE_BYTES);
    assert_int_equal(open_rc(f, env, len), NX_OK);
    free(env);
    free(buf);
}

static void restarted_sender_is_accepted(void **state)
{
    struct fixture *f = *state;
    struct ncap_sender first, restarted;
    ncap_sender_init(&first, NOW_MS * 1000);
    for (int i = 0; i < 10; i++)
        assert_int_equal(open_seq(f, ncap_sender_next_seq(&first)), NX_OK);
    /* the process restarts 2 ms later: a fresh counter from the wall clock */
    ncap_sender_init(&restarted, NOW_MS * 1000 + 2000);
    for (int i = 0; i < 10; i++)
        assert_int_equal(open_seq(f, ncap_sender_next_seq(&restarted)), NX_OK);
    assert_int_equal(counters(f)->replay, 0);
}

static void untrusted_join_request_opens_as_guest_only_when_allowed(void **state)
{
    struct fixture *f = *state;
    size_t len;
    uint8_t *join = seal_full(f, &f->mallory, NCAP_MSG_JOIN_REQUEST, 1, NOW_MS, NULL, 0, &len);
    assert_int_equal(open_rc(f, join, len), NX_ERR_UNKNOWN_SENDER);

    struct ncap_verifier_config cfg = config_of(f);
    cfg.allow_guest_join = true;
    struct ncap_verifier *guests;
    assert_int_equal(ncap_verifier_new(&cfg, &guests), NX_OK);
    struct ncap_msg m;
    assert_int_equal(ncap_open(guests, join, len, NOW_MS, &m), NX_OK);
    assert_true(m.guest);
    ncap_msg_free(&m);
    assert_int_equal(ncap_open(guests, join, len, NOW_MS, &m), NX_ERR_REPLAY);
    uint8_t *ping = seal_full(f, &f->mallory, NCAP_MSG_PING, 2, NOW_MS, NULL, 0, &len);
    assert_int_equal(ncap_open(guests, ping, len, NOW_MS, &m), NX_ERR_UNKNOWN_SENDER);
    assert_int_equal(ncap_verifier_counters(guests)->accepted_guest, 1);
    ncap_verifier_free(guests);
    free(ping);
    free(join);
}

static void evicted_sender_cannot_be_replayed(void **state)
{
    struct fixture *f = *state;
    struct ncap_verifier_config cfg = config_of(f);
    cfg.max_senders = 1;
    struct ncap_verifier *v;
    assert_int_equal(ncap_verifier_new(&cfg, &v), NX_OK);
    size_t a_len, b_len, a2_len;
    uint8_t *a = seal_full(f, &f->alice, NCAP_MSG_PING, 1, NOW_MS, NULL, 0, &a_len);
    uint8_t *b = seal_full(f, &f->bob, NCAP_MSG_PING, 1, NOW_MS + 1, NULL, 0, &b_len);
    uint8_t *a2 = seal_full(f, &f->alice, NCAP_MSG_PING, 2, NOW_MS + 2, NULL, 0, &a2_len);
    struct ncap_msg m;
    assert_int_equal(ncap_open(v, a, a_len, NOW_MS, &m), NX_OK);
    ncap_msg_free(&m);
    assert_int_equal(ncap_open(v, b, b_len, NOW_MS, &m), NX_OK); /* evicts alice */
    ncap_msg_free(&m);
    assert_int_equal(ncap_verifier_counters(v)->evicted, 1);
    /* alice's old envelope replayed after her entry is gone: still refused */
    assert_int_equal(ncap_open(v, a, a_len, NOW_MS, &m), NX_ERR_REPLAY);
    /* a newer one from alice is fine (and evicts bob) */
    assert_int_equal(ncap_open(v, a2, a2_len, NOW_MS, &m), NX_OK);
    ncap_msg_free(&m);
    assert_int_equal(ncap_open(v, b, b_len, NOW_MS, &m), NX_ERR_REPLAY);
    ncap_verifier_free(v);
    free(a);
    free(b);
    free(a2);
}

/* docs/ncap.md, "Test vector": keep both in step. */
static const char VECTOR_SIGNED_HEX[] =
    "4e4341502d76312d656e76656c6f706501000000c0c1c2c3c4c5c6c7c8c9cacb"
    "cccdcecf03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664"
    "125531b820000000a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"
    "b8b9babbbcbdbebf0a000000080706050403020100e897b69a0100000b000000"
    "68656c6c6f2c206e636170";
static const char VECTOR_ENVELOPE_HEX[] =
    "08011210c0c1c2c3c4c5c6c7c8c9cacbcccdcecf1a2003a107bff3ce10be1d70"
    "dd18e74bc09967e4d6309ba50d5f1ddc8664125531b82220a0a1a2a3a4a5a6a7"
    "a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf280a30888e98a8c0"
    "e08081013880d0dfb4ab33420b68656c6c6f2c206e6361704a4009a8b25e4103"
    "ca0dfea5452fd4cc52ac4f6cb809900d86f17a0884c139e199e2c4bb05dbd09f"
    "c9610f7aa11ba1abd2f704ff9f8bf24a698a9eee2270a6c73c08";

static void doc_test_vector_matches(void **state)
{
    (void)state;
    uint8_t seed[32], pk[NCAP_KEY_BYTES], sk[NCAP_SECRET_BYTES], cluster[16], recipient[32];
    for (int i = 0; i < 32; i++) {
        seed[i] = (uint8_t)i;
        recipient[i] = (uint8_t)(0xa0 + i);
    }
    for (int i = 0; i < 16; i++)
        cluster[i] = (uint8_t)(0xc0 + i);
    crypto_sign_seed_keypair(pk, sk, seed);
    struct ncap_header h;
    ncap_header_init(&h, cluster, pk, recipient, NCAP_MSG_GOSSIP, 0x0102030405060708ull,
                     1764000000000ull);
    static const char body[] = "hello, ncap";

    uint8_t signed_buf[256];
    char hex[2 * 256 + 1];
    size_t n =
        ncap_signed_bytes(&h, (const uint8_t *)body, strlen(body), signed_buf, sizeof signed_buf);
    assert_int_equal(n, NCAP_SIGNED_HEADER_BYTES + strlen(body));
    nx_hex_encode(hex, signed_buf, n);
    assert_string_equal(hex, VECTOR_SIGNED_HEX);

    uint8_t *env;
    size_t len;
    assert_int_equal(ncap_seal(&h, (const uint8_t *)body, strlen(body), sk, &env, &len), NX_OK);
    assert_true(len <= 256);
    nx_hex_encode(hex, env, len);
    assert_string_equal(hex, VECTOR_ENVELOPE_HEX);
    /* the signature (last 64 bytes) verifies over the signed bytes with plain libsodium */
    assert_int_equal(crypto_sign_verify_detached(env + len - NCAP_SIG_BYTES, signed_buf, n, pk), 0);

    /* and the recipient opens it */
    struct ncap_verifier_config cfg = {.is_trusted = trust_list};
    struct fixture f = {.n_trusted = 1};
    f.trusted[0] = pk;
    cfg.trust_ctx = &f;
    memcpy(cfg.cluster_id, cluster, sizeof cluster);
    memcpy(cfg.self_pk, recipient, sizeof recipient);
    struct ncap_verifier *v;
    assert_int_equal(ncap_verifier_new(&cfg, &v), NX_OK);
    struct ncap_msg m;
    assert_int_equal(ncap_open(v, env, len, 1764000000000ull, &m), NX_OK);
    assert_memory_equal(m.body, body, strlen(body));
    ncap_msg_free(&m);
    ncap_verifier_free(v);
    free(env);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(seal_then_open_returns_every_field),
        T(broadcast_with_empty_body_opens),
        T(seal_refuses_bad_arguments),
        T(verifier_refuses_bad_config),
        T(every_flipped_byte_is_rejected),
        T(replayed_envelope_is_rejected_and_counted),
        T(timestamps_outside_the_window_are_stale_or_future),
        T(wrong_cluster_recipient_sender_and_version_are_rejected),
        T(envelope_signed_by_another_key_is_bad_sig),
        T(forged_envelope_does_not_move_the_window),
        T(reordering_inside_the_window_is_accepted),
        T(duplicate_inside_the_window_is_rejected),
        T(older_than_the_window_is_rejected),
        T(truncated_envelope_is_rejected_at_every_length),
        T(random_garbage_is_rejected),
        T(non_canonical_encoding_is_rejected),
        T(frame_of_unknown_fields_is_rejected_quickly),
        T(oversize_is_rejected),
        T(restarted_sender_is_accepted),
        T(untrusted_join_request_opens_as_guest_only_when_allowed),
        T(evicted_sender_cannot_be_replayed),
        T(doc_test_vector_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
