/*
 * raft.c - the Raft protocol core: election, replication, commit, ReadIndex,
 * leader transfer, snapshots and one-server-at-a-time membership changes.
 *
 * A pure state machine: inputs are ticks, messages and host requests; outputs
 * are collected and handed out by raft_ready() (see raft.h and docs/raft.md).
 *
 * Role diagram (every transition resets the election timer):
 *
 *            timeout (pre_vote)          pre-vote quorum
 *   FOLLOWER ------------------> PRE_CANDIDATE ---------> CANDIDATE --vote quorum--> LEADER
 *      ^  |   timeout (no pre_vote) / TimeoutNow            ^  |                     |
 *      |  +-------------------------------------------------+  | timeout: new term   |
 *      +--------- higher term, or a leader of this term -------+---------------------+
 *                 (leader also: CheckQuorum lost, or removed by a committed config)
 *
 * Invariants kept here (checked by the simulator from outside):
 *  I1 the log holds entries (snap_index, last]; their indexes are consecutive
 *     and their terms never decrease.
 *  I2 snap_index <= applied <= commit <= last_index; stable <= last_index.
 *  I3 committed entries are never truncated: a message that would do so is dropped.
 *  I4 the active configuration is the last CONF entry in the log, else the
 *     snapshot's: a configuration takes effect when appended (thesis 4.1).
 *  I5 a leader counts replication only for entries of its own term (Figure 8).
 *  I6 at most one membership change is uncommitted, and none is proposed before
 *     the leader committed an entry of its term.
 *  I7 a leader's own match is at most what the host persisted (stable): a
 *     quorum is a quorum of durable copies even though the leader sends its
 *     entries while they are still being written (thesis 10.2.1).
 */
#include <stdlib.h>
#include <string.h>

#include "consensus/raft.h"

enum pr_state { PR_PROBE, PR_REPLICATE, PR_SNAPSHOT };

struct progress {
    uint64_t id;
    uint64_t match;
    uint64_t next;
    enum pr_state state;
    bool probe_sent;
    bool recent_active;
    uint64_t pending_snapshot;
    uint32_t snap_elapsed; /* ticks since the snapshot was sent */
    uint64_t read_ack;     /* highest read round this peer answered */
    /* in-flight appends (replicate state): ring slot `ring` of (last index, bytes) */
    uint32_t ring;
    uint32_t infl_start;
    uint32_t infl_count;
    uint64_t infl_total_bytes;
};

struct pending_read {
    uint64_t ctx;
    uint64_t index;
    uint64_t seq;
};

struct raft {
    struct raft_config cfg;
    struct nx_rng rng;
    uint64_t id;
    uint64_t term;
    uint64_t vote;
    uint64_t leader;
    enum raft_role role;

    /* log: entries (snap_index, snap_index + n_ents], data owned */
    uint64_t snap_index;
    uint64_t snap_term;
    struct raft_entry *ents;
    size_t n_ents;
    size_t cap_ents;

    uint64_t commit;
    uint64_t applied;
    uint64_t stable; /* entries <= stable were handed to the host for persisting */

    struct raft_snapshot snap; /* last snapshot; data owned */
    bool snap_install;         /* snap must go out in the next ready */

    /* a snapshot arriving in chunks: rx.data is rx_buf, rx_have marks chunks received */
    bool rx_active;
    struct raft_snapshot rx;
    uint8_t *rx_buf;
    uint8_t *rx_have;
    uint32_t rx_chunk;
    uint32_t rx_n_chunks;
    uint32_t rx_got;

    struct raft_conf conf;
    uint64_t conf_index; /* index of the CONF entry in force; snap_index if from snapshot */

    struct progress prs[RAFT_MAX_NODES];
    uint32_t n_prs;
    uint64_t *ring_index[RAFT_MAX_NODES]; /* owned; max_inflight_msgs each */
    uint64_t *ring_bytes[RAFT_MAX_NODES];

    uint64_t votes_from[RAFT_MAX_NODES];
    bool votes_granted[RAFT_MAX_NODES];
    uint32_t n_votes;

    uint32_t election_elapsed;
    uint32_t heartbeat_elapsed;
    uint32_t randomized_timeout;
    uint64_t transferee;
    uint32_t transfer_elapsed;
    bool bcast_pending;

    uint64_t read_seq;
    struct pending_read reads[RAFT_MAX_PENDING_READS];
    uint32_t n_reads;
    struct raft_read_state ready_reads[RAFT_MAX_PENDING_READS];
    uint32_t n_ready_reads;

    struct raft_msg *msgs; /* entries and snapshot data of each owned */
    size_t n_msgs;
    size_t cap_msgs;

    struct raft_event events[RAFT_MAX_EVENTS];
    uint32_t n_events;
    uint64_t events_lost;

    struct raft_hard_state prev_hs;
    struct raft_soft_state prev_ss;
    bool in_ready;
    uint64_t rd_stable;
    uint64_t rd_applied;
    bool rd_snap;
    uint64_t dropped_msgs; /* outbox overflow */
};

/* ---- invariants (debug builds: NX_DEBUG_CHECKS) ------------------------- */

#ifdef NX_DEBUG_CHECKS
static void check_invariants(const struct raft *r)
{
    uint64_t prev = r->snap_term;
    for (size_t i = 0; i < r->n_ents; i++) {
        NX_ASSERT(r->ents[i].index == r->snap_index + 1 + i); /* I1 */
        NX_ASSERT(r->ents[i].term >= prev);                   /* I1 */
        prev = r->ents[i].term;
    }
    uint64_t last = r->snap_index + r->n_ents;
    if (!r->snap_install)
        NX_ASSERT(r->snap_index <= r->applied); /* I2 */
    NX_ASSERT(r->applied <= r->commit && r->commit <= last && r->stable <= last);
    NX_ASSERT(r->role != RAFT_LEADER || r->leader == r->id);
    NX_ASSERT(r->n_prs == r->conf.n_voters + r->conf.n_learners);
    for (uint32_t i = 0; i < r->n_prs; i++)
        NX_ASSERT(r->role != RAFT_LEADER || r->prs[i].id != r->id ||
                  r->prs[i].match <= r->stable); /* I7 */
}
#define CHECK_INVARIANTS(r) check_invariants(r)
#else
#define CHECK_INVARIANTS(r) ((void)(r))
#endif

/* ---- trace events ------------------------------------------------------- */

static void emit(struct raft *r, uint8_t type, uint64_t a, uint64_t b)
{
    if (r->n_events + 1 >= RAFT_MAX_EVENTS) {
        /* keep the last slot for the loss report */
        r->events_lost++;
        r->events[RAFT_MAX_EVENTS - 1] =
            (struct raft_event){RAFT_EV_DROPPED, r->term, r->events_lost, 0};
        r->n_events = RAFT_MAX_EVENTS;
        return;
    }
    r->events[r->n_events++] = (struct raft_event){type, r->term, a, b};
}

const char *raft_event_name(int type)
{
    static const char *const names[] = {
        "none",           "role",          "campaign",         "check_quorum_lost",
        "conf",           "snapshot_sent", "snapshot_install", "transfer_abort",
        "append_refused", "msg_dropped",   "events_dropped",
    };
    if (type < 0 || type >= (int)NX_ARRAY_LEN(names))
        return "unknown";
    return names[type];
}

/* ---- log ---------------------------------------------------------------- */

static uint64_t last_index(const struct raft *r)
{
    return r->snap_index + r->n_ents;
}

static bool term_at(const struct raft *r, uint64_t i, uint64_t *t)
{
    if (i == r->snap_index) {
        *t = r->snap_term;
        return true;
    }
    if (i < r->snap_index || i > last_index(r))
        return false;
    *t = r->ents[i - r->snap_index - 1].term;
    return true;
}

static uint64_t last_term(const struct raft *r)
{
    uint64_t t = 0;
    (void)term_at(r, last_index(r), &t);
    return t;
}

static bool match_term(const struct raft *r, uint64_t i, uint64_t t)
{
    uint64_t x;
    return term_at(r, i, &x) && x == t;
}

static const struct raft_entry *entry(const struct raft *r, uint64_t i)
{
    NX_ASSERT(i > r->snap_index && i <= last_index(r));
    return &r->ents[i - r->snap_index - 1];
}

static int log_append(struct raft *r, uint64_t term, uint8_t type, const void *data, size_t len)
{
    if (r->n_ents == r->cap_ents) {
        size_t cap = r->cap_ents ? r->cap_ents * 2 : 64;
        struct raft_entry *n = realloc(r->ents, cap * sizeof *n);
        if (!n)
            return NX_ERR_NOMEM;
        r->ents = n;
        r->cap_ents = cap;
    }
    uint8_t *copy = NULL;
    if (len > 0) {
        copy = malloc(len);
        if (!copy)
            return NX_ERR_NOMEM;
        memcpy(copy, data, len);
    }
    struct raft_entry *e = &r->ents[r->n_ents];
    e->term = term;
    e->index = last_index(r) + 1;
    e->type = type;
    e->len = (uint32_t)len;
    e->data = copy;
    r->n_ents++;
    return NX_OK;
}

/* Drops entries >= i from memory. */
static void log_truncate(struct raft *r, uint64_t i)
{
    NX_ASSERT(i > r->snap_index && i > r->commit);
    while (last_index(r) >= i) {
        r->n_ents--;
        free((void *)r->ents[r->n_ents].data);
    }
    if (r->stable >= i)
        r->stable = i - 1;
}

/* Drops entries <= i from memory (they are in a snapshot now). */
static void log_compact(struct raft *r, uint64_t i, uint64_t term)
{
    size_t drop = 0;
    if (i >= last_index(r)) {
        drop = r->n_ents;
    } else if (i > r->snap_index) {
        drop = (size_t)(i - r->snap_index);
    }
    for (size_t k = 0; k < drop; k++)
        free((void *)r->ents[k].data);
    memmove(r->ents, r->ents + drop, (r->n_ents - drop) * sizeof *r->ents);
    r->n_ents -= drop;
    r->snap_index = i;
    r->snap_term = term;
    if (r->stable < i)
        r->stable = i;
}

static bool log_up_to_date(const struct raft *r, uint64_t lterm, uint64_t lindex)
{
    uint64_t t = last_term(r);
    return lterm > t || (lterm == t && lindex >= last_index(r));
}

/* ---- configuration and progress ---------------------------------------- */

static uint32_t quorum(const struct raft *r)
{
    return r->conf.n_voters / 2 + 1;
}

static bool is_voter(const struct raft *r, uint64_t id)
{
    return raft_conf_is_voter(&r->conf, id);
}

static struct progress *progress_of(struct raft *r, uint64_t id)
{
    for (uint32_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].id == id)
            return &r->prs[i];
    return NULL;
}

/*
 * What this node's own copy counts towards a quorum: only entries the host
 * has persisted (I7). A leader hands its new entries out for sending before
 * they are synced (raft_ready's n_msgs_early), so its own log may be ahead of
 * its disk; counting it would let one follower plus an unsynced leader commit.
 */
static uint64_t self_persisted(const struct raft *r)
{
    return r->stable < last_index(r) ? r->stable : last_index(r);
}

static void infl_reset(struct progress *p)
{
    p->infl_start = 0;
    p->infl_count = 0;
    p->infl_total_bytes = 0;
}

static bool infl_full(const struct raft *r, const struct progress *p)
{
    return p->infl_count >= r->cfg.max_inflight_msgs ||
           p->infl_total_bytes >= r->cfg.max_inflight_bytes;
}

static void infl_add(const struct raft *r, struct progress *p, uint64_t index, uint64_t bytes)
{
    NX_ASSERT(p->infl_count < r->cfg.max_inflight_msgs);
    uint32_t slot = (p->infl_start + p->infl_count) % r->cfg.max_inflight_msgs;
    r->ring_index[p->ring][slot] = index;
    r->ring_bytes[p->ring][slot] = bytes;
    p->infl_count++;
    p->infl_total_bytes += bytes;
}

static void infl_free_first(const struct raft *r, struct progress *p)
{
    if (p->infl_count == 0)
        return;
    p->infl_total_bytes -= r->ring_bytes[p->ring][p->infl_start];
    p->infl_start = (p->infl_start + 1) % r->cfg.max_inflight_msgs;
    p->infl_count--;
}

static void infl_free_to(const struct raft *r, struct progress *p, uint64_t index)
{
    while (p->infl_count > 0 && r->ring_index[p->ring][p->infl_start] <= index)
        infl_free_first(r, p);
}

static void pr_become_probe(struct progress *p)
{
    if (p->state == PR_SNAPSHOT) {
        uint64_t ps = p->pending_snapshot;
        p->next = (p->match + 1 > ps + 1) ? p->match + 1 : ps + 1;
    } else {
        p->next = p->match + 1;
    }
    p->state = PR_PROBE;
    p->probe_sent = false;
    infl_reset(p);
}

static void pr_become_replicate(struct progress *p)
{
    p->state = PR_REPLICATE;
    p->next = p->match + 1;
    p->probe_sent = false;
    infl_reset(p);
}

static void pr_reset(struct raft *r, struct progress *p)
{
    p->match = 0;
    p->next = last_index(r) + 1;
    p->state = PR_PROBE;
    p->probe_sent = false;
    p->recent_active = true;
    p->pending_snapshot = 0;
    p->snap_elapsed = 0;
    p->read_ack = 0;
    infl_reset(p);
}

/* Makes prs match conf: kept ids keep their progress, new ids start probing. */
static void set_conf(struct raft *r, const struct raft_conf *c, uint64_t index)
{
    struct progress old[RAFT_MAX_NODES];
    uint32_t n_old = r->n_prs;
    memcpy(old, r->prs, sizeof old);
    r->conf = *c;
    r->conf_index = index;
    bool slot_used[RAFT_MAX_NODES] = {false};
    bool fresh[RAFT_MAX_NODES] = {false};
    uint32_t n = c->n_voters + c->n_learners;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t id = i < c->n_voters ? c->voters[i] : c->learners[i - c->n_voters];
        struct progress *p = &r->prs[i];
        uint32_t k;
        for (k = 0; k < n_old; k++)
            if (old[k].id == id)
                break;
        if (k < n_old) {
            *p = old[k];
            slot_used[p->ring] = true;
        } else {
            memset(p, 0, sizeof *p);
            p->id = id;
            pr_reset(r, p);
            if (id == r->id)
                p->match = self_persisted(r);
            fresh[i] = true;
        }
    }
    uint32_t s = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!fresh[i])
            continue;
        while (slot_used[s])
            s++;
        NX_ASSERT(s < RAFT_MAX_NODES);
        r->prs[i].ring = s;
        slot_used[s] = true;
    }
    r->n_prs = n;
    emit(r, RAFT_EV_CONF, index, c->n_voters);
    if (r->transferee && !is_voter(r, r->transferee))
        r->transferee = 0;
}

static bool conf_equal(const struct raft_conf *a, const struct raft_conf *b)
{
    return a->n_voters == b->n_voters && a->n_learners == b->n_learners &&
           memcmp(a->voters, b->voters, a->n_voters * sizeof a->voters[0]) == 0 &&
           memcmp(a->learners, b->learners, a->n_learners * sizeof a->learners[0]) == 0;
}

/*
 * Recomputes the configuration from the log (I4) after an append or truncation.
 * The index alone does not tell: a truncated CONF entry may be replaced by the
 * new leader's different CONF entry at the same index, so compare contents.
 */
static void conf_refresh(struct raft *r)
{
    for (uint64_t i = last_index(r); i > r->snap_index; i--) {
        const struct raft_entry *e = entry(r, i);
        if (e->type != RAFT_ENTRY_CONF)
            continue;
        struct raft_conf c;
        int rc = raft_conf_decode(e->data, e->len, &c);
        NX_ASSERT(rc == NX_OK); /* validated when decoded or loaded */
        if (i != r->conf_index || !conf_equal(&c, &r->conf))
            set_conf(r, &c, i);
        return;
    }
    if (r->conf_index != r->snap_index || memcmp(&r->conf, &r->snap.conf, sizeof r->conf) != 0)
        set_conf(r, &r->snap.conf, r->snap_index);
}

/* Configuration in force at index (for a snapshot taken there). */
static void conf_at(const struct raft *r, uint64_t index, struct raft_conf *out)
{
    for (uint64_t i = index; i > r->snap_index; i--) {
        const struct raft_entry *e = entry(r, i);
        if (e->type == RAFT_ENTRY_CONF) {
            int rc = raft_conf_decode(e->data, e->len, out);
            NX_ASSERT(rc == NX_OK);
            return;
        }
    }
    *out = r->snap.conf;
}

/* ---- outbox ------------------------------------------------------------- */

static struct raft_msg *msg_new(struct raft *r, uint8_t type, uint64_t to)
{
    if (r->n_msgs >= RAFT_MAX_MSGS) {
        r->dropped_msgs++;
        emit(r, RAFT_EV_MSG_DROPPED, r->dropped_msgs, 0);
        return NULL;
    }
    if (r->n_msgs == r->cap_msgs) {
        size_t cap = r->cap_msgs ? r->cap_msgs * 2 : 32;
        struct raft_msg *n = realloc(r->msgs, cap * sizeof *n);
        if (!n) {
            r->dropped_msgs++;
            return NULL;
        }
        r->msgs = n;
        r->cap_msgs = cap;
    }
    struct raft_msg *m = &r->msgs[r->n_msgs++];
    memset(m, 0, sizeof *m);
    m->type = type;
    m->from = r->id;
    m->to = to;
    m->term = r->term;
    return m;
}

static void msg_free(struct raft_msg *m)
{
    free(m->entries); /* entries and their data are one block */
    free((void *)m->snapshot.data);
}

/* Copies entries [lo, lo + n) into m as one block. */
static bool msg_set_entries(struct raft *r, struct raft_msg *m, uint64_t lo, uint32_t n)
{
    size_t bytes = 0;
    for (uint32_t i = 0; i < n; i++)
        bytes += entry(r, lo + i)->len;
    uint8_t *block = malloc(n * sizeof(struct raft_entry) + bytes);
    if (!block)
        return false;
    struct raft_entry *es = (struct raft_entry *)(void *)block;
    uint8_t *data = block + n * sizeof(struct raft_entry);
    for (uint32_t i = 0; i < n; i++) {
        es[i] = *entry(r, lo + i);
        if (es[i].len)
            memcpy(data, es[i].data, es[i].len);
        es[i].data = es[i].len ? data : NULL;
        data += es[i].len;
    }
    m->entries = es;
    m->n_entries = n;
    return true;
}

static void send_simple(struct raft *r, uint8_t type, uint64_t to, uint64_t term, bool reject)
{
    struct raft_msg *m = msg_new(r, type, to);
    if (!m)
        return;
    m->term = term;
    m->reject = reject;
}

/* ---- role changes ------------------------------------------------------- */

static void reset_timeout(struct raft *r)
{
    uint32_t lo = r->cfg.election_tick_min, hi = r->cfg.election_tick_max;
    r->randomized_timeout = lo + (uint32_t)nx_rng_below(&r->rng, (uint64_t)(hi - lo) + 1);
}

static void reset(struct raft *r, uint64_t term)
{
    if (r->term != term) {
        r->term = term;
        r->vote = 0;
    }
    r->leader = 0;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    reset_timeout(r);
    r->transferee = 0;
    r->n_votes = 0;
    r->n_reads = 0; /* pending reads are dropped: the host times them out */
    r->bcast_pending = false;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        pr_reset(r, &r->prs[i]);
        if (r->prs[i].id == r->id)
            r->prs[i].match = self_persisted(r);
    }
}

static void become_follower(struct raft *r, uint64_t term, uint64_t leader)
{
    reset(r, term);
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
    emit(r, RAFT_EV_ROLE, RAFT_FOLLOWER, leader);
}

static void bcast_append(struct raft *r);
static bool maybe_commit(struct raft *r);

static void become_leader(struct raft *r)
{
    NX_ASSERT(r->role == RAFT_CANDIDATE);
    reset(r, r->term);
    r->role = RAFT_LEADER;
    r->leader = r->id;
    emit(r, RAFT_EV_ROLE, RAFT_LEADER, r->id);
    /* The no-op of this term: it lets the leader commit earlier entries (I5). */
    if (log_append(r, r->term, RAFT_ENTRY_NORMAL, NULL, 0) != NX_OK) {
        become_follower(r, r->term, 0);
        return;
    }
    struct progress *self = progress_of(r, r->id);
    if (self)
        self->match = self_persisted(r); /* the no-op counts once persisted (I7) */
    maybe_commit(r);
    bcast_append(r);
}

/* Records a vote; returns granted and rejected counts. */
static void poll(struct raft *r, uint64_t from, bool granted, uint32_t *yes, uint32_t *no)
{
    bool seen = false;
    for (uint32_t i = 0; i < r->n_votes; i++)
        if (r->votes_from[i] == from)
            seen = true;
    if (!seen && r->n_votes < RAFT_MAX_NODES && is_voter(r, from)) {
        r->votes_from[r->n_votes] = from;
        r->votes_granted[r->n_votes] = granted;
        r->n_votes++;
    }
    *yes = *no = 0;
    for (uint32_t i = 0; i < r->n_votes; i++) {
        if (r->votes_granted[i])
            (*yes)++;
        else
            (*no)++;
    }
}

static void campaign(struct raft *r, bool pre, bool transfer)
{
    if (!is_voter(r, r->id))
        return;
    uint64_t vote_term;
    if (pre) {
        reset(r, r->term);
        r->role = RAFT_PRE_CANDIDATE;
        vote_term = r->term + 1;
    } else {
        reset(r, r->term + 1);
        r->role = RAFT_CANDIDATE;
        r->vote = r->id;
        vote_term = r->term;
    }
    emit(r, RAFT_EV_CAMPAIGN, pre,
         transfer); /* term: the node's own (term + 1 is asked by a pre-vote) */
    uint32_t yes, no;
    poll(r, r->id, true, &yes, &no);
    if (yes >= quorum(r)) {
        if (pre) {
            campaign(r, false, transfer);
        } else {
            become_leader(r);
        }
        return;
    }
    for (uint32_t i = 0; i < r->conf.n_voters; i++) {
        uint64_t to = r->conf.voters[i];
        if (to == r->id)
            continue;
        struct raft_msg *m = msg_new(r, pre ? RAFT_MSG_PRE_VOTE : RAFT_MSG_VOTE, to);
        if (!m)
            continue;
        m->term = vote_term;
        m->index = last_index(r);
        m->log_term = last_term(r);
        m->flags = transfer ? RAFT_MSG_FLAG_TRANSFER : 0;
    }
}

/* ---- replication -------------------------------------------------------- */

/* Sends the current snapshot to p in chunks of snapshot_chunk_bytes (each one copied). */
static void send_snapshot(struct raft *r, struct progress *p)
{
    uint32_t total = r->snap.len, chunk = r->cfg.snapshot_chunk_bytes;
    uint32_t off = 0;
    do {
        uint32_t len = total - off < chunk ? total - off : chunk;
        struct raft_msg *m = msg_new(r, RAFT_MSG_SNAPSHOT, p->id);
        if (!m)
            return; /* the rest goes with the next attempt */
        m->snapshot = r->snap;
        m->snapshot.data = NULL;
        m->snapshot.len = len;
        m->snap_offset = off;
        m->snap_total = total;
        m->snap_chunk = chunk;
        if (len) {
            uint8_t *copy = malloc(len);
            if (!copy) {
                r->n_msgs--;
                return;
            }
            memcpy(copy, r->snap.data + off, len);
            m->snapshot.data = copy;
        }
        off += len;
    } while (off < total);
    p->state = PR_SNAPSHOT;
    emit(r, RAFT_EV_SNAPSHOT_SENT, p->id, r->snap.index);
    p->pending_snapshot = r->snap.index;
    p->snap_elapsed = 0;
    infl_reset(p);
}

static bool pr_paused(const struct raft *r, const struct progress *p)
{
    switch (p->state) {
    case PR_PROBE:
        return p->probe_sent;
    case PR_REPLICATE:
        return infl_full(r, p);
    case PR_SNAPSHOT:
        return true;
    }
    return true;
}

/* Sends the entries p is missing (or a snapshot). Returns whether something was sent. */
static bool send_append(struct raft *r, struct progress *p, bool send_if_empty)
{
    if (p->id == r->id || pr_paused(r, p))
        return false;
    uint64_t prev = p->next - 1, prev_term;
    if (!term_at(r, prev, &prev_term)) {
        send_snapshot(r, p);
        return true;
    }
    uint64_t last = last_index(r);
    uint32_t n = 0;
    uint64_t bytes = 0;
    while (p->next + n <= last && n < RAFT_MAX_MSG_ENTRIES) {
        uint32_t len = entry(r, p->next + n)->len;
        if (n > 0 && bytes + len > r->cfg.max_msg_bytes)
            break;
        bytes += len;
        n++;
    }
    if (n == 0 && !send_if_empty)
        return false;
    struct raft_msg *m = msg_new(r, RAFT_MSG_APPEND, p->id);
    if (!m)
        return false;
    m->index = prev;
    m->log_term = prev_term;
    m->commit = r->commit;
    if (n > 0 && !msg_set_entries(r, m, p->next, n)) {
        r->n_msgs--;
        return false;
    }
    if (p->state == PR_REPLICATE && n > 0) {
        p->next += n;
        infl_add(r, p, p->next - 1, bytes);
    } else if (p->state == PR_PROBE) {
        p->probe_sent = true;
    }
    return true;
}

static void bcast_append(struct raft *r)
{
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct progress *p = &r->prs[i];
        if (p->id == r->id)
            continue;
        /* In replicate state keep the pipe full while the caps allow. */
        bool first = true;
        while (send_append(r, p, first) && p->state == PR_REPLICATE && p->next <= last_index(r))
            first = false;
    }
    r->bcast_pending = false;
}

/* Sends entries a follower lacks, to p first and then (after a commit) to the others. */
static void send_pending_entries(struct raft *r, struct progress *first)
{
    if (r->role != RAFT_LEADER)
        return;
    while (send_append(r, first, false) && first->state == PR_REPLICATE) {
    }
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct progress *p = &r->prs[i];
        if (p == first || p->id == r->id)
            continue;
        while (send_append(r, p, false) && p->state == PR_REPLICATE) {
        }
    }
}

static void bcast_heartbeat(struct raft *r)
{
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct progress *p = &r->prs[i];
        if (p->id == r->id)
            continue;
        struct raft_msg *m = msg_new(r, RAFT_MSG_HEARTBEAT, p->id);
        if (!m)
            continue;
        m->commit = p->match < r->commit ? p->match : r->commit;
        m->ctx = r->read_seq;
    }
}

static void commit_to(struct raft *r, uint64_t c)
{
    if (c > last_index(r))
        c = last_index(r);
    if (c > r->commit)
        r->commit = c;
}

/* Leader: advances commit to the highest index a quorum matched, of this term only (I5). */
static bool maybe_commit(struct raft *r)
{
    uint64_t m[RAFT_MAX_NODES];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->conf.n_voters; i++) {
        struct progress *p = progress_of(r, r->conf.voters[i]);
        m[n++] = p ? p->match : 0;
    }
    if (n == 0)
        return false;
    for (uint32_t i = 1; i < n; i++) /* insertion sort, descending */
        for (uint32_t j = i; j > 0 && m[j] > m[j - 1]; j--) {
            uint64_t t = m[j];
            m[j] = m[j - 1];
            m[j - 1] = t;
        }
    uint64_t idx = m[quorum(r) - 1];
    if (idx > r->commit && match_term(r, idx, r->term)) {
        r->commit = idx;
        /* A leader removed by a committed configuration steps down (thesis 4.2.2). */
        if (!is_voter(r, r->id) && r->conf_index <= r->commit) {
            become_follower(r, r->term, 0);
            return false;
        }
        return true;
    }
    return false;
}

/* ---- reads -------------------------------------------------------------- */

static void release_reads(struct raft *r)
{
    uint32_t done = 0;
    while (done < r->n_reads) {
        struct pending_read *pr = &r->reads[done];
        uint32_t acks = 0;
        for (uint32_t i = 0; i < r->conf.n_voters; i++) {
            uint64_t v = r->conf.voters[i];
            struct progress *p = progress_of(r, v);
            if (v == r->id || (p && p->read_ack >= pr->seq))
                acks++;
        }
        if (acks < quorum(r))
            break;
        NX_ASSERT(r->n_ready_reads < RAFT_MAX_PENDING_READS);
        r->ready_reads[r->n_ready_reads++] = (struct raft_read_state){pr->ctx, pr->index};
        done++;
    }
    if (done) {
        memmove(r->reads, r->reads + done, (r->n_reads - done) * sizeof *r->reads);
        r->n_reads -= done;
    }
}

/* ---- message handlers --------------------------------------------------- */

/* An append a correct leader could have sent: entry terms never go down and never pass m->term. */
static bool append_well_formed(const struct raft_msg *m)
{
    uint64_t prev = m->log_term;
    if (prev > m->term)
        return false;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        uint64_t t = m->entries[i].term;
        if (t < prev || t > m->term || t == 0)
            return false;
        prev = t;
    }
    return true;
}

static void handle_append(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg *resp;
    if (!append_well_formed(m)) {
        emit(r, RAFT_EV_APPEND_REFUSED, m->from, m->index);
        return;
    }
    if (m->index < r->commit) {
        resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
        if (resp)
            resp->index = r->commit;
        return;
    }
    if (match_term(r, m->index, m->log_term)) {
        uint64_t last_new = m->index + m->n_entries;
        bool conf_changed = false;
        for (uint32_t i = 0; i < m->n_entries; i++) {
            const struct raft_entry *e = &m->entries[i];
            uint64_t idx = m->index + 1 + i;
            if (match_term(r, idx, e->term))
                continue;
            if (idx <= last_index(r)) {
                if (idx <= r->commit) {
                    emit(r, RAFT_EV_APPEND_REFUSED, m->from, idx);
                    return; /* I3: a leader must never ask this; drop */
                }
                conf_changed = true;
                log_truncate(r, idx);
            }
            if (log_append(r, e->term, e->type, e->data, e->len) != NX_OK)
                break; /* out of memory: acknowledge what we have */
            if (e->type == RAFT_ENTRY_CONF)
                conf_changed = true;
        }
        if (last_new > last_index(r))
            last_new = last_index(r);
        if (conf_changed)
            conf_refresh(r);
        commit_to(r, m->commit < last_new ? m->commit : last_new);
        resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
        if (resp)
            resp->index = last_new;
        return;
    }
    resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
    if (!resp)
        return;
    resp->reject = true;
    resp->index = m->index;
    if (m->index > last_index(r)) {
        resp->hint_index = last_index(r) + 1;
        resp->hint_term = 0;
    } else {
        uint64_t t = 0;
        (void)term_at(r, m->index, &t);
        uint64_t i = m->index;
        while (i - 1 > r->snap_index && i - 1 > r->commit && match_term(r, i - 1, t))
            i--;
        resp->hint_index = i;
        resp->hint_term = t;
    }
}

static void rx_reset(struct raft *r)
{
    free(r->rx_buf);
    free(r->rx_have);
    r->rx_buf = NULL;
    r->rx_have = NULL;
    r->rx_active = false;
}

/*
 * Adds one chunk to the snapshot being received (starting over when the chunk
 * belongs to another snapshot). Returns true when the snapshot is complete.
 */
static bool rx_add(struct raft *r, const struct raft_msg *m)
{
    const struct raft_snapshot *s = &m->snapshot;
    if (!r->rx_active || r->rx.index != s->index || r->rx.term != s->term ||
        r->rx.len != m->snap_total || r->rx_chunk != m->snap_chunk) {
        rx_reset(r);
        uint32_t n_chunks = m->snap_total ? (m->snap_total + m->snap_chunk - 1) / m->snap_chunk : 1;
        if (n_chunks > RAFT_MAX_SNAPSHOT_CHUNKS)
            return false; /* no correct leader sends this */
        r->rx_buf = malloc(m->snap_total ? m->snap_total : 1);
        r->rx_have = calloc(n_chunks, 1);
        if (!r->rx_buf || !r->rx_have) {
            rx_reset(r);
            return false;
        }
        r->rx = *s;
        r->rx.len = m->snap_total;
        r->rx.data = r->rx_buf;
        r->rx_chunk = m->snap_chunk;
        r->rx_n_chunks = n_chunks;
        r->rx_got = 0;
        r->rx_active = true;
    }
    uint32_t k = m->snap_offset / m->snap_chunk;
    if (!r->rx_have[k]) {
        if (s->len)
            memcpy(r->rx_buf + m->snap_offset, s->data, s->len);
        r->rx_have[k] = 1;
        r->rx_got++;
    }
    return r->rx_got == r->rx_n_chunks;
}

static void handle_snapshot(struct raft *r, const struct raft_msg *m)
{
    const struct raft_snapshot *s = &m->snapshot;
    struct raft_msg *resp;
    if (s->term > m->term)
        return; /* no correct leader sends a snapshot of a later term than its own */
    if (r->rx_active && r->rx.index <= r->commit)
        rx_reset(r); /* caught up another way */
    if (s->index <= r->commit) {
        resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
        if (resp)
            resp->index = r->commit;
        return;
    }
    if (match_term(r, s->index, s->term)) {
        commit_to(r, s->index);
        resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
        if (resp)
            resp->index = r->commit;
        return;
    }
    if (!rx_add(r, m))
        return; /* more chunks to come; the leader re-sends after a timeout if one is lost */
    while (r->n_ents > 0) {
        r->n_ents--;
        free((void *)r->ents[r->n_ents].data);
    }
    free((void *)r->snap.data);
    r->snap = r->rx;
    r->snap.data = r->rx_buf; /* taken */
    r->rx_buf = NULL;
    rx_reset(r);
    r->snap_index = r->snap.index;
    r->snap_term = r->snap.term;
    r->snap_install = true;
    emit(r, RAFT_EV_SNAPSHOT_INSTALL, r->snap.index, r->snap.term);
    r->commit = r->snap.index;
    r->stable = r->snap.index;
    set_conf(r, &r->snap.conf, r->snap.index);
    resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
    if (resp)
        resp->index = r->snap.index;
}

/* Leader: new next index after a rejection; false when the rejection is stale. */
static bool maybe_decr_to(struct raft *r, struct progress *p, const struct raft_msg *m)
{
    uint64_t rejected = m->index;
    if (p->state == PR_REPLICATE) {
        if (rejected <= p->match)
            return false;
    } else if (p->next == 0 || p->next - 1 != rejected) {
        return false;
    }
    uint64_t next = m->hint_index;
    if (m->hint_term > 0) {
        /* Skip the follower's whole conflicting term unless we share entries of it. */
        uint64_t hi = rejected < last_index(r) ? rejected : last_index(r);
        for (uint64_t j = hi; j > r->snap_index; j--) {
            uint64_t t = entry(r, j)->term;
            if (t == m->hint_term) {
                next = j + 1;
                break;
            }
            if (t < m->hint_term)
                break;
        }
    }
    if (next > rejected)
        next = rejected;
    if (next < p->match + 1)
        next = p->match + 1;
    if (next < 1)
        next = 1;
    p->next = next;
    p->probe_sent = false;
    return true;
}

static void handle_append_resp(struct raft *r, const struct raft_msg *m)
{
    struct progress *p = progress_of(r, m->from);
    if (!p)
        return;
    p->recent_active = true;
    if (m->index > last_index(r))
        return; /* acknowledges entries we never had: a corrupt or forged message */
    if (m->reject) {
        if (maybe_decr_to(r, p, m)) {
            if (p->state == PR_REPLICATE)
                pr_become_probe(p);
            send_append(r, p, true);
        }
        return;
    }
    if (m->index > p->match) {
        p->match = m->index;
        if (p->next < p->match + 1)
            p->next = p->match + 1;
        switch (p->state) {
        case PR_PROBE:
            pr_become_replicate(p);
            break;
        case PR_SNAPSHOT:
            if (p->match >= p->pending_snapshot)
                pr_become_replicate(p);
            break;
        case PR_REPLICATE:
            infl_free_to(r, p, m->index);
            break;
        }
        /*
         * A new commit index is not worth a message of its own: it rides on
         * the next append or heartbeat (followers apply at most a heartbeat
         * later when idle). An empty append per follower per commit, and its
         * acknowledgement, doubled the messages per proposal.
         */
        if (maybe_commit(r) || r->role == RAFT_LEADER)
            send_pending_entries(r, p);
        if (r->role == RAFT_LEADER && r->transferee == m->from && p->match == last_index(r))
            (void)msg_new(r, RAFT_MSG_TIMEOUT_NOW, m->from);
    }
}

static void handle_heartbeat_resp(struct raft *r, const struct raft_msg *m)
{
    struct progress *p = progress_of(r, m->from);
    if (!p)
        return;
    p->recent_active = true;
    if (m->ctx > p->read_ack && m->ctx <= r->read_seq)
        p->read_ack = m->ctx;
    if (p->state == PR_PROBE)
        p->probe_sent = false;
    if (p->state == PR_REPLICATE && infl_full(r, p))
        infl_free_first(r, p);
    if (p->state == PR_SNAPSHOT && p->snap_elapsed >= r->cfg.election_tick_min)
        pr_become_probe(p); /* the snapshot was probably lost: start over */
    if (p->match < last_index(r))
        send_append(r, p, true);
    release_reads(r);
}

static void step_vote(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PRE_VOTE;
    bool can_vote =
        r->vote == m->from || (r->vote == 0 && r->leader == 0) || (pre && m->term > r->term);
    uint8_t rtype = pre ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP;
    if (can_vote && log_up_to_date(r, m->log_term, m->index)) {
        send_simple(r, rtype, m->from, m->term, false);
        if (!pre) {
            r->election_elapsed = 0;
            r->vote = m->from;
        }
    } else {
        send_simple(r, rtype, m->from, r->term, true);
    }
}

static void step_candidate(struct raft *r, const struct raft_msg *m)
{
    uint8_t want = r->role == RAFT_PRE_CANDIDATE ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP;
    if (m->type != want)
        return;
    uint32_t yes, no;
    poll(r, m->from, !m->reject, &yes, &no);
    if (yes >= quorum(r)) {
        if (r->role == RAFT_PRE_CANDIDATE)
            campaign(r, false, false);
        else
            become_leader(r);
    } else if (no >= quorum(r)) {
        become_follower(r, r->term, 0);
    }
}

static void step_follower(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APPEND:
        r->election_elapsed = 0;
        r->leader = m->from;
        handle_append(r, m);
        break;
    case RAFT_MSG_HEARTBEAT: {
        r->election_elapsed = 0;
        r->leader = m->from;
        commit_to(r, m->commit);
        struct raft_msg *resp = msg_new(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
        if (resp)
            resp->ctx = m->ctx;
        break;
    }
    case RAFT_MSG_SNAPSHOT:
        r->election_elapsed = 0;
        r->leader = m->from;
        handle_snapshot(r, m);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        campaign(r, false, true);
        break;
    default:
        break;
    }
}

static int step_msg(struct raft *r, const struct raft_msg *m)
{
    /* No correct node sends term 0: a leader and every vote request are in term >= 1. */
    if (m->to != r->id || m->from == 0 || m->from == r->id || m->term == 0 || m->type < 1 ||
        m->type > RAFT_MSG_TYPE_MAX)
        return NX_ERR_INVAL;
    bool is_vote = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE;
    if (m->term > r->term) {
        if (is_vote) {
            bool force = m->flags & RAFT_MSG_FLAG_TRANSFER;
            bool in_lease = r->cfg.check_quorum && r->leader != 0 &&
                            r->election_elapsed < r->cfg.election_tick_min;
            if (!force && in_lease)
                return NX_OK; /* a leader is alive: ignore a disruptive candidate */
        }
        if (m->type == RAFT_MSG_PRE_VOTE || (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject)) {
            /* pre-votes never change terms */
        } else if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                   m->type == RAFT_MSG_SNAPSHOT) {
            become_follower(r, m->term, m->from);
        } else {
            become_follower(r, m->term, 0);
        }
    } else if (m->term < r->term) {
        if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
            (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)) {
            /* Tell a stale leader about the newer term so it steps down. */
            send_simple(r, RAFT_MSG_APPEND_RESP, m->from, r->term, false);
        } else if (m->type == RAFT_MSG_PRE_VOTE) {
            send_simple(r, RAFT_MSG_PRE_VOTE_RESP, m->from, r->term, true);
        }
        return NX_OK;
    }
    if (is_vote) {
        step_vote(r, m);
        return NX_OK;
    }
    switch (r->role) {
    case RAFT_FOLLOWER:
        step_follower(r, m);
        break;
    case RAFT_PRE_CANDIDATE:
    case RAFT_CANDIDATE:
        if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
            m->type == RAFT_MSG_SNAPSHOT) {
            become_follower(r, m->term, m->from);
            step_follower(r, m);
        } else {
            step_candidate(r, m);
        }
        break;
    case RAFT_LEADER:
        if (m->type == RAFT_MSG_APPEND_RESP)
            handle_append_resp(r, m);
        else if (m->type == RAFT_MSG_HEARTBEAT_RESP)
            handle_heartbeat_resp(r, m);
        break;
    }
    return NX_OK;
}

/* ---- ticks -------------------------------------------------------------- */

static bool quorum_active(struct raft *r)
{
    uint32_t act = 0;
    for (uint32_t i = 0; i < r->conf.n_voters; i++) {
        uint64_t v = r->conf.voters[i];
        struct progress *p = progress_of(r, v);
        if (v == r->id || (p && p->recent_active))
            act++;
    }
    for (uint32_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].id != r->id)
            r->prs[i].recent_active = false;
    return act >= quorum(r);
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
    NX_ASSERT(!r->in_ready);
    int rc = step_msg(r, m);
    CHECK_INVARIANTS(r);
    return rc;
}

static void tick(struct raft *r)
{
    if (r->role != RAFT_LEADER) {
        r->election_elapsed++;
        if (r->election_elapsed >= r->randomized_timeout) {
            r->election_elapsed = 0;
            if (is_voter(r, r->id))
                campaign(r, r->cfg.pre_vote, false);
        }
        return;
    }
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    for (uint32_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].state == PR_SNAPSHOT)
            r->prs[i].snap_elapsed++;
    if (r->transferee && ++r->transfer_elapsed >= r->cfg.election_tick_min) {
        emit(r, RAFT_EV_TRANSFER_ABORT, r->transferee, 0);
        r->transferee = 0; /* the transfer did not finish in an election timeout */
    }
    if (r->election_elapsed >= r->cfg.election_tick_min) {
        r->election_elapsed = 0;
        if (r->cfg.check_quorum && !quorum_active(r)) {
            emit(r, RAFT_EV_CHECK_QUORUM_LOST, 0, 0);
            become_follower(r, r->term, 0);
            return;
        }
    }
    if (r->heartbeat_elapsed >= r->cfg.heartbeat_tick) {
        r->heartbeat_elapsed = 0;
        bcast_heartbeat(r);
    }
}

void raft_tick(struct raft *r)
{
    NX_ASSERT(!r->in_ready);
    tick(r);
    CHECK_INVARIANTS(r);
}

/* ---- host requests ------------------------------------------------------ */

int raft_campaign(struct raft *r)
{
    NX_ASSERT(!r->in_ready);
    if (!is_voter(r, r->id))
        return NX_ERR_STATE;
    if (r->role != RAFT_LEADER)
        campaign(r, r->cfg.pre_vote, false);
    return NX_OK;
}

static int leader_append(struct raft *r, uint8_t type, const void *data, size_t len,
                         uint64_t *index_out)
{
    int rc = log_append(r, r->term, type, data, len);
    if (rc != NX_OK)
        return rc;
    if (index_out)
        *index_out = last_index(r);
    if (type == RAFT_ENTRY_CONF)
        conf_refresh(r);
    maybe_commit(r);
    r->bcast_pending = true;
    return NX_OK;
}

int raft_propose(struct raft *r, const void *data, size_t len, uint64_t *index_out)
{
    NX_ASSERT(!r->in_ready);
    if (r->role != RAFT_LEADER)
        return NX_ERR_NOT_LEADER;
    if (r->transferee)
        return NX_ERR_AGAIN;
    if (len > r->cfg.max_entry_bytes)
        return NX_ERR_TOO_BIG;
    return leader_append(r, RAFT_ENTRY_NORMAL, data, len, index_out);
}

static bool conf_remove(uint64_t *ids, uint32_t *n, uint64_t id)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (ids[i] == id) {
            ids[i] = ids[--*n];
            ids[*n] = 0;
            return true;
        }
    }
    return false;
}

int raft_propose_conf_change(struct raft *r, enum raft_conf_op op, uint64_t node,
                             uint64_t *index_out)
{
    NX_ASSERT(!r->in_ready);
    if (r->role != RAFT_LEADER)
        return NX_ERR_NOT_LEADER;
    if (node == 0)
        return NX_ERR_INVAL;
    if (r->transferee || r->conf_index > r->commit || !match_term(r, r->commit, r->term))
        return NX_ERR_AGAIN; /* I6 */
    struct raft_conf c = r->conf;
    bool voter = raft_conf_is_voter(&c, node), learner = raft_conf_is_learner(&c, node);
    switch (op) {
    case RAFT_CONF_ADD_VOTER:
    case RAFT_CONF_ADD_LEARNER:
        if (voter || learner)
            return NX_ERR_EXISTS;
        if (c.n_voters + c.n_learners >= RAFT_MAX_NODES)
            return NX_ERR_FULL;
        if (op == RAFT_CONF_ADD_VOTER)
            c.voters[c.n_voters++] = node;
        else
            c.learners[c.n_learners++] = node;
        break;
    case RAFT_CONF_PROMOTE:
        if (!learner)
            return voter ? NX_ERR_EXISTS : NX_ERR_NOT_FOUND;
        conf_remove(c.learners, &c.n_learners, node);
        c.voters[c.n_voters++] = node;
        break;
    case RAFT_CONF_REMOVE:
        if (!voter && !learner)
            return NX_ERR_NOT_FOUND;
        if (voter && c.n_voters == 1)
            return NX_ERR_INVAL; /* the last voter */
        if (!conf_remove(c.voters, &c.n_voters, node))
            conf_remove(c.learners, &c.n_learners, node);
        break;
    default:
        return NX_ERR_INVAL;
    }
    uint8_t buf[2 + 8 * 2 * RAFT_MAX_NODES];
    long n = raft_conf_encode(&c, buf, sizeof buf);
    if (n < 0)
        return (int)n;
    return leader_append(r, RAFT_ENTRY_CONF, buf, (size_t)n, index_out);
}

int raft_read_index(struct raft *r, uint64_t ctx)
{
    NX_ASSERT(!r->in_ready);
    if (r->role != RAFT_LEADER)
        return NX_ERR_NOT_LEADER;
    if (!match_term(r, r->commit, r->term))
        return NX_ERR_AGAIN;
    if (r->n_reads >= RAFT_MAX_PENDING_READS ||
        r->n_ready_reads + r->n_reads >= RAFT_MAX_PENDING_READS)
        return NX_ERR_FULL;
    r->reads[r->n_reads++] = (struct pending_read){ctx, r->commit, ++r->read_seq};
    release_reads(r); /* a single voter confirms at once */
    if (r->n_reads > 0)
        bcast_heartbeat(r);
    return NX_OK;
}

int raft_transfer_leader(struct raft *r, uint64_t to)
{
    NX_ASSERT(!r->in_ready);
    if (r->role != RAFT_LEADER)
        return NX_ERR_NOT_LEADER;
    if (to == r->id || !is_voter(r, to))
        return NX_ERR_INVAL;
    r->transferee = to;
    r->transfer_elapsed = 0;
    struct progress *p = progress_of(r, to);
    if (p->match == last_index(r))
        (void)msg_new(r, RAFT_MSG_TIMEOUT_NOW, to);
    else
        send_append(r, p, true);
    return NX_OK;
}

int raft_compact(struct raft *r, uint64_t index, const void *data, size_t len)
{
    NX_ASSERT(!r->in_ready);
    if (index <= r->snap_index || index > r->applied)
        return NX_ERR_INVAL;
    if (len > RAFT_MAX_SNAPSHOT_BYTES ||
        (len + r->cfg.snapshot_chunk_bytes - 1) / r->cfg.snapshot_chunk_bytes >
            RAFT_MAX_SNAPSHOT_CHUNKS)
        return NX_ERR_TOO_BIG;
    uint8_t *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (!copy)
            return NX_ERR_NOMEM;
        memcpy(copy, data, len);
    }
    uint64_t term = 0;
    bool ok = term_at(r, index, &term);
    NX_ASSERT(ok);
    struct raft_conf c;
    conf_at(r, index, &c);
    free((void *)r->snap.data);
    r->snap.index = index;
    r->snap.term = term;
    r->snap.conf = c;
    r->snap.len = (uint32_t)len;
    r->snap.data = copy;
    log_compact(r, index, term);
    if (r->conf_index < index)
        r->conf_index = index;
    return NX_OK;
}

/* ---- ready / advance ---------------------------------------------------- */

/*
 * After the host persisted a ready: the leader's own copy now counts up to
 * stable (I7), which may commit (e.g. a single voter, or followers that were
 * faster than the leader's disk); followers learn the new commit index with
 * the next append or heartbeat.
 */
static void leader_persisted(struct raft *r)
{
    if (r->role != RAFT_LEADER)
        return;
    struct progress *self = progress_of(r, r->id);
    if (self == NULL || self->match >= self_persisted(r))
        return;
    self->match = self_persisted(r);
    (void)maybe_commit(r); /* followers learn it with the next append or heartbeat */
}

static struct raft_hard_state hard_state(const struct raft *r)
{
    return (struct raft_hard_state){r->term, r->vote, r->commit};
}

static struct raft_soft_state soft_state(const struct raft *r)
{
    return (struct raft_soft_state){r->leader, r->role};
}

static uint64_t apply_base(const struct raft *r)
{
    return r->snap_install ? r->snap.index : r->applied;
}

bool raft_has_ready(const struct raft *r)
{
    struct raft_hard_state hs = hard_state(r);
    struct raft_soft_state ss = soft_state(r);
    return (r->bcast_pending && r->role == RAFT_LEADER) || r->n_msgs > 0 || r->snap_install ||
           last_index(r) > r->stable || r->commit > apply_base(r) || r->n_ready_reads > 0 ||
           r->n_events > 0 || memcmp(&hs, &r->prev_hs, sizeof hs) != 0 ||
           ss.leader != r->prev_ss.leader || ss.role != r->prev_ss.role;
}

/*
 * May this message leave before the ready's write is synced? Only a leader's
 * appends and heartbeats, and only when its term and vote are already durable
 * (prev_hs is what the host persisted): the entries they carry may still be
 * in flight to the disk, which Raft allows for the leader (thesis 10.2.1,
 * I7). Anything that acknowledges or votes waits for the sync.
 */
static bool msg_early(const struct raft *r, const struct raft_msg *m)
{
    return r->role == RAFT_LEADER && r->prev_hs.term == r->term && r->prev_hs.vote == r->vote &&
           m->term == r->term && (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT);
}

/* Moves the early messages to the front of the outbox, keeping each group's order. */
static size_t partition_early(struct raft *r)
{
    size_t n_early = 0;
    for (size_t i = 0; i < r->n_msgs; i++) {
        if (!msg_early(r, &r->msgs[i]))
            continue;
        if (i != n_early) {
            struct raft_msg m = r->msgs[i];
            memmove(&r->msgs[n_early + 1], &r->msgs[n_early], (i - n_early) * sizeof m);
            r->msgs[n_early] = m;
        }
        n_early++;
    }
    return n_early;
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
    NX_ASSERT(!r->in_ready);
    if (r->bcast_pending && r->role == RAFT_LEADER)
        bcast_append(r);
    r->bcast_pending = false;
    memset(rd, 0, sizeof *rd);
    rd->soft_state = soft_state(r);
    rd->has_soft_state =
        rd->soft_state.leader != r->prev_ss.leader || rd->soft_state.role != r->prev_ss.role;
    rd->hard_state = hard_state(r);
    rd->has_hard_state = memcmp(&rd->hard_state, &r->prev_hs, sizeof rd->hard_state) != 0;
    rd->snapshot = r->snap_install ? &r->snap : NULL;
    uint64_t last = last_index(r);
    if (last > r->stable) {
        rd->entries = entry(r, r->stable + 1);
        rd->n_entries = (size_t)(last - r->stable);
    }
    rd->n_msgs_early = partition_early(r);
    rd->msgs = r->msgs;
    rd->n_msgs = r->n_msgs;
    uint64_t base = apply_base(r), to = r->commit;
    if (to > base + RAFT_MAX_APPLY_BATCH)
        to = base + RAFT_MAX_APPLY_BATCH;
    if (to > base) {
        rd->committed = entry(r, base + 1);
        rd->n_committed = (size_t)(to - base);
    }
    rd->reads = r->ready_reads;
    rd->n_reads = r->n_ready_reads;
    rd->events = r->events;
    rd->n_events = r->n_events;
    r->rd_stable = last;
    r->rd_applied = to > base ? to : base;
    r->rd_snap = r->snap_install;
    r->in_ready = true;
}

void raft_advance(struct raft *r, const struct raft_ready *rd)
{
    NX_ASSERT(r->in_ready);
    r->in_ready = false;
    if (rd->has_hard_state)
        r->prev_hs = rd->hard_state;
    if (rd->has_soft_state)
        r->prev_ss = rd->soft_state;
    if (r->rd_snap) {
        r->snap_install = false;
        r->applied = r->snap.index;
    }
    if (r->rd_stable > r->stable)
        r->stable = r->rd_stable;
    if (r->rd_applied > r->applied)
        r->applied = r->rd_applied;
    for (size_t i = 0; i < r->n_msgs; i++)
        msg_free(&r->msgs[i]);
    r->n_msgs = 0;
    r->n_ready_reads = 0;
    r->n_events = 0;
    r->events_lost = 0;
    leader_persisted(r);
    CHECK_INVARIANTS(r);
}

/* ---- lifecycle ---------------------------------------------------------- */

void raft_config_default(struct raft_config *cfg, uint64_t id, uint64_t seed)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->id = id;
    cfg->election_tick_min = 10;
    cfg->election_tick_max = 20;
    cfg->heartbeat_tick = 2;
    cfg->max_inflight_msgs = 64;
    cfg->max_inflight_bytes = 8u << 20;
    cfg->max_entry_bytes = 1u << 20;
    cfg->max_msg_bytes = 1u << 20;
    cfg->snapshot_chunk_bytes = 1u << 20;
    cfg->pre_vote = true;
    cfg->check_quorum = true;
    cfg->seed = seed;
}

static int load_boot(struct raft *r, const struct raft_boot *b)
{
    const struct raft_snapshot *s = &b->snapshot;
    if (s->len > RAFT_MAX_SNAPSHOT_BYTES || (s->len && !s->data) || (s->index == 0 && s->term))
        return NX_ERR_CORRUPT;
    r->snap = *s;
    r->snap.data = NULL;
    if (s->len) {
        uint8_t *copy = malloc(s->len);
        if (!copy)
            return NX_ERR_NOMEM;
        memcpy(copy, s->data, s->len);
        r->snap.data = copy;
    }
    r->snap_index = s->index;
    r->snap_term = s->term;
    uint64_t prev_term = s->term;
    for (size_t i = 0; i < b->n_entries; i++) {
        const struct raft_entry *e = &b->entries[i];
        struct raft_conf tmp;
        if (e->index != s->index + 1 + i || e->term < prev_term || e->term == 0 ||
            e->term > b->hard_state.term || e->type > RAFT_ENTRY_CONF || (e->len && !e->data) ||
            (e->type == RAFT_ENTRY_CONF && raft_conf_decode(e->data, e->len, &tmp) != NX_OK))
            return NX_ERR_CORRUPT;
        prev_term = e->term;
        int rc = log_append(r, e->term, e->type, e->data, e->len);
        if (rc != NX_OK)
            return rc;
    }
    const struct raft_hard_state *hs = &b->hard_state;
    if (hs->commit > last_index(r) || s->term > hs->term)
        return NX_ERR_CORRUPT;
    r->term = hs->term;
    r->vote = hs->vote;
    r->commit = hs->commit > s->index ? hs->commit : s->index;
    r->applied = b->applied > s->index ? b->applied : s->index;
    if (r->applied > r->commit)
        return NX_ERR_CORRUPT;
    r->stable = last_index(r);
    r->prev_hs = *hs;
    set_conf(r, &s->conf, s->index);
    conf_refresh(r);
    return NX_OK;
}

int raft_create(const struct raft_config *cfg, const struct raft_boot *boot, struct raft **out)
{
    *out = NULL;
    if (cfg->id == 0 || cfg->election_tick_min == 0 ||
        cfg->election_tick_max < cfg->election_tick_min || cfg->heartbeat_tick == 0 ||
        cfg->heartbeat_tick >= cfg->election_tick_min || cfg->max_inflight_msgs == 0 ||
        cfg->max_inflight_msgs > RAFT_MAX_INFLIGHT_MSGS_LIMIT || cfg->max_inflight_bytes == 0 ||
        cfg->max_entry_bytes == 0 || cfg->max_entry_bytes > RAFT_MAX_ENTRY_BYTES_LIMIT ||
        cfg->max_msg_bytes == 0 || cfg->snapshot_chunk_bytes == 0 ||
        cfg->snapshot_chunk_bytes > RAFT_MAX_SNAPSHOT_BYTES)
        return NX_ERR_INVAL;
    struct raft *r = calloc(1, sizeof *r);
    if (!r)
        return NX_ERR_NOMEM;
    r->cfg = *cfg;
    r->id = cfg->id;
    nx_rng_seed(&r->rng, cfg->seed ^ (cfg->id * 0x9E3779B97F4A7C15ull));
    for (uint32_t i = 0; i < RAFT_MAX_NODES; i++) {
        r->ring_index[i] = calloc(cfg->max_inflight_msgs, sizeof(uint64_t));
        r->ring_bytes[i] = calloc(cfg->max_inflight_msgs, sizeof(uint64_t));
        if (!r->ring_index[i] || !r->ring_bytes[i]) {
            raft_destroy(r);
            return NX_ERR_NOMEM;
        }
    }
    int rc = load_boot(r, boot);
    if (rc != NX_OK) {
        raft_destroy(r);
        return rc;
    }
    r->role = RAFT_FOLLOWER;
    reset_timeout(r);
    r->prev_ss = soft_state(r);
    *out = r;
    return NX_OK;
}

void raft_destroy(struct raft *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_ents; i++)
        free((void *)r->ents[i].data);
    free(r->ents);
    for (size_t i = 0; i < r->n_msgs; i++)
        msg_free(&r->msgs[i]);
    free(r->msgs);
    for (uint32_t i = 0; i < RAFT_MAX_NODES; i++) {
        free(r->ring_index[i]);
        free(r->ring_bytes[i]);
    }
    free((void *)r->snap.data);
    rx_reset(r);
    free(r);
}

/* ---- inspection --------------------------------------------------------- */

uint64_t raft_id(const struct raft *r)
{
    return r->id;
}
uint64_t raft_term(const struct raft *r)
{
    return r->term;
}
uint64_t raft_vote(const struct raft *r)
{
    return r->vote;
}
enum raft_role raft_role(const struct raft *r)
{
    return r->role;
}
uint64_t raft_leader(const struct raft *r)
{
    return r->leader;
}
uint64_t raft_commit_index(const struct raft *r)
{
    return r->commit;
}
uint64_t raft_applied_index(const struct raft *r)
{
    return r->applied;
}
uint64_t raft_first_index(const struct raft *r)
{
    return r->snap_index + 1;
}
uint64_t raft_last_index(const struct raft *r)
{
    return last_index(r);
}
const struct raft_conf *raft_current_conf(const struct raft *r)
{
    return &r->conf;
}

bool raft_entry_term(const struct raft *r, uint64_t index, uint64_t *term)
{
    return term_at(r, index, term);
}

const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index)
{
    if (index <= r->snap_index || index > last_index(r))
        return NULL;
    return entry(r, index);
}

int raft_progress(const struct raft *r, uint64_t id, struct raft_progress *out)
{
    if (r->role != RAFT_LEADER)
        return NX_ERR_NOT_LEADER;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        const struct progress *p = &r->prs[i];
        if (p->id != id)
            continue;
        out->match = p->match;
        out->next = p->next;
        out->recent_active = p->recent_active;
        out->inflight_msgs = p->infl_count;
        out->inflight_bytes = p->infl_total_bytes;
        return NX_OK;
    }
    return NX_ERR_NOT_FOUND;
}

const char *raft_role_name(enum raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_PRE_CANDIDATE:
        return "pre_candidate";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    }
    return "unknown";
}
