/*
 * test_ledger_store.c - the ledger's RocksDB store (node/ledger_store_rocksdb.h):
 * applied entries and the Raft applied index land in one write, survive a
 * reopen, a batch never written leaves nothing behind (and the entry applies
 * exactly once when replayed), and a snapshot installs through a captured batch.
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

#include "node/ledger_store_rocksdb.h"

struct fix {
    char dir[64];
    struct raft_store *rs;
    struct ledger_store *st;
    struct ledger l;
    uint8_t op_pk[LEDGER_KEY_BYTES], op_sk[LEDGER_SECRET_KEY_BYTES];
    uint8_t cluster[LEDGER_CLUSTER_ID_BYTES];
    uint64_t index, idem;
};

static void fix_open(struct fix *f)
{
    char err[256];
    assert_int_equal(raft_store_open(&f->rs, f->dir, err, sizeof err), NX_OK);
    f->st = ledger_store_rocksdb_new(f->rs);
    assert_non_null(f->st);
    ledger_init(&f->l, f->st);
}

static void fix_close(struct fix *f)
{
    ledger_store_rocksdb_free(f->st);
    raft_store_close(f->rs);
}

static int setup(void **state)
{
    assert_true(sodium_init() >= 0);
    struct fix *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/nx-lstore-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    uint8_t seed[32] = {7};
    crypto_sign_seed_keypair(f->op_pk, f->op_sk, seed);
    memset(f->cluster, 0x42, sizeof f->cluster);
    fix_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    fix_close(f);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* A signed, wrapped entry by the operator; *len set; caller frees. */
static uint8_t *entry(struct fix *f, struct ledger_cmd *c, size_t *len)
{
    memcpy(c->cluster_id, f->cluster, sizeof f->cluster);
    memcpy(c->author, f->op_pk, LEDGER_KEY_BYTES);
    f->idem++;
    memcpy(c->idem_key, &f->idem, sizeof f->idem);
    c->created_ms = 1000;
    uint8_t *cmd = NULL, *e = NULL;
    size_t cl = 0;
    assert_int_equal(ledger_cmd_build(c, f->op_sk, &cmd, &cl), NX_OK);
    assert_int_equal(ledger_entry_wrap(cmd, cl, 1000, &e, len), NX_OK);
    free(cmd);
    return e;
}

/* Applies entries to one batch; writes it with the applied index when write is true. */
static void apply_all(struct fix *f, struct ledger_cmd *cmds, size_t n, bool write)
{
    struct ledger_batch b;
    ledger_batch_init(&b);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *e = entry(f, &cmds[i], &len);
        struct ledger_result r;
        assert_int_equal(ledger_apply(&f->l, e, len, ++f->index, &b, &r), NX_OK);
        assert_int_equal(r.reason, LEDGER_OK);
        free(e);
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    assert_int_equal(ledger_store_rocksdb_fill(f->st, &b, wb), NX_OK);
    raft_store_batch_applied(f->rs, wb, f->index);
    if (write)
        assert_int_equal(raft_store_write(f->rs, wb, true), NX_OK);
    rocksdb_writebatch_destroy(wb);
    ledger_batch_free(&b);
}

static void setup_cmds(struct ledger_cmd c[4])
{
    memset(c, 0, 4 * sizeof *c);
    c[0].type = LEDGER_CMD_GENESIS;
    c[1].type = LEDGER_CMD_TENANT_CREATE;
    strcpy(c[1].u.tenant.name, "t");
    c[2].type = LEDGER_CMD_ACCOUNT_CREATE;
    strcpy(c[2].u.account.name, "alice");
    strcpy(c[2].u.account.tenant, "t");
    c[3].type = LEDGER_CMD_MINT;
    strcpy(c[3].u.mint.to, "alice");
    c[3].u.mint.amount = 100;
}

static void batch_and_applied_index_survive_reopen(void **state)
{
    struct fix *f = *state;
    struct ledger_cmd c[4];
    setup_cmds(c);
    memcpy(c[1].u.tenant.owner, f->op_pk, LEDGER_KEY_BYTES);
    memcpy(c[2].u.account.key, f->op_pk, LEDGER_KEY_BYTES);
    apply_all(f, c, 4, true);
    fix_close(f);
    fix_open(f);
    uint64_t bal = 0, applied = 0;
    assert_int_equal(ledger_balance(&f->l, "alice", &bal), NX_OK);
    assert_int_equal(bal, 100);
    assert_int_equal(ledger_applied_index(&f->l, &applied), NX_OK);
    assert_int_equal(applied, 4);
    char why[256];
    assert_int_equal(ledger_verify(&f->l, why, sizeof why), NX_OK);
}

static void unwritten_batch_leaves_nothing_and_replay_applies_once(void **state)
{
    struct fix *f = *state;
    struct ledger_cmd c[4];
    setup_cmds(c);
    memcpy(c[1].u.tenant.owner, f->op_pk, LEDGER_KEY_BYTES);
    memcpy(c[2].u.account.key, f->op_pk, LEDGER_KEY_BYTES);
    apply_all(f, c, 4, true);
    struct ledger_cmd m = c[3];
    uint64_t idem_before = f->idem;
    apply_all(f, &m, 1, false); /* "crash" before the write */
    fix_close(f);
    fix_open(f);
    uint64_t bal = 0, applied = 0;
    assert_int_equal(ledger_balance(&f->l, "alice", &bal), NX_OK);
    assert_int_equal(bal, 100);
    assert_int_equal(ledger_applied_index(&f->l, &applied), NX_OK);
    assert_int_equal(applied, 4);
    /* Raft replays the same entry (same index, same bytes): applied once. */
    f->index = 4;
    f->idem = idem_before;
    m = c[3];
    apply_all(f, &m, 1, true);
    assert_int_equal(ledger_balance(&f->l, "alice", &bal), NX_OK);
    assert_int_equal(bal, 200);
    size_t len;
    m = c[3];
    f->idem = idem_before;
    uint8_t *e = entry(f, &m, &len);
    struct ledger_batch b;
    ledger_batch_init(&b);
    struct ledger_result r;
    assert_int_equal(ledger_apply(&f->l, e, len, 5, &b, &r), NX_OK);
    assert_true(r.already_applied);
    ledger_batch_free(&b);
    free(e);
}

static int sink_append(void *arg, const uint8_t *buf, size_t len)
{
    struct {
        uint8_t *p;
        size_t n;
    } *s = arg;
    uint8_t *g = realloc(s->p, s->n + len);
    assert_non_null(g);
    memcpy(g + s->n, buf, len);
    s->p = g;
    s->n += len;
    return 0;
}

struct src {
    const uint8_t *p;
    size_t n, pos;
};

static int source_read(void *arg, uint8_t *buf, size_t cap, size_t *got)
{
    struct src *s = arg;
    size_t k = s->n - s->pos < cap ? s->n - s->pos : cap;
    memcpy(buf, s->p + s->pos, k);
    s->pos += k;
    *got = k;
    return 0;
}

static void snapshot_installs_only_when_captured_batch_is_written(void **state)
{
    struct fix *f = *state;
    struct ledger_cmd c[4];
    setup_cmds(c);
    memcpy(c[1].u.tenant.owner, f->op_pk, LEDGER_KEY_BYTES);
    memcpy(c[2].u.account.key, f->op_pk, LEDGER_KEY_BYTES);
    apply_all(f, c, 4, true);
    struct {
        uint8_t *p;
        size_t n;
    } snap = {NULL, 0};
    assert_int_equal(ledger_snapshot_write(f->st, sink_append, &snap), NX_OK);

    struct fix g = *f;
    snprintf(g.dir, sizeof g.dir, "/tmp/nx-lstore2-XXXXXX");
    assert_non_null(mkdtemp(g.dir));
    fix_open(&g);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    ledger_store_rocksdb_capture(g.st, wb);
    struct src s = {snap.p, snap.n, 0};
    assert_int_equal(ledger_snapshot_install(g.st, source_read, &s), NX_OK);
    ledger_store_rocksdb_capture(g.st, NULL);
    uint64_t bal = 0;
    assert_int_equal(ledger_balance(&g.l, "alice", &bal), NX_ERR_NOT_FOUND); /* not yet */
    assert_int_equal(raft_store_write(g.rs, wb, true), NX_OK);
    rocksdb_writebatch_destroy(wb);
    assert_int_equal(ledger_balance(&g.l, "alice", &bal), NX_OK);
    assert_int_equal(bal, 100);
    char why[256];
    assert_int_equal(ledger_verify(&g.l, why, sizeof why), NX_OK);
    fix_close(&g);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g.dir);
    assert_int_equal(system(cmd), 0);
    free(snap.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(batch_and_applied_index_survive_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(unwritten_batch_leaves_nothing_and_replay_applies_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(snapshot_installs_only_when_captured_batch_is_written,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
