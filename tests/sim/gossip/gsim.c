/*
 * gsim.c - the gossip simulator: a binary heap of timed events (timer
 * wake-ups and message deliveries) over a set of gossip cores.
 *
 * Determinism: the heap orders by (time, insertion number); every random draw
 * (latency, loss, ids, core seeds) comes from one nx_rng seeded by the run
 * seed; cores are driven only through their public API.
 */
#include "tests/sim/gossip/gsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EV_TICK = 0, EV_DELIVER = 1 };

struct sim_ev {
    uint64_t t;
    uint64_t order;
    uint32_t kind;
    uint32_t node;
    uint32_t from;
    uint32_t len;
    uint8_t *data; /* owned, EV_DELIVER */
};

struct sim_node {
    struct gossip_core *core;
    uint8_t id[GOSSIP_ID_BYTES];
    bool crashed, left;
    uint32_t slow;
    uint64_t slow_until; /* counts as slowed until then (see gsim_set_slow) */
    uint8_t group;
    uint64_t tick_at;
};

struct gsim {
    struct gsim_config cfg;
    struct nx_rng rng;
    struct sim_node *nodes;
    uint32_t n, cap;
    struct sim_ev *heap;
    size_t heap_n, heap_cap;
    uint64_t order;
    uint64_t now;
    bool partitioned;
    struct gsim_stats stats;
    int trace_node; /* GSIM_TRACE=<node>: print every event about it */
    bool in_tick;   /* the outputs being drained come from gossip_tick */
    struct gsim_hooks hooks;
};

/* ---- heap -------------------------------------------------------------- */

static bool ev_before(const struct sim_ev *a, const struct sim_ev *b)
{
    return a->t < b->t || (a->t == b->t && a->order < b->order);
}

static void heap_push(struct gsim *s, struct sim_ev ev)
{
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 1024;
        struct sim_ev *h = realloc(s->heap, cap * sizeof *h);
        NX_ASSERT(h != NULL);
        s->heap = h;
        s->heap_cap = cap;
    }
    ev.order = s->order++;
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!ev_before(&ev, &s->heap[parent]))
            break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = ev;
}

static struct sim_ev heap_pop(struct gsim *s)
{
    struct sim_ev top = s->heap[0];
    struct sim_ev last = s->heap[--s->heap_n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct sim_ev *best = &last;
        if (l < s->heap_n && ev_before(&s->heap[l], best)) {
            m = l;
            best = &s->heap[l];
        }
        if (r < s->heap_n && ev_before(&s->heap[r], best))
            m = r;
        if (m == i)
            break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (s->heap_n > 0)
        s->heap[i] = last;
    return top;
}

/* ---- nodes --------------------------------------------------------------- */

static void node_meta(struct gossip_meta *m, uint32_t i)
{
    memset(m, 0, sizeof *m);
    snprintf(m->addr, sizeof m->addr, "sim-%u:7946", i);
    snprintf(m->version, sizeof m->version, "0.1");
    m->cpu_total_millicores = 8000;
    m->cpu_free_millicores = 4000 + i % 4000;
    m->mem_total_bytes = 16ull << 30;
    m->mem_free_bytes = 8ull << 30;
}

/* Node ids carry the node index in their first 4 bytes; the rest is random. */
static void node_id(struct gsim *s, uint8_t *id, uint32_t i)
{
    for (int k = 0; k < GOSSIP_ID_BYTES; k++)
        id[k] = (uint8_t)nx_rng_next(&s->rng);
    id[0] = (uint8_t)i;
    id[1] = (uint8_t)(i >> 8);
    id[2] = (uint8_t)(i >> 16);
    id[3] = (uint8_t)(i >> 24);
}

static int node_of(const struct gsim *s, const uint8_t *id)
{
    uint32_t i =
        (uint32_t)id[0] | (uint32_t)id[1] << 8 | (uint32_t)id[2] << 16 | (uint32_t)id[3] << 24;
    if (i >= s->n || memcmp(s->nodes[i].id, id, GOSSIP_ID_BYTES) != 0)
        return -1;
    return (int)i;
}

static uint32_t latency(struct gsim *s)
{
    uint32_t span = s->cfg.lat_max_ms - s->cfg.lat_min_ms + 1;
    return s->cfg.lat_min_ms + (uint32_t)nx_rng_below(&s->rng, span);
}

static void schedule_tick(struct gsim *s, uint32_t i, uint64_t deadline)
{
    struct sim_node *nd = &s->nodes[i];
    if (deadline == UINT64_MAX)
        return;
    if (nd->slow > 1)
        deadline += (uint64_t)(nd->slow - 1) * GSIM_TIMER_QUANTUM_MS;
    if (deadline <= s->now)
        deadline = s->now + 1;
    if (deadline == nd->tick_at)
        return;
    nd->tick_at = deadline;
    heap_push(s, (struct sim_ev){.t = deadline, .kind = EV_TICK, .node = i});
}

static bool counts_slowed(const struct gsim *s, uint32_t node)
{
    return s->nodes[node].slow > 1 || s->now < s->nodes[node].slow_until;
}

static void check_event(struct gsim *s, uint32_t observer, const struct gossip_event *e)
{
    int j = node_of(s, e->id);
    if (s->hooks.event)
        s->hooks.event(s->hooks.ctx, observer, e, s->in_tick);
    if (j >= 0 && (uint32_t)j == observer && s->trace_node == j)
        fprintf(stderr, "trace t=%llu node=%d %s inc=%llu lhm=%u\n", (unsigned long long)s->now, j,
                gossip_event_name(e->kind), (unsigned long long)e->incarnation,
                gossip_health(s->nodes[j].core));
    if (j < 0 || (uint32_t)j == observer)
        return;
    bool reachable = !s->partitioned || s->nodes[j].group == s->nodes[observer].group;
    bool healthy = gsim_healthy(s, (uint32_t)j) && reachable;
    if (s->trace_node == j)
        fprintf(stderr, "trace t=%llu observer=%u member=%d %s inc=%llu\n",
                (unsigned long long)s->now, observer, j, gossip_event_name(e->kind),
                (unsigned long long)e->incarnation);
    if (e->kind == GOSSIP_EV_DEAD) {
        s->stats.deaths++;
        if (healthy && s->stats.false_deaths++ == 0)
            snprintf(s->stats.first_violation, sizeof s->stats.first_violation,
                     "t=%llu ms: node %u declared healthy node %d dead", (unsigned long long)s->now,
                     observer, j);
    } else if (e->kind == GOSSIP_EV_SUSPECT && healthy) {
        bool slowed = counts_slowed(s, (uint32_t)j);
        s->stats.false_suspicions++;
        s->stats.slow_suspicions += slowed;
        if (s->in_tick) { /* a timer raises a suspicion only by a failed probe */
            s->stats.raised_healthy += !slowed;
            s->stats.raised_slowed += slowed;
            s->stats.raised_by_slowed += counts_slowed(s, observer);
        }
    }
}

/* Collects a node's outputs: checks events, puts messages on the network. */
static void drain(struct gsim *s, uint32_t i)
{
    struct gossip_ready rd;
    gossip_ready(s->nodes[i].core, &rd);
    for (size_t k = 0; k < rd.event_count; k++)
        check_event(s, i, &rd.events[k]);
    for (size_t k = 0; k < rd.msg_count; k++) {
        const struct gossip_out_msg *m = &rd.msgs[k];
        s->stats.messages++;
        s->stats.bytes += m->len;
        if (m->data[1] == GOSSIP_MSG_PUSH_PULL || m->data[1] == GOSSIP_MSG_PUSH_PULL_REPLY)
            s->stats.bytes_push_pull += m->len;
        int to = node_of(s, m->to_id);
        bool lost = to < 0 || s->nodes[to].crashed ||
                    (s->partitioned && s->nodes[to].group != s->nodes[i].group) ||
                    (s->cfg.loss > 0 && nx_rng_unit(&s->rng) < s->cfg.loss);
        if (lost) {
            s->stats.lost++;
            if (s->hooks.lost && to >= 0)
                s->hooks.lost(s->hooks.ctx, i, (uint32_t)to, m->data, (uint32_t)m->len);
            continue;
        }
        uint64_t lat = latency(s);
        if (s->nodes[to].slow > 1)
            lat *= s->nodes[to].slow;
        uint8_t *copy = malloc(m->len);
        NX_ASSERT(copy != NULL);
        memcpy(copy, m->data, m->len);
        heap_push(s, (struct sim_ev){.t = s->now + lat,
                                     .kind = EV_DELIVER,
                                     .node = (uint32_t)to,
                                     .from = i,
                                     .len = (uint32_t)m->len,
                                     .data = copy});
    }
    gossip_advance(s->nodes[i].core);
    schedule_tick(s, i, rd.next_deadline_ms);
}

static int create_node(struct gsim *s, uint32_t i)
{
    struct sim_node *nd = &s->nodes[i];
    struct gossip_meta meta;
    memset(nd, 0, sizeof *nd);
    node_id(s, nd->id, i);
    node_meta(&meta, i);
    nd->tick_at = UINT64_MAX;
    nd->core = gossip_create(&s->cfg.gossip, nd->id, &meta, 1, nx_rng_next(&s->rng), s->now);
    return nd->core ? 0 : -1;
}

static void bootstrap_views(struct gsim *s)
{
    struct gossip_meta meta;
    for (uint32_t i = 0; i < s->n; i++) {
        struct gossip_core *c = s->nodes[i].core;
        if (s->cfg.view == 0 || s->cfg.view >= s->n - 1) {
            for (uint32_t j = 0; j < s->n; j++) {
                if (j == i)
                    continue;
                node_meta(&meta, j);
                NX_ASSERT(gossip_add_member(c, s->now, s->nodes[j].id, 1, &meta) == NX_OK);
            }
        } else {
            for (uint32_t k = 0; k < s->cfg.view; k++) {
                uint32_t j = (uint32_t)nx_rng_below(&s->rng, s->n);
                if (j == i)
                    continue;
                node_meta(&meta, j);
                NX_ASSERT(gossip_add_member(c, s->now, s->nodes[j].id, 1, &meta) == NX_OK);
            }
        }
        gossip_advance(c); /* bootstrap join events are not news */
    }
}

struct gsim *gsim_create(const struct gsim_config *cfg)
{
    if (cfg->n == 0 || cfg->n > GSIM_NODES_MAX || cfg->lat_max_ms < cfg->lat_min_ms)
        return NULL;
    struct gsim *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    s->cap = cfg->capacity > cfg->n ? cfg->capacity : cfg->n;
    s->nodes = calloc(s->cap, sizeof *s->nodes);
    nx_rng_seed(&s->rng, cfg->seed);
    s->now = 1000;
    const char *trace = getenv("GSIM_TRACE");
    s->trace_node = trace && *trace ? atoi(trace) : -1;
    if (!s->nodes)
        goto err;
    for (s->n = 0; s->n < cfg->n; s->n++)
        if (create_node(s, s->n) != 0)
            goto err;
    bootstrap_views(s);
    for (uint32_t i = 0; i < s->n; i++)
        drain(s, i);
    return s;
err:
    gsim_destroy(s);
    return NULL;
}

void gsim_destroy(struct gsim *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->n; i++)
        gossip_destroy(s->nodes[i].core);
    for (size_t k = 0; k < s->heap_n; k++)
        free(s->heap[k].data);
    free(s->heap);
    free(s->nodes);
    free(s);
}

void gsim_run_until(struct gsim *s, uint64_t t_ms)
{
    while (s->heap_n > 0 && s->heap[0].t <= t_ms) {
        struct sim_ev ev = heap_pop(s);
        struct sim_node *nd = &s->nodes[ev.node];
        s->now = ev.t;
        if (ev.kind == EV_TICK) {
            if (nd->crashed || nd->left || ev.t != nd->tick_at)
                continue; /* superseded by a later schedule */
            nd->tick_at = UINT64_MAX;
            gossip_tick(nd->core, s->now);
            s->in_tick = true;
        } else {
            if (!nd->crashed && !nd->left) {
                int rc = gossip_receive(nd->core, s->now, s->nodes[ev.from].id, ev.data, ev.len);
                NX_ASSERT(rc == NX_OK); /* the simulator never corrupts bytes */
            }
            free(ev.data);
            if (nd->crashed || nd->left)
                continue;
        }
        drain(s, ev.node);
        s->in_tick = false;
    }
    if (t_ms > s->now)
        s->now = t_ms;
}

bool gsim_quick(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return true;
#else
    const char *q = getenv("NX_SIM_QUICK");
    return q && *q && strcmp(q, "0") != 0;
#endif
}

uint64_t gsim_now(const struct gsim *s)
{
    return s->now;
}
uint32_t gsim_count(const struct gsim *s)
{
    return s->n;
}
struct gossip_core *gsim_core(struct gsim *s, uint32_t node)
{
    return s->nodes[node].core;
}
const uint8_t *gsim_id(const struct gsim *s, uint32_t node)
{
    return s->nodes[node].id;
}
const struct gsim_stats *gsim_stats(const struct gsim *s)
{
    return &s->stats;
}

bool gsim_healthy(const struct gsim *s, uint32_t node)
{
    return !s->nodes[node].crashed && !s->nodes[node].left;
}

int gsim_add_node(struct gsim *s, uint32_t via)
{
    if (s->n >= s->cap)
        return -1;
    uint32_t i = s->n;
    if (create_node(s, i) != 0)
        return -1;
    s->n++;
    struct gossip_meta meta;
    node_meta(&meta, via);
    if (gossip_join(s->nodes[i].core, s->now, s->nodes[via].id, meta.addr) != NX_OK)
        return -1;
    drain(s, i);
    return (int)i;
}

void gsim_crash(struct gsim *s, uint32_t node)
{
    s->nodes[node].crashed = true;
}

int gsim_restart(struct gsim *s, uint32_t node, uint64_t incarnation, uint32_t via)
{
    struct sim_node *nd = &s->nodes[node];
    struct gossip_meta meta;
    node_meta(&meta, node);
    gossip_destroy(nd->core);
    nd->core =
        gossip_create(&s->cfg.gossip, nd->id, &meta, incarnation, nx_rng_next(&s->rng), s->now);
    if (!nd->core)
        return -1;
    nd->crashed = false;
    nd->tick_at = UINT64_MAX;
    node_meta(&meta, via);
    if (gossip_join(nd->core, s->now, s->nodes[via].id, meta.addr) != NX_OK)
        return -1;
    drain(s, node);
    return 0;
}

void gsim_leave(struct gsim *s, uint32_t node)
{
    gossip_leave(s->nodes[node].core, s->now);
    drain(s, node);
    s->nodes[node].left = true;
}

void gsim_set_slow(struct gsim *s, uint32_t node, uint32_t factor)
{
    struct sim_node *nd = &s->nodes[node];
    if (nd->slow > 1 && factor <= 1) /* its backlog drains, its probes finish */
        nd->slow_until =
            s->now + (uint64_t)s->cfg.lat_max_ms * nd->slow + s->cfg.gossip.probe_interval_ms * 2u;
    nd->slow = factor;
}

void gsim_partition(struct gsim *s, const uint8_t *group)
{
    s->partitioned = group != NULL;
    for (uint32_t i = 0; i < s->n; i++)
        s->nodes[i].group = group ? group[i] : 0;
}

uint32_t gsim_count_not_in_state(const struct gsim *s, uint32_t member, enum gossip_state state)
{
    uint32_t missing = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        enum gossip_state st;
        if (i == member || !gsim_healthy(s, i))
            continue;
        if (!gossip_member_state(s->nodes[i].core, s->nodes[member].id, &st, NULL) || st != state)
            missing++;
    }
    return missing;
}

void gsim_set_loss(struct gsim *s, double loss)
{
    s->cfg.loss = loss;
}

void gsim_set_hooks(struct gsim *s, const struct gsim_hooks *hooks)
{
    if (hooks)
        s->hooks = *hooks;
    else
        memset(&s->hooks, 0, sizeof s->hooks);
}

void gsim_print_unconverged(const struct gsim *s)
{
    for (uint32_t i = 0; i < s->n; i++)
        for (uint32_t j = 0; j < s->n && gsim_healthy(s, i); j++) {
            enum gossip_state st = GOSSIP_STATE__COUNT;
            if (i == j || !gsim_healthy(s, j))
                continue;
            if (!gossip_member_state(s->nodes[i].core, s->nodes[j].id, &st, NULL) ||
                st != GOSSIP_ALIVE)
                fprintf(stderr, "  unconverged: node %u sees node %u as %s\n", i, j,
                        st == GOSSIP_STATE__COUNT ? "unknown" : gossip_state_name(st));
        }
}

uint64_t gsim_unconverged_pairs(const struct gsim *s)
{
    uint64_t bad = 0;
    for (uint32_t j = 0; j < s->n; j++)
        if (gsim_healthy(s, j))
            bad += gsim_count_not_in_state(s, j, GOSSIP_ALIVE);
    return bad;
}
