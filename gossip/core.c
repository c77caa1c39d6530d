/*
 * core.c - the SWIM + Lifeguard state machine.
 *
 * One gossip_core is one member's view of the cluster. It is driven by three
 * inputs (tick, receive, and the host's commands join/leave/set_meta) and
 * produces outgoing messages and events that the host collects with
 * gossip_ready. It keeps no clock and draws randomness only from its own
 * seeded nx_rng, so a simulator replays any run exactly from one seed.
 *
 * Member states and transitions (per member, as seen by this core):
 *
 *                   alive(i' > i)
 *         +--------------------------------+
 *         v                                |
 *     +-------+  suspect(i' >= i)     +---------+  timeout   +------+
 *     | ALIVE | --------------------> | SUSPECT | ---------> | DEAD |
 *     +-------+  or own probe failed  +---------+            +------+
 *       |   |                            |                   ^  |
 *       |   +--------- dead(i' >= i) ----|-------------------+  |
 *       |                                |                      |
 *       +--------- left(i' >= i) --------+----------------------+--> [LEFT]
 *
 *     DEAD or LEFT --alive(i' > i)--> ALIVE     (restart or refutation)
 *
 *  transition                      made by
 *  new member -> ALIVE             on_alive (add_member), gossip_add_member
 *  * -> ALIVE (higher inc)         on_alive
 *  ALIVE -> SUSPECT                on_suspect (message), finish_probe (ours)
 *  SUSPECT -> DEAD                 expire_suspicions (timeout), on_dead_or_left
 *  * -> LEFT                       on_dead_or_left, gossip_leave (ourselves)
 *  DEAD/LEFT -> forgotten          evict_one (only when the table is full)
 *
 * About ourselves, any suspect/dead/left claim at our incarnation or above
 * is refuted by raising our incarnation above it and gossiping alive.
 *
 * Invariants (checked by check_invariants under NX_DEBUG_CHECKS):
 *  1. member 0 is us; slots[] maps every id in m[0..n) to its index.
 *  2. n_live == number of members in ALIVE or SUSPECT; n_suspect likewise.
 *  3. a member is in the broadcast queue bq[] at most once (queued flag).
 *  4. probe_list holds every index 1..n-1 exactly once.
 */
#include "gossip/gossip.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/wire.h"

#define NO_INDEX UINT32_MAX
#define GOSSIP_FIX_MAX 8 /* corrections carried back to one sender */

struct member {
    uint8_t id[GOSSIP_ID_BYTES];
    uint64_t incarnation;
    uint64_t change_ms;
    uint64_t suspect_start_ms;
    uint64_t proven_inc; /* highest incarnation an ack of it carried */
    uint8_t *meta;       /* owned; encoded metadata */
    uint16_t meta_len;
    uint8_t state;     /* enum gossip_state */
    uint8_t n_tags;    /* distinct suspecters seen (first + confirmations) */
    uint8_t tx;        /* broadcast transmissions so far */
    bool queued;       /* in bq[] */
    bool called;       /* sent its last-call ping (see last_calls) */
    uint32_t from;     /* member index of the suspecter, for SUSPECT broadcasts */
    uint32_t call_seq; /* seq of the last-call ping, to know its ack */
    uint32_t tags[GOSSIP_INDIRECT_K_MAX + 1]; /* id prefixes of suspecters */
};

struct relay {
    bool used;
    uint8_t origin[GOSSIP_ID_BYTES];
    char origin_addr[GOSSIP_ADDR_MAX + 1]; /* from the ping-req; may be "" */
    uint32_t origin_seq;
    uint32_t seq;
    bool nacked;
    uint64_t nack_ms;   /* no ack by then: nack (Lifeguard) */
    uint64_t expire_ms; /* a later ack is still forwarded until then */
};

struct probe {
    bool active;
    bool acked;
    bool indirect_sent;
    bool deferred; /* the verdict was put off once for our own poor health */
    uint32_t target;
    uint32_t seq;
    uint32_t expected_nacks;
    uint32_t nacks;
    uint64_t start_ms;
    uint64_t direct_deadline_ms;
};

struct gossip_core {
    struct gossip_config cfg;
    struct nx_rng rng;
    struct member *m; /* owned, cap entries */
    uint32_t n, cap;
    uint32_t *slots; /* owned; open addressing, value index+1, 0 empty */
    uint32_t slot_mask;
    uint64_t salt;
    uint32_t n_live, n_suspect;
    uint32_t *probe_list; /* owned, cap entries */
    uint32_t probe_n, probe_pos;
    uint32_t *bq;     /* owned, cap entries: member indices with news to spread */
    uint32_t *bq_tmp; /* owned, cap entries: scratch for sort_queue */
    uint32_t bq_n;
    bool left;
    unsigned lhm;
    uint32_t seq;
    struct probe probe;
    uint64_t next_probe_ms;
    uint64_t next_push_pull_ms;
    uint32_t push_pull_offset;
    struct relay relays[GOSSIP_RELAYS_MAX];
    bool joining;
    uint8_t join_id[GOSSIP_ID_BYTES];
    char join_addr[GOSSIP_ADDR_MAX + 1];
    uint64_t next_join_ms;
    struct gossip_out_msg *out; /* owned; each data owned */
    uint32_t n_out, out_cap;
    struct gossip_event *ev; /* owned */
    uint32_t n_ev, ev_cap;
    uint8_t *scratch; /* owned; encoding buffer */
    size_t scratch_cap;
    struct gossip_counters ctr;
    uint32_t fix[GOSSIP_FIX_MAX]; /* members the current sender is stale about */
    uint32_t n_fix;
    uint32_t fix_to; /* the current sender's index, NO_INDEX outside receive */
};

/* ---- small helpers ------------------------------------------------------ */

void gossip_config_default(struct gossip_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->probe_interval_ms = 1000;
    cfg->probe_timeout_ms = 500;
    cfg->indirect_k = 3;
    cfg->suspicion_mult = 4;
    cfg->suspicion_max_mult = 6;
    cfg->retransmit_mult = 4;
    cfg->push_pull_interval_ms = 30000;
    cfg->lifeguard_awareness = true;
    cfg->lifeguard_suspicion = true;
    cfg->lifeguard_nack = true;
    cfg->max_members = 4096;
    cfg->max_meta_bytes = 512;
    cfg->max_msg_bytes = 1400;
    cfg->max_piggyback_bytes = 1024;
    cfg->max_push_pull_bytes = 65536;
}

static bool config_valid(const struct gossip_config *c)
{
    return c->probe_interval_ms > 0 && c->probe_timeout_ms > 0 &&
           c->probe_timeout_ms <= c->probe_interval_ms && c->indirect_k <= GOSSIP_INDIRECT_K_MAX &&
           c->suspicion_mult > 0 && c->suspicion_max_mult >= 1 && c->retransmit_mult > 0 &&
           c->max_members >= 1 && c->max_members <= GOSSIP_MEMBERS_LIMIT &&
           c->max_meta_bytes <= GOSSIP_META_MAX_BYTES && c->max_msg_bytes >= GOSSIP_MSG_MIN_BYTES &&
           c->max_msg_bytes <= GOSSIP_WIRE_MAX_BYTES &&
           c->max_push_pull_bytes >= c->max_msg_bytes &&
           /* our own full ALIVE record must fit in a push-pull */
           c->max_push_pull_bytes >=
               GW_HEADER_BYTES + GW_COUNT_BYTES + GW_UPDATE_FIXED_BYTES + 2 + c->max_meta_bytes &&
           c->max_push_pull_bytes <= GOSSIP_WIRE_MAX_BYTES;
}

const char *gossip_state_name(enum gossip_state state)
{
    static const char *const names[] = {"alive", "suspect", "dead", "left"};
    return (unsigned)state < GOSSIP_STATE__COUNT ? names[state] : "unknown";
}

const char *gossip_event_name(enum gossip_event_kind kind)
{
    static const char *const names[] = {"join", "alive",      "suspect",  "dead", "left",
                                        "meta", "refute",     "probe",    "ack",  "ping_req",
                                        "nack", "probe_fail", "push_pull"};
    return (unsigned)kind < GOSSIP_EV__COUNT ? names[kind] : "unknown";
}

static bool is_live(uint8_t state)
{
    return state == GOSSIP_ALIVE || state == GOSSIP_SUSPECT;
}

static uint32_t id_tag(const uint8_t *id)
{
    return (uint32_t)id[0] | (uint32_t)id[1] << 8 | (uint32_t)id[2] << 16 | (uint32_t)id[3] << 24;
}

static uint32_t scale(const struct gossip_core *c)
{
    return c->lhm + 1;
}

/* ---- member table --------------------------------------------------------- */

static uint32_t slot_of(const struct gossip_core *c, const uint8_t *id)
{
    uint64_t h = 0;
    memcpy(&h, id + 8, sizeof h);
    h = (h ^ c->salt) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(h >> 32) & c->slot_mask;
}

static uint32_t find(const struct gossip_core *c, const uint8_t *id)
{
    for (uint32_t s = slot_of(c, id);; s = (s + 1) & c->slot_mask) {
        uint32_t v = c->slots[s];
        if (v == 0)
            return NO_INDEX;
        if (memcmp(c->m[v - 1].id, id, GOSSIP_ID_BYTES) == 0)
            return v - 1;
    }
}

static void slot_insert(struct gossip_core *c, uint32_t idx)
{
    uint32_t s = slot_of(c, c->m[idx].id);
    while (c->slots[s] != 0)
        s = (s + 1) & c->slot_mask;
    c->slots[s] = idx + 1;
}

/* Keeps slots at most half full and the arrays large enough for one more. */
static int grow(struct gossip_core *c)
{
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 16;
        if (cap > c->cfg.max_members)
            cap = c->cfg.max_members;
        struct member *m = realloc(c->m, (size_t)cap * sizeof *m);
        if (!m)
            return NX_ERR_NOMEM;
        c->m = m;
        uint32_t *pl = realloc(c->probe_list, (size_t)cap * sizeof *pl);
        if (!pl)
            return NX_ERR_NOMEM;
        c->probe_list = pl;
        uint32_t *bq = realloc(c->bq, (size_t)cap * sizeof *bq);
        if (!bq)
            return NX_ERR_NOMEM;
        c->bq = bq;
        uint32_t *tmp = realloc(c->bq_tmp, (size_t)cap * sizeof *tmp);
        if (!tmp)
            return NX_ERR_NOMEM;
        c->bq_tmp = tmp;
        c->cap = cap;
    }
    if ((uint64_t)(c->n + 1) * 2 > (uint64_t)c->slot_mask + 1) {
        uint32_t nslots = (c->slot_mask + 1) * 2;
        uint32_t *slots = calloc(nslots, sizeof *slots);
        if (!slots)
            return NX_ERR_NOMEM;
        free(c->slots);
        c->slots = slots;
        c->slot_mask = nslots - 1;
        for (uint32_t i = 0; i < c->n; i++)
            slot_insert(c, i);
    }
    return NX_OK;
}

static bool set_meta_bytes(struct member *m, const uint8_t *meta, uint16_t len)
{
    if (m->meta && m->meta_len == len && memcmp(m->meta, meta, len) == 0)
        return false;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return false; /* keep the old metadata; next update retries */
    memcpy(copy, meta, len);
    free(m->meta);
    m->meta = copy;
    m->meta_len = len;
    return true;
}

/* Adds a new alive member; returns its index or NO_INDEX when full/no memory. */
/* Replaces every reference to member index `from` by `to` (or drops it). */
static void renumber(struct gossip_core *c, uint32_t from, uint32_t to)
{
    for (uint32_t i = 0; i < c->probe_n; i++)
        if (c->probe_list[i] == from)
            c->probe_list[i] = to;
    for (uint32_t i = 0; i < c->bq_n; i++)
        if (c->bq[i] == from)
            c->bq[i] = to;
    for (uint32_t i = 0; i < c->n; i++)
        if (c->m[i].from == from)
            c->m[i].from = to;
    if (c->probe.target == from)
        c->probe.target = to;
}

/*
 * When the table is full, makes room by forgetting the dead or left member
 * that changed state longest ago. False when every member is alive or
 * suspect: then the newcomer is refused.
 */
static bool evict_one(struct gossip_core *c)
{
    uint32_t victim = NO_INDEX;
    for (uint32_t i = 1; i < c->n; i++)
        if (!is_live(c->m[i].state) &&
            (victim == NO_INDEX || c->m[i].change_ms < c->m[victim].change_ms))
            victim = i;
    if (victim == NO_INDEX)
        return false;
    struct member *v = &c->m[victim];
    if (v->queued) { /* drop its pending broadcast */
        uint32_t keep = 0;
        for (uint32_t i = 0; i < c->bq_n; i++)
            if (c->bq[i] != victim)
                c->bq[keep++] = c->bq[i];
        c->bq_n = keep;
    }
    uint32_t p = 0; /* remove it from the probe order */
    while (c->probe_list[p] != victim)
        p++;
    if (p < c->probe_pos)
        c->probe_pos--;
    memmove(&c->probe_list[p], &c->probe_list[p + 1], (c->probe_n - p - 1) * sizeof(uint32_t));
    c->probe_n--;
    if (c->probe.target == victim)
        c->probe.active = false;
    renumber(c, victim, 0);
    free(v->meta);
    uint32_t last = c->n - 1;
    if (victim != last) {
        c->m[victim] = c->m[last];
        renumber(c, last, victim);
    }
    c->n--;
    memset(c->slots, 0, ((size_t)c->slot_mask + 1) * sizeof *c->slots);
    for (uint32_t i = 0; i < c->n; i++)
        slot_insert(c, i);
    c->ctr.evictions++;
    c->n_fix = 0; /* indices moved */
    return true;
}

static uint32_t add_member(struct gossip_core *c, uint64_t now, const uint8_t *id, uint64_t inc,
                           const uint8_t *meta, uint16_t meta_len)
{
    if (c->n >= c->cfg.max_members && !evict_one(c)) {
        c->ctr.drops[GOSSIP_DROP_TABLE_FULL]++;
        return NO_INDEX;
    }
    if (grow(c) != NX_OK) {
        c->ctr.drops[GOSSIP_DROP_TABLE_FULL]++;
        return NO_INDEX;
    }
    uint32_t idx = c->n;
    struct member *m = &c->m[idx];
    memset(m, 0, sizeof *m);
    memcpy(m->id, id, GOSSIP_ID_BYTES);
    m->incarnation = inc;
    m->change_ms = now;
    m->state = GOSSIP_ALIVE;
    if (!set_meta_bytes(m, meta, meta_len))
        return NO_INDEX;
    c->n++;
    slot_insert(c, idx);
    c->n_live++;
    if (idx > 0) { /* insert at a random place in the probe order */
        uint32_t pos = (uint32_t)nx_rng_below(&c->rng, c->probe_n + 1);
        c->probe_list[c->probe_n++] = c->probe_list[pos];
        c->probe_list[pos] = idx;
    }
    return idx;
}

#ifdef NX_DEBUG_CHECKS
static void check_invariants(const struct gossip_core *c)
{
    uint32_t live = 0, susp = 0, queued = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        NX_ASSERT(find(c, c->m[i].id) == i);
        live += is_live(c->m[i].state);
        susp += c->m[i].state == GOSSIP_SUSPECT;
        queued += c->m[i].queued;
    }
    NX_ASSERT(live == c->n_live && susp == c->n_suspect);
    NX_ASSERT(queued == c->bq_n && c->probe_n + 1 == c->n);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < c->probe_n; i++) {
        NX_ASSERT(c->probe_list[i] >= 1 && c->probe_list[i] < c->n);
        sum += c->probe_list[i];
    }
    NX_ASSERT(sum == (uint64_t)c->n * (c->n - 1) / 2); /* each index once (with the above) */
    for (uint32_t i = 0; i < c->bq_n; i++)
        NX_ASSERT(c->bq[i] < c->n && c->m[c->bq[i]].queued);
    for (uint32_t i = 0; i < c->n; i++)
        NX_ASSERT(c->m[i].from < c->n);
}
#else
static void check_invariants(const struct gossip_core *c)
{
    (void)c;
}
#endif

/* ---- outputs ---------------------------------------------------------------- */

/*
 * Makes room for one more element in a growable array (arr, *cap, n in use),
 * doubling up to max. Returns the (possibly moved) array, or NULL with arr
 * still valid and unchanged when max is reached or memory is short.
 */
static void *room_for_one(void *arr, uint32_t *cap, uint32_t n, size_t elem, uint32_t max)
{
    if (n < *cap)
        return arr;
    uint32_t want = *cap ? *cap * 2 : 8;
    if (want > max)
        want = max;
    if (want <= n)
        return NULL;
    void *p = realloc(arr, (size_t)want * elem);
    if (p)
        *cap = want;
    return p;
}

static void emit(struct gossip_core *c, uint64_t now, enum gossip_event_kind kind, uint32_t idx)
{
    if (kind >= GOSSIP_TRACE_PROBE && !c->cfg.trace)
        return;
    struct gossip_event *ev =
        room_for_one(c->ev, &c->ev_cap, c->n_ev, sizeof *c->ev, GOSSIP_EVENTS_MAX);
    if (!ev) {
        c->ctr.drops[GOSSIP_DROP_EVENTS_FULL]++;
        return;
    }
    c->ev = ev;
    struct gossip_event *e = &c->ev[c->n_ev++];
    e->kind = kind;
    memcpy(e->id, c->m[idx].id, GOSSIP_ID_BYTES);
    e->incarnation = c->m[idx].incarnation;
    e->now_ms = now;
}

/* Queues the scratch writer's bytes for sending to (id, addr). */
static void send_bytes(struct gossip_core *c, const uint8_t *to_id, const char *addr,
                       const struct gw_writer *w)
{
    NX_ASSERT(!w->overflow);
    struct gossip_out_msg *out =
        room_for_one(c->out, &c->out_cap, c->n_out, sizeof *c->out, GOSSIP_OUTBOX_MAX);
    if (!out) {
        c->ctr.drops[GOSSIP_DROP_OUTBOX_FULL]++;
        return;
    }
    c->out = out;
    uint8_t *data = malloc(w->len);
    if (!data) {
        c->ctr.drops[GOSSIP_DROP_OUTBOX_FULL]++;
        return;
    }
    memcpy(data, w->buf, w->len);
    struct gossip_out_msg *o = &c->out[c->n_out++];
    memcpy(o->to_id, to_id, GOSSIP_ID_BYTES);
    size_t addr_len = strnlen(addr, GOSSIP_ADDR_MAX);
    memcpy(o->to_addr, addr, addr_len);
    o->to_addr[addr_len] = '\0';
    o->data = data;
    o->len = w->len;
    c->ctr.msgs_sent[w->buf[1]]++;
    c->ctr.bytes_sent += w->len;
}

static bool member_addr(const struct gossip_core *c, uint32_t idx, char *out)
{
    return gw_meta_addr(c->m[idx].meta, c->m[idx].meta_len, out);
}

static void send_to_member(struct gossip_core *c, uint32_t idx, const struct gw_writer *w)
{
    char addr[GOSSIP_ADDR_MAX + 1];
    if (!member_addr(c, idx, addr)) {
        c->ctr.drops[GOSSIP_DROP_UNKNOWN_PEER]++;
        return;
    }
    send_bytes(c, c->m[idx].id, addr, w);
}

static struct gw_writer writer(struct gossip_core *c, size_t cap)
{
    struct gw_writer w = {.buf = c->scratch, .cap = cap < c->scratch_cap ? cap : c->scratch_cap};
    return w;
}

/* ---- broadcast queue -------------------------------------------------------- */

static uint32_t retransmit_limit(const struct gossip_core *c)
{
    uint32_t digits = 0;
    for (uint64_t x = 1; x < (uint64_t)c->n_live + 1; x *= 10)
        digits++;
    return c->cfg.retransmit_mult * (digits ? digits : 1);
}

/* (Re)queues news about member idx with zero transmissions: newest first. */
static void enqueue(struct gossip_core *c, uint32_t idx, uint32_t from)
{
    struct member *m = &c->m[idx];
    m->tx = 0;
    m->from = from;
    if (!m->queued) {
        m->queued = true;
        c->bq[c->bq_n++] = idx;
    }
}

static uint8_t wire_kind(uint8_t state)
{
    static const uint8_t kinds[] = {GW_ALIVE, GW_SUSPECT, GW_DEAD, GW_LEFT};
    return kinds[state];
}

static void put_member(struct gossip_core *c, struct gw_writer *w, uint32_t idx, uint32_t from)
{
    const struct member *m = &c->m[idx];
    const uint8_t *from_id = c->m[from < c->n ? from : 0].id;
    gw_put_update(w, wire_kind(m->state), m->id, m->incarnation, m->meta, m->meta_len, from_id);
}

static size_t member_wire_size(const struct gossip_core *c, uint32_t idx)
{
    return gw_update_size(wire_kind(c->m[idx].state), c->m[idx].meta_len);
}

/* Orders bq[] by fewest transmissions (stable counting sort on the u8 count). */
static void sort_queue(struct gossip_core *c)
{
    uint32_t start[257] = {0};
    for (uint32_t i = 0; i < c->bq_n; i++)
        start[c->m[c->bq[i]].tx + 1]++;
    for (unsigned t = 1; t < 257; t++)
        start[t] += start[t - 1];
    for (uint32_t i = 0; i < c->bq_n; i++)
        c->bq_tmp[start[c->m[c->bq[i]].tx]++] = c->bq[i];
    memcpy(c->bq, c->bq_tmp, c->bq_n * sizeof *c->bq);
}

/* Puts member idx's suspicion first in w when we hold it suspect; true if carried. */
static bool carry_suspicion(struct gossip_core *c, struct gw_writer *w, uint32_t idx,
                            size_t *budget, uint32_t *sent)
{
    if (idx >= c->n || c->m[idx].state != GOSSIP_SUSPECT)
        return false;
    size_t sz = member_wire_size(c, idx);
    if (sz > *budget || sz > w->cap - w->len)
        return false;
    put_member(c, w, idx, c->m[idx].from);
    *budget -= sz;
    (*sent)++;
    return true;
}

/*
 * Appends the update count and as many queued updates as fit in the budget,
 * fewest transmissions first; drops those sent retransmit_limit times.
 * When the recipient `to`, or the member `about` whom we ask a relay, is a
 * member we suspect, that suspicion goes first and always: the suspect
 * learns of it at the first contact and can refute at once, and a relay that
 * already knows the refutation corrects us in its answer.
 */
static void put_piggyback(struct gossip_core *c, struct gw_writer *w, uint32_t to, uint32_t about)
{
    size_t count_at = w->len;
    size_t budget = c->cfg.max_piggyback_bytes;
    uint32_t limit = retransmit_limit(c), sent = 0, keep = 0;
    gw_put_u16(w, 0);
    bool carried = carry_suspicion(c, w, to, &budget, &sent);
    bool carried_about = about != to && carry_suspicion(c, w, about, &budget, &sent);
    for (uint32_t i = 0; to != NO_INDEX && to == c->fix_to && i < c->n_fix; i++) {
        uint32_t idx = c->fix[i];
        size_t sz = member_wire_size(c, idx);
        if (sz <= budget && sz <= w->cap - w->len) {
            put_member(c, w, idx, c->m[idx].from);
            budget -= sz;
            sent++;
        }
    }
    if (c->bq_n > 1)
        sort_queue(c);
    for (uint32_t i = 0; i < c->bq_n; i++) {
        uint32_t idx = c->bq[i];
        struct member *m = &c->m[idx];
        size_t sz = member_wire_size(c, idx);
        if ((carried && idx == to) || (carried_about && idx == about))
            sz = SIZE_MAX; /* already carried above */
        if (sz <= budget && sz <= w->cap - w->len && sent < UINT16_MAX) {
            put_member(c, w, idx, m->from);
            budget -= sz;
            sent++;
            m->tx++;
        }
        if (m->tx >= limit || m->tx == UINT8_MAX)
            m->queued = false;
        else
            c->bq[keep++] = idx;
    }
    c->bq_n = keep;
    gw_patch_u16(w, count_at, (uint16_t)sent);
    c->ctr.updates_sent += sent;
}

/* The fixed part of a probe-path message. */
struct small {
    uint8_t type;
    uint32_t seq;
    const uint8_t *target;   /* PING, PING_REQ */
    const char *target_addr; /* PING_REQ */
    uint64_t incarnation;    /* ACK: the acknowledging member's incarnation */
};

/*
 * Sends a probe-path message (ping, ping-req, ack, nack, gossip) with
 * piggy-back to member to_idx, or when NO_INDEX to (to_id, to_addr).
 */
static void send_small(struct gossip_core *c, uint32_t to_idx, const uint8_t *to_id,
                       const char *to_addr, const struct small *sm)
{
    struct gw_writer w = writer(c, c->cfg.max_msg_bytes);
    uint8_t type = sm->type;
    gw_put_header(&w, type, sm->seq);
    if (type == GOSSIP_MSG_PING || type == GOSSIP_MSG_PING_REQ)
        gw_put_bytes(&w, sm->target, GOSSIP_ID_BYTES);
    if (type == GOSSIP_MSG_PING_REQ)
        gw_put_addr(&w, sm->target_addr);
    if (type == GOSSIP_MSG_ACK)
        gw_put_u64(&w, sm->incarnation);
    if (type == GOSSIP_MSG_PING || type == GOSSIP_MSG_PING_REQ) {
        /* our own address, so that a member who does not know us yet (we
         * just joined, or it holds a partial view) can still answer */
        char self_addr[GOSSIP_ADDR_MAX + 1];
        member_addr(c, 0, self_addr);
        gw_put_addr(&w, self_addr);
    }
    uint32_t about = type == GOSSIP_MSG_PING_REQ ? find(c, sm->target) : NO_INDEX;
    put_piggyback(c, &w, to_idx != NO_INDEX ? to_idx : find(c, to_id), about);
    if (to_idx != NO_INDEX)
        send_to_member(c, to_idx, &w);
    else
        send_bytes(c, to_id, to_addr, &w);
}

/* Sends our whole view (as much as fits, rotating the start) as push-pull. */
static void send_state(struct gossip_core *c, const uint8_t *to_id, const char *to_addr,
                       uint8_t type)
{
    struct gw_writer w = writer(c, c->cfg.max_push_pull_bytes);
    gw_put_header(&w, type, 0);
    size_t count_at = w.len;
    gw_put_u16(&w, 0);
    uint32_t count = 0;
    put_member(c, &w, 0, 0);
    count++;
    uint32_t others = c->n - 1;
    uint32_t start = others ? c->push_pull_offset % others : 0, i;
    for (i = 0; i < others && count < UINT16_MAX; i++) {
        uint32_t idx = 1 + (start + i) % others;
        if (member_wire_size(c, idx) > w.cap - w.len)
            break;
        put_member(c, &w, idx, c->m[idx].from);
        count++;
    }
    c->push_pull_offset = start + i;
    gw_patch_u16(&w, count_at, (uint16_t)count);
    send_bytes(c, to_id, to_addr, &w);
}

/* ---- state transitions ------------------------------------------------------- */

static void set_state(struct gossip_core *c, uint64_t now, uint32_t idx, uint8_t state)
{
    struct member *m = &c->m[idx];
    if (m->state == state)
        return;
    c->n_live += is_live(state) - is_live(m->state);
    c->n_suspect += (state == GOSSIP_SUSPECT) - (m->state == GOSSIP_SUSPECT);
    m->state = state;
    m->change_ms = now;
}

/*
 * The message being handled claimed something older than what we know about
 * member idx (alive at a higher incarnation). Our answer to its sender will
 * carry the newer record, so a member that learned a suspicion late is
 * corrected at once instead of declaring a healthy member dead.
 */
static void note_stale(struct gossip_core *c, uint32_t idx)
{
    for (uint32_t i = 0; i < c->n_fix; i++)
        if (c->fix[i] == idx)
            return;
    if (c->n_fix < GOSSIP_FIX_MAX)
        c->fix[c->n_fix++] = idx;
}

static void refute(struct gossip_core *c, uint64_t now, uint64_t claimed)
{
    struct member *self = &c->m[0];
    if (claimed < self->incarnation) {
        /* the sender still believes an old claim: spread our alive anew */
        enqueue(c, 0, 0);
        note_stale(c, 0);
        return;
    }
    self->incarnation = claimed + 1;
    enqueue(c, 0, 0);
    c->ctr.refutations++;
    if (c->cfg.lifeguard_awareness && c->lhm < GOSSIP_LHM_MAX)
        c->lhm++;
    emit(c, now, GOSSIP_EV_REFUTE, 0);
}

/*
 * spread_new: re-broadcast if the member is new to us; spread_known: if it is
 * a newer incarnation of a member we knew. Push-pull merges pass false for
 * third parties that are new to us: anti-entropy already delivers those, and
 * re-broadcasting them would flood the piggy-back budget of nodes with partial
 * views and starve real news.
 */
static void on_alive(struct gossip_core *c, uint64_t now, const uint8_t *id, uint64_t inc,
                     const uint8_t *meta, uint16_t meta_len, bool spread_new, bool spread_known)
{
    if (meta_len > c->cfg.max_meta_bytes) {
        c->ctr.drops[GOSSIP_DROP_META]++;
        return;
    }
    uint32_t idx = find(c, id);
    if (idx == 0) {
        if (inc > c->m[0].incarnation && !c->left)
            refute(c, now, inc);
        return;
    }
    if (idx == NO_INDEX) {
        idx = add_member(c, now, id, inc, meta, meta_len);
        if (idx == NO_INDEX)
            return;
        emit(c, now, GOSSIP_EV_JOIN, idx);
        if (spread_new)
            enqueue(c, idx, 0);
        return;
    }
    struct member *m = &c->m[idx];
    if (inc <= m->incarnation)
        return;
    uint8_t old = m->state;
    m->incarnation = inc;
    bool meta_changed = set_meta_bytes(m, meta, meta_len);
    set_state(c, now, idx, GOSSIP_ALIVE);
    if (old != GOSSIP_ALIVE)
        emit(c, now, GOSSIP_EV_ALIVE, idx);
    else if (meta_changed)
        emit(c, now, GOSSIP_EV_META, idx);
    if (spread_known)
        enqueue(c, idx, 0);
}

/* Records an independent suspecter; true when it is new. */
static bool add_tag(struct member *m, const uint8_t *from)
{
    uint32_t tag = id_tag(from);
    for (unsigned i = 0; i < m->n_tags; i++)
        if (m->tags[i] == tag)
            return false;
    if (m->n_tags >= NX_ARRAY_LEN(m->tags))
        return false;
    m->tags[m->n_tags++] = tag;
    return true;
}

/*
 * Makes member idx our next probe target without skipping anyone else in
 * this round: a suspicion we hold is then checked, and carried to the
 * suspect in our ping, within one period instead of a whole round.
 */
static void probe_next(struct gossip_core *c, uint32_t idx)
{
    uint32_t p = 0;
    while (p < c->probe_n && c->probe_list[p] != idx)
        p++;
    if (p == c->probe_n)
        return;
    uint32_t q = p >= c->probe_pos ? c->probe_pos : --c->probe_pos;
    c->probe_list[p] = c->probe_list[q];
    c->probe_list[q] = idx;
}

/*
 * Common start of a negative claim (suspect, dead, left) at incarnation inc:
 * refutes it when it is about us, notes a stale sender when we know better.
 * Returns the member's index, or NO_INDEX when there is nothing more to do.
 */
static uint32_t claim_target(struct gossip_core *c, uint64_t now, const uint8_t *id, uint64_t inc)
{
    uint32_t idx = find(c, id);
    if (idx == 0) {
        if (!c->left)
            refute(c, now, inc);
        return NO_INDEX;
    }
    if (idx != NO_INDEX && inc < c->m[idx].incarnation && c->m[idx].state == GOSSIP_ALIVE)
        note_stale(c, idx);
    return idx;
}

static void on_suspect(struct gossip_core *c, uint64_t now, const uint8_t *id, uint64_t inc,
                       const uint8_t *from)
{
    uint32_t idx = claim_target(c, now, id, inc);
    if (idx == NO_INDEX)
        return;
    struct member *m = &c->m[idx];
    if (!is_live(m->state) || inc < m->incarnation || inc < m->proven_inc)
        return;
    uint32_t from_idx = find(c, from);
    if (from_idx == NO_INDEX)
        from_idx = 0;
    if (m->state == GOSSIP_SUSPECT && inc == m->incarnation) {
        if (add_tag(m, from)) /* a new confirmation: shorter timeout, spread it */
            enqueue(c, idx, from_idx);
        return;
    }
    m->incarnation = inc;
    set_state(c, now, idx, GOSSIP_SUSPECT);
    m->suspect_start_ms = now;
    m->n_tags = 0;
    add_tag(m, from);
    if (from_idx == 0)
        c->ctr.suspicions_raised++;
    else
        c->ctr.suspicions_learned++;
    m->called = false;
    probe_next(c, idx);
    emit(c, now, GOSSIP_EV_SUSPECT, idx);
    enqueue(c, idx, from_idx);
}

static void on_dead_or_left(struct gossip_core *c, uint64_t now, const uint8_t *id, uint64_t inc,
                            uint8_t state)
{
    uint32_t idx = claim_target(c, now, id, inc);
    if (idx == NO_INDEX)
        return;
    struct member *m = &c->m[idx];
    if (inc < m->incarnation || inc < m->proven_inc || m->state == GOSSIP_LEFT || m->state == state)
        return;
    m->incarnation = inc;
    set_state(c, now, idx, state);
    emit(c, now, state == GOSSIP_DEAD ? GOSSIP_EV_DEAD : GOSSIP_EV_LEFT, idx);
    enqueue(c, idx, 0);
}

static void apply_update(struct gossip_core *c, uint64_t now, const struct gw_update *u,
                         bool spread_new)
{
    c->ctr.updates_received++;
    switch (u->kind) {
    case GW_ALIVE:
        on_alive(c, now, u->id, u->incarnation, u->meta, u->meta_len, spread_new, true);
        break;
    case GW_SUSPECT:
        on_suspect(c, now, u->id, u->incarnation, u->from);
        break;
    case GW_DEAD:
        on_dead_or_left(c, now, u->id, u->incarnation, GOSSIP_DEAD);
        break;
    default:
        on_dead_or_left(c, now, u->id, u->incarnation, GOSSIP_LEFT);
        break;
    }
}

/* ---- suspicion timeout ------------------------------------------------------- */

static uint64_t min_suspicion_ms(const struct gossip_core *c)
{
    double n = c->n_live > 1 ? (double)c->n_live : 1.0;
    double node_scale = fmax(1.0, log10(n));
    return (uint64_t)(c->cfg.suspicion_mult * node_scale * c->cfg.probe_interval_ms);
}

uint64_t gossip_suspicion_timeout_ms(const struct gossip_core *c, unsigned confirmations)
{
    uint64_t lo = min_suspicion_ms(c);
    if (!c->cfg.lifeguard_suspicion)
        return lo;
    uint64_t hi = lo * c->cfg.suspicion_max_mult;
    uint32_t k = c->cfg.indirect_k;
    if (c->n_live < k + 2)
        k = c->n_live > 2 ? c->n_live - 2 : 0;
    if (k < 1)
        return lo;
    double frac = log((double)confirmations + 1.0) / log((double)k + 1.0);
    double t = (double)hi - (double)(hi - lo) * frac;
    return t < (double)lo ? lo : (uint64_t)t;
}

/*
 * When our own health is poor (LHM > 0) we also wait (LHM+1) times longer
 * before declaring a suspect dead ourselves: our view is the least reliable
 * one around, and healthy members' DEAD messages still reach us.
 */
static uint64_t suspect_deadline(const struct gossip_core *c, const struct member *m)
{
    unsigned conf = m->n_tags ? m->n_tags - 1u : 0u;
    return m->suspect_start_ms + gossip_suspicion_timeout_ms(c, conf) * scale(c);
}

static void expire_suspicions(struct gossip_core *c, uint64_t now)
{
    if (c->n_suspect == 0)
        return;
    for (uint32_t i = 1; i < c->n; i++) {
        struct member *m = &c->m[i];
        if (m->state != GOSSIP_SUSPECT || now < suspect_deadline(c, m))
            continue;
        set_state(c, now, i, GOSSIP_DEAD);
        c->ctr.deaths_declared++;
        emit(c, now, GOSSIP_EV_DEAD, i);
        enqueue(c, i, 0);
    }
}

/*
 * Last call: two of our periods before a suspicion ends here, the suspect
 * gets one more ping of its own, outside the probe schedule (no relays, no
 * health change, nobody's probe delayed). The ping carries the suspicion
 * first; the suspect's ack carries the refutation back (or proves a newer
 * incarnation), so we do not declare dead a member whose refutation we
 * merely missed while others spread it. The "probe the suspect next" rule
 * does not ensure this: when many suspicions arrive at once, each pushes the
 * one before back in the round.
 */
static uint64_t last_call_ms(const struct gossip_core *c, const struct member *m)
{
    uint64_t lead = 2ull * c->cfg.probe_interval_ms * scale(c);
    uint64_t deadline = suspect_deadline(c, m);
    return deadline > lead ? deadline - lead : 0;
}

static void last_calls(struct gossip_core *c, uint64_t now)
{
    for (uint32_t i = 1; i < c->n && c->n_suspect > 0; i++) {
        struct member *m = &c->m[i];
        if (m->state != GOSSIP_SUSPECT || m->called || now < last_call_ms(c, m))
            continue;
        m->called = true;
        m->call_seq = ++c->seq;
        struct small sm = {.type = GOSSIP_MSG_PING, .seq = m->call_seq, .target = m->id};
        send_small(c, i, NULL, NULL, &sm);
    }
}

/* ---- probing ---------------------------------------------------------------- */

static void adjust_health(struct gossip_core *c, int delta)
{
    if (!c->cfg.lifeguard_awareness)
        return;
    int v = (int)c->lhm + delta;
    c->lhm = v < 0 ? 0 : v > GOSSIP_LHM_MAX ? GOSSIP_LHM_MAX : (unsigned)v;
}

static void shuffle_probe_list(struct gossip_core *c)
{
    for (uint32_t i = c->probe_n; i > 1; i--) {
        uint32_t j = (uint32_t)nx_rng_below(&c->rng, i);
        uint32_t t = c->probe_list[i - 1];
        c->probe_list[i - 1] = c->probe_list[j];
        c->probe_list[j] = t;
    }
}

static uint32_t next_probe_target(struct gossip_core *c)
{
    for (uint32_t tries = 0; tries < c->probe_n; tries++) {
        if (c->probe_pos >= c->probe_n) {
            shuffle_probe_list(c);
            c->probe_pos = 0;
        }
        uint32_t idx = c->probe_list[c->probe_pos++];
        if (is_live(c->m[idx].state))
            return idx;
    }
    return NO_INDEX;
}

/* Picks up to want alive members other than us and `skip` (reservoir sampling). */
static uint32_t pick_random_alive(struct gossip_core *c, uint32_t skip, uint32_t *out,
                                  uint32_t want)
{
    uint32_t seen = 0;
    for (uint32_t i = 1; i < c->n && want > 0; i++) {
        if (i == skip || c->m[i].state != GOSSIP_ALIVE)
            continue;
        if (seen < want)
            out[seen] = i;
        else {
            uint64_t j = nx_rng_below(&c->rng, seen + 1);
            if (j < want)
                out[j] = i;
        }
        seen++;
    }
    return seen < want ? seen : want;
}

/*
 * Lifeguard: nacks that should have come and did not mean that our own links
 * or CPU are at fault, not the target. The health multiplier goes up by the
 * number missing. When not one came back, our own slowness is the likeliest
 * cause, and this probe was timed with the multiplier from before: the
 * verdict waits one more period, so that a late ack (slow because of us) can
 * still clear the target. A nack that did arrive shows that our receive path
 * works (a partition may have swallowed the others): no waiting then. The
 * wait is one base period, not one scaled by the new multiplier: in a
 * partition every member's multiplier climbs, and scaled waits slowed the
 * detection of the unreachable side. True when the verdict was put off.
 */
static bool defer_verdict(struct gossip_core *c, uint64_t now)
{
    struct probe *p = &c->probe;
    uint32_t missing = p->expected_nacks > p->nacks ? p->expected_nacks - p->nacks : 0;
    if (p->deferred)
        return false;
    if (p->expected_nacks == 0) {
        adjust_health(c, 1); /* no nacks to judge by: any failure counts */
        return false;
    }
    adjust_health(c, (int)missing);
    if (p->nacks > 0)
        return false;
    p->deferred = true;
    c->next_probe_ms = now + c->cfg.probe_interval_ms;
    c->ctr.verdicts_deferred++;
    return true;
}

/* Ends the probe in flight; false when its verdict was put off (see above). */
static bool finish_probe(struct gossip_core *c, uint64_t now)
{
    struct probe *p = &c->probe;
    if (!p->active || p->acked) {
        p->active = false;
        return true;
    }
    if (defer_verdict(c, now))
        return false;
    p->active = false;
    c->ctr.probes_failed++;
    emit(c, now, GOSSIP_TRACE_PROBE_FAIL, p->target);
    struct member *m = &c->m[p->target];
    if (!is_live(m->state))
        return true;
    /* our next probe goes to the suspect again, carrying the suspicion */
    on_suspect(c, now, m->id, m->incarnation, c->m[0].id);
    return true;
}

static void start_probe(struct gossip_core *c, uint64_t now)
{
    uint32_t target = next_probe_target(c);
    c->next_probe_ms = now + (uint64_t)c->cfg.probe_interval_ms * scale(c);
    if (target == NO_INDEX)
        return;
    struct probe *p = &c->probe;
    memset(p, 0, sizeof *p);
    p->active = true;
    p->target = target;
    p->seq = ++c->seq;
    p->start_ms = now;
    p->direct_deadline_ms = now + (uint64_t)c->cfg.probe_timeout_ms * scale(c);
    c->ctr.probes++;
    emit(c, now, GOSSIP_TRACE_PROBE, target);
    struct small sm = {.type = GOSSIP_MSG_PING, .seq = p->seq, .target = c->m[target].id};
    send_small(c, target, NULL, NULL, &sm);
}

static void send_ping_reqs(struct gossip_core *c, uint64_t now)
{
    struct probe *p = &c->probe;
    uint32_t helpers[GOSSIP_INDIRECT_K_MAX];
    char addr[GOSSIP_ADDR_MAX + 1];
    p->indirect_sent = true;
    if (!member_addr(c, p->target, addr))
        return;
    uint32_t k = pick_random_alive(c, p->target, helpers, c->cfg.indirect_k);
    emit(c, now, GOSSIP_TRACE_PING_REQ, p->target);
    struct small sm = {.type = GOSSIP_MSG_PING_REQ,
                       .seq = p->seq,
                       .target = c->m[p->target].id,
                       .target_addr = addr};
    for (uint32_t i = 0; i < k; i++)
        send_small(c, helpers[i], NULL, NULL, &sm);
    p->expected_nacks = c->cfg.lifeguard_nack ? k : 0;
}

/* ---- message handlers ---------------------------------------------------------- */

static void on_ping_req(struct gossip_core *c, uint64_t now, const uint8_t *from,
                        const struct gw_msg *msg)
{
    struct relay *r = NULL;
    for (unsigned i = 0; i < GOSSIP_RELAYS_MAX && !r; i++)
        if (!c->relays[i].used)
            r = &c->relays[i];
    if (!r) {
        c->ctr.drops[GOSSIP_DROP_RELAYS_FULL]++;
        return;
    }
    char addr[GOSSIP_ADDR_MAX + 1];
    memcpy(addr, msg->addr, msg->addr_len);
    addr[msg->addr_len] = '\0';
    uint32_t tidx = find(c, msg->target);
    if (msg->addr_len == 0 && (tidx == NO_INDEX || !member_addr(c, tidx, addr))) {
        c->ctr.drops[GOSSIP_DROP_UNKNOWN_PEER]++;
        return;
    }
    r->used = true;
    memcpy(r->origin, from, GOSSIP_ID_BYTES);
    memcpy(r->origin_addr, msg->reply_addr, msg->reply_addr_len);
    r->origin_addr[msg->reply_addr_len] = '\0';
    r->origin_seq = msg->seq;
    r->seq = ++c->seq;
    /*
     * The nack goes after half a probe timeout, so that it reaches the origin
     * inside its indirect window (the other half of its period) even when
     * each network hop takes a quarter of a timeout: a nack that comes late
     * would make a healthy origin doubt its own health. An ack that comes
     * later is still forwarded until a period has passed.
     */
    r->nacked = false;
    r->nack_ms = now + c->cfg.probe_timeout_ms / 2;
    r->expire_ms = now + c->cfg.probe_interval_ms;
    struct small sm = {.type = GOSSIP_MSG_PING, .seq = r->seq, .target = msg->target};
    send_small(c, NO_INDEX, msg->target, addr, &sm);
}

/*
 * Sends a small reply (ack or nack) to `to`: at the address we hold for it,
 * else at the address it gave in its request (addr, may be "").
 */
static void reply(struct gossip_core *c, const uint8_t *to, const char *addr, uint8_t type,
                  uint32_t seq, uint64_t incarnation)
{
    struct small sm = {.type = type, .seq = seq, .incarnation = incarnation};
    char known[GOSSIP_ADDR_MAX + 1];
    uint32_t idx = find(c, to);
    if (idx != NO_INDEX && idx != 0 && member_addr(c, idx, known))
        send_small(c, idx, NULL, NULL, &sm);
    else if (idx != 0 && addr[0] != '\0')
        send_small(c, NO_INDEX, to, addr, &sm);
    else
        c->ctr.drops[GOSSIP_DROP_UNKNOWN_PEER]++;
}

/*
 * An ack is first-hand proof that member idx lives at incarnation inc, newer
 * than the record we hold: claims below inc are refuted by it (they are
 * ignored from now on), and a suspicion we hold ends here. The record itself
 * (metadata) still has to come by gossip; until then we keep the old one.
 */
static void proven_alive(struct gossip_core *c, uint64_t now, uint32_t idx, uint64_t inc)
{
    struct member *m = &c->m[idx];
    if (inc > m->proven_inc)
        m->proven_inc = inc;
    if (m->state == GOSSIP_SUSPECT) {
        set_state(c, now, idx, GOSSIP_ALIVE);
        emit(c, now, GOSSIP_EV_ALIVE, idx);
    }
}

/*
 * incarnation is what the probed member said it is at. Above what we hold, we
 * missed its refutation or metadata change: poke it with a gossip message,
 * which carries our stale view, and it answers with its current record.
 */
static void on_ack(struct gossip_core *c, uint64_t now, const uint8_t *from, uint32_t seq,
                   uint64_t incarnation)
{
    struct probe *p = &c->probe;
    if (p->active && !p->acked && seq == p->seq) {
        p->acked = true;
        if (!p->indirect_sent && now <= p->direct_deadline_ms)
            adjust_health(c, -1);
        emit(c, now, GOSSIP_TRACE_ACK, p->target);
        if (incarnation > c->m[p->target].incarnation && is_live(c->m[p->target].state)) {
            proven_alive(c, now, p->target, incarnation);
            send_small(c, p->target, NULL, NULL, &(struct small){.type = GOSSIP_MSG_GOSSIP});
        }
        return;
    }
    for (unsigned i = 0; i < GOSSIP_RELAYS_MAX; i++) {
        struct relay *r = &c->relays[i];
        if (r->used && r->seq == seq) {
            r->used = false;
            reply(c, r->origin, r->origin_addr, GOSSIP_MSG_ACK, r->origin_seq, incarnation);
            return;
        }
    }
    uint32_t idx = find(c, from); /* the answer to a last call? */
    if (idx != NO_INDEX && idx != 0 && c->m[idx].called && c->m[idx].call_seq == seq) {
        if (incarnation > c->m[idx].incarnation && is_live(c->m[idx].state)) {
            proven_alive(c, now, idx, incarnation);
            send_small(c, idx, NULL, NULL, &(struct small){.type = GOSSIP_MSG_GOSSIP});
        }
        return;
    }
    c->ctr.drops[GOSSIP_DROP_STALE_ACK]++;
}

static void on_nack(struct gossip_core *c, uint64_t now, uint32_t seq)
{
    struct probe *p = &c->probe;
    if (p->active && seq == p->seq) {
        p->nacks++;
        emit(c, now, GOSSIP_TRACE_NACK, p->target);
    } else {
        c->ctr.drops[GOSSIP_DROP_STALE_ACK]++;
    }
}

int gossip_receive(struct gossip_core *c, uint64_t now, const uint8_t from[GOSSIP_ID_BYTES],
                   const uint8_t *bytes, size_t len)
{
    if (c->left) {
        c->ctr.drops[GOSSIP_DROP_LEFT]++;
        return NX_ERR_STATE;
    }
    if (len > GOSSIP_WIRE_MAX_BYTES) {
        c->ctr.drops[GOSSIP_DROP_TOO_BIG]++;
        return NX_ERR_TOO_BIG;
    }
    struct gw_msg msg;
    if (gw_parse(&msg, bytes, len) != NX_OK) {
        c->ctr.drops[GOSSIP_DROP_DECODE]++;
        return NX_ERR_DECODE;
    }
    c->ctr.msgs_received[msg.type]++;
    c->ctr.bytes_received += len;
    if (msg.type == GOSSIP_MSG_PING && memcmp(msg.target, c->m[0].id, GOSSIP_ID_BYTES) != 0) {
        c->ctr.drops[GOSSIP_DROP_MISDIRECTED]++;
        return NX_OK;
    }
    struct gw_reader r = msg.updates;
    for (uint32_t i = 0; i < msg.update_count; i++) {
        struct gw_update u;
        gw_next_update(&r, &u);
        bool merge = msg.type == GOSSIP_MSG_PUSH_PULL || msg.type == GOSSIP_MSG_PUSH_PULL_REPLY;
        apply_update(c, now, &u, !merge || memcmp(u.id, from, GOSSIP_ID_BYTES) == 0);
    }
    c->fix_to = c->n_fix ? find(c, from) : NO_INDEX;
    if (c->fix_to == 0)
        c->fix_to = NO_INDEX;
    switch (msg.type) {
    case GOSSIP_MSG_PING: {
        char addr[GOSSIP_ADDR_MAX + 1];
        memcpy(addr, msg.reply_addr, msg.reply_addr_len);
        addr[msg.reply_addr_len] = '\0';
        reply(c, from, addr, GOSSIP_MSG_ACK, msg.seq, c->m[0].incarnation);
        break;
    }
    case GOSSIP_MSG_PING_REQ:
        on_ping_req(c, now, from, &msg);
        /* our ack or nack comes later and without corrections: send them now */
        if (c->fix_to != NO_INDEX)
            send_small(c, c->fix_to, NULL, NULL, &(struct small){.type = GOSSIP_MSG_GOSSIP});
        break;
    case GOSSIP_MSG_ACK:
        on_ack(c, now, from, msg.seq, msg.incarnation);
        break;
    case GOSSIP_MSG_NACK:
        on_nack(c, now, msg.seq);
        break;
    case GOSSIP_MSG_PUSH_PULL: {
        uint32_t idx = find(c, from);
        char addr[GOSSIP_ADDR_MAX + 1];
        if (idx == NO_INDEX || idx == 0 || !member_addr(c, idx, addr))
            c->ctr.drops[GOSSIP_DROP_UNKNOWN_PEER]++;
        else
            send_state(c, from, addr, GOSSIP_MSG_PUSH_PULL_REPLY);
        break;
    }
    default:
        /* no answer goes back: correct a stale sender with a message of its own */
        if (c->fix_to != NO_INDEX)
            send_small(c, c->fix_to, NULL, NULL, &(struct small){.type = GOSSIP_MSG_GOSSIP});
        break;
    }
    c->n_fix = 0;
    c->fix_to = NO_INDEX;
    if (c->joining && c->n > 1)
        c->joining = false;
    check_invariants(c);
    return NX_OK;
}

/* ---- timers ------------------------------------------------------------------ */

/*
 * Push-pull period: the configured one up to 32 live members, then one more
 * multiple per doubling (as memberlist does), so that anti-entropy bytes per
 * member stay bounded as the full state grows with N.
 */
static uint64_t push_pull_interval_ms(const struct gossip_core *c)
{
    uint64_t mult = 1;
    for (uint32_t n = c->n_live; n > 32; n = (n + 1) / 2)
        mult++;
    return mult * c->cfg.push_pull_interval_ms;
}

static void push_pull(struct gossip_core *c, uint64_t now)
{
    /* dead members too, so that healed partitions find each other again */
    for (int tries = 0; tries < 32 && c->n > 1; tries++) {
        uint32_t idx = 1 + (uint32_t)nx_rng_below(&c->rng, c->n - 1);
        char addr[GOSSIP_ADDR_MAX + 1];
        if (c->m[idx].state == GOSSIP_LEFT || !member_addr(c, idx, addr))
            continue;
        emit(c, now, GOSSIP_TRACE_PUSH_PULL, idx);
        send_state(c, c->m[idx].id, addr, GOSSIP_MSG_PUSH_PULL);
        return;
    }
}

void gossip_tick(struct gossip_core *c, uint64_t now)
{
    if (c->left)
        return;
    struct probe *p = &c->probe;
    if (p->active && !p->acked && !p->indirect_sent && now >= p->direct_deadline_ms)
        send_ping_reqs(c, now);
    if (now >= c->next_probe_ms && finish_probe(c, now))
        start_probe(c, now);
    for (unsigned i = 0; i < GOSSIP_RELAYS_MAX; i++) {
        struct relay *r = &c->relays[i];
        if (r->used && !r->nacked && now >= r->nack_ms) {
            r->nacked = true;
            if (c->cfg.lifeguard_nack)
                reply(c, r->origin, r->origin_addr, GOSSIP_MSG_NACK, r->origin_seq, 0);
        }
        if (r->used && now >= r->expire_ms)
            r->used = false;
    }
    last_calls(c, now);
    expire_suspicions(c, now);
    if (c->cfg.push_pull_interval_ms && now >= c->next_push_pull_ms) {
        c->next_push_pull_ms = now + push_pull_interval_ms(c);
        push_pull(c, now);
    }
    if (c->joining && now >= c->next_join_ms) {
        c->next_join_ms = now + c->cfg.probe_interval_ms;
        send_state(c, c->join_id, c->join_addr, GOSSIP_MSG_PUSH_PULL);
    }
    check_invariants(c);
}

/* ---- host commands ------------------------------------------------------------- */

struct gossip_core *gossip_create(const struct gossip_config *cfg,
                                  const uint8_t self_id[GOSSIP_ID_BYTES],
                                  const struct gossip_meta *self_meta, uint64_t incarnation,
                                  uint64_t seed, uint64_t now)
{
    if (!config_valid(cfg))
        return NULL;
    uint8_t meta[GOSSIP_META_MAX_BYTES];
    int meta_len = gossip_meta_encode(self_meta, meta, cfg->max_meta_bytes);
    if (meta_len < 0)
        return NULL;
    struct gossip_core *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cfg = *cfg;
    nx_rng_seed(&c->rng, seed);
    c->salt = nx_rng_next(&c->rng);
    c->scratch_cap = cfg->max_push_pull_bytes;
    c->scratch = malloc(c->scratch_cap);
    c->slots = calloc(16, sizeof *c->slots);
    c->fix_to = NO_INDEX;
    c->slot_mask = 15;
    if (!c->scratch || !c->slots ||
        add_member(c, now, self_id, incarnation, meta, (uint16_t)meta_len) != 0)
        goto err_free;
    /* spread probe and push-pull phases so that members do not move in step */
    c->next_probe_ms = now + nx_rng_below(&c->rng, cfg->probe_interval_ms);
    if (cfg->push_pull_interval_ms)
        c->next_push_pull_ms = now + nx_rng_below(&c->rng, cfg->push_pull_interval_ms);
    return c;

err_free:
    gossip_destroy(c);
    return NULL;
}

void gossip_destroy(struct gossip_core *c)
{
    if (!c)
        return;
    gossip_advance(c);
    for (uint32_t i = 0; i < c->n; i++)
        free(c->m[i].meta);
    free(c->m);
    free(c->slots);
    free(c->probe_list);
    free(c->bq);
    free(c->bq_tmp);
    free(c->out);
    free(c->ev);
    free(c->scratch);
    free(c);
}

int gossip_join(struct gossip_core *c, uint64_t now, const uint8_t seed_id[GOSSIP_ID_BYTES],
                const char *seed_addr)
{
    size_t n = strnlen(seed_addr, GOSSIP_ADDR_MAX + 1);
    if (n == 0 || n > GOSSIP_ADDR_MAX || c->left)
        return n == 0 || n > GOSSIP_ADDR_MAX ? NX_ERR_INVAL : NX_ERR_STATE;
    memcpy(c->join_id, seed_id, GOSSIP_ID_BYTES);
    memcpy(c->join_addr, seed_addr, n + 1);
    c->joining = true;
    c->next_join_ms = now + c->cfg.probe_interval_ms;
    send_state(c, c->join_id, c->join_addr, GOSSIP_MSG_PUSH_PULL);
    return NX_OK;
}

void gossip_leave(struct gossip_core *c, uint64_t now)
{
    if (c->left)
        return;
    set_state(c, now, 0, GOSSIP_LEFT);
    enqueue(c, 0, 0);
    /* tell a few members directly; they spread it with their own piggy-back */
    uint32_t targets[16];
    uint32_t want = retransmit_limit(c);
    uint32_t k = pick_random_alive(c, NO_INDEX, targets, want < 16 ? want : 16);
    for (uint32_t i = 0; i < k; i++) {
        struct gw_writer w = writer(c, c->cfg.max_msg_bytes);
        gw_put_header(&w, GOSSIP_MSG_GOSSIP, 0);
        gw_put_u16(&w, 1);
        put_member(c, &w, 0, 0);
        send_to_member(c, targets[i], &w);
    }
    c->left = true;
    c->probe.active = false;
    c->joining = false;
}

int gossip_set_meta(struct gossip_core *c, uint64_t now, const struct gossip_meta *meta)
{
    uint8_t buf[GOSSIP_META_MAX_BYTES];
    int len = gossip_meta_encode(meta, buf, c->cfg.max_meta_bytes);
    if (len < 0)
        return len;
    if (c->left)
        return NX_ERR_STATE;
    if (!set_meta_bytes(&c->m[0], buf, (uint16_t)len))
        return NX_OK; /* unchanged */
    c->m[0].incarnation++;
    c->m[0].change_ms = now;
    enqueue(c, 0, 0);
    return NX_OK;
}

int gossip_add_member(struct gossip_core *c, uint64_t now, const uint8_t id[GOSSIP_ID_BYTES],
                      uint64_t incarnation, const struct gossip_meta *meta)
{
    uint8_t buf[GOSSIP_META_MAX_BYTES];
    int len = gossip_meta_encode(meta, buf, c->cfg.max_meta_bytes);
    if (len < 0)
        return len;
    on_alive(c, now, id, incarnation, buf, (uint16_t)len, false, false);
    if (find(c, id) != NO_INDEX)
        return NX_OK;
    return c->n >= c->cfg.max_members ? NX_ERR_FULL : NX_ERR_NOMEM;
}

/* ---- outputs and queries -------------------------------------------------------- */

static uint64_t relay_deadline(const struct relay *r, uint64_t d)
{
    if (!r->nacked && r->nack_ms < d)
        d = r->nack_ms;
    return r->expire_ms < d ? r->expire_ms : d;
}

void gossip_ready(struct gossip_core *c, struct gossip_ready *out)
{
    out->msgs = c->out;
    out->msg_count = c->n_out;
    out->events = c->ev;
    out->event_count = c->n_ev;
    uint64_t d = UINT64_MAX;
    if (!c->left) {
        d = c->next_probe_ms;
        const struct probe *p = &c->probe;
        if (p->active && !p->acked && !p->indirect_sent && p->direct_deadline_ms < d)
            d = p->direct_deadline_ms;
        for (unsigned i = 0; i < GOSSIP_RELAYS_MAX; i++)
            if (c->relays[i].used)
                d = relay_deadline(&c->relays[i], d);
        for (uint32_t i = 1; i < c->n && c->n_suspect > 0; i++) {
            const struct member *m = &c->m[i];
            if (m->state != GOSSIP_SUSPECT)
                continue;
            if (suspect_deadline(c, m) < d)
                d = suspect_deadline(c, m);
            if (!m->called && last_call_ms(c, m) < d)
                d = last_call_ms(c, m);
        }
        if (c->cfg.push_pull_interval_ms && c->next_push_pull_ms < d)
            d = c->next_push_pull_ms;
        if (c->joining && c->next_join_ms < d)
            d = c->next_join_ms;
    }
    out->next_deadline_ms = d;
}

void gossip_advance(struct gossip_core *c)
{
    for (uint32_t i = 0; i < c->n_out; i++)
        free((void *)c->out[i].data);
    c->n_out = 0;
    c->n_ev = 0;
}

size_t gossip_member_count(const struct gossip_core *c)
{
    return c->n;
}
size_t gossip_live_count(const struct gossip_core *c)
{
    return c->n_live;
}
const struct gossip_counters *gossip_counters(const struct gossip_core *c)
{
    return &c->ctr;
}
unsigned gossip_health(const struct gossip_core *c)
{
    return c->lhm;
}

int gossip_member_get(const struct gossip_core *c, size_t index, struct gossip_member_info *out)
{
    if (index >= c->n)
        return NX_ERR_NOT_FOUND;
    const struct member *m = &c->m[index];
    memcpy(out->id, m->id, GOSSIP_ID_BYTES);
    out->state = (enum gossip_state)m->state;
    out->incarnation = m->incarnation;
    out->state_change_ms = m->change_ms;
    if (gossip_meta_decode(&out->meta, m->meta, m->meta_len) != NX_OK)
        return NX_ERR_INTERNAL; /* stored metadata was validated on the way in */
    return NX_OK;
}

int gossip_member_find(const struct gossip_core *c, const uint8_t id[GOSSIP_ID_BYTES],
                       struct gossip_member_info *out)
{
    uint32_t idx = find(c, id);
    return idx == NO_INDEX ? NX_ERR_NOT_FOUND : gossip_member_get(c, idx, out);
}

bool gossip_member_state(const struct gossip_core *c, const uint8_t id[GOSSIP_ID_BYTES],
                         enum gossip_state *state, uint64_t *incarnation)
{
    uint32_t idx = find(c, id);
    if (idx == NO_INDEX)
        return false;
    if (state)
        *state = (enum gossip_state)c->m[idx].state;
    if (incarnation)
        *incarnation = c->m[idx].incarnation;
    return true;
}
