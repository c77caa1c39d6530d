/*
 * ncap.c - sealing and opening NCAP envelopes.
 *
 * An envelope is the protobuf message ncap.Envelope (proto/ncap.proto). The
 * signature does not cover protobuf bytes: it covers a hand-laid string of
 * fixed-width little-endian fields (ncap_signed_bytes, docs/ncap.md), which
 * any language can rebuild without a protobuf library that encodes exactly
 * like ours. To keep the wire bytes unique all the same, ncap_open accepts
 * only the canonical encoding: it re-encodes what it decoded and compares,
 * byte for byte, without allocating (cmp_buf below). So one content has one
 * byte string, and a flipped byte is always a rejection. The field walk
 * before protobuf-c (fields_in_order) keeps decoding O(len) whatever the
 * input, and the decoded body gets headroom in front of it (headroom_alloc)
 * so the signed string is verified in place, without copying the body.
 *
 * ncap_open checks cheapest first and verifies the signature (about 50 µs)
 * last but one; only after the signature holds does it touch a replay
 * window, so forged envelopes can neither poison a window nor evict a
 * sender.
 */
#include "proto/ncap.h"

#include <assert.h>
#include <stddef.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ncap.pb-c.h"
#include "proto/replay.h"

struct ncap_verifier {
    struct ncap_verifier_config cfg;
    struct ncap_counters counters;
    struct replay_table members; /* trusted senders */
    struct replay_table guests;  /* untrusted JOIN_REQUEST senders */
};

/* Offsets of the signed string (docs/ncap.md, "The signed bytes"). */
enum {
    OFF_DOMAIN = 0,
    OFF_VERSION = 16,
    OFF_CLUSTER = 20,
    OFF_SENDER = 36,
    OFF_RECIPIENT_LEN = 68,
    OFF_RECIPIENT = 72,
    OFF_TYPE = 104,
    OFF_SEQ = 108,
    OFF_TIMESTAMP = 116,
    OFF_BODY_LEN = 124,
    OFF_BODY = 128,
};
static_assert(OFF_BODY == NCAP_SIGNED_HEADER_BYTES, "signed header size");
static_assert(sizeof NCAP_SIGN_DOMAIN - 1 == NCAP_SIGN_DOMAIN_BYTES, "domain size");
static_assert(OFF_VERSION == OFF_DOMAIN + NCAP_SIGN_DOMAIN_BYTES, "layout");
static_assert(OFF_SENDER == OFF_CLUSTER + NCAP_CLUSTER_ID_BYTES, "layout");
static_assert(OFF_RECIPIENT_LEN == OFF_SENDER + NCAP_KEY_BYTES, "layout");
static_assert(OFF_TYPE == OFF_RECIPIENT + NCAP_KEY_BYTES, "layout");
static_assert(NCAP_MAX_BODY_BYTES <= UINT32_MAX, "body length fits its u32 prefix");
static_assert(NCAP_SECRET_BYTES == crypto_sign_SECRETKEYBYTES, "libsodium sizes");
static_assert(NCAP_KEY_BYTES == crypto_sign_PUBLICKEYBYTES, "libsodium sizes");
static_assert(NCAP_SIG_BYTES == crypto_sign_BYTES, "libsodium sizes");

static void put_le32(uint8_t *p, uint32_t x)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

void ncap_header_init(struct ncap_header *h, const uint8_t cluster_id[NCAP_CLUSTER_ID_BYTES],
                      const uint8_t sender[NCAP_KEY_BYTES], const uint8_t *recipient, uint32_t type,
                      uint64_t seq, uint64_t timestamp_ms)
{
    memset(h, 0, sizeof *h);
    h->version = NCAP_VERSION;
    memcpy(h->cluster_id, cluster_id, NCAP_CLUSTER_ID_BYTES);
    memcpy(h->sender, sender, NCAP_KEY_BYTES);
    if (recipient) {
        memcpy(h->recipient, recipient, NCAP_KEY_BYTES);
        h->has_recipient = true;
    }
    h->type = type;
    h->seq = seq;
    h->timestamp_ms = timestamp_ms;
}

void ncap_sender_init(struct ncap_sender *s, uint64_t now_wall_us)
{
    s->next_seq = now_wall_us;
}

uint64_t ncap_sender_next_seq(struct ncap_sender *s)
{
    return s->next_seq++;
}

/* Writes the NCAP_SIGNED_HEADER_BYTES that precede the body in the signed string. */
static void signed_header_write(const struct ncap_header *h, size_t body_len, uint8_t *out)
{
    memcpy(out + OFF_DOMAIN, NCAP_SIGN_DOMAIN, NCAP_SIGN_DOMAIN_BYTES);
    put_le32(out + OFF_VERSION, h->version);
    memcpy(out + OFF_CLUSTER, h->cluster_id, NCAP_CLUSTER_ID_BYTES);
    memcpy(out + OFF_SENDER, h->sender, NCAP_KEY_BYTES);
    put_le32(out + OFF_RECIPIENT_LEN, h->has_recipient ? NCAP_KEY_BYTES : 0);
    if (h->has_recipient)
        memcpy(out + OFF_RECIPIENT, h->recipient, NCAP_KEY_BYTES);
    else
        memset(out + OFF_RECIPIENT, 0, NCAP_KEY_BYTES);
    put_le32(out + OFF_TYPE, h->type);
    put_le64(out + OFF_SEQ, h->seq);
    put_le64(out + OFF_TIMESTAMP, h->timestamp_ms);
    put_le32(out + OFF_BODY_LEN, (uint32_t)body_len);
}

size_t ncap_signed_bytes(const struct ncap_header *h, const uint8_t *body, size_t body_len,
                         uint8_t *out, size_t cap)
{
    if (body_len > NCAP_MAX_BODY_BYTES || cap < NCAP_SIGNED_HEADER_BYTES + body_len)
        return 0;
    signed_header_write(h, body_len, out);
    if (body_len)
        memcpy(out + OFF_BODY, body, body_len);
    return NCAP_SIGNED_HEADER_BYTES + body_len;
}

static ProtobufCBinaryData bin(const uint8_t *p, size_t len)
{
    return (ProtobufCBinaryData){.len = len, .data = (uint8_t *)p};
}

int ncap_seal(const struct ncap_header *h, const uint8_t *body, size_t body_len,
              const uint8_t secret_key[NCAP_SECRET_BYTES], uint8_t **out, size_t *out_len)
{
    uint8_t sig[NCAP_SIG_BYTES];
    int rc = NX_OK;

    if (!h || !secret_key || !out || !out_len || (!body && body_len))
        return NX_ERR_INVAL;
    *out = NULL;
    *out_len = 0;
    if (h->version == 0 || h->type == NCAP_MSG_NONE)
        return NX_ERR_INVAL;
    if (body_len > NCAP_MAX_BODY_BYTES)
        return NX_ERR_TOO_BIG;
    /* libsodium's secret key is seed || public key. */
    if (sodium_memcmp(secret_key + NCAP_SECRET_BYTES - NCAP_KEY_BYTES, h->sender, NCAP_KEY_BYTES) !=
        0)
        return NX_ERR_INVAL;
    if (sodium_init() < 0)
        return NX_ERR_INTERNAL;

    size_t signed_len = NCAP_SIGNED_HEADER_BYTES + body_len;
    uint8_t *signed_buf = malloc(signed_len);
    if (!signed_buf)
        return NX_ERR_NOMEM;
    size_t n = ncap_signed_bytes(h, body, body_len, signed_buf, signed_len);
    NX_ASSERT(n == signed_len);
    crypto_sign_detached(sig, NULL, signed_buf, signed_len, secret_key);

    Ncap__Envelope env = NCAP__ENVELOPE__INIT;
    env.version = h->version;
    env.cluster_id = bin(h->cluster_id, NCAP_CLUSTER_ID_BYTES);
    env.sender = bin(h->sender, NCAP_KEY_BYTES);
    if (h->has_recipient)
        env.recipient = bin(h->recipient, NCAP_KEY_BYTES);
    env.type = h->type;
    env.seq = h->seq;
    env.timestamp_ms = h->timestamp_ms;
    env.body = bin(body, body_len);
    env.signature = bin(sig, NCAP_SIG_BYTES);

    size_t packed_len = ncap__envelope__get_packed_size(&env);
    NX_ASSERT(packed_len <= NCAP_MAX_ENVELOPE_BYTES);
    *out = malloc(packed_len);
    if (!*out) {
        rc = NX_ERR_NOMEM;
        goto err_free_signed;
    }
    *out_len = ncap__envelope__pack(&env, *out);
    NX_ASSERT(*out_len == packed_len);

err_free_signed:
    free(signed_buf);
    return rc;
}

/* ---- receiving ------------------------------------------------------- */

int ncap_verifier_new(const struct ncap_verifier_config *cfg, struct ncap_verifier **out)
{
    int rc;

    if (!cfg || !out || !cfg->is_trusted || cfg->max_senders > NCAP_MAX_SENDERS)
        return NX_ERR_INVAL;
    *out = NULL;
    if (sodium_init() < 0)
        return NX_ERR_INTERNAL;
    struct ncap_verifier *v = calloc(1, sizeof *v);
    if (!v)
        return NX_ERR_NOMEM;
    v->cfg = *cfg;
    if (v->cfg.max_skew_ms == 0)
        v->cfg.max_skew_ms = NCAP_MAX_SKEW_MS;
    if (v->cfg.max_senders == 0)
        v->cfg.max_senders = NCAP_MAX_SENDERS;
    rc = replay_table_init(&v->members, v->cfg.max_senders, cfg->new_sender_floor_ms);
    if (rc)
        goto err_free_v;
    rc = replay_table_init(&v->guests, NCAP_MAX_GUESTS, cfg->new_sender_floor_ms);
    if (rc)
        goto err_free_members;
    *out = v;
    return NX_OK;

err_free_members:
    replay_table_free(&v->members);
err_free_v:
    free(v);
    return rc;
}

void ncap_verifier_free(struct ncap_verifier *v)
{
    if (!v)
        return;
    replay_table_free(&v->members);
    replay_table_free(&v->guests);
    free(v);
}

const struct ncap_counters *ncap_verifier_counters(const struct ncap_verifier *v)
{
    return &v->counters;
}

/*
 * Decoding allocator: every block protobuf-c allocates (the Envelope and each
 * bytes field) gets NCAP_SIGNED_HEADER_BYTES of headroom in front, so the
 * signed string, header then body, is laid out in front of the decoded body
 * without copying a possibly 4 MiB body again (verify_sig).
 */
static void *headroom_alloc(void *ctx, size_t size)
{
    (void)ctx;
    if (size > SIZE_MAX - NCAP_SIGNED_HEADER_BYTES)
        return NULL;
    uint8_t *p = malloc(NCAP_SIGNED_HEADER_BYTES + size);
    return p ? p + NCAP_SIGNED_HEADER_BYTES : NULL;
}

static void headroom_free(void *ctx, void *p)
{
    (void)ctx;
    if (p)
        free((uint8_t *)p - NCAP_SIGNED_HEADER_BYTES);
}

static ProtobufCAllocator headroom = {.alloc = headroom_alloc, .free = headroom_free};

void ncap_msg_free(struct ncap_msg *m)
{
    if (!m)
        return;
    if (m->decoded_)
        ncap__envelope__free_unpacked(m->decoded_, &headroom);
    memset(m, 0, sizeof *m);
}

/* Where each rejection is counted, by -code; 0 (the offset of `accepted`): not counted. */
static_assert(offsetof(struct ncap_counters, accepted) == 0, "0 means not counted");
#define COUNTER(err, field) [-(err)] = offsetof(struct ncap_counters, field)
static const size_t counter_at[NX_ERR__COUNT] = {
    COUNTER(NX_ERR_TOO_BIG, too_big),
    COUNTER(NX_ERR_DECODE, decode),
    COUNTER(NX_ERR_VERSION, version),
    COUNTER(NX_ERR_WRONG_CLUSTER, wrong_cluster),
    COUNTER(NX_ERR_WRONG_RECIPIENT, wrong_recipient),
    COUNTER(NX_ERR_UNKNOWN_SENDER, unknown_sender),
    COUNTER(NX_ERR_STALE, stale),
    COUNTER(NX_ERR_FUTURE, future),
    COUNTER(NX_ERR_BAD_SIG, bad_sig),
    COUNTER(NX_ERR_REPLAY, replay),
};

/* Counts a rejection under its code and returns the code. */
static int reject(struct ncap_verifier *v, int err)
{
    NX_ASSERT(err < 0 && err > -NX_ERR__COUNT);
    if (counter_at[-err])
        (*(uint64_t *)((char *)&v->counters + counter_at[-err]))++;
    return err;
}

/* A ProtobufCBuffer that compares what is appended with expected bytes. */
struct cmp_buf {
    ProtobufCBuffer base; /* first: protobuf-c calls append with &base */
    const uint8_t *want;
    size_t want_len, pos;
    const uint8_t *body; /* the decoded body: a copy of the input at this point */
    bool differs;
};

static void cmp_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    struct cmp_buf *c = (struct cmp_buf *)b;
    /* The body was copied out of the input at this very offset (all bytes
     * before it matched, and it occurs once), so it need not be compared. */
    bool same = !c->differs && len <= c->want_len - c->pos &&
                ((data == c->body && len) || memcmp(c->want + c->pos, data, len) == 0);
    c->differs = !same;
    c->pos += same ? len : 0;
}

static bool is_canonical(const Ncap__Envelope *env, const uint8_t *bytes, size_t len)
{
    struct cmp_buf c = {
        .base = {.append = cmp_append}, .want = bytes, .want_len = len, .body = env->body.data};
    ncap__envelope__pack_to_buffer(env, &c.base);
    return !c.differs && c.pos == len;
}

/* Reads one varint at *pos (at most 10 bytes, within len); false if cut short or too long. */
static bool read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *val)
{
    *val = 0;
    for (unsigned shift = 0; shift < 70 && *pos < len; shift += 7) {
        uint8_t b = p[(*pos)++];
        *val |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

/*
 * Walks the field keys before protobuf-c sees the bytes: only fields 1-9,
 * each with its own wire type, in increasing order. protobuf-c would keep
 * every unknown field in an allocation of its own: a 4 MiB frame of them
 * costs it most of a second, this walk a few nanoseconds. So decoding is
 * O(len) with at most nine fields, whatever an attacker sends.
 */
static bool fields_in_order(const uint8_t *p, size_t len)
{
    /* wire type per field number: 0 varint, 2 length-delimited */
    static const uint8_t wire_type[] = {
        [1] = 0, [2] = 2, [3] = 2, [4] = 2, [5] = 0, [6] = 0, [7] = 0, [8] = 2, [9] = 2};
    size_t pos = 0;
    uint64_t last = 0, key, val;
    while (pos < len) {
        if (!read_varint(p, len, &pos, &key))
            return false;
        uint64_t field = key >> 3;
        if (field <= last || field >= NX_ARRAY_LEN(wire_type) || (key & 7) != wire_type[field])
            return false;
        if (!read_varint(p, len, &pos, &val))
            return false;
        if ((key & 7) == 2) {
            if (val > len - pos)
                return false;
            pos += val;
        }
        last = field;
    }
    return true;
}

/* The decode-level rules of docs/ncap.md: sizes, type, canonical bytes. */
static int check_shape(const Ncap__Envelope *env, const uint8_t *bytes, size_t len)
{
    if (env->base.n_unknown_fields || env->cluster_id.len != NCAP_CLUSTER_ID_BYTES ||
        env->sender.len != NCAP_KEY_BYTES ||
        (env->recipient.len != 0 && env->recipient.len != NCAP_KEY_BYTES) ||
        env->signature.len != NCAP_SIG_BYTES || env->type == NCAP_MSG_NONE)
        return NX_ERR_DECODE;
    if (env->body.len > NCAP_MAX_BODY_BYTES)
        return NX_ERR_TOO_BIG;
    if (!is_canonical(env, bytes, len))
        return NX_ERR_DECODE;
    return NX_OK;
}

static void header_from(struct ncap_header *h, const Ncap__Envelope *env)
{
    memset(h, 0, sizeof *h);
    h->version = env->version;
    memcpy(h->cluster_id, env->cluster_id.data, NCAP_CLUSTER_ID_BYTES);
    memcpy(h->sender, env->sender.data, NCAP_KEY_BYTES);
    h->has_recipient = env->recipient.len == NCAP_KEY_BYTES;
    if (h->has_recipient)
        memcpy(h->recipient, env->recipient.data, NCAP_KEY_BYTES);
    h->type = env->type;
    h->seq = env->seq;
    h->timestamp_ms = env->timestamp_ms;
}

static int check_time(const struct ncap_verifier *v, uint64_t ts_ms, uint64_t now_ms)
{
    if (now_ms > ts_ms && now_ms - ts_ms > v->cfg.max_skew_ms)
        return NX_ERR_STALE;
    if (ts_ms > now_ms && ts_ms - now_ms > v->cfg.max_skew_ms)
        return NX_ERR_FUTURE;
    return NX_OK;
}

/* Verifies in place: the signed header goes into the headroom before the body. */
static int verify_sig(const struct ncap_header *h, const Ncap__Envelope *env)
{
    uint8_t no_body[NCAP_SIGNED_HEADER_BYTES];
    uint8_t *start = env->body.len ? env->body.data - NCAP_SIGNED_HEADER_BYTES : no_body;
    signed_header_write(h, env->body.len, start);
    if (crypto_sign_verify_detached(env->signature.data, start,
                                    NCAP_SIGNED_HEADER_BYTES + env->body.len, h->sender) != 0)
        return NX_ERR_BAD_SIG;
    return NX_OK;
}

int ncap_open(struct ncap_verifier *v, const uint8_t *bytes, size_t len, uint64_t now_ms,
              struct ncap_msg *out)
{
    struct ncap_header h;
    int rc;

    if (!v || !out || (!bytes && len))
        return NX_ERR_INVAL;
    memset(out, 0, sizeof *out);
    if (len > NCAP_MAX_ENVELOPE_BYTES)
        return reject(v, NX_ERR_TOO_BIG);
    if (!fields_in_order(bytes, len))
        return reject(v, NX_ERR_DECODE);
    Ncap__Envelope *env = ncap__envelope__unpack(&headroom, len, bytes);
    if (!env)
        return reject(v, NX_ERR_DECODE);
    rc = check_shape(env, bytes, len);
    if (rc)
        goto err_reject;
    header_from(&h, env);

    rc = NX_ERR_VERSION;
    if (h.version != NCAP_VERSION)
        goto err_reject;
    rc = NX_ERR_WRONG_CLUSTER;
    if (memcmp(h.cluster_id, v->cfg.cluster_id, NCAP_CLUSTER_ID_BYTES) != 0)
        goto err_reject;
    rc = NX_ERR_WRONG_RECIPIENT;
    if (h.has_recipient && memcmp(h.recipient, v->cfg.self_pk, NCAP_KEY_BYTES) != 0)
        goto err_reject;
    bool guest = false;
    if (!v->cfg.is_trusted(v->cfg.trust_ctx, h.sender)) {
        rc = NX_ERR_UNKNOWN_SENDER;
        if (!v->cfg.allow_guest_join || h.type != NCAP_MSG_JOIN_REQUEST)
            goto err_reject;
        guest = true;
    }
    rc = check_time(v, h.timestamp_ms, now_ms);
    if (rc)
        goto err_reject;
    struct replay_table *table = guest ? &v->guests : &v->members;
    rc = NX_ERR_REPLAY;
    if (!replay_would_accept(table, h.sender, h.seq, h.timestamp_ms))
        goto err_reject;
    rc = verify_sig(&h, env);
    if (rc)
        goto err_reject;
    replay_commit(table, h.sender, h.seq, h.timestamp_ms);
    v->counters.evicted = v->members.evicted + v->guests.evicted;

    v->counters.accepted++;
    v->counters.accepted_guest += guest;
    out->h = h;
    out->body = env->body.len ? env->body.data : NULL;
    out->body_len = env->body.len;
    out->guest = guest;
    out->decoded_ = env;
    return NX_OK;

err_reject:
    ncap__envelope__free_unpacked(env, &headroom);
    return reject(v, rc);
}
