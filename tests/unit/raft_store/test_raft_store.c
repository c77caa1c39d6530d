/*
 * test_raft_store.c - the RocksDB Raft storage (node/raft_store.h): what is
 * persisted comes back, conflicting suffixes are overwritten, compaction keeps
 * the right tail, and every kind of damage to stored values is refused with
 * NX_ERR_CORRUPT and a message naming what is wrong.
 */
#include <rocksdb/c.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "node/raft_store.h"

struct fixture {
    char dir[64];
    struct raft_store *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/nx-raft-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[256];
    assert_int_equal(raft_store_open(&f->s, f->dir, err, sizeof err), NX_OK);
    struct raft_conf conf = {.n_voters = 1, .voters = {7}};
    assert_int_equal(raft_store_bootstrap(f->s, &conf), NX_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    raft_store_close(f->s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void reopen(struct fixture *f)
{
    raft_store_close(f->s);
    char err[256];
    assert_int_equal(raft_store_open(&f->s, f->dir, err, sizeof err), NX_OK);
}

/* Persists entries [from, to] with the given term and data "e<index>", plus a hard state. */
static void persist(struct fixture *f, uint64_t from, uint64_t to, uint64_t term, uint64_t commit)
{
    struct raft_entry ents[64];
    char data[64][16];
    size_t n = 0;
    for (uint64_t i = from; i <= to; i++, n++) {
        int len = snprintf(data[n], sizeof data[n], "e%llu", (unsigned long long)i);
        ents[n] = (struct raft_entry){term, i, RAFT_ENTRY_NORMAL, (uint32_t)len,
                                      (const uint8_t *)data[n]};
    }
    struct raft_ready rd = {0};
    rd.entries = ents;
    rd.n_entries = n;
    rd.has_hard_state = true;
    rd.hard_state = (struct raft_hard_state){term, 7, commit};
    assert_int_equal(raft_store_persist(f->s, &rd), NX_OK);
}

static int load(struct fixture *f, struct raft_store_boot *b, char *err, size_t cap)
{
    return raft_store_load(f->s, b, err, cap);
}

static void persisted_entries_and_hard_state_round_trip(void **state)
{
    struct fixture *f = *state;
    persist(f, 1, 5, 2, 4);
    reopen(f);
    struct raft_store_boot b;
    char err[256] = "";
    assert_int_equal(load(f, &b, err, sizeof err), NX_OK);
    assert_true(b.has_state);
    assert_int_equal(b.boot.n_entries, 5);
    assert_int_equal(b.boot.snapshot.index, 0);
    assert_int_equal(b.boot.snapshot.conf.n_voters, 1);
    assert_int_equal(b.boot.snapshot.conf.voters[0], 7);
    assert_int_equal(b.boot.hard_state.term, 2);
    assert_int_equal(b.boot.hard_state.vote, 7);
    assert_int_equal(b.boot.hard_state.commit, 4);
    for (size_t i = 0; i < 5; i++) {
        char want[16];
        snprintf(want, sizeof want, "e%zu", i + 1);
        assert_int_equal(b.boot.entries[i].index, i + 1);
        assert_int_equal(b.boot.entries[i].term, 2);
        assert_int_equal(b.boot.entries[i].len, strlen(want));
        assert_memory_equal(b.boot.entries[i].data, want, strlen(want));
    }
    raft_store_boot_free(&b);
}

static void new_store_without_bootstrap_has_no_state(void **state)
{
    struct fixture *f = *state;
    char dir[128], err[256];
    snprintf(dir, sizeof dir, "%s/other", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    struct raft_store *s;
    assert_int_equal(raft_store_open(&s, dir, err, sizeof err), NX_OK);
    struct raft_store_boot b;
    assert_int_equal(raft_store_load(s, &b, err, sizeof err), NX_OK);
    assert_false(b.has_state);
    raft_store_boot_free(&b);
    struct raft_conf conf = {.n_voters = 1, .voters = {9}};
    assert_int_equal(raft_store_bootstrap(s, &conf), NX_OK);
    assert_int_equal(raft_store_bootstrap(s, &conf), NX_ERR_EXISTS);
    raft_store_close(s);
}

static void conflicting_suffix_is_overwritten(void **state)
{
    struct fixture *f = *state;
    persist(f, 1, 5, 1, 2);
    persist(f, 3, 4, 2, 2);
    struct raft_store_boot b;
    char err[256];
    assert_int_equal(load(f, &b, err, sizeof err), NX_OK);
    assert_int_equal(b.boot.n_entries, 4);
    assert_int_equal(b.boot.entries[1].term, 1);
    assert_int_equal(b.boot.entries[2].term, 2);
    assert_int_equal(b.boot.entries[3].term, 2);
    assert_int_equal(b.boot.entries[3].index, 4);
    raft_store_boot_free(&b);
}

static void overwrite_after_load_deletes_the_old_suffix(void **state)
{
    struct fixture *f = *state;
    persist(f, 1, 8, 1, 2);
    reopen(f);
    struct raft_store_boot b;
    char err[256];
    assert_int_equal(load(f, &b, err, sizeof err), NX_OK); /* the store now knows last = 8 */
    raft_store_boot_free(&b);
    persist(f, 4, 5, 2, 2); /* entries 6..8 must go */
    persist(f, 6, 6, 2, 2); /* a plain append after the overwrite */
    reopen(f);
    assert_int_equal(load(f, &b, err, sizeof err), NX_OK);
    assert_int_equal(b.boot.n_entries, 6);
    assert_int_equal(b.boot.entries[3].term, 2);
    assert_int_equal(b.boot.entries[5].index, 6);
    assert_int_equal(b.boot.entries[5].term, 2);
    raft_store_boot_free(&b);
}

static void compaction_keeps_snapshot_and_tail(void **state)
{
    struct fixture *f = *state;
    persist(f, 1, 10, 3, 8);
    struct raft_conf conf = {.n_voters = 2, .voters = {7, 8}};
    assert_int_equal(raft_store_compact(f->s, 6, 3, &conf, "SNAP", 4), NX_OK);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    raft_store_batch_applied(f->s, wb, 6);
    assert_int_equal(raft_store_write(f->s, wb, true), NX_OK);
    rocksdb_writebatch_destroy(wb);
    reopen(f);
    struct raft_store_boot b;
    char err[256];
    assert_int_equal(load(f, &b, err, sizeof err), NX_OK);
    assert_int_equal(b.boot.snapshot.index, 6);
    assert_int_equal(b.boot.snapshot.term, 3);
    assert_int_equal(b.boot.snapshot.len, 4);
    assert_memory_equal(b.boot.snapshot.data, "SNAP", 4);
    assert_int_equal(b.boot.snapshot.conf.n_voters, 2);
    assert_int_equal(b.boot.applied, 6);
    assert_int_equal(b.boot.n_entries, 4);
    assert_int_equal(b.boot.entries[0].index, 7);
    raft_store_boot_free(&b);
}

static void persisted_snapshot_replaces_the_log(void **state)
{
    struct fixture *f = *state;
    persist(f, 1, 4, 1, 4);
    struct raft_snapshot sn = {.index = 20,
                               .term = 5,
                               .conf = {.n_voters = 1, .voters = {7}},
                               .len = 3,
                               .data = (const uint8_t *)"abc"};
    struct raft_ready rd = {0};
    rd.snapshot = &sn;
    rd.has_hard_state = true;
    rd.hard_state = (struct raft_hard_state){5, 0, 20};
    assert_int_equal(raft_store_persist(f->s, &rd), NX_OK);
    struct raft_store_boot b;
    char err[256];
    assert_int_equal(load(f, &b, err, sizeof err), NX_OK);
    assert_int_equal(b.boot.snapshot.index, 20);
    assert_int_equal(b.boot.n_entries, 0);
    assert_int_equal(b.boot.hard_state.commit, 20);
    raft_store_boot_free(&b);
}

static void only_commit_changes_are_written_unsynced(void **state)
{
    struct fixture *f = *state;
    persist(f, 1, 3, 1, 0); /* entries: synced */
    uint64_t syncs = raft_store_syncs(f->s);
    struct raft_ready rd = {0};
    rd.has_hard_state = true;
    rd.hard_state = (struct raft_hard_state){1, 7, 3}; /* commit only */
    assert_int_equal(raft_store_persist(f->s, &rd), NX_OK);
    assert_int_equal(raft_store_syncs(f->s), syncs);
    rd.hard_state = (struct raft_hard_state){2, 0, 3}; /* new term: synced */
    assert_int_equal(raft_store_persist(f->s, &rd), NX_OK);
    assert_int_equal(raft_store_syncs(f->s), syncs + 1);
    rd.hard_state = (struct raft_hard_state){2, 9, 3}; /* vote: synced */
    assert_int_equal(raft_store_persist(f->s, &rd), NX_OK);
    assert_int_equal(raft_store_syncs(f->s), syncs + 2);
    reopen(f);
    struct raft_store_boot b;
    char err[256];
    assert_int_equal(load(f, &b, err, sizeof err), NX_OK);
    assert_int_equal(b.boot.hard_state.commit, 3);
    assert_int_equal(b.boot.hard_state.vote, 9);
    raft_store_boot_free(&b);
}

/* ---- corruption ------------------------------------------------------------- */

static void flip_value(struct fixture *f, enum raft_store_cf cf, const char *key, size_t klen,
                       size_t at)
{
    char *rerr = NULL;
    size_t vlen = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *v =
        rocksdb_get_cf(raft_store_db(f->s), ro, raft_store_cf(f->s, cf), key, klen, &vlen, &rerr);
    assert_null(rerr);
    assert_non_null(v);
    assert_true(at < vlen);
    v[at] ^= 0x40;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put_cf(raft_store_db(f->s), wo, raft_store_cf(f->s, cf), key, klen, v, vlen, &rerr);
    assert_null(rerr);
    rocksdb_free(v);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_readoptions_destroy(ro);
}

static void delete_entry(struct fixture *f, uint64_t index)
{
    uint8_t key[8];
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(index >> (56 - 8 * i));
    char *rerr = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_delete_cf(raft_store_db(f->s), wo, raft_store_cf(f->s, RAFT_STORE_CF_LOG),
                      (const char *)key, 8, &rerr);
    assert_null(rerr);
    rocksdb_writeoptions_destroy(wo);
}

static void expect_corrupt(struct fixture *f, const char *needle)
{
    reopen(f);
    struct raft_store_boot b;
    char err[256] = "";
    assert_int_equal(load(f, &b, err, sizeof err), NX_ERR_CORRUPT);
    if (strstr(err, needle) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, needle);
    assert_false(b.has_state);
}

static void flipped_entry_byte_is_detected(void **state)
{
    struct fixture *f = *state;
    persist(f, 1, 5, 1, 3);
    uint8_t key[8] = {0, 0, 0, 0, 0, 0, 0, 3};
    /* every position: checksum, term, type, length, data */
    for (size_t at = 0; at < RAFT_STORE_ENTRY_HEADER_BYTES + 2; at++) {
        flip_value(f, RAFT_STORE_CF_LOG, (const char *)key, 8, at);
        expect_corrupt(f, "log entry 3");
        flip_value(f, RAFT_STORE_CF_LOG, (const char *)key, 8, at); /* undo */
    }
    struct raft_store_boot b;
    char err[256];
    assert_int_equal(load(f, &b, err, sizeof err), NX_OK);
    raft_store_boot_free(&b);
}

static void missing_middle_entry_is_detected(void **state)
{
    struct fixture *f = *state;
    persist(f, 1, 6, 1, 3);
    delete_entry(f, 4);
    expect_corrupt(f, "log entry 5 found where 4 was expected");
}

static void truncated_log_below_commit_is_detected(void **state)
{
    struct fixture *f = *state;
    persist(f, 1, 6, 1, 6);
    delete_entry(f, 6);
    delete_entry(f, 5);
    expect_corrupt(f, "commit index 6 is past the last stored entry 4");
}

static void entry_moved_to_another_index_is_detected(void **state)
{
    struct fixture *f = *state;
    persist(f, 1, 3, 1, 1);
    /* copy entry 3's (valid) value under key 4: its checksum covers the index */
    char *rerr = NULL;
    size_t vlen;
    uint8_t k3[8] = {0, 0, 0, 0, 0, 0, 0, 3}, k4[8] = {0, 0, 0, 0, 0, 0, 0, 4};
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_column_family_handle_t *cf = raft_store_cf(f->s, RAFT_STORE_CF_LOG);
    char *v = rocksdb_get_cf(raft_store_db(f->s), ro, cf, (const char *)k3, 8, &vlen, &rerr);
    assert_non_null(v);
    rocksdb_put_cf(raft_store_db(f->s), wo, cf, (const char *)k4, 8, v, vlen, &rerr);
    assert_null(rerr);
    rocksdb_free(v);
    rocksdb_readoptions_destroy(ro);
    rocksdb_writeoptions_destroy(wo);
    expect_corrupt(f, "log entry 4 fails its checksum");
}

static void decreasing_term_is_detected(void **state)
{
    struct fixture *f = *state;
    persist(f, 1, 3, 2, 1);
    /* a well-formed, checksummed entry 4 with a lower term, written behind the store */
    uint8_t key[8] = {0, 0, 0, 0, 0, 0, 0, 4};
    uint8_t v[RAFT_STORE_ENTRY_HEADER_BYTES] = {0};
    v[4] = 1; /* term 1 */
    uint32_t crc = raft_store_crc32c(raft_store_crc32c(0, key, 8), v + 4, sizeof v - 4);
    for (int i = 0; i < 4; i++)
        v[i] = (uint8_t)(crc >> (8 * i));
    char *rerr = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put_cf(raft_store_db(f->s), wo, raft_store_cf(f->s, RAFT_STORE_CF_LOG),
                   (const char *)key, 8, (const char *)v, sizeof v, &rerr);
    assert_null(rerr);
    rocksdb_writeoptions_destroy(wo);
    expect_corrupt(f, "log entry 4 has term 1 below 2");
}

static void flipped_hard_state_is_detected(void **state)
{
    struct fixture *f = *state;
    persist(f, 1, 2, 1, 1);
    flip_value(f, RAFT_STORE_CF_STATE, "hard", 4, 10);
    expect_corrupt(f, "raft_state/hard");
}

static void flipped_snapshot_is_detected(void **state)
{
    struct fixture *f = *state;
    persist(f, 1, 4, 1, 4);
    struct raft_conf conf = {.n_voters = 1, .voters = {7}};
    assert_int_equal(raft_store_compact(f->s, 2, 1, &conf, "DATA", 4), NX_OK);
    flip_value(f, RAFT_STORE_CF_STATE, "snap_data", 9, 1);
    expect_corrupt(f, "snapshot data at index 2");
    flip_value(f, RAFT_STORE_CF_STATE, "snap_data", 9, 1);
    flip_value(f, RAFT_STORE_CF_STATE, "snap_meta", 9, 6);
    expect_corrupt(f, "snap_meta");
}

static void crc32c_matches_the_standard_check_value(void **state)
{
    (void)state;
    assert_int_equal(raft_store_crc32c(0, "123456789", 9), 0xE3069283u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32c_matches_the_standard_check_value),
        cmocka_unit_test_setup_teardown(persisted_entries_and_hard_state_round_trip, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(new_store_without_bootstrap_has_no_state, setup, teardown),
        cmocka_unit_test_setup_teardown(conflicting_suffix_is_overwritten, setup, teardown),
        cmocka_unit_test_setup_teardown(overwrite_after_load_deletes_the_old_suffix, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(compaction_keeps_snapshot_and_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(persisted_snapshot_replaces_the_log, setup, teardown),
        cmocka_unit_test_setup_teardown(only_commit_changes_are_written_unsynced, setup, teardown),
        cmocka_unit_test_setup_teardown(flipped_entry_byte_is_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_middle_entry_is_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(truncated_log_below_commit_is_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(entry_moved_to_another_index_is_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(decreasing_term_is_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(flipped_hard_state_is_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(flipped_snapshot_is_detected, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
