/*
 * cmd_agent_mesh.c - `nexus agent publish|list|show|search|run|plan`: clients
 * of a node's /v1/agents, /v1/bundles, /v1/runs and /v1/ledger/commands.
 *
 * publish packs the bundle directory here (node/bundle.h: deterministic, so
 * the same tree always has the same hash), uploads it in pieces to the node
 * it talks to, and proposes the agent publish command signed HERE with the
 * publisher's key: the operator key (like `nexus ledger mint`), or --key
 * FILE of a tenant owner or a key granted agent.publish on the tenant. The
 * command carries the manifest, so every member can search capabilities.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "bundle.h"
#include "client.h"
#include "cmd_agent_local.h"
#include "commands.h"
#include "ledger/ledger.h"
#include "ledger_host.h"
#include "sandbox/sandbox.h"

#define AGENT_CLI_MAX_ARGS 64
#define AGENT_CLI_PIECE_BYTES (512u << 10) /* upload piece: under the API's body limit */
#define AGENT_CLI_ATTEMPTS 5
#define AGENT_CLI_RETRY_MS 300
#define AGENT_CLI_DEFAULT_TENANT "default"

static const struct cli_opt mesh_opts[] = {
    CLI_CLIENT_OPTS,
    {"key", "FILE", NULL, NULL,
     "publish: the publisher's key file (a tenant owner's or one granted agent.publish; "
     "default: the operator key)",
     false},
    {"operator-key", "FILE", NULL, NULL, "publish: operator key (default: DATA_DIR/operator.key)",
     false},
    {"tenant", "NAME", AGENT_CLI_DEFAULT_TENANT, NULL,
     "publish: the tenant the agent belongs to (created by the operator if missing)", false},
    {"input", "JSON|-", "null", NULL, "run: the request's input as JSON, or - for stdin", false},
    {"account", "ACCOUNT", NULL, NULL,
     "run: the ledger account charged for the run (none: not charged)", false},
    {"run-id", "ID", NULL, NULL,
     "run: [a-z0-9._-]{1,64}; a retry with the same id is charged once (default: random)", false},
    {"constraint", "RULE", NULL, NULL,
     "run, plan: key=value, key!=value, key or !key on the members' labels", true},
};

#define SPEC(name, args, summary)                                                                  \
    {                                                                                              \
        "agent " name, args, summary, mesh_opts, NX_ARRAY_LEN(mesh_opts)                           \
    }

const struct cli_cmd cmd_agent_publish_spec =
    SPEC("publish", "DIR", "pack a bundle directory, upload it and publish it in the registry");
const struct cli_cmd cmd_agent_deprecate_spec =
    SPEC("deprecate", "NAME@VERSION", "mark a published version deprecated (runs pick others)");
const struct cli_cmd cmd_agent_list_spec = SPEC("list", "", "the agents in the registry");
const struct cli_cmd cmd_agent_show_spec =
    SPEC("show", "NAME", "an agent's versions, deprecation, hashes and capabilities");
const struct cli_cmd cmd_agent_search_spec =
    SPEC("search", "CAPABILITY", "agents with a capability whose name or description matches");
const struct cli_cmd cmd_agent_run_spec =
    SPEC("run", "NAME[@VERSION]",
         "run an agent on the member that fits it best (exit 0 answered, 1 failed, 2 usage)");
const struct cli_cmd cmd_agent_plan_spec =
    SPEC("plan", "NAME[@VERSION]", "each member's verdict and score for an agent; nothing runs");

struct actx {
    const struct cli_cmd *spec;
    struct cli_values vals;
    struct client c;
    char *pos[AGENT_CLI_MAX_ARGS];
    int n_pos;
};

static int parse(struct actx *x, const struct cli_cmd *spec, int argc, char **argv)
{
    x->spec = spec;
    return cli_parse_anywhere(spec, argc, argv, &x->vals, x->pos, AGENT_CLI_MAX_ARGS, &x->n_pos);
}

static const char *opt(struct actx *x, const char *name)
{
    return cli_get(x->spec, &x->vals, name);
}

static void print_json(json_t *o)
{
    json_dumpf(o, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
    putchar('\n');
}

/* Percent-encodes s for a path or query (unreserved characters kept). */
static void url_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 4 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~' || ch == '@')
            out[n++] = (char)ch;
        else
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", ch);
    }
    out[n] = '\0';
}

/* GET path: the reply (caller frees) or NULL after printing the error. */
static json_t *get(struct actx *x, const char *path)
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

/* ---- publish -------------------------------------------------------------------- */

static int read_key(const char *path, uint8_t pk[LEDGER_KEY_BYTES],
                    uint8_t sk[LEDGER_SECRET_KEY_BYTES])
{
    char err[4096 + 128];
    if (ledger_key_file_read(path, pk, sk, err, sizeof err) != NX_OK) {
        cli_error("%s", err);
        return 1;
    }
    return 0;
}

/* The publisher's key; *is_operator when it is the operator key. */
static int publisher_key(struct actx *x, uint8_t pk[LEDGER_KEY_BYTES],
                         uint8_t sk[LEDGER_SECRET_KEY_BYTES], bool *is_operator)
{
    char path[4096];
    const char *k = opt(x, "key"), *f = opt(x, "operator-key"), *dir = opt(x, "data-dir");
    *is_operator = k == NULL;
    if (k)
        snprintf(path, sizeof path, "%s", k);
    else if (f)
        snprintf(path, sizeof path, "%s", f);
    else if (dir)
        snprintf(path, sizeof path, "%s/%s", dir, LEDGER_HOST_OPERATOR_KEY_FILE);
    else {
        cli_error("publish is signed by a publisher: give --key FILE, --operator-key FILE or "
                  "--data-dir of the node that holds operator.key");
        return 1;
    }
    return read_key(path, pk, sk);
}

/* Signs and posts a command (resent while 503). Returns the HTTP status; *reason when known. */
static long submit(struct actx *x, const struct ledger_cmd *c, const uint8_t *sk, int *reason,
                   json_t **reply_out)
{
    uint8_t *cmd = NULL;
    size_t len = 0;
    *reason = -1;
    if (ledger_cmd_build(c, sk, &cmd, &len) != NX_OK) {
        cli_error("invalid command (names are 1 to %d characters of [a-z0-9._-])", LEDGER_NAME_MAX);
        return -1;
    }
    char *hex = malloc(2 * len + 1);
    if (hex)
        nx_hex_encode(hex, cmd, len);
    free(cmd);
    json_t *body = hex ? json_pack("{s:s}", "command", hex) : NULL;
    free(hex);
    if (body == NULL)
        return -1;
    json_t *reply = NULL;
    long status = -1;
    for (int i = 0; i < AGENT_CLI_ATTEMPTS; i++) {
        json_decref(reply);
        reply = NULL;
        status = client_call(&x->c, "POST", "/v1/ledger/commands", body, &reply);
        if (status != 503)
            break;
        usleep(AGENT_CLI_RETRY_MS * 1000);
    }
    json_decref(body);
    json_t *rc = json_object_get(reply, "reason_code");
    *reason = json_is_integer(rc) ? (int)json_integer_value(rc) : -1;
    if (reply_out)
        *reply_out = reply;
    else
        json_decref(reply);
    return status;
}

static void header(struct ledger_cmd *c, uint8_t type, const uint8_t cid[LEDGER_CLUSTER_ID_BYTES],
                   const uint8_t pk[LEDGER_KEY_BYTES])
{
    memset(c, 0, sizeof *c);
    c->type = type;
    memcpy(c->cluster_id, cid, LEDGER_CLUSTER_ID_BYTES);
    memcpy(c->author, pk, LEDGER_KEY_BYTES);
    randombytes_buf(c->idem_key, LEDGER_IDEM_BYTES);
    c->created_ms = nx_clock_wall_ms();
}

static int upload(struct actx *x, const uint8_t *buf, size_t len, const char *hex)
{
    for (size_t off = 0; off < len; off += AGENT_CLI_PIECE_BYTES) {
        size_t n = len - off < AGENT_CLI_PIECE_BYTES ? len - off : AGENT_CLI_PIECE_BYTES;
        char path[256];
        snprintf(path, sizeof path, "/v1/bundles/%s?offset=%zu&total=%zu", hex, off, len);
        json_t *reply = NULL;
        long status = client_request(&x->c, "PUT", path, (const char *)buf + off, n,
                                     "application/octet-stream", &reply);
        if (status < 200 || status >= 300) {
            if (status > 0)
                client_print_error(status, reply);
            json_decref(reply);
            return 1;
        }
        json_decref(reply);
    }
    return 0;
}

/* The operator makes the tenant (owned by itself) when it is missing. */
static int ensure_tenant(struct actx *x, const uint8_t cid[LEDGER_CLUSTER_ID_BYTES],
                         const uint8_t pk[LEDGER_KEY_BYTES], const uint8_t *sk, const char *tenant)
{
    struct ledger_cmd c;
    header(&c, LEDGER_CMD_TENANT_CREATE, cid, pk);
    snprintf(c.u.tenant.name, sizeof c.u.tenant.name, "%s", tenant);
    memcpy(c.u.tenant.owner, pk, LEDGER_KEY_BYTES);
    int reason;
    long status = submit(x, &c, sk, &reason, NULL);
    if (status == 200 || reason == LEDGER_REJ_EXISTS)
        return 0;
    cli_error("cannot create tenant '%s': %s", tenant,
              reason >= 0 ? ledger_reason_str(reason) : "the node did not accept the command");
    return 1;
}

static int do_publish(struct actx *x)
{
    if (x->n_pos != 2) {
        cli_error("usage: nexus agent publish DIR [--key FILE] [--tenant NAME]");
        return 2;
    }
    const char *dir = x->pos[1], *tenant = opt(x, "tenant");
    char err[BUNDLE_ERR_MAX + SBX_ERR_MAX];
    uint8_t *buf = NULL, pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES];
    size_t len = 0;
    int code = 1;
    struct sbx_manifest m = {0};
    if (bundle_pack(dir, &buf, &len, err, sizeof err) != NX_OK) {
        cli_error("%s", err);
        return 2;
    }
    const uint8_t *mbytes;
    size_t mlen;
    if (bundle_manifest(buf, len, &mbytes, &mlen) != NX_OK ||
        sbx_manifest_parse((const char *)mbytes, mlen, &m, err, sizeof err) != 0) {
        cli_error("%s: %s", dir, err);
        code = 2;
        goto out;
    }
    if (mlen > LEDGER_MANIFEST_MAX_BYTES) {
        cli_error("%s: manifest.json is %zu bytes; the registry keeps at most %d (move large "
                  "schemas into files of the bundle)",
                  dir, mlen, LEDGER_MANIFEST_MAX_BYTES);
        code = 2;
        goto out;
    }
    struct ledger_cmd c;
    uint8_t cid[LEDGER_CLUSTER_ID_BYTES];
    bool is_operator;
    if (publisher_key(x, pk, sk, &is_operator) != 0 || client_cluster_id(&x->c, cid) != 0)
        goto out;
    header(&c, LEDGER_CMD_AGENT_PUBLISH, cid, pk);
    struct ledger_cmd_agent_publish *p = &c.u.publish;
    if (snprintf(p->name, sizeof p->name, "%s", m.name) >= (int)sizeof p->name ||
        snprintf(p->version, sizeof p->version, "%s", m.version) >= (int)sizeof p->version ||
        snprintf(p->tenant, sizeof p->tenant, "%s", tenant) >= (int)sizeof p->tenant) {
        cli_error("name, version and tenant must be at most %d characters", LEDGER_NAME_MAX);
        code = 2;
        goto out;
    }
    bundle_hash(buf, len, p->bundle_hash);
    crypto_generichash(p->manifest_hash, LEDGER_HASH_BYTES, mbytes, mlen, NULL, 0);
    memcpy(p->manifest, mbytes, mlen);
    p->manifest_len = (uint32_t)mlen;
    ledger_agent_sign(p->name, p->version, p->manifest_hash, p->bundle_hash, sk, p->publisher_sig);
    char hex[BUNDLE_HASH_HEX_LEN + 1];
    nx_hex_encode(hex, p->bundle_hash, BUNDLE_HASH_BYTES);
    if (upload(x, buf, len, hex) != 0)
        goto out;
    if (is_operator && ensure_tenant(x, cid, pk, sk, tenant) != 0)
        goto out;
    int reason;
    json_t *reply = NULL;
    long status = submit(x, &c, sk, &reason, &reply);
    if (status == 200) {
        code = 0;
        if (x->c.json) {
            json_object_set_new(reply, "agent", json_string(p->name));
            json_object_set_new(reply, "version", json_string(p->version));
            json_object_set_new(reply, "bundle_hash", json_string(hex));
            json_object_set_new(reply, "bundle_bytes", json_integer((json_int_t)len));
            print_json(reply);
        } else {
            printf("published %s@%s in tenant %s: bundle %s (%zu bytes)\n", p->name, p->version,
                   tenant, hex, len);
        }
    } else if (status > 0) {
        client_print_error(status, reply);
    }
    json_decref(reply);
out:
    sodium_memzero(sk, sizeof sk);
    sbx_manifest_free(&m);
    free(buf);
    return code;
}

static int do_deprecate(struct actx *x)
{
    const char *spec = x->n_pos == 2 ? x->pos[1] : "";
    const char *at = strchr(spec, '@');
    struct ledger_cmd c;
    if (at == NULL || at == spec || (size_t)(at - spec) > LEDGER_NAME_MAX ||
        strlen(at + 1) > LEDGER_NAME_MAX) {
        cli_error("usage: nexus agent deprecate NAME@VERSION [--key FILE]");
        return 2;
    }
    uint8_t pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES], cid[LEDGER_CLUSTER_ID_BYTES];
    bool is_operator;
    int code = 1;
    if (publisher_key(x, pk, sk, &is_operator) == 0 && client_cluster_id(&x->c, cid) == 0) {
        header(&c, LEDGER_CMD_AGENT_DEPRECATE, cid, pk);
        snprintf(c.u.deprecate.name, sizeof c.u.deprecate.name, "%.*s", (int)(at - spec), spec);
        snprintf(c.u.deprecate.version, sizeof c.u.deprecate.version, "%s", at + 1);
        int reason;
        json_t *reply = NULL;
        long status = submit(x, &c, sk, &reason, &reply);
        if (status == 200) {
            code = 0;
            if (x->c.json)
                print_json(reply);
            else
                printf("deprecated %s\n", spec);
        } else if (status > 0) {
            client_print_error(status, reply);
        }
        json_decref(reply);
    }
    sodium_memzero(sk, sizeof sk);
    return code;
}

/* ---- reads ------------------------------------------------------------------------ */

static void print_agents(json_t *agents)
{
    size_t i, k;
    json_t *a, *v;
    printf("%-24s %-12s %-9s %s\n", "NAME", "LATEST", "VERSIONS", "CAPABILITIES");
    json_array_foreach(agents, i, a)
    {
        json_t *versions = json_object_get(a, "versions");
        json_t *last = json_array_get(versions, json_array_size(versions) - 1);
        char caps[256] = "";
        size_t n = 0;
        json_array_foreach(json_object_get(last, "capabilities"), k, v)
        {
            n += (size_t)snprintf(caps + n, n < sizeof caps ? sizeof caps - n : 0, "%s%s",
                                  k ? "," : "", json_string_value(json_object_get(v, "name")));
            if (n >= sizeof caps)
                break;
        }
        printf("%-24s %-12s %-9zu %s\n", json_string_value(json_object_get(a, "name")),
               json_string_value(json_object_get(a, "latest")) ?: "(deprecated)",
               json_array_size(versions), caps);
    }
}

static int do_list(struct actx *x, const char *capability)
{
    char path[512] = "/v1/agents";
    if (capability) {
        char esc[384];
        url_escape(esc, sizeof esc, capability);
        snprintf(path, sizeof path, "/v1/agents?capability=%s", esc);
    }
    json_t *r = get(x, path);
    if (r == NULL)
        return 1;
    if (x->c.json)
        print_json(r);
    else
        print_agents(json_object_get(r, "agents"));
    int code = capability && json_array_size(json_object_get(r, "agents")) == 0 ? 1 : 0;
    json_decref(r);
    return code;
}

static int do_show(struct actx *x, const char *name)
{
    char esc[256], path[320];
    url_escape(esc, sizeof esc, name);
    snprintf(path, sizeof path, "/v1/agents/%s", esc);
    json_t *r = get(x, path);
    if (r == NULL)
        return 1;
    if (x->c.json) {
        print_json(r);
        json_decref(r);
        return 0;
    }
    printf("%s (latest %s)\n", json_string_value(json_object_get(r, "name")),
           json_string_value(json_object_get(r, "latest")) ?: "none: every version deprecated");
    size_t i, k;
    json_t *v, *c;
    json_array_foreach(json_object_get(r, "versions"), i, v)
    {
        printf("  %-12s %s tenant=%s kind=%s bundle=%.16s...\n",
               json_string_value(json_object_get(v, "version")),
               json_is_true(json_object_get(v, "deprecated")) ? "deprecated" : "active    ",
               json_string_value(json_object_get(v, "tenant")),
               json_string_value(json_object_get(v, "kind")) ?: "?",
               json_string_value(json_object_get(v, "bundle_hash")));
        json_array_foreach(json_object_get(v, "capabilities"), k, c)
        {
            printf("      capability %s: %s\n", json_string_value(json_object_get(c, "name")),
                   json_string_value(json_object_get(c, "description")) ?: "");
        }
    }
    json_decref(r);
    return 0;
}

/* ---- run and plan ------------------------------------------------------------------- */

json_t *cmd_agent_load_input(const char *text)
{
    json_error_t jerr;
    json_t *v = strcmp(text, "-") == 0
                    ? json_loadf(stdin, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &jerr)
                    : json_loads(text, JSON_DECODE_ANY, &jerr);
    if (v == NULL)
        cli_error("--input is not valid JSON: %s", jerr.text);
    return v;
}

static json_t *constraints_json(struct actx *x)
{
    json_t *arr = json_array();
    const char *all = opt(x, "constraint");
    while (all && *all) {
        const char *end = strchr(all, '\n');
        size_t n = end ? (size_t)(end - all) : strlen(all);
        json_array_append_new(arr, json_stringn(all, n));
        all = end ? end + 1 : NULL;
    }
    return arr;
}

void cmd_agent_print_run(json_t *r)
{
    json_t *out = json_object_get(r, "output");
    const char *error = json_string_value(json_object_get(r, "error"));
    if (error)
        printf("error: %s\n", error);
    else
        print_json(out);
    json_t *u = json_object_get(r, "usage");
    printf("--- ran on %.16s (run %s) in %.1f ms%s; agent wall %.1f ms, cpu %.1f ms\n",
           json_string_value(json_object_get(r, "node")) ?: "?",
           json_string_value(json_object_get(r, "run_id")) ?: "?",
           json_number_value(json_object_get(r, "latency_ms")),
           json_is_true(json_object_get(r, "replayed")) ? " (answer replayed, not rerun)" : "",
           (double)json_integer_value(json_object_get(u, "wall_us")) / 1000.0,
           (double)json_integer_value(json_object_get(u, "cpu_total_us")) / 1000.0);
    json_t *ch = json_object_get(r, "charge");
    const char *skipped = json_string_value(json_object_get(r, "charge_skipped"));
    const char *charge_error = json_string_value(json_object_get(r, "charge_error"));
    if (ch && json_is_true(json_object_get(ch, "already_charged")))
        printf("--- charge: run id already charged; not charged again\n");
    else if (ch)
        printf("--- charged %lld to %s (payee %s, tx %lld%s)\n",
               (long long)json_integer_value(json_object_get(ch, "amount")),
               json_string_value(json_object_get(ch, "account")),
               json_string_value(json_object_get(ch, "payee")),
               (long long)json_integer_value(json_object_get(ch, "tx_seq")),
               json_is_true(json_object_get(ch, "duplicate")) ? ", same charge as before" : "");
    else if (charge_error)
        printf("--- %s\n", charge_error);
    else if (skipped)
        printf("--- %s\n", skipped);
}

static int do_run(struct actx *x)
{
    if (x->n_pos != 2) {
        cli_error("usage: nexus agent run NAME[@VERSION] [--input JSON|-] [--account A]");
        return 2;
    }
    json_t *input = cmd_agent_load_input(opt(x, "input"));
    if (input == NULL)
        return 2;
    json_t *body = json_pack("{s:s,s:o,s:o}", "agent", x->pos[1], "input", input, "constraints",
                             constraints_json(x));
    if (opt(x, "account"))
        json_object_set_new(body, "account", json_string(opt(x, "account")));
    if (opt(x, "run-id"))
        json_object_set_new(body, "run_id", json_string(opt(x, "run-id")));
    json_t *r = NULL;
    long status = client_call(&x->c, "POST", "/v1/runs", body, &r);
    json_decref(body);
    int code = 1;
    if (status == 200) {
        code = json_object_get(r, "error") ? 1 : 0;
        if (x->c.json)
            print_json(r);
        else
            cmd_agent_print_run(r);
    } else if (status > 0) {
        if (x->c.json)
            print_json(r);
        else
            client_print_error(status, r);
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(r, "refusals"), i, f)
        {
            fprintf(stderr, "  %.16s: %s\n", json_string_value(json_object_get(f, "node")),
                    json_string_value(json_object_get(f, "why")));
        }
    }
    json_decref(r);
    return code;
}

static int do_plan(struct actx *x)
{
    if (x->n_pos != 2) {
        cli_error("usage: nexus agent plan NAME[@VERSION] [--constraint RULE]");
        return 2;
    }
    char esc[256], path[600], cesc[256] = "";
    url_escape(esc, sizeof esc, x->pos[1]);
    const char *c = opt(x, "constraint");
    if (c)
        url_escape(cesc, sizeof cesc, c);
    snprintf(path, sizeof path, "/v1/agents/%s/plan%s%s", esc, c ? "?constraint=" : "", cesc);
    json_t *r = get(x, path);
    if (r == NULL)
        return 1;
    if (x->c.json) {
        print_json(r);
    } else {
        json_t *n = json_object_get(r, "needs");
        printf("%s@%s needs %lld millicores, %lld MiB, %lld GPUs\n",
               json_string_value(json_object_get(r, "agent")),
               json_string_value(json_object_get(r, "version")),
               (long long)json_integer_value(json_object_get(n, "cpu_millicores")),
               (long long)(json_integer_value(json_object_get(n, "mem_bytes")) >> 20),
               (long long)json_integer_value(json_object_get(n, "gpus")));
        printf("%-4s %-16s %-8s %-7s %s\n", "RANK", "NODE", "STATE", "SCORE", "VERDICT");
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(r, "members"), i, m)
        {
            char rank[8] = "-", score[16] = "-";
            if (json_object_get(m, "rank"))
                snprintf(rank, sizeof rank, "%lld",
                         (long long)json_integer_value(json_object_get(m, "rank")));
            if (json_object_get(m, "score"))
                snprintf(score, sizeof score, "%.3f",
                         json_number_value(json_object_get(m, "score")));
            printf("%-4s %.16s %-8s %-7s %s\n", rank, json_string_value(json_object_get(m, "node")),
                   json_string_value(json_object_get(m, "state")), score,
                   json_string_value(json_object_get(m, "verdict")));
        }
        const char *why = json_string_value(json_object_get(r, "explanation"));
        if (why)
            printf("nothing fits: %s\n", why);
    }
    json_decref(r);
    return 0;
}

/* ---- dispatch ------------------------------------------------------------------------ */

static int run_command(const struct cli_cmd *spec, int argc, char **argv)
{
    struct actx x;
    memset(&x, 0, sizeof x);
    int rc = parse(&x, spec, argc, argv);
    if (rc != CLI_OK) {
        cli_values_free(&x.vals);
        return rc == CLI_HELP ? 0 : 2;
    }
    /* argv[0] is the subcommand word; pos[0] is it too, for uniform counts */
    memmove(x.pos + 1, x.pos, (size_t)x.n_pos * sizeof x.pos[0]);
    x.pos[0] = argv[0];
    x.n_pos++;
    int code = 1;
    if (!client_init(&x.c, spec, &x.vals))
        goto out;
    if (spec == &cmd_agent_publish_spec)
        code = do_publish(&x);
    else if (spec == &cmd_agent_deprecate_spec)
        code = do_deprecate(&x);
    else if (spec == &cmd_agent_list_spec)
        code = x.n_pos == 1 ? do_list(&x, NULL) : 2;
    else if (spec == &cmd_agent_search_spec)
        code = x.n_pos == 2 ? do_list(&x, x.pos[1]) : 2;
    else if (spec == &cmd_agent_show_spec)
        code = x.n_pos == 2 ? do_show(&x, x.pos[1]) : 2;
    else if (spec == &cmd_agent_run_spec)
        code = do_run(&x);
    else
        code = do_plan(&x);
    if (code == 2 && spec != &cmd_agent_publish_spec && spec != &cmd_agent_run_spec &&
        spec != &cmd_agent_plan_spec && spec != &cmd_agent_deprecate_spec)
        cli_error("usage: nexus %s %s", spec->name, spec->args);
    client_free(&x.c);
out:
    cli_values_free(&x.vals);
    return code;
}

int cmd_agent_publish(int argc, char **argv)
{
    return run_command(&cmd_agent_publish_spec, argc, argv);
}
int cmd_agent_deprecate(int argc, char **argv)
{
    return run_command(&cmd_agent_deprecate_spec, argc, argv);
}
int cmd_agent_list(int argc, char **argv)
{
    return run_command(&cmd_agent_list_spec, argc, argv);
}
int cmd_agent_show(int argc, char **argv)
{
    return run_command(&cmd_agent_show_spec, argc, argv);
}
int cmd_agent_search(int argc, char **argv)
{
    return run_command(&cmd_agent_search_spec, argc, argv);
}
int cmd_agent_run(int argc, char **argv)
{
    return run_command(&cmd_agent_run_spec, argc, argv);
}
int cmd_agent_plan(int argc, char **argv)
{
    return run_command(&cmd_agent_plan_spec, argc, argv);
}
