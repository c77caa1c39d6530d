/*
 * gossip_host.c - the SWIM core on the node's loop and mesh.
 *
 * After every input (a tick, a received message, a leave, a metadata change)
 * we drain the core: send its messages through the mesh, log its events,
 * advance it, and re-arm the one timer at its next deadline.
 *
 * Message path and scale: a gossip message goes straight to the one member it
 * names, over that member's DEALER connection, signed once. Per protocol period
 * a node sends O(1) messages (one probe, k ping-reqs when it fails, acks),
 * each carrying a bounded piggy-back of updates, so traffic per node does not
 * grow with the cluster; push-pull of the full state happens once per
 * push_pull_interval with one random member. Connections are opened on demand
 * and capped by the transport (least recently used closed first), so a node in
 * a cluster of thousands holds at most NODE_TRANSPORT_MAX_CONNECTIONS_DEFAULT
 * outgoing connections plus the incoming ones of members probing it.
 */
#include "gossip_host.h"

#include <ev.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/gossip.h"
#include "proto/ncap.h"
#include "resources.h"

struct gossip_host {
    struct ev_loop *loop;
    struct mesh *mesh;
    const struct node_identity *id;
    struct gossip_config cfg;
    struct gossip_core *core;
    struct gossip_meta meta;
    int gpus;
    uint32_t cpu_override_millicores;
    uint64_t mem_override_bytes;
    const struct node_reserved *reserved; /* borrowed: what admitted runs hold, or NULL */
    uint64_t gpu_mem_bytes;
    ev_timer tick;
    ev_timer refresh;
    uint64_t send_failures, untrusted_peers;
};

static void log_event(const struct gossip_event *ev)
{
    char id[17];
    snprintf(id, sizeof id, "%02x%02x%02x%02x%02x%02x%02x%02x", ev->id[0], ev->id[1], ev->id[2],
             ev->id[3], ev->id[4], ev->id[5], ev->id[6], ev->id[7]);
    enum nx_log_level level =
        ev->kind == GOSSIP_EV_DEAD || ev->kind == GOSSIP_EV_SUSPECT ? NX_LOG_WARN : NX_LOG_INFO;
    if (ev->kind == GOSSIP_EV_META)
        level = NX_LOG_DEBUG;
    nx_log(level, "member", "change=%s member=%s incarnation=%llu", gossip_event_name(ev->kind), id,
           (unsigned long long)ev->incarnation);
}

/* Sends what the core produced, logs its events and re-arms the timer. */
static void drain(struct gossip_host *h)
{
    struct gossip_ready rd;
    gossip_ready(h->core, &rd);
    for (size_t i = 0; i < rd.msg_count; i++) {
        const struct gossip_out_msg *m = &rd.msgs[i];
        if (!mesh_trusts(h->mesh, m->to_id)) {
            h->untrusted_peers++;
            continue;
        }
        if (mesh_send(h->mesh, m->to_id, m->to_addr, NCAP_MSG_GOSSIP, m->data, m->len) != NX_OK)
            h->send_failures++;
    }
    for (size_t i = 0; i < rd.event_count; i++)
        log_event(&rd.events[i]);
    uint64_t next = rd.next_deadline_ms;
    gossip_advance(h->core);
    uint64_t now = nx_clock_mono_ms();
    ev_timer_stop(h->loop, &h->tick);
    ev_timer_set(&h->tick, next > now ? (double)(next - now) / 1000.0 : 0., 0.);
    ev_timer_start(h->loop, &h->tick);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct gossip_host *h = w->data;
    gossip_tick(h->core, nx_clock_mono_ms());
    drain(h);
}

static void on_gossip(void *ctx, const uint8_t sender[NODE_PK_BYTES], const uint8_t *body,
                      size_t len)
{
    struct gossip_host *h = ctx;
    /* A bad message is counted by the core; nothing else to do with it. */
    int rc = gossip_receive(h->core, nx_clock_mono_ms(), sender, body, len);
    if (rc != NX_OK)
        NX_DEBUG("gossip_drop", "from=%02x%02x%02x%02x reason=\"%s\"", sender[0], sender[1],
                 sender[2], sender[3], nx_strerror(rc));
    drain(h);
}

static void meta_set_resources(struct gossip_meta *m, const struct node_resources *r)
{
    m->cpu_total_millicores = r->cpu_total_millicores;
    m->cpu_free_millicores = r->cpu_free_millicores;
    m->mem_total_bytes = r->mem_total_bytes;
    m->mem_free_bytes = r->mem_free_bytes;
    m->gpu_count = r->gpu_count;
    m->gpu_mem_count = r->gpu_count < GOSSIP_GPUS_MAX ? r->gpu_count : GOSSIP_GPUS_MAX;
    for (uint32_t i = 0; i < m->gpu_mem_count; i++)
        m->gpu_mem_bytes[i] = r->gpu_mem_bytes[i];
}

/* Changed enough to be worth a broadcast: 10% of the CPU or 5% of the memory. */
static bool meta_changed(const struct gossip_meta *a, const struct gossip_meta *b)
{
    uint64_t dcpu = a->cpu_free_millicores > b->cpu_free_millicores
                        ? a->cpu_free_millicores - b->cpu_free_millicores
                        : b->cpu_free_millicores - a->cpu_free_millicores;
    uint64_t dmem = a->mem_free_bytes > b->mem_free_bytes ? a->mem_free_bytes - b->mem_free_bytes
                                                          : b->mem_free_bytes - a->mem_free_bytes;
    return dcpu * 10 > a->cpu_total_millicores || dmem * 20 > a->mem_total_bytes ||
           a->gpu_count != b->gpu_count;
}

static int detect(const struct gossip_host *h, struct node_resources *r)
{
    struct node_detect_opts opts = {.gpus = h->gpus,
                                    .gpu_mem_bytes = h->gpu_mem_bytes,
                                    .cpu_override_millicores = h->cpu_override_millicores,
                                    .mem_override_bytes = h->mem_override_bytes};
    int rc = node_resources_detect_opts(r, &opts);
    if (rc == NX_OK && h->reserved)
        node_resources_subtract(r, h->reserved); /* advertise what is really left */
    return rc;
}

void gossip_host_set_reserved(struct gossip_host *h, const struct node_reserved *rv)
{
    h->reserved = rv;
}

void gossip_host_refresh(struct gossip_host *h)
{
    struct node_resources r;
    if (detect(h, &r) != NX_OK)
        return;
    struct gossip_meta next = h->meta;
    meta_set_resources(&next, &r);
    if (!meta_changed(&h->meta, &next))
        return;
    if (gossip_set_meta(h->core, nx_clock_mono_ms(), &next) == NX_OK) {
        h->meta = next;
        drain(h);
    }
}

static void on_refresh(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    gossip_host_refresh(w->data);
}

static int parse_labels(struct gossip_meta *m, const char *labels, char *err, size_t cap)
{
    for (const char *s = labels; s && *s;) {
        size_t len = strcspn(s, "\n");
        const char *eq = memchr(s, '=', len);
        size_t klen = eq ? (size_t)(eq - s) : 0, vlen = eq ? len - klen - 1 : 0;
        if (m->label_count == GOSSIP_LABELS_MAX || !eq || klen == 0 ||
            klen > GOSSIP_LABEL_KEY_MAX || vlen > GOSSIP_LABEL_VALUE_MAX) {
            snprintf(err, cap,
                     "bad --label '%.*s' (KEY=VALUE, key 1-%d bytes, value up to %d, at most %d "
                     "labels)",
                     (int)(len > 100 ? 100 : len), s, GOSSIP_LABEL_KEY_MAX, GOSSIP_LABEL_VALUE_MAX,
                     GOSSIP_LABELS_MAX);
            return NX_ERR_INVAL;
        }
        struct gossip_label *l = &m->labels[m->label_count++];
        memcpy(l->key, s, klen);
        l->key[klen] = '\0';
        memcpy(l->value, eq + 1, vlen);
        l->value[vlen] = '\0';
        s += len;
        if (*s == '\n')
            s++;
    }
    return NX_OK;
}

static int join_seeds(struct gossip_host *h, const char *seeds, char *err, size_t cap)
{
    for (const char *s = seeds; s && *s;) {
        size_t len = strcspn(s, "\n");
        uint8_t seed_id[NODE_PK_BYTES];
        char hex[NODE_ID_HEX_LEN + 1], addr[GOSSIP_ADDR_MAX + 1];
        const char *at = memchr(s, '@', len);
        if (at == NULL || at - s != NODE_ID_HEX_LEN || len - NODE_ID_HEX_LEN - 1 > GOSSIP_ADDR_MAX)
            goto bad;
        memcpy(hex, s, NODE_ID_HEX_LEN);
        hex[NODE_ID_HEX_LEN] = '\0';
        memcpy(addr, at + 1, len - NODE_ID_HEX_LEN - 1);
        addr[len - NODE_ID_HEX_LEN - 1] = '\0';
        if (nx_hex_decode(seed_id, sizeof seed_id, hex) != NX_OK)
            goto bad;
        if (memcmp(seed_id, h->id->pk, NODE_PK_BYTES) != 0 &&
            gossip_join(h->core, nx_clock_mono_ms(), seed_id, addr) != NX_OK)
            goto bad;
        s += len;
        if (*s == '\n')
            s++;
        continue;
    bad:
        snprintf(err, cap, "bad seed '%.*s' (expected NODEID@HOST:PORT)",
                 (int)(len > 100 ? 100 : len), s);
        return NX_ERR_INVAL;
    }
    return NX_OK;
}

static int build_meta(struct gossip_host *h, const struct gossip_host_config *cfg, char *err,
                      size_t cap)
{
    struct gossip_meta *m = &h->meta;
    memset(m, 0, sizeof *m);
    if (strlen(cfg->advertise) > GOSSIP_ADDR_MAX) {
        snprintf(err, cap, "advertised address too long (at most %d bytes)", GOSSIP_ADDR_MAX);
        return NX_ERR_INVAL;
    }
    snprintf(m->addr, sizeof m->addr, "%s", cfg->advertise);
    snprintf(m->version, sizeof m->version, "%s", NODE_VERSION);
    struct node_resources r;
    if (detect(h, &r) != NX_OK) {
        snprintf(err, cap, "cannot read this machine's resources from /proc");
        return NX_ERR_IO;
    }
    meta_set_resources(m, &r);
    return parse_labels(m, cfg->labels, err, cap);
}

int gossip_host_start(struct gossip_host **out, struct ev_loop *loop, struct mesh *mesh,
                      const struct node_identity *id, const struct gossip_host_config *cfg,
                      char *err, size_t cap)
{
    struct gossip_host *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NX_ERR_NOMEM;
    h->loop = loop;
    h->mesh = mesh;
    h->id = id;
    h->gpus = cfg->gpus;
    h->gpu_mem_bytes = cfg->gpu_mem_bytes;
    h->cpu_override_millicores = cfg->cpu_override_millicores;
    h->mem_override_bytes = cfg->mem_override_bytes;
    int rc = build_meta(h, cfg, err, cap);
    if (rc != NX_OK)
        goto fail;
    gossip_config_default(&h->cfg);
    h->cfg.probe_interval_ms = cfg->probe_interval_ms;
    h->cfg.probe_timeout_ms = cfg->probe_interval_ms / 2;
    uint64_t seed;
    randombytes_buf(&seed, sizeof seed);
    /* The wall clock grows across restarts, so a restarted node's incarnation wins. */
    h->core =
        gossip_create(&h->cfg, id->pk, &h->meta, nx_clock_wall_ms(), seed, nx_clock_mono_ms());
    if (h->core == NULL) {
        snprintf(err, cap, "cannot start gossip (bad configuration or metadata too large)");
        rc = NX_ERR_INVAL;
        goto fail;
    }
    rc = mesh_set_handler(mesh, NCAP_MSG_GOSSIP, on_gossip, h);
    if (rc == NX_OK)
        rc = join_seeds(h, cfg->seeds, err, cap);
    if (rc != NX_OK)
        goto fail;
    ev_init(&h->tick, on_tick);
    h->tick.data = h;
    ev_timer_init(&h->refresh, on_refresh, GOSSIP_HOST_REFRESH_MS / 1000.0,
                  GOSSIP_HOST_REFRESH_MS / 1000.0);
    h->refresh.data = h;
    ev_timer_start(loop, &h->refresh);
    drain(h);
    *out = h;
    return NX_OK;
fail:
    gossip_host_stop(h);
    return rc;
}

void gossip_host_stop(struct gossip_host *h)
{
    if (h == NULL)
        return;
    ev_timer_stop(h->loop, &h->tick);
    ev_timer_stop(h->loop, &h->refresh);
    if (h->core)
        gossip_destroy(h->core);
    free(h);
}

void gossip_host_set_raft_role(struct gossip_host *h, int role)
{
    if (h == NULL || (int)h->meta.raft_role == role)
        return;
    struct gossip_meta next = h->meta;
    next.raft_role = (enum gossip_raft_role)role;
    if (gossip_set_meta(h->core, nx_clock_mono_ms(), &next) == NX_OK) {
        h->meta = next;
        drain(h);
    }
}

void gossip_host_leave(struct gossip_host *h)
{
    gossip_leave(h->core, nx_clock_mono_ms());
    drain(h);
}

static json_t *member_json(const struct gossip_member_info *mi)
{
    char id[NODE_ID_HEX_LEN + 1];
    nx_hex_encode(id, mi->id, NODE_PK_BYTES);
    const struct gossip_meta *m = &mi->meta;
    json_t *gpu_mem = json_array();
    for (uint32_t i = 0; i < m->gpu_mem_count; i++)
        json_array_append_new(gpu_mem, json_integer((json_int_t)m->gpu_mem_bytes[i]));
    json_t *labels = json_object();
    for (uint32_t i = 0; i < m->label_count; i++)
        json_object_set_new(labels, m->labels[i].key, json_string(m->labels[i].value));
    static const char *const roles[] = {"none", "learner", "follower", "candidate", "leader"};
    return json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:{s:I,s:I,s:I,s:I,s:I,s:o},s:o}", "id", id,
                     "address", m->addr, "state", gossip_state_name(mi->state), "incarnation",
                     (json_int_t)mi->incarnation, "version", m->version, "raft_role",
                     m->raft_role < GOSSIP_RAFT__COUNT ? roles[m->raft_role] : "none", "resources",
                     "cpu_free_millicores", (json_int_t)m->cpu_free_millicores,
                     "cpu_total_millicores", (json_int_t)m->cpu_total_millicores, "mem_free_bytes",
                     (json_int_t)m->mem_free_bytes, "mem_total_bytes",
                     (json_int_t)m->mem_total_bytes, "gpu_count", (json_int_t)m->gpu_count,
                     "gpu_mem_bytes", gpu_mem, "labels", labels);
}

json_t *gossip_host_members_json(const struct gossip_host *h)
{
    json_t *arr = json_array();
    size_t n = gossip_member_count(h->core);
    for (size_t i = 0; i < n; i++) {
        struct gossip_member_info mi;
        if (gossip_member_get(h->core, i, &mi) == NX_OK)
            json_array_append_new(arr, member_json(&mi));
    }
    return arr;
}

int gossip_host_member_state(const struct gossip_host *h, const uint8_t pk[NODE_PK_BYTES],
                             enum gossip_state *state, uint64_t *for_ms)
{
    size_t n = gossip_member_count(h->core);
    for (size_t i = 0; i < n; i++) {
        struct gossip_member_info mi;
        if (gossip_member_get(h->core, i, &mi) != NX_OK || memcmp(mi.id, pk, NODE_PK_BYTES) != 0)
            continue;
        uint64_t now = nx_clock_mono_ms();
        *state = mi.state;
        *for_ms = now > mi.state_change_ms ? now - mi.state_change_ms : 0;
        return NX_OK;
    }
    return NX_ERR_NOT_FOUND;
}

json_t *gossip_host_counters_json(const struct gossip_host *h)
{
    const struct gossip_counters *c = gossip_counters(h->core);
    uint64_t drops = 0;
    for (int i = 0; i < GOSSIP_DROP__COUNT; i++)
        drops += c->drops[i];
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "bytes_sent",
                     (json_int_t)c->bytes_sent, "bytes_received", (json_int_t)c->bytes_received,
                     "probes", (json_int_t)c->probes, "probes_failed", (json_int_t)c->probes_failed,
                     "suspicions_raised", (json_int_t)c->suspicions_raised, "refutations",
                     (json_int_t)c->refutations, "deaths_declared", (json_int_t)c->deaths_declared,
                     "drops", (json_int_t)drops, "local_health", (json_int_t)gossip_health(h->core),
                     "send_failures", (json_int_t)h->send_failures);
}
