/*
 * gossip.h - SWIM membership and failure detection with Lifeguard, as a pure
 * state machine.
 *
 * Owns: the member table (who is in the cluster, at which incarnation, in which
 * state, with which advertised metadata), the probe schedule (ping, ping-req,
 * ack, nack), suspicion timers, the piggy-back broadcast queue, push-pull
 * anti-entropy, the local health multiplier, and the compact binary wire format
 * of gossip messages.
 *
 * Never touches: sockets, clocks, random sources, files, threads or the logger.
 * Time enters as now_ms in every call; randomness comes from a struct nx_rng
 * seeded by the host. Messages enter and leave as plain bytes plus the peer id
 * (a 32-byte public key) and the peer's address string, so the host can carry
 * them in any transport (the node wraps them in NCAP envelope bodies, which
 * authenticate from_id). The core never asserts on received bytes: malformed
 * input returns NX_ERR_DECODE and is counted.
 *
 * Driving loop (etcd raft "Ready" style):
 *
 *     core = gossip_create(&cfg, self_id, &meta, incarnation, seed, now);
 *     gossip_join(core, now, seed_id, "host:port");          optional
 *     loop:
 *         gossip_tick(core, now)            when now >= ready.next_deadline_ms
 *         gossip_receive(core, now, from, bytes, len)   for each message
 *         gossip_ready(core, &ready)        send ready.msgs, handle ready.events
 *         gossip_advance(core)              releases what ready() returned
 *
 * See docs/gossip.md for the protocol, wire format and parameters.
 */
#ifndef NX_GOSSIP_H
#define NX_GOSSIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ---- limits (each bounded thing has a name) ---------------------------- */

#define GOSSIP_ID_BYTES 32               /* node id: an Ed25519 public key */
#define GOSSIP_ADDR_MAX 63               /* "host:port", bytes without NUL */
#define GOSSIP_VERSION_MAX 31            /* software version string */
#define GOSSIP_LABELS_MAX 8              /* labels per member */
#define GOSSIP_LABEL_KEY_MAX 31          /* label key bytes */
#define GOSSIP_LABEL_VALUE_MAX 63        /* label value bytes */
#define GOSSIP_GPUS_MAX 16               /* GPUs whose memory is listed */
#define GOSSIP_META_MAX_BYTES 1024       /* hard cap on encoded metadata */
#define GOSSIP_MEMBERS_LIMIT (1u << 20)  /* hard cap on config.max_members */
#define GOSSIP_WIRE_MAX_BYTES (1u << 20) /* no message, in or out, is larger */
#define GOSSIP_MSG_MIN_BYTES 256         /* smallest allowed config.max_msg_bytes */
#define GOSSIP_INDIRECT_K_MAX 8          /* ping-req helpers per failed probe */
#define GOSSIP_RELAYS_MAX 64             /* ping-reqs we relay at one time */
#define GOSSIP_OUTBOX_MAX 1024           /* messages waiting for gossip_ready */
#define GOSSIP_EVENTS_MAX 8192           /* events waiting for gossip_ready */
#define GOSSIP_LHM_MAX 8                 /* local health multiplier ceiling */

/* ---- configuration ----------------------------------------------------- */

struct gossip_config {
    uint32_t probe_interval_ms;     /* protocol period T (1000) */
    uint32_t probe_timeout_ms;      /* direct ack wait before ping-req (500) */
    uint32_t indirect_k;            /* ping-req helpers (3) */
    uint32_t suspicion_mult;        /* min suspicion = mult*max(1,log10 N)*T (4) */
    uint32_t suspicion_max_mult;    /* Lifeguard max = this * min (6) */
    uint32_t retransmit_mult;       /* lambda: sends = lambda*ceil(log10(N+1)) (4) */
    uint32_t push_pull_interval_ms; /* anti-entropy period, 0 = off (30000) */
    bool lifeguard_awareness;       /* local health multiplier (true) */
    bool lifeguard_suspicion;       /* dynamic suspicion timeout (true) */
    bool lifeguard_nack;            /* relays send nack on timeout (true) */
    bool trace;                     /* also emit GOSSIP_TRACE_* events (false) */
    uint32_t max_members;           /* member table size incl. self (4096) */
    uint32_t max_meta_bytes;        /* encoded metadata cap (512) */
    uint32_t max_msg_bytes;         /* probe/ack/gossip message cap (1400) */
    uint32_t max_piggyback_bytes;   /* updates carried per message (1024) */
    uint32_t max_push_pull_bytes;   /* push-pull message cap (65536) */
};

/* Fills in the defaults given in the comments above. */
void gossip_config_default(struct gossip_config *cfg);

/* ---- member metadata --------------------------------------------------- */

enum gossip_raft_role {
    GOSSIP_RAFT_NONE = 0,
    GOSSIP_RAFT_LEARNER = 1,
    GOSSIP_RAFT_FOLLOWER = 2,
    GOSSIP_RAFT_CANDIDATE = 3,
    GOSSIP_RAFT_LEADER = 4,
    GOSSIP_RAFT__COUNT = 5
};

struct gossip_label {
    char key[GOSSIP_LABEL_KEY_MAX + 1];     /* NUL-terminated */
    char value[GOSSIP_LABEL_VALUE_MAX + 1]; /* NUL-terminated */
};

/* What a member advertises. Strings are NUL-terminated. */
struct gossip_meta {
    char addr[GOSSIP_ADDR_MAX + 1];       /* where to send to this member */
    char version[GOSSIP_VERSION_MAX + 1]; /* software version */
    enum gossip_raft_role raft_role;
    uint32_t cpu_free_millicores;
    uint32_t cpu_total_millicores;
    uint64_t mem_free_bytes;
    uint64_t mem_total_bytes;
    uint32_t gpu_count;
    uint32_t gpu_mem_count; /* entries used in gpu_mem_bytes */
    uint64_t gpu_mem_bytes[GOSSIP_GPUS_MAX];
    uint32_t label_count;
    struct gossip_label labels[GOSSIP_LABELS_MAX];
};

/*
 * Encodes meta into out (cap bytes); returns the length or a negative nx_err
 * (NX_ERR_TOO_BIG when it does not fit, NX_ERR_INVAL when a field is out of
 * range). Exposed for tests and for hosts that want the byte size.
 */
int gossip_meta_encode(const struct gossip_meta *meta, uint8_t *out, size_t cap) NX_MUST_USE;
/* Decodes exactly len bytes; 0 or NX_ERR_DECODE. */
int gossip_meta_decode(struct gossip_meta *meta, const uint8_t *in, size_t len) NX_MUST_USE;

/* ---- members, events, outgoing messages -------------------------------- */

enum gossip_state {
    GOSSIP_ALIVE = 0,
    GOSSIP_SUSPECT = 1,
    GOSSIP_DEAD = 2,
    GOSSIP_LEFT = 3,
    GOSSIP_STATE__COUNT = 4
};

const char *gossip_state_name(enum gossip_state state);

struct gossip_member_info {
    uint8_t id[GOSSIP_ID_BYTES];
    enum gossip_state state;
    uint64_t incarnation;
    uint64_t state_change_ms; /* now_ms when the state last changed here */
    struct gossip_meta meta;
};

enum gossip_event_kind {
    GOSSIP_EV_JOIN = 0,    /* a member we did not know is alive */
    GOSSIP_EV_ALIVE = 1,   /* a suspect, dead or left member is alive again */
    GOSSIP_EV_SUSPECT = 2, /* a member is suspected */
    GOSSIP_EV_DEAD = 3,    /* a member is declared dead */
    GOSSIP_EV_LEFT = 4,    /* a member left gracefully */
    GOSSIP_EV_META = 5,    /* an alive member's metadata changed */
    GOSSIP_EV_REFUTE = 6,  /* we refuted a suspicion about ourselves */
    /* trace events, only with config.trace */
    GOSSIP_TRACE_PROBE = 7,       /* ping sent to id */
    GOSSIP_TRACE_ACK = 8,         /* probe of id acknowledged */
    GOSSIP_TRACE_PING_REQ = 9,    /* direct probe of id timed out, ping-reqs sent */
    GOSSIP_TRACE_NACK = 10,       /* a helper could not reach id */
    GOSSIP_TRACE_PROBE_FAIL = 11, /* probe of id failed (suspicion follows) */
    GOSSIP_TRACE_PUSH_PULL = 12,  /* push-pull started with id */
    GOSSIP_EV__COUNT = 13
};

const char *gossip_event_name(enum gossip_event_kind kind);

struct gossip_event {
    enum gossip_event_kind kind;
    uint8_t id[GOSSIP_ID_BYTES]; /* the member concerned */
    uint64_t incarnation;
    uint64_t now_ms;
};

/* One message to send. data is owned by the core until gossip_advance. */
struct gossip_out_msg {
    uint8_t to_id[GOSSIP_ID_BYTES];
    char to_addr[GOSSIP_ADDR_MAX + 1];
    const uint8_t *data;
    size_t len;
};

struct gossip_ready {
    const struct gossip_out_msg *msgs; /* borrowed until gossip_advance */
    size_t msg_count;
    const struct gossip_event *events; /* borrowed until gossip_advance */
    size_t event_count;
    uint64_t next_deadline_ms; /* call gossip_tick at or after this */
};

/* ---- counters ---------------------------------------------------------- */

enum gossip_msg_type {
    GOSSIP_MSG_PING = 1,
    GOSSIP_MSG_PING_REQ = 2,
    GOSSIP_MSG_ACK = 3,
    GOSSIP_MSG_NACK = 4,
    GOSSIP_MSG_PUSH_PULL = 5,
    GOSSIP_MSG_PUSH_PULL_REPLY = 6,
    GOSSIP_MSG_GOSSIP = 7, /* updates only: leave, corrections of stale views */
    GOSSIP_MSG__COUNT = 8
};

enum gossip_drop {
    GOSSIP_DROP_DECODE = 0,       /* malformed bytes */
    GOSSIP_DROP_TOO_BIG = 1,      /* larger than GOSSIP_WIRE_MAX_BYTES */
    GOSSIP_DROP_MISDIRECTED = 2,  /* ping for another target */
    GOSSIP_DROP_UNKNOWN_PEER = 3, /* no address to answer to */
    GOSSIP_DROP_STALE_ACK = 4,    /* ack/nack for no probe in flight */
    GOSSIP_DROP_RELAYS_FULL = 5,  /* too many ping-reqs in flight */
    GOSSIP_DROP_TABLE_FULL = 6,   /* new member, table full of live members */
    GOSSIP_DROP_OUTBOX_FULL = 7,  /* host did not drain gossip_ready */
    GOSSIP_DROP_EVENTS_FULL = 8,  /* host did not drain events */
    GOSSIP_DROP_META = 9,         /* metadata over max_meta_bytes */
    GOSSIP_DROP_LEFT = 10,        /* input after we left */
    GOSSIP_DROP__COUNT = 11
};

struct gossip_counters {
    uint64_t msgs_sent[GOSSIP_MSG__COUNT];
    uint64_t msgs_received[GOSSIP_MSG__COUNT];
    uint64_t bytes_sent;
    uint64_t bytes_received;
    uint64_t drops[GOSSIP_DROP__COUNT];
    uint64_t probes;             /* probes started */
    uint64_t probes_failed;      /* no ack at all in the period */
    uint64_t suspicions_raised;  /* by our own failed probes */
    uint64_t suspicions_learned; /* new suspicions heard from others */
    uint64_t refutations;        /* suspicions about us we refuted */
    uint64_t deaths_declared;    /* suspicion timeouts that fired here */
    uint64_t evictions;          /* dead/left members forgotten to make room */
    uint64_t updates_sent;       /* piggy-backed updates sent */
    uint64_t updates_received;
    uint64_t verdicts_deferred; /* failed probes re-judged after our LHM rose */
};

/* ---- life cycle -------------------------------------------------------- */

struct gossip_core;

/*
 * Creates a core. cfg and self_meta are copied. incarnation is where our own
 * incarnation starts: the host passes something that grows across restarts
 * (wall-clock ms or a persisted counter) so a restarted node overrides what
 * others remember about its previous life. seed seeds the core's PRNG.
 * Returns NULL on bad config, oversized metadata or out of memory.
 * Owned by the caller; free with gossip_destroy.
 */
struct gossip_core *gossip_create(const struct gossip_config *cfg,
                                  const uint8_t self_id[GOSSIP_ID_BYTES],
                                  const struct gossip_meta *self_meta, uint64_t incarnation,
                                  uint64_t seed, uint64_t now_ms) NX_MUST_USE;
void gossip_destroy(struct gossip_core *core);

/* ---- inputs ------------------------------------------------------------ */

/* Runs timers due at now_ms (probes, ping-req, suspicion, push-pull). */
void gossip_tick(struct gossip_core *core, uint64_t now_ms);

/*
 * One message from from_id (authenticated by the transport). msg is borrowed.
 * Returns 0, NX_ERR_DECODE or NX_ERR_TOO_BIG for bad bytes (counted, no state
 * changed), or NX_ERR_STATE after we left.
 */
int gossip_receive(struct gossip_core *core, uint64_t now_ms,
                   const uint8_t from_id[GOSSIP_ID_BYTES], const uint8_t *msg,
                   size_t len) NX_MUST_USE;

/*
 * Contacts a seed with a push-pull; repeated every probe interval until some
 * other member is known. addr is copied. NX_ERR_INVAL for a bad address.
 */
int gossip_join(struct gossip_core *core, uint64_t now_ms, const uint8_t seed_id[GOSSIP_ID_BYTES],
                const char *seed_addr) NX_MUST_USE;

/*
 * Leaves gracefully: marks ourselves left and sends that news to a few
 * members. Afterwards the core stops probing and refuses input.
 */
void gossip_leave(struct gossip_core *core, uint64_t now_ms);

/*
 * Replaces our metadata (copied) and gossips it with a higher incarnation.
 * NX_ERR_TOO_BIG when it encodes above max_meta_bytes, NX_ERR_INVAL for bad
 * fields. Hosts should call this when resources change noticeably, not on
 * every sample.
 */
int gossip_set_meta(struct gossip_core *core, uint64_t now_ms,
                    const struct gossip_meta *meta) NX_MUST_USE;

/*
 * Adds or updates a member as alive without any message, as if learned from
 * gossip but without re-broadcasting it. For bootstrapping large simulations
 * and for hosts restoring a persisted view. NX_ERR_FULL, NX_ERR_TOO_BIG.
 */
int gossip_add_member(struct gossip_core *core, uint64_t now_ms, const uint8_t id[GOSSIP_ID_BYTES],
                      uint64_t incarnation, const struct gossip_meta *meta) NX_MUST_USE;

/* ---- outputs ----------------------------------------------------------- */

/* What to send, what happened, when to tick next. Valid until gossip_advance. */
void gossip_ready(struct gossip_core *core, struct gossip_ready *out);
/* Releases everything the last gossip_ready returned. */
void gossip_advance(struct gossip_core *core);

/* ---- queries ----------------------------------------------------------- */

/* Members in the table, ourselves included (index 0 is always us). */
size_t gossip_member_count(const struct gossip_core *core);
/* Number of members alive or suspect, ourselves included. */
size_t gossip_live_count(const struct gossip_core *core);
/* Copies member `index` (0 <= index < count) into out; NX_ERR_NOT_FOUND. */
int gossip_member_get(const struct gossip_core *core, size_t index,
                      struct gossip_member_info *out) NX_MUST_USE;
/* Looks a member up by id; NX_ERR_NOT_FOUND. */
int gossip_member_find(const struct gossip_core *core, const uint8_t id[GOSSIP_ID_BYTES],
                       struct gossip_member_info *out) NX_MUST_USE;
/* State of a member by id without copying metadata; false when unknown. */
bool gossip_member_state(const struct gossip_core *core, const uint8_t id[GOSSIP_ID_BYTES],
                         enum gossip_state *state, uint64_t *incarnation);
const struct gossip_counters *gossip_counters(const struct gossip_core *core);
/* Local health multiplier, 0..GOSSIP_LHM_MAX (always 0 without awareness). */
unsigned gossip_health(const struct gossip_core *core);
/* Current suspicion timeout with c independent confirmations, in ms. */
uint64_t gossip_suspicion_timeout_ms(const struct gossip_core *core, unsigned confirmations);

#endif
