/*
 * raft.h - Raft consensus as a pure state machine (etcd-raft Ready/Advance style).
 *
 * Owns: the Raft protocol state of one node: term, vote, the log since the
 * last snapshot (kept in memory), commit and applied indexes, the member
 * configuration (voters and non-voting learners), per-peer replication
 * progress and flow control, pending ReadIndex requests and leader transfer.
 *
 * Never touches: the network, the disk, a clock or a random source of its own.
 * Time comes in as logical ticks (raft_tick), randomness from a struct nx_rng
 * seeded by the host (raft_config.seed). The host persists, sends and applies
 * what raft_ready() hands out, following the contract below (docs/raft.md).
 *
 * The Ready/Advance contract, for one node:
 *
 *     while (raft_has_ready(r)) {
 *         struct raft_ready rd;
 *         raft_ready(r, &rd);
 *         // 0. optionally send rd.msgs[0 .. rd.n_msgs_early) now (see below);
 *         // 1. ONE synced write: if rd.snapshot, replace the stored snapshot and
 *         //    delete every stored log entry; then delete stored entries with
 *         //    index >= rd.entries[0].index and write rd.entries; then write
 *         //    rd.hard_state if rd.has_hard_state.
 *         // 2. send the rest of rd.msgs (all of them if step 0 sent none);
 *         //    they may be dropped, duplicated or reordered;
 *         // 3. install rd.snapshot into the state machine if set, then apply
 *         //    rd.committed in order (an empty NORMAL entry is a leader's no-op;
 *         //    CONF entries are already in force); serve rd.reads once
 *         //    applied >= index; log rd.events;
 *         // 4. raft_advance(r, &rd).
 *     }
 *
 * The first rd.n_msgs_early messages are a leader's appends and heartbeats
 * of a term already durable: they may leave before or while the write of
 * step 1 runs, so the followers' disks work in parallel with the leader's
 * (Raft thesis 10.2.1). The core counts the leader's own entries towards a
 * quorum only after raft_advance (the write is done). Every other message
 * (votes, acknowledgements) waits for the synced write.
 *
 * Between raft_ready() and raft_advance() the host calls no other raft_
 * function on that node. Pointers in a raft_ready are borrowed from the core
 * and stay valid until raft_advance().
 *
 * Ids: a node is a nonzero uint64; the host maps node keys to ids. Id 0 means
 * "none" (no leader, no vote).
 */
#ifndef NX_RAFT_H
#define NX_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ---- limits ------------------------------------------------------------ */

#define RAFT_MAX_NODES 16                                    /* voters + learners in one config */
#define RAFT_MAX_MSG_ENTRIES 256                             /* entries in one append message */
#define RAFT_MAX_ENTRY_BYTES_LIMIT (4u << 20)                /* hard cap on max_entry_bytes */
#define RAFT_MAX_SNAPSHOT_BYTES (64u << 20)                  /* a whole snapshot (sent in chunks) */
#define RAFT_MAX_SNAPSHOT_CHUNKS 1024u                       /* chunks of one snapshot */
#define RAFT_MAX_MSG_BYTES (RAFT_MAX_SNAPSHOT_BYTES + 4096u) /* encoded message */
#define RAFT_MAX_INFLIGHT_MSGS_LIMIT 1024                    /* hard cap on max_inflight_msgs */
#define RAFT_MAX_PENDING_READS 1024                          /* queued ReadIndex requests */
#define RAFT_MAX_APPLY_BATCH 512                             /* committed entries per ready */
#define RAFT_MAX_MSGS 4096                                   /* queued outgoing messages */

/* ---- basic types -------------------------------------------------------- */

enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_PRE_CANDIDATE = 1,
    RAFT_CANDIDATE = 2,
    RAFT_LEADER = 3,
};

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0, /* host data (may be empty: the leader's no-op) */
    RAFT_ENTRY_CONF = 1,   /* a full member configuration (raft_conf_encode) */
};

/* One log entry. data is borrowed (see each function). */
struct raft_entry {
    uint64_t term;
    uint64_t index;
    uint8_t type; /* enum raft_entry_type */
    uint32_t len;
    const uint8_t *data;
};

/* A member configuration: voters count towards quorums, learners only replicate. */
struct raft_conf {
    uint32_t n_voters;
    uint32_t n_learners;
    uint64_t voters[RAFT_MAX_NODES];
    uint64_t learners[RAFT_MAX_NODES];
};

/* What must be durable before any message of the same ready leaves the node. */
struct raft_hard_state {
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
};

/* Volatile state, for the host's information (routing, metrics). */
struct raft_soft_state {
    uint64_t leader; /* 0: unknown */
    enum raft_role role;
};

/* A snapshot: the state machine after applying every entry up to index. */
struct raft_snapshot {
    uint64_t index;
    uint64_t term;
    struct raft_conf conf; /* configuration as of index */
    uint32_t len;
    const uint8_t *data; /* borrowed */
};

/* A confirmed ReadIndex request: serve it once applied >= index. */
struct raft_read_state {
    uint64_t ctx; /* the host's request id, as given to raft_read_index */
    uint64_t index;
};

/* ---- messages ----------------------------------------------------------- */

enum raft_msg_type {
    RAFT_MSG_APPEND = 1,         /* index/log_term: previous entry; entries; commit */
    RAFT_MSG_APPEND_RESP = 2,    /* index: last matching index, or rejected prev index */
    RAFT_MSG_VOTE = 3,           /* index/log_term: candidate's last entry */
    RAFT_MSG_VOTE_RESP = 4,      /* reject */
    RAFT_MSG_PRE_VOTE = 5,       /* term: the term the candidate would take */
    RAFT_MSG_PRE_VOTE_RESP = 6,  /* reject */
    RAFT_MSG_HEARTBEAT = 7,      /* commit; ctx: read round */
    RAFT_MSG_HEARTBEAT_RESP = 8, /* ctx: echoed read round */
    RAFT_MSG_SNAPSHOT = 9,       /* snapshot */
    RAFT_MSG_TIMEOUT_NOW = 10,   /* leader transfer: campaign now */
};
#define RAFT_MSG_TYPE_MAX 10

#define RAFT_MSG_FLAG_TRANSFER 0x1u /* vote asked because of a leader transfer */

/*
 * One message. For messages handed out by raft_ready, entries and snapshot
 * data are owned by the core until raft_advance. For decoded messages they
 * point into the decoded buffer and the entries array is freed by
 * raft_msg_clear.
 */
struct raft_msg {
    uint8_t type; /* enum raft_msg_type */
    uint8_t flags;
    bool reject;
    uint64_t from;
    uint64_t to;
    uint64_t term;
    uint64_t log_term;
    uint64_t index;
    uint64_t commit;
    uint64_t hint_index; /* rejected append: where the follower's log diverges */
    uint64_t hint_term;  /* rejected append: follower's term at the conflict, 0 if none */
    uint64_t ctx;
    uint32_t n_entries;
    struct raft_entry *entries;
    /*
     * RAFT_MSG_SNAPSHOT only: one chunk. snapshot.data/len are the bytes at
     * snap_offset of a snapshot of snap_total bytes; snap_chunk is the sender's
     * chunk size (every chunk but the last is that long).
     */
    struct raft_snapshot snapshot;
    uint32_t snap_offset;
    uint32_t snap_total;
    uint32_t snap_chunk;
};

/*
 * Encodes m into out (capacity cap). Layout: version byte, varint fields,
 * entries, snapshot, CRC-32 trailer. Returns the encoded length (> 0) or
 * NX_ERR_TOO_BIG / NX_ERR_INVAL.
 */
long raft_msg_encode(const struct raft_msg *m, uint8_t *out, size_t cap) NX_MUST_USE;
/* Upper bound of raft_msg_encode's output for m. */
size_t raft_msg_encoded_size(const struct raft_msg *m);
/*
 * Decodes buf into out. Rejects anything malformed, oversized, with trailing
 * bytes or a bad checksum with NX_ERR_DECODE (or NX_ERR_NOMEM); never asserts
 * on input. On success out->entries and snapshot data borrow from buf (buf
 * must outlive out); call raft_msg_clear(out) afterwards. On failure out is
 * left cleared.
 */
int raft_msg_decode(const uint8_t *buf, size_t len, struct raft_msg *out) NX_MUST_USE;
/* Frees what raft_msg_decode allocated. */
void raft_msg_clear(struct raft_msg *m);
/* Short name of a message type ("append", ...), never NULL. */
const char *raft_msg_type_name(int type);

/* Configuration entry payload: encodes conf (n_voters, n_learners, ids). */
size_t raft_conf_encoded_size(const struct raft_conf *c);
long raft_conf_encode(const struct raft_conf *c, uint8_t *out, size_t cap) NX_MUST_USE;
/* Validates ids (nonzero, no duplicates, limits); NX_ERR_DECODE otherwise. */
int raft_conf_decode(const uint8_t *buf, size_t len, struct raft_conf *out) NX_MUST_USE;
bool raft_conf_is_voter(const struct raft_conf *c, uint64_t id);
bool raft_conf_is_learner(const struct raft_conf *c, uint64_t id);

/* ---- the node ----------------------------------------------------------- */

struct raft_config {
    uint64_t id;                /* this node, nonzero */
    uint32_t election_tick_min; /* randomized election timeout in [min, max] ticks */
    uint32_t election_tick_max;
    uint32_t heartbeat_tick;       /* leader heartbeat interval in ticks, < election_tick_min */
    uint32_t max_inflight_msgs;    /* appends in flight per follower */
    uint64_t max_inflight_bytes;   /* entry bytes in flight per follower */
    uint32_t max_entry_bytes;      /* largest proposal accepted */
    uint32_t max_msg_bytes;        /* entry bytes per append (at least one entry is sent) */
    uint32_t snapshot_chunk_bytes; /* snapshot data per message */
    bool pre_vote;
    bool check_quorum;
    uint64_t seed; /* seeds the core's PRNG (randomized timeouts) */
};

/* Fills sensible defaults (election 10..20 ticks, heartbeat 2, PreVote and CheckQuorum on). */
void raft_config_default(struct raft_config *cfg, uint64_t id, uint64_t seed);

/*
 * What the host read back from durable storage at start. For a new cluster:
 * zero hard state, snapshot.index 0 and snapshot.conf the bootstrap members
 * (empty for a node that joins later and waits to be contacted).
 * All pointers are borrowed for the call; the core copies what it keeps.
 */
struct raft_boot {
    struct raft_hard_state hard_state;
    struct raft_snapshot snapshot;    /* last installed/compacted snapshot (index 0: none) */
    const struct raft_entry *entries; /* stored log after snapshot.index, consecutive */
    size_t n_entries;
    uint64_t applied; /* state machine's durable applied index (>= snapshot.index), or 0 */
};

struct raft;

/* Creates a node; *out is owned by the caller (raft_destroy). NX_ERR_INVAL or
 * NX_ERR_CORRUPT when cfg or boot is inconsistent. */
int raft_create(const struct raft_config *cfg, const struct raft_boot *boot,
                struct raft **out) NX_MUST_USE;
void raft_destroy(struct raft *r);

/* One logical clock tick. */
void raft_tick(struct raft *r);
/* Starts an election now (a pre-vote first when enabled). NX_ERR_STATE if not a voter. */
int raft_campaign(struct raft *r) NX_MUST_USE;
/* Feeds one message (borrowed). Messages for another node or malformed are dropped. */
int raft_step(struct raft *r, const struct raft_msg *m) NX_MUST_USE;
/*
 * Appends a normal entry (data borrowed, copied). On success *index_out (may be
 * NULL) is the entry's index. NX_ERR_NOT_LEADER, NX_ERR_TOO_BIG, NX_ERR_AGAIN
 * (leader transfer in progress).
 */
int raft_propose(struct raft *r, const void *data, size_t len, uint64_t *index_out) NX_MUST_USE;

enum raft_conf_op {
    RAFT_CONF_ADD_VOTER = 1,
    RAFT_CONF_ADD_LEARNER = 2,
    RAFT_CONF_PROMOTE = 3, /* learner -> voter */
    RAFT_CONF_REMOVE = 4,  /* voter or learner */
};
/*
 * Proposes a one-server membership change. NX_ERR_NOT_LEADER; NX_ERR_AGAIN when
 * an earlier change is not committed yet or the leader has not committed an
 * entry of its own term; NX_ERR_INVAL / NX_ERR_EXISTS / NX_ERR_NOT_FOUND /
 * NX_ERR_FULL for an impossible change.
 */
int raft_propose_conf_change(struct raft *r, enum raft_conf_op op, uint64_t node,
                             uint64_t *index_out) NX_MUST_USE;
/*
 * Linearizable read: ctx is the host's request id, returned in a raft_read_state
 * once a quorum confirmed this leader. NX_ERR_NOT_LEADER, NX_ERR_AGAIN (no entry
 * of this term committed yet), NX_ERR_FULL.
 */
int raft_read_index(struct raft *r, uint64_t ctx) NX_MUST_USE;
/* Hands leadership to voter `to`. NX_ERR_NOT_LEADER, NX_ERR_INVAL. */
int raft_transfer_leader(struct raft *r, uint64_t to) NX_MUST_USE;
/*
 * Host compaction: the state machine at `index` (<= applied) is `data` (borrowed,
 * copied: it is sent to followers that fell behind). The core drops its log up to
 * index; the host stores the snapshot and deletes its stored entries <= index.
 * NX_ERR_TOO_BIG when data needs more than RAFT_MAX_SNAPSHOT_CHUNKS chunks.
 */
int raft_compact(struct raft *r, uint64_t index, const void *data, size_t len) NX_MUST_USE;

/* ---- trace events --------------------------------------------------------
 * The core does not log: it reports what happened in rd.events, and the host
 * turns them into log lines (tests read them as transcripts).
 */
#define RAFT_MAX_EVENTS 64 /* per ready; more are counted in a RAFT_EV_DROPPED */

enum raft_event_type {
    RAFT_EV_ROLE = 1,              /* a: new enum raft_role, b: leader id (0: unknown) */
    RAFT_EV_CAMPAIGN = 2,          /* a: 1 pre-vote, 0 vote; b: 1 when asked by a transfer */
    RAFT_EV_CHECK_QUORUM_LOST = 3, /* the leader steps down: a: voters heard from */
    RAFT_EV_CONF = 4,              /* configuration in force changed: a: index, b: voters */
    RAFT_EV_SNAPSHOT_SENT = 5,     /* a: to, b: snapshot index */
    RAFT_EV_SNAPSHOT_INSTALL = 6,  /* a: snapshot index, b: its term */
    RAFT_EV_TRANSFER_ABORT = 7,    /* a: transferee */
    RAFT_EV_APPEND_REFUSED = 8,    /* would truncate committed entries: a: from, b: index */
    RAFT_EV_MSG_DROPPED = 9,       /* outbox full: a: messages dropped so far */
    RAFT_EV_DROPPED = 10,          /* a: events lost because the event list was full */
};

struct raft_event {
    uint8_t type; /* enum raft_event_type */
    uint64_t term;
    uint64_t a;
    uint64_t b;
};

/* Short name of an event type ("role", ...), never NULL. */
const char *raft_event_name(int type);

/* ---- ready / advance ---------------------------------------------------- */

struct raft_ready {
    bool has_soft_state;
    struct raft_soft_state soft_state;
    bool has_hard_state;
    struct raft_hard_state hard_state;
    const struct raft_snapshot *snapshot; /* to persist and install, or NULL */
    const struct raft_entry *entries;     /* to persist (overwrite from entries[0].index) */
    size_t n_entries;
    const struct raft_msg *msgs; /* to send after the write is synced, but: */
    size_t n_msgs;
    size_t n_msgs_early;                /* msgs[0 .. n_msgs_early) may be sent before the write */
    const struct raft_entry *committed; /* to apply, in order */
    size_t n_committed;
    const struct raft_read_state *reads;
    size_t n_reads;
    const struct raft_event *events; /* for the host's log; nothing to do */
    size_t n_events;
};

bool raft_has_ready(const struct raft *r);
/* Fills rd; everything in it is borrowed until raft_advance. */
void raft_ready(struct raft *r, struct raft_ready *rd);
/* Tells the core the host did everything rd asked. */
void raft_advance(struct raft *r, const struct raft_ready *rd);

/* ---- inspection (host decisions, tests, the simulator) ------------------ */

struct raft_progress {
    uint64_t match;
    uint64_t next;
    bool recent_active;
    uint32_t inflight_msgs;
    uint64_t inflight_bytes;
};

uint64_t raft_id(const struct raft *r);
uint64_t raft_term(const struct raft *r);
uint64_t raft_vote(const struct raft *r);
enum raft_role raft_role(const struct raft *r);
uint64_t raft_leader(const struct raft *r);
uint64_t raft_commit_index(const struct raft *r);
uint64_t raft_applied_index(const struct raft *r);
uint64_t raft_first_index(const struct raft *r); /* first entry kept in memory */
uint64_t raft_last_index(const struct raft *r);
/* Term of the entry at index (snapshot index included); false if unknown. */
bool raft_entry_term(const struct raft *r, uint64_t index, uint64_t *term);
/* Entry at index in [first_index, last_index], borrowed until the next call; else NULL. */
const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index);
const struct raft_conf *raft_current_conf(const struct raft *r);
/* Leader only: replication progress of node id. NX_ERR_NOT_LEADER, NX_ERR_NOT_FOUND. */
int raft_progress(const struct raft *r, uint64_t id, struct raft_progress *out) NX_MUST_USE;
const char *raft_role_name(enum raft_role role);

/* ---- in-memory durable storage (tests and the simulator) ----------------
 *
 * Models a node's disk: what raft_mem_persist() wrote survives a crash, the
 * core's memory does not. The RocksDB store follows the same rules.
 */
struct raft_mem;

/* New empty storage; bootstrap (borrowed, may be NULL) is the initial members. */
int raft_mem_create(const struct raft_conf *bootstrap, struct raft_mem **out) NX_MUST_USE;
void raft_mem_destroy(struct raft_mem *m);
/* Step 1 of the Ready contract: snapshot, entries, hard state, as one write. */
int raft_mem_persist(struct raft_mem *m, const struct raft_ready *rd) NX_MUST_USE;
/* Stores a host-made snapshot (after raft_compact) and drops entries <= index. */
int raft_mem_compact(struct raft_mem *m, uint64_t index, const void *data, size_t len) NX_MUST_USE;
/* A view of the stored state for raft_create; borrowed until the next raft_mem_ call. */
void raft_mem_boot(const struct raft_mem *m, struct raft_boot *out);
/* Stored entries after the snapshot (for checks). */
uint64_t raft_mem_last_index(const struct raft_mem *m);

#endif
