/*
 * deploy.c - deployments of long-running agents: the leader's controller,
 * every node's executor and the status/logs queries (deploy.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "agent_exec.h"
#include "agent_registry.h"
#include "bundle.h"
#include "deploy.h"
#include "deploy_plan.h"
#include "ledger/ledger.h"
#include "resources.h"
#include "sandbox/sandbox.h"

#define WANTS_MAX 256
#define ENTRIES_MAX 4096
#define SLOT_BITS 16
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define DEPLOY_RECENT_MAX 256
/* an assignment this recent counts against its member in the leader's view (the
 * executor's reservation reaches gossip with the next refresh) */
#define DEPLOY_VIEW_GRACE_MS (GOSSIP_HOST_REFRESH_MS + 1000)

/* ---- one replica run here ------------------------------------------------------- */

enum rep_state { REP_FETCHING = 1, REP_STARTING, REP_RUNNING };

struct replica {
    struct deploy_host *h;
    char name[DEPLOY_NAME_MAX + 1];
    uint32_t index;
    char agent[LEDGER_STR_CAP], version[LEDGER_STR_CAP];
    uint8_t hash[BUNDLE_HASH_BYTES];
    enum rep_state state;
    char why[AGENT_EXEC_ERR_MAX]; /* STARTING: what it waits for */
    bool seen;                    /* mark and sweep against the KV */
    bool fetching;
    char dir[4096];
    struct sbx_manifest m;
    bool have_manifest;
    const char **argv;
    struct node_grant grant;
    bool reserved;
    uint32_t reserve_refusals; /* in a row: at DEPLOY_RESERVE_GIVE_UP the replica goes back */
    struct sbx_run *run;
    uint64_t tag;       /* this replica's id in start tasks (a new replica gets a new one) */
    bool start_pending; /* a start is with the helper thread */
    int err_fd;
    ev_io out_io, err_io, pid_io;
    ev_timer timer; /* restart or retry */
    char outbuf[DEPLOY_LOG_LINE_MAX], errbuf[DEPLOY_LOG_LINE_MAX];
    size_t outlen, errlen;
    struct sbx_backoff bo;
    uint64_t since_ms;      /* wall clock: the state began */
    struct deploy_log *log; /* owned */
};

/* An API request waiting for members' answers. */
struct query {
    bool used;
    uint32_t gen;
    struct deploy_host *h;
    struct api_request *req;
    json_t *result;   /* owned */
    unsigned waiting; /* answers still expected */
    bool logs;
    ev_timer timer;
};

struct deploy_host {
    struct ev_loop *loop;
    struct mesh *mesh;
    struct gossip_host *gossip;
    struct raft_host *raft;
    struct agent_host *agents;
    const struct node_identity *id;
    struct deploy_host_config cfg;
    struct agent_registry *registry;
    struct nx_rng rng;
    ev_timer control_timer, exec_timer;
    unsigned inflight;       /* controller writes not yet answered */
    struct agent_exec *exec; /* one helper thread: sandbox starts */
    struct recent {          /* assignments made lately, charged to the view (gossip lags) */
        uint8_t node[NODE_PK_BYTES];
        struct place_needs needs;
        uint64_t at_ms; /* monotonic; 0: free */
    } recent[DEPLOY_RECENT_MAX];
    size_t recent_next;
    uint64_t started_ms; /* monotonic */
    uint64_t next_tag;
    struct replica *rep[DEPLOY_LOCAL_MAX];
    struct query q[DEPLOY_QUERIES_MAX];
    /* counters */
    uint64_t rounds, writes, write_failures, starts, exits, msgs_bad;
};

static void le64_put(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t le64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- the KV entries ---------------------------------------------------------------- */

struct entries {
    struct deploy_entry *v;
    size_t n;
};

static int collect_entry(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    struct entries *es = arg;
    if (es->n == ENTRIES_MAX)
        return 1;
    if (deploy_entry_parse(key, klen, val, vlen, &es->v[es->n]))
        es->n++;
    return 0;
}

/* Every assignment in the local KV copy; es->v malloc'd. */
static int entries_load(struct deploy_host *h, struct entries *es)
{
    es->n = 0;
    es->v = calloc(ENTRIES_MAX, sizeof *es->v);
    if (es->v == NULL)
        return NX_ERR_NOMEM;
    int rc = raft_host_kv_scan(h->raft, DEPLOY_KV_PREFIX, collect_entry, es);
    if (rc < 0) {
        free(es->v);
        es->v = NULL;
    }
    return rc < 0 ? rc : NX_OK;
}

static const struct deploy_entry *entry_find(const struct entries *es, const char *name, uint32_t r)
{
    for (size_t i = 0; i < es->n; i++)
        if (es->v[i].replica == r && strcmp(es->v[i].name, name) == 0)
            return &es->v[i];
    return NULL;
}

/* ---- the controller (Raft leader) ------------------------------------------------------ */

struct want_ext {
    struct deploy_want w;
    struct ledger_deployment d;
    char bundle_hash[BUNDLE_HASH_HEX_LEN + 1];
    char why[PLACE_REASON_MAX]; /* set: cannot be planned (stays as it is, pending why) */
};

struct wants {
    struct deploy_host *h;
    struct want_ext *v;
    size_t n;
};

static void want_resolve(struct deploy_host *h, struct want_ext *we)
{
    char spec[2 * LEDGER_STR_CAP + 2];
    snprintf(spec, sizeof spec, "%s@%s", we->d.agent, we->d.version);
    struct agent_version av;
    memset(&av, 0, sizeof av);
    if (agent_registry_resolve(h->registry, spec, &av) != NX_OK) {
        snprintf(we->why, sizeof we->why, "agent %.64s is not in this node's registry", spec);
        return;
    }
    nx_hex_encode(we->bundle_hash, av.rec.bundle_hash, BUNDLE_HASH_BYTES);
    struct sbx_manifest m;
    char err[256];
    if (sbx_manifest_parse((const char *)av.manifest, av.manifest_len, &m, err, sizeof err) != 0) {
        snprintf(we->why, sizeof we->why, "%.64s: %.90s", spec, err);
    } else {
        if (m.kind != SBX_KIND_LONG_RUNNING)
            snprintf(we->why, sizeof we->why,
                     "%.64s is %s: only long-running agents are deployed (run it instead)", spec,
                     sbx_kind_name(m.kind));
        we->w.needs.cpu_millicores = m.cpu_millicores;
        we->w.needs.mem_bytes = m.memory_bytes;
        we->w.needs.gpus = m.gpus;
        sbx_manifest_free(&m);
    }
    agent_version_clear(&av);
}

static int collect_want(void *arg, const struct ledger_deployment *d)
{
    struct wants *ws = arg;
    if (ws->n == WANTS_MAX || strlen(d->name) > DEPLOY_NAME_MAX)
        return ws->n == WANTS_MAX ? 1 : 0;
    struct want_ext *we = &ws->v[ws->n++];
    memset(we, 0, sizeof *we);
    we->d = *d;
    snprintf(we->w.name, sizeof we->w.name, "%s", d->name);
    we->w.replicas = d->replicas > DEPLOY_REPLICAS_MAX ? DEPLOY_REPLICAS_MAX : d->replicas;
    want_resolve(ws->h, we);
    return 0;
}

static const struct want_ext *want_find(const struct wants *ws, const char *name)
{
    for (size_t i = 0; i < ws->n; i++)
        if (strcmp(ws->v[i].w.name, name) == 0)
            return &ws->v[i];
    return NULL;
}

static void write_done(void *arg, unsigned status, json_t *answer)
{
    (void)answer;
    struct deploy_host *h = arg;
    if (status != 200)
        h->write_failures++;
    if (h->inflight > 0)
        h->inflight--;
}

/* A put of val, or with val NULL a delete. */
static void kv_write(struct deploy_host *h, const char *name, uint32_t r,
                     const struct deploy_entry *val)
{
    char key[DEPLOY_KEY_MAX];
    char *txt = val ? deploy_entry_encode(val) : NULL;
    if ((val && txt == NULL) || deploy_key_format(key, name, r) != NX_OK) {
        free(txt);
        return;
    }
    h->inflight++;
    h->writes++;
    raft_host_submit_kv(h->raft, key, txt, txt ? strlen(txt) : 0, write_done, h);
    free(txt);
}

/* The entry of replica r of we: on node, or pending (node NULL) for why. */
static void entry_of(struct deploy_entry *e, const struct want_ext *we, uint32_t r,
                     const uint8_t *node, const char *why)
{
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", we->w.name);
    e->replica = r;
    e->assigned = node != NULL;
    if (node)
        memcpy(e->node, node, NODE_PK_BYTES);
    snprintf(e->agent, sizeof e->agent, "%s", we->d.agent);
    snprintf(e->version, sizeof e->version, "%s", we->d.version);
    snprintf(e->bundle_hash, sizeof e->bundle_hash, "%s", we->bundle_hash);
    snprintf(e->why, sizeof e->why, "%s", why ? why : "");
    e->since_ms = nx_clock_wall_ms();
}

/* Pending writes (and rewrites) only when what they say changed: no churn. */
static void write_pending(struct deploy_host *h, const struct entries *es,
                          const struct want_ext *we, uint32_t r, const char *why, unsigned *budget)
{
    const struct deploy_entry *e = entry_find(es, we->w.name, r);
    if (*budget == 0 || (e && !e->assigned && strcmp(e->why, why) == 0))
        return;
    struct deploy_entry v;
    entry_of(&v, we, r, NULL, why);
    (*budget)--;
    kv_write(h, we->w.name, r, &v);
}

/* The members with their state's age in the monotonic clock deploy_plan gets. */
static int members_view(struct deploy_host *h, struct gossip_member_info **out, size_t *n,
                        uint64_t now)
{
    int rc = agent_host_members(h->agents, out, n);
    if (rc != NX_OK)
        return rc;
    for (size_t i = 0; i < *n; i++) {
        enum gossip_state st;
        uint64_t for_ms = 0;
        if (gossip_host_member_state(h->gossip, (*out)[i].id, &st, &for_ms) == NX_OK)
            (*out)[i].state_change_ms = for_ms < now ? now - for_ms : 0;
        else
            (*out)[i].state_change_ms = now;
    }
    for (size_t k = 0; k < DEPLOY_RECENT_MAX; k++) {
        const struct recent *ra = &h->recent[k];
        if (ra->at_ms == 0 || now - ra->at_ms > DEPLOY_VIEW_GRACE_MS)
            continue;
        for (size_t i = 0; i < *n; i++)
            if (memcmp((*out)[i].id, ra->node, NODE_PK_BYTES) == 0)
                place_charge(&(*out)[i], &ra->needs);
    }
    return NX_OK;
}

/* Entries outside the plan: unwanted pending ones, and new versions on kept homes. */
static void tidy(struct deploy_host *h, const struct wants *ws, const struct entries *es,
                 const struct deploy_change *ch, size_t n_ch, unsigned *budget)
{
    for (size_t i = 0; i<es->n && * budget> 0; i++) {
        const struct deploy_entry *e = &es->v[i];
        const struct want_ext *we = want_find(ws, e->name);
        if (!e->assigned && (we == NULL || e->replica >= we->w.replicas)) {
            (*budget)--;
            kv_write(h, e->name, e->replica, NULL);
            continue;
        }
        if (!e->assigned || we == NULL || we->why[0] || e->replica >= we->w.replicas ||
            strcmp(e->bundle_hash, we->bundle_hash) == 0)
            continue;
        bool planned = false;
        for (size_t k = 0; k < n_ch; k++)
            if (ch[k].replica == e->replica && strcmp(ch[k].name, e->name) == 0)
                planned = true;
        if (planned)
            continue;
        struct deploy_entry v;
        entry_of(&v, we, e->replica, e->node, NULL);
        (*budget)--;
        kv_write(h, e->name, e->replica, &v);
    }
}

static void apply_changes(struct deploy_host *h, const struct wants *ws, const struct entries *es,
                          const struct deploy_change *ch, size_t n, unsigned *budget)
{
    for (size_t i = 0; i<n && * budget> 0; i++) {
        const struct deploy_change *c = &ch[i];
        const struct want_ext *we = want_find(ws, c->name);
        if (c->kind == DEPLOY_UNASSIGN || we == NULL) {
            (*budget)--;
            kv_write(h, c->name, c->replica, NULL);
        } else if (c->kind == DEPLOY_PENDING) {
            write_pending(h, es, we, c->replica, c->why, budget);
        } else {
            char hex[NODE_ID_HEX_LEN + 1];
            nx_hex_encode(hex, c->node, NODE_PK_BYTES);
            NX_INFO("deploy_assign", "deployment=%s replica=%u node=%.16s moved=%d", c->name,
                    c->replica, hex, c->moved);
            struct deploy_entry v;
            entry_of(&v, we, c->replica, c->node, NULL);
            (*budget)--;
            kv_write(h, c->name, c->replica, &v);
            struct recent *ra = &h->recent[h->recent_next];
            h->recent_next = (h->recent_next + 1) % DEPLOY_RECENT_MAX;
            memcpy(ra->node, c->node, NODE_PK_BYTES);
            ra->needs = we->w.needs;
            ra->at_ms = nx_clock_mono_ms();
        }
    }
}

static void control_round(struct deploy_host *h)
{
    struct wants ws = {h, calloc(WANTS_MAX, sizeof(struct want_ext)), 0};
    struct entries es = {NULL, 0};
    struct gossip_member_info *members = NULL;
    size_t n_members = 0;
    struct deploy_want *wants = calloc(WANTS_MAX, sizeof *wants);
    struct deploy_assignment *cur = calloc(ENTRIES_MAX, sizeof *cur);
    struct deploy_change *ch = calloc(DEPLOY_ROUND_MAX, sizeof *ch);
    uint64_t now = nx_clock_mono_ms();
    if (ws.v == NULL || wants == NULL || cur == NULL || ch == NULL ||
        ledger_deployments_foreach(raft_host_ledger(h->raft), collect_want, &ws) < 0 ||
        entries_load(h, &es) != NX_OK || members_view(h, &members, &n_members, now) != NX_OK)
        goto out;
    h->rounds++;
    unsigned budget = DEPLOY_ROUND_MAX;
    size_t n_wants = 0, n_cur = 0, n_ch = 0;
    for (size_t i = 0; i < ws.n; i++) {
        const struct want_ext *we = &ws.v[i];
        if (we->why[0]) { /* cannot be planned: leave homes alone, say why for the rest */
            for (uint32_t r = 0; r < we->w.replicas; r++) {
                const struct deploy_entry *e = entry_find(&es, we->w.name, r);
                if (e == NULL || !e->assigned)
                    write_pending(h, &es, we, r, we->why, &budget);
            }
            continue;
        }
        wants[n_wants++] = we->w;
    }
    for (size_t i = 0; i < es.n; i++) {
        const struct want_ext *we = want_find(&ws, es.v[i].name);
        if (!es.v[i].assigned || (we && we->why[0]))
            continue;
        snprintf(cur[n_cur].name, sizeof cur[n_cur].name, "%s", es.v[i].name);
        cur[n_cur].replica = es.v[i].replica;
        memcpy(cur[n_cur].node, es.v[i].node, NODE_PK_BYTES);
        n_cur++;
    }
    struct deploy_plan_input in = {wants,   n_wants,   cur, n_cur,
                                   members, n_members, now, h->cfg.grace_ms};
    int rc =
        deploy_plan(&in, &h->rng, ch, budget < DEPLOY_ROUND_MAX ? budget : DEPLOY_ROUND_MAX, &n_ch);
    if (rc != NX_OK && rc != NX_ERR_FULL)
        NX_WARN("deploy_plan_failed", "error=%s", nx_strerror(rc));
    apply_changes(h, &ws, &es, ch, n_ch, &budget);
    tidy(h, &ws, &es, ch, n_ch, &budget);
out:
    free(ws.v);
    free(es.v);
    free(members);
    free(wants);
    free(cur);
    free(ch);
}

static void on_control(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct deploy_host *h = w->data;
    /* A node that just started may not have heard of every member yet, and an
     * unknown member counts as gone: give gossip the grace period first. */
    if (nx_clock_mono_ms() - h->started_ms < h->cfg.grace_ms)
        return;
    /* one round at a time: the next waits for every write of the last to be answered */
    if (h->inflight == 0 && raft_host_gossip_role(h->raft) == GOSSIP_RAFT_LEADER)
        control_round(h);
}

/* ---- the executor: replicas assigned here ------------------------------------------------- */

static void log_push(struct replica *r, const char *text, size_t len)
{
    deploy_log_push(r->log, nx_clock_wall_ms(), text, len);
}

static void log_printf(struct replica *r, const char *fmt, ...) NX_PRINTF(2, 3);
static void log_printf(struct replica *r, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_push(r, buf, strlen(buf));
}

static void stdout_line(void *arg, const char *line, size_t len)
{
    char text[DEPLOY_LOG_LINE_MAX];
    log_push(arg, text, deploy_log_text(line, len, text, sizeof text));
}

static void stderr_line(void *arg, const char *line, size_t len)
{
    char buf[DEPLOY_LOG_LINE_MAX + 16];
    int n = snprintf(buf, sizeof buf, "stderr: %.*s", (int)len, line);
    log_push(arg, buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* Reads what fd holds into buf, one log line per full line; false at EOF or error. */
static bool drain(struct replica *r, int fd, char *buf, size_t *len, bool is_stderr)
{
    for (;;) {
        ssize_t n = read(fd, buf + *len, DEPLOY_LOG_LINE_MAX - 1 - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n <= 0)
            return false;
        *len += (size_t)n;
        deploy_lines_split(buf, len, DEPLOY_LOG_LINE_MAX, is_stderr ? stderr_line : stdout_line, r);
    }
}

static void on_out(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct replica *r = w->data;
    if (!drain(r, w->fd, r->outbuf, &r->outlen, false))
        ev_io_stop(loop, w);
}

static void on_err(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct replica *r = w->data;
    if (!drain(r, w->fd, r->errbuf, &r->errlen, true))
        ev_io_stop(loop, w);
}

static void set_state(struct replica *r, enum rep_state s, const char *why)
{
    if (r->state != s)
        r->since_ms = nx_clock_wall_ms();
    r->state = s;
    snprintf(r->why, sizeof r->why, "%s", why ? why : "");
}

/* Ends the current process (killed when still running) and frees its watchers. */
static void run_end(struct replica *r, struct sbx_usage *u)
{
    struct ev_loop *loop = r->h->loop;
    ev_io_stop(loop, &r->out_io);
    ev_io_stop(loop, &r->err_io);
    ev_io_stop(loop, &r->pid_io);
    if (r->run) {
        if (!sbx_run_exited(r->run))
            sbx_run_kill(r->run);
        if (sbx_run_wait(r->run, u) != 0)
            NX_WARN("deploy_wait_failed", "deployment=%s replica=%u", r->name, r->index);
        sbx_run_free(r->run);
        r->run = NULL;
    }
    if (r->err_fd >= 0) {
        drain(r, r->err_fd, r->errbuf, &r->errlen, true);
        close(r->err_fd);
        r->err_fd = -1;
    }
    r->outlen = r->errlen = 0;
}

static void try_start(struct replica *r);

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    try_start(w->data);
}

static void retry_in(struct replica *r, uint64_t ms)
{
    ev_timer_stop(r->h->loop, &r->timer);
    ev_timer_set(&r->timer, (double)ms / 1000.0, 0.);
    ev_timer_start(r->h->loop, &r->timer);
}

static void on_exit_watch(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct replica *r = w->data;
    drain(r, sbx_run_stdout_fd(r->run), r->outbuf, &r->outlen, false);
    struct sbx_usage u;
    memset(&u, 0, sizeof u);
    run_end(r, &u);
    r->h->exits++;
    uint64_t delay = sbx_backoff_on_exit(&r->bo, nx_clock_mono_ms());
    char why[160];
    if (u.term_signal)
        snprintf(why, sizeof why, "killed by signal %d; restart in %" PRIu64 " ms", u.term_signal,
                 delay);
    else
        snprintf(why, sizeof why, "exited with code %d; restart in %" PRIu64 " ms", u.exit_code,
                 delay);
    log_printf(r, "[node] %s", why);
    NX_INFO("deploy_replica_exit", "deployment=%s replica=%u %s", r->name, r->index, why);
    set_state(r, REP_STARTING, why);
    retry_in(r, delay);
}

static int load_manifest(struct replica *r)
{
    if (r->have_manifest)
        return NX_OK;
    char err[SBX_ERR_MAX];
    if (sbx_manifest_load(r->dir, &r->m, err, sizeof err) != 0) {
        set_state(r, REP_STARTING, err);
        return NX_ERR_INVAL;
    }
    r->have_manifest = true;
    return NX_OK;
}

/*
 * The leader placed the replica here with a view that was stale (gossip lags
 * what admitted runs hold), and this node cannot hold it: after a few tries
 * the replica goes back to the leader as pending, and the next round places
 * it with a fresher view, elsewhere if this node is still full.
 */
static void give_back(struct replica *r)
{
    struct deploy_entry e;
    memset(&e, 0, sizeof e);
    snprintf(e.name, sizeof e.name, "%s", r->name);
    e.replica = r->index;
    snprintf(e.agent, sizeof e.agent, "%s", r->agent);
    snprintf(e.version, sizeof e.version, "%s", r->version);
    nx_hex_encode(e.bundle_hash, r->hash, BUNDLE_HASH_BYTES);
    snprintf(e.why, sizeof e.why, "node %.16s could not hold it; placing it again",
             r->h->id->id_hex);
    e.since_ms = nx_clock_wall_ms();
    NX_WARN("deploy_replica_given_back", "deployment=%s replica=%u refusals=%u", r->name, r->index,
            r->reserve_refusals);
    r->reserve_refusals = 0;
    kv_write(r->h, r->name, r->index, &e);
}

static int reserve(struct replica *r)
{
    if (r->reserved)
        return NX_OK;
    struct node_request req = {r->m.cpu_millicores, r->m.memory_bytes, r->m.gpus, 0};
    if (agent_host_reserve(r->h->agents, &req, &r->grant) != NX_OK) {
        set_state(r, REP_STARTING, "waiting for this node's resources (held by other runs)");
        if (++r->reserve_refusals >= DEPLOY_RESERVE_GIVE_UP)
            give_back(r);
        return NX_ERR_LIMIT;
    }
    r->reserve_refusals = 0;
    r->reserved = true;
    return NX_OK;
}

/* Hands the sandbox start (about 10 ms of clone, mounts, cgroup) to the helper thread. */
static int spawn(struct replica *r)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        set_state(r, REP_STARTING, "cannot make a pipe");
        return NX_ERR_IO;
    }
    struct agent_task *t = agent_task_new(AGENT_TASK_START);
    if (t == NULL) {
        close(fds[0]);
        close(fds[1]);
        set_state(r, REP_STARTING, "out of memory");
        return NX_ERR_NOMEM;
    }
    snprintf(t->bundle_dir, sizeof t->bundle_dir, "%s", r->dir);
    t->stderr_fd = fds[1];
    t->tag = r->tag;
    if (agent_exec_submit(r->h->exec, t) != NX_OK) {
        agent_task_free(t); /* closes fds[1] */
        close(fds[0]);
        set_state(r, REP_STARTING, "this node's start queue is full");
        return NX_ERR_FULL;
    }
    r->err_fd = fds[0];
    r->start_pending = true;
    set_state(r, REP_STARTING, "starting the sandbox");
    return NX_OK;
}

static struct replica *replica_by_tag(struct deploy_host *h, uint64_t tag)
{
    for (size_t i = 0; i < DEPLOY_LOCAL_MAX; i++)
        if (h->rep[i] && h->rep[i]->tag == tag)
            return h->rep[i];
    return NULL;
}

/* A start came back from the helper thread: supervise it, or drop it when nobody waits. */
static void on_started(void *ctx, struct agent_task *t)
{
    struct deploy_host *h = ctx;
    struct replica *r = replica_by_tag(h, t->tag);
    if (r == NULL || !r->start_pending) { /* stopped meanwhile: the run is killed */
        agent_task_free(t);
        return;
    }
    r->start_pending = false;
    if (t->rc != 0) {
        close(r->err_fd);
        r->err_fd = -1;
        set_state(r, REP_STARTING, t->err);
        log_printf(r, "[node] start failed: %.400s", t->err);
        agent_task_free(t);
        retry_in(r, DEPLOY_FETCH_RETRY_MS);
        return;
    }
    r->run = t->run;
    t->run = NULL;
    double start_ms = (double)(t->finished_us - t->started_us) / 1000.0;
    agent_task_free(t);
    int out = sbx_run_stdout_fd(r->run);
    int fl = fcntl(out, F_GETFL);
    if (fl >= 0 && fcntl(out, F_SETFL, fl | O_NONBLOCK) != 0)
        NX_WARN("deploy_nonblock_failed", "deployment=%s", r->name);
    struct ev_loop *loop = h->loop;
    ev_io_init(&r->out_io, on_out, out, EV_READ);
    ev_io_init(&r->err_io, on_err, r->err_fd, EV_READ);
    ev_io_init(&r->pid_io, on_exit_watch, sbx_run_pidfd(r->run), EV_READ);
    r->out_io.data = r->err_io.data = r->pid_io.data = r;
    ev_io_start(loop, &r->out_io);
    ev_io_start(loop, &r->err_io);
    ev_io_start(loop, &r->pid_io);
    sbx_backoff_on_start(&r->bo, nx_clock_mono_ms());
    h->starts++;
    set_state(r, REP_RUNNING, NULL);
    log_printf(r, "[node] started (pid %d, sandbox start %.1f ms on a helper thread)",
               sbx_run_pid(r->run), start_ms);
}

static void try_start(struct replica *r)
{
    if (r->run || r->fetching || r->start_pending)
        return;
    char err[256];
    int rc = agent_host_bundle_dir(r->h->agents, r->hash, r->dir, sizeof r->dir, err, sizeof err);
    if (rc == NX_ERR_NOT_FOUND) {
        set_state(r, REP_FETCHING, "fetching the bundle from a member");
        return; /* the executor's tick starts the fetch */
    }
    if (rc != NX_OK) {
        set_state(r, REP_STARTING, err);
        retry_in(r, DEPLOY_FETCH_RETRY_MS);
        return;
    }
    if (load_manifest(r) != NX_OK || reserve(r) != NX_OK || spawn(r) != NX_OK)
        retry_in(r, DEPLOY_FETCH_RETRY_MS);
}

static void replica_free(struct replica *r)
{
    struct deploy_host *h = r->h;
    struct sbx_usage u;
    ev_timer_stop(h->loop, &r->timer);
    bool was_running = r->run != NULL;
    run_end(r, &u);
    sbx_backoff_on_stop(&r->bo);
    if (r->reserved)
        agent_host_release(h->agents, &r->grant);
    if (r->have_manifest)
        sbx_manifest_free(&r->m);
    free(r->log);
    NX_INFO("deploy_replica_stop", "deployment=%s replica=%u was_running=%d", r->name, r->index,
            was_running);
    free(r);
}

static struct replica *replica_new(struct deploy_host *h, const struct deploy_entry *e,
                                   const uint8_t hash[BUNDLE_HASH_BYTES])
{
    size_t slot = DEPLOY_LOCAL_MAX;
    for (size_t i = 0; i < DEPLOY_LOCAL_MAX && slot == DEPLOY_LOCAL_MAX; i++)
        if (h->rep[i] == NULL)
            slot = i;
    struct replica *r = slot < DEPLOY_LOCAL_MAX ? calloc(1, sizeof *r) : NULL;
    if (r && (r->log = calloc(1, sizeof *r->log)) == NULL) {
        free(r);
        r = NULL;
    }
    if (r == NULL)
        return NULL;
    r->h = h;
    snprintf(r->name, sizeof r->name, "%s", e->name);
    r->index = e->replica;
    snprintf(r->agent, sizeof r->agent, "%s", e->agent);
    snprintf(r->version, sizeof r->version, "%s", e->version);
    memcpy(r->hash, hash, BUNDLE_HASH_BYTES);
    r->err_fd = -1;
    r->tag = ++h->next_tag;
    sbx_backoff_init(&r->bo, DEPLOY_BACKOFF_BASE_MS, DEPLOY_BACKOFF_MAX_MS,
                     DEPLOY_BACKOFF_STABLE_MS);
    ev_timer_init(&r->timer, on_timer, 0., 0.);
    r->timer.data = r;
    set_state(r, REP_STARTING, "assigned");
    h->rep[slot] = r;
    NX_INFO("deploy_replica_assigned", "deployment=%s replica=%u agent=%s@%s", r->name, r->index,
            r->agent, r->version);
    return r;
}

static void on_fetched(void *arg, const uint8_t *hash, int rc, const char *why)
{
    struct deploy_host *h = arg;
    for (size_t i = 0; i < DEPLOY_LOCAL_MAX; i++) {
        struct replica *r = h->rep[i];
        if (r == NULL || !r->fetching || memcmp(r->hash, hash, BUNDLE_HASH_BYTES) != 0)
            continue;
        r->fetching = false;
        if (rc == NX_OK) {
            try_start(r);
        } else {
            set_state(r, REP_FETCHING, why);
            retry_in(r, DEPLOY_FETCH_RETRY_MS);
        }
    }
}

/* One fetch per bundle hash at a time; the replicas that need it wait on it. */
static void start_fetch(struct deploy_host *h, struct replica *r)
{
    if (ev_is_active(&r->timer))
        return; /* a retry is due later */
    for (size_t i = 0; i < DEPLOY_LOCAL_MAX; i++)
        if (h->rep[i] && h->rep[i]->fetching &&
            memcmp(h->rep[i]->hash, r->hash, BUNDLE_HASH_BYTES) == 0) {
            r->fetching = true;
            return;
        }
    if (agent_host_fetch(h->agents, r->hash, on_fetched, h) == NX_OK)
        r->fetching = true;
}

static struct replica *replica_find(struct deploy_host *h, const char *name, uint32_t index)
{
    for (size_t i = 0; i < DEPLOY_LOCAL_MAX; i++)
        if (h->rep[i] && h->rep[i]->index == index && strcmp(h->rep[i]->name, name) == 0)
            return h->rep[i];
    return NULL;
}

static void replica_drop(struct deploy_host *h, struct replica *r)
{
    for (size_t i = 0; i < DEPLOY_LOCAL_MAX; i++)
        if (h->rep[i] == r)
            h->rep[i] = NULL;
    replica_free(r);
}

static void exec_entry(struct deploy_host *h, const struct deploy_entry *e)
{
    uint8_t hash[BUNDLE_HASH_BYTES];
    if (strlen(e->bundle_hash) != BUNDLE_HASH_HEX_LEN ||
        nx_hex_decode(hash, sizeof hash, e->bundle_hash) != NX_OK) {
        h->msgs_bad++;
        return;
    }
    struct replica *r = replica_find(h, e->name, e->replica);
    if (r && memcmp(r->hash, hash, sizeof hash) != 0) { /* a new version: replace it */
        replica_drop(h, r);
        r = NULL;
    }
    if (r == NULL) {
        r = replica_new(h, e, hash);
        if (r == NULL) {
            NX_WARN("deploy_replica_refused", "deployment=%s replica=%u why=\"too many here\"",
                    e->name, e->replica);
            return;
        }
        try_start(r);
    }
    r->seen = true;
    if (r->state == REP_FETCHING && !r->fetching)
        start_fetch(h, r);
}

static void on_exec(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct deploy_host *h = w->data;
    struct entries es;
    if (entries_load(h, &es) != NX_OK)
        return;
    for (size_t i = 0; i < DEPLOY_LOCAL_MAX; i++)
        if (h->rep[i])
            h->rep[i]->seen = false;
    for (size_t i = 0; i < es.n; i++)
        if (es.v[i].assigned && memcmp(es.v[i].node, h->id->pk, NODE_PK_BYTES) == 0)
            exec_entry(h, &es.v[i]);
    for (size_t i = 0; i < DEPLOY_LOCAL_MAX; i++)
        if (h->rep[i] && !h->rep[i]->seen)
            replica_drop(h, h->rep[i]);
    free(es.v);
}

/* ---- answers about replicas run here ----------------------------------------------------- */

static const char *state_name(enum rep_state s)
{
    return s == REP_RUNNING ? "running" : s == REP_FETCHING ? "fetching" : "starting";
}

static json_t *local_status(struct deploy_host *h)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < DEPLOY_LOCAL_MAX; i++) {
        struct replica *r = h->rep[i];
        if (r == NULL)
            continue;
        json_t *o =
            json_pack("{s:s,s:I,s:s,s:I,s:I,s:I}", "name", r->name, "replica", (json_int_t)r->index,
                      "state", state_name(r->state), "restarts", (json_int_t)r->bo.restarts,
                      "since_ms", (json_int_t)r->since_ms, "log_lines", (json_int_t)r->log->total);
        if (r->why[0] && r->state != REP_RUNNING)
            json_object_set_new(o, "why", json_string(r->why));
        json_array_append_new(arr, o);
    }
    return json_pack("{s:o,s:s}", "replicas", arr, "node", h->id->id_hex);
}

static json_t *local_logs(struct deploy_host *h, const char *name, uint32_t index, size_t max)
{
    struct replica *r = replica_find(h, name, index);
    if (r == NULL)
        return json_pack("{s:b,s:s}", "found", 0, "node", h->id->id_hex);
    json_t *arr = json_array();
    size_t skip = r->log->count > max ? r->log->count - max : 0;
    for (size_t k = skip; k < r->log->count; k++) {
        const struct deploy_log_line *l = deploy_log_get(r->log, k);
        json_array_append_new(
            arr, json_pack("{s:I,s:s}", "ts_ms", (json_int_t)l->ts_ms, "line", l->text));
    }
    return json_pack("{s:b,s:s,s:o,s:I,s:s}", "found", 1, "node", h->id->id_hex, "lines", arr,
                     "total", (json_int_t)r->log->total, "state", state_name(r->state));
}

static json_t *answer_query(struct deploy_host *h, json_t *q)
{
    const char *what = json_string_value(json_object_get(q, "what"));
    if (what && strcmp(what, "status") == 0)
        return local_status(h);
    const char *name = json_string_value(json_object_get(q, "name"));
    if (what && strcmp(what, "logs") == 0 && name)
        return local_logs(h, name, (uint32_t)json_integer_value(json_object_get(q, "replica")),
                          (size_t)json_integer_value(json_object_get(q, "lines")));
    return NULL;
}

static int send_json(struct deploy_host *h, const uint8_t to[NODE_PK_BYTES], uint32_t type,
                     uint64_t rid, json_t *body)
{
    char *txt = json_dumps(body, JSON_COMPACT);
    size_t n = txt ? strlen(txt) : 0;
    uint8_t *buf = txt ? malloc(8 + n) : NULL;
    int rc = NX_ERR_NOMEM;
    if (buf) {
        le64_put(buf, rid);
        memcpy(buf + 8, txt, n);
        rc = mesh_send(h->mesh, to, NULL, type, buf, 8 + n);
    }
    free(buf);
    free(txt);
    return rc;
}

static void on_query_msg(void *ctx, const uint8_t from[NODE_PK_BYTES], const uint8_t *body,
                         size_t len)
{
    struct deploy_host *h = ctx;
    json_t *q = len > 8 ? json_loadb((const char *)body + 8, len - 8, 0, NULL) : NULL;
    json_t *a = q ? answer_query(h, q) : NULL;
    if (a == NULL) {
        h->msgs_bad++;
    } else if (send_json(h, from, DEPLOY_MSG_QUERY_REPLY, le64_get(body), a) != NX_OK) {
        NX_WARN("deploy_reply_lost", "what=query");
    }
    json_decref(a);
    json_decref(q);
}

/* ---- API: queries that wait on members ----------------------------------------------------- */

static void query_finish(struct query *q)
{
    struct deploy_host *h = q->h;
    ev_timer_stop(h->loop, &q->timer);
    if (q->logs) {
        if (json_is_true(json_object_get(q->result, "found")))
            api_reply_json(q->req, 200, json_incref(q->result));
        else if (json_object_get(q->result, "found"))
            api_reply_error(q->req, 404, "the replica's node does not run it (yet)");
        else
            api_reply_error(q->req, 504, "the replica's node did not answer in time");
    } else {
        api_reply_json(q->req, 200, json_incref(q->result));
    }
    json_decref(q->result);
    q->result = NULL;
    q->used = false;
}

static void on_query_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    query_finish(w->data);
}

/* Merges one node's status into the ps answer: its replicas' states. */
static void merge_status(json_t *result, const char *node_hex, json_t *answer)
{
    size_t i, k;
    json_t *d, *inst, *rep;
    json_array_foreach(json_object_get(result, "deployments"), i, d)
    {
        json_array_foreach(json_object_get(d, "instances"), k, inst)
        {
            const char *n = json_string_value(json_object_get(inst, "node"));
            if (n == NULL || strcmp(n, node_hex) != 0)
                continue;
            size_t j;
            json_array_foreach(json_object_get(answer, "replicas"), j, rep)
            {
                if (json_integer_value(json_object_get(rep, "replica")) !=
                        json_integer_value(json_object_get(inst, "replica")) ||
                    !json_equal(json_object_get(rep, "name"), json_object_get(d, "name")))
                    continue;
                const char *keys[] = {"state", "why", "restarts", "since_ms"};
                json_object_del(inst, "why");
                for (size_t x = 0; x < NX_ARRAY_LEN(keys); x++)
                    if (json_object_get(rep, keys[x]))
                        json_object_set(inst, keys[x], json_object_get(rep, keys[x]));
            }
        }
    }
}

static void on_query_reply(void *ctx, const uint8_t from[NODE_PK_BYTES], const uint8_t *body,
                           size_t len)
{
    struct deploy_host *h = ctx;
    if (len <= 8) {
        h->msgs_bad++;
        return;
    }
    uint64_t rid = le64_get(body);
    size_t slot = rid & SLOT_MASK;
    struct query *q = slot < DEPLOY_QUERIES_MAX ? &h->q[slot] : NULL;
    json_t *a = json_loadb((const char *)body + 8, len - 8, 0, NULL);
    if (q == NULL || !q->used || q->gen != (uint32_t)(rid >> SLOT_BITS) || a == NULL) {
        h->msgs_bad++;
        json_decref(a);
        return;
    }
    char hex[NODE_ID_HEX_LEN + 1];
    nx_hex_encode(hex, from, NODE_PK_BYTES);
    if (q->logs) {
        json_decref(q->result);
        q->result = json_incref(a);
    } else {
        merge_status(q->result, hex, a);
    }
    json_decref(a);
    if (q->waiting > 0 && --q->waiting == 0)
        query_finish(q);
}

static struct query *query_new(struct deploy_host *h, struct api_request *req, json_t *result,
                               bool logs)
{
    for (size_t i = 0; i < DEPLOY_QUERIES_MAX; i++) {
        struct query *q = &h->q[i];
        if (q->used)
            continue;
        q->used = true;
        q->gen++;
        q->h = h;
        q->req = req;
        q->result = result;
        q->logs = logs;
        q->waiting = 0;
        ev_timer_init(&q->timer, on_query_timeout, DEPLOY_QUERY_TIMEOUT_MS / 1000.0, 0.);
        q->timer.data = q;
        return q;
    }
    return NULL;
}

static uint64_t query_rid(const struct deploy_host *h, const struct query *q)
{
    return ((uint64_t)q->gen << SLOT_BITS) | (uint64_t)(q - h->q);
}

/* Gossip says the member is dead or left (or never heard of it): not worth asking. */
static bool member_gone(struct deploy_host *h, const uint8_t pk[NODE_PK_BYTES])
{
    enum gossip_state st;
    uint64_t for_ms;
    if (memcmp(pk, h->id->pk, NODE_PK_BYTES) == 0)
        return false;
    return gossip_host_member_state(h->gossip, pk, &st, &for_ms) != NX_OK || st == GOSSIP_DEAD ||
           st == GOSSIP_LEFT;
}

/* The ps answer from the registry and the KV, each instance "unknown" until its node says. */
static json_t *ps_skeleton(struct deploy_host *h, const struct entries *es)
{
    struct wants ws = {h, calloc(WANTS_MAX, sizeof(struct want_ext)), 0};
    json_t *deps = json_array();
    if (ws.v && ledger_deployments_foreach(raft_host_ledger(h->raft), collect_want, &ws) < 0)
        ws.n = 0;
    for (size_t i = 0; i < ws.n; i++) {
        const struct want_ext *we = &ws.v[i];
        json_t *inst = json_array();
        for (uint32_t r = 0; r < we->w.replicas; r++) {
            const struct deploy_entry *e = entry_find(es, we->w.name, r);
            json_t *o = json_pack("{s:I}", "replica", (json_int_t)r);
            if (e && e->assigned) {
                char hex[NODE_ID_HEX_LEN + 1];
                nx_hex_encode(hex, e->node, NODE_PK_BYTES);
                json_object_set_new(o, "node", json_string(hex));
                json_object_set_new(o, "state", json_string("unknown"));
                json_object_set_new(o, "why",
                                    json_string(member_gone(h, e->node)
                                                    ? "its node is dead (gossip): the replica "
                                                      "moves once the grace period is over"
                                                    : "its node did not answer"));
                json_object_set_new(o, "since_ms", json_integer((json_int_t)e->since_ms));
            } else {
                json_object_set_new(o, "state", json_string("pending"));
                json_object_set_new(o, "why",
                                    json_string(e            ? e->why
                                                : we->why[0] ? we->why
                                                             : "not placed yet"));
                if (e)
                    json_object_set_new(o, "since_ms", json_integer((json_int_t)e->since_ms));
            }
            json_array_append_new(inst, o);
        }
        json_array_append_new(deps, json_pack("{s:s,s:s,s:s,s:s,s:I,s:o}", "name", we->d.name,
                                              "tenant", we->d.tenant, "agent", we->d.agent,
                                              "version", we->d.version, "replicas",
                                              (json_int_t)we->d.replicas, "instances", inst));
    }
    free(ws.v);
    return json_pack("{s:o}", "deployments", deps);
}

static enum api_result api_ps(struct deploy_host *h, struct api_request *req)
{
    struct entries es;
    if (entries_load(h, &es) != NX_OK) {
        api_reply_error(req, 500, "cannot read the assignments");
        return API_DONE;
    }
    json_t *result = ps_skeleton(h, &es);
    json_t *ours = local_status(h); /* ours, at once */
    merge_status(result, h->id->id_hex, ours);
    json_decref(ours);
    struct query *q = query_new(h, req, result, false);
    if (q == NULL) {
        free(es.v);
        api_reply_json(req, 200, result);
        return API_DONE;
    }
    /* ask every other node that holds a replica, once */
    for (size_t i = 0; i < es.n; i++) {
        const struct deploy_entry *e = &es.v[i];
        bool asked = !e->assigned || memcmp(e->node, h->id->pk, NODE_PK_BYTES) == 0 ||
                     member_gone(h, e->node);
        for (size_t k = 0; k < i && !asked; k++)
            asked = es.v[k].assigned && memcmp(es.v[k].node, e->node, NODE_PK_BYTES) == 0;
        if (asked)
            continue;
        json_t *body = json_pack("{s:s}", "what", "status");
        if (send_json(h, e->node, DEPLOY_MSG_QUERY, query_rid(h, q), body) == NX_OK)
            q->waiting++;
        json_decref(body);
    }
    free(es.v);
    if (q->waiting == 0) {
        query_finish(q);
        return API_DONE;
    }
    ev_timer_start(h->loop, &q->timer);
    return API_PENDING;
}

static enum api_result api_logs(struct deploy_host *h, struct api_request *req, const char *name)
{
    const char *rs = api_req_query(req, "replica"), *ls = api_req_query(req, "lines");
    long replica = rs ? strtol(rs, NULL, 10) : 0;
    long lines = ls ? strtol(ls, NULL, 10) : 100;
    if (replica < 0 || replica >= DEPLOY_REPLICAS_MAX || lines <= 0 || lines > DEPLOY_LOG_LINES) {
        api_reply_error(req, 400, "replica must be 0..%d and lines 1..%d", DEPLOY_REPLICAS_MAX - 1,
                        DEPLOY_LOG_LINES);
        return API_DONE;
    }
    struct entries es;
    if (entries_load(h, &es) != NX_OK) {
        api_reply_error(req, 500, "cannot read the assignments");
        return API_DONE;
    }
    const struct deploy_entry *e = entry_find(&es, name, (uint32_t)replica);
    if (e == NULL || !e->assigned) {
        api_reply_error(req, 404, "deployment %s has no replica %ld placed on a node", name,
                        replica);
        free(es.v);
        return API_DONE;
    }
    uint8_t node[NODE_PK_BYTES];
    memcpy(node, e->node, NODE_PK_BYTES);
    free(es.v);
    json_t *body = json_pack("{s:s,s:s,s:I,s:I}", "what", "logs", "name", name, "replica",
                             (json_int_t)replica, "lines", (json_int_t)lines);
    if (memcmp(node, h->id->pk, NODE_PK_BYTES) == 0) {
        json_t *a = answer_query(h, body);
        json_decref(body);
        if (json_is_true(json_object_get(a, "found")))
            api_reply_json(req, 200, a);
        else {
            json_decref(a);
            api_reply_error(req, 404, "this node does not run the replica (yet)");
        }
        return API_DONE;
    }
    struct query *q = query_new(h, req, json_object(), true);
    if (q == NULL) {
        json_decref(body);
        api_reply_error(req, 503, "too many queries waiting");
        return API_DONE;
    }
    if (send_json(h, node, DEPLOY_MSG_QUERY, query_rid(h, q), body) == NX_OK)
        q->waiting = 1;
    json_decref(body);
    if (q->waiting == 0) {
        query_finish(q);
        return API_DONE;
    }
    ev_timer_start(h->loop, &q->timer);
    return API_PENDING;
}

enum api_result deploy_host_api(void *ctx, struct api_request *req)
{
    struct deploy_host *h = ctx;
    const char *tail = api_req_tail(req);
    if (tail == NULL || tail[0] == '\0')
        return api_ps(h, req);
    const char *slash = strchr(tail, '/');
    if (slash && strcmp(slash, "/logs") == 0 && slash > tail &&
        (size_t)(slash - tail) <= DEPLOY_NAME_MAX) {
        char name[DEPLOY_NAME_MAX + 1];
        snprintf(name, sizeof name, "%.*s", (int)(slash - tail), tail);
        return api_logs(h, req, name);
    }
    api_reply_error(req, 404, "no such deployment resource: %s", tail);
    return API_DONE;
}

/* ---- life cycle ---------------------------------------------------------------------- */

int deploy_host_start(struct deploy_host **out, struct ev_loop *loop, struct mesh *mesh,
                      struct gossip_host *gossip, struct raft_host *raft, struct agent_host *agents,
                      const struct node_identity *id, const struct deploy_host_config *cfg,
                      char *err, size_t cap)
{
    struct deploy_host *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NX_ERR_NOMEM;
    h->loop = loop;
    h->mesh = mesh;
    h->gossip = gossip;
    h->raft = raft;
    h->agents = agents;
    h->id = id;
    h->cfg = *cfg;
    if (h->cfg.grace_ms == 0)
        h->cfg.grace_ms = DEPLOY_GRACE_DEFAULT_MS;
    h->started_ms = nx_clock_mono_ms();
    nx_rng_seed(&h->rng, randombytes_random() | (uint64_t)randombytes_random() << 32);
    int rc = agent_registry_open(&h->registry, raft_host_ledger(raft));
    if (rc == NX_OK && (rc = agent_exec_start(&h->exec, loop, 1, 0, on_started, h)) != NX_OK)
        snprintf(err, cap, "deployments: cannot start the helper thread: %s", nx_strerror(rc));
    if (rc == NX_OK &&
        ((rc = mesh_set_handler(mesh, DEPLOY_MSG_QUERY, on_query_msg, h)) != NX_OK ||
         (rc = mesh_set_handler(mesh, DEPLOY_MSG_QUERY_REPLY, on_query_reply, h)) != NX_OK))
        snprintf(err, cap, "deployments: cannot register envelope handlers: %s", nx_strerror(rc));
    if (rc != NX_OK) {
        deploy_host_stop(h);
        return rc;
    }
    ev_timer_init(&h->control_timer, on_control, DEPLOY_CONTROL_MS / 1000.0,
                  DEPLOY_CONTROL_MS / 1000.0);
    ev_timer_init(&h->exec_timer, on_exec, DEPLOY_EXEC_MS / 1000.0, DEPLOY_EXEC_MS / 1000.0);
    h->control_timer.data = h->exec_timer.data = h;
    ev_timer_start(loop, &h->control_timer);
    ev_timer_start(loop, &h->exec_timer);
    *out = h;
    return NX_OK;
}

void deploy_host_stop(struct deploy_host *h)
{
    if (h == NULL)
        return;
    ev_timer_stop(h->loop, &h->control_timer);
    ev_timer_stop(h->loop, &h->exec_timer);
    for (size_t i = 0; i < DEPLOY_LOCAL_MAX; i++)
        if (h->rep[i])
            replica_drop(h, h->rep[i]);
    agent_exec_stop(h->exec); /* a start still in flight is killed with its task */
    for (size_t i = 0; i < DEPLOY_QUERIES_MAX; i++)
        if (h->q[i].used) {
            ev_timer_stop(h->loop, &h->q[i].timer);
            json_decref(h->q[i].result);
        }
    agent_registry_close(h->registry);
    free(h);
}
