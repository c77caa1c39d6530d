/*
 * test_ledger_host.c - the node's snapshot of both state machines
 * (node/ledger_host.h): a snapshot of kv + ledger installs into another
 * store as a copy with the applied index, a corrupted one changes nothing,
 * the bootstrap snapshot (empty data) empties both, and verify answers 409
 * on a damaged copy.
 */
#include <rocksdb/c.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "node/kv.h"
#include "node/ledger_host.h"
#include "node/ledger_store_rocksdb.h"

struct side {
    char dir[64];
    struct raft_store *rs;
    struct ledger_host *lh;
};

struct two {
    struct side a, b;
    uint8_t op_pk[LEDGER_KEY_BYTES], op_sk[LEDGER_SECRET_KEY_BYTES];
};

static void side_open(struct side *s, const char *tmpl)
{
    char err[256];
    snprintf(s->dir, sizeof s->dir, "%s", tmpl);
    assert_non_null(mkdtemp(s->dir));
    assert_int_equal(raft_store_open(&s->rs, s->dir, err, sizeof err), NX_OK);
    assert_int_equal(ledger_host_open(&s->lh, s->rs, s->dir, false, err, sizeof err), NX_OK);
}

static void side_close(struct side *s)
{
    ledger_host_free(s->lh);
    raft_store_close(s->rs);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    assert_true(sodium_init() >= 0);
    struct two *t = calloc(1, sizeof *t);
    side_open(&t->a, "/tmp/nx-lhost-a-XXXXXX");
    side_open(&t->b, "/tmp/nx-lhost-b-XXXXXX");
    uint8_t seed[32] = {9};
    crypto_sign_seed_keypair(t->op_pk, t->op_sk, seed);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct two *t = *state;
    side_close(&t->a);
    side_close(&t->b);
    free(t);
    return 0;
}

/* Genesis, tenant, account, mint 50 on a, plus kv "k" = "v", applied at index 5. */
static void fill_a(struct two *t)
{
    struct ledger_cmd c[4];
    memset(c, 0, sizeof c);
    c[0].type = LEDGER_CMD_GENESIS;
    c[1].type = LEDGER_CMD_TENANT_CREATE;
    strcpy(c[1].u.tenant.name, "t");
    memcpy(c[1].u.tenant.owner, t->op_pk, LEDGER_KEY_BYTES);
    c[2].type = LEDGER_CMD_ACCOUNT_CREATE;
    strcpy(c[2].u.account.name, "acct");
    strcpy(c[2].u.account.tenant, "t");
    memcpy(c[2].u.account.key, t->op_pk, LEDGER_KEY_BYTES);
    c[3].type = LEDGER_CMD_MINT;
    strcpy(c[3].u.mint.to, "acct");
    c[3].u.mint.amount = 50;
    struct ledger_batch b;
    ledger_batch_init(&b);
    for (int i = 0; i < 4; i++) {
        memset(c[i].cluster_id, 1, LEDGER_CLUSTER_ID_BYTES);
        memcpy(c[i].author, t->op_pk, LEDGER_KEY_BYTES);
        c[i].idem_key[0] = (uint8_t)(i + 1);
        c[i].created_ms = 1000;
        uint8_t *cmd, *e;
        size_t cl, el;
        assert_int_equal(ledger_cmd_build(&c[i], t->op_sk, &cmd, &cl), NX_OK);
        assert_int_equal(ledger_entry_wrap(cmd, cl, 1000, &e, &el), NX_OK);
        struct ledger_result r;
        assert_int_equal(ledger_apply(ledger_host_ledger(t->a.lh), e, el, (uint64_t)i + 1, &b, &r),
                         NX_OK);
        assert_int_equal(r.reason, LEDGER_OK);
        free(cmd);
        free(e);
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    assert_int_equal(ledger_store_rocksdb_fill(ledger_host_store(t->a.lh), &b, wb), NX_OK);
    uint8_t kc[16];
    long n = kv_cmd_encode(KV_OP_PUT, "k", 1, "v", 1, kc, sizeof kc);
    assert_true(n > 0);
    assert_int_equal(kv_apply(t->a.rs, wb, kc, (size_t)n), NX_OK);
    raft_store_batch_applied(t->a.rs, wb, 5);
    assert_int_equal(raft_store_write(t->a.rs, wb, true), NX_OK);
    rocksdb_writebatch_destroy(wb);
    ledger_batch_free(&b);
}

static void assert_copy(struct side *s, bool present)
{
    uint64_t bal = 0;
    char *v = NULL;
    size_t vl = 0;
    int rc = ledger_balance(ledger_host_ledger(s->lh), "acct", &bal);
    int kc = kv_get(s->rs, "k", 1, &v, &vl);
    if (!present) {
        assert_int_equal(rc, NX_ERR_NOT_FOUND);
        assert_int_equal(kc, NX_ERR_NOT_FOUND);
        return;
    }
    assert_int_equal(rc, NX_OK);
    assert_int_equal(bal, 50);
    assert_int_equal(kc, NX_OK);
    assert_memory_equal(v, "v", 1);
    free(v);
    char why[256];
    assert_int_equal(ledger_verify(ledger_host_ledger(s->lh), why, sizeof why), NX_OK);
}

/* Fills a, snapshots it into *snap (caller frees) and installs that into b. */
static size_t copy_a_to_b(struct two *t, uint8_t **snap)
{
    fill_a(t);
    size_t len;
    assert_int_equal(ledger_host_snapshot(t->a.lh, t->a.rs, snap, &len), NX_OK);
    assert_int_equal(ledger_host_install(t->b.lh, t->b.rs, *snap, len, 5), NX_OK);
    assert_copy(&t->b, true);
    return len;
}

static void snapshot_of_kv_and_ledger_installs_as_a_copy(void **state)
{
    struct two *t = *state;
    uint8_t *snap;
    copy_a_to_b(t, &snap);
    /* the bootstrap snapshot (no data) empties both */
    assert_int_equal(ledger_host_install(t->b.lh, t->b.rs, NULL, 0, 0), NX_OK);
    assert_copy(&t->b, false);
    free(snap);
}

static void corrupted_snapshot_changes_nothing(void **state)
{
    struct two *t = *state;
    uint8_t *snap;
    size_t len = copy_a_to_b(t, &snap);
    /* install a's snapshot with one ledger byte flipped over b's copy: refused, b unchanged */
    uint8_t *bad = malloc(len);
    memcpy(bad, snap, len);
    bad[len - 40] ^= 1; /* inside the ledger stream's trailing hash or last record */
    assert_int_not_equal(ledger_host_install(t->b.lh, t->b.rs, bad, len, 9), NX_OK);
    assert_copy(&t->b, true);
    memcpy(bad, snap, len);
    bad[0] ^= 1; /* the magic */
    assert_int_equal(ledger_host_install(t->b.lh, t->b.rs, bad, len, 9), NX_ERR_DECODE);
    assert_int_equal(ledger_host_install(t->b.lh, t->b.rs, bad, 7, 9), NX_ERR_DECODE);
    assert_copy(&t->b, true);
    free(bad);
    free(snap);
}

static void verify_answers_409_with_the_first_mismatch(void **state)
{
    struct two *t = *state;
    fill_a(t);
    unsigned status = 0;
    json_t *o = ledger_host_read_json(t->a.lh, "verify", 5, &status);
    assert_int_equal(status, 200);
    assert_true(json_is_true(json_object_get(o, "ok")));
    json_decref(o);
    /* lose the mint's transaction record: the balances no longer follow from the log */
    uint8_t key[11] = {'t', 'x', '/', 0, 0, 0, 0, 0, 0, 0, 1};
    struct ledger_store *st = ledger_host_store(t->a.lh);
    assert_int_equal(st->ops->del(st->ctx, key, sizeof key), NX_OK);
    o = ledger_host_read_json(t->a.lh, "verify", 5, &status);
    assert_int_equal(status, 409);
    assert_true(json_is_false(json_object_get(o, "ok")));
    assert_non_null(json_string_value(json_object_get(o, "error")));
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(snapshot_of_kv_and_ledger_installs_as_a_copy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(corrupted_snapshot_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_answers_409_with_the_first_mismatch, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
