/*
 * agent_host.c - mesh-wide agent runs (agent_host.h, docs/agents.md).
 *
 * Two tables, both fixed-size, both owned by the loop thread:
 *
 *   outbound  runs this node placed for an API client. States:
 *               TRYING (RUN sent to picks[next-1], waiting for accepted/refused)
 *                 -- refused or no answer --> TRYING the next pick, or 503 when none
 *                 -- accepted --> WAITING (until done, or 504 at the deadline)
 *   inbound   runs admitted here. States:
 *               FETCHING (bundle chunks from sources[src]) -> RUNNING (helper
 *               thread) -> CHARGING (helper thread posts the charge) -> answered
 *
 * Ids in messages are (generation << 16 | slot), so an answer finds its slot
 * in O(1) and a late answer for a reused slot is recognised and dropped.
 *
 * A run placed on this node itself goes through the same messages, delivered
 * by a zero-delay timer instead of the mesh: one code path, no re-entrancy.
 *
 * Admission holds the run's CPU, memory and GPUs (node_resources_reserve)
 * from acceptance to the end of the sandboxed run; they come off what the
 * next admission sees. Gossip advertisement still measures the machine
 * (gossip_host.c); agents' real use shows up there.
 */
#include <ev.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_exec.h"
#include "agent_host.h"
#include "agent_registry.h"
#include "agent_store.h"
#include "bundle.h"
#include "ledger/ledger.h"
#include "placement.h"
#include "resources.h"
#include "sandbox/sandbox.h"

#define SLOT_BITS 16
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define FETCH_HEADER_BYTES (8 + BUNDLE_HASH_BYTES + 8 + 4)
#define FETCH_REPLY_HEADER_BYTES (8 + 1 + 8 + 8)
#define MAX_MEMBERS 4096

enum out_state { OUT_FREE = 0, OUT_TRYING, OUT_WAITING };
enum in_state { IN_FREE = 0, IN_FETCHING, IN_RUNNING, IN_CHARGING };

struct outbound {
    enum out_state state;
    uint32_t gen;
    struct agent_host *h;
    struct api_request *req; /* borrowed until answered; or: */
    agent_host_done_fn done; /* a session call's answer goes here */
    void *done_arg;
    char run_id[AGENT_HOST_RUN_ID_MAX + 1];
    json_t *request; /* the RUN body's JSON (owned) */
    struct place_needs needs;
    uint64_t sent_ms; /* RUN sent to the current candidate (CLOCK_MONOTONIC) */
    uint64_t timeout_ms;
    uint8_t picks[AGENT_HOST_CANDIDATES][NODE_PK_BYTES];
    char addrs[AGENT_HOST_CANDIDATES][GOSSIP_ADDR_MAX + 1];
    double scores[AGENT_HOST_CANDIDATES];
    uint32_t n_picks, next;
    json_t *refusals; /* [{node, why}] (owned) */
    uint64_t started_us;
    ev_timer timer;
};

struct inbound {
    enum in_state state;
    uint32_t gen;
    struct agent_host *h;
    uint8_t origin[NODE_PK_BYTES];
    uint64_t origin_rid;
    char run_id[AGENT_HOST_RUN_ID_MAX + 1];
    char account[LEDGER_STR_CAP];
    char tenant[LEDGER_STR_CAP];
    uint8_t bundle_hash[BUNDLE_HASH_BYTES];
    char *input_json;   /* owned */
    char *context_json; /* owned: a session call's context, else NULL */
    bool prefetch;      /* no run: a bundle copied ahead of need (replication) */
    struct node_grant grant;
    /* fetching */
    uint8_t sources[AGENT_HOST_CANDIDATES][NODE_PK_BYTES];
    char source_addrs[AGENT_HOST_CANDIDATES][GOSSIP_ADDR_MAX + 1];
    uint32_t n_sources, src;
    uint8_t *buf; /* owned: the bundle so far */
    uint64_t total, got;
    char fetch_error[BUNDLE_ERR_MAX + 64];
    ev_timer timer;
    json_t *result;       /* the answer being built (owned) */
    uint64_t received_us; /* RUN arrived (CLOCK_MONOTONIC) */
    uint8_t *charge_cmd;  /* owned: the signed charge, resent as is while Raft says 503 */
    size_t charge_len;
    unsigned charge_attempts;
    agent_host_fetch_fn fetch_fn; /* set: a fetch alone, for a deployment (no run) */
    void *fetch_arg;
};

struct done_entry {
    char run_id[AGENT_HOST_RUN_ID_MAX + 1];
    char *reply; /* owned JSON text */
};

/* A message to ourselves, delivered from the loop like one from the mesh. */
struct local_msg {
    ev_timer t;
    struct agent_host *h;
    uint32_t type;
    size_t len;
    uint8_t body[];
};

struct agent_host {
    struct ev_loop *loop;
    struct mesh *mesh;
    struct gossip_host *gossip;
    struct raft_host *raft;
    const struct node_identity *id;
    struct agent_host_config cfg;
    struct agent_registry *registry;
    struct agent_store store;
    struct agent_exec *exec;
    struct nx_rng rng;
    struct outbound out[AGENT_HOST_MAX_OUTBOUND];
    struct inbound in[AGENT_HOST_MAX_INBOUND];
    struct done_entry done[AGENT_HOST_DONE_CACHE];
    size_t done_next;
    struct gossip_label labels[GOSSIP_LABELS_MAX];
    size_t n_labels;
    struct node_reserved reserved;
    struct node_resources detected; /* capacity, as last read */
    uint64_t detected_ms;
    uint8_t *chunk; /* AGENT_HOST_CHUNK_BYTES + header, for serving fetches */
    /* counters */
    uint64_t runs_placed, runs_admitted, runs_refused, runs_done, runs_failed;
    uint64_t fetches_served, fetch_misses, fetched_bundles, fetch_hash_mismatches;
    uint64_t charges_ok, charges_duplicate, charges_failed, msgs_bad, replays;
    /* bundle replication (see prefetch below) */
    ev_timer prefetch_timer;
    uint8_t prefetch_failed[AGENT_HOST_PREFETCH_BACKOFF_SLOTS][BUNDLE_HASH_BYTES];
    uint64_t prefetch_failed_until[AGENT_HOST_PREFETCH_BACKOFF_SLOTS];
    size_t prefetch_failed_next;
    uint64_t prefetched, prefetch_failures;
};

static void le64_put(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t le64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static json_t *hex_json(const uint8_t *b, size_t n)
{
    char hex[2 * NODE_PK_BYTES + 1];
    nx_hex_encode(hex, b, n);
    return json_string(hex);
}

static bool is_self(const struct agent_host *h, const uint8_t pk[NODE_PK_BYTES])
{
    return memcmp(pk, h->id->pk, NODE_PK_BYTES) == 0;
}

/* ---- sending: the mesh, or ourselves ------------------------------------------- */

static void dispatch(struct agent_host *h, uint32_t type, const uint8_t from[NODE_PK_BYTES],
                     const uint8_t *body, size_t len);

static void on_local_msg(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct local_msg *m = (struct local_msg *)w;
    dispatch(m->h, m->type, m->h->id->pk, m->body, m->len);
    free(m);
}

static int send_to(struct agent_host *h, const uint8_t to[NODE_PK_BYTES], const char *addr,
                   uint32_t type, const uint8_t *body, size_t len)
{
    if (!is_self(h, to))
        return mesh_send(h->mesh, to, addr && addr[0] ? addr : NULL, type, body, len);
    struct local_msg *m = malloc(sizeof *m + len);
    if (m == NULL)
        return NX_ERR_NOMEM;
    m->h = h;
    m->type = type;
    m->len = len;
    memcpy(m->body, body, len);
    ev_timer_init(&m->t, on_local_msg, 0., 0.);
    ev_timer_start(h->loop, &m->t);
    return NX_OK;
}

/* rid | JSON text. */
static int send_json(struct agent_host *h, const uint8_t to[NODE_PK_BYTES], const char *addr,
                     uint32_t type, uint64_t rid, json_t *body)
{
    char *txt = json_dumps(body, JSON_COMPACT);
    if (txt == NULL)
        return NX_ERR_NOMEM;
    size_t n = strlen(txt);
    uint8_t *buf = malloc(8 + n);
    int rc = NX_ERR_NOMEM;
    if (buf) {
        le64_put(buf, rid);
        memcpy(buf + 8, txt, n);
        rc = send_to(h, to, addr, type, buf, 8 + n);
    }
    free(buf);
    free(txt);
    return rc;
}

/* ---- the members, as gossip sees them --------------------------------------------- */

static enum gossip_state state_of(const char *s)
{
    for (int i = 0; i < GOSSIP_STATE__COUNT; i++)
        if (s && strcmp(s, gossip_state_name((enum gossip_state)i)) == 0)
            return (enum gossip_state)i;
    return GOSSIP_DEAD;
}

static void member_from_json(json_t *m, struct gossip_member_info *mi)
{
    memset(mi, 0, sizeof *mi);
    const char *hex = json_string_value(json_object_get(m, "id"));
    if (hex == NULL || strlen(hex) != NODE_ID_HEX_LEN ||
        nx_hex_decode(mi->id, GOSSIP_ID_BYTES, hex) != NX_OK) {
        mi->state = GOSSIP_DEAD;
        return;
    }
    mi->state = state_of(json_string_value(json_object_get(m, "state")));
    snprintf(mi->meta.addr, sizeof mi->meta.addr, "%s",
             json_string_value(json_object_get(m, "address")) ?: "");
    json_t *r = json_object_get(m, "resources");
    mi->meta.cpu_free_millicores =
        (uint32_t)json_integer_value(json_object_get(r, "cpu_free_millicores"));
    mi->meta.cpu_total_millicores =
        (uint32_t)json_integer_value(json_object_get(r, "cpu_total_millicores"));
    mi->meta.mem_free_bytes = (uint64_t)json_integer_value(json_object_get(r, "mem_free_bytes"));
    mi->meta.mem_total_bytes = (uint64_t)json_integer_value(json_object_get(r, "mem_total_bytes"));
    mi->meta.gpu_count = (uint32_t)json_integer_value(json_object_get(r, "gpu_count"));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(r, "gpu_mem_bytes"), i, v)
    {
        if (i < GOSSIP_GPUS_MAX)
            mi->meta.gpu_mem_bytes[mi->meta.gpu_mem_count++] = (uint64_t)json_integer_value(v);
    }
    const char *key;
    json_object_foreach(json_object_get(m, "labels"), key, v)
    {
        if (mi->meta.label_count == GOSSIP_LABELS_MAX)
            break;
        struct gossip_label *l = &mi->meta.labels[mi->meta.label_count++];
        snprintf(l->key, sizeof l->key, "%s", key);
        snprintf(l->value, sizeof l->value, "%s", json_string_value(v) ?: "");
    }
}

/* The member view; *out malloc'd (caller frees). */
static int members_load(struct agent_host *h, struct gossip_member_info **out, size_t *n)
{
    json_t *arr = gossip_host_members_json(h->gossip);
    size_t count = json_array_size(arr);
    if (count > MAX_MEMBERS)
        count = MAX_MEMBERS;
    struct gossip_member_info *v = calloc(count ? count : 1, sizeof *v);
    if (v == NULL) {
        json_decref(arr);
        return NX_ERR_NOMEM;
    }
    for (size_t i = 0; i < count; i++)
        member_from_json(json_array_get(arr, i), &v[i]);
    json_decref(arr);
    *out = v;
    *n = count;
    return NX_OK;
}

/* ---- needs ------------------------------------------------------------------------- */

/* Needs from a manifest (bytes) and constraints (JSON array of text, may be NULL). */
/* What the needs are built for: which agent kinds are allowed. */
enum needs_use { NEEDS_RUN = 0, NEEDS_SESSION = 1, NEEDS_PLAN = 2 };

static int needs_build(const uint8_t *manifest, size_t mlen, json_t *constraints,
                       enum needs_use use, struct place_needs *needs, uint64_t *timeout_ms,
                       char *err, size_t cap)
{
    memset(needs, 0, sizeof *needs);
    struct sbx_manifest m;
    if (sbx_manifest_parse((const char *)manifest, mlen, &m, err, cap) != 0)
        return NX_ERR_INVAL;
    needs->cpu_millicores = m.cpu_millicores;
    needs->mem_bytes = m.memory_bytes;
    needs->gpus = m.gpus;
    if (timeout_ms)
        *timeout_ms = m.timeout_ms;
    enum sbx_kind kind = m.kind;
    sbx_manifest_free(&m);
    if (kind == SBX_KIND_LONG_RUNNING) {
        snprintf(err, cap, "a long-running agent is deployed ('nexus agent deploy'), not run");
        return NX_ERR_STATE;
    }
    if (use == NEEDS_SESSION && kind != SBX_KIND_STATEFUL) {
        snprintf(err, cap,
                 "sessions are for stateful agents; this one is stateless: 'nexus "
                 "agent run' it");
        return NX_ERR_STATE;
    }
    if (use == NEEDS_RUN && kind != SBX_KIND_STATELESS) {
        snprintf(err, cap,
                 "a stateful agent keeps a context between calls: open a session "
                 "('nexus session open NAME')");
        return NX_ERR_STATE;
    }
    size_t i;
    json_t *c;
    json_array_foreach(constraints, i, c)
    {
        const char *t = json_string_value(c);
        if (t == NULL || place_needs_add(needs, t) != NX_OK) {
            snprintf(err, cap, "constraint %zu: expected key=value, key!=value, key or !key", i);
            return NX_ERR_INVAL;
        }
    }
    return NX_OK;
}

static json_t *needs_json(const struct place_needs *n)
{
    return json_pack("{s:I,s:I,s:I,s:I}", "cpu_millicores", (json_int_t)n->cpu_millicores,
                     "mem_bytes", (json_int_t)n->mem_bytes, "gpus", (json_int_t)n->gpus,
                     "gpu_mem_bytes", (json_int_t)n->gpu_mem_bytes);
}

static void needs_from_json(json_t *j, json_t *constraints, struct place_needs *n)
{
    memset(n, 0, sizeof *n);
    n->cpu_millicores = (uint32_t)json_integer_value(json_object_get(j, "cpu_millicores"));
    n->mem_bytes = (uint64_t)json_integer_value(json_object_get(j, "mem_bytes"));
    n->gpus = (uint32_t)json_integer_value(json_object_get(j, "gpus"));
    n->gpu_mem_bytes = (uint64_t)json_integer_value(json_object_get(j, "gpu_mem_bytes"));
    size_t i;
    json_t *c;
    json_array_foreach(constraints, i, c)
    {
        if (json_string_value(c) && place_needs_add(n, json_string_value(c)) != NX_OK)
            break; /* checked by the requester; a bad one is simply not applied twice */
    }
}

/* ---- requester: placing a run ------------------------------------------------------- */

static uint64_t out_rid(const struct outbound *o, const struct agent_host *h)
{
    return ((uint64_t)o->gen << SLOT_BITS) | (uint64_t)(o - h->out);
}

static struct outbound *out_find(struct agent_host *h, uint64_t rid)
{
    size_t slot = rid & SLOT_MASK;
    if (slot >= AGENT_HOST_MAX_OUTBOUND)
        return NULL;
    struct outbound *o = &h->out[slot];
    return o->state != OUT_FREE && o->gen == (uint32_t)(rid >> SLOT_BITS) ? o : NULL;
}

static void out_free(struct outbound *o)
{
    ev_timer_stop(o->h->loop, &o->timer);
    json_decref(o->request);
    json_decref(o->refusals);
    o->request = o->refusals = NULL;
    o->req = NULL;
    o->done = NULL;
    o->state = OUT_FREE;
}

static void out_answer(struct outbound *o, unsigned status, json_t *body)
{
    if (o->done) {
        o->done(o->done_arg, status, body);
        json_decref(body);
    } else {
        api_reply_json(o->req, status, body);
    }
    out_free(o);
}

static void on_out_timer(struct ev_loop *loop, ev_timer *w, int revents);

static void out_try_next(struct outbound *o)
{
    struct agent_host *h = o->h;
    while (o->next < o->n_picks) {
        uint32_t i = o->next++;
        ev_timer_stop(h->loop, &o->timer);
        o->sent_ms = nx_clock_mono_ms();
        if (send_json(h, o->picks[i], o->addrs[i], AGENT_MSG_RUN, out_rid(o, h), o->request) ==
            NX_OK) {
            o->state = OUT_TRYING;
            ev_timer_set(&o->timer, AGENT_HOST_ADMIT_TIMEOUT_MS / 1000.0, 0.);
            ev_timer_start(h->loop, &o->timer);
            return;
        }
        json_array_append_new(o->refusals,
                              json_pack("{s:o,s:s}", "node", hex_json(o->picks[i], NODE_PK_BYTES),
                                        "why", "cannot send to it"));
    }
    h->runs_refused++;
    json_t *body = json_pack("{s:s,s:s,s:O}", "error",
                             "every member that fits refused the run or did not answer", "run_id",
                             o->run_id, "refusals", o->refusals);
    out_answer(o, 503, body);
}

static void on_out_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct outbound *o = w->data;
    if (o->state == OUT_TRYING) {
        json_array_append_new(o->refusals, json_pack("{s:o,s:s}", "node",
                                                     hex_json(o->picks[o->next - 1], NODE_PK_BYTES),
                                                     "why", "no answer in time"));
        out_try_next(o);
        return;
    }
    out_answer(o, 504,
               json_pack("{s:s,s:s,s:o}", "error",
                         "the run was accepted but did not finish in time; outcome unknown",
                         "run_id", o->run_id, "node",
                         hex_json(o->picks[o->next - 1], NODE_PK_BYTES)));
}

static void on_run_reply(struct agent_host *h, const uint8_t from[NODE_PK_BYTES],
                         const uint8_t *body, size_t len)
{
    if (len < 8) {
        h->msgs_bad++;
        return;
    }
    struct outbound *o = out_find(h, le64_get(body));
    if (o == NULL || o->next == 0 || memcmp(o->picks[o->next - 1], from, NODE_PK_BYTES) != 0) {
        h->msgs_bad++; /* late, or not from the member we asked */
        return;
    }
    json_t *r = json_loadb((const char *)body + 8, len - 8, 0, NULL);
    const char *status = json_string_value(json_object_get(r, "status"));
    if (status && strcmp(status, "accepted") == 0 && o->state == OUT_TRYING) {
        o->state = OUT_WAITING;
        ev_timer_stop(h->loop, &o->timer);
        ev_timer_set(&o->timer, (o->timeout_ms + AGENT_HOST_FETCH_BUDGET_MS) / 1000.0, 0.);
        ev_timer_start(h->loop, &o->timer);
    } else if (status && strcmp(status, "refused") == 0) {
        json_array_append_new(o->refusals,
                              json_pack("{s:o,s:O}", "node", hex_json(from, NODE_PK_BYTES), "why",
                                        json_object_get(r, "why")));
        out_try_next(o);
    } else if (status && strcmp(status, "done") == 0) {
        json_object_del(r, "status");
        json_object_set_new(r, "latency_ms",
                            json_real((double)(nx_clock_mono_us() - o->started_us) / 1000.0));
        json_object_set_new(r, "candidates", json_integer(o->n_picks));
        if (json_array_size(o->refusals))
            json_object_set(r, "refusals", o->refusals);
        h->runs_done++;
        out_answer(o, 200, json_incref(r));
    } else {
        h->msgs_bad++;
    }
    json_decref(r);
}

static struct outbound *out_alloc(struct agent_host *h)
{
    for (size_t i = 0; i < AGENT_HOST_MAX_OUTBOUND; i++) {
        struct outbound *o = &h->out[i];
        if (o->state == OUT_FREE) {
            o->gen++;
            o->h = h;
            o->next = o->n_picks = 0;
            ev_timer_init(&o->timer, on_out_timer, 0., 0.);
            o->timer.data = o;
            return o;
        }
    }
    return NULL;
}

/*
 * Our own recent runs in flight, charged to the view (place_charge): a member
 * advertises what its runs hold (gossip_host_set_reserved) only at its next
 * refresh and gossip round, so without this a burst from this node would all
 * go to the member that was best before the first of them. After
 * AGENT_HOST_VIEW_GRACE_MS gossip has caught up, and charging again would
 * count the run twice.
 */
static void charge_in_flight(struct agent_host *h, struct gossip_member_info *members, size_t n)
{
    uint64_t now = nx_clock_mono_ms();
    for (size_t i = 0; i < AGENT_HOST_MAX_OUTBOUND; i++) {
        const struct outbound *o = &h->out[i];
        if (o->state == OUT_FREE || o->next == 0 || now - o->sent_ms > AGENT_HOST_VIEW_GRACE_MS)
            continue;
        for (size_t k = 0; k < n; k++)
            if (memcmp(members[k].id, o->picks[o->next - 1], NODE_PK_BYTES) == 0) {
                place_charge(&members[k], &o->needs);
                break;
            }
    }
}

/* Ranks the members for needs; fills picks, or explains into why. */
static int rank(struct agent_host *h, const struct place_needs *needs, struct outbound *o,
                char *why, size_t cap)
{
    struct gossip_member_info *members = NULL;
    size_t n = 0;
    int rc = members_load(h, &members, &n);
    if (rc != NX_OK)
        return rc;
    charge_in_flight(h, members, n);
    struct place_pick picks[AGENT_HOST_CANDIDATES];
    struct place_result res;
    rc = place_rank(needs, members, n, &h->rng, NULL, picks, AGENT_HOST_CANDIDATES, &res);
    if (rc == NX_ERR_LIMIT)
        place_explain(&res, needs, members, n, why, cap);
    else if (rc == NX_OK) {
        for (uint32_t i = 0; i < res.picked_count; i++) {
            const struct gossip_member_info *m = &members[picks[i].member];
            memcpy(o->picks[i], m->id, NODE_PK_BYTES);
            snprintf(o->addrs[i], sizeof o->addrs[i], "%s", m->meta.addr);
            o->scores[i] = picks[i].score;
        }
        o->n_picks = res.picked_count;
    }
    free(members);
    return rc;
}

static bool run_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > AGENT_HOST_RUN_ID_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' ||
              *s == '-'))
            return false;
    return true;
}

/* Where a placed run's answer goes, and what it carries besides the run itself. */
struct run_args {
    const char *spec;
    json_t *input;
    json_t *constraints;
    const char *account;
    const char *run_id;
    json_t *context; /* a session call: the session's context (json null for a new one) */
    struct api_request *req;
    agent_host_done_fn done;
    void *done_arg;
};

static void run_args_reply(const struct run_args *a, unsigned status, json_t *body)
{
    if (a->done) {
        a->done(a->done_arg, status, body);
        json_decref(body);
    } else {
        api_reply_json(a->req, status, body);
    }
}

static void run_args_error(const struct run_args *a, unsigned status, const char *fmt, ...)
    NX_PRINTF(3, 4);
static void run_args_error(const struct run_args *a, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    run_args_reply(a, status, json_pack("{s:s}", "error", msg));
}

/* Resolves, ranks and sends the first RUN; the answer comes to a->req or a->done (true:
 * later; false: already given). */
static bool place_run(struct agent_host *h, const struct run_args *a)
{
    bool session = a->context != NULL;
    struct agent_version v;
    int rc = agent_registry_resolve(h->registry, a->spec, &v);
    if (rc != NX_OK) {
        run_args_error(a, rc == NX_ERR_INVAL ? 400 : 404,
                       "no agent %s in the registry (or every version is deprecated)", a->spec);
        return false;
    }
    if (v.rec.deprecated) {
        run_args_error(a, 410, "%s@%s is deprecated", v.rec.name, v.rec.version);
        agent_version_clear(&v);
        return false;
    }
    struct place_needs needs;
    uint64_t timeout_ms = 0;
    char why[PLACE_REASON_MAX + 256];
    rc = needs_build(v.manifest, v.manifest_len, a->constraints,
                     session ? NEEDS_SESSION : NEEDS_RUN, &needs, &timeout_ms, why, sizeof why);
    if (rc != NX_OK) {
        agent_version_clear(&v);
        run_args_error(a, 422, "%s", why);
        return false;
    }
    struct outbound *o = out_alloc(h);
    if (o == NULL) {
        agent_version_clear(&v);
        run_args_error(a, 503, "too many runs in flight here, retry");
        return false;
    }
    rc = rank(h, &needs, o, why, sizeof why);
    if (rc != NX_OK) {
        agent_version_clear(&v); /* the slot stays free */
        if (rc == NX_ERR_LIMIT)
            run_args_reply(a, 409,
                           json_pack("{s:s,s:s,s:o}", "error", why, "agent", a->spec, "needs",
                                     needs_json(&needs)));
        else
            run_args_error(a, 500, "placement failed: %s", nx_strerror(rc));
        return false;
    }
    if (a->run_id)
        snprintf(o->run_id, sizeof o->run_id, "%s", a->run_id);
    else {
        uint8_t rnd[12];
        char hex[25];
        randombytes_buf(rnd, sizeof rnd);
        nx_hex_encode(hex, rnd, sizeof rnd);
        snprintf(o->run_id, sizeof o->run_id, "r-%s", hex);
    }
    o->req = a->req;
    o->done = a->done;
    o->done_arg = a->done_arg;
    o->needs = needs;
    o->timeout_ms = timeout_ms;
    o->started_us = nx_clock_mono_us();
    o->refusals = json_array();
    o->request = json_pack("{s:s,s:s,s:s,s:s,s:o,s:O,s:o,s:O}", "run_id", o->run_id, "agent",
                           v.rec.name, "version", v.rec.version, "tenant", v.rec.tenant,
                           "bundle_hash", hex_json(v.rec.bundle_hash, BUNDLE_HASH_BYTES), "input",
                           a->input ? a->input : json_null(), "needs", needs_json(&needs),
                           "constraints", a->constraints ? a->constraints : json_null());
    agent_version_clear(&v);
    if (a->account)
        json_object_set_new(o->request, "account", json_string(a->account));
    if (session)
        json_object_set(o->request, "context", a->context);
    h->runs_placed++;
    o->state = OUT_TRYING;
    out_try_next(o);
    return true;
}

enum api_result agent_host_api_run(void *ctx, struct api_request *req)
{
    struct agent_host *h = ctx;
    json_t *body = api_req_json(req);
    if (body == NULL)
        return API_DONE;
    struct run_args a = {
        .spec = json_string_value(json_object_get(body, "agent")),
        .account = json_string_value(json_object_get(body, "account")),
        .run_id = json_string_value(json_object_get(body, "run_id")),
        .input = json_object_get(body, "input"),
        .constraints = json_object_get(body, "constraints"),
        .req = req,
    };
    if (a.spec == NULL || (a.account && !run_id_ok(a.account)) ||
        (a.run_id && !run_id_ok(a.run_id)) || (a.constraints && !json_is_array(a.constraints))) {
        api_reply_error(req, 400,
                        "expected {\"agent\": \"NAME[@VERSION]\", \"input\": JSON, \"account\"?: "
                        "NAME, \"run_id\"?: [a-z0-9._-]{1,64}, \"constraints\"?: [\"k=v\"]}");
        return API_DONE;
    }
    if (a.input &&
        json_dumpb(a.input, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY) > AGENT_HOST_MAX_INPUT_BYTES) {
        api_reply_error(req, 413, "input larger than %u bytes", AGENT_HOST_MAX_INPUT_BYTES);
        return API_DONE;
    }
    return place_run(h, &a) ? API_PENDING : API_DONE;
}

void agent_host_session_call(struct agent_host *h, const char *agent_spec, json_t *input,
                             json_t *context, const char *account, const char *run_id,
                             agent_host_done_fn done, void *arg)
{
    struct run_args a = {.spec = agent_spec,
                         .input = input,
                         .account = account,
                         .run_id = run_id,
                         .context = context ? context : json_null(),
                         .done = done,
                         .done_arg = arg};
    (void)place_run(h, &a);
}

json_t *agent_host_counters_json(const struct agent_host *h)
{
    if (h == NULL)
        return json_null();
    json_t *o = json_object();
    const struct {
        const char *name;
        uint64_t v;
    } c[] = {
        {"runs_placed", h->runs_placed},
        {"runs_admitted", h->runs_admitted},
        {"runs_refused", h->runs_refused},
        {"runs_done", h->runs_done},
        {"runs_failed", h->runs_failed},
        {"fetches_served", h->fetches_served},
        {"fetch_misses", h->fetch_misses},
        {"fetched_bundles", h->fetched_bundles},
        {"fetch_hash_mismatches", h->fetch_hash_mismatches},
        {"bundles_replicated", h->prefetched},
        {"replication_failures", h->prefetch_failures},
        {"charges_ok", h->charges_ok},
        {"charges_duplicate", h->charges_duplicate},
        {"charges_failed", h->charges_failed},
        {"msgs_bad", h->msgs_bad},
        {"replays", h->replays},
    };
    for (size_t i = 0; i < NX_ARRAY_LEN(c); i++)
        json_object_set_new(o, c[i].name, json_integer((json_int_t)c[i].v));
    return o;
}

struct agent_registry *agent_host_registry(struct agent_host *h)
{
    return h->registry;
}

/* ---- target: admission ---------------------------------------------------------------- */

static int resources_now(struct agent_host *h, struct node_resources *avail)
{
    uint64_t now = nx_clock_mono_ms();
    if (h->detected_ms == 0 || now - h->detected_ms >= AGENT_HOST_RESOURCES_MAX_AGE_MS) {
        struct node_detect_opts opts = {.gpus = h->cfg.gpus,
                                        .gpu_mem_bytes = h->cfg.gpu_mem_bytes,
                                        .cpu_override_millicores = h->cfg.cpu_override_millicores,
                                        .mem_override_bytes = h->cfg.mem_override_bytes};
        int rc = node_resources_detect_opts(&h->detected, &opts);
        if (rc != NX_OK)
            return rc;
        h->detected_ms = now;
    }
    *avail = h->detected;
    node_resources_subtract(avail, &h->reserved);
    return NX_OK;
}

static uint64_t in_rid(const struct inbound *r, const struct agent_host *h)
{
    return ((uint64_t)r->gen << SLOT_BITS) | (uint64_t)(r - h->in);
}

static struct inbound *in_find(struct agent_host *h, uint64_t rid)
{
    size_t slot = rid & SLOT_MASK;
    if (slot >= AGENT_HOST_MAX_INBOUND)
        return NULL;
    struct inbound *r = &h->in[slot];
    return r->state != IN_FREE && r->gen == (uint32_t)(rid >> SLOT_BITS) ? r : NULL;
}

static void reply_status(struct agent_host *h, const uint8_t to[NODE_PK_BYTES], uint64_t rid,
                         json_t *body /* taken */)
{
    if (send_json(h, to, NULL, AGENT_MSG_RUN_REPLY, rid, body) != NX_OK)
        NX_WARN("agent_reply_lost", "rid=%llu", (unsigned long long)rid);
    json_decref(body);
}

static void refuse(struct agent_host *h, const uint8_t to[NODE_PK_BYTES], uint64_t rid,
                   const char *why)
{
    h->runs_refused++;
    reply_status(h, to, rid, json_pack("{s:s,s:s}", "status", "refused", "why", why));
}

static void remember_done(struct agent_host *h, const char *run_id, json_t *reply)
{
    struct done_entry *d = &h->done[h->done_next];
    h->done_next = (h->done_next + 1) % AGENT_HOST_DONE_CACHE;
    free(d->reply);
    snprintf(d->run_id, sizeof d->run_id, "%s", run_id);
    d->reply = json_dumps(reply, JSON_COMPACT);
}

static const struct done_entry *done_find(const struct agent_host *h, const char *run_id)
{
    for (size_t i = 0; i < AGENT_HOST_DONE_CACHE; i++)
        if (h->done[i].reply && strcmp(h->done[i].run_id, run_id) == 0)
            return &h->done[i];
    return NULL;
}

static void in_free(struct inbound *r)
{
    struct agent_host *h = r->h;
    ev_timer_stop(h->loop, &r->timer);
    bool gpus = r->grant.gpu_mask != 0;
    if (r->grant.cpu_millicores || r->grant.mem_bytes || r->grant.gpu_mask)
        if (node_resources_release(&h->reserved, &r->grant) != NX_OK)
            NX_ERROR("agent_release_failed", "run_id=%s", r->run_id);
    memset(&r->grant, 0, sizeof r->grant);
    if (gpus && h->gossip)
        gossip_host_refresh(h->gossip);
    r->prefetch = false;
    free(r->input_json);
    free(r->context_json);
    free(r->buf);
    free(r->charge_cmd);
    r->fetch_fn = NULL;
    json_decref(r->result);
    r->input_json = r->context_json = NULL;
    r->buf = NULL;
    r->charge_cmd = NULL;
    r->result = NULL;
    r->state = IN_FREE;
}

/* The final answer: to the requester, into the replay cache, and the slot is freed. */
static void prefetch_failed(struct inbound *r);

static void in_finish(struct inbound *r)
{
    struct agent_host *h = r->h;
    if (r->prefetch) { /* nobody waits for an answer */
        prefetch_failed(r);
        in_free(r);
        return;
    }
    json_object_set_new(r->result, "status", json_string("done"));
    json_object_set_new(r->result, "run_id", json_string(r->run_id));
    json_object_set_new(r->result, "node", json_string(h->id->id_hex));
    json_t *timing = json_object_get(r->result, "timing");
    if (timing)
        json_object_set_new(timing, "target_ms",
                            json_real((double)(nx_clock_mono_us() - r->received_us) / 1000.0));
    remember_done(h, r->run_id, r->result);
    reply_status(h, r->origin, r->origin_rid, json_incref(r->result));
    in_free(r);
}

static void in_fail(struct inbound *r, const char *fmt, ...) NX_PRINTF(2, 3);
static void in_fail(struct inbound *r, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->fetch_fn) { /* a fetch alone: no requester waits for a RUN_REPLY */
        agent_host_fetch_fn fn = r->fetch_fn;
        void *arg = r->fetch_arg;
        uint8_t hash[BUNDLE_HASH_BYTES];
        memcpy(hash, r->bundle_hash, sizeof hash);
        in_free(r);
        fn(arg, hash, NX_ERR_NOT_FOUND, msg);
        return;
    }
    r->h->runs_failed++;
    if (r->result == NULL)
        r->result = json_object();
    json_object_set_new(r->result, "error", json_string(msg));
    json_object_set_new(r->result, "charge_skipped", json_string("the run did not happen"));
    in_finish(r);
}

static void start_run(struct inbound *r);
static void fetch_next_source(struct inbound *r);

/* Reads "labels" config ("k=v\n...") once. */
static void labels_parse(struct agent_host *h, const char *text)
{
    h->n_labels = 0;
    while (text && *text && h->n_labels < GOSSIP_LABELS_MAX) {
        const char *end = strchr(text, '\n');
        size_t n = end ? (size_t)(end - text) : strlen(text);
        const char *eq = memchr(text, '=', n);
        if (eq) {
            struct gossip_label *l = &h->labels[h->n_labels++];
            snprintf(l->key, sizeof l->key, "%.*s", (int)(eq - text), text);
            snprintf(l->value, sizeof l->value, "%.*s", (int)(n - (size_t)(eq - text) - 1), eq + 1);
        }
        text = end ? end + 1 : NULL;
    }
}

/* Members that may hold the bundle: the requester first, then every other alive one. */
static void sources_fill(struct inbound *r)
{
    struct agent_host *h = r->h;
    r->n_sources = 0;
    if (!is_self(h, r->origin))
        memcpy(r->sources[r->n_sources++], r->origin, NODE_PK_BYTES);
    struct gossip_member_info *members = NULL;
    size_t n = 0;
    if (members_load(h, &members, &n) != NX_OK)
        return;
    for (size_t i = 0; i < n && r->n_sources < AGENT_HOST_CANDIDATES; i++) {
        const struct gossip_member_info *m = &members[i];
        if (m->state != GOSSIP_ALIVE || is_self(h, m->id))
            continue;
        uint32_t at = r->n_sources;
        if (memcmp(m->id, r->origin, NODE_PK_BYTES) == 0)
            at = 0; /* the requester: learn its address */
        else
            memcpy(r->sources[r->n_sources++], m->id, NODE_PK_BYTES);
        snprintf(r->source_addrs[at], sizeof r->source_addrs[at], "%s", m->meta.addr);
    }
    free(members);
}

static void on_run(struct agent_host *h, const uint8_t from[NODE_PK_BYTES], const uint8_t *body,
                   size_t len)
{
    if (len < 8) {
        h->msgs_bad++;
        return;
    }
    uint64_t rid = le64_get(body);
    json_t *j = json_loadb((const char *)body + 8, len - 8, 0, NULL);
    const char *run_id = json_string_value(json_object_get(j, "run_id"));
    const char *hash_hex = json_string_value(json_object_get(j, "bundle_hash"));
    const char *account = json_string_value(json_object_get(j, "account"));
    const char *tenant = json_string_value(json_object_get(j, "tenant"));
    uint8_t hash[BUNDLE_HASH_BYTES];
    if (run_id == NULL || !run_id_ok(run_id) || hash_hex == NULL ||
        strlen(hash_hex) != BUNDLE_HASH_HEX_LEN ||
        nx_hex_decode(hash, sizeof hash, hash_hex) != NX_OK || tenant == NULL ||
        strlen(tenant) > LEDGER_NAME_MAX || (account && !run_id_ok(account))) {
        h->msgs_bad++;
        refuse(h, from, rid, "malformed run request");
        goto out;
    }
    const struct done_entry *d = done_find(h, run_id);
    if (d) { /* a retry of a run done here: the same answer, nothing run or charged again */
        json_t *again = json_loads(d->reply, 0, NULL);
        json_object_set_new(again, "replayed", json_true());
        h->replays++;
        reply_status(h, from, rid, json_pack("{s:s}", "status", "accepted"));
        reply_status(h, from, rid, again);
        goto out;
    }
    for (size_t i = 0; i < AGENT_HOST_MAX_INBOUND; i++)
        if (h->in[i].state != IN_FREE && strcmp(h->in[i].run_id, run_id) == 0) {
            refuse(h, from, rid, "a run with this id is in progress here");
            goto out;
        }
    struct place_needs needs;
    needs_from_json(json_object_get(j, "needs"), json_object_get(j, "constraints"), &needs);
    struct node_resources avail;
    struct place_verdict why;
    char text[PLACE_REASON_MAX];
    if (resources_now(h, &avail) != NX_OK) {
        refuse(h, from, rid, "cannot read this node's resources");
        goto out;
    }
    int arc = place_admit(&needs, h->id->pk, &avail, h->labels, h->n_labels, &why);
    if (arc == NX_ERR_LIMIT) {
        place_verdict_format(&why, &needs, NULL, text, sizeof text);
        refuse(h, from, rid, text);
        goto out;
    }
    if (arc != NX_OK) {
        h->msgs_bad++;
        refuse(h, from, rid, "the run's needs are beyond the limits");
        goto out;
    }
    struct inbound *r = NULL;
    for (size_t i = 0; i < AGENT_HOST_MAX_INBOUND && r == NULL; i++)
        if (h->in[i].state == IN_FREE)
            r = &h->in[i];
    struct node_request nreq = {needs.cpu_millicores, needs.mem_bytes, needs.gpus,
                                needs.gpu_mem_bytes};
    struct node_grant grant;
    if (r == NULL) {
        refuse(h, from, rid, "too many runs here");
        goto out;
    }
    if (node_resources_reserve(&h->reserved, &h->detected, &nreq, &grant) != NX_OK) {
        refuse(h, from, rid, "what this node holds for admitted runs leaves too little");
        goto out;
    }
    r->gen++;
    r->h = h;
    r->grant = grant;
    if (grant.gpu_mask) /* GPUs are few: the mesh should know at once they are taken */
        gossip_host_refresh(h->gossip);
    memcpy(r->origin, from, NODE_PK_BYTES);
    r->origin_rid = rid;
    snprintf(r->run_id, sizeof r->run_id, "%s", run_id);
    snprintf(r->account, sizeof r->account, "%s", account ? account : "");
    snprintf(r->tenant, sizeof r->tenant, "%s", tenant);
    memcpy(r->bundle_hash, hash, sizeof hash);
    r->input_json =
        json_dumps(json_object_get(j, "input") ?: json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *context = json_object_get(j, "context"); /* present only for a session call */
    r->context_json = context ? json_dumps(context, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    r->result = json_object();
    r->fetch_error[0] = '\0';
    r->received_us = nx_clock_mono_us();
    ev_timer_init(&r->timer, NULL, 0., 0.);
    r->timer.data = r;
    h->runs_admitted++;
    reply_status(h, from, rid, json_pack("{s:s}", "status", "accepted"));
    if (agent_store_has(&h->store, hash)) {
        start_run(r);
    } else {
        r->state = IN_FETCHING;
        sources_fill(r);
        r->src = 0;
        fetch_next_source(r);
    }
out:
    json_decref(j);
}

/* ---- target: fetching a bundle ---------------------------------------------------------- */

static void on_fetch_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct inbound *r = w->data;
    snprintf(r->fetch_error, sizeof r->fetch_error, "a member did not answer in time");
    r->src++;
    fetch_next_source(r);
}

static void fetch_request(struct inbound *r)
{
    struct agent_host *h = r->h;
    uint8_t msg[FETCH_HEADER_BYTES];
    le64_put(msg, in_rid(r, h));
    memcpy(msg + 8, r->bundle_hash, BUNDLE_HASH_BYTES);
    le64_put(msg + 8 + BUNDLE_HASH_BYTES, r->got);
    uint32_t max = AGENT_HOST_CHUNK_BYTES;
    for (int i = 0; i < 4; i++)
        msg[16 + BUNDLE_HASH_BYTES + i] = (uint8_t)(max >> (8 * i));
    ev_timer_stop(h->loop, &r->timer);
    ev_timer_init(&r->timer, on_fetch_timer, AGENT_HOST_CHUNK_TIMEOUT_MS / 1000.0, 0.);
    r->timer.data = r;
    if (send_to(h, r->sources[r->src], r->source_addrs[r->src], AGENT_MSG_FETCH, msg, sizeof msg) !=
        NX_OK) {
        r->src++;
        fetch_next_source(r);
        return;
    }
    ev_timer_start(h->loop, &r->timer);
}

static void fetch_next_source(struct inbound *r)
{
    free(r->buf);
    r->buf = NULL;
    r->got = r->total = 0;
    if (r->src >= r->n_sources) {
        char hex[BUNDLE_HASH_HEX_LEN + 1];
        nx_hex_encode(hex, r->bundle_hash, BUNDLE_HASH_BYTES);
        in_fail(r, "bundle %.16s... could not be fetched from any member%s%s", hex,
                r->fetch_error[0] ? ": " : "", r->fetch_error);
        return;
    }
    fetch_request(r);
}

static void on_fetch(struct agent_host *h, const uint8_t from[NODE_PK_BYTES], const uint8_t *body,
                     size_t len)
{
    if (len != FETCH_HEADER_BYTES) {
        h->msgs_bad++;
        return;
    }
    uint64_t rid = le64_get(body);
    const uint8_t *hash = body + 8;
    uint64_t offset = le64_get(body + 8 + BUNDLE_HASH_BYTES);
    uint32_t max = (uint32_t)(body[16 + BUNDLE_HASH_BYTES] | body[17 + BUNDLE_HASH_BYTES] << 8 |
                              body[18 + BUNDLE_HASH_BYTES] << 16 |
                              (uint32_t)body[19 + BUNDLE_HASH_BYTES] << 24);
    if (max > AGENT_HOST_CHUNK_BYTES)
        max = AGENT_HOST_CHUNK_BYTES;
    uint8_t *out = h->chunk;
    size_t got = 0;
    uint64_t total = 0;
    int rc = agent_store_read(&h->store, hash, offset, out + FETCH_REPLY_HEADER_BYTES, max, &got,
                              &total);
    le64_put(out, rid);
    out[8] = rc == NX_OK ? 0 : 1;
    le64_put(out + 9, rc == NX_OK ? total : 0);
    le64_put(out + 17, offset);
    if (rc == NX_OK)
        h->fetches_served++;
    else
        h->fetch_misses++;
    if (send_to(h, from, NULL, AGENT_MSG_FETCH_REPLY, out,
                FETCH_REPLY_HEADER_BYTES + (rc == NX_OK ? got : 0)) != NX_OK)
        NX_WARN("agent_fetch_reply_lost", "rid=%llu", (unsigned long long)rid);
}

static void fetch_complete(struct inbound *r)
{
    struct agent_host *h = r->h;
    char err[BUNDLE_ERR_MAX];
    int rc = agent_store_put(&h->store, r->bundle_hash, r->buf, (size_t)r->total, err, sizeof err);
    free(r->buf);
    r->buf = NULL;
    if (rc != NX_OK) {
        char who[17];
        nx_hex_encode(who, r->sources[r->src], 8);
        if (rc == NX_ERR_CORRUPT)
            h->fetch_hash_mismatches++;
        NX_WARN("agent_bundle_refused", "source=%s error=\"%s\"", who, err);
        snprintf(r->fetch_error, sizeof r->fetch_error, "from %s: refused, %s", who, err);
        r->src++;
        fetch_next_source(r);
        return;
    }
    h->fetched_bundles++;
    if (r->fetch_fn) {
        agent_host_fetch_fn fn = r->fetch_fn;
        void *arg = r->fetch_arg;
        uint8_t hash[BUNDLE_HASH_BYTES];
        memcpy(hash, r->bundle_hash, sizeof hash);
        in_free(r);
        fn(arg, hash, NX_OK, "");
        return;
    }
    if (r->prefetch) {
        h->prefetched++;
        char hex[BUNDLE_HASH_HEX_LEN + 1];
        nx_hex_encode(hex, r->bundle_hash, BUNDLE_HASH_BYTES);
        NX_INFO("agent_bundle_replicated", "bundle=%.16s bytes=%llu", hex,
                (unsigned long long)r->total);
        in_free(r);
        return;
    }
    start_run(r);
}

/* ---- bundle replication -------------------------------------------------------------- *
 * A bundle starts on the one member it was uploaded to. Every member copies the
 * bundles of the registry's live versions in the background, one at a time, so
 * a run (or a session resuming after a node died) does not depend on the member
 * that first received it. A bundle no member could serve is retried after
 * AGENT_HOST_PREFETCH_RETRY_MS. */

static void prefetch_failed(struct inbound *r)
{
    struct agent_host *h = r->h;
    size_t i = h->prefetch_failed_next++ % AGENT_HOST_PREFETCH_BACKOFF_SLOTS;
    memcpy(h->prefetch_failed[i], r->bundle_hash, BUNDLE_HASH_BYTES);
    h->prefetch_failed_until[i] = nx_clock_mono_ms() + AGENT_HOST_PREFETCH_RETRY_MS;
    h->prefetch_failures++;
}

static bool prefetch_backing_off(const struct agent_host *h, const uint8_t *hash)
{
    uint64_t now = nx_clock_mono_ms();
    for (size_t i = 0; i < AGENT_HOST_PREFETCH_BACKOFF_SLOTS; i++)
        if (h->prefetch_failed_until[i] > now &&
            memcmp(h->prefetch_failed[i], hash, BUNDLE_HASH_BYTES) == 0)
            return true;
    return false;
}

struct prefetch_pick {
    struct agent_host *h;
    bool found;
    uint8_t hash[BUNDLE_HASH_BYTES];
};

static int prefetch_pick_cb(void *arg, const struct ledger_agent *a)
{
    struct prefetch_pick *p = arg;
    if (a->deprecated || agent_store_has(&p->h->store, a->bundle_hash) ||
        prefetch_backing_off(p->h, a->bundle_hash))
        return 0;
    memcpy(p->hash, a->bundle_hash, BUNDLE_HASH_BYTES);
    p->found = true;
    return 1;
}

static void on_prefetch_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct agent_host *h = w->data;
    struct inbound *slot = NULL;
    for (size_t i = 0; i < AGENT_HOST_MAX_INBOUND; i++) {
        if (h->in[i].state != IN_FREE && h->in[i].prefetch)
            return; /* one at a time */
        if (slot == NULL && h->in[i].state == IN_FREE)
            slot = &h->in[i];
    }
    struct prefetch_pick p = {.h = h};
    if (slot == NULL ||
        ledger_agents_foreach(raft_host_ledger(h->raft), prefetch_pick_cb, &p) < 0 || !p.found)
        return;
    struct inbound *r = slot;
    r->gen++;
    r->h = h;
    r->prefetch = true;
    memset(&r->grant, 0, sizeof r->grant);
    memcpy(r->origin, h->id->pk, NODE_PK_BYTES); /* ourselves: not a source */
    snprintf(r->run_id, sizeof r->run_id, "prefetch");
    r->account[0] = '\0';
    memcpy(r->bundle_hash, p.hash, BUNDLE_HASH_BYTES);
    r->result = json_object();
    r->fetch_error[0] = '\0';
    r->received_us = nx_clock_mono_us();
    ev_timer_init(&r->timer, NULL, 0., 0.);
    r->timer.data = r;
    r->state = IN_FETCHING;
    sources_fill(r);
    r->src = 0;
    fetch_next_source(r);
}

static void on_fetch_reply(struct agent_host *h, const uint8_t from[NODE_PK_BYTES],
                           const uint8_t *body, size_t len)
{
    if (len < FETCH_REPLY_HEADER_BYTES) {
        h->msgs_bad++;
        return;
    }
    struct inbound *r = in_find(h, le64_get(body));
    if (r == NULL || r->state != IN_FETCHING || r->src >= r->n_sources ||
        memcmp(r->sources[r->src], from, NODE_PK_BYTES) != 0) {
        h->msgs_bad++;
        return;
    }
    uint64_t total = le64_get(body + 9), offset = le64_get(body + 17);
    size_t n = len - FETCH_REPLY_HEADER_BYTES;
    if (body[8] != 0) {
        r->src++;
        fetch_next_source(r);
        return;
    }
    if (total == 0 || total > BUNDLE_MAX_BYTES || offset != r->got || n > total - offset ||
        (r->buf && total != r->total) || (n == 0 && offset < total)) {
        h->msgs_bad++;
        snprintf(r->fetch_error, sizeof r->fetch_error, "a member sent a malformed chunk");
        r->src++;
        fetch_next_source(r);
        return;
    }
    if (r->buf == NULL) {
        r->total = total;
        if ((r->buf = malloc((size_t)total)) == NULL) {
            in_fail(r, "out of memory for a bundle of %llu bytes", (unsigned long long)total);
            return;
        }
    }
    memcpy(r->buf + r->got, body + FETCH_REPLY_HEADER_BYTES, n);
    r->got += n;
    if (r->got == r->total) {
        ev_timer_stop(h->loop, &r->timer);
        fetch_complete(r);
    } else {
        fetch_request(r);
    }
}

/* ---- target: running and charging ---------------------------------------------------- */

static void start_run(struct inbound *r)
{
    struct agent_host *h = r->h;
    char dir[4096], err[BUNDLE_ERR_MAX];
    if (agent_store_unpacked(&h->store, r->bundle_hash, dir, sizeof dir, err, sizeof err) !=
        NX_OK) {
        in_fail(r, "%s", err);
        return;
    }
    struct agent_task *t = agent_task_new(AGENT_TASK_RUN);
    if (t == NULL) {
        in_fail(r, "out of memory");
        return;
    }
    t->owner = r;
    snprintf(t->bundle_dir, sizeof t->bundle_dir, "%s", dir);
    nx_hex_encode(t->pool_key, r->bundle_hash, BUNDLE_HASH_BYTES);
    t->input_json = r->input_json;
    r->input_json = NULL;
    t->context_json = r->context_json;
    r->context_json = NULL;
    r->state = IN_RUNNING;
    if (agent_exec_submit(h->exec, t) != NX_OK) {
        agent_task_free(t);
        in_fail(r, "this node's run queue is full");
    }
}

/* 1 unit per run, plus 1 per millisecond of CPU time (docs/agents.md "Metering"). */
static uint64_t price_of(const struct sbx_usage *u)
{
    return 1 + u->cpu_total_us / 1000;
}

static int charge_command(struct agent_host *h, const struct inbound *r, uint64_t amount,
                          uint8_t **bytes, size_t *len)
{
    struct ledger_cmd c;
    memset(&c, 0, sizeof c);
    c.type = LEDGER_CMD_CHARGE;
    /* The ledger's cluster id is the mesh's (ledger_host.h); a node that joined a
     * moment ago may not have applied genesis yet, and its charge must not wait. */
    uint8_t operator_pk[LEDGER_KEY_BYTES];
    if (ledger_genesis_get(raft_host_ledger(h->raft), c.cluster_id, operator_pk) != NX_OK) {
        if (h->cfg.cluster_id == NULL)
            return NX_ERR_UNAVAILABLE;
        memcpy(c.cluster_id, h->cfg.cluster_id, LEDGER_CLUSTER_ID_BYTES);
    }
    memcpy(c.author, h->id->pk, LEDGER_KEY_BYTES);
    /* one run id, one idempotency key: a resend by this node is a duplicate */
    crypto_generichash(c.idem_key, LEDGER_IDEM_BYTES, (const uint8_t *)r->run_id, strlen(r->run_id),
                       NULL, 0);
    c.created_ms = nx_clock_wall_ms();
    snprintf(c.u.charge.account, sizeof c.u.charge.account, "%s", r->account);
    snprintf(c.u.charge.payee, sizeof c.u.charge.payee, "%s", r->tenant);
    c.u.charge.amount = amount;
    snprintf(c.u.charge.run_id, sizeof c.u.charge.run_id, "%s", r->run_id);
    return ledger_cmd_build(&c, h->id->sk, bytes, len);
}

static void charge_done(void *arg, unsigned status, json_t *answer);

static void charge_submit(struct inbound *r)
{
    r->charge_attempts++;
    raft_host_submit_ledger(r->h->raft, r->charge_cmd, r->charge_len, charge_done, r);
}

static void on_charge_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    charge_submit(w->data);
}

/* Proposes the charge; the answer comes to charge_done (maybe before this returns). */
static void start_charge(struct inbound *r, const struct sbx_usage *u)
{
    struct agent_host *h = r->h;
    uint64_t amount = price_of(u);
    int rc = charge_command(h, r, amount, &r->charge_cmd, &r->charge_len);
    if (rc != NX_OK) {
        h->charges_failed++;
        json_object_set_new(r->result, "charge_error",
                            json_sprintf("not charged: %s", nx_strerror(rc)));
        in_finish(r);
        return;
    }
    json_object_set_new(r->result, "charge",
                        json_pack("{s:s,s:s,s:I}", "account", r->account, "payee", r->tenant,
                                  "amount", (json_int_t)amount));
    r->state = IN_CHARGING;
    r->charge_attempts = 0;
    charge_submit(r);
}

static void run_done(struct agent_host *h, struct agent_task *t)
{
    struct inbound *r = t->owner;
    /* the resources go back as soon as the sandbox is gone */
    bool gpus = r->grant.gpu_mask != 0;
    if (node_resources_release(&h->reserved, &r->grant) != NX_OK)
        NX_ERROR("agent_release_failed", "run_id=%s", r->run_id);
    memset(&r->grant, 0, sizeof r->grant);
    if (gpus)
        gossip_host_refresh(h->gossip);
    json_object_set_new(r->result, "usage", sbx_usage_to_json(&t->usage));
    json_object_set_new(r->result, "warm", json_boolean(t->warm));
    json_object_set_new(r->result, "timing",
                        json_pack("{s:f,s:f}", "queue_ms",
                                  (double)(t->started_us - t->submitted_us) / 1000.0, "exec_ms",
                                  (double)(t->finished_us - t->started_us) / 1000.0));
    if (t->rc != 0) {
        json_object_set_new(r->result, "error", json_string(t->err));
    } else if (t->agent_error) {
        json_object_set_new(r->result, "error", json_string(t->agent_error));
    } else {
        json_t *out = json_loads(t->output_json ? t->output_json : "null", JSON_DECODE_ANY, NULL);
        json_object_set_new(r->result, "output", out ? out : json_null());
        json_t *ctx = t->context_out ? json_loads(t->context_out, JSON_DECODE_ANY, NULL) : NULL;
        if (ctx)
            json_object_set_new(r->result, "context", ctx);
    }
    if (t->rc != 0 || t->agent_error)
        h->runs_failed++;
    bool ran = t->rc == 0 || t->usage.wall_us > 0;
    if (r->account[0] && ran) {
        start_charge(r, &t->usage);
        return;
    }
    json_object_set_new(
        r->result, "charge_skipped",
        json_string(r->account[0] ? "the run did not happen" : "no account given: not charged"));
    in_finish(r);
}

static void charge_done(void *arg, unsigned status, json_t *answer)
{
    struct inbound *r = arg;
    struct agent_host *h = r->h;
    if (status == 503 && r->charge_attempts < AGENT_HOST_CHARGE_ATTEMPTS) {
        /* no leader yet, or this node not yet in Raft (it joined a moment ago), or
         * the outcome is unknown: the same bytes again are safe (idempotent) */
        ev_timer_stop(h->loop, &r->timer);
        ev_timer_init(&r->timer, on_charge_retry, AGENT_HOST_CHARGE_RETRY_MS / 1000.0, 0.);
        r->timer.data = r;
        ev_timer_start(h->loop, &r->timer);
        return;
    }
    json_t *charge = json_object_get(r->result, "charge");
    int code = (int)json_integer_value(json_object_get(answer, "reason_code"));
    if (status == 200) {
        bool dup = json_is_true(json_object_get(answer, "duplicate"));
        json_object_set_new(charge, "tx_seq",
                            json_integer(json_integer_value(json_object_get(answer, "tx_seq"))));
        json_object_set_new(charge, "duplicate", json_boolean(dup));
        dup ? h->charges_duplicate++ : h->charges_ok++;
    } else if (status == 422 && code == LEDGER_REJ_IDEM_CONFLICT) {
        /* another node (or an earlier life of this one) charged this run id already */
        json_object_set_new(charge, "already_charged", json_true());
        json_object_set_new(charge, "note",
                            json_string("this run id was charged before; not charged again"));
        h->charges_duplicate++;
    } else {
        const char *reason = json_string_value(json_object_get(answer, "reason"));
        const char *e = json_string_value(json_object_get(answer, "error"));
        json_object_set_new(r->result, "charge_error",
                            json_sprintf("not charged: %s", reason ? reason
                                                            : e    ? e
                                                                   : "the ledger refused"));
        json_object_del(r->result, "charge");
        h->charges_failed++;
    }
    in_finish(r);
}

static void on_task_done(void *ctx, struct agent_task *t)
{
    run_done(ctx, t);
    agent_task_free(t);
}

/* ---- dispatch ------------------------------------------------------------------------- */

static void dispatch(struct agent_host *h, uint32_t type, const uint8_t from[NODE_PK_BYTES],
                     const uint8_t *body, size_t len)
{
    switch (type) {
    case AGENT_MSG_RUN:
        on_run(h, from, body, len);
        break;
    case AGENT_MSG_RUN_REPLY:
        on_run_reply(h, from, body, len);
        break;
    case AGENT_MSG_FETCH:
        on_fetch(h, from, body, len);
        break;
    case AGENT_MSG_FETCH_REPLY:
        on_fetch_reply(h, from, body, len);
        break;
    default:
        h->msgs_bad++;
    }
}

#define HANDLER(name, type)                                                                        \
    static void name(void *ctx, const uint8_t sender[NODE_PK_BYTES], const uint8_t *body,          \
                     size_t len)                                                                   \
    {                                                                                              \
        dispatch(ctx, type, sender, body, len);                                                    \
    }
HANDLER(mesh_on_run, AGENT_MSG_RUN)
HANDLER(mesh_on_run_reply, AGENT_MSG_RUN_REPLY)
HANDLER(mesh_on_fetch, AGENT_MSG_FETCH)
HANDLER(mesh_on_fetch_reply, AGENT_MSG_FETCH_REPLY)

/* ---- registry and plan API ---------------------------------------------------------- */

static void reply_plan(struct agent_host *h, struct api_request *req, const char *spec)
{
    struct agent_version v;
    int rc = agent_registry_resolve(h->registry, spec, &v);
    if (rc != NX_OK) {
        api_reply_error(req, rc == NX_ERR_INVAL ? 400 : 404, "no agent %s in the registry", spec);
        return;
    }
    struct place_needs needs;
    char why[PLACE_REASON_MAX + 256];
    json_t *constraints = json_array();
    const char *c = api_req_query(req, "constraint");
    if (c)
        json_array_append_new(constraints, json_string(c));
    rc = needs_build(v.manifest, v.manifest_len, constraints, NEEDS_PLAN, &needs, NULL, why,
                     sizeof why);
    json_decref(constraints);
    if (rc != NX_OK) {
        agent_version_clear(&v);
        api_reply_error(req, 422, "%s", why);
        return;
    }
    struct gossip_member_info *members = NULL;
    size_t n = 0;
    struct place_verdict *verdicts = NULL;
    struct place_pick picks[AGENT_HOST_CANDIDATES];
    struct place_result res;
    if (members_load(h, &members, &n) != NX_OK ||
        (verdicts = calloc(n ? n : 1, sizeof *verdicts)) == NULL) {
        free(members);
        agent_version_clear(&v);
        api_reply_error(req, 500, "out of memory");
        return;
    }
    charge_in_flight(h, members, n); /* what the next run would see */
    rc = place_rank(&needs, members, n, &h->rng, verdicts, picks, AGENT_HOST_CANDIDATES, &res);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        char text[PLACE_REASON_MAX];
        place_verdict_format(&verdicts[i], &needs, &members[i], text, sizeof text);
        int rank_of = 0;
        for (uint32_t k = 0; k < res.picked_count; k++)
            if (picks[k].member == i)
                rank_of = (int)k + 1;
        json_t *e =
            json_pack("{s:o,s:s,s:s,s:b,s:s,s:s}", "node", hex_json(members[i].id, NODE_PK_BYTES),
                      "address", members[i].meta.addr, "state", gossip_state_name(members[i].state),
                      "fits", verdicts[i].reason == PLACE_FITS, "reason",
                      place_reason_name(verdicts[i].reason), "verdict", text);
        if (verdicts[i].reason == PLACE_FITS)
            json_object_set_new(e, "score", json_real(verdicts[i].score));
        if (rank_of)
            json_object_set_new(e, "rank", json_integer(rank_of));
        json_array_append_new(list, e);
    }
    json_t *out =
        json_pack("{s:s,s:s,s:o,s:o,s:I}", "agent", v.rec.name, "version", v.rec.version, "needs",
                  needs_json(&needs), "members", list, "fit_count", (json_int_t)res.fit_count);
    if (rc == NX_ERR_LIMIT) {
        place_explain(&res, &needs, members, n, why, sizeof why);
        json_object_set_new(out, "explanation", json_string(why));
    }
    free(verdicts);
    free(members);
    agent_version_clear(&v);
    api_reply_json(req, 200, out);
}

enum api_result agent_host_api_agents(void *ctx, struct api_request *req)
{
    struct agent_host *h = ctx;
    const char *tail = api_req_tail(req);
    unsigned status = 200;
    json_t *out;
    if (tail[0] == '\0') {
        out = agent_registry_json(h->registry, NULL, api_req_query(req, "capability"), &status);
    } else {
        char name[LEDGER_STR_CAP + 16];
        const char *slash = strchr(tail, '/');
        size_t n = slash ? (size_t)(slash - tail) : strlen(tail);
        if (n == 0 || n > LEDGER_NAME_MAX + 1 + LEDGER_NAME_MAX ||
            (slash && strcmp(slash, "/plan") != 0)) {
            api_reply_error(req, 404, "expected /v1/agents/NAME or /v1/agents/NAME[@VERSION]/plan");
            return API_DONE;
        }
        snprintf(name, sizeof name, "%.*s", (int)n, tail);
        if (slash) {
            reply_plan(h, req, name);
            return API_DONE;
        }
        out = agent_registry_json(h->registry, name, NULL, &status);
    }
    api_reply_json(req, status, out);
    return API_DONE;
}

enum api_result agent_host_api_bundle(void *ctx, struct api_request *req)
{
    struct agent_host *h = ctx;
    const char *hex = api_req_tail(req);
    const char *off = api_req_query(req, "offset"), *tot = api_req_query(req, "total");
    uint8_t hash[BUNDLE_HASH_BYTES];
    if (strlen(hex) != BUNDLE_HASH_HEX_LEN || nx_hex_decode(hash, sizeof hash, hex) != NX_OK ||
        tot == NULL) {
        api_reply_error(req, 400, "expected PUT /v1/bundles/HASH?offset=O&total=T (64 hex digits)");
        return API_DONE;
    }
    size_t len = 0;
    const char *body = api_req_body(req, &len);
    bool complete = false;
    char err[BUNDLE_ERR_MAX + 64];
    int rc = agent_store_upload(&h->store, hash, off ? strtoull(off, NULL, 10) : 0,
                                strtoull(tot, NULL, 10), (const uint8_t *)body, len, &complete, err,
                                sizeof err);
    if (rc != NX_OK) {
        api_reply_error(req,
                        rc == NX_ERR_CORRUPT || rc == NX_ERR_DECODE ? 422
                        : rc == NX_ERR_IO                           ? 500
                                                                    : 400,
                        "%s", err);
        return API_DONE;
    }
    api_reply_json(req, complete ? 201 : 202,
                   json_pack("{s:s,s:b}", "bundle_hash", hex, "complete", complete));
    return API_DONE;
}

/* ---- for deployments ------------------------------------------------------------------- */

static void on_fetch_start(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct inbound *r = w->data;
    sources_fill(r);
    r->src = 0;
    fetch_next_source(r);
}

int agent_host_fetch(struct agent_host *h, const uint8_t *bundle_hash, agent_host_fetch_fn fn,
                     void *arg)
{
    struct inbound *r = NULL;
    for (size_t i = 0; i < AGENT_HOST_MAX_INBOUND && r == NULL; i++)
        if (h->in[i].state == IN_FREE)
            r = &h->in[i];
    if (r == NULL)
        return NX_ERR_FULL;
    r->gen++;
    r->h = h;
    memset(&r->grant, 0, sizeof r->grant);
    memcpy(r->origin, h->id->pk, NODE_PK_BYTES); /* sources: every other alive member */
    r->origin_rid = 0;
    r->run_id[0] = r->account[0] = r->tenant[0] = '\0';
    memcpy(r->bundle_hash, bundle_hash, BUNDLE_HASH_BYTES);
    r->fetch_error[0] = '\0';
    r->prefetch = false;
    r->fetch_fn = fn;
    r->fetch_arg = arg;
    r->received_us = nx_clock_mono_us();
    r->state = IN_FETCHING;
    ev_timer_init(&r->timer, on_fetch_start, 0., 0.); /* fn never runs before we return */
    r->timer.data = r;
    ev_timer_start(h->loop, &r->timer);
    return NX_OK;
}

int agent_host_bundle_dir(struct agent_host *h, const uint8_t *bundle_hash, char *dir, size_t cap,
                          char *err, size_t err_cap)
{
    if (!agent_store_has(&h->store, bundle_hash))
        return NX_ERR_NOT_FOUND;
    return agent_store_unpacked(&h->store, bundle_hash, dir, cap, err, err_cap);
}

int agent_host_reserve(struct agent_host *h, const struct node_request *req,
                       struct node_grant *grant)
{
    struct node_resources avail;
    int rc = resources_now(h, &avail);
    if (rc == NX_OK)
        rc = node_resources_reserve(&h->reserved, &h->detected, req, grant);
    if (rc == NX_OK && h->gossip)
        gossip_host_refresh(h->gossip);
    return rc;
}

void agent_host_release(struct agent_host *h, const struct node_grant *grant)
{
    if (node_resources_release(&h->reserved, grant) != NX_OK)
        NX_ERROR("agent_release_failed", "what=deployment");
    if (h->gossip)
        gossip_host_refresh(h->gossip);
}

int agent_host_members(struct agent_host *h, struct gossip_member_info **out, size_t *n)
{
    return members_load(h, out, n);
}

/* ---- life cycle ------------------------------------------------------------------------ */

int agent_host_start(struct agent_host **out, struct ev_loop *loop, struct mesh *mesh,
                     struct gossip_host *gossip, struct raft_host *raft,
                     const struct node_identity *id, const struct agent_host_config *cfg, char *err,
                     size_t cap)
{
    struct agent_host *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NX_ERR_NOMEM;
    h->loop = loop;
    h->mesh = mesh;
    h->gossip = gossip;
    h->raft = raft;
    h->id = id;
    h->cfg = *cfg;
    labels_parse(h, cfg->labels);
    node_reserved_init(&h->reserved);
    gossip_host_set_reserved(gossip, &h->reserved);
    nx_rng_seed(&h->rng, randombytes_random() | (uint64_t)randombytes_random() << 32);
    int rc = (h->chunk = malloc(FETCH_REPLY_HEADER_BYTES + AGENT_HOST_CHUNK_BYTES)) ? NX_OK
                                                                                    : NX_ERR_NOMEM;
    if (rc == NX_OK)
        rc = agent_store_open(&h->store, cfg->data_dir, err, cap);
    if (rc == NX_OK)
        rc = agent_registry_open(&h->registry, raft_host_ledger(raft));
    if (rc == NX_OK) {
        rc = agent_exec_start(&h->exec, loop,
                              cfg->threads ? cfg->threads : AGENT_EXEC_THREADS_DEFAULT,
                              cfg->pool_size, on_task_done, h);
        if (rc != NX_OK)
            snprintf(err, cap, "agents: cannot start helper threads: %s", nx_strerror(rc));
    }
    if (rc == NX_OK &&
        ((rc = mesh_set_handler(mesh, AGENT_MSG_RUN, mesh_on_run, h)) != NX_OK ||
         (rc = mesh_set_handler(mesh, AGENT_MSG_RUN_REPLY, mesh_on_run_reply, h)) != NX_OK ||
         (rc = mesh_set_handler(mesh, AGENT_MSG_FETCH, mesh_on_fetch, h)) != NX_OK ||
         (rc = mesh_set_handler(mesh, AGENT_MSG_FETCH_REPLY, mesh_on_fetch_reply, h)) != NX_OK))
        snprintf(err, cap, "agents: cannot register envelope handlers: %s", nx_strerror(rc));
    if (rc != NX_OK) {
        agent_host_stop(h);
        return rc;
    }
    ev_timer_init(&h->prefetch_timer, on_prefetch_timer, AGENT_HOST_PREFETCH_EVERY_MS / 1000.0,
                  AGENT_HOST_PREFETCH_EVERY_MS / 1000.0);
    h->prefetch_timer.data = h;
    ev_timer_start(loop, &h->prefetch_timer);
    *out = h;
    return NX_OK;
}

void agent_host_stop(struct agent_host *h)
{
    if (h == NULL)
        return;
    ev_timer_stop(h->loop, &h->prefetch_timer);
    agent_exec_stop(h->exec); /* no task comes back after this */
    gossip_host_set_reserved(h->gossip, NULL);
    for (size_t i = 0; i < AGENT_HOST_MAX_OUTBOUND; i++)
        if (h->out[i].state != OUT_FREE) {
            ev_timer_stop(h->loop, &h->out[i].timer);
            json_decref(h->out[i].request);
            json_decref(h->out[i].refusals);
        }
    for (size_t i = 0; i < AGENT_HOST_MAX_INBOUND; i++)
        if (h->in[i].state != IN_FREE)
            in_free(&h->in[i]);
    for (size_t i = 0; i < AGENT_HOST_DONE_CACHE; i++)
        free(h->done[i].reply);
    agent_registry_close(h->registry);
    free(h->chunk);
    free(h);
}
