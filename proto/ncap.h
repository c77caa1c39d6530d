/*
 * ncap.h - NCAP, the signed envelope that carries every NexusCore message.
 *
 * Owns: the envelope wire format (proto/ncap.proto, docs/ncap.md), the exact
 * byte string that is signed, sealing (encode + sign), opening (decode +
 * every check + verify), the per-sender replay windows and the rejection
 * counters.
 *
 * Never touches: the network, the disk, the clock (now_ms is passed in), the
 * registry (trust is asked through a callback) or what a body means. The
 * transport (ZeroMQ ROUTER/DEALER with CURVE, node/) moves one envelope as
 * one message frame; this module only turns bytes into a checked message and
 * back.
 *
 * Sending:
 *     struct ncap_sender seqs;                  // once, at start-up
 *     ncap_sender_init(&seqs, wall_clock_us);
 *     struct ncap_header h;
 *     ncap_header_init(&h, cluster_id, my_pk, peer_pk_or_NULL, NCAP_MSG_GOSSIP,
 *                      ncap_sender_next_seq(&seqs), nx_clock_wall_ms());
 *     uint8_t *frame; size_t frame_len;
 *     rc = ncap_seal(&h, body, body_len, my_sk, &frame, &frame_len);
 *     ... send frame ..., free(frame);
 *
 * Receiving:
 *     struct ncap_msg m;
 *     rc = ncap_open(verifier, frame, frame_len, nx_clock_wall_ms(), &m);
 *     if (rc == 0) { use m.h, m.body, m.body_len; ncap_msg_free(&m); }
 *
 * Signing costs about as much as a few loopback round trips, so callers
 * batch: one envelope carries many gossip updates or many Raft entries in
 * its body. How a batch is laid out in the body is the caller's business.
 */
#ifndef NX_NCAP_H
#define NX_NCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

#define NCAP_VERSION 1u
#define NCAP_KEY_BYTES 32        /* Ed25519 public key (libsodium raw) */
#define NCAP_SECRET_BYTES 64     /* Ed25519 secret key (libsodium raw: seed || pk) */
#define NCAP_SIG_BYTES 64        /* Ed25519 detached signature */
#define NCAP_CLUSTER_ID_BYTES 16 /* random cluster id */

/* Largest encoded envelope ncap_open accepts: also the transport's ZMQ_MAXMSGSIZE. */
#define NCAP_MAX_ENVELOPE_BYTES (4u * 1024 * 1024)
/* Largest body: the envelope limit minus room for every other field (< 200 bytes). */
#define NCAP_MAX_BODY_BYTES (NCAP_MAX_ENVELOPE_BYTES - 256u)

/* Domain-separation prefix of the signed byte string (16 bytes, no NUL). */
#define NCAP_SIGN_DOMAIN "NCAP-v1-envelope"
#define NCAP_SIGN_DOMAIN_BYTES 16
/* Bytes of the signed string before the body: see ncap_signed_bytes(). */
#define NCAP_SIGNED_HEADER_BYTES 128

/*
 * Replay window: per sender, the highest sequence number accepted and which of
 * the NCAP_REPLAY_WINDOW numbers below it were seen. Any number inside the
 * window not seen yet is accepted (reordering), a repeat or anything older is
 * NX_ERR_REPLAY. Like WireGuard's, with a larger window.
 */
#define NCAP_REPLAY_WINDOW 4096u
/* Senders tracked at once (least recently used evicted); default and maximum. */
#define NCAP_MAX_SENDERS 1024u
/* Guests (untrusted JOIN_REQUEST senders) tracked at once, in a table of their own. */
#define NCAP_MAX_GUESTS 64u
/* Default timestamp window: |timestamp_ms - now_ms| must be at most this. */
#define NCAP_MAX_SKEW_MS 30000u

/* Message types (mirror MsgType in proto/ncap.proto; gaps leave room). */
enum ncap_msg_type {
    NCAP_MSG_NONE = 0, /* never valid on the wire */
    NCAP_MSG_PING = 1,
    NCAP_MSG_PONG = 2,
    NCAP_MSG_GOSSIP = 10,
    NCAP_MSG_RAFT = 20,
    NCAP_MSG_JOIN_REQUEST = 30,
    NCAP_MSG_JOIN_RESPONSE = 31,
    NCAP_MSG_AGENT_RUN = 40,
    NCAP_MSG_AGENT_RESULT = 41,
};

/* Every envelope field except body and signature, as plain C. */
struct ncap_header {
    uint32_t version; /* NCAP_VERSION */
    uint8_t cluster_id[NCAP_CLUSTER_ID_BYTES];
    uint8_t sender[NCAP_KEY_BYTES];    /* the signer's public key */
    uint8_t recipient[NCAP_KEY_BYTES]; /* all zero when !has_recipient */
    bool has_recipient;                /* false: broadcast, any member may open it */
    uint32_t type;                     /* enum ncap_msg_type; opaque to this module */
    uint64_t seq;                      /* from ncap_sender_next_seq() */
    uint64_t timestamp_ms;             /* sender's wall clock, ms since the epoch */
};

/* Fills h with version NCAP_VERSION and the given fields; recipient NULL = broadcast. */
void ncap_header_init(struct ncap_header *h, const uint8_t cluster_id[NCAP_CLUSTER_ID_BYTES],
                      const uint8_t sender[NCAP_KEY_BYTES], const uint8_t *recipient, uint32_t type,
                      uint64_t seq, uint64_t timestamp_ms);

/*
 * Sequence numbers. A sender keeps one counter for all its envelopes (to
 * every recipient). It starts at the wall clock in microseconds at start-up
 * and goes up by one per envelope, so a restarted sender starts above every
 * number it used before (unless it averaged more than one envelope per
 * microsecond over its previous life) and receivers do not take it for a
 * replay. Never persist it; never reuse a value.
 */
struct ncap_sender {
    uint64_t next_seq;
};
void ncap_sender_init(struct ncap_sender *s, uint64_t now_wall_us);
uint64_t ncap_sender_next_seq(struct ncap_sender *s);

/*
 * Encodes and signs one envelope. h->sender must be the public half of
 * secret_key (NX_ERR_INVAL otherwise); h->type must not be NCAP_MSG_NONE and
 * h->version not 0. body (borrowed, may be NULL when body_len is 0) is at
 * most NCAP_MAX_BODY_BYTES (NX_ERR_TOO_BIG). On success *out is a malloc'd
 * buffer of *out_len bytes owned by the caller (free()); it is the one
 * ZeroMQ frame to send. Returns 0, NX_ERR_INVAL, NX_ERR_TOO_BIG or NX_ERR_NOMEM.
 */
int ncap_seal(const struct ncap_header *h, const uint8_t *body, size_t body_len,
              const uint8_t secret_key[NCAP_SECRET_BYTES], uint8_t **out,
              size_t *out_len) NX_MUST_USE;

/*
 * The exact byte string that is signed (docs/ncap.md gives it byte by byte):
 * NCAP_SIGN_DOMAIN, then the fields little-endian at fixed offsets, then the
 * body with a u32 length prefix; NCAP_SIGNED_HEADER_BYTES + body_len bytes in
 * all. Writes into out (cap bytes, borrowed). Returns the length written, or
 * 0 when cap is too small or body_len exceeds NCAP_MAX_BODY_BYTES. Exposed for
 * test vectors and for clients in other languages to compare against.
 */
size_t ncap_signed_bytes(const struct ncap_header *h, const uint8_t *body, size_t body_len,
                         uint8_t *out, size_t cap) NX_MUST_USE;

/* ---- receiving ------------------------------------------------------- */

/* One counter per outcome of ncap_open; read with ncap_verifier_counters(). */
struct ncap_counters {
    uint64_t accepted;        /* includes accepted_guest */
    uint64_t accepted_guest;  /* JOIN_REQUESTs from untrusted senders */
    uint64_t too_big;         /* NX_ERR_TOO_BIG */
    uint64_t decode;          /* NX_ERR_DECODE */
    uint64_t version;         /* NX_ERR_VERSION */
    uint64_t wrong_cluster;   /* NX_ERR_WRONG_CLUSTER */
    uint64_t wrong_recipient; /* NX_ERR_WRONG_RECIPIENT */
    uint64_t unknown_sender;  /* NX_ERR_UNKNOWN_SENDER */
    uint64_t stale;           /* NX_ERR_STALE */
    uint64_t future;          /* NX_ERR_FUTURE */
    uint64_t bad_sig;         /* NX_ERR_BAD_SIG */
    uint64_t replay;          /* NX_ERR_REPLAY */
    uint64_t evicted;         /* sender entries dropped to make room (not a rejection) */
};

/* Answers whether a sender key is a current member (the registry). Must not call ncap_open. */
typedef bool (*ncap_trust_fn)(void *ctx, const uint8_t pk[NCAP_KEY_BYTES]);

struct ncap_verifier_config {
    uint8_t cluster_id[NCAP_CLUSTER_ID_BYTES]; /* ours */
    uint8_t self_pk[NCAP_KEY_BYTES];           /* ours: addressed envelopes must name it */
    ncap_trust_fn is_trusted;                  /* required */
    void *trust_ctx;                           /* borrowed, passed to is_trusted */
    uint64_t max_skew_ms;                      /* 0: NCAP_MAX_SKEW_MS */
    uint32_t max_senders;                      /* 0: NCAP_MAX_SENDERS; at most that */
    /*
     * true: a JOIN_REQUEST from a sender is_trusted() refuses is still
     * accepted (with ncap_msg.guest set) after every other check, its
     * signature verified against its own key, with replays tracked in a
     * separate table of NCAP_MAX_GUESTS entries. No other type is let in.
     */
    bool allow_guest_join;
    /*
     * A sender not in the table (first contact, or evicted) is accepted only
     * with timestamp_ms > this floor (NX_ERR_REPLAY otherwise). The floor
     * rises to the newest timestamp of every evicted sender, so eviction
     * cannot reopen a replay. 0 is fine; a node that wants to refuse replays
     * of envelopes sent before it started passes its start-up wall clock.
     */
    uint64_t new_sender_floor_ms;
};

struct ncap_verifier;

/* Creates a verifier (owned by the caller; ncap_verifier_free). 0, NX_ERR_INVAL or NX_ERR_NOMEM. */
int ncap_verifier_new(const struct ncap_verifier_config *cfg,
                      struct ncap_verifier **out) NX_MUST_USE;
void ncap_verifier_free(struct ncap_verifier *v);
/* Counters since creation; the pointer is valid as long as v. */
const struct ncap_counters *ncap_verifier_counters(const struct ncap_verifier *v);

/* An opened envelope. Free with ncap_msg_free() after use. */
struct ncap_msg {
    struct ncap_header h;
    const uint8_t *body; /* owned by the msg (not by the input bytes); NULL if empty */
    size_t body_len;
    bool guest;     /* sender not trusted: only ever a JOIN_REQUEST */
    void *decoded_; /* private: the decoded protobuf that owns body */
};

/*
 * Decodes one envelope (bytes borrowed for the call) and checks, in this
 * order, each failure with its own code and counter:
 *   len > NCAP_MAX_ENVELOPE_BYTES          NX_ERR_TOO_BIG
 *   not the canonical encoding of a valid  NX_ERR_DECODE (bad protobuf, unknown
 *     Envelope (docs/ncap.md)                fields, wrong field sizes, type 0)
 *   version != NCAP_VERSION                NX_ERR_VERSION
 *   cluster id not ours                    NX_ERR_WRONG_CLUSTER
 *   recipient set and not us               NX_ERR_WRONG_RECIPIENT
 *   sender not trusted (and not a guest)   NX_ERR_UNKNOWN_SENDER
 *   timestamp older than now - skew        NX_ERR_STALE
 *   timestamp newer than now + skew        NX_ERR_FUTURE
 *   seq already seen or below the window   NX_ERR_REPLAY (read-only check)
 *   signature does not verify              NX_ERR_BAD_SIG
 * and only then records seq in the sender's replay window, so a forged
 * envelope can never move a window. On success fills *out (owned by the
 * caller, ncap_msg_free) and returns 0; on failure *out is zeroed and needs
 * no free. NULL arguments give NX_ERR_INVAL (not counted); protobuf-c cannot
 * tell a failed allocation from bad bytes, so that is NX_ERR_DECODE too.
 */
int ncap_open(struct ncap_verifier *v, const uint8_t *bytes, size_t len, uint64_t now_ms,
              struct ncap_msg *out) NX_MUST_USE;
/* Frees what ncap_open put in m; safe on a zeroed msg and twice. */
void ncap_msg_free(struct ncap_msg *m);

#endif
