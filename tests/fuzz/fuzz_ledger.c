/*
 * fuzz_ledger.c - libFuzzer harness for the ledger's command decoder and
 * state machine (ledger_cmd_decode, ledger_apply), which take the bytes of
 * committed Raft entries: whatever a client or a faulty leader proposed.
 *
 * Each input gets two fresh in-memory replicas that apply the same entries
 * at the same Raft indexes. data[0] is a flags byte:
 *
 *   bit0  structured: entries are described by CMD_RECORD_BYTES records
 *         (see structured_cmd) and built and signed here with the harness's
 *         keys, so the fuzzer reaches every command's checks; clear: the
 *         entries are [kind][len u16 LE][len bytes], the bytes wrapped as a
 *         command with ledger_entry_wrap when kind bit0 is set, else taken
 *         as the whole Raft entry
 *   bit1  apply a genesis by the operator first
 *   bit2  replay every entry at the next index right after it
 *   bit3  snapshot mode instead: the rest is [chunk][stream], a snapshot
 *         stream that ledger_snapshot_install reads from a source handing
 *         out chunk % 64 + 1 bytes at a time (all at once for 0xff) into a
 *         replica after genesis; bit4: the trailing hash is recomputed here,
 *         so the fuzzer gets past it (a faulty leader can do the same)
 *
 * Invariants (abort = a finding):
 *   - ledger_apply returns 0 (the in-memory store does not fail) and a known
 *     reason; both replicas end every entry with the same transaction head
 *     and the same number of records (deterministic);
 *   - ledger_verify passes after every entry (hash chain, balances, supply,
 *     idempotency index);
 *   - an entry replayed at the next index adds no transaction and changes no
 *     supply (one idempotency key leads to at most one applied command);
 *   - ledger_cmd_decode either refuses bytes or decodes them so that, when
 *     the author is a harness key and the signature verifies, signing the
 *     decoded command again gives exactly the same bytes (canonical form);
 *   - snapshot: ledger_snapshot_install returns 0 or NX_ERR_CORRUPT and
 *     changes nothing when it refuses; an installed state written out and
 *     installed elsewhere writes out the same stream again; queries and
 *     ledger_apply on whatever was installed do not crash.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "ledger/ledger.h"
#include "tests/fuzz/fuzz_harness.h"

#define N_KEYS 4 /* 0: operator; 1..3: users (accounts a1..a3 use keys 1..3) */
#define START_MS 1700000000000ull
#define STEP_MS 1000
#define MAX_INPUT_CMDS 24
#define CMD_RECORD_BYTES 10
#define RAW_HEADER_BYTES 3
#define TOKEN_ID "tok001"
#define TOKEN_SECRET "secretsecret0001"

#define FLAG_STRUCTURED 0x1u
#define FLAG_GENESIS 0x2u
#define FLAG_REPLAY 0x4u
#define FLAG_SNAPSHOT 0x8u
#define FLAG_FIX_HASH 0x10u
#define CHUNK_ALL 0xff
#define SNAPSHOT_SEEDS 4

struct keys {
    uint8_t pk[N_KEYS][LEDGER_KEY_BYTES];
    uint8_t sk[N_KEYS][LEDGER_SECRET_KEY_BYTES];
    uint8_t token_pk[LEDGER_KEY_BYTES];
    uint8_t cluster[LEDGER_CLUSTER_ID_BYTES];
};

static const struct keys *keys(void)
{
    static struct keys k;
    static bool ready;
    if (!ready) {
        NX_ASSERT(sodium_init() >= 0);
        for (int i = 0; i < N_KEYS; i++) {
            uint8_t seed[crypto_sign_SEEDBYTES];
            memset(seed, 0x40 + i, sizeof seed);
            crypto_sign_seed_keypair(k.pk[i], k.sk[i], seed);
        }
        memset(k.cluster, 0xc1, sizeof k.cluster);
        uint8_t tsk[LEDGER_SECRET_KEY_BYTES];
        NX_ASSERT(ledger_token_keypair(k.cluster, TOKEN_ID, TOKEN_SECRET, k.token_pk, tsk) ==
                  NX_OK);
        ready = true;
    }
    return &k;
}

struct replicas {
    struct ledger_store *store[2];
    struct ledger l[2];
    uint64_t index;
    uint64_t time_ms;
};

static void replicas_init(struct replicas *r)
{
    memset(r, 0, sizeof *r);
    r->time_ms = START_MS;
    for (int i = 0; i < 2; i++) {
        r->store[i] = ledger_store_mem_new();
        NX_ASSERT(r->store[i]);
        ledger_init(&r->l[i], r->store[i]);
    }
}

static void replicas_free(struct replicas *r)
{
    for (int i = 0; i < 2; i++)
        ledger_store_mem_free(r->store[i]);
}

static void check_same_state(struct replicas *r)
{
    uint64_t seq[2];
    uint8_t hash[2][LEDGER_HASH_BYTES];
    for (int i = 0; i < 2; i++)
        NX_ASSERT(ledger_tx_head(&r->l[i], &seq[i], hash[i]) == NX_OK);
    NX_ASSERT(seq[0] == seq[1] && memcmp(hash[0], hash[1], LEDGER_HASH_BYTES) == 0);
    NX_ASSERT(ledger_store_mem_count(r->store[0]) == ledger_store_mem_count(r->store[1]));
    char why[256];
    int rc = ledger_verify(&r->l[0], why, sizeof why);
    if (rc != NX_OK)
        fprintf(stderr, "ledger_verify: %s\n", why);
    NX_ASSERT(rc == NX_OK);
}

static uint64_t tx_seq(const struct ledger *l)
{
    uint64_t seq;
    uint8_t hash[LEDGER_HASH_BYTES];
    NX_ASSERT(ledger_tx_head(l, &seq, hash) == NX_OK);
    return seq;
}

static uint64_t supply(const struct ledger *l)
{
    uint64_t s = 0;
    NX_ASSERT(ledger_supply(l, &s) == NX_OK || s == 0);
    return s;
}

/* Applies entry at index on both replicas and commits; returns replica 0's result. */
static void apply_at(struct replicas *r, const uint8_t *entry, size_t len, uint64_t index,
                     struct ledger_result *out)
{
    for (int i = 0; i < 2; i++) {
        struct ledger_batch b;
        struct ledger_result res;
        ledger_batch_init(&b);
        NX_ASSERT(ledger_apply(&r->l[i], entry, len, index, &b, &res) == NX_OK);
        NX_ASSERT(res.reason >= 0 && res.reason < LEDGER_REJ__COUNT);
        NX_ASSERT(ledger_store_commit(r->store[i], &b) == NX_OK);
        ledger_batch_free(&b);
        if (i == 0)
            *out = res;
        else
            NX_ASSERT(res.reason == out->reason && res.duplicate == out->duplicate &&
                      res.tx_seq == out->tx_seq);
    }
}

static void apply_entry(struct replicas *r, const uint8_t *entry, size_t len, bool replay)
{
    struct ledger_result res;
    apply_at(r, entry, len, ++r->index, &res);
    apply_at(r, entry, len, r->index, &res); /* the same index again: nothing */
    NX_ASSERT(res.already_applied);
    if (replay) {
        uint64_t seq = tx_seq(&r->l[0]), sup = supply(&r->l[0]);
        apply_at(r, entry, len, ++r->index, &res);
        NX_ASSERT(tx_seq(&r->l[0]) == seq && supply(&r->l[0]) == sup);
    }
    check_same_state(r);
}

static int key_of(const uint8_t author[LEDGER_KEY_BYTES])
{
    for (int i = 0; i < N_KEYS; i++)
        if (memcmp(keys()->pk[i], author, LEDGER_KEY_BYTES) == 0)
            return i;
    return -1;
}

/* Decodes command bytes; when it can, checks that signing them again is the identity. */
static void check_decode(const uint8_t *cmd, size_t len)
{
    struct ledger_cmd c;
    int rc = ledger_cmd_decode(cmd, len, &c);
    NX_ASSERT(rc == NX_OK || rc == NX_ERR_DECODE);
    if (rc != NX_OK)
        return;
    int k = key_of(c.author);
    if (k < 0 || ledger_cmd_verify(cmd, len) != NX_OK)
        return;
    uint8_t *again;
    size_t again_len;
    NX_ASSERT(ledger_cmd_build(&c, keys()->sk[k], &again, &again_len) == NX_OK);
    NX_ASSERT(again_len == len && memcmp(again, cmd, len) == 0);
    free(again);
}

/* Wraps cmd with the next proposer time, applies it (and checks the decoder on it). */
static void apply_cmd(struct replicas *r, const uint8_t *cmd, size_t len, bool replay)
{
    check_decode(cmd, len);
    uint8_t *entry;
    size_t entry_len;
    if (ledger_entry_wrap(cmd, len, r->time_ms, &entry, &entry_len) != NX_OK)
        return; /* too big */
    apply_entry(r, entry, entry_len, replay);
    free(entry);
}

static void cmd_init(struct ledger_cmd *c, uint8_t type, int author, uint8_t idem,
                     uint64_t created_ms)
{
    memset(c, 0, sizeof *c);
    c->type = type;
    memcpy(c->cluster_id, keys()->cluster, LEDGER_CLUSTER_ID_BYTES);
    memcpy(c->author, keys()->pk[author], LEDGER_KEY_BYTES);
    memset(c->idem_key, 0x11, LEDGER_IDEM_BYTES);
    c->idem_key[0] = idem;
    c->created_ms = created_ms;
}

static void sign_and_apply(struct replicas *r, const struct ledger_cmd *c, int author, bool replay)
{
    uint8_t *cmd;
    size_t len;
    if (ledger_cmd_build(c, keys()->sk[author], &cmd, &len) != NX_OK)
        return; /* a field the builder refuses (a name outside the charset) */
    apply_cmd(r, cmd, len, replay);
    free(cmd);
}

static void genesis(struct replicas *r)
{
    struct ledger_cmd c;
    cmd_init(&c, LEDGER_CMD_GENESIS, 0, 0, r->time_ms);
    memcpy(c.u.genesis.first_node, keys()->pk[3], LEDGER_KEY_BYTES);
    sign_and_apply(r, &c, 0, false);
}

static const char *const names[] = {"t1", "t2", "a1", "a2", "a3", "agent1", "d1", "*", "Bad"};
static const char *const versions[] = {"1.0", "2.0", "x"};
static const char *const actions[] = {"account.create", "transfer",   "mint",
                                      "agent.publish",  "deploy.put", "tenant.create"};
#define PICK(table, b) (table[(b) % (sizeof table / sizeof table[0])])

static void set_name(char dst[LEDGER_STR_CAP], const char *src)
{
    snprintf(dst, LEDGER_STR_CAP, "%s", src);
}

/*
 * One structured command at p. Record bytes:
 *   [0] type (% LEDGER_CMD__MAX + 1)  [1] author key (% N_KEYS)
 *   [2] [3] [4] names / versions / actions / keys, by table index
 *   [5] key index for key fields, bit7: a broken proof or signature
 *   [6..8] amount (u24 LE; also expiry offset, uses, replicas)
 *   [9] idempotency key byte (repeat it to replay or conflict)
 * The proposer time advances by STEP_MS per command; created_ms is the
 * proposer time minus [8] * 2^24 ms (far back: STALE) when [5] bit6 is set.
 */
static void structured_cmd(struct replicas *r, const uint8_t *p, bool replay)
{
    const struct keys *k = keys();
    uint8_t type = (uint8_t)(p[0] % LEDGER_CMD__MAX + 1);
    int author = p[1] % N_KEYS, key = (p[5] & 0x3f) % N_KEYS;
    bool broken = p[5] & 0x80;
    uint64_t amount = (uint64_t)p[6] | (uint64_t)p[7] << 8 | (uint64_t)p[8] << 16;
    uint64_t created = r->time_ms - ((p[5] & 0x40) ? (uint64_t)p[8] << 24 : 0);
    struct ledger_cmd c;
    cmd_init(&c, type, author, p[9], created);
    switch (type) {
    case LEDGER_CMD_GENESIS:
        memcpy(c.u.genesis.first_node, k->pk[key], LEDGER_KEY_BYTES);
        c.u.genesis.window_ms = amount;
        break;
    case LEDGER_CMD_NODE_ADMIT:
        memcpy(c.u.admit.node, k->pk[key], LEDGER_KEY_BYTES);
        set_name(c.u.admit.token_id, (p[2] & 1) ? TOKEN_ID : "");
        memcpy(c.u.admit.pin_cluster, k->cluster, LEDGER_CLUSTER_ID_BYTES);
        ledger_operator_pin(k->pk[0], c.u.admit.pin_operator);
        memset(c.u.admit.nonce, p[3], LEDGER_NONCE_BYTES);
        NX_ASSERT(ledger_token_proof(k->cluster, TOKEN_ID, TOKEN_SECRET, c.u.admit.node,
                                     c.u.admit.nonce, c.u.admit.proof) == NX_OK);
        c.u.admit.proof[0] ^= broken;
        break;
    case LEDGER_CMD_NODE_REMOVE:
        memcpy(c.u.node_remove.node, k->pk[key], LEDGER_KEY_BYTES);
        break;
    case LEDGER_CMD_TOKEN_CREATE:
        set_name(c.u.token_create.id, (p[2] & 1) ? TOKEN_ID : "tok002");
        memcpy(c.u.token_create.verifier, k->token_pk, LEDGER_KEY_BYTES);
        c.u.token_create.expires_ms = r->time_ms + amount * STEP_MS;
        c.u.token_create.uses = p[6] % 4;
        break;
    case LEDGER_CMD_TOKEN_EXPIRE:
        set_name(c.u.token_expire.id, (p[2] & 1) ? TOKEN_ID : "tok002");
        break;
    case LEDGER_CMD_TENANT_CREATE:
        set_name(c.u.tenant.name, PICK(names, p[2]));
        memcpy(c.u.tenant.owner, k->pk[key], LEDGER_KEY_BYTES);
        break;
    case LEDGER_CMD_ACCOUNT_CREATE:
        set_name(c.u.account.name, PICK(names, p[2]));
        set_name(c.u.account.tenant, PICK(names, p[3]));
        memcpy(c.u.account.key, k->pk[key], LEDGER_KEY_BYTES);
        break;
    case LEDGER_CMD_AGENT_PUBLISH:
        set_name(c.u.publish.name, PICK(names, p[2]));
        set_name(c.u.publish.version, PICK(versions, p[3]));
        set_name(c.u.publish.tenant, PICK(names, p[4]));
        /* a manifest whose hash matches unless p[6] is odd (BAD_MANIFEST) */
        c.u.publish.manifest_len = 1 + p[6] % 8;
        memset(c.u.publish.manifest, '{', c.u.publish.manifest_len);
        crypto_generichash(c.u.publish.manifest_hash, LEDGER_HASH_BYTES, c.u.publish.manifest,
                           c.u.publish.manifest_len, NULL, 0);
        c.u.publish.manifest_hash[0] ^= (uint8_t)(p[6] & 1);
        memset(c.u.publish.bundle_hash, p[7], LEDGER_HASH_BYTES);
        ledger_agent_sign(c.u.publish.name, c.u.publish.version, c.u.publish.manifest_hash,
                          c.u.publish.bundle_hash, k->sk[author], c.u.publish.publisher_sig);
        c.u.publish.publisher_sig[0] ^= broken;
        break;
    case LEDGER_CMD_AGENT_DEPRECATE:
        set_name(c.u.deprecate.name, PICK(names, p[2]));
        set_name(c.u.deprecate.version, PICK(versions, p[3]));
        break;
    case LEDGER_CMD_DEPLOY_PUT:
        set_name(c.u.deploy.name, PICK(names, p[2]));
        set_name(c.u.deploy.tenant, PICK(names, p[3]));
        set_name(c.u.deploy.agent, PICK(names, p[4]));
        set_name(c.u.deploy.version, PICK(versions, p[6]));
        c.u.deploy.replicas = (uint32_t)(amount % (2 * LEDGER_MAX_REPLICAS));
        break;
    case LEDGER_CMD_DEPLOY_DELETE:
        set_name(c.u.deploy_delete.name, PICK(names, p[2]));
        break;
    case LEDGER_CMD_PERM_GRANT:
    case LEDGER_CMD_PERM_REVOKE:
        memcpy(c.u.perm.subject, k->pk[key], LEDGER_KEY_BYTES);
        set_name(c.u.perm.action, PICK(actions, p[2]));
        set_name(c.u.perm.resource, PICK(names, p[3]));
        break;
    case LEDGER_CMD_TRANSFER:
        set_name(c.u.transfer.from, PICK(names, p[2]));
        set_name(c.u.transfer.to, PICK(names, p[3]));
        c.u.transfer.amount = amount;
        break;
    case LEDGER_CMD_MINT:
        set_name(c.u.mint.to, PICK(names, p[2]));
        c.u.mint.amount = (p[5] & 0x40) ? UINT64_MAX - amount : amount; /* overflow */
        c.created_ms = r->time_ms;
        break;
    case LEDGER_CMD_CHARGE:
        set_name(c.u.charge.account, PICK(names, p[2]));
        set_name(c.u.charge.payee, PICK(names, p[3]));
        c.u.charge.amount = amount;
        snprintf(c.u.charge.run_id, LEDGER_STR_CAP, "run%u", p[4] % 4);
        break;
    default:
        NX_ASSERT(!"type out of range");
    }
    sign_and_apply(r, &c, author, replay);
}

/* ---- snapshot streams -------------------------------------------------------- */

struct stream_in {
    const uint8_t *p;
    size_t len, off, chunk;
};

static int stream_source(void *arg, uint8_t *buf, size_t cap, size_t *got)
{
    struct stream_in *in = arg;
    size_t n = in->len - in->off;
    if (n > in->chunk)
        n = in->chunk;
    if (n > cap)
        n = cap;
    memcpy(buf, in->p + in->off, n);
    in->off += n;
    *got = n;
    return 0;
}

struct stream_out {
    uint8_t *p; /* owned */
    size_t len, cap;
};

static int stream_sink(void *arg, const uint8_t *buf, size_t len)
{
    struct stream_out *out = arg;
    if (out->len + len > out->cap) {
        out->cap = 2 * (out->len + len);
        out->p = realloc(out->p, out->cap);
        NX_ASSERT(out->p);
    }
    memcpy(out->p + out->len, buf, len);
    out->len += len;
    return 0;
}

static void snapshot_write(struct ledger_store *store, struct stream_out *out)
{
    memset(out, 0, sizeof *out);
    NX_ASSERT(ledger_snapshot_write(store, stream_sink, out) == NX_OK);
}

static int snapshot_install(struct ledger_store *store, const uint8_t *p, size_t len, size_t chunk)
{
    struct stream_in in = {.p = p, .len = len, .chunk = chunk};
    return ledger_snapshot_install(store, stream_source, &in);
}

static void snapshot_mode(struct replicas *r, const uint8_t *p, size_t len, bool fix_hash)
{
    if (len < 1)
        return;
    size_t chunk = p[0] == CHUNK_ALL ? SIZE_MAX : (size_t)(p[0] % 64 + 1);
    uint8_t *stream = malloc(len);
    NX_ASSERT(stream);
    memcpy(stream, p + 1, len - 1);
    size_t n = len - 1;
    if (fix_hash && n >= LEDGER_HASH_BYTES)
        crypto_generichash(stream + n - LEDGER_HASH_BYTES, LEDGER_HASH_BYTES, stream,
                           n - LEDGER_HASH_BYTES, NULL, 0);
    uint64_t seq = tx_seq(&r->l[0]);
    size_t count = ledger_store_mem_count(r->store[0]);
    int rc = snapshot_install(r->store[0], stream, n, chunk);
    NX_ASSERT(rc == NX_OK || rc == NX_ERR_CORRUPT);
    if (rc != NX_OK) {
        NX_ASSERT(tx_seq(&r->l[0]) == seq && ledger_store_mem_count(r->store[0]) == count);
        free(stream);
        return;
    }
    struct stream_out first, second;
    snapshot_write(r->store[0], &first);
    NX_ASSERT(snapshot_install(r->store[1], first.p, first.len, SIZE_MAX) == NX_OK);
    snapshot_write(r->store[1], &second);
    NX_ASSERT(first.len == second.len && memcmp(first.p, second.p, first.len) == 0);
    free(first.p);
    free(second.p);
    free(stream);
    /* whatever was installed: queries and one more command must not crash */
    char why[256];
    uint64_t v;
    uint8_t hash[LEDGER_HASH_BYTES];
    int q = ledger_verify(&r->l[0], why, sizeof why);
    q |= ledger_supply(&r->l[0], &v) | ledger_tx_head(&r->l[0], &v, hash);
    q |= ledger_balance(&r->l[0], "a1", &v);
    (void)q;
    struct ledger_cmd c;
    cmd_init(&c, LEDGER_CMD_MINT, 0, 0x77, r->time_ms);
    set_name(c.u.mint.to, "a1");
    c.u.mint.amount = 1;
    uint8_t *cmd, *entry;
    size_t cmd_len, entry_len;
    NX_ASSERT(ledger_cmd_build(&c, keys()->sk[0], &cmd, &cmd_len) == NX_OK);
    NX_ASSERT(ledger_entry_wrap(cmd, cmd_len, r->time_ms, &entry, &entry_len) == NX_OK);
    struct ledger_batch b;
    struct ledger_result res;
    ledger_batch_init(&b);
    rc = ledger_apply(&r->l[0], entry, entry_len, UINT64_MAX, &b, &res);
    NX_ASSERT(rc <= 0);
    ledger_batch_free(&b);
    free(cmd);
    free(entry);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t flags = data[0];
    bool replay = flags & FLAG_REPLAY;
    struct replicas r;
    replicas_init(&r);
    if (flags & (FLAG_GENESIS | FLAG_SNAPSHOT))
        genesis(&r);
    const uint8_t *p = data + 1, *end = data + size;
    if (flags & FLAG_SNAPSHOT) {
        snapshot_mode(&r, p, (size_t)(end - p), flags & FLAG_FIX_HASH);
        p = end;
    }
    for (int n = 0; n < MAX_INPUT_CMDS; n++) {
        r.time_ms += STEP_MS;
        if (flags & FLAG_STRUCTURED) {
            if (end - p < CMD_RECORD_BYTES)
                break;
            structured_cmd(&r, p, replay);
            p += CMD_RECORD_BYTES;
            continue;
        }
        if (end - p < RAW_HEADER_BYTES)
            break;
        uint8_t kind = p[0];
        size_t len = (size_t)(p[1] | p[2] << 8);
        p += RAW_HEADER_BYTES;
        if ((size_t)(end - p) < len)
            len = (size_t)(end - p);
        if (kind & 1)
            apply_cmd(&r, p, len, replay);
        else
            apply_entry(&r, p, len, replay);
        p += len;
    }
    replicas_free(&r);
    return 0;
}

/* ---- seeds ------------------------------------------------------------------ */

/* A history that succeeds: tenant, accounts, mint, transfers, grants, agents, tokens. */
static const uint8_t story[][CMD_RECORD_BYTES] = {
    /* type-1, author, s2, s3, s4, key, amount (3), idem */
    {LEDGER_CMD_TENANT_CREATE - 1, 0, 0, 0, 0, 1, 0, 0, 0, 1},
    {LEDGER_CMD_ACCOUNT_CREATE - 1, 1, 2, 0, 0, 1, 0, 0, 0, 2},
    {LEDGER_CMD_ACCOUNT_CREATE - 1, 1, 3, 0, 0, 2, 0, 0, 0, 3},
    {LEDGER_CMD_MINT - 1, 0, 2, 0, 0, 0, 100, 0, 0, 4},
    {LEDGER_CMD_TRANSFER - 1, 1, 2, 3, 0, 0, 30, 0, 0, 5},
    {LEDGER_CMD_TRANSFER - 1, 2, 3, 2, 0, 0, 10, 0, 0, 6},
    {LEDGER_CMD_PERM_GRANT - 1, 0, 1, 2, 0, 2, 0, 0, 0, 7},
    {LEDGER_CMD_CHARGE - 1, 3, 2, 3, 1, 0, 5, 0, 0, 8}, /* by the genesis node */
    {LEDGER_CMD_AGENT_PUBLISH - 1, 1, 5, 0, 0, 0, 1, 2, 0, 9},
    {LEDGER_CMD_DEPLOY_PUT - 1, 1, 6, 0, 5, 0, 0, 3, 0, 10},
    {LEDGER_CMD_TOKEN_CREATE - 1, 0, 1, 0, 0, 0, 201, 0, 0, 11},
    {LEDGER_CMD_NODE_ADMIT - 1, 2, 1, 9, 0, 2, 0, 0, 0, 12},
    {LEDGER_CMD_AGENT_DEPRECATE - 1, 1, 5, 0, 0, 0, 0, 0, 0, 13},
    {LEDGER_CMD_DEPLOY_DELETE - 1, 1, 6, 0, 0, 0, 0, 0, 0, 14},
    {LEDGER_CMD_TOKEN_EXPIRE - 1, 0, 1, 0, 0, 0, 0, 0, 0, 15},
    {LEDGER_CMD_NODE_REMOVE - 1, 0, 0, 0, 0, 2, 0, 0, 0, 16},
    {LEDGER_CMD_PERM_REVOKE - 1, 0, 1, 2, 0, 2, 0, 0, 0, 17},
    {LEDGER_CMD_TRANSFER - 1, 1, 2, 3, 0, 0, 0, 1, 0, 18}, /* overdraft */
};
#define STORY_LEN (sizeof story / sizeof story[0])
#define SEED_COUNT (24 + SNAPSHOT_SEEDS)

/* A snapshot of the state after genesis and the story's first commands. */
static size_t snapshot_seed(size_t i, uint8_t *buf, size_t cap)
{
    struct replicas r;
    replicas_init(&r);
    genesis(&r);
    for (size_t k = 0; k < 2 + i; k++) {
        r.time_ms += STEP_MS;
        structured_cmd(&r, story[k], false);
    }
    struct stream_out out;
    snapshot_write(r.store[0], &out);
    NX_ASSERT(out.len + 2 <= cap);
    buf[0] = (uint8_t)(FLAG_SNAPSHOT | (i & 1 ? FLAG_FIX_HASH : 0));
    buf[1] = i & 2 ? CHUNK_ALL : (uint8_t)(7 * i);
    memcpy(buf + 2, out.p, out.len);
    free(out.p);
    replicas_free(&r);
    return out.len + 2;
}

size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap)
{
    if (i >= SEED_COUNT)
        return 0;
    if (i >= SEED_COUNT - SNAPSHOT_SEEDS)
        return snapshot_seed(i - (SEED_COUNT - SNAPSHOT_SEEDS), buf, cap);
    size_t n = 0;
    if (i < 16) {
        /* the story, from a later start each time, with genesis and replay flags */
        buf[n++] = (uint8_t)(FLAG_STRUCTURED | FLAG_GENESIS | (i & 1 ? FLAG_REPLAY : 0));
        for (size_t k = i / 2 % 4; k < STORY_LEN && n + CMD_RECORD_BYTES <= cap; k++) {
            memcpy(buf + n, story[k], CMD_RECORD_BYTES);
            n += CMD_RECORD_BYTES;
        }
        return n;
    }
    /* raw: a signed transfer and a mint as command bytes (kind 1), and one as an entry */
    struct ledger_cmd c;
    cmd_init(&c, LEDGER_CMD_MINT, 0, (uint8_t)i, START_MS);
    set_name(c.u.mint.to, "a1");
    c.u.mint.amount = 5;
    uint8_t *cmd, *entry;
    size_t len, entry_len;
    NX_ASSERT(ledger_cmd_build(&c, keys()->sk[0], &cmd, &len) == NX_OK);
    NX_ASSERT(ledger_entry_wrap(cmd, len, START_MS + STEP_MS, &entry, &entry_len) == NX_OK);
    buf[n++] = (uint8_t)(FLAG_GENESIS | (i & 1 ? FLAG_REPLAY : 0));
    const uint8_t *parts[2] = {cmd, entry};
    size_t lens[2] = {len, entry_len};
    for (int k = 0; k < 2; k++) {
        NX_ASSERT(n + RAW_HEADER_BYTES + lens[k] <= cap);
        buf[n++] = (uint8_t)(k == 0);
        buf[n++] = (uint8_t)lens[k];
        buf[n++] = (uint8_t)(lens[k] >> 8);
        memcpy(buf + n, parts[k], lens[k]);
        n += lens[k];
    }
    free(cmd);
    free(entry);
    return n;
}

const struct fuzz_regression *fuzz_regressions(size_t *n)
{
    *n = 0;
    return NULL;
}
