/*
 * cmd_deploy.c - `nexus agent deploy|stop|ps|logs`: deployments of
 * long-running agents (docs/agents.md "Deployments").
 *
 * deploy and stop sign LEDGER_CMD_DEPLOY_PUT / DEPLOY_DELETE HERE with the
 * operator key or --key FILE (a tenant owner's, or one granted deploy.write),
 * like `agent publish`; the leader's controller places the replicas. ps and
 * logs read GET /v1/deployments[/NAME/logs] of the node asked.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "client.h"
#include "commands.h"
#include "deploy_plan.h"
#include "ledger/ledger.h"
#include "ledger_host.h"

#define DEPLOY_CLI_MAX_ARGS 64
#define DEPLOY_CLI_ATTEMPTS 5
#define DEPLOY_CLI_RETRY_MS 300
#define DEPLOY_CLI_REGISTRY_ATTEMPTS 7 /* about 2 s for a version published a moment ago */

static const struct cli_opt deploy_opts[] = {
    CLI_CLIENT_OPTS,
    {"replicas", "N", "1", NULL, "deploy: how many replicas run (1..64)", false},
    {"name", "DEPLOYMENT", NULL, NULL, "deploy: the deployment's name (default: the agent's)",
     false},
    {"key", "FILE", NULL, NULL,
     "deploy, stop: the signer's key file (a tenant owner's or one granted deploy.write; "
     "default: the operator key)",
     false},
    {"operator-key", "FILE", NULL, NULL,
     "deploy, stop: operator key (default: DATA_DIR/operator.key)", false},
    {"tenant", "NAME", NULL, NULL, "deploy: the deployment's tenant (default: the agent's)", false},
    {"replica", "R", "0", NULL, "logs: which replica (0-based)", false},
    {"lines", "N", "100", NULL, "logs: how many recent lines (at most 256)", false},
};

#define SPEC(name, args, summary)                                                                  \
    {                                                                                              \
        "agent " name, args, summary, deploy_opts, NX_ARRAY_LEN(deploy_opts)                       \
    }

const struct cli_cmd cmd_agent_deploy_spec =
    SPEC("deploy", "NAME[@VERSION]",
         "run a long-running agent as N supervised replicas, placed and moved by the mesh");
const struct cli_cmd cmd_agent_stop_spec =
    SPEC("stop", "DEPLOYMENT", "remove a deployment: its replicas stop everywhere");
const struct cli_cmd cmd_agent_ps_spec =
    SPEC("ps", "", "every deployment and each replica's node, state, restarts and age");
const struct cli_cmd cmd_agent_logs_spec =
    SPEC("logs", "DEPLOYMENT", "the recent log lines of one replica, from the node that runs it");

struct dctx {
    const struct cli_cmd *spec;
    struct cli_values vals;
    struct client c;
    char *pos[DEPLOY_CLI_MAX_ARGS];
    int n_pos;
};

static const char *opt(struct dctx *x, const char *name)
{
    return cli_get(x->spec, &x->vals, name);
}

static int parse(struct dctx *x, const struct cli_cmd *spec, int argc, char **argv)
{
    x->spec = spec;
    return cli_parse_anywhere(spec, argc, argv, &x->vals, x->pos, DEPLOY_CLI_MAX_ARGS, &x->n_pos);
}

static void print_json(json_t *o)
{
    json_dumpf(o, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
    putchar('\n');
}

static json_t *get(struct dctx *x, const char *path)
{
    json_t *reply = NULL;
    long status = client_call(&x->c, "GET", path, NULL, &reply);
    if (status >= 200 && status < 300)
        return reply;
    if (status > 0)
        client_print_error(status, reply);
    json_decref(reply);
    return NULL;
}

/* Names are [a-z0-9._-]: nothing to escape in a path; anything else is refused here. */
static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > LEDGER_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' ||
              *s == '-'))
            return false;
    return true;
}

/* ---- signed commands ----------------------------------------------------------------- */

static int signer_key(struct dctx *x, uint8_t pk[LEDGER_KEY_BYTES],
                      uint8_t sk[LEDGER_SECRET_KEY_BYTES])
{
    char path[4096], err[4096 + 128];
    const char *k = opt(x, "key"), *f = opt(x, "operator-key"), *dir = opt(x, "data-dir");
    if (k || f)
        snprintf(path, sizeof path, "%s", k ? k : f);
    else if (dir)
        snprintf(path, sizeof path, "%s/%s", dir, LEDGER_HOST_OPERATOR_KEY_FILE);
    else {
        cli_error("%s is signed: give --key FILE, --operator-key FILE or --data-dir of the node "
                  "that holds operator.key",
                  x->spec->name);
        return 1;
    }
    if (ledger_key_file_read(path, pk, sk, err, sizeof err) != NX_OK) {
        cli_error("%s", err);
        return 1;
    }
    return 0;
}

/* Signs c with the signer's key and posts it (resent while 503). 0 when applied. */
static int sign_and_submit(struct dctx *x, struct ledger_cmd *c, json_t **reply_out)
{
    uint8_t pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES], cid[LEDGER_CLUSTER_ID_BYTES];
    uint8_t *cmd = NULL;
    size_t len = 0;
    if (signer_key(x, pk, sk) != 0 || client_cluster_id(&x->c, cid) != 0) {
        sodium_memzero(sk, sizeof sk);
        return 1;
    }
    memcpy(c->cluster_id, cid, sizeof cid);
    memcpy(c->author, pk, sizeof pk);
    randombytes_buf(c->idem_key, LEDGER_IDEM_BYTES);
    c->created_ms = nx_clock_wall_ms();
    int rc = ledger_cmd_build(c, sk, &cmd, &len);
    sodium_memzero(sk, sizeof sk);
    if (rc != NX_OK) {
        cli_error("invalid command (names are 1 to %d characters of [a-z0-9._-])", LEDGER_NAME_MAX);
        return 2;
    }
    char *hex = malloc(2 * len + 1);
    if (hex)
        nx_hex_encode(hex, cmd, len);
    free(cmd);
    json_t *body = hex ? json_pack("{s:s}", "command", hex) : NULL;
    free(hex);
    if (body == NULL)
        return 1;
    json_t *reply = NULL;
    long status = -1;
    for (int i = 0; i < DEPLOY_CLI_ATTEMPTS; i++) {
        json_decref(reply);
        reply = NULL;
        status = client_call(&x->c, "POST", "/v1/ledger/commands", body, &reply);
        if (status != 503)
            break;
        usleep(DEPLOY_CLI_RETRY_MS * 1000);
    }
    json_decref(body);
    if (status != 200) {
        if (status > 0)
            client_print_error(status, reply);
        json_decref(reply);
        return 1;
    }
    *reply_out = reply;
    return 0;
}

/* The version to deploy (the latest when not named), its tenant; checks it is long-running. */
static int resolve(struct dctx *x, const char *name, const char *want, char *version, size_t vcap,
                   char *tenant, size_t tcap)
{
    char path[160];
    snprintf(path, sizeof path, "/v1/agents/%s", name);
    /* The registry is read from the node's applied state: a version published a
     * moment ago through another member may be a replication round trip away. */
    json_t *a = NULL;
    long status = -1;
    for (int i = 0; i < DEPLOY_CLI_REGISTRY_ATTEMPTS; i++) {
        json_decref(a);
        a = NULL;
        status = client_call(&x->c, "GET", path, NULL, &a);
        if (status != 404)
            break;
        usleep(DEPLOY_CLI_RETRY_MS * 1000);
    }
    if (status < 200 || status >= 300) {
        if (status > 0)
            client_print_error(status, a);
        json_decref(a);
        return 1;
    }
    const char *v = want ? want : json_string_value(json_object_get(a, "latest"));
    json_t *found = NULL, *e;
    size_t i;
    json_array_foreach(json_object_get(a, "versions"), i, e)
    {
        if (v && json_is_string(json_object_get(e, "version")) &&
            strcmp(json_string_value(json_object_get(e, "version")), v) == 0)
            found = e;
    }
    int rc = 1;
    const char *kind = json_string_value(json_object_get(found, "kind"));
    if (found == NULL)
        cli_error("agent %s has no version %s", name, v ? v : "that is not deprecated");
    else if (kind == NULL || strcmp(kind, "long-running") != 0)
        cli_error("%s@%s is %s: only long-running agents are deployed (use 'nexus agent run')",
                  name, v, kind ? kind : "of an unknown kind");
    else {
        snprintf(version, vcap, "%s", v);
        snprintf(tenant, tcap, "%s", json_string_value(json_object_get(found, "tenant")) ?: "");
        rc = 0;
    }
    json_decref(a);
    return rc;
}

static int do_deploy(struct dctx *x)
{
    if (x->n_pos != 1) {
        cli_error("usage: nexus agent deploy NAME[@VERSION] --replicas N [--name DEPLOYMENT]");
        return 2;
    }
    char agent[LEDGER_STR_CAP], version[LEDGER_STR_CAP], tenant[LEDGER_STR_CAP];
    const char *spec = x->pos[0], *at = strchr(spec, '@');
    snprintf(agent, sizeof agent, "%.*s", (int)(at ? (size_t)(at - spec) : strlen(spec)), spec);
    unsigned long long replicas = 0;
    const char *dname = opt(x, "name") ? opt(x, "name") : agent;
    if (!name_ok(agent) || (at && !name_ok(at + 1)) || !name_ok(dname)) {
        cli_error("agent, version and deployment names are 1 to %d characters of [a-z0-9._-]",
                  LEDGER_NAME_MAX);
        return 2;
    }
    if (!cli_get_u64(x->spec, &x->vals, "replicas", DEPLOY_REPLICAS_MAX, &replicas) ||
        replicas == 0) {
        cli_error("--replicas must be 1 to %d", DEPLOY_REPLICAS_MAX);
        return 2;
    }
    if (resolve(x, agent, at ? at + 1 : NULL, version, sizeof version, tenant, sizeof tenant))
        return 1;
    if (opt(x, "tenant"))
        snprintf(tenant, sizeof tenant, "%s", opt(x, "tenant"));
    struct ledger_cmd c;
    memset(&c, 0, sizeof c);
    c.type = LEDGER_CMD_DEPLOY_PUT;
    snprintf(c.u.deploy.name, sizeof c.u.deploy.name, "%s", dname);
    snprintf(c.u.deploy.tenant, sizeof c.u.deploy.tenant, "%s", tenant);
    snprintf(c.u.deploy.agent, sizeof c.u.deploy.agent, "%s", agent);
    snprintf(c.u.deploy.version, sizeof c.u.deploy.version, "%s", version);
    c.u.deploy.replicas = (uint32_t)replicas;
    json_t *reply = NULL;
    int rc = sign_and_submit(x, &c, &reply);
    if (rc != 0)
        return rc;
    if (x->c.json) {
        json_object_set_new(reply, "deployment", json_string(dname));
        json_object_set_new(reply, "agent", json_string(agent));
        json_object_set_new(reply, "version", json_string(version));
        json_object_set_new(reply, "replicas", json_integer((json_int_t)replicas));
        print_json(reply);
    } else {
        printf("deployed %s: %s@%s x %llu in tenant %s (see 'nexus agent ps')\n", dname, agent,
               version, replicas, tenant);
    }
    json_decref(reply);
    return 0;
}

static int do_stop(struct dctx *x)
{
    if (x->n_pos != 1 || !name_ok(x->pos[0])) {
        cli_error("usage: nexus agent stop DEPLOYMENT");
        return 2;
    }
    struct ledger_cmd c;
    memset(&c, 0, sizeof c);
    c.type = LEDGER_CMD_DEPLOY_DELETE;
    snprintf(c.u.deploy_delete.name, sizeof c.u.deploy_delete.name, "%s", x->pos[0]);
    json_t *reply = NULL;
    int rc = sign_and_submit(x, &c, &reply);
    if (rc != 0)
        return rc;
    if (x->c.json)
        print_json(reply);
    else
        printf("stopped %s: its replicas stop everywhere\n", x->pos[0]);
    json_decref(reply);
    return 0;
}

/* "12s", "3m", "2h" ago. */
static void age(char *out, size_t cap, json_int_t since_ms)
{
    int64_t now = (int64_t)nx_clock_wall_ms(), s = since_ms > 0 ? (now - since_ms) / 1000 : -1;
    if (s < 0)
        snprintf(out, cap, "-");
    else if (s < 120)
        snprintf(out, cap, "%llds", (long long)s);
    else if (s < 7200)
        snprintf(out, cap, "%lldm", (long long)s / 60);
    else
        snprintf(out, cap, "%lldh", (long long)s / 3600);
}

static int do_ps(struct dctx *x)
{
    if (x->n_pos != 0) {
        cli_error("usage: nexus agent ps [--json]");
        return 2;
    }
    json_t *r = get(x, "/v1/deployments");
    if (r == NULL)
        return 1;
    if (x->c.json) {
        print_json(r);
        json_decref(r);
        return 0;
    }
    printf("%-20s %-24s %-4s %-16s %-9s %-8s %-5s %s\n", "DEPLOYMENT", "AGENT", "REPL", "NODE",
           "STATE", "RESTARTS", "SINCE", "WHY");
    size_t i, k;
    json_t *d, *in;
    json_array_foreach(json_object_get(r, "deployments"), i, d)
    {
        char agent[2 * LEDGER_STR_CAP + 2];
        snprintf(agent, sizeof agent, "%s@%s", json_string_value(json_object_get(d, "agent")),
                 json_string_value(json_object_get(d, "version")));
        json_array_foreach(json_object_get(d, "instances"), k, in)
        {
            char since[16], restarts[16] = "-";
            age(since, sizeof since, json_integer_value(json_object_get(in, "since_ms")));
            if (json_object_get(in, "restarts"))
                snprintf(restarts, sizeof restarts, "%lld",
                         (long long)json_integer_value(json_object_get(in, "restarts")));
            printf("%-20s %-24s %-4lld %-16.16s %-9s %-8s %-5s %s\n",
                   json_string_value(json_object_get(d, "name")), agent,
                   (long long)json_integer_value(json_object_get(in, "replica")),
                   json_string_value(json_object_get(in, "node")) ?: "-",
                   json_string_value(json_object_get(in, "state")), restarts, since,
                   json_string_value(json_object_get(in, "why")) ?: "");
        }
    }
    json_decref(r);
    return 0;
}

static int do_logs(struct dctx *x)
{
    unsigned long long replica = 0, lines = 0;
    if (x->n_pos != 1 || !name_ok(x->pos[0])) {
        cli_error("usage: nexus agent logs DEPLOYMENT [--replica R] [--lines N]");
        return 2;
    }
    if (!cli_get_u64(x->spec, &x->vals, "replica", 63, &replica) ||
        !cli_get_u64(x->spec, &x->vals, "lines", 256, &lines) || lines == 0)
        return 2;
    char path[256];
    snprintf(path, sizeof path, "/v1/deployments/%s/logs?replica=%llu&lines=%llu", x->pos[0],
             replica, lines);
    json_t *r = get(x, path);
    if (r == NULL)
        return 1;
    if (x->c.json) {
        print_json(r);
    } else {
        size_t i;
        json_t *l;
        json_array_foreach(json_object_get(r, "lines"), i, l)
        {
            time_t t = (time_t)(json_integer_value(json_object_get(l, "ts_ms")) / 1000);
            struct tm tm;
            char ts[32] = "";
            if (gmtime_r(&t, &tm))
                strftime(ts, sizeof ts, "%H:%M:%S", &tm);
            printf("%s %s\n", ts, json_string_value(json_object_get(l, "line")));
        }
        printf("--- %s replica %llu on %.16s (%s)\n", x->pos[0], replica,
               json_string_value(json_object_get(r, "node")) ?: "?",
               json_string_value(json_object_get(r, "state")) ?: "?");
    }
    json_decref(r);
    return 0;
}

static int run_command(const struct cli_cmd *spec, int (*fn)(struct dctx *), int argc, char **argv)
{
    struct dctx x;
    memset(&x, 0, sizeof x);
    int rc = parse(&x, spec, argc, argv);
    if (rc != CLI_OK) {
        cli_values_free(&x.vals);
        return rc == CLI_HELP ? 0 : 2;
    }
    int code = 1;
    if (client_init(&x.c, spec, &x.vals)) {
        code = fn(&x);
        client_free(&x.c);
    }
    cli_values_free(&x.vals);
    return code;
}

int cmd_agent_deploy(int argc, char **argv)
{
    return run_command(&cmd_agent_deploy_spec, do_deploy, argc, argv);
}
int cmd_agent_stop(int argc, char **argv)
{
    return run_command(&cmd_agent_stop_spec, do_stop, argc, argv);
}
int cmd_agent_ps(int argc, char **argv)
{
    return run_command(&cmd_agent_ps_spec, do_ps, argc, argv);
}
int cmd_agent_logs(int argc, char **argv)
{
    return run_command(&cmd_agent_logs_spec, do_logs, argc, argv);
}
