/*
 * daemon.c - `nexus node`: the long-running process.
 *
 * Start-up order: configuration (defaults, then --config file, then flags,
 * then validation), data directory, identity (node.key), operator token,
 * cluster id, then the libev loop with the mesh (transport + envelopes) and
 * the HTTP API. The effective configuration is logged once at start.
 *
 * The loop order (raft_host.c, docs/raft-node.md): once per loop iteration,
 * for each Raft ready batch, persist (one synced write batch), then send, then
 * apply, then advance. One loop thread owns all state; there are no locks.
 */
#include <errno.h>
#include <ftw.h>
#include <ev.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_host.h"
#include "deploy.h"
#include "api.h"
#include "commands.h"
#include "gossip_host.h"
#include "join.h"
#include "mesh.h"
#include "node.h"
#include "raft_host.h"
#include "session.h"
#include "resources.h"

#define DEFAULT_DATA_DIR "/var/lib/nexus"

static const struct cli_opt node_opts[] = {
    {"data-dir", "DIR", DEFAULT_DATA_DIR, "NEXUS_DATA_DIR", "where the node keeps its key and data",
     false},
    {"config", "FILE", NULL, NULL, "JSON file whose keys are these option names", false},
    {"bind", "HOST:PORT", "127.0.0.1:7400", NULL, "address for node-to-node traffic", false},
    {"api", "HOST:PORT", "127.0.0.1:7401", NULL, "address of the HTTP API", false},
    {"bootstrap", NULL, NULL, NULL, "start a new cluster with this node as its first member",
     false},
    {"join", "HOST:PORT", NULL, NULL, "join the cluster of the member at this address", false},
    {"token", "TOKEN", NULL, NULL, "join token (with --join; 'nexus token create' makes one)",
     false},
    {"join-timeout", "DURATION", "30s", NULL,
     "with --join: give up after this long without an answer", false},
    {"dev", NULL, NULL, NULL,
     "single-node development mode: temporary data directory, prints the API address and token",
     false},
    {"peer", "ID@HOST:PORT", NULL, NULL,
     "a known member: pinged, a gossip seed and, with --bootstrap, an initial Raft voter", true},
    {"trust-file", "FILE", "DATA_DIR/trusted.keys", NULL,
     "file of trusted node ids (hex public keys), one a line", false},
    {"ping-interval-ms", "MS", "1000", NULL, "how often to ping each peer", false},
    {"gossip-interval-ms", "MS", "1000", NULL, "gossip protocol period (probe interval)", false},
    {"advertise", "HOST:PORT", "the --bind address", NULL,
     "address other members reach this node at", false},
    {"label", "KEY=VALUE", NULL, NULL, "a label advertised to the mesh", true},
    {"gpus", "N", "0", NULL, "GPUs to advertise; 0 detects them through NVML", false},
    {"gpu-mem-mb", "MB", "0", NULL, "memory per advertised GPU", false},
    {"cpu-millicores", "N", "0", NULL,
     "CPU to advertise and admit runs against, all free; 0 detects it (load included)", false},
    {"mem-mb", "MB", "0", NULL, "memory to advertise and admit runs against; 0 detects it", false},
    {"log-level", "LEVEL", "info", "NEXUS_LOG_LEVEL", "debug, info, warn or error", false},
    {"raft-tick-ms", "MS", "50", NULL,
     "Raft tick; heartbeat is 1 tick, election timeout 6..12 ticks", false},
    {"raft-snapshot-every", "N", "10000", NULL, "applied entries between Raft snapshots", false},
    {"voters", "N", "0", NULL,
     "Raft voters the leader keeps; 0: 3, or 5 once the cluster has 5 members", false},
    {"voter-grace-ms", "MS", "30000", NULL,
     "a voter gossip declared dead this long is replaced by a caught-up learner", false},
    {"deploy-grace-ms", "MS", "10000", NULL,
     "a deployment's replicas move off a member gossip declared dead this long", false},
};

const struct cli_cmd cmd_node_spec = {"node", "", "run a node (the daemon)", node_opts,
                                      NX_ARRAY_LEN(node_opts)};

struct node_config {
    char data_dir[PATH_MAX];
    char trust_file[PATH_MAX];
    const char *bind;
    const char *api;
    const char *join;
    const char *join_token;
    struct join_token token; /* parsed join_token */
    uint32_t join_timeout_ms;
    const char *peers;
    const char *labels;
    const char *advertise;
    bool bootstrap;
    bool dev;
    uint32_t ping_interval_ms;
    uint32_t gossip_interval_ms;
    int gpus;
    uint64_t gpu_mem_bytes;
    uint32_t cpu_millicores; /* 0: detected */
    uint64_t mem_bytes;      /* 0: detected */
    uint32_t raft_tick_ms;
    uint64_t raft_snapshot_every;
    uint32_t voter_target;
    uint32_t voter_grace_ms;
    uint64_t deploy_grace_ms;
};

struct node_daemon {
    struct ev_loop *loop;
    struct node_config cfg;
    struct node_identity id;
    char *operator_token;
    uint8_t cluster_id[NODE_CLUSTER_ID_BYTES];
    char cluster_hex[2 * NODE_CLUSTER_ID_BYTES + 1];
    uint64_t start_mono_ms;
    struct api_server *api;
    struct mesh *mesh;
    struct gossip_host *gossip;
    struct raft_host *raft;
    struct agent_host *agents;
    struct session_host *sessions;
    struct deploy_host *deploys;
    struct join_server *join;
    char *peers; /* owned: --peer entries plus the members a join taught us */
    ev_signal sig_int, sig_term;
    ev_timer leave_timer;
    ev_timer role_timer;
};

/* ---- configuration ------------------------------------------------------ */

static bool config_build(struct node_config *cfg, const struct cli_values *vals)
{
    const struct cli_cmd *spec = &cmd_node_spec;
    memset(cfg, 0, sizeof *cfg);
    const char *level = cli_get(spec, vals, "log-level");
    int lv = nx_log_level_parse(level);
    if (lv < 0) {
        cli_error("node: --log-level must be debug, info, warn or error, not '%s'", level);
        return false;
    }
    nx_log_set_level((enum nx_log_level)lv);
    cfg->bind = cli_get(spec, vals, "bind");
    cfg->api = cli_get(spec, vals, "api");
    cfg->join = cli_get(spec, vals, "join");
    cfg->join_token = cli_get(spec, vals, "token");
    cfg->peers = cli_get(spec, vals, "peer");
    cfg->bootstrap = cli_flag(spec, vals, "bootstrap");
    cfg->dev = cli_flag(spec, vals, "dev");
    unsigned long long interval = 1000;
    if (!cli_get_u64(spec, vals, "ping-interval-ms", 3600000, &interval))
        return false;
    if (interval < 10) {
        cli_error("node: --ping-interval-ms must be at least 10");
        return false;
    }
    cfg->ping_interval_ms = (uint32_t)interval;
    unsigned long long gossip_ms = 1000, gpus = 0, gpu_mem_mb = 0;
    if (!cli_get_u64(spec, vals, "gossip-interval-ms", 600000, &gossip_ms) ||
        !cli_get_u64(spec, vals, "gpus", 16, &gpus) ||
        !cli_get_u64(spec, vals, "gpu-mem-mb", 1u << 24, &gpu_mem_mb))
        return false;
    if (gossip_ms < 20) {
        cli_error("node: --gossip-interval-ms must be at least 20");
        return false;
    }
    cfg->gossip_interval_ms = (uint32_t)gossip_ms;
    unsigned long long tick_ms = 50, snap_every = 10000;
    if (!cli_get_u64(spec, vals, "raft-tick-ms", 10000, &tick_ms) ||
        !cli_get_u64(spec, vals, "raft-snapshot-every", 1u << 30, &snap_every))
        return false;
    if (tick_ms < 5) {
        cli_error("node: --raft-tick-ms must be at least 5");
        return false;
    }
    cfg->raft_tick_ms = (uint32_t)tick_ms;
    cfg->raft_snapshot_every = snap_every;
    unsigned long long voters = 0, grace_ms = 30000;
    if (!cli_get_u64(spec, vals, "voters", 15, &voters) ||
        !cli_get_u64(spec, vals, "voter-grace-ms", 86400000, &grace_ms))
        return false;
    cfg->voter_target = (uint32_t)voters;
    cfg->voter_grace_ms = (uint32_t)grace_ms;
    unsigned long long deploy_grace_ms = DEPLOY_GRACE_DEFAULT_MS;
    if (!cli_get_u64(spec, vals, "deploy-grace-ms", 86400000, &deploy_grace_ms))
        return false;
    cfg->deploy_grace_ms = deploy_grace_ms ? deploy_grace_ms : 1;
    cfg->gpus = (int)gpus;
    cfg->gpu_mem_bytes = gpu_mem_mb << 20;
    unsigned long long cpu_mc = 0, mem_mb = 0;
    if (!cli_get_u64(spec, vals, "cpu-millicores", NODE_CPU_MILLICORES_MAX, &cpu_mc) ||
        !cli_get_u64(spec, vals, "mem-mb", 1ull << 30, &mem_mb))
        return false;
    cfg->cpu_millicores = (uint32_t)cpu_mc;
    cfg->mem_bytes = (uint64_t)mem_mb << 20;
    cfg->labels = cli_get(spec, vals, "label");
    cfg->advertise = cli_get(spec, vals, "advertise");
    if (strcmp(cfg->advertise, "the --bind address") == 0)
        cfg->advertise = cfg->bind;

    char host[NODE_ADDR_MAX];
    uint16_t port;
    if (node_addr_split(cfg->bind, host, sizeof host, &port) != NX_OK) {
        cli_error("node: --bind must be HOST:PORT, not '%s'", cfg->bind);
        return false;
    }
    if (node_addr_split(cfg->advertise, host, sizeof host, &port) != NX_OK || port == 0) {
        cli_error("node: --advertise must be HOST:PORT, not '%s'", cfg->advertise);
        return false;
    }
    if (node_addr_split(cfg->api, host, sizeof host, &port) != NX_OK) {
        cli_error("node: --api must be HOST:PORT, not '%s'", cfg->api);
        return false;
    }
    if (cfg->bootstrap && cfg->join) {
        cli_error("node: --bootstrap and --join exclude each other");
        return false;
    }
    if (cfg->join && !cfg->join_token) {
        cli_error("node: --join needs --token (create one with 'nexus token create' on a member)");
        return false;
    }
    if (cfg->join) {
        char err[256];
        if (node_addr_split(cfg->join, host, sizeof host, &port) != NX_OK || port == 0) {
            cli_error("node: --join must be HOST:PORT (a member's --bind address), not '%s'",
                      cfg->join);
            return false;
        }
        unsigned long long timeout_ms = JOIN_TIMEOUT_MS;
        if (!cli_get_duration_ms(spec, vals, "join-timeout", 3600000, &timeout_ms))
            return false;
        cfg->join_timeout_ms = (uint32_t)timeout_ms;
        if (join_token_parse(cfg->join_token, &cfg->token, err, sizeof err) != NX_OK) {
            cli_error("node: --token: %s", err);
            return false;
        }
    }

    if (cfg->dev) {
        snprintf(cfg->data_dir, sizeof cfg->data_dir, "/tmp/nexus-dev-XXXXXX");
        if (mkdtemp(cfg->data_dir) == NULL) {
            cli_error("node: cannot create a temporary data directory: %s", strerror(errno));
            return false;
        }
        cfg->bootstrap = true;
    } else {
        snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", cli_get(spec, vals, "data-dir"));
    }
    const char *trust = cli_get(spec, vals, "trust-file");
    int n;
    if (strcmp(trust, "DATA_DIR/trusted.keys") == 0)
        n = snprintf(cfg->trust_file, sizeof cfg->trust_file, "%.*s/%s", PATH_MAX - 32,
                     cfg->data_dir, NODE_TRUST_FILE);
    else
        n = snprintf(cfg->trust_file, sizeof cfg->trust_file, "%s", trust);
    if (n < 0 || (size_t)n >= sizeof cfg->trust_file) {
        cli_error("node: trust file path too long");
        return false;
    }
    return true;
}

static void config_log(const struct node_config *cfg)
{
    NX_INFO("config",
            "data_dir=%s bind=%s api=%s bootstrap=%d dev=%d trust_file=%s "
            "ping_interval_ms=%u raft_tick_ms=%u raft_snapshot_every=%llu log_level=%d",
            cfg->data_dir, cfg->bind, cfg->api, cfg->bootstrap, cfg->dev, cfg->trust_file,
            cfg->ping_interval_ms, cfg->raft_tick_ms, (unsigned long long)cfg->raft_snapshot_every,
            (int)nx_log_get_level());
}

/* ---- API handlers --------------------------------------------------------- */

static enum api_result handle_health(void *ctx, struct api_request *req)
{
    (void)ctx;
    api_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
    return API_DONE;
}

static enum api_result handle_status(void *ctx, struct api_request *req)
{
    struct node_daemon *d = ctx;
    uint64_t now = nx_clock_mono_ms();
    size_t connected = 0;
    json_t *peers = mesh_peers_json(d->mesh, now, &connected);
    api_reply_json(
        req, 200,
        json_pack("{s:s,s:s,s:s,s:I,s:s,s:I,s:o,s:o,s:o,s:o,s:o,s:o}", "node_id", d->id.id_hex,
                  "address", d->cfg.advertise, "cluster_id", d->cluster_hex, "uptime_s",
                  (json_int_t)((now - d->start_mono_ms) / 1000), "version", NODE_VERSION,
                  "peer_count", (json_int_t)connected, "peers", peers, "counters",
                  mesh_counters_json(d->mesh), "raft", raft_host_status_json(d->raft), "join",
                  join_serve_counters_json(d->join), "agents", agent_host_counters_json(d->agents),
                  "sessions", session_host_counters_json(d->sessions)));
    return API_DONE;
}

static enum api_result handle_members(void *ctx, struct api_request *req)
{
    struct node_daemon *d = ctx;
    api_reply_json(req, 200,
                   json_pack("{s:o,s:o}", "members", gossip_host_members_json(d->gossip), "gossip",
                             gossip_host_counters_json(d->gossip)));
    return API_DONE;
}

static void on_leave_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    NX_INFO("left", "%s", "");
    ev_break(loop, EVBREAK_ALL);
}

/* POST /v1/leave: tell the mesh we leave, answer, then stop once the news is out. */
static enum api_result handle_leave(void *ctx, struct api_request *req)
{
    struct node_daemon *d = ctx;
    if (ev_is_active(&d->leave_timer)) {
        api_reply_json(req, 202, json_pack("{s:s}", "status", "leaving"));
        return API_DONE;
    }
    gossip_host_leave(d->gossip);
    double grace_s = 3.0 * d->cfg.gossip_interval_ms / 1000.0;
    ev_timer_init(&d->leave_timer, on_leave_timer, grace_s < 0.5 ? 0.5 : grace_s, 0.);
    d->leave_timer.data = d;
    ev_timer_start(d->loop, &d->leave_timer);
    api_reply_json(req, 202, json_pack("{s:s,s:s}", "status", "leaving", "node_id", d->id.id_hex));
    return API_DONE;
}

/* Raft routes: the handlers take the raft host, not the daemon. */
static enum api_result handle_kv(void *ctx, struct api_request *req)
{
    return raft_host_api_kv(((struct node_daemon *)ctx)->raft, req);
}

static enum api_result handle_member_add(void *ctx, struct api_request *req)
{
    return raft_host_api_member_add(((struct node_daemon *)ctx)->raft, req);
}

static enum api_result handle_member_remove(void *ctx, struct api_request *req)
{
    return raft_host_api_member_remove(((struct node_daemon *)ctx)->raft, req);
}

static enum api_result handle_ledger_command(void *ctx, struct api_request *req)
{
    return raft_host_api_ledger_command(((struct node_daemon *)ctx)->raft, req);
}

static enum api_result handle_ledger_read(void *ctx, struct api_request *req)
{
    return raft_host_api_ledger_read(((struct node_daemon *)ctx)->raft, req);
}

static enum api_result handle_agents(void *ctx, struct api_request *req)
{
    return agent_host_api_agents(((struct node_daemon *)ctx)->agents, req);
}

static enum api_result handle_run(void *ctx, struct api_request *req)
{
    return agent_host_api_run(((struct node_daemon *)ctx)->agents, req);
}

static enum api_result handle_sessions(void *ctx, struct api_request *req)
{
    return session_host_api(((struct node_daemon *)ctx)->sessions, req);
}

static enum api_result handle_bundle(void *ctx, struct api_request *req)
{
    return agent_host_api_bundle(((struct node_daemon *)ctx)->agents, req);
}

static enum api_result handle_deployments(void *ctx, struct api_request *req)
{
    return deploy_host_api(((struct node_daemon *)ctx)->deploys, req);
}

static const struct api_route routes[] = {
    {"GET", "/v1/health", true, handle_health},
    {"GET", "/v1/status", false, handle_status},
    {"GET", "/v1/members", false, handle_members},
    {"POST", "/v1/leave", false, handle_leave},
    {"GET", "/v1/kv/*", false, handle_kv},
    {"PUT", "/v1/kv/*", false, handle_kv},
    {"DELETE", "/v1/kv/*", false, handle_kv},
    {"POST", "/v1/ledger/commands", false, handle_ledger_command},
    {"GET", "/v1/ledger/*", false, handle_ledger_read},
    {"POST", "/v1/raft/members", false, handle_member_add},
    {"DELETE", "/v1/raft/members/*", false, handle_member_remove},
    {"GET", "/v1/agents", false, handle_agents},
    {"GET", "/v1/agents/*", false, handle_agents},
    {"POST", "/v1/sessions", false, handle_sessions},
    {"POST", "/v1/sessions/*", false, handle_sessions},
    {"GET", "/v1/sessions/*", false, handle_sessions},
    {"DELETE", "/v1/sessions/*", false, handle_sessions},
    {"POST", "/v1/runs", false, handle_run},
    {"PUT", "/v1/bundles/*", false, handle_bundle},
    {"GET", "/v1/deployments", false, handle_deployments},
    {"GET", "/v1/deployments/*", false, handle_deployments},
};

/* ---- life cycle ----------------------------------------------------------- */

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    NX_INFO("stopping", "signal=%d", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

static int load_state(struct node_daemon *d)
{
    char err[512];
    bool created;
    if (node_data_dir_prepare(d->cfg.data_dir, err, sizeof err) != NX_OK ||
        node_identity_load_or_create(&d->id, d->cfg.data_dir, &created, err, sizeof err) != NX_OK) {
        cli_error("%s", err);
        return -1;
    }
    char short_id[17];
    snprintf(short_id, sizeof short_id, "%.16s", d->id.id_hex);
    nx_log_set_node(short_id);
    printf("node id: %s\n", d->id.id_hex);
    fflush(stdout);
    NX_INFO("identity", "id=%s key=%s", d->id.id_hex, created ? "created" : "loaded");
    if (node_operator_token_load_or_create(&d->operator_token, d->cfg.data_dir, err, sizeof err) !=
        NX_OK) {
        cli_error("%s", err);
        return -1;
    }
    int rc =
        node_cluster_id_load(d->cluster_id, d->cfg.data_dir, d->cfg.bootstrap, err, sizeof err);
    if (rc == NX_ERR_NOT_FOUND && d->cfg.join) { /* the token names the cluster */
        memcpy(d->cluster_id, d->cfg.token.cluster_id, NODE_CLUSTER_ID_BYTES);
        rc = node_cluster_id_store(d->cluster_id, d->cfg.data_dir, err, sizeof err);
    } else if (rc == NX_OK && d->cfg.join &&
               memcmp(d->cluster_id, d->cfg.token.cluster_id, NODE_CLUSTER_ID_BYTES) != 0) {
        cli_error("node: %s belongs to another cluster than the token names; use a new "
                  "--data-dir to join this one",
                  d->cfg.data_dir);
        return -1;
    }
    if (rc == NX_ERR_NOT_FOUND) {
        cli_error("node: %s belongs to no cluster yet: start with --bootstrap to create one, "
                  "or --join HOST:PORT --token T to join one",
                  d->cfg.data_dir);
        return -1;
    }
    if (rc != NX_OK) {
        cli_error("%s", err);
        return -1;
    }
    nx_hex_encode(d->cluster_hex, d->cluster_id, NODE_CLUSTER_ID_BYTES);
    return 0;
}

/* Keeps the Raft role in our gossip metadata current (nexus members shows it). */
static void on_role_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct node_daemon *d = w->data;
    gossip_host_set_raft_role(d->gossip, raft_host_gossip_role(d->raft));
}

/* Joined before (DATA_DIR/join.seed): trusts those members and adds them to the peers. */
static int peers_from_seed(struct node_daemon *d, bool *joined)
{
    char *seeds = NULL;
    int rc = join_seed_read(d->cfg.data_dir, &seeds);
    *joined = rc == NX_OK;
    if (rc == NX_ERR_NOT_FOUND)
        return NX_OK;
    if (rc != NX_OK) {
        cli_error("node: cannot read %s/%s", d->cfg.data_dir, JOIN_SEED_FILE);
        return rc;
    }
    for (char *line = seeds; *line;) {
        uint8_t pk[NODE_PK_BYTES];
        char hex[NODE_ID_HEX_LEN + 1];
        snprintf(hex, sizeof hex, "%s", line);
        if (nx_hex_decode(pk, sizeof pk, hex) == NX_OK && mesh_trust_add(d->mesh, pk) != NX_OK)
            NX_WARN("join_seed_untrusted", "id=%.16s", hex);
        char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : line + strlen(line);
    }
    d->peers = seeds;
    return NX_OK;
}

/* Appends the --peer entries to d->peers (the join's members come first). */
static int peers_add_flags(struct node_daemon *d)
{
    if (d->cfg.peers == NULL || d->cfg.peers[0] == '\0')
        return NX_OK;
    if (d->peers == NULL)
        return (d->peers = strdup(d->cfg.peers)) ? NX_OK : NX_ERR_NOMEM;
    char *both = malloc(strlen(d->peers) + strlen(d->cfg.peers) + 2);
    if (both == NULL)
        return NX_ERR_NOMEM;
    sprintf(both, "%s\n%s", d->peers, d->cfg.peers);
    free(d->peers);
    d->peers = both;
    return NX_OK;
}

/*
 * The mesh first; then, for a node that joins, the join handshake (join.h),
 * which teaches it its peers before gossip and Raft start.
 */
static int start_mesh_and_join(struct node_daemon *d)
{
    char err[512], member[NODE_ID_HEX_LEN + 1 + NODE_ADDR_MAX];
    const char *mesh_peers = d->cfg.peers;
    if (d->cfg.join) {
        char hex[NODE_ID_HEX_LEN + 1];
        nx_hex_encode(hex, d->cfg.token.member, NODE_PK_BYTES);
        snprintf(member, sizeof member, "%s@%s", hex, d->cfg.join);
        mesh_peers = member;
    }
    struct mesh_config mc = {d->cfg.bind, mesh_peers, d->cfg.trust_file, d->cfg.ping_interval_ms};
    if (mesh_start(&d->mesh, d->loop, &d->id, d->cluster_id, &mc, err, sizeof err) != NX_OK) {
        cli_error("%s", err);
        return -1;
    }
    bool joined;
    if (peers_from_seed(d, &joined) != NX_OK)
        return -1;
    if (d->cfg.join && joined) {
        NX_INFO("join_ignored", "reason=\"joined before (%s)\"", JOIN_SEED_FILE);
    } else if (d->cfg.join) {
        printf("joining through %s ...\n", d->cfg.join);
        fflush(stdout);
        if (join_run(d->loop, d->mesh, &d->id, &d->cfg.token, d->cfg.join, d->cfg.advertise,
                     d->cfg.data_dir, d->cfg.join_timeout_ms, &d->peers, err,
                     sizeof err) != NX_OK) {
            cli_error("%s", err);
            return -1;
        }
        printf("joined: admitted by the cluster's registry\n");
        fflush(stdout);
    }
    if (peers_add_flags(d) != NX_OK) {
        cli_error("node: out of memory");
        return -1;
    }
    return 0;
}

static int start_services(struct node_daemon *d)
{
    char err[512];
    if (start_mesh_and_join(d) != 0)
        return -1;
    struct gossip_host_config gc = {d->cfg.advertise,      d->peers,
                                    d->cfg.labels,         d->cfg.gossip_interval_ms,
                                    d->cfg.gpus,           d->cfg.gpu_mem_bytes,
                                    d->cfg.cpu_millicores, d->cfg.mem_bytes};
    if (gossip_host_start(&d->gossip, d->loop, d->mesh, &d->id, &gc, err, sizeof err) != NX_OK) {
        cli_error("%s", err);
        return -1;
    }
    struct raft_host_config rc = {
        d->cfg.data_dir,      d->cfg.bootstrap,           d->peers,
        d->cfg.raft_tick_ms,  d->cfg.raft_snapshot_every, d->cfg.voter_target,
        d->cfg.voter_grace_ms};
    err[0] = '\0';
    if (raft_host_start(&d->raft, d->loop, d->mesh, d->gossip, &d->id, &rc, err, sizeof err) !=
        NX_OK) {
        cli_error("%s", err);
        return -1;
    }
    if (join_serve(&d->join, d->mesh, d->raft, d->gossip, &d->id, d->cfg.advertise) != NX_OK) {
        cli_error("node: out of memory");
        return -1;
    }
    struct agent_host_config ac = {
        d->cfg.data_dir,        d->cluster_id,         d->cfg.labels,    d->cfg.gpus,
        d->cfg.gpu_mem_bytes,   d->cfg.cpu_millicores, d->cfg.mem_bytes, 0,
        AGENT_HOST_POOL_DEFAULT};
    if (agent_host_start(&d->agents, d->loop, d->mesh, d->gossip, d->raft, &d->id, &ac, err,
                         sizeof err) != NX_OK) {
        cli_error("%s", err);
        return -1;
    }
    if (session_host_start(&d->sessions, d->agents, d->raft) != NX_OK) {
        cli_error("node: out of memory");
        return -1;
    }
    struct deploy_host_config dc = {d->cfg.deploy_grace_ms};
    if (deploy_host_start(&d->deploys, d->loop, d->mesh, d->gossip, d->raft, d->agents, &d->id, &dc,
                          err, sizeof err) != NX_OK) {
        cli_error("%s", err);
        return -1;
    }
    ev_timer_init(&d->role_timer, on_role_timer, 0.2, 0.5);
    d->role_timer.data = d;
    ev_timer_start(d->loop, &d->role_timer);
    if (api_server_start(&d->api, d->loop, d->cfg.api, d->operator_token, routes,
                         NX_ARRAY_LEN(routes), d, err, sizeof err) != NX_OK) {
        cli_error("%s", err);
        return -1;
    }
    NX_INFO("started", "cluster=%s bind=%s api=%s", d->cluster_hex, d->cfg.bind, d->cfg.api);
    if (d->cfg.dev) {
        printf("dev mode: data directory %s (removed at exit)\n", d->cfg.data_dir);
        printf("API:   http://%s\n", d->cfg.api);
        printf("token: %s\n", d->operator_token);
        printf("try:   nexus status --api %s --token %s\n", d->cfg.api, d->operator_token);
        fflush(stdout);
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

/* --dev data lives only as long as the process: nothing of it is meant to last. */
static void remove_dev_data(const struct node_config *cfg)
{
    if (cfg->dev && nftw(cfg->data_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        NX_WARN("dev_cleanup_failed", "data_dir=%s error=\"%s\"", cfg->data_dir, strerror(errno));
}

static void daemon_close(struct node_daemon *d)
{
    if (d->loop)
        ev_timer_stop(d->loop, &d->role_timer);
    api_server_stop(d->api);
    deploy_host_stop(d->deploys);
    agent_host_stop(d->agents);
    raft_host_stop(d->raft); /* no callback into the join server after this */
    session_host_stop(d->sessions);
    join_serve_stop(d->join);
    gossip_host_stop(d->gossip);
    mesh_stop(d->mesh);
    node_secret_free(d->operator_token);
    node_identity_free(&d->id);
    free(d->peers);
    if (d->loop)
        ev_loop_destroy(d->loop);
    remove_dev_data(&d->cfg);
}

int cmd_node(int argc, char **argv)
{
    struct cli_values vals;
    int rc = cli_parse(&cmd_node_spec, argc, argv, &vals);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? 0 : 2;
    struct node_daemon d = {0};
    int exit_code = 2;
    const char *config_file = cli_get(&cmd_node_spec, &vals, "config");
    if (argc > vals.first_positional) {
        cli_error("node: unexpected argument '%s'", argv[vals.first_positional]);
        goto out;
    }
    if (config_file && !cli_apply_config_file(&cmd_node_spec, &vals, config_file))
        goto out;
    if (!config_build(&d.cfg, &vals))
        goto out;
    exit_code = 1;
    signal(SIGPIPE, SIG_IGN);
    d.start_mono_ms = nx_clock_mono_ms();
    if (load_state(&d) != 0)
        goto out_close;
    config_log(&d.cfg);
    d.loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (d.loop == NULL) {
        cli_error("node: cannot create the event loop");
        goto out_close;
    }
    if (start_services(&d) != 0)
        goto out_close;
    ev_signal_init(&d.sig_int, on_signal, SIGINT);
    ev_signal_init(&d.sig_term, on_signal, SIGTERM);
    ev_signal_start(d.loop, &d.sig_int);
    ev_signal_start(d.loop, &d.sig_term);
    ev_run(d.loop, 0);
    exit_code = raft_host_failed(d.raft) ? 1 : 0;
    NX_INFO("stopped", "%s", "");
out_close:
    daemon_close(&d);
out:
    cli_values_free(&vals);
    return exit_code;
}
