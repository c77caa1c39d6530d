/*
 * test_kv.c - the KV state machine (node/kv.h) on a real RocksDB store:
 * commands apply, malformed ones are refused alike everywhere, a snapshot
 * installs into another store as an exact copy, and a malformed snapshot
 * changes nothing.
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

#include "node/kv.h"

struct two {
    char dir_a[64], dir_b[64];
    struct raft_store *a, *b;
};

static int setup(void **state)
{
    struct two *t = calloc(1, sizeof *t);
    char err[256];
    snprintf(t->dir_a, sizeof t->dir_a, "/tmp/nx-kv-a-XXXXXX");
    snprintf(t->dir_b, sizeof t->dir_b, "/tmp/nx-kv-b-XXXXXX");
    assert_non_null(mkdtemp(t->dir_a));
    assert_non_null(mkdtemp(t->dir_b));
    assert_int_equal(raft_store_open(&t->a, t->dir_a, err, sizeof err), NX_OK);
    assert_int_equal(raft_store_open(&t->b, t->dir_b, err, sizeof err), NX_OK);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct two *t = *state;
    raft_store_close(t->a);
    raft_store_close(t->b);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", t->dir_a, t->dir_b);
    assert_int_equal(system(cmd), 0);
    free(t);
    return 0;
}

static void apply(struct raft_store *s, enum kv_op op, const char *key, const char *value)
{
    uint8_t cmd[1024];
    long n = kv_cmd_encode(op, key, strlen(key), value, value ? strlen(value) : 0, cmd, sizeof cmd);
    assert_true(n > 0);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    assert_int_equal(kv_apply(s, wb, cmd, (size_t)n), NX_OK);
    assert_int_equal(raft_store_write(s, wb, false), NX_OK);
    rocksdb_writebatch_destroy(wb);
}

static void check_value(struct raft_store *s, const char *key, const char *want)
{
    char *v = NULL;
    size_t n = 0;
    int rc = kv_get(s, key, strlen(key), &v, &n);
    if (want == NULL) {
        assert_int_equal(rc, NX_ERR_NOT_FOUND);
        return;
    }
    assert_int_equal(rc, NX_OK);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(v, want, n);
    free(v);
}

static void put_and_delete_apply_in_order(void **state)
{
    struct two *t = *state;
    apply(t->a, KV_OP_PUT, "k1", "one");
    apply(t->a, KV_OP_PUT, "k1", "uno");
    apply(t->a, KV_OP_PUT, "k2", "");
    check_value(t->a, "k1", "uno");
    check_value(t->a, "k2", "");
    apply(t->a, KV_OP_DELETE, "k1", NULL);
    check_value(t->a, "k1", NULL);
}

static void invalid_keys_and_commands_are_refused(void **state)
{
    struct two *t = *state;
    uint8_t cmd[600];
    char long_key[KV_MAX_KEY_BYTES + 2];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    assert_int_equal(kv_cmd_encode(KV_OP_PUT, long_key, strlen(long_key), "v", 1, cmd, sizeof cmd),
                     NX_ERR_INVAL);
    assert_int_equal(kv_cmd_encode(KV_OP_PUT, "a b", 3, "v", 1, cmd, sizeof cmd), NX_ERR_INVAL);
    assert_int_equal(kv_cmd_encode(KV_OP_PUT, "", 0, "v", 1, cmd, sizeof cmd), NX_ERR_INVAL);
    assert_false(kv_key_valid("\x01", 1));
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    const uint8_t bad_op[] = {9, 1, 0, 'k'};
    const uint8_t short_key[] = {KV_OP_PUT, 5, 0, 'k'};
    const uint8_t delete_with_value[] = {KV_OP_DELETE, 1, 0, 'k', 'v'};
    assert_int_equal(kv_apply(t->a, wb, bad_op, sizeof bad_op), NX_ERR_DECODE);
    assert_int_equal(kv_apply(t->a, wb, short_key, sizeof short_key), NX_ERR_DECODE);
    assert_int_equal(kv_apply(t->a, wb, delete_with_value, sizeof delete_with_value),
                     NX_ERR_DECODE);
    assert_int_equal(kv_apply(t->a, wb, bad_op, 2), NX_ERR_DECODE);
    rocksdb_writebatch_destroy(wb);
}

static void snapshot_installs_an_exact_copy(void **state)
{
    struct two *t = *state;
    apply(t->a, KV_OP_PUT, "alpha", "1");
    apply(t->a, KV_OP_PUT, "beta", "22");
    apply(t->a, KV_OP_PUT, "gamma", "");
    apply(t->b, KV_OP_PUT, "stale", "must go"); /* replaced by the install */
    uint8_t *snap = NULL;
    size_t len = 0;
    assert_int_equal(kv_snapshot(t->a, &snap, &len), NX_OK);
    assert_int_equal(kv_install(t->b, snap, len, 42), NX_OK);
    check_value(t->b, "alpha", "1");
    check_value(t->b, "beta", "22");
    check_value(t->b, "gamma", "");
    check_value(t->b, "stale", NULL);
    uint8_t *again = NULL;
    size_t len2 = 0;
    assert_int_equal(kv_snapshot(t->b, &again, &len2), NX_OK);
    assert_int_equal(len2, len);
    assert_memory_equal(again, snap, len);
    free(again);
    free(snap);
}

static void malformed_snapshot_changes_nothing(void **state)
{
    struct two *t = *state;
    apply(t->b, KV_OP_PUT, "keep", "me");
    const uint8_t truncated[] = {4, 0, 0, 0, 'a', 'b'};
    const uint8_t bad_key[] = {1, 0, 0, 0, ' ', 0, 0, 0, 0};
    const uint8_t long_value[] = {1, 0, 0, 0, 'k', 9, 0, 0, 0, 'v'};
    assert_int_equal(kv_install(t->b, truncated, sizeof truncated, 1), NX_ERR_DECODE);
    assert_int_equal(kv_install(t->b, bad_key, sizeof bad_key, 1), NX_ERR_DECODE);
    assert_int_equal(kv_install(t->b, long_value, sizeof long_value, 1), NX_ERR_DECODE);
    check_value(t->b, "keep", "me");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(put_and_delete_apply_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_keys_and_commands_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(snapshot_installs_an_exact_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_snapshot_changes_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
