/*
 * cmd.c - command bytes: the canonical layout, signing and verification, the
 * Raft entry wrapper, join-token proofs and publisher signatures. Used on the
 * client (the CLI builds and signs) and by the state machine (decode, verify).
 *
 * Command bytes (docs/ledger.md "Commands" gives them byte by byte):
 *   header (LEDGER_CMD_HEADER_BYTES = 112) | body | Ed25519 signature (64)
 * The signature covers everything before it; the header starts with the
 * domain-separation string, so the signed bytes are a prefix of the command
 * itself and verification needs no copy.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/codec.h"
#include "ledger/internal.h"
#include "ledger/ledger.h"

static const char CMD_DOMAIN[16] = "NXLEDGER-cmd-v1:";
static const char ENTRY_DOMAIN[8] = "NXLE-v1:";
static const char JOIN_DOMAIN[16] = "NXLEDGER-join-1:";
static const char TOKEN_DOMAIN[16] = "NXLEDGER-tokn-1:";
static const char AGENT_DOMAIN[16] = "NXLEDGER-agnt-1:";

_Static_assert(sizeof CMD_DOMAIN == 16, "domain is 16 bytes, no NUL");
_Static_assert(16 + 1 + 3 + 4 + LEDGER_CLUSTER_ID_BYTES + LEDGER_KEY_BYTES + LEDGER_IDEM_BYTES +
                       8 ==
                   LEDGER_CMD_HEADER_BYTES,
               "command header layout");

/* A publish command's manifest: u32 length | bytes, at most LEDGER_MANIFEST_MAX_BYTES. */
static void body_manifest(struct codec *c, struct ledger_cmd_agent_publish *p)
{
    size_t n = p->manifest_len;
    if (!c->decode && n > LEDGER_MANIFEST_MAX_BYTES) {
        c->err = true;
        return;
    }
    f_blob(c, p->manifest, &n, LEDGER_MANIFEST_MAX_BYTES);
    p->manifest_len = (uint32_t)n;
}

/* The body layout of each command type, in both directions. */
static void body_fields(struct codec *c, uint8_t type, struct ledger_cmd *cmd)
{
    switch (type) {
    case LEDGER_CMD_GENESIS:
        f_fixed(c, cmd->u.genesis.first_node, LEDGER_KEY_BYTES);
        f_u64(c, &cmd->u.genesis.window_ms);
        break;
    case LEDGER_CMD_NODE_ADMIT:
        f_fixed(c, cmd->u.admit.node, LEDGER_KEY_BYTES);
        f_name(c, cmd->u.admit.token_id, NAME_EMPTY_OK);
        f_fixed(c, cmd->u.admit.pin_cluster, LEDGER_CLUSTER_ID_BYTES);
        f_fixed(c, cmd->u.admit.pin_operator, LEDGER_HASH_BYTES);
        f_fixed(c, cmd->u.admit.nonce, LEDGER_NONCE_BYTES);
        f_fixed(c, cmd->u.admit.proof, LEDGER_SIG_BYTES);
        break;
    case LEDGER_CMD_NODE_REMOVE:
        f_fixed(c, cmd->u.node_remove.node, LEDGER_KEY_BYTES);
        break;
    case LEDGER_CMD_TOKEN_CREATE:
        f_name(c, cmd->u.token_create.id, 0);
        f_fixed(c, cmd->u.token_create.verifier, LEDGER_KEY_BYTES);
        f_u64(c, &cmd->u.token_create.expires_ms);
        f_u32(c, &cmd->u.token_create.uses);
        break;
    case LEDGER_CMD_TOKEN_EXPIRE:
        f_name(c, cmd->u.token_expire.id, 0);
        break;
    case LEDGER_CMD_TENANT_CREATE:
        f_name(c, cmd->u.tenant.name, 0);
        f_fixed(c, cmd->u.tenant.owner, LEDGER_KEY_BYTES);
        break;
    case LEDGER_CMD_ACCOUNT_CREATE:
        f_name(c, cmd->u.account.name, 0);
        f_name(c, cmd->u.account.tenant, 0);
        f_fixed(c, cmd->u.account.key, LEDGER_KEY_BYTES);
        break;
    case LEDGER_CMD_AGENT_PUBLISH:
        f_name(c, cmd->u.publish.name, 0);
        f_name(c, cmd->u.publish.version, 0);
        f_name(c, cmd->u.publish.tenant, 0);
        f_fixed(c, cmd->u.publish.manifest_hash, LEDGER_HASH_BYTES);
        f_fixed(c, cmd->u.publish.bundle_hash, LEDGER_HASH_BYTES);
        f_fixed(c, cmd->u.publish.publisher_sig, LEDGER_SIG_BYTES);
        body_manifest(c, &cmd->u.publish);
        break;
    case LEDGER_CMD_AGENT_DEPRECATE:
        f_name(c, cmd->u.deprecate.name, 0);
        f_name(c, cmd->u.deprecate.version, 0);
        break;
    case LEDGER_CMD_DEPLOY_PUT:
        f_name(c, cmd->u.deploy.name, 0);
        f_name(c, cmd->u.deploy.tenant, 0);
        f_name(c, cmd->u.deploy.agent, 0);
        f_name(c, cmd->u.deploy.version, 0);
        f_u32(c, &cmd->u.deploy.replicas);
        break;
    case LEDGER_CMD_DEPLOY_DELETE:
        f_name(c, cmd->u.deploy_delete.name, 0);
        break;
    case LEDGER_CMD_PERM_GRANT:
    case LEDGER_CMD_PERM_REVOKE:
        f_fixed(c, cmd->u.perm.subject, LEDGER_KEY_BYTES);
        f_name(c, cmd->u.perm.action, 0);
        f_name(c, cmd->u.perm.resource, NAME_STAR_OK);
        break;
    case LEDGER_CMD_TRANSFER:
        f_name(c, cmd->u.transfer.from, 0);
        f_name(c, cmd->u.transfer.to, 0);
        f_u64(c, &cmd->u.transfer.amount);
        break;
    case LEDGER_CMD_MINT:
        f_name(c, cmd->u.mint.to, 0);
        f_u64(c, &cmd->u.mint.amount);
        break;
    case LEDGER_CMD_CHARGE:
        f_name(c, cmd->u.charge.account, 0);
        f_name(c, cmd->u.charge.payee, 0);
        f_u64(c, &cmd->u.charge.amount);
        f_name(c, cmd->u.charge.run_id, 0);
        break;
    default:
        c->err = true;
    }
}

static void header_fields(struct codec *c, struct ledger_cmd *cmd, uint32_t *body_len)
{
    uint8_t domain[16], zero[3] = {0, 0, 0};
    memcpy(domain, CMD_DOMAIN, 16);
    f_fixed(c, domain, 16);
    f_u8(c, &cmd->type);
    f_fixed(c, zero, 3);
    f_u32(c, body_len);
    f_fixed(c, cmd->cluster_id, LEDGER_CLUSTER_ID_BYTES);
    f_fixed(c, cmd->author, LEDGER_KEY_BYTES);
    f_fixed(c, cmd->idem_key, LEDGER_IDEM_BYTES);
    f_u64(c, &cmd->created_ms);
    if (c->decode && (memcmp(domain, CMD_DOMAIN, 16) != 0 || zero[0] || zero[1] || zero[2]))
        c->err = true;
}

int ledger_cmd_build(const struct ledger_cmd *cmd_in, const uint8_t sk[LEDGER_SECRET_KEY_BYTES],
                     uint8_t **out, size_t *out_len)
{
    if (memcmp(cmd_in->author, sk + 32, LEDGER_KEY_BYTES) != 0)
        return NX_ERR_INVAL;         /* libsodium secret key: seed | public key */
    struct ledger_cmd cmd = *cmd_in; /* the visitor takes non-const fields */
    struct codec body, all;
    codec_enc_init(&body);
    codec_enc_init(&all);
    int rc = NX_ERR_INVAL;
    body_fields(&body, cmd.type, &cmd);
    if (body.err)
        goto out;
    uint32_t body_len = (uint32_t)body.len;
    header_fields(&all, &cmd, &body_len);
    f_fixed(&all, body.buf, body.len);
    uint8_t sig[LEDGER_SIG_BYTES] = {0};
    f_fixed(&all, sig, LEDGER_SIG_BYTES);
    if (all.err) {
        rc = NX_ERR_NOMEM;
        goto out;
    }
    if (all.len > LEDGER_MAX_ENTRY_BYTES - LEDGER_ENTRY_HEADER_BYTES) {
        rc = NX_ERR_TOO_BIG;
        goto out;
    }
    size_t signed_len = all.len - LEDGER_SIG_BYTES;
    crypto_sign_detached(all.buf + signed_len, NULL, all.buf, signed_len, sk);
    *out = all.buf;
    *out_len = all.len;
    all.buf = NULL;
    rc = 0;
out:
    codec_free(&body);
    codec_free(&all);
    return rc;
}

int ledger_cmd_decode(const uint8_t *buf, size_t len, struct ledger_cmd *out)
{
    if (len < LEDGER_CMD_HEADER_BYTES + LEDGER_SIG_BYTES || len > LEDGER_MAX_ENTRY_BYTES)
        return NX_ERR_DECODE;
    memset(out, 0, sizeof *out);
    struct codec c;
    codec_dec_init(&c, buf, LEDGER_CMD_HEADER_BYTES);
    uint32_t body_len = 0;
    header_fields(&c, out, &body_len);
    if (!codec_done(&c) || body_len != len - LEDGER_CMD_HEADER_BYTES - LEDGER_SIG_BYTES)
        return NX_ERR_DECODE;
    codec_dec_init(&c, buf + LEDGER_CMD_HEADER_BYTES, body_len);
    body_fields(&c, out->type, out);
    return codec_done(&c) ? 0 : NX_ERR_DECODE;
}

int ledger_cmd_verify(const uint8_t *buf, size_t len)
{
    if (len < LEDGER_CMD_HEADER_BYTES + LEDGER_SIG_BYTES)
        return NX_ERR_BAD_SIG;
    const uint8_t *author = buf + 40;
    size_t signed_len = len - LEDGER_SIG_BYTES;
    if (crypto_sign_verify_detached(buf + signed_len, buf, signed_len, author) != 0)
        return NX_ERR_BAD_SIG;
    return 0;
}

int ledger_cmd_build_transfer(const uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES],
                              const uint8_t sk[LEDGER_SECRET_KEY_BYTES], const char *from,
                              const char *to, uint64_t amount,
                              const uint8_t idem_key[LEDGER_IDEM_BYTES], uint64_t created_ms,
                              uint8_t **out, size_t *out_len)
{
    struct ledger_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = LEDGER_CMD_TRANSFER;
    memcpy(cmd.cluster_id, cluster_id, LEDGER_CLUSTER_ID_BYTES);
    memcpy(cmd.author, sk + 32, LEDGER_KEY_BYTES); /* libsodium: seed | public key */
    memcpy(cmd.idem_key, idem_key, LEDGER_IDEM_BYTES);
    cmd.created_ms = created_ms;
    if (strlen(from) > LEDGER_NAME_MAX || strlen(to) > LEDGER_NAME_MAX)
        return NX_ERR_INVAL;
    strcpy(cmd.u.transfer.from, from);
    strcpy(cmd.u.transfer.to, to);
    cmd.u.transfer.amount = amount;
    return ledger_cmd_build(&cmd, sk, out, out_len);
}

int ledger_entry_wrap(const uint8_t *cmd, size_t cmd_len, uint64_t proposer_time_ms, uint8_t **out,
                      size_t *out_len)
{
    if (cmd_len > LEDGER_MAX_ENTRY_BYTES - LEDGER_ENTRY_HEADER_BYTES)
        return NX_ERR_TOO_BIG;
    uint8_t *e = malloc(LEDGER_ENTRY_HEADER_BYTES + cmd_len);
    if (!e)
        return NX_ERR_NOMEM;
    memcpy(e, ENTRY_DOMAIN, 8);
    le64_put(e + 8, proposer_time_ms);
    memcpy(e + LEDGER_ENTRY_HEADER_BYTES, cmd, cmd_len);
    *out = e;
    *out_len = LEDGER_ENTRY_HEADER_BYTES + cmd_len;
    return 0;
}

/* ---- join tokens ---------------------------------------------------------- */

static bool token_str_ok(const char *s, size_t len)
{
    if (strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

int ledger_token_keypair(const uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES], const char *token_id,
                         const char *secret, uint8_t pk[LEDGER_KEY_BYTES],
                         uint8_t sk[LEDGER_SECRET_KEY_BYTES])
{
    if (!token_str_ok(token_id, LEDGER_TOKEN_ID_LEN) ||
        !token_str_ok(secret, LEDGER_TOKEN_SECRET_LEN))
        return NX_ERR_INVAL;
    /* seed = BLAKE2b-256(key = secret, "NXLEDGER-tokn-1:" | cluster id | token id) */
    uint8_t msg[16 + LEDGER_CLUSTER_ID_BYTES + LEDGER_TOKEN_ID_LEN];
    memcpy(msg, TOKEN_DOMAIN, 16);
    memcpy(msg + 16, cluster_id, LEDGER_CLUSTER_ID_BYTES);
    memcpy(msg + 16 + LEDGER_CLUSTER_ID_BYTES, token_id, LEDGER_TOKEN_ID_LEN);
    uint8_t seed[crypto_sign_SEEDBYTES];
    crypto_generichash(seed, sizeof seed, msg, sizeof msg, (const uint8_t *)secret,
                       LEDGER_TOKEN_SECRET_LEN);
    crypto_sign_seed_keypair(pk, sk, seed);
    sodium_memzero(seed, sizeof seed);
    return 0;
}

void ledger_token_new(const uint8_t random[LEDGER_TOKEN_RANDOM_BYTES], char id[LEDGER_STR_CAP],
                      char secret[LEDGER_STR_CAP])
{
    static const char b32[33] = "abcdefghijklmnopqrstuvwxyz234567";
    char all[LEDGER_TOKEN_ID_LEN + LEDGER_TOKEN_SECRET_LEN];
    for (size_t i = 0; i < sizeof all; i++) {
        size_t bit = i * 5, byte = bit / 8, shift = bit % 8;
        unsigned v =
            random[byte] | (byte + 1 < LEDGER_TOKEN_RANDOM_BYTES ? random[byte + 1] << 8 : 0);
        all[i] = b32[(v >> shift) & 31];
    }
    memcpy(id, all, LEDGER_TOKEN_ID_LEN);
    id[LEDGER_TOKEN_ID_LEN] = '\0';
    memcpy(secret, all + LEDGER_TOKEN_ID_LEN, LEDGER_TOKEN_SECRET_LEN);
    secret[LEDGER_TOKEN_SECRET_LEN] = '\0';
    sodium_memzero(all, sizeof all);
}

/* "NXLEDGER-join-1:" | cluster id | token id | joiner key | nonce */
#define JOIN_MSG_BYTES                                                                             \
    (16 + LEDGER_CLUSTER_ID_BYTES + LEDGER_TOKEN_ID_LEN + LEDGER_KEY_BYTES + LEDGER_NONCE_BYTES)

static void join_msg(uint8_t msg[JOIN_MSG_BYTES], const uint8_t *cluster_id, const char *token_id,
                     const uint8_t *joiner_pk, const uint8_t *nonce)
{
    uint8_t *p = msg;
    memcpy(p, JOIN_DOMAIN, 16);
    p += 16;
    memcpy(p, cluster_id, LEDGER_CLUSTER_ID_BYTES);
    p += LEDGER_CLUSTER_ID_BYTES;
    memcpy(p, token_id, LEDGER_TOKEN_ID_LEN);
    p += LEDGER_TOKEN_ID_LEN;
    memcpy(p, joiner_pk, LEDGER_KEY_BYTES);
    p += LEDGER_KEY_BYTES;
    memcpy(p, nonce, LEDGER_NONCE_BYTES);
}

int ledger_token_proof(const uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES], const char *token_id,
                       const char *secret, const uint8_t joiner_pk[LEDGER_KEY_BYTES],
                       const uint8_t nonce[LEDGER_NONCE_BYTES], uint8_t proof[LEDGER_SIG_BYTES])
{
    uint8_t pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES];
    int rc = ledger_token_keypair(cluster_id, token_id, secret, pk, sk);
    if (rc < 0)
        return rc;
    uint8_t msg[JOIN_MSG_BYTES];
    join_msg(msg, cluster_id, token_id, joiner_pk, nonce);
    crypto_sign_detached(proof, NULL, msg, sizeof msg, sk);
    sodium_memzero(sk, sizeof sk);
    return 0;
}

bool ledger_token_proof_ok(const uint8_t *cluster_id, const char *token_id,
                           const uint8_t *joiner_pk, const uint8_t *nonce, const uint8_t *proof,
                           const uint8_t *verifier)
{
    if (!token_str_ok(token_id, LEDGER_TOKEN_ID_LEN))
        return false;
    uint8_t msg[JOIN_MSG_BYTES];
    join_msg(msg, cluster_id, token_id, joiner_pk, nonce);
    return crypto_sign_verify_detached(proof, msg, sizeof msg, verifier) == 0;
}

void ledger_operator_pin(const uint8_t operator_pk[LEDGER_KEY_BYTES],
                         uint8_t pin[LEDGER_HASH_BYTES])
{
    crypto_generichash(pin, LEDGER_HASH_BYTES, operator_pk, LEDGER_KEY_BYTES, NULL, 0);
}

int ledger_join_string_format(const uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES],
                              const uint8_t operator_pin[LEDGER_HASH_BYTES], const char *token_id,
                              const char *secret, char out[LEDGER_JOIN_STRING_BYTES])
{
    if (!token_str_ok(token_id, LEDGER_TOKEN_ID_LEN) ||
        !token_str_ok(secret, LEDGER_TOKEN_SECRET_LEN))
        return NX_ERR_INVAL;
    char ch[2 * LEDGER_CLUSTER_ID_BYTES + 1], ph[2 * LEDGER_HASH_BYTES + 1];
    nx_hex_encode(ch, cluster_id, LEDGER_CLUSTER_ID_BYTES);
    nx_hex_encode(ph, operator_pin, LEDGER_HASH_BYTES);
    snprintf(out, LEDGER_JOIN_STRING_BYTES, "nxj1.%s.%s.%s.%s", ch, ph, token_id, secret);
    return 0;
}

int ledger_join_string_parse(const char *s, uint8_t cluster_id[LEDGER_CLUSTER_ID_BYTES],
                             uint8_t operator_pin[LEDGER_HASH_BYTES], char token_id[LEDGER_STR_CAP],
                             char secret[LEDGER_STR_CAP])
{
    char ch[2 * LEDGER_CLUSTER_ID_BYTES + 1], ph[2 * LEDGER_HASH_BYTES + 1];
    /* "nxj1." | hex | "." | hex | "." | id | "." | secret */
    size_t want = 5 + sizeof ch + sizeof ph + LEDGER_TOKEN_ID_LEN + 1 + LEDGER_TOKEN_SECRET_LEN;
    if (strlen(s) != want || strncmp(s, "nxj1.", 5) != 0)
        return NX_ERR_INVAL;
    const char *p = s + 5;
    memcpy(ch, p, sizeof ch - 1);
    ch[sizeof ch - 1] = '\0';
    p += sizeof ch - 1;
    if (*p++ != '.')
        return NX_ERR_INVAL;
    memcpy(ph, p, sizeof ph - 1);
    ph[sizeof ph - 1] = '\0';
    p += sizeof ph - 1;
    if (*p++ != '.')
        return NX_ERR_INVAL;
    memcpy(token_id, p, LEDGER_TOKEN_ID_LEN);
    token_id[LEDGER_TOKEN_ID_LEN] = '\0';
    p += LEDGER_TOKEN_ID_LEN;
    if (*p++ != '.')
        return NX_ERR_INVAL;
    memcpy(secret, p, LEDGER_TOKEN_SECRET_LEN);
    secret[LEDGER_TOKEN_SECRET_LEN] = '\0';
    if (nx_hex_decode(cluster_id, LEDGER_CLUSTER_ID_BYTES, ch) < 0 ||
        nx_hex_decode(operator_pin, LEDGER_HASH_BYTES, ph) < 0 ||
        !token_str_ok(token_id, LEDGER_TOKEN_ID_LEN) ||
        !token_str_ok(secret, LEDGER_TOKEN_SECRET_LEN))
        return NX_ERR_INVAL;
    return 0;
}

int ledger_cmd_build_admit(const char *join_string, const uint8_t node_sk[LEDGER_SECRET_KEY_BYTES],
                           const uint8_t nonce[LEDGER_NONCE_BYTES], uint64_t created_ms,
                           uint8_t **out, size_t *out_len)
{
    struct ledger_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    char secret[LEDGER_STR_CAP];
    struct ledger_cmd_node_admit *a = &cmd.u.admit;
    int rc =
        ledger_join_string_parse(join_string, a->pin_cluster, a->pin_operator, a->token_id, secret);
    if (rc < 0)
        return rc;
    cmd.type = LEDGER_CMD_NODE_ADMIT;
    memcpy(cmd.cluster_id, a->pin_cluster, LEDGER_CLUSTER_ID_BYTES);
    memcpy(cmd.author, node_sk + 32, LEDGER_KEY_BYTES);
    memcpy(a->node, cmd.author, LEDGER_KEY_BYTES);
    memcpy(a->nonce, nonce, LEDGER_NONCE_BYTES);
    crypto_generichash(cmd.idem_key, LEDGER_IDEM_BYTES, nonce, LEDGER_NONCE_BYTES,
                       (const uint8_t *)JOIN_DOMAIN, sizeof JOIN_DOMAIN);
    cmd.created_ms = created_ms;
    rc = ledger_token_proof(a->pin_cluster, a->token_id, secret, a->node, nonce, a->proof);
    sodium_memzero(secret, sizeof secret);
    return rc < 0 ? rc : ledger_cmd_build(&cmd, node_sk, out, out_len);
}

/* ---- agent publisher signature --------------------------------------------- */

#define AGENT_MSG_MAX (16 + 2 * (1 + LEDGER_NAME_MAX) + 2 * LEDGER_HASH_BYTES)

static size_t agent_msg(uint8_t *msg, const char *name, const char *version,
                        const uint8_t *manifest_hash, const uint8_t *bundle_hash)
{
    size_t n = 0, nl = strnlen(name, LEDGER_NAME_MAX), vl = strnlen(version, LEDGER_NAME_MAX);
    memcpy(msg, AGENT_DOMAIN, 16);
    n = 16;
    msg[n++] = (uint8_t)nl;
    memcpy(msg + n, name, nl);
    n += nl;
    msg[n++] = (uint8_t)vl;
    memcpy(msg + n, version, vl);
    n += vl;
    memcpy(msg + n, manifest_hash, LEDGER_HASH_BYTES);
    n += LEDGER_HASH_BYTES;
    memcpy(msg + n, bundle_hash, LEDGER_HASH_BYTES);
    return n + LEDGER_HASH_BYTES;
}

void ledger_agent_sign(const char *name, const char *version,
                       const uint8_t manifest_hash[LEDGER_HASH_BYTES],
                       const uint8_t bundle_hash[LEDGER_HASH_BYTES],
                       const uint8_t sk[LEDGER_SECRET_KEY_BYTES], uint8_t sig[LEDGER_SIG_BYTES])
{
    uint8_t msg[AGENT_MSG_MAX];
    size_t n = agent_msg(msg, name, version, manifest_hash, bundle_hash);
    crypto_sign_detached(sig, NULL, msg, n, sk);
}

bool ledger_agent_sig_ok(const char *name, const char *version, const uint8_t *manifest_hash,
                         const uint8_t *bundle_hash, const uint8_t *sig, const uint8_t *pk)
{
    uint8_t msg[AGENT_MSG_MAX];
    size_t n = agent_msg(msg, name, version, manifest_hash, bundle_hash);
    return crypto_sign_verify_detached(sig, msg, n, pk) == 0;
}
