/*
 * cmd_ledger.c - `nexus ledger ...` and `nexus account create`: clients of
 * the replicated registry and ledger (/v1/ledger/...).
 *
 * Commands are built and signed HERE, on the client (ledger_cmd_build), with
 * a key file the client holds: an account's key for its transfers, the
 * operator key (DATA_DIR/operator.key of the bootstrapping node, or
 * --operator-key) for mint, tenants and accounts. No node ever sees an
 * account's secret key. The cluster id that every command names is read
 * from GET /v1/ledger/genesis first.
 *
 * The CLI resends the same bytes itself while the node answers 503 (see
 * submit). A retry by the user that must be recognised as the same command (idempotency: the
 * original result, nothing applied twice) has to send the same bytes: the
 * same --idempotency-key AND the same --created-ms.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "client.h"
#include "commands.h"
#include "ledger/ledger.h"
#include "join.h"
#include "ledger_host.h"

#define LEDGER_CLI_MAX_ARGS 64
#define LEDGER_CLI_PATH_MAX 4096
#define LEDGER_CLI_DEFAULT_TENANT "default"
#define LEDGER_CLI_ATTEMPTS 5   /* sends of one command while the node answers 503 */
#define LEDGER_CLI_RETRY_MS 300 /* pause between them */

static const struct cli_opt ledger_opts[] = {
    CLI_CLIENT_OPTS,
    {"to", "ACCOUNT", NULL, NULL, "mint, transfer: the account credited (required there)", false},
    {"from", "ACCOUNT", NULL, NULL,
     "transfer: the account debited, signs with its key (required there)", false},
    {"amount", "N", NULL, NULL, "mint, transfer: a positive integer amount (required there)",
     false},
    {"idempotency-key", "K", NULL, NULL,
     "transfer, mint: 64 hex digits, or any text (hashed); the same key and --created-ms "
     "resend the same command (default: random)",
     false},
    {"created-ms", "MS", NULL, NULL,
     "the command's creation time, ms since the epoch (default: now)", false},
    {"key-file", "FILE", NULL, NULL,
     "transfer: the payer's key (default: ./FROM.key); account create: where to write the new "
     "key (default: ./NAME.key; an existing file is reused)",
     false},
    {"operator-key", "FILE", NULL, NULL,
     "operator key for mint and account create (default: DATA_DIR/operator.key)", false},
    {"tenant", "NAME", LEDGER_CLI_DEFAULT_TENANT, NULL,
     "account create: the tenant (created by the operator if missing)", false},
    {"after", "SEQ", "0", NULL, "log: list transactions after this sequence number", false},
    {"limit", "N", "100", NULL, "log: at most this many transactions (max 1000)", false},
    {"stale", NULL, NULL, NULL, "reads: the node's local copy instead of a linearizable read",
     false},
    {"ttl", "DURATION", "1h", NULL, "token create: how long the token admits (90s, 10m, 2h, 7d)",
     false},
    {"uses", "N", "1", NULL, "token create: how many nodes it admits", false},
    {"owner-key", "FILE", NULL, NULL,
     "tenant create: the owner's key file (an account key); default: the operator", false},
    {"subject", "ID|FILE", NULL, NULL,
     "perm: who gets the permission: a key (64 hex) or a key file (required there)", false},
};

const struct cli_cmd cmd_ledger_spec = {
    "ledger",
    "balance ACCOUNT | accounts | mint --to A --amount N | transfer --from A --to B --amount N | "
    "log | verify | nodes | tenants | audit",
    "read and write the replicated ledger (commands signed on this machine)", ledger_opts,
    NX_ARRAY_LEN(ledger_opts)};

const struct cli_cmd cmd_account_spec = {"account", "create NAME",
                                         "create a ledger account with a new key pair", ledger_opts,
                                         NX_ARRAY_LEN(ledger_opts)};

const struct cli_cmd cmd_token_spec = {
    "token", "create",
    "create a join token on a member: 'nexus node --join ADDR --token T' admits a new node",
    ledger_opts, NX_ARRAY_LEN(ledger_opts)};

const struct cli_cmd cmd_member_remove_spec = {
    "members remove", "NODE_ID",
    "remove a node from the registry (operator-signed): every member refuses its key from then "
    "on, and the Raft leader drops it from the voter set",
    ledger_opts, NX_ARRAY_LEN(ledger_opts)};

const struct cli_cmd cmd_tenant_spec = {
    "tenant", "create NAME",
    "create a tenant (operator-signed); its owner grants permissions on it", ledger_opts,
    NX_ARRAY_LEN(ledger_opts)};

const struct cli_cmd cmd_perm_spec = {
    "perm", "grant|revoke ACTION RESOURCE --subject ID|FILE",
    "grant or revoke a permission (e.g. transfer on an account, account.create on a tenant); "
    "signed by the operator, or with --key-file by the tenant's owner",
    ledger_opts, NX_ARRAY_LEN(ledger_opts)};

struct lctx {
    const struct cli_cmd *spec;
    struct cli_values vals;
    struct client c;
    char *pos[LEDGER_CLI_MAX_ARGS];
    int n_pos;
};

static int parse(struct lctx *x, const struct cli_cmd *spec, int argc, char **argv)
{
    x->spec = spec;
    return cli_parse_anywhere(spec, argc, argv, &x->vals, x->pos, LEDGER_CLI_MAX_ARGS, &x->n_pos);
}

static const char *opt(struct lctx *x, const char *name)
{
    return cli_get(x->spec, &x->vals, name);
}

static void print_json(json_t *o)
{
    json_dumpf(o, stdout, JSON_INDENT(2));
    putchar('\n');
}

static int read_key(const char *path, uint8_t pk[LEDGER_KEY_BYTES],
                    uint8_t sk[LEDGER_SECRET_KEY_BYTES])
{
    char err[LEDGER_CLI_PATH_MAX + 128];
    if (ledger_key_file_read(path, pk, sk, err, sizeof err) != NX_OK) {
        cli_error("%s", err);
        return 1;
    }
    return 0;
}

static int operator_key(struct lctx *x, uint8_t pk[LEDGER_KEY_BYTES],
                        uint8_t sk[LEDGER_SECRET_KEY_BYTES])
{
    char path[LEDGER_CLI_PATH_MAX];
    const char *f = opt(x, "operator-key"), *dir = opt(x, "data-dir");
    if (f)
        snprintf(path, sizeof path, "%s", f);
    else if (dir)
        snprintf(path, sizeof path, "%s/%s", dir, LEDGER_HOST_OPERATOR_KEY_FILE);
    else {
        cli_error("this command is signed by the operator: give --operator-key FILE or "
                  "--data-dir of the node that holds operator.key");
        return 1;
    }
    return read_key(path, pk, sk);
}

/* Common header fields: cluster, author, idempotency key, created_ms. */
static int fill_header(struct lctx *x, struct ledger_cmd *c, uint8_t type,
                       const uint8_t author[LEDGER_KEY_BYTES])
{
    memset(c, 0, sizeof *c);
    c->type = type;
    memcpy(c->author, author, LEDGER_KEY_BYTES);
    if (client_cluster_id(&x->c, c->cluster_id) != 0)
        return 1;
    const char *k = opt(x, "idempotency-key");
    if (k == NULL)
        randombytes_buf(c->idem_key, LEDGER_IDEM_BYTES);
    else if (strlen(k) != 2 * LEDGER_IDEM_BYTES ||
             nx_hex_decode(c->idem_key, LEDGER_IDEM_BYTES, k) != NX_OK)
        crypto_generichash(c->idem_key, LEDGER_IDEM_BYTES, (const uint8_t *)k, strlen(k), NULL, 0);
    unsigned long long ms = nx_clock_wall_ms();
    if (opt(x, "created-ms") && !cli_get_u64(x->spec, &x->vals, "created-ms", UINT64_MAX, &ms))
        return 2;
    c->created_ms = ms;
    return 0;
}

/* Signs c with sk, posts it, prints the result. Returns an exit code; *reason set if known. */
static int submit(struct lctx *x, const struct ledger_cmd *c, const uint8_t *sk, int *reason,
                  bool quiet)
{
    uint8_t *cmd = NULL;
    size_t len = 0;
    if (ledger_cmd_build(c, sk, &cmd, &len) != NX_OK) {
        cli_error("invalid command (names are 1 to %d characters of [a-z0-9._-])", LEDGER_NAME_MAX);
        return 2;
    }
    char *hex = malloc(2 * len + 1);
    if (hex == NULL) {
        free(cmd);
        return 1;
    }
    nx_hex_encode(hex, cmd, len);
    free(cmd);
    json_t *body = json_pack("{s:s}", "command", hex);
    free(hex);
    json_t *reply = NULL;
    long status = client_call(&x->c, "POST", "/v1/ledger/commands", body, &reply);
    /* 503 (no leader, leadership changed, outcome unknown): resending the same bytes is
     * safe, the ledger answers a command it already applied with its original result. */
    for (int i = 1; i < LEDGER_CLI_ATTEMPTS && status == 503; i++) {
        json_decref(reply);
        reply = NULL;
        usleep(LEDGER_CLI_RETRY_MS * 1000);
        status = client_call(&x->c, "POST", "/v1/ledger/commands", body, &reply);
    }
    json_decref(body);
    int code = 1;
    json_t *rc = json_object_get(reply, "reason_code");
    if (reason)
        *reason = json_is_integer(rc) ? (int)json_integer_value(rc) : -1;
    if (status == 200) {
        code = 0;
        if (x->c.json)
            print_json(reply);
        else if (!quiet) {
            char tx[32] = "";
            if (json_is_integer(json_object_get(reply, "tx_seq")))
                snprintf(tx, sizeof tx, ", tx %lld",
                         (long long)json_integer_value(json_object_get(reply, "tx_seq")));
            printf("accepted%s (index %lld%s)\n",
                   json_is_true(json_object_get(reply, "duplicate")) ? " earlier, same command"
                                                                     : "",
                   (long long)json_integer_value(json_object_get(reply, "index")), tx);
        }
    } else if (status > 0 && !(quiet && json_is_integer(rc))) {
        client_print_error(status, reply);
    }
    json_decref(reply);
    return code;
}

static bool amount(struct lctx *x, uint64_t *out)
{
    unsigned long long v = 0;
    if (opt(x, "amount") == NULL || !cli_get_u64(x->spec, &x->vals, "amount", UINT64_MAX, &v) ||
        v == 0) {
        cli_error("--amount must be a positive integer");
        return false;
    }
    *out = v;
    return true;
}

static int do_mint(struct lctx *x)
{
    uint8_t pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES];
    struct ledger_cmd c;
    uint64_t n = 0;
    const char *to = opt(x, "to");
    if (to == NULL || !amount(x, &n)) {
        cli_error("usage: nexus ledger mint --to ACCOUNT --amount N");
        return 2;
    }
    int rc = operator_key(x, pk, sk);
    if (rc == 0)
        rc = fill_header(x, &c, LEDGER_CMD_MINT, pk);
    if (rc == 0) {
        snprintf(c.u.mint.to, sizeof c.u.mint.to, "%s", to);
        c.u.mint.amount = n;
        rc = submit(x, &c, sk, NULL, false);
    }
    sodium_memzero(sk, sizeof sk);
    return rc;
}

static int do_transfer(struct lctx *x)
{
    const char *from = opt(x, "from"), *to = opt(x, "to");
    uint64_t n = 0;
    if (from == NULL || to == NULL || !amount(x, &n)) {
        cli_error("usage: nexus ledger transfer --from A --to B --amount N [--key-file FILE]");
        return 2;
    }
    char path[LEDGER_CLI_PATH_MAX];
    if (opt(x, "key-file"))
        snprintf(path, sizeof path, "%s", opt(x, "key-file"));
    else
        snprintf(path, sizeof path, "./%s.key", from);
    uint8_t pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES];
    struct ledger_cmd c;
    int rc = read_key(path, pk, sk);
    if (rc == 0)
        rc = fill_header(x, &c, LEDGER_CMD_TRANSFER, pk);
    if (rc == 0) {
        snprintf(c.u.transfer.from, sizeof c.u.transfer.from, "%s", from);
        snprintf(c.u.transfer.to, sizeof c.u.transfer.to, "%s", to);
        c.u.transfer.amount = n;
        rc = submit(x, &c, sk, NULL, false);
    }
    sodium_memzero(sk, sizeof sk);
    return rc;
}

static int do_account_create(struct lctx *x, const char *name)
{
    char path[LEDGER_CLI_PATH_MAX], err[LEDGER_CLI_PATH_MAX + 128];
    if (opt(x, "key-file"))
        snprintf(path, sizeof path, "%s", opt(x, "key-file"));
    else
        snprintf(path, sizeof path, "./%s.key", name);
    uint8_t op_pk[LEDGER_KEY_BYTES], op_sk[LEDGER_SECRET_KEY_BYTES];
    uint8_t pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES];
    if (operator_key(x, op_pk, op_sk) != 0)
        return 1;
    bool created = false;
    int rc = 0;
    if (access(path, F_OK) == 0) {
        rc = read_key(path, pk, sk);
    } else if (ledger_key_file_create(path, pk, sk, err, sizeof err) != NX_OK) {
        cli_error("%s", err);
        rc = 1;
    } else {
        created = true;
    }
    sodium_memzero(sk, sizeof sk);
    const char *tenant = opt(x, "tenant");
    struct ledger_cmd c;
    if (rc == 0)
        rc = fill_header(x, &c, LEDGER_CMD_TENANT_CREATE, op_pk);
    if (rc == 0) {
        int reason = -1;
        snprintf(c.u.tenant.name, sizeof c.u.tenant.name, "%s", tenant);
        memcpy(c.u.tenant.owner, op_pk, LEDGER_KEY_BYTES);
        randombytes_buf(c.idem_key, LEDGER_IDEM_BYTES); /* not the account's key */
        rc = submit(x, &c, op_sk, &reason, true);
        if (rc != 0 && reason == LEDGER_REJ_EXISTS)
            rc = 0; /* the tenant is there already */
        else if (rc != 0 && reason >= 0)
            cli_error("cannot create tenant '%s': %s", tenant, ledger_reason_str(reason));
    }
    if (rc == 0)
        rc = fill_header(x, &c, LEDGER_CMD_ACCOUNT_CREATE, op_pk);
    if (rc == 0) {
        snprintf(c.u.account.name, sizeof c.u.account.name, "%s", name);
        snprintf(c.u.account.tenant, sizeof c.u.account.tenant, "%s", tenant);
        memcpy(c.u.account.key, pk, LEDGER_KEY_BYTES);
        rc = submit(x, &c, op_sk, NULL, false);
    }
    sodium_memzero(op_sk, sizeof op_sk);
    if (rc != 0 && created)
        unlink(path);
    else if (rc == 0 && !x->c.json)
        printf("account %s: key in %s\n", name, path);
    return rc;
}

#define TOKEN_MAX_TTL_MS (365ull * 86400000)
#define TOKEN_MAX_USES 1000

/* The member the CLI talks to: its node id goes into the token (join.h). */
static int member_id(struct lctx *x, uint8_t pk[NODE_PK_BYTES], char addr[NODE_ADDR_MAX])
{
    json_t *r = NULL;
    long status = client_call(&x->c, "GET", "/v1/status", NULL, &r);
    const char *hex = json_string_value(json_object_get(r, "node_id"));
    int rc = status == 200 && hex && strlen(hex) == NODE_ID_HEX_LEN &&
                     nx_hex_decode(pk, NODE_PK_BYTES, hex) == NX_OK
                 ? 0
                 : 1;
    if (rc != 0 && status > 0)
        client_print_error(status, r);
    const char *bind = json_string_value(json_object_get(r, "address"));
    snprintf(addr, NODE_ADDR_MAX, "%s", bind ? bind : "");
    json_decref(r);
    return rc;
}

static int do_token_create(struct lctx *x)
{
    unsigned long long ttl_ms = 3600000, uses = 1;
    if (!cli_get_duration_ms(x->spec, &x->vals, "ttl", TOKEN_MAX_TTL_MS, &ttl_ms) ||
        !cli_get_u64(x->spec, &x->vals, "uses", TOKEN_MAX_USES, &uses))
        return 2;
    if (uses == 0) {
        cli_error("token: --uses must be at least 1");
        return 2;
    }
    uint8_t op_pk[LEDGER_KEY_BYTES], op_sk[LEDGER_SECRET_KEY_BYTES], member[NODE_PK_BYTES];
    uint8_t rnd[LEDGER_TOKEN_RANDOM_BYTES], vpk[LEDGER_KEY_BYTES], vsk[LEDGER_SECRET_KEY_BYTES];
    char secret[LEDGER_STR_CAP], addr[NODE_ADDR_MAX];
    struct ledger_cmd c;
    if (member_id(x, member, addr) != 0 || operator_key(x, op_pk, op_sk) != 0)
        return 1;
    int rc = fill_header(x, &c, LEDGER_CMD_TOKEN_CREATE, op_pk);
    randombytes_buf(rnd, sizeof rnd);
    ledger_token_new(rnd, c.u.token_create.id, secret);
    if (rc == 0 && ledger_token_keypair(c.cluster_id, c.u.token_create.id, secret, vpk, vsk) != 0)
        rc = 1;
    sodium_memzero(vsk, sizeof vsk);
    if (rc == 0) {
        memcpy(c.u.token_create.verifier, vpk, LEDGER_KEY_BYTES);
        c.u.token_create.expires_ms = c.created_ms + ttl_ms;
        c.u.token_create.uses = (uint32_t)uses;
        rc = submit(x, &c, op_sk, NULL, true);
    }
    sodium_memzero(op_sk, sizeof op_sk);
    uint8_t pin[LEDGER_HASH_BYTES];
    char ljs[LEDGER_JOIN_STRING_BYTES], token[JOIN_TOKEN_MAX];
    ledger_operator_pin(op_pk, pin);
    if (rc == 0 &&
        (ledger_join_string_format(c.cluster_id, pin, c.u.token_create.id, secret, ljs) != NX_OK ||
         join_token_format(ljs, member, token) != NX_OK))
        rc = 1;
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(ljs, sizeof ljs);
    if (rc != 0)
        return rc;
    if (x->c.json) {
        json_t *o =
            json_pack("{s:s,s:s,s:I,s:I}", "token", token, "id", c.u.token_create.id, "expires_ms",
                      (json_int_t)c.u.token_create.expires_ms, "uses", (json_int_t)uses);
        print_json(o);
        json_decref(o);
    } else {
        printf("%s\n", token);
        fprintf(stderr,
                "token %s: admits %llu node%s for %llu s; join with\n"
                "  nexus node --join %s --token <the token above> --data-dir DIR\n",
                c.u.token_create.id, uses, uses == 1 ? "" : "s", ttl_ms / 1000,
                addr[0] ? addr : "<this member's --bind address>");
    }
    sodium_memzero(token, sizeof token);
    return 0;
}

static int do_member_remove(struct lctx *x, const char *hex)
{
    uint8_t pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES];
    struct ledger_cmd c;
    int rc = operator_key(x, pk, sk);
    if (rc == 0)
        rc = fill_header(x, &c, LEDGER_CMD_NODE_REMOVE, pk);
    if (rc == 0 && (strlen(hex) != NODE_ID_HEX_LEN ||
                    nx_hex_decode(c.u.node_remove.node, LEDGER_KEY_BYTES, hex) != NX_OK)) {
        cli_error("members remove: NODE_ID must be a node id (64 hex digits, see 'nexus members "
                  "--json')");
        rc = 2;
    }
    if (rc == 0)
        rc = submit(x, &c, sk, NULL, false);
    sodium_memzero(sk, sizeof sk);
    return rc;
}

static int do_tenant_create(struct lctx *x, const char *name)
{
    uint8_t pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES], owner[LEDGER_KEY_BYTES];
    uint8_t osk[LEDGER_SECRET_KEY_BYTES];
    struct ledger_cmd c;
    int rc = operator_key(x, pk, sk);
    memcpy(owner, pk, LEDGER_KEY_BYTES);
    if (rc == 0 && opt(x, "owner-key"))
        rc = read_key(opt(x, "owner-key"), owner, osk);
    sodium_memzero(osk, sizeof osk);
    if (rc == 0)
        rc = fill_header(x, &c, LEDGER_CMD_TENANT_CREATE, pk);
    if (rc == 0) {
        snprintf(c.u.tenant.name, sizeof c.u.tenant.name, "%s", name);
        memcpy(c.u.tenant.owner, owner, LEDGER_KEY_BYTES);
        rc = submit(x, &c, sk, NULL, false);
    }
    sodium_memzero(sk, sizeof sk);
    return rc;
}

/* --subject: 64 hex digits, or a key file whose public key is taken. */
static int subject_key(struct lctx *x, uint8_t pk[LEDGER_KEY_BYTES])
{
    const char *s = opt(x, "subject");
    uint8_t sk[LEDGER_SECRET_KEY_BYTES];
    if (s == NULL) {
        cli_error("perm: --subject ID|FILE is required (who gets the permission)");
        return 2;
    }
    if (strlen(s) == 2 * LEDGER_KEY_BYTES && nx_hex_decode(pk, LEDGER_KEY_BYTES, s) == NX_OK)
        return 0;
    int rc = read_key(s, pk, sk);
    sodium_memzero(sk, sizeof sk);
    return rc;
}

static int do_perm(struct lctx *x, bool grant, const char *action, const char *resource)
{
    uint8_t pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES];
    struct ledger_cmd c;
    int rc = opt(x, "key-file") ? read_key(opt(x, "key-file"), pk, sk) : operator_key(x, pk, sk);
    if (rc == 0)
        rc = fill_header(x, &c, grant ? LEDGER_CMD_PERM_GRANT : LEDGER_CMD_PERM_REVOKE, pk);
    if (rc == 0)
        rc = subject_key(x, c.u.perm.subject);
    if (rc == 0) {
        snprintf(c.u.perm.action, sizeof c.u.perm.action, "%s", action);
        snprintf(c.u.perm.resource, sizeof c.u.perm.resource, "%s", resource);
        rc = submit(x, &c, sk, NULL, false);
    }
    sodium_memzero(sk, sizeof sk);
    return rc;
}

static void print_registry(const char *sub, json_t *r)
{
    size_t i;
    json_t *e;
    if (strcmp(sub, "nodes") == 0) {
        json_array_foreach(json_object_get(r, "nodes"), i, e)
            printf("%s  member   token %s\n", json_string_value(json_object_get(e, "id")),
                   json_string_value(json_object_get(e, "token"))[0]
                       ? json_string_value(json_object_get(e, "token"))
                       : "-");
        json_array_foreach(json_object_get(r, "removed"), i, e)
            printf("%s  removed\n", json_string_value(json_object_get(e, "id")));
    } else if (strcmp(sub, "tenants") == 0) {
        json_array_foreach(json_object_get(r, "tenants"), i, e)
            printf("%-20s owner %.16s\n", json_string_value(json_object_get(e, "name")),
                   json_string_value(json_object_get(e, "owner")));
    } else {
        json_array_foreach(json_object_get(r, "audit"), i, e)
            printf("%8lld %-16s %-28s %.16s%s\n",
                   (long long)json_integer_value(json_object_get(e, "index")),
                   json_string_value(json_object_get(e, "command")),
                   json_string_value(json_object_get(e, "result")),
                   json_string_value(json_object_get(e, "author")),
                   json_is_true(json_object_get(e, "duplicate")) ? " (duplicate)" : "");
    }
}

static int do_read(struct lctx *x, const char *sub)
{
    char path[256];
    const char *stale = cli_flag(x->spec, &x->vals, "stale") ? "stale" : "";
    unsigned long long after = 0, limit = 0;
    if (strcmp(sub, "balance") == 0) {
        if (x->n_pos != 2) {
            cli_error("usage: nexus ledger balance ACCOUNT");
            return 2;
        }
        snprintf(path, sizeof path, "/v1/ledger/balance/%.64s?%s", x->pos[1], stale);
    } else if (strcmp(sub, "log") == 0 || strcmp(sub, "audit") == 0) {
        if (!cli_get_u64(x->spec, &x->vals, "after", UINT64_MAX, &after) ||
            !cli_get_u64(x->spec, &x->vals, "limit", LEDGER_HOST_LOG_MAX_LIMIT, &limit))
            return 2;
        snprintf(path, sizeof path, "/v1/ledger/%s?after=%llu&limit=%llu%s%s", sub, after, limit,
                 stale[0] ? "&" : "", stale);
    } else {
        snprintf(path, sizeof path, "/v1/ledger/%s?%s", sub, stale);
    }
    json_t *r = NULL;
    long status = client_call(&x->c, "GET", path, NULL, &r);
    int code = status >= 200 && status < 300 ? 0 : 1;
    if (x->c.json && status > 0) {
        print_json(r);
    } else if (code != 0) {
        if (status > 0)
            client_print_error(status, r);
    } else if (strcmp(sub, "balance") == 0) {
        printf("%lld\n", (long long)json_integer_value(json_object_get(r, "balance")));
    } else if (strcmp(sub, "verify") == 0) {
        printf("ok: %lld transactions, supply %lld, head %s\n",
               (long long)json_integer_value(json_object_get(r, "transactions")),
               (long long)json_integer_value(json_object_get(r, "supply")),
               json_string_value(json_object_get(r, "head")));
    } else if (strcmp(sub, "nodes") == 0 || strcmp(sub, "tenants") == 0 ||
               strcmp(sub, "audit") == 0) {
        print_registry(sub, r);
    } else if (strcmp(sub, "accounts") == 0) {
        size_t i;
        json_t *a;
        json_array_foreach(json_object_get(r, "accounts"), i, a)
        {
            printf("%-20s %-12s %lld\n", json_string_value(json_object_get(a, "name")),
                   json_string_value(json_object_get(a, "tenant")),
                   (long long)json_integer_value(json_object_get(a, "balance")));
        }
    } else {
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(r, "transactions"), i, t)
        {
            printf("%6lld %-8s %-16s -> %-16s %lld\n",
                   (long long)json_integer_value(json_object_get(t, "seq")),
                   json_string_value(json_object_get(t, "kind")),
                   json_string_value(json_object_get(t, "from")),
                   json_string_value(json_object_get(t, "to")),
                   (long long)json_integer_value(json_object_get(t, "amount")));
        }
    }
    if (code != 0 && strcmp(sub, "verify") == 0 && status == 409 && !x->c.json)
        fprintf(stderr, "nexus: ledger verification FAILED\n");
    json_decref(r);
    return code;
}

static int run(const struct cli_cmd *spec, int argc, char **argv)
{
    struct lctx x;
    int rc = parse(&x, spec, argc, argv);
    if (rc != CLI_OK)
        return rc == CLI_HELP ? 0 : 2;
    int exit_code = 2;
    const char *sub = x.n_pos > 0 ? x.pos[0] : "";
    bool account = spec == &cmd_account_spec, token = spec == &cmd_token_spec;
    bool remove = spec == &cmd_member_remove_spec, tenant = spec == &cmd_tenant_spec;
    bool perm = spec == &cmd_perm_spec;
    bool known = remove   ? x.n_pos == 1
                 : tenant ? strcmp(sub, "create") == 0 && x.n_pos == 2
                 : perm  ? (strcmp(sub, "grant") == 0 || strcmp(sub, "revoke") == 0) && x.n_pos == 3
                 : token ? strcmp(sub, "create") == 0 && x.n_pos == 1
                 : account ? strcmp(sub, "create") == 0 && x.n_pos == 2
                           : strcmp(sub, "balance") == 0 || strcmp(sub, "accounts") == 0 ||
                                 strcmp(sub, "mint") == 0 || strcmp(sub, "transfer") == 0 ||
                                 strcmp(sub, "log") == 0 || strcmp(sub, "verify") == 0 ||
                                 strcmp(sub, "nodes") == 0 || strcmp(sub, "tenants") == 0 ||
                                 strcmp(sub, "audit") == 0;
    if (!known) {
        cli_error("usage: nexus %s %s", spec->name, spec->args);
        goto out;
    }
    exit_code = 1;
    if (!client_init(&x.c, spec, &x.vals))
        goto out;
    if (remove)
        exit_code = do_member_remove(&x, sub);
    else if (tenant)
        exit_code = do_tenant_create(&x, x.pos[1]);
    else if (perm)
        exit_code = do_perm(&x, strcmp(sub, "grant") == 0, x.pos[1], x.pos[2]);
    else if (token)
        exit_code = do_token_create(&x);
    else if (account)
        exit_code = do_account_create(&x, x.pos[1]);
    else if (strcmp(sub, "mint") == 0)
        exit_code = do_mint(&x);
    else if (strcmp(sub, "transfer") == 0)
        exit_code = do_transfer(&x);
    else
        exit_code = do_read(&x, sub);
    client_free(&x.c);
out:
    cli_values_free(&x.vals);
    return exit_code;
}

int cmd_ledger(int argc, char **argv)
{
    return run(&cmd_ledger_spec, argc, argv);
}

int cmd_account(int argc, char **argv)
{
    return run(&cmd_account_spec, argc, argv);
}

int cmd_token(int argc, char **argv)
{
    return run(&cmd_token_spec, argc, argv);
}

int cmd_tenant(int argc, char **argv)
{
    return run(&cmd_tenant_spec, argc, argv);
}

int cmd_perm(int argc, char **argv)
{
    return run(&cmd_perm_spec, argc, argv);
}

int cmd_member_remove(int argc, char **argv)
{
    return run(&cmd_member_remove_spec, argc, argv);
}
