/*
 * Unit tests of ledger/: every command, every rejection reason, the hash
 * chain, idempotency, join tokens, ledger_verify and snapshots, each applied
 * through the same path the node uses (build, sign, wrap, apply, commit).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/ledger/fixture.h"

static struct fx_key alice_key, bob_key, tenant_key, node_key, other_key;

/* Tenant "acme" (owner tenant_key), accounts alice and bob, alice holds 100. */
static void setup_money(struct fx *f)
{
    fx_init(f);
    fx_key_make(&alice_key, 10);
    fx_key_make(&bob_key, 11);
    fx_key_make(&tenant_key, 12);
    fx_key_make(&node_key, 13);
    fx_key_make(&other_key, 14);
    assert_int_equal(fx_tenant(f, "acme", &tenant_key), LEDGER_OK);
    assert_int_equal(fx_account(f, &tenant_key, "alice", "acme", &alice_key), LEDGER_OK);
    assert_int_equal(fx_account(f, &f->op, "bob", "acme", &bob_key), LEDGER_OK);
    assert_int_equal(fx_mint(f, &f->op, "alice", 100), LEDGER_OK);
}

static uint64_t balance(struct fx *f, const char *name)
{
    uint64_t b = 0;
    assert_int_equal(ledger_balance(&f->l, name, &b), 0);
    return b;
}

static void assert_verifies(struct fx *f)
{
    char why[LEDGER_REASON_TEXT_BYTES];
    int rc = ledger_verify(&f->l, why, sizeof why);
    if (rc != 0)
        fail_msg("verify: %s", why);
}

static int last_audit_reason;
static int audit_last(void *arg, const struct ledger_audit *a)
{
    (void)arg;
    last_audit_reason = a->reason;
    return 0;
}

/* ---- genesis, framing, signatures ----------------------------------------- */

static void genesis_sets_operator_and_second_genesis_is_rejected(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    uint8_t cluster[LEDGER_CLUSTER_ID_BYTES], op[LEDGER_KEY_BYTES];
    assert_int_equal(ledger_genesis_get(&f.l, cluster, op), 0);
    assert_memory_equal(op, f.op.pk, LEDGER_KEY_BYTES);
    assert_memory_equal(cluster, f.cluster, LEDGER_CLUSTER_ID_BYTES);
    struct ledger_cmd c;
    fx_cmd(&f, &c, LEDGER_CMD_GENESIS, &f.op);
    assert_int_equal(fx_submit(&f, &c, f.op.sk, NULL), LEDGER_REJ_EXISTS);
    fx_free(&f);
}

static void command_before_genesis_is_rejected(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof f);
    f.store = ledger_store_mem_new();
    ledger_init(&f.l, f.store);
    fx_key_make(&f.op, 1);
    assert_int_equal(fx_mint(&f, &f.op, "alice", 5), LEDGER_REJ_NO_GENESIS);
    fx_free(&f);
}

static void bad_signature_is_rejected_audited_and_changes_nothing(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    struct ledger_cmd c;
    fx_transfer_cmd(&f, &c, &alice_key, "alice", "bob", 10);
    size_t len;
    uint8_t *e = fx_entry(&f, &c, alice_key.sk, &len);
    e[len - 1] ^= 1; /* flip a signature bit */
    struct ledger_result r;
    assert_int_equal(fx_apply_entry(&f, e, len, &r), LEDGER_REJ_BAD_SIG);
    free(e);
    assert_int_equal(balance(&f, "alice"), 100);
    assert_int_equal(ledger_audit_foreach(&f.l, audit_last, NULL), 0);
    assert_int_equal(last_audit_reason, LEDGER_REJ_BAD_SIG);
    uint64_t applied;
    assert_int_equal(ledger_applied_index(&f.l, &applied), 0);
    assert_int_equal(applied, f.index);
    fx_free(&f);
}

/* The memo of ledger_cmd_precheck (one verification per node) keys on the whole
 * command, signature included: a forgery of a checked command is still refused. */
static void signature_memo_reuses_a_check_only_for_the_same_bytes(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(ledger_sig_memo_enable(&f.l), 0);
    struct ledger_cmd c;
    fx_transfer_cmd(&f, &c, &alice_key, "alice", "bob", 10);
    size_t len;
    uint8_t *good = fx_entry(&f, &c, alice_key.sk, &len);
    uint8_t *forged = malloc(len);
    assert_non_null(forged);
    memcpy(forged, good, len);
    forged[len - 1] ^= 1;
    const size_t hdr = LEDGER_ENTRY_HEADER_BYTES;
    assert_int_equal(ledger_cmd_precheck(&f.l, forged + hdr, len - hdr), NX_ERR_BAD_SIG);
    assert_int_equal(ledger_cmd_precheck(&f.l, good + hdr, len - hdr), 0);
    struct ledger_result r;
    assert_int_equal(fx_apply_entry(&f, forged, len, &r), LEDGER_REJ_BAD_SIG);
    assert_int_equal(balance(&f, "alice"), 100);
    assert_int_equal(fx_apply_entry(&f, good, len, &r), LEDGER_OK);
    assert_int_equal(balance(&f, "alice"), 90);
    free(good);
    free(forged);
    ledger_fini(&f.l);
    fx_free(&f);
}

static void signature_by_someone_else_than_author_is_rejected(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    struct ledger_cmd c;
    fx_transfer_cmd(&f, &c, &alice_key, "alice", "bob", 10);
    assert_int_equal(fx_submit(&f, &c, bob_key.sk, NULL), LEDGER_REJ_BAD_SIG);
    assert_int_equal(balance(&f, "alice"), 100);
    fx_free(&f);
}

static void wrong_cluster_is_rejected(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    struct ledger_cmd c;
    fx_transfer_cmd(&f, &c, &alice_key, "alice", "bob", 10);
    c.cluster_id[0] ^= 1;
    assert_int_equal(fx_submit(&f, &c, alice_key.sk, NULL), LEDGER_REJ_WRONG_CLUSTER);
    fx_free(&f);
}

static void malformed_entries_are_rejected_and_audited(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    uint8_t junk[40] = "not an entry";
    assert_int_equal(fx_apply_entry(&f, junk, sizeof junk, NULL), LEDGER_REJ_MALFORMED);
    struct ledger_cmd c;
    fx_transfer_cmd(&f, &c, &alice_key, "alice", "bob", 10);
    size_t len;
    uint8_t *e = fx_entry(&f, &c, alice_key.sk, &len);
    assert_int_equal(fx_apply_entry(&f, e, len - 1, NULL), LEDGER_REJ_MALFORMED);
    free(e);
    strcpy(c.u.transfer.to, "Bad/Name");
    uint8_t *out = NULL;
    size_t out_len;
    assert_int_equal(ledger_cmd_build(&c, alice_key.sk, &out, &out_len), NX_ERR_INVAL);
    strcpy(c.u.transfer.to, "bob");
    assert_int_equal(ledger_cmd_build(&c, bob_key.sk, &out, &out_len), NX_ERR_INVAL);
    assert_int_equal(balance(&f, "alice"), 100);
    fx_free(&f);
}

/* The signature covers every command byte: no single changed byte is accepted. */
static void no_single_byte_change_of_a_command_is_accepted(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    struct ledger_cmd c;
    fx_transfer_cmd(&f, &c, &alice_key, "alice", "bob", 10);
    size_t len;
    uint8_t *e = fx_entry(&f, &c, alice_key.sk, &len);
    for (size_t i = LEDGER_ENTRY_HEADER_BYTES; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            e[i] ^= (uint8_t)(1u << bit);
            struct ledger_result r;
            int reason = fx_apply_entry(&f, e, len, &r);
            if (reason == LEDGER_OK)
                fail_msg("byte %zu bit %d changed and still accepted", i, bit);
            e[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(balance(&f, "alice"), 100);
    assert_int_equal(fx_apply_entry(&f, e, len, NULL), LEDGER_OK);
    free(e);
    assert_verifies(&f);
    fx_free(&f);
}

static void entry_at_or_below_applied_index_is_skipped(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    struct ledger_cmd c;
    fx_transfer_cmd(&f, &c, &alice_key, "alice", "bob", 10);
    size_t len;
    uint8_t *e = fx_entry(&f, &c, alice_key.sk, &len);
    assert_int_equal(fx_apply_entry(&f, e, len, NULL), LEDGER_OK);
    struct ledger_batch b;
    ledger_batch_init(&b);
    struct ledger_result r;
    assert_int_equal(ledger_apply(&f.l, e, len, f.index, &b, &r), 0);
    assert_true(r.already_applied);
    assert_int_equal(b.ops, 0);
    ledger_batch_free(&b);
    free(e);
    assert_int_equal(balance(&f, "alice"), 90);
    fx_free(&f);
}

/* ---- money ------------------------------------------------------------------ */

static void transfer_moves_value_and_chains_the_hash(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    struct ledger_result r;
    struct ledger_cmd c;
    fx_transfer_cmd(&f, &c, &alice_key, "alice", "bob", 30);
    assert_int_equal(fx_submit(&f, &c, alice_key.sk, &r), LEDGER_OK);
    assert_int_equal(r.tx_seq, 2);
    assert_int_equal(balance(&f, "alice"), 70);
    assert_int_equal(balance(&f, "bob"), 30);
    uint64_t seq, supply;
    uint8_t head[LEDGER_HASH_BYTES];
    assert_int_equal(ledger_tx_head(&f.l, &seq, head), 0);
    assert_int_equal(seq, 2);
    assert_memory_equal(head, r.tx_hash, LEDGER_HASH_BYTES);
    assert_int_equal(ledger_supply(&f.l, &supply), 0);
    assert_int_equal(supply, 100);
    assert_verifies(&f);
    fx_free(&f);
}

static void client_helper_builds_an_accepted_transfer(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    uint8_t idem[LEDGER_IDEM_BYTES] = {9}, *cmd, *e;
    size_t cmd_len, len;
    assert_int_equal(ledger_cmd_build_transfer(f.cluster, alice_key.sk, "alice", "bob", 5, idem, 1,
                                               &cmd, &cmd_len),
                     0);
    assert_int_equal(ledger_cmd_verify(cmd, cmd_len), 0);
    assert_int_equal(ledger_entry_wrap(cmd, cmd_len, f.time_ms, &e, &len), 0);
    assert_int_equal(fx_apply_entry(&f, e, len, NULL), LEDGER_OK);
    free(cmd);
    free(e);
    assert_int_equal(balance(&f, "bob"), 5);
    fx_free(&f);
}

static void overdraft_is_rejected(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(fx_transfer(&f, &alice_key, "alice", "bob", 101), LEDGER_REJ_OVERDRAFT);
    assert_int_equal(balance(&f, "alice"), 100);
    assert_int_equal(fx_transfer(&f, &alice_key, "alice", "bob", 100), LEDGER_OK);
    assert_int_equal(balance(&f, "alice"), 0);
    assert_verifies(&f);
    fx_free(&f);
}

static void transfer_not_signed_by_payer_needs_a_grant(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(fx_transfer(&f, &bob_key, "alice", "bob", 1), LEDGER_REJ_PERM);
    struct ledger_cmd c;
    fx_cmd(&f, &c, LEDGER_CMD_PERM_GRANT, &tenant_key); /* acme's owner grants on acme */
    memcpy(c.u.perm.subject, bob_key.pk, LEDGER_KEY_BYTES);
    strcpy(c.u.perm.action, "transfer");
    strcpy(c.u.perm.resource, "alice");
    assert_int_equal(fx_submit(&f, &c, tenant_key.sk, NULL), LEDGER_REJ_PERM);
    assert_int_equal(fx_submit(&f, &c, f.op.sk, NULL), LEDGER_REJ_BAD_SIG);
    fx_cmd(&f, &c, LEDGER_CMD_PERM_GRANT, &f.op);
    memcpy(c.u.perm.subject, bob_key.pk, LEDGER_KEY_BYTES);
    strcpy(c.u.perm.action, "transfer");
    strcpy(c.u.perm.resource, "alice");
    assert_int_equal(fx_submit(&f, &c, f.op.sk, NULL), LEDGER_OK);
    assert_int_equal(fx_transfer(&f, &bob_key, "alice", "bob", 1), LEDGER_OK);
    assert_true(ledger_perm_granted(&f.l, bob_key.pk, "transfer", "alice"));
    assert_false(ledger_perm_granted(&f.l, bob_key.pk, "transfer", "bob"));
    c.type = LEDGER_CMD_PERM_REVOKE;
    fx_fresh_idem(&f, c.idem_key);
    assert_int_equal(fx_submit(&f, &c, f.op.sk, NULL), LEDGER_OK);
    assert_int_equal(fx_transfer(&f, &bob_key, "alice", "bob", 1), LEDGER_REJ_PERM);
    fx_fresh_idem(&f, c.idem_key);
    assert_int_equal(fx_submit(&f, &c, f.op.sk, NULL), LEDGER_REJ_NOT_FOUND);
    fx_free(&f);
}

static void reused_idempotency_key_answers_the_original_result(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    struct ledger_cmd c;
    fx_transfer_cmd(&f, &c, &alice_key, "alice", "bob", 10);
    struct ledger_result r1, r2;
    assert_int_equal(fx_submit(&f, &c, alice_key.sk, &r1), LEDGER_OK);
    f.time_ms += 5; /* a resubmission, a later entry with the same signed command */
    assert_int_equal(fx_submit(&f, &c, alice_key.sk, &r2), LEDGER_OK);
    assert_true(r2.duplicate);
    assert_int_equal(r2.tx_seq, r1.tx_seq);
    assert_memory_equal(r2.tx_hash, r1.tx_hash, LEDGER_HASH_BYTES);
    assert_int_equal(balance(&f, "alice"), 90);
    /* same key, different content: refused, not applied */
    c.u.transfer.amount = 20;
    assert_int_equal(fx_submit(&f, &c, alice_key.sk, NULL), LEDGER_REJ_IDEM_CONFLICT);
    assert_int_equal(balance(&f, "alice"), 90);
    assert_verifies(&f);
    fx_free(&f);
}

static void stale_and_future_commands_are_rejected(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    struct ledger_cmd c;
    f.time_ms += 2 * LEDGER_CMD_WINDOW_MS;
    fx_transfer_cmd(&f, &c, &alice_key, "alice", "bob", 1);
    c.created_ms = f.time_ms - LEDGER_CMD_WINDOW_MS - 1;
    assert_int_equal(fx_submit(&f, &c, alice_key.sk, NULL), LEDGER_REJ_STALE);
    c.created_ms = f.time_ms + LEDGER_CMD_WINDOW_MS + 1;
    assert_int_equal(fx_submit(&f, &c, alice_key.sk, NULL), LEDGER_REJ_FUTURE);
    c.created_ms = f.time_ms - LEDGER_CMD_WINDOW_MS;
    assert_int_equal(fx_submit(&f, &c, alice_key.sk, NULL), LEDGER_OK);
    assert_int_equal(balance(&f, "bob"), 1);
    fx_free(&f);
}

static bool idem_present(struct fx *f, const struct ledger_cmd *c)
{
    uint8_t key[5 + 64], val[LEDGER_MAX_VALUE_BYTES];
    size_t len;
    memcpy(key, "idem/", 5);
    memcpy(key + 5, c->author, 32);
    memcpy(key + 37, c->idem_key, 32);
    return f->store->ops->get(f->store->ctx, key, sizeof key, val, sizeof val, &len) == 0;
}

static void
idempotency_records_are_forgotten_after_the_window_and_replays_stay_refused(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    struct ledger_cmd c;
    fx_transfer_cmd(&f, &c, &alice_key, "alice", "bob", 10);
    size_t len;
    uint8_t *e = fx_entry(&f, &c, alice_key.sk, &len);
    assert_int_equal(fx_apply_entry(&f, e, len, NULL), LEDGER_OK);
    assert_true(idem_present(&f, &c));
    f.time_ms += LEDGER_CMD_WINDOW_MS / 2;
    assert_int_equal(fx_mint(&f, &f.op, "alice", 1), LEDGER_OK);
    assert_true(idem_present(&f, &c)); /* inside the window: kept */
    f.time_ms += LEDGER_CMD_WINDOW_MS; /* every setup command and the transfer left it */
    for (int i = 0; i < 4; i++)
        assert_int_equal(fx_mint(&f, &f.op, "alice", 1), LEDGER_OK);
    assert_false(idem_present(&f, &c));
    /* the same signed transfer again: refused as stale, not applied a second time */
    struct ledger_result r;
    assert_int_equal(fx_apply_entry(&f, e, len, &r), LEDGER_REJ_STALE);
    free(e);
    assert_int_equal(balance(&f, "bob"), 10);
    assert_verifies(&f);
    fx_free(&f);
}

static void unknown_account_is_rejected(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(fx_transfer(&f, &alice_key, "alice", "carol", 1), LEDGER_REJ_UNKNOWN_ACCOUNT);
    assert_int_equal(fx_mint(&f, &f.op, "carol", 1), LEDGER_REJ_UNKNOWN_ACCOUNT);
    uint64_t b;
    assert_int_equal(ledger_balance(&f.l, "carol", &b), NX_ERR_NOT_FOUND);
    fx_free(&f);
}

static void amount_overflow_is_rejected(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(fx_mint(&f, &f.op, "bob", UINT64_MAX - 100), LEDGER_OK);
    assert_int_equal(fx_mint(&f, &f.op, "bob", 1), LEDGER_REJ_OVERFLOW);
    assert_int_equal(balance(&f, "bob"), UINT64_MAX - 100);
    assert_verifies(&f);
    fx_free(&f);
}

static void zero_and_self_transfers_are_rejected(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(fx_transfer(&f, &alice_key, "alice", "bob", 0), LEDGER_REJ_BAD_VALUE);
    assert_int_equal(fx_transfer(&f, &alice_key, "alice", "alice", 1), LEDGER_REJ_BAD_VALUE);
    fx_free(&f);
}

static void mint_needs_the_operator(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(fx_mint(&f, &alice_key, "alice", 1), LEDGER_REJ_PERM);
    assert_int_equal(fx_mint(&f, &tenant_key, "alice", 1), LEDGER_REJ_PERM);
    assert_int_equal(balance(&f, "alice"), 100);
    fx_free(&f);
}

static int charge(struct fx *f, const struct fx_key *node, const char *run, uint64_t amount,
                  struct ledger_result *r)
{
    struct ledger_cmd c;
    fx_cmd(f, &c, LEDGER_CMD_CHARGE, node);
    strcpy(c.u.charge.account, "alice");
    strcpy(c.u.charge.payee, "bob");
    c.u.charge.amount = amount;
    strcpy(c.u.charge.run_id, run);
    return fx_submit(f, &c, node->sk, r);
}

static void run_is_charged_exactly_once_and_only_by_a_node(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(charge(&f, &node_key, "run-1", 7, NULL), LEDGER_REJ_PERM);
    struct ledger_cmd c;
    fx_cmd(&f, &c, LEDGER_CMD_NODE_ADMIT, &f.op);
    memcpy(c.u.admit.node, node_key.pk, LEDGER_KEY_BYTES);
    assert_int_equal(fx_submit(&f, &c, f.op.sk, NULL), LEDGER_OK);
    struct ledger_result r;
    assert_int_equal(charge(&f, &node_key, "run-1", 7, &r), LEDGER_OK);
    assert_false(r.duplicate);
    /* the same run charged again, even with another idempotency key: once */
    assert_int_equal(charge(&f, &node_key, "run-1", 7, &r), LEDGER_REJ_IDEM_CONFLICT);
    assert_int_equal(balance(&f, "alice"), 93);
    assert_int_equal(charge(&f, &node_key, "run-2", 94, NULL), LEDGER_REJ_OVERDRAFT);
    assert_verifies(&f);
    fx_free(&f);
}

/* ---- tenants, accounts, agents, deployments -------------------------------- */

static void accounts_are_created_by_their_tenant_owner_only(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(fx_account(&f, &other_key, "eve", "acme", &other_key), LEDGER_REJ_PERM);
    assert_int_equal(fx_account(&f, &tenant_key, "eve", "nope", &other_key),
                     LEDGER_REJ_UNKNOWN_TENANT);
    assert_int_equal(fx_account(&f, &tenant_key, "alice", "acme", &other_key), LEDGER_REJ_EXISTS);
    assert_int_equal(fx_tenant(&f, "acme", &other_key), LEDGER_REJ_EXISTS);
    struct ledger_cmd c;
    fx_cmd(&f, &c, LEDGER_CMD_TENANT_CREATE, &other_key);
    strcpy(c.u.tenant.name, "evil");
    assert_int_equal(fx_submit(&f, &c, other_key.sk, NULL), LEDGER_REJ_PERM);
    struct ledger_account a;
    assert_int_equal(ledger_account_get(&f.l, "alice", &a), 0);
    assert_string_equal(a.tenant, "acme");
    assert_memory_equal(a.key, alice_key.pk, LEDGER_KEY_BYTES);
    fx_free(&f);
}

static const char MANIFEST[] = "{\"name\":\"echo\",\"capabilities\":[{\"name\":\"echo\"}]}";

/* A publish command of MANIFEST; the caller may spoil it before fx_submit. */
static void publish_cmd(struct fx *f, struct ledger_cmd *c, const struct fx_key *author,
                        const char *name, const char *ver, const char *tenant, bool good_sig)
{
    fx_cmd(f, c, LEDGER_CMD_AGENT_PUBLISH, author);
    strcpy(c->u.publish.name, name);
    strcpy(c->u.publish.version, ver);
    strcpy(c->u.publish.tenant, tenant);
    c->u.publish.manifest_len = sizeof MANIFEST - 1;
    memcpy(c->u.publish.manifest, MANIFEST, sizeof MANIFEST - 1);
    crypto_generichash(c->u.publish.manifest_hash, LEDGER_HASH_BYTES, c->u.publish.manifest,
                       c->u.publish.manifest_len, NULL, 0);
    memset(c->u.publish.bundle_hash, 2, LEDGER_HASH_BYTES);
    ledger_agent_sign(name, ver, c->u.publish.manifest_hash, c->u.publish.bundle_hash,
                      good_sig ? author->sk : other_key.sk, c->u.publish.publisher_sig);
}

static int publish(struct fx *f, const struct fx_key *author, const char *name, const char *ver,
                   const char *tenant, bool good_sig)
{
    struct ledger_cmd c;
    publish_cmd(f, &c, author, name, ver, tenant, good_sig);
    return fx_submit(f, &c, author->sk, NULL);
}

/* The registry stores the manifest a publish carries, and only the one the hash names. */
static void publish_stores_the_manifest_and_refuses_one_that_does_not_match(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    struct ledger_cmd c;
    publish_cmd(&f, &c, &tenant_key, "echo", "1.0", "acme", true);
    c.u.publish.manifest[0] = '['; /* another manifest than the signed hash names */
    assert_int_equal(fx_submit(&f, &c, tenant_key.sk, NULL), LEDGER_REJ_BAD_MANIFEST);
    publish_cmd(&f, &c, &tenant_key, "echo", "1.0", "acme", true);
    c.u.publish.manifest_len = 0;
    assert_int_equal(fx_submit(&f, &c, tenant_key.sk, NULL), LEDGER_REJ_BAD_MANIFEST);
    struct ledger_agent a;
    assert_int_equal(ledger_agent_get(&f.l, "echo", "1.0", &a), NX_ERR_NOT_FOUND);
    uint8_t buf[LEDGER_MANIFEST_MAX_BYTES];
    size_t len = 0;
    assert_int_equal(ledger_agent_manifest_get(&f.l, "echo", "1.0", buf, sizeof buf, &len),
                     NX_ERR_NOT_FOUND);
    assert_int_equal(publish(&f, &tenant_key, "echo", "1.0", "acme", true), LEDGER_OK);
    assert_int_equal(ledger_agent_manifest_get(&f.l, "echo", "1.0", buf, sizeof buf, &len), 0);
    assert_int_equal(len, sizeof MANIFEST - 1);
    assert_memory_equal(buf, MANIFEST, len);
    assert_int_equal(ledger_agent_manifest_get(&f.l, "echo", "1.0", buf, 4, &len), NX_ERR_TOO_BIG);
    fx_free(&f);
}

/* A manifest longer than the bound does not encode, and its bytes do not decode. */
static void publish_manifest_over_the_bound_is_not_a_command(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    struct ledger_cmd c;
    publish_cmd(&f, &c, &tenant_key, "echo", "1.0", "acme", true);
    uint8_t *bytes = NULL;
    size_t len = 0;
    assert_int_equal(ledger_cmd_build(&c, tenant_key.sk, &bytes, &len), 0);
    struct ledger_cmd back;
    assert_int_equal(ledger_cmd_decode(bytes, len, &back), 0);
    assert_int_equal(back.u.publish.manifest_len, sizeof MANIFEST - 1);
    assert_memory_equal(back.u.publish.manifest, MANIFEST, sizeof MANIFEST - 1);
    /* the manifest length sits 4 bytes before the manifest, which ends before the signature */
    size_t at = len - LEDGER_SIG_BYTES - (sizeof MANIFEST - 1) - 4;
    uint32_t huge = LEDGER_MANIFEST_MAX_BYTES + 1;
    memcpy(bytes + at, &huge, 4); /* little-endian host */
    assert_int_equal(ledger_cmd_decode(bytes, len, &back), NX_ERR_DECODE);
    free(bytes);
    c.u.publish.manifest_len = LEDGER_MANIFEST_MAX_BYTES + 1;
    assert_int_not_equal(ledger_cmd_build(&c, tenant_key.sk, &bytes, &len), 0);
    fx_free(&f);
}

static int deploy(struct fx *f, const struct fx_key *author, const char *ver, uint32_t replicas)
{
    struct ledger_cmd c;
    fx_cmd(f, &c, LEDGER_CMD_DEPLOY_PUT, author);
    strcpy(c.u.deploy.name, "web");
    strcpy(c.u.deploy.tenant, "acme");
    strcpy(c.u.deploy.agent, "echo");
    strcpy(c.u.deploy.version, ver);
    c.u.deploy.replicas = replicas;
    return fx_submit(f, &c, author->sk, NULL);
}

static int count_agents(void *arg, const struct ledger_agent *a)
{
    (void)a;
    ++*(int *)arg;
    return 0;
}

static int count_tenants(void *arg, const struct ledger_tenant *t)
{
    (void)t;
    ++*(int *)arg;
    return 0;
}

static void agents_publish_deprecate_and_deploy(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(publish(&f, &tenant_key, "echo", "1.0", "acme", false),
                     LEDGER_REJ_BAD_PUBLISHER_SIG);
    assert_int_equal(publish(&f, &other_key, "echo", "1.0", "acme", true), LEDGER_REJ_PERM);
    assert_int_equal(publish(&f, &tenant_key, "echo", "1.0", "acme", true), LEDGER_OK);
    assert_int_equal(publish(&f, &tenant_key, "echo", "1.0", "acme", true), LEDGER_REJ_EXISTS);
    assert_int_equal(fx_tenant(&f, "other", &other_key), LEDGER_OK);
    assert_int_equal(publish(&f, &other_key, "echo", "2.0", "other", true), LEDGER_REJ_PERM);
    assert_int_equal(publish(&f, &tenant_key, "echo", "2.0", "acme", true), LEDGER_OK);
    assert_int_equal(deploy(&f, &tenant_key, "1.0", 3), LEDGER_OK);
    assert_int_equal(deploy(&f, &tenant_key, "1.0", 0), LEDGER_REJ_BAD_VALUE);
    assert_int_equal(deploy(&f, &tenant_key, "9.9", 1), LEDGER_REJ_NOT_FOUND);
    assert_int_equal(deploy(&f, &other_key, "1.0", 1), LEDGER_REJ_PERM);
    struct ledger_cmd c;
    fx_cmd(&f, &c, LEDGER_CMD_AGENT_DEPRECATE, &tenant_key);
    strcpy(c.u.deprecate.name, "echo");
    strcpy(c.u.deprecate.version, "1.0");
    assert_int_equal(fx_submit(&f, &c, tenant_key.sk, NULL), LEDGER_OK);
    assert_int_equal(deploy(&f, &tenant_key, "1.0", 2), LEDGER_REJ_DEPRECATED);
    assert_int_equal(deploy(&f, &tenant_key, "2.0", 2), LEDGER_OK);
    struct ledger_deployment d;
    assert_int_equal(ledger_deployment_get(&f.l, "web", &d), 0);
    assert_string_equal(d.version, "2.0");
    assert_int_equal(d.replicas, 2);
    struct ledger_agent a;
    assert_int_equal(ledger_agent_get(&f.l, "echo", "1.0", &a), 0);
    assert_true(a.deprecated);
    assert_string_equal(a.tenant, "acme");
    assert_memory_equal(a.publisher, tenant_key.pk, LEDGER_KEY_BYTES);
    int agents = 0, tenants = 0;
    assert_int_equal(ledger_agents_foreach(&f.l, count_agents, &agents), 0);
    assert_int_equal(ledger_tenants_foreach(&f.l, count_tenants, &tenants), 0);
    assert_int_equal(agents, 2);
    assert_int_equal(tenants, 2);
    fx_cmd(&f, &c, LEDGER_CMD_DEPLOY_DELETE, &other_key);
    strcpy(c.u.deploy_delete.name, "web");
    assert_int_equal(fx_submit(&f, &c, other_key.sk, NULL), LEDGER_REJ_PERM);
    fx_cmd(&f, &c, LEDGER_CMD_DEPLOY_DELETE, &tenant_key);
    strcpy(c.u.deploy_delete.name, "web");
    assert_int_equal(fx_submit(&f, &c, tenant_key.sk, NULL), LEDGER_OK);
    fx_fresh_idem(&f, c.idem_key);
    assert_int_equal(fx_submit(&f, &c, tenant_key.sk, NULL), LEDGER_REJ_NOT_FOUND);
    fx_free(&f);
}

/* ---- nodes and join tokens ---------------------------------------------------- */

#define SECRET "abcdefghij012345"

static int token_create(struct fx *f, const char *id, uint64_t expires_ms, uint32_t uses)
{
    uint8_t pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES];
    bool id_ok = strlen(id) == LEDGER_TOKEN_ID_LEN;
    assert_int_equal(ledger_token_keypair(f->cluster, id_ok ? id : "zzzzzz", SECRET, pk, sk), 0);
    struct ledger_cmd c;
    fx_cmd(f, &c, LEDGER_CMD_TOKEN_CREATE, &f->op);
    strcpy(c.u.token_create.id, id);
    memcpy(c.u.token_create.verifier, pk, LEDGER_KEY_BYTES);
    c.u.token_create.expires_ms = expires_ms;
    c.u.token_create.uses = uses;
    return fx_submit(f, &c, f->op.sk, NULL);
}

/* The joiner's admit command with a proof made from `secret` for `cluster`. */
static void admit_cmd(struct fx *f, struct ledger_cmd *c, const struct fx_key *joiner,
                      const char *id, const char *secret, const uint8_t *cluster)
{
    fx_cmd(f, c, LEDGER_CMD_NODE_ADMIT, joiner);
    memcpy(c->u.admit.node, joiner->pk, LEDGER_KEY_BYTES);
    strcpy(c->u.admit.token_id, id);
    memcpy(c->u.admit.pin_cluster, cluster, LEDGER_CLUSTER_ID_BYTES);
    ledger_operator_pin(f->op.pk, c->u.admit.pin_operator);
    memset(c->u.admit.nonce, 7, LEDGER_NONCE_BYTES);
    assert_int_equal(
        ledger_token_proof(cluster, id, secret, joiner->pk, c->u.admit.nonce, c->u.admit.proof), 0);
}

static int admit(struct fx *f, const struct fx_key *joiner, const char *id, const char *secret)
{
    struct ledger_cmd c;
    admit_cmd(f, &c, joiner, id, secret, f->cluster);
    return fx_submit(f, &c, joiner->sk, NULL);
}

static void token_admits_a_node_and_is_consumed(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(token_create(&f, "abc123", f.time_ms + 60000, 2), LEDGER_OK);
    assert_int_equal(token_create(&f, "abc123", f.time_ms + 60000, 2), LEDGER_REJ_EXISTS);
    assert_int_equal(token_create(&f, "abc12", f.time_ms + 60000, 2), LEDGER_REJ_BAD_VALUE);
    assert_false(ledger_node_is_member(&f.l, node_key.pk));
    assert_int_equal(admit(&f, &node_key, "abc123", SECRET), LEDGER_OK);
    assert_true(ledger_node_is_member(&f.l, node_key.pk));
    struct ledger_token t;
    assert_int_equal(ledger_token_get(&f.l, "abc123", &t), 0);
    assert_int_equal(t.uses_left, 1);
    fx_free(&f);
}

static void duplicate_admit_is_rejected(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(token_create(&f, "abc123", f.time_ms + 60000, 5), LEDGER_OK);
    assert_int_equal(admit(&f, &node_key, "abc123", SECRET), LEDGER_OK);
    assert_int_equal(admit(&f, &node_key, "abc123", SECRET), LEDGER_REJ_NODE_EXISTS);
    struct ledger_token t;
    assert_int_equal(ledger_token_get(&f.l, "abc123", &t), 0);
    assert_int_equal(t.uses_left, 4); /* the rejected admit used nothing */
    fx_free(&f);
}

static void single_use_token_admits_one_of_two_racing_nodes(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(token_create(&f, "once01", f.time_ms + 60000, 1), LEDGER_OK);
    /* both admits proposed before either applied: in one batch, in log order */
    struct ledger_cmd c1, c2;
    admit_cmd(&f, &c1, &node_key, "once01", SECRET, f.cluster);
    admit_cmd(&f, &c2, &other_key, "once01", SECRET, f.cluster);
    size_t l1, l2;
    uint8_t *e1 = fx_entry(&f, &c1, node_key.sk, &l1), *e2 = fx_entry(&f, &c2, other_key.sk, &l2);
    struct ledger_batch b;
    ledger_batch_init(&b);
    struct ledger_result r1, r2;
    assert_int_equal(ledger_apply(&f.l, e1, l1, ++f.index, &b, &r1), 0);
    assert_int_equal(ledger_apply(&f.l, e2, l2, ++f.index, &b, &r2), 0);
    assert_int_equal(ledger_store_commit(f.store, &b), 0);
    ledger_batch_free(&b);
    free(e1);
    free(e2);
    assert_int_equal(r1.reason, LEDGER_OK);
    assert_int_equal(r2.reason, LEDGER_REJ_TOKEN_USED_UP);
    assert_true(ledger_node_is_member(&f.l, node_key.pk));
    assert_false(ledger_node_is_member(&f.l, other_key.pk));
    fx_free(&f);
}

static void expired_token_is_rejected(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(token_create(&f, "exp001", f.time_ms + 1000, 3), LEDGER_OK);
    f.time_ms += 1000;
    assert_int_equal(admit(&f, &node_key, "exp001", SECRET), LEDGER_REJ_TOKEN_EXPIRED);
    assert_false(ledger_node_is_member(&f.l, node_key.pk));
    fx_free(&f);
}

static void proposer_time_never_goes_back(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(token_create(&f, "exp002", f.time_ms + 1000, 3), LEDGER_OK);
    f.time_ms += 2000;
    assert_int_equal(fx_mint(&f, &f.op, "alice", 1), LEDGER_OK);
    f.time_ms -= 2000; /* a new leader whose clock lags */
    assert_int_equal(admit(&f, &node_key, "exp002", SECRET), LEDGER_REJ_TOKEN_EXPIRED);
    fx_free(&f);
}

static void expire_command_ends_a_token(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(token_create(&f, "rev001", f.time_ms + 60000, 3), LEDGER_OK);
    struct ledger_cmd c;
    fx_cmd(&f, &c, LEDGER_CMD_TOKEN_EXPIRE, &alice_key);
    strcpy(c.u.token_expire.id, "rev001");
    assert_int_equal(fx_submit(&f, &c, alice_key.sk, NULL), LEDGER_REJ_PERM);
    fx_cmd(&f, &c, LEDGER_CMD_TOKEN_EXPIRE, &f.op);
    strcpy(c.u.token_expire.id, "rev001");
    assert_int_equal(fx_submit(&f, &c, f.op.sk, NULL), LEDGER_OK);
    assert_int_equal(admit(&f, &node_key, "rev001", SECRET), LEDGER_REJ_TOKEN_EXPIRED);
    fx_free(&f);
}

static void used_up_token_is_rejected(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(token_create(&f, "use001", f.time_ms + 60000, 1), LEDGER_OK);
    assert_int_equal(admit(&f, &node_key, "use001", SECRET), LEDGER_OK);
    assert_int_equal(admit(&f, &other_key, "use001", SECRET), LEDGER_REJ_TOKEN_USED_UP);
    fx_free(&f);
}

static void forged_token_proof_is_rejected(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(token_create(&f, "frg001", f.time_ms + 60000, 3), LEDGER_OK);
    assert_int_equal(admit(&f, &node_key, "frg001", "zzzzzzzzzzzzzzzz"), LEDGER_REJ_TOKEN_FORGED);
    /* a proof made for one joiner does not admit another key */
    struct ledger_cmd c;
    admit_cmd(&f, &c, &node_key, "frg001", SECRET, f.cluster);
    memcpy(c.author, other_key.pk, LEDGER_KEY_BYTES);
    memcpy(c.u.admit.node, other_key.pk, LEDGER_KEY_BYTES);
    assert_int_equal(fx_submit(&f, &c, other_key.sk, NULL), LEDGER_REJ_TOKEN_FORGED);
    assert_int_equal(admit(&f, &node_key, "nope01", SECRET), LEDGER_REJ_TOKEN_UNKNOWN);
    fx_free(&f);
}

static void other_cluster_token_is_rejected(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(token_create(&f, "oth001", f.time_ms + 60000, 3), LEDGER_OK);
    uint8_t other[LEDGER_CLUSTER_ID_BYTES];
    memset(other, 0xee, sizeof other);
    struct ledger_cmd c;
    admit_cmd(&f, &c, &node_key, "oth001", SECRET, other);
    assert_int_equal(fx_submit(&f, &c, node_key.sk, NULL), LEDGER_REJ_TOKEN_OTHER_CLUSTER);
    admit_cmd(&f, &c, &node_key, "oth001", SECRET, f.cluster);
    c.u.admit.pin_operator[0] ^= 1; /* the joiner trusts another operator */
    assert_int_equal(fx_submit(&f, &c, node_key.sk, NULL), LEDGER_REJ_TOKEN_OTHER_CLUSTER);
    fx_free(&f);
}

static int count_node(void *arg, const struct ledger_node *n)
{
    (void)n;
    (*(int *)arg)++;
    return 0;
}

static int count_removed(struct fx *f)
{
    int n = 0;
    assert_int_equal(ledger_removed_nodes_foreach(&f->l, count_node, &n), 0);
    return n;
}

static void node_is_removed_by_operator_or_itself(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(token_create(&f, "rm0001", f.time_ms + 60000, 3), LEDGER_OK);
    assert_int_equal(admit(&f, &node_key, "rm0001", SECRET), LEDGER_OK);
    struct ledger_cmd c;
    fx_cmd(&f, &c, LEDGER_CMD_NODE_REMOVE, &other_key);
    memcpy(c.u.node_remove.node, node_key.pk, LEDGER_KEY_BYTES);
    assert_int_equal(fx_submit(&f, &c, other_key.sk, NULL), LEDGER_REJ_PERM);
    fx_cmd(&f, &c, LEDGER_CMD_NODE_REMOVE, &f.op);
    memcpy(c.u.node_remove.node, node_key.pk, LEDGER_KEY_BYTES);
    assert_int_equal(fx_submit(&f, &c, f.op.sk, NULL), LEDGER_OK);
    assert_false(ledger_node_is_member(&f.l, node_key.pk));
    assert_int_equal(count_removed(&f), 1); /* the registry keeps refusing the key */
    assert_true(ledger_node_was_removed(&f.l, node_key.pk));
    fx_fresh_idem(&f, c.idem_key);
    assert_int_equal(fx_submit(&f, &c, f.op.sk, NULL), LEDGER_REJ_NOT_FOUND);
    assert_int_equal(token_create(&f, "rm0002", f.time_ms + 60000, 1), LEDGER_OK);
    assert_int_equal(admit(&f, &node_key, "rm0002", SECRET), LEDGER_OK);
    assert_int_equal(count_removed(&f), 0); /* admitted again: trusted again */
    assert_false(ledger_node_was_removed(&f.l, node_key.pk));
    fx_free(&f);
}

static void joiner_builds_its_admit_from_the_join_string(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(token_create(&f, "joi001", f.time_ms + 60000, 1), LEDGER_OK);
    uint8_t pin[LEDGER_HASH_BYTES], nonce[LEDGER_NONCE_BYTES] = {1, 2, 3}, *cmd, *e;
    ledger_operator_pin(f.op.pk, pin);
    char js[LEDGER_JOIN_STRING_BYTES];
    assert_int_equal(ledger_join_string_format(f.cluster, pin, "joi001", SECRET, js), 0);
    size_t cmd_len, len;
    assert_int_equal(ledger_cmd_build_admit(js, node_key.sk, nonce, 0, &cmd, &cmd_len), 0);
    assert_int_equal(ledger_entry_wrap(cmd, cmd_len, f.time_ms, &e, &len), 0);
    assert_int_equal(fx_apply_entry(&f, e, len, NULL), LEDGER_OK);
    assert_true(ledger_node_is_member(&f.l, node_key.pk));
    free(cmd);
    free(e);
    fx_free(&f);
}

static void new_tokens_come_from_the_random_bytes(void **state)
{
    (void)state;
    uint8_t rnd[LEDGER_TOKEN_RANDOM_BYTES];
    char id[LEDGER_STR_CAP], secret[LEDGER_STR_CAP], id2[LEDGER_STR_CAP], s2[LEDGER_STR_CAP];
    memset(rnd, 0, sizeof rnd);
    ledger_token_new(rnd, id, secret);
    assert_string_equal(id, "aaaaaa");
    assert_string_equal(secret, "aaaaaaaaaaaaaaaa");
    memset(rnd, 0xff, sizeof rnd);
    ledger_token_new(rnd, id, secret);
    assert_string_equal(id, "777777");
    assert_string_equal(secret, "7777777777777777");
    rnd[13] = 0x01; /* the last char takes bits 105..109 */
    ledger_token_new(rnd, id2, s2);
    assert_string_not_equal(s2, secret);
    uint8_t pk[LEDGER_KEY_BYTES], sk[LEDGER_SECRET_KEY_BYTES], cluster[16] = {0};
    assert_int_equal(ledger_token_keypair(cluster, id2, s2, pk, sk), 0);
}

static void join_string_round_trips(void **state)
{
    (void)state;
    uint8_t cluster[LEDGER_CLUSTER_ID_BYTES], pin[LEDGER_HASH_BYTES], c2[16], p2[32];
    memset(cluster, 0xab, sizeof cluster);
    memset(pin, 0x11, sizeof pin);
    char s[LEDGER_JOIN_STRING_BYTES], id[LEDGER_STR_CAP], secret[LEDGER_STR_CAP];
    assert_int_equal(ledger_join_string_format(cluster, pin, "abc123", SECRET, s), 0);
    assert_int_equal(ledger_join_string_parse(s, c2, p2, id, secret), 0);
    assert_memory_equal(c2, cluster, sizeof cluster);
    assert_memory_equal(p2, pin, sizeof pin);
    assert_string_equal(id, "abc123");
    assert_string_equal(secret, SECRET);
    s[strlen(s) - 1] = 'X';
    assert_int_equal(ledger_join_string_parse(s, c2, p2, id, secret), NX_ERR_INVAL);
}

/* ---- verify and snapshots -------------------------------------------------- */

static void verify_reports_a_tampered_balance_tx_or_idempotency_record(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(fx_transfer(&f, &alice_key, "alice", "bob", 10), LEDGER_OK);
    assert_verifies(&f);
    /* bump bob's stored balance by hand */
    uint8_t val[LEDGER_MAX_VALUE_BYTES];
    size_t len;
    assert_int_equal(
        f.store->ops->get(f.store->ctx, (const uint8_t *)"account/bob", 11, val, sizeof val, &len),
        0);
    val[len - 8] ^= 1;
    assert_int_equal(f.store->ops->put(f.store->ctx, (const uint8_t *)"account/bob", 11, val, len),
                     0);
    char why[LEDGER_REASON_TEXT_BYTES];
    assert_int_equal(ledger_verify(&f.l, why, sizeof why), NX_ERR_CORRUPT);
    assert_non_null(strstr(why, "account bob"));
    val[len - 8] ^= 1;
    assert_int_equal(f.store->ops->put(f.store->ctx, (const uint8_t *)"account/bob", 11, val, len),
                     0);
    assert_verifies(&f);
    /* change the amount inside tx 2 */
    uint8_t key[11] = "tx/";
    memset(key + 3, 0, 8);
    key[10] = 2;
    assert_int_equal(f.store->ops->get(f.store->ctx, key, sizeof key, val, sizeof val, &len), 0);
    val[4 + 8 + 1 + 8 + 8 + 1 + 5 + 1 + 3] ^= 1; /* first byte of the amount */
    assert_int_equal(f.store->ops->put(f.store->ctx, key, sizeof key, val, len), 0);
    assert_int_equal(ledger_verify(&f.l, why, sizeof why), NX_ERR_CORRUPT);
    assert_non_null(strstr(why, "tx 2"));
    fx_free(&f);

    /* an idempotency record gone missing */
    setup_money(&f);
    struct ledger_cmd c;
    fx_transfer_cmd(&f, &c, &alice_key, "alice", "bob", 10);
    assert_int_equal(fx_submit(&f, &c, alice_key.sk, NULL), LEDGER_OK);
    assert_verifies(&f);
    uint8_t ik[5 + 64];
    memcpy(ik, "idem/", 5);
    memcpy(ik + 5, c.author, 32);
    memcpy(ik + 37, c.idem_key, 32);
    assert_int_equal(f.store->ops->del(f.store->ctx, ik, sizeof ik), 0);
    assert_int_equal(ledger_verify(&f.l, why, sizeof why), NX_ERR_CORRUPT);
    assert_non_null(strstr(why, "indexed but missing"));
    fx_free(&f);
}

struct membuf {
    uint8_t *p;
    size_t len, cap, off, chunk;
};

static int mem_sink(void *arg, const uint8_t *buf, size_t len)
{
    struct membuf *m = arg;
    if (m->len + len > m->cap) {
        m->cap = (m->len + len) * 2;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->len, buf, len);
    m->len += len;
    return 0;
}

static int mem_source(void *arg, uint8_t *buf, size_t cap, size_t *got)
{
    struct membuf *m = arg;
    size_t n = m->len - m->off;
    if (n > cap)
        n = cap;
    if (n > m->chunk)
        n = m->chunk;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    *got = n;
    return 0;
}

static int collect(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                   size_t val_len)
{
    return mem_sink(arg, key, key_len) || mem_sink(arg, val, val_len);
}

static void dump(struct ledger_store *s, struct membuf *m)
{
    memset(m, 0, sizeof *m);
    assert_int_equal(s->ops->iter(s->ctx, (const uint8_t *)"", 0, collect, m), 0);
}

static void snapshot_installs_the_same_state_and_refuses_a_corrupt_stream(void **state)
{
    (void)state;
    struct fx f;
    setup_money(&f);
    assert_int_equal(fx_transfer(&f, &alice_key, "alice", "bob", 10), LEDGER_OK);
    struct membuf snap = {0};
    assert_int_equal(ledger_snapshot_write(f.store, mem_sink, &snap), 0);

    struct ledger_store *fresh = ledger_store_mem_new();
    /* something old the install must drop */
    assert_int_equal(
        fresh->ops->put(fresh->ctx, (const uint8_t *)"account/zed", 11, (const uint8_t *)"x", 1),
        0);
    snap.chunk = 7; /* odd chunk sizes exercise the incremental parser */
    snap.p[snap.len / 2] ^= 1;
    assert_int_equal(ledger_snapshot_install(fresh, mem_source, &snap), NX_ERR_CORRUPT);
    assert_int_equal(ledger_store_mem_count(fresh), 1);
    snap.p[snap.len / 2] ^= 1;
    snap.off = 0;
    snap.len -= 1; /* truncated */
    assert_int_equal(ledger_snapshot_install(fresh, mem_source, &snap), NX_ERR_CORRUPT);
    assert_int_equal(ledger_store_mem_count(fresh), 1);
    snap.len += 1;
    snap.off = 0;
    assert_int_equal(ledger_snapshot_install(fresh, mem_source, &snap), 0);

    struct membuf a, b;
    dump(f.store, &a);
    dump(fresh, &b);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.p, b.p, a.len);
    struct ledger l2;
    ledger_init(&l2, fresh);
    char why[LEDGER_REASON_TEXT_BYTES];
    assert_int_equal(ledger_verify(&l2, why, sizeof why), 0);
    free(a.p);
    free(b.p);
    free(snap.p);
    ledger_store_mem_free(fresh);
    fx_free(&f);
}

static int count_cb(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val,
                    size_t val_len)
{
    (void)val;
    (void)val_len;
    struct membuf *m = arg;
    if (m->len && (key_len < m->off || memcmp(key, m->p, key_len < m->off ? key_len : m->off) < 0))
        return -1; /* out of order */
    m->p = realloc(m->p, key_len);
    memcpy(m->p, key, key_len);
    m->off = key_len;
    m->len++;
    return 0;
}

static void store_iterates_a_prefix_in_order_and_deletes(void **state)
{
    (void)state;
    struct ledger_store *s = ledger_store_mem_new();
    char k[32];
    for (int i = 999; i >= 0; i--) {
        int n = snprintf(k, sizeof k, "a/%04d", (i * 7919) % 1000);
        assert_int_equal(s->ops->put(s->ctx, (const uint8_t *)k, (size_t)n, (uint8_t *)k, 1), 0);
    }
    assert_int_equal(s->ops->put(s->ctx, (const uint8_t *)"b/x", 3, (const uint8_t *)"", 0), 0);
    assert_int_equal(s->ops->put(s->ctx, (const uint8_t *)"a", 1, (const uint8_t *)"", 0), 0);
    struct membuf m = {0};
    assert_int_equal(s->ops->iter(s->ctx, (const uint8_t *)"a/", 2, count_cb, &m), 0);
    assert_int_equal(m.len, 1000);
    for (int i = 0; i < 1000; i += 2) {
        int n = snprintf(k, sizeof k, "a/%04d", i);
        assert_int_equal(s->ops->del(s->ctx, (const uint8_t *)k, (size_t)n), 0);
    }
    m.len = 0;
    assert_int_equal(s->ops->iter(s->ctx, (const uint8_t *)"a/", 2, count_cb, &m), 0);
    assert_int_equal(m.len, 500);
    assert_int_equal(ledger_store_mem_count(s), 502);
    free(m.p);
    ledger_store_mem_free(s);
}

/* docs/ledger.md "Test vector": the exact bytes of one transfer. */
static void transfer_bytes_match_the_documented_test_vector(void **state)
{
    (void)state;
    static const char want[] = "4e584c45444745522d636d642d76313a0e000000120000000101010101010101"
                               "01010101010101018139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a2"
                               "5df60f5b8fc9b394030303030303030303030303030303030303030303030303"
                               "0303030303030303000000000000000005616c69636503626f62050000000000"
                               "00008a093b2e17a4f183d837d3eca1779b4eae962e02f423d47c7b4e12022346"
                               "ccb4695ae5cc8e723a540c6b9df4ff9e3013471711a0d10363063fadcb88c33a"
                               "ae0c";
    uint8_t seed[32], pk[32], sk[64], cluster[16], idem[32], *out;
    size_t len;
    memset(seed, 2, sizeof seed);
    memset(cluster, 1, sizeof cluster);
    memset(idem, 3, sizeof idem);
    crypto_sign_seed_keypair(pk, sk, seed);
    assert_int_equal(ledger_cmd_build_transfer(cluster, sk, "alice", "bob", 5, idem, 0, &out, &len),
                     0);
    char hex[2 * 194 + 1];
    assert_int_equal(len, 194);
    nx_hex_encode(hex, out, len);
    assert_string_equal(hex, want);
    struct ledger_cmd c;
    assert_int_equal(ledger_cmd_decode(out, len, &c), 0);
    assert_int_equal(c.u.transfer.amount, 5);
    assert_string_equal(c.u.transfer.from, "alice");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(genesis_sets_operator_and_second_genesis_is_rejected),
        cmocka_unit_test(command_before_genesis_is_rejected),
        cmocka_unit_test(bad_signature_is_rejected_audited_and_changes_nothing),
        cmocka_unit_test(signature_memo_reuses_a_check_only_for_the_same_bytes),
        cmocka_unit_test(signature_by_someone_else_than_author_is_rejected),
        cmocka_unit_test(wrong_cluster_is_rejected),
        cmocka_unit_test(malformed_entries_are_rejected_and_audited),
        cmocka_unit_test(no_single_byte_change_of_a_command_is_accepted),
        cmocka_unit_test(entry_at_or_below_applied_index_is_skipped),
        cmocka_unit_test(transfer_moves_value_and_chains_the_hash),
        cmocka_unit_test(client_helper_builds_an_accepted_transfer),
        cmocka_unit_test(overdraft_is_rejected),
        cmocka_unit_test(transfer_not_signed_by_payer_needs_a_grant),
        cmocka_unit_test(reused_idempotency_key_answers_the_original_result),
        cmocka_unit_test(stale_and_future_commands_are_rejected),
        cmocka_unit_test(
            idempotency_records_are_forgotten_after_the_window_and_replays_stay_refused),
        cmocka_unit_test(unknown_account_is_rejected),
        cmocka_unit_test(amount_overflow_is_rejected),
        cmocka_unit_test(zero_and_self_transfers_are_rejected),
        cmocka_unit_test(mint_needs_the_operator),
        cmocka_unit_test(run_is_charged_exactly_once_and_only_by_a_node),
        cmocka_unit_test(accounts_are_created_by_their_tenant_owner_only),
        cmocka_unit_test(agents_publish_deprecate_and_deploy),
        cmocka_unit_test(publish_stores_the_manifest_and_refuses_one_that_does_not_match),
        cmocka_unit_test(publish_manifest_over_the_bound_is_not_a_command),
        cmocka_unit_test(token_admits_a_node_and_is_consumed),
        cmocka_unit_test(duplicate_admit_is_rejected),
        cmocka_unit_test(single_use_token_admits_one_of_two_racing_nodes),
        cmocka_unit_test(expired_token_is_rejected),
        cmocka_unit_test(proposer_time_never_goes_back),
        cmocka_unit_test(expire_command_ends_a_token),
        cmocka_unit_test(used_up_token_is_rejected),
        cmocka_unit_test(forged_token_proof_is_rejected),
        cmocka_unit_test(other_cluster_token_is_rejected),
        cmocka_unit_test(node_is_removed_by_operator_or_itself),
        cmocka_unit_test(joiner_builds_its_admit_from_the_join_string),
        cmocka_unit_test(new_tokens_come_from_the_random_bytes),
        cmocka_unit_test(join_string_round_trips),
        cmocka_unit_test(verify_reports_a_tampered_balance_tx_or_idempotency_record),
        cmocka_unit_test(snapshot_installs_the_same_state_and_refuses_a_corrupt_stream),
        cmocka_unit_test(store_iterates_a_prefix_in_order_and_deletes),
        cmocka_unit_test(transfer_bytes_match_the_documented_test_vector),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
